"""The OpenAPI document describes what the API really answers: every GET route's response is a declared schema
(its keys listed, no others allowed; a list's items too), and the real answers of every GET route, for a vendor
with objects in every capability, validate against the published schema (formats included), so the two cannot
drift apart. Write routes are held to the same rule: a 2xx JSON body publishes its keys (their real answers are
checked by the routes' own tests, where ``WEDSYNC_STRICT_RESPONSES=1`` makes an answer its model does not
describe a 500), save the exceptions named below with their reason."""

from __future__ import annotations

import itertools
import json
import re
from datetime import timedelta
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import auth
from tests.integration.tenancy_seed import seed_vendor
from tests.integration.test_tenancy_isolation import PATH_IDS
from wedsync.connectors.webhooks import ZapierScheme

# GET routes no request of this test can answer with a 2xx, and where they are covered instead.
NO_SUCCESS_HERE = {
    "/oauth/{provider}/callback": "needs a provider's redirect with a live state (test_oauth.py)",
}
OPERATOR_ROUTES = {"/api/vendors"}

# Write responses ("METHOD path status") that do not publish a JSON object with its keys listed, and why (none
# today: a 204 has no body by the rule itself, and a text/plain alternative, such as the webhook intake's
# validation token, is not JSON).
WRITE_EXCEPTIONS: dict[str, str] = {}


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource("urn:openapi", Resource.from_contents(
        spec, default_specification=DRAFT202012))
    rooted = json.loads(json.dumps(schema).replace('"#/components', '"urn:openapi#/components'))
    return Draft202012Validator(rooted, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _declared(spec: dict[str, Any], node: dict[str, Any]) -> bool:
    """An object whose keys are listed and closed, a list of such objects, or a text/binary body."""
    node = _resolve(spec, node)
    if node.get("type") == "string":
        return True
    if node.get("type") == "array":
        return _declared(spec, node.get("items", {}))
    return bool(node.get("properties")) and node.get("additionalProperties") is False


def _json_schema(op: dict[str, Any], status: str) -> dict[str, Any] | None:
    content = op["responses"].get(status, {}).get("content", {})
    return content.get("application/json", {}).get("schema")


async def test_every_get_route_publishes_the_schema_of_what_it_answers(api, hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    hub.settings.oauth_clients.setdefault("google-calendar", {"client_id": "qa-client", "client_secret": "qa-secret",
                                                              "base_url": "http://127.0.0.1:9"})
    o = await seed_vendor(api, hub, "schema", sandbox, 40)
    _, op_key = hub.tenancy.create_key(None, operator=True)
    # a webhook event, so that the inbox's list has an item to check
    hb = hub.connections.get(o["vendor_id"], o["hb_connection_id"])
    zap = json.dumps({"event": "Client Created", "first_name": "Zoe", "last_name": "Quinn",
                      "email": "zoe.quinn@example.com"}).encode()
    r = await api.post(f"/webhooks/honeybook/{hb.id}", content=zap, headers={
        **ZapierScheme.sign(zap, str(hub.connections.credentials(hb)["webhook_secret"])),
        "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    spec = (await api.get("/openapi.json")).json()
    # the intake answers without FastAPI's response validation (``WebhookFastPath``): its answer is checked here
    intake = _json_schema(spec["paths"]["/webhooks/{provider}/{connection_id}"]["post"], "200")
    assert intake is not None and _declared(spec, intake)
    assert not list(_validator(spec, intake).iter_errors(r.json())), r.json()
    day = o["calendar_day"]
    window = {"start": day.isoformat(), "end": (day + timedelta(days=7)).isoformat()}
    queries: dict[str, list[dict[str, str]]] = {
        "/api/calendar/availability": [window, {**window, "include_busy": "false"}],
        "/api/calendar/conflicts": [window], "/api/calendar/report": [window],
        "/api/crm/export": [{"layout": "honeybook"}], "/oauth/{provider}/start": [{"format": "json"}],
        "/api/crm/conflicts": [{"status": "all"}], "/api/payments/escrow": [{}, {"bookingRef": o["booking_ref"]}],
    }
    loose: list[str] = []
    problems: list[Any] = []
    ok_routes: set[str] = set()
    filled_lists: set[str] = set()
    checked = 0
    for path, ops in spec["paths"].items():
        op = ops.get("get")
        if op is None:
            continue
        for status in op["responses"]:
            schema = _json_schema(op, status)
            if status.startswith("2") and schema is not None and not _declared(spec, schema):
                loose.append(f"GET {path} {status}")
            elif status.startswith("2") and schema is not None:
                props = _resolve(spec, schema).get("properties", {})
                if "next_cursor" in props and not _declared(spec, props["items"].get("items", {})):
                    loose.append(f"GET {path} {status} items")
        params = [p for p in re.findall(r"{(\w+)}", path) if p != "provider"]
        choices = [[(p, name) for name in PATH_IDS[p]] for p in params]
        headers = auth(op_key) if path in OPERATOR_ROUTES else auth(o["key"])
        for combo, query in itertools.product(itertools.product(*choices), queries.get(path, [{}])):
            url = path.replace("{provider}", "google-calendar")
            for p, name in combo:
                url = url.replace("{" + p + "}", str(o[name]))
            resp = await api.get(url, headers=headers, params=query)
            if not 200 <= resp.status_code < 300:
                continue
            ok_routes.add(path)
            schema = _json_schema(op, str(resp.status_code))
            ctype = resp.headers.get("content-type", "").split(";")[0]
            if ctype != "application/json":
                if ctype not in op["responses"][str(resp.status_code)].get("content", {}):
                    problems.append((url, "undocumented content type", ctype))
                continue
            if schema is None:
                problems.append((url, resp.status_code, "no published schema"))
                continue
            body = resp.json()
            checked += 1
            errors = sorted(_validator(spec, schema).iter_errors(body), key=lambda e: list(e.absolute_path))
            if errors:
                problems.append((url, query, [(list(e.absolute_path), e.message[:200]) for e in errors[:3]]))
            if isinstance(body, dict) and body.get("items"):
                filled_lists.add(path)
    assert not loose, "GET responses published without their keys:\n" + "\n".join(loose)
    assert not problems, f"{len(problems)} answers differ from their schema:\n" + "\n".join(map(repr, problems))
    gets = {p for p, ops in spec["paths"].items() if "get" in ops}
    assert gets - ok_routes == set(NO_SUCCESS_HERE), sorted(gets - ok_routes)
    lists = {p for p, ops in spec["paths"].items() if "get" in ops and
             "items" in _resolve(spec, _json_schema(ops["get"], "200") or {}).get("properties", {})}
    assert lists - filled_lists == set(), sorted(lists - filled_lists)  # every list's items were checked too
    assert checked > 60, checked


async def test_every_write_route_publishes_the_keys_of_what_it_answers(api) -> None:  # type: ignore[no-untyped-def]
    """A POST, PUT, PATCH or DELETE route's 2xx answer is a declared body too (its keys listed, typed), so a client
    generated from the document gets typed objects; a 204 has no body and every other 2xx has one."""
    spec = (await api.get("/openapi.json")).json()
    loose: dict[str, str] = {}
    writes = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method == "get" or not isinstance(op, dict) or "responses" not in op:
                continue
            writes += 1
            for status, response in op["responses"].items():
                if not status.startswith("2"):
                    continue
                key = f"{method.upper()} {path} {status}"
                content = response.get("content") or {}
                if status == "204":
                    if content:
                        loose[key] = "a 204 that publishes a body"
                elif not content:
                    loose[key] = "no body published"
                elif "application/json" in content and not _declared(spec, content["application/json"]["schema"]):
                    loose[key] = json.dumps(content["application/json"]["schema"])[:120]
    unexpected = {k: v for k, v in loose.items() if k not in WRITE_EXCEPTIONS}
    assert not unexpected, "write responses published without their keys:\n" + "\n".join(
        f"{k}: {v}" for k, v in sorted(unexpected.items()))
    stale = sorted(set(WRITE_EXCEPTIONS) - set(loose))
    assert not stale, f"exceptions that are declared now (drop them from WRITE_EXCEPTIONS): {stale}"
    assert writes >= 45, writes  # the walk saw the write routes


async def test_a_key_the_model_does_not_declare_is_refused_not_dropped(api, hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """In the test suite (``WEDSYNC_STRICT_RESPONSES=1``, tests/conftest.py) a service that starts answering a key
    its response model lacks fails loudly (the tests see a 500) instead of the key being cut from the answer, or
    answered without being published. Production answers it (next test)."""
    from wedsync.services import calendar as calendar_service

    v = hub.tenancy.create_vendor("Drift Studio")
    _, key = hub.tenancy.create_key(v.id)
    assert (await api.get("/api/calendar/profile", headers=auth(key))).status_code == 200
    original = calendar_service.CalendarService._profile_dict

    def with_extra(*args: Any) -> dict[str, Any]:
        return {**original(*args), "undeclared": 1}

    monkeypatch.setattr(calendar_service.CalendarService, "_profile_dict", staticmethod(with_extra))
    assert (await api.get("/api/calendar/profile", headers=auth(key))).status_code == 500


def test_in_production_an_undeclared_key_is_answered_and_the_schema_stays_closed() -> None:
    """Without the test suite's strictness a client never gets a 500 for a key the document forgot: the key is
    answered (not dropped), and the published schema still says ``additionalProperties: false``."""
    import os
    import subprocess
    import sys

    code = (
        "from wedsync.api.schemas import Out\n"
        "class X(Out):\n    a: int\n"
        "assert X.model_validate({'a': 1, 'b': 2}).model_dump() == {'a': 1, 'b': 2}\n"
        "assert X.model_json_schema()['additionalProperties'] is False\n"
        "print('ok')\n")
    env = {**os.environ, "WEDSYNC_STRICT_RESPONSES": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
