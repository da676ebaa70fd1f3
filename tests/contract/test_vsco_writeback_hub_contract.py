"""The hub's write-back of weddings (jobs), events, orders, payments and marketplace bookings
(``services/crm_writeback.py``, sent by the outbox drain) against VSCO Workspace's spec: every request the hub
sends to the sandbox over loopback, and every answer, validates against ``workspace-openapi.json``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from tests.contract.test_vsco_writeback_contract import Recorder, check_exchange
from wedsync.connectors.errors import ConnectorError
from wedsync.domain.crm import ClientRecord
from wedsync.sandbox.vsco_workspace import DEFAULT_API_KEY, PREFIX
from wedsync.services.sync_engine import DirectSteps, drive_run
from wedsync.store.tables import Client, Connection, Wedding
from wedsync.store.tables_crm import CrmEvent, CrmInvoice, CrmOutbox


@pytest.fixture
def served() -> Iterator[tuple[str, Any, Recorder]]:
    from wedsync.sandbox.app import create_sandbox_app
    from wedsync.sandbox.server import start_sandbox_in_thread

    app = create_sandbox_app(seed=23, vsco_contacts=20, vsco_jobs=6)
    rec = Recorder(app)
    url, stop = start_sandbox_in_thread(port=0, app=rec)  # type: ignore[arg-type]
    try:
        yield url, app.state.emulators["vsco-workspace"], rec
    finally:
        stop()


async def test_every_hub_writeback_request_follows_the_spec(hub: Any, served: tuple[str, Any, Recorder]) -> None:
    url, emulator, rec = served
    v = hub.tenancy.create_vendor("Contract Photo", "Europe/Lisbon")
    tave = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": DEFAULT_API_KEY},
                                  base_url=f"{url}{PREFIX}")
    with hub.db.session() as s:
        s.get(Connection, tave.id).settings = {"streams": ["contacts", "jobs", "events", "orders"]}
    run = hub.sync.create_run(v.id, tave.id, "full")
    assert (await drive_run(run.id, DirectSteps(hub.sync)))["status"] == "succeeded"
    hb = hub.crm.connection_for(v.id, "honeybook", create=True).id
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, hb, "contacts", [ClientRecord(
            "hb-1", first_name="Inês", last_name="Araújo", email="ines.araujo@example.pt", phone="+351912345678",
            company="Araújo Lda", address={"streetAddress": "Rua do Ouro 1", "city": "Lisboa", "country": "PT"})])
    with hub.db.read() as s:
        wid, job = s.execute(select(Wedding.id, Wedding.remote_id).where(
            Wedding.connection_id == tave.id).order_by(Wedding.id).limit(1)).one()
    wb = hub.crm_writeback
    wb.update_wedding(v.id, wid, {"name": "Inês & Tomás", "event_date": "2031-07-05", "stage": "booked",
                                  "closed": False, "guest_count": 90})
    wb.create_event(v.id, wid, {"name": "Ceremony", "starts_at": datetime(2031, 7, 5, 15, tzinfo=UTC),
                                "ends_at": datetime(2031, 7, 5, 23, tzinfo=UTC), "location": "Sé de Lisboa"})
    await wb.create_invoice(v.id, wid, {"number": "WS-77", "currency": "USD", "due_date": "2031-03-01",
                                        "line_items": [{"name": "Full day", "unit_minor": 420_000, "quantity": 1}]})
    await _drain(hub)
    with hub.db.read() as s:
        event_id = s.execute(select(CrmEvent.id).where(CrmEvent.connection_id == tave.id,
                                                       CrmEvent.wedding_remote_id == job,
                                                       CrmEvent.name == "Ceremony")).scalar_one()
        order = s.execute(select(CrmInvoice).where(CrmInvoice.connection_id == tave.id,
                                                   CrmInvoice.wedding_remote_id == job,
                                                   CrmInvoice.total_minor == 420_000)).scalar_one()
    wb.update_event(v.id, event_id, {"name": "Ceremony & dinner", "starts_at": "2031-07-05T16:00:00+01:00",
                                     "ends_at": "2031-07-06T01:00:00+01:00", "location": "Palácio Chiado"})
    await wb.create_payment(v.id, wid, {"amount_minor": 120_000, "currency": "USD", "received": "2031-01-10",
                                        "memo": "Retainer", "invoice_id": order.id})
    with hub.db.read() as s:
        ines_id = s.execute(select(Client.crm_client_id).where(Client.connection_id == hb)).scalar_one()
        known = s.execute(select(Client.crm_client_id).where(Client.connection_id == tave.id)
                          .order_by(Client.id).limit(1)).scalar_one()
    wb.create_booking(v.id, tave.id, [ines_id, known], {"name": "Araújo wedding", "event_date": "2031-10-04",
                                                        "guest_count": 60, "job_type": "Wedding"})
    await _drain(hub)
    with hub.db.read() as s:
        rows = list(s.execute(select(CrmOutbox).where(CrmOutbox.vendor_id == v.id)).scalars())
    assert {o.op for o in rows} == {"update_job", "create_event", "create_order", "update_event", "create_payment",
                                    "create_contact", "create_job"}
    assert all(o.status == "done" for o in rows), [(o.op, o.status, o.last_error) for o in rows]
    payments = [p for p in emulator.payments.records.values() if (p.get("transactionId") or "").startswith(
        "wedsync-crm-")]
    assert len(payments) == 1
    assert await hub.crm_writeback.refetch_payment(tave.id, payments[0]["id"]) == "unchanged"

    writes = [e for e in rec.exchanges if e["method"] in ("POST", "PUT")]
    templates = {check_exchange(entry) for entry in rec.exchanges}
    assert {"/job/{id}", "/event", "/event/{id}", "/job/{jobId}/order", "/payment", "/payment/{id}/apply",
            "/address-book", "/job", "/job-contact", "/payment/{id}", "/order/{id}"} <= templates, templates
    assert all(200 <= e["status"] < 300 for e in writes), [(e["method"], e["path"], e["status"]) for e in writes]


async def _drain(hub: Any) -> None:
    for _ in range(3):
        for outbox_id in hub.crm.pending_outbox(100):
            with contextlib.suppress(ConnectorError):
                await hub.crm.send_outbox(outbox_id)
