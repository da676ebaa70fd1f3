"""Credential vault: provider credentials and tokens encrypted at rest with AES-256-GCM and a key ring.

Each ciphertext records the id of the key that sealed it, so keys rotate without downtime:
``wedsync vault rotate`` adds a new primary key, re-encrypts every row with it, and (with ``--prune``)
drops the old keys. The connection id and vendor id are bound as associated data, so a ciphertext
copied onto another connection does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from wedsync.errors import NotFound, VaultError
from wedsync.store.tables import Credential, OAuthState, utcnow

_NONCE = 12


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _register(value: str) -> None:
    """Tell the log scrubber about a secret we just decrypted (no-op if logging is not loaded yet)."""
    try:
        from wedsync.logging import register_secret
    except ImportError:  # pragma: no cover - the logging module is part of the package
        return
    register_secret(value)


class KeyRing:
    """AES-256 keys, primary first."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise VaultError("the vault key ring is empty")
        for k in keys:
            if len(k) != 32:
                raise VaultError("vault keys must be 32 bytes (AES-256)")
        self.keys = list(keys)
        self._by_id = {_key_id(k): AESGCM(k) for k in self.keys}

    @property
    def primary_id(self) -> str:
        return _key_id(self.keys[0])

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._by_id)

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(_NONCE)
        return self.primary_id, nonce + self._by_id[self.primary_id].encrypt(nonce, plaintext, aad)

    def decrypt(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        aead = self._by_id.get(key_id)
        if aead is None:
            raise VaultError(f"credential sealed with unknown vault key {key_id}; restore that key")
        try:
            return aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag as exc:
            raise VaultError("credential failed authentication (tampered or wrong key)") from exc

    @staticmethod
    def generate_key() -> bytes:
        return secrets.token_bytes(32)

    @staticmethod
    def encode(keys: Sequence[bytes]) -> str:
        return ",".join(base64.urlsafe_b64encode(k).decode() for k in keys)

    @classmethod
    def decode(cls, text: str) -> KeyRing:
        try:
            keys = [base64.urlsafe_b64decode(p.strip()) for p in text.split(",") if p.strip()]
        except ValueError as exc:
            raise VaultError("vault keys are not valid base64") from exc
        return cls(keys)


class KeyFile:
    """Where the key ring lives when ``WEDSYNC_VAULT_KEYS`` is not set: ``$WEDSYNC_HOME/vault.keys`` (0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load_or_create(self) -> KeyRing:
        if self.path.exists():
            return KeyRing.decode(self.path.read_text())
        ring = KeyRing([KeyRing.generate_key()])
        self.save(ring)
        return ring

    def stamp(self) -> tuple[int, int, int] | None:
        """What changes when the file is replaced (``save`` renames a new file over it): inode, size, mtime."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def save(self, ring: KeyRing) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(KeyRing.encode(ring.keys) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _aad(vendor_id: str, connection_id: str) -> bytes:
    return f"wedsync-credential:{vendor_id}:{connection_id}".encode()


class Vault:
    """Encrypts and decrypts a connection's credentials (a str->str mapping, tokens included).

    With a ``key_file``, the ring follows that file while the process runs: ``wedsync vault rotate`` (another
    process) replaces it, and this vault seals with the new primary key from then on and opens what the
    rotation re-encrypted, without a restart. The file is checked (one ``stat``) before every seal and
    re-read when a credential names a key this process does not have."""

    def __init__(self, ring: KeyRing, *, on_decrypt: Callable[[str], None] = _register,
                 key_file: KeyFile | None = None) -> None:
        self.ring = ring
        self._on_decrypt = on_decrypt
        self._key_file = key_file
        self._stamp = key_file.stamp() if key_file is not None else None
        self._reload_lock = threading.Lock()

    def refresh(self) -> bool:
        """Re-read the key file if it changed since this vault last read it; True if the ring changed."""
        if self._key_file is None:
            return False
        with self._reload_lock:
            stamp = self._key_file.stamp()
            if stamp is None or stamp == self._stamp:
                return False
            ring = KeyRing.decode(self._key_file.path.read_text())
            self._stamp = stamp
            changed = ring.keys != self.ring.keys
            self.ring = ring
            return changed

    def seal(self, vendor_id: str, connection_id: str, data: dict[str, Any]) -> tuple[str, bytes]:
        self.refresh()  # never seal with a key a rotation has replaced (a prune would lose it)
        return self.ring.encrypt(json.dumps(data, sort_keys=True).encode(), _aad(vendor_id, connection_id))

    def seal_bytes(self, plain: bytes, aad: bytes) -> tuple[str, bytes]:
        """Seal any other secret the hub keeps (a pending OAuth authorization's PKCE verifier) with the current
        primary key; every sealed column is listed in :meth:`reencrypt_counts`."""
        self.refresh()
        return self.ring.encrypt(plain, aad)

    def open_bytes(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        try:
            return self.ring.decrypt(key_id, blob, aad)
        except VaultError:
            if key_id in self.ring.key_ids or not self.refresh():
                raise
            return self.ring.decrypt(key_id, blob, aad)  # sealed with a key a rotation added meanwhile

    def open(self, vendor_id: str, connection_id: str, key_id: str, blob: bytes) -> dict[str, Any]:
        plain = self.open_bytes(key_id, blob, _aad(vendor_id, connection_id))
        data: dict[str, Any] = json.loads(plain)
        self._register_all(data)
        return data

    def _register_all(self, data: dict[str, Any]) -> None:
        """Every top-level credential string, and the secret-named values of nested ones (an OAuth token
        set's access and refresh tokens, not its ``token_type`` or ``scope``), is scrubbed from logs."""
        for v in data.values():
            if isinstance(v, str):
                self._on_decrypt(v)
            elif isinstance(v, dict):
                self._register_nested(v)

    def _register_nested(self, data: dict[str, Any]) -> None:
        from wedsync.logging import is_secret_key

        for k, v in data.items():
            if isinstance(v, str) and is_secret_key(k):
                self._on_decrypt(v)
            elif isinstance(v, dict):
                self._register_nested(v)

    def store(self, session: Session, vendor_id: str, connection_id: str, data: dict[str, Any]) -> None:
        """Write (or replace) a connection's credentials inside the caller's transaction."""
        row = session.get(Credential, connection_id)  # first: on SQLite this takes the write lock, so a
        # rotation's re-encryption cannot run between the seal below and this transaction's commit
        key_id, blob = self.seal(vendor_id, connection_id, data)
        if row is None:
            session.add(Credential(connection_id=connection_id, vendor_id=vendor_id, key_id=key_id,
                                   ciphertext=blob))
        else:
            if row.vendor_id != vendor_id:
                raise VaultError("credential belongs to another vendor")
            row.key_id, row.ciphertext, row.version = key_id, blob, row.version + 1
            row.updated_at = utcnow()

    def load(self, session: Session, vendor_id: str, connection_id: str, *, for_update: bool = False
             ) -> dict[str, Any]:
        stmt = select(Credential).where(Credential.connection_id == connection_id,
                                        Credential.vendor_id == vendor_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = session.execute(stmt).scalar_one_or_none()
        if row is None:
            raise NotFound("no credentials stored for this connection")
        return self.open(vendor_id, connection_id, row.key_id, row.ciphertext)

    def reencrypt_all(self, session: Session) -> int:
        """Re-seal every sealed value with the primary key; returns how many rows changed."""
        return sum(self.reencrypt_counts(session).values())

    def reencrypt_counts(self, session: Session) -> dict[str, int]:
        """Re-seal, with the primary key, every sealed column of the store: the connections' credentials
        (``credentials.ciphertext``) and the pending OAuth authorizations' PKCE verifiers
        (``oauth_states.verifier_ciphertext``; a rotation with ``--prune`` used to leave them sealed with a key it
        removed, so every authorization in progress failed at its callback). Returns rows changed per table."""
        self.refresh()
        if session.get_bind().dialect.name == "postgresql":
            # nothing is sealed while this runs: a row sealed with an old key meanwhile would be missed
            session.execute(text(f"LOCK TABLE {Credential.__tablename__}, {OAuthState.__tablename__} "
                                 "IN SHARE ROW EXCLUSIVE MODE"))
        primary = self.ring.primary_id
        counts = {"credentials": 0, "oauth_states": 0}
        for row in session.execute(select(Credential).where(Credential.key_id != primary).with_for_update()
                                   ).scalars():
            aad = _aad(row.vendor_id, row.connection_id)
            row.key_id, row.ciphertext = self.ring.encrypt(self.ring.decrypt(row.key_id, row.ciphertext, aad), aad)
            counts["credentials"] += 1
        for state in session.execute(select(OAuthState).where(OAuthState.key_id != primary).with_for_update()
                                     ).scalars():
            aad = oauth_state_aad(state.state, state.vendor_id, state.provider, state.connection_id,
                                  state.redirect_uri)
            state.key_id, state.verifier_ciphertext = self.ring.encrypt(
                self.ring.decrypt(state.key_id, state.verifier_ciphertext, aad), aad)
            counts["oauth_states"] += 1
        return counts


def oauth_state_aad(state: str, vendor_id: str, provider: str, connection_id: str | None, redirect_uri: str
                    ) -> bytes:
    """What a pending OAuth authorization's sealed verifier is bound to (its row's other columns)."""
    return f"wedsync-oauth-state:{state}:{vendor_id}:{provider}:{connection_id or ''}:{redirect_uri}".encode()
