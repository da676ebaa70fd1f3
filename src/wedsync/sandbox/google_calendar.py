"""Google Calendar API v3 emulator: calendarList, events (list/get/insert/update/delete/watch), channels.stop.

Faithful to ``../shared/specs/google/calendar.v3.json`` and Google's sync guide:

* ``events.list`` pages with ``pageToken`` (``maxResults`` default 250, at most 2500); the *last* page of a
  listing carries ``nextSyncToken``, the others ``nextPageToken``. With ``syncToken`` only entries changed since
  are returned, deletions always included (as ``status: "cancelled"``), and ``timeMin``/``timeMax``/``iCalUID``/
  ``orderBy``/``q``/``updatedMin`` are refused with 400. An expired sync token (see
  :meth:`GoogleCalendarEmulator.expire_sync_tokens`) answers ``410 GONE`` (reason ``fullSyncRequired``).
* ``singleEvents=false`` only (the default): recurring events are listed as the master (``recurrence`` lines)
  plus modified instances (``recurringEventId``, ``originalStartTime``); cancelled instances are listed even
  without ``showDeleted`` (as Google documents). ``singleEvents=true`` is answered 400 ``notEmulated``.
* ``events.insert`` with a client-chosen ``id`` (base32hex, 5-1024 characters) answers 409 ``duplicate`` when
  the id exists (also when that event was deleted); ``update``/``delete`` honour ``If-Match`` (412); deleting a
  deleted event answers 410 ``deleted``.
* ``events.watch`` opens a ``web_hook`` channel: a ``sync`` notification at once, then ``exists`` ones on each
  change, with ``X-Goog-Channel-ID/-Token/-Expiration``, ``X-Goog-Resource-ID/-URI/-State`` and
  ``X-Goog-Message-Number``; ``channels.stop`` closes it (404 when unknown).
* Bearer auth: the static sandbox token, or any live token of an OAuth emulator passed as ``oauth``.
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from wedsync.connectors.webhooks import GoogleCalendarScheme
from wedsync.sandbox.faults import FaultInjector
from wedsync.sandbox.hooks import WebhookDispatcher

__all__ = ["DEFAULT_ACCESS_TOKEN", "PREFIX", "PRIMARY_ID", "SLUG", "GoogleCalendarEmulator", "create_emulator"]

SLUG = "google-calendar"
PREFIX = "/google-calendar/calendar/v3"
DEFAULT_ACCESS_TOKEN = "sandbox-google-token"
PRIMARY_ID = "florist@wedsync.test"
SECOND_ID = "deliveries@group.calendar.google.com"
_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
_SYNC_FORBIDDEN = ("timeMin", "timeMax", "iCalUID", "orderBy", "q", "updatedMin", "privateExtendedProperty",
                   "sharedExtendedProperty")


class GoogleApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def error_json(status: int, reason: str, message: str) -> dict[str, Any]:
    """Google's JSON error envelope."""
    return {"error": {"code": status, "message": message,
                      "errors": [{"domain": "global", "reason": reason, "message": message}]}}


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def oauth_token_check(oauth: Any) -> Callable[[str], bool]:
    """A validator accepting live access tokens issued by a ``wedsync.sandbox.oauth_server`` emulator."""

    def check(token: str) -> bool:
        access = oauth.access_tokens.get(token)
        return bool(access is not None and not access.revoked and oauth._clock() < access.expires_at)

    return check


class BearerGate:
    """ASGI wrapper answering 401 (provider-shaped body) unless the bearer token is accepted."""

    def __init__(self, app: ASGIApp, accept: Callable[[str], bool], body: Callable[[], bytes]) -> None:
        self.app, self.accept, self.body = app, accept, body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = bearer_token(scope)
            if token is None or not self.accept(token):
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b'Bearer realm="sandbox"')]})
                await send({"type": "http.response.body", "body": self.body()})
                return
        await self.app(scope, receive, send)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GoogleApiError(400, "invalid", f"Invalid value for {name}: {value}") from None
    if moment.tzinfo is None:
        raise GoogleApiError(400, "invalid", f"{name} needs a time zone offset")
    return moment


def _edge(value: Any, name: str) -> datetime:
    """An EventDateTime as an instant (all-day dates at UTC midnight, good enough for window filters)."""
    if not isinstance(value, dict):
        raise GoogleApiError(400, "required", f"Missing {name}.")
    if value.get("dateTime"):
        raw = str(value["dateTime"])
        zone = value.get("timeZone")
        if zone:  # "A time zone offset is required unless a time zone is explicitly specified in timeZone"
            try:
                moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
                tz = ZoneInfo(str(zone))
            except (ValueError, ZoneInfoNotFoundError):
                raise GoogleApiError(400, "invalid", f"Invalid {name}") from None
            return moment if moment.tzinfo else moment.replace(tzinfo=tz)
        return _parse_time(raw, f"{name}.dateTime")
    if value.get("date"):
        try:
            return datetime.combine(date.fromisoformat(str(value["date"])), datetime.min.time(), UTC)
        except ValueError:
            raise GoogleApiError(400, "invalid", f"Invalid {name}.date") from None
    raise GoogleApiError(400, "required", f"Missing {name} time.")


@dataclass
class _Channel:
    id: str
    resource_id: str
    calendar_id: str
    address: str
    token: str | None
    expires_at: float
    number: int = 0


@dataclass
class _Calendar:
    id: str
    summary: str
    time_zone: str
    primary: bool = False
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)  # event id -> change number of its last change
    min_sync: int = 0  # sync tokens below this are expired


class GoogleCalendarEmulator:
    slug = SLUG
    prefix = PREFIX

    def __init__(self, *, seed: int = 42, events: int = 40, anchor: date | None = None,
                 access_tokens: tuple[str, ...] = (DEFAULT_ACCESS_TOKEN,), oauth: Any = None,
                 max_channel_ttl: float = 7 * 86400.0, clock: Callable[[], float] = time.time) -> None:
        self.faults = FaultInjector()
        self.webhooks = WebhookDispatcher(self.faults)
        self._seed = seed
        self._initial = {"events": events}
        self.anchor = anchor or datetime.now(UTC).date()
        self.access_tokens = set(access_tokens)
        self._oauth_check = oauth_token_check(oauth) if oauth is not None else None
        self.max_channel_ttl = max_channel_ttl
        self._clock = clock
        self._counter = 0
        self.calendars: dict[str, _Calendar] = {}
        self.channels: dict[str, _Channel] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, query) for contract tests
        self.api = self._build_api()
        self._app = BearerGate(self.api, self._accept, lambda: json.dumps(
            error_json(401, "authError", "Invalid Credentials")).encode())
        self.seed(self._initial)

    # --- Emulator protocol -------------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        return self._app

    def _accept(self, token: str) -> bool:
        return token in self.access_tokens or bool(self._oauth_check and self._oauth_check(token))

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        reason = {"rate-limit": "rateLimitExceeded", "outage": "backendError"}.get(kind, "backendError")
        return json.dumps(error_json(status, reason, detail)).encode()

    def quota_key(self, scope: Scope) -> str | None:
        return bearer_token(scope)

    def collections(self) -> list[str]:
        return ["events", "channels", "calendars"]

    def iter_records(self, collection: str, base_url: str, offset: int, limit: int | None) -> Iterator[bytes]:
        if collection == "events":
            rows: list[Any] = [e for c in self.calendars.values() for e in c.events.values()]
        elif collection == "channels":
            rows = [vars(ch) for ch in self.channels.values()]
        else:
            rows = [self._calendar_entry(c) for c in self.calendars.values()]
        end = None if limit is None else offset + limit
        for row in rows[offset:end]:
            yield json.dumps(row).encode()

    def reset(self) -> dict[str, Any]:
        self.channels.clear()
        self.webhooks.clear()
        return self.seed(self._initial)

    def seed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        count = int(params.get("events", self._initial["events"]))
        seed = int(params.get("seed", self._seed))
        if count < 0:
            raise ValueError("events must be >= 0")
        self._seed = seed
        self._rng = random.Random(seed)
        self._counter = 0
        self.calendars = {
            PRIMARY_ID: _Calendar(PRIMARY_ID, "Bloom & Vine Florist", "Europe/London", primary=True),
            SECOND_ID: _Calendar(SECOND_ID, "Deliveries", "Europe/London"),
        }
        rng = self._rng
        for i in range(count):
            day = self.anchor + timedelta(days=rng.randrange(-30, 120))
            cal = PRIMARY_ID if i % 4 else SECOND_ID
            if i % 10 == 9:
                body: dict[str, Any] = {"summary": f"Fair {i}", "start": {"date": day.isoformat()},
                                        "end": {"date": (day + timedelta(days=1 + i % 2)).isoformat()}}
            else:
                start = datetime(day.year, day.month, day.day, 8 + rng.randrange(9), 0, tzinfo=UTC)
                body = {"summary": f"Consultation {i}", "start": {"dateTime": rfc3339(start)},
                        "end": {"dateTime": rfc3339(start + timedelta(minutes=30 * (1 + rng.randrange(6))))}}
                if i % 7 == 3:
                    body["transparency"] = "transparent"
            self._insert(cal, body)
        # a weekly planning meeting with one moved and one cancelled instance
        first = datetime(self.anchor.year, self.anchor.month, self.anchor.day, 9, 0)
        master = self._insert(PRIMARY_ID, {
            "summary": "Weekly planning",
            "start": {"dateTime": first.isoformat(), "timeZone": "Europe/London"},
            "end": {"dateTime": (first + timedelta(hours=1)).isoformat(), "timeZone": "Europe/London"},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=12"]})
        self.modify_instance(PRIMARY_ID, master["id"], first + timedelta(weeks=2),
                             {"start": {"dateTime": (first + timedelta(weeks=2, hours=3)).isoformat(),
                                        "timeZone": "Europe/London"},
                              "end": {"dateTime": (first + timedelta(weeks=2, hours=4)).isoformat(),
                                      "timeZone": "Europe/London"}})
        self.modify_instance(PRIMARY_ID, master["id"], first + timedelta(weeks=3), {"status": "cancelled"})
        return {"seed": seed, "events": sum(len(c.events) for c in self.calendars.values())}

    async def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Edits by 'the vendor' on a calendar: ``{"update": K, "create": C, "delete": D, "calendar": id}``."""
        update, create, delete = (int(params.get(k, 0)) for k in ("update", "create", "delete"))
        cal = self._cal(str(params.get("calendar", PRIMARY_ID)))
        live = sorted(i for i, e in cal.events.items() if e.get("status") != "cancelled"
                      and "recurringEventId" not in e and not e.get("recurrence"))
        chosen = self._rng.sample(live, min(len(live), update + delete))
        for eid in chosen[:update]:
            self.patch_event(cal.id, eid, {"summary": cal.events[eid].get("summary", "") + " (moved)"})
        for eid in chosen[update:]:
            self.delete_event(cal.id, eid)
        created = []
        for _ in range(create):
            start = datetime.combine(self.anchor + timedelta(days=self._rng.randrange(60)),
                                     datetime.min.time(), UTC) + timedelta(hours=10)
            created.append(self._insert(cal.id, {"summary": "New booking", "start": {"dateTime": rfc3339(start)},
                                                 "end": {"dateTime": rfc3339(start + timedelta(hours=1))}})["id"])
        return {"updated": chosen[:update], "deleted": chosen[update:], "created": created}

    # --- data changes (also used by tests) ----------------------------------------------------------------

    def _cal(self, calendar_id: str) -> _Calendar:
        if calendar_id == "primary":
            calendar_id = PRIMARY_ID
        cal = self.calendars.get(calendar_id)
        if cal is None:
            raise GoogleApiError(404, "notFound", "Not Found")
        return cal

    def _touch(self, cal: _Calendar, event: dict[str, Any]) -> None:
        self._counter += 1
        now = max(self._clock(), getattr(self, "_last_now", 0.0) + 0.001)
        self._last_now = now
        event["updated"] = rfc3339(datetime.fromtimestamp(now, UTC))
        event["etag"] = f'"{int(now * 1000)}{self._counter:06d}"'
        cal.events[event["id"]] = event
        cal.seq[event["id"]] = self._counter

    def _new_id(self) -> str:
        return base64.b32hexencode(self._rng.randbytes(10)).decode().lower().rstrip("=")

    def _insert(self, calendar_id: str, body: Mapping[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        cal = self._cal(calendar_id)
        eid = event_id or self._new_id()
        _edge(body.get("start"), "start")
        _edge(body.get("end"), "end")
        now = rfc3339(datetime.fromtimestamp(self._clock(), UTC))
        event = {k: v for k, v in body.items() if k not in ("id", "etag", "kind", "created", "updated",
                                                               "iCalUID", "htmlLink")}
        event.update({"kind": "calendar#event", "id": eid, "status": body.get("status", "confirmed"),
                      "htmlLink": f"https://www.google.com/calendar/event?eid={eid}", "created": now,
                      "iCalUID": str(body.get("iCalUID") or f"{eid}@google.com"), "sequence": 0,
                      "creator": {"email": cal.id, "self": True}, "organizer": {"email": cal.id, "self": True},
                      "reminders": {"useDefault": True}, "eventType": "default"})
        self._touch(cal, event)
        self._notify(cal)
        return event

    def patch_event(self, calendar_id: str, event_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        cal = self._cal(calendar_id)
        event = dict(cal.events[event_id])
        event.update(changes)
        event["sequence"] = int(event.get("sequence", 0)) + 1
        self._touch(cal, event)
        self._notify(cal)
        return event

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        """Delete like Google: the entry stays as ``cancelled`` (a tombstone for incremental sync); deleting a
        recurring master cancels its modified instances too."""
        cal = self._cal(calendar_id)
        event = cal.events[event_id]
        self._touch(cal, {"kind": "calendar#event", "id": event_id, "etag": event["etag"],
                          "status": "cancelled",
                          **({"recurringEventId": event["recurringEventId"],
                              "originalStartTime": event["originalStartTime"]}
                             if "recurringEventId" in event else {})})
        for other in list(cal.events.values()):
            if other.get("recurringEventId") == event_id and other.get("status") != "cancelled":
                self._touch(cal, {k: other[k] for k in ("kind", "id", "etag", "recurringEventId",
                                                        "originalStartTime")} | {"status": "cancelled"})
        self._notify(cal)

    def modify_instance(self, calendar_id: str, master_id: str, original_start: datetime,
                        changes: Mapping[str, Any]) -> dict[str, Any]:
        """Create or change a modified instance of a recurring event (``original_start`` in the master's
        time zone, naive)."""
        cal = self._cal(calendar_id)
        master = cal.events[master_id]
        tz = master["start"].get("timeZone")
        instance_id = f"{master_id}_{original_start.strftime('%Y%m%dT%H%M%S')}"
        if tz is None:
            instance_id += "Z"
        base = cal.events.get(instance_id) or {
            **{k: v for k, v in master.items() if k not in ("recurrence", "id")},
            "id": instance_id, "recurringEventId": master_id,
            "originalStartTime": {"dateTime": original_start.isoformat(), **({"timeZone": tz} if tz else {})},
            "start": {"dateTime": original_start.isoformat(), **({"timeZone": tz} if tz else {})},
            "end": {"dateTime": (original_start + (_edge(master["end"], "end") - _edge(master["start"], "start"))
                                 ).isoformat(), **({"timeZone": tz} if tz else {})}}
        event = {**base, **changes}
        if event.get("status") == "cancelled":  # Google lists a cancelled instance as a bare reference
            event = {k: event[k] for k in ("kind", "id", "status", "recurringEventId", "originalStartTime")}
            event.setdefault("etag", base.get("etag", '"0"'))
        self._touch(cal, event)
        self._notify(cal)
        return event

    def expire_sync_tokens(self, calendar_id: str = PRIMARY_ID) -> None:
        """Every sync token issued so far for the calendar answers 410 from now on."""
        self._cal(calendar_id).min_sync = self._counter + 1

    # --- push ----------------------------------------------------------------------------------------------

    def _notify(self, cal: _Calendar, state: str = "exists", only: _Channel | None = None) -> None:
        now = self._clock()
        for channel in [only] if only else list(self.channels.values()):
            if channel.calendar_id != cal.id or channel.expires_at <= now:
                continue
            headers = GoogleCalendarScheme.sign(
                channel_id=channel.id, token=channel.token or "", message_number=channel.number,
                resource_id=channel.resource_id, resource_state=state,
                resource_uri=f"https://www.googleapis.com/calendar/v3/calendars/{cal.id}/events?alt=json",
                expiration=datetime.fromtimestamp(channel.expires_at, UTC))
            if channel.token is None:
                headers.pop("X-Goog-Channel-Token")
            channel.number += 1
            try:
                self.webhooks.send(channel.address, b"", headers)
            except RuntimeError:  # no running loop (changes made from synchronous test code): not delivered
                self.faults.webhooks["not_sent_no_loop"] += 1

    # --- listing -------------------------------------------------------------------------------------------

    def _sync_token(self, cal: _Calendar, seq: int) -> str:
        raw = json.dumps({"c": cal.id, "s": seq}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _read_sync_token(self, cal: _Calendar, token: str) -> int:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            seq = int(data["s"])
            assert data["c"] == cal.id
        except Exception:
            raise GoogleApiError(400, "invalid", "Invalid sync token value.") from None
        if seq < cal.min_sync:
            raise GoogleApiError(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is "
                                                          "required.")
        return seq

    def list_events(self, calendar_id: str, q: Mapping[str, str]) -> dict[str, Any]:
        cal = self._cal(calendar_id)
        if q.get("singleEvents", "false").lower() == "true":
            raise GoogleApiError(400, "notEmulated", "singleEvents=true is not emulated by the sandbox")
        try:
            max_results = min(2500, max(1, int(q.get("maxResults", "250"))))
        except ValueError:
            raise GoogleApiError(400, "invalid", "Invalid value for maxResults") from None
        if q.get("pageToken"):
            try:
                state = json.loads(base64.urlsafe_b64decode(q["pageToken"] + "=" * (-len(q["pageToken"]) % 4)))
                since, snapshot, after, params = state["since"], int(state["snap"]), int(state["after"]), state["p"]
            except Exception:
                raise GoogleApiError(400, "invalid", "Invalid page token value.") from None
            if since is not None and since < cal.min_sync:
                raise GoogleApiError(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is "
                                                              "required.")
        else:
            since = None
            if q.get("syncToken"):
                bad = [name for name in _SYNC_FORBIDDEN if q.get(name)]
                if bad:
                    raise GoogleApiError(400, "invalid", f"{bad[0]} cannot be used with syncToken")
                if q.get("showDeleted", "true").lower() == "false":
                    raise GoogleApiError(400, "invalid", "showDeleted=false cannot be used with syncToken")
                since = self._read_sync_token(cal, q["syncToken"])
            snapshot, after = self._counter, 0
            params = {k: q[k] for k in ("timeMin", "timeMax", "iCalUID", "showDeleted", "updatedMin") if q.get(k)}
        # Pages continue after the change number of the last entry served: an entry changed while the client
        # pages moves beyond the snapshot (it comes with the next sync token) and shifts nothing.
        chosen = self._select(cal, since, snapshot, params, after)
        page = chosen[:max_results]
        body: dict[str, Any] = {
            "kind": "calendar#events", "etag": f'"{snapshot}"', "summary": cal.summary,
            "updated": rfc3339(datetime.fromtimestamp(self._clock(), UTC)), "timeZone": cal.time_zone,
            "accessRole": "owner", "defaultReminders": [], "items": page}
        if max_results < len(chosen):
            token = {"since": since, "snap": snapshot, "after": cal.seq[page[-1]["id"]], "p": params}
            body["nextPageToken"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")
        else:
            body["nextSyncToken"] = self._sync_token(cal, snapshot)
        return body

    def _select(self, cal: _Calendar, since: int | None, snapshot: int, params: Mapping[str, str],
                after: int = 0) -> list[dict[str, Any]]:
        lo = _parse_time(params["timeMin"], "timeMin") if "timeMin" in params else None
        hi = _parse_time(params["timeMax"], "timeMax") if "timeMax" in params else None
        upd = _parse_time(params["updatedMin"], "updatedMin") if "updatedMin" in params else None
        show_deleted = since is not None or params.get("showDeleted", "false").lower() == "true"
        out = []
        for eid in sorted(cal.events, key=lambda i: cal.seq[i]):
            seq = cal.seq[eid]
            if seq > snapshot or seq <= after or (since is not None and seq <= since):
                continue
            event = cal.events[eid]
            cancelled = event.get("status") == "cancelled"
            if cancelled and not show_deleted and "recurringEventId" not in event:
                continue
            if "iCalUID" in params and self._uid_of(cal, event) != params["iCalUID"]:
                continue
            if upd is not None and _parse_time(event["updated"], "updated") < upd:
                continue
            if (lo or hi) and not cancelled:
                start, end = _edge(event["start"], "start"), _edge(event["end"], "end")
                if hi is not None and start >= hi:
                    continue
                if lo is not None and end <= lo and not event.get("recurrence"):
                    continue
            out.append(event)
        return out

    @staticmethod
    def _uid_of(cal: _Calendar, event: Mapping[str, Any]) -> str | None:
        """The series UID the server knows even when the entry shown is a bare cancelled-instance reference."""
        if event.get("iCalUID"):
            return str(event["iCalUID"])
        master = cal.events.get(str(event.get("recurringEventId") or ""))
        return str(master.get("iCalUID")) if master and master.get("iCalUID") else None

    def _calendar_entry(self, cal: _Calendar) -> dict[str, Any]:
        entry: dict[str, Any] = {"kind": "calendar#calendarListEntry", "etag": f'"{len(cal.events)}"', "id": cal.id,
                 "summary": cal.summary, "timeZone": cal.time_zone, "accessRole": "owner",
                 "defaultReminders": []}
        if cal.primary:
            entry["primary"] = True
        return entry

    # --- the API ---------------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        api = FastAPI(title="Google Calendar API v3 (sandbox)", docs_url=None, redoc_url=None, openapi_url=None)
        emulator = self

        @api.middleware("http")
        async def _record(request: Request, call_next: Any) -> Response:
            emulator.requests.append((request.method, request.url.path, dict(request.query_params)))
            del emulator.requests[:-500]
            response: Response = await call_next(request)
            return response

        @api.exception_handler(GoogleApiError)
        async def _error(_request: Request, exc: GoogleApiError) -> Response:
            return JSONResponse(error_json(exc.status, exc.reason, exc.message), status_code=exc.status)

        async def body_of(request: Request) -> dict[str, Any]:
            try:
                data = json.loads(await request.body() or b"{}")
            except ValueError:
                raise GoogleApiError(400, "parseError", "Parse Error") from None
            if not isinstance(data, dict):
                raise GoogleApiError(400, "parseError", "Parse Error")
            return data

        def check_if_match(request: Request, event: dict[str, Any]) -> None:
            wanted = request.headers.get("if-match")
            if wanted and wanted != "*" and wanted != event.get("etag"):
                raise GoogleApiError(412, "conditionNotMet", "Precondition Failed")

        @api.get("/users/me/calendarList")
        async def calendar_list() -> Response:
            return JSONResponse({"kind": "calendar#calendarList", "etag": '"1"', "items": [
                emulator._calendar_entry(c) for c in emulator.calendars.values()]})

        @api.get("/calendars/{calendar_id}/events")
        async def list_events(calendar_id: str, request: Request) -> Response:
            return JSONResponse(emulator.list_events(calendar_id, dict(request.query_params)))

        @api.post("/calendars/{calendar_id}/events")
        async def insert_event(calendar_id: str, request: Request) -> Response:
            cal = emulator._cal(calendar_id)
            body = await body_of(request)
            eid = body.get("id")
            if eid is not None:
                if not isinstance(eid, str) or not _EVENT_ID.match(eid):
                    raise GoogleApiError(400, "invalid", "Invalid resource id value.")
                if eid in cal.events:
                    raise GoogleApiError(409, "duplicate", "The requested identifier already exists.")
            return JSONResponse(emulator._insert(cal.id, body, event_id=eid))

        @api.get("/calendars/{calendar_id}/events/{event_id}")
        async def get_event(calendar_id: str, event_id: str) -> Response:
            event = emulator._cal(calendar_id).events.get(event_id)
            if event is None:
                raise GoogleApiError(404, "notFound", "Not Found")
            return JSONResponse(event)

        @api.put("/calendars/{calendar_id}/events/{event_id}")
        async def update_event(calendar_id: str, event_id: str, request: Request) -> Response:
            cal = emulator._cal(calendar_id)
            event = cal.events.get(event_id)
            if event is None:
                raise GoogleApiError(404, "notFound", "Not Found")
            check_if_match(request, event)
            body = await body_of(request)
            _edge(body.get("start"), "start")
            _edge(body.get("end"), "end")
            kept = ("kind", "id", "htmlLink", "created", "iCalUID", "creator", "organizer", "eventType",
                    "recurringEventId", "originalStartTime")
            keep: dict[str, Any] = {k: event[k] for k in kept if k in event}
            updated: dict[str, Any] = {**{k: v for k, v in body.items() if k not in ("etag", "updated")}, **keep,
                       "status": body.get("status", "confirmed"), "sequence": int(event.get("sequence", 0)) + 1}
            emulator._touch(cal, updated)
            emulator._notify(cal)
            return JSONResponse(updated)

        @api.delete("/calendars/{calendar_id}/events/{event_id}")
        async def delete_event(calendar_id: str, event_id: str, request: Request) -> Response:
            cal = emulator._cal(calendar_id)
            event = cal.events.get(event_id)
            if event is None:
                raise GoogleApiError(404, "notFound", "Not Found")
            if event.get("status") == "cancelled":
                raise GoogleApiError(410, "deleted", "Resource has been deleted")
            check_if_match(request, event)
            emulator.delete_event(cal.id, event_id)
            return Response(status_code=204)

        @api.post("/calendars/{calendar_id}/events/watch")
        async def watch(calendar_id: str, request: Request) -> Response:
            cal = emulator._cal(calendar_id)
            body = await body_of(request)
            cid, address = body.get("id"), body.get("address")
            if not isinstance(cid, str) or not cid or not isinstance(address, str):
                raise GoogleApiError(400, "required", "Required: id, address")
            if body.get("type") not in ("web_hook", "webhook"):
                raise GoogleApiError(400, "invalid", "Invalid channel type")
            if not address.startswith(("https://", "http://")):
                raise GoogleApiError(400, "push.webhookUrlNotHttps", "WebHook callback must be HTTPS")
            if cid in emulator.channels:
                raise GoogleApiError(400, "channelIdNotUnique", "Channel id not unique")
            now = emulator._clock()
            expires = now + emulator.max_channel_ttl
            params = body.get("params") or {}
            if isinstance(params, dict) and params.get("ttl"):
                expires = min(expires, now + float(params["ttl"]))
            if body.get("expiration"):
                expires = min(expires, int(body["expiration"]) / 1000.0)
            token = body.get("token")
            channel = _Channel(cid, f"rid-{secrets.token_hex(8)}", cal.id, address,
                               token if isinstance(token, str) else None, expires)
            emulator.channels[cid] = channel
            emulator._notify(cal, "sync", only=channel)
            out = {"kind": "api#channel", "id": cid, "resourceId": channel.resource_id,
                   "resourceUri": f"https://www.googleapis.com/calendar/v3/calendars/{cal.id}/events?alt=json",
                   "expiration": str(int(expires * 1000))}
            if channel.token is not None:
                out["token"] = channel.token
            return JSONResponse(out)

        @api.post("/channels/stop")
        async def stop(request: Request) -> Response:
            body = await body_of(request)
            channel = emulator.channels.get(str(body.get("id")))
            if channel is None or channel.resource_id != body.get("resourceId"):
                raise GoogleApiError(404, "notFound", f"Channel '{body.get('id')}' not found for project")
            del emulator.channels[channel.id]
            return Response(status_code=204)

        return api


def create_emulator(*, seed: int = 42, events: int = 40, anchor: date | None = None, oauth: Any = None,
                    max_channel_ttl: float = 7 * 86400.0, **_: Any) -> GoogleCalendarEmulator:
    """Registry entry point (see ``wedsync.sandbox.registry``)."""
    return GoogleCalendarEmulator(seed=seed, events=events, anchor=anchor, oauth=oauth,
                                  max_channel_ttl=max_channel_ttl)
