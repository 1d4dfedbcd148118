"""Single-chip workload analysis: per-operator costs, roofline times and whole-model totals.

This is ``tuner analyze``: the workload analysis of Kim et al. (section 2.2) and LLM-Viewer, for
arrays of configurations at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cost_models.calibrated_times import (
    calibrated_format_notes,
    calibrated_operator_times,
    check_profile,
    dense_gemm_formats,
    use_kernel_compute,
)
from cost_models.calibration import (
    AUTO_CALIBRATION,
    CUDA_GRAPH_DECODE_BACKENDS,
    CalibrationProfile,
    calibration_report,
    cuda_graph_replay,
    resolve_calibration,
)
from cost_models.conventions import CONVENTIONS, DEFAULT, CountingConvention
from cost_models.deployment import MAX_CHIPS, default_cuda_graphs, vision_notes
from cost_models.dtypes import (
    BITS_CHOICES,
    BYTES_PER_ELEMENT,
    FP4,
    FP8,
    MXFP4_SCALE_BYTES_PER_ELEMENT,
    dtype_name,
    parse_dtype,
)
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, get_hardware
from cost_models.inference_configs import DECODE, InferenceConfigs, make_configs
from cost_models.model_counts import embedding_params
from cost_models.models import ModelSpec, get_model
from cost_models.operators import (
    EXPERT_PROJECTIONS,
    OP,
    OPERATOR_NAMES,
    OperatorCosts,
    mixed_checkpoint_rows,
    mxfp4_checkpoint_rows,
    operator_costs,
)
from cost_models.partitioning import TABLE_BYTES_PER_ELEMENT, gemm_shapes_per_chip, sharding_plan
from cost_models.roofline import RooflineTimes, roofline_times


@dataclass(frozen=True)
class Analysis:
    """Per-operator costs and times, and whole-model totals, for n configurations."""

    configs: InferenceConfigs
    hardware: HardwareSpec
    operators: OperatorCosts
    times: RooflineTimes
    #: Seconds per operator under a calibration profile (None: the pure roofline's ``times``).
    calibrated_time_s: np.ndarray | None = None

    @property
    def operator_time_s(self) -> np.ndarray:
        """Seconds per execution of each operator: calibrated, or the roofline's."""
        return self.times.time_s if self.calibrated_time_s is None else self.calibrated_time_s

    @property
    def total_flops(self) -> np.ndarray:
        """FLOPs of one forward pass of the whole model."""
        return np.sum(self.operators.flops * self.operators.repeats, axis=0)

    @property
    def total_bytes(self) -> np.ndarray:
        """Memory traffic of one forward pass of the whole model."""
        return np.sum(self.operators.bytes * self.operators.repeats, axis=0)

    @property
    def total_time_s(self) -> np.ndarray:
        """Operators run one after another, each at its own roofline (or calibrated time)."""
        return np.sum(self.operator_time_s * self.operators.repeats, axis=0)

    @property
    def weight_footprint_bytes(self) -> np.ndarray:
        """Weights resident in memory: the blocks' matrices and norm scales, the embedding table
        and the lm_head (counted once when tied to the embedding)."""
        ops = self.operators
        block = np.sum(ops.weight_bytes[:-1] * ops.repeats[:-1], axis=0)
        c = self.configs
        if np.any(c.moe_layers > 0):  # every expert is resident, not only those a pass wakes
            experts = [OP[name] for name in EXPERT_PROJECTIONS]
            loaded = np.sum(ops.weight_bytes[experts] * ops.repeats[experts], axis=0)
            matrices = np.where(c.gated_ffn, 3.0, 2.0)
            every = c.moe_layers * matrices * c.d_model * (c.experts * c.expert_d_ff + c.shared_d_ff)
            block = block - loaded + every * BYTES_PER_ELEMENT[c.weight_dtype]
            # An MXFP4-experts checkpoint (gpt-oss) served in it stores one 8-bit scale per 32
            # routed-expert weights (OCP Microscaling v1.0), as tuner estimate charges it
            # (partitioning.mxfp4_checkpoint_extra_bytes): gpt-oss-120b 65.17 GB, not 61.58.
            routed = c.moe_layers * matrices * c.d_model * c.experts * c.expert_d_ff
            block = block + np.where(mxfp4_checkpoint_rows(c), routed * MXFP4_SCALE_BYTES_PER_ELEMENT, 0.0)
            # A mixed-format checkpoint served as stored: its routed experts carry their group
            # scales, its shared experts its 16-bit share (operators._mixed_checkpoint, for all
            # experts resident rather than those a pass wakes).
            mixed = mixed_checkpoint_rows(c)
            if mixed.any():
                wb = BYTES_PER_ELEMENT[c.weight_dtype]
                shared = c.moe_layers * matrices * c.d_model * c.shared_d_ff
                sixteen = c.shared_expert_16bit_share
                more = (routed + shared * (1.0 - sixteen)) * c.checkpoint_scale_bytes + shared * sixteen * (2.0 - wb)
                block = block + np.where(mixed, more, 0.0)
        # The embedding and lm_head stay 16-bit whatever the weight format (engines quantize the
        # blocks' linear layers: cost_models.partitioning.TABLE_BYTES_PER_ELEMENT).
        return block + embedding_params(c.vocab, c.d_model, c.tie_embeddings) * TABLE_BYTES_PER_ELEMENT

    @property
    def kv_cache_footprint_bytes(self) -> np.ndarray:
        """K and V of every layer for ``seq_len`` positions of every sequence (decoders only)."""
        c = self.configs
        per_token = c.kv_bytes_per_token(c.seq_len)
        return per_token * c.batch * c.seq_len

    @property
    def activation_footprint_bytes(self) -> np.ndarray:
        """The largest live activations: inputs plus outputs of the hungriest operator."""
        ops = self.operators
        return np.max(ops.act_read_bytes + ops.act_write_bytes, axis=0)


def analyze(
    configs: InferenceConfigs,
    hardware: HardwareSpec,
    convention: CountingConvention = DEFAULT,
    calibration: CalibrationProfile | None = None,
) -> Analysis:
    """Score every configuration on one chip; with ``calibration``, each operator also at the
    time its kernel class was measured to take on that chip."""
    ops = operator_costs(configs, convention)
    if calibration is not None:
        check_profile(calibration, hardware)
        # The roofline columns at the peak of the kernel that times each weight matmul (fp8
        # weights run W8A8 on a GPU engine), as tuner estimate bounds them (calibrated_times).
        use_kernel_compute(ops, configs, hardware, calibration)
    times = roofline_times(ops.flops, ops.bytes, ops.compute_dtype, hardware)
    calibrated = None
    if calibration is not None:
        one_chip = np.ones((len(configs), 3))
        layout = np.zeros(len(configs), dtype=np.int64)  # one chip: every layout is the same
        heads_only = np.zeros(len(configs), dtype=bool)
        shapes = gemm_shapes_per_chip(ops, sharding_plan(configs, one_chip, layout))
        # Decode rows as vLLM and SGLang run them, a CUDA-graph replay without the GEMMs' per-call
        # host floor (calibration.cuda_graph_replay), as tuner estimate times a decode step: up to
        # the engine's default capture (one chip: vLLM 512 sequences, SGLang cuda_graph_max_bs at
        # TP 1), eager past it (calibration.CudaGraphs).
        decode_rows = configs.phase == DECODE
        if calibration.backend in CUDA_GRAPH_DECODE_BACKENDS:
            graphs = default_cuda_graphs(calibration.backend, hardware, np.ones(len(configs)))
            decode_rows = decode_rows & graphs.replays(configs.batch, np.zeros(len(configs)))
        replay = cuda_graph_replay(calibration)
        assert replay is not None
        whole = replay if decode_rows.all() else calibration
        calibrated = calibrated_operator_times(ops, configs, shapes, np.ones(len(configs)), heads_only, hardware, whole)
        if replay is not whole and decode_rows.any():
            graph = calibrated_operator_times(ops, configs, shapes, np.ones(len(configs)), heads_only, hardware, replay)
            calibrated = np.where(decode_rows, graph, calibrated)
    return Analysis(configs, hardware, ops, times, calibrated)


def generation_totals(
    model: ModelSpec,
    hardware: HardwareSpec,
    gen_len: int,
    *,
    batch: int = 1,
    convention: CountingConvention = DEFAULT,
    **config_kwargs: Any,
) -> dict[str, float]:
    """FLOPs, bytes and time of generating ``gen_len`` tokens one at a time with a KV cache and
    no prompt: step t attends to t cached positions (itself included), weights reload each step.
    This is how Kim et al. count GPT-2 (Figures 4-6). All steps are scored in one call."""
    steps = np.arange(1, gen_len + 1)
    configs = make_configs(model, phase="decode", batch=batch, seq_len=steps, **config_kwargs)
    result = analyze(configs, hardware, convention)
    return {
        "flops": float(result.total_flops.sum()),
        "bytes": float(result.total_bytes.sum()),
        "time_s": float(result.total_time_s.sum()),
    }


def analysis_report(result: Analysis, index: int = 0) -> dict:
    """One configuration's analysis as plain data: the ``tuner analyze --json`` object."""
    ops, times, c = result.operators, result.times, result.configs
    operators = []
    for i, name in enumerate(OPERATOR_NAMES):
        if not ops.present[i, index]:
            continue
        per_model = name == "lm_head"
        operators.append(
            {
                "name": name,
                "scope": "per_model" if per_model else "per_block",
                "count": int(ops.repeats[i, index]),
                "flops": float(ops.flops[i, index]),
                "bytes": float(ops.bytes[i, index]),
                "weight_bytes": float(ops.weight_bytes[i, index]),
                "act_read_bytes": float(ops.act_read_bytes[i, index]),
                "act_write_bytes": float(ops.act_write_bytes[i, index]),
                "kv_read_bytes": float(ops.kv_read_bytes[i, index]),
                "kv_write_bytes": float(ops.kv_write_bytes[i, index]),
                "arithmetic_intensity": float(ops.arithmetic_intensity[i, index]),
                "bound": "compute" if times.compute_bound[i, index] else "memory",
                "roofline_time_s": float(times.time_s[i, index]),
                "time_s": float(result.operator_time_s[i, index]),
            }
        )
    memory = {
        "weights": float(result.weight_footprint_bytes[index]),
        "kv_cache": float(result.kv_cache_footprint_bytes[index]),
        "activations": float(result.activation_footprint_bytes[index]),
    }
    memory["total"] = sum(memory.values())
    return {
        "phase": "decode" if c.phase[index] == DECODE else "prefill",
        "batch": int(c.batch[index]),
        "seq_len": int(c.seq_len[index]),
        "operators": operators,
        "totals": {
            "flops": float(result.total_flops[index]),
            "bytes": float(result.total_bytes[index]),
            "time_s": float(result.total_time_s[index]),
            "memory_bytes": memory,
        },
    }


def memory_fit(
    memory: dict[str, float], chip: HardwareSpec, weight_dtype: int, table_bytes: float = 0.0
) -> dict[str, Any]:
    """Whether one configuration's footprint (``analysis_report``'s ``memory_bytes``) fits on one
    chip, and if not what would: the fewest chips holding it with the weights and KV cache split
    over them (the largest live activations stay whole on each), and the widest narrower weight
    format the chip stores that makes one chip enough (``table_bytes``: of the weights, the
    embedding's and lm_head's, which stay 16-bit in every format)."""
    capacity = float(chip.memory_bytes)
    total = memory["total"]
    fit: dict[str, Any] = {"capacity_bytes": capacity, "fits": bool(total <= capacity)}
    if fit["fits"]:
        return fit
    split = memory["weights"] + memory["kv_cache"]
    room = capacity - memory["activations"]
    chips = np.ceil(split / room) if room > 0 else np.inf
    fit["chips_needed"] = int(chips) if np.isfinite(chips) and chips <= MAX_CHIPS else None
    fit["weight_bits_that_fit"] = None
    per_element = BYTES_PER_ELEMENT[weight_dtype]
    narrower = sorted(
        {float(BYTES_PER_ELEMENT[parse_dtype(b, "weight_bits")]) for b in BITS_CHOICES} - {float(per_element)},
        reverse=True,
    )
    for size in (b for b in narrower if b < per_element):
        if total - (memory["weights"] - table_bytes) * (1.0 - size / per_element) <= capacity:
            names = [
                b
                for b in BITS_CHOICES
                if BYTES_PER_ELEMENT[code := parse_dtype(b, "weight_bits")] == size
                and (code not in (FP8, FP4) or chip.has_format(code))  # float formats: native only
            ]
            fit["weight_bits_that_fit"] = names
            break
    return fit


def analyze_one(
    model: str | ModelSpec,
    hardware: str | HardwareSpec,
    *,
    phase: str,
    batch: int,
    seq_len: int,
    weight_bits: str | int = 16,
    act_bits: str | int = 16,
    kv_bits: str | int = 16,
    flash_attention: bool = False,
    causal: bool | None = None,
    kv_heads: int | None = None,
    convention: str | CountingConvention = DEFAULT,
    calibration: str | CalibrationProfile | None = AUTO_CALIBRATION,
    backend: str | None = None,
) -> dict:
    """Analyze one configuration given by names and bits, validating every input.

    Returns the ``tuner analyze --json`` object: model, hardware, the configuration, per-operator
    rows (per block, lm_head once per model) and whole-model totals.
    """
    model_spec = get_model(model) if isinstance(model, str) else model
    chip = get_hardware(hardware) if isinstance(hardware, str) else hardware
    if isinstance(convention, str):
        if convention not in CONVENTIONS:
            raise InvalidInputError(
                "convention", f"unknown convention {convention!r}", f"use one of {', '.join(CONVENTIONS)}"
            )
        convention = CONVENTIONS[convention]
    dtypes = chip.parse_formats(weight_bits=weight_bits, act_bits=act_bits, kv_bits=kv_bits)
    for field, value in (("batch", batch), ("seq_len", seq_len), ("kv_heads", kv_heads)):
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
            raise InvalidInputError(field, f"must be a whole number, got {value!r}", "pass an integer >= 1")
    configs = make_configs(
        model_spec,
        phase=phase,
        batch=batch,
        seq_len=seq_len,
        weight_dtype=dtypes["weight_bits"],
        act_dtype=dtypes["act_bits"],
        kv_dtype=dtypes["kv_bits"],
        flash_attention=flash_attention,
        causal=causal,
        kv_heads=kv_heads,
    )
    profile = resolve_calibration(calibration, chip, backend)
    report = analysis_report(analyze(configs, chip, convention, profile))
    notes = vision_notes(model_spec)
    if model_spec.vision_params:  # the vision encoder, loaded 16-bit beside the language model
        memory = report["totals"]["memory_bytes"]
        memory["weights"] += model_spec.vision_params * 2.0
        memory["total"] = memory["weights"] + memory["kv_cache"] + memory["activations"]
    if profile is not None and chip.kind == "gpu" and not configs.flash_attention[0]:
        # Unfused is the papers' operator list (LLM-Viewer, Kim et al.), kept as the default so
        # their tables reproduce; but the profile times an engine's kernels, and every GPU engine
        # runs attention fused (FlashAttention, FlashInfer, TensorRT-LLM's FMHA): the score
        # matrix's trips through memory and their time are none of what that engine does.
        notes.append(
            f"attention unfused (the papers' operators: the score matrix goes through memory); {profile.backend} "
            "runs it fused: add --flash-attention for the time that engine takes"
        )
    if profile is not None and (profile.per_layer_overhead_s > 0 or profile.per_step_overhead_s > 0):
        # Fitted end to end (tuner calibrate --points/--bench-json), they are most of what such a fit
        # changes, and no operator carries them: the total alone read as the profile's step time,
        # milliseconds under the one tuner estimate gives for the same profile and deployment.
        layers = int(configs.layers[0])
        overhead = profile.per_layer_overhead_s * layers + profile.per_step_overhead_s
        notes.append(
            f"the profile's engine overheads, {overhead * 1e3:.3g} ms a forward step (per layer "
            f"{profile.per_layer_overhead_s * 1e6:.3g} us x {layers} layers + per step "
            f"{profile.per_step_overhead_s * 1e3:.3g} ms), are not in the operators' total; tuner estimate adds them"
        )
    # As tuner estimate says it: the kernel the formats run (fp8 weights as W8A8) and a borrowed
    # fused-MoE class.
    notes += calibrated_format_notes(
        profile,
        chip,
        model_spec.experts,
        dtypes["weight_bits"],
        dtypes["act_bits"],
        mxfp4_experts=model_spec.mxfp4_experts,
        fp8_block_scales=model_spec.fp8_block_scales,
    )
    return {
        "model": model_spec.name,
        "params": {"total": model_spec.params, "active_per_token": model_spec.active_params},
        "hardware": chip.name,
        **report,
        "kv_heads": int(configs.kv_heads[0]),
        "weight_dtype": dtype_name(dtypes["weight_bits"]),
        "act_dtype": dtype_name(dtypes["act_bits"]),
        "kv_dtype": dtype_name(dtypes["kv_bits"]),
        "flash_attention": bool(configs.flash_attention[0]),
        "causal": bool(configs.causal[0]),
        "convention": convention.name,
        "calibration": calibration_report(
            profile,
            backend_chosen=backend is None and calibration in (None, AUTO_CALIBRATION),
            gemm_formats=dense_gemm_formats(model_spec, dtypes["weight_bits"], dtypes["act_bits"]),
        ),
        "memory_fit": memory_fit(
            report["totals"]["memory_bytes"],
            chip,
            dtypes["weight_bits"],
            (
                float(embedding_params(model_spec.vocab, model_spec.d_model, model_spec.tie_embeddings))
                + model_spec.vision_params
            )
            * TABLE_BYTES_PER_ELEMENT,
        ),
        "notes": notes,
    }
