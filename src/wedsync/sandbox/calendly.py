"""Calendly API v2 emulator: users/me, scheduled events and invitees, cancellations, webhook subscriptions.

Faithful to ``../shared/specs/calendly/openapi.yaml``: bearer tokens (personal access token), the
``{"collection", "pagination"}`` list shape with ``count`` (1..100) and ``page_token``, ``{"resource": ...}``
single shapes, ``{"title", "message"}`` errors, ``POST /webhook_subscriptions`` (409 "Hook with this url already
exists") whose deliveries are ``invitee.created`` / ``invitee.canceled`` payloads signed with the subscription's
``signing_key`` in ``Calendly-Webhook-Signature: t=..,v1=..``. Bookings are made with :meth:`CalendlyEmulator.book`
(as an invitee would on the scheduling page) and canceled through the API or :meth:`CalendlyEmulator.cancel`.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Scope

from wedsync.connectors.webhooks import CalendlyScheme
from wedsync.sandbox.faults import FaultInjector
from wedsync.sandbox.google_calendar import BearerGate, bearer_token
from wedsync.sandbox.hooks import WebhookDispatcher

__all__ = ["DEFAULT_ACCESS_TOKEN", "PREFIX", "SLUG", "CalendlyEmulator", "create_emulator"]

SLUG = "calendly"
PREFIX = "/calendly"
API = "https://api.calendly.com"
DEFAULT_ACCESS_TOKEN = "sandbox-calendly-token"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class CalendlyError(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Hook:
    uuid: str
    url: str
    events: list[str]
    scope: str
    organization: str
    user: str | None
    signing_key: str | None
    created: str


class CalendlyEmulator:
    slug = SLUG
    prefix = PREFIX

    def __init__(self, *, seed: int = 42, events: int = 25, anchor: date | None = None,
                 access_tokens: tuple[str, ...] = (DEFAULT_ACCESS_TOKEN,),
                 clock: Callable[[], float] = time.time) -> None:
        self.faults = FaultInjector()
        self.webhooks = WebhookDispatcher(self.faults)
        self._seed = seed
        self._initial = {"events": events}
        self.anchor = anchor or datetime.now(UTC).date()
        self.access_tokens = set(access_tokens)
        self._clock = clock
        self.user_uuid = "USERFLORIST00001"
        self.org_uuid = "ORGBLOOMVINE0001"
        self.events: dict[str, dict[str, Any]] = {}
        self.invitees: dict[str, dict[str, Any]] = {}  # invitee uuid -> invitee (with "event" uri)
        self.hooks: dict[str, _Hook] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.api = self._build_api()
        self._app = BearerGate(self.api, lambda t: t in self.access_tokens, lambda: json.dumps(
            {"title": "Unauthenticated", "message": "The access token is invalid"}).encode())
        self.seed(self._initial)

    # --- Emulator protocol -------------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        return self._app

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        title = "Too Many Requests" if kind == "rate-limit" else "Internal Server Error"
        return json.dumps({"title": title, "message": detail}).encode()

    def quota_key(self, scope: Scope) -> str | None:
        return bearer_token(scope)

    def collections(self) -> list[str]:
        return ["scheduled_events", "invitees", "webhook_subscriptions"]

    def iter_records(self, collection: str, base_url: str, offset: int, limit: int | None) -> Iterator[bytes]:
        rows: list[Any] = (list(self.events.values()) if collection == "scheduled_events"
                           else list(self.invitees.values()) if collection == "invitees"
                           else [self._hook_json(h) for h in self.hooks.values()])
        end = None if limit is None else offset + limit
        for row in rows[offset:end]:
            yield json.dumps(row).encode()

    def reset(self) -> dict[str, Any]:
        self.hooks.clear()
        self.webhooks.clear()
        return self.seed(self._initial)

    def seed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        count = int(params.get("events", self._initial["events"]))
        if count < 0:
            raise ValueError("events must be >= 0")
        self._seed = int(params.get("seed", self._seed))
        self._rng = random.Random(self._seed)
        self.events.clear()
        self.invitees.clear()
        for i in range(count):
            day = self.anchor + timedelta(days=self._rng.randrange(-10, 90))
            start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=9 + self._rng.randrange(8))
            uuid = self.book(start, 30 if i % 3 else 60, f"Couple {i}", f"couple{i}@example.com", notify=False)
            if i % 6 == 5:
                self.cancel(uuid, notify=False)
        return {"seed": self._seed, "events": len(self.events)}

    async def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        create, cancel = int(params.get("create", 0)), int(params.get("cancel", params.get("delete", 0)))
        active = sorted(u for u, e in self.events.items() if e["status"] == "active")
        canceled = self._rng.sample(active, min(cancel, len(active)))
        for uuid in canceled:
            self.cancel(uuid)
        created = []
        for _ in range(create):
            start = datetime.combine(self.anchor + timedelta(days=self._rng.randrange(1, 60)), datetime.min.time(),
                                     UTC) + timedelta(hours=14)
            created.append(self.book(start, 30, "New couple", "new@example.com"))
        return {"created": created, "canceled": canceled}

    # --- data ------------------------------------------------------------------------------------------------

    def _uuid(self) -> str:
        return "".join(self._rng.choice(_ALPHABET) for _ in range(16))

    @property
    def user_uri(self) -> str:
        return f"{API}/users/{self.user_uuid}"

    @property
    def org_uri(self) -> str:
        return f"{API}/organizations/{self.org_uuid}"

    def _now(self) -> str:
        return _ts(datetime.fromtimestamp(self._clock(), UTC))

    def book(self, start: datetime, minutes: int, name: str, email: str, *, notify: bool = True) -> str:
        """An invitee books a slot: a new scheduled event with one invitee (fires ``invitee.created``)."""
        uuid, invitee_uuid, now = self._uuid(), self._uuid(), self._now()
        uri = f"{API}/scheduled_events/{uuid}"
        self.events[uuid] = {
            "uri": uri, "name": "Wedding consultation", "status": "active",
            "start_time": _ts(start), "end_time": _ts(start + timedelta(minutes=minutes)),
            "event_type": f"{API}/event_types/CONSULTATION0001",
            "location": {"type": "physical", "location": "Bloom & Vine studio"},
            "invitees_counter": {"total": 1, "active": 1, "limit": 1},
            "created_at": now, "updated_at": now,
            "event_memberships": [{"user": self.user_uri}], "event_guests": [],
            "calendar_event": None,  # the vendor's own calendar copy (none connected in the sandbox)
        }
        first, _, last = name.partition(" ")
        self.invitees[invitee_uuid] = {
            "uri": f"{uri}/invitees/{invitee_uuid}", "email": email, "first_name": first, "last_name": last or None,
            "name": name, "status": "active", "questions_and_answers": [], "timezone": "Europe/London",
            "event": uri, "created_at": now, "updated_at": now, "tracking": {
                "utm_campaign": None, "utm_source": None, "utm_medium": None, "utm_content": None,
                "utm_term": None, "salesforce_uuid": None},
            "text_reminder_number": None, "rescheduled": False, "old_invitee": None, "new_invitee": None,
            "cancel_url": f"https://calendly.com/cancellations/{invitee_uuid}",
            "reschedule_url": f"https://calendly.com/reschedulings/{invitee_uuid}",
            "routing_form_submission": None, "payment": None, "no_show": None, "reconfirmation": None,
        }
        if notify:
            self._fire("invitee.created", self.invitees[invitee_uuid])
        return uuid

    def cancel(self, uuid: str, reason: str = "", *, notify: bool = True) -> dict[str, Any]:
        event = self.events[uuid]
        if event["status"] == "canceled":
            raise CalendlyError(403, "Permission Denied", "Event is already canceled")
        now = self._now()
        cancellation = {"canceled_by": "Bloom & Vine", "reason": reason or None, "canceler_type": "host",
                        "created_at": now}
        event.update(status="canceled", updated_at=now, cancellation=cancellation,
                     invitees_counter={"total": 1, "active": 0, "limit": 1})
        for invitee in self.invitees.values():
            if invitee["event"] == event["uri"] and invitee["status"] == "active":
                invitee.update(status="canceled", updated_at=now, cancellation=cancellation)
                if notify:
                    self._fire("invitee.canceled", invitee)
        return cancellation

    def _fire(self, name: str, invitee: Mapping[str, Any]) -> None:
        payload = {"created_at": self._now(), "created_by": self.user_uri, "event": name,
                   "payload": {**invitee, "canceled": invitee["status"] == "canceled"}}
        body = json.dumps(payload).encode()
        for hook in self.hooks.values():
            if name not in hook.events:
                continue
            headers = CalendlyScheme.sign(body, hook.signing_key, timestamp=int(self._clock())) \
                if hook.signing_key else {}
            try:
                self.webhooks.send(hook.url, body, headers)
            except RuntimeError:
                self.faults.webhooks["not_sent_no_loop"] += 1

    def _hook_json(self, hook: _Hook) -> dict[str, Any]:
        return {"uri": f"{API}/webhook_subscriptions/{hook.uuid}", "callback_url": hook.url,
                "created_at": hook.created, "updated_at": hook.created, "retry_started_at": None,
                "state": "active", "events": hook.events, "scope": hook.scope, "organization": hook.organization,
                "user": hook.user, "creator": self.user_uri}

    # --- the API ---------------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        api = FastAPI(title="Calendly API v2 (sandbox)", docs_url=None, redoc_url=None, openapi_url=None)
        emulator = self

        @api.middleware("http")
        async def _record(request: Request, call_next: Any) -> Response:
            body = await request.body()
            emulator.requests.append((request.method, request.url.path, dict(request.query_params), body))
            del emulator.requests[:-500]
            response: Response = await call_next(request)
            return response

        @api.exception_handler(CalendlyError)
        async def _error(_request: Request, exc: CalendlyError) -> Response:
            return JSONResponse({"title": exc.title, "message": exc.message}, status_code=exc.status)

        def invalid(parameter: str, message: str) -> CalendlyError:
            return CalendlyError(400, "Invalid Argument", f"{parameter}: {message}")

        def page_of(request: Request, rows: list[dict[str, Any]], path: str) -> dict[str, Any]:
            q = request.query_params
            try:
                count = int(q.get("count", "20"))
            except ValueError:
                raise invalid("count", "must be a number") from None
            if not 1 <= count <= 100:
                raise invalid("count", "must be between 1 and 100")
            offset = 0
            if q.get("page_token"):
                try:
                    offset = int(base64.urlsafe_b64decode(q["page_token"] + "==").decode())
                except ValueError:
                    raise invalid("page_token", "is invalid") from None
            chunk = rows[offset:offset + count]

            def link(at: int) -> tuple[str, str]:
                token = base64.urlsafe_b64encode(str(at).encode()).decode().rstrip("=")
                params = "&".join(f"{k}={v}" for k, v in q.items() if k != "page_token")
                return token, f"{API}{path}?{params}&page_token={token}".replace("?&", "?")

            nxt = link(offset + count) if offset + count < len(rows) else None
            prev = link(max(0, offset - count)) if offset > 0 else None
            return {"collection": chunk, "pagination": {
                "count": len(chunk), "next_page": nxt[1] if nxt else None, "next_page_token": nxt[0] if nxt else None,
                "previous_page": prev[1] if prev else None, "previous_page_token": prev[0] if prev else None}}

        def when(value: str | None, name: str) -> datetime | None:
            if value is None:
                return None
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise invalid(name, "must be an ISO 8601 time") from None
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

        @api.get("/users/me")
        async def me() -> Response:
            now = emulator._now()
            return JSONResponse({"resource": {
                "uri": emulator.user_uri, "name": "Bloom & Vine", "slug": "bloom-and-vine",
                "email": "florist@wedsync.test", "scheduling_url": "https://calendly.com/bloom-and-vine",
                "timezone": "Europe/London", "avatar_url": None, "created_at": now, "updated_at": now,
                "current_organization": emulator.org_uri}})

        @api.get("/scheduled_events")
        async def list_events(request: Request) -> Response:
            q = request.query_params
            if not q.get("user") and not q.get("organization"):
                raise invalid("user", "user or organization is required")
            if q.get("user") and q["user"] != emulator.user_uri:
                raise CalendlyError(403, "Permission Denied", "You do not have permission")
            status = q.get("status")
            if status not in (None, "active", "canceled"):
                raise invalid("status", "must be active or canceled")
            lo, hi = when(q.get("min_start_time"), "min_start_time"), when(q.get("max_start_time"), "max_start_time")
            sort = q.get("sort", "start_time:asc")
            if sort not in ("start_time:asc", "start_time:desc"):
                raise invalid("sort", "must be start_time:asc or start_time:desc")
            rows = []
            for event in emulator.events.values():
                start = datetime.fromisoformat(event["start_time"].replace("Z", "+00:00"))
                if (status and event["status"] != status) or (lo and start < lo) or (hi and start > hi):
                    continue
                rows.append(event)
            rows.sort(key=lambda e: (e["start_time"], e["uri"]), reverse=sort.endswith("desc"))
            return JSONResponse(page_of(request, rows, "/scheduled_events"))

        @api.get("/scheduled_events/{uuid}")
        async def get_event(uuid: str) -> Response:
            event = emulator.events.get(uuid)
            if event is None:
                raise CalendlyError(404, "Resource Not Found", "The server could not find the requested resource.")
            return JSONResponse({"resource": event})

        @api.get("/scheduled_events/{uuid}/invitees")
        async def list_invitees(uuid: str, request: Request) -> Response:
            event = emulator.events.get(uuid)
            if event is None:
                raise CalendlyError(404, "Resource Not Found", "The server could not find the requested resource.")
            rows = [i for i in emulator.invitees.values() if i["event"] == event["uri"]]
            return JSONResponse(page_of(request, rows, f"/scheduled_events/{uuid}/invitees"))

        @api.post("/scheduled_events/{uuid}/cancellation")
        async def cancel(uuid: str, request: Request) -> Response:
            if uuid not in emulator.events:
                raise CalendlyError(404, "Resource Not Found", "The server could not find the requested resource.")
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                raise invalid("body", "must be JSON") from None
            return JSONResponse({"resource": emulator.cancel(uuid, str(body.get("reason") or ""))}, status_code=201)

        @api.post("/webhook_subscriptions")
        async def subscribe(request: Request) -> Response:
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                raise invalid("body", "must be JSON") from None
            for name in ("url", "events", "organization", "scope"):
                if not body.get(name):
                    raise invalid(name, "is required")
            events = body["events"]
            if not isinstance(events, list) or any(e not in ("invitee.created", "invitee.canceled",
                                                              "routing_form_submission.created") for e in events):
                raise invalid("events", "contains an unknown event")
            if body["scope"] not in ("user", "organization") or (body["scope"] == "user" and not body.get("user")):
                raise invalid("scope", "user scope needs user")
            if any(h.url == body["url"] for h in emulator.hooks.values()):
                raise CalendlyError(409, "Already Exists", "Hook with this url already exists")
            hook = _Hook(emulator._uuid(), str(body["url"]), list(dict.fromkeys(events)), body["scope"],
                         str(body["organization"]), body.get("user"), body.get("signing_key"), emulator._now())
            emulator.hooks[hook.uuid] = hook
            return JSONResponse({"resource": emulator._hook_json(hook)}, status_code=201)

        @api.get("/webhook_subscriptions")
        async def list_hooks(request: Request) -> Response:
            q = request.query_params
            if not q.get("organization") or not q.get("scope"):
                raise invalid("organization", "organization and scope are required")
            rows = [emulator._hook_json(h) for h in emulator.hooks.values()
                    if h.scope == q["scope"] and (not q.get("user") or h.user == q["user"])]
            return JSONResponse(page_of(request, rows, "/webhook_subscriptions"))

        @api.get("/webhook_subscriptions/{uuid}")
        async def get_hook(uuid: str) -> Response:
            hook = emulator.hooks.get(uuid)
            if hook is None:
                raise CalendlyError(404, "Resource Not Found", "The server could not find the requested resource.")
            return JSONResponse({"resource": emulator._hook_json(hook)})

        @api.delete("/webhook_subscriptions/{uuid}")
        async def delete_hook(uuid: str) -> Response:
            if emulator.hooks.pop(uuid, None) is None:
                raise CalendlyError(404, "Resource Not Found", "The server could not find the requested resource.")
            return Response(status_code=204)

        return api


def create_emulator(*, seed: int = 42, events: int = 25, anchor: date | None = None, **_: Any) -> CalendlyEmulator:
    """Registry entry point (see ``wedsync.sandbox.registry``)."""
    return CalendlyEmulator(seed=seed, events=events, anchor=anchor)

