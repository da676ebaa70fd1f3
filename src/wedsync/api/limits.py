"""Bounds on every request, checked before a route runs: the body's size (``BodyLimit``) and control characters
in the path and query string (``ControlCharacters``; body strings are checked by ``schemas.Strict``).

Body size: enforced before a route (or FastAPI's body parsing) reads the body.

FastAPI reads and parses a JSON body before any dependency runs, the API key check included: without a limit an
unauthenticated 300 MB body to ``PUT /api/crm/policies`` was held and parsed (the hub grew by 900 MB) before the
401. ``BodyLimit`` refuses a body over its route's limit with 413 ``body_too_large``: by its Content-Length before
anything is read, else (a chunked body) as soon as the bytes received pass the limit, never holding more.

=================================  =============================================================================
route                              limit
=================================  =============================================================================
every JSON route, webhooks         ``MAX_JSON_BODY`` (1 MiB)
``POST /api/calendar/ics/validate`` ``MAX_ICS_JSON_BODY``: the 5 MB iCalendar text it checks, JSON-escaped
``POST /api/crm/imports``          ``MAX_IMPORT_BYTES`` (200 MiB) and a form's few lines; the route itself answers
                                   413 ``file_too_large`` at the file's own limit
=================================  =============================================================================
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wedsync.api.deps import too_large
from wedsync.api.errors import error_body
from wedsync.domain.availability import MAX_ICS_BYTES
from wedsync.services.crm_sync import MAX_IMPORT_BYTES

#: Any JSON body (the largest legitimate one is far smaller) and any webhook (``routers/webhooks.MAX_BODY``).
MAX_JSON_BODY = 1024 * 1024
#: The iCalendar text of ``POST /api/calendar/ics/validate`` (``MAX_ICS_BYTES`` characters) inside JSON, where
#: each line break is escaped to four bytes (``\\r\\n``).
MAX_ICS_JSON_BODY = 2 * MAX_ICS_BYTES + 64 * 1024
#: A CSV upload and, for a multipart form, its boundary lines and part headers.
MAX_UPLOAD_BODY = MAX_IMPORT_BYTES + 64 * 1024

_ROUTE_LIMITS = {"/api/crm/imports": MAX_UPLOAD_BODY, "/api/calendar/ics/validate": MAX_ICS_JSON_BODY}


def body_limit(path: str) -> int:
    """The largest request body, in bytes, that ``path`` accepts."""
    return _ROUTE_LIMITS.get(path, MAX_JSON_BODY)


class BodyLimit:
    """ASGI middleware: a request body over its route's ``body_limit`` is a 413 ``body_too_large``, answered by
    its Content-Length before it is read, or raised (``HTTPException``, which FastAPI's body reading re-raises and
    ``api/errors.py`` answers) from ``receive`` once a chunked body passes the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        what = "the webhook body" if scope["path"].startswith("/webhooks/") else "the request body"
        message = too_large(what, limit, "body_too_large").message  # as the routes' own checks say it
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                from fastapi.responses import JSONResponse

                response = JSONResponse(error_body("body_too_large", message), status_code=413,
                                        headers={"Connection": "close"})  # the unread body stays unread
                await response(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise HTTPException(413, detail=message)
            return msg

        await self.app(scope, limited, send)


#: Never in a path (ids, slugs, feed tokens): every C0 control character and DEL.
PATH_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Never in text (query values, body strings): C0 control characters but tab, line feed and carriage return.
#: PostgreSQL cannot store NUL in text at all (psycopg ``DataError``: a 500 on any route, unauthenticated
#: webhooks included); the others are nothing a person types and only serve to forge log lines.
TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_TEXT_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class ControlCharacters:
    """ASGI middleware: a path holding a control character, or a query string holding one other than tab, line
    feed or carriage return (``%00`` included), is a 422 ``invalid_characters`` on every route, before routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = None
            if PATH_CONTROL.search(scope["path"]):
                where = "path"
            else:
                query = scope.get("query_string") or b""
                if _TEXT_CONTROL_BYTES.search(unquote_to_bytes(query) if b"%" in query else query):
                    where = "query"
            if where is not None:
                from fastapi.responses import JSONResponse

                response = JSONResponse(error_body(
                    "invalid_characters", f"the {where} holds a control character (such as NUL), which no "
                    "parameter may contain", {"in": where}), status_code=422)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
