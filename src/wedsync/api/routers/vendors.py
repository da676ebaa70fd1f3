"""Vendors and their API keys."""

from __future__ import annotations

from fastapi import APIRouter, status

from wedsync.api.deps import Cursor, HubDep, KeyAdmin, Limit, Operator, Reader, VendorId, next_cursor
from wedsync.api.schemas import KeyCreated, KeyIn, KeyOut, Page, VendorCreated, VendorIn, VendorOut
from wedsync.store.tables import ApiKey

router = APIRouter(prefix="/api", tags=["vendors"])


def _key_out(k: ApiKey) -> KeyOut:
    return KeyOut(id=k.id, name=k.name, scopes=list(k.scopes or []), created_at=k.created_at,
                  revoked_at=k.revoked_at, last_used_at=k.last_used_at)


@router.post("/vendors", status_code=status.HTTP_201_CREATED, response_model=VendorCreated)
def create_vendor(body: VendorIn, hub: HubDep, op: Operator) -> VendorCreated:
    """Operator only (with the ``write`` and ``keys`` scopes): create a vendor and its first API key (shown
    once)."""
    op.require("write")
    op.require("keys")
    v = hub.tenancy.create_vendor(body.name, body.timezone)
    _, plaintext = hub.tenancy.create_key(v.id, name="default")
    return VendorCreated(id=v.id, name=v.name, timezone=v.timezone, created_at=v.created_at, api_key=plaintext)


@router.get("/vendors", response_model=Page[VendorOut])
def list_vendors(hub: HubDep, op: Operator, after: Cursor = None, limit: Limit = 100) -> Page[VendorOut]:
    """Operator only (``read`` scope): every vendor, oldest first; pass ``next_cursor`` as ``after`` for the next
    page."""
    op.require("read")
    items = [VendorOut(id=v.id, name=v.name, timezone=v.timezone, created_at=v.created_at)
             for v in hub.tenancy.list_vendors(limit=limit, after=after)]
    return Page(items=items, next_cursor=next_cursor(items, limit, lambda v: v.id))


@router.get("/vendor", response_model=VendorOut)
def get_my_vendor(hub: HubDep, vendor_id: VendorId, _p: Reader) -> VendorOut:
    """The caller's vendor."""
    v = hub.tenancy.get_vendor(vendor_id)
    return VendorOut(id=v.id, name=v.name, timezone=v.timezone, created_at=v.created_at)


@router.get("/keys", response_model=Page[KeyOut])
def list_keys(hub: HubDep, vendor_id: VendorId, _p: KeyAdmin, after: Cursor = None, limit: Limit = 100
              ) -> Page[KeyOut]:
    """The vendor's API keys (revoked ones too), oldest first; pass ``next_cursor`` as ``after`` for the next
    page."""
    items = [_key_out(k) for k in hub.tenancy.list_keys(vendor_id, limit=limit, after=after)]
    return Page(items=items, next_cursor=next_cursor(items, limit, lambda k: k.id))


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
def create_key(body: KeyIn, hub: HubDep, vendor_id: VendorId, p: KeyAdmin) -> KeyCreated:
    """Create an API key for the caller's vendor with at most the caller's scopes (``403 scope_escalation``
    otherwise; without ``scopes``, the caller's own); the key is in this response only."""
    if "scopes" not in body.model_fields_set:
        body.scopes = sorted(p.scopes)  # type: ignore[assignment,arg-type]
    p.may_grant(body.scopes)
    row, plaintext = hub.tenancy.create_key(vendor_id, name=body.name, scopes=body.scopes)
    return KeyCreated(**_key_out(row).model_dump(), api_key=plaintext)


@router.delete("/keys/{key_id}", response_model=KeyOut)
def revoke_key(key_id: str, hub: HubDep, vendor_id: VendorId, _p: KeyAdmin) -> KeyOut:
    return _key_out(hub.tenancy.revoke_key(vendor_id, key_id))
