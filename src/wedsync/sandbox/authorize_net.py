"""Authorize.net API emulator: the JSON and XML APIs at ``/xml/v1/request.api``, checked against the XSD.

Faithful to ``../shared/specs/authorize-net/AnetApiSchema.xsd``: every request (JSON or XML) is turned into the
XML element form and validated against the schema first, so elements out of XSD order, unknown elements or
over-long values (``invoiceNumber`` <= 20, ``refId`` <= 20) fail as they do on the real gateway (``E00003``).
JSON answers start with a UTF-8 BOM and use the JSON API's flattened ``transactionResponse.messages`` /
``errors`` arrays, as the real one does. Authentication failures are HTTP 200 with ``resultCode: Error`` and
``E00007``.

Transactions (``createTransactionRequest``): ``authCaptureTransaction``, ``authOnlyTransaction``,
``priorAuthCaptureTransaction``, ``refundTransaction`` (only on settled transactions, else response reason 54),
``voidTransaction``. ``responseCode`` 1 approved, 2 declined, 3 error, 4 held for review. The duplicate check
(same invoice number, amount, card and type within ``duplicateWindow`` seconds, default 120) answers
responseCode 3 with error 11 "A duplicate transaction has been submitted." and, because the window was given,
the original ``transId``/``authCode`` (as Authorize.net does when ``duplicateWindow`` is set explicitly).
Cards: ``4111111111111111`` approves; a card number ending ``0002`` (or an opaque value containing
``decline``) declines (reason 2), ``0027``/``insufficient`` declines as insufficient funds (reason 2),
``0008``/``expired`` is an expired card (responseCode 3, reason 8), ``0004``/``review`` is held for review (4).

Reporting: ``getTransactionDetailsRequest``, ``getUnsettledTransactionListRequest``,
``getSettledBatchListRequest``, ``getTransactionListRequest``. ``payout`` (admin mutate) settles the pending
transactions into a batch. Authorize.net has no dispute API: an admin ``open_dispute`` adds a ``chargeback``
transaction to the next batch, which is how chargebacks reach reporting. Webhooks are signed
``X-ANET-Signature: sha512=<HEX>`` with the merchant's signature key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from lxml import etree

from wedsync.connectors.webhooks import AuthorizeNetScheme
from wedsync.sandbox.payments_common import PaymentEmulator, SandboxFailure, card_outcome

__all__ = ["DEFAULT_LOGIN", "DEFAULT_TRANSACTION_KEY", "NS", "PREFIX", "SLUG", "AuthorizeNetEmulator",
           "create_emulator", "schema", "to_xml", "xml_to_dict"]

SLUG = "authorize-net"
PREFIX = "/authorize-net"
NS = "AnetApi/xml/v1/schema/AnetApiSchema.xsd"
DEFAULT_LOGIN = "5KP3u95bQpv"
DEFAULT_TRANSACTION_KEY = "346HZ32z3fP4hTG2"
DEFAULT_WINDOW = 120
BOM = b"\xef\xbb\xbf"

#: The JSON API flattens these single-child wrappers of transactionResponse into arrays.
_JSON_ARRAY_WRAPPERS = {"messages": "message", "errors": "error", "userFields": "userField",
                        "splitTenderPayments": "splitTenderPayment"}

_REASONS = {
    1: "This transaction has been approved.", 2: "This transaction has been declined.",
    6: "The credit card number is invalid.", 8: "The credit card has expired.",
    11: "A duplicate transaction has been submitted.", 16: "The transaction cannot be found.",
    54: "The referenced transaction does not meet the criteria for issuing a credit.",
    55: "The sum of credits against the referenced transaction would exceed the original debit amount.",
    252: "Your order has been received. Thank you for your business!",
    310: "This transaction has already been voided.",
}


SPECS_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "specs"


@cache
def schema() -> Any:
    """The Authorize.net XSD from ``../shared/specs``, loaded once per process (about 0.7 s); None when the
    specs are not next to the project (then requests are not schema-checked, and the sandbox says so)."""
    import xmlschema

    path = SPECS_DIR / "authorize-net" / "AnetApiSchema.xsd"
    if not path.exists():
        return None
    return xmlschema.XMLSchema(str(path))


def _fill(parent: Any, value: Any, inside_tx_response: bool = False) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if item is None:
                continue
            if inside_tx_response and key in _JSON_ARRAY_WRAPPERS and isinstance(item, list):
                item = {_JSON_ARRAY_WRAPPERS[key]: item}
            items = item if isinstance(item, list) else [item]
            for one in items:
                child = etree.SubElement(parent, f"{{{NS}}}{key}")
                _fill(child, one, inside_tx_response or key == "transactionResponse")
    elif isinstance(value, bool):
        parent.text = "true" if value else "false"
    else:
        parent.text = str(value)


def to_xml(payload: Mapping[str, Any]) -> Any:
    """``{"createTransactionRequest": {...}}`` (JSON API form) -> the lxml element of the XML API form.

    Keys keep their order (the XSD's sequences are ordered), lists become repeated elements, and the JSON
    API's flattened ``transactionResponse`` arrays are wrapped back into their XML parents."""
    if len(payload) != 1:
        raise ValueError("an Authorize.net document has exactly one root element")
    (root_name, body), = payload.items()
    root = etree.Element(f"{{{NS}}}{root_name}", nsmap={None: NS})
    _fill(root, body)
    return root


def xml_to_dict(element: Any) -> tuple[str, dict[str, Any]]:
    """The XML API form -> ``(root name, JSON-like dict)``; repeated elements become lists."""
    def walk(el: Any) -> Any:
        children = [c for c in el if isinstance(c.tag, str)]
        if not children:
            return el.text or ""
        out: dict[str, Any] = {}
        for c in children:
            name = etree.QName(c).localname
            value = walk(c)
            if name in out:
                if not isinstance(out[name], list):
                    out[name] = [out[name]]
                out[name].append(value)
            else:
                out[name] = value
        return out
    body = walk(element)
    return etree.QName(element).localname, body if isinstance(body, dict) else {}


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _local(when: datetime) -> str:
    return (when.astimezone(UTC) - timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


class AnetError(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class AuthorizeNetEmulator(PaymentEmulator):
    slug = SLUG
    prefix = PREFIX

    def __init__(self, *, seed: int = 42, login: str = DEFAULT_LOGIN,
                 transaction_key: str = DEFAULT_TRANSACTION_KEY) -> None:
        self.login = login
        self.transaction_key = transaction_key
        self._reset_state()
        super().__init__(seed=seed)

    def _reset_state(self) -> None:
        self.transactions: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._next_trans = 60_000_000_000 + getattr(self, "seed_value", 42) * 1_000
        self._chargebacks: list[str] = []
        self._by_fingerprint: dict[str, list[str]] = {}

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        return BOM + orjson.dumps({"messages": {"resultCode": "Error", "message": [
            {"code": "E00001", "text": "An error occurred during processing. Please try again."}]}})

    def quota_key(self, scope: Any) -> str | None:
        return self.login

    # --- model -------------------------------------------------------------------------------------------

    def _trans_id(self) -> str:
        self._next_trans += 1
        return str(self._next_trans)

    def _summary(self, t: Mapping[str, Any]) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "transId": t["transId"], "submitTimeUTC": _stamp(t["submitted"]), "submitTimeLocal": _local(t["submitted"]),
            "transactionStatus": t["status"], "invoiceNumber": t.get("invoiceNumber"),
            "accountType": t["accountType"], "accountNumber": t["accountNumber"],
            "settleAmount": _money(t["settleAmount"]), "marketType": "eCommerce", "product": "Card Not Present",
        }
        return {k: v for k, v in summary.items() if v is not None}

    def _details(self, t: Mapping[str, Any]) -> dict[str, Any]:
        details: dict[str, Any] = {
            "transId": t["transId"], "refTransId": t.get("refTransId"), "submitTimeUTC": _stamp(t["submitted"]),
            "submitTimeLocal": _local(t["submitted"]), "transactionType": t["type"], "transactionStatus": t["status"],
            "responseCode": t["responseCode"], "responseReasonCode": t["reason"],
            "responseReasonDescription": _REASONS.get(t["reason"], "Error"), "authCode": t.get("authCode") or None,
            "AVSResponse": "Y" if t["responseCode"] == 1 else "P",
        }
        if t.get("batchId"):
            details["batch"] = {"batchId": t["batchId"], "settlementTimeUTC": self.batches[t["batchId"]]["utc"],
                                "settlementTimeLocal": self.batches[t["batchId"]]["local"],
                                "settlementState": "settledSuccessfully"}
        if t.get("invoiceNumber") or t.get("description"):
            details["order"] = {k: v for k, v in (("invoiceNumber", t.get("invoiceNumber")),
                                                  ("description", t.get("description"))) if v}
        details["authAmount"] = _money(t["amount"])
        details["settleAmount"] = _money(t["settleAmount"])
        details["payment"] = {"creditCard": {"cardNumber": t["accountNumber"], "expirationDate": "XXXX",
                                             "cardType": t["accountType"]}}
        if t.get("email"):
            details["customer"] = {"email": t["email"]}
        details["recurringBilling"] = False
        details["product"] = "Card Not Present"
        details["marketType"] = "eCommerce"
        return {k: v for k, v in details.items() if v is not None}

    def _tx_response(self, code: int, reason: int, t: Mapping[str, Any] | None,
                     ref_trans: str = "") -> dict[str, Any]:
        response: dict[str, Any] = {
            "responseCode": str(code), "authCode": (t or {}).get("authCode", ""),
            "avsResultCode": "Y" if code == 1 else "P", "cvvResultCode": "P" if code == 1 else "",
            "cavvResultCode": "2" if code == 1 else "", "transId": (t or {}).get("transId", "0"),
            "refTransID": ref_trans, "transHash": "", "testRequest": "0",
            "accountNumber": (t or {}).get("accountNumber", ""), "accountType": (t or {}).get("accountType", ""),
        }
        if code == 1 or code == 4:
            response["messages"] = [{"code": str(reason), "description": _REASONS.get(reason, "")}]
        else:
            response["errors"] = [{"errorCode": str(reason), "errorText": _REASONS.get(reason, "Error")}]
        response["transHashSha2"] = hashlib.sha512(str(response["transId"]).encode()).hexdigest().upper()
        return response

    def _event(self, event_type: str, t: Mapping[str, Any]) -> None:
        body = {"notificationId": self.next_id("", 36).lower(), "eventType": event_type,
                "eventDate": _stamp(datetime.now(UTC)), "webhookId": "wh-" + self.login,
                "payload": {"responseCode": t["responseCode"], "authCode": t.get("authCode", ""),
                            "avsResponse": "Y", "authAmount": float(t["amount"]),
                            "invoiceNumber": t.get("invoiceNumber"), "entityName": "transaction", "id": t["transId"]}}
        self.send_event(body, lambda raw, secret: AuthorizeNetScheme.sign(raw, secret))

    # --- createTransactionRequest -------------------------------------------------------------------

    def _create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        tx = body.get("transactionRequest") or {}
        ttype = tx.get("transactionType")
        settings = {str(s.get("settingName")): s.get("settingValue")
                    for s in _as_list((tx.get("transactionSettings") or {}).get("setting")) if isinstance(s, dict)}
        try:
            amount = Decimal(str(tx.get("amount"))) if tx.get("amount") not in (None, "") else None
        except InvalidOperation:
            raise AnetError("E00003", "The 'amount' element is invalid.") from None
        order = _obj(tx.get("order"))
        invoice = order.get("invoiceNumber")
        if ttype in ("authCaptureTransaction", "authOnlyTransaction"):
            if amount is None or amount <= 0:
                return self._error_tx(5, "A valid amount is required.")
            return self._charge(tx, ttype, amount, invoice, order.get("description"), settings)
        ref = str(tx.get("refTransId") or "")
        original = self.transactions.get(ref)
        if original is None:
            return self._error_tx(16, _REASONS[16])
        if ttype == "voidTransaction":
            if original["status"] == "voided":
                return self._done(3, 310, original)
            if original["status"] not in ("capturedPendingSettlement", "authorizedPendingCapture",
                                          "refundPendingSettlement"):
                return self._error_tx(16, _REASONS[16])
            original["status"] = "voided"
            original["settleAmount"] = Decimal(0)
            self.set_status("refunds" if original["type"] == "refundTransaction" else "charges", original["transId"],
                            "voided")
            return self._done(1, 1, original)
        if ttype == "priorAuthCaptureTransaction":
            if original["status"] != "authorizedPendingCapture":
                return self._error_tx(16, _REASONS[16])
            original["status"] = "capturedPendingSettlement"
            original["settleAmount"] = amount or original["amount"]
            self.set_status("charges", original["transId"], "succeeded")
            return self._done(1, 1, original)
        if ttype == "refundTransaction":
            if amount is None or amount <= 0:
                return self._error_tx(5, "A valid amount is required.")
            if original["status"] != "settledSuccessfully":
                return self._error_tx(54, _REASONS[54])
            refunded = sum((t["amount"] for t in self.transactions.values()
                            if t.get("refTransId") == ref and t["type"] == "refundTransaction"
                            and t["status"] != "voided"), Decimal(0))
            fingerprint = hashlib.sha256(f"{ttype}|{invoice}|{amount}|{ref}".encode()).hexdigest()
            duplicate = self._duplicate(fingerprint, settings)
            if duplicate is not None:
                return duplicate
            if refunded + amount > original["amount"]:
                return self._error_tx(55, _REASONS[55])
            t = self._new(ttype, amount, invoice or original.get("invoiceNumber"), None, original["accountNumber"],
                          original["accountType"], "refundPendingSettlement", 1, ref_trans=ref,
                          fingerprint=fingerprint)
            self.record("refunds", t["transId"], self._details(t), reference=original.get("invoiceNumber"),
                        amount_minor=int(amount * 100), currency="USD", status="succeeded")
            self._event("net.authorize.payment.refund.created", t)
            return self._done(1, 1, t, ref)
        return self._error_tx(3, f"Transaction type {ttype} is not supported by this sandbox.")

    def _duplicate(self, fingerprint: str, settings: Mapping[str, Any]) -> dict[str, Any] | None:
        """Error 11 when the same transaction came within the duplicate window (default 120 s)."""
        window = DEFAULT_WINDOW
        if "duplicateWindow" in settings:
            try:
                window = max(0, min(28_800, int(str(settings["duplicateWindow"]))))
            except ValueError:
                raise AnetError("E00003", "The 'duplicateWindow' setting is invalid.") from None
        now = datetime.now(UTC)
        for trans_id in self._by_fingerprint.get(fingerprint, ()):
            t = self.transactions[trans_id]
            if (now - t["submitted"]).total_seconds() < window:
                # with duplicateWindow given explicitly, the original transaction's id and auth code come back
                original = t if "duplicateWindow" in settings else None
                return {"transactionResponse": self._tx_response(3, 11, original)}
        return None

    def _new(self, ttype: str, amount: Decimal, invoice: str | None, description: str | None, account: str,
             account_type: str, status: str, response_code: int, *, reason: int = 1, ref_trans: str | None = None,
             email: str | None = None, fingerprint: str | None = None) -> dict[str, Any]:
        t: dict[str, Any] = {
            "transId": self._trans_id(), "type": ttype, "amount": amount,
            "settleAmount": amount if response_code == 1 else Decimal(0), "invoiceNumber": invoice,
            "description": description, "accountNumber": account, "accountType": account_type, "status": status,
            "responseCode": response_code, "reason": reason, "submitted": datetime.now(UTC),
            "authCode": hashlib.sha256(str(self._next_trans).encode()).hexdigest()[:6].upper()
            if response_code in (1, 4) else "", "refTransId": ref_trans, "email": email,
            "fingerprint": fingerprint, "batchId": None,
        }
        self.transactions[t["transId"]] = t
        if fingerprint:
            self._by_fingerprint.setdefault(fingerprint, []).append(t["transId"])
        return t

    def _charge(self, tx: Mapping[str, Any], ttype: str, amount: Decimal, invoice: str | None,
                description: str | None, settings: Mapping[str, Any]) -> dict[str, Any]:
        payment = _obj(tx.get("payment"))
        card = payment.get("creditCard") if isinstance(payment.get("creditCard"), dict) else None
        opaque = payment.get("opaqueData") if isinstance(payment.get("opaqueData"), dict) else None
        if card:
            number = str(card.get("cardNumber") or "")
            if not number.isdigit() or len(number) < 13:
                return self._error_tx(6, _REASONS[6])
            token, last4 = number, number[-4:]
            code = {"0002": "decline", "0027": "insufficient", "0008": "expired", "0004": "review"}.get(last4, "ok")
        elif opaque:
            token = str(opaque.get("dataValue") or "")
            last4, code = "1111", token
        else:
            return self._error_tx(33, "Credit card number is required.")
        account = "XXXX" + last4
        fingerprint = hashlib.sha256(f"{ttype}|{invoice}|{amount}|{token}".encode()).hexdigest()
        duplicate = self._duplicate(fingerprint, settings)
        if duplicate is not None:
            return duplicate
        email = _obj(tx.get("customer")).get("email")
        outcome, decline = card_outcome(code)
        if "review" in code.lower():
            t = self._new(ttype, amount, invoice, description, account, "Visa", "FDSPendingReview", 4, reason=252,
                          email=email, fingerprint=fingerprint)
            self.record("charges", t["transId"], self._details(t), reference=invoice, amount_minor=int(amount * 100),
                        currency="USD", status="held")
            return self._done(4, 252, t)
        if outcome == "declined":
            expired = decline == "expired_card"
            t = self._new(ttype, amount, invoice, description, account, "Visa", "declined" if not expired else
                          "generalError", 3 if expired else 2, reason=8 if expired else 2, email=email,
                          fingerprint=fingerprint)
            self.record("charges", t["transId"], self._details(t), reference=invoice, amount_minor=int(amount * 100),
                        currency="USD", status="declined")
            return self._done(t["responseCode"], t["reason"], t)
        status = "capturedPendingSettlement" if ttype == "authCaptureTransaction" else "authorizedPendingCapture"
        t = self._new(ttype, amount, invoice, description, account, "Visa", status, 1, email=email,
                      fingerprint=fingerprint)
        self.record("charges", t["transId"], self._details(t), reference=invoice, amount_minor=int(amount * 100),
                    currency="USD", status="succeeded" if ttype == "authCaptureTransaction" else "authorized")
        self._event("net.authorize.payment.authcapture.created" if ttype == "authCaptureTransaction"
                    else "net.authorize.payment.authorization.created", t)
        if outcome == "dispute":
            self._chargebacks.append(t["transId"])
        return self._done(1, 1, t)

    def _done(self, code: int, reason: int, t: Mapping[str, Any] | None, ref: str = "") -> dict[str, Any]:
        return {"transactionResponse": self._tx_response(code, reason, t, ref)}

    def _error_tx(self, reason: int, text: str) -> dict[str, Any]:
        response = self._tx_response(3, reason, None)
        response["errors"] = [{"errorCode": str(reason), "errorText": text}]
        return {"transactionResponse": response}

    # --- disputes and settlement -----------------------------------------------------------------------------

    async def open_dispute(self, charge_id: str, reason: str) -> dict[str, Any]:
        original = self.transactions.get(charge_id)
        if original is None or original["type"] != "authCaptureTransaction" or original["responseCode"] != 1:
            raise ValueError(f"no captured transaction {charge_id!r}")
        self._chargebacks.append(charge_id)
        return {"chargeback_pending_for": charge_id, "note": "appears as a chargeback transaction in the next batch"}

    async def close_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        t = self.transactions.get(dispute_id)
        if t is None or t["status"] != "chargeback":
            raise ValueError(f"no chargeback {dispute_id!r}")
        if outcome == "won":
            rev = self._new("chargebackReversal", t["amount"], t.get("invoiceNumber"), None, t["accountNumber"],
                            t["accountType"], "chargebackReversal", 1, ref_trans=t["refTransId"])
            rev["status"] = "chargebackReversal"
            self.set_status("disputes", dispute_id, "won")
            return {"reversal": rev["transId"]}
        self.set_status("disputes", dispute_id, "lost")
        return {"chargeback": dispute_id}

    async def payout(self) -> dict[str, Any]:
        """Settle every pending transaction into one batch (and chargebacks filed since the last batch)."""
        for ref in self._chargebacks:
            original = self.transactions[ref]
            cb = self._new("chargeback", original["amount"], original.get("invoiceNumber"), None,
                           original["accountNumber"], original["accountType"], "chargeback", 1, ref_trans=ref)
            self.record("disputes", cb["transId"], self._details(cb), reference=original.get("invoiceNumber"),
                        amount_minor=int(original["amount"] * 100), currency="USD", status="chargeback")
        self._chargebacks.clear()
        pending = [t for t in self.transactions.values() if t["batchId"] is None and t["status"] in (
            "capturedPendingSettlement", "refundPendingSettlement", "chargeback", "chargebackReversal", "declined",
            "voided")]
        if not pending:
            return {"batch": None}
        batch_id = str(10_000_000 + len(self.batches) + 1)
        now = datetime.now(UTC)
        self.batches[batch_id] = {"batchId": batch_id, "utc": _stamp(now), "local": _local(now), "at": now}
        total = Decimal(0)
        for t in pending:
            t["batchId"] = batch_id
            if t["status"] == "capturedPendingSettlement":
                t["status"] = "settledSuccessfully"
                total += t["settleAmount"]
            elif t["status"] == "refundPendingSettlement":
                t["status"] = "refundSettledSuccessfully"
                total -= t["settleAmount"]
            elif t["status"] == "chargeback":
                total -= t["amount"]
            elif t["status"] == "chargebackReversal":
                total += t["amount"]
        self.record("payouts", batch_id, {"batchId": batch_id, "settlementTimeUTC": _stamp(now), "count": len(pending)},
                    reference=None, amount_minor=int(total * 100), currency="USD", status="settledSuccessfully")
        return {"batch": batch_id, "transactions": len(pending)}

    # --- reporting -----------------------------------------------------------------------------------------

    def _list(self, items: list[dict[str, Any]], body: Mapping[str, Any]) -> dict[str, Any]:
        sorting = _obj(body.get("sorting"))
        descending = str(sorting.get("orderDescending", "false")).lower() == "true"
        items = sorted(items, key=lambda t: (t["submitted"], int(t["transId"])), reverse=descending)
        paging = _obj(body.get("paging"))
        limit = int(paging.get("limit") or 1000)
        offset = int(paging.get("offset") or 1)
        page = items[(offset - 1) * limit: offset * limit]
        out: dict[str, Any] = {}
        if page:
            out["transactions"] = {"transaction": [self._summary(t) for t in page]}
        out["totalNumInResultSet"] = len(items)
        return out

    def _report(self, root: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if root == "getTransactionDetailsRequest":
            t = self.transactions.get(str(body.get("transId")))
            if t is None:
                raise AnetError("E00040", "The record cannot be found.")
            return {"transaction": self._details(t)}
        if root == "getUnsettledTransactionListRequest":
            return self._list([t for t in self.transactions.values() if t["batchId"] is None
                               and t["type"] not in ("chargeback", "chargebackReversal")], body)
        if root == "getTransactionListRequest":
            batch_id = str(body.get("batchId") or "")
            if batch_id not in self.batches:
                raise AnetError("E00040", "The record cannot be found.")
            return self._list([t for t in self.transactions.values() if t["batchId"] == batch_id], body)
        if root == "getSettledBatchListRequest":
            first = body.get("firstSettlementDate")
            last = body.get("lastSettlementDate")
            try:
                lo = datetime.fromisoformat(str(first).replace("Z", "+00:00")) if first else None
                hi = datetime.fromisoformat(str(last).replace("Z", "+00:00")) if last else None
            except ValueError:
                raise AnetError("E00003", "The 'firstSettlementDate' element is invalid.") from None
            lo = lo.replace(tzinfo=UTC) if lo and lo.tzinfo is None else lo
            hi = hi.replace(tzinfo=UTC) if hi and hi.tzinfo is None else hi
            if lo and hi and hi - lo > timedelta(days=31):
                raise AnetError("E00059", "The date range cannot exceed 31 days.")
            batches = [b for b in self.batches.values()
                       if (lo is None or b["at"] >= lo) and (hi is None or b["at"] <= hi)]
            if not batches:
                return {}
            return {"batchList": {"batch": [{"batchId": b["batchId"], "settlementTimeUTC": b["utc"],
                                             "settlementTimeLocal": b["local"],
                                             "settlementState": "settledSuccessfully", "paymentMethod": "creditCard",
                                             "marketType": "eCommerce", "product": "Card Not Present"}
                                            for b in batches]}}
        raise AnetError("E00045", f"The root node does not reference a valid XML namespace or {root} is not "
                        "supported by this sandbox.")

    # --- the API -------------------------------------------------------------------------------------------

    def handle(self, root: str, body: Mapping[str, Any]) -> dict[str, Any]:
        auth = _obj(body.get("merchantAuthentication"))
        if auth.get("name") != self.login or auth.get("transactionKey") != self.transaction_key:
            raise AnetError("E00007", "User authentication failed due to invalid authentication values.")
        ref_id = body.get("refId")
        if root == "createTransactionRequest":
            result = self._create(body)
        else:
            result = self._report(root, body)
        code = (result.get("transactionResponse") or {}).get("responseCode")
        ok = code in (None, "1", "4")
        messages = {"resultCode": "Ok" if ok else "Error",
                    "message": [{"code": "I00001", "text": "Successful."} if ok else
                                {"code": "E00027", "text": "The transaction was unsuccessful."}]}
        head: dict[str, Any] = {}
        if ref_id is not None:
            head["refId"] = ref_id
        head["messages"] = messages
        return {**head, **result}

    def _build_api(self) -> FastAPI:
        app = FastAPI(title="Authorize.net sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        em = self

        def answer(root: str, result: Mapping[str, Any], as_xml: bool) -> Response:
            response_root = root[:-len("Request")] + "Response" if root.endswith("Request") else "ErrorResponse"
            if as_xml:
                xml = etree.tostring(to_xml({response_root: result}), xml_declaration=True, encoding="utf-8")
                return Response(xml, media_type="application/xml; charset=utf-8")
            return Response(BOM + orjson.dumps(result), media_type="application/json; charset=utf-8")

        def failure(root: str, code: str, text: str, as_xml: bool) -> Response:
            body = {"messages": {"resultCode": "Error", "message": [{"code": code, "text": text}]}}
            return answer(root if root.endswith("Request") else "ErrorRequest", body, as_xml)

        @app.exception_handler(SandboxFailure)
        async def _failure(_r: Request, exc: SandboxFailure) -> Response:
            return Response(em.error_body(exc.status, "server-error", ""), status_code=exc.status,
                            media_type="application/json")

        @app.post("/xml/v1/request.api")
        async def request_api(request: Request) -> Response:
            raw = await request.body()
            ctype = request.headers.get("content-type", "")
            as_xml = "xml" in ctype or raw.lstrip(BOM).lstrip().startswith(b"<")
            root = "ErrorRequest"
            try:
                if as_xml:
                    element = etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False, no_network=True))
                    root, body = xml_to_dict(element)
                else:
                    doc = orjson.loads(raw.lstrip(BOM))
                    if not isinstance(doc, dict) or len(doc) != 1:
                        raise AnetError("E00003", "Root element is missing.")
                    (root, body), = doc.items()
                    if not isinstance(body, dict):
                        raise AnetError("E00003", f"The element '{root}' is invalid.")
                    element = to_xml(doc)
                if etree.QName(element).namespace != NS:
                    raise AnetError("E00045", "The root node does not reference a valid XML namespace.")
                xsd = schema()
                error = next(iter(xsd.iter_errors(element)), None) if xsd is not None else None
                if error is not None:
                    raise AnetError("E00003", f"The element is invalid: {str(error.reason or error)[:200]}")
                result = em.handle(root, body)
            except AnetError as exc:
                return failure(root, exc.code, exc.text, as_xml)
            except (ValueError, etree.XMLSyntaxError):
                return failure(root, "E00003", "Data at the root level is invalid.", as_xml)
            if root == "createTransactionRequest":
                await em.committed()
            return answer(root, result, as_xml)

        return app


def create_emulator(*, seed: int = 42, **options: Any) -> AuthorizeNetEmulator:
    return AuthorizeNetEmulator(seed=seed, **options)
