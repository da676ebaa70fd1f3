"""Marketplace splits between vendor, platform and affiliate, in minor units, with largest-remainder rounding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from wedsync.domain.money import allocate, normalize_currency, require_positive
from wedsync.errors import InvalidInput

BPS = 10_000
MAX_TAKE_BPS = 5_000  # platform + affiliate together may take at most half of a payment ("fees sane")


class SplitMismatch(InvalidInput):
    code = "split_mismatch"


class InvalidFeeStructure(InvalidInput):
    code = "invalid_fee_structure"


@dataclass(frozen=True, slots=True)
class Split:
    """Who gets what of one amount; the three parts always sum to ``total``."""

    vendor: int
    platform: int
    affiliate: int

    @property
    def total(self) -> int:
        return self.vendor + self.platform + self.affiliate

    @property
    def application_fee(self) -> int:
        """What the platform keeps at the gateway when the vendor's part is paid natively."""
        return self.platform + self.affiliate

    def parts(self) -> tuple[int, int, int]:
        return (self.vendor, self.platform, self.affiliate)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Split:
        return cls(int(d["vendor"]), int(d["platform"]), int(d.get("affiliate", 0)))

    def minus(self, other: Split) -> Split:
        return Split(self.vendor - other.vendor, self.platform - other.platform, self.affiliate - other.affiliate)

    def plus(self, other: Split) -> Split:
        return Split(self.vendor + other.vendor, self.platform + other.platform, self.affiliate + other.affiliate)


ZERO = Split(0, 0, 0)


@dataclass(frozen=True, slots=True)
class FeeStructure:
    """The platform's take: basis points of each payment for the platform and for a referring affiliate,
    plus an optional fixed platform fee per currency (minor units)."""

    platform_bps: int = 0
    affiliate_bps: int = 0
    fixed_minor: Mapping[str, int] | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> FeeStructure:
        """From the setup payload's ``feeStructure``: ``{platformFeeBps, affiliateFeeBps, fixedFeeMinor}``."""
        raw = dict(raw or {})
        unknown = set(raw) - {"platformFeeBps", "affiliateFeeBps", "fixedFeeMinor"}
        if unknown:
            raise InvalidFeeStructure(f"unknown feeStructure fields {sorted(unknown)}")
        try:
            p = raw.get("platformFeeBps", 0)
            a = raw.get("affiliateFeeBps", 0)
            fixed = {normalize_currency(k): v for k, v in dict(raw.get("fixedFeeMinor") or {}).items()}
        except (TypeError, ValueError, AttributeError):
            raise InvalidFeeStructure("feeStructure must hold integers") from None
        for name, v in (("platformFeeBps", p), ("affiliateFeeBps", a), *fixed.items()):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidFeeStructure(f"{name} must be a non-negative integer", details={name: v})
        if p + a > MAX_TAKE_BPS:
            raise InvalidFeeStructure(f"platform and affiliate fees together ({p + a} bps) exceed "
                                      f"{MAX_TAKE_BPS} bps", details={"platformFeeBps": p, "affiliateFeeBps": a})
        return cls(platform_bps=p, affiliate_bps=a, fixed_minor=fixed or None)

    def as_dict(self) -> dict[str, Any]:
        return {"platformFeeBps": self.platform_bps, "affiliateFeeBps": self.affiliate_bps,
                "fixedFeeMinor": dict(self.fixed_minor or {})}


def compute_split(amount: int, currency: str, fees: FeeStructure, *, has_affiliate: bool) -> Split:
    """The split of ``amount``: shares by basis points with largest-remainder rounding, then the fixed
    platform fee taken from the vendor's part (never below zero)."""
    require_positive(amount)
    a_bps = fees.affiliate_bps if has_affiliate else 0
    vendor, platform, affiliate = allocate(amount, [BPS - fees.platform_bps - a_bps, fees.platform_bps, a_bps])
    fixed = min(vendor, (fees.fixed_minor or {}).get(normalize_currency(currency), 0))
    return Split(vendor - fixed, platform + fixed, affiliate)


def explicit_split(amount: int, parts: Mapping[str, Any], *, has_affiliate: bool) -> Split:
    """A split the caller gave in minor units: non-negative integers that must sum to ``amount``."""
    unknown = set(parts) - {"vendor", "platform", "affiliate"}
    if unknown:
        raise SplitMismatch(f"unknown split parts {sorted(unknown)}")
    values = {}
    for k in ("vendor", "platform", "affiliate"):
        v = parts.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise SplitMismatch(f"split part {k} must be a non-negative integer of minor units", details={k: v})
        values[k] = v
    split = Split(values["vendor"], values["platform"], values["affiliate"])
    if split.total != amount:
        raise SplitMismatch(f"split parts sum to {split.total}, not to the amount {amount}",
                            details={"amount": amount, "parts": split.as_dict()})
    if split.affiliate and not has_affiliate:
        raise SplitMismatch("an affiliate part needs an affiliateId")
    return split


def share_of(amount: int, remaining: Split) -> Split:
    """The part of each party in ``amount`` taken from what is left of a payment (a refund, a dispute):
    proportional to the remaining parts, largest-remainder rounded. No part ever goes beyond what remains
    (so repeated partial refunds never drive a party negative) and the parts sum to ``amount``."""
    if amount < 0 or amount > remaining.total:
        raise InvalidInput(f"{amount} exceeds what remains of the payment ({remaining.total})",
                           code="amount_exceeds_remaining")
    if remaining.total == 0:
        return ZERO
    v, p, a = allocate(amount, [max(0, x) for x in remaining.parts()])
    return Split(v, p, a)
