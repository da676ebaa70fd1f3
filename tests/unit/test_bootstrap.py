"""The process's hub: a hub installed while another thread lazily builds one is the one that stays."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from wedsync import bootstrap


def test_set_hub_during_a_lazy_build_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    building = threading.Event()

    class SlowHub:
        def __init__(self, _settings: Any) -> None:
            building.set()
            time.sleep(0.3)  # migrations, vault, services...

    installed = object()
    monkeypatch.setattr(bootstrap, "Hub", SlowHub)
    bootstrap.set_hub(None)
    worker = threading.Thread(target=bootstrap.get_hub)  # a workflow step asking while none is installed
    worker.start()
    assert building.wait(5)
    bootstrap.set_hub(installed)  # type: ignore[arg-type]  # a test (or the CLI) installs its hub meanwhile
    worker.join(5)
    assert bootstrap.installed_hub() is installed


def test_executor_ids_are_shared_only_by_one_long_lived_embedded_process(tmp_path: Any) -> None:
    from wedsync.config import Settings

    one = Settings(home=tmp_path)
    assert bootstrap.default_executor_id(one) == "local"  # `serve` or `worker` restarted resumes its own work
    several = Settings(home=tmp_path, serve_processes=2)  # `serve --workers 2`: each API process its own
    assert bootstrap.default_executor_id(several) not in ("local", bootstrap.command_executor_id())
    pg = Settings(home=tmp_path, database_url="postgresql://u@h/db")
    assert bootstrap.default_executor_id(pg) != "local"
    assert bootstrap.command_executor_id().startswith("cli-")  # a command never takes anyone's id


def test_a_hub_process_collects_young_objects_less_often_and_freezes_its_start_up_heap() -> None:
    """A hub process (serve, worker, demo, a CLI command: ``launch_dbos`` and the app's start-up call
    ``freeze_startup_heap``) collects cycles every 50,000 allocations instead of Python's 700, which made a sync
    page's live objects climb the generations into full collections (docs/benchmarks.md), and moves what it built
    at start-up out of the collector."""
    import gc

    from wedsync.bootstrap import GC_THRESHOLDS, freeze_startup_heap

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    made = [{"start-up": i} for i in range(1000)]  # noqa: F841 - alive through the freeze
    try:
        freeze_startup_heap()
        assert gc.get_threshold() == GC_THRESHOLDS and GC_THRESHOLDS[0] >= 10_000
        assert gc.get_freeze_count() >= frozen + 1000
    finally:
        gc.set_threshold(*before)
