"""Calendar connectors and sandboxes against the providers' own specifications.

Google: the Calendar v3 *discovery document* (not OpenAPI) is converted to JSON Schema here, strictly (an
object may only carry the properties the document declares); every request our connector sent (method, path,
query parameters, body) and every JSON answer of the sandbox is checked against it. Calendly: the OpenAPI
file through ``spec_tools``. Microsoft Graph and Acuity have no spec file in ``../shared/specs``; their
sandboxes follow the providers' documentation (see the sandbox modules), which cannot be checked here.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.contract.spec_tools import SPECS_DIR, OpenApiSpec
from tests.integration.test_calendar_connectors import drain, mounted
from wedsync.connectors.calendars.base import SyncStateExpired
from wedsync.connectors.calendars.calendly import CalendlyConnector
from wedsync.connectors.calendars.google_calendar import GoogleCalendarConnector
from wedsync.sandbox import calendly as csandbox
from wedsync.sandbox import google_calendar as gsandbox

_SKIP = {"description", "annotations", "format", "id", "default", "enumDescriptions", "readOnly", "pattern",
         "location", "repeated", "deprecated"}


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": f"#/$defs/{node['$ref']}"}
    out = {k: _convert(v) for k, v in node.items() if k not in _SKIP}
    if out.get("type") == "any":
        out.pop("type")
    if "properties" in out:
        out["properties"] = {k: _convert(v) for k, v in node["properties"].items()}
        out.setdefault("additionalProperties", False)  # strict: no invented fields
    return out


@cache
def discovery() -> dict[str, Any]:
    return json.loads((SPECS_DIR / "google" / "calendar.v3.json").read_text())


@cache
def google_validator(schema_name: str) -> Draft202012Validator:
    defs = {name: _convert(schema) for name, schema in discovery()["schemas"].items()}
    return Draft202012Validator({"$defs": defs, "$ref": f"#/$defs/{schema_name}"})


def google_method(method: str, path: str) -> dict[str, Any]:
    """The discovery method matching an HTTP method and a path below ``calendar/v3``."""
    def walk(resources: dict[str, Any]) -> Any:
        for res in resources.values():
            for m in res.get("methods", {}).values():
                pattern = re.sub(r"{[^}]+}", "[^/]+", m["path"])
                if m["httpMethod"] == method and re.fullmatch(pattern, path.lstrip("/")):
                    yield m
            yield from walk(res.get("resources", {}))

    found = list(walk(discovery()["resources"]))
    assert found, f"{method} {path} is not a Calendar API v3 method"
    return found[0]  # type: ignore[no-any-return]


class Recorder:
    """ASGI wrapper keeping every request and response (status, content type, body)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.exchanges: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        messages = []
        while True:
            msg = await receive()
            messages.append(msg)
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        record: dict[str, Any] = {"method": scope["method"], "path": scope["path"],
                                  "query": scope["query_string"].decode(), "body": b"".join(chunks),
                                  "response": b"", "status": None, "type": ""}
        self.exchanges.append(record)

        async def replay() -> Any:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                record["type"] = dict(message.get("headers", [])).get(b"content-type", b"").decode()
            elif message["type"] == "http.response.body":
                record["response"] += message.get("body", b"")
            await send(message)

        await self.app(scope, replay, capture)


async def test_google_requests_and_answers_follow_the_discovery_document() -> None:
    em = gsandbox.create_emulator(seed=21, events=14)
    rec = Recorder(mounted(em))
    conn = GoogleCalendarConnector(access_token=gsandbox.DEFAULT_ACCESS_TOKEN,
                                   transport=httpx.ASGITransport(app=rec), page_size=4,
                                   base_url=f"http://sandbox{gsandbox.PREFIX}",
                                   account_key=f"contract-{secrets.token_hex(4)}")
    await conn.list_calendars()
    pages, _ = await drain(conn, "primary", None)
    start = datetime(2027, 5, 1, 10, tzinfo=UTC)
    ref = await conn.put_block("primary", "blk-contract", start, start + timedelta(hours=2), "Busy")
    ref = await conn.put_block("primary", "blk-contract", start, start + timedelta(hours=3), "Busy")  # 409 path
    ref = await conn.put_block("primary", "blk-contract", start, start + timedelta(hours=1), "Busy",
                               existing_remote_id=ref.remote_id, etag=ref.etag)
    await conn.put_block("primary", "blk-day", start, start, "Wedding", all_day=True)
    await drain(conn, "primary", pages[-1].sync_state)
    await conn.delete_block("primary", ref.remote_id, ref.etag)
    channel = await conn.watch("primary", "https://hub.example.com/webhooks/google-calendar/c1", "tok",
                               timedelta(hours=1))
    await conn.stop_watch(channel)
    em.expire_sync_tokens()
    with pytest.raises(SyncStateExpired):
        await conn.list_changes("primary", pages[-1].sync_state, None, *(start, start))
    await conn.aclose()

    checked = {"requests": 0, "answers": 0, "errors": 0}
    for ex in rec.exchanges:
        path = ex["path"][len(gsandbox.PREFIX):]
        method = google_method(ex["method"], path)
        params = set(method.get("parameters", {}))
        for name, _ in parse_qsl(ex["query"], keep_blank_values=True):
            assert name in params, f"{method['id']}: {name!r} is not a parameter"
        if ex["body"]:
            schema = method["request"]["$ref"]
            errors = list(google_validator(schema).iter_errors(json.loads(ex["body"])))
            assert not errors, f"{method['id']} request: {[e.message for e in errors][:5]}"
            checked["requests"] += 1
        if 200 <= ex["status"] < 300 and ex["response"]:
            assert ex["type"].startswith("application/json")
            schema = method["response"]["$ref"]
            errors = list(google_validator(schema).iter_errors(json.loads(ex["response"])))
            assert not errors, f"{method['id']} answer: {[e.message for e in errors][:5]}"
            checked["answers"] += 1
        elif ex["status"] >= 400:
            err = json.loads(ex["response"])["error"]
            assert err["code"] == ex["status"] and err["message"] and err["errors"][0]["reason"]
            checked["errors"] += 1
    assert checked["requests"] >= 5 and checked["answers"] >= 10 and checked["errors"] >= 2, checked
    # nextSyncToken only on the last page of each listing
    lists = [json.loads(ex["response"]) for ex in rec.exchanges
             if ex["path"].endswith("/events") and ex["method"] == "GET" and ex["status"] == 200
             and "iCalUID" not in ex["query"]]
    assert all(("nextPageToken" in b) != ("nextSyncToken" in b) for b in lists)


def calendly_spec() -> OpenApiSpec:
    return OpenApiSpec.load("calendly/openapi.yaml")


def _template(spec: OpenApiSpec, method: str, path: str) -> str:
    for template, m in spec.operations():
        if m.upper() == method and re.fullmatch(re.sub(r"{[^/]+}", "[^/]+", template), path):
            return template
    raise AssertionError(f"{method} {path} is not an operation of the Calendly spec")


async def test_calendly_requests_answers_and_webhooks_follow_the_openapi_file() -> None:
    spec = calendly_spec()
    em = csandbox.create_emulator(seed=22, events=12)
    rec = Recorder(mounted(em))
    conn = CalendlyConnector(access_token=csandbox.DEFAULT_ACCESS_TOKEN, transport=httpx.ASGITransport(app=rec),
                             base_url=f"http://sandbox{csandbox.PREFIX}", page_size=5,
                             account_key=f"contract-{secrets.token_hex(4)}")
    [cal] = await conn.list_calendars()
    _, changes = await drain(conn, cal.id, None)
    await conn.fetch_item(cal.id, changes[0].remote_id)
    await conn.fetch_item(cal.id, changes[0].remote_id.replace("scheduled_events/", "scheduled_events/NOPE"))
    hook = await conn.watch(cal.id, "https://hub.example.com/webhooks/calendly/c1", "key", timedelta(days=1))
    await conn.watch(cal.id, "https://hub.example.com/webhooks/calendly/c1", "key", timedelta(days=1))  # 409
    await conn.stop_watch(hook)
    await conn.aclose()

    answers = 0
    for ex in rec.exchanges:
        template = _template(spec, ex["method"], ex["path"][len(csandbox.PREFIX):])
        params = spec.parameters(template, ex["method"])
        for name, value in parse_qsl(ex["query"], keep_blank_values=True):
            assert ("query", name) in params, f"{template}: {name!r} is not a parameter"
            schema = dict(params[("query", name)].get("schema") or {})
            if "enum" in schema:
                spec.validate(value, schema)
        if ex["body"]:
            op = spec.operation(template, ex["method"])
            body_schema = spec._deref(op["requestBody"])["content"]["application/json"]["schema"]
            spec.validate(json.loads(ex["body"]), spec._deref(body_schema))
        if ex["response"] and spec.documents_response(template, ex["method"].lower(), ex["status"]):
            try:
                schema = spec.response_schema(template, ex["method"].lower(), ex["status"])
            except AssertionError:
                continue  # documented without a JSON body
            spec.validate(json.loads(ex["response"]), schema)
            answers += 1
    assert answers >= 6


def test_calendly_webhook_payloads_follow_the_openapi_file() -> None:
    spec = calendly_spec()
    em = csandbox.create_emulator(seed=23, events=0)
    sent: list[bytes] = []
    em.webhooks.send = lambda url, body, headers=None: sent.append(body)  # type: ignore[method-assign]
    em.hooks["H"] = csandbox._Hook("H", "https://hub.example.com/h", ["invitee.created", "invitee.canceled"],
                                   "user", em.org_uri, em.user_uri, "key", "2026-01-01T00:00:00.000000Z")
    uuid = em.book(datetime(2027, 1, 1, 10, tzinfo=UTC), 30, "Ana Silva", "ana@example.com")
    em.cancel(uuid, "couple postponed")
    assert len(sent) == 2
    for body in sent:
        spec.validate(json.loads(body), spec.component("schemas", "WebhookPayload"))
    spec.validate(em.events[uuid], spec.component("schemas", "Event"))
