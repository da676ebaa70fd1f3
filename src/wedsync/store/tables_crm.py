"""CRM hub tables: unified clients above the per-source rows, identity keys, merges, conflicts, policies,
field mappings, the write-back outbox, CSV import jobs, and the per-source events/contracts/invoices."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from wedsync.domain.identity import search_text
from wedsync.store.tables import Base, SourceRecordMixin, new_id, utcnow

_BIGID = BigInteger().with_variant(Integer, "sqlite")


class CrmClient(Base):
    """A unified client (one person of a couple, or a contact): the golden record above its source rows
    in ``clients`` (which point here through ``clients.crm_client_id``)."""

    __tablename__ = "crm_clients"
    # a vendor's clients in id order, a page at a time (listing, export; migration 0015)
    __table_args__ = (Index("ix_crm_clients_vendor_id_id", "vendor_id", "id"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="person")
    first_name: Mapped[str | None] = mapped_column(String(200), default=None)
    last_name: Mapped[str | None] = mapped_column(String(200), default=None)
    display_name: Mapped[str | None] = mapped_column(String(400), default=None)
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    phone: Mapped[str | None] = mapped_column(String(64), default=None)
    company: Mapped[str | None] = mapped_column(String(200), default=None)
    address: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # empty JSON defaults on the server: the resolver's bulk inserts leave empty columns out
    custom_fields: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    wedding_dates: Mapped[list[Any]] = mapped_column(server_default=text("'[]'"))
    # the source of the whole record, and per field the source that last set it when another one did
    source_connection_id: Mapped[str | None] = mapped_column(String(26), default=None)
    source_provider: Mapped[str | None] = mapped_column(String(64), default=None)
    source_at: Mapped[datetime | None] = mapped_column(default=None)
    field_sources: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # what ?q= searches (domain.identity.search_text): kept current on every write (migration 0010)
    search_text: Mapped[str | None] = mapped_column(Text, default=None)


@event.listens_for(CrmClient, "before_insert")
@event.listens_for(CrmClient, "before_update")
def _client_search_text(_mapper: Any, _conn: Any, c: CrmClient) -> None:
    """ORM writes keep the search text current (the resolver's bulk Core writes set it themselves)."""
    c.search_text = search_text(c.first_name, c.last_name, c.display_name, c.email, c.phone)


class CrmIdentityKey(Base):
    """Blocking keys of a unified client (``e:<email>``, ``p:<e164>``, ``d:<wedding date>``), indexed so
    candidates are found by key, never by scanning the vendor's clients."""

    __tablename__ = "crm_identity_keys"
    # The lookup (vendor, key) is the primary key itself, clustered on SQLite (WITHOUT ROWID): a key row
    # costs two B-tree writes (this and the client index), not three.
    __table_args__ = (Index("ix_crm_identity_keys_crm_client_id", "crm_client_id"), {"sqlite_with_rowid": False})
    vendor_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    crm_client_id: Mapped[str] = mapped_column(ForeignKey("crm_clients.id", ondelete="CASCADE"), primary_key=True)


class CrmMerge(Base):
    """A source record joined to an existing unified client: why (rule, score, evidence); undoable."""

    __tablename__ = "crm_merges"
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    crm_client_id: Mapped[str] = mapped_column(String(26), index=True)
    source_client_id: Mapped[str] = mapped_column(String(26), index=True)  # clients.id
    connection_id: Mapped[str] = mapped_column(String(26))
    rule: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_id: Mapped[str | None] = mapped_column(String(26), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(default=None)
    undone_to: Mapped[str | None] = mapped_column(String(26), default=None)  # the client restored


class CrmConflict(Base):
    """A field both sides changed: settled by policy (``status`` auto) or waiting in the manual queue."""

    __tablename__ = "crm_conflicts"
    __table_args__ = (Index("ix_crm_conflicts_queue", "vendor_id", "status"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"))
    crm_client_id: Mapped[str] = mapped_column(String(26), index=True)
    source_client_id: Mapped[str] = mapped_column(String(26))
    connection_id: Mapped[str] = mapped_column(String(26))
    field: Mapped[str] = mapped_column(String(200))
    base: Mapped[Any] = mapped_column(JSON, default=None)
    local: Mapped[Any] = mapped_column(JSON, default=None)
    incoming: Mapped[Any] = mapped_column(JSON, default=None)
    incoming_at: Mapped[datetime | None] = mapped_column(default=None)
    policy: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))  # incoming | local | open
    status: Mapped[str] = mapped_column(String(16))  # auto | open | resolved | dismissed
    reason: Mapped[str] = mapped_column(Text)
    resolution: Mapped[Any] = mapped_column(JSON, default=None)
    run_id: Mapped[str | None] = mapped_column(String(26), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)


class CrmFieldPolicy(Base):
    """How conflicts on a field are settled for changes from one connection (``*`` = any connection /
    any field)."""

    __tablename__ = "crm_field_policies"
    __table_args__ = (UniqueConstraint("vendor_id", "connection_id", "field", name="uq_crm_field_policies"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"))
    connection_id: Mapped[str] = mapped_column(String(26), default="*")
    field: Mapped[str] = mapped_column(String(200), default="*")
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(64), default=None)
    skew_seconds: Mapped[int] = mapped_column(Integer, default=120)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CrmFieldMapping(Base):
    """A connection's custom field (``source_key``) shown under ``target`` on unified records (None: hidden)."""

    __tablename__ = "crm_field_mappings"
    __table_args__ = (UniqueConstraint("connection_id", "entity", "source_key", name="uq_crm_field_mappings"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(16), default="client")  # client | wedding
    source_key: Mapped[str] = mapped_column(String(200))
    target: Mapped[str | None] = mapped_column(String(200), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CrmOutbox(Base):
    """A write-back to a provider, committed before the call; ``idempotency_key`` is sent with it and
    ``written_hash`` recognizes the record when it comes back (echo suppression)."""

    __tablename__ = "crm_outbox"
    __table_args__ = (Index("ix_crm_outbox_pending", "status", "id"), Index("ix_crm_outbox_record", "record_id", "id"))
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    crm_client_id: Mapped[str | None] = mapped_column(String(26), default=None)
    source_client_id: Mapped[str | None] = mapped_column(String(26), default=None, index=True)
    # update_contact | create_contact | create_job | update_job | create_event | update_event | create_order
    # | create_payment (see services/crm_writeback.py)
    op: Mapped[str] = mapped_column(String(32))
    remote_id: Mapped[str | None] = mapped_column(String(128), default=None)
    # the local record the write-back is about: wedding | event | invoice (+ its id; migration 0005)
    record_type: Mapped[str | None] = mapped_column(String(16), default=None)
    record_id: Mapped[str | None] = mapped_column(String(26), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    written_hash: Mapped[str | None] = mapped_column(String(32), default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    echo_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    # after a retriable failure: not sent again before this (backoff; migration 0012)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)


class CrmRunPageStats(Base):
    """CRM counters of one sync page, written in the page's transaction (exactly-once like the page row)."""

    __tablename__ = "crm_run_page_stats"
    run_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    page: Mapped[int] = mapped_column(Integer, primary_key=True)
    pass_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(26), index=True)
    merged: Mapped[int] = mapped_column(Integer, default=0)
    conflicts: Mapped[int] = mapped_column(Integer, default=0)
    echoes: Mapped[int] = mapped_column(Integer, default=0)


class CrmImportJob(Base):
    """A CSV import (one DBOS workflow, one step per chunk of rows); counters are summed from its chunks."""

    __tablename__ = "crm_import_jobs"
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    layout: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str | None] = mapped_column(String(300), default=None)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|succeeded|failed
    chunk_size: Mapped[int] = mapped_column(Integer, default=1000)
    total_rows: Mapped[int | None] = mapped_column(Integer, default=None)
    chunks_total: Mapped[int | None] = mapped_column(Integer, default=None)
    error_detail: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class CrmImportFile(Base):
    """The uploaded bytes of an import, kept so a recovered workflow re-reads exactly the same file."""

    __tablename__ = "crm_import_files"
    job_id: Mapped[str] = mapped_column(ForeignKey("crm_import_jobs.id", ondelete="CASCADE"), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(26), index=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class CrmImportChunk(Base):
    """One chunk of an import, written with its records and bad-row reports: exactly-once on replay."""

    __tablename__ = "crm_import_chunks"
    job_id: Mapped[str] = mapped_column(ForeignKey("crm_import_jobs.id", ondelete="CASCADE"), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(26), index=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    good: Mapped[int] = mapped_column(Integer, default=0)
    bad: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    merged: Mapped[int] = mapped_column(Integer, default=0)
    conflicts: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[datetime] = mapped_column(default=utcnow)


class CrmImportError(Base):
    """A bad row of an import: its line, the column, a machine-readable code and the reason."""

    __tablename__ = "crm_import_errors"
    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("crm_import_jobs.id", ondelete="CASCADE"), index=True)
    vendor_id: Mapped[str] = mapped_column(String(26))
    line: Mapped[int] = mapped_column(Integer)
    column: Mapped[str | None] = mapped_column(String(200), default=None)
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    fatal: Mapped[bool] = mapped_column(Boolean, default=True)  # the row was skipped (else: a warning)


class CrmEvent(SourceRecordMixin, Base):
    """An event of a wedding (ceremony, reception, engagement shoot...) as read from one source record."""

    __tablename__ = "crm_events"
    __table_args__ = (UniqueConstraint("connection_id", "remote_id", name="uq_crm_events_source"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    wedding_remote_id: Mapped[str | None] = mapped_column(String(128), default=None)
    kind: Mapped[str | None] = mapped_column(String(64), default=None)
    name: Mapped[str | None] = mapped_column(String(400), default=None)
    starts_at: Mapped[datetime | None] = mapped_column(default=None)
    ends_at: Mapped[datetime | None] = mapped_column(default=None)
    location: Mapped[str | None] = mapped_column(String(500), default=None)


class CrmWeddingLink(SourceRecordMixin, Base):
    """A provider's link between a wedding and one of its people, as read from one source record (VSCO
    Workspace's JobContact). The live client links of a wedding make its ``weddings.client_remote_ids``."""

    __tablename__ = "crm_wedding_links"
    __table_args__ = (UniqueConstraint("connection_id", "remote_id", name="uq_crm_wedding_links_source"),
                      Index("ix_crm_wedding_links_wedding", "connection_id", "wedding_remote_id"))
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    wedding_remote_id: Mapped[str] = mapped_column(String(128))
    client_remote_id: Mapped[str] = mapped_column(String(128))
    is_client: Mapped[bool] = mapped_column(Boolean, default=True)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)


class CrmContract(SourceRecordMixin, Base):
    """A contract of a wedding as read from one source record."""

    __tablename__ = "crm_contracts"
    __table_args__ = (UniqueConstraint("connection_id", "remote_id", name="uq_crm_contracts_source"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    wedding_remote_id: Mapped[str | None] = mapped_column(String(128), default=None)
    title: Mapped[str | None] = mapped_column(String(400), default=None)
    status: Mapped[str | None] = mapped_column(String(32), default=None)
    signed_at: Mapped[datetime | None] = mapped_column(default=None)


class CrmInvoice(SourceRecordMixin, Base):
    """An invoice/order of a wedding with its payments (integer minor units + ISO 4217), from one source."""

    __tablename__ = "crm_invoices"
    __table_args__ = (UniqueConstraint("connection_id", "remote_id", name="uq_crm_invoices_source"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    wedding_remote_id: Mapped[str | None] = mapped_column(String(128), default=None)
    number: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str | None] = mapped_column(String(32), default=None)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    total_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    paid_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    due_date: Mapped[date | None] = mapped_column(Date, default=None)
    payments: Mapped[list[Any]] = mapped_column(default=list)
