"""Fault injection for emulators: ASGI middleware driven by a run-time configurable, seeded ``FaultConfig``.

Every provider request draws the same fixed number of values from the injector's ``random.Random``, in the
same order, whatever the configuration; so for a given fault seed the n-th request meets the same fate on
every run. Checks run in this order: outage window (503), per-key quota (429), latency, random rate limit
(429), random server error (5xx), timeout (the response is held back), then the real handler, whose answer
may be replaced by malformed JSON or cut short. Webhook faults (duplicates, reordering) are read by
``wedsync.sandbox.hooks.WebhookDispatcher``.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ErrorBody", "FaultConfig", "FaultInjector", "FaultMiddleware", "OutageWindow", "RequestFate"]

ErrorBody = Callable[[int, str, str], bytes]
"""``(status, kind, detail) -> JSON bytes`` in the provider's own error format; kind is
``"server-error"``, ``"rate-limit"`` or ``"outage"``."""


class OutageWindow(BaseModel):
    """A period of 503s: ``{"start": iso, "end": iso}`` or ``{"for_seconds": N}`` (from now)."""

    model_config = ConfigDict(extra="forbid")

    start: datetime | None = None
    end: datetime | None = None
    for_seconds: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _resolve(self) -> OutageWindow:
        if self.for_seconds is not None:
            if self.start is not None or self.end is not None:
                raise ValueError("give either for_seconds or start/end")
            self.start = datetime.now(UTC)
            self.end = self.start + timedelta(seconds=self.for_seconds)
            self.for_seconds = None
        if self.start is None or self.end is None:
            raise ValueError("an outage needs start and end, or for_seconds")
        if self.start.tzinfo is None:
            self.start = self.start.replace(tzinfo=UTC)
        if self.end.tzinfo is None:
            self.end = self.end.replace(tzinfo=UTC)
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class FaultConfig(BaseModel):
    """What can go wrong, per emulator. Rates are probabilities per request (or per webhook delivery)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_statuses: list[int] = Field(default_factory=lambda: [500, 502, 503])
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)
    retry_after_seconds: int = Field(default=1, ge=0)
    quota_per_second: int | None = Field(default=None, ge=1)
    latency_ms: float = Field(default=0.0, ge=0)
    latency_jitter_ms: float = Field(default=0.0, ge=0)
    outages: list[OutageWindow] = Field(default_factory=list)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_seconds: float = Field(default=30.0, ge=0)
    malformed_rate: float = Field(default=0.0, ge=0, le=1)
    truncated_rate: float = Field(default=0.0, ge=0, le=1)
    truncate_mode: Literal["short-body", "drop-connection"] = "short-body"
    webhook_duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    webhook_reorder: bool = False
    webhook_reorder_window_ms: int = Field(default=150, ge=0)

    @model_validator(mode="after")
    def _check_statuses(self) -> FaultConfig:
        if not self.error_statuses or any(not 500 <= s <= 599 for s in self.error_statuses):
            raise ValueError("error_statuses must be a non-empty list of 5xx codes")
        return self


@dataclass(slots=True)
class RequestFate:
    """What the injector decided for one request (drawn up front so the sequence is reproducible)."""

    outage_retry_after: int | None = None
    over_quota: bool = False
    delay: float = 0.0
    rate_limited: bool = False
    error_status: int | None = None
    hold_seconds: float = 0.0
    malformed: bool = False
    truncate_at: float | None = None  # fraction of the body to keep


@dataclass
class FaultInjector:
    """Holds one emulator's fault configuration, its RNGs and its request statistics."""

    config: FaultConfig = field(default_factory=lambda: FaultConfig())
    rng: random.Random = field(init=False)
    hook_rng: random.Random = field(init=False)
    by_status: Counter[int] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    webhooks: Counter[str] = field(default_factory=Counter)
    _quota: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.configure(self.config)

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration and restart both RNGs from its seed."""
        self.config = config
        self.rng = random.Random(config.seed)
        self.hook_rng = random.Random(config.seed + 1)
        self._quota.clear()

    def reset_stats(self) -> None:
        self.by_status.clear()
        self.injected.clear()
        self.webhooks.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": sum(self.by_status.values()),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "injected": dict(sorted(self.injected.items())),
            "webhooks": dict(sorted(self.webhooks.items())),
        }

    def decide(self, quota_key: str | None, now: float | None = None) -> RequestFate:
        cfg = self.config
        rng = self.rng
        u_rate, u_error, u_status, u_timeout, u_malformed, u_truncate, u_cut, u_jitter = (
            rng.random() for _ in range(8)
        )
        fate = RequestFate()
        now = time.time() if now is None else now
        for window in cfg.outages:
            assert window.start is not None and window.end is not None
            if window.start.timestamp() <= now < window.end.timestamp():
                fate.outage_retry_after = max(1, math.ceil(window.end.timestamp() - now))
                return fate
        if cfg.quota_per_second is not None:
            second = int(now)
            key = quota_key or ""
            start, count = self._quota.get(key, (second, 0))
            if start != second:
                start, count = second, 0
            count += 1
            self._quota[key] = (start, count)
            if count > cfg.quota_per_second:
                fate.over_quota = True
                return fate
        if cfg.latency_ms or cfg.latency_jitter_ms:
            fate.delay = max(0.0, cfg.latency_ms + cfg.latency_jitter_ms * (2 * u_jitter - 1)) / 1000
        if u_rate < cfg.rate_limit_rate:
            fate.rate_limited = True
        elif u_error < cfg.error_rate:
            fate.error_status = cfg.error_statuses[int(u_status * len(cfg.error_statuses))]
        else:
            if u_timeout < cfg.timeout_rate:
                fate.hold_seconds = cfg.timeout_seconds
            if u_malformed < cfg.malformed_rate:
                fate.malformed = True
            elif u_truncate < cfg.truncated_rate:
                fate.truncate_at = 0.1 + 0.8 * u_cut
        return fate


_MALFORMED = b'{"type":"collection","meta":{"currentPage":1,,"items":[{"id":undefined}NaN'


class FaultMiddleware:
    """ASGI middleware in front of one emulator; also counts its responses by status."""

    def __init__(self, app: ASGIApp, injector: FaultInjector, error_body: ErrorBody,
                 quota_key: Callable[[Scope], str | None] | None = None) -> None:
        self.app = app
        self.injector = injector
        self.error_body = error_body
        self.quota_key = quota_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        injector = self.injector
        fate = injector.decide(self.quota_key(scope) if self.quota_key else None)
        if fate.outage_retry_after is not None:
            injector.injected["outage"] += 1
            await self._error(send, 503, "outage", "The service is temporarily unavailable.",
                              fate.outage_retry_after)
            return
        if fate.over_quota:
            injector.injected["quota"] += 1
            await self._error(send, 429, "rate-limit", "Exceeded request quota.", 1)
            return
        if fate.delay:
            injector.injected["latency"] += 1
            await asyncio.sleep(fate.delay)
        if fate.rate_limited:
            injector.injected["rate_limit"] += 1
            await self._error(send, 429, "rate-limit", "Exceeded request quota.",
                              injector.config.retry_after_seconds)
            return
        if fate.error_status is not None:
            injector.injected["error"] += 1
            await self._error(send, fate.error_status, "server-error", "An unexpected error occurred.", None)
            return
        if fate.hold_seconds:
            injector.injected["timeout"] += 1
            await asyncio.sleep(fate.hold_seconds)
        if fate.malformed or fate.truncate_at is not None:
            await self._rewrite(scope, receive, send, fate)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                injector.by_status[message["status"]] += 1
            await send(message)

        await self.app(scope, receive, counting_send)

    async def _error(self, send: Send, status: int, kind: str, detail: str, retry_after: int | None) -> None:
        body = self.error_body(status, kind, detail)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        self.injector.by_status[status] += 1
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _rewrite(self, scope: Scope, receive: Receive, send: Send, fate: RequestFate) -> None:
        """Run the real handler (its side effects happen), then answer 200 with a broken body."""
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        real = b"".join(chunks)
        declared: int
        if fate.malformed:
            self.injector.injected["malformed"] += 1
            body = _MALFORMED
            declared = len(body)
        else:
            self.injector.injected["truncated"] += 1
            assert fate.truncate_at is not None
            if len(real) < 2:
                real = json.dumps({"type": "unknown", "detail": "truncated"}).encode()
            body = real[: max(1, min(len(real) - 1, int(len(real) * fate.truncate_at)))]
            drop = self.injector.config.truncate_mode == "drop-connection"
            declared = len(real) if drop else len(body)
        self.injector.by_status[200] += 1
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(declared).encode())]})
        await send({"type": "http.response.body", "body": body})
