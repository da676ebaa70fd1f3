"""Conformance suite run against every registered connector, and the requests they send checked against
the provider's own specification (recorded on the server side, not by patching the client)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.spec_tools import OpenApiSpec
from wedsync.connectors.base import Capabilities, Channel, Connector
from wedsync.connectors.registry import CONNECTORS, capability_matrix

SPEC_FILES = {"vsco-workspace": ("vsco-workspace/workspace-openapi.json", "/vsco-workspace/api/v2")}


@pytest.mark.parametrize("slug", sorted(CONNECTORS))
def test_connector_shape(slug: str) -> None:
    cls: type[Connector] = CONNECTORS[slug]
    assert cls.slug == slug and cls.display_name
    assert isinstance(cls.channel, Channel) and isinstance(cls.capabilities, Capabilities)
    caps = cls.capabilities
    assert set(caps.incremental) <= set(caps.read), "incremental streams must be readable"
    assert caps.notes, "the capability table must say what the channel really allows"
    assert all(f.name and f.description for f in cls.credential_fields)
    if cls.channel is Channel.API:
        assert cls.default_base_url and cls.default_base_url.startswith("https://")
    row = next(r for r in capability_matrix() if r["provider"] == slug)
    assert row["capabilities"] == caps.as_dict()


class Recorder:
    """ASGI middleware in front of the sandbox: remembers every request a connector sent."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        body = b""
        messages = []
        while True:
            msg = await receive()
            messages.append(msg)
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        self.requests.append({"method": scope["method"], "path": scope["path"],
                              "query": scope["query_string"].decode(), "body": body,
                              "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]}})

        async def replay() -> Any:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        await self.app(scope, replay, send)


@pytest.fixture
def recorded_sandbox() -> Iterator[tuple[str, Recorder]]:
    from wedsync.sandbox.app import create_sandbox_app
    from wedsync.sandbox.server import start_sandbox_in_thread

    rec = Recorder(create_sandbox_app(vsco_contacts=230, vsco_jobs=40))
    url, stop = start_sandbox_in_thread(port=0, app=rec)  # type: ignore[arg-type]
    try:
        yield url, rec
    finally:
        stop()


def _template(spec: OpenApiSpec, method: str, path: str) -> str:
    for template, m in spec.operations():
        if m.upper() == method and re.fullmatch(re.sub(r"{[^/]+}", "[^/]+", template), path):
            return template
    raise AssertionError(f"{method} {path} is not an operation of the provider's specification")


async def test_vsco_requests_follow_the_spec(hub, recorded_sandbox) -> None:  # type: ignore[no-untyped-def]
    from urllib.parse import parse_qsl

    from wedsync.services.sync_engine import DirectSteps, drive_run

    url, rec = recorded_sandbox
    spec_file, prefix = SPEC_FILES["vsco-workspace"]
    spec = OpenApiSpec.load(spec_file)
    v = hub.tenancy.create_vendor("Spec Studio")
    c = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "sandbox-vsco-key"},
                               base_url=f"{url}{prefix}")
    for mode in ("full", "incremental"):
        run = hub.sync.create_run(v.id, c.id, mode)
        assert (await drive_run(run.id, DirectSteps(hub.sync)))["status"] == "succeeded"
    hub.subscriptions.public_url = "https://hub.example.com"
    await hub.subscriptions.subscribe(v.id, c.id)
    await hub.sync.refetch(c.id, "contacts", "01h35ccwymj5ctckp8px1azhg6")
    await hub.connections.aclose()

    assert {r["method"] for r in rec.requests} >= {"GET", "POST"}
    for r in rec.requests:
        assert r["path"].startswith(prefix)
        template = _template(spec, r["method"], r["path"][len(prefix):])
        assert r["headers"].get("x-api-key") == "sandbox-vsco-key"
        params = spec.parameters(template, r["method"])
        for name, value in parse_qsl(r["query"], keep_blank_values=True):
            assert ("query", name) in params, f"{r['method']} {template}: parameter {name!r} not in the spec"
            schema = dict(params[("query", name)].get("schema") or {})
            if schema.get("type") == "integer":
                spec.validate(int(value), schema)
            elif schema.get("type") == "boolean":
                assert value in ("true", "false")
            elif "anyOf" in schema or "enum" in schema:
                spec.validate(value, schema)
        if r["body"]:
            op = spec.operation(template, r["method"])
            body_schema = spec._deref(op["requestBody"])["content"]["application/json"]["schema"]
            spec.validate(json.loads(r["body"]), spec._deref(body_schema))
