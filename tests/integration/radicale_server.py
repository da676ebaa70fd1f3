"""A real Radicale CalDAV server for tests: a subprocess on a free loopback port, temp storage, htpasswd auth.

Use the ``radicale`` fixture (module scope) or :func:`start_radicale` directly; :meth:`RadicaleServer.make_calendar`
creates a calendar collection with MKCALENDAR and returns its path (the connector's ``calendar_id``).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.procs import free_port

USER = "florist"
PASSWORD = "radicale-app-password"

_MKCALENDAR = """<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:set><D:prop><D:displayname>{name}</D:displayname>
  <C:supported-calendar-component-set><C:comp name="VEVENT"/></C:supported-calendar-component-set>
  </D:prop></D:set>
</C:mkcalendar>"""


@dataclass
class RadicaleServer:
    url: str
    user: str
    password: str
    process: subprocess.Popen[bytes]
    folder: Path

    def make_calendar(self, name: str | None = None) -> str:
        """A new calendar collection of the user; returns its path, e.g. ``/florist/cal-1a2b/``."""
        slug = name or f"cal-{secrets.token_hex(4)}"
        path = f"/{self.user}/{slug}/"
        response = httpx.request("MKCALENDAR", self.url + path, auth=(self.user, self.password),
                                 content=_MKCALENDAR.format(name=slug).encode(),
                                 headers={"Content-Type": "application/xml"}, timeout=10)
        if response.status_code != 201:
            raise RuntimeError(f"MKCALENDAR {path} -> {response.status_code}: {response.text[:200]}")
        return path

    def put_raw(self, path: str, ical: str) -> httpx.Response:
        """Write a resource as another CalDAV client (the vendor's iPhone) would."""
        return httpx.put(self.url + path, auth=(self.user, self.password), content=ical.encode(),
                         headers={"Content-Type": "text/calendar; charset=utf-8"}, timeout=10)

    def delete_raw(self, path: str) -> httpx.Response:
        return httpx.delete(self.url + path, auth=(self.user, self.password), timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.process.kill()
            self.process.wait(timeout=10)


def start_radicale(folder: Path, *, user: str = USER, password: str = PASSWORD) -> RadicaleServer:
    folder.mkdir(parents=True, exist_ok=True)
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(f"{user}:{password}\n")
    port = free_port()
    log = (folder / "radicale.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--server-hosts", f"127.0.0.1:{port}",
         "--storage-filesystem-folder", str(folder / "collections"),
         "--auth-type", "htpasswd", "--auth-htpasswd-filename", str(htpasswd),
         "--auth-htpasswd-encryption", "plain", "--auth-delay", "0", "--logging-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/.web/", timeout=1)
            break
        except httpx.HTTPError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("radicale did not start: " + (folder / "radicale.log").read_text()[-500:]
                                   ) from exc
            time.sleep(0.05)
    return RadicaleServer(url, user, password, process, folder)


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadicaleServer]:
    server = start_radicale(tmp_path_factory.mktemp("radicale"))
    try:
        yield server
    finally:
        server.stop()
