"""``make demo``: the sandboxes and the hub on embedded defaults, and the photographer's story."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from rich.table import Table

from wedsync.terminal import make_console

console = make_console(soft_wrap=True)  # never break an API key or a URL across lines

DEMO_VENDOR = "Golden Hour Photography (demo)"
SANDBOX_VSCO_KEY = "sandbox-vsco-key"


def _find_demo_vendor(hub: Any) -> Any:
    for v in hub.tenancy.list_vendors():
        if v.name == DEMO_VENDOR:
            return v
    return None


def run_demo(*, exit_after: bool, port: int, sandbox_port: int, contacts: int) -> None:
    os.environ.setdefault("WEDSYNC_ALLOW_PRIVATE_URLS", "true")  # the sandboxes live on loopback
    os.environ.setdefault("WEDSYNC_PUBLIC_URL", f"http://127.0.0.1:{port}")
    from wedsync.config import get_settings

    get_settings.cache_clear()
    settings = get_settings()

    from wedsync.bootstrap import get_hub, launch_dbos, shutdown_dbos
    from wedsync.cli import run_sync_with_progress
    from wedsync.sandbox.server import start_sandbox_in_thread

    console.rule("[bold]WedSync Integration Hub demo")
    sandbox_url, stop_sandbox = start_sandbox_in_thread(port=sandbox_port, contacts=contacts)
    console.print(f"provider sandboxes: {sandbox_url}")
    hub = get_hub()
    console.print(f"data directory: {settings.resolved_home}  database: {hub.db.engine.dialect.name}")
    launch_dbos(settings)
    try:
        vendor = _find_demo_vendor(hub)
        key = None
        if vendor is None:
            vendor = hub.tenancy.create_vendor(DEMO_VENDOR, "America/Los_Angeles")
            _, key = hub.tenancy.create_key(vendor.id, name="demo")
        else:
            _, key = hub.tenancy.create_key(vendor.id, name="demo (again)")
        base = f"{sandbox_url}/vsco-workspace/api/v2"
        conn = next((c for c in hub.connections.list(vendor.id)
                     if c.provider == "vsco-workspace" and c.base_url == base), None)
        if conn is None:
            conn = hub.connections.create(vendor.id, "vsco-workspace", credentials={"api_key": SANDBOX_VSCO_KEY},
                                          base_url=base)
        console.print(f"vendor {vendor.id}: {vendor.name}; VSCO Workspace connection {conn.id}")

        async def story() -> list[dict[str, Any]]:
            runs = [await run_sync_with_progress(hub, vendor.id, conn.id, "full")]
            import httpx

            async with httpx.AsyncClient(base_url=sandbox_url) as sb:
                r = await sb.post("/_sandbox/vsco-workspace/mutate", json={"update": 25, "create": 10,
                                                                          "delete": 0})
                r.raise_for_status()
            runs.append(await run_sync_with_progress(hub, vendor.id, conn.id, "incremental"))
            await hub.connections.aclose()
            return runs

        runs = asyncio.run(story())
        t = Table(title="Sync runs (VSCO Workspace sandbox)")
        for col in ("mode", "status", "pages", "records", "new", "changed", "deleted", "secs"):
            t.add_column(col, justify="left" if col in ("mode", "status") else "right", no_wrap=True)
        from datetime import datetime

        for r in runs:
            secs = (datetime.fromisoformat(r["finished_at"]) - datetime.fromisoformat(r["started_at"])
                    ).total_seconds() if r["finished_at"] else 0.0
            t.add_row(r["mode"], r["status"], str(r["pages"]), str(r["processed"]), str(r["created"]),
                      str(r["updated"]), str(r["deleted"]), f"{secs:.2f}")
        console.print(t)
        from sqlalchemy import func, select

        from wedsync.store.tables import Client, Wedding

        with hub.db.read() as s:
            n_clients = s.execute(select(func.count()).select_from(Client).where(
                Client.vendor_id == vendor.id, Client.deleted_at.is_(None))).scalar_one()
            n_weddings = s.execute(select(func.count()).select_from(Wedding).where(
                Wedding.vendor_id == vendor.id, Wedding.deleted_at.is_(None))).scalar_one()
        console.print(f"[bold]{n_clients}[/bold] clients and [bold]{n_weddings}[/bold] weddings in WedSync "
                      f"for {vendor.name}")
        due = hub.connections.get(vendor.id, conn.id).next_sync_at
        every = hub.sync.interval_minutes(conn)
        console.print(f"next scheduled incremental pull: {due.isoformat(timespec='seconds')} (every "
                      f"{every} min; PATCH /api/connections/{conn.id} changes it)"
                      if due and every else "no scheduled pulls (WEDSYNC_SYNC_INTERVAL_MINUTES=0): sync on demand")
        console.print(f"API key for this vendor (shown once): [bold]{key}[/bold]")
        from wedsync.demos import DemoContext, discover_stories

        ctx = DemoContext(hub=hub, console=console, sandbox_url=sandbox_url,
                          public_url=f"http://127.0.0.1:{port}")
        summary: list[tuple[str, str]] = []
        for title, run_story in discover_stories():
            console.rule(f"[bold]{title}")
            summary.extend(run_story(ctx))
        if summary:
            st = Table(title="Demo summary")
            st.add_column("what")
            st.add_column("result")
            for label, value in summary:
                st.add_row(label, value)
            console.print(st)
        if exit_after:
            return
        import uvicorn

        from wedsync.api.app import create_app

        console.print(f"API on http://127.0.0.1:{port} (docs at /docs); Ctrl-C to stop")
        console.print(f"try: curl -H 'Authorization: Bearer {key}' http://127.0.0.1:{port}/api/clients")
        uvicorn.run(create_app(), host="127.0.0.1", port=port, log_level="warning")
    finally:
        shutdown_dbos()
        stop_sandbox()
