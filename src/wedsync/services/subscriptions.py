"""Provider webhook subscriptions the hub creates (e.g. VSCO Workspace REST hooks)."""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy import select

from wedsync.errors import InvalidInput
from wedsync.services.connections import WEBHOOK_SECRET, ConnectionService
from wedsync.store.db import Database
from wedsync.store.tables import HookSubscription, new_id


def webhook_url(public_url: str, provider: str, connection_id: str) -> str:
    return f"{public_url.rstrip('/')}/webhooks/{provider}/{connection_id}"


class SubscriptionService:
    def __init__(self, db: Database, connections: ConnectionService, public_url: str) -> None:
        self.db = db
        self.connections = connections
        self.public_url = public_url

    async def subscribe(self, vendor_id: str, connection_id: str) -> list[HookSubscription]:
        """Subscribe to every hook event the provider offers; idempotent per event."""
        conn = self.connections.get(vendor_id, connection_id)
        connector = await self.connections.connector(conn)
        events = type(connector).capabilities.webhooks
        if not events or not hasattr(connector, "subscribe"):
            raise InvalidInput(f"{conn.provider} offers no webhook subscriptions", code="no_webhooks")
        secret = self.connections.credentials(conn)[WEBHOOK_SECRET]
        with self.db.read() as s:
            have = {h.event for h in s.execute(select(HookSubscription).where(
                HookSubscription.connection_id == connection_id)).scalars()}
        base = webhook_url(self.public_url, conn.provider, conn.id)
        for event in events:
            if event in have:
                continue
            target = f"{base}?{urlencode({'event': event, 'token': secret})}"
            remote_id = await connector.subscribe(event, target)
            with self.db.session() as s:
                s.add(HookSubscription(id=new_id(), vendor_id=vendor_id, connection_id=connection_id,
                                       remote_id=remote_id, event=event, target_url=base))
        return self.list(vendor_id, connection_id)

    def list(self, vendor_id: str, connection_id: str) -> list[HookSubscription]:
        self.connections.get(vendor_id, connection_id)
        with self.db.read() as s:
            return list(s.execute(select(HookSubscription).where(
                HookSubscription.connection_id == connection_id).order_by(HookSubscription.id)).scalars())

    async def unsubscribe_all(self, vendor_id: str, connection_id: str) -> int:
        conn = self.connections.get(vendor_id, connection_id)
        connector = await self.connections.connector(conn)
        subs = self.list(vendor_id, connection_id)
        for sub in subs:
            await connector.unsubscribe(sub.remote_id)
            with self.db.session() as s:
                row = s.get(HookSubscription, sub.id)
                if row is not None:
                    s.delete(row)
        return len(subs)
