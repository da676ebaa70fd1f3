"""Webhook intake benchmark: signed webhooks through the hub's route into the inbox, next to a raw baseline.

HTTP mode (the hub must already be running; starting it is left to the operator)::

    # the hub serves POST /webhooks/{provider}/{connection_id}; the connection exists with this secret
    .venv/bin/python bench/webhook_intake.py --url http://127.0.0.1:8000 --provider stripe \\
        --secret whsec_bench --connection 01hbenchconn000000000000000 --duration 20 --connections 64 \\
        --db-url sqlite:///.wedsync/wedsync.sqlite

It writes N distinct signed payloads (Stripe-style by default, signed now so the timestamps are fresh) plus
about 5 % redeliveries of earlier events, replays them with ``wrk`` and ``bench/wrk_webhooks.lua``
(install it with ``apt-get install -y wrk``), parses wrk's requests/s and latency distribution (p50/p99),
then reads the hub's ``webhook_inbox`` (``--db-url``) and checks that every acknowledged event is stored and
that redeliveries added no rows. In the same run it starts its own trivial FastAPI app on
``--baseline-port`` (same route shape, reads the body, answers 200, no verification or storage), drives it
the same way, and prints the hub's figures next to the baseline's and their ratio.

Self-contained mode (what docs/benchmarks.md records): starts everything itself, on loopback::

    .venv/bin/python bench/webhook_intake.py --start-hub --workers 1 --duration 20
    .venv/bin/python bench/webhook_intake.py --start-hub --workers 2 --no-in-process-workers

It starts the provider sandbox (``python -m wedsync.cli sandbox``, seeded with ``--targets`` contacts), creates
a vendor and a VSCO Workspace connection in a fresh temporary ``WEDSYNC_HOME`` (SQLite) pointing at that
sandbox, then starts the real hub (``python -m wedsync.cli serve --port P --workers N``). The requests are
real VSCO Workspace REST-hook deliveries as the route verifies them: ``POST /webhooks/vsco-workspace/{id}
?token=<the connection's webhook secret>&event=contact.created`` with body ``{"targetId": <a sandbox contact
id>}``, one distinct contact per event (the hub's event id is the body digest), plus ``--dup-ratio``
redeliveries. With in-process workers on (the default), the route's drain pokes run DBOS drain workflows
in the hub that re-fetch every named contact from the sandbox while the load runs; the inbox's status counts
are printed after the run. ``--no-in-process-workers`` measures intake alone (events stay ``pending``).

Inbox mode (no HTTP; measures ``WebhookInbox.submit`` itself at fixed arrival rates)::

    .venv/bin/python bench/webhook_intake.py --inbox-only --db-url sqlite:////tmp/inbox.sqlite \\
        --rates 1000,2000,4000,8000 --duration 5

Each rate is an open-loop arrival process (one submission every 1/rate s, whatever the latency); it prints
throughput and p50/p99 submit latency, next to a raw baseline in the same run: one transaction per event,
back to back, on the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from fastapi import FastAPI, Request  # noqa: E402  (module level: FastAPI resolves annotations here)
from fastapi.responses import JSONResponse  # noqa: E402

LUA = Path(__file__).resolve().parent / "wrk_webhooks.lua"

# ---------------------------------------------------------------------------------------- payloads


def stripe_event(event_id: str, n: int) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2023-08-16",
        "created": int(time.time()),
        "type": "payment_intent.succeeded",
        "livemode": False,
        "pending_webhooks": 1,
        "data": {
            "object": {
                "id": f"pi_bench_{n}",
                "object": "payment_intent",
                "amount": 125000 + n % 1000,
                "currency": "usd",
                "status": "succeeded",
                "metadata": {"wedding_id": f"wed_{n % 5000}", "kind": "deposit"},
            }
        },
    }


def signed_headers(provider: str, body: bytes, secret: str, url: str) -> dict[str, str]:
    from wedsync.connectors import webhooks as w

    if provider == "vsco-workspace":
        return {}  # unsigned REST hooks: the secret is the ``token`` query parameter of the hook URL
    if provider == "stripe":
        return w.StripeScheme.sign(body, secret)
    if provider == "calendly":
        return w.CalendlyScheme.sign(body, secret)
    if provider == "authorize-net":
        return w.AuthorizeNetScheme.sign(body, secret)
    if provider in ("meta", "instagram", "facebook"):
        return w.MetaScheme.sign(body, secret)
    if provider == "square":
        return w.SquareScheme.sign(body, secret, url=url)
    if provider == "zapier":
        return w.ZapierScheme.sign(body, secret)
    raise SystemExit(f"the benchmark signs stripe, calendly, authorize-net, meta, square or zapier, not {provider}")


def payload(provider: str, event_id: str, n: int) -> dict[str, Any]:
    """A body whose event id (as the scheme extracts it) is ``event_id``."""
    if provider == "stripe":
        return stripe_event(event_id, n)
    if provider == "square":
        return {
            "merchant_id": "MBENCH",
            "type": "payment.updated",
            "event_id": event_id,
            "created_at": datetime.now(UTC).isoformat(),
            "data": {"type": "payment", "id": f"pay_{n}"},
        }
    if provider == "authorize-net":
        return {
            "notificationId": event_id,
            "eventType": "net.authorize.payment.authcapture.created",
            "eventDate": datetime.now(UTC).isoformat(),
            "payload": {"id": str(6000000000 + n)},
        }
    if provider == "calendly":
        return {
            "event": "invitee.created",
            "created_at": datetime.now(UTC).isoformat(),
            "payload": {"uri": event_id.split(":", 1)[1]},
        }
    if provider in ("meta", "instagram", "facebook"):
        return {
            "object": "instagram",
            "id": event_id,
            "entry": [{"id": "17841400000000", "time": n, "changes": [{"field": "comments"}]}],
        }
    return {"id": event_id, "event": "project.booked", "client": f"Couple {n}"}


def event_id_for(provider: str, run: str, n: int) -> str:
    if provider == "vsco-workspace":
        raise AssertionError("VSCO Workspace event ids are body digests: see vsco_event_id")
    if provider == "calendly":
        return f"invitee.created:https://api.calendly.com/scheduled_events/{run}/invitees/{n}"
    return f"evt_{run}_{n}"


def vsco_event_id(body: bytes) -> str:
    """The id VscoWorkspaceScheme gives a hook: ``vsco:`` + the SHA-256 of the raw body."""
    return "vsco:" + hashlib.sha256(body).hexdigest()


@dataclass
class RequestFile:
    path: Path
    lines: list[str]  # event id per line, in file order
    distinct: int


def write_requests(
    out: Path,
    *,
    base_url: str,
    provider: str,
    secret: str,
    connection: str,
    n: int,
    dup_ratio: float,
    run: str,
    targets: list[str] | None = None,
) -> RequestFile:
    """N distinct signed requests plus ``dup_ratio * N`` redeliveries placed after their original.

    VSCO Workspace: request ``i`` names ``targets[i]`` and carries the token (``secret``) in the query."""
    route = f"/webhooks/{provider}/{connection}"
    if provider == "vsco-workspace":
        from urllib.parse import urlencode

        assert targets is not None and len(targets) >= n, "need one sandbox contact id per distinct event"
        route += "?" + urlencode({"token": secret, "event": "contact.created"})
    url = base_url.rstrip("/") + route
    rng = random.Random(run)
    keyed: list[tuple[float, int]] = [(float(i), i) for i in range(n)]
    for _ in range(int(n * dup_ratio)):
        j = rng.randrange(n)
        # A redelivery arrives later than its original, often soon after (Stripe retries with backoff).
        keyed.append((j + 1 + rng.expovariate(1 / 200), j))
    keyed.sort()
    bodies: dict[int, bytes] = {}
    ids: list[str] = []
    with out.open("w", encoding="utf-8") as fh:
        for _, i in keyed:
            body = bodies.get(i)
            if provider == "vsco-workspace":
                if body is None:
                    body = bodies[i] = json.dumps({"targetId": targets[i]}, separators=(",", ":")).encode()  # type: ignore[index]
                eid = vsco_event_id(body)
            else:
                eid = event_id_for(provider, run, i)
            if body is None:
                body = json.dumps(payload(provider, eid, i), separators=(",", ":")).encode()
                bodies[i] = body
            headers = {"Content-Type": "application/json", **signed_headers(provider, body, secret, url)}
            fields = [route, body.decode()]
            for k, v in headers.items():
                fields += [k, v]
            assert not any("\t" in f or "\n" in f for f in fields)
            fh.write("\t".join(fields) + "\n")
            ids.append(eid)
    return RequestFile(out, ids, n)


# --------------------------------------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip())
    if not m:
        raise ValueError(f"unparsable wrk latency {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: str | None
    sent_per_thread: dict[int, int]
    answered: int
    raw: str


def run_wrk(base_url: str, req: RequestFile, *, threads: int, connections: int, duration: int) -> WrkResult:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        base_url,
        "--",
        str(req.path),
        str(threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"wrk failed ({proc.returncode}):\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    dist = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx_m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors:.*", out)
    threads_out = re.findall(r"WEDSYNC_THREAD (\d+) (\d+) (\d+)", out)
    sent = {int(k): int(v) for k, v, _ in threads_out}
    answered = sum(int(a) for _, _, a in threads_out)
    return WrkResult(
        rps=rps,
        p50_ms=_ms(dist["50"]),
        p99_ms=_ms(dist["99"]),
        requests=total,
        non2xx=int(non2xx_m.group(1)) if non2xx_m else 0,
        socket_errors=sock.group(0) if sock else None,
        sent_per_thread=sent,
        answered=answered,
        raw=out,
    )


def sent_ids(req: RequestFile, res: WrkResult, threads: int) -> set[str]:
    """The event ids of every request wrk generated (thread k sends lines k, k+threads, ... in order)."""
    ids: set[str] = set()
    for k, count in res.sent_per_thread.items():
        share = req.lines[k::threads]
        ids.update(share[i % len(share)] for i in range(count))
    return ids


# ---------------------------------------------------------------------------------------- baseline


def baseline_app() -> Any:
    """Same route shape as the hub's, but no verification and no storage."""
    app = FastAPI()

    @app.post("/webhooks/{provider}/{connection_id}")
    async def receive(provider: str, connection_id: str, request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"received": True})

    return app


def serve_baseline(port: int, workers: int = 1) -> None:
    import uvicorn

    if workers > 1:
        uvicorn.run("webhook_intake:baseline_app", factory=True, app_dir=str(Path(__file__).parent),
                    host="127.0.0.1", port=port, workers=workers, log_level="warning", access_log=False)
    else:
        uvicorn.run(baseline_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


# ---------------------------------------------------------------------------------------- database


def stored_ids(db_url: str, connection: str, run: str, provider: str) -> list[str]:
    from sqlalchemy import create_engine, select

    from wedsync.config import normalize_db_url
    from wedsync.store.tables import WebhookEvent

    t = WebhookEvent.__table__
    engine = create_engine(normalize_db_url(db_url))
    marker = (
        "vsco:%" if provider == "vsco-workspace"  # a fresh connection per run: all its rows are this run's
        else f"%/scheduled_events/{run}/%" if provider == "calendly" else f"evt_{run}_%"
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.c.event_id).where(t.c.connection_id == connection, t.c.event_id.like(marker))
        ).all()
    engine.dispose()
    return [r[0] for r in rows]


# -------------------------------------------------------------------------------------------- http


def http_bench(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    run = uuid.uuid4().hex[:10]
    n = args.requests or int(args.duration * args.expected_rps * 1.5)
    if isinstance(args.targets, list):  # --start-hub: one sandbox contact per distinct event
        n = min(n, len(args.targets))
    work = Path(tempfile.mkdtemp(prefix="wedsync-bench-"))
    t0 = time.perf_counter()
    req = write_requests(
        work / "requests.tsv",
        base_url=args.public_url or args.url,
        provider=args.provider,
        secret=args.secret,
        connection=args.connection,
        n=n,
        dup_ratio=args.dup_ratio,
        run=run,
        targets=args.targets if isinstance(args.targets, list) else None,
    )
    print(
        f"wrote {len(req.lines)} signed requests ({n} distinct events, "
        f"{len(req.lines) - n} redeliveries) in {time.perf_counter() - t0:.1f} s -> {req.path}"
    )

    hub = run_wrk(args.url, req, threads=args.threads, connections=args.connections, duration=args.duration)
    base: WrkResult | None = None
    if not args.no_baseline:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve-baseline", "--baseline-port", str(args.baseline_port),
             "--workers", str(args.workers)]
        )
        try:
            wait_port(args.baseline_port)
            base = run_wrk(
                f"http://127.0.0.1:{args.baseline_port}",
                req,
                threads=args.threads,
                connections=args.connections,
                duration=args.duration,
            )
        finally:
            server.terminate()
            server.wait(timeout=10)

    print()
    print(f"hub workers: {args.workers}; in-process DBOS workers: {not args.no_in_process_workers}; "
          f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s")
    print(f"{'':24}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'requests':>10}{'non-2xx':>9}")
    print(
        f"{'hub (verify + inbox)':24}{hub.rps:12.0f}{hub.p50_ms:10.2f}{hub.p99_ms:10.2f}"
        f"{hub.requests:10d}{hub.non2xx:9d}"
    )
    if base:
        print(
            f"{'baseline (200 only)':24}{base.rps:12.0f}{base.p50_ms:10.2f}{base.p99_ms:10.2f}"
            f"{base.requests:10d}{base.non2xx:9d}"
        )
        print(f"hub / baseline throughput: {hub.rps / base.rps:.2f}")
    if hub.socket_errors:
        print(f"hub {hub.socket_errors}")
    if any(len(req.lines[k :: args.threads]) < c for k, c in hub.sent_per_thread.items()):
        print("note: the run outlasted the request file (requests cycled); raise --requests or --expected-rps")

    ok = True
    if args.db_url:
        time.sleep(2)  # requests still in flight when wrk stopped are committed by now, or never will be
        sent = sent_ids(req, hub, args.threads)
        stored = stored_ids(args.db_url, args.connection, run, args.provider)
        stored_set = set(stored)
        sent_requests = sum(hub.sent_per_thread.values())
        unanswered = sent_requests - hub.answered
        missing = sent - stored_set
        unexpected = stored_set - sent
        print()
        print(
            f"events sent: {len(sent)} distinct in {sent_requests} requests "
            f"({sent_requests - len(sent)} redeliveries); {unanswered} requests unanswered when wrk stopped"
        )
        print(f"rows stored: {len(stored)} ({len(stored) - len(stored_set)} duplicate rows)")
        print(
            f"sent but not stored: {len(missing)} (at most the {unanswered} unanswered may be); "
            f"stored but never sent: {len(unexpected)}"
        )
        if hub.non2xx:
            print(
                f"{hub.non2xx} requests were refused (non-2xx): a refused webhook is retried by the "
                "provider, so it is not lost, but the run is not clean"
            )
        ok = len(missing) <= unanswered and not unexpected and len(stored) == len(stored_set) and not hub.non2xx
        print(f"duplicates dropped: {sent_requests - len(sent)} redelivered requests acknowledged, "
              f"{len(stored) - len(stored_set)} extra rows")
        print("CHECK", "OK: nothing acknowledged was lost, redeliveries added no rows" if ok else "FAILED")
        if args.start_hub:
            drain_report(args.db_url, args.connection, wait=args.drain_wait)
            tracebacks = args.hub_log.read_text(errors="replace").split("Traceback")[1:]
            disconnects = sum("ClientDisconnect" in tb for tb in tracebacks)
            print(f"hub log {args.hub_log}: {len(tracebacks)} tracebacks, of which {disconnects} ClientDisconnect "
                  "(wrk closing its connections at its deadline)")
    if args.verbose:
        print(hub.raw)
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------- start-hub


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_proc(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def drain_report(db_url: str, connection: str, *, wait: float) -> None:
    """How far the hub's drain workflows got: inbox rows of this connection by status."""
    from sqlalchemy import create_engine, func, select

    from wedsync.config import normalize_db_url
    from wedsync.store.tables import WebhookEvent

    t = WebhookEvent.__table__
    engine = create_engine(normalize_db_url(db_url))
    deadline = time.monotonic() + wait
    t0 = time.monotonic()
    while True:
        with engine.connect() as conn:
            counts = dict(conn.execute(select(t.c.status, func.count()).where(t.c.connection_id == connection)
                                       .group_by(t.c.status)).all())
        busy = counts.get("pending", 0) + counts.get("processing", 0)
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    engine.dispose()
    print(f"inbox by status {time.monotonic() - t0:.1f} s after the run: {counts}")


def start_hub_bench(args: argparse.Namespace) -> int:
    import httpx

    from wedsync.bootstrap import Hub
    from wedsync.config import Settings
    from wedsync.services.connections import WEBHOOK_SECRET

    home = Path(tempfile.mkdtemp(prefix="wedsync-bench-hooks-"))
    sb_port, hub_port = free_port(), args.hub_port or free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "WEDSYNC_HOME": str(home),
           "WEDSYNC_ALLOW_PRIVATE_URLS": "true", "WEDSYNC_LOG_LEVEL": args.hub_log_level,
           "WEDSYNC_PUBLIC_URL": f"http://127.0.0.1:{hub_port}"}
    procs: list[subprocess.Popen[Any]] = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "wedsync.cli", "sandbox", "--port", str(sb_port),
                                       "--contacts", "0"], env=env, stdout=subprocess.DEVNULL))
        wait_port(sb_port)
        root = f"http://127.0.0.1:{sb_port}"
        httpx.post(f"{root}/_sandbox/vsco-workspace/seed", json={"contacts": args.targets, "jobs": 10},
                   timeout=600).raise_for_status()
        lines = httpx.get(f"{root}/_sandbox/vsco-workspace/records/address-book",
                          params={"limit": args.targets}, timeout=120).text.splitlines()
        args.targets = [str(json.loads(line)["id"]) for line in lines if line.strip()]
        hub = Hub(Settings(home=home, allow_private_urls=True))
        vendor = hub.tenancy.create_vendor("Bench Hooks Studio")
        conn = hub.connections.create(vendor.id, "vsco-workspace", credentials={"api_key": "sandbox-vsco-key"},
                                      base_url=f"{root}/vsco-workspace/api/v2")
        args.secret = str(hub.connections.credentials(conn)[WEBHOOK_SECRET])
        args.connection, args.provider = conn.id, "vsco-workspace"
        args.db_url = hub.settings.db_url
        hub.close()
        cmd = [sys.executable, "-m", "wedsync.cli", "serve", "--port", str(hub_port), "--workers", str(args.workers)]
        if args.no_in_process_workers:
            cmd.append("--no-in-process-workers")
        hub_log = Path(tempfile.mkdtemp(prefix="wedsync-bench-hooks-log-")) / "hub.log"
        args.hub_log = hub_log
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=hub_log.open("wb")))
        args.url = f"http://127.0.0.1:{hub_port}"
        deadline = time.monotonic() + 60
        while True:  # ready once /readyz answers 200 (DBOS launched, inbox started)
            try:
                if httpx.get(f"{args.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or procs[-1].poll() is not None:
                raise SystemExit("the hub did not become ready")
            time.sleep(0.2)
        print(f"hub pid {procs[-1].pid} on {args.url} ({args.workers} worker(s), WEDSYNC_HOME {home}); "
              f"sandbox on {root} with {len(args.targets)} contacts")
        return http_bench(args)
    finally:
        for proc in reversed(procs):
            stop_proc(proc)
        shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------------------------------------- inbox


async def _open_loop(inbox: Any, rate: int, seconds: float, tag: str) -> tuple[float, float, float, int]:
    from wedsync.connectors.webhooks import VerifiedEvent

    body = json.dumps(stripe_event("evt_x", 1)).encode()
    lat: list[float] = []

    async def one(i: int) -> None:
        t = time.perf_counter()
        await inbox.submit(
            vendor_id="bench",
            connection_id="bench",
            provider="stripe",
            event=VerifiedEvent(f"{tag}_{i}", "payment_intent.succeeded", "pi"),
            body=body,
        )
        lat.append(time.perf_counter() - t)

    n = int(rate * seconds)
    tasks = []
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    lat.sort()
    return n / elapsed, lat[len(lat) // 2] * 1e3, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, n


def _raw_baseline(db: Any, seconds: float) -> float:
    """One INSERT + COMMIT per event, back to back, with the same durability (synchronous=FULL)."""
    from sqlalchemy import insert

    from wedsync.store.tables import WebhookEvent

    with db.engine.connect() as conn:
        if db.is_sqlite:
            cur = conn.connection.driver_connection.cursor()
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()
        stmt = insert(WebhookEvent)
        run, n = uuid.uuid4().hex[:8], 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            with conn.begin():
                conn.execute(
                    stmt,
                    {
                        "vendor_id": "bench",
                        "connection_id": "bench-raw",
                        "provider": "stripe",
                        "event_id": f"raw_{run}_{n}",
                        "body": b"{}",
                        "status": "pending",
                        "attempts": 0,
                        "received_at": datetime.now(UTC),
                    },
                )
            n += 1
        elapsed = time.perf_counter() - t0
        if db.is_sqlite:
            cur = conn.connection.driver_connection.cursor()
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    return n / elapsed


def inbox_bench(args: argparse.Namespace) -> int:
    from wedsync.config import normalize_db_url
    from wedsync.services.webhook_inbox import WebhookInbox
    from wedsync.store.db import Database

    if not args.db_url:
        raise SystemExit("--inbox-only needs --db-url (a scratch database: rows are added)")
    db = Database(normalize_db_url(args.db_url))
    db.migrate()
    raw = _raw_baseline(db, min(3.0, args.duration))
    print(f"raw baseline (one transaction per event, sequential): {raw:.0f} events/s")
    print(f"{'offered/s':>10}{'achieved/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'batches':>9}{'vs raw':>8}")
    for rate in args.rates:
        inbox = WebhookInbox(db, batch_max=args.batch_max, batch_wait_ms=args.batch_wait_ms)
        inbox.start()
        try:
            got, p50, p99, _ = asyncio.run(_run_inbox(inbox, rate, args.duration))
        finally:
            asyncio.run(inbox.stop())
        print(f"{rate:10d}{got:12.0f}{p50:9.2f}{p99:9.2f}{inbox.batches:9d}{got / raw:8.1f}")
    db.dispose()
    return 0


async def _run_inbox(inbox: Any, rate: int, seconds: float) -> tuple[float, float, float, int]:
    return await _open_loop(inbox, rate, seconds, f"inb_{uuid.uuid4().hex[:8]}_{rate}")


# -------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the running hub's base URL")
    p.add_argument("--public-url", default=None, help="base URL the provider signs (Square); default --url")
    p.add_argument("--provider", default="stripe")
    p.add_argument("--secret", default="whsec_bench_secret", help="the connection's webhook secret")
    p.add_argument("--connection", default="01hbenchconn00000000000000", help="connection id")
    p.add_argument("--duration", type=int, default=20, help="seconds per wrk run (per rate in inbox mode)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--requests", type=int, default=0, help="distinct events to generate (default from rate)")
    p.add_argument("--expected-rps", type=int, default=4000, help="sizes the request file when --requests=0")
    p.add_argument("--dup-ratio", type=float, default=0.05, help="share of redeliveries")
    p.add_argument("--db-url", default=None, help="the hub's database, to check what was stored")
    p.add_argument("--baseline-port", type=int, default=8799)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--verbose", action="store_true", help="print wrk's own output")
    p.add_argument("--inbox-only", action="store_true", help="benchmark WebhookInbox.submit without HTTP")
    p.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 2000, 4000])
    p.add_argument("--batch-max", type=int, default=256)
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument("--start-hub", action="store_true",
                   help="start the sandbox and the real hub (VSCO Workspace intake) in a temporary WEDSYNC_HOME")
    p.add_argument("--workers", type=int, default=1, help="uvicorn workers of the hub (and of the baseline)")
    p.add_argument("--no-in-process-workers", action="store_true",
                   help="--start-hub: serve --no-in-process-workers (no drains in the hub: intake alone)")
    p.add_argument("--targets", type=int, default=60000, help="--start-hub: sandbox contacts = max distinct events")
    p.add_argument("--hub-log-level", default="WARNING",
                   help="--start-hub: WEDSYNC_LOG_LEVEL of the hub (its own default is INFO)")
    p.add_argument("--drain-wait", type=float, default=20.0,
                   help="--start-hub: seconds to wait for drains to empty the inbox after the run")
    p.add_argument("--hub-port", type=int, default=0)
    p.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_baseline:
        serve_baseline(args.baseline_port, args.workers)
        return 0
    if args.inbox_only:
        return inbox_bench(args)
    if args.start_hub:
        return start_hub_bench(args)
    return http_bench(args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
