"""Asynchronous webhook delivery for emulators, over real HTTP with httpx, with duplicate/reorder faults.

``send`` never blocks the request that caused the event: deliveries run as tasks on the running event loop.
With ``webhook_reorder`` on, deliveries are held for ``webhook_reorder_window_ms`` and then sent, one at a
time, in a seeded permutation that is never the original order (when there are two or more).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from wedsync.sandbox.faults import FaultInjector

__all__ = ["Delivery", "WebhookDispatcher"]


@dataclass(slots=True)
class Delivery:
    url: str
    body: bytes
    headers: dict[str, str]
    sequence: int
    status: int | None = None
    error: str | None = None
    delivered_at: float | None = None
    duplicate: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "url": self.url,
            "body": self.body.decode("utf-8", "replace"),
            "headers": self.headers,
            "status": self.status,
            "error": self.error,
            "delivered_at": self.delivered_at,
            "duplicate": self.duplicate,
        }


@dataclass
class WebhookDispatcher:
    """Sends webhook POSTs on the current event loop and keeps a bounded log of what happened."""

    faults: FaultInjector
    timeout_seconds: float = 5.0
    log: deque[Delivery] = field(default_factory=lambda: deque(maxlen=1000))
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _pending: list[Delivery] = field(default_factory=list)
    _flush_scheduled: bool = False
    _sequence: int = 0

    def send(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Queue one event for ``url`` (must be called from a coroutine on the serving loop)."""
        cfg = self.faults.config
        rng = self.faults.hook_rng
        self._sequence += 1
        delivery = Delivery(url, body, {"content-type": "application/json", **(headers or {})}, self._sequence)
        copies = [delivery]
        if rng.random() < cfg.webhook_duplicate_rate:
            self.faults.webhooks["duplicated"] += 1
            copies.append(Delivery(url, body, dict(delivery.headers), self._sequence, duplicate=True))
        if cfg.webhook_reorder:
            self._pending.extend(copies)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._spawn(self._flush_later(cfg.webhook_reorder_window_ms / 1000))
        else:
            for copy in copies:
                self._spawn(self._deliver_one(copy))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        batch, self._pending = self._pending, []
        self._flush_scheduled = False
        order = list(range(len(batch)))
        if len(batch) > 1:
            rng = self.faults.hook_rng
            rng.shuffle(order)
            if order == sorted(order):
                order.reverse()
            self.faults.webhooks["reordered_batches"] += 1
        async with httpx.AsyncClient(timeout=self.timeout_seconds) as client:
            for index in order:  # sequentially, so the receiver really sees the permuted order
                await self._post(client, batch[index])

    async def _deliver_one(self, delivery: Delivery) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_seconds) as client:
            await self._post(client, delivery)

    async def _post(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        try:
            response = await client.post(delivery.url, content=delivery.body, headers=delivery.headers)
        except httpx.HTTPError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
            self.faults.webhooks["failed"] += 1
        else:
            delivery.status = response.status_code
            self.faults.webhooks["delivered" if response.is_success else "rejected"] += 1
        delivery.delivered_at = time.time()
        self.log.append(delivery)

    async def drain(self, within: float = 10.0) -> None:
        """Wait until every queued delivery has been attempted (tests and demos)."""
        deadline = time.monotonic() + within
        while self._tasks or self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("webhook deliveries still pending")
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=remaining)
            else:
                await asyncio.sleep(0.01)

    def clear(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._pending.clear()
        self._flush_scheduled = False
        self.log.clear()
