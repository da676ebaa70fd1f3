"""CSV export of a large vendor: rows/s of the unified export and of one connection's export. Run it at two
sizes: a linear export keeps its rows/s (a quadratic one halves it when the vendor doubles).

    .venv/bin/python bench/crm_export.py                      # 20,000 clients, a wedding for every two
    .venv/bin/python bench/crm_export.py --clients 60000

A fresh SQLite hub in a temporary directory gets one VSCO Workspace connection (no provider calls: the records
are written through the sync engine's upsert, identity resolution on, 1,000 to a transaction) with
``--clients`` contacts and a job for every two of them (both linked as its clients). Then
``CrmService.export_csv`` is read to the end twice, in the HoneyBook layout: the unified clients, and the
connection's own records. Reported: seconds, rows/s, the peak RSS growth during the export
(``/proc/self/status`` VmHWM, reset before each one) and the rows with a project (every client has one).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def seed(hub: Any, clients: int) -> tuple[str, str]:
    from wedsync.domain.crm import ClientRecord, WeddingRecord

    v = hub.tenancy.create_vendor("Export Bench Studio")
    conn = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "k"})
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for start in range(0, clients, 1000):
        people = [ClientRecord(f"c{i:07d}", first_name=f"First{i}", last_name=f"Last{i}",
                               email=f"client{i}@example{i % 97}.com", phone=f"+1415{2000000 + i:07d}",
                               address={"streetAddress": f"{i} Oak Ave", "city": "Springfield", "country": "US"},
                               remote_modified_at=at) for i in range(start, min(start + 1000, clients))]
        jobs = [WeddingRecord(f"j{i:07d}", name=f"Wedding {i}", event_date=date(2027, 1, 1) + timedelta(days=i % 700),
                              stage="booked", job_type="Wedding",
                              client_remote_ids=[f"c{i:07d}", f"c{i + 1:07d}"], remote_modified_at=at)
                for i in range(start, min(start + 1000, clients), 2)]
        with hub.db.engine.begin() as c:
            hub.sync.upsert(c, v.id, conn.id, "contacts", people)
            hub.sync.upsert(c, v.id, conn.id, "jobs", jobs)
    return v.id, conn.id


def measure(chunks: Any) -> dict[str, Any]:
    reset_peak()
    base = rss_kib("VmRSS")
    rows, with_project = -1, 0  # the header is not a row
    t0 = time.perf_counter()
    for chunk in chunks:  # each chunk ends with a whole row
        for record in csv.reader(io.StringIO(chunk.decode("utf-8"))):
            rows += 1
            with_project += rows > 0 and bool(record[6])
    secs = time.perf_counter() - t0
    return {"rows": rows, "with_project": with_project, "seconds": secs, "rps": rows / secs,
            "peak_rss_growth_mib": (rss_kib("VmHWM") - base) / 1024}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--clients", type=int, default=20_000)
    args = p.parse_args(argv)

    from wedsync.bootstrap import Hub
    from wedsync.config import Settings
    from wedsync.logging import configure_logging

    configure_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="wedsync-bench-export-"))
    hub = Hub(Settings(home=work, allow_private_urls=True))
    try:
        t0 = time.perf_counter()
        vid, cid = seed(hub, args.clients)
        print(f"seeded {args.clients} clients and {(args.clients + 1) // 2} weddings in "
              f"{time.perf_counter() - t0:.1f} s (workdir {work})")
        print(f"{'export':26}{'rows':>8}{'seconds':>9}{'rows/s':>9}{'peak RSS +MiB':>15}{'with project':>14}")
        for label, kw in (("unified, honeybook", {}), ("connection, honeybook", {"connection_id": cid})):
            r = measure(hub.crm.export_csv(vid, "honeybook", **kw))
            print(f"{label:26}{r['rows']:8d}{r['seconds']:9.2f}{r['rps']:9.0f}{r['peak_rss_growth_mib']:15.1f}"
                  f"{r['with_project']:14d}")
            assert r["rows"] == args.clients and r["with_project"] == args.clients, r
    finally:
        hub.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
