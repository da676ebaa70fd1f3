"""Provider slug -> connector class, and each one's capability table.

Only providers whose connector is built are registered. ``GET /api/integrations/providers`` and
``docs/providers.md`` publish this table; a provider absent here is not supported yet, and the API
says so with 404 ``unknown_provider`` rather than pretending.
"""

from __future__ import annotations

from wedsync.connectors.base import Connector
from wedsync.connectors.crm.vsco_workspace import VscoWorkspaceConnector
from wedsync.errors import NotFound

CONNECTORS: dict[str, type[Connector]] = {
    c.slug: c
    for c in (VscoWorkspaceConnector,)
}


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
