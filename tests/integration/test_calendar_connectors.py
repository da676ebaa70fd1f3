"""Calendar connectors against their sandboxes (in-process, ASGITransport): listings across pages,
incremental changes, expired sync state, idempotent busy blocks, push round trips, OAuth refresh, faults."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import icalendar
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from tests.e2e.procs import serve_app_in_thread, wait_for
from wedsync.connectors.auth import OAuth2Auth, Token
from wedsync.connectors.calendars.base import (
    BLOCK_MARKER,
    ChangePage,
    EtagMismatch,
    SourceChange,
    SyncStateExpired,
)
from wedsync.connectors.calendars.google_calendar import GoogleCalendarConnector
from wedsync.connectors.webhooks import get_scheme
from wedsync.sandbox import google_calendar as gsandbox
from wedsync.sandbox import oauth_server
from wedsync.sandbox.faults import FaultConfig, FaultMiddleware

WINDOW = (datetime.now(UTC) - timedelta(days=60), datetime.now(UTC) + timedelta(days=200))


def mounted(*emulators: Any) -> Starlette:
    """The emulators at their real prefixes, each behind its fault middleware (as the sandbox app does)."""
    return Starlette(routes=[Mount(em.prefix, app=FaultMiddleware(em.app, em.faults, em.error_body, em.quota_key))
                             for em in emulators])


def transport(*emulators: Any) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=mounted(*emulators))


def account() -> str:
    return f"test-{secrets.token_hex(6)}"  # rate budgets are per account: no test waits for another's


async def drain(connector: Any, calendar_id: str, state: str | None) -> tuple[list[ChangePage], list[SourceChange]]:
    pages: list[ChangePage] = []
    page: str | None = None
    while True:
        result = await connector.list_changes(calendar_id, state, page, *WINDOW)
        pages.append(result)
        page = result.next_page
        if page is None:
            return pages, [c for p in pages for c in p.changes]


def vevents(change: SourceChange) -> list[icalendar.Event]:
    assert change.ical is not None
    return list(icalendar.Calendar.from_ical(change.ical).walk("VEVENT"))


class Receiver:
    """A loopback HTTP endpoint recording what providers POST to it."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes, dict[str, str]]] = []

        async def hook(request: Request) -> Response:
            body = await request.body()
            query = dict(request.query_params)
            self.calls.append((dict(request.headers), body, query))
            if "validationToken" in query:  # Graph's subscription handshake
                return Response(query["validationToken"], media_type="text/plain")
            return Response(status_code=202)

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, Receiver]]:
    rec = Receiver()
    url, stop = serve_app_in_thread(rec.app)
    try:
        yield f"{url}/hook", rec
    finally:
        stop()


# ------------------------------------------------------------------------------------------ Google Calendar


def google(em: gsandbox.GoogleCalendarEmulator, **kw: Any) -> GoogleCalendarConnector:
    return GoogleCalendarConnector(access_token=gsandbox.DEFAULT_ACCESS_TOKEN, transport=transport(em),
                                   base_url=f"http://sandbox{gsandbox.PREFIX}", account_key=account(), **kw)


async def test_google_full_listing_pages_and_series_are_whole() -> None:
    em = gsandbox.create_emulator(seed=3, events=30)
    conn = google(em, page_size=7)
    pages, changes = await drain(conn, "primary", None)
    assert len(pages) > 3
    assert all(p.sync_state is None for p in pages[:-1]) and pages[-1].sync_state
    ids = [c.remote_id for c in changes]
    live = {i for i, e in em.calendars[gsandbox.PRIMARY_ID].events.items()
            if e.get("status") != "cancelled" and "recurringEventId" not in e}
    assert set(ids) == live
    series = [c for c in changes if c.ical and "RRULE" in c.ical]
    assert len(series) == 1
    evs = vevents(series[0])
    master = next(e for e in evs if "RRULE" in e)
    overrides = [e for e in evs if "RECURRENCE-ID" in e]
    assert len(overrides) == 1 and "EXDATE" in master  # one moved, one cancelled instance
    assert master["DTSTART"].params.get("TZID") == "Europe/London"
    assert all(e["UID"] == master["UID"] for e in evs)
    transparent = [c for c in changes if c.ical and "TRANSP:TRANSPARENT" in c.ical]
    all_day = [c for c in changes if c.ical and "DTSTART;VALUE=DATE" in c.ical]
    assert transparent and all_day
    await conn.aclose()


async def test_google_incremental_deletions_and_expired_token() -> None:
    em = gsandbox.create_emulator(seed=4, events=20)
    conn = google(em, page_size=5)
    _, first = await drain(conn, "primary", None)
    pages, none = await drain(conn, "primary", (await drain(conn, "primary", None))[0][-1].sync_state)
    assert none == [] and pages[-1].sync_state
    state = pages[-1].sync_state
    result = await em.mutate({"update": 2, "delete": 1, "create": 1, "calendar": gsandbox.PRIMARY_ID})
    master = next(i for i, e in em.calendars[gsandbox.PRIMARY_ID].events.items() if e.get("recurrence"))
    first_start = datetime.combine(em.anchor, datetime.min.time()) + timedelta(hours=9)
    em.modify_instance(gsandbox.PRIMARY_ID, master, first_start + timedelta(weeks=5), {"status": "cancelled"})
    pages, changes = await drain(conn, "primary", state)
    by_id = {c.remote_id: c for c in changes}
    assert set(result["updated"]) | set(result["created"]) <= set(by_id)
    assert by_id[result["deleted"][0]].ical is None
    series = by_id[master]
    assert series.ical is not None and str(series.ical).count("EXDATE") >= 1
    assert len(vevents(series)) == 2  # the master and the moved instance, the two cancellations as EXDATEs
    em.expire_sync_tokens(gsandbox.PRIMARY_ID)
    with pytest.raises(SyncStateExpired):
        await conn.list_changes("primary", pages[-1].sync_state, None, *WINDOW)
    assert len(first) > 10
    await conn.aclose()


async def test_google_deleted_series_is_one_deletion() -> None:
    em = gsandbox.create_emulator(seed=9, events=4)
    conn = google(em)
    pages, _ = await drain(conn, "primary", None)
    master = next(i for i, e in em.calendars[gsandbox.PRIMARY_ID].events.items() if e.get("recurrence"))
    em.delete_event(gsandbox.PRIMARY_ID, master)  # its instances become bare cancelled references
    _, changes = await drain(conn, "primary", pages[-1].sync_state)
    assert {c.remote_id for c in changes} == {master} and all(c.ical is None for c in changes)
    await conn.aclose()


async def test_google_blocks_are_idempotent_and_conditional() -> None:
    em = gsandbox.create_emulator(seed=5, events=0)
    conn = google(em)
    start = datetime(2027, 6, 12, 13, 0, tzinfo=UTC)
    ref1 = await conn.put_block("primary", "blk-01J0WEDDING", start, start + timedelta(hours=5), "Busy (WedSync)")
    ref2 = await conn.put_block("primary", "blk-01J0WEDDING", start, start + timedelta(hours=6), "Busy (WedSync)")
    assert ref1.remote_id == ref2.remote_id and ref1.etag != ref2.etag
    events = em.calendars[gsandbox.PRIMARY_ID].events
    blocks = [e for e in events.values() if e["id"] == ref1.remote_id]
    assert len(blocks) == 1 and blocks[0]["end"]["dateTime"].startswith("2027-06-12T19:00")
    with pytest.raises(EtagMismatch):
        await conn.put_block("primary", "blk-01J0WEDDING", start, start + timedelta(hours=1), "Busy",
                             existing_remote_id=ref1.remote_id, etag=ref1.etag)
    ref3 = await conn.put_block("primary", "blk-01J0WEDDING", start, start + timedelta(hours=1), "Busy",
                                existing_remote_id=ref2.remote_id, etag=ref2.etag)
    day = await conn.put_block("primary", "blk-01J0DAY", start, start, "Wedding day", all_day=True)
    _, changes = await drain(conn, "primary", None)
    marked = {c.remote_id: c for c in changes if c.ical and BLOCK_MARKER in c.ical}
    assert set(marked) == {ref3.remote_id, day.remote_id}
    assert vevents(marked[day.remote_id])[0][BLOCK_MARKER] == "blk-01J0DAY"
    await conn.delete_block("primary", ref3.remote_id, ref3.etag)
    await conn.delete_block("primary", ref3.remote_id)  # already gone: fine
    again = await conn.put_block("primary", "blk-01J0WEDDING", start, start + timedelta(hours=1), "Busy")
    assert again.remote_id == ref1.remote_id and events[again.remote_id]["status"] == "confirmed"
    await conn.aclose()


async def test_google_watch_notifications_round_trip(receiver: tuple[str, Receiver]) -> None:
    address, rec = receiver
    rec.calls.clear()
    em = gsandbox.create_emulator(seed=6, events=3)
    conn = google(em)
    token = secrets.token_urlsafe(16)
    channel = await conn.watch("primary", address, token, timedelta(hours=2))
    assert channel.expires_at - datetime.now(UTC) < timedelta(hours=2, minutes=1)
    await em.webhooks.drain()
    start = datetime(2027, 1, 5, 10, tzinfo=UTC)
    await conn.put_block("primary", "blk-watch", start, start + timedelta(hours=1), "Busy")
    await em.webhooks.drain()
    wait_for(lambda: len(rec.calls) >= 2, 5, "two notifications")
    scheme = get_scheme("google-calendar")
    states = []
    for headers, body, query in rec.calls:
        event = scheme.verify(body, headers, token, query=query)
        assert event.record_id == channel.resource_id
        states.append(event.event_type)
    assert states == ["sync", "exists"]
    assert channel.needs_renewal(margin=timedelta(hours=3))
    renewed = await conn.renew_watch(channel, timedelta(days=1))
    assert renewed.id != channel.id and channel.id not in em.channels and renewed.id in em.channels
    await conn.stop_watch(renewed)
    await conn.stop_watch(renewed)  # unknown now: not an error
    assert not em.channels
    await conn.aclose()


async def test_google_with_oauth_server_refreshes_token() -> None:
    oauth = oauth_server.create_emulator(seed=1)
    em = gsandbox.create_emulator(seed=7, events=2, oauth=oauth)
    issued = oauth._issue(oauth_server.DEFAULT_CLIENT_ID, "calendar", "florist", "grant-1")

    class Store:
        def __init__(self) -> None:
            self.token = Token(access_token="expired-token", refresh_token=issued["refresh_token"],
                               expires_at=datetime.now(UTC) - timedelta(minutes=1))

        async def load(self) -> Token:
            return self.token

        async def save(self, new: Token, *, previous_refresh_token: str | None) -> None:
            self.token = new

    store = Store()
    auth = OAuth2Auth(store, "http://sandbox/oauth/token", oauth_server.DEFAULT_CLIENT_ID,
                      oauth_server.DEFAULT_CLIENT_SECRET)
    conn = GoogleCalendarConnector(auth=auth, transport=transport(em, oauth), account_key=account(),
                                   base_url=f"http://sandbox{gsandbox.PREFIX}")
    calendars = await conn.list_calendars()
    assert {c.id for c in calendars} == {gsandbox.PRIMARY_ID, gsandbox.SECOND_ID}
    assert next(c for c in calendars if c.primary).writable
    assert store.token.access_token in oauth.access_tokens and auth.refresh_count == 1
    await conn.aclose()


async def test_google_rides_through_rate_limits_and_server_errors() -> None:
    em = gsandbox.create_emulator(seed=8, events=25)
    em.faults.configure(FaultConfig(seed=5, rate_limit_rate=0.2, error_rate=0.1, retry_after_seconds=0,
                                    timeout_rate=0.05, timeout_seconds=1.0))
    conn = google(em, page_size=4, timeout=0.3)  # a held-back answer times out and is retried (GET replays)
    _, changes = await drain(conn, "primary", None)
    live = {i for i, e in em.calendars[gsandbox.PRIMARY_ID].events.items()
            if e.get("status") != "cancelled" and "recurringEventId" not in e}
    assert {c.remote_id for c in changes} == live
    stats = em.faults.stats()
    assert {"rate_limit", "error", "timeout"} <= set(stats["injected"]), stats  # all three happened
    await conn.aclose()


def test_google_connector_needs_a_token() -> None:
    from wedsync.connectors.errors import ReauthRequired

    with pytest.raises(ReauthRequired):
        GoogleCalendarConnector()



# ------------------------------------------------------------------------------------------ Microsoft Graph

from wedsync.connectors.calendars.base import parse_graph_notifications  # noqa: E402
from wedsync.connectors.calendars.microsoft_graph import MicrosoftGraphConnector  # noqa: E402
from wedsync.sandbox import microsoft_graph as msandbox  # noqa: E402


def graph(em: msandbox.MicrosoftGraphEmulator, **kw: Any) -> MicrosoftGraphConnector:
    return MicrosoftGraphConnector(access_token=msandbox.DEFAULT_ACCESS_TOKEN, transport=transport(em),
                                   base_url=f"http://sandbox{msandbox.PREFIX}", account_key=account(), **kw)


def graph_live(em: msandbox.MicrosoftGraphEmulator) -> set[str]:
    lo, hi = WINDOW
    return {e.id for e in em.default_calendar().events.values() if not e.deleted and e.start < hi and e.end > lo}


async def test_graph_delta_pages_incremental_and_gone() -> None:
    em = msandbox.create_emulator(seed=3, events=30)
    conn = graph(em, page_size=6)
    calendars = await conn.list_calendars()
    cal = next(c for c in calendars if c.primary).id
    pages, changes = await drain(conn, cal, None)
    assert len(pages) > 3 and all(p.sync_state is None for p in pages[:-1])
    assert pages[-1].sync_state and "$deltatoken" in pages[-1].sync_state
    assert {c.remote_id for c in changes} == graph_live(em)
    texts = [c.ical or "" for c in changes]
    assert any("VALUE=DATE" in t for t in texts) and any("TRANSP:TRANSPARENT" in t for t in texts)
    assert any("STATUS:TENTATIVE" in t for t in texts) and any("X-MICROSOFT-CDO-BUSYSTATUS:OOF" in t for t in texts)
    series = [c for c in changes if "Team sync" in (c.ical or "")]
    assert len(series) == 8  # calendarView expands the series into instances
    state = pages[-1].sync_state
    em_result = await em.mutate({"update": 1, "delete": 1, "create": 2})
    pages, inc = await drain(conn, cal, state)
    by_id = {c.remote_id: c for c in inc}
    assert set(by_id) == set(em_result["updated"]) | set(em_result["deleted"]) | set(em_result["created"])
    assert by_id[em_result["deleted"][0]].ical is None
    em.expire_delta_tokens(cal)
    with pytest.raises(SyncStateExpired):
        await conn.list_changes(cal, pages[-1].sync_state, None, *WINDOW)
    prefer = [r[3].get("prefer", "") for r in em.requests if r[1].endswith("/delta")]
    assert all("odata.maxpagesize=6" in p and 'outlook.timezone="UTC"' in p for p in prefer)
    await conn.aclose()


async def test_graph_refuses_links_to_other_hosts() -> None:
    from wedsync.connectors.errors import Fatal

    em = msandbox.create_emulator(seed=3, events=1)
    conn = graph(em)
    with pytest.raises(Fatal):
        await conn.list_changes("x", "https://attacker.example/v1.0/me/calendarView/delta?$deltatoken=1", None,
                                *WINDOW)
    await conn.aclose()


async def test_graph_blocks_idempotent_by_transaction_id() -> None:
    em = msandbox.create_emulator(seed=4, events=0)
    conn = graph(em)
    cal = em.default_calendar().id
    start = datetime(2027, 6, 12, 13, 0, tzinfo=UTC)
    ref1 = await conn.put_block(cal, "blk-01J0WEDDING", start, start + timedelta(hours=5), "Busy (WedSync)")
    ref2 = await conn.put_block(cal, "blk-01J0WEDDING", start, start + timedelta(hours=6), "Busy (WedSync)")
    assert ref1.remote_id == ref2.remote_id and ref1.etag != ref2.etag
    live = [e for e in em.default_calendar().events.values() if not e.deleted and e.type == "singleInstance"]
    assert len(live) == 1 and live[0].end == start + timedelta(hours=6)
    assert list(live[0].ext_props.values()) == ["blk-01J0WEDDING"]  # found again by its extended property
    lookups = [r[2].get("$filter", "") for r in em.requests if r[0] == "GET" and r[1].endswith("/events")]
    assert lookups and all("singleValueExtendedProperties/Any" in f for f in lookups)
    with pytest.raises(EtagMismatch):
        await conn.put_block(cal, "blk-01J0WEDDING", start, start + timedelta(hours=1), "Busy",
                             existing_remote_id=ref1.remote_id, etag=ref1.etag)
    day = await conn.put_block(cal, "blk-day", start, start, "Wedding day", all_day=True)
    _, changes = await drain(conn, cal, None)
    marked = [c for c in changes if BLOCK_MARKER in (c.ical or "")]
    assert {c.remote_id for c in marked} == {ref2.remote_id, day.remote_id}
    await conn.delete_block(cal, ref2.remote_id, ref2.etag)
    await conn.delete_block(cal, ref2.remote_id)
    assert em.default_calendar().events[ref2.remote_id].deleted
    await conn.aclose()


async def test_graph_subscription_handshake_notifications_lifecycle(receiver: tuple[str, Receiver]) -> None:
    address, rec = receiver
    rec.calls.clear()
    em = msandbox.create_emulator(seed=5, events=2)
    conn = graph(em)
    cal = em.default_calendar().id
    state = secrets.token_urlsafe(16)
    channel = await conn.watch(cal, address, state, timedelta(days=30))
    assert "validationToken" in rec.calls[0][2]  # the handshake came first, and was answered
    assert channel.expires_at <= datetime.now(UTC) + timedelta(minutes=10080)
    start = datetime(2027, 2, 1, 9, tzinfo=UTC)
    await conn.put_block(cal, "blk-push", start, start + timedelta(hours=1), "Busy")
    em.send_lifecycle(channel.id, "reauthorizationRequired")
    await em.webhooks.drain()
    wait_for(lambda: len(rec.calls) >= 3, 5, "a change and a lifecycle notification")
    scheme = get_scheme("microsoft-graph")
    notices = []
    for headers, body, query in rec.calls[1:]:
        scheme.verify(body, headers, state, query=query)  # clientState checked
        notices.extend(parse_graph_notifications(body))
    assert [n.kind for n in notices] == ["changed", "reauthorize"]
    assert all(n.subscription_id == channel.id for n in notices)
    renewed = await conn.renew_watch(channel, timedelta(days=2))
    assert renewed.id == channel.id and renewed.expires_at > channel.expires_at - timedelta(days=10)
    em.send_lifecycle(channel.id, "subscriptionRemoved")
    again = await conn.renew_watch(channel, timedelta(days=2))  # removed by Graph: subscribed anew
    assert again.id != channel.id and again.id in em.subscriptions
    await conn.stop_watch(again)
    await conn.stop_watch(again)
    assert not em.subscriptions
    await conn.aclose()


async def test_graph_subscription_fails_when_endpoint_does_not_echo() -> None:
    from wedsync.connectors.errors import Fatal

    em = msandbox.create_emulator(seed=6, events=0)
    conn = graph(em)
    with pytest.raises(Fatal) as info:
        await conn.watch(em.default_calendar().id, "http://127.0.0.1:9/nothing", "s", timedelta(hours=1))
    assert info.value.http_status == 400
    await conn.aclose()


# ------------------------------------------------------------------------------------------ Calendly, Acuity

from wedsync.connectors.calendars.acuity import AcuityConnector  # noqa: E402
from wedsync.connectors.calendars.calendly import CalendlyConnector  # noqa: E402
from wedsync.sandbox import acuity as asandbox  # noqa: E402
from wedsync.sandbox import calendly as csandbox  # noqa: E402


def calendly(em: csandbox.CalendlyEmulator, **kw: Any) -> CalendlyConnector:
    return CalendlyConnector(access_token=csandbox.DEFAULT_ACCESS_TOKEN, transport=transport(em),
                             base_url=f"http://sandbox{csandbox.PREFIX}", account_key=account(), **kw)


def acuity(em: asandbox.AcuityEmulator, **kw: Any) -> AcuityConnector:
    return AcuityConnector(user_id=asandbox.DEFAULT_USER_ID, api_key=asandbox.DEFAULT_API_KEY,
                           transport=transport(em), base_url=f"http://sandbox{asandbox.PREFIX}",
                           account_key=account(), **kw)


async def test_calendly_listing_webhooks_and_refetch(receiver: tuple[str, Receiver]) -> None:
    address, rec = receiver
    rec.calls.clear()
    em = csandbox.create_emulator(seed=3, events=23)
    conn = calendly(em, page_size=5)
    [cal] = await conn.list_calendars()
    pages, changes = await drain(conn, cal.id, None)
    assert len(pages) == 5 and all(p.sync_state is None for p in pages)
    assert {c.remote_id for c in changes} == {e["uri"] for e in em.events.values()}
    canceled = [c for c in changes if "STATUS:CANCELLED" in (c.ical or "")]
    assert len(canceled) == sum(1 for e in em.events.values() if e["status"] == "canceled") > 0
    key = secrets.token_urlsafe(16)
    channel = await conn.watch(cal.id, address, key, timedelta(days=7))
    again = await conn.watch(cal.id, address, key, timedelta(days=7))  # 409 -> the same subscription
    assert again.id == channel.id and len(em.hooks) == 1
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    uuid = em.book(start, 45, "Ana Silva", "ana@example.com")
    em.cancel(uuid)
    await em.webhooks.drain()
    wait_for(lambda: len(rec.calls) >= 2, 5, "two Calendly webhooks")
    scheme = get_scheme("calendly")
    seen = []
    for headers, body, query in rec.calls:
        event = scheme.verify(body, headers, key, query=query)
        assert event.record_id is not None
        fetched = await conn.fetch_item(cal.id, event.record_id)
        seen.append((event.event_type, "STATUS:CANCELLED" in (fetched.ical or "")))
        assert fetched.remote_id == em.events[uuid]["uri"]
    # Deliveries may arrive in either order (two requests in flight); each re-read shows the current state.
    assert sorted(seen) == [("invitee.canceled", True), ("invitee.created", True)]
    await conn.stop_watch(channel)
    assert not em.hooks
    await conn.aclose()


async def test_acuity_slices_signed_form_webhooks_and_refetch(receiver: tuple[str, Receiver]) -> None:
    address, rec = receiver
    rec.calls.clear()
    em = asandbox.create_emulator(seed=3, appointments=30)
    conn = acuity(em, max_per_call=4)  # small cap: slices must split to list everything
    calendars = await conn.list_calendars()
    assert {c.id for c in calendars} == {"4001", "4002"}
    _, changes = await drain(conn, "4001", None)
    expected = {str(i) for i, a in em.appointments.items() if a["calendarID"] == 4001}
    assert {c.remote_id for c in changes} == expected
    assert any("STATUS:CANCELLED" in (c.ical or "") for c in changes)
    channel = await conn.watch("4001", address, "unused", timedelta(days=1))
    assert len(channel.id.split(",")) == 4
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    appt = em.schedule(start, 60, "Lee", "lee@example.com")
    em.cancel(appt["id"])
    await em.webhooks.drain()
    wait_for(lambda: len(rec.calls) >= 2, 5, "two Acuity webhooks")
    scheme = get_scheme("acuity")
    for headers, body, query in rec.calls:
        assert headers["content-type"].startswith("application/x-www-form-urlencoded")
        event = scheme.verify(body, headers, asandbox.DEFAULT_API_KEY, query=query)
        fetched = await conn.fetch_item("4001", event.record_id or "")
        assert fetched.remote_id == str(appt["id"]) and "STATUS:CANCELLED" in (fetched.ical or "")
    gone = await conn.fetch_item("4001", "123")
    assert gone.ical is None
    await conn.stop_watch(channel)
    assert not em.hooks
    await conn.aclose()


async def test_read_only_connectors_refuse_blocks() -> None:
    from wedsync.errors import NotImplementedCapability

    em = csandbox.create_emulator(seed=1, events=0)
    conn = calendly(em)
    start = datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(NotImplementedCapability):
        await conn.put_block("x", "b", start, start + timedelta(hours=1), "Busy")
    await conn.aclose()


async def test_hub_accepts_acuity_and_google_notifications(api, hub) -> None:  # type: ignore[no-untyped-def]
    """Through the hub's webhook route: Acuity's secret is the API key (it signs with it), Google's channel token
    is the connection's webhook secret; wrong signatures are refused."""
    from wedsync.connectors.webhooks import AcuityScheme, GoogleCalendarScheme
    from wedsync.services.connections import WEBHOOK_SECRET

    vendor = hub.tenancy.create_vendor("Bloom & Vine")
    conn = hub.connections.create(vendor.id, "acuity", credentials={"user_id": "1", "api_key": "acuity-key"},
                                  base_url="https://acuityscheduling.com/api/v1")
    assert hub.connections.credentials(conn)[WEBHOOK_SECRET] == "acuity-key"
    body = b"action=scheduled&id=900000001&calendarID=4001&appointmentTypeID=7001"
    form = {"content-type": "application/x-www-form-urlencoded"}
    ok = await api.post(f"/webhooks/acuity/{conn.id}", content=body,
                        headers={**form, **AcuityScheme.sign(body, "acuity-key")})
    bad = await api.post(f"/webhooks/acuity/{conn.id}", content=body,
                         headers={**form, **AcuityScheme.sign(body, "other-key")})
    assert ok.status_code == 200 and bad.status_code == 401
    feed = hub.connections.create(vendor.id, "ical-feed", credentials={"feed_url": "https://cal.example.com/x.ics"})
    assert len(hub.connections.credentials(feed)[WEBHOOK_SECRET]) > 20  # others keep a random secret
    gconn = hub.connections.create(vendor.id, "google-calendar", credentials={})
    token = hub.connections.credentials(gconn)[WEBHOOK_SECRET]
    headers = GoogleCalendarScheme.sign(channel_id="wedsync-1", token=token, message_number=1,
                                        resource_id="rid-1", resource_state="exists")
    assert (await api.post(f"/webhooks/google-calendar/{gconn.id}", headers=headers)).status_code == 200
    headers["X-Goog-Channel-Token"] = "forged"
    assert (await api.post(f"/webhooks/google-calendar/{gconn.id}", headers=headers)).status_code == 401
