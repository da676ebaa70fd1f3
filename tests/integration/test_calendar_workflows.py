"""Calendar sync as a DBOS workflow (one step per provider page, expired sync state -> full resync), the push
handler (a Google channel notice re-lists the connection's calendars), and iCalendar feed sources."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dbos import DBOS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from tests.e2e.procs import serve_app_in_thread
from wedsync.errors import Conflict
from wedsync.sandbox import google_calendar as gsandbox
from wedsync.sandbox.faults import FaultMiddleware
from wedsync.services.calendar import WEBHOOK_HANDLERS
from wedsync.services.webhook_inbox import InboxRow
from wedsync.store.tables_calendar import CalendarSource

FEED = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Venue//Bookings//EN\r
BEGIN:VEVENT\r
UID:venue-1@example\r
DTSTAMP:20260101T000000Z\r
DTSTART:{start}\r
DTEND:{end}\r
SUMMARY:Venue booked\r
END:VEVENT\r
END:VCALENDAR\r
"""


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, Any, dict[str, str]]]:
    google = gsandbox.create_emulator(seed=11, events=6)
    feed: dict[str, str] = {"body": ""}

    async def serve_feed(_request: Request) -> Response:
        return Response(feed["body"], media_type="text/calendar")

    app = Starlette(routes=[Mount(google.prefix, app=FaultMiddleware(google.app, google.faults, google.error_body,
                                                                     google.quota_key)),
                            Route("/feeds/venue.ics", serve_feed)])
    url, stop = serve_app_in_thread(app)
    try:
        yield url, google, feed
    finally:
        stop()


def _google(hub: Any, url: str, name: str) -> tuple[str, str, str]:
    v = hub.tenancy.create_vendor(name, "Europe/London").id
    conn = hub.connections.create(v, "google-calendar", credentials={}, base_url=url + gsandbox.PREFIX)
    with hub.db.session() as s:
        hub.vault.store(s, v, conn.id, {**hub.connections.credentials(conn),
                                        "access_token": gsandbox.DEFAULT_ACCESS_TOKEN})
    src = hub.calendar.add_source(v, kind="google-calendar", calendar_id=gsandbox.PRIMARY_ID, connection_id=conn.id,
                                  writable=False)
    return v, conn.id, src["id"]


async def test_sync_workflow_pages_and_resync(dbos_hub: Any, servers: tuple[str, Any, dict[str, str]]) -> None:
    from wedsync.workflows.calendar import enqueue_source_sync

    url, google, _ = servers
    v, _conn, src = _google(dbos_hub, url, "Workflow Florist")
    wf = await enqueue_source_sync(src)
    result = await (await DBOS.retrieve_workflow_async(wf)).get_result()
    assert result["status"] == "ok" and result["pages"] >= 1
    steps = await DBOS.list_workflow_steps_async(wf)
    names = [st["function_name"] for st in steps]
    assert names[0].endswith("calendar_begin_step") and any(n.endswith("calendar_page_step") for n in names)
    state = dbos_hub.calendar.get_source(v, src)
    assert state["status"] == "ok" and state["incremental"]
    google.expire_sync_tokens(gsandbox.PRIMARY_ID)  # the provider answers 410 to the stored token
    wf2 = await enqueue_source_sync(src)
    result = await (await DBOS.retrieve_workflow_async(wf2)).get_result()
    assert result["status"] == "ok"
    names = [st["function_name"] for st in await DBOS.list_workflow_steps_async(wf2)]
    assert any(n.endswith("calendar_reset_step") for n in names)
    assert dbos_hub.calendar.availability(v, datetime.now(UTC), datetime.now(UTC) + timedelta(days=1)).complete
    await dbos_hub.connections.aclose()
    await dbos_hub.calendar.aclose()


async def test_push_notice_resyncs_and_dedupes(hub: Any, servers: tuple[str, Any, dict[str, str]]) -> None:
    url, _emulator, _ = servers
    hub.calendar.auto_propagate = False
    v, conn, src = _google(hub, url, "Push Florist")
    handler = WEBHOOK_HANDLERS["google-calendar"]

    def row(state: str, received: datetime) -> InboxRow:
        return InboxRow(id=1, vendor_id=v, connection_id=conn, provider="google-calendar", event_id="ch:1",
                        event_type=state, record_id="res", body=b"", received_at=received, attempts=0)

    assert await handler(hub, row("sync", datetime.now(UTC))) == "ignored"  # channel opened: nothing changed
    out = await handler(hub, row("exists", datetime.now(UTC)))
    assert "synced 1" in out and hub.calendar.get_source(v, src)["status"] == "ok"
    old = await handler(hub, row("exists", datetime.now(UTC) - timedelta(minutes=5)))
    assert "1 already current" in old  # a run after this notice already saw its change
    await hub.connections.aclose()
    await hub.calendar.aclose()


def serve_one_event(feed: dict[str, str]) -> datetime:
    """The feed server answers one three-hour event two days ahead; returns its start."""
    start = (datetime.now(UTC) + timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)
    feed["body"] = FEED.format(start=start.strftime("%Y%m%dT%H%M%SZ"),
                               end=(start + timedelta(hours=3)).strftime("%Y%m%dT%H%M%SZ"))
    return start


async def test_ical_feed_source(hub: Any, servers: tuple[str, Any, dict[str, str]]) -> None:
    url, _emulator, feed = servers
    svc = hub.calendar
    svc.auto_propagate = False
    v = hub.tenancy.create_vendor("Feed Florist", "UTC").id
    start = serve_one_event(feed)
    src = svc.add_source(v, kind="ical-feed", calendar_id=f"{url}/feeds/venue.ics")["id"]
    res = await svc.sync_source(src)
    assert res["status"] == "ok", res
    avail = svc.availability(v, start - timedelta(hours=1), start + timedelta(hours=4))
    assert [(b.start, b.end) for b in avail.busy] == [(start, start + timedelta(hours=3))]
    feed["body"] = "<html>not a calendar</html>"  # the feed breaks: the source fails closed
    res = await svc.sync_source(src)
    assert res["status"] == "failed"
    avail = svc.availability(v, start - timedelta(hours=1), start + timedelta(hours=4))
    assert avail.free == [] and not avail.complete



async def test_a_private_feed_address_is_never_shown(hub: Any, servers: tuple[str, Any, dict[str, str]]) -> None:
    """A feed's address is its credential (a "secret address in iCal format"): the API shows scheme and host
    only, and a failing fetch's error names neither its path nor its query."""
    import json

    url, _emulator, _feed = servers
    svc = hub.calendar
    svc.auto_propagate = False
    v = hub.tenancy.create_vendor("Private Feed Florist", "UTC").id
    secret_url = f"{url}/calendar/ical/private-9f8e7d6c5b4a3210/basic.ics?token=tok-8b7c6d5e4f"
    added = svc.add_source(v, kind="ical-feed", calendar_id=secret_url)
    assert added["name"] == f"{url}/…" and added["calendar_id"].startswith("feed:")
    res = await svc.sync_source(added["id"])  # 404 from the server: the source fails closed
    assert res["status"] == "failed"
    shown = json.dumps([svc.get_source(v, added["id"]), svc.list_sources(v), res], default=str)
    assert "9f8e7d6c5b4a3210" not in shown and "tok-8b7c6d5e4f" not in shown, shown
    assert svc.get_source(v, added["id"])["last_error"]
    # at rest: the address is in the vault (an ical-feed connection's encrypted credentials), nowhere else
    with hub.db.read() as s:
        row = s.get(CalendarSource, added["id"])
        assert "9f8e7d6c5b4a3210" not in f"{row.calendar_id} {row.name} {row.last_error}"
    conn = hub.connections.get(v, added["connection_id"])
    assert conn.provider == "ical-feed" and hub.connections.credentials(conn)["feed_url"] == secret_url
    with pytest.raises(Conflict):  # the same address again is the same source
        svc.add_source(v, kind="ical-feed", calendar_id=secret_url)
    svc.delete_source(v, added["id"])  # its connection goes with it
    assert [c.id for c in hub.connections.list(v)] == []


async def test_a_feed_stored_the_old_way_moves_to_the_vault(hub: Any, servers: tuple[str, Any, dict[str, str]]
                                                           ) -> None:
    url, _emulator, feed = servers
    svc = hub.calendar
    svc.auto_propagate = False
    v = hub.tenancy.create_vendor("Old Feed Florist", "UTC").id
    start = serve_one_event(feed)
    old_url = f"{url}/feeds/venue.ics"
    with hub.db.session() as s:  # as add_source stored feeds before: the address as calendar_id, no connection
        s.add(CalendarSource(id="01jfeedold0000000000000000", vendor_id=v, kind="ical-feed", calendar_id=old_url,
                             name=old_url, rules={}, watch={}, poll_interval_s=300))
    assert svc.get_source(v, "01jfeedold0000000000000000")["calendar_id"] == f"{url}/…"
    res = await svc.sync_source("01jfeedold0000000000000000")
    assert res["status"] == "ok", res
    moved = svc.get_source(v, "01jfeedold0000000000000000")
    assert moved["calendar_id"].startswith("feed:") and moved["name"] == f"{url}/…" and moved["connection_id"]
    conn = hub.connections.get(v, moved["connection_id"])
    assert hub.connections.credentials(conn)["feed_url"] == old_url
    avail = svc.availability(v, start - timedelta(hours=1), start + timedelta(hours=4))
    assert [(b.start, b.end) for b in avail.busy] == [(start, start + timedelta(hours=3))]


async def test_a_sync_failing_outside_the_connector_marks_the_source(dbos_hub: Any,
                                                                      servers: tuple[str, Any, dict[str, str]]
                                                                      ) -> None:
    """Credentials sealed with a vault key this process lacks (VaultError, not a ConnectorError): the source
    says what failed instead of staying 'syncing' until the next run."""
    from wedsync.errors import VaultError
    from wedsync.store.tables import Credential
    from wedsync.workflows.calendar import enqueue_source_sync

    url, _google_emulator, _ = servers
    v, conn, src = _google(dbos_hub, url, "Vaultless Florist")
    with dbos_hub.db.session() as s:
        row = s.get(Credential, conn)
        row.key_id = "0123456789abcdef"  # a key no ring here has
    await dbos_hub.calendar.aclose()  # no connector built before the change survives
    wf = await enqueue_source_sync(src)
    with pytest.raises(VaultError):
        await (await DBOS.retrieve_workflow_async(wf)).get_result()
    state = dbos_hub.calendar.get_source(v, src)
    assert state["status"] == "error" and "VaultError" in (state["last_error"] or ""), state
