"""Provider webhook subscriptions the hub creates (e.g. VSCO Workspace REST hooks)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from wedsync.errors import InvalidInput
from wedsync.logging import get_logger
from wedsync.services.connections import WEBHOOK_SECRET, ConnectionService
from wedsync.store.db import Database
from wedsync.store.paging import cursor_row
from wedsync.store.tables import HookSubscription, new_id, utcnow

log = get_logger(__name__)

#: ``remote_id`` of a subscription whose provider call is in flight
PENDING = ""
#: how long a claim may stay pending before another request takes it over (its process died mid-call)
CLAIM_TTL = timedelta(minutes=5)


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
        base = webhook_url(self.public_url, conn.provider, conn.id)
        for event in events:
            claim, previous = self._claim(vendor_id, connection_id, event, base), None
            if claim is None:
                # subscribed already (to this URL), or another request is subscribing it right now; a hook
                # subscribed to another URL (``WEDSYNC_PUBLIC_URL`` changed since) is moved to this one: it used
                # to be left where it was, every hook of the connection going to an address the hub had left
                moved = self._claim_moved(connection_id, event, base)
                if moved is None:
                    continue
                claim, previous = moved
            target = f"{base}?{urlencode({'event': event, 'token': secret})}"
            try:
                remote_id = await connector.subscribe(event, target)
            except BaseException:
                with self.db.session() as s:  # not subscribed: the next request tries again
                    if previous is None:
                        s.execute(delete(HookSubscription).where(HookSubscription.id == claim))
                    else:  # still subscribed where it was
                        s.execute(update(HookSubscription).where(HookSubscription.id == claim)
                                  .values(remote_id=previous))
                raise
            with self.db.session() as s:
                s.execute(update(HookSubscription).where(HookSubscription.id == claim)
                          .values(remote_id=remote_id, target_url=base))
            if previous is not None:
                try:  # after the new one exists, so no hook falls between (a hook sent to both is a duplicate)
                    await connector.unsubscribe(previous)
                except Exception as exc:
                    log.warning("could not remove a provider hook subscribed to the former URL",
                                connection_id=connection_id, event=event, error=str(exc)[:200])
        return self.list(vendor_id, connection_id)

    def _claim_moved(self, connection_id: str, event: str, base: str) -> tuple[str, str] | None:
        """Reserve a (connection, event) subscription made to another URL than ``base`` for moving it: its row
        id and its provider hook id, or None when there is none (or another request took it first)."""
        with self.db.session() as s:
            row = s.execute(select(HookSubscription.id, HookSubscription.remote_id).where(
                HookSubscription.connection_id == connection_id, HookSubscription.event == event,
                HookSubscription.remote_id != PENDING, HookSubscription.target_url != base)).first()
            if row is None:
                return None
            res = s.execute(update(HookSubscription).where(
                HookSubscription.id == row.id, HookSubscription.remote_id == row.remote_id,
            ).values(remote_id=PENDING, created_at=utcnow()))
        return (str(row.id), str(row.remote_id)) if getattr(res, "rowcount", 0) == 1 else None

    def _claim(self, vendor_id: str, connection_id: str, event: str, base: str) -> str | None:
        """Reserve (connection, event) before the provider call: the row's id, or None when it is taken. The
        unique index makes concurrent requests (other processes included) subscribe each event once; a claim
        left by a process that died mid-call is taken over after ``CLAIM_TTL``."""
        claim = new_id()
        try:
            with self.db.session() as s:
                s.add(HookSubscription(id=claim, vendor_id=vendor_id, connection_id=connection_id,
                                       remote_id=PENDING, event=event, target_url=base))
            return claim
        except IntegrityError:
            pass
        with self.db.session() as s:
            stale = s.execute(update(HookSubscription).where(
                HookSubscription.connection_id == connection_id, HookSubscription.event == event,
                HookSubscription.remote_id == PENDING, HookSubscription.created_at < utcnow() - CLAIM_TTL,
            ).values(created_at=utcnow()).returning(HookSubscription.id)).scalar_one_or_none()
        return stale

    def list(self, vendor_id: str, connection_id: str, *, limit: int | None = None, after: str | None = None
             ) -> list[HookSubscription]:
        """The subscriptions in place at the provider (not those a request is still creating), by id; ``after``
        is the last id of the previous page, ``limit`` None: all of them."""
        self.connections.get(vendor_id, connection_id)
        with self.db.read() as s:
            q = select(HookSubscription).where(HookSubscription.connection_id == connection_id,
                                               HookSubscription.remote_id != PENDING)
            if after:
                cursor_row(s, HookSubscription, after, HookSubscription.connection_id == connection_id)
                q = q.where(HookSubscription.id > after)
            return list(s.execute(q.order_by(HookSubscription.id).limit(limit)).scalars())

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
