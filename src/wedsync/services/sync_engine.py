"""The shared sync engine: full and incremental pulls, page upserts, deletes, cursors, hook re-fetches.

Exactly-once per page: a page's records, its ``sync_run_pages`` row and the run's counters are written
in one transaction, so a replayed step (after a crash or a DBOS recovery) finds its page row and
returns the stored result instead of counting twice. Upserts are keyed by (connection, remote id) and
compare a content hash, so replays never duplicate records either.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection as SAConnection
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from wedsync.connectors.base import Page
from wedsync.connectors.errors import ConnectorError, SchemaMismatch
from wedsync.domain.crm import AnyRecord, ClientRecord, WeddingRecord, record_values
from wedsync.errors import Conflict, InvalidInput, NotFound
from wedsync.logging import get_logger
from wedsync.metrics import SYNC_RUNS, count_sync_records
from wedsync.services.connections import ConnectionService
from wedsync.services.crm_sync import CrmResolver, CrmStats, Prepared, prepare
from wedsync.store.bulk import insert_many
from wedsync.store.db import Database
from wedsync.store.paging import cursor_row
from wedsync.store.tables import (
    Client,
    Connection,
    SyncCursor,
    SyncRun,
    SyncRunPage,
    Wedding,
    new_id,
    utcnow,
)
from wedsync.store.tables_crm import CrmContract, CrmEvent, CrmInvoice, CrmRunPageStats, CrmWeddingLink

DEFAULT_LOOKBACK = timedelta(minutes=10)
MAX_PASSES = 3
MODES = ("full", "incremental")

# stream -> table of per-source rows; "job-contacts" links weddings to clients and has no table of its own.
# A run pulls the streams its connector reads, in this order (clients before what refers to them).
STREAM_MODELS: dict[str, Any] = {"contacts": Client, "jobs": Wedding, "job_contacts": CrmWeddingLink,
                                 "events": CrmEvent, "contracts": CrmContract, "invoices": CrmInvoice,
                                 "orders": CrmInvoice}
#: The order a run pulls its streams in: people, their weddings, the links between them, then the rest.
STREAM_ORDER = ("contacts", "jobs", "job_contacts", "events", "contracts", "invoices", "orders")
STREAMS = ("contacts", "jobs", "job_contacts")
_CRM_STATS: Table = CrmRunPageStats.__table__  # type: ignore[assignment]

log = get_logger("wedsync.sync")


#: Records a batch of hooks re-fetches at once (the provider account's rate budget still paces them).
REFETCH_CONCURRENCY = 8
#: Records written per transaction by a hook batch (see ``SyncService.refetch_many``).
REFETCH_WRITE_CHUNK = 20


def _keep_payment_details(rec: Any, stored: Any) -> bool:
    """An order listed again carries its payments as allocations only (amount, refund); the date, method, memo
    and status its payments' hooks or our own writes stored stay (``vsco_workspace.PAYMENT_DETAILS``). True when
    ``rec`` took some."""
    from wedsync.connectors.crm.vsco_workspace import PAYMENT_DETAILS

    known = {str(p.get("remote_id")): p for p in stored or () if isinstance(p, dict)}
    took = False
    for entry in getattr(rec, "payments", None) or ():
        old = known.get(str(entry.get("remote_id")))
        if old is None:
            continue
        for key in PAYMENT_DETAILS:
            if entry.get(key) is None and old.get(key) is not None:
                entry[key] = old[key]
                took = True
    return took


@dataclass
class RefetchResult:
    """What :meth:`SyncService.refetch_many` did: counts of the records written, and per-record errors."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    absent: int = 0
    errors: dict[str, Exception] = field(default_factory=dict)

    def outcome(self) -> str:
        """The one word for a single record's re-fetch."""
        for name in ("created", "updated", "deleted", "unchanged"):
            if getattr(self, name):
                return name
        return "absent"


@dataclass
class PageResult:
    stream: str
    page: int
    items: int
    created: int
    updated: int
    unchanged: int
    total_items: int | None
    total_pages: int
    stop: bool  # incremental: this page reached records older than the window

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunPlan:
    run_id: str
    connection_id: str
    vendor_id: str
    mode: str
    since: str | None
    streams: list[str] = field(default_factory=lambda: list(STREAMS))
    #: Streams an incremental run lists in full: they have no cursor yet (added to ``settings.streams`` since
    #: the last run), so there is no window to start from and their history is read like a new connection's.
    full_streams: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def is_full(self, stream: str) -> bool:
        """Whether this run lists ``stream`` in full (id order, passes until complete, deletes)."""
        return self.mode == "full" or stream in self.full_streams

    def since_of(self, stream: str) -> datetime | None:
        """Where this run's listing of ``stream`` stops (None: it reads every page)."""
        return None if self.is_full(stream) or not self.since else datetime.fromisoformat(self.since)


class RunSteps(Protocol):
    """The durable steps a sync run is made of (DBOS steps in production, plain calls in tests)."""

    async def begin(self, run_id: str) -> dict[str, Any]: ...
    async def page(self, plan: dict[str, Any], stream: str, page: int, pass_no: int) -> dict[str, Any]: ...
    async def complete(self, plan: dict[str, Any], stream: str, pass_no: int) -> bool: ...
    async def finish(self, plan: dict[str, Any], complete: dict[str, bool]) -> dict[str, Any]: ...


async def drive_run(run_id: str, steps: RunSteps) -> dict[str, Any]:
    """The shape of a sync run: for each stream, page through the listing; a full listing (every stream of a
    full run, a stream without a cursor in an incremental one) repeats a pass (at most MAX_PASSES) until it was
    provably complete, then deletions and cursors apply."""
    plan = await steps.begin(run_id)
    complete: dict[str, bool] = {}
    for stream in plan["streams"]:
        for pass_no in range(1, MAX_PASSES + 1):
            page = 1
            while True:
                r = await steps.page(plan, stream, page, pass_no)
                # An empty page ends the listing whatever the provider's totals say: a total that lies (1,000
                # pages reported, 6 served) had every pass read hundreds of empty pages, and a huge one kept the
                # run going for ever. The pass is then short of the pages reported: read again, and deletions
                # wait (``listing_problem``).
                if r["stop"] or page >= r["total_pages"] or not r["items"]:
                    break
                page += 1
            if plan["mode"] != "full" and stream not in plan.get("full_streams", ()):
                break  # an incremental listing proves nothing about absence: one pass
            complete[stream] = await steps.complete(plan, stream, pass_no)
            if complete[stream]:
                break
    return await steps.finish(plan, complete)


class DirectSteps:
    """Runs the steps in-process without DBOS (tests, and tools that need no durability)."""

    def __init__(self, sync: SyncService) -> None:
        self.sync = sync

    async def begin(self, run_id: str) -> dict[str, Any]:
        return self.sync.begin(run_id).as_dict()

    async def page(self, plan: dict[str, Any], stream: str, page: int, pass_no: int) -> dict[str, Any]:
        return (await self.sync.sync_page(RunPlan(**plan), stream, page, pass_no)).as_dict()

    async def complete(self, plan: dict[str, Any], stream: str, pass_no: int) -> bool:
        return await self.sync.listing_complete(RunPlan(**plan), stream, pass_no)

    async def finish(self, plan: dict[str, Any], complete: dict[str, bool]) -> dict[str, Any]:
        return self.sync.finish(RunPlan(**plan), complete)


# Prefetched next pages (see SyncService.sync_page): at most this many outstanding, oldest dropped first.
_PREFETCH_MAX = 64
_PageKey = tuple[str, str, int, int]  # run id, stream, page, pass
_Prefetch = tuple[asyncio.AbstractEventLoop, Any, "asyncio.Future[_Ahead]"]  # loop, connector, fetch


@dataclass(slots=True)
class _Ahead:
    """A page fetched, mapped and prepared (:func:`prepare`) before its step asks for it."""

    page: Page
    records: list[Any]
    prepared: dict[str, Prepared] | None
_CONNECTOR_TTL = 10.0


def _stops(records: Sequence[ClientRecord | WeddingRecord], since: datetime | None) -> bool:
    """Whether drive_run stops after this page of an incremental listing (as ``_write_page`` decides)."""
    if since is None:
        return False
    modified = [r.remote_modified_at for r in records if r.remote_modified_at]
    return not records or (bool(modified) and min(modified) < since)


#: What a connector's mapping raises on a record of an unexpected shape (a string field that is a number, an object
#: that is a list...) when it does not check the type itself.
_SHAPE_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError)


def map_record(connector: Any, stream: str, item: Any) -> Any:
    """``connector.map`` of one provider item; a record the mapping cannot read (the provider sent garbage or
    changed its schema) is ``SchemaMismatch`` naming the stream, the record and the cause, so the run fails
    with that on the connection's status instead of as an internal error."""
    try:
        return connector.map(stream, item)
    except ConnectorError:
        raise
    except _SHAPE_ERRORS as exc:
        rid = item.get("id") if isinstance(item, dict) else None
        raise SchemaMismatch(
            f"{stream} record {str(rid)[:64] if rid is not None else '(without id)'} does not have the documented "
            f"shape: {type(exc).__name__}: {str(exc)[:200]}", provider=getattr(connector, "slug", None)) from exc


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # an unused prefetch's failure is not "never retrieved"


def _cancel(entry: _Prefetch) -> None:
    loop, _, task = entry
    if not task.done():
        with contextlib.suppress(RuntimeError):  # its loop is closed: nothing left to cancel
            loop.call_soon_threadsafe(task.cancel)


_T = TypeVar("_T")


def once_more_on_race(write: Callable[[], _T]) -> _T:
    """Run a write transaction, and once more if it lost a race for a new record: on PostgreSQL a sync page and
    a hook's re-fetch of the same new contact may both find nothing and insert, and the later commit fails on
    the unique (connection, remote id). Written again, it finds the row and updates it (or leaves it, when the
    winner's copy is as new), instead of failing the whole run or the hook."""
    try:
        return write()
    except IntegrityError:
        return write()


#: The longest interval a connection's scheduled pulls may have (30 days).
MAX_INTERVAL_MINUTES = 43_200
#: How ``due`` tells a connection whose credentials the provider rejected: retrying on a schedule cannot help
#: until they are replaced (a reconnect, the OAuth callback, or a manual run that succeeds clears the status).
_REAUTH_DETAIL = "ReauthRequired%"


class SyncService:
    def __init__(self, db: Database, connections: ConnectionService, *, default_interval_minutes: int = 60
                 ) -> None:
        self.db = db
        self.connections = connections
        self.default_interval_minutes = default_interval_minutes
        self._providers: dict[str, tuple[str, str | None]] = {}
        self.crm = CrmResolver()
        self._prefetch: dict[_PageKey, _Prefetch] = {}
        self._prefetch_lock = threading.Lock()
        self._connectors: dict[tuple[str, int], tuple[Any, float]] = {}

    # -- runs ---------------------------------------------------------------------------------------
    def create_run(self, vendor_id: str, connection_id: str, mode: str) -> SyncRun:
        if mode not in MODES:
            raise InvalidInput(f"mode must be one of {list(MODES)}", code="invalid_mode")
        conn = self.connections.get(vendor_id, connection_id)
        if not hasattr(self._connector_class(conn), "list_page"):
            raise InvalidInput(f"{conn.provider} cannot be pulled", code="not_pullable")
        interval = self.interval_of(conn)
        try:
            with self.db.session() as s:
                self._refuse_if_running(s, connection_id)
                run = SyncRun(id=new_id(), vendor_id=vendor_id, connection_id=connection_id, mode=mode,
                              status="queued", started_at=utcnow())
                s.add(run)
                row = s.get(Connection, connection_id)
                if row is not None:  # the next scheduled pull: an interval after this one started
                    row.next_sync_at = run.started_at + interval if interval else None
        except IntegrityError:  # another request created one between the check and the insert
            with self.db.read() as s:
                self._refuse_if_running(s, connection_id)
            raise
        return run

    @staticmethod
    def _refuse_if_running(s: Session, connection_id: str) -> None:
        running = s.execute(select(SyncRun.id).where(SyncRun.connection_id == connection_id,
                                                     SyncRun.status.in_(("queued", "running")))).first()
        if running is not None:
            raise Conflict(f"sync run {running[0]} is already in progress for this connection",
                           code="sync_in_progress", details={"run_id": running[0]})

    # -- the schedule: incremental pulls on their own ------------------------------------------------
    def interval_of(self, conn: Connection) -> timedelta | None:
        """How often a connection is pulled without being asked: its own interval, else the hub's default.
        None: never (set to 0, the default is 0, or a provider with no API to pull from)."""
        if not hasattr(self._connector_class(conn), "list_page"):
            return None
        minutes = conn.sync_interval_minutes
        if minutes is None:
            minutes = self.default_interval_minutes
        return timedelta(minutes=minutes) if minutes > 0 else None

    def interval_minutes(self, conn: Connection) -> int | None:
        """``interval_of`` in whole minutes, as the API and the CLI show it (None: not scheduled)."""
        every = self.interval_of(conn)
        return int(every.total_seconds() // 60) if every else None

    def set_interval(self, vendor_id: str, connection_id: str, minutes: int | None) -> Connection:
        """A connection's own interval (None: the hub's default; 0: manual runs only). The next pull is then
        one interval after the last run started (none before the first run: the vendor starts that one)."""
        if minutes is not None and not 0 <= minutes <= MAX_INTERVAL_MINUTES:
            raise InvalidInput(f"sync_interval_minutes must be between 0 and {MAX_INTERVAL_MINUTES} (or null for "
                               f"the default)", code="invalid_interval")
        conn = self.connections.get(vendor_id, connection_id)
        if minutes and not hasattr(self._connector_class(conn), "list_page"):
            raise InvalidInput(f"{conn.provider} has no API to pull from: nothing to schedule",
                               code="not_pullable")
        with self.db.session() as s:
            row = s.get(Connection, connection_id)
            if row is None:
                raise NotFound("connection not found", code="unknown_connection")
            row.sync_interval_minutes = minutes
            interval = self.interval_of(row)
            last = s.execute(select(func.max(SyncRun.started_at)).where(
                SyncRun.connection_id == connection_id)).scalar_one()
            row.next_sync_at = last + interval if (last is not None and interval) else None
            s.flush()
            s.refresh(row)
            return row

    def due(self, now: datetime, limit: int = 50) -> list[tuple[str, str]]:
        """(vendor id, connection id) of the connections whose scheduled pull is due, the most overdue first;
        connections whose credentials were rejected wait for new ones."""
        with self.db.read() as s:
            rows = s.execute(select(Connection.vendor_id, Connection.id).where(
                Connection.next_sync_at.is_not(None), Connection.next_sync_at <= now,
                (Connection.status_detail.is_(None)) | (Connection.status_detail.not_like(_REAUTH_DETAIL)))
                .order_by(Connection.next_sync_at).limit(limit)).all()
        return [(r[0], r[1]) for r in rows]

    def claim_due(self, connection_id: str, now: datetime) -> bool:
        """Move a due connection's next pull one interval on; True for the one worker whose update found it
        still due (several workers may see it due at once)."""
        with self.db.session() as s:
            row = s.get(Connection, connection_id)
            if row is None:
                return False
            interval = self.interval_of(row)
            res = s.execute(update(Connection).where(
                Connection.id == connection_id, Connection.next_sync_at.is_not(None),
                Connection.next_sync_at <= now).values(next_sync_at=now + interval if interval else None)
                .execution_options(synchronize_session=False))
            return int(getattr(res, "rowcount", 0) or 0) == 1 and interval is not None

    def runs_in_progress(self, connection_id: str) -> list[SyncRun]:
        with self.db.read() as s:
            return list(s.execute(select(SyncRun).where(SyncRun.connection_id == connection_id,
                                                        SyncRun.status.in_(("queued", "running")))).scalars())

    def get_run(self, vendor_id: str, run_id: str) -> SyncRun:
        with self.db.read() as s:
            run = s.get(SyncRun, run_id)
            if run is None or run.vendor_id != vendor_id:
                raise NotFound("sync run not found")
            return run

    def list_runs(self, vendor_id: str, connection_id: str | None = None, limit: int = 50,
                  after: str | None = None) -> list[SyncRun]:
        """Newest first; ``after`` is the last id of the previous page."""
        with self.db.read() as s:
            q = select(SyncRun).where(SyncRun.vendor_id == vendor_id)
            if connection_id:
                q = q.where(SyncRun.connection_id == connection_id)
            if after:
                cursor_row(s, SyncRun, after, SyncRun.vendor_id == vendor_id,
                           *((SyncRun.connection_id == connection_id,) if connection_id else ()))
                q = q.where(SyncRun.id < after)
            return list(s.execute(q.order_by(SyncRun.id.desc()).limit(limit)).scalars())

    def begin(self, run_id: str) -> RunPlan:
        """Mark the run running and fix its window (idempotent: a replay returns the same plan)."""
        with self.db.session() as s:
            run = s.get(SyncRun, run_id)
            if run is None:
                raise NotFound("sync run not found")
            conn = s.get(Connection, run.connection_id)
            if conn is None:
                raise NotFound("connection not found", code="unknown_connection")
            if run.status in ("succeeded", "failed"):
                # Ended before its workflow got here (closed as abandoned by reconcile_runs, or left pending by
                # a crash after fail() and resumed by the next launch): nothing to list, and finish() returns
                # the recorded outcome unchanged. A replay of this step after a real start never comes here
                # (DBOS returns the plan it recorded).
                log.warning("sync run already ended; its workflow does nothing", run_id=run.id, status=run.status)
                return RunPlan(run_id=run.id, connection_id=run.connection_id, vendor_id=run.vendor_id,
                               mode=run.mode, since=run.since.isoformat() if run.since else None, streams=[],
                               full_streams=[])
            streams = self.streams_of(conn)
            if run.status == "queued":
                run.status = "running"
                run.started_at = utcnow()
                interval = self.interval_of(conn)  # the next scheduled pull: an interval after this start
                conn.next_sync_at = run.started_at + interval if interval else None
            # The cursors of this run's streams (a replay of this step comes before this run's finish moves
            # them: DBOS records the step's result once it returned). A stream without one was added to the
            # connection since the last run: it is listed in full, since the window of the others would skip its
            # history (and for good: the cursor then moves past it).
            cursors: dict[str, datetime] = {stream: value for stream, value in s.execute(
                select(SyncCursor.stream, SyncCursor.value).where(
                    SyncCursor.connection_id == run.connection_id, SyncCursor.stream.in_(streams))).all()}
            if run.mode == "incremental" and run.since is None:
                lookback = timedelta(seconds=float(conn.settings.get("lookback_seconds",
                                                                     DEFAULT_LOOKBACK.seconds)))
                # down to the whole second: providers stamp ``modified`` in whole seconds (VSCO), so an edit
                # in the same second as the last run's start, after it read that record, is stamped before
                # the start (with lookback 0 a since of 09:41:06.046 missed 09:41:06 for good)
                run.since = (min(cursors.values()) - lookback).replace(microsecond=0) if cursors else None
                if run.since is None:
                    run.mode = "full"  # nothing synced yet: an incremental run starts with a full one
            full_streams = [st for st in streams if st not in cursors] if run.mode == "incremental" else []
            return RunPlan(run_id=run.id, connection_id=run.connection_id, vendor_id=run.vendor_id,
                           mode=run.mode, since=run.since.isoformat() if run.since else None,
                           streams=streams, full_streams=full_streams)

    def streams_of(self, conn: Connection) -> list[str]:
        """The streams a run of this connection pulls: contacts and jobs, or the connection's
        ``settings.streams`` (e.g. adding events, contracts, orders), limited to what its connector reads
        and we store, clients first."""
        wanted = (conn.settings or {}).get("streams") or STREAMS
        caps = getattr(self._connector_class(conn), "capabilities", None)
        read = set(getattr(caps, "read", ()) or ())
        streams = [name for name in STREAM_ORDER if name in wanted and name in read]
        return streams or ["contacts", "jobs"]

    async def sync_page(self, plan: RunPlan, stream: str, page: int, pass_no: int = 1) -> PageResult:
        key = (plan.run_id, stream, page, pass_no)
        connector = await self._run_connector(plan)
        sort = "id asc" if plan.is_full(stream) else "modified desc"
        ahead = await self._take_prefetch(key, connector)
        if ahead is None:
            fetched = await connector.list_page(stream, page, sort=sort)
            records = [map_record(connector, stream, item) for item in fetched.items]
            prepared = None
        else:
            fetched, records, prepared = ahead.page, ahead.records, ahead.prepared
        since = plan.since_of(stream)
        if page < fetched.total_pages and records and not _stops(records, since):  # empty: the listing's end
            # drive_run asks for the next page right after this one: fetch, map and prepare it while this
            # one is written (the provider works on its side meanwhile, and this loop's Python runs while
            # the write thread is in SQLite, which releases the GIL). What is done ahead depends on the
            # records alone; the next page is still resolved and written, with its bookkeeping row, by its
            # own step.
            self._start_prefetch((plan.run_id, stream, page + 1, pass_no), connector,
                                 self._ahead(plan.connection_id, connector, stream, page + 1, sort))
        # A replayed step (crash recovery) finds its page row inside _write_page and returns the stored
        # result; the re-fetch it made is the price of not reading the bookkeeping twice per page.
        return await asyncio.to_thread(self._write_page, plan, stream, page, pass_no, records,
                                       fetched.total_items, fetched.total_pages, since, prepared)

    async def _ahead(self, connection_id: str, connector: Any, stream: str, page: int, sort: str) -> _Ahead:
        fetched = await connector.list_page(stream, page, sort=sort)
        records = [map_record(connector, stream, item) for item in fetched.items]
        known = self._providers.get(connection_id)  # the phone region, once a write has read it
        prepared = None
        if known is not None:
            prepared = prepare(records, clients=stream == "contacts", region=known[1])
        return _Ahead(fetched, records, prepared)

    async def _run_connector(self, plan: RunPlan) -> Any:
        """The connection's live connector, looked up once per run and event loop (re-checked every
        ``_CONNECTOR_TTL`` seconds, so rotated credentials are picked up mid-run)."""
        key = (plan.run_id, id(asyncio.get_running_loop()))
        now = time.monotonic()
        cached = self._connectors.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        conn = self.connections.get_any(plan.connection_id)
        connector = await self.connections.connector(conn)
        if len(self._connectors) > 256:
            self._connectors.clear()
        self._connectors[key] = (connector, now + _CONNECTOR_TTL)
        return connector

    # -- next-page prefetch --------------------------------------------------------------------------
    def _start_prefetch(self, key: _PageKey, connector: Any, fetch: Awaitable[_Ahead]) -> None:
        task = asyncio.ensure_future(fetch)
        task.add_done_callback(_retrieve_exception)
        loop = asyncio.get_running_loop()
        with self._prefetch_lock:
            old = self._prefetch.pop(key, None)
            self._prefetch[key] = (loop, connector, task)
            while len(self._prefetch) > _PREFETCH_MAX:
                _cancel(self._prefetch.pop(next(iter(self._prefetch))))
        if old is not None:
            _cancel(old)

    async def _take_prefetch(self, key: _PageKey, connector: Any) -> _Ahead | None:
        """The page fetched ahead for this step, or None (none, another loop or connector, or it failed:
        the caller then fetches as usual, so errors surface exactly as without the prefetch)."""
        with self._prefetch_lock:
            entry = self._prefetch.pop(key, None)
        if entry is None:
            return None
        loop, conn, task = entry
        if loop is not asyncio.get_running_loop() or conn is not connector:
            _cancel(entry)
            return None
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # the prefetch itself was cancelled, not this step
                return None
            raise
        except Exception:
            return None

    def _drop_run_prefetches(self, run_id: str) -> None:
        with self._prefetch_lock:
            entries = [self._prefetch.pop(k) for k in [k for k in self._prefetch if k[0] == run_id]]
        for entry in entries:
            _cancel(entry)

    def _page_result(self, row: Any, plan: RunPlan) -> PageResult:
        since = plan.since_of(row.stream)
        stop = bool(since and row.oldest_modified and row.oldest_modified < since)
        return PageResult(stream=row.stream, page=row.page, items=row.items, created=row.created,
                          updated=row.updated, unchanged=row.unchanged, total_items=row.total_items,
                          total_pages=row.total_pages or 0, stop=stop)

    def _write_page(self, plan: RunPlan, stream: str, page: int, pass_no: int,
                    records: Sequence[ClientRecord | WeddingRecord], total_items: int | None, total_pages: int,
                    since: datetime | None, prepared: dict[str, Prepared] | None = None) -> PageResult:
        return once_more_on_race(lambda: self._write_page_once(plan, stream, page, pass_no, records, total_items,
                                                               total_pages, since, prepared))

    def _write_page_once(self, plan: RunPlan, stream: str, page: int, pass_no: int,
                         records: Sequence[ClientRecord | WeddingRecord], total_items: int | None,
                         total_pages: int, since: datetime | None,
                         prepared: dict[str, Prepared] | None = None) -> PageResult:
        pages: Table = SyncRunPage.__table__  # type: ignore[assignment]
        with self.db.engine.begin() as conn:
            done = conn.execute(select(pages).where(
                pages.c.run_id == plan.run_id, pages.c.stream == stream, pages.c.page == page,
                pages.c.pass_no == pass_no)).first()
            if done is not None:  # a replay, or another executor finished this page first
                return self._page_result(SimpleNamespace(**done._mapping), plan)
            all_modified = [r.remote_modified_at for r in records if r.remote_modified_at]
            oldest = min(all_modified) if all_modified else None
            fetched_any = bool(records)
            if since is not None:
                records = [r for r in records if r.remote_modified_at is None or r.remote_modified_at >= since]
            crm = CrmStats()
            created, updated, unchanged = self.upsert(conn, plan.vendor_id, plan.connection_id, stream, records,
                                                      run_id=plan.run_id, stats=crm, prepared=prepared)
            n = len(records)
            if crm.merged or crm.conflicts or crm.echoes:
                conn.execute(insert(_CRM_STATS).values(
                    run_id=plan.run_id, stream=stream, page=page, pass_no=pass_no, vendor_id=plan.vendor_id,
                    merged=crm.merged, conflicts=crm.conflicts, echoes=crm.echoes))
            # The run's counters and progress are the sums of these rows (see summary): no hot row to
            # update on every page.
            conn.execute(insert(pages).values(
                run_id=plan.run_id, stream=stream, page=page, pass_no=pass_no, vendor_id=plan.vendor_id,
                items=n, created=created, updated=updated, unchanged=unchanged, total_items=total_items,
                total_pages=total_pages, oldest_modified=oldest, done_at=utcnow()))
        provider = self._providers.get(plan.connection_id, ("unknown", None))[0]  # known once upsert ran
        count_sync_records(provider, stream, created=created, updated=updated, unchanged=unchanged,
                           conflict=crm.conflicts)
        # In an incremental run the listing is newest first: a page reaching past the window's
        # start means every later page is older still.
        stop = since is not None and (not fetched_any or (oldest is not None and oldest < since))
        return PageResult(stream=stream, page=page, items=n, created=created, updated=updated,
                          unchanged=unchanged, total_items=total_items, total_pages=total_pages, stop=stop)

    def upsert(self, s: Session | SAConnection, vendor_id: str, connection_id: str, stream: str,
               records: Sequence[AnyRecord], *, run_id: str | None = None,
               evidence: dict[str, Any] | None = None, stats: CrmStats | None = None,
               prepared: Mapping[str, Prepared] | None = None) -> tuple[int, int, int]:
        """Insert new records, update changed ones; returns (created, updated, unchanged).

        A record older than the stored one (by the provider's ``modified``) never overwrites it. Runs on
        the caller's transaction (a Session's or a Core connection's) with Core statements only. New and
        changed clients are resolved to unified clients and merged into them in the same transaction
        (``crm_resolve``); ``evidence`` maps a client's remote id to its wedding dates, ``stats`` collects
        merges, conflicts and echoes. ``prepared`` (by remote id) is what :func:`prepare` computed of
        these records ahead of the write; a record without its entry is computed here.
        """
        conn = s.connection() if isinstance(s, Session) else s
        t: Table = STREAM_MODELS[stream].__table__
        by_id: dict[str, AnyRecord] = {r.remote_id: r for r in records}
        if not by_id:
            return 0, 0, 0
        is_clients = stream == "contacts"
        cols: list[Any] = [t] if is_clients else [t.c.id, t.c.remote_id, t.c.content_hash, t.c.remote_modified_at,
                                                  t.c.deleted_at, t.c.version]
        if stream == "jobs":
            cols.append(t.c.client_remote_ids)
        elif stream == "job_contacts":
            cols.append(t.c.wedding_remote_id)  # a link moved to another wedding relinks both
        elif stream == "orders":
            cols.append(t.c.payments)
        existing = {
            row.remote_id: row
            for row in conn.execute(
                select(*cols).where(t.c.connection_id == connection_id, t.c.remote_id.in_(list(by_id)))
            )
        }
        now = utcnow()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        olds: list[Any] = []
        same: list[str] = []
        touched: list[dict[str, Any]] = []  # unchanged content, newer provider time: provenance only
        provider, region = self._provider_of(conn, connection_id)
        for rid, rec in by_id.items():
            pre = prepared.get(rid) if prepared else None
            if pre is not None and pre.rec is not rec:
                pre = None
            values = dict(pre.values) if pre is not None else record_values(rec)
            old = existing.get(rid)
            if stream == "orders" and old is not None and _keep_payment_details(rec, old.payments):
                values = record_values(rec)  # (what ``prepare`` computed is of the record without them)
            if old is None:
                values.update(id=pre.new_id if pre is not None else new_id(), vendor_id=vendor_id,
                              connection_id=connection_id, provider=provider, synced_at=now, seen_run_id=run_id,
                              version=1)
                inserts.append(values)
                continue
            stale = (old.remote_modified_at is not None and rec.remote_modified_at is not None
                     and rec.remote_modified_at < old.remote_modified_at)
            if stale or (old.content_hash == values["content_hash"] and old.deleted_at is None):
                same.append(rid)
                if not stale and rec.remote_modified_at is not None and rec.remote_modified_at != \
                        old.remote_modified_at:
                    touched.append({"b_id": old.id, "remote_modified_at": rec.remote_modified_at})
                continue
            del values["remote_id"]
            if stream == "jobs" and not values.get("client_remote_ids") and old.client_remote_ids:
                # a job listing that does not carry its couple (VSCO: they are job-contact links) keeps them
                values["client_remote_ids"] = old.client_remote_ids
            values.update(b_id=old.id, synced_at=now, deleted_at=None, seen_run_id=run_id,
                          version=old.version + 1)
            updates.append(values)
            olds.append(old)
        if is_clients and (inserts or updates):
            crm = self.crm.apply_clients(conn, vendor_id, connection_id, provider, inserts,
                                         list(zip(updates, olds, strict=True)), run_id=run_id,
                                         evidence=evidence, region=region, prepared=prepared)
            if stats is not None:
                stats.add(crm)
            for upd in updates:  # written whole: every field as of the record's time (ingest_zap sets its own)
                upd["field_times"] = None
        if inserts:
            insert_many(conn, t, inserts)
        if updates:
            conn.execute(update(t).where(t.c.id == bindparam("b_id")), updates)
        if same and run_id is not None:
            conn.execute(update(t).where(t.c.connection_id == connection_id, t.c.remote_id.in_(same))
                         .values(seen_run_id=run_id))
        if touched:
            conn.execute(update(t).where(t.c.id == bindparam("b_id")), touched)
        if stream == "jobs" and (inserts or updates):
            self.crm.apply_weddings(conn, vendor_id, connection_id, inserts + updates)
        if stream == "job_contacts" and (inserts or updates):
            self.relink(conn, vendor_id, connection_id,
                        {str(v["wedding_remote_id"]) for v in inserts}
                        | {str(v["wedding_remote_id"]) for v in updates} | {str(o.wedding_remote_id) for o in olds})
        return len(inserts), len(updates), len(same)

    def relink(self, conn: SAConnection, vendor_id: str, connection_id: str, wedding_remote_ids: Iterable[str]
               ) -> int:
        """Set these weddings' ``client_remote_ids`` to their live client links (``crm_wedding_links``: not
        deleted, not hidden, a client role), in link order; a person newly linked gets the wedding's date as
        identity evidence. Only weddings of a connection whose links are pulled are touched (a HoneyBook
        project lists its clients itself). Returns the number of weddings changed."""
        wanted = sorted(set(wedding_remote_ids))
        if not wanted:
            return 0
        lt: Table = CrmWeddingLink.__table__  # type: ignore[assignment]
        wt: Table = Wedding.__table__  # type: ignore[assignment]
        couples: dict[str, list[str]] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            for link in conn.execute(select(lt.c.wedding_remote_id, lt.c.client_remote_id).where(
                    lt.c.connection_id == connection_id, lt.c.wedding_remote_id.in_(chunk),
                    lt.c.deleted_at.is_(None), lt.c.is_client.is_(True), lt.c.hidden.is_(False)
            ).order_by(lt.c.wedding_remote_id, lt.c.remote_id)):
                ids = couples.setdefault(link.wedding_remote_id, [])
                if link.client_remote_id not in ids:
                    ids.append(link.client_remote_id)
        changed: list[dict[str, Any]] = []
        dated: list[dict[str, Any]] = []
        for i in range(0, len(wanted), 500):
            for row in conn.execute(select(wt.c.id, wt.c.remote_id, wt.c.client_remote_ids, wt.c.event_date,
                                           wt.c.version).where(
                    wt.c.connection_id == connection_id, wt.c.remote_id.in_(wanted[i:i + 500]),
                    wt.c.deleted_at.is_(None))):
                before = [str(x) for x in row.client_remote_ids or []]
                after = couples.get(row.remote_id, [])
                if after == before:
                    continue
                changed.append({"b_id": row.id, "client_remote_ids": after, "version": row.version + 1})
                added = [rid for rid in after if rid not in before]
                if added and row.event_date:
                    dated.append({"event_date": row.event_date, "client_remote_ids": added})
        if changed:
            conn.execute(update(wt).where(wt.c.id == bindparam("b_id")), changed)
        if dated:
            self.crm.apply_weddings(conn, vendor_id, connection_id, dated)
        return len(changed)

    def _provider_of(self, conn: SAConnection, connection_id: str) -> tuple[str, str | None]:
        """(provider slug, default phone region) of a connection: ``settings.default_region``, else US."""
        p = self._providers.get(connection_id)
        if p is None:
            row = conn.execute(select(Connection.provider, Connection.settings)
                               .where(Connection.id == connection_id)).one()
            region = (row.settings or {}).get("default_region")
            p = (row.provider, str(region).upper() if region else None)
            self._providers[connection_id] = p
        return p

    async def listing_complete(self, plan: RunPlan, stream: str, pass_no: int) -> bool:
        """True when the stored records this run did not see are proven gone from the provider, so ``finish``
        may mark them deleted.

        A listing that changed while it was read cannot prove it: with offset paging, a record removed before
        the read position moves every later one a place up and one of them into a page already read, never
        seen, and a record added at the same time keeps the total and the count of records seen unchanged
        (the records seen include the removed one). So the count is only the gate (a pass whose totals moved,
        or that saw fewer records than reported, is read again); then each stored record the pass did not see
        is fetched by its id: the ones the provider still returns are written and count as seen, and only those
        it answers 404 for stay to be deleted. A fetch that fails fails the run (nothing is deleted)."""
        if not await asyncio.to_thread(self._listing_consistent, plan, stream, pass_no):
            return False
        unseen = await asyncio.to_thread(self._unseen_ids, plan, stream)
        if not unseen:
            return True
        connector = await self._run_connector(plan)
        gate = asyncio.Semaphore(REFETCH_CONCURRENCY)

        async def fetch(remote_id: str) -> AnyRecord | None:
            async with gate:
                item = await connector.get_record(stream, remote_id)
                return None if item is None else map_record(connector, stream, item)

        found = [r for r in await asyncio.gather(*(fetch(rid) for rid in unseen)) if r is not None]
        if found:
            log.info("records missing from a complete-looking listing are still at the provider",
                     run_id=plan.run_id, stream=stream, unseen=len(unseen), still_there=len(found))

        def write(chunk: Sequence[AnyRecord]) -> tuple[int, int, int]:
            with self.db.session() as s:
                return self.upsert(s, plan.vendor_id, plan.connection_id, stream, chunk, run_id=plan.run_id)

        for start in range(0, len(found), REFETCH_WRITE_CHUNK):
            await asyncio.to_thread(once_more_on_race,
                                    functools.partial(write, found[start:start + REFETCH_WRITE_CHUNK]))
        return True

    def _listing_consistent(self, plan: RunPlan, stream: str, pass_no: int) -> bool:
        """This pass read every page the provider reported, every page reported the same total, and the run saw
        at least that many records (necessary for a complete listing, not sufficient: see listing_complete)."""
        with self.db.read() as s:
            return self.listing_problem(s, plan, stream, pass_no) is None

    def listing_problem(self, s: Any, plan: RunPlan, stream: str, pass_no: int | None = None) -> str | None:
        """Why a pass (default: the stream's last) does not prove a complete listing, in words for the
        run's notes; None when it may."""
        model = STREAM_MODELS[stream]
        where = (SyncRunPage.run_id == plan.run_id, SyncRunPage.stream == stream)
        if pass_no is None:
            pass_no = s.execute(select(func.max(SyncRunPage.pass_no)).where(*where)).scalar_one()
        pages = list(s.execute(select(SyncRunPage).where(*where, SyncRunPage.pass_no == pass_no)
                               .order_by(SyncRunPage.page)).scalars())
        if not pages:
            return "nothing was listed"
        if any(p.total_items is None for p in pages):
            return "the provider reported no totals, so no record can be proven deleted"
        totals = [p.total_items or 0 for p in pages]
        final_total = totals[-1]
        expected_pages = pages[-1].total_pages or 0
        if len(pages) < expected_pages:
            if not pages[-1].items:
                return (f"the provider's listing ended at page {len(pages)} of the {expected_pages} it reported "
                        f"({final_total} records)")
            return "listing changed during the run"
        if any(t != final_total for t in totals):
            # the listing changed while this pass read it: a record removed before the read position moves
            # every later one a place up, and one of them into a page already read, never seen (accepting a
            # total that only shrank deleted that live record; found by a probe). Read it again.
            return "listing changed during the run"
        seen = s.execute(select(func.count()).select_from(model).where(
            model.connection_id == plan.connection_id, model.seen_run_id == plan.run_id)).scalar_one()
        if seen < final_total:
            return f"listing changed during the run ({seen} records seen of the {final_total} reported)"
        return None

    @staticmethod
    def _gone(model: Any, plan: RunPlan, started_at: datetime) -> tuple[Any, ...]:
        """The stored, live records of a stream that this run has not seen and that nothing wrote since it
        started (a hook's write after the start is newer than anything the listing could say)."""
        return (model.connection_id == plan.connection_id, model.deleted_at.is_(None),
                (model.seen_run_id.is_(None)) | (model.seen_run_id != plan.run_id),
                model.synced_at < started_at)

    def _unseen_ids(self, plan: RunPlan, stream: str) -> list[str]:
        model = STREAM_MODELS[stream]
        with self.db.read() as s:
            started_at = s.execute(select(SyncRun.started_at).where(SyncRun.id == plan.run_id)).scalar_one()
            return list(s.execute(select(model.remote_id).where(*self._gone(model, plan, started_at))
                                  .order_by(model.remote_id)).scalars())

    def finish(self, plan: RunPlan, complete: dict[str, bool]) -> dict[str, Any]:
        """Apply deletes for provably complete full listings (``listing_complete``: the records left unseen are
        the ones the provider answered 404 for), advance cursors to the run's start."""
        self._drop_run_prefetches(plan.run_id)
        with self.db.session() as s:
            run = s.get(SyncRun, plan.run_id)
            assert run is not None
            if run.status in ("succeeded", "failed"):
                return self.summary(run)
            deleted = 0
            notes: list[str] = []
            for stream in plan.streams:
                if not plan.is_full(stream):
                    continue  # an incremental listing proves nothing about absence
                if not complete.get(stream):
                    why = self.listing_problem(s, plan, stream) or "listing changed during the run"
                    notes.append(f"{stream}: {why}; deletions deferred")
                    continue
                model = STREAM_MODELS[stream]
                # what listing_complete fetched one by one and the provider answered 404 for
                gone = self._gone(model, plan, run.started_at)
                unlinked = (set(s.execute(select(model.wedding_remote_id).where(*gone)).scalars())
                            if stream == "job_contacts" else set())
                marked = s.execute(update(model).where(*gone).values(
                    deleted_at=utcnow(), version=model.version + 1).returning(model.id)
                    .execution_options(synchronize_session=False)).scalars().all()
                deleted += len(marked)
                if stream == "contacts" and marked:  # their open conflicts offer values no source holds now
                    self.crm.dismiss_for_deleted_sources(
                        s.connection(), plan.vendor_id,
                        f"source deleted: a complete full sync (run {plan.run_id}) found the record gone at its "
                        f"provider (404)", source_client_ids=marked)
                if unlinked:  # links gone from a complete listing: their weddings lose those people
                    self.relink(s.connection(), plan.vendor_id, plan.connection_id, unlinked)
            for stream in plan.streams:
                cur = s.get(SyncCursor, (plan.connection_id, stream))
                if cur is None:
                    s.add(SyncCursor(connection_id=plan.connection_id, stream=stream,
                                     vendor_id=plan.vendor_id, value=run.started_at))
                elif cur.value < run.started_at:
                    cur.value = run.started_at
            run.deleted += deleted
            self._materialize(s, run)
            run.status = "succeeded"
            run.finished_at = utcnow()
            run.error_detail = "; ".join(notes) or None
            conn = s.get(Connection, plan.connection_id)
            if conn is not None:
                conn.last_sync_at = run.finished_at
                if conn.status == "error":
                    conn.status, conn.status_detail = "active", None
            out = self.summary(run)
        SYNC_RUNS.labels(conn.provider if conn is not None else "unknown", "succeeded", "none").inc()
        return out

    def fail(self, run_id: str, error: BaseException, detail: str | None = None,
             error_class: str | None = None) -> dict[str, Any]:
        """Record the run as failed with ``detail`` (default: the error's type and message); a connector error
        also puts the connection in ``error`` with it."""
        self._drop_run_prefetches(run_id)
        detail = (detail or f"{type(error).__name__}: {error}")[:2000]
        with self.db.session() as s:
            run = s.get(SyncRun, run_id)
            if run is None:  # deleted with its connection while it ran: nothing left to mark
                log.info("sync run gone (its connection was deleted)", run_id=run_id)
                return {"id": run_id, "status": "failed", "error_detail": detail, "gone": True}
            self._materialize(s, run)
            run.status, run.finished_at, run.error_detail = "failed", utcnow(), detail
            run.errors += 1
            conn = s.get(Connection, run.connection_id)
            if conn is not None and isinstance(error, ConnectorError):
                conn.status, conn.status_detail = "error", detail
            out = self.summary(run)
        SYNC_RUNS.labels(conn.provider if conn is not None else "unknown", "failed",
                         error_class or type(error).__name__).inc()
        return out

    @staticmethod
    def _page_totals(conn: SAConnection | Session, run_id: str) -> tuple[dict[str, int], dict[str, Any]]:
        """The run's counters and per-stream progress, summed from its page rows."""
        p = SyncRunPage.__table__
        rows = conn.execute(
            select(p.c.stream, p.c.pass_no, func.count(), func.sum(p.c["items"]), func.sum(p.c.created),
                   func.sum(p.c.updated), func.sum(p.c.unchanged), func.max(p.c.page), func.max(p.c.total_pages),
                   func.max(p.c.total_items))
            .where(p.c.run_id == run_id).group_by(p.c.stream, p.c.pass_no).order_by(p.c.pass_no)
        ).all()
        totals = {"pages": 0, "processed": 0, "created": 0, "updated": 0, "unchanged": 0}
        progress: dict[str, Any] = {}
        for stream, pass_no, n, items, created, updated, unchanged, last, total_pages, total_items in rows:
            totals["pages"] += int(n)
            totals["processed"] += int(items or 0)
            totals["created"] += int(created or 0)
            totals["updated"] += int(updated or 0)
            totals["unchanged"] += int(unchanged or 0)
            progress[stream] = {"page": int(last or 0), "total_pages": int(total_pages or 0),
                                "total_items": int(total_items or 0), "pass": int(pass_no)}
        return totals, progress

    def _materialize(self, s: Session, run: SyncRun) -> None:
        totals, progress = self._page_totals(s, run.id)
        for k, v in totals.items():
            setattr(run, k, v)
        run.progress = progress

    def summary(self, run: SyncRun) -> dict[str, Any]:
        """The run as the API shows it; an unfinished run's counters are summed from its pages."""
        counts: dict[str, Any] = {"pages": run.pages, "processed": run.processed, "created": run.created,
                                  "updated": run.updated, "unchanged": run.unchanged}
        progress = run.progress
        if run.status in ("queued", "running"):
            with self.db.read() as s:
                counts, progress = self._page_totals(s, run.id)
        with self.db.read() as s:
            st = CrmRunPageStats.__table__
            merged, conflicts, echoes = s.execute(select(
                func.coalesce(func.sum(st.c.merged), 0), func.coalesce(func.sum(st.c.conflicts), 0),
                func.coalesce(func.sum(st.c.echoes), 0)).where(st.c.run_id == run.id)).one()
        return {
            "id": run.id, "connection_id": run.connection_id, "mode": run.mode, "status": run.status,
            "merged": int(merged), "conflicts": int(conflicts), "echoes": int(echoes),
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "since": run.since.isoformat() if run.since else None,
            **counts, "deleted": run.deleted, "errors": run.errors,
            "error_detail": run.error_detail, "progress": progress,
        }

    # -- hooks --------------------------------------------------------------------------------------
    async def refetch(self, connection_id: str, stream: str, remote_id: str) -> str:
        """Re-fetch one record a hook named and upsert it (or mark it deleted); returns what happened:
        created, updated, unchanged, deleted or absent. A fetch or mapping error is raised."""
        result = await self.refetch_many(connection_id, stream, [remote_id])
        if remote_id in result.errors:
            raise result.errors[remote_id]
        return result.outcome()

    async def refetch_many(self, connection_id: str, stream: str, remote_ids: Sequence[str]) -> RefetchResult:
        """Re-fetch the records hooks named, each once, up to ``REFETCH_CONCURRENCY`` at a time, and write
        them ``REFETCH_WRITE_CHUNK`` to a transaction (each chunk one upsert, resolved together).

        A record the provider no longer has is marked deleted. A record whose fetch or mapping fails
        (``ConnectorError``, or ``ValueError``/``KeyError`` from a malformed body) is left out and its error
        is returned in ``errors``; the others are still written. Each fetch reads the record as it is now,
        so several hooks about one record need one fetch, and a late hook never writes an older state."""
        conn = self.connections.get_any(connection_id)
        connector = await self.connections.connector(conn)
        gate = asyncio.Semaphore(REFETCH_CONCURRENCY)

        async def fetch(remote_id: str) -> tuple[str, AnyRecord | Exception | None]:
            async with gate:
                try:
                    item = await connector.get_record(stream, remote_id)
                    return remote_id, None if item is None else map_record(connector, stream, item)
                except (ConnectorError, ValueError, KeyError) as exc:
                    return remote_id, exc

        result = RefetchResult()
        records: list[AnyRecord] = []
        gone: list[str] = []
        for remote_id, got in await asyncio.gather(*(fetch(r) for r in dict.fromkeys(remote_ids))):
            if isinstance(got, Exception):
                result.errors[remote_id] = got
            elif got is None:
                gone.append(remote_id)
            else:
                records.append(got)
        model = STREAM_MODELS[stream]
        if gone:
            with self.db.session() as s:
                marked = s.execute(update(model).where(model.connection_id == connection_id,
                                                       model.remote_id.in_(gone), model.deleted_at.is_(None))
                                   .values(deleted_at=utcnow(), version=model.version + 1)
                                   .returning(model.id)
                                   .execution_options(synchronize_session=False)).scalars().all()
                if stream == "contacts" and marked:  # their open conflicts offer values no source holds now
                    self.crm.dismiss_for_deleted_sources(
                        s.connection(), conn.vendor_id,
                        "source deleted: the provider answered 404 when a hook's re-fetch asked for the record",
                        source_client_ids=marked)
            result.deleted = len(marked)
            result.absent = len(gone) - len(marked)
        # Short transactions: on SQLite a write holds the database's only write lock, and the webhook
        # intake commits its batches between these chunks instead of waiting for the whole batch.
        def write(chunk: Sequence[AnyRecord]) -> tuple[int, int, int]:
            with self.db.session() as s:
                return self.upsert(s, conn.vendor_id, connection_id, stream, chunk)

        for start in range(0, len(records), REFETCH_WRITE_CHUNK):
            chunk = records[start:start + REFETCH_WRITE_CHUNK]
            created, updated, unchanged = once_more_on_race(functools.partial(write, chunk))
            result.created += created
            result.updated += updated
            result.unchanged += unchanged
        count_sync_records(conn.provider, stream, created=result.created, updated=result.updated,
                           unchanged=result.unchanged, failed=len(result.errors))
        return result

    def _connector_class(self, conn: Connection) -> type:
        from wedsync.connectors.registry import get_connector_class

        return get_connector_class(conn.provider)
