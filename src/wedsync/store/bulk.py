"""Bulk INSERT of many rows through the driver's executemany (the sync's hot path), with SQLAlchemy's own
column defaults and bind processors applied, so what lands is what ``insert(table)`` would have written."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, String, Table, func, insert

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


_SELECTS: dict[tuple[str, str, tuple[str, ...], str, tuple[str, ...], int], str] = {}


def select_in(conn: Connection, table: Table, columns: Sequence[str], in_column: str, values: Sequence[Any],
              chunk: int = 1000, **equal: Any) -> list[tuple[Any, ...]]:
    """``SELECT columns FROM table WHERE <column = value for equal> AND in_column IN (values)`` through the
    driver, in chunks: the per-page lookups of the sync's hot path without compiling an expanding IN clause
    every time. Only for columns whose stored text is what the driver returns (strings, integers)."""
    marker = _MARKERS.get(conn.dialect.paramstyle)
    if marker is None:  # a driver we have no plan for: SQLAlchemy's own statement
        from sqlalchemy import select

        where = [table.c[k] == v for k, v in equal.items()]
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(values), chunk):
            stmt = select(*(table.c[c] for c in columns)).where(*where, table.c[in_column].in_(values[i:i + chunk]))
            out.extend(tuple(r) for r in conn.execute(stmt))
        return out
    quote = conn.dialect.identifier_preparer.quote
    fixed = tuple(sorted(equal))
    head = tuple(equal[k] for k in fixed)
    rows: list[tuple[Any, ...]] = []
    for i in range(0, len(values), chunk):
        part = list(values[i:i + chunk])
        key = (conn.dialect.name, table.name, tuple(columns), in_column, fixed, len(part))
        sql = _SELECTS.get(key)
        if sql is None:
            conds = [f"{quote(table.c[k].name)} = {marker}" for k in fixed]
            conds.append(f"{quote(table.c[in_column].name)} IN ({', '.join([marker] * len(part))})")
            sql = (f"SELECT {', '.join(quote(table.c[c].name) for c in columns)} FROM "
                   f"{conn.dialect.identifier_preparer.format_table(table)} WHERE {' AND '.join(conds)}")
            with _LOCK:
                if len(_SELECTS) > 4096:
                    _SELECTS.clear()
                _SELECTS[key] = sql
        rows.extend(conn.exec_driver_sql(sql, (*head, *part)).fetchall())
    return rows


def json_list_has_any(conn: Connection, column: Any, values: Sequence[str]) -> Any:
    """A WHERE clause: the JSON list in ``column`` holds one of ``values`` (strings), evaluated by the database
    (SQLite's ``json_each``, PostgreSQL's jsonb ``?|``), so a lookup by a list member does not load every row into
    Python. The caller still checks the rows it gets when it needs more than membership of strings."""
    from sqlalchemy import exists, literal, select
    from sqlalchemy.dialects.postgresql import ARRAY, JSONB
    from sqlalchemy.sql.expression import cast

    wanted = sorted(set(values))
    if conn.dialect.name == "postgresql":
        return cast(column, JSONB).op("?|")(cast(wanted, ARRAY(String())))
    if conn.dialect.name == "sqlite":
        each = func.json_each(column).table_valued("value")
        return exists(select(literal(1)).select_from(each).where(each.c.value.in_(wanted)))
    raise NotImplementedError(f"json_list_has_any has no form for {conn.dialect.name}")
