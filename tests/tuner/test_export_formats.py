"""Weight and KV-cache formats in engine exports: every engine x every format gives arguments or a
one-line refusal on ``format``, never a KeyError; fp4 is MXFP4 for gpt-oss and NVFP4 otherwise."""

from __future__ import annotations

import json

import optuna
import pytest

from cost_models.deployments import Deployment
from cost_models.dtypes import DTYPE_NAMES
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from tuner.export import ENGINES, engine_args, export

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Per engine, the quantization argument each weight format gets: vLLM and SGLang
#: (--quantization: fp8 online, gptq_marlin for int8/int4 weight-only GPTQ checkpoints, mxfp4 for gpt-oss's
#: own MXFP4 checkpoint, modelopt_fp4 for an NVFP4 ModelOpt checkpoint); TensorRT-LLM reads the
#: format from the checkpoint (no argument).
EXPECTED_QUANTIZATION = {
    ("gpt-oss-20b", "bf16"): None,
    ("gpt-oss-20b", "fp8"): "fp8",
    ("gpt-oss-20b", "int8"): "gptq_marlin",
    ("gpt-oss-20b", "int4"): "gptq_marlin",
    ("gpt-oss-20b", "fp4"): "mxfp4",
    ("llama-3.1-8b", "bf16"): None,
    ("llama-3.1-8b", "fp8"): "fp8",
    ("llama-3.1-8b", "int8"): "gptq_marlin",
    ("llama-3.1-8b", "int4"): "gptq_marlin",
    ("llama-3.1-8b", "fp4"): "modelopt_fp4",
}
#: Per engine, the KV-cache dtype of each KV format (None: refused).
EXPECTED_KV = {
    "vllm": {"bf16": "auto", "fp8": "fp8", "int8": "fp8", "int4": None, "fp4": None},
    "sglang": {"bf16": "auto", "fp8": "fp8_e4m3", "int8": "fp8_e4m3", "int4": None, "fp4": "fp4_e2m1"},
    "trtllm": {"bf16": "auto", "fp8": "fp8", "int8": "fp8", "int4": None, "fp4": "nvfp4"},
}


def _deployment(model: str, weights: str, kv: str) -> Deployment:
    return Deployment(get_model(model), get_hardware("b200"), (1, 1, 2), 8, 512, 64, weight_dtype=weights, kv_dtype=kv)


def _kv_of(data: dict, engine: str) -> str:
    if engine == "trtllm":
        return data["extra_llm_api_options"]["kv_cache_config"]["dtype"]
    return data["engine_args"]["kv_cache_dtype"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("model", ["gpt-oss-20b", "llama-3.1-8b"])
@pytest.mark.parametrize("weights", DTYPE_NAMES)
@pytest.mark.parametrize("kv", DTYPE_NAMES)
def test_every_engine_and_format_gives_arguments_or_a_refusal(engine, model, weights, kv):
    deployment = _deployment(model, weights, kv)
    expected_kv = EXPECTED_KV[engine][kv]
    if expected_kv is None:
        with pytest.raises(InvalidInputError) as raised:
            engine_args(deployment, None, engine)
        assert raised.value.field == "format"
        assert f"no {kv} KV cache" in str(raised.value) and "\n" not in str(raised.value)
        return
    data = engine_args(deployment, None, engine)
    assert _kv_of(data, engine) == expected_kv
    if engine == "trtllm":
        assert "quantization" not in data["engine_args"]
    else:
        quantization = EXPECTED_QUANTIZATION[(model, weights)]
        if (model, weights) == ("gpt-oss-20b", "fp4"):
            quantization = None  # the engines detect a pre-quantized checkpoint themselves (its own MXFP4)
        assert data["engine_args"]["quantization"] == quantization
        assert (f"--quantization {quantization}" in data["cli"]) == (quantization is not None)


def test_fp4_notes_name_the_checkpoint_each_engine_needs():
    nvfp4 = _deployment("llama-3.1-8b", "fp4", "bf16")
    for engine in ("vllm", "sglang"):
        assert any("Model Optimizer" in n and "modelopt_fp4" in n for n in engine_args(nvfp4, None, engine)["notes"])
    assert any("NVFP4" in n for n in engine_args(nvfp4, None, "trtllm")["notes"])
    mxfp4 = engine_args(_deployment("gpt-oss-20b", "fp4", "bf16"), None, "trtllm")["notes"]
    assert any("MXFP4" in n and "gpt-oss checkpoint" in n for n in mxfp4)
    # gpt-oss's checkpoint is MXFP4: a 16-bit trial needs another checkpoint, and says so.
    bf16 = engine_args(_deployment("gpt-oss-20b", "bf16", "bf16"), None, "vllm")["notes"]
    assert any("checkpoint stores fp4" in n for n in bf16)


def test_sglang_refuses_nvfp4_weights_before_blackwell():
    """SGLang's ModelOptFp4Config.get_min_capability is 100 (python/sglang/srt/layers/quantization/
    modelopt_quant.py) and it has no weight-only NVFP4 path: on an H200 (compute capability 9.0) it
    refuses --quantization modelopt_fp4 at start-up. The export wrote it, with a note that "elsewhere
    the weights run weight-only" (vLLM's Marlin fallback, not SGLang's). gpt-oss's MXFP4 runs on Hopper."""
    h200 = Deployment(get_model("qwen3-235b-a22b"), get_hardware("h200"), (1, 1, 8), 8, 512, 64, weight_dtype="fp4")
    with pytest.raises(InvalidInputError) as raised:
        engine_args(h200, None, "sglang")
    assert raised.value.field == "format" and "Blackwell" in str(raised.value) and "h200" in str(raised.value)
    assert engine_args(h200, None, "vllm")["engine_args"]["quantization"] == "modelopt_fp4"
    b200 = Deployment(get_model("qwen3-235b-a22b"), get_hardware("b200"), (1, 1, 8), 8, 512, 64, weight_dtype="fp4")
    assert engine_args(b200, None, "sglang")["engine_args"]["quantization"] == "modelopt_fp4"
    gpt_oss = Deployment(get_model("gpt-oss-120b"), get_hardware("h200"), (1, 1, 2), 8, 512, 64, weight_dtype="fp4")
    assert engine_args(gpt_oss, None, "sglang")["engine_args"]["quantization"] is None


def test_fp4_trial_exports_through_a_study():
    # A stored fp4 trial of gpt-oss-120b on 8 B200s: through tuner export as vLLM arguments.
    deployment = Deployment(
        get_model("gpt-oss-120b"), get_hardware("b200"), (1, 1, 8), 64, 1024, 256, weight_dtype="fp4"
    )
    study = optuna.create_study(directions=["minimize"])
    attrs = {"deployment": deployment.to_dict(), "estimate": {"params": {}}}
    study.add_trial(optuna.trial.create_trial(values=[1.0], user_attrs=attrs))
    data = json.loads(export(study, 0, "vllm"))
    assert data["engine_args"]["model"] == "openai/gpt-oss-120b"
    # vLLM reads the MXFP4 method from the checkpoint's quantization_config (no --quantization).
    assert data["engine_args"]["quantization"] is None and "--quantization" not in data["cli"]
    assert any("quantization_config" in note for note in data["notes"])
    assert "--tensor-parallel-size 8" in data["cli"]


def _stored(deployment: Deployment) -> optuna.Study:
    study = optuna.create_study(directions=["minimize"])
    attrs = {"deployment": deployment.to_dict(), "estimate": {"params": {}}}
    study.add_trial(optuna.trial.create_trial(values=[1.0], user_attrs=attrs))
    return study


def test_jax_export_of_a_latent_and_a_windowed_cache():
    # DeepSeek-V3 on a 4x4x4 TPU v4 slice, 2D weight-stationary: the latent cache [61, B, S, 576]
    # is one array, split by nothing (head sharding keeps it whole on every chip).
    mla = Deployment(
        get_model("deepseek-v3"),
        get_hardware("tpu-v4"),
        (4, 4, 4),
        16,
        1024,
        64,
        prefill_ffn_layout="ws_2d",
        decode_ffn_layout="ws_2d",
        weight_dtype="int8",
    )
    jax = json.loads(export(_stored(mla), 0, "jax"))
    kv = jax["phases"]["decode"]["kv_cache"]
    assert kv["dims"] == ["layers", "B", "S", "Rkv+R"] and kv["shape"] == [61, 16, 1088, 576]
    assert kv["spec"] == [None, None, None, None] and kv["arrays"] == 1
    weights = jax["phases"]["decode"]["weights"]
    assert weights["kv_b"]["shape"] == [512, 128, 256] and weights["kv_b"]["stored"] == ["x", ["y", "z"], None]
    # Gemma 3 27B with a 4096-token prompt: 52 windowed blocks keep 1024 tokens, the 10 others 4160.
    windowed = Deployment(
        get_model("gemma-3-27b"),
        get_hardware("tpu-v4"),
        (1, 2, 4),
        8,
        4096,
        64,
        prefill_ffn_layout="ws_1d",
        decode_ffn_layout="ws_1d",
    )
    kv = json.loads(export(_stored(windowed), 0, "jax"))["phases"]["decode"]["kv_cache"]
    assert kv["shape"] == [10, 8, 4160, 16, 128] and kv["arrays"] == 2
    assert kv["sliding_window"]["shape"] == [52, 8, 1024, 16, 128]
    assert kv["sliding_window"]["window"] == 1024
