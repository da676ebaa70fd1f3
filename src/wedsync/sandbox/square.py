"""Square API emulator (Square-Version 2025-08-20): payments, refunds, payouts + payout entries, disputes, webhooks.

Faithful to ``../shared/specs/square/api.json``: ``Authorization: Bearer <access token>``, JSON bodies,
``{"errors": [{"category", "code", "detail", "field"}]}`` error bodies, ``idempotency_key`` <= 45 characters
(the same key with the same body returns the same payment/refund; with another body 400
``IDEMPOTENCY_KEY_REUSED``), ``app_fee_money`` at most 90 % of the amount (else 400 ``INVALID_FEES``),
``reference_id`` <= 40, cursor pagination, RFC 3339 timestamps, and webhooks signed
``x-square-hmacsha256-signature`` = base64 HMAC-SHA256(signature key, notification URL + body).

Test card nonces: ``cnon:card-nonce-ok`` (and any other nonce) succeeds; a nonce containing ``declined``,
``insufficient`` or ``expired`` is declined (``GENERIC_DECLINE``, ``INSUFFICIENT_FUNDS``, ``CARD_EXPIRED``)
with a FAILED payment in the body, as Square does; ``dispute`` succeeds and is disputed at once.

Seller-side money model (the connector acts with the seller's OAuth token): each completed payment adds a
``CHARGE`` payout entry (fee 2.9 % + 30) and, when ``app_fee_money`` is set, a ``THIRD_PARTY_FEE`` entry;
refunds add ``REFUND`` and ``THIRD_PARTY_FEE_REFUND`` entries; disputes ``DISPUTE``. ``payout`` (admin
mutate) groups the unpaid entries into a PAID payout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from wedsync.connectors.webhooks import SquareScheme
from wedsync.sandbox.payments_common import PaymentEmulator, SandboxFailure, card_outcome, processing_fee

__all__ = ["DEFAULT_ACCESS_TOKEN", "LOCATION_ID", "PREFIX", "SLUG", "SquareEmulator", "create_emulator"]

SLUG = "square"
PREFIX = "/square"
DEFAULT_ACCESS_TOKEN = "EAAAsandbox-square-seller-token"
LOCATION_ID = "L8SANDBOXMAIN01"
MERCHANT_ID = "MLSANDBOXSELLER1"
SQUARE_VERSION = "2025-08-20"
EVIDENCE_DAYS = 7


class SquareError(Exception):
    def __init__(self, status: int, category: str, code: str, detail: str, field: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        err: dict[str, Any] = {"category": category, "code": code, "detail": detail}
        if field:
            err["field"] = field
        self.body: dict[str, Any] = {"errors": [err], **(extra or {})}


def _rfc3339(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SquareError(400, "INVALID_REQUEST_ERROR", "INVALID_VALUE", f"Invalid {field}", field) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _money(value: Any, field: str, *, positive: bool = True) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SquareError(400, "INVALID_REQUEST_ERROR", "MISSING_REQUIRED_PARAMETER",
                          f"Missing required parameter `{field}`", field)
    amount, currency = value.get("amount"), value.get("currency")
    if not isinstance(amount, int) or isinstance(amount, bool) or (positive and amount <= 0) or amount < 0:
        raise SquareError(400, "INVALID_REQUEST_ERROR", "VALUE_TOO_LOW", f"`{field}.amount` must be positive",
                          f"{field}.amount")
    if not isinstance(currency, str) or len(currency) != 3:
        raise SquareError(400, "INVALID_REQUEST_ERROR", "INVALID_ENUM_VALUE", f"Invalid `{field}.currency`",
                          f"{field}.currency")
    return {"amount": amount, "currency": currency}


def _string(body: Mapping[str, Any], field: str, limit: int, *, required: bool = False) -> str | None:
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise SquareError(400, "INVALID_REQUEST_ERROR", "MISSING_REQUIRED_PARAMETER",
                              f"Missing required parameter `{field}`", field)
        return None
    if not isinstance(value, str):
        raise SquareError(400, "INVALID_REQUEST_ERROR", "EXPECTED_STRING", f"`{field}` must be a string", field)
    if len(value) > limit:
        raise SquareError(400, "INVALID_REQUEST_ERROR", "VALUE_TOO_LONG",
                          f"Field must not be greater than {limit} length", field)
    return value


class SquareEmulator(PaymentEmulator):
    slug = SLUG
    prefix = PREFIX

    def __init__(self, *, seed: int = 42, access_token: str = DEFAULT_ACCESS_TOKEN) -> None:
        self.access_token = access_token
        self._reset_state()
        super().__init__(seed=seed)

    def _reset_state(self) -> None:
        self.idempotency: dict[tuple[str, str], tuple[bytes, int, bytes]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds_by_id: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.entries: list[dict[str, Any]] = []  # unpaid payout entries (payout_id set when paid)
        self.payouts: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.evidence: dict[str, list[dict[str, Any]]] = {}

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        if kind == "rate-limit":
            return orjson.dumps({"errors": [{"category": "RATE_LIMIT_ERROR", "code": "RATE_LIMITED",
                                             "detail": detail}]})
        code = {503: "SERVICE_UNAVAILABLE", 502: "BAD_GATEWAY", 504: "GATEWAY_TIMEOUT"}.get(status,
                                                                                            "INTERNAL_SERVER_ERROR")
        return orjson.dumps({"errors": [{"category": "API_ERROR", "code": code, "detail": detail}]})

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or header[7:].strip() != self.access_token:
            raise SquareError(401, "AUTHENTICATION_ERROR", "UNAUTHORIZED",
                              "This request could not be authorized.")

    def _entry(self, type_: str, gross: int, fee: int, currency: str, details_key: str,
               details: dict[str, Any]) -> None:
        self.entries.append({
            "id": self.next_id("pe_", 22), "payout_id": None, "effective_at": _rfc3339(), "type": type_,
            "gross_amount_money": {"amount": gross, "currency": currency},
            "fee_amount_money": {"amount": fee, "currency": currency},
            "net_amount_money": {"amount": gross - fee, "currency": currency}, details_key: details,
        })

    def _event(self, type_: str, obj_type: str, obj_id: str, obj: Mapping[str, Any]) -> None:
        body = {"merchant_id": MERCHANT_ID, "type": type_, "event_id": self.next_id("", 36).lower(),
                "created_at": _rfc3339(), "data": {"type": obj_type, "id": obj_id, "object": {obj_type: dict(obj)}}}
        url = self.hook_url or ""
        self.send_event(body, lambda raw, secret: SquareScheme.sign(raw, secret, url=url))

    # --- operations -----------------------------------------------------------------------------------------

    def _create_payment(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        source = _string(body, "source_id", 4096, required=True)
        assert source is not None
        amount = _money(body.get("amount_money"), "amount_money")
        fee_money = body.get("app_fee_money")
        app_fee = _money(fee_money, "app_fee_money", positive=False) if fee_money is not None else None
        if app_fee is not None:
            if app_fee["currency"] != amount["currency"]:
                raise SquareError(400, "INVALID_REQUEST_ERROR", "INVALID_FEES",
                                  "app_fee_money currency must match amount_money", "app_fee_money.currency")
            if app_fee["amount"] * 10 > amount["amount"] * 9:
                raise SquareError(400, "INVALID_REQUEST_ERROR", "INVALID_FEES",
                                  "app_fee_money cannot be more than 90% of the total amount", "app_fee_money")
        reference = _string(body, "reference_id", 40)
        note = _string(body, "note", 500)
        location = _string(body, "location_id", 50) or LOCATION_ID
        if location != LOCATION_ID:
            raise SquareError(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"Location `{location}` not found",
                              "location_id")
        autocomplete = body.get("autocomplete", True) is not False
        outcome, code = card_outcome(source)
        now = _rfc3339()
        pay_id = self.next_id("", 26).replace("0", "A")
        total = amount["amount"]
        payment: dict[str, Any] = {
            "id": pay_id, "created_at": now, "updated_at": now, "amount_money": amount,
            "total_money": dict(amount), "approved_money": dict(amount), "status": "COMPLETED",
            "delay_duration": "PT168H", "delay_action": "CANCEL", "source_type": "CARD",
            "card_details": {"status": "CAPTURED", "card": {"card_brand": "VISA", "last_4": "1111",
                                                            "exp_month": 12, "exp_year": 2030},
                             "entry_method": "KEYED", "cvv_status": "CVV_ACCEPTED", "avs_status": "AVS_ACCEPTED"},
            "location_id": location, "order_id": self.next_id("", 24),
            "receipt_number": pay_id[:4], "version_token": self.next_id("v", 20),
            "capabilities": ["EDIT_AMOUNT_UP", "EDIT_AMOUNT_DOWN", "EDIT_TIP_AMOUNT_UP", "EDIT_TIP_AMOUNT_DOWN"],
        }
        if app_fee is not None:
            payment["app_fee_money"] = app_fee
        if reference:
            payment["reference_id"] = reference
        if note:
            payment["note"] = note
        if body.get("buyer_email_address"):
            payment["buyer_email_address"] = str(body["buyer_email_address"])
        self.payments[pay_id] = payment
        currency = amount["currency"]
        if outcome == "declined":
            square_code = {"insufficient_funds": "INSUFFICIENT_FUNDS",
                           "expired_card": "CARD_EXPIRED"}.get(code or "", "GENERIC_DECLINE")
            payment.update(status="FAILED", approved_money={"amount": 0, "currency": currency},
                           card_details={**payment["card_details"], "status": "FAILED"})
            self.record("charges", pay_id, payment, reference=reference, amount_minor=total, currency=currency,
                        status="declined")
            self._event("payment.updated", "payment", pay_id, payment)
            raise SquareError(400, "PAYMENT_METHOD_ERROR", square_code, "Authorization error: '" + square_code
                              + "'", "source_id", extra={"payment": payment})
        if not autocomplete:
            payment.update(status="APPROVED", card_details={**payment["card_details"], "status": "AUTHORIZED"})
            self.record("charges", pay_id, payment, reference=reference, amount_minor=total, currency=currency,
                        status="authorized")
            return 200, {"payment": payment}
        self._complete(payment)
        if outcome == "dispute":
            self._open_dispute(payment, "NO_KNOWLEDGE")
        return 200, {"payment": payment}

    def _complete(self, payment: dict[str, Any]) -> None:
        amount = payment["amount_money"]["amount"]
        currency = payment["amount_money"]["currency"]
        fee = processing_fee(amount)
        payment.update(status="COMPLETED", updated_at=_rfc3339(),
                       card_details={**payment["card_details"], "status": "CAPTURED"},
                       processing_fee=[{"effective_at": _rfc3339(), "type": "INITIAL",
                                        "amount_money": {"amount": fee, "currency": currency}}])
        self._entry("CHARGE", amount, fee, currency, "type_charge_details", {"payment_id": payment["id"]})
        app_fee = (payment.get("app_fee_money") or {}).get("amount", 0)
        if app_fee:
            self._entry("THIRD_PARTY_FEE", -app_fee, 0, currency, "type_third_party_fee_details",
                        {"payment_id": payment["id"]})
        self.record("charges", payment["id"], payment, reference=payment.get("reference_id"), amount_minor=amount,
                    currency=currency, status="succeeded")
        self._event("payment.updated", "payment", payment["id"], payment)

    def _refund(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        payment_id = _string(body, "payment_id", 192, required=True)
        amount = _money(body.get("amount_money"), "amount_money")
        payment = self.payments.get(payment_id or "")
        if payment is None:
            raise SquareError(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"Payment `{payment_id}` not found",
                              "payment_id")
        if payment["status"] != "COMPLETED":
            raise SquareError(400, "INVALID_REQUEST_ERROR", "REFUND_DECLINED" if payment["status"] == "FAILED"
                              else "PAYMENT_NOT_REFUNDABLE", "The payment cannot be refunded.", "payment_id")
        currency = payment["amount_money"]["currency"]
        refunded = (payment.get("refunded_money") or {}).get("amount", 0)
        if amount["currency"] != currency or amount["amount"] > payment["amount_money"]["amount"] - refunded:
            raise SquareError(400, "REFUND_ERROR", "REFUND_AMOUNT_INVALID",
                              "The requested refund amount exceeds the amount available to refund.", "amount_money")
        fee_money = body.get("app_fee_money")
        app_fee = _money(fee_money, "app_fee_money", positive=False)["amount"] if fee_money is not None else 0
        collected = (payment.get("app_fee_money") or {}).get("amount", 0)
        if app_fee > collected:
            raise SquareError(400, "INVALID_REQUEST_ERROR", "INVALID_FEES",
                              "app_fee_money exceeds the app fee collected on the payment", "app_fee_money")
        now = _rfc3339()
        refund_id = f"{payment['id']}_{self.next_id('', 20)}"
        refund: dict[str, Any] = {
            "id": refund_id, "status": "COMPLETED", "amount_money": amount, "payment_id": payment["id"],
            "order_id": payment["order_id"], "location_id": payment["location_id"], "created_at": now,
            "updated_at": now, "reason": _string(body, "reason", 192),
            "processing_fee": [{"effective_at": now, "type": "INITIAL", "amount_money": {"amount": 0,
                                                                                           "currency": currency}}],
        }
        if app_fee:
            refund["app_fee_money"] = {"amount": app_fee, "currency": currency}
        payment["refunded_money"] = {"amount": refunded + amount["amount"], "currency": currency}
        payment.setdefault("refund_ids", []).append(refund_id)
        payment["updated_at"] = now
        self.refunds_by_id[refund_id] = refund
        self._entry("REFUND", -amount["amount"], 0, currency, "type_refund_details",
                    {"payment_id": payment["id"], "refund_id": refund_id})
        if app_fee:
            self._entry("THIRD_PARTY_FEE_REFUND", app_fee, 0, currency, "type_third_party_fee_refund_details",
                        {"payment_id": payment["id"], "refund_id": refund_id})
        self.record("refunds", refund_id, refund, reference=payment.get("reference_id"),
                    amount_minor=amount["amount"], currency=currency, status="succeeded")
        self._event("refund.updated", "refund", refund_id, refund)
        return 200, {"refund": refund}

    def _open_dispute(self, payment: dict[str, Any], reason: str) -> dict[str, Any]:
        dispute_id = self.next_id("", 22)
        now = datetime.now(UTC)
        currency = payment["amount_money"]["currency"]
        amount = payment["amount_money"]["amount"] - (payment.get("refunded_money") or {}).get("amount", 0)
        dispute = {
            "id": dispute_id, "dispute_id": dispute_id, "amount_money": {"amount": amount, "currency": currency},
            "reason": reason, "state": "EVIDENCE_REQUIRED", "due_at": _rfc3339(now + timedelta(days=EVIDENCE_DAYS)),
            "disputed_payment": {"payment_id": payment["id"]}, "card_brand": "VISA", "created_at": _rfc3339(now),
            "updated_at": _rfc3339(now), "brand_dispute_id": self.next_id("", 16), "location_id": LOCATION_ID,
            "version": 1, "evidence_ids": [],
        }
        self.disputes[dispute_id] = dispute
        self._entry("DISPUTE", -amount, 0, currency, "type_dispute_details",
                    {"payment_id": payment["id"], "dispute_id": dispute_id})
        self.record("disputes", dispute_id, dispute, reference=payment.get("reference_id"), amount_minor=amount,
                    currency=currency, status="EVIDENCE_REQUIRED")
        self._event("dispute.created", "dispute", dispute_id, dispute)
        return dispute

    async def open_dispute(self, charge_id: str, reason: str) -> dict[str, Any]:
        payment = self.payments.get(charge_id)
        if payment is None or payment["status"] != "COMPLETED":
            raise ValueError(f"no completed payment {charge_id!r}")
        return self._open_dispute(payment, reason.upper() if reason != "fraudulent" else "NO_KNOWLEDGE")

    async def close_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        dispute = self.disputes.get(dispute_id)
        if dispute is None or dispute["state"] in ("WON", "LOST", "ACCEPTED"):
            raise ValueError(f"no open dispute {dispute_id!r}")
        dispute.update(state=outcome.upper(), updated_at=_rfc3339(), version=dispute["version"] + 1)
        if outcome == "won":
            currency = dispute["amount_money"]["currency"]
            self._entry("DISPUTE", dispute["amount_money"]["amount"], 0, currency, "type_dispute_details",
                        {"payment_id": dispute["disputed_payment"]["payment_id"], "dispute_id": dispute_id})
        self.set_status("disputes", dispute_id, dispute["state"], dispute)
        self._event("dispute.state.updated", "dispute", dispute_id, dispute)
        return dispute

    async def payout(self) -> dict[str, Any]:
        unpaid = [e for e in self.entries if e["payout_id"] is None]
        by_currency: dict[str, list[dict[str, Any]]] = {}
        for e in unpaid:
            by_currency.setdefault(e["net_amount_money"]["currency"], []).append(e)
        made = []
        for currency, entries in by_currency.items():
            po_id = "po_" + self.next_id("", 22)
            net = sum(e["net_amount_money"]["amount"] for e in entries)
            for e in entries:
                e["payout_id"] = po_id
            now = _rfc3339()
            payout = {"id": po_id, "status": "PAID", "location_id": LOCATION_ID, "created_at": now,
                      "updated_at": now, "amount_money": {"amount": net, "currency": currency},
                      "destination": {"type": "BANK_ACCOUNT", "id": "ccof:bank-sandbox"}, "version": 1,
                      "type": "BATCH", "arrival_date": (datetime.now(UTC) + timedelta(days=1)).date().isoformat(),
                      "end_to_end_id": self.next_id("", 16)}
            self.payouts[po_id] = payout
            self.record("payouts", po_id, payout, reference=None, amount_minor=net, currency=currency, status="PAID")
            self._event("payout.paid", "payout", po_id, payout)
            made.append(po_id)
        return {"payouts": made}

    # --- the API -------------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        app = FastAPI(title="Square sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        em = self

        def reply(status: int, body: Mapping[str, Any]) -> Response:
            return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                            headers={"Square-Version": SQUARE_VERSION})

        @app.exception_handler(SquareError)
        async def _square_error(_r: Request, exc: SquareError) -> Response:
            return reply(exc.status, exc.body)

        @app.exception_handler(SandboxFailure)
        async def _failure(_r: Request, exc: SandboxFailure) -> Response:
            return reply(exc.status, {"errors": [{"category": "API_ERROR", "code": "INTERNAL_SERVER_ERROR",
                                                  "detail": "An internal error has occurred."}]})

        @app.exception_handler(StarletteHTTPException)
        async def _http(_r: Request, exc: StarletteHTTPException) -> Response:
            return reply(exc.status_code, {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "NOT_FOUND",
                                                       "detail": str(exc.detail)}]})

        async def json_body(request: Request) -> tuple[bytes, dict[str, Any]]:
            em._authenticate(request)
            raw = await request.body()
            try:
                body = orjson.loads(raw or b"{}")
            except ValueError:
                raise SquareError(400, "INVALID_REQUEST_ERROR", "INVALID_CONTENT_TYPE" if not raw
                                  else "BAD_REQUEST", "Invalid JSON body") from None
            if not isinstance(body, dict):
                raise SquareError(400, "INVALID_REQUEST_ERROR", "BAD_REQUEST", "Body must be a JSON object")
            return raw, body

        async def idempotent(request: Request, op: str,
                             handler: Any) -> Response:
            _raw, body = await json_body(request)
            key = _string(body, "idempotency_key", 45, required=True)
            assert key is not None
            canonical = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()
            stored = em.idempotency.get((op, key))
            if stored is not None:
                fingerprint, status, encoded = stored
                if fingerprint != canonical:
                    raise SquareError(400, "INVALID_REQUEST_ERROR", "IDEMPOTENCY_KEY_REUSED",
                                      "The idempotency key can only be retried with the same request data.",
                                      "idempotency_key")
                return Response(encoded, status_code=status, media_type="application/json",
                                headers={"Square-Version": SQUARE_VERSION})
            try:
                status, result = handler(body)
            except SquareError as exc:
                if exc.body.get("payment") is not None:  # executed and declined: replays see the same answer
                    em.idempotency[(op, key)] = (canonical, exc.status, orjson.dumps(exc.body))
                raise
            encoded = orjson.dumps(result)
            em.idempotency[(op, key)] = (canonical, status, encoded)
            await em.committed()
            return Response(encoded, status_code=status, media_type="application/json",
                            headers={"Square-Version": SQUARE_VERSION})

        def window(request: Request, field: str = "created_at") -> Any:
            begin = _parse_time(request.query_params.get("begin_time"), "begin_time")
            end = _parse_time(request.query_params.get("end_time"), "end_time")

            def keep(obj: Mapping[str, Any]) -> bool:
                when = datetime.fromisoformat(str(obj[field]).replace("Z", "+00:00"))
                return (begin is None or when >= begin) and (end is None or when < end)
            return keep

        def page(items: list[dict[str, Any]], request: Request, name: str, default_limit: int = 100
                 ) -> dict[str, Any]:
            try:
                limit = int(request.query_params.get("limit") or default_limit)
                offset = int(request.query_params.get("cursor") or 0)
            except ValueError:
                raise SquareError(400, "INVALID_REQUEST_ERROR", "INVALID_VALUE", "Invalid cursor or limit") from None
            limit = max(1, min(limit, 100))
            out: dict[str, Any] = {name: items[offset:offset + limit]} if items[offset:offset + limit] else {}
            if offset + limit < len(items):
                out["cursor"] = str(offset + limit)
            return out

        def desc(request: Request) -> bool:
            return (request.query_params.get("sort_order") or "DESC").upper() != "ASC"

        @app.post("/v2/payments")
        async def create_payment(request: Request) -> Response:
            return await idempotent(request, "payment", em._create_payment)

        @app.get("/v2/payments")
        async def list_payments(request: Request) -> Response:
            em._authenticate(request)
            keep = window(request)
            items = sorted((p for p in em.payments.values() if keep(p)), key=lambda p: (p["created_at"], p["id"]),
                           reverse=desc(request))
            return reply(200, page(items, request, "payments"))

        @app.get("/v2/payments/{payment_id}")
        async def get_payment(request: Request, payment_id: str) -> Response:
            em._authenticate(request)
            payment = em.payments.get(payment_id)
            if payment is None:
                raise SquareError(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"Payment `{payment_id}` not found")
            return reply(200, {"payment": payment})

        @app.post("/v2/payments/{payment_id}/complete")
        async def complete_payment(request: Request, payment_id: str) -> Response:
            await json_body(request)
            payment = em.payments.get(payment_id)
            if payment is None:
                raise SquareError(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"Payment `{payment_id}` not found")
            if payment["status"] == "APPROVED":
                em._complete(payment)
            elif payment["status"] != "COMPLETED":
                raise SquareError(400, "INVALID_REQUEST_ERROR", "BAD_REQUEST",
                                  f"Payment in state {payment['status']} cannot be completed")
            return reply(200, {"payment": payment})

        @app.post("/v2/refunds")
        async def refund_payment(request: Request) -> Response:
            return await idempotent(request, "refund", em._refund)

        @app.get("/v2/refunds/{refund_id}")
        async def get_refund(request: Request, refund_id: str) -> Response:
            em._authenticate(request)
            refund = em.refunds_by_id.get(refund_id)
            if refund is None:
                raise SquareError(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"Refund `{refund_id}` not found")
            return reply(200, {"refund": refund})

        @app.get("/v2/payouts")
        async def list_payouts(request: Request) -> Response:
            em._authenticate(request)
            keep = window(request)
            items = sorted((p for p in em.payouts.values() if keep(p)), key=lambda p: (p["created_at"], p["id"]),
                           reverse=desc(request))
            return reply(200, page(items, request, "payouts"))

        @app.get("/v2/payouts/{payout_id}/payout-entries")
        async def payout_entries(request: Request, payout_id: str) -> Response:
            em._authenticate(request)
            if payout_id not in em.payouts:
                raise SquareError(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"Payout `{payout_id}` not found")
            items = [e for e in em.entries if e["payout_id"] == payout_id]
            items.sort(key=lambda e: (e["effective_at"], e["id"]), reverse=desc(request))
            return reply(200, page(items, request, "payout_entries"))

        @app.get("/v2/disputes/{dispute_id}")
        async def get_dispute(request: Request, dispute_id: str) -> Response:
            em._authenticate(request)
            dispute = em.disputes.get(dispute_id)
            if dispute is None:
                raise SquareError(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"Dispute `{dispute_id}` not found")
            return reply(200, {"dispute": dispute})

        @app.post("/v2/disputes/{dispute_id}/evidence-text")
        async def evidence_text(request: Request, dispute_id: str) -> Response:
            def handler(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                dispute = em.disputes.get(dispute_id)
                if dispute is None:
                    raise SquareError(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"Dispute `{dispute_id}` not found")
                text = _string(body, "evidence_text", 500, required=True)
                evidence = {"id": em.next_id("", 22), "dispute_id": dispute_id, "evidence_text": text,
                            "evidence_type": body.get("evidence_type") or "GENERIC_EVIDENCE",
                            "uploaded_at": _rfc3339()}
                em.evidence.setdefault(dispute_id, []).append(evidence)
                dispute["evidence_ids"].append(evidence["id"])
                return 200, {"evidence": evidence}
            return await idempotent(request, f"evidence:{dispute_id}", handler)

        @app.post("/v2/disputes/{dispute_id}/submit-evidence")
        async def submit_evidence(request: Request, dispute_id: str) -> Response:
            em._authenticate(request)
            dispute = em.disputes.get(dispute_id)
            if dispute is None:
                raise SquareError(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"Dispute `{dispute_id}` not found")
            if dispute["state"] not in ("EVIDENCE_REQUIRED", "INQUIRY_EVIDENCE_REQUIRED", "PROCESSING"):
                raise SquareError(400, "INVALID_REQUEST_ERROR", "BAD_REQUEST",
                                  f"Dispute in state {dispute['state']} does not accept evidence")
            if dispute["state"] != "PROCESSING":
                dispute.update(state="PROCESSING", updated_at=_rfc3339(), version=dispute["version"] + 1)
                em.set_status("disputes", dispute_id, "PROCESSING", dispute)
                em._event("dispute.state.updated", "dispute", dispute_id, dispute)
            return reply(200, {"dispute": dispute})

        @app.post("/v2/webhooks/subscriptions")
        async def create_subscription(request: Request) -> Response:
            def handler(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                sub = body.get("subscription")
                if not isinstance(sub, dict) or not str(sub.get("notification_url", "")).startswith("http"):
                    raise SquareError(400, "INVALID_REQUEST_ERROR", "MISSING_REQUIRED_PARAMETER",
                                      "subscription.notification_url is required", "subscription.notification_url")
                now = _rfc3339()
                sub_id = "wbhk_" + em.next_id("", 24)
                key = hashlib.sha256(f"{sub_id}{em.seed_value}".encode()).hexdigest()[:22]
                created = {"id": sub_id, "name": sub.get("name"), "enabled": True,
                           "event_types": list(sub.get("event_types") or []),
                           "notification_url": sub["notification_url"], "api_version": SQUARE_VERSION,
                           "signature_key": key, "created_at": now, "updated_at": now}
                em.subscriptions[sub_id] = created
                em.hook_url, em.hook_secret = created["notification_url"], key
                return 200, {"subscription": created}
            return await idempotent(request, "subscription", handler)

        return app


def create_emulator(*, seed: int = 42, **options: Any) -> SquareEmulator:
    return SquareEmulator(seed=seed, **options)
