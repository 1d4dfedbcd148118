"""Kernel-level efficiency model: what a roofline becomes on a real chip and engine.

Pure, vectorized numpy. One function per operator class, taking the shapes exactly as the kernel
measurements describe them (``data/kernels/*.csv.gz``, NVIDIA AIConfigurator's public database) as
broadcastable arrays, plus a parameter object, and returning seconds. Nothing is fitted here: the
parameters come from a calibration profile (:mod:`cost_models.calibration`, fitted by
``tuner calibrate``). Every parameter class defaults to the pure roofline (efficiencies 1, no fixed
costs), so ``Params()`` reproduces the papers' numbers.

Each formula below says which parameters exist, how they enter, and which measurements motivate
them. Numbers quoted in comments were read off the shipped subset ``data/kernels`` (held-out fit
errors are in docs/accuracy.md).
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from cost_models.cuda_graph_capture import padded_to_capture
from cost_models.errors import InvalidInputError
from cost_models.gemm_dispatch import DISPATCHES, FACTOR_FIELDS, dispatch_factor
from cost_models.gemm_shape import GemmShapeCorrection
from cost_models.hardware import HardwareSpec

# Finite only: an .inf in a profile file (launch_s: .inf) made every kernel time inf or NaN.
_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

#: GEMM formats of the kernel database (``gemm_dtype``).
GEMM_FORMATS: tuple[str, ...] = ("bfloat16", "fp8", "fp8_block", "int8_wo", "int4_wo", "sq", "nvfp4")
#: Bytes per weight element as stored (nvfp4: 4 bits + one fp8 scale per 16 elements).
WEIGHT_BYTES = {
    "bfloat16": 2.0,
    "fp8": 1.0,
    "fp8_block": 1.0,
    "int8_wo": 1.0,
    "int4_wo": 0.5,
    "sq": 1.0,
    "nvfp4": 0.5625,
}
#: Bytes per activation element the matmul itself reads (after any quantization).
ACTIVATION_BYTES = {
    "bfloat16": 2.0,
    "fp8": 1.0,
    "fp8_block": 1.0,
    "int8_wo": 2.0,
    "int4_wo": 2.0,
    "sq": 1.0,
    "nvfp4": 0.5625,
}
#: Formats whose kernels quantize bf16 activations first (the collector times that pass too).
QUANTIZES_ACTIVATIONS = frozenset({"fp8", "fp8_block", "nvfp4"})
#: Weight-only formats: weights are dequantized to bf16 inside the kernel, math runs in bf16.
WEIGHT_ONLY = frozenset({"int8_wo", "int4_wo"})
OUTPUT_BYTES = 2.0  # bf16 result

#: Tile of the wave-quantization term (a typical CUTLASS/cuBLAS CTA tile on Ampere..Blackwell).
TILE_M, TILE_N = 128, 128
#: The CTA tiles of rows with m <= ``GemmParams.small_tile_max_m`` (SMALL_TILE_M x SMALL_TILE_N)
#: and of rows up to ``GemmParams.mid_tile_max_m`` (SMALL_TILE_M x TILE_N): CUTLASS fp8 scaled_mm
#: on SM90 picks its tile by m alone (vLLM scaled_mm_sm90_fp8_dispatch.cuh: 64x64x128 at
#: m <= 64, 64x128x128 at 64 < m <= 128, 128x128x128 above; SGLang's sgl-kernel copy of it), so
#: a few-tile shape at small m runs 2-4x the CTAs the 128x128 wave term counts.
SMALL_TILE_M, SMALL_TILE_N = 64, 64
#: Default least k a split-K piece keeps (4 k-tiles of 64; ``GemmParams.split_k_min_depth`` fits
#: it): a100 trtllm int4_wo m=n=256 k=65536 takes 0.10 ms, 2.7x less than 4 output tiles on 4 of
#: 108 SMs allow.
SPLIT_K_MIN_DEPTH = 256.0
#: Steepness of the decode-attention fallback-kernel step in the group size (heads / kv_heads),
#: an assumption, not fitted: with the switch at 40, a group of 32 runs 0.08% fallback and 48
#: 99.7%. The fallback is ~170x slower per FLOP, so a softer step leaks: at 16, h200 trtllm bf16
#: rows at 32 query heads per KV head came out 1.6x slow held out (all groups: 12 miss, 11 at 32).
FALLBACK_STEEPNESS = 32.0
#: Row alignment of a GEMM's activation scales (``GemmParams.unaligned_m_s``): 4 fp32 per-row
#: scales fill the 16 bytes a TMA copy moves; m % 4 != 0 takes the unaligned path.
M_ALIGN = 4
#: Rows of a weight-only GEMM with m at most this run TRT-LLM's weight-only batched GEMV, not the
#: CUTLASS FpA_IntB tiles (``GemmParams.weight_only_gemv_factor``): weightOnlyQuantMatmulPlugin
#: takes its CUDA-core kernel when m < SMALL_M_FAST_PATH (5). From the source, not fitted.
WEIGHT_ONLY_GEMV_MAX_M = 4
#: Steepness of the per-call floor's step in m (``GemmParams.large_m_launch_s``), in log m: the
#: step is r^16 / (1 + r^16), r = m / switch, 16 = 2^LAUNCH_STEP_SQUARINGS. An assumption, not
#: fitted; with the switch at 25 rows, m=20 takes 3% of the step and m=32 98%.
LAUNCH_STEP_SQUARINGS = 4

COLLECTIVE_KINDS: tuple[str, ...] = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")


class FitSpec:
    """How the fitter may move one parameter: bounds, and whether to search it in log space."""

    def __init__(self, low: float, high: float, log: bool = False, start: float | None = None):
        self.low, self.high, self.log = low, high, log
        self.start = start


class _Params(BaseModel):
    model_config = _FROZEN
    #: Bounds of every fittable field (tuner.calibrate reads this; the model never does).
    FIT: ClassVar[dict[str, FitSpec]] = {}


def peak_for_format(chip: HardwareSpec, gemm_format: str) -> float:
    """Dense peak ops/s a GEMM of ``gemm_format`` runs at (a format the chip lacks: next wider)."""
    p = chip.peak_ops_per_s
    if gemm_format in ("bfloat16", "int8_wo", "int4_wo"):
        return p.bf16  # weight-only: dequantize to bf16, bf16 tensor cores
    if gemm_format in ("fp8", "fp8_block"):
        return p.fp8 or p.bf16
    if gemm_format == "sq":
        return p.int8 or p.bf16
    if gemm_format == "nvfp4":
        return p.fp4 or p.fp8 or p.bf16
    raise InvalidInputError("gemm_format", f"unknown format {gemm_format!r}", f"use one of {', '.join(GEMM_FORMATS)}")


def _compute_units(chip: HardwareSpec) -> int | None:
    """SMs (compute units) of the chip; None for chips without an SM count (TPUs, CPUs, GPUs the
    catalog has no figure for), which get no wave-quantization term."""
    return chip.compute_units


def _spare(spare: list[np.ndarray], x) -> None:
    """Keep ``x``, a dead temporary, for :func:`_pop` (arrays only: a NumPy scalar is not kept)."""
    if isinstance(x, np.ndarray):
        spare.append(x)


def _pop(spare: list[np.ndarray]) -> np.ndarray | None:
    """A dead temporary to write a result into (``out=``), or None: a new one."""
    return spare.pop() if spare else None


def _out(x):
    """``x`` as the ``out=`` of a ufunc writing over it: an array the caller owns (a temporary), or
    None for a NumPy scalar (then the ufunc returns a new scalar, as without ``out=``)."""
    return x if isinstance(x, np.ndarray) else None


def _combine(compute_s: np.ndarray, memory_s: np.ndarray, power: float | None, overwrite: bool = False) -> np.ndarray:
    """max(compute, memory) (power None) or the p-norm (c^p + m^p)^(1/p) >= max, a smooth max
    for partial overlap of loads and math (fitted p in [1, 16]: 1 is no overlap at all).
    ``overwrite``: ``compute_s`` is the caller's temporary, and may hold the result."""
    if power is None:
        return np.maximum(compute_s, memory_s, out=_out(compute_s) if overwrite else None)
    big = np.maximum(compute_s, memory_s)
    big = np.maximum(big, 1e-30, out=_out(big))
    # One of the two ratios to ``big`` is 1: (c^p + m^p)^(1/p) = big (1 + (small/big)^p)^(1/p).
    # In place on the temporaries (``**=`` takes ``**``'s paths: NumPy's array pow, scalar pow).
    small = np.minimum(compute_s, memory_s, out=_out(compute_s) if overwrite else None)
    small /= big
    small **= power
    small += 1.0
    small **= 1.0 / power
    small *= big
    return small


# ---------------------------------------------------------------------------------------------
# GEMM
# ---------------------------------------------------------------------------------------------


class GemmParams(_Params):
    """One GEMM format on one chip and engine. Defaults: pure roofline."""

    compute_eff: float = Field(default=1.0, gt=0, le=1)
    memory_eff: float = Field(default=1.0, gt=0, le=1)
    min_tile_m: float = Field(default=1.0, ge=1, le=256)
    wave_weight: float = Field(default=0.0, ge=0, le=1)
    launch_s: float = Field(default=0.0, ge=0)
    act_quant_passes: float = Field(default=0.0, ge=0, le=8)
    l2_speedup: float = Field(default=1.0, ge=1, le=20)
    combine_power: float | None = Field(default=None, ge=1, le=16)
    split_k_max: float = Field(default=1.0, ge=1, le=64)
    half_saturation_ctas: float = Field(default=0.0, ge=0, le=1e4)
    quant_row_s: float = Field(default=0.0, ge=0, le=1e-6)
    l2_capacity_fraction: float = Field(default=1.0, gt=0, le=1)
    output_bytes: float = Field(default=OUTPUT_BYTES, ge=1, le=64)
    split_k_min_depth: float = Field(default=SPLIT_K_MIN_DEPTH, ge=16, le=1e6)
    unaligned_m_s: float = Field(default=0.0, ge=0, le=1e-3)
    host_floor_s: float = Field(default=0.0, ge=0, le=1e-2)
    output_l2_fraction: float = Field(default=0.0, ge=0, le=1)
    unaligned_m_slowdown: float = Field(default=1.0, ge=1, le=4)
    large_m_launch_s: float = Field(default=0.0, ge=0, le=1e-3)
    large_m_switch: float = Field(default=32.0, ge=1, le=1e5)
    #: Seconds per weight element one CTA takes to dequantize (weight-only formats); 0: none.
    dequant_s_per_element: float = Field(default=0.0, ge=0, le=1e-6)
    #: Rows with m below this run the engine's GEMV kernel, not the tiled GEMM; 0: none.
    gemv_max_m: float = Field(default=0.0, ge=0, le=256)
    #: The GEMV's fixed cost per call (seconds), in place of launch_s.
    gemv_launch_s: float = Field(default=0.0, ge=0, le=1e-3)
    #: The GEMV's seconds per output element (m * n).
    gemv_s_per_output: float = Field(default=0.0, ge=0, le=1e-6)
    #: Seconds per output column (n) of a per-call pass over the weights' block scales; 0: none.
    scale_column_s: float = Field(default=0.0, ge=0, le=1e-6)
    #: Rows with m at most this run the engine's small CTA tile (SMALL_TILE_M x SMALL_TILE_N) in
    #: the wave, split-K, CTA-saturation and dequantization terms instead of TILE_M x TILE_N; 0:
    #: none. Not fitted: the engine's kernel dispatch (tuner/calibrate.py KERNEL_DISPATCH
    #: says where and what it was measured on).
    small_tile_max_m: float = Field(default=0.0, ge=0, le=1e5)
    #: Rows with small_tile_max_m < m <= this run SMALL_TILE_M x TILE_N tiles; 0: none.
    mid_tile_max_m: float = Field(default=0.0, ge=0, le=1e5)
    #: Kernel-time factor of weight-only rows with m <= WEIGHT_ONLY_GEMV_MAX_M (TRT-LLM's
    #: weight-only GEMV) over the tiled model's time; 1: none.
    weight_only_gemv_factor: float = Field(default=1.0, gt=0, le=4)
    #: CTAs resident per SM whose per-CTA walks (dequant_s_per_element) overlap: the walk is
    #: spread over min(ctas, SMs * this) CTAs; 1: one CTA per SM walks at a time (waves past it).
    dequant_ctas_per_sm: float = Field(default=1.0, ge=1, le=32)
    #: The measured correction near the group's shapes (cost_models/gemm_shape.py): the time is
    #: the model's times exp(its value at log2 (m, n, k)), 1 away from measured shapes; None: none.
    #: Not fitted by least squares: tuner/calibrate.py fit_gemm builds it from the fit's residuals.
    shape_correction: GemmShapeCorrection | None = None
    #: The engine's kernel dispatch by shape (cost_models/gemm_dispatch.py DISPATCHES); "": none.
    #: Not fitted: tuner/calibrate.py KERNEL_DISPATCH says where it was read from the source.
    kernel_dispatch: str = ""
    #: The engine whose CUDA-graph replay pads m to its captured sizes (cost_models/
    #: cuda_graph_capture.py); "": none. Not fitted and never in a profile: set on the replay's view
    #: of a vLLM or SGLang profile only (calibration.cuda_graph_replay).
    cuda_graph_capture: Literal["", "vllm", "sglang"] = ""
    #: Kernel-time factor of each configuration of ``kernel_dispatch`` over the model's time (the
    #: reference configuration is 1; each dispatch's classes: gemm_dispatch.DISPATCHES).
    dispatch_factor_16x64: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_16x128: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_32x64: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_32x128: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_64x64: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_64x128: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_128x64: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_256x128: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_16x64s7: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_32x64s5: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_16x64s4: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_32x64s7: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_64x64s4: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_64x64s5: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_128x64s5: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_64x128s7: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_128x64s4: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_128x128s2: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_128x128s4: float = Field(default=1.0, gt=0, le=8)
    dispatch_factor_large_one_wave: float = Field(default=1.0, gt=0, le=8)

    @model_validator(mode="after")
    def _known_dispatch(self) -> GemmParams:
        if self.kernel_dispatch and self.kernel_dispatch not in DISPATCHES:
            known = ", ".join(DISPATCHES)
            raise ValueError(f"kernel_dispatch {self.kernel_dispatch!r} is not one of {known} (or empty: none)")
        return self

    @model_serializer(mode="wrap")
    def _without_an_absent_correction(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Opt-in (tuner calibrate --shape-correction): a profile without one is written as before
        # the field existed, byte for byte (the shipped profiles, every table-less refit).
        data = handler(self)
        if self.shape_correction is None:
            data.pop("shape_correction", None)
        # So is a group without a kernel dispatch, and one with a dispatch without the other
        # dispatches' factors (they do nothing there).
        if not self.kernel_dispatch:
            data.pop("kernel_dispatch", None)
        if not self.cuda_graph_capture:
            data.pop("cuda_graph_capture", None)
        for name in set(FACTOR_FIELDS).difference(self._dispatch_fields()):
            data.pop(name, None)
        return data

    def _dispatch_fields(self) -> tuple[str, ...]:
        return DISPATCHES[self.kernel_dispatch].factor_fields if self.kernel_dispatch else ()

    def dispatch_factors(self) -> dict[str, float]:
        """The factor of each configuration of ``kernel_dispatch`` but the reference, by class."""
        return {name.removeprefix("dispatch_factor_"): getattr(self, name) for name in self._dispatch_fields()}

    FIT: ClassVar[dict[str, FitSpec]] = {
        "compute_eff": FitSpec(0.02, 1.0, start=0.6),
        "memory_eff": FitSpec(0.02, 1.0, start=0.6),
        "min_tile_m": FitSpec(1.0, 256.0, log=True, start=16.0),
        "split_k_max": FitSpec(1.0, 64.0, log=True, start=4.0),
        # Least k per split-K piece: libraries split only deep k. Bf16 rows with few output tiles
        # and k >= 51200 ran 1.5-4x faster than the unsplit wave term (h100 trtllm m=256 n=64
        # k=51200: 9.7 us measured, 26 us predicted held out; h200 sglang m=n=256 k=65536: 23 us,
        # 49 us), while splitting every shallow-k small output at 256 (the former constant) cost
        # the fit elsewhere, so split_k_max fitted 1 on 8 of 18 bf16 groups. Fitted: ~2500-5000 on
        # Hopper/Blackwell bf16 (held out: gemm groups missing the target 32 -> 23 of 56).
        "split_k_min_depth": FitSpec(64.0, 65536.0, log=True, start=2048.0),
        "half_saturation_ctas": FitSpec(1e-2, 1e4, log=True, start=10.0),
        "wave_weight": FitSpec(0.0, 1.0, start=0.3),
        # Up to 1 ms: vLLM's DeepGEMM fp8_block rows on b200 take 170-330 us at every shape,
        # from m=5 n=k=128 to m=4096 n=256 k=7168 (a per-call floor, not FLOPs or bytes).
        "launch_s": FitSpec(1e-7, 1e-3, log=True, start=5e-6),
        "act_quant_passes": FitSpec(0.0, 8.0, start=1.0),
        # Per activation row (token) of the quantization pass: vLLM's h200 fp8 rows with m=3328
        # n=128 k=32 take 30 us and m=1280 n=512 k=256 16 us (~9 ns per row), 3-5x what their
        # bytes and FLOPs allow (held out: h200 vllm fp8 median 13.6% -> 6.4%).
        "quant_row_s": FitSpec(1e-12, 1e-6, log=True, start=1e-9),
        "l2_speedup": FitSpec(1.0, 20.0, start=2.0),
        # Share of the L2 a rotated weight buffer keeps: l40s (96 MB L2) bf16 rows with 12-16 MB
        # of weights run at 2-3x the GDDR6 bandwidth (trtllm m=8 n=12288 k=512: 5.8 us) while
        # rows with 25-75 MB stream at 0.65-0.77 of it (m=5 n=1536 k=8192: 43 us, 19 us
        # predicted held out with the whole L2). Fitted 0.2-0.45 on l40s against one call's bytes
        # (held out: l40s trtllm bf16 median 11.4% -> 8.5%; gemm groups missing the target
        # unchanged at 23 of 56 alone); 0.94-1.0 against the collectors' working sets
        # (l2_working_set_bytes: their weight copies were the missing share).
        "l2_capacity_fraction": FitSpec(0.02, 1.0, log=True, start=0.3),
        # Bytes per output element the epilogue moves, at least 2 (one bf16 write: below it the
        # model would beat its own roofline; l40s fits went to 1.3-1.7 with a lower bound of 1,
        # one more group missing with 2, l40s trtllm fp8 p90 22% -> 26%). Rows whose output
        # dominates take more, h100 trtllm bf16 m=16384 n=6144 k=64 77.6 us = 2.6 B per element
        # at the full HBM bandwidth, b200 trtllm fp8_block m=4096 n=16384 k=256 54 us = 6.4 B
        # (fp32 accumulators scaled and converted). Fitted 2.3-3.7 bf16, 2-6 fp8 (held out, with
        # l2_capacity_fraction: gemm groups missing the target 23 -> 20 of 56; b200 trtllm
        # fp8_block p90 15.0% -> 9.7%).
        "output_bytes": FitSpec(2.0, 64.0, log=True, start=2.0),
        "combine_power": FitSpec(1.0, 16.0, start=2.0),
        # Share of the L2 the output's writes may fill, apart from the inputs' share
        # (l2_capacity_fraction, small: the collector rotates weights): the write-back L2
        # absorbs fresh output. l40s (96 MB L2, 864 GB/s) vLLM bf16 m=512 n=65536 k=64 takes
        # 47.6 us where its 67 MB of output take 78 us at the GDDR6 bandwidth; m=4096 n=7168
        # k=64 40.4 us for 59 MB. Fitted 0.99-1 on 5 of the 8 l40s groups (on HBM chips it
        # scatters, 0.02-1: there the L2 term is a small correction). Held out: l40s trtllm fp8
        # median/p90 6.8/28.0% -> 5.5/19.7%, sglang bf16 p90 34.8 -> 31.6%, vllm bf16 32.1 ->
        # 29.2%; gemm groups missing a target 13 -> 12 of 56.
        "output_l2_fraction": FitSpec(0.02, 1.0, log=True, start=0.5),
        # The five below are fitted on the formats whose kernels quantize activations only
        # (tuner/calibrate.py fit_gemm): the engines' fp8 paths (quantize, then DeepGEMM or
        # CUTLASS) are where the measurements show them.
        # Per call, when m % M_ALIGN != 0 (added after the floor): b200 vLLM fp8_block rows
        # take 164-180 us at m % 4 == 0 and 220-250 us otherwise at the same (n, k)
        # (m=2048 n=768 k=1536 176 us, m=2049 n=1536 k=2048 229 us; m=4 170 us, m=7 232 us;
        # gb200 ~300 against ~420 us): the per-row scales of an unaligned m take another pass.
        # Held out, b200 vllm fp8_block median 15.3% -> 3.0%, gb200 17.5% -> 5.2%.
        "unaligned_m_s": FitSpec(1e-9, 1e-3, log=True, start=1e-6),
        # A per-call floor the kernel runs under, not after: h200 vLLM fp8_block rows take
        # 80-95 us at m >= 32 until their FLOPs pass it (m=2560 n=6144 k=2560 91 us, where the
        # kernel alone is ~53 us: max, not the sum; the additive launch_s predicted 134 us held
        # out). Started at 30 us: below every row the max has no gradient.
        "host_floor_s": FitSpec(1e-9, 1e-3, log=True, start=3e-5),
        # The kernel itself runs slower at an unaligned m: h100 SGLang fp8 rows over 100 us
        # reach 1150-1310 TFLOP/s at m % 4 == 0 (m=1792 n=51200 k=4096 1313) and at most
        # 900-1070 otherwise (m=1793 n=65536 k=2560 978); held out before it, unaligned rows
        # over 300 us ran 0.88 of the prediction, aligned 1.07. Held out: h100 sglang fp8
        # median 8.1% -> 7.2%, fp8_block 8.9% -> 7.9%.
        "unaligned_m_slowdown": FitSpec(1.0, 2.0, start=1.05),
        # The floor steps up with m: h100/h200 vLLM fp8_block rows take 56-61 us at m <= 17
        # at every (n, k) (h200 m=6 n=128 k=256 61 us, m=14 n=256 k=16384 59 us) and 80-95 us
        # from m=32 (no rows between); the switch falls in that gap. With host_floor_s and
        # unaligned_m_s, held out: h100 vllm fp8_block median 15.2% -> 4.1%, h200 15.7% -> 3.7%.
        "large_m_launch_s": FitSpec(1e-9, 1e-3, log=True, start=1e-6),
        "large_m_switch": FitSpec(2.0, 4096.0, log=True, start=64.0),
        # Fitted on the weight-only formats only (tuner/calibrate.py fit_gemm): a100 TRT-LLM
        # int4_wo rows at m=1 take 11x their weight bytes' time and scale with the weight
        # elements per CTA, not with the bytes (m=1 n=1536 k=16384: 68.6 us, 27 us predicted
        # held out without the term; n=256 k=65536: 122 us, 51 us), while narrow outputs at
        # m=128-512 ran 1.5-3x faster than the CTA saturation that those rows pulled up
        # (m=512 n=128 k=65536: 107 us, 350 us predicted). Fitted 19 ps (int4) and 18 ps
        # (int8) per element per CTA; half_saturation_ctas int4 59.5 -> 0.01 (its bound).
        # Also fitted on SmoothQuant (int8 weights straight into int8 tensor cores: no
        # dequantization, but the same per-CTA walk of k): its CUTLASS rows at m=8-16 take ~10 us
        # plus ~3 ns per k at 2-8 output tiles (m=8 n=512 k=128 9.2 us, k=5120 27.6 us; m=16
        # n=256 k=12288 50 us). Alone it did not help (7.4/30.4% -> 7.7/31.1%: the m <= 4 rows,
        # a GEMV, do not walk); with the GEMV below, fitted 8.7-10 ps.
        "dequant_s_per_element": FitSpec(1e-14, 1e-8, log=True, start=1e-11),
        # Fitted on SmoothQuant only (tuner/calibrate.py GEMV_FORMATS): TRT-LLM's SmoothQuant
        # plugin runs a CUDA-core GEMV (int8_sq_launcher) at m <= 4 and CUTLASS tiles above
        # (smoothQuantGemmPlugin.cpp enqueue). a100 rows at m <= 4 stream their weights at the
        # HBM bandwidth under a ~7.7 us floor whatever the CTA count (m=1 n=256 k=16384: 11.3 us;
        # the tiled model with its few-CTA saturation predicted 19 us held out), while m=8-16 rows
        # run CUTLASS tiles with a ~10 us floor that walk k per CTA (m=16 n=256 k=12288: 50 us;
        # m=8 n=512 k=5120: 27.6 us). The m=4 n=65536 rows take 74-77 us at k=512 and 1024 alike:
        # a cost per output element (~0.2 ns). Fitted gemv_max_m 4.3-4.7 in every fold, launch
        # 7.6-7.8 us, 0.16-0.24 ns per output; held out (with the per-CTA walk, below): a100 trtllm
        # sq median/p90 7.4/30.4% -> 7.9/20.7%.
        "gemv_max_m": FitSpec(0.5, 64.0, log=True, start=6.0),
        "gemv_launch_s": FitSpec(1e-7, 1e-4, log=True, start=8e-6),
        "gemv_s_per_output": FitSpec(1e-13, 1e-8, log=True, start=1e-10),
        # Fitted on fp8_block under SGLang only (tuner/calibrate.py SCALE_FORMATS,
        # SCALE_ENGINES): b200 SGLang fp8_block (DeepGEMM) rows at m <= 128 take ~15-25 us
        # beyond their weights' streaming time (at ~6 TB/s) at n <= 16384 and ~40-50 us at
        # n = 51200-65536, at every k from 512 to 51200 (n=51200 k=512 m=1 and m=80: 46 us;
        # k=12288 m=11: 142.5 us, 105 us of weights), while
        # TRT-LLM's DeepGEMM on the same chip does not (n=51200 k=1536 m=3: 18.8 us, SGLang
        # 52.7 us); gb200 alike (n=65536 k=1024 m=1: 58.1 us). DeepGEMM on SM100 reads per-row
        # UE8M0 scales: float 128x128 block scales are broadcast to n rows and packed per call
        # (DeepGEMM transform_sf_into_required_layout), the likely pass. Fitted 0.43-0.55 ns per
        # column on b200/gb200 SGLang (~0, its lower bound, under TRT-LLM when fitted there);
        # held out, b200 sglang fp8_block median/p90 7.6/26.5% -> 5.7/22.8%, gb200 6.3/23.1% ->
        # 5.5/16.8%, h100 7.8/22.8% -> 7.3/21.7%, h200 10.1/28.8% -> 10.7/29.0% (fitted 0.04 ns).
        "scale_column_s": FitSpec(1e-13, 1e-8, log=True, start=1e-10),
        # Fitted on the weight-only formats only (tuner/calibrate.py fit_gemm): their m <= 4 rows
        # run TRT-LLM's weight-only GEMV (WEIGHT_ONLY_GEMV_MAX_M), and a100 int4_wo rows at
        # m = 2-4 ran 0.87x the tiled model's time held out (median log residual +0.14 over 25
        # rows; m = 1 +0.04, m = 5-16 -0.01 to -0.05). Its time still follows the tiled model's
        # per-CTA walk (m=1 n=256 k=65536: 122 us for 4 us of weight bytes), which the GEMV formula
        # of SmoothQuant (gemv_max_m: weight bytes under a floor) cannot follow (int4_wo m = 1
        # rows held out 22.6% with it), so a factor of that time. Fitted 0.85-0.91 (int4_wo and
        # int8_wo); held out, a100 trtllm int4_wo median/p90 8.70/24.37% -> 8.27/23.32%, int8_wo
        # 7.3/22.5% -> 7.1/21.6%. m = 1 (batch-1 decode) takes it too, as the plugin's switch
        # says, though its rows fit the tiled time alone better: leaving m = 1 out gave int4_wo
        # 8.06/24.4% (a lower median, a p90 at the target's edge), not kept for a switch the
        # source does not have.
        "weight_only_gemv_factor": FitSpec(0.3, 3.0, start=0.9),
        # Fitted where dequant_s_per_element is (tuner/calibrate.py fit_gemm): the per-CTA walk
        # is a latency (each 64-deep k step loads, dequantizes, then feeds the MMA), and TRT-LLM's
        # fpA_intB / SmoothQuant CUTLASS tiles on SM80 (16x128 to 128x128, 128 threads, 2-4
        # stages; cutlass_heuristic.cpp get_candidate_tiles) are small enough that the launcher
        # (compute_occupancy_for_kernel, from their shared memory) runs several CTAs per SM,
        # which overlap their walks; CTAs past the SMs were charged another walk each wave. a100
        # int4_wo rows with more tiles than SMs ran faster than that held out (m=64 n=65536
        # k=10240, 512 tiles: 381 us, 562 predicted; m=192 n=65536 k=4096: 461 us, 523; m=48
        # n=65536 k=2048: 88 us, 101). Bounds 1 (the former model) to 32 (SM80's most resident
        # CTAs per SM). Fitted at 32 in every fold on int4_wo and SmoothQuant (the walk is a
        # per-CTA latency whatever the CTA count), 1.9-2.7 on int8_wo (plausibly: 8-bit tiles hold
        # twice the weight bytes per stage, fewer per SM) in 4 of 5 folds; held out, a100 trtllm int4_wo
        # median/p90 8.27/23.32% -> 7.49/22.30%, sq 7.97/20.84% -> 7.20/20.43%, int8_wo
        # 7.09/21.64% -> 6.54/22.66%.
        "dequant_ctas_per_sm": FitSpec(1.0, 32.0, log=True, start=2.0),
        # Fitted where tuner/calibrate.py KERNEL_DISPATCH names the group's dispatch (vLLM and
        # SGLang fp8 on the L40S), each dispatch's own classes: each configuration of the engine's
        # SM89 fp8 dispatch runs at its own speed (cost_models/gemm_dispatch.py). For vLLM's, before
        # it, over the group's 3,000 database rows, the
        # shipped fit's median log residual by configuration was +0.15 (32x64: m = 17-32 at
        # n <= 8192), +0.19 (64x64: m = 33-64 at n <= 8192), +0.26 (256x128: m > 256 at
        # 4096 < n <= 8192) and -0.07 (64x128), the others within 0.03, while SGLang's and
        # TRT-LLM's fp8 rows on the same chip (other kernels) stayed within 0.03 by the same bins.
        # Fitted 0.71 (16x64) to 1.49 (256x128); held out (5 folds by weight shape), the fit alone
        # 10.8/34.3% -> 10.4/27.5%, with the shape correction 7.55/28.5% -> 7.54/24.9%. SGLang's
        # sgl-kernel fp8 on the L40S alike (its own dispatch: a 2-stage 128x128 kernel at m =
        # 257-512, n <= 8192 ran +0.32 in median log residual): the fit alone 10.3/31.2% ->
        # 9.4/30.3%, with the correction 8.26/25.1% -> 8.44/24.0% (docs/accuracy.md, GEMM, the
        # sixteenth round). SGLang's DeepGEMM fp8_block on h100/h200: one wave of its largest
        # blocks (256x128, 128x192) ran +0.70 to +0.91 in median log residual; fitted 2.5-2.8,
        # h200 held out 8.9/25.6% -> 8.8/23.0% (the seventeenth round).
        **{name: FitSpec(0.25, 4.0, log=True, start=1.0) for name in FACTOR_FIELDS},
    }


def l2_resident_fraction(bytes_moved, chip: HardwareSpec, capacity_fraction: float = 1.0) -> np.ndarray:
    """Soft indicator that a working set of ``bytes_moved`` fits in L2: 1 well below the L2 size
    (times ``capacity_fraction``), 0 well above (1 / (1 + (bytes / L2)^4)); 0 for chips without
    an L2 figure."""
    return _l2_resident_owned(np.asarray(bytes_moved, dtype=float), chip, capacity_fraction)


def _l2_resident_owned(
    bytes_moved, chip: HardwareSpec, capacity_fraction: float, out: np.ndarray | None = None
) -> np.ndarray:
    """:func:`l2_resident_fraction`'s formula, its operations in place in one new array (or
    ``out``, a dead temporary of its shape)."""
    if chip.l2_bytes is None:
        return np.zeros(np.shape(bytes_moved))
    kept = np.divide(bytes_moved, chip.l2_bytes * capacity_fraction, out=out)
    kept *= kept
    kept *= kept
    kept += 1.0
    return np.divide(1.0, kept, out=_out(kept))


def gemm_time_s(
    m,
    n,
    k,
    gemm_format: str,
    chip: HardwareSpec,
    params: GemmParams,
    *,
    weights_in_l2: bool = False,
    l2_working_set_bytes: np.ndarray | None = None,
) -> np.ndarray:
    """Seconds for x[m,k] @ W[k,n] in ``gemm_format`` on ``chip`` (arrays broadcast).

    time = launch_s + act_quant + combine(compute, memory * saturation)

    - compute = 2 * m_eff * n * k * quant / (peak(format) * compute_eff), where
      m_eff = max(m, min_tile_m): a kernel's smallest M tile is computed in full however few rows
      are valid (Hopper wgmma tiles are 64 rows; fitted, since engines pick kernels per shape);
      quant = 1 + wave_weight * (waves * SMs / tiles - 1) is the wave-quantization loss over the
      chip's SMs with TILE_M x TILE_N tiles, weighted by wave_weight (0: split-K/stream-K kernels
      hide it, 1: full loss). Motivation: h100 bf16 GEMMs with m=n=k~4096 reach ~0.7-0.8 of peak,
      m<=16 ones are pure weight streaming, and mid sizes show a tile staircase in m.
    - split-K (``split_k_max``): an output of fewer tiles than SMs is computed in
      splits = clip(min(SMs / tiles, k / split_k_min_depth), 1, split_k_max) pieces of k, so the
      waves count ctas = tiles * splits, and the fp32 partials (8 bytes per output element per
      extra piece, written and read) join the memory traffic. Measured: a100 trtllm int4_wo
      m=n=256 k=65536 (4 tiles on 108 SMs) takes 0.10 ms; the model without split-K held out
      0.28 ms (+170%). split_k_max = 1 means no split-K (fits near 1 where kernels do not split).
      split_k_min_depth (default SPLIT_K_MIN_DEPTH = 256) is the least k a piece keeps: fitted,
      libraries split deep k only (bf16 fits: 2500-5000 on Hopper/Blackwell).
    - HBM saturation (``half_saturation_ctas``): memory *= 1 + half_saturation_ctas / ctas. A GEMM
      with few CTAs cannot keep enough loads in flight to reach the HBM bandwidth: a100 trtllm sq
      m=16 n=256 k=12288 (2 tiles) takes 50 us where its 3 MB of weights stream in 1.5 us.
    - memory = (n*k*w + m*k*a + m*n*output_bytes) bytes / (HBM bandwidth * memory_eff): weights
      w bytes per element of the format (int4 0.5, fp8 1, ...), activations a, and the output:
      OUTPUT_BYTES (2, one bf16 write) by default, fitted since epilogues move more (2.3-6).
    - L2: a working set that fits in L2 streams l2_speedup times faster:
      memory *= 1 - l2_resident_fraction * (1 - 1/l2_speedup), the L2 size scaled by
      l2_capacity_fraction (default 1). The collector rotates weights smaller than L2, yet l40s
      rows (96 MB L2, 864 GB/s GDDR6) run up to 3x faster than the HBM roofline when weights fit
      in L2 (10-20% of l40s bf16 rows are below it), and only up to a part of it (fitted
      0.2-0.45 of the L2 on l40s against one call's bytes; against the collectors' working sets,
      ``l2_working_set_bytes`` below, 0.94-1.0 of it). On HBM3 chips the fit against one call's
      bytes put a small capacity (1-5% of the L2, i.e. tiny working sets) behind a speedup: a
      correction at shapes the launch floor dominates (against the working sets 2-80% of it).
      With ``output_l2_fraction`` > 0 the output's bytes have their own share of the L2 (its
      writes land in the write-back L2; fitted ~1 on l40s) and the inputs keep
      l2_capacity_fraction: memory = (inputs * (1 - resident(inputs) * gain) + output *
      (1 - resident(output) * gain)) / bandwidth, gain = 1 - 1/l2_speedup.
      ``weights_in_l2`` (default False) says whether the inputs' L2 gain counts. False, a serving
      step and every deployment estimate, drops it (weights and activations alike); True, the
      kernel collectors' conditions, is what the fits, their shape corrections and their
      held-out errors pass: between two reads of one GEMM's weights every other
      layer's weights pass through the L2 (a chip's share of a model is gigabytes; the L40S's L2
      is 96 MiB), while the kernel collectors the fits were made on call one GEMM again and again
      over a few copies of its weights (AIConfigurator: TensorRT-LLM ceil(L2 / weight bytes) up
      to 5 copies, vLLM 6 Linear copies, SGLang 6 ops), and small weights stay in L2 between
      calls (l40s TRT-LLM bf16 rows at m <= 8 whose copies fit in the L2: 0.8-1.7 TB/s, bin
      medians; 100.7 MB of weights, one copy, m = 2-10: 2.1-3.0 TB/s; the others 0.65-0.8 TB/s,
      the GDDR6 rate). The output's own share (``output_l2_fraction``: its writes land in the
      write-back L2) stays; without one (the inputs and the output share one L2 term) no L2 gain
      is left. The shape correction, learned on the collectors' rows, still carries part of
      their L2 pattern (smoothed over half an octave in n and k), so last the time is floored at
      the weights' bytes at the chip's peak memory bandwidth: a cold weight is read from DRAM
      once at least (l40s-trtllm fp8 m=1 n=8192 k=16384: 93.9 us corrected, 155 us the floor).
      ``l2_working_set_bytes`` (with ``weights_in_l2`` only; an array that broadcasts with m, or
      None): the bytes a collector cycles through between two calls of one row's GEMM (its
      copies of the weights and activations: tuner/collector_working_set.py). Given, the inputs'
      resident share is computed on them in place of one call's weights and activations (the
      gain still applies to the bytes one call moves), so a fit of the collectors' rows need
      not average their L2 sawtooth in the weight bytes into l2_capacity_fraction and the shape
      correction.
    - act_quant (fp8, fp8_block, nvfp4 only: those kernels quantize bf16 activations, and the
      collector times it) = act_quant_passes * m*k*(2 + a) bytes / (bandwidth * memory_eff)
      + m * quant_row_s: dynamic per-token scales cost per row whatever k (vLLM/SGLang fp8 rows
      with m >= 1024 and k <= 256 take ~9 ns per row on h100/h200/b200: h200 m=3328 n=128 k=32
      30 us, where bytes and FLOPs allow 6 us).
    - weight-only formats (int8_wo, int4_wo) dequantize inside the kernel: math at the bf16 peak,
      memory at the narrow weight bytes; the dequantization adds n * k * m_tiles *
      ``dequant_s_per_element`` / min(ctas, SMs) to the compute time (m_tiles = ceil(m_eff /
      tile_m): each M tile dequantizes the weight tiles it reads; default 0: none), with SMs
      times ``dequant_ctas_per_sm`` in place of SMs (CTAs resident on one SM overlap their
      walks; default 1; fitted 32, its bound, on a100 TRT-LLM int4_wo and sq). a100 TRT-LLM
      int4_wo m=1 n=1536 k=16384 takes 68.6 us, 27 us predicted held out without it. Fitted
      18-19 ps per element per CTA (int4_wo, int8_wo); held out, int4_wo median/p90 9.5/29.1% ->
      8.7/24.4%, int8_wo 8.2/25.0% -> 7.3/22.5% (now meets both); on SmoothQuant (int8 weights
      straight into int8 tensor cores, no dequantization) it did not help (7.4/30.4% ->
      7.7/31.1%), so it is not fitted there.
    - GEMV for few rows (``gemv_max_m`` > 0; fitted on SmoothQuant, whose TRT-LLM plugin runs a
      CUDA-core GEMV at m <= 4): time = gemv + (tiled time - gemv) * s, s = r^16 / (1 + r^16),
      r = m / gemv_max_m, gemv = gemv_launch_s + bytes / bandwidth + m * n * gemv_s_per_output
      (no tiles: neither the CTA saturation nor the per-CTA walk). a100 sq m=1 n=256 k=16384:
      11.3 us, where the tiled model's 2 CTAs predicted 19 us held out.
    - weight-only GEMV (``weight_only_gemv_factor``, fitted on int8_wo and int4_wo): rows with
      m <= WEIGHT_ONLY_GEMV_MAX_M (TRT-LLM's weight-only batched GEMV) take the tiled time, launch
      included, times the factor (a100 int4_wo m = 2-4: 0.87x the tiled model's time).
    - combine: plain max or a fitted p-norm smooth max (``combine_power``).
    - per-call floor (``host_floor_s``, ``large_m_launch_s`` from m ~ ``large_m_switch`` on, a
      step r^16 / (1 + r^16), r = m / switch): time = max(time, floor); the engine's per-call
      work runs while the kernel does, so a kernel shorter than it is hidden (vLLM fp8_block on
      h100/h200: 56-61 us at m <= 17, 80-95 us from m=32, until the FLOPs pass it).
    - unaligned m (m % M_ALIGN != 0): the kernel's time times ``unaligned_m_slowdown`` before
      the floor, ``unaligned_m_s`` after it (b200 vLLM fp8_block: 220-250 us against 164-180 us
      at m % 4 == 0).
    - kernel dispatch (``kernel_dispatch``, cost_models/gemm_dispatch.py; vLLM's and SGLang's fp8
      on SM89, SGLang's DeepGEMM fp8_block on SM90): the kernel time, before the floor, times
      ``dispatch_factor_<class>`` of the configuration the engine's dispatch runs at (m, n, k)
      on the chip's SMs (the dispatch's reference class: 1). l40s vLLM fp8 m = 33-64 at
      n <= 8192 (64x64 tiles, exact fp8 accumulation): 1.2x the smooth model's time; h200 SGLang
      fp8_block m=1280 n=3072 k=16384 (one wave of 256x128 blocks): 2.3x.
    - per-call scale pass (``scale_column_s``, fitted on SGLang's fp8_block): n *
      scale_column_s after the floor, whatever m and k (b200 SGLang fp8_block m=1 n=51200
      k=512: 46 us, 20 us predicted held out without it).
    - CUDA-graph padding (``cuda_graph_capture``, "vllm" or "sglang": set on a replay's view of
      the profile only, calibration.cuda_graph_replay): m is first padded to the engine's next
      captured size (cost_models/cuda_graph_capture.py), which every term above then sees.
    - measured shape correction (``shape_correction``, cost_models/gemm_shape.py): the whole
      time times exp(the table's log correction at (m, n, k)), last: what the terms above miss
      near the group's measured shapes (docs/accuracy.md, GEMM, the twelfth round).
    """
    return gemm_time_with_constants_s(
        m,
        n,
        k,
        peak_for_format(chip, gemm_format),
        WEIGHT_BYTES[gemm_format],
        ACTIVATION_BYTES[gemm_format],
        gemm_format in QUANTIZES_ACTIVATIONS,
        chip,
        params,
        weights_in_l2=weights_in_l2,
        l2_working_set_bytes=l2_working_set_bytes,
    )


def gemm_time_with_constants_s(
    m,
    n,
    k,
    peak,
    w_bytes,
    a_bytes,
    quantizes_activations: bool,
    chip: HardwareSpec,
    params: GemmParams,
    *,
    weights_in_l2: bool = False,
    l2_working_set_bytes: np.ndarray | None = None,
    column_corrections: tuple[tuple[GemmShapeCorrection, np.ndarray], ...] = (),
) -> np.ndarray:
    """:func:`gemm_time_s` with its format's constants given instead of its name: the peak ops/s
    (:func:`peak_for_format`), bytes per weight and per activation element (``WEIGHT_BYTES``,
    ``ACTIVATION_BYTES``; scalars, or arrays that broadcast with m) and whether its kernels
    quantize activations. GEMMs of several formats that share one ``params`` (a profile times a
    format it did not measure with its bf16 fit) are then one call, each element with its own
    format's constants; every constant enters elementwise, so each element's seconds are the
    ones :func:`gemm_time_s` gives it alone. ``column_corrections``: where those formats differ
    in their measured shape correction (``params`` then without one), each format's correction
    and the columns (last axis) of its GEMMs, applied where ``params.shape_correction`` would be:
    at the m the replay pads to, before the cold-weight floor. (Applied to the result after the
    call, the correction read the unpadded m and scaled the floor: a bf16 GEMM of Llama-3-8B on
    a B200 under SGLang at 34.6 sequences, padded to 40, came out 1.3% apart depending on
    whether an int4 deployment was scored in the same call.)"""
    m, n, k = (np.asarray(x, dtype=float) for x in (m, n, k))
    if params.cuda_graph_capture:
        # A CUDA-graph replay runs the captured size m was padded to (cuda_graph_capture.py).
        m = padded_to_capture(m, params.cuda_graph_capture)
    shape = np.broadcast_shapes(m.shape, n.shape, k.shape, np.shape(peak), np.shape(w_bytes), np.shape(a_bytes))
    if not m.shape == n.shape == k.shape == shape:
        # Every temporary below then has the result's shape and takes the next operation in place
        # (views: no copies); each element's operations and their order are the same either way.
        m, n, k = (np.broadcast_to(x, shape) for x in (m, n, k))
    bandwidth = chip.memory_bandwidth_bytes_per_s * params.memory_eff

    m_eff = np.maximum(m, params.min_tile_m)
    units = _compute_units(chip)
    # m * n and the output's bytes are computed once (the split-K partials and the L2 terms read
    # them again: the same numbers); temporaries take the next operation in place (_out).
    mn = m * n
    output_bytes = mn * params.output_bytes
    memory_bytes = n * k
    memory_bytes *= w_bytes
    activation_bytes = m * k
    activation_bytes *= a_bytes
    memory_bytes += activation_bytes
    memory_bytes += output_bytes
    # The bytes the inputs' L2-resident share is computed on: the collector's working set in place
    # of one call's weights and activations (weights_in_l2 only; see gemm_time_s).
    l2_extra_bytes = None
    if weights_in_l2 and l2_working_set_bytes is not None:
        l2_extra_bytes = l2_working_set_bytes - n * k * w_bytes - activation_bytes
    split_k = params.split_k_max > 1 and units is not None
    dequant = params.dequant_s_per_element > 0 and units is not None
    # What a GEMV reads and writes (split-K adds partials below, in place where no GEMV reads it).
    stream_bytes = memory_bytes.copy() if params.gemv_max_m > 0 and split_k else memory_bytes
    ctas: np.ndarray | None = None
    # Dead temporaries (arrays of the result's shape) that later results are written into.
    spare: list[np.ndarray] = []
    if units is not None and (params.wave_weight > 0 or split_k or params.half_saturation_ctas > 0 or dequant):
        # Dead temporaries take later results (a smaller, warmer working set).
        if params.small_tile_max_m > 0 or params.mid_tile_max_m > 0:
            # The engine's tile by m: SMALL_TILE_M rows up to either switch, SMALL_TILE_N columns
            # up to small_tile_max_m.
            short = m <= max(params.small_tile_max_m, params.mid_tile_max_m)
            tile_m_max: float | np.ndarray = np.where(short, float(SMALL_TILE_M), float(TILE_M))
            narrow = m <= params.small_tile_max_m
            tile_n: float | np.ndarray = np.where(narrow, float(SMALL_TILE_N), float(TILE_N))
        else:
            tile_m_max, tile_n = float(TILE_M), float(TILE_N)
        tile_m = np.minimum(tile_m_max, m_eff, out=_out(activation_bytes))
        tiles = m_eff / tile_m
        tiles = np.ceil(tiles, out=_out(tiles))
        n_tiles = n / tile_n
        tiles *= np.ceil(n_tiles, out=_out(n_tiles))
        # Split-K: cuBLAS/CUTLASS heuristics cut k into pieces when the output has fewer tiles
        # than SMs (continuous here so the fit has a gradient), at most split_k_max pieces and
        # at least split_k_min_depth of k per piece.
        if split_k:
            splits = units / tiles
            depth = np.divide(k, params.split_k_min_depth, out=_out(n_tiles))
            splits = np.minimum(splits, depth, out=_out(splits))
            splits = np.clip(splits, 1.0, params.split_k_max, out=_out(splits))
            ctas = np.multiply(tiles, splits, out=_out(depth))
        else:
            ctas = tiles
        if params.wave_weight > 0:
            padding = np.multiply(tiles, tile_m, out=_out(tile_m))
            if split_k:  # (else ctas is tiles)
                _spare(spare, tiles)
            padding *= tile_n
            work = m_eff * n
            padding /= work
            waves = np.divide(ctas, units, out=_pop(spare))
            waves -= 1e-9
            waves = np.ceil(waves, out=_out(waves))
            waves *= units
            waves /= ctas
            quant = padding
            quant *= waves
            loss = np.maximum(quant, 1.0, out=_out(quant))
            loss -= 1.0
            loss *= params.wave_weight
            loss += 1.0
            work *= loss
            _spare(spare, waves)
            _spare(spare, loss)
        else:
            if split_k:
                _spare(spare, tiles)
            work = m_eff * n
        if split_k:
            # fp32 partial tiles written and read back by the reduction (split-1 extra copies).
            partial_bytes = np.multiply(mn, 8.0, out=_pop(spare))
            splits -= 1.0
            partial_bytes *= splits
            memory_bytes += partial_bytes
            _spare(spare, partial_bytes)
            _spare(spare, splits)
        saturation = (
            np.divide(params.half_saturation_ctas, ctas, out=_pop(spare)) if params.half_saturation_ctas > 0 else None
        )
        if saturation is not None:
            saturation += 1.0
    else:
        work = m_eff * n
        saturation = None
    compute_s = work
    compute_s *= 2.0
    compute_s *= k
    compute_s /= peak * params.compute_eff
    if dequant:
        # Weight-only kernels dequantize each weight tile once per M tile, on the CTA's own
        # (CUDA-core) lanes: n * k * m_tiles elements spread over the CTAs the chip runs at once.
        assert units is not None and ctas is not None  # dequant implies an SM count
        m_tiles = np.ceil(m_eff / np.minimum(tile_m_max, m_eff))
        in_flight = units * params.dequant_ctas_per_sm
        compute_s = compute_s + n * k * m_tiles * params.dequant_s_per_element / np.minimum(ctas, in_flight)
    _spare(spare, m_eff)
    memory_s = np.divide(memory_bytes, bandwidth, out=_pop(spare))
    if saturation is not None:  # (times 1.0 without it: the same number)
        memory_s *= saturation
        _spare(spare, saturation)
    if params.l2_speedup > 1 and params.output_l2_fraction > 0:
        # The output apart: its writes land in the write-back L2 (up to output_l2_fraction of
        # it), the inputs keep the rotated-buffer share l2_capacity_fraction (none in a serving
        # step: weights_in_l2 False).
        input_bytes = np.subtract(memory_bytes, output_bytes, out=_pop(spare))
        gain = 1.0 - 1.0 / params.l2_speedup
        if not weights_in_l2:
            kept_in = input_bytes.copy()
        else:
            resident_of = input_bytes if l2_extra_bytes is None else input_bytes + l2_extra_bytes
            kept_in = _l2_resident_owned(resident_of, chip, params.l2_capacity_fraction, _pop(spare))
            kept_in *= gain
            kept_in = np.subtract(1.0, kept_in, out=_out(kept_in))
            kept_in *= input_bytes
        kept_out = _l2_resident_owned(output_bytes, chip, params.output_l2_fraction, _pop(spare))
        kept_out *= gain
        kept_out = np.subtract(1.0, kept_out, out=_out(kept_out))
        kept_out *= output_bytes
        kept_in += kept_out
        memory_s *= kept_in
        memory_s /= np.maximum(memory_bytes, 1e-30, out=_out(input_bytes))
    elif params.l2_speedup > 1 and weights_in_l2:
        resident_of = memory_bytes if l2_extra_bytes is None else memory_bytes + l2_extra_bytes
        kept = _l2_resident_owned(resident_of, chip, params.l2_capacity_fraction, _pop(spare))
        kept *= 1.0 - 1.0 / params.l2_speedup
        memory_s *= np.subtract(1.0, kept, out=_out(kept))
    total = _combine(compute_s, memory_s, params.combine_power, overwrite=True)
    total += params.launch_s
    if params.weight_only_gemv_factor != 1.0:
        # m <= WEIGHT_ONLY_GEMV_MAX_M: TRT-LLM's weight-only GEMV at a fitted share of the tiled time.
        total *= np.where(m <= WEIGHT_ONLY_GEMV_MAX_M, params.weight_only_gemv_factor, 1.0)
    if params.gemv_max_m > 0:
        # Below gemv_max_m the engine runs a GEMV: every SM streams a share of the weights, so
        # neither the tiles' CTA count (saturation, walk) nor their padding applies. tiled =
        # r^16 / (1 + r^16), r = m / gemv_max_m, by in-place squarings: 0 GEMV, 1 tiled.
        tiled = np.asarray(m / params.gemv_max_m)
        for _ in range(LAUNCH_STEP_SQUARINGS):
            np.square(tiled, out=tiled)
        tiled = tiled / (1.0 + tiled)
        gemv_s = params.gemv_launch_s + stream_bytes / bandwidth + m * n * params.gemv_s_per_output
        total = gemv_s + (total - gemv_s) * tiled
    if params.unaligned_m_s > 0 or params.unaligned_m_slowdown > 1:
        # m % M_ALIGN != 0 by floor (np.mod on floats is ~10x slower; M_ALIGN is a power of 2,
        # so m / M_ALIGN is exact).
        unaligned = m != M_ALIGN * np.floor(m / M_ALIGN)
        if params.unaligned_m_slowdown > 1:
            total *= 1.0 + (params.unaligned_m_slowdown - 1.0) * unaligned
    if params.kernel_dispatch:
        # The configuration the engine's dispatch runs at (m, n, k), at its own speed (a kernel-time
        # factor, before the per-call floor).
        total *= dispatch_factor(params.kernel_dispatch, params.dispatch_factors(), m, n, k, chip.compute_units or 1)
    if params.host_floor_s > 0 or params.large_m_launch_s > 0:
        floor_s: float | np.ndarray = params.host_floor_s
        if params.large_m_launch_s > 0:
            # (m / switch)^16 by four in-place squarings (a float power is ~5x slower).
            ratio = np.asarray(m / params.large_m_switch)  # 0-d for a scalar m: out= needs an array
            for _ in range(LAUNCH_STEP_SQUARINGS):
                np.square(ratio, out=ratio)
            floor_s = floor_s + params.large_m_launch_s * ratio / (1.0 + ratio)
        total = np.maximum(total, floor_s, out=_out(total))
    if params.unaligned_m_s > 0:
        total += params.unaligned_m_s * unaligned
    if quantizes_activations and params.act_quant_passes > 0:
        total += params.act_quant_passes * m * k * (2.0 + a_bytes) / bandwidth
    if quantizes_activations and params.quant_row_s > 0:
        total += m * params.quant_row_s
    if params.scale_column_s > 0:
        # A pass per call over the weights' block scales, one row per output column (see
        # GemmParams.FIT scale_column_s), before the GEMM kernel: after the floor.
        total += n * params.scale_column_s
    if params.shape_correction is not None:
        total *= params.shape_correction.factor(m, n, k)
    for correction, columns in column_corrections:
        total[..., columns] *= correction.factor(m[..., columns], n[..., columns], k[..., columns])
    if not weights_in_l2:
        # A cold weight comes from DRAM at least once: never faster than its bytes at peak.
        total = np.maximum(total, n * k * w_bytes / chip.memory_bandwidth_bytes_per_s)
    return total


def gemm_roofline_s(m, n, k, gemm_format: str, chip: HardwareSpec) -> np.ndarray:
    """The pure roofline of a GEMM (max of compute at peak and HBM traffic at full bandwidth)."""
    return gemm_time_s(m, n, k, gemm_format, chip, GemmParams())


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------


#: Head dims at which PrefillAttentionParams carries a kernel speed (``head_dim_eff_<d>``): the
#: head dims of the kernel database (data/kernels/context_attention_perf.csv.gz).
HEAD_DIMS: tuple[int, ...] = (64, 128, 192, 256, 512)
#: Most a head dim's kernel may differ in speed from the group's reference kernel, either way:
#: b200 vllm bf16/fp8-KV runs head_dim 192 on Triton at 56 TFLOP/s against 681 for head_dim 128
#: (12x; rows with batch * isl >= 4096 of data/kernels/context_attention_perf.csv.gz).
HEAD_DIM_EFF_MAX = 20.0
#: Most a head dim's window reach (PrefillAttentionParams.head_dim_window_<d>) may differ from
#: the group's window_extra_keys, either way: window_extra_keys spans 1 key (the window exactly)
#: to 1e6 (every key of the longest prompt), so 1e4 either way lets one head dim's kernel skip
#: the keys outside a w=128 window while another's scores all 16384 keys (l40s sglang fp8).
WINDOW_REACH_MAX = 1e4


def causal_pairs(isl, window=0) -> np.ndarray:
    """(query, key) pairs a causal attention over ``isl`` tokens scores, per sequence and head:
    isl*(isl+1)/2, or with a sliding window w > 0 each query sees at most w keys."""
    isl = np.asarray(isl, dtype=float)
    window = np.asarray(window, dtype=float)
    full = isl * (isl + 1.0) / 2.0
    w = np.where(window > 0, window, np.inf)
    windowed = np.where(
        isl <= w,
        full,
        np.minimum(w, isl) * (np.minimum(w, isl) + 1.0) / 2.0 + (isl - np.minimum(w, isl)) * np.minimum(w, isl),
    )
    return np.where(window > 0, windowed, full)


class PrefillAttentionParams(_Params):
    """Causal flash attention over a prompt (one layer). Defaults: pure roofline."""

    compute_eff: float = Field(default=1.0, gt=0, le=1)
    memory_eff: float = Field(default=1.0, gt=0, le=1)
    softmax_s_per_pair: float = Field(default=0.0, ge=0)
    wave_weight: float = Field(default=0.0, ge=0, le=1)
    launch_s: float = Field(default=0.0, ge=0)
    combine_power: float | None = Field(default=None, ge=1, le=16)
    per_tile_s: float = Field(default=0.0, ge=0)
    #: Keys beyond the window a query still scores (key-block granularity; huge: the kernel does
    #: not skip the keys outside the window). See prefill_attention_time_s.
    window_extra_keys: float = Field(default=float(TILE_M), ge=0)
    #: Times the prompt's K/V bytes cross HBM, relative to once (see prefill_attention_time_s).
    kv_bytes_factor: float = Field(default=1.0, gt=0)
    #: Speed of the kernel at head_dim 64/128/192/256/512 relative to the one compute_eff and
    #: softmax_s_per_pair describe (1: the same); see prefill_attention_time_s.
    head_dim_eff_64: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_eff_128: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_eff_192: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_eff_256: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_eff_512: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    #: How much faster Q/K/V/O bytes that fit in L2 move than HBM (1: no L2 term).
    l2_speedup: float = Field(default=1.0, ge=1, le=20)
    #: launch_s of the kernel at head_dim 64/128/192/256/512 relative to launch_s (1: the same).
    head_dim_launch_64: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_launch_128: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_launch_192: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_launch_256: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_launch_512: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    #: window_extra_keys of the kernel at head_dim 64/128/192/256/512 relative to
    #: window_extra_keys (1: the same).
    head_dim_window_64: float = Field(default=1.0, ge=1.0 / WINDOW_REACH_MAX, le=WINDOW_REACH_MAX)
    head_dim_window_128: float = Field(default=1.0, ge=1.0 / WINDOW_REACH_MAX, le=WINDOW_REACH_MAX)
    head_dim_window_192: float = Field(default=1.0, ge=1.0 / WINDOW_REACH_MAX, le=WINDOW_REACH_MAX)
    head_dim_window_256: float = Field(default=1.0, ge=1.0 / WINDOW_REACH_MAX, le=WINDOW_REACH_MAX)
    head_dim_window_512: float = Field(default=1.0, ge=1.0 / WINDOW_REACH_MAX, le=WINDOW_REACH_MAX)
    #: Cost of a (query, key) pair outside the window's reach, as a share of a scored pair (0: the
    #: kernel skips it; 1: it scores every key).
    window_skip_cost: float = Field(default=0.0, ge=0, le=1)

    FIT: ClassVar[dict[str, FitSpec]] = {
        "compute_eff": FitSpec(0.02, 1.0, start=0.5),
        "memory_eff": FitSpec(0.02, 1.0, start=0.5),
        "per_tile_s": FitSpec(1e-13, 1e-6, log=True, start=1e-9),
        "softmax_s_per_pair": FitSpec(1e-20, 1e-12, log=True, start=1e-16),
        "wave_weight": FitSpec(0.0, 1.0, start=0.3),
        "launch_s": FitSpec(1e-7, 1e-4, log=True, start=5e-6),
        "combine_power": FitSpec(1.0, 16.0, start=2.0),
        "window_extra_keys": FitSpec(1.0, 1e6, log=True, start=float(TILE_M)),
        "kv_bytes_factor": FitSpec(0.1, 100.0, log=True, start=1.0),
        "l2_speedup": FitSpec(1.0, 20.0, start=2.0),
        **{
            f"head_dim_eff_{d}": FitSpec(1.0 / HEAD_DIM_EFF_MAX, HEAD_DIM_EFF_MAX, log=True, start=1.0)
            for d in HEAD_DIMS
        },
        **{f"head_dim_launch_{d}": FitSpec(1.0 / 3.0, 3.0, log=True, start=1.0) for d in HEAD_DIMS},
        **{
            f"head_dim_window_{d}": FitSpec(1.0 / WINDOW_REACH_MAX, WINDOW_REACH_MAX, log=True, start=1.0)
            for d in HEAD_DIMS
        },
        "window_skip_cost": FitSpec(0.0, 1.0, start=0.1),
    }


def head_dim_efficiency(params: PrefillAttentionParams | DecodeAttentionParams, head_dim) -> np.ndarray:
    """The kernel's relative speed at ``head_dim``: the ``head_dim_eff_<d>`` knots, linear in
    head_dim between them, the end knots beyond the ends."""
    knots = [getattr(params, f"head_dim_eff_{d}") for d in HEAD_DIMS]
    return np.interp(np.asarray(head_dim, dtype=float), HEAD_DIMS, knots)


def prefill_attention_time_s(
    batch,
    isl,
    heads,
    kv_heads,
    head_dim,
    chip: HardwareSpec,
    params: PrefillAttentionParams,
    *,
    window=0,
    compute_format: Literal["bfloat16", "fp8"] = "bfloat16",
    kv_bytes_per_element: float = 2.0,
    in_l2: bool = False,
) -> np.ndarray:
    """Seconds of causal (flash) attention over ``isl`` prompt tokens, one layer, ``batch``
    sequences (context attention in the kernel database; ``window`` > 0: sliding window).

    time = launch_s * l(head_dim) + tiles * per_tile_s + combine(compute, memory)
    - l(head_dim) (knots head_dim_launch_<d>, linear in head_dim between them, default 1): the
      launch floor of the kernel the engine runs at that head dim relative to launch_s, fitted with
      head_dim_eff_<d> (same head dims). Each engine's kernel per head dim has its own floor, not
      in proportion to its speed (rows with batch * isl <= 64, median): gb200 sglang bf16/fp8-KV
      16.7 us at head_dim 128 (flashinfer), 22.8 at 192 and 12.6 at 256 (both Triton, the 256 one
      4x slower per FLOP than flashinfer at 128); l40s sglang bf16 5.5 us at 128, 13.3 at 192.
      Bounds 1/3-3 (the floors in the database are within 2.4x of each other in every group).
      Held out (all 43 groups, with the L2 term below) 4 -> 1 miss 12%: b200 sglang bf16/fp8-KV
      13.7% -> 7.6%, gb200 13.3% -> 8.6%, gb200 vllm bf16/fp8-KV 12.3% -> 11.8%; l40s sglang fp8
      12.7% -> 15.3% (its windowed rows: Triton at 64 scores every key of a w=128 window at
      isl 8192-16384, at 192 it skips them, one window_extra_keys for both: see the reach per
      head dim below).
    - tiles = batch * heads * ceil(isl / 128): the query tiles (one CTA each). per_tile_s is the
      chip-wide cost of a tile that does not scale with its keys (Q load, O store, softmax
      normalisation, scheduling): b200 sglang bf16 rows with isl=1 and batch 128 take 117-137 us,
      10x what their FLOPs and bytes allow, i.e. ~22 ns per (sequence, head), proportional to
      batch * heads (h=40: 117 us, h=48: 137 us).
    - a sliding window w is paid at key-block granularity: the kernel scores up to
      min(isl, w + window_extra_keys) keys per query. Default 128 (a block of 128 queries reaches
      back w + 127 keys: b200 rows with w=128 run ~1.8x slower than w exact pairs allow). Fitted
      per group, because some kernels do not skip the keys outside the window at all: SGLang's
      Triton kernel (head_dim 192 on b200/gb200, 64 and 192 on l40s) with w=128 runs at 0.68-0.89
      of its own full-causal time at isl 4096-12288 (b200/gb200 sglang rows of equal shape with and
      without a window; w + 128 keys would be 0.04-0.12), while trtllm torch_flow at isl 8192 runs
      at 0.27 (w + 128: 0.06).
    - the reach per head dim: window_extra_keys * r(head_dim) (knots head_dim_window_<d>, linear
      in head_dim between them, default 1), fitted where head_dim_eff_<d> is and WINDOW_MIN_ROWS
      windowed rows at that head dim outrun the reach, and only relative to another head dim's
      windowed rows (where no other head dim has them, window_extra_keys is that head dim's reach:
      the product alone is identified). One engine's kernels per head dim differ: l40s sglang fp8
      with w=128 scores every key at head dim 64 (2 heads on 1, batch 1, isl 16384: 566 us,
      0.26x predicted held out with one reach; windowed rows at isl 2048-3072 take 0.89-1.06x
      the full-causal time of the same shape) and skips them at 192 (2.1-2.5x predicted held
      out, 0.35x the full-causal time at isl 16384).
    - window_skip_cost (fitted with window_extra_keys, 0-1): the pairs outside the reach still
      cost that share of a scored pair, P = P_reach + window_skip_cost * (P_causal - P_reach):
      a kernel that walks every key block and masks the ones outside the window pays their loads
      and loop without the math. l40s sglang fp8 at head dim 192 (Triton), w=128, as a share of
      the full-causal time of the same shape: 0.90 at isl 512, 0.64-0.71 at 1024, 0.35 at 16384,
      where the window alone would give 0.44, 0.23 and 0.016, a reach alone could not follow
      (about 400 keys at isl 1024, 2900 at 16384), and a skipped pair at ~1/3 of a scored one
      does. Fitted 0.32 on l40s sglang bf16 and fp8, 0.57-0.63 for SGLang bf16/fp8-KV on
      b200/gb200, 0.19-0.31 for SGLang on h100/h200, ~0 (its bound) under TRT-LLM and vLLM.
      Held out (5-fold by shape, all 43 groups, with the reach per head dim): 1 -> 0 miss 12%,
      l40s sglang fp8 15.3% -> 9.7%, h100 sglang bf16/fp8-KV 8.3% -> 6.5%, h200 sglang
      bf16/fp8-KV 7.9% -> 6.1%, h100 vllm bf16/fp8-KV 9.8% -> 8.6%, gb200 sglang bf16 10.1% ->
      9.1%; 13 groups better, 4 worse by 0.3 points at most (b200/gb200/h200 vllm bf16
      7.5/9.3/7.6% -> 7.8/9.6/7.9%, gb200 sglang bf16/fp8-KV 8.6% -> 8.8%). The reach per head
      dim alone: l40s sglang fp8 13.4%; the skip cost alone: 15.9%; with a reach per head dim
      also where no other head dim has windowed rows, the fit of h200 sglang bf16/fp8-KV ended
      at a soft-L1 cost of 1.73 against 1.02 without the two terms (windowed rows 10% -> 19%
      in sample): the reach and its factor are one product there.
    - compute = P * (4 * head_dim / (peak * compute_eff) + softmax_s_per_pair) * quant / e(head_dim),
      with P = batch * heads * causal_pairs(isl, window) (QK^T and PV, 2 FLOPs per MAC each), peak
      of ``compute_format`` (fp8 attention runs fp8 tensor cores). ``softmax_s_per_pair`` is the
      exponential and rescaling per score, which tensor cores do not speed up: small head_dim
      kernels are slower per FLOP (h100 trtllm head_dim 64 vs 128 rows). quant is the wave loss of
      batch*heads*ceil(isl/128) query tiles over the SMs, weighted by wave_weight: batch 1 with few
      heads leaves SMs idle.
    - e(head_dim) (``head_dim_efficiency``, knots head_dim_eff_<d>, default 1) is the speed of the
      kernel the engine runs at that head dim relative to the group's reference one: engines pick
      a different kernel per head dim, and head dims a kernel does not support natively run a
      slower one. Measured on rows with batch * isl >= 4096 (data/kernels/
      context_attention_perf.csv.gz, median TFLOP/s of 4 * head_dim * pairs): b200 sglang bf16/fp8
      KV runs flashinfer at head_dim 128 (589) but Triton at 192 (165) and 256 (142); b200 vllm
      bf16/fp8 KV runs Triton at 192 (56) and flashinfer-trtllm at 64-256 (307-859); l40s sglang
      bf16 runs Triton at 64 (83) and 192 (110), flashinfer at 128 (175) and 256 (137). Padding
      192 up to 256 (the 256 kernel's time) does not match these rows: b200 sglang Triton 192 runs
      at 165 TFLOP/s of its own FLOPs, padding would give 142 * 192 / 256 = 107.
    - memory = (Q + O bytes + kv_bytes_factor * K, V bytes) / (bandwidth * memory_eff). The K/V
      bytes get their own weight because the engines move them more than once per prompt: with
      one weight for all bytes, held-out vLLM rows with few query heads per KV head ran slower
      than predicted and rows with many ran faster (b200 vllm bf16/fp8-KV: batch 128, isl 32,
      8 heads on 8 KV heads, d 64 took 54 us, predicted 0.45x; batch 128, isl 256, 32 heads on
      2 KV heads, d 128 took 262 us, predicted 2.2x; median ratio 0.77 at h/kv 1 and 1.26-1.56
      at h/kv 16-64). Fitted per group where the rows hold several heads/kv-heads ratios (else it
      is memory_eff's): vLLM 1.3-28 (b200 bf16 KV 7.5, fp8 KV 28; h200 3.0, 7.3), SGLang fp8 KV
      on b200/gb200 24-31, TRT-LLM 0.2-1.8 (at most 1.5 on Hopper and Blackwell); consistent
      with the engines' attention op also writing the new K/V into the paged cache (fp8:
      quantized) and reading it back.
    - L2 (``in_l2`` only; tuner.calibrate fits with True, as the collector runs one layer's kernel
      again and again on the same Q/K/V): bytes that fit in L2 move l2_speedup times faster,
      memory *= 1 - l2_resident_fraction(bytes) * (1 - 1/l2_speedup), as in decode attention.
      l40s (96 MB L2, 864 GB/s GDDR6) SGLang bf16 rows with short prompts move their bytes faster
      than GDDR6 allows (batch 64, isl 16, 64 heads on 4 KV heads, d 256: 71 MB of Q/K/V/O in
      26 us, 3.2x the bandwidth; held out they came out 1.4x slow at isl 16-128 without the term).
      Fitted 3.6-6.9 on l40s, 1-1.3 on most HBM groups. Held out (all 43 groups) 7 -> 4 miss 12%:
      l40s sglang bf16 15.1% -> 10.7%, bf16/fp8-KV 17.1% -> 11.7%, l40s vllm fp8-KV 12.9% -> 9.3%,
      l40s trtllm 9.5-11.3% -> 5.2-6.5%; gb200 sglang fp8-KV 13.3% -> 14.3%. Serving (False, the
      default) leaves it out, as decode attention does.
    """
    batch, isl, heads, kv_heads, head_dim = (
        np.asarray(x, dtype=float) for x in (batch, isl, heads, kv_heads, head_dim)
    )
    peak = peak_for_format(chip, compute_format)
    window = np.asarray(window, dtype=float)
    reach = params.window_extra_keys
    if any(getattr(params, f"head_dim_window_{d}") != 1.0 for d in HEAD_DIMS):
        knots = [getattr(params, f"head_dim_window_{d}") for d in HEAD_DIMS]
        reach = reach * np.interp(head_dim, HEAD_DIMS, knots)
    pairs = batch * heads * causal_pairs(isl, np.where(window > 0, window + reach, 0.0))
    if params.window_skip_cost > 0:
        all_pairs = batch * heads * causal_pairs(isl)
        pairs = pairs + params.window_skip_cost * (all_pairs - pairs)
    per_pair = 4.0 * head_dim / (peak * params.compute_eff) + params.softmax_s_per_pair
    if any(getattr(params, f"head_dim_eff_{d}") != 1.0 for d in HEAD_DIMS):
        per_pair = per_pair / head_dim_efficiency(params, head_dim)
    units = _compute_units(chip)
    if params.wave_weight > 0 and units is not None:
        tiles = batch * heads * np.ceil(isl / TILE_M)
        quant = 1.0 + params.wave_weight * (np.ceil(tiles / units) * units / tiles - 1.0)
    else:
        quant = 1.0
    compute_s = pairs * per_pair * quant
    # Q and O in the compute format: 1 byte each in fp8. What the measured fp8 kernels move
    # (data/kernels/context_attention_perf.csv.gz; ai-dynamo/aiconfigurator's collectors, read
    # 2026-12-06): TensorRT-LLM's fp8/fp8 rows (torch_flow) are its fp8 context FMHA with fp8 Q
    # and an fp8 O (collector/trtllm/collect_attn.py passes out_scale with QuantAlgo.FP8 and an
    # fp8 cache, for which tensorrt_llm/_torch/attention_backend/trtllm.py TrtllmAttention.forward
    # sets out_dtype float8_e4m3fn, the fp8 o_proj's input): 1 and 1, as charged. SGLang's
    # (collector/sglang/collect_attn.py casts q, k, v to fp8 before the timed call) write a bf16
    # O from their fa3 rows (h100/h200, 466 of 500: FlashAttention 3's hopper/flash_api.cpp "For
    # FP8 input, output must have dtype BF16") and trtllm_mha rows (b200/gb200, 412 and 409 of
    # 500: sglang trtllm_mha_backend.py forward_extend out_dtype=self.q_data_type, the model's
    # bf16), an fp8 one from their triton rows (``torch.empty_like(q)``; all of l40s's): 1 and 2
    # bytes there. Left as is: with kv_bytes_factor fitted, an O of 2 bytes only rescales
    # memory_eff and kv_bytes_factor (refitted with each row's O by its kernel, the four SGLang
    # fp8/fp8 classes came out at memory_eff x1.50-1.55 and kv_bytes_factor x1.55-1.61, compute_eff
    # within 1%), their held-out error did not improve (5-fold on this 2-core VM, 6 seeds: median
    # +0.11 points on average, b200 worse in all 6 by 0.06-0.23; p90 -0.21; seed 20260101
    # h100 7.75/27.2% -> 7.58/25.4%, h200 7.71/26.4% -> 7.74/26.7%, b200 9.52/37.4% ->
    # 9.72/38.8%, gb200 8.93/34.7% -> 8.79/34.3%), and the serving times they give move by at
    # most 0.6% (Llama-3-70B at TP2: 32 heads on 4 KV heads of 128, batch 1-64, prompts 128-8192).
    # The profiles keep the feature they were fitted with, which is the one serving charges.
    act_bytes = 1.0 if compute_format == "fp8" else 2.0
    memory_bytes = (
        batch
        * isl
        * head_dim
        * (2.0 * heads * act_bytes + 2.0 * kv_heads * kv_bytes_per_element * params.kv_bytes_factor)
    )
    memory_s = memory_bytes / (chip.memory_bandwidth_bytes_per_s * params.memory_eff)
    if in_l2 and params.l2_speedup > 1:
        memory_s = memory_s * (1.0 - l2_resident_fraction(memory_bytes, chip) * (1.0 - 1.0 / params.l2_speedup))
    fixed_s = params.launch_s
    if any(getattr(params, f"head_dim_launch_{d}") != 1.0 for d in HEAD_DIMS):
        knots = [getattr(params, f"head_dim_launch_{d}") for d in HEAD_DIMS]
        fixed_s = params.launch_s * np.interp(head_dim, HEAD_DIMS, knots)
    if params.per_tile_s > 0:
        fixed_s = fixed_s + batch * heads * np.ceil(isl / TILE_M) * params.per_tile_s
    return fixed_s + _combine(compute_s, memory_s, params.combine_power)


class DecodeAttentionParams(_Params):
    """Attention of one new token per sequence over its KV cache (one layer). Defaults: roofline
    (every field added after the first fit defaults to a value that leaves the time unchanged)."""

    memory_eff: float = Field(default=1.0, gt=0, le=1)
    compute_eff: float = Field(default=1.0, gt=0, le=1)
    half_saturation_ctas: float = Field(default=0.0, ge=0)
    per_sequence_s: float = Field(default=0.0, ge=0)
    per_head_s: float = Field(default=0.0, ge=0)
    launch_s: float = Field(default=0.0, ge=0)
    #: Cost per (sequence, KV head) per 128 of head dim (Q tile load, output and split merge of
    #: one grouped work unit).
    per_kv_head_s: float = Field(default=0.0, ge=0)
    #: Query heads per KV head beyond which the engine runs a fallback kernel; 0: none.
    fallback_group_size: float = Field(default=0.0, ge=0)
    #: Fraction of the bf16 peak the fallback kernel's math runs at.
    fallback_compute_eff: float = Field(default=1.0, gt=0, le=1)
    #: The fallback kernel's cost per (sequence, query head).
    fallback_per_head_s: float = Field(default=0.0, ge=0)
    #: Extra cost per (sequence, query head) of sliding-window rows.
    window_per_head_s: float = Field(default=0.0, ge=0)
    #: How much faster a KV cache that fits in L2 streams than HBM (1: no L2 term).
    l2_speedup: float = Field(default=1.0, ge=1, le=20)
    #: Seconds per (key x head-dim element) of one CTA walking a sequence's KV alone.
    walk_s_per_element: float = Field(default=0.0, ge=0)
    #: Speed of the kernel at head_dim 64/128/192/256/512 relative to the one memory_eff and
    #: compute_eff describe (1: the same); see decode_attention_time_s.
    head_dim_eff_64: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_eff_128: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_eff_192: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_eff_256: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_eff_512: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    #: Speed of the kernel for one query head per KV head relative to grouped rows (1: the same).
    ungrouped_eff: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_launch_64: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_launch_128: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_launch_192: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_launch_256: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    head_dim_launch_512: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    #: Extra fixed cost of sliding-window rows whose cached length (not the window) reaches
    #: about window_long_kv_len (a step in kv_len; see decode_attention_time_s). 0: none.
    window_long_s: float = Field(default=0.0, ge=0, le=1e-3)
    window_long_kv_len: float = Field(default=4096.0, ge=1, le=1e7)
    #: per_kv_head_s of rows with one query head per KV head, relative to grouped rows (1: the same).
    ungrouped_kv_head_factor: float = Field(default=1.0, ge=1.0 / HEAD_DIM_EFF_MAX, le=HEAD_DIM_EFF_MAX)
    #: Fixed cost of calls whose query heads the kernel regroups by copy (see
    #: decode_attention_time_s: batch >= 2, >= 2 KV heads, more query heads than KV heads). 0: none.
    regroup_copy_s: float = Field(default=0.0, ge=0, le=1e-3)
    #: launch_s of rows with one query head per KV head, relative to grouped rows (1: the same).
    ungrouped_launch: float = Field(default=1.0, ge=1.0 / 3, le=3)
    #: Steepness k of the L2-resident share 1 / (1 + (KV bytes / L2)^k) (4: l2_resident_fraction's).
    l2_steepness: float = Field(default=4.0, ge=1, le=64)
    #: Seconds per (key x head-dim element) of one CTA walking a sliding-window row's KV alone,
    #: one CTA per (sequence, query head), no split-KV (FlashAttention-2's unswapped paged path,
    #: see decode_attention_time_s). 0: none.
    window_walk_s_per_element: float = Field(default=0.0, ge=0, le=1e-8)
    #: CTAs of that path in flight at once: past it the walks run in waves.
    window_walk_ctas: float = Field(default=1e4, ge=1, le=1e6)
    #: per_kv_head_s of sliding-window rows relative to full-attention rows (1: the same; 0: a
    #: kernel with no grouped work unit there, whose per-query-head cost window_per_head_s holds).
    window_kv_head_factor: float = Field(default=1.0, ge=0, le=1)

    FIT: ClassVar[dict[str, FitSpec]] = {
        "memory_eff": FitSpec(0.02, 1.0, start=0.6),
        "compute_eff": FitSpec(0.005, 1.0, start=0.1),
        # Start near the l40s trtllm value (1.25e-10): from below, where the max() hides the
        # term, the fit has no gradient to raise it (held-out l40s trtllm fp8 stayed at 18%).
        "walk_s_per_element": FitSpec(1e-16, 1e-9, log=True, start=1e-10),
        "half_saturation_ctas": FitSpec(1e-2, 1e5, log=True, start=50.0),
        "per_sequence_s": FitSpec(1e-12, 1e-6, log=True, start=1e-9),
        "per_head_s": FitSpec(1e-13, 1e-7, log=True, start=1e-10),
        "launch_s": FitSpec(1e-7, 1e-4, log=True, start=5e-6),
        "per_kv_head_s": FitSpec(1e-12, 1e-6, log=True, start=1e-9),
        # Start between 32 and 48, where TRT-LLM switches (h100/a100 trtllm rows, see below);
        # the upper bound sits past every group size in the database (128).
        "fallback_group_size": FitSpec(2.0, 1024.0, log=True, start=40.0),
        # Lower bound 1e-3: a fold with no row past the switch leaves it unconstrained, and
        # 1e-4 let one held-out b200 sglang row (128/1/128) come out 450x too slow.
        "fallback_compute_eff": FitSpec(1e-3, 1.0, log=True, start=0.01),
        "fallback_per_head_s": FitSpec(1e-12, 1e-6, log=True, start=1e-9),
        "window_per_head_s": FitSpec(1e-12, 1e-6, log=True, start=1e-9),
        "l2_speedup": FitSpec(1.0, 20.0, start=2.0),
        **{
            f"head_dim_eff_{d}": FitSpec(1.0 / HEAD_DIM_EFF_MAX, HEAD_DIM_EFF_MAX, log=True, start=1.0)
            for d in HEAD_DIMS
        },
        "ungrouped_eff": FitSpec(1.0 / HEAD_DIM_EFF_MAX, HEAD_DIM_EFF_MAX, log=True, start=1.0),
        # MHA work units (one query head each) cost less than grouped ones: h100 trtllm bf16
        # 32/32/256 batch 128 kv_len 3 takes 47.0 us, ~9.5 ns per (sequence, head) past the
        # launch, where grouped rows cost 38-46 ns per KV head at head dim 64 (3.1x predicted
        # held out without it).
        "ungrouped_kv_head_factor": FitSpec(1.0 / HEAD_DIM_EFF_MAX, HEAD_DIM_EFF_MAX, log=True, start=1.0),
        # Bounds 1/3-3 as head_dim_launch_<d> (measured MHA / grouped floors: 0.6-1.44).
        "ungrouped_launch": FitSpec(1.0 / 3.0, 3.0, log=True, start=1.0),
        **{f"head_dim_launch_{d}": FitSpec(1.0 / 3.0, 3.0, log=True, start=1.0) for d in HEAD_DIMS},
        # TRT-LLM's windowed decode rows with a long cache take 18-38 us whatever their batch
        # and window bytes (h100 bf16, window 128: 32/8/64 batch 16 kv_len 8191 32.3 us, 16/8/64
        # batch 8 kv_len 16383 31.4 us, 2/1/64 batch 16 kv_len 65535 33.1 us; 32/8/64 batch 4
        # kv_len 127 9.0 us), 0.29-0.48x predicted held out without the term. Started at 10 us
        # and 2048: below the switch the step has no gradient.
        "window_long_s": FitSpec(1e-9, 1e-3, log=True, start=1e-5),
        "window_long_kv_len": FitSpec(256.0, 1e6, log=True, start=2048.0),
        # a100 vLLM bf16 short-KV rows (kv_len <= 63, batch <= 32) take 18.3-22.6 us (p10-p90,
        # median 19.2) at batch >= 2 with >= 2 KV heads and more query heads than KV heads, and
        # 12.4-12.8 us at batch 1 or one KV head (MHA 11.1); l40s vLLM bf16 12.8 against 9.0 us
        # (data/kernels/generation_attention_perf.csv.gz; Hopper/Blackwell vLLM: no step).
        "regroup_copy_s": FitSpec(1e-9, 1e-4, log=True, start=2e-6),
        # l40s vLLM bf16 rows re-read a 67 MB KV cache (0.67 of the 96 MiB L2) at 1.5-2.2 TB/s,
        # 100.7 MB (1.0x) at 1.8 TB/s, 134 MB (1.33x) at 0.66-0.69 TB/s, the GDDR6 rate: the
        # step is sharper than the ^4 share's (0.81 resident at 0.67x, 0.24 at 1.33x).
        "l2_steepness": FitSpec(4.0, 64.0, log=True, start=8.0),
        # l40s vLLM bf16 (FA2) windowed rows with at most ~142 (sequence, query head) pairs take
        # 0.16-0.17 ns per (key x head-dim element) of the windowed length whatever the bytes
        # (2/1/256 batch 2 window 1024: 44.5 us; 40/8/128 batch 2 kv_len 2047: 44.9 us; 5/1/128
        # batch 4 kv_len 8192: 167 us); more pairs take waves (64/4 x 4 heads, kv_len 1023: 200
        # us, 4.5 walks). Started at the l40s value: below the other terms the max() hides it.
        "window_walk_s_per_element": FitSpec(1e-14, 1e-8, log=True, start=1.6e-10),
        "window_walk_ctas": FitSpec(4.0, 1e5, log=True, start=100.0),
        # l40s vLLM bf16 windowed rows cost 27-33 ns per (sequence, query head) at short KV
        # whatever the head dim and KV heads (16/8/128 batch 512 kv_len 7: 224 us; 40/2/64 batch
        # 512 kv_len 3: 653 us; 2/1/256 batch 2048 kv_len 7, window 1024: 134 us), which the
        # per-KV-head cost in proportion to the head dim over-predicted 1.3-1.5x held out.
        "window_kv_head_factor": FitSpec(0.0, 1.0, start=0.5),
    }


def decode_attention_time_s(
    batch,
    kv_len,
    heads,
    kv_heads,
    head_dim,
    kv_bytes_per_element,
    chip: HardwareSpec,
    params: DecodeAttentionParams,
    *,
    window=0,
    kv_in_l2: bool = False,
    query_output_bytes=0.0,
) -> np.ndarray:
    """Seconds of one decode step's attention (one layer): each of ``batch`` sequences reads its
    ``kv_len`` cached keys and values (generation attention in the kernel database).
    ``kv_in_l2``: the same KV cache was just read (a benchmark repeating one layer's kernel, as
    the kernel database does; tuner.calibrate fits with True); False (serving: every layer reads
    its own cache after other layers' weights went through L2) leaves l2_speedup out.
    ``query_output_bytes``: bytes of the queries read and outputs written, streamed with the
    cache (in the memory term at memory_eff, and in the serving floor below; not in the
    L2-resident cache, nor under the saturation in work units, which counts the cache's splits
    (batch x KV heads x kv_len / 512): the queries and outputs are spread over the query heads,
    and charged the cache's 1 + half_saturation_ctas / ctas they made DeepSeek-V3's decode of one
    sequence (128 heads a GPU) 8.8 -> 25.9 us a layer under h200-trtllm, three times its launch-
    bound time for 278 KB). 0 (the default) for the measured GQA/MHA kernels, fitted without it: their
    queries and outputs are a few KB a sequence, held by the fitted fixed costs (per_kv_head_s:
    "Q tile load, output"). Multi-head latent attention's absorbed decode passes its own
    (cost_models.calibrated_times.fused_attention_time_s): 128 heads x (512 + 64) query and
    128 x 512 output elements a sequence in DeepSeek-V3, 278 KB in bf16, the latent cache of 242
    tokens, which the kernel model (launch, per sequence / head / KV head, the cache's bytes) did
    not count: 59 sequences at 2 tokens of context took 0.2 us under tpu-v4-jax against 13.8 us
    to move those 16.6 MB at the HBM bandwidth (docs/validation.md).

    time = launch_s + batch * per_sequence_s + batch * heads * per_head_s
           + batch * kv_heads * head_dim/128 * per_kv_head_s + [window] batch * heads * window_per_head_s
           + [fallback] batch * heads * fallback_per_head_s + [window, long cache] window_long_s
           + max(memory, compute, walk, [window] window walk)
    (per_kv_head_s times window_kv_head_factor on windowed rows)
    where launch_s is launch_s * (l(head_dim) - 1 + u), u = ungrouped_launch where heads ==
    kv_heads and 1 elsewhere, and max(...) is divided by e(head_dim) * [heads == kv_heads]
    ungrouped_eff where the head dim or group size has its own kernel (last items).
    - ``window`` > 0 (sliding window): only min(kv_len, window) entries are read.
    - per_sequence_s, per_head_s: work per sequence and per query head that does not scale with
      the KV length (page-table walks, Q load, softmax merge of split-K partials): batch 2048
      rows with kv_len 1-15 take 0.1-0.3 ms on h100 though they read almost nothing.
    - per_kv_head_s: the same per grouped work unit (one sequence's KV head and its query heads),
      in proportion to the head dim. h100 trtllm rows with kv_len <= 31 at batch >= 512 take
      38-46 ns per (sequence, KV head) at head dim 64 whatever the query heads per KV head
      (16/1/64 batch 512 kv_len 7: 23.7 us; 64/4/64 batch 512 kv_len 15: 77.7 us; heads/kv
      heads/head dim), where a cost per query head over-predicted the many-head rows 1.5-2.4x;
      fp8 rows grow with the head dim (64/4/128 batch 2048 kv_len 3: 171 us, 32/4/256 batch 2048
      kv_len 7: 185 us). Without it (all else as here) 19 of 33 groups miss the 12% held-out
      median, with it 11. Rows with one query head per KV head (MHA) take it times
      ``ungrouped_kv_head_factor`` (default 1; fitted where ``ungrouped_eff`` is): their work
      unit holds one query head, h100 trtllm bf16 32/32/256 batch 128 kv_len 3 47.0 us (~9.5 ns
      per unit past the launch, 3.1x predicted held out without the factor), 256 rows of
      48/48/256 at kv_len 31 209 us (2.4x). Fitted 0.2-0.35 for bf16 under TRT-LLM on
      a100/h100/h200/l40s and under vLLM/SGLang on l40s, 0.05 (its bound) a100 vLLM, 0.75-1.8
      elsewhere. Held out (all 33 groups, with window_long_s): 5 -> 4 miss 12%; h100 trtllm
      bf16 12.4% -> 11.0%, a100 trtllm 14.8% -> 12.3% (11.7% with the factor multiplied in
      another order: that fit is ill-conditioned), a100 vllm 15.6% -> 14.8%, l40s sglang bf16
      10.4% -> 9.1%; worse: h200 vllm fp8 5.3% -> 5.7%, h100 trtllm fp8 12.5% -> 12.7%.
    - memory = batch * kv_len * kv_heads * head_dim * 2 * kv_bytes / (bandwidth * memory_eff)
      * (1 + half_saturation_ctas / ctas) + query_output_bytes / (bandwidth * memory_eff),
      ctas = batch * kv_heads * max(kv_len / 512, 1): a few long sequences cannot keep every
      SM streaming (h100 trtllm batch 1 rows reach a fraction of the bandwidth that batch 64
      rows do), a rational saturation in the work units. Continuous
      in kv_len, not ceil(kv_len / 512): every database row has kv_len = 2^n - 1 (1 to 131071),
      where the two agree within 0.1% of the term, but between them ceil() made the time fall
      as the cache grew (a100 SGLang bf16, batch 2, 8 query heads on 1 KV head of dim 128:
      77.4 us at kv_len 512, 45.6 us at 513; the decode step of llama-3-70b TP8 batch 2 fell
      21.3 -> 19.5 ms when the prompt went from 83 to 166 tokens).
    - Serving (``kv_in_l2`` False): the streaming never beats the KV bytes at the HBM bandwidth.
      The kernel-speed factors (e(head_dim), ungrouped_eff, below) are fitted on rows that re-read
      an L2-resident cache, and where they multiply memory_eff past 1 (b200 TRT-LLM bf16: 1.0 x
      1.141 for one query head per KV head) a serving step would read the cache 14% faster than
      HBM delivers it; measured rows whose KV is over 8x the L2 stream at most 0.95 of the
      bandwidth on b200 (0.88 for TRT-LLM bf16 MHA, head dim 128; data/kernels/
      generation_attention_perf.csv.gz).
    - L2 (``kv_in_l2`` only): a KV cache that fits in L2 streams l2_speedup times faster, memory
      *= 1 - l2_resident_fraction(KV bytes) * (1 - 1/l2_speedup) (the collector re-reads the same
      cache). Applied to serving it made H100 TRT-LLM Llama-3.1-8B TPOT at concurrency 8 (docs/
      accuracy.md, end to end) 9.2% / 25.6% off (median / p90) against 6.0% / 19.8% without it.
      l40s vllm bf16 rows read 67 MB of KV at up to 2.6x the 864 GB/s GDDR6 bandwidth (1/1/128
      batch 256 kv_len 511: 30 us); without the term the six l40s groups' held-out medians are
      13.8-21.7%, with it 9.8-14.4%. The resident share is 1 / (1 + (KV bytes / L2)^k),
      k = ``l2_steepness`` (default 4, l2_resident_fraction's; fitted in 4-64): the collector
      re-reads one cache in a cycle, which an LRU-like L2 serves whole while it fits and hardly at
      all past it, a sharper step than 4 gives (0.81 resident at 0.67x the L2, 0.24 at 1.33x).
      l40s vllm bf16: 67 MB rows (0.67x the 96 MiB) read at 1.5-2.2 TB/s and came out 1.2-1.7x
      slow held out, 134 MB rows (1.33x) at 0.66-0.69 TB/s, the GDDR6 rate. Fitted 8-18 on the
      six l40s groups (4-64 elsewhere, where few rows sit near the L2 size). Held out (all 33
      groups): 1 -> 1 miss 12%, mean median 8.19% -> 8.02%, every l40s group better (vllm bf16
      14.1% -> 12.7%, sglang bf16/fp8 9.1/8.7% -> 8.2/7.8%, trtllm bf16 10.3% -> 9.2%, vllm
      fp8 9.0% -> 8.1%), 14 better, 6 worse by 0.5 points at most (b200 trtllm fp8 6.5% -> 6.9%,
      h200 trtllm bf16 11.2% -> 11.5%, a100 vllm 6.3% -> 6.6%).
    - compute = 4 * batch * heads * kv_len * head_dim / (bf16 peak * compute_eff): GQA with many
      query heads per KV head does heads/kv_heads times the math per byte.
    - fallback: past fallback_group_size query heads per KV head the engine runs another kernel,
      whose math runs at fallback_compute_eff and which costs fallback_per_head_s per (sequence,
      query head). TRT-LLM's grouped (XQA) kernel stops at 32: h100 trtllm bf16 rows at 32 query
      heads per KV head stream the KV at up to 0.66 of the bandwidth (128/4/128 batch 32 kv_len
      4095), rows at 48-128 at 0.02-0.04 and a steady 0.005-0.007 of the bf16 peak at every batch
      and length (64/1/256 batch 8 kv_len 16383: 1.33 ms for 134 MB of KV), plus ~10 ns per
      (sequence, query head) at short KV (64/1/128 batch 512 kv_len 1: 295 us; 96/1/128 batch
      2048 kv_len 7: 2.0 ms) against ~2 ns for the grouped kernel. A steep smooth step in the
      group size (FALLBACK_STEEPNESS, not fitted) keeps the switch point fittable. Without the
      three fallback terms (all else as here) the h100 trtllm bf16 / fp8 held-out medians are
      17.1% / 18.9% and a100 trtllm's 21.6%; with them 11.6% / 15.2% and 15.1%.
    - window_per_head_s: vLLM's sliding-window decode costs 26-34 ns per (sequence, query head)
      at any kv_len (l40s vllm bf16, window 128: 40/4/64 batch 2048 kv_len 31: 2.68 ms; 40/2/64
      batch 512 kv_len 3: 653 us), against 3.4 ns without a window (40/4/128 batch 1024 kv_len 1:
      139 us); l40s vllm bf16 held-out median / p90 16.4% / 126% without it, 14.4% / 46% with
      it (other groups within 1 point either way).
    - window_long_s: sliding-window rows whose cached length (``kv_len`` before the window
      clips it) passes window_long_kv_len cost a fixed window_long_s more, a step r^16 / (1 +
      r^16), r = kv_len / window_long_kv_len (as GemmParams.large_m_launch_s; the steepness is
      not fitted): the kernel's work over the whole cache (page table, split-KV blocks sized by
      the full length) is not clipped to the window. h100 trtllm bf16, window 128: 18-38 us at
      kv_len 8191-131071 whatever the batch (2/1/64 batch 16 kv_len 65535: 33.1 us, 0.29x
      predicted held out without it), 8-11 us at kv_len <= 255. Fitted 15-17 us at kv_len ~2100
      for TRT-LLM bf16 on h100/h200, 10 us on l40s, 2-4 us for vLLM on h100/h200, ~0 on b200.
      Held out (all 33 groups): 8 -> 5 miss 12%; h200 trtllm bf16/fp8 12.2/12.6% -> 11.8/11.4%,
      l40s trtllm bf16 12.1% -> 11.1%, h100 vllm fp8 10.4% -> 6.7%, h200 vllm fp8 8.0% -> 5.3%;
      worse: b200 sglang bf16 10.8% -> 11.5%, gb200 vllm bf16 6.8% -> 7.4%.
    - regroup_copy_s (default 0): a fixed cost of calls at batch >= 2 with >= 2 KV heads and more
      query heads than KV heads. FlashAttention-2's decode path for grouped heads (one query token,
      heads > kv_heads: ``seqlenq_ngroups_swapped``) reshapes Q from (batch, kv_heads x group) to
      (batch x group, kv_heads) rows and the output back; the reshape is a view when batch or
      kv_heads is 1 and a copy kernel each way otherwise (merging batch with the group dim needs
      batch's stride to be group x head_dim x 1 KV head). vLLM runs FA2 on Ampere and Ada: a100
      vLLM bf16 short-KV rows (kv_len <= 63, batch <= 32, all 3000 database rows) take 19.2 us
      (p10-p90 18.3-22.6) in that case, 12.6 us at batch 1 with >= 2 KV heads (12.4-12.8), 12.7 us
      with one KV head, 11.1 us MHA; l40s vLLM bf16 12.8 against 9.0 us; Hopper/Blackwell vLLM
      (FA3 / FlashInfer) and the other engines show no step (within 0.5 us). vLLM's build pays it
      with a sliding window too (l40s windowed rows: 13.1 against 8.5 us), where upstream FA2
      keeps the view.
    - FlashAttention-2's windowed decode (vLLM on Ampere/Ada): FA2 regroups query heads for
      decode (``seqlenq_ngroups_swapped``, see regroup_copy_s) only without a sliding window, and
      its paged varlen path splits the KV over CTAs only when it regroups (vllm-project/
      flash-attention csrc/flash_attn/flash_api.cpp, mha_varlen_fwd: the unswapped paged call
      requires num_splits <= 1). A windowed row thus runs one CTA per (sequence, query head),
      each walking its whole windowed KV: walk = min(kv_len, window) * head_dim *
      ``window_walk_s_per_element`` * max(1, batch * heads / ``window_walk_ctas``) (waves past
      the CTAs in flight), in the max() with memory and compute, and its work units hold one
      query head, so per_kv_head_s is paid times ``window_kv_head_factor`` there (the
      per-query-head cost is window_per_head_s). l40s vLLM bf16 (vllm_flash_attn_fa2): windowed
      rows with <= 142 (sequence, query head) pairs take 0.16-0.17 ns per key x head-dim element
      whatever the bytes (4/2/256 batch 4 kv_len 1023 window 1024: 44.5 us against 16.6 us
      without a window; 40/8/128 batch 2 kv_len 2047: 44.9 us; 5/1/128 batch 4 kv_len 8192:
      167 us), more pairs run in waves (4/2/256 batch 64, kv_len 1023: 200 us, 4.5 walks);
      at short KV they cost 27-33 ns per (sequence, query head) whatever the head dim.
      Hopper/Blackwell vLLM (FA3 packs the grouped heads with a window too; FlashInfer) run
      windowed rows at the unwindowed time (0.99-1.02x). Fitted where windowed rows were
      measured on FA2 (tuner.calibrate.WINDOW_UNGROUPED_KERNELS; l40s vLLM bf16: 1.3e-10 s per
      element, ~290 CTAs in flight on 142 SMs, factor ~1e-7). Held out (all 33 groups): 1 -> 0
      miss 12%, l40s vllm bf16 12.7% / 41.6% -> 11.1% / 36.6% (median / p90), the others
      unchanged; the walk alone 12.2%, the factor alone 11.4%.
    - walk = kv_len * head_dim * walk_s_per_element: a kernel that does not split the KV sequence
      over CTAs walks it in one CTA per (sequence, KV head), at a latency per key that no batch
      hides. l40s trtllm fp8 rows take 16 ns per key at head dim 128 and 32 ns at 192-256 whatever
      the bytes (8/1/256 batch 1 kv_len 32767: 1.06 ms for 17 MB; 16/8/256 batch 2 kv_len 32767:
      1.06 ms for 268 MB; 16/2/128 batch 1 kv_len 131071: 2.11 ms); held-out median 18.3% without
      the term, 10.6% with it (b200 sglang bf16, whose head-dim-256 rows do the same: 16.7% ->
      15.0%). Split-KV engines fit it small enough to never bind.
    - launch_s: the fixed cost that dominates short KV (step < 100 rows are flat in kv_len).
    - ungrouped_launch (default 1; fitted on fp8-KV groups with MHA and grouped shapes,
      tuner.calibrate.UNGROUPED_LAUNCH_KV): the launch floor of rows with one query head per KV
      head relative to grouped rows'. TRT-LLM runs fp8-KV MHA on a kernel with a floor of its
      own: median latency at kv_len <= 63, batch <= 8, MHA over grouped rows 9.5 / 6.6 us on
      h100 (1.44), 9.3 / 6.7 on h200 (1.39), 13.6 / 9.7 on l40s (1.40), while bf16 KV rows start
      at the same floor (h100 trtllm bf16 8.9 / 9.1 us); h100 trtllm fp8 MHA rows at head dim
      128, batch 1-16 came out 0.53-0.73x held out without it (1 of 1 KV head, kv_len 63, batch
      16: 11.3 us). Fitted 1.53-1.57 for TRT-LLM fp8 on h100/h200/l40s, 0.96-1.03 in the other
      fp8 groups. Held out (all 33 groups): 2 -> 1 miss 12%, h100 trtllm fp8 12.7% -> 11.8%,
      l40s trtllm fp8 10.5% -> 9.3%, b200 vllm fp8 8.7% -> 8.4%, h200 vllm fp8 5.5% -> 5.2%;
      worse: gb200 sglang fp8 9.8% -> 10.0%, h200 trtllm fp8 10.9% -> 11.1%.
    - e(head_dim) (``head_dim_efficiency``, knots head_dim_eff_<d>, default 1) and l(head_dim)
      (knots head_dim_launch_<d>, default 1, bounds 1/3-3 as in prefill attention): the streaming
      speed and the launch floor of the kernel the engine runs at that head dim, relative to the
      group's reference one; the per-sequence/per-head costs keep their values. SGLang runs head
      dim 192 on a Triton decode kernel: b200 sglang bf16 rows at 192 have a ~17 us floor (64/8/192
      window 128, batch 2, kv_len 15: 18.7 us, 9.6 us predicted held out without the terms) and
      stream slower per byte; under SGLang l(192) fits 1.2-2.1 on every chip and e(192) 0.16-0.47
      on b200/gb200 (1.0-1.6 on h100/h200, whose floor carries it). Held out (5-fold by shape,
      all 33 groups; 11 miss 12% without): one speed on the streaming alone 10 miss, on launch +
      streaming 9, on the whole time (the per-sequence/per-head costs too) 11, a streaming speed
      and a separate floor 8 (with ungrouped_eff): b200 sglang bf16 15.0% -> 10.8%, gb200 sglang
      bf16 13.1% -> 9.2%, h100 sglang fp8 10.4% -> 5.8%, h200 vllm fp8 11.9% -> 8.0%, h100 vllm
      fp8 12.8% -> 10.4%, h200 trtllm bf16 14.4% -> 12.2%. Fitted where HEAD_DIM_MIN_SHAPES
      shapes have the head dim.
    - ungrouped_eff (default 1): the streaming speed of rows with one query head per KV head (MHA),
      which TRT-LLM runs on a non-grouped kernel: its fp8 rows with heads == kv_heads run slower
      than grouped ones of the same bytes (h200 trtllm fp8: 12/12/64, 12/12/128 and 40/40/128 rows
      came out 0.66-0.71x of measured held out without it). Fitted 0.65-0.89 for TRT-LLM fp8 on
      h100/h200/l40s, 0.73-0.82 for vLLM bf16 on gb200/h200, 0.89-1.3 elsewhere (with e(head_dim)
      on launch + streaming, before l(head_dim): h200 trtllm fp8 14.9% -> 12.4%, l40s trtllm fp8
      11.2% -> 9.0%, a100 trtllm 15.1% -> 16.0%). Fitted where
      HEAD_DIM_MIN_SHAPES shapes are MHA and as many are grouped.
    """
    batch, kv_len, heads, kv_heads, head_dim = (
        np.asarray(x, dtype=float) for x in (batch, kv_len, heads, kv_heads, head_dim)
    )
    windowed = np.asarray(window) > 0
    cached_len = kv_len
    kv_len = np.where(windowed, np.minimum(kv_len, window), kv_len)
    kv_bytes = batch * kv_len * kv_heads * head_dim * 2.0 * np.asarray(kv_bytes_per_element, float)
    ctas = batch * kv_heads * np.maximum(kv_len / 512.0, 1.0)  # continuous: see the docstring
    memory_s = (
        kv_bytes / (chip.memory_bandwidth_bytes_per_s * params.memory_eff) * (1.0 + params.half_saturation_ctas / ctas)
    )
    # The bytes streamed: the cache, and the queries and outputs where the caller counts them
    # (at memory_eff, without the cache's saturation in its work units: see the docstring).
    streamed_bytes = kv_bytes
    if np.ndim(query_output_bytes) > 0 or query_output_bytes != 0:
        streamed_bytes = kv_bytes + np.asarray(query_output_bytes, dtype=float)
        memory_s = memory_s + np.asarray(query_output_bytes, dtype=float) / (
            chip.memory_bandwidth_bytes_per_s * params.memory_eff
        )
    if kv_in_l2 and params.l2_speedup > 1:
        if params.l2_steepness == 4.0 or chip.l2_bytes is None:  # l2_resident_fraction's step
            resident = l2_resident_fraction(kv_bytes, chip)
        else:  # 1 / (1 + (KV bytes / L2)^k), the ratio capped where the share is 0 anyway
            resident = 1.0 / (1.0 + np.minimum(kv_bytes / chip.l2_bytes, 1e4) ** params.l2_steepness)
        memory_s = memory_s * (1.0 - resident * (1.0 - 1.0 / params.l2_speedup))
    per_kv_head_s: float | np.ndarray = params.per_kv_head_s
    if params.ungrouped_kv_head_factor != 1.0:
        if heads.ndim == 0 and kv_heads.ndim == 0:  # one shape (serving): no array op
            per_kv_head_s = per_kv_head_s * (params.ungrouped_kv_head_factor if heads == kv_heads else 1.0)
        else:
            per_kv_head_s = per_kv_head_s * np.where(heads == kv_heads, params.ungrouped_kv_head_factor, 1.0)
    if params.window_kv_head_factor != 1.0:  # FA2's windowed rows: no grouped work unit
        per_kv_head_s = per_kv_head_s * np.where(windowed, params.window_kv_head_factor, 1.0)
    launch_s: float | np.ndarray = params.launch_s
    if params.ungrouped_launch != 1.0:
        if heads.ndim == 0 and kv_heads.ndim == 0:  # one shape (serving): no array op
            launch_s = launch_s * (params.ungrouped_launch if heads == kv_heads else 1.0)
        else:
            launch_s = launch_s * np.where(heads == kv_heads, params.ungrouped_launch, 1.0)
    fixed_s = (
        launch_s
        + batch * params.per_sequence_s
        + batch * heads * params.per_head_s
        + batch * kv_heads * (head_dim / 128.0) * per_kv_head_s
        + np.where(windowed, batch * heads * params.window_per_head_s, 0.0)
    )
    if params.regroup_copy_s > 0:
        # The regrouped Q (and output) is a view only when batch or the KV heads are 1.
        if heads.ndim == 0 and kv_heads.ndim == 0 and batch.ndim == 0:  # one shape: Python floats
            if float(heads) > float(kv_heads) >= 2.0 and float(batch) >= 2.0:
                fixed_s = fixed_s + params.regroup_copy_s
        else:
            fixed_s = fixed_s + params.regroup_copy_s * ((heads > kv_heads) & (kv_heads >= 2) & (batch >= 2))
    if params.window_long_s > 0 and windowed.any():  # full-attention calls skip the step
        if cached_len.ndim == 0 and windowed.ndim == 0:
            # One length (a serving step): the step r^16 / (1 + r^16) = 1 / (1 + (1/r)^16) on
            # Python floats, 1/r capped at 1e3 (beyond it the share is 0 to 1e-48).
            inverse = min(params.window_long_kv_len / max(float(cached_len), 1e-30), 1e3)
            fixed_s = fixed_s + params.window_long_s / (1.0 + inverse ** (2**LAUNCH_STEP_SQUARINGS))
        else:
            ratio = np.asarray(cached_len / params.window_long_kv_len)
            for _ in range(LAUNCH_STEP_SQUARINGS):
                np.square(ratio, out=ratio)
            fixed_s = fixed_s + np.where(windowed, params.window_long_s * ratio / (1.0 + ratio), 0.0)
    per_flop_s = 1.0 / (chip.peak_ops_per_s.bf16 * params.compute_eff)
    if params.fallback_group_size > 0:
        group = heads / np.maximum(kv_heads, 1.0)
        fallback = 1.0 / (1.0 + (params.fallback_group_size / group) ** FALLBACK_STEEPNESS)
        fallback_per_flop_s = 1.0 / (chip.peak_ops_per_s.bf16 * params.fallback_compute_eff)
        per_flop_s = per_flop_s * (1.0 - fallback) + fallback_per_flop_s * fallback
        fixed_s = fixed_s + fallback * batch * heads * params.fallback_per_head_s
    compute_s = 4.0 * batch * heads * kv_len * head_dim * per_flop_s
    walk_s = kv_len * head_dim * params.walk_s_per_element
    if params.window_walk_s_per_element > 0:  # FA2's windowed rows: a CTA per query head, no split
        waves = np.maximum(batch * heads / params.window_walk_ctas, 1.0)
        window_walk_s = kv_len * head_dim * params.window_walk_s_per_element * waves
        walk_s = np.maximum(walk_s, np.where(windowed, window_walk_s, 0.0))
    slowest_s = np.maximum(np.maximum(memory_s, compute_s), walk_s)
    if any(getattr(params, f"head_dim_launch_{d}") != 1.0 for d in HEAD_DIMS):
        knots = [getattr(params, f"head_dim_launch_{d}") for d in HEAD_DIMS]
        fixed_s = fixed_s + params.launch_s * (np.interp(head_dim, HEAD_DIMS, knots) - 1.0)
    if params.ungrouped_eff != 1.0 or any(getattr(params, f"head_dim_eff_{d}") != 1.0 for d in HEAD_DIMS):
        # The kernel the engine picks for this head dim / group size streams at its own speed.
        speed = head_dim_efficiency(params, head_dim)
        if params.ungrouped_eff != 1.0:
            speed = speed * np.where(heads == kv_heads, params.ungrouped_eff, 1.0)
        slowest_s = slowest_s / speed
        if not kv_in_l2:  # a serving step's cache comes from HBM: no faster than its bytes there
            slowest_s = np.maximum(slowest_s, streamed_bytes / chip.memory_bandwidth_bytes_per_s)
    return fixed_s + slowest_s


# ---------------------------------------------------------------------------------------------
# Elementwise (norms, residual adds, activations)
# ---------------------------------------------------------------------------------------------


class ElementwiseParams(_Params):
    """Bandwidth-bound kernels. No kernel in the database measures them: a profile holds a PRIOR
    derived from the fitted chips (tuner.calibrate: memory_eff = the chip's decode-attention
    memory_eff, a pure KV streaming kernel; launch_s = the median GEMM launch_s). Defaults: roofline."""

    memory_eff: float = Field(default=1.0, gt=0, le=1)
    launch_s: float = Field(default=0.0, ge=0)


def elementwise_time_s(
    bytes_moved, chip: HardwareSpec, params: ElementwiseParams, out: np.ndarray | None = None
) -> np.ndarray:
    """Seconds of an elementwise kernel moving ``bytes_moved`` (read + written):
    launch_s + bytes / (bandwidth * memory_eff); ``out``: an array of the result's shape to write
    them into (the calibrated operator times' own row), else a new one."""
    seconds = np.divide(
        np.asarray(bytes_moved, dtype=float), chip.memory_bandwidth_bytes_per_s * params.memory_eff, out=out
    )
    seconds += params.launch_s  # in place (the sum commutes bit for bit)
    return seconds


# ---------------------------------------------------------------------------------------------
# Collectives
# ---------------------------------------------------------------------------------------------


def bus_factor(kind: str, group_size) -> np.ndarray:
    """Bytes each rank sends per message byte (nccl-tests' "bus bandwidth" convention):
    all-reduce 2(g-1)/g, the others (g-1)/g."""
    g = np.asarray(group_size, dtype=float)
    if kind not in COLLECTIVE_KINDS:
        raise InvalidInputError(
            "collective kind", f"unknown kind {kind!r}", f"use one of {', '.join(COLLECTIVE_KINDS)}"
        )
    return (2.0 if kind == "all_reduce" else 1.0) * (g - 1.0) / g


class CollectiveParams(_Params):
    """One collective kind, implementation and group size: the faster of two protocols,
    time = min(latency_s + B / bandwidth, small_latency_s + B / small_bandwidth), B = bus bytes.

    NCCL switches protocol with message size (LL: low latency, low bandwidth; Simple: the
    opposite) and custom all-reduces switch between one-shot and two-shot algorithms: the
    measured latency-vs-size curves have a flat small-message floor (~5-20 us), a knee, and a
    bandwidth slope, which one latency + bandwidth line misfits by 30-50% around the knee.
    ``small_*`` None: one line only.

    ``switch_bytes`` set: the library does not pick the faster protocol, it switches by size (NCCL's
    tuner picks LL / LL128 / Simple from a static cost model; custom all-reduces switch one-shot ->
    two-shot at a size threshold), so the curve steps UP at the switch, which no min() of lines
    can follow: a100 nccl all_gather over 8 GPUs is flat at 15 us up to 16 KB, then flat at 21 us
    up to 512 KB, then the bandwidth slope (data/kernels/nccl_perf.csv.gz). Then
    time = (1 - s) * small line + s * large line, s = 1 / (1 + (switch_bytes / B)^SWITCH_SHARPNESS)
    (smooth in log size so the fit has a gradient; B = bus bytes).

    ``mid_switch_bytes``, ``mid_latency_s`` and ``mid_bandwidth_bytes_per_s`` set (with
    ``switch_bytes`` and the small line): a third regime between the small line and the large one,
    entered at ``mid_switch_bytes``: mid line = mid_latency_s + B / mid_bandwidth, and the small
    side of the switch at ``switch_bytes`` becomes
    (1 - s_mid) * small line + s_mid * mid line, s_mid the same smooth step at mid_switch_bytes.
    NCCL has three protocols (LL, LL128, Simple), and the curves show three regimes where the
    two-line model leaves a 10-60% bump (data/kernels/nccl_perf.csv.gz): b200 all_gather over
    8 GPUs takes 16-44 us to 8 MB (one line), steps UP to 102 us at 16 MB and runs 114 and 138 us
    at 32 and 64 MB (a second, ~1.3 TB/s of bus bytes), then 207, 393, 761 us at 128, 256 and
    512 MB (a third, ~0.64 TB/s; fitted switches at 10 and 92 MB of bus bytes); l40s
    (PCIe) alltoall over 8 GPUs rises 11 -> 63 us from 2 to 32 KB (0.5 GB/s), sits at 440-520 us
    from 256 to 512 KB, then runs at 1.2-1.4 GB/s to 32 MB. TRT-LLM's custom all-reduce on a100
    over 8 GPUs takes 4.4-4.8 us to 2 KB, then 8.0-9.0 us from 8 to 64 KB (one-shot), then the
    two-shot line (data/kernels/custom_allreduce_perf.csv.gz). A step placed above
    ``switch_bytes`` is hidden by the large line. tuner.calibrate fits it where a group has rows
    enough (``_collective_specs``); the others keep None, the two-line formula.

    ``reduce_s_per_element``: the reduction's arithmetic, seconds per element of the bus bytes
    (B / element bytes), added to every regime. A reducing collective moves the same bytes in
    twice the elements at int8 as at fp16/bf16, and the measured int8 rows run slower per byte on
    every NVLink chip (data/kernels/nccl_perf.csv.gz, int8 / half at the same bytes from 32 MB
    up: reduce_scatter 1.02-1.13 on a100, b200, gb200, h100, h200; all_reduce over 8 GPUs on
    h100 and h200 1.06-1.31: h200 at 512 MB takes 2.04 ms at half, 2.67 ms at int8), while
    all_gather and alltoall, which add nothing, stay at 0.98-1.02. Not followed: l40s (PCIe)
    over 4 GPUs runs int8 reductions 7-16% FASTER per byte (the fit stops at 0). Default 0: time per
    byte only (the engines' activations are bf16: ``element_bytes`` 2).

    ``small_overlap_power`` p set: the small line is the soft max of its floor and its transfer,
    (small_latency_s^p + (B / small_bandwidth)^p)^(1/p), not their sum (p = 1). NCCL's LL and
    LL128 protocols pipeline each hop's latency with the data in flight (the flag travels with
    every 8- or 128-byte line), so a small message's floor overlaps its transfer: l40s (PCIe)
    alltoall over 8 GPUs is flat at 11-14 us to 4 KB, then doubles with the size, 18.6, 32 and
    62 us at 8, 16 and 32 KB (data/kernels/nccl_perf.csv.gz), which a sum bends too early. The
    custom all-reduces (TRT-LLM, vLLM, SGLang) are one-shot kernels, a launch and a barrier, then
    the copy: additive, so tuner.calibrate fits p on NCCL groups only (bounds 1-8) and the custom
    ones keep None, the sum. Held out (5-fold, grouped by size): with p on every group NCCL 3 -> 0
    of 204 groups over 10% but custom all-reduce 0 -> 2 of 85; on NCCL only NCCL 3 -> 0 (l40s
    alltoall over 8 GPUs 10.0% -> 5.2%, p90 47% -> 23%), mean median 3.21% -> 3.23%, median p90
    11.0% -> 10.0%, custom unchanged (0 of 85); fitted 1 (the sum) on 31 of the 68 NCCL fits,
    up to 8 (l40s alltoall over 8 GPUs: 2.5).

    Defaults: 0 latency and infinite bandwidth are not allowed, so a profile always states both
    (the DEFAULT profile takes the chip's interconnect figures)."""

    latency_s: float = Field(ge=0)
    bandwidth_bytes_per_s: float = Field(gt=0)
    small_latency_s: float | None = Field(default=None, ge=0)
    small_bandwidth_bytes_per_s: float | None = Field(default=None, gt=0)
    switch_bytes: float | None = Field(default=None, gt=0)
    mid_switch_bytes: float | None = Field(default=None, gt=0)
    mid_latency_s: float | None = Field(default=None, ge=0)
    mid_bandwidth_bytes_per_s: float | None = Field(default=None, gt=0)
    reduce_s_per_element: float = Field(default=0.0, ge=0)
    small_overlap_power: float | None = Field(default=None, ge=1)

    FIT: ClassVar[dict[str, FitSpec]] = {
        "switch_bytes": FitSpec(1e2, 1e10, log=True, start=1e5),
        "latency_s": FitSpec(1e-7, 1e-2, log=True, start=2e-5),
        "bandwidth_bytes_per_s": FitSpec(1e8, 1e13, log=True, start=1e11),
        "small_latency_s": FitSpec(1e-7, 1e-2, log=True, start=5e-6),
        "small_bandwidth_bytes_per_s": FitSpec(1e7, 1e13, log=True, start=1e10),
        "mid_switch_bytes": FitSpec(1e2, 1e10, log=True, start=1e4),
        "mid_latency_s": FitSpec(1e-7, 1e-2, log=True, start=1e-5),
        "mid_bandwidth_bytes_per_s": FitSpec(1e7, 1e13, log=True, start=1e10),
        "reduce_s_per_element": FitSpec(1e-16, 1e-9, log=True, start=1e-13),
        # Started at 1, the sum (the formula before it): started at 2 the NVLink groups, whose
        # curves do not need it, moved by fit noise (held out: b200 all_reduce over 4 GPUs
        # 1.5% -> 4.4%, h200 all_gather over 8 GPUs 5.5% -> 9.8%; from 1: 2.1%, 7.1%).
        "small_overlap_power": FitSpec(1.0, 8.0, log=True, start=1.0),
    }


#: Steepness of the protocol switch in log size: 10% -> 90% over a factor 1.7 in bytes.
SWITCH_SHARPNESS = 8.0


def _step_share(switch_bytes: float, bus_bytes: np.ndarray) -> np.ndarray:
    """Share of the regime above ``switch_bytes``: 0 well below, 1 well above, smooth in log size."""
    # 1 / (1 + min(switch / max(B, 1e-30), 1e30)^8), each step in place in one new array
    # (``**=`` takes ``**``'s paths: NumPy's array pow, scalar pow).
    share = np.maximum(bus_bytes, 1e-30)
    share = np.divide(switch_bytes, share, out=_out(share))
    share = np.minimum(share, 1e30, out=_out(share))
    share **= SWITCH_SHARPNESS
    share += 1.0
    return np.divide(1.0, share, out=_out(share))


def _one_collective(params: CollectiveParams, bus_bytes: np.ndarray, element_bytes) -> np.ndarray:
    t = _lines(params, bus_bytes)
    if params.reduce_s_per_element > 0:
        t += params.reduce_s_per_element * bus_bytes / element_bytes
    return t


def _lines(params: CollectiveParams, bus_bytes: np.ndarray) -> np.ndarray:
    # Each line and blend in place in its own new arrays (additions and products commute bit for
    # bit: latency + B / bandwidth is B / bandwidth + latency).
    t = bus_bytes / params.bandwidth_bytes_per_s
    t += params.latency_s
    if params.small_latency_s is not None and params.small_bandwidth_bytes_per_s is not None:
        small = bus_bytes / params.small_bandwidth_bytes_per_s
        power = params.small_overlap_power
        if power is None or power == 1.0:
            small += params.small_latency_s
        else:  # the floor overlaps the transfer: (L^p + (B / bw)^p)^(1/p)
            small **= power
            small += params.small_latency_s**power
            small **= 1.0 / power
        if params.switch_bytes is None:
            return np.minimum(t, small, out=_out(t))
        if (
            params.mid_switch_bytes is not None
            and params.mid_latency_s is not None
            and params.mid_bandwidth_bytes_per_s is not None
        ):
            # small = (1 - s_mid) * small + s_mid * mid
            mid = bus_bytes / params.mid_bandwidth_bytes_per_s
            mid += params.mid_latency_s
            mid_share = _step_share(params.mid_switch_bytes, bus_bytes)
            mid *= mid_share
            small *= np.subtract(1.0, mid_share, out=_out(mid_share))
            small += mid
        # (1 - s) * small + s * large
        large_share = _step_share(params.switch_bytes, bus_bytes)
        t *= large_share
        small *= np.subtract(1.0, large_share, out=_out(large_share))
        small += t
        return small
    return t


def collective_time_s(
    kind: str,
    message_bytes,
    group_size,
    params: dict[int, CollectiveParams],
    implementation: str = "nccl",
    element_bytes=2.0,
) -> np.ndarray:
    """Seconds of one collective over ``group_size`` ranks of a ``message_bytes`` buffer (the
    database's message_size is in ELEMENTS: multiply by the element size first) of
    ``element_bytes`` elements (default 2: bf16 activations; only ``reduce_s_per_element`` reads it).

    ``params`` maps group size -> :class:`CollectiveParams` for this kind and implementation (a
    profile's ``collectives[implementation][kind]``). A group size without its own fit uses the
    nearest fitted one (the bus-bytes factor carries the (g-1)/g scaling); group size 1 is free.
    """
    if not params:
        raise InvalidInputError(
            f"collectives.{implementation}.{kind}", "no fitted group sizes", "use a profile that has this collective"
        )
    message_bytes = np.asarray(message_bytes, dtype=float)
    group = np.asarray(group_size, dtype=float)
    message_bytes, group = np.broadcast_arrays(message_bytes, group)
    element = np.asarray(element_bytes, dtype=float)
    if element.ndim:
        element = np.broadcast_to(element, message_bytes.shape)
    out = np.zeros(message_bytes.shape)
    sizes = np.unique(group)
    for g in sizes:
        if g <= 1:
            continue
        if len(sizes) == 1:  # one group size: every element, no copies
            out = np.asarray(collective_time_of_size_s(kind, message_bytes, g, params, element), dtype=float)
        else:  # its elements by index (cheaper than boolean-mask copies)
            where = np.flatnonzero(group == g)
            own = element.take(where) if element.ndim else element
            np.put(out, where, collective_time_of_size_s(kind, message_bytes.take(where), g, params, own))
    return out


def collective_time_of_size_s(
    kind: str, message_bytes: np.ndarray, group_size: float, params: dict[int, CollectiveParams], element_bytes=2.0
) -> np.ndarray:
    """:func:`collective_time_s` of collectives whose groups all have ``group_size`` (> 1) ranks:
    the bus bytes, then the nearest fitted group size's protocols (for callers that already hold
    each group size's rows, as the calibrated network does)."""
    bus = message_bytes * bus_factor(kind, group_size)
    return _one_collective(params[_nearest_fitted(tuple(sorted(params)), float(group_size))], bus, element_bytes)


@cache
def _nearest_fitted(fitted_sizes: tuple[int, ...], group_size: float) -> int:
    """The fitted group size nearest ``group_size`` in log scale (the first of a tie)."""
    fitted = np.array(fitted_sizes, dtype=float)
    return int(fitted[np.argmin(np.abs(np.log(fitted) - np.log(group_size)))])
