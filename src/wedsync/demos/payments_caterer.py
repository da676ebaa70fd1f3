"""The caterer's story: a couple pays a deposit and a final payment for catering booked through a planner
(affiliate) via Stripe Connect (Square as fallback); the split; escrow released after the wedding date; a
dispute answered with evidence and won; the reconciliation report."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx
from rich.table import Table

from wedsync.demos import DemoContext

TITLE = "Payments: the caterer's deposit, final payment, split, escrow, dispute and reconciliation (issue 4)"
VENDOR = "Golden Fork Catering"
PLANNER = "planner-ava-events"


def _money(minor: int) -> str:
    return f"${minor / 100:,.2f}"


def _vendor(hub: Any) -> str:
    for v in hub.tenancy.list_vendors():
        if v.name == VENDOR:
            return str(v.id)
    return str(hub.tenancy.create_vendor(VENDOR, "America/Chicago").id)


def _connection(hub: Any, vendor_id: str, provider: str, base_url: str, creds: dict[str, str]) -> str:
    for c in hub.connections.list(vendor_id):
        if c.provider == provider:
            hub.connections.delete(vendor_id, c.id)  # a fresh sandbox each run: start clean
    return str(hub.connections.create(vendor_id, provider, credentials=creds, base_url=base_url).id)


def run_story(ctx: DemoContext) -> list[tuple[str, str]]:
    return asyncio.run(_story(ctx))


async def _story(ctx: DemoContext) -> list[tuple[str, str]]:
    from wedsync.api.app import create_app
    from wedsync.connectors.payments.base import DisputeEvidence
    from wedsync.services.payments import IntentRequest
    from wedsync.services.reconciliation import Reconciler
    from wedsync.services.webhook_dispatch import process_batch
    from wedsync.store.tables import utcnow

    hub, console, sb = ctx.hub, ctx.console, ctx.sandbox_url
    pay = hub.payments
    vendor_id = _vendor(hub)
    stripe = _connection(hub, vendor_id, "stripe", f"{sb}/stripe", {"secret_key": "sk_test_wedsync_platform"})
    square = _connection(hub, vendor_id, "square", f"{sb}/square", {"access_token": "EAAAsandbox-square-seller-token"})
    setup = await pay.setup(vendor_id, {
        "primary": {"connectionId": stripe, "provider": "stripe", "costBps": 290, "costFixedMinor": 30},
        "fallbacks": [{"connectionId": square, "provider": "square", "costBps": 260, "costFixedMinor": 10}],
        "routingRules": [{"when": {"currencies": ["USD"]}, "use": [stripe]}],
        "feeStructure": {"platformFeeBps": 800, "affiliateFeeBps": 300},
        "complianceRequirements": {"kycRequired": True, "pciScope": "SAQ-A"}})
    console.print(f"{VENDOR}: gateways " + ", ".join(
        f"{g['provider']} ({g['status']}, onboarding: {g['onboarding']['kind']})" for g in setup["gateways"]))

    run = str(int(time.time()))
    booking = f"catering-{run}"
    wedding_day = (utcnow() + timedelta(days=10)).date()
    total = 840_000
    deposit_amount, final_amount = 252_000, total - 252_000
    deposit, _ = pay.create_intent(vendor_id, f"{booking}-deposit", IntentRequest(
        booking_ref=booking, milestone="deposit", amount_minor=deposit_amount, currency="USD",
        payment_method="pm_card_visa", description="Catering deposit (30%)", customer_email="sam.and.alex@example.com",
        affiliate_id=PLANNER))
    deposit = await pay.run_inline(deposit["id"])
    final, _ = pay.create_intent(vendor_id, f"{booking}-final", IntentRequest(
        booking_ref=booking, milestone="final", amount_minor=final_amount, currency="USD",
        payment_method="pm_card_visa", description="Catering final payment", customer_email="sam.and.alex@example.com",
        affiliate_id=PLANNER, escrow={"holdbackBps": 10_000, "release": {
            "kind": "date", "weddingDate": wedding_day.isoformat(), "daysAfter": 2}}))
    final = await pay.run_inline(final["id"])

    t = Table(title=f"Booking {booking}: wedding on {wedding_day}, planner {PLANNER}")
    for col in ("payment", "status", "gateway", "amount", "caterer", "platform", "planner", "split"):
        t.add_column(col, justify="right" if col in ("amount", "caterer", "platform", "planner") else "left")
    for p in (deposit, final):
        sp = p["split"]
        t.add_row(p["milestone"], p["status"], p["gateway"] or "-", _money(p["amountMinor"]), _money(sp["vendor"]),
                  _money(sp["platform"]), _money(sp["affiliate"]),
                  "native (destination charge)" if p["nativeSplit"] else "escrow, separate transfer")
    console.print(t)

    hold = pay.list_holds(vendor_id, booking)[0]
    console.print(f"escrow: {_money(hold['heldMinor'])} held until {hold['terms']['releaseAfter']}")
    early = await pay.release_due(vendor_id=vendor_id)
    released = await pay.release_due(vendor_id=vendor_id, now=utcnow() + timedelta(days=13))
    console.print(f"release check today: {len(early)} released; two days after the wedding (clock moved "
                  f"forward for the demo): {len(released)} released, {_money(released[0]['releasedMinor'])} "
                  "transferred to the caterer's Stripe account" if released else "nothing released")

    # A chargeback on the deposit, by Stripe's signed webhook, answered with evidence, and won.
    from wedsync.bootstrap import set_hub
    from wedsync.services.connections import WEBHOOK_SECRET

    set_hub(hub)
    secret = hub.connections.credentials(hub.connections.get_any(stripe))[WEBHOOK_SECRET]
    hub.inbox.start()  # the webhook intake stores verified events in the inbox (idempotent)
    server, stop = _serve(create_app(launch_workflows=False))
    dispute: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=sb, timeout=30) as client:
            (await client.post("/_sandbox/stripe/mutate", json={
                "action": "webhook", "url": f"{server}/webhooks/stripe/{stripe}", "secret": secret})).raise_for_status()
            opened = (await client.post("/_sandbox/stripe/mutate", json={
                "action": "open_dispute", "charge": deposit["gatewayRef"], "reason": "product_not_received"})).json()
            dispute = await _wait(hub, process_batch, lambda: next(
                (d for d in pay.list_disputes(vendor_id) if d["transactionId"] == deposit["id"]), None))
            console.print(f"dispute {dispute['disputeRef']}: {dispute['status']}, {_money(dispute['amountMinor'])}, "
                          f"evidence due {dispute['evidenceDueBy']}; platform debited, caterer's share "
                          f"{_money(dispute['share'].get('vendor', 0))} reversed on the ledger")
            await pay.submit_evidence(vendor_id, dispute["id"], DisputeEvidence(
                explanation="Catering for 120 guests was delivered on the wedding day; signed delivery note and "
                "photos attached in the planner's portal.", service_date=wedding_day,
                customer_name="Sam & Alex", customer_email="sam.and.alex@example.com"))
            (await client.post("/_sandbox/stripe/mutate", json={
                "action": "close_dispute", "dispute": opened["id"], "outcome": "won"})).raise_for_status()
            dispute = await _wait(hub, process_batch, lambda: next(
                (d for d in pay.list_disputes(vendor_id) if d["id"] == dispute["id"] and d["status"] == "won"), None))
            console.print(f"dispute {dispute['status']}: funds reinstated to every party")
    finally:
        stop()

    report = await Reconciler(hub).reconcile(vendor_id, utcnow() - timedelta(hours=1), utcnow() + timedelta(minutes=1))
    s = report["summary"]
    console.print(f"reconciliation: {s['matched']} matched, {s['mismatched']} mismatched, "
                  f"{s['missingInGateway']} missing at the gateway, {s['missingInLedger']} missing in the ledger; "
                  f"ledger balanced: {s['ledger']['balanced']}")
    bal = pay.balances(vendor_id)
    await hub.connections.aclose()
    usd_vendor = bal["vendor"].get("USD", {})
    return [
        ("payments: booking", f"{_money(total)} catering, deposit {deposit['status']} + final {final['status']}"),
        ("payments: split (deposit)", f"caterer {_money(deposit['split']['vendor'])}, platform "
                                      f"{_money(deposit['split']['platform'])}, planner "
                                      f"{_money(deposit['split']['affiliate'])}"),
        ("payments: escrow", f"{_money(hold['heldMinor'])} held, released after the wedding: "
                             f"{'yes' if released else 'no'}"),
        ("payments: dispute", f"{dispute.get('status', 'not received')} ({_money(dispute.get('amountMinor', 0))})"),
        ("payments: reconciliation", f"{s['matched']} matched, {s['mismatched']} mismatched, "
                                     f"{s['missingInGateway'] + s['missingInLedger']} missing"),
        ("payments: ledger", f"balanced {s['ledger']['balanced']}; caterer payable "
                             f"{_money(usd_vendor.get('payable', 0))}, escrow {_money(usd_vendor.get('escrow', 0))}"),
    ]


def _serve(app: Any) -> tuple[str, Any]:
    """The hub's webhook route on a loopback port for the story (the demo serves its API only later)."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # No lifespan: its shutdown would close the hub's services, which the demo's API still needs afterwards.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


async def _wait(hub: Any, drain: Any, found: Any, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        await drain(hub, "stripe")
        value = found()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise RuntimeError("the gateway's webhook did not arrive")
