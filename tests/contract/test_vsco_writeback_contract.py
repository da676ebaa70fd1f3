"""VSCO Workspace write-back against the vendor's spec: every request our connector sends (path, method,
query, body) and every answer the sandbox gives (2xx bodies, validation errors, 404s) is validated against
``workspace-openapi.json``, recorded on the server side like ``test_connector_conformance.py`` does."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from tests.contract.spec_tools import OpenApiSpec, to_json_schema
from wedsync.connectors.crm.vsco_workspace import VscoWorkspaceConnector, map_event, map_order
from wedsync.connectors.errors import Fatal
from wedsync.domain.crm import ClientRecord, EventRecord, InvoiceRecord, WeddingRecord
from wedsync.sandbox.app import create_sandbox_app
from wedsync.sandbox.vsco_workspace import DEFAULT_API_KEY, PREFIX

SPEC = OpenApiSpec.load("vsco-workspace/workspace-openapi.json")
ERROR = SPEC.component("schemas", "Error")


class Recorder:
    """ASGI middleware in front of the sandbox: every request and the response it got."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.exchanges: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        body = b""
        messages = []
        while True:
            msg = await receive()
            messages.append(msg)
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        entry: dict[str, Any] = {"method": scope["method"], "path": scope["path"],
                                 "query": scope["query_string"].decode(), "body": body,
                                 "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                                 "status": None, "response": b""}
        self.exchanges.append(entry)

        async def replay() -> Any:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            elif message["type"] == "http.response.body":
                entry["response"] += message.get("body", b"")
            await send(message)

        await self.app(scope, replay, capture)


@pytest.fixture
def recorded() -> tuple[Any, Recorder]:
    app = create_sandbox_app(seed=11, vsco_contacts=60, vsco_jobs=24)
    return app, Recorder(app)


@pytest.fixture
async def connector(recorded: tuple[Any, Recorder]) -> AsyncIterator[VscoWorkspaceConnector]:
    _, rec = recorded
    c = VscoWorkspaceConnector(api_key=DEFAULT_API_KEY, base_url=f"http://sandbox.test{PREFIX}",
                               transport=httpx.ASGITransport(app=rec), account_key="contract-writeback")
    yield c
    await c.aclose()


def _template(method: str, path: str) -> str:
    for template, m in SPEC.operations():
        if m.upper() == method and re.fullmatch(re.sub(r"{[^/]+}", "[^/]+", template), path):
            return template
    raise AssertionError(f"{method} {path} is not an operation of the provider's specification")


def check_exchange(entry: dict[str, Any], request: bool = True) -> str:
    """Validate one recorded request (unless ``request`` is False: a deliberately bad one) and its response
    against the spec; returns the operation template."""
    method, path = entry["method"], entry["path"][len(PREFIX):]
    template = _template(method, path)
    assert entry["headers"].get("x-api-key") == DEFAULT_API_KEY
    params = SPEC.parameters(template, method)
    for name, value in parse_qsl(entry["query"], keep_blank_values=True):
        assert ("query", name) in params, f"{method} {template}: parameter {name!r} not in the spec"
        schema = dict(params[("query", name)].get("schema") or {})
        if schema.get("type") == "integer":
            SPEC.validate(int(value), schema)
        elif "anyOf" in schema or "enum" in schema:
            SPEC.validate(value, schema)
    if entry["body"] and request:
        op = SPEC.operation(template, method)
        schema = SPEC._deref(op["requestBody"])["content"]["application/json"]["schema"]
        SPEC.validate(json.loads(entry["body"]), to_json_schema(SPEC._deref(schema)))
    status = entry["status"]
    if entry["response"]:
        body = json.loads(entry["response"])
        if SPEC.documents_response(template, method.lower(), status):
            SPEC.validate(body, SPEC.response_schema(template, method.lower(), status))
        else:  # the spec documents no 401/404 bodies: the generic Error shape
            assert status in (401, 404), (method, template, status)
            SPEC.validate(body, ERROR)
    return template


async def test_every_write_request_and_answer_follows_the_spec(
        connector: VscoWorkspaceConnector, recorded: tuple[Any, Recorder]) -> None:
    app, rec = recorded
    emulator = app.state.emulators["vsco-workspace"]
    ana = ClientRecord(remote_id="x", first_name="Ana-Sofía", last_name="Lima Ñúñez", email="ana.lima@example.com",
                       phone="+14155550134;ext=12", company="Lima Studio",
                       address={"streetAddress": "1 Rua Augusta", "city": "Lisboa", "postalCode": "1100-048",
                                "country": "pt"})
    bo = ClientRecord(remote_id="y", first_name="Bo", last_name="Zhang", phone="0412 345 678")  # no e-mail
    c1 = await connector.create_contact(ana, reference="ws:01JCRMA0000000000000000001")
    c2 = await connector.create_contact(bo, reference="ws:01JCRMA0000000000000000002")
    assert c1.created and c2.created
    await connector.update_contact(c1.remote_id, ClientRecord(remote_id=c1.remote_id, last_name="Lima"),
                                   fields=["last_name"])
    wedding = WeddingRecord(remote_id="w", name="Ana & Bo", event_date=date(2027, 6, 19), stage="booked",
                            guest_count=140, job_type="Wedding")
    job = await connector.create_job(wedding, reference="ws:01JCRMA0000000000000000003",
                                     contact_ids=[c1.remote_id, c2.remote_id])
    assert job.item["jobTypeName"] == "Wedding"
    assert sorted(await connector.job_contact_ids(job.remote_id)) == sorted([c1.remote_id, c2.remote_id])
    await connector.update_job(job.remote_id, WeddingRecord(remote_id=job.remote_id, guest_count=150),
                               fields=["guest_count"])
    event = await connector.create_event(
        EventRecord(remote_id="e", name="Ceremony", starts_at=datetime(2027, 6, 19, 20, tzinfo=UTC),
                    ends_at=datetime(2027, 6, 20, 4, tzinfo=UTC), location="Quinta da Regaleira"),
        reference="ws:01JCRMA0000000000000000004", job_id=job.remote_id, timezone="Europe/Lisbon")
    assert event.item["startUtc"] == "2027-06-19T20:00:00+00:00" and event.item["startTime"] == "21:00:00"
    await connector.update_event(event.remote_id, EventRecord(remote_id="e", name="Ceremony & Reception"),
                                 fields=["name"])
    order = await connector.create_order(job.remote_id, InvoiceRecord(
        remote_id="i", number="WS-1001", currency="USD", total_minor=650_000, due_date=date(2027, 1, 15),
        custom_fields={"line_items": [{"name": "Full day", "unit_minor": 500_000, "quantity": 1},
                                      {"name": "Album", "unit_minor": 75_000, "quantity": 2}]}),
        reference="ws:01JCRMA0000000000000000005")
    assert order.item["total"] == 650_000 and order.item["status"] == "open"
    payment = await connector.create_payment(job.remote_id, amount_minor=195_000, currency="USD",
                                             reference="ws:01JCRMA0000000000000000006", memo="Retainer",
                                             received=date(2026, 12, 1), order_id=order.remote_id)
    assert payment.item["paymentAllocations"][0]["orderId"] == order.remote_id
    await connector.update_order(order.remote_id, InvoiceRecord(remote_id="i", number="WS-1001b",
                                                                total_minor=700_000))
    for stream in ("events", "orders", "payments"):
        page = await connector.list_page(stream, 1, sort="modified desc")
        assert page.items
        assert await connector.get_record(stream, page.items[0]["id"]) is not None
    assert await connector.find_by_reference("jobs", "ws:01JCRMA0000000000000000003") is not None
    assert await connector.find_by_reference("contacts", "ws:01JCRMA0000000000000000002") is not None
    assert await connector.find_by_reference("payments", "ws:01JCRMA0000000000000000006",
                                             job_id=job.remote_id) is not None

    # provider-side validation and 404s, in the provider's error formats
    with pytest.raises(Fatal) as info:
        await connector.create_payment(job.remote_id, amount_minor=10, currency="EUR", reference="ws:bad")
    assert info.value.code == "currency_mismatch"
    with pytest.raises(Fatal) as info:
        await connector.update_job("01jzzzzzzzzzzzzzzzzzzzzzzz", wedding, fields=["name"])
    assert info.value.http_status == 404 and info.value.code == "remote_record_gone"
    with pytest.raises(Fatal) as info:
        await connector.create_event(EventRecord(remote_id="e2", name="x"), reference="ws:01JCRMA0000000000000000007",
                                     job_id="01jzzzzzzzzzzzzzzzzzzzzzzz")
    assert info.value.http_status == 400

    templates = {check_exchange(entry) for entry in rec.exchanges}
    assert {"/address-book", "/address-book/{id}", "/job", "/job/{id}", "/job-contact", "/event", "/event/{id}",
            "/job/{jobId}/order", "/order/{id}", "/payment", "/payment/{id}/apply", "/job/{id}/payment",
            "/order", "/studio/me", "/job-type"} <= templates
    statuses = {entry["status"] for entry in rec.exchanges}
    assert {200, 201, 400, 404} <= statuses

    # ground truth in the sandbox: our references on the records, one record per reference
    truth = emulator.contacts.records[c1.remote_id]
    assert truth["externalMappings"][0]["id"] == "ws:01JCRMA0000000000000000001"
    assert truth["lastName"] == "Lima" and truth["cellPhone"]["extension"] == 12
    assert emulator.payments.records[payment.remote_id]["transactionId"] == "ws:01JCRMA0000000000000000006"
    assert emulator.orders.records[order.remote_id]["balance"] == 700_000 - 195_000
    assert [w for w in emulator.write_log if w[1] == "/event"] == [
        ("POST", "/event", event.remote_id), ("PUT", "/event", event.remote_id)]


async def test_sandbox_rejects_bad_write_bodies_in_the_specs_format(recorded: tuple[Any, Recorder]) -> None:
    _, rec = recorded
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rec), base_url=f"http://sandbox.test{PREFIX}",
                                 headers={"X-API-KEY": DEFAULT_API_KEY}) as client:
        job_id = (await client.get("/job", params={"pageSize": 10})).json()["items"][0]["id"]
        bad = [
            ("POST", "/payment", {"jobId": job_id, "amount": -5}),
            ("POST", "/payment", {"amount": 100}),
            ("POST", "/event", {"jobId": job_id, "startTime": "25:99"}),
            ("POST", "/event", {"timezoneName": "Mars/Olympus"}),
            ("POST", f"/job/{job_id}/order", {"lineItems": [{"pricePerUnit": 5}]}),
            ("POST", f"/job/{job_id}/order", {"name": "no lines"}),
        ]
        for method, path, body in bad:
            response = await client.request(method, path, json=body)
            assert response.status_code == 400, (path, body, response.text)
            assert response.json()["type"] == "validation-error"
        missing = [("GET", "/order/01jzzzzzzzzzzzzzzzzzzzzzzz"), ("GET", "/payment/01jzzzzzzzzzzzzzzzzzzzzzzz"),
                   ("GET", "/job/01jzzzzzzzzzzzzzzzzzzzzzzz/order"), ("GET", "/event/01jzzzzzzzzzzzzzzzzzzzzzzz"),
                   ("GET", "/job/01jzzzzzzzzzzzzzzzzzzzzzzz/payment")]
        for method, path in missing:
            assert (await client.request(method, path)).status_code == 404, path
    for entry in rec.exchanges:
        check_exchange(entry, request=False)


async def test_seeded_money_and_events_map_to_domain_records(recorded: tuple[Any, Recorder]) -> None:
    app, _ = recorded
    emulator = app.state.emulators["vsco-workspace"]
    assert emulator.orders.records and emulator.events.records
    for record in emulator.orders.records.values():
        SPEC.validate(record, SPEC.response_schema("/order/{id}", "get", 200))
        invoice = map_order(record, "USD")
        assert invoice.total_minor is not None and invoice.paid_minor is not None
        assert invoice.paid_minor == sum(p["amount_minor"] for p in invoice.payments)
    for record in emulator.events.records.values():
        SPEC.validate(record, SPEC.response_schema("/event/{id}", "get", 200))
        assert map_event(record).starts_at is not None


async def test_api_creations_fire_rest_hooks_carrying_only_the_target(
        connector: VscoWorkspaceConnector, recorded: tuple[Any, Recorder]) -> None:
    app, _ = recorded
    emulator = app.state.emulators["vsco-workspace"]
    for event in ("contact.created", "job.created", "order.booked", "payment.created"):
        await connector.subscribe(event, "http://127.0.0.1:9/hook")
    contact = await connector.create_contact(ClientRecord(remote_id="z", first_name="Kai", email="kai@example.com"),
                                             reference="ws:01JCRMA0000000000000000011")
    job = await connector.create_job(WeddingRecord(remote_id="w", name="Kai"),
                                     reference="ws:01JCRMA0000000000000000012")
    order = await connector.create_order(job.remote_id, InvoiceRecord(remote_id="o", number="K1", total_minor=1000),
                                         reference="ws:01JCRMA0000000000000000013")
    payment = await connector.create_payment(job.remote_id, amount_minor=1000, currency="USD",
                                             reference="ws:01JCRMA0000000000000000014")
    await emulator.webhooks.drain(within=10)
    targets = sorted(json.loads(d.body)["targetId"] for d in emulator.webhooks.log)
    assert targets == sorted([contact.remote_id, job.remote_id, order.remote_id, payment.remote_id])
    assert all(set(json.loads(d.body)) == {"targetId"} for d in emulator.webhooks.log)
    # and the record a hook names says it is ours (echo suppression)
    mapped = connector.map("contacts", await connector.get_record("contacts", contact.remote_id) or {})
    assert mapped.custom_fields["wedsync_reference"] == "ws:01JCRMA0000000000000000011"
