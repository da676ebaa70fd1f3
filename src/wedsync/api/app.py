"""The FastAPI application: routers, error mapping, and the process's lifespan (hub, DBOS, inbox)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import import_module

from fastapi import Depends, FastAPI

from wedsync import __version__
from wedsync.api import errors
from wedsync.api.deps import known_inputs_only
from wedsync.api.limits import BodyLimit, ControlCharacters
from wedsync.api.routers.webhooks import WebhookFastPath
from wedsync.bootstrap import current_executor_id, freeze_startup_heap, get_hub, launch_dbos
from wedsync.config import get_settings
from wedsync.discovery import module_names
from wedsync.logging import configure_logging
from wedsync.store.db import checkpoint_sqlite
from wedsync.workflows.recovery import supervise

# The high-volume webhook route is matched before any other; the core routers next, then every other
# module of ``wedsync.api.routers`` (one per capability) in name order.
CORE_ROUTERS = (
    "wedsync.api.routers.webhooks",
    "wedsync.api.routers.system",
    "wedsync.api.routers.vendors",
    "wedsync.api.routers.providers",
    "wedsync.api.routers.connections",
    "wedsync.api.routers.oauth",
)


def router_modules() -> list[str]:
    others = module_names("wedsync.api.routers")
    return [*CORE_ROUTERS, *(m for m in others if m not in CORE_ROUTERS)]


def create_app(*, launch_workflows: bool = True) -> FastAPI:
    """Build the app. ``launch_workflows`` starts DBOS in this process (queues listened to only when
    ``WEDSYNC_IN_PROCESS_WORKERS`` is true, the embedded default)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        settings = get_settings()
        configure_logging(settings.log_level, json=settings.log_json)
        hub = get_hub()
        if launch_workflows:
            # DBOS's launch and queue registration are blocking calls that refuse a running loop.
            await asyncio.to_thread(launch_dbos, settings, listen=settings.in_process_workers)
        hub.inbox.start()
        stop = asyncio.Event()
        supervisor = None
        if launch_workflows and settings.in_process_workers:
            supervisor = asyncio.create_task(supervise(hub.db, current_executor_id(), stop, inbox=hub.inbox))
        freeze_startup_heap()
        yield
        stop.set()
        if supervisor is not None:
            await supervisor
        await hub.aclose()
        # a clean stop leaves the SQLite logs in the database files (docs/operations.md, Backups)
        await asyncio.to_thread(hub.db.checkpoint)
        if launch_workflows:
            await asyncio.to_thread(checkpoint_sqlite, settings.dbos_url)

    app = FastAPI(title="WedSync Integration Hub", version=__version__, lifespan=lifespan)
    errors.install(app)
    for name in router_modules():
        app.include_router(import_module(name).router, dependencies=[Depends(known_inputs_only)])
    errors.document_errors(app)
    app.add_middleware(WebhookFastPath)
    app.add_middleware(errors.HeadAsGet)
    app.add_middleware(ControlCharacters)
    app.add_middleware(BodyLimit)  # outermost: no body passes its route's limit, webhooks' fast path included
    return app
