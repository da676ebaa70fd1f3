"""iCalendar feed import (SSRF guard, DNS pinning, redirects, size and content checks, change detection) and
the busy-time export."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import icalendar
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.e2e.procs import serve_app_in_thread
from wedsync.connectors.calendars.base import SyncStateExpired
from wedsync.connectors.channels.ical_feed import (
    BusyInterval,
    FeedRejected,
    ForbiddenTarget,
    IcalFeedConnector,
    check_address,
    parse_feed,
    render_busy_feed,
)
from wedsync.errors import InvalidInput

WINDOW = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC))
FEED = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Example//Feed//EN\r
BEGIN:VTIMEZONE\r
TZID:Europe/London\r
BEGIN:STANDARD\r
DTSTART:19701025T020000\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0000\r
END:STANDARD\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
UID:series@example.com\r
DTSTAMP:20260101T000000Z\r
DTSTART;TZID=Europe/London:20270301T090000\r
DTEND;TZID=Europe/London:20270301T100000\r
RRULE:FREQ=WEEKLY;COUNT=4\r
SUMMARY:Open studio\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:series@example.com\r
DTSTAMP:20260101T000000Z\r
RECURRENCE-ID;TZID=Europe/London:20270308T090000\r
DTSTART;TZID=Europe/London:20270308T120000\r
DTEND;TZID=Europe/London:20270308T130000\r
SUMMARY:Open studio (late)\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:fair@example.com\r
DTSTAMP:20260101T000000Z\r
DTSTART;VALUE=DATE:20270410\r
DTEND;VALUE=DATE:20270412\r
SUMMARY:Wedding fair\r
END:VEVENT\r
END:VCALENDAR\r
"""


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.5.4", "169.254.169.254",
                                "100.64.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "0.0.0.0"])
def test_non_public_addresses_are_refused(ip: str) -> None:
    with pytest.raises(ForbiddenTarget):
        check_address(ip, allow_private=False)


def test_public_and_allowed_private_addresses_pass() -> None:
    check_address("93.184.216.34", allow_private=False)
    check_address("2606:2800:220:1:248:1893:25c8:1946", allow_private=False)
    check_address("127.0.0.1", allow_private=True)
    with pytest.raises(ForbiddenTarget):
        check_address("224.0.0.1", allow_private=True)  # multicast never


def resolver(table: dict[str, list[str]]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


def feed_connector(handler: Any, table: dict[str, list[str]], url: str = "https://cal.example.com/f.ics",
                   **kw: Any) -> IcalFeedConnector:
    return IcalFeedConnector(feed_url=url, transport=httpx.MockTransport(handler), resolve=resolver(table),
                             account_key=f"feed-{id(handler)}", **kw)


async def test_dns_is_pinned_to_the_checked_address() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=FEED.encode(), headers={"content-type": "text/calendar"})

    conn = feed_connector(handler, {"cal.example.com": ["93.184.216.34"]}, url="webcal://cal.example.com/f.ics")
    page = await conn.list_changes("feed", None, None, *WINDOW)
    assert {c.remote_id for c in page.changes} == {"series@example.com", "fair@example.com"}
    request = seen[0]
    assert request.url.host == "93.184.216.34" and request.url.scheme == "https"
    assert request.headers["host"] == "cal.example.com"
    assert request.extensions["sni_hostname"] == "cal.example.com"
    await conn.aclose()


async def test_private_resolution_and_private_redirects_are_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "93.184.216.34":
            return httpx.Response(302, headers={"location": "http://metadata.internal/latest/"})
        raise AssertionError(f"must not connect to {request.url}")

    conn = feed_connector(handler, {"cal.example.com": ["10.0.0.7"]})
    with pytest.raises(ForbiddenTarget):
        await conn.list_changes("feed", None, None, *WINDOW)
    await conn.aclose()
    conn = feed_connector(handler, {"cal.example.com": ["93.184.216.34"], "metadata.internal": ["169.254.169.254"]})
    with pytest.raises(ForbiddenTarget):
        await conn.list_changes("feed", None, None, *WINDOW)
    await conn.aclose()
    conn = feed_connector(handler, {"cal.example.com": ["93.184.216.34", "127.0.0.1"]})  # one bad answer is enough
    with pytest.raises(ForbiddenTarget):
        await conn.list_changes("feed", None, None, *WINDOW)
    await conn.aclose()


@pytest.mark.parametrize(("body", "ctype"), [
    (b"<html><body>Sign in</body></html>", "text/html"),
    (b'{"events": []}', "application/json"),
    (b"hello, this is not a calendar", "text/plain"),
    (b"BEGIN:VCALENDAR\r\nSUMMARY:\xff\xfe broken\r\nEND:VCALENDAR\r\n", "text/calendar"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:not-a-date\r\n", "text/calendar"),
])
async def test_hostile_or_wrong_bodies_are_rejected(body: bytes, ctype: str) -> None:
    conn = feed_connector(lambda r: httpx.Response(200, content=body, headers={"content-type": ctype}),
                          {"cal.example.com": ["93.184.216.34"]})
    with pytest.raises(FeedRejected):
        await conn.list_changes("feed", None, None, *WINDOW)
    await conn.aclose()


async def test_oversized_feed_stops_reading() -> None:
    chunks = {"sent": 0}

    async def stream() -> Any:
        yield b"BEGIN:VCALENDAR\r\n"
        for _ in range(200):
            chunks["sent"] += 1
            yield b"X" * 65536

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream(), headers={"content-type": "text/calendar"})

    conn = feed_connector(handler, {"cal.example.com": ["93.184.216.34"]}, max_bytes=1024 * 1024)
    with pytest.raises(FeedRejected):
        await conn.list_changes("feed", None, None, *WINDOW)
    assert chunks["sent"] < 40
    await conn.aclose()


def test_too_many_components_rejected() -> None:
    events = "".join(f"BEGIN:VEVENT\r\nUID:{i}\r\nDTSTART:20270101T000000Z\r\nEND:VEVENT\r\n" for i in range(60))
    with pytest.raises(FeedRejected):
        parse_feed(f"BEGIN:VCALENDAR\r\n{events}END:VCALENDAR\r\n".encode(), "text/calendar", max_components=50)


def test_groups_carry_their_timezones() -> None:
    changes = {c.remote_id: c for c in parse_feed(FEED.encode(), "text/calendar; charset=utf-8")}
    series = icalendar.Calendar.from_ical(changes["series@example.com"].ical)
    assert len(series.walk("VEVENT")) == 2 and len(series.walk("VTIMEZONE")) == 1
    fair = icalendar.Calendar.from_ical(changes["fair@example.com"].ical)
    assert not fair.walk("VTIMEZONE")


@pytest.fixture(scope="module")
def feed_server() -> Iterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"body": FEED, "hits": 0, "not_modified": 0}

    async def feed(request: Request) -> Response:
        state["hits"] += 1
        etag = f'"{hash(state["body"]) & 0xFFFFFFFF:x}"'
        if request.headers.get("if-none-match") == etag:
            state["not_modified"] += 1
            return Response(status_code=304, headers={"etag": etag})
        return Response(state["body"], media_type="text/calendar", headers={"etag": etag})

    url, stop = serve_app_in_thread(Starlette(routes=[Route("/vendor.ics", feed)]))
    try:
        yield f"{url}/vendor.ics", state
    finally:
        stop()


async def test_loopback_feed_needs_operator_permission_then_polls(feed_server: tuple[str, dict[str, Any]]) -> None:
    url, state = feed_server
    refused = IcalFeedConnector(feed_url=url)
    with pytest.raises(ForbiddenTarget):
        await refused.list_changes("feed", None, None, *WINDOW)
    await refused.aclose()
    conn = IcalFeedConnector(feed_url=url, allow_private=True, account_key="feed-loopback")
    page = await conn.list_changes("feed", None, None, *WINDOW)
    assert len(page.changes) == 2 and page.sync_state
    quiet = await conn.list_changes("feed", page.sync_state, None, *WINDOW)
    assert quiet.changes == [] and state["not_modified"] == 1
    state["body"] = FEED.replace("Wedding fair", "Wedding fair (cancelled)").replace(
        "BEGIN:VEVENT\r\nUID:series", "BEGIN:VEVENT\r\nSTATUS:CANCELLED\r\nUID:series", 1)
    with pytest.raises(SyncStateExpired):
        await conn.list_changes("feed", page.sync_state, None, *WINDOW)
    hits = state["hits"]
    full = await conn.list_changes("feed", None, None, *WINDOW)
    assert state["hits"] == hits  # the body fetched for the check is reused
    assert any("cancelled" in (c.ical or "") for c in full.changes) and full.sync_state != page.sync_state
    await conn.aclose()


def test_connector_rejects_non_http_urls() -> None:
    for bad in ("file:///etc/passwd", "ftp://example.com/x.ics", "not a url"):
        with pytest.raises(InvalidInput):
            IcalFeedConnector(feed_url=bad)


def test_busy_feed_export_round_trips_and_hides_details() -> None:
    start = datetime(2027, 6, 12, 13, 0, tzinfo=UTC)
    text = render_busy_feed([
        BusyInterval("bk-1", start, start + timedelta(hours=5)),
        BusyInterval("bk-2", date(2027, 6, 20), date(2027, 6, 21), "Wedding"),
    ], name="Bloom & Vine availability", stamp=start)
    cal = icalendar.Calendar.from_ical(text)
    assert str(cal["METHOD"]) == "PUBLISH" and str(cal["X-WR-CALNAME"]) == "Bloom & Vine availability"
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT15M" in text
    events = cal.walk("VEVENT")
    assert [str(e["UID"]) for e in events] == ["bk-1@wedsync.app", "bk-2@wedsync.app"]
    assert events[0]["DTSTART"].dt == start and events[1]["DTSTART"].dt == date(2027, 6, 20)
    assert {c.remote_id for c in parse_feed(text.encode(), "text/calendar")} == {"bk-1@wedsync.app",
                                                                                  "bk-2@wedsync.app"}
    with pytest.raises(InvalidInput):
        render_busy_feed([BusyInterval("x", datetime(2027, 1, 1), datetime(2027, 1, 2))], name="n")
    with pytest.raises(InvalidInput):
        render_busy_feed([BusyInterval("x", start, start)], name="n")


async def test_fetch_feed_changes_one_shot(feed_server: tuple[str, dict[str, Any]]) -> None:
    from wedsync.connectors.channels.ical_feed import fetch_feed_changes

    url, state = feed_server
    state["body"] = FEED
    with pytest.raises(ForbiddenTarget):
        await fetch_feed_changes(url)
    changes = await fetch_feed_changes(url, allow_private=True)
    assert {c.remote_id for c in changes} == {"series@example.com", "fair@example.com"}
