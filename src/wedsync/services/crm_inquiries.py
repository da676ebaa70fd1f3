"""Marketplace inquiries (``hub.crm_inquiries``): a couple's inquiry becomes the vendor's client once, and reaches
the CRMs that take inquiries.

``POST /api/crm/inquiries`` (the marketplace, with the vendor's key) hands :meth:`InquiryService.receive` one
inquiry. In one transaction:

1. the inquirer (and the partner, when given) become source client records of the vendor's
   ``wedsync-marketplace`` connection (created on first use), remote ids ``<inquiry id>#1`` and ``#2``, and the
   wedding they ask about a source wedding (remote id ``<inquiry id>``); they go through the sync engine's
   upsert, so identity resolution merges them into the unified client the couple already is (from Tave, a
   HoneyBook export, a Zap), with the wedding date as evidence, and every merge is recorded and can be undone;
2. every active connection of the vendor whose connector can ``push_inquiry`` (Light Blue) gets one
   ``push_inquiry`` outbox row (never a second one for the same inquiry), sent by the CRM outbox drain with
   the row's idempotency key as the provider's reference (Light Blue reports a repeat as a duplicate).

Posting the same inquiry again is idempotent: the records are unchanged (or updated when the marketplace sends
newer details) and no second delivery is queued.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from wedsync.connectors.channels.csv_layouts import check_email, check_phone
from wedsync.connectors.crm.wedsync_marketplace import MarketplaceConnector
from wedsync.connectors.registry import CONNECTORS
from wedsync.domain.crm import ClientRecord, WeddingRecord
from wedsync.errors import InvalidInput, NotFound
from wedsync.services.crm_sync import CrmStats
from wedsync.store.tables import Client, Connection, Wedding, utcnow
from wedsync.store.tables_crm import CrmMerge, CrmOutbox

SLUG = MarketplaceConnector.slug
PUSH_OP = "push_inquiry"
MAX_MESSAGE = 5000


@dataclass
class Person:
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None


@dataclass
class Inquiry:
    inquiry_id: str
    inquirer: Person
    partner: Person | None = None
    wedding_date: date | None = None
    venue: str | None = None
    guest_count: int | None = None
    message: str | None = None
    received_at: datetime | None = None


class InquiryService:
    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.db = hub.db

    # -- input ---------------------------------------------------------------------------------------
    @staticmethod
    def _person(p: Person, region: str, role: str) -> dict[str, Any]:
        email = phone = None
        if p.email:
            email = check_email(p.email)
            if email is None:
                raise InvalidInput(f"{role}.email is not a valid e-mail address", code="invalid_email",
                                   details={"field": f"{role}.email"})
        if p.phone:
            phone = check_phone(p.phone, region)
            if phone is None:
                raise InvalidInput(f"{role}.phone is not a possible phone number (default country {region})",
                                   code="invalid_phone", details={"field": f"{role}.phone"})
        first, last = (p.first_name or "").strip() or None, (p.last_name or "").strip() or None
        if not (first or last or email or phone):
            raise InvalidInput(f"the {role} needs a name, an e-mail or a phone", code="empty_person",
                               details={"field": role})
        return {"first_name": first, "last_name": last, "email": email, "phone": phone,
                "display_name": " ".join(x for x in (first, last) if x) or None}

    def _records(self, q: Inquiry, region: str) -> tuple[list[ClientRecord], WeddingRecord]:
        at = q.received_at or utcnow()
        if at.tzinfo is None:
            raise InvalidInput("received_at needs a UTC offset", code="naive_datetime")
        people = [("inquirer", q.inquirer)] + ([("partner", q.partner)] if q.partner is not None else [])
        clients = []
        for n, (role, p) in enumerate(people, start=1):
            values = self._person(p, region, role)
            clients.append(ClientRecord(remote_id=f"{q.inquiry_id}#{n}", **values,
                                        custom_fields={"inquiry_id": q.inquiry_id, "role": role,
                                                       "lead_source": "WedSync marketplace"},
                                        remote_created_at=at, remote_modified_at=at))
        names = [c.first_name or c.display_name or c.email or "" for c in clients]
        custom: dict[str, Any] = {"inquiry_id": q.inquiry_id}
        if q.venue:
            custom["venue"] = q.venue
        if q.message:
            custom["message"] = q.message
        wedding = WeddingRecord(remote_id=q.inquiry_id, name=" & ".join(n for n in names if n) or "Inquiry",
                                event_date=q.wedding_date, stage="inquiry", job_type="Wedding",
                                guest_count=q.guest_count, client_remote_ids=[c.remote_id for c in clients],
                                custom_fields=custom, remote_created_at=at, remote_modified_at=at)
        return clients, wedding

    # -- receive -------------------------------------------------------------------------------------
    def receive(self, vendor_id: str, q: Inquiry) -> dict[str, Any]:
        """Store the inquiry (resolved into unified clients) and queue its deliveries; returns the outcome,
        ``created`` false for a repeat."""
        if not q.inquiry_id or len(q.inquiry_id) > 100 or "#" in q.inquiry_id:
            raise InvalidInput("inquiry_id must be 1-100 characters without '#'", code="invalid_inquiry_id")
        if q.message is not None and len(q.message) > MAX_MESSAGE:
            raise InvalidInput(f"message is longer than {MAX_MESSAGE} characters", code="value_too_long")
        try:
            conn = self.hub.crm.connection_for(vendor_id, SLUG)
        except NotFound:
            conn = None
        region = str(((conn.settings if conn is not None else None) or {}).get("default_region") or "US").upper()
        clients, wedding = self._records(q, region)  # bad input stops here: nothing stored, nothing created
        if conn is None:
            conn = self.hub.crm.connection_for(vendor_id, SLUG, create=True)
        evidence = {c.remote_id: ({q.wedding_date} if q.wedding_date else set()) for c in clients}
        try:
            return self._store(vendor_id, conn.id, q, clients, wedding, evidence)
        except IntegrityError:
            # the same inquiry posted twice at once (a marketplace retry racing the first attempt): the other
            # request stored it; this one now finds its rows and queues nothing twice
            return self._store(vendor_id, conn.id, q, clients, wedding, evidence)

    def _store(self, vendor_id: str, connection_id: str, q: Inquiry, clients: list[ClientRecord],
               wedding: WeddingRecord, evidence: dict[str, set[date]]) -> dict[str, Any]:
        stats = CrmStats()
        sync = self.hub.sync
        with self.db.session() as s:
            c = s.connection()
            created, updated, _ = sync.upsert(c, vendor_id, connection_id, "contacts", clients, evidence=evidence,
                                              stats=stats)
            w_created, w_updated, _ = sync.upsert(c, vendor_id, connection_id, "jobs", [wedding])
            rows = {r.remote_id: r for r in s.execute(select(Client).where(
                Client.connection_id == connection_id, Client.remote_id.in_([x.remote_id for x in clients]))
            ).scalars()}
            w = s.execute(select(Wedding).where(Wedding.connection_id == connection_id,
                                                Wedding.remote_id == q.inquiry_id)).scalar_one()
            merges = {m.source_client_id: m for m in s.execute(select(CrmMerge).where(
                CrmMerge.source_client_id.in_([r.id for r in rows.values()]), CrmMerge.undone_at.is_(None))
            ).scalars()}
            inquirer = rows[clients[0].remote_id]
            deliveries = self._queue_deliveries(s, vendor_id, w.id, inquirer, q.message)
            out_clients = []
            for rec in clients:
                r = rows[rec.remote_id]
                m = merges.get(r.id)
                out_clients.append({"role": rec.custom_fields["role"], "client_id": r.id,
                                    "crm_client_id": r.crm_client_id, "merged": m is not None,
                                    "merge": {"id": m.id, "rule": m.rule, "score": m.score} if m else None})
            return {"inquiry_id": q.inquiry_id, "connection_id": connection_id, "wedding_id": w.id,
                    "created": bool(created or w_created), "updated": bool(updated or w_updated),
                    "clients": out_clients, "merged": sum(1 for x in out_clients if x["merged"]),
                    "deliveries": deliveries}

    def _queue_deliveries(self, s: Any, vendor_id: str, wedding_id: str, inquirer: Client,
                          message: str | None) -> list[dict[str, Any]]:
        from wedsync.services.crm_writeback import CrmWriteback

        out = []
        targets = s.execute(select(Connection).where(Connection.vendor_id == vendor_id,
                                                     Connection.status != "disabled")
                            .order_by(Connection.created_at, Connection.id)).scalars()
        for conn in targets:
            klass = CONNECTORS.get(conn.provider)  # (a provider no longer built takes nothing)
            if klass is None or not callable(getattr(klass, PUSH_OP, None)):
                continue
            # One delivery per inquiry and CRM, whoever asks: the key is derived from both (unique in the
            # outbox, and the provider's reference: Light Blue reports a repeat as a duplicate)
            key = f"wi-{wedding_id}-{conn.id}"
            row = s.execute(select(CrmOutbox).where(CrmOutbox.idempotency_key == key)).scalar_one_or_none()
            if row is None:
                row = CrmWriteback._enqueue(s, vendor_id, conn.id, PUSH_OP, payload={"message": message},
                                            record_type="inquiry", record_id=wedding_id,
                                            crm_client_id=inquirer.crm_client_id, source_client_id=inquirer.id,
                                            idempotency_key=key)
            out.append({"connection_id": conn.id, "provider": conn.provider, "outbox_id": row.id,
                        "status": row.status})
        return out


def inquiry_from(body: Mapping[str, Any]) -> Inquiry:
    """An :class:`Inquiry` from the API's validated body (``api/routers/crm_records.py:InquiryIn``)."""
    def person(p: Mapping[str, Any] | None) -> Person | None:
        if p is None:
            return None
        return Person(p.get("first_name"), p.get("last_name"), p.get("email"), p.get("phone"))

    inquirer = person(body)
    assert inquirer is not None
    return Inquiry(inquiry_id=str(body["inquiry_id"]).strip(), inquirer=inquirer, partner=person(body.get("partner")),
                   wedding_date=body.get("wedding_date"), venue=(body.get("venue") or "").strip() or None,
                   guest_count=body.get("guest_count"), message=(body.get("message") or "").strip() or None,
                   received_at=body.get("received_at"))
