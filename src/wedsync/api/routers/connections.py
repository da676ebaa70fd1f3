"""Connections, sync runs, hook subscriptions and the synced records (clients, weddings)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy import select

from wedsync.api.deps import Cursor, HubDep, Limit, Reader, VendorId, Writer, next_cursor
from wedsync.api.routers.webhooks import forget_connection, poke_drain
from wedsync.api.schemas import (
    MAX_INT64,
    ClientOut,
    ConnectionCreated,
    ConnectionIn,
    ConnectionOut,
    ConnectionPatch,
    HookSubscriptionOut,
    Page,
    SyncIn,
    SyncRunOut,
    SyncRunsPage,
    UtcDatetime,
    WebhookEventOut,
    WebhookEventsPage,
    WebhookSecretOut,
    WeddingOut,
)
from wedsync.bootstrap import Hub
from wedsync.connectors.errors import ConnectorError
from wedsync.connectors.webhooks import ZapierScheme, has_scheme
from wedsync.errors import InvalidInput
from wedsync.logging import get_logger
from wedsync.services.subscriptions import webhook_url
from wedsync.services.webhook_inbox import STATUSES
from wedsync.store.paging import cursor_row
from wedsync.store.tables import Client, Connection, Wedding

router = APIRouter(prefix="/api", tags=["connections"])
log = get_logger("wedsync.api.connections")


def _conn_out(hub: Hub, c: Connection) -> ConnectionOut:
    return ConnectionOut(id=c.id, provider=c.provider, base_url=c.base_url, status=c.status,
                         status_detail=c.status_detail, settings=c.settings or {}, last_sync_at=c.last_sync_at,
                         sync_interval_minutes=c.sync_interval_minutes,
                         scheduled_every_minutes=hub.sync.interval_minutes(c),
                         next_sync_at=c.next_sync_at, created_at=c.created_at,
                         webhook_url=webhook_url(hub.settings.public_url, c.provider, c.id)
                         if has_scheme(c.provider) else None)


@router.get("/connections", response_model=Page[ConnectionOut])
def list_connections(hub: HubDep, vendor_id: VendorId, _p: Reader, after: Cursor = None, limit: Limit = 100
                     ) -> Page[ConnectionOut]:
    """The vendor's connections, oldest first; pass ``next_cursor`` as ``after`` for the next page."""
    items = [_conn_out(hub, c) for c in hub.connections.list(vendor_id, limit=limit, after=after)]
    return Page(items=items, next_cursor=next_cursor(items, limit, lambda c: c.id))


@router.post("/connections", status_code=status.HTTP_201_CREATED, response_model=ConnectionCreated)
def create_connection(body: ConnectionIn, hub: HubDep, vendor_id: VendorId, _p: Writer) -> ConnectionCreated:
    """Connect a provider account. Credentials go to the encrypted vault and are never returned. For a provider
    whose hooks the vendor sets up by hand (a Zap), the hub's webhook secret for the connection is shown here,
    once (as an API key is), with the address to paste into the Zap."""
    c = hub.connections.create(vendor_id, body.provider, credentials=body.credentials, base_url=body.base_url,
                               settings=body.settings)
    out = _conn_out(hub, c)
    secret = hub.connections.webhook_secret(c)
    return ConnectionCreated(**out.model_dump(), webhook_secret=secret,
                             webhook_url_with_token=ZapierScheme.hook_url(out.webhook_url, secret)
                             if secret and out.webhook_url else None)


@router.get("/connections/{connection_id}/webhook-events", response_model=WebhookEventsPage)
def list_webhook_events(connection_id: str, hub: HubDep, vendor_id: VendorId, _p: Reader, limit: Limit = 50,
                        status: Annotated[str | None, Query(
                            max_length=16, json_schema_extra={"enum": list(STATUSES)},
                            description="pending, processing, processed or failed")] = None,
                        after: Annotated[int | None, Query(ge=1, le=MAX_INT64,
                                                           description="next_cursor of the previous page")] = None
                        ) -> WebhookEventsPage:
    """The webhooks the hub accepted for this connection, newest first, with what became of each: processed,
    waiting (``next_attempt_at`` while a provider outage is waited out), or failed and why. Bodies are not
    shown."""
    hub.connections.get(vendor_id, connection_id)
    rows = hub.inbox.events(connection_id, status=status, after=after, limit=limit)
    items = [WebhookEventOut(**r._mapping) for r in rows]
    return WebhookEventsPage(items=items, next_cursor=next_cursor(items, limit, lambda e: e.id))


# ``:path``: an event id may hold slashes (Calendly's is ``{event}:{invitee URI}``), and such an event could not
# be retried at all (404), raw or percent-encoded
@router.post("/connections/{connection_id}/webhook-events/{event_id:path}/retry", response_model=WebhookEventOut)
async def retry_webhook_event(connection_id: str, event_id: str, hub: HubDep, vendor_id: VendorId, _p: Writer
                              ) -> WebhookEventOut:
    """Process a failed event again, with a fresh count of attempts (after its cause was fixed: new credentials,
    the provider back). Only a failed event: 409 ``not_failed`` otherwise; unknown: 404 ``unknown_event``."""
    await asyncio.to_thread(hub.connections.get, vendor_id, connection_id)
    row = await asyncio.to_thread(hub.inbox.retry, connection_id, event_id)
    poke_drain()  # on the event loop: the drain trigger schedules itself there
    return WebhookEventOut(**row._mapping)


@router.post("/connections/{connection_id}/webhook-secret", status_code=status.HTTP_201_CREATED,
             response_model=WebhookSecretOut)
def rotate_webhook_secret(connection_id: str, hub: HubDep, vendor_id: VendorId, _p: Writer) -> WebhookSecretOut:
    """A new webhook secret for a connection whose hooks the vendor sets up by hand (HoneyBook, 17hats, Studio
    Ninja, Iris Works), shown once: the previous one stops working (at once in this API process, within 30 s in
    the others), so update the Zap right after.
    Other providers: 422 ``webhook_secret_not_rotatable``."""
    c, secret = hub.connections.rotate_webhook_secret(vendor_id, connection_id)
    forget_connection(c.id)
    url = webhook_url(hub.settings.public_url, c.provider, c.id)
    return WebhookSecretOut(connection_id=c.id, webhook_url=url, webhook_secret=secret,
                            webhook_url_with_token=ZapierScheme.hook_url(url, secret))


@router.get("/connections/{connection_id}", response_model=ConnectionOut)
def get_connection(connection_id: str, hub: HubDep, vendor_id: VendorId, _p: Reader) -> ConnectionOut:
    return _conn_out(hub, hub.connections.get(vendor_id, connection_id))


@router.patch("/connections/{connection_id}", response_model=ConnectionOut)
def update_connection(connection_id: str, body: ConnectionPatch, hub: HubDep, vendor_id: VendorId, _p: Writer
                      ) -> ConnectionOut:
    """Set how often the connection is pulled on its own (``sync_interval_minutes``: 0 for manual runs only,
    null for the hub's default; the next pull is due one interval after the last run started) and change its
    ``settings`` (merged, checked as on creation: 422 ``invalid_settings``)."""
    given = body.model_fields_set
    if not given:
        raise InvalidInput("nothing to change: send sync_interval_minutes and/or settings", code="empty_patch")
    conn = hub.connections.get(vendor_id, connection_id)
    if "settings" in given:
        conn = hub.connections.update_settings(vendor_id, connection_id, body.settings or {})
    if "sync_interval_minutes" in given:
        conn = hub.sync.set_interval(vendor_id, connection_id, body.sync_interval_minutes)
    return _conn_out(hub, conn)


@router.delete("/connections/{connection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_connection(connection_id: str, hub: HubDep, vendor_id: VendorId, _p: Writer) -> None:
    """Remove the connection and its credentials; the webhook subscriptions we created at the provider
    are removed first, as far as the provider lets us (a dead account must not block the deletion)."""
    hub.connections.get(vendor_id, connection_id)
    if hub.subscriptions.list(vendor_id, connection_id):
        try:
            await hub.subscriptions.unsubscribe_all(vendor_id, connection_id)
        except ConnectorError as exc:
            log.warning("could not remove provider subscriptions", connection_id=connection_id,
                        error_type=type(exc).__name__)
    hub.connections.delete(vendor_id, connection_id)
    forget_connection(connection_id)  # its webhooks are refused at once here (other processes: within 30 s)


@router.post("/connections/{connection_id}/sync", status_code=status.HTTP_202_ACCEPTED,
             response_model=SyncRunOut)
async def start_sync(connection_id: str, hub: HubDep, vendor_id: VendorId, _p: Writer,
                     body: SyncIn | None = None) -> dict[str, Any]:
    """Queue a sync run (a durable workflow); poll ``GET /api/sync-runs/{id}`` for progress."""
    from wedsync.workflows.sync import start_sync as start

    hub.connections.get(vendor_id, connection_id)  # 404 before anything else
    run_id = await start(vendor_id, connection_id, (body or SyncIn()).mode)
    return hub.sync.summary(hub.sync.get_run(vendor_id, run_id))


@router.get("/connections/{connection_id}/sync-runs", response_model=SyncRunsPage)
def list_runs(connection_id: str, hub: HubDep, vendor_id: VendorId, _p: Reader, after: Cursor = None,
              limit: Limit = 50) -> dict[str, Any]:
    """The connection's runs, newest first; pass ``next_cursor`` as ``after`` for the next page."""
    hub.connections.get(vendor_id, connection_id)
    runs = hub.sync.list_runs(vendor_id, connection_id, limit=limit, after=after)
    return {"items": [hub.sync.summary(r) for r in runs], "next_cursor": next_cursor(runs, limit, lambda r: r.id)}


@router.get("/sync-runs/{run_id}", response_model=SyncRunOut)
def get_run(run_id: str, hub: HubDep, vendor_id: VendorId, _p: Reader) -> dict[str, Any]:
    return hub.sync.summary(hub.sync.get_run(vendor_id, run_id))


@router.post("/connections/{connection_id}/subscriptions", response_model=list[HookSubscriptionOut])
async def subscribe_hooks(connection_id: str, hub: HubDep, vendor_id: VendorId, _p: Writer
                          ) -> list[HookSubscriptionOut]:
    """Subscribe to the provider's webhooks (REST hooks) pointing at this hub's public URL."""
    subs = await hub.subscriptions.subscribe(vendor_id, connection_id)
    return [HookSubscriptionOut(id=h.id, event=h.event, remote_id=h.remote_id, created_at=h.created_at)
            for h in subs]


@router.get("/connections/{connection_id}/subscriptions", response_model=Page[HookSubscriptionOut])
def list_subscriptions(connection_id: str, hub: HubDep, vendor_id: VendorId, _p: Reader, after: Cursor = None,
                       limit: Limit = 100) -> Page[HookSubscriptionOut]:
    """The webhook subscriptions the hub holds at the provider, oldest first; ``next_cursor`` -> ``after``."""
    items = [HookSubscriptionOut(id=h.id, event=h.event, remote_id=h.remote_id, created_at=h.created_at)
             for h in hub.subscriptions.list(vendor_id, connection_id, limit=limit, after=after)]
    return Page(items=items, next_cursor=next_cursor(items, limit, lambda h: h.id))


def _page(hub: Hub, model: Any, vendor_id: str, *, connection_id: str | None,
          after: str | None, limit: int, include_deleted: bool, modified_since: datetime | None
          ) -> tuple[list[Any], str | None]:
    with hub.db.read() as s:
        q = select(model).where(model.vendor_id == vendor_id)
        if connection_id:
            q = q.where(model.connection_id == connection_id)
        if after:
            cursor_row(s, model, after, model.vendor_id == vendor_id)
            q = q.where(model.id > after)
        if not include_deleted:
            q = q.where(model.deleted_at.is_(None))
        if modified_since:
            q = q.where(model.synced_at >= modified_since)
        rows = list(s.execute(q.order_by(model.id).limit(limit + 1)).scalars())
    nxt = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], nxt


@router.get("/clients", response_model=Page[ClientOut])
def list_clients(hub: HubDep, vendor_id: VendorId, _p: Reader, connection_id: str | None = None,
                 after: Cursor = None, limit: Limit = 100, include_deleted: bool = False,
                 synced_since: UtcDatetime | None = None) -> Page[ClientOut]:
    """The vendor's clients, oldest first; pass ``next_cursor`` as ``after`` for the next page."""
    rows, nxt = _page(hub, Client, vendor_id, connection_id=connection_id, after=after, limit=limit,
                      include_deleted=include_deleted, modified_since=synced_since)
    return Page(items=[ClientOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=nxt)


@router.get("/weddings", response_model=Page[WeddingOut])
def list_weddings(hub: HubDep, vendor_id: VendorId, _p: Reader, connection_id: str | None = None,
                  after: Cursor = None, limit: Limit = 100, include_deleted: bool = False,
                  synced_since: UtcDatetime | None = None) -> Page[WeddingOut]:
    rows, nxt = _page(hub, Wedding, vendor_id, connection_id=connection_id, after=after, limit=limit,
                      include_deleted=include_deleted, modified_since=synced_since)
    return Page(items=[WeddingOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=nxt)
