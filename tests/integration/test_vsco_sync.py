"""VSCO Workspace sync against the sandbox over real loopback HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from tests.e2e.procs import serve_app_in_thread
from wedsync.connectors.crm.vsco_workspace import map_contact, map_job
from wedsync.services.sync_engine import DirectSteps, drive_run
from wedsync.store.tables import Client, Connection, SyncCursor, SyncRun, SyncRunPage, Wedding, utcnow

SLUG = "vsco-workspace"
KEY = "sandbox-vsco-key"


@pytest.fixture
def sandbox() -> Iterator[str]:
    """A private sandbox per test: these tests mutate the provider's data."""
    from wedsync.sandbox.server import start_sandbox_in_thread

    url, stop = start_sandbox_in_thread(port=0)
    try:
        yield url
    finally:
        stop()


def admin(sandbox: str, action: str, **body: Any) -> Any:
    r = httpx.post(f"{sandbox}/_sandbox/{SLUG}/{action}", json=body, timeout=30)
    r.raise_for_status()
    return r.json()


def ground_truth(sandbox: str, collection: str) -> dict[str, dict[str, Any]]:
    """The sandbox's own records (JSON lines), for field-by-field comparison."""
    r = httpx.get(f"{sandbox}/_sandbox/{SLUG}/records/{collection}", timeout=30)
    r.raise_for_status()
    items = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    return {i["id"]: i for i in items}


def connect(hub: Any, sandbox: str) -> tuple[str, str]:
    v = hub.tenancy.create_vendor("Golden Hour Photography", "America/Los_Angeles")
    c = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{sandbox}/{SLUG}/api/v2")
    return v.id, c.id


async def run(hub: Any, vendor_id: str, connection_id: str, mode: str) -> dict[str, Any]:
    r = hub.sync.create_run(vendor_id, connection_id, mode)
    try:
        return await drive_run(r.id, DirectSteps(hub.sync))
    finally:
        await hub.connections.aclose()


def _sample(name: str, labels: dict[str, str]) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def stored(hub: Any, model: Any, connection_id: str) -> dict[str, Any]:
    with hub.db.read() as s:
        return {r.remote_id: r for r in s.execute(select(model).where(
            model.connection_id == connection_id, model.deleted_at.is_(None))).scalars()}


def assert_equal_to_truth(hub: Any, connection_id: str, sandbox: str) -> None:
    truth_c = ground_truth(sandbox, "address-book")
    truth_j = ground_truth(sandbox, "job")
    clients = stored(hub, Client, connection_id)
    weddings = stored(hub, Wedding, connection_id)
    assert set(clients) == set(truth_c)
    assert set(weddings) == set(truth_j)
    for rid, item in truth_c.items():
        exp = map_contact(item)
        got = clients[rid]
        assert (got.first_name, got.last_name, got.email, got.phone, got.display_name, got.custom_fields) == (
            exp.first_name, exp.last_name, exp.email, exp.phone, exp.display_name, exp.custom_fields), rid
        assert got.content_hash == exp.content_hash()
    couples: dict[str, set[str]] = {}
    for link in ground_truth(sandbox, "job-contact").values():
        if link["client"] and not link["hidden"]:
            couples.setdefault(link["jobId"], set()).add(link["contactId"])
    for rid, item in truth_j.items():
        exp_j = map_job(item)
        assert weddings[rid].content_hash == exp_j.content_hash(), rid
        # the couple comes from the job-contact links (a VSCO job does not list its clients)
        assert set(weddings[rid].client_remote_ids) == couples.get(rid, set()), rid


async def test_full_then_incremental_then_deletes(any_hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    hub = any_hub
    admin(sandbox, "seed", contacts=730, jobs=240)
    vendor_id, conn_id = connect(hub, sandbox)

    links = list(ground_truth(sandbox, "job-contact").values())
    created_before = _sample("sync_records_total", {"provider": SLUG, "stream": "contacts", "outcome": "created"})
    runs_before = _sample("sync_runs_total", {"provider": SLUG, "outcome": "succeeded", "error": "none"})
    first = await run(hub, vendor_id, conn_id, "full")
    assert first["status"] == "succeeded", first
    # the health data: records by outcome and runs by outcome, as /metrics exposes them
    assert _sample("sync_records_total", {"provider": SLUG, "stream": "contacts", "outcome": "created"}) \
        == created_before + 730
    assert _sample("sync_runs_total", {"provider": SLUG, "outcome": "succeeded", "error": "none"}) == runs_before + 1
    # contacts, jobs and their job-contact links created (the links make each wedding's couple)
    assert first["created"] == 730 + 240 + len(links) and first["updated"] == 0
    assert_equal_to_truth(hub, conn_id, sandbox)

    again = await run(hub, vendor_id, conn_id, "full")  # nothing changed: nothing written
    assert (again["created"], again["updated"], again["deleted"]) == (0, 0, 0)
    assert again["unchanged"] == 730 + 240 + len(links)

    admin(sandbox, "mutate", update=40, create=15, delete=0)
    inc = await run(hub, vendor_id, conn_id, "incremental")
    assert inc["status"] == "succeeded" and inc["mode"] == "incremental"
    assert inc["created"] >= 15 and inc["updated"] >= 1
    assert inc["processed"] < 730  # the window, not everything
    assert_equal_to_truth(hub, conn_id, sandbox)

    links_before = set(ground_truth(sandbox, "job-contact"))
    admin(sandbox, "mutate", update=0, create=0, delete=12)
    links_gone = len(links_before - set(ground_truth(sandbox, "job-contact")))  # a deleted person's links go too
    inc2 = await run(hub, vendor_id, conn_id, "incremental")
    assert inc2["deleted"] == 0  # incremental listings prove nothing about absence
    full = await run(hub, vendor_id, conn_id, "full")
    assert full["deleted"] == 12 + links_gone, full
    assert_equal_to_truth(hub, conn_id, sandbox)
    with hub.db.read() as s:
        cursors = s.execute(select(func.count()).select_from(SyncCursor).where(
            SyncCursor.connection_id == conn_id)).scalar_one()
        assert cursors == 3  # contacts, jobs, job-contact links


async def test_provider_garbage_marks_connection_not_500(hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    admin(sandbox, "seed", contacts=50, jobs=10)
    vendor_id, conn_id = connect(hub, sandbox)
    httpx.put(f"{sandbox}/_sandbox/{SLUG}/faults", json={"malformed_rate": 1.0}, timeout=10).raise_for_status()
    r = hub.sync.create_run(vendor_id, conn_id, "full")
    from wedsync.connectors.errors import SchemaMismatch

    failed_before = _sample("sync_runs_total", {"provider": SLUG, "outcome": "failed", "error": "SchemaMismatch"})

    with pytest.raises(SchemaMismatch) as exc:
        await drive_run(r.id, DirectSteps(hub.sync))
    await hub.connections.aclose()
    summary = hub.sync.fail(r.id, exc.value)  # what the workflow does with a connector error
    assert summary["status"] == "failed" and "SchemaMismatch" in summary["error_detail"]
    with hub.db.read() as s:
        assert s.get(Connection, conn_id).status == "error"
    assert _sample("sync_runs_total", {"provider": SLUG, "outcome": "failed", "error": "SchemaMismatch"}) \
        == failed_before + 1


async def test_wrong_api_key_is_reauth(hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    from wedsync.connectors.errors import ReauthRequired

    admin(sandbox, "seed", contacts=20, jobs=5)
    v = hub.tenancy.create_vendor("Wrong Key Studio")
    c = hub.connections.create(v.id, SLUG, credentials={"api_key": "not-the-key"},
                               base_url=f"{sandbox}/{SLUG}/api/v2")
    r = hub.sync.create_run(v.id, c.id, "full")
    with pytest.raises(ReauthRequired):
        await drive_run(r.id, DirectSteps(hub.sync))
    await hub.connections.aclose()


async def test_listing_without_meta_still_pages_but_never_deletes(hub) -> None:  # type: ignore[no-untyped-def]
    """``meta`` is optional in the spec: a server that omits it is paged until a short page, and since it
    never said how many records exist, a full sync proves no absence and deletes nothing."""
    items = [{"id": f"01h35ccwymj5ctckp8px1a{i:04d}", "kind": "person", "firstName": f"N{i}",
              "modified": "2026-01-01T00:00:00Z"} for i in range(230)]
    app = FastAPI()

    @app.get("/api/v2/address-book")
    async def contacts(request: Request, page: int = 1, pageSize: int = 100) -> dict:
        assert request.headers["x-api-key"] == KEY
        chunk = items[(page - 1) * pageSize: page * pageSize]
        return {"type": "addressbook-collection", "items": chunk}

    @app.get("/api/v2/job")
    async def jobs(page: int = 1) -> dict:
        return {"type": "job-collection", "items": []}

    @app.get("/api/v2/job-contact")
    async def job_contacts(page: int = 1) -> dict:
        return {"type": "jobcontact-collection", "items": []}

    url, stop = serve_app_in_thread(app)
    try:
        v = hub.tenancy.create_vendor("No Meta Studio")
        c = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{url}/api/v2")
        with hub.db.session() as s:  # a record the provider no longer lists
            hub.sync.upsert(s, v.id, c.id, "contacts", [map_contact({"id": "gone", "firstName": "Old"})])
        summary = await run(hub, v.id, c.id, "full")
        assert summary["status"] == "succeeded" and summary["created"] == 230 and summary["deleted"] == 0
        assert "deletions deferred" in (summary["error_detail"] or "")
        # said as it is (it read "listing changed during the run", which nothing had)
        assert "contacts: the provider reported no totals" in summary["error_detail"]
        assert "changed" not in summary["error_detail"]
        assert len(stored(hub, Client, c.id)) == 231
    finally:
        stop()


async def test_a_page_larger_than_asked_fails_the_run_as_schema_mismatch(hub) -> None:  # type: ignore[no-untyped-def]
    """A provider ignoring pageSize (a probe's served 50,000 contacts in one page, all written, 500 MB of the
    worker) fails the run saying so: page numbers mean nothing then."""
    from wedsync.connectors.errors import SchemaMismatch

    items = [{"id": f"01h35ccwymj5ctckp8px1a{i:04d}", "kind": "person", "firstName": f"N{i}"} for i in range(150)]
    app = FastAPI()

    @app.get("/api/v2/address-book")
    async def contacts(page: int = 1) -> dict:
        return {"type": "addressbook-collection", "items": items, "meta": {"totalPages": 1, "totalItems": 150}}

    url, stop = serve_app_in_thread(app)
    try:
        v = hub.tenancy.create_vendor("Big Page Studio")
        c = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{url}/api/v2")
        r = hub.sync.create_run(v.id, c.id, "full")
        with pytest.raises(SchemaMismatch) as exc:
            await drive_run(r.id, DirectSteps(hub.sync))
        await hub.connections.aclose()
    finally:
        stop()
    summary = hub.sync.fail(r.id, exc.value)  # what the workflow does with a connector error
    assert summary["status"] == "failed"
    assert "150 records for a page of 100: the provider ignored pageSize" in summary["error_detail"]
    assert stored(hub, Client, c.id) == {}
    with hub.db.read() as s:
        conn = s.get(Connection, c.id)
        assert conn.status == "error" and "ignored pageSize" in conn.status_detail


@pytest.mark.parametrize("total_pages", [1000, 2**40])
async def test_totals_that_lie_end_the_listing_at_the_first_empty_page(hub, total_pages) -> None:  # type: ignore[no-untyped-def]
    """A provider reporting 1,000 pages and serving 3 had every pass of a full run read 997 empty pages (3,000
    requests for 230 contacts; found by a probe), and 2**40 pages kept the run going for ever. An empty page
    ends the pass; the run succeeds, says what the provider did, and deletes nothing."""
    items = [{"id": f"01h35ccwymj5ctckp8px1a{i:04d}", "kind": "person", "firstName": f"N{i}",
              "modified": "2026-01-01T00:00:00Z"} for i in range(230)]
    requests: list[int] = []
    app = FastAPI()

    @app.get("/api/v2/address-book")
    async def contacts(page: int = 1, pageSize: int = 100) -> dict:
        requests.append(page)
        chunk = items[(page - 1) * pageSize: page * pageSize]
        return {"type": "addressbook-collection", "items": chunk,
                "meta": {"currentPage": page, "totalPages": total_pages, "totalItems": 100 * total_pages}}

    @app.get("/api/v2/job")
    async def jobs(page: int = 1) -> dict:
        return {"type": "job-collection", "items": [], "meta": {"totalPages": 0, "totalItems": 0}}

    @app.get("/api/v2/job-contact")
    async def job_contacts(page: int = 1) -> dict:
        return {"type": "jobcontact-collection", "items": [], "meta": {"totalPages": 0, "totalItems": 0}}

    url, stop = serve_app_in_thread(app)
    try:
        v = hub.tenancy.create_vendor("Lying Totals Studio")
        c = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{url}/api/v2")
        with hub.db.session() as s:  # a record the provider no longer lists
            hub.sync.upsert(s, v.id, c.id, "contacts", [map_contact({"id": "gone", "firstName": "Old"})])
        summary = await run(hub, v.id, c.id, "full")
    finally:
        stop()
    assert summary["status"] == "succeeded" and summary["created"] == 230 and summary["deleted"] == 0
    assert len(requests) <= 3 * 4, len(requests)  # at most 3 passes of pages 1-4 (the 4th empty)
    if total_pages == 1000:
        assert "contacts: the provider's listing ended at page 4 of the 1000 it reported" in summary["error_detail"]
    else:  # beyond any count: taken as no total
        assert "contacts: the provider reported no totals" in summary["error_detail"]
    assert len(stored(hub, Client, c.id)) == 231


async def test_a_record_removed_behind_the_read_position_never_gets_a_live_one_deleted(hub) -> None:  # type: ignore[no-untyped-def]
    """The studio deletes a contact the run has already read: every later contact moves a place up the listing
    and one of them into a page already read. That pass is not proof of absence (its total changed), so it is
    read again; only the contact really deleted is deleted (the shifted live one was, found by a probe)."""
    items = [{"id": f"01h35ccwymj5ctckp8px1a{i:04d}", "kind": "person", "firstName": f"N{i}",
              "modified": "2026-01-01T00:00:00Z"} for i in range(250)]
    removed = items[5]
    shifted = items[200]  # first of page 3 before the removal, last of page 2 after it
    app = FastAPI()
    state = {"pages": 0, "deny": False}

    @app.get("/api/v2/address-book")
    async def contacts(page: int = 1, pageSize: int = 100) -> dict:
        state["pages"] += 1
        if page == 3 and removed in items:
            items.remove(removed)  # deleted in Workspace while the run was between pages 2 and 3
        chunk = items[(page - 1) * pageSize: page * pageSize]
        return {"type": "addressbook-collection", "items": chunk,
                "meta": {"totalItems": len(items), "totalPages": -(-len(items) // pageSize), "page": page,
                         "pageSize": pageSize}}

    @app.get("/api/v2/address-book/{rid}")
    async def contact(rid: str) -> JSONResponse:
        if state["deny"]:  # the key was revoked between the listing and the check of what it did not show
            return JSONResponse({"type": "unknown", "title": "Unauthorized", "detail": "no", "status": 401}, 401)
        for item in items:
            if item["id"] == rid:
                return JSONResponse(item)
        return JSONResponse({"type": "unknown", "title": "Not Found", "detail": "gone", "status": 404}, 404)

    @app.get("/api/v2/job")
    async def jobs(page: int = 1) -> dict:
        return {"type": "job-collection", "items": [], "meta": {"totalItems": 0, "totalPages": 0}}

    @app.get("/api/v2/job-contact")
    async def job_contacts(page: int = 1) -> dict:
        return {"type": "jobcontact-collection", "items": [], "meta": {"totalItems": 0, "totalPages": 0}}

    url, stop = serve_app_in_thread(app)
    try:
        v = hub.tenancy.create_vendor("Shifting Studio")
        c = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{url}/api/v2")
        with hub.db.session() as s:  # everything synced before
            hub.sync.upsert(s, v.id, c.id, "contacts", [map_contact(i) for i in [*items]])
        summary = await run(hub, v.id, c.id, "full")
        assert summary["status"] == "succeeded" and summary["deleted"] == 0, summary
        assert state["pages"] == 3 + 3  # the shrunken pass, then one clean pass
        assert shifted["id"] in stored(hub, Client, c.id)  # not deleted
        # the removed one was seen by this run (in its first pass): its deletion waits for the next full run,
        # and for the provider's 404: a check that fails fails the run, and nothing is deleted
        from wedsync.connectors.errors import ReauthRequired

        state["deny"] = True
        r = hub.sync.create_run(v.id, c.id, "full")
        with pytest.raises(ReauthRequired):
            await drive_run(r.id, DirectSteps(hub.sync))
        assert hub.sync.fail(r.id, RuntimeError("revoked"))["deleted"] == 0
        assert removed["id"] in stored(hub, Client, c.id)
        state["deny"] = False
        summary = await run(hub, v.id, c.id, "full")
        assert summary["status"] == "succeeded" and summary["deleted"] == 1, summary
        live = set(stored(hub, Client, c.id))
        assert removed["id"] not in live and shifted["id"] in live and len(live) == 249
    finally:
        stop()


async def test_a_record_removed_and_one_added_during_a_full_pass_never_gets_a_live_one_deleted(
        hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    """While a full run reads the contacts, the studio deletes one it has already read and adds a new one: the
    total stays the same, every later contact moves a place up and one of them into a page already read, never
    seen, yet the pass saw as many records as reported (the deleted one among them). That live contact used to
    be marked deleted (found by a probe); a stored record the listing did not show is now fetched by its id
    before anything is deleted, and only a 404 deletes it."""
    admin(sandbox, "seed", contacts=250, jobs=0)
    vendor_id, conn_id = connect(hub, sandbox)
    first = await run(hub, vendor_id, conn_id, "full")
    assert first["status"] == "succeeded" and first["created"] == 250, first
    api = f"{sandbox}/{SLUG}/api/v2"
    page1 = httpx.get(f"{api}/address-book", params={"page": 1, "pageSize": 100, "sortBy": "id asc"},
                      headers={"X-API-KEY": KEY}, timeout=30).json()["items"]
    victim = page1[49]["id"]

    class StudioEditsMidRun(DirectSteps):
        async def page(self, plan: dict[str, Any], stream: str, page: int, pass_no: int) -> dict[str, Any]:
            out = await super().page(plan, stream, page, pass_no)
            if (stream, page, pass_no) == ("contacts", 1, 1):  # after page 1 was read, before page 3 is
                assert httpx.delete(f"{api}/address-book/{victim}", headers={"X-API-KEY": KEY},
                                    timeout=30).status_code == 204
                assert httpx.post(f"{api}/address-book", headers={"X-API-KEY": KEY}, timeout=30, json={
                    "kind": "person", "firstName": "Newly", "lastName": "Created",
                    "email": "newly.created@example.com"}).status_code == 201
            return out

    r = hub.sync.create_run(vendor_id, conn_id, "full")
    try:
        summary = await drive_run(r.id, StudioEditsMidRun(hub.sync))
    finally:
        await hub.connections.aclose()
    assert summary["status"] == "succeeded", summary
    with hub.db.read() as s:
        pages = s.execute(select(SyncRunPage.page, SyncRunPage.total_items).where(
            SyncRunPage.run_id == r.id, SyncRunPage.stream == "contacts")).all()
    assert sorted(pages) == [(1, 250), (2, 250), (3, 250)]  # one pass, the same total on every page
    truth = set(ground_truth(sandbox, "address-book"))
    live = set(stored(hub, Client, conn_id))
    assert summary["deleted"] == 0 and truth <= live, sorted(truth - live)  # nothing live deleted
    assert live - truth == {victim}  # read before its deletion: the next full run deletes it
    again = await run(hub, vendor_id, conn_id, "full")
    assert again["status"] == "succeeded" and again["deleted"] == 1, again
    assert set(stored(hub, Client, conn_id)) == truth


async def test_a_stream_added_to_a_connection_gets_its_history_in_the_next_incremental_run(
        hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    """Adding ``events`` to a synced connection's ``settings.streams``: the next incremental run lists that stream
    in full, since it has no cursor yet (it used to get the other streams' window, so the studio's existing
    events were never pulled, and the cursor then moved past them for good; found by a probe). The other
    streams keep their window; later runs are incremental for all of them."""
    from wedsync.store.tables_crm import CrmEvent

    admin(sandbox, "seed", contacts=120, jobs=40)
    vendor_id, conn_id = connect(hub, sandbox)
    first = await run(hub, vendor_id, conn_id, "full")
    assert first["status"] == "succeeded", first
    events = set(ground_truth(sandbox, "event"))
    assert len(events) > 10 and not stored(hub, CrmEvent, conn_id)
    hub.connections.update_settings(vendor_id, conn_id, {"streams": ["contacts", "jobs", "job_contacts", "events"]})
    with hub.db.session() as s:  # an event stored before (a hook), gone from the provider: the full listing proves it
        s.add(CrmEvent(vendor_id=vendor_id, connection_id=conn_id, provider=SLUG,
                       remote_id="01h35ccwymj5ctckp8px1azzzz", content_hash="x",
                       synced_at=utcnow() - timedelta(hours=1)))

    inc = await run(hub, vendor_id, conn_id, "incremental")
    assert inc["status"] == "succeeded" and inc["mode"] == "incremental", inc
    assert set(stored(hub, CrmEvent, conn_id)) == events  # every event, and the gone one deleted
    assert inc["deleted"] == 1 and inc["progress"]["events"]["total_items"] == len(events), inc
    assert inc["processed"] < 120 + 40 + len(events)  # contacts and jobs: their window only
    with hub.db.read() as s:
        assert s.get(SyncCursor, (conn_id, "events")) is not None

    again = await run(hub, vendor_id, conn_id, "incremental")  # now events has a cursor: a window like the rest
    assert again["status"] == "succeeded" and again["processed"] < len(events), again
    assert set(stored(hub, CrmEvent, conn_id)) == events


async def test_a_record_of_the_wrong_shape_fails_the_run_as_schema_mismatch(hub) -> None:  # type: ignore[no-untyped-def]
    """A provider that starts sending a field with another type (here a boolean last name, and an e-mail that is a
    number) fails the run with ``SchemaMismatch`` naming the stream and the record, and puts the connection in
    ``error`` with that reason: never an internal error, and nothing of the bad page half-written."""
    from wedsync.connectors.errors import SchemaMismatch

    items = [{"id": f"01h35ccwymj5ctckp8px1a{i:04d}", "kind": "person", "firstName": f"N{i}", "lastName": "Ok",
              "modified": "2026-01-01T00:00:00Z"} for i in range(150)]
    items[120]["lastName"] = True
    items[121]["email"] = 42
    app = FastAPI()

    @app.get("/api/v2/address-book")
    async def contacts(page: int = 1, pageSize: int = 100) -> dict:
        chunk = items[(page - 1) * pageSize: page * pageSize]
        return {"type": "addressbook-collection", "items": chunk,
                "meta": {"totalItems": len(items), "totalPages": 2, "page": page, "pageSize": pageSize}}

    url, stop = serve_app_in_thread(app)
    try:
        v = hub.tenancy.create_vendor("Shape Change Studio")
        c = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url=f"{url}/api/v2")
        r = hub.sync.create_run(v.id, c.id, "full")
        with pytest.raises(SchemaMismatch) as exc:
            await drive_run(r.id, DirectSteps(hub.sync))
        await hub.connections.aclose()
        assert "contacts record 01h35ccwymj5ctckp8px1a0120" in str(exc.value)
        summary = hub.sync.fail(r.id, exc.value)  # what the workflow does with a connector error
        assert summary["status"] == "failed" and "SchemaMismatch" in summary["error_detail"]
        with hub.db.read() as s:
            conn = s.get(Connection, c.id)
            assert conn.status == "error" and "01h35ccwymj5ctckp8px1a0120" in conn.status_detail
        assert len(stored(hub, Client, c.id)) == 100  # the first page; none of the bad one
    finally:
        stop()


async def test_job_contact_links_make_couples_and_wedding_date_evidence(hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    """VSCO jobs do not list their clients: the job-contact stream links them, the wedding's date becomes the
    couple's identity evidence (d:<date> keys), a job update keeps the links, a link that is no longer a client
    role unlinks, and a deleted link (gone from a complete listing) unlinks."""
    from wedsync.store.tables_crm import CrmIdentityKey

    admin(sandbox, "seed", contacts=60, jobs=20)
    vendor_id, conn_id = connect(hub, sandbox)
    first = await run(hub, vendor_id, conn_id, "full")
    assert first["status"] == "succeeded", first
    weddings = stored(hub, Wedding, conn_id)
    clients = stored(hub, Client, conn_id)
    job_id, w = next((rid, w) for rid, w in weddings.items() if w.event_date and len(w.client_remote_ids) == 2)
    person = clients[w.client_remote_ids[0]]
    with hub.db.read() as s:
        keys = set(s.execute(select(CrmIdentityKey.key).where(
            CrmIdentityKey.crm_client_id == person.crm_client_id)).scalars())
    assert any(k.startswith(f"d:{w.event_date.isoformat()}|") for k in keys), keys
    out = hub.crm.get_client(vendor_id, person.crm_client_id)
    assert job_id in {x["remote_id"] for x in out["weddings"]}

    # the job changes (a new guest count): its couple stays linked
    r = httpx.put(f"{sandbox}/vsco-workspace/api/v2/job/{job_id}", headers={"X-API-KEY": "sandbox-vsco-key"},
                  json={"guestCount": 123}, timeout=10)
    r.raise_for_status()
    # one partner is no longer a client of that job (their link's role changes): they leave its couple
    link = next(i for i in ground_truth(sandbox, "job-contact").values()
                if i["jobId"] == job_id and i["contactId"] == w.client_remote_ids[1])
    r = httpx.put(f"{sandbox}/vsco-workspace/api/v2/job-contact/{link['id']}",
                  headers={"X-API-KEY": "sandbox-vsco-key"}, json={"client": False}, timeout=10)
    r.raise_for_status()
    inc = await run(hub, vendor_id, conn_id, "incremental")
    assert inc["status"] == "succeeded", inc
    after = stored(hub, Wedding, conn_id)[job_id]
    assert after.guest_count == 123
    assert after.client_remote_ids == [w.client_remote_ids[0]]

    # the other link is deleted at the provider: only a complete full listing proves it gone
    other = next(i for i in ground_truth(sandbox, "job-contact").values()
                 if i["jobId"] == job_id and i["contactId"] == w.client_remote_ids[0])
    httpx.delete(f"{sandbox}/vsco-workspace/api/v2/job-contact/{other['id']}",
                 headers={"X-API-KEY": "sandbox-vsco-key"}, timeout=10).raise_for_status()
    inc = await run(hub, vendor_id, conn_id, "incremental")
    assert stored(hub, Wedding, conn_id)[job_id].client_remote_ids == [w.client_remote_ids[0]]
    full = await run(hub, vendor_id, conn_id, "full")
    assert full["deleted"] == 1, full
    assert stored(hub, Wedding, conn_id)[job_id].client_remote_ids == []


async def test_a_batch_of_hooks_refetches_each_record_once_and_isolates_bad_events(  # type: ignore[no-untyped-def]
        any_hub, sandbox) -> None:
    """The inbox drain's VSCO batch: repeated hooks about one record, deletions, a record the provider never
    had, a malformed hook and an unknown event type in one batch. The good ones land (one transaction), the
    bad ones fail alone with their reason, and what is stored equals the provider's records."""
    from wedsync.connectors.webhooks import VerifiedEvent
    from wedsync.services.webhook_dispatch import process_batch
    from wedsync.store.tables import WebhookEvent

    hub = any_hub
    admin(sandbox, "seed", contacts=120, jobs=20)
    vendor_id, conn_id = connect(hub, sandbox)
    assert (await run(hub, vendor_id, conn_id, "full"))["status"] == "succeeded"
    changed = admin(sandbox, "mutate", update=5, create=4, delete=3)

    hooks: list[tuple[str, str | None, bytes]] = []  # (event type, record id, body)
    for rid in changed["updated"]:
        hooks += [("contact.created", rid, b""), ("contact.created", None, json.dumps({"targetId": rid}).encode())]
    hooks += [("contact.created", rid, b"") for rid in changed["created"] + changed["deleted"]]
    hooks += [("contact.created", "01h0000000000000000000000z", b""),  # never existed: nothing to do
              ("contact.created", None, b'{"no": "target"}'),  # malformed: fails alone
              ("contact.renamed", "x", b"")]  # an event VSCO does not send: fails alone
    fetches: list[str] = []
    connector = await hub.connections.connector(hub.connections.get_any(conn_id))
    real_get = type(connector).get_record

    async def counting_get(self, stream, remote_id):  # type: ignore[no-untyped-def]
        fetches.append(remote_id)
        return await real_get(self, stream, remote_id)

    hub.inbox.start()
    try:
        for n, (event_type, rid, body) in enumerate(hooks):
            assert await hub.inbox.submit(vendor_id=vendor_id, connection_id=conn_id, provider=SLUG,
                                          event=VerifiedEvent(f"evt-{n}", event_type, rid), body=body)
        type(connector).get_record = counting_get  # type: ignore[method-assign]
        try:
            result = await process_batch(hub, SLUG)
        finally:
            type(connector).get_record = real_get  # type: ignore[method-assign]
    finally:
        await hub.inbox.stop()
        await hub.connections.aclose()

    assert result == {"claimed": len(hooks), "processed": len(hooks) - 2, "failed": 2, "retried": 0}
    named = changed["updated"] + changed["created"] + changed["deleted"] + ["01h0000000000000000000000z"]
    assert sorted(fetches) == sorted(named)  # each record once, however many hooks named it
    truth = ground_truth(sandbox, "address-book")
    clients = stored(hub, Client, conn_id)
    assert set(clients) == set(truth)  # created ones added, deleted ones marked deleted
    for rid, item in truth.items():
        assert clients[rid].content_hash == map_contact(item).content_hash(), rid
    with hub.db.read() as s:
        failed = dict(s.execute(select(WebhookEvent.event_id, WebhookEvent.error).where(
            WebhookEvent.status == "failed")).all())
    assert set(failed) == {f"evt-{len(hooks) - 2}", f"evt-{len(hooks) - 1}"}
    assert failed[f"evt-{len(hooks) - 2}"].startswith("malformed event: KeyError: ")  # with what was missing
    assert "unknown event" in failed[f"evt-{len(hooks) - 1}"]


async def test_hooks_of_a_deleted_connection_fail_alone(hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    """A connection deleted between a hook's arrival and its drain: its hooks fail (fatal, with the reason)
    and the other connection's hooks in the same batch still land."""
    from datetime import UTC, datetime

    from wedsync.connectors.errors import Fatal
    from wedsync.services.webhook_dispatch import handle_vsco_workspace_batch
    from wedsync.services.webhook_inbox import InboxRow

    admin(sandbox, "seed", contacts=30, jobs=5)
    vendor_id, conn_id = connect(hub, sandbox)
    target = sorted(ground_truth(sandbox, "address-book"))[0]

    def row(n: int, connection_id: str) -> InboxRow:
        return InboxRow(id=n, vendor_id=vendor_id, connection_id=connection_id, provider=SLUG, event_id=f"e{n}",
                        event_type="contact.created", record_id=target, body=b"", received_at=datetime.now(UTC),
                        attempts=0)

    try:
        outcomes = await handle_vsco_workspace_batch(hub, [row(1, "01h0000000000000000000gone"), row(2, conn_id)])
    finally:
        await hub.connections.aclose()
    assert isinstance(outcomes[1], Fatal) and "no longer exists" in str(outcomes[1])
    assert outcomes[2] is None and target in stored(hub, Client, conn_id)


async def test_a_page_that_lost_a_race_for_a_new_record_is_written_again(hub, sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL a sync page and a hook's re-fetch may both insert the same new contact; the loser's unique
    violation makes the page (or the hook's chunk) write again, not fail the run."""
    from sqlalchemy.exc import IntegrityError

    import wedsync.services.sync_engine as engine

    real = engine.insert_many
    armed = [True]
    raced: list[str] = []

    def insert_many(conn, table, rows):  # type: ignore[no-untyped-def]
        if table.name == "clients" and armed[0]:  # lose the race once: the first page, then the hook below
            armed[0] = False
            raced.append(table.name)
            raise IntegrityError("INSERT INTO clients ...", {}, Exception("UNIQUE constraint failed"))
        real(conn, table, rows)

    monkeypatch.setattr(engine, "insert_many", insert_many)
    vendor_id, conn_id = connect(hub, sandbox)
    result = await run(hub, vendor_id, conn_id, "full")
    assert result["status"] == "succeeded" and raced == ["clients"]
    assert_equal_to_truth(hub, conn_id, sandbox)
    new = admin(sandbox, "mutate", create=1)["created"][0]
    armed[0] = True
    assert await hub.sync.refetch(conn_id, "contacts", new) == "created" and raced == ["clients", "clients"]
    assert_equal_to_truth(hub, conn_id, sandbox)
    await hub.connections.aclose()


async def test_hooks_during_a_provider_outage_wait_out_a_backoff_then_land(any_hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    """A hook whose re-fetch meets an outage goes back to pending with a backoff instead of being claimed again by
    every drain (five drains in the seconds of an outage used to fail it for good). Drains during the backoff
    claim nothing; once it has passed and the provider is back, the record lands."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from wedsync.connectors import http as http_layer
    from wedsync.connectors.webhooks import VerifiedEvent
    from wedsync.services.webhook_dispatch import process_batch
    from wedsync.store.tables import WebhookEvent

    hub = any_hub
    admin(sandbox, "seed", contacts=30, jobs=5)
    vendor_id, conn_id = connect(hub, sandbox)
    assert (await run(hub, vendor_id, conn_id, "full"))["status"] == "succeeded"
    changed = admin(sandbox, "mutate", update=1)
    rid = changed["updated"][0]
    faults = f"{sandbox}/_sandbox/{SLUG}/faults"
    httpx.put(faults, json={"outages": [{"for_seconds": 60}]}).raise_for_status()
    hub.inbox.start()
    try:
        assert await hub.inbox.submit(vendor_id=vendor_id, connection_id=conn_id, provider=SLUG,
                                      event=VerifiedEvent("evt-outage", "contact.created", rid), body=b"")
        first = await process_batch(hub, SLUG)
        assert first == {"claimed": 1, "processed": 0, "failed": 0, "retried": 1}
        for _ in range(6):  # drains during the backoff find nothing to claim
            assert (await process_batch(hub, SLUG))["claimed"] == 0
        with hub.db.read() as s:
            row = s.execute(select(WebhookEvent).where(WebhookEvent.event_id == "evt-outage")).scalar_one()
            assert (row.status, row.attempts) == ("pending", 1) and row.next_attempt_at is not None
            # the outage answered 503 with Retry-After 60: the provider's wish is longer than the first backoff
            assert row.next_attempt_at > datetime.now(UTC) + timedelta(seconds=50)
            assert row.error  # the provider's error, for the operator
        assert hub.inbox.pending_count() == 1 and hub.inbox.pending_count(due_only=True) == 0
        httpx.put(faults, json={}).raise_for_status()
        with hub.db.session() as s:  # the backoff has passed
            s.execute(update(WebhookEvent).where(WebhookEvent.event_id == "evt-outage")
                      .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
        # and so have the breaker's open window and the account's pause the outage's Retry-After had set
        http_layer._breakers.pop(SLUG, None)
        for key, budget in list(http_layer._budgets.items()):
            if key[0] == SLUG:
                budget._blocked_until = 0.0
        later = await process_batch(hub, SLUG)
    finally:
        httpx.put(faults, json={}).raise_for_status()
        await hub.inbox.stop()
        await hub.connections.aclose()
    with hub.db.read() as s:
        err = s.execute(select(WebhookEvent.error).where(WebhookEvent.event_id == "evt-outage")).scalar_one()
    assert later == {"claimed": 1, "processed": 1, "failed": 0, "retried": 0}, (later, err)
    truth = ground_truth(sandbox, "address-book")[rid]
    with hub.db.read() as s:
        stored = s.execute(select(Client).where(Client.connection_id == conn_id, Client.remote_id == rid)).scalar_one()
    assert stored.remote_modified_at is not None and stored.remote_modified_at.isoformat()[:19] == \
        truth["modified"][:19]


def test_failing_a_run_whose_connection_was_deleted_is_quiet(hub) -> None:  # type: ignore[no-untyped-def]
    """The connection (and with it the run) deleted while the run was writing: marking the run failed finds no
    run; that is the end of it (it raised NotFound, and the workflow crashed a second time)."""
    v = hub.tenancy.create_vendor("Gone Studio")
    c = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY})
    r = hub.sync.create_run(v.id, c.id, "full")
    hub.connections.delete(v.id, c.id)
    out = hub.sync.fail(r.id, RuntimeError("IntegrityError: FOREIGN KEY constraint failed"))
    assert out["gone"] is True and out["status"] == "failed"


async def test_the_workflow_of_a_run_already_ended_lists_and_writes_nothing(hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    """A run closed before its workflow began (reconcile_runs closes a run whose workflow never started; a newer
    run may be going by then) must not be pulled after all when that workflow does start: it keeps its outcome
    and writes nothing."""
    admin(sandbox, "seed", contacts=30, jobs=5)
    vendor_id, conn_id = connect(hub, sandbox)
    r = hub.sync.create_run(vendor_id, conn_id, "full")
    hub.sync.fail(r.id, RuntimeError("sync run abandoned: its workflow was never started"))
    try:
        out = await drive_run(r.id, DirectSteps(hub.sync))
    finally:
        await hub.connections.aclose()
    assert out["status"] == "failed" and "abandoned" in out["error_detail"]
    assert out["processed"] == 0
    with hub.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Client).where(Client.connection_id == conn_id)) == 0
        assert s.scalar(select(func.count()).select_from(SyncRunPage).where(SyncRunPage.run_id == r.id)) == 0
        assert s.scalar(select(func.count()).select_from(SyncCursor)
                        .where(SyncCursor.connection_id == conn_id)) == 0
        assert s.get(SyncRun, r.id).status == "failed"


async def test_lookback_zero_keeps_an_edit_in_the_same_second_as_the_run_start(hub, sandbox
                                                                               ) -> None:  # type: ignore[no-untyped-def]
    """VSCO stamps ``modified`` in whole seconds: an edit made during a run, in the same second as the run's start
    and after the run read the record, is stamped *before* the start. The next incremental window starts at the
    whole second, so even ``lookback_seconds: 0`` picks it up."""
    from datetime import timedelta

    from sqlalchemy import update

    admin(sandbox, "seed", contacts=5, jobs=1)
    vendor_id, conn_id = connect(hub, sandbox)
    with hub.db.session() as s:
        s.get(Connection, conn_id).settings = {"lookback_seconds": 0}
    assert (await run(hub, vendor_id, conn_id, "full"))["status"] == "succeeded"
    with hub.db.read() as s:
        start = s.execute(select(func.min(SyncCursor.value)).where(SyncCursor.connection_id == conn_id)).scalar_one()
    late = start.replace(microsecond=0) + timedelta(microseconds=min(start.microsecond + 500_000, 999_999))
    with hub.db.engine.begin() as c:  # the last run started late in its second (the edit came earlier in it)
        c.execute(update(SyncCursor).where(SyncCursor.connection_id == conn_id).values(value=late))
    r = hub.sync.create_run(vendor_id, conn_id, "incremental")
    plan = hub.sync.begin(r.id)
    assert plan.since == late.replace(microsecond=0).isoformat()


def _unified_state(hub: Any, connection_id: str) -> dict[str, Any]:
    """Each source record's unified client as the sync left it: names, search text, dates, identity keys."""
    from wedsync.store.tables_crm import CrmClient, CrmIdentityKey

    with hub.db.read() as s:
        keys: dict[str, set[str]] = {}
        for k in s.execute(select(CrmIdentityKey.crm_client_id, CrmIdentityKey.key)):
            keys.setdefault(k.crm_client_id, set()).add(k.key)
        people = {c.id: c for c in s.execute(select(CrmClient)).scalars()}
        out: dict[str, Any] = {}
        for row in s.execute(select(Client).where(Client.connection_id == connection_id)).scalars():
            p = people[row.crm_client_id]
            members = sorted(r for r, in s.execute(select(Client.remote_id).where(
                Client.crm_client_id == row.crm_client_id)))
            out[row.remote_id] = (row.content_hash, members, p.first_name, p.last_name, p.email, p.phone,
                                  p.search_text, sorted(p.wedding_dates or []), sorted(keys.get(p.id, ())))
        return out


async def test_pages_prepared_ahead_write_what_the_write_computes(hub, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The next page is fetched, mapped and prepared (values, hash, features, keys, search text) while the
    current one is written; the stored result equals a run where every write computes everything itself,
    including the merges of re-entered people (features made ahead decide them)."""
    from tests.conftest import make_settings
    from wedsync.bootstrap import Hub
    from wedsync.sandbox.server import start_sandbox_in_thread
    from wedsync.services import sync_engine

    url, stop = start_sandbox_in_thread(port=0)
    try:
        admin(url, "seed", contacts=640, jobs=60, duplicates=0.05, seed=7)
        used: list[int] = []
        real_prepare = sync_engine.prepare

        def counting(records: Any, **kw: Any) -> Any:
            out = real_prepare(records, **kw)
            used.append(len(out))
            return out

        monkeypatch.setattr(sync_engine, "prepare", counting)
        vid, cid = connect(hub, url)
        ahead = await run(hub, vid, cid, "full")
        assert ahead["status"] == "succeeded" and ahead["merged"] > 0, ahead
        # most pages were prepared ahead: not the first of a stream, and the run's second page only if its fetch
        # ended after page 1's write learnt the phone region (a race: it failed the old bound of 500 under load);
        # contacts pages 3 to 7 (4 x 100 + 40) and job-contacts page 2 (20) always are
        assert len(used) >= 6 and sum(used) >= 460, used

        other = Hub(make_settings(tmp_path / "plain"))
        try:
            monkeypatch.setattr(sync_engine, "prepare", lambda records, **kw: None)  # every write computes
            vid2, cid2 = connect(other, url)
            plain = await run(other, vid2, cid2, "full")
            assert plain["status"] == "succeeded"
            assert (plain["created"], plain["merged"]) == (ahead["created"], ahead["merged"])
            assert _unified_state(other, cid2) == _unified_state(hub, cid)
        finally:
            other.close()
    finally:
        stop()


def test_prepared_features_of_another_phone_region_are_computed_again(hub) -> None:  # type: ignore[no-untyped-def]
    """Features made ahead with one default phone region are not used by a write that resolves with another
    (the connection's region changed meanwhile): a local number means another E.164 number there."""
    from wedsync.domain.crm import ClientRecord
    from wedsync.services.crm_sync import prepare
    from wedsync.store.tables_crm import CrmIdentityKey

    v = hub.tenancy.create_vendor("Prairie Light", "America/Chicago")
    c = hub.connections.create(v.id, SLUG, credentials={"api_key": KEY}, base_url="http://127.0.0.1:9/api/v2",
                               settings={"default_region": "GB"})
    rec = ClientRecord(remote_id="r1", first_name="Ada", last_name="Byron", phone="020 7946 0958")
    pre = prepare([rec], clients=True, region="US")  # made before the region was known to be GB
    with hub.db.engine.begin() as conn:
        hub.sync.upsert(conn, v.id, c.id, "contacts", [rec], prepared=pre)
    with hub.db.read() as s:
        keys = set(s.execute(select(CrmIdentityKey.key)).scalars())
    assert any(k.startswith("p:+442079460958|") for k in keys), keys
