"""PayPal gateway: Orders v2 with platform_fees, capture refunds, reporting transactions, disputes, partner referrals.

Wire format: OAuth 2 client credentials (``POST /v1/oauth2/token`` with HTTP Basic; the token is cached until
shortly before it expires and fetched again on a 401), JSON bodies with decimal-string money, and
``PayPal-Request-Id`` (<= 108 chars, our attempt key) on every POST. A charge is one ``POST
/v2/checkout/orders`` with ``intent=CAPTURE`` and a vaulted ``payment_source`` (``card.vault_id``), which
PayPal captures at once; the vendor is ``payee.merchant_id`` and the platform's share
``payment_instruction.platform_fees``. ``invoice_id`` carries our reference (PayPal refuses a second
completed payment for it: ``DUPLICATE_INVOICE_ID``), ``custom_id`` our attempt key.

Outcomes: capture COMPLETED -> SUCCEEDED (``gateway_ref`` is the capture id, the order id is in
``extra["order_id"]``); capture DECLINED/FAILED or 422 ``INSTRUMENT_DECLINED``-like issues -> DECLINED; capture
PENDING -> UNKNOWN (a webhook or a later lookup settles it); ``DUPLICATE_INVOICE_ID`` -> UNKNOWN (this reference
was already paid: look it up); other 4xx -> NOT_EXECUTED; 5xx/timeouts -> replayed with the same
``PayPal-Request-Id``, then UNKNOWN. ``lookup`` replays the original request with its ``PayPal-Request-Id``
(PayPal returns the stored order) and otherwise searches the reporting API by ``invoice_id`` (which lags).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import orjson

from wedsync.connectors.base import Capabilities, Channel, CredentialField
from wedsync.connectors.errors import Fatal, OutcomeUnknown, RateLimited, ReauthRequired, Retriable, SchemaMismatch
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
    from_decimal,
    preflight_failed,
    to_decimal,
)
from wedsync.errors import InvalidInput
from wedsync.logging import register_secret

__all__ = ["ClientCredentialsAuth", "PayPalConnector"]

DECLINE_ISSUES = frozenset({
    "INSTRUMENT_DECLINED", "TRANSACTION_REFUSED", "PAYMENT_SOURCE_DECLINED_BY_PROCESSOR", "CARD_EXPIRED",
    "ALIAS_DECLINED_BY_PROCESSOR", "PAYEE_BLOCKED_TRANSACTION", "TRANSACTION_BLOCKED_BY_PAYEE", "TOKEN_EXPIRED",
})
_EVENT_CODE_KIND = (("T00", "charge"), ("T11", "refund"), ("T12", "dispute"), ("T0113", "fee"), ("T0114", "fee"),
                    ("T04", "payout"), ("T01", "fee"))
REPORT_WINDOW = timedelta(days=31)


class ClientCredentialsAuth(httpx.Auth):
    """PayPal's OAuth 2 client-credentials bearer token, fetched through the connector's own transport."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, *, skew: float = 120.0) -> None:
        self.token_url = token_url
        self._basic = httpx.BasicAuth(client_id, client_secret)
        self._token: str | None = None
        self._expires = 0.0
        self.skew = skew
        register_secret(client_secret)

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(token_url={self.token_url!r})"

    def _token_request(self) -> httpx.Request:
        request = httpx.Request("POST", self.token_url, data={"grant_type": "client_credentials"},
                                headers={"Accept": "application/json"})
        return next(self._basic.auth_flow(request))

    def _take(self, response: httpx.Response) -> None:
        if response.status_code in (400, 401, 403):
            raise ReauthRequired("PayPal rejected the client credentials", provider="paypal",
                                 http_status=response.status_code)
        if response.status_code == 429:
            raise RateLimited("PayPal token endpoint rate limited", retry_after=1.0, provider="paypal")
        if response.status_code >= 300:
            raise Retriable(f"PayPal token endpoint -> {response.status_code}", provider="paypal",
                            http_status=response.status_code)
        try:
            body = response.json()
            token, expires_in = str(body["access_token"]), float(body.get("expires_in") or 300)
        except (ValueError, KeyError, TypeError) as exc:
            raise SchemaMismatch("PayPal token endpoint answered without an access_token", provider="paypal") from exc
        register_secret(token)
        self._token, self._expires = token, time.monotonic() + expires_in

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._token is None or time.monotonic() > self._expires - self.skew:
            token_response = yield self._token_request()
            await token_response.aread()
            self._take(token_response)
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:  # revoked or expired early: one fresh token, one retry
            token_response = yield self._token_request()
            await token_response.aread()
            self._take(token_response)
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


def _minor(money: Any) -> int | None:
    if not isinstance(money, dict) or not isinstance(money.get("currency_code"), str):
        return None
    try:
        return from_decimal(str(money.get("value")), money["currency_code"])
    except (ValueError, InvalidInput):
        return None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _opt(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


class PayPalConnector(GatewayConnector):
    slug: ClassVar[str] = "paypal"
    display_name: ClassVar[str] = "PayPal"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="payments",
        read=("orders", "captures", "reporting_transactions", "disputes"),
        write=("orders", "refunds", "partner_referrals", "dispute_evidence"),
        webhooks=("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.DENIED", "PAYMENT.CAPTURE.REFUNDED",
                  "CUSTOMER.DISPUTE.CREATED", "CUSTOMER.DISPUTE.UPDATED", "CUSTOMER.DISPUTE.RESOLVED"),
        incremental=("reporting_transactions",),
        notes="Platform (partner) credentials; the vendor is payee.merchant_id and the platform's share is "
        "payment_instruction.platform_fees, refunded proportionally. Charges use vaulted payment sources "
        "(no buyer redirect); authorize-only is not built. PayPal-Request-Id on every POST; lookups replay "
        "the request (PayPal has no order search; the reporting API lags up to hours). Onboarding: partner "
        "referral. Webhooks: certificate-signed (RSA-SHA256), or verify-webhook-signature.",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("client_id", "REST app client id (platform)", secret=False),
        CredentialField("client_secret", "REST app secret (platform)"),
        CredentialField("webhook_secret", "Webhook id of the subscription (PayPal signs with it)", secret=False,
                        required=False),
    )
    default_base_url: ClassVar[str | None] = "https://api-m.paypal.com"
    docs_url: ClassVar[str | None] = "https://developer.paypal.com/api/rest/"
    supports_native_split: ClassVar[bool] = True
    max_application_fee_ratio: ClassVar[float] = 1.0
    currencies: ClassVar[frozenset[str]] = frozenset({"USD", "EUR", "GBP", "CAD", "AUD", "JPY", "CHF", "SEK",
                                                      "NOK", "DKK", "NZD", "SGD", "HKD", "MXN", "PLN", "CZK"})

    def __init__(self, *, client_id: str, client_secret: str, webhook_secret: str | None = None,
                 base_url: str | None = None, account_key: str = "default", timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, mutation_attempts: int = 2) -> None:
        base = (base_url or self.default_base_url or "").rstrip("/")
        self.webhook_id = webhook_secret
        self.client = GatewayClient(
            self.slug, base, auth=ClientCredentialsAuth(f"{base}/v1/oauth2/token", client_id, client_secret),
            account_key=account_key, timeout=timeout, transport=transport, idempotency_header="PayPal-Request-Id",
            headers={"Accept": "application/json"}, mutation_attempts=mutation_attempts)

    async def aclose(self) -> None:
        await self.client.aclose()

    # --- classification ---------------------------------------------------------------------------------

    @staticmethod
    def _body(response: httpx.Response) -> dict[str, Any] | None:
        try:
            body = orjson.loads(response.content)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _classify(self, sent: Sent, ok: Any) -> GatewayResult:
        response = sent.response
        if response is None:
            return sent.failure()
        body = self._body(response)
        status = response.status_code
        if status < 300:
            if body is None:
                return GatewayResult(Outcome.UNKNOWN, raw_status="garbled", message="unreadable 2xx body",
                                     http_status=status)
            result: GatewayResult = ok(body)
            return result
        details = (body or {}).get("details") if isinstance((body or {}).get("details"), list) else []
        first = details[0] if details and isinstance(details[0], dict) else {}
        issue = str(first.get("issue") or (body or {}).get("name") or f"HTTP_{status}")
        message = str(first.get("description") or (body or {}).get("message") or "")[:300]
        if issue in DECLINE_ISSUES:
            return GatewayResult(Outcome.DECLINED, decline_code=issue, message=message,
                                 raw_status="UNPROCESSABLE_ENTITY", http_status=status)
        if issue == "DUPLICATE_INVOICE_ID" or status == 409:
            return GatewayResult(Outcome.UNKNOWN, decline_code=issue, message=message, raw_status=issue,
                                 http_status=status, retryable=True)
        return GatewayResult(Outcome.NOT_EXECUTED, decline_code=issue, message=message,
                             raw_status=str((body or {}).get("name") or status), http_status=status)

    @staticmethod
    def _order_result(order: Mapping[str, Any]) -> GatewayResult:
        units = order.get("purchase_units") if isinstance(order.get("purchase_units"), list) else []
        unit = units[0] if units and isinstance(units[0], dict) else {}
        captures = ((unit.get("payments") or {}).get("captures") or []) if unit else []
        order_id = str(order.get("id"))
        native = bool((unit.get("payment_instruction") or {}).get("platform_fees")) if unit else False
        if not captures:
            return GatewayResult(Outcome.NOT_EXECUTED, gateway_ref=None, raw_status=str(order.get("status")),
                                 message="the order awaits payer approval", extra={"order_id": order_id})
        capture = captures[-1]
        status = str(capture.get("status"))
        money = capture.get("amount")
        breakdown = capture.get("seller_receivable_breakdown") or {}
        common: dict[str, Any] = {
            "gateway_ref": _opt(capture.get("id")), "amount_minor": _minor(money),
            "currency": (money or {}).get("currency_code"), "raw_status": status, "native_split": native,
            "fee_minor": _minor(breakdown.get("paypal_fee")), "extra": {"order_id": order_id},
        }
        if status in ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"):
            return GatewayResult(Outcome.SUCCEEDED, **common)
        if status == "PENDING":
            return GatewayResult(Outcome.UNKNOWN, retryable=True, message="capture pending", **common)
        code = (capture.get("processor_response") or {}).get("response_code")
        return GatewayResult(Outcome.DECLINED, decline_code=str(code or status), **common)

    # --- charges -------------------------------------------------------------------------------------------

    def order_body(self, req: ChargeRequest, idempotency_key: str) -> dict[str, Any]:
        currency = req.currency.upper()
        unit: dict[str, Any] = {
            "reference_id": bounded_key(req.reference, 256),
            "amount": {"currency_code": currency, "value": to_decimal(req.amount_minor, currency)},
            "invoice_id": bounded_key(req.reference, 127), "custom_id": bounded_key(idempotency_key, 127),
        }
        if req.description:
            unit["description"] = req.description[:127]
        if req.split is not None:
            unit["payee"] = {"merchant_id": req.split.destination_account}
            if req.split.application_fee_minor:
                unit["payment_instruction"] = {"disbursement_mode": "INSTANT", "platform_fees": [
                    {"amount": {"currency_code": currency,
                                "value": to_decimal(req.split.application_fee_minor, currency)}}]}
        return {"intent": "CAPTURE", "purchase_units": [unit],
                "payment_source": {"card": {"vault_id": req.payment_method}}}

    async def charge(self, req: ChargeRequest, idempotency_key: str) -> GatewayResult:
        self.check_split(req)
        if not req.capture:
            raise InvalidInput("authorize-only payments are not built for PayPal", code="capture_required")
        sent = await self.client.mutate("POST", "/v2/checkout/orders", json=self.order_body(req, idempotency_key),
                                        headers={"Prefer": "return=representation"},
                                        idempotency_key=bounded_key(idempotency_key, 108))
        return self._classify(sent, self._order_result)

    async def lookup(self, reference: str, idempotency_key: str, *,
                     request: ChargeRequest | None = None) -> GatewayResult:
        if request is not None:  # same PayPal-Request-Id: PayPal returns the stored order (or runs it once)
            result = await self.charge(request, idempotency_key)
            if result.outcome is not Outcome.UNKNOWN or result.raw_status != "DUPLICATE_INVOICE_ID":
                return result
        invoice = bounded_key(reference, 127)
        now = datetime.now(UTC)
        try:
            found = await self._report(now - timedelta(days=3), now + timedelta(minutes=5))
        except (Retriable, OutcomeUnknown, Fatal) as exc:
            return GatewayResult(Outcome.UNKNOWN, retryable=True, message=f"lookup failed: {exc}"[:300])
        for info in found:
            if info.get("invoice_id") == invoice and str(info.get("transaction_event_code", "")).startswith("T00"):
                money = info.get("transaction_amount")
                return GatewayResult(Outcome.SUCCEEDED, gateway_ref=_opt(info.get("transaction_id")),
                                     amount_minor=_minor(money), currency=(money or {}).get("currency_code"),
                                     raw_status=str(info.get("transaction_status")))
        return GatewayResult(Outcome.UNKNOWN, retryable=True, raw_status="not_reported",
                             message="no capture for this invoice_id in the reporting API (it lags); pass the "
                             "original request to replay it with its PayPal-Request-Id")

    async def refund(self, gateway_ref: str, amount_minor: int, currency: str, idempotency_key: str, *,
                     reverse_split: bool) -> GatewayResult:
        if amount_minor <= 0:
            raise InvalidInput("refund amount must be positive", code="invalid_amount")
        cur = currency.upper()
        body: dict[str, Any] = {"amount": {"currency_code": cur, "value": to_decimal(amount_minor, cur)}}
        if reverse_split:
            try:
                capture = await self.client.get_json(f"/v2/payments/captures/{gateway_ref}")
            except (Retriable, OutcomeUnknown, Fatal) as exc:
                return preflight_failed(exc)
            if not isinstance(capture, dict):
                raise SchemaMismatch("GET capture did not return an object", provider=self.slug)
            fees = (capture.get("seller_receivable_breakdown") or {}).get("platform_fees") or []
            fee = sum(_minor(f.get("amount")) or 0 for f in fees if isinstance(f, dict))
            total = _minor(capture.get("amount")) or 0
            if fee and total:
                share = (fee * amount_minor * 2 + total) // (2 * total)
                if share:
                    body["payment_instruction"] = {"platform_fees": [
                        {"amount": {"currency_code": cur, "value": to_decimal(share, cur)}}]}
        sent = await self.client.mutate("POST", f"/v2/payments/captures/{gateway_ref}/refund", json=body,
                                        headers={"Prefer": "return=representation"},
                                        idempotency_key=bounded_key(idempotency_key, 108))

        def ok(refund: dict[str, Any]) -> GatewayResult:
            status = str(refund.get("status"))
            outcome = {"COMPLETED": Outcome.SUCCEEDED, "PENDING": Outcome.SUCCEEDED,
                       "CANCELLED": Outcome.DECLINED, "FAILED": Outcome.DECLINED}.get(status, Outcome.UNKNOWN)
            fees_back = (refund.get("seller_payable_breakdown") or {}).get("platform_fees") or []
            extra = {"platform_fee_refunded": str(sum(_minor(f.get("amount")) or 0 for f in fees_back))} \
                if fees_back else {}
            return GatewayResult(outcome, gateway_ref=_opt(refund.get("id")), amount_minor=_minor(refund.get("amount")),
                                 currency=cur, raw_status=status, native_split="payment_instruction" in body,
                                 extra=extra)
        return self._classify(sent, ok)

    # --- reconciliation -----------------------------------------------------------------------------------

    async def _report(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        start = since
        while start < until:
            end = min(until, start + REPORT_WINDOW)
            page = 1
            while True:
                body = await self.client.get_json("/v1/reporting/transactions", params={
                    "start_date": _stamp(start), "end_date": _stamp(end), "fields": "all", "page_size": 500,
                    "page": page})
                if not isinstance(body, dict) or not isinstance(body.get("transaction_details", []), list):
                    raise SchemaMismatch("reporting/transactions did not return a search response",
                                         provider=self.slug)
                out += [t["transaction_info"] for t in body.get("transaction_details", [])
                        if isinstance(t, dict) and isinstance(t.get("transaction_info"), dict)]
                if page >= int(body.get("total_pages") or 1):
                    break
                page += 1
            start = end
        return out

    async def settlements(self, since: datetime, until: datetime) -> list[SettlementItem]:
        items = []
        for info in await self._report(since, until):
            code = str(info.get("transaction_event_code", ""))
            kind = next((k for prefix, k in sorted(_EVENT_CODE_KIND, key=lambda p: -len(p[0]))
                         if code.startswith(prefix)), "adjustment")
            money = info.get("transaction_amount") or {}
            gross = _minor(money) or 0
            fee = -(_minor_signed(info.get("fee_amount")) or 0)  # PayPal reports fees as negative amounts
            items.append(SettlementItem(
                gateway_ref=str(info.get("transaction_id")), kind=kind, gross_minor=_minor_signed(money) or gross,
                fee_minor=fee, net_minor=(_minor_signed(money) or gross) - fee,
                currency=str(money.get("currency_code", "")),
                occurred_at=_time(info.get("transaction_initiation_date")) or datetime.now(UTC),
                source_ref=_opt(info.get("transaction_id")) if kind == "charge" else None,
                reference=_opt(info.get("invoice_id")), status=_opt(info.get("transaction_status"))))
        return items

    # --- onboarding, disputes, events -------------------------------------------------------------------

    async def onboard(self, vendor_ref: str, return_url: str, refresh_url: str, *,
                      account_ref: str | None = None) -> OnboardingStep:
        body = {
            "tracking_id": vendor_ref,
            "operations": [{"operation": "API_INTEGRATION", "api_integration_preference": {"rest_api_integration": {
                "integration_method": "PAYPAL", "integration_type": "THIRD_PARTY",
                "third_party_details": {"features": ["PAYMENT", "REFUND", "PARTNER_FEE", "READ_SELLER_DISPUTE",
                                                     "UPDATE_SELLER_DISPUTE"]}}}}],
            "products": ["EXPRESS_CHECKOUT"],
            "legal_consents": [{"type": "SHARE_DATA_CONSENT", "granted": True}],
            "partner_config_override": {"return_url": return_url},
        }
        sent = await self.client.mutate("POST", "/v2/customer/partner-referrals", json=body,
                                        idempotency_key=bounded_key(f"referral-{vendor_ref}", 108))
        response = sent.response
        data = self._body(response) if response is not None else None
        if response is None or response.status_code >= 300 or data is None:
            result = self._classify(sent, lambda b: GatewayResult(Outcome.SUCCEEDED))
            raise InvalidInput(f"PayPal refused the partner referral: {result.message}", code="gateway_rejected")
        links = {str(link.get("rel")): str(link.get("href")) for link in data.get("links") or []
                 if isinstance(link, dict)}
        if "action_url" not in links:
            raise SchemaMismatch("partner referral without an action_url", provider=self.slug)
        referral_id = links.get("self", "").rstrip("/").rsplit("/", 1)[-1] or None
        return OnboardingStep(kind="redirect", url=links["action_url"], account_ref=referral_id,
                              message="Send the vendor to PayPal; on return PayPal reports the seller's "
                              "merchant id (merchantIdInPayPal), which becomes the split destination.")

    async def submit_dispute_evidence(self, dispute_ref: str, evidence: DisputeEvidence) -> GatewayResult:
        notes = evidence.explanation
        for label, value in (("Service date", evidence.service_date.isoformat() if evidence.service_date else None),
                             ("Customer", evidence.customer_name), ("Service", evidence.product_description),
                             ("Refund policy", evidence.refund_policy)):
            if value:
                notes += f"\n{label}: {value}"
        payload = orjson.dumps({"evidences": [{"evidence_type": "PROOF_OF_FULFILLMENT", "notes": notes[:2000]}]})
        boundary = "wedsync" + bounded_key(dispute_ref + notes, 24)
        content = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"input\"\r\n"
                   f"Content-Type: application/json\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
        sent = await self.client.mutate("POST", f"/v1/customer/disputes/{dispute_ref}/provide-evidence",
                                        content=content,
                                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                                        idempotency_key=bounded_key(f"evidence-{dispute_ref}-{notes}", 108))
        return self._classify(sent, lambda b: GatewayResult(Outcome.SUCCEEDED, gateway_ref=dispute_ref,
                                                           raw_status="evidence_provided"))

    async def verify_webhook_signature(self, raw_body: bytes, headers: Mapping[str, str]) -> bool:
        """PayPal's own check (``POST /v1/notifications/verify-webhook-signature``), an alternative to the
        certificate check in ``connectors/webhooks.py``; needs ``webhook_secret`` (the webhook id)."""
        if not self.webhook_id:
            raise InvalidInput("verifying PayPal webhooks needs the webhook id", code="missing_credentials")
        h = {k.lower(): v for k, v in headers.items()}
        try:
            event = orjson.loads(raw_body)
        except ValueError:
            return False
        body = {"auth_algo": h.get("paypal-auth-algo", ""), "cert_url": h.get("paypal-cert-url", ""),
                "transmission_id": h.get("paypal-transmission-id", ""),
                "transmission_sig": h.get("paypal-transmission-sig", ""),
                "transmission_time": h.get("paypal-transmission-time", ""), "webhook_id": self.webhook_id,
                "webhook_event": event}
        response = await self.client.request("POST", "/v1/notifications/verify-webhook-signature", json=body)
        data = self._body(response) or {}
        return data.get("verification_status") == "SUCCESS"

    def parse_event(self, raw_body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        try:
            event = orjson.loads(raw_body)
            etype, event_id, res = str(event["event_type"]), str(event["id"]), event["resource"]
            assert isinstance(res, dict)
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            raise InvalidInput("not a PayPal event", code="invalid_event") from exc
        base: dict[str, Any] = {"event_id": event_id, "raw_type": etype, "occurred_at": _time(event.get("create_time"))}
        raw_money = res.get("amount")
        money: dict[str, Any] = raw_money if isinstance(raw_money, dict) else {}
        if etype in ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.DENIED", "PAYMENT.CAPTURE.DECLINED"):
            kind = EventKind.PAYMENT_SUCCEEDED if etype.endswith("COMPLETED") else EventKind.PAYMENT_FAILED
            return GatewayEvent(kind=kind, gateway_ref=_opt(res.get("id")), reference=_opt(res.get("invoice_id")),
                                amount_minor=_minor(money), currency=money.get("currency_code"), **base)
        if etype in ("PAYMENT.CAPTURE.REFUNDED", "PAYMENT.REFUND.FAILED"):
            up = next((str(link.get("href")) for link in res.get("links") or []
                       if isinstance(link, dict) and link.get("rel") == "up"), "")
            kind = EventKind.REFUND_SUCCEEDED if etype.endswith("REFUNDED") else EventKind.REFUND_FAILED
            return GatewayEvent(kind=kind, gateway_ref=up.rstrip("/").rsplit("/", 1)[-1] or None,
                                refund_ref=_opt(res.get("id")), reference=_opt(res.get("invoice_id")),
                                amount_minor=_minor(money), currency=money.get("currency_code"), **base)
        if etype.startswith("CUSTOMER.DISPUTE."):
            status = str(res.get("status"))
            outcome = str((res.get("dispute_outcome") or {}).get("outcome_code", ""))
            if etype == "CUSTOMER.DISPUTE.CREATED":
                kind = EventKind.DISPUTE_OPENED
            elif etype == "CUSTOMER.DISPUTE.RESOLVED" or status == "RESOLVED":
                kind = EventKind.DISPUTE_WON if "SELLER_FAVOUR" in outcome else EventKind.DISPUTE_LOST
            else:
                kind = EventKind.DISPUTE_UPDATED
            txns = res.get("disputed_transactions") or []
            first = txns[0] if txns and isinstance(txns[0], dict) else {}
            raw_amount = res.get("dispute_amount")
            amount: dict[str, Any] = raw_amount if isinstance(raw_amount, dict) else {}
            dispute = DisputeInfo(dispute_ref=str(res.get("dispute_id")),
                                  charge_ref=_opt(first.get("seller_transaction_id")),
                                  amount_minor=_minor(amount) or 0, currency=str(amount.get("currency_code", "")),
                                  reason=_opt(res.get("reason")), status=status if not outcome else outcome,
                                  evidence_due_by=_time(res.get("seller_response_due_date")))
            return GatewayEvent(kind=kind, gateway_ref=dispute.charge_ref, reference=_opt(first.get("invoice_number")),
                                amount_minor=dispute.amount_minor, currency=dispute.currency or None, dispute=dispute,
                                **base)
        return GatewayEvent(kind=EventKind.OTHER, gateway_ref=_opt(res.get("id")), **base)


def _minor_signed(money: Any) -> int | None:
    if not isinstance(money, dict):
        return None
    value = str(money.get("value", ""))
    negative = value.startswith("-")
    amount = _minor({"currency_code": money.get("currency_code"), "value": value.lstrip("-")})
    if amount is None:
        return None
    return -amount if negative else amount
