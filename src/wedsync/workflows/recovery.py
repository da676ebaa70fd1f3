"""Worker liveness: heartbeats, recovery of a dead worker's workflows by a live one, and the sync schedule.

DBOS recovers a process's own pending workflows when it restarts with the same executor id. When a
worker dies for good, its heartbeat goes stale; the first live worker to claim it (an atomic UPDATE,
so exactly one wins) asks DBOS to recover that executor's pending workflows.

Webhook events a dead worker had claimed (``webhook_inbox.claimed_by``) go back to pending at the same moments:
when a live worker claims the dead one, and when a process starts with the executor id of one that was killed
(the claims it made before this process started). Claims nobody released (made by a process that recorded no
executor, or a database error at the wrong time) are handed back after ``STALE_CLAIM_SECONDS``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from wedsync.store.db import Database
from wedsync.store.tables import WorkerHeartbeat, utcnow

HEARTBEAT_EVERY = 2.0
DEAD_AFTER = timedelta(seconds=10)
#: When this process started (this module is imported before DBOS launches and recovers its workflows): an
#: inbox claim of this process's executor id made before then is a previous process's, killed.
PROCESS_STARTED = utcnow()


def beat(db: Database, executor_id: str) -> None:
    now = utcnow()
    with db.session() as s:
        row = s.get(WorkerHeartbeat, executor_id)
        if row is None:
            s.add(WorkerHeartbeat(executor_id=executor_id, pid=os.getpid(), hostname=socket.gethostname(),
                                  started_at=now, seen_at=now))
        else:
            row.seen_at, row.pid, row.recovered_at = now, os.getpid(), None


def forget_heartbeat(db: Database, executor_id: str) -> None:
    """Remove the heartbeat of a process that ends with nothing left to recover (a short-lived command)."""
    with db.session() as s:
        s.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.executor_id == executor_id))


#: A process that started this much later than an executor's last beat is not the process that beat (its pid was
#: reused): the boot time /proc gives is whole seconds, and the wall clock may have been stepped a little since.
PID_REUSE_MARGIN = timedelta(seconds=2)


def process_started_at(pid: int) -> datetime | None:
    """When process ``pid`` started, from ``/proc`` (the boot time plus the process's start in clock ticks), or
    None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        ticks = int(fields[19])  # field 22 of stat(5), counted after the command's closing parenthesis
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def running_here(pid: int, hostname: str, last_beat: datetime | None = None) -> bool:
    """Whether the process ``pid`` of a heartbeat written on ``hostname`` is still running on this machine (a
    zombie, killed and not yet reaped, is not). With ``last_beat``, a process that started after that beat is
    another process given the dead one's pid (pids are reused, soon in a container's small pid space), not it."""
    if hostname != socket.gethostname() or pid <= 0 or pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rpartition(b")")[2].split()[:1] in ([b"Z"], [b"X"]):
                return False
        started = process_started_at(pid)
        return not (last_beat is not None and started is not None and started > last_beat + PID_REUSE_MARGIN)
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def claim_dead(db: Database, me: str) -> list[str]:
    """Executors whose heartbeat is stale and that no one has recovered yet; claimed by ``me``.

    On SQLite every process of the home runs on this machine, and a beat is a write that waits for the one write
    lock of the database: behind a long transaction (a large CSV import's chunk) a live command's beat came more
    than ``DEAD_AFTER`` late, and ``serve`` recovered its workflow while the command still ran it, both running
    the import at once. A silent executor whose process is still running here is not dead."""
    cutoff = utcnow() - DEAD_AFTER
    with db.read() as s:
        dead = [r.executor_id for r in s.execute(select(
            WorkerHeartbeat.executor_id, WorkerHeartbeat.pid, WorkerHeartbeat.hostname, WorkerHeartbeat.seen_at).where(
            WorkerHeartbeat.seen_at < cutoff, WorkerHeartbeat.recovered_at.is_(None),
            WorkerHeartbeat.executor_id != me))
            if not (db.is_sqlite and running_here(r.pid, r.hostname, r.seen_at))]
    claimed = []
    for executor_id in dead:
        with db.session() as s:
            res = s.execute(update(WorkerHeartbeat).where(
                WorkerHeartbeat.executor_id == executor_id, WorkerHeartbeat.recovered_at.is_(None),
                WorkerHeartbeat.seen_at < cutoff).values(recovered_at=utcnow()))
            if getattr(res, "rowcount", 0) == 1:
                claimed.append(executor_id)
    return claimed


STALE_CLAIM_SECONDS = 300.0


async def sweep_inbox(inbox: Any) -> None:
    """Hand long-stuck claims back and make sure pending webhook events get a drain workflow, even if the
    route's own trigger was lost (a crash between commit and enqueue)."""
    from wedsync.workflows.inbox import enqueue_drain

    await asyncio.to_thread(inbox.release_stale, STALE_CLAIM_SECONDS)
    if await asyncio.to_thread(functools.partial(inbox.pending_count, due_only=True)) > 0:
        await enqueue_drain()


async def supervise(db: Database, executor_id: str, stop: asyncio.Event, *, inbox: Any = None,
                    schedule: bool = True) -> None:
    """Beat, recover dead workers' workflows, sweep the webhook inbox and the CRM write-back outbox, start
    due scheduled pulls and import jobs that lost their workflow, until ``stop`` is set."""
    from dbos import DBOS

    from wedsync.workflows.crm import sweep_imports, sweep_outbox
    from wedsync.workflows.schedule import CHECK_EVERY, start_due_syncs

    log = logging.getLogger("wedsync.workers")
    next_schedule_check = next_import_sweep = 0.0
    loop = asyncio.get_running_loop()
    own_claims_released = inbox is None
    while not stop.is_set():
        try:
            await asyncio.to_thread(beat, db, executor_id)
            if not own_claims_released:  # once, at start-up (again next round if the database failed)
                released = await asyncio.to_thread(functools.partial(
                    inbox.release_claims, [executor_id], claimed_before=PROCESS_STARTED))
                own_claims_released = True
                if released:
                    log.warning("handed back %d webhook events claimed by %s before it restarted", released,
                                executor_id)
            for dead in await asyncio.to_thread(claim_dead, db, executor_id):
                log.warning("recovering the workflows of silent worker %s", dead)
                if inbox is not None:
                    released = await asyncio.to_thread(inbox.release_claims, [dead])
                    if released:
                        log.warning("handed back %d webhook events claimed by silent worker %s", released, dead)
                await asyncio.to_thread(DBOS._recover_pending_workflows, [dead])
            if inbox is not None:
                await sweep_inbox(inbox)
                await sweep_outbox()
            if inbox is not None and loop.time() >= next_import_sweep:
                next_import_sweep = loop.time() + CHECK_EVERY
                await sweep_imports()
            if schedule and loop.time() >= next_schedule_check:
                next_schedule_check = loop.time() + CHECK_EVERY
                await start_due_syncs()
        except Exception:  # a database hiccup must not end supervision; the next beat retries
            log.exception("worker supervision round failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=HEARTBEAT_EVERY)
        except TimeoutError:
            pass
