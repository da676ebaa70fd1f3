"""Payments tables: vendor setup, intents and attempts, refunds, escrow holds, disputes, the double-entry
ledger (balanced per currency by database triggers, see migration 0003) and reconciliation reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from wedsync.store.tables import Base, new_id, utcnow

Amount = BigInteger  # minor units: integers only (rule 1)


class PaymentSetup(Base):
    """A vendor's gateway configuration: primary, fallbacks, routing rules, fees, compliance."""

    __tablename__ = "payment_setups"
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PaymentGatewayAccount(Base):
    """Onboarding state of one gateway connection of a vendor (account link, OAuth, referral, credentials)."""

    __tablename__ = "payment_gateway_accounts"
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="pending")  # pending|action_required|active
    account_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    next_step: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PaymentIntent(Base):
    """One payment (a milestone of a booking), committed before any gateway call; its workflow id is its id."""

    __tablename__ = "payment_intents"
    __table_args__ = (
        UniqueConstraint("vendor_id", "client_key", name="uq_payment_intents_client_key"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        Index("ix_payment_intents_status", "status", "updated_at"),
    )
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    client_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    booking_ref: Mapped[str] = mapped_column(String(200), index=True)
    milestone: Mapped[str] = mapped_column(String(32), default="full")  # deposit|installment|final|full
    sequence: Mapped[int] = mapped_column(Integer, default=1)
    amount_minor: Mapped[int] = mapped_column(Amount)
    currency: Mapped[str] = mapped_column(String(3))
    payment_method: Mapped[str] = mapped_column(String(200))
    method_type: Mapped[str] = mapped_column(String(32), default="card")
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    customer_email: Mapped[str | None] = mapped_column(String(320), default=None)
    affiliate_id: Mapped[str | None] = mapped_column(String(200), default=None)
    split: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {vendor, platform, affiliate}
    escrow: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # EscrowTerms.as_dict()
    route: Mapped[list[Any]] = mapped_column(default=list)  # connection ids, in order
    failover_on_decline: Mapped[bool] = mapped_column(Boolean, default=False)
    # created|processing|succeeded|declined|failed|unknown (+ refunded / partially_refunded after success)
    status: Mapped[str] = mapped_column(String(24), default="created")
    connection_id: Mapped[str | None] = mapped_column(String(26), default=None)
    provider: Mapped[str | None] = mapped_column(String(64), default=None)
    gateway_ref: Mapped[str | None] = mapped_column(String(200), default=None, index=True)
    native_split: Mapped[bool] = mapped_column(Boolean, default=False)
    transfer_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failure_code: Mapped[str | None] = mapped_column(String(64), default=None)
    failure_message: Mapped[str | None] = mapped_column(Text, default=None)
    refunded_minor: Mapped[int] = mapped_column(Amount, default=0)
    refunded_split: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finalized_at: Mapped[datetime | None] = mapped_column(default=None)


class PaymentAttempt(Base):
    """One gateway call for an intent; its idempotency key is committed before the call is sent."""

    __tablename__ = "payment_attempts"
    __table_args__ = (UniqueConstraint("intent_id", "attempt_no", name="uq_payment_attempts_no"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    intent_id: Mapped[str] = mapped_column(ForeignKey("payment_intents.id", ondelete="CASCADE"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    connection_id: Mapped[str] = mapped_column(String(26))
    provider: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="sent")  # sent|not_executed|declined|succeeded|unknown
    lookups: Mapped[int] = mapped_column(Integer, default=0)
    gateway_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    decline_code: Mapped[str | None] = mapped_column(String(100), default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    native_split: Mapped[bool] = mapped_column(Boolean, default=False)
    gateway_ms: Mapped[float | None] = mapped_column(default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class PaymentRefund(Base):
    """A refund of (part of) an intent; committed with its idempotency key before the gateway call."""

    __tablename__ = "payment_refunds"
    __table_args__ = (CheckConstraint("amount_minor > 0", name="amount_positive"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    intent_id: Mapped[str] = mapped_column(ForeignKey("payment_intents.id", ondelete="CASCADE"), index=True)
    client_key: Mapped[str | None] = mapped_column(String(200), default=None)
    kind: Mapped[str] = mapped_column(String(16), default="refund")  # refund|cancellation
    amount_minor: Mapped[int] = mapped_column(Amount)
    currency: Mapped[str] = mapped_column(String(3))
    share: Mapped[dict[str, Any]] = mapped_column(default=dict)
    from_escrow: Mapped[int] = mapped_column(Amount, default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|succeeded|failed|unknown
    gateway_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class EscrowHold(Base):
    """The held part of a vendor's share of one intent, and its release condition."""

    __tablename__ = "escrow_holds"
    __table_args__ = (Index("ix_escrow_holds_vendor_id_id", "vendor_id", "id"),)  # the list's keyset
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    intent_id: Mapped[str] = mapped_column(ForeignKey("payment_intents.id", ondelete="CASCADE"), unique=True)
    booking_ref: Mapped[str] = mapped_column(String(200), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    held_minor: Mapped[int] = mapped_column(Amount)
    released_minor: Mapped[int] = mapped_column(Amount, default=0)
    returned_minor: Mapped[int] = mapped_column(Amount, default=0)  # refunded or cancelled out of escrow
    terms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(24), default="held")  # held|partially_released|released|cancelled
    releases: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MilestoneApproval(Base):
    """A booking milestone the vendor's client (or the planner) approved; releases milestone escrow."""

    __tablename__ = "payment_milestone_approvals"
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), primary_key=True)
    booking_ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    milestone: Mapped[str] = mapped_column(String(200), primary_key=True)
    approved_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentDispute(Base):
    """A chargeback as the gateway's webhooks report it, with our ledger effects applied once per state."""

    __tablename__ = "payment_disputes"
    __table_args__ = (UniqueConstraint("connection_id", "dispute_ref", name="uq_payment_disputes_ref"),
                      Index("ix_payment_disputes_vendor_id_id", "vendor_id", "id"))  # the list's keyset
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    intent_id: Mapped[str | None] = mapped_column(ForeignKey("payment_intents.id", ondelete="CASCADE"),
                                                  default=None, index=True)
    connection_id: Mapped[str] = mapped_column(String(26))
    provider: Mapped[str] = mapped_column(String(64))
    dispute_ref: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(Amount)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(24), default="needs_response")  # needs_response|under_review|won|lost
    gateway_status: Mapped[str | None] = mapped_column(String(64), default=None)
    share: Mapped[dict[str, Any]] = mapped_column(default=dict)
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    evidence_due_by: Mapped[datetime | None] = mapped_column(default=None)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    evidence_submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LedgerTransaction(Base):
    """The header of a balanced ledger transaction. Inserted AFTER its entries: its insert trigger checks
    that the entries net to zero per currency and number ``entry_count``; no row is ever updated or deleted."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (CheckConstraint("entry_count >= 2", name="two_entries"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id"), index=True)
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    intent_id: Mapped[str | None] = mapped_column(String(26), default=None, index=True)
    entry_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerEntry(Base):
    """One immutable debit (> 0) or credit (< 0) in minor units. References its header through a deferred
    foreign key, so the entries can be written first and the header (with its balance check) last."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="non_zero"),
        Index("ix_ledger_entries_account", "account", "currency"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    txn_id: Mapped[str] = mapped_column(
        ForeignKey("ledger_transactions.id", deferrable=True, initially="DEFERRED"), index=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id"), index=True)
    account: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(Amount)


class ReconciliationReport(Base):
    """The ledger compared with one gateway account's settlement records over a period."""

    __tablename__ = "reconciliation_reports"
    __table_args__ = (Index("ix_reconciliation_reports_vendor_id_id", "vendor_id", "id"),)  # the list's keyset
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    period_start: Mapped[datetime] = mapped_column()
    period_end: Mapped[datetime] = mapped_column()
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    items: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentTransfer(Base):
    """A move of the vendor's money at the gateway (a separate transfer, or a transfer reversal); its
    idempotency key is committed before the call, and the ledger posting follows its success."""

    __tablename__ = "payment_transfers"
    __table_args__ = (CheckConstraint("amount_minor > 0", name="amount_positive"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    intent_id: Mapped[str] = mapped_column(ForeignKey("payment_intents.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))  # transfer|reversal
    reason: Mapped[str] = mapped_column(String(64))  # escrow_release|payout|refund|dispute|dispute_won
    amount_minor: Mapped[int] = mapped_column(Amount)
    currency: Mapped[str] = mapped_column(String(3))
    destination: Mapped[str | None] = mapped_column(String(200), default=None)
    source_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|succeeded|failed|unknown
    gateway_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
