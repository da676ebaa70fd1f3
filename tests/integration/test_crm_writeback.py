"""Write-back of weddings (VSCO jobs), events, invoices (orders) and payments through the CRM outbox, against
the VSCO Workspace sandbox over loopback, on SQLite and PostgreSQL: each op lands in the sandbox exactly once
even when the first attempt's answer is lost after the sandbox executed it, the provider's copy is stored at
once (its REST hook and the next sync are echoes, not changes), bad input is a 4xx with a code, and an undone
merge gives the detached client its wedding-date identity keys back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tests.conftest import auth
from tests.integration.test_crm_hub import KEY, SLUG, csv_connection, person_of
from wedsync.connectors.errors import ConnectorError
from wedsync.domain.crm import ClientRecord, EventRecord, InvoiceRecord, WeddingRecord
from wedsync.sandbox.vsco_workspace import PREFIX as VSCO_PREFIX
from wedsync.services import crm_writeback as crm_writeback_module
from wedsync.services.sync_engine import DirectSteps, drive_run
from wedsync.services.webhook_dispatch import handle_vsco_workspace
from wedsync.services.webhook_inbox import InboxRow
from wedsync.store.tables import Client, Connection, Wedding, utcnow
from wedsync.store.tables_crm import CrmClient, CrmEvent, CrmIdentityKey, CrmInvoice, CrmOutbox

T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)


def _keys(hub: Any, client_id: str) -> set[str]:
    with hub.db.read() as s:
        return set(s.execute(select(CrmIdentityKey.key).where(CrmIdentityKey.crm_client_id == client_id)).scalars())


async def test_undo_restores_the_detached_clients_wedding_date_keys(any_hub) -> None:  # type: ignore[no-untyped-def]
    hub = any_hub
    v = hub.tenancy.create_vendor("Undo Dates Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "contacts", [ClientRecord("v1", first_name="Ana", last_name="Ruiz",
                                                                 email="ana@x.com", remote_modified_at=T0)])
        hub.sync.upsert(c, v.id, tave, "jobs", [WeddingRecord("j1", name="Ruiz wedding", event_date=date(2031, 6, 14),
                                                              client_remote_ids=["v1"], remote_modified_at=T0)])
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, hb, "contacts", [ClientRecord("h1", first_name="Ana", last_name="Ruiz",
                                                               email="ana@x.com", remote_modified_at=T0)])
        # the HoneyBook record has a wedding of its own (another date: a second booking)
        hub.sync.upsert(c, v.id, hb, "jobs", [WeddingRecord("hj1", name="Ruiz vow renewal",
                                                            event_date=date(2032, 9, 20), client_remote_ids=["h1"])])
    pid = person_of(hub, tave, "v1")
    assert person_of(hub, hb, "h1") == pid
    assert {k[:12] for k in _keys(hub, pid) if k.startswith("d:")} == {"d:2031-06-14", "d:2032-09-20"}

    merge = hub.crm.list_merges(v.id)[0]
    out = hub.crm.undo_merge(v.id, merge["id"])
    restored = out["restored"]["id"]
    assert person_of(hub, hb, "h1") == restored != pid
    restored_dates = {k[:12] for k in _keys(hub, restored) if k.startswith("d:")}
    assert restored_dates == {"d:2032-09-20"}, _keys(hub, restored)  # its own wedding's date, not the other's
    assert out["restored"]["wedding_dates"] == ["2032-09-20"]
    with hub.db.read() as s:
        assert s.get(CrmClient, restored).wedding_dates == ["2032-09-20"]
    # the survivor keeps the date of its own wedding
    assert "d:2031-06-14" in {k[:12] for k in _keys(hub, pid)}
    # and the detached client is found again by its wedding date: a nameless-contact record of the same couple
    # at a third source (no e-mail, no phone) joins the restored client through name + wedding date
    other = csv_connection(hub, v.id, "17hats")
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, other, "contacts", [ClientRecord("s1", first_name="Ana", last_name="Ruiz")],
                        evidence={"s1": [date(2032, 9, 20)]})
    assert person_of(hub, other, "s1") == restored


# --- write-back against the VSCO sandbox over loopback ---------------------------------------------------------

class AnswerLoss:
    """Which requests lose their answer: the sandbox executes them, then holds the answer past the hub's HTTP
    timeout (a read timeout after execution: the outcome is unknown to the hub)."""

    def __init__(self) -> None:
        self.rules: list[list[Any]] = []  # [method, path regex, count left]
        self.lost: list[tuple[str, str]] = []
        self.hold = 4.0

    def arm(self, method: str, pattern: str, count: int = 1) -> None:
        self.rules.append([method, re.compile(pattern), count])

    def take(self, method: str, path: str) -> bool:
        for rule in self.rules:
            if rule[0] == method and rule[2] > 0 and rule[1].fullmatch(path):
                rule[2] -= 1
                self.lost.append((method, path))
                return True
        return False


class LoseAnswers:
    """ASGI middleware in front of the sandbox: runs the request for real, then answers too late."""

    def __init__(self, app: Any, control: AnswerLoss) -> None:
        self.app, self.control = app, control

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.control.take(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        messages: list[Any] = []

        async def capture(message: Any) -> None:
            messages.append(message)

        await self.app(scope, receive, capture)  # executed: its side effects are there
        await asyncio.sleep(self.control.hold)
        with contextlib.suppress(Exception):  # the hub gave up long ago
            for message in messages:
                await send(message)


@pytest.fixture
def lossy_sandbox() -> Iterator[tuple[str, Any, AnswerLoss]]:
    from wedsync.sandbox.app import create_sandbox_app
    from wedsync.sandbox.server import start_sandbox_in_thread

    app = create_sandbox_app(seed=11, vsco_contacts=30, vsco_jobs=8)
    control = AnswerLoss()
    app.add_middleware(LoseAnswers, control=control)
    url, stop = start_sandbox_in_thread(port=0, app=app)
    try:
        yield url, app.state.emulators[SLUG], control
    finally:
        stop()


@pytest.fixture
async def hub_api(any_hub: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    from wedsync.api.app import create_app
    from wedsync.bootstrap import set_hub
    from wedsync.workflows import crm as crm_workflows

    async def no_drain() -> None:  # these tests drain themselves (even when another test launched DBOS)
        return None

    monkeypatch.setattr(crm_workflows, "poke_outbox_drain", no_drain)
    monkeypatch.setattr(crm_writeback_module, "RETRY_FIRST", timedelta(milliseconds=20))  # backoffs in tests
    set_hub(any_hub)
    app = create_app(launch_workflows=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://hub.test") as client:
        yield any_hub, client
    await any_hub.connections.aclose()
    set_hub(None)


async def drain(hub: Any, rounds: int = 5) -> None:
    """What drain_crm_outbox and the workers' sweep do (without DBOS): send every row that may go now; a
    retriable error puts it back with a backoff (shortened by ``hub_api``), which this waits out."""
    for _ in range(rounds):
        for _wait in range(100):
            ids = hub.crm.pending_outbox(100)
            if ids:
                break
            with hub.db.read() as s:
                if not s.execute(select(CrmOutbox.id).where(CrmOutbox.status == "pending").limit(1)).first():
                    return
            await asyncio.sleep(0.02)
        for outbox_id in ids:
            with contextlib.suppress(ConnectorError):
                await hub.crm.send_outbox(outbox_id)


def outbox(hub: Any, outbox_id: str) -> CrmOutbox:
    with hub.db.read() as s:
        row = s.get(CrmOutbox, outbox_id)
        assert row is not None
        return row


def ours(records: dict[str, Any], reference: str) -> list[dict[str, Any]]:
    return [r for r in records.values() if any(m.get("id") == reference for m in r.get("externalMappings") or ())]


async def hook(hub: Any, conn_id: str, event: str, record_id: str) -> str:
    """A REST hook as the drain hands it over (the sandbox sends only targetId; the handler re-fetches)."""
    row = InboxRow(id=0, vendor_id="", connection_id=conn_id, provider=SLUG, event_id=f"{event}:{record_id}",
                   event_type=event, record_id=record_id, body=json.dumps({"targetId": record_id}).encode(),
                   received_at=utcnow(), attempts=0)
    return await handle_vsco_workspace(hub, row)


async def test_weddings_events_orders_payments_and_bookings_land_once(hub_api, lossy_sandbox) -> None:  # type: ignore[no-untyped-def]
    hub, api = hub_api
    url, emulator, loss = lossy_sandbox
    hub.connections.http_timeout = 2.0  # the lost answers are held 4 s: a read timeout after execution
    v = hub.tenancy.create_vendor("Write-back Photo", "America/Los_Angeles")
    _, key = hub.tenancy.create_key(v.id)
    h = auth(key)
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{url}{VSCO_PREFIX}")
    with hub.db.session() as s:
        s.get(Connection, tave.id).settings = {"streams": ["contacts", "jobs", "job_contacts", "events", "orders"]}

    async def full_sync() -> dict[str, Any]:
        run = hub.sync.create_run(v.id, tave.id, "full")
        return await drive_run(run.id, DirectSteps(hub.sync))  # type: ignore[no-any-return]

    first = await full_sync()
    assert first["status"] == "succeeded" and first["created"] > 38, first

    # -- weddings: list (cursor pagination) and one with its events and invoices
    r = await api.get("/api/crm/weddings?limit=3", headers=h)
    assert r.status_code == 200 and len(r.json()["items"]) == 3 and r.json()["next_cursor"]
    page2 = (await api.get(f"/api/crm/weddings?limit=100&after={r.json()['next_cursor']}", headers=h)).json()
    assert page2["next_cursor"] is None and len(page2["items"]) == 5
    booked = next(j for j in emulator.jobs.records.values() if emulator._index(emulator.orders, "jobId").get(j["id"]))
    with hub.db.read() as s:
        wid = s.execute(select(Wedding.id).where(Wedding.connection_id == tave.id,
                                                 Wedding.remote_id == booked["id"])).scalar_one()
    w = (await api.get(f"/api/crm/weddings/{wid}", headers=h)).json()
    assert w["remote_id"] == booked["id"] and w["invoices"] and w["events"], w

    # -- PATCH a wedding -> update_job (the PUT's answer is lost once: the client sends the PUT again)
    loss.arm("PUT", rf"{VSCO_PREFIX}/job/{booked['id']}")
    r = await api.patch(f"/api/crm/weddings/{wid}", headers=h, json={
        "name": "Ruiz & Okafor", "event_date": "2031-06-14", "stage": "fulfillment", "expected_version": w["version"]})
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["name"] == "Ruiz & Okafor" and patched["version"] == w["version"] + 1
    row = patched["writebacks"][-1]
    assert row["op"] == "update_job" and row["status"] == "pending"
    assert row["idempotency_key"].startswith("wedsync-crm-")
    await drain(hub)
    assert outbox(hub, row["id"]).status == "done" and ("PUT", f"{VSCO_PREFIX}/job/{booked['id']}") in loss.lost
    truth = emulator.jobs.records[booked["id"]]
    assert (truth["name"], truth["eventDate"][:10], truth["stage"]) == ("Ruiz & Okafor", "2031-06-14", "fulfillment")
    assert await hook(hub, tave.id, "job.created", booked["id"]) == "unchanged"  # the provider's copy is stored

    # -- create an event on the job (POST /event answered too late: found by our reference, not re-sent)
    loss.arm("POST", rf"{VSCO_PREFIX}/event")
    r = await api.post(f"/api/crm/weddings/{wid}/events", headers=h, json={
        "name": "Rehearsal dinner", "starts_at": "2031-06-13T18:30:00-07:00", "ends_at": "2031-06-13T21:00:00-07:00",
        "location": "Casa Ruiz"})
    assert r.status_code == 202, r.text
    ev_row = r.json()
    await drain(hub)
    done = outbox(hub, ev_row["id"])
    assert done.status == "done" and done.payload["result"]["created"] is False, done.payload
    made = ours(emulator.events.records, ev_row["idempotency_key"])
    assert len(made) == 1 and sum(1 for x in emulator.write_log if x[:2] == ("POST", "/event")) == 1
    assert (made[0]["startDate"], made[0]["startTime"], made[0]["timezoneName"]) == (
        "2031-06-13", "18:30:00", "America/Los_Angeles")
    event = next(e for e in (await api.get(f"/api/crm/weddings/{wid}", headers=h)).json()["events"]
                 if e["remote_id"] == made[0]["id"])
    assert event["starts_at"] == "2031-06-14T01:30:00+00:00" and event["name"] == "Rehearsal dinner"

    # -- PATCH the event -> update_event
    loss.arm("PUT", rf"{VSCO_PREFIX}/event/{made[0]['id']}")
    r = await api.patch(f"/api/crm/events/{event['id']}", headers=h, json={"location": "Villa Okafor",
                                                                          "expected_version": event["version"]})
    assert r.status_code == 200, r.text
    await drain(hub)
    assert r.json()["writebacks"][-1]["op"] == "update_event"
    assert outbox(hub, r.json()["writebacks"][-1]["id"]).status == "done"
    assert emulator.events.records[made[0]["id"]]["location"]["address"]["streetAddress"] == "Villa Okafor"
    assert len(ours(emulator.events.records, ev_row["idempotency_key"])) == 1
    # -- clearing the end: written as null (it was left out, and the provider's copy brought the old end back)
    r = await api.patch(f"/api/crm/events/{event['id']}", headers=h, json={"ends_at": None})
    assert r.status_code == 200 and r.json()["ends_at"] is None, r.text
    await drain(hub)
    assert outbox(hub, r.json()["writebacks"][-1]["id"]).status == "done"
    truth = emulator.events.records[made[0]["id"]]
    assert (truth["endDate"], truth["endTime"], truth["endUtc"]) == (None, None, None)
    event = next(e for e in (await api.get(f"/api/crm/weddings/{wid}", headers=h)).json()["events"]
                 if e["remote_id"] == made[0]["id"])
    assert event["ends_at"] is None and event["starts_at"] == "2031-06-14T01:30:00+00:00"

    # -- an invoice (order) and a payment against it, each answer lost once
    loss.arm("POST", rf"{VSCO_PREFIX}/job/{booked['id']}/order")
    r = await api.post(f"/api/crm/weddings/{wid}/invoices", headers=h, json={
        "number": "WS-2031-7", "currency": "usd", "due_date": "2031-05-01",
        "line_items": [{"name": "Second shooter", "unit_minor": 45_000}, {"name": "Album", "unit_minor": 30_000,
                                                                           "quantity": 2}]})
    assert r.status_code == 202, r.text
    inv_row = r.json()
    await drain(hub)
    assert outbox(hub, inv_row["id"]).status == "done"
    orders = [o for o in emulator.orders.records.values() if o.get("name") == "WS-2031-7"]
    assert len(orders) == 1 and orders[0]["total"] == 105_000
    assert sum(1 for x in emulator.write_log if x[:2] == ("POST", "/order")) == 1
    assert await hook(hub, tave.id, "order.booked", orders[0]["id"]) == "unchanged"
    invoices = (await api.get(f"/api/crm/weddings/{wid}", headers=h)).json()["invoices"]
    mine = next(i for i in invoices if i["remote_id"] == orders[0]["id"])
    # (the number we give is the order's name; VSCO numbers its orders itself: that number is what is stored)
    assert (mine["total_minor"], mine["currency"], mine["number"]) == (105_000, "USD", orders[0]["customNumber"])
    assert mine["due_date"] == "2031-05-01"

    loss.arm("POST", rf"{VSCO_PREFIX}/payment")
    r = await api.post(f"/api/crm/weddings/{wid}/payments", headers=h, json={
        "amount_minor": 25_000, "currency": "USD", "received": "2031-01-15", "memo": "deposit",
        "invoice_id": mine["id"]})
    assert r.status_code == 202, r.text
    pay_row = r.json()
    await drain(hub)
    assert outbox(hub, pay_row["id"]).status == "done"
    pays = [p for p in emulator.payments.records.values() if p.get("transactionId") == pay_row["idempotency_key"]]
    assert len(pays) == 1 and pays[0]["amount"] == 25_000
    assert sum(1 for x in emulator.write_log if x[:2] == ("POST", "/payment")) == 1
    stored = next(i for i in (await api.get(f"/api/crm/weddings/{wid}", headers=h)).json()["invoices"]
                  if i["id"] == mine["id"])
    assert stored["paid_minor"] == 25_000 and [p["remote_id"] for p in stored["payments"]] == [pays[0]["id"]]
    assert await hook(hub, tave.id, "payment.created", pays[0]["id"]) == "unchanged"
    # two more payments sent before either reaches VSCO: the one the balance has room for is taken, the other
    # refused at once (both were accepted, and the second was created at VSCO and then refused there, unapplied)
    body = {"amount_minor": 50_000, "currency": "USD", "invoice_id": mine["id"]}
    first = await api.post(f"/api/crm/weddings/{wid}/payments", headers=h, json=body)
    assert first.status_code == 202, first.text
    second = await api.post(f"/api/crm/weddings/{wid}/payments", headers=h, json=body)
    assert second.status_code == 422 and second.json()["error"]["code"] == "exceeds_balance", second.text
    assert second.json()["error"]["details"] == {"balance_minor": 30_000, "pending_minor": 50_000}
    await drain(hub)
    assert outbox(hub, first.json()["id"]).status == "done"
    second_pay = next(p["id"] for p in emulator.payments.records.values()
                      if p.get("transactionId") == first.json()["idempotency_key"])

    # -- a marketplace booking: one client known at Tave, one only from HoneyBook (a contact is created)
    hb = csv_connection(hub, v.id)
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, hb, "contacts", [ClientRecord("hb-9", first_name="Ngozi", last_name="Okafor",
                                                               email="ngozi.okafor@example.org")])
    newcomer = person_of(hub, hb, "hb-9")
    with hub.db.read() as s:
        known_remote, known = s.execute(select(Client.remote_id, Client.crm_client_id).where(
            Client.connection_id == tave.id).order_by(Client.id).limit(1)).one()
    loss.arm("POST", rf"{VSCO_PREFIX}/address-book")
    loss.arm("POST", rf"{VSCO_PREFIX}/job")
    r = await api.post(f"/api/crm/connections/{tave.id}/weddings", headers=h, json={
        "client_ids": [known, newcomer], "name": "Okafor wedding (WedSync)", "event_date": "2031-09-20",
        "guest_count": 140})
    assert r.status_code == 202, r.text
    booking = r.json()
    assert booking["op"] == "create_job" and [c["op"] for c in booking["contacts"]] == ["create_contact"]
    await drain(hub)
    job_row, contact_row = outbox(hub, booking["id"]), outbox(hub, booking["contacts"][0]["id"])
    assert job_row.status == contact_row.status == "done", (job_row.last_error, contact_row.last_error)
    new_contacts = ours(emulator.contacts.records, contact_row.idempotency_key)
    new_jobs = ours(emulator.jobs.records, job_row.idempotency_key)
    assert len(new_contacts) == 1 and len(new_jobs) == 1
    assert {("POST", f"{VSCO_PREFIX}/address-book"), ("POST", f"{VSCO_PREFIX}/job")} <= set(loss.lost)
    linked = {lk["contactId"] for lk in emulator.job_contacts.records.values() if lk["jobId"] == new_jobs[0]["id"]}
    assert linked == {known_remote, new_contacts[0]["id"]}
    assert person_of(hub, tave.id, new_contacts[0]["id"]) == newcomer  # the new contact is that client's source
    assert (new_jobs[0]["name"], new_jobs[0]["eventDate"][:10], new_jobs[0]["guestCount"]) == (
        "Okafor wedding (WedSync)", "2031-09-20", 140)
    created = (await api.get(f"/api/crm/weddings/{job_row.record_id}", headers=h)).json()
    assert created["remote_id"] == new_jobs[0]["id"]
    assert set(created["client_remote_ids"]) == linked  # the links were stored with the job
    assert {c["crm_client_id"] for c in created["clients"]} == {known, newcomer}
    assert "d:2031-09-20" in {k[:12] for k in _keys(hub, newcomer)}  # the booking's date is identity evidence
    assert await hook(hub, tave.id, "contact.created", new_contacts[0]["id"]) == "unchanged"
    assert await hook(hub, tave.id, "job.created", new_jobs[0]["id"]) == "unchanged"

    # -- our writes coming back with the next full sync are echoes, not changes
    again = await full_sync()
    assert again["status"] == "succeeded" and again["created"] == 0 and again["updated"] == 0, again
    assert again["conflicts"] == 0

    # -- a payment the studio records in Workspace: stored on the order it is applied to (a payment.created
    # hook before it is applied finds nothing to store it on; applying fires no hook: the next sync brings it)
    async with httpx.AsyncClient(base_url=f"{url}{VSCO_PREFIX}", headers={"X-API-KEY": KEY}) as studio:
        paid = (await studio.post("/payment", json={"jobId": booked["id"], "amount": 1_000, "status": "posted"})
                ).json()
        assert await hook(hub, tave.id, "payment.created", paid["id"]) == "unallocated"
        (await studio.post(f"/payment/{paid['id']}/apply", json={"orderId": orders[0]["id"], "amount": 1_000})
         ).raise_for_status()
    assert await hook(hub, tave.id, "payment.created", paid["id"]) == "updated"
    assert await hook(hub, tave.id, "payment.created", paid["id"]) == "unchanged"
    stored = next(i for i in (await api.get(f"/api/crm/weddings/{wid}", headers=h)).json()["invoices"]
                  if i["id"] == mine["id"])
    assert stored["paid_minor"] == 76_000
    assert {p["remote_id"] for p in stored["payments"]} == {pays[0]["id"], second_pay, paid["id"]}
    assert await hook(hub, tave.id, "payment.created", "01jzzzzzzzzzzzzzzzzzzzzzzz") == "absent"


async def test_bad_input_is_a_4xx_with_a_code(hub_api, lossy_sandbox) -> None:  # type: ignore[no-untyped-def]
    hub, api = hub_api
    url, emulator, _ = lossy_sandbox
    v = hub.tenancy.create_vendor("Strict Photo", "Europe/Paris")
    _, key = hub.tenancy.create_key(v.id)
    h = auth(key)
    other = hub.tenancy.create_vendor("Other Photo")
    _, other_key = hub.tenancy.create_key(other.id)
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{url}{VSCO_PREFIX}").id
    hb = csv_connection(hub, v.id)
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "jobs", [WeddingRecord(next(iter(emulator.jobs.records)), name="Job A",
                                                              remote_modified_at=T0)])
        hub.sync.upsert(c, v.id, tave, "events", [EventRecord("ev-a", wedding_remote_id="x", name="Ceremony",
                                                              starts_at=T0)])
        hub.sync.upsert(c, v.id, hb, "jobs", [WeddingRecord("hb-job-1", name="HoneyBook project")])
    with hub.db.read() as s:
        wid = s.execute(select(Wedding.id).where(Wedding.connection_id == tave)).scalar_one()
        hb_wid = s.execute(select(Wedding.id).where(Wedding.connection_id == hb)).scalar_one()
        eid = s.execute(select(CrmEvent.id).where(CrmEvent.connection_id == tave)).scalar_one()

    async def code(method: str, path: str, body: Any, key_headers: dict[str, str] = h) -> tuple[int, str]:
        resp = await api.request(method, path, headers=key_headers, json=body)
        return resp.status_code, (resp.json().get("error") or {}).get("code", "") if resp.status_code >= 400 else ""

    assert await code("PATCH", f"/api/crm/weddings/{wid}", {"stage": "married"}) == (422, "invalid_stage")
    assert (await code("PATCH", f"/api/crm/weddings/{wid}", {"name": "x", "expected_version": 7}))[0] == 409
    assert await code("PATCH", f"/api/crm/weddings/{wid}", {}) == (422, "empty_patch")
    assert (await code("PATCH", f"/api/crm/weddings/{wid}", {"guest_count": -3}))[0] == 422
    assert await code("PATCH", f"/api/crm/weddings/{wid}", {"name": "  "}) == (422, "missing_field")
    assert await code("PATCH", f"/api/crm/events/{eid}", {"starts_at": None}) == (422, "missing_field")
    # a source that cannot take the write (a CSV/Zapier product): changed in WedSync only, nothing enqueued
    r = await api.patch(f"/api/crm/weddings/{hb_wid}", headers=h, json={"name": "Renamed here", "stage": "Inquiry"})
    assert r.status_code == 200 and r.json()["writeback"] == "source_not_writable" and not r.json()["writebacks"]
    assert (r.json()["name"], r.json()["stage"], r.json()["version"]) == ("Renamed here", "Inquiry", 2)
    assert await code("PATCH", f"/api/crm/events/{eid}", {"ends_at": "2020-01-01T00:00:00Z"}) == (422, "invalid_range")
    # year 1 in the studio's zone is out of any date's range: refused here, not a write-back that fails forever
    assert await code("PATCH", f"/api/crm/events/{eid}", {"starts_at": "0001-01-01T01:00:00+00:00",
                                                         "ends_at": "0001-01-01T02:00:00+00:00"}) == (
        422, "datetime_out_of_range")
    assert await code("POST", f"/api/crm/weddings/{wid}/events", {"name": "Shoot", "starts_at": "2031-06-14T10:00:00"}
                      ) == (422, "naive_datetime")
    assert await code("POST", f"/api/crm/weddings/{wid}/invoices", {"number": "N1", "currency": "USD"}) == (
        422, "missing_field")
    huge = [{"name": "a", "unit_minor": 10**12, "quantity": 10_000}]  # each value in range, the sum 10^16 not
    assert await code("POST", f"/api/crm/weddings/{wid}/invoices", {"number": "N1", "currency": "USD",
                                                                    "line_items": huge}) == (422, "invalid_amount")
    assert await code("POST", f"/api/crm/weddings/{wid}/invoices", {"number": "N1", "currency": "EUR",
                                                                    "total_minor": 500}) == (422, "currency_mismatch")
    assert await code("POST", f"/api/crm/weddings/{wid}/invoices", {"number": "N1", "currency": "dollars",
                                                                    "total_minor": 500}) == (422, "invalid_currency")
    fractional = await code("POST", f"/api/crm/weddings/{wid}/payments", {"amount_minor": 12.5, "currency": "USD"})
    assert fractional[0] == 422
    assert await code("POST", f"/api/crm/weddings/{wid}/payments", {"amount_minor": 0, "currency": "USD"}) == (
        422, "invalid_amount")
    assert await code("POST", f"/api/crm/weddings/{wid}/payments", {"amount_minor": 100, "currency": "USD"}) == (
        422, "no_invoice")
    job_a = next(iter(emulator.jobs.records))
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "orders", [
            InvoiceRecord(f"inv-{n}", wedding_remote_id=job_a, status="open", currency="USD", total_minor=900)
            for n in (1, 2)])
    assert await code("POST", f"/api/crm/weddings/{wid}/payments", {"amount_minor": 100, "currency": "USD"}) == (
        422, "invoice_required")
    assert await code("POST", f"/api/crm/weddings/{wid}/payments", {"amount_minor": 100, "currency": "USD",
                                                                    "invoice_id": "01NOSUCHINVOICE"}) == (
        404, "unknown_invoice")
    assert await code("POST", f"/api/crm/weddings/{wid}/payments", {"amount_minor": 100, "currency": "GBP",
                                                                    "invoice_id": None}) == (422, "invoice_required")
    with hub.db.read() as s:
        inv1 = s.execute(select(CrmInvoice.id).where(CrmInvoice.remote_id == "inv-1")).scalar_one()
    assert await code("POST", f"/api/crm/weddings/{wid}/payments", {"amount_minor": 901, "currency": "USD",
                                                                    "invoice_id": inv1}) == (422, "exceeds_balance")
    assert await code("POST", f"/api/crm/weddings/{wid}/payments", {"amount_minor": 900, "currency": "EUR",
                                                                    "invoice_id": inv1}) == (422, "currency_mismatch")
    assert await code("POST", f"/api/crm/connections/{tave}/weddings", {"client_ids": ["01NOSUCHCLIENT"],
                                                                       "name": "x"}) == (404, "unknown_client")
    assert await code("POST", f"/api/crm/connections/{hb}/weddings", {"client_ids": ["01NOSUCHCLIENT"],
                                                                     "name": "x"}) == (422, "not_writable")
    # another vendor's ids: 404, nothing enqueued
    for method, path, body in (("GET", f"/api/crm/weddings/{wid}", None),
                               ("PATCH", f"/api/crm/weddings/{wid}", {"name": "taken"}),
                               ("PATCH", f"/api/crm/events/{eid}", {"name": "taken"}),
                               ("POST", f"/api/crm/weddings/{wid}/events", {"name": "x",
                                                                            "starts_at": "2031-06-14T10:00:00Z"}),
                               ("POST", f"/api/crm/weddings/{wid}/payments", {"amount_minor": 1, "currency": "USD"}),
                               ("POST", f"/api/crm/connections/{tave}/weddings", {"client_ids": ["x"], "name": "x"})):
        assert (await code(method, path, body, auth(other_key)))[0] == 404, (method, path)
    with hub.db.read() as s:
        assert s.execute(select(CrmOutbox.id).where(CrmOutbox.vendor_id == v.id)).first() is None
    assert (await api.get("/api/crm/weddings", headers=auth(other_key))).json()["items"] == []


async def test_drain_workflow_and_real_rest_hooks_for_orders_and_payments(dbos_hub) -> None:  # type: ignore[no-untyped-def]
    """DBOS end to end (SQLite): the API's write-backs are sent by the ``drain_crm_outbox`` workflow; the
    sandbox delivers ``order.booked`` and ``payment.created`` REST hooks (only targetId) to the served hub, which
    re-fetches and stores the order with its payment; the hooks for our own writes change nothing."""
    from tests.e2e.procs import serve_app_in_thread
    from wedsync.api.app import create_app
    from wedsync.sandbox.server import start_sandbox_in_thread
    from wedsync.store.tables import WebhookEvent

    hub = dbos_hub
    sandbox, stop_sandbox = start_sandbox_in_thread(port=0, seed=31, contacts=12, jobs=4)
    base, stop_api = serve_app_in_thread(create_app())
    hub.subscriptions.public_url = base
    studio = httpx.Client(base_url=f"{sandbox}{VSCO_PREFIX}", headers={"X-API-KEY": KEY}, timeout=30)
    # hooks leave in batches 1.5 s late, reordered: the studio's payment is applied to its order by the time
    # its payment.created hook (fired at creation: applying fires none) is delivered
    httpx.put(f"{sandbox}/_sandbox/{SLUG}/faults", json={"webhook_reorder": True, "webhook_reorder_window_ms": 1500},
              timeout=30).raise_for_status()
    try:
        v = hub.tenancy.create_vendor("Hooked Photo")
        _, key = hub.tenancy.create_key(v.id)
        conn = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{sandbox}{VSCO_PREFIX}")
        with hub.db.session() as s:
            s.get(Connection, conn.id).settings = {"streams": ["contacts", "jobs", "events", "orders"]}
        run = hub.sync.create_run(v.id, conn.id, "full")
        assert (await drive_run(run.id, DirectSteps(hub.sync)))["status"] == "succeeded"
        async with httpx.AsyncClient(base_url=base, timeout=30, headers=auth(key)) as api:
            r = await api.post(f"/api/connections/{conn.id}/subscriptions")
            assert r.status_code == 200 and {"order.booked", "payment.created"} <= {x["event"] for x in r.json()}
            wedding = (await api.get("/api/crm/weddings")).json()["items"][0]

            # the studio books an order and takes a payment in Workspace: hooks name them, the hub re-fetches
            job = wedding["remote_id"]
            order = studio.post(f"/job/{job}/order", json={"name": "Studio order", "lineItems": [
                {"name": "Prints", "pricePerUnit": 8_000, "units": 1.0, "taxable": False, "selected": True}]}).json()
            payment = studio.post("/payment", json={"jobId": job, "amount": 3_000, "status": "posted"}).json()
            studio.post(f"/payment/{payment['id']}/apply", json={"orderId": order["id"], "amount": 3_000}
                        ).raise_for_status()

            async def stored_order(remote_id: str) -> dict[str, Any] | None:
                for _ in range(150):
                    detail = (await api.get(f"/api/crm/weddings/{wedding['id']}")).json()
                    found = next((i for i in detail["invoices"] if i["remote_id"] == remote_id), None)
                    if found is not None and found["paid_minor"]:
                        return found
                    await asyncio.sleep(0.2)
                return None

            got = await stored_order(order["id"])
            assert got is not None and got["paid_minor"] == 3_000 and [p["remote_id"] for p in got["payments"]] == [
                payment["id"]]

            # our own invoice and payment through the API: the workflow sends them, their hooks are echoes
            r = await api.post(f"/api/crm/weddings/{wedding['id']}/invoices", json={
                "number": "WS-HOOK-1", "currency": "USD", "total_minor": 20_000})
            assert r.status_code == 202, r.text
            inv_row = r.json()
            for _ in range(150):
                if outbox(hub, inv_row["id"]).status != "pending":
                    break
                await asyncio.sleep(0.2)
            done = outbox(hub, inv_row["id"])
            assert done.status == "done", done.last_error
            mine = (await api.get(f"/api/crm/weddings/{wedding['id']}")).json()
            invoice = next(i for i in mine["invoices"] if i["remote_id"] == done.payload["result"]["remote_id"])
            r = await api.post(f"/api/crm/weddings/{wedding['id']}/payments", json={
                "amount_minor": 5_000, "currency": "USD", "invoice_id": invoice["id"]})
            assert r.status_code == 202, r.text
            ours_paid = await stored_order(invoice["remote_id"])
            assert ours_paid is not None and ours_paid["paid_minor"] == 5_000
            # every hook was processed (none failed), and those for our writes left the rows as we stored them
            for _ in range(150):
                with hub.db.read() as s:
                    pending = s.execute(select(WebhookEvent.status).where(
                        WebhookEvent.connection_id == conn.id, WebhookEvent.status == "pending")).first()
                if pending is None:
                    break
                await asyncio.sleep(0.2)
            with hub.db.read() as s:
                events = list(s.execute(select(WebhookEvent).where(WebhookEvent.connection_id == conn.id)).scalars())
                version = s.execute(select(CrmInvoice.version).where(
                    CrmInvoice.connection_id == conn.id, CrmInvoice.remote_id == invoice["remote_id"])).scalar_one()
            kinds = {(e.event_type, e.status) for e in events}
            assert {("order.booked", "processed"), ("payment.created", "processed")} <= kinds, kinds
            assert not [e for e in events if e.status == "failed"], [(e.event_type, e.error) for e in events]
            assert version == ours_paid["version"]  # the hooks re-fetched our own writes: unchanged
    finally:
        studio.close()
        stop_api()
        stop_sandbox()
        await hub.connections.aclose()


async def test_two_drains_and_a_dead_drain_never_write_twice(hub_api, lossy_sandbox) -> None:  # type: ignore[no-untyped-def]
    """Two drains sending one row at once: one sends, the other leaves it (claimed). A drain that died after the
    provider executed its call leaves the row claimed; once the lease is over, the next drain finds the record
    by our reference instead of creating it again (and finishes what is left: the payment's application to its
    order, the job's contact links)."""
    hub, api = hub_api
    url, emulator, _ = lossy_sandbox
    v = hub.tenancy.create_vendor("Racing Photo")
    _, key = hub.tenancy.create_key(v.id)
    h = auth(key)
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{url}{VSCO_PREFIX}")
    with hub.db.session() as s:
        s.get(Connection, tave.id).settings = {"streams": ["contacts", "jobs", "job_contacts", "events", "orders"]}
    run = hub.sync.create_run(v.id, tave.id, "full")
    assert (await drive_run(run.id, DirectSteps(hub.sync)))["status"] == "succeeded"
    connector = await hub.connections.connector(hub.connections.get(v.id, tave.id))
    wedding = (await api.get("/api/crm/weddings?limit=1", headers=h)).json()["items"][0]
    job = wedding["remote_id"]

    def expire(outbox_id: str) -> None:  # the dead drain's lease runs out
        with hub.db.engine.begin() as c:
            c.execute(update(CrmOutbox).where(CrmOutbox.id == outbox_id).values(
                sent_at=utcnow() - timedelta(minutes=10)))

    # two drains at once
    r = await api.post(f"/api/crm/weddings/{wedding['id']}/events", headers=h, json={
        "name": "First look", "starts_at": "2031-06-14T17:00:00Z"})
    row = r.json()
    assert sorted(await asyncio.gather(hub.crm.send_outbox(row["id"]), hub.crm.send_outbox(row["id"]))) == [
        "done", "pending"]
    assert len(ours(emulator.events.records, row["idempotency_key"])) == 1

    # an order the dead drain created
    r = await api.post(f"/api/crm/weddings/{wedding['id']}/invoices", headers=h, json={
        "number": "WS-DEAD-1", "currency": "USD", "total_minor": 70_000})
    inv = r.json()
    assert hub.crm_writeback.claim(inv["id"]) == (True, False)
    await connector.create_order(job, InvoiceRecord("x", number="WS-DEAD-1", currency="USD", total_minor=70_000),
                                 reference=inv["idempotency_key"])
    assert await hub.crm.send_outbox(inv["id"]) == "pending"  # still held by the dead drain's lease
    expire(inv["id"])
    assert await hub.crm.send_outbox(inv["id"]) == "done"
    assert outbox(hub, inv["id"]).payload["result"]["created"] is False
    assert len([o for o in emulator.orders.records.values() if o.get("name") == "WS-DEAD-1"]) == 1
    with hub.db.read() as s:
        invoice_id = s.execute(select(CrmInvoice.id).where(
            CrmInvoice.connection_id == tave.id, CrmInvoice.remote_id == outbox(hub, inv["id"]).payload["result"][
                "remote_id"])).scalar_one()

    # a payment the dead drain created but did not apply to its order yet
    r = await api.post(f"/api/crm/weddings/{wedding['id']}/payments", headers=h, json={
        "amount_minor": 20_000, "currency": "USD", "invoice_id": invoice_id})
    pay = r.json()
    assert hub.crm_writeback.claim(pay["id"]) == (True, False)
    await connector.create_payment(job, amount_minor=20_000, currency="USD", reference=pay["idempotency_key"])
    expire(pay["id"])
    assert await hub.crm.send_outbox(pay["id"]) == "done"
    made = [p for p in emulator.payments.records.values() if p.get("transactionId") == pay["idempotency_key"]]
    assert len(made) == 1 and [a["orderId"] for a in made[0]["paymentAllocations"]] == [
        outbox(hub, inv["id"]).payload["result"]["remote_id"]]
    detail = (await api.get(f"/api/crm/weddings/{wedding['id']}", headers=h)).json()
    assert next(i for i in detail["invoices"] if i["id"] == invoice_id)["paid_minor"] == 20_000

    # a booking's job the dead drain created without its links
    with hub.db.read() as s:
        people = list(s.execute(select(Client.crm_client_id, Client.remote_id).where(
            Client.connection_id == tave.id).order_by(Client.id).limit(2)).all())
    r = await api.post(f"/api/crm/connections/{tave.id}/weddings", headers=h, json={
        "client_ids": [p.crm_client_id for p in people], "name": "Revived booking", "event_date": "2031-08-01"})
    booking = r.json()
    assert booking["contacts"] == []  # both have a record at this connection already
    assert hub.crm_writeback.claim(booking["id"]) == (True, False)
    await connector.create_job(WeddingRecord("x", name="Revived booking"), reference=booking["idempotency_key"])
    expire(booking["id"])
    assert await hub.crm.send_outbox(booking["id"]) == "done"
    jobs = ours(emulator.jobs.records, booking["idempotency_key"])
    assert len(jobs) == 1
    assert {lk["contactId"] for lk in emulator.job_contacts.records.values() if lk["jobId"] == jobs[0]["id"]} == {
        p.remote_id for p in people}


async def test_a_honeybook_booking_goes_out_through_the_create_project_zap_once(hub_api) -> None:  # type: ignore[no-untyped-def]
    """HoneyBook advertised write ``projects`` and a ``create_project_hook_url`` credential, yet a booking at a
    HoneyBook connection was 422 ``not_writable``. Now one ``create_project`` outbox row POSTs it to the catch
    hook; the first answer is held past the hub's timeout, the retry carries the same key and the Zap's Storage
    step drops it (one project), and the project's "New Project Booked" echo brings it back as a wedding."""
    from wedsync.connectors import http as http_layer
    from wedsync.connectors.webhooks import ZapierScheme
    from wedsync.sandbox.app import create_sandbox_app
    from wedsync.sandbox.honeybook import CATCH_HOOK_PATH
    from wedsync.sandbox.server import start_sandbox_in_thread
    from wedsync.services.connections import WEBHOOK_SECRET

    hub, api = hub_api
    http_layer._breakers.pop("honeybook", None)  # process-wide: other tests' failing catch hooks may have opened it
    app = create_sandbox_app(seed=5)
    url, stop = start_sandbox_in_thread(port=0, app=app)
    emulator = app.state.emulators["honeybook"]
    try:
        v = hub.tenancy.create_vendor("Zap Bookings")
        _, key = hub.tenancy.create_key(v.id)
        bare = hub.connections.create(v.id, "honeybook", credentials={})
        hb = hub.connections.create(v.id, "honeybook",
                                    credentials={"create_project_hook_url": f"{url}/honeybook{CATCH_HOOK_PATH}"})
        secret = hub.connections.credentials(hb)[WEBHOOK_SECRET]
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, hb.id, "contacts", [
                ClientRecord("h1", first_name="Aroha", last_name="Ngata", email="aroha@example.nz",
                             phone="+64211234567", remote_modified_at=T0),
                ClientRecord("h2", first_name="Wiremu", last_name="Pene", email="wiremu@example.nz",
                             remote_modified_at=T0)])
        aroha, wiremu = person_of(hub, hb.id, "h1"), person_of(hub, hb.id, "h2")
        body = {"client_ids": [aroha, wiremu], "name": "Aroha & Wiremu", "event_date": "2027-02-13",
                "guest_count": 110, "job_type": "Wedding"}
        r = await api.post(f"/api/crm/connections/{bare.id}/weddings", headers=auth(key), json=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_writable"  # no catch hook: says so
        assert "create_project_hook_url" in r.text
        await emulator.mutate({"catch_hook": {"hold_seconds": 1.5, "times": 1},
                               "zap": {"url": f"http://127.0.0.1:9/webhooks/honeybook/{hb.id}", "secret": secret}})
        hub.connections.http_timeout = 0.4
        r = await api.post(f"/api/crm/connections/{hb.id}/weddings", headers=auth(key), json=body)
        assert r.status_code == 202, r.text
        row = r.json()
        assert (row["op"], row["status"], row["contacts"]) == ("create_project", "pending", [])
        await drain(hub)
        done = outbox(hub, row["id"])
        assert done.status == "done", done.last_error
        requests = list(emulator.catch_requests.records.values())
        assert len(requests) >= 2 and {r["idempotency_key"] for r in requests} == {done.idempotency_key}
        (project,) = emulator.projects_created_by_zap()
        assert (project["name"], project["date"]) == ("Aroha & Wiremu", "2027-02-13")
        sent = requests[0]["body"]
        assert (sent["client_email"], sent["other_clients"]) == ("aroha@example.nz", "Wiremu Pene <wiremu@example.nz>")
        assert done.payload["result"]["request_id"] in {r["id"] for r in requests}
        # the Zap's "New Project Booked" fires back with our reference: the project becomes the couple's wedding
        await emulator.webhooks.drain(within=10)
        (echo,) = [d.body for d in emulator.webhooks.log if b"project.booked" in d.body]
        assert ZapierScheme().verify(echo, ZapierScheme.sign(echo, secret), secret).event_id
        row_in = InboxRow(id=1, vendor_id=v.id, connection_id=hb.id, provider="honeybook", event_id="echo",
                          event_type="project.booked", record_id=None, body=echo, received_at=utcnow(), attempts=0)
        hub.crm.ingest_zap(row_in)
        weddings = hub.crm.get_client(v.id, aroha)["weddings"]
        assert [(w["name"], w["event_date"]) for w in weddings] == [("Aroha & Wiremu", "2027-02-13")]
    finally:
        stop()
