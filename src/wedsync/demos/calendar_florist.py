"""The florist's story: Google Calendar and Outlook (sandboxes) in one availability, a Knot-style deposit hold
shown through the public availability feed, a double booking refused, and busy blocks propagated both ways."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rich.table import Table
from sqlalchemy import delete

from wedsync.demos import DemoContext
from wedsync.errors import Conflict

TITLE = "Calendar sync: one true availability for Bloom & Vine Florist (issue 5)"
VENDOR = "Bloom & Vine Florist"
ZONE = "Europe/London"


def _vendor(hub: Any) -> str:
    for v in hub.tenancy.list_vendors():
        if v.name == VENDOR:
            return str(v.id)
    return str(hub.tenancy.create_vendor(VENDOR, ZONE).id)


def _connection(hub: Any, vendor_id: str, provider: str, base_url: str, token: str) -> str:
    for c in hub.connections.list(vendor_id):
        if c.provider == provider:
            hub.connections.delete(vendor_id, c.id)  # a fresh sandbox each run: start clean
    conn = hub.connections.create(vendor_id, provider, credentials={}, base_url=base_url)
    with hub.db.session() as s:  # the sandbox's static token stands in for the OAuth grant
        hub.vault.store(s, vendor_id, conn.id, {**hub.connections.credentials(conn), "access_token": token})
    return str(conn.id)


def _next_saturday(zone: ZoneInfo) -> datetime:
    today = datetime.now(zone).date()
    day = today + timedelta(days=(5 - today.weekday()) % 7 or 7)
    return datetime.combine(day + timedelta(days=14), time(0), zone)


def run_story(ctx: DemoContext) -> list[tuple[str, str]]:
    from wedsync.sandbox import google_calendar as gsandbox
    from wedsync.sandbox import microsoft_graph as msandbox
    from wedsync.services.calendar import BookingRequest
    from wedsync.store.tables_calendar import CalendarBooking, CalendarConflict

    hub, console = ctx.hub, ctx.console
    svc = hub.calendar
    svc.auto_propagate = False  # the story drives propagation itself, step by step
    zone = ZoneInfo(ZONE)
    vendor_id = _vendor(hub)
    svc.set_profile(vendor_id, working_hours={d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri",
                                                                                 "sat")},
                    buffer_after_min=15, travel_buffer_min=30, capacity_max_per_day=1, capacity_kinds=["wedding"])
    with hub.db.session() as s:  # rerunnable: this demo vendor's earlier bookings and conflicts go
        s.execute(delete(CalendarBooking).where(CalendarBooking.vendor_id == vendor_id))
        s.execute(delete(CalendarConflict).where(CalendarConflict.vendor_id == vendor_id))
    g_conn = _connection(hub, vendor_id, "google-calendar", ctx.sandbox_url + gsandbox.PREFIX,
                         gsandbox.DEFAULT_ACCESS_TOKEN)
    m_conn = _connection(hub, vendor_id, "microsoft-graph", ctx.sandbox_url + msandbox.PREFIX,
                         msandbox.DEFAULT_ACCESS_TOKEN)

    async def story() -> dict[str, Any]:
        out: dict[str, Any] = {}
        from wedsync.connectors.calendars.microsoft_graph import MicrosoftGraphConnector

        probe = MicrosoftGraphConnector(access_token=msandbox.DEFAULT_ACCESS_TOKEN,
                                        base_url=ctx.sandbox_url + msandbox.PREFIX)
        outlook_cal = next(c for c in await probe.list_calendars() if c.primary or c.writable)
        await probe.aclose()
        g_src = svc.add_source(vendor_id, kind="google-calendar", calendar_id=gsandbox.PRIMARY_ID,
                               connection_id=g_conn, name="Google: Bloom & Vine")["id"]
        m_src = svc.add_source(vendor_id, kind="microsoft-graph", calendar_id=outlook_cal.id,
                               connection_id=m_conn, name="Outlook: studio")["id"]
        out["syncs"] = [await svc.sync_source(g_src), await svc.sync_source(m_src)]
        out["propagation"] = await svc.propagate(vendor_id)
        saturday = _next_saturday(zone)
        out["saturday"] = saturday
        hold = svc.create_booking(vendor_id, BookingRequest(
            start=saturday.replace(hour=9), end=saturday.replace(hour=22), kind="hold", channel="the-knot",
            external_ref=f"knot-deposit-{saturday.date()}", title="Knot enquiry: Patel wedding (deposit hold)",
            category="wedding", expires_at=datetime.now(UTC) + timedelta(days=3), check_calendars=False))
        out["hold"] = hold
        try:
            svc.create_booking(vendor_id, BookingRequest(start=saturday.replace(hour=14),
                                                         end=saturday.replace(hour=17), title="Walk-in wedding",
                                                         category="wedding"))
            out["refused"] = None
        except Conflict as exc:
            out["refused"] = exc.code
        out["calendly"] = svc.import_booking(vendor_id, BookingRequest(
            start=saturday.replace(hour=11), end=saturday.replace(hour=12), channel="calendly",
            external_ref=f"demo-invitee-{saturday.date()}", title="Calendly consultation"))
        out["after_hold"] = await svc.propagate(vendor_id)
        out["g_src"], out["m_src"] = g_src, m_src
        await hub.connections.aclose()
        await svc.aclose()
        return out

    try:
        res = asyncio.run(story())
    finally:
        svc.auto_propagate = True  # the API that runs after the stories propagates on its own again
    syncs = res["syncs"]
    t = Table(title="Calendars read (sandboxes)")
    for col in ("calendar", "status", "pages", "items"):
        t.add_column(col)
    for name, r in zip(("Google Calendar", "Outlook 365"), syncs, strict=True):
        t.add_row(name, r["status"], str(r["pages"]), str(r["items"]))
    console.print(t)

    now = datetime.now(UTC)
    start = datetime.combine(now.astimezone(zone).date() + timedelta(days=1), time(0), zone)
    avail = svc.availability(vendor_id, start, start + timedelta(days=7))
    t = Table(title="Free time next week (working hours 09:00-18:00, 15 min buffer, one wedding a day)")
    t.add_column("day")
    t.add_column("free hours", justify="right")
    t.add_column("free spans")
    by_day: dict[str, list[str]] = {}
    hours: dict[str, float] = {}
    for a, b in avail.free:
        key = a.astimezone(zone).strftime("%a %d %b")
        by_day.setdefault(key, []).append(f"{a.astimezone(zone):%H:%M}-{b.astimezone(zone):%H:%M}")
        hours[key] = hours.get(key, 0.0) + (b - a).total_seconds() / 3600
    for key, spans in by_day.items():
        t.add_row(key, f"{hours[key]:.1f}", ", ".join(spans[:4]) + (" ..." if len(spans) > 4 else ""))
    console.print(t)
    for rep in avail.sources:
        console.print(f"  source {rep.name}: {'fresh' if rep.fresh else 'STALE: ' + str(rep.reason)}")

    feed = svc.create_feed_token(vendor_id, "The Knot")
    sat = res["saturday"]
    console.print(f"The Knot has no calendar API: it reads the availability feed {ctx.public_url}{feed['path']}")
    console.print(f"Knot deposit hold on {sat:%a %d %b}: [bold]{res['hold']['status']}[/bold] until "
                  f"{res['hold']['expires_at'][:16]}")
    console.print(f"A second wedding on that day through the API: refused with 409 [bold]{res['refused']}[/bold]")
    cal = res["calendly"]
    console.print(f"A Calendly booking for the same day: recorded as conflict ({cal.get('conflict_code')}), "
                  f"not dropped" if "conflict_id" in cal else f"Calendly booking: {cal['status']}")
    blocks = svc.blocks(vendor_id)
    placed = [b for b in blocks if b["state"] == "placed"]
    hold_blocks = [b for b in placed if b["origin"] == f"booking:{res['hold']['id']}"]
    console.print(f"Busy blocks kept on the other calendars: [bold]{len(placed)}[/bold] "
                  f"(the hold on {len(hold_blocks)} calendars); a second propagation pushed "
                  f"{res['after_hold']['pushed']} and failed {res['after_hold']['failed']}")
    return [
        ("calendars in one availability", "Google Calendar + Outlook 365 (sandboxes)"),
        ("free hours next week", f"{sum(hours.values()):.1f}"),
        ("double booking", f"refused: {res['refused']}"),
        ("Calendly clash", "recorded as conflict" if "conflict_id" in cal else str(cal.get("status"))),
        ("busy blocks propagated", str(len(placed))),
    ]
