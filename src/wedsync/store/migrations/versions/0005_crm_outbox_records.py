"""crm_outbox: the local record a write-back is about (a wedding, an event, an invoice), so the write-back of
weddings/jobs, events, orders and payments can be listed per record and stored back on it

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("crm_outbox") as batch:
        batch.add_column(sa.Column("record_type", sa.String(16), nullable=True))
        batch.add_column(sa.Column("record_id", sa.String(26), nullable=True))
    op.create_index("ix_crm_outbox_record", "crm_outbox", ["record_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_crm_outbox_record", table_name="crm_outbox")
    with op.batch_alter_table("crm_outbox") as batch:
        batch.drop_column("record_id")
        batch.drop_column("record_type")
