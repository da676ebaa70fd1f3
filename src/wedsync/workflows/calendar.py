"""Calendar workflows: one DBOS workflow per source sync run (one step per provider page, then propagation),
and a scheduled poll that starts the runs of sources whose interval has passed (CalDAV, feeds, and a safety
net for push sources)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dbos import DBOS, SetWorkflowID

from wedsync.bootstrap import get_hub, installed_hub
from wedsync.connectors.errors import ConnectorError
from wedsync.errors import NotImplementedCapability
from wedsync.store.tables import new_id
from wedsync.workflows.queues import SYNC_QUEUE, get_queue

MAX_PAGES = 10_000
POLL_CRON = "*/5 * * * * *"


@DBOS.step()
async def calendar_begin_step(source_id: str) -> dict[str, Any]:
    plan: dict[str, Any] = get_hub().calendar.begin_sync(source_id)
    return plan


@DBOS.step()
async def calendar_page_step(plan: dict[str, Any], page: str | None) -> dict[str, Any]:
    result: dict[str, Any] = await get_hub().calendar.fetch_page(plan, page)
    return result


@DBOS.step()
async def calendar_reset_step(source_id: str) -> None:
    get_hub().calendar.reset_sync_state(source_id)


@DBOS.step()
async def calendar_finish_step(plan: dict[str, Any], sync_state: str | None, full: bool, rejected: int
                               ) -> dict[str, Any]:
    result: dict[str, Any] = get_hub().calendar.finish_sync(plan, sync_state, full, rejected)
    return result


@DBOS.step()
async def calendar_fail_step(source_id: str, message: str) -> None:
    get_hub().calendar.fail_sync(source_id, message)


@DBOS.step()
async def calendar_propagate_step(vendor_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await get_hub().calendar.propagate(vendor_id)
    return result


@DBOS.workflow()
async def calendar_sync_source(source_id: str) -> dict[str, Any]:
    """Pull one calendar source (full when it has no sync state or the provider expired it), then push the
    vendor's busy blocks to its other calendars."""
    plan = await calendar_begin_step(source_id)
    page: str | None = None
    pages = rejected = 0
    try:
        while pages < MAX_PAGES:
            res = await calendar_page_step(plan, page)
            if res.get("expired"):
                await calendar_reset_step(source_id)
                plan["sync_state"], page = None, None
                continue
            pages += 1
            rejected += res["rejected"]
            page = res["next_page"]
            if page is None:
                await calendar_finish_step(plan, res["sync_state"], res["full"], rejected)
                break
    except (ConnectorError, NotImplementedCapability) as exc:
        await calendar_fail_step(source_id, f"{type(exc).__name__}: {exc}")
        return {"status": "failed", "pages": pages, "error": str(exc)}
    except Exception as exc:  # the vault, the store, a bug: the source says so (not "syncing" until the next
        # run), then DBOS sees the error
        await calendar_fail_step(source_id, f"{type(exc).__name__}: {exc}")
        raise
    propagated = await calendar_propagate_step(plan["vendor_id"])
    return {"status": "ok", "pages": pages, "propagation": propagated}


async def enqueue_source_sync(source_id: str, run_id: str | None = None) -> str:
    """Enqueue a sync run of one source (raises RuntimeError when DBOS is not launched here)."""
    wf_id = run_id or f"cal-{source_id}-{new_id()}"
    queue = get_queue(SYNC_QUEUE)
    with SetWorkflowID(wf_id):
        await queue.enqueue_async(calendar_sync_source, source_id)
    return wf_id


@DBOS.step()
async def calendar_renew_step() -> int:
    hub = installed_hub()
    renewed: int = await hub.calendar.renew_watches() if hub is not None else 0
    return renewed


@DBOS.workflow()
async def calendar_poll(scheduled: datetime, context: Any = None) -> None:
    """Every 5 s: start the sync of each source whose polling interval has passed; renew push channels.
    A process without an installed hub (a CLI command, a test between hubs) does nothing."""
    hub = installed_hub()
    if hub is None:
        return
    await calendar_renew_step()
    due = hub.calendar.sources_due()
    for source_id in due:
        await enqueue_source_sync(source_id, f"cal-{source_id}-{int(scheduled.timestamp())}")


_schedule_applied = False


def after_launch() -> None:
    """Called by ``bootstrap.launch_dbos`` once DBOS runs: install the polling schedule."""
    ensure_poll_schedule(launched=True)


def ensure_poll_schedule(*, launched: bool = False) -> bool:
    """Install the 5-second polling schedule (idempotent; needs DBOS launched in this process)."""
    global _schedule_applied
    if _schedule_applied:
        return True
    from wedsync import bootstrap

    if not (launched or bootstrap._dbos_launched):
        return False
    DBOS.apply_schedules([{"schedule_name": "calendar-poll", "workflow_fn": calendar_poll,
                           "schedule": POLL_CRON}])
    _schedule_applied = True
    return True
