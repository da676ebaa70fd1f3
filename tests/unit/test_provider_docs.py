"""docs/providers.md carries the capability matrix exactly as the registry publishes it."""

from __future__ import annotations

from tests.conftest import ROOT
from wedsync.connectors.registry import capability_markdown, capability_matrix


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
