"""The connector error tree, named by what the caller must do.

    WedsyncError
    └── ConnectorError                 something went wrong talking to a provider
        ├── Retriable                  transient (5xx before execution, connect error): retry with backoff
        │   ├── RateLimited            429 or quota: wait ``retry_after`` seconds, then retry
        │   └── CircuitOpen            our breaker for this provider is open: retry after ``retry_after``
        ├── OutcomeUnknown             request sent, no answer (timeout, dropped, 5xx on a mutation):
        │                              look the result up before retrying anywhere else
        ├── ReauthRequired             401/403 or a revoked token: the vendor must reconnect
        └── Fatal                      4xx that will fail again (bad request, not found, garbage body)
            └── SchemaMismatch         the provider answered 2xx with a body we cannot understand

Third-party exceptions are translated at the edge with ``raise Mapped(...) from exc``.

Surfaced through our API, every one of them is ``424 Failed Dependency`` with its code (and ``Retry-After``
when the provider or our breaker said when): a provider's outage or refusal is not our server failing, so the
hub never answers 5xx for it.
"""

from __future__ import annotations

from wedsync.errors import WedsyncError


class ConnectorError(WedsyncError):
    code = "provider_error"
    status = 424

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        http_status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.provider = provider
        self.http_status = http_status


class Retriable(ConnectorError):
    code = "provider_unavailable"
    status = 424


class RateLimited(Retriable):
    code = "provider_rate_limited"
    status = 424

    def __init__(self, message: str, *, retry_after: float, provider: str | None = None,
                 http_status: int | None = 429) -> None:
        super().__init__(message, provider=provider, http_status=http_status)
        self.retry_after = retry_after


class ProviderDown(RateLimited):
    """The provider answered 5xx with ``Retry-After``: it is unavailable for that long (an outage or
    maintenance, not our quota). Waited out like a rate limit, named for what it is."""

    code = "provider_unavailable"


class CircuitOpen(Retriable):
    code = "provider_circuit_open"
    status = 424

    def __init__(self, message: str, *, retry_after: float, provider: str | None = None) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class OutcomeUnknown(ConnectorError):
    code = "provider_outcome_unknown"
    status = 424


class ReauthRequired(ConnectorError):
    code = "provider_reauth_required"
    status = 424


class Fatal(ConnectorError):
    code = "provider_rejected"
    status = 424


class SchemaMismatch(Fatal):
    code = "provider_schema_mismatch"
    status = 424
