"""The log scrubber: registered secrets, secret keys, URLs and Authorization headers never reach log output."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wedsync.connectors.auth import BearerAuth
from wedsync.connectors.errors import Fatal, Retriable
from wedsync.connectors.http import ProviderClient, RetryPolicy
from wedsync.logging import (
    REDACTED,
    configure_logging,
    forget_secret,
    get_logger,
    is_secret_key,
    register_secret,
    scrub,
    scrub_text,
)


@contextlib.contextmanager
def _logging_into(level: str, *, json: bool) -> Iterator[io.StringIO]:
    """configure_logging into a buffer, restoring structlog and the root logger afterwards."""
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging(level, json=json, stream=buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)
        structlog.configure(**saved_config)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """JSON lines at DEBUG into a buffer."""
    with _logging_into("DEBUG", json=True) as buffer:
        yield buffer


def secret() -> str:
    return "tok_" + uuid.uuid4().hex


def test_secret_key_names() -> None:
    for name in [
        "Authorization",
        "X-API-KEY",
        "api_key",
        "apikey",
        "access_token",
        "refresh-token",
        "client_secret",
        "password",
        "code",
        "code_verifier",
        "Set-Cookie",
        "signature",
        "key",
        "stripe_secret_key",
        "webhook_secret",
    ]:
        assert is_secret_key(name), name
    for name in ["provider", "path", "status", "idempotency_key_hash", "keyword", "monkey", "event"]:
        assert not is_secret_key(name), name


def test_scrub_nested_urls_and_registered_values() -> None:
    value = secret()
    register_secret(value)
    register_secret("short")  # under 6 characters: ignored, it would redact ordinary words
    out = scrub(
        {
            "request": {"headers": {"Authorization": "Bearer abc.def", "Accept": "application/json"}},
            "url": "https://api.example.com/v1/me?page=2&access_token=AT123&api_key=K&x=1#frag",
            "note": f"retrying with {value} (encoded {value.replace('_', '%5F')})",
            "items": [{"password": "hunter22"}, "short story"],
            "count": 3,
        }
    )
    assert out["request"]["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert out["url"] == (f"https://api.example.com/v1/me?page=2&access_token={REDACTED}&api_key={REDACTED}&x=1#frag")
    assert value not in out["note"]
    assert out["items"] == [{"password": REDACTED}, "short story"]
    assert out["count"] == 3
    assert scrub_text("header Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig") == f"header Bearer {REDACTED}"
    forget_secret(value)
    assert scrub_text(value) == value


def test_many_registered_secrets_longest_match_wins() -> None:
    base = "sk_" + uuid.uuid4().hex
    values = [base, base + "_extended", *(f"{base}{i:04d}" for i in range(300))]
    for v in values:
        register_secret(v)
    text = f"a={base}_extended b={base}0042 c={base}"
    assert scrub_text(text) == f"a={REDACTED} b={REDACTED} c={REDACTED}"
    for v in values:
        forget_secret(v)


def test_log_output_never_contains_secrets(captured: io.StringIO) -> None:
    value = secret()
    register_secret(value)
    log = get_logger("wedsync.test")
    log.info("vault.decrypted", connection="c1", detail=f"loaded {value}")
    log.info(
        "provider.call",
        headers={"Authorization": f"Bearer {value}", "X-Api-Key": "raw-key-material"},
        url=f"https://p.example/cb?code=AUTHCODE42&state=s&client_secret={value}",
    )
    log.info(f"message text with {value}", token="tkn-other-9999")
    logging.getLogger("uvicorn.error").warning("stdlib %s says %s", "uvicorn", value)
    logging.getLogger("dbos").error("Authorization: Bearer %s", "zzzzzzzzzzzz")
    try:
        raise RuntimeError(f"boom with {value}")
    except RuntimeError:
        log.exception("provider.failed")

    output = captured.getvalue()
    assert value not in output
    assert "raw-key-material" not in output
    assert "AUTHCODE42" not in output
    assert "tkn-other-9999" not in output
    assert "zzzzzzzzzzzz" not in output
    assert output.count(REDACTED) >= 8
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert {line["logger"] for line in lines} >= {"wedsync.test", "uvicorn.error", "dbos"}
    assert any("RuntimeError" in line.get("exception", "") for line in lines)


async def test_provider_client_logs_scrubbed(captured: io.StringIO) -> None:
    token = secret()

    async def ok(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def fail(request: Request) -> Response:
        echoed = request.headers.get("authorization", "")
        return JSONResponse({"error": "bad", "echo": echoed}, status_code=400)

    async def down(request: Request) -> Response:
        return JSONResponse({"error": "down"}, status_code=503)

    app = Starlette(routes=[Route("/ok", ok), Route("/fail", fail), Route("/down", down)])
    provider = "logtest-" + uuid.uuid4().hex[:6]
    async with ProviderClient(
        provider,
        "http://provider.test",
        auth=BearerAuth(token),
        transport=httpx.ASGITransport(app=app),
        retry=RetryPolicy(max_attempts=2, base=0.01, cap=0.01),
    ) as client:
        await client.get_json("/ok", params={"access_token": token, "page": "3"})
        with pytest.raises(Fatal) as fatal:
            await client.get_json("/fail")
        with pytest.raises(Retriable):
            await client.get_json("/down")
        get_logger("wedsync.connector").warning("sync.failed", error=fatal.value.message)

    output = captured.getvalue()
    assert token not in output
    assert token not in fatal.value.message
    assert "page" not in output  # the query string is never logged, only the path
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    # this client's lines (a workflow of an earlier test may still be retrying its own provider meanwhile)
    attempts = [line for line in lines if line["event"] == "provider.request" and line["provider"] == provider]
    assert [(a["path"], a["status"], a["attempt"]) for a in attempts] == [
        ("/ok", 200, 1),
        ("/fail", 400, 1),
        ("/down", 503, 1),
        ("/down", 503, 2),
    ]
    assert all(set(a) >= {"provider", "method", "path", "status", "ms", "attempt"} for a in attempts)


def test_configure_logging_is_idempotent_and_quietens_httpx(captured: io.StringIO) -> None:
    buffer = io.StringIO()
    configure_logging("INFO", json=False, stream=buffer)
    configure_logging("INFO", json=False, stream=buffer)
    marked = [h for h in logging.getLogger().handlers if getattr(h, "_wedsync_handler", False)]
    assert len(marked) == 1
    logging.getLogger("httpx").info("HTTP Request: GET https://x.example/?token=abc")
    get_logger("wedsync.test").info("hello", password="pw-123456")
    text = buffer.getvalue()
    assert "HTTP Request" not in text
    assert "hello" in text and "pw-123456" not in text
    with pytest.raises(ValueError):
        configure_logging("LOUD")


def test_dbos_logger_stays_routed_through_the_scrubber(captured: io.StringIO) -> None:
    from dbos._logger import dbos_logger, init_logger

    init_logger()  # what DBOS() does at construction: it must not install its own console handler
    value = secret()
    register_secret(value)
    dbos_logger.warning("workflow failed with %s", value)
    assert dbos_logger.propagate
    assert value not in captured.getvalue()
    assert "workflow failed with [REDACTED]" in captured.getvalue()


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """The console renderer at INFO (as ``wedsync serve`` logs by default) into a buffer."""
    with _logging_into("INFO", json=False) as buffer:
        yield buffer


def test_an_availability_feeds_token_never_reaches_the_log(console: io.StringIO) -> None:
    """The feed's path is its secret (docs/calendars.md: only its SHA-256 is stored), but uvicorn's access log
    wrote ``GET /calendar/feeds/<token>.ics`` as it came."""
    token = "uX-4RU7GrNVi3IeC2phYJimkatecV7G3"
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET",
                                             f"/calendar/feeds/{token}.ics", "1.1", 200)
    get_logger("wedsync.demo").info(f"The Knot reads http://127.0.0.1:8000/calendar/feeds/{token}.ics",
                                    url=f"https://hub.example/calendar/feeds/{token}.ics?x=1")
    output = console.getvalue()
    # uvicorn's access line is off (test_uvicorn_access_lines_stay_off_once_routed); the demo's line and its url
    assert token not in output and output.count(f"/calendar/feeds/{REDACTED}.ics") >= 2, output
    assert scrub_text("DELETE /api/calendar/feeds/01m8xy342g4ay7173hm8hnk7jq") == \
        "DELETE /api/calendar/feeds/01m8xy342g4ay7173hm8hnk7jq"  # a feed's id is no secret


def test_control_characters_in_logged_values_are_escaped(console: io.StringIO) -> None:
    """A path such as ``/api/x%0a2026-... [error] forged`` was logged raw (``path=req.url.path``): a forged line,
    or a terminal escape with ``%1b``. Every logged value is one line; a traceback keeps its lines."""
    forged = "/api/crm/clients/x\n2026-12-03T12:00:00Z [error    ] forged\x1b[2J\x00"
    log = get_logger("wedsync.api")
    log.warning("store unavailable", path=forged)
    log.warning(f"message {forged}")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        log.exception("failed", path=forged)
    output = console.getvalue()
    assert "\x1b" not in output and "\x00" not in output
    assert not any(line.startswith("2026-12-03T12:00:00Z") for line in output.splitlines()), output
    assert output.count("forged") == 3 and output.count("[2J") == 3, output
    assert "\nRuntimeError: boom\nsecond line" in output  # the traceback is not escaped


def test_sync_and_delta_tokens_in_urls_are_scrubbed() -> None:
    line = ('127.0.0.1:43822 - "GET /calendar/v3/calendars/x/events?maxResults=250&syncToken=eyJjIjogImZ HTTP/1.1" '
            '"GET /me/calendarView/delta?$deltatoken=eyJsbyI6ICIy&$skiptoken=abc123&pageToken=p9" ?tokenize=1')
    scrubbed = scrub_text(line)
    assert "eyJ" not in scrubbed and "abc123" not in scrubbed and "p9" not in scrubbed
    assert "maxResults=250" in scrubbed and "tokenize=1" in scrubbed and scrubbed.count(REDACTED) == 4


def test_uvicorn_access_lines_stay_off_once_routed(captured: io.StringIO) -> None:
    """Every server of the hub runs with ``access_log=False``; routing uvicorn's loggers through the root handler
    (an API lifespan in the demo) turned the sandboxes' request lines back on, sync tokens and all."""
    logging.getLogger("uvicorn.access").info('127.0.0.1:1 - "GET /events?syncToken=abc HTTP/1.1" 200')
    logging.getLogger("uvicorn.error").warning("still routed")
    lines = captured.getvalue()
    assert "GET /events" not in lines and "still routed" in lines
