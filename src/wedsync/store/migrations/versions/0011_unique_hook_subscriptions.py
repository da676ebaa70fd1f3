"""one hook subscription per connection and event, enforced by the database: concurrent subscribe requests
each created a provider hook for every event (4 requests, 16 hooks at the provider). A request now claims the
(connection, event) row before calling the provider.

Rows duplicated before this revision are reduced to the oldest per (connection, event): the provider hooks
of the others are left at the provider (a migration makes no provider calls); their deliveries are
duplicates the intake already drops.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_SUBS = sa.table("hook_subscriptions", sa.column("id", sa.String), sa.column("connection_id", sa.String),
                 sa.column("event", sa.String))


def upgrade() -> None:
    bind = op.get_bind()
    keep: dict[tuple[str, str], str] = {}
    extra: list[str] = []
    for row in bind.execute(sa.select(_SUBS.c.id, _SUBS.c.connection_id, _SUBS.c.event).order_by(_SUBS.c.id)):
        if (row.connection_id, row.event) in keep:
            extra.append(row.id)
        else:
            keep[(row.connection_id, row.event)] = row.id
    for i in range(0, len(extra), 500):
        bind.execute(sa.delete(_SUBS).where(_SUBS.c.id.in_(extra[i:i + 500])))
    op.create_index("uq_hook_subscriptions_connection_event", "hook_subscriptions", ["connection_id", "event"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("uq_hook_subscriptions_connection_event", table_name="hook_subscriptions")
