"""Rich consoles for the CLI and the demo. Written to a terminal they take its width; written to a file, a pipe
or a CI log (no terminal: Rich would assume 80 columns and cut table cells such as amounts to "$2,520…") they
take ``WEDSYNC_CONSOLE_WIDTH`` (default 160) unless ``COLUMNS`` says otherwise."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

DEFAULT_PIPE_WIDTH = 160


def make_console(**kwargs: Any) -> Console:
    c = Console(**kwargs)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        raw = os.environ.get("WEDSYNC_CONSOLE_WIDTH", "")
        c.width = int(raw) if raw.isdigit() and int(raw) >= 40 else DEFAULT_PIPE_WIDTH
    return c


def fail(message: str, code: int = 2) -> NoReturn:
    """End a CLI command with ``error: message`` on stderr and exit status ``code`` (2: bad input)."""
    make_console(stderr=True).print(f"[red]error:[/red] {message}", soft_wrap=True)  # one line, never cut
    raise typer.Exit(code)


def in_range(value: int, low: int, high: int, option: str) -> int:
    """``value`` given for ``option`` when ``low <= value <= high``; else a one-line error and exit status 2."""
    if not low <= value <= high:
        fail(f"{option} must be between {low} and {high}, got {value}")
    return value


def port_available(port: int, option: str, host: str = "127.0.0.1") -> int:
    """``port`` when a server can listen on it at ``host``; else a one-line error and exit status 2 (the demo
    used to find a busy port only once it had started everything: three chained tracebacks for the sandbox's,
    and for the API's a whole demo run whose printed URLs were another process's)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError as exc:
            fail(f"{option} {port}: {host}:{port} is not available ({exc.strerror or exc}); "
                 f"stop what listens there or choose another port")
    return port


def check_home(home: Path) -> None:
    """The data directory, created if need be; a one-line error (exit 2) when it cannot be one: a file, under a
    file, somewhere this user cannot write (the hub's own ``mkdir`` failed with a traceback)."""
    if home.is_dir():
        return
    if home.exists():
        fail(f"WEDSYNC_HOME is {home}, which is not a directory")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"WEDSYNC_HOME {home} cannot be created: {exc.strerror or exc}")


def setup_error_line(exc: BaseException) -> str | None:
    """One line for a configuration or database problem met while a command starts or runs (a bad
    ``WEDSYNC_*`` value, a database that cannot be reached or opened, a schema from a newer release, unreadable
    vault keys), or ``None`` for anything else (a bug keeps its traceback). Never carries a password: a database
    URL is shown masked, and the values of settings are not repeated."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from wedsync.errors import WedsyncError

    if isinstance(exc, ValidationError):  # Settings(): which variable, and what it must be
        problems = [f"WEDSYNC_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg'].removeprefix('Value error, ')}"
                    for e in exc.errors()]
        return "invalid setting " + "; ".join(problems)
    if isinstance(exc, SettingsError):  # a JSON setting that does not parse
        match = re.search(r'field "(\w+)"', str(exc))
        name = f"WEDSYNC_{match.group(1).upper()}" if match else "a WEDSYNC_ setting"
        return f"invalid setting {name}: not valid JSON"
    if isinstance(exc, WedsyncError):  # e.g. vault keys that do not decode
        return f"{exc.message} ({exc.code})"
    if isinstance(exc, DBAPIError | ArgumentError | NoSuchModuleError):
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        return f"cannot use the database {_masked_database_url()}: {_without_passwords(reason)}"
    from alembic.util.exc import CommandError

    if isinstance(exc, CommandError):
        found = re.search(r"Can't locate revision identified by '([^']+)'", str(exc))
        if found:
            return (f"the database {_masked_database_url()} has schema revision {found.group(1)}, which this version "
                    "of wedsync does not know (a newer release migrated it): run that release, or restore a backup")
        return f"cannot migrate the database {_masked_database_url()}: {_without_passwords(str(exc))}"
    if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):  # e.g. WEDSYNC_HOME not writable
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return None


def _masked_database_url() -> str:
    from sqlalchemy.engine import make_url

    from wedsync.config import get_settings

    try:
        return make_url(get_settings().db_url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL is not repeated: it may hold a password
        return "(WEDSYNC_DATABASE_URL)"


def _without_passwords(text: str) -> str:
    """``text`` without the password of the configured database URLs (drivers seldom echo one; never print it)."""
    from sqlalchemy.engine import make_url

    from wedsync.config import get_settings

    try:
        settings = get_settings()
        urls = [settings.db_url, settings.dbos_url]
    except Exception:
        return text
    for url in urls:
        try:
            password = make_url(url).password
        except Exception:  # unparseable: the message cannot hold its password either
            password = None
        if password:
            text = text.replace(str(password), "***")
    return text


def interrupted(message: str) -> NoReturn:
    """End a command stopped with Ctrl-C: ``interrupted: message`` (what became of its work) on stderr, one line,
    and exit status 130 (128 + SIGINT), as a shell reports it."""
    make_console(stderr=True).print(f"[yellow]interrupted:[/yellow] {message}", soft_wrap=True)
    raise typer.Exit(130)


def known_vendor(hub: Any, vendor_id: str) -> None:
    """A clear CLI error for a vendor id that does not exist, instead of an empty answer."""
    from wedsync.errors import WedsyncError

    try:
        hub.tenancy.get_vendor(vendor_id)
    except WedsyncError as exc:
        fail(f"{exc.message} ({exc.code})")
