"""Fuzz every operation of our own OpenAPI schema (schemathesis): no input makes the hub answer 5xx, and every
answer is one the schema documents (status code, content type and body schema)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from wedsync.bootstrap import Hub, set_hub


@pytest.fixture
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import make_settings
    from wedsync.api.app import create_app

    hub = Hub(make_settings(tmp_path_factory.mktemp("fuzz")))
    set_hub(hub)
    v = hub.tenancy.create_vendor("Fuzz Studio")
    _, key = hub.tenancy.create_key(v.id)
    hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "k"},
                           base_url="http://127.0.0.1:9/vsco-workspace/api/v2")
    app = create_app(launch_workflows=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.headers = {"Authorization": f"Bearer {key}"}  # type: ignore[attr-defined]
    yield schema
    set_hub(None)
    hub.close()


def test_no_server_errors(api_schema: Any) -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    operations = []
    for result in api_schema.get_all_operations():
        op = result.ok()
        # Starting a sync or a subscription needs the workflow runtime or a provider: test_workflows.py.
        if op.method.upper() == "POST" and op.path.endswith(("/sync", "/subscriptions")):
            continue
        operations.append(op)
    assert len(operations) > 10

    statuses: dict[int, int] = {}

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: Any) -> None:
        for op in operations:
            mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
            case = data.draw(op.as_strategy(generation_mode=mode))
            response = case.call()
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            case.validate_response(response, checks=(not_a_server_error, status_code_conformance,
                                                     content_type_conformance, response_schema_conformance))

    run()
    # The fuzzer got past authentication (2xx) and hit validation (422) and missing rows (404).
    assert any(200 <= s < 300 for s in statuses) and 422 in statuses and 404 in statuses, statuses
