"""CRM API over HTTP (in-process app): tenancy on the seed endpoint, CSV import jobs with a bad-row report,
clients, merges, conflicts, policies, mappings, export; bad input answers 4xx with a code."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

from tests.conftest import auth
from tests.integration.test_crm_hub import HB_HEADER, csv_connection, hb_row

SLUG = "vsco-workspace"


def hb_csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(HB_HEADER)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


async def wait_import(api: Any, key: str, job_id: str) -> dict[str, Any]:
    for _ in range(200):
        r = await api.get(f"/api/crm/imports/{job_id}", headers=auth(key))
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("succeeded", "failed"):
            return dict(r.json())
        await asyncio.sleep(0.05)
    raise AssertionError("import did not finish")


async def test_crm_api_end_to_end(api, hub) -> None:  # type: ignore[no-untyped-def]
    a = hub.tenancy.create_vendor("Studio A")
    _, key_a = hub.tenancy.create_key(a.id)
    b = hub.tenancy.create_vendor("Studio B")
    _, key_b = hub.tenancy.create_key(b.id)
    hb = csv_connection(hub, a.id)

    # the seed endpoint: another vendor's id is not found; bad input has codes
    r = await api.post("/api/integrations/crm/sync", headers=auth(key_a),
                       json={"vendorId": b.id, "crmProvider": "tave", "syncType": "full"})
    assert r.status_code == 404
    r = await api.post("/api/integrations/crm/sync", headers=auth(key_a),
                       json={"vendorId": a.id, "crmProvider": "myspace", "syncType": "full"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_provider"  # as on every route
    r = await api.post("/api/integrations/crm/sync", headers=auth(key_a),
                       json={"vendorId": a.id, "crmProvider": "stripe", "syncType": "full"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_crm_provider"
    r = await api.post("/api/integrations/crm/sync", headers=auth(key_a),
                       json={"vendorId": a.id, "crmProvider": "dubsado", "syncType": "full"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "provider_not_built"
    r = await api.post("/api/integrations/crm/sync", headers=auth(key_a),
                       json={"vendorId": a.id, "crmProvider": "honeybook", "syncType": "full"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_pullable"
    for product in ("17hats", "marketplace"):  # what the product can do decides, connected or not
        r = await api.post("/api/integrations/crm/sync", headers=auth(key_a),
                           json={"vendorId": a.id, "crmProvider": product, "syncType": "full"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_pullable", (product, r.text)
    r = await api.post("/api/integrations/crm/sync", headers=auth(key_a),
                       json={"vendorId": a.id, "crmProvider": "tave", "syncType": "sometimes"})
    assert r.status_code == 422

    # a file without the columns the layout needs: rejected whole, nothing stored
    r = await api.post("/api/crm/imports?layout=honeybook", headers=auth(key_a), content=b"Foo,Bar\n1,2\n")
    assert r.status_code == 422 and r.json()["error"]["code"] == "missing_columns"
    r = await api.post("/api/crm/imports?layout=myspace", headers=auth(key_a), content=b"x")
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_layout"
    # a product's export into a connection of another provider: its rows would have become that provider's
    # records (a VSCO write-back of them failed, VSCO's next full sync deleted them; found by a probe)
    tave = hub.connections.create(a.id, SLUG, credentials={"api_key": "k"}).id
    for layout, other in (("honeybook", tave), ("17hats", hb)):
        r = await api.post(f"/api/crm/imports?layout={layout}&connection_id={other}", headers=auth(key_a),
                           content=hb_csv([hb_row("Nora", "Quist", "nora@x.com")]))
        assert r.status_code == 422 and r.json()["error"]["code"] == "provider_mismatch", (layout, r.text)
    assert (await api.get("/api/crm/imports", headers=auth(key_a))).json()["items"] == []
    assert (await api.get("/api/crm/clients", headers=auth(key_a))).json()["items"] == []
    hub.connections.delete(a.id, tave)

    rows = [hb_row("Ana", "Ruiz", "ana@x.com", "(415) 555-0132", "Ana & Leo", "06/12/2027"),
            hb_row("Ruiz", "Ana", "ANA@x.com", "415.555.0132"),  # the same person, swapped, other format
            hb_row("Leo", "Park", "leo@x.com", "", "Ana & Leo", "06/12/2027"),
            ["", "", "garbage", "", "", "", "", "", "", "", "", ""]]
    r = await api.post("/api/crm/imports?layout=honeybook&chunk_size=2&filename=hb.csv", headers=auth(key_a),
                       content=hb_csv(rows))
    assert r.status_code == 202, r.text
    job = await wait_import(api, key_a, r.json()["id"])
    assert job["status"] == "succeeded" and job["processed_rows"] == 4 and job["bad_rows"] == 1
    assert job["chunks_done"] == 2 and job["merged"] == 1  # 2 + 2 rows (no empty last chunk: a full one looks ahead)
    # the imports list is paged by keyset, newest first
    r = await api.post("/api/crm/imports?layout=honeybook", headers=auth(key_a), content=hb_csv(rows[:1]))
    second = await wait_import(api, key_a, r.json()["id"])
    first = (await api.get("/api/crm/imports", headers=auth(key_a), params={"limit": 1})).json()
    assert [j["id"] for j in first["items"]] == [second["id"]] and first["next_cursor"] == second["id"]
    rest = (await api.get("/api/crm/imports", headers=auth(key_a),
                          params={"limit": 1, "after": first["next_cursor"]})).json()
    assert [j["id"] for j in rest["items"]] == [job["id"]]
    last = (await api.get("/api/crm/imports", headers=auth(key_a), params={"limit": 1, "after": job["id"]})).json()
    assert last == {"items": [], "next_cursor": None}
    errs = (await api.get(f"/api/crm/imports/{job['id']}/errors", headers=auth(key_a))).json()["items"]
    assert errs and errs[-1]["line"] == 5 and errs[-1]["skipped"] is True and errs[-1]["code"]
    # line 5 has two reports (a bad e-mail, then no identity): both say the row was skipped, and paging one at
    # a time shows both (the second was lost when a page ended on the first)
    assert [(e["code"], e["skipped"]) for e in errs if e["line"] == 5] == [("invalid_email", True),
                                                                           ("no_identity", True)]
    paged: list[dict[str, Any]] = []
    after = 0
    while after is not None:
        page = (await api.get(f"/api/crm/imports/{job['id']}/errors", params={"limit": 1, "after_line": after},
                              headers=auth(key_a))).json()
        paged += page["items"]
        after = page["next_after_line"]
    assert paged == errs

    clients = (await api.get("/api/crm/clients", headers=auth(key_a))).json()["items"]
    assert sorted(c["first_name"] for c in clients) == ["Ana", "Leo"]
    ana = next(c for c in clients if c["first_name"] == "Ana")
    detail = (await api.get(f"/api/crm/clients/{ana['id']}", headers=auth(key_a))).json()
    assert len(detail["sources"]) == 2 and detail["wedding_dates"] == ["2027-06-12"]
    assert (await api.get(f"/api/crm/clients/{ana['id']}", headers=auth(key_b))).status_code == 404
    assert (await api.get("/api/crm/clients", headers=auth(key_b))).json()["items"] == []

    merges = (await api.get("/api/crm/merges", headers=auth(key_a))).json()
    assert merges["by_rule"] == {"email+name": 1} and merges["items"][0]["evidence"]["swapped_names"] is True
    assert (await api.post(f"/api/crm/merges/{merges['items'][0]['id']}/undo", headers=auth(key_b))).status_code == 404
    r = await api.post(f"/api/crm/merges/{merges['items'][0]['id']}/undo", headers=auth(key_a))
    assert r.status_code == 200 and r.json()["restored"]["id"] != ana["id"]
    assert len((await api.get("/api/crm/clients", headers=auth(key_a))).json()["items"]) == 3
    r = await api.post(f"/api/crm/merges/{merges['items'][0]['id']}/undo", headers=auth(key_a))
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_undone"

    r = await api.put("/api/crm/policies", headers=auth(key_a),
                      json={"field": "email", "kind": "source_of_truth", "source": "honeybook"})
    assert r.status_code == 200 and r.json()["source"] == "honeybook"
    r = await api.put("/api/crm/policies", headers=auth(key_a), json={"field": "email", "kind": "source_of_truth"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_policy"
    r = await api.put("/api/crm/policies", headers=auth(key_a), json={"field": "shoe_size", "kind": "manual"})
    assert r.status_code == 422
    r = await api.put("/api/crm/policies", headers=auth(key_a), json={"field": "custom.", "kind": "manual"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_field"
    # a source of truth is a CRM provider by any of its names, or one of the vendor's connections; a name that
    # is neither would be a rule that never applies
    r = await api.put("/api/crm/policies", headers=auth(key_a),
                      json={"field": "phone", "kind": "source_of_truth", "source": " Tave "})
    assert r.status_code == 200 and r.json()["source"] == "vsco-workspace"
    r = await api.put("/api/crm/policies", headers=auth(key_a),
                      json={"field": "phone", "kind": "source_of_truth", "source": hb})
    assert r.status_code == 200 and r.json()["source"] == hb
    for bad in ("nonexistent-crm", "stripe", b.id):
        r = await api.put("/api/crm/policies", headers=auth(key_a),
                          json={"field": "phone", "kind": "source_of_truth", "source": bad})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_policy", (bad, r.text)
    # a source means something only to a source_of_truth policy: with another kind it was stored and shown, a rule
    # the vendor read as "honeybook decides" that never applied (found by a probe)
    for kind in ("manual", "newest_wins"):
        r = await api.put("/api/crm/policies", headers=auth(key_a),
                          json={"field": "phone", "kind": kind, "source": "honeybook"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_policy", (kind, r.text)
    r = await api.put("/api/crm/policies", headers=auth(key_a), json={"field": "phone", "kind": "newest_wins"})
    assert r.status_code == 200 and r.json()["source"] is None
    assert len((await api.get("/api/crm/policies", headers=auth(key_a))).json()["items"]) == 2

    r = await api.put(f"/api/crm/connections/{hb}/field-mappings", headers=auth(key_a),
                      json={"mappings": {"lead_source": "how_they_found_us"}})
    assert r.status_code == 200 and r.json()["mappings"] == [
        {"entity": "client", "source_key": "lead_source", "target": "how_they_found_us"}]
    assert (await api.put(f"/api/crm/connections/{hb}/field-mappings", headers=auth(key_b),
                          json={"mappings": {}})).status_code == 404

    r = await api.patch(f"/api/crm/clients/{ana['id']}", headers=auth(key_a),
                        json={"company": "Ruiz Weddings", "expected_version": 999})
    assert r.status_code == 409 and r.json()["error"]["code"] == "version_conflict"
    for bad, code in (({"email": "no-at-sign"}, "invalid_email"), ({"email": "ana@"}, "invalid_email"),
                      ({"phone": "call me maybe"}, "invalid_phone"), ({"phone": "12"}, "invalid_phone")):
        r = await api.patch(f"/api/crm/clients/{ana['id']}", headers=auth(key_a), json=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (bad, r.text)
    r = await api.patch(f"/api/crm/clients/{ana['id']}", headers=auth(key_a),
                        json={"phone": "(415) 555-0199 ext. 12", "email": " Ana.Ruiz@X.com "})
    assert r.status_code == 200 and (r.json()["phone"], r.json()["email"]) == ("+14155550199;ext=12", "ana.ruiz@x.com")
    r = await api.patch(f"/api/crm/clients/{ana['id']}", headers=auth(key_a), json={"phone": ""})
    assert r.status_code == 200 and r.json()["phone"] is None  # an empty value clears it
    r = await api.patch(f"/api/crm/clients/{ana['id']}", headers=auth(key_a), json={"company": "Ruiz Weddings"})
    assert r.status_code == 200 and r.json()["company"] == "Ruiz Weddings"
    assert r.json()["field_sources"]["company"]["c"] == "wedsync"
    r = await api.patch(f"/api/crm/clients/{ana['id']}", headers=auth(key_a),
                        json={"company": "  ", "last_name": " Ruiz "})
    assert r.status_code == 200 and r.json()["company"] is None  # cleared, never ""
    assert r.json()["last_name"] == "Ruiz"
    # the address is editable through the API too (the service took it, the request model refused it)
    r = await api.patch(f"/api/crm/clients/{ana['id']}", headers=auth(key_a), json={"address": {
        "streetAddress": " 12 Ocean Ave ", "city": "Santa Cruz", "state": "CA", "postalCode": "95060",
        "country": "United States", "village": ""}})
    assert r.status_code == 200 and r.json()["address"] == {
        "streetAddress": "12 Ocean Ave", "city": "Santa Cruz", "state": "CA", "postalCode": "95060",
        "country": "US"}, r.text
    for bad in ({"street": "12 Ocean Ave"}, {"city": 5}, "12 Ocean Ave"):
        r = await api.patch(f"/api/crm/clients/{ana['id']}", headers=auth(key_a), json={"address": bad})
        assert r.status_code == 422, (bad, r.text)
    r = await api.patch(f"/api/crm/clients/{ana['id']}", headers=auth(key_a), json={"address": None})
    assert r.status_code == 200 and r.json()["address"] is None

    r = await api.get("/api/crm/export?layout=17hats", headers=auth(key_a))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0].startswith("Contact ID,First Name") and len(lines) == 1 + 3
    assert (await api.get("/api/crm/export?layout=nope", headers=auth(key_a))).status_code == 422
    assert (await api.get("/api/crm/conflicts?status=all", headers=auth(key_a))).status_code == 200
    # merges, conflicts and the outbox are paged by keyset like every list
    page = (await api.get("/api/crm/merges?limit=1", headers=auth(key_a))).json()
    assert len(page["items"]) == 1 and page["next_cursor"] == page["items"][0]["id"]
    page = (await api.get(f"/api/crm/merges?limit=1&after={page['next_cursor']}", headers=auth(key_a))).json()
    assert page["items"] == [] and page["next_cursor"] is None
    for url in ("/api/crm/merges", "/api/crm/conflicts", "/api/crm/outbox"):
        assert (await api.get(f"{url}?after=page2", headers=auth(key_a))).status_code == 422, url
        assert (await api.get(url, headers=auth(key_a))).json()["next_cursor"] is None, url
    assert (await api.get("/api/integrations/crm/sync/01jzzzzzzzzzzzzzzzzzzzzzzz",
                          headers=auth(key_a))).status_code == 404


async def test_client_search_ignores_case_and_accents_and_takes_wildcards_literally(api, hub) -> None:  # type: ignore[no-untyped-def]
    v = hub.tenancy.create_vendor("Search Studio")
    _, key = hub.tenancy.create_key(v.id)
    csv_connection(hub, v.id)
    rows = [hb_row("Étienne", "Pottier", "e.pottier@x.com"), hb_row("Ana", "Ruiz", "ana_r@x.com"),
            hb_row("Zoë", "Müller", "zoe@x.com", "(415) 555-0134"), hb_row("성호", "정", "sh@x.com")]
    r = await api.post("/api/crm/imports?layout=honeybook", headers=auth(key), content=hb_csv(rows))
    assert (await wait_import(api, key, r.json()["id"]))["status"] == "succeeded"

    async def found(q: str) -> list[str]:
        r = await api.get("/api/crm/clients", params={"q": q}, headers=auth(key))
        assert r.status_code == 200, r.text
        return sorted(c["first_name"] for c in r.json()["items"])

    for q in ("étienne", "ÉTIENNE", "Etienne", "etienne pott"):
        assert await found(q) == ["Étienne"], q
    assert await found("MULLER") == await found("müller") == ["Zoë"]
    assert await found("성호") == ["성호"]
    assert await found("ana_r@") == ["Ana"] and await found("%") == [] and await found("a%z") == []
    assert await found("_") == ["Ana"]  # the one e-mail with an underscore, not everyone
    assert await found("+14155550134") == ["Zoë"]
    # a display name made of the names follows a renamed first name, and is found by it
    ana = (await api.get("/api/crm/clients", params={"q": "ana_r"}, headers=auth(key))).json()["items"][0]
    r = await api.patch(f"/api/crm/clients/{ana['id']}", headers=auth(key), json={"first_name": "Alexandrina"})
    assert r.status_code == 200 and r.json()["display_name"] == "Alexandrina Ruiz"
    assert await found("alexandrina") == ["Alexandrina"]


async def test_an_export_imports_back_without_duplicates_and_keeps_the_products_ids_and_dates(api, hub) -> None:  # type: ignore[no-untyped-def]
    """The unified export in a product's layout carries the client's id at that product and the product's
    creation date, so importing it back updates the same records (it carried the hub's own ids and creation
    times: a re-import created every client again and moved their jobs to the copies; found by a probe)."""
    v = hub.tenancy.create_vendor("Round Trip Studio")
    _, key = hub.tenancy.create_key(v.id)
    header = ("Client ID,Client Name,Email Address,Mobile,Phone,Address,Suburb,State,Postcode,Country,Job ID,"
              "Job Name,Job Date,Job Type,Job Status,Lead Source,Date Added\r\n")
    data = (header + "101,Chloé Martin,chloe@example.com.au,0412 345 678,,,,,,,J1,Martin Wedding,13/03/2027,"
            "Wedding,Booked,,02/01/2025 09:15\r\n102,Mia Wong,mia@example.com,,,,,,,,J2,Wong Wedding,14/03/2027,"
            "Wedding,Booked,,03/01/2025 10:00\r\n").encode()
    r = await api.post("/api/crm/imports?layout=studio-ninja", headers=auth(key), content=data)
    job = await wait_import(api, key, r.json()["id"])
    assert job["status"] == "succeeded" and job["created"] == 4, job
    conn_id = job["connection_id"]
    for url in ("/api/crm/export?layout=studio-ninja", f"/api/crm/export?layout=studio-ninja&connection_id={conn_id}"):
        lines = (await api.get(url, headers=auth(key))).text.strip().splitlines()
        rows = sorted(line.split(",") for line in lines[1:])
        assert [(x[0], x[10], x[-1]) for x in rows] == [("101", "J1", "02/01/2025 09:15"),
                                                        ("102", "J2", "03/01/2025 10:00")], (url, lines)
    exported = (await api.get("/api/crm/export?layout=studio-ninja", headers=auth(key))).content
    r = await api.post(f"/api/crm/imports?layout=studio-ninja&connection_id={conn_id}", headers=auth(key),
                       content=exported)
    again = await wait_import(api, key, r.json()["id"])
    assert again["status"] == "succeeded" and again["created"] == 0 and again["merged"] == 0, again
    clients = (await api.get("/api/crm/clients", headers=auth(key))).json()["items"]
    assert len(clients) == 2
    lines = (await api.get(f"/api/crm/export?layout=studio-ninja&connection_id={conn_id}",
                           headers=auth(key))).text.strip().splitlines()
    assert len(lines) == 3  # the connection still holds its two records, each with its job


async def test_import_as_a_form_upload(api, hub) -> None:  # type: ignore[no-untyped-def]
    """A browser's file input or ``curl -F file=@export.csv`` sends multipart/form-data: the file part is the
    export (its name kept), never the form's boundaries read as CSV rows."""
    v = hub.tenancy.create_vendor("Form Upload Studio")
    _, key = hub.tenancy.create_key(v.id)
    rows = [hb_row("Mia", "Søndergaard", "mia@x.com", "(415) 555-0177"), hb_row("Noé", "Dubois", "noe@x.com", "")]
    r = await api.post("/api/crm/imports?layout=honeybook", headers=auth(key),
                       files={"file": ("HoneyBook contacts.csv", hb_csv(rows), "text/csv")})
    assert r.status_code == 202, r.text
    job = await wait_import(api, key, r.json()["id"])
    assert (job["status"], job["filename"], job["total_rows"], job["good_rows"], job["bad_rows"]) == (
        "succeeded", "HoneyBook contacts.csv", 2, 2, 0)
    names = sorted(c["last_name"] for c in (await api.get("/api/crm/clients", headers=auth(key))).json()["items"])
    assert names == ["Dubois", "Søndergaard"]

    # a form whose one file has another field name is still that file; a form without a file is refused
    r = await api.post("/api/crm/imports?layout=honeybook", headers=auth(key),
                       files={"upload": ("hb.csv", hb_csv(rows[:1]), "text/csv")})
    assert r.status_code == 202, r.text
    no_file = (b"--zz\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nno file here\r\n--zz--\r\n")
    form = {**auth(key), "content-type": "multipart/form-data; boundary=zz"}
    r = await api.post("/api/crm/imports?layout=honeybook", headers=form, content=no_file)
    assert r.status_code == 422 and r.json()["error"]["code"] == "missing_file", r.text
    r = await api.post("/api/crm/imports?layout=honeybook", headers=form,
                       content=b"--zz\r\nContent-Disposition: form-data; name=\"file\"")  # cut short
    assert r.status_code == 422 and r.json()["error"]["code"] in ("malformed_form", "missing_file"), r.text


def test_seed_success_is_null_until_the_run_has_an_outcome(hub) -> None:  # type: ignore[no-untyped-def]
    """``success`` is the run's outcome: a queued or running run is not reported as succeeded (a client following
    the seed read "succeeded, 0 records" for a run that then failed on bad credentials)."""
    from wedsync.connectors.errors import ReauthRequired

    v = hub.tenancy.create_vendor("Seed Studio")
    conn = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "wrong-key-123"},
                                  base_url="http://127.0.0.1:9/vsco-workspace/api/v2")
    run = hub.sync.create_run(v.id, conn.id, "full")
    queued = hub.crm.run_out(v.id, run.id)
    assert (queued["status"], queued["success"], queued["finished"]) == ("queued", None, False)
    hub.sync.begin(run.id)
    assert hub.crm.run_out(v.id, run.id)["success"] is None  # running
    hub.sync.fail(run.id, ReauthRequired("credentials rejected"))
    failed = hub.crm.run_out(v.id, run.id)
    assert (failed["status"], failed["success"], failed["finished"]) == ("failed", False, True)


async def test_resolving_with_the_choice_value_needs_a_value(api, hub) -> None:  # type: ignore[no-untyped-def]
    """``{"choice": "value"}`` without a value is 422 ``missing_field``, not an erased field (found live: it cleared
    the company here and, through the outbox, at VSCO); an explicit null clears it, as a PATCH with null does."""
    from datetime import UTC, datetime

    from wedsync.domain.crm import ClientRecord

    v = hub.tenancy.create_vendor("Resolve Studio")
    _, key = hub.tenancy.create_key(v.id)
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": "sandbox-vsco-key"}).id
    hb = csv_connection(hub, v.id)
    with hub.db.engine.begin() as c:
        hub.sync.upsert(c, v.id, tave, "contacts", [ClientRecord(
            "v1", first_name="Ana", last_name="Ruiz", email="ana@x.com", company="Ana & Leo",
            remote_modified_at=datetime(2026, 10, 1, tzinfo=UTC))])
    with hub.db.engine.begin() as c:  # a CSV row has no time: newest-wins cannot settle the company
        hub.sync.upsert(c, v.id, hb, "contacts", [ClientRecord("h1", first_name="Ana", last_name="Ruiz",
                                                               email="ana@x.com", company="Ruiz Events")])
    (x,) = (await api.get("/api/crm/conflicts", headers=auth(key))).json()["items"]
    assert (x["field"], x["local"], x["incoming"]) == ("company", "Ana & Leo", "Ruiz Events")

    r = await api.post(f"/api/crm/conflicts/{x['id']}/resolve", headers=auth(key), json={"choice": "value"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "missing_field", r.text
    client = (await api.get(f"/api/crm/clients/{x['crm_client_id']}", headers=auth(key))).json()
    assert client["company"] == "Ana & Leo" and len(client["open_conflicts"]) == 1
    assert (await api.get("/api/crm/outbox", headers=auth(key))).json()["items"] == []

    r = await api.post(f"/api/crm/conflicts/{x['id']}/resolve", headers=auth(key),
                       json={"choice": "value", "value": None})
    assert r.status_code == 200 and r.json()["resolution"] == {"choice": "value", "value": None}
    assert (await api.get(f"/api/crm/clients/{x['crm_client_id']}", headers=auth(key))).json()["company"] is None
    (row,) = (await api.get("/api/crm/outbox", headers=auth(key))).json()["items"]
    assert row["op"] == "update_contact" and row["payload"]["fields"] == {"company": None}


async def test_the_seed_sync_takes_provider_objects_and_names_and_asks_which_connection(api, hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The seed's interfaces give ``crmProvider`` as a CRMProvider object ({name, apiVersion, ...}) and name the
    providers 'tave', 'light_blue', 'studio_ninja'...; a user writes 'VSCO Workspace'. All of them name the
    provider (an object was a 422, a display name a 404). With two connections to the provider the request must
    say which one (``connectionId``): the oldest was pulled, a connection whose key had been replaced (found by
    probing a served hub)."""
    from wedsync.workflows import sync as sync_workflows

    async def record_only(vendor_id: str, connection_id: str, mode: str, **_: Any) -> str:
        return str(hub.sync.create_run(vendor_id, connection_id, mode).id)  # (this app runs no DBOS)

    monkeypatch.setattr(sync_workflows, "start_sync", record_only)
    v = hub.tenancy.create_vendor("Two Studios")
    _, key = hub.tenancy.create_key(v.id)
    other = hub.tenancy.create_vendor("Someone Else")
    theirs = hub.connections.create(other.id, SLUG, credentials={"api_key": "k"}).id
    old = hub.connections.create(v.id, SLUG, credentials={"api_key": "old"}).id

    async def sync(**body: Any) -> Any:
        return await api.post("/api/integrations/crm/sync", headers=auth(key),
                              json={"vendorId": v.id, "syncType": "full", **body})

    for provider in ({"name": "tave", "apiVersion": "v2", "capabilities": {"webhooks": True}}, "VSCO Workspace",
                     "vsco workspace (tave)", " Tave "):
        r = await sync(crmProvider=provider)
        assert r.status_code == 200, (provider, r.text)
        assert r.json()["connection_id"] == old and r.json()["syncId"]
        hub.sync.fail(r.json()["syncId"], RuntimeError("stopped by the test"))  # one run at a time per connection
    for provider, code in (("Studio Ninja", "not_pullable"), ({"name": "Light Blue"}, "not_pullable"),
                           ({"name": "myspace"}, "unknown_provider"), ({"apiVersion": "v2"}, "validation_error")):
        r = await sync(crmProvider=provider)
        assert r.json()["error"]["code"] == code, (provider, r.text)

    new = hub.connections.create(v.id, SLUG, credentials={"api_key": "new"}).id
    r = await sync(crmProvider="tave")
    assert r.status_code == 409 and r.json()["error"]["code"] == "ambiguous_connection", r.text
    assert [c["id"] for c in r.json()["error"]["details"]["connections"]] == [old, new]
    r = await sync(crmProvider="tave", connectionId=new)
    assert r.status_code == 200 and r.json()["connection_id"] == new, r.text
    hub.sync.fail(r.json()["syncId"], RuntimeError("stopped by the test"))
    r = await sync(crmProvider="tave", connectionId=theirs)  # another vendor's connection: not found, never used
    assert r.status_code == 404, r.text
    hb = csv_connection(hub, v.id)
    r = await sync(crmProvider="tave", connectionId=hb)
    assert r.status_code == 422 and r.json()["error"]["code"] == "provider_mismatch", r.text


async def test_a_deleted_policy_gives_way_to_the_next_rule(api, hub) -> None:  # type: ignore[no-untyped-def]
    """``DELETE /api/crm/policies/{id}``: only the vendor's own (another vendor's id is 404 and stays), and the next
    conflict follows the next less specific policy at once, then the default (policies could not be removed:
    a vendor who tried a rule was stuck with it)."""
    from datetime import UTC, datetime, timedelta

    from wedsync.domain.crm import ClientRecord

    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    v = hub.tenancy.create_vendor("Policy Undo Studio")
    _, key = hub.tenancy.create_key(v.id)
    other = hub.tenancy.create_vendor("Other Studio")
    _, other_key = hub.tenancy.create_key(other.id)
    tave = hub.connections.create(v.id, SLUG, credentials={"api_key": "sandbox-vsco-key"}).id
    hb = csv_connection(hub, v.id)

    async def put(body: dict[str, Any]) -> str:
        r = await api.put("/api/crm/policies", headers=auth(key), json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    def phone_conflict(n: int) -> dict[str, Any]:
        """A person at Tave, then at HoneyBook an hour later with another phone: a conflict on the phone."""
        first = ("Ana", "Beatriz", "Consuelo")[n - 1]
        email = f"{first.lower()}@example.com"
        for conn_id, rec in ((tave, ClientRecord(f"v{n}", first_name=first, last_name="Diaz", email=email,
                                                 phone=f"+1415555010{n}", remote_modified_at=t0)),
                             (hb, ClientRecord(f"h{n}", first_name=first, last_name="Diaz", email=email,
                                               phone=f"+1415555020{n}", remote_modified_at=t0 + timedelta(hours=1)))):
            with hub.db.engine.begin() as c:
                hub.sync.upsert(c, v.id, conn_id, "contacts", [rec])
        (x,) = [x for x in hub.crm.list_conflicts(v.id, status=None) if x["incoming"] == f"+1415555020{n}"]
        return x

    general = await put({"field": "phone", "kind": "manual"})
    specific = await put({"field": "phone", "connection_id": hb, "kind": "source_of_truth", "source": "honeybook"})
    x = phone_conflict(1)
    assert (x["status"], x["outcome"], x["policy"]) == ("auto", "incoming", "source_of_truth")

    # another vendor's key, an unknown id: 404, nothing removed
    r = await api.delete(f"/api/crm/policies/{specific}", headers=auth(other_key))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    r = await api.delete("/api/crm/policies/01h35ccwymj5ctckp8px1azhg6", headers=auth(key))
    assert r.status_code == 404, r.text
    listed = (await api.get("/api/crm/policies", headers=auth(key))).json()["items"]
    assert sorted(p["id"] for p in listed) == sorted([general, specific])

    r = await api.delete(f"/api/crm/policies/{specific}", headers=auth(key))
    assert r.status_code == 204, r.text
    assert (await api.delete(f"/api/crm/policies/{specific}", headers=auth(key))).status_code == 404
    listed = (await api.get("/api/crm/policies", headers=auth(key))).json()["items"]
    assert [(p["id"], p["connection_id"], p["field"]) for p in listed] == [(general, "*", "phone")]
    # the next conflict (within the resolver's cache time) follows (*, phone): manual
    x = phone_conflict(2)
    assert (x["status"], x["outcome"], x["policy"]) == ("open", "open", "manual")
    assert phone_conflict(1)["status"] == "auto"  # a conflict settled before keeps its policy

    assert (await api.delete(f"/api/crm/policies/{general}", headers=auth(key))).status_code == 204
    assert (await api.get("/api/crm/policies", headers=auth(key))).json()["items"] == []
    x = phone_conflict(3)  # the default: newest wins, HoneyBook's record is an hour newer
    assert (x["status"], x["outcome"], x["policy"]) == ("auto", "incoming", "newest_wins")
    # the operator's scope rules apply: a read-only key cannot remove a policy
    again = await put({"field": "email", "kind": "manual"})
    _, reader = hub.tenancy.create_key(v.id, scopes=["read"])
    assert (await api.delete(f"/api/crm/policies/{again}", headers=auth(reader))).status_code == 403
    assert [p["id"] for p in (await api.get("/api/crm/policies", headers=auth(key))).json()["items"]] == [again]


async def test_a_repeated_column_is_named_in_the_import_report_and_good_rows_land(api, hub) -> None:  # type: ignore[no-untyped-def]
    """A 17hats export with two ``Email`` columns: the job's report names the repeated column on the header's line
    (a warning, not a skipped row) and each row whose second e-mail differs; every row lands, with the first
    column's e-mail (the second one used to become a custom field named "Email", silently)."""
    v = hub.tenancy.create_vendor("Two Emails Studio")
    _, key = hub.tenancy.create_key(v.id)
    data = (b"Contact ID,First Name,Last Name,Email,Phone,Email\r\n"
            b"1,Ana,Lima,ana@example.com,,ana@work.example\r\n"
            b"2,Bea,Cruz,,,bea@example.com\r\n"
            b"3,Cy,Dunn,cy@example.com,,\r\n"
            b"4,,,not-an-email,,\r\n")
    r = await api.post("/api/crm/imports?layout=17hats", headers=auth(key), content=data)
    assert r.status_code == 202, r.text
    job = await wait_import(api, key, r.json()["id"])
    assert (job["status"], job["good_rows"], job["bad_rows"], job["created"]) == ("succeeded", 3, 1, 3), job
    report = (await api.get(f"/api/crm/imports/{job['id']}/errors", headers=auth(key))).json()["items"]
    assert [(e["line"], e["column"], e["code"], e["skipped"]) for e in report] == [
        (1, "Email", "duplicate_column", False), (2, "Email", "duplicate_column", False),
        (5, "Email", "invalid_email", True), (5, None, "no_identity", True)], report
    assert "columns 4, 6" in report[0]["message"] and "ana@work.example" in report[1]["message"]
    clients = (await api.get("/api/crm/clients", headers=auth(key))).json()["items"]
    assert sorted((c["email"], c["custom_fields"]) for c in clients) == [
        ("ana@example.com", {}), ("bea@example.com", {}), ("cy@example.com", {})]
