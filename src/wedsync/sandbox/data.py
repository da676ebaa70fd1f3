"""Deterministic synthetic wedding-vendor data: couples, contacts and weddings from many locales.

Faker is slow per call, so each locale's names, addresses and valid phone numbers are drawn once into pools
(seeded with a fixed seed and cached for the process); records combine pool entries with a
``random.Random(seed)``, which makes 100,000 contacts take about a second and the output a pure function of
the seed. Dates of seeded records are relative to ``REFERENCE_NOW`` rather than the wall clock, for the same
reason. The records are provider-neutral; each emulator maps them to its own wire format.
"""

from __future__ import annotations

import random
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import cache

import phonenumbers
from faker import Faker

from wedsync.ids import ulid_string

try:  # Faker bundles a transliteration table; fall back to stripping accents if it ever moves
    from faker.decode import unidecode as _faker_unidecode

    _unidecode: Callable[[str], str] | None = _faker_unidecode
except ImportError:  # pragma: no cover
    _unidecode = None

__all__ = [
    "LOCALES",
    "REFERENCE_NOW",
    "Dataset",
    "LocaleProfile",
    "Person",
    "Phone",
    "PostalAddress",
    "SyntheticFactory",
    "Wedding",
    "format_timestamp",
    "generate_dataset",
    "ulid_at",
]

REFERENCE_NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
"""The instant seeded data is dated against (wall-clock time would make seeds irreproducible)."""
_REF_TS = int(REFERENCE_NOW.timestamp())
_EARLIEST_TS = int(datetime(2019, 1, 1, tzinfo=UTC).timestamp())
_POOL_SEED = 20_250_601

JOB_STAGES = ("lead", "booked", "fulfillment", "completed")


def ulid_at(timestamp_ms: int, rng: random.Random) -> str:
    """A lowercase ULID whose time part is ``timestamp_ms`` and whose 80 random bits come from ``rng``."""
    return ulid_string(timestamp_ms, rng.getrandbits(80))


def format_timestamp(epoch_seconds: int) -> str:
    """UTC timestamp in the ``2020-08-01T17:32:32Z`` shape most provider APIs use."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


@dataclass(frozen=True, slots=True)
class LocaleProfile:
    """One population of synthetic people: Faker locale, country, weight and local conventions."""

    locale: str
    country: str
    weight: float
    email_domains: tuple[str, ...]
    timezones: tuple[str, ...]
    double_barrel_rate: float = 0.03
    address_locale: str | None = None  # Faker locale for addresses when it differs from ``locale``
    extra_last_names: tuple[str, ...] = ()
    two_surnames_rate: float = 0.0  # Spanish-style paternal + maternal surname


LOCALES: tuple[LocaleProfile, ...] = (
    LocaleProfile("en_US", "US", 30, ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com"),
                  ("America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
                   "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu")),
    LocaleProfile("en_GB", "GB", 6, ("gmail.com", "hotmail.co.uk", "btinternet.com", "outlook.com"),
                  ("Europe/London",), double_barrel_rate=0.12),
    LocaleProfile("en_IE", "IE", 4, ("gmail.com", "eircom.net", "hotmail.com"), ("Europe/Dublin",),
                  double_barrel_rate=0.05,
                  extra_last_names=("O'Brien", "O'Connor", "O'Sullivan", "O'Neill", "O'Reilly", "O'Donnell",
                                    "D'Arcy", "O'Mahony", "O'Shea", "Ó Súilleabháin", "Mac Giolla Phádraig",
                                    "Ní Bhriain", "Ó Dónaill")),
    LocaleProfile("ga_IE", "IE", 2, ("gmail.com", "eircom.net"), ("Europe/Dublin",), address_locale="en_IE"),
    LocaleProfile("en_CA", "CA", 4, ("gmail.com", "rogers.com", "shaw.ca", "outlook.com"),
                  ("America/Toronto", "America/Vancouver", "America/Edmonton", "America/Winnipeg",
                   "America/Halifax", "America/St_Johns")),
    LocaleProfile("en_AU", "AU", 3, ("gmail.com", "bigpond.com", "outlook.com"),
                  ("Australia/Sydney", "Australia/Melbourne", "Australia/Brisbane", "Australia/Perth",
                   "Australia/Adelaide")),
    LocaleProfile("es_MX", "MX", 6, ("gmail.com", "hotmail.com", "yahoo.com.mx", "outlook.com"),
                  ("America/Mexico_City", "America/Cancun", "America/Tijuana", "America/Monterrey"),
                  two_surnames_rate=0.55),
    LocaleProfile("es_ES", "ES", 3, ("gmail.com", "hotmail.es", "yahoo.es"), ("Europe/Madrid", "Atlantic/Canary"),
                  two_surnames_rate=0.7),
    LocaleProfile("fr_FR", "FR", 5, ("gmail.com", "orange.fr", "free.fr", "laposte.net"), ("Europe/Paris",),
                  double_barrel_rate=0.08),
    LocaleProfile("de_DE", "DE", 5, ("gmail.com", "gmx.de", "web.de", "t-online.de"), ("Europe/Berlin",),
                  double_barrel_rate=0.08),
    LocaleProfile("it_IT", "IT", 3, ("gmail.com", "libero.it", "virgilio.it"), ("Europe/Rome",)),
    LocaleProfile("pl_PL", "PL", 3, ("gmail.com", "wp.pl", "o2.pl", "onet.pl"), ("Europe/Warsaw",),
                  double_barrel_rate=0.06),
    LocaleProfile("pt_BR", "BR", 5, ("gmail.com", "hotmail.com", "uol.com.br", "bol.com.br"),
                  ("America/Sao_Paulo", "America/Manaus", "America/Recife", "America/Bahia")),
    LocaleProfile("ja_JP", "JP", 4, ("gmail.com", "yahoo.co.jp", "docomo.ne.jp", "icloud.com"), ("Asia/Tokyo",)),
    LocaleProfile("zh_CN", "CN", 4, ("qq.com", "163.com", "126.com", "gmail.com"), ("Asia/Shanghai", "Asia/Urumqi")),
    LocaleProfile("ko_KR", "KR", 2, ("naver.com", "daum.net", "gmail.com"), ("Asia/Seoul",)),
    LocaleProfile("hi_IN", "IN", 4, ("gmail.com", "rediffmail.com", "yahoo.co.in"), ("Asia/Kolkata",)),
    LocaleProfile("vi_VN", "VN", 3, ("gmail.com", "yahoo.com.vn"), ("Asia/Ho_Chi_Minh", "Asia/Bangkok")),
    LocaleProfile("ar_AA", "AE", 3, ("gmail.com", "hotmail.com", "yahoo.com"), ("Asia/Dubai",)),
)

_AE_ADDRESSES: tuple[tuple[str, str, str | None, str], ...] = (
    ("Al Wasl Road, Villa 12", "Dubai", "Dubai", "00000"),
    ("Sheikh Zayed Road, Tower 3, Apt 1804", "Dubai", "Dubai", "00000"),
    ("Corniche Road, Building 7", "Abu Dhabi", "Abu Dhabi", "00000"),
    ("Al Majaz 2, Street 14", "Sharjah", "Sharjah", "00000"),
    ("شارع الشيخ زايد، برج ٤", "دبي", "دبي", "00000"),
    ("Khalifa City A, Villa 88", "Abu Dhabi", "Abu Dhabi", "00000"),
    ("Al Nuaimiya 1, Building 22", "Ajman", "Ajman", "00000"),
)

_VENUE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": ("{city} Country Club", "The Barn at {last} Farm", "{last} Estate", "The Grand Hotel {city}",
           "St. Mary's Church, {city}", "{city} Botanical Gardens"),
    "es": ("Hacienda {last}", "Jardín {city}", "Quinta {last}", "Parroquia de San José, {city}"),
    "fr": ("Château de {city}", "Domaine {last}", "Mairie de {city}", "Moulin de {city}"),
    "de": ("Schloss {city}", "Gut {last}", "Standesamt {city}", "Landhaus {last}"),
    "it": ("Villa {last}", "Castello di {city}", "Tenuta {last}"),
    "pt": ("Fazenda {last}", "Espaço {city}", "Igreja Matriz de {city}"),
    "pl": ("Dwór {last}", "Pałac w {city}", "Kościół św. Anny, {city}"),
    "ja": ("{city} グランドホテル", "ザ・ガーデン {city}", "{city} Chapel"),
    "zh": ("{city}国际大酒店", "{city}花园酒店"),
    "ko": ("{city} 웨딩홀", "더 채플 {city}"),
    "hi": ("{city} पैलेस", "The Leela {city}", "{last} Farmhouse"),
    "vi": ("Trung tâm Tiệc cưới {city}", "Khách sạn {city}"),
    "ar": ("قاعة {city} الكبرى", "Atlantis The Palm", "{city} Grand Ballroom"),
    "ga": ("{last} House", "Caisleán {city}"),
}

_NONLATIN_LANGS = {"ja", "zh", "ko", "hi", "ar"}


@dataclass(frozen=True, slots=True)
class Phone:
    """A phone number valid for its country, with the text a person typed (``formatted``)."""

    e164: str
    formatted: str
    extension: int | None
    country: str  # ISO 3166-1 alpha-2, upper case
    dial_code: int

    @property
    def tel_uri(self) -> str:
        digits = self.e164
        return f"tel:{digits};ext={self.extension}" if self.extension else f"tel:{digits}"


@dataclass(frozen=True, slots=True)
class PostalAddress:
    street: str
    city: str
    state: str | None
    postal_code: str
    country: str
    timezone: str


@dataclass(slots=True)
class Person:
    """A contact: usually one half of a couple (``partner_index``), sometimes a lone enquirer."""

    id: str
    index: int
    locale: str
    country: str
    first_name: str
    last_name: str
    gender: str
    email: str
    cell_phone: Phone | None
    home_phone: Phone | None
    work_phone: Phone | None
    address: PostalAddress
    timezone: str
    birthdate: date | None
    created: int
    modified: int
    hidden: bool
    partner_index: int | None
    privacy_opt_in: bool
    strict_privacy: bool
    contact_preference: str | None

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(slots=True)
class Wedding:
    """A booking (or lead) for a couple: the job a wedding vendor tracks."""

    id: str
    index: int
    partners: tuple[int, int]
    job_type: str
    event_date: date
    stage: str
    closed: bool
    closed_date: date | None
    inquiry_date: date
    booking_date: date | None
    fulfillment_date: date | None
    completed_date: date | None
    guest_count: int | None
    venue: str
    lead_source: str
    lead_rating: int | None
    lead_confidence: str | None
    budget: int  # minor units
    total_revenue: int
    web_lead: bool
    timezone: str
    name: str
    created: int
    modified: int


@dataclass(slots=True)
class Dataset:
    people: list[Person] = field(default_factory=list)
    weddings: list[Wedding] = field(default_factory=list)
    #: index of a re-entered person -> index of the person it repeats (the ground truth of duplicates)
    duplicate_of: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _LocalePool:
    profile: LocaleProfile
    female: tuple[tuple[str, str], ...]  # (display name, ASCII form for e-mails)
    male: tuple[tuple[str, str], ...]
    last: tuple[tuple[str, str], ...]
    addresses: tuple[tuple[str, str, str | None, str], ...]
    mobiles: tuple[tuple[str, tuple[str, ...]], ...]  # (e164, accepted typed forms)
    landlines: tuple[tuple[str, tuple[str, ...]], ...]
    venues: tuple[str, ...]
    dial_code: int


def _ascii(text: str) -> str:
    if _unidecode is not None:
        text = _unidecode(text)
    else:  # pragma: no cover
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _unique(values: Iterable[str], limit: int) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        value = value.strip()
        if value and value not in seen:
            seen[value] = None
            if len(seen) >= limit:
                break
    return list(seen)


def _typed_forms(number: phonenumbers.PhoneNumber, region: str) -> tuple[str, ...]:
    """The ways people really type this number; only forms that parse back to it for ``region`` survive."""
    fmt = phonenumbers.PhoneNumberFormat
    national = phonenumbers.format_number(number, fmt.NATIONAL)
    international = phonenumbers.format_number(number, fmt.INTERNATIONAL)
    e164 = phonenumbers.format_number(number, fmt.E164)
    plain = national.replace("(", "").replace(")", "")
    candidates = [
        national,
        international,
        e164,
        plain.replace("-", ".").replace(" ", "."),
        plain.replace("-", " "),
        international.replace("-", " "),
    ]
    if region in ("US", "CA"):
        digits = phonenumbers.national_significant_number(number)
        candidates.append(f"{digits[:3]}-{digits[3:6]}-{digits[6:]}")
        candidates.append(f"1-{digits[:3]}-{digits[3:6]}-{digits[6:]}")
    forms = []
    for text in _unique(candidates, 10):
        if len(text) > 18 or not text.isascii():
            continue
        try:
            parsed = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.format_number(parsed, fmt.E164) == e164:
            forms.append(text)
    return tuple(forms)


SUBSCRIBER_DIGITS = 4  # trailing digits drawn per person: within every plan's subscriber number, never its ranges


def _with_subscriber(text: str, digits: str) -> str:
    """``text`` (a number as typed) with its last ``len(digits)`` digits replaced, separators kept
    (``(201) 555-0123`` + ``9876`` -> ``(201) 555-9876``; ``06 12 34 56 78`` + ``1234`` -> ``06 12 34 12 34``)."""
    chars = list(text)
    i = len(chars)
    for d in reversed(digits):
        i -= 1
        while i >= 0 and not chars[i].isdigit():
            i -= 1
        if i < 0:
            raise ValueError(f"{text!r} has fewer than {len(digits)} digits")
        chars[i] = d
    return "".join(chars)


def _phone_pool(region: str, kind: int, rng: random.Random, size: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    example = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(region)
    if example is None:  # pragma: no cover
        return ()
    nsn = phonenumbers.national_significant_number(example)
    pool: dict[str, tuple[str, ...]] = {}
    for attempt in range(size * 30):
        if len(pool) >= size:
            break
        # mostly vary everything after the first digits (area codes too); fall back to the subscriber part
        tail = len(nsn) - 1 if attempt < size * 15 else min(6, len(nsn) - 2)
        candidate = nsn[:-tail] + "".join(rng.choice("0123456789") for _ in range(tail))
        number = phonenumbers.parse("+" + str(example.country_code) + candidate)
        if not phonenumbers.is_valid_number(number) or phonenumbers.region_code_for_number(number) != region:
            continue
        if kind == phonenumbers.PhoneNumberType.MOBILE and phonenumbers.number_type(number) not in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        ):
            continue
        forms = _typed_forms(number, region)
        if forms:
            pool[phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)] = forms
    return tuple(pool.items())


@cache
def _locale_pool(profile: LocaleProfile) -> _LocalePool:
    rng = random.Random(f"{_POOL_SEED}:{profile.locale}:{profile.country}")
    name_faker = Faker(profile.locale)
    name_faker.seed_instance(rng.getrandbits(32))
    faker = Faker(profile.address_locale) if profile.address_locale else name_faker
    if faker is not name_faker:
        faker.seed_instance(rng.getrandbits(32))
    lang = profile.locale.split("_")[0]

    def names(draw: Callable[[], object], limit: int) -> tuple[tuple[str, str], ...]:
        if profile.locale == "ja_JP":
            pairs = [draw() for _ in range(limit * 2)]
            seen: dict[str, str] = {}
            for pair in pairs:
                assert isinstance(pair, tuple)
                seen.setdefault(str(pair[0]), _ascii(str(pair[2])))  # (kanji, kana, romaji)
            return tuple(list(seen.items())[:limit])
        values = _unique((str(draw()) for _ in range(limit * 3)), limit)
        return tuple((value[:48], _ascii(value) or "guest") for value in values)

    if profile.locale == "ja_JP":
        female = names(name_faker.first_name_female_pair, 120)
        male = names(name_faker.first_name_male_pair, 120)
        last = names(name_faker.last_name_pair, 150)
    else:
        female = names(name_faker.first_name_female, 150)
        male = names(name_faker.first_name_male, 150)
        last_values = _unique((name_faker.last_name() for _ in range(600)), 200) + list(profile.extra_last_names)
        last = tuple((value[:48], _ascii(value) or "guest") for value in last_values)

    if profile.country == "AE":
        addresses: tuple[tuple[str, str, str | None, str], ...] = _AE_ADDRESSES
    else:
        rows = []
        for _ in range(200):
            street = faker.street_address().replace("\n", ", ")
            try:
                state: str | None = faker.administrative_unit()
            except AttributeError:
                state = None
            rows.append((street[:255], faker.city()[:255], state, faker.postcode()))
        addresses = tuple(rows)

    templates = _VENUE_TEMPLATES.get(lang, _VENUE_TEMPLATES["en"])
    venues = tuple(
        rng.choice(templates).format(city=rng.choice(addresses)[1], last=rng.choice(last)[0]) for _ in range(60)
    )
    kinds = phonenumbers.PhoneNumberType
    return _LocalePool(
        profile=profile,
        female=female,
        male=male,
        last=last,
        addresses=addresses,
        mobiles=_phone_pool(profile.country, kinds.MOBILE, rng, 120),
        landlines=_phone_pool(profile.country, kinds.FIXED_LINE, rng, 30) or _phone_pool(
            profile.country, kinds.FIXED_LINE_OR_MOBILE, rng, 30),
        venues=venues,
        dial_code=phonenumbers.country_code_for_region(profile.country),
    )


_JOB_TYPES = (("Wedding", 0.8), ("Elopement", 0.08), ("Engagement Session", 0.12))
_LEAD_SOURCES = ("Instagram", "The Knot", "WeddingWire", "Google", "Referral", "Venue referral", "Pinterest",
                 "Facebook", "Wedding show", "Website contact form")
_MONTH_WEIGHTS = (2, 3, 4, 6, 10, 14, 9, 9, 14, 15, 7, 7)
_WEEKDAY_WEIGHTS = (2, 2, 2, 3, 12, 60, 19)  # Monday .. Sunday: weddings cluster on Saturdays


class SyntheticFactory:
    """Builds people and weddings one at a time from a seeded RNG; the emulators' ``mutate`` uses it too."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.pools = [_locale_pool(profile) for profile in LOCALES]
        self._by_locale = {pool.profile.locale: pool for pool in self.pools}
        self._weights = [profile.weight for profile in LOCALES]
        total = sum(self._weights)
        acc = 0.0
        self._cum_weights = []
        for weight in self._weights:
            acc += weight / total
            self._cum_weights.append(acc)
        self._emails: set[str] = set()
        self._month_cum = _cumulative(_MONTH_WEIGHTS)
        self._weekday_cum = _cumulative(_WEEKDAY_WEIGHTS)

    def _pool(self) -> _LocalePool:
        u = self.rng.random()
        for pool, cum in zip(self.pools, self._cum_weights, strict=True):
            if u <= cum:
                return pool
        return self.pools[-1]

    def _phone(self, entries: tuple[tuple[str, tuple[str, ...]], ...], pool: _LocalePool, ext_rate: float) -> Phone:
        """A number of its own: a validated number of the pool (a real area code and exchange) with new
        subscriber digits, so two people share a number only by chance (as in a real book), not because the
        pool is small. The digits replace the same trailing digits in every typed form."""
        rng = self.rng
        e164, forms = entries[int(rng.random() * len(entries))]
        formatted = forms[int(rng.random() * len(forms))]
        subscriber = f"{int(rng.random() * 10 ** SUBSCRIBER_DIGITS):0{SUBSCRIBER_DIGITS}d}"
        e164, formatted = _with_subscriber(e164, subscriber), _with_subscriber(formatted, subscriber)
        extension = None
        if rng.random() < ext_rate:
            extension = rng.randint(1, 9999)
            sep = (" x", " ext. ", " ext ", " #")[rng.randrange(4)]
            if len(formatted) + len(sep) + len(str(extension)) <= 24:
                formatted = f"{formatted}{sep}{extension}"
            else:
                formatted = f"{formatted} x{extension}"[:24]
                extension = int(formatted.rsplit("x", 1)[1])
        return Phone(e164, formatted, extension, pool.profile.country, pool.dial_code)

    def _email(self, first: str, last: str, pool: _LocalePool) -> str:
        rng = self.rng
        style = int(rng.random() * 6)
        first = first or "guest"
        last = last or "mail"
        if style == 0:
            local = f"{first}.{last}"
        elif style == 1:
            local = f"{first}{last}"
        elif style == 2:
            local = f"{first[0]}{last}"
        elif style == 3:
            local = f"{first}_{last}{rng.randint(1, 99)}"
        elif style == 4:
            local = f"{first}.{last}{rng.randint(1980, 2002)}"
        else:
            local = f"{first}{rng.randint(1, 9999)}"
        domains = pool.profile.email_domains
        email = f"{local[:40]}@{domains[int(rng.random() * len(domains))]}"
        n = len(self._emails)
        while _mailbox(email) in self._emails:  # one mailbox, one person: as the providers hand them out
            email = f"{local[:34]}{n}@{domains[0]}"
            n += 1
        self._emails.add(_mailbox(email))
        return email

    def person(self, index: int, created: int, *, pool: _LocalePool | None = None,
               partner: Person | None = None, modified_until: int = _REF_TS) -> Person:
        """One contact; a ``partner`` shares locale, sometimes surname and home address."""
        rng = self.rng
        pool = pool or (self._by_locale[partner.locale] if partner else self._pool())
        profile = pool.profile
        gender = "female" if rng.random() < 0.5 else "male"
        first, first_ascii = (pool.female if gender == "female" else pool.male)[int(rng.random() * len(
            pool.female if gender == "female" else pool.male))]
        last, last_ascii = pool.last[int(rng.random() * len(pool.last))]
        if partner is not None and rng.random() < 0.35:
            last, last_ascii = partner.last_name, _ascii(partner.last_name)
        elif rng.random() < profile.two_surnames_rate:
            second, second_ascii = pool.last[int(rng.random() * len(pool.last))]
            if second != last:
                last, last_ascii = f"{last} {second}"[:48], last_ascii + second_ascii
        elif rng.random() < profile.double_barrel_rate:
            second, second_ascii = pool.last[int(rng.random() * len(pool.last))]
            if second != last and " " not in last + second:
                last, last_ascii = f"{last}-{second}"[:48], f"{last_ascii}{second_ascii}"
        if partner is not None and rng.random() < 0.7:
            address = partner.address
        else:
            street, city, state, postal = pool.addresses[int(rng.random() * len(pool.addresses))]
            zones = profile.timezones
            address = PostalAddress(street, city, state, postal, profile.country, zones[int(rng.random() * len(zones))])
        cell = self._phone(pool.mobiles, pool, 0.0) if pool.mobiles and rng.random() < 0.93 else None
        home = self._phone(pool.landlines, pool, 0.0) if pool.landlines and rng.random() < 0.18 else None
        if partner is not None and address is partner.address and partner.home_phone is not None:
            home = partner.home_phone  # one household, one landline (a shared number that is two people)
        work = self._phone(pool.landlines, pool, 0.35) if pool.landlines and rng.random() < 0.15 else None
        birthdate = None
        if rng.random() < 0.3:
            birthdate = date(1970, 1, 1) + timedelta(days=int(rng.random() * 365 * 33))
        modified = created + int(rng.random() * max(1, modified_until - created) * rng.random())
        eu = profile.country in {"GB", "IE", "FR", "DE", "IT", "PL", "ES"}
        preference = (None, "email", "cell-phone", "email", None)[int(rng.random() * 5)]
        return Person(
            id=ulid_at(created * 1000 + int(rng.random() * 1000), rng),
            index=index,
            locale=profile.locale,
            country=profile.country,
            first_name=first,
            last_name=last,
            gender=gender,
            email=self._email(first_ascii, last_ascii.replace(" ", ""), pool),
            cell_phone=cell,
            home_phone=home,
            work_phone=work,
            address=address,
            timezone=address.timezone,
            birthdate=birthdate,
            created=created,
            modified=modified,
            hidden=rng.random() < 0.02,
            partner_index=partner.index if partner else None,
            privacy_opt_in=rng.random() < 0.6,
            strict_privacy=eu,
            contact_preference=preference,
        )

    def _event_date(self, inquiry: date) -> date:
        rng = self.rng
        year = inquiry.year + (1 if rng.random() < 0.75 else 0) + (1 if rng.random() < 0.15 else 0)
        month = _pick(self._month_cum, rng.random()) + 1
        day = date(year, month, 1) + timedelta(days=rng.randrange(28))
        target_weekday = _pick(self._weekday_cum, rng.random())
        event = day + timedelta(days=(target_weekday - day.weekday()) % 7)
        return max(event, inquiry + timedelta(days=21))

    def wedding(self, index: int, a: Person, b: Person, created: int | None = None,
                modified_until: int = _REF_TS) -> Wedding:
        """A job for the couple ``a``/``b``; its stage follows its dates relative to ``modified_until``."""
        rng = self.rng
        created = created if created is not None else min(a.created, b.created)
        inquiry = datetime.fromtimestamp(created, UTC).date()
        event = self._event_date(inquiry)
        now = datetime.fromtimestamp(modified_until, UTC).date()
        u = rng.random()
        job_type = "Wedding" if u < 0.8 else ("Elopement" if u < 0.88 else "Engagement Session")
        closed = False
        closed_date = booking = fulfillment = completed = None
        if event > now:
            stage = "booked" if rng.random() < 0.6 else "lead"
        elif (now - event).days < 120:
            stage = "fulfillment" if rng.random() < 0.6 else "completed"
        else:
            stage = "completed" if rng.random() < 0.9 else "fulfillment"
        if stage == "lead":
            closed = rng.random() < 0.25
            if closed:
                closed_date = min(now, inquiry + timedelta(days=rng.randint(3, 90)))
        else:
            booking = min(event - timedelta(days=7), inquiry + timedelta(days=rng.randint(2, 60)))
            if stage in ("fulfillment", "completed"):
                fulfillment = event + timedelta(days=rng.randint(1, 14))
            if stage == "completed":
                completed = event + timedelta(days=rng.randint(20, 110))
        if job_type == "Wedding":
            guests: int | None = int(rng.triangular(30, 320, 120))
        elif job_type == "Elopement":
            guests = rng.randint(2, 20)
        else:
            guests = None
        pool = self._by_locale[a.locale]
        budget = rng.randrange(1500, 12000, 50) * 100
        revenue = 0 if stage == "lead" else int(budget * rng.uniform(0.6, 1.1)) // 100 * 100
        modified = created + int(rng.random() * max(1, modified_until - created))
        return Wedding(
            id=ulid_at(created * 1000 + int(rng.random() * 1000), rng),
            index=index,
            partners=(a.index, b.index),
            job_type=job_type,
            event_date=event,
            stage=stage,
            closed=closed,
            closed_date=closed_date,
            inquiry_date=inquiry,
            booking_date=booking,
            fulfillment_date=fulfillment,
            completed_date=completed,
            guest_count=guests,
            venue=pool.venues[int(rng.random() * len(pool.venues))],
            lead_source=_LEAD_SOURCES[int(rng.random() * len(_LEAD_SOURCES))],
            lead_rating=rng.randint(1, 5) if stage == "lead" else None,
            lead_confidence=("low", "medium", "high")[rng.randrange(3)] if stage == "lead" else None,
            budget=budget,
            total_revenue=revenue,
            web_lead=rng.random() < 0.45,
            timezone=a.timezone,
            name=f"{a.first_name} & {b.first_name}",
            created=created,
            modified=modified,
        )

    def couple(self, index: int, created: int, modified_until: int = _REF_TS) -> tuple[Person, Person]:
        a = self.person(index, created, modified_until=modified_until)
        b = self.person(index + 1, created + self.rng.randrange(600), partner=a, modified_until=modified_until)
        a.partner_index = b.index
        return a, b


def _cumulative(weights: tuple[int, ...]) -> list[float]:
    total = sum(weights)
    out, acc = [], 0.0
    for weight in weights:
        acc += weight / total
        out.append(acc)
    return out


def _pick(cumulative: list[float], u: float) -> int:
    for i, cum in enumerate(cumulative):
        if u <= cum:
            return i
    return len(cumulative) - 1


def _typo(name: str, rng: random.Random) -> str:
    """Two neighbouring letters swapped, as a hurried typist does (names shorter than 5 letters are kept)."""
    if len(name) < 5 or not name.isalpha():
        return name
    i = rng.randrange(1, len(name) - 2)
    return name[:i] + name[i + 1] + name[i] + name[i + 2:]


def _re_entry(factory: SyntheticFactory, original: Person, index: int) -> Person:
    """The same person typed in again later (a second inquiry form, an import): a new record with the same
    e-mail or number written differently, sometimes a typo in the first name or a new (married) last name."""
    rng = factory.rng
    created = min(_REF_TS, original.created + rng.randrange(3_600, 300 * 86_400))
    first, last, email = original.first_name, original.last_name, original.email
    cell = original.cell_phone
    style = rng.random()
    if style < 0.3:
        email = email.upper() if rng.random() < 0.5 else email.capitalize()
    elif style < 0.5:
        first = _typo(first, rng)
    elif style < 0.65 and cell is not None:
        email = factory._email(_ascii(first), _ascii(last).replace(" ", ""), factory._by_locale[original.locale])
    elif style < 0.75:
        pool = factory._by_locale[original.locale]
        last = pool.last[int(rng.random() * len(pool.last))][0]  # married since: same personal e-mail
    if cell is not None and rng.random() < 0.5:
        pool = factory._by_locale[original.locale]
        forms = dict(pool.mobiles).get(cell.e164)
        if forms:  # the number's own pool entry: type it another way
            cell = replace(cell, formatted=forms[int(rng.random() * len(forms))])
    return replace(original, id=ulid_at(created * 1000 + int(rng.random() * 1000), rng), index=index,
                   first_name=first, last_name=last, email=email, cell_phone=cell, home_phone=None,
                   work_phone=None, created=created, modified=created, partner_index=None, hidden=False)


def _mailbox(email: str) -> str:
    """The mailbox an address reaches: at Gmail dots and a +tag do not count (``ana.ruiz`` and ``anaruiz`` are
    one account there), so two synthetic people never get two spellings of one Gmail account."""
    local, _, domain = email.lower().rpartition("@")
    if domain in ("gmail.com", "googlemail.com"):
        return local.split("+", 1)[0].replace(".", "") + "@gmail.com"
    return email.lower()


def generate_dataset(seed: int, contacts: int, jobs: int, duplicates: float = 0.0) -> Dataset:
    """``contacts`` people (mostly couples) and ``jobs`` weddings linking couples; a pure function of ``seed``.

    Job ``k`` belongs to couple ``k`` (people ``2k`` and ``2k+1``); with more jobs than couples, couples book
    again. People beyond the booked couples are enquirers, guests' parents and so on, without jobs.
    ``duplicates`` (0-0.5) is the share of the ``contacts`` that are re-entries of earlier people (the
    vendor typed them in twice); ``Dataset.duplicate_of`` says which.
    """
    if not 0.0 <= duplicates <= 0.5:
        raise ValueError("duplicates must be between 0 and 0.5")
    factory = SyntheticFactory(seed)
    rng = factory.rng
    people: list[Person] = []
    span = _REF_TS - _EARLIEST_TS
    repeats = round(contacts * duplicates)
    originals = contacts - repeats
    while len(people) < originals:
        first_seen = _EARLIEST_TS + int(rng.random() * span)
        if originals - len(people) >= 2 and rng.random() < 0.92:
            people.extend(factory.couple(len(people), first_seen))
        else:
            people.append(factory.person(len(people), first_seen))
    couples = [(p, people[p.partner_index]) for p in people
               if p.partner_index is not None and p.partner_index > p.index]
    weddings: list[Wedding] = []
    for k in range(jobs if couples else 0):
        a, b = couples[k % len(couples)]
        created: int | None = None
        if k >= len(couples):  # a couple booking again (an anniversary session, a vow renewal...)
            created = a.created + rng.randrange(86_400, 400 * 86_400)
            if created > _REF_TS:
                created = _REF_TS - rng.randrange(86_400 * 30)
        weddings.append(factory.wedding(k, a, b, created))
    duplicate_of: dict[int, int] = {}
    if repeats and people:
        dup_rng = random.Random(seed + 31)  # its own stream: the originals are the same with or without
        for source in dup_rng.sample(range(len(people)), min(repeats, len(people))):
            again = _re_entry(factory, people[source], len(people))
            duplicate_of[again.index] = source
            people.append(again)
    return Dataset(people=people, weddings=weddings, duplicate_of=duplicate_of)
