"""The provider sandbox: every registered emulator mounted at its real API path, plus admin endpoints.

Provider APIs live at their own prefix (``/vsco-workspace/api/v2/...``), each behind its fault middleware.
Admin endpoints are not part of any provider API and are never faulted::

    GET  /_sandbox                          emulators and their base paths
    GET  /_sandbox/{slug}/faults            current FaultConfig
    PUT  /_sandbox/{slug}/faults            replace it (omitted fields take defaults); PATCH merges
    POST /_sandbox/{slug}/reset             initial data, no subscriptions, default faults, zeroed stats
    POST /_sandbox/{slug}/seed              {"contacts": N, "jobs": M[, "seed": S]}: regenerate the data
    POST /_sandbox/{slug}/mutate            {"update": K, "create": C, "delete": D[, "collection": ...]}
    GET  /_sandbox/{slug}/stats             responses by status, injected faults, webhook outcomes
    GET  /_sandbox/{slug}/deliveries        the latest webhook deliveries
    GET  /_sandbox/{slug}/records/{name}    ground truth as JSON lines (``offset``, ``limit``)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import APIRouter, Body, FastAPI, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from wedsync.sandbox.faults import FaultConfig, FaultMiddleware
from wedsync.sandbox.registry import Emulator, discover_emulators

__all__ = ["admin_router", "create_sandbox_app"]


def create_sandbox_app(*, seed: int = 42, vsco_contacts: int = 200, vsco_jobs: int = 80,
                       options: Mapping[str, Mapping[str, Any]] | None = None) -> FastAPI:
    """Build the sandbox with every discovered emulator; ``options`` are per-slug factory keyword arguments.

    The emulators are reachable as ``app.state.emulators[slug]`` (e.g. for ``webhooks.drain()`` in tests).
    """
    per_slug: dict[str, dict[str, Any]] = {slug: dict(values) for slug, values in (options or {}).items()}
    per_slug.setdefault("vsco-workspace", {}).update(
        {"contacts": vsco_contacts, "jobs": vsco_jobs} | dict((options or {}).get("vsco-workspace", {})))
    emulators: dict[str, Emulator] = {}
    for slug, factory in discover_emulators().items():
        emulators[slug] = factory(seed=seed, **per_slug.get(slug, {}))

    app = FastAPI(title="WedSync provider sandbox", docs_url=None, redoc_url=None)
    app.state.emulators = emulators
    app.include_router(admin_router(emulators))
    for emulator in emulators.values():
        app.mount(emulator.prefix, FaultMiddleware(emulator.app, emulator.faults, emulator.error_body,
                                                   emulator.quota_key))
    return app


def _base_url(request: Request, emulator: Emulator) -> str:
    host = request.headers.get("host", "127.0.0.1")
    return f"{request.url.scheme}://{host}{emulator.prefix}"


def admin_router(emulators: Mapping[str, Emulator]) -> APIRouter:
    router = APIRouter(prefix="/_sandbox", tags=["sandbox admin"])

    def get(slug: str) -> Emulator:
        emulator = emulators.get(slug)
        if emulator is None:
            raise HTTPException(404, f"no emulator {slug!r}; have {sorted(emulators)}")
        return emulator

    @router.get("")
    async def index(request: Request) -> dict[str, Any]:
        return {slug: {"base_url": _base_url(request, em), "admin": f"/_sandbox/{slug}",
                       "collections": em.collections()} for slug, em in emulators.items()}

    @router.get("/{slug}/faults")
    async def get_faults(slug: str) -> dict[str, Any]:
        return get(slug).faults.config.model_dump(mode="json")

    @router.put("/{slug}/faults")
    async def put_faults(slug: str, body: dict[str, Any] = Body(default_factory=dict)) -> dict[str, Any]:
        emulator = get(slug)
        try:
            config = FaultConfig.model_validate(body)
        except ValidationError as exc:
            raise HTTPException(422, exc.errors(include_url=False, include_context=False)) from None
        emulator.faults.configure(config)
        return config.model_dump(mode="json")

    @router.patch("/{slug}/faults")
    async def patch_faults(slug: str, body: dict[str, Any] = Body(default_factory=dict)) -> dict[str, Any]:
        emulator = get(slug)
        merged = emulator.faults.config.model_dump() | body
        try:
            config = FaultConfig.model_validate(merged)
        except ValidationError as exc:
            raise HTTPException(422, exc.errors(include_url=False, include_context=False)) from None
        emulator.faults.configure(config)
        return config.model_dump(mode="json")

    @router.post("/{slug}/reset")
    async def reset(slug: str) -> dict[str, Any]:
        emulator = get(slug)
        counts = emulator.reset()
        emulator.faults.configure(FaultConfig())
        emulator.faults.reset_stats()
        return counts

    @router.post("/{slug}/seed")
    async def seed(slug: str, body: dict[str, Any] = Body(default_factory=dict)) -> dict[str, Any]:
        try:
            return get(slug).seed(body)
        except (TypeError, ValueError) as exc:
            raise HTTPException(400, str(exc)) from None

    @router.post("/{slug}/mutate")
    async def mutate(slug: str, body: dict[str, Any] = Body(default_factory=dict)) -> dict[str, Any]:
        try:
            return await get(slug).mutate(body)
        except (TypeError, ValueError) as exc:
            raise HTTPException(400, str(exc)) from None

    @router.get("/{slug}/stats")
    async def stats(slug: str) -> dict[str, Any]:
        return get(slug).faults.stats()

    @router.get("/{slug}/deliveries")
    async def deliveries(slug: str) -> list[dict[str, Any]]:
        return [delivery.as_dict() for delivery in get(slug).webhooks.log]

    @router.get("/{slug}/records/{collection}")
    async def records(request: Request, slug: str, collection: str, offset: int = Query(0, ge=0),
                      limit: int | None = Query(None, ge=1)) -> StreamingResponse:
        emulator = get(slug)
        if collection not in emulator.collections():
            raise HTTPException(404, f"no collection {collection!r}; have {emulator.collections()}")
        blobs = emulator.iter_records(collection, _base_url(request, emulator), offset, limit)

        def lines() -> Iterator[bytes]:
            batch: list[bytes] = []
            for blob in blobs:
                batch.append(blob)
                if len(batch) >= 1000:
                    yield b"\n".join(batch) + b"\n"
                    batch = []
            if batch:
                yield b"\n".join(batch) + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return router
