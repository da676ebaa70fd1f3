"""calendars: sources, busy blocks, bookings, holds

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Filled by the capability's tables (store/tables_calendars*.py); no schema change yet.
    pass


def downgrade() -> None:
    pass
