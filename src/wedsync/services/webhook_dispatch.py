"""What each provider's inbox events mean: the handlers the inbox drain calls, one per provider.

Rule 5: an unsigned payload is never trusted, so a VSCO Workspace REST hook only names a record and the
handler re-fetches it with the API key. Events of providers without a handler stay ``pending`` in the
inbox (durably kept) until their capability is built.

A capability adds handlers by defining ``WEBHOOK_HANDLERS: dict[str, Handler]`` in any module of
``wedsync.services``; they are discovered on first use (``handlers()``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from typing import Any

from wedsync.connectors.crm.vsco_workspace import VscoWorkspaceConnector
from wedsync.connectors.errors import ConnectorError, Fatal
from wedsync.discovery import submodules
from wedsync.errors import NotFound
from wedsync.logging import get_logger
from wedsync.metrics import WEBHOOK_EVENTS
from wedsync.services.sync_engine import STREAM_ORDER
from wedsync.services.webhook_inbox import InboxRow

log = get_logger(__name__)

Handler = Callable[[Any, InboxRow], Awaitable[str]]
BatchHandler = Callable[[Any, Sequence[InboxRow]], Awaitable[dict[int, Exception | None]]]


def _vsco_target(row: InboxRow) -> tuple[str, str]:
    """The stream and record id a VSCO Workspace hook names (a hook carries only ``targetId``)."""
    stream = VscoWorkspaceConnector.stream_for_event(row.event_type or "")
    if stream is None:
        raise Fatal(f"VSCO Workspace hook for unknown event {row.event_type!r}", provider=row.provider)
    record_id = row.record_id
    if not record_id:
        data = json.loads(row.body)
        record_id = str(data["targetId"])
    return stream, record_id


async def handle_vsco_workspace_batch(hub: Any, rows: Sequence[InboxRow]) -> dict[int, Exception | None]:
    """Re-fetch what a batch of VSCO Workspace hooks names: per connection and stream, each record once,
    several at a time, written a chunk to a transaction (``SyncService.refetch_many``); payments last, in
    order, as they are applied to orders. Returns each row's error (None: done); the hooks of a connection
    deleted meanwhile fail (fatal) without holding up the rest of the batch."""
    outcomes: dict[int, Exception | None] = {}
    wanted: dict[tuple[str, str], dict[str, list[int]]] = {}
    payments: list[tuple[InboxRow, str]] = []
    for row in rows:
        try:
            stream, record_id = _vsco_target(row)
        except (ConnectorError, ValueError, KeyError) as exc:
            outcomes[row.id] = exc
            continue
        if stream == "payments":  # a payment is stored on the orders it is applied to (services/crm_writeback.py)
            payments.append((row, record_id))
        else:
            wanted.setdefault((row.connection_id, stream), {}).setdefault(record_id, []).append(row.id)
    for (connection_id, stream), by_record in sorted(wanted.items(), key=lambda kv: STREAM_ORDER.index(kv[0][1])):
        try:
            result = await hub.sync.refetch_many(connection_id, stream, list(by_record))
        except NotFound:  # the connection was deleted after these hooks arrived: nothing to store them on
            gone = _connection_gone(connection_id)
            for row_ids in by_record.values():
                outcomes.update(dict.fromkeys(row_ids, gone))
            continue
        for record_id, row_ids in by_record.items():
            for row_id in row_ids:
                outcomes[row_id] = result.errors.get(record_id)
    for row, record_id in payments:
        try:
            await hub.crm_writeback.refetch_payment(row.connection_id, record_id)
            outcomes[row.id] = None
        except (ConnectorError, ValueError, KeyError) as exc:
            outcomes[row.id] = exc
        except NotFound:
            outcomes[row.id] = _connection_gone(row.connection_id)
    return outcomes


def _connection_gone(connection_id: str) -> Fatal:
    return Fatal(f"connection {connection_id} no longer exists", provider="vsco-workspace")


async def handle_vsco_workspace(hub: Any, row: InboxRow) -> str:
    """One VSCO Workspace hook: re-fetch what it names; returns what happened to the stored record."""
    stream, record_id = _vsco_target(row)
    if stream == "payments":
        stored: str = await hub.crm_writeback.refetch_payment(row.connection_id, record_id)
        return stored
    result: str = await hub.sync.refetch(row.connection_id, stream, record_id)
    return result


HANDLERS: dict[str, Handler] = {
    "vsco-workspace": handle_vsco_workspace,
}
#: Providers whose events are handled a batch at a time (fewer transactions, concurrent re-fetches).
BATCH_HANDLERS: dict[str, BatchHandler] = {
    "vsco-workspace": handle_vsco_workspace_batch,
}


@cache
def handlers() -> dict[str, Handler]:
    """Provider slug -> handler: ``HANDLERS`` above plus every service module's ``WEBHOOK_HANDLERS``."""
    found = dict(HANDLERS)
    for module in submodules("wedsync.services", accept=lambda name: name != __name__.rsplit(".", 1)[-1]):
        for provider, handler in getattr(module, "WEBHOOK_HANDLERS", {}).items():
            if provider in found and found[provider] is not handler:
                raise RuntimeError(f"two webhook handlers for provider {provider!r}")
            found[provider] = handler
    return found


async def process_batch(hub: Any, provider: str, limit: int = 100, *, claimed_by: str | None = None
                        ) -> dict[str, int]:
    """Claim (for the executor ``claimed_by``) and process up to ``limit`` pending events of one provider,
    oldest first.

    Events are processed in arrival order, so several hooks about one record apply in order; a provider
    with a batch handler (``BATCH_HANDLERS``) re-fetches each named record once, as it is now, which is
    what the newest of its hooks asks for. A retriable provider error puts the event back (up to the
    inbox's attempt limit), a fatal one or a malformed event fails it; other events of the batch still land.
    """
    handler = handlers()[provider]
    rows = hub.inbox.claim_pending(limit, provider=provider, claimed_by=claimed_by)
    batch = BATCH_HANDLERS.get(provider)
    if batch is not None and rows:
        try:
            outcomes = await batch(hub, rows)
        except Exception as exc:  # the handler failed as a whole: every event back for another attempt
            outcomes = dict.fromkeys((row.id for row in rows), exc)
    else:
        outcomes = {}
        for row in rows:
            try:
                await handler(hub, row)
                outcomes[row.id] = None
            except Exception as exc:  # one event's failure, whatever it is, never takes the batch down
                outcomes[row.id] = exc
    done: list[int] = []
    failed = retried = 0
    for row in rows:
        error = outcomes[row.id]
        if error is None:
            done.append(row.id)
        elif isinstance(error, ConnectorError):
            status = hub.inbox.mark_failed(row.id, f"{type(error).__name__}: {error}",
                                           retry=not isinstance(error, Fatal),
                                           retry_after=getattr(error, "retry_after", None))
            failed += status == "failed"
            retried += status == "pending"
        elif isinstance(error, ValueError | KeyError):
            hub.inbox.mark_failed(row.id, f"malformed event: {type(error).__name__}: {error}", retry=False)
            failed += 1
        else:  # not the event's fault as far as we know (a locked database, a bug): retried with backoff
            log.error("webhook event failed", provider=provider, event=row.id, error_type=type(error).__name__,
                      exc_info=error)
            status = hub.inbox.mark_failed(row.id, f"{type(error).__name__}: {error}", retry=True)
            failed += status == "failed"
            retried += status == "pending"
    hub.inbox.mark_processed(done)
    if done:
        WEBHOOK_EVENTS.labels(provider, "processed").inc(len(done))
    if failed:
        WEBHOOK_EVENTS.labels(provider, "failed").inc(failed)
    return {"claimed": len(rows), "processed": len(done), "failed": failed, "retried": retried}
