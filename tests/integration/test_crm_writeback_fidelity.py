"""What a write-back to VSCO Workspace keeps, against the sandbox over loopback (SQLite and PostgreSQL): a studio
edit made in Workspace before our write is merged, not taken for our echo; a conflict settled with another
source's value reaches VSCO; a contact's address is read where it is written; all-day events span their days;
an event created with an offset keeps its instant and its zone; payments keep their date, method and memo."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
from sqlalchemy import select

from tests.conftest import auth
from tests.integration.test_crm_hub import KEY, SLUG, csv_connection, person_of
from tests.integration.test_crm_writeback import drain, hub_api, lossy_sandbox  # noqa: F401 (fixtures)
from wedsync.domain.crm import ClientRecord
from wedsync.sandbox.vsco_workspace import PREFIX as VSCO_PREFIX
from wedsync.services.sync_engine import DirectSteps, drive_run
from wedsync.store.tables import Client, Connection
from wedsync.store.tables_crm import CrmConflict, CrmOutbox


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
