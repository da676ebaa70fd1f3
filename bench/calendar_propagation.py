"""Propagation latency: a change in one connected calendar -> a busy block in every other one.

The real hub (API + DBOS in one process, SQLite) serves webhooks on a loopback port; the Google Calendar and
Microsoft Graph sandboxes push to it over HTTP (watch channel / subscription), a real Radicale is polled by the
DBOS schedule. For each change the clock runs from the provider-side write to the moment the block is visible
at every other provider (read from the providers, not from our tables).

Baseline (same run): writing the same blocks directly with the connectors' put_block, i.e. the provider cost
that no propagation can avoid. Run: ``.venv/bin/python bench/calendar_propagation.py [--changes 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("WEDSYNC_LOG_LEVEL", "WARNING")
sys.path.insert(0, str(ROOT))

from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Mount  # noqa: E402
from tests.e2e.procs import free_port, serve_app_in_thread  # noqa: E402
from tests.integration.radicale_server import start_radicale  # noqa: E402

from wedsync.connectors.calendars.base import BLOCK_MARKER  # noqa: E402
from wedsync.sandbox import google_calendar as gsandbox  # noqa: E402
from wedsync.sandbox import microsoft_graph as msandbox  # noqa: E402
from wedsync.sandbox.faults import FaultMiddleware  # noqa: E402

GH = {"Authorization": f"Bearer {gsandbox.DEFAULT_ACCESS_TOKEN}"}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def caldav_has_block(server: Any, path: str, start: datetime) -> bool:
    body = ('<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            '<D:prop><C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR"/></C:filter>'
            '</C:calendar-query>')
    r = httpx.request("REPORT", server.url + path, content=body, auth=(server.user, server.password),
                      headers={"Depth": "1", "Content-Type": "application/xml"}, timeout=10)
    stamp = start.astimezone(UTC).strftime("DTSTART:%Y%m%dT%H%M%SZ")
    return any(BLOCK_MARKER in part and stamp in part for part in r.text.split("BEGIN:VEVENT")[1:])


def google_has_block(url: str, start: datetime) -> bool:
    r = httpx.get(f"{url}{gsandbox.PREFIX}/calendars/{gsandbox.PRIMARY_ID}/events", headers=GH,
                  params={"maxResults": 2500}, timeout=10)
    for e in r.json().get("items", []):
        if e.get("status") == "cancelled" or not str(e.get("summary", "")).startswith("Busy"):
            continue
        raw = e.get("start", {}).get("dateTime")
        if raw and datetime.fromisoformat(raw.replace("Z", "+00:00")) == start:
            return True
    return False


def graph_has_block(graph: Any, start: datetime) -> bool:
    return any(not e.deleted and e.start == start and e.subject.startswith("Busy")
               for e in list(graph.default_calendar().events.values()))


def wait_until(check: Any, timeout: float) -> float | None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if check():
            return time.perf_counter() - t0
        time.sleep(0.05)
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=20, help="changes per channel")
    args = parser.parse_args()

    from wedsync.api.app import create_app
    from wedsync.bootstrap import Hub, set_hub
    from wedsync.config import Settings

    tmp = Path(tempfile.mkdtemp(prefix="wedsync-calprop-"))
    google = gsandbox.create_emulator(seed=3, events=0)
    graph = msandbox.create_emulator(seed=3, events=0)
    sandbox = Starlette(routes=[Mount(em.prefix, app=FaultMiddleware(em.app, em.faults, em.error_body,
                                                                      em.quota_key)) for em in (google, graph)])
    sandbox_url, stop_sandbox = serve_app_in_thread(sandbox)
    radicale = start_radicale(tmp / "radicale")
    port = free_port()
    hub_url = f"http://127.0.0.1:{port}"
    settings = Settings(home=tmp / "home", allow_private_urls=True, public_url=hub_url, log_level="WARNING")
    hub = Hub(settings)
    set_hub(hub)
    app = create_app(launch_workflows=True)
    _, stop_hub = serve_app_in_thread(app, port)
    from wedsync import bootstrap

    assert wait_until(lambda: bootstrap._dbos_launched, 60) is not None, "DBOS did not launch"
    svc = hub.calendar
    v = hub.tenancy.create_vendor("Bloom & Vine", "Europe/London").id

    def oauth_conn(provider: str, base: str, token: str) -> str:
        conn = hub.connections.create(v, provider, credentials={}, base_url=base)
        with hub.db.session() as s:
            hub.vault.store(s, v, conn.id, {**hub.connections.credentials(conn), "access_token": token})
        return conn.id

    g_conn = oauth_conn("google-calendar", sandbox_url + gsandbox.PREFIX, gsandbox.DEFAULT_ACCESS_TOKEN)
    m_conn = oauth_conn("microsoft-graph", sandbox_url + msandbox.PREFIX, msandbox.DEFAULT_ACCESS_TOKEN)
    c_conn = hub.connections.create(v, "apple-caldav", credentials={"username": radicale.user,
                                                                    "password": radicale.password},
                                    base_url=radicale.url).id
    cal_path = radicale.make_calendar("florist")
    g_src = svc.add_source(v, kind="google-calendar", calendar_id=gsandbox.PRIMARY_ID, connection_id=g_conn)["id"]
    m_src = svc.add_source(v, kind="microsoft-graph", calendar_id=graph.default_calendar().id,
                           connection_id=m_conn)["id"]
    c_src = svc.add_source(v, kind="apple-caldav", calendar_id=cal_path, connection_id=c_conn)["id"]

    loop = asyncio.new_event_loop()
    for src in (g_src, m_src, c_src):
        print("initial sync", src, loop.run_until_complete(svc.sync_source(src))["status"])
    for src in (g_src, m_src):
        print("watch", loop.run_until_complete(svc.watch_source(src)))
    print("CalDAV poll interval:", svc.get_source(v, c_src)["poll_interval_s"], "s; DBOS poll schedule every 5 s")

    base = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    results: dict[str, list[float]] = {"google (push)": [], "outlook (push)": [], "caldav (polling)": []}
    failures: dict[str, int] = dict.fromkeys(results, 0)
    slot = 0
    for i in range(args.changes):
        for channel in results:
            slot += 1
            start = base + timedelta(hours=slot * 2)
            end = start + timedelta(hours=1)
            t0 = time.perf_counter()
            if channel.startswith("google"):
                r = httpx.post(f"{sandbox_url}{gsandbox.PREFIX}/calendars/{gsandbox.PRIMARY_ID}/events", headers=GH,
                               json={"summary": f"Consultation {i}", "start": {"dateTime": start.isoformat()},
                                     "end": {"dateTime": end.isoformat()}}, timeout=10)
                r.raise_for_status()
                checks = [lambda s=start: graph_has_block(graph, s), lambda s=start: caldav_has_block(radicale,
                                                                                                       cal_path, s)]
            elif channel.startswith("outlook"):
                cal_id = graph.default_calendar().id
                r = httpx.post(f"{sandbox_url}{msandbox.PREFIX}/me/calendars/{cal_id}/events",
                               headers={"Authorization": f"Bearer {msandbox.DEFAULT_ACCESS_TOKEN}"},
                               json={"subject": f"Venue visit {i}",
                                     "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                                     "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}},
                               timeout=10)
                r.raise_for_status()
                checks = [lambda s=start: google_has_block(sandbox_url, s),
                          lambda s=start: caldav_has_block(radicale, cal_path, s)]
            else:
                ics = (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//iPhone//EN\r\nBEGIN:VEVENT\r\nUID:ip-{i}\r\n"
                       f"DTSTAMP:20260101T000000Z\r\nDTSTART:{start.strftime('%Y%m%dT%H%M%SZ')}\r\n"
                       f"DTEND:{end.strftime('%Y%m%dT%H%M%SZ')}\r\nSUMMARY:Tasting {i}\r\nEND:VEVENT\r\n"
                       f"END:VCALENDAR\r\n")
                assert radicale.put_raw(f"{cal_path}ip-{i}.ics", ics).status_code in (201, 204)
                checks = [lambda s=start: google_has_block(sandbox_url, s), lambda s=start: graph_has_block(graph, s)]
            done = wait_until(lambda c=checks: all(f() for f in c), 60)
            elapsed = time.perf_counter() - t0
            if done is None:
                failures[channel] += 1
            else:
                results[channel].append(elapsed)
        print(f"round {i + 1}/{args.changes}:", {k: round(v[-1], 2) if v else None for k, v in results.items()},
              flush=True)

    # baseline: the same kind of blocks written directly with the connectors (the unavoidable provider cost)
    async def direct() -> list[float]:
        times = []
        targets = [(await svc._connector(svc.get_source(v, sid)), svc.get_source(v, sid)["calendar_id"])
                   for sid in (g_src, m_src, c_src)]
        for i in range(args.changes):
            start = base + timedelta(days=200, hours=i * 2)
            t0 = time.perf_counter()
            for conn, cal in targets[1:]:
                await conn.put_block(cal, f"bench-direct-{i}", start, start + timedelta(hours=1), "Busy")
            times.append(time.perf_counter() - t0)
        return times

    baseline = loop.run_until_complete(direct())
    base_p50 = statistics.median(baseline)
    print()
    print(f"{'channel':18} {'n':>3} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'fail':>4} {'p50/direct':>10}")
    for channel, values in results.items():
        if values:
            print(f"{channel:18} {len(values):>3} {statistics.median(values):>7.2f} {pct(values, 95):>7.2f} "
                  f"{max(values):>7.2f} {failures[channel]:>4} {statistics.median(values) / base_p50:>10.1f}")
        else:
            print(f"{channel:18} no change arrived ({failures[channel]} failures)")
    print(f"{'direct put_block x2':18} {len(baseline):>3} {base_p50:>7.3f} {pct(baseline, 95):>7.3f}")
    print("targets: p95 < 5 s with push channels, < 20 s for CalDAV polling")
    stop_hub()
    stop_sandbox()
    radicale.stop()


if __name__ == "__main__":
    main()
