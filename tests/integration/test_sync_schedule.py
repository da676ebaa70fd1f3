"""Scheduled incremental pulls: a connection is pulled on its own one interval after its last run started,
exactly one worker starts each due pull, the interval is the vendor's to change, and the seed's ``nextSync``
is that schedule (not a made-up time). At most one run per connection is in progress, by the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import IntegrityError

from tests.conftest import auth
from tests.integration.test_crm_hub import csv_connection
from tests.integration.test_vsco_sync import KEY, SLUG, admin, sandbox  # noqa: F401
from wedsync.connectors.errors import ReauthRequired
from wedsync.errors import Conflict, InvalidInput
from wedsync.services.sync_engine import DirectSteps, drive_run
from wedsync.store.tables import Connection, SyncRun, new_id, utcnow


def _connect(hub: Any, sandbox: str, name: str = "Schedule Studio") -> tuple[str, str]:  # noqa: F811
    v = hub.tenancy.create_vendor(name)
    c = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{sandbox}/{SLUG}/api/v2")
    return v.id, c.id


def _conn(hub: Any, connection_id: str) -> Connection:
    with hub.db.read() as s:
        row = s.get(Connection, connection_id)
        assert row is not None
        return row


async def test_schedule_follows_the_last_run_and_one_claim_wins(any_hub, sandbox) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    hub = any_hub
    admin(sandbox, "seed", contacts=20, jobs=4)
    vendor_id, conn_id = _connect(hub, sandbox)
    far = utcnow() + timedelta(days=400)
    assert _conn(hub, conn_id).next_sync_at is None and hub.sync.due(far) == []  # nothing before the first run

    run = hub.sync.create_run(vendor_id, conn_id, "full")
    with pytest.raises(Conflict):
        hub.sync.create_run(vendor_id, conn_id, "incremental")
    # the database itself refuses a second run in progress (a race the check above could lose)
    with pytest.raises(IntegrityError), hub.db.session() as s:
        s.add(SyncRun(id=new_id(), vendor_id=vendor_id, connection_id=conn_id, mode="full", status="running"))
    assert _conn(hub, conn_id).next_sync_at == run.started_at + timedelta(minutes=60)
    try:
        assert (await drive_run(run.id, DirectSteps(hub.sync)))["status"] == "succeeded"
    finally:
        await hub.connections.aclose()

    started = hub.sync.get_run(vendor_id, run.id).started_at  # the run's start, set again when it began
    assert hub.sync.due(started + timedelta(minutes=59)) == []
    at = started + timedelta(minutes=61)
    assert hub.sync.due(at) == [(vendor_id, conn_id)]
    assert hub.sync.claim_due(conn_id, at) is True
    assert hub.sync.claim_due(conn_id, at) is False  # a second worker finds it taken
    assert _conn(hub, conn_id).next_sync_at == at + timedelta(minutes=60)
    assert hub.sync.due(at) == []

    # the vendor's interval: 15 minutes after the last run started; 0 is manual only; null the default again
    assert hub.sync.set_interval(vendor_id, conn_id, 15).next_sync_at == started + timedelta(minutes=15)
    off = hub.sync.set_interval(vendor_id, conn_id, 0)
    assert off.next_sync_at is None and hub.sync.interval_of(off) is None and hub.sync.due(far) == []
    back = hub.sync.set_interval(vendor_id, conn_id, None)
    assert back.next_sync_at == started + timedelta(minutes=60) and back.sync_interval_minutes is None
    for bad in (-1, 43_201):
        with pytest.raises(InvalidInput):
            hub.sync.set_interval(vendor_id, conn_id, bad)

    # rejected credentials are not retried on a schedule: new ones (or a manual run that succeeds) come first
    hub.sync.fail(hub.sync.create_run(vendor_id, conn_id, "incremental").id,
                  ReauthRequired("credentials rejected", provider=SLUG, http_status=401))
    assert _conn(hub, conn_id).status == "error" and hub.sync.due(far) == []

    # a CSV/hook-only product has nothing to pull: no schedule, and asking for one is refused
    hb = csv_connection(hub, vendor_id)
    assert hub.sync.interval_of(_conn(hub, hb)) is None
    with pytest.raises(InvalidInput) as exc:
        hub.sync.set_interval(vendor_id, hb, 30)
    assert exc.value.code == "not_pullable"
    assert hub.sync.set_interval(vendor_id, hb, 0).next_sync_at is None


def test_hub_default_interval_comes_from_settings(tmp_path, sandbox) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from tests.conftest import make_settings
    from wedsync.bootstrap import Hub

    hub = Hub(make_settings(tmp_path, sync_interval_minutes=0))
    try:
        vendor_id, conn_id = _connect(hub, sandbox)
        hub.sync.create_run(vendor_id, conn_id, "full")
        assert _conn(hub, conn_id).next_sync_at is None  # scheduled pulls switched off hub-wide
        assert hub.sync.set_interval(vendor_id, conn_id, 30).next_sync_at is not None  # but a vendor may opt in
    finally:
        hub.close()


@pytest.fixture
async def client(dbos_hub: Any) -> AsyncIterator[httpx.AsyncClient]:
    from wedsync.api.app import create_app

    app = create_app(launch_workflows=False)  # DBOS is launched by the session fixture
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://hub.test") as c:
        yield c


def _run_conn(hub: Any, run_id: str) -> str:
    with hub.db.read() as s:
        run = s.get(SyncRun, run_id)
        assert run is not None
        return str(run.connection_id)


async def _wait_finished(hub: Any, vendor_id: str, run_id: str) -> dict[str, Any]:
    for _ in range(300):
        out: dict[str, Any] = hub.sync.summary(hub.sync.get_run(vendor_id, run_id))
        if out["status"] in ("succeeded", "failed"):
            return out
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


async def test_due_pull_runs_as_a_workflow_and_next_sync_is_the_schedule(dbos_hub, client, sandbox) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from wedsync.workflows.schedule import start_due_syncs

    hub = dbos_hub
    admin(sandbox, "seed", contacts=30, jobs=6)
    vendor_id, conn_id = _connect(hub, sandbox, "Scheduled Pulls Photo")
    _, key = hub.tenancy.create_key(vendor_id)
    r = await client.post("/api/integrations/crm/sync", headers=auth(key), json={
        "vendorId": vendor_id, "crmProvider": "vsco-workspace", "syncType": "full", "waitSeconds": 60})
    assert r.status_code == 200, r.text
    out = r.json()
    run = hub.sync.get_run(vendor_id, out["syncId"])
    assert out["success"] is True
    assert out["nextSync"] == (run.started_at + timedelta(minutes=60)).isoformat()

    # the vendor wants it every 5 minutes; bad values and other vendors' connections are refused
    r = await client.patch(f"/api/connections/{conn_id}", headers=auth(key), json={"sync_interval_minutes": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sync_interval_minutes"] == 5 and body["scheduled_every_minutes"] == 5
    due = run.started_at + timedelta(minutes=5)
    assert body["next_sync_at"].replace("Z", "+00:00") == due.isoformat()
    for bad in ({"sync_interval_minutes": -5}, {"sync_interval_minutes": "often"}, {"every": 5}):  # {}: empty_patch
        r = await client.patch(f"/api/connections/{conn_id}", headers=auth(key), json=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", (bad, r.text)
    other_v = hub.tenancy.create_vendor("Someone Else")
    _, other_key = hub.tenancy.create_key(other_v.id)
    r = await client.patch(f"/api/connections/{conn_id}", headers=auth(other_key), json={"sync_interval_minutes": 1})
    assert r.status_code == 404

    # the schedule's turn: one incremental run, started once however often the workers look
    admin(sandbox, "mutate", update=3, create=2, delete=0)
    at = due + timedelta(seconds=1)
    started = [r for r in await start_due_syncs(now=at) if _run_conn(hub, r) == conn_id]
    assert len(started) == 1
    assert [r for r in await start_due_syncs(now=at) if _run_conn(hub, r) == conn_id] == []
    done = await _wait_finished(hub, vendor_id, started[0])
    assert done["status"] == "succeeded" and done["mode"] == "incremental" and done["created"] >= 2
    status = (await client.get(f"/api/integrations/crm/sync/{started[0]}", headers=auth(key))).json()
    nxt = hub.sync.get_run(vendor_id, started[0]).started_at + timedelta(minutes=5)
    assert status["nextSync"] == nxt.isoformat()

    # manual only: no next pull, and the seed says so
    r = await client.patch(f"/api/connections/{conn_id}", headers=auth(key), json={"sync_interval_minutes": 0})
    assert r.json()["scheduled_every_minutes"] is None and r.json()["next_sync_at"] is None
    assert (await client.get(f"/api/integrations/crm/sync/{started[0]}", headers=auth(key))).json()["nextSync"] is None
    # (not start_due_syncs: other tests' connections share this hub, and theirs would be due by then)
    assert all(c != conn_id for _, c in hub.sync.due(at + timedelta(days=30), limit=10_000))
    await hub.connections.aclose()
