"""CRM hub core on SQLite and PostgreSQL: Tave (VSCO sandbox) + a HoneyBook CSV become one set of clients,
conflicts follow the vendor's policies, merges are undone, mappings re-map, hooks apply in order."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select

from wedsync.connectors.crm.vsco_workspace import map_contact
from wedsync.domain.crm import ClientRecord
from wedsync.errors import Conflict, InvalidInput, WedsyncError
from wedsync.services.crm_sync import DirectImportSteps, drive_import
from wedsync.services.sync_engine import DirectSteps, drive_run
from wedsync.services.webhook_inbox import InboxRow
from wedsync.store.tables import Client, Connection, Wedding, new_id
from wedsync.store.tables_crm import CrmClient

SLUG = "vsco-workspace"
KEY = "sandbox-vsco-key"
T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)
HB_HEADER = ["First Name", "Last Name", "Email", "Phone", "Company", "Address", "Project Name", "Project Date",
             "Project Type", "Project Stage", "Lead Source", "Date Created"]


@pytest.fixture
def sandbox() -> Iterator[str]:
    from wedsync.sandbox.server import start_sandbox_in_thread

    url, stop = start_sandbox_in_thread(port=0)
    try:
        yield url
    finally:
        stop()


def csv_connection(hub: Any, vendor_id: str, provider: str = "honeybook") -> str:
    """The vendor's CSV/hook connection (a plain row while the product's connector module is not there)."""
    try:
        return str(hub.crm.connection_for(vendor_id, provider, create=True).id)
    except WedsyncError:
        with hub.db.session() as s:
            c = Connection(id=new_id(), vendor_id=vendor_id, provider=provider, settings={})
            s.add(c)
        return c.id


def hb_csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(HB_HEADER)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def hb_row(first: str, last: str, email: str, phone: str = "", project: str = "", day: str = "") -> list[str]:
    return [first, last, email, phone, "", "", project, day, "Wedding" if project else "", "", "", ""]


def count(hub: Any, model: Any, **where: Any) -> int:
    with hub.db.read() as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return int(s.execute(q).scalar_one())


def person_of(hub: Any, connection_id: str, remote_id: str) -> str:
    with hub.db.read() as s:
        return str(s.execute(select(Client.crm_client_id).where(Client.connection_id == connection_id,
                                                                Client.remote_id == remote_id)).scalar_one())


async def import_file(hub: Any, vendor_id: str, data: bytes, chunk_size: int = 10) -> dict[str, Any]:
    job = hub.crm.create_import(vendor_id, "honeybook", data, filename="contacts.csv", chunk_size=chunk_size)
    return await drive_import(job["id"], DirectImportSteps(hub.crm))


async def test_tave_and_honeybook_become_one_set(any_hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    hub = any_hub
    httpx.post(f"{sandbox}/_sandbox/{SLUG}/seed", json={"contacts": 40, "jobs": 12}, timeout=30).raise_for_status()
    v = hub.tenancy.create_vendor("Golden Hour Photography", "America/Los_Angeles")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{sandbox}/{SLUG}/api/v2")
    r = hub.sync.create_run(v.id, tave.id, "full")
    summary = await drive_run(r.id, DirectSteps(hub.sync))
    await hub.connections.aclose()
    assert summary["status"] == "succeeded" and summary["created"] == 52 + 2 * 12  # + two job-contact links a job
    people_after_tave = count(hub, CrmClient, vendor_id=v.id)
    assert people_after_tave >= 38  # 40 sandbox contacts; a same-name same-phone pair may be one person

    text = httpx.get(f"{sandbox}/_sandbox/{SLUG}/records/address-book", timeout=30).text
    truth = [map_contact(json.loads(line)) for line in text.splitlines() if line.strip()]
    truth = [t for t in truth if t.email and t.first_name and t.last_name and t.phone][:12]
    rows, expect_rule = [], {}
    for i, t in enumerate(truth):
        phone = (t.phone or "").split(";")[0]
        spaced = f"{phone[:3]} {phone[3:6]} {phone[6:]}"  # another way of writing the same number
        if i % 4 == 0:
            row = hb_row(t.first_name or "", t.last_name or "", (t.email or "").upper(), spaced)
        elif i % 4 == 1:
            row = hb_row(t.last_name or "", t.first_name or "", t.email or "")  # swapped
        elif i % 4 == 2:
            first = t.first_name or ""
            typo = first[:2] + ("x" if first[2:3] != "x" else "y") + first[3:] if len(first) >= 4 else first
            row = hb_row(typo, t.last_name or "", t.email or "")
        else:
            row = hb_row(t.first_name or "", t.last_name or "", f"other.{i}@example.org", spaced)
        rows.append(row)
        expect_rule[t.remote_id] = row
    rows.append(hb_row("Zebediah", truth[0].last_name or "", truth[0].email or ""))  # shared family e-mail
    rows += [hb_row(f"New{i}", "Person", f"new{i}@example.org", "", "Wedding", "06/12/2027") for i in range(3)]
    rows.append(["", "", "not-an-email", "", "", "", "", "", "", "", "", ""])  # nothing to identify anyone
    data = hb_csv(rows)

    csv_connection(hub, v.id)
    job = await import_file(hub, v.id, data, chunk_size=5)
    assert job["status"] == "succeeded", job
    assert job["processed_rows"] == len(rows) and job["bad_rows"] >= 1
    assert job["good_rows"] == len(rows) - job["bad_rows"]
    errors = hub.crm.import_errors(v.id, job["id"])
    assert any(e["line"] == len(rows) + 1 and e["skipped"] for e in errors)  # header is line 1
    hb = hub.crm.connection_for(v.id, "honeybook")
    # every overlapping HoneyBook row joined its Tave client
    with hub.db.read() as s:
        hb_rows = {(r.first_name, r.last_name): r for r in s.execute(select(Client).where(
            Client.connection_id == hb.id)).scalars()}
    for t in truth:
        row = expect_rule[t.remote_id]
        assert hb_rows[(row[0], row[1])].crm_client_id == person_of(hub, tave.id, t.remote_id), row
    assert hb_rows[("Zebediah", truth[0].last_name)].crm_client_id != person_of(hub, tave.id, truth[0].remote_id)
    assert count(hub, CrmClient, vendor_id=v.id) == people_after_tave + 1 + 3
    rules = hub.crm.merge_summary(v.id)
    assert sum(rules.values()) == job["merged"] == 12 and {"email+name", "phone+name"} <= set(rules)
    for m in hub.crm.list_merges(v.id):
        assert m["rule"] and m["score"] > 0 and ("email" in m["evidence"] or "phone" in m["evidence"])

    again = await import_file(hub, v.id, data, chunk_size=7)  # the same export again: nothing new
    assert (again["created"], again["merged"]) == (0, 0)
    assert count(hub, CrmClient, vendor_id=v.id) == people_after_tave + 4


async def test_conflicts_policies_stale_events_and_undo(any_hub) -> None:  # type: ignore[no-untyped-def]
    hub = any_hub
    v = hub.tenancy.create_vendor("Policy Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)

    def put(conn_id: str, rec: ClientRecord) -> tuple[int, int, int]:
        with hub.db.engine.begin() as c:
            return hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])  # type: ignore[no-any-return]

    put(tave, ClientRecord("v1", first_name="Ana", last_name="Ruiz", email="ana@x.com", phone="+14155550132",
                           remote_modified_at=T0))
    put(hb, ClientRecord("h1", first_name="Ana", last_name="Ruiz", email="ana@x.com", company="Ana & Leo",
                         remote_modified_at=T0 + timedelta(hours=1)))
    pid = person_of(hub, tave, "v1")
    assert person_of(hub, hb, "h1") == pid
    c = hub.crm.get_client(v.id, pid)
    assert c["company"] == "Ana & Leo" and len(c["sources"]) == 2 and c["merges"][0]["rule"] == "email+name"

    hub.crm.set_policy(v.id, field="phone", kind="source_of_truth", source="tave")
    put(tave, ClientRecord("v1", first_name="Ana", last_name="Ruiz", email="ana@x.com", phone="+14155550199",
                           remote_modified_at=T0 + timedelta(hours=2)))
    put(hb, ClientRecord("h1", first_name="Ana", last_name="Ruiz", email="ana@x.com", company="Ana & Leo",
                         phone="+14155550100", remote_modified_at=T0 + timedelta(hours=3)))
    assert hub.crm.get_client(v.id, pid)["phone"] == "+14155550199"  # Tave is the phone's source of truth
    auto = hub.crm.list_conflicts(v.id, status="auto")
    assert [(x["field"], x["outcome"]) for x in auto] == [("phone", "local")]

    # both sides change the e-mail 30 s apart: inside the default clock-skew allowance -> manual queue
    put(tave, ClientRecord("v1", first_name="Ana", last_name="Ruiz", email="ana.ruiz@x.com", phone="+14155550199",
                           remote_modified_at=T0 + timedelta(hours=4)))
    put(hb, ClientRecord("h1", first_name="Ana", last_name="Ruiz", email="ana.leo@x.com", company="Ana & Leo",
                         phone="+14155550100", remote_modified_at=T0 + timedelta(hours=4, seconds=30)))
    open_ = hub.crm.list_conflicts(v.id)
    assert [(x["field"], x["local"], x["incoming"]) for x in open_] == [("email", "ana.ruiz@x.com", "ana.leo@x.com")]
    assert hub.crm.get_client(v.id, pid)["email"] == "ana.ruiz@x.com"  # unchanged until resolved
    # a value of the vendor's own is checked as an edit of the field is: nothing changes when it is refused
    for bad, code in (({"a": 1}, "invalid_field"), (12, "invalid_field"), ("not-an-email", "invalid_email"),
                      ("x" * 400 + "@x.com", "invalid_field")):
        with pytest.raises(InvalidInput) as refused:
            hub.crm.resolve_conflict(v.id, open_[0]["id"], "value", bad)
        assert refused.value.code == code, bad
    assert [x["id"] for x in hub.crm.list_conflicts(v.id)] == [open_[0]["id"]]
    done = hub.crm.resolve_conflict(v.id, open_[0]["id"], "incoming")
    assert done["status"] == "resolved" and hub.crm.get_client(v.id, pid)["email"] == "ana.leo@x.com"
    with pytest.raises(Conflict):
        hub.crm.resolve_conflict(v.id, open_[0]["id"], "local")

    # a stale event (older than what we hold) never overwrites the newer version
    assert put(hb, ClientRecord("h1", first_name="Old", last_name="Name", email="old@x.com",
                                remote_modified_at=T0)) == (0, 0, 1)
    assert hub.crm.get_client(v.id, pid)["first_name"] == "Ana"

    # both sides rename her 30 s apart: an open conflict between the HoneyBook record and the client
    put(tave, ClientRecord("v1", first_name="Anna", last_name="Ruiz", email="ana.ruiz@x.com", phone="+14155550199",
                           remote_modified_at=T0 + timedelta(hours=5)))
    put(hb, ClientRecord("h1", first_name="Ana-Maria", last_name="Ruiz", email="ana.leo@x.com", company="Ana & Leo",
                         phone="+14155550100", remote_modified_at=T0 + timedelta(hours=5, seconds=30)))
    open_ = hub.crm.list_conflicts(v.id)
    assert [(x["field"], x["incoming"]) for x in open_] == [("first_name", "Ana-Maria")]

    # undo the merge: the HoneyBook record becomes its own client again, the company it brought goes with it
    merge = hub.crm.list_merges(v.id)[0]
    out = hub.crm.undo_merge(v.id, merge["id"])
    # ... and its open conflict with the client is void (settling it would give the client a value none of
    # its sources has)
    assert hub.crm.list_conflicts(v.id) == []
    gone = hub.crm.list_conflicts(v.id, status="dismissed")
    assert [x["id"] for x in gone] == [open_[0]["id"]] and merge["id"] in gone[0]["resolution"]["reason"]
    with pytest.raises(Conflict):
        hub.crm.resolve_conflict(v.id, open_[0]["id"], "incoming")
    assert hub.crm.get_client(v.id, pid)["first_name"] == "Anna"
    restored = out["restored"]["id"]
    assert person_of(hub, hb, "h1") == restored != pid
    assert out["client"]["company"] is None and out["restored"]["company"] == "Ana & Leo"
    assert [s["remote_id"] for s in hub.crm.get_client(v.id, restored)["sources"]] == ["h1"]
    assert [s["remote_id"] for s in hub.crm.get_client(v.id, pid)["sources"]] == ["v1"]
    with pytest.raises(Conflict):
        hub.crm.undo_merge(v.id, merge["id"])


async def test_undo_of_a_merge_within_one_connection_restores_the_survivor(any_hub) -> None:  # type: ignore[no-untyped-def]
    """Two rows of one HoneyBook export merge; undoing the merge gives the survivor back the values it had (the
    fields the merged row filled go), except a field its own row changed since (found live: the survivor kept the
    split-off row's phone, company and custom field, as a change from the client's own connection was not
    recorded)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("One Export Studio")
    hb = csv_connection(hub, v.id)

    def put(rec: ClientRecord) -> None:
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, hb, "contacts", [rec])

    put(ClientRecord("h1", first_name="Ana", last_name="Ruiz", email="ana@example.org", remote_modified_at=T0))
    put(ClientRecord("h2", first_name="Ana", last_name="Ruiz-Lopez", email="ana@example.org", phone="+15552013344",
                     company="Lopez Events", address={"city": "Austin"}, custom_fields={"lead_source": "Instagram"},
                     remote_modified_at=T0 + timedelta(hours=1)))
    pid = person_of(hub, hb, "h1")
    assert person_of(hub, hb, "h2") == pid
    merged = hub.crm.get_client(v.id, pid)
    assert (merged["phone"], merged["company"], merged["custom_fields"]) == (
        "+15552013344", "Lopez Events", {"lead_source": "Instagram"})
    # the client's own row changes the address since: that value stays after the undo
    put(ClientRecord("h1", first_name="Ana", last_name="Ruiz", email="ana@example.org",
                     address={"city": "Dallas"}, remote_modified_at=T0 + timedelta(hours=2)))
    assert hub.crm.get_client(v.id, pid)["address"] == {"city": "Dallas"}
    out = hub.crm.undo_merge(v.id, hub.crm.list_merges(v.id)[0]["id"])
    survivor, restored = out["client"], out["restored"]
    assert (survivor["phone"], survivor["company"], survivor["custom_fields"], survivor["address"]) == (
        None, None, {}, {"city": "Dallas"})
    assert (survivor["first_name"], survivor["last_name"]) == ("Ana", "Ruiz")
    assert survivor["field_sources"] == {}
    assert (restored["phone"], restored["company"], restored["custom_fields"], restored["last_name"]) == (
        "+15552013344", "Lopez Events", {"lead_source": "Instagram"}, "Ruiz-Lopez")
    assert person_of(hub, hb, "h2") == restored["id"] and person_of(hub, hb, "h1") == pid


async def test_undoing_merges_out_of_order_restores_no_value_of_a_record_split_off_before(any_hub) -> None:  # type: ignore[no-untyped-def]
    """Two merges, undone oldest first: the second merge had replaced a value the first merged record brought;
    undoing it must not put that value back, as that record has left the client (found by a probe: the
    survivor kept "B Co", a company none of its remaining sources has)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Order Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    h17 = csv_connection(hub, v.id, "17hats")
    hub.crm.set_policy(v.id, field="company", kind="source_of_truth", source="17hats")

    def put(conn_id: str, rec: ClientRecord) -> None:
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])

    put(tave, ClientRecord("v1", first_name="Bea", last_name="Lopez", email="bea@x.com", remote_modified_at=T0))
    put(hb, ClientRecord("h1", first_name="Bea", last_name="Lopez", email="bea@x.com", company="B Co"))
    put(h17, ClientRecord("s1", first_name="Bea", last_name="Lopez", email="bea@x.com", company="C Co"))
    pid = person_of(hub, tave, "v1")
    assert person_of(hub, hb, "h1") == pid == person_of(hub, h17, "s1")
    assert hub.crm.get_client(v.id, pid)["company"] == "C Co"  # 17hats owns the company
    first, second = sorted(hub.crm.list_merges(v.id), key=lambda m: m["created_at"])
    assert "replaced_by" not in first["evidence"] and "replaced" not in first["evidence"]
    assert hub.crm.undo_merge(v.id, first["id"])["client"]["company"] == "C Co"  # set by the 17hats row since
    out = hub.crm.undo_merge(v.id, second["id"])
    assert out["client"]["company"] is None and out["client"]["field_sources"] == {}
    assert out["restored"]["company"] == "C Co"
    assert [s["remote_id"] for s in hub.crm.get_client(v.id, pid)["sources"]] == ["v1"]


async def test_keeping_the_local_value_keeps_an_edit_made_since_the_conflict(any_hub) -> None:  # type: ignore[no-untyped-def]
    """A conflict settled with ``local`` keeps the client's value as it is now: the vendor's edit made after the
    conflict was raised stays (found by a probe: it was replaced by the value shown when the conflict was raised)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Local Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    hub.crm.set_policy(v.id, field="phone", kind="manual")
    for conn_id, rec in ((tave, ClientRecord("v1", first_name="Cora", last_name="Diaz", email="cora@x.com",
                                             phone="+14155550103", remote_modified_at=T0)),
                         (hb, ClientRecord("h1", first_name="Cora", last_name="Diaz", email="cora@x.com",
                                           phone="+14155550999"))):
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])
    pid = person_of(hub, tave, "v1")
    [x] = hub.crm.list_conflicts(v.id)
    assert (x["field"], x["local"], x["incoming"]) == ("phone", "+14155550103", "+14155550999")
    hub.crm.update_client(v.id, pid, {"phone": "+1 415 555 0777"})
    done = hub.crm.resolve_conflict(v.id, x["id"], "local")
    assert done["resolution"] == {"choice": "local", "value": "+14155550777"}
    assert hub.crm.get_client(v.id, pid)["phone"] == "+14155550777"


async def test_a_conflict_whose_record_was_deleted_since_cannot_take_its_value(any_hub) -> None:  # type: ignore[no-untyped-def]
    """The record a conflict's incoming value came from is deleted at its source (a full sync marks it deleted):
    taking that value is refused, keeping the local value or setting one still works (found by a probe: the client
    took the last name only the deleted VSCO contact had)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Deleted Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    hub.crm.set_policy(v.id, field="last_name", connection_id=tave, kind="manual")
    for conn_id, rec in ((hb, ClientRecord("h1", first_name="Dana", last_name="Smith", email="dana@x.com")),
                         (tave, ClientRecord("v1", first_name="Dana", last_name="Smyth", email="dana@x.com",
                                             remote_modified_at=T0))):
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])
    pid = person_of(hub, hb, "h1")
    [x] = [x for x in hub.crm.list_conflicts(v.id) if x["field"] == "last_name"]
    assert (x["local"], x["incoming"]) == ("Smith", "Smyth")
    with hub.db.session() as s:  # deleted by hand (a full sync's deletion also dismisses the conflict, see below)
        row = s.execute(select(Client).where(Client.connection_id == tave, Client.remote_id == "v1")).scalar_one()
        row.deleted_at = datetime.now(UTC)
    with pytest.raises(Conflict) as refused:
        hub.crm.resolve_conflict(v.id, x["id"], "incoming")
    assert refused.value.code == "source_deleted"
    assert hub.crm.get_client(v.id, pid)["last_name"] == "Smith"
    assert hub.crm.resolve_conflict(v.id, x["id"], "local")["status"] == "resolved"
    assert hub.crm.get_client(v.id, pid)["last_name"] == "Smith"


async def test_a_record_deleted_at_its_source_takes_its_open_conflicts_with_it(any_hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    """A source record deleted at its provider (a complete full sync, a hook's re-fetch answered 404, its connection
    removed) dismisses the open conflicts it raised, in the deleting transaction, naming the deletion; the others
    stay open. They used to stay in the manual queue for ever, offering a value no source had any more (taking it:
    409 ``source_deleted``). The unified client keeps the values the deleted record brought (documented)."""
    hub = any_hub
    httpx.post(f"{sandbox}/_sandbox/{SLUG}/seed", json={"contacts": 3, "jobs": 0}, timeout=30).raise_for_status()
    api = f"{sandbox}/{SLUG}/api/v2"
    v = hub.tenancy.create_vendor("Gone Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=api).id
    hb = csv_connection(hub, v.id)
    h17 = csv_connection(hub, v.id, "17hats")
    hub.crm.set_policy(v.id, field="last_name", kind="manual")

    def put(conn_id: str, rec: ClientRecord) -> None:
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])

    async def full() -> dict[str, Any]:
        run = hub.sync.create_run(v.id, tave, "full")
        try:
            return await drive_run(run.id, DirectSteps(hub.sync))  # type: ignore[no-any-return]
        finally:
            await hub.connections.aclose()

    put(hb, ClientRecord("h1", first_name="Dana", last_name="Smith", email="dana@x.com"))
    put(hb, ClientRecord("h2", first_name="Eli", last_name="Stone", email="eli@x.com"))
    remote: dict[str, str] = {}
    for first, last, email, company in (("Dana", "Smyth", "dana@x.com", "Smyth Studio"),
                                        ("Eli", "Stoner", "eli@x.com", None)):
        r = httpx.post(f"{api}/address-book", headers={"X-API-KEY": KEY}, timeout=30, json={
            "kind": "person", "firstName": first, "lastName": last, "email": email,
            **({"companyName": company} if company else {})})
        assert r.status_code == 201, r.text
        remote[first] = r.json()["id"]
    assert (await full())["status"] == "succeeded"
    dana, eli = person_of(hub, hb, "h1"), person_of(hub, hb, "h2")
    assert person_of(hub, tave, remote["Dana"]) == dana and person_of(hub, tave, remote["Eli"]) == eli
    put(h17, ClientRecord("s1", first_name="Eli", last_name="Stones", email="eli@x.com"))
    queue = {(x["crm_client_id"], x["incoming"]): x["id"] for x in hub.crm.list_conflicts(v.id)}
    assert set(queue) == {(dana, "Smyth"), (eli, "Stoner"), (eli, "Stones")}, queue
    assert hub.crm.get_client(v.id, dana)["company"] == "Smyth Studio"  # only the VSCO contact has it

    def dismissed() -> dict[str, str]:
        return {x["id"]: x["resolution"]["reason"] for x in hub.crm.list_conflicts(v.id, status="dismissed")}

    # a complete full sync finds Dana's VSCO contact gone: its conflict goes, in the run's deleting transaction
    assert httpx.delete(f"{api}/address-book/{remote['Dana']}", headers={"X-API-KEY": KEY},
                        timeout=30).status_code == 204
    summary = await full()
    assert summary["status"] == "succeeded" and summary["deleted"] == 1, summary
    gone = dismissed()
    assert list(gone) == [queue[dana, "Smyth"]] and "source deleted" in gone[queue[dana, "Smyth"]]
    assert summary["id"] in gone[queue[dana, "Smyth"]]
    assert {x["id"] for x in hub.crm.list_conflicts(v.id)} == {queue[eli, "Stoner"], queue[eli, "Stones"]}
    # the client keeps what the deleted record brought, and lists the record as deleted
    client = hub.crm.get_client(v.id, dana)
    assert (client["last_name"], client["company"]) == ("Smith", "Smyth Studio")
    assert [s["deleted_at"] is not None for s in client["sources"] if s["connection_id"] == tave] == [True]

    # the 17hats connection is removed: the conflict its record raised goes with it, the VSCO one stays
    hub.connections.delete(v.id, h17)
    assert set(dismissed()) == {queue[dana, "Smyth"], queue[eli, "Stones"]}
    assert h17 in dismissed()[queue[eli, "Stones"]] and "removed" in dismissed()[queue[eli, "Stones"]]
    assert [x["id"] for x in hub.crm.list_conflicts(v.id)] == [queue[eli, "Stoner"]]

    # a hook names Eli's deleted contact: the re-fetch's 404 marks it deleted and dismisses its conflict
    assert httpx.delete(f"{api}/address-book/{remote['Eli']}", headers={"X-API-KEY": KEY},
                        timeout=30).status_code == 204
    try:
        assert await hub.sync.refetch(tave, "contacts", remote["Eli"]) == "deleted"
    finally:
        await hub.connections.aclose()
    assert hub.crm.list_conflicts(v.id) == []
    assert "re-fetch" in dismissed()[queue[eli, "Stoner"]]
    with pytest.raises(Conflict) as closed:
        hub.crm.resolve_conflict(v.id, queue[eli, "Stoner"], "local")
    assert closed.value.code == "conflict_closed"


async def test_a_record_changing_a_field_again_supersedes_its_open_conflict(any_hub) -> None:  # type: ignore[no-untyped-def]
    """A HoneyBook export with a new phone for a client, then another with yet another phone: the first
    conflict is dismissed as superseded (found by a probe: both stayed open, and taking the first one's incoming
    value gave the client a phone no source had any more)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Supersede Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    hub.crm.set_policy(v.id, field="phone", kind="manual")

    def put(conn_id: str, rec: ClientRecord) -> None:
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])

    put(tave, ClientRecord("v1", first_name="Gia", last_name="Hart", email="gia@x.com", phone="+14155550111",
                           remote_modified_at=T0))
    put(hb, ClientRecord("h1", first_name="Gia", last_name="Hart", email="gia@x.com", phone="+14155550112"))
    [first] = hub.crm.list_conflicts(v.id)
    put(hb, ClientRecord("h1", first_name="Gia", last_name="Hart", email="gia@x.com", phone="+14155550113"))
    [second] = hub.crm.list_conflicts(v.id)
    assert second["id"] != first["id"] and (second["base"], second["incoming"]) == ("+14155550112", "+14155550113")
    [gone] = hub.crm.list_conflicts(v.id, status="dismissed")
    assert gone["id"] == first["id"] and second["id"] in gone["resolution"]["reason"]
    with pytest.raises(Conflict):
        hub.crm.resolve_conflict(v.id, first["id"], "incoming")
    # the record goes back to the client's phone: its open conflict is void too, and none is raised
    put(hb, ClientRecord("h1", first_name="Gia", last_name="Hart", email="gia@x.com", phone="+14155550111"))
    assert hub.crm.list_conflicts(v.id) == []
    assert len(hub.crm.list_conflicts(v.id, status="dismissed")) == 2
    # another field of the record changing leaves its phone conflict alone
    put(tave, ClientRecord("v1", first_name="Gia", last_name="Hart", email="gia@x.com", phone="+14155550120",
                           remote_modified_at=T0 + timedelta(hours=1)))
    put(hb, ClientRecord("h1", first_name="Gia", last_name="Hart", email="gia@x.com", phone="+14155550114"))
    put(hb, ClientRecord("h1", first_name="Gia", last_name="Hart", email="gia@x.com", phone="+14155550114",
                         company="Hart Co"))
    assert [x["incoming"] for x in hub.crm.list_conflicts(v.id)] == ["+14155550114"]
    assert hub.crm.get_client(v.id, person_of(hub, tave, "v1"))["phone"] == "+14155550120"


async def test_a_value_taken_from_a_conflict_is_owned_by_its_provider(any_hub) -> None:  # type: ignore[no-untyped-def]
    """A conflict settled by taking HoneyBook's value: HoneyBook holds that field now, so a policy naming HoneyBook
    the source of truth keeps it against Tave's next change (found by a probe: the field's source had no provider,
    and the next change was "neither side is the source of truth", an open conflict)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Owner Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    hub.crm.set_policy(v.id, field="company", kind="manual")

    def put(conn_id: str, rec: ClientRecord) -> None:
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])

    put(tave, ClientRecord("v1", first_name="Ivy", last_name="Cole", email="ivy@x.com", company="T Co",
                           remote_modified_at=T0))
    put(hb, ClientRecord("h1", first_name="Ivy", last_name="Cole", email="ivy@x.com", company="H Co"))
    [x] = hub.crm.list_conflicts(v.id)
    hub.crm.resolve_conflict(v.id, x["id"], "incoming")
    pid = person_of(hub, tave, "v1")
    assert hub.crm.get_client(v.id, pid)["field_sources"]["company"]["p"] == "honeybook"
    hub.crm.set_policy(v.id, field="company", kind="source_of_truth", source="honeybook")
    put(tave, ClientRecord("v1", first_name="Ivy", last_name="Cole", email="ivy@x.com", company="T2 Co",
                           remote_modified_at=T0 + timedelta(hours=1)))
    assert hub.crm.list_conflicts(v.id) == []
    [auto] = hub.crm.list_conflicts(v.id, status="auto")
    assert (auto["field"], auto["outcome"], auto["incoming"]) == ("company", "local", "T2 Co")
    assert hub.crm.get_client(v.id, pid)["company"] == "H Co"


async def test_a_custom_field_settled_with_a_value_is_bounded_as_an_edit_is(any_hub) -> None:  # type: ignore[no-untyped-def]
    """A conflict on a custom field settled with a value of the vendor's own takes at most what a PATCH of
    custom_fields takes (found by a probe: 500,000 characters were stored through the resolve route)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Bounded Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    for conn_id, rec in ((tave, ClientRecord("v1", first_name="Joy", last_name="Reed", email="joy@x.com",
                                             custom_fields={"lead_source": "Tave"}, remote_modified_at=T0)),
                         (hb, ClientRecord("h1", first_name="Joy", last_name="Reed", email="joy@x.com",
                                           custom_fields={"lead_source": "Web"}))):
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])
    [x] = hub.crm.list_conflicts(v.id)
    assert x["field"] == "custom.lead_source"
    with pytest.raises(InvalidInput) as refused:
        hub.crm.resolve_conflict(v.id, x["id"], "value", "y" * 10_001)
    assert refused.value.code == "value_too_large"
    assert hub.crm.list_conflicts(v.id)[0]["id"] == x["id"]
    assert hub.crm.resolve_conflict(v.id, x["id"], "value", {"channel": "referral"})["status"] == "resolved"
    assert hub.crm.get_client(v.id, person_of(hub, tave, "v1"))["custom_fields"] == {
        "lead_source": {"channel": "referral"}}


def test_two_undos_of_one_merge_at_once_split_it_once(any_hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The same merge undone twice at the same moment (a double click): one undo splits the record off, the other is
    409 already_undone (found by a probe on PostgreSQL: both read the merge as in force, each made a client of
    the record, and one of them was left with no source at all)."""
    import threading

    from wedsync.services.crm_sync import CrmResolver

    hub = any_hub
    v = hub.tenancy.create_vendor("Double Click Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    for conn_id, rec in ((tave, ClientRecord("v1", first_name="Kim", last_name="Lowe", email="kim@x.com")),
                         (hb, ClientRecord("h1", first_name="Kim", last_name="Lowe", email="kim@x.com",
                                           company="Lowe Co"))):
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])
    [merge] = hub.crm.list_merges(v.id)
    both_in = threading.Barrier(2)
    mapping = CrmResolver.mapping

    def slow_mapping(self, conn, connection_id, entity="client"):  # type: ignore[no-untyped-def]
        try:  # both undos inside their transaction at once (a serialized second one never gets here in time)
            both_in.wait(timeout=2)
        except threading.BrokenBarrierError:
            pass
        return mapping(self, conn, connection_id, entity)

    monkeypatch.setattr(CrmResolver, "mapping", slow_mapping)
    results: list[Any] = []

    def undo() -> None:
        try:
            results.append(hub.crm.undo_merge(v.id, merge["id"])["restored"]["id"])
        except Conflict as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=undo) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    restored = [r for r in results if r != "already_undone"]
    assert len(results) == 2 and results.count("already_undone") == 1, results
    assert len(restored) == 1 and person_of(hub, hb, "h1") == restored[0]
    with hub.db.read() as s:
        assert s.execute(select(func.count()).select_from(CrmClient).where(CrmClient.vendor_id == v.id)
                         ).scalar_one() == 2


async def test_undoing_a_merge_cancels_the_write_backs_still_pending_to_the_split_record(any_hub) -> None:  # type: ignore[no-untyped-def]
    """An edit of the client queued a write-back to its VSCO record, which has not gone yet (VSCO was down); the
    merge that brought that record is undone: the write-back is cancelled, not sent later onto the other person's
    record (found by a probe)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Pending Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    for conn_id, rec in ((hb, ClientRecord("h1", first_name="Lea", last_name="Mora", email="lea@x.com")),
                         (tave, ClientRecord("v1", first_name="Lea", last_name="Mora", email="lea@x.com",
                                             remote_modified_at=T0))):
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])
    pid = person_of(hub, hb, "h1")
    assert person_of(hub, tave, "v1") == pid
    hub.crm.update_client(v.id, pid, {"phone": "+14155550160"})
    [row] = hub.crm.list_outbox(v.id)
    assert (row["op"], row["status"]) == ("update_contact", "pending")
    merge = hub.crm.list_merges(v.id)[0]
    hub.crm.undo_merge(v.id, merge["id"])
    [row] = hub.crm.list_outbox(v.id)
    assert row["status"] == "failed" and merge["id"] in row["last_error"], row
    assert hub.crm.pending_outbox() == []


async def test_an_address_settled_with_a_value_is_checked_as_a_patch_checks_it(any_hub) -> None:  # type: ignore[no-untyped-def]
    """An address conflict settled with a value of the vendor's own takes VSCO Workspace's parts as text, as a PATCH
    does (found by a probe: {"foo": 1, "streetAddress": 5} was stored on the client and its write-back failed)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Address Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    for conn_id, rec in ((tave, ClientRecord("v1", first_name="Ola", last_name="Ruiz", email="ola@x.com",
                                             address={"streetAddress": "1 Oak St", "city": "Austin"},
                                             remote_modified_at=T0)),
                         (hb, ClientRecord("h1", first_name="Ola", last_name="Ruiz", email="ola@x.com",
                                           address={"streetAddress": "2 Elm St", "city": "Austin"}))):
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])
    [x] = hub.crm.list_conflicts(v.id)
    assert x["field"] == "address"
    for bad in ({"foo": 1}, {"streetAddress": 5}, {"city": "x" * 201}, ["1 Oak St"]):
        with pytest.raises(InvalidInput) as refused:
            hub.crm.resolve_conflict(v.id, x["id"], "value", bad)
        assert refused.value.code == "invalid_field", bad
    pid = person_of(hub, tave, "v1")
    assert hub.crm.get_client(v.id, pid)["address"] == {"streetAddress": "1 Oak St", "city": "Austin"}
    done = hub.crm.resolve_conflict(v.id, x["id"], "value", {"streetAddress": " 3 Pine St ", "city": "",
                                                                  "country": "Brazil"})
    assert done["resolution"]["value"] == {"streetAddress": "3 Pine St", "country": "BR"}
    assert hub.crm.get_client(v.id, pid)["address"] == {"streetAddress": "3 Pine St", "country": "BR"}


async def test_field_mapping_applies_to_existing_and_future_records(any_hub) -> None:  # type: ignore[no-untyped-def]
    hub = any_hub
    v = hub.tenancy.create_vendor("Mapping Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "contacts", [
            ClientRecord(f"v{i}", first_name=f"N{i}", last_name="X", email=f"n{i}@x.com",
                         custom_fields={"01hvenue": f"Barn {i}", "01hsecret": "internal"}) for i in range(3)])
    pid = person_of(hub, tave, "v0")
    assert hub.crm.get_client(v.id, pid)["custom_fields"] == {"01hvenue": "Barn 0", "01hsecret": "internal"}
    out = hub.crm.set_mappings(v.id, tave, {"01hvenue": "venue", "01hsecret": None})
    assert out["remapped_clients"] == 3
    assert hub.crm.get_client(v.id, pid)["custom_fields"] == {"venue": "Barn 0"}  # no resync needed
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "contacts", [ClientRecord("v9", first_name="N9", last_name="X",
                                                                 email="n9@x.com",
                                                                 custom_fields={"01hvenue": "Loft"})])
    assert hub.crm.get_client(v.id, person_of(hub, tave, "v9"))["custom_fields"] == {"venue": "Loft"}


async def test_a_mapping_that_would_lose_values_is_refused_and_changes_nothing(any_hub) -> None:  # type: ignore[no-untyped-def]
    """Two source fields mapped to one name (a record with both kept whichever it listed last) and a blank name
    are 422 invalid_mapping, and the mapping in place stays (found by a probe: both were accepted)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Bad Mapping Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "contacts", [ClientRecord(
            "v1", first_name="Fay", last_name="Moss", email="fay@x.com",
            custom_fields={"01hvenue": "Barn", "01hplace": "Loft"})])
    pid = person_of(hub, tave, "v1")
    hub.crm.set_mappings(v.id, tave, {"01hvenue": "venue"})
    for bad in ({"01hvenue": "venue", "01hplace": "venue"}, {"01hvenue": "  "}, {" ": "venue"}):
        with pytest.raises(InvalidInput) as refused:
            hub.crm.set_mappings(v.id, tave, bad)
        assert refused.value.code == "invalid_mapping", bad
    assert refused.value.code == "invalid_mapping"
    assert hub.crm.list_mappings(v.id, tave) == [{"entity": "client", "source_key": "01hvenue", "target": "venue"}]
    assert hub.crm.get_client(v.id, pid)["custom_fields"] == {"venue": "Barn", "01hplace": "Loft"}
    hub.crm.set_mappings(v.id, tave, {"01hvenue": "place", "01hplace": None})  # one name each: fine
    assert hub.crm.get_client(v.id, pid)["custom_fields"] == {"place": "Barn"}


async def test_a_mapping_change_leaves_the_vendors_values_and_undo_takes_the_renamed_field(any_hub) -> None:  # type: ignore[no-untyped-def]
    """Re-mapping never overwrites a value the vendor set under the same name, and a field the merged record
    brought under a name given by a later mapping leaves with it when the merge is undone (found live)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Remap Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "contacts", [ClientRecord("v1", first_name="Ana", last_name="Ruiz",
                                                                 email="ana@x.com")])
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, hb, "contacts", [ClientRecord("h1", first_name="Ana", last_name="Ruiz",
                                                               email="ana@x.com",
                                                               custom_fields={"lead_source": "Instagram"})])
    pid = person_of(hub, tave, "v1")
    assert person_of(hub, hb, "h1") == pid
    hub.crm.set_mappings(v.id, hb, {"lead_source": "source_channel"})
    assert hub.crm.get_client(v.id, pid)["custom_fields"] == {"source_channel": "Instagram"}
    hub.crm.update_client(v.id, pid, {"custom_fields": {"lead_source": "Referral from Bob"}})
    hub.crm.set_mappings(v.id, hb, {})  # HoneyBook's value goes back to its own name, where the vendor wrote
    assert hub.crm.get_client(v.id, pid)["custom_fields"] == {"lead_source": "Referral from Bob"}
    hub.crm.set_mappings(v.id, hb, {"lead_source": "source_channel"})
    assert hub.crm.get_client(v.id, pid)["custom_fields"] == {"lead_source": "Referral from Bob",
                                                              "source_channel": "Instagram"}
    out = hub.crm.undo_merge(v.id, hub.crm.list_merges(v.id)[0]["id"])
    assert out["client"]["custom_fields"] == {"lead_source": "Referral from Bob"}  # Tave has no source_channel
    assert out["restored"]["custom_fields"] == {"source_channel": "Instagram"}


async def test_a_corrected_email_finds_the_client_next_time(any_hub) -> None:  # type: ignore[no-untyped-def]
    """The vendor corrects a client's e-mail in WedSync; a record arriving later with the corrected address
    joins that client instead of becoming a duplicate (the identity keys were only ever the sources')."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Correction Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = csv_connection(hub, v.id)
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "contacts", [ClientRecord("v1", first_name="Maya", last_name="Lindqvist",
                                                                 email="maya.l@old.example")])
    pid = person_of(hub, tave, "v1")
    hub.crm.update_client(v.id, pid, {"email": "maya.lindqvist@new.example"})
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, hb, "contacts", [ClientRecord("h1", first_name="Maya", last_name="Lindqvist",
                                                               email="maya.lindqvist@new.example")])
    assert person_of(hub, hb, "h1") == pid
    assert len(hub.crm.list_clients(v.id)[0]) == 1
    # a name longer than VSCO keeps (the spec's maxLength 48) is refused, not cut short there silently
    with pytest.raises(InvalidInput) as refused:
        hub.crm.update_client(v.id, pid, {"first_name": "M" * 64})
    assert refused.value.code == "value_too_long" and refused.value.details["limit"] == 48
    assert hub.crm.update_client(v.id, pid, {"first_name": "M" * 48})["first_name"] == "M" * 48


async def test_undoing_a_merge_keeps_the_keys_of_the_vendors_edit(any_hub) -> None:  # type: ignore[no-untyped-def]
    """The vendor corrects a client's e-mail, a record with the old address merges and that merge is undone: a
    record with the corrected address still joins the client (found live: the undo rebuilt the survivor's keys
    from its source records only, so the corrected address made a second client)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Undo Keys Studio")
    hb, hats, iris = (csv_connection(hub, v.id, p) for p in ("honeybook", "17hats", "iris-works"))

    def put(conn_id: str, rec: ClientRecord) -> None:
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])

    put(hb, ClientRecord("h1", first_name="Ana", last_name="Ruiz", email="ana.ruiz@oldjob.com"))
    pid = person_of(hub, hb, "h1")
    hub.crm.update_client(v.id, pid, {"email": "ana@newmail.com"})
    put(hats, ClientRecord("77", first_name="Ana", last_name="Ruiz", email="ana.ruiz@oldjob.com",
                           phone="+15552013344"))
    assert person_of(hub, hats, "77") == pid
    out = hub.crm.undo_merge(v.id, hub.crm.list_merges(v.id)[0]["id"])
    assert out["client"]["email"] == "ana@newmail.com" and out["client"]["phone"] is None
    put(iris, ClientRecord("iw1", first_name="Ana", last_name="Ruiz", email="ana@newmail.com"))
    assert person_of(hub, iris, "iw1") == pid
    assert len(hub.crm.list_clients(v.id)[0]) == 2  # Ana, and the 17hats record on its own again
    # the split record's own phone is not the survivor's any more: a record with it finds the restored client
    put(iris, ClientRecord("iw2", first_name="Ana", last_name="Ruiz", phone="+15552013344"))
    assert person_of(hub, iris, "iw2") == out["restored"]["id"]


async def test_a_diminutive_sharing_a_phone_joins_its_given_name(any_hub) -> None:  # type: ignore[no-untyped-def]
    """Peggy/Margaret, Bob/Robert, Pepe/José with a shared phone are one person to the rules, and now candidates
    too, in either order (found live: a phone key blocks with the name initials, which a diminutive with another
    initial does not share)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Nickname Studio")
    hats, hb = csv_connection(hub, v.id, "17hats"), csv_connection(hub, v.id)
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, hats, "contacts", [
            ClientRecord("1", first_name="Margaret", last_name="Hale", email="mh@a.com", phone="+15552017777"),
            ClientRecord("2", first_name="Bob", last_name="Jones", email="bj@a.com", phone="+15552013344"),
            ClientRecord("3", first_name="José", last_name="García", phone="+34612345678"),
            ClientRecord("4", first_name="Bill", last_name="Hale", phone="+15552017777")])  # Margaret's household
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, hb, "contacts", [
            ClientRecord("h1", first_name="Peggy", last_name="Hale", email="peggy@b.com", phone="+15552017777"),
            ClientRecord("h2", first_name="Robert", last_name="Jones", email="robert@b.com", phone="+15552013344"),
            ClientRecord("h3", first_name="Pepe", last_name="Garcia", phone="+34612345678"),
            ClientRecord("h4", first_name="William", last_name="Hale", phone="+15552017777")])
    for hats_id, hb_id in (("1", "h1"), ("2", "h2"), ("3", "h3"), ("4", "h4")):
        assert person_of(hub, hb, hb_id) == person_of(hub, hats, hats_id), hb_id
    assert hub.crm.merge_summary(v.id) == {"phone+name": 4}
    assert len(hub.crm.list_clients(v.id)[0]) == 4


async def test_a_key_shared_by_very_many_clients_finds_no_candidates(any_hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A planner's e-mail on every inquiry she sends: each new record was compared with every client under it,
    a page's work growing with the book (a 20,000-row file with one shared date held the write lock past SQLite's
    30 s timeout). Past MAX_KEY_CANDIDATES such a key tells no one apart and finds no candidates."""
    from wedsync.services import crm_sync

    hub = any_hub
    v = hub.tenancy.create_vendor("Planner Inbox")
    hb = csv_connection(hub, v.id)
    monkeypatch.setattr(crm_sync, "MAX_KEY_CANDIDATES", 40)
    import hashlib

    def name(i: int, salt: str) -> str:  # 45 names with nothing in common
        return hashlib.sha256(f"{salt}{i}".encode()).hexdigest()[:10].translate(str.maketrans("0123456789",
                                                                                          "ghijklmnop"))

    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, hb, "contacts", [
            ClientRecord(f"h{i}", first_name=name(i, "f"), last_name=name(i, "l"), email="planner@venue.example")
            for i in range(45)])
    assert len(hub.crm.list_clients(v.id, limit=500)[0]) == 45
    compared = []
    real = crm_sync.decide
    monkeypatch.setattr(crm_sync, "decide", lambda f, g: compared.append(1) or real(f, g))
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, hb, "contacts", [
            ClientRecord(f"n{i}", first_name=name(i, "nf"), last_name=name(i, "nl"), email="planner@venue.example")
            for i in range(5)])
    # 45 clients under the key: none of them compared (it was 5 x 45), only the page's own records
    assert len(compared) == 0 + 1 + 2 + 3 + 4
    assert len(hub.crm.list_clients(v.id, limit=500)[0]) == 50


async def test_zapier_hooks_apply_in_order_and_merge(any_hub) -> None:  # type: ignore[no-untyped-def]
    hub = any_hub
    v = hub.tenancy.create_vendor("Hook Studio")
    hb = csv_connection(hub, v.id)

    def row(body: dict[str, Any], n: int) -> InboxRow:
        return InboxRow(id=n, vendor_id=v.id, connection_id=hb, provider="honeybook", event_id=f"e{n}",
                        event_type=None, record_id=None, body=json.dumps(body).encode(),
                        received_at=T0, attempts=0)

    newer = {"event": "client_created", "client_first_name": "Maya", "client_last_name": "Lopez",
             "client_email": "maya@x.com", "client_phone": "+1 415 555 0101", "occurred_at": "2026-10-02T10:00:00Z"}
    older = {**newer, "client_phone": "+1 415 555 0999", "occurred_at": "2026-10-01T10:00:00Z"}
    assert hub.crm.ingest_zap(row(newer, 1)).startswith("created")
    assert hub.crm.ingest_zap(row(older, 2)) == "unchanged"  # delivered late: never overwrites the newer one
    booked = {"event": "project_booked", "client_first_name": "Maya", "client_last_name": "Lopez",
              "client_email": "maya@x.com", "project_name": "Maya & Sam", "project_date": "2027-09-18",
              "occurred_at": "2026-10-03T10:00:00Z"}
    hub.crm.ingest_zap(row(booked, 3))
    with hub.db.read() as s:
        people = list(s.execute(select(CrmClient).where(CrmClient.vendor_id == v.id)).scalars())
    assert len(people) == 1 and people[0].phone == "+14155550101" and people[0].wedding_dates == ["2027-09-18"]
    assert hub.crm.get_client(v.id, people[0].id)["weddings"][0]["event_date"] == date(2027, 9, 18).isoformat()


async def test_a_late_hook_fills_what_newer_hooks_never_carried_whatever_the_delivery_order(any_hub) -> None:  # type: ignore[no-untyped-def]
    """HoneyBook's Client Created carries the company and address, New Project Booked does not. Delivered out of
    order (the project first), the older client hook was dropped as stale as a whole, so the client never got
    its company or address (found by a probe). Each field now keeps the value of the newest hook that carried
    it: the final record is the same for every delivery order, and a late hook never overwrites a field a newer
    one set (here the phone of the project hook, and the company of a later client hook)."""
    from itertools import permutations

    hub = any_hub
    v = hub.tenancy.create_vendor("Out Of Order Studio")
    hb = csv_connection(hub, v.id)

    def events(tag: str) -> list[dict[str, Any]]:
        who = {"client_id": tag, "email": f"renata.{tag}@example.com"}
        created = {"event": "client.created", "event_id": f"cc-{tag}", **who, "first_name": "Renata",
                   "last_name": f"Fill{tag}", "phone_number": "+1 415 555 0123", "company_name": "Renata Events Ltd",
                   "address": "12 Ocean Ave", "created_at": "2026-12-01T09:00:00Z"}
        renamed = {"event": "client.created", "event_id": f"cc2-{tag}", **who, "first_name": "Renata",
                   "last_name": f"Fill{tag}", "company_name": "Renata & Co", "created_at": "2026-12-01T12:00:00Z"}
        booked = {"event": "project.booked", "event_id": f"pb-{tag}", "project_id": f"p-{tag}",
                  "project_name": "Renata wedding", "project_date": "2027-05-01", "booked_at": "2026-12-02T10:00:00Z",
                  "client_id": tag, "client_first_name": "Renata", "client_last_name": f"Fill{tag}",
                  "client_email": who["email"], "client_phone": "+1 415 555 0177"}
        return [created, renamed, booked]

    # received after every hook's own time (a hook's time is at most its receipt)
    received = datetime(2026, 12, 7, tzinfo=UTC)
    finals = set()
    n = 0
    for i, order in enumerate(permutations(range(3))):
        batch = events(f"o{i}")
        for k in order:
            n += 1
            hub.crm.ingest_zap(InboxRow(id=n, vendor_id=v.id, connection_id=hb, provider="honeybook",
                                        event_id=batch[k]["event_id"], event_type=None, record_id=None,
                                        body=json.dumps(batch[k]).encode(), received_at=received, attempts=0))
        with hub.db.read() as s:
            row = s.execute(select(Client).where(Client.connection_id == hb,
                                                 Client.email == f"renata.o{i}@example.com")).scalar_one()
            person = s.get(CrmClient, row.crm_client_id)
        assert person is not None
        got = (row.company, row.address, row.phone, row.remote_modified_at, row.first_name,
               person.company, person.address, person.phone)
        assert got[:3] == ("Renata & Co", {"streetAddress": "12 Ocean Ave"}, "+14155550177"), (order, got)
        assert row.remote_modified_at == datetime(2026, 12, 2, 10, tzinfo=UTC)
        finals.add(json.dumps([*got[:3], got[4:]], default=str))
        # the same hooks again (a Zap replay) change nothing
        again = hub.crm.ingest_zap(InboxRow(id=n, vendor_id=v.id, connection_id=hb, provider="honeybook",
                                            event_id="replay", event_type=None, record_id=None,
                                            body=json.dumps(batch[0]).encode(), received_at=received, attempts=0))
        assert again.startswith("unchanged"), (order, again)
    assert len(finals) == 1, finals  # the same client for all six delivery orders

    # written whole afterwards (a CSV import, a sync page): every field is as of that write, even an empty one,
    # so a hook older than it changes nothing, and one newer than it sets what it carries
    with hub.db.read() as s:
        row = s.execute(select(Client).where(Client.connection_id == hb,
                                             Client.email == "renata.o0@example.com")).scalar_one()
    whole = ClientRecord(row.remote_id, first_name="Renata", last_name="Filled", email=row.email,
                         remote_modified_at=datetime(2026, 12, 5, tzinfo=UTC))
    with hub.db.engine.begin() as c:
        assert hub.sync.upsert(c, v.id, hb, "contacts", [whole])[1] == 1
    late = {**events("o0")[0], "event_id": "late", "created_at": "2026-12-04T00:00:00Z"}
    later = {**events("o0")[1], "event_id": "later", "created_at": "2026-12-06T00:00:00Z"}
    for k, body in enumerate((late, later)):
        hub.crm.ingest_zap(InboxRow(id=100 + k, vendor_id=v.id, connection_id=hb, provider="honeybook",
                                    event_id=body["event_id"], event_type=None, record_id=None,
                                    body=json.dumps(body).encode(), received_at=received, attempts=0))
        with hub.db.read() as s:
            row = s.execute(select(Client).where(Client.id == row.id)).scalar_one()
        if k == 0:
            assert (row.company, row.address, row.phone, row.last_name) == (None, None, None, "Filled")
    assert (row.company, row.address, row.phone, row.last_name) == ("Renata & Co", None, None, "Fillo0")


async def test_a_honeybook_export_of_foreign_clients_imports_back_without_conflicts(any_hub) -> None:  # type: ignore[no-untyped-def]
    """Tave clients abroad, with whole addresses, exported in HoneyBook's layout (no Country column, one Address
    column) and imported back: each joins its client with no conflict. The export wrote their phones nationally
    for their address's country ("(16) 96584-9521"), which the import read as US numbers (+5516965849521 came
    back as +16965849521), and the street-only Address cell opened an address conflict for every client; found
    by a probe."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Abroad Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    people = [("Bruna", "Costa", "+5516965849521", {"streetAddress": "Rua Augusta 1", "city": "São Paulo",
                                                    "postalCode": "01305-000", "country": "BR"}),
              ("Jonas", "Weber", "+4915078753730", {"streetAddress": "Hauptstr. 1", "city": "Berlin",
                                                    "postalCode": "10115", "country": "DE"}),
              ("Ava", "Reed", "+14155550134", {"streetAddress": "1 Market St", "city": "San Francisco",
                                               "state": "CA", "postalCode": "94105", "country": "US"})]
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "contacts", [
            ClientRecord(f"v{i}", first_name=first, last_name=last, email=f"{first.lower()}@x.com", phone=phone,
                         address=address, remote_modified_at=T0)
            for i, (first, last, phone, address) in enumerate(people)])
    exported = b"".join(hub.crm.export_csv(v.id, "honeybook"))
    rows = list(csv.reader(io.StringIO(exported.decode())))
    assert [(r[3], r[5]) for r in rows[1:]] == [("+55 16 96584-9521", "Rua Augusta 1"),
                                                 ("+49 15078 753730", "Hauptstr. 1"),
                                                 ("(415) 555-0134", "1 Market St")]  # national only in the US
    job = await import_file(hub, v.id, exported)
    assert (job["status"], job["created"], job["merged"], job["conflicts"]) == ("succeeded", 3, 3, 0), job
    assert hub.crm.list_conflicts(v.id) == [] and hub.crm.list_conflicts(v.id, status="auto") == []
    hb = hub.crm.connection_for(v.id, "honeybook").id
    for i, (_, _, phone, address) in enumerate(people):
        pid = person_of(hub, tave, f"v{i}")
        client = hub.crm.get_client(v.id, pid)
        assert (client["phone"], client["address"]) == (phone, address)
        assert {s["connection_id"] for s in client["sources"]} == {tave, hb}

    # a street the HoneyBook file changes is a change of the street: the city and country it has no column
    # for stay (the client's address is not cut down to the street)
    moved = exported.replace(b"Rua Augusta 1", b"Rua Oscar Freire 9")
    again = await import_file(hub, v.id, moved)
    assert (again["updated"], again["conflicts"]) == (1, 0), again
    assert hub.crm.get_client(v.id, person_of(hub, tave, "v0"))["address"] == {**people[0][3],
                                                                               "streetAddress": "Rua Oscar Freire 9"}

    # the vendor's HoneyBook connection reads phones as British: the export is written for that import
    hub.connections.update_settings(v.id, hb, {"default_region": "GB"})
    for_gb = b"".join(hub.crm.export_csv(v.id, "honeybook"))
    assert [r[3] for r in csv.reader(io.StringIO(for_gb.decode()))][1:] == [
        "+55 16 96584-9521", "+49 15078 753730", "+1 415-555-0134"]
    third = await import_file(hub, v.id, for_gb)
    assert (third["status"], third["created"], third["updated"], third["conflicts"]) == ("succeeded", 0, 0, 0), third


def test_concurrent_first_imports_share_one_connection(any_hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Callers that all find no HoneyBook connection and go on to create one (held at a barrier until every
    one of them has looked) end up with one connection between them: each created its own (2-3 of 4 concurrent
    first imports; found by a probe)."""
    import threading

    from wedsync.services import connections

    hub = any_hub
    v = hub.tenancy.create_vendor("Busy Studio")
    callers = 4
    barrier = threading.Barrier(callers, timeout=10)
    real = connections.get_connector_class

    def after_everyone_looked(provider: str) -> Any:
        barrier.wait()
        return real(provider)

    monkeypatch.setattr(connections, "get_connector_class", after_everyone_looked)
    got: list[str] = []
    failed: list[BaseException] = []

    def first_import() -> None:
        try:
            got.append(hub.crm.connection_for(v.id, "honeybook", create=True).id)
        except BaseException as exc:  # reported below
            failed.append(exc)

    threads = [threading.Thread(target=first_import) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == [] and len(got) == callers
    assert count(hub, Connection, vendor_id=v.id, provider="honeybook") == 1
    assert set(got) == {hub.crm.connection_for(v.id, "honeybook").id}


async def test_a_file_cut_mid_row_reports_its_last_line(any_hub) -> None:  # type: ignore[no-untyped-def]
    """A download cut mid-row: its last line (2 of 12 cells) is reported and skipped, not imported as a client
    without an e-mail; a row missing only trailing empty cells lands with a warning (found by a probe)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Cut Studio")
    data = hb_csv([hb_row("Ana", "Ruiz", "ana@x.com"), hb_row("Bo", "Lee", "bo@x.com")])
    data = data.replace(b"bo@x.com,,,,,,,,,", b"bo@x.com") + b"Chlo\xc3\xa9,Aba"
    job = await import_file(hub, v.id, data)
    assert (job["status"], job["processed_rows"], job["good_rows"], job["bad_rows"]) == ("succeeded", 3, 2, 1), job
    assert [(e["line"], e["code"], e["skipped"]) for e in hub.crm.import_errors(v.id, job["id"])] == [
        (3, "missing_cells", False), (4, "missing_cells", True)]
    assert sorted(c["first_name"] for c in hub.crm.list_clients(v.id)[0]) == ["Ana", "Bo"]


async def test_an_export_reads_each_connections_weddings_once(any_hub) -> None:  # type: ignore[no-untyped-def]
    """Exporting a vendor reads the weddings of each connection once (two columns), and each batch of 1,000
    clients then loads only the weddings its clients have: every batch read every wedding of the connection,
    whole, so a large vendor's export was quadratic (20,000 clients: 7 s, 60,000: 58 s; docs/benchmarks.md).
    Each client still gets its first wedding (by id)."""
    import time

    from sqlalchemy import event

    from wedsync.domain.crm import WeddingRecord

    hub = any_hub
    v = hub.tenancy.create_vendor("Big Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    n = 2500
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "contacts", [
            ClientRecord(f"c{i:05d}", first_name=f"F{i}", last_name=f"L{i}", email=f"c{i}@x.com",
                         remote_modified_at=T0) for i in range(n)])
        hub.sync.upsert(c, v.id, tave, "jobs", [
            WeddingRecord(f"j{i:05d}", name=f"Wedding {i}", event_date=date(2027, 1, 1),
                          client_remote_ids=[f"c{i:05d}", f"c{i + 1:05d}"], remote_modified_at=T0)
            for i in range(0, n, 2)])
    time.sleep(0.01)  # ids are ULIDs: a later millisecond, a later id
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "jobs", [  # a second, later wedding of c00000: the first one stays
            WeddingRecord("k00000", name="Vow renewal", client_remote_ids=["c00000"], remote_modified_at=T0)])
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM weddings" in statement:
            statements.append(statement)

    event.listen(hub.db.engine, "before_cursor_execute", seen)
    try:
        for kw in ({}, {"connection_id": tave}):
            statements.clear()
            rows = list(csv.reader(io.StringIO(b"".join(hub.crm.export_csv(v.id, "honeybook", **kw)).decode())))
            assert len(rows) == n + 1 and all(r[6] == f"Wedding {(int(r[0][1:]) // 2) * 2}" for r in rows[1:]), kw
            whole_scans = [x for x in statements if "weddings.id IN" not in x]
            assert len(whole_scans) == 1, (kw, len(whole_scans))
    finally:
        event.remove(hub.db.engine, "before_cursor_execute", seen)
    if hub.db.is_sqlite:  # a page of clients reads its rows off an index, in order, not all of them and a sort
        with hub.db.engine.connect() as c:
            for sql in ("SELECT * FROM crm_clients WHERE vendor_id = 'v' AND id > 'a' ORDER BY id LIMIT 1000",
                        "SELECT * FROM clients WHERE connection_id = 'c' AND deleted_at IS NULL AND id > 'a' "
                        "ORDER BY id LIMIT 1000"):
                plan = " ".join(str(r[-1]) for r in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
                assert "TEMP B-TREE" not in plan, plan


async def test_a_country_typed_in_a_csv_is_the_iso_code_workspace_stores(any_hub) -> None:  # type: ignore[no-untyped-def]
    """A 17hats row saying "Brazil" for a Tave client whose address says "BR" is the same address: it opened an
    address conflict for every such client, and accepting it dropped the country on the write-back (probe)."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Brasil Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    address = {"streetAddress": "Rua Augusta 1", "city": "São Paulo", "postalCode": "01305-000", "country": "BR"}
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "contacts", [
            ClientRecord("v0", first_name="Bruna", last_name="Costa", email="bruna@x.com", phone="+5516965849521",
                         address=address, remote_modified_at=T0)])
    header = ("Contact ID,First Name,Last Name,Email,Phone,Company,Street,City,State,Zip,Country,Project,"
              "Event Date,Status,Lead Source,Created On\r\n")
    data = (header + "501,Bruna,Costa,bruna@x.com,(16) 96584-9521,,Rua Augusta 1,São Paulo,,01305-000,Brazil,"
            ",,,,\r\n502,Ava,Reed,ava@x.com,(415) 555-0134,,1 Market St,San Francisco,CA,94105,United States,"
            ",,,,\r\n").encode()
    job = hub.crm.create_import(v.id, "17hats", data, filename="contacts.csv", chunk_size=10)
    done = await drive_import(job["id"], DirectImportSteps(hub.crm))
    assert (done["status"], done["created"], done["merged"], done["conflicts"]) == ("succeeded", 2, 1, 0), done
    assert hub.crm.list_conflicts(v.id) == [] and hub.crm.list_conflicts(v.id, status="auto") == []
    assert hub.crm.get_client(v.id, person_of(hub, tave, "v0"))["address"] == address
    seventeen = hub.crm.connection_for(v.id, "17hats").id
    assert hub.crm.get_client(v.id, person_of(hub, seventeen, "17h-502"))["address"]["country"] == "US"
    rows = list(csv.reader(io.StringIO(b"".join(hub.crm.export_csv(v.id, "17hats")).decode())))
    assert sorted(r[10] for r in rows[1:]) == ["BR", "US"]  # read back by 17hats' import as the same country


async def test_venues_and_vendor_companies_in_the_address_book_are_not_clients(any_hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    """Workspace's address book holds venues (``kind: location``) and vendor companies beside people: "The Drake
    Hotel" became a unified client and a client-export row with no name (probe). Such entries are kept as
    source records, without a unified client, out of matching and out of client exports."""
    hub = any_hub
    httpx.post(f"{sandbox}/_sandbox/{SLUG}/seed", json={"contacts": 6, "jobs": 2}, timeout=30).raise_for_status()
    api = f"{sandbox}/{SLUG}/api/v2"
    for body in ({"kind": "location", "name": "The Drake Hotel", "email": "events@thedrake.example",
                  "address": {"streetAddress": "140 E Walton Pl", "city": "Chicago", "country": "US"}},
                 {"kind": "company", "name": "Bloom & Vine Florals", "email": "hello@bloomvine.example"}):
        httpx.post(f"{api}/address-book", json=body, headers={"X-API-KEY": KEY}, timeout=30).raise_for_status()
    v = hub.tenancy.create_vendor("Drake Weddings")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=api)
    run = hub.sync.create_run(v.id, tave.id, "full")
    summary = await drive_run(run.id, DirectSteps(hub.sync))
    await hub.connections.aclose()
    assert summary["status"] == "succeeded", summary
    with hub.db.read() as s:
        kinds = {r.kind: r for r in s.execute(select(Client).where(Client.connection_id == tave.id)).scalars()}
        by_kind = {k: [r.crm_client_id for r in s.execute(select(Client).where(
            Client.connection_id == tave.id, Client.kind == k)).scalars()] for k in kinds}
    assert set(by_kind) == {"person", "location", "company"}
    assert by_kind["location"] == [None] and by_kind["company"] == [None]  # kept, not a client
    assert all(by_kind["person"]) and count(hub, CrmClient, vendor_id=v.id) == len(set(by_kind["person"]))
    names = {c["display_name"] for c in hub.crm.list_clients(v.id, limit=100)[0]}
    assert "The Drake Hotel" not in names and "Bloom & Vine Florals" not in names
    for exported in (hub.crm.export_csv(v.id, "honeybook"), hub.crm.export_csv(v.id, "honeybook",
                                                                               connection_id=tave.id)):
        rows = list(csv.reader(io.StringIO(b"".join(exported).decode())))[1:]
        assert len(rows) == len(by_kind["person"]) and all(r[0] or r[1] for r in rows)  # every row a named person
    # a person created in Workspace later joins as usual (the venue is no candidate for her)
    httpx.post(f"{api}/address-book", json={"kind": "person", "firstName": "Mina", "lastName": "Drake",
                                            "email": "events@thedrake.example"},
               headers={"X-API-KEY": KEY}, timeout=30).raise_for_status()
    run = hub.sync.create_run(v.id, tave.id, "full")
    assert (await drive_run(run.id, DirectSteps(hub.sync)))["status"] == "succeeded"
    await hub.connections.aclose()
    assert count(hub, CrmClient, vendor_id=v.id) == len(by_kind["person"]) + 1


@pytest.mark.parametrize("hook_first", [False, True])
async def test_a_honeybook_project_from_a_csv_and_from_a_hook_is_one_wedding(any_hub, hook_first) -> None:  # type: ignore[no-untyped-def]
    """The CSV has no project id (``csvp-`` + hash of client, name and date), the "New Project Booked" hook has
    one (``hb-job-PRJ9``): the same project imported both ways had become two weddings (probe). Either order,
    and the file imported again, gives one wedding under the hook's id; a project of another date stays apart."""
    hub = any_hub
    v = hub.tenancy.create_vendor("One Project Studio")
    hb = csv_connection(hub, v.id)
    data = hb_csv([hb_row("Renée", "Marc", "renee@example.com", "", "Renée & Marc Wedding", "06/14/2027"),
                   hb_row("Ida", "Holm", "ida@example.com", "", "Ida & Bo Wedding", "07/01/2027")])
    hook = {"event": "project.booked", "event_id": "b1", "project_id": "PRJ9", "project_name": "Renée & Marc Wedding",
            "project_date": "2027-06-14", "client_first_name": "Renée", "client_last_name": "Marc",
            "client_email": "renee@example.com", "occurred_at": "2026-10-02T10:00:00Z"}
    other = {**hook, "event_id": "b2", "project_id": "PRJ10", "project_date": "2028-06-14"}  # another date

    def ingest(body: dict[str, Any], n: int) -> str:
        return str(hub.crm.ingest_zap(InboxRow(id=n, vendor_id=v.id, connection_id=hb, provider="honeybook",
                                               event_id=f"e{n}", event_type=None, record_id=None,
                                               body=json.dumps(body).encode(), received_at=T0, attempts=0)))

    if hook_first:
        ingest(hook, 1)
    assert (await import_file(hub, v.id, data))["status"] == "succeeded"
    if not hook_first:
        ingest(hook, 1)
    assert (await import_file(hub, v.id, data))["status"] == "succeeded"  # the same file again
    ingest(other, 2)
    with hub.db.read() as s:
        weddings = sorted((w.remote_id.rsplit("-", 1)[0], w.name, w.event_date.isoformat() if w.event_date else None)
                          for w in s.execute(select(Wedding).where(Wedding.connection_id == hb,
                                                                   Wedding.deleted_at.is_(None))).scalars())
    assert weddings == [("csvp", "Ida & Bo Wedding", "2027-07-01"), ("hb-job", "Renée & Marc Wedding", "2027-06-14"),
                        ("hb-job", "Renée & Marc Wedding", "2028-06-14")]
    renee = person_of(hub, hb, next(iter(_hb_client_ids(hub, hb, "renee@example.com"))))
    assert len(hub.crm.get_client(v.id, renee)["weddings"]) == 2


def _hb_client_ids(hub: Any, connection_id: str, email: str) -> set[str]:
    with hub.db.read() as s:
        return set(s.execute(select(Client.remote_id).where(Client.connection_id == connection_id,
                                                            Client.email == email)).scalars())


async def test_a_file_of_whole_chunks_takes_no_empty_step(any_hub) -> None:  # type: ignore[no-untyped-def]
    """60 rows in chunks of 10 are 6 chunks and 6 steps: the last full chunk says it is the last (an empty
    seventh step and chunk used to follow); 61 rows are 7, and a recovered seventh chunk of nothing records nothing."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Whole Chunks Studio")
    steps_taken: list[int] = []

    class CountingSteps(DirectImportSteps):
        async def chunk(self, plan: dict[str, Any], chunk: int) -> dict[str, Any]:
            steps_taken.append(chunk)
            return await super().chunk(plan, chunk)

    for n, chunks in ((60, 6), (61, 7), (10, 1), (9, 1)):
        steps_taken.clear()
        rows = [hb_row(f"Pat{i}", f"Whole{n}", f"pat{i}.{n}@example.org") for i in range(n)]
        job = hub.crm.create_import(v.id, "honeybook", hb_csv(rows), chunk_size=10)
        done = await drive_import(job["id"], CountingSteps(hub.crm))
        assert (done["status"], done["processed_rows"], done["chunks_total"], done["chunks_done"]) == (
            "succeeded", n, chunks, chunks), (n, done)
        assert steps_taken == list(range(chunks)), n

    # a full chunk replayed from its row (its step's result was lost) may have been the last: the next finds no
    # rows, and no empty chunk is recorded
    job = hub.crm.create_import(v.id, "honeybook", hb_csv(rows[:10]), chunk_size=10)
    plan = hub.crm.begin_import(job["id"])
    assert hub.crm.import_chunk(plan, 0)["last"] is True
    assert hub.crm.import_chunk(plan, 1) == {"chunk": 1, "rows": 0, "last": True, "replayed": False}
    assert hub.crm.finish_import(job["id"])["chunks_total"] == 1


async def test_values_wider_than_the_store_keeps_are_reported_and_their_chunk_lands(any_hub) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL a 250-character first name or a 34-character project stage made the chunk's insert fail
    (value too long for type character varying): none of its rows landed, the job stayed running, no report.
    The cells are reported (``value_too_long``) and dropped; every row of the chunk lands."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Wide Studio")
    long_stage = hb_row("Lou", "Stage", "lou@example.com", project="Lou & Kim", day="06/14/2027")
    long_stage[9] = "Proposal Sent - Awaiting Signature"
    rows = [hb_row("Ana", "Ruiz", "ana@example.com"), long_stage, hb_row("N" * 250, "Long", "long@example.com"),
            hb_row("Bo", "Lee", "bo@example.com")]
    job = await import_file(hub, v.id, hb_csv(rows))
    assert (job["status"], job["good_rows"], job["bad_rows"]) == ("succeeded", 4, 0), job
    assert [(e["line"], e["column"], e["code"]) for e in hub.crm.import_errors(v.id, job["id"])] == [
        (3, "Project Stage", "value_too_long"), (4, "First Name", "value_too_long")]
    clients = {c["email"]: c for c in hub.crm.list_clients(v.id)[0]}
    assert set(clients) == {"ana@example.com", "lou@example.com", "long@example.com", "bo@example.com"}
    assert (clients["long@example.com"]["first_name"], clients["long@example.com"]["last_name"]) == (None, "Long")
    with hub.db.read() as s:
        assert s.execute(select(Wedding.name, Wedding.stage)).all() == [("Lou & Kim", None)]


def test_a_csv_rows_project_is_looked_up_among_its_dates_weddings_only(hub) -> None:  # type: ignore[no-untyped-def]
    """Each new project of a CSV row without a project id is looked up among the connection's projects of its date
    (is it a hook's project already?). Without an index on (connection_id, event_date) every lookup read every
    wedding of the connection: importing 2,000 rows with projects took 28 s into an empty connection and 421 s
    into one with 100,000 weddings (found by a probe with a 200,000-row file). Counted in SQLite VM steps: the
    work of the lookups does not grow with the weddings of other dates (migration 0019)."""
    from datetime import timedelta

    from sqlalchemy import insert

    from wedsync.connectors.channels.csv_layouts import project_hash_id
    from wedsync.domain.crm import WeddingRecord
    from wedsync.store.tables import utcnow

    v = hub.tenancy.create_vendor("Busy Studio")
    conn_id = csv_connection(hub, v.id)
    day = date(2027, 6, 12)
    new = [WeddingRecord(remote_id=project_hash_id(f"csv-{i}", f"P{i}", day), name=f"P{i}", event_date=day,
                         client_remote_ids=[f"csv-{i}"]) for i in range(50)]

    def steps() -> int:
        count = [0]
        with hub.db.engine.begin() as c:
            raw = c.connection.driver_connection
            raw.set_progress_handler(lambda: count.__setitem__(0, count[0] + 1), 100)
            try:
                hub.crm._same_projects(c, conn_id, new)
            finally:
                raw.set_progress_handler(None, 100)
        return count[0]

    alone = steps()
    now = utcnow()
    with hub.db.engine.begin() as c:
        c.execute(insert(Wedding), [dict(
            id=new_id(), vendor_id=v.id, connection_id=conn_id, provider="honeybook", remote_id=f"hb-job-{i}",
            name=f"n{i}", event_date=day + timedelta(days=1 + i % 300), client_remote_ids=[f"csv-x{i}"],
            custom_fields={}, content_hash="0" * 32, synced_at=now, version=1) for i in range(5_000)])
    crowded = steps()
    assert crowded < 2 * alone + 50, (alone, crowded)


def test_a_clients_weddings_are_those_listing_its_records_found_by_the_database(any_hub) -> None:  # type: ignore[no-untyped-def]
    """GET /clients/{id} lists the live weddings of each source record's connection that name the record among
    their clients, and no other. They are found by the database (SQLite json_each, PostgreSQL jsonb ?|): the
    service read every wedding of the connection into Python for every request (160 ms at 2,000 weddings, 1.3 s
    at 20,000)."""
    from wedsync.store.tables import utcnow

    hub = any_hub
    v = hub.tenancy.create_vendor("Wedding List Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    hb = hub.connections.create(v.id, "honeybook", credentials={}).id
    person = new_id()
    now = utcnow()
    odd = 'c"1\u00e9 %_\\'  # a remote id with a quote, a backslash, LIKE wildcards and a non-ASCII letter
    with hub.db.session() as s:
        s.add(CrmClient(id=person, vendor_id=v.id, first_name="Ada", search_text="ada"))
        s.flush()
        for conn_id, rid in ((tave, "c1"), (hb, odd)):
            s.add(Client(vendor_id=v.id, connection_id=conn_id, provider="x", remote_id=rid, content_hash="h",
                         synced_at=now, crm_client_id=person, first_name="Ada"))
        s.add(Client(vendor_id=v.id, connection_id=tave, provider="x", remote_id="c2", content_hash="h",
                     synced_at=now, first_name="Other"))
        for conn_id, rid, listed, deleted in ((tave, "w-both", ["c2", "c1"], False), (tave, "w-other", ["c2"], False),
                                              (tave, "w-prefix", ["c10", "xc1"], False), (tave, "w-gone", ["c1"], True),
                                              (tave, "w-none", [], False), (hb, "w-odd", [odd], False),
                                              (hb, "w-c1-elsewhere", ["c1"], False)):
            s.add(Wedding(vendor_id=v.id, connection_id=conn_id, provider="x", remote_id=rid, content_hash="h",
                          synced_at=now, client_remote_ids=listed, deleted_at=now if deleted else None))
    for i in range(300):  # weddings of other couples around them
        with hub.db.session() as s:
            s.add(Wedding(vendor_id=v.id, connection_id=tave, provider="x", remote_id=f"w{i}", content_hash="h",
                          synced_at=now, client_remote_ids=[f"c{i + 3}"]))
    loaded: list[str] = []

    def count(target: Any, _context: Any) -> None:
        loaded.append(target.remote_id)

    event.listen(Wedding, "load", count)
    try:
        got = sorted(w["remote_id"] for w in hub.crm.get_client(v.id, person)["weddings"])
    finally:
        event.remove(Wedding, "load", count)
    assert got == ["w-both", "w-odd"]
    assert sorted(loaded) == got  # only those weddings were read, not the connection's 300 others


async def test_a_full_name_split_elsewhere_joins_without_changing_the_clients_names(any_hub) -> None:  # type: ignore[no-untyped-def]
    """Studio Ninja's one "Client Name" cell reads "Mary Ann Lee" as Mary / Ann Lee; the same couple in VSCO
    Workspace is Mary Ann / Lee. Joining them is no change of name: the client keeps its split, and no name
    conflict is raised (each import of the export opened two conflicts, or moved the client's names to the
    cell's split under newest-wins). A different name still is a change."""
    hub = any_hub
    v = hub.tenancy.create_vendor("Split Studio")
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}).id
    sn = hub.crm.connection_for(v.id, "studio-ninja", create=True).id
    hub.crm.set_policy(v.id, kind="manual")
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "contacts", [
            ClientRecord("v1", first_name="Mary Ann", last_name="Lee", display_name="Mary Ann Lee", email="mal@x.com"),
            ClientRecord("v2", first_name="Jo", last_name="van der Berg", email="jo@x.com")])
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, sn, "contacts", [
            ClientRecord("s1", first_name="Mary", last_name="Ann Lee", display_name="Mary Ann Lee", email="mal@x.com"),
            ClientRecord("s2", first_name="Jo", last_name="Vanderberg", email="jo@x.com")])
    mary, jo = person_of(hub, tave, "v1"), person_of(hub, tave, "v2")
    assert person_of(hub, sn, "s1") == mary and person_of(hub, sn, "s2") == jo
    got = hub.crm.get_client(v.id, mary)
    assert (got["first_name"], got["last_name"], got["open_conflicts"]) == ("Mary Ann", "Lee", [])
    # other words are another name: a conflict under the manual policy, the client unchanged meanwhile
    assert [c["field"] for c in hub.crm.get_client(v.id, jo)["open_conflicts"]] == ["last_name"]
