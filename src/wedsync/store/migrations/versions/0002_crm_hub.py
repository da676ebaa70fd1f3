"""CRM hub: unified clients and identity keys, merges, conflicts, policies, field mappings, the write-back
outbox, CSV import jobs, per-source events/contracts/invoices, and ``clients.crm_client_id``

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wedsync.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_run_page_stats",
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("pass_no", sa.Integer(), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("merged", sa.Integer(), nullable=False),
        sa.Column("conflicts", sa.Integer(), nullable=False),
        sa.Column("echoes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "stream", "page", "pass_no", name=op.f("pk_crm_run_page_stats")),
    )
    op.create_index(op.f("ix_crm_run_page_stats_vendor_id"), "crm_run_page_stats", ["vendor_id"], unique=False)
    op.create_table(
        "crm_clients",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("display_name", sa.String(length=400), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("company", sa.String(length=200), nullable=True),
        sa.Column("address", sa.JSON(), nullable=True),
        sa.Column("custom_fields", sa.JSON(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("wedding_dates", sa.JSON(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("source_connection_id", sa.String(length=26), nullable=True),
        sa.Column("source_provider", sa.String(length=64), nullable=True),
        sa.Column("source_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("field_sources", sa.JSON(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_crm_clients_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_clients")),
    )
    op.create_index(op.f("ix_crm_clients_vendor_id"), "crm_clients", ["vendor_id"], unique=False)
    op.create_table(
        "crm_conflicts",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("crm_client_id", sa.String(length=26), nullable=False),
        sa.Column("source_client_id", sa.String(length=26), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=False),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("local", sa.JSON(), nullable=False),
        sa.Column("incoming", sa.JSON(), nullable=False),
        sa.Column("incoming_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("policy", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("resolution", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(length=26), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_crm_conflicts_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_conflicts")),
    )
    op.create_index(op.f("ix_crm_conflicts_crm_client_id"), "crm_conflicts", ["crm_client_id"], unique=False)
    op.create_index("ix_crm_conflicts_queue", "crm_conflicts", ["vendor_id", "status"], unique=False)
    op.create_table(
        "crm_field_policies",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("skew_seconds", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_crm_field_policies_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_field_policies")),
        sa.UniqueConstraint("vendor_id", "connection_id", "field", name="uq_crm_field_policies"),
    )
    op.create_table(
        "crm_merges",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("crm_client_id", sa.String(length=26), nullable=False),
        sa.Column("source_client_id", sa.String(length=26), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(length=26), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("undone_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("undone_to", sa.String(length=26), nullable=True),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_crm_merges_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_merges")),
    )
    op.create_index(op.f("ix_crm_merges_crm_client_id"), "crm_merges", ["crm_client_id"], unique=False)
    op.create_index(op.f("ix_crm_merges_source_client_id"), "crm_merges", ["source_client_id"], unique=False)
    op.create_index(op.f("ix_crm_merges_vendor_id"), "crm_merges", ["vendor_id"], unique=False)
    op.create_table(
        "crm_contracts",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("remote_id", sa.String(length=128), nullable=False),
        sa.Column("wedding_remote_id", sa.String(length=128), nullable=True),
        sa.Column("title", sa.String(length=400), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("signed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("custom_fields", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("remote_created_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("remote_modified_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("seen_run_id", sa.String(length=26), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_crm_contracts_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_crm_contracts_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_contracts")),
        sa.UniqueConstraint("connection_id", "remote_id", name="uq_crm_contracts_source"),
    )
    op.create_index(op.f("ix_crm_contracts_vendor_id"), "crm_contracts", ["vendor_id"], unique=False)
    op.create_table(
        "crm_events",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("remote_id", sa.String(length=128), nullable=False),
        sa.Column("wedding_remote_id", sa.String(length=128), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=400), nullable=True),
        sa.Column("starts_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("ends_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("location", sa.String(length=500), nullable=True),
        sa.Column("custom_fields", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("remote_created_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("remote_modified_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("seen_run_id", sa.String(length=26), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_crm_events_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_crm_events_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_events")),
        sa.UniqueConstraint("connection_id", "remote_id", name="uq_crm_events_source"),
    )
    op.create_index(op.f("ix_crm_events_vendor_id"), "crm_events", ["vendor_id"], unique=False)
    op.create_table(
        "crm_field_mappings",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("source_key", sa.String(length=200), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_crm_field_mappings_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_crm_field_mappings_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_field_mappings")),
        sa.UniqueConstraint("connection_id", "entity", "source_key", name="uq_crm_field_mappings"),
    )
    op.create_index(op.f("ix_crm_field_mappings_vendor_id"), "crm_field_mappings", ["vendor_id"], unique=False)
    op.create_table(
        "crm_identity_keys",
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("crm_client_id", sa.String(length=26), nullable=False),
        sa.ForeignKeyConstraint(
            ["crm_client_id"],
            ["crm_clients.id"],
            name=op.f("fk_crm_identity_keys_crm_client_id_crm_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("vendor_id", "key", "crm_client_id", name=op.f("pk_crm_identity_keys")),
        sqlite_with_rowid=False,
    )
    op.create_index(op.f("ix_crm_identity_keys_crm_client_id"), "crm_identity_keys", ["crm_client_id"],
                    unique=False)
    op.create_table(
        "crm_import_jobs",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("layout", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=True),
        sa.Column("chunks_total", sa.Integer(), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_crm_import_jobs_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_crm_import_jobs_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_import_jobs")),
    )
    op.create_index(op.f("ix_crm_import_jobs_vendor_id"), "crm_import_jobs", ["vendor_id"], unique=False)
    op.create_table(
        "crm_invoices",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("remote_id", sa.String(length=128), nullable=False),
        sa.Column("wedding_remote_id", sa.String(length=128), nullable=True),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("total_minor", sa.BigInteger(), nullable=True),
        sa.Column("paid_minor", sa.BigInteger(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("payments", sa.JSON(), nullable=False),
        sa.Column("custom_fields", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("remote_created_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("remote_modified_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("seen_run_id", sa.String(length=26), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_crm_invoices_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_crm_invoices_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_invoices")),
        sa.UniqueConstraint("connection_id", "remote_id", name="uq_crm_invoices_source"),
    )
    op.create_index(op.f("ix_crm_invoices_vendor_id"), "crm_invoices", ["vendor_id"], unique=False)
    op.create_table(
        "crm_outbox",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("crm_client_id", sa.String(length=26), nullable=True),
        sa.Column("source_client_id", sa.String(length=26), nullable=True),
        sa.Column("op", sa.String(length=32), nullable=False),
        sa.Column("remote_id", sa.String(length=128), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("written_hash", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("echo_seen_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_crm_outbox_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_crm_outbox_vendor_id_vendors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_crm_outbox_idempotency_key")),
    )
    op.create_index("ix_crm_outbox_pending", "crm_outbox", ["status", "id"], unique=False)
    op.create_index(op.f("ix_crm_outbox_source_client_id"), "crm_outbox", ["source_client_id"], unique=False)
    op.create_index(op.f("ix_crm_outbox_vendor_id"), "crm_outbox", ["vendor_id"], unique=False)
    op.create_table(
        "crm_import_chunks",
        sa.Column("job_id", sa.String(length=26), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("good", sa.Integer(), nullable=False),
        sa.Column("bad", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("merged", sa.Integer(), nullable=False),
        sa.Column("conflicts", sa.Integer(), nullable=False),
        sa.Column("done_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["crm_import_jobs.id"],
            name=op.f("fk_crm_import_chunks_job_id_crm_import_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "chunk", name=op.f("pk_crm_import_chunks")),
    )
    op.create_index(op.f("ix_crm_import_chunks_vendor_id"), "crm_import_chunks", ["vendor_id"], unique=False)
    op.create_table(
        "crm_import_errors",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("column", sa.String(length=200), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("fatal", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["crm_import_jobs.id"],
            name=op.f("fk_crm_import_errors_job_id_crm_import_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_import_errors")),
    )
    op.create_index(op.f("ix_crm_import_errors_job_id"), "crm_import_errors", ["job_id"], unique=False)
    op.create_table(
        "crm_import_files",
        sa.Column("job_id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["crm_import_jobs.id"],
            name=op.f("fk_crm_import_files_job_id_crm_import_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_crm_import_files")),
    )
    op.create_index(op.f("ix_crm_import_files_vendor_id"), "crm_import_files", ["vendor_id"], unique=False)
    op.add_column("clients", sa.Column("crm_client_id", sa.String(length=26), nullable=True))
    op.create_index(op.f("ix_clients_crm_client_id"), "clients", ["crm_client_id"], unique=False)
    # No query looks source rows up by e-mail (identity resolution uses crm_identity_keys), and a random-key
    # index costs every page of a sync a scattered B-tree write.
    op.drop_index("ix_clients_email", table_name="clients")


def downgrade() -> None:
    op.create_index("ix_clients_email", "clients", ["email"], unique=False)
    op.drop_index(op.f("ix_clients_crm_client_id"), table_name="clients")
    op.drop_column("clients", "crm_client_id")
    op.drop_index(op.f("ix_crm_import_files_vendor_id"), table_name="crm_import_files")
    op.drop_table("crm_import_files")
    op.drop_index(op.f("ix_crm_import_errors_job_id"), table_name="crm_import_errors")
    op.drop_table("crm_import_errors")
    op.drop_index(op.f("ix_crm_import_chunks_vendor_id"), table_name="crm_import_chunks")
    op.drop_table("crm_import_chunks")
    op.drop_index(op.f("ix_crm_outbox_vendor_id"), table_name="crm_outbox")
    op.drop_index(op.f("ix_crm_outbox_source_client_id"), table_name="crm_outbox")
    op.drop_index("ix_crm_outbox_pending", table_name="crm_outbox")
    op.drop_table("crm_outbox")
    op.drop_index(op.f("ix_crm_invoices_vendor_id"), table_name="crm_invoices")
    op.drop_table("crm_invoices")
    op.drop_index(op.f("ix_crm_import_jobs_vendor_id"), table_name="crm_import_jobs")
    op.drop_table("crm_import_jobs")
    op.drop_index(op.f("ix_crm_identity_keys_crm_client_id"), table_name="crm_identity_keys")
    op.drop_table("crm_identity_keys")
    op.drop_index(op.f("ix_crm_field_mappings_vendor_id"), table_name="crm_field_mappings")
    op.drop_table("crm_field_mappings")
    op.drop_index(op.f("ix_crm_events_vendor_id"), table_name="crm_events")
    op.drop_table("crm_events")
    op.drop_index(op.f("ix_crm_contracts_vendor_id"), table_name="crm_contracts")
    op.drop_table("crm_contracts")
    op.drop_index(op.f("ix_crm_merges_vendor_id"), table_name="crm_merges")
    op.drop_index(op.f("ix_crm_merges_source_client_id"), table_name="crm_merges")
    op.drop_index(op.f("ix_crm_merges_crm_client_id"), table_name="crm_merges")
    op.drop_table("crm_merges")
    op.drop_table("crm_field_policies")
    op.drop_index("ix_crm_conflicts_queue", table_name="crm_conflicts")
    op.drop_index(op.f("ix_crm_conflicts_crm_client_id"), table_name="crm_conflicts")
    op.drop_table("crm_conflicts")
    op.drop_index(op.f("ix_crm_clients_vendor_id"), table_name="crm_clients")
    op.drop_table("crm_clients")
    op.drop_index(op.f("ix_crm_run_page_stats_vendor_id"), table_name="crm_run_page_stats")
    op.drop_table("crm_run_page_stats")
