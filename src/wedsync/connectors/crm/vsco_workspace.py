"""VSCO Workspace (formerly Tave) API v2 connector: contacts, jobs, events, orders and payments; write-back; REST hooks.

Channel: the public REST API (``X-API-KEY`` header, ``page``/``pageSize`` ≤ 100, 429 with
``Retry-After``). REST hooks carry only ``targetId`` and are unsigned, so a hook never updates a record
from its payload: the hub re-fetches the record it names with the API key.

Write-back and idempotency. The API has no idempotency header, so a create is never blindly retried: every
create carries our reference (``"ws:" + the id of our outbox row``, committed before the call) and, after an
unknown outcome (timeout, dropped connection, 5xx, an unreadable 2xx), the connector looks the record up by
that reference before creating again (:meth:`VscoWorkspaceConnector.find_by_reference`):

=========  ==================================  ==============================================================
stream     where our reference is written      how it is looked up
=========  ==================================  ==============================================================
contacts   ``externalMappings[].id``            ``GET /address-book?email=`` (the list has no externalMappingId
                                                filter), else the newest contacts (``sortBy=created desc``)
jobs       ``externalMappings[].id``            ``GET /job?externalMappingId=``
events     ``externalMappings[].id``            ``GET /event?externalMappingId=``
payments   ``transactionId``                    ``GET /job/{id}/payment``, matching ``transactionId``
orders     (the spec gives orders no            ``GET /job/{jobId}/order``, matching name and total of an
           reference field)                     order created since the attempt: a content match, weaker
=========  ==================================  ==============================================================

Echo suppression: a record read back with our external mapping gets ``custom_fields["wedsync_reference"]``
(the reference it was written with), so the sync engine can recognize its own write. Money fields are the
spec's ``MoneyAmount`` integers, read as minor units of the studio's currency (``GET /studio/me``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from wedsync.connectors.auth import ApiKeyAuth
from wedsync.connectors.base import Capabilities, Channel, Connector, CredentialField, Page
from wedsync.connectors.channels.csv_layouts import country_code
from wedsync.connectors.errors import ConnectorError, Fatal, OutcomeUnknown, Retriable, SchemaMismatch
from wedsync.connectors.http import ProviderClient
from wedsync.domain.crm import (
    ClientRecord,
    EventRecord,
    InvoiceRecord,
    WeddingLink,
    WeddingRecord,
    normalize_email,
    normalize_phone,
)

PAGE_SIZE = 100
REFERENCE_PREFIX = "ws:"
#: What our references start with: ``ws:<id>``, or the outbox's own key ``wedsync-crm-<id>``.
REFERENCE_PREFIXES = (REFERENCE_PREFIX, "wedsync-")
DEFAULT_REFERENCE_URL = "https://app.wedsync.io/crm/records/"

# stream name -> (list path, collection type, REST hook event announcing creations or None)
STREAMS: dict[str, tuple[str, str, str | None]] = {
    "contacts": ("/address-book", "addressbook-collection", "contact.created"),
    "jobs": ("/job", "job-collection", "job.created"),
    "job_contacts": ("/job-contact", "jobcontact-collection", None),
    "events": ("/event", "event-collection", None),
    "orders": ("/order", "order-collection", "order.booked"),
    "payments": ("/payment", "payment-collection", "payment.created"),
}
# extra list parameters per stream (only those the spec defines for that list operation)
_LIST_PARAMS: dict[str, dict[str, str]] = {
    "contacts": {"includeHidden": "true"},  # hidden contacts are still the studio's clients
    "jobs": {"includeClosed": "true"},
    "job_contacts": {"includeHidden": "true"},  # a hidden link is listed (stored as hidden: it unlinks)
    "events": {"includeHidden": "true"},
    "orders": {},
    "payments": {},
}
_MAX_TOTAL = 2**31 - 1  # the largest meta.totalItems / totalPages taken as a count
_ID_RE = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")
_JOB_STAGES = ("lead", "booked", "fulfillment", "completed")
_ORDER_STATUS = {"draft": "draft", "open": "open", "paid-in-full": "paid", "completed": "paid", "voided": "void"}
_EVENT_KINDS = ("ceremony", "reception", "engagement", "getting-ready", "rehearsal", "consultation")


def parse_ts(value: Any) -> datetime | None:
    if not value:
        return None
    if not isinstance(value, str):
        raise SchemaMismatch(f"timestamp is not a string: {value!r}", provider=VscoWorkspaceConnector.slug)
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SchemaMismatch(f"bad timestamp {value!r}", provider=VscoWorkspaceConnector.slug) from exc


def parse_date(value: Any) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise SchemaMismatch(f"bad date {value!r}", provider=VscoWorkspaceConnector.slug) from exc


def _custom_fields(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cf in item.get("customFields") or []:
        if isinstance(cf, dict) and cf.get("fieldId"):
            out[str(cf["fieldId"])] = cf.get("value")
    reference = wedsync_reference(item)
    if reference is not None:
        out["wedsync_reference"] = reference
    return out


def wedsync_reference(item: dict[str, Any]) -> str | None:
    """Our reference on a record we wrote (external mapping, or a payment's transactionId), else None."""
    for mapping in item.get("externalMappings") or ():
        if isinstance(mapping, dict) and str(mapping.get("id") or "").startswith(REFERENCE_PREFIXES):
            return str(mapping["id"])
    txn = item.get("transactionId")
    if isinstance(txn, str) and txn.startswith(REFERENCE_PREFIXES):
        return txn
    return None


def map_phone(value: Any, default_region: str | None) -> str | None:
    """A Workspace phone object (``e164``, ``extension``, ``formatted``, ``countryCode``) in E.164."""
    if value is None:
        return None
    if isinstance(value, str):  # tolerate the legacy plain-string form
        return normalize_phone(value, default_region)
    if not isinstance(value, dict):
        raise SchemaMismatch("phone is neither an object nor a string", provider=VscoWorkspaceConnector.slug)
    e164, ext = value.get("e164"), value.get("extension")
    if isinstance(e164, str) and e164:
        base = e164.split("x", 1)[0]
        return f"{base};ext={int(ext)}" if isinstance(ext, int | float) and ext else base
    formatted = value.get("formatted")
    region = value.get("countryCode") or default_region
    return normalize_phone(formatted, region.upper() if isinstance(region, str) else None)


def map_contact(item: dict[str, Any]) -> ClientRecord:
    """Map an address-book entry (Person, Company, Employee, Location) to a ClientRecord."""
    try:
        remote_id = str(item["id"])
        kind = str(item.get("kind") or "person")
    except (KeyError, TypeError) as exc:
        raise SchemaMismatch("contact without id", provider=VscoWorkspaceConnector.slug) from exc
    # the Contact's own ``address`` (every kind has it; contact_body writes it); a Person's separate
    # ``mailingAddress`` only when a record carries no ``address`` at all
    address = item["address"] if "address" in item else item.get("mailingAddress")
    country = address.get("country") if isinstance(address, dict) else None
    phone = next((p for p in (item.get("cellPhone"), item.get("homePhone"), item.get("workPhone"))
                  if p and (not isinstance(p, dict) or p.get("e164") or p.get("formatted"))), None)
    first, last = item.get("firstName"), item.get("lastName")
    name = item.get("name") or " ".join(p for p in (first, last) if p) or None
    if isinstance(address, dict):
        address = {k: address.get(k) for k in ("streetAddress", "village", "city", "state", "postalCode",
                                                 "country") if address.get(k) is not None}
    return ClientRecord(
        remote_id=remote_id,
        kind=kind,
        first_name=first,
        last_name=last,
        display_name=name,
        email=normalize_email(item.get("email")),
        phone=map_phone(phone, country if isinstance(country, str) else None),
        company=item.get("companyName"),
        address=address or None,
        custom_fields=_custom_fields(item),
        remote_created_at=parse_ts(item.get("created")),
        remote_modified_at=parse_ts(item.get("modified")),
    )


def map_job(item: dict[str, Any]) -> WeddingRecord:
    """Map a job to a WeddingRecord."""
    try:
        remote_id = str(item["id"])
    except (KeyError, TypeError) as exc:
        raise SchemaMismatch("job without id", provider=VscoWorkspaceConnector.slug) from exc
    guests = item.get("guestCount")
    return WeddingRecord(
        remote_id=remote_id,
        name=item.get("name") or item.get("title"),
        event_date=parse_date(item.get("eventDate")),
        stage=item.get("stage"),
        closed=bool(item.get("closed")),
        guest_count=int(guests) if isinstance(guests, int) else None,
        job_type=item.get("jobTypeName"),
        custom_fields=_custom_fields(item),
        remote_created_at=parse_ts(item.get("created")),
        remote_modified_at=parse_ts(item.get("modified")),
    )


def map_job_contact(item: dict[str, Any]) -> WeddingLink:
    """A JobContact: which contact belongs to which job, and whether as one of its clients (``client`` or the
    ``client``/``customer`` role kinds; team members, vendors and subjects are not the couple)."""
    try:
        remote_id, job_id, contact_id = str(item["id"]), str(item["jobId"]), str(item["contactId"])
    except (KeyError, TypeError) as exc:
        raise SchemaMismatch("job-contact without id, jobId or contactId",
                             provider=VscoWorkspaceConnector.slug) from exc
    kinds = item.get("roleKinds") or []
    is_client = bool(item.get("client")) or any(k in ("client", "customer") for k in kinds)
    return WeddingLink(remote_id=remote_id, wedding_remote_id=job_id, client_remote_id=contact_id,
                       is_client=is_client, hidden=bool(item.get("hidden")),
                       remote_created_at=parse_ts(item.get("created")),
                       remote_modified_at=parse_ts(item.get("modified")))


def _event_kind(name: str | None) -> str | None:
    text = (name or "").casefold()
    for kind in _EVENT_KINDS:
        if kind.replace("-", " ") in text or kind in text:
            return kind
    return "other" if text else None


def _event_moment(day: Any, clock: Any, zone: Any, utc_value: Any) -> datetime | None:
    if utc_value:
        return parse_ts(utc_value)
    when = parse_date(day)
    if when is None:
        return None
    try:
        at = time.fromisoformat(str(clock)[:8]) if clock else time(0, 0)
    except ValueError as exc:
        raise SchemaMismatch(f"bad time {clock!r}", provider=VscoWorkspaceConnector.slug) from exc
    try:
        tz = ZoneInfo(str(zone)) if zone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        tz = UTC
    return datetime.combine(when, at, tz).astimezone(UTC)


def map_event(item: dict[str, Any]) -> EventRecord:
    """Map an Event (ceremony, reception, shoot...) to an EventRecord; times in UTC."""
    try:
        remote_id = str(item["id"])
    except (KeyError, TypeError) as exc:
        raise SchemaMismatch("event without id", provider=VscoWorkspaceConnector.slug) from exc
    location = item.get("location")
    address = location.get("address") if isinstance(location, dict) else None
    place = None
    if isinstance(address, dict):
        place = ", ".join(str(address[k]) for k in ("name", "streetAddress", "city", "state", "country")
                          if address.get(k)) or None
    custom = _custom_fields(item)
    for key in ("typeId", "channel", "timezoneName", "allDay"):
        if item.get(key):
            custom[key] = item[key]
    first = parse_date(item.get("startDate")) if item.get("allDay") else None
    if first is not None:
        # whole days in the event's zone (else UTC): from the start date's midnight to the midnight after the
        # end date (the last day, inclusive; a one-day event has endDate == startDate); times are ignored
        last = max(first, parse_date(item.get("endDate")) or first)
        starts_at = _event_moment(first, None, item.get("timezoneName"), None)
        ends_at = _event_moment(last + timedelta(days=1), None, item.get("timezoneName"), None)
    else:
        starts_at = _event_moment(item.get("startDate"), item.get("startTime"), item.get("timezoneName"),
                                  item.get("startUtc"))
        # an event without an end date and time has no end (not one at midnight of its start day)
        ends_at = (_event_moment(item.get("endDate") or item.get("startDate"), item.get("endTime"),
                                 item.get("timezoneName"), item.get("endUtc"))
                   if item.get("endDate") or item.get("endTime") or item.get("endUtc") else None)
    return EventRecord(
        remote_id=remote_id,
        wedding_remote_id=str(item["jobId"]) if item.get("jobId") else None,
        kind=_event_kind(item.get("name")),
        name=item.get("name"),
        starts_at=starts_at,
        ends_at=ends_at,
        location=place,
        custom_fields=custom,
        remote_created_at=parse_ts(item.get("created")),
        remote_modified_at=parse_ts(item.get("modified")),
    )


def _money(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaMismatch(f"{what} is not an integer amount: {value!r}", provider=VscoWorkspaceConnector.slug)
    return value


def map_payment(item: dict[str, Any], currency: str) -> dict[str, Any]:
    """A Payment as the dict ``InvoiceRecord.payments`` holds (amounts in minor units of ``currency``)."""
    try:
        remote_id = str(item["id"])
    except (KeyError, TypeError) as exc:
        raise SchemaMismatch("payment without id", provider=VscoWorkspaceConnector.slug) from exc
    received = parse_date(item.get("received"))
    return {
        "remote_id": remote_id,
        "job_remote_id": str(item["jobId"]) if item.get("jobId") else None,
        "amount_minor": _money(item.get("amount"), "payment amount"),
        "refunded_minor": _money(item.get("refundedAmount"), "refunded amount") or 0,
        "currency": currency,
        "paid_at": received.isoformat() if received else None,
        "status": item.get("status"),
        "method": item.get("paymentMethodId"),
        "memo": item.get("memo"),
        "order_remote_ids": sorted({str(a["orderId"]) for a in item.get("paymentAllocations") or ()
                                    if isinstance(a, dict) and a.get("orderId")}),
        "wedsync_reference": wedsync_reference(item),
        "remote_created_at": item.get("created"),
        "remote_modified_at": item.get("modified"),
    }


#: what a payment entry of an order takes from the Payment itself (the allocation gives amount and refund)
PAYMENT_DETAILS = ("paid_at", "method", "memo", "status", "job_remote_id", "wedsync_reference")


def with_payment(order: InvoiceRecord, payment: dict[str, Any]) -> InvoiceRecord:
    """``order`` with the details of ``payment`` (``map_payment``) on its entry for that payment."""
    for entry in order.payments:
        if entry.get("remote_id") == payment.get("remote_id"):
            entry.update({k: payment.get(k) for k in PAYMENT_DETAILS})
    return order


def map_order(item: dict[str, Any], currency: str) -> InvoiceRecord:
    """Map an Order (the studio's invoice of a job) to an InvoiceRecord with the payments applied to it."""
    try:
        remote_id = str(item["id"])
    except (KeyError, TypeError) as exc:
        raise SchemaMismatch("order without id", provider=VscoWorkspaceConnector.slug) from exc
    total = _money(item.get("total"), "order total")
    balance = _money(item.get("balance"), "order balance")
    # an allocation says how much of which payment went to this order (and how much of that was refunded); the
    # payment's own date, method, memo and status are the Payment's (``with_payment`` adds them)
    payments = [{"remote_id": str(a["paymentId"]), "amount_minor": _money(a.get("amount"), "allocation"),
                 "refunded_minor": _money(a.get("refundedAmount"), "refunded allocation") or 0,
                 "currency": currency, **dict.fromkeys(PAYMENT_DETAILS)}
                for a in item.get("paymentAllocations") or () if isinstance(a, dict) and a.get("paymentId")]
    due = next((parse_date(inv.get("dueDate")) for inv in item.get("invoices") or ()
                if isinstance(inv, dict) and inv.get("dueDate")), None)
    custom = _custom_fields(item)
    if item.get("lineItems"):
        custom["line_items"] = [
            {"name": li.get("name"), "unit_minor": li.get("pricePerUnit"), "quantity": li.get("units")}
            for li in item["lineItems"] if isinstance(li, dict)]
    return InvoiceRecord(
        remote_id=remote_id,
        wedding_remote_id=str(item["jobId"]) if item.get("jobId") else None,
        number=item.get("customNumber") or item.get("referenceCode") or item.get("name"),
        status=_ORDER_STATUS.get(str(item.get("status")), item.get("status")),
        currency=currency,
        total_minor=total,
        paid_minor=(total - balance) if total is not None and balance is not None else None,
        due_date=due,
        payments=payments,
        custom_fields=custom,
        remote_created_at=parse_ts(item.get("created")),
        remote_modified_at=parse_ts(item.get("modified")),
    )


# --- write bodies (the spec's request schemas; only writable properties) ---------------------------------


def reference_mapping(reference: str, url_base: str = DEFAULT_REFERENCE_URL) -> dict[str, str]:
    """The ``ExternalMapping`` we attach to a record we create (id ≤ 64 chars, url ≥ 12 chars)."""
    check_reference(reference)
    tail = next((reference[len(p):] for p in REFERENCE_PREFIXES if reference.startswith(p)), reference)
    return {"id": reference, "url": f"{url_base.rstrip('/')}/{tail}"}


def check_reference(reference: str) -> str:
    """Our reference: ``ws:<id>`` or ``wedsync-<...>``, printable ASCII, at most 64 characters (the spec's
    ``ExternalMapping.id`` limit), so that a record read back is recognized as ours."""
    if (not isinstance(reference, str) or not reference.startswith(REFERENCE_PREFIXES) or len(reference) > 64
            or not all(" " < ch <= "~" for ch in reference)):
        raise Fatal(f"a write-back reference is 'ws:<id>' or 'wedsync-<id>', at most 64 printable characters: "
                    f"{str(reference)[:80]!r}", provider=VscoWorkspaceConnector.slug, code="invalid_reference")
    return reference


def phone_body(value: str | None) -> dict[str, Any] | None:
    """A phone object for writing: ``e164`` (+ ``extension``) when we hold E.164, else ``formatted``."""
    if not value:
        return None
    number, _, ext = value.partition(";ext=")
    if re.fullmatch(r"\+[1-9]\d{1,14}", number):
        body: dict[str, Any] = {"e164": number}
        if ext.isdigit() and 1 <= int(ext) <= 999_999:
            body["extension"] = int(ext)
        return body
    text = "".join(ch for ch in value if " " <= ch <= "~")[:24]
    return {"formatted": text} if text else None


def _custom_body(custom: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"fieldId": key, "value": None if value is None else str(value)}
            for key, value in custom.items() if _ID_RE.match(key)]


def contact_body(client: ClientRecord, fields: Collection[str] | None = None) -> dict[str, Any]:
    """A Person body from a ClientRecord; ``fields`` limits it to those ClientRecord fields (an update)."""
    want = set(fields) if fields is not None else None

    def wanted(name: str) -> bool:
        return want is None or name in want

    body: dict[str, Any] = {"kind": "person"}  # the discriminator of the spec's oneOf, on updates too
    if wanted("first_name"):
        body["firstName"] = (client.first_name or None) and client.first_name[:48]  # type: ignore[index]
    if wanted("last_name"):
        body["lastName"] = (client.last_name or None) and client.last_name[:48]  # type: ignore[index]
    if wanted("email"):
        body["email"] = client.email
    if wanted("phone"):
        body["cellPhone"] = phone_body(client.phone)
    if wanted("company"):
        body["companyName"] = client.company[:128] if client.company else None
    if wanted("address") and (want is not None or client.address):
        address = None
        if client.address:
            address = {k: client.address.get(k) for k in ("streetAddress", "city", "state", "postalCode")
                       if client.address.get(k)}
            country = client.address.get("country")
            if isinstance(country, str) and country.strip():
                # Workspace takes only an ISO 3166-1 alpha-2 code (``Address.country``, maxLength 2): a country
                # typed in a CSV or hook is normalized to its code when it is recognised ("Brazil" -> "BR"),
                # and one that is not is refused, never left out: a PUT without it would erase the contact's
                # country in Workspace, silently (the outbox row fails with ``unsupported_country``).
                code = country_code(country)
                if code is None:
                    raise Fatal(f"the address country {country[:40]!r} is not a country code or a country "
                                f"name we know, and VSCO Workspace takes only ISO codes (\"BR\"): set the "
                                f"client's country to its code", provider=VscoWorkspaceConnector.slug,
                                code="unsupported_country")
                address["country"] = code
        body["address"] = address or None
    if wanted("custom_fields"):
        custom = _custom_body(client.custom_fields or {})
        if custom:
            body["customFields"] = custom
    return body


def job_body(wedding: WeddingRecord, job_type_id: str | None = None,
             fields: Collection[str] | None = None) -> dict[str, Any]:
    want = set(fields) if fields is not None else None

    def wanted(name: str) -> bool:
        return want is None or name in want

    body: dict[str, Any] = {}
    if wanted("name"):
        body["name"] = wedding.name[:255] if wedding.name else None
    if wanted("event_date"):
        body["eventDate"] = wedding.event_date.isoformat() if wedding.event_date else None
    if wanted("stage") and wedding.stage in _JOB_STAGES:
        body["stage"] = wedding.stage
    if wanted("closed"):
        body["closed"] = bool(wedding.closed)
    if wanted("guest_count"):
        body["guestCount"] = wedding.guest_count
    if wanted("job_type") and job_type_id:
        body["jobTypeId"] = job_type_id
    if wanted("custom_fields"):
        custom = _custom_body(wedding.custom_fields or {})
        if custom:
            body["customFields"] = custom
    return body


def event_body(event: EventRecord, job_id: str | None, timezone: str = "UTC",
               fields: Collection[str] | None = None) -> dict[str, Any]:
    """An Event body; times are written as local date + time in ``timezone`` (the spec's writable form)."""
    want = set(fields) if fields is not None else None
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Fatal(f"unknown time zone {timezone!r}", provider=VscoWorkspaceConnector.slug) from exc

    def wanted(name: str) -> bool:
        return want is None or name in want

    body: dict[str, Any] = {}
    if want is None and job_id:
        body["jobId"] = job_id
    if wanted("name"):
        body["name"] = event.name[:255] if event.name else None
    all_day = bool((event.custom_fields or {}).get("allDay"))
    if wanted("starts_at") and event.starts_at is not None:
        local = event.starts_at.astimezone(tz)
        body.update(startDate=local.date().isoformat(), startTime=None if all_day else local.strftime("%H:%M:%S"),
                    timezoneName=timezone)
    if wanted("ends_at") and event.ends_at is not None:
        local = event.ends_at.astimezone(tz)
        if all_day:  # the end date is the last day (inclusive): the day before the midnight it ends at
            last = (local - timedelta(microseconds=1)).date()
            body.update(endDate=last.isoformat(), endTime=None, timezoneName=timezone)
        else:
            body.update(endDate=local.date().isoformat(), endTime=local.strftime("%H:%M:%S"), timezoneName=timezone)
    elif want is not None and "ends_at" in want:  # cleared by the vendor: both are nullable in the spec
        body.update(endDate=None, endTime=None)
    if wanted("location"):
        body["location"] = {"address": {"streetAddress": event.location[:512]}} if event.location else None
    return body


def order_body(invoice: InvoiceRecord) -> dict[str, Any]:
    """An Order body: named after the invoice number, its line items (or one line for the total)."""
    items: list[dict[str, Any]] = []
    for li in (invoice.custom_fields or {}).get("line_items") or ():
        if isinstance(li, dict) and li.get("name") and isinstance(li.get("unit_minor"), int):
            items.append({"name": str(li["name"])[:128], "pricePerUnit": li["unit_minor"],
                          "units": float(li.get("quantity") or 1), "taxable": False, "selected": True})
    if not items:
        if invoice.total_minor is None:
            raise Fatal("an order needs line items or a total", provider=VscoWorkspaceConnector.slug)
        items.append({"name": (invoice.number or "WedSync booking")[:128], "pricePerUnit": invoice.total_minor,
                      "units": 1.0, "taxable": False, "selected": True})
    body: dict[str, Any] = {"name": invoice.number, "lineItems": items}
    if invoice.due_date is not None:
        body["dueDate"] = invoice.due_date.isoformat()
    return body


def _order_total(body: dict[str, Any]) -> int:
    return sum(int(li["pricePerUnit"] * li["units"]) for li in body["lineItems"])


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of a write: the provider's id, whether this call created it (False: found by our
    reference after an unknown outcome, or an update), and the record as the provider now holds it."""

    stream: str
    remote_id: str
    created: bool
    reference: str | None
    item: dict[str, Any] = field(repr=False)
    modified: datetime | None = None


class VscoWorkspaceConnector(Connector):
    slug: ClassVar[str] = "vsco-workspace"
    display_name: ClassVar[str] = "VSCO Workspace (Tave)"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="crm",
        read=("contacts", "jobs", "job_contacts", "events", "orders"),
        write=("contacts", "jobs", "job-contacts", "events", "orders", "payments"),
        webhooks=("contact.created", "job.created", "order.booked", "payment.created"),
        incremental=("contacts", "jobs", "job_contacts", "events", "orders"),
        notes="API v2 with X-API-KEY. Incremental pulls sort by modified desc with a lookback window; "
        "deletions are detected by full syncs (the API lists no tombstones). REST hooks are unsigned "
        "and carry only targetId: the hub re-fetches the record (order.booked: the order; payment.created: the "
        "payment, then the orders it is applied to, which hold it). Payments are no stream of their own: they are "
        "stored on their orders (pulled with the orders stream, the payment's date, method and memo added by its "
        "hook or our write). The API fires these hooks for records "
        "created through the API too (our own writes), which carry our reference in externalMappings "
        "(payments: transactionId). "
        "Write-back creates and updates contacts, jobs (with their contacts), events, orders and payments; "
        "the API has no idempotency header, so after an unknown outcome a create is looked up by our "
        "reference before it is sent again (orders have no reference field: matched by name and total).",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("api_key", "Workspace API key (Settings > API)"),
    )
    default_base_url: ClassVar[str | None] = "https://workspace.vsco.co/api/v2"
    docs_url: ClassVar[str | None] = "https://workspace.vsco.co/api/v2/openapi.json"
    #: the spec's maxLength of the Person fields a client edit writes (a longer value would be cut short there)
    contact_field_limits: ClassVar[dict[str, int]] = {"first_name": 48, "last_name": 48, "company": 128}

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        account_key: str = "default",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        reference_url: str = DEFAULT_REFERENCE_URL,
    ) -> None:
        self.client = ProviderClient(
            self.slug,
            base_url or self.default_base_url or "",
            auth=ApiKeyAuth("X-API-KEY", api_key),
            account_key=account_key,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )
        self.reference_url = reference_url
        self.currency: str | None = None  # the studio's currency, loaded with the first money stream
        self._job_types: dict[str, str] | None = None  # name (casefolded) -> id

    async def aclose(self) -> None:
        await self.client.aclose()

    async def list_page(self, stream: str, page: int, *, sort: str = "id asc",
                        page_size: int = PAGE_SIZE) -> Page:
        """Fetch one page of a stream; ``sort`` is the API's ``sortBy`` (e.g. ``modified desc``)."""
        path, ctype, _ = self._stream(stream)
        if stream in ("orders", "payments"):
            await self.studio_currency()
        params: dict[str, Any] = {"page": page, "pageSize": page_size, "sortBy": sort, **_LIST_PARAMS[stream]}
        body = await self.client.get_json(path, params=params)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise SchemaMismatch(f"{path} did not return a collection", provider=self.slug)
        if body.get("type") not in (None, ctype):
            raise SchemaMismatch(f"{path} returned a {body.get('type')!r}, expected {ctype}",
                                 provider=self.slug)
        raw_meta = body.get("meta")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        items = body["items"]
        if len(items) > page_size:  # the page numbers (and what a pass has read) mean nothing then
            raise SchemaMismatch(f"{path} answered {len(items)} records for a page of {page_size}: the provider "
                                 f"ignored pageSize", provider=self.slug)
        total_items = meta.get("totalItems")
        total_pages = meta.get("totalPages")
        if (not isinstance(total_pages, int) or isinstance(total_pages, bool)
                or not 0 <= total_pages <= _MAX_TOTAL):
            # ``meta`` is optional in the spec: without it, a full page means there may be another one. A total
            # beyond what any studio holds (and what the hub's 32-bit page columns store) is no total either.
            total_pages = page + 1 if len(items) >= page_size else page
            total_items = None
        elif (not isinstance(total_items, int) or isinstance(total_items, bool)
              or not 0 <= total_items <= _MAX_TOTAL):
            total_items = None
        return Page(items=items, page=page, total_pages=total_pages, total_items=total_items)

    async def get_record(self, stream: str, remote_id: str) -> dict[str, Any] | None:
        """Fetch one record; None when the provider says it no longer exists."""
        path, _, _ = self._stream(stream)
        if stream in ("orders", "payments"):
            await self.studio_currency()
        try:
            body = await self.client.get_json(f"{path}/{quote(remote_id, safe='')}")
        except Fatal as exc:
            if exc.http_status == 404:
                return None
            raise
        if not isinstance(body, dict) or "id" not in body:
            raise SchemaMismatch(f"{path}/{{id}} did not return an entity", provider=self.slug)
        return body

    async def job_contact_ids(self, job_id: str) -> list[str]:
        """The contact ids linked to a job (``GET /job-contact?jobId=``)."""
        return [str(i["contactId"]) for i in await self._all("/job-contact", {"jobId": job_id})
                if i.get("contactId")]

    async def job_links(self, job_id: str) -> list[dict[str, Any]]:
        """The job-contact links of a job, as the API returns them (``GET /job-contact?jobId=``)."""
        return await self._all("/job-contact", {"jobId": job_id, "includeHidden": "true"})

    async def job_payments(self, job_id: str) -> list[dict[str, Any]]:
        """The payments of a job (``GET /job/{id}/payment``; the spec pages this list by sort only)."""
        body = await self.client.get_json(f"/job/{job_id}/payment", params={"sortBy": "created desc"})
        return self._items(body, f"/job/{job_id}/payment")

    async def job_orders(self, job_id: str) -> list[dict[str, Any]]:
        """The orders of a job (``GET /job/{jobId}/order``)."""
        body = await self.client.get_json(f"/job/{job_id}/order", params={"sortBy": "created desc"})
        return self._items(body, f"/job/{job_id}/order")

    async def studio_currency(self) -> str:
        """The studio's ISO 4217 currency (``GET /studio/me`` ``currencyCode``, USD when unset)."""
        if self.currency is None:
            body = await self.client.get_json("/studio/me")
            if not isinstance(body, dict):
                raise SchemaMismatch("/studio/me did not return a studio", provider=self.slug)
            code = body.get("currencyCode") or "USD"
            if not isinstance(code, str) or not re.fullmatch(r"[A-Z]{3}", code.upper()):
                raise SchemaMismatch(f"studio currency {code!r} is not ISO 4217", provider=self.slug)
            self.currency = code.upper()
        return self.currency

    async def job_type_id(self, name: str | None) -> str | None:
        """The id of the studio's job type with this name (``GET /job-type``), None when there is none."""
        if not name:
            return None
        if self._job_types is None:
            self._job_types = {str(i.get("name", "")).casefold(): str(i["id"])
                               for i in await self._all("/job-type", {"includeHidden": "true"}) if i.get("id")}
        return self._job_types.get(name.casefold())

    async def subscribe(self, event: str, url: str) -> str:
        """Create a REST hook; returns its id."""
        body = await self.client.request("POST", "/rest-hook", json={"event": event, "url": url})
        data = body.json()
        if not isinstance(data, dict) or not data.get("id"):
            raise SchemaMismatch("/rest-hook did not return an id", provider=self.slug)
        return str(data["id"])

    async def unsubscribe(self, hook_id: str) -> None:
        try:
            await self.client.request("DELETE", f"/rest-hook/{hook_id}")
        except Fatal as exc:
            if exc.http_status != 404:
                raise

    # --- write-back ----------------------------------------------------------------------------------------

    async def create_contact(self, client: ClientRecord, *, reference: str) -> WriteResult:
        """``POST /address-book`` with our reference; after an unknown outcome, found before re-created."""
        body = {**contact_body(client), "externalMappings": [reference_mapping(reference, self.reference_url)]}
        return await self._create("contacts", "/address-book", body, reference,
                                  lambda: self.find_contact_by_reference(reference, client.email))

    async def update_contact(self, remote_id: str, client: ClientRecord,
                             fields: Collection[str] | None = None) -> WriteResult:
        """``PUT /address-book/{id}`` with the given ClientRecord fields (all when None)."""
        return await self._update("contacts", f"/address-book/{remote_id}", contact_body(client, fields))

    async def create_job(self, wedding: WeddingRecord, *, reference: str,
                         contact_ids: Sequence[str] = ()) -> WriteResult:
        """``POST /job`` with our reference, then link its contacts (``POST /job-contact``, also referenced)."""
        type_id = await self.job_type_id(wedding.job_type)
        body = {**job_body(wedding, type_id), "externalMappings": [reference_mapping(reference, self.reference_url)]}
        result = await self._create("jobs", "/job", body, reference,
                                    lambda: self._find_mapped("/job", reference))
        await self.link_contacts(result.remote_id, contact_ids, reference=reference)
        return result

    async def link_contacts(self, job_id: str, contact_ids: Sequence[str], *, reference: str) -> list[str]:
        """Link contacts to a job as clients, once each (existing links are kept); returns the link ids."""
        existing = {str(i["contactId"]): str(i["id"]) for i in await self._all("/job-contact", {"jobId": job_id})
                    if i.get("contactId") and i.get("id")}
        ids: list[str] = []
        for index, contact_id in enumerate(contact_ids):
            if contact_id in existing:
                ids.append(existing[contact_id])
                continue
            link_ref = f"{reference}:{index}"[:64]
            body = {"jobId": job_id, "contactId": contact_id, "client": True,
                    "externalMappings": [reference_mapping(link_ref, self.reference_url)]}
            result = await self._create("job-contacts", "/job-contact", body, link_ref,
                                        functools.partial(self._find_mapped, "/job-contact", link_ref))
            ids.append(result.remote_id)
        return ids

    async def update_job(self, remote_id: str, wedding: WeddingRecord,
                         fields: Collection[str] | None = None) -> WriteResult:
        type_id = await self.job_type_id(wedding.job_type) if fields is None or "job_type" in fields else None
        return await self._update("jobs", f"/job/{remote_id}", job_body(wedding, type_id, fields))

    async def create_event(self, event: EventRecord, *, reference: str, job_id: str | None,
                           timezone: str = "UTC") -> WriteResult:
        """``POST /event`` (on the job ``job_id``), times as local date/time in ``timezone``."""
        body = {**event_body(event, job_id, timezone),
                "externalMappings": [reference_mapping(reference, self.reference_url)]}
        return await self._create("events", "/event", body, reference,
                                  lambda: self._find_mapped("/event", reference))

    async def update_event(self, remote_id: str, event: EventRecord, fields: Collection[str] | None = None,
                           timezone: str = "UTC") -> WriteResult:
        return await self._update("events", f"/event/{remote_id}", event_body(event, None, timezone, fields))

    async def create_order(self, job_id: str, invoice: InvoiceRecord, *, reference: str) -> WriteResult:
        """``POST /job/{jobId}/order``. Refuses an invoice in another currency than the studio's."""
        currency = await self.studio_currency()
        if invoice.currency and invoice.currency.upper() != currency:
            raise Fatal(f"the studio bills in {currency}; an order in {invoice.currency} cannot be written",
                        provider=self.slug, code="currency_mismatch")
        body = order_body(invoice)
        since = datetime.now(UTC) - timedelta(seconds=5)

        async def find() -> dict[str, Any] | None:
            total = _order_total(body)
            for order in await self.job_orders(job_id):
                created = parse_ts(order.get("created"))
                if (order.get("name") == body["name"] and order.get("total") == total
                        and (created is None or created >= since)):
                    return order
            return None

        return await self._create("orders", f"/job/{job_id}/order", body, reference, find)

    async def update_order(self, remote_id: str, invoice: InvoiceRecord) -> WriteResult:
        """``PUT /order/{id}``: name and line items (the writable part of an order)."""
        return await self._update("orders", f"/order/{remote_id}", order_body(invoice))

    async def create_payment(self, job_id: str, *, amount_minor: int, currency: str, reference: str,
                             received: date | None = None, memo: str | None = None,
                             order_id: str | None = None) -> WriteResult:
        """``POST /payment`` (``transactionId`` = our reference), then ``POST /payment/{id}/apply`` to the order.

        Amounts are integer minor units and must be in the studio's currency (no conversion, ever).
        """
        check_reference(reference)
        studio = await self.studio_currency()
        if currency.upper() != studio:
            raise Fatal(f"the studio takes {studio}; a payment in {currency} cannot be written",
                        provider=self.slug, code="currency_mismatch")
        if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor < 0:
            raise Fatal("a payment amount is a non-negative integer of minor units", provider=self.slug)
        body: dict[str, Any] = {"jobId": job_id, "amount": amount_minor, "status": "posted",
                                "transactionId": reference, "received": (received or date.today()).isoformat()}
        if memo:
            body["memo"] = memo[:128]

        async def find() -> dict[str, Any] | None:
            return next((p for p in await self.job_payments(job_id) if p.get("transactionId") == reference), None)

        result = await self._create("payments", "/payment", body, reference, find)
        return await self.apply_payment(result, order_id, amount_minor) if order_id else result

    async def apply_payment(self, payment: WriteResult, order_id: str, amount_minor: int) -> WriteResult:
        """``POST /payment/{id}/apply`` to ``order_id`` unless the payment is applied to it already."""
        applied = {str(a.get("orderId")) for a in payment.item.get("paymentAllocations") or () if isinstance(a, dict)}
        if order_id in applied:
            return payment
        # applying is not idempotent either: the allocation list above is the lookup
        try:
            response = await self.client.request("POST", f"/payment/{payment.remote_id}/apply",
                                                 json={"orderId": order_id, "amount": amount_minor})
            item = self._entity(response, "/payment/{id}/apply")
        except (OutcomeUnknown, SchemaMismatch) as exc:  # SchemaMismatch: a 2xx we could not read (applied?)
            fresh = await self._readable(lambda: self.get_record("payments", payment.remote_id))
            if fresh is None or order_id not in {str(a.get("orderId")) for a in
                                                 fresh.get("paymentAllocations") or () if isinstance(a, dict)}:
                if isinstance(exc, SchemaMismatch):
                    raise OutcomeUnknown(f"{self.slug}: POST /payment/{{id}}/apply: {exc.message}, and the payment "
                                         "is not applied", provider=self.slug) from exc
                raise
            item = fresh
        return WriteResult("payments", payment.remote_id, payment.created, payment.reference, item,
                           parse_ts(item.get("modified")))

    async def find_by_reference(self, stream: str, reference: str, *, email: str | None = None,
                                job_id: str | None = None) -> dict[str, Any] | None:
        """The record we created with ``reference`` (see the module docstring for how each stream is searched)."""
        if stream == "contacts":
            return await self.find_contact_by_reference(reference, email)
        if stream in ("jobs", "events", "job-contacts"):
            path = {"jobs": "/job", "events": "/event", "job-contacts": "/job-contact"}[stream]
            return await self._find_mapped(path, reference)
        if stream == "payments" and job_id:
            return next((p for p in await self.job_payments(job_id) if p.get("transactionId") == reference), None)
        raise Fatal(f"records of {stream!r} cannot be found by reference"
                    + (" without their job" if stream == "payments" else ""), provider=self.slug)

    async def find_contact_by_reference(self, reference: str, email: str | None = None) -> dict[str, Any] | None:
        if email:
            candidates = await self._all("/address-book", {"email": email, "includeHidden": "true"})
        else:  # no filter by mapping on this list: our creation is among the newest contacts
            body = await self.client.get_json("/address-book", params={
                "page": 1, "pageSize": PAGE_SIZE, "sortBy": "created desc", "includeHidden": "true"})
            candidates = self._items(body, "/address-book")
        return next((c for c in candidates if wedsync_reference(c) == reference), None)

    async def _find_mapped(self, path: str, reference: str) -> dict[str, Any] | None:
        params: dict[str, Any] = {"externalMappingId": reference}
        if path != "/job":
            params["includeHidden"] = "true"
        else:
            params["includeClosed"] = "true"
        items = await self._all(path, params)
        return next((i for i in items if wedsync_reference(i) == reference), None)

    async def _create(self, stream: str, path: str, body: dict[str, Any], reference: str,
                      find: Callable[[], Any], attempts: int = 3) -> WriteResult:
        """POST once; on an unknown outcome look the record up by our reference, and only then send again."""
        last: ConnectorError | None = None
        maybe_sent = False
        for _ in range(attempts):
            if maybe_sent:
                found = await self._readable(find)
                if found is not None:
                    return WriteResult(stream, str(found["id"]), False, reference, found,
                                       parse_ts(found.get("modified")))
            try:
                response = await self.client.request("POST", path, json=body)
                item = self._entity(response, path)
            except (OutcomeUnknown, SchemaMismatch) as exc:
                # SchemaMismatch here is a 2xx we could not read: the record may well exist
                last, maybe_sent = exc, True
                continue
            except Retriable as exc:  # never sent, or refused before execution: safe to send again
                last = exc
                continue
            return WriteResult(stream, str(item["id"]), True, reference, item, parse_ts(item.get("modified")))
        assert last is not None
        if not maybe_sent:
            raise last  # never reached the provider: nothing to look up, the caller retries later
        found = await self._readable(find)
        if found is not None:
            return WriteResult(stream, str(found["id"]), False, reference, found, parse_ts(found.get("modified")))
        raise OutcomeUnknown(f"{self.slug}: POST {path}: no answer after {attempts} attempts and no record "
                             f"with reference {reference}", provider=self.slug) from last

    async def _update(self, stream: str, path: str, body: dict[str, Any]) -> WriteResult:
        """PUT is idempotent: the client retries it on its own; a 404 means the record is gone."""
        if not body:
            raise Fatal(f"nothing to write to {path}", provider=self.slug)
        try:
            response = await self.client.request("PUT", path, json=body)
        except Fatal as exc:
            if exc.http_status == 404:
                raise Fatal(f"{self.slug}: {path} no longer exists", provider=self.slug, http_status=404,
                            code="remote_record_gone") from exc
            raise
        try:
            item = self._entity(response, path)
        except SchemaMismatch as exc:  # a 2xx we could not read: the PUT most likely applied; what is there now
            async def current() -> Any:
                return self._entity(await self.client.request("GET", path), path)

            item = await self._readable(current)
            if item is None:
                raise OutcomeUnknown(f"{self.slug}: PUT {path}: {exc.message}", provider=self.slug) from exc
        return WriteResult(stream, str(item["id"]), False, wedsync_reference(item), item,
                           parse_ts(item.get("modified")))

    async def _readable(self, read: Callable[[], Any]) -> Any:
        """What ``read`` returns; an answer we could not read (``SchemaMismatch``) while settling an unknown
        outcome is itself an unknown outcome (sent again later), not the provider refusing the write."""
        try:
            return await read()
        except SchemaMismatch as exc:
            raise OutcomeUnknown(f"{self.slug}: could not read the provider's answer while looking up a write "
                                 f"({exc.message})", provider=self.slug) from exc

    def _entity(self, response: httpx.Response, path: str) -> dict[str, Any]:
        try:
            item = response.json()
        except ValueError as exc:
            raise SchemaMismatch(f"{path} answered {response.status_code} with invalid JSON",
                                 provider=self.slug, http_status=response.status_code) from exc
        if not isinstance(item, dict) or not item.get("id"):
            raise SchemaMismatch(f"{path} did not return an entity", provider=self.slug,
                                 http_status=response.status_code)
        return item

    def _items(self, body: Any, path: str) -> list[dict[str, Any]]:
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise SchemaMismatch(f"{path} did not return a collection", provider=self.slug)
        return [i for i in items if isinstance(i, dict)]

    async def _all(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self.client.get_json(path, params={**params, "page": page, "pageSize": PAGE_SIZE})
            items = self._items(body, path)
            out.extend(items)
            meta = body.get("meta") or {}
            total_pages = meta.get("totalPages")
            if (page >= total_pages if isinstance(total_pages, int) else len(items) < PAGE_SIZE) or not items:
                return out
            page += 1

    @staticmethod
    def stream_for_event(event: str) -> str | None:
        for stream, (_, _, ev) in STREAMS.items():
            if ev == event:
                return stream
        return None

    def _stream(self, stream: str) -> tuple[str, str, str | None]:
        try:
            return STREAMS[stream]
        except KeyError:
            raise Fatal(f"VSCO Workspace has no stream {stream!r}", provider=self.slug) from None

    def map(self, stream: str, item: dict[str, Any]) -> Any:
        """The domain record of one item: ClientRecord, WeddingRecord, EventRecord, InvoiceRecord (orders),
        or a payment dict (``map_payment``). Money streams need :meth:`studio_currency` loaded (list_page and
        get_record load it)."""
        if stream == "contacts":
            return map_contact(item)
        if stream == "jobs":
            return map_job(item)
        if stream == "job_contacts":
            return map_job_contact(item)
        if stream == "events":
            return map_event(item)
        if stream in ("orders", "payments"):
            if self.currency is None:
                raise Fatal("the studio currency is not loaded: call studio_currency() first", provider=self.slug)
            return map_order(item, self.currency) if stream == "orders" else map_payment(item, self.currency)
        raise Fatal(f"VSCO Workspace has no stream {stream!r}", provider=self.slug)
