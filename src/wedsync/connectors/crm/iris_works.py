"""Iris Works: no public API found; CSV import/export in Iris Works' column layout and Zapier-style inbound hooks."""

from __future__ import annotations

from typing import ClassVar

from wedsync.connectors.base import Capabilities, Channel
from wedsync.connectors.channels.zapier import ZapierCsvConnector


class IrisWorksConnector(ZapierCsvConnector):
    slug: ClassVar[str] = "iris-works"
    display_name: ClassVar[str] = "Iris Works"
    channel: ClassVar[Channel] = Channel.CSV
    csv_layout: ClassVar[str] = "iris-works"
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="crm",
        read=(),
        write=(),
        webhooks=("client.created", "project.booked"),
        incremental=(),
        notes="No public API found (researched November 2026). Contacts come in as an uploaded Iris Works "
        "CSV export (Contact Id, Last Name, First Name, Primary Email, Primary Phone, ..., Job Name, "
        "Event Date YYYY-MM-DD, Venue, Guest Count, Created YYYY-MM-DD HH:MM:SS) and go out as a CSV in "
        "the same layout: our best reconstruction, verify against a real export. New contacts and booked "
        "jobs arrive live through a Zap, authenticated with the connection secret. Nothing can be listed, "
        "updated or deleted remotely: no sync runs, no deletes.",
    )
    docs_url: ClassVar[str | None] = None  # no public developer documentation found
