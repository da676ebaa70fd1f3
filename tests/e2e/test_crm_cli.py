"""``wedsync crm`` as a user runs it: a HoneyBook export imported with a progress bar and a bad-row report,
bad input exits 2, and the unified clients exported in another product's layout."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.e2e.procs import hub_env, wait_for
from tests.integration.test_crm_hub import hb_csv, hb_row


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wedsync.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_crm_import_and_export(tmp_path: Path) -> None:
    env = hub_env(tmp_path)
    assert cli(env, "migrate").returncode == 0
    r = cli(env, "vendor", "create", "Golden Hour Photography", "--json")
    assert r.returncode == 0, r.stderr
    vendor = json.loads(r.stdout)["vendor_id"]
    rows = [hb_row(f"Guest{i:03d}", "Rivera", f"guest{i}@example.org", "", "Wedding",
                   f"10/{1 + i % 28:02d}/{2027 + i // 28}") for i in range(120)]
    rows.insert(50, ["", "", "not-an-email", "", "", "", "", "", "", "", "", ""])  # nobody to import (line 52)
    rows.append(hb_row("Guest007", "Rivera", "GUEST7@example.org"))  # the same person again
    export = tmp_path / "honeybook.csv"
    export.write_bytes(hb_csv(rows))

    r = cli(env, "crm", "import", str(export), "--vendor", vendor, "--layout", "honeybook", "--chunk-size", "25")
    assert r.returncode == 0, r.stderr + r.stdout
    job = json.loads(r.stdout)
    assert job["status"] == "succeeded" and job["good_rows"] == 121 and job["bad_rows"] == 1
    assert job["merged"] == 0 and job["updated"] >= 0  # the repeated row is the same source record
    assert {e["line"] for e in job["first_errors"]} == {52}
    assert "import honeybook" in r.stderr  # the progress bar

    r = cli(env, "crm", "import", str(export), "--vendor", vendor, "--layout", "myspace")
    assert r.returncode == 2 and "unknown_layout" in r.stderr
    r = cli(env, "crm", "import", str(tmp_path / "missing.csv"), "--vendor", vendor, "--layout", "honeybook")
    assert r.returncode == 2

    r = cli(env, "crm", "export", "--vendor", vendor, "--layout", "iris-works")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 + 120


def test_ctrl_c_during_an_import_cancels_the_job(tmp_path: Path) -> None:
    """Ctrl-C during ``wedsync crm import``: one line with the job and what was kept, exit 130, no traceback; the
    job is recorded as interrupted (failed) with its imported chunks and its workflow cancelled (it used to stay
    ``running``, resumed behind the user's back by the next command on this home). Importing again finishes it."""
    env = hub_env(tmp_path)
    vendor = json.loads(cli(env, "vendor", "create", "Big Export", "--json").stdout)["vendor_id"]
    rows = [hb_row(f"Guest{i:05d}", "Rivera", f"guest{i}@example.org", "", "Wedding") for i in range(20_000)]
    export = tmp_path / "honeybook.csv"
    export.write_bytes(hb_csv(rows))
    db_path = tmp_path / "wedsync.sqlite"

    def chunks_done() -> bool:
        try:
            with sqlite3.connect(db_path) as db:
                return bool(db.execute("SELECT count(*) FROM crm_import_chunks").fetchone()[0] >= 2)
        except sqlite3.OperationalError:  # the table is not there yet
            return False

    p = subprocess.Popen([sys.executable, "-m", "wedsync.cli", "crm", "import", str(export), "--vendor", vendor,
                          "--layout", "honeybook", "--chunk-size", "200"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        wait_for(chunks_done, 60, "the import's first chunks")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (p.returncode, out, err)
    assert "Traceback" not in err + out and out == ""
    with sqlite3.connect(db_path) as db:
        (job_id, status, detail), = db.execute("SELECT id, status, error_detail FROM crm_import_jobs").fetchall()
        kept = db.execute("SELECT count(*) FROM crm_import_chunks").fetchone()[0]
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and job_id in lines[0] and "cancelled" in lines[0], err
    assert status == "failed" and detail.startswith("interrupted") and 2 <= kept < 100, (status, detail, kept)
    with sqlite3.connect(tmp_path / "dbos.sqlite") as db:
        assert db.execute("SELECT status FROM workflow_status WHERE workflow_uuid = ?",
                          (job_id,)).fetchone() == ("CANCELLED",)

    r = cli(env, "crm", "import", str(export), "--vendor", vendor, "--layout", "honeybook", "--chunk-size", "2000",
            "--quiet", timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["good_rows"] == 20_000
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM clients").fetchone()[0] == 20_000  # nothing added twice
        assert db.execute("SELECT status FROM crm_import_jobs WHERE id = ?", (job_id,)).fetchone() == ("failed",)
