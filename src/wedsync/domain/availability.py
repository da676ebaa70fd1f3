"""Availability engine: iCalendar sources + rules -> busy and free time in UTC, bounded and fail-closed. No I/O.

Pipeline per source: parse each stored VCALENDAR text, group VEVENTs by UID (master + RECURRENCE-ID
overrides), normalize every date-time (floating and unresolvable TZIDs -> the vendor's zone, pytz -> zoneinfo
keeping the wall time so DST gaps and repeated hours follow RFC 5545: a nonexistent local time is read with
the offset before the gap, a repeated one as its first occurrence), expand the master with
recurring-ical-events inside the query window, then apply overrides by exact RECURRENCE-ID instant, including
``RANGE=THISANDFUTURE`` (which recurring-ical-events 2.2 ignores: the override's shift and duration apply to
every later instance until the next THISANDFUTURE override).

Bounds (hostile input never hangs): a rule is checked before dateutil sees it. Day-level BY parts that can
never match (30 February, week 60, ...) reduce the series to its DTSTART; a rule whose candidates between
DTSTART and the window would exceed ``MAX_CANDIDATES`` is rebased by whole intervals (exact for rules without
COUNT); a rule that would yield more than ``MAX_INSTANCES_PER_EVENT`` instances in the window, or that
cannot be rebased exactly, is clipped to one continuous busy span over its extent in the window (fail
closed: it over-blocks, it never frees time) and reported in ``warnings``.

Fail closed: a source that is stale (no successful sync within its ``max_age``), never synced, or holds
unparseable data makes its whole window busy and marks the result ``complete=False``.
"""

from __future__ import annotations

import calendar as _pycal
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events
import x_wr_timezone

OWN_BLOCK_MARKER = "X-WEDSYNC-BLOCK"
MAX_CANDIDATES = 5_000
MAX_INSTANCES_PER_EVENT = 4_000
MAX_EVENTS_PER_SOURCE = 200_000
MAX_ICS_BYTES = 5_000_000

_FREQ_STEP = {
    "SECONDLY": timedelta(seconds=1),
    "MINUTELY": timedelta(minutes=1),
    "HOURLY": timedelta(hours=1),
    "DAILY": timedelta(days=1),
    "WEEKLY": timedelta(weeks=1),
    "MONTHLY": timedelta(days=28),
    "YEARLY": timedelta(days=365),
}
_FIXED_STEP = {"SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY"}
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


class CalendarDataError(ValueError):
    """The iCalendar text cannot be used (not iCalendar, broken encoding, missing DTSTART, too large)."""


class UnknownTimezone(ValueError):
    """A vendor zone that is not an IANA name."""


def vendor_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimezone(f"{name!r} is not an IANA time zone") from exc


# -- inputs and outputs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceRules:
    """How one source's events count: transparency honoured, all-day events block, tentative is busy."""

    honor_transparency: bool = True
    all_day_blocks: bool = True
    tentative_busy: bool = True
    ignore_own_blocks: bool = False  # skip events carrying X-WEDSYNC-BLOCK (they mirror our own bookings)


@dataclass
class SourceInput:
    """One calendar source: its stored iCalendar texts and its freshness."""

    source_id: str
    name: str
    ical_texts: Sequence[str]
    rules: SourceRules = field(default_factory=SourceRules)
    last_synced_at: datetime | None = None
    max_age: timedelta | None = timedelta(minutes=30)  # None: never stale (e.g. our own records)
    error: str | None = None  # the last sync failed with this (provider outage): fail closed


@dataclass(frozen=True)
class BusyInterval:
    start: datetime  # UTC
    end: datetime  # UTC
    source_id: str
    uid: str = ""
    summary: str = ""
    kind: str = "event"  # event | all_day | tentative | booking | hold | stale | clipped | capacity
    own_block: bool = False
    location: str = ""
    ref: str = ""  # booking/hold id, or wedding id

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "source_id": self.source_id,
                "uid": self.uid, "summary": self.summary, "kind": self.kind, "own_block": self.own_block,
                "location": self.location, "ref": self.ref}


@dataclass
class SourceReport:
    source_id: str
    name: str
    last_synced_at: datetime | None
    fresh: bool
    reason: str | None
    instances: int

    def as_dict(self) -> dict[str, Any]:
        return {"source_id": self.source_id, "name": self.name, "fresh": self.fresh, "reason": self.reason,
                "last_synced_at": self.last_synced_at.isoformat() if self.last_synced_at else None,
                "instances": self.instances}


@dataclass(frozen=True)
class WorkingHours:
    """Per weekday (0 = Monday) the local opening spans; a weekday missing from ``days`` is closed."""

    days: dict[int, tuple[tuple[time, time], ...]]

    @classmethod
    def every_day(cls, start: time = time(0), end: time = time(0)) -> WorkingHours:
        return cls({d: ((start, end),) for d in range(7)})

    @classmethod
    def from_spec(cls, spec: dict[str, list[list[str]]]) -> WorkingHours:
        """``{"mon": [["09:00", "17:00"]], ...}``; "24:00" or "00:00" as an end means midnight."""
        names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        days: dict[int, tuple[tuple[time, time], ...]] = {}
        for key, spans in spec.items():
            k = key.lower()[:3]
            if k not in names:
                raise ValueError(f"unknown weekday {key!r}")
            parsed = []
            for span in spans:
                if len(span) != 2:
                    raise ValueError("a working-hours span is [start, end]")
                a = _parse_hhmm(span[0])
                b = _parse_hhmm(span[1])
                if b != time(0) and b <= a:
                    raise ValueError(f"working hours {span[0]}-{span[1]} end before they start")
                parsed.append((a, b))
            days[names.index(k)] = tuple(parsed)
        return cls(days)

    def spans_on(self, day: date, zone: tzinfo) -> list[tuple[datetime, datetime]]:
        out = []
        for a, b in self.days.get(day.weekday(), ()):
            start = datetime.combine(day, a, zone)
            end = datetime.combine(day + timedelta(days=1), time(0), zone) if b == time(0) else \
                datetime.combine(day, b, zone)
            out.append((start.astimezone(UTC), end.astimezone(UTC)))
        return out


def _parse_hhmm(value: str) -> time:
    if value == "24:00":
        return time(0)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"{value!r} is not HH:MM")
    return time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class DayCapacity:
    """At most ``max_per_day`` items of ``kinds`` per local day; a full day is busy all day."""

    max_per_day: int = 1
    kinds: frozenset[str] = frozenset({"wedding"})


@dataclass
class AvailabilityQuery:
    window_start: datetime
    window_end: datetime
    timezone: str
    working_hours: WorkingHours | None = None
    buffer_before: timedelta = timedelta(0)
    buffer_after: timedelta = timedelta(0)
    capacity: DayCapacity | None = None
    now: datetime | None = None


@dataclass
class AvailabilityResult:
    window_start: datetime
    window_end: datetime
    busy: list[BusyInterval]
    merged_busy: list[tuple[datetime, datetime]]
    free: list[tuple[datetime, datetime]]
    sources: list[SourceReport]
    complete: bool
    warnings: list[str]
    full_days: list[date]

    def as_dict(self) -> dict[str, Any]:
        return {
            "window_start": self.window_start.isoformat(), "window_end": self.window_end.isoformat(),
            "complete": self.complete,
            "free": [{"start": a.isoformat(), "end": b.isoformat()} for a, b in self.free],
            "busy": [{"start": a.isoformat(), "end": b.isoformat()} for a, b in self.merged_busy],
            "sources": [s.as_dict() for s in self.sources],
            "full_days": [d.isoformat() for d in self.full_days],
            "warnings": self.warnings,
        }


# -- parsing ------------------------------------------------------------------------------------------
def parse_calendar(text: str | bytes) -> icalendar.Calendar:
    """Parse one VCALENDAR (or a bare VEVENT); raise CalendarDataError with a readable reason."""
    if isinstance(text, bytes):
        if len(text) > MAX_ICS_BYTES:
            raise CalendarDataError(f"calendar data over {MAX_ICS_BYTES} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CalendarDataError(f"calendar data is not UTF-8 (byte {exc.start})") from exc
    if len(text) > MAX_ICS_BYTES:
        raise CalendarDataError(f"calendar data over {MAX_ICS_BYTES} characters")
    if "\x00" in text:
        raise CalendarDataError("calendar data contains NUL characters")
    stripped = text.lstrip("\ufeff \r\n\t")
    if not stripped.upper().startswith("BEGIN:"):
        raise CalendarDataError("not iCalendar data (no BEGIN: line)")
    try:
        cal = icalendar.Calendar.from_ical(stripped)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CalendarDataError(f"not valid iCalendar: {str(exc)[:200]}") from exc
    if cal.name == "VEVENT":
        wrapper = icalendar.Calendar()
        wrapper.add_component(cal)
        cal = wrapper
    if cal.name != "VCALENDAR":
        raise CalendarDataError(f"expected VCALENDAR, got {cal.name}")
    if cal.get("CALSCALE", "GREGORIAN").upper() != "GREGORIAN":
        raise CalendarDataError("only the GREGORIAN calendar scale is supported")
    try:
        cal = x_wr_timezone.to_standard(cal)
    except (ValueError, KeyError, TypeError) as exc:
        raise CalendarDataError(f"bad X-WR-TIMEZONE: {str(exc)[:200]}") from exc
    for ev in cal.walk("VEVENT"):
        if ev.get("DTSTART") is None:
            raise CalendarDataError(f"VEVENT {ev.get('UID', '?')} has no DTSTART")
        try:
            ev["DTSTART"].dt  # noqa: B018 - a broken value raises here
            if ev.get("DTEND") is not None:
                ev["DTEND"].dt  # noqa: B018
        except (AttributeError, ValueError) as exc:
            raise CalendarDataError(f"VEVENT {ev.get('UID', '?')} has a broken date") from exc
    return cal


@functools.lru_cache(maxsize=65_536)
def _parse_cached(text: str) -> icalendar.Calendar:
    """Parsed calendars by text (stored texts repeat across queries); callers never mutate the result."""
    return parse_calendar(text)


def validate_ics(text: str | bytes) -> int:
    """Parse and count the VEVENTs (for input checks at the edge); raises CalendarDataError."""
    return len(parse_calendar(text).walk("VEVENT"))


# -- normalization ----------------------------------------------------------------------------------
class _Normalizer:
    def __init__(self, zone: ZoneInfo, warnings: list[str]) -> None:
        self.zone = zone
        self.warnings = warnings
        self._warned: set[str] = set()

    def dt(self, value: Any, tzid: str | None) -> Any:
        """date stays date; datetime becomes zoneinfo-aware with the same wall time."""
        if isinstance(value, datetime):
            tz = value.tzinfo
            naive = value.replace(tzinfo=None)
            if tz is None:
                if tzid and tzid not in self._warned:
                    self._warned.add(tzid)
                    self.warnings.append(f"TZID {tzid!r} has no VTIMEZONE and is not an IANA zone: read in the "
                                         f"vendor's zone {self.zone.key}")
                return naive.replace(tzinfo=self.zone)
            if tz is UTC or getattr(tz, "zone", None) == "UTC" or (value.utcoffset() == timedelta(0) and \
                    str(getattr(tz, "zone", getattr(tz, "key", "UTC"))) in ("UTC", "Etc/UTC", "GMT", "Z")):
                return naive.replace(tzinfo=UTC)
            name = getattr(tz, "zone", None) or getattr(tz, "key", None)
            if name:
                try:
                    return naive.replace(tzinfo=ZoneInfo(name))
                except (ZoneInfoNotFoundError, ValueError):
                    pass
            # a custom VTIMEZONE icalendar built for us: keep its offset at this instant
            return value.astimezone(UTC)
        return value

    def prop(self, component: Any, name: str) -> Any:
        prop = component.get(name)
        if prop is None:
            return None
        return self.dt(prop.dt, prop.params.get("TZID"))


def _to_utc(value: date | datetime, zone: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC)
    return datetime.combine(value, time(0), zone).astimezone(UTC)


def _instant_key(value: date | datetime, zone: ZoneInfo) -> Any:
    if isinstance(value, datetime):
        return _to_utc(value, zone)
    return value


@dataclass
class _Instance:
    start: date | datetime
    end: date | datetime
    component: Any


def _rrule_parts(component: Any) -> list[dict[str, list[Any]]]:
    rules = component.get("RRULE")
    if rules is None:
        return []
    if not isinstance(rules, list):
        rules = [rules]
    return [{k.upper(): list(v) for k, v in r.items()} for r in rules]


def _day_filters_feasible(parts: dict[str, list[Any]], start: date) -> bool:
    """Whether any day within one 400-year Gregorian cycle matches the day-level BY parts (plain weekdays)."""
    months = {int(m) for m in parts.get("BYMONTH", [])}
    mdays = {int(d) for d in parts.get("BYMONTHDAY", [])}
    ydays = {int(d) for d in parts.get("BYYEARDAY", [])}
    weeknos = {int(w) for w in parts.get("BYWEEKNO", [])}
    if any(not 1 <= m <= 12 for m in months) or any(d == 0 or abs(d) > 31 for d in mdays) or \
            any(d == 0 or abs(d) > 366 for d in ydays) or any(w == 0 or abs(w) > 53 for w in weeknos):
        return False
    if not (months or mdays or ydays or weeknos):
        return True
    if months and mdays and not ydays and not weeknos:  # the common case, answered without a scan
        for m in months:
            for d in mdays:
                longest = 29 if m == 2 else _pycal.monthrange(2001, m)[1]
                if abs(d) <= longest:
                    return True
        return False
    day = start
    for _ in range(146_097):
        if months and day.month not in months:
            pass
        elif mdays and not ({day.day, day.day - _pycal.monthrange(day.year, day.month)[1] - 1} & mdays):
            pass
        elif ydays:
            n = day.timetuple().tm_yday
            last = 366 if _pycal.isleap(day.year) else 365
            if {n, n - last - 1} & ydays:
                return True
        elif weeknos:
            w = day.isocalendar()[1]
            if w in weeknos or w - 53 - 1 in weeknos or w - 52 - 1 in weeknos:
                return True
        else:
            return True
        try:
            day += timedelta(days=1)
        except OverflowError:
            return False
    return False


_SUB_DAILY = {"SECONDLY", "MINUTELY", "HOURLY"}


def _rfc_invalid(parts: dict[str, list[Any]], freq: str, *, all_day: bool) -> str | None:
    """Why a rule breaks RFC 5545's combinations (dateutil accepts them and may search for centuries)."""
    if all_day and freq in _SUB_DAILY:
        return f"FREQ={freq} on an all-day event"
    try:
        if int(parts.get("INTERVAL", [1])[0]) < 1:
            return "INTERVAL below 1"  # dateutil would loop forever
    except (TypeError, ValueError):
        return "INTERVAL is not a number"
    if parts.get("BYWEEKNO") and freq != "YEARLY":
        return "BYWEEKNO outside FREQ=YEARLY"
    if parts.get("BYYEARDAY") and freq in ("DAILY", "WEEKLY", "MONTHLY"):
        return f"BYYEARDAY with FREQ={freq}"
    if parts.get("BYMONTHDAY") and freq == "WEEKLY":
        return "BYMONTHDAY with FREQ=WEEKLY"
    ordinal = any(re.match(r"^[+-]?\d", str(d)) for d in parts.get("BYDAY", []))
    if ordinal and (freq not in ("MONTHLY", "YEARLY") or (freq == "YEARLY" and parts.get("BYWEEKNO"))):
        return f"numbered BYDAY with FREQ={freq}"
    for key, hi in (("BYHOUR", 23), ("BYMINUTE", 59), ("BYSECOND", 60)):
        for v in parts.get(key, []):
            try:
                if not 0 <= int(v) <= hi:
                    return f"{key}={v}"
            except (TypeError, ValueError):
                return f"{key}={v}"
    for v in parts.get("BYSETPOS", []):
        try:
            if int(v) == 0 or abs(int(v)) > 366:
                return f"BYSETPOS={v}"
        except (TypeError, ValueError):
            return f"BYSETPOS={v}"
    return None


def _setpos_feasible(parts: dict[str, list[Any]], freq: str) -> bool:
    """BYSETPOS picks from each period's set; past the set's size it never matches (daily and finer)."""
    positions = [abs(int(p)) for p in parts.get("BYSETPOS", [])]
    if not positions or freq in ("MONTHLY", "YEARLY"):
        return True
    size = 1
    for key in ("BYHOUR", "BYMINUTE", "BYSECOND"):
        if parts.get(key):
            size *= len(set(parts[key]))
    if freq == "WEEKLY":
        size *= len(set(parts.get("BYDAY", []))) or 1
    return min(positions) <= size


def _probe_feasible(parts: dict[str, list[Any]], freq: str, start: Any) -> bool:
    """MONTHLY/YEARLY rules with filters: look for one occurrence in at most 800 years (dateutil alone searches
    to year 9999). The Gregorian calendar repeats every 400 years, so the probe starts in the same position of
    the cycle shortly before year 9999, where dateutil's own year limit bounds the search."""
    if freq not in ("MONTHLY", "YEARLY"):
        return True
    if not any(k in parts for k in ("BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYSETPOS")):
        return True
    from dateutil.rrule import rrulestr

    probe = {k: v for k, v in parts.items() if k not in ("COUNT", "UNTIL")}
    first = start if isinstance(start, datetime) else datetime.combine(start, time(0))
    first = first.replace(tzinfo=None)
    shift = ((9200 - first.year) // 400) * 400
    try:
        first = first.replace(year=first.year + shift)
        text = icalendar.vRecur(probe).to_ical().decode()
        rule = rrulestr(text, dtstart=first)
        return rule.after(first, inc=True) is not None
    except (ValueError, TypeError, OverflowError):
        return False


def _multiplicity(parts: dict[str, list[Any]], freq: str) -> int:
    """An upper bound on instances per FREQ period from BY parts that expand (not filter)."""
    mult = 1
    order = list(_FREQ_STEP)
    rank = order.index(freq)
    expanding = {"BYSECOND": 0, "BYMINUTE": 1, "BYHOUR": 2, "BYDAY": 3, "BYMONTHDAY": 3, "BYYEARDAY": 3,
                 "BYWEEKNO": 4, "BYMONTH": 5}
    for key, level in expanding.items():
        values = parts.get(key)
        if values and level < rank:
            mult *= len(values) if key != "BYDAY" or freq == "WEEKLY" else len(values) * 5
    return max(1, mult)


class _Expander:
    def __init__(self, zone: ZoneInfo, window_start: datetime, window_end: datetime, warnings: list[str]) -> None:
        self.zone = zone
        self.ws = window_start
        self.we = window_end
        self.warnings = warnings
        self.norm = _Normalizer(zone, warnings)

    def _prepare(self, comp: Any) -> tuple[Any, Any, Any]:
        start = self.norm.prop(comp, "DTSTART")
        end = self.norm.prop(comp, "DTEND")
        if end is None:
            dur = comp.get("DURATION")
            if dur is not None and isinstance(dur.dt, timedelta):
                end = start + dur.dt
            elif isinstance(start, datetime):
                end = start
            else:
                end = start + timedelta(days=1)
        if type(end) is not type(start):  # mixed DATE/DATE-TIME: treat the end like the start
            end = _to_utc(end, self.zone).astimezone(start.tzinfo) if isinstance(start, datetime) else \
                end.date() if isinstance(end, datetime) else end
        if end < start:
            end = start
        return start, end, comp

    def expand(self, master: Any) -> tuple[list[_Instance], list[BusyInterval]]:
        """Instances of ``master`` in the window (before overrides), and any clipped busy spans."""
        start, end, _ = self._prepare(master)
        duration = end - start
        rules = _rrule_parts(master)
        has_rdate = master.get("RDATE") is not None
        if not rules and not has_rdate:
            return [_Instance(start, end, master)], []
        step_total = 0
        clipped: list[BusyInterval] = []
        work = master.copy()
        for sub in master.subcomponents:
            work.add_component(sub)
        for prop in ("DTSTART", "DTEND"):
            if work.get(prop) is not None:
                del work[prop]
        work.add("DTSTART", start)
        work.add("DTEND", end) if duration or (isinstance(start, date) and not isinstance(start, datetime)) else \
            work.add("DURATION", timedelta(0))
        for name in ("EXDATE", "RDATE"):
            values = master.get(name)
            if values is None:
                continue
            del work[name]
            for item in values if isinstance(values, list) else [values]:
                tzid = item.params.get("TZID")
                dts: list[Any] = []
                for d in item.dts:
                    if isinstance(d.dt, tuple):  # RDATE;VALUE=PERIOD: start/end or start/duration
                        p_start = self.norm.dt(d.dt[0], tzid)
                        p_end = d.dt[1]
                        p_end = p_start + p_end if isinstance(p_end, timedelta) else self.norm.dt(p_end, tzid)
                        dts.append((p_start, p_end))
                    else:
                        dts.append(self.norm.dt(d.dt, tzid))
                if dts:
                    work.add(name, dts)
        new_rules = []
        for parts in rules:
            freq = str(parts.get("FREQ", ["DAILY"])[0]).upper()
            if freq not in _FREQ_STEP:
                raise CalendarDataError(f"RRULE FREQ {freq!r} is not valid")
            try:
                interval = max(1, int(parts.get("INTERVAL", [1])[0]))
            except (TypeError, ValueError) as exc:
                raise CalendarDataError("RRULE INTERVAL is not a number") from exc
            first_day = start.date() if isinstance(start, datetime) else start
            until = parts.get("UNTIL", [None])[0]
            if until is not None and not isinstance(until, datetime) and isinstance(start, datetime):
                # a DATE UNTIL on a timed series: the whole last day is included
                until_utc: datetime | None = _to_utc(until + timedelta(days=1), self.zone) - timedelta(seconds=1)
            else:
                until_utc = _to_utc(until, self.zone) if until is not None else None
            invalid = _rfc_invalid(parts, freq, all_day=not isinstance(start, datetime))
            if invalid:
                # a rule no calendar app would write: its meaning is unknown, so it blocks its whole extent
                a = max(self.ws, _to_utc(start, self.zone))
                b = min(x for x in (until_utc, self.we) if x is not None)
                clipped.append(BusyInterval(a, max(a, b), "", str(master.get("UID", "")),
                                            str(master.get("SUMMARY", "")), "clipped"))
                self.warnings.append(f"event {master.get('UID', '?')}: invalid RRULE ({invalid}); "
                                     f"blocked as one span")
                continue
            if not _day_filters_feasible(parts, first_day) or not _setpos_feasible(parts, freq) or \
                    not _probe_feasible(parts, freq, start):
                self.warnings.append(f"event {master.get('UID', '?')}: RRULE can never match; DTSTART only")
                continue
            step = _FREQ_STEP[freq] * interval
            mult = _multiplicity(parts, freq)
            count = parts.get("COUNT", [None])[0]
            if count is not None:
                try:
                    count = int(count)
                except (TypeError, ValueError) as exc:
                    raise CalendarDataError("RRULE COUNT is not a number") from exc
                if count <= 0:
                    parts.pop("COUNT", None)
                    count = None
            start_utc = _to_utc(start, self.zone)
            series_end = min(x for x in (until_utc, self.we) if x is not None)
            if count is not None and not any(k.startswith("BY") for k in parts) and freq in _FIXED_STEP:
                if (count - 1) * step.total_seconds() < (series_end - start_utc).total_seconds():
                    series_end = min(series_end, start_utc + step * (count - 1) + duration)
            span_to_window = max(timedelta(0), self.ws - start_utc)
            in_window = max(timedelta(0), series_end - max(self.ws, start_utc) + duration)
            window_instances = (in_window / step + 1) * mult
            candidates = (max(timedelta(0), series_end - start_utc) / step + 1) * mult
            if series_end < self.ws - duration:
                continue  # the whole series ends before the window
            if window_instances > MAX_INSTANCES_PER_EVENT:
                a = max(self.ws, start_utc)
                clipped.append(BusyInterval(a, max(a, series_end), "", str(master.get("UID", "")),
                                            str(master.get("SUMMARY", "")), "clipped"))
                self.warnings.append(f"event {master.get('UID', '?')}: RRULE would give about "
                                     f"{int(window_instances)} instances in the window; clipped to one busy span")
                continue
            step_total += int(candidates)
            if candidates > MAX_CANDIDATES:
                # rebase by whole intervals: exact for a fixed step, and with COUNT when no BY part filters
                # (then every step is one occurrence, so COUNT shrinks by the steps skipped)
                filtered = any(k.startswith("BY") for k in parts)
                if (count is not None and filtered) or freq not in _FIXED_STEP or \
                        (not isinstance(start, datetime) and freq in _SUB_DAILY):
                    a = max(self.ws, start_utc)
                    clipped.append(BusyInterval(a, max(a, series_end), "", str(master.get("UID", "")),
                                                str(master.get("SUMMARY", "")), "clipped"))
                    self.warnings.append(f"event {master.get('UID', '?')}: RRULE starts too far before the window "
                                         f"to expand exactly; clipped to one busy span")
                    continue
                k = int((span_to_window - duration) / step) - 1
                if count is not None:
                    k = min(k, count - 1)
                    parts["COUNT"] = [count - max(k, 0)]
                if k > 0:
                    if isinstance(start, datetime):
                        naive = start.replace(tzinfo=None) + step * k
                        start = naive.replace(tzinfo=start.tzinfo)
                    else:
                        start = start + step * k
                    end = start + duration
                    del work["DTSTART"]
                    work.add("DTSTART", start)
                    if work.get("DTEND") is not None:
                        del work["DTEND"]
                        work.add("DTEND", end)
            if until is not None and isinstance(start, datetime):
                parts["UNTIL"] = [until_utc]
            elif until is not None and isinstance(until, datetime):
                parts["UNTIL"] = [until.date()]
            new_rules.append(parts)
        del_rrule = work.get("RRULE") is not None
        if del_rrule:
            del work["RRULE"]
        for parts in new_rules:
            work.add("RRULE", parts)
        if not new_rules and work.get("RDATE") is None:
            instances = [_Instance(start, end, master)] if not clipped else []
            return instances, clipped
        try:
            repeated = recurring_ical_events.RepeatedEvent(work)
            span_a = self.ws.astimezone(self.zone)
            span_b = self.we.astimezone(self.zone)
            if not isinstance(start, datetime):
                span_a, span_b = span_a.replace(tzinfo=None), span_b.replace(tzinfo=None)  # type: ignore[assignment]
            out = []
            for rep in repeated.within_days(span_a, span_b):
                out.append(_Instance(rep.start, rep.stop, master))
                if len(out) > MAX_INSTANCES_PER_EVENT:
                    break
        except (ValueError, TypeError, OverflowError, AssertionError) as exc:
            raise CalendarDataError(f"event {master.get('UID', '?')}: cannot expand RRULE: {str(exc)[:160]}") \
                from exc
        return out, clipped

    def override_key(self, comp: Any) -> Any:
        rid = comp.get("RECURRENCE-ID")
        return _instant_key(self.norm.dt(rid.dt, rid.params.get("TZID")), self.zone)


def _status(comp: Any) -> str:
    return str(comp.get("STATUS", "CONFIRMED")).upper()


def _counts(comp: Any, rules: SourceRules, all_day: bool) -> str | None:
    """The busy kind of an instance, or None when it does not block."""
    if _status(comp) == "CANCELLED":
        return None
    if rules.ignore_own_blocks and comp.get(OWN_BLOCK_MARKER) is not None:
        return None
    if rules.honor_transparency and str(comp.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
        return None
    if _status(comp) == "TENTATIVE":
        return "tentative" if rules.tentative_busy else None
    if all_day:
        return "all_day" if rules.all_day_blocks else None
    return "event"


def _kind_label(comp: Any) -> str:
    cats = comp.get("CATEGORIES")
    labels: list[str] = []
    for c in cats if isinstance(cats, list) else [cats] if cats is not None else []:
        labels.extend(str(x).lower() for x in getattr(c, "cats", []))
    text = " ".join([*labels, str(comp.get("SUMMARY", "")).lower()])
    return "wedding" if "wedding" in text else ""


def expand_source(source: SourceInput, window_start: datetime, window_end: datetime, zone: ZoneInfo,
                  warnings: list[str]) -> list[BusyInterval]:
    """Busy intervals of one source in the window (raises CalendarDataError on unusable data)."""
    try:
        return _expand_source(source, window_start, window_end, zone, warnings)
    except CalendarDataError:
        raise
    except (ValueError, TypeError, OverflowError, AssertionError, KeyError, AttributeError, IndexError) as exc:
        # data no rule above foresaw: unusable, so the source fails closed (never a crash, never free time)
        raise CalendarDataError(f"cannot interpret this calendar data ({type(exc).__name__}: {str(exc)[:120]})") \
            from exc


def _expand_source(source: SourceInput, window_start: datetime, window_end: datetime, zone: ZoneInfo,
                   warnings: list[str]) -> list[BusyInterval]:
    exp = _Expander(zone, window_start, window_end, warnings)
    by_uid: dict[str, tuple[list[Any], list[Any]]] = {}
    n_events = 0
    for text in source.ical_texts:
        cal = _parse_cached(text) if isinstance(text, str) else parse_calendar(text)
        for ev in cal.walk("VEVENT"):
            n_events += 1
            if n_events > MAX_EVENTS_PER_SOURCE:
                raise CalendarDataError(f"more than {MAX_EVENTS_PER_SOURCE} events in one source")
            uid = str(ev.get("UID", f"__nouid_{n_events}"))
            masters, overrides = by_uid.setdefault(uid, ([], []))
            (overrides if ev.get("RECURRENCE-ID") is not None else masters).append(ev)
    out: list[BusyInterval] = []
    for uid, (masters, overrides) in by_uid.items():
        instances: list[_Instance] = []
        for master in masters[:1] or []:
            got, clipped = exp.expand(master)
            instances.extend(got)
            for c in clipped:
                out.append(BusyInterval(c.start, c.end, source.source_id, uid, c.summary, "clipped"))
        if len(masters) > 1:
            warnings.append(f"event {uid}: {len(masters)} masters with one UID; the first one is used")
        singles: dict[Any, Any] = {}
        ranges: list[tuple[Any, Any]] = []
        for ov in overrides:
            key = exp.override_key(ov)
            rid = ov.get("RECURRENCE-ID")
            prev = singles.get(key)
            if prev is not None and int(prev.get("SEQUENCE", 0)) > int(ov.get("SEQUENCE", 0)):
                continue
            singles[key] = ov
            if str(rid.params.get("RANGE", "")).upper() == "THISANDFUTURE":
                ranges.append((key, ov))
        ranges.sort(key=lambda kv: _sort_key(kv[0]))
        final: list[tuple[Any, Any, Any]] = []
        seen: set[Any] = set()
        for inst in instances:
            key = _instant_key(inst.start, zone)
            seen.add(key)
            ov = singles.get(key)
            if ov is not None:
                s, e, _ = exp._prepare(ov)
                final.append((s, e, ov))
                continue
            applied = None
            for rkey, rov in ranges:
                if _sort_key(rkey) <= _sort_key(key):
                    applied = (rkey, rov)
            if applied is not None:
                rkey, rov = applied
                s0, e0, _ = exp._prepare(rov)
                rid_val = exp.norm.dt(rov["RECURRENCE-ID"].dt, rov["RECURRENCE-ID"].params.get("TZID"))
                shift = _shift(rid_val, s0)
                final.append((_add(inst.start, shift), _add(inst.start, shift) + (e0 - s0), rov))
            else:
                final.append((inst.start, inst.end, inst.component))
        for key, ov in singles.items():
            if key in seen:
                continue
            # an override whose original instance lies outside the window (or a lone override) may move
            # into it; it replaces that instance either way, so it counts on its own
            s, e, _ = exp._prepare(ov)
            final.append((s, e, ov))
        for s, e, comp in final:
            all_day = not isinstance(s, datetime)
            kind = _counts(comp, source.rules, all_day)
            if kind is None:
                continue
            a, b = _to_utc(s, zone), _to_utc(e, zone)
            if b <= a:
                # a DTSTART in a DST gap can land on its DTEND in UTC: keep the nominal (wall) length
                b = a + (e - s) if e > s else a
                if b <= a:
                    continue
            if b <= window_start or a >= window_end:
                continue
            label = _kind_label(comp) or kind
            out.append(BusyInterval(a, b, source.source_id, uid, str(comp.get("SUMMARY", "")),
                                    label if label == "wedding" else kind,
                                    own_block=comp.get(OWN_BLOCK_MARKER) is not None,
                                    location=str(comp.get("LOCATION", ""))))
    return out


def _sort_key(key: Any) -> datetime:
    if isinstance(key, datetime):
        return key
    return datetime.combine(key, time(0), UTC)


def _shift(rid: Any, new_start: Any) -> timedelta:
    if isinstance(rid, datetime) and isinstance(new_start, datetime):
        return new_start.replace(tzinfo=None) - rid.replace(tzinfo=None) if rid.tzinfo == new_start.tzinfo \
            else new_start - rid
    if not isinstance(rid, datetime) and not isinstance(new_start, datetime):
        return timedelta(days=(new_start - rid).days)
    return timedelta(0)


def _add(value: Any, shift: timedelta) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return (value.replace(tzinfo=None) + shift).replace(tzinfo=value.tzinfo)
    return value + shift


# -- interval algebra -----------------------------------------------------------------------------------
def merge(intervals: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def subtract(base: Sequence[tuple[datetime, datetime]], minus: Sequence[tuple[datetime, datetime]]
             ) -> list[tuple[datetime, datetime]]:
    """``base`` minus ``minus``; both merged and sorted."""
    out = []
    j = 0
    for a, b in base:
        cur = a
        while j < len(minus) and minus[j][1] <= cur:
            j += 1
        k = j
        while k < len(minus) and minus[k][0] < b:
            if minus[k][0] > cur:
                out.append((cur, minus[k][0]))
            cur = max(cur, minus[k][1])
            k += 1
        if cur < b:
            out.append((cur, b))
    return out


def local_days(start: datetime, end: datetime, zone: tzinfo) -> list[date]:
    d = start.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    days = []
    while d <= last:
        days.append(d)
        d += timedelta(days=1)
    return days


def _day_bounds(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    return (datetime.combine(day, time(0), zone).astimezone(UTC),
            datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC))


# -- the query -----------------------------------------------------------------------------------------
def source_freshness(source: SourceInput, now: datetime) -> tuple[bool, str | None]:
    if source.error:
        return False, f"last sync failed: {source.error}"
    if source.max_age is None:
        return True, None
    if source.last_synced_at is None:
        return False, "never synced"
    age = now - source.last_synced_at
    if age > source.max_age:
        limit = int(source.max_age.total_seconds())
        return False, f"last successful sync {int(age.total_seconds())} s ago (limit {limit} s)"
    return True, None


def compute_availability(sources: Sequence[SourceInput], query: AvailabilityQuery,
                         extra_busy: Sequence[BusyInterval] = (),
                         expanded: dict[str, list[BusyInterval]] | None = None) -> AvailabilityResult:
    """Busy and free time of one vendor in the window. ``extra_busy``: our own bookings and live holds.
    ``expanded``: a cache of per-source busy intervals for this window (filled when given)."""
    if query.window_end <= query.window_start:
        raise ValueError("the window ends before it starts")
    if query.window_start.tzinfo is None or query.window_end.tzinfo is None:
        raise ValueError("window bounds must be timezone-aware")
    zone = vendor_zone(query.timezone)
    ws, we = query.window_start.astimezone(UTC), query.window_end.astimezone(UTC)
    now = query.now or datetime.now(UTC)
    warnings: list[str] = []
    busy: list[BusyInterval] = []
    reports: list[SourceReport] = []
    complete = True
    for src in sources:
        fresh, reason = source_freshness(src, now)
        items: list[BusyInterval] = []
        if fresh:
            cached = expanded.get(src.source_id) if expanded is not None else None
            if cached is None:
                try:
                    cached = expand_source(src, ws, we, zone, warnings)
                except CalendarDataError as exc:
                    fresh, reason, cached = False, f"unusable calendar data: {exc}", None
                if cached is not None and expanded is not None:
                    expanded[src.source_id] = cached
            items = cached or []
        if not fresh:
            complete = False
            items = [BusyInterval(ws, we, src.source_id, summary=f"source {src.name} unavailable", kind="stale")]
        reports.append(SourceReport(src.source_id, src.name, src.last_synced_at, fresh, reason, len(items)))
        busy.extend(items)
    busy.extend(b for b in extra_busy if b.end > ws and b.start < we)
    full_days: list[date] = []
    if query.capacity is not None:
        per_day: dict[date, set[tuple[str, str]]] = {}
        for b in busy:
            if b.kind in query.capacity.kinds:
                for d in local_days(b.start, b.end, zone):
                    per_day.setdefault(d, set()).add((b.source_id, b.uid or b.ref or b.start.isoformat()))
        for d, items_on_day in sorted(per_day.items()):
            if len(items_on_day) >= query.capacity.max_per_day:
                full_days.append(d)
                a, b2 = _day_bounds(d, zone)
                busy.append(BusyInterval(a, b2, "capacity", summary="day capacity reached", kind="capacity"))
    padded = [(b.start - query.buffer_before, b.end + query.buffer_after) if b.kind not in ("stale", "capacity")
              else (b.start, b.end) for b in busy]
    merged = [(max(a, ws), min(b, we)) for a, b in merge(padded) if b > ws and a < we]
    if query.working_hours is not None:
        opening: list[tuple[datetime, datetime]] = []
        for d in local_days(ws, we, zone):
            opening.extend(query.working_hours.spans_on(d, zone))
        base = [(max(a, ws), min(b, we)) for a, b in merge(opening) if b > ws and a < we]
    else:
        base = [(ws, we)]
    free = subtract(base, merged)
    busy.sort(key=lambda b: (b.start, b.end))
    return AvailabilityResult(ws, we, busy, merged, free, reports, complete, warnings, full_days)


def is_free(result: AvailabilityResult, start: datetime, end: datetime) -> bool:
    return any(a <= start and end <= b for a, b in result.free)
