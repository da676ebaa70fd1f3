"""The payments fault suite, small: 80 transactions through the gateway sandboxes (own process, loopback)
with answers lost after execution, 5xx, dropped connections, a primary outage and one kill -9 of the hub.
Zero double charges (counted on the sandboxes' side), no lost or duplicated ledger postings, all final."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[2] / "bench" / "payments_faults.py"


def load_suite() -> ModuleType:
    spec = importlib.util.spec_from_file_location("payments_faults", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fault_suite_with_a_kill(tmp_path: Path) -> None:
    suite = load_suite()
    result = suite.run_suite(80, kills=1, concurrency=8, seed=11, home=tmp_path, outage_seconds=2.0,
                             after_commit_rate=0.05, error_rate=0.03, drop_rate=0.02, final_timeout=90,
                             log=lambda _m: None)
    assert result["hub_starts"] == 2, result["events"]
    assert result["double_charges"] == 0
    assert result["ledger_charge_postings_missing"] == 0 and result["ledger_charge_postings_extra"] == 0
    assert result["not_final"] == 0 and set(result["ledger_net_by_currency"].values()) == {0}
    assert result["statuses"].get("succeeded", 0) >= 70  # ~3 % of the cards decline
    assert result["ok"], result
