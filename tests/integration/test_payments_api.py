"""The payments API over HTTP (in-process, no DBOS: transactions run in the request): refunds, escrow
release and cancellation, balances, ledger, reconciliation, onboarding, tenancy, and bad input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.conftest import auth
from wedsync.store.tables import utcnow


async def _vendor(api: Any, hub: Any, sandbox: str, name: str) -> tuple[dict[str, str], str]:
    v = hub.tenancy.create_vendor(name)
    _, key = hub.tenancy.create_key(v.id)
    h = auth(key)
    r = await api.post("/api/connections", headers=h, json={
        "provider": "stripe", "base_url": f"{sandbox}/stripe",
        "credentials": {"secret_key": "sk_test_wedsync_platform"}})
    conn = r.json()["id"]
    r = await api.post("/api/integrations/payments/setup", headers=h, json={"gatewayConfig": {
        "primary": conn, "feeStructure": {"platformFeeBps": 1000}}})
    assert r.status_code == 200, r.text
    return h, conn


async def test_payments_api(api: Any, hub: Any, sandbox: str) -> None:
    h, conn = await _vendor(api, hub, sandbox, "API Caterer")
    other, _ = await _vendor(api, hub, sandbox, "Other Caterer")
    assert (await api.get("/api/integrations/payments/setup", headers=h)).json()["gateways"][0]["status"] == \
        "action_required"
    r = await api.post(f"/api/integrations/payments/onboarding/{conn}/complete", headers=h, json={})
    assert r.status_code == 200 and r.json()["status"] == "active"
    r = await api.post(f"/api/integrations/payments/onboarding/{conn}/complete", headers=other, json={})
    assert r.status_code == 404  # another vendor's connection

    body = {"bookingRef": "api-1", "amountMinor": 10_000, "currency": "USD", "paymentMethod": "pm_card_visa"}
    r = await api.post("/api/payments/transactions", headers={**h, "Idempotency-Key": "a1"}, json=body)
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    tx = r.json()
    assert (await api.get(f"/api/payments/transactions/{tx['id']}", headers=other)).status_code == 404
    r = await api.post(f"/api/payments/transactions/{tx['id']}/refunds", headers=h, json={"amountMinor": 0})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_amount"
    r = await api.post(f"/api/payments/transactions/{tx['id']}/refunds", headers=h, json={"amountMinor": 20_000})
    assert r.status_code == 422 and r.json()["error"]["code"] == "amount_exceeds_remaining"
    r = await api.post(f"/api/payments/transactions/{tx['id']}/refunds", headers=h, json={"amountMinor": 2_500})
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    assert r.json()["share"] == {"vendor": 2_250, "platform": 250, "affiliate": 0}

    declined = {**body, "paymentMethod": "pm_card_chargeDeclined"}
    r = await api.post("/api/payments/transactions", headers={**h, "Idempotency-Key": "d1"}, json=declined)
    assert r.status_code == 201 and r.json()["status"] == "declined"
    r = await api.post(f"/api/payments/transactions/{r.json()['id']}/refunds", headers=h, json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_refundable"

    # escrow: a milestone release, a partial manual release and a cancellation
    esc = {**body, "bookingRef": "api-2", "milestone": "final", "escrow": {"release": {"kind": "milestone",
                                                                                      "milestone": "tasting"}}}
    r = await api.post("/api/payments/transactions", headers={**h, "Idempotency-Key": "e1"}, json=esc)
    assert r.json()["status"] == "succeeded", r.text
    r = await api.post("/api/payments/bookings/api-2/milestones/tasting/approve", headers=h)
    assert r.status_code == 200 and r.json()["released"][0]["status"] == "released"
    r = await api.post("/api/payments/transactions", headers={**h, "Idempotency-Key": "e2"},
                       json={**esc, "bookingRef": "api-3", "escrow": {"release": {"kind": "manual"}}})
    hold = (await api.get("/api/payments/escrow", headers=h, params={"bookingRef": "api-3"})).json()["items"][0]
    r = await api.post(f"/api/payments/escrow/{hold['id']}/release", headers=h, json={"amountMinor": 1_000})
    assert r.json()["status"] == "partially_released" and r.json()["remainingMinor"] == 8_000
    r = await api.post(f"/api/payments/escrow/{hold['id']}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert r.json()["refund"]["amountMinor"] == 8_000 + 1_000  # held rest + the platform's fee
    assert (await api.post(f"/api/payments/escrow/{hold['id']}/release", headers=other, json={})).status_code == 404

    bal = (await api.get("/api/payments/balances", headers=h)).json()
    assert bal["check"]["balanced"] and bal["vendor"]["USD"]["escrow"] == 0
    page = (await api.get("/api/payments/ledger", headers=h, params={"transactionId": tx["id"]})).json()
    ledger = page["items"]
    assert page["next_cursor"] is None
    assert {t["kind"] for t in ledger} >= {"charge", "refund"}
    assert all(sum(e["amount"] for e in t["entries"]) == 0 for t in ledger)

    # every list is paged by keyset: limit 1..500, after = the previous page's next_cursor (null on the last)
    for path, order in (("/api/payments/ledger", 1), ("/api/payments/transactions", -1)):
        everything = (await api.get(path, headers=h, params={"limit": 500})).json()
        assert everything["next_cursor"] is None and len(everything["items"]) >= 4, (path, everything)
        ids = [t["id"] for t in everything["items"]]
        assert ids == sorted(ids, reverse=order < 0), path  # ledger oldest first, transactions newest first
        paged: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1, **({"after": cursor} if cursor else {})}
            r = await api.get(path, headers=h, params=params)
            assert r.status_code == 200, (path, r.text)
            paged += [t["id"] for t in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        assert paged == ids, path
        for bad in ({"limit": 0}, {"limit": 501}, {"after": "12"}):
            r = await api.get(path, headers=h, params=bad)
            assert r.status_code == 422, (path, bad, r.text)
    booking = (await api.get("/api/payments/transactions", headers=h, params={"bookingRef": "api-1"})).json()
    assert tx["id"] in [t["id"] for t in booking["items"]] and {t["bookingRef"] for t in booking["items"]} == {"api-1"}

    period = {"since": (utcnow() - timedelta(hours=1)).isoformat(),
              "until": (utcnow() + timedelta(minutes=5)).isoformat()}
    r = await api.post("/api/payments/reconciliations", headers=h, json=period)
    assert r.status_code == 200 and r.json()["summary"]["mismatched"] == 0, r.text
    rid = r.json()["id"]
    assert [x["id"] for x in (await api.get("/api/payments/reconciliations", headers=h)).json()["items"]] == [rid]
    assert (await api.get(f"/api/payments/reconciliations/{rid}", headers=other)).status_code == 404
    r = await api.post("/api/payments/reconciliations", headers=h, json={"since": "2026-01-01T00:00:00",
                                                                         "until": "2026-01-02T00:00:00"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "naive_datetime"
    assert (await api.get("/api/payments/disputes", headers=h)).json() == {"items": [], "next_cursor": None}
    r = await api.post("/api/payments/disputes/nope/evidence", headers=h, json={"explanation": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_dispute"
    await hub.connections.aclose()


async def test_openapi_declares_what_create_transaction_answers(api: Any, hub: Any, sandbox: str) -> None:
    """``POST /api/payments/transactions`` answers 201 (final), 202 (still running) and 200 (a replay), each with
    the transaction; its OpenAPI document says so, and that ``Idempotency-Key`` is required (a missing one is
    the service's 422 ``idempotency_key_required``, as before)."""
    op = (await api.get("/openapi.json")).json()["paths"]["/api/payments/transactions"]["post"]
    for code in ("200", "201", "202"):
        assert op["responses"][code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/TransactionOut"}, (code, op["responses"][code])
    headers = [p for p in op["parameters"] if p["in"] == "header" and p["name"] == "Idempotency-Key"]
    assert len(headers) == 1 and headers[0]["required"] is True, op["parameters"]
    assert headers[0]["schema"]["minLength"] == 1 and headers[0]["schema"]["maxLength"] == 200

    h, _ = await _vendor(api, hub, sandbox, "Documented Caterer")
    body = {"bookingRef": "doc-1", "amountMinor": 1_000, "currency": "USD", "paymentMethod": "pm_card_visa"}
    r = await api.post("/api/payments/transactions", headers=h, json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_required", r.text
    r = await api.post("/api/payments/transactions", headers={**h, "Idempotency-Key": "doc-1"}, json=body)
    assert r.status_code == 201, r.text
    replay = await api.post("/api/payments/transactions", headers={**h, "Idempotency-Key": "doc-1"}, json=body)
    assert replay.status_code == 200 and replay.json()["id"] == r.json()["id"]
    await hub.connections.aclose()


def test_payments_cli(hub: Any) -> None:
    """``wedsync payments``: balances with the ledger check, and bad input exits 2 with one line."""
    from typer.testing import CliRunner

    from wedsync.bootstrap import set_hub
    from wedsync.commands.payments import app

    v = hub.tenancy.create_vendor("CLI Caterer")
    set_hub(hub)
    try:
        runner = CliRunner()
        r = runner.invoke(app, ["balances", "--vendor", v.id, "--json"])
        assert r.exit_code == 0 and '"balanced": true' in r.output, r.output
        r = runner.invoke(app, ["reconcile", "--vendor", v.id, "--since", "2026-01-01"])
        assert r.exit_code == 2 and "UTC offset" in r.output
        r = runner.invoke(app, ["reconcile", "--vendor", v.id])
        assert r.exit_code == 2 and "no_payment_setup" in r.output
        r = runner.invoke(app, ["sweep"])
        assert r.exit_code == 0 and '"unknown": 0' in r.output, r.output
    finally:
        set_hub(None)
