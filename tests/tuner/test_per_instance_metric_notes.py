"""A study that may pool (serving mode disaggregated or both) and optimizes a static section's
cost or throughput is told that a disaggregated candidate scores those on one instance's chips
(prefill.* a prefill instance's, decode.* a decode instance's), where an aggregated candidate's
count every chip: on one front the other pool's chips were free, and nothing said so."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli
from tuner.pareto import load_study

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _spec(tmp_path, mode: str, metric: str) -> str:
    spec = {
        "name": f"pooled-{mode}",
        "model": "llama-3-8b",
        "hardware": "h100-sxm",
        "workload": {"prompt_len": 1024, "gen_len": 128},
        "space": {"tp": [1, 2]},
        "serving": {"mode": mode, "request_rate": [2.0], **({} if mode == "aggregated" else {"prefill_chips": [1]})},
        "objectives": [{"metric": metric}, {"metric": "serving.ttft_s"}],
        "backend": "vllm",
        "sampler": "exhaustive",
        "trials": 100,
    }
    path = tmp_path / f"{mode}.yaml"
    path.write_text(json.dumps(spec))
    return str(path)


def _notes(capsys, tmp_path, mode: str, metric: str) -> tuple[list[str], str]:
    url = f"sqlite:///{tmp_path}/{mode}-{metric}.db"
    code, out, err = run_cli(capsys, "search", _spec(tmp_path, mode, metric), "--storage", url, "--json")
    assert code == 0, err
    return json.loads(out)["notes"], url


def test_a_pooling_study_on_a_decode_cost_is_told_what_its_chips_are(capsys, tmp_path):
    notes, url = _notes(capsys, tmp_path, "both", "decode.cost_chip_s_per_token")
    (note,) = [n for n in notes if n.startswith("objective decode.cost_chip_s_per_token")]
    assert "one decode instance's" in note and "serving.cost_usd_per_million_tokens" in note
    # What it warns of: a disaggregated trial's decode cost is its decode instance's chips x step
    # per sequence (1 prefill chip + a TP1 or TP2 decode instance here), not the trial's chips.
    trials = load_study("pooled-both", url).get_trials(deepcopy=False)
    pooled = [t for t in trials if t.params["disaggregated"] and t.user_attrs["estimate"]["structurally_valid"]]
    assert pooled
    for t in pooled:
        e, deployment = t.user_attrs["estimate"], t.user_attrs["deployment"]
        decode_chips = t.params["tp"]
        assert e["params"]["chips"] == decode_chips + 1
        step, batch = e["decode"]["step_latency_s"], deployment["batch"]
        assert e["decode"]["cost_chip_s_per_token"] == pytest.approx(decode_chips * step / batch, rel=1e-9)


@pytest.mark.parametrize(
    ("mode", "metric"),
    [
        ("aggregated", "decode.cost_chip_s_per_token"),  # every candidate counts every chip
        ("both", "serving.tokens_per_s_per_chip"),  # counts both pools
        ("both", "decode.step_latency_s"),  # a latency, not per chip
    ],
)
def test_no_note_where_every_candidate_counts_alike(capsys, tmp_path, mode, metric):
    notes, _ = _notes(capsys, tmp_path, mode, metric)
    assert not [n for n in notes if "one decode instance's" in n]
