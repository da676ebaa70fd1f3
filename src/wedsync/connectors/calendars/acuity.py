"""Acuity Scheduling API v1 connector: appointments as iCalendar bookings, signed form-encoded webhooks. Read-only.

Channel: the REST API with HTTP Basic (user id + API key). ``GET /appointments`` has no cursor, only a ``max``
cap, so a listing walks the window in date slices (31 days, halved while a slice comes back full) and reads
active and canceled appointments of each slice; every listing is full (``sync_state`` stays None). Webhooks
(``POST /webhooks``) deliver ``action=..&id=..`` form bodies signed with the API key
(``X-Acuity-Signature``); they only name the appointment, so the hub re-reads it with :meth:`fetch_item`.
Because Acuity signs with the API key, ``webhook_secret_field = "api_key"`` makes the connection's webhook secret
that key (``ConnectionService.create``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import httpx
import icalendar

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

__all__ = ["AcuityConnector", "acuity_appointment_to_ical"]

SLUG = "acuity"
SLICE_DAYS = 31
MAX_PER_CALL = 1000
HOOK_EVENTS = ("appointment.scheduled", "appointment.rescheduled", "appointment.canceled", "appointment.changed")
NEVER = datetime(9999, 12, 31, tzinfo=UTC)


def acuity_appointment_to_ical(appt: dict[str, Any]) -> str:
    """An appointment as a VCALENDAR booking (CANCELLED when canceled)."""
    try:
        start = datetime.fromisoformat(str(appt["datetime"]))
        minutes = int(str(appt.get("duration") or "0"))
    except (KeyError, ValueError) as exc:
        raise SchemaMismatch("appointment without a readable datetime/duration", provider=SLUG) from exc
    if start.tzinfo is None:
        raise SchemaMismatch("appointment datetime has no offset", provider=SLUG)
    ev = icalendar.Event()
    ev.add("uid", f"acuity-{appt['id']}@acuityscheduling.com")
    ev.add("dtstart", start.astimezone(UTC))
    ev.add("dtend", (start + timedelta(minutes=max(minutes, 1))).astimezone(UTC))
    ev.add("dtstamp", datetime.now(UTC))
    ev.add("summary", str(appt.get("type") or "Acuity appointment"))
    if appt.get("location"):
        ev.add("location", str(appt["location"]))
    ev.add("status", "CANCELLED" if appt.get("canceled") else "CONFIRMED")
    ev.add("transp", "OPAQUE")
    ev.add(SOURCE_MARKER, SLUG)
    ev.add("X-ACUITY-CALENDAR-ID", str(appt.get("calendarID") or ""))
    return to_vcalendar([ev])


class AcuityConnector(CalendarConnector):
    slug: ClassVar[str] = SLUG
    display_name: ClassVar[str] = "Acuity Scheduling"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="calendars",
        read=("calendars", "appointments"),
        write=(),
        webhooks=HOOK_EVENTS,
        incremental=(),
        notes="API v1 with HTTP Basic (user id + API key). Appointments are read as bookings (canceled ones "
        "with STATUS:CANCELLED) in date slices, since the API has no cursor; no change feed, so each listing "
        "covers the whole window. Webhooks are form-encoded, signed with the API key (X-Acuity-Signature) "
        "and name only the appointment id: the hub re-reads it. No busy-block writes (Acuity blocks-off "
        "time only through its own calendar sync, not this API).",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("user_id", "Acuity user id (Integrations > API)", secret=False),
        CredentialField("api_key", "Acuity API key (Integrations > API)"),
    )
    default_base_url: ClassVar[str | None] = "https://acuityscheduling.com/api/v1"
    docs_url: ClassVar[str | None] = "https://developers.acuityscheduling.com/reference"
    supports_push: ClassVar[bool] = True
    #: Acuity signs webhooks with the API key: the connection's webhook secret is that key
    webhook_secret_field: ClassVar[str | None] = "api_key"

    def __init__(
        self,
        *,
        user_id: str,
        api_key: str,
        base_url: str | None = None,
        account_key: str = "default",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        max_per_call: int = MAX_PER_CALL,
    ) -> None:
        self.max_per_call = max_per_call
        self.client = ProviderClient(
            SLUG, (base_url or self.default_base_url or "").rstrip("/"), auth=httpx.BasicAuth(user_id, api_key),
            account_key=account_key, timeout=timeout, transport=transport, headers={"Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def list_calendars(self) -> list[CalendarInfo]:
        body = await self.client.get_json("/calendars")
        if not isinstance(body, list):
            raise SchemaMismatch("calendars is not a list", provider=SLUG)
        return [CalendarInfo(id=str(c["id"]), name=str(c.get("name") or ""), timezone=c.get("timezone"),
                             writable=False) for c in body if isinstance(c, dict) and c.get("id") is not None]

    async def _slice(self, calendar_id: str, lo: date, hi: date, canceled: bool) -> list[dict[str, Any]]:
        params = {"calendarID": calendar_id, "minDate": lo.isoformat(), "maxDate": hi.isoformat(),
                  "max": self.max_per_call, "canceled": "true" if canceled else "false", "direction": "ASC"}
        body = await self.client.get_json("/appointments", params=params)
        if not isinstance(body, list):
            raise SchemaMismatch("appointments is not a list", provider=SLUG)
        if len(body) >= self.max_per_call:  # maybe truncated: split the slice
            if lo == hi:
                raise Fatal(f"more than {self.max_per_call} appointments on {lo}", provider=SLUG)
            mid = lo + (hi - lo) // 2
            return (await self._slice(calendar_id, lo, mid, canceled)
                    + await self._slice(calendar_id, mid + timedelta(days=1), hi, canceled))
        return [a for a in body if isinstance(a, dict)]

    async def list_changes(
        self,
        calendar_id: str,
        sync_state: str | None,
        page: str | None,
        window_start: datetime,
        window_end: datetime,
    ) -> ChangePage:
        """One date slice per page (``page`` = the slice's first date); always a full listing."""
        first = date.fromisoformat(page) if page else window_start.astimezone(UTC).date() - timedelta(days=1)
        last_day = window_end.astimezone(UTC).date() + timedelta(days=1)  # appointment dates are local
        hi = min(first + timedelta(days=SLICE_DAYS - 1), last_day)
        rows = (await self._slice(calendar_id, first, hi, False)) + (await self._slice(calendar_id, first, hi, True))
        changes = []
        for appt in rows:
            if appt.get("id") is None:
                raise SchemaMismatch("appointment without id", provider=SLUG)
            changes.append(SourceChange(str(appt["id"]), acuity_appointment_to_ical(appt), None))
        next_first = hi + timedelta(days=1)
        return ChangePage(changes, next_first.isoformat() if next_first <= last_day else None, None)

    async def fetch_item(self, calendar_id: str, remote_id: str) -> SourceChange:
        appt_id = remote_id.removeprefix("acuity-").split("@", 1)[0]
        if not appt_id.isdigit():
            raise Fatal(f"not an Acuity appointment id: {remote_id[:40]}", provider=SLUG)
        try:
            appt = await self.client.get_json(f"/appointments/{appt_id}")
        except Fatal as exc:
            if exc.http_status == 404:
                return SourceChange(appt_id, None, None)
            raise
        if not isinstance(appt, dict) or appt.get("id") is None:
            raise SchemaMismatch("appointment without id", provider=SLUG)
        return SourceChange(str(appt["id"]), acuity_appointment_to_ical(appt), None)

    async def watch(self, calendar_id: str, address: str, token: str, ttl: timedelta) -> WatchChannel:
        """One webhook per appointment event (Acuity signs them with the API key, not ``token``)."""
        ids = []
        for event in HOOK_EVENTS:
            response = await self.client.request("POST", "/webhooks", json={"event": event, "target": address})
            hook = response.json()
            if not isinstance(hook, dict) or hook.get("id") is None:
                raise SchemaMismatch("webhook without id", provider=SLUG)
            ids.append(str(hook["id"]))
        return WatchChannel(",".join(ids), calendar_id, NEVER, calendar_id, address, token)

    async def renew_watch(self, channel: WatchChannel, ttl: timedelta) -> WatchChannel:
        """Acuity webhooks do not expire: nothing to renew."""
        return channel

    async def stop_watch(self, channel: WatchChannel) -> None:
        for hook_id in filter(None, channel.id.split(",")):
            try:
                await self.client.request("DELETE", f"/webhooks/{hook_id}")
            except Fatal as exc:
                if exc.http_status != 404:
                    raise
