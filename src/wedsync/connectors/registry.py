"""Provider slug -> connector class, and each one's capability table.

Only providers whose connector is built are registered. ``GET /api/integrations/providers`` and
``docs/providers.md`` publish this table; a provider absent here is not supported yet, and the API
says so with 404 ``unknown_provider`` rather than pretending.

To add a provider, add one module to a family package (``crm``, ``payments``, ``calendars``, ``social``,
``directories``, ``portfolio``, ``channels``) defining a concrete ``Connector`` subclass with a ``slug``;
it is discovered here, in family then module-name order.
"""

from __future__ import annotations

import functools
import inspect
import re
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
    PlannedProvider("pixieset", "Pixieset", "portfolio", Channel.NONE,
                    "no channel: no public API (only an unofficial, reverse-engineered one, not used)"),
    PlannedProvider("cloudspot", "Cloudspot", "portfolio", Channel.NONE, "no channel: no public API"),
    PlannedProvider("pic-time", "Pic-Time", "portfolio", Channel.ZAPIER_WEBHOOK, "Zapier only"),
    PlannedProvider("dubsado", "Dubsado", "crm", Channel.ZAPIER_WEBHOOK, "Zapier only"),
)
PLANNED_BY_SLUG = {p.slug: p for p in PLANNED if p.slug not in CONNECTORS}

#: Other names of providers -> our slug: the marketplace seed's names (``CRMProvider``, ``PaymentGateway``,
#: ``WeddingPlatform``, ``CalendarConfig``, social and portfolio platforms) and a few common spellings. Every place
#: that takes a provider name (connections, OAuth, the CRM sync endpoint, conflict policies) reads it through
#: ``canonical_slug``; what is stored is always the slug.
PROVIDER_ALIASES: dict[str, str] = {
    # CRM
    "tave": "vsco-workspace", "vsco": "vsco-workspace", "vsco_workspace": "vsco-workspace",
    "light_blue": "light-blue", "lightblue": "light-blue", "seventeen_hats": "17hats",
    "studio_ninja": "studio-ninja", "iris_works": "iris-works",
    "marketplace": "wedsync-marketplace", "wedsync": "wedsync-marketplace",
    "wedsync_marketplace": "wedsync-marketplace",
    # payments
    "stripe_connect": "stripe", "stripe-connect": "stripe", "paypal_business": "paypal",
    "authorize_net": "authorize-net",
    # calendars
    "google_calendar": "google-calendar", "outlook_365": "microsoft-graph", "outlook": "microsoft-graph",
    "outlook-365": "microsoft-graph", "apple_business": "apple-caldav", "apple_caldav": "apple-caldav",
    "ical_feed": "ical-feed",
    # directories
    "the_knot": "the-knot", "wedding_wire": "weddingwire", "wedding_spot": "wedding-spot",
    "here_comes_the_guide": "here-comes-the-guide",
    # social
    "instagram_business": "instagram", "facebook_pages": "facebook-pages", "pinterest_business": "pinterest",
    "linkedin_business": "linkedin",
    # portfolio
    "pic_time": "pic-time",
}


_SEPARATORS = re.compile(r"[\s_]+")


@functools.cache
def _display_names() -> dict[str, str]:
    """Each provider's display name ("VSCO Workspace (Tave)", "Studio Ninja", "Outlook 365") as a key, lower-cased
    with its spaces as hyphens, -> its slug."""
    names: dict[str, str] = {}
    for slug, cls in CONNECTORS.items():
        display = getattr(cls, "display_name", None)
        if isinstance(display, str):
            names[_SEPARATORS.sub("-", display.strip().lower())] = slug
    for slug, planned in PLANNED_BY_SLUG.items():
        names.setdefault(_SEPARATORS.sub("-", planned.display_name.strip().lower()), slug)
    return names


def canonical_slug(name: str) -> str:
    """Our slug for a provider name: an alias (``tave``, ``stripe_connect``, ``the_knot``) or a display name in any
    case and spacing ("VSCO Workspace", "Studio Ninja", "outlook 365") gives the slug it stands for; any other name
    is returned trimmed and lower-cased (whether it is known is the caller's check)."""
    key = name.strip().lower()
    if key in PROVIDER_ALIASES:
        return PROVIDER_ALIASES[key]
    dashed = _SEPARATORS.sub("-", key)
    if dashed in CONNECTORS or dashed in PLANNED_BY_SLUG:
        return dashed
    alias = PROVIDER_ALIASES.get(dashed) or PROVIDER_ALIASES.get(dashed.replace("-", "_"))
    if alias is not None:
        return alias
    return _display_names().get(dashed, key)


def get_connector_class(name: str) -> type[Connector]:
    """The connector of a provider slug or alias; 422 ``provider_not_built`` for a provider the hub knows but
    has no connector for, 404 ``unknown_provider`` for anything else."""
    slug = canonical_slug(name)
    try:
        return CONNECTORS[slug]
    except KeyError:
        planned = PLANNED_BY_SLUG.get(slug)
        if planned is not None:
            raise ProviderNotBuilt(
                f"{planned.display_name} is known but its connector is not built yet ({planned.notes})"
            ) from None
        raise NotFound(f"unknown provider {name!r}", code="unknown_provider") from None


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
