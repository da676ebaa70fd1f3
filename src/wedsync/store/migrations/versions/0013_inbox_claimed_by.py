"""webhook inbox claims name their executor: a ``processing`` event records which DBOS executor claimed it
(``claimed_by``), so the claims of a worker that died are handed back as soon as it is known dead (a live
worker recovers it, or it restarts with the same executor id) instead of after the 300 s stale-claim release

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.drop_column("claimed_by")
