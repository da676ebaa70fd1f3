"""The photographer's CRM story: Tave (VSCO sandbox) clients and a HoneyBook export become one set of clients,
and a conflicting phone edit is settled by the studio's rule (Tave owns phone numbers)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.table import Table
from sqlalchemy import func, select

from wedsync.demos import DemoContext

TITLE = "CRM hub: Tave + HoneyBook as one set of clients, conflicts by the studio's rules (issue 3)"
VENDOR = "Golden Hour Photography (demo)"  # the main story's vendor, whose Tave clients are synced already
SLUG = "vsco-workspace"
KEY = "sandbox-vsco-key"
HB_HEADER = ["First Name", "Last Name", "Email", "Phone", "Company", "Address", "Project Name", "Project Date",
             "Project Type", "Project Stage", "Lead Source", "Date Created"]


def _vendor_and_tave(ctx: DemoContext) -> tuple[str, str, bool]:
    hub = ctx.hub
    vendor = next((v for v in hub.tenancy.list_vendors() if v.name == VENDOR), None)
    if vendor is None:
        vendor = hub.tenancy.create_vendor(VENDOR, "America/Los_Angeles")
    conn = next((c for c in hub.connections.list(vendor.id) if c.provider == SLUG), None)
    fresh = conn is None
    if conn is None:
        conn = hub.connections.create(vendor.id, SLUG, credentials={"api_key": KEY},
                                      base_url=f"{ctx.sandbox_url}/{SLUG}/api/v2")
    return str(vendor.id), str(conn.id), fresh


def _honeybook_export(truth: list[dict[str, Any]]) -> tuple[bytes, int]:
    """The same couples as HoneyBook exports them: other phone formats, upper-case e-mails, swapped names,
    a typo; plus new inquiries, a parent's shared family e-mail and one row nobody can identify."""
    from wedsync.connectors.crm.vsco_workspace import map_contact

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(HB_HEADER)
    overlapping = 0
    for i, item in enumerate(truth):
        c = map_contact(item)
        if not (c.first_name and c.last_name and c.email):
            continue
        phone = (c.phone or "").split(";")[0]
        spaced = f"{phone[:3]} {phone[3:6]} {phone[6:]}" if phone.startswith("+") else ""
        first, last, email = c.first_name, c.last_name, c.email
        if i % 4 == 1:
            first, last = last, first
        elif i % 4 == 2 and len(first) >= 5:
            first = first[:2] + first[3] + first[2] + first[4:]  # two letters swapped
        elif i % 4 == 3:
            email = f"{first.lower()}.{i}@honeybook-inbox.example"  # another address, the same phone
        w.writerow([first, last, email.upper() if i % 4 == 0 else email, spaced, "", "", "", "", "", "", "Instagram",
                    ""])
        overlapping += 1
    for i, (first, last) in enumerate((("Maya", "Lindqvist"), ("Tomás", "Ferreira"), ("Aisha", "Okafor"))):
        w.writerow([first, last, f"{first.lower()}.{last.lower()}@example.org", "", "", "",
                    f"{first} & partner", f"0{i + 5}/1{i}/2027", "Wedding", "Inquiry", "The Knot", ""])
    c0 = map_contact(truth[0])
    w.writerow(["Ingrid", c0.last_name or "", c0.email or "", "", "", "", "", "", "", "", "Referral", ""])
    w.writerow(["", "", "not-an-email", "", "", "", "", "", "", "", "", ""])
    return buf.getvalue().encode("utf-8"), overlapping


async def _story(ctx: DemoContext) -> list[tuple[str, str]]:
    from wedsync.connectors.channels.csv_layouts import client_hash_id
    from wedsync.services.crm_sync import DirectImportSteps, drive_import
    from wedsync.services.sync_engine import DirectSteps, drive_run
    from wedsync.services.webhook_inbox import InboxRow
    from wedsync.store.tables import Client
    from wedsync.store.tables_crm import CrmClient

    hub, console = ctx.hub, ctx.console
    vendor_id, tave, fresh = _vendor_and_tave(ctx)
    if fresh:
        run = hub.sync.create_run(vendor_id, tave, "full")
        await drive_run(run.id, DirectSteps(hub.sync))
    with hub.db.read() as s:
        tave_rows = s.execute(select(func.count()).select_from(Client).where(Client.connection_id == tave,
                                                                             Client.deleted_at.is_(None))).scalar_one()
    async with httpx.AsyncClient(timeout=60) as http:
        text = (await http.get(f"{ctx.sandbox_url}/_sandbox/{SLUG}/records/address-book",
                               params={"limit": 40})).text
    truth = [json.loads(line) for line in text.splitlines() if line.strip()]
    data, overlapping = _honeybook_export(truth)

    hb = hub.crm.connection_for(vendor_id, "honeybook", create=True)
    job = await asyncio.to_thread(hub.crm.create_import, vendor_id, "honeybook", data, filename="honeybook.csv",
                                  chunk_size=20)
    job = await drive_import(job["id"], DirectImportSteps(hub.crm))
    errors = hub.crm.import_errors(vendor_id, job["id"])
    rejected = ", ".join(sorted({f"line {e['line']}: {e['code']}" for e in errors}))
    console.print(f"HoneyBook export: {job['processed_rows']} rows, {job['good_rows']} imported, "
                  f"{job['bad_rows']} rejected ({rejected})")
    t = Table(title="Merged into existing Tave clients")
    t.add_column("HoneyBook row")
    t.add_column("Tave client")
    t.add_column("rule")
    t.add_column("evidence")
    with hub.db.read() as s:
        for m in hub.crm.list_merges(vendor_id, include_undone=False, limit=200):
            if m["connection_id"] != hb.id or len(t.rows) >= 6:
                continue
            src = s.get(Client, m["source_client_id"])
            person = s.get(CrmClient, m["crm_client_id"])
            if src is None or person is None:
                continue
            ev = {k: v for k, v in m["evidence"].items() if k in ("email", "phone", "swapped_names",
                                                                  "first_similarity")}
            t.add_row(f"{src.first_name} {src.last_name}", f"{person.first_name} {person.last_name}", m["rule"],
                      json.dumps(ev))
        unified = s.execute(select(func.count()).select_from(CrmClient).where(
            CrmClient.vendor_id == vendor_id)).scalar_one()
        sources = s.execute(select(func.count()).select_from(Client).where(
            Client.vendor_id == vendor_id, Client.deleted_at.is_(None))).scalar_one()
    console.print(t)

    # The studio's rule: Tave owns phone numbers. Tave and HoneyBook both change one couple's phone.
    hub.crm.set_policy(vendor_id, field="phone", kind="source_of_truth", source=SLUG)
    c = next(i for i in truth if i.get("email") and i.get("firstName") and i.get("lastName"))
    now = datetime.now(UTC)
    tave_phone = f"+1415555{now.second:02d}{now.microsecond % 100:02d}"
    async with httpx.AsyncClient(timeout=60, headers={"X-API-KEY": KEY}) as http:
        r = await http.put(f"{ctx.sandbox_url}/{SLUG}/api/v2/address-book/{c['id']}",
                           json={"kind": "person", "cellPhone": {"e164": tave_phone, "countryCode": "us"}})
        r.raise_for_status()
    await hub.sync.refetch(tave, "contacts", c["id"])  # what Tave's REST hook triggers
    hb_phone = "+1 212 555 0199"
    body = {"event": "client_created", "client_first_name": c["firstName"], "client_last_name": c["lastName"],
            "client_email": c["email"], "client_phone": hb_phone, "occurred_at": now.isoformat()}
    row = InboxRow(id=0, vendor_id=vendor_id, connection_id=hb.id, provider="honeybook", event_id=f"demo-{now}",
                   event_type=None, record_id=client_hash_id(c["email"], c["firstName"], c["lastName"]),
                   body=json.dumps(body).encode(), received_at=now, attempts=0)
    await asyncio.to_thread(hub.crm.ingest_zap, row)
    with hub.db.read() as s:
        pid = s.execute(select(Client.crm_client_id).where(Client.connection_id == tave,
                                                           Client.remote_id == c["id"])).scalar_one()
    detail = hub.crm.get_client(vendor_id, pid)
    settled = [x for x in hub.crm.list_conflicts(vendor_id, status="auto", client_id=pid) if x["field"] == "phone"]
    last = settled[-1] if settled else None
    console.print(f"{c['firstName']} {c['lastName']}: Tave says {tave_phone}, a HoneyBook hook says "
                  f"{hb_phone} -> unified phone {detail['phone']} ({last['reason'] if last else 'no conflict'})")
    inquiry = await _marketplace_inquiry(ctx, vendor_id, next(
        i for i in truth if i.get("email") and i.get("firstName") and i.get("lastName") and i["id"] != c["id"]))
    await hub.connections.aclose()
    by_rule = hub.crm.merge_summary(vendor_id)  # every merge so far (HoneyBook rows, the inquiry)
    rules = ", ".join(f"{n} by {rule}" for rule, n in sorted(by_rule.items()))
    return [
        ("CRM: Tave + HoneyBook", f"{tave_rows} Tave contacts + {job['good_rows']} HoneyBook rows -> {unified} "
                                  f"clients ({sources} source records)"),
        ("CRM: merged and why", f"{sum(by_rule.values())} merges ({rules}); "
                                f"{overlapping} HoneyBook rows were Tave couples"),
        ("CRM: bad rows reported", f"{job['bad_rows']} (by line, with a code)"),
        ("CRM: conflicting phone edit", f"kept {detail['phone']} from Tave (rule: Tave is the source of truth "
                                        f"for phone); HoneyBook's {hb_phone} recorded as an auto-settled conflict"),
        ("CRM: marketplace inquiry", inquiry),
    ]


async def _marketplace_inquiry(ctx: DemoContext, vendor_id: str, couple: dict[str, Any]) -> str:
    """A Tave couple asks again on the marketplace (their e-mail in capitals, another phone format): the inquiry
    joins their client, and reaches the studio's Light Blue inbox once."""
    from wedsync.sandbox.light_blue import DEFAULT_API_KEY as LB_KEY
    from wedsync.services.crm_inquiries import Inquiry, Person

    hub = ctx.hub
    if not any(c.provider == "light-blue" for c in hub.connections.list(vendor_id)):
        hub.connections.create(vendor_id, "light-blue", credentials={"api_key": LB_KEY},
                               base_url=f"{ctx.sandbox_url}/light-blue")
    q = Inquiry(inquiry_id=f"demo-inquiry-{couple['id']}",
                inquirer=Person(couple["firstName"], couple["lastName"], couple["email"].upper()),
                wedding_date=datetime.now(UTC).date().replace(year=datetime.now(UTC).year + 1),
                venue="Foxhill Manor", guest_count=120, message="Are you free on our date? We loved your gallery.")
    out = await asyncio.to_thread(hub.crm_inquiries.receive, vendor_id, q)
    sent = [await hub.crm.send_outbox(d["outbox_id"]) for d in out["deliveries"]]
    (person,) = out["clients"]
    joined = (f"joined their Tave client ({person['merge']['rule']})" if person["merged"]
              else "a new client (no existing record matched)")
    ctx.console.print(f"Marketplace inquiry from {couple['firstName']} {couple['lastName']}: {joined}; "
                      f"Light Blue delivery: {', '.join(sent) or 'none'}")
    return f"{couple['firstName']} {couple['lastName']}: {joined}; pushed to Light Blue ({', '.join(sent)})"


def run_story(ctx: DemoContext) -> list[tuple[str, str]]:
    return asyncio.run(_story(ctx))
