"""The fused-MoE kernel class (cost_models/moe_kernel_time.py) and its place in the profiles."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cost_models.calibration import calibration_report, load_profile, profile_for
from cost_models.deployment import estimate_one
from cost_models.efficiency import GemmParams, gemm_time_s
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.moe_kernel_time import MoeKernelParams, moe_kernel_class, moe_kernel_params, routed_expert_time_s

H100 = get_hardware("h100-sxm")
DENSE = GemmParams(compute_eff=0.7, memory_eff=0.8, min_tile_m=64.0, launch_s=5e-6)


def _times(moe: MoeKernelParams, tokens=64.0, experts_woken=32.0, topk=8.0, f=1024.0, d=4096.0):
    per_expert = tokens * topk / experts_woken
    args = (np.array([tokens]), np.array([experts_woken]), np.array([per_expert]), np.array([topk]))
    args += (np.array([f]), np.array([d]), "bfloat16", H100, DENSE, moe)
    return routed_expert_time_s(False, *args, weights_in_l2=True)[0], routed_expert_time_s(
        True, *args, weights_in_l2=True
    )[0]


def test_defaults_are_the_stacked_gemms_without_launches_or_tile_padding() -> None:
    up, down = _times(MoeKernelParams())
    bare = DENSE.model_copy(update={"launch_s": 0.0, "min_tile_m": 1.0})
    assert up == pytest.approx(gemm_time_s(16.0, 32 * 1024.0, 4096.0, "bfloat16", H100, bare, weights_in_l2=True)[()])
    assert down == pytest.approx(gemm_time_s(16.0, 32 * 4096.0, 1024.0, "bfloat16", H100, bare, weights_in_l2=True)[()])


def test_the_dense_scale_pass_per_column_is_not_charged_to_the_stacked_experts() -> None:
    # scale_column_s was measured on dense calls (b200 SGLang fp8_block): 0.5 ns per column would
    # charge 32 woken experts x 4096 columns 66 us here.
    args = (np.array([64.0]), np.array([32.0]), np.array([16.0]), np.array([8.0]), np.array([1024.0]))
    args += (np.array([4096.0]), "fp8_block", H100)
    for down in (False, True):
        plain = routed_expert_time_s(down, *args, DENSE, MoeKernelParams(), weights_in_l2=True)[0]
        scaled = routed_expert_time_s(
            down, *args, DENSE.model_copy(update={"scale_column_s": 5e-10}), MoeKernelParams(), weights_in_l2=True
        )
        assert scaled[0] == plain, down


def test_the_dense_weight_only_gemv_factor_is_not_charged_to_the_experts() -> None:
    # weight_only_gemv_factor scales dense weight-only calls at m <= 4 (TRT-LLM's GEMV plugin
    # path, measured on dense a100 int4_wo/int8_wo calls); 2 tokens per expert here would take it
    # on a dense call (so the inequality below can fail), the MoE kernel's experts do not.
    gemv = DENSE.model_copy(update={"weight_only_gemv_factor": 0.5})
    assert gemm_time_s(2.0, 4096.0, 1024.0, "int4_wo", H100, gemv, weights_in_l2=True)[()] != pytest.approx(
        gemm_time_s(2.0, 4096.0, 1024.0, "int4_wo", H100, DENSE, weights_in_l2=True)[()]
    )
    args = (np.array([8.0]), np.array([32.0]), np.array([2.0]), np.array([8.0]), np.array([1024.0]))
    args += (np.array([4096.0]), "int4_wo", H100)
    for down in (False, True):
        plain = routed_expert_time_s(down, *args, DENSE, MoeKernelParams(), weights_in_l2=True)[0]
        assert routed_expert_time_s(down, *args, gemv, MoeKernelParams(), weights_in_l2=True)[0] == plain, down


def test_the_dense_fp8_tile_dispatch_by_m_is_not_charged_to_the_stacked_experts() -> None:
    # small_tile_max_m / mid_tile_max_m are the dense scaled_mm call's tile choice by m (vLLM's
    # scaled_mm_sm90_fp8_dispatch, measured on dense h100/h200 fp8 calls); the fused kernel's
    # experts do not take it. The dispatch does change a dense call of this shape (so the
    # equality below can fail), and the routed experts' times stay those without it.
    # (The tiles enter through the wave and CTA-saturation terms: both on here.)
    tiled = DENSE.model_copy(update={"wave_weight": 1.0, "half_saturation_ctas": 16.0})
    dispatch = tiled.model_copy(update={"small_tile_max_m": 64.0, "mid_tile_max_m": 128.0})
    dense = [gemm_time_s(16.0, 4096.0, 1024.0, "fp8", H100, p, weights_in_l2=True)[()] for p in (tiled, dispatch)]
    assert dense[0] != dense[1]
    args = (np.array([64.0]), np.array([32.0]), np.array([16.0]), np.array([8.0]), np.array([1024.0]))
    args += (np.array([4096.0]), "fp8", H100)
    for down in (False, True):
        plain = routed_expert_time_s(down, *args, tiled, MoeKernelParams(), weights_in_l2=True)[0]
        assert routed_expert_time_s(down, *args, dispatch, MoeKernelParams(), weights_in_l2=True)[0] == plain, down


def test_the_floor_and_the_permutation_are_charged_once_on_the_down_slot() -> None:
    up, down = _times(MoeKernelParams())
    up2, down2 = _times(MoeKernelParams(fixed_s=30e-6, permute_passes=2.0))
    assert up2 == up
    # 2 passes over 64 tokens x top-8 x 4096 bf16 at 0.8 of H100's HBM.
    permuted_s = 2.0 * 64 * 8 * 4096 * 2.0 / (H100.memory_bandwidth_bytes_per_s * 0.8)
    assert down2 - down == pytest.approx(30e-6 + permuted_s)


def test_compute_and_memory_scales_move_their_own_regime() -> None:
    # 16k tokens over 8 experts of 14336 x 4096: compute-bound; half the efficiency, about twice the time.
    big = dict(tokens=16384.0, experts_woken=8.0, topk=2.0, f=14336.0)
    slow, _ = _times(MoeKernelParams(compute_scale=0.5), **big)
    fast, _ = _times(MoeKernelParams(), **big)
    assert 1.8 < slow / fast <= 2.0
    # One token on 8 experts: streaming weights; twice the bandwidth, about half the time.
    small = dict(tokens=1.0, experts_woken=8.0, topk=8.0, f=2048.0)
    quick, _ = _times(MoeKernelParams(memory_scale=2.0), **small)
    plain, _ = _times(MoeKernelParams(), **small)
    assert 0.5 <= quick / plain < 0.55


def test_fp8_weights_take_the_class_of_their_scales() -> None:
    # Per-tensor fp8 (weights quantized at load by --quantization fp8) the fp8 class, block-scaled
    # fp8 (a checkpoint with 128 x 128 scales: calibrated_times.kernel_formats) the fp8_block one;
    # each stands in for the other where only it was fitted (SGLang measured fp8_block only).
    block, tensor = MoeKernelParams(fixed_s=1e-5), MoeKernelParams(fixed_s=2e-5)
    assert moe_kernel_params({"fp8": tensor, "fp8_block": block}, "fp8") is tensor
    assert moe_kernel_params({"fp8": tensor, "fp8_block": block}, "fp8_block") is block
    assert moe_kernel_params({"fp8_block": block}, "fp8") is block
    assert moe_kernel_params({"fp8": tensor}, "fp8_block") is tensor
    assert moe_kernel_params({"fp8": tensor}, "bfloat16") is None


def test_a_profile_without_the_moe_class_loads_and_says_so(tmp_path) -> None:
    raw = yaml.safe_load(load_profile("h100-sxm-trtllm").to_yaml())
    raw.pop("moe")
    raw.pop("moe_cv_error")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(raw))
    old = load_profile(path)
    assert old.moe == {}
    assert "grouped dense GEMMs" in calibration_report(old)["moe_kernel"]
    assert "fused-MoE kernel fitted" in calibration_report(profile_for("h100-sxm", "trtllm"))["moe_kernel"]


def test_a_bad_moe_parameter_names_its_field(tmp_path) -> None:
    raw = yaml.safe_load(load_profile("h100-sxm-trtllm").to_yaml())
    raw["moe"]["bfloat16"]["compute_scale"] = 3.0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InvalidInputError, match="moe.bfloat16.compute_scale"):
        load_profile(path)


def test_weight_only_experts_borrow_the_bf16_fused_class() -> None:
    # int8/int4 weight-only kernels dequantize to bf16 and compute at the bf16 peak: without a fit
    # of their own, their experts take the bf16 fused-MoE class (its efficiencies, floor and
    # permutation), not the grouped dense GEMMs. A fit of their own wins; SmoothQuant (int8 x
    # int8, the int8 peak) and fp8 (the fp8 peak) borrow nothing.
    bf16, int4 = MoeKernelParams(fixed_s=1e-5), MoeKernelParams(fixed_s=3e-5)
    assert moe_kernel_class({"bfloat16": bf16}, "int4_wo") == ("bfloat16", bf16)
    assert moe_kernel_class({"bfloat16": bf16}, "int8_wo") == ("bfloat16", bf16)
    assert moe_kernel_params({"bfloat16": bf16}, "int4_wo") is bf16
    assert moe_kernel_class({"bfloat16": bf16, "int4_wo": int4}, "int4_wo") == ("int4_wo", int4)
    assert moe_kernel_class({"bfloat16": bf16}, "sq") is None
    assert moe_kernel_class({"bfloat16": bf16}, "fp8") is None
    assert moe_kernel_class({}, "int4_wo") is None


QWEN3_MOE = dict(model="qwen3-235b-a22b", hardware="h200", tp=8, batch=64, prompt_len=2048, gen_len=256)


def test_weight_only_moe_prefill_is_not_twice_as_fast_as_bf16() -> None:
    # QA's repro: qwen3-235b-a22b on 8 H200 under vLLM's profile scored int8/int4 prefill at 1175 ms
    # (MFU 0.59) against bf16's 2424 ms (MFU 0.29): the weight-only experts missed the fitted
    # fused-MoE class and ran as the dense stacked GEMMs. Weight-only math is bf16 math, so a
    # compute-bound prefill is no faster than bf16's (less weight traffic may save a little).
    bf16 = estimate_one(**QWEN3_MOE, weight_bits=16, backend="vllm")
    for bits in (8, 4):
        quantized = estimate_one(**QWEN3_MOE, weight_bits=bits, backend="vllm")
        ratio = quantized["prefill"]["latency_s"] / bf16["prefill"]["latency_s"]
        assert ratio > 0.9, (bits, ratio)
        assert quantized["prefill"]["mfu"] < 1.1 * bf16["prefill"]["mfu"]
        # ... and it says which class timed the experts: int8 the pair's int4_wo class (refitted on
        # Kimi K2's expert shape from the bf16 class: tuner.moe_kernels.BORROWED_REFIT), int4 that
        # class, named with the one shape it saw.
        line = quantized["calibration"]["moe_kernel"]
        notes = quantized["notes"]
        if bits == 8:
            assert "int8_wo" in line and "int4_wo class" in line and "Marlin" in line, line
            assert any("int8_wo" in note and "int4_wo class" in note for note in notes), notes
        else:
            assert "int4_wo" in line and "weight-only) experts timed" not in line, line
        assert any("int4_wo fused-MoE class is fitted on" in n and "7168/2048/384/8" in n for n in notes), notes
    assert "weight-only" not in bf16["calibration"]["moe_kernel"]


def test_mxfp4_experts_name_the_class_that_times_them_or_the_fallback() -> None:
    # gpt-oss's MXFP4 experts (fp4 weights, bf16 activations: the int4_wo GEMM format) take the
    # profile's w4a16_mxfp4 class where the kernel database had rows to fit it (h200-sglang), and
    # where it had not (h200-trtllm: 3 rows) the int4_wo lookup, the bfloat16 class there (no int4_wo
    # MoE row of TRT-LLM), saying so.
    from cost_models.calibrated_times import calibrated_format_notes, expert_moe_format
    from cost_models.dtypes import BF16, FP4
    from cost_models.models import get_model

    h200 = get_hardware("h200")
    gpt_oss = get_model("gpt-oss-120b")
    fitted, fallback = profile_for("h200", "sglang"), profile_for("h200", "trtllm")
    assert "w4a16_mxfp4" in fitted.moe and "w4a16_mxfp4" not in fallback.moe
    assert expert_moe_format(fitted, gpt_oss, FP4, BF16) == "w4a16_mxfp4"
    assert expert_moe_format(fallback, gpt_oss, FP4, BF16) == "int4_wo"
    assert expert_moe_format(fitted, gpt_oss, BF16, BF16) == "bfloat16"  # served in bf16: not MXFP4
    assert "w4a16_mxfp4" in calibration_report(fitted, moe_format="w4a16_mxfp4")["moe_kernel"]
    notes = calibrated_format_notes(fitted, h200, gpt_oss.experts, FP4, BF16, mxfp4_experts=True)
    assert any("h200-sglang's w4a16_mxfp4 fused-MoE class" in n for n in notes), notes
    notes = calibrated_format_notes(fallback, h200, gpt_oss.experts, FP4, BF16, mxfp4_experts=True)
    assert any("no w4a16_mxfp4 fused-MoE kernel fitted" in n and "bfloat16 class" in n for n in notes), notes
    # An AWQ/GPTQ int4 MoE (not MXFP4) keeps the int4_wo lookup under either profile: h200-sglang's
    # int4_wo class (refitted on one expert shape, said so), h200-trtllm's bfloat16 class.
    notes = calibrated_format_notes(fitted, h200, gpt_oss.experts, FP4, BF16)
    assert not any("w4a16_mxfp4" in n for n in notes), notes
    assert any("h200-sglang's int4_wo fused-MoE class is fitted on" in n for n in notes), notes
    notes = calibrated_format_notes(fallback, h200, gpt_oss.experts, FP4, BF16)
    assert any("weight-only experts (int4_wo)" in n and "bfloat16 class" in n for n in notes), notes
    # Without an MXFP4 class but with an int4_wo one, MXFP4 experts take the int4_wo class, saying so.
    no_mxfp4 = fitted.model_copy(update={"moe": {k: v for k, v in fitted.moe.items() if k != "w4a16_mxfp4"}})
    notes = calibrated_format_notes(no_mxfp4, h200, gpt_oss.experts, FP4, BF16, mxfp4_experts=True)
    assert any("no w4a16_mxfp4 fused-MoE kernel fitted" in n and "int4_wo class" in n for n in notes), notes


def test_the_moe_table_takes_the_mxfp4_class_and_the_gemm_table_does_not(tmp_path) -> None:
    raw = yaml.safe_load(load_profile("h200-sglang").to_yaml())
    raw["gemm"]["w4a16_mxfp4"] = raw["gemm"]["bfloat16"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InvalidInputError, match="w4a16_mxfp4"):
        load_profile(path)
    assert "w4a16_mxfp4" in load_profile("h200-sglang").moe


def test_the_permutation_under_expert_parallelism_is_the_rows_routed_to_the_chips_experts() -> None:
    # Qwen3-235B-A22B (94 MoE layers, hidden 4096, top-8 of 128; its FP8 checkpoint is 128 x 128
    # block-scaled) on 8 H200s at TP 8, 64 x 2048 prompt tokens, h200-trtllm. Under expert TP
    # (EP 1, the measured kernels' moe_tp 8) every chip holds a 192-column slice of every expert
    # and permutes all 131,072 x 8 routed rows; under EP 8 (TRT-LLM's moe_ep 8, moe_tp 1) a chip
    # holds 16 whole experts and permutes only the 1/8 of the rows routed to them. The GEMMs are
    # the same FLOPs either way (128 x 192 = 16 x 1536 columns, 8192 tokens an expert), and EP
    # with DP 1 adds no all-to-all (deployment.moe_dispatch_s), so the prefills differ by 7/8 of
    # the permutation: layers x 7/8 x passes x tokens x top-k x hidden x 1 B (fp8 activations)
    # over HBM at the dense fp8 fit's memory_eff (the class's parameters, read from the profile).
    profile = load_profile("h200-trtllm")
    passes = profile.moe["fp8_block"].permute_passes
    memory_eff = profile.gemm_params("fp8").memory_eff
    permuted_s = passes * (64 * 2048) * 8 * 4096 * 1.0 / (4.8e12 * memory_eff)
    assert 0.03 < permuted_s < 0.05  # 44.5 passes over 4.29 GB at 1.0 x 4.8 TB/s: 39.8 ms a layer
    run = dict(tp=8, batch=64, prompt_len=2048, gen_len=512, phase="prefill", weight_bits="fp8", act_bits="fp8")
    expert_tp = estimate_one("qwen3-235b-a22b", "h200", **run, backend="trtllm")["prefill"]["latency_s"]
    expert_ep = estimate_one("qwen3-235b-a22b", "h200", **run, ep=8, backend="trtllm")["prefill"]["latency_s"]
    assert expert_tp - expert_ep == pytest.approx(94 * 7 / 8 * permuted_s, rel=0.01)


@pytest.mark.parametrize("memory_scale", [0.25, 0.5, 1.0])
def test_a_class_under_the_dense_bandwidth_takes_its_share_of_the_l2_gain(memory_scale: float) -> None:
    """Weights that sit in L2 (8 experts of 256 x 1024 bf16, 4 MB; one token: memory-bound) under a
    dense fit whose L2 moves bytes 3x faster (gain 1 - 1/3): a class at memory_scale ms moves its
    DRAM bytes in ms of its memory time, so the warm time is 1 - ms x 2/3 of the cold one (by hand:
    0.833, 0.667, 0.333), not the dense fit's 1/3 at every ms."""
    dense = GemmParams(compute_eff=0.7, memory_eff=0.8, min_tile_m=1.0, launch_s=0.0, l2_speedup=3.0)
    args = (np.array([1.0]), np.array([8.0]), np.array([1.0]), np.array([8.0]), np.array([256.0]))
    args += (np.array([1024.0]), "bfloat16", H100, dense, MoeKernelParams(memory_scale=memory_scale))
    warm = routed_expert_time_s(False, *args, weights_in_l2=True)[0]
    cold = routed_expert_time_s(False, *args, weights_in_l2=False)[0]
    assert warm / cold == pytest.approx(1.0 - memory_scale * 2.0 / 3.0, rel=1e-3)
