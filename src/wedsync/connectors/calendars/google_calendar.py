"""Google Calendar API v3 connector: events as iCalendar, sync tokens, busy blocks, push channels.

Channel: the REST API with OAuth 2 bearer tokens. ``events.list`` with ``singleEvents=false`` lists recurring
events as a master (``recurrence`` lines) plus modified/cancelled instances; every page that touches a series
re-reads the whole series (``iCalUID`` listing) so one :class:`SourceChange` always carries the master with its
RRULE/EXDATE and its RECURRENCE-ID overrides (cancelled instances become EXDATEs). ``410 GONE`` on a sync token
raises :class:`SyncStateExpired`. Blocks use an event id derived from the block uid (``google_event_id``), so a
repeated insert answers 409 and becomes an update: one event per block, whatever the retries.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import icalendar

from wedsync.connectors.auth import BearerAuth
from wedsync.connectors.base import Capabilities, Channel, CredentialField, OAuthSpec
from wedsync.connectors.calendars.base import (
    BLOCK_MARKER,
    SOURCE_MARKER,
    BlockRef,
    CalendarConnector,
    CalendarInfo,
    ChangePage,
    EtagMismatch,
    SourceChange,
    SyncStateExpired,
    WatchChannel,
    check_block_times,
    google_event_id,
    to_vcalendar,
)
from wedsync.connectors.errors import Fatal, ReauthRequired, SchemaMismatch
from wedsync.connectors.http import ProviderClient

__all__ = ["GoogleCalendarConnector", "google_series_to_ical"]

SLUG = "google-calendar"
BLOCK_PROPERTY = "wedsyncBlock"  # extendedProperties.private key carrying the block uid


def _zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _moment(value: Any, what: str) -> date | datetime:
    """An EventDateTime as a date (all-day) or an aware datetime in the event's own zone when it has one."""
    if not isinstance(value, dict):
        raise SchemaMismatch(f"event {what} is not an object", provider=SLUG)
    if value.get("date"):
        try:
            return date.fromisoformat(str(value["date"]))
        except ValueError as exc:
            raise SchemaMismatch(f"bad {what}.date", provider=SLUG) from exc
    raw = value.get("dateTime")
    if not isinstance(raw, str):
        raise SchemaMismatch(f"event {what} has neither date nor dateTime", provider=SLUG)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SchemaMismatch(f"bad {what}.dateTime", provider=SLUG) from exc
    zone = _zone(value.get("timeZone"))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=zone or UTC)
    return moment.astimezone(zone) if zone else moment.astimezone(UTC)


def _recurrence_line(ev: icalendar.Event, line: str) -> None:
    """Add one ``recurrence`` entry (``RRULE:...``, ``EXDATE;TZID=..:...``, ``RDATE...``) to ``ev``."""
    try:
        name, params, value = icalendar.parser.Contentline(line).parts()
    except ValueError as exc:
        raise SchemaMismatch(f"bad recurrence line {line[:60]!r}", provider=SLUG) from exc
    name = name.upper()
    if name == "RRULE" or name == "EXRULE":
        ev.add(name, icalendar.vRecur.from_ical(value))
        return
    if name not in ("EXDATE", "RDATE"):
        return
    zone = _zone(params.get("TZID"))
    moments: list[date | datetime] = []
    for piece in value.split(","):
        try:
            parsed = icalendar.vDDDTypes.from_ical(piece)
        except ValueError as exc:
            raise SchemaMismatch(f"bad {name} value", provider=SLUG) from exc
        if isinstance(parsed, datetime) and parsed.tzinfo is None and zone is not None:
            parsed = parsed.replace(tzinfo=zone)
        if isinstance(parsed, date):
            moments.append(parsed)
    if moments:
        ev.add(name, moments)


def _vevent(item: dict[str, Any], uid: str) -> icalendar.Event:
    ev = icalendar.Event()
    ev.add("uid", uid)
    start, end = _moment(item.get("start"), "start"), _moment(item.get("end"), "end")
    ev.add("dtstart", start)
    ev.add("dtend", end)
    ev.add("dtstamp", datetime.now(UTC))
    if item.get("summary"):
        ev.add("summary", str(item["summary"]))
    if item.get("location"):
        ev.add("location", str(item["location"]))
    ev.add("transp", "TRANSPARENT" if item.get("transparency") == "transparent" else "OPAQUE")
    status = str(item.get("status") or "confirmed").upper()
    ev.add("status", status if status in ("CONFIRMED", "TENTATIVE", "CANCELLED") else "CONFIRMED")
    if isinstance(item.get("sequence"), int):
        ev.add("sequence", item["sequence"])
    private = (item.get("extendedProperties") or {}).get("private") or {}
    if isinstance(private, dict) and private.get(BLOCK_PROPERTY):
        ev.add(BLOCK_MARKER, str(private[BLOCK_PROPERTY]))
    ev.add(SOURCE_MARKER, SLUG)
    if item.get("id"):
        ev.add("X-GOOGLE-EVENT-ID", str(item["id"]))
    return ev


def google_series_to_ical(items: list[dict[str, Any]]) -> str | None:
    """One VCALENDAR from a standalone event, or from a series (master + instances); None when it is gone.

    Cancelled instances become EXDATEs of the master; a cancelled master means the whole series is deleted.
    Instances whose master is not visible (an invitation to one occurrence) are kept as standalone events.
    """
    master = next((i for i in items if "recurringEventId" not in i), None)
    instances = [i for i in items if "recurringEventId" in i]
    if master is not None and master.get("status") == "cancelled":
        return None
    events: list[icalendar.Event] = []
    if master is not None:
        uid = str(master.get("iCalUID") or master["id"])
        main = _vevent(master, uid)
        for line in master.get("recurrence") or []:
            if isinstance(line, str):
                _recurrence_line(main, line)
        events.append(main)
        for inst in instances:
            original = _moment(inst.get("originalStartTime"), "originalStartTime")
            if inst.get("status") == "cancelled":
                main.add("exdate", [original])
                continue
            ev = _vevent(inst, uid)
            ev.add("recurrence-id", original)
            events.append(ev)
    else:
        for inst in instances:
            if inst.get("status") != "cancelled":
                events.append(_vevent(inst, str(inst["id"])))
    return to_vcalendar(events) if events else None


def _edge_json(moment: datetime, all_day: bool, *, end: bool = False, start: datetime | None = None
               ) -> dict[str, str]:
    if all_day:
        day = moment.date()
        if end and start is not None and day <= start.date():
            day = start.date() + timedelta(days=1)
        return {"date": day.isoformat()}
    return {"dateTime": moment.astimezone(UTC).isoformat().replace("+00:00", "Z"), "timeZone": "UTC"}


class GoogleCalendarConnector(CalendarConnector):
    slug: ClassVar[str] = SLUG
    display_name: ClassVar[str] = "Google Calendar"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="calendars",
        read=("calendars", "events"),
        write=("busy_blocks",),
        webhooks=("events.watch",),
        incremental=("events",),
        notes="Calendar API v3 over OAuth 2. events.list with pageToken/syncToken (nextSyncToken on the last "
        "page; 410 GONE -> full resync); recurring series delivered whole (master + overrides) as iCalendar. "
        "Busy blocks are events whose id derives from the block uid (insert 409 -> update), marked with a "
        "private extended property. Push via events.watch channels (token checked on every notification, "
        "renewed by opening a new channel before expiry, channels.stop on the old one).",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()
    default_base_url: ClassVar[str | None] = "https://www.googleapis.com/calendar/v3"
    docs_url: ClassVar[str | None] = "https://developers.google.com/calendar/api/v3/reference"
    oauth: ClassVar[OAuthSpec | None] = OAuthSpec(
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",
        scopes=("https://www.googleapis.com/auth/calendar.readonly",
                "https://www.googleapis.com/auth/calendar.events"),
        extra_authorize_params={"access_type": "offline", "prompt": "consent"},
    )
    supports_blocks: ClassVar[bool] = True
    supports_push: ClassVar[bool] = True
    max_watch_ttl: ClassVar[timedelta | None] = timedelta(days=7)

    def __init__(
        self,
        *,
        auth: httpx.Auth | None = None,
        access_token: str | None = None,
        base_url: str | None = None,
        account_key: str = "default",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        page_size: int = 250,
    ) -> None:
        if auth is None and not access_token:
            raise ReauthRequired("Google Calendar needs an OAuth 2 token: connect through /oauth/google-calendar",
                                 provider=SLUG)
        self.page_size = page_size
        self.client = ProviderClient(
            SLUG, base_url or self.default_base_url or "", auth=auth or BearerAuth(str(access_token)),
            account_key=account_key, timeout=timeout, transport=transport,
            headers={"Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    @staticmethod
    def _events_path(calendar_id: str) -> str:
        return f"/calendars/{quote(calendar_id, safe='@')}/events"

    async def list_calendars(self) -> list[CalendarInfo]:
        out: list[CalendarInfo] = []
        page: str | None = None
        while True:
            params: dict[str, Any] = {"maxResults": 250, **({"pageToken": page} if page else {})}
            body = await self.client.get_json("/users/me/calendarList", params=params)
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise SchemaMismatch("calendarList.list returned no items", provider=SLUG)
            for item in body["items"]:
                if isinstance(item, dict) and item.get("id"):
                    out.append(CalendarInfo(
                        id=str(item["id"]), name=str(item.get("summaryOverride") or item.get("summary") or ""),
                        timezone=item.get("timeZone"), writable=item.get("accessRole") in ("owner", "writer"),
                        primary=bool(item.get("primary"))))
            page = body.get("nextPageToken")
            if not page:
                return out

    async def _list(self, calendar_id: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            body = await self.client.get_json(self._events_path(calendar_id), params=params)
        except Fatal as exc:
            if exc.http_status == 410:
                raise SyncStateExpired("Google says the sync token expired: full resync", provider=SLUG,
                                       http_status=410) from exc
            raise
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise SchemaMismatch("events.list returned no items", provider=SLUG)
        return body

    async def _series(self, calendar_id: str, ical_uid: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            params: dict[str, Any] = {"iCalUID": ical_uid, "showDeleted": "true", "maxResults": 2500}
            if page:
                params["pageToken"] = page
            body = await self._list(calendar_id, params)
            items.extend(i for i in body["items"] if isinstance(i, dict))
            page = body.get("nextPageToken")
            if not page:
                return items

    async def _series_uid(self, calendar_id: str, master_id: str) -> str:
        """The iCalUID of a recurring master ('' when the master is gone: the series is deleted)."""
        try:
            master = await self.client.get_json(f"{self._events_path(calendar_id)}/{quote(master_id, safe='')}")
        except Fatal as exc:
            if exc.http_status in (404, 410):
                return ""
            raise
        if not isinstance(master, dict) or master.get("status") == "cancelled":
            return ""
        return str(master.get("iCalUID") or "")

    async def list_changes(
        self,
        calendar_id: str,
        sync_state: str | None,
        page: str | None,
        window_start: datetime,
        window_end: datetime,
    ) -> ChangePage:
        params: dict[str, Any] = {"maxResults": self.page_size, "singleEvents": "false"}
        if sync_state:
            params["syncToken"] = sync_state  # deletions always included; no time window allowed with it
        else:
            params["timeMin"] = window_start.astimezone(UTC).isoformat().replace("+00:00", "Z")
            params["timeMax"] = window_end.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if page:
            params["pageToken"] = page
        body = await self._list(calendar_id, params)
        changes: list[SourceChange] = []
        series: dict[str, str] = {}  # master id -> iCalUID
        for item in body["items"]:
            if not isinstance(item, dict) or not item.get("id"):
                raise SchemaMismatch("event without id", provider=SLUG)
            master_id = item.get("recurringEventId") or (item["id"] if item.get("recurrence") else None)
            if master_id:
                series.setdefault(str(master_id), str(item.get("iCalUID") or ""))
                continue
            if item.get("status") == "cancelled":
                changes.append(SourceChange(str(item["id"]), None, item.get("etag")))
            else:
                changes.append(SourceChange(str(item["id"]), google_series_to_ical([item]), item.get("etag")))
        for master_id, uid in series.items():
            if not uid:  # a bare cancelled-instance reference: ask the master for the series' iCalUID
                uid = await self._series_uid(calendar_id, master_id)
            members = await self._series(calendar_id, uid) if uid else []
            members = [m for m in members if m.get("id") == master_id or m.get("recurringEventId") == master_id]
            master = next((m for m in members if m.get("id") == master_id), None)
            ical = google_series_to_ical(members) if members else None
            changes.append(SourceChange(master_id, ical, master.get("etag") if master else None))
        next_page = body.get("nextPageToken")
        return ChangePage(changes, next_page or None, None if next_page else body.get("nextSyncToken"))

    # --- busy blocks -------------------------------------------------------------------------------------

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
        check_block_times(start, end, all_day)
        event_id = existing_remote_id or google_event_id(block_uid)
        body = {
            "id": event_id, "summary": summary, "status": "confirmed", "transparency": "opaque",
            "start": _edge_json(start, all_day), "end": _edge_json(end, all_day, end=True, start=start),
            "extendedProperties": {"private": {BLOCK_PROPERTY: block_uid}},
            "reminders": {"useDefault": False},
        }
        path = self._events_path(calendar_id)
        if existing_remote_id is None:
            try:  # the id is ours, so a replay (or a second call) answers 409 and we update instead
                response = await self.client.request("POST", path, json=body, idempotency_key=event_id)
                return self._ref(response.json(), event_id)
            except Fatal as exc:
                if exc.http_status != 409:
                    raise
        headers = {"If-Match": etag} if etag else None
        try:
            response = await self.client.request("PUT", f"{path}/{event_id}", json=body, headers=headers)
        except Fatal as exc:
            if exc.http_status == 412:
                raise EtagMismatch(f"block {block_uid} changed at Google", provider=SLUG, http_status=412) from exc
            if exc.http_status == 404 and existing_remote_id is not None:
                return await self.put_block(calendar_id, block_uid, start, end, summary, all_day=all_day)
            raise
        return self._ref(response.json(), event_id)

    @staticmethod
    def _ref(data: Any, event_id: str) -> BlockRef:
        if not isinstance(data, dict):
            raise SchemaMismatch("event write returned no event", provider=SLUG)
        return BlockRef(str(data.get("id") or event_id), data.get("etag"))

    async def delete_block(self, calendar_id: str, remote_id: str, etag: str | None = None) -> None:
        headers = {"If-Match": etag} if etag else None
        try:
            await self.client.request("DELETE", f"{self._events_path(calendar_id)}/{remote_id}", headers=headers)
        except Fatal as exc:
            if exc.http_status in (404, 410):  # gone already
                return
            if exc.http_status == 412:
                raise EtagMismatch(f"event {remote_id} changed at Google", provider=SLUG, http_status=412) from exc
            raise

    # --- push channels ----------------------------------------------------------------------------------

    async def watch(self, calendar_id: str, address: str, token: str, ttl: timedelta) -> WatchChannel:
        channel_id = f"wedsync-{secrets.token_hex(12)}"
        body = {"id": channel_id, "type": "web_hook", "address": address, "token": token,
                "params": {"ttl": str(int(ttl.total_seconds()))}}
        response = await self.client.request("POST", f"{self._events_path(calendar_id)}/watch", json=body,
                                             idempotency_key=channel_id)
        data = response.json()
        if not isinstance(data, dict) or not data.get("resourceId") or not data.get("expiration"):
            raise SchemaMismatch("events.watch returned no channel", provider=SLUG)
        expires = datetime.fromtimestamp(int(data["expiration"]) / 1000.0, UTC)
        return WatchChannel(str(data.get("id") or channel_id), str(data["resourceId"]), expires, calendar_id,
                            address, token, {"resourceUri": data.get("resourceUri")})

    async def renew_watch(self, channel: WatchChannel, ttl: timedelta) -> WatchChannel:
        """Google channels cannot be extended: open a new one (same address and token), then stop the old one;
        notifications may briefly arrive on both, which only triggers one extra incremental listing."""
        fresh = await self.watch(channel.calendar_id, channel.address, channel.token, ttl)
        await self.stop_watch(channel)
        return fresh

    async def stop_watch(self, channel: WatchChannel) -> None:
        try:
            await self.client.request("POST", "/channels/stop",
                                      json={"id": channel.id, "resourceId": channel.resource_id},
                                      idempotency_key=f"stop-{channel.id}")
        except Fatal as exc:
            if exc.http_status != 404:
                raise
