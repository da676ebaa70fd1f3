"""Seed one vendor with real objects in every capability (core, CRM, payments, calendar) for the tenancy walk."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from tests.conftest import auth
from wedsync.connectors.calendars.base import SourceChange
from wedsync.domain import scheduling as sch
from wedsync.domain.crm import ClientRecord, EventRecord, InvoiceRecord, WeddingRecord
from wedsync.services.calendar import BookingRequest
from wedsync.services.crm_sync import DirectImportSteps, drive_import
from wedsync.store import tables as t
from wedsync.store.tables import new_id, utcnow
from wedsync.store.tables_calendar import CalendarConflict
from wedsync.store.tables_crm import CrmConflict, CrmEvent, CrmImportJob, CrmInvoice, CrmMerge, CrmOutbox
from wedsync.store.tables_payments import PaymentDispute

SANDBOX_BASE = "http://127.0.0.1:9/vsco-workspace/api/v2"  # never contacted by these tests
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HB_HEADER = ["First Name", "Last Name", "Email", "Phone", "Company", "Address", "Project Name", "Project Date",
             "Project Type", "Project Stage", "Lead Source", "Date Created"]


def _hb_csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(HB_HEADER)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def import_csv(name: str) -> bytes:
    """A HoneyBook export with two people and one bad row (an import error on line 4)."""
    return _hb_csv([[name.title(), "Imported", f"{name}.imp@example.com", "", "", "", f"{name} party",
                     "06/12/2031", "Wedding", "", "", ""],
                    [f"{name.title()}Two", "Imported", f"{name}.imp2@example.com", "", "", "", "", "", "", "", "",
                     ""],
                    ["", "", "garbage", "", "", "", "", "", "", "", "", ""]])


def _core(hub: Any, name: str) -> dict[str, Any]:
    v = hub.tenancy.create_vendor(name)
    key_row, key = hub.tenancy.create_key(v.id)
    conn = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": f"{name}-provider-key"},
                                  base_url=SANDBOX_BASE)
    with hub.db.session() as s:
        hub.sync.upsert(s, v.id, conn.id, "contacts",
                        [ClientRecord(remote_id=f"{name}-c1", first_name=name, email=f"{name}@example.com")])
        hub.sync.upsert(s, v.id, conn.id, "jobs", [WeddingRecord(remote_id=f"{name}-j1", name=f"{name} wedding")])
        job = f"{name}-j1"
        hub.sync.upsert(s, v.id, conn.id, "events", [EventRecord(remote_id=f"{name}-e1", wedding_remote_id=job,
                                                                 name=f"{name} ceremony", starts_at=T0)])
        hub.sync.upsert(s, v.id, conn.id, "orders", [InvoiceRecord(remote_id=f"{name}-o1", wedding_remote_id=job,
                                                                   status="open", currency="USD", total_minor=50_000)])
        hook = t.HookSubscription(vendor_id=v.id, connection_id=conn.id, remote_id=f"{name}-hook",
                                  event="contact.created", target_url="http://x")
        s.add(hook)
        s.flush()
        hook_id = hook.id
    run = hub.sync.create_run(v.id, conn.id, "full")
    with hub.db.read() as s:
        client_id = s.execute(select(t.Client.id).where(t.Client.vendor_id == v.id,
                                                        t.Client.remote_id == f"{name}-c1")).scalar_one()
        wedding_id = s.execute(select(t.Wedding.id).where(t.Wedding.vendor_id == v.id)).scalar_one()
        event_id = s.execute(select(CrmEvent.id).where(CrmEvent.vendor_id == v.id)).scalar_one()
        invoice_id = s.execute(select(CrmInvoice.id).where(CrmInvoice.vendor_id == v.id)).scalar_one()
    return {"vendor_id": v.id, "key": key, "key_id": key_row.id, "connection_id": conn.id, "run_id": run.id,
            "client_id": client_id, "wedding_id": wedding_id, "event_id": event_id, "invoice_id": invoice_id,
            "hook_id": hook_id, "name": name}


async def _crm(hub: Any, o: dict[str, Any]) -> None:
    """Two sources of one person (a merge), an open conflict, a policy, a mapping, an outbox write-back and a
    CSV import job with an error row."""
    v, name, tave = o["vendor_id"], o["name"], o["connection_id"]
    hb = hub.crm.connection_for(v, "honeybook", create=True).id
    first, email = f"{name.title()}ana", f"{name}.ana@example.com"

    def put(conn_id: str, rec: ClientRecord) -> None:
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v, conn_id, "contacts", [rec])

    put(tave, ClientRecord("v1", first_name=first, last_name="Ruiz", email=email, phone="+14155550132",
                           remote_modified_at=T0))
    put(hb, ClientRecord("h1", first_name=first, last_name="Ruiz", email=email, company=f"{name} studio",
                         remote_modified_at=T0 + timedelta(hours=1)))
    # both sides change the e-mail 30 s apart (inside the clock-skew allowance): an open conflict
    put(tave, ClientRecord("v1", first_name=first, last_name="Ruiz", email=f"{name}.ruiz@example.com",
                           phone="+14155550132", remote_modified_at=T0 + timedelta(hours=4)))
    put(hb, ClientRecord("h1", first_name=first, last_name="Ruiz", email=f"{name}.leo@example.com",
                         company=f"{name} studio", remote_modified_at=T0 + timedelta(hours=4, seconds=30)))
    policy = hub.crm.set_policy(v, field="company", kind="manual")
    hub.crm.set_mappings(v, hb, {"lead_source": f"{name}_found_us"})
    with hub.db.read() as s:
        merge = s.execute(select(CrmMerge).where(CrmMerge.vendor_id == v)).scalars().first()
        conflict = s.execute(select(CrmConflict).where(CrmConflict.vendor_id == v,
                                                       CrmConflict.status == "open")).scalars().first()
    assert merge is not None and conflict is not None, "CRM seed made no merge/conflict"
    crm_client = merge.crm_client_id
    hub.crm.update_client(v, crm_client, {"phone": "+14155550177"}, None)
    job = hub.crm.create_import(v, "honeybook", import_csv(name), connection_id=hb, filename=f"{name}.csv")
    await drive_import(job["id"], DirectImportSteps(hub.crm))
    with hub.db.read() as s:
        outbox = s.execute(select(CrmOutbox.id).where(CrmOutbox.vendor_id == v)).scalars().all()
        status = s.execute(select(CrmImportJob.status).where(CrmImportJob.id == job["id"])).scalar_one()
    assert outbox, "CRM seed made no outbox row"
    assert hub.crm.import_errors(v, job["id"]), status
    o.update(hb_connection_id=hb, crm_client_id=crm_client, merge_id=merge.id, conflict_id=conflict.id,
             job_id=job["id"], outbox_ids=list(outbox), policy_id=policy["id"])


async def _payments(api: Any, hub: Any, o: dict[str, Any], sandbox: str) -> None:
    """A Stripe gateway (set up and onboarded through the API with the vendor's own key, against the
    sandbox), a paid and partly refunded transaction, two escrow holds (milestone, manual), a reconciliation
    report, and a dispute (a row: opening one needs the gateway's webhook)."""
    h, name = auth(o["key"]), o["name"]
    r = await api.post("/api/connections", headers=h, json={
        "provider": "stripe", "base_url": f"{sandbox}/stripe",
        "credentials": {"secret_key": "sk_test_wedsync_platform"}})  # the platform's key, shared (Connect)
    assert r.status_code == 201, r.text
    stripe = r.json()["id"]
    r = await api.post("/api/integrations/payments/setup", headers=h, json={"gatewayConfig": {
        "primary": stripe, "feeStructure": {"platformFeeBps": 1000}}})
    assert r.status_code == 200, r.text
    r = await api.post(f"/api/integrations/payments/onboarding/{stripe}/complete", headers=h, json={})
    assert r.status_code == 200, r.text
    base = {"amountMinor": 10_000, "currency": "USD", "paymentMethod": "pm_card_visa",
            "customerEmail": f"{name}.payer@example.com", "description": f"{name} deposit"}
    r = await api.post("/api/payments/transactions", headers={**h, "Idempotency-Key": f"idem-{o['vendor_id']}-1"},
                       json={**base, "bookingRef": f"{name}-booking-1"})
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    tx = r.json()["id"]
    r = await api.post(f"/api/payments/transactions/{tx}/refunds", headers=h, json={"amountMinor": 1_000})
    assert r.status_code == 200, r.text
    holds = []
    for i, release in enumerate(({"kind": "milestone", "milestone": f"{name}-tasting"}, {"kind": "manual"}), 2):
        r = await api.post("/api/payments/transactions",
                           headers={**h, "Idempotency-Key": f"idem-{o['vendor_id']}-{i}"},
                           json={**base, "bookingRef": f"{name}-booking-{i}", "milestone": "final",
                                 "escrow": {"release": release}})
        assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
        hold = (await api.get("/api/payments/escrow", headers=h,
                              params={"bookingRef": f"{name}-booking-{i}"})).json()["items"]
        assert len(hold) == 1 and hold[0]["status"] == "held", hold
        holds.append(hold[0]["id"])
    period = {"since": (utcnow() - timedelta(hours=1)).isoformat(),
              "until": (utcnow() + timedelta(minutes=5)).isoformat()}
    r = await api.post("/api/payments/reconciliations", headers=h, json=period)
    assert r.status_code == 200, r.text
    report = r.json()["id"]
    with hub.db.session() as s:
        d = PaymentDispute(id=new_id(), vendor_id=o["vendor_id"], intent_id=tx, connection_id=stripe,
                           provider="stripe", dispute_ref=f"dp_{name}", amount_minor=9_000, currency="USD",
                           reason="fraudulent", status="needs_response", share={},
                           evidence_due_by=utcnow() + timedelta(days=7))
        s.add(d)
    o.update(stripe_connection_id=stripe, transaction_id=tx, hold_id=holds[1], milestone_hold_id=holds[0],
             booking_ref=f"{name}-booking-2", milestone=f"{name}-tasting", dispute_id=d.id, report_id=report,
             idempotency_key=f"idem-{o['vendor_id']}-1")


def _calendar(hub: Any, o: dict[str, Any], days_ahead: int) -> None:
    """A profile, a fresh read-only source with an event, a writable source with planned busy blocks, a
    booking, a hold, a scheduled meeting with an invitation, a recorded conflict and a feed token."""
    v, name = o["vendor_id"], o["name"]
    hub.calendar.auto_propagate = False  # blocks are planned, never pushed to a provider here
    with hub.db.session() as s:
        conn = t.Connection(id=new_id(), vendor_id=v, provider="google-calendar", settings={},
                            base_url="http://127.0.0.1:9/google")  # refused at once if ever called
        s.add(conn)
    hub.calendar.set_profile(v, working_hours={d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
                             home_location=f"{name} town")
    src = hub.calendar.add_source(v, kind="google-calendar", calendar_id=f"{name}-primary", connection_id=conn.id,
                                  writable=False, name=f"{name} main calendar")
    day = (utcnow() + timedelta(days=days_ahead)).replace(hour=0, minute=0, second=0, microsecond=0)
    stamp = day.strftime("%Y%m%d")
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:" + name + "-ev@x\r\n"
           f"DTSTART:{stamp}T070000Z\r\nDTEND:{stamp}T080000Z\r\nSUMMARY:{name} private event\r\n"
           "END:VEVENT\r\nEND:VCALENDAR\r\n")
    hub.calendar.store_changes(src["id"], [SourceChange(f"{name}-ev", ics, "1")])
    hub.calendar.finish_sync(hub.calendar.begin_sync(src["id"]), "tok", full=False)
    target = hub.calendar.add_source(v, kind="google-calendar", calendar_id=f"{name}-blocks", connection_id=conn.id,
                                     writable=True, name=f"{name} blocks")
    hub.calendar.finish_sync(hub.calendar.begin_sync(target["id"]), "tok", full=False)  # fresh, empty
    booking = hub.calendar.create_booking(v, BookingRequest(
        start=day + timedelta(hours=10), end=day + timedelta(hours=12), title=f"{name} consult",
        contact_email=f"{name}.couple@example.com", wedding_id=o["wedding_id"], check_calendars=False))
    hold = hub.calendar.create_booking(v, BookingRequest(
        start=day + timedelta(days=1, hours=10), end=day + timedelta(days=1, hours=12), kind="hold",
        title=f"{name} hold", expires_at=utcnow() + timedelta(days=3), check_calendars=False))
    meeting = hub.calendar.schedule_meeting(
        v, sch.MeetingRequest("consultation", timedelta(hours=1)), start=day + timedelta(days=2),
        end=day + timedelta(days=9), title=f"{name} meeting", contact_email=f"{name}.meet@example.com")
    meeting_id = (meeting.get("booking") or meeting)["id"]
    with hub.db.session() as s:
        s.add(CalendarConflict(id=new_id(), vendor_id=v, kind="import_overlap", booking_id=booking["id"],
                               channel="the-knot", external_ref=f"{name}-knot-1", start_at=booking_start(booking),
                               end_at=booking_start(booking) + timedelta(hours=1), detail={"title": f"{name} clash"}))
    hub.calendar.plan_blocks(v)
    feed = hub.calendar.create_feed_token(v, f"{name} feed")
    o.update(google_connection_id=conn.id, source_id=src["id"], target_source_id=target["id"],
             booking_id=booking["id"], hold_booking_id=hold["id"], meeting_booking_id=meeting_id,
             feed_id=feed["id"], booking_start=booking["start"], booking_end=booking["end"], calendar_day=day)


def booking_start(b: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(b["start"])


async def seed_vendor(api: Any, hub: Any, name: str, sandbox: str, days_ahead: int) -> dict[str, Any]:
    """Every capability's objects for one vendor; returns their ids (and the vendor's API key)."""
    o = _core(hub, name)
    await _crm(hub, o)
    await _payments(api, hub, o, sandbox)
    _calendar(hub, o, days_ahead)
    return o


def id_values(o: dict[str, Any]) -> list[tuple[str, str]]:
    """Every id of the vendor's objects, with what it is (markers that must never reach another vendor)."""
    skip = {"key", "name", "booking_start", "booking_end", "calendar_day", "idempotency_key", "milestone",
            "booking_ref"}
    out: list[tuple[str, str]] = []
    for k, val in o.items():
        if k not in skip:
            out.extend((k, str(x)) for x in (val if isinstance(val, list) else [val]))
    return out
