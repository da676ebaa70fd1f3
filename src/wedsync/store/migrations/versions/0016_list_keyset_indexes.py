"""Keyset pages of the lists that were answered whole before and can grow large: escrow holds (one per held
transaction), disputes and reconciliation reports by (vendor_id, id), the propagation outbox's busy blocks by
(vendor_id, start_at, id). A page of ``WHERE vendor_id = ? AND id > ? ORDER BY id LIMIT n`` then reads its n
rows instead of reading and sorting all of the vendor's.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_escrow_holds_vendor_id_id", "escrow_holds", ["vendor_id", "id"])
    op.create_index("ix_payment_disputes_vendor_id_id", "payment_disputes", ["vendor_id", "id"])
    op.create_index("ix_reconciliation_reports_vendor_id_id", "reconciliation_reports", ["vendor_id", "id"])
    op.create_index("ix_calendar_blocks_vendor_start", "calendar_blocks", ["vendor_id", "start_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_calendar_blocks_vendor_start", table_name="calendar_blocks")
    op.drop_index("ix_reconciliation_reports_vendor_id_id", table_name="reconciliation_reports")
    op.drop_index("ix_payment_disputes_vendor_id_id", table_name="payment_disputes")
    op.drop_index("ix_escrow_holds_vendor_id_id", table_name="escrow_holds")
