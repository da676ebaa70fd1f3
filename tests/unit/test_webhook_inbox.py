"""The webhook inbox: group-committed intake with exact deduplication, and the claim/mark drain side.

Runs against a temporary SQLite database, and also against PostgreSQL when ``WEDSYNC_TEST_POSTGRES_URL`` is
set (each test gets its own schema, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text, update

from wedsync.config import normalize_db_url
from wedsync.connectors.webhooks import VerifiedEvent
from wedsync.errors import InvalidInput
from wedsync.services.webhook_inbox import MAX_ATTEMPTS, InboxClosed, WebhookInbox
from wedsync.store.db import Database
from wedsync.store.tables import WebhookEvent

PG_URL = os.environ.get("WEDSYNC_TEST_POSTGRES_URL")


def _sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'inbox.sqlite'}")
    db.migrate()
    yield db
    db.dispose()


def _postgres_db() -> Iterator[Database]:
    if not PG_URL:
        pytest.skip("set WEDSYNC_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test) to run")
    url = normalize_db_url(PG_URL)
    schema = f"t_inbox_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    db = Database(f"{url}{sep}options=-csearch_path%3D{schema}")
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        yield from _sqlite_db(tmp_path)
    else:
        yield from _postgres_db()


def ev(event_id: str) -> VerifiedEvent:
    return VerifiedEvent(event_id=event_id, event_type="payment_intent.succeeded", record_id="pi_1")


def stored(db: Database, **where: str) -> int:
    t = WebhookEvent.__table__
    stmt = select(func.count()).select_from(t)
    for col, value in where.items():
        stmt = stmt.where(t.c[col] == value)
    with db.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


async def test_concurrent_submissions_with_duplicates_store_exact_counts(db: Database) -> None:
    inbox = WebhookInbox(db, batch_max=64, batch_wait_ms=2)
    inbox.start()
    try:
        ids = [f"evt_{i}" for i in range(600)]
        sends = [("conn_a", i) for i in ids] + [("conn_a", random.choice(ids)) for _ in range(120)]
        # The same event id on another connection is a different event.
        sends += [("conn_b", i) for i in ids[:50]]
        random.Random(7).shuffle(sends)

        async def send(conn_id: str, event_id: str) -> bool:
            return await inbox.submit(
                vendor_id="v1",
                connection_id=conn_id,
                provider="stripe",
                event=ev(event_id),
                body=b'{"id": "%s"}' % event_id.encode(),
            )

        results = await asyncio.gather(*(send(c, e) for c, e in sends))
        assert sum(results) == 650
        assert results.count(False) == 120
        assert stored(db, connection_id="conn_a") == 600
        assert stored(db, connection_id="conn_b") == 50
        assert inbox.batches < len(sends) / 4  # grouped, not one commit each
        assert inbox.stored == 650 and inbox.duplicates == 120
        # Redelivery after the fact is a duplicate too.
        assert await send("conn_a", "evt_3") is False
    finally:
        await inbox.stop()


async def test_submissions_from_several_event_loops(db: Database) -> None:
    inbox = WebhookInbox(db)
    inbox.start()
    results: list[list[bool]] = []

    def worker(offset: int) -> None:
        async def run() -> list[bool]:
            return list(
                await asyncio.gather(
                    *(
                        inbox.submit(
                            vendor_id="v1",
                            connection_id="c",
                            provider="stripe",
                            event=ev(f"e{(offset + i) % 300}"),
                            body=b"{}",
                        )
                        for i in range(200)
                    )
                )
            )

        results.append(asyncio.run(run()))

    threads = [threading.Thread(target=worker, args=(k * 100,)) for k in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    await inbox.stop()
    # Three workers cover ids 0..299 with overlaps: each id stored exactly once.
    assert sum(sum(r) for r in results) == 300
    assert stored(db) == 300


async def test_duplicate_in_the_same_batch(db: Database) -> None:
    inbox = WebhookInbox(db, batch_max=100, batch_wait_ms=100)
    inbox.start()
    try:
        results = await asyncio.gather(
            *(
                inbox.submit(vendor_id="v1", connection_id="c1", provider="stripe", event=ev(e), body=b"{}")
                for e in ("evt_x", "evt_y", "evt_x", "evt_x")
            )
        )
        assert inbox.batches == 1
        assert results == [True, True, False, False]
        assert stored(db) == 2
    finally:
        await inbox.stop()


async def test_a_bad_row_does_not_fail_its_batch(db: Database) -> None:
    inbox = WebhookInbox(db, batch_max=100, batch_wait_ms=50)
    inbox.start()
    try:
        good = [
            inbox.submit(vendor_id="v1", connection_id="c1", provider="stripe", event=ev(f"g{i}"), body=b"{}")
            for i in range(5)
        ]
        bad = inbox.submit(
            vendor_id=None,  # type: ignore[arg-type]  # violates NOT NULL
            connection_id="c1",
            provider="stripe",
            event=ev("bad"),
            body=b"{}",
        )
        results = await asyncio.gather(*good, bad, return_exceptions=True)
        assert results[:5] == [True] * 5
        assert isinstance(results[5], Exception)
        assert stored(db) == 5
        # The writer keeps working afterwards.
        assert await inbox.submit(vendor_id="v1", connection_id="c1", provider="stripe", event=ev("g9"), body=b"{}")
    finally:
        await inbox.stop()


async def test_stop_flushes_and_closed_inbox_refuses(db: Database) -> None:
    inbox = WebhookInbox(db, batch_max=8, batch_wait_ms=20)
    with pytest.raises(InboxClosed):
        await inbox.submit(vendor_id="v1", connection_id="c1", provider="stripe", event=ev("e0"), body=b"")
    inbox.start()
    tasks = [
        asyncio.create_task(
            inbox.submit(vendor_id="v1", connection_id="c1", provider="stripe", event=ev(f"e{i}"), body=b"")
        )
        for i in range(50)
    ]
    await asyncio.sleep(0)  # let every task enqueue
    await inbox.stop()
    assert all(await asyncio.gather(*tasks))
    assert stored(db) == 50
    with pytest.raises(InboxClosed):
        await inbox.submit(vendor_id="v1", connection_id="c1", provider="stripe", event=ev("e99"), body=b"")
    with pytest.raises(InvalidInput):
        inbox.start()
        try:
            await inbox.submit(vendor_id="v1", connection_id="c1", provider="stripe", event=ev("x" * 201), body=b"")
        finally:
            await inbox.stop()


async def _fill(db: Database, n: int, connection_id: str = "c1") -> None:
    inbox = WebhookInbox(db)
    inbox.start()
    try:
        await asyncio.gather(
            *(
                inbox.submit(
                    vendor_id="v1",
                    connection_id=connection_id,
                    provider="stripe",
                    event=ev(f"e{i}"),
                    body=f'{{"n": {i}}}'.encode(),
                )
                for i in range(n)
            )
        )
    finally:
        await inbox.stop()


async def test_claim_and_mark(db: Database) -> None:
    await _fill(db, 10)
    await _fill(db, 3, connection_id="c2")
    inbox = WebhookInbox(db)
    assert inbox.pending_count() == 13
    assert inbox.pending_count(connection_id="c2") == 3

    first = inbox.claim_pending(4)
    assert [r.event_id for r in first] == ["e0", "e1", "e2", "e3"]  # oldest first
    assert first[0].body == b'{"n": 0}' and first[0].provider == "stripe" and first[0].attempts == 0
    assert first[0].received_at.tzinfo is not None
    assert inbox.pending_count() == 9
    only_c2 = inbox.claim_pending(10, connection_id="c2")
    assert {r.connection_id for r in only_c2} == {"c2"} and len(only_c2) == 3

    assert inbox.mark_processed([r.id for r in first[:3]]) == 3
    assert stored(db, status="processed") == 3

    # Retry: back to pending until the last allowed attempt, then failed. Each failure defers the event by
    # its backoff (not claimable before); moved past it, it is the next one claimed.
    row_id = first[3].id
    for attempt in range(1, MAX_ATTEMPTS + 1):
        due_before = inbox.pending_count(due_only=True)
        status = inbox.mark_failed(row_id, f"boom {attempt}", retry=True)
        if attempt < MAX_ATTEMPTS:
            assert status == "pending"
            assert inbox.pending_count(due_only=True) == due_before < inbox.pending_count()
            with db.engine.begin() as conn:
                wait = conn.execute(select(WebhookEvent.next_attempt_at)
                                    .where(WebhookEvent.id == row_id)).scalar_one()
                assert wait is not None and wait > datetime.now(UTC)
                conn.execute(update(WebhookEvent).where(WebhookEvent.id == row_id).values(
                    next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
            again = inbox.claim_pending(1)
            assert again[0].id == row_id and again[0].attempts == attempt
        else:
            assert status == "failed"
    assert stored(db, status="failed") == 1
    assert inbox.mark_failed(10**9, "missing") is None

    # A non-retriable failure is parked at once.
    nxt = inbox.claim_pending(1)
    assert inbox.mark_failed(nxt[0].id, "bad payload", retry=False) == "failed"

    # A crashed worker's claims go back to pending.
    claimed = inbox.claim_pending(2)
    assert inbox.release_stale(older_than=3600) == 0
    assert inbox.release_stale(older_than=0) == len(claimed) + len(only_c2)
    assert inbox.pending_count() == 5 + 3


def test_claim_empty_and_zero_limit(db: Database) -> None:
    inbox = WebhookInbox(db)
    assert inbox.claim_pending(10) == []
    assert inbox.claim_pending(0) == []
    assert inbox.mark_processed([]) == 0
    assert inbox.pending_count() == 0


async def test_a_claim_names_its_executor_and_a_dead_executors_claims_are_released(db: Database) -> None:
    """``claimed_by`` records who claimed an event; ``release_claims`` hands back the ``processing`` rows of the
    executors named (only those claimed before ``claimed_before`` when given), nothing else."""
    await _fill(db, 8)
    inbox = WebhookInbox(db)
    dead = inbox.claim_pending(2, claimed_by="w-dead")
    alive = inbox.claim_pending(2, claimed_by="w-alive")
    anonymous = inbox.claim_pending(1)
    done = inbox.claim_pending(1, claimed_by="w-dead")
    inbox.mark_processed([done[0].id])
    t = WebhookEvent.__table__
    with db.engine.connect() as conn:
        owners = dict(conn.execute(select(t.c.id, t.c.claimed_by).where(t.c.status == "processing")).all())
    assert owners == {**dict.fromkeys((r.id for r in dead), "w-dead"), **dict.fromkeys((r.id for r in alive),
                      "w-alive"), anonymous[0].id: None}

    assert inbox.release_claims([]) == 0
    assert inbox.release_claims(["w-dead"], claimed_before=datetime.now(UTC) - timedelta(minutes=1)) == 0
    assert inbox.release_claims(["w-dead", "w-unknown"]) == 2
    assert stored(db, status="processing") == 3 and stored(db, status="processed") == 1
    again = inbox.claim_pending(10, claimed_by="w-alive")  # the released events are claimable at once
    assert {r.id for r in dead} <= {r.id for r in again}
    # a failed attempt and the stale release clear the claim too
    assert inbox.mark_failed(again[0].id, "boom") == "pending"
    assert inbox.release_stale(older_than=0) == len(alive) + len(anonymous) + len(again) - 1
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t).where(t.c.claimed_by.is_not(None))).scalar() == 0


async def test_two_concurrent_claimers_never_share_a_row(db: Database) -> None:
    n = 400
    await _fill(db, n)
    claims: list[list[int]] = [[], []]
    barrier = threading.Barrier(2)

    def claimer(k: int) -> None:
        inbox = WebhookInbox(db)
        barrier.wait()
        while True:
            rows = inbox.claim_pending(7)
            if not rows:
                return
            claims[k].extend(r.id for r in rows)
            inbox.mark_processed([r.id for r in rows])

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    a, b = set(claims[0]), set(claims[1])
    assert not a & b
    assert len(claims[0]) + len(claims[1]) == n == len(a | b)
    assert stored(db, status="processed") == n


async def test_drain_trigger_enqueues_once_per_slot_and_always_after_the_last_poke(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Pokes from the webhook route (one per new event) become at most one drain per time slot, in increasing
    slots, without asking the database again in a slot already enqueued; and a poke after the last drain was
    enqueued is always followed by another drain, so no event waits for the periodic sweep."""
    import time

    from wedsync.workflows import inbox as wf

    enqueued: list[tuple[int, float]] = []

    async def fake_enqueue(slot: int | None = None) -> None:
        assert slot is not None
        enqueued.append((slot, time.time()))

    monkeypatch.setattr(wf, "enqueue_drain", fake_enqueue)
    trigger = wf.DrainTrigger(delay=0.01)
    started = time.time()
    while time.time() - started < 1.0:  # a poke every 2 ms for a second: ~500 new events
        trigger.poke()
        await asyncio.sleep(0.002)
    last_poke = time.time()
    await asyncio.sleep(2 * wf.SLOT_SECONDS + 0.05)
    slots = [s for s, _ in enqueued]
    assert slots == sorted(set(slots)), slots  # one per slot, in order
    assert len(slots) <= 1.0 / wf.SLOT_SECONDS + 2, slots
    assert all(at >= slot * wf.SLOT_SECONDS for slot, at in enqueued)  # never ahead of its slot
    assert enqueued[-1][1] >= last_poke - wf.SLOT_SECONDS - 0.05  # the last pokes were followed by a drain


def test_retry_delays_grow_and_honour_the_providers_retry_after() -> None:
    """Backoff after 1, 2, ... failures: growing, capped, jittered upwards by at most 20 %, never shorter than
    the provider's Retry-After; MAX_ATTEMPTS spans more than an hour of outage."""
    from wedsync.services.webhook_inbox import RETRY_DELAYS, retry_delay

    for n, base in enumerate(RETRY_DELAYS, start=1):
        for _ in range(20):
            assert base <= retry_delay(n) <= base * 1.2
    assert retry_delay(99) <= RETRY_DELAYS[-1] * 1.2
    assert list(RETRY_DELAYS) == sorted(RETRY_DELAYS)
    assert retry_delay(1, retry_after=600) == 600
    assert sum(RETRY_DELAYS[: MAX_ATTEMPTS - 1]) > 3600
