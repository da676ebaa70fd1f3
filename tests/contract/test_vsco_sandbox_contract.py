"""The VSCO Workspace sandbox against the vendor's OpenAPI spec: every response shape, and nothing unspecified.

Responses are validated with the spec's own schemas (``../shared/specs/vsco-workspace/workspace-openapi.json``);
the spec documents 401 only as ``components.responses.unauthorizedError`` and no 404 at all, so those are
checked against its generic ``Error`` schema.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.contract.spec_tools import OpenApiSpec
from wedsync.sandbox.app import create_sandbox_app
from wedsync.sandbox.server import start_sandbox_in_thread
from wedsync.sandbox.vsco_workspace import DEFAULT_API_KEY, JOB_TYPES, PREFIX, SLUG, VscoWorkspaceEmulator

SPEC = OpenApiSpec.load("vsco-workspace/workspace-openapi.json")
KEY = {"X-API-KEY": DEFAULT_API_KEY}
ULID = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ERROR = SPEC.component("schemas", "Error")
VALIDATION = SPEC.component("responses", "validationError")


@pytest.fixture
def app() -> FastAPI:
    return create_sandbox_app(seed=7, vsco_contacts=120, vsco_jobs=40)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://sandbox.test{PREFIX}", headers=KEY) as c:
        yield c


def check(response: httpx.Response, path: str, method: str, status: int) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    SPEC.validate(body, SPEC.response_schema(path, method, status))
    return body


def check_entity_basics(item: dict[str, Any], collection_path: str) -> None:
    assert ULID.match(item["id"])
    assert STAMP.match(item["created"]) and STAMP.match(item["modified"])
    assert item["links"]["self"]["href"] == f"http://sandbox.test{PREFIX}{collection_path}/{item['id']}"


# --- lists -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [
    {}, {"pageSize": 10}, {"pageSize": 100, "page": 2}, {"sortBy": "modified desc"}, {"sortBy": "name"},
    {"sortBy": "created asc", "includeHidden": "true"}, {"page": 99}, {"sortBy": "cellPhone desc"},
])
async def test_address_book_list_matches_spec(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    body = check(await client.get("/address-book", params=params), "/address-book", "get", 200)
    assert body["type"] == "addressbook-collection"
    meta = body["meta"]
    size = int(params.get("pageSize", 100))
    assert meta["rows"] == size and meta["currentPage"] == int(params.get("page", 1))
    assert meta["totalPages"] == -(-meta["totalItems"] // size)
    for item in body["items"]:
        check_entity_basics(item, "/address-book")
        assert item["name"] == f"{item['firstName']} {item['lastName']}"
        if params.get("includeHidden") != "true":
            assert item["hidden"] is False


async def test_sorting_and_paging_cover_every_record_once(client: httpx.AsyncClient) -> None:
    seen: list[dict[str, Any]] = []
    page = 1
    while True:
        body = (await client.get("/address-book", params={
            "page": page, "pageSize": 10, "sortBy": "modified desc", "includeHidden": "true"})).json()
        if not body["items"]:
            break
        seen.extend(body["items"])
        page += 1
    assert len(seen) == len({i["id"] for i in seen}) == body["meta"]["totalItems"] == 120
    stamps = [(i["modified"], i["id"]) for i in seen]
    assert stamps == sorted(stamps, reverse=True)
    by_id = (await client.get("/address-book", params={"sortBy": "id desc", "includeHidden": "true"})).json()
    ids = [i["id"] for i in by_id["items"]]
    assert ids == sorted(ids, reverse=True)
    by_name = (await client.get("/address-book", params={"sortBy": "name asc"})).json()
    names = [i["name"].casefold() for i in by_name["items"]]
    assert names == sorted(names)


async def test_email_filter(client: httpx.AsyncClient) -> None:
    first = (await client.get("/address-book", params={"pageSize": 10})).json()["items"][3]
    body = check(await client.get("/address-book", params={"email": first["email"].upper()}),
                 "/address-book", "get", 200)
    assert [i["id"] for i in body["items"]] == [first["id"]]
    none = (await client.get("/address-book", params={"email": "nobody@example.invalid"})).json()
    assert none["items"] == [] and none["meta"]["totalItems"] == 0


async def test_job_list_and_include_closed(client: httpx.AsyncClient) -> None:
    open_jobs = check(await client.get("/job", params={"sortBy": "modified desc"}), "/job", "get", 200)
    all_jobs = check(await client.get("/job", params={"includeClosed": "true"}), "/job", "get", 200)
    assert open_jobs["type"] == "job-collection"
    assert all_jobs["meta"]["totalItems"] == 40
    assert all(not j["closed"] for j in open_jobs["items"])
    assert open_jobs["meta"]["totalItems"] == sum(not j["closed"] for j in all_jobs["items"])
    stages = {j["stage"] for j in all_jobs["items"]}
    assert stages <= {"lead", "booked", "fulfillment", "completed"} and len(stages) >= 3
    for job in all_jobs["items"]:
        check_entity_basics(job, "/job")
        assert job["jobTypeName"] == JOB_TYPES[job["jobTypeId"]]
    event_sorted = (await client.get("/job", params={"sortBy": "eventDate asc", "includeClosed": "true"})).json()
    dates = [j["eventDate"] for j in event_sorted["items"]]
    assert dates == sorted(dates)


async def test_job_contacts_link_jobs_to_their_couple(client: httpx.AsyncClient) -> None:
    job = (await client.get("/job", params={"pageSize": 10})).json()["items"][0]
    body = check(await client.get("/job-contact", params={"jobId": job["id"]}), "/job-contact", "get", 200)
    assert body["type"] == "jobcontact-collection" and len(body["items"]) == 2
    for link in body["items"]:
        check_entity_basics(link, "/job-contact")
        assert link["jobId"] == job["id"]
        contact = check(await client.get(f"/address-book/{link['contactId']}"), "/address-book/{id}", "get", 200)
        assert contact["firstName"] in job["name"]
        by_contact = (await client.get("/job-contact", params={"contactId": link["contactId"]})).json()
        assert link["id"] in {i["id"] for i in by_contact["items"]}
        single = check(await client.get(f"/job-contact/{link['id']}"), "/job-contact/{id}", "get", 200)
        assert single == link


# --- single entities and writes ----------------------------------------------------------------------------

async def test_contact_crud(client: httpx.AsyncClient) -> None:
    created = check(await client.post("/address-book", json={
        "kind": "person", "firstName": "Siobhán", "lastName": "O'Brien-Nguyễn", "email": "siobhan@example.ie",
        "cellPhone": {"e164": "+353851234567"}, "address": {"city": "Galway", "country": "IE"},
    }), "/address-book", "post", 201)
    check_entity_basics(created, "/address-book")
    assert created["name"] == "Siobhán O'Brien-Nguyễn"
    assert created["cellPhone"]["e164"] == "+353851234567" and created["cellPhone"]["countryCode"] == "ie"
    fetched = check(await client.get(f"/address-book/{created['id']}"), "/address-book/{id}", "get", 200)
    assert fetched == created
    updated = check(await client.put(f"/address-book/{created['id']}", json={"lastName": "Murphy", "id": "x"}),
                    "/address-book/{id}", "put", 200)
    assert updated["name"] == "Siobhán Murphy" and updated["id"] == created["id"]
    assert updated["modified"] >= created["modified"]
    deleted = await client.delete(f"/address-book/{created['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    gone = await client.get(f"/address-book/{created['id']}")
    assert gone.status_code == 404
    SPEC.validate(gone.json(), ERROR)
    listing = (await client.get("/address-book", params={"email": "siobhan@example.ie"})).json()
    assert listing["items"] == []


async def test_job_crud_and_cascade(client: httpx.AsyncClient) -> None:
    type_id = next(iter(JOB_TYPES))
    job = check(await client.post("/job", json={
        "name": "Aiko & Mateo", "stage": "lead", "eventDate": "2027-06-12", "guestCount": 140,
        "jobTypeId": type_id, "webLead": True}), "/job", "post", 201)
    check_entity_basics(job, "/job")
    assert job["jobTypeName"] == JOB_TYPES[type_id] and job["closed"] is False
    contact = (await client.get("/address-book", params={"pageSize": 10})).json()["items"][0]
    link = check(await client.post("/job-contact", json={"jobId": job["id"], "contactId": contact["id"]}),
                 "/job-contact", "post", 201)
    moved = check(await client.put(f"/job/{job['id']}", json={"stage": "booked", "bookingDate": "2026-01-05"}),
                  "/job/{id}", "put", 200)
    assert moved["stage"] == "booked"
    check(await client.get(f"/job/{job['id']}"), "/job/{id}", "get", 200)
    assert (await client.delete(f"/job/{job['id']}")).status_code == 204
    assert (await client.get(f"/job/{job['id']}")).status_code == 404
    assert (await client.get(f"/job-contact/{link['id']}")).status_code == 404  # links go with their job


async def test_rest_hook_crud(client: httpx.AsyncClient) -> None:
    empty = check(await client.get("/rest-hook"), "/rest-hook", "get", 200)
    assert empty["type"] == "resthook-collection" and empty["items"] == []
    hook = check(await client.post("/rest-hook", json={
        "event": "contact.created", "url": "https://hooks.example.com/vsco",
        "limitTo": {"contactKinds": ["person"]}}), "/rest-hook", "post", 201)
    check_entity_basics(hook, "/rest-hook")
    listed = check(await client.get("/rest-hook"), "/rest-hook", "get", 200)
    assert [h["id"] for h in listed["items"]] == [hook["id"]]
    changed = check(await client.put(f"/rest-hook/{hook['id']}", json={"event": "job.created", "limitTo": None}),
                    "/rest-hook/{id}", "put", 200)
    assert changed["event"] == "job.created"
    check(await client.get(f"/rest-hook/{hook['id']}"), "/rest-hook/{id}", "get", 200)
    assert (await client.delete(f"/rest-hook/{hook['id']}")).status_code == 204
    assert (await client.get(f"/rest-hook/{hook['id']}")).status_code == 404


# --- errors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "params"), [
    ("/address-book", {"pageSize": 5}), ("/address-book", {"pageSize": 101}), ("/address-book", {"page": 0}),
    ("/address-book", {"sortBy": "shoeSize"}), ("/address-book", {"page": "two"}),
    ("/job", {"sortBy": "name sideways"}), ("/job-contact", {"pageSize": 9}), ("/rest-hook", {"sortBy": "name"}),
    # a page past the API's 64-bit integers (a 500 before, found by a probe), on every paged listing
    *[(path, {"page": "91941343528296415232"}) for path in (
        "/address-book", "/job", "/job-contact", "/job-type", "/event", "/order", "/payment", "/rest-hook")],
    ("/payment", {"page": str(2**63)}),
])
async def test_bad_parameters_are_400_validation_errors(client: httpx.AsyncClient, path: str,
                                                        params: dict[str, Any]) -> None:
    body = check(await client.get(path, params=params), path, "get", 400)
    assert body["type"] == "validation-error" and body["status"] == 400 and body["detail"]


@pytest.mark.parametrize(("method", "path", "payload"), [
    ("post", "/address-book", {"firstName": "No kind"}),
    ("post", "/address-book", {"kind": "person", "email": "not-an-email"}),
    ("post", "/address-book", {"kind": "person", "shoeSize": 43}),
    ("post", "/job", {"stage": "married"}),
    ("post", "/job", {"guestCount": -1}),
    ("post", "/rest-hook", {"event": "contact.deleted", "url": "https://example.com/h"}),
    ("post", "/rest-hook", {"event": "job.created"}),
    ("post", "/job-contact", {"jobId": "01h35ccwymj5ctckp8px1azhg6", "contactId": "01h35ccwymj5ctckp8px1azhg6"}),
])
async def test_bad_bodies_are_400_validation_errors(client: httpx.AsyncClient, method: str, path: str,
                                                    payload: dict[str, Any]) -> None:
    response = await client.request(method, path, json=payload)
    check(response, path, method, 400)


async def test_bad_id_is_400_and_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    check(await client.get("/address-book/not-a-ulid"), "/address-book/{id}", "get", 400)
    for path in ("/address-book", "/job", "/job-contact", "/rest-hook"):
        for method in ("get", "put", "delete"):
            response = await client.request(method, f"{path}/01h35ccwymj5ctckp8px1azhg6",
                                             json={} if method == "put" else None)
            assert response.status_code == 404, (method, path)
            SPEC.validate(response.json(), ERROR)


@pytest.mark.parametrize("headers", [{}, {"X-API-KEY": "wrong"}, {"Authorization": "Bearer nope"}])
async def test_missing_or_wrong_key_is_401(app: FastAPI, headers: dict[str, str]) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://sandbox.test{PREFIX}") as c:
        for path in ("/address-book", "/job/01h35ccwymj5ctckp8px1azhg6", "/rest-hook"):
            response = await c.get(path, headers=headers)
            assert response.status_code == 401
            SPEC.validate(response.json(), SPEC.component("responses", "unauthorizedError"))
        bearer = await c.get("/address-book", headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"})
        assert bearer.status_code == 200  # the spec's BearerAuth scheme


async def test_rate_limit_is_429_with_retry_after(app: FastAPI, client: httpx.AsyncClient) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as admin:
        (await admin.put(f"/_sandbox/{SLUG}/faults", json={"rate_limit_rate": 1, "retry_after_seconds": 4}))\
            .raise_for_status()
    for path in ("/address-book", "/job", "/job-contact", "/rest-hook"):
        response = await client.get(path)
        body = check(response, path, "get", 429)
        assert response.headers["retry-after"] == "4" and body["type"] == "quota-limit"


def test_spec_tools_catch_violations() -> None:
    """The validator is not vacuous: wrong types, nulls where not nullable and bad ULIDs fail."""
    schema = SPEC.response_schema("/job/{id}", "get", 200)
    good = {"id": "01h35ccwymj5ctckp8px1azhg6", "stage": "booked", "eventDate": None, "guestCount": None,
            "links": {"self": {"href": "https://workspace.vsco.co/api/v2/job/01h35ccwymj5ctckp8px1azhg6"}}}
    SPEC.validate(good, schema)
    bad_fields: list[dict[str, Any]] = [
        {"stage": "married"}, {"guestCount": "12"}, {"closed": None}, {"id": "01H35CCWYMJ5CTCKP8PX1AZHU!"},
        {"eventDate": "12/06/2027"}, {"links": {}},
    ]
    for bad in bad_fields:
        with pytest.raises(AssertionError):
            SPEC.validate({**good, **bad}, schema)
    person = SPEC.response_schema("/address-book/{id}", "get", 200)
    with pytest.raises(AssertionError):
        SPEC.validate({"kind": "person", "cellPhone": {"e164": "+1 (555) 0100"}}, person)
    with pytest.raises(AssertionError):
        SPEC.validate({"kind": "person", "address": {"planet": "Mars"}}, person)


# --- nothing unspecified -----------------------------------------------------------------------------------

def test_every_served_operation_and_parameter_is_in_the_spec() -> None:
    emulator = VscoWorkspaceEmulator(contacts=0, jobs=0)
    served = emulator.api.openapi()
    count = 0
    for path, item in served["paths"].items():
        for method, operation in item.items():
            spec_op = SPEC.operation(path, method)  # raises if the spec lacks it
            assert operation["operationId"] == spec_op["operationId"], (method, path)
            spec_params = SPEC.parameters(path, method)
            for param in operation.get("parameters", []):
                assert (param["in"], param["name"]) in spec_params, (method, path, param["name"])
            count += 1
    assert count == 39


def test_sort_fields_are_the_specs() -> None:
    from wedsync.sandbox import vsco_workspace as vw

    for path, allowed in (("/address-book", vw.CONTACT_SORT_FIELDS), ("/job", vw.JOB_SORT_FIELDS),
                          ("/job-contact", vw.BASIC_SORT_FIELDS), ("/rest-hook", vw.BASIC_SORT_FIELDS)):
        schema = SPEC.parameters(path, "get")[("query", "sortBy")]["schema"]
        spec_fields = {branch["title"] for branch in schema["anyOf"]}
        assert set(allowed) == spec_fields, path


def test_hook_events_are_the_specs() -> None:
    from wedsync.sandbox.vsco_workspace import HOOK_EVENTS

    schema = SPEC.raw["components"]["schemas"]["RestHook"]["properties"]["event"]
    assert list(HOOK_EVENTS) == schema["enum"]


# --- over a real socket, with a REST hook to a real receiver --------------------------------------------

class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).received.append((dict(self.headers), body))
        type(self).arrived.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"received": [], "arrived": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/vsco", handler
    finally:
        server.shutdown()
        server.server_close()


async def test_real_socket_and_rest_hook_delivery(receiver: tuple[str, type[_Receiver]]) -> None:
    hook_url, handler = receiver
    base, stop = start_sandbox_in_thread(port=0, contacts=30, jobs=10)
    try:
        assert re.match(r"^http://127\.0\.0\.1:\d+$", base) and not base.endswith(":0")
        async with httpx.AsyncClient(base_url=f"{base}{PREFIX}", headers=KEY, timeout=10) as c:
            listing = check(await c.get("/address-book", params={"pageSize": 10}), "/address-book", "get", 200)
            assert listing["items"][0]["links"]["self"]["href"].startswith(f"{base}{PREFIX}/address-book/")
            check(await c.post("/rest-hook", json={"event": "contact.created", "url": hook_url}),
                  "/rest-hook", "post", 201)
            created = check(await c.post("/address-book", json={"kind": "person", "firstName": "Zoë"}),
                            "/address-book", "post", 201)
            assert await asyncio.to_thread(handler.arrived.wait, 10)
            raw_headers, body = handler.received[0]
            headers = {name.lower(): value for name, value in raw_headers.items()}
            assert json.loads(body) == {"targetId": created["id"]}  # only the id: re-fetch with the key
            assert headers["content-type"] == "application/json"
            assert not any(name.startswith("x-hook") for name in headers)
            refetched = check(await c.get(f"/address-book/{created['id']}"), "/address-book/{id}", "get", 200)
            assert refetched["firstName"] == "Zoë"
        stats = httpx.get(f"{base}/_sandbox/{SLUG}/stats", timeout=10).json()
        assert stats["webhooks"]["delivered"] == 1 and stats["by_status"]["201"] == 2
    finally:
        stop()
