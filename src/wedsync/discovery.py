"""Discovery of a package's modules: how capabilities plug in (connectors, emulators, routers, webhook
handlers, table modules, demo stories, CLI groups) without a central list to edit."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from types import ModuleType


def module_names(package: str, *, accept: Callable[[str], bool] = lambda name: True) -> list[str]:
    """Dotted names of ``package``'s direct modules, in name order, skipping private ones (``_x``)."""
    pkg = importlib.import_module(package)
    return [f"{package}.{m.name}" for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name)
            if not m.name.startswith("_") and accept(m.name)]


def submodules(package: str, *, accept: Callable[[str], bool] = lambda name: True) -> Iterator[ModuleType]:
    """Import and yield ``package``'s direct modules, in name order, skipping private ones."""
    for name in module_names(package, accept=accept):
        yield importlib.import_module(name)
