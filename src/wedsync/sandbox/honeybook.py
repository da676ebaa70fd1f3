"""HoneyBook emulator (the Zapier side; HoneyBook has no public API): hooks, contacts CSV export, Create Project Zap.

Everything in ``wedsync.sandbox.crm_csv_products`` plus the catch hook of the vendor's "Create Project" Zap at
``/honeybook/hooks/catch/{account}/{hook}/``. It answers like Zapier (``{"attempt", "id", "request_id",
"status": "success"}``), records every request (ground truth ``catch-hook-requests``), and, like the recommended
Zap with its Storage-by-Zapier step, creates one project per ``idempotency_key``; ``{"catch_hook": {"dedupe":
false}}`` emulates a Zap without that step. A created project fires "New Project Booked" back at the hub (the
echo of our own write, carrying ``wedsync_reference``). ``{"catch_hook": {"hold_seconds": S, "times": N}}``
makes the next N requests take effect and then answer only after S seconds (a lost answer, for timeout tests).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from wedsync.sandbox.crm_csv_products import PRODUCTS, ZapierProductEmulator, new_request_id
from wedsync.sandbox.store import Collection

__all__ = ["CATCH_HOOK_PATH", "PREFIX", "SLUG", "HoneyBookEmulator", "create_emulator"]

SLUG = "honeybook"
PREFIX = "/honeybook"
CATCH_HOOK_PATH = "/hooks/catch/1234567/wsproj/"


class HoneyBookEmulator(ZapierProductEmulator):
    def __init__(self, **options: Any) -> None:
        self.catch_requests = Collection("catch-hook-requests")
        self.dedupe = True
        self._hold_seconds = 0.0
        self._hold_times = 0
        super().__init__(PRODUCTS[SLUG], **options)

    def collections(self) -> list[str]:
        return [*super().collections(), "catch-hook-requests"]

    def _collection(self, name: str) -> Collection:
        return self.catch_requests if name == "catch-hook-requests" else super()._collection(name)

    def reset(self) -> dict[str, Any]:
        self.catch_requests.clear()
        self.dedupe, self._hold_seconds, self._hold_times = True, 0.0, 0
        return super().reset()

    def _configure_catch_hook(self, options: Mapping[str, Any]) -> None:
        hold = float(options.get("hold_seconds", 0))
        times = int(options.get("times", 1 if hold else 0))
        if hold < 0 or times < 0:
            raise ValueError("hold_seconds and times must be >= 0")
        self._hold_seconds, self._hold_times = hold, times
        if "dedupe" in options:
            self.dedupe = bool(options["dedupe"])

    def projects_created_by_zap(self) -> list[dict[str, Any]]:
        return [p for p in self.projects.records.values() if p.get("wedsync_reference")]

    async def catch(self, request: Request) -> Response:
        raw = await request.body()
        ctype = request.headers.get("content-type", "")
        try:
            payload: Any = json.loads(raw) if "json" in ctype or raw.strip().startswith(b"{") else dict(
                parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except (ValueError, UnicodeDecodeError):
            payload = None
        request_id = new_request_id()
        if not isinstance(payload, dict):  # Zapier keeps a body it cannot parse as one raw field
            payload = {"raw": raw.decode("utf-8", "replace")}
        key = str(payload.get("idempotency_key") or request.headers.get("idempotency-key") or "") or None
        seen = key is not None and any(r["idempotency_key"] == key for r in self.catch_requests.records.values())
        created = None
        if not seen or not self.dedupe:
            created = self._create_project(payload, key)
        self.catch_requests.put({"id": request_id, "received_at": time.time(), "idempotency_key": key,
                                 "header_key": request.headers.get("idempotency-key"), "duplicate": seen,
                                 "project_id": created, "body": payload})
        if self._hold_times > 0:
            self._hold_times -= 1
            await asyncio.sleep(self._hold_seconds)
        return JSONResponse({"attempt": new_request_id(), "id": new_request_id(), "request_id": request_id,
                             "status": "success"})

    def _create_project(self, payload: Mapping[str, Any], key: str | None) -> str | None:
        """The Zap's HoneyBook "Create Project" step: find or create the client by e-mail, add the project."""
        email = str(payload.get("client_email") or "").strip().lower() or None
        client = next((c for c in self.contacts.records.values()
                       if email and str(c.get("email") or "").lower() == email), None)
        if client is None:
            if not (email or payload.get("client_first_name") or payload.get("client_last_name")):
                return None  # HoneyBook needs a client: the Zap step fails, nothing is created
            client = {"id": self.profile.new_id(self._rng), "first_name": payload.get("client_first_name") or "",
                      "last_name": payload.get("client_last_name") or "", "email": email,
                      "phone": payload.get("client_phone"), "company": None, "street": None, "city": None,
                      "state": None, "postal_code": None, "country": None, "created": int(time.time()),
                      "lead_source": payload.get("lead_source")}
            self.contacts.put(client)
            self._fire(self.profile.client_hook(client))
        guests = payload.get("guest_count")
        project = self._book(client, int(time.time()), reference=key,
                             name=str(payload.get("project_name") or "") or None,
                             kind=str(payload.get("project_type") or "") or None,
                             venue=str(payload.get("project_location") or "") or None,
                             guests=guests if isinstance(guests, int) else None)
        if payload.get("project_date"):
            project["date"] = str(payload["project_date"])[:10]
            self.projects.put(project)
        self._fire(self.profile.project_hook(project, client))
        return str(project["id"])

    def _extra_routes(self, api: FastAPI) -> None:
        emulator = self

        @api.post("/hooks/catch/{account}/{hook}/")
        @api.post("/hooks/catch/{account}/{hook}")
        async def catch_hook(request: Request, account: str, hook: str) -> Response:
            if f"/hooks/catch/{account}/{hook}/" != CATCH_HOOK_PATH:
                return JSONResponse({"status": "error", "message": "hook not found"}, 404)
            return await emulator.catch(request)


def create_emulator(*, seed: int = 42, contacts: int = 60, overlap_with_vsco: int = 10, vsco_contacts: int = 200,
                    vsco_jobs: int = 80, **_: Any) -> HoneyBookEmulator:
    """Registry entry point (see ``wedsync.sandbox.registry``)."""
    return HoneyBookEmulator(seed=seed, contacts=contacts, overlap_with_vsco=overlap_with_vsco,
                             vsco_contacts=vsco_contacts, vsco_jobs=vsco_jobs)
