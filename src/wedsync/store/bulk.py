"""Bulk INSERT of many rows through the driver's executemany (the sync's hot path), with SQLAlchemy's own
column defaults and bind processors applied, so what lands is what ``insert(table)`` would have written."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Table, insert

from wedsync.store.tables import UTCDateTime

_Plan = tuple[str, list[tuple[str, Callable[[Any], Any] | None, Any]]]
_PLANS: dict[tuple[str, str, tuple[str, ...]], _Plan] = {}
_LOCK = threading.Lock()
_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _sqlite_utc(value: datetime | None) -> str | None:
    """What ``UTCDateTime`` binds on SQLite (UTC, naive, SQLAlchemy's fixed-width text), without its layers."""
    if value is None:
        return None
    return _sqlite_utc_text(value)


@functools.lru_cache(maxsize=4096)  # a page's rows share their sync/creation time
def _sqlite_utc_text(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:{value.minute:02d}:"
            f"{value.second:02d}.{value.microsecond:06d}")


def _json(proc: Callable[[Any], Any], sqlite: bool) -> Callable[[Any], Any]:
    def bind(value: Any) -> Any:
        if isinstance(value, dict | list) and not value:
            return "{}" if isinstance(value, dict) else "[]"  # json.dumps of an empty container
        if sqlite:  # stored as text: orjson's text is the same JSON (read back with the same values)
            try:
                return orjson.dumps(value).decode()
            except TypeError:
                pass  # what orjson does not take (non-str keys...): the column's own serializer decides
        return proc(value)
    return bind


def _processor(col: Any, dialect: Any) -> Callable[[Any], Any] | None:
    proc = col.type._cached_bind_processor(dialect)
    if dialect.name == "sqlite" and isinstance(col.type, UTCDateTime):
        return _sqlite_utc
    if proc is not None and isinstance(col.type, JSON):
        return _json(proc, dialect.name == "sqlite")
    return proc  # type: ignore[no-any-return]


def _plan(conn: Connection, table: Table, given: tuple[str, ...]) -> _Plan | None:
    dialect = conn.dialect
    marker = _MARKERS.get(dialect.paramstyle)
    if marker is None:
        return None
    key = (dialect.name, table.name, given)
    plan = _PLANS.get(key)
    if plan is not None:
        return plan
    quote = dialect.identifier_preparer.quote
    cols: list[tuple[str, Callable[[Any], Any] | None, Any]] = []
    for col in table.columns:
        if col.key in given:
            default = None
        elif col.default is not None and (col.default.is_scalar or col.default.is_callable):
            default = col.default
        else:
            continue  # left to the server default / NULL, exactly as insert(table) leaves it
        cols.append((col.key, _processor(col, dialect), default))
    names = ", ".join(quote(table.c[k].name) for k, _, _ in cols)
    sql = (f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({names}) "
           f"VALUES ({', '.join([marker] * len(cols))})")
    plan = (sql, cols)
    with _LOCK:
        _PLANS[key] = plan
    return plan


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``conn.execute(insert(table), rows)`` without SQLAlchemy's per-row statement machinery. Every row
    has the keys of the first one (as with ``insert(table)`` and a list of rows)."""
    if not rows:
        return
    plan = _plan(conn, table, tuple(sorted(rows[0])))
    if plan is None:
        conn.execute(insert(table), list(rows))
        return
    sql, cols = plan
    params: list[tuple[Any, ...]] = []
    append = params.append
    for row in rows:
        values = []
        for name, proc, default in cols:
            if default is None:
                v = row[name]
            elif default.is_scalar:
                v = default.arg
            else:
                v = default.arg(None)
            values.append(v if proc is None else proc(v))
        append(tuple(values))
    conn.exec_driver_sql(sql, params)
