"""VSCO Workspace sync benchmark: 100,000 contacts from the sandbox over loopback HTTP, next to a raw baseline.

    .venv/bin/python bench/sync_vsco.py                      # 100,000 contacts + 2,000 jobs
    .venv/bin/python bench/sync_vsco.py --contacts 20000 --jobs 500 --keep

What it does, all in one run (every figure it prints is measured in that run):

1. starts the provider sandbox in a separate process (``python -m wedsync.cli sandbox``), so the server does
   not compete with this process for the GIL, and seeds it through the admin endpoint
   ``POST /_sandbox/vsco-workspace/seed {"contacts": N, "jobs": M}``;
2. **raw baseline**: plain ``httpx.AsyncClient`` GETs every page the hub fetches (``page``/``pageSize=100``,
   ``sortBy=id asc``, ``X-API-KEY``), decodes the JSON and ``executemany``-INSERTs a few fields per item into
   a fresh SQLite table (WAL, ``synchronous=NORMAL``, one commit per page). No mapping, no hashing, no
   bookkeeping: what fetching and storing the same pages costs at the least;
3. **hub, DirectSteps**: a fresh ``WEDSYNC_HOME``, a vendor and a VSCO Workspace connection, then
   ``drive_run`` with ``DirectSteps`` (the real sync engine, no DBOS): the cost of the sync logic itself;
4. **hub, DBOS**: another fresh ``WEDSYNC_HOME``; DBOS launched (SQLite system database), the run enqueued
   as the ``sync_connection`` workflow on the sync queue (``enqueue_sync``), timed from just before
   ``create_run`` + enqueue until the workflow's result arrives. This is the figure the target is about;
5. **incremental**: ``POST /_sandbox/vsco-workspace/mutate {"update": 1000}``, then an incremental run as a
   DBOS workflow, timed the same way.

After each hub run it checks the store: clients == contacts, weddings == jobs, no duplicate remote ids,
nothing deleted; after the incremental run, exactly the mutated contacts were updated.

contacts/s is the contact count divided by the whole run's time (jobs included, so it is conservative);
records/s counts contacts + jobs + job-contact links (the three streams a run pulls). The ratio is hub records/s
over raw-baseline records/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# --src DIR runs the hub from another source tree (an A/B comparison of an engine change); the sandbox
# always comes from this tree.
SRC = Path(sys.argv[sys.argv.index("--src") + 1]).resolve() if "--src" in sys.argv[:-1] else ROOT / "src"
sys.path.insert(0, str(SRC))

SLUG = "vsco-workspace"
API_KEY = "sandbox-vsco-key"
PAGE_SIZE = 100
TARGET_RPS = 5000.0
TARGET_RATIO = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"the sandbox did not listen on port {port}")


# ------------------------------------------------------------------------------------------ raw baseline


async def raw_baseline(api: str, db_path: Path, streams: list[tuple[str, dict[str, str]]]) -> dict[str, Any]:
    """GET every page with plain httpx and bulk-insert a few raw fields per item; no sync logic."""
    import httpx

    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE records (stream TEXT NOT NULL, remote_id TEXT NOT NULL, name TEXT, email TEXT, "
               "modified TEXT, PRIMARY KEY (stream, remote_id))")
    counts: dict[str, int] = {}
    pages = 0
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=api, headers={"X-API-KEY": API_KEY, "Accept": "application/json"},
                                 timeout=30) as client:
        for path, extra in streams:
            page, total_pages, n = 1, 1, 0
            while page <= total_pages:
                r = await client.get(path, params={"page": page, "pageSize": PAGE_SIZE, "sortBy": "id asc",
                                                   **extra})
                r.raise_for_status()
                body = r.json()
                total_pages = body["meta"]["totalPages"]
                rows = [(path, str(i["id"]), i.get("name") or i.get("lastName"), i.get("email"), i.get("modified"))
                        for i in body["items"]]
                db.execute("BEGIN")
                db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
                n += len(rows)
                pages += 1
                page += 1
            counts[path] = n
    elapsed = time.perf_counter() - t0
    stored = db.execute("SELECT count(*) FROM records").fetchone()[0]
    db.close()
    return {"seconds": elapsed, "counts": counts, "pages": pages, "stored": stored}


# --------------------------------------------------------------------------------------------- the hub


def make_hub(home: Path) -> Any:
    from wedsync.bootstrap import Hub, tune_gc
    from wedsync.config import Settings

    tune_gc()  # as in the hub's own processes (serve, worker, demo and the CLI commands set it at start-up)

    return Hub(Settings(home=home, allow_private_urls=True, executor_id="bench-sync", log_level="WARNING"))


def connect(hub: Any, api: str) -> tuple[str, str]:
    v = hub.tenancy.create_vendor("Bench Studio")
    c = hub.connections.create(v.id, SLUG, credentials={"api_key": API_KEY}, base_url=api)
    return v.id, c.id


def check_store(hub: Any, connection_id: str, contacts: int, jobs: int) -> dict[str, int]:
    from sqlalchemy import func, select

    from wedsync.store.tables import Client, Wedding

    out: dict[str, int] = {}
    with hub.db.read() as s:
        for name, model in (("clients", Client), ("weddings", Wedding)):
            where = model.connection_id == connection_id
            out[name] = s.execute(select(func.count()).select_from(model).where(where)).scalar_one()
            out[f"{name}_distinct"] = s.execute(
                select(func.count(func.distinct(model.remote_id))).where(where)).scalar_one()
            out[f"{name}_deleted"] = s.execute(select(func.count()).select_from(model).where(
                where, model.deleted_at.is_not(None))).scalar_one()
    ok = (out["clients"] == contacts == out["clients_distinct"] and out["weddings"] == jobs
          == out["weddings_distinct"] and out["clients_deleted"] == 0 and out["weddings_deleted"] == 0)
    out["ok"] = int(ok)
    return out


async def direct_run(hub: Any, vendor_id: str, connection_id: str) -> tuple[float, dict[str, Any]]:
    from wedsync.services.sync_engine import DirectSteps, drive_run

    t0 = time.perf_counter()
    run = hub.sync.create_run(vendor_id, connection_id, "full")
    result = await drive_run(run.id, DirectSteps(hub.sync))
    elapsed = time.perf_counter() - t0
    await hub.connections.aclose()
    return elapsed, result


async def dbos_run(hub: Any, vendor_id: str, connection_id: str, mode: str) -> tuple[float, dict[str, Any]]:
    from dbos import DBOS

    from wedsync.workflows.sync import enqueue_sync

    t0 = time.perf_counter()
    run = hub.sync.create_run(vendor_id, connection_id, mode)
    await enqueue_sync(run.id)
    handle = await DBOS.retrieve_workflow_async(run.id)
    # The handle polls the workflow's status from this process, competing with the run for the GIL: every 20 ms
    # it cost about 5 % of the run's CPU (py-spy: 0.6 s of an 11 s run), DBOS's default 1 s could add up to a
    # second to the time; every 100 ms adds at most 0.1 s (under 1 % of a 100k run) and costs 5 times less.
    result = await handle.get_result(polling_interval_sec=0.1)
    elapsed = time.perf_counter() - t0
    return elapsed, result


# ------------------------------------------------------------------------------------------------- main


def fmt_row(label: str, seconds: float, contacts: int, records: int, base_rps: float | None) -> str:
    rps = records / seconds
    ratio = f"{rps / base_rps:8.2f}" if base_rps else f"{'':8}"
    return f"{label:34}{seconds:9.2f}{contacts / seconds:12.0f}{rps:12.0f}{ratio}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--contacts", type=int, default=100_000)
    p.add_argument("--jobs", type=int, default=2_000)
    p.add_argument("--update", type=int, default=1_000, help="contacts mutated before the incremental run")
    p.add_argument("--port", type=int, default=0, help="sandbox port (default: a free one)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (databases) and print it")
    p.add_argument("--log-level", default="WARNING",
                   help="the hub's log level in this process (the hub's own default is INFO)")
    p.add_argument("--dbos-warmup", type=float, default=3.0, help="seconds between DBOS launch and the run")
    p.add_argument("--src", default=None, help="run the hub from this source tree (A/B comparisons)")
    p.add_argument("--no-direct", action="store_true", help="skip the DirectSteps (no DBOS) run")
    args = p.parse_args(argv)

    from wedsync.logging import configure_logging

    configure_logging(args.log_level)  # as the hub's processes do (serve, worker); unconfigured, every
    # provider request would be rendered at debug level
    work = Path(tempfile.mkdtemp(prefix="wedsync-bench-sync-"))
    port = args.port or free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    sandbox = subprocess.Popen([sys.executable, "-m", "wedsync.cli", "sandbox", "--port", str(port),
                                "--contacts", "0"], env=env, stdout=subprocess.DEVNULL)
    code = 1
    try:
        import httpx

        root = f"http://127.0.0.1:{port}"
        api = f"{root}/{SLUG}/api/v2"
        wait_port(port)
        t = time.perf_counter()
        seeded = httpx.post(f"{root}/_sandbox/{SLUG}/seed", json={"contacts": args.contacts, "jobs": args.jobs},
                            timeout=600).json()
        print(f"sandbox pid {sandbox.pid} on {root}: seeded {seeded['contacts']} contacts, {seeded['jobs']} jobs "
              f"in {time.perf_counter() - t:.1f} s")
        contacts, jobs, links = int(seeded["contacts"]), int(seeded["jobs"]), int(seeded["job_contacts"])
        records = contacts + jobs + links
        import wedsync.services.sync_engine as engine

        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, workdir {work}, engine {engine.__file__}")
        print()

        # 1. raw baseline
        raw = asyncio.run(raw_baseline(api, work / "raw.sqlite", [("/address-book", {"includeHidden": "true"}),
                                                                  ("/job", {"includeClosed": "true"}),
                                                                  ("/job-contact", {"includeHidden": "true"})]))
        assert raw["stored"] == records, raw
        base_rps = records / raw["seconds"]

        # 2. hub without DBOS
        direct: tuple[float, dict[str, Any], dict[str, int]] | None = None
        if not args.no_direct:
            hub = make_hub(work / "direct")
            vid, cid = connect(hub, api)
            secs, res = asyncio.run(direct_run(hub, vid, cid))
            direct = (secs, res, check_store(hub, cid, contacts, jobs))
            hub.close()

        # 3. hub as a DBOS workflow, then 4. incremental
        from wedsync.bootstrap import launch_dbos, set_hub, shutdown_dbos

        hub = make_hub(work / "dbos")
        set_hub(hub)
        launch_dbos(hub.settings, executor_id="bench-sync")
        try:
            vid, cid = connect(hub, api)
            # Right after DBOS.launch() the queue's worker thread takes about a second to dequeue its first
            # workflow; a hub's workers are long-lived, so the run starts once that start-up is over.
            time.sleep(args.dbos_warmup)
            full_secs, full = asyncio.run(dbos_run(hub, vid, cid, "full"))
            full_check = check_store(hub, cid, contacts, jobs)
            mutated = httpx.post(f"{root}/_sandbox/{SLUG}/mutate", json={"update": args.update}, timeout=60).json()
            inc_secs, inc = asyncio.run(dbos_run(hub, vid, cid, "incremental"))
            inc_check = check_store(hub, cid, contacts, jobs)
        finally:
            shutdown_dbos()
            set_hub(None)
            hub.close()

        print(f"{'':34}{'seconds':>9}{'contacts/s':>12}{'records/s':>12}{'vs raw':>8}")
        print(fmt_row("raw baseline (httpx + executemany)", raw["seconds"], contacts, records, None))
        if direct:
            print(fmt_row("hub DirectSteps (no DBOS)", direct[0], contacts, records, base_rps))
        print(fmt_row("hub DBOS workflow (enqueue->result)", full_secs, contacts, records, base_rps))
        print(f"{'incremental after ' + str(len(mutated['updated'])) + ' updates (DBOS)':34}{inc_secs:9.2f}"
              f"   {inc['pages']} pages, {inc['processed']} processed, {inc['updated']} updated")
        if direct:
            print(f"DBOS overhead over DirectSteps: {full_secs - direct[0]:+.2f} s "
                  f"({(full_secs / direct[0] - 1) * 100:+.0f} %), {full['pages']} page steps")
        print()
        checks = []
        if direct:
            checks.append(("direct", direct[1], direct[2]))
        checks.append(("dbos full", full, full_check))
        ok = True
        for name, res, chk in checks:
            good = bool(chk["ok"]) and res["status"] == "succeeded" and res["created"] == records
            ok &= good
            print(f"check {name}: status {res['status']}, created {res['created']}, clients {chk['clients']} "
                  f"({chk['clients_distinct']} distinct), weddings {chk['weddings']} ({chk['weddings_distinct']} "
                  f"distinct), deleted {chk['clients_deleted'] + chk['weddings_deleted']} -> "
                  f"{'OK' if good else 'FAILED'}")
        # A sandbox edit can leave the mapped content as it was (e.g. a new phone behind an existing one),
        # so every mutated contact must be seen again and each is either updated or unchanged.
        n_mut = len(mutated["updated"])
        inc_good = (inc["status"] == "succeeded" and inc["mode"] == "incremental" and inc["created"] == 0
                    and inc["processed"] == n_mut and inc["updated"] + inc["unchanged"] == n_mut
                    and inc["updated"] > 0 and bool(inc_check["ok"]))
        ok &= inc_good
        print(f"check incremental: status {inc['status']}, mode {inc['mode']}, {n_mut} mutated -> processed "
              f"{inc['processed']}, updated {inc['updated']}, unchanged {inc['unchanged']} (edits that leave "
              f"the mapped content equal), clients {inc_check['clients']} -> {'OK' if inc_good else 'FAILED'}")
        rps = records / full_secs
        ratio = rps / base_rps
        print()
        print(f"TARGET records/s >= {TARGET_RPS:.0f}: {rps:.0f} -> {'met' if rps >= TARGET_RPS else 'NOT met'}; "
              f"ratio to raw >= {TARGET_RATIO}: {ratio:.2f} -> {'met' if ratio >= TARGET_RATIO else 'NOT met'}")
        code = 0 if ok else 1
    finally:
        sandbox.terminate()
        try:
            sandbox.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sandbox.kill()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
