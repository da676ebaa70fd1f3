"""CRM hub API: the seed's sync endpoint, unified clients, merges (+undo), conflicts (+resolve), policies,
custom field mappings, CSV import jobs (upload, status, bad-row report), CSV export and the write-back outbox."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

from wedsync.api.deps import (
    Cursor,
    HubDep,
    Limit,
    PrincipalDep,
    Reader,
    VendorHeader,
    VendorId,
    Writer,
    next_cursor,
    read_body,
    too_large,
)
from wedsync.api.responses import (
    CrmClientDetailOut,
    CrmClientOut,
    CrmConflictOut,
    CrmOutboxOut,
    CrmSyncRunOut,
    ImportErrorsPage,
    ImportJobOut,
    MappingOut,
    MappingsSetOut,
    MergesPage,
    MergeUndoneOut,
    PolicyOut,
)
from wedsync.api.schemas import MAX_INT64, Page, Strict
from wedsync.bootstrap import Hub
from wedsync.connectors.channels.csv_layouts import LAYOUTS
from wedsync.errors import InvalidInput
from wedsync.logging import get_logger
from wedsync.services.crm_sync import (
    MAX_CUSTOM_FIELD_JSON,
    MAX_IMPORT_BYTES,
    NO_VALUE,
    DirectImportSteps,
    drive_import,
)
from wedsync.workflows import crm as crm_workflows

# documented as an enum; checked by the service (its own code, `unknown_layout`)
LayoutQuery = Query(min_length=1, max_length=32, json_schema_extra={"enum": sorted(LAYOUTS)})

#: Bounds of the CRM bodies that fan out into many rows or a large JSON column (``docs/crm.md``).
MAX_MAPPINGS = 500
MAX_CUSTOM_FIELDS = 200
CustomFieldName = Annotated[str, Field(min_length=1, max_length=200)]

router = APIRouter(tags=["crm"])
log = get_logger("wedsync.api.crm")
_background: set[asyncio.Task[Any]] = set()


class CrmProviderIn(BaseModel):
    """The seed's ``CRMProvider`` object (``{name, apiVersion, authentication, capabilities, ...}``): only its
    ``name`` is read; what else it describes is the hub's own knowledge of the provider, and is ignored."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=40)


class CrmSyncIn(Strict):
    """The seed's request: ``{vendorId, crmProvider, syncType}``; ``waitSeconds`` waits for the run's end."""

    vendorId: str | None = Field(default=None, min_length=1, max_length=26,  # the seed's camelCase wire names
                                 description="the caller's vendor (an operator may name it in X-WedSync-Vendor "
                                             "instead; both: the same one)")
    crmProvider: Annotated[str, Field(min_length=1, max_length=40)] | CrmProviderIn = Field(
        description="the provider's slug, alias or name ('tave', 'vsco-workspace', 'VSCO Workspace', 'honeybook'), "
                    "or the seed's CRMProvider object, of which only `name` is read")
    connectionId: str | None = Field(default=None, min_length=1, max_length=26,
                                     description="which of the vendor's connections to that provider (required "
                                                 "when there are several)")
    syncType: str = Field(default="incremental", min_length=1, max_length=20)
    waitSeconds: float = Field(default=0, ge=0, le=120)


class AddressIn(Strict):
    """A postal address as the sources hold it (VSCO Workspace's keys); ``country`` is stored as its ISO 3166-1
    code when recognised ("Brazil" -> ``BR``)."""

    streetAddress: str | None = Field(default=None, max_length=512)
    village: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=200)
    state: str | None = Field(default=None, max_length=200)
    postalCode: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, max_length=100)


class ClientPatch(Strict):
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    display_name: str | None = Field(default=None, max_length=400)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    company: str | None = Field(default=None, max_length=200)
    address: AddressIn | None = Field(default=None, description="the whole address (parts left out are cleared); "
                                                                "null clears it")
    custom_fields: dict[CustomFieldName, Any] | None = Field(
        default=None, max_length=MAX_CUSTOM_FIELDS,
        description=f"at most {MAX_CUSTOM_FIELDS} fields, names of 1 to 200 characters, each value at most "
                    f"{MAX_CUSTOM_FIELD_JSON} characters as JSON")
    expected_version: int | None = Field(default=None, ge=1, le=MAX_INT64)


    @field_validator("custom_fields")
    @classmethod
    def _custom_values(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for name, v in (value or {}).items():
            if len(json.dumps(v, separators=(",", ":"))) > MAX_CUSTOM_FIELD_JSON:
                raise PydanticCustomError("value_too_large", "custom field '{name}' is over {max} characters as "
                                                             "JSON", {"name": name, "max": MAX_CUSTOM_FIELD_JSON})
        return value


class ResolveIn(Strict):
    """``value`` is required with the choice ``value`` (null clears the field, as a PATCH with null does)."""

    choice: Literal["incoming", "local", "value"]
    value: Any = None


class PolicyIn(Strict):
    field: str = Field(default="*", min_length=1, max_length=200)
    connection_id: str = Field(default="*", min_length=1, max_length=26)
    kind: Literal["source_of_truth", "newest_wins", "manual"]
    source: str | None = Field(default=None, max_length=64)
    skew_seconds: int = Field(default=120, ge=0, le=86_400)


class MappingsIn(Strict):
    mappings: dict[CustomFieldName, CustomFieldName | None] = Field(
        max_length=MAX_MAPPINGS, description=f"source field -> unified field (null: not mapped); at most "
                                             f"{MAX_MAPPINGS} entries, names of 1 to 200 characters")
    entity: Literal["client"] = "client"


# -- the seed endpoint -----------------------------------------------------------------------------------
@router.post("/api/integrations/crm/sync", response_model=CrmSyncRunOut)
async def crm_sync(body: CrmSyncIn, hub: HubDep, principal: PrincipalDep, _w: Writer,
                   x_wedsync_vendor: VendorHeader = None) -> dict[str, Any]:
    """Start a sync of the vendor's CRM connection (``crmProvider``: tave/vsco-workspace, honeybook, ...).
    Returns ``{success, recordsProcessed, syncId, nextSync}`` plus the run; poll the GET for progress."""
    from wedsync.workflows.sync import start_sync

    # another vendor's id: 404, never its data; the header and the body naming different vendors: 422
    vendor_id = hub.tenancy.acting_vendor(principal, x_wedsync_vendor, named=body.vendorId)
    provider = body.crmProvider if isinstance(body.crmProvider, str) else body.crmProvider.name
    conn, mode = hub.crm.check_sync_request(vendor_id, provider, body.syncType, connection_id=body.connectionId)
    run_id = await start_sync(vendor_id, conn.id, mode)
    deadline = asyncio.get_running_loop().time() + body.waitSeconds
    out: dict[str, Any] = hub.crm.run_out(vendor_id, run_id)
    while not out["finished"] and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        out = hub.crm.run_out(vendor_id, run_id)
    return out


@router.get("/api/integrations/crm/sync/{sync_id}", response_model=CrmSyncRunOut)
def crm_sync_status(sync_id: str, hub: HubDep, vendor_id: VendorId, _r: Reader) -> dict[str, Any]:
    """The run: processed, created, updated, merged, conflicts, errors (and progress per stream)."""
    return dict(hub.crm.run_out(vendor_id, sync_id))


# -- unified clients -----------------------------------------------------------------------------------------
@router.get("/api/crm/clients", response_model=Page[CrmClientOut])
def list_clients(hub: HubDep, vendor_id: VendorId, _r: Reader, after: Cursor = None, limit: Limit = 100,
                 q: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
    """Unified clients (one per person across every source), oldest first; ``next_cursor`` -> ``after``."""
    items, nxt = hub.crm.list_clients(vendor_id, after=after, limit=limit, q=q)
    return {"items": items, "next_cursor": nxt}


@router.get("/api/crm/clients/{client_id}", response_model=CrmClientDetailOut)
def get_client(client_id: str, hub: HubDep, vendor_id: VendorId, _r: Reader) -> dict[str, Any]:
    """A unified client with its source records, weddings, merges and open conflicts."""
    return dict(hub.crm.get_client(vendor_id, client_id))


@router.patch("/api/crm/clients/{client_id}", response_model=CrmClientDetailOut)
async def update_client(client_id: str, body: ClientPatch, hub: HubDep, vendor_id: VendorId,
                        _w: Writer) -> dict[str, Any]:
    """Edit the unified record; sources that take write-backs get them through the outbox."""
    changes = body.model_dump(exclude_unset=True, exclude={"expected_version"})
    if not changes:
        raise InvalidInput("nothing to change", code="empty_patch")
    if isinstance(changes.get("address"), dict):  # the parts given, blank ones left out; none at all clears it
        changes["address"] = {k: v.strip() for k, v in changes["address"].items()
                              if isinstance(v, str) and v.strip()} or None
    out = dict(hub.crm.update_client(vendor_id, client_id, changes, body.expected_version))
    await crm_workflows.poke_outbox_drain()
    return out


# -- merges -------------------------------------------------------------------------------------------------
@router.get("/api/crm/merges", response_model=MergesPage)
def list_merges(hub: HubDep, vendor_id: VendorId, _r: Reader, client_id: str | None = None,
                include_undone: bool = True, after: Cursor = None, limit: Limit = 200) -> dict[str, Any]:
    """Merges with their rule, score and evidence, newest first (``next_cursor`` as ``after`` for the next
    page); ``by_rule`` counts those in force."""
    items = hub.crm.list_merges(vendor_id, client_id=client_id, include_undone=include_undone, limit=limit,
                                after=after)
    return {"items": items, "next_cursor": next_cursor(items, limit), "by_rule": hub.crm.merge_summary(vendor_id)}



@router.post("/api/crm/merges/{merge_id}/undo", response_model=MergeUndoneOut)
def undo_merge(merge_id: str, hub: HubDep, vendor_id: VendorId, _w: Writer) -> dict[str, Any]:
    """Unmerge: the merged source record becomes its own client again (both identities restored)."""
    return dict(hub.crm.undo_merge(vendor_id, merge_id))


# -- conflicts ----------------------------------------------------------------------------------------------
@router.get("/api/crm/conflicts", response_model=Page[CrmConflictOut])
def list_conflicts(hub: HubDep, vendor_id: VendorId, _r: Reader,
                   status_: Annotated[Literal["open", "auto", "resolved", "dismissed", "all"],
                                      Query(alias="status")] = "open",
                   client_id: str | None = None, after: Cursor = None, limit: Limit = 200) -> dict[str, Any]:
    """Field conflicts, oldest first: ``open`` (the manual queue), ``auto`` (settled by policy), ``resolved``,
    ``dismissed`` (the merge that raised it was undone) or ``all``; ``next_cursor`` as ``after`` for the next
    page."""
    items = hub.crm.list_conflicts(vendor_id, status=None if status_ == "all" else status_, client_id=client_id,
                                   limit=limit, after=after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


@router.post("/api/crm/conflicts/{conflict_id}/resolve", response_model=CrmConflictOut)
async def resolve_conflict(conflict_id: str, body: ResolveIn, hub: HubDep, vendor_id: VendorId,
                           _w: Writer) -> dict[str, Any]:
    value = body.value if "value" in body.model_fields_set else NO_VALUE  # omitted is not null
    out = dict(hub.crm.resolve_conflict(vendor_id, conflict_id, body.choice, value))
    await crm_workflows.poke_outbox_drain()
    return out


# -- policies and field mappings ---------------------------------------------------------------------------------
@router.get("/api/crm/policies", response_model=Page[PolicyOut])
def list_policies(hub: HubDep, vendor_id: VendorId, _r: Reader, after: Cursor = None, limit: Limit = 100
                  ) -> dict[str, Any]:
    """Conflict policies by connection, then field (without one, a field is ``newest_wins`` with a 120 s
    clock-skew allowance); ``next_cursor`` as ``after`` for the next page."""
    items = hub.crm.list_policies(vendor_id, limit=limit, after=after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


@router.put("/api/crm/policies", response_model=PolicyOut)
def set_policy(body: PolicyIn, hub: HubDep, vendor_id: VendorId, _w: Writer) -> dict[str, Any]:
    return dict(hub.crm.set_policy(vendor_id, field=body.field, connection_id=body.connection_id,
                                   kind=body.kind, source=body.source, skew_seconds=body.skew_seconds))


@router.delete("/api/crm/policies/{policy_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_policy(policy_id: str, hub: HubDep, vendor_id: VendorId, _w: Writer) -> None:
    """Remove a conflict policy (its ``id`` from the list; 404 for an id that is not one of the vendor's): new
    conflicts on its connection and field follow the next less specific policy, or the default."""
    hub.crm.delete_policy(vendor_id, policy_id)


@router.get("/api/crm/connections/{connection_id}/field-mappings", response_model=Page[MappingOut])
def list_mappings(connection_id: str, hub: HubDep, vendor_id: VendorId, _r: Reader, after: Cursor = None,
                  limit: Limit = 100) -> dict[str, Any]:
    """The connection's custom field mappings by entity, then source key; ``next_cursor`` as ``after`` for the
    next page."""
    items, nxt = hub.crm.mappings_page(vendor_id, connection_id, limit=limit, after=after)
    return {"items": items, "next_cursor": nxt}


@router.put("/api/crm/connections/{connection_id}/field-mappings", response_model=MappingsSetOut)
def set_mappings(connection_id: str, body: MappingsIn, hub: HubDep, vendor_id: VendorId,
                 _w: Writer) -> dict[str, Any]:
    """Replace the connection's custom field mapping; existing clients are re-mapped at once, no resync."""
    return dict(hub.crm.set_mappings(vendor_id, connection_id, body.mappings, body.entity))


# -- imports and exports ------------------------------------------------------------------------------------------
_CSV_BODY = {"type": "string", "format": "binary", "description": "the product's CSV export, as exported"}
_IMPORT_BODY = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": _CSV_BODY},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": _CSV_BODY}}},
}}}


async def _upload(request: Request) -> tuple[bytes, str | None]:
    """The uploaded file: the raw body (``text/csv`` and the like), or the ``file`` part of a form upload
    (a browser's file input, ``curl -F file=@export.csv``) with its file name."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    limit = MAX_IMPORT_BYTES
    if ctype != "multipart/form-data":
        return await read_body(request, limit, code="file_too_large", what="the file"), None
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 64 * 1024:  # the file and the form's own few lines
        raise too_large("the file", limit, "file_too_large")
    try:
        form = await request.form(max_files=1, max_fields=20)
    except HTTPException:  # the body passed the route's limit while streaming in (``api/limits.py``): 413
        raise
    except Exception as exc:  # a malformed or truncated form: the client's error, said plainly
        raise InvalidInput(f"the multipart form could not be read: {exc}", code="malformed_form") from None
    try:
        part = form.get("file")
        if part is None:  # a form whose file field has another name: its one file
            part = next((v for v in form.values() if not isinstance(v, str)), None)
        if part is None or isinstance(part, str):
            raise InvalidInput("the form has no file: send the CSV export as the 'file' field",
                               code="missing_file")
        if part.size is not None and part.size > limit:  # a chunked form: spooled to disk, never read whole
            raise too_large("the file", limit, "file_too_large")
        return await part.read(), part.filename
    finally:
        await form.close()


@router.post("/api/crm/imports", status_code=status.HTTP_202_ACCEPTED, openapi_extra=_IMPORT_BODY,
             response_model=ImportJobOut)
async def create_import(request: Request, hub: HubDep, vendor_id: VendorId, _w: Writer,
                        layout: Annotated[str, LayoutQuery],
                        connection_id: Annotated[str | None, Query(max_length=26)] = None,
                        filename: Annotated[str | None, Query(max_length=300)] = None,
                        chunk_size: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> dict[str, Any]:
    """Upload a product's CSV export as the request body (``text/csv``) or as the ``file`` field of a
    ``multipart/form-data`` upload; the file is checked as a whole (encoding, header, required columns) before
    anything is stored, then imported by a workflow, chunk by chunk. Poll ``GET /api/crm/imports/{id}``; bad
    rows: ``GET /api/crm/imports/{id}/errors``."""
    data, uploaded_name = await _upload(request)
    job = await asyncio.to_thread(hub.crm.create_import, vendor_id, layout, data, connection_id=connection_id,
                                  filename=filename or uploaded_name, chunk_size=chunk_size)
    await _start_import(hub, job["id"])
    return dict(hub.crm.import_status(vendor_id, job["id"]))


@router.get("/api/crm/imports", response_model=Page[ImportJobOut])
def list_imports(hub: HubDep, vendor_id: VendorId, _r: Reader, after: Cursor = None,
                 limit: Limit = 50) -> dict[str, Any]:
    """CSV import jobs, newest first; ``next_cursor`` as ``after`` for the next page."""
    items = hub.crm.list_imports(vendor_id, limit, after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


@router.get("/api/crm/imports/{job_id}", response_model=ImportJobOut)
def import_status(job_id: str, hub: HubDep, vendor_id: VendorId, _r: Reader) -> dict[str, Any]:
    return dict(hub.crm.import_status(vendor_id, job_id))


LineCursor = Annotated[int | None, Query(ge=0, le=MAX_INT64,
                                          description="next_cursor of the previous page (a line number)")]


@router.get("/api/crm/imports/{job_id}/errors", response_model=ImportErrorsPage)
def import_errors(job_id: str, hub: HubDep, vendor_id: VendorId, _r: Reader, after: LineCursor = None,
                  after_line: Annotated[int | None, Query(ge=0, le=MAX_INT64, deprecated=True,
                                                          description="the former name of after")] = None,
                  limit: Limit = 500) -> dict[str, Any]:
    """The bad rows, by line: column, machine-readable code, reason; ``skipped`` rows were not imported. Paged
    like every list (``next_cursor`` as ``after``), by line: the cursor is the last line of the page (a page
    ends with a whole line, so it may hold a few more than ``limit``). ``after_line``/``next_after_line`` are
    the former names, still answered."""
    if after is not None and after_line is not None and after != after_line:
        raise InvalidInput("after and after_line name the same cursor: send one", code="conflicting_cursor")
    start = after if after is not None else after_line or 0
    items = hub.crm.import_errors(vendor_id, job_id, after_line=start, limit=limit)
    nxt = items[-1]["line"] if len(items) >= limit else None
    return {"items": items, "next_cursor": nxt, "next_after_line": nxt}


class CsvResponse(StreamingResponse):
    media_type = "text/csv"  # what the OpenAPI document says the 200 is (not FastAPI's default JSON)


@router.get("/api/crm/export", response_class=CsvResponse,
            responses={200: {"description": "the CSV export", "content": {"text/csv": {"schema": {
                "type": "string"}}}}})
def export_csv(hub: HubDep, vendor_id: VendorId, _r: Reader,
               layout: Annotated[str, LayoutQuery],
               connection_id: Annotated[str | None, Query(max_length=26)] = None) -> StreamingResponse:
    """The unified clients (or one connection's records) as the product's CSV, streamed."""
    chunks = hub.crm.export_csv(vendor_id, layout, connection_id=connection_id)
    return CsvResponse(chunks, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="wedsync-{layout}.csv"'})


@router.get("/api/crm/outbox", response_model=Page[CrmOutboxOut])
def list_outbox(hub: HubDep, vendor_id: VendorId, _r: Reader, after: Cursor = None,
                limit: Limit = 100) -> dict[str, Any]:
    """Write-backs to providers, newest first: pending, done (with the echo seen or not) or failed;
    ``next_cursor`` as ``after`` for the next page."""
    items = hub.crm.list_outbox(vendor_id, limit, after)
    return {"items": items, "next_cursor": next_cursor(items, limit)}


# -- helpers ---------------------------------------------------------------------------------------------------------
async def _start_import(hub: Hub, job_id: str) -> None:
    """Enqueue the import workflow; without the workflow runtime (an API started with
    ``launch_workflows=False``) the import runs in this process instead, not durably."""
    try:
        from wedsync.workflows.crm import start_import

        await start_import(job_id)
    except RuntimeError:
        log.warning("workflows not running: import runs in-process", job_id=job_id)
        task = asyncio.create_task(drive_import(job_id, DirectImportSteps(hub.crm)))
        _background.add(task)
        task.add_done_callback(_background.discard)

