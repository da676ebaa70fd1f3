"""CRM as DBOS workflows (SQLite, in-process): the seed endpoint runs a real sync, a CSV import resumed after
a crash imports each chunk exactly once, and a vendor's edit goes back to Tave through the outbox without
coming back as a change."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from dbos import DBOS
from sqlalchemy import func, select

from tests.conftest import auth
from tests.integration.test_crm_hub import KEY, SLUG, csv_connection, hb_csv, hb_row, sandbox  # noqa: F401
from wedsync.store.tables import Client
from wedsync.store.tables_crm import CrmImportChunk, CrmOutbox


@pytest.fixture
async def client(dbos_hub: Any) -> AsyncIterator[httpx.AsyncClient]:
    from wedsync.api.app import create_app

    app = create_app(launch_workflows=False)  # DBOS is already launched by the session fixture
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://hub.test") as c:
        yield c


async def test_seed_endpoint_sync_and_writeback_without_echo(dbos_hub, client, sandbox) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    hub = dbos_hub
    httpx.post(f"{sandbox}/_sandbox/{SLUG}/seed", json={"contacts": 30, "jobs": 8}, timeout=30).raise_for_status()
    v = hub.tenancy.create_vendor("Workflow Photo")
    _, key = hub.tenancy.create_key(v.id)
    hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{sandbox}/{SLUG}/api/v2")
    r = await client.post("/api/integrations/crm/sync", headers=auth(key),
                          json={"vendorId": v.id, "crmProvider": "tave", "syncType": "full", "waitSeconds": 60})
    assert r.status_code == 200, r.text
    out = r.json()
    # 30 contacts + 8 jobs + their 16 job-contact links
    assert out["success"] is True and out["recordsProcessed"] == 38 + 16 and out["syncId"] and out["nextSync"]
    run = (await client.get(f"/api/integrations/crm/sync/{out['syncId']}", headers=auth(key))).json()
    assert run["status"] == "succeeded" and {"processed", "created", "updated", "merged", "conflicts",
                                             "errors"} <= set(run)

    # the vendor renames a client in WedSync: the outbox row is committed, then the drain writes to Tave
    person = (await client.get("/api/crm/clients?limit=1", headers=auth(key))).json()["items"][0]
    r = await client.patch(f"/api/crm/clients/{person['id']}", headers=auth(key), json={"company": "Renamed Co"})
    assert r.status_code == 200
    for _ in range(100):
        with hub.db.read() as s:
            o = s.execute(select(CrmOutbox).where(CrmOutbox.crm_client_id == person["id"])).scalar_one()
        if o.status != "pending":
            break
        await asyncio.sleep(0.1)
    assert o.status == "done" and o.idempotency_key.startswith("wedsync-crm-") and o.written_hash
    with hub.db.read() as s:
        remote_id = s.execute(select(Client.remote_id).where(Client.crm_client_id == person["id"])).scalar_one()
    truth = [json.loads(line) for line in httpx.get(f"{sandbox}/_sandbox/{SLUG}/records/address-book",
                                                    timeout=30).text.splitlines() if line.strip()]
    assert next(t for t in truth if t["id"] == remote_id)["companyName"] == "Renamed Co"
    # our own write coming back with the next sync is not a change
    r = await client.post("/api/integrations/crm/sync", headers=auth(key),
                          json={"vendorId": v.id, "crmProvider": "vsco-workspace", "syncType": "incremental",
                                "waitSeconds": 60})
    again = r.json()
    assert again["success"] and again["recordsUpdated"] == 0 and again["conflicts"] == 0
    assert (await client.get(f"/api/crm/clients/{person['id']}", headers=auth(key))).json()["company"] == "Renamed Co"
    await hub.connections.aclose()


async def test_import_resumed_after_a_crash_is_exactly_once(dbos_hub) -> None:  # type: ignore[no-untyped-def]
    from wedsync.workflows.crm import start_import

    hub = dbos_hub
    v = hub.tenancy.create_vendor("Resume Studio")
    hb = csv_connection(hub, v.id)
    rows = [hb_row(f"First{i}", f"Last{i}", f"p{i}@example.org", "", f"Wedding {i}", "09/18/2027") for i in range(23)]
    job = hub.crm.create_import(v.id, "honeybook", hb_csv(rows), chunk_size=5)
    # a worker did chunks 0 and 1, then died before recording the job's end
    plan = hub.crm.begin_import(job["id"])
    assert hub.crm.import_chunk(plan, 0)["replayed"] is False
    assert hub.crm.import_chunk(plan, 1)["replayed"] is False
    await start_import(job["id"])
    handle: Any = await DBOS.retrieve_workflow_async(job["id"])
    result = await handle.get_result()
    assert result["status"] == "succeeded" and result["processed_rows"] == 23 and result["created"] == 46
    assert hub.crm.import_chunk(plan, 0)["replayed"] is True
    with hub.db.read() as s:
        assert s.execute(select(func.count()).select_from(Client).where(Client.connection_id == hb)).scalar_one() == 23
        assert s.execute(select(func.count()).select_from(CrmImportChunk).where(
            CrmImportChunk.job_id == job["id"])).scalar_one() == 5


async def test_a_busy_store_is_waited_out_and_a_failed_import_keeps_its_row_count(dbos_hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """'database is locked' (another writer past SQLite's 30 s timeout) failed an import for good, and the failed
    job then said total_rows = the rows it had done, hiding the rest (found by a probe)."""
    from sqlalchemy.exc import OperationalError

    from wedsync.workflows import crm as crm_workflows

    hub = dbos_hub
    v = hub.tenancy.create_vendor("Busy Studio")
    csv_connection(hub, v.id)
    rows = [hb_row(f"First{i}", f"Last{i}", f"b{i}@example.org") for i in range(12)]
    for row in rows[::3]:  # a multi-line address is one row, not two: the count is of rows from the start (it
        row[5] = "1 Main St\nSuite 2"  # was of lines, 16 here, until the end, and a failed job kept that)
    job = hub.crm.create_import(v.id, "honeybook", hb_csv(rows), chunk_size=5)
    assert job["total_rows"] == 12
    plan = hub.crm.begin_import(job["id"])
    real, calls = hub.crm.import_chunk, []

    def busy_twice(p: Any, chunk: int) -> Any:
        calls.append(chunk)
        if len(calls) <= 2:
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
        return real(p, chunk)

    monkeypatch.setattr(hub.crm, "import_chunk", busy_twice)
    no_wait = asyncio.sleep
    monkeypatch.setattr(crm_workflows.asyncio, "sleep", lambda _s: no_wait(0))
    step = crm_workflows.import_chunk_step.__wrapped__  # the step's body, outside a workflow
    assert (await step(plan, 0))["rows"] == 5 and calls == [0, 0, 0]

    def always_busy(p: Any, chunk: int) -> Any:
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    monkeypatch.setattr(hub.crm, "import_chunk", always_busy)
    with pytest.raises(OperationalError):
        await step(plan, 1)
    out = hub.crm.finish_import(job["id"], "internal error: OperationalError: database is locked")
    assert out["status"] == "failed" and out["total_rows"] == 12 and out["processed_rows"] == 5


async def test_garbage_from_the_provider_is_a_failed_run_and_a_connection_status(  # type: ignore[no-untyped-def]
        dbos_hub, client, sandbox) -> None:  # noqa: F811
    hub = dbos_hub
    httpx.post(f"{sandbox}/_sandbox/{SLUG}/seed", json={"contacts": 20, "jobs": 2}, timeout=30).raise_for_status()
    httpx.put(f"{sandbox}/_sandbox/{SLUG}/faults", json={"malformed_rate": 1.0}, timeout=30).raise_for_status()
    v = hub.tenancy.create_vendor("Garbage Photo")
    _, key = hub.tenancy.create_key(v.id)
    conn = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{sandbox}/{SLUG}/api/v2")
    r = await client.post("/api/integrations/crm/sync", headers=auth(key),
                          json={"vendorId": v.id, "crmProvider": "tave", "syncType": "full", "waitSeconds": 60})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["success"] is False and out["errors"] == 1 and out["status"] == "failed"
    assert "SchemaMismatch" in out["error_detail"] or "Retriable" in out["error_detail"] or out["error_detail"]
    status = (await client.get(f"/api/connections/{conn.id}", headers=auth(key))).json()
    assert status["status"] == "error" and status["status_detail"]
    await hub.connections.aclose()


async def test_an_import_job_that_lost_its_workflow_is_started_by_the_sweep(dbos_hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A job recorded with its file but never enqueued (the hub was killed between the two) said ``queued``
    forever, nothing imported and nothing said why (found by a crash probe). The workers' sweep starts it once
    it is older than a fresh enqueue could be; a job whose workflow ended without recording its outcome is
    failed with that reason."""
    from datetime import timedelta
    from types import SimpleNamespace

    from wedsync.store.tables import utcnow
    from wedsync.store.tables_crm import CrmImportJob
    from wedsync.workflows import crm as crm_workflows

    hub = dbos_hub
    v = hub.tenancy.create_vendor("Orphan Import Studio")
    csv_connection(hub, v.id)
    rows = [hb_row(f"Orph{i}", f"Ane{i}", f"o{i}@example.org", "", f"Wedding {i}", "09/18/2027") for i in range(7)]
    job = hub.crm.create_import(v.id, "honeybook", hb_csv(rows), chunk_size=5)  # no workflow behind it
    assert job["id"] not in (await crm_workflows.sweep_imports())["started"]  # fresh: may be about to be enqueued
    with hub.db.session() as s:
        s.get(CrmImportJob, job["id"]).created_at = utcnow() - timedelta(minutes=5)
    assert job["id"] in (await crm_workflows.sweep_imports())["started"]
    result = await (await DBOS.retrieve_workflow_async(job["id"])).get_result()
    assert result["status"] == "succeeded" and result["processed_rows"] == 7
    assert job["id"] not in str(await crm_workflows.sweep_imports())  # done: nothing more to do

    stuck = hub.crm.create_import(v.id, "honeybook", hb_csv(rows[:2]), chunk_size=5)
    with hub.db.session() as s:
        row = s.get(CrmImportJob, stuck["id"])
        row.status, row.created_at = "running", utcnow() - timedelta(minutes=5)
    real_status = DBOS.get_workflow_status_async

    async def ended(workflow_id: str) -> Any:
        if workflow_id == stuck["id"]:
            return SimpleNamespace(status="CANCELLED")
        return await real_status(workflow_id)

    monkeypatch.setattr(DBOS, "get_workflow_status_async", ended)
    assert (await crm_workflows.sweep_imports())["failed"] == [stuck["id"]]
    out = hub.crm.import_status(v.id, stuck["id"])
    assert out["status"] == "failed" and "CANCELLED" in (out["error_detail"] or "")
