"""cost_models.analysis: whole-model totals and memory footprints of a tiny model, by hand.

The model: 2 layers, d_model 4, 2 query heads and 1 KV head of width 2, d_ff 8 (gelu: up and
down only), vocab 10, untied lm_head. Decode, batch 3, seq_len 5 (N = 3 new tokens, each
attending to 5 keys), bf16 everywhere, default counting convention.
"""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.analysis import analysis_report, analyze
from cost_models.dtypes import INT8
from cost_models.hardware import HardwareSpec, get_hardware
from cost_models.inference_configs import make_configs
from cost_models.models import ModelSpec
from cost_models.operators import MOE_FFN, OPERATOR_NAMES

TINY = ModelSpec(
    name="tiny", source="hand-made", layers=2, d_model=4, heads=2, kv_heads=1, d_head=2, d_ff=8, ffn="gelu", vocab=10
)


def chip(peak: float, bandwidth: float) -> HardwareSpec:
    return HardwareSpec.model_validate(
        {
            "name": "round",
            "source": "hand-made for tests",
            "kind": "gpu",
            "peak_ops_per_s": {"bf16": peak},
            "memory_bytes": 1e9,
            "memory_bandwidth_bytes_per_s": bandwidth,
            "interconnect": {
                "kind": "switched",
                "domain_size": 1,
                "domain_bandwidth_bytes_per_s": 1e9,
                "network_bandwidth_bytes_per_s": 1e9,
                "domain_latency_s": 0.0,
                "network_latency_s": 0.0,
            },
        }
    )


def tiny(model: ModelSpec = TINY, hardware: HardwareSpec | None = None, **kwargs):
    settings = {"phase": "decode", "batch": 3, "seq_len": 5, **kwargs}
    return analyze(make_configs(model, **settings), hardware or get_hardware("l4"))


# FLOPs of one block (N = 3 tokens, d = 4, q width 4, kv width 2, F = 8, 3 x 2 x 1 x 5 = 30 q.k pairs):
#   attn_norm 7 x 12 = 84; q_proj 2 x 3 x 4 x 4 = 96; k_proj, v_proj 2 x 3 x 4 x 2 = 48 each;
#   qk 2 x 2 x 30 = 120; softmax 5 x 30 = 150; sv 120; out_proj 96; attn_add 12; mlp_norm 84;
#   up 2 x 3 x 4 x 8 = 192; gelu 8 x 24 = 192; down 192; mlp_add 12  ->  1446 per block.
# Two blocks: 2892; lm_head on the 3 new tokens: 2 x 3 x 4 x 10 = 240. Total 3132.
TOTAL_FLOPS = 3132.0


def test_total_flops_by_hand() -> None:
    assert tiny().total_flops.tolist() == [TOTAL_FLOPS]


def test_total_time_is_the_sum_of_operator_times_times_repeats() -> None:
    result = tiny()
    ops = result.operators
    by_hand = 0.0
    for i, name in enumerate(OPERATOR_NAMES):
        repeats = 1 if name == "lm_head" else TINY.layers
        by_hand += float(result.times.time_s[i, 0]) * repeats
    # A dense model: every block slot runs in every block, the MoE slots in none.
    moe = [OPERATOR_NAMES.index(name) for name in MOE_FFN]
    assert ops.repeats[moe, 0].tolist() == [0.0] * len(moe)
    dense = [i for i in range(len(OPERATOR_NAMES)) if i not in moe]
    assert ops.repeats[dense, 0].tolist() == [2.0] * (len(dense) - 1) + [1.0]
    assert result.total_time_s.tolist() == pytest.approx([by_hand])
    assert result.total_bytes.tolist() == pytest.approx([float(np.sum(ops.bytes[:, 0] * ops.repeats[:, 0]))])


def test_total_time_on_a_compute_bound_chip_is_flops_over_peak() -> None:
    # 1000 FLOP/s and endless bandwidth: every operator is compute bound, 3132 / 1000 = 3.132 s.
    result = tiny(hardware=chip(peak=1e3, bandwidth=1e30))
    assert result.total_time_s.tolist() == pytest.approx([3.132])


def test_total_time_on_a_memory_bound_chip_is_bytes_over_bandwidth() -> None:
    result = tiny(hardware=chip(peak=1e30, bandwidth=1e3))
    assert result.total_time_s.tolist() == pytest.approx((result.total_bytes / 1e3).tolist())


def test_footprints_by_hand() -> None:
    result = tiny()
    # Weights: per block q 16 + k 8 + v 8 + out 16 + up 32 + down 32 = 112 matrix elements and
    # 2 norm scales of 4: 120 elements, 240 bytes; 2 blocks 480; embedding 10 x 4 x 2 = 80 bytes
    # and an untied lm_head as much: 640.
    assert result.weight_footprint_bytes.tolist() == [640.0]
    # KV cache: K and V x 2 layers x 1 KV head x width 2 x 2 bytes = 16 bytes per token, for
    # 3 sequences x 5 positions: 240.
    assert result.kv_cache_footprint_bytes.tolist() == [240.0]
    # Activations: the hungriest operator is the softmax, reading and writing the 30 scores:
    # 2 x 30 x 2 = 120 bytes (next: gelu, 2 x 3 x 8 x 2 = 96).
    assert result.activation_footprint_bytes.tolist() == [120.0]
    report = analysis_report(result)
    assert report["totals"]["memory_bytes"] == {
        "weights": 640.0,
        "kv_cache": 240.0,
        "activations": 120.0,
        "total": 1000.0,
    }
    assert report["totals"]["flops"] == TOTAL_FLOPS
    counts = {row["name"]: (row["scope"], row["count"]) for row in report["operators"]}
    assert counts["lm_head"] == ("per_model", 1) and counts["q_proj"] == ("per_block", 2)
    assert "gate_proj" not in counts and "fused_attention" not in counts  # absent operators


def test_weight_footprint_variants_by_hand() -> None:
    # Tied embeddings: the lm_head is the embedding, 640 - 80 = 560.
    assert tiny(TINY.model_copy(update={"tie_embeddings": True})).weight_footprint_bytes.tolist() == [560.0]
    # Parallel block: no mlp_norm, 4 scale elements (8 bytes) less per block: 640 - 16 = 624.
    assert tiny(TINY.model_copy(update={"block": "parallel"})).weight_footprint_bytes.tolist() == [624.0]
    # int8 weights: matrices 112 bytes per block, norm scales stay bf16 (8 x 2 = 16): 128 per block,
    # 256; embedding and lm_head stay bf16 as engines keep them (80 each): 416.
    assert tiny(weight_dtype=INT8).weight_footprint_bytes.tolist() == [416.0]


@pytest.mark.parametrize("bits,saved_per_element", [("4", 1.5), ("8", 1.0), ("fp8", 1.0)])
def test_quantized_weights_keep_the_embedding_and_lm_head_in_16_bits(bits, saved_per_element) -> None:
    """Llama 3.1 8B: a narrower format saves bytes on the blocks' 32 x (4096 x 128 x (2 x 32 + 2 x 8)
    + 3 x 4096 x 14336) = 6,979,321,856 matrix elements only; the embedding and lm_head (2 x 128256
    x 4096) stay 16-bit, as vLLM, SGLang and TensorRT-LLM keep them."""
    from cost_models.analysis import analyze_one

    def weights(weight_bits: str) -> float:
        report = analyze_one(
            "llama-3.1-8b",
            "h100-sxm",
            phase="decode",
            batch=1,
            seq_len=128,
            weight_bits=weight_bits,
            calibration="none",
        )
        return report["totals"]["memory_bytes"]["weights"]

    assert weights("16") - weights(bits) == pytest.approx(6_979_321_856 * saved_per_element, rel=1e-12)


def test_memory_fit_shrinks_only_the_quantizable_weights() -> None:
    """1.6 GB of bf16 weights on a 1 GB chip, half of them embedding and lm_head: int8 leaves
    0.4 + 0.8 = 1.2 GB (too much), int4 0.2 + 0.8 = 1.0 GB (fits)."""
    from cost_models.analysis import memory_fit

    memory = {"weights": 1.6e9, "kv_cache": 0.0, "activations": 0.0, "total": 1.6e9}
    fit = memory_fit(memory, chip(peak=1e12, bandwidth=1e12), 0, table_bytes=0.8e9)
    assert fit["fits"] is False and fit["weight_bits_that_fit"] == ["4"]


def test_footprints_of_flash_attention_and_encoders() -> None:
    # Fused attention keeps the scores on chip: the largest activations are the gelu's 96 bytes.
    assert tiny(flash_attention=True).activation_footprint_bytes.tolist() == [96.0]
    # An encoder keeps no KV cache.
    encoder = TINY.model_copy(update={"kind": "encoder"})
    assert tiny(encoder, phase="prefill").kv_cache_footprint_bytes.tolist() == [0.0]


def test_many_configurations_at_once() -> None:
    # KV cache for seq_len 1, 5, 10 (batch 3): 16 bytes per token x 3, 15, 30 tokens.
    result = tiny(seq_len=np.array([1, 5, 10]))
    assert result.kv_cache_footprint_bytes.tolist() == [48.0, 240.0, 480.0]
    assert result.weight_footprint_bytes.tolist() == [640.0] * 3


@pytest.mark.parametrize(
    ("hardware", "calibration", "flash", "noted"),
    [
        ("h100-sxm", "auto", False, True),  # an engine's kernels, the papers' unfused operators
        ("h100-sxm", "auto", True, False),
        ("h100-sxm", "none", False, False),  # the papers' roofline: their operators, no engine
        ("tpu-v4", "auto", False, False),  # no GPU engine's fused kernels to point at
    ],
)
def test_analyze_one_notes_unfused_attention_under_an_engines_profile(hardware, calibration, flash, noted) -> None:
    """Unfused attention stays analyze's default (the papers' tables reproduce with it), but under
    a GPU engine's profile it times what no engine runs: llama-3-8b prefill of 8,192 tokens on an
    H100 took 337 ms calibrated unfused against 189 ms fused, without a word. A note says so."""
    from cost_models.analysis import analyze_one

    report = analyze_one(
        "llama-3-8b", hardware, phase="prefill", batch=1, seq_len=8192, flash_attention=flash, calibration=calibration
    )
    notes = [note for note in report["notes"] if "--flash-attention" in note]
    assert bool(notes) == noted, report["notes"]
    if noted:
        assert report["calibration"]["backend"] in notes[0]


def test_analyze_bounds_fp8_weight_matmuls_at_the_fp8_peak_under_a_gpu_engine() -> None:
    """fp8 weights run W8A8 on a GPU engine (the activations quantized to fp8), and the profile
    times them as its measured fp8 GEMM: analyze's roofline column bounded them at the bf16 peak
    (q_proj of llama-3-70b, 8 x 2048 tokens on an H200: 2.22 ms, its calibrated kernel 1.78 ms,
    faster than its own bound). Under the profile the bound is FLOPs / the fp8 peak; under
    --calibration none (the papers' convention) the wider operand's bf16 peak."""
    from cost_models.analysis import analyze_one

    h200 = get_hardware("h200")
    rows = {}
    for calibration in ("auto", "none"):
        report = analyze_one(
            "llama-3-70b", h200, phase="prefill", batch=8, seq_len=2048, weight_bits="fp8",
            flash_attention=True, calibration=calibration,
        )  # fmt: skip
        rows[calibration] = next(op for op in report["operators"] if op["name"] == "q_proj")
    for calibration, peak in (("auto", h200.peak_ops_per_s.fp8), ("none", h200.peak_ops_per_s.bf16)):
        q_proj = rows[calibration]
        assert q_proj["bound"] == "compute"
        compute_s = q_proj["flops"] / (peak * h200.efficiency.compute)
        assert q_proj["roofline_time_s"] == pytest.approx(compute_s, rel=1e-9)
    assert rows["auto"]["time_s"] >= rows["auto"]["roofline_time_s"]
