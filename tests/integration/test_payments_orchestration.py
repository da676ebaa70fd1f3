"""The transaction's decision logic (drive_payment) over scripted gateway answers: fail over only when
not executed, stop on a decline, pin an unknown outcome to its gateway, park it, queue through outages; and
gateway events that cannot be handled fail for good."""

from __future__ import annotations

from typing import Any

import pytest

from wedsync.services import payments as P


class Script:
    """Steps whose gateway answers are scripted per connection: a list of outcomes for charges and one
    for lookups; records every call."""

    def __init__(self, route: list[str], charges: dict[str, list[dict[str, Any]]],
                 lookups: dict[str, list[str]] | None = None, failover_on_decline: bool = False) -> None:
        self.route, self.charges, self.lookups = route, charges, lookups or {}
        self.failover_on_decline = failover_on_decline
        self.calls: list[tuple[str, ...]] = []
        self.by_attempt: dict[int, str] = {}
        self.state = "processing"
        self.sleeps: list[float] = []

    async def begin(self, intent_id: str) -> dict[str, Any]:
        return {"status": "processing", "route": self.route, "failover_on_decline": self.failover_on_decline,
                "attempts": 0, "pinned_attempt": None}

    async def attempt(self, intent_id: str, attempt_no: int, connection_id: str) -> dict[str, Any]:
        self.calls.append(("charge", connection_id))
        self.by_attempt[attempt_no] = connection_id
        return self.charges[connection_id].pop(0)

    async def resolve(self, intent_id: str, attempt_no: int) -> dict[str, Any]:
        cid = self.by_attempt[attempt_no]
        self.calls.append(("lookup", cid))
        return {"outcome": self.lookups[cid].pop(0)}

    async def settle(self, intent_id: str) -> dict[str, Any]:
        self.state = "succeeded"
        return {"status": "succeeded"}

    async def finish(self, intent_id: str, status: str, code: str | None, message: str | None) -> dict[str, Any]:
        self.state = status
        return {"status": status, "failureCode": code}

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def o(outcome: str, **kw: Any) -> dict[str, Any]:
    return {"outcome": outcome, **kw}


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "LOOKUP_DELAYS", (0.1, 0.2, 0.4))
    monkeypatch.setattr(P, "ROUND_DELAYS", (1.0, 2.0))


async def test_not_executed_fails_over_to_the_next_gateway() -> None:
    s = Script(["a", "b"], {"a": [o("not_executed", retryable=True)], "b": [o("succeeded")]})
    assert (await P.drive_payment("i", s))["status"] == "succeeded"
    assert s.calls == [("charge", "a"), ("charge", "b")]


async def test_a_decline_stops_unless_the_rule_says_otherwise() -> None:
    s = Script(["a", "b"], {"a": [o("declined", decline_code="insufficient_funds")], "b": [o("succeeded")]})
    r = await P.drive_payment("i", s)
    assert r == {"status": "declined", "failureCode": "insufficient_funds"} and s.calls == [("charge", "a")]
    s = Script(["a", "b"], {"a": [o("declined")], "b": [o("succeeded")]}, failover_on_decline=True)
    assert (await P.drive_payment("i", s))["status"] == "succeeded"


async def test_unknown_is_resolved_at_the_same_gateway_never_elsewhere() -> None:
    s = Script(["a", "b"], {"a": [o("unknown")], "b": [o("succeeded")]}, {"a": ["unknown", "succeeded"]})
    assert (await P.drive_payment("i", s))["status"] == "succeeded"
    assert s.calls == [("charge", "a"), ("lookup", "a"), ("lookup", "a")]
    # still unknown after every lookup: parked as "unknown", b is never tried
    s = Script(["a", "b"], {"a": [o("unknown")], "b": [o("succeeded")]}, {"a": ["unknown"] * 3})
    r = await P.drive_payment("i", s)
    assert r["status"] == "unknown" and ("charge", "b") not in s.calls and s.sleeps == [0.1, 0.2, 0.4]
    # proven not executed by the lookup: now the next gateway may take it
    s = Script(["a", "b"], {"a": [o("unknown")], "b": [o("succeeded")]}, {"a": ["not_executed"]})
    assert (await P.drive_payment("i", s))["status"] == "succeeded"
    assert s.calls == [("charge", "a"), ("lookup", "a"), ("charge", "b")]


async def test_an_outage_everywhere_queues_then_fails_cleanly() -> None:
    down = [o("not_executed", retryable=True)] * 3
    s = Script(["a", "b"], {"a": list(down), "b": [o("not_executed", retryable=True)] * 2 + [o("succeeded")]})
    assert (await P.drive_payment("i", s))["status"] == "succeeded" and s.sleeps == [1.0, 2.0]
    s = Script(["a"], {"a": [o("not_executed", retryable=True)] * 3})
    r = await P.drive_payment("i", s)
    assert r["status"] == "failed" and r["failureCode"] == "gateway_not_executed" and len(s.calls) == 3
    s = Script(["a"], {"a": [o("not_executed")]})  # not retryable (e.g. credentials rejected): no waiting
    assert (await P.drive_payment("i", s))["status"] == "failed" and s.sleeps == []


async def test_an_event_that_cannot_be_understood_fails_for_good(hub: Any) -> None:
    """A verified but malformed gateway event is marked failed (Fatal), not retried for ever."""
    from datetime import UTC, datetime

    from wedsync.connectors.errors import Fatal
    from wedsync.services.webhook_inbox import InboxRow

    v = hub.tenancy.create_vendor("Events")
    c = hub.connections.create(v.id, "stripe", credentials={"secret_key": "sk_test_x"},
                               base_url="http://127.0.0.1:9/stripe")
    row = InboxRow(id=1, vendor_id=v.id, connection_id=c.id, provider="stripe", event_id="evt_1", event_type=None,
                   record_id=None, body=b"not json", received_at=datetime.now(UTC), attempts=0)
    with pytest.raises(Fatal):
        await P.handle_gateway_event(hub, row)
    gone = InboxRow(id=2, vendor_id=v.id, connection_id="01nosuchconnection00000000", provider="stripe",
                    event_id="evt_2", event_type=None, record_id=None, body=b"{}", received_at=row.received_at,
                    attempts=0)
    with pytest.raises(Fatal):
        await P.handle_gateway_event(hub, gone)
    await hub.connections.aclose()
