"""Rich consoles for the CLI and the demo. Written to a terminal they take its width; written to a file, a pipe
or a CI log (no terminal: Rich would assume 80 columns and cut table cells such as amounts to "$2,520…") they
take ``WEDSYNC_CONSOLE_WIDTH`` (default 160) unless ``COLUMNS`` says otherwise."""

from __future__ import annotations

import os
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
