"""Gateway outcome classification: the four outcomes per gateway error document, the mutation replay loop
(a maybe-executed attempt is never reported as not executed), money formatting and bounded keys.

The sandboxes cannot produce every answer a real gateway can (a 409 on a concurrent idempotent request, a
PENDING PayPal capture, Authorize.net's E00001), so these use ``httpx.MockTransport`` with the gateways'
documented bodies; everything the sandboxes do produce is covered by tests/integration/test_gateways.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from wedsync.connectors import http as http_layer
from wedsync.connectors.errors import ReauthRequired
from wedsync.connectors.payments.authorize_net import AuthorizeNetConnector
from wedsync.connectors.payments.base import (
    ChargeRequest,
    GatewayClient,
    Outcome,
    SplitInstruction,
    bounded_key,
    from_decimal,
    to_decimal,
)
from wedsync.connectors.payments.paypal import PayPalConnector
from wedsync.connectors.payments.square import SquareConnector
from wedsync.connectors.payments.stripe import StripeConnector
from wedsync.errors import InvalidInput

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    for slug in ("stripe", "square", "paypal", "authorize-net", "gw-test"):
        http_layer._breakers.pop(slug, None)
    yield
    for slug in ("stripe", "square", "paypal", "authorize-net", "gw-test"):
        http_layer._breakers.pop(slug, None)


def test_bounded_keys_are_deterministic_and_fit() -> None:
    assert bounded_key("attempt-1", 45) == "attempt-1"
    long = "intent-01J0000000000000000000000000:attempt-3"
    assert len(bounded_key(long, 20)) == 20 and bounded_key(long, 20) == bounded_key(long, 20)
    assert bounded_key(long, 20) != bounded_key(long + "x", 20)
    assert bounded_key("k", 10, prefix="p-") == "p-k"


def test_money_strings() -> None:
    assert to_decimal(1050, "usd") == "10.50" and to_decimal(5, "USD") == "0.05"
    assert to_decimal(1500, "JPY") == "1500" and to_decimal(1234, "KWD") == "1.234"
    assert from_decimal("10.50", "USD") == 1050 and from_decimal("1500", "JPY") == 1500
    with pytest.raises(ValueError):
        from_decimal("10.505", "USD")
    with pytest.raises(InvalidInput) as err:
        to_decimal(1, "XXX")
    assert err.value.code == "unknown_currency"


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"amount_minor": 0}, "invalid_amount"),
    ({"amount_minor": -5}, "invalid_amount"),
    ({"currency": "ABC"}, "unknown_currency"),
    ({"payment_method": ""}, "missing_payment_method"),
    ({"split": SplitInstruction("acct_1", 1_001)}, "invalid_split"),
    ({"split": SplitInstruction("", 10)}, "invalid_split"),
])
def test_charge_requests_are_checked_before_sending(kwargs: dict[str, Any], code: str) -> None:
    base: dict[str, Any] = {"reference": "r", "amount_minor": 1_000, "currency": "USD", "payment_method": "pm"}
    with pytest.raises(InvalidInput) as err:
        ChargeRequest(**{**base, **kwargs}).validate()
    assert err.value.code == code


def test_square_caps_the_app_fee_at_90_percent_and_authorize_net_has_no_split() -> None:
    square = SquareConnector(access_token="t")
    square.check_split(ChargeRequest("r", 1_000, "USD", "cnon:x", split=SplitInstruction("s", 900)))
    with pytest.raises(InvalidInput) as err:
        square.check_split(ChargeRequest("r", 1_000, "USD", "cnon:x", split=SplitInstruction("s", 901)))
    assert err.value.code == "fee_too_high"
    anet = AuthorizeNetConnector(api_login_id="l", transaction_key="k")
    with pytest.raises(InvalidInput) as err:
        anet.check_split(ChargeRequest("r", 1_000, "USD", "card:4111111111111111:2030-12",
                                       split=SplitInstruction("v", 1)))
    assert err.value.code == "split_not_supported"
    with pytest.raises(InvalidInput):
        anet.check_split(ChargeRequest("r", 1_000, "EUR", "card:4111111111111111:2030-12"))


# ------------------------------------------------------------------------------------------ replay loop


def client(handler: Handler, attempts: int = 2) -> GatewayClient:
    return GatewayClient("gw-test", "https://gw.test", transport=httpx.MockTransport(handler),
                         mutation_attempts=attempts, replay_delay=0.0, timeout=2.0)


def sequence(*steps: Any) -> Handler:
    """Each call takes the next step: an int status, an (int, body) pair, or an exception to raise."""
    it = itertools.chain(steps, itertools.repeat(steps[-1]))

    def handler(request: httpx.Request) -> httpx.Response:
        step = next(it)
        if isinstance(step, Exception):
            raise step
        status, body = step if isinstance(step, tuple) else (step, {})
        return httpx.Response(status, json=body, headers={"Retry-After": "0"} if status == 429 else None)
    return handler


async def test_connect_errors_are_not_executed() -> None:
    sent = await client(sequence(httpx.ConnectError("refused"))).mutate("POST", "/x", idempotency_key="k")
    result = sent.failure()
    assert sent.response is None and not sent.maybe_executed and sent.attempts == 2
    assert result.outcome is Outcome.NOT_EXECUTED and result.retryable and result.raw_status == "not_sent"


async def test_a_5xx_then_a_connect_error_stays_unknown() -> None:
    sent = await client(sequence(500, httpx.ConnectError("refused"))).mutate("POST", "/x", idempotency_key="k")
    assert sent.maybe_executed and sent.failure().outcome is Outcome.UNKNOWN


async def test_read_timeouts_and_dropped_connections_are_unknown() -> None:
    for exc in (httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped")):
        sent = await client(sequence(exc), attempts=1).mutate("POST", "/x", idempotency_key="k")
        assert sent.failure().outcome is Outcome.UNKNOWN


async def test_429_is_retried_and_4xx_bodies_come_back() -> None:
    sent = await client(sequence(429, (200, {"ok": True}))).mutate("POST", "/x", idempotency_key="k")
    assert sent.response is not None and sent.response.status_code == 200 and not sent.maybe_executed
    sent = await client(sequence((400, {"error": "bad"}))).mutate("POST", "/x", idempotency_key="k")
    assert sent.response is not None and sent.response.status_code == 400 and sent.attempts == 1
    only_429 = await client(sequence(429)).mutate("POST", "/x", idempotency_key="k")
    assert only_429.failure().outcome is Outcome.NOT_EXECUTED and only_429.failure().raw_status == "rate_limited"
    with pytest.raises(ReauthRequired):
        await client(sequence(401)).mutate("POST", "/x", idempotency_key="k")


async def test_an_open_breaker_after_a_maybe_executed_attempt_is_still_unknown() -> None:
    c = client(sequence(503), attempts=3)

    def open_then_fail(request: httpx.Request) -> httpx.Response:
        c.breaker._open(time.monotonic())  # the breaker trips while this attempt is in flight
        return httpx.Response(503, json={})

    c._client._transport = httpx.MockTransport(open_then_fail)
    sent = await c.mutate("POST", "/x", idempotency_key="k")
    assert sent.maybe_executed and sent.failure().outcome is Outcome.UNKNOWN
    fresh = await c.mutate("POST", "/x", idempotency_key="k2")  # nothing sent at all: safe to fail over
    assert fresh.failure().outcome is Outcome.NOT_EXECUTED and fresh.failure().raw_status == "circuit_open"


async def test_reads_still_raise_on_4xx() -> None:
    from wedsync.connectors.errors import Fatal

    with pytest.raises(Fatal):
        await client(sequence((404, {}))).get_json("/missing")


# ------------------------------------------------------------------------------------ per-gateway tables

REQ = ChargeRequest("ref-1", 1_000, "USD", "pm_card_visa")


def _stripe(status: int, body: Any) -> StripeConnector:
    return StripeConnector(secret_key="sk_test_x", base_url="https://stripe.test", mutation_attempts=1,
                           transport=httpx.MockTransport(lambda r: httpx.Response(status, json=body)))


@pytest.mark.parametrize(("status", "body", "outcome", "code"), [
    (402, {"error": {"type": "card_error", "code": "card_declined", "decline_code": "do_not_honor"}},
     Outcome.DECLINED, "do_not_honor"),
    (400, {"error": {"type": "idempotency_error", "message": "Keys for idempotent requests..."}}, Outcome.UNKNOWN,
     None),
    (409, {"error": {"type": "invalid_request_error", "code": "idempotency_key_in_use"}}, Outcome.UNKNOWN,
     "idempotency_key_in_use"),
    (400, {"error": {"type": "invalid_request_error", "code": "parameter_missing"}}, Outcome.NOT_EXECUTED,
     "parameter_missing"),
    (404, {"error": {"type": "invalid_request_error", "code": "resource_missing"}}, Outcome.NOT_EXECUTED,
     "resource_missing"),
    (500, {"error": {"type": "api_error"}}, Outcome.UNKNOWN, None),
    (200, {"id": "pi_1", "object": "payment_intent", "status": "processing", "amount": 1000, "currency": "usd"},
     Outcome.UNKNOWN, None),
    (200, {"id": "pi_1", "object": "payment_intent", "status": "requires_capture", "amount": 1000,
           "currency": "usd"}, Outcome.SUCCEEDED, None),
])
async def test_stripe_classification(status: int, body: Any, outcome: Outcome, code: str | None) -> None:
    result = await _stripe(status, body).charge(REQ, "k")
    assert result.outcome is outcome and result.decline_code == code


async def test_stripe_garbled_success_body_is_unknown() -> None:
    conn = StripeConnector(secret_key="sk", base_url="https://stripe.test", mutation_attempts=1,
                           transport=httpx.MockTransport(lambda r: httpx.Response(200, content=b'{"id": "pi_')))
    assert (await conn.charge(REQ, "k")).outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(("status", "body", "outcome"), [
    (400, {"errors": [{"category": "PAYMENT_METHOD_ERROR", "code": "CVV_FAILURE"}],
           "payment": {"id": "p1", "status": "FAILED"}}, Outcome.DECLINED),
    (400, {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "IDEMPOTENCY_KEY_REUSED"}]}, Outcome.UNKNOWN),
    (400, {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "INVALID_FEES"}]}, Outcome.NOT_EXECUTED),
    (200, {"payment": {"id": "p1", "status": "PENDING", "amount_money": {"amount": 1000, "currency": "USD"}}},
     Outcome.UNKNOWN),
    (200, {"payment": {"id": "p1", "status": "CANCELED"}}, Outcome.DECLINED),
    (502, {"errors": [{"category": "API_ERROR", "code": "BAD_GATEWAY"}]}, Outcome.UNKNOWN),
])
async def test_square_classification(status: int, body: Any, outcome: Outcome) -> None:
    conn = SquareConnector(access_token="t", base_url="https://square.test", mutation_attempts=1,
                           transport=httpx.MockTransport(lambda r: httpx.Response(status, json=body)))
    assert (await conn.charge(ChargeRequest("r", 1_000, "USD", "cnon:x"), "k")).outcome is outcome


def _paypal(status: int, body: Any) -> PayPalConnector:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth2/token":
            return httpx.Response(200, json={"access_token": "A21AAtoken", "token_type": "Bearer",
                                             "expires_in": 32400})
        return httpx.Response(status, json=body)
    return PayPalConnector(client_id="c", client_secret="s", base_url="https://paypal.test", mutation_attempts=1,
                           transport=httpx.MockTransport(handler))


def _order(capture_status: str) -> dict[str, Any]:
    return {"id": "O1", "status": "COMPLETED", "purchase_units": [{"payments": {"captures": [
        {"id": "C1", "status": capture_status, "amount": {"currency_code": "USD", "value": "10.00"}}]}}]}


@pytest.mark.parametrize(("status", "body", "outcome"), [
    (422, {"name": "UNPROCESSABLE_ENTITY", "details": [{"issue": "INSTRUMENT_DECLINED"}]}, Outcome.DECLINED),
    (422, {"name": "UNPROCESSABLE_ENTITY", "details": [{"issue": "DUPLICATE_INVOICE_ID"}]}, Outcome.UNKNOWN),
    (422, {"name": "UNPROCESSABLE_ENTITY", "details": [{"issue": "INVALID_PLATFORM_FEES_AMOUNT"}]},
     Outcome.NOT_EXECUTED),
    (400, {"name": "INVALID_REQUEST", "details": [{"issue": "MISSING_REQUIRED_PARAMETER"}]}, Outcome.NOT_EXECUTED),
    (201, _order("COMPLETED"), Outcome.SUCCEEDED),
    (201, _order("PENDING"), Outcome.UNKNOWN),
    (201, _order("DECLINED"), Outcome.DECLINED),
    (201, {"id": "O1", "status": "PAYER_ACTION_REQUIRED", "purchase_units": [{}]}, Outcome.NOT_EXECUTED),
    (500, {"name": "INTERNAL_SERVER_ERROR"}, Outcome.UNKNOWN),
])
async def test_paypal_classification(status: int, body: Any, outcome: Outcome) -> None:
    result = await _paypal(status, body).charge(ChargeRequest("r", 1_000, "USD", "vault"), "k")
    assert result.outcome is outcome


async def test_paypal_rejected_client_credentials_need_reauth() -> None:
    conn = PayPalConnector(client_id="c", client_secret="s", base_url="https://paypal.test",
                           transport=httpx.MockTransport(lambda r: httpx.Response(401, json={
                               "error": "invalid_client"})))
    with pytest.raises(ReauthRequired):
        await conn.charge(ChargeRequest("r", 1_000, "USD", "vault"), "k")


def _anet(body: Any) -> AuthorizeNetConnector:
    import orjson

    return AuthorizeNetConnector(api_login_id="l", transaction_key="k", base_url="https://anet.test",
                                 mutation_attempts=1, transport=httpx.MockTransport(
                                     lambda r: httpx.Response(200, content=b"\xef\xbb\xbf" + orjson.dumps(body))))


def _tx(code: str, error: str | None = None, trans_id: str = "0") -> dict[str, Any]:
    tr: dict[str, Any] = {"responseCode": code, "transId": trans_id}
    if error:
        tr["errors"] = [{"errorCode": error, "errorText": "x"}]
    ok = code in ("1", "4")
    return {"transactionResponse": tr, "messages": {"resultCode": "Ok" if ok else "Error",
                                                    "message": [{"code": "I00001" if ok else "E00027"}]}}


@pytest.mark.parametrize(("body", "outcome"), [
    (_tx("1", trans_id="60001"), Outcome.SUCCEEDED),
    (_tx("2", "2", "60002"), Outcome.DECLINED),
    (_tx("3", "8"), Outcome.DECLINED),
    (_tx("3", "11"), Outcome.UNKNOWN),  # a duplicate without the original's id: look it up
    (_tx("3", "5"), Outcome.NOT_EXECUTED),
    (_tx("4", trans_id="60003"), Outcome.UNKNOWN),
    ({"messages": {"resultCode": "Error", "message": [{"code": "E00001", "text": "error"}]}}, Outcome.UNKNOWN),
    ({"messages": {"resultCode": "Error", "message": [{"code": "E00003", "text": "bad"}]}}, Outcome.NOT_EXECUTED),
])
async def test_authorize_net_classification(body: Any, outcome: Outcome) -> None:
    req = ChargeRequest("r", 1_000, "USD", "card:4111111111111111:2030-12")
    assert (await _anet(body).charge(req, "k")).outcome is outcome


async def test_authorize_net_bad_credentials_need_reauth() -> None:
    body = {"messages": {"resultCode": "Error", "message": [{"code": "E00007", "text": "auth failed"}]}}
    with pytest.raises(ReauthRequired):
        await _anet(body).charge(ChargeRequest("r", 1_000, "USD", "card:4111111111111111:2030-12"), "k")


def test_authorize_net_transaction_request_keeps_xsd_order() -> None:
    from wedsync.sandbox.authorize_net import schema, to_xml

    conn = AuthorizeNetConnector(api_login_id="l", transaction_key="k")
    tx = conn.transaction_request(ChargeRequest("a-reference-longer-than-twenty-chars", 1_050, "USD",
                                                "card:4111111111111111:2030-12:123", "desc", "a@example.com"))
    assert list(tx) == ["transactionType", "amount", "payment", "order", "customer", "transactionSettings"]
    assert len(tx["order"]["invoiceNumber"]) == 20 and tx["amount"] == "10.50"
    xsd = schema()
    if xsd is not None:
        xsd.validate(to_xml({"createTransactionRequest": {"merchantAuthentication": {"name": "l",
                                                                                      "transactionKey": "k"},
                                                          "refId": "r", "transactionRequest": tx}}))


async def test_a_failed_preparatory_read_means_nothing_was_sent() -> None:
    posts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(request.url.path)
            return httpx.Response(200, json={"refund": {"id": "r1", "status": "COMPLETED"}})
        return httpx.Response(503, json={"errors": [{"category": "API_ERROR", "code": "SERVICE_UNAVAILABLE"}]})

    conn = SquareConnector(access_token="t", base_url="https://square.test", transport=httpx.MockTransport(handler))
    conn.client.retry = http_layer.RetryPolicy(max_attempts=1)
    result = await conn.refund("p1", 500, "USD", "k", reverse_split=True)
    assert result.outcome is Outcome.NOT_EXECUTED and result.raw_status == "preflight_failed" and result.retryable
    assert posts == []
