"""Microsoft Graph (Outlook 365) calendar connector: calendarView delta, busy blocks, change subscriptions.

Channel: Graph v1.0 with OAuth 2 (Microsoft identity platform). ``calendarView/delta`` expands series into
instances; the connector follows ``@odata.nextLink`` pages to the ``@odata.deltaLink`` (the sync state), with
``Prefer: odata.maxpagesize`` and ``Prefer: outlook.timezone="UTC"``. Each instance is one
:class:`SourceChange` (UID = the Graph instance id; ``X-MS-ICALUID`` keeps the series' iCalUId); ``@removed``
means deleted; 410 (``SyncStateNotFound``/``resyncRequired``) raises :class:`SyncStateExpired`. Links are only
followed on the configured Graph host. Blocks are created with a ``transactionId`` derived from the block uid
(Graph deduplicates retried creates with it) and a named extended property holding the uid, by which it is looked
up first; updated with ``If-Match``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

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
    to_vcalendar,
)
from wedsync.connectors.errors import Fatal, ReauthRequired, SchemaMismatch
from wedsync.connectors.http import ProviderClient

__all__ = ["MicrosoftGraphConnector", "graph_event_to_ical", "transaction_id"]

SLUG = "microsoft-graph"
TXN_PREFIX = "wedsync-"
#: the named extended property carrying a block's uid (our own property set GUID)
BLOCK_PROPERTY_ID = "String {5b0f3a52-9c1e-4d7a-8f26-3e4b1c9d7a10} Name wedsyncBlock"
MAX_SUBSCRIPTION = timedelta(minutes=10070)  # Graph allows 10080 minutes for Outlook events; keep a margin


def transaction_id(block_uid: str) -> str:
    """The Graph ``transactionId`` of a block (stable, short, recognisable as ours)."""
    return TXN_PREFIX + hashlib.sha256(block_uid.encode()).hexdigest()[:40]


def _graph_moment(value: Any, all_day: bool, what: str) -> date | datetime:
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise SchemaMismatch(f"event {what} has no dateTime", provider=SLUG)
    try:
        moment = datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00"))
    except ValueError as exc:
        raise SchemaMismatch(f"bad {what}.dateTime", provider=SLUG) from exc
    if all_day:
        return moment.date()
    if moment.tzinfo is None:
        zone = value.get("timeZone") or "UTC"
        if zone not in ("UTC", "Etc/UTC", "tzone://Microsoft/Utc"):
            # we ask for UTC (Prefer: outlook.timezone); anything else is a server we do not understand
            raise SchemaMismatch(f"event {what} in time zone {zone!r}, expected UTC", provider=SLUG)
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def graph_event_to_ical(item: dict[str, Any]) -> str:
    """One Graph event (an instance of the calendar view) as a VCALENDAR text."""
    all_day = bool(item.get("isAllDay"))
    ev = icalendar.Event()
    ev.add("uid", str(item["id"]))
    ev.add("dtstart", _graph_moment(item.get("start"), all_day, "start"))
    ev.add("dtend", _graph_moment(item.get("end"), all_day, "end"))
    ev.add("dtstamp", datetime.now(UTC))
    if item.get("subject"):
        ev.add("summary", str(item["subject"]))
    show_as = str(item.get("showAs") or "busy")
    ev.add("transp", "TRANSPARENT" if show_as in ("free", "workingElsewhere") else "OPAQUE")
    if item.get("isCancelled"):
        status = "CANCELLED"
    elif show_as == "tentative":
        status = "TENTATIVE"
    else:
        status = "CONFIRMED"
    ev.add("status", status)
    ev.add("X-MICROSOFT-CDO-BUSYSTATUS", {"free": "FREE", "tentative": "TENTATIVE", "oof": "OOF",
                                          "workingElsewhere": "WORKINGELSEWHERE"}.get(show_as, "BUSY"))
    if item.get("iCalUId"):
        ev.add("X-MS-ICALUID", str(item["iCalUId"]))
    txn = item.get("transactionId")
    if isinstance(txn, str) and txn.startswith(TXN_PREFIX):
        ev.add(BLOCK_MARKER, txn)
    ev.add(SOURCE_MARKER, SLUG)
    return to_vcalendar([ev])


def _graph_time(moment: datetime, all_day: bool) -> dict[str, str]:
    if all_day:
        return {"dateTime": moment.date().isoformat() + "T00:00:00", "timeZone": "UTC"}
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class MicrosoftGraphConnector(CalendarConnector):
    slug: ClassVar[str] = SLUG
    display_name: ClassVar[str] = "Outlook 365"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="calendars",
        read=("calendars", "events"),
        write=("busy_blocks",),
        webhooks=("created", "updated", "deleted", "reauthorizationRequired", "subscriptionRemoved", "missed"),
        incremental=("events",),
        notes="Microsoft Graph v1.0 over OAuth 2. calendarView/delta within a time window, followed from "
        "@odata.nextLink to @odata.deltaLink (410 -> full resync); instances of series arrive expanded, one "
        "VEVENT each. Busy blocks are created with a transactionId derived from the block uid (looked up "
        "first, deduplicated by Graph on retries) and updated/deleted with If-Match. Subscriptions validated "
        "with validationToken, checked by clientState, renewed with PATCH expirationDateTime (at most ~7 "
        "days), lifecycle notifications handled. No Graph spec file is in the repository: shapes follow "
        "Microsoft's documentation.",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()
    default_base_url: ClassVar[str | None] = "https://graph.microsoft.com/v1.0"
    docs_url: ClassVar[str | None] = "https://learn.microsoft.com/graph/api/event-delta"
    oauth: ClassVar[OAuthSpec | None] = OAuthSpec(
        authorize_url="https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token_url="https://login.microsoftonline.com/common/oauth2/v2.0/token",
        scopes=("offline_access", "Calendars.ReadWrite"),
    )
    supports_blocks: ClassVar[bool] = True
    supports_push: ClassVar[bool] = True
    max_watch_ttl: ClassVar[timedelta | None] = MAX_SUBSCRIPTION

    def __init__(
        self,
        *,
        auth: httpx.Auth | None = None,
        access_token: str | None = None,
        base_url: str | None = None,
        account_key: str = "default",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        page_size: int = 100,
    ) -> None:
        if auth is None and not access_token:
            raise ReauthRequired("Outlook 365 needs an OAuth 2 token: connect through /oauth/microsoft-graph",
                                 provider=SLUG)
        self.base_url = (base_url or self.default_base_url or "").rstrip("/")
        self.page_size = page_size
        self.client = ProviderClient(
            SLUG, self.base_url, auth=auth or BearerAuth(str(access_token)), account_key=account_key,
            timeout=timeout, transport=transport, headers={"Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def _link(self, url: str) -> str:
        """A nextLink/deltaLink, accepted only on our Graph host (never send the token elsewhere)."""
        parts, base = urlsplit(url), urlsplit(self.base_url)
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc) or not parts.path.startswith(base.path):
            raise Fatal("Graph returned a link to another host; refusing to follow it", provider=SLUG)
        return url

    @staticmethod
    def _cal_path(calendar_id: str) -> str:
        return f"/me/calendars/{quote(calendar_id, safe='=')}"

    async def list_calendars(self) -> list[CalendarInfo]:
        out: list[CalendarInfo] = []
        url: str | None = "/me/calendars"
        while url:
            body = await self.client.get_json(url)
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise SchemaMismatch("calendars returned no value", provider=SLUG)
            for item in body["value"]:
                if isinstance(item, dict) and item.get("id"):
                    out.append(CalendarInfo(id=str(item["id"]), name=str(item.get("name") or ""),
                                            timezone=None, writable=bool(item.get("canEdit", True)),
                                            primary=bool(item.get("isDefaultCalendar"))))
            link = body.get("@odata.nextLink")
            url = self._link(link) if isinstance(link, str) else None
        return out

    async def list_changes(
        self,
        calendar_id: str,
        sync_state: str | None,
        page: str | None,
        window_start: datetime,
        window_end: datetime,
    ) -> ChangePage:
        headers = {"Prefer": f'odata.maxpagesize={self.page_size}, outlook.timezone="UTC"'}
        params: dict[str, str] | None = None
        if page:
            url = self._link(page)
        elif sync_state:
            url = self._link(sync_state)
        else:
            url = f"{self._cal_path(calendar_id)}/calendarView/delta"
            params = {"startDateTime": _iso(window_start).replace(".0000000", ""),
                      "endDateTime": _iso(window_end).replace(".0000000", "")}
        try:
            body = await self.client.get_json(url, params=params, headers=headers)
        except Fatal as exc:
            if exc.http_status == 410 or (exc.http_status == 400 and "syncstatenotfound" in str(exc).lower()):
                raise SyncStateExpired("Graph says the delta token expired: full resync", provider=SLUG,
                                       http_status=exc.http_status) from exc
            raise
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise SchemaMismatch("calendarView/delta returned no value", provider=SLUG)
        changes: list[SourceChange] = []
        for item in body["value"]:
            if not isinstance(item, dict) or not item.get("id"):
                raise SchemaMismatch("delta item without id", provider=SLUG)
            if "@removed" in item:
                changes.append(SourceChange(str(item["id"]), None, None))
            else:
                changes.append(SourceChange(str(item["id"]), graph_event_to_ical(item), item.get("@odata.etag")))
        next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
        if isinstance(next_link, str):
            return ChangePage(changes, self._link(next_link), None)
        if not isinstance(delta_link, str):
            raise SchemaMismatch("the last delta page has no @odata.deltaLink", provider=SLUG)
        return ChangePage(changes, None, self._link(delta_link))

    # --- blocks ------------------------------------------------------------------------------------------

    async def _find_block(self, calendar_id: str, block_uid: str) -> dict[str, Any] | None:
        """Our block of ``block_uid``, looked up by its extended property (the documented way to find events
        by a custom value)."""
        uid = block_uid.replace("'", "''")
        body = await self.client.get_json(f"{self._cal_path(calendar_id)}/events", params={
            "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{BLOCK_PROPERTY_ID}' and "
                       f"ep/value eq '{uid}')",
            "$select": "id,subject,transactionId"})
        items = body.get("value") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise SchemaMismatch("events lookup returned no value", provider=SLUG)
        return next((i for i in items if isinstance(i, dict) and i.get("id")), None)

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
        if all_day and end.date() <= start.date():
            end = start + timedelta(days=1)
        txn = transaction_id(block_uid)
        body: dict[str, Any] = {"subject": summary, "start": _graph_time(start, all_day),
                                "end": _graph_time(end, all_day), "isAllDay": all_day, "showAs": "busy",
                                "isReminderOn": False}
        remote_id = existing_remote_id
        if remote_id is None:
            found = await self._find_block(calendar_id, block_uid)
            if found is None:
                marker = [{"id": BLOCK_PROPERTY_ID, "value": block_uid}]
                response = await self.client.request("POST", f"{self._cal_path(calendar_id)}/events",
                                                     json={**body, "transactionId": txn,
                                                           "singleValueExtendedProperties": marker},
                                                     idempotency_key=txn)
                return self._ref(response.json())
            remote_id = str(found["id"])
        headers = {"If-Match": etag} if etag else None
        try:
            response = await self.client.request("PATCH", f"/me/events/{quote(remote_id, safe='=')}", json=body,
                                                 headers=headers, idempotency_key=f"{txn}-update")
        except Fatal as exc:
            if exc.http_status == 412:
                raise EtagMismatch(f"block {block_uid} changed in Outlook", provider=SLUG, http_status=412) from exc
            if exc.http_status == 404 and existing_remote_id is not None:
                return await self.put_block(calendar_id, block_uid, start, end, summary, all_day=all_day)
            raise
        return self._ref(response.json())

    @staticmethod
    def _ref(data: Any) -> BlockRef:
        if not isinstance(data, dict) or not data.get("id"):
            raise SchemaMismatch("event write returned no event", provider=SLUG)
        return BlockRef(str(data["id"]), data.get("@odata.etag"))

    async def delete_block(self, calendar_id: str, remote_id: str, etag: str | None = None) -> None:
        headers = {"If-Match": etag} if etag else None
        try:
            await self.client.request("DELETE", f"/me/events/{quote(remote_id, safe='=')}", headers=headers)
        except Fatal as exc:
            if exc.http_status == 404:
                return
            if exc.http_status == 412:
                raise EtagMismatch(f"event {remote_id} changed in Outlook", provider=SLUG, http_status=412) from exc
            raise

    # --- subscriptions -----------------------------------------------------------------------------------

    def _channel(self, data: Any, calendar_id: str, address: str, token: str) -> WatchChannel:
        if not isinstance(data, dict) or not data.get("id") or not data.get("expirationDateTime"):
            raise SchemaMismatch("subscription answer has no id/expirationDateTime", provider=SLUG)
        try:
            expires = datetime.fromisoformat(str(data["expirationDateTime"]).replace("Z", "+00:00"))
        except ValueError as exc:
            raise SchemaMismatch("bad expirationDateTime", provider=SLUG) from exc
        return WatchChannel(str(data["id"]), str(data.get("resource") or ""), expires.astimezone(UTC), calendar_id,
                            address, token)

    async def watch(self, calendar_id: str, address: str, token: str, ttl: timedelta) -> WatchChannel:
        """Subscribe to the calendar's events; Graph first POSTs ``?validationToken=`` to ``address`` (the hub's
        webhook route answers it), and every notification then carries ``clientState`` = ``token``."""
        expires = datetime.now(UTC) + min(ttl, MAX_SUBSCRIPTION)
        body = {"changeType": "created,updated,deleted", "notificationUrl": address,
                "lifecycleNotificationUrl": address, "resource": f"me/calendars/{calendar_id}/events",
                "expirationDateTime": _iso(expires), "clientState": token}
        # Not marked replayable: Graph does not deduplicate subscriptions, so an unknown outcome goes back to
        # the caller (a duplicate would only double notifications until it expires, but we do not risk it).
        response = await self.client.request("POST", "/subscriptions", json=body)
        return self._channel(response.json(), calendar_id, address, token)

    async def renew_watch(self, channel: WatchChannel, ttl: timedelta) -> WatchChannel:
        """PATCH the expiry; a subscription Graph removed meanwhile (404) is created again."""
        expires = datetime.now(UTC) + min(ttl, MAX_SUBSCRIPTION)
        try:
            response = await self.client.request("PATCH", f"/subscriptions/{channel.id}",
                                                 json={"expirationDateTime": _iso(expires)})
        except Fatal as exc:
            if exc.http_status != 404:
                raise
            return await self.watch(channel.calendar_id, channel.address, channel.token, ttl)
        return self._channel(response.json(), channel.calendar_id, channel.address, channel.token)

    async def stop_watch(self, channel: WatchChannel) -> None:
        try:
            await self.client.request("DELETE", f"/subscriptions/{channel.id}")
        except Fatal as exc:
            if exc.http_status != 404:
                raise
