"""What each provider's inbox events mean: the handlers the inbox drain calls, one per provider.

Rule 5: an unsigned payload is never trusted, so a VSCO Workspace REST hook only names a record and the
handler re-fetches it with the API key. Events of providers without a handler stay ``pending`` in the
inbox (durably kept) until their capability is built.

A capability adds handlers by defining ``WEBHOOK_HANDLERS: dict[str, Handler]`` in any module of
``wedsync.services``; they are discovered on first use (``handlers()``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from wedsync.connectors.crm.vsco_workspace import VscoWorkspaceConnector
from wedsync.connectors.errors import ConnectorError, Fatal
from wedsync.discovery import submodules
from wedsync.services.webhook_inbox import InboxRow

Handler = Callable[[Any, InboxRow], Awaitable[str]]


async def handle_vsco_workspace(hub: Any, row: InboxRow) -> str:
    stream = VscoWorkspaceConnector.stream_for_event(row.event_type or "")
    if stream is None:
        raise Fatal(f"VSCO Workspace hook for unknown event {row.event_type!r}", provider=row.provider)
    record_id = row.record_id
    if not record_id:
        data = json.loads(row.body)
        record_id = str(data["targetId"])
    if stream == "payments":  # a payment is stored on the orders it is applied to (services/crm_writeback.py)
        stored: str = await hub.crm_writeback.refetch_payment(row.connection_id, record_id)
        return stored
    result: str = await hub.sync.refetch(row.connection_id, stream, record_id)
    return result


HANDLERS: dict[str, Handler] = {
    "vsco-workspace": handle_vsco_workspace,
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


async def process_batch(hub: Any, provider: str, limit: int = 100) -> dict[str, int]:
    """Claim and process up to ``limit`` pending events of one provider, oldest first.

    Events are processed in arrival order, so several hooks about one record apply in order; a
    retriable provider error puts the event back (up to the inbox's attempt limit), a fatal one fails it.
    """
    handler = handlers()[provider]
    rows = hub.inbox.claim_pending(limit, provider=provider)
    done: list[int] = []
    failed = retried = 0
    for row in rows:
        try:
            await handler(hub, row)
            done.append(row.id)
        except ConnectorError as exc:
            retry = not isinstance(exc, Fatal)
            status = hub.inbox.mark_failed(row.id, f"{type(exc).__name__}: {exc}", retry=retry)
            failed += status == "failed"
            retried += status == "pending"
        except (ValueError, KeyError) as exc:
            hub.inbox.mark_failed(row.id, f"malformed event: {type(exc).__name__}", retry=False)
            failed += 1
    hub.inbox.mark_processed(done)
    return {"claimed": len(rows), "processed": len(done), "failed": failed, "retried": retried}
