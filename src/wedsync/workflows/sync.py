"""Sync-run workflow: one DBOS workflow per run, one step per page (ARCHITECTURE rule 9)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dbos import DBOS, SetWorkflowID

from wedsync.bootstrap import get_hub
from wedsync.connectors.errors import ConnectorError
from wedsync.services.sync_engine import RunPlan, drive_run
from wedsync.store.tables import utcnow
from wedsync.workflows.queues import SYNC_QUEUE, get_queue


@DBOS.step()
async def begin_step(run_id: str) -> dict[str, Any]:
    return get_hub().sync.begin(run_id).as_dict()


@DBOS.step()
async def page_step(plan: dict[str, Any], stream: str, page: int, pass_no: int) -> dict[str, Any]:
    result = await get_hub().sync.sync_page(RunPlan(**plan), stream, page, pass_no)
    return result.as_dict()


@DBOS.step()
async def complete_step(plan: dict[str, Any], stream: str, pass_no: int) -> bool:
    # fetches each stored record the listing did not show (one provider call each): ids, not pages, so still
    # one step; a replay fetches them again, which writes nothing twice
    return await get_hub().sync.listing_complete(RunPlan(**plan), stream, pass_no)


@DBOS.step()
async def finish_step(plan: dict[str, Any], complete: dict[str, bool]) -> dict[str, Any]:
    return get_hub().sync.finish(RunPlan(**plan), complete)


@DBOS.step()
async def fail_step(run_id: str, kind: str, message: str, error_class: str | None = None) -> dict[str, Any]:
    error: BaseException = ConnectorError(message) if kind == "connector" else RuntimeError(message)
    # message already names the error's type; the metric is labelled with the real class, not the stand-in's
    return get_hub().sync.fail(run_id, error, detail=message, error_class=error_class)


class _DbosSteps:
    begin = staticmethod(begin_step)
    page = staticmethod(page_step)
    complete = staticmethod(complete_step)
    finish = staticmethod(finish_step)


@DBOS.workflow()
async def sync_connection(run_id: str) -> dict[str, Any]:
    """Pull every stream of a connection; the run row (id = workflow id) carries progress and counts."""
    try:
        return await drive_run(run_id, _DbosSteps())
    except ConnectorError as exc:
        return await fail_step(run_id, "connector", f"{type(exc).__name__}: {exc}", type(exc).__name__)
    except Exception as exc:  # a bug or a store failure: record it on the run, then let DBOS see it
        out = await fail_step(run_id, "internal", f"{type(exc).__name__}: {exc}", type(exc).__name__)
        if out.get("gone"):  # the connection was deleted mid-run (its rows refused): nothing to recover
            return out
        raise


async def enqueue_sync(run_id: str, *, here: bool = False) -> str:
    """Enqueue a run (or, ``here``, start it in this process: a command's own run); the workflow id is the run
    id, so enqueuing twice is harmless."""
    with SetWorkflowID(run_id):
        if here:
            await DBOS.start_workflow_async(sync_connection, run_id)
        else:
            await get_queue(SYNC_QUEUE).enqueue_async(sync_connection, run_id)
    return run_id


# A run row is written before its workflow is enqueued; a crash in between leaves a row with no
# workflow. After this long it is no longer "about to be enqueued" but orphaned.
ORPHAN_AFTER = timedelta(minutes=2)
_ENDED = {"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}


async def reconcile_runs(connection_id: str) -> list[str]:
    """Close run rows that say queued/running but whose workflow ended (cancelled, failed for good) or
    never existed, so they cannot block the connection's next run forever. Returns the ids closed."""
    hub = get_hub()
    closed = []
    for run in hub.sync.runs_in_progress(connection_id):
        status = await DBOS.get_workflow_status_async(run.id)
        if status is None:
            if utcnow() - run.started_at < ORPHAN_AFTER:
                continue
            reason = "its workflow was never started (the hub stopped between recording and enqueuing it)"
        elif status.status in _ENDED:
            reason = f"its workflow ended as {status.status} without recording the outcome"
        else:
            continue
        hub.sync.fail(run.id, RuntimeError(f"sync run abandoned: {reason}"))
        closed.append(run.id)
    return closed


async def start_sync(vendor_id: str, connection_id: str, mode: str, *, here: bool = False) -> str:
    """Record and enqueue a run (``here``: run it in this process, see ``bootstrap.command_dbos``). If the
    enqueue itself fails, the run is marked failed, not left queued."""
    hub = get_hub()
    await reconcile_runs(connection_id)
    run = hub.sync.create_run(vendor_id, connection_id, mode)
    try:
        await enqueue_sync(run.id, here=here)
    except Exception as exc:
        hub.sync.fail(run.id, exc)
        raise
    return run.id
