"""Sync-run workflow: one DBOS workflow per run, one step per page (ARCHITECTURE rule 9)."""

from __future__ import annotations

from typing import Any

from dbos import DBOS, SetWorkflowID

from wedsync.bootstrap import get_hub
from wedsync.connectors.errors import ConnectorError
from wedsync.services.sync_engine import RunPlan, drive_run
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
    return get_hub().sync.listing_complete(RunPlan(**plan), stream, pass_no)


@DBOS.step()
async def finish_step(plan: dict[str, Any], complete: dict[str, bool]) -> dict[str, Any]:
    return get_hub().sync.finish(RunPlan(**plan), complete)


@DBOS.step()
async def fail_step(run_id: str, kind: str, message: str) -> dict[str, Any]:
    error: BaseException = ConnectorError(message) if kind == "connector" else RuntimeError(message)
    return get_hub().sync.fail(run_id, error)


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
        return await fail_step(run_id, "connector", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug or a store failure: record it on the run, then let DBOS see it
        await fail_step(run_id, "internal", f"{type(exc).__name__}: {exc}")
        raise


async def enqueue_sync(run_id: str) -> str:
    """Enqueue a run; the workflow id is the run id, so enqueuing twice is harmless."""
    with SetWorkflowID(run_id):
        await get_queue(SYNC_QUEUE).enqueue_async(sync_connection, run_id)
    return run_id


async def start_sync(vendor_id: str, connection_id: str, mode: str) -> str:
    run = get_hub().sync.create_run(vendor_id, connection_id, mode)
    return await enqueue_sync(run.id)
