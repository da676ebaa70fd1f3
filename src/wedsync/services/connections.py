"""Connections: a vendor's link to a provider account, its encrypted credentials and its live connector."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import threading
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from wedsync.connectors.base import Connector
from wedsync.connectors.registry import get_connector_class
from wedsync.errors import InvalidInput, NotFound, NotImplementedCapability
from wedsync.store.db import Database
from wedsync.store.paging import cursor_row
from wedsync.store.tables import Connection, Vendor, new_id, utcnow
from wedsync.store.vault import Vault

WEBHOOK_SECRET = "webhook_secret"


#: The longest lookback an incremental pull may take (a longer one is a full pull by another name).
MAX_LOOKBACK_SECONDS = 30 * 86_400


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def check_settings(cls: type[Connector], settings: dict[str, Any]) -> dict[str, Any]:
    """A connection's settings, checked: a value of the wrong type or out of range broke every later sync of
    the connection (``{"streams": 5}``, ``{"lookback_seconds": "abc"}``), and an unknown key did nothing.
    Returns them normalized (region upper-case, streams in the engine's order)."""
    import phonenumbers

    from wedsync.services.sync_engine import STREAM_ORDER

    def bad(message: str) -> InvalidInput:
        return InvalidInput(message, code="invalid_settings")

    read = [x for x in STREAM_ORDER if x in set(getattr(cls.capabilities, "read", ()) or ())]
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "streams":
            if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
                raise bad(f"settings.streams is a non-empty list of stream names, of {read}")
            unknown = sorted(set(value) - set(read))
            if unknown:
                raise bad(f"settings.streams: {unknown} cannot be pulled from {cls.slug}; it reads {read}")
            out[key] = [x for x in STREAM_ORDER if x in value]
        elif key == "lookback_seconds":
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    0 <= value <= MAX_LOOKBACK_SECONDS):
                raise bad(f"settings.lookback_seconds is a number of seconds from 0 to {MAX_LOOKBACK_SECONDS}")
            out[key] = value
        elif key == "default_region":
            region = value.strip().upper() if isinstance(value, str) else ""
            if region not in phonenumbers.SUPPORTED_REGIONS:
                raise bad("settings.default_region is a two-letter country code (ISO 3166), e.g. US, GB, AU")
            out[key] = region
        elif key == "timezone":
            if not isinstance(value, str) or not _is_zone(value):
                raise bad("settings.timezone is an IANA time zone, e.g. America/New_York")
            out[key] = value
        elif key == "destination_account":
            if not isinstance(value, str) or not value.strip() or len(value) > 255:
                raise bad("settings.destination_account is the gateway's account id (text)")
            out[key] = value.strip()
        else:
            raise bad(f"unknown setting {key!r}; known: destination_account, default_region, lookback_seconds, "
                      f"streams, timezone")
    return out


def check_public_url(url: str, *, allow_private: bool) -> str:
    """Reject non-HTTP URLs and, unless allowed, loopback/private/link-local targets (SSRF guard)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("base_url must be an absolute http(s) URL", code="invalid_url")
    if "@" in parts.netloc:
        # user:password@host was stored in clear, shown by every GET of the connection and by `wedsync connect`,
        # and never even sent (the connector's own auth wins): credentials go in the vault, as credentials
        raise InvalidInput("base_url must not carry a user name or password; pass them as credentials",
                           code="invalid_url")
    if allow_private:
        return url.rstrip("/")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise InvalidInput(f"cannot resolve host {parts.hostname!r}", code="invalid_url") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not ip.is_global or ip.is_multicast:
            raise InvalidInput(f"{parts.hostname} resolves to a non-public address", code="forbidden_url")
    return url.rstrip("/")


class ConnectionService:
    def __init__(self, db: Database, vault: Vault, *, allow_private_urls: bool = False,
                 http_timeout: float = 30.0) -> None:
        self.db = db
        self.vault = vault
        self.allow_private_urls = allow_private_urls
        self.http_timeout = http_timeout
        self._live: dict[tuple[str, int], tuple[int, Connector]] = {}
        self._lock = threading.Lock()

    def create(self, vendor_id: str, provider: str, *, credentials: dict[str, str],
               base_url: str | None = None, settings: dict[str, Any] | None = None,
               unless_exists: bool = False) -> Connection:
        """A new connection. ``unless_exists``: the vendor's oldest connection to ``provider`` when it has one,
        else a new one, decided under a lock on the vendor's row (SQLite: the write transaction's lock), so
        concurrent callers create one connection between them, not one each."""
        cls = get_connector_class(provider)
        provider = cls.slug  # an alias (the seed's ``tave``, ``stripe_connect``) is stored as our slug
        settings = check_settings(cls, settings or {})
        fields = {f.name: f for f in cls.credential_fields}
        unknown = sorted(set(credentials) - set(fields))
        if unknown:
            raise InvalidInput(f"unknown credential fields {unknown} for {provider}; expected "
                               f"{sorted(fields)}", code="invalid_credentials")
        missing = sorted(n for n, f in fields.items() if f.required and not credentials.get(n))
        if missing:
            raise InvalidInput(f"missing credential fields {missing} for {provider}",
                               code="missing_credentials")
        cls.validate_credentials(credentials, allow_private_urls=self.allow_private_urls)
        url = cls.normalize_base_url(base_url) if base_url else cls.default_base_url
        if url and url.rstrip("/") != (cls.default_base_url or "").rstrip("/"):
            # Only a URL the caller chose is checked; the provider's own production URL is trusted (and
            # must not need DNS at connect time).
            url = check_public_url(url, allow_private=self.allow_private_urls)
        elif url:
            url = url.rstrip("/")
        creds = dict(credentials)
        # A provider that signs webhooks with one of the account's own credentials (Acuity: the API key)
        # names it in ``webhook_secret_field``; otherwise the hub picks a random secret to hand to the provider.
        # An empty secret counts as none: anyone can compute an HMAC with an empty key, so a connection created
        # with ``"webhook_secret": ""`` accepted webhooks forged by whoever knew its URL.
        own = creds.get(getattr(cls, "webhook_secret_field", None) or "")
        if not str(creds.get(WEBHOOK_SECRET) or "").strip():
            creds[WEBHOOK_SECRET] = own or secrets.token_urlsafe(24)
        with self.db.session() as s:
            # FOR NO KEY UPDATE: serializes the callers that lock the vendor this way, not the inserts of rows
            # that reference it
            vendor = (s.execute(select(Vendor.id).where(Vendor.id == vendor_id).with_for_update(key_share=True))
                      .first() if unless_exists else s.get(Vendor, vendor_id))
            if vendor is None:
                raise NotFound("vendor not found")
            if unless_exists:
                existing = s.execute(select(Connection).where(
                    Connection.vendor_id == vendor_id, Connection.provider == provider)
                    .order_by(Connection.created_at, Connection.id).limit(1)).scalar_one_or_none()
                if existing is not None:
                    return existing
            conn = Connection(id=new_id(), vendor_id=vendor_id, provider=provider, base_url=url,
                              settings=settings or {})
            s.add(conn)
            s.flush()
            self.vault.store(s, vendor_id, conn.id, creds)
        return conn

    def update_settings(self, vendor_id: str, connection_id: str, changes: dict[str, Any]) -> Connection:
        """Merge ``changes`` into the connection's settings (a null value removes that setting), checked as on
        creation."""
        with self.db.session() as s:
            conn = s.get(Connection, connection_id)
            if conn is None or conn.vendor_id != vendor_id:
                raise NotFound("connection not found", code="unknown_connection")
            merged = {**(conn.settings or {}), **changes}
            conn.settings = check_settings(get_connector_class(conn.provider),
                                           {k: v for k, v in merged.items() if v is not None})
            s.flush()
            s.expunge(conn)
        return conn  # connectors are built from credentials only: a live one needs no rebuilding

    def webhook_secret(self, conn: Connection) -> str | None:
        """The secret a vendor-configured sender (a Zap) signs with or puts in the URL; None for providers whose
        webhooks are signed with the provider's own secret or subscribed by the hub."""
        from wedsync.connectors.webhooks import vendor_configured

        if not vendor_configured(conn.provider):
            return None
        return str(self.credentials(conn).get(WEBHOOK_SECRET) or "") or None

    def rotate_webhook_secret(self, vendor_id: str, connection_id: str) -> tuple[Connection, str]:
        """A new random webhook secret for a connection whose hooks the vendor sets up by hand; the old one stops
        working at once (hooks signed with it answer 401). Returns the connection and the new secret."""
        from wedsync.connectors.webhooks import vendor_configured

        conn = self.get(vendor_id, connection_id)
        if not vendor_configured(conn.provider):
            raise InvalidInput(f"{conn.provider}'s webhooks are not set up with a hub secret (they are signed with "
                               f"the provider's own secret, a credential, or subscribed by the hub)",
                               code="webhook_secret_not_rotatable")
        secret = secrets.token_urlsafe(24)
        with self.db.session() as s:
            creds = self.vault.load(s, vendor_id, connection_id, for_update=True)
            creds[WEBHOOK_SECRET] = secret
            self.vault.store(s, vendor_id, connection_id, creds)
        return conn, secret

    def get(self, vendor_id: str, connection_id: str) -> Connection:
        with self.db.read() as s:
            conn = s.get(Connection, connection_id)
            if conn is None or conn.vendor_id != vendor_id:
                raise NotFound("connection not found", code="unknown_connection")
            return conn

    def get_any(self, connection_id: str) -> Connection:
        """Unscoped lookup for trusted internal callers (workflows, webhook intake)."""
        with self.db.read() as s:
            conn = s.get(Connection, connection_id)
            if conn is None:
                raise NotFound("connection not found", code="unknown_connection")
            return conn

    def list(self, vendor_id: str, *, limit: int | None = None, after: str | None = None) -> list[Connection]:
        """By id; ``after`` is the last id of the previous page, ``limit`` None: all of them."""
        with self.db.read() as s:
            q = select(Connection).where(Connection.vendor_id == vendor_id)
            if after:
                cursor_row(s, Connection, after, Connection.vendor_id == vendor_id)
                q = q.where(Connection.id > after)
            return list(s.execute(q.order_by(Connection.id).limit(limit)).scalars())

    def delete(self, vendor_id: str, connection_id: str) -> None:
        with self.db.session() as s:
            conn = s.get(Connection, connection_id)
            if conn is None or conn.vendor_id != vendor_id:
                raise NotFound("connection not found", code="unknown_connection")
            from wedsync.services.crm_sync import CrmResolver

            # its source records go with it (cascade): the open conflicts they raised offer values no source holds
            CrmResolver.dismiss_for_deleted_sources(
                s.connection(), vendor_id,
                f"source deleted: its connection {connection_id} ({conn.provider}) was removed",
                connection_id=connection_id)
            s.delete(conn)
        with self._lock:
            for k in [k for k in self._live if k[0] == connection_id]:
                self._live.pop(k)

    def set_status(self, connection_id: str, status: str, detail: str | None = None) -> None:
        with self.db.session() as s:
            conn = s.get(Connection, connection_id)
            if conn is not None:
                conn.status, conn.status_detail, conn.updated_at = status, detail, utcnow()

    def credentials(self, conn: Connection) -> dict[str, Any]:
        with self.db.read() as s:
            return self.vault.load(s, conn.vendor_id, conn.id)

    async def connector(self, conn: Connection) -> Any:
        """The live connector of a connection, one per process and event loop (an httpx client belongs
        to the loop it was created on: DBOS runs workflows on its own loop), rebuilt when the
        credentials change."""
        from wedsync.store.tables import Credential

        with self.db.read() as s:
            cred = s.get(Credential, conn.id)
            version = cred.version if cred else 0
        key = (conn.id, id(asyncio.get_running_loop()))
        cached = self._live.get(key)
        if cached and cached[0] == version:
            return cached[1]
        creds = self.credentials(conn)
        cls = get_connector_class(conn.provider)
        kwargs = {f.name: creds[f.name] for f in cls.credential_fields if f.name in creds}
        try:
            inst = cls(base_url=conn.base_url, account_key=conn.id, timeout=self.http_timeout,
                       **kwargs)  # type: ignore[call-arg]
        except TypeError as exc:
            raise NotImplementedCapability(f"{conn.provider} has no API client") from exc
        with self._lock:
            old = self._live.get(key)
            self._live[key] = (version, inst)
        if old and old[1] is not inst:
            await old[1].aclose()
        return inst

    async def aclose(self) -> None:
        """Close the connectors created on the running loop."""
        loop_id = id(asyncio.get_running_loop())
        with self._lock:
            mine = [k for k in self._live if k[1] == loop_id]
            insts = [self._live.pop(k)[1] for k in mine]
        for inst in insts:
            await inst.aclose()
