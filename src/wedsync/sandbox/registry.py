"""The emulator registry: what a provider emulator must offer, and discovery of the modules that define one.

To add a provider (stripe, square, google-calendar, ...), add one module under ``wedsync.sandbox`` that
defines ``SLUG`` and ``create_emulator(*, seed: int, **options) -> Emulator``. ``create_sandbox_app``
imports every module of the package that has such a function and mounts each emulator at its ``prefix``,
wrapped in the fault middleware, with admin endpoints at ``/_sandbox/{slug}/...``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from starlette.types import ASGIApp, Scope

from wedsync.discovery import submodules
from wedsync.sandbox.faults import FaultInjector
from wedsync.sandbox.hooks import WebhookDispatcher

__all__ = ["Emulator", "EmulatorFactory", "discover_emulators"]


@runtime_checkable
class Emulator(Protocol):
    """One provider's emulator. Attributes are read once when the sandbox app is built."""

    slug: str
    """URL-safe name, e.g. ``"vsco-workspace"``; admin endpoints live under ``/_sandbox/{slug}``."""
    prefix: str
    """Mount path mirroring the real API's base path, e.g. ``"/vsco-workspace/api/v2"``."""
    faults: FaultInjector
    webhooks: WebhookDispatcher

    @property
    def app(self) -> ASGIApp:
        """The provider API (without faults; the sandbox wraps it in ``FaultMiddleware``)."""
        ...

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        """Error JSON in the provider's own format (used for injected faults)."""
        ...

    def quota_key(self, scope: Scope) -> str | None:
        """Which credential a request is counted against for ``quota_per_second``."""
        ...

    def collections(self) -> list[str]:
        """Names accepted by ``GET /_sandbox/{slug}/records/{collection}``."""
        ...

    def iter_records(self, collection: str, base_url: str, offset: int, limit: int | None) -> Iterator[bytes]:
        """Ground truth: every record of ``collection`` as JSON bytes, hidden and closed ones included."""
        ...

    def reset(self) -> dict[str, Any]:
        """Back to the state the emulator was created in (data, subscriptions)."""
        ...

    def seed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Regenerate data, e.g. ``{"contacts": N, "jobs": M}``; returns counts."""
        ...

    async def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Change data as the provider's users would (``{"update": K, "create": C, "delete": D}``)."""
        ...


EmulatorFactory = Callable[..., Emulator]

_FRAMEWORK_MODULES = {"app", "data", "faults", "hooks", "registry", "server", "store"}


def discover_emulators() -> dict[str, EmulatorFactory]:
    """Slug -> ``create_emulator`` for every emulator module in this package, in module-name order."""
    found: dict[str, EmulatorFactory] = {}
    for module in submodules("wedsync.sandbox", accept=lambda name: name not in _FRAMEWORK_MODULES):
        factory = getattr(module, "create_emulator", None)
        if callable(factory):
            default_slug = module.__name__.rsplit(".", 1)[-1].replace("_", "-")
            found[str(getattr(module, "SLUG", default_slug))] = factory
    return found
