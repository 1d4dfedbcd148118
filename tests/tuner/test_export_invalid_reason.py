"""Why ``tuner export`` refuses a structurally invalid trial. A ``serving.mode: both`` study keeps
an aggregated candidate at its pool dimensions' first choices only (search_spaces.space.
structurally_valid: an aggregated deployment has no pools, the others are its twins), so a
sampler that draws one with another prefill mesh stores it invalid (TPE; the random sampler
draws none since 2026-12-06, and NSGA-II replaces them, but studies stored before hold them).
Before 2026-12-06 export gave the generic reasons (KV heads, TP, engine degrees, chips), none of
which applied."""

from __future__ import annotations

import json

import pytest

from cli_helpers import assert_one_error_line, run_cli
from tuner.pareto import load_study
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

STUDY: dict = {
    "name": "both-twins",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"tp": [1, 2]},
    "serving": {"mode": "both", "request_rate": [2.0], "prefill_chips": [1, 2]},
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.ttft_s"}],
    "backend": "vllm",
    "sampler": "tpe",
    "seed": 0,
    "trials": 64,
}


def _export(capsys, url: str, number: int, *extra: str) -> tuple[int, str, str]:
    args = ("export", STUDY["name"], "--storage", url, "--trial", str(number), "--format", "vllm")
    return run_cli(capsys, *args, *extra)


def test_an_aggregated_twin_of_a_mode_both_study_is_refused_with_its_reason(capsys, tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    result = run_search(json.loads(json.dumps(STUDY)), url)
    assert result.exhausted  # a budget over the space: every candidate stored, the twins too
    trials = load_study(STUDY["name"], url).get_trials(deepcopy=False)
    aggregated = [t for t in trials if t.params["disaggregated"] is False]
    # The space's first prefill mesh is 1x1x1 (prefill_chips' first, 1 chip).
    twins = [t for t in aggregated if t.params["prefill_mesh"] != "1x1x1"]
    assert twins and all(t.user_attrs["estimate"]["structurally_valid"] is False for t in twins)
    twin = twins[0]
    line = assert_one_error_line(*_export(capsys, url, twin.number), ("trial",))
    assert "serving mode: both" in line and f"prefill_mesh {twin.params['prefill_mesh']}" in line
    assert "KV heads" not in line
    # The candidate at the first pool choices is the deployment, and exports.
    (kept,) = [t for t in aggregated if t.params["prefill_mesh"] == "1x1x1" and t.params["tp"] == twin.params["tp"]]
    code, _, err = _export(capsys, url, kept.number, "--allow-infeasible")
    assert code == 0, err
