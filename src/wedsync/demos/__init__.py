"""The capability stories ``make demo`` tells after the photographer's VSCO Workspace sync.

Each module here defines ``TITLE: str`` and ``run_story(ctx: DemoContext) -> list[tuple[str, str]]``;
the story prints its own progress and tables on ``ctx.console`` and returns summary lines
(label, value) for the final summary. Stories must be rerunnable against an existing data directory
(find-or-create their vendor and connections) and close what they open (``hub.connections.aclose()``
inside their event loop, because each story runs in its own ``asyncio.run``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from wedsync.discovery import submodules


@dataclass(frozen=True)
class DemoContext:
    hub: Any
    console: Console
    sandbox_url: str  # e.g. http://127.0.0.1:8001, every emulator under its own prefix
    public_url: str  # where the hub's API will listen (webhook targets)


Story = Callable[[DemoContext], list[tuple[str, str]]]


def discover_stories() -> list[tuple[str, Story]]:
    """(title, run_story) of every story module, in module-name order."""
    found: list[tuple[str, Story]] = []
    for module in submodules(__name__):
        run = getattr(module, "run_story", None)
        if callable(run):
            found.append((str(getattr(module, "TITLE", module.__name__)), run))
    return found
