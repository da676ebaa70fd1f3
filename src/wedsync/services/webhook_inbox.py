"""The durable webhook inbox: group-committed intake of verified events, and the drain side for workers.

Intake (rule 5 and 9): the webhook route verifies a request, then ``await inbox.submit(...)``; the call
returns only once the row is committed (``True``) or was already there (``False``, a redelivery), so the
route can acknowledge. One writer thread collects the submissions that arrive while the previous batch
commits (up to ``batch_max``, waiting at most ``batch_wait_ms`` for more) and stores them in one transaction
with ``INSERT ... ON CONFLICT (connection_id, event_id) DO NOTHING RETURNING``: one commit, and on SQLite
one fsync, for hundreds of requests. If a batch fails, its submissions are retried one transaction each so
that one bad row cannot fail its neighbours.

Drain: workflows call :meth:`WebhookInbox.claim_pending` (``pending`` -> ``processing``; on PostgreSQL the
candidates are locked ``FOR UPDATE SKIP LOCKED`` so concurrent workers never claim the same row), process,
then :meth:`~WebhookInbox.mark_processed` or :meth:`~WebhookInbox.mark_failed`. While a row is
``processing`` its ``processed_at`` holds the claim time and ``claimed_by`` the DBOS executor that claimed it.
The rows of a crashed worker go back to ``pending`` through :meth:`~WebhookInbox.release_claims` as soon as
the worker is known dead (``workflows/recovery.py``: a live worker recovers it, or it restarts with the same
executor id), and through :meth:`~WebhookInbox.release_stale` after a while whoever claimed them.

Statuses: ``pending`` -> ``processing`` -> ``processed`` | ``pending`` (retry) | ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from wedsync.connectors.webhooks import VerifiedEvent
from wedsync.errors import Conflict, InvalidInput, NotFound, WedsyncError
from wedsync.store.db import Database
from wedsync.store.paging import cursor_row
from wedsync.store.tables import WebhookEvent

__all__ = ["MAX_ATTEMPTS", "RETRY_DELAYS", "InboxClosed", "InboxRow", "WebhookInbox", "retry_delay"]

log = logging.getLogger(__name__)

#: Attempts after which a failing event is parked as ``failed``.
MAX_ATTEMPTS = 8
#: Seconds before the next attempt after 1, 2, ... failed ones (the last repeats), each with up to 20 % jitter,
#: or the provider's ``Retry-After`` when longer: a provider outage of about an hour and a half is ridden out.
#: Without it, a failed event was claimed again by the next drain, a quarter of a second later, and five
#: attempts were spent in the ten seconds an outage had tripped the circuit breaker.
RETRY_DELAYS = (5.0, 20.0, 80.0, 320.0, 1200.0, 1800.0, 1800.0)


def retry_delay(attempts: int, retry_after: float | None = None) -> float:
    """Seconds to wait before the next attempt after ``attempts`` failed ones."""
    base = RETRY_DELAYS[min(max(attempts, 1), len(RETRY_DELAYS)) - 1]
    return max(base * (1.0 + 0.2 * random.random()), retry_after or 0.0)

PENDING, PROCESSING, PROCESSED, FAILED = "pending", "processing", "processed", "failed"
STATUSES = (PENDING, PROCESSING, PROCESSED, FAILED)

_T: Table = WebhookEvent.__table__  # type: ignore[assignment]
_EVENT_ID_MAX = 200


class InboxClosed(WedsyncError):
    """The inbox is not running (not started, or stopping); the route should answer 503."""

    code = "inbox_closed"
    status = 503


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One claimed inbox event, detached from any session."""

    id: int
    vendor_id: str
    connection_id: str
    provider: str
    event_id: str
    event_type: str | None
    record_id: str | None
    body: bytes
    received_at: datetime
    attempts: int


_ROW_COLUMNS = (
    _T.c.id,
    _T.c.vendor_id,
    _T.c.connection_id,
    _T.c.provider,
    _T.c.event_id,
    _T.c.event_type,
    _T.c.record_id,
    _T.c.body,
    _T.c.received_at,
    _T.c.attempts,
)


@dataclass(slots=True)
class _Submission:
    values: dict[str, Any]
    future: asyncio.Future[bool]
    result: bool | BaseException | None = field(default=None)


class _LoopWriter:
    """The submissions of one event loop and the task that flushes them (normally there is one loop)."""

    __slots__ = ("loop", "pending", "task", "wake")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[_Submission] = []
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()


class WebhookInbox:
    """Group-commit writer and drain operations over ``webhook_inbox``."""

    def __init__(self, db: Database, *, batch_max: int = 256, batch_wait_ms: float = 2.0) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self.db = db
        self.batch_max = batch_max
        self.batch_wait = max(0.0, batch_wait_ms) / 1000.0
        self._accepting = False
        self._writers: dict[asyncio.AbstractEventLoop, _LoopWriter] = {}
        # One transaction at a time through one dedicated connection, whichever loop's flusher calls.
        self._db_lock = threading.Lock()
        self._conn: Connection | None = None
        self._insert = self._build_insert()
        self._last_submit = float("-inf")  # time.monotonic() of this process's latest submission
        #: Counters for metrics and the benchmark.
        self.batches = 0
        self.stored = 0
        self.duplicates = 0

    # ------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Accept submissions (idempotent). Flushers start lazily on each event loop that submits."""
        self._accepting = True

    async def stop(self) -> None:
        """Stop accepting, commit everything already submitted, and release the writer connection."""
        self._accepting = False
        me = asyncio.get_running_loop()
        while True:
            busy = []
            for w in list(self._writers.values()):
                if w.loop.is_closed():  # its callers are gone with it
                    self._fail(w.pending, InboxClosed("the event loop of these submissions closed"))
                    w.pending.clear()
                elif w.pending or (w.task is not None and not w.task.done()):
                    busy.append(w)
            if not busy:
                break
            mine = [w for w in busy if w.loop is me]
            for w in mine:
                w.wake.set()
                if w.pending and (w.task is None or w.task.done()):
                    w.task = me.create_task(self._flush_loop(w))
            tasks = [w.task for w in mine if w.task is not None]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            else:  # flushers on other loops (threads) finish on their own
                await asyncio.sleep(0.005)
        self._writers.clear()
        await asyncio.to_thread(self._close_writer)

    @staticmethod
    def _fail(subs: list[_Submission], exc: Exception) -> None:
        for sub in subs:
            if sub.result is None:
                sub.result = exc
            with contextlib.suppress(RuntimeError):
                sub.future.get_loop().call_soon_threadsafe(_set_results, [sub])

    @property
    def running(self) -> bool:
        return self._accepting

    def intake_busy(self, window: float = 0.25) -> bool:
        """Whether this process accepted a webhook in the last ``window`` seconds (an in-process drain
        then paces itself, so acknowledging webhooks keeps the CPU it needs; see ``workflows/inbox.py``)."""
        return time.monotonic() - self._last_submit < window

    # ---------------------------------------------------------------------------------------- intake

    async def submit(
        self, *, vendor_id: str, connection_id: str, provider: str, event: VerifiedEvent, body: bytes
    ) -> bool:
        """Store a verified event; True if newly stored, False if a duplicate. Returns after the commit."""
        if not self._accepting:
            raise InboxClosed("the webhook inbox is not running")
        if not event.event_id or len(event.event_id) > _EVENT_ID_MAX:
            raise InvalidInput("event id is empty or longer than 200 characters")
        self._last_submit = time.monotonic()
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            writer = self._writers.setdefault(loop, _LoopWriter(loop))
        sub = _Submission(
            values={
                "vendor_id": vendor_id,
                "connection_id": connection_id,
                "provider": provider,
                "event_id": event.event_id,
                "event_type": _clip(event.event_type),
                "record_id": _clip(event.record_id),
                "body": bytes(body),
                "received_at": datetime.now(UTC),
                "status": PENDING,
                "attempts": 0,
            },
            future=loop.create_future(),
        )
        writer.pending.append(sub)
        if len(writer.pending) >= self.batch_max:
            writer.wake.set()
        if writer.task is None or writer.task.done():
            writer.task = loop.create_task(self._flush_loop(writer), name="webhook-inbox-flush")
        # Shielded: a client that hangs up must not cancel a row that will be committed anyway.
        return await asyncio.shield(sub.future)

    async def _flush_loop(self, writer: _LoopWriter) -> None:
        """Commit this loop's submissions batch after batch until none are left.

        The first batch after a quiet spell waits up to ``batch_wait`` for company; after that, whatever
        arrived while the previous batch committed is the next batch, so under load batches grow by
        themselves without adding a wait to every commit.
        """
        first = True
        while writer.pending:
            if first and len(writer.pending) < self.batch_max and self.batch_wait > 0 and self._accepting:
                writer.wake.clear()
                try:
                    await asyncio.wait_for(writer.wake.wait(), self.batch_wait)
                except TimeoutError:
                    pass
            first = False
            batch = writer.pending[: self.batch_max]
            del writer.pending[: self.batch_max]
            try:
                await asyncio.to_thread(self._commit, batch)
            except BaseException as exc:  # the thread's own failures are per submission; this is e.g. cancel
                for sub in batch:
                    if sub.result is None:
                        sub.result = exc if isinstance(exc, Exception) else InboxClosed("inbox stopped")
                _set_results(batch)
                if not isinstance(exc, Exception):
                    raise
            else:
                _set_results(batch)

    def _build_insert(self) -> Any:
        dialect = self.db.engine.dialect.name
        if dialect == "postgresql":
            stmt: Any = postgresql.insert(_T)
        elif dialect == "sqlite":
            stmt = sqlite.insert(_T)
        else:  # pragma: no cover - the hub supports only these two
            raise RuntimeError(f"unsupported database dialect {dialect}")
        return stmt.on_conflict_do_nothing(index_elements=["connection_id", "event_id"]).returning(
            _T.c.connection_id, _T.c.event_id
        )

    def _writer_connection(self) -> Connection:
        conn = self.db.engine.connect()
        if self.db.is_sqlite:
            # One fsync per batch is what group commit buys: make each commit survive power loss too.
            # On the driver connection: SQLAlchemy would wrap the pragma in a transaction, where SQLite
            # refuses to change it.
            self._pragma(conn, "PRAGMA synchronous=FULL")
        return conn

    @staticmethod
    def _pragma(conn: Connection, sql: str) -> None:
        driver = conn.connection.driver_connection
        assert driver is not None
        cur = driver.cursor()
        try:
            cur.execute(sql)
        finally:
            cur.close()

    def _close_writer(self) -> None:
        with self._db_lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                if self.db.is_sqlite:
                    self._pragma(conn, "PRAGMA synchronous=NORMAL")
                conn.close()
            except Exception:  # pragma: no cover - closing a broken connection
                log.exception("closing the webhook inbox writer connection failed")

    def _commit(self, batch: list[_Submission]) -> None:
        """(Worker thread) insert the batch in one transaction and set each submission's result."""
        firsts: dict[tuple[str, str], _Submission] = {}
        for sub in batch:
            key = (sub.values["connection_id"], sub.values["event_id"])
            if key in firsts:
                sub.result = False  # a redelivery inside the same batch
            else:
                firsts[key] = sub
        with self._db_lock:
            try:
                inserted = self._insert_rows([s.values for s in firsts.values()])
            except Exception:
                log.warning("webhook inbox batch of %d failed; retrying one by one", len(firsts), exc_info=True)
                for key, sub in firsts.items():
                    try:
                        sub.result = key in self._insert_rows([sub.values])
                    except Exception as exc:
                        sub.result = exc
            else:
                for key, sub in firsts.items():
                    sub.result = key in inserted
            self.batches += 1
            for sub in batch:
                if sub.result is True:
                    self.stored += 1
                elif sub.result is False:
                    self.duplicates += 1

    def _insert_rows(self, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
        if self._conn is None:
            self._conn = self._writer_connection()
        conn = self._conn
        try:
            with conn.begin():
                result = conn.execute(self._insert, rows)
                return {(r[0], r[1]) for r in result}
        except Exception:
            # Start the next attempt on a fresh connection: this one may be broken.
            self._conn = None
            try:
                conn.invalidate()
                conn.close()
            except Exception:  # pragma: no cover
                log.debug("discarding the writer connection failed", exc_info=True)
            raise

    # ----------------------------------------------------------------------------------------- drain

    def claim_pending(
        self, limit: int = 100, *, connection_id: str | None = None, provider: str | None = None,
        claimed_by: str | None = None,
    ) -> list[InboxRow]:
        """Move up to ``limit`` pending events (oldest first) to ``processing`` and return them; an event
        waiting out its backoff (``next_attempt_at`` in the future) is not taken. ``claimed_by``: the DBOS
        executor id of the claiming process, recorded so that its claims can be released once it is dead."""
        if limit < 1:
            return []
        candidates = select(_T.c.id).where(_T.c.status == PENDING, _due())
        if connection_id is not None:
            candidates = candidates.where(_T.c.connection_id == connection_id)
        if provider is not None:
            candidates = candidates.where(_T.c.provider == provider)
        # FOR UPDATE SKIP LOCKED on PostgreSQL (SQLite ignores it and serializes writers instead), in a
        # materialized CTE: as an ``IN (subquery)`` the planner may re-run the subquery per row and claim
        # more than ``limit`` rows.
        claim = (
            candidates.order_by(_T.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("claim")
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        stmt = (
            update(_T)
            .where(_T.c.id.in_(select(claim.c.id)), _T.c.status == PENDING)
            .values(status=PROCESSING, processed_at=datetime.now(UTC), claimed_by=claimed_by)
            .returning(*_ROW_COLUMNS)
        )
        with self.db.engine.begin() as conn:
            rows = conn.execute(stmt).all()
        claimed = [InboxRow(*row) for row in rows]
        claimed.sort(key=lambda r: r.id)
        return claimed

    def mark_processed(self, ids: Sequence[int]) -> int:
        """Mark claimed events processed; returns how many rows changed."""
        if not ids:
            return 0
        stmt = (
            update(_T)
            .where(_T.c.id.in_(list(ids)))
            .values(status=PROCESSED, processed_at=datetime.now(UTC), error=None, next_attempt_at=None,
                    claimed_by=None)
        )
        with self.db.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    def mark_failed(self, id: int, error: str, retry: bool = True, *, retry_after: float | None = None
                    ) -> str | None:
        """Count a failed attempt; back to ``pending`` if ``retry`` and under :data:`MAX_ATTEMPTS`, not to be
        claimed before ``retry_delay`` has passed (at least ``retry_after`` seconds, the provider's own
        ``Retry-After``), else ``failed``. Returns the new status (None if the row does not exist)."""
        with self.db.engine.begin() as conn:
            row = conn.execute(select(_T.c.attempts).where(_T.c.id == id)).first()
            if row is None:
                return None
            attempts = int(row[0]) + 1
            status = PENDING if retry and attempts < MAX_ATTEMPTS else FAILED
            later = (datetime.now(UTC) + timedelta(seconds=retry_delay(attempts, retry_after))
                     if status == PENDING else None)
            conn.execute(update(_T).where(_T.c.id == id).values(
                attempts=attempts, status=status, error=error[:4000], processed_at=None, next_attempt_at=later,
                claimed_by=None))
        return status

    def release_stale(self, older_than: float = 300.0) -> int:
        """Hand ``processing`` rows claimed more than ``older_than`` seconds ago back to ``pending``."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        stmt = (
            update(_T)
            .where(_T.c.status == PROCESSING, _T.c.processed_at < cutoff)
            .values(status=PENDING, processed_at=None, claimed_by=None)
        )
        with self.db.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    def release_claims(self, executor_ids: Sequence[str], *, claimed_before: datetime | None = None) -> int:
        """Hand the ``processing`` rows claimed by these executors (dead ones: they will never finish them) back
        to ``pending``; with ``claimed_before``, only those claimed before then. Returns how many."""
        if not executor_ids:
            return 0
        stmt = update(_T).where(_T.c.status == PROCESSING, _T.c.claimed_by.in_(list(executor_ids)))
        if claimed_before is not None:
            stmt = stmt.where(_T.c.processed_at < claimed_before)
        with self.db.engine.begin() as conn:
            return conn.execute(stmt.values(status=PENDING, processed_at=None, claimed_by=None)).rowcount

    def pending_providers(self) -> set[str]:
        """The providers that have events waiting (one read, so a drain skips the idle ones)."""
        stmt = select(_T.c.provider).where(_T.c.status == PENDING, _due()).distinct()
        with self.db.engine.connect().execution_options(readonly=True) as conn:
            return {str(p) for p in conn.execute(stmt).scalars()}

    def pending_count(self, *, connection_id: str | None = None, due_only: bool = False) -> int:
        """How many events wait to be claimed (``due_only``: now, not waiting out a backoff)."""
        stmt = select(func.count()).select_from(_T).where(_T.c.status == PENDING)
        if due_only:
            stmt = stmt.where(_due())
        if connection_id is not None:
            stmt = stmt.where(_T.c.connection_id == connection_id)
        # ``readonly`` lets the engine open a deferred (shared) transaction on SQLite.
        with self.db.engine.connect().execution_options(readonly=True) as conn:
            return int(conn.execute(stmt).scalar_one())


    # -- what a vendor sees of a connection's events ---------------------------------------------------------
    def events(self, connection_id: str, *, status: str | None = None, after: int | None = None, limit: int = 50
               ) -> list[Any]:
        """A connection's inbox events, newest first (keyset on the inbox id: ``after`` is the last id of the
        previous page), without their bodies; ``status`` one of pending, processing, processed, failed."""
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status must be one of {list(STATUSES)}", code="invalid_status")
        stmt = select(*_EVENT_COLUMNS).where(_T.c.connection_id == connection_id)
        if status is not None:
            stmt = stmt.where(_T.c.status == status)
        if after is not None:
            stmt = stmt.where(_T.c.id < after)
        with self.db.read() as s:
            if after is not None:
                cursor_row(s, _T, after, _T.c.connection_id == connection_id)
            return list(s.execute(stmt.order_by(_T.c.id.desc()).limit(limit)).all())

    def retry(self, connection_id: str, event_id: str) -> Any:
        """Put a failed event back to be processed now (after its cause was fixed: new credentials, a provider
        back up), with a fresh count of attempts. Only a failed event can be retried (``not_failed``, 409)."""
        with self.db.session() as s:
            row = s.execute(select(_T.c.id, _T.c.status).where(
                _T.c.connection_id == connection_id, _T.c.event_id == event_id)).first()
            if row is None:
                raise NotFound("webhook event not found", code="unknown_event")
            if row.status != FAILED:
                raise Conflict(f"the event is {row.status}; only a failed event can be retried", code="not_failed")
            s.execute(update(_T).where(_T.c.id == row.id, _T.c.status == FAILED).values(
                status=PENDING, attempts=0, next_attempt_at=None, processed_at=None))
            # the row itself (it was read as the page after ``row.id + 1``, a cursor that names no row of this
            # connection when the event is its newest or the next inbox row is another connection's: 422
            # invalid_cursor after the retry was committed)
            return s.execute(select(*_EVENT_COLUMNS).where(_T.c.id == row.id)).one()


#: What a vendor sees of an inbox event (``events``, ``retry``): no body.
_EVENT_COLUMNS = (_T.c.id, _T.c.event_id, _T.c.event_type, _T.c.record_id, _T.c.status, _T.c.attempts,
                  _T.c.received_at, _T.c.processed_at, _T.c.next_attempt_at, _T.c.error)


def _due() -> Any:
    """Pending rows that may be claimed now: never failed, or past their backoff."""
    return _T.c.next_attempt_at.is_(None) | (_T.c.next_attempt_at <= datetime.now(UTC))


def _clip(value: str | None) -> str | None:
    return None if value is None else value[:_EVENT_ID_MAX]


def _set_results(subs: list[_Submission]) -> None:
    for sub in subs:
        if sub.future.done():
            continue
        if isinstance(sub.result, BaseException):
            sub.future.set_exception(sub.result)
        elif sub.result is None:
            sub.future.set_exception(RuntimeError("webhook inbox submission was not processed"))
        else:
            sub.future.set_result(sub.result)
