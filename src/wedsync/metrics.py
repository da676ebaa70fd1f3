"""Prometheus metrics shared by the whole hub, and rendering of the exposition format.

Metrics live in prometheus-client's default registry. When ``PROMETHEUS_MULTIPROC_DIR`` is set (several
worker processes behind one scrape endpoint), values are written to that directory by every process and
:func:`render_latest` aggregates them with the multiprocess collector.

The ``*_child`` helpers cache labelled children: ``labels()`` costs a dict lookup plus lock per call, and the
provider HTTP layer observes several metrics per request.
"""

from __future__ import annotations

import os
from functools import lru_cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = [
    "CIRCUIT_STATE_VALUES",
    "PROVIDER_CIRCUIT_STATE",
    "PROVIDER_RATE_LIMITED",
    "PROVIDER_REQUESTS",
    "PROVIDER_REQUEST_SECONDS",
    "PROVIDER_RETRIES",
    "SYNC_RECORDS",
    "SYNC_RUNS",
    "WEBHOOK_EVENTS",
    "circuit_state_child",
    "rate_limited_child",
    "render_latest",
    "request_seconds_child",
    "requests_child",
    "retries_child",
    "status_class",
]

PROVIDER_REQUESTS = Counter(
    "provider_requests",
    "HTTP attempts sent to providers, by response status class (or 'error' when no response came back)",
    ["provider", "method", "status_class"],
)
PROVIDER_REQUEST_SECONDS = Histogram(
    "provider_request_seconds",
    "Duration of one HTTP attempt to a provider",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
PROVIDER_RETRIES = Counter(
    "provider_retries",
    "Retries of provider requests, by reason (5xx, timeout, connect, protocol, rate_limited, undecodable)",
    ["provider", "reason"],
)
PROVIDER_RATE_LIMITED = Counter(
    "provider_rate_limited",
    "Responses with HTTP 429 from a provider",
    ["provider"],
)
PROVIDER_CIRCUIT_STATE = Gauge(
    "provider_circuit_state",
    "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open",
    ["provider"],
    multiprocess_mode="livemax",
)
WEBHOOK_EVENTS = Counter(
    "webhook_events",
    "Inbound webhook events, by outcome (accepted, duplicate, bad_signature, rejected, processed, failed)",
    ["provider", "outcome"],
)
SYNC_RECORDS = Counter(
    "sync_records",
    "Records handled by sync runs, by outcome (created, updated, unchanged, conflict, failed)",
    ["provider", "stream", "outcome"],
)

SYNC_RUNS = Counter(
    "sync_runs",
    "Sync runs ended, by outcome (succeeded, failed) and, for a failure, its error class (SchemaMismatch, "
    "ReauthRequired, Retriable, ...; 'none' for a success)",
    ["provider", "outcome", "error"],
)

CIRCUIT_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}

_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def status_class(status: int | None) -> str:
    """``"2xx"``.. ``"5xx"``, or ``"error"`` when there was no HTTP response."""
    if status is None:
        return "error"
    return _STATUS_CLASSES.get(status // 100, "error")


@lru_cache(maxsize=8192)
def requests_child(provider: str, method: str, status_cls: str) -> Counter:
    return PROVIDER_REQUESTS.labels(provider, method, status_cls)


@lru_cache(maxsize=1024)
def request_seconds_child(provider: str) -> Histogram:
    return PROVIDER_REQUEST_SECONDS.labels(provider)


@lru_cache(maxsize=4096)
def retries_child(provider: str, reason: str) -> Counter:
    return PROVIDER_RETRIES.labels(provider, reason)


@lru_cache(maxsize=1024)
def rate_limited_child(provider: str) -> Counter:
    return PROVIDER_RATE_LIMITED.labels(provider)


@lru_cache(maxsize=1024)
def circuit_state_child(provider: str) -> Gauge:
    return PROVIDER_CIRCUIT_STATE.labels(provider)


def count_sync_records(provider: str, stream: str, **outcomes: int) -> None:
    """Add a committed page's (or hook batch's) record outcomes to ``SYNC_RECORDS``."""
    for outcome, n in outcomes.items():
        if n:
            SYNC_RECORDS.labels(provider, stream, outcome).inc(n)


def render_latest() -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, and the content type to serve them with."""
    # prometheus-client itself keys multiprocess mode on this variable, so it is read here rather than in
    # Settings: both must agree for the values to be found.
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
