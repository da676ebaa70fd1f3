"""ProviderClient over httpx.ASGITransport against small Starlette apps: mapping, retries, budget, breaker."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from wedsync.connectors.errors import (
    CircuitOpen,
    Fatal,
    OutcomeUnknown,
    ProviderDown,
    RateLimited,
    ReauthRequired,
    Retriable,
    SchemaMismatch,
)
from wedsync.connectors.http import (
    MAX_PROVIDER_WAIT,
    UNDECODABLE_REREADS,
    ProviderClient,
    RateBudget,
    RetryPolicy,
    breaker_for,
    budget_for,
    parse_rate_limit_reset,
    parse_retry_after,
)
from wedsync.logging import register_secret

FAST = RetryPolicy(max_attempts=4, base=0.01, cap=0.05, max_total_wait=5.0)


def provider_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


class Recorder:
    """Per-test server state: what the provider saw."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.seen: list[tuple[str, float, dict[str, str]]] = []

    def hit(self, request: Request) -> int:
        key = request.url.path
        self.calls[key] = self.calls.get(key, 0) + 1
        self.seen.append((key, time.monotonic(), dict(request.headers)))
        return self.calls[key]


def make_app(rec: Recorder) -> Starlette:
    async def ok(request: Request) -> Response:
        rec.hit(request)
        return JSONResponse({"data": [1, 2, 3], "page": request.query_params.get("page")})

    async def limited_seconds(request: Request) -> Response:
        if rec.hit(request) == 1:
            return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "1"})
        return JSONResponse({"ok": True})

    async def limited_date(request: Request) -> Response:
        if rec.hit(request) == 1:
            when = datetime.now(UTC) + timedelta(seconds=2)
            return JSONResponse(
                {"error": "slow down"}, status_code=429, headers={"Retry-After": format_datetime(when, True)}
            )
        return JSONResponse({"ok": True})

    async def always_429(request: Request) -> Response:
        rec.hit(request)
        return JSONResponse({"error": "quota"}, status_code=429, headers={"Retry-After": "120"})

    async def maintenance(request: Request) -> Response:
        rec.hit(request)
        return PlainTextResponse("down for maintenance", status_code=503, headers={"Retry-After": "120"})

    async def exhausted(request: Request) -> Response:
        n = rec.hit(request)
        headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0" if n == 1 else "99"}
        if n == 1:
            headers["X-RateLimit-Reset"] = "1"
        return JSONResponse({"n": n}, headers=headers)

    async def flaky(request: Request) -> Response:
        if rec.hit(request) <= 2:
            return PlainTextResponse("upstream hiccup", status_code=503)
        return JSONResponse({"ok": True})

    async def broken(request: Request) -> Response:
        rec.hit(request)
        return PlainTextResponse("internal error", status_code=500)

    async def create(request: Request) -> Response:
        n = rec.hit(request)
        if n <= 2:
            return PlainTextResponse("bad gateway", status_code=502)
        return JSONResponse({"id": "ch_1"}, status_code=201)

    async def slow(request: Request) -> Response:
        rec.hit(request)
        await asyncio.sleep(1.0)
        return JSONResponse({"late": True})

    async def missing(request: Request) -> Response:
        rec.hit(request)
        return JSONResponse(
            {"error": "not_found", "detail": "contact sk_live_abcdef123456 " + "x" * 2000}, status_code=404
        )

    async def unauthorized(request: Request) -> Response:
        rec.hit(request)
        return JSONResponse({"error": "invalid_token"}, status_code=401)

    async def html(request: Request) -> Response:
        rec.hit(request)
        return Response("<html>maintenance</html>", media_type="text/html")

    async def bad_json(request: Request) -> Response:
        rec.hit(request)
        return Response("{not json", media_type="application/json")

    async def cut_once(request: Request) -> Response:
        if rec.hit(request) == 1:  # the first answer is cut short on the way
            return Response('{"data": [1, 2', media_type="application/json")
        return JSONResponse({"data": [1, 2, 3]})

    async def toggle(request: Request) -> Response:
        rec.hit(request)
        await asyncio.sleep(request.app.state.delay)
        if request.app.state.healthy:
            return JSONResponse({"ok": True})
        return PlainTextResponse("down", status_code=500)

    app = Starlette(
        routes=[
            Route("/ok", ok),
            Route("/limited-seconds", limited_seconds),
            Route("/limited-date", limited_date),
            Route("/always-429", always_429),
            Route("/maintenance", maintenance),
            Route("/exhausted", exhausted),
            Route("/flaky", flaky),
            Route("/broken", broken, methods=["GET", "POST"]),
            Route("/charges", create, methods=["POST"]),
            Route("/slow", slow, methods=["GET", "POST"]),
            Route("/missing", missing),
            Route("/unauthorized", unauthorized),
            Route("/html", html),
            Route("/bad-json", bad_json),
            Route("/cut-once", cut_once),
            Route("/toggle", toggle),
        ]
    )
    app.state.healthy = True
    app.state.delay = 0.0
    return app


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def app(rec: Recorder) -> Starlette:
    return make_app(rec)


def client(app: Starlette, provider: str, **kw: Any) -> ProviderClient:
    kw.setdefault("retry", FAST)
    return ProviderClient(provider, "http://provider.test", transport=httpx.ASGITransport(app=app), **kw)


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_get_json_ok_and_metrics(app: Starlette, rec: Recorder) -> None:
    provider = provider_name()
    async with client(app, provider) as c:
        body = await c.get_json("/ok", params={"page": "2"})
    assert body == {"data": [1, 2, 3], "page": "2"}
    labels = {"provider": provider, "method": "GET", "status_class": "2xx"}
    assert sample("provider_requests_total", labels) == 1.0
    assert sample("provider_request_seconds_count", {"provider": provider}) == 1.0


def test_parse_retry_after_forms() -> None:
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after("Sun, 01 Jun 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Sun, 01 Jun 2025 11:59:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_rate_limit_reset("30", now=now) == 30.0
    assert parse_rate_limit_reset(str(int(now) + 45), now=now) == 45.0
    assert parse_rate_limit_reset(str(int(now * 1000) + 5000), now=now) == pytest.approx(5.0)


def test_a_wait_no_plan_can_mean_is_bounded() -> None:
    """``Retry-After: inf`` (or 1e400, or a date in the year 9999) became an infinite retry_after: our own API
    answered 500 (``math.ceil(inf)`` for its Retry-After header) and the inbox could not schedule the retry.
    Waits are now at most a day, and NaN says nothing."""
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    for value in ("inf", "1e400", "Fri, 31 Dec 9999 23:59:59 GMT", "99999999999999999"):
        assert parse_retry_after(value, now=now) == MAX_PROVIDER_WAIT, value
        assert parse_rate_limit_reset(value, now=now) == MAX_PROVIDER_WAIT, value
    assert parse_retry_after("nan", now=now) is None
    assert parse_rate_limit_reset("nan", now=now) is None
    assert parse_retry_after("-inf", now=now) == 0.0


async def test_429_retry_after_seconds_is_honoured(app: Starlette, rec: Recorder) -> None:
    provider = provider_name()
    async with client(app, provider) as c:
        start = time.monotonic()
        body = await c.get_json("/limited-seconds")
        elapsed = time.monotonic() - start
    assert body == {"ok": True}
    assert rec.calls["/limited-seconds"] == 2
    assert elapsed >= 0.95
    assert sample("provider_rate_limited_total", {"provider": provider}) == 1.0
    assert sample("provider_retries_total", {"provider": provider, "reason": "rate_limited"}) == 1.0


async def test_429_retry_after_http_date(app: Starlette, rec: Recorder) -> None:
    provider = provider_name()
    async with client(app, provider, retry=RetryPolicy(max_attempts=1)) as c:
        with pytest.raises(RateLimited) as info:
            await c.get_json("/limited-date")
        # An HTTP-date has one-second resolution: 2 s ahead is between 1 and 2 s away.
        assert 0.9 <= info.value.retry_after <= 2.1
        assert c.budget.paused_for > 0.5
        start = time.monotonic()
        assert await c.get_json("/limited-date") == {"ok": True}  # waits for the account's pause first
        assert time.monotonic() - start >= 0.8


async def test_429_beyond_max_total_wait_is_raised_at_once(app: Starlette, rec: Recorder) -> None:
    async with client(app, provider_name()) as c:
        start = time.monotonic()
        with pytest.raises(RateLimited) as info:
            await c.get_json("/always-429")
    assert info.value.retry_after == 120.0
    assert rec.calls["/always-429"] == 1
    assert time.monotonic() - start < 5.0  # raised at once, not after the 120 s the provider asked for


async def test_an_outage_with_retry_after_is_named_an_outage_not_a_quota(app: Starlette, rec: Recorder) -> None:
    """503 with Retry-After pauses the account like a 429 does, but the error says the provider is down
    (ProviderDown, code provider_unavailable): it read 'RateLimited: asked us to wait 120s' (found by a probe)."""
    async with client(app, provider_name()) as c:
        with pytest.raises(ProviderDown) as info:
            await c.get_json("/maintenance")
    assert isinstance(info.value, RateLimited) and 119 <= info.value.retry_after <= 120  # waited out like one
    assert info.value.code == "provider_unavailable" and "unavailable (HTTP 503)" in str(info.value)


async def test_ratelimit_remaining_zero_pauses_second_client_of_same_account(app: Starlette, rec: Recorder) -> None:
    provider = provider_name()
    first = client(app, provider, account_key="acct-1")
    second = client(app, provider, account_key="acct-1")
    other = client(app, provider, account_key="acct-2")
    async with first, second, other:
        await first.get_json("/exhausted")
        assert first.budget is second.budget
        assert first.budget.remaining == 0 and first.budget.limit == 100
        t0 = time.monotonic()
        await other.get_json("/ok")  # another account of the same provider is not paused
        assert time.monotonic() - t0 < 0.9  # the other account's pause (1 s) does not apply
        await second.get_json("/exhausted")
    times = [t for path, t, _ in rec.seen if path == "/exhausted"]
    assert times[1] - times[0] >= 0.95


async def test_token_bucket_paces_requests() -> None:
    budget = RateBudget(rate=20.0, burst=1, jitter=0.0)
    start = time.monotonic()
    for _ in range(5):
        await budget.acquire()
    assert time.monotonic() - start >= 0.18
    shared = budget_for("bucket-" + uuid.uuid4().hex, "a", rate=5.0, burst=2)
    assert budget_for(shared_provider := "bucket-x-" + uuid.uuid4().hex, "a") is not shared
    assert budget_for(shared_provider, "a") is budget_for(shared_provider, "a")


async def test_5xx_get_is_retried(app: Starlette, rec: Recorder) -> None:
    provider = provider_name()
    async with client(app, provider) as c:
        assert await c.get_json("/flaky") == {"ok": True}
    assert rec.calls["/flaky"] == 3
    assert sample("provider_retries_total", {"provider": provider, "reason": "5xx"}) == 2.0


async def test_5xx_get_gives_up_after_max_attempts(app: Starlette, rec: Recorder) -> None:
    async with client(app, provider_name()) as c:
        with pytest.raises(Retriable) as info:
            await c.get_json("/broken")
    assert info.value.http_status == 500
    assert rec.calls["/broken"] == 4


async def test_5xx_on_unkeyed_post_is_outcome_unknown_not_retried(app: Starlette, rec: Recorder) -> None:
    async with client(app, provider_name()) as c:
        with pytest.raises(OutcomeUnknown):
            await c.request("POST", "/broken", json={"amount": 100})
    assert rec.calls["/broken"] == 1


async def test_keyed_post_is_retried_with_the_same_key(app: Starlette, rec: Recorder) -> None:
    async with client(app, provider_name(), idempotency_header="Idempotency-Key") as c:
        response = await c.request("POST", "/charges", json={"amount": 100}, idempotency_key="pay_123:capture")
    assert response.status_code == 201
    keys = [headers.get("idempotency-key") for path, _, headers in rec.seen if path == "/charges"]
    assert keys == ["pay_123:capture"] * 3


async def test_timeout_get_retried_then_retriable(app: Starlette, rec: Recorder) -> None:
    retry = RetryPolicy(max_attempts=2, base=0.01, cap=0.01)
    async with client(app, provider_name(), timeout=0.1, retry=retry) as c:
        start = time.monotonic()
        with pytest.raises(Retriable) as info:
            await c.get_json("/slow")
        assert time.monotonic() - start < 3.0
    assert rec.calls["/slow"] == 2
    # in words (the connection's status shows it): it read "TimeoutError (replayable)"
    assert "the provider did not answer in full within 0.1s (" in str(info.value), str(info.value)
    assert "replayable" not in str(info.value)


async def test_timeout_unkeyed_post_is_outcome_unknown(app: Starlette, rec: Recorder) -> None:
    async with client(app, provider_name(), timeout=0.1) as c:
        with pytest.raises(OutcomeUnknown) as info:
            await c.request("POST", "/slow", json={"x": 1})
    assert rec.calls["/slow"] == 1
    assert "may have been executed" in info.value.message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connect_error_is_retriable_even_for_unkeyed_post() -> None:
    provider = provider_name()
    port = free_port()  # nothing listens there: the request never leaves
    retry = RetryPolicy(max_attempts=2, base=0.01, cap=0.01)
    async with ProviderClient(provider, f"http://127.0.0.1:{port}", retry=retry, timeout=2.0) as c:
        with pytest.raises(Retriable) as info:
            await c.request("POST", "/charges", json={"amount": 1})
    assert not isinstance(info.value, OutcomeUnknown)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "could not connect to the provider (ConnectError); nothing was sent" in str(info.value)
    assert sample("provider_retries_total", {"provider": provider, "reason": "connect"}) == 1.0


async def test_a_body_that_lies_about_its_encoding_is_said_in_words() -> None:
    """``Content-Encoding: gzip`` on a plain body read 'DecodingError (replayable)' on the connection."""
    async def liar(request: Request) -> Response:
        return Response(b'{"items": []}', media_type="application/json", headers={"Content-Encoding": "gzip"})

    app = Starlette(routes=[Route("/liar", liar)])
    async with client(app, provider_name(), retry=RetryPolicy(max_attempts=1)) as c:
        with pytest.raises(Retriable) as info:
            await c.get_json("/liar")
    assert "did not decode as its Content-Encoding said (DecodingError)" in str(info.value), str(info.value)


async def test_status_mapping_fatal_reauth_schema(app: Starlette, rec: Recorder) -> None:
    register_secret("sk_live_abcdef123456")
    async with client(app, provider_name()) as c:
        with pytest.raises(Fatal) as fatal:
            await c.get_json("/missing")
        assert not isinstance(fatal.value, SchemaMismatch)
        assert fatal.value.http_status == 404
        assert "sk_live_abcdef123456" not in fatal.value.message
        assert "not_found" in fatal.value.message
        assert len(fatal.value.message) < 500
        with pytest.raises(ReauthRequired):
            await c.get_json("/unauthorized")
        with pytest.raises(SchemaMismatch):
            await c.get_json("/html")
        with pytest.raises(SchemaMismatch):
            await c.get_json("/bad-json")
    assert rec.calls["/missing"] == 1 and rec.calls["/unauthorized"] == 1
    # an undecodable 2xx is read again (UNDECODABLE_REREADS times) before the provider is blamed
    assert rec.calls["/html"] == rec.calls["/bad-json"] == 1 + UNDECODABLE_REREADS


async def test_a_body_cut_short_once_is_read_again(app: Starlette, rec: Recorder) -> None:
    provider = provider_name()
    async with client(app, provider) as c:
        assert await c.get_json("/cut-once") == {"data": [1, 2, 3]}
    assert rec.calls["/cut-once"] == 2
    # the second request is a retry like any other in /metrics (it was counted nowhere but in the requests)
    assert sample("provider_retries_total", {"provider": provider, "reason": "undecodable"}) == 1.0


async def test_breaker_opens_fails_fast_half_opens_and_closes(app: Starlette, rec: Recorder) -> None:
    provider = provider_name()
    breaker = breaker_for(provider, "http://provider.test:80", failure_threshold=5, open_seconds=0.3)
    async with client(app, provider, retry=RetryPolicy(max_attempts=1)) as c:
        app.state.healthy = False
        for _ in range(5):
            with pytest.raises(Retriable):
                await c.get_json("/toggle")
        assert breaker.state == "open"
        assert sample("provider_circuit_state", {"provider": provider}) == 2.0
        with pytest.raises(CircuitOpen) as info:
            await c.get_json("/toggle")
        assert 0 < info.value.retry_after <= 0.3
        assert rec.calls["/toggle"] == 5  # the open circuit did not send

        await asyncio.sleep(0.35)
        assert breaker.state == "half_open"
        assert sample("provider_circuit_state", {"provider": provider}) == 1.0
        with pytest.raises(Retriable):  # the probe fails: open again
            await c.get_json("/toggle")
        assert breaker.state == "open"

        await asyncio.sleep(0.35)
        app.state.healthy = True
        app.state.delay = 0.1
        probe = asyncio.create_task(c.get_json("/toggle"))
        await asyncio.sleep(0.02)  # the probe holds the half-open slot; others are refused meanwhile
        with pytest.raises(CircuitOpen):
            await c.get_json("/toggle")
        assert await probe == {"ok": True}
        app.state.delay = 0.0
        assert breaker.state == "closed"
        assert sample("provider_circuit_state", {"provider": provider}) == 0.0
        assert await c.get_json("/toggle") == {"ok": True}


async def test_one_host_failing_does_not_open_the_breaker_of_another_host(app: Starlette, rec: Recorder) -> None:
    """The breaker was per provider: five 503s from one vendor's base URL (a sandbox, a proxy, a hostile host)
    opened it for every connection of that provider, and another vendor's healthy sync failed with CircuitOpen
    (found by a probe). It is per provider and origin; the metric shows the worst of them."""
    provider = provider_name()
    app.state.healthy = False
    bad = ProviderClient(provider, "http://bad.test:8140", transport=httpx.ASGITransport(app=app),
                         retry=RetryPolicy(max_attempts=1))
    good = ProviderClient(provider, "http://good.test", transport=httpx.ASGITransport(app=app),
                          retry=RetryPolicy(max_attempts=1))
    async with bad, good:
        for _ in range(5):
            with pytest.raises(Retriable):
                await bad.get_json("/toggle")
        with pytest.raises(CircuitOpen) as info:
            await bad.get_json("/toggle")
        assert "bad.test:8140" in str(info.value) and "5 failures in a row" in str(info.value)
        assert sample("provider_circuit_state", {"provider": provider}) == 2.0
        app.state.healthy = True
        assert await good.get_json("/toggle") == {"ok": True}  # the other host's breaker is closed
        assert good.breaker.state == "closed" and bad.breaker.state == "open"
        assert sample("provider_circuit_state", {"provider": provider}) == 2.0  # the worst breaker


async def test_a_body_beyond_the_limit_is_refused_not_held() -> None:
    """A provider ignoring pageSize (50,000 contacts in one page took 500 MB of the worker; found by a probe) or
    a gzip bomb is refused with SchemaMismatch once the decoded body passes max_response_bytes."""
    import gzip

    bomb = gzip.compress(b"[" + b"0," * 600_000 + b"0]")  # ~1.2 MB decoded from a few KB

    async def big(request: Request) -> Response:
        return Response(b"[" + b"1," * 300_000 + b"1]", media_type="application/json")

    async def zipped(request: Request) -> Response:
        return Response(bomb, media_type="application/json", headers={"Content-Encoding": "gzip"})

    async def small(request: Request) -> Response:
        return JSONResponse([1, 2, 3])

    app = Starlette(routes=[Route("/big", big), Route("/bomb", zipped), Route("/small", small)])
    assert len(bomb) < 10_000
    async with client(app, provider_name(), max_response_bytes=512 * 1024) as c:
        for path in ("/big", "/bomb"):
            with pytest.raises(SchemaMismatch) as info:
                await c.get_json(path)
            assert "larger than 0.5 MB" in str(info.value) and info.value.http_status == 200, path
        assert await c.get_json("/small") == [1, 2, 3]
        assert c.breaker.state == "closed"


async def test_a_redirect_is_not_followed_and_says_where_it_went() -> None:
    """A 3xx read 'vsco-workspace: GET /x -> 302: ' (nothing after the colon; found by a probe): the error names
    the other host (never the path or query, which may carry a token), and the credentials never go there."""
    rec = Recorder()

    async def moved(request: Request) -> Response:
        rec.hit(request)
        return Response(status_code=301, headers={"Location": "https://api.elsewhere.test/v2/x?token=s3cr3t"})

    async def same(request: Request) -> Response:
        rec.hit(request)
        return Response(status_code=302, headers={"Location": "/login?next=/x"})

    async def nowhere(request: Request) -> Response:
        rec.hit(request)
        return Response(status_code=302)

    app = Starlette(routes=[Route("/moved", moved), Route("/same", same), Route("/nowhere", nowhere)])
    async with client(app, provider_name(), headers={"X-API-KEY": "k"}) as c:
        with pytest.raises(Fatal) as info:
            await c.get_json("/moved")
        text = str(info.value)
        assert "-> 301: redirected to https://api.elsewhere.test:443 (not followed" in text, text
        assert "s3cr3t" not in text and "/v2/x" not in text
        with pytest.raises(Fatal) as info:
            await c.get_json("/same")
        assert "redirected to another path on the same host" in str(info.value) and "login" not in str(info.value)
        with pytest.raises(Fatal) as info:
            await c.get_json("/nowhere")
        assert "without a usable Location" in str(info.value)
    assert [path for path, _, _ in rec.seen] == ["/moved", "/same", "/nowhere"]  # each once, nothing followed


async def test_breaker_opens_on_failure_ratio_without_consecutive_run() -> None:
    breaker = breaker_for(provider_name(), failure_threshold=100, min_calls=10, failure_ratio=0.5)
    for _ in range(5):
        breaker.before_call()
        breaker.record_success()
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.snapshot()["window_failures"] == 5


def test_render_latest_single_and_multiprocess(tmp_path: Any) -> None:
    from wedsync.metrics import render_latest

    body, ctype = render_latest()
    assert ctype.startswith("text/plain") and b"provider_requests_total" in body
    script = (
        "from wedsync.metrics import SYNC_RECORDS, render_latest\n"
        "SYNC_RECORDS.labels('vsco', 'contacts', 'created').inc(3)\n"
        "print(render_latest()[0].decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert 'sync_records_total{outcome="created",provider="vsco",stream="contacts"} 3.0' in out.stdout
    assert any(tmp_path.iterdir())  # values were written to the shared directory
