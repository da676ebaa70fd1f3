"""Write-back of weddings (VSCO jobs), events, invoices (orders) and payments through the CRM outbox, against
the VSCO Workspace sandbox over loopback, on SQLite and PostgreSQL: each op lands in the sandbox exactly once
even when the first attempt's answer is lost after the sandbox executed it, the provider's copy is stored at
once (its REST hook and the next sync are echoes, not changes), bad input is a 4xx with a code, and an undone
merge gives the detached client its wedding-date identity keys back."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select

from tests.integration.test_crm_hub import KEY, SLUG, csv_connection, person_of
from wedsync.domain.crm import ClientRecord, WeddingRecord
from wedsync.store.tables_crm import CrmClient, CrmIdentityKey

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
