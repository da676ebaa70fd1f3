"""The capability stories ``make demo`` tells after the photographer's VSCO Workspace sync.

Each module here defines ``TITLE: str`` and ``run_story(ctx: DemoContext) -> list[tuple[str, str]]``;
the story prints its own progress and tables on ``ctx.console`` and returns summary lines
(label, value) for the final summary. Stories must be rerunnable against an existing data directory
(find-or-create their vendor and connections) and close what they open (``hub.connections.aclose()``
inside their event loop, because each story runs in its own ``asyncio.run``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console


@dataclass(frozen=True)
class DemoContext:
    hub: Any
    console: Console
    sandbox_url: str  # e.g. http://127.0.0.1:8001, every emulator under its own prefix
    public_url: str  # where the hub's API will listen (webhook targets)


Story = Callable[[DemoContext], list[tuple[str, str]]]


def discover_stories() -> list[tuple[str, Story]]:
    """(title, run_story) of every story module, in module-name order."""
    import wedsync.demos as package

    found: list[tuple[str, Story]] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        run = getattr(module, "run_story", None)
        if callable(run):
            found.append((str(getattr(module, "TITLE", info.name)), run))
    return found
