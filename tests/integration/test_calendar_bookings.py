"""Bookings and holds behind the overlap guard, on SQLite and PostgreSQL: overlaps refused with a code,
holds expire, imports record conflicts, external busy time and stale sources block, 100 parallel requests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from wedsync.bootstrap import Hub
from wedsync.connectors.calendars.base import SourceChange
from wedsync.errors import Conflict, InvalidInput
from wedsync.services.calendar import BookingRequest
from wedsync.store.tables import Connection, new_id

T0 = datetime(2027, 6, 12, 14, 0, tzinfo=UTC)


def _vendor(hub: Hub) -> str:
    return hub.tenancy.create_vendor("Bloom & Stem", "Europe/London").id


def _req(start: datetime, hours: float = 2, **kw: object) -> BookingRequest:
    return BookingRequest(start=start, end=start + timedelta(hours=hours), **kw)  # type: ignore[arg-type]


def _source(hub: Hub, vendor_id: str, kind: str = "google-calendar", ics: str | None = None,
            synced: bool = True) -> str:
    with hub.db.session() as s:
        conn = Connection(id=new_id(), vendor_id=vendor_id, provider=kind, settings={})
        s.add(conn)
    src = hub.calendar.add_source(vendor_id, kind=kind, calendar_id=f"cal-{conn.id}", connection_id=conn.id)
    if ics is not None:
        hub.calendar.store_changes(src["id"], [SourceChange("ev1", ics, '"1"')])
    if synced:
        plan = hub.calendar.begin_sync(src["id"])
        hub.calendar.finish_sync(plan, "state-1", full=False)
    return str(src["id"])


def test_overlap_refused_adjacent_allowed(any_hub: Hub) -> None:
    svc = any_hub.calendar
    svc.auto_propagate = False
    v = _vendor(any_hub)
    first = svc.create_booking(v, _req(T0, title="Smith wedding"))
    assert first["status"] == "active"
    with pytest.raises(Conflict) as err:
        svc.create_booking(v, _req(T0 + timedelta(hours=1)))
    assert err.value.code == "booking_overlap"
    assert err.value.details["conflicting_id"] == first["id"]
    svc.create_booking(v, _req(T0 + timedelta(hours=2)))  # touching is not overlapping
    svc.create_booking(v, _req(T0, resource="van"))  # another resource is independent
    svc.cancel_booking(v, first["id"])
    svc.create_booking(v, _req(T0, hours=1))  # the cancelled booking frees its time
    with pytest.raises(InvalidInput):
        svc.create_booking(v, BookingRequest(start=T0, end=T0))


def test_holds_expire_and_block_until_then(any_hub: Hub) -> None:
    svc = any_hub.calendar
    svc.auto_propagate = False
    v = _vendor(any_hub)
    now = T0 - timedelta(days=10)
    hold = svc.create_booking(v, _req(T0, kind="hold", channel="the-knot", expires_at=now + timedelta(days=2)), now=now)
    with pytest.raises(Conflict) as err:
        svc.create_booking(v, _req(T0), now=now + timedelta(days=1))
    assert err.value.details["conflicting_kind"] == "hold"
    later = now + timedelta(days=3)
    booked = svc.create_booking(v, _req(T0), now=later)
    assert booked["status"] == "active"
    assert svc.get_booking(v, hold["id"])["status"] == "expired"


def test_import_conflict_recorded_not_dropped(any_hub: Hub) -> None:
    svc = any_hub.calendar
    svc.auto_propagate = False
    v = _vendor(any_hub)
    svc.create_booking(v, _req(T0))
    res = svc.import_booking(v, _req(T0 + timedelta(minutes=30), channel="calendly", external_ref="inv-1"))
    assert res["status"] == "conflict" and res["conflict_code"] == "booking_overlap"
    again = svc.import_booking(v, _req(T0 + timedelta(minutes=30), channel="calendly", external_ref="inv-1"))
    assert again["id"] == res["id"]  # idempotent by external reference
    recorded = svc.conflicts_recorded(v)
    assert len(recorded) == 1 and recorded[0]["channel"] == "calendly"
    ok = svc.import_booking(v, _req(T0 + timedelta(days=1), channel="acuity", external_ref="42"))
    assert ok["status"] == "active"
    cancelled = svc.import_booking(v, _req(T0 + timedelta(days=1), channel="acuity", external_ref="42"), cancelled=True)
    assert cancelled["status"] == "cancelled"


BUSY_ICS = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//test//EN\r
BEGIN:VEVENT\r
UID:dentist@example\r
DTSTART:20270612T150000Z\r
DTEND:20270612T160000Z\r
SUMMARY:Dentist\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_external_busy_and_stale_source_block(any_hub: Hub) -> None:
    svc = any_hub.calendar
    svc.auto_propagate = False
    v = _vendor(any_hub)
    src = _source(any_hub, v, ics=BUSY_ICS)
    with pytest.raises(Conflict) as err:
        svc.create_booking(v, _req(T0))
    assert err.value.code == "calendar_busy"
    svc.create_booking(v, _req(T0 + timedelta(hours=2)))
    svc.fail_sync(src, "Retriable: provider returned 503")
    with pytest.raises(Conflict) as err:
        svc.create_booking(v, _req(T0 + timedelta(days=3)))
    assert err.value.code == "calendar_unavailable"
    result = svc.availability(v, T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert not result.complete and result.free == []
    assert result.sources[0].fresh is False


def test_day_capacity(any_hub: Hub) -> None:
    svc = any_hub.calendar
    svc.auto_propagate = False
    v = _vendor(any_hub)
    svc.set_profile(v, capacity_max_per_day=1, capacity_kinds=["wedding"])
    svc.create_booking(v, _req(T0, category="wedding"))
    with pytest.raises(Conflict) as err:
        svc.create_booking(v, _req(T0 + timedelta(hours=4), category="wedding"))
    assert err.value.code == "day_capacity_reached"
    svc.create_booking(v, _req(T0 + timedelta(hours=4), category="consultation"))


def test_exclusion_constraint_on_postgresql(any_hub: Hub) -> None:
    """Even a writer that skips the service's check cannot insert an overlap on PostgreSQL."""
    if any_hub.db.engine.dialect.name != "postgresql":
        pytest.skip("the exclusion constraint exists on PostgreSQL only (SQLite: serialized writers)")
    v = _vendor(any_hub)
    any_hub.calendar.auto_propagate = False
    any_hub.calendar.create_booking(v, _req(T0))
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), any_hub.db.session() as s:
        s.execute(text("INSERT INTO calendar_bookings (id, vendor_id, resource, kind, status, start_at, end_at,"
                       " channel, title, created_at) VALUES (:id, :v, 'default', 'booking', 'active', :a, :b,"
                       " 'raw', '', now())"), {"id": new_id(), "v": v, "a": T0 + timedelta(minutes=10),
                                                "b": T0 + timedelta(hours=3)})


def test_parallel_requests_exactly_one_wins(any_hub: Hub) -> None:
    svc = any_hub.calendar
    svc.auto_propagate = False
    v = _vendor(any_hub)
    n = 40
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def attempt(i: int) -> None:
        start = T0 + timedelta(minutes=i % 7 * 10)
        channel = ("api", "calendly", "acuity")[i % 3]
        barrier.wait()
        try:
            if channel == "api":
                svc.create_booking(v, _req(start))
                out = "ok"
            else:
                res = svc.import_booking(v, _req(start, channel=channel, external_ref=f"{channel}-{i}"))
                out = "ok" if res["status"] == "active" else "409"
        except Conflict:
            out = "409"
        with lock:
            results.append(out)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1, results
    assert results.count("409") == n - 1
    active = svc.list_bookings(v, status="active")
    assert len(active) == 1


def _booking_ics(uid: str, start: datetime, hours: int = 1, status: str = "CONFIRMED") -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
            f"DTSTART:{start.strftime(fmt)}\r\nDTEND:{(start + timedelta(hours=hours)).strftime(fmt)}\r\n"
            f"SUMMARY:Consultation ({uid})\r\nSTATUS:{status}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def test_calendly_source_events_import_through_the_guard(any_hub: Hub) -> None:
    svc = any_hub.calendar
    svc.auto_propagate = False
    v = _vendor(any_hub)
    svc.create_booking(v, _req(T0, title="already booked"))
    src = _source(any_hub, v, kind="calendly", synced=False)
    svc.store_changes(src, [SourceChange("ev-a", _booking_ics("a", T0 + timedelta(days=1))),
                            SourceChange("ev-b", _booking_ics("b", T0 + timedelta(minutes=30)))])
    plan = svc.begin_sync(src)
    svc.finish_sync(plan, "2027-01-01T00:00:00Z", full=False)
    imported = {b["external_ref"]: b for b in svc.list_bookings(v) if b["channel"] == "calendly"}
    assert imported["ev-a"]["status"] == "active"
    assert imported["ev-b"]["status"] == "conflict"
    assert [c["external_ref"] for c in svc.conflicts_recorded(v)] == ["ev-b"]
    # canceled at Calendly, and a second run changes nothing else
    svc.store_changes(src, [SourceChange("ev-a", _booking_ics("a", T0 + timedelta(days=1), status="CANCELLED"))])
    svc.finish_sync(svc.begin_sync(src), "2027-01-02T00:00:00Z", full=False)
    assert svc.get_booking(v, imported["ev-a"]["id"])["status"] == "cancelled"
    assert len(svc.conflicts_recorded(v)) == 1
