"""iCalendar feeds: import a calendar from a URL behind an SSRF guard, and render a vendor's busy times as a feed.

Import (:class:`IcalFeedConnector`, slug ``ical-feed``): the feed is fetched through :class:`ProviderClient` over
:class:`GuardedTransport`, which resolves the host itself, refuses loopback, private, link-local, multicast and
other non-global addresses (unless ``allow_private``), connects to the address it checked (no second DNS lookup
an attacker could answer differently; TLS still verifies the host name via SNI), follows at most
``max_redirects`` redirects re-checking each target, and stops reading past ``max_bytes``. The body must be a
``VCALENDAR`` (HTML, JSON or other bodies are refused) in UTF-8; items are grouped by UID (a series and its
overrides stay together) with the VTIMEZONEs they reference. Feeds have no change feed: the sync state is the
body's digest plus HTTP validators; when the feed changed, an incremental listing raises
:class:`SyncStateExpired` and the full listing that follows reuses the body just downloaded.

Export (:func:`render_busy_feed`): a vendor's busy intervals as a privacy-preserving ``METHOD:PUBLISH`` feed
(no client names) for directories without a calendar API (The Knot, WeddingWire, Zola); the calendar service
serves it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import socket
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import httpx
import icalendar

from wedsync.connectors.base import Capabilities, Channel, CredentialField
from wedsync.connectors.calendars.base import (
    PRODID,
    CalendarConnector,
    CalendarInfo,
    ChangePage,
    SourceChange,
    SyncStateExpired,
)
from wedsync.connectors.errors import Fatal
from wedsync.connectors.http import ProviderClient, RetryPolicy
from wedsync.errors import InvalidInput
from wedsync.logging import register_secret

__all__ = [
    "BusyInterval",
    "FeedRejected",
    "ForbiddenTarget",
    "GuardedTransport",
    "IcalFeedConnector",
    "check_address",
    "fetch_feed_changes",
    "parse_feed",
    "render_busy_feed",
]

SLUG = "ical-feed"
MAX_BYTES = 5 * 1024 * 1024
MAX_COMPONENTS = 20_000
_REDIRECTS = (301, 302, 303, 307, 308)
_REFUSED_TYPES = ("text/html", "application/json", "application/xml", "text/xml", "image/", "video/", "audio/")


class FeedRejected(Fatal):
    """The URL answered, but not with an acceptable iCalendar feed (too big, wrong type, not a VCALENDAR)."""

    code = "invalid_ics"
    status = 422


class ForbiddenTarget(Fatal):
    """The feed URL (or a redirect) points at an address the SSRF guard refuses."""

    code = "forbidden_url"
    status = 422


def check_address(ip: str, *, allow_private: bool) -> None:
    """Refuse non-global targets (loopback, RFC 1918, link-local and cloud metadata, CGNAT, multicast, ...)."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_multicast or addr.is_unspecified:
        raise ForbiddenTarget(f"refusing to fetch from {addr}", provider=SLUG)
    if not allow_private and not addr.is_global:
        raise ForbiddenTarget("the feed URL resolves to a non-public address", provider=SLUG)


class _LimitedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int) -> None:
        self.inner, self.limit = inner, limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self.inner:
            seen += len(chunk)
            if seen > self.limit:
                raise FeedRejected(f"the feed is larger than {self.limit} bytes", provider=SLUG)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """Resolve, check and pin every hop; follow a few redirects; cap the body size."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None, *, allow_private: bool = False,
                 max_bytes: int = MAX_BYTES, max_redirects: int = 3, resolve: Any = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self._resolve = resolve  # test hook: async (host, port) -> list[str]

    async def _addresses(self, host: str, port: int) -> list[str]:
        if self._resolve is not None:
            return list(await self._resolve(host, port))
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except socket.gaierror:
            raise Fatal(f"cannot resolve the feed host {host!r}", provider=SLUG) from None
        return [str(info[4][0]) for info in infos]

    async def _pinned(self, request: httpx.Request) -> httpx.Request:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise ForbiddenTarget("feed URLs must be http(s)", provider=SLUG)
        host = url.host
        try:
            ipaddress.ip_address(host)
            literal = True
        except ValueError:
            literal = False
        if literal:
            check_address(host, allow_private=self.allow_private)
            return request
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await self._addresses(host, port)
        if not addresses:
            raise Fatal(f"cannot resolve the feed host {host!r}", provider=SLUG)
        for ip in addresses:  # every address must pass: the resolver may hand out any of them later
            check_address(ip, allow_private=self.allow_private)
        extensions = dict(request.extensions)
        if url.scheme == "https":
            extensions["sni_hostname"] = host  # certificate still checked against the name
        return httpx.Request(request.method, url.copy_with(host=addresses[0]), headers=request.headers,
                             stream=request.stream, extensions=extensions)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        current = request
        for _ in range(self.max_redirects + 1):
            response = await self.inner.handle_async_request(await self._pinned(current))
            if response.status_code not in _REDIRECTS or "location" not in response.headers:
                assert isinstance(response.stream, httpx.AsyncByteStream)
                return httpx.Response(response.status_code, headers=response.headers,
                                      stream=_LimitedStream(response.stream, self.max_bytes),
                                      extensions=response.extensions, request=request)
            await response.aclose()
            target = httpx.URL(urljoin(str(current.url), response.headers["location"]))
            headers = httpx.Headers(current.headers)
            headers["host"] = target.netloc.decode("ascii")
            if target.host != current.url.host:
                headers.pop("authorization", None)
            current = httpx.Request("GET", target, headers=headers, extensions=current.extensions)
        raise FeedRejected(f"the feed redirected more than {self.max_redirects} times", provider=SLUG)

    async def aclose(self) -> None:
        await self.inner.aclose()


# ---------------------------------------------------------------------------------------------- parsing


def parse_feed(body: bytes, content_type: str | None = None, *, max_components: int = MAX_COMPONENTS
               ) -> list[SourceChange]:
    """A feed body as one :class:`SourceChange` per UID (with the VTIMEZONEs its events reference)."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if any(ctype.startswith(t) for t in _REFUSED_TYPES):
        raise FeedRejected(f"the URL returned {ctype}, not an iCalendar feed", provider=SLUG)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FeedRejected("the feed is not valid UTF-8", provider=SLUG) from None
    if not text.lstrip().upper().startswith("BEGIN:VCALENDAR"):
        raise FeedRejected("the body is not an iCalendar feed (no BEGIN:VCALENDAR)", provider=SLUG)
    if text.upper().count("BEGIN:V") > max_components + 2:
        raise FeedRejected(f"the feed has more than {max_components} components", provider=SLUG)
    try:
        cal = icalendar.Calendar.from_ical(text)
    except (ValueError, IndexError, KeyError) as exc:
        raise FeedRejected(f"the feed is not valid iCalendar ({exc.__class__.__name__})", provider=SLUG) from None
    if not isinstance(cal, icalendar.Calendar):
        raise FeedRejected("the feed is not a VCALENDAR", provider=SLUG)
    zones = {str(tz.get("TZID")): tz for tz in cal.walk("VTIMEZONE")}
    groups: dict[str, list[icalendar.cal.Component]] = {}
    for ev in cal.walk("VEVENT"):
        uid = ev.get("UID")
        key = str(uid) if uid else "nouid-" + hashlib.sha256(ev.to_ical()).hexdigest()[:24]
        groups.setdefault(key, []).append(ev)
    out: list[SourceChange] = []
    for uid, events in groups.items():
        wrapper = icalendar.Calendar()
        wrapper.add("prodid", PRODID)
        wrapper.add("version", "2.0")
        used = {str(prop.params["TZID"]) for ev in events for prop in _props(ev) if "TZID" in prop.params}
        for tzid in sorted(used):
            if tzid in zones:
                wrapper.add_component(zones[tzid])
        for ev in events:
            wrapper.add_component(ev)
        data = wrapper.to_ical()
        out.append(SourceChange(uid, data.decode("utf-8"), hashlib.sha256(data).hexdigest()[:32]))
    return out


def _props(ev: icalendar.cal.Component) -> Iterable[Any]:
    for value in ev.values():
        for item in value if isinstance(value, list) else [value]:
            if hasattr(item, "params"):
                yield item


# ---------------------------------------------------------------------------------------------- connector


@dataclass
class _Fetched:
    body: bytes
    content_type: str | None
    state: str
    at: float


def redacted_feed_url(url: str) -> str:
    """How a feed address is shown (API, names): scheme and host only; its path and query often are the secret
    (``https://p59-caldav.icloud.com/published/2/<token>`` -> ``https://p59-caldav.icloud.com/…``)."""
    text = url.strip()
    if text.lower().startswith("webcal://"):
        text = "https://" + text[len("webcal://"):]
    parts = urlsplit(text)
    if not parts.hostname:
        return "…"
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return f"{parts.scheme}://{host}/…"


class IcalFeedConnector(CalendarConnector):
    slug: ClassVar[str] = SLUG
    display_name: ClassVar[str] = "iCalendar feed (URL)"
    channel: ClassVar[Channel] = Channel.ICALENDAR
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="calendars",
        read=("events",),
        write=(),
        webhooks=(),
        incremental=(),
        notes="Read-only import of any .ics URL (webcal:// accepted) behind an SSRF guard: public addresses "
        "only unless the operator allows private ones, DNS pinned per hop, at most 3 redirects, 5 MiB, "
        "20,000 components, UTF-8 VCALENDAR bodies only. Polled with conditional GET; a changed feed is "
        "listed in full. Export of a vendor's availability as a feed (for The Knot, WeddingWire, Zola, "
        "which have no calendar API) is served by the calendar service.",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("feed_url", "The calendar's iCalendar (.ics / webcal://) address; private addresses "
                        "often embed a secret token"),
    )
    default_base_url: ClassVar[str | None] = None
    docs_url: ClassVar[str | None] = "https://datatracker.ietf.org/doc/html/rfc5545"

    def __init__(
        self,
        *,
        feed_url: str,
        base_url: str | None = None,
        account_key: str = "default",
        timeout: float = 20.0,
        allow_private: bool = False,
        max_bytes: int = MAX_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        resolve: Any = None,
    ) -> None:
        url = feed_url.strip()
        if url.lower().startswith("webcal://"):
            url = "https://" + url[len("webcal://"):]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput("feed_url must be an absolute http(s) or webcal URL", code="invalid_url")
        self.feed_url = url
        # A private feed address is a bearer credential (Google's "secret address in iCal format", iCloud's
        # published path): keep it, its path and its query out of logs and error messages.
        for secret in (url, parts.path if parts.path.strip("/") else "", parts.query):
            if secret:
                register_secret(secret)
        self._cache: _Fetched | None = None
        self.client = ProviderClient(
            SLUG, f"{parts.scheme}://{parts.netloc}", account_key=account_key, timeout=timeout,
            retry=RetryPolicy(max_attempts=3, max_total_wait=10.0),
            transport=GuardedTransport(transport, allow_private=allow_private, max_bytes=max_bytes,
                                       resolve=resolve),
            headers={"Accept": "text/calendar, text/plain;q=0.5", "User-Agent": "WedSync-feed-import/1"},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def list_calendars(self) -> list[CalendarInfo]:
        return [CalendarInfo(id="feed", name=urlsplit(self.feed_url).hostname or "feed", writable=False)]

    async def _fetch(self, validators: dict[str, str]) -> _Fetched | None:
        headers = {}
        if validators.get("etag"):
            headers["If-None-Match"] = validators["etag"]
        if validators.get("modified"):
            headers["If-Modified-Since"] = validators["modified"]
        response = await self.client.request("GET", self.feed_url, headers=headers or None)
        if response.status_code == 304:
            return None
        body = response.content
        digest = hashlib.sha256(body).hexdigest()
        state = json.dumps({"digest": digest, "etag": response.headers.get("etag"),
                            "modified": response.headers.get("last-modified")}, separators=(",", ":"))
        return _Fetched(body, response.headers.get("content-type"), state, time.monotonic())

    async def list_changes(
        self,
        calendar_id: str,
        sync_state: str | None,
        page: str | None,
        window_start: datetime,
        window_end: datetime,
    ) -> ChangePage:
        if sync_state:
            try:
                validators = json.loads(sync_state)
                assert isinstance(validators, dict)
            except (ValueError, AssertionError):
                raise SyncStateExpired("unreadable feed sync state", provider=SLUG) from None
            fetched = await self._fetch(validators)
            if fetched is None or json.loads(fetched.state)["digest"] == validators.get("digest"):
                return ChangePage([], None, sync_state)
            parse_feed(fetched.body, fetched.content_type)  # a broken new version is an error, not a resync
            self._cache = fetched
            raise SyncStateExpired("the feed changed: list it in full", provider=SLUG)
        cached = self._cache
        self._cache = None
        if cached is not None and time.monotonic() - cached.at < 60:
            fetched = cached
        else:
            got = await self._fetch({})
            assert got is not None  # no validators were sent, so no 304
            fetched = got
        return ChangePage(parse_feed(fetched.body, fetched.content_type), None, fetched.state)


# ---------------------------------------------------------------------------------------------- export


@dataclass(frozen=True, slots=True)
class BusyInterval:
    """One busy period to publish: ``uid`` must be stable (e.g. the booking or block id)."""

    uid: str
    start: datetime | date
    end: datetime | date
    summary: str = "Booked"


def render_busy_feed(intervals: Iterable[BusyInterval], *, name: str, refresh: timedelta = timedelta(minutes=15),
                     domain: str = "wedsync.app", stamp: datetime | None = None) -> str:
    """A ``METHOD:PUBLISH`` feed of busy periods: times in UTC (dates for all-day), opaque, no personal data."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    cal.add("refresh-interval", icalendar.vDuration(refresh), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", icalendar.vDuration(refresh))
    now = stamp or datetime.now(UTC)
    for item in intervals:
        if isinstance(item.start, datetime) != isinstance(item.end, datetime):
            raise InvalidInput("an interval is either timed or all-day", code="invalid_interval")
        ev = icalendar.Event()
        ev.add("uid", f"{item.uid}@{domain}")
        ev.add("dtstamp", now)
        if isinstance(item.start, datetime) and isinstance(item.end, datetime):
            if item.start.tzinfo is None or item.end.tzinfo is None:
                raise InvalidInput("feed times must be timezone-aware", code="naive_datetime")
            ev.add("dtstart", item.start.astimezone(UTC))
            ev.add("dtend", item.end.astimezone(UTC))
        else:
            ev.add("dtstart", item.start)
            ev.add("dtend", item.end)
        if item.end <= item.start:  # type: ignore[operator]
            raise InvalidInput("an interval must end after it starts", code="invalid_interval")
        ev.add("summary", item.summary)
        ev.add("transp", "OPAQUE")
        ev.add("class", "PUBLIC")
        cal.add_component(ev)
    return str(cal.to_ical().decode("utf-8"))


async def fetch_feed_changes(url: str, *, allow_private: bool = False, request_timeout: float = 20.0,
                             max_bytes: int = MAX_BYTES) -> list[SourceChange]:
    """One full, guarded read of a feed (for callers that poll without keeping a sync state)."""
    conn = IcalFeedConnector(feed_url=url, allow_private=allow_private, timeout=request_timeout,
                             max_bytes=max_bytes,
                             account_key=f"feed-{hashlib.sha256(url.encode()).hexdigest()[:16]}")
    try:
        now = datetime.now(UTC)
        page = await conn.list_changes("feed", None, None, now, now)
        return page.changes
    finally:
        await conn.aclose()
