"""Splits between vendor, platform and affiliate: fee structures, explicit splits, proportional shares."""

from __future__ import annotations

import pytest

from wedsync.domain.escrow import EscrowTerms, InvalidEscrow
from wedsync.domain.splits import (
    FeeStructure,
    InvalidFeeStructure,
    Split,
    SplitMismatch,
    compute_split,
    explicit_split,
    share_of,
)
from wedsync.errors import InvalidInput


def test_fee_structure_split_with_affiliate_and_fixed_fee() -> None:
    fees = FeeStructure.parse({"platformFeeBps": 500, "affiliateFeeBps": 250, "fixedFeeMinor": {"usd": 30}})
    s = compute_split(10_001, "USD", fees, has_affiliate=True)
    assert s.total == 10_001
    assert (s.vendor, s.platform, s.affiliate) == (9_251 - 30, 500 + 30, 250)
    no_aff = compute_split(10_001, "USD", fees, has_affiliate=False)
    assert no_aff.affiliate == 0 and no_aff.total == 10_001
    jpy = compute_split(999, "JPY", FeeStructure.parse({"platformFeeBps": 1000}), has_affiliate=False)
    assert jpy == Split(899, 100, 0)


@pytest.mark.parametrize("raw", [{"platformFeeBps": -1}, {"platformFeeBps": 4000, "affiliateFeeBps": 2000},
                                 {"platformFeeBps": 1.5}, {"bogus": 1}, {"fixedFeeMinor": {"XXX": 1}}])
def test_insane_fees_are_refused(raw: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInput):
        FeeStructure.parse(raw)
    assert issubclass(InvalidFeeStructure, InvalidInput)


def test_explicit_split_must_sum() -> None:
    assert explicit_split(1000, {"vendor": 900, "platform": 100}, has_affiliate=False) == Split(900, 100, 0)
    with pytest.raises(SplitMismatch) as e:
        explicit_split(1000, {"vendor": 900, "platform": 99}, has_affiliate=False)
    assert e.value.code == "split_mismatch"
    with pytest.raises(SplitMismatch):
        explicit_split(1000, {"vendor": 1100, "platform": -100}, has_affiliate=False)
    with pytest.raises(SplitMismatch):
        explicit_split(1000, {"vendor": 900, "affiliate": 100}, has_affiliate=False)


def test_share_of_remaining_never_exceeds_a_part() -> None:
    parts = Split(8_999, 700, 301)
    left = parts
    total = 0
    for amount in (1, 3, 333, 1_000, 7_000):
        sh = share_of(amount, left)
        assert sh.total == amount
        assert all(0 <= a <= b for a, b in zip(sh.parts(), left.parts(), strict=True))
        left = left.minus(sh)
        total += amount
    assert share_of(left.total, left) == left
    with pytest.raises(InvalidInput):
        share_of(left.total + 1, left)


def test_escrow_terms() -> None:
    t = EscrowTerms.parse({"holdbackBps": 3000, "release": {"kind": "date", "weddingDate": "2027-06-12",
                                                            "daysAfter": 2}})
    assert t.release_after is not None and t.release_after.isoformat() == "2027-06-14T00:00:00+00:00"
    assert t.held_part(10_001) == 3000
    assert not t.releasable(t.release_after.replace(year=2027, month=6, day=13))
    assert t.releasable(t.release_after)
    m = EscrowTerms.parse({"release": {"kind": "milestone", "milestone": "tasting"}})
    assert m.held_part(500) == 500 and m.releasable(t.release_after, ["tasting"])
    assert EscrowTerms.from_dict(t.as_dict()) == t
    for bad in ({"release": {"kind": "date", "after": "2027-01-01T00:00:00"}}, {"release": {"kind": "soon"}},
                {"holdbackBps": 0, "release": {"kind": "manual"}}):
        with pytest.raises(InvalidEscrow):
            EscrowTerms.parse(bad)
