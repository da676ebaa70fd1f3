"""The WedSync marketplace itself as a CRM source: couples' inquiries, posted to the hub by the marketplace."""

from __future__ import annotations

from typing import Any, ClassVar

from wedsync.connectors.base import Capabilities, Channel, Connector


class MarketplaceConnector(Connector):
    """No remote calls: the marketplace sends each inquiry to ``POST /api/crm/inquiries`` with the vendor's
    key (``services/crm_inquiries.py``). The connection only gives the inquiries' source records a home, so
    they are resolved and merged like any other source's."""

    slug: ClassVar[str] = "wedsync-marketplace"
    display_name: ClassVar[str] = "WedSync marketplace inquiries"
    channel: ClassVar[Channel] = Channel.MARKETPLACE
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="crm",
        read=("inquiries",),
        write=(),
        webhooks=(),
        incremental=(),
        notes="Our own marketplace: an inquiry (the couple, their wedding date, venue, guests and message) "
        "arrives through the hub's API (POST /api/crm/inquiries, idempotent on the marketplace's inquiry id), "
        "becomes source records resolved into the vendor's unified clients (one client, not two, when the "
        "couple is already in Tave, a HoneyBook export or a Zap), and is pushed through the outbox to every "
        "connected CRM that takes inquiries (Light Blue). Nothing is fetched from anywhere.",
    )

    def __init__(self, **_: Any) -> None:
        pass  # nothing to connect to
