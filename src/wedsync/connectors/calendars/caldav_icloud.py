"""Apple iCloud (and any CalDAV server) connector: RFC 6578 sync-collection, calendar-multiget, conditional writes.

Channel: CalDAV (RFC 4791) over HTTPS with the Apple ID and an app-specific password (HTTP Basic). Raw WebDAV
requests go through :class:`ProviderClient` (one HTTP layer); multistatus XML is parsed with the stdlib.

* Listing: ``REPORT sync-collection`` (Depth 0, sync-level 1) with the stored token lists changed member hrefs
  with their ETags and removed ones (404 status); the changed ones are fetched with ``calendar-multiget`` in
  batches. An empty token lists every member (a full listing). A rejected token (``DAV:valid-sync-token``
  precondition, 403/409/412) raises :class:`SyncStateExpired`. CalDAV resources already hold a series whole.
* Writes: a block is the resource ``<block uid>.ics``; created with ``If-None-Match: *`` (so a second create
  finds it and updates it), updated with ``If-Match`` (412 -> :class:`EtagMismatch`), deleted with ``If-Match``.
* No push: CalDAV has none, so the engine polls (the sync-collection REPORT is cheap when nothing changed).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import unquote, urljoin, urlsplit

import defusedxml.ElementTree as DefusedET
import httpx
import icalendar
from defusedxml import DefusedXmlException

from wedsync.connectors.base import Capabilities, Channel, CredentialField
from wedsync.connectors.calendars.base import (
    BLOCK_MARKER,
    BlockRef,
    CalendarConnector,
    CalendarInfo,
    ChangePage,
    EtagMismatch,
    SourceChange,
    SyncStateExpired,
    block_resource_name,
    block_vevent,
    to_vcalendar,
)
from wedsync.connectors.errors import Fatal, ReauthRequired, SchemaMismatch
from wedsync.connectors.http import ProviderClient

__all__ = ["CalDavConnector", "parse_multistatus"]

SLUG = "apple-caldav"
DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"
ICAL_NS = "http://apple.com/ns/ical/"
MULTIGET_BATCH = 100
_NS = f'xmlns:D="{DAV}" xmlns:C="{CALDAV}"'


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


class DavResponse:
    """One ``<D:response>``: its href, HTTP status and the properties found with status 200."""

    def __init__(self, href: str, status: int | None, props: dict[str, ET.Element]) -> None:
        self.href, self.status, self.props = href, status, props

    def text(self, ns: str, name: str) -> str | None:
        el = self.props.get(_q(ns, name))
        return el.text if el is not None and el.text is not None else None


def _status_code(text: str | None) -> int | None:
    parts = (text or "").split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def parse_multistatus(content: bytes) -> tuple[list[DavResponse], str | None]:
    """The responses of a 207 multistatus body and its top-level ``sync-token`` (if any)."""
    try:
        root = DefusedET.fromstring(content)  # no entity expansion, no external references
    except (ET.ParseError, DefusedXmlException) as exc:
        raise SchemaMismatch("CalDAV server sent unreadable XML", provider=SLUG) from exc
    if root.tag != _q(DAV, "multistatus"):
        raise SchemaMismatch(f"expected a DAV multistatus, got {root.tag[:60]}", provider=SLUG)
    out: list[DavResponse] = []
    for resp in root.findall(_q(DAV, "response")):
        href_el = resp.find(_q(DAV, "href"))
        if href_el is None or not href_el.text:
            continue
        props: dict[str, ET.Element] = {}
        for propstat in resp.findall(_q(DAV, "propstat")):
            if _status_code(propstat.findtext(_q(DAV, "status"))) == 200:
                prop = propstat.find(_q(DAV, "prop"))
                if prop is not None:
                    for child in prop:
                        props[child.tag] = child
        out.append(DavResponse(href_el.text.strip(), _status_code(resp.findtext(_q(DAV, "status"))), props))
    token = root.findtext(_q(DAV, "sync-token"))
    return out, token.strip() if token else None


def _has_vevent(ical: str) -> bool:
    return "BEGIN:VEVENT" in ical.upper()


class CalDavConnector(CalendarConnector):
    slug: ClassVar[str] = SLUG
    display_name: ClassVar[str] = "Apple iCloud Calendar (CalDAV)"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="calendars",
        read=("calendars", "events"),
        write=("busy_blocks",),
        webhooks=(),
        incremental=("events",),
        notes="CalDAV with an app-specific password (iCloud; any RFC 4791 server such as Radicale, Fastmail or "
        "Nextcloud with base_url). RFC 6578 sync-collection with ETags (an invalid sync token -> full "
        "resync), calendar-multiget for the data; busy blocks written with If-None-Match/If-Match. No push "
        "channel exists: the engine polls. Listings are not limited to the time window (CalDAV sync is per "
        "collection).",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("username", "Apple ID (e-mail) or CalDAV user name", secret=False),
        CredentialField("password", "App-specific password (appleid.apple.com > Sign-In and Security)"),
    )
    default_base_url: ClassVar[str | None] = "https://caldav.icloud.com"
    docs_url: ClassVar[str | None] = "https://datatracker.ietf.org/doc/html/rfc6578"
    supports_blocks: ClassVar[bool] = True

    def __init__(
        self,
        *,
        username: str,
        password: str,
        base_url: str | None = None,
        account_key: str = "default",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = (base_url or self.default_base_url or "").rstrip("/")
        self.client = ProviderClient(
            SLUG, self.base_url, auth=httpx.BasicAuth(username, password), account_key=account_key,
            timeout=timeout, transport=transport,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    # --- plumbing ----------------------------------------------------------------------------------------

    def _target(self, href: str) -> str:
        """A server href as a request target: relative to the base, or absolute on an allowed host."""
        parts = urlsplit(href)
        if not parts.scheme:
            return href
        base = urlsplit(self.base_url)
        same = parts.hostname == base.hostname
        icloud = (base.hostname or "").endswith("icloud.com") and (parts.hostname or "").endswith(".icloud.com")
        if parts.scheme != "https" and not same:
            raise Fatal(f"refusing a non-HTTPS CalDAV href on another host: {parts.hostname}", provider=SLUG)
        if not (same or icloud):
            raise Fatal(f"refusing a CalDAV href on another host: {parts.hostname}", provider=SLUG)
        return href

    async def _dav(self, method: str, path: str, body: str, depth: str, *,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.request(
            method, self._target(path), content=body.encode(),
            headers={"Content-Type": "application/xml; charset=utf-8", "Depth": depth, **(headers or {})})

    async def _propfind(self, path: str, props: str, depth: str) -> list[DavResponse]:
        body = f'<?xml version="1.0" encoding="utf-8"?><D:propfind {_NS}><D:prop>{props}</D:prop></D:propfind>'
        response = await self._dav("PROPFIND", path, body, depth)
        return parse_multistatus(response.content)[0]

    @staticmethod
    def _href_of(resp: DavResponse, ns: str, name: str) -> str | None:
        el = resp.props.get(_q(ns, name))
        href = el.find(_q(DAV, "href")) if el is not None else None
        return href.text.strip() if href is not None and href.text else None

    async def calendar_home(self) -> str:
        """The user's calendar-home-set (via the current-user-principal)."""
        found = await self._propfind("/", "<D:current-user-principal/>", "0")
        principal = next((h for r in found if (h := self._href_of(r, DAV, "current-user-principal"))), None)
        if principal is None:
            raise SchemaMismatch("the server named no current-user-principal", provider=SLUG)
        found = await self._propfind(principal, "<C:calendar-home-set/>", "0")
        home = next((h for r in found if (h := self._href_of(r, CALDAV, "calendar-home-set"))), None)
        if home is None:
            raise SchemaMismatch("the principal has no calendar-home-set", provider=SLUG)
        return home

    # --- the interface -----------------------------------------------------------------------------------

    async def list_calendars(self) -> list[CalendarInfo]:
        home = await self.calendar_home()
        props = ("<D:resourcetype/><D:displayname/><D:current-user-privilege-set/>"
                 "<C:supported-calendar-component-set/><C:calendar-timezone/>")
        out: list[CalendarInfo] = []
        for resp in await self._propfind(home, props, "1"):
            rtype = resp.props.get(_q(DAV, "resourcetype"))
            if rtype is None or rtype.find(_q(CALDAV, "calendar")) is None:
                continue
            comps = resp.props.get(_q(CALDAV, "supported-calendar-component-set"))
            if comps is not None and len(comps) and not any(c.get("name") == "VEVENT" for c in comps):
                continue  # a reminders (VTODO) list
            privileges = resp.props.get(_q(DAV, "current-user-privilege-set"))
            writable = privileges is None or any(
                p.find(_q(DAV, n)) is not None for p in privileges for n in ("write", "write-content", "all"))
            tz_text = resp.text(CALDAV, "calendar-timezone")
            zone = None
            if tz_text:
                try:
                    tz = icalendar.Calendar.from_ical(tz_text).walk("VTIMEZONE")
                    zone = str(tz[0]["TZID"]) if tz else None
                except ValueError:
                    zone = None
            href = resp.href if resp.href.endswith("/") else resp.href + "/"
            out.append(CalendarInfo(id=href, name=resp.text(DAV, "displayname") or unquote(href.rstrip("/")
                                                                                          .rsplit("/", 1)[-1]),
                                    timezone=zone, writable=writable))
        return out

    async def list_changes(
        self,
        calendar_id: str,
        sync_state: str | None,
        page: str | None,
        window_start: datetime,
        window_end: datetime,
    ) -> ChangePage:
        token = f"<D:sync-token>{_xml_text(sync_state)}</D:sync-token>" if sync_state else "<D:sync-token/>"
        body = (f'<?xml version="1.0" encoding="utf-8"?><D:sync-collection {_NS}>{token}'
                "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>")
        try:
            response = await self._dav("REPORT", calendar_id, body, "0")
        except Fatal as exc:
            if sync_state and exc.http_status in (400, 409, 412):
                raise SyncStateExpired("the CalDAV server rejected the sync token: full resync", provider=SLUG,
                                       http_status=exc.http_status) from exc
            raise
        except ReauthRequired as exc:
            # RFC 6578 3.2: an invalid token is a 403 with the DAV:valid-sync-token precondition, the same status
            # as a permission problem (whose body the HTTP layer does not keep). Ask about the collection itself:
            # if that works, the credentials are fine and it was the token.
            if not sync_state or exc.http_status != 403:
                raise
            await self._propfind(calendar_id, "<D:resourcetype/>", "0")
            raise SyncStateExpired("the CalDAV server rejected the sync token: full resync", provider=SLUG,
                                   http_status=403) from exc
        responses, new_token = parse_multistatus(response.content)
        if new_token is None:
            raise SchemaMismatch("sync-collection answered without a sync-token", provider=SLUG)
        base_path = urlsplit(calendar_id).path.rstrip("/") + "/"
        changed: list[str] = []
        changes: list[SourceChange] = []
        for resp in responses:
            path = urlsplit(resp.href).path
            if path.rstrip("/") + "/" == base_path:
                continue  # the collection itself
            if resp.status == 404:
                changes.append(SourceChange(resp.href, None, None))
            else:
                changed.append(resp.href)
        for i in range(0, len(changed), MULTIGET_BATCH):
            changes.extend(await self._multiget(calendar_id, changed[i:i + MULTIGET_BATCH]))
        return ChangePage(changes, None, new_token)

    async def _multiget(self, calendar_id: str, hrefs: list[str]) -> list[SourceChange]:
        items = "".join(f"<D:href>{_xml_text(h)}</D:href>" for h in hrefs)
        body = (f'<?xml version="1.0" encoding="utf-8"?><C:calendar-multiget {_NS}>'
                f"<D:prop><D:getetag/><C:calendar-data/></D:prop>{items}</C:calendar-multiget>")
        response = await self._dav("REPORT", calendar_id, body, "1")
        out: list[SourceChange] = []
        for resp in parse_multistatus(response.content)[0]:
            data = resp.text(CALDAV, "calendar-data")
            etag = resp.text(DAV, "getetag")
            if resp.status == 404 or data is None:
                out.append(SourceChange(resp.href, None, None))  # deleted between the two REPORTs
            else:
                out.append(SourceChange(resp.href, data if _has_vevent(data) else None, etag))
        return out

    async def put_block(
        self,
        calendar_id: str,
        block_uid: str,
        start: datetime,
        end: datetime,
        summary: str,
        *,
        all_day: bool = False,
        existing_remote_id: str | None = None,
        etag: str | None = None,
    ) -> BlockRef:
        href = existing_remote_id or urljoin(calendar_id if calendar_id.endswith("/") else calendar_id + "/",
                                             block_resource_name(block_uid))
        ical = to_vcalendar([block_vevent(block_uid, start, end, summary, all_day=all_day, source=SLUG)])
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if existing_remote_id is None:
            headers["If-None-Match"] = "*"
        elif etag:
            headers["If-Match"] = etag
        try:
            response = await self.client.request("PUT", self._target(href), content=ical.encode(), headers=headers)
        except Fatal as exc:
            if exc.http_status != 412:
                raise
            if existing_remote_id is not None:
                raise EtagMismatch(f"block {block_uid} changed on the CalDAV server", provider=SLUG,
                                   http_status=412) from exc
            # it exists already: ours from an earlier attempt? then update it under its current ETag
            current = await self.client.request("GET", self._target(href))
            marker = _block_marker(current.text)
            if marker != block_uid:
                raise Fatal(f"{href} exists and is not block {block_uid}", provider=SLUG, http_status=412) from exc
            return await self.put_block(calendar_id, block_uid, start, end, summary, all_day=all_day,
                                        existing_remote_id=href, etag=current.headers.get("etag"))
        new_etag = response.headers.get("etag")
        if new_etag is None:  # some servers answer without one: read it back
            new_etag = (await self.client.request("GET", self._target(href))).headers.get("etag")
        return BlockRef(href, new_etag)

    async def delete_block(self, calendar_id: str, remote_id: str, etag: str | None = None) -> None:
        headers = {"If-Match": etag} if etag else None
        try:
            await self.client.request("DELETE", self._target(remote_id), headers=headers)
        except Fatal as exc:
            if exc.http_status == 404:
                return
            if exc.http_status == 412:
                raise EtagMismatch(f"{remote_id} changed on the CalDAV server", provider=SLUG,
                                   http_status=412) from exc
            raise

    max_watch_ttl: ClassVar[timedelta | None] = None


def _xml_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _block_marker(ical: str) -> str | None:
    try:
        cal = icalendar.Calendar.from_ical(ical)
    except ValueError:
        return None
    for ev in cal.walk("VEVENT"):
        value: Any = ev.get(BLOCK_MARKER)
        if value is not None:
            return str(value)
    return None
