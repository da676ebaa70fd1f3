"""Gateway routing: which of a vendor's connected gateways to try for a payment, in what order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wedsync.domain.money import normalize_currency
from wedsync.errors import InvalidInput

METHODS = ("card", "ach", "wallet", "paypal", "bank_transfer")


class InvalidGatewayConfig(InvalidInput):
    code = "invalid_gateway_config"


class NoGatewayAvailable(InvalidInput):
    code = "no_active_gateway"


@dataclass(frozen=True, slots=True)
class GatewayOption:
    """One connected gateway as the vendor configured it: what it accepts and what it costs."""

    connection_id: str
    provider: str = ""
    methods: frozenset[str] | None = None  # None: any method
    currencies: frozenset[str] | None = None  # None: any currency
    cost_bps: int = 0
    cost_fixed_minor: int = 0
    max_amount_minor: int | None = None

    def accepts(self, amount: int, currency: str, method: str) -> bool:
        return ((self.methods is None or method in self.methods)
                and (self.currencies is None or currency in self.currencies)
                and (self.max_amount_minor is None or amount <= self.max_amount_minor))

    def cost(self, amount: int) -> int:
        return (amount * self.cost_bps + 9_999) // 10_000 + self.cost_fixed_minor


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """When a payment matches (currency, method, amount range), try ``use`` first (only ``use`` when
    ``exclusive``); ``prefer="cost"`` orders the candidates by their estimated fee; ``failover_on_decline``
    lets a declined card be tried on the next gateway (off by default: a decline is the card's answer)."""

    currencies: frozenset[str] | None = None
    methods: frozenset[str] | None = None
    min_amount_minor: int | None = None
    max_amount_minor: int | None = None
    use: tuple[str, ...] = ()
    exclusive: bool = False
    prefer: str = "order"
    failover_on_decline: bool = False

    def matches(self, amount: int, currency: str, method: str) -> bool:
        return ((self.currencies is None or currency in self.currencies)
                and (self.methods is None or method in self.methods)
                and (self.min_amount_minor is None or amount >= self.min_amount_minor)
                and (self.max_amount_minor is None or amount <= self.max_amount_minor))


@dataclass(frozen=True)
class RoutingConfig:
    primary: str
    fallbacks: tuple[str, ...]
    options: Mapping[str, GatewayOption]
    rules: tuple[RoutingRule, ...] = ()

    @property
    def connection_ids(self) -> tuple[str, ...]:
        return (self.primary, *self.fallbacks)


@dataclass(frozen=True)
class Route:
    candidates: tuple[str, ...]
    failover_on_decline: bool = False
    rule: int | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)


def _int(raw: Mapping[str, Any], key: str, *, minimum: int = 0) -> int | None:
    v = raw.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise InvalidGatewayConfig(f"{key} must be an integer >= {minimum}", details={key: v})
    return v


def _set(raw: Mapping[str, Any], key: str, *, currency: bool = False) -> frozenset[str] | None:
    v = raw.get(key)
    if v is None:
        return None
    if isinstance(v, str) or not isinstance(v, Sequence):
        raise InvalidGatewayConfig(f"{key} must be a list", details={key: v})
    if currency:
        return frozenset(normalize_currency(str(c)) for c in v)
    bad = [m for m in v if m not in METHODS]
    if bad:
        raise InvalidGatewayConfig(f"unknown payment methods {bad}; known: {list(METHODS)}")
    return frozenset(str(m) for m in v)


def parse_gateway(raw: Any) -> GatewayOption:
    """A gateway entry: a connection id, or ``{connectionId, supportedMethods, supportedCurrencies,
    costBps, costFixedMinor, maxAmountMinor}``."""
    if isinstance(raw, str):
        return GatewayOption(connection_id=raw)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("connectionId"), str):
        raise InvalidGatewayConfig("a gateway is a connection id or an object with connectionId")
    unknown = set(raw) - {"connectionId", "provider", "supportedMethods", "supportedCurrencies", "costBps",
                          "costFixedMinor", "maxAmountMinor"}
    if unknown:
        raise InvalidGatewayConfig(f"unknown gateway fields {sorted(unknown)}")
    cost_bps = _int(raw, "costBps") or 0
    if cost_bps > 2_000:
        raise InvalidGatewayConfig("costBps above 20% is not a sane gateway fee", details={"costBps": cost_bps})
    return GatewayOption(connection_id=raw["connectionId"], provider=str(raw.get("provider") or ""),
                         methods=_set(raw, "supportedMethods"),
                         currencies=_set(raw, "supportedCurrencies", currency=True),
                         cost_bps=cost_bps, cost_fixed_minor=_int(raw, "costFixedMinor") or 0,
                         max_amount_minor=_int(raw, "maxAmountMinor", minimum=1))


def parse_rule(raw: Any, known: set[str]) -> RoutingRule:
    if not isinstance(raw, Mapping):
        raise InvalidGatewayConfig("a routing rule is an object")
    unknown = set(raw) - {"when", "use", "exclusive", "prefer", "failoverOnDecline"}
    if unknown:
        raise InvalidGatewayConfig(f"unknown routing rule fields {sorted(unknown)}")
    when = raw.get("when") or {}
    if not isinstance(when, Mapping) or set(when) - {"currencies", "methods", "minAmountMinor", "maxAmountMinor"}:
        raise InvalidGatewayConfig("rule.when takes currencies, methods, minAmountMinor, maxAmountMinor")
    use = raw.get("use") or []
    if isinstance(use, str) or not isinstance(use, Sequence) or any(u not in known for u in use):
        raise InvalidGatewayConfig("rule.use lists connection ids among primary and fallbacks",
                                   details={"use": use})
    prefer = raw.get("prefer", "order")
    if prefer not in ("order", "cost"):
        raise InvalidGatewayConfig("rule.prefer is 'order' or 'cost'")
    return RoutingRule(currencies=_set(when, "currencies", currency=True), methods=_set(when, "methods"),
                       min_amount_minor=_int(when, "minAmountMinor"), max_amount_minor=_int(when, "maxAmountMinor"),
                       use=tuple(use), exclusive=bool(raw.get("exclusive", False)), prefer=prefer,
                       failover_on_decline=bool(raw.get("failoverOnDecline", False)))


def parse_config(raw: Mapping[str, Any]) -> RoutingConfig:
    """``{primary, fallbacks, routingRules}`` of the setup payload (fee structure and compliance are
    parsed by their own modules)."""
    if not isinstance(raw, Mapping) or raw.get("primary") is None:
        raise InvalidGatewayConfig("gatewayConfig.primary is required")
    fallbacks_raw = raw.get("fallbacks") or []
    if not isinstance(fallbacks_raw, Sequence) or isinstance(fallbacks_raw, str):
        raise InvalidGatewayConfig("gatewayConfig.fallbacks must be a list")
    options = [parse_gateway(raw["primary"]), *(parse_gateway(f) for f in fallbacks_raw)]
    ids = [o.connection_id for o in options]
    if len(set(ids)) != len(ids):
        raise InvalidGatewayConfig("a gateway appears twice in primary/fallbacks", details={"gateways": ids})
    rules_raw = raw.get("routingRules") or []
    if not isinstance(rules_raw, Sequence) or isinstance(rules_raw, str):
        raise InvalidGatewayConfig("gatewayConfig.routingRules must be a list")
    rules = tuple(parse_rule(r, set(ids)) for r in rules_raw)
    return RoutingConfig(primary=ids[0], fallbacks=tuple(ids[1:]), options={o.connection_id: o for o in options},
                         rules=rules)


def route(config: RoutingConfig, amount: int, currency: str, method: str, *,
          active: set[str] | None = None) -> Route:
    """The ordered gateways to try. The first matching rule decides the preference (its ``use`` list
    first, then the others in configured order unless exclusive; by estimated cost when it says so);
    gateways that are not active or do not accept the currency, method or amount are left out."""
    order = list(config.connection_ids)
    rule_index: int | None = None
    rule: RoutingRule | None = None
    for i, r in enumerate(config.rules):
        if r.matches(amount, currency, method):
            rule_index, rule = i, r
            break
    reasons: list[str] = []
    if rule is not None:
        preferred = list(rule.use)
        rest = [] if rule.exclusive else [c for c in order if c not in preferred]
        order = preferred + rest
        if rule.prefer == "cost":
            order.sort(key=lambda c: config.options[c].cost(amount))
    candidates = []
    for cid in order:
        opt = config.options[cid]
        if active is not None and cid not in active:
            reasons.append(f"{cid}: not an active connection")
        elif not opt.accepts(amount, currency, method):
            reasons.append(f"{cid}: does not accept {method} in {currency} for this amount")
        else:
            candidates.append(cid)
    if not candidates:
        raise NoGatewayAvailable("no active gateway of this vendor accepts this payment",
                                 details={"currency": currency, "method": method, "reasons": reasons})
    return Route(candidates=tuple(candidates), failover_on_decline=bool(rule and rule.failover_on_decline),
                 rule=rule_index, reasons=tuple(reasons))
