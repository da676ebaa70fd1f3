"""Data migrations: a store written by an earlier release is brought to what the current code expects."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

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


def test_diminutives_get_phone_keys_under_their_given_names_initial(db_url: str) -> None:
    """Clients stored before the rule get the phone keys a record arriving after the upgrade looks them up by
    (Peggy Hale's phone also under ``hm``, as Margaret Hale's); other keys are left as they were."""
    engine = create_engine(db_url)
    try:
        migrate(engine, "0011")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO vendors (id, name, timezone, created_at) VALUES "
                              "('v1', 'A', 'UTC', '2026-01-01')"))
            conn.execute(text("INSERT INTO connections (id, vendor_id, provider, status, settings, created_at, "
                              "updated_at) VALUES ('k1', 'v1', 'honeybook', 'active', '{}', '2026-01-01', "
                              "'2026-01-01')"))
            # c1: Peggy Hale from a source record; c2: Ana Ruiz, renamed "Bob Jones" by the vendor; c3: Margaret
            for cid, first, last, phone in (("c1", "Peggy", "Hale", "+15552017777"),
                                            ("c2", "Bob", "Jones", "+15552013344"),
                                            ("c3", "Margaret", "Hale", "+15552010000")):
                conn.execute(text("INSERT INTO crm_clients (id, vendor_id, kind, first_name, last_name, phone, "
                                  "custom_fields, wedding_dates, field_sources, version, created_at, updated_at) "
                                  "VALUES (:id, 'v1', 'person', :f, :l, :p, '{}', '[]', '{}', 1, '2026-01-01', "
                                  "'2026-01-01')"), {"id": cid, "f": first, "l": last, "p": phone})
            for sid, cid, first, last, phone in (("s1", "c1", "Peggy", "Hale", "+15552017777"),
                                                 ("s2", "c2", "Ana", "Ruiz", "+15552013344"),
                                                 ("s3", "gone", "Pepe", "Garcia", "+34612345678")):
                conn.execute(text("INSERT INTO clients (id, vendor_id, connection_id, provider, remote_id, kind, "
                                  "first_name, last_name, phone, custom_fields, content_hash, synced_at, version, "
                                  "crm_client_id) VALUES (:id, 'v1', 'k1', 'honeybook', :id, 'person', :f, :l, :p, "
                                  "'{}', 'h', '2026-01-01', 1, :c)"),
                             {"id": sid, "c": cid, "f": first, "l": last, "p": phone})
            for k, c in (("p:+15552017777|hp", "c1"), ("p:+15552013344|ar", "c2"), ("p:+15552013344|bj", "c2"),
                         ("p:+15552010000|hm", "c3")):
                conn.execute(text("INSERT INTO crm_identity_keys (vendor_id, key, crm_client_id) "
                                  "VALUES ('v1', :k, :c)"), {"k": k, "c": c})
        migrate(engine)
        with engine.connect() as conn:
            rows = sorted(tuple(r) for r in conn.execute(text(
                "SELECT vendor_id, key, crm_client_id FROM crm_identity_keys")))
        assert rows == [("v1", "p:+15552010000|hm", "c3"), ("v1", "p:+15552013344|ar", "c2"),
                        ("v1", "p:+15552013344|bj", "c2"), ("v1", "p:+15552013344|jr", "c2"),
                        ("v1", "p:+15552017777|hm", "c1"), ("v1", "p:+15552017777|hp", "c1")]
    finally:
        engine.dispose()


def test_stroked_letters_are_folded_in_search_text_and_key_initials(db_url: str) -> None:
    """Clients stored before "Đ" folded to "d" (and the Turkish dotless i to i) are found by the plain spelling:
    their search text is recomputed and their phone and date keys are also stored with the plain initials."""
    engine = create_engine(db_url)
    try:
        migrate(engine, "0017")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO vendors (id, name, timezone, created_at) VALUES "
                              "('v1', 'A', 'UTC', '2026-01-01')"))
            for cid, first, last, stored in (("c1", "Linh", "Đặng", "|linh đang|||"),
                                             ("c2", "Ana", "Ruiz", "|ana ruiz|||")):
                conn.execute(text("INSERT INTO crm_clients (id, vendor_id, kind, first_name, last_name, "
                                  "search_text, custom_fields, wedding_dates, field_sources, version, created_at, "
                                  "updated_at) VALUES (:id, 'v1', 'person', :f, :l, :t, '{}', '[]', '{}', 1, "
                                  "'2026-01-01', '2026-01-01')"), {"id": cid, "f": first, "l": last, "t": stored})
            for k, c in (("p:+14155550100|lđ", "c1"), ("d:2027-06-12|lđ", "c1"), ("e:linh@x.com", "c1"),
                         ("p:+14155550101|ar", "c2")):
                conn.execute(text("INSERT INTO crm_identity_keys (vendor_id, key, crm_client_id) "
                                  "VALUES ('v1', :k, :c)"), {"k": k, "c": c})
        migrate(engine)
        with engine.connect() as conn:
            rows = sorted(tuple(r) for r in conn.execute(text(
                "SELECT vendor_id, key, crm_client_id FROM crm_identity_keys")))
            texts = dict(tuple(r) for r in conn.execute(text("SELECT id, search_text FROM crm_clients")))
        assert rows == [("v1", "d:2027-06-12|dl", "c1"), ("v1", "d:2027-06-12|lđ", "c1"),
                        ("v1", "e:linh@x.com", "c1"), ("v1", "p:+14155550100|dl", "c1"),
                        ("v1", "p:+14155550100|lđ", "c1"), ("v1", "p:+14155550101|ar", "c2")]
        assert texts == {"c1": "|linh dang|||", "c2": "|ana ruiz|||"}
    finally:
        engine.dispose()


def test_sync_schedule_columns_and_one_run_in_progress_per_connection(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        migrate(engine, "0007")  # before scheduled pulls: two runs of one connection could both be in progress
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO vendors (id, name, timezone, created_at) VALUES "
                              "('v1', 'A', 'UTC', '2026-01-01')"))
            for cid in ("c1", "c2"):
                conn.execute(text("INSERT INTO connections (id, vendor_id, provider, status, settings, created_at, "
                                  "updated_at) VALUES (:c, 'v1', 'vsco-workspace', 'active', '{}', '2026-01-01', "
                                  "'2026-01-01')"), {"c": cid})
            for rid, cid, status in (("r1", "c1", "running"), ("r2", "c1", "queued"), ("r3", "c1", "succeeded"),
                                     ("r4", "c2", "running")):
                conn.execute(text("INSERT INTO sync_runs (id, vendor_id, connection_id, mode, status, started_at, "
                                  "pages, processed, created, updated, unchanged, deleted, errors, progress) VALUES "
                                  "(:r, 'v1', :c, 'full', :s, '2026-01-01', 0, 0, 0, 0, 0, 0, 0, '{}')"),
                             {"r": rid, "c": cid, "s": status})
        migrate(engine)
        with engine.connect() as conn:
            runs = dict(conn.execute(text("SELECT id, status FROM sync_runs ORDER BY id")).all())
            schedule = conn.execute(text("SELECT sync_interval_minutes, next_sync_at FROM connections "
                                         "WHERE id = 'c1'")).one()
        # the newest run in progress stays, the older one is closed; other connections are untouched
        assert runs == {"r1": "failed", "r2": "queued", "r3": "succeeded", "r4": "running"}
        assert tuple(schedule) == (None, None)
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("INSERT INTO sync_runs (id, vendor_id, connection_id, mode, status, started_at, pages, "
                              "processed, created, updated, unchanged, deleted, errors, progress) VALUES ('r5', 'v1', "
                              "'c1', 'full', 'running', '2026-01-01', 0, 0, 0, 0, 0, 0, 0, '{}')"))
    finally:
        engine.dispose()


def test_the_migrations_build_exactly_the_models(db_url: str) -> None:
    """Alembic's autogenerate comparison of a database migrated to head with the SQLAlchemy models finds nothing:
    no table, column, index or constraint that one has and the other lacks (a model changed without its
    migration, or the reverse, fails here)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import wedsync.store.tables_calendar
    import wedsync.store.tables_crm
    import wedsync.store.tables_payments  # noqa: F401 - every model module registers its tables
    from wedsync.store.tables import Base

    engine = create_engine(db_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diffs == [], diffs
    finally:
        engine.dispose()
