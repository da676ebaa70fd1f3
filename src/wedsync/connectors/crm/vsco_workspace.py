"""VSCO Workspace (formerly Tave) API v2 connector: contacts and jobs, REST hooks.

Channel: the public REST API (``X-API-KEY`` header, ``page``/``pageSize`` ≤ 100, 429 with
``Retry-After``). REST hooks carry only ``targetId`` and are unsigned, so a hook never updates a record
from its payload: the hub re-fetches the record it names with the API key.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

import httpx

from wedsync.connectors.auth import ApiKeyAuth
from wedsync.connectors.base import Capabilities, Channel, Connector, CredentialField, Page
from wedsync.connectors.errors import Fatal, SchemaMismatch
from wedsync.connectors.http import ProviderClient
from wedsync.domain.crm import ClientRecord, WeddingRecord, normalize_email, normalize_phone

PAGE_SIZE = 100

# stream name -> (list path, collection type, REST hook event announcing creations)
STREAMS: dict[str, tuple[str, str, str]] = {
    "contacts": ("/address-book", "addressbook-collection", "contact.created"),
    "jobs": ("/job", "job-collection", "job.created"),
}


def parse_ts(value: Any) -> datetime | None:
    if not value:
        return None
    if not isinstance(value, str):
        raise SchemaMismatch(f"timestamp is not a string: {value!r}", provider=VscoWorkspaceConnector.slug)
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SchemaMismatch(f"bad timestamp {value!r}", provider=VscoWorkspaceConnector.slug) from exc


def parse_date(value: Any) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise SchemaMismatch(f"bad date {value!r}", provider=VscoWorkspaceConnector.slug) from exc


def _custom_fields(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cf in item.get("customFields") or []:
        if isinstance(cf, dict) and cf.get("fieldId"):
            out[str(cf["fieldId"])] = cf.get("value")
    return out


def map_phone(value: Any, default_region: str | None) -> str | None:
    """A Workspace phone object (``e164``, ``extension``, ``formatted``, ``countryCode``) in E.164."""
    if value is None:
        return None
    if isinstance(value, str):  # tolerate the legacy plain-string form
        return normalize_phone(value, default_region)
    if not isinstance(value, dict):
        raise SchemaMismatch("phone is neither an object nor a string", provider=VscoWorkspaceConnector.slug)
    e164, ext = value.get("e164"), value.get("extension")
    if isinstance(e164, str) and e164:
        base = e164.split("x", 1)[0]
        return f"{base};ext={int(ext)}" if isinstance(ext, int | float) and ext else base
    formatted = value.get("formatted")
    region = value.get("countryCode") or default_region
    return normalize_phone(formatted, region.upper() if isinstance(region, str) else None)


def map_contact(item: dict[str, Any]) -> ClientRecord:
    """Map an address-book entry (Person, Company, Employee, Location) to a ClientRecord."""
    try:
        remote_id = str(item["id"])
        kind = str(item.get("kind") or "person")
    except (KeyError, TypeError) as exc:
        raise SchemaMismatch("contact without id", provider=VscoWorkspaceConnector.slug) from exc
    address = item.get("mailingAddress") or item.get("address")
    country = address.get("country") if isinstance(address, dict) else None
    phone = next((p for p in (item.get("cellPhone"), item.get("homePhone"), item.get("workPhone"))
                  if p and (not isinstance(p, dict) or p.get("e164") or p.get("formatted"))), None)
    first, last = item.get("firstName"), item.get("lastName")
    name = item.get("name") or " ".join(p for p in (first, last) if p) or None
    if isinstance(address, dict):
        address = {k: address.get(k) for k in ("streetAddress", "village", "city", "state", "postalCode",
                                                 "country") if address.get(k) is not None}
    return ClientRecord(
        remote_id=remote_id,
        kind=kind,
        first_name=first,
        last_name=last,
        display_name=name,
        email=normalize_email(item.get("email")),
        phone=map_phone(phone, country if isinstance(country, str) else None),
        company=item.get("companyName"),
        address=address or None,
        custom_fields=_custom_fields(item),
        remote_created_at=parse_ts(item.get("created")),
        remote_modified_at=parse_ts(item.get("modified")),
    )


def map_job(item: dict[str, Any]) -> WeddingRecord:
    """Map a job to a WeddingRecord."""
    try:
        remote_id = str(item["id"])
    except (KeyError, TypeError) as exc:
        raise SchemaMismatch("job without id", provider=VscoWorkspaceConnector.slug) from exc
    guests = item.get("guestCount")
    return WeddingRecord(
        remote_id=remote_id,
        name=item.get("name") or item.get("title"),
        event_date=parse_date(item.get("eventDate")),
        stage=item.get("stage"),
        closed=bool(item.get("closed")),
        guest_count=int(guests) if isinstance(guests, int) else None,
        job_type=item.get("jobTypeName"),
        custom_fields=_custom_fields(item),
        remote_created_at=parse_ts(item.get("created")),
        remote_modified_at=parse_ts(item.get("modified")),
    )


class VscoWorkspaceConnector(Connector):
    slug: ClassVar[str] = "vsco-workspace"
    display_name: ClassVar[str] = "VSCO Workspace (Tave)"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="crm",
        read=("contacts", "jobs"),
        write=(),
        webhooks=("contact.created", "job.created"),
        incremental=("contacts", "jobs"),
        notes="API v2 with X-API-KEY. Incremental pulls sort by modified desc with a lookback window; "
        "deletions are detected by full syncs (the API lists no tombstones). REST hooks are unsigned "
        "and carry only targetId: the hub re-fetches the record. Write-back is not built yet.",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("api_key", "Workspace API key (Settings > API)"),
    )
    default_base_url: ClassVar[str | None] = "https://workspace.vsco.co/api/v2"
    docs_url: ClassVar[str | None] = "https://workspace.vsco.co/api/v2/openapi.json"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        account_key: str = "default",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.client = ProviderClient(
            self.slug,
            base_url or self.default_base_url or "",
            auth=ApiKeyAuth("X-API-KEY", api_key),
            account_key=account_key,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def list_page(self, stream: str, page: int, *, sort: str = "id asc",
                        page_size: int = PAGE_SIZE) -> Page:
        """Fetch one page of a stream; ``sort`` is the API's ``sortBy`` (e.g. ``modified desc``)."""
        path, ctype, _ = self._stream(stream)
        params: dict[str, Any] = {"page": page, "pageSize": page_size, "sortBy": sort}
        if stream == "jobs":
            params["includeClosed"] = "true"
        else:
            params["includeHidden"] = "true"  # hidden contacts are still the studio's clients
        body = await self.client.get_json(path, params=params)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise SchemaMismatch(f"{path} did not return a collection", provider=self.slug)
        if body.get("type") not in (None, ctype):
            raise SchemaMismatch(f"{path} returned a {body.get('type')!r}, expected {ctype}",
                                 provider=self.slug)
        raw_meta = body.get("meta")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        items = body["items"]
        total_items = meta.get("totalItems")
        total_pages = meta.get("totalPages")
        if not isinstance(total_pages, int) or isinstance(total_pages, bool) or total_pages < 0:
            # ``meta`` is optional in the spec: without it, a full page means there may be another one.
            total_pages = page + 1 if len(items) >= page_size else page
            total_items = None
        elif not isinstance(total_items, int) or isinstance(total_items, bool):
            total_items = None
        return Page(items=items, page=page, total_pages=total_pages, total_items=total_items)

    async def get_record(self, stream: str, remote_id: str) -> dict[str, Any] | None:
        """Fetch one record; None when the provider says it no longer exists."""
        path, _, _ = self._stream(stream)
        try:
            body = await self.client.get_json(f"{path}/{remote_id}")
        except Fatal as exc:
            if exc.http_status == 404:
                return None
            raise
        if not isinstance(body, dict) or "id" not in body:
            raise SchemaMismatch(f"{path}/{{id}} did not return an entity", provider=self.slug)
        return body

    async def job_contact_ids(self, job_id: str) -> list[str]:
        """The contact ids linked to a job (``GET /job-contact?jobId=``)."""
        ids: list[str] = []
        page = 1
        while True:
            body = await self.client.get_json("/job-contact", params={"jobId": job_id, "page": page,
                                                                      "pageSize": PAGE_SIZE})
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise SchemaMismatch("/job-contact did not return a collection", provider=self.slug)
            ids.extend(str(i["contactId"]) for i in items if isinstance(i, dict) and i.get("contactId"))
            meta = body.get("meta") or {}
            if page >= int(meta.get("totalPages") or 1):
                return ids
            page += 1

    async def subscribe(self, event: str, url: str) -> str:
        """Create a REST hook; returns its id."""
        body = await self.client.request("POST", "/rest-hook", json={"event": event, "url": url})
        data = body.json()
        if not isinstance(data, dict) or not data.get("id"):
            raise SchemaMismatch("/rest-hook did not return an id", provider=self.slug)
        return str(data["id"])

    async def unsubscribe(self, hook_id: str) -> None:
        try:
            await self.client.request("DELETE", f"/rest-hook/{hook_id}")
        except Fatal as exc:
            if exc.http_status != 404:
                raise

    @staticmethod
    def stream_for_event(event: str) -> str | None:
        for stream, (_, _, ev) in STREAMS.items():
            if ev == event:
                return stream
        return None

    def _stream(self, stream: str) -> tuple[str, str, str]:
        try:
            return STREAMS[stream]
        except KeyError:
            raise Fatal(f"VSCO Workspace has no stream {stream!r}", provider=self.slug) from None

    @staticmethod
    def map(stream: str, item: dict[str, Any]) -> ClientRecord | WeddingRecord:
        return map_contact(item) if stream == "contacts" else map_job(item)
