"""Write-back of weddings (jobs), events, invoices (orders) and payments from WedSync to the source CRM, and
the creation of a CRM job for a marketplace booking (``hub.crm_writeback``).

Every change goes through the CRM outbox (``crm_outbox``) like the contact write-back of ``CrmService``:

1. the API call changes the local source row (an edit) or records the intent (a creation) **and** commits
   one outbox row, whose ``idempotency_key`` (``wedsync-crm-<row id>``) is our reference at the provider,
   in one transaction, before any provider call;
2. the ``drain_crm_outbox`` workflow sends it (``CrmService.send_outbox`` delegates every op other than
   ``update_contact`` to :meth:`CrmWriteback.send`). A create carries our reference, so after an unknown
   outcome the connector looks the record up before sending again (VSCO Workspace: external mappings,
   ``transactionId``; orders by name and total); an update is a ``PUT`` (idempotent);
3. the record the provider returns is stored at once through the sync engine's upsert (and its content hash
   kept as ``written_hash``), so the REST hook or the next sync that brings it back is "unchanged".

Ops (``crm_outbox.op``), what they are about (``record_type``/``record_id``) and the connector call:

==============  ================  ===============================================================
op              record            connector call
==============  ================  ===============================================================
update_job      wedding           ``update_job(remote_id, wedding, fields=)``
update_event    event             ``update_event(remote_id, event, fields=, timezone=)``
create_event    wedding (parent)  ``create_event(event, reference=, job_id=, timezone=)``
create_order    wedding (parent)  ``create_order(job_id, invoice, reference=)``
create_payment  invoice           ``create_payment(job_id, amount_minor=, currency=, reference=, order_id=)``
create_contact  (a unified        ``create_contact(client, reference=)``; the new source record joins
                client)           that unified client
create_job      wedding (new)     ``create_job(wedding, reference=, contact_ids=)`` after its
                                  ``create_contact`` rows are done
push_inquiry    inquiry (a        ``push_inquiry(client, wedding, reference=, message=)`` to a push-only
                marketplace       CRM (Light Blue); queued by ``services/crm_inquiries.py`` with the key
                wedding)          ``wi-<wedding id>-<connection id>`` (one per inquiry and CRM)
==============  ================  ===============================================================

Payments are stored on the invoices (orders) they are applied to (``crm_invoices.payments``, as the order
stream maps them): a payment is therefore always written against an invoice of the wedding.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection as SAConnection
from sqlalchemy import Table, and_, insert, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from wedsync.connectors.crm.vsco_workspace import WriteResult, parse_ts, with_payment
from wedsync.connectors.errors import ConnectorError, Fatal, Retriable
from wedsync.domain.crm import ClientRecord, EventRecord, InvoiceRecord, WeddingRecord, record_values
from wedsync.domain.identity import blocking_keys
from wedsync.errors import Conflict, InvalidInput, NotFound, WedsyncError
from wedsync.services.crm_sync import record_features
from wedsync.services.sync_engine import STREAM_MODELS, map_record
from wedsync.store.db import Database
from wedsync.store.paging import cursor_row
from wedsync.store.tables import Client, Connection, Vendor, Wedding, new_id, utcnow
from wedsync.store.tables_crm import CrmClient, CrmEvent, CrmIdentityKey, CrmInvoice, CrmOutbox

_OUTBOX: Table = CrmOutbox.__table__  # type: ignore[assignment]
_CLIENTS: Table = Client.__table__  # type: ignore[assignment]
_KEYS: Table = CrmIdentityKey.__table__  # type: ignore[assignment]

WEDDING_FIELDS = ("name", "event_date", "stage", "closed", "guest_count")
EVENT_FIELDS = ("name", "starts_at", "ends_at", "location")
JOB_STAGES = ("lead", "booked", "fulfillment", "completed")
#: op -> the connector method it needs (a connection whose connector lacks it cannot take the write-back)
OPS: dict[str, str] = {op: op for op in ("update_job", "update_event", "create_event", "create_order",
                                         "create_payment", "create_contact", "create_job", "push_inquiry",
                                         "create_project")}
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_BOOKING_CLIENTS = 10
#: how long a claimed row is held by the drain sending it before another one may take it over
LEASE = timedelta(minutes=2)
#: after a retriable failure a row waits RETRY_FIRST, doubling with each attempt up to RETRY_MAX; a worker's
#: sweep (workflows/recovery.py) sends it once that time has come
RETRY_FIRST = timedelta(seconds=1)
RETRY_MAX = timedelta(minutes=30)


def retry_delay(attempts: int) -> timedelta:
    """The wait before the next attempt of a row that has failed ``attempts`` times."""
    return min(RETRY_FIRST * 2 ** min(max(attempts - 1, 0), 20), RETRY_MAX)


def sendable(now: datetime) -> list[Any]:
    """Conditions on ``crm_outbox`` for a row a drain may send now: pending, not held by a live lease, not
    waiting out a backoff, and no older pending row for the same record (a local wedding/event/invoice, or
    a client's source record): a retried write never lands after a newer one for the same record."""
    older = _OUTBOX.alias("older")
    o = _OUTBOX.c
    blocked = select(older.c.id).where(
        older.c.status == "pending", older.c.id < o.id,
        or_(and_(o.record_id.is_not(None), older.c.record_id == o.record_id),
            and_(o.source_client_id.is_not(None), older.c.source_client_id == o.source_client_id))).exists()
    return [o.status == "pending", or_(o.sent_at.is_(None), o.sent_at < now - LEASE),
            or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now), ~blocked]


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def _aware(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"{name} is not an ISO 8601 date-time", code="invalid_datetime") from None
    if not isinstance(value, datetime):
        raise InvalidInput(f"{name} is not a date-time", code="invalid_datetime")
    if value.tzinfo is None:
        raise InvalidInput(f"{name} needs a UTC offset (e.g. 2031-06-14T15:00:00-07:00)", code="naive_datetime")
    if not 1971 <= value.year <= 2199:  # as the calendars take them; year 1 in a studio's zone is no date at all
        raise InvalidInput(f"{name} must be between 1971 and 2199", code="datetime_out_of_range")
    return value


def _date(value: Any, name: str) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{name} is not an ISO 8601 date", code="invalid_date") from None


def _text(value: Any, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", code="invalid_field")
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters", code="value_too_long")
    return value or None


def _money(value: Any, name: str, *, positive: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} is an integer count of minor units (e.g. 12500 for 125.00)",
                           code="invalid_amount")
    if value < 0 or (positive and value == 0) or value > 10**12:
        raise InvalidInput(f"{name} must be {'positive' if positive else 'non-negative'} and at most 10^12",
                           code="invalid_amount")
    return value


def _currency(value: Any) -> str:
    code = str(value or "").strip().upper()
    if not _CURRENCY.match(code):
        raise InvalidInput("currency is an ISO 4217 code such as USD", code="invalid_currency")
    return code


def wedding_record(w: Any, **over: Any) -> WeddingRecord:
    values = {"remote_id": w.remote_id, "name": w.name, "event_date": w.event_date, "stage": w.stage,
              "closed": bool(w.closed), "guest_count": w.guest_count, "job_type": w.job_type,
              "client_remote_ids": list(w.client_remote_ids or []), "custom_fields": dict(w.custom_fields or {}),
              "remote_created_at": w.remote_created_at, "remote_modified_at": w.remote_modified_at}
    values.update(over)
    return WeddingRecord(**values)


def event_record(e: Any, **over: Any) -> EventRecord:
    values = {"remote_id": e.remote_id, "wedding_remote_id": e.wedding_remote_id, "kind": e.kind, "name": e.name,
              "starts_at": e.starts_at, "ends_at": e.ends_at, "location": e.location,
              "custom_fields": dict(e.custom_fields or {}), "remote_created_at": e.remote_created_at,
              "remote_modified_at": e.remote_modified_at}
    values.update(over)
    return EventRecord(**values)


def _snapshot(p: CrmClient) -> dict[str, Any]:
    """What a create sends of a unified client, as it is when the write is queued."""
    return {"first_name": p.first_name, "last_name": p.last_name, "display_name": p.display_name,
            "email": p.email, "phone": p.phone, "company": p.company, "address": p.address}


def wedding_out(w: Any) -> dict[str, Any]:
    return {"id": w.id, "connection_id": w.connection_id, "provider": w.provider, "remote_id": w.remote_id,
            "name": w.name, "event_date": _iso(w.event_date), "stage": w.stage, "closed": bool(w.closed),
            "guest_count": w.guest_count, "job_type": w.job_type, "client_remote_ids": list(w.client_remote_ids or []),
            "custom_fields": w.custom_fields or {}, "version": w.version,
            "remote_modified_at": _iso(w.remote_modified_at), "synced_at": _iso(w.synced_at),
            "deleted_at": _iso(w.deleted_at)}


def event_out(e: Any) -> dict[str, Any]:
    return {"id": e.id, "connection_id": e.connection_id, "remote_id": e.remote_id,
            "wedding_remote_id": e.wedding_remote_id, "kind": e.kind, "name": e.name,
            "starts_at": _iso(e.starts_at), "ends_at": _iso(e.ends_at), "location": e.location,
            "version": e.version, "deleted_at": _iso(e.deleted_at)}


def invoice_out(i: Any) -> dict[str, Any]:
    return {"id": i.id, "connection_id": i.connection_id, "remote_id": i.remote_id,
            "wedding_remote_id": i.wedding_remote_id, "number": i.number, "status": i.status,
            "currency": i.currency, "total_minor": i.total_minor, "paid_minor": i.paid_minor,
            "due_date": _iso(i.due_date), "payments": i.payments or [], "version": i.version,
            "deleted_at": _iso(i.deleted_at)}


def outbox_out(o: Any) -> dict[str, Any]:
    return {"id": o.id, "connection_id": o.connection_id, "op": o.op, "record_type": o.record_type,
            "record_id": o.record_id, "remote_id": o.remote_id, "payload": o.payload, "status": o.status,
            "attempts": o.attempts, "last_error": o.last_error, "idempotency_key": o.idempotency_key,
            "created_at": _iso(o.created_at), "sent_at": _iso(o.sent_at)}


class CrmWriteback:
    """Weddings/jobs, events, invoices/orders and payments written back to the source CRM through the
    outbox, and CRM jobs created for marketplace bookings. Built lazily as ``hub.crm_writeback``."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.db: Database = hub.db

    # -- reads ---------------------------------------------------------------------------------------------
    def list_weddings(self, vendor_id: str, *, after: str | None = None, limit: int = 100,
                      connection_id: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """The vendor's weddings (every source's jobs/projects), by id; deleted ones are left out."""
        with self.db.read() as s:
            stmt = select(Wedding).where(Wedding.vendor_id == vendor_id, Wedding.deleted_at.is_(None))
            if connection_id:
                stmt = stmt.where(Wedding.connection_id == connection_id)
            if after:
                cursor_row(s, Wedding, after, Wedding.vendor_id == vendor_id)
                stmt = stmt.where(Wedding.id > after)
            rows = list(s.execute(stmt.order_by(Wedding.id).limit(limit + 1)).scalars())
        nxt = rows[limit - 1].id if len(rows) > limit else None
        return [wedding_out(w) for w in rows[:limit]], nxt

    def get_wedding(self, vendor_id: str, wedding_id: str) -> dict[str, Any]:
        """A wedding with its events, invoices (with payments), unified clients and write-backs."""
        with self.db.read() as s:
            w = self._wedding(s, vendor_id, wedding_id)
            events = s.execute(select(CrmEvent).where(CrmEvent.connection_id == w.connection_id,
                                                      CrmEvent.wedding_remote_id == w.remote_id,
                                                      CrmEvent.deleted_at.is_(None)).order_by(CrmEvent.id)).scalars()
            invoices = s.execute(select(CrmInvoice).where(CrmInvoice.connection_id == w.connection_id,
                                                          CrmInvoice.wedding_remote_id == w.remote_id,
                                                          CrmInvoice.deleted_at.is_(None))
                                 .order_by(CrmInvoice.id)).scalars()
            clients = []
            if w.client_remote_ids:
                clients = [{"crm_client_id": c.crm_client_id, "source_client_id": c.id, "remote_id": c.remote_id}
                           for c in s.execute(select(Client).where(
                               Client.connection_id == w.connection_id,
                               Client.remote_id.in_([str(r) for r in w.client_remote_ids]))).scalars()]
            writes = s.execute(select(CrmOutbox).where(CrmOutbox.record_id == w.id, CrmOutbox.vendor_id == vendor_id)
                               .order_by(CrmOutbox.id)).scalars()
            return {**wedding_out(w), "events": [event_out(e) for e in events],
                    "invoices": [invoice_out(i) for i in invoices], "clients": clients,
                    "writebacks": [outbox_out(o) for o in writes]}

    def get_event(self, vendor_id: str, event_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            e = self._event(s, vendor_id, event_id)
            writes = s.execute(select(CrmOutbox).where(CrmOutbox.record_id == e.id, CrmOutbox.vendor_id == vendor_id)
                               .order_by(CrmOutbox.id)).scalars()
            return {**event_out(e), "writebacks": [outbox_out(o) for o in writes]}

    # -- edits of existing records ---------------------------------------------------------------------------
    def update_wedding(self, vendor_id: str, wedding_id: str, changes: Mapping[str, Any],
                       expected_version: int | None = None) -> dict[str, Any]:
        """Edit a wedding (name, event_date, stage, closed, guest_count). When its source's connector can update
        jobs, an ``update_job`` outbox row is committed in the same transaction; a source that cannot take it
        (a CSV/Zapier product) is changed in WedSync only (``writeback: "source_not_writable"``)."""
        with self.db.session() as s:
            w = self._wedding(s, vendor_id, wedding_id)
            bad = sorted(set(changes) - set(WEDDING_FIELDS))
            if bad:
                raise InvalidInput(f"fields {bad} cannot be edited; editable: {list(WEDDING_FIELDS)}",
                                   code="invalid_field")
            if not changes:
                raise InvalidInput("nothing to change", code="empty_patch")
            conn = self._capable(s, w.connection_id, "update_job")
            if expected_version is not None and w.version != expected_version:
                raise Conflict("the wedding changed meanwhile", code="version_conflict",
                               details={"version": w.version})
            applied: dict[str, Any] = {}
            for name, value in changes.items():
                if name == "name":
                    value = _text(value, name, 255)
                    if not value:
                        raise InvalidInput("a wedding keeps a name", code="missing_field")
                elif name == "event_date":
                    value = _date(value, name)
                elif name == "stage":
                    value = _text(value, name, 32)
                    if not value or (conn is not None and value not in JOB_STAGES):
                        raise InvalidInput(f"stage is one of {list(JOB_STAGES)}", code="invalid_stage")
                elif name == "closed":
                    if not isinstance(value, bool):
                        raise InvalidInput("closed is true or false", code="invalid_field")
                elif name == "guest_count" and value is not None and (
                        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000):
                    raise InvalidInput("guest_count is an integer between 0 and 100000", code="invalid_field")
                setattr(w, name, value)
                applied[name] = _iso(value)
            w.content_hash = record_values(wedding_record(w))["content_hash"]
            w.version += 1
            if conn is not None:
                self._enqueue(s, w.vendor_id, conn.id, "update_job", record_type="wedding", record_id=w.id,
                              remote_id=w.remote_id, payload={"fields": applied, "base_version": w.version - 1})
        out = self.get_wedding(vendor_id, wedding_id)
        return {**out, "writeback": "queued" if conn is not None else "source_not_writable"}

    def update_event(self, vendor_id: str, event_id: str, changes: Mapping[str, Any],
                     expected_version: int | None = None) -> dict[str, Any]:
        """Edit an event (name, starts_at, ends_at, location) -> ``update_event`` in the outbox (when its source
        can take it; else changed in WedSync only, like a wedding)."""
        with self.db.session() as s:
            e = self._event(s, vendor_id, event_id)
            bad = sorted(set(changes) - set(EVENT_FIELDS))
            if bad:
                raise InvalidInput(f"fields {bad} cannot be edited; editable: {list(EVENT_FIELDS)}",
                                   code="invalid_field")
            if not changes:
                raise InvalidInput("nothing to change", code="empty_patch")
            conn = self._capable(s, e.connection_id, "update_event")
            if expected_version is not None and e.version != expected_version:
                raise Conflict("the event changed meanwhile", code="version_conflict", details={"version": e.version})
            applied = self._event_values(changes, current=e)
            for name in ("name", "starts_at"):
                if name in applied and not applied[name]:
                    raise InvalidInput(f"an event keeps its {name}", code="missing_field")
            for name, value in applied.items():
                setattr(e, name, value)
            e.content_hash = record_values(event_record(e))["content_hash"]
            e.version += 1
            if conn is not None:
                self._enqueue(s, e.vendor_id, conn.id, "update_event", record_type="event", record_id=e.id,
                              remote_id=e.remote_id, payload={"fields": {k: _iso(v) for k, v in applied.items()},
                                                              "base_version": e.version - 1})
        return {**self.get_event(vendor_id, event_id),
                "writeback": "queued" if conn is not None else "source_not_writable"}

    # -- creations on an existing wedding ------------------------------------------------------------------------
    def create_event(self, vendor_id: str, wedding_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """A new event on the wedding's job -> ``create_event`` (stored when the provider returns it)."""
        with self.db.session() as s:
            w = self._wedding(s, vendor_id, wedding_id)
            conn = self._writable(s, w.connection_id, "create_event")
            bad = sorted(set(values) - {*EVENT_FIELDS, "timezone"})
            if bad:
                raise InvalidInput(f"unknown event fields {bad}; known: {[*EVENT_FIELDS, 'timezone']}",
                                   code="invalid_field")
            values = dict(values)
            explicit = values.pop("timezone", None)
            if explicit is not None and (not isinstance(explicit, str) or _zone(explicit) != explicit):
                raise InvalidInput("timezone is an IANA time zone name, e.g. America/Sao_Paulo",
                                   code="invalid_timezone", details={"field": "timezone"})
            event = self._event_values(values)
            if not event.get("name"):
                raise InvalidInput("an event needs a name", code="missing_field")
            if event.get("starts_at") is None:
                raise InvalidInput("an event needs starts_at", code="missing_field")
            zone = explicit or self._event_zone(s, w, event["starts_at"])
            o = self._enqueue(s, w.vendor_id, conn.id, "create_event", record_type="wedding", record_id=w.id,
                              remote_id=w.remote_id, payload={"event": {k: _iso(v) for k, v in event.items()},
                                                              "timezone": zone})
            return outbox_out(o)

    @staticmethod
    def _event_zone(s: Session, w: Wedding, starts_at: datetime) -> str:
        """The zone a new event is written in when the caller names none: the zone of the wedding's other events
        (the most used), else the vendor's, preferring the first whose UTC offset at the event's start is the
        offset the caller wrote; when neither has it, the fixed zone of that offset (``Etc/GMT+3`` for -03:00,
        whole hours only), else the first one. The instant is the same in any of them; the zone decides the
        local date and time the studio sees in Workspace."""
        zones: list[str] = []
        counts: dict[str, int] = {}
        for custom in s.execute(select(CrmEvent.custom_fields).where(
                CrmEvent.connection_id == w.connection_id, CrmEvent.wedding_remote_id == w.remote_id,
                CrmEvent.deleted_at.is_(None))).scalars():
            name = (custom or {}).get("timezoneName")
            if isinstance(name, str) and _zone(name) == name:
                counts[name] = counts.get(name, 0) + 1
        zones.extend(sorted(counts, key=lambda z: (-counts[z], z)))
        vendor = s.get(Vendor, w.vendor_id)
        zones.append(_zone(vendor.timezone if vendor is not None and vendor.timezone else "UTC"))
        offset = starts_at.utcoffset()
        for name in zones:
            if starts_at.astimezone(ZoneInfo(name)).utcoffset() == offset:
                return name
        if offset is not None and offset % timedelta(hours=1) == timedelta(0) and abs(offset) <= timedelta(hours=14):
            hours = int(offset / timedelta(hours=1))
            # the POSIX sign: Etc/GMT+3 is three hours behind UTC
            return "Etc/UTC" if hours == 0 else f"Etc/GMT{'+' if hours < 0 else '-'}{abs(hours)}"
        return zones[0]

    async def create_invoice(self, vendor_id: str, wedding_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """A new invoice (an order of the wedding's job) -> ``create_order``; amounts in integer minor units of
        the studio's currency (another currency is refused: ``currency_mismatch``)."""
        with self.db.read() as s:
            w = self._wedding(s, vendor_id, wedding_id)
            conn = self._writable(s, w.connection_id, "create_order")
        number = _text(values.get("number"), "number", 64)
        if not number:
            raise InvalidInput("an invoice needs a number (the order's name)", code="missing_field")
        currency = _currency(values.get("currency"))
        lines: list[dict[str, Any]] = []
        for n, li in enumerate(values.get("line_items") or ()):
            if not isinstance(li, Mapping):
                raise InvalidInput(f"line_items[{n}] is an object", code="invalid_field")
            name = _text(li.get("name"), f"line_items[{n}].name", 128)
            if not name:
                raise InvalidInput(f"line_items[{n}] needs a name", code="missing_field")
            quantity = li.get("quantity", 1)
            if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 10_000:
                raise InvalidInput(f"line_items[{n}].quantity is an integer from 1 to 10000", code="invalid_field")
            lines.append({"name": name, "unit_minor": _money(li.get("unit_minor"), f"line_items[{n}].unit_minor"),
                          "quantity": quantity})
        total = values.get("total_minor")
        if total is not None:
            total = _money(total, "total_minor")
        if lines:
            line_total = sum(li["unit_minor"] * li["quantity"] for li in lines)
            if total is not None and total != line_total:
                raise InvalidInput(f"total_minor {total} is not the sum of the line items ({line_total})",
                                   code="total_mismatch")
            total = _money(line_total, "the sum of the line items (unit_minor x quantity)")
        if total is None:
            raise InvalidInput("an invoice needs line_items or total_minor", code="missing_field")
        due = _date(values.get("due_date"), "due_date")
        await self._check_currency(conn, currency)
        payload = {"invoice": {"number": number, "currency": currency, "total_minor": total,
                               "line_items": lines, "due_date": _iso(due)}}
        with self.db.session() as s:
            w = self._wedding(s, vendor_id, wedding_id)
            o = self._enqueue(s, vendor_id, conn.id, "create_order", record_type="wedding", record_id=w.id,
                              remote_id=w.remote_id, payload=payload)
            return outbox_out(o)

    async def create_payment(self, vendor_id: str, wedding_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """A payment received for the wedding -> ``create_payment`` applied to one of its invoices
        (``invoice_id``, or its only open invoice)."""
        with self.db.read() as s:
            w = self._wedding(s, vendor_id, wedding_id)
            conn = self._writable(s, w.connection_id, "create_payment")
            invoice_id = values.get("invoice_id")
            invoices = list(s.execute(select(CrmInvoice).where(
                CrmInvoice.connection_id == w.connection_id, CrmInvoice.wedding_remote_id == w.remote_id,
                CrmInvoice.deleted_at.is_(None))).scalars())
            if invoice_id is not None:
                invoice = next((i for i in invoices if i.id == invoice_id), None)
                if invoice is None:
                    raise NotFound("invoice not found on this wedding", code="unknown_invoice")
            else:
                open_ = [i for i in invoices if i.status not in ("void", "paid")] or invoices
                if not open_:
                    raise InvalidInput("the wedding has no invoice to record a payment against: create one first "
                                       "(POST /api/crm/weddings/{id}/invoices)", code="no_invoice")
                if len(open_) > 1:
                    raise InvalidInput("the wedding has several invoices: name one with invoice_id",
                                       code="invoice_required")
                invoice = open_[0]
            invoice_local, order_remote = invoice.id, invoice.remote_id
            balance = (invoice.total_minor - (invoice.paid_minor or 0)) if invoice.total_minor is not None else None
        amount = _money(values.get("amount_minor"), "amount_minor", positive=True)
        if balance is not None and amount > balance:
            raise InvalidInput(f"the invoice has {balance} minor units left to pay; {amount} is more",
                               code="exceeds_balance", details={"balance_minor": balance})
        currency = _currency(values.get("currency"))
        received = _date(values.get("received"), "received")
        memo = _text(values.get("memo"), "memo", 128)
        await self._check_currency(conn, currency)
        payload = {"payment": {"amount_minor": amount, "currency": currency, "received": _iso(received),
                               "memo": memo, "order_remote_id": order_remote, "wedding_id": wedding_id}}
        with self.db.session() as s:
            w = self._wedding(s, vendor_id, wedding_id)
            # the balance again, in the transaction that enqueues (the invoice row locked on PostgreSQL; SQLite's
            # write transactions are serial), less the payments still on their way: three payments of 600 sent at
            # once to an invoice with 1,000 left were all accepted, and two were created at VSCO and then refused
            # there ("balance is 400"), left unapplied at the provider
            inv = s.execute(select(CrmInvoice).where(CrmInvoice.id == invoice_local).with_for_update()).scalar_one()
            if inv.total_minor is not None:
                pending = sum(int(((row.payload or {}).get("payment") or {}).get("amount_minor") or 0)
                              for row in s.execute(select(CrmOutbox).where(
                                  CrmOutbox.record_id == invoice_local, CrmOutbox.op == "create_payment",
                                  CrmOutbox.status == "pending")).scalars())
                left = inv.total_minor - (inv.paid_minor or 0) - pending
                if amount > left:
                    raise InvalidInput(f"the invoice has {left} minor units left to pay (payments on their way "
                                       f"counted); {amount} is more", code="exceeds_balance",
                                       details={"balance_minor": left, "pending_minor": pending})
            o = self._enqueue(s, vendor_id, conn.id, "create_payment", record_type="invoice",
                              record_id=invoice_local, remote_id=w.remote_id, payload=payload)
            return outbox_out(o)

    # -- a marketplace booking becomes a CRM job -----------------------------------------------------------------
    def create_booking(self, vendor_id: str, connection_id: str, client_ids: Sequence[str],
                       values: Mapping[str, Any]) -> dict[str, Any]:
        """Create a job at ``connection_id`` for a marketplace booking: each unified client without a record at
        that connection gets a ``create_contact`` row, then one ``create_job`` row links the job to them.

        A product reached only through a Zap (HoneyBook) takes one ``create_project`` row instead: the project
        and its client go to the vendor's "Create Project" catch hook together (the Zap creates the client), and
        the project comes back through the "New Project Booked" hook with our reference."""
        conn = self.hub.connections.get(vendor_id, connection_id)  # another vendor's: 404
        with self.db.session() as s:
            project = (self._capable(s, conn.id, "create_project") is not None
                       and self._capable(s, conn.id, "create_job") is None)
            if project:
                self._writable(s, conn.id, "create_project")
                if not self.hub.connections.credentials(conn).get("create_project_hook_url"):
                    raise InvalidInput(
                        f"{conn.provider} takes new projects through the Catch Hook of the vendor's 'Create "
                        "Project' Zap: set the connection credential create_project_hook_url first",
                        code="not_writable", details={"provider": conn.provider, "op": "create_project",
                                                      "missing_credential": "create_project_hook_url"})
            else:
                for op in ("create_contact", "create_job"):
                    self._writable(s, conn.id, op)
            ids = list(dict.fromkeys(str(c) for c in client_ids))
            if not ids:
                raise InvalidInput("a booking needs at least one client (client_ids)", code="missing_field")
            if len(ids) > MAX_BOOKING_CLIENTS:
                raise InvalidInput(f"at most {MAX_BOOKING_CLIENTS} clients per booking", code="too_many_clients")
            people = {c.id: c for c in s.execute(select(CrmClient).where(CrmClient.id.in_(ids),
                                                                         CrmClient.vendor_id == vendor_id)).scalars()}
            missing = [c for c in ids if c not in people]
            if missing:
                raise NotFound("client not found", code="unknown_client", details={"client_ids": missing})
            bad = sorted(set(values) - {"name", "event_date", "stage", "guest_count", "job_type"})
            if bad:
                raise InvalidInput(f"unknown wedding fields {bad}", code="invalid_field")
            wedding: dict[str, Any] = {"name": _text(values.get("name"), "name", 255),
                                       "event_date": _iso(_date(values.get("event_date"), "event_date")),
                                       "stage": _text(values.get("stage"), "stage", 32) or "booked",
                                       "guest_count": values.get("guest_count"),
                                       "job_type": _text(values.get("job_type"), "job_type", 200)}
            if not wedding["name"]:
                raise InvalidInput("a booking needs a name", code="missing_field")
            if wedding["stage"] not in JOB_STAGES:
                raise InvalidInput(f"stage is one of {list(JOB_STAGES)}", code="invalid_stage")
            g = wedding["guest_count"]
            if g is not None and (isinstance(g, bool) or not isinstance(g, int) or not 0 <= g <= 100_000):
                raise InvalidInput("guest_count is an integer between 0 and 100000", code="invalid_field")
            if project:
                snapshots = [_snapshot(people[cid]) for cid in ids]
                row = self._enqueue(s, vendor_id, conn.id, "create_project", record_type="wedding",
                                    crm_client_id=ids[0],
                                    payload={"wedding": wedding, "client": snapshots[0], "others": snapshots[1:]})
                return {**outbox_out(row), "contacts": []}
            have = {c.crm_client_id: c.remote_id for c in s.execute(select(Client).where(
                Client.connection_id == conn.id, Client.crm_client_id.in_(ids), Client.deleted_at.is_(None))
                .order_by(Client.id)).scalars()}
            contacts: list[dict[str, Any]] = []
            rows = []
            for cid in ids:
                if cid in have:
                    contacts.append({"crm_client_id": cid, "remote_id": have[cid]})
                    continue
                row = self._enqueue(s, vendor_id, conn.id, "create_contact", crm_client_id=cid,
                                    payload={"client": _snapshot(people[cid])})
                rows.append(row)
                contacts.append({"crm_client_id": cid, "outbox_id": row.id})
            job = self._enqueue(s, vendor_id, conn.id, "create_job", record_type="wedding",
                                payload={"wedding": wedding, "contacts": contacts})
            return {**outbox_out(job), "contacts": [outbox_out(r) for r in rows]}

    # -- the drain ---------------------------------------------------------------------------------------------
    async def send(self, outbox_id: str) -> str:
        """Send one write-back (any op but ``update_contact``); returns ``done``, ``failed``, or ``pending`` when
        another drain holds it. The row is claimed first (a lease of ``LEASE``: ``sent_at`` is stamped while it
        stays pending), so two drains never send it at once; a row claimed before (a retry, or a drain that
        died mid-call) looks its record up by our reference before creating it. A retriable provider error
        releases the row and is raised (sent again by the next attempt); a fatal one fails the row."""
        with self.db.read() as s:
            o = s.get(CrmOutbox, outbox_id)
            if o is None or o.status != "pending":
                return o.status if o is not None else "missing"
            vendor = s.get(Vendor, o.vendor_id)
            tz = vendor.timezone if vendor is not None else "UTC"
        claimed, retry = self.claim(outbox_id)
        if not claimed:
            return "pending"  # another drain is sending it, or it waits (a backoff, an older row first)
        if o.op not in OPS:
            self.release(outbox_id, f"unknown write-back op {o.op!r}", final=True)
            return "failed"
        try:
            conn = self.hub.connections.get_any(o.connection_id)
            connector = await self.hub.connections.connector(conn)
            if getattr(connector, OPS[o.op], None) is None:
                raise Fatal(f"{conn.provider} cannot {o.op}", provider=conn.provider, code="not_writable")
            handler = getattr(self, f"_send_{o.op}")
            await handler(o, conn, connector, tz, retry)
        except BaseException as exc:
            return self.settle(outbox_id, exc)
        return "done"

    def pending(self, limit: int = 100, now: datetime | None = None) -> list[str]:
        """Ids of the rows a drain may send now (see :func:`sendable`), oldest first."""
        with self.db.read() as s:
            return list(s.execute(select(_OUTBOX.c.id).where(*sendable(now or utcnow()))
                                  .order_by(_OUTBOX.c.id).limit(limit)).scalars())

    def claim(self, outbox_id: str) -> tuple[bool, bool]:
        """(claimed, claimed before): take the row when a drain may send it now (:func:`sendable`)."""
        now = utcnow()
        with self.db.engine.begin() as c:
            before = c.execute(select(_OUTBOX.c.attempts).where(_OUTBOX.c.id == outbox_id)).scalar_one()
            res = c.execute(update(_OUTBOX).where(_OUTBOX.c.id == outbox_id, *sendable(now)).values(
                sent_at=now, attempts=_OUTBOX.c.attempts + 1))
            return getattr(res, "rowcount", 0) == 1, bool(before)

    @staticmethod
    async def _found_or_create(stream: str, reference: str, retry: bool, find: Callable[[], Awaitable[Any]],
                               create: Callable[[], Awaitable[WriteResult]]) -> WriteResult:
        """On a retry, the record our reference names (an earlier attempt may have made it); else create it
        (the connector itself looks it up after an unknown outcome before sending again)."""
        if retry:
            item = await find()
            if item is not None:
                return WriteResult(stream, str(item["id"]), False, reference, item, parse_ts(item.get("modified")))
        return await create()

    async def _send_update_job(self, o: CrmOutbox, conn: Connection, connector: Any, tz: str,
                              retry: bool) -> None:
        with self.db.read() as s:
            w = s.get(Wedding, o.record_id) if o.record_id else None
            if w is None or w.deleted_at is not None:
                raise NotFound("the wedding is gone", code="record_gone")
            fields = dict(o.payload.get("fields") or {})
            over = {k: (_date(v, k) if k == "event_date" else v) for k, v in fields.items()}
            rec = wedding_record(w, **over)
        result = await connector.update_job(o.remote_id, rec, fields=sorted(fields))
        self._done(o, conn, "jobs", map_record(connector, "jobs", result.item))

    async def _send_update_event(self, o: CrmOutbox, conn: Connection, connector: Any, tz: str,
                                retry: bool) -> None:
        with self.db.read() as s:
            e = s.get(CrmEvent, o.record_id) if o.record_id else None
            if e is None or e.deleted_at is not None:
                raise NotFound("the event is gone", code="record_gone")
            fields = dict(o.payload.get("fields") or {})
            over = {k: (_aware(v, k) if k in ("starts_at", "ends_at") else v) for k, v in fields.items()}
            rec = event_record(e, **over)
            zone = str((e.custom_fields or {}).get("timezoneName") or tz)
        result = await connector.update_event(o.remote_id, rec, fields=sorted(fields), timezone=_zone(zone))
        self._done(o, conn, "events", map_record(connector, "events", result.item))

    async def _send_create_event(self, o: CrmOutbox, conn: Connection, connector: Any, tz: str,
                                retry: bool) -> None:
        ev = dict(o.payload.get("event") or {})
        rec = EventRecord(remote_id="", wedding_remote_id=o.remote_id, name=ev.get("name"),
                          starts_at=_aware(ev.get("starts_at"), "starts_at"),
                          ends_at=_aware(ev.get("ends_at"), "ends_at"), location=ev.get("location"))
        ref = o.idempotency_key
        result = await self._found_or_create(
            "events", ref, retry, lambda: connector.find_by_reference("events", ref),
            lambda: connector.create_event(rec, reference=ref, job_id=o.remote_id,
                                           timezone=_zone(str(o.payload.get("timezone") or tz))))
        self._done(o, conn, "events", map_record(connector, "events", result.item), created=result)

    async def _send_create_order(self, o: CrmOutbox, conn: Connection, connector: Any, tz: str,
                                retry: bool) -> None:
        inv = dict(o.payload.get("invoice") or {})
        rec = InvoiceRecord(remote_id="", wedding_remote_id=o.remote_id, number=inv.get("number"),
                            currency=inv.get("currency"), total_minor=inv.get("total_minor"),
                            due_date=_date(inv.get("due_date"), "due_date"),
                            custom_fields={"line_items": inv.get("line_items") or []})
        job_id = str(o.remote_id)

        async def find() -> dict[str, Any] | None:  # orders have no reference field: our number and total
            return next((x for x in await connector.job_orders(job_id) if x.get("name") == rec.number
                         and x.get("total") == rec.total_minor), None)

        result = await self._found_or_create(
            "orders", o.idempotency_key, retry, find,
            lambda: connector.create_order(job_id, rec, reference=o.idempotency_key))
        self._done(o, conn, "orders", map_record(connector, "orders", result.item), created=result)

    async def _send_create_payment(self, o: CrmOutbox, conn: Connection, connector: Any, tz: str,
                                  retry: bool) -> None:
        pay = dict(o.payload.get("payment") or {})
        order_id = pay.get("order_remote_id")
        ref, job_id, amount = o.idempotency_key, str(o.remote_id), int(pay["amount_minor"])
        result = await self._found_or_create(
            "payments", ref, retry, lambda: connector.find_by_reference("payments", ref, job_id=job_id),
            lambda: connector.create_payment(
                job_id, amount_minor=amount, currency=str(pay.get("currency")), reference=ref,
                received=_date(pay.get("received"), "received"), memo=pay.get("memo"), order_id=order_id))
        if order_id and not result.created:  # found: applied to its order unless it already is
            result = await connector.apply_payment(result, order_id, amount)
        # the payment is stored on the order it was applied to: the order as the provider now holds it
        order = await connector.get_record("orders", order_id) if order_id else None
        echo = map_record(connector, "orders", order) if order is not None else None
        if echo is not None:  # with the payment's date, method, memo and status as the provider holds them
            echo = with_payment(echo, map_record(connector, "payments", result.item))
        self._done(o, conn, "orders", echo, created=result)

    async def _send_create_contact(self, o: CrmOutbox, conn: Connection, connector: Any, tz: str,
                                  retry: bool) -> None:
        snap = dict(o.payload.get("client") or {})
        kwargs: dict[str, Any] = {k: snap.get(k) for k in ("first_name", "last_name", "display_name", "email",
                                                           "phone", "company", "address")}
        rec = ClientRecord(remote_id="", **kwargs)
        ref = o.idempotency_key
        result = await self._found_or_create(
            "contacts", ref, retry, lambda: connector.find_by_reference("contacts", ref, email=rec.email),
            lambda: connector.create_contact(rec, reference=ref))
        echo = map_record(connector, "contacts", result.item)
        with self.db.engine.begin() as c:
            self._attach_contact(c, o.vendor_id, conn, str(o.crm_client_id), echo)
            self._mark_done(c, o, echo, result)

    async def _send_push_inquiry(self, o: CrmOutbox, conn: Connection, connector: Any, tz: str,
                                 retry: bool) -> None:
        """A marketplace inquiry to a push-only CRM; our reference makes a repeat the provider's duplicate,
        not a second inquiry (Light Blue: ``ID`` + ``Source``, answered ``-4``)."""
        with self.db.read() as s:
            w = s.get(Wedding, o.record_id) if o.record_id else None
            src = s.get(Client, o.source_client_id) if o.source_client_id else None
            if w is None or src is None:
                raise NotFound("the inquiry's records are gone", code="record_gone")
            client = ClientRecord(remote_id=src.remote_id, first_name=src.first_name, last_name=src.last_name,
                                  display_name=src.display_name, email=src.email, phone=src.phone,
                                  custom_fields=dict(src.custom_fields or {}))
            wedding = wedding_record(w)
        result = await connector.push_inquiry(client, wedding, reference=o.idempotency_key,
                                              message=(o.payload or {}).get("message"))
        outcome = {"status": getattr(result, "status", None), "duplicate": bool(getattr(result, "duplicate", False))}
        with self.db.engine.begin() as c:
            c.execute(update(_OUTBOX).where(_OUTBOX.c.id == o.id).values(
                status="done", sent_at=utcnow(), payload={**(o.payload or {}), "result": outcome}))

    async def _send_create_project(self, o: CrmOutbox, conn: Connection, connector: Any, tz: str,
                                   retry: bool) -> None:
        """A booking at a product reached through a Zap (HoneyBook's "Create Project"): POSTed to the vendor's
        catch hook with our reference as the idempotency key, sent again as is after an unknown outcome (the
        recommended Zap drops a key it has seen; nothing can be looked up). Nothing comes back but Zapier's
        request id: the project arrives through the "New Project Booked" hook, carrying our reference."""
        payload = dict(o.payload or {})
        names = ("first_name", "last_name", "display_name", "email", "phone", "company", "address")

        def person(snap: Mapping[str, Any]) -> ClientRecord:
            kwargs: dict[str, Any] = {k: snap.get(k) for k in names}
            return ClientRecord(remote_id="", **kwargs)

        wd = dict(payload.get("wedding") or {})
        wedding = WeddingRecord(remote_id="", name=wd.get("name"),
                                event_date=_date(wd.get("event_date"), "event_date"), stage=wd.get("stage"),
                                guest_count=wd.get("guest_count"), job_type=wd.get("job_type"))
        receipt = await connector.create_project(person(payload.get("client") or {}), wedding,
                                                 idempotency_key=o.idempotency_key,
                                                 others=[person(x) for x in payload.get("others") or ()])
        outcome = {"request_id": receipt.request_id, "attempt": receipt.attempt, "status": receipt.status}
        with self.db.engine.begin() as c:
            c.execute(update(_OUTBOX).where(_OUTBOX.c.id == o.id).values(
                status="done", sent_at=utcnow(), payload={**payload, "result": outcome}))

    async def _send_create_job(self, o: CrmOutbox, conn: Connection, connector: Any, tz: str,
                              retry: bool) -> None:
        payload = dict(o.payload)
        contact_ids: list[str] = []
        for entry in payload.get("contacts") or ():
            remote = entry.get("remote_id")
            if remote is None and entry.get("outbox_id"):
                status = await self.send(entry["outbox_id"])  # a no-op once it is done
                if status == "pending":  # another drain is sending it: this job waits for the next attempt
                    raise Retriable(f"the contact write-back {entry['outbox_id']} is being sent",
                                    provider=conn.provider)
                if status != "done":
                    raise Conflict(f"the contact write-back {entry['outbox_id']} is {status}",
                                   code="prerequisite_failed")
                with self.db.read() as s:
                    remote = s.execute(select(Client.remote_id).where(
                        Client.connection_id == conn.id, Client.crm_client_id == entry["crm_client_id"],
                        Client.deleted_at.is_(None)).order_by(Client.id.desc()).limit(1)).scalar_one_or_none()
                    if remote is None:
                        raise NotFound("the created contact is no longer stored", code="record_gone")
            if remote is not None:
                contact_ids.append(str(remote))
        wd = dict(payload.get("wedding") or {})
        rec = WeddingRecord(remote_id="", name=wd.get("name"), event_date=_date(wd.get("event_date"), "event_date"),
                            stage=wd.get("stage"), guest_count=wd.get("guest_count"), job_type=wd.get("job_type"))
        ref = o.idempotency_key
        result = await self._found_or_create(
            "jobs", ref, retry, lambda: connector.find_by_reference("jobs", ref),
            lambda: connector.create_job(rec, reference=ref, contact_ids=contact_ids))
        if not result.created:  # found: its links are made unless they exist
            await connector.link_contacts(result.remote_id, contact_ids, reference=ref)
        echo = map_record(connector, "jobs", result.item)
        # the links just made are source records too (stream job_contacts): stored now, they are echoes later
        links = [map_record(connector, "job_contacts", i) for i in await connector.job_links(result.remote_id)] \
            if hasattr(connector, "job_links") and "job_contacts" in STREAM_MODELS else []
        with self.db.engine.begin() as c:
            self.hub.sync.upsert(c, o.vendor_id, conn.id, "jobs", [echo])
            if links:
                self.hub.sync.upsert(c, o.vendor_id, conn.id, "job_contacts", links)
            if echo.event_date is not None:  # the wedding date is identity evidence for its clients
                self.hub.sync.crm.apply_weddings(c, o.vendor_id, conn.id, [
                    {"event_date": echo.event_date, "client_remote_ids": contact_ids}])
            local = c.execute(select(Wedding.id).where(Wedding.connection_id == conn.id,
                                                       Wedding.remote_id == echo.remote_id)).scalar_one()
            self._mark_done(c, o, echo, result, record_id=local, extra={"contact_remote_ids": contact_ids})

    # -- hooks --------------------------------------------------------------------------------------------------
    async def refetch_payment(self, connection_id: str, payment_id: str) -> str:
        """A ``payment.created`` hook: re-fetch the payment (hooks are unsigned and carry only its id), then
        the orders it is applied to, and store those (a payment lives on its invoices)."""
        conn = self.hub.connections.get_any(connection_id)
        connector = await self.hub.connections.connector(conn)
        item = await connector.get_record("payments", payment_id)
        if item is None:
            return "absent"
        payment = map_record(connector, "payments", item)
        orders = []
        for order_id in payment.get("order_remote_ids") or ():
            order = await connector.get_record("orders", order_id)
            if order is not None:  # the order's allocation with the payment's own date, method, memo, status
                orders.append(with_payment(map_record(connector, "orders", order), payment))
        if not orders:
            return "unallocated"  # applied to no order yet: nothing of ours to store it on
        with self.db.session() as s:
            created, updated, _ = self.hub.sync.upsert(s, conn.vendor_id, conn.id, "orders", orders)
        return "created" if created else "updated" if updated else "unchanged"

    # -- helpers --------------------------------------------------------------------------------------------------
    @staticmethod
    def _wedding(s: Session, vendor_id: str, wedding_id: str) -> Wedding:
        w = s.get(Wedding, wedding_id)
        if w is None or w.vendor_id != vendor_id or w.deleted_at is not None:
            raise NotFound("wedding not found")
        return w

    @staticmethod
    def _event(s: Session, vendor_id: str, event_id: str) -> CrmEvent:
        e = s.get(CrmEvent, event_id)
        if e is None or e.vendor_id != vendor_id or e.deleted_at is not None:
            raise NotFound("event not found")
        return e

    @classmethod
    def _writable(cls, s: Session, connection_id: str, op: str) -> Connection:
        """The connection, when its connector can do ``op``; else a 422 ``not_writable``."""
        conn = cls._capable(s, connection_id, op)
        if conn is None:
            provider = s.get(Connection, connection_id).provider  # type: ignore[union-attr]
            raise InvalidInput(f"{provider} cannot take this write-back ({op}): its channel does not allow it",
                               code="not_writable", details={"provider": provider, "op": op})
        return conn

    @staticmethod
    def _capable(s: Session, connection_id: str, op: str) -> Connection | None:
        """The connection when its connector can do ``op``, else None."""
        from wedsync.connectors.registry import get_connector_class

        conn = s.get(Connection, connection_id)
        if conn is None:
            raise NotFound("connection not found", code="unknown_connection")
        try:
            klass = get_connector_class(conn.provider)
        except WedsyncError:
            return None
        return conn if callable(getattr(klass, OPS[op], None)) else None

    def _event_values(self, changes: Mapping[str, Any], current: Any = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "name":
                out[name] = _text(value, name, 255)
            elif name == "location":
                out[name] = _text(value, name, 500)
            else:
                out[name] = _aware(value, name)
        starts = out.get("starts_at", getattr(current, "starts_at", None))
        ends = out.get("ends_at", getattr(current, "ends_at", None))
        if starts is not None and ends is not None and ends < starts:
            raise InvalidInput("ends_at is before starts_at", code="invalid_range")
        return out

    async def _check_currency(self, conn: Connection, currency: str) -> None:
        """Refuse another currency than the studio's before anything is committed (no conversion, ever)."""
        connector = await self.hub.connections.connector(conn)
        studio = getattr(connector, "studio_currency", None)
        if studio is None:
            return
        code = str(await studio()).upper()
        if currency != code:
            raise InvalidInput(f"the studio bills in {code}; an amount in {currency} cannot be written",
                               code="currency_mismatch", details={"studio_currency": code})

    @staticmethod
    def _enqueue(s: Session, vendor_id: str, connection_id: str, op: str, *, payload: dict[str, Any],
                 record_type: str | None = None, record_id: str | None = None, remote_id: str | None = None,
                 crm_client_id: str | None = None, source_client_id: str | None = None,
                 idempotency_key: str | None = None) -> CrmOutbox:
        """One pending outbox row; its idempotency key is ``wedsync-crm-<row id>`` unless the caller derives
        one from what it is about (unique: a second row for the same thing then fails to insert)."""
        outbox_id = new_id()
        row = CrmOutbox(id=outbox_id, vendor_id=vendor_id, connection_id=connection_id, op=op, payload=payload,
                        record_type=record_type, record_id=record_id, remote_id=remote_id,
                        crm_client_id=crm_client_id, source_client_id=source_client_id,
                        idempotency_key=idempotency_key or f"wedsync-crm-{outbox_id}",
                        status="pending", attempts=0, created_at=utcnow())
        s.add(row)
        s.flush()
        return row

    def _done(self, o: CrmOutbox, conn: Connection, stream: str, echo: Any, created: Any = None) -> None:
        with self.db.engine.begin() as c:
            if echo is not None:  # the provider's copy as we wrote it: its hook/next sync is then unchanged
                self.hub.sync.upsert(c, o.vendor_id, conn.id, stream, [echo])
            self._mark_done(c, o, echo, created)

    @staticmethod
    def _mark_done(c: SAConnection, o: CrmOutbox, echo: Any, result: Any = None, *, record_id: str | None = None,
                   extra: Mapping[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"status": "done", "sent_at": utcnow(),  # (attempts: counted by the claim)
                                  "written_hash": record_values(echo)["content_hash"] if echo is not None else None}
        if result is not None and o.op.startswith("create_"):
            values["payload"] = {**o.payload, **(extra or {}), "result": {
                "remote_id": result.remote_id, "created": bool(result.created),
                **({"order_remote_id": echo.remote_id} if o.op == "create_payment" and echo is not None else {})}}
            if o.op in ("create_job", "create_contact"):
                values["remote_id"] = result.remote_id
        if record_id is not None:
            values["record_id"] = record_id
        c.execute(update(_OUTBOX).where(_OUTBOX.c.id == o.id).values(**values))

    def _attach_contact(self, c: SAConnection, vendor_id: str, conn: Connection, crm_client_id: str,
                        echo: ClientRecord) -> None:
        """Store the contact we created as a source record of the unified client it was made from (not left
        to identity resolution, which could file it elsewhere), with that record's blocking keys."""
        exists = c.execute(select(_CLIENTS.c.id).where(_CLIENTS.c.connection_id == conn.id,
                                                       _CLIENTS.c.remote_id == echo.remote_id)).first()
        if exists is not None:  # stored already (a hook was faster): a normal upsert
            self.hub.sync.upsert(c, vendor_id, conn.id, "contacts", [echo])
            return
        values = record_values(echo)
        c.execute(insert(_CLIENTS).values(**values, id=new_id(), vendor_id=vendor_id, connection_id=conn.id,
                                          provider=conn.provider, synced_at=utcnow(), version=1,
                                          crm_client_id=crm_client_id))
        have = set(c.execute(select(_KEYS.c.key).where(_KEYS.c.crm_client_id == crm_client_id)).scalars())
        keys = sorted(set(blocking_keys(record_features(values))) - have)
        if keys:
            c.execute(insert(_KEYS), [{"vendor_id": vendor_id, "crm_client_id": crm_client_id, "key": k}
                                      for k in keys])

    def settle(self, outbox_id: str, exc: BaseException) -> str:
        """A claimed row whose send raised ``exc``: ``"failed"`` when that is final, else the row goes back with a
        backoff and ``exc`` is raised again. The provider refusing (``Fatal``), a local record gone or a failed
        prerequisite (``WedsyncError``) and a value the provider's format cannot carry or a bug (the same every
        time: it would come back, and hold up the rows after it, forever) are final; a retriable provider error,
        the store (``DBAPIError``) and a shutdown or cancellation are not."""
        name = type(exc).__name__
        if isinstance(exc, ConnectorError):
            final, reason = isinstance(exc, Fatal), f"{name}: {exc}"
        elif isinstance(exc, WedsyncError):
            final, reason = True, f"{name}: {exc.message}"
        elif isinstance(exc, DBAPIError) or not isinstance(exc, Exception):
            final, reason = False, f"interrupted: {name}"
        else:
            final, reason = True, f"internal error: {name}: {exc}"
        self.release(outbox_id, reason, final=final)
        if final:
            return "failed"
        raise exc

    def release(self, outbox_id: str, error: str, *, final: bool) -> None:
        """A claimed row that was not sent: failed for good, or pending again after a backoff (lease released)."""
        with self.db.engine.begin() as c:
            attempts = c.execute(select(_OUTBOX.c.attempts).where(_OUTBOX.c.id == outbox_id)).scalar_one_or_none()
            c.execute(update(_OUTBOX).where(_OUTBOX.c.id == outbox_id).values(
                status="failed" if final else "pending", last_error=error[:2000], sent_at=None,
                next_attempt_at=None if final else utcnow() + retry_delay(attempts or 1)))


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return name
