"""Provider slug -> connector class, and each one's capability table.

Only providers whose connector is built are registered. ``GET /api/integrations/providers`` and
``docs/providers.md`` publish this table; a provider absent here is not supported yet, and the API
says so with 404 ``unknown_provider`` rather than pretending.

To add a provider, add one module to a family package (``crm``, ``payments``, ``calendars``, ``social``,
``directories``, ``portfolio``, ``channels``) defining a concrete ``Connector`` subclass with a ``slug``;
it is discovered here, in family then module-name order.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from wedsync.connectors.base import Channel, Connector
from wedsync.discovery import submodules
from wedsync.errors import NotFound, NotImplementedCapability

FAMILIES = ("crm", "payments", "calendars", "social", "directories", "portfolio", "channels")


def _discover() -> dict[str, type[Connector]]:
    found: dict[str, type[Connector]] = {}
    for family in FAMILIES:
        for module in submodules(f"wedsync.connectors.{family}"):
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if (issubclass(obj, Connector) and obj is not Connector and obj.__module__ == module.__name__
                        and not inspect.isabstract(obj) and "slug" in vars(obj)):
                    if obj.slug in found and found[obj.slug] is not obj:
                        raise RuntimeError(f"two connectors claim slug {obj.slug!r}")
                    found[obj.slug] = obj
    return found


CONNECTORS: dict[str, type[Connector]] = _discover()


class ProviderNotBuilt(NotImplementedCapability):
    """The provider is known but has no connector: the request cannot be served (422, not a server fault)."""

    code = "provider_not_built"
    status = 422


@dataclass(frozen=True)
class PlannedProvider:
    """A provider the hub knows of but has no connector for yet, with the channel that really exists."""

    slug: str
    display_name: str
    category: str
    channel: Channel
    notes: str


# The marketplace's other providers (ARCHITECTURE's families; channels per ../shared/specs/README.md). They
# appear in the matrix with status "not_built" and every capability empty; connecting one answers 501.
PLANNED: tuple[PlannedProvider, ...] = (
    PlannedProvider("instagram", "Instagram (business accounts)", "social", Channel.API,
                    "Graph API (IG User, IG Media); webhooks signed X-Hub-Signature-256"),
    PlannedProvider("facebook-pages", "Facebook Pages", "social", Channel.API,
                    "Graph API (Page, PagePost, Photo, Album); webhooks signed X-Hub-Signature-256"),
    PlannedProvider("pinterest", "Pinterest", "social", Channel.API, "API v5 (OpenAPI in specs)"),
    PlannedProvider("linkedin", "LinkedIn", "social", Channel.API, "no specification in specs/ yet"),
    PlannedProvider("the-knot", "The Knot", "directories", Channel.EMAIL,
                    "no public API: lead e-mails, CSV, manual publishing; availability as an iCalendar feed"),
    PlannedProvider("weddingwire", "WeddingWire", "directories", Channel.EMAIL,
                    "no public API: lead e-mails, CSV, manual publishing; availability as an iCalendar feed"),
    PlannedProvider("zola", "Zola", "directories", Channel.EMAIL,
                    "no public API: lead e-mails, CSV, manual publishing; availability as an iCalendar feed"),
    PlannedProvider("wedding-spot", "Wedding Spot", "directories", Channel.EMAIL,
                    "no public API: lead e-mails, CSV, manual publishing"),
    PlannedProvider("here-comes-the-guide", "Here Comes The Guide", "directories", Channel.EMAIL,
                    "no public API: lead e-mails, CSV, manual publishing"),
    PlannedProvider("smugmug", "SmugMug", "portfolio", Channel.API, "API v2 (OAuth 1.0a)"),
    PlannedProvider("shootproof", "ShootProof", "portfolio", Channel.API, "Studio API (partial OpenAPI in specs)"),
    PlannedProvider("zenfolio", "Zenfolio", "portfolio", Channel.API,
                    "legacy JSON-RPC/SOAP API 1.8, status unconfirmed"),
    PlannedProvider("pixieset", "Pixieset", "portfolio", Channel.CSV,
                    "no public API (only an unofficial one, not used)"),
    PlannedProvider("cloudspot", "Cloudspot", "portfolio", Channel.CSV, "no public API"),
    PlannedProvider("pic-time", "Pic-Time", "portfolio", Channel.ZAPIER_WEBHOOK, "Zapier only"),
    PlannedProvider("dubsado", "Dubsado", "crm", Channel.ZAPIER_WEBHOOK, "Zapier only"),
)
PLANNED_BY_SLUG = {p.slug: p for p in PLANNED if p.slug not in CONNECTORS}


def get_connector_class(slug: str) -> type[Connector]:
    try:
        return CONNECTORS[slug]
    except KeyError:
        planned = PLANNED_BY_SLUG.get(slug)
        if planned is not None:
            raise ProviderNotBuilt(
                f"{planned.display_name} is known but its connector is not built yet ({planned.notes})"
            ) from None
        raise NotFound(f"unknown provider {slug!r}", code="unknown_provider") from None


def capability_matrix() -> list[dict[str, object]]:
    """Every provider the hub knows: built connectors (status "available") and planned ones ("not_built",
    with empty capabilities and the real channel they will use)."""
    built: list[dict[str, object]] = [
        {
            "provider": c.slug,
            "name": c.display_name,
            "status": "available",
            "channel": str(c.channel),
            "capabilities": c.capabilities.as_dict(),
            "credentials": [f.name for f in c.credential_fields],
            "docs": c.docs_url,
        }
        for c in CONNECTORS.values()
    ]
    planned: list[dict[str, object]] = [
        {
            "provider": p.slug,
            "name": p.display_name,
            "status": "not_built",
            "channel": str(p.channel),
            "capabilities": {"category": p.category, "read": [], "write": [], "webhooks": [],
                             "incremental": [], "notes": p.notes},
            "credentials": [],
            "docs": None,
        }
        for p in PLANNED_BY_SLUG.values()
    ]
    return built + planned


def _cell(values: list[str] | object) -> str:
    if isinstance(values, list):
        return ", ".join(f"`{v}`" for v in values) if values else "-"
    return str(values).replace("|", "\\|").replace("\n", " ") or "-"


def capability_markdown() -> str:
    """The matrix as the Markdown table kept in ``docs/providers.md`` (a test keeps the two equal)."""
    lines = [
        "| provider | slug | status | category | channel | read | write | webhooks | incremental | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in capability_matrix():
        caps = row["capabilities"]
        assert isinstance(caps, dict)
        lines.append("| " + " | ".join([
            _cell(row["name"]), f"`{row['provider']}`", _cell(row["status"]), _cell(caps["category"]),
            _cell(row["channel"]), _cell(caps["read"]), _cell(caps["write"]), _cell(caps["webhooks"]),
            _cell(caps["incremental"]), _cell(caps["notes"]),
        ]) + " |")
    return "\n".join(lines) + "\n"
