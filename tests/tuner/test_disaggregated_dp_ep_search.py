"""Disaggregated studies with attention DP and EP in the decode pool (``space.dp``/``space.ep``
under ``serving.mode: disaggregated`` or ``both``): each candidate's steady state is
``serve_disaggregated``'s of its decode instance at its degrees and a TP prefill instance (DP and
EP 1), and ``tuner export`` writes each pool's engine flags (SGLang ``--enable-dp-attention
--dp-size --ep-size`` with ``--disaggregation-mode``). Before, such a study was refused ("space.ep:
a disaggregated serving study charges tensor parallelism only")."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import run_cli
from cost_models.deployments import make_deployments, stored_chips
from cost_models.disaggregated import serve_disaggregated
from cost_models.dtypes import FP8
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.serving import make_workloads
from search_spaces.space import compile_study, evaluate, structurally_valid
from search_spaces.spec import parse_spec
from tuner.pareto import load_study
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

STUDY: dict = {
    "name": "disagg-dp-ep",
    "model": "deepseek-v3",
    "hardware": "h200",
    "workload": {"prompt_len": 2048, "gen_len": 256},
    "space": {"tp": [1], "dp": [8], "ep": [8], "weight_bits": ["fp8"], "kv_bits": ["fp8"]},
    "serving": {
        "mode": "disaggregated",
        "request_rate": [20.0],
        "prefill_chips": [8],
        "prefill_instances": [2],
        "decode_instances": [1],
    },
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.ttft_s"}],
    "backend": "sglang",
    "sampler": "exhaustive",
}


def _deepseek(tp: int, dp: int, ep: int):
    return make_deployments(
        get_model("deepseek-v3"), get_hardware("h200"), mesh=np.array([[1, 1, tp]]), batch=dp, prompt_len=2048,
        gen_len=256, prefill_ffn_layout=0, decode_ffn_layout=0, flash_attention=True, data_parallel=dp,
        expert_parallel=ep, weight_dtype=FP8, act_dtype=FP8, kv_dtype=FP8,  # fp8 weights run W8A8
    )  # fmt: skip


def test_a_disaggregated_study_scores_the_decode_pools_dp_ranks() -> None:
    """2 prefill instances of TP8 (tensor-parallel MoE) + 1 decode instance of TP1 DP8 EP8: the
    candidate's steady state is serve_disaggregated's on those deployments, 24 chips."""
    compiled = compile_study(parse_spec(json.loads(json.dumps(STUDY))))
    indices = compiled.space.all_indices()
    assert list(structurally_valid(compiled, indices)) == [True]
    evaluation = evaluate(compiled, indices)
    assert evaluation.pools is not None and evaluation.pools.estimate is not None
    assert evaluation.pools.prefill is not None
    assert evaluation.pools.prefill.data_parallel[0] == 1 and evaluation.pools.prefill.expert_parallel[0] == 1
    direct = serve_disaggregated(
        _deepseek(8, 1, 1), _deepseek(1, 8, 8),
        # Each decode rank at SGLang's default (its --max-running-requests unset: each rank's own).
        make_workloads(backend="sglang", request_rate=20.0, prompt_len=2048, gen_len=256, data_parallel=8),
        prefill_instances=2, decode_instances=1, calibration=compiled.calibration,
    )  # fmt: skip
    e = evaluation.pools.estimate
    assert e.chips[0] == 2 * 8 + 8
    for name in ("ttft_s", "tpot_s", "decode_capacity_rps", "prefill_capacity_rps", "max_concurrency", "running"):
        assert getattr(e, name)[0] == pytest.approx(getattr(direct, name)[0], rel=1e-12), name
    # Each of the decode instance's 8 ranks at SGLang's default 2048 running requests (before:
    # 2048 over the 8, 256 a rank, which bounded it at 2048): now each rank's KV cache bounds it
    # (3336 in all, 417 a rank), under 8 x 2048.
    assert 2048 < e.max_concurrency[0] < 8 * 2048


def test_mode_both_accepts_dp_and_ep() -> None:
    spec = {**json.loads(json.dumps(STUDY)), "serving": {**STUDY["serving"], "mode": "both"}}
    compiled = compile_study(parse_spec(spec))
    assert compiled.space.dimensions["disaggregated"] == (False, True)


def test_tensorrt_llm_runs_an_moe_decode_pools_attention_dp_at_tp1_only() -> None:
    """TensorRT-LLM's enable_attention_dp runs each rank's attention on one GPU: a TP2 DP4 EP8
    decode instance is an infeasible candidate, TP1 DP8 EP8 a feasible one (as in an aggregated
    study)."""
    spec = json.loads(json.dumps(STUDY))
    spec["backend"] = "trtllm"
    spec["space"] = {**spec["space"], "tp": [1, 2], "dp": [4, 8]}
    compiled = compile_study(parse_spec(spec))
    indices = compiled.space.all_indices()
    valid = structurally_valid(compiled, indices)
    tp = compiled.space.values["tp"][indices["tp"], 2]  # a TP choice is its 1 x 1 x TP mesh
    dp = compiled.space.values["dp"][indices["dp"]]
    assert {(int(a), int(b)): bool(v) for a, b, v in zip(tp, dp, valid, strict=True)} == {
        (1, 4): False,  # 4 chips: EP 8 does not divide TP x DP = 4
        (1, 8): True,
        (2, 4): False,  # attention DP at TP 2
        (2, 8): False,
    }


def test_export_writes_each_pools_dp_attention_flags(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """SGLang (docs.sglang.io, PD disaggregation with DP attention): the decode instance
    --tp-size 8 --dp-size 8 --enable-dp-attention --ep-size 8 --disaggregation-mode decode (its
    --tp-size counts every GPU under DP attention), the prefill instance --tp-size 8 alone with
    --disaggregation-mode prefill; TensorRT-LLM's decode instance enable_attention_dp."""
    url = f"sqlite:///{tmp_path}/dp.db"
    run_search(json.loads(json.dumps(STUDY)), url)
    trial = load_study(STUDY["name"], url).trials[0]
    args = ("export", STUDY["name"], "--storage", url, "--trial", str(trial.number), "--allow-infeasible")
    code, out, err = run_cli(capsys, *args, "--format", "sglang")
    assert code == 0, err
    data = json.loads(out)
    decode, prefill = data["decode"]["engine_args"], data["prefill"]["engine_args"]
    assert (decode["tp_size"], decode["dp_size"], decode["enable_dp_attention"], decode["ep_size"]) == (8, 8, True, 8)
    assert decode["disaggregation_mode"] == "decode"
    assert "--enable-dp-attention" in data["decode"]["cli"] and "--disaggregation-mode decode" in data["decode"]["cli"]
    assert prefill["tp_size"] == 8 and prefill["disaggregation_mode"] == "prefill"
    assert prefill.get("dp_size") is None and prefill.get("ep_size") is None and not prefill.get("enable_dp_attention")
    assert (data["prefill"]["instances"], data["decode"]["instances"]) == (2, 1)
    # The stored trial's chips (pareto's and show's column): 2 x 8 + 8, not the prefill mesh x
    # the decode instance's DP (2 x 8 x 8 + 8).
    assert stored_chips(trial.user_attrs["deployment"], trial.user_attrs["serving"]) == 24
    # With no serving.max_batch_size each of the decode instance's 8 ranks was scored at SGLang's
    # default 2048 (unset, SGLang bounds each rank by its own memory, model_runner.py), 8 x 2048 =
    # 16384 in all, which the export writes for SGLang to divide by --dp-size. A decode rank was
    # scored at a decode-only iteration's budget: min(its 8192 / 8 = 1024 tokens, its 2048
    # sequences) = 1024; SGLang divides --chunked-prefill-size min(8192, 16384) = 8192 by 8 itself.
    assert decode["chunked_prefill_size"] == 8192 and decode["max_running_requests"] == 8 * 2048
    code, out, err = run_cli(capsys, *args, "--format", "trtllm")
    assert code == 0, err
    data = json.loads(out)
    assert data["decode"]["extra_llm_api_options"]["enable_attention_dp"] is True
    assert data["decode"]["extra_llm_api_options"]["moe_expert_parallel_size"] == 8
    assert data["prefill"]["extra_llm_api_options"]["enable_attention_dp"] is False
    assert data["prefill"]["engine_args"]["tp_size"] == 8
    # TensorRT-LLM's attention-DP ranks take max_num_tokens as written: the 1024 a decode rank was
    # scored with under SGLang (above), not min(8192, a rank's 2048 sequences) = 2048 (before
    # 2026-12-06), nor the ranks' default 256 (before that).
    assert data["decode"]["engine_args"]["max_num_tokens"] == 1024


PREFILL_DP_STUDY: dict = {
    **STUDY,
    "name": "disagg-prefill-dp",
    "serving": {**STUDY["serving"], "prefill_chips": [1, 8], "prefill_dp": [1, 8], "prefill_ep": [1, 8]},
}


def test_a_study_searches_the_prefill_instances_dp_and_ep(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """serving.prefill_dp and serving.prefill_ep make a prefill instance TP x DP x EP (SGLang's
    prefill instances with DP attention): of the 2 prefill TPs x 2 DPs x 2 EPs, the ones a
    deployment has (EP dividing TP x DP: TP1 DP1 EP8 has not) and SGLang launches; TP1 DP8 EP8
    scored as serve_disaggregated's, stored and exported with its own flags, its chips counted."""
    url = f"sqlite:///{tmp_path}/pdp.db"
    spec = json.loads(json.dumps(PREFILL_DP_STUDY))
    compiled = compile_study(parse_spec(json.loads(json.dumps(spec))))
    indices = compiled.space.all_indices()
    valid = structurally_valid(compiled, indices)
    tp = compiled.space.values["prefill_mesh"][indices["prefill_mesh"], 2]
    dp = compiled.space.values["prefill_dp"][indices["prefill_dp"]]
    ep = compiled.space.values["prefill_ep"][indices["prefill_ep"]]
    by_degrees = {(int(a), int(b), int(c)): bool(v) for a, b, c, v in zip(tp, dp, ep, valid, strict=True)}
    assert by_degrees == {
        (1, 1, 1): True, (1, 1, 8): False, (1, 8, 1): True, (1, 8, 8): True,
        (8, 1, 1): True, (8, 1, 8): True, (8, 8, 1): True, (8, 8, 8): True,  # 64 GPUs, 8 nodes
    }  # fmt: skip
    evaluation = evaluate(compiled, indices)
    assert evaluation.pools is not None and evaluation.pools.estimate is not None
    row = int(np.flatnonzero((tp == 1) & (dp == 8) & (ep == 8))[0])
    where = int(np.searchsorted(np.flatnonzero(evaluation.pools.disaggregated), row))
    direct = serve_disaggregated(
        _deepseek(1, 8, 8), _deepseek(1, 8, 8),
        # Each decode rank at SGLang's default (its --max-running-requests unset: each rank's own).
        make_workloads(backend="sglang", request_rate=20.0, prompt_len=2048, gen_len=256, data_parallel=8),
        prefill_instances=2, decode_instances=1, calibration=compiled.calibration,
    )  # fmt: skip
    e = evaluation.pools.estimate
    for name in ("ttft_s", "tpot_s", "prefill_capacity_rps", "decode_capacity_rps", "chips"):
        assert getattr(e, name)[where] == pytest.approx(getattr(direct, name)[0], rel=1e-12), name
    run_search(spec, url)
    trial = next(
        t for t in load_study(spec["name"], url).trials
        if (t.params["prefill_mesh"], t.params["prefill_dp"], t.params["prefill_ep"]) == ("1x1x1", 8, 8)
    )  # fmt: skip
    assert trial.user_attrs["serving"]["prefill_dp"] == 8 and trial.user_attrs["serving"]["prefill_ep"] == 8
    assert stored_chips(trial.user_attrs["deployment"], trial.user_attrs["serving"]) == 2 * 8 + 8
    args = ("export", spec["name"], "--storage", url, "--trial", str(trial.number), "--allow-infeasible")
    code, out, err = run_cli(capsys, *args, "--format", "sglang")
    assert code == 0, err
    prefill = json.loads(out)["prefill"]["engine_args"]
    assert (prefill["tp_size"], prefill["dp_size"], prefill["enable_dp_attention"], prefill["ep_size"]) == (
        8,
        8,
        True,
        8,
    )
    assert prefill["disaggregation_mode"] == "prefill"


@pytest.mark.parametrize(
    ("serving", "field"),
    [
        ({"mode": "aggregated", "prefill_dp": [2]}, "prefill_dp"),
        ({"prefill_ep": [3]}, "serving.prefill_ep"),
    ],
)
def test_prefill_degrees_are_refused_where_they_mean_nothing(serving: dict, field: str) -> None:
    from cost_models.errors import InvalidInputError

    spec = json.loads(json.dumps(STUDY))
    spec["serving"] = {k: v for k, v in {**spec["serving"], **serving}.items()}
    if serving.get("mode") == "aggregated":
        for name in ("prefill_chips", "prefill_instances", "decode_instances"):
            spec["serving"].pop(name)
    with pytest.raises(InvalidInputError, match=field):
        compile_study(parse_spec(spec))


def test_an_sglang_decode_pools_token_budget_reaches_each_rank_of_another_engine(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The study above is scored under SGLang: a decode rank at min(8192 / 8 = 1024 tokens, its
    2048 sequences) = 1024 (SGLang divides --chunked-prefill-size by --dp-size). vLLM's engine
    cores and TensorRT-LLM's attention-DP ranks take their budget as written: they get 1024, not
    min(8192, 2048) = 2048, twice the decode-only iteration the decode instance was scored to
    reserve activations for."""
    url = f"sqlite:///{tmp_path}/dp.db"
    run_search(json.loads(json.dumps(STUDY)), url)
    trial = load_study(STUDY["name"], url).trials[0]
    args = ("export", STUDY["name"], "--storage", url, "--trial", str(trial.number), "--allow-infeasible")
    for fmt, key in (("trtllm", "max_num_tokens"), ("vllm", "max_num_batched_tokens")):
        code, out, err = run_cli(capsys, *args, "--format", fmt)
        assert code == 0, err
        data = json.loads(out)
        assert data["decode"]["engine_args"][key] == 1024, fmt
        assert any("1024 tokens an iteration in each of its 8 DP ranks" in n for n in data["notes"]), fmt


def test_an_sglang_prefill_pools_token_budget_reaches_each_rank_of_another_engine(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The TP1 DP8 EP8 prefill instance of the study above, scored under SGLang: each prefill rank
    at 8192 / 8 = 1024 tokens an iteration (SGLang divides --chunked-prefill-size by --dp-size,
    cost_models.serving.rank_workloads). TensorRT-LLM's attention-DP ranks take their budget as
    written: 1024, not the 8192 a rank written before."""
    url = f"sqlite:///{tmp_path}/pdp.db"
    spec = json.loads(json.dumps(PREFILL_DP_STUDY))
    run_search(spec, url)
    trial = next(
        t for t in load_study(spec["name"], url).trials
        if (t.params["prefill_mesh"], t.params["prefill_dp"], t.params["prefill_ep"]) == ("1x1x1", 8, 8)
    )  # fmt: skip
    args = ("export", spec["name"], "--storage", url, "--trial", str(trial.number), "--allow-infeasible")
    code, out, err = run_cli(capsys, *args, "--format", "trtllm")
    assert code == 0, err
    prefill = json.loads(out)["prefill"]
    assert prefill["engine_args"]["max_num_tokens"] == 1024
    assert any("1024 tokens an iteration in each of its 8 DP ranks" in n for n in prefill["notes"])
    code, out, err = run_cli(capsys, *args, "--format", "sglang")
    assert json.loads(out)["prefill"]["engine_args"]["chunked_prefill_size"] == 8192  # as scored
