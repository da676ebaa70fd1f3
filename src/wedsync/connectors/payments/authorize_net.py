"""Authorize.net gateway: the JSON API (which mirrors AnetApiSchema.xsd), with duplicate-window idempotency.

Wire format: ``POST /xml/v1/request.api`` with ``{"createTransactionRequest": {"merchantAuthentication": {...},
"refId": ..., "transactionRequest": {...}}}``; element order follows the XSD sequences exactly (the gateway
converts JSON to XML and rejects anything out of order); answers start with a UTF-8 BOM. There is no
idempotency header: ``order.invoiceNumber`` (<= 20 chars, derived from our reference) and the
``duplicateWindow`` transaction setting (8 h) make the gateway refuse a repeat of the same invoice, amount and
card with responseCode 3, error 11, and, because the window is set explicitly, hand back the original
``transId``, which we read with ``getTransactionDetailsRequest``.

Outcomes: responseCode 1 -> SUCCEEDED; 2 -> DECLINED; 3 -> DECLINED for card errors (6, 7, 8, 37, 78), the
original transaction's outcome for a duplicate (11), else NOT_EXECUTED; 4 (held for review) -> UNKNOWN;
``resultCode: Error`` without a transaction response -> NOT_EXECUTED (``E00007`` raises ``ReauthRequired``;
``E00001`` is UNKNOWN); 5xx/timeouts -> replayed (the duplicate window dedupes), then UNKNOWN. No native
split (the platform's share lives on our ledger), no transfers, no dispute API (chargebacks show up as
``chargeback`` transactions in settled batches).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import httpx
import orjson

from wedsync.connectors.base import Capabilities, Channel, CredentialField
from wedsync.connectors.errors import Fatal, OutcomeUnknown, ReauthRequired, Retriable, SchemaMismatch
from wedsync.connectors.payments.base import (
    ChargeRequest,
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

__all__ = ["DUPLICATE_WINDOW", "AuthorizeNetConnector", "invoice_number"]

PATH = "/xml/v1/request.api"
DUPLICATE_WINDOW = 28_800  # the gateway's maximum: 8 hours
CARD_ERRORS = frozenset({"6", "7", "8", "17", "28", "37", "78", "44", "45", "65"})
AUTH_ERRORS = frozenset({"E00007", "E00008", "E00124", "E00054"})
_UNSETTLED = frozenset({"capturedPendingSettlement", "authorizedPendingCapture"})
_APPROVED = frozenset({"capturedPendingSettlement", "settledSuccessfully", "authorizedPendingCapture",
                       "approvedReview", "pendingSettlement", "pendingFinalSettlement"})
_REVIEW = frozenset({"FDSPendingReview", "FDSAuthorizedPendingReview", "underReview"})
_STATUS_KIND = {"settledSuccessfully": "charge", "refundSettledSuccessfully": "refund", "chargeback": "dispute",
                "chargebackReversal": "dispute"}
LOOKBACK = timedelta(days=2)


def invoice_number(reference: str) -> str:
    """Our reference as ``order.invoiceNumber`` (the XSD allows 20 characters)."""
    return bounded_key(reference, 20)


def _minor(value: Any) -> int:
    try:
        return from_decimal(str(Decimal(str(value)).quantize(Decimal("0.01"))), "USD")
    except (InvalidOperation, ValueError) as exc:
        raise SchemaMismatch(f"Authorize.net amount {value!r} is not a decimal", provider="authorize-net") from exc


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


def _list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


class AuthorizeNetConnector(GatewayConnector):
    slug: ClassVar[str] = "authorize-net"
    display_name: ClassVar[str] = "Authorize.net"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="payments",
        read=("transactions", "settled_batches"),
        write=("transactions", "refunds", "voids"),
        webhooks=("net.authorize.payment.authcapture.created", "net.authorize.payment.refund.created",
                  "net.authorize.payment.void.created"),
        incremental=("settled_batches",),
        notes="JSON API mirroring the XSD (element order enforced). No native split and no transfers: the "
        "platform's and vendors' shares are settled on the WedSync ledger. Idempotency by invoiceNumber + "
        "duplicateWindow (8 h). Refunds need a settled transaction (an unsettled full refund becomes a void). "
        "No dispute API: chargebacks appear in settled batches. Processing fees are not reported by the API "
        "(fee 0 in settlements). Onboarding: the vendor enters API login id, transaction key and signature key.",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("api_login_id", "API Login ID", secret=False),
        CredentialField("transaction_key", "Transaction Key"),
        CredentialField("webhook_secret", "Signature Key (verifies X-ANET-Signature)", required=False),
    )
    default_base_url: ClassVar[str | None] = "https://api.authorize.net"
    docs_url: ClassVar[str | None] = "https://developer.authorize.net/api/reference/"
    supports_native_split: ClassVar[bool] = False
    currencies: ClassVar[frozenset[str]] = frozenset({"USD"})

    def __init__(self, *, api_login_id: str, transaction_key: str, webhook_secret: str | None = None,
                 base_url: str | None = None, account_key: str = "default", timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, mutation_attempts: int = 2) -> None:
        register_secret(transaction_key)
        self._auth = {"name": api_login_id, "transactionKey": transaction_key}
        self.webhook_secret = webhook_secret
        self.client = GatewayClient(
            self.slug, base_url or self.default_base_url or "", account_key=account_key, timeout=timeout,
            transport=transport, headers={"Accept": "application/json", "Content-Type": "application/json"},
            mutation_attempts=mutation_attempts)

    async def aclose(self) -> None:
        await self.client.aclose()

    # --- plumbing ---------------------------------------------------------------------------------------

    @staticmethod
    def _decode(response: httpx.Response) -> dict[str, Any] | None:
        try:
            body = orjson.loads(response.content.lstrip(b"\xef\xbb\xbf"))
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _document(self, root: str, body: Mapping[str, Any], ref_id: str | None = None) -> bytes:
        doc: dict[str, Any] = {"merchantAuthentication": self._auth}
        if ref_id:
            doc["refId"] = ref_id
        doc.update(body)
        return orjson.dumps({root: doc})

    async def _read(self, root: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A reporting call (a POST that changes nothing: replayable)."""
        response = await self.client.request("POST", PATH, content=self._document(root, body),
                                             idempotency_key="read-only")
        data = self._decode(response)
        if data is None:
            raise SchemaMismatch(f"{root}: unreadable answer", provider=self.slug)
        messages = data.get("messages") or {}
        if messages.get("resultCode") != "Ok":
            first = (_list(messages.get("message")) or [{}])[0]
            code = str(first.get("code"))
            if code in AUTH_ERRORS:
                raise ReauthRequired(f"Authorize.net: {first.get('text')}", provider=self.slug)
            if code == "E00040":  # record not found
                return {}
            raise Fatal(f"Authorize.net {root}: {code} {first.get('text')}", provider=self.slug)
        return data

    async def _transaction(self, tx: Mapping[str, Any], ref_id: str) -> Sent:
        content = self._document("createTransactionRequest", {"transactionRequest": tx}, ref_id)
        return await self.client.mutate("POST", PATH, content=content, idempotency_key=ref_id)

    async def _classify(self, sent: Sent) -> GatewayResult:
        response = sent.response
        if response is None:
            return sent.failure()
        data = self._decode(response)
        if data is None:
            return GatewayResult(Outcome.UNKNOWN if response.status_code < 300 else Outcome.NOT_EXECUTED,
                                 raw_status="garbled", http_status=response.status_code)
        tr = data.get("transactionResponse") if isinstance(data.get("transactionResponse"), dict) else None
        messages = data.get("messages") or {}
        first = (_list(messages.get("message")) or [{}])[0]
        if tr is None:
            code = str(first.get("code"))
            if code in AUTH_ERRORS:
                raise ReauthRequired(f"Authorize.net: {first.get('text')}", provider=self.slug)
            outcome = Outcome.UNKNOWN if code == "E00001" else Outcome.NOT_EXECUTED
            return GatewayResult(outcome, decline_code=code, message=str(first.get("text"))[:300],
                                 raw_status=str(messages.get("resultCode")), retryable=outcome is Outcome.UNKNOWN)
        code = str(tr.get("responseCode"))
        trans_id = str(tr.get("transId") or "0")
        errors = _list(tr.get("errors"))
        err = errors[0] if errors and isinstance(errors[0], dict) else {}
        reason = str(err.get("errorCode") or "")
        text = str(err.get("errorText") or "")[:300]
        common: dict[str, Any] = {"gateway_ref": trans_id if trans_id != "0" else None, "raw_status": code,
                                  "extra": {"auth_code": str(tr["authCode"])} if tr.get("authCode") else {}}
        if code == "1":
            return GatewayResult(Outcome.SUCCEEDED, **common)
        if code == "2":
            return GatewayResult(Outcome.DECLINED, decline_code=reason or "2", message=text, **common)
        if code == "4":
            return GatewayResult(Outcome.UNKNOWN, retryable=True, message="held for review", **common)
        if reason == "11":  # duplicate: the original transaction decides
            if trans_id != "0":
                try:
                    return await self.details(trans_id)
                except (Retriable, OutcomeUnknown, Fatal) as exc:
                    return GatewayResult(Outcome.UNKNOWN, retryable=True, gateway_ref=trans_id, decline_code="11",
                                         message=f"duplicate of {trans_id}; its details could not be read: {exc}"[:300])
            return GatewayResult(Outcome.UNKNOWN, retryable=True, decline_code="11", message=text, raw_status=code)
        if reason in CARD_ERRORS:
            return GatewayResult(Outcome.DECLINED, decline_code=reason, message=text, **common)
        return GatewayResult(Outcome.NOT_EXECUTED, decline_code=reason or "3", message=text, **common)

    async def details(self, trans_id: str) -> GatewayResult:
        """A transaction's outcome from ``getTransactionDetailsRequest``."""
        data = await self._read("getTransactionDetailsRequest", {"transId": trans_id})
        t = data.get("transaction")
        if not isinstance(t, dict):
            return GatewayResult(Outcome.NOT_EXECUTED, raw_status="not_found", message=f"no transaction {trans_id}")
        return self._summary_result(t, t.get("authAmount"))

    @staticmethod
    def _summary_result(t: Mapping[str, Any], amount: Any) -> GatewayResult:
        status = str(t.get("transactionStatus"))
        common: dict[str, Any] = {"gateway_ref": str(t.get("transId")), "raw_status": status, "currency": "USD",
                                  "amount_minor": _minor(amount) if amount not in (None, "") else None}
        if status in _APPROVED:
            return GatewayResult(Outcome.SUCCEEDED, **common)
        if status in _REVIEW:
            return GatewayResult(Outcome.UNKNOWN, retryable=True, message="held for review", **common)
        if status in ("declined", "generalError", "voided", "expired", "failedReview"):
            return GatewayResult(Outcome.DECLINED, decline_code=status, **common)
        return GatewayResult(Outcome.UNKNOWN, retryable=True, **common)

    # --- charges -------------------------------------------------------------------------------------------

    @staticmethod
    def _payment(payment_method: str) -> dict[str, Any]:
        if payment_method.startswith("card:"):
            parts = payment_method.split(":")
            if len(parts) < 3:
                raise InvalidInput("card payment methods are card:<number>:<YYYY-MM>[:<cvv>]",
                                   code="invalid_payment_method")
            card: dict[str, Any] = {"cardNumber": parts[1], "expirationDate": parts[2]}
            if len(parts) > 3 and parts[3]:
                card["cardCode"] = parts[3]
            return {"creditCard": card}
        return {"opaqueData": {"dataDescriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "dataValue": payment_method}}

    def transaction_request(self, req: ChargeRequest) -> dict[str, Any]:
        """``transactionRequest`` for ``req``, its elements in the XSD's order."""
        tx: dict[str, Any] = {
            "transactionType": "authCaptureTransaction" if req.capture else "authOnlyTransaction",
            "amount": to_decimal(req.amount_minor, req.currency),
            "payment": self._payment(req.payment_method),
            "order": {"invoiceNumber": invoice_number(req.reference),
                      **({"description": req.description[:255]} if req.description else {})},
        }
        if req.customer_email:
            tx["customer"] = {"email": req.customer_email[:255]}
        tx["transactionSettings"] = {"setting": [{"settingName": "duplicateWindow",
                                                  "settingValue": str(DUPLICATE_WINDOW)}]}
        return tx

    async def charge(self, req: ChargeRequest, idempotency_key: str) -> GatewayResult:
        self.check_split(req)
        result = await self._classify(await self._transaction(self.transaction_request(req),
                                                              bounded_key(idempotency_key, 20)))
        if result.amount_minor is None and result.outcome is Outcome.SUCCEEDED:
            result = GatewayResult(**{**_fields(result), "amount_minor": req.amount_minor, "currency": "USD"})
        return result

    async def lookup(self, reference: str, idempotency_key: str, *,
                     request: ChargeRequest | None = None) -> GatewayResult:
        if request is not None:  # a repeat inside the duplicate window returns the original transaction
            return await self.charge(request, idempotency_key)
        invoice = invoice_number(reference)
        try:
            found = await self._find(invoice)
        except (Retriable, OutcomeUnknown, Fatal) as exc:
            return GatewayResult(Outcome.UNKNOWN, retryable=True, message=f"lookup failed: {exc}"[:300])
        results = [self._summary_result(t, t.get("settleAmount")) for t in found]
        for outcome in (Outcome.SUCCEEDED, Outcome.UNKNOWN, Outcome.DECLINED):
            for r in results:
                if r.outcome is outcome:
                    return r
        return GatewayResult(Outcome.NOT_EXECUTED, raw_status="not_found",
                             message="no transaction with this invoiceNumber in the unsettled list or the batches "
                             "settled in the last two days (both are current)")

    async def _find(self, invoice: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        offset = 1
        while True:
            data = await self._read("getUnsettledTransactionListRequest", {
                "sorting": {"orderBy": "submitTimeUTC", "orderDescending": "true"},
                "paging": {"limit": 1000, "offset": offset}})
            page = _list((data.get("transactions") or {}).get("transaction"))
            found += [t for t in page if isinstance(t, dict) and t.get("invoiceNumber") == invoice]
            if len(page) < 1000:
                break
            offset += 1
        now = datetime.now(UTC)
        for batch in await self._batches(now - LOOKBACK, now + timedelta(minutes=5)):
            for t in await self._batch_transactions(str(batch["batchId"])):
                if t.get("invoiceNumber") == invoice:
                    found.append(t)
        return found

    async def capture(self, gateway_ref: str, amount_minor: int | None, idempotency_key: str) -> GatewayResult:
        tx: dict[str, Any] = {"transactionType": "priorAuthCaptureTransaction"}
        if amount_minor is not None:
            tx["amount"] = to_decimal(amount_minor, "USD")
        tx["refTransId"] = gateway_ref
        return await self._classify(await self._transaction(tx, bounded_key(idempotency_key, 20)))

    async def refund(self, gateway_ref: str, amount_minor: int, currency: str, idempotency_key: str, *,
                     reverse_split: bool) -> GatewayResult:
        if amount_minor <= 0:
            raise InvalidInput("refund amount must be positive", code="invalid_amount")
        try:
            data = await self._read("getTransactionDetailsRequest", {"transId": gateway_ref})
        except (Retriable, OutcomeUnknown, Fatal) as exc:
            return preflight_failed(exc)
        original = data.get("transaction")
        if not isinstance(original, dict):
            return GatewayResult(Outcome.NOT_EXECUTED, raw_status="not_found", message=f"no transaction {gateway_ref}")
        card = ((original.get("payment") or {}).get("creditCard") or {})
        ref_id = bounded_key(idempotency_key, 20)
        full = _minor(original.get("settleAmount") or original.get("authAmount") or 0) == amount_minor
        status = str(original.get("transactionStatus") or "")
        if status == "voided" and _minor(original.get("authAmount") or 0) == amount_minor:
            # a replay of our full refund's void that went through (its answer was lost)
            return GatewayResult(Outcome.SUCCEEDED, gateway_ref=gateway_ref, raw_status="voided",
                                 amount_minor=amount_minor, currency=currency.upper())
        if status in _UNSETTLED:  # Authorize.net credits only settled transactions: before that, a void
            if not full:
                return GatewayResult(Outcome.NOT_EXECUTED, raw_status=status, decline_code="refund_before_settlement",
                                     message="Authorize.net refunds only settled transactions and voids only in "
                                     "full: a partial refund must wait for the settlement")
            return await self._void(gateway_ref, ref_id, amount_minor, currency)
        tx: dict[str, Any] = {
            "transactionType": "refundTransaction", "amount": to_decimal(amount_minor, currency),
            "payment": {"creditCard": {"cardNumber": str(card.get("cardNumber", "XXXX"))[-4:],
                                       "expirationDate": "XXXX"}},
            "refTransId": gateway_ref,
            "order": {"invoiceNumber": ref_id},
            "transactionSettings": {"setting": [{"settingName": "duplicateWindow",
                                                 "settingValue": str(DUPLICATE_WINDOW)}]},
        }
        result = await self._classify(await self._transaction(tx, ref_id))
        if result.decline_code == "54" and full:  # still unsettled after all (status read just before): void
            return await self._void(gateway_ref, ref_id, amount_minor, currency)
        if result.outcome is Outcome.SUCCEEDED:
            result = GatewayResult(**{**_fields(result), "amount_minor": amount_minor, "currency": currency.upper()})
        return result

    async def _void(self, gateway_ref: str, ref_id: str, amount_minor: int, currency: str) -> GatewayResult:
        """``voidTransaction`` of an unsettled charge (the whole of it); "already voided" (310) is success."""
        void = {"transactionType": "voidTransaction", "refTransId": gateway_ref}
        result = await self._classify(await self._transaction(void, ref_id))
        if result.outcome is Outcome.SUCCEEDED or result.decline_code == "310":
            return GatewayResult(**{**_fields(result), "outcome": Outcome.SUCCEEDED, "gateway_ref": gateway_ref,
                                    "raw_status": "voided", "decline_code": None, "message": None,
                                    "amount_minor": amount_minor, "currency": currency.upper()})
        return result

    # --- reconciliation -----------------------------------------------------------------------------------

    async def _batches(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        start = since
        while start < until:
            end = min(until, start + timedelta(days=31))
            data = await self._read("getSettledBatchListRequest", {
                "includeStatistics": "false", "firstSettlementDate": _stamp(start), "lastSettlementDate": _stamp(end)})
            out += [b for b in _list((data.get("batchList") or {}).get("batch")) if isinstance(b, dict)]
            start = end
        return out

    async def _batch_transactions(self, batch_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 1
        while True:
            data = await self._read("getTransactionListRequest", {
                "batchId": batch_id, "sorting": {"orderBy": "submitTimeUTC", "orderDescending": "false"},
                "paging": {"limit": 1000, "offset": offset}})
            page = [t for t in _list((data.get("transactions") or {}).get("transaction")) if isinstance(t, dict)]
            out += page
            if len(page) < 1000:
                return out
            offset += 1

    async def settlements(self, since: datetime, until: datetime) -> list[SettlementItem]:
        items: list[SettlementItem] = []
        for batch in await self._batches(since, until):
            batch_id = str(batch["batchId"])
            settled_at = _time(batch.get("settlementTimeUTC")) or datetime.now(UTC)
            total = 0
            for t in await self._batch_transactions(batch_id):
                status = str(t.get("transactionStatus"))
                kind = _STATUS_KIND.get(status)
                if kind is None:  # declined, voided, ...: no money moved
                    continue
                amount = _minor(t.get("settleAmount"))
                signed = -amount if status in ("refundSettledSuccessfully", "chargeback") else amount
                total += signed
                items.append(SettlementItem(
                    gateway_ref=str(t["transId"]), kind=kind, gross_minor=signed, fee_minor=0, net_minor=signed,
                    currency="USD", occurred_at=_time(t.get("submitTimeUTC")) or settled_at,
                    source_ref=str(t["transId"]), reference=t.get("invoiceNumber"), payout_ref=batch_id,
                    status=status))
            items.append(SettlementItem(gateway_ref=batch_id, kind="payout", gross_minor=-total, fee_minor=0,
                                        net_minor=-total, currency="USD", occurred_at=settled_at, payout_ref=batch_id,
                                        status=str(batch.get("settlementState"))))
        return items

    # --- onboarding, events ---------------------------------------------------------------------------------

    async def onboard(self, vendor_ref: str, return_url: str, refresh_url: str, *,
                      account_ref: str | None = None) -> OnboardingStep:
        return OnboardingStep(kind="credentials", fields=("api_login_id", "transaction_key", "webhook_secret"),
                              message="Authorize.net has no platform onboarding: the vendor enters the API Login "
                              "ID, Transaction Key and Signature Key from Account > Settings > Security Settings.")

    def parse_event(self, raw_body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        try:
            event = orjson.loads(raw_body)
            etype, event_id, payload = str(event["eventType"]), str(event["notificationId"]), event["payload"]
            assert isinstance(payload, dict)
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            raise InvalidInput("not an Authorize.net notification", code="invalid_event") from exc
        amount = payload.get("authAmount")
        base: dict[str, Any] = {
            "event_id": event_id, "raw_type": etype, "occurred_at": _time(event.get("eventDate")),
            "reference": payload.get("invoiceNumber") or None, "currency": "USD",
            "amount_minor": _minor(amount) if isinstance(amount, int | float | str) and amount != "" else None,
        }
        trans_id = str(payload["id"]) if payload.get("id") is not None else None
        if etype in ("net.authorize.payment.authcapture.created", "net.authorize.payment.capture.created",
                     "net.authorize.payment.priorAuthCapture.created"):
            kind = EventKind.PAYMENT_SUCCEEDED if payload.get("responseCode") == 1 else EventKind.PAYMENT_FAILED
            return GatewayEvent(kind=kind, gateway_ref=trans_id, **base)
        if etype == "net.authorize.payment.refund.created":
            return GatewayEvent(kind=EventKind.REFUND_SUCCEEDED, refund_ref=trans_id, **base)
        return GatewayEvent(kind=EventKind.OTHER, gateway_ref=trans_id, **base)


def _fields(result: GatewayResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in GatewayResult.__dataclass_fields__}
