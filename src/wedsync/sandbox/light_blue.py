"""Light Blue emulator: the push-only ``api.php`` contact-form endpoint and the Inbox it fills.

``POST /light-blue/api.php``, form-encoded UTF-8: ``key`` must be the account's API key, ``type`` must be
``contact form``, and at least one documented parameter must be present. The answer is plain text, a status
code and, on error, a summary: ``0`` success, ``-3`` invalid type or no valid parameters, ``-4`` duplicate
(same ``ID`` + ``Source`` as an earlier request), ``-20`` plain HTTP (only when ``require_https`` is set: the
sandbox itself serves HTTP). Light Blue documents no code for a wrong key; this emulator answers ``-1``
(our assumption, and what the connector treats as a rejected key). Accepted requests land in the ``inbox``
ground-truth collection; duplicates in ``duplicates``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Scope

from wedsync.sandbox.faults import FaultInjector
from wedsync.sandbox.hooks import WebhookDispatcher
from wedsync.sandbox.store import Collection

__all__ = ["DEFAULT_API_KEY", "PARAMETERS", "PREFIX", "SLUG", "LightBlueEmulator", "create_emulator"]

SLUG = "light-blue"
PREFIX = "/light-blue"
DEFAULT_API_KEY = "sandbox-lightblue-key"

#: The documented contact-form parameters (regular and advanced).
PARAMETERS = frozenset({
    "Message", "ContactNameFull", "ContactNameFirst", "ContactNameLast", "ContactNameMaiden", "ContactRole",
    "ContactTitle", "ContactDateOfBirth", "ContactSource", "ContactTag", "ContactMailingList", "ContactEmail",
    "ContactPhoneHome", "ContactPhoneWork", "ContactPhoneMobile", "ContactPhone", "ContactPhoneType",
    "ContactWebsite",
})
ADVANCED = frozenset({"Source", "SourceAPIVersion", "ID", "Reference"})


class LightBlueEmulator:
    slug = SLUG
    prefix = PREFIX

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, require_https: bool = False) -> None:
        self.api_key = api_key
        self.require_https = require_https
        self.faults = FaultInjector()
        self.webhooks = WebhookDispatcher(self.faults)
        self.inbox = Collection("inbox")
        self.duplicates = Collection("duplicates")
        self.api = self._build_api()

    @property
    def app(self) -> ASGIApp:
        return self.api

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        return f"Error {status}: {detail}".encode()

    def quota_key(self, scope: Scope) -> str | None:
        return None  # the key travels in the form body

    def collections(self) -> list[str]:
        return ["inbox", "duplicates"]

    def iter_records(self, collection: str, base_url: str, offset: int, limit: int | None) -> Iterator[bytes]:
        target = self.inbox if collection == "inbox" else self.duplicates
        return target.iter_blobs(base_url.encode(), offset, limit)

    def reset(self) -> dict[str, Any]:
        self.inbox.clear()
        self.duplicates.clear()
        return {"inbox": 0}

    def seed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self.reset()
        return {"inbox": 0}

    async def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        raise ValueError("Light Blue's Inbox is filled only through api.php")

    def receive(self, form: Mapping[str, str], https: bool) -> str:
        """The status line api.php answers for one request (and the Inbox entry it makes)."""
        if self.require_https and not https:
            return "-20: You must use HTTPS when using the Light Blue API."
        if form.get("key") != self.api_key:
            return "-1: Invalid API key."
        if form.get("type") != "contact form" or not any(form.get(p) for p in PARAMETERS):
            return ("-3: You've supplied an invalid API request type, or didn't supply any parameters that are "
                    "valid for this API request type.")
        source, ident = form.get("Source", ""), form.get("ID") or form.get("Reference")
        if ident and any(r["ID"] == ident and r["Source"] == source for r in self.inbox.records.values()):
            self.duplicates.put({"id": f"{len(self.duplicates) + 1:06d}", "ID": ident, "Source": source,
                                 "received_at": time.time()})
            return "-4: This is a duplicate API request."
        entry = {"id": f"{len(self.inbox) + 1:06d}", "received_at": time.time(), "ID": ident, "Source": source,
                 "fields": {k: v for k, v in form.items() if k in PARAMETERS or k in ADVANCED},
                 "ignored": sorted(k for k in form if k not in PARAMETERS and k not in ADVANCED
                                   and k not in ("key", "type"))}
        self.inbox.put(entry)
        return "0"

    def _build_api(self) -> FastAPI:
        api = FastAPI(title="Light Blue API (WedSync sandbox)", docs_url=None, redoc_url=None, openapi_url=None)
        emulator = self

        @api.post("/api.php")
        async def api_php(request: Request) -> Response:
            raw = await request.body()
            ctype = request.headers.get("content-type", "")
            form: dict[str, str] = {}
            if ctype.startswith("application/x-www-form-urlencoded"):
                try:
                    form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
                except UnicodeDecodeError:
                    form = {}
            elif ctype.startswith("multipart/form-data"):
                parsed = await request.form()
                form = {k: v for k, v in parsed.items() if isinstance(v, str)}
            https = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
            return PlainTextResponse(emulator.receive(form, https))

        return api


def create_emulator(*, seed: int = 42, api_key: str = DEFAULT_API_KEY, require_https: bool = False,
                    **_: Any) -> LightBlueEmulator:
    """Registry entry point (see ``wedsync.sandbox.registry``)."""
    return LightBlueEmulator(api_key=api_key, require_https=require_https)
