"""Request and response bodies of the HTTP API (Pydantic v2)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["read", "write", "keys"]
ALL_SCOPES: tuple[Scope, ...] = ("read", "write", "keys")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VendorIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    timezone: str = Field(default="UTC", max_length=64)


class VendorOut(BaseModel):
    id: str
    name: str
    timezone: str
    created_at: datetime


class VendorCreated(VendorOut):
    api_key: str = Field(description="shown once; store it now")


class KeyIn(Strict):
    name: str = Field(default="default", min_length=1, max_length=200)
    scopes: list[Scope] = Field(default_factory=lambda: list(ALL_SCOPES))


class KeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreated(KeyOut):
    api_key: str = Field(description="shown once; store it now")


class ConnectionIn(Strict):
    provider: str = Field(min_length=1, max_length=64)
    base_url: str | None = Field(default=None, max_length=500)
    credentials: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)


class ConnectionOut(BaseModel):
    id: str
    provider: str
    base_url: str | None
    status: str
    status_detail: str | None
    settings: dict[str, Any]
    last_sync_at: datetime | None
    sync_interval_minutes: int | None = Field(
        description="the connection's own interval of scheduled incremental pulls; null: the hub's default")
    scheduled_every_minutes: int | None = Field(
        description="the interval in effect; null: not pulled on a schedule (manual only, or nothing to pull)")
    next_sync_at: datetime | None = Field(description="when the next scheduled pull is due (after the first run)")
    created_at: datetime
    webhook_url: str


class ConnectionPatch(Strict):
    sync_interval_minutes: int | None = Field(
        ge=0, le=43_200, description="minutes between scheduled incremental pulls; 0: manual only; null: the "
                                     "hub's default (WEDSYNC_SYNC_INTERVAL_MINUTES)")


class SyncIn(Strict):
    mode: Literal["full", "incremental"] = "incremental"


class SyncRunOut(BaseModel):
    id: str
    connection_id: str
    mode: str
    status: str
    started_at: str | None
    finished_at: str | None
    since: str | None
    pages: int
    processed: int
    created: int
    updated: int
    unchanged: int
    deleted: int
    errors: int
    error_detail: str | None
    progress: dict[str, Any]


class ClientOut(BaseModel):
    id: str
    connection_id: str
    provider: str
    remote_id: str
    kind: str
    first_name: str | None
    last_name: str | None
    display_name: str | None
    email: str | None
    phone: str | None
    company: str | None
    custom_fields: dict[str, Any]
    remote_modified_at: datetime | None
    synced_at: datetime
    deleted_at: datetime | None
    version: int


class WeddingOut(BaseModel):
    id: str
    connection_id: str
    provider: str
    remote_id: str
    name: str | None
    event_date: date | None
    stage: str | None
    closed: bool
    guest_count: int | None
    job_type: str | None
    client_remote_ids: list[str]
    custom_fields: dict[str, Any]
    remote_modified_at: datetime | None
    synced_at: datetime
    deleted_at: datetime | None
    version: int


class Paged(BaseModel):
    items: list[Any]
    next_cursor: str | None


class HookSubscriptionOut(BaseModel):
    id: str
    event: str
    remote_id: str
    created_at: datetime
