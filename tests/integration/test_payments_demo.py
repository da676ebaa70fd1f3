"""The caterer's demo story runs against the sandboxes and tells the truth (its summary lines)."""

from __future__ import annotations

from typing import Any

from rich.console import Console


def test_caterer_story(hub: Any, sandbox_url: str) -> None:
    from wedsync.bootstrap import set_hub
    from wedsync.demos import DemoContext
    from wedsync.demos.payments_caterer import run_story

    set_hub(hub)
    try:
        lines = dict(run_story(DemoContext(hub=hub, console=Console(quiet=True), sandbox_url=sandbox_url,
                                           public_url="http://127.0.0.1:9")))
    finally:
        set_hub(None)
    assert lines["payments: booking"].endswith("deposit succeeded + final succeeded")
    assert lines["payments: split (deposit)"] == "caterer $2,242.80, platform $201.60, planner $75.60"
    assert "released after the wedding: yes" in lines["payments: escrow"]
    assert lines["payments: dispute"].startswith("won")
    assert ", 0 mismatched, 0 missing" in lines["payments: reconciliation"]
    assert lines["payments: ledger"].startswith("balanced True")
