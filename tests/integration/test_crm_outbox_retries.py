"""The CRM write-back outbox on its own: a retriable failure puts a row back with a backoff and a worker's sweep
sends it without another edit; a newer write for the same record never overtakes an older one; a row whose
send fails with something that is not the provider's doing fails alone, with the reason, and the rows after it
still go (against the VSCO Workspace sandbox over loopback)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import auth
from tests.integration.test_crm_hub import KEY, SLUG
from tests.integration.test_crm_writeback import drain, hub_api, lossy_sandbox, outbox  # noqa: F401 - fixtures
from wedsync.connectors.errors import ConnectorError
from wedsync.sandbox.faults import FaultConfig
from wedsync.sandbox.vsco_workspace import PREFIX as VSCO_PREFIX
from wedsync.services import crm_writeback as crm_writeback_module
from wedsync.services.crm_writeback import retry_delay
from wedsync.services.sync_engine import DirectSteps, drive_run
from wedsync.store.tables import Connection, Wedding, utcnow
from wedsync.store.tables_crm import CrmOutbox


async def _synced(hub: Any, url: str, name: str) -> tuple[str, str, dict[str, str]]:
    v = hub.tenancy.create_vendor(name)
    _, key = hub.tenancy.create_key(v.id)
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{url}{VSCO_PREFIX}")
    with hub.db.session() as s:
        s.get(Connection, tave.id).settings = {"streams": ["contacts", "jobs", "job_contacts"]}
    run = hub.sync.create_run(v.id, tave.id, "full")
    assert (await drive_run(run.id, DirectSteps(hub.sync)))["status"] == "succeeded"
    return v.id, tave.id, auth(key)


def test_backoff_doubles_and_is_capped() -> None:
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert retry_delay(40) == timedelta(minutes=30)


async def test_a_retriable_failure_is_sent_again_by_itself_and_in_order(hub_api, lossy_sandbox  # noqa: F811
                                                                        ) -> None:
    hub, api = hub_api
    url, emulator, _ = lossy_sandbox
    monkey_first = crm_writeback_module.RETRY_FIRST  # hub_api shortened it; this test wants a visible backoff
    crm_writeback_module.RETRY_FIRST = timedelta(seconds=0.5)
    try:
        _v, tave, h = await _synced(hub, url, "Backoff Photo")
        with hub.db.read() as s:
            wid, job = s.execute(select(Wedding.id, Wedding.remote_id).where(
                Wedding.connection_id == tave).order_by(Wedding.id).limit(1)).one()
        emulator.faults.configure(FaultConfig(error_rate=1.0, error_statuses=[503]))  # VSCO is down
        first = (await api.patch(f"/api/crm/weddings/{wid}", headers=h, json={"guest_count": 77})).json()
        second = (await api.patch(f"/api/crm/weddings/{wid}", headers=h, json={"guest_count": 80})).json()
        a, b = first["writebacks"][-1]["id"], second["writebacks"][-1]["id"]
        with pytest.raises(ConnectorError):
            await hub.crm.send_outbox(a)
        row = outbox(hub, a)
        assert row.status == "pending" and row.attempts == 1 and row.next_attempt_at > utcnow(), row.last_error
        assert hub.crm.pending_outbox(10) == []  # a waits out its backoff; b waits for a
        assert hub.crm_writeback.claim(b) == (False, False)
        emulator.faults.configure(FaultConfig())  # VSCO is back
        await asyncio.sleep(0.6)
        assert hub.crm.pending_outbox(10) == [a]  # due again; b still behind it
        await drain(hub)
        assert (outbox(hub, a).status, outbox(hub, b).status) == ("done", "done")
        assert emulator.jobs.records[job]["guestCount"] == 80  # the newer write landed last
    finally:
        crm_writeback_module.RETRY_FIRST = monkey_first


async def test_one_failing_row_fails_alone_in_the_drain_workflow(dbos_hub: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``drain_crm_outbox`` workflow (DBOS): a row whose send raises something that is not the provider's
    doing (a value its format cannot carry) fails for good with the reason; the next row is still sent (before,
    the error ended the drain, and the row, pending again, ended every later drain too)."""
    from dbos import DBOS

    from wedsync.sandbox.server import start_sandbox_in_thread
    from wedsync.workflows.crm import start_outbox_drain

    hub = dbos_hub
    url, stop = start_sandbox_in_thread(port=0, seed=41, contacts=6, jobs=3)
    try:
        emulator_jobs = f"{url}{VSCO_PREFIX}/job"
        v, tave, _h = await _synced(hub, url, "Poison Photo")
        with hub.db.read() as s:
            (w1, _j1), (w2, j2) = s.execute(select(Wedding.id, Wedding.remote_id).where(
                Wedding.connection_id == tave).order_by(Wedding.id).limit(2)).all()
        bad = hub.crm_writeback.update_wedding(v, w1, {"guest_count": 12})["writebacks"][-1]
        good = hub.crm_writeback.update_wedding(v, w2, {"guest_count": 77})["writebacks"][-1]
        real = crm_writeback_module.CrmWriteback._send_update_job

        async def overflow_for_the_first(self: Any, o: Any, *args: Any) -> None:
            if o.id == bad["id"]:
                raise OverflowError("date value out of range")
            await real(self, o, *args)

        monkeypatch.setattr(crm_writeback_module.CrmWriteback, "_send_update_job", overflow_for_the_first)
        wf = await start_outbox_drain()
        counts = await (await DBOS.retrieve_workflow_async(wf)).get_result()
        assert counts == {"done": 1, "failed": 1, "pending": 0}, counts
        row = outbox(hub, bad["id"])
        assert row.status == "failed" and row.last_error.startswith("internal error: OverflowError"), row.last_error
        assert outbox(hub, good["id"]).status == "done"
        import httpx

        truth = httpx.get(f"{emulator_jobs}/{j2}", headers={"X-API-KEY": KEY}, timeout=10).json()
        assert truth["guestCount"] == 77
    finally:
        await hub.connections.aclose()
        stop()


async def test_a_dead_drains_row_and_a_due_retry_start_a_sweep(hub_api, lossy_sandbox,  # noqa: F811
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers' sweep starts a drain (one per 10 s slot) once a row may go: its backoff is over, or the drain
    that claimed it died and its lease ran out; nothing waiting means no drain."""
    from wedsync.bootstrap import set_hub
    from wedsync.workflows import crm as crm_workflows

    hub, api = hub_api
    url, _emulator, _ = lossy_sandbox
    _v, tave, h = await _synced(hub, url, "Sweep Photo")
    started: list[str] = []

    async def record(workflow_id: str | None = None) -> str:
        started.append(str(workflow_id))
        return str(workflow_id)

    monkeypatch.setattr(crm_workflows, "start_outbox_drain", record)
    set_hub(hub)
    assert await crm_workflows.sweep_outbox(now=1000.0) is None and started == []
    with hub.db.read() as s:
        wid = s.execute(select(Wedding.id).where(Wedding.connection_id == tave).limit(1)).scalar_one()
    row = (await api.patch(f"/api/crm/weddings/{wid}", headers=h, json={"guest_count": 5})).json()["writebacks"][-1]
    assert hub.crm_writeback.claim(row["id"]) == (True, False)  # a drain takes it, then dies
    assert await crm_workflows.sweep_outbox(now=1000.0) is None  # its lease is live
    with hub.db.engine.begin() as c:
        c.execute(update(CrmOutbox).where(CrmOutbox.id == row["id"]).values(
            sent_at=utcnow() - timedelta(minutes=3)))  # the lease ran out
    assert await crm_workflows.sweep_outbox(now=1000.0) == "crm-outbox-sweep-100"
    assert started == ["crm-outbox-sweep-100"]


class _GarbleOnce:
    """ASGI middleware in front of the sandbox: the first request matching (method, path regex) is executed,
    then answered 200 with a body cut short (what a proxy or a flaky link does to an answer)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.rules: list[tuple[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import re

        hit = next((r for r in self.rules if scope["type"] == "http" and scope["method"] == r[0]
                    and re.fullmatch(r[1], scope["path"])), None)
        if hit is None:
            await self.app(scope, receive, send)
            return
        self.rules.remove(hit)

        async def swallow(_message: Any) -> None:
            return None

        await self.app(scope, receive, swallow)  # executed at the provider
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"id": "01', "more_body": False})


async def test_an_unreadable_2xx_to_a_write_is_an_unknown_outcome_not_a_refusal() -> None:
    """A PUT or a payment application that VSCO carried out but whose 200 could not be read: the connector
    reads the record back (the PUT's values, the payment's allocation) instead of failing the write for good
    (the vendor saw "failed" for a payment that existed, and could enter it twice)."""
    import httpx

    from wedsync.connectors.crm.vsco_workspace import VscoWorkspaceConnector
    from wedsync.domain.crm import WeddingRecord
    from wedsync.sandbox.app import create_sandbox_app
    from wedsync.sandbox.vsco_workspace import DEFAULT_API_KEY

    app = create_sandbox_app(seed=7, vsco_contacts=10, vsco_jobs=4)
    garble = _GarbleOnce(app)
    vsco = app.state.emulators[SLUG]
    c = VscoWorkspaceConnector(api_key=DEFAULT_API_KEY, base_url=f"http://sandbox.test{VSCO_PREFIX}",
                               transport=httpx.ASGITransport(app=garble), account_key="garbled-answers")
    try:
        job = next(iter(vsco.jobs.records))
        garble.rules.append(("PUT", rf"{VSCO_PREFIX}/job/{job}"))
        result = await c.update_job(job, WeddingRecord(job, guest_count=181), fields=["guest_count"])
        assert result.item["guestCount"] == 181 == vsco.jobs.records[job]["guestCount"]
        assert garble.rules == []  # the garbled answer was served

        order = (await c.create_order(job, _invoice(), reference="wedsync-crm-garbled-order-1")).remote_id
        garble.rules.append(("POST", rf"{VSCO_PREFIX}/payment/[^/]+/apply"))
        paid = await c.create_payment(job, amount_minor=5_000, currency="USD", reference="wedsync-crm-garbled-pay-1",
                                      order_id=order)
        assert order in {a["orderId"] for a in paid.item["paymentAllocations"]}
        mine = [p for p in vsco.payments.records.values() if p.get("transactionId") == "wedsync-crm-garbled-pay-1"]
        assert len(mine) == 1 and len(mine[0]["paymentAllocations"]) == 1
    finally:
        await c.aclose()


def _invoice() -> Any:
    from wedsync.domain.crm import InvoiceRecord

    return InvoiceRecord("x", number="WS-GARBLE-1", currency="USD", total_minor=20_000)
