"""Request dependencies: the hub, the caller (API key -> Principal) and scope checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from wedsync.bootstrap import Hub, get_hub
from wedsync.services.tenancy import Principal


async def hub_dep() -> Hub:
    # async on purpose: FastAPI runs a sync dependency in a worker thread, a hop per request that the
    # webhook intake cannot afford.
    return get_hub()


HubDep = Annotated[Hub, Depends(hub_dep)]


def principal_dep(
    request: Request,
    hub: HubDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    presented = x_api_key
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value:
            presented = value.strip()
    principal = hub.tenancy.authenticate(presented)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(principal_dep)]


def scoped(scope: str) -> Callable[[Principal], Principal]:
    def _check(principal: PrincipalDep) -> Principal:
        principal.require(scope)
        return principal

    return _check


Reader = Annotated[Principal, Depends(scoped("read"))]
Writer = Annotated[Principal, Depends(scoped("write"))]
KeyAdmin = Annotated[Principal, Depends(scoped("keys"))]


def vendor_id_dep(
    principal: PrincipalDep,
    x_wedsync_vendor: Annotated[str | None, Header(description="operator keys: the vendor to act for")] = None,
) -> str:
    return principal.vendor_scope(x_wedsync_vendor)


VendorId = Annotated[str, Depends(vendor_id_dep)]


def operator_dep(principal: PrincipalDep) -> Principal:
    if not principal.is_operator:
        from wedsync.errors import Forbidden

        raise Forbidden("this route needs the platform operator key", code="operator_only")
    return principal


Operator = Annotated[Principal, Depends(operator_dep)]
