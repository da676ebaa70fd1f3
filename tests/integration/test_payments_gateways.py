"""The payments core on each of the four gateways (sandboxes over loopback): a charge with its split native or
on the ledger, a partial refund, webhooks handled, the ledger balanced."""

from __future__ import annotations

import json
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    from wedsync.sandbox.server import start_sandbox_in_thread

    url, stop = start_sandbox_in_thread(port=0, contacts=5, jobs=2)
    try:
        yield url
    finally:
        stop()


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
