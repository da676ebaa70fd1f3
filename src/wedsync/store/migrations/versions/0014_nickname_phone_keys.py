"""phone keys of diminutives under their given name's initial too (``domain.identity.nickname_tags``: Peggy
Hale's ``p:<phone>|hp`` also as ``p:<phone>|hm``, as Margaret Hale's), so a record arriving after the upgrade
finds a client stored before it whose source (or the vendor) calls the person by another name

Keys are added, none removed: from every source record linked to a unified client and from the clients'
own values (a vendor's edit gave them keys too), only for names that are or have such a diminutive.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wedsync.domain.identity import features, nickname_tags

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_KEYS = sa.table("crm_identity_keys", sa.column("vendor_id", sa.String), sa.column("key", sa.String),
                 sa.column("crm_client_id", sa.String))
_NAMES = ("first_name", "last_name", "display_name", "phone")
_SOURCES = sa.table("clients", sa.column("id", sa.String), sa.column("vendor_id", sa.String),
                    sa.column("crm_client_id", sa.String), *(sa.column(n, sa.String) for n in _NAMES))
_CC = sa.table("crm_clients", sa.column("id", sa.String), sa.column("vendor_id", sa.String),
               *(sa.column(n, sa.String) for n in _NAMES))


def _keys(first: str | None, last: str | None, display: str | None, phone: str | None) -> list[str]:
    f = features(first, last, display, phones=[phone])
    tags = nickname_tags(f) if f.phones else []
    return [f"p:{p}|{t}" for p in sorted(f.phones) for t in tags]


def upgrade() -> None:
    bind = op.get_bind()
    # source records of an existing unified client (the link has no foreign key), then the clients themselves
    linked = _SOURCES.join(_CC, _CC.c.id == _SOURCES.c.crm_client_id)
    for table, owner, from_ in ((_SOURCES, _SOURCES.c.crm_client_id, linked), (_CC, _CC.c.id, _CC)):
        after = ""
        while True:  # in batches: memory stays flat on a large book
            rows = bind.execute(sa.select(table.c.id, table.c.vendor_id, owner.label("owner"),
                                          *(table.c[n] for n in _NAMES)).select_from(from_)
                                .where(table.c.id > after, table.c.phone.is_not(None))
                                .order_by(table.c.id).limit(2000)).all()
            if not rows:
                break
            after = rows[-1].id
            wanted = {(r.vendor_id, k, r.owner) for r in rows
                      for k in _keys(r.first_name, r.last_name, r.display_name, r.phone)}
            if not wanted:
                continue
            owners = sorted({c for _, _, c in wanted})
            have = {(r.vendor_id, r.key, r.crm_client_id) for r in bind.execute(
                sa.select(_KEYS).where(_KEYS.c.crm_client_id.in_(owners), _KEYS.c.key.like("p:%")))}
            new = sorted(wanted - have)
            if new:
                bind.execute(sa.insert(_KEYS), [{"vendor_id": v, "key": k, "crm_client_id": c} for v, k, c in new])


def downgrade() -> None:
    # The keys are only an index: the added ones stay (a downgraded hub finds those clients by them, as the
    # rules of this revision would).
    pass
