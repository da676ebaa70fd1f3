"""Three-way field merge: fast-forwards, untouched fields, and conflicts under each policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wedsync.domain.merge import FieldPolicy, Side, flatten, settle, three_way

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
FIELDS = ("email", "phone", "last_name")


def run(base, local, incoming, policy=FieldPolicy(), inc_at=T0, local_at=T0):  # type: ignore[no-untyped-def]
    return three_way(base, local, incoming, fields=FIELDS, policy_for=lambda _f: policy,
                     incoming_side=Side("honeybook", "c-hb", inc_at),
                     local_side=lambda _f: Side("vsco", "c-v", local_at))


def test_fast_forward_and_untouched_fields() -> None:
    base = {"email": "a@x.com", "phone": "+1", "last_name": "Ruiz"}
    local = {"email": "a@x.com", "phone": "+2", "last_name": "Ruiz"}  # phone changed on our side only
    incoming = {"email": "b@x.com", "phone": "+1", "last_name": "Ruiz"}  # email changed at the source only
    r = run(base, local, incoming)
    assert r.changes == {"email": "b@x.com"} and r.conflicts == []


def test_both_changed_newest_wins_beyond_skew() -> None:
    base = {"email": "a@x.com"}
    r = run(base, {"email": "local@x.com"}, {"email": "src@x.com"}, inc_at=T0 + timedelta(hours=1))
    assert r.changes == {"email": "src@x.com"} and r.conflicts[0].outcome == "incoming"
    r = run(base, {"email": "local@x.com"}, {"email": "src@x.com"}, inc_at=T0 - timedelta(hours=1))
    assert r.changes == {} and r.conflicts[0].outcome == "local"


def test_within_clock_skew_goes_to_the_manual_queue() -> None:
    r = run({"email": "a"}, {"email": "b"}, {"email": "c"}, policy=FieldPolicy(skew_seconds=300),
            inc_at=T0 + timedelta(seconds=200))
    assert r.changes == {} and r.open_conflicts and "skew" in r.open_conflicts[0].reason


def test_source_of_truth_either_side_and_a_third_party() -> None:
    r = run({"phone": "1"}, {"phone": "2"}, {"phone": "3"}, policy=FieldPolicy("source_of_truth", "vsco"))
    assert r.changes == {} and r.conflicts[0].outcome == "local"
    r = run({"phone": "1"}, {"phone": "2"}, {"phone": "3"}, policy=FieldPolicy("source_of_truth", "honeybook"))
    assert r.changes == {"phone": "3"}
    outcome, _ = settle(FieldPolicy("source_of_truth", "iris-works"), Side("honeybook"), Side("vsco"))
    assert outcome == "open"


def test_manual_policy_and_unknown_times() -> None:
    assert run({"email": "a"}, {"email": "b"}, {"email": "c"}, policy=FieldPolicy("manual")).open_conflicts
    assert run({"email": "a"}, {"email": "b"}, {"email": "c"}, inc_at=None).open_conflicts  # type: ignore[arg-type]


def test_no_base_fills_empty_fields_and_ignores_missing_ones() -> None:
    r = run(None, {"email": "a@x.com", "phone": None, "last_name": "Ruiz"},
            {"email": None, "phone": "+1", "last_name": "Ruiz"})
    assert r.changes == {"phone": "+1"} and r.conflicts == []


def test_flatten_custom_fields_and_policy_validation() -> None:
    assert flatten({"email": "a", "custom_fields": {"venue": "Barn"}}, ("email",)) == {"email": "a",
                                                                                       "custom.venue": "Barn"}
    with pytest.raises(ValueError):
        FieldPolicy("source_of_truth")
    with pytest.raises(ValueError):
        FieldPolicy("coin_flip")
