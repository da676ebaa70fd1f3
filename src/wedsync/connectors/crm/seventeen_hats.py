"""17hats: no public API found; CSV import/export in 17hats' column layout and Zapier-style inbound hooks."""

from __future__ import annotations

from typing import ClassVar

from wedsync.connectors.base import Capabilities, Channel
from wedsync.connectors.channels.zapier import ZapierCsvConnector


class SeventeenHatsConnector(ZapierCsvConnector):
    slug: ClassVar[str] = "17hats"
    display_name: ClassVar[str] = "17hats"
    channel: ClassVar[Channel] = Channel.CSV
    csv_layout: ClassVar[str] = "17hats"
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="crm",
        read=(),
        write=(),
        webhooks=("client.created", "project.booked"),
        incremental=(),
        notes="No public API found (researched November 2026). Contacts come in as an uploaded 17hats CSV "
        "export (Contact ID, First Name, Last Name, Email, Phone, ..., Event Date MM/DD/YYYY, Created On "
        "MM/DD/YYYY hh:mm AM) and go out as a CSV in the same layout for 17hats' import: our best "
        "reconstruction of the layout, verify against a real export. New contacts and booked projects "
        "arrive live through a Zap (17hats trigger -> Webhooks by Zapier POST), authenticated with the "
        "connection secret. Nothing can be listed, updated or deleted remotely: no sync runs, no deletes.",
    )
    docs_url: ClassVar[str | None] = "https://zapier.com/apps/17hats/integrations"
