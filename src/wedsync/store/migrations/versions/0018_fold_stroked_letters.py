"""names folded with the letters NFKD leaves as they are (``domain.identity.fold``: "Đặng" as "dang", Turkish
dotless i as i, "Þór" as "thor"): unified clients' search text recomputed where it changes, and every phone and
wedding-date key whose name initials hold such a letter also stored with the plain initials, so a record spelled
without the mark finds a client stored before this revision

Keys are added, none removed (they are only an index).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wedsync.domain.identity import fold, search_text

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_CC = sa.table("crm_clients", sa.column("id", sa.String), sa.column("first_name", sa.String),
               sa.column("last_name", sa.String), sa.column("display_name", sa.String),
               sa.column("email", sa.String), sa.column("phone", sa.String), sa.column("search_text", sa.Text))
_KEYS = sa.table("crm_identity_keys", sa.column("vendor_id", sa.String),
                 sa.column("key", sa.String), sa.column("crm_client_id", sa.String))


def _plain(key: str) -> str:
    """``p:<phone>|<initials>`` / ``d:<date>|<initials>`` with each initial folded (its first letter)."""
    head, _, tags = key.rpartition("|")
    return f"{head}|{''.join(sorted((fold(ch) or ch)[:1] for ch in tags))}"


def upgrade() -> None:
    bind = op.get_bind()
    after = ""
    while True:  # in batches: memory stays flat on a large book
        rows = bind.execute(sa.select(_CC).where(_CC.c.id > after).order_by(_CC.c.id).limit(2000)).all()
        if not rows:
            break
        after = rows[-1].id
        changed = [{"b_id": r.id, "search_text": text} for r in rows
                   if (text := search_text(r.first_name, r.last_name, r.display_name, r.email, r.phone))
                   != r.search_text]
        if changed:
            bind.execute(sa.update(_CC).where(_CC.c.id == sa.bindparam("b_id")), changed)
    keys = sa.select(_KEYS.c.vendor_id, _KEYS.c.key, _KEYS.c.crm_client_id).where(
        sa.or_(_KEYS.c.key.like("p:%|%"), _KEYS.c.key.like("d:%|%"))).execution_options(yield_per=2000)
    have: set[tuple[str, str, str]] = set()
    wanted: set[tuple[str, str, str]] = set()
    for r in bind.execute(keys):  # streamed: only the few keys with such initials are kept
        plain = _plain(r.key)
        if plain != r.key:
            wanted.add((r.vendor_id, plain, r.crm_client_id))
            have.add((r.vendor_id, r.key, r.crm_client_id))
    if wanted:
        owners = sorted({c for _, _, c in wanted})
        for start in range(0, len(owners), 500):
            have |= {(r.vendor_id, r.key, r.crm_client_id) for r in bind.execute(
                sa.select(_KEYS.c.vendor_id, _KEYS.c.key, _KEYS.c.crm_client_id).where(
                    _KEYS.c.crm_client_id.in_(owners[start:start + 500])))}
        new = sorted(wanted - have)
        if new:
            bind.execute(sa.insert(_KEYS), [{"vendor_id": v, "key": k, "crm_client_id": c} for v, k, c in new])


def downgrade() -> None:
    # The keys are only an index and the search text is recomputed on every write: both stay.
    pass
