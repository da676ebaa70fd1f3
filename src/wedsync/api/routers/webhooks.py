"""Webhook intake: verify the provider's signature on the raw body, store durably, acknowledge fast."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from wedsync.api import errors
from wedsync.api.deps import HubDep, read_body
from wedsync.api.responses import WebhookReceivedOut
from wedsync.bootstrap import Hub, get_hub
from wedsync.connectors.channels.zapier import parse_zap_event
from wedsync.connectors.webhooks import (
    MetaScheme,
    MicrosoftGraphScheme,
    SignatureInvalid,
    ZapierScheme,
    get_scheme,
)
from wedsync.errors import InvalidInput, NotFound, Unauthorized, UnsupportedMediaType
from wedsync.metrics import WEBHOOK_EVENTS
from wedsync.services.connections import WEBHOOK_SECRET

router = APIRouter(tags=["webhooks"])

MAX_BODY = 1024 * 1024
CACHE_TTL = 30.0
#: Verifications that may block (``WebhookScheme.verify_may_block``: a PayPal certificate fetch) run on these
#: threads, never on the event loop: a slow certificate server holds up only the webhooks waiting for it, and
#: at most this many fetches run at once. Every other verification stays inline (no thread hop).
_BLOCKING_VERIFY = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-verify")


@dataclass
class _ConnInfo:
    vendor_id: str
    provider: str
    secret: str
    expires: float


_cache: dict[str, _ConnInfo] = {}


def _connection_info(hub: Hub, connection_id: str) -> _ConnInfo:
    now = time.monotonic()
    info = _cache.get(connection_id)
    if info is not None and info.expires > now:
        return info
    conn = hub.connections.get_any(connection_id)
    secret = str(hub.connections.credentials(conn).get(WEBHOOK_SECRET, ""))
    info = _ConnInfo(conn.vendor_id, conn.provider, secret, now + CACHE_TTL)
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[connection_id] = info
    return info


def forget_connection(connection_id: str) -> None:
    """Drop a connection's cached secret in this process (after its rotation); other API processes pick the
    change up within ``CACHE_TTL``."""
    _cache.pop(connection_id, None)


_trigger: Any = None


def poke_drain() -> None:
    global _trigger
    try:
        from wedsync.workflows.inbox import DrainTrigger

        if _trigger is None:
            _trigger = DrainTrigger()
        _trigger.poke()
    except Exception:  # DBOS not launched in this process: the workers' periodic sweep drains the inbox
        return


@router.get("/webhooks/{provider}/{connection_id}", include_in_schema=False)
def verify_subscription(provider: str, connection_id: str, request: Request, hub: HubDep) -> Response:
    """Subscription handshakes: Meta's ``hub.challenge`` and Microsoft Graph's ``validationToken``."""
    info = _connection_info(hub, connection_id)
    if info.provider != provider:
        raise NotFound("connection not found", code="unknown_connection")
    query = dict(request.query_params)
    if provider in ("instagram", "facebook", "meta"):
        return PlainTextResponse(MetaScheme.handshake(query, info.secret))
    if provider == "microsoft-graph":
        token = MicrosoftGraphScheme.validation_response(query)
        if token is not None:
            return PlainTextResponse(token)
    raise NotFound("no handshake for this provider")


@router.post("/webhooks/{provider}/{connection_id}", status_code=200, response_model=WebhookReceivedOut, responses={
    200: {"description": "the event is in the inbox (a duplicate is acknowledged too); Microsoft Graph's "
                         "subscription validation is answered with its token as text/plain",
          "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def receive_webhook(provider: str, connection_id: str, request: Request, hub: HubDep) -> Response:
    """Accept a provider webhook. 401 and nothing stored when the signature is bad or missing;
    2xx once the event is durably in the inbox (duplicates are acknowledged and dropped)."""
    return await intake(hub, request, provider, connection_id)


async def intake(hub: Hub, request: Request, provider: str, connection_id: str) -> Response:
    """The webhook route's work, shared by the route and ``WebhookFastPath``."""
    scheme = get_scheme(provider)
    raw = await read_body(request, MAX_BODY, code="body_too_large", what="the webhook body")
    info = _connection_info(hub, connection_id)
    if info.provider != provider and not (provider in ("instagram", "facebook") and info.provider == "meta"):
        raise NotFound("connection not found", code="unknown_connection")
    query = dict(request.query_params) if request.scope.get("query_string") else {}
    if provider == "microsoft-graph" and "validationToken" in query:
        return PlainTextResponse(query["validationToken"])
    url = f"{hub.settings.public_url.rstrip('/')}{request.url.path}"
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        # every scheme signs the body as sent uncompressed: a compressed one failed as a wrong signature or an
        # unreadable body, which sent the vendor after their secret instead of the compression
        WEBHOOK_EVENTS.labels(info.provider, "rejected").inc()
        raise UnsupportedMediaType(f"Content-Encoding {encoding[:40]!r} is not supported: send the webhook body "
                                   "uncompressed")
    if not info.secret.strip():
        # nothing to verify against (a connection stored before empty secrets were refused): an HMAC with an
        # empty key, or an empty clientState, is what anyone can produce
        WEBHOOK_EVENTS.labels(info.provider, "bad_signature").inc()
        raise SignatureInvalid("the connection has no webhook secret; webhooks to it cannot be verified")
    try:
        if scheme.verify_may_block(request.headers):
            event = await asyncio.get_running_loop().run_in_executor(_BLOCKING_VERIFY, functools.partial(
                scheme.verify, raw, request.headers, info.secret, url=url, query=query))
        else:
            event = scheme.verify(raw, request.headers, info.secret, url=url, query=query)
        if isinstance(scheme, ZapierScheme):
            # The vendor's own Zap sent it: a body its processing could never read (no e-mail or name, an event we
            # do not know, not an object) is answered now with why (422 bad_payload, shown in the Zap's history)
            # and not stored, instead of a 200 and an event that fails later where the vendor cannot see it. The
            # very parse the processing does, so what is accepted here is read there.
            parsed = parse_zap_event(info.provider, raw, None)
            # stored as the event the parse read, not a field's text (``event_type`` may be "Wedding"), about the
            # record it names (the client's or the project's remote id, as the vendor's events list shows it)
            event = replace(event, event_type=parsed.kind, record_id=parsed.remote_id)
    except Unauthorized:
        WEBHOOK_EVENTS.labels(info.provider, "bad_signature").inc()
        raise
    except InvalidInput:
        WEBHOOK_EVENTS.labels(info.provider, "rejected").inc()
        raise
    new = await hub.inbox.submit(vendor_id=info.vendor_id, connection_id=connection_id, provider=info.provider,
                                 event=event, body=raw)
    WEBHOOK_EVENTS.labels(info.provider, "accepted" if new else "duplicate").inc()
    if new:
        poke_drain()
    return JSONResponse({"received": True, "duplicate": not new, "event_id": event.event_id})


# a trailing slash too: the app's answer to it was a 307 to the URL without one, which Stripe and most
# providers do not follow (a 3xx is a failed delivery), so a hook URL pasted with a slash lost every event
_INTAKE_PATH = re.compile(r"/webhooks/([^/]+)/([^/]+)/?")


class WebhookFastPath:
    """ASGI middleware: ``POST /webhooks/{provider}/{connection_id}`` is answered by ``intake`` directly,
    without FastAPI's routing, dependency solving and exception middleware, which cost more CPU than the
    intake itself (py-spy: ``solve_dependencies`` alone was 15 % of the API process under webhook load). Errors
    get exactly the responses the app's exception handlers give (``errors.response_for``); every other request
    goes to the app. The route above stays: it documents the operation and serves the same ``intake``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (_INTAKE_PATH.fullmatch(scope["path"])
                 if scope["type"] == "http" and scope["method"] == "POST" else None)
        if match is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await intake(get_hub(), request, match[1], match[2])
        except Exception as exc:
            response = await errors.response_for(request, exc)
        await response(scope, receive, send)
