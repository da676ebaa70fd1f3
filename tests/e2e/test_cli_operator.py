"""The CLI as an operator meets it on a bad day: broken settings and databases, busy ports, closed pipes, a hub
already serving the same home (its workflows are its own)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.e2e.procs import hub_env


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
