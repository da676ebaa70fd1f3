"""The calendar connector interface: every source yields iCalendar VEVENTs; write-capable ones manage busy blocks.

What the calendar engine (``wedsync.services.calendar``) calls, whatever the provider:

* :meth:`CalendarConnector.list_calendars` -> ``list[CalendarInfo]``.
* :meth:`CalendarConnector.list_changes` -> :class:`ChangePage`. Call it with ``sync_state=None`` for a full
  listing (every live item in the window; items not listed are gone), then page with ``page=next_page`` until
  ``next_page`` is None; the *last* page carries ``sync_state`` (Google ``nextSyncToken``, Graph
  ``@odata.deltaLink``, CalDAV ``sync-token``, a timestamp for Calendly/Acuity). Store it and pass it next time
  for an incremental listing, which reports changed items and deletions (``ical=None``). A
  :class:`SyncStateExpired` means: drop the state and do a full listing.
* Each :class:`SourceChange` holds one remote item as a whole ``VCALENDAR`` text: a recurring master (RRULE,
  EXDATE) together with its RECURRENCE-ID overrides, ``TRANSP``, ``STATUS``, ``X-WEDSYNC-BLOCK`` on blocks we
  wrote ourselves (so propagation never echoes them back), ``X-WEDSYNC-SOURCE`` naming the provider.
* Blocks (``supports_blocks``): :meth:`put_block` is idempotent by ``block_uid`` (the same uid twice gives one
  event), :meth:`delete_block` tolerates an already-deleted event. An ETag mismatch raises
  :class:`EtagMismatch` (re-read and retry).
* Push (``supports_push``): :meth:`watch` opens a channel, :meth:`renew_watch` renews it before
  :attr:`WatchChannel.expires_at` (Google opens a new channel: stop the old one after the new one is stored),
  :meth:`stop_watch` closes it. Notifications arrive at ``/webhooks/{slug}/{connection_id}``, verified with
  the connection's ``webhook_secret`` (the channel token / clientState / signing key to pass here);
  :func:`parse_graph_notifications` reads Graph's bodies; Google's inbox rows carry the resource id in
  ``record_id`` and the resource state (``sync``/``exists``/``not_exists``) in ``event_type``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import icalendar

from wedsync.connectors.base import Connector
from wedsync.connectors.errors import ConnectorError, Fatal
from wedsync.errors import InvalidInput, NotImplementedCapability

__all__ = [
    "BLOCK_MARKER",
    "SOURCE_MARKER",
    "BlockRef",
    "CalendarConnector",
    "CalendarInfo",
    "ChangePage",
    "EtagMismatch",
    "PushNotice",
    "SourceChange",
    "SyncStateExpired",
    "WatchChannel",
    "block_resource_name",
    "block_vevent",
    "check_block_times",
    "google_event_id",
    "parse_graph_notifications",
    "to_vcalendar",
]

BLOCK_MARKER = "X-WEDSYNC-BLOCK"  # value: the block uid; set on every event we write as a busy block
SOURCE_MARKER = "X-WEDSYNC-SOURCE"  # value: provider slug that produced the VEVENT
PRODID = "-//WedSync//Calendar Connectors//EN"


class SyncStateExpired(ConnectorError):
    """The provider no longer accepts the stored sync state (Google 410, Graph 410/syncStateNotFound, CalDAV
    ``valid-sync-token`` precondition): forget it and list everything again."""

    code = "calendar_sync_state_expired"
    status = 409


class EtagMismatch(ConnectorError):
    """A conditional write lost (If-Match / If-None-Match precondition failed): re-read, then retry."""

    code = "calendar_etag_mismatch"
    status = 409


@dataclass(frozen=True, slots=True)
class SourceChange:
    """One remote item: ``ical`` is a VCALENDAR text with its VEVENT(s); None means the item was deleted."""

    remote_id: str
    ical: str | None
    etag: str | None = None


@dataclass(slots=True)
class ChangePage:
    """One page of a listing; ``sync_state`` is set on the last page only (``next_page`` None)."""

    changes: list[SourceChange]
    next_page: str | None
    sync_state: str | None


@dataclass(frozen=True, slots=True)
class CalendarInfo:
    id: str
    name: str
    timezone: str | None = None
    writable: bool = False
    primary: bool = False


@dataclass(frozen=True, slots=True)
class BlockRef:
    """Where a busy block lives at the provider (``etag`` for the next conditional write)."""

    remote_id: str
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class WatchChannel:
    """A push channel (Google ``channels``) or subscription (Graph ``subscriptions``).

    ``id``: channel / subscription id; ``resource_id``: Google's opaque resource id (Graph: the resource
    path); ``token``: the channel token / clientState the notifications must carry.
    """

    id: str
    resource_id: str
    expires_at: datetime
    calendar_id: str
    address: str
    token: str
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def needs_renewal(self, *, now: datetime | None = None, margin: timedelta = timedelta(hours=1)) -> bool:
        """True when the channel expires within ``margin`` (renew before expiry, never after)."""
        return self.expires_at - margin <= (now or datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class PushNotice:
    """What a push notification tells: which subscription, and what to do.

    ``kind``: ``changed`` (re-list incrementally), ``sync`` (channel opened, nothing to do),
    ``reauthorize`` (renew the subscription now), ``removed`` (re-subscribe), ``missed`` (notifications were
    lost: re-list incrementally).
    """

    subscription_id: str
    kind: str
    resource: str | None = None


class CalendarConnector(Connector, ABC):
    """A calendar source; concrete subclasses set the ``Connector`` class attributes and a ``slug``."""

    supports_blocks: ClassVar[bool] = False
    supports_push: ClassVar[bool] = False
    #: the longest channel lifetime the provider grants (None: no push)
    max_watch_ttl: ClassVar[timedelta | None] = None

    @abstractmethod
    async def list_calendars(self) -> list[CalendarInfo]:
        """The account's calendars (``writable`` when busy blocks can be written there)."""

    @abstractmethod
    async def list_changes(
        self,
        calendar_id: str,
        sync_state: str | None,
        page: str | None,
        window_start: datetime,
        window_end: datetime,
    ) -> ChangePage:
        """One page of items (full when ``sync_state`` is None, else changes since it)."""

    async def fetch_item(self, calendar_id: str, remote_id: str) -> SourceChange:
        """Re-read one item (after a webhook that only names it); ``ical=None`` when it no longer exists."""
        raise NotImplementedCapability(f"{self.slug} cannot fetch single items", code="calendar_no_fetch")

    async def put_block(
        self,
        calendar_id: str,
        block_uid: str,
        start: datetime,
        end: datetime,
        summary: str,
        *,
        all_day: bool = False,
        existing_remote_id: str | None = None,
        etag: str | None = None,
    ) -> BlockRef:
        """Create or update the busy block ``block_uid`` (idempotent)."""
        raise NotImplementedCapability(f"{self.slug} cannot write busy blocks", code="calendar_read_only")

    async def delete_block(self, calendar_id: str, remote_id: str, etag: str | None = None) -> None:
        """Delete a busy block; an already-deleted block is not an error."""
        raise NotImplementedCapability(f"{self.slug} cannot write busy blocks", code="calendar_read_only")

    async def watch(self, calendar_id: str, address: str, token: str, ttl: timedelta) -> WatchChannel:
        """Ask the provider to POST change notifications for ``calendar_id`` to ``address``."""
        raise NotImplementedCapability(f"{self.slug} has no push channel: poll", code="calendar_no_push")

    async def renew_watch(self, channel: WatchChannel, ttl: timedelta) -> WatchChannel:
        """Extend (or replace) a channel before it expires; returns the channel to store."""
        raise NotImplementedCapability(f"{self.slug} has no push channel: poll", code="calendar_no_push")

    async def stop_watch(self, channel: WatchChannel) -> None:
        """Close a channel; an unknown or expired channel is not an error."""
        raise NotImplementedCapability(f"{self.slug} has no push channel: poll", code="calendar_no_push")


# ------------------------------------------------------------------------------------------------ helpers


def google_event_id(block_uid: str) -> str:
    """A Google event id derived from ``block_uid``: base32hex (``0-9a-v``), 5-1024 chars, stable."""
    if not block_uid:
        raise InvalidInput("block_uid is empty", code="invalid_block_uid")
    raw = block_uid.encode()
    if len(raw) > 500 or len(raw) < 4:  # Google wants 5-1024 characters: hash very long or short uids
        raw = hashlib.sha256(raw).digest()
    return base64.b32hexencode(raw).decode().rstrip("=").lower()


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def block_resource_name(block_uid: str) -> str:
    """The CalDAV resource name (``<name>.ics``) of a block: readable when the uid is safe, else hashed."""
    if not block_uid:
        raise InvalidInput("block_uid is empty", code="invalid_block_uid")
    if not _SAFE_NAME.search(block_uid) and len(block_uid) <= 120 and not block_uid.startswith("."):
        return f"{block_uid}.ics"
    return f"wsb-{hashlib.sha256(block_uid.encode()).hexdigest()[:40]}.ics"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise InvalidInput("block times must be timezone-aware", code="naive_datetime")
    return value.astimezone(UTC)


def check_block_times(start: datetime, end: datetime, all_day: bool) -> None:
    """Blocks have aware times and end after they start (all-day ones may end on their start date)."""
    _utc(start)
    _utc(end)
    if end < start or (end == start and not all_day):
        raise InvalidInput("a block must end after it starts", code="invalid_block_times")


def block_vevent(
    block_uid: str,
    start: datetime,
    end: datetime,
    summary: str,
    *,
    all_day: bool = False,
    source: str | None = None,
    stamp: datetime | None = None,
) -> icalendar.Event:
    """The VEVENT of one of our busy blocks (opaque, confirmed, marked ``X-WEDSYNC-BLOCK``).

    All-day blocks cover the dates from ``start`` up to, not including, ``end``'s date (at least one day).
    """
    check_block_times(start, end, all_day)
    ev = icalendar.Event()
    ev.add("uid", block_uid)
    ev.add("dtstamp", stamp or datetime.now(UTC))
    if all_day:
        first: date = start.date()
        last: date = end.date()
        if last <= first:
            last = first + timedelta(days=1)
        ev.add("dtstart", first)
        ev.add("dtend", last)
    else:
        ev.add("dtstart", _utc(start))
        ev.add("dtend", _utc(end))
    ev.add("summary", summary)
    ev.add("transp", "OPAQUE")
    ev.add("status", "CONFIRMED")
    ev.add(BLOCK_MARKER, block_uid)
    if source:
        ev.add(SOURCE_MARKER, source)
    return ev


def to_vcalendar(events: Iterable[icalendar.cal.Component], *, extra: Iterable[icalendar.cal.Component] = ()
                 ) -> str:
    """Wrap components (VTIMEZONEs in ``extra`` first) in a VCALENDAR and serialize it (CRLF lines)."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    for comp in extra:
        cal.add_component(comp)
    for ev in events:
        cal.add_component(ev)
    return str(cal.to_ical().decode("utf-8"))


def parse_graph_notifications(body: bytes) -> list[PushNotice]:
    """Graph change / lifecycle notifications in a (verified) body, as :class:`PushNotice` values."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Fatal("Graph notification body is not JSON", provider="microsoft-graph") from exc
    notes = data.get("value") if isinstance(data, dict) else None
    if not isinstance(notes, list):
        raise Fatal("Graph notification body has no value list", provider="microsoft-graph")
    out: list[PushNotice] = []
    kinds = {"reauthorizationRequired": "reauthorize", "subscriptionRemoved": "removed", "missed": "missed"}
    for n in notes:
        if not isinstance(n, dict) or not isinstance(n.get("subscriptionId"), str):
            continue
        lifecycle = n.get("lifecycleEvent")
        kind = kinds.get(lifecycle, "missed") if isinstance(lifecycle, str) else "changed"
        resource = n.get("resource")
        out.append(PushNotice(n["subscriptionId"], kind, resource if isinstance(resource, str) else None))
    return out
