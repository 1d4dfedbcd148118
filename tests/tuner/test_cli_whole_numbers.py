"""Every bounded whole-number option of the CLI is refused in the project's one line: the option,
the value, and what to pass instead, exit 2. click's IntRange said "0 is not in the range x>=1" and,
for a word, "'abc' is not a valid integer range" (no range was asked for), naming no fix."""

from __future__ import annotations

import re

import click
import pytest

from cli_helpers import assert_one_error_line, run_cli
from tuner.cli import cli

# (command line up to the option, the option, a value below its bounds, the fix's bounds). The
# bounds are the options' own: a count of timed samples needs one (--repeats 1), warm-up calls may
# be none, a TCP port is 16 bits (RFC 793: 0 to 65535), a trial number is the database's 64-bit
# signed integer (0 to 2**63 - 1 = 9223372036854775807).
BOUNDED = [
    (("measure", "--out", "unused-dir"), "--repeats", "0", "1 or more"),
    (("measure", "--out", "unused-dir"), "--warmup", "-1", "0 or more"),
    (("dashboard", "any-study"), "--port", "-1", "from 0 to 65535"),
    (("dashboard", "any-study"), "--max-trials", "0", "1 or more"),
    (("export", "any-study"), "--trial", "-1", "trial"),
]


@pytest.mark.parametrize(("before", "option", "too_small", "fix"), BOUNDED, ids=[b[1] for b in BOUNDED])
def test_a_value_below_the_bound_names_the_option_and_the_fix(
    capsys: pytest.CaptureFixture[str], before: tuple[str, ...], option: str, too_small: str, fix: str
) -> None:
    code, out, err = run_cli(capsys, *before, f"{option}={too_small}")
    line = assert_one_error_line(code, out, err, (option,))
    assert line.startswith(f"error: {option}: {too_small} is less than ")
    assert "not in the range" not in line and "x>=" not in line
    assert "; pass " in line and fix in line


@pytest.mark.parametrize(("before", "option", "too_small", "fix"), BOUNDED, ids=[b[1] for b in BOUNDED])
def test_a_word_is_not_called_an_integer_range(
    capsys: pytest.CaptureFixture[str], before: tuple[str, ...], option: str, too_small: str, fix: str
) -> None:
    code, out, err = run_cli(capsys, *before, option, "abc")
    line = assert_one_error_line(code, out, err, (option,))
    assert line.startswith(f"error: {option}: 'abc' is not a valid ")
    assert "range" not in line.split(";")[0] and fix in line


@pytest.mark.parametrize(
    ("args", "field", "bound"),
    [
        (("dashboard", "any-study", "--port", "65536"), "--port", 65535),
        (("show", "any-study", "9223372036854775808"), "TRIAL", 2**63 - 1),
    ],
)
def test_a_value_above_the_bound_names_the_bound(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], field: str, bound: int
) -> None:
    code, out, err = run_cli(capsys, *args)
    line = assert_one_error_line(code, out, err, (field,))
    assert line.startswith(f"error: {field}: {args[-1]} is more than {bound}; pass ")


def test_every_bounded_number_option_is_one_of_these() -> None:
    """A new IntRange/FloatRange option would bring click's wording back: every one in the CLI is
    the project's type, and each is in the table above."""
    bounded = set()
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param.type, (click.IntRange, click.FloatRange)):
                assert type(param.type).__module__.startswith("tuner."), (name, param.name)
                flag = max(param.opts, key=len)
                bounded.add(flag if flag.startswith("--") else "TRIAL")
    assert bounded <= {b[1] for b in BOUNDED} | {"TRIAL"}, bounded
    assert re.search("--", " ".join(bounded))
