"""The CRM hub: identity resolution and conflict detection of source records (in bulk, inside the page's
transaction), and the CRM service (``hub.crm``) over unified clients, merges, conflicts, mappings, the
write-back outbox, CSV imports/exports and Zapier-style hooks.

The sync engine (and the CSV/Zapier ingestion, through the same ``SyncService.upsert``) hands over each page's
new and changed ``clients`` rows. Per page: one query finds candidates by blocking key, one loads their
unified records and one their keys; then records are resolved in memory (``domain.identity``), changes are
merged three-way against the source's previous row (``domain.merge``), and everything is written with a
few bulk statements on the caller's connection, so a replayed page changes nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, cast

from sqlalchemy import Connection as SAConnection
from sqlalchemy import Table, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from wedsync.connectors.errors import Fatal
from wedsync.domain.crm import ClientRecord, WeddingRecord, record_values
from wedsync.domain.identity import (
    Features,
    Match,
    blocking_keys,
    decide,
    features,
    fold,
    key_value,
    search_patterns,
    search_text,
)
from wedsync.domain.merge import FieldConflict, FieldPolicy, Side, flatten, three_way
from wedsync.errors import Conflict, InvalidInput, NotFound, NotImplementedCapability, TooLarge, WedsyncError
from wedsync.store.bulk import insert_many, json_list_has_any, select_in
from wedsync.store.db import Database
from wedsync.store.paging import cursor_row
from wedsync.store.tables import Client, Connection, Wedding, new_id, utcnow
from wedsync.store.tables_crm import (
    CrmClient,
    CrmConflict,
    CrmFieldMapping,
    CrmFieldPolicy,
    CrmIdentityKey,
    CrmImportChunk,
    CrmImportError,
    CrmImportFile,
    CrmImportJob,
    CrmMerge,
    CrmOutbox,
)

CLIENT_FIELDS = ("first_name", "last_name", "display_name", "email", "phone", "company", "address")
DEFAULT_POLICY = FieldPolicy("newest_wins")
_CACHE_TTL = 2.0  # seconds a worker may apply a policy/mapping edit late (other processes' edits)
_IN_CHUNK = 2000
_E164 = re.compile(r"^\+\d{6,15}(;ext=\d+)?$")
ECHO_MARKER = "wedsync_reference"  # set by connectors on a record read back with our write's reference
REFERENCE_PREFIX = "ws:"

_CC: Table = CrmClient.__table__  # type: ignore[assignment]
_KEYS: Table = CrmIdentityKey.__table__  # type: ignore[assignment]
_CLIENTS: Table = Client.__table__  # type: ignore[assignment]
_MERGES: Table = CrmMerge.__table__  # type: ignore[assignment]
_CONFLICTS: Table = CrmConflict.__table__  # type: ignore[assignment]
_OUTBOX: Table = CrmOutbox.__table__  # type: ignore[assignment]


@dataclass
class _Written:
    """The write-backs to one source record whose echo is still expected (``CrmResolver._echoes``)."""

    ids: list[str] = field(default_factory=list)
    hashes: set[str] = field(default_factory=set)
    fields: frozenset[str] = frozenset()


@dataclass
class CrmStats:
    merged: int = 0
    conflicts: int = 0
    open_conflicts: int = 0
    echoes: int = 0
    new_clients: int = 0

    def add(self, other: CrmStats) -> None:
        for k in ("merged", "conflicts", "open_conflicts", "echoes", "new_clients"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


def project(custom: Mapping[str, Any] | None, mapping: Mapping[str, str | None]) -> dict[str, Any]:
    """A source's custom fields under the names the vendor mapped them to (unmapped: their own key;
    mapped to None: hidden)."""
    out: dict[str, Any] = {}
    for k, v in (custom or {}).items():
        if k == ECHO_MARKER:
            continue  # our own write-back reference, not the vendor's data
        if k in mapping:
            target = mapping[k]
            if target:
                out[target] = v
        else:
            out[k] = v
    return out


def _phone_for_key(phone: str | None) -> str | None:
    """An already-normalized E.164 phone (connectors store them so) without its extension, else None."""
    if phone and _E164.match(phone):
        return phone.split(";", 1)[0]
    return None


def record_features(values: Mapping[str, Any], dates: Iterable[date] = (), region: str | None = None
                    ) -> Features:
    phone = values.get("phone")
    fast = _phone_for_key(phone)
    f = features(values.get("first_name"), values.get("last_name"), values.get("display_name"),
                 emails=[values.get("email")], phones=[] if fast else [phone], dates=dates, region=region)
    if fast:  # already E.164 (connectors normalize): no second parse
        f = Features(f.first, f.last, f.emails, frozenset({fast}), f.dates)
    return f


@dataclass(slots=True, frozen=True)
class Prepared:
    """What a source record's write needs that depends on the record alone (``record_values`` with its
    content hash, a fresh row id, and for a client its identity features, blocking keys and search text),
    computed ahead of the write by :func:`prepare` while the previous page is written. ``region`` is the
    phone region the features were computed with: a write that resolves with another one computes them
    again. ``values`` is never changed; a write takes a copy."""

    rec: Any
    values: dict[str, Any]
    new_id: str
    region: str | None = None
    feats: Features | None = None
    keys: tuple[str, ...] = ()
    search: str | None = None


def prepare(records: Iterable[Any], *, clients: bool, region: str | None) -> dict[str, Prepared]:
    """:class:`Prepared` of each record by remote id (the last of a repeated id, as the write keeps)."""
    out: dict[str, Prepared] = {}
    for rec in records:
        values = record_values(rec)
        if clients:
            f = record_features(values, (), region)
            out[rec.remote_id] = Prepared(
                rec, values, new_id(), region, f, tuple(blocking_keys(f)),
                search_text(values.get("first_name"), values.get("last_name"), values.get("display_name"),
                            values.get("email"), values.get("phone")))
        else:
            out[rec.remote_id] = Prepared(rec, values, new_id())
    return out


#: the address-book kinds that are people who can be a couple (VSCO Workspace's ``Contact.kind`` is one of
#: person, company, employee, location; every other channel's records are people)
PERSON_KINDS = frozenset({"person"})


def is_person(values: Mapping[str, Any]) -> bool:
    """Whether a source record is a person who can be a client (see ``PERSON_KINDS``)."""
    return (values.get("kind") or "person") in PERSON_KINDS


def carried_address(values: dict[str, Any], base: Mapping[str, Any] | None, local: Mapping[str, Any]
                    ) -> dict[str, Any]:
    """``values`` with its address completed by the unified address's parts that neither it nor ``base`` (the
    source's previous values) carries: a source that has no column for a part (HoneyBook's CSV has one Address
    column, read as the street) says nothing about it, as a source without an address says nothing about the
    address. So a street-only row whose street is the client's is no change of the client's fuller address (a
    HoneyBook export imported back opened an address conflict for every client), and a new street from it
    changes the street and keeps the city. A part the source carried before and no longer does is a removal."""
    mine, theirs = values.get("address"), local.get("address")
    if not isinstance(mine, dict) or not isinstance(theirs, dict):
        return values
    before = (base or {}).get("address")
    carried = {k for k, v in mine.items() if v not in (None, "")}
    if isinstance(before, dict):
        carried |= {k for k, v in before.items() if v not in (None, "")}
    missing = {k: v for k, v in theirs.items() if k not in carried and v not in (None, "")}
    if not missing:
        return values
    return {**values, "address": {**{k: v for k, v in mine.items() if v not in (None, "")}, **missing}}


def _words(*parts: Any) -> list[str]:
    """The folded words of a name's parts, in order (``("Mary", "Ann Lee")`` and ``("Mary Ann", "Lee")`` alike)."""
    return fold(" ".join(x for x in parts if isinstance(x, str) and x)).split()


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


@dataclass
class _Person:
    id: str
    golden: dict[str, Any]
    feats: Features
    keys: set[str]
    version: int = 1
    source_connection_id: str | None = None
    source_provider: str | None = None
    source_at: datetime | None = None
    field_sources: dict[str, Any] = field(default_factory=dict)
    wedding_dates: list[str] = field(default_factory=list)
    is_new: bool = False
    dirty: bool = False
    new_keys: list[str] = field(default_factory=list)
    #: the search text of ``golden`` as it was made (a prepared record's), until a change to it
    search_cache: str | None = None

    def flat(self) -> dict[str, Any]:
        return flatten(self.golden, CLIENT_FIELDS)

    def side(self, name: str) -> Side:
        src = self.field_sources.get(name)
        if src:
            return Side(src.get("p"), src.get("c"), _parse(src.get("at")))
        return Side(self.source_provider, self.source_connection_id, self.source_at)

    def set_by(self, name: str, side: Side, record_id: str | None) -> None:
        """Note which source record set a field: nothing for the client's own record (the one it was made of,
        whose id it carries) at its own connection; else the connection, provider, time and record (``r``), so
        undoing a merge finds the fields the merged record set, also when it came from the same connection as
        the client (two rows of one export, two VSCO contacts)."""
        if side.connection_id == self.source_connection_id and record_id in (None, self.id):
            self.field_sources.pop(name, None)
        else:
            who = {"c": side.connection_id, "p": side.source, "at": _iso(side.at)}
            if record_id:
                who["r"] = record_id
            self.field_sources[name] = who

    def apply(self, changes: Mapping[str, Any], side: Side, record_id: str | None = None) -> None:
        if not changes:
            return
        self.search_cache = None
        for name, value in changes.items():
            if name.startswith("custom."):
                custom = dict(self.golden.get("custom_fields") or {})
                custom[name[7:]] = value
                self.golden["custom_fields"] = custom
            else:
                self.golden[name] = value
            self.set_by(name, side, record_id)
        if side.connection_id == self.source_connection_id and side.at and (
                self.source_at is None or side.at > self.source_at):
            self.source_at = side.at
        self.dirty = True

    def add_keys(self, f: Features, key_index: dict[str, set[str]], keys: list[str] | None = None) -> None:
        for k in blocking_keys(f) if keys is None else keys:
            if k not in self.keys:
                self.keys.add(k)
                self.new_keys.append(k)
            key_index.setdefault(k, set()).add(self.id)
        self.feats = self.feats.union(f)
        for d in f.dates:
            iso = d.isoformat()
            if iso not in self.wedding_dates:
                self.wedding_dates = sorted([*self.wedding_dates, iso])
                self.dirty = True

    def search(self) -> str:
        if self.search_cache is not None:
            return self.search_cache
        g = self.golden
        return search_text(g.get("first_name"), g.get("last_name"), g.get("display_name"), g.get("email"),
                           g.get("phone"))

    def row(self, vendor_id: str, now: datetime) -> dict[str, Any]:
        g = self.golden
        return {"id": self.id, "vendor_id": vendor_id, "kind": g.get("kind") or "person", "search_text": self.search(),
                **{f: g.get(f) for f in CLIENT_FIELDS}, "custom_fields": g.get("custom_fields") or {},
                "wedding_dates": self.wedding_dates, "source_connection_id": self.source_connection_id,
                "source_provider": self.source_provider, "source_at": self.source_at,
                "field_sources": self.field_sources, "version": self.version, "created_at": now,
                "updated_at": now}


class _TTLCache:
    def __init__(self) -> None:
        self._data: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            hit = self._data.get(key)
        if hit is None or time.monotonic() - hit[0] > _CACHE_TTL:
            return None
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class PolicyBook:
    """A vendor's conflict policies: (connection, field) > (connection, *) > (*, field) > (*, *) > default."""

    def __init__(self, rows: Iterable[Any]) -> None:
        self.rules: dict[tuple[str, str], FieldPolicy] = {
            (r.connection_id, r.field): FieldPolicy(r.kind, r.source, r.skew_seconds) for r in rows}

    def policy(self, connection_id: str, name: str) -> FieldPolicy:
        top = name.split(".", 1)[0] + ".*" if name.startswith("custom.") else name
        for key in ((connection_id, name), (connection_id, top), (connection_id, "*"), ("*", name), ("*", top),
                    ("*", "*")):
            p = self.rules.get(key)
            if p is not None:
                return p
        return DEFAULT_POLICY


class CrmResolver:
    """Resolves and merges pages of client records; needs only the caller's database connection."""

    def __init__(self) -> None:
        self._policies = _TTLCache()
        self._mappings = _TTLCache()

    def invalidate(self) -> None:
        self._policies.clear()
        self._mappings.clear()

    def policies(self, conn: SAConnection, vendor_id: str) -> PolicyBook:
        book = self._policies.get(vendor_id)
        if book is None:
            t = CrmFieldPolicy.__table__
            book = PolicyBook(conn.execute(select(t).where(t.c.vendor_id == vendor_id)).all())
            self._policies.put(vendor_id, book)
        return book  # type: ignore[no-any-return]

    def mapping(self, conn: SAConnection, connection_id: str, entity: str = "client") -> dict[str, str | None]:
        m = self._mappings.get((connection_id, entity))
        if m is None:
            t = CrmFieldMapping.__table__
            m = {r.source_key: r.target for r in conn.execute(
                select(t.c.source_key, t.c.target).where(t.c.connection_id == connection_id, t.c.entity == entity))}
            self._mappings.put((connection_id, entity), m)
        return m  # type: ignore[no-any-return]

    # -- loading --------------------------------------------------------------------------------------
    @staticmethod
    def _lookup_keys(conn: SAConnection, vendor_id: str, keys: Sequence[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for k, pid in select_in(conn, _KEYS, ("key", "crm_client_id"), "key", keys, vendor_id=vendor_id):
            out.setdefault(k, set()).add(pid)
        return out

    @staticmethod
    def _keys_of(conn: SAConnection, ids: Sequence[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for pid, k in select_in(conn, _KEYS, ("crm_client_id", "key"), "crm_client_id", ids):
            out.setdefault(pid, set()).add(k)
        return out

    @staticmethod
    def _features_of(first: str | None, last: str | None, display: str | None, keys: Iterable[str]) -> Features:
        """A unified client's features: its golden names, its keys' e-mails, phones and dates."""
        f = features(first, last, display)
        emails = {key_value(k) for k in keys if k.startswith("e:")}
        phones = {key_value(k) for k in keys if k.startswith("p:")}
        dates = {date.fromisoformat(key_value(k)) for k in keys if k.startswith("d:")}
        return Features(f.first, f.last, frozenset(emails), frozenset(phones), frozenset(dates))

    @classmethod
    def candidate_features(cls, conn: SAConnection, ids: Iterable[str]) -> dict[str, Features]:
        """What :func:`decide` compares of these unified clients (names and keys only: most candidates of a
        page are rejected, and only the one a record joins is loaded whole)."""
        ids = sorted(set(ids))
        out: dict[str, Features] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i:i + _IN_CHUNK]
            keys = cls._keys_of(conn, chunk)
            for r in conn.execute(select(_CC.c.id, _CC.c.first_name, _CC.c.last_name, _CC.c.display_name)
                                  .where(_CC.c.id.in_(chunk))):
                out[r.id] = cls._features_of(r.first_name, r.last_name, r.display_name, keys.get(r.id, ()))
        return out

    @staticmethod
    def load_people(conn: SAConnection, ids: Iterable[str]) -> dict[str, _Person]:
        ids = sorted(set(ids))
        people: dict[str, _Person] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i:i + _IN_CHUNK]
            for r in conn.execute(select(_CC).where(_CC.c.id.in_(chunk))):
                g = {f: getattr(r, f) for f in CLIENT_FIELDS}
                g["custom_fields"] = r.custom_fields or {}
                g["kind"] = r.kind
                people[r.id] = _Person(
                    id=r.id, golden=g, feats=features(r.first_name, r.last_name, r.display_name), keys=set(),
                    version=r.version, source_connection_id=r.source_connection_id,
                    source_provider=r.source_provider, source_at=r.source_at,
                    field_sources=dict(r.field_sources or {}), wedding_dates=list(r.wedding_dates or []))
            for pid, k in conn.execute(select(_KEYS.c.crm_client_id, _KEYS.c.key).where(
                    _KEYS.c.crm_client_id.in_(chunk))):
                p = people.get(pid)
                if p is not None:
                    p.keys.add(k)
        for p in people.values():
            emails = {key_value(k) for k in p.keys if k.startswith("e:")}
            phones = {key_value(k) for k in p.keys if k.startswith("p:")}
            dates = {date.fromisoformat(key_value(k)) for k in p.keys if k.startswith("d:")}
            p.feats = Features(p.feats.first, p.feats.last, frozenset(emails), frozenset(phones), frozenset(dates))
        return people

    # -- the page ------------------------------------------------------------------------------------
    def apply_clients(self, conn: SAConnection, vendor_id: str, connection_id: str, provider: str,
                      inserts: list[dict[str, Any]], updates: list[tuple[dict[str, Any], Any]], *,
                      run_id: str | None = None, evidence: Mapping[str, Iterable[date]] | None = None,
                      region: str | None = None, prepared: Mapping[str, Prepared] | None = None) -> CrmStats:
        """Give every new/changed source row its unified client (setting ``crm_client_id`` in the values
        the caller then writes) and merge the changes into it. ``updates`` pairs new values with the old
        row (its previous content is the three-way base). ``prepared`` (by remote id) holds features
        computed ahead of the write (:func:`prepare`), used where they are what this write would compute
        (no evidence dates, the same phone region)."""
        stats = CrmStats()
        if not inserts and not updates:
            return stats
        now = utcnow()
        evidence = evidence or {}
        mapping = self.mapping(conn, connection_id)
        book = self.policies(conn, vendor_id)

        # Only people become clients: a VSCO address-book entry of another kind (a venue's ``location``, a
        # vendor's ``company`` or one of its ``employee``s) is kept as a source record without a unified client,
        # so it is never a couple, a match candidate or a row of a client export.
        resolve: list[tuple[dict[str, Any], Any]] = []
        for v in inserts:
            if is_person(v):
                resolve.append((v, None))
            else:
                v["crm_client_id"] = None  # every row of one insert names the same columns
        merge: list[tuple[dict[str, Any], Any]] = []
        for values, old in updates:
            if old.crm_client_id:
                merge.append((values, old))
            elif is_person(values):
                resolve.append((values, old))
        if not resolve and not merge:
            return stats

        echoes = self._echoes(conn, [old.id for _, old in merge]) if merge else {}
        feats: list[Features] = []
        fkeys: list[list[str]] = []
        searches: list[str | None] = []
        for v, o in resolve:
            rid = v.get("remote_id") or (o.remote_id if o else "")
            dates = evidence.get(rid, ())
            pre = prepared.get(rid) if prepared and not dates else None
            if pre is not None and pre.feats is not None and pre.region == region:
                feats.append(pre.feats)
                fkeys.append(list(pre.keys))
                searches.append(pre.search)
            else:
                f = record_features(v, dates, region)
                feats.append(f)
                fkeys.append(blocking_keys(f))
                searches.append(None)
        all_keys = sorted({k for ks in fkeys for k in ks})
        key_index = self._lookup_keys(conn, vendor_id, all_keys) if all_keys else {}
        # a key shared by very many clients (a planner's e-mail on every inquiry she sends, one date and one
        # pair of initials in a generated file) tells no one apart, and comparing each record with all of them
        # made a page quadratic (a 20,000-row import held the write lock past SQLite's 30 s timeout): such a key
        # finds no candidates; records are matched by their other keys
        key_index = {k: ids for k, ids in key_index.items() if len(ids) <= MAX_KEY_CANDIDATES}
        wanted = {o.crm_client_id for _, o in merge}
        people = self.load_people(conn, wanted) if wanted else {}
        # candidates by blocking key: only what decide() needs until one is joined (then loaded whole)
        cand = self.candidate_features(conn, {pid for ids in key_index.values() for pid in ids} - set(people))

        def feats_of(pid: str) -> Features:
            known = people.get(pid)
            return known.feats if known is not None else cand[pid]

        # the candidates some record of the page accepts are loaded whole, in one go (a candidate's features
        # change only once it is joined, and then it is loaded already)
        accepted = {pid for f, keys in zip(feats, fkeys, strict=True) for k in keys
                    for pid in key_index.get(k, ()) if pid in cand and decide(f, cand[pid]) is not None}
        if accepted:
            people.update(self.load_people(conn, accepted))

        merges: list[dict[str, Any]] = []
        conflicts: list[dict[str, Any]] = []
        echo_ids: list[str] = []
        settled: dict[str, set[str]] = {}  # client -> core fields an auto-settled conflict gave the incoming value

        def record_conflicts(p: _Person, source_client_id: str, found: list[FieldConflict],
                             at: datetime | None) -> None:
            for c in found:
                stats.conflicts += 1
                stats.open_conflicts += c.outcome == "open"
                conflicts.append({
                    "id": new_id(), "vendor_id": vendor_id, "crm_client_id": p.id,
                    "source_client_id": source_client_id, "connection_id": connection_id, "field": c.field,
                    "base": c.base, "local": c.local, "incoming": c.incoming, "incoming_at": at,
                    "policy": c.policy, "outcome": c.outcome, "status": "open" if c.outcome == "open" else "auto",
                    "reason": c.reason, "resolution": None, "run_id": run_id, "created_at": now,
                    "resolved_at": None})
                if c.outcome == "incoming" and c.field in CLIENT_FIELDS:
                    settled.setdefault(p.id, set()).add(c.field)

        for (values, _old), f, keys, search in zip(resolve, feats, fkeys, searches, strict=True):
            source_id = values.get("b_id") or values["id"]
            at = values.get("remote_modified_at")  # unknown (a CSV row): newest-wins cannot decide
            incoming_side = Side(provider, connection_id, at)
            found: tuple[str, Match] | None = None
            near = [key_index.get(k, ()) for k in keys]  # (within the page too: a key grows as records join it)
            for pid in sorted({pid for ids in near if len(ids) <= MAX_KEY_CANDIDATES for pid in ids}):
                m = decide(f, feats_of(pid))
                if m is not None and (found is None or m.score > found[1].score):
                    found = (pid, m)
            if found is not None:
                pid, m = found
                if pid not in people:
                    people.update(self.load_people(conn, [pid]))
                p = people[pid]
                before = p.flat()
                setters = dict(p.field_sources)  # who had set each value the merge may replace (undo needs it)
                res = three_way(None, before, carried_address(
                                    flatten(self._aligned(values, mapping, p, m), CLIENT_FIELDS), None, before),
                                fields=self._fields(p.golden, values, mapping),
                                policy_for=lambda name: book.policy(connection_id, name),
                                incoming_side=incoming_side, local_side=p.side)
                p.apply(res.changes, incoming_side, source_id)
                record_conflicts(p, source_id, res.conflicts, at)
                p.add_keys(f, key_index, keys)
                merges.append({"id": new_id(), "vendor_id": vendor_id, "crm_client_id": pid,
                               "source_client_id": source_id, "connection_id": connection_id, "rule": m.rule,
                               "score": round(m.score, 2), "run_id": run_id,
                               "evidence": {**m.evidence, "replaced": {k: before.get(k) for k in res.changes},
                                            "replaced_by": {k: setters.get(k) for k in res.changes}},
                               "created_at": now, "undone_at": None, "undone_to": None})
                stats.merged += 1
            else:
                # a new source row's own (fresh, unique) id names its new unified client: one ULID less
                p = _Person(id=values.get("id") or new_id(), golden=self._golden(values, mapping),
                            feats=Features(f.first, f.last), keys=set(), source_connection_id=connection_id,
                            source_provider=provider, source_at=at, is_new=True,
                            search_cache=search)
                p.add_keys(f, key_index, keys)
                people[p.id] = p
                stats.new_clients += 1
            values["crm_client_id"] = p.id

        moved: dict[tuple[str, str], Any] = {}  # (source record, field) -> its new value
        for values, old in merge:
            values["crm_client_id"] = old.crm_client_id
            known = people.get(old.crm_client_id)
            if known is None:
                continue  # its unified client was removed meanwhile; the row keeps the id
            p = known
            written = echoes.get(old.id)
            marker = (values.get("custom_fields") or {}).get(ECHO_MARKER)
            own: frozenset[str] = frozenset()
            if written is not None and (values.get("content_hash") in written.hashes
                                        or marker in {f"{REFERENCE_PREFIX}{i}" for i in written.ids}):
                # our own write coming back: the fields we wrote are in the unified record already. The
                # provider's copy is the whole record, though: a field we did not write that differs from the
                # stored row is the studio's edit made before our write (or meanwhile), merged as any change
                stats.echoes += 1
                echo_ids.extend(written.ids)
                own = written.fields
            at = values.get("remote_modified_at")
            incoming_side = Side(provider, connection_id, at)
            base = flatten(self._golden(old._mapping, mapping), CLIENT_FIELDS)
            local = p.flat()
            incoming = carried_address(flatten(self._golden(values, mapping), CLIENT_FIELDS), base, local)
            base = carried_address(base, base, local)
            for name in own:  # what we wrote is the base of those fields: their echo is no change
                if name in incoming:
                    base[name] = incoming[name]
            if own and all(base.get(k) == v for k, v in incoming.items()):
                continue  # nothing but our write: no merge, no version bump
            names = self._fields(p.golden, values, mapping, old._mapping)
            res = three_way(base, local, incoming, fields=names,
                            policy_for=lambda name: book.policy(connection_id, name),
                            incoming_side=incoming_side, local_side=p.side)
            # a field this record changed again: what its earlier open conflicts offered is not what it says now
            moved.update(((old.id, n), incoming.get(n)) for n in names if incoming.get(n) != base.get(n))
            p.apply(res.changes, incoming_side, old.id)
            record_conflicts(p, old.id, res.conflicts, at)
            p.add_keys(record_features(values, evidence.get(old.remote_id, ()), region), key_index)

        self._write(conn, vendor_id, people, now)
        if merges:
            conn.execute(insert(_MERGES), merges)
        if moved:
            sources = {src for src, _ in moved}
            self._supersede(conn, {old.crm_client_id for _, old in merge if old.id in sources}, moved, conflicts, now)
        if conflicts:
            conn.execute(insert(_CONFLICTS), conflicts)
        if echo_ids:
            conn.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_(echo_ids)).values(echo_seen_at=now))
        if settled:
            self._write_back_settled(conn, vendor_id, connection_id, people, settled, now)
        return stats

    @staticmethod
    def _supersede(conn: SAConnection, client_ids: set[str], moved: Mapping[tuple[str, str], Any],
                   new: Sequence[Mapping[str, Any]], now: datetime) -> None:
        """Dismiss the open conflicts a source record raised on a field it has changed again since: taking their
        incoming value would give the client a value the record no longer holds (a second export with yet another
        phone left two open conflicts for one field, the older offering a value no source had any more)."""
        rows = conn.execute(select(_CONFLICTS.c.id, _CONFLICTS.c.source_client_id, _CONFLICTS.c.field).where(
            _CONFLICTS.c.crm_client_id.in_(sorted(client_ids)), _CONFLICTS.c.status == "open")).all()
        newer = {(c["source_client_id"], c["field"]): c["id"] for c in new if c["status"] == "open"}
        for r in rows:
            key = (r.source_client_id, r.field)
            if key not in moved:
                continue
            reason = f"superseded: the record changed this field again since (it now says {moved[key]!r:.200})"
            if key in newer:
                reason += f"; see conflict {newer[key]}"
            conn.execute(update(_CONFLICTS).where(_CONFLICTS.c.id == r.id, _CONFLICTS.c.status == "open").values(
                status="dismissed", resolved_at=now, resolution={"choice": "dismissed", "reason": reason}))

    @staticmethod
    def dismiss_for_deleted_sources(conn: SAConnection, vendor_id: str, reason: str, *,
                                    source_client_ids: Sequence[str] = (), connection_id: str | None = None) -> int:
        """Dismiss the open conflicts raised by source records that are deleted at their source (the ids
        ``source_client_ids``, or every record of the removed connection ``connection_id``), on the caller's
        transaction, the one that deletes them: their incoming value is one no source holds any more (taking it
        is refused, 409 ``source_deleted``), so they would wait in the manual queue for ever. ``reason`` names the
        deletion; the unified client's values are left as they are. Returns how many were dismissed (the
        vendor's open conflicts are found by the queue's index, ``ix_crm_conflicts_queue``)."""
        now = utcnow()
        resolution = {"choice": "dismissed", "reason": reason}
        queue = (_CONFLICTS.c.vendor_id == vendor_id, _CONFLICTS.c.status == "open")
        if connection_id is not None:
            res = conn.execute(update(_CONFLICTS).where(*queue, _CONFLICTS.c.connection_id == connection_id)
                               .values(status="dismissed", resolved_at=now, resolution=resolution))
            return int(getattr(res, "rowcount", 0) or 0)
        ids = sorted(set(source_client_ids))
        dismissed = 0
        for i in range(0, len(ids), 500):
            res = conn.execute(update(_CONFLICTS).where(*queue, _CONFLICTS.c.source_client_id.in_(ids[i:i + 500]))
                               .values(status="dismissed", resolved_at=now, resolution=resolution))
            dismissed += int(getattr(res, "rowcount", 0) or 0)
        return dismissed

    @staticmethod
    def _write_back_settled(conn: SAConnection, vendor_id: str, connection_id: str, people: Mapping[str, _Person],
                            settled: Mapping[str, set[str]], now: datetime) -> int:
        """An auto-settled conflict won by the incoming record (newest wins, or its source owns the field) gave
        the unified client a value its writable source records at other connections do not hold: each of
        them gets an ``update_contact`` write-back of those fields (a HoneyBook hook's newer phone reaches
        VSCO). A value longer than the provider keeps is not written (it would be cut short there)."""

        cols = [_CLIENTS.c.id, _CLIENTS.c.crm_client_id, _CLIENTS.c.connection_id, _CLIENTS.c.provider,
                _CLIENTS.c.remote_id, _CLIENTS.c.version, *(_CLIENTS.c[f] for f in CLIENT_FIELDS)]
        rows = conn.execute(select(*cols).where(
            _CLIENTS.c.crm_client_id.in_(sorted(settled)), _CLIENTS.c.deleted_at.is_(None),
            _CLIENTS.c.connection_id != connection_id).order_by(_CLIENTS.c.id)).all()
        out: list[dict[str, Any]] = []
        for r in rows:
            p = people.get(r.crm_client_id)
            if p is None or not r.remote_id:
                continue
            cls = _contact_writer(r.provider)
            if cls is None:
                continue
            limits = _field_limits(cls)
            fields = {}
            for name in sorted(settled[r.crm_client_id]):
                value = p.golden.get(name)
                if value == getattr(r, name) or (isinstance(value, str) and len(value) > limits.get(name, 1 << 30)):
                    continue
                fields[name] = value
            if fields:
                outbox_id = new_id()
                out.append({"id": outbox_id, "vendor_id": vendor_id, "connection_id": r.connection_id,
                            "crm_client_id": p.id, "source_client_id": r.id, "op": "update_contact",
                            "remote_id": r.remote_id, "payload": {"fields": fields, "base_version": r.version},
                            "idempotency_key": f"wedsync-crm-{outbox_id}", "status": "pending", "attempts": 0,
                            "created_at": now})
        if out:
            conn.execute(insert(_OUTBOX), out)
        return len(out)

    @staticmethod
    def _golden(values: Mapping[str, Any], mapping: Mapping[str, str | None]) -> dict[str, Any]:
        g = {f: values.get(f) for f in CLIENT_FIELDS}
        g["custom_fields"] = project(values.get("custom_fields"), mapping)
        g["kind"] = values.get("kind") or "person"
        return g

    @classmethod
    def _aligned(cls, values: Mapping[str, Any], mapping: Mapping[str, str | None], p: _Person, m: Match
                 ) -> dict[str, Any]:
        """A record joining a client, in the client's orientation: names the match found swapped are
        swapped back, the same full name split elsewhere between first and last name is the client's split
        (a one-cell "Client Name" such as Studio Ninja's reads "Mary Ann Lee" as Mary / Ann Lee, where the client
        is Mary Ann / Lee: no change of name), and a display name that is the same words is the same display
        name."""
        g = cls._golden(values, mapping)
        if m.evidence.get("swapped_names"):
            g["first_name"], g["last_name"] = g.get("last_name"), g.get("first_name")
        split = (g.get("first_name"), g.get("last_name"))
        known = (p.golden.get("first_name"), p.golden.get("last_name"))
        if split != known and all(known) and _words(*split) == _words(*known):
            g["first_name"], g["last_name"] = known
        mine, theirs = p.golden.get("display_name"), g.get("display_name")
        if mine and theirs and sorted(fold(mine).split()) == sorted(fold(theirs).split()):
            g["display_name"] = mine
        return g

    @staticmethod
    def _fields(golden: Mapping[str, Any], values: Mapping[str, Any], mapping: Mapping[str, str | None],
                old: Mapping[str, Any] | None = None) -> list[str]:
        names = set(project(values.get("custom_fields"), mapping)) | set(golden.get("custom_fields") or {})
        if old is not None:
            names |= set(project(old.get("custom_fields"), mapping))
        return [*CLIENT_FIELDS, *(f"custom.{n}" for n in sorted(names))]

    @staticmethod
    def _echoes(conn: SAConnection, client_ids: list[str]) -> dict[str, _Written]:
        """source row id -> the write-backs to it whose echo is still expected: their outbox ids, the hashes of
        the provider's copies they got back and the fields they wrote (only those are suppressed as echoes)."""
        t = CrmOutbox.__table__
        rows = conn.execute(select(t.c.id, t.c.source_client_id, t.c.written_hash, t.c.payload).where(
            t.c.source_client_id.in_(client_ids), t.c.status == "done", t.c.echo_seen_at.is_(None),
            t.c.written_hash.is_not(None)).order_by(t.c.id)).all()
        out: dict[str, _Written] = {}
        for r in rows:
            w = out.setdefault(r.source_client_id, _Written())
            w.ids.append(r.id)
            w.hashes.add(r.written_hash)
            fields = (r.payload or {}).get("fields") if isinstance(r.payload, dict) else None
            w.fields = w.fields | frozenset(str(k) for k in (fields or {}))
        return out

    @staticmethod
    def _write(conn: SAConnection, vendor_id: str, people: Mapping[str, _Person], now: datetime) -> None:
        new_rows = [p.row(vendor_id, now) for p in people.values() if p.is_new]
        changed = [p for p in people.values() if p.dirty and not p.is_new]
        if new_rows:
            insert_many(conn, _CC, new_rows)  # the driver's executemany (empty JSON binds as a constant)
        if changed:
            conn.execute(update(_CC).where(_CC.c.id == bindparam("b_id")), [
                {"b_id": p.id, **{f: p.golden.get(f) for f in CLIENT_FIELDS},
                 "custom_fields": p.golden.get("custom_fields") or {}, "wedding_dates": p.wedding_dates,
                 "field_sources": p.field_sources, "source_at": p.source_at, "version": p.version + 1,
                 "search_text": p.search(),
                 "updated_at": now} for p in changed])
        keys = [{"vendor_id": vendor_id, "crm_client_id": p.id, "key": k}
                for p in people.values() for k in p.new_keys]
        if keys:
            insert_many(conn, _KEYS, keys)

    def apply_weddings(self, conn: SAConnection, vendor_id: str, connection_id: str,
                       weddings: Sequence[Mapping[str, Any]]) -> None:
        """A wedding's date is identity evidence for its clients: add ``d:<date>`` keys to them."""
        pairs = [(str(rid), w["event_date"]) for w in weddings if w.get("event_date")
                 for rid in (w.get("client_remote_ids") or [])]
        if not pairs:
            return
        rows = conn.execute(select(_CLIENTS.c.remote_id, _CLIENTS.c.crm_client_id).where(
            _CLIENTS.c.connection_id == connection_id, _CLIENTS.c.remote_id.in_(sorted({r for r, _ in pairs})),
            _CLIENTS.c.crm_client_id.is_not(None))).all()
        person_of = {r.remote_id: r.crm_client_id for r in rows}
        people = self.load_people(conn, person_of.values())
        index: dict[str, set[str]] = {}
        for rid, d in pairs:
            p = people.get(person_of.get(rid, ""))
            if p is not None:
                p.add_keys(Features(dates=frozenset({d})), index)
        self._write(conn, vendor_id, people, utcnow())


# ==================================================================================================
# The CRM service: what the API, the CLI, the workflows and the demo call (``hub.crm``).
# ==================================================================================================

CSV_PROVIDERS = ("honeybook", "17hats", "studio-ninja", "iris-works")
SYNC_TYPES = {"full": "full", "incremental": "incremental", "delta": "incremental"}
DEFAULT_CHUNK = 1000
MAX_IMPORT_BYTES = 200 * 1024 * 1024
#: a custom field's value, as compact JSON, at most (a PATCH's and a conflict settled with a value's)
MAX_CUSTOM_FIELD_JSON = 10_000
EDITABLE_FIELDS = frozenset(CLIENT_FIELDS) | {"custom_fields"}
#: clients one blocking key may find; a key shared by more is too common to tell anyone apart
MAX_KEY_CANDIDATES = 200
#: a conflict resolution's value that was not given (None is a given value: it clears the field)
NO_VALUE: Any = object()
# the longest value a vendor may set on a text field: its column's length
#: the parts of an address (VSCO Workspace's keys) a vendor may set, and their longest text
ADDRESS_PARTS: dict[str, int] = {"streetAddress": 512, "village": 200, "city": 200, "state": 200, "postalCode": 64,
                                 "country": 100}
_TEXT_LIMITS: dict[str, int] = {f: getattr(_CC.c[f].type, "length", None) or 0 for f in CLIENT_FIELDS
                                 if f != "address"}


def canonical_provider(name: str) -> str:
    """The CRM provider's slug for one of its names (``tave``, ``VSCO_Workspace``, ``17hats``...). A name the hub
    does not know at all is 404 ``unknown_provider``, as everywhere else; a provider the hub knows that is not a
    CRM (``stripe``) is 422 ``not_a_crm_provider``, and a CRM whose connector is not built is 422
    ``provider_not_built``."""
    from wedsync.connectors.registry import CONNECTORS, PLANNED_BY_SLUG, ProviderNotBuilt, canonical_slug

    key = canonical_slug(name)
    crm = _crm_slugs()
    if key in crm:
        return key
    planned = PLANNED_BY_SLUG.get(key)
    if planned is not None and planned.category == "crm":
        raise ProviderNotBuilt(f"{planned.display_name} is known but its connector is not built yet ({planned.notes})")
    if key in CONNECTORS or planned is not None:
        raise InvalidInput(f"{key!r} is not a CRM provider; CRM providers: {sorted(crm)}", code="not_a_crm_provider")
    raise NotFound(f"unknown CRM provider {name!r}; known: {_crm_names()}", code="unknown_provider")


def _crm_slugs() -> frozenset[str]:
    """The CRM providers whose connector is built."""
    from wedsync.connectors.registry import CONNECTORS

    return frozenset(slug for slug, cls in CONNECTORS.items() if cls.capabilities.category == "crm")


def _crm_names() -> list[str]:
    """The CRM providers' slugs and the other names they are known by (``tave``...)."""
    from wedsync.connectors.registry import PROVIDER_ALIASES

    crm = _crm_slugs()
    return sorted(crm | {alias for alias, slug in PROVIDER_ALIASES.items() if slug in crm})


def client_out(c: Any) -> dict[str, Any]:
    return {"id": c.id, "kind": c.kind, "first_name": c.first_name, "last_name": c.last_name,
            "display_name": c.display_name, "email": c.email, "phone": c.phone, "company": c.company,
            "address": c.address, "custom_fields": c.custom_fields or {}, "wedding_dates": c.wedding_dates or [],
            "source_connection_id": c.source_connection_id, "source_provider": c.source_provider,
            "field_sources": c.field_sources or {}, "version": c.version,
            "created_at": c.created_at.isoformat(), "updated_at": c.updated_at.isoformat()}


#: what a merge row keeps for its undo (the values it replaced and who had set them), not shown as evidence
_UNDO_EVIDENCE = frozenset({"replaced", "replaced_by"})


def merge_out(m: Any) -> dict[str, Any]:
    return {"id": m.id, "crm_client_id": m.crm_client_id, "source_client_id": m.source_client_id,
            "connection_id": m.connection_id, "rule": m.rule, "score": m.score,
            "evidence": {k: v for k, v in (m.evidence or {}).items() if k not in _UNDO_EVIDENCE},
            "run_id": m.run_id, "created_at": m.created_at.isoformat(),
            "undone_at": m.undone_at.isoformat() if m.undone_at else None, "undone_to": m.undone_to}


def conflict_out(c: Any) -> dict[str, Any]:
    return {"id": c.id, "crm_client_id": c.crm_client_id, "source_client_id": c.source_client_id,
            "connection_id": c.connection_id, "field": c.field, "base": c.base, "local": c.local,
            "incoming": c.incoming, "incoming_at": c.incoming_at.isoformat() if c.incoming_at else None,
            "policy": c.policy, "outcome": c.outcome, "status": c.status, "reason": c.reason,
            "resolution": c.resolution, "run_id": c.run_id, "created_at": c.created_at.isoformat(),
            "resolved_at": c.resolved_at.isoformat() if c.resolved_at else None}


def _source_out(r: Any) -> dict[str, Any]:
    return {"id": r.id, "connection_id": r.connection_id, "provider": r.provider, "remote_id": r.remote_id,
            "first_name": r.first_name, "last_name": r.last_name, "email": r.email, "phone": r.phone,
            "custom_fields": r.custom_fields or {}, "version": r.version,
            "remote_modified_at": r.remote_modified_at.isoformat() if r.remote_modified_at else None,
            "synced_at": r.synced_at.isoformat(), "deleted_at": r.deleted_at.isoformat() if r.deleted_at else None}


def _owner(p: _Person, name: str) -> str | None:
    """The connection a unified client's field came from (``wedsync`` for the vendor's own edits)."""
    return (p.field_sources.get(name) or {}).get("c") or p.source_connection_id


def _set_by_record(who: Mapping[str, Any] | None, src: Any) -> bool:
    """Whether a client's ``field_sources`` entry says the source record ``src`` set that field last (an entry
    written before entries named their record, without ``r``: set by ``src``'s connection)."""
    who = who or {}
    if who.get("r"):
        return bool(who["r"] == src.id)
    return bool(who.get("c") == src.connection_id)


def _full_name(c: Any) -> str:
    return " ".join(p for p in (c.first_name, c.last_name) if p)


def _contact_writer(provider: str) -> Any:
    """The connector class of a provider that writes contacts back (``update_contact``), else None (it writes
    none, or is unknown): who an edited or settled value is written back to."""
    from wedsync.connectors.registry import get_connector_class

    try:
        cls = get_connector_class(provider)
    except WedsyncError:
        return None
    return cls if hasattr(cls, "update_contact") else None


def _field_limits(cls: Any) -> dict[str, int]:
    return dict(getattr(cls, "contact_field_limits", None) or {})


def _values_of_row(r: Any) -> dict[str, Any]:
    return {f: getattr(r, f) for f in (*CLIENT_FIELDS, "custom_fields", "kind", "remote_id",
                                       "remote_modified_at", "remote_created_at")}


class CrmService:
    """Unified clients, merges (and their undo), conflicts and policies, field mappings, write-back outbox,
    CSV import/export jobs, Zapier-style hooks and the seed's sync endpoint. Built lazily as ``hub.crm``."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.db: Database = hub.db
        self.resolver: CrmResolver = hub.sync.crm
        self._import_cursors: dict[str, tuple[int, Iterator[Any]]] = {}
        self._cursor_lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------------
    def connection(self, vendor_id: str, connection_id: str) -> Connection:
        return cast(Connection, self.hub.connections.get(vendor_id, connection_id))

    def connection_for(self, vendor_id: str, provider: str, *, create: bool = False) -> Connection:
        """The vendor's (oldest) connection to ``provider``; for CSV/hook-only products one is created on
        demand (they need no credentials beyond the hub-generated hook secret), once however many callers ask
        at the same time (concurrent first imports created one connection each)."""
        slug = canonical_provider(provider)
        with self.db.read() as s:
            conn = s.execute(select(Connection).where(Connection.vendor_id == vendor_id, Connection.provider == slug)
                             .order_by(Connection.created_at, Connection.id).limit(1)).scalar_one_or_none()
        if conn is not None:
            return conn
        if not create:
            raise NotFound(f"no {slug} connection for this vendor", code="no_connection")
        return cast(Connection, self.hub.connections.create(vendor_id, slug, credentials={}, unless_exists=True))

    # -- the seed endpoint: sync runs --------------------------------------------------------------
    def check_sync_request(self, vendor_id: str, provider: str, sync_type: str, *, connection_id: str | None = None
                           ) -> tuple[Connection, str]:
        """The connection a seed sync request pulls, and its mode. Without ``connection_id`` the vendor's one
        connection to the provider; with several, 409 ``ambiguous_connection`` naming them (pulling the oldest,
        perhaps one whose key was replaced by a newer connection, was a guess)."""
        slug = canonical_provider(provider)
        mode = SYNC_TYPES.get(sync_type.strip().lower())
        if mode is None:
            raise InvalidInput(f"syncType must be one of {sorted(SYNC_TYPES)}", code="invalid_sync_type")
        if slug == "light-blue":
            raise InvalidInput("light-blue is push-only: WedSync inquiries are sent to its inbox form, and it offers "
                               "nothing to pull", code="not_pullable")
        if slug in CSV_PROVIDERS:
            raise InvalidInput(
                f"{slug} has no API to pull from: import its CSV export (POST /api/crm/imports) or send its "
                f"Zapier hook to the connection's webhook URL", code="not_pullable")
        from wedsync.connectors.registry import get_connector_class

        if not hasattr(get_connector_class(slug), "list_page"):  # the marketplace: its inquiries are posted to us
            raise InvalidInput(f"{slug} has nothing to pull", code="not_pullable")
        # what the provider can do decides first; whether this vendor has connected it comes after
        if connection_id is not None:
            conn = self.connection(vendor_id, connection_id)
            if conn.provider != slug:
                raise InvalidInput(f"connection {connection_id} is a {conn.provider} connection, not {slug}",
                                   code="provider_mismatch")
            return conn, mode
        with self.db.read() as s:
            conns = list(s.execute(select(Connection).where(Connection.vendor_id == vendor_id,
                                                            Connection.provider == slug)
                                   .order_by(Connection.created_at, Connection.id).limit(20)).scalars())
        if len(conns) > 1:
            raise Conflict(f"this vendor has {len(conns)} {slug} connections: name one as connectionId",
                           code="ambiguous_connection",
                           details={"connections": [{"id": c.id, "status": c.status, "base_url": c.base_url,
                                                     "created_at": c.created_at.isoformat()} for c in conns]})
        return self.connection_for(vendor_id, slug), mode

    def run_out(self, vendor_id: str, run_id: str) -> dict[str, Any]:
        """The seed's SyncResult view of a run, with the CRM counters."""
        summary: dict[str, Any] = self.hub.sync.summary(self.hub.sync.get_run(vendor_id, run_id))
        finished = summary["status"] in ("succeeded", "failed")
        due = self.connection(vendor_id, summary["connection_id"]).next_sync_at
        # the seed's success is the outcome: null until the run has one (queued, running), so a client never
        # reads "succeeded" for a run that then fails (waitSeconds waits for it; the GET polls it)
        return {**summary, "syncId": run_id, "success": (summary["status"] == "succeeded") if finished else None,
                "recordsProcessed": summary["processed"], "recordsCreated": summary["created"],
                "recordsUpdated": summary["updated"], "finished": finished,
                # the connection's next scheduled pull (SyncService.interval_of); null: none is scheduled
                "nextSync": due.isoformat() if due else None}

    # -- unified clients ---------------------------------------------------------------------------
    def list_clients(self, vendor_id: str, *, after: str | None = None, limit: int = 100,
                     q: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        with self.db.read() as s:
            stmt = select(CrmClient).where(CrmClient.vendor_id == vendor_id)
            if after:
                cursor_row(s, CrmClient, after, CrmClient.vendor_id == vendor_id)
                stmt = stmt.where(CrmClient.id > after)
            if q and q.strip():
                # names without case or accents in any script, e-mail and phone as typed; % and _ are literal
                stmt = stmt.where(or_(*(CrmClient.search_text.like(p, escape="\\") for p in search_patterns(q))))
            rows = list(s.execute(stmt.order_by(CrmClient.id).limit(limit + 1)).scalars())
        nxt = rows[limit - 1].id if len(rows) > limit else None
        return [client_out(r) for r in rows[:limit]], nxt

    def _get(self, s: Session, vendor_id: str, client_id: str) -> CrmClient:
        c = s.get(CrmClient, client_id)
        if c is None or c.vendor_id != vendor_id:
            raise NotFound("client not found")
        return c

    def get_client(self, vendor_id: str, client_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            c = self._get(s, vendor_id, client_id)
            sources = list(s.execute(select(Client).where(Client.vendor_id == vendor_id,
                                                          Client.crm_client_id == client_id)
                                     .order_by(Client.id)).scalars())
            pairs = [(r.connection_id, r.remote_id) for r in sources]
            weddings = []
            for conn_id in sorted({p[0] for p in pairs}):
                rids = {rid for cid, rid in pairs if cid == conn_id}
                # the weddings listing one of these records, found by the database (reading every wedding of the
                # connection took 160 ms per request at 2,000 weddings and 1.3 s at 20,000)
                for w in s.execute(select(Wedding).where(
                        Wedding.connection_id == conn_id, Wedding.deleted_at.is_(None),
                        json_list_has_any(s.connection(), Wedding.client_remote_ids, sorted(rids)))
                        .order_by(Wedding.id)).scalars():
                    if rids & set(w.client_remote_ids or []):
                        weddings.append({"id": w.id, "connection_id": w.connection_id, "remote_id": w.remote_id,
                                         "name": w.name, "event_date": w.event_date.isoformat()
                                         if w.event_date else None, "stage": w.stage,
                                         "custom_fields": w.custom_fields or {}, "version": w.version})
            merges = list(s.execute(select(CrmMerge).where(CrmMerge.crm_client_id == client_id)
                                    .order_by(CrmMerge.id)).scalars())
            conflicts = list(s.execute(select(CrmConflict).where(CrmConflict.crm_client_id == client_id,
                                                                 CrmConflict.status == "open")).scalars())
            return {**client_out(c), "sources": [_source_out(r) for r in sources], "weddings": weddings,
                    "merges": [merge_out(m) for m in merges], "open_conflicts": [conflict_out(x) for x in conflicts]}

    def update_client(self, vendor_id: str, client_id: str, changes: Mapping[str, Any],
                      expected_version: int | None = None) -> dict[str, Any]:
        """A vendor's edit in WedSync: the unified record changes (optimistic version check) and every source
        that takes write-backs gets an outbox entry, committed in the same transaction."""
        bad = sorted(set(changes) - EDITABLE_FIELDS)
        if bad:
            raise InvalidInput(f"fields {bad} cannot be edited; editable: {sorted(EDITABLE_FIELDS)}",
                               code="invalid_field")
        with self.db.session() as s:
            c = self._get(s, vendor_id, client_id)
            if expected_version is not None and c.version != expected_version:
                raise Conflict("the client changed meanwhile", code="version_conflict",
                               details={"version": c.version})
            applied: dict[str, Any] = {}
            derived = _full_name(c)
            for name, value in changes.items():
                if name == "custom_fields":
                    if not isinstance(value, dict):
                        raise InvalidInput("custom_fields must be an object", code="invalid_field")
                    merged = dict(c.custom_fields or {})
                    merged.update(value)
                    c.custom_fields = merged
                    applied.update({f"custom.{k}": v for k, v in value.items()})
                else:
                    value = self._edited_value(s, c, name, value)
                    setattr(c, name, value)
                    applied[name] = value
            if ({"first_name", "last_name"} & set(applied) and "display_name" not in applied
                    and (c.display_name or "") == derived):  # a display name made of the names follows them
                c.display_name = _full_name(c) or None
            sources = dict(c.field_sources or {})
            for name in applied:
                sources[name] = {"c": "wedsync", "p": "wedsync", "at": utcnow().isoformat()}
            c.field_sources = sources
            c.version += 1
            c.updated_at = utcnow()
            self._add_identity_keys(s, c)
            self._enqueue_writebacks(s, c, applied)
        return self.get_client(vendor_id, client_id)

    @staticmethod
    def _add_identity_keys(s: Session, c: CrmClient) -> None:
        """The blocking keys of the client's values as they are now (a corrected e-mail or phone, a new name),
        so the next record carrying them finds this client instead of becoming a duplicate. Keys of earlier
        values stay: they were this person's, and a source may still send them."""
        values = {f: getattr(c, f) for f in CLIENT_FIELDS}
        dates = [date.fromisoformat(d) for d in c.wedding_dates or []]
        wanted = blocking_keys(record_features(values, dates))
        have = set(s.execute(select(CrmIdentityKey.key).where(CrmIdentityKey.crm_client_id == c.id)).scalars())
        for key in sorted(set(wanted) - have):
            s.add(CrmIdentityKey(vendor_id=c.vendor_id, crm_client_id=c.id, key=key))

    def _edited_value(self, s: Session, c: CrmClient, name: str, value: Any) -> Any:
        """A value a vendor sets on a core field (an edit, a conflict settled with a value of their own), checked
        and normalized as the sources' values are: blank clears the field, e-mail and phone must be valid (the
        phone becomes E.164), text is trimmed and bounded, the address is an object."""
        from wedsync.connectors.channels.csv_layouts import check_email, check_phone, normalize_country

        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # an empty value clears the field (as null does), never stored as ""
        if name == "address":
            if not isinstance(value, dict):
                raise InvalidInput("address must be an object", code="invalid_field")
            unknown = sorted(set(value) - set(ADDRESS_PARTS))
            if unknown:  # VSCO Workspace refuses them: the write-back failed and the client kept them
                raise InvalidInput(f"address has no part {unknown[0]!r}: its parts are {list(ADDRESS_PARTS)}",
                                   code="invalid_field", details={"field": "address", "unknown": unknown})
            parts: dict[str, str] = {}
            for part, text in value.items():
                if text is None:
                    continue
                if not isinstance(text, str) or len(text) > ADDRESS_PARTS[part]:
                    raise InvalidInput(f"address.{part} must be text of at most {ADDRESS_PARTS[part]} characters",
                                       code="invalid_field", details={"field": f"address.{part}"})
                if text.strip():
                    parts[part] = text.strip()
            if not parts:
                return None  # no part at all clears it, as a PATCH with null does
            value = parts
            country = value.get("country")
            if isinstance(country, str):  # stored as the sources store it: the ISO code when recognised
                value = {**value, "country": normalize_country(country)}
            return value
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string", code="invalid_field")
        limit = _TEXT_LIMITS.get(name)
        if limit is not None and len(value) > limit:
            raise InvalidInput(f"{name} is longer than {limit} characters", code="invalid_field")
        if name == "email":
            email = check_email(value)
            if email is None:
                raise InvalidInput("email is not an e-mail address", code="invalid_email")
            return email
        if name == "phone":
            region = self._region_of(s, c)
            phone = check_phone(value, region)
            if phone is None:
                raise InvalidInput(f"phone is not a possible phone number (default country {region})",
                                   code="invalid_phone")
            return phone
        return value.strip()

    @staticmethod
    def _region_of(s: Session, c: CrmClient) -> str:
        """The default country for a phone typed without one: the client's source connection's
        ``default_region`` (as its imports use), else US."""
        conn = s.get(Connection, c.source_connection_id) if c.source_connection_id else None
        return str(((conn.settings if conn is not None else None) or {}).get("default_region") or "US").upper()

    def _enqueue_writebacks(self, s: Session, c: CrmClient, applied: Mapping[str, Any], *,
                            only_differing: bool = False) -> int:
        """Outbox rows (one per writable source record) for fields the unified record just took;
        ``only_differing``: only to the records that hold another value of one of them."""

        plain = {k: v for k, v in applied.items() if not k.startswith("custom.")}
        if not plain:
            return 0
        n = 0
        for r in s.execute(select(Client).where(Client.crm_client_id == c.id, Client.deleted_at.is_(None))).scalars():
            if only_differing and all(getattr(r, k, None) == v for k, v in plain.items()):
                continue
            cls = _contact_writer(r.provider)
            if cls is None:
                continue
            for name, limit in _field_limits(cls).items():
                value = plain.get(name)
                if isinstance(value, str) and len(value) > limit:  # the provider would cut it short, silently
                    raise InvalidInput(f"{name} is {len(value)} characters; {cls.display_name} keeps at most {limit} "
                                       f"and this client is written back there", code="value_too_long",
                                       details={"field": name, "limit": limit, "provider": cls.slug})
            outbox_id = new_id()
            s.add(CrmOutbox(id=outbox_id, vendor_id=c.vendor_id, connection_id=r.connection_id, crm_client_id=c.id,
                            source_client_id=r.id, op="update_contact", remote_id=r.remote_id,
                            payload={"fields": plain, "base_version": r.version},
                            idempotency_key=f"wedsync-crm-{outbox_id}"))
            n += 1
        return n

    # -- merges --------------------------------------------------------------------------------------
    def list_merges(self, vendor_id: str, *, client_id: str | None = None, include_undone: bool = True,
                    limit: int = 200, after: str | None = None) -> list[dict[str, Any]]:
        """Newest first; ``after`` is the last id of the previous page."""
        with self.db.read() as s:
            stmt = select(CrmMerge).where(CrmMerge.vendor_id == vendor_id)
            if after:
                cursor_row(s, CrmMerge, after, CrmMerge.vendor_id == vendor_id)
                stmt = stmt.where(CrmMerge.id < after)
            if client_id:
                stmt = stmt.where(CrmMerge.crm_client_id == client_id)
            if not include_undone:
                stmt = stmt.where(CrmMerge.undone_at.is_(None))
            return [merge_out(m) for m in s.execute(stmt.order_by(CrmMerge.id.desc()).limit(limit)).scalars()]

    def merge_summary(self, vendor_id: str) -> dict[str, int]:
        """How many merges are in force, per rule."""
        with self.db.read() as s:
            rows = s.execute(select(CrmMerge.rule, func.count()).where(
                CrmMerge.vendor_id == vendor_id, CrmMerge.undone_at.is_(None)).group_by(CrmMerge.rule)).all()
        return {rule: int(n) for rule, n in rows}

    def undo_merge(self, vendor_id: str, merge_id: str) -> dict[str, Any]:
        """Split the merged source record off into its own unified client again; fields the merge had
        changed on the surviving client (and nobody changed since) get their previous values back."""
        with self.db.session() as s:
            # locked (PostgreSQL): the same undo twice at once (a double click) made two clients of the record
            m = s.get(CrmMerge, merge_id, with_for_update=True)
            if m is None or m.vendor_id != vendor_id:
                raise NotFound("merge not found")
            if m.undone_at is not None:
                raise Conflict("this merge was already undone", code="already_undone",
                               details={"undone_to": m.undone_to})
            src = s.get(Client, m.source_client_id)
            survivor = s.get(CrmClient, m.crm_client_id)
            if src is None or survivor is None or src.crm_client_id != survivor.id:
                raise Conflict("the merged record is no longer part of this client", code="merge_stale")
            conn = s.connection()
            mapping = self.resolver.mapping(conn, src.connection_id)
            values = _values_of_row(src)
            restored = CrmClient(id=new_id(), vendor_id=vendor_id, **CrmResolver._golden(values, mapping),
                                 source_connection_id=src.connection_id, source_provider=src.provider,
                                 source_at=src.remote_modified_at or utcnow(), field_sources={}, wedding_dates=[],
                                 version=1, created_at=utcnow(), updated_at=utcnow())
            s.add(restored)
            src.crm_client_id = restored.id
            replaced = (m.evidence or {}).get("replaced") or {}
            replaced_by = (m.evidence or {}).get("replaced_by") or {}
            sources = dict(survivor.field_sources or {})
            custom = dict(survivor.custom_fields or {})
            members = set(s.execute(select(Client.id).where(Client.crm_client_id == survivor.id,
                                                            Client.id != src.id)).scalars())
            for name, prior in replaced.items():
                if not _set_by_record(sources.get(name), src):
                    continue  # changed again since (by someone else): keep
                setter = (replaced_by.get(name) or {}).get("r")
                if setter and setter not in members:
                    # the value it replaced came from a record that has left the client since (a merge undone
                    # before this one): what the remaining sources say, below, not that record's value
                    continue
                sources.pop(name, None)
                if name.startswith("custom."):
                    if prior is None:
                        custom.pop(name[7:], None)
                    else:
                        custom[name[7:]] = prior
                else:
                    setattr(survivor, name, prior)
            # fields the split record brought later (an update after the merge, a mapping renamed since): what the
            # client's remaining sources say, the primary one first, else nothing
            leftover = sorted(n for n, who in sources.items() if _set_by_record(who, src))
            if leftover:
                others = sorted(s.execute(select(Client).where(Client.crm_client_id == survivor.id,
                                                               Client.id != src.id)).scalars(),
                                key=lambda r: (r.connection_id != survivor.source_connection_id, r.id))
                views = [flatten(CrmResolver._golden(_values_of_row(r), self.resolver.mapping(conn, r.connection_id)),
                                 CLIENT_FIELDS) for r in others]
                for name in leftover:
                    sources.pop(name, None)
                    value = next((v[name] for v in views if v.get(name) is not None), None)
                    if name.startswith("custom."):
                        if value is None:
                            custom.pop(name[7:], None)
                        else:
                            custom[name[7:]] = value
                    elif name in CLIENT_FIELDS:
                        setattr(survivor, name, value)
            survivor.custom_fields = custom
            survivor.field_sources = sources
            survivor.version += 1
            survivor.updated_at = utcnow()
            s.flush()
            # keys: the survivor keeps its dates, what its remaining sources say and the keys of its values as they
            # are now (a vendor's edit, a conflict settled with a value: see _add_identity_keys); the restored
            # client gets the split record's own
            remaining = list(s.execute(select(Client).where(Client.crm_client_id == survivor.id)).scalars())
            s.execute(delete(CrmIdentityKey).where(CrmIdentityKey.crm_client_id == survivor.id,
                                                   ~CrmIdentityKey.key.startswith("d:")))
            keep = {k for (k,) in s.execute(select(CrmIdentityKey.key).where(
                CrmIdentityKey.crm_client_id == survivor.id))}
            wanted = {k for r in remaining for k in blocking_keys(record_features(_values_of_row(r)))}
            wanted.update(blocking_keys(record_features({f: getattr(survivor, f) for f in CLIENT_FIELDS})))
            for key in sorted(wanted - keep):
                s.add(CrmIdentityKey(vendor_id=vendor_id, crm_client_id=survivor.id, key=key))
            # ... its wedding dates included (``d:<date>|<initials>``): the dates of its own weddings at its
            # connection, which the merge had given the survivor
            dates = self._source_wedding_dates(s, src, survivor.wedding_dates or [])
            restored.wedding_dates = sorted(d.isoformat() for d in dates)
            for key in blocking_keys(record_features(values, dates)):
                s.add(CrmIdentityKey(vendor_id=vendor_id, crm_client_id=restored.id, key=key))
            # its open conflicts with the survivor are void: it is no longer part of that client (settling one
            # would have put the split-off record's value on a client none of whose sources has it)
            for x in s.execute(select(CrmConflict).where(
                    CrmConflict.crm_client_id == survivor.id, CrmConflict.source_client_id == src.id,
                    CrmConflict.status == "open")).scalars():
                x.status, x.resolved_at = "dismissed", utcnow()
                x.resolution = {"choice": "dismissed", "reason": f"merge {m.id} undone: the record is its own "
                                                                 f"client {restored.id} again"}
            # a write-back of the survivor's values to the split-off record that has not gone yet (the provider was
            # down, its backoff runs up to 30 minutes) would put this client's values on the other person's record
            for o in s.execute(select(CrmOutbox).where(
                    CrmOutbox.source_client_id == src.id, CrmOutbox.crm_client_id == survivor.id,
                    CrmOutbox.op == "update_contact", CrmOutbox.status == "pending")).scalars():
                o.status = "failed"
                o.last_error = f"cancelled: merge {m.id} undone, the record is client {restored.id} again"
            m.undone_at = utcnow()
            m.undone_to = restored.id
            out = {"merge": merge_out(m), "client": client_out(survivor), "restored": client_out(restored)}
        return out

    @staticmethod
    def _source_wedding_dates(s: Session, src: Client, candidates: Sequence[Any]) -> set[date]:
        """The dates of the weddings that list this source record among their clients (looked up among the
        unified client's wedding dates, so a large book is not scanned)."""
        wanted: set[date] = set()
        for d in candidates:
            with contextlib.suppress(TypeError, ValueError):
                wanted.add(d if isinstance(d, date) else date.fromisoformat(str(d)[:10]))
        if not wanted:
            return set()
        rows = s.execute(select(Wedding.event_date, Wedding.client_remote_ids).where(
            Wedding.connection_id == src.connection_id, Wedding.event_date.in_(sorted(wanted)),
            Wedding.deleted_at.is_(None))).all()
        return {r.event_date for r in rows if src.remote_id in {str(x) for x in r.client_remote_ids or ()}}

    # -- conflicts -----------------------------------------------------------------------------------
    def list_conflicts(self, vendor_id: str, *, status: str | None = "open", client_id: str | None = None,
                       limit: int = 200, after: str | None = None) -> list[dict[str, Any]]:
        """Oldest first (the manual queue's order); ``after`` is the last id of the previous page."""
        with self.db.read() as s:
            stmt = select(CrmConflict).where(CrmConflict.vendor_id == vendor_id)
            if after:
                cursor_row(s, CrmConflict, after, CrmConflict.vendor_id == vendor_id)
                stmt = stmt.where(CrmConflict.id > after)
            if status:
                stmt = stmt.where(CrmConflict.status == status)
            if client_id:
                stmt = stmt.where(CrmConflict.crm_client_id == client_id)
            return [conflict_out(c) for c in s.execute(stmt.order_by(CrmConflict.id).limit(limit)).scalars()]

    def resolve_conflict(self, vendor_id: str, conflict_id: str, choice: str, value: Any = NO_VALUE
                         ) -> dict[str, Any]:
        """Settle an open conflict: take the ``incoming`` value, keep the ``local`` one (the client's value as it is
        now, which a later edit may have changed since the conflict was raised), or set ``value``.
        A value that differs from a writable source goes back to it through the outbox. ``value`` must be given
        with the choice ``value`` (an explicit None clears the field, as a PATCH with null does; omitted:
        422 ``missing_field``, nothing changes)."""
        if choice not in ("incoming", "local", "value"):
            raise InvalidInput("choice must be incoming, local or value", code="invalid_choice")
        if choice == "value" and value is NO_VALUE:
            raise InvalidInput('the choice "value" needs a value (null clears the field)', code="missing_field",
                               details={"field": "value"})
        with self.db.session() as s:
            x = s.get(CrmConflict, conflict_id, with_for_update=True)  # settled once, however many ask at once
            if x is None or x.vendor_id != vendor_id:
                raise NotFound("conflict not found")
            if x.status != "open":
                raise Conflict("this conflict is not open", code="conflict_closed", details={"status": x.status})
            c = self._get(s, vendor_id, x.crm_client_id)
            src = s.get(Client, x.source_client_id) if x.source_client_id else None
            if choice == "incoming":
                if src is None or src.deleted_at is not None or src.crm_client_id != c.id:
                    # the value would be one no source of the client holds any more
                    raise Conflict("the record this incoming value came from was deleted at its source since (or "
                                   "is no longer part of this client): keep the local value or set a value",
                                   code="source_deleted", details={"source_client_id": x.source_client_id})
            current = (c.custom_fields or {}).get(x.field[7:]) if x.field.startswith("custom.") else \
                getattr(c, x.field, None)
            # ``local`` keeps the client's value as it is now: an edit made since the conflict was raised (the
            # vendor's PATCH, another source's change) is the local side, not the value shown when it was raised
            chosen = x.incoming if choice == "incoming" else current if choice == "local" else value
            if choice == "value" and not x.field.startswith("custom."):  # checked as an edit of the field is
                chosen = self._edited_value(s, c, x.field, value)
            elif choice == "value" and len(json.dumps(value, separators=(",", ":"))) > MAX_CUSTOM_FIELD_JSON:
                raise InvalidInput(f"{x.field} is over {MAX_CUSTOM_FIELD_JSON} characters as JSON (as a PATCH of "
                                   f"custom_fields takes it)", code="value_too_large",
                                   details={"field": x.field, "limit": MAX_CUSTOM_FIELD_JSON})
            if chosen != current:
                if x.field.startswith("custom."):
                    c.custom_fields = {**(c.custom_fields or {}), x.field[7:]: chosen}
                else:
                    setattr(c, x.field, chosen)
                # the provider too: a source_of_truth policy naming it (``honeybook``) must find it owns the field
                who = {"c": x.connection_id, "p": src.provider if src is not None else None, "at": _iso(x.incoming_at),
                       "r": x.source_client_id} \
                    if choice == "incoming" else {"c": "wedsync", "p": "wedsync", "at": utcnow().isoformat()}
                c.field_sources = {**(c.field_sources or {}), x.field: who}
                c.version += 1
                c.updated_at = utcnow()
                self._add_identity_keys(s, c)
            # every writable source record that holds another value gets the settled one, whichever side was
            # chosen (taking HoneyBook's incoming value must still reach VSCO)
            self._enqueue_writebacks(s, c, {x.field: chosen}, only_differing=True)
            x.status, x.resolution, x.resolved_at = "resolved", {"choice": choice, "value": chosen}, utcnow()
            s.flush()
            return conflict_out(x)

    # -- policies -------------------------------------------------------------------------------------
    def list_policies(self, vendor_id: str, *, limit: int | None = None, after: str | None = None
                      ) -> list[dict[str, Any]]:
        """By connection, then field; ``after`` is the last id of the previous page: the page goes on after that
        policy's place in this order (422 ``invalid_cursor`` when it is not one of the vendor's policies);
        ``limit`` None: all of them."""
        P = CrmFieldPolicy
        stmt = select(P).where(P.vendor_id == vendor_id)
        with self.db.read() as s:
            if after:
                last = s.get(P, after)
                if last is None or last.vendor_id != vendor_id:
                    raise InvalidInput("after is not the next_cursor of a page of this list", code="invalid_cursor")
                stmt = stmt.where(or_(P.connection_id > last.connection_id,
                                      and_(P.connection_id == last.connection_id, P.field > last.field)))
            rows = s.execute(stmt.order_by(P.connection_id, P.field).limit(limit)).scalars()
            return [{"id": p.id, "connection_id": p.connection_id, "field": p.field, "kind": p.kind,
                     "source": p.source, "skew_seconds": p.skew_seconds} for p in rows]

    def set_policy(self, vendor_id: str, *, field: str = "*", connection_id: str = "*", kind: str,
                   source: str | None = None, skew_seconds: int = 120) -> dict[str, Any]:
        if source is not None and kind != "source_of_truth":  # stored, it read as a rule that never applied
            raise InvalidInput(f"a source applies only to a source_of_truth policy, not to {kind!r} (leave it out)",
                               code="invalid_policy")
        try:
            policy = FieldPolicy(kind, self._policy_source(vendor_id, source) if source else source, skew_seconds)
        except ValueError as exc:
            raise InvalidInput(str(exc), code="invalid_policy") from None
        if field != "*" and field not in CLIENT_FIELDS and not (field.startswith("custom.") and field[7:].strip()):
            raise InvalidInput(f"unknown field {field!r}: one of {list(CLIENT_FIELDS)}, custom.<name> or *",
                               code="invalid_field")
        if connection_id != "*":
            self.connection(vendor_id, connection_id)
        with self.db.session() as s:
            row = s.execute(select(CrmFieldPolicy).where(
                CrmFieldPolicy.vendor_id == vendor_id, CrmFieldPolicy.connection_id == connection_id,
                CrmFieldPolicy.field == field)).scalar_one_or_none()
            if row is None:
                row = CrmFieldPolicy(id=new_id(), vendor_id=vendor_id, connection_id=connection_id, field=field)
                s.add(row)
            row.kind, row.source, row.skew_seconds = policy.kind, policy.source, policy.skew_seconds
            s.flush()
            out = {"id": row.id, "connection_id": connection_id, "field": field, **policy.as_dict()}
        self.resolver.invalidate()
        return out

    def delete_policy(self, vendor_id: str, policy_id: str) -> dict[str, Any]:
        """Remove one of the vendor's policies (404 ``not_found`` for an id that is not one of them: another
        vendor's is never touched). New conflicts on its (connection, field) then follow the next less specific
        policy, or the default; conflicts already settled or queued keep the policy they were raised under.
        Returns the removed policy."""
        with self.db.session() as s:
            row = s.get(CrmFieldPolicy, policy_id, with_for_update=True)
            if row is None or row.vendor_id != vendor_id:
                raise NotFound("policy not found")
            out = {"id": row.id, "connection_id": row.connection_id, "field": row.field, "kind": row.kind,
                   "source": row.source, "skew_seconds": row.skew_seconds}
            s.delete(row)
        self.resolver.invalidate()
        return out

    def _policy_source(self, vendor_id: str, source: str) -> str:
        """A source of truth: one of the CRM providers' names (``Tave`` -> ``vsco-workspace``) or one of the
        vendor's connections; anything else would be a rule that silently never applies."""
        from wedsync.connectors.registry import canonical_slug

        key = canonical_slug(source)
        if key in _crm_slugs():
            return key
        with self.db.read() as s:
            conn = s.get(Connection, source.strip())
            if conn is not None and conn.vendor_id == vendor_id:
                return conn.id
        raise InvalidInput(f"unknown source {source!r}: a CRM provider ({sorted(_crm_slugs())}) "
                           f"or one of your connection ids", code="invalid_policy")

    # -- field mappings -------------------------------------------------------------------------------
    def list_mappings(self, vendor_id: str, connection_id: str) -> list[dict[str, Any]]:
        """All of the connection's custom field mappings, by entity, then source key."""
        return self.mappings_page(vendor_id, connection_id)[0]

    def mappings_page(self, vendor_id: str, connection_id: str, *, limit: int | None = None,
                      after: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the connection's mappings by entity, then source key, and the next page's cursor (the last
        mapping's id when the page is full, else None). ``after`` is that cursor: the page goes on after that
        mapping's place in this order (422 ``invalid_cursor`` when it is not one of the connection's)."""
        self.connection(vendor_id, connection_id)
        M = CrmFieldMapping
        stmt = select(M).where(M.connection_id == connection_id)
        with self.db.read() as s:
            if after:
                last = s.get(M, after)
                if last is None or last.connection_id != connection_id:
                    raise InvalidInput("after is not the next_cursor of a page of this list", code="invalid_cursor")
                stmt = stmt.where(or_(M.entity > last.entity, and_(M.entity == last.entity,
                                                                   M.source_key > last.source_key)))
            rows = list(s.execute(stmt.order_by(M.entity, M.source_key).limit(limit)).scalars())
        nxt = rows[-1].id if rows and limit is not None and len(rows) == limit else None
        return [{"entity": r.entity, "source_key": r.source_key, "target": r.target} for r in rows], nxt

    def set_mappings(self, vendor_id: str, connection_id: str, mappings: Mapping[str, str | None],
                     entity: str = "client") -> dict[str, Any]:
        """Replace a connection's custom field mapping and re-map every existing unified client from the
        stored source rows (no provider call, no resync): values under the old names move to the new ones
        unless the unified value was changed since by someone else."""
        if entity != "client":
            raise NotImplementedCapability("field mappings apply to clients only (weddings keep provider keys)",
                                           code="mapping_entity_not_supported")
        for k, v in mappings.items():
            if not k or len(k) > 200 or (v is not None and (not v or len(v) > 200 or v.startswith("custom."))):
                raise InvalidInput(f"bad mapping {k!r} -> {v!r}: names are 1-200 characters, target without "
                                   f"the custom. prefix (null hides the field)", code="invalid_mapping")
            if not k.strip() or (v is not None and not v.strip()):
                raise InvalidInput(f"bad mapping {k!r} -> {v!r}: a name cannot be blank (null hides the field)",
                                   code="invalid_mapping", details={"source_key": k})
        by_target: dict[str, list[str]] = {}
        for k, v in mappings.items():
            if v is not None:
                by_target.setdefault(v, []).append(k)
        shared = {t: sorted(ks) for t, ks in by_target.items() if len(ks) > 1}
        if shared:  # a record carrying both would keep one of the values, whichever it happened to list last
            t, ks = sorted(shared.items())[0]
            raise InvalidInput(f"bad mapping: {', '.join(map(repr, ks))} all map to {t!r}; a client has one value "
                               f"under a name", code="invalid_mapping", details={"shared_targets": shared})
        provider = self.connection(vendor_id, connection_id).provider
        remapped = 0
        with self.db.session() as s:
            conn = s.connection()
            old = {r.source_key: r.target for r in s.execute(select(CrmFieldMapping).where(
                CrmFieldMapping.connection_id == connection_id, CrmFieldMapping.entity == entity)).scalars()}
            s.execute(delete(CrmFieldMapping).where(CrmFieldMapping.connection_id == connection_id,
                                                    CrmFieldMapping.entity == entity))
            for k, v in sorted(mappings.items()):
                s.add(CrmFieldMapping(id=new_id(), vendor_id=vendor_id, connection_id=connection_id, entity=entity,
                                      source_key=k, target=v))
            s.flush()
            new = dict(mappings)
            after = ""
            while True:  # in batches, by id: memory stays flat on a large book
                rows = conn.execute(select(_CLIENTS.c.id, _CLIENTS.c.crm_client_id, _CLIENTS.c.custom_fields)
                                    .where(_CLIENTS.c.connection_id == connection_id, _CLIENTS.c.id > after,
                                           _CLIENTS.c.crm_client_id.is_not(None))
                                    .order_by(_CLIENTS.c.id).limit(1000)).all()
                if not rows:
                    break
                after = rows[-1].id
                people = self.resolver.load_people(conn, {r.crm_client_id for r in rows})
                for r in rows:
                    p = people.get(r.crm_client_id)
                    if p is None or not r.custom_fields:
                        continue
                    before, now_ = project(r.custom_fields, old), project(r.custom_fields, new)
                    if before == now_:
                        continue
                    custom = dict(p.golden.get("custom_fields") or {})
                    sources = p.field_sources
                    for k, v in before.items():
                        if k not in now_ and custom.get(k) == v and _owner(p, f"custom.{k}") == connection_id:
                            custom.pop(k, None)
                            sources.pop(f"custom.{k}", None)
                    for k, v in now_.items():
                        if k in custom and _owner(p, f"custom.{k}") != connection_id:
                            continue  # the vendor (or another source) set this name since: theirs stays
                        custom[k] = v
                        p.set_by(f"custom.{k}", Side(provider, connection_id, utcnow()), r.id)
                    p.golden["custom_fields"] = custom
                    p.dirty = True
                    remapped += 1
                CrmResolver._write(conn, vendor_id, people, utcnow())
        self.resolver.invalidate()
        return {"connection_id": connection_id, "entity": entity, "mappings": self.list_mappings(vendor_id,
                                                                                                connection_id),
                "remapped_clients": remapped}

    # -- write-back outbox -----------------------------------------------------------------------------
    def pending_outbox(self, limit: int = 50) -> list[str]:
        """The write-backs a drain may send now, oldest first (services/crm_writeback.py: ``sendable``)."""
        ids: list[str] = self.hub.crm_writeback.pending(limit)
        return ids

    def list_outbox(self, vendor_id: str, limit: int = 100, after: str | None = None) -> list[dict[str, Any]]:
        """Newest first; ``after`` is the last id of the previous page."""
        with self.db.read() as s:
            stmt = select(CrmOutbox).where(CrmOutbox.vendor_id == vendor_id)
            if after:
                cursor_row(s, CrmOutbox, after, CrmOutbox.vendor_id == vendor_id)
                stmt = stmt.where(CrmOutbox.id < after)
            rows = s.execute(stmt.order_by(CrmOutbox.id.desc()).limit(limit)).scalars()
            return [{"id": o.id, "connection_id": o.connection_id, "crm_client_id": o.crm_client_id,
                     "op": o.op, "record_type": o.record_type, "record_id": o.record_id,
                     "remote_id": o.remote_id, "payload": o.payload, "status": o.status,
                     "attempts": o.attempts, "last_error": o.last_error, "idempotency_key": o.idempotency_key,
                     "sent_at": o.sent_at.isoformat() if o.sent_at else None,
                     "echo_seen_at": o.echo_seen_at.isoformat() if o.echo_seen_at else None} for o in rows]

    async def send_outbox(self, outbox_id: str) -> str:
        """Send one write-back (its idempotency key was committed with the row, before this call); the
        record the provider returns is stored at once, so its echo (hook or next sync) changes nothing."""
        with self.db.read() as s:
            o = s.get(CrmOutbox, outbox_id)
            if o is None or o.status != "pending":
                return o.status if o is not None else "missing"
            delegate = o.op != "update_contact"
        if delegate:  # weddings/jobs, events, orders, payments, bookings: services/crm_writeback.py
            status: str = await self.hub.crm_writeback.send(outbox_id)
            return status
        with self.db.read() as s:
            o = s.get(CrmOutbox, outbox_id)
            if o is None or o.status != "pending":
                return o.status if o is not None else "missing"
            conn = self.hub.connections.get_any(o.connection_id)
            op, remote_id, payload, vendor_id = o.op, o.remote_id, dict(o.payload), o.vendor_id
            src = s.get(Client, o.source_client_id) if o.source_client_id else None
            if src is None or remote_id is None:
                self.hub.crm_writeback.release(outbox_id, "the source record is gone", final=True)
                return "failed"
            fields = dict(payload.get("fields") or {})
            values = {k: v for k, v in _values_of_row(src).items() if k != "remote_modified_at"}
            record = ClientRecord(**{**values, **{k: v for k, v in fields.items() if k in values}})
        writeback = self.hub.crm_writeback
        claimed, _before = writeback.claim(outbox_id)
        if not claimed:
            return "pending"  # another drain is sending it, or it waits (a backoff, an older row first)
        try:
            connector = await self.hub.connections.connector(conn)
            method = getattr(connector, op, None)
            if method is None:
                writeback.release(outbox_id, f"{conn.provider} cannot {op}", final=True)
                return "failed"
            # An update is a PUT of the fields we hold (idempotent: a replay writes the same values); our
            # outbox row, committed before this call, is the idempotency record.
            result = await method(remote_id, record, fields=sorted(fields))
            entity = getattr(result, "item", result)
        except BaseException as exc:
            return writeback.settle(outbox_id, exc)  # type: ignore[no-any-return]
        echo = connector.map("contacts", entity) if isinstance(entity, dict) else None
        with self.db.engine.begin() as c:
            written = record_values(echo)["content_hash"] if echo is not None else None
            c.execute(update(_OUTBOX).where(_OUTBOX.c.id == outbox_id).values(
                status="done", sent_at=utcnow(), written_hash=written, next_attempt_at=None))
            if echo is not None:  # the provider's copy as we wrote it: its hook/next sync is then unchanged
                self.hub.sync.upsert(c, vendor_id, conn.id, "contacts", [echo])
        return "done"

    # -- CSV import ------------------------------------------------------------------------------------
    def create_import(self, vendor_id: str, layout: str, data: bytes, *, connection_id: str | None = None,
                      filename: str | None = None, chunk_size: int = DEFAULT_CHUNK) -> dict[str, Any]:
        """Check the file as a whole (encoding, header, required columns: ``CsvFileError`` names the
        problem, nothing is stored) and record the job with its bytes, and the header's warnings (a repeated
        column: ``duplicate_column``) in its report; the workflow then imports it."""
        from wedsync.connectors.channels.csv_layouts import LAYOUTS, RowIssue, count_records, parse_csv

        if layout not in LAYOUTS:
            raise InvalidInput(f"unknown layout {layout!r}; one of {sorted(LAYOUTS)}", code="unknown_layout")
        if not 1 <= chunk_size <= 10_000:
            raise InvalidInput("chunk_size must be 1-10000", code="invalid_chunk_size")
        if len(data) > MAX_IMPORT_BYTES:
            raise TooLarge(f"the file is larger than {MAX_IMPORT_BYTES // 1024 // 1024} MiB",
                           code="file_too_large")
        conn = (self.connection(vendor_id, connection_id) if connection_id
                else self.connection_for(vendor_id, layout, create=True))
        if conn.provider != canonical_provider(layout):
            # its rows would become that provider's source records: written back to it, and deleted by its
            # next full sync (it does not list them)
            raise InvalidInput(f"connection {conn.id} is a {conn.provider} connection: a {LAYOUTS[layout].product} "
                               f"export is imported into a {canonical_provider(layout)} connection (or leave out "
                               f"connection_id)", code="provider_mismatch")
        notes: list[RowIssue] = []
        parse_csv(data, layout, notes=notes, **self._parse_options(conn))  # file-level problems raise here
        # records, not lines: a multi-line address is one row (20,000 records counted 20,400 until the end, and
        # a failed job kept that count)
        job = CrmImportJob(id=new_id(), vendor_id=vendor_id, connection_id=conn.id, layout=layout,
                           filename=(filename or "")[:300] or None, chunk_size=chunk_size, status="queued",
                           total_rows=count_records(data))
        with self.db.session() as s:
            s.add(job)
            s.flush()
            s.add(CrmImportFile(job_id=job.id, vendor_id=vendor_id, data=data))
            s.add_all(CrmImportError(job_id=job.id, vendor_id=vendor_id, line=n.line, column=n.column, code=n.code,
                                     message=n.message[:1000], fatal=False) for n in notes)
        return self.import_status(vendor_id, job.id)

    def _parse_options(self, conn: Connection) -> dict[str, Any]:
        settings = conn.settings or {}
        opts: dict[str, Any] = {}
        if settings.get("default_region"):
            opts["default_region"] = str(settings["default_region"])
        if settings.get("timezone"):
            opts["timezone"] = str(settings["timezone"])
        return opts

    def begin_import(self, job_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            job = s.get(CrmImportJob, job_id)
            if job is None:
                raise NotFound("import job not found")
            if job.status == "queued":
                job.status, job.started_at = "running", utcnow()
            return {"job_id": job.id, "vendor_id": job.vendor_id, "connection_id": job.connection_id,
                    "layout": job.layout, "chunk_size": job.chunk_size, "status": job.status}

    def _chunk_rows(self, job_id: str, layout: str, conn: Connection, chunk: int, size: int
                    ) -> tuple[list[Any], bool]:
        """Rows of chunk ``chunk``, and whether the file has rows after them: the parser of the previous chunk
        continues where it stopped; after a restart (recovery) the file is parsed again and the chunks already
        done are skipped. A full chunk looks one row ahead, so a file of an exact multiple of the chunk size
        ends with its last full chunk (it used to take one more, empty, step and chunk)."""
        from wedsync.connectors.channels.csv_layouts import parse_csv

        with self._cursor_lock:
            cur = self._import_cursors.pop(job_id, None)
        if cur is None or cur[0] != chunk:
            with self.db.read() as s:
                f = s.get(CrmImportFile, job_id)
                if f is None:
                    raise NotFound("import file not found")
                data = f.data
            it = parse_csv(data, layout, **self._parse_options(conn))
            for _ in range(chunk * size):
                if next(it, None) is None:
                    break
        else:
            it = cur[1]
        rows = []
        for row in it:
            rows.append(row)
            if len(rows) >= size:
                break
        more = len(rows) >= size
        if more:
            ahead: Any
            try:
                ahead = next(it, _NO_ROW)
            except InvalidInput as exc:  # a file-level problem in the next row belongs to the next chunk
                ahead, it = None, _raising(exc)
            if ahead is _NO_ROW:
                more = False
            elif ahead is not None:
                it = itertools.chain([ahead], it)
        with self._cursor_lock:
            self._import_cursors[job_id] = (chunk + 1, it)
        return rows, more

    def import_chunk(self, plan: Mapping[str, Any], chunk: int) -> dict[str, Any]:
        """Import one chunk of rows: its records, bad-row reports and bookkeeping row in one transaction,
        so a replayed step (recovery) finds its row and changes nothing twice. ``last`` says it was the end."""
        job_id, vendor_id = plan["job_id"], plan["vendor_id"]
        chunks: Table = CrmImportChunk.__table__  # type: ignore[assignment]
        with self.db.read() as s:
            done = s.execute(select(chunks).where(chunks.c.job_id == job_id, chunks.c.chunk == chunk)).first()
        if done is not None:
            # (a full chunk replayed here, not from its step's recorded result, may have been the file's last:
            # the next chunk then finds no rows and records nothing, below)
            return {"chunk": chunk, "rows": done.rows, "last": done.rows < plan["chunk_size"], "replayed": True}
        conn = self.hub.connections.get_any(plan["connection_id"])
        rows, more = self._chunk_rows(job_id, plan["layout"], conn, chunk, plan["chunk_size"])
        if not rows and chunk > 0:
            return {"chunk": chunk, "rows": 0, "last": True, "replayed": False}
        clients: dict[str, ClientRecord] = {}
        weddings: dict[str, WeddingRecord] = {}
        evidence: dict[str, set[date]] = {}
        errors: list[dict[str, Any]] = []
        bad = 0
        for row in rows:
            fatal = row.client is None
            bad += fatal
            for issue in row.issues:  # "fatal" is stored as whether the row was skipped, for each of its issues
                errors.append({"job_id": job_id, "vendor_id": vendor_id, "line": issue.line,
                               "column": issue.column, "code": issue.code, "message": issue.message[:1000],
                               "fatal": fatal})
            if fatal and not row.issues:
                errors.append({"job_id": job_id, "vendor_id": vendor_id, "line": row.line, "column": None,
                               "code": "row_rejected", "message": "the row has no client", "fatal": True})
            if row.client is None:
                continue
            clients[row.client.remote_id] = row.client
            if row.wedding is not None:
                weddings[row.wedding.remote_id] = row.wedding
                if row.wedding.event_date:
                    evidence.setdefault(row.client.remote_id, set()).add(row.wedding.event_date)
        stats = CrmStats()
        with self.db.engine.begin() as c:
            again = c.execute(select(chunks.c.rows).where(chunks.c.job_id == job_id, chunks.c.chunk == chunk)).first()
            if again is not None:  # another executor finished it meanwhile
                return {"chunk": chunk, "rows": again.rows, "last": again.rows < plan["chunk_size"],
                        "replayed": True}
            created, updated, _ = self.hub.sync.upsert(c, vendor_id, conn.id, "contacts", list(clients.values()),
                                                       evidence=evidence, stats=stats)
            w_created, w_updated, _ = self.hub.sync.upsert(c, vendor_id, conn.id, "jobs",
                                                           self._same_projects(c, conn.id, list(weddings.values())))
            if errors:
                c.execute(insert(CrmImportError.__table__), errors)  # type: ignore[arg-type]
            c.execute(insert(chunks).values(
                job_id=job_id, chunk=chunk, vendor_id=vendor_id, rows=len(rows), good=len(rows) - bad, bad=bad,
                created=created + w_created, updated=updated + w_updated, merged=stats.merged,
                conflicts=stats.conflicts, done_at=utcnow()))
        return {"chunk": chunk, "rows": len(rows), "last": not more, "replayed": False}

    def finish_import(self, job_id: str, error: str | None = None) -> dict[str, Any]:
        with self._cursor_lock:
            self._import_cursors.pop(job_id, None)
        with self.db.session() as s:
            job = s.get(CrmImportJob, job_id)
            if job is None:
                raise NotFound("import job not found")
            if job.status in ("queued", "running"):
                n, rows = s.execute(select(func.count(), func.coalesce(func.sum(CrmImportChunk.rows), 0)).where(
                    CrmImportChunk.job_id == job_id)).one()
                job.chunks_total = int(n)
                if not error:  # a failed job keeps the file's row count: the rows it did not reach stay visible
                    job.total_rows = int(rows)
                job.status = "failed" if error else "succeeded"
                job.error_detail = error[:2000] if error else None
                job.finished_at = utcnow()
            vendor_id = job.vendor_id
        return self.import_status(vendor_id, job_id)

    def imports_in_progress(self, created_before: datetime, limit: int = 100) -> list[str]:
        """Ids of import jobs still queued or running that were recorded before ``created_before``, oldest
        first (for the workers' sweep: a job whose workflow was never enqueued, see ``sweep_imports``)."""
        with self.db.read() as s:
            return list(s.execute(select(CrmImportJob.id).where(
                CrmImportJob.status.in_(("queued", "running")), CrmImportJob.created_at < created_before)
                .order_by(CrmImportJob.created_at).limit(limit)).scalars())

    def import_status(self, vendor_id: str, job_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            job = s.get(CrmImportJob, job_id)
            if job is None or job.vendor_id != vendor_id:
                raise NotFound("import job not found")
            ch = CrmImportChunk
            sums = [func.coalesce(func.sum(col), 0) for col in (
                ch.rows, ch.good, ch.bad, ch.created, ch.updated, ch.merged, ch.conflicts)]
            agg = s.execute(select(func.count(), *sums).where(ch.job_id == job_id)).one()
            n, rows, good, bad, created, updated, merged, conflicts = (int(v) for v in agg)
            return {"id": job.id, "connection_id": job.connection_id, "layout": job.layout, "filename": job.filename,
                    "status": job.status, "chunk_size": job.chunk_size, "chunks_done": int(n),
                    "chunks_total": job.chunks_total, "total_rows": job.total_rows, "processed_rows": int(rows),
                    "good_rows": int(good), "bad_rows": int(bad), "created": int(created), "updated": int(updated),
                    "merged": int(merged), "conflicts": int(conflicts), "error_detail": job.error_detail,
                    "created_at": job.created_at.isoformat(),
                    "finished_at": job.finished_at.isoformat() if job.finished_at else None}

    def import_errors(self, vendor_id: str, job_id: str, *, after_line: int = 0, limit: int = 500
                      ) -> list[dict[str, Any]]:
        self.import_status(vendor_id, job_id)
        with self.db.read() as s:
            rows = list(s.execute(select(CrmImportError).where(CrmImportError.job_id == job_id,
                                                               CrmImportError.line > after_line)
                                  .order_by(CrmImportError.line, CrmImportError.id).limit(limit)).scalars())
            if len(rows) == limit:  # a page ends with a whole line: the next one starts after it (a line's
                # second report was never shown when the page ended on its first)
                last = rows[-1]
                rows += s.execute(select(CrmImportError).where(
                    CrmImportError.job_id == job_id, CrmImportError.line == last.line, CrmImportError.id > last.id)
                    .order_by(CrmImportError.id)).scalars()
            return [{"line": e.line, "column": e.column, "code": e.code, "message": e.message,
                     "skipped": e.fatal} for e in rows]

    def list_imports(self, vendor_id: str, limit: int = 50, after: str | None = None) -> list[dict[str, Any]]:
        """Newest first; ``after`` is the last id of the previous page."""
        with self.db.read() as s:
            stmt = select(CrmImportJob.id).where(CrmImportJob.vendor_id == vendor_id)
            if after:
                cursor_row(s, CrmImportJob, after, CrmImportJob.vendor_id == vendor_id)
                stmt = stmt.where(CrmImportJob.id < after)
            ids = list(s.execute(stmt.order_by(CrmImportJob.id.desc()).limit(limit)).scalars())
        return [self.import_status(vendor_id, i) for i in ids]

    # -- CSV export ------------------------------------------------------------------------------------
    def export_rows(self, vendor_id: str, *, connection_id: str | None = None, provider: str | None = None
                    ) -> Iterator[tuple[ClientRecord, WeddingRecord | None]]:
        """The unified clients (or one connection's source records) as (client, wedding) pairs, streamed in
        batches of 1,000; a unified client's wedding is the first of its sources' weddings.

        A unified client carries the id and creation time of its record at ``provider`` (the product whose
        layout is exported) when it has one, else no id (the layout's id column stays blank, as for a client
        the product never had) and its earliest source's creation time: the hub's own client ids in a product's
        id column made a re-import of the export create every client again beside the originals."""
        from wedsync.connectors.channels.csv_layouts import client_hash_id

        after = ""
        firsts: dict[str, dict[str, str]] = {}  # connection -> its client remote ids' first weddings, once
        while True:
            with self.db.read() as s:
                if connection_id:
                    self.connection(vendor_id, connection_id)
                    batch = list(s.execute(select(Client).where(
                        Client.connection_id == connection_id, Client.deleted_at.is_(None), Client.id > after)
                        .order_by(Client.id).limit(1000)).scalars())
                    if not batch:
                        return
                    after = batch[-1].id
                    src = [r for r in batch if r.kind in PERSON_KINDS]  # a venue or a vendor is no client row
                    wed = self._weddings_by_remote(s, connection_id, [r.remote_id for r in src], firsts)
                    for r in src:
                        yield ClientRecord(**_values_of_row(r)), wed.get(r.remote_id)
                    continue
                batch_people = list(s.execute(select(CrmClient).where(CrmClient.vendor_id == vendor_id,
                                                                      CrmClient.id > after)
                                              .order_by(CrmClient.id).limit(1000)).scalars())
                if not batch_people:
                    return
                after = batch_people[-1].id
                # a unified client made from a venue or vendor entry before they were kept out: not exported
                people = [p for p in batch_people if p.kind in PERSON_KINDS]
                links = s.execute(select(Client.crm_client_id, Client.connection_id, Client.remote_id,
                                         Client.provider, Client.remote_created_at).where(
                    Client.crm_client_id.in_([p.id for p in people]), Client.deleted_at.is_(None))
                    .order_by(Client.id)).all()
                by_conn: dict[str, list[str]] = {}
                own_id: dict[str, str] = {}
                created: dict[str, datetime] = {}
                for pid, cid, rid, prov, made in links:
                    by_conn.setdefault(cid, []).append(rid)
                    if pid is None:
                        continue
                    if prov == provider and pid not in own_id:
                        own_id[pid] = rid
                        if made is not None:
                            created[pid] = made  # its record at that product: the product's own date
                    elif made is not None and pid not in own_id and (pid not in created or made < created[pid]):
                        created[pid] = made
                wed_of: dict[str, WeddingRecord] = {}
                for cid, rids in by_conn.items():
                    found = self._weddings_by_remote(s, cid, rids, firsts)
                    for pid, c2, rid, _, _ in links:
                        if pid and c2 == cid and rid in found and pid not in wed_of:
                            wed_of[pid] = found[rid]
                for p in people:
                    ident = own_id.get(p.id) or client_hash_id(p.email, p.first_name, p.last_name)
                    yield ClientRecord(remote_id=ident, kind=p.kind, first_name=p.first_name, last_name=p.last_name,
                                       display_name=p.display_name, email=p.email, phone=p.phone, company=p.company,
                                       address=p.address, custom_fields=p.custom_fields or {},
                                       remote_created_at=created.get(p.id), remote_modified_at=p.updated_at
                                       ), wed_of.get(p.id)

    @staticmethod
    def _weddings_by_remote(s: Session, connection_id: str, client_remote_ids: list[str],
                            firsts: dict[str, dict[str, str]]) -> dict[str, WeddingRecord]:
        """Client remote id -> the first (by id) live wedding of the connection that lists it, for these clients.

        A wedding lists its clients in a JSON column, which no index covers: the connection's weddings are read
        once per export, two columns of them, into ``firsts`` (client remote id -> wedding id), and each batch
        then loads only the weddings its clients have. Reading every wedding of the connection, whole, for every
        batch of 1,000 clients made an export quadratic (20,000 clients: 7 s; 60,000: 58 s)."""
        index = firsts.get(connection_id)
        if index is None:
            index = firsts[connection_id] = {}
            for wid, rids in s.execute(select(Wedding.id, Wedding.client_remote_ids).where(
                    Wedding.connection_id == connection_id, Wedding.deleted_at.is_(None)).order_by(Wedding.id)):
                for rid in rids or ():
                    if isinstance(rid, str):
                        index.setdefault(rid, wid)
        wanted = {rid: index[rid] for rid in client_remote_ids if rid in index}
        ids = sorted(set(wanted.values()))
        found: dict[str, WeddingRecord] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            for w in s.execute(select(Wedding.id, Wedding.remote_id, Wedding.name, Wedding.event_date, Wedding.stage,
                                      Wedding.closed, Wedding.guest_count, Wedding.job_type, Wedding.client_remote_ids,
                                      Wedding.custom_fields).where(Wedding.id.in_(ids[i:i + _IN_CHUNK]),
                                                                   Wedding.deleted_at.is_(None))):
                found[w.id] = WeddingRecord(remote_id=w.remote_id, name=w.name, event_date=w.event_date,
                                            stage=w.stage, closed=w.closed, guest_count=w.guest_count,
                                            job_type=w.job_type, client_remote_ids=list(w.client_remote_ids or []),
                                            custom_fields=w.custom_fields or {})
        return {rid: found[wid] for rid, wid in wanted.items() if wid in found}

    def export_csv(self, vendor_id: str, layout: str, *, connection_id: str | None = None,
                   on_row: Callable[[], None] | None = None) -> Iterator[bytes]:
        """The CSV, in chunks; ``on_row`` is called for each row as it is written (progress, a final count)."""
        from wedsync.connectors.channels.csv_layouts import LAYOUTS, export_csv

        if layout not in LAYOUTS:
            raise InvalidInput(f"unknown layout {layout!r}; one of {sorted(LAYOUTS)}", code="unknown_layout")
        # written the way the import will read it back: the phone region and time zone of the connection
        # (the one exported, else the vendor's connection to the layout's product, into which an import goes)
        if connection_id:
            conn: Connection | None = self.connection(vendor_id, connection_id)
        else:
            try:
                conn = self.connection_for(vendor_id, layout)
            except NotFound:
                conn = None
        options = self._parse_options(conn) if conn is not None else {}
        rows = self.export_rows(vendor_id, connection_id=connection_id, provider=layout)
        if on_row is not None:
            rows = _counted(rows, on_row)
        return export_csv(layout, rows, **options)

    # -- Zapier-style hooks ------------------------------------------------------------------------------
    @staticmethod
    def _same_projects(c: SAConnection, connection_id: str, weddings: list[WeddingRecord]) -> list[WeddingRecord]:
        """One project however it arrives: a CSV row's project (no id column: ``csvp-`` + hash of client, name
        and date) and a hook's project with the product's id (``hb-job-PRJ9``) for the same client, with the same
        name (normalized) and date, are one wedding. The hook's id wins: a stored ``csvp-`` wedding takes it when
        the hook arrives, and a later import of the row updates the wedding under it. Only an exact match of
        all three is the same project (a name or date that differs, or two hook projects alike, stay apart)."""
        from dataclasses import replace

        from wedsync.connectors.channels.csv_layouts import project_hash_id

        wt: Table = Wedding.__table__  # type: ignore[assignment]
        out: list[WeddingRecord] = []
        for w in weddings:
            if not w.client_remote_ids or not w.name or w.event_date is None or w.remote_id.startswith("zapp-"):
                out.append(w)
                continue
            csv_id = project_hash_id(w.client_remote_ids[0], w.name, w.event_date)
            stored = c.execute(select(wt.c.id).where(wt.c.connection_id == connection_id,
                                                     wt.c.remote_id == w.remote_id)).first()
            if stored is not None:
                out.append(w)
                continue
            if w.remote_id == csv_id:  # a CSV row's project: is it a hook's project already?
                found = [r.remote_id for r in c.execute(select(
                    wt.c.remote_id, wt.c.name, wt.c.event_date, wt.c.client_remote_ids).where(
                        wt.c.connection_id == connection_id, wt.c.event_date == w.event_date,
                        wt.c.deleted_at.is_(None), ~wt.c.remote_id.startswith("csvp-"),
                        ~wt.c.remote_id.startswith("zapp-")))
                    if r.client_remote_ids and r.name
                    and project_hash_id(r.client_remote_ids[0], r.name, r.event_date) == csv_id]
                if len(found) == 1:
                    w = replace(w, remote_id=found[0])
            elif not w.remote_id.startswith("csvp-"):  # a hook's project: imported from a CSV before?
                c.execute(update(wt).where(wt.c.connection_id == connection_id, wt.c.remote_id == csv_id,
                                           wt.c.deleted_at.is_(None)).values(remote_id=w.remote_id))
            out.append(w)
        return out

    @staticmethod
    def _known_hook_client(c: Any, connection_id: str, provider: str, event: Any) -> Any:
        """The event with its client under the remote id this connection already knows the product's client by.

        HoneyBook clients are keyed by the e-mail + name hash its CSV rows get (its CSV has no id column), so a
        Client Created without the e-mail and the New Project Booked that brought it made two clients of one
        HoneyBook client, the same ``honeybook_id`` on both (found by a probe). A hook whose hash id is new but
        whose product id a stored client of the connection carries is that client."""
        client = event.client
        key = f"{provider.replace('-', '_')}_id"
        product_id = client.custom_fields.get(key) if client.remote_id.startswith("csv-") else None
        if not product_id:
            return event
        if c.execute(select(_CLIENTS.c.id).where(_CLIENTS.c.connection_id == connection_id,
                                                 _CLIENTS.c.remote_id == client.remote_id)).first() is not None:
            return event
        known = c.execute(select(_CLIENTS.c.remote_id).where(
            _CLIENTS.c.connection_id == connection_id, _CLIENTS.c.deleted_at.is_(None),
            _CLIENTS.c.custom_fields[key].as_string() == str(product_id)).order_by(_CLIENTS.c.id).limit(1)).scalar()
        if known is None:
            return event
        wedding = event.wedding
        if wedding is not None:
            wedding = dataclasses.replace(wedding, client_remote_ids=[
                known if r == client.remote_id else r for r in wedding.client_remote_ids])
        return dataclasses.replace(event, client=dataclasses.replace(client, remote_id=known), wedding=wedding,
                                   remote_id=known if event.remote_id == client.remote_id else event.remote_id)

    def ingest_zap(self, row: Any) -> str:
        """A verified hook from the inbox: the client (and project) it carries, upserted like a sync page.

        Ordered per field, not per record: a hook carries only the fields its Zap maps (HoneyBook's Client
        Created has the company and address, New Project Booked does not), so each field keeps the value of
        the newest hook (its ``occurred_at``) that carried it, and the record's ``field_times`` remember when.
        An older hook delivered late still fills what no newer hook carried and never overwrites what one set:
        the result is the same in any delivery order (it used to drop a late hook whole, losing its fields)."""
        from wedsync.connectors.channels.zapier import parse_zap_event

        event = parse_zap_event(row.provider, row.body, None)
        # a hook cannot have happened after the hub received it: a later time (a typo such as 2099, a local time
        # read as UTC) would stamp its fields newer than every hook to come, so no later hook could change them
        at = min(event.occurred_at or row.received_at, row.received_at)
        stats = CrmStats()
        result = "unchanged"
        with self.db.engine.begin() as c:
            if c.execute(select(Connection.id).where(Connection.id == row.connection_id)).first() is None:
                # deleted after the hook was accepted: nothing to store it on (never retried)
                raise Fatal(f"connection {row.connection_id} no longer exists", provider=row.provider)
            if event.client is not None:
                event = self._known_hook_client(c, row.connection_id, row.provider, event)
                # locked (PostgreSQL) so two hooks about one client merge one after the other, not both into
                # the same old row
                stored = c.execute(select(_CLIENTS).where(_CLIENTS.c.connection_id == row.connection_id,
                                                          _CLIENTS.c.remote_id == event.client.remote_id)
                                   .with_for_update()).first()
                client, times = merge_hook_client(event.client, at, stored)
                evidence = {client.remote_id: {event.wedding.event_date}} if (
                    event.wedding is not None and event.wedding.event_date) else None
                created, updated, _ = self.hub.sync.upsert(c, row.vendor_id, row.connection_id, "contacts",
                                                           [client], evidence=evidence, stats=stats)
                c.execute(update(_CLIENTS).where(_CLIENTS.c.connection_id == row.connection_id,
                                                 _CLIENTS.c.remote_id == client.remote_id)
                          .values(field_times=times))
                result = "created" if created else "updated" if updated else result
            if event.wedding is not None:
                wedding = dataclasses.replace(event.wedding,
                                              remote_modified_at=event.wedding.remote_modified_at or at)
                (wedding,) = self._same_projects(c, row.connection_id, [wedding])
                created, updated, _ = self.hub.sync.upsert(c, row.vendor_id, row.connection_id, "jobs", [wedding])
                if result == "unchanged":
                    result = "created" if created else "updated" if updated else result
        return f"{result}{' (merged)' if stats.merged else ''}"


#: The fields a Zapier-style hook may carry for a client, each ordered on its own (see ``ingest_zap``).
HOOK_FIELDS = (*CLIENT_FIELDS, "remote_created_at")


def _order_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def merge_hook_client(client: ClientRecord, at: datetime, stored: Any) -> tuple[ClientRecord, dict[str, str]]:
    """The client a hook of time ``at`` leaves, and its per-field times (``Client.field_times``).

    Each field (and each custom field, as ``custom.<key>``) the hook carries replaces the stored one when the
    hook is newer than that value's own time; a field the hook does not carry keeps its value and time. A
    stored record without per-field times was last written whole: every field of it, even an empty one, is as
    of its ``remote_modified_at``. Two values of the same time: the larger (as JSON) wins, so that too does not
    depend on the order. The record's ``remote_modified_at`` is the newest hook's, so the engine's whole-record
    staleness check never drops what this merge kept."""
    stamp = at.isoformat()
    if stored is None:
        times = {f: stamp for f in HOOK_FIELDS if getattr(client, f) is not None}
        times.update({f"custom.{k}": stamp for k in client.custom_fields})
        return dataclasses.replace(client, remote_modified_at=at), times
    whole = stored.remote_modified_at.isoformat() if stored.remote_modified_at is not None else None
    known: dict[str, Any] = stored.field_times if isinstance(stored.field_times, dict) else {}

    def time_of(name: str) -> datetime | None:
        t = known.get(name) if stored.field_times is not None else whole
        return datetime.fromisoformat(t) if isinstance(t, str) else None

    def newer(name: str, new: Any, old: Any) -> bool:
        t = time_of(name)
        return t is None or at > t or (at == t and _order_key(new) > _order_key(old))

    kept: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name in HOOK_FIELDS:
        new, old = getattr(client, name), getattr(stored, name)
        if new is not None and newer(name, new, old):
            values[name], kept[name] = new, stamp
        else:
            values[name] = old
            if (t := time_of(name)) is not None:
                kept[name] = t.isoformat()
    custom = dict(stored.custom_fields or {})
    for key in dict.fromkeys([*custom, *client.custom_fields]):
        name = f"custom.{key}"
        if key in client.custom_fields and newer(name, client.custom_fields[key], custom.get(key)):
            custom[key], kept[name] = client.custom_fields[key], stamp
        elif (t := time_of(name)) is not None:
            kept[name] = t.isoformat()
    modified = max(at, stored.remote_modified_at) if stored.remote_modified_at is not None else at
    return dataclasses.replace(client, **values, custom_fields=custom, remote_modified_at=modified), kept


async def _handle_zap(hub: Any, row: Any) -> str:
    try:
        return await asyncio.to_thread(hub.crm.ingest_zap, row)
    except InvalidInput as exc:
        raise ValueError(f"{exc.code}: {exc.message}") from None  # the drain parks it as malformed


WEBHOOK_HANDLERS: dict[str, Any] = {p: _handle_zap for p in CSV_PROVIDERS}


def _counted(items: Iterable[Any], tick: Callable[[], None]) -> Iterator[Any]:
    for item in items:
        tick()
        yield item


_NO_ROW = object()


def _raising(exc: BaseException) -> Iterator[Any]:
    raise exc
    yield  # a generator: raises when the next chunk reads it


class ImportSteps(Protocol):
    """The durable steps of a CSV import (DBOS steps in production, plain calls in tests and tools)."""

    async def begin(self, job_id: str) -> dict[str, Any]: ...
    async def chunk(self, plan: dict[str, Any], chunk: int) -> dict[str, Any]: ...
    async def finish(self, job_id: str, error: str | None) -> dict[str, Any]: ...


async def drive_import(job_id: str, steps: ImportSteps) -> dict[str, Any]:
    """The shape of an import: chunks in order until a short one. A file-level problem found mid-way (the
    parser raises ``CsvFileError``) ends the job as failed with its reason; the chunks before it stay
    imported and reported, so no file is ever half-imported without a report."""
    plan = await steps.begin(job_id)
    if plan["status"] not in ("queued", "running"):
        return await steps.finish(job_id, None)
    chunk = 0
    try:
        while True:
            r = await steps.chunk(plan, chunk)
            if r["last"]:
                break
            chunk += 1
    except InvalidInput as exc:
        return await steps.finish(job_id, f"{exc.code}: {exc.message} (after {chunk} chunks)")
    return await steps.finish(job_id, None)


class DirectImportSteps:
    def __init__(self, crm: CrmService) -> None:
        self.crm = crm

    async def begin(self, job_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.crm.begin_import, job_id)

    async def chunk(self, plan: dict[str, Any], chunk: int) -> dict[str, Any]:
        return await asyncio.to_thread(self.crm.import_chunk, plan, chunk)

    async def finish(self, job_id: str, error: str | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.crm.finish_import, job_id, error)
