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


def test_rotation_reencrypts_everything(any_hub) -> None:  # type: ignore[no-untyped-def]
    hub = any_hub
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


def test_a_running_vault_follows_the_key_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Another process rotates the key file: this one seals with the new primary at once and opens what the
    rotation re-sealed; after a prune nothing it seals needs a removed key."""
    kf = KeyFile(tmp_path / "vault.keys")
    running = Vault(kf.load_or_create(), key_file=kf, on_decrypt=lambda _v: None)
    old_id = running.ring.primary_id
    rotated = KeyRing([KeyRing.generate_key(), *running.ring.keys])
    kf.save(rotated)
    key_id, _ = running.seal("v", "c", {"k": "sealed after the rotation"})
    assert key_id == rotated.primary_id != old_id
    kf.save(KeyRing([KeyRing.generate_key(), *rotated.keys]))  # rotated again, not yet seen by `running`
    newer = Vault(KeyRing.decode((tmp_path / "vault.keys").read_text()), on_decrypt=lambda _v: None)
    key_id, blob = newer.seal("v", "c", {"k": "re-sealed by the rotation"})
    assert running.open("v", "c", key_id, blob) == {"k": "re-sealed by the rotation"}  # re-read on demand
    kf.save(KeyRing([newer.ring.keys[0]]))  # pruned
    _, old_blob = Vault(KeyRing([rotated.keys[1]]), on_decrypt=lambda _v: None).seal("v", "c", {"k": "old"})
    assert running.seal("v", "c", {"k": "x"})[0] == newer.ring.primary_id
    with pytest.raises(VaultError, match="unknown vault key"):
        running.open("v", "c", old_id, old_blob)


def test_a_vault_on_fixed_keys_does_not_touch_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fixed = Vault(KeyRing([KeyRing.generate_key()]), on_decrypt=lambda _v: None)
    assert fixed.refresh() is False
    assert fixed.seal("v", "c", {"k": "v"})[0] == fixed.ring.primary_id


def test_vault_rotate_prune_while_the_api_runs(hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`wedsync vault rotate --prune` in another process while this hub serves: the hub keeps opening every
    credential, seals new ones with the new key, and a restart after the prune loses nothing."""
    from typer.testing import CliRunner

    from wedsync import bootstrap
    from wedsync.bootstrap import Hub
    from wedsync.cli import app
    from wedsync.config import get_settings
    from wedsync.services.connections import ConnectionService

    assert hub.settings.vault_keys is None  # the key file, which `vault rotate` rotates
    v = hub.tenancy.create_vendor("Rotating Studio")
    base = "http://127.0.0.1:9/vsco-workspace/api/v2"
    before = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "key-before-123"},
                                    base_url=base)
    monkeypatch.setenv("WEDSYNC_HOME", str(hub.settings.resolved_home))
    monkeypatch.setattr(bootstrap, "_hub", None)  # the CLI builds its own hub, as its own process would
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["vault", "rotate", "--prune"])
        assert r.exit_code == 0, r.output
        cli_hub = bootstrap._hub
        assert cli_hub is not None and cli_hub is not hub
        cli_hub.close()
    finally:
        get_settings.cache_clear()
    new_primary = KeyFile(hub.settings.resolved_home / "vault.keys").load_or_create().primary_id
    after = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "key-after-1234"},
                                   base_url=base)
    fresh = ConnectionService(hub.db, hub.vault)  # no cached credentials: every one is decrypted again
    assert fresh.credentials(fresh.get_any(before.id))["api_key"] == "key-before-123"
    with hub.db.read() as s:
        assert {r.key_id for r in s.query(Credential).all()} == {new_primary}
    hub.close()
    restarted = Hub(hub.settings)
    try:
        for conn, key in ((before, "key-before-123"), (after, "key-after-1234")):
            svc = restarted.connections
            assert svc.credentials(svc.get_any(conn.id))["api_key"] == key
    finally:
        restarted.close()
