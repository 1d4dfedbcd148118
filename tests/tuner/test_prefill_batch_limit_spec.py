"""A disaggregated study's prefill instances take their own batch limit (spec
``serving.prefill_max_batch_size``), as ``tuner estimate --prefill-max-batch-size`` gives them.
Before, the spec had one ``max_batch_size`` for both pools while the CLI had one a pool: a study
could not search the prefill pool's limit, and the field was refused as unknown. Each trial is
checked against ``tuner estimate`` of the same pools (cost_models.disaggregated_one, which builds
the pools' workloads apart from the search's vectorized path), and its export launches each
pool with its own limit."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli
from cost_models.errors import InvalidInputError
from search_spaces.space import candidate_report, compile_study, evaluate, structurally_valid
from search_spaces.spec import parse_spec
from tuner.pareto import load_study
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

RATE = 8.0
SPEC: dict = {
    "name": "prefill-limit",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"tp": [1]},
    "serving": {
        "mode": "disaggregated",
        "request_rate": [RATE],
        "max_batch_size": [256],
        "prefill_max_batch_size": [1, 256],
    },
    "objectives": [{"metric": "serving.ttft_s"}, {"metric": "serving.tpot_s"}],
    "backend": "vllm",
    "sampler": "exhaustive",
}


def _estimate(capsys, prefill_limit: int) -> dict:
    code, out, err = run_cli(
        capsys, "estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--tp", "1", "--backend", "vllm",
        "--prompt-len", "1024", "--gen-len", "128", "--request-rate", str(RATE), "--prefill-instances", "1",
        "--decode-instances", "1", "--prefill-max-batch-size", str(prefill_limit), "--decode-max-batch-size", "256",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)["serving"]


def test_each_prefill_limit_is_scored_as_tuner_estimate_scores_it(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path}/limit.db"
    assert run_search(copy.deepcopy(SPEC), url).trials_added == 2
    trials = {t.user_attrs["serving"]["prefill_max_batch_size"]: t for t in load_study(SPEC["name"], url).trials}
    assert set(trials) == {1, 256}
    for limit, trial in trials.items():
        assert trial.params["prefill_max_batch_size"] == limit
        assert trial.user_attrs["serving"]["max_batch_size"] == 256  # the decode instance's
        expected = _estimate(capsys, limit)
        assert trial.values == pytest.approx([expected["ttft_s"], expected["tpot_s"]], rel=1e-9)
    # One prompt an iteration waits longer for the prefill pool than up to 256 do.
    assert trials[1].values[0] > trials[256].values[0]
    # The export launches each pool with the limit it was scored with (vLLM --max-num-seqs).
    code, out, err = run_cli(
        capsys, "export", SPEC["name"], "--storage", url, "--trial", str(trials[1].number), "--format", "vllm",
        "--allow-infeasible",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["prefill"]["engine_args"]["max_num_seqs"] == 1
    assert data["decode"]["engine_args"]["max_num_seqs"] == 256


def test_the_prefill_limit_is_part_of_the_hash_only_when_listed() -> None:
    without = copy.deepcopy(SPEC)
    del without["serving"]["prefill_max_batch_size"]
    plain = parse_spec(copy.deepcopy(without))
    assert "prefill_max_batch_size" not in plain.canonical_json()  # stored studies keep their hash
    listed = parse_spec(copy.deepcopy(SPEC))
    assert "prefill_max_batch_size" in listed.canonical_json() and listed.spec_hash != plain.spec_hash


@pytest.mark.parametrize(
    "serving,words",
    [
        ({"request_rate": [RATE], "prefill_max_batch_size": [8]}, "set mode: disaggregated or both"),
        ({"mode": "disaggregated", "request_rate": [RATE], "prefill_max_batch_size": [0]}, "from 1 to"),
        ({"mode": "disaggregated", "request_rate": [RATE], "prefill_max_batch_size": [8, 8]}, "list each once"),
    ],
    ids=["aggregated study", "zero", "repeated"],
)
def test_a_prefill_limit_a_study_cannot_use_is_one_line(serving: dict, words: str, tmp_path: Path, capsys) -> None:
    data = {**copy.deepcopy(SPEC), "serving": serving}
    with pytest.raises(InvalidInputError) as info:
        parse_spec(copy.deepcopy(data))
    assert "prefill_max_batch_size" in str(info.value) and words in str(info.value)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out, err = run_cli(capsys, "search", str(path), "--storage", f"sqlite:///{tmp_path}/x.db")
    line = assert_one_error_line(code, out, err, ("prefill_max_batch_size",))
    assert words in line


def test_an_aggregated_candidate_of_mode_both_does_not_vary_the_prefill_limit() -> None:
    """Mode both: an aggregated candidate has no prefill pool, so it is kept at the first choice
    only (as its prefill mesh and instance counts), not scored twice alike."""
    data = copy.deepcopy(SPEC)
    data["serving"]["mode"] = "both"
    compiled = compile_study(parse_spec(data))
    indices = compiled.space.all_indices()
    valid = structurally_valid(compiled, indices)
    columns = (indices["disaggregated"].tolist(), indices["prefill_max_batch_size"].tolist(), valid.tolist())
    kept = sorted(zip(*columns, strict=True))
    assert kept == [(0, 0, True), (0, 1, False), (1, 0, True), (1, 1, True)]
    evaluation = evaluate(compiled, indices)
    disaggregated = next(i for i in range(len(valid)) if indices["disaggregated"][i] == 1)
    limit = compiled.space.dimensions["prefill_max_batch_size"][int(indices["prefill_max_batch_size"][disaggregated])]
    engine = candidate_report(compiled, evaluation, disaggregated)["serving"]["engine"]
    assert engine["prefill_max_batch_size"] == limit and engine["max_batch_size"] == 256
