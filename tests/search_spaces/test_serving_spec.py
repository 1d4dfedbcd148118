"""The ``serving:`` section of a study spec: it validates (one-line errors naming the field, exit 2
through the CLI), compiles into the load and engine-knob dimensions with the backend's defaults,
and leaves specs without it exactly as they were (same hash, same dimensions)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli
from cost_models.errors import InvalidInputError
from cost_models.metrics import METRICS
from cost_models.serving import ENGINE_DEFAULTS
from search_spaces.space import DIMENSIONS, compile_study, evaluate
from search_spaces.spec import load_spec, parse_spec

STUDIES = Path(__file__).resolve().parents[2] / "studies"

SERVING: dict = {
    "name": "serving-spec-test",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"chips": [1, 2], "mesh": ["1x1x1", "2x1x1"]},
    "serving": {"concurrency": [1, 8, 64], "max_num_tokens": [2048, 8192]},
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.tokens_per_s_per_user"}],
    "constraints": {"max_ttft_s": 1.0, "max_tpot_s": 0.05, "max_tpot_p99_s": 0.08},
    "backend": "vllm",
    "sampler": "exhaustive",
}


def with_serving(**changes: object) -> dict:
    data = copy.deepcopy(SERVING)
    data["serving"] = {**data["serving"], **changes}
    return {k: v for k, v in data.items()}


def refused(data: dict) -> str:
    with pytest.raises(InvalidInputError) as info:
        compile_study(parse_spec(data))
    message = str(info.value)
    assert "\n" not in message
    return message


# Hashes of the shipped specs computed by the code before the serving section existed (commit
# d4ca0fd): a spec without the section must keep its study's identity, or every stored study
# would refuse to resume.
HASHES_BEFORE_SERVING = {
    "llama-2-70b-h100": "ce8e69f5f3ef9709",
    "llama-3-8b-l4": "8f8646c0c6891b3e",
    "palm-540b-tpu-v4": "5db223349137884d",
}


@pytest.mark.parametrize("name", sorted(HASHES_BEFORE_SERVING))
def test_a_spec_without_serving_keeps_its_hash(name: str) -> None:
    spec = load_spec(STUDIES / f"{name}.yaml")
    assert spec.serving is None
    assert spec.spec_hash == HASHES_BEFORE_SERVING[name]
    assert "serving" not in spec.canonical_json()
    assert "max_tpot_p99_s" not in spec.canonical_json()
    assert tuple(compile_study(spec).space.dimensions) == DIMENSIONS


def test_the_serving_section_is_part_of_the_hash() -> None:
    base = parse_spec(copy.deepcopy(SERVING)).spec_hash
    assert parse_spec(with_serving(concurrency=[1, 8])).spec_hash != base
    assert parse_spec(with_serving(prefix_hit_rate=0.5)).spec_hash != base
    assert parse_spec(copy.deepcopy(SERVING)).spec_hash == base


def test_load_and_knobs_are_dimensions_with_the_backends_defaults() -> None:
    compiled = compile_study(parse_spec(copy.deepcopy(SERVING)))
    dims = compiled.space.dimensions
    assert dims["concurrency"] == (1, 8, 64)
    assert dims["max_num_tokens"] == (2048, 8192)
    assert "batch" not in dims and "request_rate" not in dims
    vllm = ENGINE_DEFAULTS["vllm"]
    assert dims["max_batch_size"] == (vllm["max_batch_size"],)
    assert dims["chunked_prefill"] == (vllm["chunked_prefill"],)
    assert dims["kv_block_size"] == (vllm["kv_block_size"],)
    assert compiled.engine == "vllm"
    trtllm = compile_study(parse_spec({**copy.deepcopy(SERVING), "backend": "trtllm"}))
    assert trtllm.space.dimensions["max_batch_size"] == (ENGINE_DEFAULTS["trtllm"]["max_batch_size"],)
    assert trtllm.space.dimensions["chunked_prefill"] == (False,)
    assert trtllm.constraint_names == [
        "structurally_valid",
        "fits_in_memory",
        "stable",
        "max_ttft_s",
        "max_tpot_s",
        "max_tpot_p99_s",
    ]


def test_outputs_spread_by_default_and_zero_keeps_them_equal() -> None:
    """gen_len_std unset: 5% of the workload's gen_len (the desynchronized closed loop); 0: exactly
    equal outputs (the grouped closed loop), a different problem (another hash)."""
    default = parse_spec(copy.deepcopy(SERVING))
    assert default.serving is not None and default.serving.gen_len_std is None
    fixed = parse_spec(with_serving(gen_len_std=0.0))
    for spec, std in ((default, 0.05 * 128), (fixed, 0.0)):
        compiled = compile_study(spec)
        evaluation = evaluate(compiled, compiled.space.all_indices())
        assert evaluation.workloads is not None
        assert evaluation.workloads.gen_len_std == pytest.approx(std)
    assert default.spec_hash != fixed.spec_hash


def test_an_open_loop_rate_is_the_load_dimension() -> None:
    data = copy.deepcopy(SERVING)
    data["serving"] = {"request_rate": [0.5, 4.0], "chunked_prefill": [True, False]}
    compiled = compile_study(parse_spec(data))
    assert compiled.space.dimensions["request_rate"] == (0.5, 4.0)
    assert compiled.space.dimensions["chunked_prefill"] == (True, False)
    evaluation = evaluate(compiled, compiled.space.all_indices())
    assert evaluation.workloads is not None and evaluation.serving is not None
    assert not evaluation.workloads.closed_loop.any()


def test_an_unchunked_prompt_over_the_token_budget_is_structurally_infeasible() -> None:
    data = {**copy.deepcopy(SERVING), "backend": "trtllm"}  # trtllm: prefill not chunked
    data["serving"] = {"concurrency": [8], "max_num_tokens": [512, 2048]}
    compiled = compile_study(parse_spec(data))
    evaluation = evaluate(compiled, compiled.space.all_indices())
    budget = compiled.space.values["max_num_tokens"][evaluation.indices["max_num_tokens"]]
    assert list(evaluation.valid) == list(budget >= 1024)
    assert list(evaluation.constraint_columns["structurally_valid"] > 0) == list(budget < 1024)
    data["serving"] = {"concurrency": [8], "max_num_tokens": [512]}
    assert "serving.max_num_tokens" in refused(data)


@pytest.mark.parametrize(
    "serving,words",
    [
        ({"max_num_tokens": [2048]}, "exactly one of concurrency"),  # no load
        ({"concurrency": [1], "request_rate": [1.0]}, "exactly one of concurrency"),
        ({"request_rate": [0.0]}, "request_rate"),
        ({"request_rate": [-2.0]}, "request_rate"),
        ({"concurrency": [0]}, "concurrency"),
        ({"concurrency": [4, 4]}, "repeat"),
        ({"concurrency": [4], "max_batch": [8]}, "max_batch"),  # unknown knob
        ({"concurrency": [4], "prefix_hit_rate": 1.0}, "prefix_hit_rate"),
        ({"concurrency": [4], "chunked_prefill": ["yes"]}, "chunked_prefill"),
        ({"concurrency": [4], "prefill_instances": [2]}, "set mode: disaggregated or both"),
        ({"concurrency": [4], "mode": "disaggregated", "decode_instances": [0]}, "decode_instances"),
        # A 1e300-token spread was searched: RuntimeWarnings on stderr and every trial infeasible.
        ({"concurrency": [4], "prompt_len_std": 1e300}, "prompt_len_std"),
        ({"concurrency": [4], "gen_len_std": 1e300}, "gen_len_std"),
    ],
)
def test_bad_serving_sections_are_refused_in_one_line(serving: dict, words: str, tmp_path: Path, capsys) -> None:
    data = {**copy.deepcopy(SERVING), "serving": serving}
    assert words in refused(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out, err = run_cli(capsys, "search", str(path), "--storage", f"sqlite:///{tmp_path}/bad.db")
    assert_one_error_line(code, out, err, (words,))
    assert not (tmp_path / "bad.db").exists()


@pytest.mark.parametrize("metric", [m for m in METRICS if METRICS[m].needs_serving])
def test_serving_metrics_need_a_serving_section(metric: str) -> None:
    data = {k: v for k, v in copy.deepcopy(SERVING).items() if k not in ("serving", "constraints")}
    data["space"]["batch"] = [1]
    data["objectives"] = [{"metric": metric}]
    assert f"objective {metric} needs a serving: section" in refused(data)
    data["objectives"] = [{"metric": "decode.step_latency_s"}]
    compile_study(parse_spec(copy.deepcopy(data)))  # the static metrics need none
    data["constraints"] = {"max_tpot_p99_s": 0.1}
    assert "max_tpot_p99_s needs a serving: section" in refused(data)
    del data["constraints"], data["space"]["batch"]
    assert "space.batch is required" in refused(data)


def test_prefill_chips_with_no_choice_dividing_the_heads_is_refused() -> None:
    """A prefill instance is a TP group of prefill_chips GPUs, and every GPU engine splits the
    attention heads evenly over the TP ranks. prefill_chips: [3] for llama-3-8b (32 heads, 32 / 3
    not whole): every disaggregated candidate is structurally invalid; the exhaustive search
    stored none, exit 0, and said "the study holds no trial yet: run tuner search". Refused
    naming serving.prefill_chips and the divisors of 32, as space.tp is; a list with one valid
    choice still compiles (its other choice makes infeasible trials)."""
    data = copy.deepcopy(SERVING)
    data["space"] = {"tp": [1, 2]}
    data["serving"] = {"mode": "disaggregated", "concurrency": [8], "prefill_chips": [3, 6]}
    message = refused(data)
    assert message.startswith("serving.prefill_chips: no choice divides the 32 attention heads of llama-3-8b")
    assert message.endswith("use prefill_chips among 1, 2, 4, 8, 16, 32")
    data["serving"]["prefill_chips"] = [2, 3]
    compiled = compile_study(parse_spec(data))
    assert compiled.space.dimensions["prefill_mesh"] == ("1x1x2", "1x1x3")


def test_prefill_chips_refused_through_the_cli_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = copy.deepcopy(SERVING)
    data["space"] = {"tp": [1, 2]}
    data["serving"] = {"mode": "disaggregated", "concurrency": [8], "prefill_chips": [3]}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    code, out, err = run_cli(capsys, "search", str(path), "--storage", f"sqlite:///{tmp_path / 'study.db'}")
    assert_one_error_line(code, out, err, ("serving.prefill_chips",))


def test_numbers_in_exponent_notation_are_numbers(tmp_path: Path) -> None:
    """YAML 1.2 reads 5e-2 and 1e9 as floats; PyYAML (YAML 1.1) reads them as text unless written
    with a dot and a signed exponent (5.0e-2, 1.0e+9), and the spec was refused as "got '5e-2';
    write a number without quotes", quotes its author never wrote. Plain integers stay ints."""
    data = copy.deepcopy(SERVING)
    data["serving"] = {"request_rate": ["REQUEST_RATE"]}
    data["constraints"] = {"max_tpot_s": "MAX_TPOT"}
    text = yaml.safe_dump(data, sort_keys=False)
    text = text.replace("REQUEST_RATE", "1e1").replace("MAX_TPOT", "5e-2")  # written unquoted
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    assert "max_tpot_s: 5e-2" in text and "- 1e1" in text
    spec = load_spec(path)
    assert spec.constraints.max_tpot_s == 0.05
    assert spec.serving is not None and spec.serving.request_rate == [10.0]
    assert spec.workload.prompt_len == 1024 and isinstance(spec.workload.prompt_len, int)


def test_a_serving_study_searches_dp_attention_and_expert_parallelism() -> None:
    """DeepSeek-V3 fp8 on 8 H200s under SGLang, tp [1, 8], dp [1, 8], ep [1, 8] with a load: was
    refused ("space.dp: the serving model charges tensor parallelism only"). Each candidate's
    serving steady state is serve's at its degrees (TP1 DP8 EP8 holds 8 x a rank's slots; the
    static sections at DP x a rank's running batch, which splits over the ranks)."""
    from cost_models.deployments import make_deployments
    from cost_models.dtypes import FP8
    from cost_models.models import get_model
    from cost_models.serving import make_workloads, serve

    data = {
        "name": "serving-dp-ep",
        "model": "deepseek-v3",
        "hardware": "h200",
        "workload": {"prompt_len": 2048, "gen_len": 256},
        "space": {"tp": [1, 8], "dp": [1, 8], "ep": [1, 8], "weight_bits": ["fp8"], "kv_bits": ["fp8"]},
        "serving": {"concurrency": [30]},
        "objectives": [{"metric": "serving.tokens_per_s_per_chip"}],
        "backend": "sglang",
        "sampler": "exhaustive",
    }
    compiled = compile_study(parse_spec(data))
    evaluation = evaluate(compiled, compiled.space.all_indices())
    assert evaluation.serving is not None
    d = evaluation.deployments
    row = int(np.flatnonzero((d.tensor_parallel == 1) & (d.data_parallel == 8) & (d.expert_parallel == 8))[0])
    assert evaluation.valid[row]
    assert int(d.act_dtype[row]) == FP8  # fp8 weights run W8A8, as the export launches them
    alone = make_deployments(
        get_model("deepseek-v3"), d.hardware, mesh=[1, 1, 1], batch=8, prompt_len=2048, gen_len=256,
        prefill_ffn_layout=0, decode_ffn_layout=0, flash_attention=True, data_parallel=8, expert_parallel=8,
        weight_dtype=FP8, act_dtype=FP8, kv_dtype=FP8,
    )  # fmt: skip
    w = make_workloads(backend="sglang", concurrency=30, prompt_len=2048, gen_len=256, requests_per_client=10)
    expected = serve(alone, w, calibration=compiled.calibration)
    assert evaluation.serving.tpot_s[row] == pytest.approx(expected.tpot_s[0], rel=1e-12)
    assert evaluation.serving.max_concurrency[row] == expected.max_concurrency[0]
    assert evaluation.serving.running[row] == 30
    assert d.batch[row] == 32  # 8 ranks x round(30 / 8) = 8 x 4
    # Pipelines stay refused under a load, naming the field.
    assert "space.pp" in refused({**data, "space": {**data["space"], "pp": [1, 2]}})


@pytest.mark.parametrize("name", ["max_ttft_p90_s", "max_ttft_p99_s"])
def test_ttft_percentile_constraints_validate_hash_and_compile(name: str) -> None:
    """constraints.max_ttft_p90_s / max_ttft_p99_s, beside max_tpot_p99_s: the same rules (a
    serving: section, a positive finite number; one-line errors naming the field), part of the hash
    when set and absent from the canonical JSON when not (stored studies keep their identity), and
    a constraint column of the serving steady state's ttft_p90_s / ttft_p99_s minus the limit."""
    data = copy.deepcopy(SERVING)
    base = parse_spec(copy.deepcopy(data))
    assert name not in base.canonical_json()
    data["constraints"] = {**data["constraints"], name: 0.5}
    spec = parse_spec(copy.deepcopy(data))
    assert name in spec.canonical_json() and spec.spec_hash != base.spec_hash
    compiled = compile_study(spec)
    assert compiled.constraint_names[-1] == name
    evaluation = evaluate(compiled, compiled.space.all_indices())
    assert evaluation.serving is not None
    key = name.removeprefix("max_")
    column = [c for c in compiled.constraints if c.name == name][0]
    np.testing.assert_allclose(column.compute(evaluation), getattr(evaluation.serving, key) - 0.5)
    for bad, words in ((-1.0, f"constraints.{name}: Input should be greater than or equal to 0.000001"), ("1", name)):
        wrong = copy.deepcopy(data)
        wrong["constraints"][name] = bad
        assert words in refused(wrong)
    alone = {k: v for k, v in copy.deepcopy(SERVING).items() if k not in ("serving", "constraints")}
    alone["space"]["batch"] = [1]
    alone["objectives"] = [{"metric": "decode.step_latency_s"}]
    alone["constraints"] = {name: 0.5}
    assert f"constraints.{name} needs a serving: section" in refused(alone)
