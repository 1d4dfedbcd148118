"""gpt-oss's MXFP4 checkpoint as it is stored: only the routed experts are MXFP4 (4-bit E2M1
elements plus one 8-bit E8M0 scale per 32: 4.25 bits, OCP Microscaling spec v1.0), every other
weight 16-bit (its quantization_config's modules_to_not_convert: model.layers.*.self_attn,
model.layers.*.mlp.router, model.embed_tokens, lm_head). Expected bytes by hand from the
config.json shapes (biases, sinks and norms left out, as in every parameter count here)."""

import json

import numpy as np
import pytest

from cost_models.deployment import estimate
from cost_models.deployments import tensor_parallel
from cost_models.dtypes import BF16, FP4, FP8
from cost_models.hardware import get_hardware
from cost_models.hf_config import model_from_hf_config
from cost_models.models import get_model
from cost_models.serving import make_workloads, serve

H100 = get_hardware("h100-sxm")

D, Q, KV = 2880, 64 * 64, 8 * 64  # hidden, query width (64 heads x 64), KV width (8 x 64)
ATTENTION = D * Q * 2 + D * KV * 2  # q, o and k, v: 26,542,080 per block
EXPERT = 3 * D * D  # gate, up, down: 24,883,200
TABLES = 2 * 201088 * D  # embedding and untied lm_head


def _checkpoint_bytes(layers: int, experts: int) -> float:
    routed = layers * experts * EXPERT
    router = layers * D * experts
    return routed * (0.5 + 1 / 32) + (layers * ATTENTION + router) * 2 + TABLES * 2


def test_hand_arithmetic():
    # gpt-oss-120b: 114.67e9 expert weights x 4.25 bits = 60.92 GB, attention 0.955e9 x 2 B =
    # 1.91 GB, routers 13.3e6 x 2 B, embedding + lm_head 1.158e9 x 2 B = 2.32 GB: 65.17 GB, the
    # checkpoint's ~65 GB (the HF repository's safetensors, biases included). All as 4-bit: 60.1 GB.
    assert _checkpoint_bytes(36, 128) == pytest.approx(65.17e9, rel=1e-3)
    assert _checkpoint_bytes(24, 32) == pytest.approx(13.74e9, rel=1e-3)


@pytest.mark.parametrize(("name", "layers", "experts"), [("gpt-oss-120b", 36, 128), ("gpt-oss-20b", 24, 32)])
def test_estimate_charges_the_checkpoint_as_stored(name, layers, experts):
    d = tensor_parallel(get_model(name), H100, 1, batch=1, prompt_len=1024, gen_len=128, weight_dtype=FP4)
    weights = estimate(d, calibration=None).memory.weights_bytes_per_chip[0]
    assert weights == pytest.approx(_checkpoint_bytes(layers, experts), rel=1e-9)


def test_split_over_chips_and_the_serving_memory_agree():
    # TP 2: every matrix (experts included) halved but the routers, whole on every chip (36 x
    # 2880 x 128 at 2 B); the serving model's weights are the same.
    d = tensor_parallel(get_model("gpt-oss-120b"), H100, 2, batch=1, prompt_len=1024, gen_len=128, weight_dtype=FP4)
    static = estimate(d, calibration=None).memory.weights_bytes_per_chip[0]
    routers = 36 * D * 128 * 2
    assert static == pytest.approx((_checkpoint_bytes(36, 128) - routers) / 2 + routers, rel=1e-9)
    served = serve(d, make_workloads(backend="vllm", concurrency=8, prompt_len=1024, gen_len=128))
    assert served.weights_bytes_per_chip[0] == pytest.approx(static, rel=1e-9)


@pytest.mark.parametrize("fmt", [BF16, FP8])
def test_other_formats_are_one_format_throughout(fmt):
    # Served in bf16 or fp8 (the engine converts the checkpoint), every block weight is in it.
    d = tensor_parallel(get_model("gpt-oss-120b"), H100, 8, batch=1, prompt_len=1024, gen_len=128, weight_dtype=fmt)
    weights = estimate(d, calibration=None).memory.weights_bytes_per_chip[0]
    block = 36 * (ATTENTION + 128 * EXPERT + D * 128)
    per_byte = {BF16: 2.0, FP8: 1.0}[fmt]
    routers = 36 * D * 128  # whole on every chip
    expected = ((block - routers) * per_byte + TABLES * 2) / 8 + routers * per_byte
    assert weights == pytest.approx(expected, rel=1e-9)


def test_the_config_json_reads_the_same(tmp_path):
    config = {
        "model_type": "gpt_oss",
        "architectures": ["GptOssForCausalLM"],
        "hidden_size": 2880,
        "intermediate_size": 2880,
        "num_hidden_layers": 24,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "num_local_experts": 32,
        "num_experts_per_tok": 4,
        "vocab_size": 201088,
        "tie_word_embeddings": False,
        "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * 12,
        "max_position_embeddings": 131072,
        "quantization_config": {
            "modules_to_not_convert": [
                "model.layers.*.self_attn",
                "model.layers.*.mlp.router",
                "model.embed_tokens",
                "lm_head",
            ],
            "quant_method": "mxfp4",
        },
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    spec = model_from_hf_config(path)
    assert spec.mxfp4_experts
    d = tensor_parallel(spec, H100, 1, batch=1, prompt_len=1024, gen_len=128, weight_dtype=FP4)
    weights = estimate(d, calibration=None).memory.weights_bytes_per_chip[0]
    assert weights == pytest.approx(_checkpoint_bytes(24, 32), rel=1e-9)
    assert np.isfinite(weights)
