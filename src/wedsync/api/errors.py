"""One place that maps errors to HTTP: ``{"error": {"code", "message", "details"}}``, never a bare 500."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from wedsync.errors import WedsyncError
from wedsync.logging import get_logger

log = get_logger("wedsync.api")


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


def install(app: FastAPI) -> None:
    @app.exception_handler(WedsyncError)
    async def _wedsync(_req: Request, exc: WedsyncError) -> JSONResponse:
        status = exc.status if exc.status != 500 else 503
        headers = {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, int(retry_after)))
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=status,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("validation_error", "request validation failed",
                                       _clean_validation(list(exc.errors()))), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(exc.status_code,
                                                                                       "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    async def _store_unavailable(req: Request, exc: OperationalError) -> JSONResponse:
        # The database is busy, restarting or unreachable: tell the client to come back, not that we broke.
        log.warning("store unavailable", path=req.url.path, error_type=type(exc.orig).__name__)
        return JSONResponse(error_body("store_unavailable", "the hub's database is unavailable; retry shortly"),
                            status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(Exception)
    async def _unexpected(req: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", path=req.url.path, error_type=type(exc).__name__)
        return JSONResponse(error_body("internal_error", "unexpected error; it has been logged"),
                            status_code=500)
