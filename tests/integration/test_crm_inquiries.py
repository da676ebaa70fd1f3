"""Marketplace inquiries: the couple becomes the vendor's client once (merged with the same people from other
sources) and reaches the connected Light Blue inbox once, however often the marketplace posts it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import auth
from wedsync.domain.crm import ClientRecord
from wedsync.sandbox.light_blue import DEFAULT_API_KEY as LB_KEY
from wedsync.store.tables_crm import CrmOutbox

INQUIRY = {"inquiry_id": "mkt-1001", "first_name": "Amara", "last_name": "Okafor",
           "email": "Amara.Okafor+wedsync@gmail.com", "phone": "(415) 555-0123",
           "partner": {"first_name": "Tunde", "last_name": "Bello", "email": "tunde.bello@example.com"},
           "wedding_date": "2027-09-18", "venue": "Foxhill Manor", "guest_count": 140,
           "message": "Is September 18 still open?", "received_at": "2026-11-30T18:04:00+00:00"}


def inbox(sandbox_url: str, email: str) -> list[dict[str, Any]]:
    text = httpx.get(f"{sandbox_url}/_sandbox/light-blue/records/inbox").text
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [e for e in entries if e.get("fields", {}).get("ContactEmail") == email]


async def test_an_inquiry_joins_the_existing_client_and_reaches_light_blue_once(
        api: Any, hub: Any, sandbox_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from wedsync.workflows import crm as crm_workflows

    async def no_drain() -> None:  # this test sends itself (even when an earlier test launched DBOS, whose drain
        return None  # would otherwise race it for the row: it flaked once as 'pending')

    monkeypatch.setattr(crm_workflows, "poke_outbox_drain", no_drain)
    vendor = hub.tenancy.create_vendor("Foxhill Photography")
    _, key = hub.tenancy.create_key(vendor.id)
    tave = hub.connections.create(vendor.id, "vsco-workspace", credentials={"api_key": "k"},
                                  base_url=f"{sandbox_url}/vsco-workspace/api/v2")
    with hub.db.engine.begin() as c:  # the couple is already in Tave
        hub.sync.upsert(c, vendor.id, tave.id, "contacts", [ClientRecord(
            remote_id="t-77", first_name="Amara", last_name="Okafor", email="amaraokafor@gmail.com",
            phone="+14155550123")])
    hub.connections.create(vendor.id, "light-blue", credentials={"api_key": LB_KEY},
                           base_url=f"{sandbox_url}/light-blue")

    r = await api.post("/api/crm/inquiries", headers=auth(key), json=INQUIRY)
    assert r.status_code == 201, r.text
    out = r.json()
    amara, tunde = out["clients"]
    assert amara["merged"] and amara["merge"]["rule"] in ("email+name", "phone+name"), amara
    clients = (await api.get("/api/crm/clients", headers=auth(key))).json()["items"]
    assert len(clients) == 2  # Amara once (Tave + the inquiry), Tunde
    assert amara["crm_client_id"] in {c["id"] for c in clients} and not tunde["merged"]
    (delivery,) = out["deliveries"]
    assert delivery["provider"] == "light-blue" and delivery["status"] == "pending"

    assert await hub.crm.send_outbox(delivery["outbox_id"]) == "done"
    (entry,) = inbox(sandbox_url, "amara.okafor+wedsync@gmail.com")
    message = entry["fields"]["Message"]
    assert "Is September 18 still open?" in message and "2027-09-18" in message and "Foxhill Manor" in message

    again = await api.post("/api/crm/inquiries", headers=auth(key), json=INQUIRY)
    assert again.status_code == 200 and not again.json()["created"]
    assert again.json()["deliveries"] == [{**delivery, "status": "done"}]
    assert await hub.crm.send_outbox(delivery["outbox_id"]) == "done"  # nothing left to send
    assert len(inbox(sandbox_url, "amara.okafor+wedsync@gmail.com")) == 1
    with hub.db.read() as s:
        assert s.query(CrmOutbox).filter(CrmOutbox.vendor_id == vendor.id).count() == 1

    # the merge is recorded and can be undone: the inquiry's Amara then stands alone
    r = await api.post(f"/api/crm/merges/{amara['merge']['id']}/undo", headers=auth(key))
    assert r.status_code == 200, r.text
    assert len((await api.get("/api/crm/clients", headers=auth(key))).json()["items"]) == 3


async def test_bad_inquiries_are_coded_422s(api: Any, hub: Any) -> None:
    vendor = hub.tenancy.create_vendor("Strict Studio")
    _, key = hub.tenancy.create_key(vendor.id)
    cases = [({**INQUIRY, "email": "not-an-address"}, "invalid_email"),
             ({**INQUIRY, "phone": "12"}, "invalid_phone"),
             ({"inquiry_id": "x1"}, "empty_person"),
             ({**INQUIRY, "partner": {"email": "tunde@"}}, "invalid_email"),
             ({**INQUIRY, "inquiry_id": "a#b"}, "invalid_inquiry_id"),
             ({**INQUIRY, "received_at": "2026-11-30T18:04:00"}, "naive_datetime"),
             ({**INQUIRY, "guest_count": -1}, "validation_error"),
             ({**INQUIRY, "surprise": True}, "validation_error")]
    for body, code in cases:
        r = await api.post("/api/crm/inquiries", headers=auth(key), json=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (body, r.text)
    assert (await api.get("/api/crm/clients", headers=auth(key))).json()["items"] == []  # nothing half-stored
    assert (await api.get("/api/connections", headers=auth(key))).json() == {"items": [], "next_cursor": None}


def test_the_same_inquiry_twice_at_once_is_stored_and_queued_once(any_hub: Any) -> None:
    """A marketplace retry racing its first attempt (two transactions at once; on PostgreSQL both may find
    nothing and insert): one set of records, one delivery."""
    from concurrent.futures import ThreadPoolExecutor

    from wedsync.services.crm_inquiries import inquiry_from
    from wedsync.store.tables import Client

    hub = any_hub
    vendor = hub.tenancy.create_vendor("Racing Studio")
    hub.connections.create(vendor.id, "light-blue", credentials={"api_key": LB_KEY},
                           base_url="http://127.0.0.1:9/light-blue")
    hub.crm.connection_for(vendor.id, "wedsync-marketplace", create=True)
    body = {**INQUIRY, "wedding_date": None, "received_at": None, "partner": dict(INQUIRY["partner"])}
    for round_ in range(3):
        body["inquiry_id"] = f"race-{round_}"
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: hub.crm_inquiries.receive(vendor.id, inquiry_from(body)), range(2)))
        assert sorted(r["created"] for r in results) == [False, True]
        assert results[0]["deliveries"][0]["outbox_id"] == results[1]["deliveries"][0]["outbox_id"]
    with hub.db.read() as s:
        assert s.query(CrmOutbox).filter(CrmOutbox.vendor_id == vendor.id).count() == 3
        assert s.query(Client).filter(Client.vendor_id == vendor.id).count() == 6  # 3 inquiries x 2 people
