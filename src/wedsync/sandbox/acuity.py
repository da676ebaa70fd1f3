"""Acuity Scheduling API v1 emulator: me, calendars, appointments (list/get/cancel), dynamic webhooks.

No machine-readable Acuity spec is in ``../shared/specs``; this follows Acuity's documented API
(developers.acuityscheduling.com): HTTP Basic with the user id and API key, ``GET /appointments`` filtered by
``minDate``/``maxDate``/``calendarID``/``canceled`` and capped by ``max`` (default 100; no cursor), appointment
objects with ``datetime`` (``2027-06-17T10:00:00+0100``), ``duration`` (minutes, as a string), ``canceled``;
errors as ``{"status_code", "message", "error"}``. Webhooks (``POST /webhooks`` with ``event`` and ``target``)
deliver a form-encoded body ``action=scheduled&id=..&calendarID=..&appointmentTypeID=..`` signed with
``X-Acuity-Signature`` = base64 HMAC-SHA256(API key, body), naming the appointment only.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from wedsync.connectors.webhooks import AcuityScheme
from wedsync.sandbox.faults import FaultInjector
from wedsync.sandbox.hooks import WebhookDispatcher

__all__ = ["DEFAULT_API_KEY", "DEFAULT_USER_ID", "PREFIX", "SLUG", "AcuityEmulator", "create_emulator"]

SLUG = "acuity"
PREFIX = "/acuity/api/v1"
DEFAULT_USER_ID = "1234567"
DEFAULT_API_KEY = "sandbox-acuity-api-key"
ZONE = "Europe/London"
WEBHOOK_EVENTS = ("appointment.scheduled", "appointment.rescheduled", "appointment.canceled",
                  "appointment.changed", "order.completed")


class AcuityError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def error_json(status: int, error: str, message: str) -> dict[str, Any]:
    return {"status_code": status, "message": message, "error": error}


class _BasicGate:
    def __init__(self, app: ASGIApp, emulator: AcuityEmulator) -> None:
        self.app, self.emulator = app, emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.emulator.basic_user(scope) is None:
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"www-authenticate", b'Basic realm="Acuity Scheduling API"')]})
            await send({"type": "http.response.body", "body": json.dumps(error_json(
                401, "unauthorized", "Unauthorized")).encode()})
            return
        await self.app(scope, receive, send)


class AcuityEmulator:
    slug = SLUG
    prefix = PREFIX

    def __init__(self, *, seed: int = 42, appointments: int = 25, anchor: date | None = None,
                 user_id: str = DEFAULT_USER_ID, api_key: str = DEFAULT_API_KEY,
                 clock: Callable[[], float] = time.time) -> None:
        self.faults = FaultInjector()
        self.webhooks = WebhookDispatcher(self.faults)
        self._seed = seed
        self._initial = {"appointments": appointments}
        self.anchor = anchor or datetime.now(UTC).date()
        self.user_id, self.api_key = user_id, api_key
        self._clock = clock
        self.calendars = [{"id": 4001, "name": "Bloom & Vine consultations", "email": "florist@wedsync.test",
                           "replyTo": "florist@wedsync.test", "description": "", "location": "Studio",
                           "timezone": ZONE, "thumbnail": "", "image": ""},
                          {"id": 4002, "name": "Venue walkthroughs", "email": "florist@wedsync.test",
                           "replyTo": "florist@wedsync.test", "description": "", "location": "On site",
                           "timezone": ZONE, "thumbnail": "", "image": ""}]
        self.appointments: dict[int, dict[str, Any]] = {}
        self.hooks: dict[int, dict[str, Any]] = {}
        self._next_id = 900_000_001
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.api = self._build_api()
        self._app = _BasicGate(self.api, self)
        self.seed(self._initial)

    # --- Emulator protocol -------------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        return self._app

    def basic_user(self, scope: Scope) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                kind, _, cred = value.decode("latin-1").partition(" ")
                if kind.lower() != "basic":
                    return None
                try:
                    user, _, key = base64.b64decode(cred.strip()).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    return None
                return user if (user, key) == (self.user_id, self.api_key) else None
        return None

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        error = "too_many_requests" if kind == "rate-limit" else "server_error"
        return json.dumps(error_json(status, error, detail)).encode()

    def quota_key(self, scope: Scope) -> str | None:
        return self.basic_user(scope)

    def collections(self) -> list[str]:
        return ["appointments", "webhooks"]

    def iter_records(self, collection: str, base_url: str, offset: int, limit: int | None) -> Iterator[bytes]:
        rows = list(self.appointments.values()) if collection == "appointments" else list(self.hooks.values())
        end = None if limit is None else offset + limit
        for row in rows[offset:end]:
            yield json.dumps(row).encode()

    def reset(self) -> dict[str, Any]:
        self.hooks.clear()
        self.webhooks.clear()
        return self.seed(self._initial)

    def seed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        count = int(params.get("appointments", self._initial["appointments"]))
        if count < 0:
            raise ValueError("appointments must be >= 0")
        self._seed = int(params.get("seed", self._seed))
        self._rng = random.Random(self._seed)
        self.appointments.clear()
        self._next_id = 900_000_001
        for i in range(count):
            day = self.anchor + timedelta(days=self._rng.randrange(-10, 90))
            start = datetime.combine(day, datetime.min.time(), ZoneInfo(ZONE)) + timedelta(hours=9 + i % 8)
            appt = self.schedule(start, 60 if i % 2 else 30, f"Client{i}", f"client{i}@example.com",
                                 calendar_id=4001 if i % 4 else 4002, notify=False)
            if i % 7 == 6:
                self.cancel(appt["id"], notify=False)
        return {"seed": self._seed, "appointments": len(self.appointments)}

    async def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        create, cancel = int(params.get("create", 0)), int(params.get("cancel", params.get("delete", 0)))
        live = sorted(i for i, a in self.appointments.items() if not a["canceled"])
        canceled = self._rng.sample(live, min(cancel, len(live)))
        for appt_id in canceled:
            self.cancel(appt_id)
        created = []
        for _ in range(create):
            start = datetime.combine(self.anchor + timedelta(days=self._rng.randrange(1, 60)), datetime.min.time(),
                                     ZoneInfo(ZONE)) + timedelta(hours=15)
            created.append(self.schedule(start, 60, "New", "new@example.com")["id"])
        return {"created": created, "canceled": canceled}

    # --- data ------------------------------------------------------------------------------------------------

    def schedule(self, start: datetime, minutes: int, first: str, email: str, *, calendar_id: int = 4001,
                 notify: bool = True) -> dict[str, Any]:
        """A client books (fires ``scheduled``)."""
        local = start.astimezone(ZoneInfo(ZONE))
        end = local + timedelta(minutes=minutes)
        now = datetime.fromtimestamp(self._clock(), ZoneInfo(ZONE))
        cal = next(c for c in self.calendars if c["id"] == calendar_id)
        appt: dict[str, Any] = {
            "id": self._next_id, "firstName": first, "lastName": "Client", "phone": "", "email": email,
            "date": local.strftime("%B %-d, %Y"), "time": local.strftime("%-I:%M%p").lower(),
            "endTime": end.strftime("%-I:%M%p").lower(), "dateCreated": now.strftime("%B %-d, %Y"),
            "datetimeCreated": now.strftime("%Y-%m-%dT%H:%M:%S%z"), "datetime": local.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "price": "0.00", "priceSold": "0.00", "paid": "no", "amountPaid": "0.00",
            "type": "Wedding flower consultation", "appointmentTypeID": 7001, "classID": None, "addonIDs": [],
            "category": "", "duration": str(minutes), "calendar": cal["name"], "calendarID": calendar_id,
            "certificate": None, "confirmationPage": f"https://app.acuityscheduling.com/schedule.php?id={self._next_id}",
            "location": cal["location"], "notes": "", "timezone": ZONE, "calendarTimezone": ZONE,
            "canceled": False, "canClientCancel": True, "canClientReschedule": True, "labels": None,
            "forms": [], "formsText": "",
        }
        self.appointments[self._next_id] = appt
        self._next_id += 1
        if notify:
            self._fire("scheduled", appt)
        return appt

    def cancel(self, appt_id: int, *, notify: bool = True) -> dict[str, Any]:
        appt = self.appointments[appt_id]
        appt["canceled"] = True
        if notify:
            self._fire("canceled", appt)
        return appt

    def reschedule(self, appt_id: int, start: datetime) -> dict[str, Any]:
        appt = self.appointments[appt_id]
        local = start.astimezone(ZoneInfo(ZONE))
        appt.update(datetime=local.strftime("%Y-%m-%dT%H:%M:%S%z"), date=local.strftime("%B %-d, %Y"),
                    time=local.strftime("%-I:%M%p").lower(),
                    endTime=(local + timedelta(minutes=int(appt["duration"]))).strftime("%-I:%M%p").lower())
        self._fire("rescheduled", appt)
        return appt

    def _fire(self, action: str, appt: Mapping[str, Any]) -> None:
        body = urlencode({"action": action, "id": appt["id"], "calendarID": appt["calendarID"],
                          "appointmentTypeID": appt["appointmentTypeID"]}).encode()
        headers = {"content-type": "application/x-www-form-urlencoded", **AcuityScheme.sign(body, self.api_key)}
        for hook in self.hooks.values():
            if hook["event"] == f"appointment.{action}":
                try:
                    self.webhooks.send(hook["target"], body, headers)
                except RuntimeError:
                    self.faults.webhooks["not_sent_no_loop"] += 1

    # --- the API ---------------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        api = FastAPI(title="Acuity Scheduling API v1 (sandbox)", docs_url=None, redoc_url=None, openapi_url=None)
        emulator = self

        @api.middleware("http")
        async def _record(request: Request, call_next: Any) -> Response:
            emulator.requests.append((request.method, request.url.path, dict(request.query_params)))
            del emulator.requests[:-500]
            response: Response = await call_next(request)
            return response

        @api.exception_handler(AcuityError)
        async def _error(_request: Request, exc: AcuityError) -> Response:
            return JSONResponse(error_json(exc.status, exc.error, exc.message), status_code=exc.status)

        def day(value: str | None, name: str) -> date | None:
            if not value:
                return None
            try:
                return date.fromisoformat(value[:10])
            except ValueError:
                raise AcuityError(400, "invalid_date", f"Invalid {name}") from None

        @api.get("/me")
        async def me() -> Response:
            return JSONResponse({"id": int(emulator.user_id), "email": "florist@wedsync.test", "timezone": ZONE,
                                 "name": "Bloom & Vine", "plan": "Powerhouse", "currency": "GBP"})

        @api.get("/calendars")
        async def calendars() -> Response:
            return JSONResponse(emulator.calendars)

        @api.get("/appointments")
        async def appointments(request: Request) -> Response:
            q = request.query_params
            try:
                limit = int(q.get("max", "100"))
                cal_id = int(q["calendarID"]) if q.get("calendarID") else None
            except ValueError:
                raise AcuityError(400, "invalid_parameter", "max and calendarID must be numbers") from None
            lo, hi = day(q.get("minDate"), "minDate"), day(q.get("maxDate"), "maxDate")
            canceled = q.get("canceled", "false").lower() == "true"
            rows = []
            for appt in emulator.appointments.values():
                when = datetime.fromisoformat(appt["datetime"]).date()
                if appt["canceled"] != canceled or (cal_id is not None and appt["calendarID"] != cal_id):
                    continue
                if (lo and when < lo) or (hi and when > hi):
                    continue
                rows.append(appt)
            rows.sort(key=lambda a: (a["datetime"], a["id"]), reverse=q.get("direction", "DESC").upper() == "DESC")
            return JSONResponse(rows[:max(1, limit)])

        @api.get("/appointments/{appt_id}")
        async def appointment(appt_id: int) -> Response:
            appt = emulator.appointments.get(appt_id)
            if appt is None:
                raise AcuityError(404, "not_found", "The appointment was not found.")
            return JSONResponse(appt)

        @api.put("/appointments/{appt_id}/cancel")
        async def cancel(appt_id: int) -> Response:
            if appt_id not in emulator.appointments:
                raise AcuityError(404, "not_found", "The appointment was not found.")
            return JSONResponse(emulator.cancel(appt_id))

        @api.get("/webhooks")
        async def hooks() -> Response:
            return JSONResponse(list(emulator.hooks.values()))

        @api.post("/webhooks")
        async def subscribe(request: Request) -> Response:
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                raise AcuityError(400, "invalid_body", "Body must be JSON") from None
            if body.get("event") not in WEBHOOK_EVENTS:
                raise AcuityError(400, "invalid_event", f"event must be one of {', '.join(WEBHOOK_EVENTS)}")
            target = body.get("target")
            if not isinstance(target, str) or not target.startswith(("https://", "http://")):
                raise AcuityError(400, "invalid_target", "target must be a URL")
            if len(emulator.hooks) >= 25:
                raise AcuityError(400, "too_many_webhooks", "You may have at most 25 webhooks.")
            hook = {"id": len(emulator.hooks) + 1 + max(emulator.hooks, default=0), "event": body["event"],
                    "target": target, "status": "active"}
            emulator.hooks[hook["id"]] = hook
            return JSONResponse(hook)

        @api.delete("/webhooks/{hook_id}")
        async def unsubscribe(hook_id: int) -> Response:
            if emulator.hooks.pop(hook_id, None) is None:
                raise AcuityError(404, "not_found", "Webhook not found")
            return Response(status_code=204)

        return api


def create_emulator(*, seed: int = 42, appointments: int = 25, anchor: date | None = None,
                    **_: Any) -> AcuityEmulator:
    """Registry entry point (see ``wedsync.sandbox.registry``)."""
    return AcuityEmulator(seed=seed, appointments=appointments, anchor=anchor)
