"""What a write-back to VSCO Workspace keeps, against the sandbox over loopback (SQLite and PostgreSQL): a studio
edit made in Workspace before our write is merged, not taken for our echo; a conflict settled with another
source's value reaches VSCO; a contact's address is read where it is written; all-day events span their days;
an event created with an offset keeps its instant and its zone; payments keep their date, method and memo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from tests.conftest import auth
from tests.integration import test_crm_writeback as _writeback
from tests.integration.test_crm_hub import KEY, SLUG, csv_connection, person_of
from tests.integration.test_crm_writeback import drain
from wedsync.domain.crm import ClientRecord
from wedsync.sandbox.vsco_workspace import PREFIX as VSCO_PREFIX
from wedsync.services.sync_engine import DirectSteps, drive_run
from wedsync.store.tables import Client, Connection, Wedding
from wedsync.store.tables_crm import CrmConflict, CrmInvoice, CrmOutbox

hub_api = _writeback.hub_api  # the write-back tests' fixtures: the hub's API, the sandbox over loopback
lossy_sandbox = _writeback.lossy_sandbox


async def _setup(hub: Any, url: str, streams: list[str] | None = None, zone: str = "UTC"
                 ) -> tuple[str, str, dict[str, str]]:
    v = hub.tenancy.create_vendor("Fidelity Photo", zone)
    _, key = hub.tenancy.create_key(v.id)
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{url}{VSCO_PREFIX}")
    if streams:
        with hub.db.session() as s:
            s.get(Connection, tave.id).settings = {"streams": streams}
    await _sync(hub, v.id, tave.id, "full")
    return v.id, tave.id, auth(key)


async def _sync(hub: Any, vendor_id: str, connection_id: str, kind: str) -> dict[str, Any]:
    run = hub.sync.create_run(vendor_id, connection_id, kind)
    out: dict[str, Any] = await drive_run(run.id, DirectSteps(hub.sync))
    assert out["status"] == "succeeded", out
    return out


def _studio(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{url}{VSCO_PREFIX}", headers={"X-API-KEY": KEY})


def _a_person(emulator: Any) -> dict[str, Any]:
    return next(r for r in sorted(emulator.contacts.records.values(), key=lambda r: r["id"])
                if r.get("kind") == "person" and r.get("email") and not r.get("hidden"))


async def test_a_studio_edit_before_our_write_back_is_merged_not_taken_for_our_echo(hub_api, lossy_sandbox) -> None:  # type: ignore[no-untyped-def]
    hub, api = hub_api
    url, emulator, _ = lossy_sandbox
    vendor_id, tave, h = await _setup(hub, url)
    contact = _a_person(emulator)
    pid = person_of(hub, tave, contact["id"])
    before = (await api.get(f"/api/crm/clients/{pid}", headers=h)).json()
    # the studio changes the e-mail in Workspace; no sync runs before the vendor edits the phone in WedSync
    async with _studio(url) as studio:
        r = await studio.put(f"/address-book/{contact['id']}", json={"kind": "person",
                                                                      "email": "studio.edit@example.com"})
        assert r.status_code == 200, r.text
    r = await api.patch(f"/api/crm/clients/{pid}", headers=h, json={"phone": "+14155550142"})
    assert r.status_code == 200, r.text
    await drain(hub)
    with hub.db.read() as s:
        rows = s.execute(select(CrmOutbox).where(CrmOutbox.crm_client_id == pid)).scalars().all()
        assert [o.status for o in rows] == ["done"]
    truth = emulator.contacts.records[contact["id"]]
    assert truth["email"] == "studio.edit@example.com" and truth["cellPhone"]["e164"] == "+14155550142"
    # the provider's copy stored with our write brought the studio's e-mail: merged (only our phone is echo)
    client = (await api.get(f"/api/crm/clients/{pid}", headers=h)).json()
    assert (client["email"], client["phone"]) == ("studio.edit@example.com", "+14155550142"), client
    assert client["email"] != before["email"]
    for kind in ("incremental", "full"):
        await _sync(hub, vendor_id, tave, kind)
        client = (await api.get(f"/api/crm/clients/{pid}", headers=h)).json()
        assert (client["email"], client["phone"]) == ("studio.edit@example.com", "+14155550142"), client
    with hub.db.read() as s:
        assert not s.execute(select(CrmConflict).where(CrmConflict.crm_client_id == pid)).first()
    # and our own write alone is still an echo: no change, no conflict, no second write-back
    r = await api.patch(f"/api/crm/clients/{pid}", headers=h, json={"company": "Lumen Studio"})
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    await drain(hub)
    client = (await api.get(f"/api/crm/clients/{pid}", headers=h)).json()
    assert client["company"] == "Lumen Studio" and client["version"] == version, client
    with hub.db.read() as s:
        assert s.execute(select(CrmOutbox.echo_seen_at).where(CrmOutbox.crm_client_id == pid)
                         .order_by(CrmOutbox.id.desc())).scalars().first() is not None


async def test_a_conflict_settled_with_another_sources_value_reaches_vsco(hub_api, lossy_sandbox) -> None:  # type: ignore[no-untyped-def]
    hub, api = hub_api
    url, emulator, _ = lossy_sandbox
    vendor_id, tave, h = await _setup(hub, url)
    hb = csv_connection(hub, vendor_id)
    people = [r for r in sorted(emulator.contacts.records.values(), key=lambda r: r["id"])
              if r.get("kind") == "person" and r.get("email") and not r.get("hidden")]
    manual, auto = people[0], people[1]
    r = await api.put("/api/crm/policies", headers=h, json={"field": "phone", "kind": "manual",
                                                            "connection_id": hb})
    assert r.status_code == 200, r.text
    # 1) the vendor takes HoneyBook's phone in the manual queue: VSCO gets it
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, vendor_id, hb, "contacts", [ClientRecord(
            "h1", first_name=manual["firstName"], last_name=manual["lastName"], email=manual["email"],
            phone="+14155550177", remote_modified_at=datetime.now(UTC))])
    pid = person_of(hub, tave, manual["id"])
    assert person_of(hub, hb, "h1") == pid
    open_ = (await api.get("/api/crm/conflicts?status=open", headers=h)).json()["items"]
    assert [x["field"] for x in open_] == ["phone"], open_
    r = await api.post(f"/api/crm/conflicts/{open_[0]['id']}/resolve", headers=h, json={"choice": "incoming"})
    assert r.status_code == 200, r.text
    await drain(hub)
    assert emulator.contacts.records[manual["id"]]["cellPhone"]["e164"] == "+14155550177"
    with hub.db.read() as s:
        rows = s.execute(select(CrmOutbox).where(CrmOutbox.crm_client_id == pid)).scalars().all()
        # to VSCO only (HoneyBook has no API), and once
        assert [(o.op, o.status, o.payload["fields"]) for o in rows] == [
            ("update_contact", "done", {"phone": "+14155550177"})]
    # 2) newest wins, settled by itself: a newer HoneyBook value reaches VSCO too
    await api.put("/api/crm/policies", headers=h, json={"field": "phone", "kind": "newest_wins",
                                                        "connection_id": hb})
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, vendor_id, hb, "contacts", [ClientRecord(
            "h2", first_name=auto["firstName"], last_name=auto["lastName"], email=auto["email"],
            phone="+14155550188", remote_modified_at=datetime.now(UTC) + timedelta(hours=1))])
    pid2 = person_of(hub, tave, auto["id"])
    assert person_of(hub, hb, "h2") == pid2
    settled = (await api.get("/api/crm/conflicts?status=auto", headers=h)).json()["items"]
    assert [(x["field"], x["crm_client_id"]) for x in settled] == [("phone", pid2)], settled
    await drain(hub)
    assert emulator.contacts.records[auto["id"]]["cellPhone"]["e164"] == "+14155550188"
    client = (await api.get(f"/api/crm/clients/{pid2}", headers=h)).json()
    assert client["phone"] == "+14155550188"
    again = await _sync(hub, vendor_id, tave, "full")
    assert again["conflicts"] == 0 and again["updated"] == 0, again


async def test_a_contacts_address_is_read_where_it_is_written(hub_api, lossy_sandbox) -> None:  # type: ignore[no-untyped-def]
    hub, api = hub_api
    url, emulator, _ = lossy_sandbox
    vendor_id, tave, h = await _setup(hub, url)
    people = [r for r in sorted(emulator.contacts.records.values(), key=lambda r: r["id"])
              if r.get("kind") == "person" and r.get("email") and not r.get("hidden")]
    studio_side, ours = people[0], people[1]
    # the studio moves a client in Workspace (the contact's address; the mailing address is another field)
    async with _studio(url) as studio:
        r = await studio.put(f"/address-book/{studio_side['id']}", json={"kind": "person", "address": {
            "streetAddress": "12 Harbour Road", "city": "Hobart", "state": "TAS", "postalCode": "7000",
            "country": "AU"}})
        assert r.status_code == 200, r.text
    await _sync(hub, vendor_id, tave, "incremental")
    pid = person_of(hub, tave, studio_side["id"])
    client = (await api.get(f"/api/crm/clients/{pid}", headers=h)).json()
    assert (client["address"] or {}).get("streetAddress") == "12 Harbour Road", client["address"]
    # the vendor's address edit lands in the same field and is read back from it
    pid2 = person_of(hub, tave, ours["id"])
    new = {"streetAddress": "7 Rue des Lilas", "city": "Lyon", "postalCode": "69003", "country": "FR"}
    hub.crm.update_client(vendor_id, pid2, {"address": new})  # (the API's PATCH has no address field)
    await drain(hub)
    truth = emulator.contacts.records[ours["id"]]["address"]
    assert (truth["streetAddress"], truth["city"], truth["country"]) == ("7 Rue des Lilas", "Lyon", "FR")
    with hub.db.read() as s:
        stored = s.execute(select(Client.address).where(Client.connection_id == tave,
                                                        Client.remote_id == ours["id"])).scalar_one()
    assert stored["streetAddress"] == "7 Rue des Lilas", stored
    again = await _sync(hub, vendor_id, tave, "full")
    assert again["conflicts"] == 0 and again["updated"] == 0, again
    client = (await api.get(f"/api/crm/clients/{pid2}", headers=h)).json()
    assert client["address"]["streetAddress"] == "7 Rue des Lilas"


async def test_an_all_day_event_spans_its_days(hub_api, lossy_sandbox) -> None:  # type: ignore[no-untyped-def]
    hub, api = hub_api
    url, emulator, _ = lossy_sandbox
    job = sorted(emulator.jobs.records)[0]
    async with _studio(url) as studio:
        one = await studio.post("/event", json={"jobId": job, "name": "Wedding day", "allDay": True,
                                                "startDate": "2031-06-14", "endDate": "2031-06-14",
                                                "timezoneName": "America/Chicago"})
        two = await studio.post("/event", json={"jobId": job, "name": "Destination weekend", "allDay": True,
                                                "startDate": "2031-06-20", "endDate": "2031-06-22",
                                                "startTime": "10:00:00", "timezoneName": "Europe/Rome"})
        assert one.status_code == two.status_code == 201, (one.text, two.text)
        # the sandbox answers as the spec's dates say: whole days, the end date the last one
        assert (one.json()["startUtc"], one.json()["endUtc"]) == ("2031-06-14T05:00:00+00:00",
                                                                  "2031-06-15T05:00:00+00:00")
    vendor_id, tave, h = await _setup(hub, url, ["contacts", "jobs", "job_contacts", "events"])
    with hub.db.read() as s:
        wid = s.execute(select(Wedding.id).where(Wedding.connection_id == tave, Wedding.remote_id == job)
                        ).scalar_one()
    events = {e["remote_id"]: e for e in (await api.get(f"/api/crm/weddings/{wid}", headers=h)).json()["events"]}
    assert (events[one.json()["id"]]["starts_at"], events[one.json()["id"]]["ends_at"]) == (
        "2031-06-14T05:00:00+00:00", "2031-06-15T05:00:00+00:00")
    assert (events[two.json()["id"]]["starts_at"], events[two.json()["id"]]["ends_at"]) == (
        "2031-06-19T22:00:00+00:00", "2031-06-22T22:00:00+00:00")
    # moved by a day in WedSync: written back as dates, still all day, still one day long
    ev = events[one.json()["id"]]
    r = await api.patch(f"/api/crm/events/{ev['id']}", headers=h, json={
        "starts_at": "2031-06-15T00:00:00-05:00", "ends_at": "2031-06-16T00:00:00-05:00"})
    assert r.status_code == 200, r.text
    await drain(hub)
    truth = emulator.events.records[one.json()["id"]]
    assert (truth["allDay"], truth["startDate"], truth["endDate"], truth["startTime"], truth["endTime"]) == (
        True, "2031-06-15", "2031-06-15", None, None), truth
    again = await _sync(hub, vendor_id, tave, "full")
    assert again["updated"] == 0, again


async def test_an_event_created_with_an_offset_keeps_its_instant_and_a_zone_that_has_it(hub_api, lossy_sandbox) -> None:  # type: ignore[no-untyped-def]
    hub, api = hub_api
    url, emulator, _ = lossy_sandbox
    async with _studio(url) as studio:  # a job without events
        r = await studio.post("/job", json={"name": "Elopement", "eventDate": "2030-04-17"})
        assert r.status_code == 201, r.text
        bare = [r.json()["id"]]
    _, tave, h = await _setup(hub, url, ["contacts", "jobs", "job_contacts", "events"])  # vendor in UTC
    zoned = {e["jobId"]: e["timezoneName"] for e in emulator.events.records.values()
             if e.get("jobId") and e.get("timezoneName") not in (None, "UTC")}
    with hub.db.read() as s:
        wids = dict(s.execute(select(Wedding.remote_id, Wedding.id).where(Wedding.connection_id == tave)).all())

    async def create(job: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await api.post(f"/api/crm/weddings/{wids[job]}/events", headers=h, json={"name": "Rehearsal", **body})
        assert r.status_code == 202, r.text
        await drain(hub)
        made = next(e for e in emulator.events.records.values() if any(
            m.get("id") == r.json()["idempotency_key"] for m in e.get("externalMappings") or ()))
        stored = next(e for e in (await api.get(f"/api/crm/weddings/{wids[job]}", headers=h)).json()["events"]
                      if e["remote_id"] == made["id"])
        return {"zone": made["timezoneName"], "local": (made["startDate"], made["startTime"]),
                "starts_at": stored["starts_at"], "ends_at": stored["ends_at"]}

    # no zone named, no other event on the wedding, the vendor in UTC: the zone of the offset written
    got = await create(bare[0], {"starts_at": "2030-04-17T19:30:00-03:00", "ends_at": "2030-04-17T23:00:00-03:00"})
    assert got == {"zone": "Etc/GMT+3", "local": ("2030-04-17", "19:30:00"),
                   "starts_at": "2030-04-17T22:30:00+00:00", "ends_at": "2030-04-18T02:00:00+00:00"}, got
    # a zone the caller names
    got = await create(bare[0], {"starts_at": "2030-04-17T19:30:00-03:00", "timezone": "America/Sao_Paulo"})
    assert got["zone"] == "America/Sao_Paulo" and got["local"] == ("2030-04-17", "19:30:00"), got
    assert got["starts_at"] == "2030-04-17T22:30:00+00:00"
    # the wedding's other events' zone, when the offset written is its offset then
    job, zone = sorted(zoned.items())[0]
    at = datetime(2030, 9, 14, 16, 0, tzinfo=ZoneInfo(zone))
    got = await create(job, {"starts_at": at.isoformat()})
    assert got["zone"] == zone and got["local"] == ("2030-09-14", "16:00:00"), (zone, got)
    assert datetime.fromisoformat(got["starts_at"]) == at
    # a zone that is no zone is refused with a code, nothing queued
    r = await api.post(f"/api/crm/weddings/{wids[bare[0]]}/events", headers=h, json={
        "name": "Rehearsal", "starts_at": "2030-04-17T19:30:00-03:00", "timezone": "Mars/Olympus"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_timezone", r.text


def test_every_stream_a_pulled_crm_provider_claims_to_read_can_be_pulled() -> None:
    from wedsync.connectors.base import Channel
    from wedsync.connectors.registry import get_connector_class
    from wedsync.services.connections import check_settings

    for slug in ("vsco-workspace", "honeybook", "17hats", "studio-ninja", "iris-works", "light-blue"):
        cls = get_connector_class(slug)
        caps = cls.capabilities
        assert set(caps.incremental or ()) <= set(caps.read or ()), slug
        if cls.channel == Channel.API:
            for stream in caps.read:
                assert check_settings(cls, {"streams": [stream]})["streams"] == [stream], (slug, stream)


async def test_payments_keep_their_date_method_memo_and_status(hub_api, lossy_sandbox) -> None:  # type: ignore[no-untyped-def]
    hub, api = hub_api
    url, emulator, _ = lossy_sandbox
    vendor_id, tave, h = await _setup(hub, url, ["contacts", "jobs", "job_contacts", "events", "orders"])
    booked = next(j for j in sorted(emulator.jobs.records)
                  if any(o.get("jobId") == j for o in emulator.orders.records.values()))
    with hub.db.read() as s:
        wid = s.execute(select(Wedding.id).where(Wedding.connection_id == tave, Wedding.remote_id == booked)
                        ).scalar_one()
    r = await api.post(f"/api/crm/weddings/{wid}/invoices", headers=h, json={
        "number": "WS-9", "currency": "USD", "line_items": [{"name": "Album", "unit_minor": 90_000}]})
    assert r.status_code == 202, r.text
    await drain(hub)
    invoice = next(i for i in (await api.get(f"/api/crm/weddings/{wid}", headers=h)).json()["invoices"]
                   if i["total_minor"] == 90_000 and not i["payments"])
    r = await api.post(f"/api/crm/weddings/{wid}/payments", headers=h, json={
        "amount_minor": 25_000, "currency": "USD", "received": "2031-01-15", "memo": "deposit",
        "invoice_id": invoice["id"]})
    assert r.status_code == 202, r.text
    await drain(hub)

    def stored_payments() -> list[dict[str, Any]]:
        with hub.db.read() as s:
            return list(s.get(CrmInvoice, invoice["id"]).payments)

    (pay,) = stored_payments()
    assert (pay["amount_minor"], pay["paid_at"], pay["memo"], pay["status"], pay["refunded_minor"]) == (
        25_000, "2031-01-15", "deposit", "posted", 0), pay
    # a sync lists the order with its allocations only: what we know of the payment stays
    for kind in ("full", "incremental"):
        await _sync(hub, vendor_id, tave, kind)
        assert stored_payments() == [pay]
    # a payment the studio records and applies, announced by its hook: stored with its own date and memo
    async with _studio(url) as studio:
        made = (await studio.post("/payment", json={"jobId": booked, "amount": 1_000, "status": "posted",
                                                    "received": "2031-02-01", "memo": "cash at the shoot"})).json()
        (await studio.post(f"/payment/{made['id']}/apply", json={"orderId": invoice["remote_id"],
                                                                  "amount": 1_000})).raise_for_status()
    assert await hub.crm_writeback.refetch_payment(tave, made["id"]) == "updated"
    studio_pay = next(p for p in stored_payments() if p["remote_id"] == made["id"])
    assert (studio_pay["paid_at"], studio_pay["memo"], studio_pay["amount_minor"]) == (
        "2031-02-01", "cash at the shoot", 1_000), studio_pay
    await _sync(hub, vendor_id, tave, "full")
    assert {p["remote_id"]: p["paid_at"] for p in stored_payments()} == {pay["remote_id"]: "2031-01-15",
                                                                         made["id"]: "2031-02-01"}
