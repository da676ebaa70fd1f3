"""Vendors and API keys: hashed, shown once, scoped, revocable."""

from __future__ import annotations

import pytest

from wedsync.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from wedsync.store.tables import ApiKey


def test_key_is_hashed_and_authenticates(hub) -> None:  # type: ignore[no-untyped-def]
    v = hub.tenancy.create_vendor("Bloom & Vine Florals", "Europe/London")
    row, key = hub.tenancy.create_key(v.id, name="ci", scopes=["read"])
    with hub.db.read() as s:
        stored = s.get(ApiKey, row.id)
        assert key.split("_", 2)[2] not in (stored.secret_hash, stored.name)
    p = hub.tenancy.authenticate(key)
    assert p.vendor_id == v.id and p.scopes == {"read"}
    p.require("read")
    with pytest.raises(Forbidden):
        p.require("write")


def test_revoked_and_bad_keys(hub) -> None:  # type: ignore[no-untyped-def]
    v = hub.tenancy.create_vendor("Studio")
    row, key = hub.tenancy.create_key(v.id)
    hub.tenancy.revoke_key(v.id, row.id)
    with pytest.raises(Unauthorized, match="revoked"):
        hub.tenancy.authenticate(key)
    for bad in (None, "", "nope", "wsk_x_y", key[:-2] + "zz"):
        with pytest.raises(Unauthorized):
            hub.tenancy.authenticate(bad)


def test_other_vendor_cannot_revoke(hub) -> None:  # type: ignore[no-untyped-def]
    a = hub.tenancy.create_vendor("A")
    b = hub.tenancy.create_vendor("B")
    row, _ = hub.tenancy.create_key(a.id)
    with pytest.raises(NotFound):
        hub.tenancy.revoke_key(b.id, row.id)


def test_input_validation(hub) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        hub.tenancy.create_vendor("  ")
    with pytest.raises(InvalidInput):
        hub.tenancy.create_vendor("x", "Mars/Olympus_Mons")
    v = hub.tenancy.create_vendor("x")
    with pytest.raises(InvalidInput):
        hub.tenancy.create_key(v.id, scopes=["root"])


def test_operator_key(hub) -> None:  # type: ignore[no-untyped-def]
    _, key = hub.tenancy.create_key(None, operator=True)
    p = hub.tenancy.authenticate(key)
    assert p.is_operator and p.vendor_id is None
    with pytest.raises(InvalidInput):
        p.vendor_scope(None)
    assert p.vendor_scope("some-vendor") == "some-vendor"
