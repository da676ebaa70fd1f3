"""Reconciliation: the ledger's view of a gateway account against the gateway's own settlement records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from wedsync.connectors.payments.base import GatewayConnector, SettlementItem
from wedsync.errors import InvalidInput, NotFound
from wedsync.store.paging import cursor_row
from wedsync.store.tables import Connection, new_id, utcnow
from wedsync.store.tables_payments import (
    PaymentDispute,
    PaymentIntent,
    PaymentRefund,
    PaymentSetup,
    ReconciliationReport,
)

MATCHED_KINDS = ("charge", "refund", "dispute")


@dataclass
class _Expected:
    kind: str
    amount: int  # signed, from the platform account's view
    currency: str
    keys: set[str]
    ours: str  # our record id
    matched: bool = False


@dataclass
class Report:
    matched: list[dict[str, Any]] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    missing_in_gateway: list[dict[str, Any]] = field(default_factory=list)
    missing_in_ledger: list[dict[str, Any]] = field(default_factory=list)
    other: dict[str, int] = field(default_factory=dict)
    fees_minor: dict[str, int] = field(default_factory=dict)


def compare(expected: list[_Expected], items: list[SettlementItem]) -> Report:
    """Match gateway items to ledger items of the same kind by any shared id (the gateway's id of the
    charge/refund/dispute, its source charge, or our reference), then compare amount and currency."""
    rep = Report()
    index: dict[tuple[str, str], list[_Expected]] = {}
    for e in expected:
        for k in e.keys:
            index.setdefault((e.kind, k), []).append(e)
    for it in items:
        if it.fee_minor:
            rep.fees_minor[it.currency] = rep.fees_minor.get(it.currency, 0) + it.fee_minor
        if it.kind not in MATCHED_KINDS:
            rep.other[it.kind] = rep.other.get(it.kind, 0) + 1
            continue
        candidates = [e for k in (it.gateway_ref, it.source_ref or "", it.reference or "") if k
                      for e in index.get((it.kind, k), []) if not e.matched]
        # several refunds of one charge share its id: prefer the one with the same amount
        found = next((e for e in candidates if abs(e.amount) == abs(it.gross_minor)),
                     candidates[0] if candidates else None)
        gw = {"kind": it.kind, "gatewayRef": it.gateway_ref, "sourceRef": it.source_ref, "reference": it.reference,
              "amountMinor": it.gross_minor, "currency": it.currency, "feeMinor": it.fee_minor}
        if found is None:
            rep.missing_in_ledger.append(gw)
            continue
        found.matched = True
        ok = abs(found.amount) == abs(it.gross_minor) and found.currency == it.currency.upper()
        entry = {**gw, "ours": found.ours, "ledgerAmountMinor": found.amount, "ledgerCurrency": found.currency}
        (rep.matched if ok else rep.mismatched).append(entry)
    for e in expected:
        if not e.matched:
            rep.missing_in_gateway.append({"kind": e.kind, "ours": e.ours, "amountMinor": e.amount,
                                           "currency": e.currency, "keys": sorted(e.keys)})
    return rep


class Reconciler:
    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.db = hub.db

    def _expected(self, connection_id: str, since: datetime, until: datetime) -> list[_Expected]:
        out: list[_Expected] = []
        with self.db.read() as s:
            for i in s.execute(select(PaymentIntent).where(
                    PaymentIntent.connection_id == connection_id, PaymentIntent.status == "succeeded",
                    PaymentIntent.finalized_at >= since, PaymentIntent.finalized_at < until)).scalars():
                out.append(_Expected("charge", i.amount_minor, i.currency, {i.gateway_ref or "", i.id} - {""}, i.id))
            for r, gref in s.execute(select(PaymentRefund, PaymentIntent.gateway_ref).join(
                    PaymentIntent, PaymentIntent.id == PaymentRefund.intent_id).where(
                    PaymentIntent.connection_id == connection_id, PaymentRefund.status == "succeeded",
                    PaymentRefund.finished_at >= since, PaymentRefund.finished_at < until)).all():
                keys = {r.gateway_ref or "", r.id, gref or ""} - {""}
                out.append(_Expected("refund", -r.amount_minor, r.currency, keys, r.id))
            for d, gref in s.execute(select(PaymentDispute, PaymentIntent.gateway_ref).join(
                    PaymentIntent, PaymentIntent.id == PaymentDispute.intent_id).where(
                    PaymentDispute.connection_id == connection_id, PaymentDispute.withdrawn.is_(True),
                    PaymentDispute.created_at >= since, PaymentDispute.created_at < until)).all():
                keys = {d.dispute_ref, gref or ""} - {""}
                out.append(_Expected("dispute", -d.amount_minor, d.currency, keys, d.id))
                if d.status == "won":  # the funds came back: a second movement
                    out.append(_Expected("dispute", d.amount_minor, d.currency, keys, f"{d.id}:won"))
        return out

    async def reconcile(self, vendor_id: str, since: datetime, until: datetime) -> dict[str, Any]:
        """Compare every gateway of the vendor's setup over ``[since, until)``; store and return the report."""
        if since.tzinfo is None or until.tzinfo is None:
            raise InvalidInput("since and until need a UTC offset", code="naive_datetime")
        if until <= since:
            raise InvalidInput("until must be after since", code="invalid_period")
        with self.db.read() as s:
            setup = s.get(PaymentSetup, vendor_id)
            if setup is None:
                raise NotFound("this vendor has no payment setup", code="no_payment_setup")
            ids = [setup.config["primary"] if isinstance(setup.config["primary"], str)
                   else setup.config["primary"]["connectionId"]]
            ids += [f if isinstance(f, str) else f["connectionId"] for f in setup.config.get("fallbacks", [])]
            conns = list(s.execute(select(Connection).where(Connection.id.in_(ids),
                                                            Connection.vendor_id == vendor_id)).scalars())
        per_gateway = []
        items: list[dict[str, Any]] = []
        totals = {"matched": 0, "mismatched": 0, "missingInGateway": 0, "missingInLedger": 0}
        for conn in conns:
            connector = await self.hub.connections.connector(conn)
            if not isinstance(connector, GatewayConnector):
                continue
            settled = await connector.settlements(since, until)
            rep = compare(self._expected(conn.id, since, until), settled)
            await self._record_chargebacks(conn.id, rep)
            unattributed = self._keep_own(conn.id, rep)
            counts = {"matched": len(rep.matched), "mismatched": len(rep.mismatched),
                      "missingInGateway": len(rep.missing_in_gateway), "missingInLedger": len(rep.missing_in_ledger)}
            for k, v in counts.items():
                totals[k] += v
            per_gateway.append({"connectionId": conn.id, "gateway": conn.provider, **counts,
                                "unattributedItems": unattributed, "otherItems": rep.other,
                                "gatewayFeesMinor": rep.fees_minor})
            for status, rows in (("mismatched", rep.mismatched), ("missing_in_gateway", rep.missing_in_gateway),
                                 ("missing_in_ledger", rep.missing_in_ledger), ("matched", rep.matched)):
                items += [{"status": status, "connectionId": conn.id, **r} for r in rows]
        summary = {**totals, "gateways": per_gateway, "ledger": self.hub.payments.ledger_check(vendor_id)}
        row = ReconciliationReport(id=new_id(), vendor_id=vendor_id, period_start=since, period_end=until,
                                   summary=summary, items=items, created_at=utcnow())
        with self.db.session() as s:
            s.add(row)
        return self.view(row)

    def _keep_own(self, connection_id: str, rep: Report) -> int:
        """A gateway account can be shared (the platform's Stripe account carries every vendor's charges):
        a vendor's report lists only gateway items that are its own. Items missing from this vendor's ledger
        that cannot be tied to one of its payments are only counted (the operator reconciles the account),
        never shown: they may be another vendor's. Returns how many were left out."""
        own, dropped = [], 0
        for item in rep.missing_in_ledger:
            if self.hub.payments.find_intent(connection_id, [item["gatewayRef"], item["sourceRef"] or ""],
                                             item["reference"]):
                own.append(item)
            else:
                dropped += 1
        rep.missing_in_ledger = own
        rep.other = {}  # fees, transfers and payouts of a shared account are not attributed either
        rep.fees_minor = {}
        return dropped

    async def _record_chargebacks(self, connection_id: str, rep: Report) -> None:
        """A chargeback the gateway reports only in its settlements (Authorize.net) becomes a dispute with its
        ledger effect; the item then counts as matched (``recorded``)."""
        for item in list(rep.missing_in_ledger):
            if item["kind"] != "dispute" or item["amountMinor"] >= 0:
                continue
            intent_id = self.hub.payments.find_intent(connection_id, [item["gatewayRef"], item["sourceRef"] or ""],
                                                      item["reference"])
            if intent_id is None:
                continue
            dispute_id = await self.hub.payments.record_chargeback(connection_id, intent_id, item["gatewayRef"],
                                                                   -item["amountMinor"], item["currency"])
            rep.missing_in_ledger.remove(item)
            rep.matched.append({**item, "ours": dispute_id, "recorded": "chargeback recorded as a dispute"})

    @staticmethod
    def view(r: ReconciliationReport, *, items: bool = True) -> dict[str, Any]:
        out = {"id": r.id, "periodStart": r.period_start.isoformat(), "periodEnd": r.period_end.isoformat(),
               "createdAt": r.created_at.isoformat(), "summary": r.summary}
        if items:
            out["items"] = r.items
        return out

    def reports(self, vendor_id: str, limit: int = 20, after: str | None = None) -> list[dict[str, Any]]:
        """Newest first, without their items; ``after`` is the last id of the previous page."""
        with self.db.read() as s:
            q = select(ReconciliationReport).where(ReconciliationReport.vendor_id == vendor_id)
            if after:
                cursor_row(s, ReconciliationReport, after, ReconciliationReport.vendor_id == vendor_id)
                q = q.where(ReconciliationReport.id < after)
            rows = s.execute(q.order_by(ReconciliationReport.id.desc()).limit(limit)).scalars()
            return [self.view(r, items=False) for r in rows]

    def get(self, vendor_id: str, report_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            r = s.get(ReconciliationReport, report_id)
        if r is None or r.vendor_id != vendor_id:
            raise NotFound("report not found", code="unknown_report")
        return self.view(r)

    def vendors_with_setup(self) -> list[str]:
        with self.db.read() as s:
            return list(s.execute(select(PaymentSetup.vendor_id)).scalars())
