"""OAuth 2 connections: authorization code with PKCE and state, and the vault-backed token store.

The flow (ARCHITECTURE rule 7)::

    GET /oauth/{provider}/start      -> OAuthService.start: new state + PKCE pair; the verifier is sealed
                                        with the vault key ring (associated data binds it to the state,
                                        vendor, provider, connection and redirect URI); 10 minutes to live
    provider authorize page          -> the vendor approves; the provider redirects the browser back
    GET /oauth/{provider}/callback   -> OAuthService.callback: the state row is read FOR UPDATE and marked
                                        used in that same transaction (a replay finds it used), the code is
                                        exchanged with the verifier, and the token lands in the vault under
                                        ``"oauth_token"`` of a new (or the named) connection

Later, :class:`VaultTokenStore` gives :class:`~wedsync.connectors.auth.OAuth2Auth` that token and saves a
refreshed one in one transaction that locks the credential row and checks that the stored refresh token is
still the one the refresh used; if another worker rotated first it raises ``TokenRotationConflict``.

A provider describes its OAuth endpoints with an :class:`OAuthSpec` class attribute ``oauth`` on its
connector; the platform's app credentials come from ``Settings.oauth_clients`` (``WEDSYNC_OAUTH_CLIENTS``).

Errors (all HTTP 400 but ``unknown_provider``, 404)::

    OAuthFlowError
    ├── OAuthNotSupported     oauth_not_supported: the provider's connector declares no OAuthSpec
    ├── OAuthNotConfigured    oauth_not_configured: no client_id/client_secret for it in the settings
    ├── InvalidState          invalid_state: unknown, tampered, expired, replayed or another provider's
    ├── AuthorizationDenied   authorization_denied: the provider redirected back with ``error``
    └── MissingCode           missing_code: neither ``code`` nor ``error`` in the callback
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import delete, select

from wedsync.config import Settings
from wedsync.connectors.auth import (
    OAuth2Auth,
    Token,
    TokenRotationConflict,
    build_authorize_url,
    exchange_code,
    generate_pkce,
    new_state,
)
from wedsync.connectors.base import ClientAuth, OAuthSpec
from wedsync.connectors.errors import ReauthRequired
from wedsync.connectors.registry import canonical_slug, get_connector_class
from wedsync.errors import InvalidInput, NotFound, VaultError, WedsyncError
from wedsync.logging import get_logger, register_secret
from wedsync.services.connections import WEBHOOK_SECRET, ConnectionService, check_public_url
from wedsync.store.db import Database
from wedsync.store.tables import Connection, OAuthState, Vendor, new_id, utcnow
from wedsync.store.vault import Vault, oauth_state_aad

__all__ = [
    "OAUTH_TOKEN",
    "STATE_TTL",
    "AuthorizationDenied",
    "InvalidState",
    "MissingCode",
    "OAuthClient",
    "OAuthFlowError",
    "OAuthNotConfigured",
    "OAuthNotSupported",
    "OAuthService",
    "OAuthSpec",
    "VaultTokenStore",
    "default_redirect_uri",
    "oauth_spec_for",
]

OAUTH_TOKEN = "oauth_token"
"""The credentials key holding a connection's :meth:`Token.to_dict`."""

STATE_TTL = timedelta(minutes=10)
_PURGE_AFTER = timedelta(days=1)  # used/expired states are kept a day (replays say "already used")
_MAX_STATE_LENGTH = 128  # the column's width; new_state() makes 43 characters

_log = get_logger("wedsync.oauth")


# ------------------------------------------------------------------------------------------------ errors


class OAuthFlowError(WedsyncError):
    status = 400


class OAuthNotSupported(OAuthFlowError):
    code = "oauth_not_supported"


class OAuthNotConfigured(OAuthFlowError):
    code = "oauth_not_configured"


class InvalidState(OAuthFlowError):
    code = "invalid_state"


class AuthorizationDenied(OAuthFlowError):
    code = "authorization_denied"


class MissingCode(OAuthFlowError):
    code = "missing_code"


# ------------------------------------------------------------------------------------- provider description


def oauth_spec_for(provider: str) -> OAuthSpec:
    """The provider's :class:`OAuthSpec`; ``unknown_provider`` (404) or ``oauth_not_supported`` (400)."""
    cls = get_connector_class(provider)
    spec = getattr(cls, "oauth", None)
    if not isinstance(spec, OAuthSpec):
        raise OAuthNotSupported(f"{provider} does not connect with OAuth 2")
    return spec


def _rebase(url: str, base_url: str) -> str:
    """``url`` with its origin replaced by ``base_url`` (whose path, if any, prefixes the original path)."""
    base = urlsplit(base_url.rstrip("/"))
    parts = urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path + parts.path, parts.query, ""))


@dataclass(frozen=True)
class OAuthClient:
    """The platform's app at one provider, resolved from the spec and ``Settings.oauth_clients``."""

    provider: str
    client_id: str
    client_secret: str | None = field(repr=False)
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    client_auth: ClientAuth
    extra_authorize_params: Mapping[str, str] = field(hash=False)
    api_base_url: str | None

    @classmethod
    def resolve(cls, provider: str, settings: Settings) -> OAuthClient:
        spec = oauth_spec_for(provider)
        conf = settings.oauth_clients.get(provider) or {}
        client_id = conf.get("client_id")
        if not client_id:
            raise OAuthNotConfigured(
                f"no OAuth client is configured for {provider}; set it in WEDSYNC_OAUTH_CLIENTS")
        secret = conf.get("client_secret") or None
        register_secret(secret)
        authorize_url, token_url = spec.authorize_url, spec.token_url
        if conf.get("base_url"):
            authorize_url = _rebase(authorize_url, conf["base_url"])
            token_url = _rebase(token_url, conf["base_url"])
        authorize_url = conf.get("authorize_url") or authorize_url
        token_url = conf.get("token_url") or token_url
        api_base_url = conf.get("api_base_url") or get_connector_class(provider).default_base_url
        return cls(provider=provider, client_id=client_id, client_secret=secret, authorize_url=authorize_url,
                   token_url=token_url, scopes=spec.scopes, client_auth=spec.client_auth,
                   extra_authorize_params=dict(spec.extra_authorize_params), api_base_url=api_base_url)

    def auth(self, store: VaultTokenStore, **kwargs: Any) -> OAuth2Auth:
        """An :class:`OAuth2Auth` for a connection's API calls, refreshing through this client."""
        return OAuth2Auth(store, self.token_url, self.client_id, self.client_secret,
                          client_auth=self.client_auth, **kwargs)


def default_redirect_uri(public_url: str, provider: str) -> str:
    return f"{public_url.rstrip('/')}/oauth/{provider}/callback"


_state_aad = oauth_state_aad  # the vault re-seals these rows on key rotation, so it owns the binding


@dataclass(frozen=True)
class _Pending:
    vendor_id: str
    connection_id: str | None
    redirect_uri: str
    verifier: str = field(repr=False)


# ------------------------------------------------------------------------------------------------ service


class OAuthService:
    """Starts OAuth 2 authorizations and completes them into connections with tokens in the vault."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        connections: ConnectionService,
        settings: Settings,
        *,
        state_ttl: timedelta = STATE_TTL,
        http_client: Callable[[], httpx.AsyncClient] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.vault = vault
        self.connections = connections
        self.settings = settings
        self.state_ttl = state_ttl
        self._http_client = http_client or (lambda: httpx.AsyncClient(timeout=settings.http_timeout))
        self._now = clock

    def client(self, provider: str) -> OAuthClient:
        return OAuthClient.resolve(provider, self.settings)

    def token_store(self, vendor_id: str, connection_id: str) -> VaultTokenStore:
        return VaultTokenStore(self.db, self.vault, vendor_id, connection_id)

    # -- start ----------------------------------------------------------------------------------------

    def start(self, vendor_id: str, provider: str, *, redirect_uri: str | None = None,
              connection_id: str | None = None) -> str:
        """Record a pending authorization and return the provider's authorize URL to send the vendor to."""
        provider = canonical_slug(provider)
        client = self.client(provider)
        redirect = redirect_uri or default_redirect_uri(self.settings.public_url, provider)
        parts = urlsplit(redirect)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            raise InvalidInput("redirect_uri must be an absolute http(s) URL without a fragment",
                               code="invalid_redirect_uri")
        if len(redirect) > 500:
            raise InvalidInput("redirect_uri is longer than 500 characters", code="invalid_redirect_uri")
        if connection_id is not None:
            conn = self.connections.get(vendor_id, connection_id)
            if conn.provider != provider:
                raise InvalidInput(f"connection {connection_id} is a {conn.provider} connection, not {provider}",
                                   code="provider_mismatch")
        state = new_state()
        verifier, challenge = generate_pkce()
        now = self._now()
        with self.db.session() as s:
            if s.get(Vendor, vendor_id) is None:
                raise NotFound("vendor not found")
            s.execute(delete(OAuthState).where(OAuthState.expires_at < now - _PURGE_AFTER))
            # sealed after the first write (SQLite's write lock), with the key file's current primary: a
            # rotation's re-encryption cannot run between the seal and the commit
            key_id, sealed = self.vault.seal_bytes(
                verifier.encode("ascii"), _state_aad(state, vendor_id, provider, connection_id, redirect))
            s.add(OAuthState(state=state, vendor_id=vendor_id, provider=provider, connection_id=connection_id,
                             key_id=key_id, verifier_ciphertext=sealed, redirect_uri=redirect, created_at=now,
                             expires_at=now + self.state_ttl))
        _log.info("oauth.started", provider=provider, vendor_id=vendor_id, connection_id=connection_id)
        return build_authorize_url(client.authorize_url, client.client_id, redirect, client.scopes, state,
                                   challenge, client.extra_authorize_params)

    # -- callback -------------------------------------------------------------------------------------

    async def callback(self, provider: str, *, state: str | None, code: str | None = None,
                       error: str | None = None, error_description: str | None = None) -> Connection:
        """Complete an authorization: consume the state, exchange the code, store the token."""
        provider = canonical_slug(provider)
        client = self.client(provider)
        if not state:
            raise InvalidState("the callback carries no state")
        pending = await asyncio.to_thread(self._consume_state, provider, state)
        if error:
            _log.info("oauth.denied", provider=provider, vendor_id=pending.vendor_id, error=error[:100])
            details = {"error": error[:100]}
            if error_description:
                details["error_description"] = error_description[:300]
            raise AuthorizationDenied(f"{provider} did not authorize the connection: {error[:100]}",
                                      details=details)
        if not code:
            raise MissingCode("the callback carries neither code nor error")
        async with self._http_client() as http:
            token = await exchange_code(http, client.token_url, code=code, redirect_uri=pending.redirect_uri,
                                        client_id=client.client_id, client_secret=client.client_secret,
                                        code_verifier=pending.verifier, client_auth=client.client_auth)
        conn = await asyncio.to_thread(self._save_connection, client, pending, token)
        _log.info("oauth.connected", provider=provider, vendor_id=pending.vendor_id, connection_id=conn.id,
                  reconnected=pending.connection_id is not None)
        return conn

    def _consume_state(self, provider: str, state: str) -> _Pending:
        """Read the state row FOR UPDATE and mark it used in the same transaction (single use)."""
        if len(state) > _MAX_STATE_LENGTH:
            raise InvalidState("unknown state")
        now = self._now()
        with self.db.session() as s:
            row = s.execute(select(OAuthState).where(OAuthState.state == state).with_for_update()
                            ).scalar_one_or_none()
            if row is None:
                raise InvalidState("unknown state")
            if row.provider != provider:
                raise InvalidState("the state was issued for another provider")
            if row.used_at is not None:
                raise InvalidState("the state was already used")
            if row.expires_at <= now:
                raise InvalidState("the state expired; start the authorization again")
            try:
                verifier = self.vault.open_bytes(
                    row.key_id, row.verifier_ciphertext,
                    _state_aad(row.state, row.vendor_id, row.provider, row.connection_id, row.redirect_uri),
                ).decode("ascii")
            except VaultError:
                raise InvalidState("the pending authorization failed authentication") from None
            row.used_at = now
            return _Pending(row.vendor_id, row.connection_id, row.redirect_uri, verifier)

    def _save_connection(self, client: OAuthClient, pending: _Pending, token: Token) -> Connection:
        base_url = client.api_base_url
        if base_url:
            base_url = check_public_url(base_url, allow_private=self.settings.allow_private_urls)
        with self.db.session() as s:
            if s.get(Vendor, pending.vendor_id) is None:
                raise NotFound("vendor not found")
            creds: dict[str, Any]
            if pending.connection_id is not None:
                conn = s.execute(select(Connection).where(Connection.id == pending.connection_id)
                                 .with_for_update()).scalar_one_or_none()
                if conn is None or conn.vendor_id != pending.vendor_id or conn.provider != client.provider:
                    raise NotFound("connection not found", code="unknown_connection")
                try:
                    creds = self.vault.load(s, conn.vendor_id, conn.id, for_update=True)
                except NotFound:
                    creds = {}
                conn.status, conn.status_detail, conn.updated_at = "active", None, utcnow()
            else:
                conn = Connection(id=new_id(), vendor_id=pending.vendor_id, provider=client.provider,
                                  base_url=base_url, settings={})
                s.add(conn)
                s.flush()
                creds = {}
            creds[OAUTH_TOKEN] = token.to_dict()
            creds.setdefault(WEBHOOK_SECRET, secrets.token_urlsafe(24))
            self.vault.store(s, conn.vendor_id, conn.id, creds)
        return conn


# --------------------------------------------------------------------------------------------- token store


class VaultTokenStore:
    """A connection's OAuth 2 token in the vault (:class:`~wedsync.connectors.auth.TokenStore`).

    Stores of the same connection compare equal, so every :class:`OAuth2Auth` of that connection in this
    process shares one refresh lock; across processes the row lock in :meth:`save` decides.
    """

    def __init__(self, db: Database, vault: Vault, vendor_id: str, connection_id: str, *,
                 key: str = OAUTH_TOKEN) -> None:
        self.db = db
        self.vault = vault
        self.vendor_id = vendor_id
        self.connection_id = connection_id
        self.key = key

    def __repr__(self) -> str:
        return f"VaultTokenStore(vendor_id={self.vendor_id!r}, connection_id={self.connection_id!r})"

    def _identity(self) -> tuple[int, str, str, str]:
        return (id(self.db), self.vendor_id, self.connection_id, self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VaultTokenStore) and other._identity() == self._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def _token_of(self, creds: Mapping[str, Any]) -> Token:
        raw = creds.get(self.key)
        if not isinstance(raw, Mapping):
            raise ReauthRequired("this connection holds no OAuth token; reconnect it")
        token = Token.from_dict(raw)
        # the vault registers top-level strings only; the token's are nested
        register_secret(token.access_token)
        register_secret(token.refresh_token)
        return token

    def load_sync(self) -> Token:
        with self.db.read() as s:
            return self._token_of(self.vault.load(s, self.vendor_id, self.connection_id))

    async def load(self) -> Token:
        return await asyncio.to_thread(self.load_sync)

    def save_sync(self, new: Token, *, previous_refresh_token: str | None) -> None:
        """Compare-and-swap on the refresh token, in one transaction holding the credential row lock."""
        with self.db.session() as s:
            creds = self.vault.load(s, self.vendor_id, self.connection_id, for_update=True)
            current = self._token_of(creds)
            if current.refresh_token != previous_refresh_token:
                raise TokenRotationConflict("the refresh token was rotated by another worker first")
            creds[self.key] = new.to_dict()
            self.vault.store(s, self.vendor_id, self.connection_id, creds)

    async def save(self, new: Token, *, previous_refresh_token: str | None) -> None:
        await asyncio.to_thread(self.save_sync, new, previous_refresh_token=previous_refresh_token)
