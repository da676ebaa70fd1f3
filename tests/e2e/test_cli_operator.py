"""The CLI as an operator meets it on a bad day: broken settings and databases, busy ports, closed pipes, a hub
already serving the same home (its workflows are its own)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import Proc, free_port, hub_env, wait_for


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wedsync.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_configuration_and_database_problems_are_one_line_and_exit_2(tmp_path: Path) -> None:
    def home(name: str) -> Path:
        h = tmp_path / name
        h.mkdir()
        return h

    corrupt = home("corrupt")
    (corrupt / "wedsync.sqlite").write_bytes(b"this is not a database, just text\n" * 200)
    future = home("future")
    assert cli(hub_env(future), "migrate").returncode == 0
    with sqlite3.connect(future / "wedsync.sqlite") as db:
        db.execute("UPDATE alembic_version SET version_num = '0099_future'")
    badkeys = home("badkeys")
    (badkeys / "vault.keys").write_text("garbage\n")
    cases: list[tuple[Path, dict[str, str], str]] = [
        (corrupt, {}, "file is not a database"),
        (future, {}, "schema revision 0099_future"),
        (home("pg"), {"WEDSYNC_DATABASE_URL": "postgresql://hub:s3cr3t-pw@127.0.0.1:9/hub"}, "127.0.0.1"),
        (home("url"), {"WEDSYNC_DATABASE_URL": "notaurl"}, "WEDSYNC_DATABASE_URL"),
        (home("mysql"), {"WEDSYNC_DATABASE_URL": "mysql://x@y/z"}, "WEDSYNC_DATABASE_URL"),
        (home("vk"), {"WEDSYNC_VAULT_KEYS": "notbase64"}, "WEDSYNC_VAULT_KEYS"),
        (badkeys, {"WEDSYNC_VAULT_KEYS": ""}, "vault.keys"),
        (home("oauth"), {"WEDSYNC_OAUTH_CLIENTS": "{bad"}, "WEDSYNC_OAUTH_CLIENTS"),
        (home("loud"), {"WEDSYNC_LOG_LEVEL": "LOUD"}, "WEDSYNC_LOG_LEVEL"),
        (home("every"), {"WEDSYNC_SYNC_INTERVAL_MINUTES": "abc"}, "WEDSYNC_SYNC_INTERVAL_MINUTES"),
        (home("ipw"), {"WEDSYNC_IN_PROCESS_WORKERS": "maybe"}, "WEDSYNC_IN_PROCESS_WORKERS"),
        (home("pub"), {"WEDSYNC_PUBLIC_URL": "not a url"}, "WEDSYNC_PUBLIC_URL"),
    ]
    for where, extra, needle in cases:
        env = hub_env(where, **extra)
        if not env["WEDSYNC_VAULT_KEYS"]:
            del env["WEDSYNC_VAULT_KEYS"]
        line = one_error_line(cli(env, "vendor", "list"))
        assert needle in line, (extra, line)
        assert "s3cr3t-pw" not in line


def test_an_unknown_failure_keeps_its_traceback() -> None:
    from wedsync.terminal import setup_error_line

    assert setup_error_line(ZeroDivisionError("a bug")) is None
    assert setup_error_line(BrokenPipeError()) is None


@pytest.fixture
def two_sandboxes() -> Iterator[tuple[str, str]]:
    from wedsync.sandbox.server import start_sandbox_in_thread

    slow, stop_slow = start_sandbox_in_thread(port=0, contacts=10, jobs=5)
    fast, stop_fast = start_sandbox_in_thread(port=0, contacts=10, jobs=5)
    try:
        yield slow, fast
    finally:
        stop_slow()
        stop_fast()


def dbos_workflow(home: Path, workflow_id: str) -> tuple[str, str] | None:
    with sqlite3.connect(home / "dbos.sqlite") as db:
        row = db.execute("SELECT status, executor_id FROM workflow_status WHERE workflow_uuid = ?",
                         (workflow_id,)).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def heartbeats(home: Path) -> list[str]:
    with sqlite3.connect(home / "wedsync.sqlite") as db:
        return [r[0] for r in db.execute("SELECT executor_id FROM worker_heartbeats")]


@pytest.mark.slow
def test_a_cli_command_runs_only_its_own_workflow_and_a_killed_one_is_recovered_by_serve(
        tmp_path: Path, two_sandboxes: tuple[str, str]) -> None:
    from sqlalchemy import create_engine

    from tests.e2e.test_durability import pages_done, run_row, seed, start_sync, wait_api

    slow, fast = two_sandboxes
    seed(slow, 3000, 400, latency_ms=60)
    env = hub_env(tmp_path)
    from tests.conftest import make_settings
    from wedsync.bootstrap import Hub

    hub = Hub(make_settings(tmp_path, vault_keys=env["WEDSYNC_VAULT_KEYS"]))
    vendor = hub.tenancy.create_vendor("Two Connections Studio")
    _, key = hub.tenancy.create_key(vendor.id)
    busy = hub.connections.create(vendor.id, "vsco-workspace", credentials={"api_key": "sandbox-vsco-key"},
                                  base_url=f"{slow}/vsco-workspace/api/v2")
    other = hub.connections.create(vendor.id, "vsco-workspace", credentials={"api_key": "sandbox-vsco-key"},
                                   base_url=f"{fast}/vsco-workspace/api/v2")
    hub.close()
    engine = create_engine(f"sqlite:///{tmp_path / 'wedsync.sqlite'}")
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    serve = Proc(["serve", "--port", str(port)], env, tmp_path / "serve1.log")
    try:
        wait_api(api, serve)
        run_id = start_sync(api, {"connection_id": busy.id, "key": key})
        wait_for(lambda: pages_done(engine, run_id)[0] >= 4, 60, "4 pages synced")
        serve.kill9()  # its run is left pending under the embedded executor id `local`
        before = pages_done(engine, run_id)
        assert dbos_workflow(tmp_path, run_id) == ("PENDING", "local")

        # a command on the same home runs its own sync, and not the serving process's run
        r = cli(env, "sync", other.id, "--vendor", vendor.id, "--mode", "full")
        assert r.returncode == 0, r.stderr + r.stdout
        assert json.loads(r.stdout)["status"] == "succeeded"
        assert pages_done(engine, run_id) == before and run_row(engine, run_id).status == "running"
        assert dbos_workflow(tmp_path, run_id) == ("PENDING", "local")
        assert heartbeats(tmp_path) == ["local"]  # the command left no heartbeat behind: nothing pending

        # `serve` restarted resumes its own run
        serve = Proc(["serve", "--port", str(port)], env, tmp_path / "serve2.log")
        wait_api(api, serve)
        done = wait_for(lambda: (row := run_row(engine, run_id)).status in ("succeeded", "failed") and row, 120,
                        "the resumed run")
        assert done.status == "succeeded", done.error_detail

        # a command killed mid-run: its heartbeat goes silent and the live `serve` finishes its run
        seed(fast, 3000, 400, latency_ms=60)
        victim = Proc(["sync", other.id, "--vendor", vendor.id, "--mode", "full"], env, tmp_path / "cli.log")
        try:
            cli_run = wait_for(lambda: [r for r in run_rows(engine, other.id) if r.status == "running"], 60,
                               "the command's run")[0].id
            wait_for(lambda: pages_done(engine, cli_run)[0] >= 2, 60, "2 pages of the command's run")
            status, executor = dbos_workflow(tmp_path, cli_run) or ("", "")
            assert status == "PENDING" and executor.startswith("cli-"), (status, executor)
            victim.kill9()
        finally:
            victim.stop()
        done = wait_for(lambda: (row := run_row(engine, cli_run)).status in ("succeeded", "failed") and row, 180,
                        "the killed command's run, recovered by serve")
        assert done.status == "succeeded", done.error_detail
        # the run row is finished by the workflow's last step; DBOS records the workflow's own end just after
        wait_for(lambda: dbos_workflow(tmp_path, cli_run) == ("SUCCESS", "local"), 30,
                 "the recovered workflow's end, recorded by serve")
    finally:
        serve.stop()
        engine.dispose()


def run_rows(engine: Any, connection_id: str) -> list[Any]:
    from sqlalchemy import select

    from wedsync.store.tables import SyncRun

    with engine.connect() as c:
        return list(c.execute(select(SyncRun).where(SyncRun.connection_id == connection_id)))


def test_demo_checks_both_ports_before_starting_anything(tmp_path: Path) -> None:
    import socket

    env = hub_env(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(cli(env, "demo", "--exit", "--sandbox-port", str(port), "--port", str(free_port()),
                                  timeout=60))
        assert f"--sandbox-port {port}" in line and "not available" in line
        line = one_error_line(cli(env, "demo", "--port", str(port), "--sandbox-port", str(free_port()),
                                  timeout=60))
        assert f"--port {port}" in line and "not available" in line
    assert not (tmp_path / "wedsync.sqlite").exists()  # nothing ran
    one_error_line(cli(env, "demo", "--port", "8123", "--sandbox-port", "8123"))


def test_export_to_a_closed_pipe_or_a_file_and_bad_process_options(tmp_path: Path) -> None:
    from tests.integration.test_crm_hub import hb_csv, hb_row

    env = hub_env(tmp_path)
    vendor = json.loads(cli(env, "vendor", "create", "Piped Studio", "--json").stdout)["vendor_id"]
    export = tmp_path / "in.csv"
    export.write_bytes(hb_csv([hb_row(f"Guest{i:04d}", "Rivera", f"guest{i}@example.org") for i in range(3000)]))
    r = cli(env, "crm", "import", str(export), "--vendor", vendor, "--layout", "honeybook", "--quiet")
    assert r.returncode == 0, r.stderr

    # `| head -2`: the reader goes away; the command ends quietly
    p = subprocess.Popen(f"{sys.executable} -m wedsync.cli crm export --vendor {vendor} --layout honeybook | head -2",
                         shell=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shown, errors = p.communicate(timeout=120)
    assert len(shown.splitlines()) == 2 and errors.strip() == "", errors

    out_file = tmp_path / "out.csv"
    r = cli(env, "crm", "export", "--vendor", vendor, "--layout", "honeybook", "-o", str(out_file))
    assert r.returncode == 0, r.stderr
    assert f"wrote 3000 row(s) to {out_file}" in r.stderr
    assert len(out_file.read_text().splitlines()) == 3001

    for args, needle in ((("serve", "--workers", "0"), "--workers"), (("serve", "--workers", "-3"), "--workers"),
                         (("worker", "--executor-id", ""), "--executor-id")):
        assert needle in one_error_line(cli(env, *args, timeout=60))


def wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_a_clean_stop_leaves_no_write_ahead_log_and_backup_copies_a_live_home(tmp_path: Path) -> None:
    from tests.integration.test_crm_hub import hb_csv, hb_row

    env = hub_env(tmp_path)
    env.pop("WEDSYNC_VAULT_KEYS")  # the key file, which a backup must carry
    vendor = json.loads(cli(env, "vendor", "create", "Checkpoint Studio", "--json").stdout)["vendor_id"]
    export = tmp_path / "in.csv"
    export.write_bytes(hb_csv([hb_row(f"Guest{i:04d}", "Rivera", f"guest{i}@example.org") for i in range(2000)]))
    r = cli(env, "crm", "import", str(export), "--vendor", vendor, "--layout", "honeybook", "--quiet")
    assert r.returncode == 0, r.stderr
    assert wal_bytes(tmp_path / "wedsync.sqlite") == 0 and wal_bytes(tmp_path / "dbos.sqlite") == 0
    assert (tmp_path / "wedsync.sqlite").stat().st_size > 500_000  # the rows are in the database file

    port = free_port()
    serve = Proc(["serve", "--port", str(port)], env, tmp_path / "serve.log")
    try:
        from tests.e2e.test_durability import wait_api

        wait_api(f"http://127.0.0.1:{port}", serve)
        backup = tmp_path / "backup"
        r = cli(env, "backup", str(backup))  # while `serve` runs
        assert r.returncode == 0, r.stderr
        assert sorted(p.name for p in backup.iterdir()) == ["dbos.sqlite", "vault.keys", "wedsync.sqlite"]
        assert (backup / "vault.keys").read_text() == (tmp_path / "vault.keys").read_text()
        with sqlite3.connect(backup / "wedsync.sqlite") as db:
            assert db.execute("SELECT count(*) FROM clients").fetchone()[0] == 2000
        assert "must be a new or empty directory" in one_error_line(cli(env, "backup", str(backup)))
    finally:
        serve.stop()  # SIGTERM: a clean stop (uvicorn shuts down, then ends with the signal it was sent)
    assert "Traceback" not in serve.output(), serve.output()
    assert wal_bytes(tmp_path / "wedsync.sqlite") == 0 and wal_bytes(tmp_path / "dbos.sqlite") == 0
