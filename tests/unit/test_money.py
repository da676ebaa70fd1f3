"""Money: ISO 4217 exponents, parsing without rounding, and largest-remainder allocation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wedsync.domain.money import Money, UnknownCurrency, allocate, exponent, normalize_currency, require_positive
from wedsync.errors import InvalidInput


def test_exponents_per_currency() -> None:
    assert (exponent("JPY"), exponent("usd"), exponent("KWD"), exponent("CLF")) == (0, 2, 3, 4)
    assert Money.of("12.34", "USD") == Money(1234, "USD")
    assert Money.of("1500", "JPY").format() == "1500 JPY"
    assert Money.of("1.250", "KWD").amount == 1250
    assert Money(105, "EUR").format() == "1.05 EUR"


def test_unknown_currency_and_bad_amounts_are_4xx_with_codes() -> None:
    with pytest.raises(UnknownCurrency) as exc:
        normalize_currency("XYZ")
    assert exc.value.code == "unknown_currency" and exc.value.status == 422
    with pytest.raises(InvalidInput) as bad:
        Money.of("12.345", "USD")  # more decimals than USD has: refused, never rounded
    assert bad.value.code == "invalid_amount"
    with pytest.raises(InvalidInput):
        Money.of("1.5", "JPY")
    with pytest.raises(InvalidInput):
        Money(1.5, "USD")  # type: ignore[arg-type]
    for bad_amount in (0, -1):
        with pytest.raises(InvalidInput) as e:
            require_positive(bad_amount)
        assert e.value.code == "invalid_amount"
    with pytest.raises(InvalidInput) as mix:
        Money(1, "USD") + Money(1, "EUR")
    assert mix.value.code == "currency_mismatch"


def test_allocate_examples() -> None:
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(5, [0, 1, 1]) == [0, 3, 2]
    assert allocate(-100, [1, 1, 1]) == [-34, -33, -33]
    assert allocate(0, [0, 0]) == [0, 0]
    with pytest.raises(ValueError):
        allocate(1, [0, 0])


@given(st.integers(min_value=-10**12, max_value=10**12),
       st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=8).filter(lambda w: sum(w) > 0))
def test_allocate_parts_sum_to_the_whole_and_stay_within_one_unit(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    denom = sum(weights)
    for part, w in zip(parts, weights, strict=True):
        exact = total * w / denom
        assert abs(part - exact) < 1 + 1e-6
        if w == 0:
            assert part == 0
