"""Calendly API v2 connector: scheduled events as iCalendar bookings, signed invitee webhooks. Read-only.

Channel: the REST API with a personal access token (bearer). Calendly has no change feed, so every listing is
a full listing of the window (``sync_state`` stays None; canceled events are listed with ``STATUS:CANCELLED``).
Timely changes come from webhook subscriptions (``invitee.created`` / ``invitee.canceled``) signed with the
signing key we choose (the connection's ``webhook_secret``); a webhook names the invitee URI, from which
:meth:`CalendlyConnector.fetch_item` re-reads the scheduled event. Calendly cannot hold busy blocks written by
others through its API (it reads the vendor's connected calendars itself), so no block writes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import icalendar

from wedsync.connectors.auth import BearerAuth
from wedsync.connectors.base import Capabilities, Channel, CredentialField
from wedsync.connectors.calendars.base import (
    SOURCE_MARKER,
    CalendarConnector,
    CalendarInfo,
    ChangePage,
    SourceChange,
    WatchChannel,
    to_vcalendar,
)
from wedsync.connectors.errors import Fatal, SchemaMismatch
from wedsync.connectors.http import ProviderClient

__all__ = ["CalendlyConnector", "calendly_event_to_ical", "event_uri_of"]

SLUG = "calendly"
EVENTS = ["invitee.created", "invitee.canceled"]
NEVER = datetime(9999, 12, 31, tzinfo=UTC)  # Calendly webhook subscriptions do not expire


def _uuid_of(uri: str, kind: str) -> str:
    parts = [p for p in urlsplit(uri).path.split("/") if p]
    try:
        return parts[parts.index(kind) + 1]
    except (ValueError, IndexError):
        raise Fatal(f"not a Calendly {kind} URI: {uri[:80]}", provider=SLUG) from None


def event_uri_of(uri: str) -> str:
    """The scheduled event URI of an invitee URI (``.../scheduled_events/X/invitees/Y`` -> ``.../X``)."""
    head, sep, _ = uri.partition("/invitees/")
    return head if sep else uri


def _ts(value: Any, what: str) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise SchemaMismatch(f"bad {what}", provider=SLUG) from exc


def calendly_event_to_ical(event: dict[str, Any]) -> str:
    """A scheduled event as a VCALENDAR: a booking, CONFIRMED or CANCELLED."""
    ev = icalendar.Event()
    ev.add("uid", str(event["uri"]))
    ev.add("dtstart", _ts(event.get("start_time"), "start_time"))
    ev.add("dtend", _ts(event.get("end_time"), "end_time"))
    ev.add("dtstamp", datetime.now(UTC))
    ev.add("summary", str(event.get("name") or "Calendly booking"))
    location = event.get("location")
    if isinstance(location, dict) and location.get("location"):
        ev.add("location", str(location["location"]))
    ev.add("status", "CANCELLED" if event.get("status") == "canceled" else "CONFIRMED")
    ev.add("transp", "OPAQUE")
    ev.add(SOURCE_MARKER, SLUG)
    if event.get("event_type"):
        ev.add("X-CALENDLY-EVENT-TYPE", str(event["event_type"]))
    return to_vcalendar([ev])


class CalendlyConnector(CalendarConnector):
    slug: ClassVar[str] = SLUG
    display_name: ClassVar[str] = "Calendly"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="calendars",
        read=("scheduled_events",),
        write=(),
        webhooks=("invitee.created", "invitee.canceled"),
        incremental=(),
        notes="API v2 with a personal access token. Scheduled events are read as bookings (canceled ones with "
        "STATUS:CANCELLED); there is no change feed, so each listing covers the whole window, and signed "
        "invitee.created/invitee.canceled webhooks (Calendly-Webhook-Signature, our signing key) trigger a "
        "re-read of the event. Webhook subscriptions need a paid Calendly plan. No busy-block writes: the "
        "API cannot create events; Calendly reads the vendor's Google/Outlook/iCloud calendars itself.",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("access_token", "Personal access token (Integrations > API & Webhooks)"),
    )
    default_base_url: ClassVar[str | None] = "https://api.calendly.com"
    docs_url: ClassVar[str | None] = "https://developer.calendly.com/api-docs"
    supports_push: ClassVar[bool] = True

    def __init__(
        self,
        *,
        access_token: str,
        base_url: str | None = None,
        account_key: str = "default",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        page_size: int = 100,
    ) -> None:
        self.page_size = min(100, max(1, page_size))
        self.client = ProviderClient(
            SLUG, (base_url or self.default_base_url or "").rstrip("/"), auth=BearerAuth(access_token),
            account_key=account_key, timeout=timeout, transport=transport, headers={"Accept": "application/json"},
        )
        self._me: dict[str, Any] | None = None

    async def aclose(self) -> None:
        await self.client.aclose()

    async def me(self) -> dict[str, Any]:
        if self._me is None:
            body = await self.client.get_json("/users/me")
            resource = body.get("resource") if isinstance(body, dict) else None
            if not isinstance(resource, dict) or not resource.get("uri"):
                raise SchemaMismatch("users/me returned no resource", provider=SLUG)
            self._me = resource
        return self._me

    async def list_calendars(self) -> list[CalendarInfo]:
        """One 'calendar': the user's scheduled events (id = the user URI)."""
        me = await self.me()
        return [CalendarInfo(id=str(me["uri"]), name=f"Calendly: {me.get('name') or me.get('email') or ''}",
                             timezone=me.get("timezone"), writable=False, primary=True)]

    async def list_changes(
        self,
        calendar_id: str,
        sync_state: str | None,
        page: str | None,
        window_start: datetime,
        window_end: datetime,
    ) -> ChangePage:
        """A full listing of the window every time (Calendly has no change feed; ``sync_state`` is ignored)."""
        params: dict[str, Any] = {
            "user": calendar_id, "count": self.page_size, "sort": "start_time:asc",
            "min_start_time": window_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "max_start_time": window_end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if page:
            params["page_token"] = page
        body = await self.client.get_json("/scheduled_events", params=params)
        if not isinstance(body, dict) or not isinstance(body.get("collection"), list):
            raise SchemaMismatch("scheduled_events returned no collection", provider=SLUG)
        changes = []
        for event in body["collection"]:
            if not isinstance(event, dict) or not event.get("uri"):
                raise SchemaMismatch("scheduled event without uri", provider=SLUG)
            changes.append(SourceChange(str(event["uri"]), calendly_event_to_ical(event), event.get("updated_at")))
        pagination = body.get("pagination") if isinstance(body.get("pagination"), dict) else {}
        token = pagination.get("next_page_token") if pagination else None
        return ChangePage(changes, str(token) if token else None, None)

    async def fetch_item(self, calendar_id: str, remote_id: str) -> SourceChange:
        """Re-read a scheduled event from its URI or from an invitee URI (what webhooks carry)."""
        uri = event_uri_of(remote_id)
        uuid = _uuid_of(uri, "scheduled_events")
        try:
            body = await self.client.get_json(f"/scheduled_events/{uuid}")
        except Fatal as exc:
            if exc.http_status == 404:
                return SourceChange(uri, None, None)
            raise
        event = body.get("resource") if isinstance(body, dict) else None
        if not isinstance(event, dict) or not event.get("uri"):
            raise SchemaMismatch("scheduled event without uri", provider=SLUG)
        return SourceChange(str(event["uri"]), calendly_event_to_ical(event), event.get("updated_at"))

    async def watch(self, calendar_id: str, address: str, token: str, ttl: timedelta) -> WatchChannel:
        """A user-scoped webhook subscription signed with ``token`` (the connection's webhook secret); an
        existing subscription for the same URL (409) is looked up and returned instead."""
        me = await self.me()
        body = {"url": address, "events": EVENTS, "organization": me.get("current_organization"),
                "user": calendar_id, "scope": "user", "signing_key": token}
        try:
            response = await self.client.request("POST", "/webhook_subscriptions", json=body,
                                                 idempotency_key=f"hook-{address}")
            hook = response.json().get("resource")
        except Fatal as exc:
            if exc.http_status != 409:
                raise
            hook = await self._find_hook(address, calendar_id, str(me.get("current_organization") or ""))
            if hook is None:
                raise
        if not isinstance(hook, dict) or not hook.get("uri"):
            raise SchemaMismatch("webhook subscription without uri", provider=SLUG)
        return WatchChannel(str(hook["uri"]), calendar_id, NEVER, calendar_id, address, token)

    async def _find_hook(self, address: str, user: str, organization: str) -> dict[str, Any] | None:
        page: str | None = None
        while True:
            params = {"organization": organization, "user": user, "scope": "user", "count": 100,
                      **({"page_token": page} if page else {})}
            body = await self.client.get_json("/webhook_subscriptions", params=params)
            for hook in body.get("collection") or []:
                if isinstance(hook, dict) and hook.get("callback_url") == address:
                    return hook
            page = (body.get("pagination") or {}).get("next_page_token")
            if not page:
                return None

    async def renew_watch(self, channel: WatchChannel, ttl: timedelta) -> WatchChannel:
        """Calendly subscriptions do not expire: nothing to renew."""
        return channel

    async def stop_watch(self, channel: WatchChannel) -> None:
        uuid = _uuid_of(channel.id, "webhook_subscriptions")
        try:
            await self.client.request("DELETE", f"/webhook_subscriptions/{uuid}")
        except Fatal as exc:
            if exc.http_status != 404:
                raise
