"""Studio Ninja: no public API found; CSV import/export in its column layout and Zapier-style inbound hooks."""

from __future__ import annotations

from typing import ClassVar

from wedsync.connectors.base import Capabilities, Channel
from wedsync.connectors.channels.zapier import ZapierCsvConnector


class StudioNinjaConnector(ZapierCsvConnector):
    slug: ClassVar[str] = "studio-ninja"
    display_name: ClassVar[str] = "Studio Ninja"
    channel: ClassVar[Channel] = Channel.CSV
    csv_layout: ClassVar[str] = "studio-ninja"
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="crm",
        read=(),
        write=(),
        webhooks=("client.created", "project.booked"),
        incremental=(),
        notes="No public API found (researched November 2026). Clients come in as an uploaded Studio Ninja "
        "CSV export (Client ID, Client Name, Email Address, Mobile, Phone, address with Suburb/Postcode, "
        "Job ID, Job Name, Job Date DD/MM/YYYY, Date Added DD/MM/YYYY HH:MM; Australian numbers by "
        "default) and go out as a CSV in the same layout: our best reconstruction, verify against a real "
        "export. New clients and booked jobs arrive live through a Zap, authenticated with the connection "
        "secret. Nothing can be listed, updated or deleted remotely: no sync runs, no deletes.",
    )
    docs_url: ClassVar[str | None] = "https://zapier.com/apps/studio-ninja/integrations"
