"""Under a GPU engine's calibration profile the attention's Q, K and V projections are one GEMM and
a gated FFN's gate and up projections another, as vLLM and SGLang run them (QKVParallelLinear,
n = (heads + 2 x kv_heads) x head_dim / TP; MergedColumnParallelLinear, n = 2 x ffn / TP) and
TensorRT-LLM (its attention `qkv` Linear, its fused gate_up): one launch, one activation read and,
in fp8, one activation quantization per fused input. The fused seconds are split over the slots in
proportion to their FLOPs. Expected shapes are hand arithmetic from the catalog's config.json
numbers; expected seconds are the fitted GEMM model (efficiency.gemm_time_s) at those shapes."""

from __future__ import annotations

import numpy as np
import pytest

import cost_models.deployment as deployment
from cost_models.analysis import analyze_one
from cost_models.calibration import load_profile
from cost_models.deployments import tensor_parallel
from cost_models.dtypes import BF16, FP8
from cost_models.efficiency import gemm_time_s
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.operators import OP

H100, H200 = get_hardware("h100-sxm"), get_hardware("h200")
# Llama-3-8B (HF meta-llama/Meta-Llama-3-8B config.json): hidden 4096, 32 heads over 8 KV heads of
# 128, SwiGLU 14336.
D, Q_N, KV_N, FFN = 4096, 32 * 128, 8 * 128, 14336
QKV_N = Q_N + 2 * KV_N  # 6144: vLLM's qkv_proj output width at TP 1
TOKENS = 2048  # one prompt of 2048 tokens: m of every projection


def _slots(report: dict) -> dict[str, float]:
    return {row["name"]: row["time_s"] for row in report["operators"]}


@pytest.mark.parametrize(("bits", "fmt"), [("16", "bfloat16"), ("fp8", "fp8")])
def test_qkv_and_gate_up_are_each_one_gemm_at_the_fused_shape(bits, fmt):
    profile = load_profile("h100-sxm-vllm")
    params = profile.gemm[fmt]
    report = analyze_one(
        "llama-3-8b", "h100-sxm", phase="prefill", batch=1, seq_len=TOKENS, weight_bits=bits, act_bits=bits,
        flash_attention=True, calibration=profile,
    )  # fmt: skip
    slots = _slots(report)
    qkv = float(gemm_time_s(TOKENS, QKV_N, D, fmt, H100, params))
    gate_up = float(gemm_time_s(TOKENS, 2 * FFN, D, fmt, H100, params))
    assert slots["q_proj"] + slots["k_proj"] + slots["v_proj"] == pytest.approx(qkv, rel=1e-12)
    assert slots["gate_proj"] + slots["up_proj"] == pytest.approx(gate_up, rel=1e-12)
    # Each slot's share is its FLOPs' (2 m k n with the same m and k: its n).
    assert slots["q_proj"] == pytest.approx(qkv * Q_N / QKV_N, rel=1e-12)
    assert slots["k_proj"] == pytest.approx(qkv * KV_N / QKV_N, rel=1e-12)
    assert slots["v_proj"] == pytest.approx(qkv * KV_N / QKV_N, rel=1e-12)
    assert slots["gate_proj"] == pytest.approx(gate_up / 2, rel=1e-12)
    # Not three GEMMs: the k projection's own kernel (its launch, its 1024-wide tiles) is gone.
    alone = float(gemm_time_s(TOKENS, KV_N, D, fmt, H100, params))
    assert slots["k_proj"] < alone
    # The block's breakdown sums to the whole: every slot's time x its count is the total.
    total = sum(row["time_s"] * row["count"] for row in report["operators"])
    assert total == pytest.approx(report["totals"]["time_s"], rel=1e-12)


def test_one_activation_quantization_per_fused_input():
    """fp8 GEMMs quantize their bf16 input per token (GemmParams.quant_row_s, seconds per row,
    added after the kernel): raising it by 100 ns raises the QKV slots together by one input's
    2048 rows (204.8 us), not three inputs' (614.4 us), and gate + up by one (not two)."""
    base = load_profile("h100-sxm-vllm")
    # Without the measured shape correction (cost_models/gemm_shape.py), which multiplies the
    # whole time of each shape, the added rows' cost included: the count of quantizations is
    # what is checked here.
    fp8 = base.gemm["fp8"].model_copy(update={"shape_correction": None})
    base = base.model_copy(update={"gemm": {**base.gemm, "fp8": fp8}})
    extra_s = 1e-7
    raised = base.model_copy(
        update={"gemm": {**base.gemm, "fp8": fp8.model_copy(update={"quant_row_s": fp8.quant_row_s + extra_s})}}
    )
    kwargs = dict(phase="prefill", batch=1, seq_len=TOKENS, weight_bits="fp8", act_bits="fp8", flash_attention=True)
    before = _slots(analyze_one("llama-3-8b", "h100-sxm", calibration=base, **kwargs))
    after = _slots(analyze_one("llama-3-8b", "h100-sxm", calibration=raised, **kwargs))

    def grown(ops: tuple[str, ...]) -> float:
        return sum(after[op] for op in ops) - sum(before[op] for op in ops)

    assert grown(("q_proj", "k_proj", "v_proj")) == pytest.approx(TOKENS * extra_s, rel=1e-6)  # 204.8 us
    assert grown(("gate_proj", "up_proj")) == pytest.approx(TOKENS * extra_s, rel=1e-6)
    assert grown(("out_proj",)) == pytest.approx(TOKENS * extra_s, rel=1e-6)  # its own input


def test_tensor_parallel_fuses_the_per_chip_shapes(monkeypatch):
    """Llama-3.1-405B in fp8 on 8 H200s (TP 8, 8 KV heads: one per chip) prefilling 8 x 1024
    tokens under h200-vllm: each chip's QKV GEMM is m = 8192, k = 16384, n = (128 + 2 x 8) x 128 / 8
    = 2304, and its gate_up n = 2 x 53248 / 8 = 13312, each timed once by the fitted fp8 model."""
    profile = load_profile("h200-vllm")
    model = get_model("llama-3.1-405b")
    d = tensor_parallel(model, H200, 8, batch=8, prompt_len=1024, gen_len=2, weight_dtype=FP8, act_dtype=FP8)
    seen: list[np.ndarray] = []
    original = deployment.calibrated_operator_times

    def record(*args):
        times = original(*args)
        seen.append(times)
        return times

    monkeypatch.setattr(deployment, "calibrated_operator_times", record)
    deployment.estimate(d, calibration=profile)
    monkeypatch.undo()
    prefill = seen[0][:, 0]
    fmt = "fp8"
    qkv = float(gemm_time_s(8 * 1024, 2304, 16384, fmt, H200, profile.gemm[fmt]))
    gate_up = float(gemm_time_s(8 * 1024, 13312, 16384, fmt, H200, profile.gemm[fmt]))
    assert prefill[[OP["q_proj"], OP["k_proj"], OP["v_proj"]]].sum() == pytest.approx(qkv, rel=1e-12)
    assert prefill[OP["k_proj"]] == pytest.approx(qkv * 128 / 2304, rel=1e-12)
    assert prefill[[OP["gate_proj"], OP["up_proj"]]].sum() == pytest.approx(gate_up, rel=1e-12)


def test_the_pure_roofline_keeps_one_gemm_per_slot():
    """``--calibration none`` (the papers' convention) times each slot at its own roofline: the k
    projection of that prompt in bf16 on an H100 is its own bytes' time, 2 x (2048 x 4096 + 4096 x
    1024 + 2048 x 1024) B / 3.35 TB/s, or its FLOPs' at the bf16 peak, whichever is larger."""
    report = analyze_one("llama-3-8b", "h100-sxm", phase="prefill", batch=1, seq_len=TOKENS, calibration="none")
    flops_s = 2.0 * TOKENS * D * KV_N / H100.peak_table()[BF16]
    bytes_s = 2.0 * (TOKENS * D + D * KV_N + TOKENS * KV_N) / H100.memory_bandwidth_bytes_per_s
    assert _slots(report)["k_proj"] == pytest.approx(max(flops_s, bytes_s), rel=1e-9)
