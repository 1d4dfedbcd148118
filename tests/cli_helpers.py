"""Running the ``tuner`` CLI in-process from tests, and checking its one-line errors."""

from __future__ import annotations

import copy

import pytest

from tuner.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``tuner ARGS``."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, out: str, err: str, fields: tuple[str, ...]) -> str:
    """Exit 2, stdout empty, stderr exactly one line ``error: ...`` naming one of ``fields``."""
    assert "Traceback" not in out + err
    assert code == 2, (code, out, err)
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    line = err.rstrip("\n")
    assert line.startswith("error:"), line
    assert any(field in line for field in fields), (fields, line)
    return line


def spec_with(base: dict, path: tuple[str, ...], value: object) -> dict:
    """A deep copy of the spec ``base`` with the field at ``path`` (keys, outermost first) set to
    ``value`` (missing sections made)."""
    data = copy.deepcopy(base)
    where = data
    for key in path[:-1]:
        where = where.setdefault(key, {})
    where[path[-1]] = value
    return data
