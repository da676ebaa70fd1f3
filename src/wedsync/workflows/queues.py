"""The hub's DBOS queues (registered after launch; a worker process listens to all of them)."""

from __future__ import annotations

from typing import Any

SYNC_QUEUE = "sync"
INBOX_QUEUE = "inbox"

QUEUES: dict[str, dict[str, Any]] = {
    # Sync runs: a few per worker process; the per-account rate budget paces each provider. Polled every
    # 0.5 s: a run's start is not latency-critical, and each poll costs CPU even when idle (measured by
    # PAY-C: the two pollers at 0.2 s took about 10 % of an idle hub's CPU).
    SYNC_QUEUE: {"worker_concurrency": 4, "polling_interval_sec": 0.5},
    # Inbox drains: one at a time per worker; several workers drain without overlap (SKIP LOCKED).
    INBOX_QUEUE: {"worker_concurrency": 1, "polling_interval_sec": 0.2},
}


_registered: dict[str, Any] = {}


def register_all() -> None:
    """Register (or update) every queue; call once after ``DBOS.launch()``, outside an event loop."""
    from dbos import DBOS

    for name, opts in QUEUES.items():
        _registered[name] = DBOS.register_queue(name, on_conflict="always_update", **opts)


def get_queue(name: str) -> Any:
    q = _registered.get(name)
    if q is None:
        raise RuntimeError(f"DBOS queue {name!r} is not registered; is DBOS launched?")
    return q
