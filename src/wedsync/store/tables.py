"""SQLAlchemy 2 table models. Every row belongs to a vendor (rule 8); migrations live in ``migrations/``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from wedsync.ids import new_id


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes stored as UTC on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Vendor(Base):
    __tablename__ = "vendors"
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key: only a SHA-256 of the secret is kept; the key is shown once at creation."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str | None] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="default")
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class Connection(Base):
    """A vendor's link to one provider account."""

    __tablename__ = "connections"
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    base_url: Mapped[str | None] = mapped_column(String(500), default=None)
    status: Mapped[str] = mapped_column(String(32), default="active")
    status_detail: Mapped[str | None] = mapped_column(Text, default=None)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_sync_at: Mapped[datetime | None] = mapped_column(default=None)
    # Scheduled incremental pulls (``SyncService.schedule``): the connection's own interval (None: the hub's
    # default, 0: manual only) and when the next one is due (None: not scheduled).
    sync_interval_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    next_sync_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Credential(Base):
    """Encrypted provider credentials and tokens of one connection (see ``store/vault.py``)."""

    __tablename__ = "credentials"
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OAuthState(Base):
    """A pending OAuth 2 authorization: ``state`` and the PKCE verifier (encrypted), single use."""

    __tablename__ = "oauth_states"
    state: Mapped[str] = mapped_column(String(128), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[str | None] = mapped_column(String(26), default=None)
    key_id: Mapped[str] = mapped_column(String(32))
    verifier_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    redirect_uri: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class SourceRecordMixin:
    """Provenance and versioning every per-source record shares (clients, weddings, CRM events, contracts,
    invoices): one row per (connection, remote id), its content hash for change detection, when the
    provider created and modified it, when we last saw it (run) and a version bumped on each change."""

    provider: Mapped[str] = mapped_column(String(64))
    remote_id: Mapped[str] = mapped_column(String(128))
    custom_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_hash: Mapped[str] = mapped_column(String(32))
    remote_created_at: Mapped[datetime | None] = mapped_column(default=None)
    remote_modified_at: Mapped[datetime | None] = mapped_column(default=None)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    seen_run_id: Mapped[str | None] = mapped_column(String(26), default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Client(SourceRecordMixin, Base):
    """A unified client (the couple or a contact) as read from one source record."""

    __tablename__ = "clients"
    __table_args__ = (UniqueConstraint("connection_id", "remote_id", name="uq_clients_source"),
                      # a connection's records in id order, a page at a time (export; migration 0015)
                      Index("ix_clients_connection_id_id", "connection_id", "id"))
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32), default="person")
    first_name: Mapped[str | None] = mapped_column(String(200), default=None)
    last_name: Mapped[str | None] = mapped_column(String(200), default=None)
    display_name: Mapped[str | None] = mapped_column(String(400), default=None)
    email: Mapped[str | None] = mapped_column(String(320), default=None)  # not indexed: see migration 0002
    phone: Mapped[str | None] = mapped_column(String(64), default=None)
    company: Mapped[str | None] = mapped_column(String(200), default=None)
    address: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # the unified client this source record belongs to (crm_clients, see tables_crm.py; migration 0002)
    crm_client_id: Mapped[str | None] = mapped_column(String(26), default=None, index=True)
    # a hook-fed record's field -> ISO time of the hook its value came from (``custom.<key>`` for custom
    # fields); None once written whole (migration 0017, CrmService.ingest_zap)
    field_times: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Wedding(SourceRecordMixin, Base):
    """A wedding (a provider's project or job) as read from one source record."""

    __tablename__ = "weddings"
    __table_args__ = (UniqueConstraint("connection_id", "remote_id", name="uq_weddings_source"),
                      # a CSV row's project looked up among the connection's projects of its date (migration 0019)
                      Index("ix_weddings_connection_id_event_date", "connection_id", "event_date"))
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(400), default=None)
    event_date: Mapped[date | None] = mapped_column(Date, default=None)
    stage: Mapped[str | None] = mapped_column(String(32), default=None)
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    guest_count: Mapped[int | None] = mapped_column(Integer, default=None)
    job_type: Mapped[str | None] = mapped_column(String(200), default=None)
    client_remote_ids: Mapped[list[Any]] = mapped_column(default=list)


class SyncRun(Base):
    """One sync run of one connection: a DBOS workflow whose id is this row's id."""

    __tablename__ = "sync_runs"
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String(16))  # full | incremental
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|succeeded|failed
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    since: Mapped[datetime | None] = mapped_column(default=None)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    error_detail: Mapped[str | None] = mapped_column(Text, default=None)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)

    # At most one run in progress per connection, whatever races the check in ``create_run`` loses.
    __table_args__ = (Index("uq_sync_runs_one_active", "connection_id", unique=True,
                            sqlite_where=text("status IN ('queued', 'running')"),
                            postgresql_where=text("status IN ('queued', 'running')")),)


class SyncRunPage(Base):
    """A page of a sync run, written in the same transaction as its records: exactly-once on replay."""

    __tablename__ = "sync_run_pages"
    run_id: Mapped[str] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    page: Mapped[int] = mapped_column(Integer, primary_key=True)
    pass_no: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    vendor_id: Mapped[str] = mapped_column(String(26), index=True)
    items: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    total_items: Mapped[int | None] = mapped_column(Integer, default=None)
    total_pages: Mapped[int | None] = mapped_column(Integer, default=None)
    oldest_modified: Mapped[datetime | None] = mapped_column(default=None)
    done_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncCursor(Base):
    """Where the next incremental run of a stream starts (the start time of the last complete run)."""

    __tablename__ = "sync_cursors"
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    value: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookEvent(Base):
    """The durable webhook inbox: verified events, deduplicated on the provider's event id."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        UniqueConstraint("connection_id", "event_id", name="uq_webhook_inbox_event"),
        Index("ix_webhook_inbox_pending", "status", "id"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    vendor_id: Mapped[str] = mapped_column(String(26), index=True)
    connection_id: Mapped[str] = mapped_column(String(26))
    provider: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str | None] = mapped_column(String(200), default=None)
    record_id: Mapped[str | None] = mapped_column(String(200), default=None)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|processed|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # A pending event that failed is not claimed again before this time (backoff; None: at once).
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    # The DBOS executor that claimed the event (migration 0013): its claims go back to pending once it is dead.
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)


class HookSubscription(Base):
    """A webhook subscription we created at a provider (e.g. a VSCO Workspace REST hook)."""

    __tablename__ = "hook_subscriptions"
    # one per connection and event (migration 0011): a subscribe request claims the row before the provider call
    __table_args__ = (Index("uq_hook_subscriptions_connection_event", "connection_id", "event", unique=True),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"), index=True)
    remote_id: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(128))
    target_url: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)


class WorkerHeartbeat(Base):
    """Liveness of each worker process, so a live worker can recover a dead one's workflows."""

    __tablename__ = "worker_heartbeats"
    executor_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    hostname: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    recovered_at: Mapped[datetime | None] = mapped_column(default=None)


def import_table_modules() -> None:
    """Import every ``wedsync.store.tables_<capability>`` module so ``Base.metadata`` knows all tables.

    Each capability (CRM, payments, calendars, ...) keeps its tables in its own module, declared on this
    ``Base``; Alembic's environment and the schema tests call this before they compare or create.
    """
    from wedsync.discovery import submodules

    list(submodules("wedsync.store", accept=lambda name: name.startswith("tables_")))
