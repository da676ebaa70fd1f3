"""docs/providers.md carries the capability matrix exactly as the registry publishes it."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from wedsync.connectors.registry import (
    PROVIDER_ALIASES,
    ProviderNotBuilt,
    canonical_slug,
    capability_markdown,
    capability_matrix,
    get_connector_class,
)
from wedsync.errors import NotFound


def test_docs_table_is_the_registry_matrix() -> None:
    text = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
    start, end = "<!-- matrix:start -->\n", "<!-- matrix:end -->"
    assert start in text and end in text
    table = text.split(start, 1)[1].split(end, 1)[0]
    assert table == capability_markdown(), "regenerate the table with: wedsync providers --markdown"


def test_every_provider_family_of_the_seed_is_known() -> None:
    known = {row["provider"] for row in capability_matrix()}
    for slug in ("vsco-workspace", "honeybook", "light-blue", "17hats", "studio-ninja", "iris-works",
                 "stripe", "square", "paypal", "authorize-net", "google-calendar", "microsoft-graph",
                 "apple-caldav", "calendly", "acuity", "instagram", "facebook-pages", "pinterest", "linkedin",
                 "the-knot", "weddingwire", "zola", "wedding-spot", "here-comes-the-guide", "smugmug",
                 "shootproof", "zenfolio", "pixieset", "cloudspot", "pic-time"):
        assert slug in known, slug


#: Every provider name of the marketplace seed (``CRMProvider``, ``PaymentGateway``, ``WeddingPlatform``,
#: ``CalendarConfig``, social and portfolio platforms) and the slug the hub knows it by.
SEED_NAMES = {
    "honeybook": "honeybook", "tave": "vsco-workspace", "light_blue": "light-blue", "17hats": "17hats",
    "studio_ninja": "studio-ninja", "iris_works": "iris-works",
    "stripe_connect": "stripe", "square": "square", "paypal_business": "paypal", "authorize_net": "authorize-net",
    "the_knot": "the-knot", "wedding_wire": "weddingwire", "zola": "zola", "wedding_spot": "wedding-spot",
    "here_comes_the_guide": "here-comes-the-guide",
    "google_calendar": "google-calendar", "outlook_365": "microsoft-graph", "apple_business": "apple-caldav",
    "calendly": "calendly", "acuity": "acuity",
    "instagram_business": "instagram", "facebook_pages": "facebook-pages", "pinterest_business": "pinterest",
    "linkedin_business": "linkedin",
    "smugmug": "smugmug", "pixieset": "pixieset", "zenfolio": "zenfolio", "shootproof": "shootproof",
    "cloudspot": "cloudspot", "pic_time": "pic-time",
}


def test_the_seed_names_resolve_to_our_slugs() -> None:
    """One alias table (the registry's): each seed name gives our slug, and the registry answers for it as for
    the slug (the connector, or 422 ``provider_not_built``, never 404 ``unknown_provider``)."""
    known = {str(row["provider"]) for row in capability_matrix()}
    assert set(PROVIDER_ALIASES.values()) <= known and not set(PROVIDER_ALIASES) & known
    for name, slug in SEED_NAMES.items():
        assert canonical_slug(name) == slug, name
        assert canonical_slug(f" {name.upper()} ") == slug, name
        try:
            assert get_connector_class(name).slug == slug
        except ProviderNotBuilt:
            with pytest.raises(ProviderNotBuilt):
                get_connector_class(slug)
    with pytest.raises(NotFound):
        get_connector_class("myspace")
