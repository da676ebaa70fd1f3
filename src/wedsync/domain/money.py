"""Money as integer minor units plus an ISO 4217 currency, and largest-remainder allocation (rule 1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from wedsync.errors import InvalidInput

# ISO 4217 minor-unit exponents of the currencies we accept (active codes; funds codes left out).
_EXPONENT_0 = ("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF")
_EXPONENT_3 = ("BHD IQD JOD KWD LYD OMR TND")
_EXPONENT_4 = ("CLF UYW")
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF "
    "CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL "
    "HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP "
    "MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD "
    "SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS "
    "VES WST XCD YER ZAR ZMW ZWL"
)

CURRENCY_EXPONENTS: dict[str, int] = {
    **{c: 0 for c in _EXPONENT_0.split()},
    **{c: 2 for c in _EXPONENT_2.split()},
    **{c: 3 for c in _EXPONENT_3.split()},
    **{c: 4 for c in _EXPONENT_4.split()},
}


class UnknownCurrency(InvalidInput):
    code = "unknown_currency"


class InvalidAmount(InvalidInput):
    code = "invalid_amount"


def normalize_currency(code: str) -> str:
    """The upper-case ISO 4217 code, or ``UnknownCurrency`` (a 422 with code ``unknown_currency``)."""
    norm = (code or "").strip().upper()
    if norm not in CURRENCY_EXPONENTS:
        raise UnknownCurrency(f"unknown or unsupported ISO 4217 currency {code!r}", details={"currency": code})
    return norm


def exponent(currency: str) -> int:
    """Digits after the decimal point of ``currency`` (JPY 0, USD 2, KWD 3)."""
    return CURRENCY_EXPONENTS[normalize_currency(currency)]


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An amount in minor units of one currency. Arithmetic refuses to mix currencies."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise InvalidAmount(f"amounts are integers of minor units, not {type(self.amount).__name__}")
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def of(cls, major: str | int | Decimal, currency: str) -> Money:
        """From a decimal string in major units ("12.34" USD -> 1234); more decimals than the currency
        has are refused rather than rounded."""
        exp = exponent(currency)
        try:
            value = Decimal(str(major))
        except InvalidOperation:
            raise InvalidAmount(f"not a decimal amount: {major!r}") from None
        if not value.is_finite():
            raise InvalidAmount(f"not a finite amount: {major!r}")
        scaled = value.scaleb(exp)
        if scaled != scaled.to_integral_value():
            raise InvalidAmount(f"{major} has more decimals than {currency.upper()} allows ({exp})")
        return cls(int(scaled), currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidInput(f"cannot mix {self.currency} and {other.currency}", code="currency_mismatch")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    @property
    def exponent(self) -> int:
        return CURRENCY_EXPONENTS[self.currency]

    def to_decimal(self) -> Decimal:
        return Decimal(self.amount).scaleb(-self.exponent)

    def format(self) -> str:
        """``"1234.50 USD"``, ``"1500 JPY"``, ``"1.250 KWD"``."""
        return f"{self.to_decimal():.{self.exponent}f} {self.currency}"

    def __str__(self) -> str:
        return self.format()

    def allocate(self, weights: Sequence[int]) -> list[Money]:
        return [Money(a, self.currency) for a in allocate(self.amount, weights)]


#: The largest amount of one payment, refund or release, in minor units (999,999.99 USD): Stripe's limit (an
#: amount has at most 8 digits; specs/stripe), the strictest of the gateways (Square: int64; PayPal: 15 digits
#: before the decimal point; Authorize.net: an unbounded decimal). One limit for every gateway, so that any
#: payment can fail over to any of them, and sums of amounts stay far from the database's 64-bit integers (an
#: amount of 2**63 - 1 made every later balance overflow).
MAX_AMOUNT_MINOR = 99_999_999


def require_positive(amount: int, what: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(f"{what} must be an integer count of minor units")
    if amount <= 0:
        raise InvalidAmount(f"{what} must be greater than zero", details={what: amount})
    if amount > MAX_AMOUNT_MINOR:
        raise InvalidAmount(f"{what} must be at most {MAX_AMOUNT_MINOR} minor units", code="amount_too_large",
                            details={what: amount, "max": MAX_AMOUNT_MINOR})
    return amount


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` minor units in proportion to non-negative integer ``weights`` with the
    largest-remainder method: every part is the floor of its exact share, and the units left over go one
    each to the largest fractional remainders (ties to the earlier part). The parts always sum to
    ``total``; a zero weight always gets zero; a negative total is allocated as the mirror of the
    positive one."""
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    denom = sum(weights)
    if denom == 0:
        if total == 0:
            return [0 for _ in weights]
        raise ValueError("cannot allocate a non-zero total over zero weights")
    if total < 0:
        return [-p for p in allocate(-total, weights)]
    floors = [total * w // denom for w in weights]
    remainders = [total * w % denom for w in weights]
    left = total - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        floors[i] += 1
    return floors
