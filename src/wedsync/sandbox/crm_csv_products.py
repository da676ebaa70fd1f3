"""Emulators of CRM products without a public API (HoneyBook, 17hats, Studio Ninja, Iris Works): their Zaps and files.

What such a product really offers, and so what each emulator serves under its prefix (``/honeybook``, ...):

    GET  {prefix}/export/contacts.csv[?encoding=utf-8|utf-8-sig|utf-16|cp1252]   the product's contacts export
    POST {prefix}/import/contacts.csv                                            the product's CSV import
    (HoneyBook only) POST {prefix}/hooks/catch/{account}/{hook}/                 the vendor's "Create Project" Zap

and, through the admin ``mutate`` endpoint, the product's Zap triggers firing at a hub URL:

    {"zap": {"url": "https://hub/webhooks/honeybook/<conn>", "secret": "...", "auth": "header"|"token"}}
    {"create": N}      N new clients: one "Client Created" hook each
    {"book": M}        M projects booked for clients without one: one "New Project Booked" hook each
    {"replay": true}   a hook for every client and booked project (duplicates and reordering come from the
                       emulator's FaultConfig: ``webhook_duplicate_rate``, ``webhook_reorder``)

``seed`` takes ``{"contacts": N, "overlap_with_vsco": K, "vsco_seed", "vsco_contacts", "vsco_jobs"}``: K of the
N clients are couples of the VSCO Workspace emulator seeded with those parameters (its defaults: the sandbox
seed, 200 contacts, 80 jobs), with the wedding on the same date and the kind of variation a second system
introduces (another phone format, e-mail case, a typo, first and last name swapped). The ``overlap`` ground-truth
collection says which client is which VSCO contact and how it was varied.

The CSV files are written here by the emulator's own code (the product's column layout from ``csv_layouts``,
its own date and phone conventions), not by the hub's exporter, so a parse of them tests the hub's reader.
The column layouts and hook field names are our best reconstruction: no product publishes them.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import phonenumbers
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Scope

from wedsync.connectors.channels.csv_layouts import LAYOUTS, CsvLayout
from wedsync.connectors.webhooks import ZapierScheme
from wedsync.sandbox.data import REFERENCE_NOW, Person, SyntheticFactory, generate_dataset
from wedsync.sandbox.faults import FaultInjector
from wedsync.sandbox.hooks import WebhookDispatcher
from wedsync.sandbox.store import Collection

__all__ = ["PRODUCTS", "ProductProfile", "ZapierProductEmulator"]

VARIATIONS = ("phone_format", "email_case", "typo", "swapped_names", "exact")
_STAGES = ("Inquiry", "Proposal Sent", "Booked", "Completed")


@dataclass(frozen=True)
class ProductProfile:
    slug: str
    prefix: str
    layout: CsvLayout
    salt: int  # separates the product's own clients from other emulators' for one sandbox seed
    new_id: Callable[[random.Random], str]
    client_hook: Callable[[dict[str, Any]], dict[str, Any]]
    project_hook: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(value: str | None, fmt: str) -> str | None:
    return date.fromisoformat(value).strftime(fmt) if value else None


def _hb_client(c: dict[str, Any]) -> dict[str, Any]:
    return {"event": "client.created", "event_id": f"hb-client-{c['id']}", "client_id": c["id"],
            "first_name": c["first_name"], "last_name": c["last_name"], "email": c["email"],
            "phone_number": c["phone"], "company_name": c["company"], "address": c["street"],
            "lead_source": c["lead_source"], "created_at": _iso(c["created"])}


def _hb_project(p: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
    return {"event": "project.booked", "event_id": f"hb-project-{p['id']}", "project_id": p["id"],
            "project_name": p["name"], "project_type": p["type"], "project_date": p["date"],
            "project_location": p["venue"], "guest_count": p["guests"], "booked_at": _iso(p["booked_at"]),
            "client_id": c["id"], "client_first_name": c["first_name"], "client_last_name": c["last_name"],
            "client_email": c["email"], "client_phone": c["phone"], "lead_source": c["lead_source"],
            **({"wedsync_reference": p["wedsync_reference"]} if p.get("wedsync_reference") else {})}


def _17h_client(c: dict[str, Any]) -> dict[str, Any]:
    return {"event": "new_contact", "event_id": f"17h-contact-{c['id']}", "contact_id": c["id"],
            "first_name": c["first_name"], "last_name": c["last_name"], "email": c["email"], "phone": c["phone"],
            "company": c["company"], "street": c["street"], "city": c["city"], "state": c["state"],
            "zip": c["postal_code"], "country": c["country"], "lead_source": c["lead_source"],
            "created_on": datetime.fromtimestamp(c["created"], UTC).strftime("%m/%d/%Y %I:%M %p")}


def _17h_project(p: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
    return {"event": "project_booked", "event_id": f"17h-project-{p['id']}", "project_id": p["id"],
            "project_name": p["name"], "event_date": _day(p["date"], "%m/%d/%Y"), "status": p["stage"],
            "contact_id": c["id"], "contact_first_name": c["first_name"], "contact_last_name": c["last_name"],
            "contact_email": c["email"], "contact_phone": c["phone"], "booked_at": _iso(p["booked_at"])}


def _sn_client(c: dict[str, Any]) -> dict[str, Any]:
    return {"event": "client_created", "event_id": f"sn-client-{c['id']}", "client_id": c["id"],
            "client_name": f"{c['first_name']} {c['last_name']}".strip(), "client_email": c["email"],
            "client_mobile": c["phone"], "lead_source": c["lead_source"],
            "date_added": datetime.fromtimestamp(c["created"], UTC).strftime("%d/%m/%Y %H:%M")}


def _sn_project(p: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
    return {"event": "job_booked", "event_id": f"sn-job-{p['id']}", "job_id": p["id"], "job_name": p["name"],
            "job_date": _day(p["date"], "%d/%m/%Y"), "job_type": p["type"], "job_status": p["stage"],
            "client_id": c["id"], "client_name": f"{c['first_name']} {c['last_name']}".strip(),
            "client_email": c["email"], "client_mobile": c["phone"], "booked_at": _iso(p["booked_at"])}


def _iw_client(c: dict[str, Any]) -> dict[str, Any]:
    return {"event": "contact.created", "event_id": f"iw-contact-{c['id']}", "contact_id": c["id"],
            "first_name": c["first_name"], "last_name": c["last_name"], "primary_email": c["email"],
            "primary_phone": c["phone"], "referral_source": c["lead_source"], "created": _iso(c["created"])}


def _iw_project(p: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
    return {"event": "job.booked", "event_id": f"iw-job-{p['id']}", "job_id": p["id"], "job_name": p["name"],
            "event_date": p["date"], "job_type": p["type"], "venue": p["venue"], "guest_count": p["guests"],
            "contact_id": c["id"], "first_name": c["first_name"], "last_name": c["last_name"],
            "primary_email": c["email"], "primary_phone": c["phone"], "booked_at": _iso(p["booked_at"])}


PRODUCTS: dict[str, ProductProfile] = {
    "honeybook": ProductProfile("honeybook", "/honeybook", LAYOUTS["honeybook"], 0x4B,
                                lambda rng: f"{rng.getrandbits(96):024x}", _hb_client, _hb_project),
    "17hats": ProductProfile("17hats", "/17hats", LAYOUTS["17hats"], 0x17,
                             lambda rng: str(rng.randint(1_000_000, 9_999_999)), _17h_client, _17h_project),
    "studio-ninja": ProductProfile("studio-ninja", "/studio-ninja", LAYOUTS["studio-ninja"], 0x5A,
                                   lambda rng: str(rng.randint(100_000, 999_999)), _sn_client, _sn_project),
    "iris-works": ProductProfile("iris-works", "/iris-works", LAYOUTS["iris-works"], 0x1F,
                                 lambda rng: str(rng.randint(10_000, 99_999)), _iw_client, _iw_project),
}


def _typo(name: str, rng: random.Random) -> str:
    """One slip of the keyboard: two neighbouring letters swapped, or one dropped (names of 4+ letters)."""
    if len(name) < 4:
        return name + name[-1]
    i = rng.randrange(1, len(name) - 2)
    if rng.random() < 0.5 and name[i] != name[i + 1]:
        return name[:i] + name[i + 1] + name[i] + name[i + 2:]
    return name[:i] + name[i + 1:]


def _typed_phone(e164: str | None, region: str, style: int) -> str | None:
    """The same number as a person might type it into another system."""
    if not e164:
        return None
    number = phonenumbers.parse(e164, None)
    home = phonenumbers.region_code_for_number(number) == region
    if style == 0:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if style == 1:
        digits = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        return "".join(ch for ch in digits if ch.isdigit()) if home else e164
    if style == 2:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.RFC3966).removeprefix("tel:")
    return phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.NATIONAL if home else phonenumbers.PhoneNumberFormat.INTERNATIONAL)


class ZapierProductEmulator:
    """One product: its clients and projects (ground truth), its CSV export/import, its Zap triggers."""

    def __init__(self, profile: ProductProfile, *, seed: int = 42, contacts: int = 60, overlap_with_vsco: int = 0,
                 vsco_contacts: int = 200, vsco_jobs: int = 80) -> None:
        self.profile = profile
        self.slug = profile.slug
        self.prefix = profile.prefix
        self.faults = FaultInjector()
        self.webhooks = WebhookDispatcher(self.faults)
        self.contacts = Collection("contacts")
        self.projects = Collection("projects")
        self.overlap = Collection("overlap")
        self.imports = Collection("imports")
        self.zaps: list[dict[str, str]] = []
        self._initial = {"seed": seed, "contacts": contacts, "overlap_with_vsco": overlap_with_vsco,
                         "vsco_seed": seed, "vsco_contacts": vsco_contacts, "vsco_jobs": vsco_jobs}
        self._rng = random.Random(seed)
        self._factory = SyntheticFactory(seed ^ profile.salt)
        self.api = self._build_api()
        self.seed(self._initial)

    # --- Emulator protocol ---------------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        return self.api

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        return json.dumps({"status": "error", "message": detail}).encode()

    def quota_key(self, scope: Scope) -> str | None:
        return None

    def collections(self) -> list[str]:
        return ["contacts", "projects", "overlap", "imports"]

    def _collection(self, name: str) -> Collection:
        return {"contacts": self.contacts, "projects": self.projects, "overlap": self.overlap,
                "imports": self.imports}[name]

    def iter_records(self, collection: str, base_url: str, offset: int, limit: int | None) -> Iterator[bytes]:
        return self._collection(collection).iter_blobs(base_url.encode(), offset, limit)

    def reset(self) -> dict[str, Any]:
        self.zaps.clear()
        self.webhooks.clear()
        self.imports.clear()
        return self.seed(self._initial)

    def seed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        values = {key: int(params.get(key, default)) for key, default in self._initial.items()}
        if "seed" in params and "vsco_seed" not in params:
            values["vsco_seed"] = values["seed"]
        if min(values.values()) < 0 or values["overlap_with_vsco"] > values["contacts"]:
            raise ValueError("counts must be >= 0 and overlap_with_vsco <= contacts")
        seed = values["seed"]
        self._rng = random.Random(seed ^ self.profile.salt)
        self._factory = SyntheticFactory(seed ^ (self.profile.salt << 8))
        for collection in (self.contacts, self.projects, self.overlap):
            collection.clear()
        overlap = self._overlap(values)
        for _ in range(values["contacts"] - len(overlap)):
            person = self._factory.person(0, self._created())
            client = self._client_from(person)
            self.contacts.put(client)
            if self._rng.random() < 0.6:
                self._book(client, None)
        return {"seed": seed, "contacts": len(self.contacts), "projects": len(self.projects),
                "overlap": len(self.overlap)}

    async def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        zap = params.get("zap")
        if zap is not None:
            if not isinstance(zap, Mapping) or not zap.get("url") or not zap.get("secret"):
                raise ValueError("zap needs url and secret")
            auth = str(zap.get("auth") or "header")
            if auth not in ("header", "token"):
                raise ValueError("zap auth is header or token")
            self.zaps = [{"url": str(zap["url"]), "secret": str(zap["secret"]), "auth": auth}]
            out["zap"] = {"url": self.zaps[0]["url"], "auth": auth}
        if isinstance(params.get("catch_hook"), Mapping):
            self._configure_catch_hook(params["catch_hook"])
            out["catch_hook"] = "configured"
        created, booked = [], []
        for _ in range(int(params.get("create", 0))):
            client = self._client_from(self._factory.person(0, int(time.time())))
            self.contacts.put(client)
            self._fire(self.profile.client_hook(client))
            created.append(client["id"])
        if int(params.get("book", 0)):
            have = {p["contact_id"] for p in self.projects.records.values()}
            free = [c for cid, c in sorted(self.contacts.records.items()) if cid not in have]
            for client in free[: int(params["book"])]:
                project = self._book(client, int(time.time()))
                self._fire(self.profile.project_hook(project, client))
                booked.append(project["id"])
        if params.get("replay"):
            for client in list(self.contacts.records.values()):
                self._fire(self.profile.client_hook(client))
            for project in list(self.projects.records.values()):
                self._fire(self.profile.project_hook(project, self.contacts.records[project["contact_id"]]))
            out["replayed"] = len(self.contacts) + len(self.projects)
        out.update(created=created, booked=booked)
        return out

    def _configure_catch_hook(self, options: Mapping[str, Any]) -> None:
        raise ValueError(f"{self.slug} has no catch hook")

    # --- data ----------------------------------------------------------------------------------------------

    def _created(self) -> int:
        return int(REFERENCE_NOW.timestamp()) - self._rng.randrange(20, 900) * 86_400

    def _client_from(self, person: Person, **changes: Any) -> dict[str, Any]:
        phone = person.cell_phone or person.home_phone
        typed = phone.formatted if phone else None
        layout = self.profile.layout
        if phone and phone.country != layout.default_region and "country" not in layout.fields():
            # a studio records a foreign client's number with its country code when its file has no country
            typed = _typed_phone(phone.e164, layout.default_region, 0)
        record = {
            "id": self.profile.new_id(self._rng), "first_name": person.first_name, "last_name": person.last_name,
            "email": person.email, "phone": typed,
            "company": None, "street": person.address.street, "city": person.address.city,
            "state": person.address.state, "postal_code": person.address.postal_code,
            "country": person.address.country, "created": person.created,
            "lead_source": self._rng.choice(("Instagram", "Google", "Referral", "The Knot", "Website", None)),
        }
        record.update(changes)
        return record

    def _book(self, client: dict[str, Any], booked_at: int | None, *, day: date | None = None,
              reference: str | None = None, name: str | None = None, kind: str | None = None,
              venue: str | None = None, guests: int | None = None) -> dict[str, Any]:
        rng = self._rng
        when = day or date.fromordinal(REFERENCE_NOW.date().toordinal() + rng.randrange(-300, 500))
        project = {
            "id": self.profile.new_id(rng), "contact_id": client["id"],
            "name": name or f"{client['first_name']} {client['last_name']} Wedding".strip(),
            "date": when.isoformat(), "type": kind or rng.choice(("Wedding", "Wedding", "Elopement", "Engagement")),
            "stage": "Booked" if booked_at is not None or rng.random() < 0.7 else rng.choice(_STAGES),
            "venue": venue or rng.choice(("The Glasshouse", "Villa Balbiano", "Rosewood Barn", "Château de Varenne",
                                          "Harbour View Loft", None)),
            "guests": guests if guests is not None else rng.choice((None, 40, 80, 120, 150, 220)),
            "booked_at": booked_at or client["created"] + rng.randrange(1, 60) * 86_400,
            "wedsync_reference": reference,
        }
        self.projects.put(project)
        return project

    def _overlap(self, values: Mapping[str, int]) -> list[dict[str, Any]]:
        k = values["overlap_with_vsco"]
        if not k:
            return []
        data = generate_dataset(values["vsco_seed"], values["vsco_contacts"], values["vsco_jobs"])
        booked = [w for w in data.weddings]
        out = []
        for index in range(min(k, len(booked))):
            wedding = booked[index]
            person = data.people[wedding.partners[index % 2]]
            variation = VARIATIONS[index % len(VARIATIONS)]
            phone = person.cell_phone or person.home_phone
            changes: dict[str, Any] = {"created": person.created}
            region = self.profile.layout.default_region
            if variation == "phone_format" and phone:
                changes["phone"] = _typed_phone(phone.e164, region, index % 4)
            elif variation == "email_case":
                local, _, domain = person.email.partition("@")
                changes["email"] = f"{local[:1].upper()}{local[1:]}@{domain.upper()}"
            elif variation == "typo":
                changes["first_name"] = _typo(person.first_name, self._rng)
            elif variation == "swapped_names":
                changes["first_name"], changes["last_name"] = person.last_name, person.first_name
            client = self._client_from(person, **changes)
            self.contacts.put(client)
            partner = data.people[wedding.partners[(index + 1) % 2]]
            self._book(client, None, day=wedding.event_date, name=f"{person.first_name} & {partner.first_name}",
                       kind=wedding.job_type, venue=wedding.venue, guests=wedding.guest_count)
            record = {"id": client["id"], "vsco_contact_id": person.id, "vsco_job_id": wedding.id,
                      "variation": variation, "event_date": wedding.event_date.isoformat()}
            self.overlap.put(record)
            out.append(record)
        return out

    # --- hooks ---------------------------------------------------------------------------------------------

    def _fire(self, payload: dict[str, Any]) -> None:
        body = json.dumps({k: v for k, v in payload.items() if v is not None}).encode()
        for zap in self.zaps:
            if zap["auth"] == "header":
                self.webhooks.send(zap["url"], body, ZapierScheme.sign(body, zap["secret"]))
            else:
                self.webhooks.send(ZapierScheme.hook_url(zap["url"], zap["secret"]), body)

    # --- files ---------------------------------------------------------------------------------------------

    def export_rows(self) -> Iterator[list[str]]:
        """The product's contacts export: one row per project, and one for each client without a project."""
        layout = self.profile.layout
        by_contact: dict[str, list[dict[str, Any]]] = {}
        for booked in self.projects.records.values():
            by_contact.setdefault(booked["contact_id"], []).append(booked)
        for cid, client in sorted(self.contacts.records.items()):
            projects: list[dict[str, Any] | None] = [*sorted(by_contact.get(cid, []), key=lambda p: p["id"])]
            for project in projects or [None]:
                yield [self._cell(layout, canonical, client, project) for _, canonical in layout.columns]

    def _cell(self, layout: CsvLayout, canonical: str, c: dict[str, Any], p: dict[str, Any] | None) -> str:
        value: Any = None
        if canonical == "remote_id":
            value = c["id"]
        elif canonical == "full_name":
            value = f"{c['first_name']} {c['last_name']}".strip()
        elif canonical in ("first_name", "last_name", "email", "phone", "company", "city", "state",
                           "postal_code", "country", "lead_source"):
            value = c[canonical]
        elif canonical == "street":
            value = c["street"]
        elif canonical == "created":
            value = datetime.fromtimestamp(c["created"], UTC).strftime(layout.datetime_format)
        elif p is not None:
            value = {"project_id": p["id"], "project_name": p["name"], "project_type": p["type"],
                     "stage": p["stage"], "venue": p["venue"], "guest_count": p["guests"],
                     "project_date": _day(p["date"], layout.date_format)}.get(canonical)
        return "" if value is None else str(value)

    def export_csv(self, encoding: str = "utf-8") -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(self.profile.layout.headers)
        writer.writerows(self.export_rows())
        text = buffer.getvalue()
        if encoding == "utf-16":
            return text.encode("utf-16")
        if encoding == "cp1252":
            return text.encode("cp1252", errors="replace")
        return text.encode("utf-8-sig" if encoding == "utf-8-sig" else "utf-8")

    def import_csv(self, data: bytes) -> dict[str, Any]:
        """The product's own importer: needs its header, takes rows with a name or e-mail, reports the rest."""
        text = data.decode("utf-8-sig", errors="replace")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        headers = reader.fieldnames or []
        missing = [h for h in self.profile.layout.headers if h not in headers]
        if missing:
            return {"imported": 0, "errors": [f"missing columns: {missing}"]}
        by_field = {canonical: header for header, canonical in self.profile.layout.columns}
        imported, errors = 0, []
        for line, row in enumerate(reader, start=2):
            email = row.get(by_field.get("email", ""), "")
            name = " ".join(row.get(by_field[f], "") for f in ("first_name", "last_name", "full_name")
                            if f in by_field).strip()
            if not email and not name:
                errors.append(f"line {line}: a contact needs a name or an e-mail")
                continue
            imported += 1
            self.imports.put({"id": f"{len(self.imports) + 1:06d}", "line": line, "row": dict(row)})
        return {"imported": imported, "errors": errors}

    # --- HTTP ----------------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        api = FastAPI(title=f"{self.slug} (WedSync sandbox)", docs_url=None, redoc_url=None, openapi_url=None)
        emulator = self

        @api.get("/export/contacts.csv")
        async def export(encoding: str = "utf-8") -> Response:
            if encoding not in ("utf-8", "utf-8-sig", "utf-16", "cp1252"):
                return JSONResponse({"status": "error", "message": "unknown encoding"}, 400)
            charset = {"utf-8-sig": "utf-8"}.get(encoding, encoding)
            return Response(emulator.export_csv(encoding), media_type=f"text/csv; charset={charset}", headers={
                "content-disposition": f'attachment; filename="{emulator.slug}-contacts.csv"'})

        @api.post("/import/contacts.csv")
        async def import_(request: Request) -> Response:
            result = emulator.import_csv(await request.body())
            return JSONResponse(result, 200 if result["imported"] or not result["errors"] else 422)

        self._extra_routes(api)
        return api

    def _extra_routes(self, api: FastAPI) -> None:
        return None


def new_request_id() -> str:
    return str(uuid.uuid4())
