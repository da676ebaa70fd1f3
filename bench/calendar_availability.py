"""Availability for one vendor with 5 calendars and 18 months of events, recurring ones included.

Data: per calendar ~1 event per working day over 18 months (singles, all-day fairs, multi-day trips) plus
weekly/daily series with EXDATEs and RECURRENCE-ID overrides (one THISANDFUTURE), stored in the hub (SQLite)
as each provider would deliver them (one VCALENDAR per item). Figures, all through ``CalendarService``:

* cold: the first query in a fresh process (DB read, parse, expansion, merge, working hours);
* warm: the same query again (the expansion cache per source version and window);
* warm, new window: a shifted window (parsed calendars cached, expansion redone).

Raw baseline in the same run: plain ``recurring_ical_events.of(cal).between(start, end)`` over the same texts
(parse + expand, nothing else). Run: ``.venv/bin/python bench/calendar_availability.py``.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WEDSYNC_LOG_LEVEL", "WARNING")

FMT = "%Y%m%dT%H%M%SZ"
START = datetime(2027, 1, 1, tzinfo=UTC)
MONTHS = 18


def vcal(body: str) -> str:
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\n{body}END:VCALENDAR\r\n"


def vevent(uid: str, start: datetime, end: datetime, extra: str = "", *, all_day: bool = False) -> str:
    if all_day:
        times = f"DTSTART;VALUE=DATE:{start:%Y%m%d}\r\nDTEND;VALUE=DATE:{end:%Y%m%d}\r\n"
    else:
        times = f"DTSTART:{start.strftime(FMT)}\r\nDTEND:{end.strftime(FMT)}\r\n"
    return f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{times}SUMMARY:{uid}\r\n{extra}END:VEVENT\r\n"


def calendar_items(k: int, rng: random.Random) -> list[tuple[str, str]]:
    items = []
    days = MONTHS * 30
    for d in range(days):
        day = START + timedelta(days=d)
        if day.weekday() >= 5 and rng.random() < 0.5:
            continue
        start = day.replace(hour=8 + rng.randrange(9))
        uid = f"c{k}-e{d}"
        if d % 41 == 0:
            items.append((uid, vcal(vevent(uid, day, day + timedelta(days=1 + d % 3), all_day=True))))
        else:
            extra = "TRANSP:TRANSPARENT\r\n" if d % 13 == 0 else "STATUS:TENTATIVE\r\n" if d % 17 == 0 else ""
            items.append((uid, vcal(vevent(uid, start, start + timedelta(minutes=30 * (1 + rng.randrange(4))),
                                           extra))))
    for s in range(8):
        uid = f"c{k}-series{s}"
        first = START.replace(hour=9 + s) + timedelta(days=s)
        rule = "RRULE:FREQ=WEEKLY;BYDAY=MO,WE\r\n" if s % 2 else "RRULE:FREQ=DAILY;INTERVAL=3\r\n"
        exdates = "".join(f"EXDATE:{(first + timedelta(days=7 * w)).strftime(FMT)}\r\n" for w in range(1, 4))
        body = vevent(uid, first, first + timedelta(hours=1), rule + exdates)
        moved = first + timedelta(days=21)
        body += vevent(uid, moved + timedelta(hours=2), moved + timedelta(hours=3),
                       f"RECURRENCE-ID:{moved.strftime(FMT)}\r\n")
        if s == 0:
            cut = first + timedelta(days=300)
            body += vevent(uid, cut + timedelta(hours=1), cut + timedelta(hours=2),
                           f"RECURRENCE-ID;RANGE=THISANDFUTURE:{cut.strftime(FMT)}\r\n")
        items.append((uid, vcal(body)))
    return items


def main() -> None:
    import recurring_ical_events
    from icalendar import Calendar

    from wedsync.bootstrap import Hub
    from wedsync.config import Settings
    from wedsync.connectors.calendars.base import SourceChange
    from wedsync.store.tables import Connection, new_id

    rng = random.Random(5)
    data = {k: calendar_items(k, rng) for k in range(5)}
    total = sum(len(v) for v in data.values())
    home = Path(tempfile.mkdtemp(prefix="wedsync-calavail-"))
    hub = Hub(Settings(home=home, log_level="WARNING"))
    svc = hub.calendar
    svc.auto_propagate = False
    v = hub.tenancy.create_vendor("Bloom & Vine", "Europe/London").id
    svc.set_profile(v, working_hours={d: [["08:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat")},
                    buffer_after_min=15, capacity_max_per_day=1, capacity_kinds=["wedding"])
    kinds = ["google-calendar", "microsoft-graph", "apple-caldav", "google-calendar", "microsoft-graph"]
    for k, items in data.items():
        with hub.db.session() as s:
            conn = Connection(id=new_id(), vendor_id=v, provider=kinds[k], settings={})
            s.add(conn)
        src = svc.add_source(v, kind=kinds[k], calendar_id=f"cal-{k}", connection_id=conn.id, writable=False)
        svc.store_changes(src["id"], [SourceChange(uid, text, "1") for uid, text in items])
        svc.finish_sync(svc.begin_sync(src["id"]), "state", full=False)
    window = (START, START + timedelta(days=MONTHS * 30))
    print(f"5 calendars, {total} stored items, window {window[0]:%Y-%m-%d}..{window[1]:%Y-%m-%d}")

    # raw baseline: parse + recurring-ical-events over the same texts
    texts = [t for items in data.values() for _, t in items]
    raw_times = []
    raw_instances = 0
    for _ in range(3):
        t0 = time.perf_counter()
        raw_instances = 0
        for text in texts:
            raw_instances += len(recurring_ical_events.of(Calendar.from_ical(text)).between(*window))
        raw_times.append(time.perf_counter() - t0)
    raw = min(raw_times)

    t0 = time.perf_counter()
    first = svc.availability(v, *window)
    cold = time.perf_counter() - t0
    warm_times = []
    for _ in range(30):
        t0 = time.perf_counter()
        res = svc.availability(v, *window)
        warm_times.append(time.perf_counter() - t0)
    warm = statistics.median(warm_times)
    shifted = []
    for i in range(1, 6):
        t0 = time.perf_counter()
        svc.availability(v, window[0] + timedelta(hours=i), window[1] + timedelta(hours=i))
        shifted.append(time.perf_counter() - t0)
    one_week = []
    for i in range(20):
        a = START + timedelta(days=7 * i)
        t0 = time.perf_counter()
        svc.availability(v, a, a + timedelta(days=7))
        one_week.append(time.perf_counter() - t0)
    assert res.merged_busy == first.merged_busy
    print(f"busy instances {len(first.busy)} (raw expansion {raw_instances}), free spans {len(first.free)}, "
          f"complete={first.complete}")
    print(f"raw recurring-ical-events parse+expand (best of 3): {raw * 1000:8.1f} ms")
    print(f"cold availability (first query):                   {cold * 1000:8.1f} ms   ratio to raw {cold / raw:.2f}")
    print(f"warm availability (median of 30):                  {warm * 1000:8.1f} ms   ratio to raw {warm / raw:.3f}")
    print(f"warm, shifted 18-month window (median of 5):       {statistics.median(shifted) * 1000:8.1f} ms")
    print(f"one-week windows, first time each (median of 20):  {statistics.median(one_week) * 1000:8.1f} ms")
    print("target: warm < 50 ms")
    hub.close()


if __name__ == "__main__":
    main()
