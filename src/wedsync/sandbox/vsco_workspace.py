"""VSCO Workspace (formerly Tave) API v2 emulator: contacts, jobs, job contacts and REST hooks.

Faithful to ``../shared/specs/vsco-workspace/workspace-openapi.json``: ``X-API-KEY`` (or bearer) auth, the
``{"type", "meta", "items"}`` collection shape with ``page`` (1 to 2^63-1) / ``pageSize`` (10..100) and
``sortBy`` (anything else a 400 ``validation-error``), lowercase ULID ids, ``links.self.href``, the spec's
``Error`` and ``ErrorValidation`` bodies, and REST hooks that POST only ``{"targetId": ...}`` (the spec's Rest
Hooks tag: "only the targetId will be provided"; no signature and no event header are documented, so none are
sent). The spec documents no 401 or 404 response bodies; this emulator answers them with the spec's generic
``Error`` shape.

Served operations: ``GET/POST /address-book``, ``GET/PUT/DELETE /address-book/{id}``, ``GET/POST /job``,
``GET/PUT/DELETE /job/{id}``, ``GET/POST /job-contact``, ``GET/PUT/DELETE /job-contact/{id}``,
``GET/POST /rest-hook``, ``GET/PUT/DELETE /rest-hook/{id}``. Hooks fire for ``contact.created`` and
``job.created``; ``order.booked`` and ``payment.created`` can be subscribed to but never fire, because orders
and payments are not emulated.
"""

from __future__ import annotations

import gc
import json
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from wedsync.sandbox.data import (
    Person,
    Phone,
    PostalAddress,
    SyntheticFactory,
    Wedding,
    format_timestamp,
    generate_dataset,
    ulid_at,
)
from wedsync.sandbox.faults import FaultInjector
from wedsync.sandbox.hooks import WebhookDispatcher
from wedsync.sandbox.store import BASE_URL_TOKEN, Collection

__all__ = ["DEFAULT_API_KEY", "PREFIX", "SLUG", "VscoWorkspaceEmulator", "create_emulator"]

SLUG = "vsco-workspace"
PREFIX = "/vsco-workspace/api/v2"
DEFAULT_API_KEY = "sandbox-vsco-key"

# Values of each list operation's ``sortBy`` enum in the spec (``<field>``, ``<field> asc``, ``<field> desc``).
CONTACT_SORT_FIELDS = (
    "id", "modified", "created", "name", "kind", "accountBalance", "anniversary", "anonymized", "bestDayToCall",
    "bestTimeToCall", "cellPhone", "companyName", "contactPreference", "creditBalance", "email", "fax",
    "firstName", "gender", "homePhone", "jobTitle", "lastName", "maidenName", "previousClient", "privacyOptIn",
    "requireStrictPrivacy", "salutation", "schoolGradYear", "schoolName", "sport", "teamName", "teamPosition",
    "workPhone",
)
JOB_SORT_FIELDS = (
    "id", "modified", "created", "name", "accountBalance", "bookingDate", "closed", "closedDate", "completedDate",
    "creditBalance", "customNumber", "eventDate", "fulfillmentDate", "guestCount", "inquiryDate",
    "lastClientActivity", "leadConfidence", "leadDecisionExpectedByDate", "leadMaxBudget", "leadRating",
    "leadStatusChangedAt", "pinned", "previousInteractionDate", "stage", "staleDate", "title", "totalCost",
    "totalGratuity", "totalProfit", "totalRevenue", "webLead",
)
BASIC_SORT_FIELDS = ("id", "modified", "created")
HOOK_EVENTS = ("contact.created", "job.created", "order.booked", "payment.created")

_ID_RE = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")
_fixed = random.Random("vsco-workspace-fixtures")
JOB_TYPES: dict[str, str] = {  # id -> name, stable across seeds like a studio's settings
    ulid_at(1_546_300_800_000, _fixed): "Wedding",
    ulid_at(1_546_300_800_001, _fixed): "Elopement",
    ulid_at(1_546_300_800_002, _fixed): "Engagement Session",
}
_JOB_TYPE_IDS = {name: type_id for type_id, name in JOB_TYPES.items()}
CLIENT_ROLE_ID = ulid_at(1_546_300_800_010, _fixed)
VENUE_FIELD_ID = ulid_at(1_546_300_800_020, _fixed)
EVENT_TIMEZONE_FIELD_ID = ulid_at(1_546_300_800_021, _fixed)
BRAND_ID = ulid_at(1_546_300_800_030, _fixed)


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(body.get("detail"))
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


_TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


def error_json(status: int, detail: str, type_: str = "unknown") -> dict[str, Any]:
    """The spec's ``Error`` schema (``type`` is one of unknown, quota-limit, not-implemented)."""
    return {"type": type_, "title": _TITLES.get(status, "Error"), "detail": detail, "status": status}


def validation_error(detail: Mapping[str, list[str]]) -> ApiError:
    """The spec's ``ErrorValidation`` schema: field -> messages under ``detail``."""
    return ApiError(400, {"type": "validation-error", "title": "Validation Error", "detail": dict(detail),
                          "status": 400})


def _date(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def phone_json(phone: Phone | None) -> dict[str, Any] | None:
    if phone is None:
        return None
    return {
        "id": None,
        "formatted": phone.formatted,
        "e164": phone.e164,
        "extension": phone.extension,
        "telUri": phone.tel_uri,
        "dialCode": phone.dial_code,
        "countryCode": phone.country.lower(),  # the spec's pattern is ^[a-z]{2}$
    }


def address_json(address: PostalAddress) -> dict[str, Any]:
    return {
        "streetAddress": address.street,
        "village": None,
        "city": address.city,
        "state": address.state,
        "postalCode": address.postal_code,
        "country": address.country,
        "latitude": None,
        "longitude": None,
        "googlePlaceId": None,
        "timezone": address.timezone,
    }


def contact_json(person: Person) -> dict[str, Any]:
    """A ``Person`` entity as the list and fetch endpoints return it."""
    address = address_json(person.address)
    return {
        "links": {"self": {"href": f"{BASE_URL_TOKEN}/address-book/{person.id}"}},
        "id": person.id,
        "created": format_timestamp(person.created),
        "modified": format_timestamp(person.modified),
        "hidden": person.hidden,
        "kind": "person",
        "name": person.name,
        "firstName": person.first_name,
        "lastName": person.last_name,
        "maidenName": None,
        "salutation": None,
        "gender": person.gender,
        "email": person.email,
        "secondaryEmail": None,
        "cellPhone": phone_json(person.cell_phone),
        "homePhone": phone_json(person.home_phone),
        "workPhone": phone_json(person.work_phone),
        "fax": None,
        "address": address,
        "mailingAddress": dict(address),
        "birthdate": _date(person.birthdate),
        "anniversary": None,
        "companyName": None,
        "jobTitle": None,
        "contactPreference": person.contact_preference,
        "bestDayToCall": None,
        "bestTimeToCall": None,
        "privacyOptIn": person.privacy_opt_in,
        "requireStrictPrivacy": person.strict_privacy,
        "previousClient": None,
        "brandId": BRAND_ID,
        "pinned": False,
        "anonymized": False,
        "accountBalance": 0,
        "creditBalance": 0,
        "totalCost": 0,
        "totalRevenue": 0,
        "customFields": [],
        "externalMappings": None,
    }


def job_json(wedding: Wedding, a: Person, b: Person) -> dict[str, Any]:
    cost = wedding.total_revenue * 3 // 10
    return {
        "links": {"self": {"href": f"{BASE_URL_TOKEN}/job/{wedding.id}"}},
        "id": wedding.id,
        "created": format_timestamp(wedding.created),
        "modified": format_timestamp(wedding.modified),
        "name": wedding.name,
        "title": f"{wedding.job_type}: {a.name} & {b.name}",
        "stage": wedding.stage,
        "closed": wedding.closed,
        "closedDate": _date(wedding.closed_date),
        "closedReasonId": None,
        "closedReasonName": "Booked another photographer" if wedding.closed else None,
        "eventDate": _date(wedding.event_date),
        "inquiryDate": _date(wedding.inquiry_date),
        "bookingDate": _date(wedding.booking_date),
        "fulfillmentDate": _date(wedding.fulfillment_date),
        "completedDate": _date(wedding.completed_date),
        "guestCount": wedding.guest_count,
        "jobTypeId": _JOB_TYPE_IDS[wedding.job_type],
        "jobTypeName": wedding.job_type,
        "brandId": BRAND_ID,
        "leadSourceId": None,
        "leadSourceName": wedding.lead_source,
        "leadStatusId": None,
        "leadStatusName": None,
        "leadRating": wedding.lead_rating,
        "leadConfidence": wedding.lead_confidence,
        "leadMaxBudget": wedding.budget,
        "webLead": wedding.web_lead,
        "pinned": False,
        "sample": False,
        "totalRevenue": wedding.total_revenue,
        "totalCost": cost,
        "totalProfit": wedding.total_revenue - cost,
        "accountBalance": 0 if wedding.stage == "completed" else wedding.total_revenue // 2,
        "creditBalance": 0,
        "customFields": [
            {"fieldId": VENUE_FIELD_ID, "value": wedding.venue},
            {"fieldId": EVENT_TIMEZONE_FIELD_ID, "value": wedding.timezone},
        ],
        "externalMappings": None,
    }


def job_contact_json(link_id: str, job_id: str, contact_id: str, created: int) -> dict[str, Any]:
    stamp = format_timestamp(created)
    return {
        "links": {"self": {"href": f"{BASE_URL_TOKEN}/job-contact/{link_id}"}},
        "id": link_id,
        "created": stamp,
        "modified": stamp,
        "hidden": False,
        "jobId": job_id,
        "contactId": contact_id,
        "client": True,
        "jobRoles": [CLIENT_ROLE_ID],
        "roleKinds": ["client"],
        "externalMappings": None,
    }


# --- request body validation -----------------------------------------------------------------------------

Validator = Callable[[Any], Any]


class _Invalid(ValueError):
    pass


def _v_str(max_len: int, nullable: bool = True) -> Validator:
    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise _Invalid("This value should be of type string.")
        if len(value) > max_len:
            raise _Invalid(f"This value is too long. It should have {max_len} characters or less.")
        return value
    return check


def _v_enum(values: tuple[str, ...], nullable: bool = True) -> Validator:
    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if value not in values:
            raise _Invalid("The value you selected is not a valid choice.")
        return value
    return check


def _v_bool(nullable: bool = True) -> Validator:
    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, bool):
            raise _Invalid("This value should be of type bool.")
        return value
    return check


def _v_int(lo: int, hi: int, nullable: bool = True) -> Validator:
    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid("This value should be of type int.")
        if not lo <= value <= hi:
            raise _Invalid(f"This value should be between {lo} and {hi}.")
        return value
    return check


def _v_date(value: Any) -> Any:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat() if isinstance(value, str) and len(value) == 10 else _bad_date()
    except ValueError:
        return _bad_date()


def _bad_date() -> Any:
    raise _Invalid("This value is not a valid date.")


def _v_id(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise _Invalid("This value is not a valid ULID.")
    return value


def _v_email(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 255 or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise _Invalid("This value is not a valid email address.")
    return value


def _v_list(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _Invalid("This value should be of type array.")
    return value


def _v_object(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid("This value should be of type object.")
    return value


def _v_phone(value: Any) -> Any:
    """Normalize a phone object the way the spec describes (libphonenumber; lossy ``formatted``)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid("This value should be of type object.")
    country = value.get("countryCode")
    region = country.upper() if isinstance(country, str) and len(country) == 2 else "US"
    raw = value.get("e164") or value.get("telUri") or value.get("formatted")
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > 64:
        raise _Invalid("This value should be of type string.")
    text = raw.removeprefix("tel:").replace(";ext=", " x")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        return {"id": None, "formatted": raw[:24], "e164": None, "extension": None, "telUri": None,
                "dialCode": None, "countryCode": None}
    extension = value.get("extension") or (int(number.extension) if number.extension else None)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    if extension:
        formatted = f"{formatted} x{extension}"[:24]
    return {
        "id": None,
        "formatted": formatted,
        "e164": e164,
        "extension": extension,
        "telUri": f"tel:{e164};ext={extension}" if extension else f"tel:{e164}",
        "dialCode": number.country_code,
        "countryCode": (phonenumbers.region_code_for_number(number) or region).lower(),
    }


_ADDRESS_FIELDS = {"streetAddress": 512, "village": 255, "city": 255, "state": 255, "postalCode": 255, "country": 2}


def _v_address(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid("This value should be of type object.")
    out: dict[str, Any] = {"streetAddress": None, "village": None, "city": None, "state": None, "postalCode": None,
                           "country": None, "latitude": None, "longitude": None, "googlePlaceId": None,
                           "timezone": None}
    for key, item in value.items():
        if key in _ADDRESS_FIELDS:
            out[key] = _v_str(_ADDRESS_FIELDS[key])(item)
        elif key not in {"links", "id", "created", "modified", "hidden", "name", "latitude", "longitude",
                         "googlePlaceId", "timezone"}:
            raise _Invalid(f"The field {key} was not expected.")
    return out


_PERSON_FIELDS: dict[str, Validator] = {
    "kind": _v_enum(("person", "company", "location"), nullable=False),
    "firstName": _v_str(48), "lastName": _v_str(48), "maidenName": _v_str(48),
    "email": _v_email, "secondaryEmail": _v_email,
    "cellPhone": _v_phone, "homePhone": _v_phone, "workPhone": _v_phone, "fax": _v_phone, "phone": _v_phone,
    "address": _v_address, "mailingAddress": _v_address,
    "salutation": _v_enum(("mr", "miss", "mrs", "ms", "dr")), "gender": _v_enum(("male", "female")),
    "birthdate": _v_date, "anniversary": _v_date, "companyName": _v_str(128), "jobTitle": _v_str(64),
    "contactPreference": _v_enum(("email", "cell-phone", "home-phone", "work-phone")),
    "bestDayToCall": _v_enum(("weekdays", "weekends", "mondays", "tuesdays", "wednesdays", "thursdays",
                              "fridays", "saturdays", "sundays")),
    "bestTimeToCall": _v_enum(("mornings", "afternoons", "evenings")),
    "privacyOptIn": _v_bool(), "requireStrictPrivacy": _v_bool(), "previousClient": _v_bool(),
    "pinned": _v_bool(), "brandId": _v_id, "vendorRoleId": _v_id, "customFields": _v_list,
    "externalMappings": _v_list, "chatAccount1": _v_object, "chatAccount2": _v_object, "chatAccount3": _v_object,
    "facebookUsername": _v_str(50), "twitterUsername": _v_str(15), "url": _v_str(2048),
    "schoolGradYear": _v_int(1900, 2100), "schoolName": _v_str(255), "sport": _v_str(255),
    "teamName": _v_str(255), "teamPosition": _v_str(255),
    "startingCost": _v_int(-99_999_999_999, 99_999_999_999), "startingRevenue": _v_int(-99_999_999_999,
                                                                                     99_999_999_999),
    "name": _v_str(255),  # read-only for people (derived), the name of a company or location
}
_CONTACT_READ_ONLY = {"links", "id", "created", "modified", "hidden", "customNumber", "notes", "totalCost",
                      "totalRevenue", "accountBalance", "creditBalance", "anonymized"}

_JOB_FIELDS: dict[str, Validator] = {
    "name": _v_str(255), "stage": _v_enum(("lead", "booked", "fulfillment", "completed"), nullable=False),
    "closed": _v_bool(nullable=False), "closedReasonId": _v_id, "closedDate": _v_date,
    "eventDate": _v_date, "inquiryDate": _v_date, "bookingDate": _v_date, "fulfillmentDate": _v_date,
    "completedDate": _v_date, "leadDecisionExpectedByDate": _v_date,
    "guestCount": _v_int(0, 99_999_999_999), "jobTypeId": _v_id, "brandId": _v_id, "contactFormId": _v_id,
    "leadConfidence": _v_enum(("low", "medium", "high")), "leadMaxBudget": _v_int(-99_999_999_999,
                                                                                  99_999_999_999),
    "leadNotes": _v_str(1_000_000_000), "leadRating": _v_int(1, 5), "leadSourceId": _v_id,
    "leadStatusId": _v_id, "pinned": _v_bool(), "webLead": _v_bool(nullable=False), "workflowId": _v_id,
    "customFields": _v_list, "externalMappings": _v_list,
}
_JOB_READ_ONLY = {"links", "id", "created", "modified", "accountBalance", "closedReasonName", "creditBalance",
                  "customNumber", "jobTypeName", "lastClientActivity", "leadSourceName", "leadStatusName",
                  "leadStatusChangedAt", "nextInteractionDate", "nextInteractionItem", "primarySessionId",
                  "previousInteractionDate", "previousInteractionItem", "sample", "staleDate", "title",
                  "totalCost", "totalProfit", "totalRevenue", "workflowName"}

_JOB_CONTACT_FIELDS: dict[str, Validator] = {
    "jobId": _v_id, "contactId": _v_id, "client": _v_bool(), "jobRoles": _v_list, "externalMappings": _v_list,
}
_JOB_CONTACT_READ_ONLY = {"links", "id", "created", "modified", "hidden", "roleKinds"}

_HOOK_FIELDS: dict[str, Validator] = {"event": _v_enum(HOOK_EVENTS, nullable=False), "url": _v_str(2048, False),
                                      "limitTo": _v_object}
_HOOK_READ_ONLY = {"links", "id", "created", "modified", "hidden"}


def _clean(body: Any, fields: Mapping[str, Validator], read_only: set[str],
           required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise validation_error({"body": ["The request body must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    out: dict[str, Any] = {}
    for name in required:
        if body.get(name) is None:
            errors[name] = ["This value should not be blank."]
    for key, value in body.items():
        if key in read_only:
            continue
        check = fields.get(key)
        if check is None:
            errors[key] = ["This field was not expected."]
            continue
        try:
            out[key] = check(value)
        except _Invalid as exc:
            errors.setdefault(key, []).append(str(exc))
    if errors:
        raise validation_error(errors)
    return out


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise validation_error({"body": ["The request body is not valid JSON."]}) from None


# --- events, orders, payments (JSON builders and body validation) ----------------------------------------

STUDIO_CURRENCY = "USD"
STUDIO_ID = ulid_at(1_546_300_800_040, _fixed)
EVENT_SORT_FIELDS = ("id", "modified", "created", "name")
ORDER_SORT_FIELDS = ("id", "modified", "created", "name", "sortPosition")
JOB_TYPE_SORT_FIELDS = ("id", "modified", "created", "name", "sortPosition")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")


def _utc_of(day: str | None, clock: str | None, zone: str | None) -> str | None:
    if not day:
        return None
    try:
        tz = ZoneInfo(zone) if zone else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = datetime.combine(date.fromisoformat(day), dtime.fromisoformat(clock) if clock else dtime(0, 0), tz)
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _event_derived(record: dict[str, Any]) -> dict[str, Any]:
    zone = record.get("timezoneName")
    if record.get("allDay") and record.get("startDate"):
        # an all-day event is whole days: times are ignored, the end date is the last day (inclusive), so it
        # ends at the midnight after it (a one-day event has endDate == startDate and lasts 24 hours)
        last = date.fromisoformat(str(record.get("endDate") or record["startDate"])[:10])
        record["startUtc"] = _utc_of(str(record["startDate"])[:10], None, zone)
        record["endUtc"] = _utc_of((last + timedelta(days=1)).isoformat(), None, zone)
        return record
    record["startUtc"] = _utc_of(record.get("startDate"), record.get("startTime"), zone)
    record["endUtc"] = (_utc_of(record.get("endDate") or record.get("startDate"), record.get("endTime"), zone)
                        if record.get("endDate") or record.get("endTime") else None)  # no end given: none
    return record


def event_json(record_id: str, job_id: str | None, name: str, day: date, start: str, end: str, zone: str,
               venue: str | None, stamp: str) -> dict[str, Any]:
    location = None
    if venue:
        location = {"id": None, "address": {"streetAddress": None, "village": None, "city": None, "state": None,
                                            "postalCode": None, "country": None, "latitude": None,
                                            "longitude": None, "googlePlaceId": None, "timezone": zone,
                                            "name": venue}}
    return _event_derived({
        "links": {"self": {"href": f"{BASE_URL_TOKEN}/event/{record_id}"}},
        "id": record_id, "created": stamp, "modified": stamp, "hidden": False, "allDay": False,
        "channel": "InPerson", "confirmed": True, "descriptionHtml": None, "endDate": day.isoformat(),
        "endTime": end, "externalMappings": None, "galleryId": None, "jobId": job_id, "location": location,
        "name": name, "phoneNumber": None, "readOnly": False, "startDate": day.isoformat(), "startTime": start,
        "timezoneName": zone, "timezoneId": None, "typeId": None, "virtualUrl": None,
    })


def _reference_code(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))


def order_json(record_id: str, job_id: str, name: str | None, items: list[dict[str, Any]], stamp: str,
               number: int, reference_code: str, due: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "links": {"self": {"href": f"{BASE_URL_TOKEN}/order/{record_id}"}},
        "id": record_id, "created": stamp, "modified": stamp, "hidden": False, "jobId": job_id,
        "recipientId": None, "customNumber": f"{number:05d}", "name": name, "referenceCode": reference_code,
        "bookedElectronically": False, "bookedFromQuote": False, "bookedOn": stamp[:10],
        "paymentTermsId": None, "paymentTermsName": "Due on receipt", "taxGroupId": None,
        "taxIsCompounding": False, "preTaxDiscount": None, "afterTaxDiscount": None,
        "paymentAllocations": [], "lineItems": [],
        "invoices": [{"id": ulid_at(int(number) + 1_600_000_000_000, random.Random(record_id)), "created": stamp,
                      "modified": stamp, "hidden": False, "status": "open", "customNumber": f"{number:05d}-1",
                      "orderId": record_id, "title": f"Invoice {number:05d}-1", "dueDate": due,
                      "recipientId": None, "promisedArrival": None, "response": None,
                      "referenceCode": reference_code, "total": 0}],
    }
    _set_line_items(record, items, stamp)
    return record


def _set_line_items(order: dict[str, Any], items: list[dict[str, Any]], stamp: str) -> None:
    lines = []
    for index, item in enumerate(items):
        raw_units = item.get("units")
        units = float(raw_units) if isinstance(raw_units, int | float) else 1.0
        price = int(item.get("pricePerUnit") or 0)
        lines.append({
            "id": ulid_at(1_600_000_000_000 + index, random.Random(f"{order['id']}:{index}")),
            "created": stamp, "modified": stamp, "hidden": False, "orderId": order["id"], "productId": None,
            "name": item["name"], "descriptionHtml": item.get("descriptionHtml"), "basePricePerUnit": price,
            "pricePerUnit": price, "baseCostPerUnit": 0, "costPerUnit": 0, "units": units,
            "taxable": bool(item.get("taxable", False)), "discount": False, "discountKind": "amount",
            "selectability": "required", "selected": item.get("selected", True) is not False, "children": None,
        })
    order["lineItems"] = lines
    total = sum(int(li["pricePerUnit"] * li["units"]) for li in lines if li["selected"])
    order["subtotal"] = {"amount": total, "taxable": 0, "nonTaxable": total}
    order["total"] = total
    for invoice in order.get("invoices") or ():
        invoice["total"] = total
    _order_balance(order)


def _order_balance(order: dict[str, Any]) -> None:
    paid = sum(a["amount"] for a in order["paymentAllocations"])
    order["balance"] = max(0, order["total"] - paid)
    order["status"] = "paid-in-full" if order["total"] and order["balance"] == 0 else "open"
    for invoice in order.get("invoices") or ():
        invoice["status"] = "paid-in-full" if order["status"] == "paid-in-full" else "open"


def payment_json(record_id: str, job_id: str, amount: int, received: str, stamp: str,
                 transaction_id: str | None = None, memo: str | None = None) -> dict[str, Any]:
    return {
        "links": {"self": {"href": f"{BASE_URL_TOKEN}/payment/{record_id}"}},
        "id": record_id, "created": stamp, "modified": stamp, "hidden": False, "jobId": job_id, "payerId": None,
        "paymentMethodId": None, "invoiceItemId": None, "status": "posted", "amount": amount,
        "refundedAmount": 0, "memo": memo, "checkNumber": None, "transactionId": transaction_id,
        "authCode": None, "received": received, "processedViaClientAccess": False, "refunds": [],
        "paymentAllocations": [],
    }


def _v_time(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not _TIME_RE.match(value):
        raise _Invalid("This value is not a valid time.")
    return value if len(value) == 8 else f"{value}:00"


def _v_zone(value: Any) -> Any:
    if value is None:
        return None
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise _Invalid("This value is not a valid timezone.") from None
    return value


def _v_location(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid("This value should be of type object.")
    out = {"id": _v_id(value.get("id")), "address": _v_address(value.get("address"))}
    extra = set(value) - {"id", "address"}
    if extra:
        raise _Invalid(f"The field {sorted(extra)[0]} was not expected.")
    return out


def _v_line_items(value: Any) -> Any:
    if not isinstance(value, list):
        raise _Invalid("This value should be of type array.")
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not 1 <= len(item["name"]) <= 128:
            raise _Invalid("Each line item needs a name of 1 to 128 characters.")
        price = item.get("pricePerUnit", 0)
        if isinstance(price, bool) or not isinstance(price, int) or abs(price) > 99_999_999_999:
            raise _Invalid("pricePerUnit should be an integer amount.")
        units = item.get("units", 1)
        if isinstance(units, bool) or not isinstance(units, int | float) or units < 0:
            raise _Invalid("units should be a non-negative number.")
        out.append(item)
    return out


def _v_amount(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 99_999_999_999:
        raise _Invalid("This value should be a positive integer amount.")
    return value


_EVENT_FIELDS: dict[str, Validator] = {
    "allDay": _v_bool(), "channel": _v_enum(("InPerson", "Phone", "Virtual"), nullable=False),
    "confirmed": _v_bool(), "descriptionHtml": _v_str(1_073_741_824), "endDate": _v_date, "endTime": _v_time,
    "externalMappings": _v_list, "galleryId": _v_id, "jobId": _v_id, "location": _v_location, "name": _v_str(255),
    "phoneNumber": _v_phone, "startDate": _v_date, "startTime": _v_time, "timezoneName": _v_zone,
    "timezoneId": _v_id, "typeId": _v_id, "virtualUrl": _v_str(2048),
}
_EVENT_READ_ONLY = {"links", "id", "created", "modified", "hidden", "endUtc", "startUtc", "readOnly"}
_ORDER_FIELDS: dict[str, Validator] = {
    "lineItems": _v_line_items, "taxGroupId": _v_id, "recipientId": _v_id, "dueDate": _v_date,
    "name": _v_str(255), "paymentTermsId": _v_id,
}
_ORDER_READ_ONLY = {"links", "id", "created", "modified", "hidden", "jobId", "customNumber", "title",
                    "referenceCode", "status", "bookedElectronically", "bookedFromQuote", "bookedOn", "balance",
                    "paymentTermsName", "paymentAllocations", "invoices", "preTaxDiscount", "afterTaxDiscount",
                    "tax1", "tax2", "tax3", "taxCombined", "taxIsCompounding", "subtotal", "total"}
_PAYMENT_FIELDS: dict[str, Validator] = {
    "jobId": _v_id, "payerId": _v_id, "paymentMethodId": _v_id, "invoiceItemId": _v_id,
    "status": _v_enum(("future", "confirmed-future", "posted", "failed", "pending"), nullable=False),
    "amount": _v_amount, "memo": _v_str(128), "checkNumber": _v_str(18), "transactionId": _v_str(255),
    "authCode": _v_str(100), "received": _v_date,
}
_PAYMENT_READ_ONLY = {"links", "id", "created", "modified", "hidden", "refundedAmount", "processedViaClientAccess",
                      "refunds", "paymentAllocations"}
_APPLY_FIELDS: dict[str, Validator] = {"orderId": _v_id, "amount": _v_amount}


def _job_scope(job: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a hook's ``limitTo`` filters an order or payment by: the fields of its job."""
    if not job:
        return {}
    return {"jobTypeId": job.get("jobTypeId"), "brandId": job.get("brandId"), "webLead": job.get("webLead")}


# --- the emulator ----------------------------------------------------------------------------------------


class _ApiKeyGate:
    """``X-API-KEY`` (or ``Authorization: Bearer``) check in front of the API, as raw ASGI for speed."""

    def __init__(self, app: ASGIApp, emulator: VscoWorkspaceEmulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.emulator.key_of(scope) != self.emulator.api_key:
            body = json.dumps(error_json(401, "API key is missing or invalid")).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="VSCO Workspace"')]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def _sort(sort_by: str, allowed: tuple[str, ...]) -> tuple[str, bool]:
    field, _, direction = sort_by.strip().partition(" ")
    if field not in allowed or direction not in ("", "asc", "desc"):
        raise validation_error({"sortBy": ["The value you selected is not a valid choice."]})
    return field, direction == "desc"


#: The largest page number the API accepts: its integers are 64-bit (a larger one is a validation error there,
#: and it could not even be echoed back in ``meta.currentPage``; it was a 500 here, found by a probe).
MAX_PAGE = 2**63 - 1


def _paging(page: int, page_size: int) -> None:
    errors: dict[str, list[str]] = {}
    if page < 1:
        errors["page"] = ["This value should be greater than or equal to 1."]
    elif page > MAX_PAGE:
        errors["page"] = [f"This value should be less than or equal to {MAX_PAGE}."]
    if not 10 <= page_size <= 100:
        errors["pageSize"] = ["This value should be between 10 and 100."]
    if errors:
        raise validation_error(errors)


def _check_id(record_id: str) -> None:
    if not _ID_RE.match(record_id):
        raise validation_error({"id": ["This value is not a valid ULID."]})


def _json_response(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type="application/json")


class VscoWorkspaceEmulator:
    """The VSCO Workspace API over in-memory collections; see the module docstring for what is served."""

    slug = SLUG
    prefix = PREFIX

    def __init__(self, *, seed: int = 42, contacts: int = 200, jobs: int = 80,
                 api_key: str = DEFAULT_API_KEY, currency: str = STUDIO_CURRENCY) -> None:
        self.api_key = api_key
        self.faults = FaultInjector()
        self.webhooks = WebhookDispatcher(self.faults)
        self.contacts = Collection("address-book")
        self.jobs = Collection("job")
        self.job_contacts = Collection("job-contact")
        self.rest_hooks = Collection("rest-hook")
        self.events = Collection("event")
        self.orders = Collection("order")
        self.payments = Collection("payment")
        self.job_types = Collection("job-type")
        self.job_types.load(_job_type_json(type_id, name, index) for index, (type_id, name) in
                            enumerate(JOB_TYPES.items()))
        self.studio = _studio_json(currency)
        self.write_log: list[tuple[str, str, str]] = []  # (method, collection path, id) of API writes
        self._order_number = 0
        self._initial = {"seed": seed, "contacts": contacts, "jobs": jobs}
        self._seed = seed
        self._indexes: dict[str, tuple[int, dict[str, list[str]]]] = {}
        self._last_stamp = 0
        self._factory = SyntheticFactory(seed)
        self._rng = random.Random(seed)
        self.api = self._build_api()  # the FastAPI app itself (its OpenAPI is checked against the spec)
        self._app = _ApiKeyGate(self.api, self)
        self.seed(self._initial)

    # --- Emulator protocol -------------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        return self._app

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        return json.dumps(error_json(status, detail, "quota-limit" if kind == "rate-limit" else "unknown")).encode()

    def key_of(self, scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                return str(value.decode("latin-1"))
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return str(value[7:].decode("latin-1").strip())
        return None

    def quota_key(self, scope: Scope) -> str | None:
        return self.key_of(scope)

    def collections(self) -> list[str]:
        return ["address-book", "job", "job-contact", "rest-hook", "event", "order", "payment"]

    def _collection(self, name: str) -> Collection:
        return {"address-book": self.contacts, "job": self.jobs, "job-contact": self.job_contacts,
                "rest-hook": self.rest_hooks, "event": self.events, "order": self.orders,
                "payment": self.payments}[name]

    def iter_records(self, collection: str, base_url: str, offset: int, limit: int | None) -> Iterator[bytes]:
        return self._collection(collection).iter_blobs(base_url.encode(), offset, limit)

    def reset(self) -> dict[str, Any]:
        self.rest_hooks.clear()
        self.webhooks.clear()
        self.write_log.clear()
        return self.seed(self._initial)

    def seed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        contacts = int(params.get("contacts", self._initial["contacts"]))
        jobs = int(params.get("jobs", self._initial["jobs"]))
        seed = int(params.get("seed", self._seed))
        duplicates = float(params.get("duplicates", 0.0))
        if contacts < 0 or jobs < 0:
            raise ValueError("contacts and jobs must be >= 0")
        gc_was_enabled = gc.isenabled()
        gc.disable()  # a hundred thousand nested dicts would otherwise trigger dozens of full collections
        try:
            return self._seed_data(seed, contacts, jobs, duplicates)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _seed_data(self, seed: int, contacts: int, jobs: int, duplicates: float = 0.0) -> dict[str, Any]:
        self._seed = seed
        self._factory = SyntheticFactory(seed ^ 0x5EED)  # new records after seeding: independent stream
        self._rng = random.Random(seed + 7)
        data = generate_dataset(seed, contacts, jobs, duplicates)
        people = data.people
        self._next_index = len(people)
        self.contacts.clear()
        self.jobs.clear()
        self.job_contacts.clear()
        self.contacts.load(contact_json(person) for person in people)
        self.jobs.load(job_json(w, people[w.partners[0]], people[w.partners[1]]) for w in data.weddings)
        link_rng = random.Random(seed + 11)
        links = []
        for wedding in data.weddings:
            for partner in wedding.partners:
                link_id = ulid_at(wedding.created * 1000 + 1, link_rng)
                links.append(job_contact_json(link_id, wedding.id, people[partner].id, wedding.created))
        self.job_contacts.load(links)
        self._seed_money_and_events(seed, data.weddings)
        self._indexes.clear()
        return {"seed": seed, "contacts": len(self.contacts), "jobs": len(self.jobs),
                "job_contacts": len(self.job_contacts), "events": len(self.events), "orders": len(self.orders),
                "payments": len(self.payments), "duplicates": len(data.duplicate_of)}

    def _seed_money_and_events(self, seed: int, weddings: list[Wedding]) -> None:
        """The wedding day (and some engagement shoots) as events; an order and payments for booked jobs.

        Drawn from their own random stream, so contacts and jobs are the same as without them."""
        rng = random.Random(seed + 23)
        events: list[dict[str, Any]] = []
        orders: list[dict[str, Any]] = []
        payments: list[dict[str, Any]] = []
        number = 0
        for w in weddings:
            stamp = format_timestamp(w.created)
            if w.job_type == "Engagement Session":
                plan = [("Engagement Session", w.event_date, "17:00:00", "19:00:00")]
            else:
                plan = [("Ceremony & Reception" if w.job_type == "Wedding" else "Elopement", w.event_date,
                         "14:00:00", "23:00:00")]
                if w.job_type == "Wedding" and rng.random() < 0.35:
                    plan.append(("Engagement Session", w.event_date - timedelta(days=rng.randint(60, 200)),
                                 "17:30:00", "19:30:00"))
            for name, day, start, end in plan:
                events.append(event_json(ulid_at(w.created * 1000 + 2 + len(events) % 7, rng), w.id, name, day,
                                         start, end, w.timezone, w.venue, stamp))
            if w.stage == "lead" or w.total_revenue <= 0:
                continue
            number += 1
            booked = w.booking_date or w.inquiry_date
            order_stamp = format_timestamp(max(w.created, int(datetime.combine(booked, dtime(12, 0), UTC)
                                                                   .timestamp())))
            order = order_json(ulid_at(w.created * 1000 + 9, rng), w.id, f"{w.job_type} collection",
                               [{"name": f"{w.job_type} collection", "pricePerUnit": w.total_revenue, "units": 1}],
                               order_stamp, number, _reference_code(rng), booked.isoformat())
            shares = [w.total_revenue * 3 // 10]
            if w.stage == "completed":
                shares.append(w.total_revenue - shares[0])
            elif w.stage == "fulfillment" and rng.random() < 0.5:
                shares.append(w.total_revenue // 2)
            for index, amount in enumerate(shares):
                payment = payment_json(ulid_at(w.created * 1000 + 11 + index, rng), w.id, amount,
                                       (booked + timedelta(days=90 * index)).isoformat(), order_stamp,
                                       memo="Retainer" if index == 0 else "Balance")
                allocation = {"id": ulid_at(w.created * 1000 + 13 + index, rng), "created": order_stamp,
                              "modified": order_stamp, "hidden": False, "paymentId": payment["id"],
                              "orderId": order["id"], "invoiceItemId": None, "jobId": w.id, "amount": amount,
                              "refundedAmount": 0}
                payment["paymentAllocations"].append(allocation)
                order["paymentAllocations"].append(allocation)
                payments.append(payment)
            _order_balance(order)
            orders.append(order)
        self._order_number = number
        for collection, records in ((self.events, events), (self.orders, orders), (self.payments, payments)):
            collection.clear()
            collection.load(records)

    async def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Random edits by 'the studio': ``{"update", "create", "delete", "collection": address-book|job}``."""
        update, create, delete = (int(params.get(k, 0)) for k in ("update", "create", "delete"))
        collection = params.get("collection", "address-book")
        if collection not in ("address-book", "job") or min(update, create, delete) < 0:
            raise ValueError("collection must be address-book or job; counts must be >= 0")
        target = self._collection(collection)
        rng = self._rng
        ids = sorted(target.records)
        chosen = rng.sample(ids, min(len(ids), update + delete))
        to_update, to_delete = chosen[:update], chosen[update:]
        for record_id in to_update:
            record = dict(target.records[record_id])
            if collection == "address-book":
                self._edit_contact(record, rng)
            else:
                self._edit_job(record, rng)
            record["modified"] = self._stamp()
            target.put(record)
        for record_id in to_delete:
            self._delete(collection, record_id)
        created: list[str] = []
        for _ in range(create):
            if collection == "address-book":
                created.append(self._create_person()["id"])
            else:
                created.append(self._create_wedding()["id"])
        return {"collection": collection, "updated": to_update, "created": created, "deleted": to_delete}

    # --- data changes ------------------------------------------------------------------------------------

    def _stamp(self) -> str:
        now = max(int(time.time()), self._last_stamp)
        self._last_stamp = now
        return format_timestamp(now)

    def _edit_contact(self, record: dict[str, Any], rng: random.Random) -> None:
        change = rng.randrange(4)
        fresh = self._factory.person(self._next_index, int(time.time()))
        if change == 0 and record.get("lastName"):  # married name, the old one kept as maiden name
            record["maidenName"] = record["lastName"]
            record["lastName"] = fresh.last_name
        elif change == 1:
            record["email"] = fresh.email
        elif change == 2:
            record["cellPhone"] = phone_json(fresh.cell_phone)
        else:
            record["address"] = address_json(fresh.address)
            record["mailingAddress"] = address_json(fresh.address)
        if record.get("kind") == "person":
            record["name"] = f"{record.get('firstName') or ''} {record.get('lastName') or ''}".strip()

    def _edit_job(self, record: dict[str, Any], rng: random.Random) -> None:
        change = rng.randrange(3)
        if change == 0 and record.get("guestCount") is not None:
            record["guestCount"] = max(2, record["guestCount"] + rng.randint(-25, 25))
        elif change == 1:
            order = ("lead", "booked", "fulfillment", "completed")
            stage = record.get("stage", "lead")
            record["stage"] = order[min(3, order.index(stage) + 1)] if stage in order else "booked"
            if record["stage"] == "booked" and not record.get("bookingDate"):
                record["bookingDate"] = time.strftime("%Y-%m-%d", time.gmtime())
        else:
            record["pinned"] = not record.get("pinned")

    def _create_person(self) -> dict[str, Any]:
        now = int(time.time())
        return self._create_person_from(self._factory.person(self._next_index, now, modified_until=now))

    def _create_wedding(self) -> dict[str, Any]:
        now = int(time.time())
        a = self._factory.person(self._next_index, now, modified_until=now)
        a_record = self._create_person_from(a)
        b = self._factory.person(self._next_index, now, partner=a, modified_until=now)
        b_record = self._create_person_from(b)
        wedding = self._factory.wedding(0, a, b, created=now, modified_until=now)
        record = job_json(wedding, a, b)
        record["created"] = record["modified"] = self._stamp()
        self.jobs.put(record)
        for contact in (a_record, b_record):
            self._link(record["id"], contact["id"])
        self._fire("job.created", record)
        return record

    def _create_person_from(self, person: Person) -> dict[str, Any]:
        self._next_index += 1
        record = contact_json(person)
        record["created"] = record["modified"] = self._stamp()
        self.contacts.put(record)
        self._fire("contact.created", record)
        return record

    def _link(self, job_id: str, contact_id: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        now = int(time.time())
        link = job_contact_json(ulid_at(now * 1000, self._rng), job_id, contact_id, now)
        link["created"] = link["modified"] = self._stamp()
        if extra:
            link.update(extra)
        self.job_contacts.put(link)
        return link

    def _delete(self, collection: str, record_id: str) -> bool:
        target = self._collection(collection)
        if target.delete(record_id) is None:
            return False
        if collection in ("address-book", "job"):
            key = "contactId" if collection == "address-book" else "jobId"
            for link_id in list(self._index(self.job_contacts, key).get(record_id, ())):
                self.job_contacts.delete(link_id)
        return True

    def _fire(self, event: str, record: Mapping[str, Any]) -> None:
        body = json.dumps({"targetId": record["id"]}).encode()
        for hook in self.rest_hooks.records.values():
            if hook["event"] != event or not self._hook_matches(hook.get("limitTo"), event, record):
                continue
            self.webhooks.send(hook["url"], body)

    @staticmethod
    def _hook_matches(limit: Mapping[str, Any] | None, event: str, record: Mapping[str, Any]) -> bool:
        if not limit:
            return True
        kinds = limit.get("contactKinds")
        if event == "contact.created" and kinds and record.get("kind") not in kinds:
            return False
        job_types = limit.get("jobTypes")
        if event == "job.created" and job_types and record.get("jobTypeId") not in job_types:
            return False
        brands = limit.get("brands")
        if brands and record.get("brandId") not in brands:
            return False
        web_lead = limit.get("webLead")
        return not (event == "job.created" and web_lead is not None and record.get("webLead") != web_lead)

    def _index(self, collection: Collection, field: str) -> dict[str, list[str]]:
        """value -> ids for an exact-match filter, rebuilt after the collection changes."""
        key = f"{collection.name}:{field}"
        cached = self._indexes.get(key)
        if cached is not None and cached[0] == collection.version:
            return cached[1]
        index: dict[str, list[str]] = {}
        for record_id, record in collection.records.items():
            value = record.get(field)
            if isinstance(value, str):
                index.setdefault(value.casefold() if field.endswith("mail") else value, []).append(record_id)
        self._indexes[key] = (collection.version, index)
        return index

    # --- HTTP --------------------------------------------------------------------------------------------

    @staticmethod
    def _base(request: Request) -> bytes:
        scope = request.scope
        host = request.headers.get("host") or "{}:{}".format(*(scope.get("server") or ("127.0.0.1", 80)))
        return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}".encode()

    def _list(self, request: Request, collection: Collection, type_name: str, page: int, page_size: int,
              sort_by: str, allowed: tuple[str, ...], where: Callable[[dict[str, Any]], bool] | None,
              where_key: Any, among: list[str] | None = None, among_key: Any = None) -> Response:
        _paging(page, page_size)
        field, descending = _sort(sort_by, allowed)
        ids = collection.ordered(field, descending, where=where, where_key=where_key, among=among,
                                 among_key=among_key)
        return _json_response(collection.collection_body(type_name, ids, page, page_size, self._base(request)))

    def _get(self, request: Request, collection: Collection, record_id: str, label: str) -> Response:
        _check_id(record_id)
        if record_id not in collection:
            raise ApiError(404, error_json(404, f"{label} {record_id} was not found."))
        return _json_response(collection.record_body(record_id, self._base(request)))

    def _build_api(self) -> FastAPI:
        api = FastAPI(title="VSCO Workspace API (WedSync sandbox)", version="v2.0.0", docs_url=None,
                      redoc_url=None, openapi_url="/openapi.json")
        emulator = self

        @api.exception_handler(ApiError)
        async def _api_error(_request: Request, exc: ApiError) -> Response:
            return Response(json.dumps(exc.body).encode(), exc.status, exc.headers, "application/json")

        @api.exception_handler(RequestValidationError)
        async def _request_error(_request: Request, exc: RequestValidationError) -> Response:
            detail: dict[str, list[str]] = {}
            for error in exc.errors():
                loc = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body")]
                detail.setdefault(".".join(loc) or "request", []).append(str(error.get("msg")))
            err = validation_error(detail)
            return Response(json.dumps(err.body).encode(), 400, media_type="application/json")

        @api.exception_handler(StarletteHTTPException)
        async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
            return Response(json.dumps(error_json(exc.status_code, str(exc.detail))).encode(), exc.status_code,
                            media_type="application/json")

        contacts, jobs, links, hooks = self.contacts, self.jobs, self.job_contacts, self.rest_hooks

        # address book -----------------------------------------------------------------------------------
        @api.get("/address-book", operation_id="listResourceAddressBook")
        async def list_contacts(
            request: Request,
            page: int = Query(1),
            page_size: int = Query(100, alias="pageSize"),
            include_hidden: bool = Query(False, alias="includeHidden"),
            email: str | None = Query(None),
            sort_by: str = Query("id", alias="sortBy"),
        ) -> Response:
            among = among_key = None
            if email is not None:
                among = emulator._index(contacts, "email").get(email.casefold(), [])
                among_key = ("email", email.casefold())
            where = None if include_hidden else _not_hidden
            return emulator._list(request, contacts, "addressbook-collection", page, page_size, sort_by,
                                  CONTACT_SORT_FIELDS, where, include_hidden, among, among_key)

        @api.post("/address-book", operation_id="createResourceAddressBook", status_code=201)
        async def create_contact(request: Request) -> Response:
            body = _clean(await _json_body(request), _PERSON_FIELDS, _CONTACT_READ_ONLY, ("kind",))
            stamp = emulator._stamp()
            record_id = ulid_at(int(time.time() * 1000), emulator._rng)
            record = _new_contact(record_id, stamp, body)
            contacts.put(record)
            emulator._fire("contact.created", record)
            return _json_response(contacts.record_body(record_id, emulator._base(request)), 201)

        @api.get("/address-book/{id}", operation_id="getResourceAddressBook")
        async def get_contact(request: Request, id: str) -> Response:
            return emulator._get(request, contacts, id, "Contact")

        @api.put("/address-book/{id}", operation_id="updateResourceAddressBook")
        async def update_contact(request: Request, id: str) -> Response:
            _check_id(id)
            current = contacts.get(id)
            if current is None:
                raise ApiError(404, error_json(404, f"Contact {id} was not found."))
            body = _clean(await _json_body(request), _PERSON_FIELDS, _CONTACT_READ_ONLY)
            record = {**current, **body, "modified": emulator._stamp()}
            if record.get("kind") == "person":
                record["name"] = f"{record.get('firstName') or ''} {record.get('lastName') or ''}".strip()
            contacts.put(record)
            return _json_response(contacts.record_body(id, emulator._base(request)))

        @api.delete("/address-book/{id}", operation_id="deleteResourceAddressBook", status_code=204)
        async def delete_contact(id: str) -> Response:
            _check_id(id)
            if not emulator._delete("address-book", id):
                raise ApiError(404, error_json(404, f"Contact {id} was not found."))
            return Response(status_code=204)

        # jobs -------------------------------------------------------------------------------------------
        @api.get("/job", operation_id="listResourceJob")
        async def list_jobs(
            request: Request,
            page: int = Query(1),
            page_size: int = Query(100, alias="pageSize"),
            include_closed: bool = Query(False, alias="includeClosed"),
            external_mapping_id: str | None = Query(None, alias="externalMappingId", max_length=64),
            sort_by: str = Query("id", alias="sortBy"),
        ) -> Response:
            among, among_key = _by_mapping(jobs, external_mapping_id)
            where = None if include_closed else _open
            return emulator._list(request, jobs, "job-collection", page, page_size, sort_by, JOB_SORT_FIELDS,
                                  where, include_closed, among, among_key)

        @api.post("/job", operation_id="createResourceJob", status_code=201)
        async def create_job(request: Request) -> Response:
            body = _clean(await _json_body(request), _JOB_FIELDS, _JOB_READ_ONLY)
            stamp = emulator._stamp()
            record_id = ulid_at(int(time.time() * 1000), emulator._rng)
            record = _new_job(record_id, stamp, body)
            jobs.put(record)
            emulator._fire("job.created", record)
            return _json_response(jobs.record_body(record_id, emulator._base(request)), 201)

        @api.get("/job/{id}", operation_id="getResourceJob")
        async def get_job(request: Request, id: str) -> Response:
            return emulator._get(request, jobs, id, "Job")

        @api.put("/job/{id}", operation_id="updateResourceJob")
        async def update_job(request: Request, id: str) -> Response:
            _check_id(id)
            current = jobs.get(id)
            if current is None:
                raise ApiError(404, error_json(404, f"Job {id} was not found."))
            body = _clean(await _json_body(request), _JOB_FIELDS, _JOB_READ_ONLY)
            record = _job_derived({**current, **body, "modified": emulator._stamp()})
            jobs.put(record)
            return _json_response(jobs.record_body(id, emulator._base(request)))

        @api.delete("/job/{id}", operation_id="deleteResourceJob", status_code=204)
        async def delete_job(id: str) -> Response:
            _check_id(id)
            if not emulator._delete("job", id):
                raise ApiError(404, error_json(404, f"Job {id} was not found."))
            return Response(status_code=204)

        # job contacts -----------------------------------------------------------------------------------
        @api.get("/job-contact", operation_id="listResourceJobContact")
        async def list_job_contacts(
            request: Request,
            page: int = Query(1),
            page_size: int = Query(100, alias="pageSize"),
            include_hidden: bool = Query(False, alias="includeHidden"),
            external_mapping_id: str | None = Query(None, alias="externalMappingId", max_length=64),
            contact_id: str | None = Query(None, alias="contactId"),
            job_id: str | None = Query(None, alias="jobId"),
            sort_by: str = Query("id", alias="sortBy"),
        ) -> Response:
            among, among_key = _by_mapping(links, external_mapping_id)
            for name, value in (("jobId", job_id), ("contactId", contact_id)):
                if value is None:
                    continue
                found = emulator._index(links, name).get(value, [])
                if among is None:
                    among = found
                else:
                    keep = set(found)
                    among = [i for i in among if i in keep]
                among_key = (among_key, name, value)
            where = None if include_hidden else _not_hidden
            return emulator._list(request, links, "jobcontact-collection", page, page_size, sort_by,
                                  BASIC_SORT_FIELDS, where, include_hidden, among, among_key)

        @api.post("/job-contact", operation_id="createResourceJobContact", status_code=201)
        async def create_job_contact(request: Request) -> Response:
            body = _clean(await _json_body(request), _JOB_CONTACT_FIELDS, _JOB_CONTACT_READ_ONLY,
                          ("jobId", "contactId"))
            _check_refs(body)
            link = emulator._link(body["jobId"], body["contactId"], {
                "client": body.get("client", True) is not False,
                "jobRoles": body.get("jobRoles") or [CLIENT_ROLE_ID],
                "externalMappings": body.get("externalMappings"),
            })
            link["roleKinds"] = ["client"] if link["client"] else []
            links.put(link)
            return _json_response(links.record_body(link["id"], emulator._base(request)), 201)

        @api.get("/job-contact/{id}", operation_id="getResourceJobContact")
        async def get_job_contact(request: Request, id: str) -> Response:
            return emulator._get(request, links, id, "Job contact")

        @api.put("/job-contact/{id}", operation_id="updateResourceJobContact")
        async def update_job_contact(request: Request, id: str) -> Response:
            _check_id(id)
            current = links.get(id)
            if current is None:
                raise ApiError(404, error_json(404, f"Job contact {id} was not found."))
            body = _clean(await _json_body(request), _JOB_CONTACT_FIELDS, _JOB_CONTACT_READ_ONLY)
            record = {**current, **body, "modified": emulator._stamp()}
            _check_refs(record)
            record["roleKinds"] = ["client"] if record.get("client") else []
            links.put(record)
            return _json_response(links.record_body(id, emulator._base(request)))

        @api.delete("/job-contact/{id}", operation_id="deleteResourceJobContact", status_code=204)
        async def delete_job_contact(id: str) -> Response:
            _check_id(id)
            if links.delete(id) is None:
                raise ApiError(404, error_json(404, f"Job contact {id} was not found."))
            return Response(status_code=204)

        def _check_refs(body: Mapping[str, Any]) -> None:
            errors = {}
            if body["jobId"] not in jobs:
                errors["jobId"] = ["This job does not exist."]
            if body["contactId"] not in contacts:
                errors["contactId"] = ["This contact does not exist."]
            if errors:
                raise validation_error(errors)

        # events -----------------------------------------------------------------------------------------
        events, orders, payments = self.events, self.orders, self.payments

        @api.get("/event", operation_id="listResourceEvent")
        async def list_events(
            request: Request,
            page: int = Query(1),
            page_size: int = Query(100, alias="pageSize"),
            include_hidden: bool = Query(False, alias="includeHidden"),
            external_mapping_id: str | None = Query(None, alias="externalMappingId", max_length=64),
            job_id: str | None = Query(None, alias="jobId"),
            sort_by: str = Query("id", alias="sortBy"),
        ) -> Response:
            among, among_key = _by_mapping(events, external_mapping_id)
            if job_id is not None:
                found = emulator._index(events, "jobId").get(job_id, [])
                among = found if among is None else [i for i in among if i in set(found)]
                among_key = (among_key, "jobId", job_id)
            where = None if include_hidden else _not_hidden
            return emulator._list(request, events, "event-collection", page, page_size, sort_by, EVENT_SORT_FIELDS,
                                  where, include_hidden, among, among_key)

        @api.post("/event", operation_id="createResourceEvent", status_code=201)
        async def create_event(request: Request) -> Response:
            body = _clean(await _json_body(request), _EVENT_FIELDS, _EVENT_READ_ONLY)
            _check_job_ref(body.get("jobId"))
            stamp = emulator._stamp()
            record_id = ulid_at(int(time.time() * 1000), emulator._rng)
            record = {"links": {"self": {"href": f"{BASE_URL_TOKEN}/event/{record_id}"}}, "id": record_id,
                      "created": stamp, "modified": stamp, "hidden": False, "allDay": False, "channel": "InPerson",
                      "confirmed": False, "descriptionHtml": None, "endDate": None, "endTime": None,
                      "externalMappings": None, "galleryId": None, "jobId": None, "location": None, "name": None,
                      "phoneNumber": None, "readOnly": False, "startDate": None, "startTime": None,
                      "timezoneName": None, "timezoneId": None, "typeId": None, "virtualUrl": None}
            record.update(body)
            events.put(_event_derived(record))
            emulator.write_log.append(("POST", "/event", record_id))
            return _json_response(events.record_body(record_id, emulator._base(request)), 201)

        @api.get("/event/{id}", operation_id="getResourceEvent")
        async def get_event(request: Request, id: str) -> Response:
            return emulator._get(request, events, id, "Event")

        @api.put("/event/{id}", operation_id="updateResourceEvent")
        async def update_event(request: Request, id: str) -> Response:
            _check_id(id)
            current = events.get(id)
            if current is None:
                raise ApiError(404, error_json(404, f"Event {id} was not found."))
            body = _clean(await _json_body(request), _EVENT_FIELDS, _EVENT_READ_ONLY)
            _check_job_ref(body.get("jobId"))
            events.put(_event_derived({**current, **body, "modified": emulator._stamp()}))
            emulator.write_log.append(("PUT", "/event", id))
            return _json_response(events.record_body(id, emulator._base(request)))

        @api.delete("/event/{id}", operation_id="deleteResourceEvent", status_code=204)
        async def delete_event(id: str) -> Response:
            _check_id(id)
            if events.delete(id) is None:
                raise ApiError(404, error_json(404, f"Event {id} was not found."))
            return Response(status_code=204)

        # orders -----------------------------------------------------------------------------------------
        @api.get("/order", operation_id="listResourceOrder")
        async def list_orders(
            request: Request,
            page: int = Query(1),
            page_size: int = Query(100, alias="pageSize"),
            sort_by: str = Query("sortPosition", alias="sortBy"),
        ) -> Response:
            return emulator._list(request, orders, "order-collection", page, page_size,
                                  sort_by.replace("sortPosition", "id"), ORDER_SORT_FIELDS, None, None)

        @api.get("/order/{id}", operation_id="getResourceOrder")
        async def get_order(request: Request, id: str) -> Response:
            return emulator._get(request, orders, id, "Order")

        @api.put("/order/{id}", operation_id="updateResourceOrder")
        async def update_order(request: Request, id: str) -> Response:
            _check_id(id)
            current = orders.get(id)
            if current is None:
                raise ApiError(404, error_json(404, f"Order {id} was not found."))
            body = _clean(await _json_body(request), _ORDER_FIELDS, _ORDER_READ_ONLY)
            stamp = emulator._stamp()
            record = json.loads(json.dumps(current))
            record["modified"] = stamp
            for key in ("name", "taxGroupId", "recipientId", "paymentTermsId"):
                if key in body:
                    record[key] = body[key]
            if "dueDate" in body:
                for invoice in record.get("invoices") or ():
                    invoice["dueDate"] = body["dueDate"]
            if "lineItems" in body:
                _set_line_items(record, body["lineItems"], stamp)
                if record["total"] < sum(a["amount"] for a in record["paymentAllocations"]):
                    raise validation_error({"lineItems": ["The order total cannot be less than its payments."]})
            orders.put(record)
            emulator.write_log.append(("PUT", "/order", id))
            return _json_response(orders.record_body(id, emulator._base(request)))

        @api.get("/job/{jobId}/order", operation_id="listResourceJobOrders")
        async def list_job_orders(request: Request, job_id: str = Path(alias="jobId"),
                                  sort_by: str = Query("sortPosition", alias="sortBy")) -> Response:
            _check_job_exists(job_id)
            field, descending = _sort(sort_by.replace("sortPosition", "id"), ORDER_SORT_FIELDS)
            among = emulator._index(orders, "jobId").get(job_id, [])
            ids = orders.ordered(field, descending, among=among, among_key=("jobId", job_id))
            return _json_response(orders.collection_body("joborder-collection", ids, 1, max(1, len(ids)),
                                                         emulator._base(request)))

        @api.post("/job/{jobId}/order", operation_id="createResourceJobOrder", status_code=201)
        async def create_job_order(request: Request, job_id: str = Path(alias="jobId")) -> Response:
            _check_job_exists(job_id)
            body = _clean(await _json_body(request), _ORDER_FIELDS, _ORDER_READ_ONLY, ("lineItems",))
            stamp = emulator._stamp()
            record_id = ulid_at(int(time.time() * 1000), emulator._rng)
            emulator._order_number += 1
            record = order_json(record_id, job_id, body.get("name"), body["lineItems"], stamp,
                                emulator._order_number, _reference_code(emulator._rng), body.get("dueDate"))
            for key in ("taxGroupId", "recipientId", "paymentTermsId"):
                if key in body:
                    record[key] = body[key]
            orders.put(record)
            emulator.write_log.append(("POST", "/order", record_id))
            emulator._fire("order.booked", {**record, **_job_scope(jobs.get(job_id))})
            return _json_response(orders.record_body(record_id, emulator._base(request)), 201)

        # payments ---------------------------------------------------------------------------------------
        @api.get("/payment", operation_id="listResourcePayment")
        async def list_payments(
            request: Request,
            page: int = Query(1),
            page_size: int = Query(100, alias="pageSize"),
            sort_by: str = Query("id", alias="sortBy"),
        ) -> Response:
            return emulator._list(request, payments, "payment-collection", page, page_size, sort_by,
                                  BASIC_SORT_FIELDS, None, None)

        @api.post("/payment", operation_id="createResourcePayment", status_code=201)
        async def create_payment(request: Request) -> Response:
            body = _clean(await _json_body(request), _PAYMENT_FIELDS, _PAYMENT_READ_ONLY, ("jobId", "amount"))
            _check_job_ref(body["jobId"])
            stamp = emulator._stamp()
            record_id = ulid_at(int(time.time() * 1000), emulator._rng)
            record = payment_json(record_id, body["jobId"], body["amount"], body.get("received") or stamp[:10],
                                  stamp)
            record.update({k: v for k, v in body.items() if k not in ("received",)})
            payments.put(record)
            emulator.write_log.append(("POST", "/payment", record_id))
            emulator._fire("payment.created", {**record, **_job_scope(jobs.get(body["jobId"]))})
            return _json_response(payments.record_body(record_id, emulator._base(request)), 201)

        @api.get("/payment/{id}", operation_id="getResourcePayment")
        async def get_payment(request: Request, id: str) -> Response:
            return emulator._get(request, payments, id, "Payment")

        @api.put("/payment/{id}", operation_id="updateResourcePayments")
        async def update_payment(request: Request, id: str) -> Response:
            _check_id(id)
            current = payments.get(id)
            if current is None:
                raise ApiError(404, error_json(404, f"Payment {id} was not found."))
            raw = await _json_body(request)
            if isinstance(raw, dict):
                raw = {k: v for k, v in raw.items() if k != "amount"}  # read-only on update (the spec's allOf)
            body = _clean(raw, _PAYMENT_FIELDS, _PAYMENT_READ_ONLY)
            if "jobId" in body and body["jobId"] != current["jobId"] and current["paymentAllocations"]:
                raise validation_error({"jobId": ["An applied payment cannot move to another job."]})
            _check_job_ref(body.get("jobId"))
            payments.put({**current, **body, "modified": emulator._stamp()})
            emulator.write_log.append(("PUT", "/payment", id))
            return _json_response(payments.record_body(id, emulator._base(request)))

        @api.delete("/payment/{id}", operation_id="deleteResourcePayments", status_code=204)
        async def delete_payment(id: str) -> Response:
            _check_id(id)
            record = payments.delete(id)
            if record is None:
                raise ApiError(404, error_json(404, f"Payment {id} was not found."))
            for allocation in record.get("paymentAllocations") or ():
                order = orders.get(allocation["orderId"])
                if order is not None:
                    order = json.loads(json.dumps(order))
                    order["paymentAllocations"] = [a for a in order["paymentAllocations"] if a["paymentId"] != id]
                    _order_balance(order)
                    order["modified"] = emulator._stamp()
                    orders.put(order)
            return Response(status_code=204)

        @api.post("/payment/{id}/apply", operation_id="createResourceApplyPaymentToOrder", status_code=201)
        async def apply_payment(request: Request, id: str) -> Response:
            _check_id(id)
            payment = payments.get(id)
            if payment is None:
                raise ApiError(404, error_json(404, f"Payment {id} was not found."))
            body = _clean(await _json_body(request), _APPLY_FIELDS, set(), ("orderId", "amount"))
            order = orders.get(body["orderId"])
            errors: dict[str, list[str]] = {}
            if order is None:
                errors["orderId"] = ["This order does not exist."]
            elif order["jobId"] != payment["jobId"]:
                errors["orderId"] = ["The order belongs to another job."]
            unapplied = payment["amount"] - sum(a["amount"] for a in payment["paymentAllocations"])
            if body["amount"] > unapplied:
                errors["amount"] = [f"Only {unapplied} of this payment is not applied yet."]
            elif order is not None and body["amount"] > order["balance"]:
                errors["amount"] = [f"The order's balance is {order['balance']}."]
            if errors or order is None:
                raise validation_error(errors)
            stamp = emulator._stamp()
            allocation = {"id": ulid_at(int(time.time() * 1000), emulator._rng), "created": stamp,
                          "modified": stamp, "hidden": False, "paymentId": id, "orderId": order["id"],
                          "invoiceItemId": None, "jobId": payment["jobId"], "amount": body["amount"],
                          "refundedAmount": 0}
            order = json.loads(json.dumps(order))
            order["paymentAllocations"].append(allocation)
            order["modified"] = stamp
            _order_balance(order)
            orders.put(order)
            payment = {**payment, "paymentAllocations": [*payment["paymentAllocations"], allocation],
                       "modified": stamp}
            payments.put(payment)
            emulator.write_log.append(("POST", "/payment/apply", id))
            return _json_response(payments.record_body(id, emulator._base(request)), 201)

        @api.get("/job/{id}/payment", operation_id="listResourceJobPayment")
        async def list_job_payments(request: Request, id: str,
                                    sort_by: str = Query("id", alias="sortBy")) -> Response:
            _check_id(id)
            if id not in jobs:  # the spec documents this 404 with the validation error body
                raise ApiError(404, {"type": "validation-error", "title": "Not Found",
                                     "detail": {"id": [f"Job {id} was not found."]}, "status": 404})
            field, descending = _sort(sort_by, BASIC_SORT_FIELDS)
            among = emulator._index(payments, "jobId").get(id, [])
            ids = payments.ordered(field, descending, among=among, among_key=("jobId", id))
            return _json_response(payments.collection_body("jobpayment-collection", ids, 1, max(1, len(ids)),
                                                           emulator._base(request)))

        # settings the connector reads -------------------------------------------------------------------
        @api.get("/job-type", operation_id="listResourceJobType")
        async def list_job_types(
            request: Request,
            page: int = Query(1),
            page_size: int = Query(100, alias="pageSize"),
            include_hidden: bool = Query(False, alias="includeHidden"),
            external_mapping_id: str | None = Query(None, alias="externalMappingId", max_length=64),
            sort_by: str = Query("sortPosition", alias="sortBy"),
        ) -> Response:
            among, among_key = _by_mapping(emulator.job_types, external_mapping_id)
            return emulator._list(request, emulator.job_types, "jobtype-collection", page, page_size, sort_by,
                                  JOB_TYPE_SORT_FIELDS, None, include_hidden, among, among_key)

        @api.get("/studio/me", operation_id="getResourceMyStudio")
        async def my_studio(request: Request) -> Response:
            body = json.dumps(emulator.studio).replace(BASE_URL_TOKEN, emulator._base(request).decode())
            return Response(body.encode(), 200, media_type="application/json")

        def _check_job_ref(job_id: str | None) -> None:
            if job_id is not None and job_id not in jobs:
                raise validation_error({"jobId": ["This job does not exist."]})

        def _check_job_exists(job_id: str) -> None:
            _check_id(job_id)
            if job_id not in jobs:
                raise ApiError(404, error_json(404, f"Job {job_id} was not found."))

        # rest hooks -------------------------------------------------------------------------------------
        @api.get("/rest-hook", operation_id="listResourceRestHook")
        async def list_hooks(
            request: Request,
            page: int = Query(1),
            page_size: int = Query(100, alias="pageSize"),
            include_hidden: bool = Query(False, alias="includeHidden"),
            sort_by: str = Query("id", alias="sortBy"),
        ) -> Response:
            where = None if include_hidden else _not_hidden
            return emulator._list(request, hooks, "resthook-collection", page, page_size, sort_by,
                                  BASIC_SORT_FIELDS, where, include_hidden)

        @api.post("/rest-hook", operation_id="createResourceRestHook", status_code=201)
        async def create_hook(request: Request) -> Response:
            body = _clean(await _json_body(request), _HOOK_FIELDS, _HOOK_READ_ONLY, ("event", "url"))
            _check_hook(body)
            stamp = emulator._stamp()
            record_id = ulid_at(int(time.time() * 1000), emulator._rng)
            hooks.put({"links": {"self": {"href": f"{BASE_URL_TOKEN}/rest-hook/{record_id}"}}, "id": record_id,
                       "created": stamp, "modified": stamp, "hidden": False, "event": body["event"],
                       "limitTo": body.get("limitTo"), "url": body["url"]})
            return _json_response(hooks.record_body(record_id, emulator._base(request)), 201)

        @api.get("/rest-hook/{id}", operation_id="getResourceRestHook")
        async def get_hook(request: Request, id: str) -> Response:
            return emulator._get(request, hooks, id, "Rest hook")

        @api.put("/rest-hook/{id}", operation_id="updateResourceRestHook")
        async def update_hook(request: Request, id: str) -> Response:
            _check_id(id)
            current = hooks.get(id)
            if current is None:
                raise ApiError(404, error_json(404, f"Rest hook {id} was not found."))
            body = _clean(await _json_body(request), _HOOK_FIELDS, _HOOK_READ_ONLY)
            record = {**current, **body, "modified": emulator._stamp()}
            _check_hook(record)
            hooks.put(record)
            return _json_response(hooks.record_body(id, emulator._base(request)))

        @api.delete("/rest-hook/{id}", operation_id="deleteResourceRestHook", status_code=204)
        async def delete_hook(id: str) -> Response:
            _check_id(id)
            if hooks.delete(id) is None:
                raise ApiError(404, error_json(404, f"Rest hook {id} was not found."))
            return Response(status_code=204)

        return api


def _not_hidden(record: Mapping[str, Any]) -> bool:
    return not record.get("hidden")


def _open(record: Mapping[str, Any]) -> bool:
    return not record.get("closed")


def _by_mapping(collection: Collection, mapping_id: str | None) -> tuple[list[str] | None, Any]:
    if mapping_id is None:
        return None, None
    ids = [rid for rid, record in collection.records.items()
           if any(isinstance(m, dict) and m.get("id") == mapping_id for m in record.get("externalMappings") or ())]
    return ids, ("externalMappingId", mapping_id)


def _check_hook(body: Mapping[str, Any]) -> None:
    url = body.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
        raise validation_error({"url": ["This value is not a valid URL."]})
    limit = body.get("limitTo") or {}
    errors: dict[str, list[str]] = {}
    for key in limit:
        if key not in ("contactKinds", "jobTypes", "brands", "webLead"):
            errors[f"limitTo.{key}"] = ["This field was not expected."]
    if body.get("event") != "contact.created" and "contactKinds" in limit:
        errors["limitTo.contactKinds"] = ["Only available for contact.created events."]
    if body.get("event") == "contact.created" and "jobTypes" in limit:
        errors["limitTo.jobTypes"] = ["Not available on contact.created events."]
    if errors:
        raise validation_error(errors)


def _new_contact(record_id: str, stamp: str, body: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "links": {"self": {"href": f"{BASE_URL_TOKEN}/address-book/{record_id}"}},
        "id": record_id, "created": stamp, "modified": stamp, "hidden": False,
        "kind": body["kind"], "email": None, "pinned": False, "customFields": [], "externalMappings": None,
        "accountBalance": 0, "creditBalance": 0, "totalCost": 0, "totalRevenue": 0,
    }
    if body["kind"] == "person":
        record.update({"firstName": None, "lastName": None, "cellPhone": None, "homePhone": None, "workPhone": None,
                       "address": None, "mailingAddress": None, "anonymized": False})
    record.update(body)
    if record["kind"] == "person":
        record["name"] = f"{record.get('firstName') or ''} {record.get('lastName') or ''}".strip()
    else:
        record["name"] = body.get("name") or body.get("companyName") or ""
    return record


def _job_derived(record: dict[str, Any]) -> dict[str, Any]:
    type_id = record.get("jobTypeId")
    if type_id is not None and type_id not in JOB_TYPES:
        raise validation_error({"jobTypeId": ["This job type does not exist."]})
    record["jobTypeName"] = JOB_TYPES.get(type_id) if type_id else None
    if record.get("name"):
        record["title"] = f"{record['jobTypeName'] or 'Job'}: {record['name']}"
    return record


def _new_job(record_id: str, stamp: str, body: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "links": {"self": {"href": f"{BASE_URL_TOKEN}/job/{record_id}"}},
        "id": record_id, "created": stamp, "modified": stamp, "name": None, "title": None, "stage": "lead",
        "closed": False, "eventDate": None, "inquiryDate": stamp[:10], "bookingDate": None, "guestCount": None,
        "jobTypeId": None, "jobTypeName": None, "brandId": BRAND_ID, "webLead": False, "pinned": False,
        "sample": False, "customFields": [], "externalMappings": None, "accountBalance": 0, "creditBalance": 0,
        "totalCost": 0, "totalProfit": 0, "totalRevenue": 0,
    }
    record.update(body)
    return _job_derived(record)


def _job_type_json(type_id: str, name: str, index: int) -> dict[str, Any]:
    stamp = format_timestamp(1_546_300_800 + index)
    return {"links": {"self": {"href": f"{BASE_URL_TOKEN}/job-type/{type_id}"}}, "id": type_id, "created": stamp,
            "modified": stamp, "hidden": False, "defaultContacts": None, "defaultEvents": None,
            "externalMappings": None, "initialLeadStatusId": None, "name": name, "primarySessionRequired": True,
            "profitCenterId": None, "sortPosition": 100 + index, "workflowId": None}


def _studio_json(currency: str) -> dict[str, Any]:
    stamp = format_timestamp(1_546_300_800)
    return {"links": {"self": {"href": f"{BASE_URL_TOKEN}/studio/me"}}, "id": STUDIO_ID, "created": stamp,
            "modified": stamp, "hidden": False, "cacheVersion": 1, "currencyCode": currency, "dateFormat": "n/j/Y",
            "decimalSeparator": ".", "defaultBrandId": BRAND_ID, "email": "studio@example.com",
            "externalMappings": None, "name": "WedSync Sandbox Studio", "temperature": "Fahrenheit",
            "thousandsSeparator": ",", "timeFormat": "g:ia", "timezoneId": None}


def create_emulator(*, seed: int = 42, contacts: int = 200, jobs: int = 80,
                    api_key: str = DEFAULT_API_KEY, currency: str = STUDIO_CURRENCY,
                    **_: Any) -> VscoWorkspaceEmulator:
    """Registry entry point (see ``wedsync.sandbox.registry``)."""
    return VscoWorkspaceEmulator(seed=seed, contacts=contacts, jobs=jobs, api_key=api_key, currency=currency)
