"""Progress goes to stderr when the output is piped or redirected, and stdout keeps the result
alone. A QA user ran `tuner calibrate` with its output redirected and waited 6 min 44 s with
nothing printed: the progress bars were drawn only when stdout and stderr were both terminals
(under pytest neither is: capsys is what a pipe is to the commands)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli_helpers import run_cli

REPO = Path(__file__).resolve().parents[2]
# `tuner measure --sweep small` on an H200 (data/measured/h200-jax/README.md): 63 GEMMs in each of
# bfloat16, fp8 and int8_wo, three groups of calibrate's fit.
H200_GEMMS = REPO / "data" / "measured" / "h200-jax" / "small" / "gemm_perf.csv"
ELAPSED = re.compile(r" \((\d+) s elapsed\)$")


def test_calibrate_prints_a_line_per_fitted_group_on_stderr_and_clean_json_on_stdout(capsys) -> None:
    args = ("--hardware", "h200", "--backend", "jax", "--system", "h200_sxm", "--kernels", str(H200_GEMMS))
    code, out, err = run_cli(capsys, "calibrate", *args, "--json")
    assert code == 0, err
    report = json.loads(out)  # stdout is the JSON document alone
    groups = [g["name"] for g in report["groups"]]
    assert groups == ["gemm/bfloat16", "gemm/fp8", "gemm/int8_wo"]
    lines = err.splitlines()
    assert len(lines) == len(groups)
    for line, group in zip(lines, report["groups"], strict=True):
        assert line.startswith(f"calibrate: {group['name']} fitted from {group['rows']} rows")
    elapsed = [int(ELAPSED.search(line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert elapsed == sorted(elapsed)


def test_search_piped_prints_its_progress_on_stderr_with_json_on_stdout(tmp_path, capsys, monkeypatch) -> None:
    from tuner import progress_lines

    monkeypatch.setattr(progress_lines, "PLAIN_INTERVAL_S", 0.0)  # a line at every update
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: piped\nmodel: llama-3-8b\nhardware: h100-sxm\nworkload: {prompt_len: 128, gen_len: 16}\n"
        "space: {chips: [1], batch: [1, 2]}\nobjectives: [{metric: decode.step_latency_s}]\n",
        encoding="utf-8",
    )
    code, out, err = run_cli(
        capsys, "search", str(spec), "--storage", f"sqlite:///{tmp_path}/s.db", "--trials", "2", "--json"
    )
    assert code == 0, err
    json.loads(out)  # stdout is the JSON document alone
    lines = [line for line in err.splitlines() if line.startswith("searching: ")]
    assert lines and all(ELAPSED.search(line) for line in lines), err
    # The space holds 2 deployments (chips 1, batch 1 or 2), both tried: the last line counts them.
    assert re.match(r"searching: 2 of 2 ", lines[-1]), lines[-1]


def test_measure_progress_piped_is_plain_lines_on_stderr(capsys, monkeypatch) -> None:
    """The same callback run_measurements calls (label, points done, points): a line when a file
    starts and when all its points are measured; between, at most every PLAIN_INTERVAL_S."""
    from tuner import progress_lines
    from tuner.measure import progress_bars

    monkeypatch.setattr(progress_lines, "PLAIN_INTERVAL_S", 3600.0)  # no line between
    with progress_bars() as update:
        for done in range(61):
            update("gemm", done, 60)
    lines = capsys.readouterr().err.splitlines()
    assert [ELAPSED.sub("", line) for line in lines] == [
        "measure: gemm_perf.csv: measuring 60 points",
        "measure: gemm_perf.csv: all 60 points measured",
    ]


def test_a_line_at_most_every_interval(capsys) -> None:
    """ProgressLines.update on a clock set by hand: a line once 10 s have passed since the last."""
    from tuner.progress_lines import ProgressLines

    now = [0.0]
    lines = ProgressLines("searching", interval_s=10.0, clock=lambda: now[0])
    for t, done in ((5.0, 1), (10.0, 2), (15.0, 3), (19.9, 4), (20.0, 5)):
        now[0] = t
        lines.update(done, 100)
    assert capsys.readouterr().err.splitlines() == [
        "searching: 2 of 100 (10 s elapsed)",
        "searching: 5 of 100 (20 s elapsed)",
    ]


@pytest.fixture(autouse=True)
def _fresh_fit_caches():
    """calibrate caches tables per path: a test's fit reads the file again."""
    from tuner import calibrate

    calibrate._read_cached.cache_clear()
    yield
