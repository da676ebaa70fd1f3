"""Calendar API: profile, sources and their sync, availability, bookings and holds (409 with a code on overlap),
slot search and meeting scheduling with ICS invitations, conflicts, the availability report, propagation status,
and the vendor's public availability feed (a tokenized iCalendar URL for directories such as The Knot)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import Field

from wedsync.api.deps import Cursor, HubDep, Limit, Reader, VendorId, Writer, next_cursor
from wedsync.api.responses import (
    AvailabilityOut,
    BlockOut,
    BookingCreatedOut,
    BookingOut,
    CalendarConflictsOut,
    CalendarProfileOut,
    CalendarReportOut,
    CalendarSourceOut,
    FeedCreatedOut,
    IcsValidOut,
    MeetingOut,
    PropagationOut,
    SlotsOut,
    SourceSyncOut,
)
from wedsync.api.schemas import IsoDatetime, Page, Strict
from wedsync.domain import availability as av
from wedsync.domain import scheduling as sch
from wedsync.errors import InvalidInput
from wedsync.services.calendar import BOOKING_STATUSES, BookingRequest
from wedsync.workflows import calendar as _calendar_workflows  # registers the workflows before DBOS launches

router = APIRouter(tags=["calendar"])

Str200 = Annotated[str, Field(max_length=200)]


class ProfileIn(Strict):
    working_hours: dict[str, list[list[str]]] | None = Field(
        default=None, description='per weekday local spans, e.g. {"mon": [["09:00", "17:00"]]}')
    buffer_before_min: int | None = Field(default=None, ge=0, le=1440)
    buffer_after_min: int | None = Field(default=None, ge=0, le=1440)
    travel_buffer_min: int | None = Field(default=None, ge=0, le=1440)
    capacity_max_per_day: int | None = Field(default=None, ge=1, le=100)
    capacity_kinds: list[Str200] | None = Field(default=None, max_length=20)
    stale_after_s: int | None = Field(default=None, ge=30, le=7 * 86400)
    home_location: str | None = Field(default=None, max_length=300)


class SourceIn(Strict):
    kind: str = Field(max_length=64, description="provider slug of the connection, or 'ical-feed'")
    calendar_id: str = Field(min_length=1, max_length=1000, description="the provider's calendar id, or the feed URL")
    connection_id: str | None = Field(default=None, max_length=26)
    name: str = Field(default="", max_length=200)
    writable: bool | None = None
    receive_blocks: bool = True
    rules: dict[str, bool] = Field(default_factory=dict)
    poll_interval_s: int | None = Field(default=None, ge=5, le=86400)


class BookingIn(Strict):
    start: datetime
    end: datetime
    kind: Literal["booking", "hold"] = "booking"
    resource: str = Field(default="default", min_length=1, max_length=64)
    title: str = Field(default="", max_length=300)
    expires_at: datetime | None = Field(default=None, description="holds only: when the hold lapses")
    channel: str = Field(default="api", min_length=1, max_length=64)
    external_ref: str | None = Field(default=None, max_length=500)
    meeting_type: str | None = Field(default=None, max_length=64)
    category: str | None = Field(default=None, max_length=64, description="e.g. 'wedding' (day capacity)")
    location: str | None = Field(default=None, max_length=300)
    wedding_id: str | None = Field(default=None, max_length=64)
    contact_email: str | None = Field(default=None, max_length=320)
    check_calendars: bool = True


class RescheduleIn(Strict):
    start: datetime
    end: datetime


class MeetingIn(Strict):
    meeting_type: Literal["consultation", "venue_visit", "contract_signing", "planning_session"]
    duration_min: int | None = Field(default=None, ge=5, le=24 * 60)
    preferred_dates: list[date] = Field(default_factory=list, max_length=60)
    location: str = Field(default="", max_length=300)
    start: datetime
    end: datetime
    step_min: int = Field(default=30, ge=5, le=240)
    limit: int = Field(default=10, ge=1, le=50)


class ScheduleIn(MeetingIn):
    title: str = Field(default="", max_length=300)
    contact_email: str | None = Field(default=None, max_length=320)
    organizer_email: str | None = Field(default=None, max_length=320)
    wedding_id: str | None = Field(default=None, max_length=64)
    slot_start: datetime | None = None


class IcsIn(Strict):
    ics: str = Field(max_length=av.MAX_ICS_BYTES)


class FeedIn(Strict):
    name: str = Field(default="availability", max_length=200)


def _meeting(body: MeetingIn) -> sch.MeetingRequest:
    minutes = body.duration_min or sch.MEETING_TYPES[body.meeting_type]
    return sch.MeetingRequest(body.meeting_type, timedelta(minutes=minutes), list(body.preferred_dates),
                              body.location)


# -- profile and sources ------------------------------------------------------------------------------
@router.get("/api/calendar/profile", response_model=CalendarProfileOut)
def get_profile(hub: HubDep, vendor_id: VendorId, _p: Reader) -> dict[str, Any]:
    return hub.calendar.get_profile(vendor_id)  # type: ignore[no-any-return]


@router.put("/api/calendar/profile", response_model=CalendarProfileOut)
def put_profile(body: ProfileIn, hub: HubDep, vendor_id: VendorId, _p: Writer) -> dict[str, Any]:
    return hub.calendar.set_profile(vendor_id, **body.model_dump())  # type: ignore[no-any-return]


@router.get("/api/calendar/sources", response_model=Page[CalendarSourceOut])
def list_sources(hub: HubDep, vendor_id: VendorId, _p: Reader, after: Cursor = None, limit: Limit = 100
                 ) -> dict[str, Any]:
    """The calendars read into the vendor's availability, oldest first; ``next_cursor`` as ``after`` for the
    next page."""
    items = hub.calendar.list_sources(vendor_id, limit=limit, after=after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


@router.post("/api/calendar/sources", status_code=status.HTTP_201_CREATED, response_model=CalendarSourceOut)
def add_source(body: SourceIn, hub: HubDep, vendor_id: VendorId, _p: Writer) -> dict[str, Any]:
    """Read a connection's calendar (or an iCalendar feed URL) into the vendor's availability."""
    return hub.calendar.add_source(vendor_id, **body.model_dump())  # type: ignore[no-any-return]


@router.get("/api/calendar/sources/{source_id}", response_model=CalendarSourceOut)
def get_source(source_id: str, hub: HubDep, vendor_id: VendorId, _p: Reader) -> dict[str, Any]:
    return hub.calendar.get_source(vendor_id, source_id)  # type: ignore[no-any-return]


@router.delete("/api/calendar/sources/{source_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_source(source_id: str, hub: HubDep, vendor_id: VendorId, _p: Writer) -> None:
    hub.calendar.delete_source(vendor_id, source_id)


@router.post("/api/calendar/sources/{source_id}/sync", status_code=status.HTTP_202_ACCEPTED,
             response_model=SourceSyncOut, response_model_exclude_unset=True)
async def sync_source(source_id: str, hub: HubDep, vendor_id: VendorId, _p: Writer) -> dict[str, Any]:
    """Start a sync run (a DBOS workflow when the workflow runtime runs here, else inline)."""
    hub.calendar.get_source(vendor_id, source_id)
    try:
        return {"workflow_id": await _calendar_workflows.enqueue_source_sync(source_id), "status": "queued"}
    except RuntimeError:
        result: dict[str, Any] = await hub.calendar.sync_source(source_id)
        return result


@router.post("/api/calendar/ics/validate", response_model=IcsValidOut)
def validate_ics(body: IcsIn, _p: Reader) -> dict[str, Any]:
    """Check iCalendar text the way imports do: 422 ``invalid_ics`` with the reason, or the event count."""
    try:
        return {"events": av.validate_ics(body.ics)}
    except av.CalendarDataError as exc:
        raise InvalidInput(str(exc), code="invalid_ics") from None


# -- availability ---------------------------------------------------------------------------------------
@router.get("/api/calendar/availability", response_model=AvailabilityOut, response_model_exclude_unset=True)
async def availability(hub: HubDep, vendor_id: VendorId, _p: Reader, start: IsoDatetime, end: IsoDatetime,
                       working_hours: bool = True, include_busy: bool = True) -> dict[str, Any]:
    """Free time (inside working hours, net of buffers) and busy time, with each source's freshness.
    ``complete: false`` means a source is stale or failing and its whole window is treated as busy."""
    result = await asyncio.to_thread(hub.calendar.availability, vendor_id, start, end,
                                     use_working_hours=working_hours)
    out = result.as_dict()
    if not include_busy:
        out.pop("busy")
    return out


# -- bookings and holds ---------------------------------------------------------------------------------
@router.post("/api/calendar/bookings", status_code=status.HTTP_201_CREATED, response_model=BookingCreatedOut,
             response_model_exclude_unset=True)
async def create_booking(body: BookingIn, hub: HubDep, vendor_id: VendorId, _p: Writer) -> dict[str, Any]:
    """Book or hold time. 409 ``booking_overlap`` (another booking/hold), ``calendar_busy`` (a connected
    calendar), ``calendar_unavailable`` (a stale source: fail closed), ``day_capacity_reached``."""
    req = BookingRequest(**body.model_dump())
    out: dict[str, Any] = await asyncio.to_thread(hub.calendar.create_booking, vendor_id, req)
    hub.calendar.kick_propagation(vendor_id)
    return out


@router.get("/api/calendar/bookings", response_model=Page[BookingOut])
def list_bookings(hub: HubDep, vendor_id: VendorId, _p: Reader, start: IsoDatetime | None = None,
                  end: IsoDatetime | None = None,
                  status_: Annotated[str | None, Query(
                      alias="status", max_length=16, json_schema_extra={"enum": list(BOOKING_STATUSES)},
                      description="one of the statuses (422 `invalid_status` otherwise)")] = None,
                  after: Cursor = None, limit: Limit = 500) -> dict[str, Any]:
    """Bookings and holds by start time; pass ``next_cursor`` as ``after`` for the next page."""
    items = hub.calendar.list_bookings(vendor_id, start=start, end=end, status=status_, limit=limit, after=after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


@router.get("/api/calendar/bookings/{booking_id}", response_model=BookingOut)
def get_booking(booking_id: str, hub: HubDep, vendor_id: VendorId, _p: Reader) -> dict[str, Any]:
    return hub.calendar.get_booking(vendor_id, booking_id)  # type: ignore[no-any-return]


class IcsResponse(Response):
    media_type = "text/calendar"  # what the OpenAPI document says the 200 is (not FastAPI's default JSON)


@router.get("/api/calendar/bookings/{booking_id}/invitation.ics", response_class=IcsResponse,
            responses={200: {"description": "the iCalendar invitation (RFC 5545, METHOD:REQUEST)",
                             "content": {"text/calendar": {"schema": {"type": "string"}}}}})
def booking_invitation(booking_id: str, hub: HubDep, vendor_id: VendorId, _p: Reader) -> Response:
    booking = hub.calendar.get_booking(vendor_id, booking_id)
    if not booking.get("invitation_ics"):
        from wedsync.errors import NotFound

        raise NotFound("this booking has no invitation", code="no_invitation")
    return IcsResponse(booking["invitation_ics"], media_type="text/calendar; charset=utf-8")


@router.post("/api/calendar/bookings/{booking_id}/cancel", response_model=BookingOut)
async def cancel_booking(booking_id: str, hub: HubDep, vendor_id: VendorId, _p: Writer) -> dict[str, Any]:
    out: dict[str, Any] = await asyncio.to_thread(hub.calendar.cancel_booking, vendor_id, booking_id)
    hub.calendar.kick_propagation(vendor_id)
    return out


@router.post("/api/calendar/bookings/{booking_id}/confirm", response_model=BookingOut)
def confirm_hold(booking_id: str, hub: HubDep, vendor_id: VendorId, _p: Writer) -> dict[str, Any]:
    """Turn an active hold into a booking (409 ``hold_expired`` when it lapsed)."""
    return hub.calendar.confirm_hold(vendor_id, booking_id)  # type: ignore[no-any-return]


@router.post("/api/calendar/bookings/{booking_id}/reschedule", response_model=BookingOut)
async def reschedule(booking_id: str, body: RescheduleIn, hub: HubDep, vendor_id: VendorId, _p: Writer
                     ) -> dict[str, Any]:
    out: dict[str, Any] = await asyncio.to_thread(hub.calendar.reschedule_booking, vendor_id, booking_id,
                                                  body.start, body.end)
    hub.calendar.kick_propagation(vendor_id)
    return out


# -- scheduling ------------------------------------------------------------------------------------------
@router.post("/api/calendar/slots/search", response_model=SlotsOut)
async def search_slots(body: MeetingIn, hub: HubDep, vendor_id: VendorId, _p: Reader) -> dict[str, Any]:
    """Free slots for a meeting request: preferred dates first, travel buffer around other locations."""
    out: dict[str, Any] = await asyncio.to_thread(hub.calendar.find_slots, vendor_id, _meeting(body),
                                                  start=body.start, end=body.end, step_min=body.step_min,
                                                  limit=body.limit)
    return out


@router.post("/api/calendar/meetings", status_code=status.HTTP_201_CREATED, response_model=MeetingOut)
async def schedule_meeting(body: ScheduleIn, hub: HubDep, vendor_id: VendorId, _p: Writer) -> dict[str, Any]:
    """Book the best slot (or ``slot_start``) and return the METHOD:REQUEST invitation (stored on the booking;
    this hub sends no e-mail)."""
    out: dict[str, Any] = await asyncio.to_thread(
        hub.calendar.schedule_meeting, vendor_id, _meeting(body), start=body.start, end=body.end,
        title=body.title or body.meeting_type.replace("_", " ").title(), contact_email=body.contact_email,
        wedding_id=body.wedding_id, organizer_email=body.organizer_email, slot_start=body.slot_start)
    hub.calendar.kick_propagation(vendor_id)
    return out


# -- conflicts, report, propagation ------------------------------------------------------------------------
@router.get("/api/calendar/conflicts", response_model=CalendarConflictsOut, response_model_exclude_unset=True)
async def conflicts(hub: HubDep, vendor_id: VendorId, _p: Reader, start: IsoDatetime, end: IsoDatetime
                    ) -> dict[str, Any]:
    out: dict[str, Any] = await asyncio.to_thread(hub.calendar.detect_conflicts, vendor_id, start, end)
    return out


@router.get("/api/calendar/report", response_model=CalendarReportOut, response_model_exclude_unset=True)
async def report(hub: HubDep, vendor_id: VendorId, _p: Reader, start: IsoDatetime, end: IsoDatetime) -> dict[str, Any]:
    out: dict[str, Any] = await asyncio.to_thread(hub.calendar.report, vendor_id, start, end)
    return out


@router.get("/api/calendar/blocks", response_model=Page[BlockOut])
def blocks(hub: HubDep, vendor_id: VendorId, _p: Reader, after: Cursor = None, limit: Limit = 500
           ) -> dict[str, Any]:
    """The propagation outbox: every busy block we keep on the vendor's other calendars, and its state, by start
    time; ``next_cursor`` as ``after`` for the next page (422 ``invalid_cursor`` for an id that is not one of the
    vendor's blocks)."""
    items = hub.calendar.blocks(vendor_id, limit=limit, after=after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


@router.post("/api/calendar/propagate", response_model=PropagationOut)
async def propagate(hub: HubDep, vendor_id: VendorId, _p: Writer) -> dict[str, Any]:
    out: dict[str, Any] = await hub.calendar.propagate(vendor_id)
    return out


# -- the public availability feed ---------------------------------------------------------------------------
@router.post("/api/calendar/feeds", status_code=status.HTTP_201_CREATED, response_model=FeedCreatedOut)
def create_feed(body: FeedIn, hub: HubDep, vendor_id: VendorId, _p: Writer) -> dict[str, Any]:
    """A secret feed URL showing only busy/free (no titles): give it to a directory such as The Knot. The
    token is shown once."""
    out: dict[str, Any] = hub.calendar.create_feed_token(vendor_id, body.name)
    out["url"] = hub.settings.public_url.rstrip("/") + out["path"]
    return out


@router.delete("/api/calendar/feeds/{feed_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_feed(feed_id: str, hub: HubDep, vendor_id: VendorId, _p: Writer) -> None:
    hub.calendar.revoke_feed_token(vendor_id, feed_id)


@router.get("/calendar/feeds/{token}.ics", include_in_schema=False)
async def public_feed(token: str, hub: HubDep) -> Response:
    if len(token) > 100:
        from wedsync.errors import NotFound

        raise NotFound("feed not found", code="unknown_feed")
    body = await asyncio.to_thread(hub.calendar.feed_ics, token)
    return Response(body, media_type="text/calendar; charset=utf-8", headers={"Cache-Control": "max-age=60"})
