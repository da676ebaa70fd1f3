"""Sync and propagation across Google (sandbox), Outlook/Graph (sandbox) and CalDAV (a real Radicale):
a change in one calendar becomes a busy block in the others, idempotently, without echo loops; bookings
propagate and their cancellation removes the blocks; an outage marks the source stale (fail closed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import icalendar
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.e2e.procs import serve_app_in_thread
from tests.integration.radicale_server import RadicaleServer, radicale  # noqa: F401 (fixture)
from wedsync.bootstrap import Hub
from wedsync.connectors.calendars.base import BLOCK_MARKER
from wedsync.sandbox import google_calendar as gsandbox
from wedsync.sandbox import microsoft_graph as msandbox
from wedsync.sandbox.faults import FaultMiddleware
from wedsync.services.calendar import BookingRequest


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[str, Any, Any]]:
    google = gsandbox.create_emulator(seed=7, events=0)
    graph = msandbox.create_emulator(seed=7, events=0)
    app = Starlette(routes=[Mount(em.prefix, app=FaultMiddleware(em.app, em.faults, em.error_body, em.quota_key))
                            for em in (google, graph)])
    url, stop = serve_app_in_thread(app)
    try:
        yield url, google, graph
    finally:
        stop()


def _oauth_connection(hub: Hub, vendor_id: str, provider: str, base_url: str, token: str) -> str:
    conn = hub.connections.create(vendor_id, provider, credentials={}, base_url=base_url)
    with hub.db.session() as s:  # a sandbox token stands in for the OAuth grant
        hub.vault.store(s, vendor_id, conn.id, {**hub.connections.credentials(conn), "access_token": token})
    return conn.id


def _google_events(url: str, calendar_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}{gsandbox.PREFIX}/calendars/{calendar_id}/events",
                  headers={"Authorization": f"Bearer {gsandbox.DEFAULT_ACCESS_TOKEN}"})
    r.raise_for_status()
    return [e for e in r.json()["items"] if e.get("status") != "cancelled"]


def _caldav_blocks(server: RadicaleServer, path: str, start: datetime) -> list[str]:
    body = ('<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            '<D:prop><C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR"/></C:filter>'
            '</C:calendar-query>')
    r = httpx.request("REPORT", server.url + path, content=body, auth=(server.user, server.password),
                      headers={"Depth": "1", "Content-Type": "application/xml"})
    assert r.status_code == 207
    stamp = start.astimezone(UTC).strftime("DTSTART:%Y%m%dT%H%M%SZ")
    return [part for part in r.text.split("BEGIN:VEVENT")[1:] if BLOCK_MARKER in part and stamp in part]


async def test_propagation_round_trip(hub: Hub, providers: tuple[str, Any, Any],
                                      radicale: RadicaleServer) -> None:  # noqa: F811
    url, _google, graph = providers
    svc = hub.calendar
    svc.auto_propagate = True
    v = hub.tenancy.create_vendor("Bloom & Vine", "Europe/London").id
    g_conn = _oauth_connection(hub, v, "google-calendar", url + gsandbox.PREFIX, gsandbox.DEFAULT_ACCESS_TOKEN)
    m_conn = _oauth_connection(hub, v, "microsoft-graph", url + msandbox.PREFIX, msandbox.DEFAULT_ACCESS_TOKEN)
    c_conn = hub.connections.create(v, "apple-caldav", credentials={"username": radicale.user,
                                                                    "password": radicale.password},
                                    base_url=radicale.url).id
    cal_path = radicale.make_calendar()
    g_src = svc.add_source(v, kind="google-calendar", calendar_id=gsandbox.PRIMARY_ID, connection_id=g_conn)["id"]
    m_src = svc.add_source(v, kind="microsoft-graph", calendar_id=graph.default_calendar().id,
                           connection_id=m_conn)["id"]
    c_src = svc.add_source(v, kind="apple-caldav", calendar_id=cal_path, connection_id=c_conn)["id"]
    for src in (g_src, m_src, c_src):
        assert (await svc.sync_source(src))["status"] == "ok"

    # the florist adds an appointment in Google
    start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    r = httpx.post(f"{url}{gsandbox.PREFIX}/calendars/{gsandbox.PRIMARY_ID}/events",
                   headers={"Authorization": f"Bearer {gsandbox.DEFAULT_ACCESS_TOKEN}"},
                   json={"summary": "Church walk-through", "start": {"dateTime": start.isoformat()},
                         "end": {"dateTime": (start + timedelta(hours=1)).isoformat()}})
    assert r.status_code == 200, r.text
    event_id = r.json()["id"]
    res = await svc.sync_source(g_src)
    assert res["status"] == "ok"
    origin = f"event:{g_src}:"
    mine = [b for b in svc.blocks(v) if b["origin"].startswith(origin) and b["start"] == start.isoformat()]
    assert {b["target_source_id"] for b in mine} == {m_src, c_src}
    assert all(b["state"] == "placed" for b in mine), mine
    assert len(_outlook_blocks_at(graph, start)) == 1
    assert len(_caldav_blocks(radicale, cal_path, start)) == 1
    own_google = len(_google_own(url))

    # the blocks come back when Outlook and CalDAV are read: they are ours, never re-propagated
    for src in (m_src, c_src):
        assert (await svc.sync_source(src))["status"] == "ok"
    again = await svc.propagate(v)
    assert again["added"] == 0 and again["pushed"] == 0, again
    assert len(_google_own(url)) == own_google  # nothing echoed back into Google
    assert len(_outlook_blocks_at(graph, start)) == 1 and len(_caldav_blocks(radicale, cal_path, start)) == 1
    avail = svc.availability(v, start - timedelta(minutes=30), start + timedelta(hours=1, minutes=30))
    assert [(b.start, b.end) for b in avail.busy] == [(start, start + timedelta(hours=1))]

    # a booking made here becomes a block on all three; cancelling removes them
    b_start = start + timedelta(days=1, hours=3)
    booked = svc.create_booking(v, BookingRequest(start=b_start, end=b_start + timedelta(hours=2),
                                                  title="Smith consultation"))
    await svc.propagate(v)
    mine = [b for b in svc.blocks(v) if b["origin"] == f"booking:{booked['id']}"]
    assert len(mine) == 3 and all(b["state"] == "placed" for b in mine), mine
    assert len(_google_own(url)) == own_google + 1
    assert len(_outlook_blocks_at(graph, b_start)) == 1 and len(_caldav_blocks(radicale, cal_path, b_start)) == 1
    svc.cancel_booking(v, booked["id"])
    await svc.propagate(v)
    mine = [b for b in svc.blocks(v) if b["origin"] == f"booking:{booked['id']}"]
    assert all(b["state"] == "deleted" for b in mine)
    assert len(_google_own(url)) == own_google
    assert _outlook_blocks_at(graph, b_start) == [] and _caldav_blocks(radicale, cal_path, b_start) == []

    # the appointment is deleted in Google: its blocks go away everywhere
    httpx.delete(f"{url}{gsandbox.PREFIX}/calendars/{gsandbox.PRIMARY_ID}/events/{event_id}",
                 headers={"Authorization": f"Bearer {gsandbox.DEFAULT_ACCESS_TOKEN}"}).raise_for_status()
    await svc.sync_source(g_src)
    assert _outlook_blocks_at(graph, start) == [] and _caldav_blocks(radicale, cal_path, start) == []


def _outlook_blocks_at(graph: Any, start: datetime) -> list[Any]:
    return [e for e in graph.default_calendar().events.values() if not e.deleted and e.start == start]


def _google_own(url: str) -> list[dict[str, Any]]:
    return [e for e in _google_events(url, gsandbox.PRIMARY_ID) if str(e.get("summary", "")).startswith("Busy")]


async def test_outage_fails_closed(hub: Hub, providers: tuple[str, Any, Any]) -> None:
    _url, _google, _graph = providers
    svc = hub.calendar
    svc.auto_propagate = False
    v = hub.tenancy.create_vendor("Down Florist", "UTC").id
    conn = _oauth_connection(hub, v, "google-calendar", "http://127.0.0.1:9" + gsandbox.PREFIX, "x")
    src = svc.add_source(v, kind="google-calendar", calendar_id=gsandbox.PRIMARY_ID, connection_id=conn)["id"]
    res = await svc.sync_source(src)
    assert res["status"] == "failed"
    now = datetime.now(UTC)
    avail = svc.availability(v, now, now + timedelta(days=1))
    assert avail.free == [] and not avail.complete
    assert avail.sources[0].reason and "failed" in avail.sources[0].reason


def test_block_vevent_marker_parses() -> None:
    from wedsync.connectors.calendars.base import block_vevent, to_vcalendar

    text = to_vcalendar([block_vevent("wsb-1", datetime(2027, 1, 1, 10, tzinfo=UTC),
                                      datetime(2027, 1, 1, 11, tzinfo=UTC), "Busy")])
    ev = icalendar.Calendar.from_ical(text).walk("VEVENT")[0]
    assert ev.get(BLOCK_MARKER) is not None
