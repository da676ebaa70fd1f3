"""Worker liveness: heartbeats, and recovery of a dead worker's workflows by a live one.

DBOS recovers a process's own pending workflows when it restarts with the same executor id. When a
worker dies for good, its heartbeat goes stale; the first live worker to claim it (an atomic UPDATE,
so exactly one wins) asks DBOS to recover that executor's pending workflows.
"""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import timedelta

from sqlalchemy import select, update

from wedsync.store.db import Database
from wedsync.store.tables import WorkerHeartbeat, utcnow

HEARTBEAT_EVERY = 2.0
DEAD_AFTER = timedelta(seconds=10)


def beat(db: Database, executor_id: str) -> None:
    now = utcnow()
    with db.session() as s:
        row = s.get(WorkerHeartbeat, executor_id)
        if row is None:
            s.add(WorkerHeartbeat(executor_id=executor_id, pid=os.getpid(), hostname=socket.gethostname(),
                                  started_at=now, seen_at=now))
        else:
            row.seen_at, row.pid, row.recovered_at = now, os.getpid(), None


def claim_dead(db: Database, me: str) -> list[str]:
    """Executors whose heartbeat is stale and that no one has recovered yet; claimed by ``me``."""
    cutoff = utcnow() - DEAD_AFTER
    with db.read() as s:
        dead = [r for r in s.execute(select(WorkerHeartbeat.executor_id).where(
            WorkerHeartbeat.seen_at < cutoff, WorkerHeartbeat.recovered_at.is_(None),
            WorkerHeartbeat.executor_id != me)).scalars()]
    claimed = []
    for executor_id in dead:
        with db.session() as s:
            res = s.execute(update(WorkerHeartbeat).where(
                WorkerHeartbeat.executor_id == executor_id, WorkerHeartbeat.recovered_at.is_(None),
                WorkerHeartbeat.seen_at < cutoff).values(recovered_at=utcnow()))
            if getattr(res, "rowcount", 0) == 1:
                claimed.append(executor_id)
    return claimed


async def supervise(db: Database, executor_id: str, stop: asyncio.Event) -> None:
    """Beat, and recover dead workers' workflows, until ``stop`` is set."""
    from dbos import DBOS

    while not stop.is_set():
        await asyncio.to_thread(beat, db, executor_id)
        for dead in await asyncio.to_thread(claim_dead, db, executor_id):
            await asyncio.to_thread(DBOS._recover_pending_workflows, [dead])
        try:
            await asyncio.wait_for(stop.wait(), timeout=HEARTBEAT_EVERY)
        except TimeoutError:
            pass
