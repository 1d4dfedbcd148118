"""``tuner --help`` with every command's whole summary (click cuts it at ~45 columns with "..."),
and what lets the command line import a module only when a command needs it: option choices read
on first use (:class:`LazyChoice`), signals held while a command's imports load
(:func:`imports_loading`)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import click


def command_summary(command: click.Command) -> str:
    """A command's ``short_help``, else the first paragraph of its help, whole (never "...")."""
    if command.short_help:
        return " ".join(command.short_help.split())
    paragraph = (command.help or "").strip().split("\n\n", 1)[0]
    return " ".join(w for w in paragraph.split() if w != "\b")


class FullSummaryGroup(click.Group):
    """A group listing each command with its whole summary, wrapped to the terminal width."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command_summary(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class LazyChoice(click.Choice):
    """A ``click.Choice`` whose choices are a module's constant, read the first time the option is
    used (a value parsed, a default checked, the command's help shown), so that declaring the
    command does not import the module (``cost_models.calibration`` brings pydantic, PyYAML and
    the efficiency model). ``source`` is ``"module:NAME"``; ``extra`` choices follow its own."""

    def __init__(self, source: str, *extra: str, case_sensitive: bool = True) -> None:
        # click.Choice.__init__ would read the choices now: set its two attributes ourselves.
        self._source, self._extra = source, extra
        self._loaded: tuple[str, ...] | None = None
        self.case_sensitive = case_sensitive

    @property
    def choices(self) -> tuple[str, ...]:
        if self._loaded is None:
            module, _, name = self._source.partition(":")
            with imports_loading():
                self._loaded = (*getattr(importlib.import_module(module), name), *self._extra)
        return self._loaded

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        self._loaded = tuple(value)


#: What a command says when a signal came before it started (nothing was read or written yet).
INTERRUPTED_BEFORE_START = "interrupted before the command started: nothing was written; run the same command again"
INTERRUPTED_BEFORE_FINISH = "interrupted before the command finished; run the same command again"


@contextmanager
def imports_loading() -> Iterator[None]:
    """While a command's modules load (the cost model, Optuna: a second and more), SIGINT and
    SIGTERM are only recorded, as while ``tuner.cli`` itself loads
    (:func:`tuner.signals.exit_quietly_on_signals`): raised inside an import they could land in a
    garbage-collection callback that ignores them. A signal that came is acted on after the
    imports, where nothing else runs: one line and exit 130 / 143."""
    from tuner import signals

    before, pending = signals._started, signals.EARLY()
    signals._started = False
    try:
        yield
    finally:
        signals._started = before
    if before and not pending and signals.EARLY():  # it came while these modules loaded
        click.echo(INTERRUPTED_BEFORE_START, err=True)
        raise SystemExit(signals.EARLY.exit_code)
