"""Multi-chip deployment estimates: latency, MFU, cost and memory per chip (Pope et al. 2022).

A deployment is a model on a mesh of chips serving a batch: one prefill pass over the prompts,
then ``gen_len`` decode steps whose context grows from ``prompt_len``. Each phase has its own FFN
layout and attention sharding, as in the paper's Table 2. Everything is vectorized over
configurations; :func:`estimate` scores n deployments in one call.

Time of a phase = layers x per-block time + lm_head, where a block's time combines its roofline
time (the per-operator max of compute and memory, operators one after another) with its
collectives either ``overlapped`` (max of the two; Pope et al. hide most communication behind
compute with looped collective einsums, section 3.5) or ``added`` (no overlap, a pessimistic bound).
Decode steps are scored once, at the mean context of the generated tokens: exact where step time is
linear in context, which it is within one roofline regime.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from cost_models.conventions import DEFAULT, CountingConvention
from cost_models.dtypes import BYTES_PER_ELEMENT, COMBINE, dtype_name
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, get_hardware
from cost_models.inference_configs import InferenceConfigs, make_configs
from cost_models.models import ModelSpec, get_model
from cost_models.operators import LM_HEAD, operator_costs
from cost_models.partitioning import (
    ATTENTION_SHARDINGS, FFN_LAYOUTS, Shapes, kv_shards, layer_comm_time_s, per_chip_costs,
)
from cost_models.roofline import roofline_times
from cost_models.topology import network_for, parse_mesh

Overlap = Literal["overlapped", "added"]
#: More chips than any deployment has (and beyond which enumerating meshes stops being cheap).
MAX_CHIPS = 2**20


@dataclass(frozen=True)
class PhaseEstimate:
    """One phase of n deployments; seconds are for the whole phase unless named per step."""

    latency_s: np.ndarray
    compute_s: np.ndarray  # sum over operators of FLOPs / peak (one chip)
    memory_s: np.ndarray  # sum over operators of bytes / bandwidth (one chip)
    comm_s: np.ndarray  # sum of collective times
    tokens: np.ndarray  # tokens produced (prefill: batch x prompt; decode: batch x generated)
    mfu: np.ndarray
    cost_chip_s_per_token: np.ndarray

    @property
    def throughput_tokens_per_s(self) -> np.ndarray:
        return self.tokens / self.latency_s


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per chip; ``fits`` compares the total with the chip's capacity."""

    weights_bytes_per_chip: np.ndarray
    kv_cache_bytes_per_chip: np.ndarray
    activation_bytes_per_chip: np.ndarray
    capacity_bytes_per_chip: np.ndarray
    max_context_tokens: np.ndarray  # inf where no KV cache limits it (encoders)

    @property
    def total_bytes_per_chip(self) -> np.ndarray:
        return self.weights_bytes_per_chip + self.kv_cache_bytes_per_chip + self.activation_bytes_per_chip

    @property
    def fits(self) -> np.ndarray:
        return self.total_bytes_per_chip <= self.capacity_bytes_per_chip


@dataclass(frozen=True)
class DeploymentEstimate:
    prefill: PhaseEstimate
    decode: PhaseEstimate
    decode_step_latency_s: np.ndarray  # mean over the generated tokens
    memory: MemoryEstimate


def _codes(values: object, names: tuple[str, ...], field: str, n: int) -> np.ndarray:
    array = np.atleast_1d(np.asarray(values))
    if array.dtype.kind in "iu":
        codes = array.astype(np.int64)
        if np.any((codes < 0) | (codes >= len(names))):
            raise InvalidInputError(field, "unknown code", f"use 0..{len(names) - 1}")
    else:
        bad = [v for v in array.tolist() if v not in names]
        if bad:
            raise InvalidInputError(field, f"unknown value {bad[0]!r}", f"use one of {', '.join(names)}")
        codes = np.array([names.index(v) for v in array.tolist()], dtype=np.int64)
    return np.broadcast_to(codes, (n,)).copy()


def _with(configs: InferenceConfigs, **changes: np.ndarray) -> InferenceConfigs:
    columns = {f.name: getattr(configs, f.name) for f in fields(configs)}
    columns.update({k: np.broadcast_to(v, columns[k].shape).astype(columns[k].dtype) for k, v in changes.items()})
    return InferenceConfigs(**columns)


def estimate(
    base: InferenceConfigs,
    hardware: HardwareSpec,
    *,
    mesh: np.ndarray,
    prompt_len: np.ndarray | int,
    gen_len: np.ndarray | int,
    prefill_ffn_layout: object = "ws_2d",
    decode_ffn_layout: object = "ws_2d",
    prefill_attention: object = "head",
    decode_attention: object = "head",
    overlap: Overlap = "overlapped",
    kv_memory_fraction: float | None = None,
    convention: CountingConvention = DEFAULT,
) -> DeploymentEstimate:
    """Score n deployments. ``base`` gives the model, batch, formats and kernels (its phase and
    seq_len are ignored); ``mesh`` is (n, 3) or (3,); layouts and shardings are names or codes,
    one or per configuration. ``kv_memory_fraction``: share of HBM reserved for the KV cache when
    computing the maximum context (Pope et al. Table 1 use 0.3); None means all memory left after
    weights and activations."""
    n = len(base)
    mesh = np.broadcast_to(np.asarray(mesh, dtype=np.float64), (n, 3)).copy()
    if overlap not in ("overlapped", "added"):
        raise InvalidInputError("overlap", f"unknown value {overlap!r}", "use overlapped or added")
    prompt = np.broadcast_to(np.asarray(prompt_len, dtype=np.float64), (n,))
    gen = np.broadcast_to(np.asarray(gen_len, dtype=np.float64), (n,))
    for name, values in (("prompt_len", prompt), ("gen_len", gen)):
        if np.any(~np.isfinite(values) | (values < 1) | (values != np.floor(values))):
            raise InvalidInputError(name, "must be a positive whole number", f"pass an integer >= 1 for {name}")
    if kv_memory_fraction is not None and not 0 < kv_memory_fraction <= 1:
        raise InvalidInputError("kv_memory_fraction", f"{kv_memory_fraction} is not in (0, 1]",
                                "pass a fraction such as 0.3")
    layouts = {
        "prefill": _codes(prefill_ffn_layout, FFN_LAYOUTS, "prefill_ffn_layout", n),
        "decode": _codes(decode_ffn_layout, FFN_LAYOUTS, "decode_ffn_layout", n),
    }
    batch_sharded = {
        "prefill": _codes(prefill_attention, ATTENTION_SHARDINGS, "prefill_attention", n) == 1,
        "decode": _codes(decode_attention, ATTENTION_SHARDINGS, "decode_attention", n) == 1,
    }
    network = network_for(hardware)
    chips = np.prod(mesh, axis=-1)
    # MFU against the peak of the format the weight matmuls run in (Pope et al. keep them in
    # bf16, so theirs is the bf16 peak; int8 x int8 on an H100 has twice that to use).
    peak = hardware.peak_table()[COMBINE[base.weight_dtype, base.act_dtype]]
    # MFU's numerator (Pope et al.: 2 x parameters x tokens, attention left out) counts the
    # parameters whose matmuls run: every block matrix for each token, the lm_head for the tokens
    # it scores. Pope et al. count the embedding table too (0.9% of PaLM 540B); for small models
    # that would credit work never done and let MFU pass 1.
    block_params = _params(base) - base.vocab * base.d_model * np.where(base.tie_embeddings, 1.0, 2.0)
    head_params = base.vocab * base.d_model
    prefill_head_tokens = {"all": base.batch * prompt, "none": 0.0}.get(convention.lm_head_positions, base.batch)
    decode_head_share = 0.0 if convention.lm_head_positions == "none" else 1.0

    def phase_time(configs: InferenceConfigs, tokens_per_sequence: np.ndarray, phase: str):
        ops = operator_costs(configs, convention)
        chip_ops = per_chip_costs(ops, configs, mesh, layouts[phase], batch_sharded[phase])
        times = roofline_times(chip_ops.flops, chip_ops.bytes, chip_ops.compute_dtype, hardware)
        block = np.ones(len(ops.flops), dtype=bool)
        block[LM_HEAD] = False
        roofline_block = times.time_s[block].sum(axis=0)
        comm_block = layer_comm_time_s(network, layouts[phase], Shapes.of(configs, tokens_per_sequence),
                                       mesh, configs.parallel_block, batch_sharded[phase])
        combined = (np.maximum(roofline_block, comm_block) if overlap == "overlapped"
                    else roofline_block + comm_block)
        latency = configs.layers * combined + times.time_s[LM_HEAD]
        compute = (times.compute_s * ops.repeats).sum(axis=0)
        memory = (times.memory_s * ops.repeats).sum(axis=0)
        return latency, compute, memory, configs.layers * comm_block, ops

    # Prefill: one pass over batch x prompt tokens.
    prefill_configs = _with(base, phase=np.int64(0), seq_len=prompt)
    p_lat, p_comp, p_mem, p_comm, p_ops = phase_time(prefill_configs, prompt, "prefill")
    # Decode: step t attends to prompt + t entries; scored once at the mean context, exact where
    # step time is linear in the context (within one roofline regime).
    mean_context = prompt + (gen - 1.0) / 2.0
    step_latency, step_compute, step_memory, step_comm, d_ops = phase_time(
        _with(base, phase=np.int64(1), seq_len=mean_context), np.ones(n), "decode")

    def phase(latency, compute, memory, comm, tokens, model_flops) -> PhaseEstimate:
        return PhaseEstimate(
            latency_s=latency, compute_s=compute, memory_s=memory, comm_s=comm, tokens=tokens,
            mfu=model_flops / (chips * peak * latency),
            cost_chip_s_per_token=chips * latency / tokens,
        )

    prefill_tokens, decode_tokens = base.batch * prompt, base.batch * gen
    prefill = phase(p_lat, p_comp, p_mem, p_comm, prefill_tokens,
                    2.0 * (block_params * prefill_tokens + head_params * prefill_head_tokens))
    decode = phase(step_latency * gen, step_compute * gen, step_memory * gen, step_comm * gen,
                   decode_tokens, 2.0 * (block_params + decode_head_share * head_params) * decode_tokens)
    memory = _memory(base, hardware, chips, prompt + gen, batch_sharded["decode"], p_ops,
                     d_ops, kv_memory_fraction)
    return DeploymentEstimate(prefill, decode, step_latency, memory)


def _params(c: InferenceConfigs) -> np.ndarray:
    """Parameters: block matrices plus the embedding (plus the lm_head when untied)."""
    dq, dkv = c.heads * c.d_head, c.kv_heads * c.d_head
    ffn = np.where(c.gated_ffn, 3.0, 2.0) * c.d_model * c.d_ff
    per_layer = c.d_model * (2 * dq + 2 * dkv) + ffn
    return c.layers * per_layer + c.vocab * c.d_model * np.where(c.tie_embeddings, 1.0, 2.0)


def _memory(c: InferenceConfigs, hardware: HardwareSpec, chips: np.ndarray, context: np.ndarray,
            batch_sharded: np.ndarray, prefill_ops, decode_ops,
            kv_memory_fraction: float | None) -> MemoryEstimate:
    weights_total = _params(c) * BYTES_PER_ELEMENT[c.weight_dtype]
    weights = weights_total / chips  # every layout stores weights split over all chips
    kv_per_token = (np.where(c.decoder, 2.0, 0.0) * c.layers * c.kv_heads * c.d_head
                    * BYTES_PER_ELEMENT[c.kv_dtype] * c.batch / kv_shards(c, chips, batch_sharded))
    kv = kv_per_token * context
    live = np.maximum((prefill_ops.act_read_bytes + prefill_ops.act_write_bytes).max(axis=0),
                      (decode_ops.act_read_bytes + decode_ops.act_write_bytes).max(axis=0))
    activations = live / chips
    capacity = np.full(len(c), hardware.memory_bytes)
    budget = (capacity * kv_memory_fraction if kv_memory_fraction is not None
              else np.maximum(capacity - weights - activations, 0.0))
    # Encoders keep no KV cache: no context limit from it (reported as None).
    max_context = np.floor(np.divide(budget, kv_per_token, out=np.full(len(c), np.inf),
                                     where=kv_per_token > 0))
    return MemoryEstimate(weights, kv, activations, capacity, max_context)


def estimate_report(result: DeploymentEstimate, index: int = 0) -> dict:
    """One deployment's estimate as plain data (the ``tuner estimate --json`` sections)."""
    p, d, m = result.prefill, result.decode, result.memory
    i = index
    return {
        "prefill": {
            "latency_s": float(p.latency_s[i]), "mfu": float(p.mfu[i]),
            "compute_s": float(p.compute_s[i]), "memory_s": float(p.memory_s[i]),
            "comm_s": float(p.comm_s[i]), "cost_chip_s_per_token": float(p.cost_chip_s_per_token[i]),
            "throughput_tokens_per_s": float(p.throughput_tokens_per_s[i]),
        },
        "decode": {
            "step_latency_s": float(result.decode_step_latency_s[i]), "latency_s": float(d.latency_s[i]),
            "mfu": float(d.mfu[i]), "compute_s": float(d.compute_s[i]), "memory_s": float(d.memory_s[i]),
            "comm_s": float(d.comm_s[i]), "cost_chip_s_per_token": float(d.cost_chip_s_per_token[i]),
            "throughput_tokens_per_s": float(d.throughput_tokens_per_s[i]),
        },
        "memory": {
            "weights_bytes_per_chip": float(m.weights_bytes_per_chip[i]),
            "kv_cache_bytes_per_chip": float(m.kv_cache_bytes_per_chip[i]),
            "activation_bytes_per_chip": float(m.activation_bytes_per_chip[i]),
            "total_bytes_per_chip": float(m.total_bytes_per_chip[i]),
            "capacity_bytes_per_chip": float(m.capacity_bytes_per_chip[i]),
            "fits": bool(m.fits[i]),
            "max_context_tokens": (int(m.max_context_tokens[i]) if np.isfinite(m.max_context_tokens[i])
                                   else None),
        },
    }


def estimate_one(
    model: str | ModelSpec,
    hardware: str | HardwareSpec,
    *,
    chips: int,
    batch: int,
    prompt_len: int,
    gen_len: int,
    mesh: str | tuple[int, int, int] | None = None,
    phase: Literal["prefill", "decode", "both"] = "both",
    ffn_layout: str = "ws_2d",
    prefill_ffn_layout: str | None = None,
    decode_ffn_layout: str | None = None,
    attn_sharding: str = "head",
    prefill_attn_sharding: str | None = None,
    decode_attn_sharding: str | None = None,
    weight_bits: str | int = 16,
    act_bits: str | int = 16,
    kv_bits: str | int = 16,
    flash_attention: bool = False,
    kv_heads: int | None = None,
    overlap: Overlap = "overlapped",
    kv_memory_fraction: float | None = None,
    require_fit: bool = False,
) -> dict:
    """One deployment by names, validated: the ``tuner estimate --json`` object.

    Without ``mesh``, every legal mesh for ``chips`` is scored in one call and the fastest for
    ``phase`` (preferring meshes that fit in memory) is chosen and reported. ``require_fit``
    turns a deployment that does not fit into an error instead of ``fits: false``.
    """
    model_spec = get_model(model) if isinstance(model, str) else model
    chip = get_hardware(hardware) if isinstance(hardware, str) else hardware
    if phase not in ("prefill", "decode", "both"):
        raise InvalidInputError("phase", f"unknown phase {phase!r}", "use prefill, decode or both")
    for field, value in (("chips", chips), ("batch", batch), ("prompt_len", prompt_len), ("gen_len", gen_len)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise InvalidInputError(field, f"must be a positive whole number, got {value!r}",
                                    f"pass an integer >= 1 for {field}")
    if chips > MAX_CHIPS:
        raise InvalidInputError("chips", f"{chips} is more than {MAX_CHIPS} chips", "pass a smaller chip count")
    if kv_heads is not None and not 1 <= kv_heads <= 2**31:
        raise InvalidInputError("kv_heads", f"{kv_heads} is out of range", "pass a head count >= 1")
    dtypes = chip.parse_formats(weight_bits=weight_bits, act_bits=act_bits, kv_bits=kv_bits)
    layouts = {"prefill": prefill_ffn_layout or ffn_layout, "decode": decode_ffn_layout or ffn_layout}
    shardings = {"prefill": prefill_attn_sharding or attn_sharding,
                 "decode": decode_attn_sharding or attn_sharding}
    for where, value in (*layouts.items(),):
        if value not in FFN_LAYOUTS:
            raise InvalidInputError(f"{where}_ffn_layout", f"unknown layout {value!r}",
                                    f"use one of {', '.join(FFN_LAYOUTS)}")
    for where, value in shardings.items():
        if value not in ATTENTION_SHARDINGS:
            raise InvalidInputError(f"{where}_attn_sharding", f"unknown sharding {value!r}", "use head or batch")

    network = network_for(chip)
    if mesh is not None:
        shape = parse_mesh(mesh) if isinstance(mesh, str) else tuple(mesh)
        if int(np.prod(shape)) != chips:
            raise InvalidInputError("mesh", f"{'x'.join(map(str, shape))} has {int(np.prod(shape))} chips, "
                                    f"not {chips}", "use a mesh whose axes multiply to --chips")
        network.check_mesh(shape)
        candidates = [shape]
    else:
        candidates = network.legal_meshes(chips)
        if not candidates:
            raise InvalidInputError("chips", f"{chips} chips form no legal {chip.name} mesh",
                                    "use a chip count the hardware offers (tuner hardware)")
    meshes = np.array(candidates, dtype=np.float64)
    if model_spec.kind == "encoder" and phase != "prefill":
        raise InvalidInputError("phase", f"{model_spec.name} is an encoder: it has no decode phase",
                                "use --phase prefill")
    base = make_configs(model_spec, phase="prefill", batch=batch, seq_len=prompt_len,
                        weight_dtype=dtypes["weight_bits"], act_dtype=dtypes["act_bits"],
                        kv_dtype=dtypes["kv_bits"], flash_attention=flash_attention, kv_heads=kv_heads)
    base = base.take(np.zeros(len(candidates), dtype=np.int64))
    result = estimate(base, chip, mesh=meshes, prompt_len=prompt_len, gen_len=gen_len,
                      prefill_ffn_layout=layouts["prefill"], decode_ffn_layout=layouts["decode"],
                      prefill_attention=shardings["prefill"], decode_attention=shardings["decode"],
                      overlap=overlap, kv_memory_fraction=kv_memory_fraction)
    objective = {"prefill": result.prefill.latency_s, "decode": result.decode.latency_s,
                 "both": result.prefill.latency_s + result.decode.latency_s}[phase]
    best = int(np.argmin(np.where(result.memory.fits, objective, objective + np.inf)))
    if not result.memory.fits[best]:
        best = int(np.argmin(objective))
    report = estimate_report(result, best)
    if require_fit and not report["memory"]["fits"]:
        need, have = report["memory"]["total_bytes_per_chip"], report["memory"]["capacity_bytes_per_chip"]
        raise InvalidInputError("memory", f"needs {need / 2**30:.1f} GiB per chip, {chip.name} has "
                                f"{have / 2**30:.1f} GiB", "use more chips, fewer bits, a smaller batch or context")
    for other in {"prefill", "decode"} - ({"prefill", "decode"} if phase == "both" else {phase}):
        report.pop(other)
    return {
        "model": model_spec.name,
        "hardware": chip.name,
        "chips": chips,
        "mesh": "x".join(str(int(a)) for a in meshes[best]),
        "mesh_chosen": mesh is None,
        "batch": batch,
        "prompt_len": prompt_len,
        "gen_len": gen_len,
        "ffn_layout": layouts,
        "attn_sharding": shardings,
        "weight_dtype": dtype_name(dtypes["weight_bits"]),
        "act_dtype": dtype_name(dtypes["act_bits"]),
        "kv_dtype": dtype_name(dtypes["kv_bits"]),
        "overlap": overlap,
        **report,
    }
