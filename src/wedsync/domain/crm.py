"""Unified CRM source records (Client, Wedding, Event, Contract, Invoice/Payment) and their normalization. No I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any

import orjson
import phonenumbers


def normalize_email(value: str | None) -> str | None:
    """Trim and lowercase an e-mail; empty becomes None."""
    if not value:
        return None
    value = value.strip().lower()
    return value or None


def normalize_phone(value: str | None, region: str | None = None) -> str | None:
    """E.164 when the number parses (with ``region`` as the default country), else the trimmed input.

    Extensions are kept (``;ext=``) so two desk phones of one office stay distinct.
    """
    if not value or not value.strip():
        return None
    raw = value.strip()
    e164 = _e164(raw, region or "US")
    if e164 is None and raw.startswith("00"):
        # "00" is the international prefix of most of the world but not of the default country (the US dials 011):
        # a couple abroad writes their number so ("0044 7911 123456"), which is "+44 7911 123456"
        e164 = _e164("+" + raw[2:], region or "US")
    return raw if e164 is None else e164


def _e164(raw: str, region: str) -> str | None:
    try:
        num = phonenumbers.parse(raw, region, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(num):
        return None
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    if num.country_code_source == phonenumbers.CountryCodeSource.FROM_DEFAULT_COUNTRY and not _fits_region(num, e164):
        return None  # written without a country and not a number of the default one: do not invent a country
    return f"{e164};ext={num.extension}" if num.extension else e164


def _fits_region(num: phonenumbers.PhoneNumber, e164: str) -> bool:
    """Whether a number read with the default country (no ``+``, no international prefix) can be one of that
    country's: ``030 1234567`` (Berlin, typed nationally) read as a US number would become ``+10301234567``, which
    no North American number can be. For North America the numbering plan's own rule, area code and exchange not
    starting with 0 or 1 (cheap: every US contact's phone passes here); elsewhere libphonenumber's ranges."""
    if num.country_code == 1:
        return len(e164) == 12 and e164[2] not in "01" and e164[5] not in "01"
    return bool(phonenumbers.is_valid_number(num))


# The provider's timestamps are not content: a record touched without a change hashes the same.
_UNHASHED = frozenset({"remote_created_at", "remote_modified_at"})
_HASH_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _digest(values: dict[str, Any]) -> str:
    payload = orjson.dumps({k: v for k, v in values.items() if k not in _UNHASHED}, option=_HASH_OPTIONS,
                           default=str)
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


@dataclass(slots=True)
class ClientRecord:
    """A client (the couple or one of their contacts) from one source."""

    remote_id: str
    kind: str = "person"
    first_name: str | None = None
    last_name: str | None = None
    display_name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    address: dict[str, Any] | None = None
    custom_fields: dict[str, Any] = field(default_factory=dict)
    remote_created_at: datetime | None = None
    remote_modified_at: datetime | None = None

    def content_hash(self) -> str:
        """Hash of the synced content; the remote timestamps are excluded so a touch is not a change."""
        return _digest(_values(self))


@dataclass(slots=True)
class WeddingRecord:
    """A wedding (a provider's job or project) from one source."""

    remote_id: str
    name: str | None = None
    event_date: date | None = None
    stage: str | None = None
    closed: bool = False
    guest_count: int | None = None
    job_type: str | None = None
    client_remote_ids: list[str] = field(default_factory=list)
    custom_fields: dict[str, Any] = field(default_factory=dict)
    remote_created_at: datetime | None = None
    remote_modified_at: datetime | None = None

    def content_hash(self) -> str:
        return _digest(_values(self))


_FIELD_NAMES: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in fields(cls))
                                             for cls in (ClientRecord, WeddingRecord)}


def _values(rec: Any) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in _FIELD_NAMES[type(rec)]}


def record_values(rec: Any) -> dict[str, Any]:
    """The record's column values plus ``content_hash`` (shared values, no deep copies)."""
    d = _values(rec)
    d["content_hash"] = _digest(d)
    return d


@dataclass(slots=True)
class EventRecord:
    """One event of a wedding (ceremony, reception, engagement shoot...) from one source."""

    remote_id: str
    wedding_remote_id: str | None = None
    kind: str | None = None  # ceremony | reception | engagement | getting-ready | other (provider's word kept)
    name: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    location: str | None = None
    custom_fields: dict[str, Any] = field(default_factory=dict)
    remote_created_at: datetime | None = None
    remote_modified_at: datetime | None = None

    def content_hash(self) -> str:
        return _digest(_values(self))


@dataclass(slots=True)
class ContractRecord:
    """A contract (agreement) of a wedding from one source."""

    remote_id: str
    wedding_remote_id: str | None = None
    title: str | None = None
    status: str | None = None  # draft | sent | signed | void
    signed_at: datetime | None = None
    custom_fields: dict[str, Any] = field(default_factory=dict)
    remote_created_at: datetime | None = None
    remote_modified_at: datetime | None = None

    def content_hash(self) -> str:
        return _digest(_values(self))


@dataclass(slots=True)
class InvoiceRecord:
    """An invoice/order of a wedding; amounts in integer minor units with an ISO 4217 currency.

    ``payments`` are the payments received against it: dicts with ``remote_id``, ``amount_minor``,
    ``currency``, ``paid_at`` (ISO 8601) and ``method``.
    """

    remote_id: str
    wedding_remote_id: str | None = None
    number: str | None = None
    status: str | None = None  # draft | open | paid | void
    currency: str | None = None
    total_minor: int | None = None
    paid_minor: int | None = None
    due_date: date | None = None
    payments: list[dict[str, Any]] = field(default_factory=list)
    custom_fields: dict[str, Any] = field(default_factory=dict)
    remote_created_at: datetime | None = None
    remote_modified_at: datetime | None = None

    def content_hash(self) -> str:
        return _digest(_values(self))


@dataclass(slots=True)
class WeddingLink:
    """A provider's link between a wedding (job) and one of its people (VSCO Workspace's ``JobContact``): the
    couple of a job that does not list its clients itself. Only links marked as the job's clients count."""

    remote_id: str
    wedding_remote_id: str
    client_remote_id: str
    is_client: bool = True
    hidden: bool = False
    custom_fields: dict[str, Any] = field(default_factory=dict)
    remote_created_at: datetime | None = None
    remote_modified_at: datetime | None = None

    def content_hash(self) -> str:
        return _digest(_values(self))


AnyRecord = ClientRecord | WeddingRecord | EventRecord | ContractRecord | InvoiceRecord | WeddingLink

_FIELD_NAMES.update({cls: tuple(f.name for f in fields(cls))
                     for cls in (EventRecord, ContractRecord, InvoiceRecord, WeddingLink)})
