"""``tuner --help`` with every command's whole summary (click cuts it at ~45 columns with "...")."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

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
            self._loaded = (*getattr(importlib.import_module(module), name), *self._extra)
        return self._loaded

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        self._loaded = tuple(value)
