"""Per-operator and per-collective times under a calibration profile (design.md "Calibration").

The pure roofline (:mod:`cost_models.roofline`) is a lower bound, with its collectives charged their
bytes alone and fp8 weights at the W8A8 kernel's format (docs/validation.md, "The pure roofline as
a lower bound of the profiles": as shipped it charges the catalog's assumed latency per ring step,
which measured small all-reduces beat, and fp8 x bf16 matmuls at the bf16 peak). A
:class:`CalibrationProfile` turns each operator of one chip into the time its class of kernel was measured to take
(:mod:`cost_models.efficiency`): weight matmuls as GEMMs in the engine's format at their per-chip
(m, n, k); fused attention as the engine's prefill or decode attention kernel at the chip's
sequences and heads; norms, adds and activations as bandwidth-bound kernels with a launch cost;
collectives inside an NVLink domain as the measured collectives of that group size. Unfused
attention (a what-if no engine runs) keeps its roofline operators, each at the elementwise
bandwidth fraction and launch cost. A class the profile did not measure (a partial profile fitted
from a few kernels of ``tuner measure``) keeps the roofline for that class.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import replace
from typing import Literal, TypeAlias

import numpy as np

from cost_models.calibration import CalibrationProfile, gemm_fit_format
from cost_models.distinct import repeated_rows, word_classes
from cost_models.dtypes import BF16, BYTES_PER_ELEMENT, COMBINE, DTYPE_NAMES, FP4, FP8, INT4, INT8, lookup
from cost_models.efficiency import (
    ACTIVATION_BYTES,
    COLLECTIVE_KINDS,
    HEAD_DIMS,
    QUANTIZES_ACTIVATIONS,
    WEIGHT_BYTES,
    CollectiveParams,
    DecodeAttentionParams,
    GemmParams,
    PrefillAttentionParams,
    collective_time_of_size_s,
    collective_time_s,
    decode_attention_time_s,
    elementwise_time_s,
    gemm_time_s,
    gemm_time_with_constants_s,
    peak_for_format,
    prefill_attention_time_s,
)
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, SwitchedInterconnect, TorusInterconnect
from cost_models.inference_configs import DECODE, InferenceConfigs
from cost_models.models import ModelSpec
from cost_models.moe import DEFAULT_IMBALANCE, busiest_rank_woken_factor, experts_woken, tokens_per_expert
from cost_models.moe_kernel_time import (
    MOE_BORROWED,
    MXFP4_MOE_FORMAT,
    moe_kernel_class,
    moe_kernel_params,
    mxfp4_moe_params,
    routed_expert_time_s,
)
from cost_models.operators import (
    EXPERT_PROJECTIONS,
    LM_HEAD,
    OP,
    OperatorCosts,
    attention_operand_bytes,
    mixed_checkpoint_rows,
    mxfp4_checkpoint_rows,
    sixteen_bit_gemm_rows,
    window_share,
)
from cost_models.partitioning import GEMM_AXES, ShardingPlan, attention_split, gemm_shapes_per_chip
from cost_models.topology import (
    LastMeshCache,
    Network,
    SwitchedGroups,
    SwitchedNetwork,
    TorusNetwork,
    group_size,
    switched_groups,
)

#: Operators run as bandwidth-bound kernels (Kim et al.'s "non-linear" and elementwise rows).
ELEMENTWISE_OPS = ("attn_norm", "attn_add", "mlp_norm", "mlp_act", "router", "expert_act", "mlp_add")
UNFUSED_ATTENTION_OPS = ("qk_matmul", "softmax", "sv_matmul")
# Measured KV formats; an fp4 cache (none measured) reads as the nearest low-precision one.
_CACHE_FORMAT = {BF16: "bfloat16", FP8: "fp8", INT8: "fp8", INT4: "fp8", FP4: "fp8"}


def gemm_format(weight_dtype: int, act_dtype: int) -> str:
    """The kernel a serving engine runs for weights and activations in these formats (the kernel
    database's ``gemm_dtype``): fp8 weights run fp8 GEMMs that quantize the activations; int8 x
    int8 is SmoothQuant; int8 or int4 weights with 16-bit activations are weight-only kernels.
    fp4 weights: fp4 x fp4 is the NVFP4 GEMM (measured on B200/GB200), x fp8 an fp8 GEMM, and with
    any other activation a 4-bit weight-only kernel (dequantize to bf16; int4_wo is the measured
    kernel of that shape)."""
    if weight_dtype == FP8:
        return "fp8"
    if weight_dtype == FP4:
        return {FP4: "nvfp4", FP8: "fp8"}.get(act_dtype, "int4_wo")
    if weight_dtype == INT8:
        return "sq" if act_dtype == INT8 else "int8_wo"
    if weight_dtype == INT4:
        return "int4_wo"
    return "bfloat16"


def fp4_without_units_note(hardware: HardwareSpec, weight_dtype: int, act_dtype: int) -> list[str]:
    """What fp4 weights or activations become on a chip without fp4 tensor cores (no fp4 peak in
    its catalog entry: NVIDIA's before Blackwell, AMD's before MI355X), which every estimate on it
    used to print nothing about: fp4 x fp4 is timed as the W4A8 fp8 GEMM (fp4 operands upcast to
    fp8, HardwareSpec.peak_table and calibrated_operator_times), fp4 weights beside 16-bit
    activations as a weight-only kernel at the bf16 peak."""
    if hardware.has_format(FP4) or FP4 not in (weight_dtype, act_dtype):
        return []
    upcast = "fp8" if hardware.has_format(FP8) else "bf16"
    if act_dtype == FP4:
        like = ", as the W4A8 kernels shipped for Hopper do" if upcast == "fp8" else ""
        how = (
            f"the fp4 x fp4 matmuls are timed as {upcast} GEMMs at the {upcast} peak (operands upcast to {upcast}"
            f"{like}); no engine quantizes activations to fp4 on it"
        )
    else:
        how = f"fp4 weights run weight-only with {DTYPE_NAMES[act_dtype]} activations (dequantized before the matmul)"
    return [f"{hardware.name} has no fp4 tensor cores (NVFP4/MXFP4 math needs NVIDIA Blackwell or AMD MI355X): {how}"]


#: Measured weight-only GEMMs against the borrowing that times them where a profile has no fit of
#: its own (:func:`_gemm_params`: the bf16 fit at the format's weight bytes): (least, most) median
#: of borrowed predicted / measured over m in [1, 16), [16, 256) and [256, ...), and the rows. The
#: kernel database measured weight-only GEMMs on A100 TensorRT-LLM only (its fpA_intB plugin;
#: data/kernels/gemm_perf.csv.gz, 700 rows per format), where a100-80gb-trtllm's bf16 fit at int4 /
#: int8 weight bytes predicts them at these medians (its own int4_wo / int8_wo fits at 0.98-1.03):
#: the dequantization and narrower tiles cost 1.15-1.8x what bytes and bf16 math alone allow. The
#: other profiles' weight-only GEMMs are timed by that borrowing, unmeasured, and the estimate says
#: so with these figures (tests/cost_models/test_weight_only_borrow.py recomputes them).
MEASURED_WEIGHT_ONLY_BORROW_RATIO: dict[str, tuple[float, float, int]] = {
    "int4_wo": (0.55, 0.83, 700),
    "int8_wo": (0.56, 0.87, 700),  # 0.57 before the GEMM fits read the collectors' working sets
}


def calibrated_format_notes(
    profile: CalibrationProfile | None,
    hardware: HardwareSpec,
    experts: int,
    weight_dtype: int,
    act_dtype: int,
    mxfp4_experts: bool = False,
    fp8_block_scales: bool = False,
) -> list[str]:
    """What an estimate under ``profile`` says about the kernels its formats run (``experts``:
    the model's routed experts, 0 for a dense model): weight matmuls whose kernel computes at
    another peak than their operands' (:func:`matmul_compute_dtype`: fp8 weights with 16-bit
    activations run W8A8), and an MoE model's weight-only experts timed with another format's
    fused-MoE class (moe_kernel_time.MOE_BORROWED); under the pure roofline too, fp4 on a chip
    without fp4 units (:func:`fp4_without_units_note`). ``mxfp4_experts``: the model's checkpoint
    keeps its experts MXFP4 (gpt-oss; ModelSpec.mxfp4_experts), timed by the profile's
    w4a16_mxfp4 class where it has one, else (said so) by the int4_wo lookup. ``fp8_block_scales``:
    the model's fp8 checkpoint stores 128 x 128 block scales (ModelSpec.fp8_block_scales): fp8
    weights run the block-scaled kernels, else the per-tensor ones of a load-time quantization
    (:func:`fp8_scales_notes`)."""
    notes = fp4_without_units_note(hardware, weight_dtype, act_dtype)
    if profile is None:
        return notes
    notes += unused_efficiency_notes(profile, hardware)
    fmt = gemm_format(weight_dtype, act_dtype)
    kernel = int(matmul_compute_dtype(np.array(weight_dtype), np.array(act_dtype), hardware, profile))
    operands = int(COMBINE[weight_dtype, act_dtype])
    weights, acts = DTYPE_NAMES[weight_dtype], DTYPE_NAMES[act_dtype]
    if kernel != operands and weight_dtype == FP8:
        notes.append(
            f"fp8 weights with {acts} activations: on {hardware.name} (fp8 tensor cores) the engines run the weight "
            "matmuls as W8A8 fp8 GEMMs, quantizing the activations to fp8 (dynamic per-token/per-tensor scales); "
            f"{profile.name} times them as its measured fp8 GEMM and bounds them (compute time, MFU) at the fp8 peak "
            "(--calibration none keeps the wider operand's bf16 peak)"
        )
    elif kernel != operands:
        notes.append(
            f"{weights} weights with {acts} activations: the weight matmuls run the {fmt} kernel, at the "
            f"{DTYPE_NAMES[kernel]} peak (compute time, MFU), not the {DTYPE_NAMES[operands]} peak of their operands"
        )
    if fmt == "fp8" and hardware.has_format(FP8):
        notes += fp8_scales_notes(profile, experts, fp8_block_scales)
    borrow_ratio = MEASURED_WEIGHT_ONLY_BORROW_RATIO.get(fmt)
    source = gemm_fit_format(profile, fmt)
    if borrow_ratio is not None and source not in (fmt, None):
        least, most, rows = borrow_ratio
        notes.append(
            f"{weights} weight-only GEMMs ({fmt}): {profile.name} has no {fmt} GEMM fit; they are timed by its "
            f"{source} fit at their own weight bytes, unmeasured. The only measured {fmt} GEMMs "
            f"(A100 TensorRT-LLM, {rows} rows) ran {1 / most:.2f}-{1 / least:.2f}x slower than that borrowing "
            "predicts there (median by batch rows): expect these to be optimistic"
        )
    mxfp4 = bool(experts) and mxfp4_experts and weight_dtype == FP4
    if mxfp4 and mxfp4_moe_params(profile.moe, fmt) is not None:
        notes.append(
            f"MXFP4 experts with {acts} activations: timed with {profile.name}'s {MXFP4_MOE_FORMAT} fused-MoE class "
            "(fitted on the kernel database's MXFP4 MoE rows of this chip and engine)"
        )
        return notes
    found = moe_kernel_class(profile.moe, fmt) if experts else None
    if found is None:
        return notes
    cls = found[0]
    borrowed = cls if cls in MOE_BORROWED.get(fmt, ()) else None
    if mxfp4:
        measured = (
            ", which predicted the measured MXFP4 kernels at a median 0.27-0.98 of their time on the 9 chip/engine "
            "pairs with a fit (docs/accuracy.md, MoE layers)"
            if cls == "bfloat16"
            else " (the int4 weight-only kernel's; the engines run other kernels for MXFP4)"
        )
        notes.append(
            f"MXFP4 experts ({fmt}): {profile.name} has no {MXFP4_MOE_FORMAT} fused-MoE kernel fitted (too few or no "
            f"MXFP4 MoE rows measured for {profile.chip} {profile.backend}); the experts are timed with its "
            f"{cls} class at 0.5 bytes per weight{measured}"
        )
    elif borrowed is not None:
        why = (
            "weight-only kernels dequantize to bf16 and compute at the bf16 peak"
            if borrowed == "bfloat16"
            else "the engines' weight-only MoE runs 4- and 8-bit weights in one Marlin kernel; no 8-bit one measured"
        )
        notes.append(
            f"{DTYPE_NAMES[weight_dtype]} weight-only experts ({fmt}): {profile.name} has no fused-MoE kernel "
            f"fitted for {fmt}; the experts are timed with its {borrowed} class ({why}) at their own weight bytes"
        )
    held_out = profile.moe_cv_error.get(f"moe/{cls}")
    if held_out is not None and held_out.expert_shapes:
        shapes = held_out.expert_shapes
        notes.append(
            f"{profile.name}'s {cls} fused-MoE class is fitted on the measured kernels of {len(shapes)} expert "
            f"shape{'s' if len(shapes) > 1 else ''} only ({', '.join(shapes)}: hidden/inter_size/experts/top-k; "
            f"held out across its moe_tp slices, median {held_out.median:.0%}): other expert shapes extrapolate from it"
        )
    return notes


def unused_efficiency_notes(profile: CalibrationProfile, hardware: HardwareSpec) -> list[str]:
    """A chip's ``efficiency`` factors below 1 that ``profile`` does not apply: its fitted kernels
    replace the compute and memory fractions of the pure roofline, and on a switched network its
    measured collectives the network fraction (a torus keeps it, times the profile's network_eff:
    :func:`calibrated_network`). A chip file's ``efficiency: {compute: 0.5}`` changed nothing under
    --calibration auto (its fallback profile), with no word (session 39)."""
    measured_collectives = isinstance(hardware.interconnect, SwitchedInterconnect) and bool(profile.collectives)
    unused = [
        f"{name} {value:g}"
        for name, value, applied in (
            ("compute", hardware.efficiency.compute, False),
            ("memory", hardware.efficiency.memory, False),
            ("network", hardware.efficiency.network, not measured_collectives),
        )
        if value != 1.0 and not applied
    ]
    if not unused:
        return []
    return [
        f"{hardware.name}'s efficiency factors ({', '.join(unused)}) are not applied under calibration "
        f"{profile.name}: its fitted kernels{' and collectives' if measured_collectives else ''} replace the pure "
        "roofline they scale (--calibration none applies them)"
    ]


def fp8_scales_notes(profile: CalibrationProfile, experts: int, fp8_block_scales: bool) -> list[str]:
    """Which of ``profile``'s fp8 kernels time fp8 weights, by the scales of the checkpoint tuner
    export serves (:func:`kernel_formats`): a block-scaled one (the model's own or its publisher's
    -FP8 repo) the fp8_block GEMM and fused-MoE class, else the per-tensor ones that vLLM/SGLang
    --quantization fp8 runs on a 16-bit checkpoint; and where the profile lacks that fused-MoE
    class, the one that stands in (moe_kernel_time.MOE_FORMATS). Said for MoE models, where the two
    kernels differ most (h200 vLLM: the per-tensor fused MoE measures ~4x the block-scaled one),
    and for a block-scaled dense model (the per-tensor GEMM was the default before)."""
    wanted = "fp8_block" if fp8_block_scales else "fp8"
    if not experts and not fp8_block_scales:
        return []
    if fp8_block_scales:
        how = (
            "the model's fp8 checkpoint stores 128 x 128 block scales (tuner export serves it): "
            f"timed as {profile.name}'s block-scaled fp8 kernels (fp8_block GEMM"
        )
    else:
        how = (
            "tuner export serves the model's 16-bit checkpoint quantized at load "
            "(--quantization fp8, per-tensor weight scales), and the estimate times that, "
            f"{profile.name}'s per-tensor fp8 kernels (fp8 GEMM"
        )
    if not experts:
        return [f"fp8 weights: {how})"]
    found = moe_kernel_class(profile.moe, wanted)
    if found is None:
        return [f"fp8 weights: {how}; no fp8 fused-MoE class fitted: the experts run as grouped fp8 GEMMs)"]
    if found[0] == wanted:
        return [f"fp8 weights: {how}, {wanted} fused-MoE class)"]
    return [
        f"fp8 weights: {how}); {profile.name} has no {wanted} fused-MoE class (the kernel database measured no "
        f"{wanted} MoE rows for {profile.chip} {profile.backend}): the experts are timed with its {found[0]} class, "
        "another kernel than the deployment runs"
    ]


def dense_gemm_formats(model_spec: ModelSpec, weight_dtype: int, act_dtype: int) -> tuple[str, ...]:
    """The dense GEMM kernels a deployment of ``model_spec`` in these formats runs (what
    calibration_report's ``gemm_borrowed`` checks): the weights' kernel (:func:`gemm_format`;
    block-scaled fp8 for a checkpoint with 128 x 128 scales, :func:`kernel_formats`), and for an
    MoE model's block-scaled routed experts the per-tensor fp8 fit they run on."""
    fmt = gemm_format(weight_dtype, act_dtype)
    if fmt == "fp8" and model_spec.fp8_block_scales:
        return ("fp8_block", "fp8") if model_spec.experts else ("fp8_block",)
    return (fmt,)


def expert_moe_format(
    profile: CalibrationProfile | None, model_spec: ModelSpec, weight_dtype: int, act_dtype: int
) -> str | None:
    """The format whose fused-MoE lookup times ``model_spec``'s experts under ``profile``
    (calibration_report's ``moe_format``): the profile's w4a16_mxfp4 class for an MXFP4 checkpoint's
    experts where it has one, else the GEMM format of the weights and activations; None for a
    dense model."""
    if not model_spec.experts:
        return None
    fmt = gemm_format(weight_dtype, act_dtype)
    mxfp4 = model_spec.mxfp4_experts and weight_dtype == FP4
    if mxfp4 and profile is not None and mxfp4_moe_params(profile.moe, fmt) is not None:
        return MXFP4_MOE_FORMAT
    if fmt == "fp8" and model_spec.fp8_block_scales:
        return "fp8_block"  # (kernel_formats)
    return fmt


#: The kernel format of every (weight dtype, activation dtype) pair, as an index into
#: ``_FORMAT_NAMES``: one table look-up per configuration instead of a Python call.
_FORMAT_NAMES: tuple[str, ...] = ("bfloat16", "fp8", "sq", "int8_wo", "int4_wo", "nvfp4", "fp8_block")
_CODES = range(len(DTYPE_NAMES))
_FORMAT_TABLE = np.array([[_FORMAT_NAMES.index(gemm_format(w, a)) for a in _CODES] for w in _CODES])


#: The dtype whose peak each kernel format computes at (efficiency.peak_for_format, as a code of
#: the chip's peak table, which gives a format the chip lacks the next wider one's peak):
#: weight-only kernels dequantize to bf16; SmoothQuant runs int8 tensor cores.
_KERNEL_PEAK_DTYPE = {
    "bfloat16": BF16,
    "fp8": FP8,
    "sq": INT8,
    "int8_wo": BF16,
    "int4_wo": BF16,
    "nvfp4": FP4,
    "fp8_block": FP8,
}
#: The kernel codes of fp8 weights: per-tensor/per-channel scales (a 16-bit checkpoint quantized at
#: load by vLLM/SGLang --quantization fp8, a ModelOpt or fbgemm checkpoint) and 128 x 128 block
#: scales (ModelSpec.fp8_block_scales: DeepSeek-V3, Qwen3-*-FP8), which the engines run with other
#: kernels: vLLM's CUTLASS scaled_mm / FlashInfer CUTLASS fused MoE against its blockwise GEMM /
#: Triton fused MoE with block scales (data/kernels: kernel_source of the fp8 and fp8_block rows).
_FP8_FORMAT = _FORMAT_NAMES.index("fp8")
_FP8_BLOCK_FORMAT = _FORMAT_NAMES.index("fp8_block")
#: That dtype for every (weight dtype, activation dtype) pair: COMBINE's shape, the kernel's choice.
_KERNEL_COMPUTE = np.array([[_KERNEL_PEAK_DTYPE[gemm_format(w, a)] for a in _CODES] for w in _CODES])
#: The slots timed as GEMMs in the weights' kernel format (the router is an elementwise kernel).
_TIMED_GEMM_ROWS = [OP[op] for op in GEMM_AXES]


def kernel_compute(hardware: HardwareSpec, profile: CalibrationProfile | None) -> bool:
    """Whether the weight matmuls' roofline bound and MFU peak are their timed kernels' peak: under a
    GPU engine's profile. The pure roofline (the papers' convention) and TPU/CPU profiles keep the
    wider operand's peak (dtypes.COMBINE)."""
    return profile is not None and hardware.kind == "gpu"


def matmul_compute_dtype(
    weight_dtype: np.ndarray, act_dtype: np.ndarray, hardware: HardwareSpec, profile: CalibrationProfile | None
) -> np.ndarray:
    """The dtype whose peak the weight matmuls compute at, per configuration: the wider operand's
    (COMBINE) on the pure roofline, the peak of the kernel that times them (:func:`gemm_format`)
    under a GPU engine's profile. The two differ where the kernel is not the operands' product:
    fp8 weights with 16-bit (or integer) activations run the W8A8 fp8 GEMM, which quantizes the
    activations to fp8 (every engine on a GPU with fp8 tensor cores: vLLM's Fp8LinearMethod takes
    fp8 Marlin, weight-only, only below compute capability 8.9), so they compute at the fp8 peak;
    int4 weights with int8 activations run the int4 weight-only kernel, at the bf16 peak (a B300's
    int8 peak is 125 TFLOP/s, its bf16 2250). Timed at one peak and bounded by another, a prefill
    of llama-3-70b in fp8 on one H200 under vLLM reported an MFU of 1.21."""
    if kernel_compute(hardware, profile):
        return lookup(_KERNEL_COMPUTE, weight_dtype, act_dtype)
    return lookup(COMBINE, weight_dtype, act_dtype)


def use_kernel_compute(
    ops: OperatorCosts, configs: InferenceConfigs, hardware: HardwareSpec, profile: CalibrationProfile | None
) -> None:
    """Set the compute dtype of ``ops``' timed GEMM slots to :func:`matmul_compute_dtype`'s under a
    GPU engine's profile (in place; nothing otherwise), so that their roofline bound is the peak
    their calibrated kernels run at."""
    if not kernel_compute(hardware, profile):
        return
    codes = matmul_compute_dtype(configs.weight_dtype, configs.act_dtype, hardware, profile)
    for i in _TIMED_GEMM_ROWS:
        # The engines' lm_head is 16-bit whatever the blocks' format: a bf16 GEMM at the bf16 peak
        # (calibrated_operator_times times it so).
        ops.compute_dtype[i] = BF16 if i == LM_HEAD else codes
    for name, rows in sixteen_bit_gemm_rows(configs).items():  # a mixed checkpoint's bf16 classes
        ops.compute_dtype[OP[name]] = np.where(rows, BF16, ops.compute_dtype[OP[name]])
    # Slots twinned with another (OperatorCosts.same_rows) stay twins only with the same format.
    twins = ops.same_rows()
    if twins:
        ops.__dict__["_same_rows"] = {
            i: j for i, j in twins.items() if np.array_equal(ops.compute_dtype[i], ops.compute_dtype[j])
        }


#: (m, n, k) of every weight operator, rows in ``GEMM_AXES`` order (partitioning.gemm_shapes_per_chip).
GemmShapes = tuple[np.ndarray, np.ndarray, np.ndarray]
#: Where the dense GEMMs read their shapes: whole (m, n, k) arrays, or the plan block by block.
_ShapeSource: TypeAlias = "GemmShapes | _PlanGemmShapes"


def kernel_formats(formats: np.ndarray, c: InferenceConfigs) -> np.ndarray:
    """``formats`` (codes into ``_FORMAT_NAMES``) with fp8 weights of a block-scaled checkpoint
    (``c.fp8_block_scales``) as the block-scaled kernel, ``fp8_block``: the checkpoint tuner export
    serves for them (the model's own, or its publisher's -FP8 repo), whose 128 x 128 scales the
    engines run with the blockwise GEMM and the block-scaled fused MoE. Other fp8 weights (quantized
    at load with per-tensor scales by vLLM/SGLang --quantization fp8) keep the per-tensor ``fp8``.
    The dense block-scaled GEMM runs under a per-call floor on H100/H200 vLLM (its DeepGEMM path:
    56-95 us per call in the kernel database, against 5-8 us for the per-tensor CUTLASS scaled_mm
    at m=64; vLLM's own benchmarks/kernels/deepgemm/README.md times DeepGEMM at 68-70 us on an H100
    at m=8-128, its CUTLASS blockwise kernel at 28-37 us), which the fp8_block fit carries."""
    block = np.asarray(c.fp8_block_scales)
    if not block.any():
        return formats
    return np.where((formats == _FP8_FORMAT) & block, _FP8_BLOCK_FORMAT, formats)


def _gemm_params(profile: CalibrationProfile, fmt: str) -> GemmParams:
    """A format the profile did not measure runs with its bf16 fit at its own peak and bytes (the
    block-scaled fp8 GEMM with the per-tensor one's, the same fp8 tensor cores), without that
    fit's measured shape correction (cost_models/gemm_shape.py: what that format's own kernels
    did at its shapes, not another kernel's); a profile that measured no GEMM at all (a partial
    one, from a few kernels) leaves the roofline."""
    source = gemm_fit_format(profile, fmt)
    if source is None:
        return GemmParams()
    return profile.gemm[fmt] if source == fmt else _borrowed(profile.gemm[source])


#: Each borrowed fit without its shape correction, by id (the original kept alive beside it, so
#: no id is reused): one copy per fit, so equal parameters stay one object (and one group of
#: :func:`_dense_gemm_times`).
_WITHOUT_SHAPE: dict[int, tuple[GemmParams, GemmParams]] = {}


def _without_shape_correction(params: GemmParams) -> GemmParams:
    return _cached_copy(_WITHOUT_SHAPE, params, {"shape_correction": None})


#: Each fit as another format borrows it, by id (as _WITHOUT_SHAPE).
_BORROWED: dict[int, tuple[GemmParams, GemmParams]] = {}


def _borrowed(params: GemmParams) -> GemmParams:
    """``params`` as a format that did not measure them runs them: without the measured kernel's
    own shape correction and kernel dispatch (cost_models/gemm_dispatch.py: its configurations'
    speeds are that kernel's)."""
    return _cached_copy(_BORROWED, params, {"shape_correction": None, "kernel_dispatch": ""})


def _cached_copy(cache: dict[int, tuple[GemmParams, GemmParams]], params: GemmParams, update: dict) -> GemmParams:
    """``params`` with ``update``, one copy per original (kept alive beside it in ``cache``)."""
    if all(getattr(params, name) == value for name, value in update.items()):
        return params
    known = cache.get(id(params))
    if known is not None and known[0] is params:
        return known[1]
    plain = params.model_copy(update=update)
    cache[id(params)] = (params, plain)
    return plain


def calibrated_operator_times(
    chip_ops: OperatorCosts,
    configs: InferenceConfigs,
    gemm_shapes: GemmShapes | ShardingPlan,
    chips: np.ndarray,
    batch_sharded: np.ndarray,
    hardware: HardwareSpec,
    profile: CalibrationProfile,
    data_parallel: np.ndarray | None = None,
    expert_parallel: np.ndarray | None = None,
) -> np.ndarray:
    """Seconds per execution of each operator on one chip, shaped like the operator costs.
    ``data_parallel``: the DP ranks sharing each configuration's MoE layers (None: 1), whose
    tokens together wake the experts a chip loads (:func:`expert_gemm_times_s`);
    ``expert_parallel`` (None: 1): the EP ranks, the busiest of which sets the experts loaded.
    ``gemm_shapes``: the (m, n, k) of :func:`~cost_models.partitioning.gemm_shapes_per_chip`, or
    the sharding plan they come from; given the plan, the dense GEMMs derive their shapes with
    that function block by block (in cache, where whole (slots, n) arrays are not) and only the
    configurations that need whole arrays (MLA's reshaped slots, the experts) get them."""
    c = configs
    # Every row is written below for every configuration but the expert rows, which are for the
    # MoE configurations only: they start at zero, the rest uninitialized (no (slots, n) memset).
    times = np.empty(chip_ops.flops.shape)
    present = chip_ops.present
    if not np.all(c.moe_layers > 0):
        # (The expert slots no configuration has are zeroed with every absent slot below.)
        expert_rows = [OP[op] for op in EXPERT_PROJECTIONS]
        times[[i for i in expert_rows if present[i].any()]] = 0.0
    plan = gemm_shapes if isinstance(gemm_shapes, ShardingPlan) else None
    if plan is not None and np.any(c.mla):
        gemm_shapes, plan = gemm_shapes_per_chip(chip_ops, plan), None
    # Weight matmuls, grouped by the engine's kernel format.
    formats = lookup(_FORMAT_TABLE, c.weight_dtype, c.act_dtype)  # (one gather axis fewer where one code)
    if not hardware.has_format(FP4):
        # No fp4 tensor cores (Hopper, Ampere, MI300): an fp4 x fp4 GEMM runs as the W4A8 kernels
        # engines ship there (fp4 weights upcast to fp8), i.e. the chip's fp8 GEMM, as the
        # roofline's peak_table does. Its fitted bytes are fp8's: up to 2x the fp4 weight traffic.
        formats = np.where(formats == _FORMAT_NAMES.index("nvfp4"), _FORMAT_NAMES.index("fp8"), formats)
    formats = kernel_formats(formats, c)
    # A slot no configuration has (a serving iteration's dense view leaves out attention and the
    # lm_head; a dense model's router) is zero, its kernel not timed: the zero the absent slots
    # get below, without the kernel model's pass.
    anywhere = np.asarray(present.any(axis=1))
    rows = _DenseRows.of(anywhere)
    # The engines' fused projections (QKV, gate_up) are timed as one GEMM each below
    # (:func:`_fused_projection_times`); their slots are left out of the per-slot pass where no
    # configuration of the call times them on their own.
    fused_groups = _fused_groups(c, hardware)
    fused_only = [OP[op] for group in fused_groups for op in group.ops if group.every]
    rows = rows.without(fused_only)
    # (Read, and overwritten, by the 16-bit passes below: defined until then.)
    times[[i for i in fused_only if anywhere[i]]] = 0.0
    if plan is None:
        assert not isinstance(gemm_shapes, ShardingPlan)
        source: _ShapeSource = _mla_gemm_shapes(chip_ops, c, gemm_shapes)
    twins: list[tuple[int, int]] = []
    if plan is not None:
        rows, twins = _twin_rows(chip_ops, plan, rows)
        source = _PlanGemmShapes(chip_ops, plan, rows)
    # Each distinct GEMM once where they repeat (a decode step's, whatever the prompt), else all.
    once = (
        len(rows.op) == 0
        or isinstance(source, _PlanGemmShapes)
        and _dense_gemm_times_distinct(times, source, formats, hardware, profile, rows)
    )
    if not once:
        partial: list[_PartialSlot] = []
        if plan is not None:  # slots that repeat an earlier one in part, or are absent in part
            rows, partial = _partial_twin_rows(chip_ops, plan, rows)
            source = _PlanGemmShapes(chip_ops, plan, rows)
        _dense_gemm_times(times, source, formats, hardware, profile, rows)
        for slot in partial:
            assert plan is not None
            slot.fill(times, chip_ops, plan, formats, hardware, profile)
    for twin, original in twins:
        times[twin] = times[original]
    if anywhere[LM_HEAD] and np.any(formats != _BF16_FORMAT):
        # The engines keep the lm_head 16-bit (vLLM's ParallelLMHead is unquantized under fp8, AWQ
        # and GPTQ by default; ModelOpt excludes *lm_head*): a bf16 GEMM of its own shape, not the
        # blocks' quantized kernel (int4 Llama-3.1-8B decode: 1.05 GB of lm_head, not 0.26).
        lm_source: _ShapeSource = _PlanGemmShapes(chip_ops, plan, _LM_HEAD_ROWS) if plan is not None else source
        # Each distinct lm_head GEMM once where they repeat, as the blocks' dense slots: its m is
        # the batch's last tokens and (n, k) the vocabulary and width, so bench_estimate's
        # 200,000 calibrated lm_head GEMMs (both phases) are 3,739 distinct: an estimate 304 ->
        # 288 ms (h100-sxm-vllm, AMD EPYC VM, 2026-12-06, medians of 8 alternated). Not on a
        # TPU, whose kernel model (no SM count: no wave, split-K or CTA terms) times them all in
        # about what the keying takes (tpu-v4-jax 245-278 ms either way, keyed 0.2-1% slower).
        bf16 = np.zeros_like(formats)
        if not (
            hardware.kind == "gpu"
            and isinstance(lm_source, _PlanGemmShapes)
            and _dense_gemm_times_distinct(times, lm_source, bf16, hardware, profile, _LM_HEAD_ROWS)
        ):
            _dense_gemm_times(times, lm_source, bf16, hardware, profile, _LM_HEAD_ROWS)
    mxfp4 = mxfp4_checkpoint_rows(c)
    if mxfp4.any() and np.any(formats[mxfp4] != _BF16_FORMAT) and anywhere[_ATTENTION_ROWS.op].any():
        # gpt-oss's MXFP4 checkpoint keeps its attention bf16 (operators.MXFP4_UNCONVERTED): its
        # projections are bf16 GEMMs of their own shapes on those configurations, not the fp4
        # weights' kernel (the router, an elementwise slot here, reads its 16-bit bytes). Not in a
        # serving iteration's attention-only pass, which has no projections (zero shapes).
        attention_source: _ShapeSource = (
            _PlanGemmShapes(chip_ops, plan, _ATTENTION_ROWS) if plan is not None else source
        )
        in_their_format = np.array(times[_ATTENTION_ROWS.op])
        scratch = np.zeros_like(times)
        _dense_gemm_times(scratch, attention_source, np.zeros_like(formats), hardware, profile, _ATTENTION_ROWS)
        times[_ATTENTION_ROWS.op] = np.where(mxfp4, scratch[_ATTENTION_ROWS.op], in_their_format)
    mixed = mixed_checkpoint_rows(c)
    if mixed.any() and np.any(formats[mixed] != _BF16_FORMAT):
        _time_16bit_shares(times, chip_ops, c, plan, source, formats, mixed, anywhere, hardware, profile)
    for group in fused_groups:
        if anywhere[[OP[op] for op in group.ops]].any():
            _fused_projection_times(
                times, group, chip_ops, c, plan, gemm_shapes, formats, mxfp4, mixed, hardware, profile
            )
    moe_rows = c.moe_layers > 0
    # (No expert slot anywhere, as in a serving iteration's attention-only pass: none timed.)
    moe = np.flatnonzero(moe_rows) if any(anywhere[OP[op]] for op in EXPERT_PROJECTIONS) else np.zeros(0, np.intp)
    if len(moe):
        every = len(moe) == len(c)  # every configuration MoE: no gathers of the configurations
        if plan is None:
            assert not isinstance(gemm_shapes, ShardingPlan)
            expert_shapes = _expert_rows(gemm_shapes, moe)
        else:  # the MoE configurations' expert shapes alone
            expert_shapes = _expert_shapes_from_plan(chip_ops, plan, None if every else moe)
        dp = None if data_parallel is None else (data_parallel if every else data_parallel[moe])
        ep = None if expert_parallel is None else (expert_parallel if every else expert_parallel[moe])
        expert_times = _expert_gemm_times_s(
            c if every else c.take(moe), expert_shapes, formats if every else formats[moe], hardware, profile,
            data_parallel=dp, expert_parallel=ep,
        )  # fmt: skip
        for op, seconds in expert_times.items():
            if every:
                times[OP[op]] = seconds
            else:
                times[OP[op], moe] = seconds
    # Elementwise kernels: bytes at a fraction of HBM bandwidth, plus a launch.
    moved = chip_ops.bytes
    bandwidth = hardware.memory_bandwidth_bytes_per_s * profile.elementwise.memory_eff
    for op in ELEMENTWISE_OPS:  # row by row: no (7, n) gather and scatter
        i = OP[op]
        if anywhere[i]:
            # In place in the slot's row: no new array and no copy into the row.
            elementwise_time_s(moved[i], hardware, profile.elementwise, out=times[i])
    flops_per_peak: np.ndarray | None = None  # (one scratch row for the unfused slots' FLOPs / peak)
    if anywhere[OP["router"]]:
        # The router is a matmul (d_model x experts per token), timed here from its bytes; with
        # hundreds of experts its FLOPs bind: kimi-k2 (384 experts) prefill of 204 x 5976 tokens
        # on an A100 is 6.7 TFLOP, 21.5 ms at the bf16 peak, which the bytes alone put at 9.0
        # ms under a100-80gb-trtllm. So no less than its FLOPs at the peak, as the unfused slots.
        i = OP["router"]
        peak = lookup(hardware.peak_table(), chip_ops.compute_dtype[i])
        flops_per_peak = np.divide(chip_ops.flops[i], peak, out=flops_per_peak)
        np.maximum(times[i], flops_per_peak + profile.elementwise.launch_s, out=times[i])
    for op in UNFUSED_ATTENTION_OPS:
        i = OP[op]
        if anywhere[i]:
            peak = lookup(hardware.peak_table(), chip_ops.compute_dtype[i])  # (filled where one code)
            # launch + max(bytes / bandwidth, FLOPs / peak), in place in the slot's row (addition
            # commutes bit for bit): no temporaries for the max and the sum, no copy.
            row = times[i]
            np.divide(moved[i], bandwidth, out=row)
            flops_per_peak = np.divide(chip_ops.flops[i], peak, out=flops_per_peak)
            np.maximum(row, flops_per_peak, out=row)
            row += profile.elementwise.launch_s
    # Fused attention: the engine's kernel at this chip's share of sequences and heads.
    if anywhere[OP["fused_attention"]]:
        times[OP["fused_attention"]] = fused_attention_time_s(c, chips, batch_sharded, hardware, profile)
    # Absent operators cost nothing: the slots no configuration has, whole; in place the rows of
    # the slots some configuration lacks.
    times[~anywhere] = 0.0
    for row in np.flatnonzero(anywhere & ~present.all(axis=1)):
        # By position: 134 against 382 us for a masked copy of 100,000 (12% absent).
        times[row, np.flatnonzero(~present[row])] = 0.0
    return times


def _time_16bit_shares(
    times: np.ndarray,
    chip_ops: OperatorCosts,
    c: InferenceConfigs,
    plan: ShardingPlan | None,
    source: _ShapeSource,
    formats: np.ndarray,
    mixed: np.ndarray,
    anywhere: np.ndarray,
    hardware: HardwareSpec,
    profile: CalibrationProfile,
) -> None:
    """A mixed-format checkpoint served as stored runs the attention projections (the dense FFN's
    matmuls) its ignore list keeps 16-bit as bf16 GEMMs of their own shapes, the others in the
    weights' kernel: each slot's seconds are the blocks' mix, share x bf16 + (1 - share) x format
    (Llama-3.1-405B-FP8: every block's attention bf16, 2 of 126 MLPs; vLLM builds each layer's
    linear method from the checkpoint's ignore list: an ignored layer is UnquantizedLinearMethod).
    Times in ``times`` on the rows of ``mixed`` (in place); the others are left as they are."""
    for rows, share in ((_ATTENTION_ROWS, c.attention_16bit_share), (_DENSE_FFN_ROWS, c.dense_ffn_16bit_share)):
        if not anywhere[rows.op].any() or not np.any(share[mixed] > 0):
            continue
        slot_source: _ShapeSource = _PlanGemmShapes(chip_ops, plan, rows) if plan is not None else source
        scratch = np.zeros_like(times)
        _dense_gemm_times(scratch, slot_source, np.zeros_like(formats), hardware, profile, rows)
        in_format = times[rows.op]
        blended = share * scratch[rows.op] + (1.0 - share) * in_format
        times[rows.op] = np.where(mixed & (share > 0), blended, in_format)


#: The rows of the plan's (m, n, k) (``GEMM_AXES`` order) timed as dense GEMMs, and the operator
#: slots they fill; the experts' rows are timed apart (:func:`expert_gemm_times_s`).
_DENSE_SHAPE_ROWS = np.array([i for i, op in enumerate(GEMM_AXES) if op not in EXPERT_PROJECTIONS])
_DENSE_OP_ROWS = np.array([OP[op] for op in GEMM_AXES if op not in EXPERT_PROJECTIONS])


class _DenseRows:
    """The dense GEMMs timed: rows of the plan's (m, n, k) and the operator slots they fill, all
    of ``_DENSE_SHAPE_ROWS`` / ``_DENSE_OP_ROWS`` or those of the slots some configuration has."""

    def __init__(self, shape_rows: np.ndarray, op_rows: np.ndarray) -> None:
        self.shape = shape_rows
        self.op = op_rows

    @classmethod
    def of(cls, anywhere: np.ndarray) -> _DenseRows:
        """The dense GEMM slots present in some configuration (``anywhere``: per operator slot)."""
        kept = anywhere[_DENSE_OP_ROWS]
        if bool(np.all(kept)):
            return _ALL_DENSE_ROWS
        return cls(_DENSE_SHAPE_ROWS[kept], _DENSE_OP_ROWS[kept])

    def without(self, op_rows: list[int]) -> _DenseRows:
        """These rows less the operator slots ``op_rows``."""
        kept = ~np.isin(self.op, op_rows)
        return self if bool(kept.all()) else _DenseRows(self.shape[kept], self.op[kept])


_ALL_DENSE_ROWS = _DenseRows(_DENSE_SHAPE_ROWS, _DENSE_OP_ROWS)
#: The lm_head's GEMM alone, and the bfloat16 kernel format's code (``_FORMAT_NAMES``).
_LM_HEAD_ROWS = _DenseRows(np.array([list(GEMM_AXES).index("lm_head")]), np.array([LM_HEAD]))
_BF16_FORMAT = _FORMAT_NAMES.index("bfloat16")
#: The attention projections' GEMMs (bf16 in an MXFP4-experts checkpoint: operators.MXFP4_UNCONVERTED).
_ATTENTION_ROWS = _DenseRows(
    np.array([list(GEMM_AXES).index(op) for op in ("q_proj", "k_proj", "v_proj", "out_proj")]),
    np.array([OP[op] for op in ("q_proj", "k_proj", "v_proj", "out_proj")]),
)
#: The dense FFN's GEMMs (16-bit in a share of a mixed-format checkpoint's blocks).
_DENSE_FFN_ROWS = _DenseRows(
    np.array([list(GEMM_AXES).index(op) for op in ("gate_proj", "up_proj", "down_proj")]),
    np.array([OP[op] for op in ("gate_proj", "up_proj", "down_proj")]),
)
#: Configurations per block of GEMMs timed together: 8 GEMMs x 2048 = 16k elements, 128 KiB per
#: temporary, so the ~20 temporaries of :func:`gemm_time_s` stay in a core's L2 cache instead of
#: streaming through memory (elementwise arithmetic, so blocking changes no result). Measured on
#: the benchmark's Xeon: 800k GEMMs in one call 66-78 ms, in blocks of 16k 32 ms
#: (docs/benchmarks.md, "Calibrated estimate throughput, round 2").
_BLOCK_CONFIGS = 2048
#: GEMM rows that ``_BLOCK_CONFIGS`` is sized for: a call timing fewer rows (a slot timed on some
#: configurations, the distinct GEMMs: one row) takes proportionally more configurations per
#: block, the same ~16k elements. Measured on the benchmark's Xeon, one slot of 100,000 prefill
#: GEMMs: 8.0 ms in blocks of 2,048, 6.5 of 4,096, 5.8 of 16,384, 6.1 of 32,768.
_BLOCK_ROWS = 8


def _dense_gemm_times(
    times: np.ndarray,
    source: _ShapeSource,
    formats: np.ndarray,
    hardware: HardwareSpec,
    profile: CalibrationProfile,
    dense_rows: _DenseRows = _ALL_DENSE_ROWS,
) -> None:
    """Fill ``times``'s dense weight-matmul slots (``dense_rows``): each configuration's GEMMs in its kernel
    format (``formats``, codes into ``_FORMAT_NAMES``), in blocks of ``_BLOCK_CONFIGS``
    configurations (more where fewer than ``_BLOCK_ROWS`` rows are timed). Formats that run on
    the same fitted parameters (a profile times the formats it did not measure with its bf16
    fit: int8 and int4 weight-only on most GPU profiles) are one
    group, timed in one pass with each configuration's own format constants, so a mix of them
    needs no per-format copy of the shapes; a group that is a subset of the configurations is
    addressed by index (a gather of each block's columns)."""
    counts = np.bincount(formats, minlength=len(_FORMAT_NAMES))
    groups: dict[tuple[GemmParams, bool], list[int]] = {}
    own_params: dict[int, GemmParams] = {}
    for code in np.flatnonzero(counts):
        fmt = _FORMAT_NAMES[int(code)]
        params = _gemm_params(profile, fmt)
        own_params[int(code)] = params
        # Equal parameters give equal seconds; the activation-quantization term is charged to
        # the formats whose kernels quantize, so those run apart from the others. Formats whose
        # parameters differ only in the measured shape correction (a profile's bf16 fit with
        # its correction, int8_wo and int4_wo on that fit without it) are one group too: the
        # correction is gemm_time_s's last factor, applied below to its formats' GEMMs alone.
        # Apart, each group was addressed by index (gathers of the shapes, a scatter of the
        # seconds): 17 of the correction's 34 ms an estimate of bench_estimate's 100,000
        # calibrated h100-sxm deployments (docs/benchmarks.md, 2026-12-06, shape38).
        quantizes = fmt in QUANTIZES_ACTIVATIONS and (params.act_quant_passes > 0 or params.quant_row_s > 0)
        groups.setdefault((_without_shape_correction(params), quantizes), []).append(int(code))
    constants = (
        np.array([peak_for_format(hardware, fmt) for fmt in _FORMAT_NAMES]),
        np.array([WEIGHT_BYTES[fmt] for fmt in _FORMAT_NAMES]),
        np.array([ACTIVATION_BYTES[fmt] for fmt in _FORMAT_NAMES]),
    )
    total = len(formats)
    block_configs = max(1, _BLOCK_CONFIGS * _BLOCK_ROWS // max(len(dense_rows.op), 1))
    for (plain, quantizes), codes in groups.items():
        corrections = {id(own_params[code].shape_correction): own_params[code] for code in codes}
        # One correction (or none) for the whole group: gemm_time_s applies it. Else the group
        # is timed without it and each corrected format's GEMMs multiplied by its factor.
        params = own_params[codes[0]] if len(corrections) == 1 else plain
        corrected = [] if len(corrections) == 1 else [c for c in codes if own_params[c].shape_correction is not None]
        chosen_count = int(counts[codes].sum())
        if chosen_count == total:
            columns = None
        elif len(codes) == 1:
            columns = np.flatnonzero(formats == codes[0])
        else:
            columns = np.flatnonzero(np.isin(formats, codes))
        for start in range(0, chosen_count, block_configs):
            block = slice(start, min(start + block_configs, chosen_count))
            chosen = block if columns is None else columns[block]
            if len(codes) == 1:
                peak, w_bytes, a_bytes = (float(table[codes[0]]) for table in constants)
            else:
                peak, w_bytes, a_bytes = (table[formats[chosen]] for table in constants)
            m, n, k = _block_shapes(source, chosen, dense_rows)
            rows = (dense_rows.op, chosen) if columns is None else (dense_rows.op[:, None], chosen)
            # Each corrected format's correction on its columns of the block, inside the kernel
            # model where gemm_time_s applies it (the replay's padded m, before the cold floor).
            column_corrections = []
            for corrected_code in corrected:
                at = np.flatnonzero(formats[chosen] == corrected_code)
                correction = own_params[corrected_code].shape_correction
                if len(at) and correction is not None:
                    column_corrections.append((correction, at))
            times[rows] = gemm_time_with_constants_s(
                m,
                n,
                k,
                peak,
                w_bytes,
                a_bytes,
                quantizes,
                hardware,
                params,
                column_corrections=tuple(column_corrections),
            )


class _FusedGroup:
    """Weight matmuls a serving engine runs as one GEMM: their slots (``ops``, the first holding
    the input width k), the configurations where they are fused (``where``, bool per
    configuration) and whether that is every one of them (``every``), and the 16-bit share
    of a mixed-format checkpoint's blocks they belong to (``share``, an InferenceConfigs field)."""

    def __init__(self, ops: tuple[str, ...], where: np.ndarray, share: str, mxfp4_bf16: bool) -> None:
        self.ops = ops
        self.where = where
        self.every = bool(where.all())
        self.share = share
        self.mxfp4_bf16 = mxfp4_bf16


#: The projections the GPU serving engines fuse into one GEMM of their summed output widths, one
#: activation read (and, in a quantizing format, one activation quantization) for all of them.
#: vLLM (vllm/model_executor/models/llama.py): LlamaAttention.qkv_proj = QKVParallelLinear,
#: n = (heads + 2 x kv_heads) x head_dim / TP; LlamaMLP.gate_up_proj = MergedColumnParallelLinear
#: ([ffn] * 2, n = 2 x ffn / TP); SGLang (python/sglang/srt/models/llama.py) the same classes;
#: TensorRT-LLM's attention `qkv` Linear and, in its PyTorch backend, GatedMLP.gate_up_proj, one Linear
#: of 2 x ffn with WeightMode.FUSED_GATE_UP_LINEAR (tensorrt_llm/_torch/modules/gated_mlp.py). MLA (DeepSeek-V2/V3,
#: Kimi) is left per slot: its engines fuse q_a with kv_a (deepseek_v2.py fused_qkv_a_proj,
#: MergedColumnParallelLinear with disable_tp=True, replicated), while this model's q slot is the
#: q_a x q_b chain (operators._mla_projections), so no slot is the fused matrix.
QKV_OPS = ("q_proj", "k_proj", "v_proj")
GATE_UP_OPS = ("gate_proj", "up_proj")


def _fused_groups(c: InferenceConfigs, hardware: HardwareSpec) -> list[_FusedGroup]:
    """The fused projection groups of these configurations on ``hardware``: GPU engines' only
    (a TPU or CPU profile keeps its slots as fitted)."""
    if hardware.kind != "gpu":
        return []
    everywhere = np.ones(len(c), dtype=bool)
    mla = np.asarray(c.mla, dtype=bool)
    groups = [_FusedGroup(GATE_UP_OPS, everywhere, "dense_ffn_16bit_share", False)]
    if not mla.all():
        groups.insert(0, _FusedGroup(QKV_OPS, ~mla, "attention_16bit_share", True))
    return groups


def _fused_projection_times(
    times: np.ndarray,
    group: _FusedGroup,
    chip_ops: OperatorCosts,
    c: InferenceConfigs,
    plan: ShardingPlan | None,
    gemm_shapes: GemmShapes | ShardingPlan,
    formats: np.ndarray,
    mxfp4: np.ndarray,
    mixed: np.ndarray,
    hardware: HardwareSpec,
    profile: CalibrationProfile,
) -> None:
    """Time ``group``'s slots as the one GEMM the engines run, in place on its configurations:
    m = the slots' summed FLOPs / (2 k n), k the first slot's input width, n the summed per-chip
    output widths of the slots with FLOPs (a non-gated FFN's gate has none: its up alone), so the
    FLOPs, the weight bytes and the activation rows are the slots' own, read (and quantized) once.
    The fused seconds are split over the slots in proportion to their FLOPs, so the block's time
    is the fused GEMM's and each slot keeps its share (a breakdown sums to it). In the kernel's
    format; bf16 where gpt-oss's MXFP4 checkpoint keeps attention 16-bit; a mixed-format
    checkpoint's 16-bit share of the blocks blended in as :func:`_time_16bit_shares` does."""
    cols = None if group.every else np.flatnonzero(group.where)

    def at(a: np.ndarray) -> np.ndarray:
        return a if cols is None else a.take(cols)

    rows = [_GEMM_ROW[op] for op in group.ops]
    flops = [at(chip_ops.flops[OP[op]]) for op in group.ops]
    total = np.sum(flops, axis=0)
    if plan is not None:
        # The summed width once per distinct plan shape, gathered (one take, not one per slot).
        index = plan.index if cols is None else (cols if plan.index is None else plan.index.take(cols))
        summed = plan.distinct_gemm_n[rows].sum(axis=0)
        width = summed if index is None else summed.take(index)
        depth = plan.distinct_gemm_k[rows[0]]
        depth = depth if index is None else depth.take(index)
        widths = [plan.distinct_gemm_n[row] for row in rows]
    else:
        assert not isinstance(gemm_shapes, ShardingPlan)
        index = None
        width = at(gemm_shapes[1][rows].sum(axis=0))
        depth = at(gemm_shapes[2][rows[0]])
        widths = [at(gemm_shapes[1][row]) for row in rows]
    # A slot without FLOPs where the others have some (a non-gated FFN's gate: its up alone)
    # adds no width: those configurations' widths summed slot by slot.
    lacking = np.flatnonzero(np.logical_or.reduce([f <= 0 for f in flops]) & (total > 0))
    if len(lacking):
        where = lacking if index is None else index.take(lacking)
        width[lacking] = np.sum(
            [np.where(f.take(lacking) > 0, n.take(where), 0.0) for f, n in zip(flops, widths, strict=True)], axis=0
        )
    positive = (depth * width > 0) & (total > 0)
    if not positive.all():
        # (No GEMM where no slot has FLOPs: any shape the kernel model takes, zeroed below.)
        width = np.where(positive, width, 1.0)
        depth = np.where(positive, depth, 1.0)
    m = np.divide(total, 2.0 * depth * width, out=np.zeros_like(total), where=positive)
    fmt = at(formats)
    if group.mxfp4_bf16 and mxfp4.any():
        fmt = np.where(at(mxfp4), _BF16_FORMAT, fmt)
    seconds = _one_row_gemm_times(m, width, depth, fmt, hardware, profile)
    if mixed.any():
        share = at(getattr(c, group.share))
        blend = np.flatnonzero(at(mixed) & (share > 0) & (fmt != _BF16_FORMAT))
        if len(blend):
            bf16 = _one_row_gemm_times(
                m.take(blend), width.take(blend), depth.take(blend), np.zeros(len(blend), np.intp), hardware, profile
            )
            s = share.take(blend)
            seconds[blend] = s * bf16 + (1.0 - s) * seconds.take(blend)
    # Seconds per FLOP of the fused GEMM, 0 where it has none; each slot gets its FLOPs' share.
    per_flop = np.divide(seconds, total, out=np.zeros_like(total), where=positive)
    for op, f in zip(group.ops, flops, strict=True):
        if cols is None:
            np.multiply(f, per_flop, out=times[OP[op]])
        else:
            times[OP[op], cols] = f * per_flop


def _one_row_gemm_times(
    m: np.ndarray,
    n: np.ndarray,
    k: np.ndarray,
    formats: np.ndarray,
    hardware: HardwareSpec,
    profile: CalibrationProfile,
) -> np.ndarray:
    """Seconds of one GEMM per configuration (1-D (m, n, k) and format codes). Where the
    (m, n, k, format) rows repeat (a decode step's fused projections: the batch, the model and
    its layout, whatever the prompt) each distinct one is timed once and gathered
    (:func:`~cost_models.distinct.repeated_rows`, checked bit for bit; the kernel model is
    elementwise, so every row gets the number it gets timed whole). Measured 2026-12-06 on the
    AMD EPYC VM, one core, bench_estimate's 100,000 calibrated deployments: an estimate 271 -> 253
    ms (h100-sxm-vllm), 276 -> 265 (b200-trtllm), 246 -> 241 (h100-sxm-vllm without its shape
    correction), medians of 8-10 alternated; before the correction every GEMM cost less and
    keying (4-11 ms of the 100,000 decode GEMMs) did not pay against timing them all (4-5 ms)."""
    one = _DenseRows(np.zeros(1, dtype=np.intp), np.zeros(1, dtype=np.intp))
    classes = repeated_rows([m, n, k, formats], DISTINCT_GEMM_SHARE)
    if classes is not None:
        first, inverse = classes
        shapes = (m.take(first)[None], n.take(first)[None], k.take(first)[None])
        seconds = np.empty((1, len(first)))
        _dense_gemm_times(seconds, shapes, formats.take(first), hardware, profile, one)
        return seconds[0].take(inverse)
    seconds = np.empty((1, len(m)))
    _dense_gemm_times(seconds, (m[None], n[None], k[None]), formats, hardware, profile, one)
    return seconds[0]


def _twin_rows(
    chip_ops: OperatorCosts, plan: ShardingPlan, rows: _DenseRows
) -> tuple[_DenseRows, list[tuple[int, int]]]:
    """The dense GEMM slots to time, and (slot, earlier slot) pairs whose GEMMs are the same in
    every configuration: equal (k, n) in every plan shape and equal per-chip FLOPs (bit for bit),
    hence equal m, format and seconds (k_proj and v_proj; a gated FFN's gate and up). Such a slot's
    times are copied, not timed: a quarter of a dense model's GEMMs (docs/benchmarks.md, round 6)."""
    k, n, flops = plan.distinct_gemm_k, plan.distinct_gemm_n, chip_ops.flops
    keep: list[int] = []
    twins: list[tuple[int, int]] = []
    for j, (shape_row, op_row) in enumerate(zip(rows.shape, rows.op, strict=True)):
        for i in keep:
            if (
                np.array_equal(k[rows.shape[i]], k[shape_row])
                and np.array_equal(n[rows.shape[i]], n[shape_row])
                and np.array_equal(flops[rows.op[i]].view(np.uint64), flops[op_row].view(np.uint64))
            ):
                twins.append((int(op_row), int(rows.op[i])))
                break
        else:
            keep.append(j)
    if not twins:
        return rows, twins
    return _DenseRows(rows.shape[keep], rows.op[keep]), twins


#: A dense slot is timed on its own configurations (:class:`_PartialSlot`) where those are at
#: most this share of the call's: the gathers of its shapes cost a few ns per GEMM against the
#: kernel model's ~75-125 ns.
PARTIAL_SLOT_SHARE = 0.8
#: Configurations in the evenly spaced sample that picks each slot's earlier slot to copy from.
_PARTIAL_SAMPLE = 1024
#: Calls of fewer configurations time every slot whole: the pairs' checks (a few numpy calls per
#: pair of slots) are not worth it there (a serving iteration's handful of rows).
_PARTIAL_MIN_CONFIGS = 4096


class _PartialSlot:
    """A dense GEMM slot timed on some configurations only: those where an earlier slot
    (``original``, None: none) has the same GEMM (``same``: equal FLOPs bits and plan shape bits,
    the format is the configuration's) copy its seconds; of the rest, those that have the slot
    (``need``, positions) are timed; the others are absent and zeroed with every absent slot.
    In bench_estimate's prefill (100,000 h100-sxm deployments) the up projection repeats the
    gate in the 87% of gated models, the k projection the q in the 38% of MHA ones, and the gate
    is absent from 13%: 534,000 of 700,000 dense GEMMs are left to time."""

    def __init__(self, op: int, shape_row: int, original: int | None, same: np.ndarray | None, need: np.ndarray):
        self.op = op
        self.shape_row = shape_row
        self.original = original
        self.same = same
        self.need = need

    def fill(
        self,
        times: np.ndarray,
        chip_ops: OperatorCosts,
        plan: ShardingPlan,
        formats: np.ndarray,
        hardware: HardwareSpec,
        profile: CalibrationProfile,
    ) -> None:
        """Write this slot's row of ``times`` (its original's row already written)."""
        if self.original is not None and self.same is not None:
            # By position: np.copyto's masked copy of 100,000 takes 370-770 us at 87-38% copied
            # (a random mask), a gather and a scatter 250-310.
            same = np.flatnonzero(self.same)
            times[self.op, same] = times[self.original].take(same)
        cols = self.need
        if not len(cols):
            return
        index = cols if plan.index is None else plan.index.take(cols)
        distinct_k, distinct_n = plan.distinct_gemm_k[self.shape_row], plan.distinct_gemm_n[self.shape_row]
        k, n = distinct_k.take(index), distinct_n.take(index)
        # _PlanGemmShapes.block's operations on these configurations.
        twice_kn, no_matmul = _divisor_of_m(distinct_k, distinct_n)
        m = chip_ops.flops[self.op].take(cols)
        with np.errstate(divide="ignore", invalid="ignore"):  # the rows without a matmul: 0 below
            np.divide(m, twice_kn.take(index), out=m)
        if no_matmul is not None:
            np.copyto(m, 0.0, where=no_matmul.take(index))
        seconds = np.empty((1, len(cols)))
        one = _DenseRows(np.zeros(1, dtype=np.intp), np.zeros(1, dtype=np.intp))
        _dense_gemm_times(seconds, (m[None], n[None], k[None]), formats.take(cols), hardware, profile, one)
        times[self.op, cols] = seconds[0]


def _same_gemm(
    chip_ops: OperatorCosts, plan: ShardingPlan, rows: _DenseRows, j: int, i: int, columns: slice | np.ndarray
) -> np.ndarray | None:
    """Where (at ``columns``) dense slots ``j`` and ``i`` of ``rows`` have the same GEMM: equal
    FLOPs bits and equal (k, n) bits in the plan; None where no plan shape has them equal."""
    words = [plan.distinct_gemm_k.view(np.uint64), plan.distinct_gemm_n.view(np.uint64)]
    shape_same = (words[0][rows.shape[j]] == words[0][rows.shape[i]]) & (
        words[1][rows.shape[j]] == words[1][rows.shape[i]]
    )
    if not shape_same.any():
        return None
    flops = chip_ops.flops.view(np.uint64) if chip_ops.flops.dtype == np.float64 else chip_ops.flops
    same = flops[rows.op[j], columns] == flops[rows.op[i], columns]
    if plan.index is None:
        same &= shape_same[columns]
    else:
        same &= shape_same.take(plan.index[columns])
    return same


def _partial_twin_rows(
    chip_ops: OperatorCosts, plan: ShardingPlan, rows: _DenseRows
) -> tuple[_DenseRows, list[_PartialSlot]]:
    """The dense slots to time whole, and those timed in part (:class:`_PartialSlot`, in slot
    order): a slot whose configurations left to time (present, not the same GEMM as the
    earlier slot that repeats it most, picked on an evenly spaced sample) are at most
    ``PARTIAL_SLOT_SHARE`` of the call's. Each GEMM keeps its number: a copy of the same inputs'
    seconds, or the kernel model on its own inputs."""
    count = chip_ops.flops.shape[1]
    if count < _PARTIAL_MIN_CONFIGS:
        return rows, []
    sample = slice(None, None, max(1, count // _PARTIAL_SAMPLE))
    present = chip_ops.present
    whole: list[int] = []
    partial: list[_PartialSlot] = []
    for j in range(len(rows.op)):
        best, best_count = None, 0
        for i in range(j):
            seen = _same_gemm(chip_ops, plan, rows, j, i, sample)
            if seen is not None and int(np.count_nonzero(seen)) > best_count:
                best, best_count = i, int(np.count_nonzero(seen))
        op = int(rows.op[j])
        same = None if best is None else _same_gemm(chip_ops, plan, rows, j, best, slice(None))
        need = present[op] if same is None else present[op] & ~same
        if bool(need.all()) or np.count_nonzero(need) > PARTIAL_SLOT_SHARE * count:
            whole.append(j)
            continue
        original = None if best is None or same is None else int(rows.op[best])
        partial.append(_PartialSlot(op, int(rows.shape[j]), original, same, np.flatnonzero(need)))
    if not partial:
        return rows, partial
    return _DenseRows(rows.shape[whole], rows.op[whole]), partial


#: Distinct (FLOPs of every dense slot, format) at most this share of a call's configurations
#: for :func:`_dense_gemm_times_distinct` to time each distinct GEMM once.
DISTINCT_GEMM_SHARE = 0.25
#: Distinct (configuration class, slot shape class) ids per slot at most this many per
#: configuration for the dense id table (above it the call is timed whole).
_ID_TABLE_PER_CONFIG = 4


def _dense_gemm_times_distinct(
    times: np.ndarray,
    source: _PlanGemmShapes,
    formats: np.ndarray,
    hardware: HardwareSpec,
    profile: CalibrationProfile,
    dense_rows: _DenseRows,
) -> bool:
    """:func:`_dense_gemm_times` with each distinct (m, n, k, format) GEMM of the call timed once
    and gathered; False (``times`` untouched) where the call's GEMMs do not repeat enough.

    A dense GEMM's seconds depend only on its format, its slot's (k, n) (the plan's distinct
    shape) and its per-chip FLOPs (m = FLOPs / (2 k n), computed here with the operations of
    :meth:`_PlanGemmShapes.block`), and the kernel model is elementwise, so each GEMM gets the
    very number :func:`_dense_gemm_times` gives it. The configurations are classed by their dense
    slots' FLOPs and format (:func:`~cost_models.distinct.repeated_rows`: a sort of one hashed
    key, checked bit for bit); each slot's GEMM is then (that class, the class of its (k, n) among
    the plan's distinct shapes), a small integer, so no further sort is needed. In bench_estimate's
    decode (100,000 h100-sxm deployments) 360 classes and 23,000 of 800,000 GEMMs are distinct."""
    rows_op = dense_rows.op
    flops = source.flops
    classes = repeated_rows([*(flops[i] for i in rows_op), formats], DISTINCT_GEMM_SHARE)
    if classes is None:
        return False
    first, config_class = classes
    count = len(formats)
    shape_index = np.arange(count) if source.index is None else source.index
    # Per slot: each configuration's id (configuration class, (k, n) class) and the ids used.
    ids_of: list[np.ndarray] = []
    used_of: list[np.ndarray] = []
    kinds_of: list[int] = []
    shapes_of: list[np.ndarray] = []
    kn_classes_of: list[np.ndarray] = []
    for j in range(len(rows_op)):
        kn_class, kn_shape = _pair_classes(source.k[j], source.n[j])
        kinds = len(kn_shape)
        if len(first) * kinds > _ID_TABLE_PER_CONFIG * count:
            return False
        # A slot whose plan shapes fall in the same (k, n) classes as an earlier slot's (q and
        # out, (d, h) and (h, d); a gated FFN's gate, up and down) has that slot's ids, the same
        # operations on the same numbers: reused, not computed again over every configuration
        # (in bench_estimate's decode 4 of 7 slots' ids computed).
        for i, earlier in enumerate(kn_classes_of):
            if kinds_of[i] == kinds and np.array_equal(earlier, kn_class):
                ids, used = ids_of[i], used_of[i]
                break
        else:
            ids = config_class * kinds
            ids += kn_class.take(shape_index)
            seen = np.zeros(len(first) * kinds, dtype=bool)
            seen[ids] = True
            used = np.flatnonzero(seen)
        ids_of.append(ids)
        used_of.append(used)
        kinds_of.append(kinds)
        shapes_of.append(kn_shape)
        kn_classes_of.append(kn_class)
    # The distinct GEMMs, slot after slot, as one row of (m, n, k): an id's inputs are its class's
    # first configuration's FLOPs and format (equal bits in every configuration of the class) and
    # its (k, n) class's first plan shape (equal widths in every shape of the class).
    sizes = [len(used) for used in used_of]
    slot = np.repeat(np.arange(len(rows_op)), sizes)
    chosen = np.concatenate([first.take(used // kinds) for used, kinds in zip(used_of, kinds_of, strict=True)])
    index = np.concatenate(
        [shapes.take(used % kinds) for used, kinds, shapes in zip(used_of, kinds_of, shapes_of, strict=True)]
    )
    k = source.k[slot, index]
    n = source.n[slot, index]
    m = 2.0 * k
    m *= n
    with np.errstate(divide="ignore", invalid="ignore"):  # the rows without a matmul: 0 below
        np.divide(flops[rows_op.take(slot), chosen], m, out=m)
    np.copyto(m, 0.0, where=~(k * n > 0))
    one = _DenseRows(np.zeros(1, dtype=np.intp), np.zeros(1, dtype=np.intp))
    seconds = np.empty((1, len(chosen)))
    _dense_gemm_times(seconds, (m[None], n[None], k[None]), formats.take(chosen), hardware, profile, one)
    start = 0
    for j, size in enumerate(sizes):
        # Each id's seconds in a table by id, read at every configuration's id.
        by_id = np.empty(len(first) * kinds_of[j])
        by_id[used_of[j]] = seconds[0, start : start + size]
        by_id.take(ids_of[j], out=times[rows_op[j]])
        start += size
    return True


def _pair_classes(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's class of equal (k, n), and the first column of each class: whole widths
    packed into one float key, exact below 2^53 (a 1-D unique; numpy's unique over pairs of
    columns sorts a structured view, ~5 ms for 6,200 pairs against ~0.3), else the pairs
    themselves."""
    radix = float(n.max(initial=0.0)) + 1.0
    if (
        np.all(k >= 0)
        and np.all(n >= 0)
        and np.array_equal(k, np.floor(k))
        and np.array_equal(n, np.floor(n))
        and float(k.max(initial=0.0)) * radix + radix < 2.0**53
    ):
        key = k * radix + n
        classes = word_classes(key.view(np.uint64))  # by the key's bits: 8 slots of 6,200 plan
        if classes is not None:  # shapes ~0.1 ms each, ~0.3 by the unique's sort
            return classes[1], classes[0]
        inverse = np.unique(key, return_inverse=True)[1]
    else:
        inverse = np.unique(np.stack([k, n]), axis=1, return_inverse=True)[1].reshape(-1)
    # The first column of each class (a scatter, reversed: the first write of a class is last);
    # numpy's return_index would take a stable sort instead of the quicksort.
    first = np.empty(int(inverse.max(initial=-1)) + 1, dtype=np.intp)
    first[inverse[::-1]] = np.arange(len(inverse) - 1, -1, -1)
    return inverse, first


def _shapes_from_plan(chip_ops: OperatorCosts, plan: ShardingPlan, columns: np.ndarray) -> GemmShapes:
    """:func:`~cost_models.partitioning.gemm_shapes_per_chip` of the configurations ``columns``."""
    return gemm_shapes_per_chip(replace(chip_ops, flops=chip_ops.flops[:, columns]), plan.take(columns))


#: (m, n, k) of each expert matmul (``EXPERT_PROJECTIONS``), one (n,) array each.
_ExpertShapes: TypeAlias = "dict[str, GemmShapes]"


def _expert_rows(gemm_shapes: GemmShapes, columns: np.ndarray | None) -> _ExpertShapes:
    """The expert matmuls' rows of whole-array (m, n, k) (``GEMM_AXES`` order), at ``columns``."""
    return {
        op: tuple(a[_GEMM_ROW[op]] if columns is None else a[_GEMM_ROW[op]].take(columns) for a in gemm_shapes)
        for op in EXPERT_PROJECTIONS
    }


def _expert_shapes_from_plan(chip_ops: OperatorCosts, plan: ShardingPlan, columns: np.ndarray | None) -> _ExpertShapes:
    """The expert matmuls' rows of :func:`~cost_models.partitioning.gemm_shapes_per_chip` for the
    configurations ``columns`` (None: all), row by row: the same operations on each element
    (m = FLOPs / (2 k n), 0 where k n is not positive), so the same numbers, without the whole
    (weight slots, n) arrays of every other slot (``_shapes_from_plan``)."""
    index = plan.index if columns is None else (columns if plan.index is None else plan.index[columns])
    shapes = {}
    for op in EXPERT_PROJECTIONS:
        row = _GEMM_ROW[op]
        k, n = (a[row] if index is None else a[row].take(index) for a in (plan.distinct_gemm_k, plan.distinct_gemm_n))
        flops = chip_ops.flops[OP[op]] if columns is None else chip_ops.flops[OP[op]].take(columns)
        m = np.divide(flops, 2.0 * k * n, out=np.zeros_like(k), where=k * n > 0)
        shapes[op] = (m, n, k)
    return shapes


class _PlanGemmShapes:
    """The dense GEMMs' (m, n, k) of a block of configurations, read from the sharding plan: k
    and n gathered from the plan's distinct widths (``ShardingPlan.distinct_gemm_*`` at its
    ``index``), m = FLOPs / (2 k n), 0 where k n is not positive. The operations of
    :func:`~cost_models.partitioning.gemm_shapes_per_chip` in the same order, so every number is
    the same (tests/cost_models/test_calibrated_blocks.py), on one block's arrays in cache
    instead of whole (slots, n) ones with a masked divide (36 of the 65 ms that the calibrated
    GEMMs of 100k configurations took, docs/benchmarks.md)."""

    def __init__(self, chip_ops: OperatorCosts, plan: ShardingPlan, dense_rows: _DenseRows = _ALL_DENSE_ROWS) -> None:
        self.flops = chip_ops.flops
        self.k = plan.distinct_gemm_k[dense_rows.shape]
        self.n = plan.distinct_gemm_n[dense_rows.shape]
        self.index = plan.index
        self.op_rows = dense_rows.op
        self.twice_kn, self.no_matmul = _divisor_of_m(self.k, self.n)

    def block(self, chosen: slice | np.ndarray) -> GemmShapes:
        index = chosen if self.index is None else self.index[chosen]

        def at(a: np.ndarray) -> np.ndarray:
            return a[:, index] if isinstance(index, slice) else a.take(index, axis=1)

        k, n = at(self.k), at(self.n)
        rows = self.op_rows if isinstance(chosen, slice) else self.op_rows[:, None]
        m = self.flops[rows, chosen]  # (a copy: rows is an index array)
        with np.errstate(divide="ignore", invalid="ignore"):  # the rows without a matmul: 0 below
            np.divide(m, at(self.twice_kn), out=m)
        if self.no_matmul is not None:
            np.copyto(m, 0.0, where=at(self.no_matmul))
        return m, n, k


def _divisor_of_m(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """For the plan's distinct (k, n): 2 k n, the divisor of m = FLOPs / (2 k n), and where k n
    is not positive (no matmul there: m is 0), None where it is positive everywhere. Computed
    once per distinct shape (~6,200 a slot) and gathered, where each configuration's GEMM
    computed them from its own gathered k and n: the same operations on the same numbers, so
    the same m bit for bit, with 5 of ~10 passes per GEMM before the kernel model fewer."""
    twice_kn = 2.0 * k
    twice_kn *= n
    no_matmul = ~(k * n > 0)
    return twice_kn, no_matmul if no_matmul.any() else None


def _block_shapes(
    source: _ShapeSource, chosen: slice | np.ndarray, dense_rows: _DenseRows = _ALL_DENSE_ROWS
) -> GemmShapes:
    """The dense GEMMs' (m, n, k) of the configurations ``chosen``, rows ``dense_rows.shape``
    (a plan's source holds its own rows)."""
    if isinstance(source, _PlanGemmShapes):
        return source.block(chosen)
    m, n, k = source
    if isinstance(chosen, slice):
        r = dense_rows.shape
        return m[r, chosen], n[r, chosen], k[r, chosen]
    rows = dense_rows.shape[:, None]
    return m[rows, chosen], n[rows, chosen], k[rows, chosen]


def _rows(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return values if rows is None else values.take(rows)


def fused_attention_time_s(
    c: InferenceConfigs,
    chips: np.ndarray,
    batch_sharded: np.ndarray,
    hardware: HardwareSpec,
    profile: CalibrationProfile,
) -> np.ndarray:
    """Seconds of one block's fused attention on one chip (n,): the engine's decode or prefill
    attention kernel model at the chip's share of sequences and heads, windowed blocks averaged
    in. The ``fused_attention`` slot of :func:`calibrated_operator_times`, and the attention-only
    view of a serving iteration (cost_models.iteration)."""
    batch, heads, kv_heads = attention_split(c, chips, batch_sharded)
    kv_bytes = lookup(BYTES_PER_ELEMENT, c.kv_dtype).astype(np.float64)
    decode = c.phase == DECODE
    head_dim, kv_heads, kv_bytes = _attention_kernel_shape(c, decode, kv_heads, kv_bytes)
    share = window_share(c)
    times = np.zeros(len(c))
    phases = {True: int(np.count_nonzero(decode))}
    phases[False] = len(c) - phases[True]
    kv_counts = np.bincount(c.kv_dtype)
    for code in np.flatnonzero(kv_counts):
        cache = _CACHE_FORMAT[int(code)]
        for in_decode in (True, False):
            if not phases[in_decode]:
                continue
            if kv_counts[code] == len(c):
                mask = None if phases[in_decode] == len(c) else decode if in_decode else ~decode
            else:
                mask = (c.kv_dtype == code) & (decode if in_decode else ~decode)
            if mask is not None and not np.any(mask):
                continue
            # Every row: no copies; else the rows by index (a gather is several times cheaper
            # than a boolean-mask copy with the mask's rows interleaved).
            r = None if mask is None else np.flatnonzero(mask)
            b, s, h, kvh, hd, kvb = (_rows(x, r) for x in (batch, c.seq_len, heads, kv_heads, head_dim, kv_bytes))
            if in_decode:
                dp = (
                    profile.decode_attention.get(cache)
                    or profile.decode_attention.get("bfloat16")
                    or DecodeAttentionParams()
                )
                kernel = functools.partial(decode_attention_time_s, b, s, h, kvh, hd, kvb, hardware, dp)
            else:
                pp, compute_format = prefill_attention_class(profile, cache)
                # (kv_bytes an array: the kernel model broadcasts it, its annotation says float)
                kernel = functools.partial(
                    prefill_attention_time_s,
                    b,
                    s,
                    h,
                    kvh,
                    hd,
                    hardware,
                    pp,
                    compute_format=compute_format,
                    kv_bytes_per_element=kvb,  # type: ignore[arg-type]
                )
            seconds = _blocks_mean(
                lambda window, k=kernel: k(window=window), _rows(share, r), _rows(c.sliding_window, r)
            )
            if in_decode and np.any(mla_rows := _rows(c.mla, r)):  # MLA's own kernel: mla_decode_params
                mla_kernel = functools.partial(
                    decode_attention_time_s, b, s, h, kvh, hd, kvb, hardware, mla_decode_params(dp),
                    query_output_bytes=b * h * _rows(mla_query_output_bytes_per_head(c), r),
                )  # fmt: skip
                mla_s = _blocks_mean(
                    lambda window, k=mla_kernel: k(window=window), _rows(share, r), _rows(c.sliding_window, r)
                )
                seconds = np.where(mla_rows, mla_s, seconds)
            elif not in_decode and cache != "bfloat16" and np.any(mla_rows := _rows(c.mla, r)):
                # MLA prefill attends over K and V decompressed from the latent, not over the
                # cache: mla_prefill_attention_class. (A 16-bit cache's class and bytes are these.)
                mla_pp, mla_format, mla_kv_bytes = mla_prefill_attention_class(profile, cache)
                mla_kernel = functools.partial(
                    prefill_attention_time_s, b, s, h, kvh, hd, hardware, mla_pp, compute_format=mla_format,
                    kv_bytes_per_element=mla_kv_bytes,
                )  # fmt: skip
                mla_s = _blocks_mean(
                    lambda window, k=mla_kernel: k(window=window), _rows(share, r), _rows(c.sliding_window, r)
                )
                seconds = np.where(mla_rows, mla_s, seconds)
            if r is None:
                times = np.asarray(seconds, dtype=np.float64)
            else:
                times[r] = seconds
    return times


#: (engine, chip) pairs whose default attention backend, serving a model with an fp8 KV cache
#: (``--kv-cache-dtype fp8_e4m3``), casts the query to fp8 and runs the fp8 x fp8 prefill kernel:
#: the kernel database's "fp8/fp8" context-attention class, not "bfloat16/fp8".
#: - SGLang on Hopper: the default backend is FlashAttention-3 for MHA and MLA models alike
#:   (sgl-project/sglang python/sglang/srt/server_args.py, get_default_attn_backend: "We will turn
#:   on FA3 on hopper", ``if get_platform().is_hopper_with_cuda_12_3 ... return "fa3"`` in both
#:   the MHA and the MLA branch). Its prefill (FlashAttentionBackend.forward_extend,
#:   python/sglang/srt/layers/attention/flashattention_backend.py at 003e7b77) does
#:   ``if self.kv_cache_dtype_str != "auto" and layer.head_dim <= 256: ... q = q.to(self.kv_cache_dtype)``
#:   before flash_attn_with_kvcache with k_descale/v_descale, and an MLA model's prefill (head
#:   dim 192 in DeepSeek-V3, under 256) takes the same cast, then flash_attn_varlen_func with
#:   ``k.to(q.dtype)``, ``v.to(q.dtype)``: fp8 x fp8. The database's SGLang rows of that kernel
#:   (kernel_source fa3, h100_sxm / h200_sxm, SGLang 0.5.14) are its fp8/fp8 rows (466 of 500 on
#:   h200); its only bfloat16/fp8 rows there are the Triton backend's (kernel_source triton, 500
#:   of 500), a backend SGLang does not pick by default on Hopper. That class, fitted on Triton
#:   (h200: compute_eff 0.06, l2_speedup at its bound 20), charged Llama-3.1-70B's 2048-token
#:   prefill 1281 us a layer against 155 us with a bf16 cache.
#: - SGLang on Blackwell (SM100): the MHA default is trtllm_mha (same function: "Use trtllm_mha
#:   for SM100/SM103"), whose forward_extend (layers/attention/trtllm_mha_backend.py) does
#:   ``if self.data_type == torch.float8_e4m3fn and (not self.is_xqa_impl): q = q.to(torch.float8_e4m3fn)``;
#:   the database's b200 / gb200 SGLang fp8/fp8 rows are trtllm_mha's (412 and 409 of 500), its
#:   bfloat16/fp8 rows flashinfer's and Triton's. An MLA model there (DeepSeek-V3) runs
#:   SGLang's MLA backends (flashinfer / trtllm_mla), of which the database holds no rows; it is
#:   charged the same fp8/fp8 class, the nearest measured kernel with an fp8 query.
#: Not listed (they keep "bfloat16/<cache>"): vLLM, whose database rows with an fp8 cache are
#: labelled bfloat16/fp8 and are the kernel vLLM runs (kernel_source vllm_flash_attn_fa3 on
#: h100/h200, the FlashAttention backend quantizing the query itself), so that class already is
#: the one it runs; TensorRT-LLM, whose bfloat16/fp8 rows are its own torch-flow attention with
#: an fp8 cache (kernel_source torch_flow), though its PyTorch backend may run the fp8 context
#: FMHA there (read 2026-12-06, not modelled): cpp/tensorrt_llm/thop/attentionOp.cpp sets
#: ``mFP8ContextFMHA = is_fp8_out || is_fp4_out || (hasFp8KvCache() && use_paged_context_fmha)``;
#: is_fp8_out holds where the model's o_proj takes fp8 QDQ input (modules/attention.py passes
#: ``out_scale = self.o_proj.inv_input_scale``) and the cache is fp8 (attention_backend/trtllm.py:
#: ``(self.has_fp8_qdq or ...) and self.has_fp8_kv_cache`` -> ``out_dtype = torch.float8_e4m3fn``,
#: "TODO(qijun): revisit fp8_context_fmha logic", in versions before and after 1.0), and
#: use_paged_context_fmha where chunked prefill or KV block reuse is on (KvCacheConfig's
#: enable_block_reuse defaults to True; AIConfigurator's 1.0.0rc3 engine template sets it false,
#: tuner.export writes it from the prefix-caching knob). So fp8 weights with an fp8 cache run the
#: fp8/fp8 kernel, bf16 weights with an fp8 cache only with reuse or chunking on: a class that
#: depends on the weight format and two serving knobs this function does not see, and no measured
#: serving run has an fp8 cache to check it on. What it would change, under the shipped trtllm
#: profiles (Llama-3.1-70B TP4, one 1024- / 4096-token prompt, a layer): h100 30.9 / 135.7 ->
#: 27.8 / 138.5 us, b200 25.4 / 94.7 -> 24.2 / 88.6 us, l40s 64.6 / 585.6 -> 43.3 / 336.8 us;
#: and SGLang on chips whose default is FlashInfer (A100,
#: L40S: "use flashinfer if available"), whose prefill with an fp8 cache keeps a 16-bit query
#: (the l40s bfloat16/fp8 rows are flashinfer's, 400 of 500).
FP8_QUERY_PREFILL_ENGINES: frozenset[tuple[str, str]] = frozenset(
    {("sglang", "h100-sxm"), ("sglang", "h200"), ("sglang", "b200"), ("sglang", "gb200")}
)


def prefill_attention_class(
    profile: CalibrationProfile, cache: str
) -> tuple[PrefillAttentionParams, Literal["bfloat16", "fp8"]]:
    """The prefill-attention parameters of the kernel ``profile``'s engine runs on its chip with a
    KV cache in format ``cache`` ("bfloat16" or "fp8"), and the peak (format) their compute_eff
    was fitted against (tuner.calibrate.fit_prefill: fp8 query rows at the fp8 peak). fp8 cache:
    "fp8/fp8" where the engine's default backend quantizes the query (FP8_QUERY_PREFILL_ENGINES),
    else "bfloat16/fp8"; a class the profile lacks falls back to "bfloat16/<cache>", then
    "bfloat16/bfloat16", then the roofline's defaults."""
    table = profile.prefill_attention
    if cache == "fp8" and (profile.backend, profile.chip) in FP8_QUERY_PREFILL_ENGINES and "fp8/fp8" in table:
        return table["fp8/fp8"], "fp8"
    params = table.get(f"bfloat16/{cache}") or table.get("bfloat16/bfloat16") or PrefillAttentionParams()
    return params, "bfloat16"


def mla_prefill_attention_class(
    profile: CalibrationProfile, cache: str
) -> tuple[PrefillAttentionParams, Literal["bfloat16", "fp8"], float]:
    """(parameters, compute format, bytes of a K or V element) of multi-head latent attention's
    prefill kernel under ``profile`` with a KV cache in format ``cache``. The prefill attends
    with K and V decompressed per head from the latent (kv_b_proj's outputs: DeepSeek-V2, arXiv
    2405.04434, appendix C; vLLM's "compute friendly approach", vllm/v1/attention/backends/mla/
    common.py, which multiplies the new latent by W_UK and W_UV, and a cached context after
    gather_and_maybe_dequant_cache has copied it into a 16-bit workspace), so its kernel reads
    16-bit K and V whatever the cache holds: 2 bytes an element; 1 where the engine's default
    backend casts the query, and K and V with it, to the cache's fp8 (FP8_QUERY_PREFILL_ENGINES:
    SGLang's FlashAttention 3, ``k.to(q.dtype)``). The operator roofline counts them so
    (operators._attention_kernels: MLA prefill's K and V are activations). Charged at the
    cache's bytes before 2026-12-06, an int8 cache under tpu-v4-jax gave DeepSeek-V3's prefill
    attention of one 1-token prompt on a TPU v4 0.98x its roofline (docs/validation.md).

    The parameters stay the cache's class (prefill_attention_class), as fitted: the kernel an
    engine runs on 16-bit K and V may be its "bfloat16/bfloat16" one (vLLM's FlashAttention over
    the workspace), but there is no MLA row in the kernel database to tell, and that class moved
    the prefill latency of MLA deployments with an 8-bit cache by 0.77-1.11x (vLLM's fp8-KV
    classes have kv_bytes_factor 5.9-34 against 2.7-7.4 for bf16; TRT-LLM's other speeds), where
    the bytes alone move it by 1.00-1.07x (bench/guard_estimate_outputs.py's broad draw, 3,000
    deployments under each shipped profile, 2026-12-06)."""
    params, compute_format = prefill_attention_class(profile, cache)
    return params, compute_format, 1.0 if compute_format == "fp8" else float(BYTES_PER_ELEMENT[BF16])


_GEMM_ROW = {op: i for i, op in enumerate(GEMM_AXES)}


def _mla_gemm_shapes(
    chip_ops: OperatorCosts, c: InferenceConfigs, gemm_shapes: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sharding plan's (m, n, k) with MLA's q/k/v slots replaced: the plan sizes them heads x
    d_head wide, but MLA's matrices (cost_models.operators._mla_projections) are chains of
    narrower ones (q_a 7168 x 1536 then q_b, kv_a 7168 x 576, W_UV 512 x heads v_head_dim in
    DeepSeek-V3). Each slot is timed as one GEMM with its input width k (d_model for q and k,
    kv_lora_rank for v), n = the chip's weight elements / k and m = the chip's FLOPs / (2 x weight
    elements), so FLOPs and weight bytes are the slot's own (the chain's extra launches are not
    charged). Rows without MLA keep the plan's shapes."""
    mla = c.mla
    if not np.any(mla):
        return gemm_shapes
    m, n, k = (a.copy() for a in gemm_shapes)
    wb = lookup(BYTES_PER_ELEMENT, c.weight_dtype)
    for op in ("q_proj", "k_proj", "v_proj"):
        row, i = _GEMM_ROW[op], OP[op]
        elements = chip_ops.weight_bytes[i] / wb
        width = c.kv_lora_rank if op == "v_proj" else k[row]
        width = np.minimum(width, np.maximum(elements, 1.0))
        m[row] = np.where(mla, np.divide(chip_ops.flops[i], 2.0 * elements, out=np.zeros_like(elements),
                                         where=elements > 0), m[row])  # fmt: skip
        n[row] = np.where(mla, elements / np.maximum(width, 1.0), n[row])
        k[row] = np.where(mla, width, k[row])
    return m, n, k


def _blocks_mean(kernel_s, share: np.ndarray, window: np.ndarray) -> np.ndarray:
    """One block's attention time averaged over the blocks: ``kernel_s(window)`` with no window
    for the full-attention blocks and with the model's window for the share that has one (the
    measured kernels take a window: context and generation attention rows with window_size)."""
    full = kernel_s(0)
    if not np.any(share > 0):
        return full
    return (1.0 - share) * full + share * kernel_s(window)


#: Fraction of the bf16 peak an MLA decode kernel's math runs at: FlashMLA (deepseek-ai/FlashMLA
#: README) reaches 580 TFLOPS compute-bound on an H800 SXM5 (989 TFLOPS dense bf16: 0.59; 660
#: TFLOPS, 0.67, in its 2025-04-22 kernel) and 3000 GB/s memory-bound (0.9 of 3.35 TB/s, the
#: streaming speed the profiles' memory_eff already gives the GQA kernels). Measured on Hopper, the
#: older kernel's figure; the engines' Blackwell MLA kernels (CUTLASS MLA, TRT-LLM's) have no
#: published figure here and are charged the same fraction of their chip's peak.
MLA_DECODE_COMPUTE_EFF = 580.0 / 989.0


def mla_decode_params(params: DecodeAttentionParams) -> DecodeAttentionParams:
    """The decode-attention kernel model of MLA rows: the profile's fixed costs and streaming
    speed (launch, per sequence / head / KV head, memory_eff, saturation), without the terms
    that say which GQA kernel an engine picks by group size or head dim, since MLA decode runs a
    kernel of its own (FlashMLA, FlashInfer/CUTLASS MLA, TRT-LLM's MLA kernels), built for all
    of a model's heads over one latent. The GQA fallback past ~32-70 query heads per KV head
    (TRT-LLM's XQA limit; fitted at 0.1-0.7% of the bf16 peak on TRT-LLM and gb200 vLLM) charged
    DeepSeek-V3 at 128 heads a GPU (attention DP, TP 1) 1.7-7.4 ms per block for 32 sequences
    of 2304 tokens where 16 heads (TP 8) of 256 sequences, the same math and 8x the bytes, took
    27-290 us; the head-dim-512 knots (GQA kernels at head dim 512: 0.37-0.5 on h200) halved
    the streaming speed FlashMLA measures at 0.9 of the bandwidth. Its math runs at
    MLA_DECODE_COMPUTE_EFF of the bf16 peak."""
    knots = {f"head_dim_eff_{d}": 1.0 for d in HEAD_DIMS} | {f"head_dim_launch_{d}": 1.0 for d in HEAD_DIMS}
    return params.model_copy(
        update={"fallback_group_size": 0.0, "compute_eff": MLA_DECODE_COMPUTE_EFF, "ungrouped_eff": 1.0} | knots
    )


def mla_query_output_bytes_per_head(c: InferenceConfigs) -> np.ndarray:
    """Bytes of one sequence's query and output of one head in multi-head latent attention's
    absorbed decode (DeepSeek-V2, arXiv 2405.04434, appendix C; FlashMLA): a query of
    kv_lora_rank + rope elements (W_UK folded in) and an output of kv_lora_rank (W_UV applied
    after), in the formats operator_costs counts them (operators.attention_operand_bytes; the
    fused_attention operator's roofline reads and writes them). DeepSeek-V3 in bf16: 576 x 2 +
    512 x 2 = 2176 bytes, 278 KB a sequence over 128 heads, the latent cache of 242 tokens; the
    decode kernel model (fitted on GQA rows, whose queries and outputs are a few KB a sequence)
    streams them with the cache (efficiency.decode_attention_time_s ``query_output_bytes``).
    Without them tpu-v4-jax timed 59 sequences at 2 tokens of context in 0.2 us where moving
    their 16.6 MB takes 13.8 us, and l40s-sglang 1024 sequences of one DP rank (128 heads a GPU)
    in 74 us against 333 us (docs/validation.md)."""
    query_bytes, output_bytes = attention_operand_bytes(c, lookup(BYTES_PER_ELEMENT, c.act_dtype))
    return (c.kv_lora_rank + c.qk_rope_head_dim) * query_bytes + c.kv_lora_rank * output_bytes


def _attention_kernel_shape(
    c: InferenceConfigs, decode: np.ndarray, kv_heads: np.ndarray, kv_bytes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(head_dim, KV heads per chip, KV bytes per element) that give the measured GQA kernels
    MLA's work. The kernels' model counts 4 x head_dim FLOPs per score (QK^T and PV) and reads K
    and V (2 x head_dim per KV head); MLA attends with q/k width a and v width b, so head_dim =
    (a + b) / 2. Prefill (decompressed per head): a = d_head + rope, b = v_head_dim, KV heads =
    heads. Decode (absorbed, FlashMLA): a = kv_lora_rank + rope, b = kv_lora_rank, one latent
    shared by all heads (MQA with a wide head, one KV head per chip), read once: bytes per element
    scaled by (kv_lora_rank + rope) / (2 head_dim). Prefill's K and V are 16-bit activations,
    not the cache: fused_attention_time_s charges their bytes by mla_prefill_attention_class.
    There is no MLA kernel in the measurements
    (data/kernels), so MLA's calibrated attention is this mapping, not a fit."""
    mla = c.mla
    if not np.any(mla):
        return c.d_head, kv_heads, kv_bytes  # what the masks below give every non-MLA row
    latent = c.kv_lora_rank + c.qk_rope_head_dim
    qk = np.where(decode, latent, c.d_head + c.qk_rope_head_dim)
    v = np.where(decode, c.kv_lora_rank, c.v_head_dim)
    mla_dim = (qk + v) / 2.0
    head_dim = np.where(mla, mla_dim, c.d_head)
    kv_heads = np.where(mla & decode, 1.0, kv_heads)
    scale = np.where(mla & decode, latent / (2.0 * np.maximum(mla_dim, 1.0)), 1.0)
    return head_dim, kv_heads, kv_bytes * scale


def expert_gemm_times_s(
    c: InferenceConfigs,
    gemm_shapes: tuple[np.ndarray, np.ndarray, np.ndarray],
    columns: np.ndarray,
    formats: np.ndarray,
    hardware: HardwareSpec,
    profile: CalibrationProfile,
    imbalance: float = DEFAULT_IMBALANCE,
    data_parallel: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Seconds of each expert matmul of MoE configurations ``c`` (the ``columns`` of
    ``gemm_shapes``) on one chip, as the engine's grouped MoE kernel runs it: the routed experts
    as one GEMM of the tokens one woken expert gets (:func:`~cost_models.moe.tokens_per_expert`)
    by the woken experts' stacked slices (same FLOPs and weight bytes as the grouped kernel),
    plus the shared experts as a dense GEMM of every token. Each expert's d_ff slice is what the
    layout leaves a chip (the per-chip width over the routed width per token). Where the profile
    has a fitted MoE kernel for the format (``profile.moe``), the routed experts are timed by it
    (:func:`cost_models.moe_kernel_time.routed_expert_time_s`) instead. ``data_parallel`` (None:
    1): the DP ranks whose tokens share the experts (see :func:`_expert_gemm_times_s`)."""
    return _expert_gemm_times_s(
        c, _expert_rows(gemm_shapes, columns), formats, hardware, profile, imbalance, data_parallel
    )


def _expert_gemm_times_s(
    c: InferenceConfigs,
    shapes: _ExpertShapes,
    formats: np.ndarray,
    hardware: HardwareSpec,
    profile: CalibrationProfile,
    imbalance: float = DEFAULT_IMBALANCE,
    data_parallel: np.ndarray | None = None,
    expert_parallel: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """:func:`expert_gemm_times_s` from each expert matmul's own (m, n, k) (``shapes``). The
    configurations of one format are gathered by index once for all three matmuls (none at all
    where every configuration has the same format); each element's operations are unchanged.

    Under data parallelism (DP ranks sharing the MoE layers: attention DP with EP, or vLLM's DP
    with the experts tensor-parallel over TP x DP) the experts a chip loads are those the whole
    stage's DP x N tokens wake, split DP times further than its rank's TP plan says (each chip
    holds 1/(TP x DP) of them: deployment.expert_scale, which the roofline applies to the
    weight bytes), and each woken expert multiplies the stage's tokens routed to it: the grouped
    GEMM of one chip is (DP x N) k / woken(DP x N) tokens by woken(DP x N) / DP stacked slices, the
    same FLOPs as its rank's N tokens. Woken over N alone, DeepSeek-V3 at TP 1, DP 8, EP 8 and 256
    sequences loaded 160 whole experts per chip and layer where it holds 32 (a 121 ms decode step
    under h200-vllm against 24.6 ms at the roofline)."""
    per_token = c.experts_per_token * c.expert_d_ff + c.shared_d_ff
    tokens = shapes["expert_up"][0]  # tokens this chip multiplies (its DP rank's)
    if data_parallel is None:  # (no DP: the stage's tokens are the rank's)
        woken = experts_woken(tokens, c.experts, c.experts_per_token)
        m_expert = tokens_per_expert(tokens, c.experts, c.experts_per_token, imbalance)
    else:
        dp = np.asarray(data_parallel, dtype=np.float64)
        stage_tokens = tokens * dp
        woken = experts_woken(stage_tokens, c.experts, c.experts_per_token) / dp
        m_expert = tokens_per_expert(stage_tokens, c.experts, c.experts_per_token, imbalance)
    if expert_parallel is not None:
        # The busiest EP rank's woken experts (moe.busiest_rank_woken_factor), as
        # deployment.expert_scale charges the roofline's weight bytes.
        stage_tokens = tokens * (1.0 if data_parallel is None else np.asarray(data_parallel, dtype=np.float64))
        woken = woken * busiest_rank_woken_factor(stage_tokens, c.experts, c.experts_per_token, expert_parallel)
    # The routed rows a chip's experts permute over its own tokens x top-k (moe_kernel_time.
    # routed_expert_time_s routed_rows_share): its DP group's tokens (DP x N) over the EP ranks
    # that split them. 1 without EP or DP (the measured kernels' expert tensor parallelism).
    routed_rows_share = (1.0 if data_parallel is None else np.asarray(data_parallel, dtype=np.float64)) / (
        1.0 if expert_parallel is None else np.asarray(expert_parallel, dtype=np.float64)
    )
    routed_rows_share = np.broadcast_to(routed_rows_share, tokens.shape)
    codes = np.unique(formats)
    groups = [(int(code), None if len(codes) == 1 else np.flatnonzero(formats == code)) for code in codes]
    # Per format: its rows of the configuration arrays that every matmul reads.
    columns = {
        code: {
            name: _rows(values, r)
            for name, values in (
                ("tokens", tokens),
                ("woken", woken),
                ("m_expert", m_expert),
                ("experts_per_token", c.experts_per_token),
                ("has_shared", c.shared_d_ff > 0),
                ("mxfp4", mxfp4_checkpoint_rows(c)),
                # the share of the shared experts a mixed-format checkpoint keeps 16-bit (0 elsewhere)
                ("shared_16bit", np.where(mixed_checkpoint_rows(c), c.shared_expert_16bit_share, 0.0)),
                ("routed_rows_share", routed_rows_share),
            )
        }
        for code, r in groups
    }
    out: dict[str, np.ndarray] = {}
    for op in EXPERT_PROJECTIONS:
        down = op == "expert_down"
        _, n, k = shapes[op]
        hidden = k if down else n  # per-chip hidden width of one token
        model_dim_all = n if down else k
        ways = per_token / np.where(hidden > 0, hidden, 1.0)
        expert_f_all = c.expert_d_ff / ways
        shared_f_all = np.where(c.shared_d_ff > 0, c.shared_d_ff / ways, 1.0)  # 1.0: none (masked below)
        seconds = np.zeros(len(c))
        for code, r in groups:
            fmt = _FORMAT_NAMES[code]
            # The routed experts of block-scaled fp8 run the fp8_block fused-MoE class on the
            # per-tensor fp8 dense fit, as it was fitted (tuner/moe_kernels.fitted_times_s: the
            # dense format of fp8 weights); the shared experts, a dense GEMM, the checkpoint's kernel.
            routed_fmt = "fp8" if fmt == "fp8_block" else fmt
            routed_params = _gemm_params(profile, routed_fmt)
            params = _gemm_params(profile, fmt)
            g = columns[code]
            expert_f, model_dim, shared_f = (_rows(x, r) for x in (expert_f_all, model_dim_all, shared_f_all))
            # The fitted fused-MoE kernel (cost_models/moe_kernel_time.py): the format's own, or for
            # weight-only int8/int4 without one the int4_wo or bf16 class (MOE_BORROWED), applied to this
            # format's dense parameters and bytes. The dense weight-only fit's dequantization walk
            # (GemmParams dequant_s_per_element, fitted on a100 TRT-LLM's fpA_intB plugin only; the
            # other profiles have no weight-only fit and run bf16's, without it) stays charged:
            # TRT-LLM's weight-only MoE runs the same fpA_intB CUTLASS mainloop (each M tile
            # dequantizes the weight tiles it reads, as the dense kernel's), and the bf16 class's
            # scales are grouped-over-dense ratios of bf16 kernels, which have no such walk. No
            # weight-only MoE row of TRT-LLM was measured to check it (a100 TRT-LLM mixtral-8x7b
            # at TP 4, int4, batch 64 x 2048: prefill 5.79 s, decode step 14.6 ms; with no
            # dequantization charged anywhere, dense layers included, 5.77 s and 12.5 ms).
            fused = moe_kernel_params(profile.moe, fmt)
            if fused is not None:
                routed = routed_expert_time_s(
                    down, g["tokens"], g["woken"], g["m_expert"], g["experts_per_token"], expert_f, model_dim,
                    routed_fmt, hardware, routed_params, fused, g["routed_rows_share"],
                )  # fmt: skip
            elif down:  # y[m, d] = h[m, f] @ W[f, d]: the experts' outputs stack along n
                stacked = _stacked(routed_params)
                routed = gemm_time_s(g["m_expert"], g["woken"] * model_dim, expert_f, routed_fmt, hardware, stacked)
            else:
                stacked = _stacked(routed_params)
                routed = gemm_time_s(g["m_expert"], g["woken"] * expert_f, model_dim, routed_fmt, hardware, stacked)
            mxfp4 = mxfp4_moe_params(profile.moe, fmt)
            if mxfp4 is not None and np.any(g["mxfp4"]):
                # gpt-oss's MXFP4 experts: the class fitted on the kernel database's w4a16_mxfp4
                # rows (moe_kernel_time.MXFP4_MOE_FORMAT), at this format's dense parameters and
                # bytes as it was fitted (tuner/moe_kernels.fitted_times_s); other int4_wo
                # experts (AWQ/GPTQ) keep the format's own lookup above.
                in_mxfp4 = routed_expert_time_s(
                    down, g["tokens"], g["woken"], g["m_expert"], g["experts_per_token"], expert_f, model_dim,
                    fmt, hardware, params, mxfp4, g["routed_rows_share"],
                )  # fmt: skip
                routed = np.where(g["mxfp4"], in_mxfp4, routed)
            if down:
                shared = gemm_time_s(g["tokens"], model_dim, shared_f, fmt, hardware, params)
            else:
                shared = gemm_time_s(g["tokens"], shared_f, model_dim, fmt, hardware, params)
            if fmt != "bfloat16" and np.any(g["shared_16bit"] > 0):
                # Kimi K2 Thinking's bf16 shared experts beside its int4 routed ones: a bf16 GEMM
                # (vLLM runs the shared experts as their own MLP, unquantized where ignored).
                bf16 = _gemm_params(profile, "bfloat16")
                if down:
                    shared_16bit = gemm_time_s(g["tokens"], model_dim, shared_f, "bfloat16", hardware, bf16)
                else:
                    shared_16bit = gemm_time_s(g["tokens"], shared_f, model_dim, "bfloat16", hardware, bf16)
                shared = g["shared_16bit"] * shared_16bit + (1.0 - g["shared_16bit"]) * shared
            group_seconds = routed + np.where(g["has_shared"], shared, 0.0)
            if r is None:
                seconds = np.asarray(group_seconds, dtype=np.float64)
            else:
                seconds[r] = group_seconds
        out[op] = seconds
    return out


#: What a dense call has that the woken experts stacked along n do not: the pass per output column
#: over the weights' block scales (GemmParams.FIT scale_column_s, measured on dense calls only) and
#: the SM90 scaled_mm tile dispatch by m (small_tile_max_m, mid_tile_max_m: vLLM's
#: scaled_mm_sm90_fp8_dispatch for one dense GEMM; the experts' grouped kernel picks its own tiles),
#: and TRT-LLM's weight-only GEMV at m <= 4 (weight_only_gemv_factor: the dense plugin's path).
#: The fused-MoE class (moe_kernel_time) drops them too.
_DENSE_ONLY = {
    "scale_column_s": 0.0,
    "small_tile_max_m": 0.0,
    "mid_tile_max_m": 0.0,
    "weight_only_gemv_factor": 1.0,
    # The dense kernels' measured shape correction: a stacked expert GEMM's (m, woken x width, k)
    # is not a dense shape the table was measured at.
    "shape_correction": None,
    # The dense scaled_mm's kernel dispatch by (m, n) (vLLM's SM89 fp8: cost_models/gemm_dispatch.py):
    # the experts' grouped kernel is another kernel, and a stacked n is not a dense call's n.
    "kernel_dispatch": "",
    # A CUDA-graph replay pads the tokens, not the experts' rows (cost_models/cuda_graph_capture.py).
    "cuda_graph_capture": "",
}


def _stacked(params: GemmParams) -> GemmParams:
    """``params`` for the woken experts stacked along n: without the dense call's own terms
    (``_DENSE_ONLY``)."""
    if (
        params.scale_column_s
        or params.small_tile_max_m
        or params.mid_tile_max_m
        or params.weight_only_gemv_factor != 1
        or params.shape_correction is not None
        or params.kernel_dispatch
        or params.cuda_graph_capture
    ):
        return params.model_copy(update=_DENSE_ONLY)
    return params


_KIND = {
    "all_gather": "all_gather",
    "reduce_scatter": "reduce_scatter",
    "all_reduce": "all_reduce",
    "all_to_all": "alltoall",
}


#: The engines' own all-reduce implementations, in the order a profile's are preferred
#: (CalibratedNetwork._table).
_CUSTOM_ALL_REDUCES = ("custom", "custom_graph")
#: The same in an eager pass (CalibratedNetwork.eager): vLLM's and SGLang's eager call first.
_EAGER_ALL_REDUCES = ("custom", "custom_eager", "custom_graph")


class CalibratedNetwork(Network):
    """A GPU network whose collectives inside one NVLink domain take the measured time of that
    kind and group size (NCCL, or the engine's custom all-reduce where it has one); collectives
    that cross domains keep the hierarchical network model (no measurement spans nodes)."""

    engine_collectives = True  # a GPU network's (SwitchedNetwork)

    def __init__(self, base: Network, spec: SwitchedInterconnect, profile: CalibrationProfile) -> None:
        self.base = base
        self.spec = spec
        self.profile = profile
        # The last mesh seen and its _RowSplit per axes.
        self._splits: LastMeshCache[_RowSplit] = LastMeshCache()

    def legal_meshes(self, chips: int) -> list[tuple[int, int, int]]:
        return self.base.legal_meshes(chips)

    #: Whether this network times an eager pass (:meth:`eager`).
    _eager = False

    def eager(self) -> CalibratedNetwork:
        """This network as an eager pass (no CUDA graph) runs its all-reduce: the engine's
        eager custom all-reduce ("custom_eager") where the profile measured one, else as
        :meth:`_table` picks it. vLLM's and SGLang's iterations past their capture sizes and
        their prefills (calibration.CudaGraphs)."""
        if self._eager:
            return self
        view = self.__dict__.get("_eager_view")
        if view is None:
            view = copy.copy(self)  # (the mesh splits' cache shared: they depend on the mesh only)
            view._eager = True
            self.__dict__["_eager_view"] = view
        return view

    def _table(self, kind) -> tuple[str, str, dict[int, CollectiveParams] | None]:
        """(measured kind, implementation, its fitted group sizes or None). An all-reduce runs
        the engine's custom kernel where the profile measured one: TensorRT-LLM's ("custom"),
        else vLLM's and SGLang's as their CUDA-graph replays run it ("custom_graph": on H100
        over 8 GPUs vLLM's graph all-reduce of 16 KB takes 5.6 us, its eager call 22.6 us, a
        launch from Python, and NCCL's ~18 us; data/kernels/custom_allreduce_perf.csv.gz), or in
        an eager pass (:meth:`eager`) their eager call ("custom_eager"); NCCL otherwise."""
        measured_kind = _KIND[kind]
        implementation = "nccl"
        if measured_kind == "all_reduce":
            for custom in _EAGER_ALL_REDUCES if self._eager else _CUSTOM_ALL_REDUCES:
                if "all_reduce" in self.profile.collectives.get(custom, {}):
                    implementation = custom
                    break
        return measured_kind, implementation, self.profile.collectives.get(implementation, {}).get(measured_kind)

    def collective_time_s(self, kind, bytes_per_chip, mesh, axes):
        mesh = np.atleast_2d(mesh)
        measured_kind, implementation, table = self._table(kind)
        if not table:
            return self.base.collective_time_s(kind, bytes_per_chip, mesh, axes)
        if isinstance(self.base, SwitchedNetwork):
            data = np.asarray(bytes_per_chip, dtype=np.float64)
            if data.shape == (mesh.shape[0],):
                return self._split_time_s(self.base, kind, measured_kind, table, data, mesh, axes)
        return self._whole_time_s(kind, measured_kind, implementation, table, bytes_per_chip, mesh, axes)

    def _split_time_s(
        self,
        base: SwitchedNetwork,
        kind,
        measured_kind: str,
        table: dict[int, CollectiveParams],
        data: np.ndarray,
        mesh: np.ndarray,
        axes: str,
    ) -> np.ndarray:
        """:meth:`_whole_time_s`'s numbers, each row timed by the one formula that gives its
        seconds: the network model on the rows whose groups cross domains (its group terms for
        those meshes alone, not for every row as :meth:`_whole_time_s` computes them before the
        measured rows overwrite theirs), the measured collective of each group size on its rows
        (found once per mesh and axes, not by a mask, an index and a sort of the group sizes per
        call), 0 elsewhere (a group of one chip). Rows that move no bytes are 0 wherever they are,
        as the network model makes them. Every formula is elementwise, so each row gets the same
        number (bench/guard_estimate_outputs.py)."""
        split = self._split(mesh, axes)
        if split.every_groups is not None:  # most rows cross domains: the network model on all
            times = base.collective_time_of_groups_s(kind, data, split.every_groups)
        else:
            times = np.zeros(len(data))
            if split.across_groups is not None:
                times[split.across] = base.collective_time_of_groups_s(
                    kind, data.take(split.across), split.across_groups
                )
        for size, rows in split.sizes:
            moved = data.take(rows)
            seconds = collective_time_of_size_s(measured_kind, moved, size, table)
            # np.where(moved > 0, seconds, 0.0)'s numbers, zeroed by position in its own new
            # array (a random mask: see SwitchedNetwork.collective_time_of_groups_s).
            seconds[np.flatnonzero(~(moved > 0))] = 0.0
            times[rows] = seconds
        return times

    def _split(self, mesh: np.ndarray, axes: str) -> _RowSplit:
        """The :class:`_RowSplit` of ``mesh`` over ``axes``, cached per axes for the last mesh
        seen (compared by value), as the network model caches its group geometry."""
        return self._splits.get(mesh, axes, lambda seen: _RowSplit(self.spec, seen, axes))

    def _whole_time_s(self, kind, measured_kind, implementation, table, bytes_per_chip, mesh, axes):
        """The network model on every row, then the measured collective on the rows inside a domain."""
        # The group sizes: cached with the network model's geometry (the same product) when it has it;
        # a group measured only where all its chips share a domain (_RowSplit).
        if isinstance(self.base, SwitchedNetwork):
            groups = self.base.groups(mesh, axes)
            k, crosses = groups.k, groups.inside < groups.k
        else:
            k = group_size(mesh, axes)
            crosses = k > self.spec.domain_size
        moves = bytes_per_chip > 0
        inside = np.flatnonzero((k > 1) & ~crosses & moves)
        if not len(inside):
            return self.base.collective_time_s(kind, bytes_per_chip, mesh, axes)
        if isinstance(self.base, SwitchedNetwork) and not np.any(crosses & moves):
            # Every group that moves bytes is measured (a tensor-parallel serving search on one
            # node): the network model's other rows are a group of one or no bytes, 0 there
            # (SwitchedNetwork.collective_time_s), so it is not evaluated on every row.
            times = np.zeros(k.shape)
        else:
            base = self.base.collective_time_s(kind, bytes_per_chip, mesh, axes)
            times = np.array(np.broadcast_to(base, k.shape), dtype=np.float64)
        # The measured rows by index (gathers, several times cheaper than boolean-mask copies).
        times[inside] = collective_time_s(
            measured_kind,
            np.asarray(bytes_per_chip, dtype=np.float64).take(inside),
            k.take(inside),
            table,
            implementation=implementation,
        )
        return times


#: Share of a split's rows crossing domains above which the network model times every row: at
#: 18,692 of 19,992 rows it takes 138 us on all against 127 us on those plus 45 us to gather
#: their bytes and scatter their seconds (~7 ns a row for the formula, ~2.4 for the gathers).
_EVERY_ROW_SHARE = 0.75


class _RowSplit:
    """The rows of one mesh array's collective groups over some axes, by the formula that times
    them under a profile: ``across`` (groups that cross domains: the network model, with its
    group terms ``across_groups`` for those meshes, None where there are none, or
    ``every_groups`` for every mesh where most rows cross) and per group size inside a domain
    (2 to the domain size) its rows; groups of one chip are in neither."""

    def __init__(self, spec: SwitchedInterconnect, mesh: np.ndarray, axes: str) -> None:
        k = group_size(mesh, axes)
        domain = spec.domain_size
        crosses = k > domain
        # A group of at most a domain's chips whose chips sit in several domains (mesh 2x1x8's x
        # groups on 8-GPU nodes: chips 0 and 8) crosses the network as well: no measurement
        # spans nodes. It was timed as the measured in-node collective of its size (an all-reduce
        # of 1 MB over x: 6.4 us, H100's 2-GPU custom all-reduce, against the network model's 30
        # us over InfiniBand). Only a mesh of more chips than a domain has such groups.
        small = np.flatnonzero((k > 1) & ~crosses & (group_size(mesh, "xyz") > domain))
        if len(small):
            groups = switched_groups(spec, mesh.take(small, axis=0), axes, k.take(small))
            crosses[small.take(np.flatnonzero(groups.inside < groups.k))] = True
        self.across = np.flatnonzero(crosses)
        #: Every row's group terms, where most rows cross domains (else None): the network model
        #: then times every row (its numbers elementwise; the rows of a group of one are 0 in it
        #: as here, the measured rows are overwritten), with no gather of the bytes and no
        #: scatter of the seconds.
        self.every_groups: SwitchedGroups | None = None
        self.across_groups: SwitchedGroups | None = None
        if len(self.across) >= _EVERY_ROW_SHARE * len(k):
            self.every_groups = switched_groups(spec, mesh, axes, k)
        elif len(self.across):
            self.across_groups = switched_groups(spec, mesh.take(self.across, axis=0), axes, k.take(self.across))
        inside = np.flatnonzero((k > 1) & ~crosses)
        inside_k = k.take(inside)
        # One group size inside a domain (9 of bench_estimate's 22 splits an estimate: every
        # "xyz" group), found by its least and largest, without np.unique's sort.
        if len(inside_k) and inside_k.min() == inside_k.max():
            self.sizes = [(float(inside_k[0]), inside)]
            return
        sizes = np.unique(inside_k)
        if len(sizes) == 1:
            self.sizes = [(float(sizes[0]), inside)]
        else:
            self.sizes = [(float(size), inside.take(np.flatnonzero(inside_k == size))) for size in sizes]


def calibrated_network(base: Network, hardware: HardwareSpec, profile: CalibrationProfile) -> Network:
    """The network to use under ``profile``: measured collectives on GPU nodes; elsewhere (TPU
    tori, no collective measured) the network model at the profile's fitted bandwidth fraction."""
    if isinstance(hardware.interconnect, SwitchedInterconnect) and profile.collectives:
        return CalibratedNetwork(base, hardware.interconnect, profile)
    if isinstance(hardware.interconnect, TorusInterconnect) and profile.network_eff != 1.0:
        return TorusNetwork(hardware.interconnect, hardware.efficiency.network * profile.network_eff)
    return base


def check_profile(profile: CalibrationProfile, hardware: HardwareSpec) -> None:
    """A profile describes one chip: refuse it for another."""
    if profile.chip != hardware.name:
        raise InvalidInputError(
            "calibration",
            f"profile {profile.name} is for {profile.chip}, not {hardware.name}",
            f"use a profile of {hardware.name}, or --calibration none",
        )


__all__ = ["COLLECTIVE_KINDS", "calibrated_network", "calibrated_operator_times", "check_profile", "gemm_format"]
