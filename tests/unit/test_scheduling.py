"""Slot search (steps, preferred dates, travel buffers), ICS invitations, conflict detection and the report."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from wedsync.domain.availability import BusyInterval
from wedsync.domain.scheduling import (
    BookingView,
    MeetingRequest,
    availability_report,
    detect_conflicts,
    find_slots,
    invitation_ics,
)

UTCZ = ZoneInfo("UTC")


def u(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_slots_aligned_preferred_first_and_travel_buffer() -> None:
    free = [(u(2027, 5, 17, 9, 10), u(2027, 5, 17, 12)), (u(2027, 5, 18, 9), u(2027, 5, 18, 11))]
    busy = [BusyInterval(u(2027, 5, 18, 8), u(2027, 5, 18, 9), "s", location="Covent Garden")]
    req = MeetingRequest("venue_visit", timedelta(minutes=60), [date(2027, 5, 18)], location="Kew Gardens")
    slots = find_slots(free, busy, req, UTCZ, step=timedelta(minutes=30), travel_buffer=timedelta(minutes=45))
    assert slots[0].preferred and slots[0].start == u(2027, 5, 18, 10)  # 09:00 and 09:30 lack travel time
    assert [s.start for s in slots if not s.preferred] == [u(2027, 5, 17, 9, 30), u(2027, 5, 17, 10),
                                                           u(2027, 5, 17, 10, 30), u(2027, 5, 17, 11)]
    same_place = MeetingRequest("venue_visit", timedelta(minutes=60), [date(2027, 5, 18)], location="covent  garden")
    assert find_slots(free, busy, same_place, UTCZ)[0].start == u(2027, 5, 18, 9)
    with pytest.raises(ValueError):
        find_slots(free, busy, MeetingRequest("consultation", timedelta(0)), UTCZ)


def test_invitation_is_itip_request() -> None:
    text = invitation_ics(uid="b1@wedsync", start=u(2027, 5, 17, 10), end=u(2027, 5, 17, 11), summary="Consultation",
                          organizer_email="studio@example.com", attendee_email="couple@example.com",
                          location="Studio", stamp=u(2027, 5, 1))
    cal = icalendar.Calendar.from_ical(text)
    assert str(cal["METHOD"]) == "REQUEST"
    ev = cal.walk("VEVENT")[0]
    assert ev["DTSTART"].dt == u(2027, 5, 17, 10) and str(ev["ORGANIZER"]) == "mailto:studio@example.com"
    assert ev["ATTENDEE"].params["RSVP"] == "TRUE"


def test_conflicts_potential_and_suggestions() -> None:
    now = u(2027, 5, 16)
    bookings = [
        BookingView("b1", "booking", u(2027, 5, 17, 10), u(2027, 5, 17, 12), "Smith", wedding_id="w-smith",
                    location="Church"),
        BookingView("b2", "booking", u(2027, 5, 17, 12, 10), u(2027, 5, 17, 13), "Jones", wedding_id="w-jones",
                    location="Barn"),
        BookingView("h1", "hold", u(2027, 5, 20, 10), u(2027, 5, 20, 18), "Knot hold", channel="the-knot",
                    expires_at=now + timedelta(hours=5)),
    ]
    busy = [BusyInterval(u(2027, 5, 17, 11), u(2027, 5, 17, 11, 30), "g", uid="dentist", summary="Dentist"),
            BusyInterval(u(2027, 5, 20, 9), u(2027, 5, 20, 11), "o", kind="tentative"),
            BusyInterval(u(2027, 5, 17, 10), u(2027, 5, 17, 12), "o", own_block=True)]
    free = [(u(2027, 5, 18, 9), u(2027, 5, 18, 17))]
    out = detect_conflicts(bookings, busy, free, travel_buffer=timedelta(minutes=30), now=now,
                           recorded=[{"id": "c1", "kind": "import_overlap", "channel": "calendly"}])
    types = sorted(c["type"] for c in out["conflicts"])
    assert types == ["external_overlap", "import_overlap"]
    assert sorted(p["type"] for p in out["potential_conflicts"]) == ["hold_expiring", "tentative_overlap",
                                                                     "travel_time"]
    assert out["impacted_weddings"] == ["w-jones", "w-smith"]
    move = next(s for s in out["resolution_suggestions"] if s.get("booking_id") == "b1")
    assert move["action"] == "reschedule" and move["start"] == u(2027, 5, 18, 9).isoformat()
    assert out["recommended_actions"]


def test_report_hours_utilization_and_patterns() -> None:
    opening = [(u(2027, 5, 17, 9), u(2027, 5, 17, 17)), (u(2027, 5, 18, 9), u(2027, 5, 18, 17))]
    busy = [BusyInterval(u(2027, 5, 17, 10), u(2027, 5, 17, 12), "bookings"),
            BusyInterval(u(2027, 5, 17, 18), u(2027, 5, 17, 20), "g")]  # outside opening: not counted
    bookings = [BookingView("b1", "booking", u(2027, 5, 17, 10), u(2027, 5, 17, 12), channel="calendly",
                            category="consultation", created_at=u(2027, 5, 1))]
    rep = availability_report(window_start=u(2027, 5, 17), window_end=u(2027, 5, 19), opening=opening, busy=busy,
                              bookings=bookings, zone=UTCZ)
    assert rep["open_hours"] == 16 and rep["busy_hours"] == 2 and rep["total_available_hours"] == 14
    assert rep["booked_hours"] == 2 and rep["utilization_rate"] == 0.125
    assert rep["peak_demand_periods"][0] == {"period": "Monday", "kind": "weekday", "busy_hours": 2.0}
    patterns = {p["pattern"]: p for p in rep["booking_patterns"]}
    assert patterns["by_channel"]["counts"] == {"calendly": 1}
    assert patterns["median_lead_time_days"]["value"] == 16
