"""Calendar service: sources and their sync, availability, bookings and holds behind an overlap guard,
imports from Calendly/Acuity, propagation of busy blocks, scheduling, conflicts and the availability report.

The overlap guard: every booking/hold write of a vendor is serialized (SQLite: the unit of work begins with
BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock per vendor) and checks, inside the same
transaction, active bookings and holds (expired holds are retired first) and busy time from the stored source
events; on PostgreSQL the exclusion constraint ``ex_calendar_bookings_overlap`` is the last word.

Propagation: the desired set of busy blocks (every active booking/hold and every busy instance of every
source, onto every other writable source, within the propagation horizon) is diffed against the
``calendar_blocks`` outbox; rows are committed before any provider call and pushed with ``put_block`` (idempotent
by ``block_uid``) or ``delete_block``. Events carrying ``X-WEDSYNC-BLOCK`` are our own blocks and never origins.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from wedsync.connectors.errors import ConnectorError, Retriable
from wedsync.domain import availability as av
from wedsync.domain import scheduling as sch
from wedsync.errors import Conflict, InvalidInput, NotFound, NotImplementedCapability
from wedsync.logging import get_logger
from wedsync.store.paging import cursor_row
from wedsync.store.tables import Vendor, new_id, utcnow
from wedsync.store.tables_calendar import (
    CalendarBlock,
    CalendarBooking,
    CalendarConflict,
    CalendarFeedToken,
    CalendarProfile,
    CalendarSource,
    CalendarSourceEvent,
)

log = get_logger("wedsync.calendar")

#: Every status of a booking or hold (``calendar_bookings.status``): what ``GET /api/calendar/bookings?status=``
#: filters by.
BOOKING_STATUSES = ("active", "cancelled", "expired", "conflict")

WRITABLE_KINDS = {"google-calendar", "microsoft-graph", "apple-caldav", "caldav"}
IMPORT_KINDS = {"calendly", "acuity"}  # their events are bookings: imported through the guard
PUSH_KINDS = {"google-calendar", "microsoft-graph", "calendly", "acuity"}
FEED_KIND = "ical-feed"  # CAL-A's feed connector slug; "ics-feed" is accepted as an alias
FEED_ID_PREFIX = "feed:"  # a feed source's calendar_id: a fingerprint of its address (which is in the vault)


def feed_fingerprint(url: str) -> str:
    """What a feed source stores as ``calendar_id``: one per address and vendor, revealing nothing of it."""
    return FEED_ID_PREFIX + hashlib.sha256(url.strip().encode()).hexdigest()[:40]
SYNC_PAST = timedelta(days=31)
SYNC_FUTURE = timedelta(days=550)
PROPAGATION_HORIZON = timedelta(days=400)
MAX_BOOKING = timedelta(days=14)
STUCK_AFTER = timedelta(minutes=10)
SPAN_MARGIN = timedelta(days=60)
CLAIM_TIMEOUT = timedelta(minutes=2)
BOOKING_KINDS = ("booking", "hold")


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} must carry a time zone offset", code="naive_datetime")
    if not 1971 <= value.year <= 2199:
        raise InvalidInput(f"{what} must be between 1971 and 2199", code="datetime_out_of_range")
    return value.astimezone(UTC)


def block_uid_for(origin_key: str, target_source_id: str) -> str:
    """Stable per (origin, target): a retried put finds the same event at the provider."""
    digest = hashlib.sha256(f"{origin_key}|{target_source_id}".encode()).hexdigest()[:32]
    return f"wsb-{digest}"


@dataclass
class BookingRequest:
    start: datetime
    end: datetime
    kind: str = "booking"
    resource: str = "default"
    title: str = ""
    channel: str = "api"
    external_ref: str | None = None
    expires_at: datetime | None = None
    meeting_type: str | None = None
    category: str | None = None
    location: str | None = None
    wedding_id: str | None = None
    contact_email: str | None = None
    check_calendars: bool = True


def booking_dict(b: CalendarBooking) -> dict[str, Any]:
    return {"id": b.id, "kind": b.kind, "status": b.status, "resource": b.resource,
            "start": b.start_at.isoformat(), "end": b.end_at.isoformat(),
            "expires_at": b.expires_at.isoformat() if b.expires_at else None, "channel": b.channel,
            "external_ref": b.external_ref, "title": b.title, "meeting_type": b.meeting_type,
            "category": b.category, "location": b.location, "wedding_id": b.wedding_id,
            "contact_email": b.contact_email, "created_at": b.created_at.isoformat(),
            "cancelled_at": b.cancelled_at.isoformat() if b.cancelled_at else None,
            "invitation_ics": b.invitation_ics}


def source_dict(s: CalendarSource, *, reveal: bool = False) -> dict[str, Any]:
    """A source as the API shows it; ``reveal`` (the sync's own use) keeps a feed's address."""
    calendar_id, name = s.calendar_id, s.name
    if s.kind == FEED_KIND and not reveal and not s.calendar_id.startswith(FEED_ID_PREFIX):
        # a feed source from before the address moved to the vault (until its next sync moves it): its address
        # is its credential, shown as scheme://host/… only
        from wedsync.connectors.channels.ical_feed import redacted_feed_url

        calendar_id = redacted_feed_url(s.calendar_id)
        if name == s.calendar_id[:200]:
            name = calendar_id
    return {"id": s.id, "kind": s.kind, "connection_id": s.connection_id, "calendar_id": calendar_id,
            "name": name, "writable": s.writable, "receive_blocks": s.receive_blocks, "rules": s.rules,
            "status": s.status, "last_synced_at": s.last_synced_at.isoformat() if s.last_synced_at else None,
            "last_attempt_at": s.last_attempt_at.isoformat() if s.last_attempt_at else None,
            "last_error": s.last_error, "poll_interval_s": s.poll_interval_s,
            "push": bool(s.watch), "incremental": s.sync_state is not None}


class CalendarService:
    """``hub.calendar``."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.db = hub.db
        # source id -> ((version, zone), span start, span end, busy intervals, warnings)
        self._spans: OrderedDict[str, tuple[tuple[int, str], datetime, datetime, list[av.BusyInterval], list[str]]] = \
            OrderedDict()
        # every input of a query (window, profile, source versions and freshness, bookings) -> its result
        self._results: OrderedDict[tuple[Any, ...], av.AvailabilityResult] = OrderedDict()
        self._cache_lock = threading.Lock()  # the API's thread pool and DBOS share this service
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sync_locks: dict[str, asyncio.Lock] = {}
        self._propagate_locks: dict[str, asyncio.Lock] = {}
        self.auto_propagate = True
        self._live: dict[tuple[str, int], Any] = {}

    async def aclose(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        self._tasks.clear()
        loop_id = id(asyncio.get_running_loop())
        for key in [k for k in self._live if k[1] == loop_id]:
            await self._live.pop(key).aclose()

    # -- profile -------------------------------------------------------------------------------------
    def _vendor(self, s: Session, vendor_id: str) -> Vendor:
        v = s.get(Vendor, vendor_id)
        if v is None:
            raise NotFound("vendor not found")
        return v

    def get_profile(self, vendor_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            v = self._vendor(s, vendor_id)
            p = s.get(CalendarProfile, vendor_id)
            return self._profile_dict(v, p)

    @staticmethod
    def _profile_dict(v: Vendor, p: CalendarProfile | None) -> dict[str, Any]:
        return {"timezone": v.timezone,
                "working_hours": p.working_hours if p else {},
                "buffer_before_min": p.buffer_before_min if p else 0,
                "buffer_after_min": p.buffer_after_min if p else 0,
                "travel_buffer_min": p.travel_buffer_min if p else 30,
                "capacity_max_per_day": p.capacity_max_per_day if p else None,
                "capacity_kinds": p.capacity_kinds if p else [],
                "stale_after_s": p.stale_after_s if p else 1800,
                "home_location": p.home_location if p else None}

    def set_profile(self, vendor_id: str, **values: Any) -> dict[str, Any]:
        if "working_hours" in values and values["working_hours"] is not None:
            try:
                av.WorkingHours.from_spec(values["working_hours"])
            except (ValueError, TypeError, AttributeError) as exc:
                raise InvalidInput(f"working_hours: {exc}", code="invalid_working_hours") from exc
        for key in ("buffer_before_min", "buffer_after_min", "travel_buffer_min"):
            if values.get(key) is not None and not 0 <= int(values[key]) <= 24 * 60:
                raise InvalidInput(f"{key} must be 0-1440", code="invalid_buffer")
        if values.get("stale_after_s") is not None and int(values["stale_after_s"]) < 30:
            raise InvalidInput("stale_after_s must be at least 30", code="invalid_staleness")
        with self.db.session() as s:
            v = self._vendor(s, vendor_id)
            p = s.get(CalendarProfile, vendor_id)
            if p is None:
                p = CalendarProfile(vendor_id=vendor_id, working_hours={}, capacity_kinds=[], buffer_before_min=0,
                                    buffer_after_min=0, travel_buffer_min=30, stale_after_s=1800)
                s.add(p)
            for key, value in values.items():
                if value is not None and hasattr(p, key):
                    setattr(p, key, value)
            s.flush()
            return self._profile_dict(v, p)

    # -- sources -------------------------------------------------------------------------------------
    def add_source(self, vendor_id: str, *, kind: str, calendar_id: str, connection_id: str | None = None,
                   name: str = "", writable: bool | None = None, receive_blocks: bool = True,
                   rules: dict[str, Any] | None = None, poll_interval_s: int | None = None) -> dict[str, Any]:
        rules = rules or {}
        if kind == "ics-feed":
            kind = FEED_KIND
        allowed = {f for f in av.SourceRules.__dataclass_fields__}
        bad = set(rules) - allowed
        if bad:
            raise InvalidInput(f"unknown rules {sorted(bad)}; allowed: {sorted(allowed)}", code="invalid_rules")
        if not calendar_id or len(calendar_id) > 1000:
            raise InvalidInput("calendar_id must be 1-1000 characters", code="invalid_calendar_id")
        feed_url: str | None = None
        if kind == FEED_KIND:
            if connection_id is not None:
                raise InvalidInput("a feed source is added by its URL, not a connection", code="invalid_source")
            self._check_feed_url(calendar_id)
            writable = False
            from wedsync.connectors.channels.ical_feed import redacted_feed_url

            feed_url, calendar_id = calendar_id.strip(), feed_fingerprint(calendar_id)
            name = name or redacted_feed_url(feed_url)
        else:
            if connection_id is None:
                raise InvalidInput("a calendar source needs connection_id (or kind 'ics-feed')", code="invalid_source")
            conn = self.hub.connections.get(vendor_id, connection_id)
            if conn.provider != kind:
                raise InvalidInput(f"connection {connection_id} is {conn.provider}, not {kind}", code="invalid_source")
            if writable is None:
                writable = kind in WRITABLE_KINDS
            if writable and kind not in WRITABLE_KINDS:
                raise InvalidInput(f"{kind} calendars cannot receive busy blocks", code="calendar_read_only")
        default_poll = 300 if kind == FEED_KIND else 10 if kind not in PUSH_KINDS else 120
        same = [calendar_id] if feed_url is None else [calendar_id, feed_url]  # (a feed stored the old way)
        with self.db.read() as s:
            self._vendor(s, vendor_id)
            existing = s.execute(select(CalendarSource.id).where(
                CalendarSource.vendor_id == vendor_id, CalendarSource.kind == kind,
                CalendarSource.calendar_id.in_(same))).scalar_one_or_none()
        if existing is not None:
            raise Conflict("this calendar is already a source", code="source_exists", details={"source_id": existing})
        if feed_url is not None:
            # the address is a credential: it lives in the vault, as an ical-feed connection of its own
            connection_id = self.hub.connections.create(vendor_id, FEED_KIND, credentials={"feed_url": feed_url}).id
        try:
            return self._insert_source(vendor_id, kind, calendar_id, connection_id, name, writable, receive_blocks,
                                       rules, poll_interval_s or default_poll)
        except BaseException:
            if feed_url is not None and connection_id is not None:
                self.hub.connections.delete(vendor_id, connection_id)
            raise

    def _insert_source(self, vendor_id: str, kind: str, calendar_id: str, connection_id: str | None, name: str,
                       writable: bool | None, receive_blocks: bool, rules: dict[str, Any], poll_interval_s: int
                       ) -> dict[str, Any]:
        with self.db.session() as s:
            src = CalendarSource(id=new_id(), vendor_id=vendor_id, connection_id=connection_id, kind=kind,
                                 calendar_id=calendar_id, name=(name or calendar_id)[:200],
                                 writable=bool(writable),
                                 receive_blocks=receive_blocks, rules=rules, watch={}, version=0, status="new",
                                 poll_interval_s=poll_interval_s, created_at=utcnow())
            s.add(src)
            s.flush()
            out = source_dict(src)
        self._ensure_polling()
        return out

    @staticmethod
    def _ensure_polling() -> None:
        try:
            from wedsync.workflows.calendar import ensure_poll_schedule

            ensure_poll_schedule()
        except Exception as exc:  # no workflow runtime here: the worker process installs it
            log.info("calendar poll schedule not installed here", error_type=type(exc).__name__)

    def _check_feed_url(self, url: str) -> None:
        if not url.lower().startswith(("https://", "http://", "webcal://")):
            raise InvalidInput("a feed URL must be http(s) or webcal", code="invalid_feed_url")

    def list_sources(self, vendor_id: str, *, limit: int | None = None, after: str | None = None
                     ) -> list[dict[str, Any]]:
        """By id; ``after`` is the last id of the previous page, ``limit`` None: all of them."""
        q = select(CalendarSource).where(CalendarSource.vendor_id == vendor_id)
        with self.db.read() as s:
            if after:
                cursor_row(s, CalendarSource, after, CalendarSource.vendor_id == vendor_id)
                q = q.where(CalendarSource.id > after)
            return [source_dict(r) for r in s.execute(q.order_by(CalendarSource.id).limit(limit)).scalars()]

    def _source(self, s: Session, vendor_id: str | None, source_id: str) -> CalendarSource:
        src = s.get(CalendarSource, source_id)
        if src is None or (vendor_id is not None and src.vendor_id != vendor_id):
            raise NotFound("calendar source not found", code="unknown_source")
        return src

    def get_source(self, vendor_id: str | None, source_id: str, *, reveal: bool = False) -> dict[str, Any]:
        with self.db.read() as s:
            return source_dict(self._source(s, vendor_id, source_id), reveal=reveal)

    def delete_source(self, vendor_id: str, source_id: str) -> None:
        with self.db.session() as s:
            src = self._source(s, vendor_id, source_id)
            s.execute(update(CalendarBlock).where(CalendarBlock.origin_key.like(f"event:{source_id}:%"))
                      .values(desired="absent", state="pending"))
            feed_connection = src.connection_id if src.kind == FEED_KIND else None
            s.delete(src)
        if feed_connection is not None:  # the feed's own connection (its address in the vault) goes with it
            with contextlib.suppress(NotFound):
                self.hub.connections.delete(vendor_id, feed_connection)

    def store_changes(self, source_id: str, changes: Sequence[Any], *, run_token: str | None = None) -> dict[str, int]:
        """Upsert/delete one page of ``SourceChange``s (ical None = deleted). Unusable iCalendar is refused
        item by item and recorded on the source (which then fails closed until a clean sync)."""
        created = updated = deleted = rejected = 0
        relevant = False
        errors: list[str] = []
        with self.db.session() as s:
            src = self._source(s, None, source_id)
            ids = [c.remote_id for c in changes]
            existing = {e.remote_id: e for e in s.execute(select(CalendarSourceEvent).where(
                CalendarSourceEvent.source_id == source_id, CalendarSourceEvent.remote_id.in_(ids))).scalars()} \
                if ids else {}
            for c in changes:
                row = existing.get(c.remote_id)
                if c.ical is None:
                    if row is not None:
                        s.delete(row)
                        deleted += 1
                        relevant = relevant or not row.own_block
                    continue
                try:
                    cal = av.parse_calendar(c.ical)
                except av.CalendarDataError as exc:
                    rejected += 1
                    errors.append(f"{c.remote_id}: {exc}")
                    continue
                own = any(ev.get(av.OWN_BLOCK_MARKER) is not None for ev in cal.walk("VEVENT"))
                if row is None:
                    row = CalendarSourceEvent(id=new_id(), vendor_id=src.vendor_id, source_id=source_id,
                                              remote_id=c.remote_id[:500], ical=c.ical, etag=c.etag, own_block=own,
                                              seen_run=run_token, updated_at=utcnow())
                    s.add(row)
                    existing[c.remote_id] = row
                    created += 1
                    relevant = relevant or not own
                else:
                    if row.ical != c.ical:
                        updated += 1
                        relevant = relevant or not (own and row.own_block)
                    row.ical, row.etag, row.own_block = c.ical, c.etag, own
                    row.seen_run = run_token or row.seen_run
            if relevant:  # our own blocks coming back do not change availability: caches stay valid
                src.version += 1
            if errors:
                src.last_error = ("unusable calendar data: " + "; ".join(errors))[:2000]
        return {"created": created, "updated": updated, "deleted": deleted, "rejected": rejected}

    # -- sync ----------------------------------------------------------------------------------------
    def begin_sync(self, source_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            src = self._source(s, None, source_id)
            src.last_attempt_at = utcnow()
            src.status = "syncing"  # the last error (if any) stays until a clean run: fail closed
            return {"source_id": src.id, "vendor_id": src.vendor_id, "kind": src.kind,
                    "sync_state": src.sync_state, "run_token": new_id()}

    async def _connector(self, src: dict[str, Any] | CalendarSource) -> Any:
        """The live connector of a source's connection. Credential-field providers (CalDAV, Calendly, Acuity)
        come from the connection service; OAuth providers (Google, Graph) get an ``OAuth2Auth`` over the
        vault's token (refreshed and rotated in place), or a static ``access_token`` (sandboxes)."""
        conn_id = src["connection_id"] if isinstance(src, dict) else src.connection_id
        if conn_id is None:
            raise NotImplementedCapability("this source has no connection", code="source_without_connection")
        conn = self.hub.connections.get_any(conn_id)
        from wedsync.connectors.registry import get_connector_class

        cls: Any = get_connector_class(conn.provider)
        if cls.credential_fields or getattr(cls, "oauth", None) is None:
            return await self.hub.connections.connector(conn)
        key = (conn.id, id(asyncio.get_running_loop()))
        cached = self._live.get(key)
        if cached is not None:
            return cached
        creds = self.hub.connections.credentials(conn)
        if isinstance(creds.get("access_token"), str) and "oauth_token" not in creds:
            inst = cls(access_token=creds["access_token"], base_url=conn.base_url, account_key=conn.id,
                       timeout=self.hub.settings.http_timeout)
        else:
            auth = self.hub.oauth.client(conn.provider).auth(self.hub.oauth.token_store(conn.vendor_id, conn.id))
            inst = cls(auth=auth, base_url=conn.base_url, account_key=conn.id, timeout=self.hub.settings.http_timeout)
        self._live[key] = inst
        return inst

    async def fetch_page(self, plan: dict[str, Any], page: str | None) -> dict[str, Any]:
        """One provider page, stored; returns {"next_page", "sync_state", "full", counts}."""
        src = self.get_source(None, plan["source_id"], reveal=True)
        now = utcnow()
        window_start, window_end = now - SYNC_PAST, now + SYNC_FUTURE
        full = plan.get("sync_state") is None
        if src["kind"] == FEED_KIND:
            changes, next_page, state = await self._fetch_feed(src)
            full = True
        else:
            connector = await self._connector(src)
            from wedsync.connectors.calendars.base import SyncStateExpired

            try:
                result = await connector.list_changes(src["calendar_id"], plan.get("sync_state"), page,
                                                      window_start, window_end)
            except SyncStateExpired:
                return {"expired": True}
            changes, next_page, state = result.changes, result.next_page, result.sync_state
        counts = self.store_changes(plan["source_id"], changes, run_token=plan["run_token"] if full else None)
        return {"next_page": next_page, "sync_state": state, "full": full, **counts, "items": len(changes)}

    def finish_sync(self, plan: dict[str, Any], sync_state: str | None, full: bool, rejected: int = 0
                    ) -> dict[str, Any]:
        """Record success: the new sync state, freshness, and (full listings) delete what was not listed. Items
        with unusable iCalendar (``rejected``) keep the source in error, so its time stays blocked."""
        return self._finish(plan, sync_state, full, rejected)

    async def _fetch_feed(self, src: dict[str, Any]) -> tuple[list[Any], None, str]:
        try:
            ical_feed = importlib.import_module("wedsync.connectors.channels.ical_feed")  # CAL-A: SSRF guard
        except ImportError as exc:
            raise NotImplementedCapability("iCalendar feed import is not available in this build",
                                           code="feed_import_unavailable") from exc
        fetch = getattr(ical_feed, "fetch_feed_changes", None)
        if fetch is None:
            raise NotImplementedCapability("iCalendar feed import has no fetch_feed_changes()",
                                           code="feed_import_unavailable")
        changes = await fetch(self._feed_url(src), allow_private=self.hub.settings.allow_private_urls)
        return list(changes), None, utcnow().isoformat()

    def _feed_url(self, src: dict[str, Any]) -> str:
        """A feed source's address, from the vault. A source stored the old way (its address as
        ``calendar_id``) is moved to the vault first."""
        if src["connection_id"] is not None:
            conn = self.hub.connections.get_any(src["connection_id"])
            return str(self.hub.connections.credentials(conn)["feed_url"])
        url = str(src["calendar_id"])
        with self.db.read() as s:
            vendor_id = self._source(s, None, src["id"]).vendor_id
        conn = self.hub.connections.create(vendor_id, FEED_KIND, credentials={"feed_url": url})
        with self.db.session() as s:
            row = self._source(s, None, src["id"])
            row.connection_id, row.calendar_id = conn.id, feed_fingerprint(url)
            if row.name == url[:200]:
                from wedsync.connectors.channels.ical_feed import redacted_feed_url

                row.name = redacted_feed_url(url)
        return url

    def _finish(self, plan: dict[str, Any], sync_state: str | None, full: bool, rejected: int) -> dict[str, Any]:
        with self.db.session() as s:
            src = self._source(s, None, plan["source_id"])
            removed = 0
            if full:
                removed = s.execute(delete(CalendarSourceEvent).where(
                    CalendarSourceEvent.source_id == src.id,
                    (CalendarSourceEvent.seen_run != plan["run_token"]) | CalendarSourceEvent.seen_run.is_(None),
                )).rowcount or 0
                if removed:
                    src.version += 1
            src.sync_state = sync_state
            src.last_synced_at = utcnow()
            if rejected:
                src.status = "error"
            else:
                src.status, src.last_error = "ok", None
            kind, vendor_id = src.kind, src.vendor_id
        if kind in IMPORT_KINDS:
            self.import_source_bookings(plan["source_id"])
        return {"removed": removed, "vendor_id": vendor_id}

    def fail_sync(self, source_id: str, message: str) -> None:
        """A provider outage: the source keeps its data but is marked failed, so it fails closed."""
        with self.db.session() as s:
            src = s.get(CalendarSource, source_id)
            if src is not None:
                src.status = "error"
                src.last_error = message[:2000]
                src.last_attempt_at = utcnow()

    def reset_sync_state(self, source_id: str) -> None:
        with self.db.session() as s:
            src = self._source(s, None, source_id)
            src.sync_state = None

    async def sync_source(self, source_id: str) -> dict[str, Any]:
        """A whole sync run in this process (the DBOS workflow runs the same steps, one per page)."""
        # asyncio locks belong to one loop (API, DBOS and tests run their own): one lock per source and loop;
        # across loops, sources_due() never starts a second listing of a source that is syncing
        lock = self._sync_locks.setdefault(f"{source_id}:{id(asyncio.get_running_loop())}", asyncio.Lock())
        async with lock:
            plan = self.begin_sync(source_id)
            totals = {"pages": 0, "items": 0, "created": 0, "updated": 0, "deleted": 0, "rejected": 0}
            page: str | None = None
            try:
                for _ in range(10_000):
                    res = await self.fetch_page(plan, page)
                    if res.get("expired"):
                        self.reset_sync_state(source_id)
                        plan["sync_state"], page = None, None
                        continue
                    totals["pages"] += 1
                    for k in ("items", "created", "updated", "deleted", "rejected"):
                        totals[k] += res[k]
                    page = res["next_page"]
                    if page is None:
                        fin = self.finish_sync(plan, res["sync_state"], res["full"], totals["rejected"])
                        totals["deleted"] += fin["removed"]
                        break
            except (ConnectorError, NotImplementedCapability) as exc:
                self.fail_sync(source_id, f"{type(exc).__name__}: {exc}")
                return {"status": "failed", "error": str(exc), **totals}
        if self.auto_propagate:
            await self.propagate(plan["vendor_id"])
        return {"status": "ok", **totals}

    async def watch_source(self, source_id: str, *, ttl: timedelta = timedelta(days=7)) -> dict[str, Any]:
        """Open a push channel (Google channel / Graph subscription) to /webhooks/{provider}/{connection};
        the channel token is the connection's webhook secret, which the intake verifies."""
        from wedsync.connectors.calendars.base import WatchChannel
        from wedsync.services.connections import WEBHOOK_SECRET
        from wedsync.services.subscriptions import webhook_url

        src = self.get_source(None, source_id, reveal=True)
        connector = await self._connector(src)
        if not getattr(connector, "supports_push", False):
            raise NotImplementedCapability(f"{src['kind']} has no push channel: it is polled every "
                                           f"{src['poll_interval_s']} s", code="calendar_no_push")
        conn = self.hub.connections.get_any(src["connection_id"])
        secret = str(self.hub.connections.credentials(conn).get(WEBHOOK_SECRET, ""))
        address = webhook_url(self.hub.settings.public_url, conn.provider, conn.id)
        max_ttl = getattr(connector, "max_watch_ttl", None) or ttl
        old = src.get("push")
        channel: WatchChannel = await connector.watch(src["calendar_id"], address, secret, min(ttl, max_ttl))
        with self.db.session() as s:
            row = self._source(s, None, source_id)
            previous = dict(row.watch or {})
            row.watch = {"id": channel.id, "resource_id": channel.resource_id,
                         "expires_at": channel.expires_at.isoformat(), "calendar_id": channel.calendar_id,
                         "address": channel.address, "extra": channel.extra}
            row.poll_interval_s = max(row.poll_interval_s, 900)  # push covers it; polling is the safety net
        if old and previous.get("id") and previous.get("id") != channel.id:
            await self._stop_channel(connector, previous, secret)
        return {"channel_id": channel.id, "expires_at": channel.expires_at.isoformat(), "address": address}

    async def _stop_channel(self, connector: Any, watch: dict[str, Any], secret: str) -> None:
        from wedsync.connectors.calendars.base import WatchChannel

        try:
            await connector.stop_watch(WatchChannel(watch["id"], watch["resource_id"],
                                                    datetime.fromisoformat(watch["expires_at"]),
                                                    watch["calendar_id"], watch["address"], secret,
                                                    watch.get("extra") or {}))
        except (ConnectorError, NotImplementedCapability) as exc:
            log.info("old push channel not stopped", error_type=type(exc).__name__)

    async def renew_watches(self, *, margin: timedelta = timedelta(hours=12)) -> int:
        """Renew every push channel that expires within ``margin`` (before expiry, never after)."""
        now = utcnow()
        with self.db.read() as s:
            rows = [(r.id, dict(r.watch)) for r in s.execute(select(CalendarSource)).scalars() if r.watch]
        renewed = 0
        for source_id, watch in rows:
            try:
                expires = datetime.fromisoformat(watch["expires_at"])
            except (KeyError, ValueError):
                continue
            if expires - margin > now:
                continue
            try:
                await self.watch_source(source_id)
                renewed += 1
            except (ConnectorError, NotImplementedCapability) as exc:
                self.fail_sync(source_id, f"push channel renewal failed: {type(exc).__name__}: {exc}")
        return renewed

    def sources_due(self, now: datetime | None = None) -> list[str]:
        """Sources whose polling interval has passed (push sources too, as a safety net, at their interval)."""
        now = now or utcnow()
        with self.db.read() as s:
            rows = s.execute(select(CalendarSource.id, CalendarSource.last_attempt_at, CalendarSource.status,
                                    CalendarSource.poll_interval_s)).all()
        out = []
        for r in rows:
            if r.status == "syncing" and r.last_attempt_at is not None and now - r.last_attempt_at < STUCK_AFTER:
                continue  # a run is in progress: never two listings of one source at once
            if r.last_attempt_at is None or now - r.last_attempt_at >= timedelta(seconds=r.poll_interval_s):
                out.append(r.id)
        return out

    def sources_of_connection(self, connection_id: str) -> list[str]:
        with self.db.read() as s:
            return list(s.execute(select(CalendarSource.id).where(
                CalendarSource.connection_id == connection_id)).scalars())

    # -- availability --------------------------------------------------------------------------------
    def _inputs(self, s: Session, vendor_id: str, *, stale_after: timedelta) -> list[av.SourceInput]:
        sources = list(s.execute(select(CalendarSource).where(CalendarSource.vendor_id == vendor_id)
                                 .order_by(CalendarSource.id)).scalars())
        out = []
        for src in sources:
            rules = av.SourceRules(**{**src.rules, "ignore_own_blocks": True})
            # a Calendly/Acuity event is an imported booking: it counts once, as the booking
            texts: Sequence[str] = [] if src.kind in IMPORT_KINDS else _LazyTexts(self, src.id)
            out.append(av.SourceInput(src.id, src.name, texts, rules=rules,
                                      last_synced_at=src.last_synced_at, max_age=stale_after,
                                      error=src.last_error or None))
            out[-1].version = src.version  # type: ignore[attr-defined]
        return out

    def _texts(self, source_id: str) -> list[str]:
        with self.db.read() as s:
            return list(s.execute(select(CalendarSourceEvent.ical).where(
                CalendarSourceEvent.source_id == source_id, CalendarSourceEvent.own_block.is_(False))).scalars())

    def _bookings_busy(self, s: Session, vendor_id: str, start: datetime, end: datetime, now: datetime,
                       resource: str | None = None) -> list[av.BusyInterval]:
        q = select(CalendarBooking).where(CalendarBooking.vendor_id == vendor_id, CalendarBooking.status == "active",
                                          CalendarBooking.start_at < end, CalendarBooking.end_at > start)
        if resource is not None:
            q = q.where(CalendarBooking.resource == resource)
        out = []
        for b in s.execute(q).scalars():
            if b.kind == "hold" and b.expires_at is not None and b.expires_at <= now:
                continue
            out.append(av.BusyInterval(b.start_at, b.end_at, "bookings", uid=b.id, summary=b.title,
                                       kind=b.category or b.kind, location=b.location or "", ref=b.id))
        return out

    def _query(self, s: Session, vendor_id: str, start: datetime, end: datetime, now: datetime,
               use_working_hours: bool = True) -> tuple[av.AvailabilityQuery, dict[str, Any]]:
        v = self._vendor(s, vendor_id)
        prof = self._profile_dict(v, s.get(CalendarProfile, vendor_id))
        wh = av.WorkingHours.from_spec(prof["working_hours"]) if prof["working_hours"] and use_working_hours else None
        cap = av.DayCapacity(prof["capacity_max_per_day"], frozenset(prof["capacity_kinds"] or ["wedding"])) \
            if prof["capacity_max_per_day"] else None
        q = av.AvailabilityQuery(start, end, v.timezone, working_hours=wh,
                                 buffer_before=timedelta(minutes=prof["buffer_before_min"]),
                                 buffer_after=timedelta(minutes=prof["buffer_after_min"]), capacity=cap, now=now)
        return q, prof

    def _expand(self, inputs: Sequence[av.SourceInput], ws: datetime, we: datetime, zone: str
                ) -> tuple[dict[str, list[av.BusyInterval]], list[str]]:
        """Per-source busy intervals for [ws, we), from a cache that holds each source's expansion over a wide
        span (a month back to 400 days ahead, widened to cover the request) keyed by the source's version: any
        window inside the span is a filter, not a re-expansion. Sources whose data is unusable are left out (the
        engine then reports them unusable and fails closed)."""
        now = utcnow()
        canon_a, canon_b = now - SYNC_PAST, now + PROPAGATION_HORIZON
        out: dict[str, list[av.BusyInterval]] = {}
        warnings: list[str] = []
        for src in inputs:
            version = getattr(src, "version", 0)
            with self._cache_lock:
                entry = self._spans.get(src.source_id)
            if entry is None or entry[0] != (version, zone) or not (entry[1] <= ws and we <= entry[2]):
                if we > canon_a - timedelta(days=366) and ws < canon_b + timedelta(days=366):
                    # a margin beyond the request: windows that slide a little stay inside the span
                    a, b = min(ws - SPAN_MARGIN, canon_a), max(we + SPAN_MARGIN, canon_b)
                else:  # far from today: expand just what was asked
                    a, b = ws, we
                found: list[str] = []
                try:
                    items = av.expand_source(src, a, b, av.vendor_zone(zone), found)
                except av.CalendarDataError:
                    continue
                entry = ((version, zone), a, b, items, found)
                with self._cache_lock:
                    self._spans[src.source_id] = entry
                    while len(self._spans) > 2048:
                        self._spans.popitem(last=False)
            out[src.source_id] = [it for it in entry[3] if it.end > ws and it.start < we]
            warnings.extend(entry[4])
        return out, warnings

    def _compute(self, inputs: Sequence[av.SourceInput], q: av.AvailabilityQuery,
                 extra: Sequence[av.BusyInterval] = ()) -> av.AvailabilityResult:
        ws, we = q.window_start.astimezone(UTC), q.window_end.astimezone(UTC)
        cache, warnings = self._expand(inputs, ws, we, q.timezone)
        result = av.compute_availability(inputs, q, extra, expanded=cache)
        result.warnings = sorted(set(warnings + result.warnings))
        return result

    def availability(self, vendor_id: str, start: datetime, end: datetime, *, now: datetime | None = None,
                     use_working_hours: bool = True, resource: str | None = None) -> av.AvailabilityResult:
        start, end = _aware(start, "start"), _aware(end, "end")
        if end <= start:
            raise InvalidInput("end must be after start", code="invalid_window")
        if end - start > timedelta(days=731):
            raise InvalidInput("the window is at most 2 years", code="window_too_long")
        now = now or utcnow()
        with self.db.read() as s:
            q, prof = self._query(s, vendor_id, start, end, now, use_working_hours)
            inputs = self._inputs(s, vendor_id, stale_after=timedelta(seconds=prof["stale_after_s"]))
            extra = self._bookings_busy(s, vendor_id, start, end, now, resource)
        now_q = q.now or now
        fingerprint = (
            vendor_id, start, end, use_working_hours, resource, repr(prof),
            tuple((i.source_id, getattr(i, "version", 0), i.last_synced_at, i.error,
                   av.source_freshness(i, now_q)[0]) for i in inputs),
            tuple((b.ref, b.start, b.end, b.kind) for b in extra),
        )
        with self._cache_lock:
            hit = self._results.get(fingerprint)
            if hit is not None:
                self._results.move_to_end(fingerprint)
                return hit
        result = self._compute(inputs, q, extra)
        with self._cache_lock:
            self._results[fingerprint] = result
            while len(self._results) > 64:
                self._results.popitem(last=False)
        return result

    def _prewarm(self, vendor_id: str, start: datetime, end: datetime) -> None:
        """Expand the vendor's sources before the booking transaction takes its lock (on SQLite the write lock
        is database-wide): inside it, the calendar check is then a cache lookup."""
        with self.db.read() as s:
            vendor = s.get(Vendor, vendor_id)
            if vendor is None:
                return
            inputs = self._inputs(s, vendor_id, stale_after=timedelta(days=3650))
        if inputs:
            self._expand(inputs, start, end, vendor.timezone)

    # -- bookings and holds --------------------------------------------------------------------------
    def _lock_vendor(self, s: Session, vendor_id: str) -> None:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(select(func.pg_advisory_xact_lock(func.hashtext("calendar:" + vendor_id))))
        # SQLite: this unit of work began with BEGIN IMMEDIATE, so writers are already serialized

    def _validate(self, req: BookingRequest, now: datetime) -> None:
        req.start, req.end = _aware(req.start, "start"), _aware(req.end, "end")
        if req.end <= req.start:
            raise InvalidInput("end must be after start", code="invalid_booking_times")
        if req.end - req.start > MAX_BOOKING:
            raise InvalidInput("a booking lasts at most 14 days", code="booking_too_long")
        if req.kind not in BOOKING_KINDS:
            raise InvalidInput(f"kind must be one of {BOOKING_KINDS}", code="invalid_booking_kind")
        if req.kind == "hold":
            if req.expires_at is None:
                raise InvalidInput("a hold needs expires_at", code="hold_without_expiry")
            req.expires_at = _aware(req.expires_at, "expires_at")
            if req.expires_at <= now:
                raise InvalidInput("expires_at is in the past", code="hold_already_expired")
        elif req.expires_at is not None:
            raise InvalidInput("only holds expire", code="booking_with_expiry")
        if not req.resource or len(req.resource) > 64:
            raise InvalidInput("resource must be 1-64 characters", code="invalid_resource")
        if len(req.title) > 300:
            raise InvalidInput("title is at most 300 characters", code="invalid_title")

    def _guard(self, s: Session, vendor_id: str, req: BookingRequest, now: datetime,
               *, exclude_id: str | None = None) -> None:
        """Raise Conflict when ``req`` overlaps anything that blocks it; call inside the locked unit of work."""
        s.execute(update(CalendarBooking).where(
            CalendarBooking.vendor_id == vendor_id, CalendarBooking.resource == req.resource,
            CalendarBooking.status == "active", CalendarBooking.kind == "hold",
            CalendarBooking.expires_at <= now).values(status="expired"))
        clash_q = select(CalendarBooking).where(
            CalendarBooking.vendor_id == vendor_id, CalendarBooking.resource == req.resource,
            CalendarBooking.status == "active", CalendarBooking.start_at < req.end,
            CalendarBooking.end_at > req.start)
        if exclude_id:
            clash_q = clash_q.where(CalendarBooking.id != exclude_id)
        clash = s.execute(clash_q.limit(1)).scalar_one_or_none()
        if clash is not None:
            raise Conflict(f"the time overlaps {clash.kind} {clash.id}", code="booking_overlap",
                           details={"conflicting_id": clash.id, "conflicting_kind": clash.kind,
                                    "start": clash.start_at.isoformat(), "end": clash.end_at.isoformat()})
        q, prof = self._query(s, vendor_id, req.start, req.end, now, use_working_hours=False)
        if q.capacity is not None and req.category in q.capacity.kinds:
            zone = ZoneInfo(q.timezone)
            for day in av.local_days(req.start, req.end, zone):
                a = datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)
                b = a + timedelta(days=1)
                count = s.execute(select(func.count()).select_from(CalendarBooking).where(
                    CalendarBooking.vendor_id == vendor_id, CalendarBooking.status == "active",
                    CalendarBooking.category == req.category, CalendarBooking.start_at < b,
                    CalendarBooking.end_at > a)).scalar_one()
                if count >= q.capacity.max_per_day:
                    raise Conflict(f"{day} already has {count} {req.category} booking(s)", code="day_capacity_reached",
                                   details={"date": day.isoformat()})
        if not req.check_calendars:
            return
        inputs = self._inputs(s, vendor_id, stale_after=timedelta(seconds=prof["stale_after_s"]))
        if not inputs:
            return
        q.buffer_before = q.buffer_after = timedelta(0)
        q.capacity = None
        result = self._compute(inputs, q)
        for item in result.busy:
            if item.start < req.end and req.start < item.end:
                if item.kind == "stale":
                    raise Conflict(f"calendar {item.summary}: availability unknown, so the time is not offered",
                                   code="calendar_unavailable", details={"source_id": item.source_id})
                raise Conflict("the time is busy in a connected calendar", code="calendar_busy",
                               details={"source_id": item.source_id, "uid": item.uid, "summary": item.summary,
                                        "start": item.start.isoformat(), "end": item.end.isoformat()})

    def create_booking(self, vendor_id: str, req: BookingRequest, *, now: datetime | None = None) -> dict[str, Any]:
        """Insert a booking or hold through the overlap guard; Conflict (409) with a code when it clashes."""
        now = now or utcnow()
        self._validate(req, now)
        if req.check_calendars:
            self._prewarm(vendor_id, req.start, req.end)
        try:
            with self.db.session() as s:
                self._vendor(s, vendor_id)
                self._lock_vendor(s, vendor_id)
                if req.external_ref:
                    prior = s.execute(select(CalendarBooking).where(
                        CalendarBooking.vendor_id == vendor_id, CalendarBooking.channel == req.channel,
                        CalendarBooking.external_ref == req.external_ref)).scalar_one_or_none()
                    if prior is not None:
                        return {**booking_dict(prior), "replayed": True}
                self._guard(s, vendor_id, req, now)
                row = CalendarBooking(
                    id=new_id(), vendor_id=vendor_id, resource=req.resource, kind=req.kind, status="active",
                    start_at=req.start, end_at=req.end, expires_at=req.expires_at, channel=req.channel,
                    external_ref=req.external_ref, title=req.title, meeting_type=req.meeting_type,
                    category=req.category, location=req.location, wedding_id=req.wedding_id,
                    contact_email=req.contact_email, created_at=now)
                s.add(row)
                s.flush()
                out = booking_dict(row)
        except IntegrityError as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if sqlstate == "23P01":  # exclusion_violation: another transaction won the slot
                raise Conflict("the time overlaps another booking", code="booking_overlap") from None
            raise Conflict("a booking with this external reference exists", code="booking_exists") from None
        self._after_change(vendor_id)
        return out

    def import_booking(self, vendor_id: str, req: BookingRequest, *, cancelled: bool = False,
                       now: datetime | None = None) -> dict[str, Any]:
        """A booking made on Calendly/Acuity: through the same guard; a clash is recorded as a conflict
        (the booking row is kept with status 'conflict'), never dropped. Idempotent by external_ref."""
        now = now or utcnow()
        if not req.external_ref:
            raise InvalidInput("an imported booking needs external_ref", code="missing_external_ref")
        with self.db.read() as s:
            prior = s.execute(select(CalendarBooking).where(
                CalendarBooking.vendor_id == vendor_id, CalendarBooking.channel == req.channel,
                CalendarBooking.external_ref == req.external_ref)).scalar_one_or_none()
        if prior is not None:
            if cancelled:
                if prior.status in ("active", "conflict"):
                    return self.cancel_booking(vendor_id, prior.id)
                return booking_dict(prior)
            if prior.start_at == _aware(req.start, "start") and prior.end_at == _aware(req.end, "end"):
                return {**booking_dict(prior), "replayed": True}
            return self.reschedule_booking(vendor_id, prior.id, req.start, req.end, now=now)
        if cancelled:
            return {"status": "ignored", "reason": "cancelled before it was imported"}
        try:
            return self.create_booking(vendor_id, req, now=now)
        except Conflict as exc:
            if exc.code not in ("booking_overlap", "calendar_busy", "day_capacity_reached", "calendar_unavailable"):
                raise
            return self._record_import_conflict(vendor_id, req, exc, now)

    def _record_import_conflict(self, vendor_id: str, req: BookingRequest, exc: Conflict, now: datetime
                                ) -> dict[str, Any]:
        with self.db.session() as s:
            row = CalendarBooking(
                id=new_id(), vendor_id=vendor_id, resource=req.resource, kind=req.kind, status="conflict",
                start_at=req.start, end_at=req.end, channel=req.channel, external_ref=req.external_ref,
                title=req.title, meeting_type=req.meeting_type, category=req.category, location=req.location,
                wedding_id=req.wedding_id, contact_email=req.contact_email, created_at=now)
            s.add(row)
            conflict = CalendarConflict(id=new_id(), vendor_id=vendor_id, kind="import_overlap", booking_id=row.id,
                                        channel=req.channel, external_ref=req.external_ref, start_at=req.start,
                                        end_at=req.end, detail={"code": exc.code, "message": exc.message,
                                                                **(exc.details or {})}, created_at=now)
            s.add(conflict)
            s.flush()
            log.warning("imported booking conflicts", vendor_id=vendor_id, channel=req.channel, conflict=exc.code)
            return {**booking_dict(row), "conflict_id": conflict.id, "conflict_code": exc.code}

    def reschedule_booking(self, vendor_id: str, booking_id: str, start: datetime, end: datetime, *,
                           now: datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        with self.db.session() as s:
            self._lock_vendor(s, vendor_id)
            row = s.get(CalendarBooking, booking_id)
            if row is None or row.vendor_id != vendor_id:
                raise NotFound("booking not found", code="unknown_booking")
            req = BookingRequest(start=start, end=end, kind=row.kind, resource=row.resource, title=row.title,
                                 expires_at=row.expires_at if row.kind == "hold" else None, category=row.category,
                                 channel=row.channel)
            self._validate(req, now)
            self._guard(s, vendor_id, req, now, exclude_id=row.id)
            row.start_at, row.end_at, row.status = req.start, req.end, "active"
            s.flush()
            out = booking_dict(row)
        self._after_change(vendor_id)
        return out

    def cancel_booking(self, vendor_id: str, booking_id: str, *, now: datetime | None = None) -> dict[str, Any]:
        with self.db.session() as s:
            row = s.get(CalendarBooking, booking_id)
            if row is None or row.vendor_id != vendor_id:
                raise NotFound("booking not found", code="unknown_booking")
            if row.status in ("active", "conflict"):
                row.status = "cancelled"
                row.cancelled_at = now or utcnow()
                if row.invitation_ics:
                    row.invitation_ics = sch.invitation_ics(
                        uid=f"{row.id}@wedsync", start=row.start_at, end=row.end_at, summary=row.title,
                        organizer_email=None, attendee_email=row.contact_email, location=row.location or "",
                        sequence=1, method="CANCEL")
            out = booking_dict(row)
        self._after_change(vendor_id)
        return out

    def confirm_hold(self, vendor_id: str, booking_id: str, *, now: datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        with self.db.session() as s:
            self._lock_vendor(s, vendor_id)
            row = s.get(CalendarBooking, booking_id)
            if row is None or row.vendor_id != vendor_id:
                raise NotFound("booking not found", code="unknown_booking")
            if row.kind != "hold" or row.status != "active":
                raise Conflict("only an active hold can be confirmed", code="not_an_active_hold")
            if row.expires_at is not None and row.expires_at <= now:
                row.status = "expired"
                raise Conflict("the hold has expired", code="hold_expired")
            row.kind, row.expires_at = "booking", None
            out = booking_dict(row)
        return out

    def get_booking(self, vendor_id: str, booking_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            row = s.get(CalendarBooking, booking_id)
            if row is None or row.vendor_id != vendor_id:
                raise NotFound("booking not found", code="unknown_booking")
            return booking_dict(row)

    def list_bookings(self, vendor_id: str, *, start: datetime | None = None, end: datetime | None = None,
                      status: str | None = None, limit: int = 500, after: str | None = None
                      ) -> list[dict[str, Any]]:
        """By start time (then id); ``after`` is the last id of the previous page: the page goes on after that
        booking's place in this order (422 ``invalid_cursor`` when it is not one of the vendor's bookings);
        ``status`` one of ``BOOKING_STATUSES`` (else 422 ``invalid_status``, not an empty page)."""
        if status is not None and status not in BOOKING_STATUSES:
            raise InvalidInput(f"status must be one of {list(BOOKING_STATUSES)}", code="invalid_status")
        q = select(CalendarBooking).where(CalendarBooking.vendor_id == vendor_id)
        if start is not None:
            q = q.where(CalendarBooking.end_at > _aware(start, "start"))
        if end is not None:
            q = q.where(CalendarBooking.start_at < _aware(end, "end"))
        if status:
            q = q.where(CalendarBooking.status == status)
        with self.db.read() as s:
            if after:
                last = cursor_row(s, CalendarBooking, after, CalendarBooking.vendor_id == vendor_id)
                q = q.where(or_(CalendarBooking.start_at > last.start_at,
                                and_(CalendarBooking.start_at == last.start_at, CalendarBooking.id > last.id)))
            return [booking_dict(b) for b in s.execute(q.order_by(CalendarBooking.start_at, CalendarBooking.id)
                                                        .limit(limit)).scalars()]

    def import_source_bookings(self, source_id: str) -> dict[str, int]:
        """Calendly/Acuity sources: every stored event is a booking made there; import each through the guard
        (cancelled ones cancel the import). Runs after each sync of such a source."""
        with self.db.read() as s:
            src = self._source(s, None, source_id)
            vendor_id, channel = src.vendor_id, src.kind
            events = list(s.execute(select(CalendarSourceEvent).where(
                CalendarSourceEvent.source_id == source_id)).scalars())
            vendor = self._vendor(s, vendor_id)
        zone = ZoneInfo(vendor.timezone)
        seen = set()
        counts = {"imported": 0, "conflicts": 0, "cancelled": 0}
        now = utcnow()
        for ev_row in events:
            try:
                cal = av.parse_calendar(ev_row.ical)
            except av.CalendarDataError:
                continue
            for ev in cal.walk("VEVENT"):
                if ev.get("RECURRENCE-ID") is not None:
                    continue
                start = ev["DTSTART"].dt
                end = ev["DTEND"].dt if ev.get("DTEND") is not None else start + ev["DURATION"].dt \
                    if ev.get("DURATION") is not None else None
                if end is None or not isinstance(start, datetime):
                    continue
                start = start if start.tzinfo else start.replace(tzinfo=zone)
                end = end if end.tzinfo else end.replace(tzinfo=zone)
                ref = ev_row.remote_id
                seen.add(ref)
                cancelled = str(ev.get("STATUS", "")).upper() == "CANCELLED"
                req = BookingRequest(start=start, end=end, title=str(ev.get("SUMMARY", ""))[:300], channel=channel,
                                     external_ref=ref, location=str(ev.get("LOCATION", ""))[:300] or None,
                                     meeting_type="imported")
                res = self.import_booking(vendor_id, req, cancelled=cancelled, now=now)
                counts["conflicts"] += "conflict_id" in res
                counts["cancelled"] += res.get("status") == "cancelled"
                counts["imported"] += res.get("status") == "active"
        with self.db.read() as s:
            gone = list(s.execute(select(CalendarBooking.id).where(
                CalendarBooking.vendor_id == vendor_id, CalendarBooking.channel == channel,
                CalendarBooking.status == "active",
                # only inside the listed window: older bookings left the listing, they were not deleted
                CalendarBooking.end_at > now - SYNC_PAST + timedelta(days=1),
                CalendarBooking.start_at < now + SYNC_FUTURE - timedelta(days=1),
                CalendarBooking.external_ref.not_in(seen) if seen else CalendarBooking.id.is_not(None))).scalars())
        for bid in gone:  # deleted at the provider
            self.cancel_booking(vendor_id, bid)
            counts["cancelled"] += 1
        return counts

    def conflicts_recorded(self, vendor_id: str) -> list[dict[str, Any]]:
        with self.db.read() as s:
            rows = s.execute(select(CalendarConflict).where(CalendarConflict.vendor_id == vendor_id,
                                                            CalendarConflict.resolved_at.is_(None))
                             .order_by(CalendarConflict.id)).scalars()
            return [{"id": c.id, "kind": c.kind, "booking_id": c.booking_id, "channel": c.channel,
                     "external_ref": c.external_ref, "start": c.start_at.isoformat(), "end": c.end_at.isoformat(),
                     "detail": c.detail} for c in rows]

    # -- scheduling, conflicts, report ---------------------------------------------------------------
    def find_slots(self, vendor_id: str, request: sch.MeetingRequest, *, start: datetime, end: datetime,
                   step_min: int = 30, limit: int = 10, now: datetime | None = None) -> dict[str, Any]:
        result = self.availability(vendor_id, start, end, now=now)
        prof = self.get_profile(vendor_id)
        zone = ZoneInfo(prof["timezone"])
        slots = sch.find_slots(result.free, result.busy, request, zone, step=timedelta(minutes=step_min),
                               travel_buffer=timedelta(minutes=prof["travel_buffer_min"]), limit=limit)
        return {"slots": [x.as_dict() for x in slots], "complete": result.complete,
                "sources": [x.as_dict() for x in result.sources], "warnings": result.warnings}

    def schedule_meeting(self, vendor_id: str, request: sch.MeetingRequest, *, start: datetime, end: datetime,
                         title: str, contact_email: str | None, wedding_id: str | None = None,
                         organizer_email: str | None = None, slot_start: datetime | None = None,
                         now: datetime | None = None) -> dict[str, Any]:
        """Book the first free slot (or ``slot_start``) and store an iTIP METHOD:REQUEST invitation on it.
        Delivery: the invitation is returned and stored; no e-mail is sent (no SMTP in this hub)."""
        if slot_start is not None:
            candidates = [_aware(slot_start, "slot_start")]
        else:
            found = self.find_slots(vendor_id, request, start=start, end=end, limit=5, now=now)
            candidates = [datetime.fromisoformat(x["start"]) for x in found["slots"]]
        if not candidates:
            raise Conflict("no free slot for this request", code="no_slot_available")
        last: Conflict | None = None
        for cand in candidates:
            req = BookingRequest(start=cand, end=cand + request.duration, title=title,
                                 meeting_type=request.meeting_type, location=request.location or None,
                                 wedding_id=wedding_id, contact_email=contact_email, category=request.meeting_type)
            try:
                booking = self.create_booking(vendor_id, req, now=now)
            except Conflict as exc:
                last = exc
                continue
            ics = sch.invitation_ics(uid=f"{booking['id']}@wedsync", start=req.start, end=req.end, summary=title,
                                     organizer_email=organizer_email, attendee_email=contact_email,
                                     location=request.location, description=f"{request.meeting_type} via WedSync")
            with self.db.session() as s:
                row = s.get(CalendarBooking, booking["id"])
                assert row is not None
                row.invitation_ics = ics
            return {**booking, "invitation_ics": ics, "invitation_delivery": "returned and stored; not e-mailed"}
        assert last is not None
        raise last

    def _booking_views(self, vendor_id: str, start: datetime, end: datetime, now: datetime
                       ) -> list[sch.BookingView]:
        with self.db.read() as s:
            rows = s.execute(select(CalendarBooking).where(
                CalendarBooking.vendor_id == vendor_id, CalendarBooking.status == "active",
                CalendarBooking.start_at < end, CalendarBooking.end_at > start)).scalars()
            return [sch.BookingView(b.id, b.kind, b.start_at, b.end_at, b.title, b.channel, b.wedding_id,
                                    b.location or "", b.category, b.created_at, b.expires_at)
                    for b in rows if not (b.kind == "hold" and b.expires_at and b.expires_at <= now)]

    def detect_conflicts(self, vendor_id: str, start: datetime, end: datetime, *, now: datetime | None = None
                         ) -> dict[str, Any]:
        now = now or utcnow()
        result = self.availability(vendor_id, start, end, now=now, use_working_hours=False)
        bookings = self._booking_views(vendor_id, result.window_start, result.window_end, now)
        booking_ids = {b.id for b in bookings}
        external = [b for b in result.busy if b.ref not in booking_ids]
        prof = self.get_profile(vendor_id)
        out = sch.detect_conflicts(bookings, external, result.free,
                                   travel_buffer=timedelta(minutes=prof["travel_buffer_min"]),
                                   recorded=self.conflicts_recorded(vendor_id), now=now)
        out["sources"] = [x.as_dict() for x in result.sources]
        return out

    def report(self, vendor_id: str, start: datetime, end: datetime, *, now: datetime | None = None
               ) -> dict[str, Any]:
        now = now or utcnow()
        result = self.availability(vendor_id, start, end, now=now, use_working_hours=False)
        with self.db.read() as s:
            q, _ = self._query(s, vendor_id, result.window_start, result.window_end, now)
        zone = ZoneInfo(q.timezone)
        if q.working_hours is not None:
            opening: list[tuple[datetime, datetime]] = []
            for d in av.local_days(result.window_start, result.window_end, zone):
                opening.extend(q.working_hours.spans_on(d, zone))
            opening = [(max(a, result.window_start), min(b, result.window_end)) for a, b in opening
                       if b > result.window_start and a < result.window_end]
        else:
            opening = [(result.window_start, result.window_end)]
        bookings = self._booking_views(vendor_id, result.window_start, result.window_end, now)
        out = sch.availability_report(window_start=result.window_start, window_end=result.window_end,
                                      opening=opening, busy=result.busy, bookings=bookings, zone=zone)
        out["vendor_id"] = vendor_id
        out["complete"] = result.complete
        out["sources"] = [x.as_dict() for x in result.sources]
        return out

    # -- availability feed (for directories without a calendar API) ----------------------------------
    def create_feed_token(self, vendor_id: str, name: str = "availability") -> dict[str, Any]:
        token = secrets.token_urlsafe(24)
        with self.db.session() as s:
            self._vendor(s, vendor_id)
            row = CalendarFeedToken(id=new_id(), vendor_id=vendor_id, name=name[:200],
                                    token_hash=hashlib.sha256(token.encode()).hexdigest(), created_at=utcnow())
            s.add(row)
        return {"id": row.id, "name": row.name, "token": token, "path": f"/calendar/feeds/{token}.ics"}

    def revoke_feed_token(self, vendor_id: str, token_id: str) -> None:
        with self.db.session() as s:
            row = s.get(CalendarFeedToken, token_id)
            if row is None or row.vendor_id != vendor_id:
                raise NotFound("feed not found", code="unknown_feed")
            row.revoked_at = row.revoked_at or utcnow()

    def feed_ics(self, token: str, *, now: datetime | None = None, days: int = 400) -> str:
        """The vendor's busy time as an iCalendar feed: one opaque 'Busy' VEVENT per merged busy span
        (no titles, no client data), stale sources included as busy (fail closed)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self.db.read() as s:
            row = s.execute(select(CalendarFeedToken).where(CalendarFeedToken.token_hash == digest)
                            ).scalar_one_or_none()
            if row is None or row.revoked_at is not None:
                raise NotFound("feed not found", code="unknown_feed")
            vendor_id = row.vendor_id
        now = now or utcnow()
        start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
        result = self.availability(vendor_id, start, start + timedelta(days=days), now=now, use_working_hours=False)
        from wedsync.connectors.channels.ical_feed import BusyInterval as FeedInterval
        from wedsync.connectors.channels.ical_feed import render_busy_feed

        def uid(a: datetime) -> str:
            return "busy-" + hashlib.sha256(f"{vendor_id}|{a.isoformat()}".encode()).hexdigest()[:24]

        intervals = [FeedInterval(uid=uid(a), start=a, end=b, summary="Busy") for a, b in result.merged_busy]
        return render_busy_feed(intervals, name="Availability", stamp=now)

    # -- propagation ---------------------------------------------------------------------------------
    def _after_change(self, vendor_id: str) -> None:
        """A booking changed: plan blocks now (durable), push them in the background."""
        try:
            self.plan_blocks(vendor_id)
        except Exception as exc:  # planning is retried by the next propagate; the booking itself stands
            log.warning("block planning failed", vendor_id=vendor_id, error_type=type(exc).__name__)
            return
        if self.auto_propagate:
            self.kick_propagation(vendor_id)

    def kick_propagation(self, vendor_id: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (sync caller): the next sync or poll pushes the planned blocks
        task = loop.create_task(self.propagate(vendor_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def plan_blocks(self, vendor_id: str, *, now: datetime | None = None) -> dict[str, int]:
        """Diff the desired blocks against the outbox and commit the difference (before any provider call)."""
        now = now or utcnow()
        horizon_a, horizon_b = now - timedelta(days=1), now + PROPAGATION_HORIZON
        with self.db.read() as s:
            targets = list(s.execute(select(CalendarSource).where(
                CalendarSource.vendor_id == vendor_id, CalendarSource.writable.is_(True),
                CalendarSource.receive_blocks.is_(True))).scalars())
            if not targets:
                return {"added": 0, "changed": 0, "removed": 0}
            vendor = self._vendor(s, vendor_id)
            bookings = self._bookings_busy(s, vendor_id, horizon_a, horizon_b, now)
            inputs = self._inputs(s, vendor_id, stale_after=timedelta(days=3650))
        zone = ZoneInfo(vendor.timezone)
        origins: list[tuple[str, str | None, datetime, datetime, bool, str]] = []
        for bk in bookings:
            origins.append((f"booking:{bk.ref}", None, bk.start, bk.end, False, "Busy (WedSync booking)"))
        expanded, _ = self._expand(inputs, horizon_a, horizon_b, zone.key)
        for src in inputs:
            if src.error and src.last_synced_at is None:
                continue
            for it in expanded.get(src.source_id, []):
                if it.own_block or it.kind == "clipped":
                    continue
                all_day = it.kind == "all_day"
                origins.append((f"event:{src.source_id}:{it.uid}:{it.start.isoformat()}", src.source_id,
                                it.start, it.end, all_day, "Busy"))
        desired: dict[tuple[str, str], tuple[datetime, datetime, bool, str]] = {}
        for key, from_source, a, b, all_day, summary in origins:
            for t in targets:
                if t.id == from_source:
                    continue
                desired[(t.id, key)] = (a, b, all_day, summary)
        added = changed = removed = 0
        with self.db.session() as s:
            existing = {(r.target_source_id, r.origin_key): r for r in s.execute(select(CalendarBlock).where(
                CalendarBlock.vendor_id == vendor_id)).scalars()}
            for (tid, key), (a, b, all_day, summary) in desired.items():
                row = existing.get((tid, key))
                if row is None:
                    s.add(CalendarBlock(id=new_id(), vendor_id=vendor_id, target_source_id=tid, origin_key=key,
                                        block_uid=block_uid_for(key, tid), start_at=a, end_at=b, all_day=all_day,
                                        summary=summary, desired="present", state="pending", attempts=0,
                                        origin_changed_at=now, updated_at=now))
                    added += 1
                elif row.desired != "present" or row.start_at != a or row.end_at != b or row.all_day != all_day:
                    row.start_at, row.end_at, row.all_day = a, b, all_day
                    row.desired, row.state, row.origin_changed_at = "present", "pending", now
                    changed += 1
            for (tid, key), row in existing.items():
                if (tid, key) not in desired and row.desired != "absent":
                    if row.end_at < horizon_a:
                        continue  # past blocks stay where they are
                    row.desired, row.state, row.origin_changed_at = "absent", "pending", now
                    removed += 1
        return {"added": added, "changed": changed, "removed": removed}

    async def push_blocks(self, vendor_id: str, *, limit: int = 500) -> dict[str, int]:
        """Apply pending outbox rows at the providers (put_block idempotent by block_uid, delete_block)."""
        from wedsync.connectors.calendars.base import EtagMismatch

        now = utcnow()
        with self.db.read() as s:
            rows = list(s.execute(select(CalendarBlock, CalendarSource).join(
                CalendarSource, CalendarSource.id == CalendarBlock.target_source_id).where(
                CalendarBlock.vendor_id == vendor_id,
                (CalendarBlock.state == "pending") |
                ((CalendarBlock.state == "pushing") & (CalendarBlock.updated_at < now - CLAIM_TIMEOUT)))
                .order_by(CalendarBlock.origin_changed_at).limit(limit)).all())
        done = failed = 0
        for block, target in rows:
            if not self._claim(block.id, block.state, block.updated_at):
                continue  # another worker (or event loop) is pushing it
            try:
                connector = await self._connector(target)
                if block.desired == "present":
                    try:
                        ref = await connector.put_block(target.calendar_id, block.block_uid, block.start_at,
                                                        block.end_at, block.summary, all_day=block.all_day,
                                                        existing_remote_id=block.remote_id, etag=block.etag)
                    except EtagMismatch:
                        ref = await connector.put_block(target.calendar_id, block.block_uid, block.start_at,
                                                        block.end_at, block.summary, all_day=block.all_day,
                                                        existing_remote_id=block.remote_id, etag=None)
                    self._block_done(block.id, "placed", ref.remote_id, ref.etag, block.origin_changed_at)
                else:
                    if block.remote_id:
                        try:
                            await connector.delete_block(target.calendar_id, block.remote_id, block.etag)
                        except EtagMismatch:
                            await connector.delete_block(target.calendar_id, block.remote_id, None)
                    self._block_done(block.id, "deleted", None, None, block.origin_changed_at)
                done += 1
            except (ConnectorError, NotImplementedCapability, NotFound) as exc:
                failed += 1
                with self.db.session() as s:
                    row = s.get(CalendarBlock, block.id)
                    if row is not None:
                        row.attempts += 1
                        row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
                        row.state = "failed" if row.attempts >= 8 else "pending"
        return {"pushed": done, "failed": failed}

    def _claim(self, block_id: str, state: str, updated_at: datetime) -> bool:
        """Take one outbox row for pushing (compare-and-set), so two workers never push the same block."""
        with self.db.session() as s:
            res = s.execute(update(CalendarBlock).where(
                CalendarBlock.id == block_id, CalendarBlock.state == state,
                CalendarBlock.updated_at == updated_at).values(state="pushing", updated_at=utcnow()))
            return bool(res.rowcount)

    def _block_done(self, block_id: str, state: str, remote_id: str | None, etag: str | None,
                    changed_at: datetime) -> None:
        with self.db.session() as s:
            row = s.get(CalendarBlock, block_id)
            if row is None:
                return
            if row.origin_changed_at != changed_at:
                row.state = "pending"  # the origin changed while we pushed: push it again next round
                return
            row.state = state
            if state == "placed":
                row.remote_id, row.etag, row.placed_at = remote_id, etag, utcnow()
            else:
                row.remote_id = row.etag = None
            row.last_error = None

    async def propagate(self, vendor_id: str) -> dict[str, int]:
        lock = self._propagate_locks.setdefault(f"{vendor_id}:{id(asyncio.get_running_loop())}", asyncio.Lock())
        async with lock:
            planned = await asyncio.to_thread(self.plan_blocks, vendor_id)
            pushed = await self.push_blocks(vendor_id)
        return {**planned, **pushed}

    def blocks(self, vendor_id: str, *, limit: int | None = None, after: str | None = None) -> list[dict[str, Any]]:
        """By start time (then id); ``after`` is the last id of the previous page: the page goes on after that
        block's place in this order (422 ``invalid_cursor`` when it is not one of the vendor's blocks);
        ``limit`` None: all of them."""
        q = select(CalendarBlock).where(CalendarBlock.vendor_id == vendor_id)
        with self.db.read() as s:
            if after:
                last = s.get(CalendarBlock, after)
                if last is None or last.vendor_id != vendor_id:
                    raise InvalidInput("after is not the next_cursor of a page of this list", code="invalid_cursor")
                q = q.where(or_(CalendarBlock.start_at > last.start_at,
                                and_(CalendarBlock.start_at == last.start_at, CalendarBlock.id > last.id)))
            rows = s.execute(q.order_by(CalendarBlock.start_at, CalendarBlock.id).limit(limit)).scalars()
            return [{"id": r.id, "target_source_id": r.target_source_id, "origin": r.origin_key,
                     "block_uid": r.block_uid, "start": r.start_at.isoformat(), "end": r.end_at.isoformat(),
                     "desired": r.desired, "state": r.state, "remote_id": r.remote_id, "attempts": r.attempts,
                     "last_error": r.last_error} for r in rows]


class _LazyTexts(Sequence[str]):
    """The stored iCalendar texts of one source, read only when the engine needs them (a cache miss)."""

    def __init__(self, service: CalendarService, source_id: str) -> None:
        self._service, self._source_id = service, source_id
        self._items: list[str] | None = None

    def _load(self) -> list[str]:
        if self._items is None:
            self._items = self._service._texts(self._source_id)
        return self._items

    def __len__(self) -> int:
        return len(self._load())

    def __getitem__(self, i: Any) -> Any:
        return self._load()[i]

    def __iter__(self) -> Any:
        return iter(self._load())


# -- webhook handlers: a push notification means "re-list this connection's calendars" (rule 5) ------------
async def _handle_calendar_push(hub: Any, row: Any) -> str:
    service: CalendarService = hub.calendar
    kind = "changed"
    if row.provider == "microsoft-graph":
        from wedsync.connectors.calendars.base import parse_graph_notifications

        notes = parse_graph_notifications(row.body)
        if notes and all(n.kind in ("sync",) for n in notes):
            return "ignored"
        kind = ",".join(sorted({n.kind for n in notes})) or "changed"
    elif row.provider == "google-calendar" and (row.event_type or "").lower() == "sync":
        return "ignored"  # the channel-opened handshake carries no change
    synced = skipped = 0
    for source_id in service.sources_of_connection(row.connection_id):
        src = service.get_source(None, source_id)
        attempted = datetime.fromisoformat(src["last_attempt_at"]) if src["last_attempt_at"] else None
        received = row.received_at if row.received_at.tzinfo else row.received_at.replace(tzinfo=UTC)
        if attempted is not None and attempted > received and \
                src["status"] == "ok":
            skipped += 1  # a run that started after this notice already saw its change
            continue
        # inline, inside the drain's step: the notice is acknowledged only once the change is stored
        res = await service.sync_source(source_id)
        if res["status"] != "ok":
            raise Retriable(f"calendar sync failed: {res.get('error')}", provider=row.provider)
        synced += 1
    return f"{kind}: synced {synced} source(s), {skipped} already current"


WEBHOOK_HANDLERS = {
    "google-calendar": _handle_calendar_push,
    "microsoft-graph": _handle_calendar_push,
    "calendly": _handle_calendar_push,
    "acuity": _handle_calendar_push,
}

__all__ = ["WEBHOOK_HANDLERS", "BookingRequest", "CalendarService", "block_uid_for"]
