"""Payment workflows: processMarketplaceTransaction (one per transaction, one step per gateway call), the
recovery sweep and the daily reconciliation (DBOS schedules)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from dbos import DBOS, SetWorkflowID

from wedsync.bootstrap import get_hub
from wedsync.services.payments import drive_payment
from wedsync.services.reconciliation import Reconciler

SWEEP_SCHEDULE = "*/20 * * * * *"  # every 20 s (seconds field first)
RECONCILE_SCHEDULE = "0 15 3 * * *"  # daily, 03:15 UTC, the day before


@DBOS.step()
async def payment_begin_step(intent_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(get_hub().payments.begin, intent_id)


@DBOS.step()
async def payment_attempt_step(intent_id: str, attempt_no: int, connection_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await get_hub().payments.attempt(intent_id, attempt_no, connection_id)
    return result


@DBOS.step()
async def payment_resolve_step(intent_id: str, attempt_no: int) -> dict[str, Any]:
    result: dict[str, Any] = await get_hub().payments.resolve(intent_id, attempt_no)
    return result


@DBOS.step()
async def payment_settle_step(intent_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await get_hub().payments.settle(intent_id)
    return result


@DBOS.step()
async def payment_finish_step(intent_id: str, status: str, code: str | None, message: str | None) -> dict[str, Any]:
    return await asyncio.to_thread(get_hub().payments.finish, intent_id, status, code, message)


class _DbosSteps:
    begin = staticmethod(payment_begin_step)
    attempt = staticmethod(payment_attempt_step)
    resolve = staticmethod(payment_resolve_step)
    settle = staticmethod(payment_settle_step)
    finish = staticmethod(payment_finish_step)

    @staticmethod
    async def sleep(seconds: float) -> None:
        await DBOS.sleep_async(seconds)  # durable: a recovered workflow does not sleep again


@DBOS.workflow()
async def process_marketplace_transaction(intent_id: str, plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """processMarketplaceTransaction: the workflow id is the intent id (starting it twice attaches).
    ``plan`` (the committed route) saves the first step; without it the workflow reads it."""
    return await drive_payment(intent_id, _DbosSteps(), plan)


async def start_transaction(intent_id: str, plan: dict[str, Any] | None = None) -> Any:
    """Start (or attach to) the transaction's workflow; returns its handle."""
    with SetWorkflowID(intent_id):
        return await DBOS.start_workflow_async(process_marketplace_transaction, intent_id, plan)


def _installed_hub() -> Any:
    """The process's hub if one is installed; a schedule firing in a process without one (a test session
    between tests) must not build a default hub of its own."""
    from wedsync import bootstrap

    return bootstrap._hub


@DBOS.step()
async def payment_sweep_step() -> dict[str, Any]:
    hub = _installed_hub()
    if hub is None:
        return {}
    counts: dict[str, Any] = await hub.payments.sweep()
    return counts


@DBOS.step()
async def payment_restart_stale_step() -> list[str]:
    """Transactions committed but left without a live workflow (the hub stopped between the commit and
    the start): start theirs; a workflow that exists is only attached to."""
    started: list[str] = []
    hub = _installed_hub()
    if hub is None:
        return started
    for intent_id in await asyncio.to_thread(hub.payments.stale_intents, timedelta(seconds=30)):
        status = await DBOS.get_workflow_status_async(intent_id)
        if status is None or status.status in ("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
            if status is not None:
                await DBOS.resume_workflow_async(intent_id)
            else:
                await start_transaction(intent_id)
            started.append(intent_id)
    return started


@DBOS.workflow()
async def payments_sweep(scheduled_at: datetime, context: Any) -> None:
    """Resolve parked payments, replay pending refunds/transfers, release due escrow, restart orphans."""
    await payment_sweep_step()
    await payment_restart_stale_step()


@DBOS.step()
async def payment_reconcile_step(vendor_id: str, since: str, until: str) -> dict[str, Any]:
    report = await Reconciler(get_hub()).reconcile(vendor_id, datetime.fromisoformat(since),
                                                   datetime.fromisoformat(until))
    return report["summary"]


@DBOS.step()
async def payment_vendors_step() -> list[str]:
    hub = _installed_hub()
    return Reconciler(hub).vendors_with_setup() if hub is not None else []


@DBOS.workflow()
async def daily_reconciliation(scheduled_at: datetime, context: Any) -> None:
    """Reconcile the previous UTC day of every vendor with a payment setup (reports are stored)."""
    until = scheduled_at.replace(hour=0, minute=0, second=0, microsecond=0)
    since = until - timedelta(days=1)
    out: dict[str, Any] = {}
    for vendor_id in await payment_vendors_step():
        try:
            out[vendor_id] = await payment_reconcile_step(vendor_id, since.isoformat(), until.isoformat())
        except Exception as exc:  # one vendor's gateway outage must not hide the others' reports
            out[vendor_id] = {"error": f"{type(exc).__name__}: {exc}"}
    DBOS.logger.info(f"daily reconciliation of {len(out)} vendors done")


def after_launch() -> None:
    """Create the schedules once (DBOS keeps them in its system database)."""
    for name, fn, cron in (("payments-sweep", payments_sweep, SWEEP_SCHEDULE),
                           ("payments-daily-reconciliation", daily_reconciliation, RECONCILE_SCHEDULE)):
        if DBOS.get_schedule(name) is None:
            try:
                DBOS.create_schedule(schedule_name=name, workflow_fn=fn, schedule=cron)
            except Exception:  # another process created it first
                if DBOS.get_schedule(name) is None:
                    raise
