"""Payments fault suite: N marketplace transactions through the gateway sandboxes under faults, with kill -9
of the hub, then the money checks. Also the failover timing (primary down: breaker, fallback).

Setup: the sandboxes run in their own process (``python -m wedsync.cli sandbox``) and the hub in another
(``python -m wedsync.cli serve``, SQLite, DBOS in-process), both on loopback. The client posts transactions
with an Idempotency-Key through the API (concurrency ``--concurrency``) and re-posts the same key when the hub
is down. Faults on the primary gateway (Stripe): answers lost after the charge was stored (``after_commit``
stall past the hub's 1 s HTTP timeout, or a 5xx although the charge exists), 5xx before execution, connections
dropped mid-answer, one outage window; some cards decline. The hub is killed with SIGKILL ``--kills`` times at
random points and restarted at once (DBOS resumes its workflows; the payments sweep resolves parked ones).

Checks, on the sandboxes' side and in the hub's store, once every transaction is final:

* zero double charges: no reference (our transaction id) has more than one successful charge across all
  gateways; every succeeded transaction has exactly one, every declined/failed one none, with the same amount;
* zero lost or duplicated ledger postings: exactly one ``charge:<id>`` ledger transaction per succeeded
  transaction and none for the others; the ledger nets to zero per currency;
* every transaction final (succeeded, declined, failed) and every Idempotency-Key mapped to one transaction.

    .venv/bin/python bench/payments_faults.py --transactions 10000 --kills 5 --concurrency 16
    .venv/bin/python bench/payments_faults.py --failover-only

The same harness (smaller) is the automated test ``tests/e2e/test_payments_durability.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
# --src DIR (or WEDSYNC_BENCH_SRC) runs the hub from a snapshot of the source tree, so edits made in the
# working tree during a long run cannot reach a hub process restarted after a kill.
SRC = Path(os.environ.get("WEDSYNC_BENCH_SRC") or ROOT / "src")
for _i, _a in enumerate(sys.argv[:-1]):
    if _a == "--src":
        SRC = Path(sys.argv[_i + 1]).resolve()
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

# The gateways the suite connects, when their connector exists: slug -> (credentials, path prefix).
GATEWAYS: dict[str, tuple[dict[str, str], str]] = {
    "stripe": ({"secret_key": "sk_test_wedsync_platform"}, "/stripe"),
    "square": ({"access_token": "EAAAsandbox-square-seller-token"}, "/square"),
}
FINAL = ("succeeded", "declined", "failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before {url} answered")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class Procs:
    """The sandbox and hub processes of one run."""

    def __init__(self, home: Path, *, http_timeout: float = 1.0) -> None:
        from wedsync.store.vault import KeyRing

        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WEDSYNC_")}
        self.env.update({
            "WEDSYNC_HOME": str(home), "WEDSYNC_ALLOW_PRIVATE_URLS": "true",
            "WEDSYNC_VAULT_KEYS": base64.urlsafe_b64encode(KeyRing.generate_key()).decode(),
            "WEDSYNC_DBOS_LOG_LEVEL": "ERROR", "WEDSYNC_LOG_LEVEL": "ERROR", "WEDSYNC_HTTP_TIMEOUT": str(http_timeout),
            "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(SRC),
        })
        self.sandbox_port, self.hub_port = free_port(), free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.hub_url = f"http://127.0.0.1:{self.hub_port}"
        self.env["WEDSYNC_PUBLIC_URL"] = self.hub_url
        self.sandbox: subprocess.Popen[bytes] | None = None
        self.hub: subprocess.Popen[bytes] | None = None
        self.hub_starts = 0

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        fh = open(self.home / log, "ab")
        return subprocess.Popen([sys.executable, "-m", "wedsync.cli", *args], env=self.env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def start_sandbox(self) -> None:
        self.sandbox = self._spawn(["sandbox", "--port", str(self.sandbox_port), "--contacts", "0"], "sandbox.log")
        wait_http(f"{self.sandbox_url}/_sandbox", self.sandbox)

    def start_hub(self) -> None:
        self.hub_starts += 1
        self.hub = self._spawn(["serve", "--port", str(self.hub_port)], f"hub{self.hub_starts}.log")
        wait_http(f"{self.hub_url}/healthz", self.hub)

    def kill9_hub(self) -> None:
        assert self.hub is not None
        os.killpg(self.hub.pid, signal.SIGKILL)
        self.hub.wait(10)

    def stop(self) -> None:
        for p in (self.hub, self.sandbox):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(5)


def available_gateways() -> list[str]:
    from wedsync.connectors.registry import get_connector_class

    out = []
    for slug in GATEWAYS:
        try:
            get_connector_class(slug)
        except Exception:
            continue
        out.append(slug)
    return out


def provision(procs: Procs, gateways: list[str]) -> dict[str, Any]:
    """A vendor, its API key and one connection per gateway, written to the store the hub will use."""
    from wedsync.bootstrap import Hub
    from wedsync.config import Settings

    hub = Hub(Settings(home=procs.home, allow_private_urls=True, vault_keys=procs.env["WEDSYNC_VAULT_KEYS"]))
    try:
        v = hub.tenancy.create_vendor("Fault Suite Catering")
        _, key = hub.tenancy.create_key(v.id)
        conns = {}
        for slug in gateways:
            creds, prefix = GATEWAYS[slug]
            conns[slug] = hub.connections.create(v.id, slug, credentials=creds,
                                                 base_url=f"{procs.sandbox_url}{prefix}").id
    finally:
        hub.close()
    return {"vendor_id": v.id, "key": key, "connections": conns}


def setup_payments(procs: Procs, who: dict[str, Any], gateways: list[str]) -> None:
    conns = who["connections"]
    cfg = {"primary": conns[gateways[0]], "fallbacks": [conns[g] for g in gateways[1:]],
           "feeStructure": {"platformFeeBps": 500, "affiliateFeeBps": 200}}
    r = httpx.post(f"{procs.hub_url}/api/integrations/payments/setup", json={"vendorId": who["vendor_id"],
                   "gatewayConfig": cfg}, headers={"Authorization": f"Bearer {who['key']}"}, timeout=30)
    r.raise_for_status()


def transaction_body(i: int, rng: random.Random) -> dict[str, Any]:
    method = "pm_card_visa"
    if rng.random() < 0.03:
        method = "pm_card_insufficient_funds_decline"
    body: dict[str, Any] = {"bookingRef": f"booking-{i // 3}", "milestone": ("deposit", "installment", "final")[i % 3],
                            "amountMinor": rng.randint(1_000, 500_000), "currency": "USD", "paymentMethod": method,
                            "customerEmail": f"couple{i}@example.com"}
    if i % 4 == 0:
        body["affiliateId"] = f"planner-{i % 17}"
    return body


async def submit_all(procs: Procs, who: dict[str, Any], n: int, concurrency: int, seed: int,
                     on_progress: Callable[[int], None] | None = None) -> dict[str, str]:
    """Post every transaction, re-posting the same key until the hub accepts it (it may be down)."""
    rng = random.Random(seed)
    bodies = [transaction_body(i, rng) for i in range(n)]
    ids: dict[str, str] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    done = 0
    headers = {"Authorization": f"Bearer {who['key']}"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            key = f"fault-suite-{seed}-{i}"
            while True:
                try:
                    r = await client.post(f"{procs.hub_url}/api/payments/transactions", json=bodies[i],
                                          headers={**headers, "Idempotency-Key": key}, params={"wait": 5})
                except httpx.HTTPError:
                    await asyncio.sleep(0.3)
                    continue
                if r.status_code in (200, 201, 202):
                    ids[key] = r.json()["id"]
                    break
                if r.status_code >= 500:
                    await asyncio.sleep(0.3)
                    continue
                raise RuntimeError(f"transaction {i} refused: {r.status_code} {r.text[:300]}")
            done += 1
            if on_progress:
                on_progress(done)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=2.0), limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return ids


def store(procs: Procs) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{procs.home / 'wedsync.sqlite'}?mode=ro", uri=True, timeout=30)
    db.execute("PRAGMA busy_timeout=30000")
    return db


def status_counts(procs: Procs) -> Counter[str]:
    with store(procs) as db:
        return Counter(dict(db.execute("SELECT status, COUNT(*) FROM payment_intents GROUP BY status").fetchall()))


def wait_final(procs: Procs, n: int, timeout: float) -> Counter[str]:
    deadline = time.monotonic() + timeout
    while True:
        counts = status_counts(procs)
        if sum(counts[s] for s in FINAL) >= n or time.monotonic() > deadline:
            return counts
        time.sleep(1.0)


def sandbox_charges(procs: Procs, gateways: list[str]) -> list[dict[str, Any]]:
    out = []
    for slug in gateways:
        r = httpx.get(f"{procs.sandbox_url}/_sandbox/{slug}/records/charges", timeout=120)
        r.raise_for_status()
        for line in r.text.splitlines():
            if line.strip():
                rec = json.loads(line)
                rec["gateway"] = slug
                out.append(rec)
    return out


def check(procs: Procs, gateways: list[str], ids: dict[str, str], n: int) -> dict[str, Any]:
    """The money checks (see module docstring). Returns counts; ``ok`` is the verdict."""
    with store(procs) as db:
        intents = {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, status, amount_minor FROM payment_intents")}
        charge_txns = Counter(r[0][len("charge:"):] for r in db.execute(
            "SELECT reference FROM ledger_transactions WHERE reference LIKE 'charge:%'"))
        net = dict(db.execute("SELECT currency, SUM(amount) FROM ledger_entries GROUP BY currency").fetchall())
        attempts = dict(db.execute("SELECT status, COUNT(*) FROM payment_attempts GROUP BY status").fetchall())
        lookups = db.execute("SELECT COALESCE(SUM(lookups), 0) FROM payment_attempts").fetchone()[0]
        failovers = db.execute("SELECT COUNT(*) FROM payment_attempts WHERE attempt_no > 1").fetchone()[0]
    from wedsync.connectors.payments.base import bounded_key

    short = {bounded_key(i, 20): i for i in intents}  # Authorize.net's invoiceNumber holds <= 20 characters
    succeeded_at_gateway: Counter[str] = Counter()
    amount_at_gateway: dict[str, int] = {}
    for c in sandbox_charges(procs, gateways):
        if c.get("status") == "succeeded" and c.get("reference"):
            ref = short.get(c["reference"], c["reference"]) if c["gateway"] == "authorize-net" else c["reference"]
            succeeded_at_gateway[ref] += 1
            amount_at_gateway[ref] = int(c["amount_minor"])
    double = sorted(ref for ref, k in succeeded_at_gateway.items() if k > 1)
    statuses = Counter(s for s, _ in intents.values())
    not_final = [i for i, (s, _) in intents.items() if s not in FINAL]
    lost_charge = [i for i, (s, _) in intents.items() if s == "succeeded" and succeeded_at_gateway[i] != 1]
    charged_but_not_ours = [i for i, (s, _) in intents.items() if s != "succeeded" and succeeded_at_gateway[i]]
    wrong_amount = [i for i, (s, a) in intents.items() if s == "succeeded" and amount_at_gateway.get(i) != a]
    ledger_missing = [i for i, (s, _) in intents.items() if s == "succeeded" and charge_txns[i] != 1]
    ledger_extra = [i for i in charge_txns if intents.get(i, ("?", 0))[0] != "succeeded" or charge_txns[i] > 1]
    unknown_refs = [r for r in succeeded_at_gateway if r not in intents]
    keys_ok = len(ids) == n and len(set(ids.values())) == n
    out = {
        "transactions": n, "intents": len(intents), "statuses": dict(statuses), "attempts": attempts,
        "lookups": int(lookups), "attempts_after_the_first": int(failovers),
        "double_charges": len(double), "succeeded_without_one_gateway_charge": len(lost_charge),
        "charged_but_not_succeeded": len(charged_but_not_ours), "wrong_amount": len(wrong_amount),
        "gateway_charges_without_transaction": len(unknown_refs),
        "ledger_charge_postings_missing": len(ledger_missing), "ledger_charge_postings_extra": len(ledger_extra),
        "ledger_net_by_currency": {k: int(v) for k, v in net.items()}, "not_final": len(not_final),
        "idempotency_keys_ok": keys_ok,
    }
    out["ok"] = (not double and not lost_charge and not charged_but_not_ours and not wrong_amount
                 and not unknown_refs and not ledger_missing and not ledger_extra and not not_final
                 and all(v == 0 for v in net.values()) and keys_ok and len(intents) == n)
    return out


def configure_faults(procs: Procs, gateways: list[str], *, seed: int, after_commit_rate: float, error_rate: float,
                     drop_rate: float) -> None:
    primary = gateways[0]
    base = procs.sandbox_url
    httpx.put(f"{base}/_sandbox/{primary}/faults", json={
        "seed": seed, "error_rate": error_rate, "error_statuses": [500, 502, 503], "truncated_rate": drop_rate,
        "truncate_mode": "drop-connection"}, timeout=10).raise_for_status()
    # The answer is lost after the charge was stored: held past the hub's timeout, or a 5xx instead.
    httpx.post(f"{base}/_sandbox/{primary}/mutate", json={"action": "after_commit", "rate": after_commit_rate,
                                                         "mode": "stall", "stall_seconds": 1.5, "seed": seed},
               timeout=10).raise_for_status()
    if len(gateways) > 1:
        httpx.post(f"{base}/_sandbox/{gateways[1]}/mutate", json={
            "action": "after_commit", "rate": after_commit_rate, "mode": "error", "seed": seed + 1},
            timeout=10).raise_for_status()


def outage(procs: Procs, slug: str, seconds: float) -> None:
    """A maintenance window: 503 with Retry-After (the HTTP layer waits it out: transactions queue)."""
    httpx.patch(f"{procs.sandbox_url}/_sandbox/{slug}/faults", json={"outages": [{"for_seconds": seconds}]},
                timeout=10).raise_for_status()


def hard_down(procs: Procs, slug: str, down: bool) -> None:
    """The gateway fails every request with a 5xx and no Retry-After (the breaker's case: fail over)."""
    httpx.patch(f"{procs.sandbox_url}/_sandbox/{slug}/faults", json={"error_rate": 1.0 if down else 0.0},
                timeout=10).raise_for_status()


def run_suite(n: int, *, kills: int, concurrency: int, seed: int, home: Path, outage_seconds: float = 4.0,
              after_commit_rate: float = 0.02, error_rate: float = 0.02, drop_rate: float = 0.01,
              final_timeout: float = 300.0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole fault run; returns the checks plus timings."""
    gateways = available_gateways()
    procs = Procs(home)
    rng = random.Random(seed)
    try:
        procs.start_sandbox()
        who = provision(procs, gateways)
        procs.start_hub()
        setup_payments(procs, who, gateways)
        configure_faults(procs, gateways, seed=seed, after_commit_rate=after_commit_rate, error_rate=error_rate,
                         drop_rate=drop_rate)
        kill_at = sorted(rng.sample(range(max(1, n // 10), max(2, n - n // 10)), k=min(kills, max(0, n - n // 5))))
        outage_at = n // 2
        events: list[str] = []
        state = {"outage": False}
        loop_holder: dict[str, asyncio.AbstractEventLoop] = {}

        def progress(done: int) -> None:
            if kill_at and done >= kill_at[0]:
                kill_at.pop(0)
                loop_holder["loop"].run_in_executor(None, kill_and_restart, done)
            if not state["outage"] and done >= outage_at and outage_seconds > 0:
                state["outage"] = True
                outage(procs, gateways[0], outage_seconds)
                events.append(f"outage of {gateways[0]} for {outage_seconds}s at {done} submitted")

        def kill_and_restart(done: int) -> None:
            time.sleep(rng.uniform(0.0, 0.5))  # a random point, not just after an answer
            procs.kill9_hub()
            events.append(f"kill -9 of the hub after {done} submitted")
            procs.start_hub()

        async def main() -> dict[str, str]:
            loop_holder["loop"] = asyncio.get_running_loop()
            return await submit_all(procs, who, n, concurrency, seed, progress)

        t0 = time.perf_counter()
        ids = asyncio.run(main())
        submitted = time.perf_counter() - t0
        log(f"submitted {n} transactions in {submitted:.1f}s; waiting for every one to be final")
        # turn the faults off so the sweep's lookups and the last recoveries are not injected themselves
        for slug in gateways:
            httpx.put(f"{procs.sandbox_url}/_sandbox/{slug}/faults", json={}, timeout=10)
            httpx.post(f"{procs.sandbox_url}/_sandbox/{slug}/mutate", json={"action": "after_commit", "rate": 0.0},
                       timeout=10)
        counts = wait_final(procs, n, final_timeout)
        total = time.perf_counter() - t0
        result = check(procs, gateways, ids, n)
        result["injected_by_sandbox"] = {}
        for slug in gateways:  # what the fault middleware reports it did (after-commit faults are not counted)
            stats = httpx.get(f"{procs.sandbox_url}/_sandbox/{slug}/stats", timeout=10).json()
            result["injected_by_sandbox"][slug] = stats.get("injected", stats)
        result.update({"gateways": gateways, "events": events, "hub_starts": procs.hub_starts,
                       "submit_seconds": round(submitted, 1), "total_seconds": round(total, 1),
                       "statuses_at_end": dict(counts)})
        return result
    finally:
        procs.stop()


def failover_timing(home: Path, *, outage_seconds: float = 8.0, every: float = 0.1) -> dict[str, Any]:
    """Primary down: a transaction every ``every`` seconds during the outage; when does the breaker open,
    and where do the transactions complete? (Those already sent to the primary when it went down are
    pinned to it, maybe executed, and complete there after the outage.)"""
    gateways = available_gateways()
    if len(gateways) < 2:
        raise SystemExit("failover needs two gateway connectors")
    procs = Procs(home)
    try:
        procs.start_sandbox()
        who = provision(procs, gateways)
        procs.start_hub()
        setup_payments(procs, who, gateways)
        headers = {"Authorization": f"Bearer {who['key']}"}

        async def run() -> dict[str, Any]:
            async with httpx.AsyncClient(timeout=120, headers=headers) as client:
                for i in range(3):  # warm up on the primary
                    (await client.post(f"{procs.hub_url}/api/payments/transactions",
                                       json=transaction_body(i, random.Random(i)) | {"paymentMethod": "pm_card_visa"},
                                       headers={"Idempotency-Key": f"warm-{i}"}, params={"wait": 30})
                     ).raise_for_status()
                await asyncio.to_thread(hard_down, procs, gateways[0], True)
                t0 = time.perf_counter()
                opened: list[float] = []

                async def watch() -> None:
                    while time.perf_counter() - t0 < outage_seconds:
                        if opened:
                            await asyncio.sleep(0.05)
                            continue
                        m = (await client.get(f"{procs.hub_url}/metrics")).text
                        if f'provider_circuit_state{{provider="{gateways[0]}"}} 2.0' in m:
                            opened.append(time.perf_counter() - t0)
                        await asyncio.sleep(0.02)

                async def one(i: int) -> tuple[float, float, str, str, str]:
                    start = time.perf_counter() - t0
                    body = transaction_body(100 + i, random.Random(i)) | {"paymentMethod": "pm_card_visa"}
                    r = await client.post(f"{procs.hub_url}/api/payments/transactions", json=body,
                                          headers={"Idempotency-Key": f"failover-{i}"}, params={"wait": 30})
                    tx = r.json()
                    return (round(start, 3), round(time.perf_counter() - t0 - start, 3), tx["status"],
                            tx.get("gateway") or "-", tx["id"])

                watcher = asyncio.create_task(watch())
                tasks = []
                i = 0
                while time.perf_counter() - t0 < outage_seconds:
                    tasks.append(asyncio.create_task(one(i)))
                    i += 1
                    await asyncio.sleep(every)
                await watcher
                await asyncio.to_thread(hard_down, procs, gateways[0], False)
                rows = await asyncio.gather(*tasks)
                return {"rows": rows, "opened": opened[0] if opened else None}

        out = asyncio.run(run())
        rows = out["rows"]
        opened = out["opened"]
        # the ones pinned to the primary (maybe executed when it went down) are resolved there by the sweep
        total = 3 + len(rows)
        wait_final(procs, total, 120)
        ids = {f"k{n}": r[4] for n, r in enumerate(rows)} | {f"w{i}": f"warm{i}" for i in range(3)}
        verdict = check(procs, gateways, ids, total)
        after = [r for r in rows if opened is not None and r[0] >= opened]
        return {"primary": gateways[0], "fallback": gateways[1], "outage_seconds": outage_seconds,
                "transactions_during_outage": len(rows),
                "succeeded": sum(r[2] == "succeeded" for r in rows),
                "on_fallback": sum(r[3] == gateways[1] for r in rows),
                "breaker_open_after_seconds": round(opened, 3) if opened is not None else None,
                "started_after_breaker_open": len(after),
                "of_those_on_fallback": sum(r[3] == gateways[1] and r[2] == "succeeded" for r in after),
                "p50_latency_after_open_s": sorted(r[1] for r in after)[len(after) // 2] if after else None,
                "pinned_to_primary_before_open": [r[:4] for r in rows if opened is None or r[0] < opened],
                "after_recovery": {k: verdict[k] for k in ("statuses", "double_charges", "not_final",
                                                           "ledger_charge_postings_missing",
                                                           "ledger_charge_postings_extra")}}
    finally:
        procs.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--transactions", type=int, default=10_000)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--outage-seconds", type=float, default=4.0)
    p.add_argument("--after-commit-rate", type=float, default=0.02)
    p.add_argument("--error-rate", type=float, default=0.02)
    p.add_argument("--drop-rate", type=float, default=0.01)
    p.add_argument("--failover-only", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, store)")
    p.add_argument("--src", help="run the hub and sandboxes from this copy of src/ (read at import)")
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="wedsync-payfaults-"))
    if not args.failover_only:
        result = run_suite(args.transactions, kills=args.kills, concurrency=args.concurrency, seed=args.seed,
                           home=home / "suite", outage_seconds=args.outage_seconds,
                           after_commit_rate=args.after_commit_rate, error_rate=args.error_rate,
                           drop_rate=args.drop_rate)
        print(json.dumps(result, indent=2))
        rate = result["transactions"] / max(result["total_seconds"], 1e-9)
        print(f"fault suite: {result['transactions']} transactions, {result['hub_starts'] - 1} kills, "
              f"{result['total_seconds']}s ({rate:.0f}/s); double charges {result['double_charges']}; "
              f"verdict {'OK' if result['ok'] else 'FAILED'}")
    (home / "failover").mkdir(parents=True, exist_ok=True)
    fo = failover_timing(home / "failover")
    print(json.dumps(fo, indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"work directory: {home}")


if __name__ == "__main__":
    main()
