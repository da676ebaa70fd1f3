"""``wedsync crm`` as a user runs it: a HoneyBook export imported with a progress bar and a bad-row report,
bad input exits 2, and the unified clients exported in another product's layout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.procs import hub_env
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
