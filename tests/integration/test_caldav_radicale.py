"""The CalDAV connector against a real Radicale server: discovery, sync-collection full and incremental,
an invalid sync token, idempotent blocks with If-None-Match / If-Match, deletions."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import icalendar
import pytest

from tests.integration.radicale_server import RadicaleServer, radicale  # noqa: F401 (fixture)
from wedsync.connectors.calendars.base import BLOCK_MARKER, EtagMismatch, SyncStateExpired
from wedsync.connectors.calendars.caldav_icloud import CalDavConnector
from wedsync.connectors.errors import ReauthRequired

WINDOW = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC))

SERIES = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Apple Inc.//iPhone OS 18.1//EN
BEGIN:VEVENT
UID:series-1@example.com
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/London:20270301T090000
DTEND;TZID=Europe/London:20270301T100000
RRULE:FREQ=WEEKLY;COUNT=8
EXDATE;TZID=Europe/London:20270315T090000
SUMMARY:Studio hours
END:VEVENT
BEGIN:VEVENT
UID:series-1@example.com
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/London:20270322T090000
DTSTART;TZID=Europe/London:20270322T140000
DTEND;TZID=Europe/London:20270322T150000
SUMMARY:Studio hours (moved)
END:VEVENT
END:VCALENDAR
"""


def single(uid: str, day: str, summary: str = "Venue visit") -> str:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
            f"DTSTAMP:20260101T000000Z\r\nDTSTART:{day}T100000Z\r\nDTEND:{day}T110000Z\r\n"
            f"SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def connector(server: RadicaleServer, password: str | None = None) -> CalDavConnector:
    return CalDavConnector(username=server.user, password=password or server.password, base_url=server.url,
                           account_key=f"radicale-{secrets.token_hex(4)}", timeout=10)


async def test_discovery_full_and_incremental_sync(radicale: RadicaleServer) -> None:  # noqa: F811
    cal = radicale.make_calendar()
    assert radicale.put_raw(f"{cal}series-1.ics", SERIES).status_code == 201
    for i in range(5):
        assert radicale.put_raw(f"{cal}ev-{i}.ics", single(f"ev-{i}", f"202704{10 + i}")).status_code == 201
    conn = connector(radicale)
    calendars = await conn.list_calendars()
    mine = next(c for c in calendars if c.id == cal)
    assert mine.writable
    page = await conn.list_changes(cal, None, None, *WINDOW)
    assert page.next_page is None and page.sync_state
    assert len(page.changes) == 6 and all(c.etag for c in page.changes)
    series = next(c for c in page.changes if c.remote_id.endswith("series-1.ics"))
    events = icalendar.Calendar.from_ical(series.ical).walk("VEVENT")
    assert len(events) == 2 and "EXDATE" in events[0] and "RECURRENCE-ID" in events[1]

    # the vendor edits on the phone: one change, one deletion, one new event
    radicale.put_raw(f"{cal}ev-1.ics", single("ev-1", "20270411", "Venue visit (moved)"))
    radicale.delete_raw(f"{cal}ev-2.ics")
    radicale.put_raw(f"{cal}ev-9.ics", single("ev-9", "20270420"))
    inc = await conn.list_changes(cal, page.sync_state, None, *WINDOW)
    by_id = {c.remote_id.rsplit("/", 1)[-1]: c for c in inc.changes}
    assert set(by_id) == {"ev-1.ics", "ev-2.ics", "ev-9.ics"}
    assert by_id["ev-2.ics"].ical is None and "moved" in (by_id["ev-1.ics"].ical or "")
    quiet = await conn.list_changes(cal, inc.sync_state, None, *WINDOW)
    assert quiet.changes == [] and quiet.sync_state

    with pytest.raises(SyncStateExpired):
        await conn.list_changes(cal, "http://radicale.org/ns/sync/not-a-token", None, *WINDOW)
    await conn.aclose()


async def test_blocks_idempotent_conditional_and_deleted(radicale: RadicaleServer) -> None:  # noqa: F811
    cal = radicale.make_calendar()
    conn = connector(radicale)
    start = datetime(2027, 6, 12, 13, 0, tzinfo=UTC)
    ref1 = await conn.put_block(cal, "blk-01J0WEDDING", start, start + timedelta(hours=5), "Busy (WedSync)")
    ref2 = await conn.put_block(cal, "blk-01J0WEDDING", start, start + timedelta(hours=6), "Busy (WedSync)")
    assert ref1.remote_id == ref2.remote_id and ref1.etag != ref2.etag
    page = await conn.list_changes(cal, None, None, *WINDOW)
    assert len(page.changes) == 1 and page.changes[0].etag == ref2.etag
    ev = icalendar.Calendar.from_ical(page.changes[0].ical).walk("VEVENT")[0]
    assert ev[BLOCK_MARKER] == "blk-01J0WEDDING" and ev["DTEND"].dt == start + timedelta(hours=6)
    with pytest.raises(EtagMismatch):
        await conn.put_block(cal, "blk-01J0WEDDING", start, start + timedelta(hours=1), "Busy",
                             existing_remote_id=ref1.remote_id, etag=ref1.etag)
    with pytest.raises(EtagMismatch):
        await conn.delete_block(cal, ref2.remote_id, ref1.etag)
    day = await conn.put_block(cal, "blk day/with spaces", start, start, "Wedding", all_day=True)
    assert day.remote_id.endswith(".ics") and " " not in day.remote_id
    await conn.delete_block(cal, ref2.remote_id, ref2.etag)
    await conn.delete_block(cal, ref2.remote_id)  # gone already
    inc = await conn.list_changes(cal, page.sync_state, None, *WINDOW)
    kinds = {c.remote_id: c.ical is None for c in inc.changes}
    assert kinds == {ref2.remote_id: True, day.remote_id: False}
    await conn.aclose()


async def test_wrong_password_is_reauth(radicale: RadicaleServer) -> None:  # noqa: F811
    conn = connector(radicale, password="wrong")
    with pytest.raises(ReauthRequired):
        await conn.list_calendars()
    await conn.aclose()
