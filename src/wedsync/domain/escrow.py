"""Escrow and holdback terms: how much of the vendor's part is held, and when it may be released."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from wedsync.domain.money import allocate
from wedsync.errors import InvalidInput

KINDS = ("date", "milestone", "manual")
#: The latest a date release may fall after the wedding (ten years).
MAX_DAYS_AFTER = 3650


class InvalidEscrow(InvalidInput):
    code = "invalid_escrow"


@dataclass(frozen=True, slots=True)
class EscrowTerms:
    """Hold ``holdback_bps`` of the vendor's part until: a date (``release_after``, e.g. days after the
    wedding), a named milestone is approved, or a manual release."""

    kind: str
    holdback_bps: int = 10_000
    release_after: datetime | None = None
    milestone: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> EscrowTerms:
        """``{holdbackBps?, release: {kind: "date", after: ISO datetime} | {kind: "date", weddingDate:
        "YYYY-MM-DD", daysAfter: N} | {kind: "milestone", milestone: "..."} | {kind: "manual"}}``."""
        if not isinstance(raw, Mapping):
            raise InvalidEscrow("escrow must be an object")
        bps = raw.get("holdbackBps", 10_000)
        if isinstance(bps, bool) or not isinstance(bps, int) or not 1 <= bps <= 10_000:
            raise InvalidEscrow("holdbackBps is an integer from 1 to 10000", details={"holdbackBps": bps})
        rel = raw.get("release")
        if not isinstance(rel, Mapping) or rel.get("kind") not in KINDS:
            raise InvalidEscrow(f"escrow.release.kind is one of {list(KINDS)}")
        kind = str(rel["kind"])
        if kind == "date":
            try:
                if rel.get("after"):
                    after = datetime.fromisoformat(str(rel["after"]))
                    if after.tzinfo is None:
                        raise InvalidEscrow("escrow.release.after needs a UTC offset")
                else:
                    wedding = date.fromisoformat(str(rel["weddingDate"]))
                    days = int(rel.get("daysAfter", 1))
                    if not 0 <= days <= MAX_DAYS_AFTER:  # timedelta(days=10**10) raised OverflowError: a 500
                        raise InvalidEscrow(f"daysAfter is an integer from 0 to {MAX_DAYS_AFTER}")
                    after = datetime.combine(wedding + timedelta(days=days), time(0, 0), tzinfo=UTC)
            except (KeyError, ValueError, TypeError, OverflowError):  # a date past year 9999 overflows
                raise InvalidEscrow("a date release needs 'after' (ISO datetime) or 'weddingDate' (YYYY-MM-DD)"
                                    ) from None
            return cls(kind, bps, release_after=after.astimezone(UTC))
        if kind == "milestone":
            name = rel.get("milestone")
            if not isinstance(name, str) or not name.strip():
                raise InvalidEscrow("a milestone release names the milestone")
            return cls(kind, bps, milestone=name.strip())
        return cls(kind, bps)

    def held_part(self, vendor_part: int) -> int:
        """The held amount of the vendor's part (largest-remainder: held + paid = vendor part)."""
        return allocate(vendor_part, [self.holdback_bps, 10_000 - self.holdback_bps])[0]

    def releasable(self, now: datetime, approved_milestones: Iterable[str] = ()) -> bool:
        """Whether the automatic condition is met (a manual hold is only released by a person)."""
        if self.kind == "date":
            return self.release_after is not None and now >= self.release_after
        if self.kind == "milestone":
            return self.milestone in set(approved_milestones)
        return False

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "holdbackBps": self.holdback_bps,
                "releaseAfter": self.release_after.isoformat() if self.release_after else None,
                "milestone": self.milestone}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EscrowTerms:
        after = d.get("releaseAfter")
        return cls(str(d["kind"]), int(d.get("holdbackBps", 10_000)),
                   release_after=datetime.fromisoformat(after) if after else None, milestone=d.get("milestone"))
