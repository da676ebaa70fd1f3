"""unified clients' search text: names folded (case and accents, any script: ``domain.identity.fold``), the
e-mail and the phone, so ``?q=`` finds "Étienne" by "etienne" on SQLite and PostgreSQL alike (SQLite's
``lower()`` folds ASCII only)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wedsync.domain.identity import search_text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_CC = sa.table("crm_clients", sa.column("id", sa.String), sa.column("first_name", sa.String),
               sa.column("last_name", sa.String), sa.column("display_name", sa.String),
               sa.column("email", sa.String), sa.column("phone", sa.String), sa.column("search_text", sa.Text))


def upgrade() -> None:
    with op.batch_alter_table("crm_clients") as batch:
        batch.add_column(sa.Column("search_text", sa.Text(), nullable=True))
    bind = op.get_bind()
    after = ""
    while True:  # in batches: memory stays flat on a large book
        rows = bind.execute(sa.select(_CC).where(_CC.c.id > after).order_by(_CC.c.id).limit(2000)).all()
        if not rows:
            break
        after = rows[-1].id
        bind.execute(sa.update(_CC).where(_CC.c.id == sa.bindparam("b_id")), [
            {"b_id": r.id, "search_text": search_text(r.first_name, r.last_name, r.display_name, r.email, r.phone)}
            for r in rows])


def downgrade() -> None:
    with op.batch_alter_table("crm_clients") as batch:
        batch.drop_column("search_text")
