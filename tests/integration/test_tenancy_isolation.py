"""Walk every route of the OpenAPI schema with vendor A's key against vendor B's real objects in every
capability (core, CRM, payments, calendar): no 5xx, no B data in A's answers, 404 for B's ids, B unchanged."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select

from tests.conftest import auth
from tests.integration.tenancy_seed import id_values, import_csv, seed_vendor
from wedsync.connectors.webhooks import StripeScheme, ZapierScheme
from wedsync.services.webhook_dispatch import process_batch
from wedsync.store import tables as t
from wedsync.store.tables import utcnow
from wedsync.store.tables_crm import CrmClient
from wedsync.store.tables_payments import PaymentDispute, PaymentIntent

# Path parameters that name an object, and which of vendor B's objects they are pointed at (every one is tried).
PATH_IDS: dict[str, tuple[str, ...]] = {
    "connection_id": ("connection_id", "hb_connection_id", "stripe_connection_id", "google_connection_id"),
    "run_id": ("run_id",), "sync_id": ("run_id",), "key_id": ("key_id",),
    "client_id": ("crm_client_id", "client_id"), "merge_id": ("merge_id",), "conflict_id": ("conflict_id",),
    "job_id": ("job_id",), "transaction_id": ("transaction_id",), "hold_id": ("hold_id", "milestone_hold_id"),
    "dispute_id": ("dispute_id",), "report_id": ("report_id",),
    "booking_id": ("booking_id", "hold_booking_id", "meeting_booking_id"),
    "source_id": ("source_id", "target_source_id"), "feed_id": ("feed_id",), "booking_ref": ("booking_ref",),
    "milestone": ("milestone",), "wedding_id": ("wedding_id",), "event_id": ("event_id",),
    "policy_id": ("policy_id",),
}
# The provider of each of B's connections (webhook URLs name both); other {provider} params: a real slug.
CONN_PROVIDER = {"connection_id": "vsco-workspace", "hb_connection_id": "honeybook",
                 "stripe_connection_id": "stripe", "google_connection_id": "google-calendar"}
# Optional query parameters that filter by an object: pointed at B's.
QUERY_IDS = {"client_id": "crm_client_id", "connection_id": "hb_connection_id", "transactionId": "transaction_id",
             "bookingRef": "booking_ref"}
# /api routes that answer the same to every vendor (no vendor data).
VENDORLESS = {"/api/integrations/providers"}


def _is_id_param(name: str) -> bool:
    return name.endswith(("_id", "Id", "_ref")) or name in ("id", "milestone")


@dataclass
class Variant:
    """One request shape for a route: body (JSON or raw), extra query and headers, and the statuses allowed
    when it names B's objects outside the path."""

    body: Any = None
    content: bytes | None = None
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    expect: frozenset[int] | None = None
    provider: str | None = None  # only for the URL naming a connection of this provider (webhooks)


def _webhooks(hub: Any, a: dict[str, Any], b: dict[str, Any]) -> list[Variant]:
    """Deliveries to B's webhook URLs signed the right way but with A's own connection secrets (which A
    knows): each must be refused (401), nothing stored for B."""

    def secret(conn_key: str) -> str:
        conn = hub.connections.get(a["vendor_id"], a[conn_key])
        return str(hub.connections.credentials(conn)["webhook_secret"])

    zap = json.dumps({"id": "evt-qa-1", "event": "contact.created", "first_name": "Mallory",
                      "email": "mallory@example.com"}).encode()
    stripe = json.dumps({"id": "evt_qa_1", "object": "event", "type": "charge.dispute.created",
                         "data": {"object": {"id": "dp_qa", "object": "dispute", "amount": 100, "currency": "usd",
                                             "charge": "ch_qa", "status": "needs_response"}}}).encode()
    unauthorized = frozenset({401})
    return [
        Variant(content=json.dumps({"targetId": b["client_id"]}).encode(), provider="vsco-workspace",
                query={"token": secret("connection_id"), "event": "contact.created"}, expect=unauthorized),
        Variant(content=zap, provider="honeybook", headers=ZapierScheme.sign(zap, secret("hb_connection_id")),
                expect=unauthorized),
        Variant(content=zap, provider="honeybook", query={"token": secret("hb_connection_id")}, expect=unauthorized),
        Variant(content=stripe, provider="stripe", headers=StripeScheme.sign(stripe, secret("stripe_connection_id")),
                expect=unauthorized),
        Variant(content=b"{}", provider="google-calendar"),
    ]


async def _own_webhooks_naming_b(api: Any, hub: Any, a: dict[str, Any], b: dict[str, Any]) -> list[Any]:
    """A signs gateway events for its OWN Stripe connection (A knows that secret) that name B's transactions
    (our ``metadata.reference``, B's charge id), and gets B's dispute the way a shared platform account
    delivers every event to every endpoint: processed, they must touch and show nothing of B's."""
    conn = hub.connections.get(a["vendor_id"], a["stripe_connection_id"])
    secret = str(hub.connections.credentials(conn)["webhook_secret"])
    with hub.db.read() as s:
        b_intents = list(s.execute(select(PaymentIntent).where(PaymentIntent.vendor_id == b["vendor_id"],
                                                               PaymentIntent.status == "succeeded")).scalars())
        b_dispute = s.get(PaymentDispute, b["dispute_id"])
    assert b_dispute is not None and b_intents
    events: list[tuple[str, dict[str, Any]]] = [
        ("charge.dispute.created", {"id": b_dispute.dispute_ref, "object": "dispute", "amount": 9_000,
                                    "currency": "usd", "charge": b_intents[0].gateway_ref,
                                    "reason": "fraudulent", "status": "needs_response"})]
    for n, intent in enumerate(b_intents):
        events += [
            ("charge.dispute.created", {"id": f"dp_forged_{n}", "object": "dispute", "amount": 5_000,
                                        "currency": "usd", "charge": intent.gateway_ref,
                                        "payment_intent": intent.gateway_ref, "status": "needs_response",
                                        "metadata": {"reference": intent.id}}),
            ("payment_intent.succeeded", {"id": intent.gateway_ref, "object": "payment_intent", "amount": 1,
                                          "currency": "usd", "metadata": {"reference": intent.id}})]
    problems: list[Any] = []
    for n, (etype, obj) in enumerate(events):
        raw = json.dumps({"id": f"evt_forged_{n}", "object": "event", "type": etype,
                          "data": {"object": obj}}).encode()
        r = await api.post(f"/webhooks/stripe/{a['stripe_connection_id']}", content=raw,
                           headers=StripeScheme.sign(raw, secret))
        if r.status_code != 200:  # A's own connection, signed right: accepted (then must stay A's)
            problems.append(("A's own signed Stripe event not accepted", etype, r.status_code, r.text[:200]))
    # the same couple books A too: A's Zap sends B's client's name and e-mail; it must stay A's own client
    hb = hub.connections.get(a["vendor_id"], a["hb_connection_id"])
    zap = json.dumps({"event": "Client Created", "first_name": "Bravoana", "last_name": "Ruiz",
                      "email": "bravo.ruiz@example.com"}).encode()
    r = await api.post(f"/webhooks/honeybook/{hb.id}", content=zap, headers={
        **ZapierScheme.sign(zap, str(hub.connections.credentials(hb)["webhook_secret"])),
        "Content-Type": "application/json"})
    if r.status_code != 200:
        problems.append(("A's own signed Zap not accepted", r.status_code, r.text[:200]))
    for provider in ("stripe", "honeybook"):
        for _ in range(20):
            out = await process_batch(hub, provider)
            if not out["claimed"]:
                break
    if hub.inbox.pending_count():
        problems.append(("A's own webhooks not all processed", hub.inbox.pending_count()))
    mine = None
    for _ in range(100):  # the app's own inbox drain may hold the event, claimed and not yet written: wait for it
        with hub.db.read() as s:
            mine = s.execute(select(CrmClient.id).where(CrmClient.vendor_id == a["vendor_id"],
                                                        CrmClient.email == "bravo.ruiz@example.com")).first()
        if mine is not None:
            break
        await asyncio.sleep(0.1)
    if mine is None:
        problems.append(("A's own Zap did not make A's client (the event was not processed)",))
    return problems


def _special(b: dict[str, Any]) -> dict[tuple[str, str], list[Variant]]:
    """Bodies that get past validation for routes whose minimal body would stop at 422, every id in them
    pointing at B's objects."""
    day = b["calendar_day"]
    window = {"start": day.isoformat(), "end": (day + timedelta(days=7)).isoformat()}
    moved = {"start": (day + timedelta(hours=14)).isoformat(), "end": (day + timedelta(hours=15)).isoformat()}
    nf = frozenset({404})
    return {
        ("post", "/api/integrations/crm/sync"): [
            Variant({"vendorId": b["vendor_id"], "crmProvider": "vsco-workspace", "syncType": "full"}, expect=nf)],
        ("patch", "/api/crm/clients/{client_id}"): [Variant({"company": "taken over", "email": "a@example.com"})],
        ("post", "/api/crm/conflicts/{conflict_id}/resolve"): [Variant({"choice": "incoming"}),
                                                               Variant({"choice": "value", "value": "x@y.z"})],
        ("put", "/api/crm/policies"): [
            Variant({"field": "email", "kind": "manual", "connection_id": b["connection_id"]}, expect=nf)],
        ("put", "/api/crm/connections/{connection_id}/field-mappings"): [
            Variant({"mappings": {"lead_source": "stolen"}})],
        ("post", "/api/crm/weddings/{wedding_id}/payments"): [
            Variant({"amount_minor": 100, "currency": "USD", "invoice_id": b["invoice_id"]})],
        ("post", "/api/crm/weddings/{wedding_id}/invoices"): [Variant({"number": "qa-1", "currency": "USD",
                                                                       "total_minor": 100})],
        ("post", "/api/crm/imports"): [
            Variant(content=import_csv("qa"), query={"layout": "honeybook", "connection_id": b["hb_connection_id"]},
                    headers={"Content-Type": "text/csv"}, expect=nf)],
        ("get", "/api/crm/export"): [Variant(query={"layout": "honeybook", "connection_id": b["hb_connection_id"]},
                                             expect=nf)],
        ("post", "/api/integrations/payments/setup"): [
            Variant({"vendorId": b["vendor_id"], "gatewayConfig": {"primary": b["stripe_connection_id"]}}, expect=nf),
            Variant({"gatewayConfig": {"primary": b["stripe_connection_id"]}}, expect=frozenset({404, 422}))],
        ("post", "/api/integrations/payments/onboarding/{connection_id}/complete"): [
            Variant({"accountRef": "acct_taken"})],
        # A replays B's Idempotency-Key: A gets a transaction of its own, never B's
        ("post", "/api/payments/transactions"): [
            Variant({"bookingRef": "qa-own-ref", "amountMinor": 500, "currency": "USD",
                     "paymentMethod": "pm_card_visa"}, headers={"Idempotency-Key": b["idempotency_key"]},
                    expect=frozenset({200, 201}))],
        ("post", "/api/payments/transactions/{transaction_id}/refunds"): [Variant({"amountMinor": 100}),
                                                                         Variant({})],
        ("post", "/api/payments/escrow/{hold_id}/release"): [Variant({"amountMinor": 100}), Variant({})],
        ("post", "/api/payments/disputes/{dispute_id}/evidence"): [Variant({"explanation": "ours", "submit": True})],
        ("post", "/api/payments/reconciliations"): [
            Variant({"since": (utcnow() - timedelta(hours=1)).isoformat(),
                     "until": (utcnow() + timedelta(minutes=5)).isoformat()})],
        ("post", "/api/calendar/sources"): [
            Variant({"kind": "google-calendar", "calendar_id": "qa-primary",
                     "connection_id": b["google_connection_id"]}, expect=nf)],
        # A books exactly B's slot: A's calendar is its own (201; 409 only against A's first booking)
        ("post", "/api/calendar/bookings"): [
            Variant({"start": b["booking_start"], "end": b["booking_end"], "title": "qa"},
                    expect=frozenset({201, 409}))],
        ("post", "/api/calendar/bookings/{booking_id}/reschedule"): [Variant(moved)],
        ("post", "/api/calendar/slots/search"): [Variant({"meeting_type": "consultation", **window})],
        ("post", "/api/calendar/meetings"): [Variant({"meeting_type": "consultation", **window, "title": "qa"})],
        ("get", "/api/calendar/availability"): [Variant(query=window)],
        ("get", "/oauth/{provider}/start"): [
            Variant(query={"connection_id": b["google_connection_id"], "format": "json"}, expect=nf)],
        ("get", "/api/calendar/conflicts"): [Variant(query=window)],
        ("get", "/api/calendar/report"): [Variant(query=window)],
    }


def _snapshot(hub: Any, vendor_id: str) -> list[Any]:
    """Every row vendor B owns, in every table of every capability (any table with a vendor_id column)."""
    t.import_table_modules()
    out: list[Any] = []
    with hub.db.read() as s:
        for table in t.Base.metadata.sorted_tables:
            col = table.c.id if table.name == "vendors" else table.c.get("vendor_id")
            if col is None:
                continue
            for row in s.execute(select(table).where(col == vendor_id)).mappings():
                out.append((table.name, {k: repr(v) for k, v in row.items()}))
    return sorted(out, key=lambda x: json.dumps(x, sort_keys=True))


def _markers(snapshot: list[Any]) -> dict[str, str]:
    """Every id, reference and e-mail in B's rows (table.column for each): none may reach A."""
    out: dict[str, str] = {}
    for table, row in snapshot:
        for col, rep in row.items():
            if col == "id" or col.endswith(("_id", "_ref", "email", "_hash")):
                value = rep[1:-1] if rep[:1] in "'\"" else ""
                if len(value) >= 12:
                    out.setdefault(value, f"{table}.{col}")
    return out


def _around(text: str, marker: str, width: int = 200) -> str:
    i = text.find(marker)
    return text[max(i - width, 0):i + len(marker) + width]


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _example(schema: dict[str, Any], node: dict[str, Any], depth: int = 0) -> Any:
    """A minimal value that passes validation for ``node`` (required fields only), so the request reaches
    the route's ownership check instead of stopping at 422."""
    node = _resolve(schema, node)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            options = [o for o in node[key] if _resolve(schema, o).get("type") != "null"] or node[key]
            return _example(schema, options[0], depth + 1)
    if "default" in node and node["default"] is not None:
        return node["default"]
    if "enum" in node:
        return node["enum"][0]
    if "const" in node:
        return node["const"]
    typ = node.get("type")
    fmt = node.get("format", "")
    if typ == "object" or "properties" in node:
        if depth > 6:
            return {}
        props = node.get("properties", {})
        names = [k for k in node.get("required", []) if k in props] or list(props)[:1]
        return {k: _example(schema, props[k], depth + 1) for k in names}
    if typ == "array":
        n = int(node.get("minItems", 0))
        return [_example(schema, node.get("items", {}), depth + 1) for _ in range(n)]
    if typ == "integer":
        return max(int(node.get("minimum", 1)), int(node.get("exclusiveMinimum", 0)) + 1, 1)
    if typ == "number":
        return 1.0
    if typ == "boolean":
        return False
    if fmt == "date":
        return "2031-06-14"
    if fmt == "date-time":
        return "2031-06-14T15:00:00Z"
    if fmt == "email":
        return "sneaky@example.com"
    if fmt in ("uri", "url"):
        return "https://example.com/x"
    return "x" * max(int(node.get("minLength", 1)), 1)


def _generic_body(schema: dict[str, Any], op: dict[str, Any], b: dict[str, Any]) -> Any:
    if "requestBody" not in op:
        return None
    content = op["requestBody"].get("content", {})
    if "application/json" not in content:
        return None
    ref = json.dumps(op["requestBody"])
    if "ConnectionIn" in ref:
        return {"provider": "vsco-workspace", "base_url": "http://127.0.0.1:9/vsco-workspace/api/v2",
                "credentials": {"api_key": "x"}}
    body = _example(schema, content["application/json"].get("schema", {}))
    if isinstance(body, dict):
        # Point every id-like field at vendor B's objects: the strongest attempt to reach them.
        for k in list(body):
            if k in ("vendorId", "vendor_id"):
                body[k] = b["vendor_id"]
            elif k in ("connection_id", "connectionId"):
                body[k] = b["connection_id"]
    return body


def _query(schema: dict[str, Any], op: dict[str, Any], b: dict[str, Any]) -> dict[str, str]:
    """Required query parameters (a minimal value), and optional ones that filter by an object (B's)."""
    out: dict[str, str] = {}
    for p in op.get("parameters", []):
        if p.get("in") != "query":
            continue
        if p["name"] in QUERY_IDS:
            out[p["name"]] = str(b[QUERY_IDS[p["name"]]])
        elif p.get("required"):
            out[p["name"]] = str(_example(schema, p.get("schema", {})))
    return out


def _path_combos(path: str, b: dict[str, Any]) -> list[tuple[str, list[str], str]] | None:
    """Every URL for the path with B's objects in its parameters, and the parameters' names; None when an
    id-like parameter has no mapping (a new route: add it to PATH_IDS)."""
    params = re.findall(r"{(\w+)}", path)
    choices: list[list[tuple[str, str]]] = []
    for p in params:
        if p == "provider":
            continue
        if p not in PATH_IDS:
            if _is_id_param(p):
                return None
            choices.append([(p, "x")])
            continue
        choices.append([(p, name) for name in PATH_IDS[p]])
    urls = []
    for combo in itertools.product(*choices):
        url = path
        provider = "google-calendar" if path.startswith("/oauth") else "vsco-workspace"  # an OAuth provider
        for p, name in combo:
            url = url.replace("{" + p + "}", str(b[name]))
            provider = CONN_PROVIDER.get(name, provider)
        urls.append((url.replace("{provider}", provider), params, provider))
    return urls


async def test_vendor_a_cannot_touch_vendor_b(api, hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    # an OAuth app for google-calendar, so /oauth/{provider}/start reaches its ownership check (never contacted)
    hub.settings.oauth_clients.setdefault("google-calendar", {"client_id": "qa-client", "client_secret": "qa-secret",
                                                              "base_url": "http://127.0.0.1:9"})
    a = await seed_vendor(api, hub, "alpha", sandbox, 40)
    b = await seed_vendor(api, hub, "bravo", sandbox, 50)
    before = _snapshot(hub, b["vendor_id"])
    assert {name for name, _ in before} >= {
        "crm_clients", "crm_merges", "crm_conflicts", "crm_field_policies", "crm_field_mappings", "crm_outbox",
        "crm_import_jobs", "crm_import_errors", "payment_setups", "payment_gateway_accounts", "payment_intents",
        "payment_refunds", "escrow_holds", "payment_disputes", "ledger_entries", "reconciliation_reports",
        "calendar_profiles", "calendar_sources", "calendar_source_events", "calendar_bookings",
        "calendar_conflicts", "calendar_blocks", "calendar_feed_tokens"}
    schema = (await api.get("/openapi.json")).json()
    special = _special(b)
    special["post", "/webhooks/{provider}/{connection_id}"] = _webhooks(hub, a, b)
    markers = _markers(before) | {v: k for k, v in id_values(b)} | {"bravo": "name"}
    assert "bravo" not in json.dumps([x for x in _snapshot(hub, a["vendor_id"])])  # A's own data names no B
    visited, routes, id_routes = 0, 0, 0
    problems: list[Any] = []
    # B's busy week (an event, a booking, a hold, a meeting, a conflict) is free time for A
    week = {"start": b["calendar_day"].isoformat(), "end": (b["calendar_day"] + timedelta(days=10)).isoformat()}
    for path, key in (("/api/calendar/availability", "busy"), ("/api/calendar/conflicts", "conflicts")):
        resp = await api.get(path, headers=auth(a["key"]), params=week)
        # (recorded conflicts stay listed whatever the window: A's own, on A's own day, are not B's)
        if resp.status_code != 200 or [x for x in resp.json()[key] if week["start"] <= x["start"] < week["end"]]:
            problems.append(("GET", path, "B's time shows in A's calendar", resp.status_code, resp.text[:300]))
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            routes += 1
            combos = _path_combos(path, b)
            if combos is None:
                problems.append((method, path, "an id path parameter this test does not map to B's objects"))
                continue
            has_id = any(_is_id_param(p) for p in combos[0][1])
            id_routes += has_id
            variants = special.get((method, path)) or [Variant(_generic_body(schema, op, b))]
            base_query = _query(schema, op, b)
            for (url, _params, provider), v in itertools.product(combos, variants):
                if v.provider not in (None, provider):
                    continue
                query = {**base_query, **v.query}
                full = url + ("?" + urlencode(query) if query else "")
                sent = full + json.dumps(v.body) + json.dumps(v.headers) + (v.content or b"").decode()
                # Vendor A's key, and also A's key naming B in the operator header (must not help: 404 or 403).
                for extra in ({}, {"X-WedSync-Vendor": b["vendor_id"]}):
                    headers = {**auth(a["key"]), **extra, **v.headers}
                    if v.content is not None:
                        resp = await api.request(method.upper(), full, headers=headers, content=v.content)
                    else:
                        resp = await api.request(method.upper(), full, headers=headers, json=v.body)
                    visited += 1
                    text = resp.text + json.dumps(dict(resp.headers))
                    where = (method.upper(), full, v.body, resp.status_code)
                    if extra and path.startswith("/api") and path not in VENDORLESS and resp.status_code < 400:
                        problems.append((*where, "B named in X-WedSync-Vendor by A's key was not refused"))
                    if resp.status_code >= 500:
                        problems.append((*where, "5xx", resp.text[:300]))
                    leaked = [(markers[m], m) for m in markers if m in text and m not in sent]
                    if leaked:
                        problems.append((*where, "leaks", leaked, _around(text, leaked[0][1])))
                    if has_id and resp.status_code not in (401, 403, 404):
                        problems.append((*where, "B's object in the path but not 401/403/404", resp.text[:300]))
                    if v.expect is not None and not extra and resp.status_code not in v.expect:
                        problems.append((*where, f"expected {sorted(v.expect)}", resp.text[:300]))
                    if path == "/api/vendors" and resp.status_code != 403:
                        problems.append((*where, "operator route open to a vendor key"))
    problems += await _own_webhooks_naming_b(api, hub, a, b)
    for path in ("/api/payments/disputes", "/api/payments/ledger", "/api/payments/transactions"):
        resp = await api.get(path, headers=auth(a["key"]))
        leaked = [(markers[m], m) for m in markers if m in resp.text]
        if leaked:
            problems.append(("GET", path, "after A's own webhooks", resp.status_code, "leaks", leaked,
                             _around(resp.text, leaked[0][1])))
    after = _snapshot(hub, b["vendor_id"])
    if after != before:
        changed = [x for x in after if x not in before] + [x for x in before if x not in after]
        problems.append(("B's data changed", changed[:6]))
    # A's booking of B's exact slot went through: B's calendar does not block A's
    mine = hub.calendar.list_bookings(a["vendor_id"])
    if not any(x["start"] == b["booking_start"] and x["title"] == "qa" for x in mine):
        problems.append(("A could not book the slot B holds", [x["start"] for x in mine]))
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(map(repr, problems))
    assert routes >= 80 and id_routes >= 30 and visited > 200, (routes, id_routes, visited)


async def test_every_api_route_needs_a_key(api) -> None:  # type: ignore[no-untyped-def]
    schema = (await api.get("/openapi.json")).json()
    n = 0
    for path, methods in schema["paths"].items():
        if not path.startswith("/api"):
            continue
        for method in methods:
            url = re.sub(r"{\w+}", "01h35ccwymj5ctckp8px1azhg6", path)
            for headers in ({}, {"Authorization": "Bearer wsk_nope_nope"}, {"X-API-Key": "garbage"}):
                resp = await api.request(method.upper(), url, headers=headers)
                assert resp.status_code == 401, (method, path, resp.status_code)
                assert resp.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
                n += 1
    assert n > 30


async def test_scopes_enforced(api, hub) -> None:  # type: ignore[no-untyped-def]
    v = hub.tenancy.create_vendor("Scoped")
    _, ro = hub.tenancy.create_key(v.id, scopes=["read"])
    assert (await api.get("/api/connections", headers=auth(ro))).status_code == 200
    r = await api.post("/api/connections", headers=auth(ro),
                       json={"provider": "vsco-workspace", "credentials": {"api_key": "k"}})
    assert r.status_code == 403 and r.json()["error"]["code"] == "missing_scope"
    assert (await api.get("/api/keys", headers=auth(ro))).status_code == 403


async def test_a_key_grants_at_most_its_own_scopes(api, hub) -> None:  # type: ignore[no-untyped-def]
    v = hub.tenancy.create_vendor("Key Admin Only")
    _, admin = hub.tenancy.create_key(v.id, scopes=["keys"])
    assert (await api.get("/api/clients", headers=auth(admin))).status_code == 403
    r = await api.post("/api/keys", headers=auth(admin), json={"name": "escalated"})  # no scopes: the caller's
    assert r.status_code == 201 and r.json()["scopes"] == ["keys"], r.text
    r = await api.post("/api/keys", headers=auth(admin), json={"name": "escalated", "scopes": ["read", "write"]})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "scope_escalation"
    assert r.json()["error"]["details"] == {"scopes": ["read", "write"], "held": ["keys"]}
    names = [k.name for k in hub.tenancy.list_keys(v.id)]
    assert names.count("escalated") == 1  # the refused one was not created
    _, full = hub.tenancy.create_key(v.id, scopes=["read", "write", "keys"])
    r = await api.post("/api/keys", headers=auth(full), json={"name": "reader", "scopes": ["read"]})
    assert r.status_code == 201 and r.json()["scopes"] == ["read"]


async def test_operator_key_scopes_are_honoured(api, hub) -> None:  # type: ignore[no-untyped-def]
    v = hub.tenancy.create_vendor("Watched Studio")
    _, watcher = hub.tenancy.create_key(None, operator=True, scopes=["read"])
    headers = {**auth(watcher), "X-WedSync-Vendor": v.id}
    assert (await api.get("/api/vendors", headers=auth(watcher))).status_code == 200
    assert (await api.get("/api/connections", headers=headers)).status_code == 200
    r = await api.post("/api/vendors", headers=auth(watcher), json={"name": "Not Allowed"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "missing_scope"
    r = await api.post("/api/connections", headers=headers,
                       json={"provider": "vsco-workspace", "credentials": {"api_key": "k"}})
    assert r.status_code == 403 and r.json()["error"]["code"] == "missing_scope"
    assert [x.name for x in hub.tenancy.list_vendors()].count("Not Allowed") == 0
    _, full_op = hub.tenancy.create_key(None, operator=True)
    r = await api.post("/api/vendors", headers=auth(full_op), json={"name": "Allowed"})
    assert r.status_code == 201
