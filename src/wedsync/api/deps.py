"""Request dependencies: the hub, the caller (API key -> Principal) and scope checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request

from wedsync.bootstrap import Hub, get_hub
from wedsync.errors import InvalidInput, TooLarge, UnsupportedMediaType
from wedsync.services.tenancy import Principal


async def hub_dep() -> Hub:
    # async on purpose: FastAPI runs a sync dependency in a worker thread, a hop per request that the
    # webhook intake cannot afford.
    return get_hub()


HubDep = Annotated[Hub, Depends(hub_dep)]

#: A list endpoint's page size.
Limit = Annotated[int, Query(ge=1, le=500, description="items per page (1 to 500)")]
#: A keyset cursor: the ``next_cursor`` of the previous page, which is an id (26 lowercase ULID characters).
#: Anything else is a 422 instead of a page that silently starts somewhere else or comes back empty.
def next_cursor(items: Sequence[Any], limit: int, id_of: Callable[[Any], Any] = lambda item: item["id"]) -> Any:
    """The keyset cursor of a list a route answered newest or oldest first: the last item's id when the page is
    full (there may be more), None on the last page."""
    return id_of(items[-1]) if items and len(items) == limit else None


Cursor = Annotated[str | None, Query(pattern=r"^[0-9a-hjkmnp-tv-z]{26}$",
                                     description="next_cursor of the previous page")]


_ROUTE_INPUTS: dict[int, tuple[frozenset[str], bool, bool]] = {}
_EMPTY_BODIES = (b"", b"{}", b"null")


def _declared_inputs(route: Any) -> tuple[frozenset[str], bool, bool]:
    """The query parameter names a route takes (its dependencies' included), whether it takes a body, and
    whether that body is a JSON one (FastAPI's body parameters; not a route reading its own, an upload)."""
    known = _ROUTE_INPUTS.get(id(route))
    if known is None:
        found: set[str] = set()
        body = "requestBody" in (getattr(route, "openapi_extra", None) or {})  # a route reading its own body
        json_body = False
        todo = [route.dependant]
        while todo:
            dependant = todo.pop()
            json_body = json_body or bool(dependant.body_params)
            body = body or bool(dependant.body_params)
            for param in dependant.query_params:
                model = getattr(param.field_info, "annotation", None)
                fields = getattr(model, "model_fields", None) if isinstance(model, type) else None
                if fields:  # a Pydantic model of query parameters: its fields are the names
                    found.update(f.alias or name for name, f in fields.items())
                else:
                    found.add(param.alias)
            todo.extend(dependant.dependencies)
        known = _ROUTE_INPUTS[id(route)] = (frozenset(found), body, json_body)
    return known


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def known_inputs_only(request: Request) -> None:
    """On ``/api`` routes, input the route does not read is refused instead of silently ignored:

    * a query parameter it does not take is a 422 ``unknown_parameter`` naming the ones it does
      (``GET /api/crm/clients?email=...`` answered every client, as if filtered; ``?page=2`` the first page again);
    * a body sent to a route that takes none (``{"events": [...]}`` to subscribe to only some events) is a 422
      ``unexpected_body``; an empty body, ``{}`` or ``null`` is fine;
    * a body sent to a route that takes JSON without ``Content-Type: application/json`` (a form, JSON sent as
      ``text/plain`` or with no type, as ``curl -d`` does) is a 415 ``unsupported_media_type``: FastAPI does not
      parse it as JSON, so it was a 422 ``validation_error`` about the body's type.

    Webhooks, OAuth callbacks and feeds take whatever their senders add."""
    if not request.url.path.startswith("/api/"):
        return
    route = request.scope.get("route")
    if route is None or not hasattr(route, "dependant"):
        return
    known, takes_body, takes_json = _declared_inputs(route)
    if request.query_params:
        unknown = sorted({k for k in request.query_params if k not in known})
        if unknown:
            raise InvalidInput(f"unknown query parameter{'s' if len(unknown) > 1 else ''} {unknown}; this route "
                               f"takes {sorted(known) or 'none'}", code="unknown_parameter",
                               details={"unknown": unknown, "accepted": sorted(known)})
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        return  # no body
    if takes_json:
        content_type = request.headers.get("content-type", "")
        if not _is_json(content_type):
            raise UnsupportedMediaType(f"{request.method} {route.path} takes a JSON body: send it with "
                                       f"Content-Type: application/json (got {content_type or 'none'!r})",
                                       details={"accepted": ["application/json"], "received": content_type or None})
        return
    if takes_body:
        return
    raw = (await read_body(request, 64 * 1024, code="body_too_large", what="the request body")).strip()
    if raw not in _EMPTY_BODIES:
        raise InvalidInput(f"{request.method} {route.path} takes no request body; send none (or {{}})",
                           code="unexpected_body")


def too_large(what: str, limit: int, code: str) -> TooLarge:
    """The 413 for ``what`` (``"the file"``, ``"the webhook body"``) over ``limit`` bytes."""
    size = f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"
    return TooLarge(f"{what} is larger than {size}", code=code)


async def read_body(request: Request, limit: int, *, code: str, what: str) -> bytes:
    """The request body, refused with 413 as soon as it is known to be larger than ``limit`` bytes: by its
    Content-Length before anything is read, else while a chunked body streams in (never all of it held)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            raise too_large(what, limit, code)
        return await request.body()  # the server holds the body to its Content-Length
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(what, limit, code)
        parts.append(chunk)
    return b"".join(parts)


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


#: The ``X-WedSync-Vendor`` header: the vendor an operator key acts for.
VendorHeader = Annotated[str | None, Header(alias="X-WedSync-Vendor",
                                            description="operator keys: the vendor to act for")]


def vendor_id_dep(hub: HubDep, principal: PrincipalDep, x_wedsync_vendor: VendorHeader = None) -> str:
    return hub.tenancy.acting_vendor(principal, x_wedsync_vendor)


VendorId = Annotated[str, Depends(vendor_id_dep)]


def operator_dep(principal: PrincipalDep) -> Principal:
    if not principal.is_operator:
        from wedsync.errors import Forbidden

        raise Forbidden("this route needs the platform operator key", code="operator_only")
    return principal


Operator = Annotated[Principal, Depends(operator_dep)]
