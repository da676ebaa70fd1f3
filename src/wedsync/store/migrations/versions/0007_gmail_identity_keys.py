"""identity keys of Gmail addresses in their mailbox form: dots and a +tag dropped, googlemail.com as
gmail.com (``domain.identity.email_key``), so a record arriving after the upgrade finds the clients stored
before it under the same key

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wedsync.domain.identity import email_key

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_KEYS = sa.table("crm_identity_keys", sa.column("vendor_id", sa.String), sa.column("key", sa.String),
                 sa.column("crm_client_id", sa.String))


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_KEYS.c.vendor_id, _KEYS.c.key, _KEYS.c.crm_client_id).where(
        sa.or_(_KEYS.c.key.like("e:%@gmail.com"), _KEYS.c.key.like("e:%@googlemail.com")))).all()
    existing = {(r.vendor_id, r.key, r.crm_client_id) for r in rows}
    for vendor_id, key, client_id in sorted(existing):
        canonical = email_key(key[2:])
        if canonical is None or f"e:{canonical}" == key:
            continue
        new = (vendor_id, f"e:{canonical}", client_id)
        if new not in existing:
            bind.execute(sa.insert(_KEYS).values(vendor_id=new[0], key=new[1], crm_client_id=new[2]))
            existing.add(new)
        bind.execute(sa.delete(_KEYS).where(_KEYS.c.vendor_id == vendor_id, _KEYS.c.key == key,
                                            _KEYS.c.crm_client_id == client_id))


def downgrade() -> None:
    # The address as written is not recoverable from its mailbox form, and the keys are only an index: the
    # canonical keys stay (a downgraded hub then matches fewer Gmail spellings, never wrong ones).
    pass
