"""Capability command groups of the ``wedsync`` CLI (``wedsync crm ...``, ``wedsync payments ...``).

Each module here defines ``NAME: str`` and ``app: typer.Typer``; ``wedsync.cli`` mounts every one of them.
Long work shows a Rich progress bar; bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any


def discover_command_groups() -> list[tuple[str, Any]]:
    """(name, Typer app) of every command module, in module-name order."""
    import wedsync.commands as package

    found: list[tuple[str, Any]] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        group = getattr(module, "app", None)
        if group is not None:
            found.append((str(getattr(module, "NAME", info.name)), group))
    return found
