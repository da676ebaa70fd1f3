"""Stripe Connect gateway: PaymentIntents with destination charges or separate transfers, refunds, disputes.

Wire format: form-encoded bodies with nested keys (``transfer_data[destination]``), ``Authorization: Bearer
<platform secret key>``, ``Idempotency-Key`` on every POST (our attempt key, <= 255 chars). Outcomes follow
Stripe's error docs: HTTP 402 ``card_error`` -> DECLINED; 400 ``invalid_request_error`` / 404 -> NOT_EXECUTED;
400 ``idempotency_error`` and 409 -> UNKNOWN (the key already has a history: look it up); 429 -> retried,
then NOT_EXECUTED (retryable); 5xx, timeouts and dropped connections -> replayed with the same key, then
UNKNOWN. ``lookup`` searches ``metadata['wedsync_attempt']`` and, when that finds nothing (Stripe search lags
up to a minute), replays the original request with the same key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import orjson

from wedsync.connectors.auth import BearerAuth
from wedsync.connectors.base import Capabilities, Channel, CredentialField
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

__all__ = ["StripeConnector", "form_encode"]

ATTEMPT_KEY = "wedsync_attempt"
PAGE = 100

_KIND_BY_TYPE = {
    "charge": "charge", "payment": "charge", "refund": "refund", "payment_refund": "refund",
    "transfer": "transfer", "transfer_refund": "transfer_reversal", "transfer_cancel": "transfer_reversal",
    "payout": "payout", "payout_cancel": "payout", "payout_failure": "payout", "application_fee": "fee",
    "application_fee_refund": "fee", "stripe_fee": "fee",
}


def form_encode(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's nested form encoding: ``{"a": {"b": 1}, "l": ["x"]}`` -> ``a[b]=1``, ``l[0]=x``; None dropped."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            pairs.extend(form_encode(value, name))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    pairs.extend(form_encode(item, f"{name}[{i}]"))
                else:
                    pairs.append((f"{name}[{i}]", _scalar(item)))
        else:
            pairs.append((name, _scalar(value)))
    return pairs


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ts(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


class StripeConnector(GatewayConnector):
    slug: ClassVar[str] = "stripe"
    display_name: ClassVar[str] = "Stripe Connect"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="payments",
        read=("payment_intents", "balance_transactions", "disputes"),
        write=("payment_intents", "refunds", "transfers", "transfer_reversals", "accounts", "account_links",
               "dispute_evidence"),
        webhooks=("payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded",
                  "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed", "payout.paid",
                  "payout.failed", "account.updated"),
        incremental=("balance_transactions",),
        notes="Native split: destination charges (application_fee_amount + transfer_data[destination]) or "
        "separate charges and transfers with transfer_group; refunds reverse the transfer and refund the "
        "application fee proportionally. Idempotency-Key on every POST; lookups search PaymentIntent "
        "metadata (eventually consistent, so the original request is replayed with its key when search "
        "finds nothing). Onboarding: Express account + account link. Dispute evidence: text fields only "
        "(no file uploads). Webhooks: Stripe-Signature with the endpoint secret.",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("secret_key", "Platform secret key (sk_live_... / sk_test_...)"),
        CredentialField("webhook_secret", "Webhook endpoint signing secret (whsec_...)", required=False),
    )
    default_base_url: ClassVar[str | None] = "https://api.stripe.com"
    docs_url: ClassVar[str | None] = "https://docs.stripe.com/api"
    supports_native_split: ClassVar[bool] = True
    supports_separate_transfers: ClassVar[bool] = True
    max_application_fee_ratio: ClassVar[float] = 1.0
    currencies: ClassVar[frozenset[str]] = frozenset({"USD", "EUR", "GBP", "CAD", "AUD", "JPY", "CHF", "SEK",
                                                      "NOK", "DKK", "NZD", "SGD", "HKD", "MXN", "PLN"})

    def __init__(self, *, secret_key: str, webhook_secret: str | None = None, base_url: str | None = None,
                 account_key: str = "default", timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, mutation_attempts: int = 2) -> None:
        self.webhook_secret = webhook_secret
        self.client = GatewayClient(
            self.slug, base_url or self.default_base_url or "", auth=BearerAuth(secret_key),
            account_key=account_key, timeout=timeout, transport=transport, idempotency_header="Idempotency-Key",
            headers={"Accept": "application/json"}, mutation_attempts=mutation_attempts)

    async def aclose(self) -> None:
        await self.client.aclose()

    # --- plumbing ---------------------------------------------------------------------------------------

    async def _post(self, path: str, data: Mapping[str, Any], key: str) -> Sent:
        return await self.client.mutate("POST", path, data=dict(form_encode(data)),
                                        idempotency_key=bounded_key(key, 255))

    @staticmethod
    def _body(response: httpx.Response) -> dict[str, Any] | None:
        try:
            body = orjson.loads(response.content)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _error_result(self, response: httpx.Response, body: dict[str, Any] | None) -> GatewayResult:
        """Classify a non-2xx answer (the 2xx ones are classified per object)."""
        status = response.status_code
        err = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
        assert isinstance(err, dict)
        etype, code = str(err.get("type") or ""), err.get("code")
        message = str(err.get("message") or f"HTTP {status}")[:300]
        if etype == "card_error" or status == 402:
            return GatewayResult(Outcome.DECLINED, gateway_ref=_pi_id(err.get("payment_intent")),
                                 decline_code=str(err.get("decline_code") or code or "card_declined"),
                                 message=message, raw_status="card_error", http_status=status,
                                 extra={k: str(err[k]) for k in ("charge",) if err.get(k)})
        if etype == "idempotency_error" or status == 409:
            return GatewayResult(Outcome.UNKNOWN, message=message, raw_status=etype or "conflict",
                                 decline_code=str(code) if code else None, http_status=status, retryable=True)
        return GatewayResult(Outcome.NOT_EXECUTED, message=message, raw_status=etype or "error",
                             decline_code=str(code) if code else None, http_status=status)

    def _classify(self, sent: Sent, ok: Any) -> GatewayResult:
        response = sent.response
        if response is None:
            return sent.failure()
        body = self._body(response)
        if response.status_code >= 300:
            return self._error_result(response, body)
        if body is None:  # executed (2xx) but unreadable: only a lookup can tell what it says
            return GatewayResult(Outcome.UNKNOWN, message="unreadable 2xx body", raw_status="garbled",
                                 http_status=response.status_code)
        result: GatewayResult = ok(body)
        return result

    @staticmethod
    def _intent_result(pi: Mapping[str, Any]) -> GatewayResult:
        status = str(pi.get("status"))
        amount = pi.get("amount_received") or pi.get("amount")
        charge = pi.get("latest_charge")
        extra: dict[str, str] = {}
        if isinstance(charge, Mapping):  # expanded (destination charges ask for it): its transfer id
            extra["charge_id"] = str(charge.get("id"))
            if charge.get("transfer"):
                tr = charge["transfer"]
                extra["transfer_id"] = str(tr.get("id") if isinstance(tr, Mapping) else tr)
        elif charge:
            extra["charge_id"] = str(charge)
        if pi.get("transfer_group"):
            extra["transfer_group"] = str(pi["transfer_group"])
        common: dict[str, Any] = {
            "gateway_ref": str(pi.get("id")), "amount_minor": int(amount) if amount is not None else None,
            "currency": str(pi.get("currency", "")).upper() or None, "raw_status": status,
            "native_split": bool(pi.get("transfer_data")) or pi.get("application_fee_amount") is not None,
            "extra": extra,
        }
        if status in ("succeeded", "requires_capture"):
            return GatewayResult(Outcome.SUCCEEDED, **common)
        if status == "processing":
            return GatewayResult(Outcome.UNKNOWN, retryable=True, message="payment is processing", **common)
        err = pi.get("last_payment_error") if isinstance(pi.get("last_payment_error"), dict) else None
        if err:
            return GatewayResult(Outcome.DECLINED, decline_code=str(err.get("decline_code") or err.get("code")),
                                 message=str(err.get("message") or "")[:300], **common)
        if status in ("requires_action", "requires_payment_method"):
            return GatewayResult(Outcome.DECLINED, decline_code="authentication_required", **common)
        # requires_confirmation / canceled: the payment was not made
        return GatewayResult(Outcome.NOT_EXECUTED, **common)

    # --- charges ------------------------------------------------------------------------------------------

    def charge_params(self, req: ChargeRequest, idempotency_key: str) -> dict[str, Any]:
        """The form fields of ``POST /v1/payment_intents`` for ``req`` (also used to replay it)."""
        params: dict[str, Any] = {
            "amount": req.amount_minor, "currency": req.currency.lower(), "payment_method": req.payment_method,
            "payment_method_types": ["card"], "confirm": True, "error_on_requires_action": True,
            "capture_method": "automatic" if req.capture else "manual", "description": req.description,
            "receipt_email": req.customer_email,
            "metadata": {**req.metadata, "reference": req.reference, ATTEMPT_KEY: idempotency_key[:500]},
        }
        split = req.split
        if split is not None:
            if split.mode == "destination":
                params["application_fee_amount"] = split.application_fee_minor
                params["transfer_data"] = {"destination": split.destination_account}
                # the charge's transfer id comes back with it: a dispute or refund can reverse the transfer
                params["expand"] = ["latest_charge"]
            params["transfer_group"] = split.transfer_group or req.reference
        return params

    async def charge(self, req: ChargeRequest, idempotency_key: str) -> GatewayResult:
        self.check_split(req)
        sent = await self._post("/v1/payment_intents", self.charge_params(req, idempotency_key), idempotency_key)
        return self._classify(sent, self._intent_result)

    async def lookup(self, reference: str, idempotency_key: str, *,
                     request: ChargeRequest | None = None) -> GatewayResult:
        query = f"metadata['{ATTEMPT_KEY}']:'{_quote(idempotency_key[:500])}'"
        try:
            body = await self.client.get_json("/v1/payment_intents/search", params={"query": query, "limit": 10})
        except (Retriable, OutcomeUnknown) as exc:  # could not ask: the outcome stays unknown
            if request is not None:
                return await self.charge(request, idempotency_key)
            return GatewayResult(Outcome.UNKNOWN, retryable=True, message=f"lookup failed: {exc}"[:300])
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise SchemaMismatch("payment_intents/search did not return a search_result", provider=self.slug)
        found = [pi for pi in data if isinstance(pi, dict)
                 and (pi.get("metadata") or {}).get("reference", reference) == reference]
        if found:
            results = [self._intent_result(pi) for pi in found]
            for outcome in (Outcome.SUCCEEDED, Outcome.UNKNOWN, Outcome.DECLINED):
                for r in results:
                    if r.outcome is outcome:
                        return r
            return results[0]
        if request is not None:  # replay with the same key: the stored answer, or the attempt runs once
            return await self.charge(request, idempotency_key)
        return GatewayResult(Outcome.UNKNOWN, retryable=True, raw_status="not_indexed",
                             message="no PaymentIntent found by search (it lags up to a minute); pass the "
                             "original request to replay it with its Idempotency-Key")

    async def capture(self, gateway_ref: str, amount_minor: int | None, idempotency_key: str) -> GatewayResult:
        params = {"amount_to_capture": amount_minor} if amount_minor else {}
        sent = await self._post(f"/v1/payment_intents/{gateway_ref}/capture", params, idempotency_key)
        return self._classify(sent, self._intent_result)

    # --- refunds and transfers ------------------------------------------------------------------------

    async def refund(self, gateway_ref: str, amount_minor: int, currency: str, idempotency_key: str, *,
                     reverse_split: bool) -> GatewayResult:
        if amount_minor <= 0:
            raise InvalidInput("refund amount must be positive", code="invalid_amount")
        params: dict[str, Any] = {"amount": amount_minor, "metadata": {ATTEMPT_KEY: idempotency_key[:500]}}
        params["charge" if gateway_ref.startswith(("ch_", "py_")) else "payment_intent"] = gateway_ref
        if reverse_split:
            params["reverse_transfer"] = True
            params["refund_application_fee"] = True
        sent = await self._post("/v1/refunds", params, idempotency_key)

        def ok(body: dict[str, Any]) -> GatewayResult:
            status = str(body.get("status"))
            outcome = {"succeeded": Outcome.SUCCEEDED, "pending": Outcome.SUCCEEDED,
                       "requires_action": Outcome.SUCCEEDED, "failed": Outcome.DECLINED,
                       "canceled": Outcome.DECLINED}.get(status, Outcome.UNKNOWN)
            extra = {"transfer_reversal": str(body["transfer_reversal"])} if body.get("transfer_reversal") else {}
            return GatewayResult(outcome, gateway_ref=str(body.get("id")), amount_minor=body.get("amount"),
                                 currency=str(body.get("currency", "")).upper() or None, raw_status=status,
                                 native_split=reverse_split, decline_code=body.get("failure_reason"), extra=extra)
        return self._classify(sent, ok)

    async def _charge_id(self, gateway_ref: str) -> str:
        if not gateway_ref.startswith("pi_"):
            return gateway_ref
        pi = await self.client.get_json(f"/v1/payment_intents/{gateway_ref}")
        charge = pi.get("latest_charge") if isinstance(pi, dict) else None
        if not isinstance(charge, str):
            raise InvalidInput(f"{gateway_ref} has no charge to transfer from", code="no_source_charge")
        return charge

    @staticmethod
    def _transfer_result(body: dict[str, Any]) -> GatewayResult:
        return GatewayResult(Outcome.SUCCEEDED, gateway_ref=str(body.get("id")), amount_minor=body.get("amount"),
                             currency=str(body.get("currency", "")).upper() or None,
                             raw_status=str(body.get("object")), native_split=True)

    async def transfer(self, destination_account: str, amount_minor: int, currency: str, idempotency_key: str,
                       *, transfer_group: str | None = None, source_charge: str | None = None) -> GatewayResult:
        if amount_minor <= 0:
            raise InvalidInput("transfer amount must be positive", code="invalid_amount")
        params: dict[str, Any] = {"amount": amount_minor, "currency": currency.lower(),
                                  "destination": destination_account, "transfer_group": transfer_group,
                                  "metadata": {ATTEMPT_KEY: idempotency_key[:500]}}
        if source_charge:
            try:
                params["source_transaction"] = await self._charge_id(source_charge)
            except (Retriable, OutcomeUnknown, Fatal) as exc:
                return preflight_failed(exc)
        sent = await self._post("/v1/transfers", params, idempotency_key)
        return self._classify(sent, self._transfer_result)

    async def reverse_transfer(self, transfer_ref: str, amount_minor: int, idempotency_key: str) -> GatewayResult:
        if amount_minor <= 0:
            raise InvalidInput("reversal amount must be positive", code="invalid_amount")
        sent = await self._post(f"/v1/transfers/{transfer_ref}/reversals",
                                {"amount": amount_minor, "metadata": {ATTEMPT_KEY: idempotency_key[:500]}},
                                idempotency_key)
        return self._classify(sent, self._transfer_result)

    # --- reconciliation -----------------------------------------------------------------------------------

    async def settlements(self, since: datetime, until: datetime) -> list[SettlementItem]:
        items: list[SettlementItem] = []
        params: dict[str, Any] = {"created[gte]": int(since.timestamp()), "created[lt]": int(until.timestamp()),
                                  "limit": PAGE, "expand[0]": "data.source"}
        while True:
            body = await self.client.get_json("/v1/balance_transactions", params=params)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise SchemaMismatch("balance_transactions did not return a list", provider=self.slug)
            for txn in data:
                items.append(self._settlement(txn))
            if not body.get("has_more") or not data:
                return items
            params["starting_after"] = data[-1]["id"]

    def _settlement(self, txn: Mapping[str, Any]) -> SettlementItem:
        source = txn.get("source")
        source_obj = source if isinstance(source, dict) else {}
        source_id = source_obj.get("id") if source_obj else source
        type_ = str(txn.get("type"))
        kind = _KIND_BY_TYPE.get(type_, "adjustment")
        if type_ == "adjustment" and str(txn.get("reporting_category", "")).startswith("dispute"):
            kind = "dispute"
        metadata = source_obj.get("metadata") if isinstance(source_obj.get("metadata"), dict) else {}
        source_ref = source_obj.get("payment_intent") or source_id
        if kind in ("transfer", "transfer_reversal", "payout", "fee"):
            source_ref = source_id
        occurred = _ts(txn.get("created")) or datetime.now(UTC)
        return SettlementItem(
            gateway_ref=str(txn["id"]), kind=kind, gross_minor=int(txn["amount"]), fee_minor=int(txn["fee"]),
            net_minor=int(txn["net"]), currency=str(txn["currency"]).upper(), occurred_at=occurred,
            source_ref=str(source_ref) if source_ref else None,
            reference=str(metadata["reference"]) if metadata and metadata.get("reference") else None,
            payout_ref=str(source_id) if kind == "payout" else None, status=str(txn.get("status")))

    # --- onboarding, disputes, events -------------------------------------------------------------------

    async def onboard(self, vendor_ref: str, return_url: str, refresh_url: str, *,
                      account_ref: str | None = None) -> OnboardingStep:
        if account_ref is None:
            sent = await self._post("/v1/accounts", {
                "type": "express", "metadata": {"wedsync_vendor": vendor_ref},
                "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
            }, f"account-{vendor_ref}")
            body = self._require(sent, "account")
            account_ref = str(body["id"])
        sent = await self._post("/v1/account_links", {
            "account": account_ref, "refresh_url": refresh_url, "return_url": return_url,
            "type": "account_onboarding"}, f"account-link-{account_ref}-{return_url}-{refresh_url}-"
            f"{int(datetime.now(UTC).timestamp()) // 240}")
        link = self._require(sent, "account_link")
        return OnboardingStep(kind="redirect", url=str(link["url"]), account_ref=account_ref,
                              expires_at=_ts(link.get("expires_at")),
                              message="Send the vendor to Stripe's hosted onboarding; a fresh link is needed "
                              "after it expires (refresh_url).")

    def _require(self, sent: Sent, what: str) -> dict[str, Any]:
        result = self._classify(sent, lambda body: GatewayResult(Outcome.SUCCEEDED, raw_status=what))
        if result.outcome is not Outcome.SUCCEEDED or sent.response is None:
            raise InvalidInput(f"Stripe refused to create the {what}: {result.message}", code="gateway_rejected")
        body = self._body(sent.response)
        if body is None or body.get("object") != what:
            raise SchemaMismatch(f"Stripe did not return an {what}", provider=self.slug)
        return body

    async def submit_dispute_evidence(self, dispute_ref: str, evidence: DisputeEvidence) -> GatewayResult:
        fields = {
            "uncategorized_text": evidence.explanation,
            "service_date": evidence.service_date.isoformat() if evidence.service_date else None,
            "customer_name": evidence.customer_name, "customer_email_address": evidence.customer_email,
            "product_description": evidence.product_description, "refund_policy": evidence.refund_policy,
        }
        params: dict[str, Any] = {"evidence": fields, "submit": evidence.submit}
        digest = hashlib.sha256(orjson.dumps(params, default=str)).hexdigest()[:16]
        sent = await self._post(f"/v1/disputes/{dispute_ref}", params, f"evidence-{dispute_ref}-{digest}")
        return self._classify(sent, lambda body: GatewayResult(
            Outcome.SUCCEEDED, gateway_ref=str(body.get("id")), raw_status=str(body.get("status")),
            amount_minor=body.get("amount"), currency=str(body.get("currency", "")).upper() or None))

    def parse_event(self, raw_body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        try:
            event = orjson.loads(raw_body)
            obj = event["data"]["object"]
            etype = str(event["type"])
            event_id = str(event["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput("not a Stripe event", code="invalid_event") from exc
        if not isinstance(obj, dict):
            raise InvalidInput("Stripe event without data.object", code="invalid_event")
        occurred = _ts(event.get("created"))
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        reference = str(meta["reference"]) if meta and meta.get("reference") else None
        currency = str(obj.get("currency", "")).upper() or None
        base: dict[str, Any] = {"event_id": event_id, "raw_type": etype, "occurred_at": occurred,
                                "currency": currency, "reference": reference,
                                "account_ref": str(event["account"]) if event.get("account") else None}
        if etype in ("payment_intent.succeeded", "payment_intent.payment_failed"):
            kind = EventKind.PAYMENT_SUCCEEDED if etype.endswith("succeeded") else EventKind.PAYMENT_FAILED
            return GatewayEvent(kind=kind, gateway_ref=str(obj.get("id")),
                                amount_minor=obj.get("amount_received") or obj.get("amount"), **base)
        if etype == "charge.refunded":
            refunds = (obj.get("refunds") or {}).get("data") or []
            last = refunds[-1] if refunds and isinstance(refunds[-1], dict) else {}
            return GatewayEvent(kind=EventKind.REFUND_SUCCEEDED,
                                gateway_ref=str(obj.get("payment_intent") or obj.get("id")),
                                refund_ref=str(last["id"]) if last.get("id") else None,
                                amount_minor=last.get("amount", obj.get("amount_refunded")), **base)
        if etype.startswith("charge.dispute."):
            status = str(obj.get("status"))
            if etype == "charge.dispute.created":
                kind = EventKind.DISPUTE_OPENED
            elif etype == "charge.dispute.closed" and status in ("won", "lost"):
                kind = EventKind.DISPUTE_WON if status == "won" else EventKind.DISPUTE_LOST
            else:
                kind = EventKind.DISPUTE_UPDATED
            details = obj.get("evidence_details") if isinstance(obj.get("evidence_details"), dict) else {}
            dispute = DisputeInfo(dispute_ref=str(obj.get("id")), charge_ref=_str(obj.get("charge")),
                                  amount_minor=int(obj.get("amount") or 0), currency=currency or "",
                                  reason=_str(obj.get("reason")), status=status,
                                  evidence_due_by=_ts(details.get("due_by")) if details else None)
            return GatewayEvent(kind=kind, gateway_ref=_str(obj.get("payment_intent") or obj.get("charge")),
                                amount_minor=dispute.amount_minor, dispute=dispute, **base)
        if etype in ("payout.paid", "payout.failed"):
            kind = EventKind.PAYOUT_PAID if etype == "payout.paid" else EventKind.PAYOUT_FAILED
            return GatewayEvent(kind=kind, payout_ref=str(obj.get("id")), amount_minor=obj.get("amount"), **base)
        if etype == "account.updated":
            return GatewayEvent(kind=EventKind.ACCOUNT_UPDATED, **{**base, "account_ref": str(obj.get("id"))})
        return GatewayEvent(kind=EventKind.OTHER, gateway_ref=_str(obj.get("id")), **base)


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _pi_id(value: Any) -> str | None:
    if isinstance(value, dict):
        return _str(value.get("id"))
    return _str(value)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
