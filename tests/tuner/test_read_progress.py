"""Progress bars (search, pareto, studies, calibrate --all): the time left on a terminal, nothing
in a pipe or with --json."""

from __future__ import annotations

import io
import sys

from rich.progress import Progress, TimeRemainingColumn

from tuner import tables


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_when_stdout_is_not_a_terminal(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", _Terminal())
    made = []
    monkeypatch.setattr(tables, "Progress", lambda *a, **k: made.append(a))
    with tables.progress(what="reading") as update:
        update(1, 3)
    assert made == []


def test_no_bar_with_json(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdout", _Terminal())
    monkeypatch.setattr(sys, "stderr", _Terminal())
    made = []
    monkeypatch.setattr(tables, "Progress", lambda *a, **k: made.append(a))
    with tables.progress(disable=True) as update:
        update(1, 3)
    assert made == []


def test_a_terminal_gets_a_bar_with_the_time_left(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdout", _Terminal())
    monkeypatch.setattr(sys, "stderr", _Terminal())
    bars: list[Progress] = []

    def spy(*columns, **kwargs) -> Progress:
        bars.append(Progress(*columns, **kwargs))
        return bars[-1]

    monkeypatch.setattr(tables, "Progress", spy)
    with tables.progress(what="reading the front") as update:
        update(2, 3)
    assert len(bars) == 1
    assert any(isinstance(c, TimeRemainingColumn) for c in bars[0].columns)
    assert bars[0].tasks[0].completed == 2 and bars[0].tasks[0].total == 3
