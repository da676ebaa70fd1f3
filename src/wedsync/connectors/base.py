"""The shape every connector shares: slug, channel, capability table, auth, paginator, mappings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal


class Channel(StrEnum):
    """How we really reach a provider (ARCHITECTURE rule 10)."""

    API = "api"
    PUSH_ONLY = "push-only"
    ZAPIER_WEBHOOK = "zapier-webhook"
    CSV = "csv"
    EMAIL = "email"
    ICALENDAR = "icalendar"
    #: WedSync's own marketplace: it posts its records (inquiries) to the hub's API; nothing is fetched
    MARKETPLACE = "marketplace"
    #: no channel exists: no public API, no export, no hooks (an unofficial, reverse-engineered API is not one)
    NONE = "none"


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do, per stream; the API publishes this table as-is."""

    category: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    incremental: tuple[str, ...] = ()
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "read": list(self.read),
            "write": list(self.write),
            "webhooks": list(self.webhooks),
            "incremental": list(self.incremental),
            "notes": self.notes,
        }


@dataclass
class Page:
    """One page of a provider listing."""

    items: list[dict[str, Any]]
    page: int
    total_pages: int
    total_items: int | None  # None when the provider did not say (no deletes can be proven then)
    extra: dict[str, Any] = field(default_factory=dict)


ClientAuth = Literal["post", "basic", "json"]
"""How a token request authenticates the client: form body (RFC 6749 2.3.1), HTTP Basic, or a JSON body
(client_id and client_secret beside the grant, as Square's token endpoint documents)."""


@dataclass(frozen=True)
class OAuthSpec:
    """A provider's OAuth 2 authorization server, declared by its connector as ``oauth: ClassVar[...]``."""

    authorize_url: str
    token_url: str
    scopes: tuple[str, ...] = ()
    client_auth: ClientAuth = "post"
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class CredentialField:
    name: str
    description: str
    secret: bool = True
    required: bool = True


class Connector:
    """Base class. Subclasses set the class attributes and implement the streams they declare."""

    slug: ClassVar[str]
    display_name: ClassVar[str]
    channel: ClassVar[Channel]
    capabilities: ClassVar[Capabilities]
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()
    default_base_url: ClassVar[str | None] = None
    oauth: ClassVar[OAuthSpec | None] = None
    docs_url: ClassVar[str | None] = None

    @classmethod
    def validate_credentials(cls, credentials: Mapping[str, str], *, allow_private_urls: bool) -> None:
        """Reject unusable credential values when a connection is created (raise ``InvalidInput``), rather
        than when the connector is first built; the field names were already checked."""
        return None

    @classmethod
    def normalize_base_url(cls, base_url: str) -> str:
        """The base URL a connection stores for the one a vendor gave (a provider whose documentation gives an
        endpoint rather than a site says so here); called before the URL is checked."""
        return base_url

    async def aclose(self) -> None:  # pragma: no cover - overridden where there is a client
        return None
