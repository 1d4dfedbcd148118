"""``tuner --help`` with every command's whole summary (click cuts it at ~45 columns with "...")."""

from __future__ import annotations

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
