"""processMarketplaceTransaction as a DBOS workflow behind the API, and unknown outcomes resolved by lookup at
the same gateway (the gateway executed, then the answer was lost): never a second charge."""

from __future__ import annotations

import json
from typing import Any

import httpx
from dbos import DBOS

from tests.conftest import auth
from tests.e2e.procs import serve_app_in_thread


def charges_for(sandbox: str, reference: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{sandbox}/_sandbox/stripe/records/charges", timeout=10)
    return [c for c in (json.loads(x) for x in r.text.splitlines() if x.strip()) if c["reference"] == reference]


async def test_workflow_behind_the_api(dbos_hub: Any, sandbox: str) -> None:
    from wedsync.api.app import create_app

    hub = dbos_hub
    v = hub.tenancy.create_vendor("Workflow Caterer")
    _, key = hub.tenancy.create_key(v.id)
    base, stop = serve_app_in_thread(create_app())
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30, headers=auth(key)) as api:
            r = await api.post("/api/connections", json={"provider": "stripe", "base_url": f"{sandbox}/stripe",
                                                         "credentials": {"secret_key": "sk_test_wedsync_platform"}})
            assert r.status_code == 201, r.text
            conn = r.json()["id"]
            r = await api.post("/api/integrations/payments/setup", json={
                "vendorId": v.id, "gatewayConfig": {"primary": conn, "feeStructure": {"platformFeeBps": 300}}})
            assert r.status_code == 200, r.text
            r = await api.post("/api/integrations/payments/setup", json={
                "vendorId": v.id, "gatewayConfig": {"primary": "01notmine0000000000000000"}})
            assert r.status_code == 422 and r.json()["error"]["code"] == "gateway_not_connected"
            body = {"bookingRef": "wf-1", "amountMinor": 50_000, "currency": "usd", "paymentMethod": "pm_card_visa",
                    "milestone": "deposit"}
            r = await api.post("/api/payments/transactions", json=body, headers={"Idempotency-Key": "wf-k1"})
            assert r.status_code == 201, r.text
            tx = r.json()
            assert tx["status"] == "succeeded" and tx["currency"] == "USD" and tx["attempts"] == 1
            steps = await DBOS.list_workflow_steps_async(tx["id"])
            assert [s["function_name"].rsplit(".", 1)[-1] for s in steps] == ["payment_attempt_step"]
            r2 = await api.post("/api/payments/transactions", json=body, headers={"Idempotency-Key": "wf-k1"})
            assert r2.status_code == 200 and r2.json()["id"] == tx["id"]
            r3 = await api.post("/api/payments/transactions", json={**body, "amountMinor": 50_001},
                                headers={"Idempotency-Key": "wf-k1"})
            assert r3.status_code == 409 and r3.json()["error"]["code"] == "idempotency_key_reused"
            for bad, code in (({**body, "amountMinor": 0}, "invalid_amount"), ({**body, "currency": "ZZZ"},
                                                                               "unknown_currency"),
                              ({**body, "split": {"vendor": 1, "platform": 2}}, "split_mismatch")):
                rb = await api.post("/api/payments/transactions", json=bad, headers={"Idempotency-Key": f"b-{code}"})
                assert rb.status_code == 422 and rb.json()["error"]["code"] == code, rb.text
            rb = await api.post("/api/payments/transactions", json={**body, "amountMinor": 1.5},
                                headers={"Idempotency-Key": "float"})
            assert rb.status_code == 422  # never a float
            assert (await api.post("/api/payments/transactions", json=body)).status_code == 422  # no key
            assert len(charges_for(sandbox, tx["id"])) == 1
            got = (await api.get(f"/api/payments/transactions/{tx['id']}")).json()
            assert got["attemptLog"][0]["status"] == "succeeded"
            listed = (await api.get("/api/payments/transactions", params={"bookingRef": "wf-1"})).json()
            assert [t["id"] for t in listed["items"]] == [tx["id"]] and listed["next_cursor"] is None
            bal = (await api.get("/api/payments/balances")).json()
            assert bal["platform"]["USD"]["fees"] == 1_500 and bal["check"]["balanced"]
            assert DBOS.get_schedule("payments-sweep") is not None
            assert DBOS.get_schedule("payments-daily-reconciliation") is not None
    finally:
        stop()
        await hub.connections.aclose()


async def test_gateway_executed_then_the_answer_was_lost(any_hub: Any, sandbox: str) -> None:
    """After-commit faults (the answer stalls past our timeout, or a 5xx although the charge is stored):
    every transaction ends succeeded with exactly one charge at the gateway."""
    hub = any_hub
    hub.connections.http_timeout = 0.5
    v = hub.tenancy.create_vendor("Lost Answers")
    c = hub.connections.create(v.id, "stripe", credentials={"secret_key": "sk_test_wedsync_platform"},
                               base_url=f"{sandbox}/stripe")
    await hub.payments.setup(v.id, {"primary": c.id})
    from wedsync.services.payments import IntentRequest

    try:
        for mode in ("stall", "error"):
            httpx.post(f"{sandbox}/_sandbox/stripe/mutate", json={
                "action": "after_commit", "rate": 1.0, "mode": mode, "stall_seconds": 1.0}).raise_for_status()
            view, _ = hub.payments.create_intent(v.id, f"lost-{mode}", IntentRequest(
                booking_ref="lost", amount_minor=7_777, currency="USD", payment_method="pm_card_visa"))
            done = await hub.payments.run_inline(view["id"])
            assert done["status"] == "succeeded", done
            assert len(charges_for(sandbox, view["id"])) == 1
            detail = hub.payments.get_intent(v.id, view["id"])
            assert detail["attempts"] == 1 and detail["route"] == [c.id]
            assert detail["attemptLog"][0]["status"] == "succeeded"  # the same key replayed at the same gateway
        assert hub.payments.ledger_check(v.id)["balanced"]
    finally:
        httpx.post(f"{sandbox}/_sandbox/stripe/mutate", json={"action": "after_commit", "rate": 0.0})
        await hub.connections.aclose()
