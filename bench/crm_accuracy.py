"""CRM sync accuracy under faults: every record present and field-for-field equal to the sandbox's ground truth.

    .venv/bin/python bench/crm_accuracy.py                        # 100,000 contacts + 2,000 jobs
    .venv/bin/python bench/crm_accuracy.py --contacts 10000 --jobs 300

One run, against one sandbox process (``wedsync sandbox``):

1. **raw baseline**: ``bench/sync_vsco.py``'s plain httpx + executemany pass over the same pages, no faults;
2. faults on (``PUT /_sandbox/vsco-workspace/faults``): 5% 5xx, 3% 429 with ``Retry-After``, 1% timeouts
   (the hub's HTTP timeout is set to 2 s, the sandbox holds the answer 5 s), 1% truncated bodies: 10% of all
   requests fail once;
3. **full sync** through the real sync engine, with a driver that also misbehaves like a recovering worker:
   page steps in a shuffled order, 10% of them executed twice (duplicate pages), and a failed step retried
   like a DBOS step (up to 8 attempts);
4. the studio works meanwhile (``mutate``: contacts updated, created and deleted, jobs updated); the hub
   receives **webhooks** for the changed records, delivered out of order with 10% duplicates: stored in the
   webhook inbox and drained by the production ``process_batch`` (100 hooks a batch), faults still on;
5. an **incremental sync** and a final **full sync** (deletions need a complete listing), same misbehaviour;
6. the check: every ground-truth record (``GET /_sandbox/{slug}/records/{collection}``) is stored once,
   mapped field for field equal (the connector's own mapping of the truth; the content hash covers every
   field), nothing else is live, deleted records are marked deleted, every client row belongs to a unified
   client, and no two unified clients hold the same source record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import sync_vsco  # noqa: E402

SLUG = sync_vsco.SLUG
FAULTS = {"seed": 7, "error_rate": 0.05, "rate_limit_rate": 0.03, "retry_after_seconds": 1, "timeout_rate": 0.01,
          "timeout_seconds": 5.0, "truncated_rate": 0.01}


class Chaos:
    """Drives a run like a flaky worker would: shuffled, duplicated and retried page steps."""

    def __init__(self, hub: Any, rng: random.Random, dup_rate: float = 0.10, attempts: int = 8) -> None:
        from wedsync.services.sync_engine import DirectSteps

        self.steps = DirectSteps(hub.sync)
        self.rng = rng
        self.dup_rate = dup_rate
        self.attempts = attempts
        self.retries = 0
        self.duplicates = 0

    async def retry(self, fn: Any, *args: Any) -> Any:
        from wedsync.connectors.errors import ConnectorError, Fatal

        for attempt in range(self.attempts):
            try:
                return await fn(*args)
            except ConnectorError as exc:
                if isinstance(exc, Fatal) and getattr(exc, "http_status", None) not in (None, 200):
                    raise
                self.retries += 1
                await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
        return await fn(*args)

    async def run(self, run_id: str) -> dict[str, Any]:
        plan = await self.steps.begin(run_id)
        complete: dict[str, bool] = {}
        for stream in plan["streams"]:
            for pass_no in (1, 2, 3):
                first = await self.retry(self.steps.page, plan, stream, 1, pass_no)
                pages = list(range(2, first["total_pages"] + 1))
                if plan["mode"] == "incremental":
                    page = 1
                    r = first
                    while not r["stop"] and page < r["total_pages"]:
                        page += 1
                        r = await self.retry(self.steps.page, plan, stream, page, pass_no)
                        if self.rng.random() < self.dup_rate:
                            self.duplicates += 1
                            await self.retry(self.steps.page, plan, stream, page, pass_no)
                    break
                self.rng.shuffle(pages)
                for page in pages:
                    await self.retry(self.steps.page, plan, stream, page, pass_no)
                    if self.rng.random() < self.dup_rate:
                        self.duplicates += 1
                        await self.retry(self.steps.page, plan, stream, page, pass_no)
                complete[stream] = await self.steps.complete(plan, stream, pass_no)
                if complete[stream]:
                    break
        return await self.steps.finish(plan, complete)


def truth(root: str, collection: str) -> dict[str, dict[str, Any]]:
    import httpx

    text = httpx.get(f"{root}/_sandbox/{SLUG}/records/{collection}", timeout=600).text
    items = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {i["id"]: i for i in items}


def verify(hub: Any, connection_id: str, root: str, deleted: set[str]) -> dict[str, Any]:
    from sqlalchemy import func, select

    from wedsync.connectors.crm.vsco_workspace import map_contact, map_job, map_job_contact
    from wedsync.store.tables import Client, Wedding
    from wedsync.store.tables_crm import CrmWeddingLink

    out: dict[str, Any] = {}
    for name, model, collection, mapper in (("contacts", Client, "address-book", map_contact),
                                            ("jobs", Wedding, "job", map_job),
                                            ("job_contacts", CrmWeddingLink, "job-contact", map_job_contact)):
        expected = truth(root, collection)
        with hub.db.read() as s:
            rows = list(s.execute(select(model).where(model.connection_id == connection_id)).scalars())
        live = {r.remote_id: r for r in rows if r.deleted_at is None}
        ids = [r.remote_id for r in rows]
        mismatched = [rid for rid, item in expected.items()
                      if rid not in live or live[rid].content_hash != mapper(item).content_hash()]
        field_diffs = 0
        if name == "contacts":
            for rid, item in expected.items():
                row, exp = live.get(rid), mapper(item)
                if row is None or any(getattr(row, f) != getattr(exp, f) for f in (
                        "first_name", "last_name", "display_name", "email", "phone", "company", "address",
                        "custom_fields", "remote_modified_at")):
                    field_diffs += 1
        out[name] = {"truth": len(expected), "stored_live": len(live), "duplicates": len(ids) - len(set(ids)),
                     "missing_or_different": len(mismatched), "field_diffs": field_diffs,
                     "extra_live": len(set(live) - set(expected)),
                     "deleted_marked": sum(1 for r in rows if r.remote_id in deleted and r.deleted_at is not None)}
    couples: dict[str, set[str]] = {}
    for link in truth(root, "job-contact").values():
        if link["client"] and not link["hidden"]:
            couples.setdefault(link["jobId"], set()).add(link["contactId"])
    with hub.db.read() as s:
        out["unlinked_clients"] = s.execute(select(func.count()).select_from(Client).where(
            Client.connection_id == connection_id, Client.crm_client_id.is_(None))).scalar_one()
        weddings = s.execute(select(Wedding.remote_id, Wedding.client_remote_ids).where(
            Wedding.connection_id == connection_id, Wedding.deleted_at.is_(None))).all()
    # every wedding's couple is exactly the sandbox's client links of that job
    out["couples_different"] = sum(1 for w in weddings
                                   if set(w.client_remote_ids or []) != couples.get(w.remote_id, set()))
    return out


async def deliver_hooks(hub: Any, vendor_id: str, connection_id: str, events: list[tuple[str, str]],
                        rng: random.Random) -> dict[str, int]:
    """The production path: each delivery lands in the webhook inbox (what the intake route stores after
    verifying it), and the drain's ``process_batch`` handles them 100 at a time, faults still on. A hook
    whose re-fetch fails goes back to pending and is drained again after its backoff, as the drain
    workflow would."""
    from wedsync.connectors.webhooks import VerifiedEvent
    from wedsync.services.webhook_dispatch import process_batch

    event_type = {"contacts": "contact.created", "jobs": "job.created"}
    deliveries = list(events) + [e for e in events if rng.random() < 0.10]
    rng.shuffle(deliveries)
    hub.inbox.start()
    try:
        for n, (stream, rid) in enumerate(deliveries):  # a redelivery has its own delivery id
            await hub.inbox.submit(vendor_id=vendor_id, connection_id=connection_id, provider=SLUG,
                                   event=VerifiedEvent(f"delivery-{n}", event_type[stream], rid), body=b"")
    finally:
        await hub.inbox.stop()
    totals = {"deliveries": len(deliveries), "batches": 0, "processed": 0, "failed": 0, "retried": 0}
    while True:
        r = await process_batch(hub, SLUG, 100)
        if not r["claimed"]:
            if not hub.inbox.pending_count():
                return totals
            await asyncio.sleep(1.0)  # failed re-fetches wait out their backoff (webhook_inbox.RETRY_DELAYS)
            continue
        totals["batches"] += 1
        for k in ("processed", "failed", "retried"):
            totals[k] += r[k]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--contacts", type=int, default=100_000)
    p.add_argument("--jobs", type=int, default=2_000)
    p.add_argument("--update", type=int, default=1_000)
    p.add_argument("--create", type=int, default=300)
    p.add_argument("--delete", type=int, default=200)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)

    import httpx

    from wedsync.logging import configure_logging

    configure_logging("ERROR")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="wedsync-bench-crm-acc-"))
    port = sync_vsco.free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    sandbox = subprocess.Popen([sys.executable, "-m", "wedsync.cli", "sandbox", "--port", str(port),
                                "--contacts", "0"], env=env, stdout=subprocess.DEVNULL)
    try:
        root = f"http://127.0.0.1:{port}"
        api = f"{root}/{SLUG}/api/v2"
        sync_vsco.wait_port(port)
        seeded = httpx.post(f"{root}/_sandbox/{SLUG}/seed", json={"contacts": args.contacts, "jobs": args.jobs},
                            timeout=600).json()
        records = args.contacts + args.jobs + int(seeded["job_contacts"])
        print(f"sandbox {root}: {args.contacts} contacts + {args.jobs} jobs; {os.cpu_count()} cores shared with "
              f"other agents; workdir {work}")
        raw = asyncio.run(sync_vsco.raw_baseline(api, work / "raw.sqlite", [
            ("/address-book", {"includeHidden": "true"}), ("/job", {"includeClosed": "true"}),
            ("/job-contact", {"includeHidden": "true"})]))
        print(f"raw baseline (no faults): {raw['seconds']:.1f} s, {records / raw['seconds']:,.0f} records/s")

        from wedsync.bootstrap import Hub
        from wedsync.config import Settings

        hub = Hub(Settings(home=work / "hub", allow_private_urls=True, http_timeout=2.0, log_level="ERROR"))
        v = hub.tenancy.create_vendor("Accuracy Studio", "America/Los_Angeles")
        cid = hub.connections.create(v.id, SLUG, credentials={"api_key": sync_vsco.API_KEY}, base_url=api).id
        httpx.put(f"{root}/_sandbox/{SLUG}/faults", json=FAULTS, timeout=30).raise_for_status()
        chaos = Chaos(hub, rng)

        async def sync(mode: str) -> tuple[float, dict[str, Any]]:
            t0 = time.perf_counter()
            run = hub.sync.create_run(v.id, cid, mode)
            try:
                result = await chaos.run(run.id)
            finally:
                await hub.connections.aclose()
            return time.perf_counter() - t0, result

        full_secs, full = asyncio.run(sync("full"))
        print(f"full sync under faults: {full_secs:.1f} s, {records / full_secs:,.0f} records/s "
              f"(ratio to the fault-free raw baseline {raw['seconds'] / full_secs:.2f}); {full['status']}, "
              f"created {full['created']}, merged {full['merged']}")

        changes = httpx.post(f"{root}/_sandbox/{SLUG}/mutate", json={"update": args.update, "create": args.create,
                                                                    "delete": args.delete}, timeout=600).json()
        jobs_changed = httpx.post(f"{root}/_sandbox/{SLUG}/mutate", json={"update": args.update // 10,
                                                                         "collection": "job"}, timeout=600).json()
        events = [("contacts", i) for i in changes["updated"] + changes["created"] + changes["deleted"]]
        events += [("jobs", i) for i in jobs_changed["updated"]]

        async def hooks() -> dict[str, int]:
            try:
                return await deliver_hooks(hub, v.id, cid, events, rng)
            finally:
                await hub.connections.aclose()

        t0 = time.perf_counter()
        drained = asyncio.run(hooks())
        print(f"webhooks: {drained['deliveries']} deliveries for {len(events)} changes, shuffled, 10% duplicated, "
              f"through the inbox and the drain's batches in {time.perf_counter() - t0:.1f} s: {json.dumps(drained)}")
        inc_secs, inc = asyncio.run(sync("incremental"))
        print(f"incremental sync: {inc_secs:.1f} s, processed {inc['processed']}, updated {inc['updated']}")
        fin_secs, fin = asyncio.run(sync("full"))
        print(f"final full sync: {fin_secs:.1f} s, deleted {fin['deleted']}, {fin['error_detail'] or 'complete'}")
        stats = httpx.get(f"{root}/_sandbox/{SLUG}/stats", timeout=30).json()
        print(f"sandbox: {stats.get('requests')} requests, injected {stats.get('injected')}; hub retried "
              f"{chaos.retries} steps, replayed {chaos.duplicates} pages")

        result = verify(hub, cid, root, set(changes["deleted"]))
        hub.close()
        print(json.dumps(result, indent=1))
        c, j, k = result["contacts"], result["jobs"], result["job_contacts"]
        ok = (all(x["missing_or_different"] == 0 and x["duplicates"] == 0 and x["extra_live"] == 0 for x in (c, j, k))
              and c["field_diffs"] == 0 and c["deleted_marked"] == len(changes["deleted"])
              and result["unlinked_clients"] == 0 and result["couples_different"] == 0)
        total = c["truth"] + j["truth"] + k["truth"]
        exact = total - c["missing_or_different"] - j["missing_or_different"] - k["missing_or_different"]
        print(f"accuracy: {exact}/{total} records (contacts, jobs, job-contact links) present and equal "
              f"({100 * exact / total:.3f}%), duplicates {c['duplicates'] + j['duplicates'] + k['duplicates']}, "
              f"weddings whose couple differs {result['couples_different']} -> {'met' if ok else 'NOT met'} "
              f"(target 100%)")
        return 0 if ok else 1
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
