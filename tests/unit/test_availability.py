"""The availability engine on real iCalendar snippets: recurrence, overrides, DST, all-day, floating times,
rules, working hours, buffers, capacity, staleness, and hostile input (bounded, never a hang)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pytest

from wedsync.domain.availability import (
    AvailabilityQuery,
    CalendarDataError,
    DayCapacity,
    SourceInput,
    SourceRules,
    WorkingHours,
    compute_availability,
    parse_calendar,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def cal(*events: str, extra: str = "") -> str:
    return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n" + extra + "".join(events) + "END:VCALENDAR\r\n"


def ev(body: str) -> str:
    lines = [ln.strip() for ln in body.strip().splitlines()]
    return "BEGIN:VEVENT\r\n" + "".join(f"{ln}\r\n" for ln in lines) + "END:VEVENT\r\n"


def busy(texts: list[str], start: datetime, end: datetime, tz: str = "Europe/Berlin", rules: SourceRules | None = None,
         **q: object) -> list[tuple[datetime, datetime]]:
    src = SourceInput("s1", "google", texts, rules=rules or SourceRules(), last_synced_at=NOW)
    res = compute_availability([src], AvailabilityQuery(start, end, tz, now=NOW, **q))  # type: ignore[arg-type]
    return [(b.start, b.end) for b in res.busy]


def u(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


WEEKLY = ev("""UID:w1
DTSTART;TZID=Europe/Berlin:20260302T100000
DTEND;TZID=Europe/Berlin:20260302T110000
RRULE:FREQ=WEEKLY;COUNT=6
EXDATE;TZID=Europe/Berlin:20260309T100000
SUMMARY:Studio time""")


def test_weekly_exdate_and_dst_wall_time() -> None:
    got = busy([cal(WEEKLY)], u(2026, 3, 1), u(2026, 5, 1))
    # 10:00 Berlin is 09:00 UTC before 29 March and 08:00 UTC after; 9 March is excluded
    assert got == [(u(2026, 3, 2, 9), u(2026, 3, 2, 10)), (u(2026, 3, 16, 9), u(2026, 3, 16, 10)),
                   (u(2026, 3, 23, 9), u(2026, 3, 23, 10)), (u(2026, 3, 30, 8), u(2026, 3, 30, 9)),
                   (u(2026, 4, 6, 8), u(2026, 4, 6, 9))]


def test_recurrence_id_override_and_cancelled_instance() -> None:
    moved = ev("""UID:w1
RECURRENCE-ID;TZID=Europe/Berlin:20260316T100000
DTSTART;TZID=Europe/Berlin:20260316T150000
DTEND;TZID=Europe/Berlin:20260316T160000""")
    cancelled = ev("""UID:w1
RECURRENCE-ID;TZID=Europe/Berlin:20260323T100000
DTSTART;TZID=Europe/Berlin:20260323T100000
DTEND;TZID=Europe/Berlin:20260323T110000
STATUS:CANCELLED""")
    got = busy([cal(WEEKLY, moved, cancelled)], u(2026, 3, 1), u(2026, 5, 1))
    assert (u(2026, 3, 16, 14), u(2026, 3, 16, 15)) in got
    assert (u(2026, 3, 16, 9), u(2026, 3, 16, 10)) not in got
    assert all(a.date() != date(2026, 3, 23) for a, _ in got)
    assert len(got) == 4


def test_override_in_separate_text_and_utc_recurrence_id() -> None:
    """Providers (CalDAV) may send the override with a UTC RECURRENCE-ID: matched by instant, not by text."""
    moved = ev("""UID:w1
RECURRENCE-ID:20260316T090000Z
DTSTART:20260316T130000Z
DTEND:20260316T140000Z""")
    got = busy([cal(WEEKLY), cal(moved)], u(2026, 3, 10), u(2026, 3, 20))
    assert got == [(u(2026, 3, 16, 13), u(2026, 3, 16, 14))]


def test_thisandfuture_shifts_every_later_instance() -> None:
    future = ev("""UID:w1
RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Berlin:20260323T100000
DTSTART;TZID=Europe/Berlin:20260323T140000
DTEND;TZID=Europe/Berlin:20260323T160000""")
    got = busy([cal(WEEKLY, future)], u(2026, 3, 1), u(2026, 5, 1))
    assert got == [(u(2026, 3, 2, 9), u(2026, 3, 2, 10)), (u(2026, 3, 16, 9), u(2026, 3, 16, 10)),
                   (u(2026, 3, 23, 13), u(2026, 3, 23, 15)), (u(2026, 3, 30, 12), u(2026, 3, 30, 14)),
                   (u(2026, 4, 6, 12), u(2026, 4, 6, 14))]


def test_dst_gap_and_repeated_hour() -> None:
    gap = ev("""UID:gap
DTSTART;TZID=America/New_York:20260308T023000
DTEND;TZID=America/New_York:20260308T033000""")
    fold = ev("""UID:fold
DTSTART;TZID=America/New_York:20261101T013000
DTEND;TZID=America/New_York:20261101T020000""")
    got = busy([cal(gap, fold)], u(2026, 3, 1), u(2026, 12, 1), tz="America/New_York")
    # 02:30 does not exist: read with the offset before the gap (EST) -> 07:30 UTC, i.e. 03:30 EDT
    assert got[0][0] == u(2026, 3, 8, 7, 30)
    # 01:30 happens twice: the first one (EDT) -> 05:30 UTC
    assert got[1][0] == u(2026, 11, 1, 5, 30)


def test_all_day_and_multi_day_in_vendor_zone() -> None:
    day = ev("""UID:d
DTSTART;VALUE=DATE:20260601
DTEND;VALUE=DATE:20260604
SUMMARY:Wedding fair""")
    got = busy([cal(day)], u(2026, 5, 30), u(2026, 6, 10), tz="America/Los_Angeles")
    assert got == [(u(2026, 6, 1, 7), u(2026, 6, 4, 7))]
    assert busy([cal(day)], u(2026, 5, 30), u(2026, 6, 10), rules=SourceRules(all_day_blocks=False)) == []


def test_floating_time_is_vendor_local_and_unknown_tzid_falls_back() -> None:
    floating = ev("""UID:f
DTSTART:20260601T090000
DTEND:20260601T100000""")
    custom = ev("""UID:c
DTSTART;TZID=My Own Zone:20260602T090000
DTEND;TZID=My Own Zone:20260602T100000""")
    src = SourceInput("s", "feed", [cal(floating, custom)], last_synced_at=NOW)
    res = compute_availability([src], AvailabilityQuery(u(2026, 5, 30), u(2026, 6, 5), "Asia/Tokyo", now=NOW))
    assert [(b.start, b.end) for b in res.busy] == [(u(2026, 6, 1, 0), u(2026, 6, 1, 1)),
                                                     (u(2026, 6, 2, 0), u(2026, 6, 2, 1))]
    assert any("My Own Zone" in w for w in res.warnings)


def test_iana_tzid_without_vtimezone_and_custom_vtimezone() -> None:
    iana = ev("""UID:i
DTSTART;TZID=Australia/Sydney:20260601T090000
DTEND;TZID=Australia/Sydney:20260601T100000""")
    vtz = ("BEGIN:VTIMEZONE\r\nTZID:Fixed+3\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:+0300\r\n"
           "TZOFFSETTO:+0300\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n")
    custom = ev("""UID:v
DTSTART;TZID=Fixed+3:20260602T090000
DTEND;TZID=Fixed+3:20260602T100000""")
    got = busy([cal(iana), cal(custom, extra=vtz)], u(2026, 5, 30), u(2026, 6, 5))
    assert got == [(u(2026, 5, 31, 23), u(2026, 6, 1, 0)), (u(2026, 6, 2, 6), u(2026, 6, 2, 7))]


def test_rules_transparency_tentative_cancelled() -> None:
    free = ev("""UID:t
DTSTART:20260601T090000Z
DTEND:20260601T100000Z
TRANSP:TRANSPARENT""")
    tent = ev("""UID:n
DTSTART:20260601T110000Z
DTEND:20260601T120000Z
STATUS:TENTATIVE""")
    gone = ev("""UID:x
DTSTART:20260601T130000Z
DTEND:20260601T140000Z
STATUS:CANCELLED""")
    texts = [cal(free, tent, gone)]
    assert busy(texts, u(2026, 6, 1), u(2026, 6, 2)) == [(u(2026, 6, 1, 11), u(2026, 6, 1, 12))]
    assert busy(texts, u(2026, 6, 1), u(2026, 6, 2), rules=SourceRules(tentative_busy=False)) == []
    assert len(busy(texts, u(2026, 6, 1), u(2026, 6, 2), rules=SourceRules(honor_transparency=False))) == 2


def test_working_hours_buffers_and_capacity() -> None:
    meeting = ev("""UID:m
DTSTART;TZID=Europe/London:20260601T120000
DTEND;TZID=Europe/London:20260601T130000""")
    wedding = ev("""UID:w
DTSTART;TZID=Europe/London:20260602T100000
DTEND;TZID=Europe/London:20260602T120000
SUMMARY:Jones wedding""")
    src = SourceInput("s", "g", [cal(meeting, wedding)], last_synced_at=NOW)
    wh = WorkingHours.from_spec({"mon": [["09:00", "17:00"]], "tue": [["09:00", "17:00"]]})
    q = AvailabilityQuery(u(2026, 6, 1), u(2026, 6, 3), "Europe/London", working_hours=wh,
                          buffer_before=timedelta(minutes=30), buffer_after=timedelta(minutes=15),
                          capacity=DayCapacity(1, frozenset({"wedding"})), now=NOW)
    res = compute_availability([src], q)
    # London is UTC+1 in June: Monday 08:00-16:00 UTC open, busy 10:30-12:15 UTC with buffers
    assert res.free == [(u(2026, 6, 1, 8), u(2026, 6, 1, 10, 30)), (u(2026, 6, 1, 12, 15), u(2026, 6, 1, 16))]
    assert res.full_days == [date(2026, 6, 2)]


def test_stale_and_failed_sources_fail_closed() -> None:
    fresh = SourceInput("a", "google", [cal()], last_synced_at=NOW)
    stale = SourceInput("b", "caldav", [cal()], last_synced_at=NOW - timedelta(hours=2),
                        max_age=timedelta(minutes=30))
    down = SourceInput("c", "outlook", [cal()], last_synced_at=NOW, error="Retriable: 503")
    never = SourceInput("d", "feed", [cal()], last_synced_at=None)
    res = compute_availability([fresh, stale, down, never], AvailabilityQuery(u(2026, 3, 1), u(2026, 3, 2), "UTC",
                                                                               now=NOW))
    assert res.free == [] and not res.complete
    assert [s.fresh for s in res.sources] == [True, False, False, False]
    assert "503" in (res.sources[2].reason or "")
    broken = SourceInput("e", "feed", ["BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"],
                         last_synced_at=NOW)
    res = compute_availability([broken], AvailabilityQuery(u(2026, 3, 1), u(2026, 3, 2), "UTC", now=NOW))
    assert res.free == [] and "no DTSTART" in (res.sources[0].reason or "")


@pytest.mark.parametrize("rule", [
    "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",  # never matches: dateutil alone searches to year 9999
    "FREQ=SECONDLY",
    "FREQ=MINUTELY;COUNT=2000000000",
    "FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=31;UNTIL=20990101T000000Z",
    "FREQ=YEARLY;BYWEEKNO=60",
    "FREQ=MINUTELY;INTERVAL=1;BYHOUR=9,10,11",
    "FREQ=MONTHLY;INTERVAL=0",  # dateutil loops forever on it
    "FREQ=MONTHLY;BYDAY=1FR;BYWEEKNO=-1;BYSETPOS=3",
])
def test_hostile_rrules_are_bounded(rule: str) -> None:
    hostile = ev(f"""UID:h
DTSTART:19800101T090000Z
DTEND:19800101T090100Z
RRULE:{rule}""")
    t0 = time.perf_counter()
    src = SourceInput("s", "feed", [cal(hostile)], last_synced_at=NOW)
    res = compute_availability([src], AvailabilityQuery(u(2026, 3, 1), u(2027, 9, 1), "UTC", now=NOW))
    assert time.perf_counter() - t0 < 2.0
    assert len(res.busy) <= 20_001


def test_hourly_series_from_long_ago_is_exact_after_rebasing() -> None:
    hourly = ev("""UID:h
DTSTART:19900101T000000Z
DTEND:19900101T001500Z
RRULE:FREQ=HOURLY;INTERVAL=5""")
    got = busy([cal(hourly)], u(2026, 3, 1), u(2026, 3, 2))
    # hours since 1990-01-01 00:00 divisible by 5
    expected = [h for h in range(24) if int((u(2026, 3, 1, h) - u(1990, 1, 1)).total_seconds() // 3600) % 5 == 0]
    assert [a.hour for a, _ in got] == expected


@pytest.mark.parametrize("data", [b"\xff\xfe\x00garbage", "not a calendar", "BEGIN:VCALENDAR\r\nFOO\r\n",
                                  "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:2026XX\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"])
def test_broken_input_is_a_clear_error(data: str | bytes) -> None:
    with pytest.raises(CalendarDataError):
        parse_calendar(data)


def test_rdate_periods_and_date_until() -> None:
    rdates = ev("""UID:r
DTSTART:20260601T090000Z
DTEND:20260601T100000Z
RDATE;VALUE=PERIOD:20260603T120000Z/20260603T150000Z,20260604T120000Z/PT2H
RDATE:20260605T090000Z""")
    got = busy([cal(rdates)], u(2026, 5, 30), u(2026, 6, 10))
    assert got == [(u(2026, 6, 1, 9), u(2026, 6, 1, 10)), (u(2026, 6, 3, 12), u(2026, 6, 3, 15)),
                   (u(2026, 6, 4, 12), u(2026, 6, 4, 14)), (u(2026, 6, 5, 9), u(2026, 6, 5, 10))]
    until = ev("""UID:d
DTSTART;TZID=Europe/Berlin:20260601T090000
DTEND;TZID=Europe/Berlin:20260601T100000
RRULE:FREQ=DAILY;UNTIL=20260603""")
    assert len(busy([cal(until)], u(2026, 5, 30), u(2026, 6, 10))) == 3  # a DATE UNTIL includes its day


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PARTS = st.fixed_dictionaries({
    "FREQ": st.sampled_from(["SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"]),
}, optional={
    "INTERVAL": st.integers(0, 1000).map(str),
    "COUNT": st.integers(-5, 10**9).map(str),
    "BYMONTH": st.lists(st.integers(-2, 14), min_size=1, max_size=3).map(lambda v: ",".join(map(str, v))),
    "BYMONTHDAY": st.lists(st.integers(-32, 32), min_size=1, max_size=3).map(lambda v: ",".join(map(str, v))),
    "BYDAY": st.lists(st.sampled_from(["MO", "TU", "1FR", "-1SU", "5SA"]), min_size=1, max_size=3).map(",".join),
    "BYHOUR": st.lists(st.integers(0, 23), min_size=1, max_size=4).map(lambda v: ",".join(map(str, v))),
    "BYSETPOS": st.sampled_from(["1", "-1", "400", "3"]),
    "BYWEEKNO": st.sampled_from(["1", "53", "60", "-1"]),
    "UNTIL": st.sampled_from(["20261231T000000Z", "20250101", "19990101T000000Z"]),
})


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(parts=_PARTS, start_year=st.integers(1971, 2030), all_day=st.booleans())
def test_any_rrule_is_bounded_or_a_clear_error(parts: dict[str, str], start_year: int, all_day: bool) -> None:
    rule = ";".join(f"{k}={v}" for k, v in parts.items())
    start = f"DTSTART;VALUE=DATE:{start_year}0105" if all_day else f"DTSTART:{start_year}0105T093000Z"
    text = cal(ev(f"UID:fz\n{start}\nDURATION:PT1H\nRRULE:{rule}"))
    src = SourceInput("s", "feed", [text], last_synced_at=NOW)
    t0 = time.perf_counter()
    res = compute_availability([src], AvailabilityQuery(u(2026, 3, 1), u(2027, 3, 1), "Europe/Paris", now=NOW))
    assert time.perf_counter() - t0 < 3.0
    # either usable (bounded instances) or refused as unusable, which fails closed
    assert res.complete or res.free == []


def test_long_series_rebased_exactly_with_count_and_all_day() -> None:
    daily = ev("""UID:c
DTSTART:20000101T080000Z
DTEND:20000101T083000Z
RRULE:FREQ=DAILY;COUNT=9500""")  # the last occurrence is 2026-01-03
    got = busy([cal(daily)], u(2025, 12, 30), u(2026, 1, 10))
    assert [a.day for a, _ in got] == [30, 31, 1, 2, 3]
    weekly = ev("""UID:w
DTSTART;VALUE=DATE:19900105
DTEND;VALUE=DATE:19900106
RRULE:FREQ=WEEKLY;INTERVAL=2""")
    got = busy([cal(weekly)], u(2026, 3, 1), u(2026, 4, 1), tz="UTC")
    # fortnightly Fridays counted from 5 January 1990
    assert all((a.date() - date(1990, 1, 5)).days % 14 == 0 for a, _ in got) and len(got) == 2
