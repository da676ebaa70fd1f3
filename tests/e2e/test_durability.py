"""Real processes: kill -9 in the middle of a sync run, and a queue shared by two workers on PostgreSQL.

Nothing may be lost or counted twice: every page of a run is written with its bookkeeping row in one
transaction, and DBOS resumes the workflow from its last completed step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from tests.conftest import PgDatabase, auth, make_settings, require_pg
from tests.e2e.procs import Proc, free_port, hub_env, wait_for
from wedsync.bootstrap import Hub
from wedsync.store.tables import Client, SyncRun, SyncRunPage, WebhookEvent, Wedding, utcnow

pytestmark = pytest.mark.slow
SLUG = "vsco-workspace"


@pytest.fixture
def sandbox() -> Iterator[str]:
    from wedsync.sandbox.server import start_sandbox_in_thread

    url, stop = start_sandbox_in_thread(port=0, contacts=10, jobs=5)
    try:
        yield url
    finally:
        stop()


def seed(sandbox: str, contacts: int, jobs: int, latency_ms: float) -> None:
    httpx.post(f"{sandbox}/_sandbox/{SLUG}/seed", json={"contacts": contacts, "jobs": jobs}, timeout=60
               ).raise_for_status()
    httpx.put(f"{sandbox}/_sandbox/{SLUG}/faults", json={"latency_ms": latency_ms}, timeout=10).raise_for_status()


def provision(env: dict[str, str], home: Path, sandbox: str, n: int) -> list[dict[str, str]]:
    """Vendors, keys and connections, written straight to the store the processes will use."""
    settings = make_settings(home, database_url=env.get("WEDSYNC_DATABASE_URL"), vault_keys=env["WEDSYNC_VAULT_KEYS"])
    hub = Hub(settings)
    out = []
    for i in range(n):
        v = hub.tenancy.create_vendor(f"Durable Studio {i}")
        _, key = hub.tenancy.create_key(v.id)
        c = hub.connections.create(v.id, SLUG, credentials={"api_key": "sandbox-vsco-key"},
                                   base_url=f"{sandbox}/{SLUG}/api/v2")
        out.append({"vendor_id": v.id, "key": key, "connection_id": c.id})
    hub.close()
    return out


def run_row(engine: Any, run_id: str) -> Any:
    with engine.connect() as c:
        return c.execute(select(SyncRun).where(SyncRun.id == run_id)).first()


def pages_done(engine: Any, run_id: str) -> tuple[int, int]:
    """(pages, records) written so far: a running run's counters are the sums of its page rows."""
    with engine.connect() as c:
        n, items = c.execute(select(func.count(), func.sum(SyncRunPage.items)).where(
            SyncRunPage.run_id == run_id)).one()
    return int(n or 0), int(items or 0)


def counts(engine: Any, connection_id: str) -> tuple[int, int]:
    with engine.connect() as c:
        n_c = c.execute(select(func.count()).select_from(Client).where(Client.connection_id == connection_id)).scalar()
        n_w = c.execute(select(func.count()).select_from(Wedding).where(Wedding.connection_id == connection_id)
                        ).scalar()
    return int(n_c or 0), int(n_w or 0)


def start_sync(api_url: str, who: dict[str, str]) -> str:
    r = httpx.post(f"{api_url}/api/connections/{who['connection_id']}/sync", headers=auth(who["key"]),
                   json={"mode": "full"}, timeout=30)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def wait_api(url: str, proc: Proc) -> None:
    def up() -> bool:
        if proc.p.poll() is not None:
            raise AssertionError(f"hub process exited:\n{proc.output()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(up, 60, "the hub API")


def test_kill9_mid_sync_sqlite_resumes_on_restart(tmp_path: Path, sandbox: str) -> None:
    contacts, jobs = 3000, 400
    total = contacts + jobs + 2 * jobs  # and two job-contact links per job
    seed(sandbox, contacts, jobs, latency_ms=60)
    env = hub_env(tmp_path)  # the embedded default executor id is stable across restarts
    who = provision(env, tmp_path, sandbox, 1)[0]
    engine = create_engine(f"sqlite:///{tmp_path / 'wedsync.sqlite'}")
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    hub = Proc(["serve", "--port", str(port)], env, tmp_path / "hub1.log")
    try:
        wait_api(api, hub)
        run_id = start_sync(api, who)
        wait_for(lambda: pages_done(engine, run_id)[0] >= 8, 60, "8 pages synced")
        hub.kill9()
        mid = run_row(engine, run_id)
        assert mid.status == "running" and 0 < pages_done(engine, run_id)[1] < total
        hub = Proc(["serve", "--port", str(port)], env, tmp_path / "hub2.log")  # restarted as it was
        wait_api(api, hub)
        done = wait_for(lambda: (r := run_row(engine, run_id)) is not None and r.status in ("succeeded", "failed")
                        and r, 120, "the resumed run to finish")
        assert done.status == "succeeded", done.error_detail
        assert (done.processed, done.created, done.updated) == (total, total, 0)
        assert counts(engine, who["connection_id"]) == (contacts, jobs)
    finally:
        hub.stop()
        engine.dispose()


def test_kill9_mid_drain_sqlite_hands_the_claimed_webhook_events_back_on_restart(tmp_path: Path, sandbox: str
                                                                                ) -> None:
    """Webhook events a killed hub had claimed stayed ``processing`` for the 300 s stale-claim release after the
    restart. A claim names its executor, and the restarted hub (same executor id) hands its previous life's
    claims back at start-up, then processes them."""
    import random

    from wedsync.services.connections import WEBHOOK_SECRET

    seed(sandbox, 10, 5, latency_ms=300)  # each re-fetch is slow: the drain holds claims for a while
    env = hub_env(tmp_path)
    who = provision(env, tmp_path, sandbox, 1)[0]
    hub = Hub(make_settings(tmp_path, vault_keys=env["WEDSYNC_VAULT_KEYS"]))
    token = hub.connections.credentials(hub.connections.get_any(who["connection_id"]))[WEBHOOK_SECRET]
    hub.close()
    engine = create_engine(f"sqlite:///{tmp_path / 'wedsync.sqlite'}")

    def inbox(status: str, claimed_before: Any = None) -> int:
        stmt = select(func.count()).select_from(WebhookEvent).where(WebhookEvent.status == status)
        if claimed_before is not None:
            stmt = stmt.where(WebhookEvent.processed_at < claimed_before)
        with engine.connect() as c:
            return int(c.execute(stmt).scalar_one())

    port = free_port()
    api = f"http://127.0.0.1:{port}"
    proc = Proc(["serve", "--port", str(port)], env, tmp_path / "hub1.log")
    try:
        wait_api(api, proc)
        alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
        with httpx.Client(base_url=api, timeout=30) as client:
            for _ in range(200):
                target = "01" + "".join(random.choices(alphabet, k=24))
                r = client.post(f"/webhooks/{SLUG}/{who['connection_id']}",
                                params={"token": token, "event": "contact.created"}, json={"targetId": target})
                assert r.status_code == 200, r.text
        wait_for(lambda: inbox("processing") >= 10, 30, "a drain holding claims")
        proc.kill9()
        assert inbox("processing") >= 10
        httpx.put(f"{sandbox}/_sandbox/{SLUG}/faults", json={"latency_ms": 0}, timeout=10).raise_for_status()
        restarted = utcnow()
        proc = Proc(["serve", "--port", str(port)], env, tmp_path / "hub2.log")  # restarted as it was
        wait_api(api, proc)
        # at start-up, not 300 s later (the stale-claim release)
        wait_for(lambda: inbox("processing", claimed_before=restarted) == 0, 30,
                 "the killed hub's claims to be handed back")
        wait_for(lambda: inbox("processing") + inbox("pending") == 0, 120, "every event to be processed")
    finally:
        proc.stop()
        engine.dispose()


def _dbos_executors(engine: Any, run_ids: list[str]) -> dict[str, str]:
    with engine.connect() as c:
        rows = c.execute(text("SELECT workflow_uuid, executor_id FROM dbos.workflow_status "
                              "WHERE workflow_uuid = ANY(:ids)"), {"ids": run_ids}).all()
    return {r[0]: r[1] for r in rows}


def test_two_workers_share_the_queue_and_recover_a_killed_one(tmp_path: Path, sandbox: str) -> None:
    require_pg()
    pg = PgDatabase(require_pg())
    procs: list[Proc] = []
    engine = create_engine(pg.url)
    try:
        contacts, jobs = 1500, 200
        total = contacts + jobs + 2 * jobs  # and two job-contact links per job
        seed(sandbox, contacts, jobs, latency_ms=40)
        env = hub_env(tmp_path, pg.url)
        people = provision(env, tmp_path, sandbox, 7)
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        api = Proc(["serve", "--port", str(port), "--no-in-process-workers"], {**env, "WEDSYNC_EXECUTOR_ID": "api"},
                   tmp_path / "api.log")
        procs.append(api)
        w1 = Proc(["worker", "--executor-id", "w1"], env, tmp_path / "w1.log")
        w2 = Proc(["worker", "--executor-id", "w2"], env, tmp_path / "w2.log")
        procs += [w1, w2]
        wait_api(api_url, api)

        # Six runs at once: both workers take some, none runs twice.
        runs = [start_sync(api_url, who) for who in people[:6]]
        wait_for(lambda: all(run_row(engine, r).status in ("succeeded", "failed") for r in runs), 180,
                 "six runs to finish")
        for who, run_id in zip(people[:6], runs, strict=True):
            row = run_row(engine, run_id)
            assert row.status == "succeeded", row.error_detail
            assert (row.processed, row.created) == (total, total)
            assert counts(engine, who["connection_id"]) == (contacts, jobs)
        executors = _dbos_executors(engine, runs)
        assert set(executors.values()) == {"w1", "w2"}, executors

        # Kill -9 the worker running a sync mid-way: the other one claims it once its heartbeat is stale.
        who = people[6]
        contacts, jobs = 4000, 300  # a longer run (about 43 pages at 60 ms), so the kill lands mid-way
        total = contacts + jobs + 2 * jobs  # and two job-contact links per job
        seed(sandbox, contacts, jobs, latency_ms=60)
        run_id = start_sync(api_url, who)
        wait_for(lambda: pages_done(engine, run_id)[0] >= 4, 60, "4 pages")
        owner = _dbos_executors(engine, [run_id])[run_id]
        victim, survivor = (w1, "w2") if owner == "w1" else (w2, "w1")
        victim.kill9()
        assert run_row(engine, run_id).status == "running", "the run ended before the kill: make it longer"
        done = wait_for(lambda: (r := run_row(engine, run_id)).status in ("succeeded", "failed") and r, 120,
                        "the orphaned run to be recovered")
        assert done.status == "succeeded", done.error_detail
        assert (done.processed, done.created, done.updated) == (total, total, 0)
        assert counts(engine, who["connection_id"]) == (contacts, jobs)
        assert _dbos_executors(engine, [run_id])[run_id] == survivor
    finally:
        for p in procs:
            p.stop()
        engine.dispose()
        pg.drop()
