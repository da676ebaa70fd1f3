"""Stripe API v1 emulator (Connect): payment intents, charges, refunds, transfers, accounts, disputes, balance.

Faithful to ``../shared/specs/stripe/spec3.yaml``: ``Authorization: Bearer sk_test_...`` (or HTTP Basic with
the key as user name), form-encoded bodies with nested keys (``transfer_data[destination]``,
``metadata[reference]``), ``Idempotency-Key`` semantics (the same key with the same parameters replays
the stored response with ``Idempotent-Replayed: true``; with other parameters answers 400
``idempotency_error``), ``Stripe-Account`` accepted on reads, list objects with ``starting_after``/
``has_more``, the ``search_result`` object of ``/v1/payment_intents/search`` (query
``metadata['reference']:'...'``), the ``error`` body (``card_error`` with HTTP 402 for declines) and
webhooks signed ``Stripe-Signature: t=...,v1=...``.

Test payment methods: ``pm_card_visa`` (and any other ``pm_card_*``) succeeds, ``pm_card_chargeDeclined``,
``pm_card_chargeDeclinedInsufficientFunds``, ``pm_card_chargeDeclinedExpiredCard`` decline,
``pm_card_createDispute`` succeeds and is disputed at once (as in Stripe test mode).

Money model: destination charges (``application_fee_amount`` + ``transfer_data[destination]``) create the
transfer to the connected account at once; the platform balance gets ``charge`` (fee 2.9 % + 30) and
``transfer`` balance transactions; refunds with ``reverse_transfer``/``refund_application_fee`` reverse
the transfer proportionally; disputes debit the platform (``adjustment``, fee 1500) and credit it back
when won; ``payout`` pays the available balance out.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from wedsync.connectors.webhooks import StripeScheme
from wedsync.sandbox.payments_common import PaymentEmulator, SandboxFailure, card_outcome, processing_fee

__all__ = ["DEFAULT_SECRET_KEY", "PREFIX", "SLUG", "StripeEmulator", "create_emulator", "parse_form"]

SLUG = "stripe"
PREFIX = "/stripe"
DEFAULT_SECRET_KEY = "sk_test_wedsync_platform"
API_VERSION = "2023-08-16"
DISPUTE_FEE = 1500
EVIDENCE_DAYS = 7


class StripeError(Exception):
    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 param: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        body: dict[str, Any] = {"type": type_, "message": message}
        if code:
            body["code"] = code
        if param:
            body["param"] = param
        body.update({k: v for k, v in extra.items() if v is not None})
        self.body = {"error": body}


def parse_form(raw: bytes) -> dict[str, Any]:
    """Stripe's form encoding -> nested dict: ``a[b][c]=1`` -> ``{"a": {"b": {"c": "1"}}}``; ``a[0]``/``a[]``
    become lists."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(raw.decode("utf-8"), keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head] + ([p.rstrip("]") for p in ("[" + rest).split("[")[1:]] if rest else [])
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt_is_index = not last and (parts[i + 1] == "" or parts[i + 1].isdigit())
            if isinstance(node, list):
                index = len(node) if part == "" else int(part)
                while len(node) <= index:
                    node.append(None)
                if last:
                    node[index] = value
                else:
                    if node[index] is None:
                        node[index] = [] if nxt_is_index else {}
                    node = node[index]
            else:
                if last:
                    node[part] = value
                else:
                    if part not in node:
                        node[part] = [] if nxt_is_index else {}
                    node = node[part]
    return out


def _int(params: Mapping[str, Any], name: str, *, required: bool = False, minimum: int = 0) -> int | None:
    raw = params.get(name)
    if raw is None:
        if required:
            raise StripeError(400, "invalid_request_error", f"Missing required param: {name}.",
                              code="parameter_missing", param=name)
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise StripeError(400, "invalid_request_error", f"Invalid integer: {raw}", code="parameter_invalid_integer",
                          param=name) from None
    if value < minimum:
        raise StripeError(400, "invalid_request_error", f"This value must be greater than or equal to {minimum}.",
                          code="parameter_invalid_integer", param=name)
    return value


def _bool(params: Mapping[str, Any], name: str) -> bool:
    return str(params.get(name, "false")).lower() == "true"


def _metadata(params: Mapping[str, Any]) -> dict[str, str]:
    meta = params.get("metadata") or {}
    if not isinstance(meta, dict):
        raise StripeError(400, "invalid_request_error", "Invalid hash", param="metadata")
    return {str(k): str(v) for k, v in meta.items()}


class StripeEmulator(PaymentEmulator):
    slug = SLUG
    prefix = PREFIX

    def __init__(self, *, seed: int = 42, secret_key: str = DEFAULT_SECRET_KEY) -> None:
        self.secret_key = secret_key
        self._reset_state()
        super().__init__(seed=seed)

    def _reset_state(self) -> None:
        self.idempotency: dict[str, tuple[str, bytes, int, bytes]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.balance: list[dict[str, Any]] = []
        self.endpoints: dict[str, dict[str, Any]] = {}

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        type_ = "api_error" if kind != "rate-limit" else "invalid_request_error"
        body: dict[str, Any] = {"type": type_, "message": detail}
        if kind == "rate-limit":
            body["code"] = "rate_limit"
        return orjson.dumps({"error": body})

    # --- helpers --------------------------------------------------------------------------------------------

    def _now(self) -> int:
        return int(time.time())

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        key = ""
        if header.startswith("Bearer "):
            key = header[7:].strip()
        elif header.startswith("Basic "):
            try:
                key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
            except ValueError:
                key = ""
        if not key:
            raise StripeError(401, "invalid_request_error",
                              "You did not provide an API key. You need to provide your API key in the "
                              "Authorization header, using Bearer auth.")
        if key != self.secret_key:
            raise StripeError(401, "invalid_request_error", f"Invalid API Key provided: {key[:8]}****")

    def _balance_txn(self, type_: str, amount: int, fee: int, currency: str, source: str | None,
                     category: str, description: str | None = None) -> str:
        txn_id = self.next_id("txn_")
        now = self._now()
        self.balance.append({
            "id": txn_id, "object": "balance_transaction", "amount": amount, "available_on": now + 2 * 86400,
            "created": now, "currency": currency, "description": description, "exchange_rate": None,
            "fee": fee, "fee_details": ([{"amount": fee, "application": None, "currency": currency,
                                          "description": "Stripe processing fees", "type": "stripe_fee"}]
                                        if fee else []),
            "net": amount - fee, "object_type": None, "reporting_category": category, "source": source,
            "status": "pending", "type": type_,
        })
        self.balance[-1].pop("object_type")
        return txn_id

    def _list(self, items: list[dict[str, Any]], url: str, params: Mapping[str, str]) -> dict[str, Any]:
        limit = max(1, min(100, int(params.get("limit") or 10)))
        after = params.get("starting_after")
        ordered = sorted(items, key=lambda o: (o.get("created", 0), o["id"]), reverse=True)
        if after:
            ids = [o["id"] for o in ordered]
            if after not in ids:
                raise StripeError(400, "invalid_request_error", f"No such object: '{after}'",
                                  code="resource_missing", param="starting_after")
            ordered = ordered[ids.index(after) + 1:]
        return {"object": "list", "data": ordered[:limit], "has_more": len(ordered) > limit, "url": url}

    @staticmethod
    def _created_filter(params: Mapping[str, str]) -> Callable[[Mapping[str, Any]], bool]:
        bounds = {k[len("created["):-1]: int(v) for k, v in params.items()
                  if k.startswith("created[") and k.endswith("]")}
        exact = params.get("created")

        def keep(obj: Mapping[str, Any]) -> bool:
            c = int(obj.get("created", 0))
            if exact is not None and c != int(exact):
                return False
            return (c >= bounds.get("gte", c) and c > bounds.get("gt", c - 1) and c <= bounds.get("lte", c)
                    and c < bounds.get("lt", c + 1))
        return keep

    def _event(self, type_: str, obj: Mapping[str, Any], *, account: str | None = None) -> None:
        body: dict[str, Any] = {
            "id": self.next_id("evt_"), "object": "event", "api_version": API_VERSION, "created": self._now(),
            "data": {"object": dict(obj)}, "livemode": False, "pending_webhooks": 1 if self.hook_url else 0,
            "request": {"id": None, "idempotency_key": None}, "type": type_,
        }
        if account:
            body["account"] = account
        self.send_event(body, lambda raw, secret: StripeScheme.sign(raw, secret))

    def _source(self, source_id: str | None) -> Any:
        """``expand[]=data.source``: the object a balance transaction came from."""
        if source_id is None:
            return None
        for store in (self.charges, self.refunds, self.transfers, self.disputes):
            if source_id in store:
                return store[source_id]
        if source_id.startswith("trr_"):
            for tr in self.transfers.values():
                for rev in tr["reversals"]["data"]:
                    if rev["id"] == source_id:
                        return rev
        payout = self.records["payouts"].get(source_id)
        return payout["object"] if payout else source_id

    # --- money operations --------------------------------------------------------------------------------

    def _expand_intent(self, answer: tuple[int, dict[str, Any]], p: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """``expand[]=latest_charge``: the charge object in place of its id (a destination charge's
        ``transfer`` is on it); part of the stored answer, so a replay of the key returns it too."""
        status, pi = answer
        expand = p.get("expand")
        wanted = set(expand) if isinstance(expand, list) else {expand} if isinstance(expand, str) else set()
        if status == 200 and "latest_charge" in wanted and pi.get("latest_charge") in self.charges:
            charge = self.charges[pi["latest_charge"]]
            return status, {**pi, "latest_charge": {"transfer": None, **charge}}
        return answer

    def _create_intent(self, p: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        amount = _int(p, "amount", required=True, minimum=1)
        assert amount is not None
        currency = str(p.get("currency") or "").lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise StripeError(400, "invalid_request_error", "Missing required param: currency.",
                              code="parameter_missing", param="currency")
        fee = _int(p, "application_fee_amount")
        transfer_data = p.get("transfer_data") if isinstance(p.get("transfer_data"), dict) else None
        destination = str(transfer_data.get("destination")) if transfer_data else None
        if fee is not None and not destination and not p.get("on_behalf_of"):
            raise StripeError(400, "invalid_request_error",
                              "Can only apply an application_fee_amount when the PaymentIntent is attempting a "
                              "direct payment (using an OAuth key or Stripe-Account header) or destination "
                              "payment (using `transfer_data[destination]`).", param="application_fee_amount")
        if destination and destination not in self.accounts:
            raise StripeError(400, "invalid_request_error", f"No such destination: '{destination}'",
                              code="resource_missing", param="transfer_data[destination]")
        if fee is not None and fee > amount:
            raise StripeError(400, "invalid_request_error",
                              "The application fee cannot be greater than the amount.", param="application_fee_amount")
        pm = str(p.get("payment_method") or "")
        if pm and not pm.startswith("pm_"):
            raise StripeError(400, "invalid_request_error", f"No such PaymentMethod: '{pm}'",
                              code="resource_missing", param="payment_method")
        capture_method = str(p.get("capture_method") or "automatic")
        if capture_method not in ("automatic", "automatic_async", "manual"):
            raise StripeError(400, "invalid_request_error", "Invalid capture_method", param="capture_method")
        now = self._now()
        pi_id = self.next_id("pi_")
        pi: dict[str, Any] = {
            "id": pi_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_details": {"tip": {}}, "amount_received": 0, "application": None,
            "application_fee_amount": fee, "automatic_payment_methods": None, "canceled_at": None,
            "cancellation_reason": None, "capture_method": capture_method,
            "client_secret": f"{pi_id}_secret_{hashlib.sha256(pi_id.encode()).hexdigest()[:24]}",
            "confirmation_method": "automatic", "created": now, "currency": currency, "customer": None,
            "description": p.get("description"), "invoice": None, "last_payment_error": None,
            "latest_charge": None, "livemode": False, "metadata": _metadata(p), "next_action": None,
            "on_behalf_of": p.get("on_behalf_of"), "payment_method": pm or None, "payment_method_options": {},
            "payment_method_types": list(p.get("payment_method_types") or ["card"]), "processing": None,
            "receipt_email": p.get("receipt_email"), "review": None, "setup_future_usage": None,
            "shipping": None, "statement_descriptor": None, "statement_descriptor_suffix": None,
            "status": "requires_payment_method" if not pm else "requires_confirmation",
            "transfer_data": {"destination": destination} if destination else None,
            "transfer_group": p.get("transfer_group"),
        }
        self.intents[pi_id] = pi
        if not (pm and _bool(p, "confirm")):
            self._record_intent(pi)
            return 200, pi
        return self._confirm(pi)

    def _record_intent(self, pi: Mapping[str, Any]) -> None:
        status = {"succeeded": "succeeded", "requires_capture": "authorized"}.get(pi["status"], pi["status"])
        self.record("charges", pi["id"], pi, reference=pi["metadata"].get("reference"), amount_minor=pi["amount"],
                    currency=pi["currency"], status=status)

    def _confirm(self, pi: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        outcome, code = card_outcome(pi["payment_method"])
        amount, currency, now = pi["amount"], pi["currency"], self._now()
        ch_id = self.next_id("ch_")
        charge: dict[str, Any] = {
            "id": ch_id, "object": "charge", "amount": amount, "amount_captured": 0, "amount_refunded": 0,
            "application": None, "application_fee": None, "application_fee_amount": pi["application_fee_amount"],
            "balance_transaction": None,
            "billing_details": {"address": None, "email": pi["receipt_email"], "name": None, "phone": None},
            "calculated_statement_descriptor": "WEDSYNC", "captured": False, "created": now, "currency": currency,
            "customer": None, "description": pi["description"], "disputed": False,
            "failure_balance_transaction": None, "failure_code": None, "failure_message": None,
            "fraud_details": {}, "invoice": None, "livemode": False, "metadata": dict(pi["metadata"]),
            "on_behalf_of": pi["on_behalf_of"], "outcome": None, "paid": False, "payment_intent": pi["id"],
            "payment_method": pi["payment_method"], "payment_method_details": None,
            "radar_options": {}, "receipt_email": pi["receipt_email"], "receipt_number": None,
            "receipt_url": None, "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": f"/v1/charges/{ch_id}/refunds"},
            "review": None, "shipping": None, "source_transfer": None, "statement_descriptor": None,
            "statement_descriptor_suffix": None, "status": "pending",
            "transfer_data": pi["transfer_data"], "transfer_group": pi["transfer_group"],
        }
        self.charges[ch_id] = charge
        pi["latest_charge"] = ch_id
        if outcome == "declined":
            message = {"insufficient_funds": "Your card has insufficient funds.",
                       "expired_card": "Your card has expired."}.get(code or "", "Your card was declined.")
            charge.update(status="failed", failure_code="card_declined" if code != "expired_card" else "expired_card",
                          failure_message=message,
                          outcome={"network_status": "declined_by_network", "reason": code, "risk_level": "normal",
                                   "seller_message": "The bank did not return any further details with this "
                                   "decline.", "type": "issuer_declined"})
            pi.update(status="requires_payment_method", payment_method=None,
                      last_payment_error={"charge": ch_id, "code": charge["failure_code"], "decline_code": code,
                                          "message": message, "type": "card_error"})
            self.record("charges", pi["id"], pi, reference=pi["metadata"].get("reference"), amount_minor=amount,
                        currency=currency, status="declined")
            self._event("payment_intent.payment_failed", pi)
            raise StripeError(402, "card_error", message, code=charge["failure_code"], decline_code=code,
                              charge=ch_id, payment_intent=pi)
        charge.update(paid=True, status="succeeded",
                      outcome={"network_status": "approved_by_network", "reason": None, "risk_level": "normal",
                               "seller_message": "Payment complete.", "type": "authorized"})
        if pi["capture_method"] == "manual":
            pi.update(status="requires_capture", amount_capturable=amount)
            self._record_intent(pi)
            return 200, pi
        self._capture(pi, charge, amount)
        if outcome == "dispute":
            self._open_dispute(charge, "fraudulent")
        return 200, pi

    def _capture(self, pi: dict[str, Any], charge: dict[str, Any], amount: int) -> None:
        currency = pi["currency"]
        fee = processing_fee(amount)
        charge.update(captured=True, amount_captured=amount,
                      balance_transaction=self._balance_txn("charge", amount, fee, currency, charge["id"], "charge"))
        pi.update(status="succeeded", amount_received=amount, amount_capturable=0)
        if pi["transfer_data"]:
            app_fee = pi["application_fee_amount"] or 0
            dest = pi["transfer_data"]["destination"]
            tr = self._new_transfer(amount - app_fee, currency, dest, pi["transfer_group"], charge["id"], {})
            charge["transfer"] = tr["id"]
            if app_fee:
                charge["application_fee"] = self.next_id("fee_")
        self._record_intent(pi)
        self._event("payment_intent.succeeded", pi)

    def _new_transfer(self, amount: int, currency: str, destination: str, group: str | None,
                      source: str | None, metadata: dict[str, str]) -> dict[str, Any]:
        tr_id = self.next_id("tr_")
        tr = {
            "id": tr_id, "object": "transfer", "amount": amount, "amount_reversed": 0,
            "balance_transaction": self._balance_txn("transfer", -amount, 0, currency, tr_id, "transfer"),
            "created": self._now(), "currency": currency, "description": None, "destination": destination,
            "destination_payment": self.next_id("py_"), "livemode": False, "metadata": metadata,
            "reversals": {"object": "list", "data": [], "has_more": False, "url": f"/v1/transfers/{tr_id}/reversals"},
            "reversed": False, "source_transaction": source, "source_type": "card", "transfer_group": group,
        }
        self.transfers[tr_id] = tr
        self.record("transfers", tr_id, tr, reference=metadata.get("reference"), amount_minor=amount,
                    currency=currency, status="paid")
        return tr

    def _reverse(self, tr: dict[str, Any], amount: int, metadata: dict[str, str]) -> dict[str, Any]:
        if amount > tr["amount"] - tr["amount_reversed"]:
            raise StripeError(400, "invalid_request_error",
                              "Attempted to reverse more than the remaining amount of the transfer.",
                              param="amount")
        rev_id = self.next_id("trr_")
        rev = {
            "id": rev_id, "object": "transfer_reversal", "amount": amount,
            "balance_transaction": self._balance_txn("transfer_refund", amount, 0, tr["currency"], rev_id,
                                                     "transfer_reversal"),
            "created": self._now(), "currency": tr["currency"], "destination_payment_refund": None,
            "metadata": metadata, "source_refund": None, "transfer": tr["id"],
        }
        tr["amount_reversed"] += amount
        tr["reversed"] = tr["amount_reversed"] >= tr["amount"]
        tr["reversals"]["data"].append(rev)
        self.set_status("transfers", tr["id"], "reversed" if tr["reversed"] else "partially_reversed", tr)
        return rev

    def _refund(self, p: Mapping[str, Any]) -> dict[str, Any]:
        charge: dict[str, Any] | None = None
        if p.get("charge"):
            charge = self.charges.get(str(p["charge"]))
        elif p.get("payment_intent"):
            pi = self.intents.get(str(p["payment_intent"]))
            charge = self.charges.get(pi["latest_charge"]) if pi and pi["latest_charge"] else None
        else:
            raise StripeError(400, "invalid_request_error", "One of the following params should be provided for "
                              "this request: payment_intent or charge.", code="parameter_missing")
        if charge is None:
            raise StripeError(400, "invalid_request_error", "No such charge", code="resource_missing",
                              param="charge" if p.get("charge") else "payment_intent")
        if not charge["captured"]:
            raise StripeError(400, "invalid_request_error", "This charge has not been captured.",
                              code="charge_not_captured")
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        amount = _int(p, "amount", minimum=1)
        amount = remaining if amount is None else amount
        if remaining <= 0:
            raise StripeError(400, "invalid_request_error", f"Charge {charge['id']} has already been refunded.",
                              code="charge_already_refunded")
        if amount > remaining:
            raise StripeError(400, "invalid_request_error",
                              f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                              param="amount")
        reverse = _bool(p, "reverse_transfer")
        if reverse and not charge.get("transfer"):
            raise StripeError(400, "invalid_request_error",
                              "This charge has no associated transfer to reverse.", param="reverse_transfer")
        currency = charge["currency"]
        re_id = self.next_id("re_")
        refund: dict[str, Any] = {
            "id": re_id, "object": "refund", "amount": amount,
            "balance_transaction": self._balance_txn("refund", -amount, 0, currency, re_id, "refund"),
            "charge": charge["id"], "created": self._now(), "currency": currency, "metadata": _metadata(p),
            "payment_intent": charge["payment_intent"], "reason": p.get("reason"),
            "receipt_number": None, "source_transfer_reversal": None, "status": "succeeded",
            "transfer_reversal": None,
        }
        if reverse:
            tr = self.transfers[charge["transfer"]]
            left = tr["amount"] - tr["amount_reversed"]
            if _bool(p, "refund_application_fee"):
                # the platform gives back its fee share: the transfer is reversed in proportion to the refund
                share = (tr["amount"] * amount + charge["amount"] // 2) // charge["amount"]
            else:  # the platform keeps its whole fee: the connected account returns the full refund
                share = amount
            share = min(share, left)
            if share:
                refund["transfer_reversal"] = self._reverse(tr, share, {})["id"]
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        charge["refunds"]["data"].append(refund)
        self.refunds[re_id] = refund
        self.record("refunds", re_id, refund, reference=charge["metadata"].get("reference"), amount_minor=amount,
                    currency=currency, status="succeeded")
        self._event("charge.refunded", charge)
        return refund

    def _open_dispute(self, charge: dict[str, Any], reason: str) -> dict[str, Any]:
        du_id = self.next_id("du_")
        now = self._now()
        amount, currency = charge["amount_captured"] - charge["amount_refunded"], charge["currency"]
        t1 = self._balance_txn("adjustment", -amount, DISPUTE_FEE, currency, du_id, "dispute")
        dispute: dict[str, Any] = {
            "id": du_id, "object": "dispute", "amount": amount,
            "balance_transactions": [b for b in self.balance if b["id"] == t1], "charge": charge["id"],
            "created": now, "currency": currency, "evidence": {k: None for k in _EVIDENCE_FIELDS},
            "evidence_details": {"due_by": now + EVIDENCE_DAYS * 86400, "has_evidence": False, "past_due": False,
                                 "submission_count": 0},
            "is_charge_refundable": False, "livemode": False, "metadata": {},
            "payment_intent": charge["payment_intent"], "reason": reason, "status": "needs_response",
        }
        charge["disputed"] = True
        self.disputes[du_id] = dispute
        self.record("disputes", du_id, dispute, reference=charge["metadata"].get("reference"), amount_minor=amount,
                    currency=currency, status="needs_response")
        self._event("charge.dispute.created", dispute)
        return dispute

    async def open_dispute(self, charge_id: str, reason: str) -> dict[str, Any]:
        charge = self.charges.get(charge_id)
        if charge is None:
            pi = self.intents.get(charge_id)
            charge = self.charges.get(pi["latest_charge"]) if pi and pi["latest_charge"] else None
        if charge is None or not charge["captured"]:
            raise ValueError(f"no captured charge {charge_id!r}")
        return self._open_dispute(charge, reason)

    async def close_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        dispute = self.disputes.get(dispute_id)
        if dispute is None:
            raise ValueError(f"no dispute {dispute_id!r}")
        if dispute["status"] in ("won", "lost"):
            raise ValueError("dispute already closed")
        dispute["status"] = outcome
        if outcome == "won":
            t = self._balance_txn("adjustment", dispute["amount"], 0, dispute["currency"], dispute_id,
                                  "dispute_reversal")
            dispute["balance_transactions"].append(next(b for b in self.balance if b["id"] == t))
        self.set_status("disputes", dispute_id, outcome, dispute)
        self._event("charge.dispute.closed", dispute)
        return dispute

    async def payout(self) -> dict[str, Any]:
        pending = [b for b in self.balance if b["status"] == "pending"]
        totals: dict[str, int] = {}
        for b in pending:
            b["status"] = "available"
            totals[b["currency"]] = totals.get(b["currency"], 0) + b["net"]
        payouts = []
        for currency, net in totals.items():
            if net <= 0:
                continue
            po_id = self.next_id("po_")
            self._balance_txn("payout", -net, 0, currency, po_id, "payout")
            self.balance[-1]["status"] = "available"
            payout = {"id": po_id, "object": "payout", "amount": net, "arrival_date": self._now() + 86400,
                      "automatic": True, "created": self._now(), "currency": currency, "livemode": False,
                      "metadata": {}, "method": "standard", "reconciliation_status": "completed",
                      "source_type": "card", "status": "paid", "type": "bank_account",
                      "balance_transaction": self.balance[-1]["id"]}
            self.record("payouts", po_id, payout, reference=None, amount_minor=net, currency=currency, status="paid")
            self._event("payout.paid", payout)
            payouts.append(po_id)
        return {"payouts": payouts}

    # --- the API ---------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        app = FastAPI(title="Stripe sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        em = self

        def reply(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response:
            return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                            headers={"Request-Id": em.next_id("req_", 20), **(headers or {})})

        @app.exception_handler(StripeError)
        async def _stripe_error(_r: Request, exc: StripeError) -> Response:
            return reply(exc.status, exc.body)

        @app.exception_handler(SandboxFailure)
        async def _failure(_r: Request, exc: SandboxFailure) -> Response:
            return reply(exc.status, {"error": {"type": "api_error", "message": "An unknown error occurred"}})

        @app.exception_handler(StarletteHTTPException)
        async def _http(_r: Request, exc: StarletteHTTPException) -> Response:
            return reply(exc.status_code, {"error": {"type": "invalid_request_error",
                                                     "message": f"Unrecognized request URL. {exc.detail}"}})

        async def mutation(request: Request, handler: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]
                           ) -> Response:
            em._authenticate(request)
            raw = await request.body()
            ctype = request.headers.get("content-type", "")
            if raw and "application/x-www-form-urlencoded" not in ctype:
                raise StripeError(400, "invalid_request_error",
                                  "Invalid request: unsupported Content-Type. Use application/x-www-form-urlencoded.")
            params = parse_form(raw)
            key = request.headers.get("idempotency-key")
            scope_key = f"{request.headers.get('stripe-account', '')}:{key}" if key else None
            if scope_key is not None:
                if len(key or "") > 255:
                    raise StripeError(400, "invalid_request_error", "Idempotency-Key is too long (max 255).")
                stored = em.idempotency.get(scope_key)
                if stored is not None:
                    path, stored_raw, stored_status, stored_body = stored
                    if path != request.url.path or stored_raw != raw:
                        raise StripeError(400, "idempotency_error",
                                          "Keys for idempotent requests can only be used with the same parameters "
                                          "they were first used with. Try using a key other than "
                                          f"'{key}' if you meant to execute a different request.")
                    return Response(stored_body, status_code=stored_status, media_type="application/json",
                                    headers={"Idempotent-Replayed": "true", "Idempotency-Key": key or ""})
            try:
                status, body = handler(params)
            except StripeError as exc:
                if scope_key is not None and exc.status == 402:  # executed and declined: stored like a success
                    em.idempotency[scope_key] = (request.url.path, raw, exc.status, orjson.dumps(exc.body))
                raise
            encoded = orjson.dumps(body)
            if scope_key is not None:
                em.idempotency[scope_key] = (request.url.path, raw, status, encoded)
            await em.committed()
            return Response(encoded, status_code=status, media_type="application/json",
                            headers={"Idempotency-Key": key} if key else None)

        async def read(request: Request) -> dict[str, str]:
            em._authenticate(request)
            return dict(request.query_params)

        def need(store: Mapping[str, dict[str, Any]], obj_id: str, what: str) -> dict[str, Any]:
            obj = store.get(obj_id)
            if obj is None:
                raise StripeError(404, "invalid_request_error", f"No such {what}: '{obj_id}'",
                                  code="resource_missing", param="id")
            return obj

        @app.post("/v1/payment_intents")
        async def create_pi(request: Request) -> Response:
            return await mutation(request, lambda p: em._expand_intent(em._create_intent(p), p))

        @app.get("/v1/payment_intents")
        async def list_pi(request: Request) -> Response:
            q = await read(request)
            keep = em._created_filter(q)
            return reply(200, em._list([p for p in em.intents.values() if keep(p)], "/v1/payment_intents", q))

        @app.get("/v1/payment_intents/search")
        async def search_pi(request: Request) -> Response:
            q = await read(request)
            query = q.get("query") or ""
            m = re.fullmatch(r"\s*metadata\[['\"]([^'\"]+)['\"]\]\s*:\s*['\"]([^'\"]*)['\"]\s*", query)
            if not m:
                raise StripeError(400, "invalid_request_error",
                                  "This sandbox supports search queries of the form metadata['key']:'value'.",
                                  param="query")
            found = [p for p in em.intents.values() if p["metadata"].get(m.group(1)) == m.group(2)]
            found.sort(key=lambda p: (p["created"], p["id"]), reverse=True)
            limit = max(1, min(100, int(q.get("limit") or 10)))
            return reply(200, {"object": "search_result", "data": found[:limit], "has_more": len(found) > limit,
                               "next_page": None, "url": "/v1/payment_intents/search", "total_count": len(found)})

        @app.get("/v1/payment_intents/{intent}")
        async def get_pi(request: Request, intent: str) -> Response:
            await read(request)
            return reply(200, need(em.intents, intent, "payment_intent"))

        @app.post("/v1/payment_intents/{intent}/capture")
        async def capture_pi(request: Request, intent: str) -> Response:
            def handler(p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                pi = need(em.intents, intent, "payment_intent")
                if pi["status"] != "requires_capture":
                    raise StripeError(400, "invalid_request_error",
                                      f"This PaymentIntent could not be captured because it has a status of "
                                      f"{pi['status']}.", code="payment_intent_unexpected_state")
                amount = _int(p, "amount_to_capture", minimum=1) or pi["amount"]
                if amount > pi["amount"]:
                    raise StripeError(400, "invalid_request_error", "amount_to_capture is too large",
                                      param="amount_to_capture")
                em._capture(pi, em.charges[pi["latest_charge"]], amount)
                return 200, pi
            return await mutation(request, handler)

        @app.get("/v1/charges")
        async def list_charges(request: Request) -> Response:
            q = await read(request)
            keep = em._created_filter(q)
            items = [c for c in em.charges.values() if keep(c)
                     and (not q.get("payment_intent") or c["payment_intent"] == q["payment_intent"])
                     and (not q.get("transfer_group") or c["transfer_group"] == q["transfer_group"])]
            return reply(200, em._list(items, "/v1/charges", q))

        @app.get("/v1/charges/{charge}")
        async def get_charge(request: Request, charge: str) -> Response:
            await read(request)
            return reply(200, need(em.charges, charge, "charge"))

        @app.post("/v1/refunds")
        async def create_refund(request: Request) -> Response:
            return await mutation(request, lambda p: (200, em._refund(p)))

        @app.get("/v1/refunds/{refund}")
        async def get_refund(request: Request, refund: str) -> Response:
            await read(request)
            return reply(200, need(em.refunds, refund, "refund"))

        @app.post("/v1/transfers")
        async def create_transfer(request: Request) -> Response:
            def handler(p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                amount = _int(p, "amount", required=True, minimum=1)
                assert amount is not None
                dest = str(p.get("destination") or "")
                if not dest:
                    raise StripeError(400, "invalid_request_error", "Missing required param: destination.",
                                      code="parameter_missing", param="destination")
                if dest not in em.accounts:
                    raise StripeError(400, "invalid_request_error", f"No such destination: '{dest}'",
                                      code="resource_missing", param="destination")
                currency = str(p.get("currency") or "").lower()
                if not currency:
                    raise StripeError(400, "invalid_request_error", "Missing required param: currency.",
                                      code="parameter_missing", param="currency")
                source = p.get("source_transaction")
                if source is not None and source not in em.charges:
                    raise StripeError(400, "invalid_request_error", f"No such charge: '{source}'",
                                      code="resource_missing", param="source_transaction")
                return 200, em._new_transfer(amount, currency, dest, p.get("transfer_group"), source, _metadata(p))
            return await mutation(request, handler)

        @app.get("/v1/transfers/{transfer}")
        async def get_transfer(request: Request, transfer: str) -> Response:
            await read(request)
            return reply(200, need(em.transfers, transfer, "transfer"))

        @app.post("/v1/transfers/{id}/reversals")
        async def reverse_transfer(request: Request, id: str) -> Response:
            def handler(p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                tr = need(em.transfers, id, "transfer")
                amount = _int(p, "amount", minimum=1)
                return 200, em._reverse(tr, tr["amount"] - tr["amount_reversed"] if amount is None else amount,
                                        _metadata(p))
            return await mutation(request, handler)

        @app.post("/v1/accounts")
        async def create_account(request: Request) -> Response:
            def handler(p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                acct_id = em.next_id("acct_", 22)
                raw_caps = p.get("capabilities")
                caps: dict[str, Any] = raw_caps if isinstance(raw_caps, dict) else {}
                acct = {
                    "id": acct_id, "object": "account", "business_type": p.get("business_type"),
                    "capabilities": {name: "inactive" for name in caps}, "charges_enabled": False,
                    "country": p.get("country") or "US", "created": em._now(),
                    "default_currency": p.get("default_currency") or "usd", "details_submitted": False,
                    "email": p.get("email"), "metadata": _metadata(p), "payouts_enabled": False,
                    "type": p.get("type") or "express",
                }
                em.accounts[acct_id] = acct
                return 200, acct
            return await mutation(request, handler)

        @app.get("/v1/accounts/{account}")
        async def get_account(request: Request, account: str) -> Response:
            await read(request)
            return reply(200, need(em.accounts, account, "account"))

        @app.post("/v1/account_links")
        async def account_link(request: Request) -> Response:
            def handler(p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                account = str(p.get("account") or "")
                need(em.accounts, account, "account")
                if p.get("type") not in ("account_onboarding", "account_update"):
                    raise StripeError(400, "invalid_request_error", "Invalid type", param="type")
                now = em._now()
                token = hashlib.sha256(f"{account}:{now}:{em.next_id('')}".encode()).hexdigest()[:24]
                return 200, {"object": "account_link", "created": now, "expires_at": now + 300,
                             "url": f"https://connect.stripe.com/setup/e/{account}/{token}"}
            return await mutation(request, handler)

        @app.get("/v1/balance_transactions")
        async def balance_transactions(request: Request) -> Response:
            q = await read(request)
            keep = em._created_filter(q)
            items = [b for b in em.balance if keep(b) and (not q.get("type") or b["type"] == q["type"])
                     and (not q.get("source") or b["source"] == q["source"])]
            page = em._list(items, "/v1/balance_transactions", q)
            expand = {v for k, v in request.query_params.multi_items() if k.startswith("expand")}
            if "data.source" in expand:
                page["data"] = [{**b, "source": em._source(b["source"])} for b in page["data"]]
            return reply(200, page)

        @app.get("/v1/disputes")
        async def list_disputes(request: Request) -> Response:
            q = await read(request)
            items = [d for d in em.disputes.values() if not q.get("charge") or d["charge"] == q["charge"]]
            return reply(200, em._list(items, "/v1/disputes", q))

        @app.get("/v1/disputes/{dispute}")
        async def get_dispute(request: Request, dispute: str) -> Response:
            await read(request)
            return reply(200, need(em.disputes, dispute, "dispute"))

        @app.post("/v1/disputes/{dispute}")
        async def update_dispute(request: Request, dispute: str) -> Response:
            def handler(p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                du = need(em.disputes, dispute, "dispute")
                if du["status"] not in ("needs_response", "warning_needs_response"):
                    raise StripeError(400, "invalid_request_error",
                                      f"This dispute is already {du['status']}; evidence can no longer be "
                                      "submitted.", code="dispute_already_closed" if du["status"] in ("won", "lost")
                                      else None)
                raw_evidence = p.get("evidence")
                evidence: dict[str, Any] = raw_evidence if isinstance(raw_evidence, dict) else {}
                unknown = sorted(set(evidence) - set(_EVIDENCE_FIELDS))
                if unknown:
                    raise StripeError(400, "invalid_request_error",
                                      f"Received unknown parameter: evidence[{unknown[0]}]",
                                      param=f"evidence[{unknown[0]}]")
                du["evidence"].update({k: str(v) for k, v in evidence.items()})
                du["evidence_details"]["has_evidence"] = True
                du["metadata"].update(_metadata(p))
                if _bool(p, "submit"):
                    du["status"] = "under_review"
                    du["evidence_details"]["submission_count"] += 1
                    em.set_status("disputes", du["id"], "under_review", du)
                    em._event("charge.dispute.updated", du)
                return 200, du
            return await mutation(request, handler)

        @app.post("/v1/webhook_endpoints")
        async def webhook_endpoint(request: Request) -> Response:
            def handler(p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                url = str(p.get("url") or "")
                if not url.startswith(("http://", "https://")):
                    raise StripeError(400, "invalid_request_error", "Invalid URL", param="url")
                we_id = em.next_id("we_")
                secret = "whsec_" + hashlib.sha256(f"{we_id}{em.seed_value}".encode()).hexdigest()[:32]
                ep = {"id": we_id, "object": "webhook_endpoint", "api_version": p.get("api_version"),
                      "application": None, "created": em._now(), "description": p.get("description"),
                      "enabled_events": list(p.get("enabled_events") or ["*"]), "livemode": False,
                      "metadata": _metadata(p), "secret": secret, "status": "enabled", "url": url}
                em.endpoints[we_id] = ep
                em.hook_url, em.hook_secret = url, secret
                return 200, ep
            return await mutation(request, handler)

        return app


_EVIDENCE_FIELDS = (
    "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
    "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
    "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation", "duplicate_charge_explanation",
    "duplicate_charge_id", "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
    "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address", "shipping_carrier",
    "shipping_date", "shipping_documentation", "shipping_tracking_number", "uncategorized_file",
    "uncategorized_text",
)


def create_emulator(*, seed: int = 42, **options: Any) -> StripeEmulator:
    return StripeEmulator(seed=seed, **options)
