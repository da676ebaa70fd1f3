"""Sync runs as DBOS workflows, REST hooks end to end, and provider outages (SQLite, in-process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dbos import DBOS
from sqlalchemy import func, select

from tests.conftest import auth
from tests.e2e.procs import serve_app_in_thread
from wedsync.store.tables import Client, Connection, WebhookEvent

SLUG = "vsco-workspace"


@pytest.fixture
def sandbox() -> Iterator[str]:
    from wedsync.sandbox.server import start_sandbox_in_thread

    url, stop = start_sandbox_in_thread(port=0, contacts=260, jobs=60)
    try:
        yield url
    finally:
        stop()


def _connect(hub: Any, sandbox: str, name: str) -> tuple[str, str, str]:
    v = hub.tenancy.create_vendor(name)
    _, key = hub.tenancy.create_key(v.id)
    c = hub.connections.create(v.id, SLUG, credentials={"api_key": "sandbox-vsco-key"},
                               base_url=f"{sandbox}/{SLUG}/api/v2")
    return v.id, c.id, key


def _count_clients(hub: Any, connection_id: str) -> int:
    with hub.db.read() as s:
        return int(s.execute(select(func.count()).select_from(Client).where(
            Client.connection_id == connection_id, Client.deleted_at.is_(None))).scalar_one())


async def test_sync_run_is_a_durable_workflow(dbos_hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    from wedsync.workflows.sync import enqueue_sync

    vendor_id, conn_id, _ = _connect(dbos_hub, sandbox, "Workflow Studio")
    run = dbos_hub.sync.create_run(vendor_id, conn_id, "full")
    await enqueue_sync(run.id)
    await enqueue_sync(run.id)  # same workflow id: attaches, never a second run
    handle = await DBOS.retrieve_workflow_async(run.id)
    result = await handle.get_result()
    assert result["status"] == "succeeded" and result["created"] == 260 + 60 + 2 * 60  # + two job-contact links a job
    steps = await DBOS.list_workflow_steps_async(run.id)
    assert len(steps) >= 2 + 3 + 1  # begin, one per page, completeness checks, finish
    assert _count_clients(dbos_hub, conn_id) == 260
    await dbos_hub.connections.aclose()


async def test_api_sync_hooks_and_outage(dbos_hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    from wedsync.api.app import create_app

    _, conn_id, key = _connect(dbos_hub, sandbox, "Hook Studio")
    base, stop = serve_app_in_thread(create_app())
    dbos_hub.subscriptions.public_url = base
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            r = await api.post(f"/api/connections/{conn_id}/sync", headers=auth(key), json={"mode": "full"})
            assert r.status_code == 202, r.text
            run_id = r.json()["id"]
            deadline = time.monotonic() + 60
            while True:
                run = (await api.get(f"/api/sync-runs/{run_id}", headers=auth(key))).json()
                if run["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert run["status"] == "succeeded", run
            r = await api.post(f"/api/connections/{conn_id}/sync", headers=auth(key), json={"mode": "full"})
            assert r.status_code in (202, 409)

            # REST hooks: subscribe, then the provider creates contacts and tells us only their ids.
            r = await api.post(f"/api/connections/{conn_id}/subscriptions", headers=auth(key))
            assert r.status_code == 200, r.text
            assert {s["event"] for s in r.json()} == {"contact.created", "job.created", "order.booked",
                                                      "payment.created"}
            before = _count_clients(dbos_hub, conn_id)
            httpx.post(f"{sandbox}/_sandbox/{SLUG}/mutate", json={"create": 4, "update": 0, "delete": 0}
                       ).raise_for_status()
            deadline = time.monotonic() + 30
            while _count_clients(dbos_hub, conn_id) < before + 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert _count_clients(dbos_hub, conn_id) == before + 4

            # An unauthenticated hook (wrong token) is refused and nothing is stored. (Counted by the ids they
            # name: the sandbox's own deliveries for the contacts above may still be arriving.)
            refused = ("01h35ccwymj5ctckp8px1azhg6", "01h35ccwymj5ctckp8px1azhg7")
            r = await api.post(f"/webhooks/{SLUG}/{conn_id}?token=wrong&event=contact.created",
                               json={"targetId": refused[0]})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_signature"
            r = await api.post(f"/webhooks/{SLUG}/{conn_id}", json={"targetId": refused[1]})
            assert r.status_code == 401
            with dbos_hub.db.read() as s:
                assert s.execute(select(func.count()).select_from(WebhookEvent).where(
                    WebhookEvent.record_id.in_(refused))).scalar_one() == 0

            # Deleting the connection removes our REST hooks at the provider as well (once its runs ended).
            deadline = time.monotonic() + 60
            while dbos_hub.sync.runs_in_progress(conn_id) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            hooks = httpx.get(f"{sandbox}/{SLUG}/api/v2/rest-hook", headers={"X-API-KEY": "sandbox-vsco-key"})
            assert hooks.json()["meta"]["totalItems"] == 4
            r = await api.delete(f"/api/connections/{conn_id}", headers=auth(key))
            assert r.status_code == 204
            hooks = httpx.get(f"{sandbox}/{SLUG}/api/v2/rest-hook", headers={"X-API-KEY": "sandbox-vsco-key"})
            assert hooks.json()["meta"]["totalItems"] == 0
            assert (await api.get(f"/api/connections/{conn_id}", headers=auth(key))).status_code == 404

            # A provider outage fails the run and marks the connection; our API never answers 5xx.
            _, conn_id, key = _connect(dbos_hub, sandbox, "Outage Studio")
            httpx.put(f"{sandbox}/_sandbox/{SLUG}/faults", json={"outages": [{"for_seconds": 120}]}
                      ).raise_for_status()
            r = await api.post(f"/api/connections/{conn_id}/sync", headers=auth(key), json={"mode": "full"})
            assert r.status_code == 202, r.text
            run_id = r.json()["id"]
            deadline = time.monotonic() + 90
            while True:
                resp = await api.get(f"/api/sync-runs/{run_id}", headers=auth(key))
                assert resp.status_code == 200
                if resp.json()["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)
            assert resp.json()["status"] == "failed", resp.json()
            conn = (await api.get(f"/api/connections/{conn_id}", headers=auth(key))).json()
            assert conn["status"] == "error" and conn["status_detail"]
            # the provider's error, named once (not "ConnectorError: ProviderUnavailable: ...")
            assert not conn["status_detail"].startswith("ConnectorError: "), conn["status_detail"]
            assert resp.json()["error_detail"] == conn["status_detail"]
            # ... and /metrics counts the failure under that class too (it said ConnectorError for everything)
            from prometheus_client import REGISTRY

            error_class = conn["status_detail"].split(":", 1)[0]
            assert error_class != "ConnectorError" and REGISTRY.get_sample_value(
                "sync_runs_total", {"provider": SLUG, "outcome": "failed", "error": error_class})
            with dbos_hub.db.read() as s:
                assert s.get(Connection, conn_id).status == "error"
    finally:
        httpx.put(f"{sandbox}/_sandbox/{SLUG}/faults", json={}).raise_for_status()
        stop()


async def test_orphaned_run_row_does_not_block_the_connection(dbos_hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    """A run recorded but never enqueued (the hub died in between) is closed, not left blocking forever."""
    from datetime import timedelta

    from wedsync.errors import Conflict
    from wedsync.store.tables import SyncRun, utcnow
    from wedsync.workflows.sync import start_sync

    vendor_id, conn_id, _ = _connect(dbos_hub, sandbox, "Orphan Studio")
    orphan = dbos_hub.sync.create_run(vendor_id, conn_id, "full")  # no workflow behind it
    with pytest.raises(Conflict):  # fresh: it may be about to be enqueued
        await start_sync(vendor_id, conn_id, "full")
    with dbos_hub.db.session() as s:
        row = s.get(SyncRun, orphan.id)
        assert row is not None
        row.started_at = utcnow() - timedelta(minutes=5)
    run_id = await start_sync(vendor_id, conn_id, "full")
    result = await (await DBOS.retrieve_workflow_async(run_id)).get_result()
    assert result["status"] == "succeeded" and run_id != orphan.id
    closed = dbos_hub.sync.get_run(vendor_id, orphan.id)
    assert closed.status == "failed" and "never started" in (closed.error_detail or "")
    await dbos_hub.connections.aclose()


async def test_a_dead_executors_inbox_claims_go_back_to_pending_at_once(dbos_hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Webhook events claimed by a worker that died stayed ``processing`` until the 300 s stale release. A claim
    names its executor now, and the supervisor hands a dead one's claims back when it recovers that worker, and
    its own executor's claims from before the process started (a kill -9 and a restart with the same id) at
    start-up; other claims wait for the stale release as before."""
    import uuid
    from datetime import timedelta

    from wedsync.store.tables import WorkerHeartbeat, utcnow
    from wedsync.workflows import recovery

    now = utcnow()
    ghost, alive, me = f"ghost-{uuid.uuid4().hex[:8]}", f"alive-{uuid.uuid4().hex[:8]}", "pytest"
    monkeypatch.setattr(recovery, "PROCESS_STARTED", now - timedelta(seconds=10))
    rows = {  # name -> (claimed_by, claimed that long ago)
        "ghost-1": (ghost, 20), "ghost-2": (ghost, 20), "alive": (alive, 20), "mine-before-start": (me, 20),
        "mine-since-start": (me, 5), "anonymous": (None, 20)}
    with dbos_hub.db.session() as s:
        s.add(WorkerHeartbeat(executor_id=ghost, pid=1, hostname="gone", started_at=now - timedelta(minutes=5),
                              seen_at=now - timedelta(seconds=30)))
        s.add(WorkerHeartbeat(executor_id=alive, pid=2, hostname="here", started_at=now - timedelta(minutes=5),
                              seen_at=now))
        for name, (owner, ago) in rows.items():
            s.add(WebhookEvent(vendor_id="v" * 26, connection_id="c" * 26, provider="no-handler",
                               event_id=f"{name}-{uuid.uuid4().hex}", body=b"{}", status="processing",
                               claimed_by=owner, processed_at=now - timedelta(seconds=ago)))

    def statuses() -> dict[str, str]:
        with dbos_hub.db.read() as s:
            got = s.execute(select(WebhookEvent.event_id, WebhookEvent.status).where(
                WebhookEvent.provider == "no-handler")).all()
        return {event_id.rsplit("-", 1)[0]: status for event_id, status in got}

    stop = asyncio.Event()
    task = asyncio.create_task(recovery.supervise(dbos_hub.db, me, stop, inbox=dbos_hub.inbox, schedule=False))
    try:
        for _ in range(100):
            if statuses()["ghost-1"] == "pending":
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert statuses() == {"ghost-1": "pending", "ghost-2": "pending", "mine-before-start": "pending",
                          "alive": "processing", "mine-since-start": "processing", "anonymous": "processing"}
    with dbos_hub.db.read() as s:
        assert s.get(WorkerHeartbeat, ghost).recovered_at is not None  # type: ignore[union-attr]


def test_a_silent_executor_whose_process_still_runs_here_is_not_dead_on_sqlite(any_hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On SQLite a beat waits for the database's one write lock: behind a large import's chunk a live `wedsync crm
    import` beat more than 10 s late, and `serve` recovered its workflow while the command still ran it (found
    by a probe: both ran the 200,000-row import at once). On SQLite a silent executor whose process still runs on
    this machine is left alone; a killed one (gone, or a zombie not yet reaped), one of another machine, and one
    whose pid now belongs to a process started after its last beat (pids are reused, soon in a container) are
    recovered. PostgreSQL, where a beat never waits for another process's rows, decides by the beat alone."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import uuid
    from datetime import timedelta

    from wedsync.store.tables import WorkerHeartbeat, utcnow
    from wedsync.workflows import recovery

    here = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    os.kill(zombie.pid, signal.SIGKILL)
    time.sleep(1.0)  # killed, not reaped: a zombie; and `live` has been running a while before its beat
    monkeypatch.setattr(recovery, "DEAD_AFTER", timedelta(milliseconds=100))
    tag = uuid.uuid4().hex[:8]
    now = utcnow()
    late = now - timedelta(milliseconds=500)  # stale by DEAD_AFTER, and after `live` started
    before = now - timedelta(seconds=30)  # before `live` started: the pid was another process's then
    beats = {f"live-{tag}": (live.pid, here, late), f"gone-{tag}": (gone.pid, here, late),
             f"zombie-{tag}": (zombie.pid, here, late), f"elsewhere-{tag}": (live.pid, "another-host", late),
             f"reused-{tag}": (live.pid, here, before)}
    started = recovery.process_started_at(live.pid)
    try:
        with any_hub.db.session() as s:
            for eid, (pid, host, seen) in beats.items():
                s.add(WorkerHeartbeat(executor_id=eid, pid=pid, hostname=host, started_at=seen, seen_at=seen))
        claimed = set(recovery.claim_dead(any_hub.db, "me")) & set(beats)
    finally:
        live.kill()
        live.wait()
        zombie.wait()
    assert started is not None and before < started <= late + recovery.PID_REUSE_MARGIN
    if any_hub.db.is_sqlite:
        assert claimed == {f"gone-{tag}", f"zombie-{tag}", f"elsewhere-{tag}", f"reused-{tag}"}
    else:
        assert claimed == set(beats)
