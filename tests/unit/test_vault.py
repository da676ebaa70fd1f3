"""The credential vault: AES-GCM at rest, bound to its connection, rotatable."""

from __future__ import annotations

import pytest

from wedsync.errors import VaultError
from wedsync.store.tables import Credential
from wedsync.store.vault import KeyFile, KeyRing, Vault


def test_round_trip_and_binding() -> None:
    vault = Vault(KeyRing([KeyRing.generate_key()]), on_decrypt=lambda _v: None)
    key_id, blob = vault.seal("v1", "c1", {"api_key": "s3cr3t-value"})
    assert b"s3cr3t" not in blob
    assert vault.open("v1", "c1", key_id, blob) == {"api_key": "s3cr3t-value"}
    with pytest.raises(VaultError):
        vault.open("v1", "c2", key_id, blob)  # moved to another connection
    with pytest.raises(VaultError):
        vault.open("v1", "c1", key_id, blob[:-1] + bytes([blob[-1] ^ 1]))  # tampered


def test_unknown_key_is_a_clear_error() -> None:
    a = Vault(KeyRing([KeyRing.generate_key()]), on_decrypt=lambda _v: None)
    b = Vault(KeyRing([KeyRing.generate_key()]), on_decrypt=lambda _v: None)
    key_id, blob = a.seal("v", "c", {"k": "v"})
    with pytest.raises(VaultError, match="unknown vault key"):
        b.open("v", "c", key_id, blob)


def test_bad_keys_rejected() -> None:
    with pytest.raises(VaultError):
        KeyRing([b"short"])
    with pytest.raises(VaultError):
        KeyRing([])


def test_keyfile_is_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    kf = KeyFile(tmp_path / "vault.keys")
    ring = kf.load_or_create()
    assert (tmp_path / "vault.keys").stat().st_mode & 0o077 == 0
    assert kf.load_or_create().primary_id == ring.primary_id


def test_rotation_reencrypts_everything(hub) -> None:  # type: ignore[no-untyped-def]
    v = hub.tenancy.create_vendor("Rotating Studio")
    c1 = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "key-one-123456"},
                                base_url="http://127.0.0.1:9/vsco-workspace/api/v2")
    c2 = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "key-two-123456"},
                                base_url="http://127.0.0.1:9/vsco-workspace/api/v2")
    old_primary = hub.vault.ring.primary_id
    new_ring = KeyRing([KeyRing.generate_key(), *hub.vault.ring.keys])
    rotated = Vault(new_ring, on_decrypt=lambda _v: None)
    with hub.db.session() as s:
        assert rotated.reencrypt_all(s) == 2
    with hub.db.read() as s:
        rows = s.query(Credential).all()
        assert {r.key_id for r in rows} == {new_ring.primary_id} != {old_primary}
    pruned = Vault(KeyRing([new_ring.keys[0]]), on_decrypt=lambda _v: None)
    with hub.db.read() as s:
        assert pruned.load(s, v.id, c1.id)["api_key"] == "key-one-123456"
        assert pruned.load(s, v.id, c2.id)["api_key"] == "key-two-123456"
