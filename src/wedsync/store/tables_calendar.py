"""Calendar tables: sources and their stored iCalendar events, bookings and holds, conflicts, the propagation
outbox (busy blocks we place on other calendars), availability feed tokens and the vendor's calendar profile.

The overlap guard of ``calendar_bookings`` is a PostgreSQL exclusion constraint created by migration 0004
(``EXCLUDE USING gist (vendor_id WITH =, resource WITH =, tstzrange(start_at, end_at) WITH &&) WHERE
(status = 'active')``); on SQLite the service serializes writers (BEGIN IMMEDIATE) and checks inside.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from wedsync.store.tables import Base, new_id, utcnow


class CalendarProfile(Base):
    """A vendor's scheduling rules: working hours (vendor's zone), buffers, day capacity, staleness limit."""

    __tablename__ = "calendar_profiles"
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), primary_key=True)
    working_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    buffer_before_min: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_min: Mapped[int] = mapped_column(Integer, default=0)
    travel_buffer_min: Mapped[int] = mapped_column(Integer, default=30)
    capacity_max_per_day: Mapped[int | None] = mapped_column(Integer, default=None)
    capacity_kinds: Mapped[list[Any]] = mapped_column(default=list)
    stale_after_s: Mapped[int] = mapped_column(Integer, default=1800)
    home_location: Mapped[str | None] = mapped_column(String(300), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CalendarSource(Base):
    """One calendar we read (and maybe write): a vendor connection's calendar, or an iCalendar feed URL."""

    __tablename__ = "calendar_sources"
    __table_args__ = (UniqueConstraint("vendor_id", "kind", "calendar_id", name="uq_calendar_sources_remote"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str | None] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"),
                                                      default=None, index=True)
    kind: Mapped[str] = mapped_column(String(64))  # provider slug, or "ics-feed"
    calendar_id: Mapped[str] = mapped_column(String(1000))
    name: Mapped[str] = mapped_column(String(200), default="")
    writable: Mapped[bool] = mapped_column(Boolean, default=False)
    receive_blocks: Mapped[bool] = mapped_column(Boolean, default=True)
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sync_state: Mapped[str | None] = mapped_column(Text, default=None)
    poll_interval_s: Mapped[int] = mapped_column(Integer, default=300)
    status: Mapped[str] = mapped_column(String(16), default="new")  # new | ok | error
    last_synced_at: Mapped[datetime | None] = mapped_column(default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    watch: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(Integer, default=0)  # bumped on every stored change (cache key)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CalendarSourceEvent(Base):
    """One remote event (a VCALENDAR text with its master and overrides) as last read from its source."""

    __tablename__ = "calendar_source_events"
    __table_args__ = (UniqueConstraint("source_id", "remote_id", name="uq_calendar_source_events_remote"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("calendar_sources.id", ondelete="CASCADE"))
    remote_id: Mapped[str] = mapped_column(String(500))
    ical: Mapped[str] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(String(300), default=None)
    own_block: Mapped[bool] = mapped_column(Boolean, default=False)
    first_start: Mapped[datetime | None] = mapped_column(default=None)
    seen_run: Mapped[str | None] = mapped_column(String(26), default=None)  # last full listing that saw it
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CalendarBooking(Base):
    """A booking or a (soft, expiring) hold on one vendor resource; ``status='active'`` rows never overlap."""

    __tablename__ = "calendar_bookings"
    __table_args__ = (
        UniqueConstraint("vendor_id", "channel", "external_ref", name="uq_calendar_bookings_external"),
        Index("ix_calendar_bookings_span", "vendor_id", "resource", "status", "start_at"),
    )
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    resource: Mapped[str] = mapped_column(String(64), default="default")
    kind: Mapped[str] = mapped_column(String(16), default="booking")  # booking | hold
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|cancelled|expired|conflict
    start_at: Mapped[datetime] = mapped_column()
    end_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    channel: Mapped[str] = mapped_column(String(64), default="api")
    external_ref: Mapped[str | None] = mapped_column(String(500), default=None)
    title: Mapped[str] = mapped_column(String(300), default="")
    meeting_type: Mapped[str | None] = mapped_column(String(64), default=None)
    category: Mapped[str | None] = mapped_column(String(64), default=None)  # e.g. "wedding" for day capacity
    location: Mapped[str | None] = mapped_column(String(300), default=None)
    wedding_id: Mapped[str | None] = mapped_column(String(64), default=None)
    contact_email: Mapped[str | None] = mapped_column(String(320), default=None)
    invitation_ics: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)


class CalendarConflict(Base):
    """A recorded conflict: an import that overlapped, or an external event over a booking."""

    __tablename__ = "calendar_conflicts"
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # import_overlap
    booking_id: Mapped[str | None] = mapped_column(String(26), default=None)
    channel: Mapped[str | None] = mapped_column(String(64), default=None)
    external_ref: Mapped[str | None] = mapped_column(String(500), default=None)
    start_at: Mapped[datetime] = mapped_column()
    end_at: Mapped[datetime] = mapped_column()
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)


class CalendarBlock(Base):
    """The propagation outbox: one busy block we keep on one target calendar for one origin.

    ``block_uid`` is derived from (origin, target) and committed before the provider call, so a retried put
    is idempotent at the provider (the connector's put_block is idempotent by block_uid)."""

    __tablename__ = "calendar_blocks"
    __table_args__ = (
        UniqueConstraint("target_source_id", "origin_key", name="uq_calendar_blocks_origin"),
        Index("ix_calendar_blocks_state", "vendor_id", "state"),
        Index("ix_calendar_blocks_vendor_start", "vendor_id", "start_at", "id"),  # the list's keyset
    )
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"))
    target_source_id: Mapped[str] = mapped_column(ForeignKey("calendar_sources.id", ondelete="CASCADE"))
    origin_key: Mapped[str] = mapped_column(String(600))  # "booking:<id>" | "event:<source_id>:<uid>:<start>"
    block_uid: Mapped[str] = mapped_column(String(200), unique=True)
    start_at: Mapped[datetime] = mapped_column()
    end_at: Mapped[datetime] = mapped_column()
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    summary: Mapped[str] = mapped_column(String(300), default="Busy")
    desired: Mapped[str] = mapped_column(String(16), default="present")  # present | absent
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | placed | deleted | failed
    remote_id: Mapped[str | None] = mapped_column(String(500), default=None)
    etag: Mapped[str | None] = mapped_column(String(300), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    origin_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    placed_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CalendarFeedToken(Base):
    """A public availability feed (for directories without a calendar API): only a SHA-256 of the token."""

    __tablename__ = "calendar_feed_tokens"
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="availability")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
