"""One place that maps errors to HTTP: ``{"error": {"code", "message", "details"}}``, never a bare 500."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from wedsync.connectors.errors import ConnectorError
from wedsync.errors import WedsyncError
from wedsync.logging import get_logger

log = get_logger("wedsync.api")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    """Every error the hub answers: a machine-readable ``code``, a message, and details where useful."""

    error: ErrorDetail


_HTTP_CODES = {400: "malformed_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "body_too_large", 415: "unsupported_media_type"}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def _clean_validation(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        out.append({"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))})
    return out


async def _wedsync(_req: Request, exc: WedsyncError) -> JSONResponse:
    status = exc.status if exc.status != 500 else 503
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    details = exc.details
    if isinstance(exc, ConnectorError) and details is None:
        # 424: the provider failed, not the hub; which provider and what it answered (never a secret:
        # messages are built from method, path and status only)
        details = {k: v for k, v in (("provider", exc.provider), ("provider_status", exc.http_status))
                   if v is not None} or None
    return JSONResponse(error_body(exc.code, exc.message, details), status_code=status, headers=headers)


async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if broken is not None:  # not JSON at all: the body cannot be parsed, as the OpenAPI document says (400)
        reason = (broken.get("ctx") or {}).get("error") or "invalid JSON"
        return JSONResponse(error_body("malformed_request", f"the request body is not valid JSON: {reason}"),
                            status_code=400)
    code = "validation_error"
    if any(e.get("type") == "invalid_characters" for e in errors):  # a NUL or another control character
        code = "invalid_characters"
    return JSONResponse(error_body(code, "request validation failed", _clean_validation(errors)), status_code=422)


async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        # Starlette names only the first route matching the path; RFC 9110 wants every method the
        # resource supports (a path often has one route per method).
        headers["Allow"] = ", ".join(allowed_methods(req))
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)


async def _store_unavailable(req: Request, exc: OperationalError) -> JSONResponse:
    # The database is busy, restarting or unreachable: tell the client to come back, not that we broke.
    log.warning("store unavailable", path=req.url.path, error_type=type(exc.orig).__name__)
    return JSONResponse(error_body("store_unavailable", "the hub's database is unavailable; retry shortly"),
                        status_code=503, headers={"Retry-After": "2"})


async def _bad_data(req: Request, exc: DataError) -> JSONResponse:
    # The database refused a value the API let through (PostgreSQL: NUL in text, an integer out of range):
    # the request's fault, said as such; the API checks what it can before (``api/limits.py``, ``schemas``).
    log.warning("value refused by the database", path=req.url.path, error_type=type(exc.orig).__name__)
    return JSONResponse(error_body("invalid_data", "a value of the request cannot be stored (a control character "
                                   "such as NUL in text, or a number out of range)"), status_code=422)


async def _concurrent_change(req: Request, exc: IntegrityError) -> JSONResponse:
    # A uniqueness or reference check the database made: almost always two requests racing for the same
    # row (on PostgreSQL both may look, find nothing and insert). The client may retry; never a 500.
    log.warning("integrity conflict", path=req.url.path, error_type=type(exc.orig).__name__)
    return JSONResponse(error_body("concurrent_change", "the request conflicted with a concurrent change; "
                                   "retry it"), status_code=409, headers={"Retry-After": "1"})


async def _client_gone(req: Request, _exc: ClientDisconnect) -> JSONResponse:
    # The client hung up before sending its whole body (a timeout on its side, a closed connection): nothing was
    # stored, and no one is left to read an answer. A network event, not a hub error.
    log.info("client disconnected before its request body was complete", path=req.url.path)
    return JSONResponse(error_body("client_disconnected", "the request body was not received in full"),
                        status_code=400)


async def _unexpected(req: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", path=req.url.path, error_type=type(exc).__name__)
    return JSONResponse(error_body("internal_error", "unexpected error; it has been logged"),
                        status_code=500)


#: Exception class -> the response it gets, most specific first (``response_for`` takes the first match).
_HANDLERS: tuple[tuple[type[Exception], Any], ...] = (
    (WedsyncError, _wedsync), (RequestValidationError, _validation), (StarletteHTTPException, _http),
    (OperationalError, _store_unavailable), (IntegrityError, _concurrent_change), (DataError, _bad_data),
    (ClientDisconnect, _client_gone), (Exception, _unexpected))


async def response_for(req: Request, exc: Exception) -> JSONResponse:
    """The response an exception gets, as the app's exception handlers give it: for code that answers
    outside FastAPI's routing (the webhook fast path) and must fail exactly as a route does."""
    handler = next(h for cls, h in _HANDLERS if isinstance(exc, cls))  # the last entry takes any Exception
    return await handler(req, exc)  # type: ignore[no-any-return]


def install(app: FastAPI) -> None:
    for cls, handler in _HANDLERS:
        app.add_exception_handler(cls, handler)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class HeadAsGet:
    """ASGI middleware: ``HEAD`` is answered as ``GET`` without the body (RFC 9110 9.3.2), on every GET route:
    FastAPI's routes serve only the methods they declare, so ``HEAD /healthz`` (a load balancer's probe) was a
    405 whose own ``Allow`` header listed HEAD."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Any) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest of a streamed body: nothing to send
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def allowed_methods(req: Request) -> list[str]:
    """Every method some route of the app serves at this request's path (HEAD with GET), asked of the
    routes themselves (``BaseRoute.matches``), so included routers are searched too."""
    methods = {m for m in _METHODS
               if any(route.matches({**req.scope, "method": m})[0] == Match.FULL for route in req.app.routes)}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


_WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})


def _common_errors(path: str, method: str) -> dict[str, str]:
    """The errors the shared machinery (auth, tenancy, validation, store, provider layer) can answer on this
    operation, by status, with what they mean."""
    out = {
        "404": "unknown route parameter or row (`not_found`, `unknown_provider`, `unknown_connection`...), or an "
               "`X-WedSync-Vendor` naming another vendor than the key's",
        "422": "invalid input: `validation_error` with field errors, `invalid_characters` (a control character "
               "such as NUL in the path, the query or a body string), or a specific code",
        "503": "the hub's database is unavailable (`store_unavailable`); see `Retry-After`",
    }
    if path.startswith("/api") or path == "/oauth/{provider}/start":
        out["401"] = "missing, unknown or revoked API key"
        out["403"] = "the key lacks the scope, or the route is the operator's"
    if path.startswith("/webhooks"):
        out["401"] = "missing or bad provider signature: nothing was stored"
    if method in _WRITE_METHODS:
        out["400"] = ("a body that cannot be parsed (`malformed_request`) or did not arrive in full "
                      "(`client_disconnected`)")
        out["413"] = "a body larger than the route accepts (`body_too_large`, `file_too_large`)"
        out["415"] = ("a body of another type than the route reads (`unsupported_media_type`): JSON bodies need "
                      "`Content-Type: application/json`")
        out["409"] = ("conflicts with the current state (e.g. `sync_in_progress`), or with a concurrent change "
                      "(`concurrent_change`, `Retry-After`)")
    if path.startswith("/oauth/"):
        out["400"] = ("the OAuth flow failed: `oauth_not_supported`, `oauth_not_configured`, `invalid_state`, "
                      "`authorization_denied`, `missing_code`")
    if method in _WRITE_METHODS or path.startswith("/oauth/"):
        out["424"] = ("the provider failed or refused (`provider_unavailable`, `provider_rate_limited`, "
                      "`provider_outcome_unknown`, `provider_reauth_required`, `provider_rejected`...); "
                      "`Retry-After` when known")
    return out


def document_errors(app: FastAPI) -> None:
    """Every operation of the OpenAPI document lists the errors it can answer, with the error schema (an
    operation's own entries win), so clients and generated SDKs see each status they must handle."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        error_schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(error_schema.pop("$defs", {}))
        schemas["ErrorOut"] = error_schema
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, op in operations.items():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                responses = op["responses"]
                for status, description in _common_errors(path, method).items():
                    if status not in responses:
                        responses[status] = {"description": description, "content": content}
                    elif status == "422":  # FastAPI's default 422 schema is not what we answer
                        responses[status] = {"description": description, "content": content}
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
