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
