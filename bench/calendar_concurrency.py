"""Concurrency: 100 parallel booking requests for overlapping slots of one vendor, arriving through different
channels at once: the HTTP API (loopback, real hub app) and imported Calendly / Acuity bookings (the import path
a webhook-triggered sync runs). Exactly one may win; every other request must get 409 (imports: a recorded
conflict). On SQLite and, with ``--pg URL``, on PostgreSQL.

Baseline (same run): the same 100 requests for non-overlapping slots (all succeed), so the ratio shows what the
overlap guard costs under contention. Run: ``.venv/bin/python bench/calendar_concurrency.py
[--pg postgresql://postgres@127.0.0.1:5432/test] [--n 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WEDSYNC_LOG_LEVEL", "WARNING")

from tests.e2e.procs import serve_app_in_thread  # noqa: E402

T0 = datetime(2027, 9, 18, 13, 0, tzinfo=UTC)


def run(backend: str, database_url: str | None, n: int, overlapping: bool) -> dict[str, float | int]:
    from wedsync.api.app import create_app
    from wedsync.bootstrap import Hub, set_hub
    from wedsync.config import Settings
    from wedsync.errors import Conflict
    from wedsync.services.calendar import BookingRequest

    home = Path(tempfile.mkdtemp(prefix=f"wedsync-calconc-{backend}-"))
    kwargs = {"database_url": database_url} if database_url else {}
    hub = Hub(Settings(home=home, allow_private_urls=True, log_level="WARNING", **kwargs))
    set_hub(hub)
    hub.calendar.auto_propagate = False
    v = hub.tenancy.create_vendor("Bloom & Vine", "Europe/London").id
    _, key = hub.tenancy.create_key(v)
    url, stop = serve_app_in_thread(create_app(launch_workflows=False))

    def slot(i: int) -> tuple[datetime, datetime]:
        if overlapping:  # every request overlaps every other (all contain 15:00-15:30)
            start = T0 + timedelta(minutes=(i % 10) * 10)
            return start, T0 + timedelta(hours=2, minutes=30)
        start = T0 + timedelta(hours=3 * i)
        return start, start + timedelta(hours=2)

    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()
    go = threading.Event()
    channels = ["api" if i % 5 < 3 else ("calendly" if i % 5 == 3 else "acuity") for i in range(n)]

    def importer(i: int) -> None:
        start, end = slot(i)
        go.wait()
        try:
            res = hub.calendar.import_booking(v, BookingRequest(start=start, end=end, channel=channels[i],
                                                                external_ref=f"{channels[i]}-{i}"))
            out = "ok" if res["status"] == "active" else "409"
        except Conflict:
            out = "409"
        with lock:
            outcomes.append((channels[i], out))

    async def api_all() -> None:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                                     limits=httpx.Limits(max_connections=200)) as client:
            async def one(i: int) -> None:
                start, end = slot(i)
                r = await client.post("/api/calendar/bookings", json={"start": start.isoformat(),
                                                                       "end": end.isoformat()})
                out = "ok" if r.status_code == 201 else "409" if r.status_code == 409 else f"http{r.status_code}"
                with lock:
                    outcomes.append(("api", out))

            await asyncio.to_thread(go.wait)
            await asyncio.gather(*(one(i) for i in range(n) if channels[i] == "api"))

    threads = [threading.Thread(target=importer, args=(i,)) for i in range(n) if channels[i] != "api"]
    for t in threads:
        t.start()
    api_thread = threading.Thread(target=lambda: asyncio.run(api_all()))
    api_thread.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    go.set()
    api_thread.join()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    active = hub.calendar.list_bookings(v, status="active")
    conflicts = hub.calendar.conflicts_recorded(v)
    stop()
    set_hub(None)
    hub.close()
    ok = sum(1 for _, o in outcomes if o == "ok")
    refused = sum(1 for _, o in outcomes if o == "409")
    other = len(outcomes) - ok - refused
    return {"requests": len(outcomes), "ok": ok, "refused_409": refused, "other": other,
            "active_rows": len(active), "import_conflicts_recorded": len(conflicts), "wall_s": round(wall, 3)}


def pg_database(base: str) -> tuple[str, object]:
    from tests.conftest import PgDatabase

    db = PgDatabase(base)
    return db.url, db


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--pg", default=os.environ.get("WEDSYNC_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    if args.pg:
        backends.append(("postgresql", args.pg))
    failed = False
    for name, base in backends:
        for overlapping in (True, False):
            db = None
            url = None
            if base:
                url, db = pg_database(base)
            res = run(name, url, args.n, overlapping)
            if db is not None:
                db.drop()  # type: ignore[attr-defined]
            label = "overlapping" if overlapping else "disjoint (baseline)"
            print(f"{name:10} {label:20} {res}", flush=True)
            if overlapping:
                exact = res["ok"] == 1 and res["refused_409"] == args.n - 1 and res["active_rows"] == 1
                failed |= not exact
                print(f"{'':10} exactly one succeeded, the rest 409: {exact}")
                overlap_wall = res["wall_s"]
            else:
                print(f"{'':10} wall ratio overlapping/disjoint: {overlap_wall / max(res['wall_s'], 1e-9):.2f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
