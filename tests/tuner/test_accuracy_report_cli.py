"""`python -m tuner.accuracy_report`'s arguments: `--help` printed nothing and started the full
refit of every profile (about 20 minutes on a 2-core VM), writing the report to a file named
--help; any unknown flag did the same."""

from __future__ import annotations

import pytest

import tuner.accuracy_report as accuracy_report


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every mode's work replaced by a failure: argument handling alone is under test."""

    def started(*args, **kwargs):
        raise AssertionError("the report started")

    for name in ("fit_all", "refit_serving_only", "refresh_gemm_only", "refit_moe_only"):
        monkeypatch.setattr(accuracy_report, name, started)


def test_help_prints_the_modes_and_starts_nothing(nothing_runs, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        accuracy_report.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--gemm-only" in out and "--serving-only" in out and "--moe-only" in out


@pytest.mark.parametrize("argv", [["--bogus"], ["--gemm-only", "--serving-only"]])
def test_unknown_or_conflicting_flags_exit_2_and_start_nothing(
    argv: list[str], nothing_runs, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        accuracy_report.main(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err
