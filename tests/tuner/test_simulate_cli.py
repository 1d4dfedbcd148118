"""tuner simulate: JSON keys, the analytic means beside, one-line errors."""

from __future__ import annotations

import json

import pytest

from cli_helpers import assert_one_error_line, run_cli

ARGS = ("simulate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "8", "--prompt-len", "512")


def test_json_has_percentiles_and_the_analytic_steady_state(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, *ARGS, "--gen-len", "64", "--concurrency", "16", "--requests", "64", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["mesh"] == [1, 1, 8]
    for key in ("ttft_s", "tpot_s", "e2e_latency_s"):
        stats = report["simulated"][key]
        assert set(stats) == {"mean", "p50", "p90", "p99"}
        assert 0 < stats["p50"] <= stats["p90"] <= stats["p99"]
        assert report["analytic"][key] > 0
    assert report["simulated"]["requests"] == 64
    assert report["workload"]["concurrency"] == 16


def test_table_shows_both(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, *ARGS, "--gen-len", "32", "--request-rate", "10", "--requests", "40")
    assert code == 0
    assert "TTFT" in out and "analytic mean" in out and "p99" in out


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (("--concurrency", "4", "--request-rate", "2"), "serving"),
        (("--concurrency", "4", "--requests", "0"), "requests"),
        (("--concurrency", "0"), "concurrency"),
        (("--concurrency", "4", "--mesh", "2x2x1"), "mesh"),
    ],
)
def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], field: str) -> None:
    code, out, err = run_cli(capsys, *ARGS, "--gen-len", "32", *extra)
    assert_one_error_line(code, out, err, (field,))
