"""Scheduling on top of availability: slot search for meeting requests, ICS invitations (METHOD:REQUEST),
conflict detection with suggested resolutions, and the availability report. No I/O."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

from wedsync.domain.availability import BusyInterval, merge, subtract

MEETING_TYPES = {  # default durations (minutes) when a request gives none
    "consultation": 60,
    "venue_visit": 90,
    "contract_signing": 30,
    "planning_session": 120,
}
PRODID = "-//WedSync//Calendar Engine//EN"


@dataclass
class MeetingRequest:
    meeting_type: str
    duration: timedelta
    preferred_dates: list[date] = field(default_factory=list)
    location: str = ""  # "" = remote/phone: no travel buffer
    earliest: datetime | None = None
    latest: datetime | None = None


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    preferred: bool
    travel_before: bool
    travel_after: bool

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "preferred": self.preferred,
                "travel_buffer_before": self.travel_before, "travel_buffer_after": self.travel_after}


def _norm_loc(value: str) -> str:
    return " ".join(value.lower().split())


def find_slots(free: Sequence[tuple[datetime, datetime]], busy: Sequence[BusyInterval], request: MeetingRequest,
               zone: ZoneInfo, *, step: timedelta = timedelta(minutes=30),
               travel_buffer: timedelta = timedelta(minutes=30), limit: int = 10) -> list[Slot]:
    """Slots of ``request.duration`` inside ``free`` (already net of busy time and the vendor's buffers),
    aligned to ``step`` in the vendor's zone. A slot next to an item at a different location keeps
    ``travel_buffer`` clear on that side. Preferred dates come first, then the earliest."""
    if request.duration <= timedelta(0):
        raise ValueError("duration must be positive")
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    loc = _norm_loc(request.location)
    located = sorted((b for b in busy if b.location and b.kind not in ("stale", "capacity")),
                     key=lambda b: b.start)
    preferred = set(request.preferred_dates)
    found: list[Slot] = []
    for a, b in free:
        if request.earliest:
            a = max(a, request.earliest)
        if request.latest:
            b = min(b, request.latest)
        local = a.astimezone(zone)
        # align the first candidate to the step grid of the local day
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        offset = (local - midnight) % step
        cur = a if offset == timedelta(0) else a + (step - offset)
        while cur + request.duration <= b:
            end = cur + request.duration
            t_before = t_after = False
            ok = True
            if loc:
                for item in located:
                    if _norm_loc(item.location) == loc:
                        continue
                    if item.end <= cur and cur - item.end < travel_buffer:
                        ok, t_before = False, True
                    if item.start >= end and item.start - end < travel_buffer:
                        ok, t_after = False, True
            if ok:
                found.append(Slot(cur, end, cur.astimezone(zone).date() in preferred, t_before, t_after))
            cur += step
            if len(found) >= limit * 20:
                break
    found.sort(key=lambda s: (not s.preferred, s.start))
    return found[:limit]


def invitation_ics(*, uid: str, start: datetime, end: datetime, summary: str, organizer_email: str | None,
                   attendee_email: str | None, location: str = "", description: str = "", sequence: int = 0,
                   method: str = "REQUEST", stamp: datetime | None = None) -> str:
    """An iTIP invitation (RFC 5546): ``METHOD:REQUEST`` (or ``CANCEL``) with one VEVENT in UTC."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", method)
    ev = icalendar.Event()
    ev.add("uid", uid)
    ev.add("dtstamp", stamp or datetime.now(UTC))
    ev.add("dtstart", start.astimezone(UTC))
    ev.add("dtend", end.astimezone(UTC))
    ev.add("summary", summary)
    ev.add("sequence", sequence)
    ev.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    if location:
        ev.add("location", location)
    if description:
        ev.add("description", description)
    if organizer_email:
        ev.add("organizer", f"mailto:{organizer_email}")
    if attendee_email:
        att = icalendar.vCalAddress(f"mailto:{attendee_email}")
        att.params["ROLE"] = icalendar.vText("REQ-PARTICIPANT")
        att.params["PARTSTAT"] = icalendar.vText("NEEDS-ACTION")
        att.params["RSVP"] = icalendar.vText("TRUE")
        ev.add("attendee", att)
    cal.add_component(ev)
    return str(cal.to_ical().decode("utf-8"))


# -- conflicts -----------------------------------------------------------------------------------------
@dataclass
class BookingView:
    """A booking or live hold as the conflict detector and the report see it."""

    id: str
    kind: str  # booking | hold
    start: datetime
    end: datetime
    title: str = ""
    channel: str = "api"
    wedding_id: str | None = None
    location: str = ""
    category: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None


def detect_conflicts(bookings: Sequence[BookingView], busy: Sequence[BusyInterval],
                     free: Sequence[tuple[datetime, datetime]], *, travel_buffer: timedelta,
                     recorded: Sequence[dict[str, Any]] = (), now: datetime | None = None) -> dict[str, Any]:
    """Conflicts (a booking overlapping an external busy event, or a recorded import clash), potential
    conflicts (tentative overlaps, a stale source over a booking, too little travel time, a hold about to
    expire), impacted weddings, and suggested resolutions (the nearest free slot of the same length)."""
    now = now or datetime.now(UTC)
    conflicts: list[dict[str, Any]] = []
    potential: list[dict[str, Any]] = []
    impacted: set[str] = set()
    suggestions: list[dict[str, Any]] = []
    external = [b for b in busy if b.kind not in ("booking", "hold", "capacity") and not b.own_block]
    ordered = sorted(bookings, key=lambda b: b.start)

    def suggest(bk: BookingView, reason: str) -> None:
        length = bk.end - bk.start
        best = None
        for a, b in free:
            if b - a >= length:
                cand = a if a >= bk.start else max(a, min(bk.start, b - length))
                if best is None or abs(cand - bk.start) < abs(best - bk.start):
                    best = cand
        if best is not None:
            suggestions.append({"booking_id": bk.id, "action": "reschedule", "reason": reason,
                                "start": best.isoformat(), "end": (best + length).isoformat()})
        else:
            suggestions.append({"booking_id": bk.id, "action": "contact_client", "reason": reason})

    for bk in ordered:
        for ev in external:
            if ev.start < bk.end and bk.start < ev.end:
                entry = {"booking_id": bk.id, "booking_title": bk.title, "source_id": ev.source_id,
                         "event_uid": ev.uid, "event_summary": ev.summary, "start": max(bk.start, ev.start).isoformat(),
                         "end": min(bk.end, ev.end).isoformat(), "wedding_id": bk.wedding_id}
                if ev.kind == "stale":
                    potential.append({**entry, "type": "source_unavailable"})
                elif ev.kind == "tentative":
                    potential.append({**entry, "type": "tentative_overlap"})
                else:
                    conflicts.append({**entry, "type": "external_overlap"})
                    suggest(bk, "overlaps an event in a connected calendar")
                if bk.wedding_id:
                    impacted.add(bk.wedding_id)
    for prev, nxt in itertools.pairwise(ordered):
        if prev.location and nxt.location and _norm_loc(prev.location) != _norm_loc(nxt.location) and \
                timedelta(0) <= nxt.start - prev.end < travel_buffer:
            potential.append({"type": "travel_time", "booking_id": nxt.id, "after_booking_id": prev.id,
                              "gap_minutes": int((nxt.start - prev.end).total_seconds() // 60),
                              "wedding_id": nxt.wedding_id})
            for w in (prev.wedding_id, nxt.wedding_id):
                if w:
                    impacted.add(w)
    for bk in ordered:
        if bk.kind == "hold" and bk.expires_at is not None and bk.expires_at - now < timedelta(hours=24):
            potential.append({"type": "hold_expiring", "booking_id": bk.id, "expires_at": bk.expires_at.isoformat()})
            suggestions.append({"booking_id": bk.id, "action": "confirm_or_release_hold",
                                "reason": "the hold expires within 24 hours"})
    for rec in recorded:
        conflicts.append({"type": rec.get("kind", "import_overlap"), **rec})
        suggestions.append({"conflict_id": rec.get("id"), "action": "reschedule_import",
                            "reason": f"a {rec.get('channel')} booking arrived for time already booked"})
    actions = []
    if conflicts:
        actions.append(f"resolve {len(conflicts)} double booking(s) before confirming new work")
    if any(p["type"] == "source_unavailable" for p in potential):
        actions.append("reconnect the calendars marked unavailable: their time is blocked until they sync")
    if any(p["type"] == "travel_time" for p in potential):
        actions.append("leave travel time between meetings at different locations")
    return {"conflicts": conflicts, "potential_conflicts": potential, "resolution_suggestions": suggestions,
            "impacted_weddings": sorted(impacted), "recommended_actions": actions}


# -- report --------------------------------------------------------------------------------------------
def _hours(spans: Sequence[tuple[datetime, datetime]]) -> float:
    return round(sum((b - a).total_seconds() for a, b in spans) / 3600, 2)


def availability_report(*, window_start: datetime, window_end: datetime, opening: Sequence[tuple[datetime, datetime]],
                        busy: Sequence[BusyInterval], bookings: Sequence[BookingView], zone: ZoneInfo
                        ) -> dict[str, Any]:
    """Available and booked hours inside opening hours, utilization, peak demand periods (weekday and month
    by booked hours) and booking patterns (by channel, meeting kind, weekday, lead time)."""
    opening_m = merge(opening)
    busy_m = merge((b.start, b.end) for b in busy if b.kind not in ("stale", "capacity"))
    booked = merge((b.start, b.end) for b in bookings)
    busy_in_open = subtract(opening_m, subtract(opening_m, busy_m))
    free = subtract(opening_m, busy_m)
    open_h = _hours(opening_m)
    busy_h = _hours(busy_in_open)
    by_weekday: dict[str, float] = {}
    by_month: dict[str, float] = {}
    for a, b in busy_in_open:
        la = a.astimezone(zone)
        hours = (b - a).total_seconds() / 3600
        by_weekday[la.strftime("%A")] = by_weekday.get(la.strftime("%A"), 0.0) + hours
        by_month[la.strftime("%Y-%m")] = by_month.get(la.strftime("%Y-%m"), 0.0) + hours
    top_days = sorted(by_weekday.items(), key=lambda kv: -kv[1])[:3]
    top_months = sorted(by_month.items(), key=lambda kv: -kv[1])[:3]
    peaks = [{"period": k, "kind": "weekday", "busy_hours": round(v, 2)} for k, v in top_days] + \
        [{"period": k, "kind": "month", "busy_hours": round(v, 2)} for k, v in top_months]
    channels = Counter(b.channel for b in bookings)
    kinds = Counter(b.category or b.kind for b in bookings)
    weekdays = Counter(b.start.astimezone(zone).strftime("%A") for b in bookings)
    leads = sorted((b.start - b.created_at).days for b in bookings if b.created_at is not None)
    patterns = [
        {"pattern": "by_channel", "counts": dict(channels)},
        {"pattern": "by_kind", "counts": dict(kinds)},
        {"pattern": "by_weekday", "counts": dict(weekdays)},
        {"pattern": "median_lead_time_days", "value": leads[len(leads) // 2] if leads else None},
    ]
    biggest_free = sorted(free, key=lambda s: s[1] - s[0], reverse=True)[:3]
    return {
        "timeframe": {"start": window_start.isoformat(), "end": window_end.isoformat()},
        "open_hours": open_h,
        "total_available_hours": _hours(free),
        "busy_hours": busy_h,
        "booked_hours": _hours(booked),
        "utilization_rate": round(busy_h / open_h, 4) if open_h else 0.0,
        "peak_demand_periods": peaks,
        "booking_patterns": patterns,
        "revenue_opportunities": [{"start": a.isoformat(), "end": b.isoformat(),
                                   "hours": round((b - a).total_seconds() / 3600, 2)} for a, b in biggest_free],
    }
