"""Running the sandbox over real HTTP: in the foreground (CLI) or in a background thread (tests, demo)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from wedsync.sandbox.app import create_sandbox_app

__all__ = ["run_sandbox", "start_sandbox_in_thread"]


def run_sandbox(host: str = "127.0.0.1", port: int = 8100, *, seed: int = 42, contacts: int = 200,
                jobs: int = 80, log_level: str = "warning") -> None:
    """Serve every emulator until interrupted; VSCO Workspace at ``http://host:port/vsco-workspace/api/v2``."""
    app = create_sandbox_app(seed=seed, vsco_contacts=contacts, vsco_jobs=jobs)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


def start_sandbox_in_thread(port: int = 0, *, host: str = "127.0.0.1", app: FastAPI | None = None,
                            seed: int = 42, contacts: int = 200, jobs: int = 80,
                            log_level: str = "warning", startup_timeout: float = 30.0,
                            ) -> tuple[str, Callable[[], None]]:
    """Start uvicorn in a daemon thread; returns ``("http://host:port", stop)`` with the bound port.

    ``port=0`` lets the OS choose a free port. ``stop()`` shuts the server down and joins the thread.
    """
    app = app or create_sandbox_app(seed=seed, vsco_contacts=contacts, vsco_jobs=jobs)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    # uvicorn only installs signal handlers on the main thread, so serving from this one is safe
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)

    thread = threading.Thread(target=serve, name=f"sandbox-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if failure or not thread.is_alive():
            raise RuntimeError("sandbox server failed to start") from (failure[0] if failure else None)
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("sandbox server did not start in time")
        time.sleep(0.01)
    bound_port = _bound_port(server) or port

    def stop() -> None:
        # without force_exit uvicorn waits for every request in flight, and an emulator answering a fault
        # (a latency or timeout injection) the client gave up on holds it up to the join's 10 s
        server.should_exit = server.force_exit = True
        thread.join(timeout=10)

    return f"http://{host}:{bound_port}", stop


def _bound_port(server: uvicorn.Server) -> int | None:
    servers: list[Any] = getattr(server, "servers", [])
    for srv in servers:
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    return None
