"""payments: setup, intents, attempts, refunds, escrow, disputes, the double-entry ledger, reconciliation

The ledger's invariants live in the database, not only in the code (issue 4):

* ``ledger_entries`` reference their ``ledger_transactions`` header through a DEFERRED foreign key, so a
  writer inserts the entries first and the header last, in one transaction;
* the header's insert trigger refuses it unless its entries number ``entry_count`` (>= 2) and sum to zero
  in every currency;
* an entry whose header already exists is refused (nothing can be added to a posted transaction), and
  UPDATE and DELETE are refused on both tables (corrections are new, reversing transactions);
* ``reference`` is unique: a replayed posting cannot land twice; an entry without a header fails the
  deferred foreign key at commit.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import wedsync.store.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = (
    "payment_refunds",
    "payment_gateway_accounts",
    "payment_disputes",
    "payment_attempts",
    "ledger_entries",
    "escrow_holds",
    "reconciliation_reports",
    "payment_setups",
    "payment_milestone_approvals",
    "payment_intents",
    "ledger_transactions",
)

SQLITE_TRIGGERS = (
    """CREATE TRIGGER trg_ledger_txn_balanced AFTER INSERT ON ledger_transactions
    BEGIN
        SELECT RAISE(ABORT, 'ledger transaction is not balanced per currency')
        WHERE (SELECT COUNT(*) FROM ledger_entries WHERE txn_id = NEW.id) <> NEW.entry_count
           OR EXISTS (SELECT 1 FROM ledger_entries WHERE txn_id = NEW.id
                      GROUP BY currency HAVING SUM(amount) <> 0);
    END""",
    """CREATE TRIGGER trg_ledger_entry_posted BEFORE INSERT ON ledger_entries
    BEGIN
        SELECT RAISE(ABORT, 'ledger transaction already posted: its entries are immutable')
        WHERE EXISTS (SELECT 1 FROM ledger_transactions WHERE id = NEW.txn_id);
    END""",
    """CREATE TRIGGER trg_ledger_entry_no_update BEFORE UPDATE ON ledger_entries
    BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable'); END""",
    """CREATE TRIGGER trg_ledger_entry_no_delete BEFORE DELETE ON ledger_entries
    BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable'); END""",
    """CREATE TRIGGER trg_ledger_txn_no_update BEFORE UPDATE ON ledger_transactions
    BEGIN SELECT RAISE(ABORT, 'ledger transactions are immutable'); END""",
    """CREATE TRIGGER trg_ledger_txn_no_delete BEFORE DELETE ON ledger_transactions
    BEGIN SELECT RAISE(ABORT, 'ledger transactions are immutable'); END""",
)

POSTGRES_TRIGGERS = (
    """CREATE FUNCTION ledger_txn_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT COUNT(*) FROM ledger_entries WHERE txn_id = NEW.id) <> NEW.entry_count
           OR EXISTS (SELECT 1 FROM ledger_entries WHERE txn_id = NEW.id
                      GROUP BY currency HAVING SUM(amount) <> 0) THEN
            RAISE EXCEPTION 'ledger transaction % is not balanced per currency', NEW.reference
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE FUNCTION ledger_entry_posted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM ledger_transactions WHERE id = NEW.txn_id) THEN
            RAISE EXCEPTION 'ledger transaction already posted: its entries are immutable'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is immutable', TG_TABLE_NAME USING ERRCODE = 'check_violation';
    END $$""",
    """CREATE TRIGGER trg_ledger_txn_balanced AFTER INSERT ON ledger_transactions
        FOR EACH ROW EXECUTE FUNCTION ledger_txn_balanced()""",
    """CREATE TRIGGER trg_ledger_entry_posted BEFORE INSERT ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entry_posted()""",
    """CREATE TRIGGER trg_ledger_entry_immutable BEFORE UPDATE OR DELETE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_immutable()""",
    """CREATE TRIGGER trg_ledger_txn_immutable BEFORE UPDATE OR DELETE ON ledger_transactions
        FOR EACH ROW EXECUTE FUNCTION ledger_immutable()""",
    # TRUNCATE bypasses row triggers
    """CREATE TRIGGER trg_ledger_entry_no_truncate BEFORE TRUNCATE ON ledger_entries
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable()""",
    """CREATE TRIGGER trg_ledger_txn_no_truncate BEFORE TRUNCATE ON ledger_transactions
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable()""",
)


def upgrade() -> None:
    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("intent_id", sa.String(length=26), nullable=True),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("created_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("entry_count >= 2", name=op.f("ck_ledger_transactions_two_entries")),
        sa.ForeignKeyConstraint(["vendor_id"], ["vendors.id"], name=op.f("fk_ledger_transactions_vendor_id_vendors")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("reference", name=op.f("uq_ledger_transactions_reference")),
    )
    op.create_index(op.f("ix_ledger_transactions_intent_id"), "ledger_transactions", ["intent_id"], unique=False)
    op.create_index(op.f("ix_ledger_transactions_vendor_id"), "ledger_transactions", ["vendor_id"], unique=False)
    op.create_table(
        "payment_intents",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("client_key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("booking_ref", sa.String(length=200), nullable=False),
        sa.Column("milestone", sa.String(length=32), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_method", sa.String(length=200), nullable=False),
        sa.Column("method_type", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("customer_email", sa.String(length=320), nullable=True),
        sa.Column("affiliate_id", sa.String(length=200), nullable=True),
        sa.Column("split", sa.JSON(), nullable=False),
        sa.Column("escrow", sa.JSON(), nullable=True),
        sa.Column("route", sa.JSON(), nullable=False),
        sa.Column("failover_on_decline", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=True),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("gateway_ref", sa.String(length=200), nullable=True),
        sa.Column("native_split", sa.Boolean(), nullable=False),
        sa.Column("transfer_ref", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_split", sa.JSON(), nullable=False),
        sa.Column("created_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finalized_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payment_intents_amount_positive")),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_payment_intents_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_intents")),
        sa.UniqueConstraint("vendor_id", "client_key", name="uq_payment_intents_client_key"),
    )
    op.create_index(op.f("ix_payment_intents_booking_ref"), "payment_intents", ["booking_ref"], unique=False)
    op.create_index(op.f("ix_payment_intents_gateway_ref"), "payment_intents", ["gateway_ref"], unique=False)
    op.create_index("ix_payment_intents_status", "payment_intents", ["status", "updated_at"], unique=False)
    op.create_index(op.f("ix_payment_intents_vendor_id"), "payment_intents", ["vendor_id"], unique=False)
    op.create_table(
        "payment_milestone_approvals",
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("booking_ref", sa.String(length=200), nullable=False),
        sa.Column("milestone", sa.String(length=200), nullable=False),
        sa.Column("approved_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["vendor_id"],
            ["vendors.id"],
            name=op.f("fk_payment_milestone_approvals_vendor_id_vendors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("vendor_id", "booking_ref", "milestone", name=op.f("pk_payment_milestone_approvals")),
    )
    op.create_table(
        "payment_setups",
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_payment_setups_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("vendor_id", name=op.f("pk_payment_setups")),
    )
    op.create_table(
        "reconciliation_reports",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("period_start", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("period_end", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("created_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_reconciliation_reports_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_reports")),
    )
    op.create_index(op.f("ix_reconciliation_reports_vendor_id"), "reconciliation_reports", ["vendor_id"], unique=False)
    op.create_table(
        "escrow_holds",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("intent_id", sa.String(length=26), nullable=False),
        sa.Column("booking_ref", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("held_minor", sa.BigInteger(), nullable=False),
        sa.Column("released_minor", sa.BigInteger(), nullable=False),
        sa.Column("returned_minor", sa.BigInteger(), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("releases", sa.Integer(), nullable=False),
        sa.Column("created_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["payment_intents.id"],
            name=op.f("fk_escrow_holds_intent_id_payment_intents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_escrow_holds_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escrow_holds")),
        sa.UniqueConstraint("intent_id", name=op.f("uq_escrow_holds_intent_id")),
    )
    op.create_index(op.f("ix_escrow_holds_booking_ref"), "escrow_holds", ["booking_ref"], unique=False)
    op.create_index(op.f("ix_escrow_holds_vendor_id"), "escrow_holds", ["vendor_id"], unique=False)
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("txn_id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_entries_non_zero")),
        sa.ForeignKeyConstraint(
            ["txn_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_entries_txn_id_ledger_transactions"),
            initially="DEFERRED",
            deferrable=True,
        ),
        sa.ForeignKeyConstraint(["vendor_id"], ["vendors.id"], name=op.f("fk_ledger_entries_vendor_id_vendors")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index("ix_ledger_entries_account", "ledger_entries", ["account", "currency"], unique=False)
    op.create_index(op.f("ix_ledger_entries_txn_id"), "ledger_entries", ["txn_id"], unique=False)
    op.create_index(op.f("ix_ledger_entries_vendor_id"), "ledger_entries", ["vendor_id"], unique=False)
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("intent_id", sa.String(length=26), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lookups", sa.Integer(), nullable=False),
        sa.Column("gateway_ref", sa.String(length=200), nullable=True),
        sa.Column("decline_code", sa.String(length=100), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("native_split", sa.Boolean(), nullable=False),
        sa.Column("gateway_ms", sa.Double(), nullable=True),
        sa.Column("started_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["payment_intents.id"],
            name=op.f("fk_payment_attempts_intent_id_payment_intents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_payment_attempts_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_attempts")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_payment_attempts_idempotency_key")),
        sa.UniqueConstraint("intent_id", "attempt_no", name="uq_payment_attempts_no"),
    )
    op.create_index(op.f("ix_payment_attempts_vendor_id"), "payment_attempts", ["vendor_id"], unique=False)
    op.create_table(
        "payment_disputes",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("intent_id", sa.String(length=26), nullable=True),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("dispute_ref", sa.String(length=200), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("gateway_status", sa.String(length=64), nullable=True),
        sa.Column("share", sa.JSON(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("evidence_due_by", wedsync.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.Column("evidence_submitted_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["payment_intents.id"],
            name=op.f("fk_payment_disputes_intent_id_payment_intents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_payment_disputes_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_disputes")),
        sa.UniqueConstraint("connection_id", "dispute_ref", name="uq_payment_disputes_ref"),
    )
    op.create_index(op.f("ix_payment_disputes_intent_id"), "payment_disputes", ["intent_id"], unique=False)
    op.create_index(op.f("ix_payment_disputes_vendor_id"), "payment_disputes", ["vendor_id"], unique=False)
    op.create_table(
        "payment_gateway_accounts",
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("account_ref", sa.String(length=200), nullable=True),
        sa.Column("next_step", sa.JSON(), nullable=False),
        sa.Column("updated_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_payment_gateway_accounts_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"],
            ["vendors.id"],
            name=op.f("fk_payment_gateway_accounts_vendor_id_vendors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", name=op.f("pk_payment_gateway_accounts")),
    )
    op.create_index(
        op.f("ix_payment_gateway_accounts_vendor_id"), "payment_gateway_accounts", ["vendor_id"], unique=False
    )
    op.create_table(
        "payment_refunds",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("intent_id", sa.String(length=26), nullable=False),
        sa.Column("client_key", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("share", sa.JSON(), nullable=False),
        sa.Column("from_escrow", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("gateway_ref", sa.String(length=200), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payment_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["payment_intents.id"],
            name=op.f("fk_payment_refunds_intent_id_payment_intents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_payment_refunds_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_refunds")),
    )
    op.create_index(op.f("ix_payment_refunds_intent_id"), "payment_refunds", ["intent_id"], unique=False)
    op.create_index(op.f("ix_payment_refunds_vendor_id"), "payment_refunds", ["vendor_id"], unique=False)

    op.create_table(
        "payment_transfers",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("intent_id", sa.String(length=26), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("destination", sa.String(length=200), nullable=True),
        sa.Column("source_ref", sa.String(length=200), nullable=True),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("gateway_ref", sa.String(length=200), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", wedsync.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payment_transfers_amount_positive")),
        sa.ForeignKeyConstraint(
            ["intent_id"], ["payment_intents.id"], name=op.f("fk_payment_transfers_intent_id_payment_intents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_payment_transfers_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_transfers")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_payment_transfers_idempotency_key")),
    )
    op.create_index(op.f("ix_payment_transfers_intent_id"), "payment_transfers", ["intent_id"], unique=False)
    op.create_index(op.f("ix_payment_transfers_vendor_id"), "payment_transfers", ["vendor_id"], unique=False)

    dialect = op.get_bind().dialect.name
    for statement in POSTGRES_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("ledger_entries", "ledger_transactions"):
            op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        for fn in ("ledger_txn_balanced", "ledger_entry_posted", "ledger_immutable"):
            op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
    for table in TABLES:
        op.drop_table(table, if_exists=True)
