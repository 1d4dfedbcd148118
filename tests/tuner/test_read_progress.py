"""Progress bars (search, pareto, studies, calibrate --all): the time left when stderr is a
terminal, plain lines now and then when it is a pipe or a file, nothing with --json (reads)."""

from __future__ import annotations

import io
import sys

from rich.progress import Progress, TimeRemainingColumn

from tuner import tables


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_stderr_when_only_stdout_is_redirected(monkeypatch) -> None:
    """`tuner search spec.yaml > out.txt` on a terminal: the bar is on stderr (and transient), so
    it is drawn; it was not, and the search ran silent."""
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", _Terminal())
    made = []

    class Spy(Progress):
        def __init__(self, *columns, **kwargs) -> None:
            made.append(columns)
            super().__init__(*columns, **kwargs)

    monkeypatch.setattr(tables, "Progress", Spy)
    with tables.progress(what="reading") as update:
        update(1, 3)
    assert len(made) == 1


def test_plain_lines_when_stderr_is_not_a_terminal(monkeypatch) -> None:
    """A pipe or a log gets no bar (its control codes) but a line at most every
    PLAIN_INTERVAL_S; none for work done sooner."""
    from tuner import progress_lines

    monkeypatch.setattr(sys, "stdout", _Terminal())
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    made = []
    monkeypatch.setattr(tables, "Progress", lambda *a, **k: made.append(a))
    with tables.progress(what="reading") as update:
        update(1, 3)
    assert made == [] and err.getvalue() == ""
    monkeypatch.setattr(progress_lines, "PLAIN_INTERVAL_S", 0.0)
    with tables.progress(what="reading") as update:
        update(2, 3)
    assert made == [] and err.getvalue().startswith("reading: 2 of 3 (")


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
