"""Rich consoles for the CLI and the demo. Written to a terminal they take its width; written to a file, a pipe
or a CI log (no terminal: Rich would assume 80 columns and cut table cells such as amounts to "$2,520…") they
take ``WEDSYNC_CONSOLE_WIDTH`` (default 160) unless ``COLUMNS`` says otherwise."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

DEFAULT_PIPE_WIDTH = 160


def make_console(**kwargs: Any) -> Console:
    c = Console(**kwargs)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        raw = os.environ.get("WEDSYNC_CONSOLE_WIDTH", "")
        c.width = int(raw) if raw.isdigit() and int(raw) >= 40 else DEFAULT_PIPE_WIDTH
    return c
