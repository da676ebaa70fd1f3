"""Concurrent syncs on one SQLite store: K vendors' VSCO Workspace books synced at once, one process each.

    .venv/bin/python bench/sync_processes.py                       # 30,000 contacts per vendor, K = 1 then 2
    .venv/bin/python bench/sync_processes.py --contacts 20000 --processes 1 2 3

What it answers: does a second process (two vendors syncing at the same time, or a sync split across worker
processes) use this host's second core, when every sync page is one write transaction on the same SQLite file?

In one run:

1. the provider sandbox starts in its own process and is seeded with ``--contacts`` contacts (and a job per 50);
2. **raw baseline**: ``sync_vsco.raw_baseline`` (plain httpx GETs of every page, executemany into a fresh SQLite
   table): what fetching and storing the same pages costs at the least;
3. for each K in ``--processes``: a fresh store with K vendors, each with its own VSCO Workspace connection to
   the same sandbox book; then K processes start together, each running the real sync engine (``DirectSteps``,
   no DBOS) on its vendor's connection. Each child prints its wall and CPU seconds; the figure is the aggregate
   records/s (K x records over the time from the first child's start of its sync to the last one's end, so
   interpreter start-up is not counted), next to K = 1 and the raw baseline.

Each child checks its own store counts (clients == contacts, weddings == jobs). Nothing here changes the hub:
the children are the hub's own engine on its embedded defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import sync_vsco as base  # noqa: E402  (the sandbox helpers, the raw baseline and make_hub are shared)


def child(home: str, vendor_id: str, connection_id: str, contacts: int, jobs: int) -> None:
    from wedsync.logging import configure_logging

    configure_logging("WARNING")
    hub = base.make_hub(Path(home))
    start, t0, c0 = time.time(), time.perf_counter(), time.process_time()
    _, result = asyncio.run(base.direct_run(hub, vendor_id, connection_id))
    wall, cpu, end = time.perf_counter() - t0, time.process_time() - c0, time.time()
    check = base.check_store(hub, connection_id, contacts, jobs)
    hub.close()
    print(json.dumps({"start": start, "end": end, "wall": wall, "cpu": cpu, "created": result["created"],
                      "status": result["status"], "ok": bool(check["ok"])}), flush=True)


def run_k(k: int, work: Path, api: str, contacts: int, jobs: int) -> dict[str, float]:
    home = work / f"k{k}"
    hub = base.make_hub(home)
    pairs = []
    for i in range(k):
        v = hub.tenancy.create_vendor(f"Bench Studio {i + 1}")
        c = hub.connections.create(v.id, base.SLUG, credentials={"api_key": base.API_KEY}, base_url=api)
        pairs.append((v.id, c.id))
    hub.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs = [subprocess.Popen([sys.executable, __file__, "--child", str(home), vid, cid, str(contacts), str(jobs)],
                              env=env, stdout=subprocess.PIPE, text=True) for vid, cid in pairs]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    # from the first child's start of its sync to the last one's end (interpreter start-up and imports excluded)
    elapsed = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    for o in outs:
        if o["status"] != "succeeded" or not o["ok"]:
            raise SystemExit(f"a child's sync did not check out: {o}")
    created = sum(int(o["created"]) for o in outs)
    return {"k": k, "seconds": elapsed, "records": created, "cpu": sum(o["cpu"] for o in outs),
            "child_wall": max(o["wall"] for o in outs)}


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        home, vid, cid, contacts, jobs = sys.argv[2:7]
        child(home, vid, cid, int(contacts), int(jobs))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--contacts", type=int, default=30_000, help="contacts in the sandbox book (each vendor syncs it)")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="the K values to run, in order")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args()
    jobs = max(1, args.contacts // 50)

    from wedsync.logging import configure_logging

    configure_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="wedsync-bench-procs-"))
    port = base.free_port()
    sandbox = subprocess.Popen([sys.executable, "-m", "wedsync.cli", "sandbox", "--port", str(port), "--contacts", "0"],
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, stdout=subprocess.DEVNULL)
    try:
        import httpx

        root = f"http://127.0.0.1:{port}"
        api = f"{root}/{base.SLUG}/api/v2"
        base.wait_port(port)
        seeded = httpx.post(f"{root}/_sandbox/{base.SLUG}/seed", json={"contacts": args.contacts, "jobs": jobs},
                            timeout=600).json()
        records = int(seeded["contacts"]) + int(seeded["jobs"]) + int(seeded["job_contacts"])
        raw = asyncio.run(base.raw_baseline(api, work / "raw.sqlite", [
            ("/address-book", {"includeHidden": "true"}), ("/job", {"includeClosed": "true"}),
            ("/job-contact", {"includeHidden": "true"})]))
        raw_rps = records / raw["seconds"]
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {seeded['contacts']} contacts, "
              f"{seeded['jobs']} jobs per vendor ({records} records)")
        print(f"raw baseline (httpx + executemany): {raw['seconds']:.2f} s, {raw_rps:,.0f} records/s")
        first: float | None = None
        for k in args.processes:
            r = run_k(k, work, api, int(seeded["contacts"]), int(seeded["jobs"]))
            rps = r["records"] / r["seconds"]
            first = first or rps
            print(f"K={k}: {r['records']} records in {r['seconds']:.2f} s -> {rps:,.0f} records/s aggregate "
                  f"(x{rps / first:.2f} of the first K, {rps / raw_rps:.2f} of raw); children's CPU {r['cpu']:.2f} s, "
                  f"core use {r['cpu'] / r['seconds']:.2f} of {os.cpu_count()}")
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
