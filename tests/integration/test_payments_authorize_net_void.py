"""Authorize.net credits only settled transactions: before settlement the sandbox refuses a refundTransaction
(reason 54, as the real gateway does), a full refund becomes a voidTransaction, a partial one is refused
without any call that moves money, and a replayed void counts as done."""

from __future__ import annotations

import json
from typing import Any

import httpx

from wedsync.connectors.payments.base import Outcome, bounded_key
from wedsync.services.payments import IntentRequest

CREDS = {"api_login_id": "5KP3u95bQpv", "transaction_key": "346HZ32z3fP4hTG2"}


def _records(sandbox: str, collection: str, reference: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{sandbox}/_sandbox/authorize-net/records/{collection}", timeout=10)
    r.raise_for_status()
    rows = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    return [x for x in rows if x["reference"] == reference]


async def test_unsettled_refund_is_a_void(hub: Any, sandbox: str) -> None:
    v = hub.tenancy.create_vendor("Void Caterer")
    conn = hub.connections.create(v.id, "authorize-net", credentials=CREDS, base_url=f"{sandbox}/authorize-net")
    await hub.payments.setup(v.id, {"primary": conn.id, "feeStructure": {"platformFeeBps": 1000}})
    view, _ = hub.payments.create_intent(v.id, "void-1", IntentRequest(
        booking_ref="vd", amount_minor=9_000, currency="USD", payment_method="pm_card_visa"))
    paid = await hub.payments.run_inline(view["id"])
    assert paid["status"] == "succeeded"
    ref = bounded_key(view["id"], 20)
    connector = await hub.connections.connector(hub.connections.get_any(conn.id))

    # The sandbox, like Authorize.net, refuses to credit an unsettled transaction (reason 54).
    tx = {"transactionType": "refundTransaction", "amount": "10.00",
          "payment": {"creditCard": {"cardNumber": "1111", "expirationDate": "XXXX"}},
          "refTransId": paid["gatewayRef"]}
    refused = await connector._classify(await connector._transaction(tx, "raw-refund-1"))
    assert refused.outcome is not Outcome.SUCCEEDED and refused.decline_code == "54"

    # A partial refund before settlement: refused with a code, nothing moved, nothing reserved.
    part = await hub.payments.refund(v.id, view["id"], 1_000)
    assert part["status"] == "failed" and "settle" in (part["message"] or "")
    assert hub.payments.get_intent(v.id, view["id"])["refundedMinor"] == 0
    assert _records(sandbox, "refunds", ref) == []

    # The full refund is a void of the charge: no credit transaction, the charge is voided at the gateway.
    full = await hub.payments.refund(v.id, view["id"])
    assert full["status"] == "succeeded" and full["gatewayRef"] == paid["gatewayRef"], full
    assert [c["status"] for c in _records(sandbox, "charges", ref)] == ["voided"]
    assert _records(sandbox, "refunds", ref) == []
    assert hub.payments.get_intent(v.id, view["id"])["refundedMinor"] == 9_000
    assert hub.payments.ledger_check(v.id)["balanced"]

    # The void's answer lost and the refund replayed: the gateway says voided, which is success.
    again = await connector.refund(paid["gatewayRef"], 9_000, "USD", "replayed-refund", reverse_split=False)
    assert again.outcome is Outcome.SUCCEEDED and again.raw_status == "voided"
    await hub.connections.aclose()
