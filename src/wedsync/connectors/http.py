"""The one provider HTTP layer: httpx.AsyncClient + shared rate budget + retries + circuit breaker + metrics.

Every connector talks to its provider through a :class:`ProviderClient`. Per attempt it

1. asks the provider's :class:`CircuitBreaker` for permission (``CircuitOpen`` at once when it is open),
2. takes a token from the account's :class:`RateBudget` (shared by every job of that provider account in the
   process, paused by ``Retry-After`` and ``X-RateLimit-*`` headers),
3. sends the request under an overall per-attempt deadline, reading at most ``max_response_bytes`` of body
   (decoded; ``SchemaMismatch`` beyond),
4. maps the outcome onto the connector error tree (ARCHITECTURE rule 4: an unknown outcome is not a failure):

   ========================================  =====================================================
   outcome                                   raised
   ========================================  =====================================================
   2xx, 304                                  (returned)
   429                                       ``RateLimited(retry_after)`` (header, else 1 s)
   401, 403                                  ``ReauthRequired``
   3xx (never followed)                      ``Fatal`` naming the other host (not the path or query)
   other 4xx                                 ``Fatal`` (provider text, truncated and scrubbed)
   408, 5xx                                  ``Retriable`` if replayable, else ``OutcomeUnknown``
   connect error/timeout, pool timeout       ``Retriable`` (the request never left)
   read/write timeout, dropped connection    ``Retriable`` if replayable, else ``OutcomeUnknown``
   ========================================  =====================================================

   A request is *replayable* when its method is idempotent (GET, HEAD, OPTIONS, PUT, DELETE) or it carries an
   idempotency key (the provider deduplicates; the key is identical on every retry).
5. records metrics and one structured, scrubbed log line (never headers or bodies).

:class:`RetryPolicy` retries ``Retriable``/``RateLimited`` inside :meth:`ProviderClient.request` with full
jitter; ``OutcomeUnknown`` and ``CircuitOpen`` go to the caller immediately.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx
import orjson

from wedsync.connectors.errors import (
    CircuitOpen,
    ConnectorError,
    Fatal,
    OutcomeUnknown,
    ProviderDown,
    RateLimited,
    ReauthRequired,
    Retriable,
    SchemaMismatch,
)
from wedsync.logging import get_logger, scrub_text
from wedsync.metrics import (
    CIRCUIT_STATE_VALUES,
    circuit_state_child,
    rate_limited_child,
    request_seconds_child,
    requests_child,
    retries_child,
    status_class,
)

__all__ = [
    "IDEMPOTENT_METHODS",
    "CircuitBreaker",
    "ProviderClient",
    "RateBudget",
    "RetryPolicy",
    "breaker_for",
    "budget_for",
    "circuit_states",
    "origin_of",
    "parse_rate_limit_reset",
    "parse_retry_after",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
DEFAULT_RATE_LIMIT_WAIT = 1.0
#: The longest wait a provider's header can order (a day). ``Retry-After: inf``, ``1e400`` or a date in the
#: year 9999 is a provider's bug, not a plan: uncapped it reached our own ``Retry-After`` header
#: (``math.ceil(inf)``: a 500) and the inbox's next attempt time (``timedelta`` overflow).
MAX_PROVIDER_WAIT = 86_400.0
ERROR_TEXT_LIMIT = 300
#: The largest response body read from a provider, decoded (a page of 100 records is about 100 KB). A provider
#: ignoring ``pageSize`` (50,000 contacts in one page took 500 MB of the worker) or a gzip bomb is refused
#: with ``SchemaMismatch`` before it is held in memory.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_REASON_ATTR = "retry_reason"  # set on mapped errors for the provider_retries_total{reason} label


# --------------------------------------------------------------------------------------------- header parsing


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date (RFC 9110, 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return _bounded_wait(seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; RFC 9110 dates are always UTC
        when = when.replace(tzinfo=UTC)
    return _bounded_wait(when.timestamp() - (now if now is not None else time.time()))


def _bounded_wait(seconds: float) -> float | None:
    """A header's wait in seconds, from 0 to ``MAX_PROVIDER_WAIT``; None for NaN (no wait was said)."""
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_PROVIDER_WAIT)


def parse_rate_limit_reset(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds until a rate-limit window resets: epoch seconds (or ms) when large, else delta seconds."""
    if value is None:
        return None
    try:
        x = float(value.strip())
    except ValueError:
        return parse_retry_after(value, now=now)  # some providers send an HTTP-date here
    wall = now if now is not None else time.time()
    if x > 1e12:
        return _bounded_wait(x / 1000.0 - wall)
    if x > 1e9:
        return _bounded_wait(x - wall)
    return _bounded_wait(x)


# ---------------------------------------------------------------------------------------------- rate budget


class RateBudget:
    """Token bucket for one provider account, plus pauses ordered by the provider's headers.

    ``rate`` is tokens per second and ``burst`` the bucket size; with ``rate=None`` only header-driven pauses
    apply. Waiters reserve a token and sleep until it is theirs (first come, first served), and every wait
    gets jitter so workers woken by the same ``Retry-After`` do not stampede. Thread-safe and not bound to an
    event loop: DBOS may run jobs of the same account on different threads.
    """

    def __init__(
        self,
        rate: float | None = None,
        burst: int | None = None,
        *,
        jitter: float = 0.1,
        max_pause: float = 3600.0,
    ) -> None:
        self._lock = threading.Lock()
        self.rate: float | None = None
        self.burst: float = 1.0
        self._tokens = 0.0
        self._updated = time.monotonic()
        self._blocked_until = 0.0
        self.blocked_by: int | None = None  # the HTTP status that ordered the current pause
        self.jitter = jitter
        self.max_pause = max_pause
        self.limit: int | None = None
        self.remaining: int | None = None
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: int | None) -> None:
        """Set the local pace; when two callers disagree, the stricter rate wins."""
        if rate is None:
            return
        if rate <= 0:
            raise ValueError("rate must be positive")
        with self._lock:
            if self.rate is None or rate < self.rate:
                self.rate = rate
                self.burst = float(burst if burst is not None else max(1, int(rate)))
                self._tokens = min(self._tokens, self.burst) if self._tokens else self.burst
                self._updated = time.monotonic()

    @property
    def paused_for(self) -> float:
        """Seconds until header-ordered pause ends (0 when not paused)."""
        return max(0.0, self._blocked_until - time.monotonic())

    def try_acquire(self) -> bool:
        """Take a token without waiting, if one is available and no pause is in force."""
        with self._lock:
            now = time.monotonic()
            if self._blocked_until > now:
                return False
            if self.rate is None:
                return True
            self._refill(now)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    async def acquire(self) -> float:
        """Wait until this account may send; returns the seconds waited."""
        waited = 0.0
        reserved = False
        try:
            while True:
                with self._lock:
                    now = time.monotonic()
                    if self._blocked_until > now:
                        wait = self._blocked_until - now
                    elif reserved or self.rate is None:
                        return waited
                    else:
                        self._refill(now)
                        self._tokens -= 1.0
                        reserved = True
                        if self._tokens >= 0.0:
                            return waited
                        wait = -self._tokens / self.rate
                wait += random.uniform(0.0, self.jitter * wait + 0.01)
                await asyncio.sleep(wait)
                waited += wait
        except BaseException:
            if reserved:  # cancelled while waiting: give the token back
                with self._lock:
                    self._tokens = min(self.burst, self._tokens + 1.0)
            raise

    def _refill(self, now: float) -> None:
        assert self.rate is not None
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def pause_for(self, seconds: float) -> None:
        """Nobody on this account sends for ``seconds`` (capped at ``max_pause``)."""
        if seconds <= 0:
            return
        until = time.monotonic() + min(seconds, self.max_pause)
        with self._lock:
            if until > self._blocked_until:
                self._blocked_until = until

    def observe(self, status: int, headers: httpx.Headers) -> float | None:
        """Feed a response's rate-limit headers; returns the pause imposed, if any."""
        retry_after = remaining = reset = limit = None
        for raw_key, raw_value in headers.raw:
            k = raw_key.lower()
            if k == b"retry-after":
                retry_after = raw_value
            elif k.endswith(b"ratelimit-remaining"):
                remaining = raw_value
            elif k.endswith(b"ratelimit-reset"):
                reset = raw_value
            elif k.endswith(b"ratelimit-limit"):
                limit = raw_value
        if retry_after is None and remaining is None and limit is None:
            return None
        pause: float | None = None
        if retry_after is not None and (status == 429 or status >= 500):
            pause = parse_retry_after(retry_after.decode("latin-1"))
        if limit is not None:
            self.limit = _int_or_none(limit)
        if remaining is not None:
            left = _int_or_none(remaining)
            self.remaining = left
            if left is not None and left <= 0:
                until_reset = parse_rate_limit_reset(reset.decode("latin-1")) if reset is not None else None
                pause = max(pause or 0.0, until_reset if until_reset is not None else DEFAULT_RATE_LIMIT_WAIT)
            elif left is not None and self.rate is not None:
                with self._lock:  # never burst beyond what the provider says is left
                    self._tokens = min(self._tokens, float(left))
        if pause:
            self.pause_for(pause)
            self.blocked_by = status
        return pause


def _int_or_none(raw: bytes) -> int | None:
    try:
        return int(float(raw.decode("latin-1").strip().split(",")[0]))
    except ValueError:
        return None


_budgets: dict[tuple[str, str], RateBudget] = {}
_registry_lock = threading.Lock()


def budget_for(
    provider: str, account_key: str = "default", *, rate: float | None = None, burst: int | None = None
) -> RateBudget:
    """The process-wide budget of one provider account (created on first use)."""
    key = (provider, account_key)
    budget = _budgets.get(key)
    if budget is None:
        with _registry_lock:
            budget = _budgets.get(key)
            if budget is None:
                budget = _budgets[key] = RateBudget(rate, burst)
                return budget
    budget.configure(rate, burst)
    return budget


# ------------------------------------------------------------------------------------------- circuit breaker


class CircuitBreaker:
    """Breaker of one provider host: closed -> open -> half-open (one probe) -> closed.

    There is one per provider *and origin* (scheme, host, port of the base URL): connections at the
    provider's own address share one, a connection pointed elsewhere (its ``base_url``: a sandbox, a region,
    a proxy) has its own, so a dead or hostile host one vendor set cannot stop every other vendor's calls to
    that provider (it did: five 503s from one vendor's base URL failed another's sync with ``CircuitOpen``).

    Opens after ``failure_threshold`` consecutive failures (``Retriable``/``OutcomeUnknown`` outcomes, not
    429s), or when at least ``min_calls`` attempts in the last ``window_seconds`` failed at
    ``failure_ratio`` or more. Stays open ``open_seconds`` (short, so callers fail over quickly), then lets
    one probe through; its success closes the circuit, its failure re-opens it.
    """

    def __init__(
        self,
        provider: str,
        origin: str = "",
        *,
        failure_threshold: int = 5,
        open_seconds: float = 5.0,
        window_seconds: float = 30.0,
        min_calls: int = 20,
        failure_ratio: float = 0.5,
        siblings: Mapping[str, CircuitBreaker] | None = None,
    ) -> None:
        self.provider = provider
        self.origin = origin
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.window_seconds = window_seconds
        self.min_calls = min_calls
        self.failure_ratio = failure_ratio
        self._lock = threading.Lock()
        self._state = "closed"
        self._consecutive = 0
        self._opened_until = 0.0
        self._probe_started: float | None = None
        self._window: deque[tuple[float, bool]] = deque()
        self._window_failures = 0
        self._gauge = circuit_state_child(provider)
        self._siblings: Mapping[str, CircuitBreaker] = siblings or {}  # the provider's breakers (gauge: max)
        self._publish()

    @property
    def state(self) -> str:
        """``"closed"``, ``"half_open"`` or ``"open"``."""
        with self._lock:
            return self._current(time.monotonic())

    @property
    def state_code(self) -> int:
        return CIRCUIT_STATE_VALUES[self.state]

    def snapshot(self) -> dict[str, Any]:
        """State for health pages."""
        with self._lock:
            now = time.monotonic()
            state = self._current(now)
            return {
                "provider": self.provider,
                "origin": self.origin,
                "state": state,
                "consecutive_failures": self._consecutive,
                "retry_after": max(0.0, self._opened_until - now) if state == "open" else 0.0,
                "window_calls": len(self._window),
                "window_failures": self._window_failures,
            }

    def _current(self, now: float) -> str:
        if self._state == "open" and now >= self._opened_until:
            self._set("half_open")
        if (
            self._state == "half_open"
            and self._probe_started is not None
            and now - self._probe_started > max(self.open_seconds, 30.0)
        ):
            self._probe_started = None  # the probe never reported back: allow another
        return self._state

    def _set(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._publish()

    def _publish(self) -> None:
        """``provider_circuit_state{provider}``: the worst state of the provider's breakers (one per origin)."""
        states = [b._state for b in list(self._siblings.values()) if b is not self] + [self._state]
        self._gauge.set(max(CIRCUIT_STATE_VALUES[x] for x in states))

    def before_call(self) -> bool:
        """Permission to send; returns True when this call is the half-open probe. Raises ``CircuitOpen``."""
        with self._lock:
            now = time.monotonic()
            state = self._current(now)
            if state == "closed":
                return False
            if state == "half_open" and self._probe_started is None:
                self._probe_started = now
                return True
            retry_after = self._opened_until - now if state == "open" else self.open_seconds
            failed, calls, in_a_row = self._window_failures, len(self._window), self._consecutive
        where = f"{self.provider} ({_host(self.origin)})" if self.origin else self.provider
        if state == "open":
            how = (f"{in_a_row} failures in a row" if in_a_row >= self.failure_threshold
                   else f"{failed} of its last {calls} calls failed")
            message = (f"{where} is failing ({how}); not calling it for {max(retry_after, 1.0):.0f}s "
                       f"(circuit breaker open)")
        else:
            message = f"{where} is failing; one test call is under way (circuit breaker half-open)"
        raise CircuitOpen(
            message,
            retry_after=max(retry_after, 0.05),
            provider=self.provider,
        )

    def record_success(self, probe: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            self._consecutive = 0
            self._push(now, False)
            if probe or self._state == "half_open":
                self._probe_started = None
                self._window.clear()
                self._window_failures = 0
                self._set("closed")

    def record_failure(self, probe: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            self._consecutive += 1
            self._push(now, True)
            if probe or self._state == "half_open":
                self._open(now)
                return
            if self._state != "closed":
                return
            if self._consecutive >= self.failure_threshold or (
                len(self._window) >= self.min_calls and self._window_failures >= self.failure_ratio * len(self._window)
            ):
                self._open(now)

    def release(self, probe: bool) -> None:
        """The call ended without telling anything about the provider's health (e.g. cancelled)."""
        if probe:
            with self._lock:
                self._probe_started = None

    def _open(self, now: float) -> None:
        self._opened_until = now + self.open_seconds
        self._probe_started = None
        self._set("open")

    def _push(self, now: float, failed: bool) -> None:
        window = self._window
        window.append((now, failed))
        self._window_failures += failed
        horizon = now - self.window_seconds
        while window and window[0][0] < horizon:
            _, old_failed = window.popleft()
            self._window_failures -= old_failed


_breakers: dict[str, dict[str, CircuitBreaker]] = {}  # provider -> origin -> breaker


def origin_of(url: str | httpx.URL) -> str:
    """``scheme://host:port`` of a base URL: what a breaker is kept per (never the path, which may be secret)."""
    parsed = httpx.URL(url) if isinstance(url, str) else url
    if not parsed.host:
        return ""
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"


def _host(origin: str) -> str:
    return origin.split("://", 1)[-1]


def breaker_for(provider: str, origin: str = "", **config: Any) -> CircuitBreaker:
    """The process-wide breaker of ``provider`` at ``origin`` (:func:`origin_of` the base URL); ``config``
    applies only when it is created."""
    breaker = _breakers.get(provider, {}).get(origin)
    if breaker is None:
        with _registry_lock:
            of_provider = _breakers.setdefault(provider, {})
            breaker = of_provider.get(origin)
            if breaker is None:
                breaker = of_provider[origin] = CircuitBreaker(provider, origin, siblings=of_provider, **config)
    return breaker


def circuit_states() -> dict[str, str]:
    """Current state of every provider's breakers in this process: the worst of each provider's origins."""
    out: dict[str, str] = {}
    for name, of_provider in list(_breakers.items()):
        states = [b.state for b in list(of_provider.values())]
        if states:
            out[name] = max(states, key=CIRCUIT_STATE_VALUES.__getitem__)
    return out


# ---------------------------------------------------------------------------------------------- retry policy


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a provider's ``retry_after`` wins when it is longer.

    At most ``max_attempts`` attempts and ``max_total_wait`` seconds of sleeping between them; a wait that
    would exceed the total is not taken and the last error is raised instead (the workflow reschedules).
    """

    max_attempts: int = 4
    base: float = 0.2
    cap: float = 10.0
    max_total_wait: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter delay after failed attempt number ``attempt`` (1-based)."""
        return random.uniform(0.0, min(self.cap, self.base * (2 ** (attempt - 1))))

    def delay(self, attempt: int, error: BaseException) -> float:
        delay = self.backoff(attempt)
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > delay:
            delay = float(retry_after)
        return delay


# -------------------------------------------------------------------------------------------- the client

#: How many times ``get_json`` reads a 2xx body again when it does not decode, before raising.
UNDECODABLE_REREADS = 2

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
_MAYBE_SENT = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.CloseError,
    httpx.TimeoutException,
    httpx.DecodingError,
)


class ProviderClient:
    """HTTP client for one provider account; use as ``async with ProviderClient(...) as client``.

    ``timeout`` is applied both as httpx's per-phase timeouts and as an overall deadline for each attempt
    (the largest phase timeout), so a slow-dripping response cannot hold a worker for ever.
    ``idempotency_header`` names the header carrying ``idempotency_key`` (``Idempotency-Key``,
    ``PayPal-Request-Id``); providers that take the key in the body still pass ``idempotency_key`` so the
    request counts as replayable. ``rate``/``burst`` set the local pace of the account's shared budget.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        account_key: str = "default",
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_header: str | None = None,
        rate: float | None = None,
        burst: int | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.provider = provider
        self.max_response_bytes = max_response_bytes
        self.account_key = account_key
        self.retry = retry or RetryPolicy()
        self.idempotency_header = idempotency_header
        timeouts = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        phases = [t for t in (timeouts.connect, timeouts.read, timeouts.write, timeouts.pool) if t is not None]
        self._deadline: float | None = max(phases) if phases else None
        self._client = httpx.AsyncClient(
            base_url=base_url,
            auth=auth,
            timeout=timeouts,
            transport=transport,
            headers=dict(headers) if headers else None,
            # Never follow redirects: a 3xx could send the account's credentials (custom auth headers
            # survive cross-origin redirects) or our requests to an address the SSRF guard refused.
            follow_redirects=False,
        )
        self.budget = budget_for(provider, account_key, rate=rate, burst=burst)
        self.breaker = breaker_for(provider, origin_of(self._client.base_url))
        self._log = get_logger("wedsync.http").bind(provider=provider)
        self._seconds = request_seconds_child(provider)

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying pooled client (for flows such as the OAuth code exchange)."""
        return self._client

    async def __aenter__(self) -> ProviderClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_json(
        self, path: str, params: Mapping[str, Any] | None = None, *, headers: Mapping[str, str] | None = None
    ) -> Any:
        """GET and decode a JSON body; a non-JSON or undecodable 2xx raises ``SchemaMismatch``.

        A 2xx body that does not decode is read again (GET is safe to repeat) up to ``UNDECODABLE_REREADS``
        times with the retry policy's backoff: a body cut short on the way (a proxy, a dropped connection
        with a wrong length) is usually fine the next time, while a provider that really changed what it
        sends still raises, with the reason. A 304 (only possible when ``headers`` carry a validator)
        returns ``None``.
        """
        attempt = 0
        while True:
            attempt += 1
            response = await self.request("GET", path, params=params, headers=headers)
            if response.status_code == 304:
                return None
            try:
                return self._decode_json(response)
            except SchemaMismatch as exc:
                if attempt > UNDECODABLE_REREADS:
                    raise
                self._log.warning("provider.undecodable_body", path=response.request.url.path, attempt=attempt,
                                  error=str(exc))
                retries_child(self.provider, "undecodable").inc()  # another request, like any retry
                await asyncio.sleep(self.retry.backoff(attempt))

    def _decode_json(self, response: httpx.Response) -> Any:
        ctype = response.headers.get("content-type", "")
        where = f"{self.provider}: GET {_path(response.request.url)}"
        if "json" not in ctype.lower():
            raise SchemaMismatch(
                f"{where}: expected JSON, got {ctype or 'no content type'!r}",
                provider=self.provider,
                http_status=response.status_code,
            )
        try:
            return orjson.loads(response.content)
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            raise SchemaMismatch(
                f"{where}: invalid JSON ({exc.__class__.__name__})",
                provider=self.provider,
                http_status=response.status_code,
            ) from exc

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send with retries; returns a 2xx or 304 response, otherwise raises the mapped connector error."""
        method = method.upper()
        if idempotency_key is not None and self.idempotency_header:
            headers = {**(headers or {}), self.idempotency_header: idempotency_key}
        request = self._client.build_request(
            method, path, params=params, json=json, data=data, content=content, headers=headers
        )
        replayable = method in IDEMPOTENT_METHODS or idempotency_key is not None
        # never the query: it may carry credentials or personal data (registered secrets in the path are
        # removed by the log processor; only error messages, which leave the logs, are scrubbed here)
        log_path = request.url.path
        policy = self.retry
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                # A pause ordered by the provider (Retry-After, X-RateLimit-Reset) longer than what is left
                # of our wait allowance is not waited out here: the caller (a workflow) reschedules.
                pause = self.budget.paused_for
                if pause > policy.max_total_wait - waited:
                    down = (self.budget.blocked_by or 0) >= 500
                    if down:
                        raise ProviderDown(f"{self.provider} is unavailable (HTTP {self.budget.blocked_by}) and "
                                           f"asked us to wait {pause:.0f}s", retry_after=pause,
                                           provider=self.provider, http_status=None)
                    raise RateLimited(f"{self.provider} asked us to wait {pause:.0f}s", retry_after=pause,
                                      provider=self.provider, http_status=None)
                return await self._attempt(request, method, log_path, attempt, replayable)
            except Retriable as exc:
                unsent_pause = isinstance(exc, RateLimited) and exc.http_status is None
                if isinstance(exc, CircuitOpen) or unsent_pause or attempt >= policy.max_attempts:
                    raise
                delay = policy.delay(attempt, exc)
                if waited + delay > policy.max_total_wait:
                    raise
                retries_child(self.provider, _retry_reason(exc)).inc()
                waited += delay
                await asyncio.sleep(delay)

    async def _attempt(
        self, request: httpx.Request, method: str, path: str, attempt: int, replayable: bool
    ) -> httpx.Response:
        probe = self.breaker.before_call()
        if not self.budget.try_acquire():
            await self.budget.acquire()
        response: httpx.Response | None = None
        error: ConnectorError | None = None
        start = time.perf_counter()
        try:
            if self._deadline is not None:
                async with asyncio.timeout(self._deadline):
                    response = await self._send(request)
            else:
                response = await self._send(request)
        except ConnectorError as exc:  # raised by an auth flow, e.g. ReauthRequired on invalid_grant
            error = exc
        except TimeoutError as exc:
            error = self._transport_error(request, exc, replayable, sent=True, reason="timeout")
        except _NEVER_SENT as exc:
            error = self._transport_error(request, exc, replayable, sent=False, reason="connect")
        except _MAYBE_SENT as exc:
            reason = "timeout" if isinstance(exc, httpx.TimeoutException) else "protocol"
            error = self._transport_error(request, exc, replayable, sent=True, reason=reason)
        except httpx.HTTPError as exc:  # UnsupportedProtocol, LocalProtocolError, TooManyRedirects: our bug
            error = Fatal(
                f"{self.provider}: {method} {_path(request.url)}: {exc.__class__.__name__}",
                provider=self.provider,
            )
            error.__cause__ = exc
        except BaseException:
            self.breaker.release(probe)
            raise
        elapsed = time.perf_counter() - start

        status = response.status_code if response is not None else None
        if response is not None:
            self.budget.observe(response.status_code, response.headers)
            error = self._map_status(request, response, replayable)

        if isinstance(error, OutcomeUnknown) or (isinstance(error, Retriable) and not isinstance(error, RateLimited)):
            self.breaker.record_failure(probe)
        elif response is not None:
            self.breaker.record_success(probe)  # the provider answered, even if it said no
        else:
            self.breaker.release(probe)

        requests_child(self.provider, method, status_class(status)).inc()
        self._seconds.observe(elapsed)
        if error is None:
            self._log.debug(
                "provider.request",
                method=method,
                path=path,
                status=status,
                ms=round(elapsed * 1000.0, 1),
                attempt=attempt,
            )
            assert response is not None
            return response
        self._log.warning(
            "provider.request",
            method=method,
            path=path,
            status=status,
            ms=round(elapsed * 1000.0, 1),
            attempt=attempt,
            error=error.__class__.__name__,
        )
        raise error

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send and read the body, decoded, up to ``max_response_bytes`` (``SchemaMismatch`` beyond)."""
        response = await self._client.send(request, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_response_bytes and not response.headers.get(
                    "content-encoding"):
                raise self._too_large(request, response)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise self._too_large(request, response)
                chunks.append(chunk)
            response._content = b"".join(chunks)  # what Response.aread() sets, read here with a limit
        finally:
            await response.aclose()
        return response

    def _too_large(self, request: httpx.Request, response: httpx.Response) -> SchemaMismatch:
        limit = f"{self.max_response_bytes / 1_048_576:g} MB"
        return SchemaMismatch(
            f"{self.provider}: {request.method} {_path(request.url)} -> {response.status_code}: the response is "
            f"larger than {limit}; not read", provider=self.provider, http_status=response.status_code)

    def _transport_error(
        self, request: httpx.Request, exc: BaseException, replayable: bool, *, sent: bool, reason: str
    ) -> ConnectorError:
        what = (f"{self.provider}: {request.method} {_path(request.url)}: {self._in_words(exc)} "
                f"({exc.__class__.__name__})")
        error: ConnectorError
        if not sent:
            error = Retriable(f"{what}; nothing was sent", provider=self.provider)
        elif replayable:
            error = Retriable(what, provider=self.provider)
        else:
            error = OutcomeUnknown(f"{what}: the request may have been executed", provider=self.provider)
        error.__cause__ = exc
        setattr(error, _REASON_ATTR, reason)
        return error

    def _in_words(self, exc: BaseException) -> str:
        """What happened on the wire, as a vendor reads it (the status of a connection shows it)."""
        if isinstance(exc, httpx.ConnectTimeout):
            return "no connection to the provider within the timeout"
        if isinstance(exc, httpx.ConnectError):
            return "could not connect to the provider"
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            deadline = f" within {self._deadline:g}s" if self._deadline is not None else ""
            return f"the provider did not answer in full{deadline}"
        if isinstance(exc, httpx.DecodingError):
            return "the provider's response did not decode as its Content-Encoding said"
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.CloseError):
            return "the provider closed or reset the connection before answering in full"
        return "the request to the provider failed"

    def _map_status(self, request: httpx.Request, response: httpx.Response, replayable: bool) -> ConnectorError | None:
        status = response.status_code
        if 200 <= status < 300 or status == 304:
            return None
        provider = self.provider
        where = f"{provider}: {request.method} {_path(request.url)} -> {status}"
        if status == 429:
            rate_limited_child(provider).inc()
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is None:
                retry_after = self.budget.paused_for or DEFAULT_RATE_LIMIT_WAIT
                self.budget.pause_for(retry_after)  # the whole account is over its quota, not just us
            return RateLimited(f"{where}: rate limited", retry_after=retry_after, provider=provider)
        if status in (401, 403):
            return ReauthRequired(f"{where}: credentials rejected", provider=provider, http_status=status)
        if status == 408 or status >= 500:
            if replayable:
                err: ConnectorError = Retriable(where, provider=provider, http_status=status)
            else:
                err = OutcomeUnknown(
                    f"{where}: the request may have been executed", provider=provider, http_status=status
                )
            setattr(err, _REASON_ATTR, "5xx" if status >= 500 else "timeout")
            return err
        if 300 <= status < 400:
            return Fatal(f"{where}: {_redirect_text(request, response)}", provider=provider, http_status=status)
        return Fatal(f"{where}: {_error_text(response)}", provider=provider, http_status=status)


def _redirect_text(request: httpx.Request, response: httpx.Response) -> str:
    """What a vendor can act on when the provider redirects (never followed: the credentials would go along):
    where to, by origin only (a path or query may carry a token), and what to check."""
    location = response.headers.get("location", "").strip()
    try:
        target = request.url.join(location) if location else None
    except (httpx.InvalidURL, ValueError):
        target = None
    if target is None or not target.host:
        return "redirected without a usable Location (not followed); check the connection's base URL"
    if origin_of(target) == origin_of(request.url):
        return ("redirected to another path on the same host (not followed); check the connection's base URL")
    return (f"redirected to {target.scheme}://{_host(origin_of(target))} (not followed, so the credentials stay "
            f"here); if the provider moved, set the connection's base URL to it")


def _path(url: httpx.URL) -> str:
    """A request's path as errors and logs may show it: without the query, and with any registered secret
    removed (a Zapier catch hook's path is its secret; errors reach the API, the outbox and the connection's
    status, which the log scrubber never sees)."""
    return scrub_text(url.path)


def _error_text(response: httpx.Response) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError, httpx.ResponseNotRead):
        return "(undecodable body)"
    text = " ".join(text[: ERROR_TEXT_LIMIT * 2].split())
    if len(text) > ERROR_TEXT_LIMIT:
        text = text[:ERROR_TEXT_LIMIT] + "..."
    return scrub_text(text)


def _retry_reason(exc: BaseException) -> str:
    if isinstance(exc, RateLimited):
        return "rate_limited"
    return str(getattr(exc, _REASON_ATTR, "other"))
