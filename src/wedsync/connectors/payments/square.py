"""Square gateway: Payments API with app_fee_money (<= 90 %), refunds, payouts and payout entries, disputes.

Wire format: JSON bodies, ``Authorization: Bearer <seller OAuth access token>``, ``Square-Version:
2025-08-20``, an ``idempotency_key`` of at most 45 characters derived deterministically from our attempt key
(:func:`~wedsync.connectors.payments.base.bounded_key`) and ``reference_id`` (<= 40) from our reference.
Outcomes: 200 with ``payment.status`` COMPLETED/APPROVED -> SUCCEEDED, FAILED/CANCELED -> DECLINED,
PENDING -> UNKNOWN; error category ``PAYMENT_METHOD_ERROR`` -> DECLINED (Square includes the FAILED payment);
``IDEMPOTENCY_KEY_REUSED`` -> UNKNOWN (the key has a history); other 4xx -> NOT_EXECUTED; 5xx/timeouts ->
replayed with the same key, then UNKNOWN. ``lookup`` lists recent payments for our ``reference_id`` and, with
the original request, replays CreatePayment with the same key (Square returns the same payment).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import orjson

from wedsync.connectors.auth import BearerAuth
from wedsync.connectors.base import Capabilities, Channel, CredentialField, OAuthSpec
from wedsync.connectors.errors import Fatal, OutcomeUnknown, Retriable, SchemaMismatch
from wedsync.connectors.payments.base import (
    ChargeRequest,
    DisputeEvidence,
    DisputeInfo,
    EventKind,
    GatewayClient,
    GatewayConnector,
    GatewayEvent,
    GatewayResult,
    OnboardingStep,
    Outcome,
    Sent,
    SettlementItem,
    bounded_key,
    preflight_failed,
)
from wedsync.errors import InvalidInput

__all__ = ["SQUARE_VERSION", "SquareConnector", "square_key"]

SQUARE_VERSION = "2025-08-20"
LOOKBACK = timedelta(days=2)

_ENTRY_KIND = {
    "CHARGE": "charge", "REFUND": "refund", "DISPUTE": "dispute", "OPEN_DISPUTE": "dispute", "FEE": "fee",
    "THIRD_PARTY_FEE": "fee", "THIRD_PARTY_FEE_REFUND": "fee", "APP_FEE_REVENUE": "fee", "APP_FEE_REFUND": "fee",
    "DEPOSIT_FEE": "fee", "DEPOSIT_FEE_REVERSED": "fee",
}


def square_key(idempotency_key: str) -> str:
    """Our attempt key as Square's ``idempotency_key`` (<= 45 characters, deterministic)."""
    return bounded_key(idempotency_key, 45)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _amount(money: Any) -> int | None:
    return int(money["amount"]) if isinstance(money, dict) and isinstance(money.get("amount"), int) else None


class SquareConnector(GatewayConnector):
    slug: ClassVar[str] = "square"
    display_name: ClassVar[str] = "Square"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="payments",
        read=("payments", "payouts", "payout_entries", "disputes"),
        write=("payments", "refunds", "dispute_evidence"),
        webhooks=("payment.updated", "refund.updated", "dispute.created", "dispute.state.updated", "payout.paid",
                  "payout.failed"),
        incremental=("payouts",),
        notes="Acts with the seller's OAuth token; the platform's share is app_fee_money (at most 90 % of the "
        "payment), refunded proportionally with the refund. No separate transfers. Idempotency keys <= 45 "
        "chars derived from the attempt. Reconciliation reads payouts and their entries (entries appear only "
        "once Square has paid out). Dispute evidence: text only. Webhooks: x-square-hmacsha256-signature over "
        "the notification URL + body. OAuth onboarding goes through the hub's OAuth routes (token requests as "
        "a JSON body, as ObtainToken documents).",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("access_token", "Seller personal access token (not needed when connected by OAuth)",
                        required=False),
        CredentialField("oauth_token", "Token set saved by the hub's OAuth flow (not entered by hand)",
                        required=False),
        CredentialField("location_id", "Location to take payments at (default: the main location)", secret=False,
                        required=False),
        CredentialField("webhook_secret", "Webhook subscription signature key", required=False),
    )
    default_base_url: ClassVar[str | None] = "https://connect.squareup.com"
    docs_url: ClassVar[str | None] = "https://developer.squareup.com/reference/square"
    oauth: ClassVar[OAuthSpec | None] = OAuthSpec(
        authorize_url="https://connect.squareup.com/oauth2/authorize",
        token_url="https://connect.squareup.com/oauth2/token",
        scopes=("PAYMENTS_WRITE", "PAYMENTS_READ", "PAYOUTS_READ", "DISPUTES_READ", "DISPUTES_WRITE",
                "MERCHANT_PROFILE_READ"),
        extra_authorize_params={"session": "false"},
        client_auth="json",  # ObtainToken takes client_id, client_secret and the code in a JSON body
    )
    supports_native_split: ClassVar[bool] = True
    max_application_fee_ratio: ClassVar[float] = 0.9
    currencies: ClassVar[frozenset[str]] = frozenset({"USD", "CAD", "GBP", "EUR", "AUD", "JPY"})

    def __init__(self, *, access_token: str | None = None, oauth_token: Mapping[str, Any] | None = None,
                 location_id: str | None = None, webhook_secret: str | None = None, base_url: str | None = None,
                 account_key: str = "default", timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, mutation_attempts: int = 2) -> None:
        if not access_token and isinstance(oauth_token, Mapping):
            access_token = str(oauth_token.get("access_token") or "")
        if not access_token:
            raise InvalidInput("Square needs an access token (connect with OAuth or enter a personal token)",
                               code="missing_credentials")
        self.location_id = location_id
        self.webhook_secret = webhook_secret
        self.client = GatewayClient(
            self.slug, base_url or self.default_base_url or "", auth=BearerAuth(access_token),
            account_key=account_key, timeout=timeout, transport=transport,
            headers={"Accept": "application/json", "Square-Version": SQUARE_VERSION},
            mutation_attempts=mutation_attempts)

    async def aclose(self) -> None:
        await self.client.aclose()

    # --- classification ------------------------------------------------------------------------------------

    @staticmethod
    def _body(response: httpx.Response) -> dict[str, Any] | None:
        try:
            body = orjson.loads(response.content)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    @staticmethod
    def _payment_result(payment: Mapping[str, Any], *, native_split: bool | None = None) -> GatewayResult:
        status = str(payment.get("status"))
        common: dict[str, Any] = {
            "gateway_ref": str(payment.get("id")), "amount_minor": _amount(payment.get("amount_money")),
            "currency": (payment.get("amount_money") or {}).get("currency"), "raw_status": status,
            "native_split": bool(payment.get("app_fee_money")) if native_split is None else native_split,
        }
        fees = payment.get("processing_fee")
        if isinstance(fees, list) and fees:
            common["fee_minor"] = sum(_amount(f.get("amount_money")) or 0 for f in fees if isinstance(f, dict))
        if payment.get("reference_id"):
            common["extra"] = {"reference_id": str(payment["reference_id"])}
        if status in ("COMPLETED", "APPROVED"):
            return GatewayResult(Outcome.SUCCEEDED, **common)
        if status == "PENDING":
            return GatewayResult(Outcome.UNKNOWN, retryable=True, message="payment pending", **common)
        return GatewayResult(Outcome.DECLINED, decline_code=status.lower(), **common)

    def _classify(self, sent: Sent, ok: Any) -> GatewayResult:
        response = sent.response
        if response is None:
            return sent.failure()
        body = self._body(response)
        status = response.status_code
        if body is None:
            if status < 300:
                return GatewayResult(Outcome.UNKNOWN, raw_status="garbled", message="unreadable 2xx body",
                                     http_status=status)
            return GatewayResult(Outcome.NOT_EXECUTED, raw_status="error", http_status=status,
                                 message=f"HTTP {status}")
        errors = body.get("errors") if isinstance(body.get("errors"), list) else []
        if status < 300 and not errors:
            result: GatewayResult = ok(body)
            return result
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        category, code = str(first.get("category") or ""), str(first.get("code") or "")
        message = str(first.get("detail") or f"HTTP {status}")[:300]
        if category == "PAYMENT_METHOD_ERROR" or code in ("REFUND_DECLINED", "CARD_DECLINED"):
            payment = body.get("payment") if isinstance(body.get("payment"), dict) else {}
            return GatewayResult(Outcome.DECLINED, gateway_ref=_opt(payment.get("id")) if payment else None,
                                 amount_minor=_amount(payment.get("amount_money")) if payment else None,
                                 decline_code=code, message=message, raw_status=category, http_status=status)
        if code == "IDEMPOTENCY_KEY_REUSED":
            return GatewayResult(Outcome.UNKNOWN, decline_code=code, message=message, raw_status=category,
                                 http_status=status, retryable=True)
        return GatewayResult(Outcome.NOT_EXECUTED, decline_code=code, message=message, raw_status=category,
                             http_status=status)

    # --- charges -------------------------------------------------------------------------------------------

    def charge_body(self, req: ChargeRequest, idempotency_key: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "source_id": req.payment_method, "idempotency_key": square_key(idempotency_key),
            "amount_money": {"amount": req.amount_minor, "currency": req.currency.upper()},
            "autocomplete": req.capture, "reference_id": bounded_key(req.reference, 40),
        }
        if req.split is not None:
            body["app_fee_money"] = {"amount": req.split.application_fee_minor, "currency": req.currency.upper()}
        if self.location_id:
            body["location_id"] = self.location_id
        if req.description:
            body["note"] = req.description[:500]
        if req.customer_email:
            body["buyer_email_address"] = req.customer_email
        return body

    async def charge(self, req: ChargeRequest, idempotency_key: str) -> GatewayResult:
        self.check_split(req)
        sent = await self.client.mutate("POST", "/v2/payments", json=self.charge_body(req, idempotency_key),
                                        idempotency_key=square_key(idempotency_key))
        return self._classify(sent, lambda body: self._payment_result(body.get("payment") or {}))

    async def lookup(self, reference: str, idempotency_key: str, *,
                     request: ChargeRequest | None = None) -> GatewayResult:
        ref = bounded_key(reference, 40)
        since = datetime.now(UTC) - LOOKBACK
        params: dict[str, Any] = {"begin_time": _rfc3339(since), "sort_order": "DESC", "limit": 100}
        if self.location_id:
            params["location_id"] = self.location_id
        found: list[dict[str, Any]] = []
        try:
            while True:
                body = await self.client.get_json("/v2/payments", params=params)
                if not isinstance(body, dict):
                    raise SchemaMismatch("ListPayments did not return an object", provider=self.slug)
                found += [p for p in body.get("payments") or [] if isinstance(p, dict) and p.get("reference_id") == ref]
                if not body.get("cursor"):
                    break
                params["cursor"] = body["cursor"]
        except (Retriable, OutcomeUnknown) as exc:
            if request is None:
                return GatewayResult(Outcome.UNKNOWN, retryable=True, message=f"lookup failed: {exc}"[:300])
        succeeded = [p for p in found if p.get("status") in ("COMPLETED", "APPROVED")]
        if succeeded:
            return self._payment_result(succeeded[0])
        if request is not None:  # same key, same body: Square returns the same payment or creates it once
            return await self.charge(request, idempotency_key)
        if any(p.get("status") == "PENDING" for p in found):
            return GatewayResult(Outcome.UNKNOWN, retryable=True, raw_status="PENDING")
        return GatewayResult(Outcome.UNKNOWN, retryable=True, raw_status="not_found",
                             message="no completed payment with this reference_id; pass the original request to "
                             "replay it with its idempotency key")

    async def capture(self, gateway_ref: str, amount_minor: int | None, idempotency_key: str) -> GatewayResult:
        if amount_minor is not None:
            raise InvalidInput("Square completes the authorized amount only", code="partial_capture_not_supported")
        sent = await self.client.mutate("POST", f"/v2/payments/{gateway_ref}/complete", json={},
                                        idempotency_key=square_key(idempotency_key))
        return self._classify(sent, lambda body: self._payment_result(body.get("payment") or {}))

    async def refund(self, gateway_ref: str, amount_minor: int, currency: str, idempotency_key: str, *,
                     reverse_split: bool) -> GatewayResult:
        if amount_minor <= 0:
            raise InvalidInput("refund amount must be positive", code="invalid_amount")
        body: dict[str, Any] = {"idempotency_key": square_key(idempotency_key), "payment_id": gateway_ref,
                                "amount_money": {"amount": amount_minor, "currency": currency.upper()}}
        if reverse_split:
            try:
                payment = await self.client.get_json(f"/v2/payments/{gateway_ref}")
            except (Retriable, OutcomeUnknown, Fatal) as exc:
                return preflight_failed(exc)
            p = payment.get("payment") if isinstance(payment, dict) else None
            if not isinstance(p, dict):
                raise SchemaMismatch("GetPayment did not return a payment", provider=self.slug)
            fee, total = _amount(p.get("app_fee_money")) or 0, _amount(p.get("amount_money")) or 0
            if fee and total:  # the platform gives back its fee in proportion to the refund (half up)
                body["app_fee_money"] = {"amount": (fee * amount_minor * 2 + total) // (2 * total),
                                         "currency": currency.upper()}
        sent = await self.client.mutate("POST", "/v2/refunds", json=body, idempotency_key=body["idempotency_key"])

        def ok(resp: dict[str, Any]) -> GatewayResult:
            refund = resp.get("refund") or {}
            status = str(refund.get("status"))
            outcome = {"COMPLETED": Outcome.SUCCEEDED, "PENDING": Outcome.SUCCEEDED,
                       "REJECTED": Outcome.DECLINED, "FAILED": Outcome.DECLINED}.get(status, Outcome.UNKNOWN)
            extra = {}
            if _amount(refund.get("app_fee_money")):
                extra["app_fee_refunded"] = str(_amount(refund.get("app_fee_money")))
            return GatewayResult(outcome, gateway_ref=_opt(refund.get("id")),
                                 amount_minor=_amount(refund.get("amount_money")), currency=currency.upper(),
                                 raw_status=status, native_split="app_fee_money" in body, extra=extra)
        return self._classify(sent, ok)

    # --- reconciliation -----------------------------------------------------------------------------------

    async def _pages(self, path: str, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        params = dict(params)
        while True:
            body = await self.client.get_json(path, params=params)
            if not isinstance(body, dict):
                raise SchemaMismatch(f"{path} did not return an object", provider=self.slug)
            out += [item for item in body.get(key) or [] if isinstance(item, dict)]
            if not body.get("cursor"):
                return out
            params["cursor"] = body["cursor"]

    async def settlements(self, since: datetime, until: datetime) -> list[SettlementItem]:
        params: dict[str, Any] = {"begin_time": _rfc3339(since), "end_time": _rfc3339(until), "limit": 100}
        if self.location_id:
            params["location_id"] = self.location_id
        items: list[SettlementItem] = []
        for payout in await self._pages("/v2/payouts", "payouts", params):
            payout_id = str(payout["id"])
            currency = str((payout.get("amount_money") or {}).get("currency", ""))
            entries = await self._pages(f"/v2/payouts/{payout_id}/payout-entries", "payout_entries", {"limit": 100})
            for e in entries:
                type_ = str(e.get("type"))
                details = next((v for k, v in e.items() if k.startswith("type_") and isinstance(v, dict)), {})
                gross = _amount(e.get("gross_amount_money")) or 0
                fee = _amount(e.get("fee_amount_money")) or 0
                items.append(SettlementItem(
                    gateway_ref=str(e["id"]), kind=_ENTRY_KIND.get(type_, "adjustment"), gross_minor=gross,
                    fee_minor=fee, net_minor=_amount(e.get("net_amount_money")) or gross - fee,
                    currency=str((e.get("gross_amount_money") or {}).get("currency", currency)),
                    occurred_at=_time(e.get("effective_at")) or datetime.now(UTC),
                    source_ref=_opt(details.get("payment_id")), payout_ref=payout_id, status=type_))
            net = _amount(payout.get("amount_money")) or 0
            items.append(SettlementItem(gateway_ref=payout_id, kind="payout", gross_minor=-net, fee_minor=0,
                                        net_minor=-net, currency=currency,
                                        occurred_at=_time(payout.get("created_at")) or datetime.now(UTC),
                                        payout_ref=payout_id, status=str(payout.get("status"))))
        return items

    # --- onboarding, disputes, events -------------------------------------------------------------------

    async def onboard(self, vendor_ref: str, return_url: str, refresh_url: str, *,
                      account_ref: str | None = None) -> OnboardingStep:
        return OnboardingStep(
            kind="redirect", url="/oauth/square/start",
            message="Square sellers connect through OAuth 2 (authorization code + PKCE, state bound to the "
            "vendor): start the hub's flow at GET /oauth/square/start; the access token lands in the vault.")

    async def submit_dispute_evidence(self, dispute_ref: str, evidence: DisputeEvidence) -> GatewayResult:
        text = evidence.explanation
        if evidence.service_date:
            text += f"\nService date: {evidence.service_date.isoformat()}"
        for label, value in (("Customer", evidence.customer_name), ("Customer e-mail", evidence.customer_email),
                             ("Service", evidence.product_description), ("Refund policy", evidence.refund_policy)):
            if value:
                text += f"\n{label}: {value}"
        key = square_key(f"evidence:{dispute_ref}:" + bounded_key(text, 64))
        sent = await self.client.mutate("POST", f"/v2/disputes/{dispute_ref}/evidence-text",
                                        json={"idempotency_key": key, "evidence_type": "GENERIC_EVIDENCE",
                                              "evidence_text": text[:500]}, idempotency_key=key)
        staged = self._classify(sent, lambda b: GatewayResult(Outcome.SUCCEEDED, raw_status="evidence_added",
                                                             gateway_ref=dispute_ref))
        if staged.outcome is not Outcome.SUCCEEDED or not evidence.submit:
            return staged
        sent = await self.client.mutate("POST", f"/v2/disputes/{dispute_ref}/submit-evidence", json={},
                                        idempotency_key=key)
        return self._classify(sent, lambda b: GatewayResult(
            Outcome.SUCCEEDED, gateway_ref=dispute_ref, raw_status=str((b.get("dispute") or {}).get("state"))))

    def parse_event(self, raw_body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        try:
            event = orjson.loads(raw_body)
            etype, event_id = str(event["type"]), str(event["event_id"])
            data = event["data"]
            obj = (data.get("object") or {}).get(data.get("type")) or {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput("not a Square event", code="invalid_event") from exc
        base: dict[str, Any] = {"event_id": event_id, "raw_type": etype, "occurred_at": _time(event.get("created_at"))}
        if etype in ("payment.created", "payment.updated"):
            status = str(obj.get("status"))
            kind = {"COMPLETED": EventKind.PAYMENT_SUCCEEDED, "FAILED": EventKind.PAYMENT_FAILED,
                    "CANCELED": EventKind.PAYMENT_FAILED}.get(status, EventKind.OTHER)
            return GatewayEvent(kind=kind, gateway_ref=_opt(obj.get("id")), reference=_opt(obj.get("reference_id")),
                                amount_minor=_amount(obj.get("amount_money")),
                                currency=(obj.get("amount_money") or {}).get("currency"), **base)
        if etype in ("refund.created", "refund.updated"):
            status = str(obj.get("status"))
            kind = {"COMPLETED": EventKind.REFUND_SUCCEEDED, "FAILED": EventKind.REFUND_FAILED,
                    "REJECTED": EventKind.REFUND_FAILED}.get(status, EventKind.OTHER)
            return GatewayEvent(kind=kind, gateway_ref=_opt(obj.get("payment_id")), refund_ref=_opt(obj.get("id")),
                                amount_minor=_amount(obj.get("amount_money")),
                                currency=(obj.get("amount_money") or {}).get("currency"), **base)
        if etype.startswith("dispute.") and "evidence" not in etype:
            state = str(obj.get("state"))
            if etype == "dispute.created":
                kind = EventKind.DISPUTE_OPENED
            else:
                kind = {"WON": EventKind.DISPUTE_WON, "LOST": EventKind.DISPUTE_LOST,
                        "ACCEPTED": EventKind.DISPUTE_LOST}.get(state, EventKind.DISPUTE_UPDATED)
            payment_id = _opt((obj.get("disputed_payment") or {}).get("payment_id"))
            currency = str((obj.get("amount_money") or {}).get("currency", ""))
            dispute = DisputeInfo(dispute_ref=str(obj.get("id") or obj.get("dispute_id")), charge_ref=payment_id,
                                  amount_minor=_amount(obj.get("amount_money")) or 0, currency=currency,
                                  reason=_opt(obj.get("reason")), status=state,
                                  evidence_due_by=_time(obj.get("due_at")))
            return GatewayEvent(kind=kind, gateway_ref=payment_id, amount_minor=dispute.amount_minor,
                                currency=currency or None, dispute=dispute, **base)
        if etype in ("payout.paid", "payout.failed"):
            kind = EventKind.PAYOUT_PAID if etype == "payout.paid" else EventKind.PAYOUT_FAILED
            return GatewayEvent(kind=kind, payout_ref=_opt(obj.get("id")),
                                amount_minor=_amount(obj.get("amount_money")),
                                currency=(obj.get("amount_money") or {}).get("currency"), **base)
        return GatewayEvent(kind=EventKind.OTHER, gateway_ref=_opt(obj.get("id")), **base)


def _opt(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
