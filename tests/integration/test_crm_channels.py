"""CRM channels against their sandboxes (in-process, httpx.ASGITransport): VSCO write-back after lost answers,
Light Blue push, HoneyBook Create Project under an injected timeout, signed Zap hooks into the hub, and the
products' CSV files (exports parsed to ground truth, our exports accepted by their importers, VSCO overlap)."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

import httpx
import phonenumbers
import pytest
from fastapi import FastAPI

from wedsync.connectors.channels.csv_layouts import LAYOUTS, export_csv, parse_csv
from wedsync.connectors.channels.zapier import parse_zap_event
from wedsync.connectors.crm.honeybook import HoneyBookConnector, check_catch_hook_url
from wedsync.connectors.crm.light_blue import LightBlueConnector
from wedsync.connectors.crm.vsco_workspace import VscoWorkspaceConnector
from wedsync.connectors.errors import OutcomeUnknown, ReauthRequired
from wedsync.domain.crm import ClientRecord, InvoiceRecord, WeddingRecord
from wedsync.errors import InvalidInput
from wedsync.sandbox.app import create_sandbox_app
from wedsync.sandbox.honeybook import CATCH_HOOK_PATH
from wedsync.sandbox.light_blue import DEFAULT_API_KEY as LB_KEY
from wedsync.sandbox.vsco_workspace import DEFAULT_API_KEY as VSCO_KEY
from wedsync.sandbox.vsco_workspace import PREFIX as VSCO_PREFIX

BASE = "http://sandbox.test"


class LoseAnswers(httpx.AsyncBaseTransport):
    """The network between us and the provider: the provider gets and executes the request, but for the
    first ``count`` requests matching ``(method, path suffix)`` the answer never comes back (a read timeout)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, method: str, suffix: str, count: int = 1,
                 before: bool = False) -> None:
        self.inner, self.method, self.suffix, self.left, self.before = inner, method, suffix, count, before
        self.lost: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        hit = request.method == self.method and request.url.path.endswith(self.suffix) and self.left > 0
        if hit and self.before:  # lost on the way there: the provider never saw it
            self.left -= 1
            self.lost.append(request.url.path)
            raise httpx.ConnectTimeout("lost before sending", request=request)
        response = await self.inner.handle_async_request(request)
        if hit:
            await response.aread()
            self.left -= 1
            self.lost.append(request.url.path)
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


@pytest.fixture
def sandbox() -> FastAPI:
    return create_sandbox_app(seed=5, vsco_contacts=40, vsco_jobs=12,
                              options={"honeybook": {"contacts": 30, "overlap_with_vsco": 10, "vsco_contacts": 40,
                                                     "vsco_jobs": 12}})


def vsco(sandbox: FastAPI, transport: httpx.AsyncBaseTransport | None = None) -> VscoWorkspaceConnector:
    return VscoWorkspaceConnector(api_key=VSCO_KEY, base_url=f"{BASE}{VSCO_PREFIX}", account_key="channels-test",
                                  transport=transport or httpx.ASGITransport(app=sandbox))


# --- VSCO Workspace write-back: an unknown outcome is looked up, never blindly re-created -------------------

@pytest.mark.parametrize(("suffix", "stream"), [("/address-book", "contacts"), ("/job", "jobs"),
                                                ("/payment", "payments"), ("/order", "orders")])
async def test_vsco_create_after_a_lost_answer_finds_the_record(sandbox: FastAPI, suffix: str, stream: str) -> None:
    emulator = sandbox.state.emulators["vsco-workspace"]
    transport = LoseAnswers(httpx.ASGITransport(app=sandbox), "POST", suffix)
    connector = vsco(sandbox, transport)
    try:
        job_id = next(iter(emulator.jobs.records))
        ref = f"ws:01JLOST{stream.upper():0<19}"[:29]
        if stream == "contacts":
            result = await connector.create_contact(ClientRecord(remote_id="c", first_name="Émilie",
                                                                 email="emilie@example.fr"), reference=ref)
            matches = [r for r in emulator.contacts.records.values()
                       if (r.get("externalMappings") or [{}])[0].get("id") == ref]
        elif stream == "jobs":
            result = await connector.create_job(WeddingRecord(remote_id="w", name="Lost & Found"), reference=ref)
            matches = [r for r in emulator.jobs.records.values()
                       if (r.get("externalMappings") or [{}])[0].get("id") == ref]
        elif stream == "payments":
            result = await connector.create_payment(job_id, amount_minor=12_345, currency="USD", reference=ref)
            matches = [r for r in emulator.payments.records.values() if r.get("transactionId") == ref]
        else:
            result = await connector.create_order(job_id, InvoiceRecord(remote_id="o", number="LOST-1",
                                                                        total_minor=99_000), reference=ref)
            matches = [r for r in emulator.orders.records.values() if r.get("name") == "LOST-1"]
    finally:
        await connector.aclose()
    assert transport.lost, "the answer of the first POST was lost"
    assert result.created is False, "found by reference, not created a second time"
    assert [m["id"] for m in matches] == [result.remote_id]
    assert sum(1 for w in emulator.write_log if w[0] == "POST" and w[1] == suffix) == (
        1 if suffix in ("/payment", "/order") else 0)


async def test_vsco_create_lost_before_it_arrived_is_sent_again_once(sandbox: FastAPI) -> None:
    emulator = sandbox.state.emulators["vsco-workspace"]
    transport = LoseAnswers(httpx.ASGITransport(app=sandbox), "POST", "/address-book", before=True)
    connector = vsco(sandbox, transport)
    try:
        result = await connector.create_contact(ClientRecord(remote_id="c", first_name="Noa", email="noa@example.com"),
                                                reference="ws:01JNEVERARRIVED000000000000")
    finally:
        await connector.aclose()
    assert result.created is True
    assert [r["id"] for r in emulator.contacts.records.values() if r.get("email") == "noa@example.com"] == [
        result.remote_id]


async def test_vsco_create_that_never_gets_through_is_retriable_and_creates_nothing(sandbox: FastAPI) -> None:
    from wedsync.connectors.errors import Retriable
    from wedsync.connectors.http import RetryPolicy

    emulator = sandbox.state.emulators["vsco-workspace"]
    before = len(emulator.contacts)
    transport = LoseAnswers(httpx.ASGITransport(app=sandbox), "POST", "/address-book", count=99, before=True)
    connector = vsco(sandbox, transport)
    connector.client.retry = RetryPolicy(max_attempts=1)
    try:
        with pytest.raises(Retriable) as info:
            await connector.create_contact(ClientRecord(remote_id="c", first_name="Ghost"),
                                           reference="ws:01JGHOST00000000000000000000")
    finally:
        await connector.aclose()
    assert not isinstance(info.value, OutcomeUnknown)
    assert len(transport.lost) == 3 and len(emulator.contacts) == before


# --- Light Blue: push-only form POST ---------------------------------------------------------------------

async def test_light_blue_push_reaches_the_inbox_once(sandbox: FastAPI) -> None:
    emulator = sandbox.state.emulators["light-blue"]
    transport = LoseAnswers(httpx.ASGITransport(app=sandbox), "POST", "/api.php")
    connector = LightBlueConnector(api_key=LB_KEY, base_url=f"{BASE}/light-blue", transport=transport,
                                   account_key="lb-test")
    client = ClientRecord(remote_id="c", first_name="Siobhán", last_name="Ó Briain", email="siobhan@example.ie",
                          phone="+353851234567", custom_fields={"lead_source": "WedSync marketplace"})
    wedding = WeddingRecord(remote_id="w", name="Siobhán & Tadhg", event_date=date(2027, 5, 1), guest_count=90,
                            custom_fields={"venue": "Ballynahinch Castle"})
    try:
        result = await connector.push_inquiry(client, wedding, reference="ws:01JLB0000000000000000000001",
                                              message="Do you have availability?")
    finally:
        await connector.aclose()
    # the first answer was lost after Light Blue took it: the retry with the same ID is a reported duplicate
    assert transport.lost and result.duplicate and result.status == -4
    (entry,) = emulator.inbox.records.values()
    assert len(emulator.duplicates) == 1
    fields = entry["fields"]
    assert (fields["ContactNameFirst"], fields["ContactNameLast"], fields["ContactEmail"]) == (
        "Siobhán", "Ó Briain", "siobhan@example.ie")
    assert fields["Source"] == "WedSync" and entry["ID"] == "ws:01JLB0000000000000000000001"
    assert "Event date: 2027-05-01" in fields["Message"] and "Ballynahinch Castle" in fields["Message"]
    assert entry["ignored"] == []


async def test_light_blue_rejections(sandbox: FastAPI) -> None:
    transport = httpx.ASGITransport(app=sandbox)
    bad_key = LightBlueConnector(api_key="wrong", base_url=f"{BASE}/light-blue", transport=transport)
    good = LightBlueConnector(api_key=LB_KEY, base_url=f"{BASE}/light-blue", transport=transport)
    try:
        with pytest.raises(ReauthRequired):
            await bad_key.push_inquiry(ClientRecord(remote_id="c", email="a@example.com"), reference="ws:1")
        with pytest.raises(InvalidInput):
            await good.push_inquiry(ClientRecord(remote_id="c"), reference="ws:2")
    finally:
        await bad_key.aclose()
        await good.aclose()
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as raw:
        r = await raw.post("/light-blue/api.php", data={"key": LB_KEY, "type": "newsletter", "Message": "x"})
        assert r.status_code == 200 and r.text.startswith("-3")
        r = await raw.post("/light-blue/api.php", data={"key": LB_KEY, "type": "contact form"})
        assert r.text.startswith("-3")


# --- HoneyBook: outbound Create Project through the Zap catch hook ----------------------------------------

def honeybook(sandbox: FastAPI, timeout: float = 30.0) -> HoneyBookConnector:
    return HoneyBookConnector(create_project_hook_url=f"{BASE}/honeybook{CATCH_HOOK_PATH}", account_key="hb-test",
                              transport=httpx.ASGITransport(app=sandbox), timeout=timeout, allow_private_urls=True)


async def test_honeybook_create_project_under_a_timeout_creates_one_project(sandbox: FastAPI) -> None:
    emulator = sandbox.state.emulators["honeybook"]
    await emulator.mutate({"catch_hook": {"hold_seconds": 1.5, "times": 1},
                           "zap": {"url": "http://127.0.0.1:9/webhooks/honeybook/c1", "secret": "s3cret"}})
    connector = honeybook(sandbox, timeout=0.4)
    client = ClientRecord(remote_id="c", first_name="Aroha", last_name="Ngata", email="aroha@example.nz",
                          phone="+64211234567")
    wedding = WeddingRecord(remote_id="w", name="Aroha & Wiremu", event_date=date(2027, 2, 13), job_type="Wedding",
                            guest_count=110, custom_fields={"venue": "Waiheke Estate"})
    try:
        receipt = await connector.create_project(client, wedding, idempotency_key="ws:01JHB00000000000000000001")
    finally:
        await connector.aclose()
    requests = sorted(emulator.catch_requests.records.values(), key=lambda r: r["received_at"])
    assert len(requests) == 2, "the timed-out POST was retried"
    assert {r["idempotency_key"] for r in requests} == {"ws:01JHB00000000000000000001"}
    assert {r["header_key"] for r in requests} == {"ws:01JHB00000000000000000001"}
    assert [r["duplicate"] for r in requests] == [False, True]
    assert receipt.request_id == requests[1]["id"] and receipt.status == "success"
    (project,) = emulator.projects_created_by_zap()
    assert (project["name"], project["date"], project["venue"]) == ("Aroha & Wiremu", "2027-02-13", "Waiheke Estate")
    # the Zap's "New Project Booked" trigger fires back at the hub with our reference: the echo is recognizable
    await emulator.webhooks.drain(within=10)
    echoes = [json.loads(d.body) for d in emulator.webhooks.log if b"project.booked" in d.body]
    assert len(echoes) == 1
    event = parse_zap_event("honeybook", json.dumps(echoes[0]).encode())
    assert event.wedding is not None and event.wedding.custom_fields["wedsync_reference"] == receipt.idempotency_key


async def test_a_zap_without_dedupe_would_double_create(sandbox: FastAPI) -> None:
    """Why the recommended Zap has its Storage step: Zapier itself delivers every retry."""
    emulator = sandbox.state.emulators["honeybook"]
    await emulator.mutate({"catch_hook": {"hold_seconds": 1.5, "times": 1, "dedupe": False}})
    connector = honeybook(sandbox, timeout=0.4)
    try:
        await connector.create_project(ClientRecord(remote_id="c", email="x@example.com", first_name="X"),
                                       WeddingRecord(remote_id="w", name="X"), idempotency_key="ws:01JHBDUP")
    finally:
        await connector.aclose()
    assert len(emulator.projects_created_by_zap()) == 2


def test_catch_hook_urls_are_zapiers_only() -> None:
    assert check_catch_hook_url("https://hooks.zapier.com/hooks/catch/1/abc/", allow_private=False)
    for bad in ("http://hooks.zapier.com/hooks/catch/1/abc/", "https://169.254.169.254/latest/",
                "https://hooks.zapier.com.evil.example/hooks/catch/1/", "file:///etc/passwd"):
        with pytest.raises(InvalidInput):
            check_catch_hook_url(bad, allow_private=False)


def test_a_bad_catch_hook_url_is_refused_when_the_connection_is_created(hub: Any) -> None:
    vendor = hub.tenancy.create_vendor("Hook Checks")
    hub.connections.allow_private_urls = False
    with pytest.raises(InvalidInput) as err:
        hub.connections.create(vendor.id, "honeybook",
                               credentials={"create_project_hook_url": "https://169.254.169.254/latest/"})
    assert err.value.code == "invalid_url"
    assert not hub.connections.list(vendor.id)
    conn = hub.connections.create(vendor.id, "honeybook",
                                  credentials={"create_project_hook_url": "https://hooks.zapier.com/hooks/catch/1/ab/"})
    assert conn.provider == "honeybook"


# --- Zap hooks from the product emulators into the hub ----------------------------------------------------

@pytest.mark.parametrize(("slug", "auth"), [("honeybook", "header"), ("17hats", "token"),
                                            ("studio-ninja", "header"), ("iris-works", "token")])
async def test_product_hooks_are_accepted_by_the_hub_and_parse(sandbox: FastAPI, hub: Any,
                                                              api: httpx.AsyncClient, slug: str,
                                                              auth: str) -> None:
    from wedsync.services.connections import WEBHOOK_SECRET

    vendor = hub.tenancy.create_vendor("Zap Studio")
    conn = hub.connections.create(vendor.id, slug, credentials={})
    secret = hub.connections.credentials(conn)[WEBHOOK_SECRET]
    emulator = sandbox.state.emulators[slug]
    await emulator.mutate({"zap": {"url": f"http://127.0.0.1:9/webhooks/{slug}/{conn.id}", "secret": secret,
                                   "auth": auth}})
    emulator.faults.configure(emulator.faults.config.model_copy(update={"webhook_duplicate_rate": 1.0}))
    result = await emulator.mutate({"create": 2, "book": 2})
    await emulator.webhooks.drain(within=10)
    deliveries = list(emulator.webhooks.log)
    assert len(deliveries) == 8  # 2 clients + 2 bookings, each delivered twice
    seen: dict[str, bool] = {}
    for d in deliveries:
        path = d.url.split("127.0.0.1:9", 1)[1]
        r = await api.post(path, content=d.body, headers=d.headers)
        assert r.status_code == 200, r.text
        seen[r.json()["event_id"]] = r.json()["duplicate"] or seen.get(r.json()["event_id"], False)
        event = parse_zap_event(slug, d.body, d.headers.get("content-type"))
        raw = json.loads(d.body)
        if event.kind == "client.created":
            assert (raw.get("client_id") or raw.get("contact_id")) in emulator.contacts.records
            assert event.client is not None and event.client.email == raw.get("email", raw.get(
                "client_email", raw.get("primary_email"))).lower()
        else:
            assert (raw.get("project_id") or raw.get("job_id")) in emulator.projects.records
            assert event.wedding is not None and event.wedding.event_date is not None
    assert len(seen) == 4 and all(seen.values()), "each event stored once, its duplicate acknowledged"
    assert len(result["created"]) == 2 and len(result["booked"]) == 2
    bad = await api.post(f"/webhooks/{slug}/{conn.id}", content=deliveries[0].body,
                             headers={"X-WedSync-Signature": "sha256=" + "0" * 64})
    assert bad.status_code == 401


@pytest.mark.parametrize("body", [
    b'{"event": "client.created", "event_id": "e1", "email": "not-an-email"}',   # neither e-mail nor name
    b'{"event": "weird.event", "event_id": "e2", "email": "w@example.com"}',    # an event we do not know
    b'["a list"]', b'"a string"', b"\xff\xfe not text", b"{bad", b'{"event": "client.created", "email": ',
])
async def test_a_zap_body_that_cannot_be_read_is_refused_at_once_and_not_stored(hub: Any, api: httpx.AsyncClient,
                                                                                body: bytes) -> None:
    """The vendor's Zap learns why at once (422 bad_payload, in the Zap's history) instead of a 200 for an event
    that would fail later where nobody sees it; nothing is stored."""
    from sqlalchemy import func, select

    from wedsync.connectors.webhooks import ZapierScheme
    from wedsync.services.connections import WEBHOOK_SECRET
    from wedsync.store.tables import WebhookEvent

    vendor = hub.tenancy.create_vendor("Zap Studio")
    conn = hub.connections.create(vendor.id, "17hats", credentials={})
    secret = hub.connections.credentials(conn)[WEBHOOK_SECRET]
    r = await api.post(f"/webhooks/17hats/{conn.id}", content=body, headers=ZapierScheme.sign(body, secret))
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_payload", r.text
    with hub.db.read() as s:
        assert s.execute(select(func.count()).select_from(WebhookEvent)).scalar_one() == 0
    good = b'{"event": "client.created", "event_id": "e3", "first_name": "Ana", "email": "ana@example.com"}'
    r = await api.post(f"/webhooks/17hats/{conn.id}", content=good, headers=ZapierScheme.sign(good, secret))
    assert r.status_code == 200 and r.json()["event_id"] == "e3"
    unsigned = await api.post(f"/webhooks/17hats/{conn.id}", content=body)
    assert unsigned.status_code == 401  # the signature is checked first: a stranger learns nothing of the body


async def test_a_deleted_connections_hooks_are_refused_and_never_hold_up_other_vendors(
        hub: Any, api: httpx.AsyncClient) -> None:
    """Hooks accepted for a connection that is then deleted fail alone (fatal, 'no longer exists'); the other
    events claimed in the same batch, another vendor's included, land (the drain crashed on the first and
    left them all 'processing', found live). Once deleted, the connection's hooks are refused at once."""
    from prometheus_client import REGISTRY

    from wedsync.connectors.webhooks import ZapierScheme
    from wedsync.services.connections import WEBHOOK_SECRET
    from wedsync.services.webhook_dispatch import process_batch

    def hook(n: int, email: str) -> bytes:
        return json.dumps({"event": "client.created", "event_id": f"e{n}", "first_name": "Ana",
                           "email": email}).encode()

    conns = []
    for name in ("Doomed Studio", "Living Studio"):
        vendor = hub.tenancy.create_vendor(name)
        _, key = hub.tenancy.create_key(vendor.id)
        conn = hub.connections.create(vendor.id, "honeybook", credentials={})
        conns.append((key, conn, hub.connections.credentials(conn)[WEBHOOK_SECRET]))
    (key_d, doomed, secret_d), (_, living, secret_l) = conns
    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("webhook_events_total", {"provider": "honeybook", "outcome": outcome}) or 0

    before = {o: count(o) for o in ("processed", "failed")}
    accepted = REGISTRY.get_sample_value("webhook_events_total", {"provider": "honeybook", "outcome": "accepted"})
    for n, (conn, secret) in enumerate(((doomed, secret_d), (living, secret_l), (doomed, secret_d))):
        body = hook(n, f"ana{n}@example.com")
        r = await api.post(f"/webhooks/honeybook/{conn.id}", content=body, headers=ZapierScheme.sign(body, secret))
        assert r.status_code == 200, r.text
    assert REGISTRY.get_sample_value("webhook_events_total", {"provider": "honeybook", "outcome": "accepted"}) == \
        (accepted or 0) + 3
    r = await api.delete(f"/api/connections/{doomed.id}", headers={"Authorization": f"Bearer {key_d}"})
    assert r.status_code == 204, r.text
    body = hook(9, "late@example.com")
    r = await api.post(f"/webhooks/honeybook/{doomed.id}", content=body, headers=ZapierScheme.sign(body, secret_d))
    assert r.status_code == 404, r.text  # at once, not after the secret cache's 30 s

    def settled() -> bool:
        return all(e.status in ("processed", "failed") for c in (doomed, living) for e in hub.inbox.events(c.id))

    # drained here, or by a drain workflow the intake poked when one runs in this test session
    for _ in range(100):
        if settled():
            break
        await process_batch(hub, "honeybook")
        await asyncio.sleep(0.05)
    assert [(e.event_id, e.status) for e in hub.inbox.events(living.id)] == [("e1", "processed")]
    gone = hub.inbox.events(doomed.id)
    assert sorted((e.event_id, e.status) for e in gone) == [("e0", "failed"), ("e2", "failed")]
    assert all("no longer exists" in (e.error or "") and e.attempts <= 1 for e in gone)
    assert len(hub.crm.list_clients(living.vendor_id)[0]) == 1
    # counted by the drain that ran them (at least these three: an earlier test's events may drain meanwhile)
    assert count("processed") - before["processed"] >= 1 and count("failed") - before["failed"] >= 2


# --- the products' CSV files ------------------------------------------------------------------------------

@pytest.mark.parametrize("slug", sorted(LAYOUTS))
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
async def test_product_exports_parse_to_ground_truth(sandbox: FastAPI, slug: str, encoding: str) -> None:
    emulator = sandbox.state.emulators[slug]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url=BASE) as client:
        r = await client.get(f"/{slug}/export/contacts.csv", params={"encoding": encoding})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(parse_csv(r.content, slug))
    assert all(not row.issues for row in rows), [i for row in rows for i in row.issues][:5]
    spec = LAYOUTS[slug]
    by_email = {c["email"].lower(): c for c in emulator.contacts.records.values()}
    assert {row.client.email for row in rows if row.client} == set(by_email)
    for row in rows:
        assert row.client is not None
        truth = by_email[row.client.email or ""]
        assert (row.client.first_name, row.client.last_name) == (truth["first_name"], truth["last_name"]) or (
            "full_name" in spec.fields())
        if truth["phone"]:
            region = truth["country"] if "country" in spec.fields() else spec.default_region
            expected = phonenumbers.format_number(phonenumbers.parse(truth["phone"], region),
                                                  phonenumbers.PhoneNumberFormat.E164)
            assert row.client.phone is not None and row.client.phone.split(";")[0] == expected
        if "remote_id" in spec.fields():
            assert row.client.remote_id == f"{spec.id_prefix}{truth['id']}"


@pytest.mark.parametrize("slug", sorted(LAYOUTS))
async def test_our_exports_are_accepted_by_the_products_import(sandbox: FastAPI, slug: str) -> None:
    emulator = sandbox.state.emulators[slug]
    people = [(ClientRecord(remote_id=f"r{i}", first_name=f, last_name=last, email=email, phone="+14155550134"),
               WeddingRecord(remote_id=f"w{i}", name=f"{f} wedding", event_date=date(2027, 3, i + 1)))
              for i, (f, last, email) in enumerate([("Zoë", "Müller", "zoe@example.com"),
                                                    ("Kenji", "佐藤", "kenji@example.jp"),
                                                    ("Ana", "Lima", "ana@example.com")])]
    body = b"".join(export_csv(slug, people))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url=BASE) as client:
        r = await client.post(f"/{slug}/import/contacts.csv", content=body, headers={"content-type": "text/csv"})
    assert r.status_code == 200 and r.json() == {"imported": 3, "errors": []}
    email_header = next(h for h, f in LAYOUTS[slug].columns if f == "email")
    emails = sorted(rec["row"][email_header] for rec in emulator.imports.records.values())
    assert emails == ["ana@example.com", "kenji@example.jp", "zoe@example.com"]


async def test_honeybook_overlap_with_vsco_is_the_same_couples_varied(sandbox: FastAPI) -> None:
    hb = sandbox.state.emulators["honeybook"]
    vsco_em = sandbox.state.emulators["vsco-workspace"]
    overlap = list(hb.overlap.records.values())
    assert len(overlap) == 10
    assert {o["variation"] for o in overlap} == {"phone_format", "email_case", "typo", "swapped_names", "exact"}
    for o in overlap:
        contact = vsco_em.contacts.records[o["vsco_contact_id"]]
        job = vsco_em.jobs.records[o["vsco_job_id"]]
        client = hb.contacts.records[o["id"]]
        project = next(p for p in hb.projects.records.values() if p["contact_id"] == client["id"])
        assert project["date"] == job["eventDate"] == o["event_date"]
        assert client["email"].lower() == contact["email"].lower()
        if o["variation"] == "exact":
            assert (client["first_name"], client["last_name"]) == (contact["firstName"], contact["lastName"])
        if o["variation"] == "swapped_names":
            assert (client["first_name"], client["last_name"]) == (contact["lastName"], contact["firstName"])
        if o["variation"] == "typo":
            assert client["first_name"] != contact["firstName"]
        if o["variation"] == "phone_format" and contact["cellPhone"]:
            parsed = phonenumbers.parse(client["phone"], "US")
            assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == (
                contact["cellPhone"]["e164"])
    seeded = hb.seed({"contacts": 50, "overlap_with_vsco": 20, "vsco_contacts": 40, "vsco_jobs": 12})
    assert seeded["overlap"] == 12  # no more overlapping couples than VSCO has booked weddings


async def test_vsco_outbox_keys_are_references_and_bad_ones_are_refused(sandbox: FastAPI) -> None:
    from wedsync.connectors.errors import Fatal

    connector = vsco(sandbox)
    try:
        iolo = ClientRecord(remote_id="c", first_name="Iolo", email="iolo@example.cymru")
        result = await connector.create_contact(iolo, reference="wedsync-crm-01JOUTBOX000000000000000000")
        mapped = connector.map("contacts", result.item)
        assert mapped.custom_fields["wedsync_reference"] == "wedsync-crm-01JOUTBOX000000000000000000"
        for bad in ("plain-id", "ws:" + "x" * 62, "ws:has space"):
            with pytest.raises(Fatal) as info:
                await connector.create_contact(ClientRecord(remote_id="c", first_name="X"), reference=bad)
            assert info.value.code == "invalid_reference"
    finally:
        await connector.aclose()


async def test_the_catch_hook_path_never_reaches_the_logs(sandbox: FastAPI) -> None:
    import io

    from wedsync.logging import configure_logging

    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    try:
        connector = honeybook(sandbox)
        try:
            await connector.create_project(ClientRecord(remote_id="c", email="log@example.com", first_name="L"),
                                           WeddingRecord(remote_id="w", name="L"), idempotency_key="ws:01JLOG")
        finally:
            await connector.aclose()
    finally:
        configure_logging("INFO")
    text = stream.getvalue()
    assert "provider.request" in text and "wsproj" not in text


@pytest.mark.parametrize("answer", [404, 503, "timeout"])
async def test_a_failing_catch_hook_never_shows_its_secret_path(answer: Any) -> None:
    """The catch hook's path is its secret: a failure's message (which reaches the API, the outbox and the
    connection's status) names the provider and the outcome, never the path."""
    def reply(request: httpx.Request) -> httpx.Response:
        if answer == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(answer, text=f"no hook at {request.url.path}")

    secret_path = "/hooks/catch/4242/s3cr3tPathToken/"
    connector = HoneyBookConnector(create_project_hook_url=f"https://hooks.zapier.com{secret_path}",
                                   account_key="hb-secret-path", transport=httpx.MockTransport(reply))
    try:
        with pytest.raises(Exception) as err:
            await connector.create_project(ClientRecord(remote_id="c", email="x@example.com", first_name="X"),
                                           WeddingRecord(remote_id="w", name="X"), idempotency_key="ws:01JHBSEC")
    finally:
        await connector.aclose()
    text = f"{type(err.value).__name__}: {err.value}"
    assert "honeybook" in text and "s3cr3tPathToken" not in text, text


async def test_a_17hats_booking_whose_event_type_is_wedding_is_accepted_as_a_booking(
        hub: Any, api: httpx.AsyncClient) -> None:
    """``event_type: "Wedding"`` is the project's type: the hook was refused, 422 "unknown event 'Wedding'"."""
    from sqlalchemy import select

    from wedsync.connectors.webhooks import ZapierScheme
    from wedsync.services.connections import WEBHOOK_SECRET
    from wedsync.store.tables import WebhookEvent

    vendor = hub.tenancy.create_vendor("Lee Studio")
    conn = hub.connections.create(vendor.id, "17hats", credentials={})
    secret = hub.connections.credentials(conn)[WEBHOOK_SECRET]
    raw = json.dumps({"event_id": "e1", "project_id": "P77", "project_name": "Lee Wedding",
                      "event_date": "08/21/2027", "event_type": "Wedding", "contact_id": "2001",
                      "first_name": "Mina", "email": "mina.lee@example.com"}).encode()
    r = await api.post(f"/webhooks/17hats/{conn.id}", content=raw,
                       headers={**ZapierScheme.sign(raw, secret), "content-type": "application/json"})
    assert r.status_code == 200, r.text
    with hub.db.read() as s:
        stored = s.execute(select(WebhookEvent.event_id, WebhookEvent.event_type)).all()
    assert [tuple(x) for x in stored] == [("e1", "project.booked")]  # the event read, not the type's text


@pytest.mark.parametrize("suffix", ["", "/", "/api.php", "/api.php/", "/API.php"])
async def test_light_blue_base_url_may_be_the_site_or_the_endpoint(sandbox: FastAPI, suffix: str) -> None:
    """The endpoint as Light Blue documents it (``.../api.php``) given as the base URL: every push had gone to
    ``/light-blue/api.php/api.php`` (404), for good."""
    emulator = sandbox.state.emulators["light-blue"]
    connector = LightBlueConnector(api_key=LB_KEY, base_url=f"{BASE}/light-blue{suffix}",
                                   transport=httpx.ASGITransport(app=sandbox), account_key=f"lb-url{suffix}")
    client = ClientRecord(remote_id="c", first_name="Ana", last_name="Lima", email="ana@example.com")
    try:
        result = await connector.push_inquiry(client, reference=f"ws:url{suffix}")
    finally:
        await connector.aclose()
    assert (result.status, result.duplicate) == (0, False)
    assert [e["ID"] for e in emulator.inbox.records.values()] == [f"ws:url{suffix}"]


def test_a_light_blue_connection_given_the_documented_endpoint_stores_the_site(hub: Any) -> None:
    vendor = hub.tenancy.create_vendor("Blue Studio")
    conn = hub.connections.create(vendor.id, "light-blue", credentials={"api_key": "k"},
                                  base_url="https://online.lightbluesoftware.com/api.php")
    assert conn.base_url == "https://online.lightbluesoftware.com"  # the default: trusted, no DNS at connect
