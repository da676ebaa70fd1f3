"""OAuth 2 connection routes: send the vendor to the provider, and take the provider's redirect back."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, RedirectResponse, Response

from wedsync.api.deps import HubDep, VendorId, Writer
from wedsync.api.responses import AuthorizeUrlOut, OAuthConnectedOut
from wedsync.bootstrap import Hub
from wedsync.services.oauth import OAuthService

router = APIRouter(tags=["oauth"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_service(hub: Hub) -> OAuthService:
    """The hub's OAuth service (``hub.oauth`` once the composition root builds one)."""
    service = getattr(hub, "oauth", None)
    if isinstance(service, OAuthService):
        return service
    return OAuthService(hub.db, hub.vault, hub.connections, hub.settings)


@router.get("/oauth/{provider}/start", response_model=None, responses={
    307: {"description": "redirect to the provider's authorize page"},
    200: {"model": AuthorizeUrlOut, "description": "with format=json: the provider's authorize URL"},
})
def start(
    provider: str,
    hub: HubDep,
    vendor_id: VendorId,
    _p: Writer,
    redirect_uri: Annotated[str | None, Query(max_length=500, description="defaults to our callback")] = None,
    connection_id: Annotated[str | None, Query(max_length=26, description="reconnect this connection")] = None,
    response_format: Annotated[Literal["redirect", "json"], Query(alias="format")] = "redirect",
) -> Response:
    """Start connecting a provider account with OAuth 2 (authorization code with PKCE and state).

    Answers 307 to the provider's authorize page, or its URL as JSON with ``format=json`` (for a front end
    that opens it itself). The authorization must be completed within 10 minutes.
    """
    url = oauth_service(hub).start(vendor_id, provider, redirect_uri=redirect_uri, connection_id=connection_id)
    if response_format == "json":
        return JSONResponse({"authorize_url": url}, headers=_NO_STORE)
    return RedirectResponse(url, status_code=307, headers=_NO_STORE)


@router.get("/oauth/{provider}/callback", response_model=None,
            responses={200: {"model": OAuthConnectedOut, "description": "the connection (its credentials stay in "
                                                                        "the vault)"}})
async def callback(
    provider: str,
    hub: HubDep,
    state: str | None = None,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=512)] = None,
    error_description: Annotated[str | None, Query(max_length=2048)] = None,
) -> JSONResponse:
    """Where the provider sends the vendor's browser back. No API key: the single-use state is the proof.

    Returns the connection; its credentials stay in the vault.
    """
    conn = await oauth_service(hub).callback(provider, state=state, code=code, error=error,
                                             error_description=error_description)
    return JSONResponse({"connection_id": conn.id, "provider": conn.provider, "status": conn.status},
                        headers=_NO_STORE)
