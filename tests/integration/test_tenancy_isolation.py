"""Walk every route of the OpenAPI schema with vendor A's key against vendor B's data."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select

from tests.conftest import auth
from wedsync.domain.crm import ClientRecord, WeddingRecord
from wedsync.store import tables as t

SANDBOX_BASE = "http://127.0.0.1:9/vsco-workspace/api/v2"  # never contacted by these tests


def _seed_vendor(hub: Any, name: str) -> dict[str, str]:
    v = hub.tenancy.create_vendor(name)
    key_row, key = hub.tenancy.create_key(v.id)
    conn = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": f"{name}-provider-key"},
                                  base_url=SANDBOX_BASE)
    with hub.db.session() as s:
        hub.sync.upsert(s, v.id, conn.id, "contacts",
                        [ClientRecord(remote_id=f"{name}-c1", first_name=name, email=f"{name}@example.com")])
        hub.sync.upsert(s, v.id, conn.id, "jobs", [WeddingRecord(remote_id=f"{name}-j1", name=f"{name} wedding")])
        s.add(t.HookSubscription(vendor_id=v.id, connection_id=conn.id, remote_id=f"{name}-hook",
                                 event="contact.created", target_url="http://x"))
    run = hub.sync.create_run(v.id, conn.id, "full")
    with hub.db.read() as s:
        client_id = s.execute(select(t.Client.id).where(t.Client.vendor_id == v.id)).scalar_one()
        wedding_id = s.execute(select(t.Wedding.id).where(t.Wedding.vendor_id == v.id)).scalar_one()
    return {"vendor_id": v.id, "key": key, "key_id": key_row.id, "connection_id": conn.id, "run_id": run.id,
            "client_id": client_id, "wedding_id": wedding_id, "name": name}


def _snapshot(hub: Any, vendor_id: str) -> list[Any]:
    out: list[Any] = []
    with hub.db.read() as s:
        for model in (t.Vendor, t.ApiKey, t.Connection, t.Credential, t.Client, t.Wedding, t.SyncRun,
                      t.HookSubscription, t.SyncCursor):
            col = model.id if model is t.Vendor else model.vendor_id  # type: ignore[attr-defined]
            for row in s.execute(select(model).where(col == vendor_id)).scalars():
                out.append((model.__tablename__, {c.name: repr(getattr(row, c.key)) for c in model.__mapper__.columns}))
    return sorted(out, key=lambda x: json.dumps(x, sort_keys=True))


def _body_for(op: dict[str, Any], b: dict[str, str]) -> Any:
    if "requestBody" not in op:
        return None
    ref = json.dumps(op["requestBody"])
    if "ConnectionIn" in ref:
        return {"provider": "vsco-workspace", "base_url": SANDBOX_BASE, "credentials": {"api_key": "x"}}
    if "VendorIn" in ref:
        return {"name": "Sneaky"}
    if "KeyIn" in ref:
        return {"name": "sneaky"}
    if "SyncIn" in ref:
        return {"mode": "full"}
    return {}


async def test_vendor_a_cannot_touch_vendor_b(api, hub) -> None:  # type: ignore[no-untyped-def]
    a = _seed_vendor(hub, "alpha")
    b = _seed_vendor(hub, "bravo")
    before = _snapshot(hub, b["vendor_id"])
    schema = (await api.get("/openapi.json")).json()
    b_markers = [b["vendor_id"], b["connection_id"], b["client_id"], b["wedding_id"], b["run_id"], "bravo"]
    visited = 0
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            params = re.findall(r"{(\w+)}", path)
            url = path
            for p in params:
                value = {"connection_id": b["connection_id"], "run_id": b["run_id"], "key_id": b["key_id"],
                         "provider": "vsco-workspace"}.get(p, b["connection_id"])
                url = url.replace("{" + p + "}", value)
            body = _body_for(op, b)
            # Vendor A's key, and also A's key naming B in the operator header (must not help).
            for headers in (auth(a["key"]), {**auth(a["key"]), "X-WedSync-Vendor": b["vendor_id"]}):
                resp = await api.request(method.upper(), url, headers=headers,
                                         json=body if body is not None else None)
                visited += 1
                assert resp.status_code < 500, (method, path, resp.status_code, resp.text)
                text = resp.text
                for marker in b_markers:
                    assert marker not in text, (method, path, marker, text[:300])
                if any(p in ("connection_id", "run_id", "key_id") for p in params):
                    assert resp.status_code in (401, 403, 404), (method, path, resp.status_code)
                if path in ("/api/vendors",):
                    assert resp.status_code == 403
    assert visited > 20
    assert _snapshot(hub, b["vendor_id"]) == before


async def test_every_api_route_needs_a_key(api) -> None:  # type: ignore[no-untyped-def]
    schema = (await api.get("/openapi.json")).json()
    n = 0
    for path, methods in schema["paths"].items():
        if not path.startswith("/api"):
            continue
        for method in methods:
            url = re.sub(r"{\w+}", "01h35ccwymj5ctckp8px1azhg6", path)
            for headers in ({}, {"Authorization": "Bearer wsk_nope_nope"}, {"X-API-Key": "garbage"}):
                resp = await api.request(method.upper(), url, headers=headers)
                assert resp.status_code == 401, (method, path, resp.status_code)
                assert resp.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
                n += 1
    assert n > 30


async def test_scopes_enforced(api, hub) -> None:  # type: ignore[no-untyped-def]
    v = hub.tenancy.create_vendor("Scoped")
    _, ro = hub.tenancy.create_key(v.id, scopes=["read"])
    assert (await api.get("/api/connections", headers=auth(ro))).status_code == 200
    r = await api.post("/api/connections", headers=auth(ro),
                       json={"provider": "vsco-workspace", "credentials": {"api_key": "k"}})
    assert r.status_code == 403 and r.json()["error"]["code"] == "missing_scope"
    assert (await api.get("/api/keys", headers=auth(ro))).status_code == 403
