"""The engines' fused MoE kernel, timed from the chip's dense GEMM fit plus a few fitted terms.

Pure, vectorized numpy; nothing is fitted here. The parameters (:class:`MoeKernelParams`, one set
per chip, engine and MoE format) live in the calibration profiles (``moe:`` section), fitted by
``tuner.moe_kernels.fit_moe`` on ``data/kernels/moe_perf.csv.gz`` (held-out errors in
docs/accuracy.md, section "MoE layers"). A profile without them keeps the grouped-GEMM model of
:func:`cost_models.calibrated_times.expert_gemm_times_s` (the dense GEMM parameters applied to
one GEMM of tokens-per-expert by the woken experts' stacked slices, each with its launch).

Why a class of its own. Diagnosis on the measured kernels (expert tensor parallelism; the
grouped-GEMM model under the shipped dense GEMM fits; "ratio" is the median predicted / measured
in a bin). Each term below was checked by refitting without it: the mean over the 15 (chip,
engine) pairs of the held-out median error is 13.6% with all four (11 pairs within 15%), and
without the term it is the figure given.

- many tokens per expert run far below the dense GEMM's compute efficiency: ratio 0.3-0.6 once
  an expert gets >= 256 tokens on H100/H200/B200/GB200 (0.55-0.75 on A100 and L40S), against
  0.9-1.2 at <= 16 tokens per expert. Grouped kernels (Triton fused_moe, CUTLASS grouped GEMM,
  TRT-LLM's MoE runner) run smaller tiles than a dense GEMM of the same FLOPs, and write the
  gate/up output for the activation to re-read.  -> ``compute_scale`` (without: 15.9%, 6 pairs).
- weight streaming (decode, a few tokens per expert) runs at another fraction of HBM than the
  dense GEMM: ratio 0.7-0.8 on H100/H200 vLLM at <= 4 tokens, 1.1-1.5 on L40S vLLM.
  -> ``memory_scale``, the dense memory_eff times it; above 1 is an efficiency, not physics
  (L2 reuse across the woken experts' tiles) (without: 15.3%, 7 pairs).
- a floor per call that is not the dense GEMMs' three launches (routing alignment, expert
  offsets, finalize): the smallest measured kernels take 14-50 us by chip and engine.
  -> ``fixed_s``, in place of the three GEMM launches (without: 17.8%, 4 pairs).
- the permutation of routed tokens (gathered before the first GEMM, scattered and summed after
  the last): tokens x top-k x hidden activations moved.  -> ``permute_passes``, passes of those
  bytes over HBM at the dense fit's memory_eff (without: 18.5%, 2 pairs). It fits 1.6-16 passes (28-36 for TRT-LLM's
  block-scaled fp8 on H100/H200), more than the copies alone: it carries all the work per routed
  token and hidden element (activation quantization, expansion per expert).
- the grouped kernel blends its compute and weight-streaming times its own way, not the dense
  call's (GemmParams.combine_power): held out, rows at 8-128 tokens per woken expert, where the
  two are close, ran slower than predicted under the dense fit's blend and rows at 128-512 faster
  (A100 vLLM: median log ratio of predicted over measured -0.19 at 8-32, +0.16 at 128-512).
  -> ``combine_power`` (fitted 1-16; the dense fit's where a profile has none).
- few tokens per expert over many experts (top-22 of 512 at 64 tokens: ~480 experts woken, ~3
  tokens each) were over-charged by the dense fit's smallest M tile: see ``GROUPED_MIN_TILE_M``.

Since 2026-12-06 (on main c721303's dense fits, held out as above): the four terms alone gave a
mean held-out median of 12.9% over the 15 pairs (11 within 15%); ``combine_power`` and each
measured row timed at the experts its own routing woke (tuner/moe_routing.py: the kernel
database's collector forces balanced or power-law routing, not the uniform routing a deployment
is timed at) take it to 10.6% (13 within 15%); without the routing 11.9%, without
``combine_power`` 11.2% (13 within 15% both).

Tried and left out: padding each expert's inter_size slice to a 64- or 128-column tile (moe_tp
32 leaves 32-64 columns per expert, and SGLang's Triton kernel on H200 does run those at 0.07-0.10
of peak): the mean held-out median went from 13.6% to 13.9% (64) and 14.7% (128); a cost per
woken expert (13.3%, one pair worse: not worth a fifth parameter). A deployment's routing skew is
not known to the model: only the fit reads each measured row's routing.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from cost_models.efficiency import ACTIVATION_BYTES, FitSpec, GemmParams, _Params, gemm_time_s
from cost_models.hardware import HardwareSpec

#: Rows a grouped kernel computes per expert at least: 1, i.e. only the routed tokens, in place of
#: the dense fit's smallest M tile (up to 128 rows on Hopper), which charges every woken expert a
#: full tile: with the dense tile, the held-out median rises on 11 of 15 (chip, engine) pairs
#: (A100 SGLang 11.5% -> 21.1%; mean 13.6% -> 15.4%) and is unchanged on the others; fitted as a
#: fifth parameter it went to 1-3 rows (at its lower bound of 1 on most formats) and gained nothing.
GROUPED_MIN_TILE_M = 1.0


class MoeKernelParams(_Params):
    """The fused MoE kernel of one chip, engine and format, relative to its dense GEMM fit.
    Defaults: the dense GEMM parameters unchanged, no floor, no permutation, no launches."""

    compute_scale: float = Field(default=1.0, gt=0, le=1, description="Grouped GEMM compute efficiency / dense.")
    memory_scale: float = Field(default=1.0, gt=0, le=4, description="Weight-streaming bandwidth / dense.")
    fixed_s: float = Field(default=0.0, ge=0, description="Floor per call (replaces the 3 GEMM launches).")
    permute_passes: float = Field(default=0.0, ge=0, le=64, description="HBM passes over tokens x top-k x hidden.")
    combine_power: float | None = Field(
        default=None, ge=1, le=16, description="p-norm of compute and memory time (None: the dense fit's)."
    )

    FIT: ClassVar[dict[str, FitSpec]] = {
        "compute_scale": FitSpec(0.05, 1.0, start=0.6),
        "memory_scale": FitSpec(0.1, 4.0, log=True, start=1.0),
        "fixed_s": FitSpec(1e-7, 5e-4, log=True, start=1e-5),
        # Up to 64: TRT-LLM's block-scaled fp8 path on H100/H200 fits 28-36 (it also quantizes the
        # permuted activations per 128-element block: h200 trtllm fp8_block, 12288 tokens of the
        # 4096/1536/128/8 shape at tp 2 take 5.5 ms where the grouped GEMMs account for 1.4 ms).
        "permute_passes": FitSpec(0.0, 64.0, start=2.0),
        # The grouped kernel's own blend of its compute and weight-streaming times (GemmParams
        # combine_power), where the dense fit's is a dense call's: see the module docstring.
        "combine_power": FitSpec(1.0, 16.0, start=2.0),
    }


#: A format of the cost model -> the MoE formats of the kernel database that time it, first found
#: wins. fp8 weights run the kernel of their scales (calibrated_times.kernel_formats): a checkpoint
#: with 128 x 128 block scales (ModelSpec.fp8_block_scales: DeepSeek-V3, Kimi K2, Qwen3-*-FP8) the
#: block-scaled one ("fp8_block"), weights quantized at load by vLLM/SGLang --quantization fp8
#: (per-tensor scales; tuner export writes that for a model without such a checkpoint) the
#: per-tensor one ("fp8"); each borrows the other where only it was fitted (SGLang measured
#: fp8_block only), and the estimate says so. The two differ most on H100/H200 vLLM, where the
#: per-tensor kernel (FlashInfer CUTLASS: vLLM's fused_moe/oracle/fp8.py select_fp8_moe_backend
#: tries it before Triton) measures 1.6-5.5x the block-scaled Triton one on the same tokens, and the
#: fp8_block class predicts all measured per-tensor rows at a median 0.30 (h100) and 0.23 (h200) of
#: their time, Mixtral's expert shape at 0.42 and 0.36 (tests/tuner/test_moe_kernels.py). Until
#: 2026-12 every fp8 expert ran fp8_block.
MOE_FORMATS = {"fp8": ("fp8", "fp8_block"), "fp8_block": ("fp8_block", "fp8")}


#: Measured fp8 fused-MoE time per token over bf16's at prefill sizes, per profile and MoE format:
#: (median over the expert slices measured in both formats of the per-token latency ratio, those
#: slices). data/kernels/moe_perf.csv.gz (AIConfigurator's kernel database, moe_ep_size 1): rows
#: with >= 1024 tokens grouped by (hidden, inter_size, experts, top-k, moe_tp), each format's
#: median latency / tokens, fp8 over bf16. Above 1 the engine's fp8 fused MoE is slower per token
#: than its bf16 one at prefill on that chip, measured: TensorRT-LLM's block-scaled path on
#: H100/H200 (2048/512/256/top-8 on H200: 1.75x at moe_tp 1, 2.03x at 2), vLLM's per-tensor one
#: (FlashInfer CUTLASS) on H100/H200. tests/cost_models/test_fp8_small_batch.py recomputes them.
#: Quoted by deployment.fp8_prefill_notes.
MEASURED_FP8_MOE_PER_TOKEN_OVER_BF16: dict[tuple[str, str], tuple[float, int]] = {
    ("b200-vllm", "fp8_block"): (1.03, 27),
    ("b200-vllm", "fp8"): (0.56, 37),
    ("gb200-sglang", "fp8_block"): (0.64, 18),
    ("gb200-vllm", "fp8_block"): (1.02, 29),
    ("gb200-vllm", "fp8"): (0.69, 26),
    ("h100-sxm-sglang", "fp8_block"): (0.57, 16),
    ("h100-sxm-trtllm", "fp8_block"): (1.13, 8),
    ("h100-sxm-trtllm", "fp8"): (0.79, 18),
    ("h100-sxm-vllm", "fp8_block"): (0.76, 27),
    ("h100-sxm-vllm", "fp8"): (2.49, 56),
    ("h200-sglang", "fp8_block"): (0.56, 22),
    ("h200-trtllm", "fp8_block"): (1.29, 14),
    ("h200-trtllm", "fp8"): (0.77, 19),
    ("h200-vllm", "fp8_block"): (0.96, 41),
    ("h200-vllm", "fp8"): (2.34, 57),
    ("l40s-trtllm", "fp8"): (0.69, 26),
    ("l40s-vllm", "fp8_block"): (0.48, 36),
    ("l40s-vllm", "fp8"): (0.70, 56),
}


#: A weight format without a fused-MoE fit of its own -> the fitted classes that time its experts,
#: first found wins: the nearest measured format computing at the same peak. Weight-only int8/int4
#: kernels (vLLM's and SGLang's Marlin MoE, TRT-LLM's fpA_intB grouped GEMM) dequantize the weights
#: in registers and run bf16 tensor cores, so the bf16 class (its grouped-kernel efficiencies, floor
#: per call and token permutation) times them, at the weight format's own bytes. Without it they
#: fell back to the dense stacked GEMMs, which lack all of those, and scored a compute-bound MoE
#: prefill twice as fast as bf16's (qwen3-235b-a22b on 8 H200 under vLLM: 1175 against 2424 ms).
#: Held out on the measured int4_wo rows of the 9 pairs without an int4_wo fit (docs/accuracy.md,
#: MoE layers; the bf16 class never saw them): median 29.6% against 42.9% for the grouped GEMMs, but
#: B200/GB200 run their one measured shape 2.1-2.6x slower than predicted (0.72-0.77x for the
#: grouped GEMMs), Hopper 1.25-1.55x, L40S within 5%. Since 2026-12-06 those pairs' int4_wo rows
#: refit three of the bf16 class's parameters into an int4_wo class of their own
#: (tuner.moe_kernels.BORROWED_REFIT), so int4_wo is borrowed only where nothing of it was measured.
#: int8_wo experts take the int4_wo class first where one is fitted: the engines' weight-only MoE
#: path runs 4- and 8-bit weights in one Marlin kernel (vLLM's compressed-tensors WNA16 scheme,
#: WNA16_SUPPORTED_TYPES_MAP {4: uint4b8, 8: uint8b128}, whose MoE method calls the Marlin MoE for
#: either), so the measured 4-bit kernel's efficiencies stand nearer to it than bf16's; the
#: kernel database measured no int8 weight-only MoE. SmoothQuant (int8 x int8, the int8 peak)
#: borrows nothing, nor does fp8 without an fp8 fit (the fp8 peak): no measured class computes at
#: their peak.
MOE_BORROWED: dict[str, tuple[str, ...]] = {"int8_wo": ("int4_wo", "bfloat16"), "int4_wo": ("bfloat16",)}


#: The kernel database's MoE format of MXFP4 experts with 16-bit activations (gpt-oss's checkpoint:
#: ``ModelSpec.mxfp4_experts``): a class of its own in a profile's ``moe`` table, keyed by the
#: database's name since no dense GEMM format is MXFP4 (the dense fits know int4_wo, the
#: weight-only 4-bit kernel an fp4 weight with bf16 activations maps to). The engines run other
#: kernels for it than for int4 (vLLM's gpt-oss path: OpenAI's triton_kernels matmul_ogs on Hopper,
#: FlashInfer's TRT-LLM MXFP4 x bf16 on Blackwell, Marlin on L40S; SGLang's Triton fused_moe on
#: Hopper), and the bfloat16 class at 0.5 bytes per weight, which timed them before, predicted the
#: measured rows of those kernels at a median 0.27 (L40S SGLang) to 0.98 (GB200 SGLang) of their
#: time (H200 SGLang 0.46; its gpt-oss-120b rows at 5-10 tokens per expert, moe_tp 1-2: 0.23-0.27),
#: held out (that class never saw them); the class of its own: held-out medians 8.3-20.1% on the 9
#: pairs fitted (docs/accuracy.md, MoE layers). Where a profile has no fit of it (H100/H200 TRT-LLM
#: measured 2-3 rows; A100, B200 SGLang and the other TRT-LLM pairs none) the experts keep the
#: int4_wo lookup (MOE_BORROWED: the bfloat16 class at 0.5 bytes per weight), and the estimate says
#: so (calibrated_times.calibrated_format_notes).
MXFP4_MOE_FORMAT = "w4a16_mxfp4"

#: Formats a profile's ``moe`` table may hold beyond the dense GEMM formats.
MOE_ONLY_FORMATS: tuple[str, ...] = (MXFP4_MOE_FORMAT,)

#: The dense GEMM format MXFP4 experts with 16-bit activations run as (calibrated_times.gemm_format
#: of fp4 weights and bf16 activations): their dense parameters and weight bytes are its.
MXFP4_GEMM_FORMAT = "int4_wo"


def mxfp4_moe_params(table: dict[str, MoeKernelParams], gemm_format: str) -> MoeKernelParams | None:
    """The fitted MXFP4 class for an ``mxfp4_experts`` checkpoint's experts run as ``gemm_format``
    (fp4 weights with 16-bit activations: int4_wo), None where the profile has none (then the
    format's own lookup, :func:`moe_kernel_params`, times them) or the experts run another
    kernel (fp4 x fp4, fp4 x fp8)."""
    return table.get(MXFP4_MOE_FORMAT) if gemm_format == MXFP4_GEMM_FORMAT else None


def moe_kernel_class(table: dict[str, MoeKernelParams], gemm_format: str) -> tuple[str, MoeKernelParams] | None:
    """(the MoE format whose fitted class times ``gemm_format``'s experts, its parameters) in a
    profile's ``moe`` table: the format's own fit (``MOE_FORMATS``), else the borrowed one
    (``MOE_BORROWED``); None where neither was fitted (the caller keeps the grouped-GEMM model)."""
    for name in (*MOE_FORMATS.get(gemm_format, (gemm_format,)), *MOE_BORROWED.get(gemm_format, ())):
        if name in table:
            return name, table[name]
    return None


def borrowed_moe_class(table: dict[str, MoeKernelParams], gemm_format: str) -> str | None:
    """The format whose fitted class times ``gemm_format``'s experts where it is another
    format's (``MOE_BORROWED``: weight-only int8 -> int4_wo, else bfloat16; int4 -> bfloat16); None
    where the format has a fit of its own or none is found."""
    found = moe_kernel_class(table, gemm_format)
    return found[0] if found is not None and found[0] in MOE_BORROWED.get(gemm_format, ()) else None


def moe_kernel_params(table: dict[str, MoeKernelParams], gemm_format: str) -> MoeKernelParams | None:
    """The fitted MoE kernel that times ``gemm_format`` (:func:`moe_kernel_class`); None where the
    profile has none (the caller keeps the grouped-GEMM model)."""
    found = moe_kernel_class(table, gemm_format)
    return None if found is None else found[1]


def routed_expert_time_s(
    down: bool,
    tokens: np.ndarray,
    woken: np.ndarray,
    tokens_per_expert: np.ndarray,
    experts_per_token: np.ndarray,
    expert_f: np.ndarray,
    model_dim: np.ndarray,
    gemm_format: str,
    chip: HardwareSpec,
    dense: GemmParams,
    moe: MoeKernelParams,
    routed_rows_share: np.ndarray | float = 1.0,
    *,
    weights_in_l2: bool = False,
    l2_working_set_bytes: np.ndarray | None = None,
) -> np.ndarray:
    """Seconds of one routed expert projection (gate or up; ``down``) on one chip under the
    fitted MoE class:

        gate, up = GEMM(m = tokens per expert, n = woken x f, k = d)
        down     = GEMM(m = tokens per expert, n = woken x d, k = f)
                   + fixed_s + permute_passes x share x tokens x top-k x d x act bytes / (HBM x memory_eff)

    with the format's dense GEMM parameters at compute_eff x ``compute_scale``, memory_eff x
    ``memory_scale``, min_tile_m = ``GROUPED_MIN_TILE_M`` and no launch. The floor and the permutation are
    charged to the down slot (the finalize that ends the layer): only the sum is measured.

    ``routed_rows_share`` (``share``): the routed rows (token, expert) this chip's experts receive
    over ``tokens`` x top-k, DP / EP under expert and data parallelism. The measured kernels
    (moe_ep_size 1, expert tensor parallelism) permute every routed row on every chip, share 1:
    each holds a slice of every expert. Under EP a chip holds E / EP whole experts and permutes
    only the rows routed to them, tokens x top-k / EP of its tokens (TensorRT-LLM's CUTLASS MoE
    sorts the rows of other ranks' experts past the valid ones and never expands them; vLLM's
    and SGLang's Triton fused_moe map them to expert -1 through expert_map and skip them in the
    GEMMs, though their moe_sum still reads tokens x top-k rows: share is a lower bound there;
    no measured row has EP > 1 to fit it: data/kernels keeps moe_ep_size 1). Charged at
    share 1, Qwen3-235B-A22B fp8 on 8 H200s at TP 8 EP 8 (h200-trtllm, 64 x 2048 tokens) paid
    every chip a permutation of all 1.05 M routed rows: 39.8 ms of a 47.5 ms MoE layer.

    ``weights_in_l2`` and ``l2_working_set_bytes``: as gemm_time_s takes them (a fit of the
    collectors' calls passes the layer's working set: both projections' weights and the
    activations, tuner/collector_working_set.py)."""
    # The dense fit's L2 gain (1 - 1 / l2_speedup) saves DRAM time only: a class whose memory term
    # runs under the dense one's bandwidth (memory_scale < 1: w4a16_mxfp4 0.18, its weights'
    # dequantization) moves its DRAM bytes in memory_scale of that term and spends the rest on work
    # no L2 hit saves, T (ms (1 - r g) + 1 - ms) = T (1 - ms r g): the gain is scaled by
    # min(memory_scale, 1). Charged whole, the working-set fits' full-L2 gain (2026-12-07) took l40s
    # SGLang w4a16_mxfp4 from 20.4% to 32.1% held out.
    l2_gain = (1.0 - 1.0 / dense.l2_speedup) * min(moe.memory_scale, 1.0)
    params = dense.model_copy(
        update={
            "compute_eff": min(dense.compute_eff * moe.compute_scale, 1.0),
            "memory_eff": dense.memory_eff * moe.memory_scale,
            "l2_speedup": 1.0 / (1.0 - l2_gain),
            "min_tile_m": GROUPED_MIN_TILE_M,
            "launch_s": 0.0,
            "combine_power": dense.combine_power if moe.combine_power is None else moe.combine_power,
            # The dense GEMM's per-call floor and unaligned-m costs are the dense call's (one
            # per GEMM; tokens per expert are fractional): the fused kernel has fixed_s instead.
            "host_floor_s": 0.0,
            "large_m_launch_s": 0.0,
            "unaligned_m_s": 0.0,
            "unaligned_m_slowdown": 1.0,
            # A CUDA-graph replay pads the tokens, not the rows each expert gets
            # (cost_models/cuda_graph_capture.py).
            "cuda_graph_capture": "",
            # The dense call's pass over its weights' block scales (GemmParams.FIT
            # scale_column_s), per output column: the fused kernel's stacked experts are not one.
            "scale_column_s": 0.0,
            # The SM90 scaled_mm tile dispatch by m (GemmParams small_tile_max_m, mid_tile_max_m)
            # is the dense fp8 call's (vLLM's scaled_mm_sm90_fp8_dispatch); the fused MoE kernel
            # picks its own tiles per expert batch.
            "small_tile_max_m": 0.0,
            "mid_tile_max_m": 0.0,
            # TRT-LLM's weight-only GEMV at m <= 4 (GemmParams weight_only_gemv_factor) is the
            # dense plugin's path; the MoE kernel's experts run their grouped GEMM at any m.
            "weight_only_gemv_factor": 1.0,
            # The dense kernels' measured shape correction (cost_models/gemm_shape.py) is theirs:
            # the fused kernel's stacked experts are not a dense shape it was measured at.
            "shape_correction": None,
        }
    )
    if not down:
        return gemm_time_s(
            tokens_per_expert,
            woken * expert_f,
            model_dim,
            gemm_format,
            chip,
            params,
            weights_in_l2=weights_in_l2,
            l2_working_set_bytes=l2_working_set_bytes,
        )
    seconds = gemm_time_s(
        tokens_per_expert,
        woken * model_dim,
        expert_f,
        gemm_format,
        chip,
        params,
        weights_in_l2=weights_in_l2,
        l2_working_set_bytes=l2_working_set_bytes,
    )
    permuted_bytes = routed_rows_share * tokens * experts_per_token * model_dim * ACTIVATION_BYTES[gemm_format]
    bandwidth = chip.memory_bandwidth_bytes_per_s * dense.memory_eff
    return seconds + moe.fixed_s + moe.permute_passes * permuted_bytes / bandwidth
