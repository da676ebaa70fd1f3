"""HoneyBook (no general public API): Zapier-style inbound hooks, contacts CSV import, outbound "Create Project".

Inbound: a Zap from HoneyBook's "Client Created" / "New Project Booked" triggers to a Webhooks by Zapier POST
at ``/webhooks/honeybook/{connection_id}`` (the connection secret as ``X-WedSync-Signature`` HMAC or ``token``),
read by ``wedsync.connectors.channels.zapier.parse_zap_event``. Files: HoneyBook's contacts export, read by
``csv_layouts`` (layout ``"honeybook"``). Outbound: a Zap whose trigger is a Catch Hook and whose action is
HoneyBook's "Create Project"; we POST the project to that catch-hook URL (a connection credential).

Zapier does not deduplicate catch-hook deliveries, so every POST carries ``idempotency_key`` (from our outbox
row, committed first) in the JSON and as ``Idempotency-Key``; the recommended Zap (``docs/crm_channels.md``)
drops a key it has seen (Storage by Zapier), which makes our retries after a timeout safe. Without that step a
retry after a lost answer can create the project twice; the connector cannot look HoneyBook up to check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from wedsync.connectors.base import Capabilities, Channel, CredentialField
from wedsync.connectors.channels.zapier import ZapierCsvConnector, create_project_payload
from wedsync.connectors.errors import Fatal, SchemaMismatch
from wedsync.connectors.http import ProviderClient
from wedsync.domain.crm import ClientRecord, WeddingRecord
from wedsync.errors import InvalidInput
from wedsync.logging import register_secret

ZAPIER_HOOK_HOST = "hooks.zapier.com"


@dataclass(frozen=True, slots=True)
class CatchHookReceipt:
    """Zapier's answer to a catch-hook POST: the request id it queued (not the HoneyBook project id)."""

    request_id: str
    attempt: str | None
    status: str
    idempotency_key: str


def check_catch_hook_url(url: str, *, allow_private: bool) -> str:
    """Only Zapier's catch-hook host over HTTPS (no SSRF through a pasted URL); any http(s) URL when the
    deployment allows private URLs (tests, sandboxes)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("the Create Project hook URL must be an absolute http(s) URL", code="invalid_url")
    if allow_private:
        return url
    if parts.scheme != "https" or parts.hostname != ZAPIER_HOOK_HOST or not parts.path.startswith("/hooks/catch/"):
        raise InvalidInput(f"the Create Project hook URL must be https://{ZAPIER_HOOK_HOST}/hooks/catch/...",
                           code="invalid_url")
    return url


class HoneyBookConnector(ZapierCsvConnector):
    slug: ClassVar[str] = "honeybook"
    display_name: ClassVar[str] = "HoneyBook"
    channel: ClassVar[Channel] = Channel.ZAPIER_WEBHOOK
    csv_layout: ClassVar[str] = "honeybook"
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="crm",
        read=(),
        write=("projects",),
        webhooks=("client.created", "project.booked"),
        incremental=(),
        notes="No generally available public API (a private-preview v3 API with OAuth2 is reported; not "
        "used). Inbound: Zapier triggers 'Client Created' and 'New Project Booked' forwarded by a Webhooks by "
        "Zapier POST signed with the connection secret. Contacts CSV export can be imported (file upload). "
        "Outbound: 'Create Project' through the vendor's Zap catch hook, with an idempotency key the "
        "recommended Zap deduplicates on. Nothing can be listed, updated or deleted: no sync runs, no "
        "deletes, no lookup of what a Zap created.",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("create_project_hook_url",
                        "Catch Hook URL of the vendor's 'Create Project' Zap (https://hooks.zapier.com/hooks/"
                        "catch/...); optional, needed only to push projects to HoneyBook",
                        secret=True, required=False),
    )
    docs_url: ClassVar[str | None] = "https://zapier.com/apps/honeybook/integrations"

    @classmethod
    def validate_credentials(cls, credentials: Mapping[str, str], *, allow_private_urls: bool) -> None:
        url = credentials.get("create_project_hook_url")
        if url:
            check_catch_hook_url(url, allow_private=allow_private_urls)

    def __init__(self, *, create_project_hook_url: str | None = None, base_url: str | None = None,
                 account_key: str = "default", timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, allow_private_urls: bool | None = None) -> None:
        super().__init__(base_url=base_url, account_key=account_key, timeout=timeout, transport=transport)
        if allow_private_urls is None:
            from wedsync.config import get_settings

            allow_private_urls = get_settings().allow_private_urls
        self.hook_url = (check_catch_hook_url(create_project_hook_url, allow_private=allow_private_urls)
                         if create_project_hook_url else None)
        if self.hook_url:
            # the catch hook's path is its secret, and the HTTP layer logs request paths: scrub it
            register_secret(self.hook_url)
            register_secret(urlsplit(self.hook_url).path)
        self._client: ProviderClient | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _http(self) -> ProviderClient:
        if self.hook_url is None:
            raise Fatal("this HoneyBook connection has no Create Project hook URL", provider=self.slug,
                        code="no_outbound_hook")
        if self._client is None:
            self._client = ProviderClient(self.slug, self.hook_url, account_key=self.account_key,
                                          timeout=self.timeout, transport=self.transport,
                                          idempotency_header="Idempotency-Key",
                                          headers={"Accept": "application/json"})
        return self._client

    async def create_project(self, client: ClientRecord, wedding: WeddingRecord, *, idempotency_key: str,
                             others: Sequence[ClientRecord] = ()) -> CatchHookReceipt:
        """POST the project to the vendor's Create Project Zap; retried on timeouts with the same key.
        ``client`` is the project's client; ``others`` (a partner) go in ``other_clients`` as text."""
        if not idempotency_key or len(idempotency_key) > 200:
            raise InvalidInput("an idempotency key of 1..200 characters is required", code="invalid_input")
        payload = create_project_payload(client, wedding, idempotency_key, others=others)
        response = await self._http().request("POST", "", json=payload, idempotency_key=idempotency_key)
        try:
            body: Any = response.json()
        except ValueError as exc:
            raise SchemaMismatch("the catch hook did not answer JSON", provider=self.slug,
                                 http_status=response.status_code) from exc
        if not isinstance(body, dict) or body.get("status") != "success" or not body.get("request_id"):
            raise SchemaMismatch(f"the catch hook did not accept the project: {str(body)[:200]}",
                                 provider=self.slug, http_status=response.status_code)
        return CatchHookReceipt(str(body["request_id"]), str(body.get("attempt") or "") or None,
                                str(body["status"]), idempotency_key)
