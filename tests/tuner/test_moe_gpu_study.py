"""The shipped MoE GPU studies in the engines' vocabulary: a small version runs end to end
(search, pareto, export), impossible degrees are infeasible trials rather than errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli
from cost_models.errors import InvalidInputError
from search_spaces.space import ENGINE_DIMENSIONS, compile_study, evaluate
from search_spaces.spec import load_spec, parse_spec

STUDIES = Path(__file__).resolve().parents[2] / "studies"


@pytest.mark.parametrize("chip", ["h200", "gb200"])
def test_shipped_moe_study_is_in_the_engines_vocabulary(chip):
    study = compile_study(load_spec(STUDIES / f"qwen3-235b-moe-{chip}.yaml"))
    assert tuple(study.space.dimensions) == ENGINE_DIMENSIONS
    indices = study.space.all_indices()
    evaluation = evaluate(study, indices)  # every combination: no error, some infeasible
    values = {name: study.space.values[name][indices[name]] for name in ("pp", "ep", "dp", "micro_batches")}
    tp = study.space.values["tp"][indices["tp"], 2]
    batch = study.space.values["batch"][indices["batch"]]
    # Hand rule: EP divides 128 experts and TP x DP; PP <= 94 layers; batch splits over DP x m;
    # micro-batches only with a pipeline (PP > 1: without one an engine runs the batch in one
    # step); and beyond one NVLink domain (8 H200s, 72 GB200s) only whole domains.
    engine_ok = (
        (128 % values["ep"] == 0)
        & ((tp * values["dp"]) % values["ep"] == 0)
        & (batch % (values["dp"] * values["micro_batches"]) == 0)
        & ((values["pp"] > 1) | (values["micro_batches"] == 1))
    )
    chips = tp * values["pp"] * values["dp"]
    domain = {"h200": 8, "gb200": 72}[chip]
    engine_ok &= (chips <= domain) | (chips % domain == 0)
    assert np.array_equal(evaluation.valid, engine_ok)
    assert 0 < evaluation.valid.sum() < len(evaluation)
    assert np.all(evaluation.constraints[~evaluation.valid, 0] > 0)


@pytest.mark.parametrize("backend", ["vllm", "sglang", "trtllm"])
def test_a_named_engine_leaves_out_what_it_does_not_launch(backend):
    """With ``backend`` named, the valid candidates are those the engine launches, by the hand rules
    of its documentation (vLLM: EP 1 or TP x DP; TensorRT-LLM: attention DP on single-GPU ranks;
    SGLang: any EP dividing TP x DP), on top of the rule every engine shares."""
    data = yaml.safe_load((STUDIES / "qwen3-235b-moe-h200.yaml").read_text())
    unnamed = compile_study(parse_spec(data))
    named = compile_study(parse_spec({**data, "backend": backend}))
    indices = named.space.all_indices()
    shared_rule = evaluate(unnamed, indices).valid
    valid = evaluate(named, indices).valid
    tp = named.space.values["tp"][indices["tp"], 2]
    ep, dp = (named.space.values[name][indices[name]] for name in ("ep", "dp"))
    launches = {
        "vllm": (ep == 1) | (ep == tp * dp),
        "sglang": np.ones(len(tp), dtype=bool),
        "trtllm": (dp == 1) | (tp == 1),
    }[backend]
    assert np.array_equal(valid, shared_rule & launches)
    assert valid.sum() > 0


def test_small_moe_study_end_to_end(capsys, tmp_path):
    data = yaml.safe_load((STUDIES / "qwen3-235b-moe-h200.yaml").read_text())
    data["space"] = {**data["space"], "tp": [4, 8], "pp": [1, 2], "ep": [1, 8], "dp": [1, 2], "batch": [16, 64]}
    data["space"].pop("micro_batches")
    data["trials"] = 40
    spec = tmp_path / "small.yaml"
    spec.write_text(yaml.safe_dump(data))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url, "--sampler", "exhaustive")
    assert code == 0, err
    code, out, err = run_cli(capsys, "pareto", data["name"], "--storage", url, "--json")
    assert code == 0, err
    front = json.loads(out)
    rows = front["trials"] if isinstance(front, dict) else front
    assert rows
    trial = rows[0]["trial"] if "trial" in rows[0] else rows[0]["number"]
    code, out, err = run_cli(
        capsys, "export", data["name"], "--storage", url, "--trial", str(trial), "--format", "sglang"
    )
    assert code == 0, err
    args = json.loads(out)
    assert "--tp-size" in args["cli"] and "--pp-size" in args["cli"]
    code, out, err = run_cli(capsys, "export", data["name"], "--storage", url, "--trial", str(trial))
    spec_out = json.loads(out)
    assert spec_out["chips"] == spec_out["parallel"]["tp"] * spec_out["parallel"]["pp"] * spec_out["parallel"]["dp"]


def test_one_vocabulary_per_space():
    base = yaml.safe_load((STUDIES / "qwen3-235b-moe-h200.yaml").read_text())
    for extra, words in (
        ({"chips": [8]}, "tp replaces chips and mesh"),
        ({"prefill_ffn_layout": ["ws_2d"]}, "Pope et al.'s vocabulary"),
    ):
        with pytest.raises(InvalidInputError, match=words):
            parse_spec({**base, "space": {**base["space"], **extra}})
    no_tp = {k: v for k, v in base["space"].items() if k != "tp"}
    with pytest.raises(InvalidInputError, match="needs tp"):
        parse_spec({**base, "space": no_tp})


def test_a_tp_that_does_not_divide_the_heads_is_infeasible_whatever_the_engine():
    """No GPU engine splits a head over ranks: with or without a named engine, a tp-vocabulary
    candidate whose TP does not divide the heads is structurally invalid (llama-3-8b: 32 heads)."""
    for backend in (None, "sglang"):
        spec = {
            "name": "heads",
            "model": "llama-3-8b",
            "hardware": "h100-sxm",
            "workload": {"prompt_len": 128, "gen_len": 8},
            "space": {"tp": [3, 4, 6, 8], "batch": [8]},
            "objectives": [{"metric": "decode.step_latency_s"}],
            **({"backend": backend} if backend else {}),
        }
        study = compile_study(parse_spec(spec))
        indices = study.space.all_indices()
        tp = study.space.values["tp"][indices["tp"], 2]
        assert evaluate(study, indices).valid.tolist() == (32 % tp == 0).tolist() == [False, True, False, True]


@pytest.mark.parametrize("sampler", ["exhaustive", "nsga2"])
def test_micro_batches_without_pipeline_stages_are_refused_by_search(capsys, tmp_path, sampler):
    """micro_batches: [2] with pp left out (1): micro-batches fill a pipeline (Narayanan et al.
    2021, 2.2), so every candidate was structurally impossible. The exhaustive search stored no
    trial and exited 0 saying "the study holds no trial yet: run tuner search"; NSGA-II stored
    every trial infeasible and said "relax the constraints". tuner estimate already refuses
    --pp 1 --micro-batches 4 (test_estimate_parallel_cli)."""
    data = yaml.safe_load((STUDIES / "qwen3-235b-moe-h200.yaml").read_text())
    data["space"] = {**data["space"], "tp": [4, 8], "ep": [1, 8], "dp": [1], "batch": [16]}
    data["space"].pop("pp")
    data["space"]["micro_batches"] = [2]
    data["trials"] = 20
    spec = tmp_path / "mb.yaml"
    spec.write_text(yaml.safe_dump(data))
    url = f"sqlite:///{tmp_path / 'mb.db'}"
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url, "--sampler", sampler)
    line = assert_one_error_line(code, out, err, ("space.micro_batches",))
    assert "pp" in line
    data["space"]["pp"] = [1, 2]  # with stages to fill, the same micro-batches are a search
    spec.write_text(yaml.safe_dump(data))
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url, "--sampler", sampler)
    assert code == 0, err
