"""tuner export serves the fp8 checkpoint whose kernels the estimate timed.

An fp8 trial of Qwen3-235B-A22B was scored with the block-scaled fp8 kernels (the fp8_block
fused-MoE class), while its export wrote the 16-bit repo plus --quantization fp8, which vLLM and
SGLang quantize at load with per-tensor scales: another kernel (on H100/H200 vLLM the per-tensor
fused MoE measures 2-5x the block-scaled one, data/kernels/moe_perf.csv.gz). Now the estimate
times fp8 weights by the scales of the checkpoint the export serves (ModelSpec.fp8_block_scales),
and the export serves Qwen's published block-scaled -FP8 repo (tuner.export.FP8_REPOS)."""

from __future__ import annotations

import json

import optuna
import pytest

from cost_models.calibrated_times import calibrated_format_notes
from cost_models.calibration import profile_for
from cost_models.deployments import Deployment
from cost_models.dtypes import BF16, FP8
from cost_models.hardware import get_hardware
from cost_models.models import get_model, model_catalog
from tuner.export import FP8_REPOS, HF_REPOS, engine_args, export
from tuner.pareto import load_study, study_front
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

#: A small study of qwen3-235b-a22b on H200 under vLLM whose space holds fp8 weights only, so every
#: front member is an fp8 deployment.
FP8_SPEC = {
    "name": "qwen-fp8",
    "model": "qwen3-235b-a22b",
    "hardware": "h200",
    "backend": "vllm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"tp": [4, 8], "batch": [16, 64], "weight_bits": ["fp8"]},
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "sampler": "exhaustive",
}


@pytest.fixture(scope="module")
def fp8_study(tmp_path_factory) -> optuna.Study:
    url = f"sqlite:///{tmp_path_factory.mktemp('fp8')}/qwen-fp8.db"
    run_search(FP8_SPEC, url)
    return load_study("qwen-fp8", url)


@pytest.mark.parametrize("fmt,key", [("vllm", "model"), ("sglang", "model_path"), ("trtllm", "model")])
def test_an_fp8_front_member_of_qwen3_235b_exports_the_fp8_repo(fp8_study, fmt, key) -> None:
    number = study_front(fp8_study).trials[0].number
    data = json.loads(export(fp8_study, number, "json"))
    assert data["quantization"]["weights"] == "fp8"
    args = json.loads(export(fp8_study, number, fmt))
    assert args["engine_args"][key] == "Qwen/Qwen3-235B-A22B-FP8"
    # The checkpoint's own method (quant_method fp8, weight_block_size [128, 128]) is read from it:
    # no --quantization, which would quantize the 16-bit repo at load with per-tensor scales.
    assert args["engine_args"].get("quantization") is None
    assert "--quantization" not in args.get("cli", "")
    assert "Qwen/Qwen3-235B-A22B-FP8" in args.get("cli", "Qwen/Qwen3-235B-A22B-FP8")
    assert any("Qwen/Qwen3-235B-A22B-FP8" in n and "128 x 128 block scales" in n for n in args["notes"]), args["notes"]


def _qwen(weights: str) -> Deployment:
    return Deployment(
        get_model("qwen3-235b-a22b"), get_hardware("h200"), (1, 1, 8), 64, 1024, 128, weight_dtype=weights
    )


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_other_formats_keep_the_16_bit_repo(engine) -> None:
    for weights in ("bf16", "int4"):
        assert engine_args(_qwen(weights), None, engine)["engine_args"][
            "model" if engine == "vllm" else "model_path"
        ] == ("Qwen/Qwen3-235B-A22B")


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_a_model_without_a_block_scaled_checkpoint_says_it_runs_the_per_tensor_kernels(engine) -> None:
    mixtral = Deployment(get_model("mixtral-8x7b"), get_hardware("h200"), (1, 1, 2), 64, 1024, 128, weight_dtype="fp8")
    data = engine_args(mixtral, None, engine)
    assert data["engine_args"]["quantization"] == "fp8"
    assert data["engine_args"]["model" if engine == "vllm" else "model_path"] == "mistralai/Mixtral-8x7B-v0.1"
    assert any("per-tensor scales: the per-tensor fp8 kernels, which the estimate timed" in n for n in data["notes"])


def test_a_model_file_with_block_scales_but_no_known_repo_says_the_kernel_differs() -> None:
    # A user's model (not the catalog's) that says its fp8 checkpoint is block-scaled: the estimate
    # times block-scaled kernels, and --quantization fp8 on whatever repo would run per-tensor ones.
    own = get_model("mixtral-8x7b").model_copy(update={"name": "my-moe", "fp8_block_scales": True})
    data = engine_args(
        Deployment(own, get_hardware("h200"), (1, 1, 2), 64, 1024, 128, weight_dtype="fp8"), None, "vllm"
    )
    assert any("launches another kernel than scored" in n for n in data["notes"]), data["notes"]


def test_every_block_scaled_catalog_model_has_a_checkpoint_the_export_serves() -> None:
    # The estimate times fp8 weights of a model with fp8_block_scales as block-scaled kernels; the
    # export must serve that checkpoint: the model's own (checkpoint_format fp8) or an FP8_REPOS one.
    for name, model in model_catalog().items():
        if model.fp8_block_scales:
            assert model.checkpoint_format == "fp8" or name in FP8_REPOS, name
    for name, repo in FP8_REPOS.items():
        assert model_catalog()[name].fp8_block_scales, name
        assert repo == HF_REPOS[name] + "-FP8"  # Qwen's naming: the 16-bit repo + "-FP8"


def test_the_estimate_notes_say_which_fp8_kernels_timed_the_weights() -> None:
    h200 = get_hardware("h200")
    vllm, sglang = profile_for("h200", "vllm"), profile_for("h200", "sglang")
    qwen = get_model("qwen3-235b-a22b")
    notes = calibrated_format_notes(vllm, h200, qwen.experts, FP8, BF16, fp8_block_scales=True)
    assert any("128 x 128 block scales" in n and "fp8_block fused-MoE class" in n for n in notes), notes
    mixtral = get_model("mixtral-8x7b")
    notes = calibrated_format_notes(vllm, h200, mixtral.experts, FP8, BF16, fp8_block_scales=False)
    assert any("--quantization fp8, per-tensor weight scales" in n and "fp8 fused-MoE class" in n for n in notes), notes
    # SGLang measured block-scaled fp8 MoE rows only: the per-tensor experts borrow that class, said so.
    assert "fp8" not in sglang.moe and "fp8_block" in sglang.moe
    notes = calibrated_format_notes(sglang, h200, mixtral.experts, FP8, BF16, fp8_block_scales=False)
    assert any("has no fp8 fused-MoE class" in n and "another kernel than the deployment runs" in n for n in notes), (
        notes
    )
    # A dense model without block scales keeps the one W8A8 line it had.
    dense = get_model("llama-3-8b")
    assert not any("block scales" in n for n in calibrated_format_notes(vllm, h200, dense.experts, FP8, BF16))


def test_tuner_estimate_says_which_fp8_kernels_it_charged() -> None:
    # The wiring: estimate_one passes the model's fp8_block_scales to the notes and to the times.
    from cost_models.deployment import estimate_one

    shape = dict(hardware="h200", batch=64, prompt_len=1024, gen_len=256, weight_bits="fp8", backend="vllm")
    mixtral = estimate_one(model="mixtral-8x7b", tp=2, phase="decode", **shape)
    assert any("per-tensor weight scales" in n and "fp8 fused-MoE class" in n for n in mixtral["notes"])
    qwen = estimate_one(model="qwen3-235b-a22b", tp=8, phase="decode", **shape)
    assert any("block scales" in n and "fp8_block fused-MoE class" in n for n in qwen["notes"])
    # Quantized at load (per-tensor kernels) the same Qwen3 deployment is slower on H200 vLLM: its
    # per-tensor fused MoE measures several times the block-scaled one (test_moe_kernels.py).
    at_load = get_model("qwen3-235b-a22b").model_copy(update={"fp8_block_scales": False})
    per_tensor = estimate_one(model=at_load, tp=8, phase="decode", **shape)
    assert per_tensor["decode"]["step_latency_s"] > qwen["decode"]["step_latency_s"]
