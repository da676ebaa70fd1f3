"""Zapier-style hook payloads: inbound "Client Created" / "New Project Booked" events, outbound "Create Project".

Products without a public API (HoneyBook, 17hats, Studio Ninja, Iris Works) reach the hub through a Zap:
the product's trigger feeds a "Webhooks by Zapier" POST to ``/webhooks/{provider}/{connection_id}``,
authenticated by the connection secret (``wedsync.connectors.webhooks.ZapierScheme``). Zapier sends the
trigger's fields as flat JSON (nested objects flattened with ``__``) or form-encoded, with whatever keys the
vendor mapped, so keys are matched loosely: ``"Client Email"``, ``client_email`` and ``client__email`` are the
same key (lower-cased, non-alphanumerics collapsed to ``_``). Each product has its own field names on top of
the common ones; see ``docs/crm_channels.md`` for the documented payloads.

Remote ids: a provider id is prefixed like the product's CSV ids (``17h-``, ``sn-``, ``iw-``) so a hook and a
CSV import of the same record agree. HoneyBook's CSV export has no id column, so HoneyBook clients use the
same e-mail+name hash as its CSV rows (``csv_layouts.client_hash_id``), and the HoneyBook id is kept in
``custom_fields["honeybook_id"]``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl

import httpx

from wedsync.connectors.base import Connector
from wedsync.connectors.channels.csv_layouts import (
    DISPLAY_NAME_WIDTH,
    FIELD_WIDTHS,
    MAX_CELL,
    ParsedRow,
    check_email,
    check_phone,
    client_hash_id,
    country_code,
    export_csv,
    loose_datetime,
    normalize_country,
    parse_csv,
    parse_guest_count,
    split_full_name,
)
from wedsync.connectors.webhooks import loads_json
from wedsync.domain.crm import ClientRecord, WeddingRecord
from wedsync.errors import InvalidInput

__all__ = ["PROVIDERS", "ZapEvent", "ZapFields", "ZapierCsvConnector", "create_project_payload", "event_kind",
           "parse_zap_event"]

Kind = Literal["client.created", "project.booked"]
MAX_BODY = 256 * 1024


@dataclass(frozen=True, slots=True)
class ZapEvent:
    kind: Kind
    client: ClientRecord | None
    wedding: WeddingRecord | None
    occurred_at: datetime | None
    remote_id: str  # the record the event is about: the client (client.created) or the project


@dataclass(frozen=True)
class ZapFields:
    """One product's hook field names (normalized keys), most specific first, and its id conventions."""

    product: str
    id_prefix: str
    default_region: str
    client_id: tuple[str, ...]
    project_id: tuple[str, ...]
    names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    hash_client_ids: bool = False


_COMMON: dict[str, tuple[str, ...]] = {
    "first_name": ("client_first_name", "contact_first_name", "first_name", "firstname", "first"),
    "last_name": ("client_last_name", "contact_last_name", "last_name", "lastname", "surname", "last"),
    "full_name": ("client_full_name", "client_name", "contact_name", "full_name", "name"),
    "email": ("client_email", "contact_email", "email_address", "email", "primary_email"),
    "phone": ("client_phone", "client_phone_number", "client_mobile", "contact_phone", "phone_number", "phone",
              "mobile", "primary_phone"),
    "company": ("client_company", "company_name", "company"),
    "street": ("client_address", "address", "street_address", "street"),
    "city": ("city", "suburb"),
    "state": ("state", "state_province", "province"),
    "postal_code": ("zip", "zip_code", "postcode", "postal_code"),
    "country": ("country",),
    "project_name": ("project_name", "project_title", "job_name", "project", "job"),
    "project_date": ("project_date", "event_date", "wedding_date", "job_date", "project_start_date"),
    # ``event_type`` is a project type ("Wedding") unless it names one of our events (see ``_kind``)
    "project_type": ("project_type", "job_type", "event_type"),
    "stage": ("project_stage", "pipeline_stage", "job_status", "stage", "status"),
    "venue": ("project_location", "venue", "location", "event_location"),
    "guest_count": ("guest_count", "guests"),
    "lead_source": ("lead_source", "source", "referral_source"),
    "occurred_at": ("occurred_at", "booked_at", "booking_date", "created_at", "date_created", "created",
                    "created_on", "date_added", "timestamp"),
    # the fields that can only mean the hook's event; ``event_type`` is ambiguous and read apart (``_kind``)
    "event": ("event", "trigger", "zap_event"),
}

PROVIDERS: dict[str, ZapFields] = {
    "honeybook": ZapFields("HoneyBook", "hb-", "US", client_id=("client_id", "contact_id"),
                           project_id=("project_id",), hash_client_ids=True),
    "17hats": ZapFields("17hats", "17h-", "US", client_id=("contact_id", "client_id"),
                        project_id=("project_id",)),
    "studio-ninja": ZapFields("Studio Ninja", "sn-", "AU", client_id=("client_id", "contact_id"),
                              project_id=("job_id", "project_id")),
    "iris-works": ZapFields("Iris Works", "iw-", "US", client_id=("contact_id", "client_id"),
                            project_id=("job_id", "project_id")),
}

_CLIENT_KINDS = {"client_created", "new_client", "contact_created", "new_contact", "client_added",
                 "contact_added", "new_lead", "lead_created", "client"}
_PROJECT_KINDS = {"project_booked", "new_project_booked", "job_booked", "new_booking", "booking_created",
                  "project_created", "new_project", "job_created", "new_job", "booked", "project"}


def _norm_key(key: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", key.strip().casefold()).strip("_")


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, code="bad_payload")


def _decode_body(raw_body: bytes, content_type: str | None) -> dict[str, Any]:
    if not raw_body or not raw_body.strip():
        raise _bad("empty hook body")
    if len(raw_body) > MAX_BODY:
        raise _bad(f"hook body larger than {MAX_BODY} bytes")
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("hook body is not UTF-8") from exc
    stripped = text.lstrip("\ufeff").strip()
    if kind.endswith("json") or (not kind and stripped[:1] in "{["):
        try:
            data = loads_json(stripped)
        except ValueError as exc:  # JSONTooDeep included
            raise _bad(f"hook body is not valid JSON: {exc}") from exc
        if isinstance(data, list) and len(data) == 1:  # Zapier's "send as list" option
            data = data[0]
        if not isinstance(data, dict):
            raise _bad("hook body must be a JSON object of fields (one event per request)")
        return data
    if kind in ("", "application/x-www-form-urlencoded", "text/plain"):
        if "=" not in stripped or any(ch in stripped for ch in "\x00"):
            raise _bad("hook body is neither JSON nor form-encoded fields")
        return dict(parse_qsl(stripped, keep_blank_values=True))
    raise _bad(f"unsupported content type {content_type!r}")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flat normalized key -> text value (nested objects joined with ``_``; lists of scalars comma-joined)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = _norm_key(f"{prefix}_{key}" if prefix else str(key))
        if isinstance(value, Mapping):
            out.update(_flatten(value, name))
        elif isinstance(value, list):
            scalars = [str(v) for v in value if isinstance(v, str | int | float) and not isinstance(v, bool)]
            if scalars:
                out.setdefault(name, ", ".join(scalars))
        elif isinstance(value, bool):
            out.setdefault(name, "true" if value else "false")
        elif value is not None:
            text = str(value).strip()
            if text:
                out.setdefault(name, text)
    return out


def _pick(fields: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = fields.get(name)
        if value:
            return value
    return None


def _parse_when(value: str | None, dayfirst: bool = False) -> datetime | None:
    if not value:
        return None
    text = value.strip()
    if text.isdigit() and len(text) in (10, 13):  # unix seconds or milliseconds
        seconds = int(text) / (1000 if len(text) == 13 else 1)
        return datetime.fromtimestamp(seconds, UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        loose = loose_datetime(text, dayfirst=dayfirst)  # a whole day, or nothing (never today's parts)
        if loose is None:
            return None
        parsed = loose
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _parse_day(value: str | None, dayfirst: bool) -> date | None:
    if not value:
        return None
    text = value.strip()
    if text.isdigit() and len(text) in (10, 13):  # unix seconds or milliseconds, as ``_parse_when`` reads them
        when = _parse_when(text)
        return when.date() if when is not None else None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        pass
    parsed = loose_datetime(text, dayfirst=dayfirst)
    return parsed.date() if parsed is not None else None


def event_kind(value: str | None) -> Kind | None:
    """The event a spelling names (``Client Created``, ``project.booked``, ``new_job``, ...), else None."""
    if not value:
        return None
    key = _norm_key(value)
    if key in _CLIENT_KINDS:
        return "client.created"
    if key in _PROJECT_KINDS:
        return "project.booked"
    return None


def _kind(fields: Mapping[str, str], spec: ZapFields) -> Kind:
    # An explicit ``event`` (or ``trigger``) field wins, and one we do not know is refused. ``event_type`` is
    # what 17hats, Iris Works and many Zaps call the project's type ("Wedding", "Engagement"): it names the event
    # only when it is one of the event spellings, else it is the project type and says nothing about the event.
    declared = _pick(fields, _COMMON["event"])
    if declared:
        kind = event_kind(declared)
        if kind is None:
            raise _bad(f"unknown event {declared[:60]!r}: expected a Client Created or New Project Booked event")
        return kind
    typed = event_kind(fields.get("event_type"))
    if typed is not None:
        return typed
    if _pick(fields, spec.project_id) or _pick(fields, _COMMON["project_name"]) or _pick(
            fields, _COMMON["project_date"]):
        return "project.booked"
    return "client.created"


def parse_zap_event(provider: str, raw_body: bytes, content_type: str | None = None) -> ZapEvent:
    """Read one verified hook body into a :class:`ZapEvent`; ``InvalidInput(code="bad_payload")`` otherwise.

    The body is not trusted beyond what the connection secret proves (the vendor's own Zap sent it).
    """
    spec = PROVIDERS.get(provider)
    if spec is None:
        raise InvalidInput(f"no Zapier payload format for provider {provider!r}", code="unknown_provider")
    fields = _flatten(_decode_body(raw_body, content_type))
    kind = _kind(fields, spec)
    names = {**_COMMON, **spec.names}

    # a value longer than the hub's column for it (PostgreSQL refused the hook's whole write: value too long) is
    # kept as sent in custom fields, as an e-mail that is not one is (a hook has no report to warn in)
    too_long: dict[str, Any] = {}

    def fit(value: str | None, field: str, width: int | None = None) -> str | None:
        if value is not None and len(value) > (width or FIELD_WIDTHS[field]):
            too_long[f"{field}_as_sent"] = value[:MAX_CELL]
            return None
        return value

    first, last = _pick(fields, names["first_name"]), _pick(fields, names["last_name"])
    if not first and not last:
        full = _pick(fields, names["full_name"])
        if full:  # read as a CSV's one-cell name is ("Nguyen, Linh" is Linh Nguyen)
            first, last = split_full_name(full)
    first, last = fit(first, "first_name"), fit(last, "last_name")
    raw_email = _pick(fields, names["email"])
    email = check_email(raw_email) if raw_email else None
    country = _pick(fields, names["country"])
    region = country_code(country) or spec.default_region
    raw_phone = _pick(fields, names["phone"])
    phone = check_phone(raw_phone, region) if raw_phone else None
    provider_client_id = fit(_pick(fields, spec.client_id), "remote_id",
                             FIELD_WIDTHS["remote_id"] - len(spec.id_prefix))
    occurred_at = _parse_when(_pick(fields, names["occurred_at"]), spec.default_region == "AU")
    lead_source = _pick(fields, names["lead_source"])

    client: ClientRecord | None = None
    if email or first or last:
        if spec.hash_client_ids or not provider_client_id:
            client_id = client_hash_id(email, first, last)
        else:
            client_id = f"{spec.id_prefix}{provider_client_id}"
        custom: dict[str, Any] = {}
        if lead_source:
            custom["lead_source"] = lead_source
        if spec.hash_client_ids and provider_client_id:
            custom[f"{provider.replace('-', '_')}_id"] = provider_client_id
        # a hook has no report to carry a warning: a value that is not an e-mail or phone number is kept as
        # sent, where the vendor sees it, instead of vanishing
        if raw_email and email is None:
            custom["email_as_sent"] = raw_email[:320]
        if raw_phone and phone is None:
            custom["phone_as_sent"] = raw_phone[:64]
        company = fit(_pick(fields, names["company"]), "company")
        custom.update(too_long)
        display = " ".join(p for p in (first, last) if p) or None
        address = {k: v for k, v in (("streetAddress", _pick(fields, names["street"])),
                                     ("city", _pick(fields, names["city"])),
                                     ("state", _pick(fields, names["state"])),
                                     ("postalCode", _pick(fields, names["postal_code"])),
                                     ("country", normalize_country(country))) if v}
        client = ClientRecord(
            remote_id=client_id, first_name=first, last_name=last,
            display_name=display if display is None or len(display) <= DISPLAY_NAME_WIDTH else None, email=email,
            phone=phone, company=company, address=address or None, custom_fields=custom,
            remote_created_at=occurred_at if kind == "client.created" else None,
        )

    if kind == "client.created":
        if client is None:
            raise _bad("a Client Created hook needs the client's e-mail or name")
        return ZapEvent(kind, client, None, occurred_at, client.remote_id)

    too_long.clear()
    project_id = fit(_pick(fields, spec.project_id), "project_id",
                     FIELD_WIDTHS["project_id"] - len(f"{spec.id_prefix}job-"))
    name = fit(_pick(fields, names["project_name"]), "project_name")
    date_raw = _pick(fields, names["project_date"])
    event_date = _parse_day(date_raw, spec.default_region == "AU")
    if not project_id and not name and client is None:
        raise _bad("a New Project Booked hook needs a project id, a project name or the client")
    if project_id:
        wedding_id = f"{spec.id_prefix}job-{project_id}"
    else:
        basis = f"{client.remote_id if client else ''}|{(name or '').casefold()}|{event_date or ''}"
        wedding_id = "zapp-" + hashlib.blake2b(basis.encode("utf-8"), digest_size=10).hexdigest()
    guests_raw = _pick(fields, names["guest_count"])
    guests = parse_guest_count(guests_raw) if guests_raw else None
    # ``wedsync_reference`` comes back on a project our own "Create Project" push made (echo suppression)
    wcustom = {k: v for k, v in (("venue", _pick(fields, names["venue"])), ("lead_source", lead_source),
                                 ("wedsync_reference", fields.get("wedsync_reference"))) if v}
    if guests_raw and guests is None:  # no row report in a hook to warn in: what is not a count is kept as sent
        wcustom["guest_count_as_sent"] = guests_raw[:64]
    if date_raw and event_date is None:  # nor a date that does not name its day ("June 2027"): kept as sent
        wcustom["project_date_as_sent"] = date_raw[:64]
    event_type_is_event = event_kind(fields.get("event_type")) is not None
    project_type = _pick(fields, tuple(n for n in names["project_type"]
                                       if n != "event_type" or not event_type_is_event))
    stage = fit(_pick(fields, names["stage"]), "stage")
    project_type = fit(project_type, "project_type")
    wcustom.update(too_long)
    wedding = WeddingRecord(
        remote_id=wedding_id, name=name, event_date=event_date,
        stage=stage or "booked", guest_count=guests,
        job_type=project_type,
        client_remote_ids=[client.remote_id] if client else [], custom_fields=wcustom,
        remote_created_at=occurred_at,
    )
    return ZapEvent(kind, client, wedding, occurred_at, wedding_id)


def create_project_payload(client: ClientRecord, wedding: WeddingRecord, idempotency_key: str,
                           *, source: str = "WedSync", others: Sequence[ClientRecord] = ()) -> dict[str, Any]:
    """The flat JSON a vendor's "Catch Hook -> Create Project" Zap maps from (field names as inbound).

    ``idempotency_key`` is derived from our outbox row; the Zap passes ``wedsync_reference`` on, so a record
    created from it carries our reference and its echo (a later "New Project Booked") is recognizable. HoneyBook's
    "Create Project" takes one client: ``others`` (the partner) go as text in ``other_clients``
    (``"First Last <email>"``, ``; ``-joined), for the Zap to map into the project's notes.
    """
    phone = client.phone.split(";ext=", 1)[0] if client.phone else None
    out: dict[str, Any] = {
        "idempotency_key": idempotency_key,
        "wedsync_reference": idempotency_key,
        "source": source,
        "project_name": wedding.name,
        "project_date": wedding.event_date.isoformat() if wedding.event_date else None,
        "project_type": wedding.job_type,
        "project_location": (wedding.custom_fields or {}).get("venue"),
        "guest_count": wedding.guest_count,
        "client_first_name": client.first_name,
        "client_last_name": client.last_name,
        "client_email": client.email,
        "client_phone": phone,
        "lead_source": (client.custom_fields or {}).get("lead_source") or source,
    }
    described = [" ".join(x for x in (" ".join(p for p in (o.first_name, o.last_name) if p) or o.display_name,
                                      f"<{o.email}>" if o.email else None) if x) for o in others]
    if any(described):
        out["other_clients"] = "; ".join(d for d in described if d)
    return out


# --- the connector shape of a product reached only through Zaps and CSV files ------------------------------


class ZapierCsvConnector(Connector):
    """Base of the products without a public API: inbound Zapier-style hooks and CSV files in their layout.

    Subclasses set ``slug``, ``display_name``, ``channel``, ``capabilities``, ``csv_layout``. Nothing here
    talks to the product: hooks arrive at ``/webhooks/{slug}/{connection_id}`` (verified by ``ZapierScheme``),
    files are uploaded by the vendor or downloaded by them from the product.
    """

    csv_layout: ClassVar[str]

    def __init__(self, *, base_url: str | None = None, account_key: str = "default", timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url
        self.account_key = account_key
        self.timeout = timeout
        self.transport = transport

    def parse_hook(self, raw_body: bytes, content_type: str | None = None) -> ZapEvent:
        """A verified hook body as a :class:`ZapEvent` (``InvalidInput(code="bad_payload")`` on garbage)."""
        return parse_zap_event(self.slug, raw_body, content_type)

    def parse_csv(self, data: bytes, *, default_region: str | None = None,
                  timezone: str | None = None) -> Iterator[ParsedRow]:
        """The product's contacts export, row by row (``csv_layouts.parse_csv`` with this product's layout)."""
        return parse_csv(data, self.csv_layout, default_region=default_region, timezone=timezone)

    def export_csv(self, rows: Iterable[tuple[ClientRecord, WeddingRecord | None]], *,
                   default_region: str | None = None, timezone: str | None = None) -> Iterator[bytes]:
        """Our clients as a file the product's CSV import takes (``csv_layouts.export_csv``)."""
        return export_csv(self.csv_layout, rows, default_region=default_region, timezone=timezone)
