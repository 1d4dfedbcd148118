"""`python -m tuner.accuracy_report`'s arguments: `--help` printed nothing and started the full
refit of every profile (about 20 minutes on a 2-core VM), writing the report to a file named
--help; any unknown flag did the same."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuner.accuracy_report as accuracy_report


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every mode's work replaced by a failure: argument handling alone is under test."""

    def started(*args, **kwargs):
        raise AssertionError("the report started")

    for name in ("fit_all", "refit_serving_only", "refresh_kernels_only", "refit_moe_only"):
        monkeypatch.setattr(accuracy_report, name, started)


def test_help_prints_the_modes_and_starts_nothing(nothing_runs, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        accuracy_report.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--kernels-only" in out and "--gemm-only" in out and "--serving-only" in out and "--moe-only" in out


@pytest.mark.parametrize("argv", [["--bogus"], ["--gemm-only", "--serving-only"]])
def test_unknown_or_conflicting_flags_exit_2_and_start_nothing(
    argv: list[str], nothing_runs, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        accuracy_report.main(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_each_round_of_a_finding_is_its_own_sub_bullet() -> None:
    """The GEMM finding was one line of 37,000 characters, its twenty-three rounds one paragraph.
    A round starts a sentence ("A second round", "An eleventh look", "A twenty-third look");
    the same words inside a sentence ("the thirteenth round") and other sentences ("A third start
    of every GEMM fit") stay where they are."""
    text = (
        "- **GEMM**: first. A second round (x). Per the thirteenth round, y. A third start of every GEMM fit. "
        "An eleventh look (z). A twenty-third look (w)."
    )
    assert accuracy_report.finding_lines(text).split("\n") == [
        "- **GEMM**: first.",
        "  - A second round (x). Per the thirteenth round, y. A third start of every GEMM fit.",
        "  - An eleventh look (z).",
        "  - A twenty-third look (w).",
    ]
    doc = (Path(__file__).resolve().parents[2] / "docs" / "accuracy.md").read_text(encoding="utf-8")
    gemm = doc[doc.index("- **GEMM**:") : doc.index("- **Prefill attention**:")]
    rounds = [line for line in gemm.splitlines() if line.startswith("  - ")]
    assert len(rounds) == 23 and rounds[-1].startswith("  - A twenty-fourth ")
