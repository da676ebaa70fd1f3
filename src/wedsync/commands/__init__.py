"""Capability command groups of the ``wedsync`` CLI (``wedsync crm ...``, ``wedsync payments ...``).

Each module here defines ``NAME: str`` and ``app: typer.Typer``; ``wedsync.cli`` mounts every one of them.
Long work shows a Rich progress bar; bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

from typing import Any

from wedsync.discovery import submodules


def discover_command_groups() -> list[tuple[str, Any]]:
    """(name, Typer app) of every command module, in module-name order."""
    found: list[tuple[str, Any]] = []
    for module in submodules(__name__):
        group = getattr(module, "app", None)
        if group is not None:
            found.append((str(getattr(module, "NAME", module.__name__.rsplit(".", 1)[-1])), group))
    return found
