"""The capability matrix of every provider the hub knows."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from wedsync.api.deps import Reader
from wedsync.api.responses import ProvidersOut
from wedsync.connectors.registry import capability_matrix

router = APIRouter(prefix="/api/integrations", tags=["providers"])


@router.get("/providers", response_model=ProvidersOut)
def list_providers(_p: Reader) -> dict[str, Any]:
    """Each provider's real channel (API, push-only, Zapier-style webhook, CSV, e-mail, iCalendar feed, or
    ``none`` where none exists) and what the hub can read, write, receive and pull incrementally."""
    return {"providers": capability_matrix()}
