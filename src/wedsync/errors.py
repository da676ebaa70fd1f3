"""Root of every error the hub raises on purpose, and the domain/service errors the API maps to HTTP.

    WedsyncError
    ├── NotFound                 the thing does not exist for this caller (HTTP 404)
    ├── Forbidden                the caller's key lacks the scope (HTTP 403)
    ├── Unauthorized             no or bad credentials (HTTP 401)
    ├── InvalidInput             well-formed but unacceptable input (HTTP 422/400)
    ├── TooLarge                 a body or file over its limit (HTTP 413)
    ├── UnsupportedMediaType     a body of another type than the route reads (HTTP 415)
    ├── Conflict                 state conflict, e.g. a reused idempotency key (HTTP 409)
    ├── NotImplementedCapability the provider or the hub cannot do this (HTTP 501, never silent)
    ├── VaultError               credentials cannot be decrypted or stored
    └── ConnectorError           see ``wedsync.connectors.errors`` (HTTP 502/503 at the edge, never 500)
"""

from __future__ import annotations

from typing import Any


class WedsyncError(Exception):
    """Base class; ``code`` is the machine-readable code the API returns."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        # DBOS records a step's exception pickled and raises it again from the record (a replay, a recovered
        # workflow). The default reduction calls ``cls(*args)``, which fails for an error whose __init__ takes
        # required keywords (``CircuitOpen(message, retry_after=...)``): "missing 'retry_after'", and the
        # workflow failed on that instead of the provider's error. Rebuilt without __init__, attributes as they were.
        return _rebuild, (type(self), self.args, self.__dict__.copy())


def _rebuild(cls: type[WedsyncError], args: tuple[Any, ...], state: dict[str, Any]) -> WedsyncError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class NotFound(WedsyncError):
    code = "not_found"
    status = 404


class Forbidden(WedsyncError):
    code = "forbidden"
    status = 403


class Unauthorized(WedsyncError):
    code = "unauthorized"
    status = 401


class InvalidInput(WedsyncError):
    code = "invalid_input"
    status = 422


class TooLarge(WedsyncError):
    code = "too_large"
    status = 413


class UnsupportedMediaType(WedsyncError):
    code = "unsupported_media_type"
    status = 415


class Conflict(WedsyncError):
    code = "conflict"
    status = 409


class NotImplementedCapability(WedsyncError, NotImplementedError):
    code = "not_implemented"
    status = 501


class VaultError(WedsyncError):
    code = "vault_error"
    status = 500
