"""Every request the four gateway connectors send and every answer the sandboxes give, checked against the
providers' own specifications: Stripe, Square and PayPal OpenAPI (``../shared/specs``), Authorize.net's XSD.

A recorder in front of the sandbox app keeps each exchange (recorded on the server side, nothing patched);
each gateway is driven through its connector's whole surface (onboarding, charges, declines, refunds, lookups,
settlements, dispute evidence), then:

* the request must be an operation of the spec (path template + method), its query parameters declared, its
  body valid against the operation's request schema (Stripe's form fields coerced by the schema's types), and
  its gateway-specific headers present (``Idempotency-Key``, ``Square-Version``, ``PayPal-Request-Id``);
* the response body must be valid against the documented response for its status (or ``default``). Square
  documents only the 200 response object per operation, whose ``errors`` member carries errors, so error
  answers are validated against that same object. PayPal's OAuth token endpoint is not in the REST specs and
  is checked for its shape only.
* Authorize.net JSON requests and answers are turned into the XML API form (element order kept) and validated
  with ``xmlschema`` against ``AnetApiSchema.xsd``.

The Stripe spec is 4 MiB of YAML: it is parsed once per session with libyaml.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI

from tests.contract.spec_tools import SPECS_DIR, OpenApiSpec, SpecError
from wedsync.connectors import http as http_layer
from wedsync.connectors.payments.authorize_net import AuthorizeNetConnector
from wedsync.connectors.payments.base import ChargeRequest, DisputeEvidence, GatewayConnector, SplitInstruction
from wedsync.connectors.payments.paypal import PayPalConnector
from wedsync.connectors.payments.square import SquareConnector
from wedsync.connectors.payments.stripe import StripeConnector
from wedsync.sandbox import authorize_net as anet_sandbox
from wedsync.sandbox import paypal as paypal_sandbox
from wedsync.sandbox import square as square_sandbox
from wedsync.sandbox import stripe as stripe_sandbox

STRIPE_PATHS = (
    "/v1/payment_intents", "/v1/payment_intents/search", "/v1/payment_intents/{intent}",
    "/v1/payment_intents/{intent}/capture", "/v1/charges", "/v1/charges/{charge}", "/v1/refunds",
    "/v1/refunds/{refund}", "/v1/transfers", "/v1/transfers/{transfer}", "/v1/transfers/{id}/reversals",
    "/v1/accounts", "/v1/accounts/{account}", "/v1/account_links", "/v1/balance_transactions", "/v1/disputes",
    "/v1/disputes/{dispute}", "/v1/webhook_endpoints",
)


def _stripe_document() -> dict[str, Any]:
    """Parsing the YAML takes 3-12 s (shared CPU): keep a JSON copy in the system temp directory (outside the
    project), keyed by the spec's size and modification time."""
    import hashlib
    import os
    import tempfile

    import yaml

    source = SPECS_DIR / "stripe" / "spec3.yaml"
    stat = source.stat()
    key = hashlib.sha256(f"{source}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = os.path.join(tempfile.gettempdir(), f"wedsync-stripe-spec3-{key}.json")
    try:
        with open(cached, "rb") as fh:
            return json.loads(fh.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        pass
    with open(source, encoding="utf-8") as fh:
        document = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    tmp = f"{cached}.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(document, fh)
    os.replace(tmp, cached)
    return document  # type: ignore[no-any-return]


@cache
def stripe_spec() -> OpenApiSpec:
    """The Stripe spec cut down to the operations the connector uses and every schema they reach (the
    whole 4 MiB document takes ~10 s to convert; the cut keeps every ``$ref`` resolvable)."""
    document = _stripe_document()
    paths = {p: document["paths"][p] for p in STRIPE_PATHS}
    schemas = document["components"]["schemas"]
    keep: set[str] = {"event", "payout"}  # webhook bodies
    todo: list[Any] = [paths, schemas["event"], schemas["payout"]]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[-1]
                if name not in keep:
                    keep.add(name)
                    todo.append(schemas[name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    pruned = {**{k: v for k, v in document.items() if k not in ("paths", "components")}, "paths": paths,
              "components": {**document["components"], "schemas": {n: schemas[n] for n in keep}}}
    return OpenApiSpec(pruned, name="stripe/spec3.yaml")


PAYPAL_FILES = ("checkout_orders_v2.json", "payments_payment_v2.json", "customer_disputes_v1.json",
                "notifications_webhooks_v1.json", "reporting_transactions_v1.json",
                "customer_partner_referrals_v2.json")


@dataclass
class Exchange:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response: bytes = b""


class Recorder:
    """ASGI middleware in front of the sandbox: keeps every provider request and the answer it got."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        messages = []
        while True:
            msg = await receive()
            messages.append(msg)
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        ex = Exchange(scope["method"], scope["path"], scope["query_string"].decode(),
                      {k.decode().lower(): v.decode() for k, v in scope["headers"]}, b"".join(chunks))
        self.exchanges.append(ex)

        async def replay() -> Any:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                ex.status = message["status"]
                ex.response_headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                ex.response += message.get("body", b"")
            await send(message)

        await self.app(scope, replay, capture)

    def of(self, prefix: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.path.startswith(prefix + "/")]


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    for slug in ("stripe", "square", "paypal", "authorize-net"):
        http_layer._breakers.pop(slug, None)
    yield


@pytest.fixture
def sandbox() -> FastAPI:
    from tests.integration.test_gateways import payment_sandbox

    return payment_sandbox(seed=5)


@pytest.fixture
def recorder(sandbox: FastAPI) -> Recorder:
    return Recorder(sandbox)


@pytest.fixture
async def admin(sandbox: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sandbox.test") as c:
        yield c


def template_of(spec: OpenApiSpec, method: str, path: str) -> str:
    candidates = []
    for template, m in spec.operations():
        if m.upper() == method and re.fullmatch(re.sub(r"{[^/]+}", "[^/]+", template), path):
            candidates.append(template)
    assert candidates, f"{method} {path} is not an operation of {spec.name}"
    return min(candidates, key=lambda t: t.count("{"))  # /v1/payment_intents/search before /{intent}


def check_query(spec: OpenApiSpec, template: str, method: str, query: str) -> None:
    params = spec.parameters(template, method)
    for name, _value in parse_qsl(query, keep_blank_values=True):
        base = name.split("[", 1)[0]
        assert ("query", base) in params, f"{method} {template}: query parameter {name!r} is not in {spec.name}"


def request_schema(spec: OpenApiSpec, template: str, method: str, content_type: str) -> dict[str, Any] | None:
    op = spec.operation(template, method)
    body = op.get("requestBody")
    if body is None:
        return None
    media = spec._deref(body).get("content", {}).get(content_type)
    assert media is not None, f"{method} {template} takes no {content_type} body"
    return dict(spec._deref(media["schema"]))


def check_response(spec: OpenApiSpec, template: str, method: str, ex: Exchange, *,
                   status: int | None = None) -> None:
    schema = spec.response_schema(template, method, status or ex.status)
    try:
        spec.validate(json.loads(ex.response), schema)
    except SpecError as exc:
        raise SpecError(f"{method.upper()} {template} -> {ex.status}: {exc}") from None


# --------------------------------------------------------------------------------------------------- Stripe


def coerce(spec: OpenApiSpec, value: Any, schema: Any) -> Any:
    """Form-encoded values are strings: give them the types the request schema declares."""
    if not isinstance(schema, dict):
        return value
    schema = dict(spec._deref(schema))
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        alternatives = [spec._deref(a) for a in alternatives]
        if isinstance(value, dict):
            pick = next((a for a in alternatives if a.get("type") == "object" or "properties" in a), alternatives[0])
        elif isinstance(value, list):
            pick = next((a for a in alternatives if a.get("type") == "array"), alternatives[0])
        else:
            pick = next((a for a in alternatives if a.get("type") in ("integer", "boolean", "number")
                         and _parses(value, a["type"])), None) or next(
                (a for a in alternatives if a.get("type") == "string"), alternatives[0])
        return coerce(spec, value, pick)
    kind = schema.get("type")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        return {k: coerce(spec, v, props.get(k, extra if isinstance(extra, dict) else {})) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce(spec, v, schema.get("items") or {}) for v in value]
    if isinstance(value, str) and kind in ("integer", "boolean", "number") and _parses(value, kind):
        if kind == "integer":
            return int(value)
        return float(value) if kind == "number" else value == "true"
    return value


def _parses(value: Any, kind: str) -> bool:
    if kind == "boolean":
        return value in ("true", "false")
    try:
        (int if kind == "integer" else float)(value)
    except (TypeError, ValueError):
        return False
    return True


async def drive_stripe(sandbox: FastAPI, recorder: Recorder, admin: httpx.AsyncClient) -> None:
    conn = StripeConnector(secret_key=stripe_sandbox.DEFAULT_SECRET_KEY, base_url="http://sandbox.test/stripe",
                           transport=httpx.ASGITransport(app=recorder))
    step = await conn.onboard("vendor-c", "https://hub.example/r", "https://hub.example/f")
    assert step.account_ref
    since = datetime.now(UTC) - timedelta(minutes=1)
    split = SplitInstruction(step.account_ref, 1_000)
    res = await conn.charge(ChargeRequest("c-1", 10_000, "USD", "pm_card_visa", "Deposit", "a@example.com", split,
                                          metadata={"milestone": "deposit"}), "k-1")
    await conn.charge(ChargeRequest("c-2", 500, "USD", "pm_card_chargeDeclined"), "k-2")
    await conn.charge(ChargeRequest("c-3", 500, "USD", "pm_card_visa", split=SplitInstruction(
        step.account_ref, 100, "group-3", mode="separate")), "k-3")
    assert res.gateway_ref
    await conn.transfer(step.account_ref, 400, "USD", "t-3", transfer_group="group-3", source_charge=res.gateway_ref)
    await conn.refund(res.gateway_ref, 2_000, "USD", "r-1", reverse_split=True)
    await conn.refund(res.gateway_ref, 99_000, "USD", "r-2", reverse_split=False)
    await conn.lookup("c-1", "k-1")
    auth = await conn.charge(ChargeRequest("c-4", 800, "USD", "pm_card_visa", capture=False), "k-4")
    assert auth.gateway_ref
    await conn.capture(auth.gateway_ref, None, "cap-4")
    disputed = await conn.charge(ChargeRequest("c-5", 900, "USD", "pm_card_createDispute"), "k-5")
    dispute = next(r for r in (json.loads(line) for line in
                               (await admin.get("/_sandbox/stripe/records/disputes")).text.splitlines()))
    assert disputed.charged
    await conn.submit_dispute_evidence(dispute["id"], DisputeEvidence("Delivered", customer_name="A"))
    await conn.charge(ChargeRequest("c-6", 100_000, "USD", "pm_card_visa"), "k-6")  # a positive balance to pay out
    await admin.post("/_sandbox/stripe/mutate", json={"action": "payout"})
    await conn.settlements(since, datetime.now(UTC) + timedelta(minutes=1))
    await conn.aclose()


async def test_stripe_requests_and_responses_follow_the_spec(sandbox: FastAPI, recorder: Recorder,
                                                            admin: httpx.AsyncClient) -> None:
    await drive_stripe(sandbox, recorder, admin)
    spec = stripe_spec()
    exchanges = recorder.of("/stripe")
    assert len(exchanges) >= 14 and {e.status for e in exchanges} >= {200, 400, 402}
    for ex in exchanges:
        path = ex.path[len("/stripe"):]
        template = template_of(spec, ex.method, path)
        assert ex.headers.get("authorization", "").startswith("Bearer sk_test_")
        check_query(spec, template, ex.method.lower(), ex.query)
        if ex.method == "POST":
            assert ex.headers.get("idempotency-key"), f"POST {path} without Idempotency-Key"
            if ex.body:
                assert ex.headers["content-type"].startswith("application/x-www-form-urlencoded")
            schema = request_schema(spec, template, "post", "application/x-www-form-urlencoded")
            assert schema is not None
            spec.validate(coerce(spec, stripe_sandbox.parse_form(ex.body), schema), schema)
        check_response(spec, template, ex.method.lower(), ex)


# --------------------------------------------------------------------------------------------------- Square


async def drive_square(recorder: Recorder, admin: httpx.AsyncClient) -> None:
    conn = SquareConnector(access_token=square_sandbox.DEFAULT_ACCESS_TOKEN, base_url="http://sandbox.test/square",
                           transport=httpx.ASGITransport(app=recorder), location_id=square_sandbox.LOCATION_ID)
    since = datetime.now(UTC) - timedelta(minutes=1)
    res = await conn.charge(ChargeRequest("s-1", 10_000, "USD", "cnon:card-nonce-ok", "Deposit", "a@example.com",
                                          SplitInstruction("seller", 1_000)), "sk-1")
    assert res.gateway_ref
    await conn.charge(ChargeRequest("s-2", 100, "USD", "cnon:card-nonce-declined"), "sk-2")
    await conn.charge(ChargeRequest("s-2", 101, "USD", "cnon:card-nonce-ok"), "sk-2")  # IDEMPOTENCY_KEY_REUSED
    await conn.refund(res.gateway_ref, 3_000, "USD", "sr-1", reverse_split=True)
    await conn.refund(res.gateway_ref, 30_000, "USD", "sr-2", reverse_split=False)
    await conn.lookup("s-1", "sk-1")
    auth = await conn.charge(ChargeRequest("s-3", 700, "USD", "cnon:ok", capture=False), "sk-3")
    assert auth.gateway_ref
    await conn.capture(auth.gateway_ref, None, "sc-3")
    disputed = await conn.charge(ChargeRequest("s-4", 900, "USD", "cnon:card-nonce-dispute"), "sk-4")
    assert disputed.charged
    dispute = json.loads((await admin.get("/_sandbox/square/records/disputes")).text.splitlines()[0])
    await conn.submit_dispute_evidence(dispute["id"], DisputeEvidence("Delivered"))
    await admin.post("/_sandbox/square/mutate", json={"action": "payout"})
    await conn.settlements(since, datetime.now(UTC) + timedelta(minutes=1))
    await conn.aclose()


async def test_square_requests_and_responses_follow_the_spec(recorder: Recorder, admin: httpx.AsyncClient) -> None:
    await drive_square(recorder, admin)
    spec = OpenApiSpec.load("square/api.json")
    exchanges = recorder.of("/square")
    assert len(exchanges) >= 14 and {e.status for e in exchanges} >= {200, 400}
    for ex in exchanges:
        path = ex.path[len("/square"):]
        template = template_of(spec, ex.method, path)
        assert ex.headers.get("square-version") == "2025-08-20"
        assert ex.headers.get("authorization") == f"Bearer {square_sandbox.DEFAULT_ACCESS_TOKEN}"
        check_query(spec, template, ex.method.lower(), ex.query)
        if ex.method == "POST":
            schema = request_schema(spec, template, "post", "application/json")
            body = json.loads(ex.body)
            if schema is None:  # e.g. submit-evidence documents no body
                assert body == {}, f"POST {template} takes no body"
            else:
                spec.validate(body, schema)
            if "idempotency_key" in body:
                assert len(body["idempotency_key"]) <= 45
        check_response(spec, template, ex.method.lower(), ex, status=200)


# --------------------------------------------------------------------------------------------------- PayPal


async def drive_paypal(sandbox: FastAPI, recorder: Recorder, admin: httpx.AsyncClient) -> None:
    conn = PayPalConnector(client_id=paypal_sandbox.DEFAULT_CLIENT_ID,
                           client_secret=paypal_sandbox.DEFAULT_CLIENT_SECRET, base_url="http://sandbox.test/paypal",
                           transport=httpx.ASGITransport(app=recorder), webhook_secret="WH1")
    step = await conn.onboard("vendor-p", "https://hub.example/r", "https://hub.example/f")
    assert step.url
    merchant = paypal_sandbox.PayPalEmulator.merchant_for("vendor-p")
    since = datetime.now(UTC) - timedelta(minutes=1)
    res = await conn.charge(ChargeRequest("p-1", 10_000, "USD", "vault-ok", "Deposit", None,
                                          SplitInstruction(merchant, 1_000)), "pk-1")
    assert res.gateway_ref
    await conn.charge(ChargeRequest("p-1", 10_000, "USD", "vault-ok"), "pk-1b")  # DUPLICATE_INVOICE_ID
    await conn.charge(ChargeRequest("p-2", 100, "USD", "vault-declined"), "pk-2")
    await conn.charge(ChargeRequest("p-3", 100, "USD", "vault-ok", split=SplitInstruction("ZZZZZZZZZZZZZ", 1)), "pk-3")
    await conn.refund(res.gateway_ref, 2_000, "USD", "pr-1", reverse_split=True)
    await conn.refund(res.gateway_ref, 99_000, "USD", "pr-2", reverse_split=False)
    await conn.lookup("p-1", "pk-1")
    disputed = await conn.charge(ChargeRequest("p-4", 900, "USD", "vault-dispute"), "pk-4")
    assert disputed.charged
    emulator = sandbox.state.emulators["paypal"]
    dispute_id = next(iter(emulator.disputes))
    await conn.submit_dispute_evidence(dispute_id, DisputeEvidence("Delivered"))
    raw = json.dumps({"id": "WH-X", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {"id": "X"}}).encode()
    await conn.verify_webhook_signature(raw, emulator.sign(raw, "WH1"))
    await admin.post("/_sandbox/paypal/mutate", json={"action": "payout"})
    await conn.settlements(since, datetime.now(UTC) + timedelta(minutes=1))
    await conn.aclose()


async def test_paypal_requests_and_responses_follow_the_spec(sandbox: FastAPI, recorder: Recorder,
                                                            admin: httpx.AsyncClient) -> None:
    await drive_paypal(sandbox, recorder, admin)
    specs = [OpenApiSpec.load(f"paypal/{name}") for name in PAYPAL_FILES]
    exchanges = recorder.of("/paypal")
    assert {e.status for e in exchanges} >= {200, 201, 422}
    checked = 0
    for ex in exchanges:
        path = ex.path[len("/paypal"):]
        if path == "/v1/oauth2/token":  # OAuth is not part of the REST specs: its documented shape
            assert ex.headers["authorization"].startswith("Basic ") and b"grant_type=client_credentials" in ex.body
            token = json.loads(ex.response)
            assert token["token_type"] == "Bearer" and token["access_token"] and token["expires_in"] > 0
            continue
        spec = next((s for s in specs if any(re.fullmatch(re.sub(r"{[^/]+}", "[^/]+", t), path)
                                            and m.upper() == ex.method for t, m in s.operations())), None)
        assert spec is not None, f"{ex.method} {path} is in none of the PayPal specs"
        template = template_of(spec, ex.method, path)
        assert ex.headers.get("authorization", "").startswith("Bearer A21AA")
        check_query(spec, template, ex.method.lower(), ex.query)
        if ex.method == "POST":
            request_id = ex.headers.get("paypal-request-id")
            if template != "/v1/notifications/verify-webhook-signature":
                assert request_id and len(request_id) <= 108, f"POST {path} without PayPal-Request-Id"
            if ex.headers.get("content-type", "").startswith("application/json"):
                schema = request_schema(spec, template, "post", "application/json")
                if schema is not None:
                    spec.validate(json.loads(ex.body), schema)
            else:  # provide-evidence: multipart with an ``input`` JSON part (the spec documents no body)
                assert template.endswith("/provide-evidence") and b'name="input"' in ex.body
        check_response(spec, template, ex.method.lower(), ex)
        checked += 1
    assert checked >= 12


# -------------------------------------------------------------------------------------------- Authorize.net


async def drive_authorize_net(recorder: Recorder, admin: httpx.AsyncClient) -> None:
    conn = AuthorizeNetConnector(api_login_id=anet_sandbox.DEFAULT_LOGIN,
                                 transaction_key=anet_sandbox.DEFAULT_TRANSACTION_KEY,
                                 base_url="http://sandbox.test/authorize-net",
                                 transport=httpx.ASGITransport(app=recorder))
    card = "card:4111111111111111:2030-12:123"
    since = datetime.now(UTC) - timedelta(minutes=1)
    res = await conn.charge(ChargeRequest("an-c-1", 10_000, "USD", card, "Deposit", "a@example.com"), "ak-1")
    assert res.gateway_ref
    await conn.charge(ChargeRequest("an-c-1", 10_000, "USD", card, "Deposit", "a@example.com"), "ak-1b")  # dup
    await conn.charge(ChargeRequest("an-c-2", 100, "USD", "card:4000300011110002:2030-12"), "ak-2")
    await conn.charge(ChargeRequest("an-c-3", 100, "USD", "opaque-token-value"), "ak-3")
    await conn.refund(res.gateway_ref, 100, "USD", "ar-0", reverse_split=False)  # unsettled: reason 54
    await conn.lookup("an-c-1", "ak-1")
    auth = await conn.charge(ChargeRequest("an-c-4", 700, "USD", card, capture=False), "ak-4")
    assert auth.gateway_ref
    await conn.capture(auth.gateway_ref, None, "ac-4")
    await admin.post("/_sandbox/authorize-net/mutate", json={"action": "payout"})
    await conn.refund(res.gateway_ref, 2_500, "USD", "ar-1", reverse_split=False)
    await admin.post("/_sandbox/authorize-net/mutate", json={"action": "payout"})
    await conn.settlements(since, datetime.now(UTC) + timedelta(minutes=1))
    await conn.aclose()


async def test_authorize_net_documents_validate_against_the_xsd(recorder: Recorder,
                                                               admin: httpx.AsyncClient) -> None:
    await drive_authorize_net(recorder, admin)
    xsd = anet_sandbox.schema()
    assert xsd is not None, "AnetApiSchema.xsd must be in ../shared/specs"
    exchanges = recorder.of("/authorize-net")
    roots = set()
    for ex in exchanges:
        assert ex.path == "/authorize-net/xml/v1/request.api" and ex.method == "POST"
        request = json.loads(ex.body)
        (root, _), = request.items()
        roots.add(root)
        xsd.validate(anet_sandbox.to_xml(request))
        assert ex.response.startswith(b"\xef\xbb\xbf")
        answer = json.loads(ex.response.decode("utf-8-sig"))
        xsd.validate(anet_sandbox.to_xml({root[:-len("Request")] + "Response": answer}))
    assert roots == {"createTransactionRequest", "getTransactionDetailsRequest",
                     "getUnsettledTransactionListRequest", "getSettledBatchListRequest", "getTransactionListRequest"}


async def test_authorize_net_sandbox_speaks_the_xml_api_too(sandbox: FastAPI) -> None:
    xml = (f'<?xml version="1.0" encoding="utf-8"?><createTransactionRequest xmlns="{anet_sandbox.NS}">'
           f"<merchantAuthentication><name>{anet_sandbox.DEFAULT_LOGIN}</name>"
           f"<transactionKey>{anet_sandbox.DEFAULT_TRANSACTION_KEY}</transactionKey></merchantAuthentication>"
           "<refId>x1</refId><transactionRequest><transactionType>authCaptureTransaction</transactionType>"
           "<amount>12.50</amount><payment><creditCard><cardNumber>4111111111111111</cardNumber>"
           "<expirationDate>2030-12</expirationDate></creditCard></payment><order><invoiceNumber>INV-XML-1"
           "</invoiceNumber></order><transactionSettings><setting><settingName>duplicateWindow</settingName>"
           "<settingValue>600</settingValue></setting></transactionSettings></transactionRequest>"
           "</createTransactionRequest>")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://s") as c:
        r = await c.post("/authorize-net/xml/v1/request.api", content=xml, headers={"Content-Type": "text/xml"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    from lxml import etree

    element = etree.fromstring(r.content)
    xsd = anet_sandbox.schema()
    assert xsd is not None
    xsd.validate(element)
    root, body = anet_sandbox.xml_to_dict(element)
    assert root == "createTransactionResponse" and body["messages"]["resultCode"] == "Ok"
    assert body["transactionResponse"]["responseCode"] == "1"


def test_every_gateway_is_registered_with_its_webhook_scheme() -> None:
    from wedsync.connectors.registry import CONNECTORS
    from wedsync.connectors.webhooks import get_scheme

    for slug, cls in (("stripe", StripeConnector), ("square", SquareConnector), ("paypal", PayPalConnector),
                      ("authorize-net", AuthorizeNetConnector)):
        assert CONNECTORS[slug] is cls and issubclass(cls, GatewayConnector)
        assert get_scheme(slug).provider == slug


# ---------------------------------------------------------------------------------------------- webhooks

SQUARE_EVENT_SCHEMAS = {"payment.updated": "PaymentUpdatedEvent", "refund.updated": "RefundUpdatedEvent",
                        "dispute.created": "DisputeCreatedEvent", "dispute.state.updated": "DisputeStateUpdatedEvent",
                        "payout.paid": "PayoutPaidEvent"}
STRIPE_OBJECT_SCHEMAS = {"payment_intent.": "payment_intent", "charge.refunded": "charge",
                         "charge.dispute.": "dispute", "payout.": "payout"}
PAYPAL_RESOURCE_SCHEMAS = {"capture": ("paypal/payments_payment_v2.json", "capture"),
                           "refund": ("paypal/payments_payment_v2.json", "refund"),
                           "dispute": ("paypal/customer_disputes_v1.json", "dispute")}


async def events_of(admin: httpx.AsyncClient, slug: str) -> list[dict[str, Any]]:
    r = await admin.get(f"/_sandbox/{slug}/records/events")
    return [json.loads(line)["object"] for line in r.text.splitlines() if line.strip()]


async def test_webhook_bodies_follow_the_specs(sandbox: FastAPI, recorder: Recorder,
                                               admin: httpx.AsyncClient) -> None:
    """Authorize.net's webhook payloads are not in the XSD (they belong to its REST webhooks API): not checked."""
    await drive_stripe(sandbox, recorder, admin)
    await drive_square(recorder, admin)
    await drive_paypal(sandbox, recorder, admin)
    spec = stripe_spec()
    stripe_events = await events_of(admin, "stripe")
    assert {e["type"] for e in stripe_events} >= {"payment_intent.succeeded", "payment_intent.payment_failed",
                                                  "charge.refunded", "charge.dispute.created", "payout.paid"}
    for event in stripe_events:
        spec.validate(event, spec.ref("#/components/schemas/event"))
        name = next(v for k, v in STRIPE_OBJECT_SCHEMAS.items() if event["type"].startswith(k))
        spec.validate(event["data"]["object"], spec.ref(f"#/components/schemas/{name}"))
    square = OpenApiSpec.load("square/api.json")
    square_events = await events_of(admin, "square")
    assert {e["type"] for e in square_events} >= {"payment.updated", "refund.updated", "dispute.created",
                                                  "dispute.state.updated", "payout.paid"}
    for event in square_events:
        square.validate(event, square.component("schemas", SQUARE_EVENT_SCHEMAS[event["type"]]))
    notifications = OpenApiSpec.load("paypal/notifications_webhooks_v1.json")
    paypal_events = await events_of(admin, "paypal")
    assert {e["event_type"] for e in paypal_events} >= {"PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.DENIED",
                                                        "PAYMENT.CAPTURE.REFUNDED", "CUSTOMER.DISPUTE.CREATED",
                                                        "CUSTOMER.DISPUTE.UPDATED"}
    for event in paypal_events:
        notifications.validate(event, notifications.component("schemas", "event"))
        file, name = PAYPAL_RESOURCE_SCHEMAS[event["resource_type"]]
        resource_spec = OpenApiSpec.load(file)
        resource_spec.validate(event["resource"], resource_spec.component("schemas", name))
