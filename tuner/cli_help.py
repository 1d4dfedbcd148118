"""``tuner --help`` with every command's whole summary (click cuts it at ~45 columns with "..."),
and what lets the command line import a module only when a command needs it: option choices read
on first use (:class:`LazyChoice`), signals held while a command's imports load
(:func:`imports_loading`)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

import click


def command_summary(command: click.Command) -> str:
    """A command's ``short_help``, else the first paragraph of its help, whole (never "...")."""
    if command.short_help:
        return " ".join(command.short_help.split())
    paragraph = (command.help or "").strip().split("\n\n", 1)[0]
    return " ".join(w for w in paragraph.split() if w != "\b")


class OnceOptionCommand(click.Command):
    """A command refusing an option given twice that takes one value: click keeps the last, so
    `--max-ttft-s 1 ... --max-ttft-s 100000` planned for 100,000 s and `--flash-attention ...
    --no-flash-attention` ran without it, the other value silently dropped."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:
            # The parse alone (no callbacks, no conversions): the order lists a parameter once
            # for each time it was given. Its errors are the ones click's own parse raises next.
            _, _, order = self.make_parser(ctx).parse_args(args=list(args))
            seen: set[str | None] = set()
            for param in order:
                # A plain flag repeated (--json --json) sets the same value twice: harmless.
                plain_flag = isinstance(param, click.Option) and param.is_flag and not param.secondary_opts
                repeatable = not isinstance(param, click.Option) or param.multiple or param.count or plain_flag
                if not repeatable and param.name in seen:
                    from cost_models.errors import InvalidInputError

                    spellings = "/".join((*param.opts, *param.secondary_opts))
                    raise InvalidInputError(
                        spellings, "given more than once (only the last would count)", "give it once"
                    )
                seen.add(param.name)
        return super().parse_args(ctx, args)


class FullSummaryGroup(click.Group):
    """A group listing each command with its whole summary, wrapped to the terminal width."""

    command_class = OnceOptionCommand

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


class WholeNumber(click.IntRange):
    """A whole number between bounds, refused in the project's one line naming the option, the
    value and the fix ("--repeats: 0 is less than 1; pass a whole number of 1 or more"). click's
    own IntRange said "0 is not in the range x>=1" and, for `--repeats abc`, "'abc' is not a valid
    integer range" (no range was asked for). ``fix``: what to pass instead [the bounds, spelled out].
    """

    name = "integer"  # the metavar in --help (INTEGER)
    #: What the refusal calls a value that is no number at all.
    what = "whole number"

    def __init__(self, min: int | None = None, max: int | None = None, *, fix: str | None = None) -> None:
        super().__init__(min, max)
        if fix is None:
            if max is None:
                fix = f"pass a {self.what} of {min} or more"
            elif min is None:
                fix = f"pass a {self.what} of {max} or less"
            else:
                fix = f"pass a {self.what} from {min} to {max}"
        self.fix = fix

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                self._refuse(f"{value!r} is not a valid {self.what}", param, ctx)
        if self.min is not None and number < self.min:
            self._refuse(f"{number} is less than {self.min}", param, ctx)
        if self.max is not None and number > self.max:
            self._refuse(f"{number} is more than {self.max}", param, ctx)
        return number

    def _refuse(self, problem: str, param: click.Parameter | None, ctx: click.Context | None) -> NoReturn:
        # A UsageError's message is printed as it is (tuner.cli.main), exit code 2; a BadParameter
        # would wrap it in "Invalid value for '--repeats': ...".
        raise click.UsageError(f"{option_name(param)}: {problem}; {self.fix}", ctx)


def option_name(param: click.Parameter | None) -> str:
    """How the user wrote a parameter: an option's long flag (``--repeats``), an argument's metavar."""
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    if param is not None:
        return param.human_readable_name
    return "value"


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
