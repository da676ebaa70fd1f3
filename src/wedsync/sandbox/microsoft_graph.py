"""Microsoft Graph (Outlook 365) calendar emulator: calendars, calendarView/delta, events, subscriptions.

No machine-readable spec of Graph is in ``../shared/specs``; this follows Microsoft's documented JSON shapes
(Graph v1.0 reference: event, calendar, subscription, "Get incremental changes to events in a calendar view",
"Receive change notifications through webhooks", "Reduce missing subscriptions and change notifications"):

* ``GET /me/calendars/{id}/calendarView/delta?startDateTime=..&endDateTime=..`` pages with ``@odata.nextLink``
  (``$skiptoken``) sized by ``Prefer: odata.maxpagesize``; the last page has ``@odata.deltaLink``
  (``$deltatoken``); following it returns changes since, removed instances as ``{"id", "@removed":
  {"reason": "deleted"}}``. Recurring series are expanded into ``occurrence``/``exception`` instances.
  An expired delta token answers ``410`` with code ``SyncStateNotFound`` (see ``expire_delta_tokens``).
  ``Prefer: outlook.timezone`` chooses the zone of ``start``/``end`` (UTC and IANA names are emulated).
* ``POST /me/calendars/{id}/events`` with ``transactionId`` is deduplicated (the same id returns the event
  created first); ``GET/PATCH/DELETE /me/events/{id}`` honour ``If-Match`` with the ``@odata.etag`` (412).
  ``GET /me/calendars/{id}/events?$filter=transactionId eq '..'`` is the one filter emulated.
* ``POST /subscriptions`` validates ``notificationUrl`` (and ``lifecycleNotificationUrl``) by POSTing
  ``?validationToken=..`` and requiring the token back as text/plain within 10 s; ``PATCH`` renews
  ``expirationDateTime`` (at most 10080 minutes ahead), ``DELETE`` removes. Change notifications carry
  ``clientState``; lifecycle ones (``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``) are sent with
  :meth:`MicrosoftGraphEmulator.send_lifecycle`.
* Bearer auth: the static sandbox token, or any live token of an OAuth emulator passed as ``oauth``.
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Scope

from wedsync.sandbox.faults import FaultInjector
from wedsync.sandbox.google_calendar import BearerGate, bearer_token, oauth_token_check
from wedsync.sandbox.hooks import WebhookDispatcher

__all__ = ["DEFAULT_ACCESS_TOKEN", "PREFIX", "SLUG", "MicrosoftGraphEmulator", "create_emulator"]

SLUG = "microsoft-graph"
PREFIX = "/microsoft-graph/v1.0"
DEFAULT_ACCESS_TOKEN = "sandbox-graph-token"
USER_ID = "6f2d1c9a-6b8e-4c52-9e1f-0a7d3b2c4e51"
TENANT_ID = "3f5c8a1e-2d4b-4f6a-8c9e-1b2d3e4f5a6b"
MAX_SUBSCRIPTION_MINUTES = 10080
_MAXPAGESIZE = re.compile(r"odata\.maxpagesize=(\d+)")
_TZ_PREF = re.compile(r'outlook\.timezone="([^"]+)"')
_TXN_FILTER = re.compile(r"^transactionId eq '((?:[^']|''){1,200})'$")
_PROP_FILTER = re.compile(r"^singleValueExtendedProperties/any\(ep: ep/id eq '((?:[^']|''){1,300})' and "
                          r"ep/value eq '((?:[^']|''){0,1000})'\)$", re.IGNORECASE)
_PROP_ID = re.compile(r"^String \{[0-9a-fA-F-]{36}\} Name \S{1,200}$")


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_json(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "innerError": {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                                     "request-id": secrets.token_hex(16)}}}


def _graph_time(moment: datetime, zone: str) -> dict[str, str]:
    tz = UTC if zone == "UTC" else ZoneInfo(zone)
    return {"dateTime": moment.astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": zone}


def _parse_graph_time(value: Any, name: str) -> datetime:
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise GraphError(400, "ErrorInvalidRequest", f"{name} needs dateTime and timeZone")
    zone = str(value.get("timeZone") or "UTC")
    try:
        moment = datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00"))
        tz = UTC if zone == "UTC" else ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        raise GraphError(400, "ErrorInvalidRequest", f"invalid {name}") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=tz).astimezone(UTC)


def _parse_query_time(value: str | None, name: str) -> datetime:
    if not value:
        raise GraphError(400, "ErrorInvalidParameter", "This request requires a time window specified by the "
                                                       "query string parameters StartDateTime and EndDateTime.")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(400, "ErrorInvalidParameter", f"invalid {name}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class _Event:
    """Stored in UTC; rendered in the zone the caller prefers."""

    id: str
    subject: str
    start: datetime
    end: datetime
    is_all_day: bool = False
    show_as: str = "busy"
    is_cancelled: bool = False
    type: str = "singleInstance"
    series_master_id: str | None = None
    ical_uid: str = ""
    transaction_id: str | None = None
    change_key: str = ""
    created: str = ""
    modified: str = ""
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    ext_props: dict[str, str] = field(default_factory=dict)  # singleValueExtendedProperties id -> value


@dataclass
class _Calendar:
    id: str
    name: str
    is_default: bool = False
    events: dict[str, _Event] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    min_delta: int = 0


@dataclass
class _Subscription:
    id: str
    resource: str
    calendar_id: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime


class MicrosoftGraphEmulator:
    slug = SLUG
    prefix = PREFIX

    def __init__(self, *, seed: int = 42, events: int = 30, anchor: date | None = None,
                 access_tokens: tuple[str, ...] = (DEFAULT_ACCESS_TOKEN,), oauth: Any = None,
                 validation_timeout: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self.faults = FaultInjector()
        self.webhooks = WebhookDispatcher(self.faults)
        self._seed = seed
        self._initial = {"events": events}
        self.anchor = anchor or datetime.now(UTC).date()
        self.access_tokens = set(access_tokens)
        self._oauth_check = oauth_token_check(oauth) if oauth is not None else None
        self.validation_timeout = validation_timeout
        self._clock = clock
        self._counter = 0
        self.calendars: dict[str, _Calendar] = {}
        self.subscriptions: dict[str, _Subscription] = {}
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self.api = self._build_api()
        self._app = BearerGate(self.api, self._accept, lambda: json.dumps(
            error_json("InvalidAuthenticationToken", "Access token is empty or invalid.")).encode())
        self.seed(self._initial)

    # --- Emulator protocol -------------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        return self._app

    def _accept(self, token: str) -> bool:
        return token in self.access_tokens or bool(self._oauth_check and self._oauth_check(token))

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        code = {"rate-limit": "TooManyRequests", "outage": "ServiceNotAvailable"}.get(kind, "generalException")
        return json.dumps(error_json(code, detail)).encode()

    def quota_key(self, scope: Scope) -> str | None:
        return bearer_token(scope)

    def collections(self) -> list[str]:
        return ["events", "subscriptions"]

    def iter_records(self, collection: str, base_url: str, offset: int, limit: int | None) -> Iterator[bytes]:
        if collection == "events":
            rows = [self._event_json(e, "UTC") for c in self.calendars.values() for e in c.events.values()
                    if not e.deleted]
        else:
            rows = [self._subscription_json(s) for s in self.subscriptions.values()]
        end = None if limit is None else offset + limit
        for row in rows[offset:end]:
            yield json.dumps(row).encode()

    def reset(self) -> dict[str, Any]:
        self.subscriptions.clear()
        self.webhooks.clear()
        return self.seed(self._initial)

    def seed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        count = int(params.get("events", self._initial["events"]))
        if count < 0:
            raise ValueError("events must be >= 0")
        self._seed = int(params.get("seed", self._seed))
        self._rng = random.Random(self._seed)
        self._counter = 0
        default = _Calendar(self._new_id(), "Calendar", is_default=True)
        self.calendars = {default.id: default, (other := _Calendar(self._new_id(), "Tastings")).id: other}
        rng = self._rng
        for i in range(count):
            day = self.anchor + timedelta(days=rng.randrange(-20, 120))
            cal = default if i % 5 else other
            if i % 9 == 8:
                start = datetime.combine(day, datetime.min.time(), UTC)
                self.add_event(cal.id, f"Trade fair {i}", start, start + timedelta(days=1), is_all_day=True)
            else:
                start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=8 + rng.randrange(9))
                self.add_event(cal.id, f"Tasting {i}", start, start + timedelta(minutes=30 * (1 + rng.randrange(4))),
                               show_as=("busy", "busy", "tentative", "free", "oof")[i % 5])
        # a weekly series, expanded as calendarView does: occurrences plus one exception
        first = datetime.combine(self.anchor, datetime.min.time(), UTC) + timedelta(hours=16)
        master = self._new_id()
        uid = f"040000008200E00074C5B7101A82E008{secrets.token_hex(16).upper()}"
        for n in range(8):
            start = first + timedelta(weeks=n) + (timedelta(hours=1) if n == 3 else timedelta())
            self.add_event(default.id, "Team sync" + (" (moved)" if n == 3 else ""), start,
                           start + timedelta(minutes=45), kind="exception" if n == 3 else "occurrence",
                           series_master_id=master, ical_uid=uid)
        return {"seed": self._seed, "events": sum(len(c.events) for c in self.calendars.values())}

    async def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        update, create, delete = (int(params.get(k, 0)) for k in ("update", "create", "delete"))
        cal = self.default_calendar()
        live = sorted(i for i, e in cal.events.items() if not e.deleted and e.type == "singleInstance")
        chosen = self._rng.sample(live, min(len(live), update + delete))
        for eid in chosen[:update]:
            self.change_event(cal.id, eid, subject=cal.events[eid].subject + " (updated)")
        for eid in chosen[update:]:
            self.remove_event(cal.id, eid)
        created = []
        for _ in range(create):
            start = datetime.combine(self.anchor + timedelta(days=self._rng.randrange(60)), datetime.min.time(),
                                     UTC) + timedelta(hours=11)
            created.append(self.add_event(cal.id, "New tasting", start, start + timedelta(hours=1)).id)
        return {"updated": chosen[:update], "deleted": chosen[update:], "created": created}

    # --- data changes --------------------------------------------------------------------------------------

    def default_calendar(self) -> _Calendar:
        return next(c for c in self.calendars.values() if c.is_default)

    def _cal(self, calendar_id: str) -> _Calendar:
        cal = self.calendars.get(calendar_id)
        if cal is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return cal

    def _new_id(self) -> str:
        raw = b"\x00\x00\x00\x00" + self._rng.randbytes(44)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=").replace("-", "_") + "AAA="

    def _touch(self, cal: _Calendar, event: _Event) -> None:
        self._counter += 1
        stamp = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event.modified = stamp
        event.created = event.created or stamp
        event.change_key = base64.b64encode(f"{event.id[-8:]}{self._counter}".encode()).decode()
        cal.events[event.id] = event
        cal.seq[event.id] = self._counter
        self._notify(cal, event)

    def add_event(self, calendar_id: str, subject: str, start: datetime, end: datetime, *, is_all_day: bool = False,
                  show_as: str = "busy", kind: str = "singleInstance", series_master_id: str | None = None,
                  ical_uid: str | None = None, transaction_id: str | None = None) -> _Event:
        cal = self._cal(calendar_id)
        event = _Event(self._new_id(), subject, start.astimezone(UTC), end.astimezone(UTC), is_all_day, show_as,
                       type=kind, series_master_id=series_master_id,
                       ical_uid=ical_uid or f"040000008200E00074C5B7101A82E008{secrets.token_hex(16).upper()}",
                       transaction_id=transaction_id)
        event.extra["_created"] = True
        self._touch(cal, event)
        return event

    def change_event(self, calendar_id: str, event_id: str, **changes: Any) -> _Event:
        cal = self._cal(calendar_id)
        event = cal.events[event_id]
        for key, value in changes.items():
            setattr(event, key, value)
        self._touch(cal, event)
        return event

    def remove_event(self, calendar_id: str, event_id: str) -> None:
        cal = self._cal(calendar_id)
        event = cal.events[event_id]
        event.deleted = True
        self._touch(cal, event)

    def expire_delta_tokens(self, calendar_id: str | None = None) -> None:
        cal = self._cal(calendar_id) if calendar_id else self.default_calendar()
        cal.min_delta = self._counter + 1

    def _find(self, event_id: str) -> tuple[_Calendar, _Event]:
        for cal in self.calendars.values():
            event = cal.events.get(event_id)
            if event is not None and not event.deleted:
                return cal, event
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    # --- notifications -------------------------------------------------------------------------------------

    def _notify(self, cal: _Calendar, event: _Event) -> None:
        now = datetime.fromtimestamp(self._clock(), UTC)
        change = "deleted" if event.deleted else ("created" if event.extra.pop("_created", False) else "updated")
        for sub in list(self.subscriptions.values()):
            if sub.calendar_id != cal.id or sub.expires <= now or change not in sub.change_type.split(","):
                continue
            note = {"subscriptionId": sub.id, "subscriptionExpirationDateTime": _iso(sub.expires),
                    "changeType": change, "resource": f"Users/{USER_ID}/Events/{event.id}",
                    "resourceData": {"@odata.type": "#Microsoft.Graph.Event",
                                     "@odata.id": f"Users/{USER_ID}/Events/{event.id}",
                                     "@odata.etag": f'W/"{event.change_key}"', "id": event.id},
                    "tenantId": TENANT_ID}
            if sub.client_state is not None:
                note["clientState"] = sub.client_state
            self._send(sub.notification_url, {"value": [note]})

    def _send(self, url: str, body: dict[str, Any]) -> None:
        try:
            self.webhooks.send(url, json.dumps(body).encode())
        except RuntimeError:  # changed from synchronous code without a loop: nothing delivered
            self.faults.webhooks["not_sent_no_loop"] += 1

    def send_lifecycle(self, subscription_id: str, event: str) -> None:
        """A lifecycle notification (``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``) to the
        subscription's lifecycleNotificationUrl; ``subscriptionRemoved`` also deletes the subscription."""
        sub = self.subscriptions[subscription_id]
        note = {"subscriptionId": sub.id, "subscriptionExpirationDateTime": _iso(sub.expires),
                "tenantId": TENANT_ID, "lifecycleEvent": event}
        if sub.client_state is not None:
            note["clientState"] = sub.client_state
        if event == "subscriptionRemoved":
            del self.subscriptions[sub.id]
        self._send(sub.lifecycle_url or sub.notification_url, {"value": [note]})

    async def _validate(self, url: str) -> None:
        token = secrets.token_urlsafe(24)
        try:
            async with httpx.AsyncClient(timeout=self.validation_timeout) as client:
                response = await client.post(url, params={"validationToken": token},
                                             headers={"Content-Type": "text/plain; charset=utf-8"})
        except httpx.HTTPError:
            raise GraphError(400, "ValidationError", "Subscription validation request failed. Notification "
                                                     "endpoint must respond with 200 OK to validation "
                                                     "request.") from None
        if response.status_code != 200 or response.text != token:
            raise GraphError(400, "ValidationError", "Subscription validation request failed. Response must "
                                                     "exactly match validationToken query parameter.")

    # --- rendering -------------------------------------------------------------------------------------------

    def _event_json(self, event: _Event, zone: str) -> dict[str, Any]:
        if event.deleted:
            return {"@odata.type": "#microsoft.graph.event", "id": event.id, "@removed": {"reason": "deleted"}}
        body: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.event", "@odata.etag": f'W/"{event.change_key}"', "id": event.id,
            "createdDateTime": event.created, "lastModifiedDateTime": event.modified,
            "changeKey": event.change_key, "categories": [], "transactionId": event.transaction_id,
            "originalStartTimeZone": "UTC", "originalEndTimeZone": "UTC", "iCalUId": event.ical_uid,
            "reminderMinutesBeforeStart": 15, "isReminderOn": True, "hasAttachments": False,
            "subject": event.subject, "bodyPreview": "", "importance": "normal", "sensitivity": "normal",
            "isAllDay": event.is_all_day, "isCancelled": event.is_cancelled, "isOrganizer": True,
            "responseRequested": True, "seriesMasterId": event.series_master_id, "showAs": event.show_as,
            "type": event.type, "webLink": f"https://outlook.office365.com/owa/?itemid={event.id}",
            "onlineMeetingUrl": None, "isOnlineMeeting": False, "allowNewTimeProposals": True,
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": {"contentType": "html", "content": ""},
            "start": _graph_time(event.start, "UTC" if event.is_all_day else zone),
            "end": _graph_time(event.end, "UTC" if event.is_all_day else zone),
            "location": {"displayName": "", "locationType": "default", "uniqueIdType": "unknown",
                         "address": {}, "coordinates": {}},
            "locations": [], "recurrence": None, "attendees": [],
            "organizer": {"emailAddress": {"name": "Bloom & Vine", "address": "florist@wedsync.test"}},
        }
        return body

    def _subscription_json(self, sub: _Subscription) -> dict[str, Any]:
        return {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
                "id": sub.id, "resource": sub.resource, "applicationId": "00000000-0000-0000-0000-00000000cafe",
                "changeType": sub.change_type, "clientState": sub.client_state,
                "notificationUrl": sub.notification_url, "lifecycleNotificationUrl": sub.lifecycle_url,
                "expirationDateTime": _iso(sub.expires), "creatorId": USER_ID,
                "latestSupportedTlsVersion": "v1_2", "notificationContentType": None,
                "includeResourceData": False, "encryptionCertificate": None,
                "encryptionCertificateId": None, "notificationQueryOptions": None,
                "notificationUrlAppId": None}

    # --- delta -------------------------------------------------------------------------------------------------

    def _encode(self, data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            assert isinstance(data, dict)
            return data
        except Exception:
            raise GraphError(400, "BadRequest", "Invalid token.") from None

    def delta(self, base: str, calendar_id: str, q: Mapping[str, str], prefer: str) -> dict[str, Any]:
        cal = self._cal(calendar_id)
        m = _MAXPAGESIZE.search(prefer)
        size = min(1000, max(1, int(m.group(1)))) if m else 100
        tzm = _TZ_PREF.search(prefer)
        zone = tzm.group(1) if tzm else "UTC"
        if zone != "UTC":
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise GraphError(400, "TimeZoneNotSupportedException", f"A valid TimeZone value must be "
                                                                       f"specified: {zone}") from None
        if q.get("$skiptoken"):
            state = self._decode(q["$skiptoken"])
        elif q.get("$deltatoken"):
            state = self._decode(q["$deltatoken"])
            state = {**state, "since": state["snap"], "snap": None, "after": 0}
        else:
            lo = _parse_query_time(q.get("startDateTime"), "startDateTime")
            hi = _parse_query_time(q.get("endDateTime"), "endDateTime")
            state = {"lo": lo.isoformat(), "hi": hi.isoformat(), "since": None, "snap": None, "after": 0}
        if state.get("since") is not None and int(state["since"]) < cal.min_delta:
            raise GraphError(410, "SyncStateNotFound", "The sync state generation is not found or it has expired; "
                                                       "a full resynchronization is required.")
        if state["snap"] is None:
            state["snap"] = self._counter
        lo, hi = datetime.fromisoformat(state["lo"]), datetime.fromisoformat(state["hi"])
        since, snap, after = state["since"], int(state["snap"]), int(state["after"])
        chosen = []
        for eid in sorted(cal.events, key=lambda i: cal.seq[i]):
            seq = cal.seq[eid]
            if seq > snap or seq <= after or (since is not None and seq <= int(since)):
                continue
            event = cal.events[eid]
            inside = event.start < hi and event.end > lo
            if event.deleted:
                if since is None:
                    continue
            elif not inside:
                if since is None:
                    continue
                event = _Event(event.id, "", event.start, event.end, deleted=True)  # moved out of the view
            chosen.append(event)
        page = chosen[:size]
        path = f"{base}/me/calendars/{cal.id}/calendarView/delta"
        body: dict[str, Any] = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(event)",
                                "value": [self._event_json(e, zone) for e in page]}
        if len(chosen) > size:
            token = self._encode({**state, "after": cal.seq[page[-1].id]})
            body["@odata.nextLink"] = f"{path}?$skiptoken={token}"  # url-safe base64: no escaping needed
        else:
            token = self._encode({"lo": state["lo"], "hi": state["hi"], "snap": snap})
            body["@odata.deltaLink"] = f"{path}?$deltatoken={token}"
        return body

    # --- the API -----------------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        api = FastAPI(title="Microsoft Graph v1.0 calendars (sandbox)", docs_url=None, redoc_url=None,
                      openapi_url=None)
        emulator = self

        @api.middleware("http")
        async def _record(request: Request, call_next: Any) -> Response:
            emulator.requests.append((request.method, request.url.path, dict(request.query_params),
                                      {k: v for k, v in request.headers.items() if k != "authorization"}))
            del emulator.requests[:-500]
            response: Response = await call_next(request)
            return response

        @api.exception_handler(GraphError)
        async def _error(_request: Request, exc: GraphError) -> Response:
            return JSONResponse(error_json(exc.code, exc.message), status_code=exc.status)

        def base_of(request: Request) -> str:
            return f"{request.url.scheme}://{request.headers.get('host', 'localhost')}{PREFIX}"

        async def body_of(request: Request) -> dict[str, Any]:
            try:
                data = json.loads(await request.body() or b"{}")
            except ValueError:
                raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
            if not isinstance(data, dict):
                raise GraphError(400, "BadRequest", "Unable to read JSON request payload.")
            return data

        def check_if_match(request: Request, event: _Event) -> None:
            wanted = request.headers.get("if-match")
            if wanted and wanted != "*" and wanted != f'W/"{event.change_key}"':
                raise GraphError(412, "ErrorIrresolvableConflict", "The change key passed in the request does "
                                                                    "not match the current change key for the item.")

        def apply(event: _Event, body: Mapping[str, Any]) -> None:
            if "subject" in body:
                event.subject = str(body["subject"] or "")
            if "start" in body:
                event.start = _parse_graph_time(body["start"], "start")
            if "end" in body:
                event.end = _parse_graph_time(body["end"], "end")
            if "isAllDay" in body:
                event.is_all_day = bool(body["isAllDay"])
            if "showAs" in body:
                if body["showAs"] not in ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown"):
                    raise GraphError(400, "ErrorInvalidRequest", "invalid showAs")
                event.show_as = str(body["showAs"])
            if "isCancelled" in body:
                event.is_cancelled = bool(body["isCancelled"])
            if event.end <= event.start:
                raise GraphError(400, "ErrorInvalidRequest", "The end time must be after the start time.")
            props = body.get("singleValueExtendedProperties")
            if props is not None:
                if not isinstance(props, list) or not all(
                        isinstance(p, dict) and isinstance(p.get("id"), str) and _PROP_ID.match(p["id"])
                        and isinstance(p.get("value"), str) for p in props):
                    raise GraphError(400, "ErrorInvalidExtendedProperty", "invalid singleValueExtendedProperties")
                event.ext_props.update({p["id"]: p["value"] for p in props})
            if event.is_all_day and (event.start.time() != datetime.min.time()
                                     or event.end.time() != datetime.min.time()):
                raise GraphError(400, "ErrorInvalidRequest", "All-day events must start and end at midnight.")

        @api.get("/me/calendars")
        async def calendars() -> Response:
            return JSONResponse({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('me')/calendars",
                                 "value": [{"id": c.id, "name": c.name, "color": "auto", "isDefaultCalendar":
                                            c.is_default, "changeKey": str(len(c.events)), "canShare": True,
                                            "canViewPrivateItems": True, "canEdit": True, "hexColor": "",
                                            "allowedOnlineMeetingProviders": ["teamsForBusiness"],
                                            "defaultOnlineMeetingProvider": "teamsForBusiness",
                                            "isTallyingResponses": True, "isRemovable": not c.is_default,
                                            "owner": {"name": "Bloom & Vine", "address": "florist@wedsync.test"}}
                                           for c in emulator.calendars.values()]})

        @api.get("/me/calendars/{calendar_id}/calendarView/delta")
        async def delta(calendar_id: str, request: Request) -> Response:
            prefer = ",".join(request.headers.getlist("prefer"))
            return JSONResponse(emulator.delta(base_of(request), calendar_id, dict(request.query_params), prefer))

        @api.get("/me/calendars/{calendar_id}/events")
        async def list_events(calendar_id: str, request: Request) -> Response:
            cal = emulator._cal(calendar_id)
            flt = request.query_params.get("$filter")
            txn, prop = _TXN_FILTER.match(flt or ""), _PROP_FILTER.match(flt or "")
            if flt and not (txn or prop):
                raise GraphError(400, "ErrorInvalidRequest", "only $filter on transactionId or on one "
                                                             "singleValueExtendedProperty is emulated")
            found = [e for e in cal.events.values() if not e.deleted
                     and (txn is None or e.transaction_id == txn.group(1).replace("''", "'"))
                     and (prop is None or e.ext_props.get(prop.group(1).replace("''", "'"))
                          == prop.group(2).replace("''", "'"))]
            expand = request.query_params.get("$expand", "")
            out = []
            for e in found:
                item = emulator._event_json(e, "UTC")
                if expand.startswith("singleValueExtendedProperties"):
                    item["singleValueExtendedProperties"] = [{"id": k, "value": v} for k, v in e.ext_props.items()]
                out.append(item)
            return JSONResponse({"value": out})

        @api.post("/me/calendars/{calendar_id}/events")
        async def create_event(calendar_id: str, request: Request) -> Response:
            cal = emulator._cal(calendar_id)
            body = await body_of(request)
            txn = body.get("transactionId")
            if txn:
                for other in cal.events.values():
                    if other.transaction_id == txn and not other.deleted:
                        return JSONResponse(emulator._event_json(other, "UTC"), status_code=201)
            event = _Event(emulator._new_id(), "", datetime.now(UTC), datetime.now(UTC),
                           ical_uid=f"040000008200E00074C5B7101A82E008{secrets.token_hex(16).upper()}",
                           transaction_id=str(txn) if txn else None)
            if "start" not in body or "end" not in body:
                raise GraphError(400, "ErrorInvalidRequest", "start and end are required")
            apply(event, body)
            event.extra["_created"] = True
            emulator._touch(cal, event)
            return JSONResponse(emulator._event_json(event, "UTC"), status_code=201)

        @api.get("/me/events/{event_id}")
        async def get_event(event_id: str) -> Response:
            return JSONResponse(emulator._event_json(emulator._find(event_id)[1], "UTC"))

        @api.patch("/me/events/{event_id}")
        async def update_event(event_id: str, request: Request) -> Response:
            cal, event = emulator._find(event_id)
            check_if_match(request, event)
            body = await body_of(request)
            if "transactionId" in body and body["transactionId"] != event.transaction_id:
                raise GraphError(400, "ErrorInvalidRequest", "transactionId cannot be changed")
            apply(event, body)
            emulator._touch(cal, event)
            return JSONResponse(emulator._event_json(event, "UTC"))

        @api.delete("/me/events/{event_id}")
        async def delete_event(event_id: str, request: Request) -> Response:
            cal, event = emulator._find(event_id)
            check_if_match(request, event)
            emulator.remove_event(cal.id, event_id)
            return Response(status_code=204)

        @api.post("/subscriptions")
        async def subscribe(request: Request) -> Response:
            body = await body_of(request)
            resource = str(body.get("resource") or "")
            m = re.fullmatch(r"/?me/calendars/([^/]+)/events", resource)
            if m is None:
                raise GraphError(400, "InvalidRequest", "resource must be me/calendars/{id}/events here")
            cal = emulator._cal(m.group(1))
            url, lifecycle = body.get("notificationUrl"), body.get("lifecycleNotificationUrl")
            change = str(body.get("changeType") or "")
            if not isinstance(url, str) or not url.startswith(("https://", "http://")) or not change:
                raise GraphError(400, "InvalidRequest", "notificationUrl and changeType are required")
            if any(c not in ("created", "updated", "deleted") for c in change.split(",")):
                raise GraphError(400, "InvalidRequest", "invalid changeType")
            expires = _subscription_expiry(body.get("expirationDateTime"), emulator._clock())
            await emulator._validate(url)
            if isinstance(lifecycle, str) and lifecycle != url:
                await emulator._validate(lifecycle)
            state = body.get("clientState")
            if state is not None and (not isinstance(state, str) or len(state) > 128):
                raise GraphError(400, "InvalidRequest", "clientState must be at most 128 characters")
            sub = _Subscription(str(uuid.uuid4()), resource, cal.id, change, url,
                                lifecycle if isinstance(lifecycle, str) else None, state, expires)
            emulator.subscriptions[sub.id] = sub
            return JSONResponse(emulator._subscription_json(sub), status_code=201)

        @api.patch("/subscriptions/{subscription_id}")
        async def renew(subscription_id: str, request: Request) -> Response:
            sub = emulator.subscriptions.get(subscription_id)
            if sub is None:
                raise GraphError(404, "ResourceNotFound", f"The object '{subscription_id}' doesn't exist.")
            body = await body_of(request)
            sub.expires = _subscription_expiry(body.get("expirationDateTime"), emulator._clock())
            return JSONResponse(emulator._subscription_json(sub))

        @api.delete("/subscriptions/{subscription_id}")
        async def unsubscribe(subscription_id: str) -> Response:
            if emulator.subscriptions.pop(subscription_id, None) is None:
                raise GraphError(404, "ResourceNotFound", f"The object '{subscription_id}' doesn't exist.")
            return Response(status_code=204)

        return api


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _subscription_expiry(value: Any, now: float) -> datetime:
    if not isinstance(value, str):
        raise GraphError(400, "InvalidRequest", "expirationDateTime is required")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(400, "InvalidRequest", "invalid expirationDateTime") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now, UTC)
    if moment <= current:
        raise GraphError(400, "InvalidRequest", "Subscription expiration can only be in the future.")
    if moment > current + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
        raise GraphError(400, "InvalidRequest", f"Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} "
                                                "minutes in the future.")
    return moment


def create_emulator(*, seed: int = 42, events: int = 30, anchor: date | None = None, oauth: Any = None,
                    **_: Any) -> MicrosoftGraphEmulator:
    """Registry entry point (see ``wedsync.sandbox.registry``)."""
    return MicrosoftGraphEmulator(seed=seed, events=events, anchor=anchor, oauth=oauth)
