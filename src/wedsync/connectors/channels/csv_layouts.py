"""CSV import/export of CRM contacts in each product's own column layout (HoneyBook, 17hats, Studio Ninja, Iris Works).

None of these products publishes its export format. The layouts below are our best reconstruction of each
product's contacts/projects export; verify them against a real export before relying on a column (see
``docs/crm_channels.md``). Parsing is lenient where real files vary (header case and punctuation, column
order, extra columns, delimiter, encoding) and strict where data would be wrong (e-mails, phones, dates, and
quoting: a line the CSV grammar cannot read is reported and skipped, never glued into its neighbours).

    parse_csv(data, layout)    -> Iterator[ParsedRow]   streaming; one ParsedRow per CSV record
    export_csv(layout, rows)   -> Iterator[bytes]       streaming; round-trips with parse_csv

Line numbers are physical lines of the file (the header is line 1); a record with a quoted multi-line field
reports the line it starts on. A row whose issues include a fatal one has ``client=None`` and is not
imported; warnings (an unparseable phone, a bad date) drop that one value and keep the row.

``remote_id`` of a row is the product's id column when the layout has one and the cell is filled, else
``"csv-" + blake2b(normalized e-mail | normalized name)`` (20 hex chars): the same person exported twice
gets the same id, so a re-import updates rather than duplicates.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from wedsync.domain.crm import ClientRecord, WeddingRecord, normalize_email, normalize_phone
from wedsync.errors import InvalidInput

__all__ = [
    "LAYOUTS",
    "CsvFileError",
    "CsvLayout",
    "ParsedRow",
    "RowIssue",
    "client_hash_id",
    "count_records",
    "country_code",
    "export_csv",
    "normalize_country",
    "parse_csv",
    "parse_guest_count",
    "project_hash_id",
    "split_full_name",
]

#: Canonical fields a layout column can map to.
FIELDS = (
    "remote_id", "first_name", "last_name", "full_name", "email", "phone", "phone2", "company", "street",
    "city", "state", "postal_code", "country", "project_id", "project_name", "project_date", "project_type",
    "stage", "lead_source", "guest_count", "venue", "created",
)
MAX_CELL = 32_768  # a cell longer than this is garbage, not a name
#: The longest value the hub stores of a field: the width of its column (``clients``, ``crm_clients`` and
#: ``weddings``; ``tests/unit/test_csv_layouts.py`` checks they agree). PostgreSQL refuses a longer one, which
#: failed the whole chunk of rows (SQLite keeps it); such a cell is reported (``value_too_long``) and dropped.
#: An id column's value is stored with its layout's prefix (``17h-``, ``17h-job-``), which counts.
FIELD_WIDTHS: dict[str, int] = {
    "remote_id": 128, "project_id": 128, "first_name": 200, "last_name": 200, "company": 200,
    "project_name": 400, "project_type": 200, "stage": 32,
}
DISPLAY_NAME_WIDTH = 400
MAX_FIELD_SIZE = 1_048_576
HEADER_SEARCH_ROWS = 5


class CsvFileError(InvalidInput):
    """The file as a whole cannot be imported (nothing was imported). ``code`` says why:
    ``empty_file``, ``binary_file``, ``missing_columns``, ``malformed_csv``, ``unknown_layout``."""

    code = "csv_file_invalid"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True, slots=True)
class RowIssue:
    """One problem with one row. ``fatal`` issues keep the row out (``ParsedRow.client is None``)."""

    line: int
    column: str | None
    code: str
    message: str
    fatal: bool = False


@dataclass(slots=True)
class ParsedRow:
    line: int
    client: ClientRecord | None
    wedding: WeddingRecord | None
    issues: list[RowIssue] = field(default_factory=list)


@dataclass(frozen=True)
class CsvLayout:
    """One product's export: column header -> canonical field, in export order, plus its conventions."""

    slug: str
    product: str
    columns: tuple[tuple[str, str], ...]  # (header as the product writes it, canonical field)
    required: tuple[tuple[str, ...], ...]  # each tuple: at least one of these canonical fields must be a column
    date_format: str  # how the product writes dates
    datetime_format: str  # how it writes the created timestamp
    dayfirst: bool  # for the lenient fallback parse of other date spellings
    default_region: str  # phone numbers without a country code
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # other headers seen for a field
    id_prefix: str = ""

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(h for h, _ in self.columns)

    def fields(self) -> tuple[str, ...]:
        return tuple(f for _, f in self.columns)


def _key(header: str) -> str:
    """Header matching key: case-, accent-, space- and punctuation-insensitive."""
    text = unicodedata.normalize("NFKD", header.strip().lstrip("\ufeff")).casefold()
    return re.sub(r"[^0-9a-z]+", "", "".join(c for c in text if not unicodedata.combining(c)))


# Headers other tools and older exports use for the same thing; every layout accepts these too.
_COMMON_ALIASES: dict[str, tuple[str, ...]] = {
    "first_name": ("first", "firstname", "given name", "forename"),
    "last_name": ("last", "lastname", "surname", "family name"),
    "full_name": ("name", "full name", "client name", "contact name"),
    "email": ("email", "e-mail", "email address", "primary email", "e-mail address"),
    "phone": ("phone", "phone number", "mobile", "cell", "cell phone", "telephone", "primary phone"),
    "company": ("company", "company name", "organization", "business"),
    "street": ("address", "street", "street address", "address 1", "address line 1"),
    "city": ("city", "town", "suburb"),
    "state": ("state", "province", "region", "state/province", "county"),
    "postal_code": ("zip", "zip code", "postcode", "postal code"),
    "country": ("country",),
    "project_name": ("project", "project name", "job", "job name", "project title"),
    "project_date": ("project date", "event date", "wedding date", "job date", "date of event"),
    "project_type": ("project type", "job type", "event type", "type"),
    "lead_source": ("lead source", "source", "referral source", "how did you hear about us"),
    "venue": ("venue", "location", "event location"),
    "guest_count": ("guest count", "guests", "number of guests"),
    "created": ("date created", "created", "created on", "date added", "created at"),
    "stage": ("stage", "status", "project stage", "job status", "pipeline stage"),
}

LAYOUTS: dict[str, CsvLayout] = {
    # HoneyBook: Contacts > Export. No contact id column (remote ids are hashes), US dates.
    "honeybook": CsvLayout(
        slug="honeybook", product="HoneyBook",
        columns=(("First Name", "first_name"), ("Last Name", "last_name"), ("Email", "email"),
                 ("Phone", "phone"), ("Company", "company"), ("Address", "street"),
                 ("Project Name", "project_name"), ("Project Date", "project_date"),
                 ("Project Type", "project_type"), ("Project Stage", "stage"), ("Lead Source", "lead_source"),
                 ("Date Created", "created")),
        required=(("email", "first_name", "full_name"),),
        date_format="%m/%d/%Y", datetime_format="%m/%d/%Y", dayfirst=False, default_region="US",
    ),
    # 17hats: Contacts > Export to CSV. Numeric contact id, US dates, 12-hour created timestamp.
    "17hats": CsvLayout(
        slug="17hats", product="17hats",
        columns=(("Contact ID", "remote_id"), ("First Name", "first_name"), ("Last Name", "last_name"),
                 ("Email", "email"), ("Phone", "phone"), ("Company", "company"), ("Street", "street"),
                 ("City", "city"), ("State", "state"), ("Zip", "postal_code"), ("Country", "country"),
                 ("Project", "project_name"), ("Event Date", "project_date"), ("Status", "stage"),
                 ("Lead Source", "lead_source"), ("Created On", "created")),
        required=(("email", "first_name"),),
        date_format="%m/%d/%Y", datetime_format="%m/%d/%Y %I:%M %p", dayfirst=False, default_region="US",
        aliases={"remote_id": ("contact id", "id")}, id_prefix="17h-",
    ),
    # Studio Ninja (Australian): one "Client Name" column, AU day-first dates, mobile and phone columns.
    "studio-ninja": CsvLayout(
        slug="studio-ninja", product="Studio Ninja",
        columns=(("Client ID", "remote_id"), ("Client Name", "full_name"), ("Email Address", "email"),
                 ("Mobile", "phone"), ("Phone", "phone2"), ("Address", "street"), ("Suburb", "city"),
                 ("State", "state"), ("Postcode", "postal_code"), ("Country", "country"),
                 ("Job ID", "project_id"), ("Job Name", "project_name"), ("Job Date", "project_date"),
                 ("Job Type", "project_type"), ("Job Status", "stage"), ("Lead Source", "lead_source"),
                 ("Date Added", "created")),
        required=(("email", "full_name"),),
        date_format="%d/%m/%Y", datetime_format="%d/%m/%Y %H:%M", dayfirst=True, default_region="AU",
        aliases={"remote_id": ("client id",), "phone2": ("phone", "landline"), "phone": ("mobile",)},
        id_prefix="sn-",
    ),
    # Iris Works: ISO dates, last name first, guest count and venue on the job.
    "iris-works": CsvLayout(
        slug="iris-works", product="Iris Works",
        columns=(("Contact Id", "remote_id"), ("Last Name", "last_name"), ("First Name", "first_name"),
                 ("Primary Email", "email"), ("Primary Phone", "phone"), ("Street Address", "street"),
                 ("City", "city"), ("State/Province", "state"), ("Postal Code", "postal_code"),
                 ("Country", "country"), ("Job Name", "project_name"), ("Event Date", "project_date"),
                 ("Job Type", "project_type"), ("Workflow Stage", "stage"), ("Venue", "venue"),
                 ("Guest Count", "guest_count"), ("Referral Source", "lead_source"), ("Created", "created")),
        required=(("email", "last_name"),),
        date_format="%Y-%m-%d", datetime_format="%Y-%m-%d %H:%M:%S", dayfirst=False, default_region="US",
        aliases={"remote_id": ("contact id", "id")}, id_prefix="iw-",
    ),
}


def _header_map(layout: CsvLayout, header: list[str]) -> tuple[dict[int, str], dict[int, str], dict[int, int]]:
    """Column index -> canonical field, index -> header for the columns that map to no field, and index -> the
    index of the first column with the same header (a repeated header: ``Email`` twice, matched as headers
    are), which is read with that first column, never as a column of its own."""
    by_key: dict[str, str] = {}
    for name, canonical in layout.columns:  # the layout's own headers win over aliases
        by_key.setdefault(_key(name), canonical)
    for canonical, names in layout.aliases.items():
        for name in names:
            by_key.setdefault(_key(name), canonical)
    for canonical, names in _COMMON_ALIASES.items():
        for name in names:
            by_key.setdefault(_key(name), canonical)
    mapped: dict[int, str] = {}
    extra: dict[int, str] = {}
    repeats: dict[int, int] = {}
    taken: set[str] = set()
    first_of: dict[str, int] = {}
    for index, raw in enumerate(header):
        name = raw.strip().lstrip("\ufeff")
        if not name:
            continue
        key = _key(name) or name
        if key in first_of:  # the same header again: it used to become a custom field named like the field
            repeats[index] = first_of[key]
            continue
        first_of[key] = index
        found = by_key.get(_key(name))
        if found is None or found in taken:
            extra[index] = name
        else:
            mapped[index] = found
            taken.add(found)
    return mapped, extra, repeats


def _repeat_notes(header: list[str], line: int, mapped: Mapping[int, str], extra: Mapping[int, str],
                  repeats: Mapping[int, int]) -> list[RowIssue]:
    """One ``duplicate_column`` report per repeated header (on the header's line): which columns repeat it and
    which one is read."""
    groups: dict[int, list[int]] = {}
    for index, first in repeats.items():
        groups.setdefault(first, [first]).append(index)
    notes = []
    for first, columns in sorted(groups.items()):
        name = header[first].strip().lstrip("\ufeff")
        meaning = (f"the {mapped[first].replace('_', ' ')}" if first in mapped
                   else f"the custom field {extra.get(first, name)!r}")
        numbers = ", ".join(str(i + 1) for i in columns)
        notes.append(RowIssue(line, name[:200], "duplicate_column", (
            f"the header has {len(columns)} {name!r} columns (columns {numbers}); {meaning} is read from column "
            f"{first + 1}, or from the next of them when it is empty in a row; a row where another of them holds a "
            f"different value is reported (duplicate_column) and that value is not imported")))
    return notes


# --- decoding -------------------------------------------------------------------------------------------


# A valid multi-byte UTF-8 sequence (RFC 3629): what a file that is UTF-8 apart from a few stray bytes is full
# of, and what a Windows-1252 file almost never contains by accident ("Ã©" is not how anyone writes a name).
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
                            rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
                            rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}")


@dataclass
class _Decoded:
    """The file's text and, when most of it is UTF-8 but some bytes are not, where those bytes were (each
    read as Windows-1252): {physical line: the characters they became}."""

    text: str
    repaired: dict[int, str] = field(default_factory=dict)


def _cp1252_byte(b: int) -> str:
    try:
        return bytes([b]).decode("cp1252")
    except UnicodeDecodeError:  # the five bytes Windows-1252 leaves undefined
        return bytes([b]).decode("latin-1")


_REPAIRS = threading.local()


def _read_as_cp1252(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: the bytes that are not UTF-8, read as Windows-1252 (and noted, see below)."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    chars = "".join(_cp1252_byte(b) for b in exc.object[exc.start:exc.end])
    noted = getattr(_REPAIRS, "noted", None)
    if noted is not None:
        noted.append((exc.start, chars))
    return chars, exc.end


codecs.register_error("wedsync-cp1252", _read_as_cp1252)


def _utf8_with_fallback(data: bytes) -> tuple[str, list[tuple[int, str]]]:
    """UTF-8 text in which each byte that is not part of a valid sequence is read as Windows-1252, in one
    linear pass; with the (byte offset, characters) of each run of such bytes."""
    noted: list[tuple[int, str]] = []
    _REPAIRS.noted = noted
    try:
        text = data.decode("utf-8", errors="wedsync-cp1252")
    finally:
        _REPAIRS.noted = None
    repairs: list[tuple[int, str]] = []
    for start, chars in noted:
        if repairs and repairs[-1][0] + len(repairs[-1][1]) == start:  # one run of bad bytes, one entry
            repairs[-1] = (repairs[-1][0], repairs[-1][1] + chars)
        else:
            repairs.append((start, chars))
    return text, repairs


def _lines_of(data: bytes, repairs: list[tuple[int, str]]) -> dict[int, str]:
    out: dict[int, str] = {}
    line, last = 1, 0
    for offset, chars in repairs:
        line += data.count(b"\n", last, offset)
        last = offset
        out[line] = out.get(line, "") + chars
    return out


def _decode(data: bytes) -> _Decoded:
    """Text of the file: BOM-marked UTF-8/UTF-16, else UTF-8, else cp1252, else Latin-1 (never fails).

    A file that is UTF-8 except for a few bytes (a name pasted from a Windows program into a UTF-8 export) is
    read as UTF-8 with those bytes read as Windows-1252, and the lines they are on are reported
    (``mixed_encoding``): reading the whole file as Windows-1252 would garble every other accented or non-Latin
    name in it ("ChloÃ©", silently), and replacing the bytes would lose the letters they stand for."""
    if data.startswith(codecs.BOM_UTF8):
        body = data[3:]
        text, repairs = _utf8_with_fallback(body)
        return _Decoded(text, _lines_of(body, repairs))
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _Decoded(data.decode("utf-16", errors="replace"))
    sample = data[:4096]
    if len(sample) >= 4:  # UTF-16 without a BOM: every other byte is zero for Latin text
        odd_zero = sample[1::2].count(0) / max(1, len(sample[1::2]))
        even_zero = sample[0::2].count(0) / max(1, len(sample[0::2]))
        if odd_zero > 0.4 and even_zero < 0.05:
            return _Decoded(data.decode("utf-16-le", errors="replace"))
        if even_zero > 0.4 and odd_zero < 0.05:
            return _Decoded(data.decode("utf-16-be", errors="replace"))
    try:
        return _Decoded(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    sequences = len(_UTF8_SEQUENCE.findall(data))
    if sequences:  # some UTF-8 in it: is it mostly UTF-8 with a few stray bytes?
        text, repairs = _utf8_with_fallback(data)
        if sum(len(chars) for _, chars in repairs) <= sequences:
            return _Decoded(text, _lines_of(data, repairs))
    try:
        return _Decoded(data.decode("cp1252"))
    except UnicodeDecodeError:
        return _Decoded(data.decode("latin-1"))


def _check_text(text: str) -> None:
    sample = text[:8192]
    if "\x00" in sample:
        raise CsvFileError("binary_file", "the file contains NUL bytes: it is not a text CSV export")
    controls = sum(1 for c in sample if (ord(c) < 32 and c not in "\r\n\t") or c == "\ufffd")
    if sample and controls / len(sample) > 0.05:
        raise CsvFileError("binary_file", "the file is not text (too many control or undecodable characters)")


def _sniff_delimiter(text: str) -> str:
    """Comma, semicolon or tab: whichever splits one of the first lines into the most columns (comma on a tie)."""
    counts = {d: 0 for d in (",", ";", "\t")}
    for line in [x for x in text[:65_536].split("\n") if x.strip()][:HEADER_SEARCH_ROWS]:
        per_line = {d: 0 for d in counts}
        quoted = False
        for ch in line:
            if ch == '"':
                quoted = not quoted
            elif not quoted and ch in per_line:
                per_line[ch] += 1
        for d, n in per_line.items():
            counts[d] = max(counts[d], n)
    best = max(counts.items(), key=lambda kv: (kv[1], kv[0] == ","))
    return best[0] if best[1] > 0 else ","


# --- value parsing ----------------------------------------------------------------------------------------

_FAST_EMAIL = re.compile(
    r"[a-z0-9_%+\-]+(?:\.[a-z0-9_%+\-]+)*@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+([a-z]{2,63})")
_SPECIAL_TLDS = frozenset(SPECIAL_USE_DOMAIN_NAMES)


def check_email(value: str) -> str | None:
    """The normalized e-mail, or None when it is not a valid address (syntax only, no DNS)."""
    text = value.strip()
    lowered = text.lower()
    m = _FAST_EMAIL.fullmatch(lowered)
    if m is not None and len(lowered) <= 254 and lowered.index("@") <= 64:
        if m.group(1) in _SPECIAL_TLDS:
            return None
        return lowered
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    return normalize_email(result.normalized)


def _region(country: str | None, default: str) -> str:
    return country_code(country) or default


def country_code(country: str | None) -> str | None:
    """The ISO 3166 code of a Country cell (a code, or a name in English or as the country writes it), or None."""
    if not country or not country.strip():
        return None
    c = country.strip()
    code = _COUNTRY_NAMES.get(_key(c))
    if code:
        return code
    if len(c) == 2 and c.isalpha() and c.upper() in phonenumbers.SUPPORTED_REGIONS:
        return c.upper()
    return None


_COUNTRY_NAMES = {_key(k): v for k, v in {
    "United States": "US", "USA": "US", "U.S.": "US", "U.S.A.": "US", "United States of America": "US",
    "America": "US", "Australia": "AU", "AUS": "AU", "United Kingdom": "GB", "UK": "GB", "U.K.": "GB",
    "Great Britain": "GB", "Britain": "GB", "England": "GB", "Scotland": "GB", "Wales": "GB",
    "Northern Ireland": "GB", "GBR": "GB", "Canada": "CA", "CAN": "CA", "New Zealand": "NZ", "Aotearoa": "NZ",
    "NZL": "NZ", "Ireland": "IE", "Eire": "IE", "Éire": "IE", "Germany": "DE", "Deutschland": "DE", "DEU": "DE",
    "France": "FR", "FRA": "FR", "Spain": "ES", "España": "ES", "ESP": "ES", "Italy": "IT", "Italia": "IT",
    "ITA": "IT", "Mexico": "MX", "México": "MX", "MEX": "MX", "Japan": "JP", "Nippon": "JP", "Netherlands": "NL",
    "The Netherlands": "NL", "Holland": "NL", "Nederland": "NL", "Brazil": "BR", "Brasil": "BR", "BRA": "BR",
    "India": "IN", "Bharat": "IN", "South Africa": "ZA", "Portugal": "PT", "Belgium": "BE", "Belgique": "BE",
    "België": "BE", "Switzerland": "CH", "Schweiz": "CH", "Suisse": "CH", "Svizzera": "CH", "Austria": "AT",
    "Österreich": "AT", "Sweden": "SE", "Sverige": "SE", "Norway": "NO", "Norge": "NO", "Denmark": "DK",
    "Danmark": "DK", "Finland": "FI", "Suomi": "FI", "Iceland": "IS", "Poland": "PL", "Polska": "PL",
    "Czech Republic": "CZ", "Czechia": "CZ", "Hungary": "HU", "Greece": "GR", "Hellas": "GR", "Croatia": "HR",
    "Hrvatska": "HR", "Romania": "RO", "Bulgaria": "BG", "Turkey": "TR", "Türkiye": "TR", "Cyprus": "CY",
    "Malta": "MT", "Luxembourg": "LU", "Monaco": "MC", "Israel": "IL", "United Arab Emirates": "AE", "UAE": "AE",
    "Saudi Arabia": "SA", "Qatar": "QA", "Egypt": "EG", "Morocco": "MA", "Kenya": "KE", "Nigeria": "NG",
    "China": "CN", "Hong Kong": "HK", "Taiwan": "TW", "South Korea": "KR", "Korea": "KR", "Singapore": "SG",
    "Malaysia": "MY", "Thailand": "TH", "Vietnam": "VN", "Viet Nam": "VN", "Indonesia": "ID", "Bali": "ID",
    "Philippines": "PH", "Argentina": "AR", "Chile": "CL", "Colombia": "CO", "Peru": "PE", "Perú": "PE",
    "Costa Rica": "CR", "Puerto Rico": "PR", "Jamaica": "JM", "Bahamas": "BS", "Dominican Republic": "DO",
    "Fiji": "FJ",
}.items()}


def check_phone(value: str, region: str) -> str | None:
    """E.164 (``;ext=`` kept) when the number is possible for ``region``, else None."""
    normalized = normalize_phone(value, region)
    if normalized is None or not normalized.startswith("+"):
        return None
    return normalized


_DEFAULTS = (datetime(2000, 1, 1), datetime(2001, 2, 2))  # no year, month or day in common


def loose_datetime(text: str, *, dayfirst: bool) -> datetime | None:
    """A date (and time) written any common way (``June 14, 2027``, ``14.06.2027 15:00``), read by dateutil, or
    None unless the text names a whole day: dateutil fills what is missing from today, so ``June 2027`` became
    the 3rd of June when read on the 3rd, ``Saturday`` the next Saturday and ``10:30`` today; a wedding date made
    up that way is wrong evidence for identity (parsed twice with different defaults: a whole day reads the
    same both times)."""
    from dateutil import parser as date_parser

    try:
        first, second = (date_parser.parse(text, dayfirst=dayfirst, default=d) for d in _DEFAULTS)
    except (ValueError, OverflowError):
        return None
    return first if first.date() == second.date() else None


def _parse_date(value: str, layout: CsvLayout) -> date | None:
    text = value.strip()
    for fmt in (layout.date_format, "%Y-%m-%d", layout.datetime_format):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    parsed = loose_datetime(text, dayfirst=layout.dayfirst)
    return parsed.date() if parsed is not None else None


def _parse_datetime(value: str, layout: CsvLayout, zone: tzinfo) -> datetime | None:
    text = value.strip()
    for fmt in (layout.datetime_format, layout.date_format, "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(text, fmt)
            break
        except ValueError:
            continue
    else:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            # any common spelling, as project dates are read: a 17hats export saved again by Excel writes
            # "1/15/2026 14:30", Studio Ninja's may carry seconds; each was invalid_date, its created time lost
            loose = loose_datetime(text, dayfirst=layout.dayfirst)
            if loose is None:
                return None
            parsed = loose
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 12/31/9999 11:00 PM west of UTC is in the year 10000: no date (it failed the chunk)
        return None


def _norm_name(value: str | None) -> str:
    return " ".join(unicodedata.normalize("NFKC", value or "").casefold().split())


def client_hash_id(email: str | None, first: str | None, last: str | None, prefix: str = "csv-") -> str:
    """The stable remote id of a CSV row without an id column: normalized e-mail + normalized full name."""
    name = _norm_name(" ".join(p for p in (first, last) if p))
    basis = f"{normalize_email(email) or ''}|{name}"
    return prefix + hashlib.blake2b(basis.encode("utf-8"), digest_size=10).hexdigest()


def project_hash_id(client_remote_id: str, name: str | None, event_date: date | None) -> str:
    """The remote id of a CSV row's project when the layout has no project id column: ``"csvp-"`` + a hash of
    the client's remote id, the normalized project name and the date (the same row imported again is the same
    project; a hook's project with its own id is matched to it by this, ``CrmService``)."""
    basis = f"{client_remote_id}|{_norm_name(name)}|{event_date.isoformat() if event_date else ''}"
    return "csvp-" + hashlib.blake2b(basis.encode("utf-8"), digest_size=10).hexdigest()


def split_full_name(full: str) -> tuple[str | None, str | None]:
    """(first, last) of a one-cell name: ``"Lastname, Firstname"`` when it has a comma, else the first word and
    the rest. CSV rows and hooks both read names with it, so the same person gets the same name (and hash id)
    whichever channel brought them."""
    text = " ".join(full.split())
    if "," in text:  # "Lastname, Firstname"
        last, _, first = text.partition(",")
        return (first.strip() or None), (last.strip() or None)
    words = text.split(" ")
    joins = [i for i, w in enumerate(words) if 0 < i < len(words) - 1 and w.casefold() in _AND]
    if joins:
        # a couple: "Anna & Ben Carter" is Anna & Ben of the Carter family (it was "Anna" and "& Ben Carter"),
        # "Anna & Ben" two first names
        if joins[-1] == len(words) - 2:
            return text, None
        return " ".join(words[:-1]), words[-1]
    first, _, last = text.partition(" ")
    return (first or None), (last or None)


#: the words that join a couple's first names in a one-cell name
_AND = frozenset({"&", "and", "+"})

# thousands separators people type in a count: "1,150", "1 150", "1'150" (and the narrow/no-break spaces)
_THOUSANDS = re.compile(r"[,'\s\u00a0\u202f]")


def parse_guest_count(value: str) -> int | None:
    """A guest count as typed (``"150"``, ``"1,150"``), or None when it is not a whole number below a million.
    CSV cells and hook fields both read counts with it."""
    raw = _THOUSANDS.sub("", value.strip())
    if raw.isdigit() and len(raw) < 7:
        return int(raw)
    return None


def normalize_country(value: str | None) -> str | None:
    """The address country as stored: the ISO 3166-1 alpha-2 code when :func:`country_code` recognises the text
    (``"Brazil"``, ``"USA"``, ``"br"`` -> ``"BR"``, ``"US"``), which is how VSCO Workspace stores it, so the same
    address from a CSV, a hook and Workspace is one value, not a conflict; else the text as typed (trimmed),
    never dropped (``contact_body`` refuses to write such a country to Workspace rather than lose it)."""
    if value is None or not value.strip():
        return None
    return country_code(value) or " ".join(value.split())


# --- parsing ----------------------------------------------------------------------------------------------


def _get_layout(layout: str) -> CsvLayout:
    found = LAYOUTS.get(layout)
    if found is None:
        raise CsvFileError("unknown_layout", f"no CSV layout {layout!r}; known: {sorted(LAYOUTS)}")
    return found


def parse_csv(data: bytes, layout: str, *, default_region: str | None = None,
              timezone: str | None = None, notes: list[RowIssue] | None = None) -> Iterator[ParsedRow]:
    """Parse one export, row by row. File-level problems raise :class:`CsvFileError` before the first row.

    ``default_region`` (ISO country) overrides the layout's for phones without a country code and no
    country column; ``timezone`` (IANA) is the zone of the created timestamps (UTC by default). ``notes``, when
    given, gets the file-level warnings (on the header's line, before the first row): ``duplicate_column``
    for a header the file has more than once.
    """
    spec = _get_layout(layout)
    if not data or not data.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
        raise CsvFileError("empty_file", "the file is empty")
    if data.startswith(b"\xd0\xcf\x11\xe0") or (data.startswith(b"PK\x03\x04") and _is_workbook(data)):
        raise CsvFileError("binary_file", "this is a spreadsheet workbook (.xlsx/.xls), not a CSV: save or "
                                          "export it as CSV first")
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a ZIP archive (an export downloaded zipped) was
        # called a workbook to save as CSV
        raise CsvFileError("binary_file", "this is a ZIP archive, not a CSV: unzip it and upload the CSV file "
                                          "inside")
    decoded = _decode(data)
    text = decoded.text
    _check_text(text)
    try:
        zone: tzinfo = ZoneInfo(timezone) if timezone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        raise CsvFileError("invalid_timezone", f"unknown time zone {timezone!r}") from None
    region = (default_region or spec.default_region).upper()
    csv.field_size_limit(MAX_FIELD_SIZE)
    delimiter = _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    first_header: list[str] | None = None
    missing: list[tuple[str, ...]] = []
    try:
        # the header is the first non-blank row that has the layout's required columns; a title line or two
        # above it (some exports start with the report's name and date) is skipped
        for _ in range(HEADER_SEARCH_ROWS):
            header = next(reader, None)
            while header is not None and not any(cell.strip() for cell in header):
                header = next(reader, None)  # blank lines before the header
            if header is None:
                break
            first_header = first_header or header
            mapped, extra, repeats = _header_map(spec, header)
            present = set(mapped.values())
            missing = [group for group in spec.required if not present.intersection(group)]
            if not missing:
                wanted = {f for group in spec.required for f in group}
                needed = 1 + max(i for i, f in mapped.items() if f in wanted)  # cells a row needs to be read
                if notes is not None and repeats:
                    notes.extend(_repeat_notes(header, reader.line_num, mapped, extra, repeats))
                return _rows(reader, text, delimiter, spec, mapped, extra, repeats, len(header), needed, region,
                             zone, decoded.repaired)
    except csv.Error as exc:
        raise CsvFileError("malformed_csv", f"cannot read the header: {exc}") from exc
    if first_header is None:
        raise CsvFileError("empty_file", "the file has no header row")
    expected = ", ".join(" or ".join(_header_for(spec, f) for f in group) for group in missing)
    raise CsvFileError("missing_columns", f"the {spec.product} export has no {expected} column; found "
                                          f"{[h for h in first_header if h.strip()][:30]}")


def _is_workbook(data: bytes) -> bool:
    """Whether a ZIP file is an Office Open XML or OpenDocument spreadsheet (its member names say so)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return b"[Content_Types].xml" in data[:4096] or b"mimetypeapplication/vnd.oasis" in data[:4096]
    return any(n == "[Content_Types].xml" or n.startswith("xl/") for n in names) or "content.xml" in names


def count_records(data: bytes) -> int:
    """The file's CSV records after the first one (its header), blank ones left out: what an import will read,
    where a quoted cell with line breaks in it (a multi-line address) is one record over several lines. Read
    leniently and without building rows, so it is quick; a file the lenient reader cannot read is counted by
    its lines instead."""
    decoded = _decode(data)
    csv.field_size_limit(MAX_FIELD_SIZE)
    try:
        reader = csv.reader(io.StringIO(decoded.text, newline=""), delimiter=_sniff_delimiter(decoded.text))
        records = sum(1 for cells in reader if any(cell.strip() for cell in cells))
    except csv.Error:
        records = sum(1 for line in decoded.text.splitlines() if line.strip())
    return max(records - 1, 0)


def _header_for(spec: CsvLayout, canonical: str) -> str:
    return next((h for h, f in spec.columns if f == canonical), canonical)


def _rows(reader: Iterator[list[str]], text: str, delimiter: str, spec: CsvLayout, mapped: dict[int, str],
          extra: dict[int, str], repeats: Mapping[int, int], width: int, needed: int, region: str, zone: tzinfo,
          repaired: Mapping[int, str]) -> Iterator[ParsedRow]:
    """The data rows after the header, each with the physical line it starts on.

    Quoting is read strictly: a record the CSV grammar cannot read is reported as ``malformed_row`` on the line
    it starts on and skipped, and reading goes on with the next line. That covers text after a closing quote
    (``"Anna,"Smith``: lenient parsing glued the cells together and shifted the rest of the row into the wrong
    columns) and a quote that is never closed: it would swallow every later line into one cell; instead the
    line that opened it is reported and reading restarts on the line after it, so the rows below still land.
    """
    offset = 0  # physical lines before the current reader's first line
    line_reader = reader  # csv.reader: line_num is the physical line the last record ended on
    last_line = line_reader.line_num  # type: ignore[attr-defined]
    while True:
        start = offset + last_line + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            ended = offset + line_reader.line_num  # type: ignore[attr-defined]
            if ended > start:  # a quote opened on this line ran over the next ones: resume right after it
                message = (f"{exc}: a quoted cell that starts on line {start} is not closed where it should be; the "
                           f"line is skipped and reading resumes on line {start + 1}")
                source = io.StringIO(text, newline="")
                for _ in range(start):
                    if next(source, None) is None:
                        break
                reader = line_reader = csv.reader(source, delimiter=delimiter, strict=True)
                offset, last_line = start, 0
            else:
                message = f"{exc}: the line is not valid CSV (a quote in the wrong place?); it is skipped"
                last_line = line_reader.line_num  # type: ignore[attr-defined]
            yield ParsedRow(start, None, None, [RowIssue(start, None, "malformed_row", message, True)])
            continue
        last_line = line_reader.line_num  # type: ignore[attr-defined]
        if not any(cell.strip() for cell in cells):
            continue
        repeated: Sequence[RowIssue] = ()
        if repeats:
            cells, repeated = _merge_repeats(start, cells, spec, mapped, extra, repeats, width)
        row = _row(start, cells, spec, mapped, extra, width, needed, region, zone)
        if repeated:
            row.issues.extend(repeated)
        if repaired:
            odd = "".join(repaired.get(n, "") for n in range(start, offset + last_line + 1))
            if odd:
                row.issues.append(RowIssue(start, None, "mixed_encoding", (
                    f"bytes that are not UTF-8 (the rest of the file is) were read as Windows-1252: {odd[:40]!r}; "
                    "check this row's accented letters and punctuation")))
        yield row


def _merge_repeats(line: int, cells: list[str], spec: CsvLayout, mapped: Mapping[int, str],
                   extra: Mapping[int, str], repeats: Mapping[int, int], width: int
                   ) -> tuple[list[str], list[RowIssue]]:
    """A row's cells with each repeated column read into the first column of its header: its value fills that
    column when it is empty; a different value where it is not is reported and left out."""
    issues: list[RowIssue] = []
    out = cells
    for index, first in sorted(repeats.items()):
        if index >= min(len(cells), width):
            break
        value = cells[index].strip()
        if not value:
            continue
        kept = out[first].strip()
        if not kept:
            if out is cells:
                out = list(cells)
            out[first] = cells[index]
        elif kept != value:
            col = _col(spec, mapped.get(first) or extra.get(first))
            issues.append(RowIssue(line, col, "duplicate_column", (
                f"the file has several {col!r} columns: column {first + 1}'s {kept[:100]!r} was imported, column "
                f"{index + 1}'s {value[:100]!r} was not")))
    return out, issues


def _row(line: int, cells: list[str], spec: CsvLayout, mapped: dict[int, str], extra: dict[int, str],
         width: int, needed: int, region: str, zone: tzinfo) -> ParsedRow:
    issues: list[RowIssue] = []
    values: dict[str, str] = {}
    custom: dict[str, str] = {}
    if len(cells) > width and any(c.strip() for c in cells[width:]):
        issues.append(RowIssue(line, None, "extra_cells",
                               f"{len(cells)} cells but the header has {width} columns; extra cells ignored"))
    elif len(cells) < width:
        # a row that stops early: a file cut short (its last line), or an exporter that leaves out trailing
        # empty cells. Without the cells that identify the row (the layout's required columns) it would become a
        # client of its own, beside the one its whole row is; with them, what it lacks is read as empty.
        first_missing = _col(spec, mapped.get(len(cells)) or extra.get(len(cells))) or f"column {len(cells) + 1}"
        if len(cells) < needed:
            last_needed = _col(spec, mapped.get(needed - 1)) or f"column {needed}"
            issues.append(RowIssue(line, None, "missing_cells", (
                f"{len(cells)} cells but the header has {width} columns: the row ends before the {last_needed} "
                f"column it needs (a file cut short, or a line break outside quotes?); skipped"), True))
            return ParsedRow(line, None, None, issues)
        issues.append(RowIssue(line, None, "missing_cells", (
            f"{len(cells)} cells but the header has {width} columns: {first_missing} and the columns after it "
            "are read as empty")))
    for index, cell in enumerate(cells[:width]):
        value = cell.strip()
        if not value:
            continue
        if value[0] == "'" and value[1:2] in ("=", "+", "-", "@"):
            value = value[1:]  # a formula neutralized on export (ours, or a spreadsheet's): the text itself
        if len(value) > MAX_CELL:
            col = mapped.get(index) or extra.get(index)
            issues.append(RowIssue(line, _col(spec, col), "value_too_long",
                                   f"value of {len(value)} characters ignored"))
            continue
        canonical = mapped.get(index)
        if canonical is not None and len(value) > _width(spec, canonical):
            issues.append(RowIssue(line, _col(spec, canonical), "value_too_long",
                                   f"value of {len(value)} characters ignored (at most {_width(spec, canonical)})"))
            continue
        if canonical is not None:
            values[canonical] = value
        elif index in extra:
            custom[extra[index]] = value

    first, last = values.get("first_name"), values.get("last_name")
    if not first and not last and values.get("full_name"):
        first, last = split_full_name(values["full_name"])
        if any(part and len(part) > FIELD_WIDTHS["first_name"] for part in (first, last)):
            issues.append(RowIssue(line, _header_for(spec, "full_name"), "value_too_long",
                                   f"a name of {len(values['full_name'])} characters ignored (at most "
                                   f"{FIELD_WIDTHS['first_name']} for the first and the last name each)"))
            first = last = None

    email: str | None = None
    if "email" in values:
        email = check_email(values["email"])
        if email is None:
            issues.append(RowIssue(line, _header_for(spec, "email"), "invalid_email",
                                   f"{values['email'][:80]!r} is not a valid e-mail address"))
    if email is None and not first and not last:
        code = "no_identity"
        issues.append(RowIssue(line, None, code, "the row has neither a valid e-mail nor a name", True))
        return ParsedRow(line, None, None, issues)

    country = values.get("country")
    known = country_code(country)
    phone_region = known or region
    if country and known is None:  # said, and not understood: the phones below were read as the default's
        issues.append(RowIssue(line, _header_for(spec, "country"), "unknown_country",
                               f"{country[:40]!r} is not a country we know; phones without a +country code "
                               f"were read as {region} numbers"))
    phone = None
    second_phone = None  # a second number (Studio Ninja's Phone beside its Mobile) is kept, never dropped
    for key in ("phone", "phone2"):
        if key in values:
            checked = check_phone(values[key], phone_region)
            if checked is None:
                issues.append(RowIssue(line, _header_for(spec, key), "invalid_phone",
                                       f"{values[key][:40]!r} is not a phone number for {phone_region}"))
            elif phone is None:
                phone = checked
            elif checked != phone:
                second_phone = checked

    address = {k: values[f] for k, f in (("streetAddress", "street"), ("city", "city"), ("state", "state"),
                                         ("postalCode", "postal_code")) if f in values}
    if country:
        address["country"] = known or " ".join(country.split())  # ISO as Workspace stores it, else as typed
    created = None
    if "created" in values:
        created = _parse_datetime(values["created"], spec, zone)
        if created is None:
            issues.append(RowIssue(line, _header_for(spec, "created"), "invalid_date",
                                   f"{values['created'][:40]!r} is not a date"))
    client_custom: dict[str, str] = {}
    if "lead_source" in values:
        client_custom["lead_source"] = values["lead_source"]
    if second_phone is not None:
        client_custom["phone2"] = second_phone
    client_custom.update(custom)
    remote_id = values.get("remote_id")
    remote_id = f"{spec.id_prefix}{remote_id}" if remote_id else client_hash_id(email, first, last)
    display = " ".join(p for p in (first, last) if p) or None
    if display is not None and len(display) > DISPLAY_NAME_WIDTH:
        display = None  # two names of the longest kind: kept, without a display name made of them
    client = ClientRecord(
        remote_id=remote_id, kind="person", first_name=first, last_name=last, display_name=display,
        email=email, phone=phone, company=values.get("company"), address=address or None,
        custom_fields=client_custom, remote_created_at=created,
    )
    wedding = _wedding(line, values, spec, client, issues)
    return ParsedRow(line, client, wedding, issues)


def _width(spec: CsvLayout, canonical: str) -> int:
    """The longest cell of a field the store keeps (an id with its layout's prefix), MAX_CELL for the rest."""
    width = FIELD_WIDTHS.get(canonical)
    if width is None:
        return MAX_CELL
    if canonical == "remote_id":
        return width - len(spec.id_prefix)
    if canonical == "project_id":
        return width - len(f"{spec.id_prefix}job-")
    return width


def _col(spec: CsvLayout, canonical_or_header: str | None) -> str | None:
    if canonical_or_header in FIELDS:
        return _header_for(spec, canonical_or_header)
    return canonical_or_header


def _wedding(line: int, values: dict[str, str], spec: CsvLayout, client: ClientRecord,
             issues: list[RowIssue]) -> WeddingRecord | None:
    if not any(k in values for k in ("project_name", "project_date", "project_id")):
        return None
    event_date = None
    if "project_date" in values:
        event_date = _parse_date(values["project_date"], spec)
        if event_date is None:
            issues.append(RowIssue(line, _header_for(spec, "project_date"), "invalid_date",
                                   f"{values['project_date'][:40]!r} is not a date"))
    guests = None
    if "guest_count" in values:
        guests = parse_guest_count(values["guest_count"])
        if guests is None:
            issues.append(RowIssue(line, _header_for(spec, "guest_count"), "invalid_number",
                                   f"{values['guest_count'][:20]!r} is not a guest count"))
    name = values.get("project_name")
    project_id = values.get("project_id")
    if project_id:
        remote_id = f"{spec.id_prefix}job-{project_id}"
    else:
        remote_id = project_hash_id(client.remote_id, name, event_date)
    custom: dict[str, Any] = {k: values[k] for k in ("venue", "lead_source") if k in values}
    return WeddingRecord(remote_id=remote_id, name=name, event_date=event_date, stage=values.get("stage"),
                         guest_count=guests, job_type=values.get("project_type"),
                         client_remote_ids=[client.remote_id], custom_fields=custom)


# --- export -----------------------------------------------------------------------------------------------


def _format_phone(value: str | None, region: str) -> str:
    """The number as the product writes it: national when it is a number of ``region`` (the region the
    import reads the row's phones in) and reads back as the same number there, else international."""
    if not value:
        return ""
    try:
        number = phonenumbers.parse(value.replace(";ext=", " ext. "), region)
    except phonenumbers.NumberParseException:
        return value
    if phonenumbers.region_code_for_number(number) == region:
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if normalize_phone(national, region) == (f"{e164};ext={number.extension}" if number.extension else e164):
            return national
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _strip_prefix(value: str, prefix: str) -> str:
    return value[len(prefix):] if prefix and value.startswith(prefix) else value


def _cells(spec: CsvLayout, client: ClientRecord, wedding: WeddingRecord | None, zone: tzinfo,
           default_region: str) -> list[str]:
    address = client.address or {}
    custom = client.custom_fields or {}
    wcustom = wedding.custom_fields if wedding else {}
    # the region parse_csv reads this row's phones in: the Country cell written below when the layout has that
    # column, else the layout's (a Brazilian number written nationally in a layout without a Country column was
    # read back as a US number)
    country = address.get("country") if "country" in spec.fields() else None
    region = _region(country if isinstance(country, str) else None, default_region)
    out: list[str] = []
    for _, canonical in spec.columns:
        value: object = None
        if canonical == "remote_id":
            value = "" if client.remote_id.startswith("csv-") else _strip_prefix(client.remote_id, spec.id_prefix)
        elif canonical == "first_name":
            value = client.first_name
        elif canonical == "last_name":
            value = client.last_name
        elif canonical == "full_name":
            value = " ".join(p for p in (client.first_name, client.last_name) if p) or client.display_name
        elif canonical == "email":
            value = client.email
        elif canonical == "phone":
            value = _format_phone(client.phone, region)
        elif canonical == "phone2":
            second = custom.get("phone2")
            value = _format_phone(second, region) if isinstance(second, str) else None
        elif canonical == "company":
            value = client.company
        elif canonical in ("street", "city", "state", "postal_code", "country"):
            key = {"street": "streetAddress", "postal_code": "postalCode"}.get(canonical, canonical)
            value = address.get(key)
        elif canonical == "lead_source":
            value = custom.get("lead_source") or wcustom.get("lead_source")
        elif canonical == "created":
            value = _local_stamp(client.remote_created_at, zone, spec.datetime_format)
        elif wedding is not None:
            if canonical == "project_id":
                value = (_strip_prefix(wedding.remote_id, f"{spec.id_prefix}job-")
                         if wedding.remote_id.startswith(f"{spec.id_prefix}job-") else "")
            elif canonical == "project_name":
                value = wedding.name
            elif canonical == "project_date":
                value = wedding.event_date.strftime(spec.date_format) if wedding.event_date else None
            elif canonical == "project_type":
                value = wedding.job_type
            elif canonical == "stage":
                value = wedding.stage
            elif canonical == "venue":
                value = wcustom.get("venue")
            elif canonical == "guest_count":
                value = wedding.guest_count
        out.append("" if value is None else _inert(str(value)))
    return out


def _local_stamp(stamp: datetime | None, zone: tzinfo, fmt: str) -> str | None:
    """``stamp`` in ``zone`` as the layout writes it; None when it has no time or that zone cannot show it (the
    last hours of the year 9999 east of UTC: the export stopped there, cut short in the middle of the file)."""
    if stamp is None:
        return None
    try:
        return stamp.astimezone(zone).strftime(fmt)
    except OverflowError:
        return None


# Spreadsheet programs run a cell that starts with one of these as a formula (CSV injection): a name a couple
# typed into a marketplace inquiry ("=HYPERLINK(...)") must reach the vendor's spreadsheet as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# ... but a signed number or a phone number in international format is data, not a formula
_SIGNED_NUMBER = re.compile(r"[+-][0-9][0-9 ().\-/]*(?: ?(?:ext\.?|x) ?[0-9]+)?", re.IGNORECASE)


def _inert(cell: str) -> str:
    """The cell, with a leading apostrophe when a spreadsheet would run it (OWASP's advice); ``parse_csv``
    takes the apostrophe off again, so an export imports back unchanged."""
    if cell.startswith(_FORMULA_START) and not _SIGNED_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def export_csv(layout: str, rows: Iterable[tuple[ClientRecord, WeddingRecord | None]], *,
               default_region: str | None = None, timezone: str | None = None, chunk_rows: int = 500
               ) -> Iterator[bytes]:
    """The product's CSV (UTF-8, comma, CRLF like the products' exports), ``chunk_rows`` rows per chunk.

    Unknown layouts raise :class:`CsvFileError` at the first ``next()``; ``default_region`` and ``timezone``
    mean what they mean to ``parse_csv`` (give both the same ones and the file reads back as written): phones
    are national only when they are numbers of the region the import will read them in, and created
    timestamps are written in ``timezone`` (UTC by default).
    """
    spec = _get_layout(layout)
    zone: tzinfo = ZoneInfo(timezone) if timezone else UTC
    region = (default_region or spec.default_region).upper()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(spec.headers)
    count = 0
    for client, wedding in rows:
        writer.writerow(_cells(spec, client, wedding, zone, region))
        count += 1
        if count % chunk_rows == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    tail = buffer.getvalue()
    if tail:
        yield tail.encode("utf-8")
