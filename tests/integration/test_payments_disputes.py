"""Disputes on a Stripe destination charge pull the vendor's part back by reversing the charge's transfer (its id
comes back with the charge), a won dispute re-transfers it, and a second dispute on the same payment is its own
move with its own key (it reverses the re-transfer, not the already reversed original)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from sqlalchemy import select

from wedsync.services.payments import IntentRequest
from wedsync.services.webhook_dispatch import process_batch
from wedsync.store.tables_payments import PaymentIntent, PaymentTransfer


def _records(sandbox: str, collection: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{sandbox}/_sandbox/stripe/records/{collection}", timeout=10)
    r.raise_for_status()
    out: dict[str, dict[str, Any]] = {}
    for line in r.text.splitlines():
        if line.strip():
            rec = json.loads(line)
            out[rec["id"]] = rec
    return out


async def _drain_until(hub: Any, cond: Any, timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        await process_batch(hub, "stripe")
        got = cond()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError("webhook effect did not arrive")


def _transfers(hub: Any, intent_id: str) -> list[PaymentTransfer]:
    with hub.db.read() as s:
        return list(s.execute(select(PaymentTransfer).where(PaymentTransfer.intent_id == intent_id)
                              .order_by(PaymentTransfer.id)).scalars())


async def test_stripe_destination_charge_disputes_reverse_and_retransfer(hub: Any, sandbox: str) -> None:
    from tests.e2e.procs import serve_app_in_thread
    from wedsync.api.app import create_app
    from wedsync.bootstrap import set_hub

    v = hub.tenancy.create_vendor("Disputed twice")
    conn = hub.connections.create(v.id, "stripe", credentials={"secret_key": "sk_test_wedsync_platform"},
                                  base_url=f"{sandbox}/stripe")
    await hub.payments.setup(v.id, {"primary": conn.id, "feeStructure": {"platformFeeBps": 1000}})
    view, _ = hub.payments.create_intent(v.id, "dd-1", IntentRequest(
        booking_ref="dd", amount_minor=20_000, currency="USD", payment_method="pm_card_visa"))
    paid = await hub.payments.run_inline(view["id"])
    assert paid["status"] == "succeeded" and paid["nativeSplit"], paid
    vendor_part = paid["split"]["vendor"]
    assert vendor_part == 18_000
    with hub.db.read() as s:
        transfer_ref = s.get(PaymentIntent, view["id"]).transfer_ref
    # the destination charge's transfer id came back with the charge (expand[]=latest_charge)
    assert transfer_ref and transfer_ref.startswith("tr_")
    assert _records(sandbox, "transfers")[transfer_ref]["amount_minor"] == vendor_part

    set_hub(hub)
    base, stop = serve_app_in_thread(create_app(launch_workflows=False))
    try:
        secret = hub.connections.credentials(hub.connections.get_any(conn.id))["webhook_secret"]
        httpx.post(f"{sandbox}/_sandbox/stripe/mutate", json={"action": "webhook", "secret": secret,
                   "url": f"{base}/webhooks/stripe/{conn.id}"}, timeout=10).raise_for_status()

        async def dispute(expect_reversals: int) -> str:
            opened = httpx.post(f"{sandbox}/_sandbox/stripe/mutate", json={
                "action": "open_dispute", "charge": paid["gatewayRef"], "reason": "fraudulent"}, timeout=10)
            assert opened.status_code == 200, opened.text
            # the reversal row is written before the gateway's answer, and the served app's own drain may be the
            # one making the call: wait for its outcome too (CI once read the second reversal still pending)
            await _drain_until(hub, lambda: len([t for t in _transfers(hub, view["id"])
                                                 if t.kind == "reversal" and t.status != "pending"])
                               == expect_reversals)
            return str(opened.json()["id"])

        first = await dispute(1)
        rev1 = next(t for t in _transfers(hub, view["id"]) if t.kind == "reversal")
        assert rev1.status == "succeeded" and rev1.amount_minor == vendor_part and rev1.source_ref == transfer_ref
        assert _records(sandbox, "transfers")[transfer_ref]["object"]["amount_reversed"] == vendor_part
        httpx.post(f"{sandbox}/_sandbox/stripe/mutate", json={"action": "close_dispute", "dispute": first,
                                                               "outcome": "won"}, timeout=10).raise_for_status()
        await _drain_until(hub, lambda: [t for t in _transfers(hub, view["id"])
                                         if t.kind == "transfer" and t.status == "succeeded"])
        retransfer = next(t for t in _transfers(hub, view["id"]) if t.kind == "transfer")
        assert retransfer.amount_minor == vendor_part and retransfer.gateway_ref != transfer_ref

        # A second dispute on the same payment: its own key, reversing the re-transfer (not deduplicated
        # into the first dispute's reversal, and not the already reversed original transfer).
        await dispute(2)
        revs = [t for t in _transfers(hub, view["id"]) if t.kind == "reversal"]
        assert len({t.idempotency_key for t in revs}) == 2
        assert revs[1].status == "succeeded", revs[1].message
        assert revs[1].source_ref == retransfer.gateway_ref and revs[1].amount_minor == vendor_part
        assert _records(sandbox, "transfers")[str(retransfer.gateway_ref)]["object"]["amount_reversed"] == vendor_part
        disputes = hub.payments.list_disputes(v.id)
        assert len(disputes) == 2 and all(d["transactionId"] == view["id"] for d in disputes)
        kinds = [t["kind"] for t in hub.payments.ledger(v.id, intent_id=view["id"])]
        assert kinds.count("dispute_withdrawal") == 2 and kinds.count("dispute_reinstatement") == 1
        assert hub.payments.ledger_check(v.id)["balanced"]
    finally:
        stop()
        set_hub(None)
        await hub.connections.aclose()
