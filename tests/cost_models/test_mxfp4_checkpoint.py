"""gpt-oss's MXFP4 checkpoint as it is stored: only the routed experts are MXFP4 (4-bit E2M1
elements plus one 8-bit E8M0 scale per 32: 4.25 bits, OCP Microscaling spec v1.0), every other
weight 16-bit (its quantization_config's modules_to_not_convert: model.layers.*.self_attn,
model.layers.*.mlp.router, model.embed_tokens, lm_head). Expected bytes by hand from the
config.json shapes (biases, sinks and norms left out, as in every parameter count here)."""

import json

import numpy as np
import pytest

from cost_models.analysis import analyze_one
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


@pytest.mark.parametrize(("name", "layers", "experts"), [("gpt-oss-120b", 36, 128), ("gpt-oss-20b", 24, 32)])
def test_analyze_charges_the_checkpoint_as_stored(name, layers, experts):
    """tuner analyze (one chip) runs the model in its checkpoint format as estimate does, and its
    memory is the checkpoint's too: it counted the routed experts at fp4's 0.5 B without their
    MXFP4 scales, gpt-oss-120b 61.58 GB (65.17 - 114.67e9 / 32 B) where estimate says 65.17."""
    report = analyze_one(name, "h100-sxm", phase="decode", batch=1, seq_len=1, weight_bits="fp4", calibration="none")
    norms = layers * 2 * D * 2  # analyze also counts each block's two norm scales (its attn_norm, mlp_norm rows)
    weights = report["totals"]["memory_bytes"]["weights"]
    assert weights == pytest.approx(_checkpoint_bytes(layers, experts) + norms, rel=1e-9)


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


def _decode_ops(weight_dtype):
    from cost_models.inference_configs import make_configs
    from cost_models.operators import operator_costs

    c = make_configs(get_model("gpt-oss-120b"), phase="decode", batch=1, seq_len=1024, weight_dtype=weight_dtype)
    return c, operator_costs(c)


def test_decode_reads_the_attention_and_router_in_16_bits_and_the_experts_with_scales():
    # One token of gpt-oss-120b: per block q and o 2880 x 4096, k and v 2880 x 512 at 2 B (bf16 in
    # the checkpoint), the router 2880 x 128 at 2 B, and its 4 experts (4 of 128 woken by one
    # token: 128 (1 - (1 - 4/128)^1) = 4) at 0.5 + 1/32 B. Per step, 36 blocks: attention 1.911
    # GB (0.478 at fp4), experts 1.905 GB (1.792 without the scales).
    from cost_models.dtypes import BF16 as BF16_CODE
    from cost_models.operators import OP

    _, ops = _decode_ops(FP4)
    weight = ops.weight_bytes
    assert weight[OP["q_proj"], 0] == 2880 * 4096 * 2
    assert weight[OP["out_proj"], 0] == 4096 * 2880 * 2
    assert weight[OP["k_proj"], 0] == weight[OP["v_proj"], 0] == 2880 * 512 * 2
    assert weight[OP["router"], 0] == 2880 * 128 * 2
    assert weight[OP["expert_up"], 0] == pytest.approx(4 * 2880 * 2880 * (0.5 + 1 / 32), rel=1e-12)
    assert weight[OP["expert_down"], 0] == pytest.approx(4 * 2880 * 2880 * (0.5 + 1 / 32), rel=1e-12)
    assert ops.compute_dtype[OP["q_proj"], 0] == BF16_CODE
    per_step = 36 * sum(weight[OP[n], 0] for n in ("q_proj", "k_proj", "v_proj", "out_proj"))
    assert per_step == pytest.approx(1.911e9, rel=1e-3)
    # Served in bf16 or fp8 every block weight is in that format (no scales, no exception).
    _, fp8 = _decode_ops(FP8)
    assert fp8.weight_bytes[OP["q_proj"], 0] == 2880 * 4096 * 1
    assert fp8.weight_bytes[OP["expert_up"], 0] == 4 * 2880 * 2880 * 1


def test_decode_step_at_the_roofline_reads_the_checkpoint():
    # gpt-oss-120b, one H100 (3.35 TB/s), batch 1, pure roofline: the step streams the bytes above
    # plus the bf16 lm_head (201088 x 2880 x 2 = 1.158 GB) and the routers: >= 4.99 GB, 1.49 ms.
    # Charged all at fp4 it read 3.43 GB: 1.04 ms.
    d = tensor_parallel(get_model("gpt-oss-120b"), H100, 1, batch=1, prompt_len=1024, gen_len=128, weight_dtype=FP4)
    step = estimate(d, calibration=None).decode_step_latency_s[0]
    weights = 36 * (ATTENTION * 2 + D * 128 * 2 + 4 * EXPERT * (0.5 + 1 / 32)) + 201088 * D * 2
    assert weights == pytest.approx(4.99e9, rel=2e-3)
    assert step >= weights / H100.memory_bandwidth_bytes_per_s


def test_calibrated_attention_runs_the_bf16_gemm(monkeypatch):
    # Under a profile the attention projections are the bf16 GEMM of their shape (as in the
    # same model served in bf16), not the fp4 weights' weight-only kernel.
    import cost_models.deployment as deployment
    from cost_models.calibration import resolve_calibration
    from cost_models.operators import OP

    attention = [OP[n] for n in ("q_proj", "k_proj", "v_proj", "out_proj")]
    seen = {}
    original = deployment.calibrated_operator_times

    def record(chip_ops, configs, *rest, **kw):
        out = original(chip_ops, configs, *rest, **kw)
        seen[(int(configs.weight_dtype[0]), int(configs.phase[0]))] = out[attention, 0]
        return out

    monkeypatch.setattr(deployment, "calibrated_operator_times", record)
    profile = resolve_calibration("auto", H100)
    for fmt in (FP4, BF16):
        d = tensor_parallel(get_model("gpt-oss-120b"), H100, 1, batch=1, prompt_len=1024, gen_len=128, weight_dtype=fmt)
        estimate(d, calibration=profile)
    for phase in (0, 1):
        assert np.array_equal(seen[(FP4, phase)], seen[(BF16, phase)])
