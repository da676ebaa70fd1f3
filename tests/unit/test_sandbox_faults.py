"""Fault injection and sandbox admin endpoints: each fault is observable, and reproducible from its seed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from wedsync.sandbox.app import create_sandbox_app
from wedsync.sandbox.faults import FaultConfig, FaultInjector
from wedsync.sandbox.vsco_workspace import DEFAULT_API_KEY, PREFIX, SLUG, VscoWorkspaceEmulator

ADMIN = f"/_sandbox/{SLUG}"


@pytest.fixture
def app() -> FastAPI:
    return create_sandbox_app(seed=3, vsco_contacts=60, vsco_jobs=20)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test",
                                 headers={"X-API-KEY": DEFAULT_API_KEY}) as c:
        yield c


def emulator_of(app: FastAPI) -> VscoWorkspaceEmulator:
    emulator = app.state.emulators[SLUG]
    assert isinstance(emulator, VscoWorkspaceEmulator)
    return emulator


async def faults(client: httpx.AsyncClient, **config: Any) -> dict[str, Any]:
    response = await client.put(f"{ADMIN}/faults", json=config)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def statuses(client: httpx.AsyncClient, n: int, path: str = "/address-book") -> list[int]:
    return [(await client.get(f"{PREFIX}{path}", params={"pageSize": 10})).status_code for _ in range(n)]


# --- request faults ----------------------------------------------------------------------------------------

async def test_error_rate_gives_5xx_with_json_error_body(client: httpx.AsyncClient) -> None:
    await faults(client, error_rate=1.0, error_statuses=[500, 503])
    for _ in range(10):
        response = await client.get(f"{PREFIX}/job")
        assert response.status_code in (500, 503)
        body = response.json()
        assert body["status"] == response.status_code and body["type"] == "unknown"


async def test_same_seed_same_fates_and_put_restarts_the_sequence(client: httpx.AsyncClient) -> None:
    await faults(client, seed=11, error_rate=0.3, rate_limit_rate=0.2)
    first = await statuses(client, 40)
    await faults(client, seed=11, error_rate=0.3, rate_limit_rate=0.2)
    assert await statuses(client, 40) == first
    assert {200, 429} <= set(first) and any(s >= 500 for s in first)
    await faults(client, seed=12, error_rate=0.3, rate_limit_rate=0.2)
    assert await statuses(client, 40) != first

    other = create_sandbox_app(seed=99, vsco_contacts=10, vsco_jobs=2)  # other data, same fault seed
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://x",
                                 headers={"X-API-KEY": DEFAULT_API_KEY}) as c2:
        await faults(c2, seed=11, error_rate=0.3, rate_limit_rate=0.2)
        assert await statuses(c2, 40) == first


async def test_rate_limit_has_retry_after_and_quota_error_type(client: httpx.AsyncClient) -> None:
    await faults(client, rate_limit_rate=1.0, retry_after_seconds=17)
    response = await client.get(f"{PREFIX}/address-book")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "17"
    assert response.json()["type"] == "quota-limit"


def test_quota_per_key_per_second() -> None:
    injector = FaultInjector(FaultConfig(quota_per_second=3))
    now = 1_000.2
    fates = [injector.decide("key-a", now) for _ in range(5)]
    assert [f.over_quota for f in fates] == [False, False, False, True, True]
    assert not injector.decide("key-b", now).over_quota  # a separate budget per key
    assert not injector.decide("key-a", now + 1).over_quota  # the next second starts afresh


async def test_quota_over_http(client: httpx.AsyncClient) -> None:
    await faults(client, quota_per_second=2)
    results = await statuses(client, 6)
    assert results.count(429) >= 2  # even straddling a second boundary, 6 requests exceed 2 + 2


async def test_latency_with_jitter(client: httpx.AsyncClient) -> None:
    await faults(client, latency_ms=120, latency_jitter_ms=20)
    started = time.perf_counter()
    assert (await client.get(f"{PREFIX}/address-book")).status_code == 200
    assert time.perf_counter() - started >= 0.095


async def test_outage_for_seconds_and_iso_window(client: httpx.AsyncClient) -> None:
    await faults(client, outages=[{"for_seconds": 30}])
    response = await client.get(f"{PREFIX}/job")
    assert response.status_code == 503 and 1 <= int(response.headers["retry-after"]) <= 30
    assert response.json()["status"] == 503

    past = datetime.now(UTC) - timedelta(hours=2)
    await faults(client, outages=[{"start": past.isoformat(), "end": (past + timedelta(hours=1)).isoformat()}])
    assert (await client.get(f"{PREFIX}/job")).status_code == 200
    now = datetime.now(UTC)
    await faults(client, outages=[{"start": (now - timedelta(seconds=5)).isoformat(),
                                   "end": (now + timedelta(seconds=60)).isoformat()}])
    assert (await client.get(f"{PREFIX}/job")).status_code == 503
    bad = await client.put(f"{ADMIN}/faults", json={"outages": [{"start": now.isoformat()}]})
    assert bad.status_code == 422


async def test_timeout_holds_the_response(client: httpx.AsyncClient) -> None:
    await faults(client, timeout_rate=1.0, timeout_seconds=0.4)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.get(f"{PREFIX}/address-book"), 0.15)
    started = time.perf_counter()
    response = await client.get(f"{PREFIX}/address-book")
    assert response.status_code == 200 and time.perf_counter() - started >= 0.35  # then it answers


async def test_malformed_is_200_with_invalid_json(client: httpx.AsyncClient) -> None:
    await faults(client, malformed_rate=1.0)
    response = await client.get(f"{PREFIX}/address-book")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_truncated_is_a_prefix_of_the_real_body(client: httpx.AsyncClient) -> None:
    real = (await client.get(f"{PREFIX}/address-book", params={"pageSize": 10})).content
    await faults(client, truncated_rate=1.0)
    response = await client.get(f"{PREFIX}/address-book", params={"pageSize": 10})
    assert response.status_code == 200
    assert 0 < len(response.content) < len(real) and real.startswith(response.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_faults_do_not_touch_admin_endpoints(client: httpx.AsyncClient) -> None:
    await faults(client, error_rate=1.0, outages=[{"for_seconds": 60}])
    assert (await client.get(f"{ADMIN}/stats")).status_code == 200
    assert (await client.get(f"{ADMIN}/faults")).json()["error_rate"] == 1.0


# --- admin endpoints ---------------------------------------------------------------------------------------

async def test_faults_get_put_patch_and_validation(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{ADMIN}/faults")).json() == FaultConfig().model_dump(mode="json")
    await faults(client, error_rate=0.5, latency_ms=10)
    patched = (await client.patch(f"{ADMIN}/faults", json={"latency_ms": 20})).json()
    assert patched["error_rate"] == 0.5 and patched["latency_ms"] == 20
    replaced = await faults(client, malformed_rate=0.1)
    assert replaced["error_rate"] == 0.0  # PUT replaces the whole configuration
    for bad in ({"error_rate": 2}, {"error_statuses": [404]}, {"bogus": 1}):
        assert (await client.put(f"{ADMIN}/faults", json=bad)).status_code == 422
    assert (await client.get("/_sandbox/nope/faults")).status_code == 404


async def test_stats_count_responses_by_status(client: httpx.AsyncClient) -> None:
    await client.get(f"{PREFIX}/address-book")
    await client.get(f"{PREFIX}/address-book", params={"pageSize": 1})
    await client.get(f"{PREFIX}/job", headers={"X-API-KEY": "wrong"})
    await faults(client, rate_limit_rate=1.0)
    await client.get(f"{PREFIX}/job")
    stats = (await client.get(f"{ADMIN}/stats")).json()
    assert stats["by_status"] == {"200": 1, "400": 1, "401": 1, "429": 1} and stats["requests"] == 4
    assert stats["injected"] == {"rate_limit": 1}


async def test_seed_reset_and_records(client: httpx.AsyncClient) -> None:
    counts = (await client.post(f"{ADMIN}/seed", json={"contacts": 300, "jobs": 90})).json()
    assert (counts["contacts"], counts["jobs"], counts["job_contacts"]) == (300, 90, 180)
    lines = (await client.get(f"{ADMIN}/records/address-book")).text.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 300 and [r["id"] for r in records] == sorted(r["id"] for r in records)
    assert any(r["hidden"] for r in records)  # ground truth includes what lists hide by default
    listed = (await client.get(f"{PREFIX}/address-book", params={"includeHidden": "true"})).json()
    assert listed["meta"]["totalItems"] == 300
    assert listed["items"][0] == records[0]
    window = (await client.get(f"{ADMIN}/records/job", params={"offset": 10, "limit": 5})).text.splitlines()
    assert len(window) == 5
    assert (await client.get(f"{ADMIN}/records/nothing")).status_code == 404

    await faults(client, error_rate=1.0)
    await client.post(f"{PREFIX}/rest-hook", json={"event": "job.created", "url": "http://127.0.0.1:9/x"})
    reset = (await client.post(f"{ADMIN}/reset")).json()
    assert (reset["contacts"], reset["jobs"]) == (60, 20)
    assert (await client.get(f"{ADMIN}/faults")).json()["error_rate"] == 0.0
    assert (await client.get(f"{ADMIN}/stats")).json()["requests"] == 0
    assert (await client.get(f"{PREFIX}/rest-hook")).json()["items"] == []


async def test_seed_is_deterministic(client: httpx.AsyncClient) -> None:
    await client.post(f"{ADMIN}/seed", json={"contacts": 50, "jobs": 10, "seed": 5})
    first = (await client.get(f"{ADMIN}/records/address-book")).text
    await client.post(f"{ADMIN}/seed", json={"contacts": 50, "jobs": 10, "seed": 6})
    assert (await client.get(f"{ADMIN}/records/address-book")).text != first
    await client.post(f"{ADMIN}/seed", json={"contacts": 50, "jobs": 10, "seed": 5})
    assert (await client.get(f"{ADMIN}/records/address-book")).text == first


async def test_mutate_updates_creates_deletes(client: httpx.AsyncClient) -> None:
    before = {r["id"]: r for r in map(json.loads, (await client.get(f"{ADMIN}/records/address-book")).text
                                      .splitlines())}
    result = (await client.post(f"{ADMIN}/mutate", json={"update": 5, "create": 3, "delete": 2})).json()
    assert (len(result["updated"]), len(result["created"]), len(result["deleted"])) == (5, 3, 2)
    after = {r["id"]: r for r in map(json.loads, (await client.get(f"{ADMIN}/records/address-book")).text
                                     .splitlines())}
    assert len(after) == len(before) + 1
    newest = max(r["modified"] for r in before.values())
    for rid in result["updated"]:
        assert after[rid]["modified"] > newest and after[rid] != before[rid]
    for rid in result["created"]:
        assert rid in after and rid not in before
    for rid in result["deleted"]:
        assert (await client.get(f"{PREFIX}/address-book/{rid}")).status_code == 404
    top = (await client.get(f"{PREFIX}/address-book", params={"sortBy": "modified desc", "pageSize": 10,
                                                               "includeHidden": "true"})).json()["items"]
    assert set(result["updated"]) | set(result["created"]) == {i["id"] for i in top[:8]}

    jobs = (await client.post(f"{ADMIN}/mutate", json={"collection": "job", "update": 2, "create": 1})).json()
    assert len(jobs["created"]) == 1
    links = (await client.get(f"{PREFIX}/job-contact", params={"jobId": jobs["created"][0]})).json()
    assert len(links["items"]) == 2
    assert (await client.post(f"{ADMIN}/mutate", json={"collection": "nope"})).status_code == 400


# --- webhook faults ----------------------------------------------------------------------------------------

class _Sink(BaseHTTPRequestHandler):
    bodies: list[str]

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers.get("content-length", 0))).decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[tuple[str, list[str]]]:
    bodies: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Sink", (_Sink,), {"bodies": bodies}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


async def _create_contacts(client: httpx.AsyncClient, hook_url: str, n: int) -> list[str]:
    await client.post(f"{PREFIX}/rest-hook", json={"event": "contact.created", "url": hook_url})
    created = []
    for i in range(n):
        response = await client.post(f"{PREFIX}/address-book", json={"kind": "person", "firstName": f"P{i}"})
        created.append(response.json()["id"])
    return created


async def test_hooks_fire_for_api_and_mutate_creations(app: FastAPI, client: httpx.AsyncClient,
                                                       sink: tuple[str, list[str]]) -> None:
    url, bodies = sink
    created = await _create_contacts(client, url, 2)
    await client.post(f"{PREFIX}/rest-hook", json={"event": "job.created", "url": url})
    result = (await client.post(f"{ADMIN}/mutate", json={"collection": "job", "create": 1})).json()
    await emulator_of(app).webhooks.drain()
    targets = [json.loads(b)["targetId"] for b in bodies]
    # deliveries are concurrent: their arrival order is not part of the contract
    assert set(created) <= set(targets) and result["created"][0] in targets
    assert len(targets) == 2 + 2 + 1  # two API contacts, the new couple, their job
    deliveries = (await client.get(f"{ADMIN}/deliveries")).json()
    assert all(d["status"] == 200 for d in deliveries)


async def test_webhook_duplicates(app: FastAPI, client: httpx.AsyncClient, sink: tuple[str, list[str]]) -> None:
    url, bodies = sink
    await faults(client, webhook_duplicate_rate=1.0)
    created = await _create_contacts(client, url, 3)
    await emulator_of(app).webhooks.drain()
    targets = sorted(json.loads(b)["targetId"] for b in bodies)
    assert targets == sorted(created * 2)
    assert (await client.get(f"{ADMIN}/stats")).json()["webhooks"]["duplicated"] == 3


async def test_webhook_reorder(app: FastAPI, client: httpx.AsyncClient, sink: tuple[str, list[str]]) -> None:
    url, bodies = sink
    await faults(client, webhook_reorder=True, webhook_reorder_window_ms=100, seed=4)
    created = await _create_contacts(client, url, 5)
    await emulator_of(app).webhooks.drain()
    targets = [json.loads(b)["targetId"] for b in bodies]
    assert sorted(targets) == sorted(created) and targets != created
