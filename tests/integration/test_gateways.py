"""The four gateway connectors against their sandboxes in-process (httpx.ASGITransport): charges, declines,
unknown-after-execution resolved by lookup without a second charge, refunds with split reversal, onboarding,
settlements and webhook parsing. Ground truth comes from the sandbox side (``/_sandbox/{slug}/records``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import SPECS
from wedsync.connectors import http as http_layer
from wedsync.connectors.payments.authorize_net import AuthorizeNetConnector, invoice_number
from wedsync.connectors.payments.base import (
    ChargeRequest,
    DisputeEvidence,
    EventKind,
    GatewayConnector,
    Outcome,
    SplitInstruction,
)
from wedsync.connectors.payments.paypal import PayPalConnector
from wedsync.connectors.payments.square import SquareConnector, square_key
from wedsync.connectors.payments.stripe import StripeConnector
from wedsync.connectors.webhooks import get_scheme
from wedsync.sandbox.app import create_sandbox_app

SLUGS = ("stripe", "square", "paypal", "authorize-net")


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    """Breakers are process-wide per provider: injected timeouts here must not leak into other tests."""
    for slug in SLUGS:
        http_layer._breakers.pop(slug, None)
    yield
    for slug in SLUGS:
        http_layer._breakers.pop(slug, None)


def payment_sandbox(seed: int = 11) -> FastAPI:
    """The sandbox app with only the four gateway emulators (mounted exactly as ``create_sandbox_app`` does)."""
    from wedsync.sandbox import authorize_net, paypal, square, stripe
    from wedsync.sandbox.app import admin_router
    from wedsync.sandbox.faults import FaultMiddleware

    emulators: dict[str, Any] = {m.SLUG: m.create_emulator(seed=seed) for m in (stripe, square, paypal, authorize_net)}
    app = FastAPI()
    app.state.emulators = emulators
    app.include_router(admin_router(emulators))
    for em in emulators.values():
        app.mount(em.prefix, FaultMiddleware(em.app, em.faults, em.error_body, em.quota_key))
    return app


@pytest.fixture
def sandbox() -> FastAPI:
    return payment_sandbox()


@pytest.fixture
async def admin(sandbox: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sandbox.test") as c:
        yield c


async def records(admin: httpx.AsyncClient, slug: str, collection: str) -> list[dict[str, Any]]:
    r = await admin.get(f"/_sandbox/{slug}/records/{collection}")
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


async def succeeded_charges(admin: httpx.AsyncClient, slug: str, reference: str) -> int:
    return sum(1 for r in await records(admin, slug, "charges")
               if r["reference"] == reference and r["status"] in ("succeeded", "authorized"))


def connector_for(sandbox: FastAPI, slug: str, *, timeout: float = 5.0) -> GatewayConnector:
    transport = httpx.ASGITransport(app=sandbox)
    if slug == "stripe":
        from wedsync.sandbox.stripe import DEFAULT_SECRET_KEY

        return StripeConnector(secret_key=DEFAULT_SECRET_KEY, base_url="http://sandbox.test/stripe",
                               transport=transport, timeout=timeout)
    if slug == "square":
        from wedsync.sandbox.square import DEFAULT_ACCESS_TOKEN

        return SquareConnector(access_token=DEFAULT_ACCESS_TOKEN, base_url="http://sandbox.test/square",
                               transport=transport, timeout=timeout)
    if slug == "paypal":
        from wedsync.sandbox.paypal import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

        return PayPalConnector(client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                               base_url="http://sandbox.test/paypal", transport=transport, timeout=timeout)
    if slug == "authorize-net":
        from wedsync.sandbox.authorize_net import DEFAULT_LOGIN, DEFAULT_TRANSACTION_KEY

        return AuthorizeNetConnector(api_login_id=DEFAULT_LOGIN, transaction_key=DEFAULT_TRANSACTION_KEY,
                                     base_url="http://sandbox.test/authorize-net", transport=transport,
                                     timeout=timeout)
    raise AssertionError(slug)


# ------------------------------------------------------------------------------------------------- Stripe


async def stripe_account(conn: StripeConnector) -> str:
    step = await conn.onboard("vendor-1", "https://hub.example/return", "https://hub.example/refresh")
    assert step.kind == "redirect" and step.url and step.url.startswith("https://connect.stripe.com/")
    assert step.account_ref and step.account_ref.startswith("acct_")
    assert step.expires_at is not None and step.expires_at > datetime.now(UTC)
    return step.account_ref


async def test_stripe_destination_charge_refund_reverses_transfer(sandbox: FastAPI,
                                                                  admin: httpx.AsyncClient) -> None:
    conn = connector_for(sandbox, "stripe")
    assert isinstance(conn, StripeConnector)
    acct = await stripe_account(conn)
    req = ChargeRequest(reference="pay-1", amount_minor=10_000, currency="USD", payment_method="pm_card_visa",
                        description="Catering deposit", customer_email="couple@example.com",
                        split=SplitInstruction(destination_account=acct, application_fee_minor=1_500))
    result = await conn.charge(req, "attempt-1")
    assert result.outcome is Outcome.SUCCEEDED and result.native_split
    assert result.gateway_ref and result.gateway_ref.startswith("pi_") and result.amount_minor == 10_000
    assert result.extra["charge_id"].startswith("ch_")
    again = await conn.charge(req, "attempt-1")  # replay: the stored response, no second charge
    assert again.gateway_ref == result.gateway_ref
    assert await succeeded_charges(admin, "stripe", "pay-1") == 1
    (transfer,) = await records(admin, "stripe", "transfers")
    assert transfer["amount_minor"] == 8_500 and transfer["object"]["destination"] == acct

    refund = await conn.refund(result.gateway_ref, 4_000, "USD", "refund-1", reverse_split=True)
    assert refund.outcome is Outcome.SUCCEEDED and refund.gateway_ref and refund.gateway_ref.startswith("re_")
    assert refund.extra["transfer_reversal"].startswith("trr_")
    (transfer,) = await records(admin, "stripe", "transfers")
    assert transfer["object"]["amount_reversed"] == 3_400  # 8_500 * 4_000 / 10_000: proportional
    too_much = await conn.refund(result.gateway_ref, 7_000, "USD", "refund-2", reverse_split=True)
    assert too_much.outcome is Outcome.NOT_EXECUTED and too_much.http_status == 400

    # same key, different parameters: Stripe's idempotency_error; the key has a history, so unknown
    other = await conn.charge(ChargeRequest(reference="pay-1", amount_minor=9_999, currency="USD",
                                            payment_method="pm_card_visa"), "attempt-1")
    assert other.outcome is Outcome.UNKNOWN and other.raw_status == "idempotency_error"
    await conn.aclose()


async def test_stripe_decline_and_validation(sandbox: FastAPI, admin: httpx.AsyncClient) -> None:
    conn = connector_for(sandbox, "stripe")
    declined = await conn.charge(ChargeRequest(reference="pay-2", amount_minor=5_000, currency="USD",
                                               payment_method="pm_card_chargeDeclinedInsufficientFunds"), "a-2")
    assert declined.outcome is Outcome.DECLINED and declined.decline_code == "insufficient_funds"
    assert declined.http_status == 402
    assert await succeeded_charges(admin, "stripe", "pay-2") == 0
    bad_dest = await conn.charge(ChargeRequest(
        reference="pay-3", amount_minor=5_000, currency="USD", payment_method="pm_card_visa",
        split=SplitInstruction(destination_account="acct_missing", application_fee_minor=10)), "a-3")
    assert bad_dest.outcome is Outcome.NOT_EXECUTED and bad_dest.decline_code == "resource_missing"
    from wedsync.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        await conn.charge(ChargeRequest(reference="pay-4", amount_minor=0, currency="USD",
                                        payment_method="pm_card_visa"), "a-4")
    assert err.value.code == "invalid_amount"
    with pytest.raises(InvalidInput):
        await conn.charge(ChargeRequest(reference="pay-4", amount_minor=10, currency="XYZ",
                                        payment_method="pm_card_visa"), "a-4")
    await conn.aclose()


async def test_stripe_timeout_after_execution_resolved_by_lookup(sandbox: FastAPI,
                                                                admin: httpx.AsyncClient) -> None:
    conn = StripeConnector(secret_key="sk_test_wedsync_platform", base_url="http://sandbox.test/stripe",
                           transport=httpx.ASGITransport(app=sandbox), timeout=0.2, mutation_attempts=1)
    r = await admin.post("/_sandbox/stripe/mutate", json={"action": "after_commit", "rate": 1.0,
                                                           "mode": "stall", "stall_seconds": 0.5})
    assert r.status_code == 200
    req = ChargeRequest(reference="pay-5", amount_minor=2_500, currency="USD", payment_method="pm_card_visa")
    lost = await conn.charge(req, "attempt-5")
    assert lost.outcome is Outcome.UNKNOWN
    assert await succeeded_charges(admin, "stripe", "pay-5") == 1  # it did execute
    await admin.post("/_sandbox/stripe/mutate", json={"action": "after_commit", "rate": 0.0})
    found = await conn.lookup("pay-5", "attempt-5")
    assert found.outcome is Outcome.SUCCEEDED and found.gateway_ref and found.amount_minor == 2_500
    replayed = await conn.lookup("pay-5", "attempt-5", request=req)
    assert replayed.gateway_ref == found.gateway_ref
    assert await succeeded_charges(admin, "stripe", "pay-5") == 1
    nothing = await conn.lookup("pay-6", "attempt-6")
    assert nothing.outcome is Outcome.UNKNOWN  # search absence is not proof; no request to replay
    # a 5xx after commit, with our own replay of the same key: the replay returns the stored charge
    await admin.post("/_sandbox/stripe/mutate", json={"action": "after_commit", "rate": 1.0, "mode": "error"})
    conn2 = StripeConnector(secret_key="sk_test_wedsync_platform", base_url="http://sandbox.test/stripe",
                            transport=httpx.ASGITransport(app=sandbox), timeout=2, mutation_attempts=2)
    req7 = ChargeRequest(reference="pay-7", amount_minor=700, currency="USD", payment_method="pm_card_visa")
    ok = await conn2.charge(req7, "attempt-7")
    assert ok.outcome is Outcome.SUCCEEDED
    assert await succeeded_charges(admin, "stripe", "pay-7") == 1
    await conn.aclose()
    await conn2.aclose()


async def test_stripe_dropped_connection_after_execution_is_unknown_then_found(
        sandbox: FastAPI, admin: httpx.AsyncClient) -> None:
    """The generic fault middleware's truncation runs the handler first: the charge exists, the answer is lost."""
    conn = StripeConnector(secret_key="sk_test_wedsync_platform", base_url="http://sandbox.test/stripe",
                           transport=httpx.ASGITransport(app=sandbox), mutation_attempts=1)
    r = await admin.put("/_sandbox/stripe/faults", json={"truncated_rate": 1.0, "truncate_mode": "drop-connection"})
    assert r.status_code == 200
    lost = await conn.charge(ChargeRequest(reference="pay-drop", amount_minor=1_234, currency="USD",
                                           payment_method="pm_card_visa"), "attempt-drop")
    assert lost.outcome is Outcome.UNKNOWN
    await admin.put("/_sandbox/stripe/faults", json={})
    found = await conn.lookup("pay-drop", "attempt-drop")
    assert found.outcome is Outcome.SUCCEEDED and await succeeded_charges(admin, "stripe", "pay-drop") == 1
    await admin.put("/_sandbox/stripe/faults", json={"error_rate": 1.0, "error_statuses": [503]})
    outage = await conn.charge(ChargeRequest(reference="pay-503", amount_minor=99, currency="USD",
                                             payment_method="pm_card_visa"), "attempt-503")
    assert outage.outcome is Outcome.UNKNOWN  # a 5xx may have executed: never assumed not charged
    assert await succeeded_charges(admin, "stripe", "pay-503") == 0
    await conn.aclose()


async def test_stripe_dispute_webhook_settlements_and_evidence(sandbox: FastAPI,
                                                               admin: httpx.AsyncClient) -> None:
    conn = connector_for(sandbox, "stripe")
    assert isinstance(conn, StripeConnector)
    acct = await stripe_account(conn)
    since = datetime.now(UTC) - timedelta(minutes=1)
    res = await conn.charge(ChargeRequest(
        reference="pay-8", amount_minor=20_000, currency="USD", payment_method="pm_card_createDispute",
        split=SplitInstruction(destination_account=acct, application_fee_minor=2_000)), "attempt-8")
    assert res.outcome is Outcome.SUCCEEDED
    events = [e["object"] for e in await records(admin, "stripe", "events")]
    dispute_event = next(e for e in events if e["type"] == "charge.dispute.created")
    raw = json.dumps(dispute_event).encode()
    headers = {"Stripe-Signature": "ignored"}
    event = conn.parse_event(raw, headers)
    assert event.kind is EventKind.DISPUTE_OPENED and event.dispute is not None
    assert event.gateway_ref == res.gateway_ref and event.dispute.amount_minor == 20_000
    assert event.dispute.evidence_due_by and event.dispute.evidence_due_by > datetime.now(UTC)
    assert event.reference is None  # disputes carry no metadata; match on gateway_ref
    sub = await conn.submit_dispute_evidence(event.dispute.dispute_ref, DisputeEvidence(
        explanation="Catering delivered as contracted", customer_name="A. Couple"))
    assert sub.outcome is Outcome.SUCCEEDED and sub.raw_status == "under_review"
    closed = await admin.post("/_sandbox/stripe/mutate", json={"action": "close_dispute",
                                                               "dispute": event.dispute.dispute_ref,
                                                               "outcome": "won"})
    assert closed.status_code == 200
    won = next(e for e in [e["object"] for e in await records(admin, "stripe", "events")]
               if e["type"] == "charge.dispute.closed")
    assert conn.parse_event(json.dumps(won).encode(), {}).kind is EventKind.DISPUTE_WON
    plain = await conn.charge(ChargeRequest(reference="pay-8b", amount_minor=50_000, currency="USD",
                                            payment_method="pm_card_visa"), "attempt-8b")
    assert plain.outcome is Outcome.SUCCEEDED and not plain.native_split
    await admin.post("/_sandbox/stripe/mutate", json={"action": "payout"})
    items = await conn.settlements(since, datetime.now(UTC) + timedelta(minutes=1))
    kinds = [i.kind for i in items]
    assert {"charge", "transfer", "dispute", "payout"} <= set(kinds)
    charge_item = next(i for i in items if i.kind == "charge" and i.source_ref == res.gateway_ref)
    assert charge_item.reference == "pay-8"
    assert charge_item.gross_minor == 20_000 and charge_item.fee_minor == 610
    assert charge_item.net_minor == charge_item.gross_minor - charge_item.fee_minor
    assert sum(i.net_minor for i in items) == 0  # everything available was paid out
    await conn.aclose()


async def test_stripe_webhook_delivery_is_signed_with_the_real_scheme(sandbox: FastAPI,
                                                                      admin: httpx.AsyncClient) -> None:
    emulator = sandbox.state.emulators["stripe"]
    got: list[tuple[bytes, dict[str, str]]] = []
    emulator.webhooks.send = lambda url, body, headers=None: got.append((body, dict(headers or {})))
    await admin.post("/_sandbox/stripe/mutate", json={"action": "webhook", "url": "https://hub.example/wh",
                                                      "secret": "whsec_test"})
    conn = connector_for(sandbox, "stripe")
    await conn.charge(ChargeRequest(reference="pay-9", amount_minor=100, currency="USD",
                                    payment_method="pm_card_visa"), "attempt-9")
    body, headers = got[-1]
    verified = get_scheme("stripe").verify(body, headers, "whsec_test")
    assert verified.event_type == "payment_intent.succeeded"
    event = conn.parse_event(body, headers)
    assert event.kind is EventKind.PAYMENT_SUCCEEDED and event.reference == "pay-9"
    await conn.aclose()


# ------------------------------------------------------------------------------------------------- Square


async def test_square_app_fee_charge_refund_and_limits(sandbox: FastAPI, admin: httpx.AsyncClient) -> None:
    conn = connector_for(sandbox, "square")
    long_key = "attempt-" + "x" * 80
    assert len(square_key(long_key)) == 45 and square_key(long_key) == square_key(long_key)
    req = ChargeRequest(reference="sq-pay-1", amount_minor=10_000, currency="USD",
                        payment_method="cnon:card-nonce-ok", description="Deposit",
                        split=SplitInstruction(destination_account="seller", application_fee_minor=1_000))
    res = await conn.charge(req, long_key)
    assert res.outcome is Outcome.SUCCEEDED and res.native_split and res.fee_minor == 320
    again = await conn.charge(req, long_key)
    assert again.gateway_ref == res.gateway_ref
    assert await succeeded_charges(admin, "square", "sq-pay-1") == 1
    assert res.gateway_ref
    refund = await conn.refund(res.gateway_ref, 2_500, "USD", "refund-sq-1", reverse_split=True)
    assert refund.outcome is Outcome.SUCCEEDED and refund.extra["app_fee_refunded"] == "250"
    over = await conn.refund(res.gateway_ref, 9_000, "USD", "refund-sq-2", reverse_split=False)
    assert over.outcome is Outcome.NOT_EXECUTED and over.decline_code == "REFUND_AMOUNT_INVALID"
    from wedsync.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:  # Square caps app_fee_money at 90 %
        await conn.charge(ChargeRequest(reference="sq-pay-2", amount_minor=1_000, currency="USD",
                                        payment_method="cnon:card-nonce-ok",
                                        split=SplitInstruction("seller", 950)), "a-sq-2")
    assert err.value.code == "fee_too_high"
    declined = await conn.charge(ChargeRequest(reference="sq-pay-3", amount_minor=1_000, currency="USD",
                                               payment_method="cnon:card-nonce-declined"), "a-sq-3")
    assert declined.outcome is Outcome.DECLINED and declined.decline_code == "GENERIC_DECLINE"
    assert declined.gateway_ref  # Square returns the FAILED payment with the error
    reused = await conn.charge(ChargeRequest(reference="sq-pay-3", amount_minor=1_001, currency="USD",
                                             payment_method="cnon:card-nonce-ok"), "a-sq-3")
    assert reused.outcome is Outcome.UNKNOWN and reused.decline_code == "IDEMPOTENCY_KEY_REUSED"
    await conn.aclose()


async def test_square_unknown_after_execution_resolved_by_lookup(sandbox: FastAPI,
                                                                 admin: httpx.AsyncClient) -> None:
    from wedsync.sandbox.square import DEFAULT_ACCESS_TOKEN

    conn = SquareConnector(access_token=DEFAULT_ACCESS_TOKEN, base_url="http://sandbox.test/square",
                           transport=httpx.ASGITransport(app=sandbox), timeout=0.2, mutation_attempts=1)
    await admin.post("/_sandbox/square/mutate", json={"action": "after_commit", "rate": 1.0, "mode": "stall",
                                                      "stall_seconds": 0.5})
    req = ChargeRequest(reference="sq-pay-4", amount_minor=4_200, currency="USD", payment_method="cnon:ok")
    lost = await conn.charge(req, "attempt-sq-4")
    assert lost.outcome is Outcome.UNKNOWN
    await admin.post("/_sandbox/square/mutate", json={"action": "after_commit", "rate": 0.0})
    found = await conn.lookup("sq-pay-4", "attempt-sq-4")
    assert found.outcome is Outcome.SUCCEEDED and found.amount_minor == 4_200
    replay = await conn.lookup("sq-pay-5", "attempt-sq-5", request=ChargeRequest(
        reference="sq-pay-5", amount_minor=100, currency="USD", payment_method="cnon:ok"))
    assert replay.outcome is Outcome.SUCCEEDED  # never executed before: the replay executes it once
    assert await succeeded_charges(admin, "square", "sq-pay-4") == 1
    assert await succeeded_charges(admin, "square", "sq-pay-5") == 1
    await conn.aclose()


async def test_square_dispute_payouts_and_signed_webhooks(sandbox: FastAPI, admin: httpx.AsyncClient) -> None:
    emulator = sandbox.state.emulators["square"]
    got: list[tuple[bytes, dict[str, str]]] = []
    emulator.webhooks.send = lambda url, body, headers=None: got.append((body, dict(headers or {})))
    url = "https://hub.example/webhooks/square/c1"
    await admin.post("/_sandbox/square/mutate", json={"action": "webhook", "url": url, "secret": "sq-key"})
    conn = connector_for(sandbox, "square")
    since = datetime.now(UTC) - timedelta(minutes=1)
    res = await conn.charge(ChargeRequest(reference="sq-pay-6", amount_minor=30_000, currency="USD",
                                          payment_method="cnon:card-nonce-dispute",
                                          split=SplitInstruction("seller", 3_000)), "attempt-sq-6")
    assert res.outcome is Outcome.SUCCEEDED
    verified = [get_scheme("square").verify(body, headers, "sq-key", url=url) for body, headers in got]
    assert [v.event_type for v in verified] == ["payment.updated", "dispute.created"]
    event = conn.parse_event(got[-1][0], got[-1][1])
    assert event.kind is EventKind.DISPUTE_OPENED and event.dispute and event.gateway_ref == res.gateway_ref
    assert event.dispute.amount_minor == 30_000 and event.dispute.evidence_due_by
    paid = conn.parse_event(got[0][0], got[0][1])
    assert paid.kind is EventKind.PAYMENT_SUCCEEDED and paid.reference == "sq-pay-6"
    sub = await conn.submit_dispute_evidence(event.dispute.dispute_ref, DisputeEvidence("Delivered in full"))
    assert sub.outcome is Outcome.SUCCEEDED and sub.raw_status == "PROCESSING"
    await admin.post("/_sandbox/square/mutate", json={"action": "close_dispute",
                                                      "dispute": event.dispute.dispute_ref, "outcome": "lost"})
    assert conn.parse_event(got[-1][0], got[-1][1]).kind is EventKind.DISPUTE_LOST
    await admin.post("/_sandbox/square/mutate", json={"action": "payout"})
    items = await conn.settlements(since, datetime.now(UTC) + timedelta(minutes=1))
    kinds = sorted(i.kind for i in items)
    assert kinds == ["charge", "dispute", "fee", "payout"]
    charge = next(i for i in items if i.kind == "charge")
    assert charge.source_ref == res.gateway_ref and charge.fee_minor == 900 and charge.gross_minor == 30_000
    assert sum(i.net_minor for i in items) == 0
    await conn.aclose()


# ------------------------------------------------------------------------------------------------- PayPal


async def paypal_merchant(conn: GatewayConnector) -> str:
    from wedsync.sandbox.paypal import PayPalEmulator

    step = await conn.onboard("vendor-pp", "https://hub.example/return", "https://hub.example/refresh")
    assert step.kind == "redirect" and step.url and "referralToken=" in step.url and step.account_ref
    return PayPalEmulator.merchant_for("vendor-pp")


async def test_paypal_platform_fee_order_refund_and_duplicates(sandbox: FastAPI, admin: httpx.AsyncClient) -> None:
    conn = connector_for(sandbox, "paypal")
    merchant = await paypal_merchant(conn)
    req = ChargeRequest(reference="pp-pay-1", amount_minor=12_345, currency="USD", payment_method="vault-card-ok",
                        description="Catering", split=SplitInstruction(merchant, 1_235))
    res = await conn.charge(req, "attempt-pp-1")
    assert res.outcome is Outcome.SUCCEEDED and res.native_split and res.amount_minor == 12_345
    assert res.gateway_ref and res.extra["order_id"] and res.fee_minor == 480
    again = await conn.charge(req, "attempt-pp-1")  # same PayPal-Request-Id: the stored order
    assert again.gateway_ref == res.gateway_ref
    dup = await conn.charge(req, "attempt-pp-1b")  # new request id, same invoice: PayPal refuses
    assert dup.outcome is Outcome.UNKNOWN and dup.decline_code == "DUPLICATE_INVOICE_ID"
    assert await succeeded_charges(admin, "paypal", "pp-pay-1") == 1
    refund = await conn.refund(res.gateway_ref, 2_000, "USD", "refund-pp-1", reverse_split=True)
    assert refund.outcome is Outcome.SUCCEEDED and refund.extra["platform_fee_refunded"] == "200"
    over = await conn.refund(res.gateway_ref, 20_000, "USD", "refund-pp-2", reverse_split=False)
    assert over.outcome is Outcome.NOT_EXECUTED and over.decline_code == "REFUND_AMOUNT_EXCEEDED"
    declined = await conn.charge(ChargeRequest(reference="pp-pay-2", amount_minor=500, currency="USD",
                                               payment_method="vault-card-declined"), "attempt-pp-2")
    assert declined.outcome is Outcome.DECLINED and declined.decline_code == "0500"
    bad_payee = await conn.charge(ChargeRequest(reference="pp-pay-3", amount_minor=500, currency="USD",
                                                payment_method="vault-card-ok",
                                                split=SplitInstruction("ZZZZZZZZZZZZZ", 10)), "attempt-pp-3")
    assert bad_payee.outcome is Outcome.NOT_EXECUTED and bad_payee.decline_code == "PAYEE_ACCOUNT_INVALID"
    await conn.aclose()


async def test_paypal_unknown_after_execution_resolved_by_replay(sandbox: FastAPI,
                                                                admin: httpx.AsyncClient) -> None:
    from wedsync.sandbox.paypal import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    conn = PayPalConnector(client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                           base_url="http://sandbox.test/paypal", transport=httpx.ASGITransport(app=sandbox),
                           timeout=0.3, mutation_attempts=1)
    assert (await conn.charge(ChargeRequest(reference="pp-warm", amount_minor=100, currency="USD",
                                            payment_method="vault-ok"), "warm")).charged  # token fetched
    await admin.post("/_sandbox/paypal/mutate", json={"action": "after_commit", "rate": 1.0, "mode": "stall",
                                                      "stall_seconds": 0.6})
    req = ChargeRequest(reference="pp-pay-4", amount_minor=9_900, currency="USD", payment_method="vault-ok")
    lost = await conn.charge(req, "attempt-pp-4")
    assert lost.outcome is Outcome.UNKNOWN
    await admin.post("/_sandbox/paypal/mutate", json={"action": "after_commit", "rate": 0.0})
    found = await conn.lookup("pp-pay-4", "attempt-pp-4", request=req)
    assert found.outcome is Outcome.SUCCEEDED and found.amount_minor == 9_900
    by_report = await conn.lookup("pp-pay-4", "attempt-pp-4")
    assert by_report.outcome is Outcome.SUCCEEDED and by_report.gateway_ref == found.gateway_ref
    assert await succeeded_charges(admin, "paypal", "pp-pay-4") == 1
    await conn.aclose()


async def test_paypal_dispute_webhooks_reporting_and_evidence(sandbox: FastAPI, admin: httpx.AsyncClient) -> None:
    from wedsync.connectors.webhooks import PayPalScheme

    emulator = sandbox.state.emulators["paypal"]
    got: list[tuple[bytes, dict[str, str]]] = []
    emulator.webhooks.send = lambda url, body, headers=None: got.append((body, dict(headers or {})))
    await admin.post("/_sandbox/paypal/mutate", json={"action": "webhook", "url": "https://hub.example/pp",
                                                      "secret": "WH-ID-1"})
    conn = connector_for(sandbox, "paypal")
    assert isinstance(conn, PayPalConnector)
    conn.webhook_id = "WH-ID-1"
    since = datetime.now(UTC) - timedelta(minutes=1)
    res = await conn.charge(ChargeRequest(reference="pp-pay-5", amount_minor=40_000, currency="USD",
                                          payment_method="vault-dispute"), "attempt-pp-5")
    assert res.outcome is Outcome.SUCCEEDED
    scheme = PayPalScheme(cert_loader=emulator.cert_loader)
    types = [scheme.verify(body, headers, "WH-ID-1").event_type for body, headers in got]
    assert types == ["PAYMENT.CAPTURE.COMPLETED", "CUSTOMER.DISPUTE.CREATED"]
    assert await conn.verify_webhook_signature(*got[-1])
    assert not await conn.verify_webhook_signature(got[-1][0].replace(b"400.00", b"400.01"), got[-1][1])
    event = conn.parse_event(*got[-1])
    assert event.kind is EventKind.DISPUTE_OPENED and event.dispute and event.gateway_ref == res.gateway_ref
    assert event.reference == "pp-pay-5" and event.dispute.amount_minor == 40_000
    assert event.dispute.evidence_due_by and event.dispute.evidence_due_by > datetime.now(UTC)
    paid = conn.parse_event(*got[0])
    assert paid.kind is EventKind.PAYMENT_SUCCEEDED and paid.reference == "pp-pay-5"
    sub = await conn.submit_dispute_evidence(event.dispute.dispute_ref, DisputeEvidence("Delivered"))
    assert sub.outcome is Outcome.SUCCEEDED
    await admin.post("/_sandbox/paypal/mutate", json={"action": "close_dispute",
                                                      "dispute": event.dispute.dispute_ref, "outcome": "won"})
    assert conn.parse_event(*got[-1]).kind is EventKind.DISPUTE_WON
    await admin.post("/_sandbox/paypal/mutate", json={"action": "payout"})
    items = await conn.settlements(since, datetime.now(UTC) + timedelta(minutes=1))
    assert sorted(i.kind for i in items) == ["charge", "dispute", "dispute", "payout"]
    charge = next(i for i in items if i.kind == "charge")
    assert charge.source_ref == res.gateway_ref and charge.reference == "pp-pay-5" and charge.fee_minor == 1_445
    assert sum(i.net_minor for i in items) == 0
    await conn.aclose()


# ------------------------------------------------------------------------------------------ Authorize.net

CARD_OK = "card:4111111111111111:2030-12:123"


async def test_authorize_net_charge_duplicate_window_refund_and_batches(sandbox: FastAPI,
                                                                      admin: httpx.AsyncClient) -> None:
    conn = connector_for(sandbox, "authorize-net")
    step = await conn.onboard("vendor-an", "https://hub.example/r", "https://hub.example/f")
    assert step.kind == "credentials" and "transaction_key" in step.fields
    from wedsync.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:  # no native split at Authorize.net: the ledger does it
        await conn.charge(ChargeRequest(reference="an-0", amount_minor=100, currency="USD", payment_method=CARD_OK,
                                        split=SplitInstruction("vendor", 10)), "a-an-0")
    assert err.value.code == "split_not_supported"
    reference = "wedding-payment-with-a-long-reference-0001"
    req = ChargeRequest(reference=reference, amount_minor=15_050, currency="USD", payment_method=CARD_OK,
                        description="Catering deposit", customer_email="couple@example.com")
    since = datetime.now(UTC) - timedelta(minutes=1)
    res = await conn.charge(req, "attempt-an-1")
    assert res.outcome is Outcome.SUCCEEDED and not res.native_split and res.gateway_ref
    again = await conn.charge(req, "attempt-an-1b")  # within duplicateWindow: the original comes back
    assert again.outcome is Outcome.SUCCEEDED and again.gateway_ref == res.gateway_ref
    charges = [r for r in await records(admin, "authorize-net", "charges") if r["status"] == "succeeded"]
    assert len(charges) == 1 and charges[0]["reference"] == invoice_number(reference)
    early = await conn.refund(res.gateway_ref, 5_000, "USD", "refund-an-0", reverse_split=False)
    assert early.outcome is Outcome.NOT_EXECUTED and early.decline_code == "refund_before_settlement"
    await admin.post("/_sandbox/authorize-net/mutate", json={"action": "payout"})
    refund = await conn.refund(res.gateway_ref, 5_000, "USD", "refund-an-1", reverse_split=True)
    assert refund.outcome is Outcome.SUCCEEDED and not refund.native_split and refund.amount_minor == 5_000
    again_refund = await conn.refund(res.gateway_ref, 5_000, "USD", "refund-an-1", reverse_split=True)
    assert again_refund.gateway_ref == refund.gateway_ref  # same refund key: duplicate window, no second refund
    declined = await conn.charge(ChargeRequest(reference="an-2", amount_minor=700, currency="USD",
                                               payment_method="card:4000300011110002:2030-12"), "a-an-2")
    assert declined.outcome is Outcome.DECLINED and declined.decline_code == "2"
    expired = await conn.charge(ChargeRequest(reference="an-3", amount_minor=700, currency="USD",
                                              payment_method="card:4000300011110008:2030-12"), "a-an-3")
    assert expired.outcome is Outcome.DECLINED and expired.decline_code == "8"
    review = await conn.charge(ChargeRequest(reference="an-4", amount_minor=700, currency="USD",
                                             payment_method="card:4000300011110004:2030-12"), "a-an-4")
    assert review.outcome is Outcome.UNKNOWN and review.raw_status == "4"
    await admin.post("/_sandbox/authorize-net/mutate", json={"action": "open_dispute", "charge": res.gateway_ref})
    await admin.post("/_sandbox/authorize-net/mutate", json={"action": "payout"})
    items = await conn.settlements(since, datetime.now(UTC) + timedelta(minutes=1))
    assert sorted(i.kind for i in items) == ["charge", "dispute", "payout", "payout", "refund"]
    charge = next(i for i in items if i.kind == "charge")
    assert charge.source_ref == res.gateway_ref and charge.gross_minor == 15_050
    assert charge.reference == invoice_number(reference)
    assert sum(i.net_minor for i in items) == 0
    await conn.aclose()


async def test_authorize_net_unknown_after_execution_resolved(sandbox: FastAPI, admin: httpx.AsyncClient) -> None:
    from wedsync.sandbox.authorize_net import DEFAULT_LOGIN, DEFAULT_TRANSACTION_KEY

    conn = AuthorizeNetConnector(api_login_id=DEFAULT_LOGIN, transaction_key=DEFAULT_TRANSACTION_KEY,
                                 base_url="http://sandbox.test/authorize-net",
                                 transport=httpx.ASGITransport(app=sandbox), timeout=0.3, mutation_attempts=1)
    await admin.post("/_sandbox/authorize-net/mutate", json={"action": "after_commit", "rate": 1.0,
                                                             "mode": "stall", "stall_seconds": 0.6})
    req = ChargeRequest(reference="an-5", amount_minor=3_000, currency="USD", payment_method=CARD_OK)
    lost = await conn.charge(req, "attempt-an-5")
    assert lost.outcome is Outcome.UNKNOWN
    await admin.post("/_sandbox/authorize-net/mutate", json={"action": "after_commit", "rate": 0.0})
    found = await conn.lookup("an-5", "attempt-an-5")
    assert found.outcome is Outcome.SUCCEEDED and found.amount_minor == 3_000
    replay = await conn.lookup("an-5", "attempt-an-5", request=req)
    assert replay.outcome is Outcome.SUCCEEDED and replay.gateway_ref == found.gateway_ref
    nothing = await conn.lookup("an-6", "attempt-an-6")
    assert nothing.outcome is Outcome.NOT_EXECUTED
    assert await succeeded_charges(admin, "authorize-net", invoice_number("an-5")) == 1
    await conn.aclose()


@pytest.mark.skipif(not (SPECS / "authorize-net").is_dir(),
                    reason="the sandbox validates element order against ../shared/specs/authorize-net's XSD")
async def test_authorize_net_rejects_out_of_order_elements_and_bad_credentials(sandbox: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox),
                                 base_url="http://sandbox.test/authorize-net") as c:
        from wedsync.sandbox.authorize_net import DEFAULT_LOGIN, DEFAULT_TRANSACTION_KEY

        auth = {"name": DEFAULT_LOGIN, "transactionKey": DEFAULT_TRANSACTION_KEY}
        swapped = {"createTransactionRequest": {"merchantAuthentication": auth, "transactionRequest": {
            "amount": "5.00", "transactionType": "authCaptureTransaction"}}}
        r = await c.post("/xml/v1/request.api", json=swapped)
        body = json.loads(r.content.decode("utf-8-sig"))
        assert r.content.startswith(b"\xef\xbb\xbf") and body["messages"]["message"][0]["code"] == "E00003"
        bad = {"getTransactionDetailsRequest": {"merchantAuthentication": {**auth, "transactionKey": "nope"},
                                                "transId": "1"}}
        r = await c.post("/xml/v1/request.api", json=bad)
        assert json.loads(r.content.decode("utf-8-sig"))["messages"]["message"][0]["code"] == "E00007"
    from wedsync.connectors.errors import ReauthRequired

    conn = AuthorizeNetConnector(api_login_id=DEFAULT_LOGIN, transaction_key="wrong",
                                 base_url="http://sandbox.test/authorize-net",
                                 transport=httpx.ASGITransport(app=sandbox))
    with pytest.raises(ReauthRequired):
        await conn.charge(ChargeRequest(reference="an-7", amount_minor=100, currency="USD",
                                        payment_method=CARD_OK), "attempt-an-7")
    await conn.aclose()


def test_paypal_webhooks_verify_over_loopback_with_the_sandbox_certificate() -> None:
    """A hub in another process verifies PayPal webhooks against the sandbox: the certificate URL is on a
    PayPal domain (the hub's allow-list) and the sandbox loader fetches it from the sandbox over HTTP."""
    from wedsync.connectors.webhooks import PayPalScheme
    from wedsync.sandbox.paypal import sandbox_cert_loader
    from wedsync.sandbox.server import start_sandbox_in_thread

    app = create_sandbox_app(seed=3, vsco_contacts=5, vsco_jobs=2)  # the real composition, over loopback
    url, stop = start_sandbox_in_thread(port=0, app=app)
    try:
        emulator = app.state.emulators["paypal"]
        raw = json.dumps({"id": "WH-1", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {"id": "C1"}}).encode()
        headers = emulator.sign(raw, "WEBHOOK1")
        scheme = PayPalScheme(cert_loader=sandbox_cert_loader(url))
        assert scheme.verify(raw, headers, "WEBHOOK1").event_type == "PAYMENT.CAPTURE.COMPLETED"
        from wedsync.connectors.webhooks import SignatureInvalid

        with pytest.raises(SignatureInvalid):
            scheme.verify(raw, headers, "ANOTHERWEBHOOK")
    finally:
        stop()


@pytest.mark.parametrize("slug", SLUGS)
async def test_reset_forgets_everything_and_bad_admin_actions_are_400(slug: str, sandbox: FastAPI,
                                                                      admin: httpx.AsyncClient) -> None:
    conn = connector_for(sandbox, slug)
    method = {"stripe": "pm_card_visa", "square": "cnon:ok", "paypal": "vault-ok", "authorize-net": CARD_OK}[slug]
    assert (await conn.charge(ChargeRequest("reset-1", 100, "USD", method), "reset-k")).charged
    assert await records(admin, slug, "charges")
    reset = await admin.post(f"/_sandbox/{slug}/reset")
    assert reset.status_code == 200 and reset.json()["charges"] == 0
    assert await records(admin, slug, "charges") == []
    again = await conn.charge(ChargeRequest("reset-1", 100, "USD", method), "reset-k")
    assert again.charged  # the idempotency store was reset too: a new charge
    for bad in ({"action": "nope"}, {"action": "after_commit", "rate": 2}, {"action": "webhook", "url": "ftp://x"},
                {"action": "open_dispute", "charge": "missing"}, {"action": "close_dispute", "dispute": "x"}):
        r = await admin.post(f"/_sandbox/{slug}/mutate", json=bad)
        assert r.status_code == 400, (bad, r.text)
    await conn.aclose()


async def test_authorize_net_webhooks_are_signed_and_parsed(sandbox: FastAPI, admin: httpx.AsyncClient) -> None:
    emulator = sandbox.state.emulators["authorize-net"]
    got: list[tuple[bytes, dict[str, str]]] = []
    emulator.webhooks.send = lambda url, body, headers=None: got.append((body, dict(headers or {})))
    key = "4A0C5D2B8E" * 12  # signature keys are hex strings, used as text
    await admin.post("/_sandbox/authorize-net/mutate", json={"action": "webhook", "url": "https://hub.example/an",
                                                             "secret": key})
    conn = connector_for(sandbox, "authorize-net")
    res = await conn.charge(ChargeRequest("an-wh-1", 2_575, "USD", CARD_OK), "attempt-an-wh-1")
    await admin.post("/_sandbox/authorize-net/mutate", json={"action": "payout"})
    assert res.gateway_ref
    await conn.refund(res.gateway_ref, 575, "USD", "refund-an-wh-1", reverse_split=False)
    verified = [get_scheme("authorize-net").verify(body, headers, key) for body, headers in got]
    assert [v.event_type for v in verified] == ["net.authorize.payment.authcapture.created",
                                                "net.authorize.payment.refund.created"]
    paid, refunded = (conn.parse_event(body, headers) for body, headers in got)
    assert paid.kind is EventKind.PAYMENT_SUCCEEDED and paid.gateway_ref == res.gateway_ref
    assert paid.reference == invoice_number("an-wh-1") and paid.amount_minor == 2_575
    assert refunded.kind is EventKind.REFUND_SUCCEEDED and refunded.amount_minor == 575
    await conn.aclose()
