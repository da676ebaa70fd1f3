"""Vendors and API keys: keys are stored hashed, shown once, scoped, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update

from wedsync.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from wedsync.store.db import Database
from wedsync.store.paging import cursor_row
from wedsync.store.tables import ApiKey, Vendor, new_id, utcnow

KEY_PREFIX = "wsk"
SCOPES = ("read", "write", "keys")
DEFAULT_SCOPES = ("read", "write", "keys")
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a vendor's key (``vendor_id`` set) or the platform operator."""

    key_id: str
    vendor_id: str | None
    scopes: frozenset[str]
    is_operator: bool = False

    def require(self, scope: str) -> None:
        """Operator keys too: ``wedsync key create --operator --scope read`` is a read-only operator key (the
        environment's ``WEDSYNC_OPERATOR_KEY`` has every scope)."""
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the {scope!r} scope", code="missing_scope")

    def may_grant(self, scopes: Sequence[str]) -> None:
        """A key creates keys with at most its own scopes (a ``keys``-only key cannot mint a writer)."""
        extra = sorted(set(scopes) - self.scopes)
        if extra:
            raise Forbidden(f"this API key cannot grant scopes it lacks: {', '.join(extra)}",
                            code="scope_escalation", details={"scopes": extra, "held": sorted(self.scopes)})

    def vendor_scope(self, vendor_id: str | None = None) -> str:
        """The vendor this call acts for: the key's own vendor; an operator must name one (that it exists is
        ``TenancyService.acting_vendor``'s check, which every route goes through)."""
        if self.is_operator:
            if not vendor_id:
                raise InvalidInput("operator calls must name a vendor", code="vendor_required")
            return vendor_id
        assert self.vendor_id is not None
        if vendor_id and vendor_id != self.vendor_id:
            # Do not reveal whether the other vendor exists.
            raise NotFound("vendor not found")
        return self.vendor_id


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_scopes(scopes: Sequence[str]) -> list[str]:
    bad = sorted(set(scopes) - set(SCOPES))
    if bad:
        raise InvalidInput(f"unknown scopes {bad}; allowed: {list(SCOPES)}", code="invalid_scope")
    return sorted(set(scopes))


class TenancyService:
    def __init__(self, db: Database, *, operator_key: str | None = None) -> None:
        self.db = db
        self._operator_key_hash = _hash(operator_key) if operator_key else None

    def create_vendor(self, name: str, timezone: str = "UTC") -> Vendor:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("vendor name must be 1-200 characters", code="invalid_name")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"unknown time zone {timezone!r}", code="invalid_timezone") from None
        with self.db.session() as s:
            v = Vendor(id=new_id(), name=name, timezone=timezone)
            s.add(v)
        return v

    def acting_vendor(self, principal: Principal, vendor_id: str | None = None, *, named: str | None = None
                      ) -> str:
        """The vendor a call acts for (``Principal.vendor_scope``) when it exists: an operator's
        ``X-WedSync-Vendor`` naming no vendor is a 404 ``unknown_vendor`` (writes were a 409 ``concurrent_change``
        from a foreign key, reads an empty 200). ``named`` is a vendor the request body names as well (the seed's
        ``vendorId``): it must be the same one (422 ``vendor_mismatch``)."""
        if vendor_id and named and vendor_id != named:
            raise InvalidInput("the body's vendorId and the X-WedSync-Vendor header name different vendors",
                               code="vendor_mismatch", details={"header": vendor_id, "body": named})
        acting = principal.vendor_scope(vendor_id or named)
        if principal.is_operator:
            with self.db.read() as s:
                if s.get(Vendor, acting) is None:
                    raise NotFound("vendor not found", code="unknown_vendor")
        return acting

    def get_vendor(self, vendor_id: str) -> Vendor:
        with self.db.session() as s:
            v = s.get(Vendor, vendor_id)
            if v is None:
                raise NotFound("vendor not found")
            return v

    def list_vendors(self, *, limit: int | None = None, after: str | None = None) -> list[Vendor]:
        """By id; ``after`` is the last id of the previous page, ``limit`` None: all of them."""
        with self.db.session() as s:
            q = select(Vendor)
            if after:
                cursor_row(s, Vendor, after)
                q = q.where(Vendor.id > after)
            return list(s.execute(q.order_by(Vendor.id).limit(limit)).scalars())

    def create_key(self, vendor_id: str | None, *, name: str = "default",
                   scopes: Sequence[str] = DEFAULT_SCOPES, operator: bool = False
                   ) -> tuple[ApiKey, str]:
        """Create a key; returns the row and the plaintext key, which is never shown again."""
        if operator == (vendor_id is not None):
            raise InvalidInput("a key belongs either to a vendor or to the operator")
        secret = secrets.token_urlsafe(32)
        key_id = new_id()
        with self.db.session() as s:
            if vendor_id is not None and s.get(Vendor, vendor_id) is None:
                raise NotFound("vendor not found")
            row = ApiKey(id=key_id, vendor_id=vendor_id, name=name[:200] or "default",
                         secret_hash=_hash(secret), scopes=_check_scopes(scopes), is_operator=operator)
            s.add(row)
        return row, f"{KEY_PREFIX}_{key_id}_{secret}"

    def list_keys(self, vendor_id: str, *, limit: int | None = None, after: str | None = None) -> list[ApiKey]:
        """By id; ``after`` is the last id of the previous page, ``limit`` None: all of them."""
        with self.db.session() as s:
            q = select(ApiKey).where(ApiKey.vendor_id == vendor_id)
            if after:
                cursor_row(s, ApiKey, after, ApiKey.vendor_id == vendor_id)
                q = q.where(ApiKey.id > after)
            return list(s.execute(q.order_by(ApiKey.id).limit(limit)).scalars())

    def revoke_key(self, vendor_id: str | None, key_id: str) -> ApiKey:
        with self.db.session() as s:
            row = s.get(ApiKey, key_id)
            if row is None or (vendor_id is not None and row.vendor_id != vendor_id):
                raise NotFound("API key not found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return row

    def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
        if self._operator_key_hash and hmac.compare_digest(_hash(presented), self._operator_key_hash):
            return Principal(key_id="operator-env", vendor_id=None, scopes=frozenset(SCOPES),
                             is_operator=True)
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX:
            raise Unauthorized("malformed API key", code="invalid_api_key")
        _, key_id, secret = parts
        with self.db.read() as s:
            row = s.get(ApiKey, key_id)
            if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
                raise Unauthorized("invalid API key", code="invalid_api_key")
            if row.revoked_at is not None:
                raise Unauthorized("this API key was revoked", code="revoked_api_key")
            principal = Principal(key_id=row.id, vendor_id=row.vendor_id,
                                  scopes=frozenset(row.scopes or ()), is_operator=row.is_operator)
            last_used = row.last_used_at
        now = utcnow()
        if last_used is None or now - last_used > _TOUCH_EVERY:
            with self.db.session() as s:
                s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
        return principal
