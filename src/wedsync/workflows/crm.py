"""CRM workflows: CSV import (one workflow per job, one step per chunk of rows) and the write-back outbox drain."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from typing import Any

from dbos import DBOS, SetWorkflowID
from sqlalchemy.exc import OperationalError

from wedsync.bootstrap import get_hub
from wedsync.connectors.errors import ConnectorError
from wedsync.logging import get_logger
from wedsync.services.crm_sync import drive_import
from wedsync.store.tables import new_id, utcnow
from wedsync.workflows.queues import SYNC_QUEUE, get_queue

log = get_logger("wedsync.workflows.crm")


@DBOS.step()
async def import_begin_step(job_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(get_hub().crm.begin_import, job_id)


#: attempts of a chunk whose store was busy (SQLite's lock held past its 30 s timeout by another writer)
CHUNK_ATTEMPTS = 4


@DBOS.step()
async def import_chunk_step(plan: dict[str, Any], chunk: int) -> dict[str, Any]:
    """One chunk; a store that is busy or restarting is waited out (1, 2, 4 s) instead of failing the import
    for good: a chunk is one transaction with its bookkeeping row, so trying it again changes nothing twice.
    (Only the store's transient errors: a file-level problem is the file's, and ends the job as it is.)"""
    attempt = 1
    while True:
        try:
            result: dict[str, Any] = await asyncio.to_thread(get_hub().crm.import_chunk, plan, chunk)
            return result
        except OperationalError:
            if attempt == CHUNK_ATTEMPTS:
                raise
            log.warning("import chunk: store busy, trying again", job_id=plan["job_id"], chunk=chunk,
                        attempt=attempt)
            await asyncio.sleep(2.0 ** (attempt - 1))
            attempt += 1


@DBOS.step()
async def import_finish_step(job_id: str, error: str | None) -> dict[str, Any]:
    return await asyncio.to_thread(get_hub().crm.finish_import, job_id, error)


class _DbosImportSteps:
    begin = staticmethod(import_begin_step)
    chunk = staticmethod(import_chunk_step)
    finish = staticmethod(import_finish_step)


@DBOS.workflow()
async def import_csv(job_id: str) -> dict[str, Any]:
    """Import one CSV job; the job row (id = workflow id) carries progress, chunk rows make it exactly-once."""
    try:
        return await drive_import(job_id, _DbosImportSteps())
    except Exception as exc:  # a bug or a store failure: record it on the job, then let DBOS see it
        await import_finish_step(job_id, f"internal error: {type(exc).__name__}: {exc}")
        raise


async def start_import(job_id: str, *, here: bool = False) -> str:
    """Enqueue an import (``here``: run it in this process, a command's own, see ``bootstrap.command_dbos``); the
    workflow id is the job id, so enqueuing twice is harmless."""
    with SetWorkflowID(job_id):
        if here:
            await DBOS.start_workflow_async(import_csv, job_id)
        else:
            await get_queue(SYNC_QUEUE).enqueue_async(import_csv, job_id)
    return job_id


#: A job row is written (with its file) before its workflow is enqueued; a crash in between leaves a job without
#: a workflow. After this long it is no longer "about to be enqueued", and the workers' sweep enqueues it.
IMPORT_ORPHAN_AFTER = timedelta(minutes=2)
_ENDED = {"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}


async def sweep_imports() -> dict[str, list[str]]:
    """Import jobs left queued or running without a live workflow: one never enqueued (the hub stopped between
    recording the job and enqueuing it: the file is stored, so it is imported now), one whose workflow ended
    without recording the outcome (failed with that reason, so it does not say "queued" forever). Returns
    the ids started and failed."""
    hub = get_hub()
    started: list[str] = []
    failed: list[str] = []
    for job_id in await asyncio.to_thread(hub.crm.imports_in_progress, utcnow() - IMPORT_ORPHAN_AFTER):
        status = await DBOS.get_workflow_status_async(job_id)
        if status is None:
            log.warning("import job without a workflow: starting it", job_id=job_id)
            await start_import(job_id)
            started.append(job_id)
        elif status.status in _ENDED:
            await asyncio.to_thread(hub.crm.finish_import, job_id,
                                    f"import abandoned: its workflow ended as {status.status} without recording "
                                    "the outcome")
            failed.append(job_id)
    return {"started": started, "failed": failed}


@DBOS.step()
async def send_outbox_step(outbox_id: str) -> str:
    """One write-back, once: a retriable failure puts the row back with a backoff (``next_attempt_at``), and a
    worker's sweep sends it when that time comes (retrying here would hold up the rows after it)."""
    status: str = await get_hub().crm.send_outbox(outbox_id)
    return status


@DBOS.workflow()
async def drain_crm_outbox(limit: int = 100) -> dict[str, int]:
    """Send the write-backs that may go now, oldest first; each row's idempotency key was committed before the
    call. One row's failure, whatever it is, never stops the others."""
    ids = await asyncio.to_thread(get_hub().crm.pending_outbox, limit)
    counts = {"done": 0, "failed": 0, "pending": 0}
    for outbox_id in ids:
        try:
            status = await send_outbox_step(outbox_id)
        except ConnectorError:
            status = "pending"  # released with a backoff: the sweep sends it again
        except Exception:  # the store, a bug: the row says so (released or failed); the next row goes on
            log.exception("write-back failed", outbox_id=outbox_id)
            status = "pending"
        counts[status] = counts.get(status, 0) + 1
    return counts


async def start_outbox_drain(workflow_id: str | None = None) -> str:
    workflow_id = workflow_id or f"crm-outbox-{new_id()}"
    with SetWorkflowID(workflow_id):
        await get_queue(SYNC_QUEUE).enqueue_async(drain_crm_outbox, 100)
    return workflow_id


#: a sweep starts at most one drain per this many seconds (the workflow id names the slot)
SWEEP_SLOT_SECONDS = 10


async def sweep_outbox(now: float | None = None) -> str | None:
    """Start a drain when a write-back may go now (its backoff is over, or the drain that claimed it died and
    its lease ran out); nothing else would send it until the vendor's next edit. Returns the drain's id."""
    if not await asyncio.to_thread(get_hub().crm_writeback.pending, 1):
        return None
    slot = int((time.time() if now is None else now) // SWEEP_SLOT_SECONDS)
    return await start_outbox_drain(f"crm-outbox-sweep-{slot}")


async def poke_outbox_drain() -> None:
    """Start an outbox drain when the workflow runtime is there (without it, the pending rows wait for the next
    drain of a worker): what an API route calls after queueing a write-back."""
    with contextlib.suppress(RuntimeError):  # get_queue: DBOS is not launched in this process
        await start_outbox_drain()
