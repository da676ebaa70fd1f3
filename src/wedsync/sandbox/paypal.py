"""PayPal REST emulator: OAuth2 client credentials, Orders v2 (+capture), capture refunds, reporting, disputes,
partner referrals, webhooks (certificate-signed) and the verify-webhook-signature API.

Faithful to ``../shared/specs/paypal/*.json``: ``POST /v1/oauth2/token`` (HTTP Basic client id/secret,
``grant_type=client_credentials``) issues bearer tokens; ``PayPal-Request-Id`` (<= 108) makes order creation,
capture and refunds idempotent (the same id returns the stored response, HTTP 200); money is
``{"currency_code", "value"}`` with decimal strings; errors are ``{"name", "message", "debug_id",
"details": [{"issue", "description"}]}`` (422 ``UNPROCESSABLE_ENTITY`` issues such as
``INVALID_PLATFORM_FEES_AMOUNT``, ``DUPLICATE_INVOICE_ID``, ``INSTRUMENT_DECLINED``).

Orders with a vaulted ``payment_source`` (``card.vault_id`` or ``token``) and ``intent=CAPTURE`` are captured
at creation (status ``COMPLETED``); a declined instrument gives a capture with status ``DECLINED``. Tokens
containing ``decline``/``insufficient``/``expired`` decline, ``dispute`` succeeds and is disputed at once.
Orders without a payment source wait for buyer approval (``CREATED`` with an ``approve`` link).

Webhooks are signed the way PayPal signs them (``PayPalScheme.sign``: RSA-SHA256 over
``transmission_id|time|webhook_id|crc32``) with a key pair made on first use; the certificate is served at
``GET /v1/notifications/certs/{cert_id}`` and ``PAYPAL-CERT-URL`` names it on ``api.sandbox.paypal.com``
(a PayPal domain, as the hub requires): a hub in tests verifies with
``PayPalScheme(cert_loader=emulator.cert_loader)``, or through ``POST /v1/notifications/verify-webhook-signature``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from wedsync.connectors.payments.base import currency_exponent, from_decimal, to_decimal
from wedsync.connectors.webhooks import PayPalScheme
from wedsync.errors import InvalidInput
from wedsync.sandbox.payments_common import PaymentEmulator, SandboxFailure, card_outcome

__all__ = ["CERT_URL_BASE", "DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "PLATFORM_MERCHANT_ID", "PREFIX", "SLUG",
           "PayPalEmulator", "create_emulator", "sandbox_cert_loader"]

SLUG = "paypal"
PREFIX = "/paypal"
DEFAULT_CLIENT_ID = "AWsandbox-paypal-platform-client"
DEFAULT_CLIENT_SECRET = "EKsandbox-paypal-platform-secret"
PLATFORM_MERCHANT_ID = "PLATFRM2SBX7Q"
MERCHANT_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CERT_URL_BASE = "https://api.sandbox.paypal.com/v1/notifications/certs/"
TOKEN_SECONDS = 32_400
EVIDENCE_DAYS = 10

_UNPROCESSABLE = ("The requested action could not be performed, semantically incorrect, or failed business "
                  "validation.")
_ISSUES = {
    "INVALID_PLATFORM_FEES_AMOUNT": "The platform_fees amount cannot be greater than order amount.",
    "DUPLICATE_INVOICE_ID": "Duplicate Invoice ID detected. To avoid a potential duplicate transaction your account "
    "setting requires that Invoice Id be unique for each transaction.",
    "INSTRUMENT_DECLINED": "The instrument presented  was either declined by the processor or bank, or it can't be "
    "used for this payment.",
    "PAYEE_ACCOUNT_INVALID": "Payee account specified is invalid. Please check the `payee.email_address` or "
    "`payee.merchant_id` specified and try again. Ensure that either  `payee.merchant_id` or `payee.email_address` "
    "is specified.",
    "ORDER_NOT_APPROVED": "Payer has not yet approved the Order for payment. Please redirect the payer to the "
    "'rel':'approve' url returned as part of the HATEOAS links within the Create Order call or provide a valid "
    "payment_source in the request.",
    "ORDER_ALREADY_CAPTURED": "Order already captured.If 'intent=CAPTURE' only one capture per order is allowed.",
    "REFUND_AMOUNT_EXCEEDED": "The refund amount must be less than or equal to the capture amount that has not yet "
    "been refunded.",
    "CAPTURE_FULLY_REFUNDED": "The capture has already been fully refunded",
    "REFUND_NOT_ALLOWED": "Capture cannot be refunded.",
    "REFUND_CAPTURE_CURRENCY_MISMATCH": "Refund must be in the same currency as the capture",
    "PLATFORM_FEE_EXCEEDED": "Platform fee amount specified exceeds the amount that is available for refund. You can "
    "only refund up to the available platform fee amount. This error is also returned when no platform_fee was "
    "specified or was zero when the payment was captured.",
}


class PayPalError(Exception):
    def __init__(self, status: int, name: str, message: str, issue: str | None = None,
                 description: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        body: dict[str, Any] = {"name": name, "message": message,
                                "debug_id": hashlib.sha256(f"{name}{issue}{message}".encode()).hexdigest()[:13]}
        if issue:
            detail: dict[str, Any] = {"issue": issue, "description": description or _ISSUES.get(issue, message)}
            if field:
                detail["field"] = field
                detail["location"] = "body"
            body["details"] = [detail]
        body["links"] = [{"href": f"https://developer.paypal.com/docs/api/orders/v2/#error-{issue or name}",
                          "rel": "information_link", "method": "GET"}]
        self.body = body


def _unprocessable(issue: str, field: str | None = None) -> PayPalError:
    return PayPalError(422, "UNPROCESSABLE_ENTITY", _UNPROCESSABLE, issue, field=field)


def _invalid(issue: str, description: str, field: str) -> PayPalError:
    return PayPalError(400, "INVALID_REQUEST", "Request is not well-formed, syntactically incorrect, or violates "
                       "schema.", issue, description, field)


def _time(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _money_minor(value: Any, field: str) -> tuple[int, str]:
    if not isinstance(value, dict) or not isinstance(value.get("currency_code"), str):
        raise _invalid("MISSING_REQUIRED_PARAMETER", "A required field / parameter is missing.", field)
    currency = value["currency_code"]
    try:
        currency_exponent(currency)
        minor = from_decimal(str(value.get("value")), currency)
    except (InvalidInput, ValueError):
        raise _invalid("DECIMAL_PRECISION", "If the currency supports decimals, only two decimal place precision is "
                       "supported.", f"{field}/value") from None
    if minor <= 0:
        raise _unprocessable("CANNOT_BE_ZERO_OR_NEGATIVE", f"{field}/value")
    return minor, currency


def _money(minor: int, currency: str) -> dict[str, str]:
    return {"currency_code": currency, "value": to_decimal(minor, currency)}


def _paypal_fee(minor: int, currency: str) -> int:
    return (minor * 349 + 5_000) // 10_000 + (49 if currency_exponent(currency) == 2 else 0)


class PayPalEmulator(PaymentEmulator):
    slug = SLUG
    prefix = PREFIX

    def __init__(self, *, seed: int = 42, client_id: str = DEFAULT_CLIENT_ID,
                 client_secret: str = DEFAULT_CLIENT_SECRET) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._key_pem: bytes | None = None
        self._cert_pem: bytes | None = None
        self.cert_url_base: str | None = None  # PayPal's (CERT_URL_BASE) unless a webhook set-up names ours
        self.cert_id = "CERT-360caa42-fca2a594-" + hashlib.sha256(str(seed).encode()).hexdigest()[:8]
        self._reset_state()
        super().__init__(seed=seed)

    def _reset_state(self) -> None:
        self.tokens: dict[str, datetime] = {}
        self.request_ids: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.captures: dict[str, dict[str, Any]] = {}  # capture id -> capture (with "_order" id)
        self.refunds_by_id: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.transactions: list[dict[str, Any]] = []
        self.merchants: set[str] = {PLATFORM_MERCHANT_ID}
        self.referrals: dict[str, dict[str, Any]] = {}
        self.webhooks_registered: dict[str, dict[str, Any]] = {}
        self._captures_by_invoice: dict[str, list[str]] = {}

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        if kind == "rate-limit":
            return orjson.dumps({"name": "RATE_LIMIT_REACHED", "message": "Too many requests. Blocked due to "
                                 "rate limiting.", "debug_id": "ratelimit0001"})
        name = "SERVICE_UNAVAILABLE" if status == 503 else "INTERNAL_SERVER_ERROR"
        return orjson.dumps({"name": name, "message": "An internal server error has occurred.",
                             "debug_id": "internal00001"})

    # --- webhook signing -----------------------------------------------------------------------------------

    def _keys(self) -> tuple[bytes, bytes]:
        if self._key_pem is None or self._cert_pem is None:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import rsa
            from cryptography.x509.oid import NameOID

            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.sandbox.paypal.com")])
            now = datetime.now(UTC)
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                    .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                    .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
            self._key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
            self._cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        return self._key_pem, self._cert_pem

    @staticmethod
    def merchant_for(tracking_id: str) -> str:
        """The merchant id a partner referral with ``tracking_id`` onboards (PayPal reports it to the platform
        on the seller's return URL and in MERCHANT.ONBOARDING.COMPLETED)."""
        digest = hashlib.sha256(tracking_id.encode()).digest()
        return "".join(MERCHANT_ALPHABET[b % len(MERCHANT_ALPHABET)] for b in digest[:13])

    @property
    def cert_url(self) -> str:
        return (self.cert_url_base or CERT_URL_BASE) + self.cert_id

    async def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Also ``{"action": "webhook", ..., "cert_url_base": "<sandbox>/paypal/v1/notifications/certs/"}``:
        sign with a ``PAYPAL-CERT-URL`` under this sandbox (served by ``GET /v1/notifications/certs/{id}``),
        so that a hub trusting that prefix (``WEDSYNC_PAYPAL_CERT_URL_PREFIXES``) can fetch the certificate;
        without it the URL is PayPal's, as PayPal sends it."""
        if params.get("action") == "webhook" and "cert_url_base" in params:
            base = params["cert_url_base"]
            if not isinstance(base, str) or not base.startswith(("http://", "https://")) or not base.endswith("/"):
                raise ValueError("cert_url_base must be an http(s) URL ending in /")
            answer = await super().mutate(params)
            self.cert_url_base = base
            return {**answer, "cert_url": self.cert_url}
        return await super().mutate(params)

    def cert_loader(self, url: str) -> bytes:
        """A ``PayPalScheme`` certificate loader that serves this emulator's certificate (tests, demo)."""
        if url != self.cert_url:
            raise ValueError(f"unknown certificate {url!r}")
        return self._keys()[1]

    def sign(self, raw: bytes, webhook_id: str) -> dict[str, str]:
        key_pem, _ = self._keys()
        return PayPalScheme.sign(raw, webhook_id=webhook_id, private_key_pem=key_pem, cert_url=self.cert_url)

    def _event(self, event_type: str, resource_type: str, resource: Mapping[str, Any], summary: str) -> None:
        body = {"id": "WH-" + self.next_id("", 26), "event_version": "1.0", "create_time": _time(),
                "resource_type": resource_type, "resource_version": "2.0", "event_type": event_type,
                "summary": summary, "resource": dict(resource)}
        self.send_event(body, self.sign)

    # --- auth --------------------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.startswith("Bearer ") else ""
        expires = self.tokens.get(token)
        if expires is None or expires < datetime.now(UTC):
            raise PayPalError(401, "AUTHENTICATION_FAILURE", "Authentication failed due to invalid authentication "
                              "credentials or a missing Authorization header.")

    # --- orders --------------------------------------------------------------------------------------------

    def _create_order(self, body: Mapping[str, Any], prefer_full: bool) -> tuple[int, dict[str, Any]]:
        intent = body.get("intent")
        if intent not in ("CAPTURE", "AUTHORIZE"):
            raise _invalid("INVALID_PARAMETER_VALUE", "The value of a field is invalid.", "/intent")
        units = body.get("purchase_units")
        if not isinstance(units, list) or len(units) != 1 or not isinstance(units[0], dict):
            raise _invalid("INVALID_ARRAY_MAX_ITEMS" if isinstance(units, list) and units else
                           "MISSING_REQUIRED_PARAMETER", "This sandbox takes exactly one purchase unit.",
                           "/purchase_units")
        pu = units[0]
        minor, currency = _money_minor(pu.get("amount"), "/purchase_units/@reference_id=='default'/amount")
        raw_payee = pu.get("payee")
        payee: dict[str, Any] = raw_payee if isinstance(raw_payee, dict) else {}
        merchant = payee.get("merchant_id") or PLATFORM_MERCHANT_ID
        if not re.fullmatch(r"[2-9A-HJ-NP-Z]{13}", str(merchant)):
            raise _invalid("INVALID_PARAMETER_SYNTAX", "The value of a field does not conform to the expected format.",
                           "/purchase_units/@reference_id=='default'/payee/merchant_id")
        if merchant not in self.merchants:
            raise _unprocessable("PAYEE_ACCOUNT_INVALID", "/purchase_units/@reference_id=='default'/payee")
        fees: list[dict[str, Any]] = []
        raw_instruction = pu.get("payment_instruction")
        instruction: dict[str, Any] = raw_instruction if isinstance(raw_instruction, dict) else {}
        fee_total = 0
        for i, fee in enumerate(instruction.get("platform_fees") or []):
            amount, fee_currency = _money_minor((fee or {}).get("amount"), f"/purchase_units/0/payment_instruction/"
                                                f"platform_fees/{i}/amount")
            if fee_currency != currency:
                raise _unprocessable("INVALID_PLATFORM_FEES_AMOUNT")
            fee_total += amount
            fees.append({"amount": _money(amount, currency),
                         "payee": (fee or {}).get("payee") or {"merchant_id": PLATFORM_MERCHANT_ID}})
        if fee_total > minor:
            raise _unprocessable("INVALID_PLATFORM_FEES_AMOUNT")
        invoice = pu.get("invoice_id")
        if invoice is not None and (not isinstance(invoice, str) or len(invoice) > 127):
            raise _invalid("INVALID_STRING_LENGTH", "The value of a field is either too short or too long.",
                           "/purchase_units/0/invoice_id")
        if invoice and any(self.captures[c]["status"] in ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED")
                           for c in self._captures_by_invoice.get(invoice, ())):
            raise _unprocessable("DUPLICATE_INVOICE_ID", "/purchase_units/0/invoice_id")
        raw_source = body.get("payment_source")
        source: dict[str, Any] = raw_source if isinstance(raw_source, dict) else {}
        token = ""
        if isinstance(source.get("card"), dict):
            token = str(source["card"].get("vault_id") or "")
        elif isinstance(source.get("token"), dict):
            token = str(source["token"].get("id") or "")
        order_id = self.next_id("", 17).upper()
        now = _time()
        unit: dict[str, Any] = {
            "reference_id": pu.get("reference_id") or "default", "amount": _money(minor, currency),
            "payee": {"merchant_id": merchant}, "description": pu.get("description"),
            "custom_id": pu.get("custom_id"), "invoice_id": invoice,
        }
        if fees:
            unit["payment_instruction"] = {"platform_fees": fees, "disbursement_mode": "INSTANT"}
        unit = {k: v for k, v in unit.items() if v is not None}
        order: dict[str, Any] = {
            "id": order_id, "intent": intent, "status": "CREATED", "purchase_units": [unit], "create_time": now,
            "update_time": now,
            "links": [{"href": f"https://api.sandbox.paypal.com/v2/checkout/orders/{order_id}", "rel": "self",
                       "method": "GET"}],
        }
        self.orders[order_id] = order
        if token and intent == "CAPTURE":
            order["payment_source"] = {"card": {"last_digits": "1111", "brand": "VISA", "type": "CREDIT"}}
            self._capture_order(order, token)
        else:
            order["links"].append({"href": f"https://www.sandbox.paypal.com/checkoutnow?token={order_id}",
                                   "rel": "approve", "method": "GET"})
            self.record("charges", order_id, order, reference=invoice, amount_minor=minor, currency=currency,
                        status="created")
        if prefer_full:
            return 201, order
        return 201, {"id": order_id, "status": order["status"], "links": order["links"]}

    def _capture_order(self, order: dict[str, Any], token: str) -> None:
        unit = order["purchase_units"][0]
        minor = from_decimal(unit["amount"]["value"], unit["amount"]["currency_code"])
        currency = unit["amount"]["currency_code"]
        outcome, code = card_outcome(token)
        cap_id = self.next_id("", 17).upper()
        now = _time()
        capture: dict[str, Any] = {
            "id": cap_id, "status": "COMPLETED", "amount": _money(minor, currency), "final_capture": True,
            "seller_protection": {"status": "NOT_ELIGIBLE"}, "create_time": now, "update_time": now,
            "links": [{"href": f"https://api.sandbox.paypal.com/v2/payments/captures/{cap_id}", "rel": "self",
                       "method": "GET"},
                      {"href": f"https://api.sandbox.paypal.com/v2/payments/captures/{cap_id}/refund",
                       "rel": "refund", "method": "POST"}],
        }
        for key in ("invoice_id", "custom_id"):
            if unit.get(key):
                capture[key] = unit[key]
        order["status"] = "COMPLETED"
        order["update_time"] = now
        reference = unit.get("invoice_id")
        if outcome == "declined":
            response_code = {"insufficient_funds": "5120", "expired_card": "5400"}.get(code or "", "0500")
            capture.update(status="DECLINED", processor_response={"avs_code": "Y", "cvv_code": "M",
                                                                   "response_code": response_code})
            unit["payments"] = {"captures": [capture]}
            self.captures[cap_id] = {**capture, "_order": order["id"]}
            self.record("charges", order["id"], order, reference=reference, amount_minor=minor, currency=currency,
                        status="declined")
            self._event("PAYMENT.CAPTURE.DENIED", "capture", capture, "Payment denied")
            return
        fee = _paypal_fee(minor, currency)
        platform = sum(from_decimal(f["amount"]["value"], currency)
                       for f in (unit.get("payment_instruction") or {}).get("platform_fees", []))
        breakdown: dict[str, Any] = {"gross_amount": _money(minor, currency), "paypal_fee": _money(fee, currency),
                                     "net_amount": _money(minor - fee - platform, currency)}
        if platform:
            breakdown["platform_fees"] = (unit.get("payment_instruction") or {})["platform_fees"]
        capture["seller_receivable_breakdown"] = breakdown
        capture["processor_response"] = {"avs_code": "Y", "cvv_code": "M", "response_code": "0000"}
        unit["payments"] = {"captures": [capture]}
        self.captures[cap_id] = {**capture, "_order": order["id"]}
        if capture.get("invoice_id"):
            self._captures_by_invoice.setdefault(capture["invoice_id"], []).append(cap_id)
        self._transaction(cap_id, "T0006", minor, -fee, currency, unit)
        if platform:
            self._transaction(self.next_id("", 17).upper(), "T0113", -platform, 0, currency, unit)
        self.record("charges", order["id"], order, reference=reference, amount_minor=minor, currency=currency,
                    status="succeeded")
        self._event("PAYMENT.CAPTURE.COMPLETED", "capture", capture, f"Payment completed for $ {minor}")
        if outcome == "dispute":
            self._open_dispute(cap_id, "UNAUTHORISED")

    def _transaction(self, txn_id: str, code: str, amount: int, fee: int, currency: str,
                     unit: Mapping[str, Any] | None) -> None:
        now = _time()
        info: dict[str, Any] = {
            "paypal_account_id": "SANDBOXPAYER01", "transaction_id": txn_id, "transaction_event_code": code,
            "transaction_initiation_date": now, "transaction_updated_date": now,
            "transaction_amount": _money(amount, currency) if amount >= 0 else
            {"currency_code": currency, "value": "-" + to_decimal(-amount, currency)},
            "transaction_status": "S", "protection_eligibility": "02",
        }
        if fee:
            info["fee_amount"] = {"currency_code": currency, "value": ("-" if fee < 0 else "")
                                  + to_decimal(abs(fee), currency)}
        if unit:
            if unit.get("invoice_id"):
                info["invoice_id"] = unit["invoice_id"]
            if unit.get("custom_id"):
                info["custom_field"] = unit["custom_id"]
        self.transactions.append({"transaction_info": info})

    def _refund(self, capture_id: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        capture = self.captures.get(capture_id)
        if capture is None:
            raise PayPalError(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.",
                              "INVALID_RESOURCE_ID",
                              "Specified resource ID does not exist. Please check the resource ID and try again.")
        currency = capture["amount"]["currency_code"]
        total = from_decimal(capture["amount"]["value"], currency)
        if capture["status"] not in ("COMPLETED", "PARTIALLY_REFUNDED"):
            raise _unprocessable("CAPTURE_FULLY_REFUNDED" if capture["status"] == "REFUNDED" else "REFUND_NOT_ALLOWED")
        refunded = capture.get("_refunded", 0)
        amount = total - refunded
        if body.get("amount") is not None:
            amount, cur = _money_minor(body["amount"], "/amount")
            if cur != currency:
                raise _unprocessable("REFUND_CAPTURE_CURRENCY_MISMATCH")
        if amount > total - refunded:
            raise _unprocessable("REFUND_AMOUNT_EXCEEDED")
        platform_back = 0
        raw_instruction = body.get("payment_instruction")
        back_instruction: dict[str, Any] = raw_instruction if isinstance(raw_instruction, dict) else {}
        for i, fee in enumerate(back_instruction.get("platform_fees") or []):
            where = f"/payment_instruction/platform_fees/{i}/amount"
            platform_back += _money_minor((fee or {}).get("amount"), where)[0]
        collected = sum(from_decimal(f["amount"]["value"], currency)
                        for f in (capture.get("seller_receivable_breakdown") or {}).get("platform_fees", []))
        if platform_back > collected:
            raise _unprocessable("PLATFORM_FEE_EXCEEDED")
        ref_id = self.next_id("", 17).upper()
        now = _time()
        capture["_refunded"] = refunded + amount
        capture["status"] = "REFUNDED" if capture["_refunded"] >= total else "PARTIALLY_REFUNDED"
        breakdown: dict[str, Any] = {"gross_amount": _money(amount, currency),
                                     "net_amount": _money(amount - platform_back, currency),
                                     "total_refunded_amount": _money(capture["_refunded"], currency)}
        if platform_back:
            breakdown["platform_fees"] = [{"amount": _money(platform_back, currency),
                                           "payee": {"merchant_id": PLATFORM_MERCHANT_ID}}]
        refund: dict[str, Any] = {
            "id": ref_id, "status": "COMPLETED", "amount": _money(amount, currency), "create_time": now,
            "update_time": now, "seller_payable_breakdown": breakdown,
            "links": [{"href": f"https://api.sandbox.paypal.com/v2/payments/refunds/{ref_id}", "rel": "self",
                       "method": "GET"},
                      {"href": f"https://api.sandbox.paypal.com/v2/payments/captures/{capture_id}", "rel": "up",
                       "method": "GET"}],
        }
        for key in ("invoice_id", "custom_id", "note_to_payer"):
            if isinstance(body.get(key), str):
                refund[key] = body[key]
        self.refunds_by_id[ref_id] = {**refund, "_capture": capture_id}
        order = self.orders[capture["_order"]]
        unit = order["purchase_units"][0]
        self._transaction(ref_id, "T1107", -amount, 0, currency, unit)
        if platform_back:
            self._transaction(self.next_id("", 17).upper(), "T0114", platform_back, 0, currency, unit)
        self.record("refunds", ref_id, refund, reference=unit.get("invoice_id"), amount_minor=amount,
                    currency=currency, status="succeeded")
        self._event("PAYMENT.CAPTURE.REFUNDED", "refund", refund, "A refund was issued")
        return 201, refund

    # --- disputes ------------------------------------------------------------------------------------------

    def _open_dispute(self, capture_id: str, reason: str) -> dict[str, Any]:
        capture = self.captures[capture_id]
        currency = capture["amount"]["currency_code"]
        amount = from_decimal(capture["amount"]["value"], currency) - capture.get("_refunded", 0)
        dispute_id = "PP-D-" + str(10_000 + len(self.disputes) + 1)
        now = datetime.now(UTC)
        dispute: dict[str, Any] = {
            "dispute_id": dispute_id, "create_time": _time(now), "update_time": _time(now),
            "disputed_transactions": [{"seller_transaction_id": capture_id,
                                       "invoice_number": capture.get("invoice_id"),
                                       "custom": capture.get("custom_id")}],
            "reason": reason, "status": "WAITING_FOR_SELLER_RESPONSE",
            "dispute_amount": _money(amount, currency), "dispute_life_cycle_stage": "CHARGEBACK",
            "dispute_channel": "EXTERNAL", "seller_response_due_date": _time(now + timedelta(days=EVIDENCE_DAYS)),
            "links": [{"href": f"https://api.sandbox.paypal.com/v1/customer/disputes/{dispute_id}", "rel": "self",
                       "method": "GET"}],
        }
        dispute["disputed_transactions"] = [{k: v for k, v in t.items() if v is not None}
                                            for t in dispute["disputed_transactions"]]
        self.disputes[dispute_id] = dispute
        order = self.orders[capture["_order"]]
        self._transaction(self.next_id("", 17).upper(), "T1201", -amount, 0, currency, order["purchase_units"][0])
        self.record("disputes", dispute_id, dispute, reference=capture.get("invoice_id"), amount_minor=amount,
                    currency=currency, status="WAITING_FOR_SELLER_RESPONSE")
        self._event("CUSTOMER.DISPUTE.CREATED", "dispute", dispute, "A new dispute opened")
        return dispute

    async def open_dispute(self, charge_id: str, reason: str) -> dict[str, Any]:
        capture_id = charge_id
        if charge_id in self.orders:
            caps = self.orders[charge_id]["purchase_units"][0].get("payments", {}).get("captures", [])
            capture_id = caps[0]["id"] if caps else ""
        if capture_id not in self.captures or self.captures[capture_id]["status"] == "DECLINED":
            raise ValueError(f"no completed capture {charge_id!r}")
        return self._open_dispute(capture_id, "UNAUTHORISED" if reason == "fraudulent" else reason.upper())

    async def close_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        dispute = self.disputes.get(dispute_id)
        if dispute is None or dispute["status"] == "RESOLVED":
            raise ValueError(f"no open dispute {dispute_id!r}")
        dispute.update(status="RESOLVED", update_time=_time(), dispute_outcome={
            "outcome_code": "RESOLVED_SELLER_FAVOUR" if outcome == "won" else "RESOLVED_BUYER_FAVOUR"})
        if outcome == "won":
            money = dispute["dispute_amount"]
            capture = self.captures[dispute["disputed_transactions"][0]["seller_transaction_id"]]
            unit = self.orders[capture["_order"]]["purchase_units"][0]
            self._transaction(self.next_id("", 17).upper(), "T1202",
                              from_decimal(money["value"], money["currency_code"]), 0, money["currency_code"], unit)
        self.set_status("disputes", dispute_id, f"RESOLVED_{outcome.upper()}", dispute)
        self._event("CUSTOMER.DISPUTE.RESOLVED", "dispute", dispute, "A dispute was resolved")
        return dispute

    async def payout(self) -> dict[str, Any]:
        paid_out = sum(1 for t in self.transactions if t["transaction_info"]["transaction_event_code"] == "T0400")
        balance: dict[str, int] = {}
        for t in self.transactions:
            info = t["transaction_info"]
            currency = info["transaction_amount"]["currency_code"]
            net = from_decimal(info["transaction_amount"]["value"], currency)
            if info.get("fee_amount"):
                net += from_decimal(info["fee_amount"]["value"], currency)
            balance[currency] = balance.get(currency, 0) + net
        made = []
        for currency, net in balance.items():
            if net > 0:
                txn = self.next_id("", 17).upper()
                self._transaction(txn, "T0400", -net, 0, currency, None)
                self.record("payouts", txn, self.transactions[-1], reference=None, amount_minor=net,
                            currency=currency, status="S")
                made.append(txn)
        return {"payouts": made, "earlier": paid_out}

    # --- the API -------------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        app = FastAPI(title="PayPal sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        em = self

        def reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
            return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                            headers={"Paypal-Debug-Id": em.next_id("", 13).lower(), **(headers or {})})

        @app.exception_handler(PayPalError)
        async def _paypal_error(_r: Request, exc: PayPalError) -> Response:
            return reply(exc.status, exc.body)

        @app.exception_handler(SandboxFailure)
        async def _failure(_r: Request, exc: SandboxFailure) -> Response:
            return reply(exc.status, {"name": "INTERNAL_SERVER_ERROR", "message": "An internal server error has "
                                      "occurred.", "debug_id": "internal00002"})

        @app.exception_handler(StarletteHTTPException)
        async def _http(_r: Request, exc: StarletteHTTPException) -> Response:
            return reply(exc.status_code, {"name": "RESOURCE_NOT_FOUND", "message": "The specified resource does "
                                           "not exist.", "debug_id": "notfound00001"})

        async def json_body(request: Request) -> dict[str, Any]:
            em._authenticate(request)
            raw = await request.body()
            try:
                body = orjson.loads(raw) if raw else {}
            except ValueError:
                raise _invalid("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.", "/") from None
            if not isinstance(body, dict):
                raise _invalid("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.", "/")
            return body

        async def idempotent(request: Request, op: str, handler: Any) -> Response:
            body = await json_body(request)
            request_id = request.headers.get("paypal-request-id")
            if request_id is not None and not 1 <= len(request_id) <= 108:
                raise _invalid("INVALID_STRING_LENGTH", "The value of a field is either too short or too long.",
                               "PayPal-Request-Id")
            if request_id:
                stored = em.request_ids.get((op, request_id))
                if stored is not None:  # PayPal answers an idempotent repeat with 200 and the stored resource
                    return Response(stored[1], status_code=200 if stored[0] < 300 else stored[0],
                                    media_type="application/json")
            status, result = handler(body)
            encoded = orjson.dumps(result)
            if request_id:
                em.request_ids[(op, request_id)] = (status, encoded)
            await em.committed()
            return Response(encoded, status_code=status, media_type="application/json")

        @app.post("/v1/oauth2/token")
        async def token(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            try:
                user, _, secret = base64.b64decode(header[6:]).decode().partition(":") if header.startswith(
                    "Basic ") else ("", "", "")
            except ValueError:
                user = secret = ""
            if user != em.client_id or secret != em.client_secret:
                return reply(401, {"error": "invalid_client", "error_description": "Client Authentication failed"})
            form = dict(parse_qsl((await request.body()).decode()))
            if form.get("grant_type") != "client_credentials":
                return reply(400, {"error": "unsupported_grant_type",
                                   "error_description": "Grant Type is not supported"})
            access = "A21AA" + hashlib.sha256(f"{em.next_id('')}{em.seed_value}".encode()).hexdigest()
            em.tokens[access] = datetime.now(UTC) + timedelta(seconds=TOKEN_SECONDS)
            return reply(200, {"scope": "https://uri.paypal.com/services/payments/payment "
                               "https://uri.paypal.com/services/reporting/search/read "
                               "https://uri.paypal.com/services/disputes/read-seller", "access_token": access,
                               "token_type": "Bearer", "app_id": "APP-80W284485P519543T", "expires_in": TOKEN_SECONDS,
                               "nonce": _time() + hashlib.sha256(access.encode()).hexdigest()[:20]})

        @app.post("/v2/checkout/orders")
        async def create_order(request: Request) -> Response:
            prefer_full = "return=representation" in request.headers.get("prefer", "")
            return await idempotent(request, "order", lambda body: em._create_order(body, prefer_full))

        @app.get("/v2/checkout/orders/{order_id}")
        async def get_order(request: Request, order_id: str) -> Response:
            em._authenticate(request)
            order = em.orders.get(order_id)
            if order is None:
                raise PayPalError(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.",
                                  "INVALID_RESOURCE_ID", "Specified resource ID does not exist. Please check the "
                                  "resource ID and try again.")
            return reply(200, order)

        @app.post("/v2/checkout/orders/{order_id}/capture")
        async def capture_order(request: Request, order_id: str) -> Response:
            def handler(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                order = em.orders.get(order_id)
                if order is None:
                    raise PayPalError(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.",
                                      "INVALID_RESOURCE_ID")
                if order["status"] == "COMPLETED":
                    raise _unprocessable("ORDER_ALREADY_CAPTURED")
                if order["status"] != "APPROVED":
                    raise _unprocessable("ORDER_NOT_APPROVED")
                em._capture_order(order, "approved-by-payer")
                return 201, order
            return await idempotent(request, f"capture:{order_id}", handler)

        @app.get("/v2/payments/captures/{capture_id}")
        async def get_capture(request: Request, capture_id: str) -> Response:
            em._authenticate(request)
            capture = em.captures.get(capture_id)
            if capture is None:
                raise PayPalError(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.",
                                  "INVALID_RESOURCE_ID")
            return reply(200, {k: v for k, v in capture.items() if not k.startswith("_")})

        @app.post("/v2/payments/captures/{capture_id}/refund")
        async def refund_capture(request: Request, capture_id: str) -> Response:
            return await idempotent(request, f"refund:{capture_id}", lambda body: em._refund(capture_id, body))

        @app.get("/v2/payments/refunds/{refund_id}")
        async def get_refund(request: Request, refund_id: str) -> Response:
            em._authenticate(request)
            refund = em.refunds_by_id.get(refund_id)
            if refund is None:
                raise PayPalError(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.",
                                  "INVALID_RESOURCE_ID")
            return reply(200, {k: v for k, v in refund.items() if not k.startswith("_")})

        @app.get("/v1/reporting/transactions")
        async def transactions(request: Request) -> Response:
            em._authenticate(request)
            q = request.query_params
            try:
                start = datetime.fromisoformat(str(q.get("start_date")).replace("Z", "+00:00"))
                end = datetime.fromisoformat(str(q.get("end_date")).replace("Z", "+00:00"))
            except ValueError:
                raise PayPalError(400, "INVALID_REQUEST", "Request is not well-formed, syntactically incorrect, or "
                                  "violates schema.", "INVALID_PARAMETER_VALUE", "start_date and end_date are "
                                  "required", "start_date") from None
            if end - start > timedelta(days=31):
                raise PayPalError(400, "INVALID_REQUEST", "Request is not well-formed, syntactically incorrect, or "
                                  "violates schema.", "INVALID_PARAMETER_VALUE", "The date range may not exceed 31 "
                                  "days.", "end_date")
            page = max(1, int(q.get("page") or 1))
            size = max(1, min(500, int(q.get("page_size") or 100)))
            matching = [t for t in em.transactions
                        if start <= datetime.fromisoformat(t["transaction_info"]["transaction_initiation_date"]
                                                           .replace("Z", "+00:00")) < end
                        and (not q.get("transaction_id") or t["transaction_info"]["transaction_id"]
                             == q.get("transaction_id"))]
            pages = max(1, -(-len(matching) // size))
            return reply(200, {"transaction_details": matching[(page - 1) * size: page * size],
                               "account_number": PLATFORM_MERCHANT_ID, "start_date": _time(start),
                               "end_date": _time(end), "last_refreshed_datetime": _time(), "page": page,
                               "total_items": len(matching), "total_pages": pages})

        @app.get("/v1/customer/disputes/{dispute_id}")
        async def get_dispute(request: Request, dispute_id: str) -> Response:
            em._authenticate(request)
            dispute = em.disputes.get(dispute_id)
            if dispute is None:
                raise PayPalError(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.",
                                  "INVALID_RESOURCE_ID")
            return reply(200, dispute)

        @app.post("/v1/customer/disputes/{dispute_id}/provide-evidence")
        async def provide_evidence(request: Request, dispute_id: str) -> Response:
            em._authenticate(request)
            dispute = em.disputes.get(dispute_id)
            if dispute is None:
                raise PayPalError(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.",
                                  "INVALID_RESOURCE_ID")
            form = await request.form()
            raw_input = form.get("input")
            try:
                data = orjson.loads(raw_input if isinstance(raw_input, str) else b"")
                evidences = data["evidences"]
                assert isinstance(evidences, list) and evidences
            except (ValueError, KeyError, TypeError, AssertionError):
                raise _invalid("MISSING_REQUIRED_PARAMETER", "A required field / parameter is missing.",
                               "/evidences") from None
            if dispute["status"] != "WAITING_FOR_SELLER_RESPONSE":
                raise _unprocessable("NOT_SUPPORTED", "/evidences")
            dispute.setdefault("evidences", []).extend(
                {"evidence_type": e.get("evidence_type", "OTHER"), "notes": e.get("notes"),
                 "date": _time()} for e in evidences if isinstance(e, dict))
            dispute.update(status="UNDER_REVIEW", update_time=_time())
            em.set_status("disputes", dispute_id, "UNDER_REVIEW", dispute)
            em._event("CUSTOMER.DISPUTE.UPDATED", "dispute", dispute, "A dispute was updated")
            return reply(200, {"links": [{"href": f"https://api.sandbox.paypal.com/v1/customer/disputes/{dispute_id}",
                                          "rel": "self", "method": "GET"}]})

        @app.post("/v2/customer/partner-referrals")
        async def partner_referral(request: Request) -> Response:
            body = await json_body(request)
            tracking = body.get("tracking_id")
            if not isinstance(tracking, str) or not tracking:
                raise _invalid("MISSING_REQUIRED_PARAMETER", "A required field / parameter is missing.",
                               "/tracking_id")
            ref_id = hashlib.sha256(f"{tracking}{em.seed_value}".encode()).hexdigest()[:40]
            merchant = em.merchant_for(tracking)
            em.referrals[ref_id] = {"partner_referral_id": ref_id, "submitter_payer_id": PLATFORM_MERCHANT_ID,
                                    "referral_data": body, "merchant_id": merchant}
            em.merchants.add(merchant)  # the sandbox onboards at once; PayPal does it when the seller finishes
            return reply(201, {"links": [
                {"href": f"https://api.sandbox.paypal.com/v2/customer/partner-referrals/{ref_id}", "rel": "self",
                 "method": "GET"},
                {"href": f"https://www.sandbox.paypal.com/bizsignup/partner/entry?referralToken={ref_id}",
                 "rel": "action_url", "method": "GET"}]})

        @app.get("/v2/customer/partner-referrals/{ref_id}")
        async def get_referral(request: Request, ref_id: str) -> Response:
            em._authenticate(request)
            referral = em.referrals.get(ref_id)
            if referral is None:
                raise PayPalError(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.",
                                  "INVALID_RESOURCE_ID")
            return reply(200, {k: v for k, v in referral.items() if k != "merchant_id"})

        @app.post("/v1/notifications/webhooks")
        async def create_webhook(request: Request) -> Response:
            body = await json_body(request)
            url = body.get("url")
            if not isinstance(url, str) or not re.match(r"^https?://", url):
                raise _invalid("INVALID_PARAMETER_SYNTAX", "The value of a field does not conform to the expected "
                               "format.", "/url")
            webhook_id = em.next_id("", 17).upper()
            hook = {"id": webhook_id, "url": url, "event_types": list(body.get("event_types") or []),
                    "links": [{"href": f"https://api.sandbox.paypal.com/v1/notifications/webhooks/{webhook_id}",
                               "rel": "self", "method": "GET"}]}
            em.webhooks_registered[webhook_id] = hook
            em.hook_url, em.hook_secret = url, webhook_id
            return reply(201, hook)

        @app.get("/v1/notifications/certs/{cert_id}")
        async def certificate(cert_id: str) -> Response:
            if cert_id != em.cert_id:
                raise PayPalError(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.")
            return Response(em._keys()[1], media_type="application/x-pem-file")

        @app.post("/v1/notifications/verify-webhook-signature")
        async def verify_signature(request: Request) -> Response:
            body = await json_body(request)
            event = body.get("webhook_event")
            status = "FAILURE"
            if isinstance(event, dict) and isinstance(body.get("webhook_id"), str):
                raw = orjson.dumps(event)
                scheme = PayPalScheme(cert_loader=em.cert_loader)
                headers = {"PAYPAL-TRANSMISSION-ID": str(body.get("transmission_id", "")),
                           "PAYPAL-TRANSMISSION-TIME": str(body.get("transmission_time", "")),
                           "PAYPAL-TRANSMISSION-SIG": str(body.get("transmission_sig", "")),
                           "PAYPAL-CERT-URL": str(body.get("cert_url", "")),
                           "PAYPAL-AUTH-ALGO": str(body.get("auth_algo", ""))}
                try:
                    scheme.verify(raw, headers, body["webhook_id"])
                    status = "SUCCESS"
                except Exception:  # any verification failure is a FAILURE answer, as PayPal's
                    status = "FAILURE"
            return reply(200, {"verification_status": status})

        return app


def sandbox_cert_loader(sandbox_url: str, *, timeout: float = 5.0) -> Callable[[str], bytes]:
    """A ``PayPalScheme`` certificate loader for a hub talking to this sandbox over HTTP: PayPal's cert URL
    (``https://api.sandbox.paypal.com/v1/notifications/certs/<id>``) is fetched from
    ``{sandbox_url}/paypal/v1/notifications/certs/<id>`` instead. Use it only against the sandbox."""
    import httpx

    def load(url: str) -> bytes:
        if not url.startswith(CERT_URL_BASE):
            raise ValueError("not a sandbox PayPal certificate URL")
        cert_id = url[len(CERT_URL_BASE):]
        if not re.fullmatch(r"[A-Za-z0-9-]+", cert_id):
            raise ValueError("bad certificate id")
        response = httpx.get(f"{sandbox_url.rstrip('/')}{PREFIX}/v1/notifications/certs/{cert_id}", timeout=timeout)
        response.raise_for_status()
        return response.content
    return load


def create_emulator(*, seed: int = 42, **options: Any) -> PayPalEmulator:
    return PayPalEmulator(seed=seed, **options)
