"""Weddings by (connection_id, event_date): a CSV row's project (no id column, a ``csvp-`` hash id) is looked up
among the connection's hook projects of the same date (``CrmService._same_projects``), once per new project.
With only the (connection_id, remote_id) index each lookup read every wedding of the connection, so a large
import was quadratic (2,000 rows with projects: 28 s into an empty connection, 421 s into one with 100,000
weddings).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_weddings_connection_id_event_date", "weddings", ["connection_id", "event_date"])


def downgrade() -> None:
    op.drop_index("ix_weddings_connection_id_event_date", table_name="weddings")
