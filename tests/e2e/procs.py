"""Helpers for end-to-end tests: real hub processes (workers, API) with their own environment."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wedsync.store.vault import KeyRing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hub_env(home: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    # COLUMNS and LINES are the test runner's terminal, not the command's: a pytest-xdist worker has COLUMNS=80 in
    # its environment, and Rich (the CLI's output) would cut a long message at 80 columns instead of the
    # pipe width a command run by hand gets (terminal.make_console)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEDSYNC_") and k not in ("COLUMNS", "LINES")}
    env.update({
        "WEDSYNC_HOME": str(home),
        "WEDSYNC_ALLOW_PRIVATE_URLS": "true",
        "WEDSYNC_VAULT_KEYS": base64.urlsafe_b64encode(KeyRing.generate_key()).decode(),
        "WEDSYNC_DBOS_LOG_LEVEL": "ERROR",
        "WEDSYNC_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    if database_url:
        env["WEDSYNC_DATABASE_URL"] = database_url
    env.update(extra)
    return env


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        self._fh = open(log, "ab")
        self.p = subprocess.Popen([sys.executable, "-m", "wedsync.cli", *args], env=env, stdout=self._fh,
                                  stderr=subprocess.STDOUT, start_new_session=True)

    def kill9(self) -> None:
        os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait(10)

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        self._fh.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def serve_app_in_thread(app: Any, port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve an ASGI app (lifespan on) over real loopback HTTP from a daemon thread."""
    import asyncio
    import threading

    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), 30, "the app server to start")
    if not server.started:
        raise RuntimeError("app server failed to start")

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=15)

    return f"http://127.0.0.1:{port}", stop
