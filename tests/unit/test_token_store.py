"""VaultTokenStore: the OAuth token in the vault, and a rotated refresh token saved by compare-and-swap in one
transaction that locks the credential row (SQLite, and PostgreSQL when WEDSYNC_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from wedsync.bootstrap import Hub
from wedsync.connectors.auth import Token, TokenRotationConflict
from wedsync.connectors.errors import ReauthRequired
from wedsync.errors import NotFound
from wedsync.services.connections import WEBHOOK_SECRET
from wedsync.services.oauth import OAUTH_TOKEN, VaultTokenStore
from wedsync.store.tables import Connection, Credential, new_id


def _token(n: int) -> Token:
    return Token(access_token=f"access-token-{n:04d}-xxxxxxxx", refresh_token=f"refresh-token-{n:04d}-yyyyyyyy",
                 expires_at=datetime(2031, 1, 1, tzinfo=UTC) + timedelta(hours=n), scope="profile")


def _connection(hub: Hub, token: Token | None = _token(0)) -> tuple[str, str]:
    vendor = hub.tenancy.create_vendor("Golden Hour")
    with hub.db.session() as s:
        conn = Connection(id=new_id(), vendor_id=vendor.id, provider="test-oauth")
        s.add(conn)
        s.flush()
        creds: dict[str, object] = {WEBHOOK_SECRET: "whsec-keep-me-123"}
        if token is not None:
            creds[OAUTH_TOKEN] = token.to_dict()
        hub.vault.store(s, vendor.id, conn.id, creds)
    return vendor.id, conn.id


def _version(hub: Hub, connection_id: str) -> int:
    with hub.db.read() as s:
        row = s.get(Credential, connection_id)
        assert row is not None
        return row.version


async def test_save_and_load_round_trip(any_hub: Hub) -> None:
    vendor_id, conn_id = _connection(any_hub)
    store = VaultTokenStore(any_hub.db, any_hub.vault, vendor_id, conn_id)
    loaded = await store.load()
    assert loaded == _token(0)
    await store.save(_token(1), previous_refresh_token=_token(0).refresh_token)
    assert await store.load() == _token(1)
    assert _version(any_hub, conn_id) == 2
    with any_hub.db.read() as s:
        creds = any_hub.vault.load(s, vendor_id, conn_id)
    assert creds[WEBHOOK_SECRET] == "whsec-keep-me-123"  # the rest of the credentials is kept
    with any_hub.db.read() as s:
        row = s.get(Credential, conn_id)
        assert row is not None and b"refresh-token" not in row.ciphertext  # encrypted at rest


async def test_rotation_conflict_when_another_writer_rotated_first(any_hub: Hub) -> None:
    vendor_id, conn_id = _connection(any_hub)
    worker_a = VaultTokenStore(any_hub.db, any_hub.vault, vendor_id, conn_id)
    worker_b = VaultTokenStore(any_hub.db, any_hub.vault, vendor_id, conn_id)
    seen_by_b = await worker_b.load()
    await worker_a.save(_token(1), previous_refresh_token=_token(0).refresh_token)
    with pytest.raises(TokenRotationConflict) as exc_info:
        await worker_b.save(_token(2), previous_refresh_token=seen_by_b.refresh_token)
    assert exc_info.value.code == "token_rotation_conflict"
    assert await worker_b.load() == _token(1)  # nothing written by the loser
    assert _version(any_hub, conn_id) == 2


async def test_concurrent_saves_exactly_one_wins(any_hub: Hub) -> None:
    vendor_id, conn_id = _connection(any_hub)
    stores = [VaultTokenStore(any_hub.db, any_hub.vault, vendor_id, conn_id) for _ in range(8)]
    previous = _token(0).refresh_token
    results = await asyncio.gather(*(st.save(_token(i + 1), previous_refresh_token=previous)
                                     for i, st in enumerate(stores)), return_exceptions=True)
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    assert all(isinstance(r, TokenRotationConflict) for r in results if r is not None)
    assert await stores[0].load() == _token(winners[0] + 1)
    assert _version(any_hub, conn_id) == 2


async def test_token_without_refresh_token_and_missing_token(any_hub: Hub) -> None:
    no_refresh = Token(access_token="long-lived-access-token", expires_at=None)
    vendor_id, conn_id = _connection(any_hub, no_refresh)
    store = VaultTokenStore(any_hub.db, any_hub.vault, vendor_id, conn_id)
    assert await store.load() == no_refresh
    await store.save(_token(3), previous_refresh_token=None)
    assert await store.load() == _token(3)

    vendor2, conn2 = _connection(any_hub, None)
    with pytest.raises(ReauthRequired):
        await VaultTokenStore(any_hub.db, any_hub.vault, vendor2, conn2).load()


async def test_store_is_scoped_to_its_vendor(any_hub: Hub) -> None:
    _vendor_a, conn_a = _connection(any_hub)
    vendor_b, _conn_b = _connection(any_hub)
    intruder = VaultTokenStore(any_hub.db, any_hub.vault, vendor_b, conn_a)
    with pytest.raises(NotFound):
        await intruder.load()
    with pytest.raises(NotFound):
        await intruder.save(_token(9), previous_refresh_token=_token(0).refresh_token)


def test_stores_of_one_connection_are_equal(hub: Hub) -> None:
    """Equal stores share OAuth2Auth's per-store refresh lock within a process."""
    a = VaultTokenStore(hub.db, hub.vault, "v1", "c1")
    assert a == VaultTokenStore(hub.db, hub.vault, "v1", "c1")
    assert hash(a) == hash(VaultTokenStore(hub.db, hub.vault, "v1", "c1"))
    assert a != VaultTokenStore(hub.db, hub.vault, "v1", "c2")
    assert "token" not in repr(a).replace("VaultTokenStore", "")
