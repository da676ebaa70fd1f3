"""Scheduled incremental pulls: every worker looks for due connections now and then; one of them starts each
due pull (``SyncService.claim_due`` is a compare-and-set on the connection's next due time)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from wedsync.bootstrap import get_hub
from wedsync.errors import Conflict, WedsyncError
from wedsync.store.tables import utcnow

#: How often a worker looks for due connections (the schedule's resolution).
CHECK_EVERY = 30.0

log = logging.getLogger("wedsync.schedule")


async def start_due_syncs(now: datetime | None = None, limit: int = 50) -> list[str]:
    """Start an incremental run for every connection whose scheduled pull is due; returns the run ids. A
    connection whose last run is still going (a long full sync) skips this turn: its next pull is one interval on."""
    from wedsync.workflows.sync import start_sync

    hub = get_hub()
    now = now or utcnow()
    started: list[str] = []
    for vendor_id, connection_id in await asyncio.to_thread(hub.sync.due, now, limit):
        if not await asyncio.to_thread(hub.sync.claim_due, connection_id, now):
            continue  # another worker took it, or its schedule was switched off meanwhile
        try:
            started.append(await start_sync(vendor_id, connection_id, "incremental"))
        except Conflict:
            log.info("scheduled pull of %s skipped: a run is still in progress", connection_id)
        except WedsyncError as exc:
            log.warning("scheduled pull of %s not started: %s", connection_id, exc.code)
    return started
