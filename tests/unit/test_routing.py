"""Routing: rules by currency, method and amount; cost preference; inactive gateways left out."""

from __future__ import annotations

import pytest

from wedsync.domain.routing import InvalidGatewayConfig, NoGatewayAvailable, parse_config, route
from wedsync.errors import InvalidInput

CFG = {
    "primary": {"connectionId": "stripe1", "costBps": 290, "costFixedMinor": 30},
    "fallbacks": [
        {"connectionId": "square1", "costBps": 260, "costFixedMinor": 10, "supportedCurrencies": ["USD", "CAD"]},
        {"connectionId": "paypal1", "costBps": 349, "costFixedMinor": 49, "supportedMethods": ["paypal", "card"]},
        {"connectionId": "authnet1", "costBps": 290, "supportedMethods": ["card", "ach"], "maxAmountMinor": 500_000},
    ],
    "routingRules": [
        {"when": {"methods": ["paypal"]}, "use": ["paypal1"], "exclusive": True},
        {"when": {"currencies": ["USD"], "minAmountMinor": 100_000}, "prefer": "cost", "failoverOnDecline": True},
        {"when": {"currencies": ["EUR"]}, "use": ["authnet1", "stripe1"]},
    ],
}


def test_default_order_is_primary_then_fallbacks() -> None:
    r = route(parse_config(CFG), 5_000, "USD", "card")
    assert r.candidates == ("stripe1", "square1", "paypal1", "authnet1") and not r.failover_on_decline


def test_rules_pick_and_filter() -> None:
    cfg = parse_config(CFG)
    assert route(cfg, 5_000, "USD", "paypal").candidates == ("paypal1",)
    big = route(cfg, 200_000, "USD", "card")
    assert big.candidates[0] == "square1" and big.failover_on_decline and big.rule == 1
    eur = route(cfg, 5_000, "EUR", "card")
    assert eur.candidates == ("authnet1", "stripe1", "paypal1")  # square does not take EUR
    assert route(cfg, 600_000, "EUR", "card").candidates == ("stripe1", "paypal1")  # over authnet's maximum
    assert route(cfg, 5_000, "USD", "card", active={"paypal1"}).candidates == ("paypal1",)
    with pytest.raises(NoGatewayAvailable) as e:
        route(cfg, 5_000, "USD", "card", active=set())
    assert e.value.code == "no_active_gateway"


@pytest.mark.parametrize("bad", [
    {},
    {"primary": "a", "fallbacks": ["a"]},
    {"primary": "a", "routingRules": [{"use": ["zzz"]}]},
    {"primary": {"connectionId": "a", "costBps": 9000}},
    {"primary": {"connectionId": "a", "supportedMethods": ["cash"]}},
    {"primary": {"connectionId": "a", "supportedCurrencies": ["ABC"]}},
])
def test_bad_config_is_refused(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInput) as e:
        parse_config(bad)
    assert e.value.status == 422 and e.value.code in (InvalidGatewayConfig.code, "unknown_currency")
