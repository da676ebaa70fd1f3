"""crm_wedding_links: a provider's wedding-to-person links as source records (VSCO Workspace job-contacts), so
a wedding's couple follows the links and a link gone from a provably complete listing is deleted

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wedsync.store.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_wedding_links",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("vendor_id", sa.String(length=26), nullable=False),
        sa.Column("connection_id", sa.String(length=26), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("remote_id", sa.String(length=128), nullable=False),
        sa.Column("wedding_remote_id", sa.String(length=128), nullable=False),
        sa.Column("client_remote_id", sa.String(length=128), nullable=False),
        sa.Column("is_client", sa.Boolean(), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("custom_fields", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("remote_created_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("remote_modified_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("seen_run_id", sa.String(length=26), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"],
                                name=op.f("fk_crm_wedding_links_connection_id_connections"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["vendor_id"], ["vendors.id"], name=op.f("fk_crm_wedding_links_vendor_id_vendors"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_wedding_links")),
        sa.UniqueConstraint("connection_id", "remote_id", name="uq_crm_wedding_links_source"),
    )
    op.create_index(op.f("ix_crm_wedding_links_vendor_id"), "crm_wedding_links", ["vendor_id"], unique=False)
    op.create_index("ix_crm_wedding_links_wedding", "crm_wedding_links", ["connection_id", "wedding_remote_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_crm_wedding_links_wedding", table_name="crm_wedding_links")
    op.drop_index(op.f("ix_crm_wedding_links_vendor_id"), table_name="crm_wedding_links")
    op.drop_table("crm_wedding_links")
