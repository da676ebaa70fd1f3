"""Inbox drain workflow: webhook events land in the inbox in batches and are processed here."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dbos import DBOS, SetWorkflowID

from wedsync.bootstrap import current_executor_id, get_hub
from wedsync.services.webhook_dispatch import handlers, process_batch
from wedsync.workflows.queues import INBOX_QUEUE, get_queue

BATCH = 100
MAX_BATCHES = 50  # per workflow; a busy inbox gets a fresh workflow rather than an endless one


#: While this process is acknowledging webhooks, a drain batch is followed by a pause this many times as
#: long as the batch took: the drain then takes at most about a quarter of the CPU the intake competes for
#: (both run under one GIL on the embedded default), and catches up at full speed once the load stops.
#: Measured on a slow host (docs/benchmarks.md): 1.0 let the intake accept 628 to 720 requests/s with every
#: event processed about 20 s after a 15 s burst; 3.0 accepts 844 to 871/s, processed 30 to 37 s after it.
PACE_WHILE_INTAKE_BUSY = 3.0


@DBOS.step()
async def drain_step(provider: str) -> dict[str, int]:
    hub = get_hub()
    started = time.monotonic()
    result = await process_batch(hub, provider, BATCH, claimed_by=current_executor_id())
    if result["claimed"] and hub.inbox.intake_busy():
        await asyncio.sleep((time.monotonic() - started) * PACE_WHILE_INTAKE_BUSY)
    return result


@DBOS.step()
def pending_providers_step() -> list[str]:
    """Providers with a handler and events waiting; events of providers without one stay pending."""
    return sorted(get_hub().inbox.pending_providers() & set(handlers()))


@DBOS.workflow()
async def drain_inbox() -> dict[str, Any]:
    totals: dict[str, int] = {"claimed": 0, "processed": 0, "failed": 0, "retried": 0}
    for provider in pending_providers_step():
        for _ in range(MAX_BATCHES):
            r = await drain_step(provider)
            for k, v in r.items():
                totals[k] += v
            if r["claimed"] < BATCH:
                break
    return totals


#: A drain workflow's id names its time slot: at most one drain is enqueued per slot, whoever pokes.
SLOT_SECONDS = 0.25


def _slot(now: float | None = None) -> int:
    return int((time.time() if now is None else now) / SLOT_SECONDS)


async def enqueue_drain(slot: int | None = None) -> None:
    """Enqueue a drain; at most one per time slot (the workflow id names the slot)."""
    with SetWorkflowID(f"drain-{_slot() if slot is None else slot}"):
        await get_queue(INBOX_QUEUE).enqueue_async(drain_inbox)


class DrainTrigger:
    """Coalesces 'new events arrived' signals from the webhook route into few drain workflows: one per time
    slot from this process. A poke in a slot this trigger already enqueued waits for the next slot instead
    of asking the database again (the workflow id would refuse it anyway: under webhook load that was about
    20 refused inserts a second, 7 % of the API process's background CPU)."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self._pending: asyncio.Task[None] | None = None
        self._last_slot: int | None = None

    def poke(self) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._fire())

    async def _fire(self) -> None:
        await asyncio.sleep(self.delay)
        now = time.time()
        slot = _slot(now)
        if slot == self._last_slot:  # already enqueued in this slot: the next one catches these events
            slot += 1
            await asyncio.sleep(max(0.0, slot * SLOT_SECONDS - now))
        try:
            await enqueue_drain(slot)
            self._last_slot = slot
        except Exception:  # the periodic sweep in the workers drains what a failed poke missed
            DBOS.logger.warning("could not enqueue an inbox drain; the periodic sweep will")
