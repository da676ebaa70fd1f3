"""Three-way, field-level merge of a source's change into the unified record, under per-field policies. No I/O.

``base`` is what the source said at the last sync (None when the source record is new to this client, e.g.
an identity merge), ``local`` is the unified value, ``incoming`` the source's value now. A field the source
did not change is left alone; a field only the source changed fast-forwards; a field both sides changed
(or, without a base, that differs) is a *conflict*, settled by the field's policy for that connection:

* ``source_of_truth``: the named provider wins (either side); a third provider goes to the manual queue;
* ``newest_wins``: the later modification wins, unless the two are within ``skew_seconds`` of each
  other (clocks cannot tell them apart then) or a time is unknown: manual queue;
* ``manual``: always the manual queue; the unified value stays until someone resolves it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

POLICIES = ("source_of_truth", "newest_wins", "manual")
DEFAULT_SKEW_SECONDS = 120
_MISSING = object()


@dataclass(frozen=True, slots=True)
class FieldPolicy:
    kind: str = "newest_wins"
    source: str | None = None  # source_of_truth: the provider slug (or connection id) that wins
    skew_seconds: int = DEFAULT_SKEW_SECONDS

    def __post_init__(self) -> None:
        if self.kind not in POLICIES:
            raise ValueError(f"policy must be one of {list(POLICIES)}")
        if self.kind == "source_of_truth" and not self.source:
            raise ValueError("a source_of_truth policy names its source")
        if self.skew_seconds < 0:
            raise ValueError("skew_seconds must be >= 0")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "skew_seconds": self.skew_seconds}


@dataclass(frozen=True, slots=True)
class Side:
    """Who holds a value and since when (the unified side: the source that last set that field)."""

    source: str | None = None  # provider slug
    connection_id: str | None = None
    at: datetime | None = None


@dataclass(slots=True)
class FieldConflict:
    field: str
    base: Any
    local: Any
    incoming: Any
    policy: str
    outcome: str  # "incoming" | "local" | "open"
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "base": self.base, "local": self.local, "incoming": self.incoming,
                "policy": self.policy, "outcome": self.outcome, "reason": self.reason}


@dataclass(slots=True)
class MergeResult:
    changes: dict[str, Any] = field(default_factory=dict)  # field -> new unified value
    conflicts: list[FieldConflict] = field(default_factory=list)

    @property
    def open_conflicts(self) -> list[FieldConflict]:
        return [c for c in self.conflicts if c.outcome == "open"]


def settle(policy: FieldPolicy, incoming: Side, local: Side) -> tuple[str, str]:
    """(outcome, reason) of a conflict under ``policy``: "incoming", "local" or "open"."""
    if policy.kind == "source_of_truth":
        names = {policy.source}
        if incoming.source in names or incoming.connection_id in names:
            return "incoming", f"{policy.source} is the source of truth"
        if local.source in names or local.connection_id in names:
            return "local", f"{policy.source} is the source of truth"
        return "open", f"neither side is the source of truth ({policy.source})"
    if policy.kind == "newest_wins":
        if incoming.at is None or local.at is None:
            return "open", "a modification time is unknown"
        delta = (incoming.at - local.at).total_seconds()
        if abs(delta) <= policy.skew_seconds:
            return "open", f"modified {abs(delta):.0f}s apart, within the {policy.skew_seconds}s clock-skew allowance"
        return ("incoming", "incoming is newer") if delta > 0 else ("local", "unified value is newer")
    return "open", "manual policy"


def three_way(base: Mapping[str, Any] | None, local: Mapping[str, Any], incoming: Mapping[str, Any], *,
              fields: tuple[str, ...] | list[str], policy_for: Callable[[str], FieldPolicy],
              incoming_side: Side, local_side: Callable[[str], Side]) -> MergeResult:
    """Merge ``incoming`` into ``local`` field by field; see the module docstring."""
    out = MergeResult()
    for name in fields:
        inc = incoming.get(name)
        loc = local.get(name)
        if inc == loc:
            continue
        b = base.get(name, _MISSING) if base is not None else _MISSING
        if b is not _MISSING and inc == b:
            continue  # the source did not change it: the unified value stands
        if inc is None and b is _MISSING:
            continue  # a source that lacks a field says nothing about it
        if loc is None or (b is not _MISSING and loc == b):
            out.changes[name] = inc  # only the source changed it (or the unified record had nothing)
            continue
        policy = policy_for(name)
        outcome, reason = settle(policy, incoming_side, local_side(name))
        out.conflicts.append(FieldConflict(name, None if b is _MISSING else b, loc, inc, policy.kind, outcome,
                                           reason))
        if outcome == "incoming":
            out.changes[name] = inc
    return out


def flatten(values: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """A record's mergeable fields, custom fields flattened as ``custom.<name>``."""
    out = {f: values.get(f) for f in fields}
    for k, v in (values.get("custom_fields") or {}).items():
        out[f"custom.{k}"] = v
    return out
