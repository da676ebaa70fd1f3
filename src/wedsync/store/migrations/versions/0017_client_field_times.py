"""source clients' per-field times: for a record fed by Zapier-style hooks (each carries some fields only), the
time of the hook each field's value came from, so a hook delivered late still fills the fields no newer hook
carried and never overwrites one a newer hook set (``CrmService.ingest_zap``). NULL: the record was last
written whole (a sync page, a CSV import), every field as of its ``remote_modified_at``.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("field_times", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("field_times")
