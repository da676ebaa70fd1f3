"""Orchestration overhead of processMarketplaceTransaction on SQLite: wall time minus time inside gateway calls.

The Stripe sandbox runs in its own process on loopback. The hub runs in this process with DBOS launched
(SQLite system database, as the embedded default). For each of ``--transactions`` sequential transactions:

* wall = commit of the intent (validation, routing, split) + the DBOS workflow (begin, attempt with its key
  committed before the call, outcome + ledger postings in one transaction, settle) until its result;
* gateway = the time inside the connector's calls (``payment_attempts.gateway_ms``, measured around
  ``connector.charge``);
* overhead = wall - gateway.

Baseline, in the same run: the raw gateway call alone (the same connector's ``charge`` in a loop, no store,
no workflow). Targets (issue 4): overhead p50 <= 15 ms, p99 <= 40 ms.

    .venv/bin/python bench/payments_overhead.py --transactions 500 [--concurrency 8]

With ``--concurrency`` > 1 the transactions overlap (the wall of each includes waiting for the others on the
two cores and on SQLite's single writer), which is how the API sees them under load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from payments_faults import Procs  # noqa: E402


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--transactions", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=1, help="transactions in flight at once (1: sequential)")
    args = ap.parse_args()
    from wedsync.logging import configure_logging

    configure_logging("WARNING")  # one debug line per provider request would be measured too
    home = Path(tempfile.mkdtemp(prefix="wedsync-payoverhead-"))
    procs = Procs(home / "procs")
    procs.start_sandbox()
    try:
        run(procs, home / "hub", args.transactions, args.warmup, max(1, args.concurrency))
    finally:
        procs.stop()
        shutil.rmtree(home, ignore_errors=True)


def run(procs: Procs, home: Path, n: int, warmup: int, concurrency: int = 1) -> None:
    from sqlalchemy import func, select

    from wedsync.bootstrap import Hub, launch_dbos, set_hub, shutdown_dbos
    from wedsync.config import Settings
    from wedsync.connectors.payments.base import ChargeRequest
    from wedsync.services.payments import IntentRequest
    from wedsync.store.tables_payments import PaymentAttempt

    settings = Settings(home=home, allow_private_urls=True, executor_id="bench")
    hub = Hub(settings)
    set_hub(hub)
    launch_dbos(settings, executor_id="bench")
    from wedsync.workflows.payments import start_transaction

    v = hub.tenancy.create_vendor("Overhead Catering")
    conn = hub.connections.create(v.id, "stripe", credentials={"secret_key": "sk_test_wedsync_platform"},
                                  base_url=f"{procs.sandbox_url}/stripe")

    cpu: dict[str, float] = {}

    async def go() -> tuple[list[float], list[float], list[float], list[float]]:
        await hub.payments.setup(v.id, {"primary": conn.id, "feeStructure": {"platformFeeBps": 500,
                                                                            "affiliateFeeBps": 200}})
        connector = await hub.connections.connector(conn)
        raw: list[float] = []
        c0 = 0.0
        for i in range(warmup + n):  # the baseline: the gateway call alone
            if i == warmup:
                c0 = time.process_time()
            req = ChargeRequest(reference=f"raw-{i}", amount_minor=10_000 + i, currency="USD",
                                payment_method="pm_card_visa")
            t = time.perf_counter()
            await connector.charge(req, f"raw-key-{i}")
            if i >= warmup:
                raw.append((time.perf_counter() - t) * 1000)
        cpu["raw"] = (time.process_time() - c0) * 1000 / n
        walls: list[float] = []
        gws: list[float] = []
        overheads: list[float] = []

        async def one(i: int) -> None:
            t = time.perf_counter()
            view, _ = await asyncio.to_thread(hub.payments.create_intent, v.id, f"ovh-{i}", IntentRequest(
                booking_ref=f"b-{i // 3}", amount_minor=10_000 + i, currency="USD", payment_method="pm_card_visa",
                affiliate_id="planner-1" if i % 4 == 0 else None))
            handle = await start_transaction(view["id"], hub.payments.plan_of(view))  # as the API does
            result = await handle.get_result()
            wall = (time.perf_counter() - t) * 1000
            assert result["status"] == "succeeded", result
            with hub.db.read() as s:
                gw = float(s.execute(select(func.sum(PaymentAttempt.gateway_ms)).where(
                    PaymentAttempt.intent_id == view["id"])).scalar() or 0.0)
            if i >= warmup:
                walls.append(wall)
                gws.append(gw)
                overheads.append(wall - gw)

        for i in range(warmup):
            await one(i)
        c0 = time.process_time()
        queue = iter(range(warmup, warmup + n))

        async def worker() -> None:
            for i in queue:
                await one(i)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu["txn"] = (time.process_time() - c0) * 1000 / n
        await hub.connections.aclose()
        return raw, walls, gws, overheads

    try:
        raw, walls, gws, overheads = asyncio.run(go())
    finally:
        shutdown_dbos()
        set_hub(None)
        hub.close()
    check = hub.payments.ledger_check()
    print(f"{n} transactions, {concurrency} in flight (SQLite, DBOS workflow, Stripe sandbox over loopback), "
          "shared machine")
    print(f"raw gateway call (baseline, no hub):  p50 {pct(raw, 50):6.2f} ms   p99 {pct(raw, 99):6.2f} ms")
    print(f"inside gateway calls in the hub:       p50 {pct(gws, 50):6.2f} ms   p99 {pct(gws, 99):6.2f} ms")
    print(f"wall per transaction:                  p50 {pct(walls, 50):6.2f} ms   p99 {pct(walls, 99):6.2f} ms")
    print(f"orchestration overhead (wall - gw):    p50 {pct(overheads, 50):6.2f} ms   p99 {pct(overheads, 99):6.2f} ms"
          f"   mean {statistics.fmean(overheads):.2f} ms")
    print(f"CPU time of this process per transaction: {cpu['txn']:.2f} ms; per raw gateway call (client side): "
          f"{cpu['raw']:.2f} ms; so the hub's own CPU per transaction is about {cpu['txn'] - cpu['raw']:.2f} ms "
          f"(includes DBOS's background polling threads)")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.1f} (1 min) on {os.cpu_count()} CPUs")
    print(f"overhead / raw gateway call (p50): {pct(overheads, 50) / pct(raw, 50):.2f}; "
          f"targets p50 <= 15 ms: {'met' if pct(overheads, 50) <= 15 else 'NOT met'}, "
          f"p99 <= 40 ms: {'met' if pct(overheads, 99) <= 40 else 'NOT met'}; ledger balanced: {check['balanced']}")


if __name__ == "__main__":
    main()
