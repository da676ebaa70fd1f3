"""The operator CLI as a user runs it: vendor, connect, sync with progress, vault rotation, sandbox, demo."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.procs import Proc, free_port, hub_env, wait_for


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wedsync.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def sandbox() -> Iterator[str]:
    from wedsync.sandbox.server import start_sandbox_in_thread

    url, stop = start_sandbox_in_thread(port=0, contacts=340, jobs=45)
    try:
        yield url
    finally:
        stop()


def test_operator_flow(tmp_path: Path, sandbox: str) -> None:
    env = hub_env(tmp_path)
    env.pop("WEDSYNC_VAULT_KEYS")  # use the key file, so `vault rotate` can rotate it
    r = cli(env, "migrate")
    assert r.returncode == 0, r.stderr
    r = cli(env, "vendor", "create", "Zoë's Flowers & Co", "--timezone", "Europe/Dublin", "--json")
    assert r.returncode == 0, r.stderr
    vendor = json.loads(r.stdout)
    assert vendor["api_key"].startswith("wsk_") and vendor["name"] == "Zoë's Flowers & Co"

    r = cli(env, "connect", "vsco-workspace", "--vendor", vendor["vendor_id"], "--base-url",
            f"{sandbox}/vsco-workspace/api/v2", "--credential", "api_key=sandbox-vsco-key", "--sync-every", "90",
            "--json")
    assert r.returncode == 0, r.stderr
    conn = json.loads(r.stdout)
    assert "sandbox-vsco-key" not in r.stdout and conn["scheduled_every_minutes"] == 90

    r = cli(env, "sync", conn["connection_id"], "--vendor", vendor["vendor_id"], "--mode", "full")
    assert r.returncode == 0, r.stderr + r.stdout
    summary = json.loads(r.stdout)
    assert summary["status"] == "succeeded" and summary["created"] == 340 + 45 + 2 * 45  # + job-contact links
    assert "contacts" in r.stderr  # the progress bar names the streams

    keyfile = tmp_path / "vault.keys"
    before = keyfile.read_text()
    r = cli(env, "vault", "rotate", "--prune")
    assert r.returncode == 0, r.stderr
    assert "re-encrypted 1 credential" in r.stdout and keyfile.read_text() != before
    r = cli(env, "sync", conn["connection_id"], "--vendor", vendor["vendor_id"], "--mode", "incremental")
    assert r.returncode == 0, r.stderr + r.stdout  # credentials still decrypt after rotation

    # bad input: clear messages, non-zero exit, no traceback
    for args, needle in (
        (("connect", "myspace", "--vendor", vendor["vendor_id"]), "unknown provider"),
        (("connect", "vsco-workspace", "--vendor", vendor["vendor_id"], "--credential", "oops"), "KEY=VALUE"),
        (("connect", "vsco-workspace", "--vendor", "nobody", "--credential", "api_key=x"), "vendor not found"),
        (("vendor", "create", "x", "--timezone", "Moon/Base"), "unknown time zone"),
        (("connect", "vsco-workspace", "--vendor", vendor["vendor_id"], "--credential", "api_key=x",
          "--sync-every", "-1"), "sync_interval_minutes must be between"),
        (("connect", "honeybook", "--vendor", vendor["vendor_id"], "--sync-every", "30"), "nothing to schedule"),
        (("payments", "balances", "--vendor", "nobody"), "vendor not found"),
        (("crm", "merges", "--vendor", "nobody"), "vendor not found"),
        (("crm", "export", "--vendor", "nobody", "--layout", "honeybook"), "vendor not found"),
        (("key", "create", "--operator", "--vendor", vendor["vendor_id"]), "not both or neither"),
        (("key", "create"), "not both or neither"),
    ):
        r = cli(env, *args)
        assert r.returncode != 0 and needle in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    with sqlite3.connect(tmp_path / "wedsync.sqlite") as db:  # the refused connects left no connection behind
        assert db.execute("SELECT provider FROM connections").fetchall() == [("vsco-workspace",)]

    # a provider whose hooks the vendor's own Zap sends: the secret and the address to paste, shown once
    r = cli(env, "connect", "honeybook", "--vendor", vendor["vendor_id"], "--json")
    assert r.returncode == 0, r.stderr
    hb = json.loads(r.stdout)
    assert hb["webhook_url"].endswith(f"/webhooks/honeybook/{hb['connection_id']}")
    assert hb["webhook_url_with_token"] == f"{hb['webhook_url']}?token={hb['webhook_secret']}"


def test_sandbox_command_serves_vsco(tmp_path: Path) -> None:
    port = free_port()
    p = Proc(["sandbox", "--port", str(port), "--contacts", "30"], hub_env(tmp_path), tmp_path / "sb.log")
    try:
        def ok() -> bool:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/vsco-workspace/api/v2/address-book",
                              headers={"X-API-KEY": "sandbox-vsco-key"}, timeout=2)
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and r.json()["meta"]["totalItems"] == 30
        wait_for(ok, 30, "the sandbox")
    finally:
        p.stop()


def test_demo_exit(tmp_path: Path) -> None:
    env = hub_env(tmp_path)
    r = cli(env, "demo", "--exit", "--contacts", "250", "--port", str(free_port()), "--sandbox-port",
            str(free_port()), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Sync runs" in r.stdout and "succeeded" in r.stdout
    assert "clients" in r.stdout and "weddings" in r.stdout
    assert "next scheduled incremental pull: " in r.stdout and "(every 60 min" in r.stdout


def _interrupt_when(p: subprocess.Popen[str], ready: Any, what: str) -> tuple[str, str]:
    """Ctrl-C (SIGINT) to the command once ``ready()`` holds; its stdout and stderr once it ended."""
    try:
        wait_for(ready, 60, what)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    return out, err


def _dbos_status(home: Path, workflow_id: str) -> str:
    with sqlite3.connect(home / "dbos.sqlite") as db:
        row = db.execute("SELECT status FROM workflow_status WHERE workflow_uuid = ?", (workflow_id,)).fetchone()
    return str(row[0])


def test_ctrl_c_during_sync_cancels_the_run_and_frees_the_connection(tmp_path: Path) -> None:
    """Ctrl-C during ``wedsync sync``: one line naming the run, exit 130, no traceback; the run is recorded as
    interrupted (failed) and its workflow cancelled, so the next sync is not refused as ``sync_in_progress`` (the
    run used to stay ``running``, and its workflow was resumed by the next command on this home)."""
    from wedsync.sandbox.server import start_sandbox_in_thread

    url, stop = start_sandbox_in_thread(port=0, contacts=20_000, jobs=10)
    try:
        env = hub_env(tmp_path)
        vendor = json.loads(cli(env, "vendor", "create", "Solo Sync", "--json").stdout)["vendor_id"]
        r = cli(env, "connect", "vsco-workspace", "--vendor", vendor, "--base-url", f"{url}/vsco-workspace/api/v2",
                "--credential", "api_key=sandbox-vsco-key", "--json")
        conn = json.loads(r.stdout)["connection_id"]
        db_path = tmp_path / "wedsync.sqlite"

        def pages_written() -> bool:
            with sqlite3.connect(db_path) as db:
                return bool(db.execute("SELECT count(*) FROM sync_run_pages").fetchone()[0] >= 3)

        p = subprocess.Popen([sys.executable, "-m", "wedsync.cli", "sync", conn, "--vendor", vendor, "--mode", "full"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
        out, err = _interrupt_when(p, pages_written, "the sync's first pages")
        assert p.returncode == 130, (p.returncode, out, err)
        assert "Traceback" not in err + out and out == ""
        with sqlite3.connect(db_path) as db:
            (run_id, status, detail), = db.execute("SELECT id, status, error_detail FROM sync_runs").fetchall()
        lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
        assert len(lines) == 1 and run_id in lines[0] and "cancelled" in lines[0], err
        assert status == "failed" and detail.startswith("interrupted"), (status, detail)
        assert _dbos_status(tmp_path, run_id) == "CANCELLED"

        r = cli(env, "sync", conn, "--vendor", vendor, "--mode", "incremental", timeout=300)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["status"] == "succeeded"
        with sqlite3.connect(db_path) as db:  # the interrupted run stayed as it was: nothing resumed it
            assert db.execute("SELECT status FROM sync_runs WHERE id = ?", (run_id,)).fetchone() == ("failed",)
    finally:
        stop()


def test_bad_paths_limits_and_ports_are_one_line_errors(tmp_path: Path) -> None:
    """An unwritable export path, a WEDSYNC_HOME that is a file, a --limit outside 1..500 and a port outside
    1..65535: ``error: ...`` on one line and exit 2, never a traceback, an answer for another limit, or a server
    on another port than the one asked for."""
    env = hub_env(tmp_path / "home")
    vendor = json.loads(cli(env, "vendor", "create", "Paths", "--json").stdout)["vendor_id"]
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    cases: list[tuple[dict[str, str], tuple[str, ...], str]] = [
        (env, ("crm", "export", "--vendor", vendor, "--layout", "honeybook", "-o", str(tmp_path / "no" / "x.csv")),
         "No such file or directory"),
        (env, ("crm", "export", "--vendor", vendor, "--layout", "honeybook", "-o", str(tmp_path)), "Is a directory"),
        ({**env, "WEDSYNC_HOME": str(a_file)}, ("vendor", "list"), "not a directory"),
        ({**env, "WEDSYNC_HOME": str(a_file / "sub")}, ("vendor", "list"), "cannot be created"),
        (env, ("crm", "merges", "--vendor", vendor, "--limit", "-3"), "--limit must be between 1 and 500"),
        (env, ("crm", "merges", "--vendor", vendor, "--limit", "0"), "--limit must be between 1 and 500"),
        (env, ("serve", "--port", "99999"), "--port must be between 1 and 65535"),
        (env, ("sandbox", "--port", "0"), "--port must be between 1 and 65535"),
        (env, ("demo", "--exit", "--sandbox-port", "70000"), "--sandbox-port must be between 1 and 65535"),
    ]
    for case_env, args, needle in cases:
        r = cli(case_env, *args, timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.returncode, r.stderr)
        assert r.stderr.startswith("error: ") and needle in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
        assert r.stdout == "", (args, r.stdout)
    r = cli(env, "crm", "merges", "--vendor", vendor, "--limit", "500")
    assert r.returncode == 0 and json.loads(r.stdout)["latest"] == [], r.stderr
