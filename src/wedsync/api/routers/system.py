"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import text

from wedsync.api.deps import HubDep
from wedsync.api.responses import HealthOut, ReadyOut

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyOut,
            responses={503: {"model": ReadyOut, "description": "the store cannot be reached"}})
def readyz(hub: HubDep, response: Response) -> dict[str, Any]:
    try:
        with hub.db.read() as s:
            s.execute(text("SELECT 1"))
    except Exception as exc:
        response.status_code = 503
        return {"status": "unavailable", "database": type(exc).__name__}
    return {"status": "ok", "database": hub.db.engine.dialect.name}


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    from wedsync.metrics import render_latest

    body, content_type = render_latest()
    return Response(content=body, media_type=content_type)
