"""Payments API: vendor gateway setup, marketplace transactions, refunds, escrow, balances, ledger,
disputes and reconciliation reports."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from wedsync.api.deps import (
    Cursor,
    HubDep,
    Limit,
    PrincipalDep,
    Reader,
    VendorHeader,
    VendorId,
    Writer,
    next_cursor,
)
from wedsync.api.responses import (
    BalancesOut,
    DisputeOut,
    HoldCancelledOut,
    HoldOut,
    LedgerTransactionOut,
    MilestoneApprovedOut,
    OnboardingCompleteOut,
    PaymentSetupDoneOut,
    PaymentSetupOut,
    ReconciliationOut,
    ReconciliationSummaryOut,
    RefundOut,
    TransactionDetailOut,
    TransactionOut,
)
from wedsync.api.schemas import Page, Strict
from wedsync.connectors.payments.base import DisputeEvidence
from wedsync.domain.money import MAX_AMOUNT_MINOR
from wedsync.errors import InvalidInput
from wedsync.services.payments import FINAL, INTENT_STATUSES, IntentRequest
from wedsync.services.reconciliation import Reconciler

router = APIRouter(tags=["payments"])


class SetupIn(Strict):
    vendorId: str | None = None
    gatewayConfig: dict[str, Any]
    returnUrl: str | None = None


#: An amount of one payment, refund or release: at most ``MAX_AMOUNT_MINOR`` (99,999,999) minor units.
AmountMinor = Annotated[int, Field(le=MAX_AMOUNT_MINOR, description="integer minor units of the currency, at most "
                                                                    f"{MAX_AMOUNT_MINOR} (Stripe's limit, the "
                                                                    "strictest gateway's)")]


class TransactionIn(Strict):
    bookingRef: str = Field(min_length=1, max_length=200)
    amountMinor: AmountMinor
    currency: str = Field(min_length=1, max_length=8)
    paymentMethod: str = Field(min_length=1, max_length=200)
    milestone: str = "full"
    sequence: int = Field(default=1, le=1000, description="the installment of this milestone, from 1")
    methodType: str = "card"
    description: str | None = Field(default=None, max_length=500)
    customerEmail: str | None = Field(default=None, max_length=320)
    affiliateId: str | None = Field(default=None, max_length=200)
    split: dict[str, Any] | None = None
    escrow: dict[str, Any] | None = None


class AmountIn(Strict):
    amountMinor: AmountMinor | None = None


class EvidenceIn(Strict):
    explanation: str = Field(min_length=1, max_length=20_000)
    serviceDate: date | None = None
    customerName: str | None = None
    customerEmail: str | None = None
    productDescription: str | None = None
    refundPolicy: str | None = None
    submit: bool = True


class ReconcileIn(Strict):
    since: datetime
    until: datetime


def _dbos_running() -> bool:
    from wedsync import bootstrap

    return bool(getattr(bootstrap, "_dbos_launched", False))


@router.post("/api/integrations/payments/setup", response_model=PaymentSetupDoneOut)
async def setup_payments(body: SetupIn, hub: HubDep, principal: PrincipalDep, _p: Writer,
                         x_wedsync_vendor: VendorHeader = None) -> dict[str, Any]:
    """Seed endpoint: ``{vendorId, gatewayConfig: {primary, fallbacks, routingRules, feeStructure,
    complianceRequirements}}``; every gateway must be an active connection of this vendor. An operator names the
    vendor in ``X-WedSync-Vendor`` or ``vendorId`` (both: the same one, else 422 ``vendor_mismatch``)."""
    vendor_id = hub.tenancy.acting_vendor(principal, x_wedsync_vendor, named=body.vendorId)
    result: dict[str, Any] = await hub.payments.setup(vendor_id, body.gatewayConfig, return_url=body.returnUrl)
    return result


class OnboardedIn(Strict):
    accountRef: str | None = Field(default=None, max_length=200)


@router.post("/api/integrations/payments/onboarding/{connection_id}/complete", response_model=OnboardingCompleteOut)
def complete_onboarding(connection_id: str, body: OnboardedIn, hub: HubDep, vendor_id: VendorId, _p: Writer
                        ) -> dict[str, Any]:
    """The vendor returned from the gateway's onboarding (the dashboard calls this on the return URL, with
    PayPal's ``merchantIdInPayPal`` as ``accountRef``): the gateway account is active."""
    result: dict[str, Any] = hub.payments.complete_onboarding(vendor_id, connection_id, body.accountRef)
    return result


@router.get("/api/integrations/payments/setup", response_model=PaymentSetupOut)
def get_setup(hub: HubDep, vendor_id: VendorId, _p: Reader) -> dict[str, Any]:
    result: dict[str, Any] = hub.payments.get_setup(vendor_id)
    return result


_TRANSACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": TransactionOut, "description": "the same Idempotency-Key with the same body: the transaction "
                                                  "that key created, as it is now (nothing is sent again)"},
    201: {"model": TransactionOut, "description": "created, and final (`succeeded`, `declined` or `failed`) "
                                                  "within `wait` seconds"},
    202: {"model": TransactionOut, "description": "created (or replayed) but not final within `wait` seconds: "
                                                  "its workflow goes on; poll `GET /api/payments/transactions/{id}`"},
}
# The key is read as optional so that a missing one is the service's 422 ``idempotency_key_required`` (not a
# generic ``validation_error``), and declared here as what it is: required.
_IDEMPOTENCY_KEY_PARAMETER = {"parameters": [{
    "name": "Idempotency-Key", "in": "header", "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "title": "Idempotency-Key"},
    "description": "1-200 characters of your own, the same for every retry of one payment (a missing one is 422 "
                   "`idempotency_key_required`)"}]}


@router.post("/api/payments/transactions", responses=_TRANSACTION_RESPONSES,
             openapi_extra=_IDEMPOTENCY_KEY_PARAMETER)
async def create_transaction(
    body: TransactionIn, hub: HubDep, vendor_id: VendorId, _p: Writer,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", include_in_schema=False)] = None,
    wait: Annotated[float, Query(ge=0, le=30, description="seconds to wait for a final state")] = 10.0,
) -> JSONResponse:
    """processMarketplaceTransaction. The transaction is committed first, then its durable workflow
    runs; the answer carries the final state when it came within ``wait`` seconds (201), else 202.
    The same Idempotency-Key with the same body returns the same transaction (200)."""
    req = IntentRequest(booking_ref=body.bookingRef, amount_minor=body.amountMinor, currency=body.currency,
                        payment_method=body.paymentMethod, milestone=body.milestone, sequence=body.sequence,
                        method_type=body.methodType, description=body.description,
                        customer_email=body.customerEmail, affiliate_id=body.affiliateId, split=body.split,
                        escrow=body.escrow)
    view, created = await asyncio.to_thread(hub.payments.create_intent, vendor_id, idempotency_key or "", req)
    if view["status"] not in FINAL:
        view = await _run(hub, view, vendor_id, wait)
    code = 201 if created else 200
    if view["status"] not in FINAL:
        code = 202
    return JSONResponse(view, status_code=code)


async def _run(hub: Any, view: dict[str, Any], vendor_id: str, wait: float) -> dict[str, Any]:
    intent_id = view["id"]
    if _dbos_running():
        from wedsync.workflows.payments import start_transaction

        plan = hub.payments.plan_of(view) if view["status"] == "created" else None
        handle = await start_transaction(intent_id, plan)
        try:
            await asyncio.wait_for(handle.get_result(), timeout=wait)
        except TimeoutError:
            pass
    else:  # no DBOS in this process (tests, tools): the same steps, run in the request
        await hub.payments.run_inline(intent_id)
    result: dict[str, Any] = hub.payments.get_intent(vendor_id, intent_id)
    return result


@router.get("/api/payments/transactions", response_model=Page[TransactionOut])
def list_transactions(hub: HubDep, vendor_id: VendorId, _p: Reader, bookingRef: str | None = None,
                      status: Annotated[str | None, Query(
                          max_length=16, json_schema_extra={"enum": list(INTENT_STATUSES)},
                          description="one of the statuses (422 `invalid_status` otherwise)")] = None,
                      after: Cursor = None, limit: Limit = 50) -> dict[str, Any]:
    """Transactions, newest first; pass ``next_cursor`` as ``after`` for the next page."""
    items = hub.payments.list_intents(vendor_id, booking_ref=bookingRef, status=status, limit=limit, after=after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


@router.get("/api/payments/transactions/{transaction_id}", response_model=TransactionDetailOut)
def get_transaction(transaction_id: str, hub: HubDep, vendor_id: VendorId, _p: Reader) -> dict[str, Any]:
    result: dict[str, Any] = hub.payments.get_intent(vendor_id, transaction_id)
    return result


@router.post("/api/payments/transactions/{transaction_id}/refunds", response_model=RefundOut)
async def refund_transaction(
    transaction_id: str, body: AmountIn, hub: HubDep, vendor_id: VendorId, _p: Writer,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", json_schema_extra={"minLength": 1, "maxLength": 200},
        description="optional: 1-200 characters of your own, the same for every retry of one refund (the same "
                    "key answers the refund it started instead of refunding again)")] = None,
) -> dict[str, Any]:
    """Refund all (no amount) or part of a payment; transfers and fees are reversed proportionally."""
    result: dict[str, Any] = await hub.payments.refund(vendor_id, transaction_id, body.amountMinor,
                                                       client_key=idempotency_key)
    return result


@router.get("/api/payments/escrow", response_model=Page[HoldOut])
def list_escrow(hub: HubDep, vendor_id: VendorId, _p: Reader, bookingRef: str | None = None, after: Cursor = None,
                limit: Limit = 100) -> dict[str, Any]:
    """Escrow holds (of a booking with ``bookingRef``), oldest first; ``next_cursor`` as ``after`` for the next
    page."""
    items = hub.payments.list_holds(vendor_id, bookingRef, limit=limit, after=after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


@router.post("/api/payments/escrow/{hold_id}/release", response_model=HoldOut)
async def release_escrow(hold_id: str, body: AmountIn, hub: HubDep, vendor_id: VendorId, _p: Writer
                         ) -> dict[str, Any]:
    """Manual release of all (no amount) or part of a hold."""
    result: dict[str, Any] = await hub.payments.release(vendor_id, hold_id, body.amountMinor)
    return result


@router.post("/api/payments/escrow/{hold_id}/cancel", response_model=HoldCancelledOut)
async def cancel_escrow(hold_id: str, hub: HubDep, vendor_id: VendorId, _p: Writer) -> dict[str, Any]:
    result: dict[str, Any] = await hub.payments.cancel_hold(vendor_id, hold_id)
    return result


@router.post("/api/payments/bookings/{booking_ref}/milestones/{milestone}/approve",
             response_model=MilestoneApprovedOut)
async def approve_milestone(booking_ref: str, milestone: str, hub: HubDep, vendor_id: VendorId, _p: Writer
                            ) -> dict[str, Any]:
    result: dict[str, Any] = await hub.payments.approve_milestone(vendor_id, booking_ref, milestone)
    return result


@router.post("/api/payments/escrow/release-due", response_model=list[HoldOut])
async def release_due(hub: HubDep, vendor_id: VendorId, _p: Writer) -> list[dict[str, Any]]:
    """Release every hold of this vendor whose condition is met now (the sweep does this on its own)."""
    result: list[dict[str, Any]] = await hub.payments.release_due(vendor_id=vendor_id)
    return result


@router.get("/api/payments/balances", response_model=BalancesOut)
def balances(hub: HubDep, vendor_id: VendorId, _p: Reader) -> dict[str, Any]:
    result: dict[str, Any] = hub.payments.balances(vendor_id)
    result["check"] = hub.payments.ledger_check(vendor_id)
    return result


@router.get("/api/payments/ledger", response_model=Page[LedgerTransactionOut])
def ledger(hub: HubDep, vendor_id: VendorId, _p: Reader, transactionId: str | None = None, after: Cursor = None,
           limit: Limit = 200) -> dict[str, Any]:
    """Ledger transactions with their entries, oldest first; pass ``next_cursor`` as ``after`` for the next
    page."""
    items = hub.payments.ledger(vendor_id, intent_id=transactionId, limit=limit, after=after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


@router.get("/api/payments/disputes", response_model=Page[DisputeOut])
def list_disputes(hub: HubDep, vendor_id: VendorId, _p: Reader, after: Cursor = None, limit: Limit = 100
                  ) -> dict[str, Any]:
    """Disputes (chargebacks), oldest first; ``next_cursor`` as ``after`` for the next page."""
    items = hub.payments.list_disputes(vendor_id, limit=limit, after=after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


@router.post("/api/payments/disputes/{dispute_id}/evidence", response_model=DisputeOut)
async def submit_evidence(dispute_id: str, body: EvidenceIn, hub: HubDep, vendor_id: VendorId, _p: Writer
                          ) -> dict[str, Any]:
    ev = DisputeEvidence(explanation=body.explanation, service_date=body.serviceDate,
                         customer_name=body.customerName, customer_email=body.customerEmail,
                         product_description=body.productDescription, refund_policy=body.refundPolicy,
                         submit=body.submit)
    result: dict[str, Any] = await hub.payments.submit_evidence(vendor_id, dispute_id, ev)
    return result


@router.post("/api/payments/reconciliations", response_model=ReconciliationOut)
async def reconcile(body: ReconcileIn, hub: HubDep, vendor_id: VendorId, _p: Writer) -> dict[str, Any]:
    """On-demand reconciliation of the vendor's gateways over ``[since, until)``."""
    if body.since.tzinfo is None or body.until.tzinfo is None:
        raise InvalidInput("since and until need a UTC offset", code="naive_datetime")
    return await Reconciler(hub).reconcile(vendor_id, body.since, body.until)


@router.get("/api/payments/reconciliations", response_model=Page[ReconciliationSummaryOut])
def list_reconciliations(hub: HubDep, vendor_id: VendorId, _p: Reader, after: Cursor = None, limit: Limit = 20
                         ) -> dict[str, Any]:
    """Reconciliation reports without their items (``GET /api/payments/reconciliations/{id}`` has them), newest
    first; ``next_cursor`` as ``after`` for the next page."""
    items = Reconciler(hub).reports(vendor_id, limit, after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


@router.get("/api/payments/reconciliations/{report_id}", response_model=ReconciliationOut)
def get_reconciliation(report_id: str, hub: HubDep, vendor_id: VendorId, _p: Reader) -> dict[str, Any]:
    return Reconciler(hub).get(vendor_id, report_id)
