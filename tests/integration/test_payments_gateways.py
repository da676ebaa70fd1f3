"""The payments core on each of the four gateways (sandboxes over loopback): a charge with its split native or
on the ledger, a partial refund, webhooks handled, the ledger balanced."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from wedsync.connectors.payments.base import bounded_key
from wedsync.services.payments import IntentRequest

GATEWAYS = {
    "stripe": ({"secret_key": "sk_test_wedsync_platform"}, "/stripe", True),
    "square": ({"access_token": "EAAAsandbox-square-seller-token"}, "/square", True),
    "paypal": ({"client_id": "AWsandbox-paypal-platform-client", "client_secret": "EKsandbox-paypal-platform-secret"},
               "/paypal", True),
    "authorize-net": ({"api_login_id": "5KP3u95bQpv", "transaction_key": "346HZ32z3fP4hTG2"}, "/authorize-net",
                      False),
}


@pytest.mark.parametrize("slug", list(GATEWAYS))
async def test_charge_split_refund_on_each_gateway(hub: Any, sandbox: str, slug: str) -> None:
    creds, prefix, native = GATEWAYS[slug]
    v = hub.tenancy.create_vendor(f"Caterer on {slug}")
    conn = hub.connections.create(v.id, slug, credentials=creds, base_url=f"{sandbox}{prefix}")
    setup = await hub.payments.setup(v.id, {"primary": conn.id, "feeStructure": {"platformFeeBps": 1000,
                                                                                "affiliateFeeBps": 500}})
    assert setup["gateways"][0]["provider"] == slug
    if slug == "paypal":  # the seller came back from PayPal's referral with its merchant id
        from wedsync.sandbox.paypal import PayPalEmulator

        hub.payments.complete_onboarding(v.id, conn.id, PayPalEmulator.merchant_for(v.id))
    view, _ = hub.payments.create_intent(v.id, f"{slug}-1", IntentRequest(
        booking_ref="b", amount_minor=20_001, currency="USD", payment_method="pm_card_visa", affiliate_id="pl"))
    done = await hub.payments.run_inline(view["id"])
    assert done["status"] == "succeeded", done
    assert done["split"] == {"vendor": 17_001, "platform": 2_000, "affiliate": 1_000}
    r = httpx.get(f"{sandbox}/_sandbox/{slug}/records/charges", timeout=10)
    ref = bounded_key(view["id"], 20) if slug == "authorize-net" else view["id"]  # invoiceNumber <= 20 chars
    mine = [c for c in (json.loads(x) for x in r.text.splitlines() if x.strip()) if c["reference"] == ref]
    assert [c["status"] for c in mine] == ["succeeded"] and mine[0]["amount_minor"] == 20_001
    bal = hub.payments.balances(v.id)
    assert done["nativeSplit"] == native
    # natively split: the gateway paid the vendor's part; else it is owed on the platform's ledger
    assert bal["vendor"]["USD"]["payable"] == (0 if native else 17_001)
    if slug == "authorize-net":  # a credit needs a settled transaction: settle the batch first
        httpx.post(f"{sandbox}/_sandbox/{slug}/mutate", json={"action": "payout"}, timeout=10).raise_for_status()
    refund = await hub.payments.refund(v.id, view["id"], 5_000)
    assert refund["status"] == "succeeded", refund
    assert refund["share"] == {"vendor": 4_250, "platform": 500, "affiliate": 250}
    assert hub.payments.ledger_check(v.id)["balanced"]
    await hub.connections.aclose()


async def test_authorize_net_chargeback_found_by_reconciliation(hub: Any, sandbox: str) -> None:
    """Authorize.net has no dispute API or webhook: a chargeback shows up in a settled batch, and the
    reconciliation records it as a dispute with its ledger effect, once."""
    from datetime import timedelta

    from wedsync.services.reconciliation import Reconciler
    from wedsync.store.tables import utcnow

    creds, prefix, _ = GATEWAYS["authorize-net"]
    v = hub.tenancy.create_vendor("Chargeback Caterer")
    conn = hub.connections.create(v.id, "authorize-net", credentials=creds, base_url=f"{sandbox}{prefix}")
    await hub.payments.setup(v.id, {"primary": conn.id, "feeStructure": {"platformFeeBps": 1000}})
    view, _ = hub.payments.create_intent(v.id, "cb-1", IntentRequest(
        booking_ref="cb", amount_minor=9_000, currency="USD", payment_method="pm_card_visa"))
    paid = await hub.payments.run_inline(view["id"])
    mutate = f"{sandbox}/_sandbox/authorize-net/mutate"
    httpx.post(mutate, json={"action": "payout"}, timeout=10).raise_for_status()
    httpx.post(mutate, json={"action": "open_dispute", "charge": paid["gatewayRef"]}, timeout=10).raise_for_status()
    httpx.post(mutate, json={"action": "payout"}, timeout=10).raise_for_status()
    period = (utcnow() - timedelta(hours=1), utcnow() + timedelta(minutes=5))
    for _ in range(2):  # twice: the second run finds the dispute already recorded
        report = await Reconciler(hub).reconcile(v.id, *period)
        assert report["summary"]["mismatched"] == 0 and report["summary"]["missingInGateway"] == 0
        # (the sandbox's one Authorize.net account also settles the other tests' vendors' charges: those are
        # "missing in the ledger" of this vendor, rightly; none of them is this chargeback)
        missing = [i for i in report["items"] if i["status"] == "missing_in_ledger"]
        assert not [i for i in missing if i["kind"] == "dispute" and i["sourceRef"] == paid["gatewayRef"]]
        assert any(i["status"] == "matched" and i["kind"] == "dispute" for i in report["items"])
    disputes = hub.payments.list_disputes(v.id)
    assert len(disputes) == 1 and disputes[0]["transactionId"] == view["id"] and disputes[0]["amountMinor"] == 9_000
    kinds = [t["kind"] for t in hub.payments.ledger(v.id, intent_id=view["id"])]
    assert kinds.count("dispute_withdrawal") == 1 and hub.payments.ledger_check(v.id)["balanced"]
    await hub.connections.aclose()


# PayPal's webhooks are verified against PayPal's certificate, fetched from api.sandbox.paypal.com (no network
# here: the intake refuses them); Authorize.net has no dispute webhooks (see the test above).
@pytest.mark.parametrize("slug", ["square"])
async def test_dispute_by_webhook_on_each_gateway(hub: Any, sandbox: str, slug: str) -> None:
    """The gateway's signed dispute webhook, through the hub's intake and inbox: the dispute is recorded and
    its ledger effect applied once; closing it as won reinstates the funds."""
    import asyncio

    from tests.e2e.procs import serve_app_in_thread
    from wedsync.api.app import create_app
    from wedsync.bootstrap import set_hub
    from wedsync.services.connections import WEBHOOK_SECRET
    from wedsync.services.webhook_dispatch import process_batch

    creds, prefix, _ = GATEWAYS[slug]
    v = hub.tenancy.create_vendor(f"Disputed on {slug}")
    conn = hub.connections.create(v.id, slug, credentials=creds, base_url=f"{sandbox}{prefix}")
    await hub.payments.setup(v.id, {"primary": conn.id, "feeStructure": {"platformFeeBps": 1000}})
    view, _ = hub.payments.create_intent(v.id, f"{slug}-d", IntentRequest(
        booking_ref="d", amount_minor=12_000, currency="USD", payment_method="pm_card_visa"))
    paid = await hub.payments.run_inline(view["id"])
    assert paid["status"] == "succeeded"
    set_hub(hub)
    base, stop = serve_app_in_thread(create_app(launch_workflows=False))
    hub.settings.public_url = base  # signatures that cover the notification URL (Square) use the public one
    try:
        secret = hub.connections.credentials(hub.connections.get_any(conn.id))[WEBHOOK_SECRET]
        httpx.post(f"{sandbox}/_sandbox/{slug}/mutate", json={"action": "webhook", "secret": secret,
                   "url": f"{base}/webhooks/{slug}/{conn.id}"}, timeout=10).raise_for_status()
        opened = httpx.post(f"{sandbox}/_sandbox/{slug}/mutate", json={
            "action": "open_dispute", "charge": paid["gatewayRef"], "reason": "fraudulent"}, timeout=10)
        assert opened.status_code == 200, opened.text

        async def until(cond: Any) -> Any:
            for _ in range(100):
                await process_batch(hub, slug)
                got = cond()
                if got:
                    return got
                await asyncio.sleep(0.1)
            raise AssertionError(f"no dispute effect from {slug}")

        disp = await until(lambda: hub.payments.list_disputes(v.id))
        assert disp[0]["transactionId"] == view["id"] and disp[0]["amountMinor"] == 12_000
        assert sum(disp[0]["share"][k] for k in ("vendor", "platform", "affiliate")) == 12_000
        dispute_id = opened.json().get("id") or disp[0]["disputeRef"]
        httpx.post(f"{sandbox}/_sandbox/{slug}/mutate", json={"action": "close_dispute", "dispute": dispute_id,
                                                               "outcome": "won"}, timeout=10).raise_for_status()
        await until(lambda: hub.payments.list_disputes(v.id)[0]["status"] == "won")
        kinds = [t["kind"] for t in hub.payments.ledger(v.id, intent_id=view["id"])]
        assert kinds.count("dispute_withdrawal") == 1 and kinds.count("dispute_reinstatement") == 1
        assert hub.payments.ledger_check(v.id)["balanced"]
    finally:
        stop()
        set_hub(None)
        await hub.connections.aclose()
