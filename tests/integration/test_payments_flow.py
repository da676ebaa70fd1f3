"""Payments core against the Stripe sandbox over loopback (SQLite and PostgreSQL): setup, native splits,
idempotency, bad input, declines, refunds, escrow with separate transfers, disputes and reconciliation."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from wedsync.connectors.payments.base import Outcome
from wedsync.errors import Conflict, InvalidInput
from wedsync.services.payments import IntentRequest
from wedsync.services.webhook_dispatch import process_batch
from wedsync.store.tables import utcnow


def charges(sandbox: str, slug: str = "stripe") -> list[dict[str, Any]]:
    r = httpx.get(f"{sandbox}/_sandbox/{slug}/records/charges", timeout=10)
    r.raise_for_status()
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def records(sandbox: str, slug: str, collection: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{sandbox}/_sandbox/{slug}/records/{collection}", timeout=10)
    r.raise_for_status()
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def stripe_vendor(hub: Any, sandbox: str, name: str) -> tuple[str, str]:
    v = hub.tenancy.create_vendor(name)
    c = hub.connections.create(v.id, "stripe", credentials={"secret_key": "sk_test_wedsync_platform"},
                               base_url=f"{sandbox}/stripe")
    return v.id, c.id


def req(amount: int = 10_000, **kw: Any) -> IntentRequest:
    base: dict[str, Any] = {"booking_ref": "bk-1", "amount_minor": amount, "currency": "USD",
                            "payment_method": "pm_card_visa", "milestone": "deposit"}
    return IntentRequest(**{**base, **kw})


async def test_transactions_end_to_end_on_stripe(any_hub: Any, sandbox: str) -> None:
    hub = any_hub
    pay = hub.payments
    vendor, conn = stripe_vendor(hub, sandbox, "Caterer")
    setup = await pay.setup(vendor, {"primary": conn, "feeStructure": {"platformFeeBps": 500, "affiliateFeeBps": 200}})
    gw = setup["gateways"][0]
    assert gw["provider"] == "stripe" and gw["accountRef"].startswith("acct_") and gw["onboarding"]["url"]

    # A deposit with a planner (affiliate): destination charge, application fee = platform + affiliate.
    view, created = pay.create_intent(vendor, "key-1", req(12_345, affiliate_id="planner-7"))
    assert created and view["status"] == "created"
    done = await pay.run_inline(view["id"])
    assert done["status"] == "succeeded" and done["nativeSplit"], done
    assert done["split"] == {"vendor": 11_481, "platform": 617, "affiliate": 247}
    mine = [c for c in charges(sandbox) if c["reference"] == view["id"]]
    assert len(mine) == 1 and mine[0]["amount_minor"] == 12_345
    bal = pay.balances(vendor)
    assert bal["vendor"]["USD"]["payable"] == 0  # paid natively by the destination charge
    assert bal["platform"]["USD"]["fees"] == 617 and bal["affiliates"]["planner-7"]["USD"] == 247
    assert pay.ledger_check(vendor)["balanced"]

    # The same key and body: the same transaction, nothing charged again; another body: 409.
    again, created = pay.create_intent(vendor, "key-1", req(12_345, affiliate_id="planner-7"))
    assert not created and again["id"] == view["id"] and again["status"] == "succeeded"
    with pytest.raises(Conflict) as reused:
        pay.create_intent(vendor, "key-1", req(12_346, affiliate_id="planner-7"))
    assert reused.value.code == "idempotency_key_reused" and reused.value.status == 409
    assert len([c for c in charges(sandbox) if c["reference"] == view["id"]]) == 1

    # Bad input: a clear 4xx code, and nothing is even recorded.
    for bad, code in ((req(0), "invalid_amount"), (req(-5), "invalid_amount"),
                      (req(currency="XYZ"), "unknown_currency"),
                      (req(split={"vendor": 9_000, "platform": 999}), "split_mismatch"),
                      (req(milestone="whenever"), "invalid_milestone"),
                      (req(currency="INR"), "no_active_gateway")):
        with pytest.raises(InvalidInput) as e:
            pay.create_intent(vendor, f"bad-{code}-{bad.amount_minor}-{bad.currency}", bad)
        assert e.value.code == code and 400 <= e.value.status < 500
    other, _ = stripe_vendor(hub, sandbox, "No Setup Yet")
    with pytest.raises(InvalidInput) as nosetup:
        pay.create_intent(other, "k", req())
    assert nosetup.value.code == "no_active_gateway"

    # A declined card: final "declined", no failover, no ledger postings for it.
    dec, _ = pay.create_intent(vendor, "key-decline", req(5_000, payment_method="pm_card_chargeDeclined"))
    dec = await pay.run_inline(dec["id"])
    assert dec["status"] == "declined" and dec["failureCode"], dec
    assert pay.ledger(vendor, intent_id=dec["id"]) == []

    # Partial refunds reverse the transfer and the fees proportionally (largest remainder).
    r1 = await pay.refund(vendor, view["id"], 4_115, client_key="rf-1")
    assert r1["status"] == "succeeded", r1
    assert r1["share"] == {"vendor": 3_827, "platform": 206, "affiliate": 82}
    r1b = await pay.refund(vendor, view["id"], 4_115, client_key="rf-1")  # replay: the same refund
    assert r1b["id"] == r1["id"]
    r2 = await pay.refund(vendor, view["id"], None, client_key="rf-2")  # the rest
    assert r2["amountMinor"] == 12_345 - 4_115 and r2["status"] == "succeeded"
    with pytest.raises(InvalidInput):
        await pay.refund(vendor, view["id"], 1)
    bal = pay.balances(vendor)
    assert bal["platform"]["USD"]["fees"] == 0 and bal["affiliates"]["planner-7"]["USD"] == 0
    assert bal["vendor"]["USD"]["payable"] == 0 and pay.ledger_check(vendor)["balanced"]

    # Escrow on Stripe: separate charge and transfers; 30 % held until a date, the rest transferred at once.
    esc, _ = pay.create_intent(vendor, "key-escrow", req(
        20_000, milestone="final", escrow={"holdbackBps": 3000, "release": {
            "kind": "date", "after": (utcnow() + timedelta(days=30)).isoformat()}}))
    esc = await pay.run_inline(esc["id"])
    assert esc["status"] == "succeeded" and not esc["nativeSplit"], esc
    hold = pay.list_holds(vendor)[0]
    vendor_part = esc["split"]["vendor"]
    assert hold["heldMinor"] == 5_700 and hold["status"] == "held"
    transfers = [t for t in records(sandbox, "stripe", "transfers") if t["amount_minor"] == vendor_part - 5_700]
    assert transfers, "the part not held is transferred right after the charge"
    assert pay.balances(vendor)["vendor"]["USD"] == {"payable": 0, "escrow": 5_700}
    assert await pay.release_due(vendor_id=vendor) == []  # the date has not come
    part = await pay.release(vendor, hold["id"], 1_000)
    assert part["status"] == "partially_released" and part["remainingMinor"] == 4_700
    later = await pay.release_due(vendor_id=vendor, now=utcnow() + timedelta(days=31))
    assert later and later[0]["status"] == "released"
    assert pay.balances(vendor)["vendor"]["USD"] == {"payable": 0, "escrow": 0}
    with pytest.raises(Conflict):
        await pay.release(vendor, hold["id"])

    # A dispute, by the gateway's signed webhook through the inbox: platform debited, then won.
    secret = hub.connections.credentials(hub.connections.get_any(conn))["webhook_secret"]
    from tests.e2e.procs import serve_app_in_thread
    from wedsync.api.app import create_app
    from wedsync.bootstrap import set_hub

    set_hub(hub)
    base, stop = serve_app_in_thread(create_app(launch_workflows=False))
    try:
        hook = {"action": "webhook", "url": f"{base}/webhooks/stripe/{conn}", "secret": secret}
        httpx.post(f"{sandbox}/_sandbox/stripe/mutate", json=hook).raise_for_status()
        paid, _ = pay.create_intent(vendor, "key-disputed", req(30_000, affiliate_id="planner-7"))
        paid = await pay.run_inline(paid["id"])
        opened = httpx.post(f"{sandbox}/_sandbox/stripe/mutate", json={
            "action": "open_dispute", "charge": paid["gatewayRef"], "reason": "fraudulent"}).json()
        await _drain_until(hub, lambda: pay.list_disputes(vendor))
        disp = pay.list_disputes(vendor)[0]
        assert disp["status"] == "needs_response" and disp["transactionId"] == paid["id"] and disp["evidenceDueBy"]
        assert disp["share"]["platform"] + disp["share"]["vendor"] + disp["share"]["affiliate"] == 30_000
        assert pay.ledger_check(vendor)["balanced"]
        httpx.post(f"{sandbox}/_sandbox/stripe/mutate", json={
            "action": "close_dispute", "dispute": opened["id"], "outcome": "won"}).raise_for_status()
        await _drain_until(hub, lambda: pay.list_disputes(vendor)[0]["status"] == "won")
        kinds = [t["kind"] for t in pay.ledger(vendor, intent_id=paid["id"])]
        assert "dispute_withdrawal" in kinds and "dispute_reinstatement" in kinds
    finally:
        stop()
        set_hub(None)

    # Reconciliation: every charge and refund of the ledger found at the gateway with the same amount.
    report = await __import__("wedsync.services.reconciliation", fromlist=["Reconciler"]).Reconciler(hub).reconcile(
        vendor, utcnow() - timedelta(hours=1), utcnow() + timedelta(minutes=1))
    s = report["summary"]
    assert s["mismatched"] == 0 and s["missingInGateway"] == 0, [i for i in report["items"] if i["status"] != "matched"]
    assert s["matched"] >= 5 and s["ledger"]["balanced"]
    await hub.connections.aclose()


async def _drain_until(hub: Any, cond: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        await process_batch(hub, "stripe")
        if cond():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("webhook effect did not arrive")


async def test_ledger_is_enforced_by_the_database(any_hub: Any) -> None:
    """Balanced per currency, immutable, unique references: refused by the database itself."""
    from wedsync.domain.ledger import LedgerTxn, Posting
    from wedsync.services.payments import post_txn

    v = any_hub.tenancy.create_vendor("Ledger Studio")
    with any_hub.db.session() as s:
        assert post_txn(s, v.id, LedgerTxn("ok-1", "test", (Posting("a", "USD", 5), Posting("b", "USD", -5))))
        assert not post_txn(s, v.id, LedgerTxn("ok-1", "test", (Posting("a", "USD", 5), Posting("b", "USD", -5))))
    bad_sql = [
        "UPDATE ledger_entries SET amount = amount + 1",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transactions SET kind = 'x'",
        "DELETE FROM ledger_transactions",
    ]
    for sql in bad_sql:
        with pytest.raises(DBAPIError), any_hub.db.session() as s:
            s.execute(text(sql))
    # Unbalanced entries written behind the code's back: the header insert is refused.
    for entries in ([("a", "USD", 5), ("b", "USD", -4)], [("a", "USD", 5), ("b", "EUR", -5)]):
        with pytest.raises(DBAPIError), any_hub.db.session() as s:
            for acc, cur, amt in entries:
                s.execute(text("INSERT INTO ledger_entries (txn_id, vendor_id, account, currency, amount) "
                               "VALUES ('t-bad', :v, :a, :c, :m)"), {"v": v.id, "a": acc, "c": cur, "m": amt})
            s.execute(text("INSERT INTO ledger_transactions (id, vendor_id, reference, kind, entry_count, created_at) "
                           "VALUES ('t-bad', :v, 'bad', 'test', 2, :t)"), {"v": v.id, "t": utcnow()})
    with any_hub.db.read() as s:
        assert s.execute(text("SELECT COUNT(*) FROM ledger_entries")).scalar() == 2
    assert any_hub.payments.ledger_check()["balanced"]
    assert Outcome.SUCCEEDED.value == "succeeded"
