"""Engine arguments for TP / PP / EP / DP, checked against the engines' documented flags, and
the refusals of what an engine cannot run."""

import pytest

from cost_models.deployments import Deployment
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from tuner.export import engine_args

QWEN = get_model("qwen3-235b-a22b")
LLAMA = get_model("llama-2-13b")


def _row(model, tp, **degrees):
    return Deployment(
        model=model,
        hardware=get_hardware("h200"),
        mesh=(1, 1, tp),
        batch=16,
        prompt_len=1024,
        gen_len=128,
        prefill_ffn_layout="ws_1d",
        decode_ffn_layout="ws_1d",
        flash_attention=True,
        weight_dtype="fp8",
        **degrees,
    )


def test_vllm_runs_ep_as_tp_times_dp_with_pipeline():
    args = engine_args(_row(QWEN, 8, expert_parallel=8, pipeline_parallel=2), None, "vllm")
    assert "--tensor-parallel-size 8 --pipeline-parallel-size 2 --enable-expert-parallel" in args["cli"]
    assert "--data-parallel-size" not in args["cli"]
    args = engine_args(_row(QWEN, 2, expert_parallel=8, data_parallel=4), None, "vllm")
    assert (
        "--tensor-parallel-size 2 --pipeline-parallel-size 1 --data-parallel-size 4 --enable-expert-parallel"
        in (args["cli"])
    )


def test_vllm_refuses_an_expert_parallel_smaller_than_tp_times_dp():
    with pytest.raises(InvalidInputError) as error:
        engine_args(_row(QWEN, 4, expert_parallel=4, data_parallel=2), None, "vllm")
    assert "EP = TP x DP" in str(error.value) and "EP 4" in str(error.value)


def test_sglang_counts_every_gpu_of_a_dp_attention_stage():
    args = engine_args(_row(QWEN, 1, expert_parallel=8, data_parallel=8), None, "sglang")
    assert "--tp-size 8 --pp-size 1 --dp-size 8 --enable-dp-attention --ep-size 8" in args["cli"]
    dense = engine_args(_row(LLAMA, 2, data_parallel=2), None, "sglang")  # replicas
    assert "--tp-size 2 --pp-size 1 --dp-size 2 --dtype" in dense["cli"]


def test_trtllm_moe_sizes_multiply_to_tp_size():
    args = engine_args(_row(QWEN, 1, expert_parallel=4, data_parallel=8), None, "trtllm")
    extra = args["extra_llm_api_options"]
    assert args["engine_args"]["tp_size"] == 8
    assert extra["moe_expert_parallel_size"] == 4 and extra["moe_tensor_parallel_size"] == 2
    assert extra["enable_attention_dp"] is True
    with pytest.raises(InvalidInputError, match="attention data parallelism"):
        engine_args(_row(QWEN, 2, expert_parallel=4, data_parallel=2), None, "trtllm")
