"""Keyset paging: the check that a list's ``after`` cursor names one of the list's rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from wedsync.errors import InvalidInput


def cursor_row(s: Session, entity: Any, after: str | int, *scope: Any) -> Any:
    """The row the cursor ``after`` names (an ORM instance of a mapped class, a ``Row`` of a table's id for a
    Core table), among those matching ``scope`` (the caller's vendor, the list's connection); none is a 422
    ``invalid_cursor``. A well-formed id naming no row (a typo, another vendor's row) would otherwise page on
    silently from wherever it sorts, as if it were a real position."""
    if isinstance(entity, Table):
        row = s.execute(select(entity.c.id).where(entity.c.id == after, *scope).limit(1)).first()
    else:
        row = s.execute(select(entity).where(entity.id == after, *scope).limit(1)).scalars().first()
    if row is None:
        raise InvalidInput("after is not the next_cursor of a page of this list", code="invalid_cursor",
                           details={"after": after})
    return row
