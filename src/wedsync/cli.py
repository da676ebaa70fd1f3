"""Operator CLI: ``wedsync serve | worker | sandbox | migrate | vendor | key | connect | sync | vault | backup``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wedsync.commands import discover_command_groups
from wedsync.errors import WedsyncError
from wedsync.terminal import check_home, fail, in_range, interrupted, make_console, port_available

app = typer.Typer(help="WedSync Integration Hub", no_args_is_help=True, pretty_exceptions_enable=False)
vendor_app = typer.Typer(help="vendors", no_args_is_help=True)
key_app = typer.Typer(help="API keys", no_args_is_help=True)
vault_app = typer.Typer(help="credential vault", no_args_is_help=True)
app.add_typer(vendor_app, name="vendor")
app.add_typer(key_app, name="key")
app.add_typer(vault_app, name="vault")
for _name, _group in discover_command_groups():
    app.add_typer(_group, name=_name)

console = make_console(stderr=True)
out = make_console()


@app.callback()
def _setup() -> None:
    """Configure scrubbed, structured logging before any command runs."""
    from wedsync.config import get_settings
    from wedsync.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level if settings.log_level.upper() != "INFO" else "WARNING",
                      json=settings.log_json)
    check_home(settings.resolved_home)


def _hub() -> Any:
    from wedsync.bootstrap import get_hub

    return get_hub()


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except WedsyncError as exc:
        fail(f"{exc.message} ({exc.code})")


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic)."""
    from wedsync.config import get_settings
    from wedsync.store.db import Database

    settings = get_settings()
    db = Database(settings.db_url)
    db.migrate()
    out.print(f"schema is at head on {db.engine.url.render_as_string(hide_password=True)}")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="API processes (use PostgreSQL when > 1)")] = 1,
    in_process_workers: Annotated[bool, typer.Option(help="also run the DBOS queues here")] = True,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from wedsync.config import get_settings

    in_range(port, 1, 65535, "--port")
    in_range(workers, 1, 512, "--workers")
    os.environ["WEDSYNC_IN_PROCESS_WORKERS"] = "true" if in_process_workers else "false"
    os.environ["WEDSYNC_SERVE_PROCESSES"] = str(workers)  # each API process then takes its own executor id
    get_settings.cache_clear()
    settings = get_settings()
    if workers > 1 and settings.is_sqlite:
        console.print("[yellow]warning:[/yellow] several API processes on SQLite serialize writes; "
                      "set WEDSYNC_DATABASE_URL to PostgreSQL for scale-out")
    _hub()  # migrate once before the workers fork
    uvicorn.run("wedsync.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=settings.log_level.lower(), access_log=False)


@app.command()
def worker(
    executor_id: Annotated[str | None, typer.Option(help="stable id; a restarted worker with the same id "
                                                  "resumes its own workflows")] = None,
) -> None:
    """Run a DBOS worker: dequeues sync runs and inbox drains; recovers dead workers' workflows."""
    from wedsync.bootstrap import default_executor_id, launch_dbos, shutdown_dbos
    from wedsync.config import get_settings
    from wedsync.workflows.recovery import supervise

    if executor_id is not None and not executor_id.strip():
        fail("--executor-id must not be empty (leave it out for the default id)")
    settings = get_settings()
    hub = _hub()
    eid = executor_id or settings.executor_id or default_executor_id(settings)
    launch_dbos(settings, executor_id=eid, listen=True)
    console.print(f"worker {eid} listening on {hub.db.engine.dialect.name}")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await supervise(hub.db, eid, stop, inbox=hub.inbox)

    try:
        asyncio.run(main())
    finally:
        shutdown_dbos()


@app.command()
def backup(
    dest: Annotated[Path, typer.Argument(help="a new or empty directory for the copy")],
) -> None:
    """Copy a live embedded hub (SQLite): both databases, consistent, and the vault key file."""
    import shutil

    from wedsync.config import get_settings
    from wedsync.store.db import backup_sqlite, sqlite_path

    settings = get_settings()
    if not settings.is_sqlite or not settings.dbos_url.startswith("sqlite"):
        fail("backup copies the embedded SQLite databases; on PostgreSQL use pg_dump (see docs/operations.md)")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        fail(f"{dest} must be a new or empty directory")
    _hub()  # a home that does not open is an error here, not an empty backup
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create {dest}: {exc.strerror or exc}")
    copied = []
    for url in (settings.db_url, settings.dbos_url):
        path = sqlite_path(url)
        if path is not None and path.exists():
            backup_sqlite(url, dest / path.name)
            copied.append(path.name)
    keys = settings.resolved_home / "vault.keys"
    if not settings.vault_keys and keys.exists():
        shutil.copy2(keys, dest / keys.name)  # without it the credentials in the copy cannot be decrypted
        (dest / keys.name).chmod(0o600)
        copied.append(keys.name)
    note = "" if not settings.vault_keys else "; the vault keys are WEDSYNC_VAULT_KEYS: keep them with the copy"
    out.print(f"backed up {', '.join(copied)} to {dest}{note}")


@app.command()
def providers(markdown: bool = typer.Option(False, "--markdown", help="print the table of docs/providers.md")) -> None:
    """Every provider the hub knows, with its real channel and capabilities."""
    from wedsync.connectors.registry import capability_markdown, capability_matrix

    if markdown:
        typer.echo(capability_markdown(), nl=False)
        return
    table = Table(title="Providers")
    for col in ("provider", "status", "channel", "read", "write", "webhooks"):
        table.add_column(col)
    for row in capability_matrix():
        caps = row["capabilities"]
        assert isinstance(caps, dict)
        table.add_row(str(row["provider"]), str(row["status"]), str(row["channel"]),
                      ", ".join(caps["read"]), ", ".join(caps["write"]), ", ".join(caps["webhooks"]))
    make_console().print(table)


@app.command()
def sandbox(
    port: int = 8100,
    host: str = "127.0.0.1",
    seed: int = 42,
    contacts: Annotated[int, typer.Option(help="VSCO Workspace contacts to generate")] = 200,
) -> None:
    """Serve the provider emulators on loopback, each under its own path prefix."""
    from wedsync.sandbox.server import run_sandbox

    in_range(port, 1, 65535, "--port")
    console.print(f"sandboxes on http://{host}:{port} (VSCO Workspace at /vsco-workspace/api/v2)")
    run_sandbox(host, port, seed=seed, contacts=contacts)


@vendor_app.command("create")
def vendor_create(
    name: str,
    timezone: str = "UTC",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create a vendor and its first API key (printed once)."""
    hub = _hub()
    try:
        v = hub.tenancy.create_vendor(name, timezone)
        _, key = hub.tenancy.create_key(v.id)
    except WedsyncError as exc:
        fail(f"{exc.message} ({exc.code})")
    if as_json:
        out.print_json(json.dumps({"vendor_id": v.id, "name": v.name, "api_key": key}))
    else:
        out.print(f"vendor {v.id} ({v.name})\napi key (shown once): {key}")


@vendor_app.command("list")
def vendor_list() -> None:
    t = Table("id", "name", "timezone", "created")
    for v in _hub().tenancy.list_vendors():
        t.add_row(v.id, v.name, v.timezone, v.created_at.isoformat(timespec="seconds"))
    out.print(t)


@key_app.command("create")
def key_create(
    vendor: Annotated[str | None, typer.Option(help="vendor id")] = None,
    operator: Annotated[bool, typer.Option(help="create a platform operator key")] = False,
    name: str = "cli",
    scope: Annotated[list[str] | None, typer.Option(help="read, write, keys (repeatable)")] = None,
) -> None:
    """Create an API key (printed once): a vendor's (--vendor ID) or the platform operator's (--operator)."""
    if operator == bool(vendor):
        fail("give either --vendor ID (a vendor's key) or --operator (the platform operator's), not both or neither")
    hub = _hub()
    try:
        row, key = hub.tenancy.create_key(vendor, name=name,
                                          scopes=scope or ["read", "write", "keys"], operator=operator)
    except WedsyncError as exc:
        fail(f"{exc.message} ({exc.code})")
    out.print(json.dumps({"key_id": row.id, "api_key": key}))


@key_app.command("revoke")
def key_revoke(key_id: str) -> None:
    try:
        _hub().tenancy.revoke_key(None, key_id)
    except WedsyncError as exc:
        fail(f"{exc.message} ({exc.code})")
    out.print(f"revoked {key_id}")


def _parse_credentials(pairs: list[str]) -> dict[str, str]:
    creds: dict[str, str] = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k:
            fail(f"--credential takes KEY=VALUE, got {p.split('=')[0]!r}")
        creds[k.strip()] = v
    return creds


@app.command()
def connect(
    provider: str,
    vendor: Annotated[str, typer.Option(help="vendor id")],
    base_url: Annotated[str | None, typer.Option(help="provider base URL (a sandbox, for example)")] = None,
    credential: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable")] = None,
    sync_every: Annotated[int | None, typer.Option(
        help="minutes between scheduled incremental pulls after the first run (0: manual only); default: "
             "WEDSYNC_SYNC_INTERVAL_MINUTES")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Connect a provider account for a vendor; credentials go to the encrypted vault."""
    hub = _hub()
    try:
        c = hub.connections.create(vendor, provider, credentials=_parse_credentials(credential or []),
                                   base_url=base_url)
    except WedsyncError as exc:
        fail(f"{exc.message} ({exc.code})")
    if sync_every is not None:
        try:
            c = hub.sync.set_interval(vendor, c.id, sync_every)
        except WedsyncError as exc:
            hub.connections.delete(vendor, c.id)  # nothing half done: no connection without the schedule asked for
            fail(f"{exc.message} ({exc.code})")
    minutes = hub.sync.interval_minutes(c)
    hook: dict[str, str] = {}
    secret = hub.connections.webhook_secret(c)
    if secret:  # the vendor's own Zap sends this provider's hooks: it needs the address and the secret, once
        from wedsync.connectors.webhooks import ZapierScheme
        from wedsync.services.subscriptions import webhook_url

        url = webhook_url(hub.settings.public_url, c.provider, c.id)
        hook = {"webhook_url": url, "webhook_secret": secret,
                "webhook_url_with_token": ZapierScheme.hook_url(url, secret)}
    if as_json:
        out.print_json(json.dumps({"connection_id": c.id, "provider": c.provider, "base_url": c.base_url,
                                   "scheduled_every_minutes": minutes, **hook}))
    else:
        schedule = f"pulled every {minutes} min after its first sync" if minutes else "synced only when asked"
        where = f" at {c.base_url}" if c.base_url else ""
        out.print(f"connection {c.id} ({c.provider}{where}); {schedule}")
        if hook:
            out.print(f"webhook secret (shown once): {hook['webhook_secret']}\n"
                      f"Zap webhook URL (POST, with the secret as token): {hook['webhook_url_with_token']}\n"
                      f"or sign the body: X-WedSync-Signature: sha256=<hex HMAC-SHA256(secret, body)> to "
                      f"{hook['webhook_url']}", soft_wrap=True)


async def run_sync_with_progress(hub: Any, vendor_id: str, connection_id: str, mode: str,
                                 *, quiet: bool = False, started: list[str] | None = None,
                                 here: bool = False) -> dict[str, Any]:
    """Start a sync run as a DBOS workflow (``here``: in this process, not on the queue) and show a progress bar
    until it ends (the run's id is appended to ``started`` as soon as it is known)."""
    from dbos import DBOS

    from wedsync.workflows.sync import start_sync

    run_id = await start_sync(vendor_id, connection_id, mode, here=here)
    if started is not None:
        started.append(run_id)
    run = hub.sync.get_run(vendor_id, run_id)
    handle: Any = await DBOS.retrieve_workflow_async(run.id)
    task = asyncio.ensure_future(handle.get_result())
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console,
                  disable=quiet, transient=False) as progress:
        bars: dict[str, Any] = {}
        while True:
            done = task.done()
            r = hub.sync.summary(hub.sync.get_run(vendor_id, run.id))
            for stream, p in (r["progress"] or {}).items():
                if stream not in bars:
                    bars[stream] = progress.add_task(f"{mode} {stream}", total=p["total_pages"], detail="")
                progress.update(bars[stream], total=p["total_pages"], completed=p["page"],
                                detail=f"{r['processed']} records")
            if done:
                if r["status"] == "succeeded":  # an incremental run stops early: the window is covered
                    for stream, bar in bars.items():
                        total = (r["progress"] or {}).get(stream, {}).get("total_pages") or 1
                        progress.update(bar, total=total, completed=total)
                break
            await asyncio.sleep(0.2)
    await task
    return dict(hub.sync.summary(hub.sync.get_run(vendor_id, run.id)))


@app.command()
def sync(
    connection: str,
    vendor: Annotated[str, typer.Option(help="vendor id")],
    mode: Annotated[str, typer.Option(help="full or incremental")] = "incremental",
) -> None:
    """Run a sync now, in this process, with a progress bar (it runs nothing else: see docs/operations.md)."""
    from wedsync.bootstrap import command_dbos
    from wedsync.config import get_settings
    from wedsync.store.tables import utcnow

    hub = _hub()
    began = utcnow()
    started: list[str] = []
    try:
        with command_dbos(get_settings(), hub.db):
            try:
                summary = _run(run_sync_with_progress(hub, vendor, connection, mode, started=started, here=True))
            except KeyboardInterrupt:  # cancelled while DBOS runs, so nothing is left for a worker to resume
                summary = _sync_interrupted(hub, vendor, connection, mode, started, began)
    except KeyboardInterrupt:  # while DBOS started or stopped
        summary = _sync_interrupted(hub, vendor, connection, mode, started, began)
    out.print_json(json.dumps(summary))
    if summary["status"] != "succeeded":
        raise typer.Exit(1)


def cancel_interrupted_workflow(workflow_id: str) -> bool:
    """Ctrl-C: cancel the workflow this command started (its run or job must not be resumed later by a worker
    recovering this command's pending workflows), then stop DBOS. False when the cancellation could not be
    recorded."""
    import logging

    from dbos import DBOS

    from wedsync import bootstrap
    from wedsync.bootstrap import shutdown_dbos

    if not getattr(bootstrap, "_dbos_launched", False):
        return True  # interrupted while DBOS started: this command started no workflow
    logging.getLogger("dbos").setLevel(logging.ERROR)  # the steps cut short say so: expected here, not news
    try:
        DBOS.cancel_workflow(workflow_id)
        return True
    except Exception:
        return False
    finally:
        shutdown_dbos()  # nothing of the workflow runs in this process after this


def _sync_interrupted(hub: Any, vendor: str, connection: str, mode: str, started: list[str],
                      began: Any) -> dict[str, Any]:
    """Ctrl-C during ``wedsync sync``: the run is cancelled and recorded as failed (interrupted), so the next sync
    of the connection is not refused; one line says so. A run that ended meanwhile is reported as it ended."""
    run_ids = started or [r.id for r in hub.sync.runs_in_progress(connection)
                          if r.vendor_id == vendor and r.started_at >= began]  # interrupted inside start_sync
    if not run_ids:
        interrupted("before a sync run was started; nothing was left running")
    run_id = run_ids[0]
    cancelled = cancel_interrupted_workflow(run_id)
    run = hub.sync.get_run(vendor, run_id)
    if run.status not in ("queued", "running"):
        return dict(hub.sync.summary(run))  # it ended just before the interrupt took effect
    if not cancelled:
        interrupted(f"sync run {run_id} is left {run.status} (its workflow could not be cancelled): `wedsync worker` "
                    f"or `wedsync serve` on this database resumes it")
    done = hub.sync.fail(run_id, KeyboardInterrupt(),
                         detail="interrupted: cancelled with Ctrl-C in `wedsync sync` (its workflow was cancelled)")
    interrupted(f"sync run {run_id} cancelled after {done['processed']} records (kept); nothing is left running: "
                f"`wedsync sync {connection} --vendor {vendor} --mode {mode}` syncs the connection again")


@vault_app.command("rotate")
def vault_rotate(
    prune: Annotated[bool, typer.Option(help="drop old keys after re-encrypting")] = False,
) -> None:
    """Add a new primary vault key and re-encrypt every sealed value (credentials, pending OAuth authorizations)."""
    from wedsync.config import get_settings
    from wedsync.store.vault import KeyFile, KeyRing, Vault

    settings = get_settings()
    if settings.vault_keys:
        fail("keys come from WEDSYNC_VAULT_KEYS: prepend a new key there, then run "
              "`wedsync vault reencrypt`")
    hub = _hub()
    keyfile = KeyFile(settings.resolved_home / "vault.keys")
    old = keyfile.load_or_create()
    ring = KeyRing([KeyRing.generate_key(), *old.keys])
    keyfile.save(ring)  # the new key is durable before anything is sealed with it; running processes seal
    # with it from now on (their vaults re-read the file before sealing)
    vault = Vault(ring)  # every key, also after a prune: rows sealed with an old key meanwhile are re-sealed
    with hub.db.session() as s:
        n = vault.reencrypt_counts(s)
    if prune:
        keyfile.save(KeyRing([ring.keys[0]]))
        # a process that sealed with an old key just before the new file landed and committed after the pass
        # above: one more pass now that no process can seal with an old key any more
        with hub.db.session() as s:
            for table, more in vault.reencrypt_counts(s).items():
                n[table] += more
    hub.vault.refresh()
    out.print(f"new primary key {ring.primary_id}; re-encrypted {_resealed(n)}"
              + ("; old keys removed" if prune else ""))


def _resealed(counts: dict[str, int]) -> str:
    return (f"{counts['credentials']} credential(s) and {counts['oauth_states']} pending OAuth authorization(s)")


@vault_app.command("reencrypt")
def vault_reencrypt() -> None:
    """Re-encrypt every sealed value with the current primary key (after changing WEDSYNC_VAULT_KEYS)."""
    hub = _hub()
    with hub.db.session() as s:
        n = hub.vault.reencrypt_counts(s)
    out.print(f"re-encrypted {_resealed(n)} with {hub.vault.ring.primary_id}")


@app.command()
def demo(
    exit_after: Annotated[bool, typer.Option("--exit", help="stop after the summary")] = False,
    port: int = 8000,
    sandbox_port: int = 8100,
    contacts: int = 500,
) -> None:
    """Start the sandboxes and the hub on SQLite, sync a demo photographer, keep serving the API."""
    from wedsync.demo import run_demo

    in_range(port, 1, 65535, "--port")
    in_range(sandbox_port, 1, 65535, "--sandbox-port")
    if port == sandbox_port:
        fail(f"--port and --sandbox-port are both {port}: the API and the sandboxes need a port each")
    port_available(sandbox_port, "--sandbox-port")
    if not exit_after:  # with --exit the API is never served
        port_available(port, "--port")
    try:
        run_demo(exit_after=exit_after, port=port, sandbox_port=sandbox_port, contacts=contacts)
    except WedsyncError as exc:
        fail(f"{exc.message} ({exc.code})", 1)


def main() -> None:
    """The ``wedsync`` entry point: the Typer app, where a configuration or database problem met anywhere (a bad
    ``WEDSYNC_*`` value, an unreachable or corrupt database, a schema from a newer release, unreadable vault keys)
    ends as one ``error:`` line and exit status 2, as docs/operations.md says, instead of a traceback."""
    import sys

    from rich.markup import escape

    from wedsync.bootstrap import checkpoint_installed_hub
    from wedsync.store.db import COMMAND_CHECKPOINT_WAIT
    from wedsync.terminal import setup_error_line

    try:
        app()
    except Exception as exc:
        line = setup_error_line(exc)
        if line is None:
            raise
        make_console(stderr=True).print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)
        sys.exit(2)
    finally:
        # a long-lived process stops once and may wait for its own threads; a command beside a live hub may not
        long_lived = len(sys.argv) > 1 and sys.argv[1] in ("serve", "worker", "demo")
        checkpoint_installed_hub(1.0 if long_lived else COMMAND_CHECKPOINT_WAIT)


if __name__ == "__main__":  # pragma: no cover
    main()
