"""Engine and sessions: SQLite in WAL mode by default, PostgreSQL (psycopg 3) when configured."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# SQLite checkpoints the WAL into the database inside the commit that crosses this many pages (default 1,000,
# about 4 MB). A sync page dirties hundreds of index pages (e-mail keys land at random places in their B-trees),
# so with the default every few commits paid a checkpoint; 10,000 pages lets the checkpoint write each hot page
# once for many commits (measured: 5.3 -> 3.3 ms per 100-record page outside the upsert, docs/benchmarks.md).
# After a checkpoint the WAL file is truncated to WAL_SIZE_LIMIT_BYTES.
WAL_AUTOCHECKPOINT_PAGES = 10_000
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the application engine; SQLite gets WAL, a busy timeout and immediate write locks."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            hide_parameters=True,  # a failed statement's error (logged by DBOS too) never carries clients' data
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=8,
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin (we emit BEGIN IMMEDIATE
            # ourselves) so that concurrent writers queue on the busy timeout instead of deadlocking.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the lock up front (no upgrade deadlocks); readers use a deferred BEGIN.
            if conn.get_execution_options().get("readonly"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True, **kwargs)


def make_dbos_sqlite_engine(url: str) -> Engine:
    """The engine DBOS's SQLite system database runs on: DBOS's own settings (IMMEDIATE transactions,
    busy timeout, foreign keys) plus WAL with synchronous=NORMAL, which survives a process crash like the
    default rollback journal does but does not fsync every step's commit."""
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        dbapi_conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")

    return engine


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (``None`` for another database or an in-memory one)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None


#: How long a short-lived command's clean stop waits for a checkpoint (see :func:`checkpoint_sqlite`).
COMMAND_CHECKPOINT_WAIT = 0.1


def checkpoint_sqlite(url: str, *, wait_seconds: float = 1.0) -> bool:
    """Fold the write-ahead log into the database file and truncate it (``PRAGMA wal_checkpoint(TRUNCATE)``), on
    a clean shutdown: a stopped hub otherwise left its data in ``-wal`` (a 4 KB database next to an 8 MB log),
    which a copy of the database file alone would miss. Safe while other processes use the database: a reader
    or writer in the way makes it give up after ``wait_seconds`` (``False``), leaving the log to them (the last
    process to stop folds it). Short-lived commands wait :data:`COMMAND_CHECKPOINT_WAIT` only: at 1 s, every CLI
    command run beside a live ``serve`` ended one to two seconds late (a reader of the hub's or DBOS's database is
    nearly always in the way); ``serve``, ``worker`` and ``demo`` stop once, and wait for their own threads."""
    import sqlite3

    path = sqlite_path(url)
    if path is None or not path.exists():
        return False
    try:
        conn = sqlite3.connect(path, timeout=wait_seconds)
    except sqlite3.Error:
        return False
    try:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def backup_sqlite(url: str, dest: Path) -> None:
    """A consistent copy of a live SQLite database (SQLite's online backup API, what ``sqlite3 .backup`` uses),
    log included, written to ``dest``."""
    import sqlite3

    path = sqlite_path(url)
    if path is None:
        raise ValueError(f"not a SQLite database file: {url}")
    src = sqlite3.connect(path, timeout=30)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()


class Database:
    """The application's engine and session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.engine.execution_options(readonly=True),
                                          expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error."""
        with self.sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work (no write lock on SQLite)."""
        with self.read_sessions() as s:
            yield s  # closing ends the transaction without expiring loaded objects

    def migrate(self) -> None:
        migrate(self.engine)

    def checkpoint(self, wait_seconds: float = 1.0) -> bool:
        """On SQLite, move the write-ahead log into the database file (:func:`checkpoint_sqlite`)."""
        return checkpoint_sqlite(self.url, wait_seconds=wait_seconds) if self.is_sqlite else False

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


_MIGRATE_LOCK = threading.Lock()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic (safe to call from many processes on PostgreSQL)."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    # Alembic keeps its running context in module globals: two migrations in one process (a test's hub
    # and a workflow thread's) must not interleave.
    with _MIGRATE_LOCK, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Serialize concurrent migrators (several workers starting at once).
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
