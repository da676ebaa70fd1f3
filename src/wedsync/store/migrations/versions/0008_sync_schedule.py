"""scheduled incremental pulls: a connection's own interval and its next due time; at most one sync run in
progress per connection, enforced by the database (a partial unique index) instead of a check alone

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wedsync.store.tables import UTCDateTime, utcnow

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ACTIVE = "status IN ('queued', 'running')"
_RUNS = sa.table("sync_runs", sa.column("id", sa.String), sa.column("connection_id", sa.String),
                 sa.column("status", sa.String), sa.column("finished_at", UTCDateTime(timezone=True)),
                 sa.column("error_detail", sa.Text))


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("sync_interval_minutes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("next_sync_at", UTCDateTime(timezone=True), nullable=True))
        batch.create_index("ix_connections_next_sync_at", ["next_sync_at"])
    # Before the index: a store written by the check-only release may hold two runs in progress for one
    # connection (a race the check could lose). The newest stays; the older ones are closed as failed.
    bind = op.get_bind()
    rows = bind.execute(sa.select(_RUNS.c.id, _RUNS.c.connection_id).where(
        _RUNS.c.status.in_(("queued", "running"))).order_by(_RUNS.c.connection_id, _RUNS.c.id.desc())).all()
    seen: set[str] = set()
    for run_id, connection_id in rows:
        if connection_id in seen:
            bind.execute(sa.update(_RUNS).where(_RUNS.c.id == run_id).values(
                status="failed", finished_at=utcnow(),
                error_detail="closed by migration 0008: a newer run of this connection was in progress"))
        seen.add(connection_id)
    op.create_index("uq_sync_runs_one_active", "sync_runs", ["connection_id"], unique=True,
                    sqlite_where=sa.text(_ACTIVE), postgresql_where=sa.text(_ACTIVE))


def downgrade() -> None:
    op.drop_index("uq_sync_runs_one_active", table_name="sync_runs")
    with op.batch_alter_table("connections") as batch:
        batch.drop_index("ix_connections_next_sync_at")
        batch.drop_column("next_sync_at")
        batch.drop_column("sync_interval_minutes")
