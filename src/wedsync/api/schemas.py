"""Request and response bodies of the HTTP API (Pydantic v2)."""

from __future__ import annotations

import functools
import os
import re
import types
import typing
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

#: The largest integer the database stores (a signed 64-bit column): an id cursor or a version above it was a
#: 500 (``OverflowError`` on SQLite, ``integer out of range`` on PostgreSQL).
MAX_INT64 = 2**63 - 1

Scope = Literal["read", "write", "keys"]
ItemT = TypeVar("ItemT")
ALL_SCOPES: tuple[Scope, ...] = ("read", "write", "keys")

_NUMERIC_TEXT = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _iso_text(value: Any) -> Any:
    """A date or date-time in a query or body is ISO 8601 text, as the OpenAPI document says: Pydantic's lax mode
    would also read ``0.5`` or ``1700000000`` as a Unix time, which no client means by it."""
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str) or _NUMERIC_TEXT.fullmatch(value):
        raise PydanticCustomError("iso_datetime", "expected an ISO 8601 date or date-time, e.g. 2027-06-12 or "
                                                  "2027-06-12T15:00:00-07:00")
    return value


#: A query parameter's date-time: ISO 8601 text only (see ``_iso_text``).
IsoDatetime = Annotated[datetime, BeforeValidator(_iso_text)]


def _utc_if_naive(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: A moment the hub itself recorded (a sync time, always written in UTC): ``2026-12-03`` or a time without an
#: offset is read in UTC, as every time the API answers is.
UtcDatetime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_utc_if_naive)]

# JSON type each annotation admits in a request body (Pydantic's lax mode would also take ``true`` for 1 and
# ``"5"`` for 5, so ``{"sync_interval_minutes": true}`` meant one minute).
_JSON_KIND = {bool: "boolean", int: "integer", float: "number", Decimal: "number", datetime: "date-time",
              date: "date"}


def _kind_of(annotation: Any) -> str | None:
    """The JSON kind a field is checked against, or None (strings, lists, objects, literals: Pydantic's own
    checks are strict enough for those)."""
    if annotation in _JSON_KIND:
        return _JSON_KIND[annotation]
    origin = typing.get_origin(annotation)
    if origin is Annotated:  # ``AmountMinor | None``: the constrained type inside the union
        return _kind_of(typing.get_args(annotation)[0])
    if origin is list:
        (item,) = typing.get_args(annotation) or (None,)
        inner = _kind_of(item)
        return f"list:{inner}" if inner is not None else None
    if origin is typing.Union or origin is types.UnionType:
        kinds = {_kind_of(a) for a in typing.get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    return None


def _json_type_ok(kind: str, value: Any) -> bool:
    if value is None:
        return True  # None is Pydantic's to accept or refuse
    if kind.startswith("list:"):
        return not isinstance(value, list) or all(_json_type_ok(kind[5:], v) for v in value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":  # JSON Schema's integer: 15 and 15.0 (a number with a zero fraction), not 15.5
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float)
                                                                            and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str | datetime | date) and not (isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value))


#: C0 control characters but tab, line feed and carriage return (``api/limits.TEXT_CONTROL``).
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


#: The most entries of any object or array in a body (a field may allow fewer), and the longest object key.
MAX_ENTRIES = 1000
MAX_KEY_LENGTH = 200


def _check_value(value: Any) -> None:
    """Refuse, in a body value at any depth, a control character in a string or an object key (PostgreSQL cannot
    store NUL in text: it was a 500), an object or array of more than ``MAX_ENTRIES`` entries and an object key
    longer than ``MAX_KEY_LENGTH`` (300,000 field mappings held SQLite's write lock for 43 s)."""
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            if _TEXT_CONTROL.search(v):
                raise PydanticCustomError("invalid_characters", "text may not contain control characters (such "
                                                                "as NUL) other than tab, line feed and carriage "
                                                                "return")
        elif isinstance(v, dict | list | tuple):
            if len(v) > MAX_ENTRIES:
                raise PydanticCustomError("too_many_entries", "at most {max} entries in an object or array",
                                          {"max": MAX_ENTRIES})
            if isinstance(v, dict):
                for k in v:
                    if isinstance(k, str) and len(k) > MAX_KEY_LENGTH:
                        raise PydanticCustomError("key_too_long", "object keys are at most {max} characters",
                                                  {"max": MAX_KEY_LENGTH})
                todo.extend(v.keys())
                todo.extend(v.values())
            else:
                todo.extend(v)


class Strict(BaseModel):
    """A request body: unknown fields refused, each value of the JSON type the schema documents (a boolean
    is not a number, a number is not a date, ``"5"`` is not 5), no control character in any string, and no
    object or array larger than ``MAX_ENTRIES`` (``_check_value``)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _json_types(cls, value: Any, info: ValidationInfo) -> Any:
        kind = _field_kinds(cls).get(info.field_name or "")
        if kind is not None and not _json_type_ok(kind, value):
            raise PydanticCustomError("json_type", "expected a JSON {kind}, got {got}",
                                      {"kind": kind.replace("list:", "list of "), "got": type(value).__name__})
        _check_value(value)
        return value


@functools.cache
def _field_kinds(cls: type[BaseModel]) -> dict[str, str]:
    return {name: kind for name, f in cls.model_fields.items() if (kind := _kind_of(f.annotation)) is not None}


#: Whether a response key its model does not declare is an error (the test suite sets it, so such a key fails a
#: test) or is answered as it is (production: a client never gets a 500 for a key the document forgot).
STRICT_RESPONSES = os.environ.get("WEDSYNC_STRICT_RESPONSES", "").lower() in ("1", "true", "yes")


class Out(BaseModel):
    """A response body whose every key is declared (``additionalProperties: false`` in the OpenAPI document). In
    the test suite (``WEDSYNC_STRICT_RESPONSES=1``) a key the route would answer without its model declaring it
    is a response validation error; in production it is answered, never dropped and never a 500
    (``api/responses.py``)."""

    model_config = ConfigDict(extra="forbid") if STRICT_RESPONSES else ConfigDict(
        extra="allow", json_schema_extra={"additionalProperties": False})


class VendorIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    timezone: str = Field(default="UTC", max_length=64)


class VendorOut(Out):
    id: str
    name: str
    timezone: str
    created_at: datetime


class VendorCreated(VendorOut):
    api_key: str = Field(description="shown once; store it now")


class KeyIn(Strict):
    name: str = Field(default="default", min_length=1, max_length=200)
    scopes: list[Scope] = Field(default_factory=lambda: list(ALL_SCOPES), min_length=1,
                                description="at least one of read, write, keys, each held by the calling key "
                                            "(default: the calling key's own scopes)")


class KeyOut(Out):
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


class ConnectionOut(Out):
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
    webhook_url: str | None = Field(
        description="where this connection's provider sends signed webhooks; null when the provider sends none "
                    "the hub accepts (a push-only channel such as Light Blue, a feed, the marketplace)")


class ConnectionCreated(ConnectionOut):
    webhook_secret: str | None = Field(
        default=None, description="shown once: the secret the vendor's own automation (a Zap for HoneyBook, 17hats, "
                                  "Studio Ninja, Iris Works) signs its hooks with (X-WedSync-Signature: sha256=HMAC) "
                                  "or sends as ?token=; null for providers that sign with their own secret or that "
                                  "the hub subscribes itself. Lost: POST /api/connections/{id}/webhook-secret")
    webhook_url_with_token: str | None = Field(
        default=None, description="shown once: webhook_url with ?token=, to paste into a Zap's webhook action "
                                  "(which cannot sign); null when webhook_secret is")


class WebhookSecretOut(Out):
    connection_id: str
    webhook_url: str
    webhook_secret: str = Field(description="shown once; the previous secret stopped working")
    webhook_url_with_token: str = Field(description="shown once: webhook_url with ?token=")


class ConnectionPatch(Strict):
    sync_interval_minutes: int | None = Field(
        default=None, ge=0, le=43_200,
        description="minutes between scheduled incremental pulls; 0: manual only; null: the hub's default "
                    "(WEDSYNC_SYNC_INTERVAL_MINUTES)")
    settings: dict[str, Any] | None = Field(
        default=None, description="settings to change (merged; a null value removes one): streams, "
                                  "lookback_seconds, default_region, timezone, destination_account")


class SyncIn(Strict):
    mode: Literal["full", "incremental"] = "incremental"


class SyncRunOut(BaseModel):
    # the run's summary also carries the CRM counters (merged, conflicts, echoes), which this view leaves out
    # (``GET /api/integrations/crm/sync/{id}`` shows them): extra keys are dropped, and none is published
    model_config = ConfigDict(json_schema_extra={"additionalProperties": False})

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


class ClientOut(Out):
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


class WeddingOut(Out):
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


class Page(BaseModel, Generic[ItemT]):
    """A page of a list, every list of the API: ``items`` in the list's order, and ``next_cursor``, the keyset
    cursor to pass as ``after`` for the next page (null on the last page); ``limit`` sets the page size."""

    model_config = ConfigDict(extra="forbid")

    items: list[ItemT]
    next_cursor: str | None = Field(description="pass as after= for the next page; null on the last")


class WebhookEventOut(Out):
    id: int = Field(description="the inbox's id of the event (the keyset cursor of this list)")
    event_id: str = Field(description="the provider's event id (duplicates of it were dropped)")
    event_type: str | None
    record_id: str | None
    status: str = Field(description="pending, processing, processed or failed")
    attempts: int
    received_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime | None = Field(description="a pending event waiting out its backoff: when it is due")
    error: str | None = Field(description="why the last attempt failed")


class SyncRunsPage(Out):
    items: list[SyncRunOut]
    next_cursor: str | None = Field(description="pass as after= for the next (older) page; null on the last")


class WebhookEventsPage(Out):
    items: list[WebhookEventOut]
    next_cursor: int | None = Field(description="pass as after= for the next (older) page; null on the last")


class HookSubscriptionOut(Out):
    id: str
    event: str
    remote_id: str
    created_at: datetime
