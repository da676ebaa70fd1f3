"""Data migrations: a store written by an earlier release is brought to what the current code expects."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PgDatabase, pg_base_url
from wedsync.store.db import migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite'}"
        return
    base = pg_base_url()
    if not base:
        pytest.skip("WEDSYNC_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped (.ci/run sets it)")
    pg = PgDatabase(base)
    try:
        yield pg.url
    finally:
        pg.drop()


def test_gmail_identity_keys_are_rewritten_to_the_mailbox_form(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        migrate(engine, "0006")  # the schema before the Gmail rule
        keys = [("v1", "e:ana.ruiz@gmail.com", "c1"), ("v1", "e:ana.ruiz+tave@googlemail.com", "c1"),
                ("v1", "e:anaruiz@gmail.com", "c2"), ("v1", "e:ana.ruiz@example.com", "c3"),
                ("v1", "p:+12125550123|ar", "c1"), ("v2", "e:j.o.e@gmail.com", "c9")]
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO vendors (id, name, timezone, created_at) VALUES "
                              "('v1', 'A', 'UTC', '2026-01-01'), ('v2', 'B', 'UTC', '2026-01-01')"))
            for cid, vid in (("c1", "v1"), ("c2", "v1"), ("c3", "v1"), ("c9", "v2")):
                conn.execute(text("INSERT INTO crm_clients (id, vendor_id, kind, custom_fields, wedding_dates, "
                                  "field_sources, version, created_at, updated_at) VALUES (:id, :v, 'person', "
                                  "'{}', '[]', '{}', 1, '2026-01-01', '2026-01-01')"), {"id": cid, "v": vid})
            for v, k, c in keys:
                conn.execute(text("INSERT INTO crm_identity_keys (vendor_id, key, crm_client_id) "
                                  "VALUES (:v, :k, :c)"), {"v": v, "k": k, "c": c})
        migrate(engine)
        with engine.connect() as conn:
            rows = sorted(tuple(r) for r in conn.execute(text(
                "SELECT vendor_id, key, crm_client_id FROM crm_identity_keys")))
        assert rows == [("v1", "e:ana.ruiz@example.com", "c3"), ("v1", "e:anaruiz@gmail.com", "c1"),
                        ("v1", "e:anaruiz@gmail.com", "c2"), ("v1", "p:+12125550123|ar", "c1"),
                        ("v2", "e:joe@gmail.com", "c9")]
    finally:
        engine.dispose()
