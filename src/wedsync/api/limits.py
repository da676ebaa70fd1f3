"""Request body size limits for every route, enforced before a route (or FastAPI's body parsing) reads the body.

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

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


def _size(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


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
        message = f"the request body is larger than {_size(limit)}"
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
