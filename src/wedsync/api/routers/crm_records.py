"""CRM records API: weddings (the sources' jobs/projects) with their events, invoices and payments, edited or
created in WedSync and written back to the source CRM through the outbox (``services/crm_writeback.py``);
and CRM jobs created for marketplace bookings."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import Field

from wedsync.api.deps import Cursor, HubDep, Limit, Reader, VendorId, Writer
from wedsync.api.responses import (
    CrmBookingQueuedOut,
    CrmEventUpdatedOut,
    CrmWeddingDetailOut,
    CrmWeddingOut,
    CrmWeddingUpdatedOut,
    InquiryOut,
    WritebackOut,
)
from wedsync.api.schemas import MAX_INT64, Page, Strict
from wedsync.errors import InvalidInput
from wedsync.workflows import crm as crm_workflows

router = APIRouter(tags=["crm"])
MinorUnits = Annotated[int, Field(ge=0, le=10**12)]  # Strict's check: no booleans, no text, no fraction


class WeddingPatch(Strict):
    """Fields of a wedding that map onto the source job (VSCO: ``name``, ``eventDate``, ``stage``, ``closed``,
    ``guestCount``)."""

    name: str | None = Field(default=None, max_length=255)
    event_date: date | None = None
    stage: str | None = Field(default=None, max_length=32, description="lead | booked | fulfillment | completed")
    closed: bool | None = None
    guest_count: int | None = Field(default=None, ge=0, le=100_000)
    expected_version: int | None = Field(default=None, ge=1, le=MAX_INT64)


class EventPatch(Strict):
    name: str | None = Field(default=None, max_length=255)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    location: str | None = Field(default=None, max_length=500)
    expected_version: int | None = Field(default=None, ge=1, le=MAX_INT64)


class EventIn(Strict):
    """A new event on the wedding's job; times with a UTC offset, written as local time in ``timezone`` (an IANA
    name), else the zone of the wedding's other events, else the vendor's (the one of those whose offset is the
    one written, else that offset's fixed zone): docs/crm.md."""

    name: str = Field(min_length=1, max_length=255)
    starts_at: datetime
    ends_at: datetime | None = None
    location: str | None = Field(default=None, max_length=500)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)


class LineItemIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    unit_minor: MinorUnits
    quantity: int = Field(default=1, ge=1, le=10_000)


class InvoiceIn(Strict):
    """A new invoice (a VSCO order): line items or a total, in integer minor units of ``currency`` (ISO 4217),
    which must be the studio's currency."""

    number: str = Field(min_length=1, max_length=64)
    currency: str = Field(min_length=1, max_length=8)
    total_minor: MinorUnits | None = None
    line_items: list[LineItemIn] = Field(default_factory=list, max_length=100)
    due_date: date | None = None


class PaymentIn(Strict):
    """A payment received: integer minor units + ISO 4217 currency (the studio's), applied to ``invoice_id``
    (default: the wedding's only open invoice)."""

    amount_minor: MinorUnits
    currency: str = Field(min_length=1, max_length=8)
    received: date | None = None
    memo: str | None = Field(default=None, max_length=128)
    invoice_id: str | None = Field(default=None, max_length=26)


class BookingIn(Strict):
    """A marketplace booking to create as a job at the connection, linked to these unified clients (a contact
    is created there for each client that has none)."""

    client_ids: list[Annotated[str, Field(max_length=26)]] = Field(min_length=1, max_length=10)
    name: str = Field(min_length=1, max_length=255)
    event_date: date | None = None
    stage: str = Field(default="booked", max_length=32)
    guest_count: int | None = Field(default=None, ge=0, le=100_000)
    job_type: str | None = Field(default=None, max_length=200)


@router.get("/api/crm/weddings", response_model=Page[CrmWeddingOut])
def list_weddings(hub: HubDep, vendor_id: VendorId, _r: Reader, after: Cursor = None, limit: Limit = 100,
                  connection_id: Annotated[str | None, Query(max_length=26)] = None) -> dict[str, Any]:
    """Weddings of every source (jobs, projects), by id; ``next_cursor`` -> ``after``."""
    if connection_id:
        hub.connections.get(vendor_id, connection_id)  # another vendor's connection: 404
    items, nxt = hub.crm_writeback.list_weddings(vendor_id, after=after, limit=limit, connection_id=connection_id)
    return {"items": items, "next_cursor": nxt}


@router.get("/api/crm/weddings/{wedding_id}", response_model=CrmWeddingDetailOut)
def get_wedding(wedding_id: str, hub: HubDep, vendor_id: VendorId, _r: Reader) -> dict[str, Any]:
    """A wedding with its events, invoices (and their payments), clients and write-backs."""
    return dict(hub.crm_writeback.get_wedding(vendor_id, wedding_id))


@router.patch("/api/crm/weddings/{wedding_id}", response_model=CrmWeddingUpdatedOut)
async def update_wedding(wedding_id: str, body: WeddingPatch, hub: HubDep, vendor_id: VendorId,
                         _w: Writer) -> dict[str, Any]:
    """Edit a wedding; its source job gets the change through the outbox (``update_job``).
    ``expected_version`` -> 409 ``version_conflict`` when it changed meanwhile."""
    changes = body.model_dump(exclude_unset=True, exclude={"expected_version"})
    out = dict(hub.crm_writeback.update_wedding(vendor_id, wedding_id, changes, body.expected_version))
    await crm_workflows.poke_outbox_drain()
    return out


@router.patch("/api/crm/events/{event_id}", response_model=CrmEventUpdatedOut)
async def update_event(event_id: str, body: EventPatch, hub: HubDep, vendor_id: VendorId,
                       _w: Writer) -> dict[str, Any]:
    """Edit an event of a wedding -> ``update_event`` through the outbox."""
    changes = body.model_dump(exclude_unset=True, exclude={"expected_version"})
    out = dict(hub.crm_writeback.update_event(vendor_id, event_id, changes, body.expected_version))
    await crm_workflows.poke_outbox_drain()
    return out


@router.post("/api/crm/weddings/{wedding_id}/events", status_code=status.HTTP_202_ACCEPTED,
             response_model=WritebackOut)
async def create_event(wedding_id: str, body: EventIn, hub: HubDep, vendor_id: VendorId,
                       _w: Writer) -> dict[str, Any]:
    """Create an event on the wedding's job (``create_event``); returns the outbox row, the event is stored
    when the provider returns it (``GET /api/crm/weddings/{id}``)."""
    out = dict(hub.crm_writeback.create_event(vendor_id, wedding_id, body.model_dump(exclude_unset=True)))
    await crm_workflows.poke_outbox_drain()
    return out


@router.post("/api/crm/weddings/{wedding_id}/invoices", status_code=status.HTTP_202_ACCEPTED,
             response_model=WritebackOut)
async def create_invoice(wedding_id: str, body: InvoiceIn, hub: HubDep, vendor_id: VendorId,
                         _w: Writer) -> dict[str, Any]:
    """Create an invoice (an order of the job: ``create_order``); another currency than the studio's is
    refused with 422 ``currency_mismatch``."""
    values = body.model_dump(exclude_unset=True)
    values["line_items"] = [li.model_dump() for li in body.line_items]
    out = dict(await hub.crm_writeback.create_invoice(vendor_id, wedding_id, values))
    await crm_workflows.poke_outbox_drain()
    return out


@router.post("/api/crm/weddings/{wedding_id}/payments", status_code=status.HTTP_202_ACCEPTED,
             response_model=WritebackOut)
async def create_payment(wedding_id: str, body: PaymentIn, hub: HubDep, vendor_id: VendorId,
                         _w: Writer) -> dict[str, Any]:
    """Record a payment (``create_payment``, applied to an invoice of the wedding); another currency than the
    studio's: 422 ``currency_mismatch``; no invoice: 422 ``no_invoice``."""
    if body.amount_minor == 0:
        raise InvalidInput("amount_minor must be positive", code="invalid_amount")
    out = dict(await hub.crm_writeback.create_payment(vendor_id, wedding_id, body.model_dump(exclude_unset=True)))
    await crm_workflows.poke_outbox_drain()
    return out


@router.post("/api/crm/connections/{connection_id}/weddings", status_code=status.HTTP_202_ACCEPTED,
             response_model=CrmBookingQueuedOut)
async def create_booking(connection_id: str, body: BookingIn, hub: HubDep, vendor_id: VendorId,
                         _w: Writer) -> dict[str, Any]:
    """Create a job in the CRM for a marketplace booking: missing contacts first (``create_contact``), then the
    job linked to them (``create_job``). Returns the job's outbox row with the contacts' rows."""
    values = body.model_dump(exclude={"client_ids"}, exclude_unset=True)
    values.setdefault("stage", body.stage)
    out = dict(hub.crm_writeback.create_booking(vendor_id, connection_id, body.client_ids, values))
    await crm_workflows.poke_outbox_drain()
    return out


class PersonIn(Strict):
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)


class InquiryIn(PersonIn):
    """A couple's inquiry on the WedSync marketplace: the inquirer (these fields), optionally the partner, and
    the wedding they ask about. ``inquiry_id`` is the marketplace's id (posting it again changes nothing new);
    phones without a country code are read in the marketplace connection's ``settings.default_region`` (US)."""
    inquiry_id: str = Field(min_length=1, max_length=100)
    partner: PersonIn | None = None
    wedding_date: date | None = None
    venue: str | None = Field(default=None, max_length=500)
    guest_count: int | None = Field(default=None, ge=0, le=100_000)
    message: str | None = Field(default=None, max_length=5000)
    received_at: datetime | None = Field(default=None, description="when the couple sent it (with a UTC offset)")


@router.post("/api/crm/inquiries", status_code=status.HTTP_201_CREATED, response_model=InquiryOut,
             responses={200: {"description": "the same inquiry again: nothing new stored or queued",
                              "model": InquiryOut}})
async def receive_inquiry(body: InquiryIn, response: Response, hub: HubDep, vendor_id: VendorId,
                          _w: Writer) -> dict[str, Any]:
    """A marketplace inquiry becomes the vendor's client once: its couple is resolved into the unified clients
    (merged with the same people from Tave, a HoneyBook export or a Zap; each merge with its rule and undoable),
    and it is queued for every connected CRM that takes inquiries (Light Blue), once."""
    from wedsync.services.crm_inquiries import inquiry_from

    out: dict[str, Any] = await asyncio.to_thread(hub.crm_inquiries.receive, vendor_id,
                                                  inquiry_from(body.model_dump()))
    if not out["created"]:
        response.status_code = status.HTTP_200_OK
    if any(d["status"] == "pending" for d in out["deliveries"]):
        await crm_workflows.poke_outbox_drain()
    return out

