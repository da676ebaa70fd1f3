"""The photographer's CRM demo story runs against the sandboxes, twice (rerunnable), and says what it did."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from wedsync.demos import DemoContext


def test_crm_story_runs_twice(hub: Any) -> None:
    from wedsync.demos.crm_photographer import run_story
    from wedsync.sandbox.server import start_sandbox_in_thread

    url, stop = start_sandbox_in_thread(port=0, contacts=60, jobs=10)
    try:
        ctx = DemoContext(hub=hub, console=Console(record=True, width=160), sandbox_url=url,
                          public_url="http://127.0.0.1:9")
        first = dict(run_story(ctx))
        assert "merges (" in first["CRM: merged and why"] and "email+name" in first["CRM: merged and why"]
        assert first["CRM: bad rows reported"].startswith("1 ")
        assert "kept +1415555" in first["CRM: conflicting phone edit"]
        assert "joined their Tave client" in first["CRM: marketplace inquiry"]
        assert first["CRM: marketplace inquiry"].endswith("pushed to Light Blue (done)")
        again = dict(run_story(ctx))  # the same export again: nothing merges twice
        assert again["CRM: merged and why"].split(" merges")[0] == first["CRM: merged and why"].split(" merges")[0]
        assert "Merged into existing Tave clients" in ctx.console.export_text()
    finally:
        stop()
