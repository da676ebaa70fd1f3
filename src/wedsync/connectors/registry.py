"""Provider slug -> connector class, and each one's capability table.

Only providers whose connector is built are registered. ``GET /api/integrations/providers`` and
``docs/providers.md`` publish this table; a provider absent here is not supported yet, and the API
says so with 404 ``unknown_provider`` rather than pretending.

To add a provider, add one module to a family package (``crm``, ``payments``, ``calendars``, ``social``,
``directories``, ``portfolio``, ``channels``) defining a concrete ``Connector`` subclass with a ``slug``;
it is discovered here, in family then module-name order.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from wedsync.connectors.base import Connector
from wedsync.errors import NotFound

FAMILIES = ("crm", "payments", "calendars", "social", "directories", "portfolio", "channels")


def _discover() -> dict[str, type[Connector]]:
    found: dict[str, type[Connector]] = {}
    for family in FAMILIES:
        package = importlib.import_module(f"wedsync.connectors.{family}")
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if (issubclass(obj, Connector) and obj is not Connector and obj.__module__ == module.__name__
                        and not inspect.isabstract(obj) and "slug" in vars(obj)):
                    if obj.slug in found and found[obj.slug] is not obj:
                        raise RuntimeError(f"two connectors claim slug {obj.slug!r}")
                    found[obj.slug] = obj
    return found


CONNECTORS: dict[str, type[Connector]] = _discover()


def get_connector_class(slug: str) -> type[Connector]:
    try:
        return CONNECTORS[slug]
    except KeyError:
        raise NotFound(f"unknown provider {slug!r}", code="unknown_provider") from None


def capability_matrix() -> list[dict[str, object]]:
    return [
        {
            "provider": c.slug,
            "name": c.display_name,
            "channel": str(c.channel),
            "capabilities": c.capabilities.as_dict(),
            "credentials": [f.name for f in c.credential_fields],
            "docs": c.docs_url,
        }
        for c in CONNECTORS.values()
    ]
