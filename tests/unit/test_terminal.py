"""Consoles written to a pipe or a CI log do not cut table cells at Rich's assumed 80 columns."""

from __future__ import annotations

import io

import pytest
from rich.table import Table

from wedsync.terminal import DEFAULT_PIPE_WIDTH, make_console


def _render(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[int, str]:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("WEDSYNC_CONSOLE_WIDTH", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    buf = io.StringIO()
    c = make_console(file=buf)
    t = Table()
    for name in ("payment", "status", "gateway", "amount", "caterer", "platform", "planner", "split", "note"):
        t.add_column(name)
    t.add_row("deposit", "succeeded", "stripe", "$2,520.00", "$2,242.80", "$201.60", "$75.60", "native",
              "destination charge with application fee")
    c.print(t)
    return c.width, buf.getvalue()


def test_a_pipe_gets_a_wide_console_and_whole_amounts(monkeypatch: pytest.MonkeyPatch) -> None:
    width, text = _render(monkeypatch)
    assert width == DEFAULT_PIPE_WIDTH and "$2,520.00" in text and "…" not in text


def test_columns_and_the_setting_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _render(monkeypatch, WEDSYNC_CONSOLE_WIDTH="200")[0] == 200
    assert _render(monkeypatch, WEDSYNC_CONSOLE_WIDTH="7")[0] == DEFAULT_PIPE_WIDTH  # nonsense: the default
    width, text = _render(monkeypatch, COLUMNS="60")  # the user's own choice wins, cuts and all
    assert width == 60 and "…" in text
