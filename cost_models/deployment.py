"""Multi-chip deployment estimates: latency, MFU, cost and memory per chip (Pope et al. 2022).

A deployment is a model on a mesh of chips serving a batch: one prefill pass over the prompts,
then ``gen_len`` decode steps whose context grows from ``prompt_len``. Each phase has its own FFN
layout and attention sharding, as in the paper's Table 2. Everything is vectorized over
configurations; :func:`estimate` scores n deployments in one call.

Time of a phase = layers x per-block time + lm_head, where a block's time combines its roofline
time (the per-operator max of compute and memory, operators one after another) with its
collectives either ``overlapped`` (max of the two; Pope et al. hide most communication behind
compute with looped collective einsums, section 3.5) or ``added`` (no overlap, a pessimistic bound).
On a TPU torus ``overlapped`` follows the authors' program (:func:`combine_block_s`,
cost_models.partitioning.torus_layer_collectives): a ring looped inside a matmul hides behind that
matmul alone, and unfused collectives are added to the block.
Decode steps are scored once, at the mean context of the generated tokens: exact where step time is
linear in context, which it is within one roofline regime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Literal, get_args

import numpy as np

from cost_models.calibrated_times import (
    ELEMENTWISE_OPS,
    _gemm_params,
    calibrated_format_notes,
    calibrated_network,
    calibrated_operator_times,
    check_profile,
    dense_gemm_formats,
    expert_moe_format,
    matmul_compute_dtype,
    use_kernel_compute,
)
from cost_models.calibration import (
    AUTO_CALIBRATION,
    CUDA_GRAPH_DECODE_BACKENDS,
    CalibrationProfile,
    CudaGraphs,
    calibration_report,
    cuda_graph_replay,
    resolve_calibration,
    serving_engine,
)
from cost_models.conventions import DEFAULT, CountingConvention
from cost_models.deployments import (
    BLOCKS,
    PHASE_NAMES,
    Deployment,
    Deployments,
    engine_problem_mask,
    kv_heads_split_problem,
    refuse_engine_kv_cache,
)
from cost_models.distinct import MIN_ROWS, repeated_rows
from cost_models.dtypes import BF16, BYTES_PER_ELEMENT, dtype_name, lookup, parse_dtype
from cost_models.efficiency import gemm_time_s
from cost_models.errors import InvalidInputError, refuse_outside
from cost_models.hardware import ENGINE_DISPLAY_NAMES, HardwareSpec, get_hardware
from cost_models.inference_configs import DECODE, InferenceConfigs
from cost_models.input_ranges import MEMORY_FRACTION_RANGE
from cost_models.model_counts import active_block_params, context_that_fits, model_flops_utilization
from cost_models.models import ModelSpec, get_model
from cost_models.moe import EP_IMBALANCE, busiest_rank_woken_factor, ep_dispatch_bytes_per_chip, experts_woken
from cost_models.moe_kernel_time import MEASURED_FP8_MOE_PER_TOKEN_OVER_BF16, moe_kernel_class
from cost_models.operators import (
    DENSE_FFN,
    KV_READ_SLOTS,
    KV_WRITE_SLOTS,
    LM_HEAD,
    MOE_FFN,
    OP,
    OPERATOR_NAMES,
    WEIGHTLESS_SLOTS,
    OperatorCosts,
    operator_costs,
)
from cost_models.partitioning import (
    ATTENTION_SHARDINGS,
    FFN_LAYOUTS,
    GEMM_AXES,
    W_IN_SLOTS,
    W_OUT_SLOTS,
    ChipShares,
    LazyWays,
    Shapes,
    ShardingPlan,
    chip_shares,
    collective_act_bytes,
    distinct_rows,
    distinct_rows_any_order,
    gathered_weight_buffer_bytes,
    kv_cache_split,
    kv_cache_ways,
    kv_shape_splits,
    layer_collective_steps,
    layer_comm_time_s,
    mxfp4_checkpoint_extra_bytes,
    sharding_plan,
    stored_weight_bytes,
    torus_layer_comm_s,
)
from cost_models.topology import (
    DISTINCT_MESH_SHARE,
    Network,
    chips_offered,
    domain_size,
    network_for,
    parse_mesh,
    point_to_point_time_s,
    straddling_tp_groups,
)

Overlap = Literal["overlapped", "added"]
OVERLAPS: tuple[str, ...] = get_args(Overlap)
#: The routed experts' operator slots (weights spread over EP and DP, work paced by the busiest rank).
EXPERT_SLOTS: tuple[str, ...] = ("expert_gate", "expert_up", "expert_act", "expert_down")
#: More chips than any deployment has (and beyond which enumerating meshes stops being cheap).
MAX_CHIPS = 2**20
#: Rows :func:`estimate` scores at once; larger calls are split into equal chunks of at most this
#: many. Measured (docs/benchmarks.md, round 3): 100,000 rows per call scored ~200,000/s on one
#: core, 1,000,000 rows in one piece ~135,000/s (page faults of fresh (slots, n) arrays).
ESTIMATE_CHUNK_ROWS = 100_000


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


@dataclass(frozen=True)
class _PhaseTimes:
    """Seconds of one forward pass of one phase, before it is turned into a :class:`PhaseEstimate`."""

    latency_s: np.ndarray
    compute_s: np.ndarray
    memory_s: np.ndarray
    comm_s: np.ndarray


@dataclass(frozen=True)
class OperatorTimes:
    """Seconds of each operator slot of one forward pass on one chip (``(slots, n)``, per execution:
    block slots run ``layers`` times), the block's collectives and the engine's fixed costs."""

    op_time_s: np.ndarray
    comm_block_s: np.ndarray
    #: per block: the engine's fixed cost, plus under a profile with ``collective_step_s`` the
    #: latency of the block's collective steps (then one per configuration)
    layer_overhead_s: np.ndarray | float
    step_overhead_s: float
    #: the block's collectives on its critical path (:func:`combine_block_s`): unfused ones, and
    #: a collective einsum's ring beyond its matmul (cost_models.partitioning.torus_layer_collectives)
    comm_critical_s: np.ndarray | float = 0.0
    #: slots whose every time is +0.0 (no configuration has them: chip_roofline), left out of
    #: the slot sums (:func:`slot_sum`)
    zero_slots: frozenset[int] = frozenset()


def slot_sum(op_time: np.ndarray, slots: Iterable[int], zero: frozenset[int] = frozenset()) -> np.ndarray:
    """``op_time[slots].sum(axis=0)``'s numbers (an axis-0 sum adds the rows to +0.0 one after
    another, in order), without the rows of ``zero`` (all +0.0: adding one leaves such a sum,
    never -0.0, as it is) and without gathering the rows into a copy first."""
    rows = [i for i in slots if i not in zero]
    if not rows:
        return np.zeros(op_time.shape[1])
    total = np.add(op_time[rows[0]], 0.0)  # (+0.0 + x, as the sum starts: -0.0 becomes +0.0)
    for i in rows[1:]:
        total += op_time[i]
    return total


@dataclass(frozen=True)
class RooflineTotals:
    """The roofline's two terms of one forward pass on one chip, summed over the operator slots'
    executions (``repeats``): seconds of FLOPs at peak and of bytes at full bandwidth."""

    compute_s: np.ndarray
    memory_s: np.ndarray


def chip_roofline(
    ops: OperatorCosts,
    shares: ChipShares,
    hardware: HardwareSpec,
    expert_scale: tuple[np.ndarray, np.ndarray] | None,
    layers: np.ndarray | None = None,
    chip_ops: OperatorCosts | None = None,
    times: bool = True,
    totals: bool = True,
    flops_only: frozenset[int] = frozenset(),
    kept: frozenset[str] = frozenset(),
    bytes_only: frozenset[int] = frozenset(),
    time_out: np.ndarray | None = None,
) -> tuple[np.ndarray, RooflineTotals | None]:
    """Each slot's roofline time on one chip (``(slots, n)``, per execution) and the pass's
    :class:`RooflineTotals`: the slot's costs split as ``shares`` says (partitioning.chip_shares),
    the expert slots scaled by ``expert_scale`` (:func:`expert_scale`), then max(FLOPs / peak,
    bytes / bandwidth) (cost_models.roofline). ``layers`` (given when MoE configurations are
    present): a block slot's time counts in the share of the ``layers`` blocks it runs in. ``chip_ops``: arrays
    shaped like ``ops`` to receive the per-chip costs (the calibrated path reads them), their
    ``bytes`` too. ``times`` False: the slots' times are not wanted (the calibrated path replaces
    them), only the totals and ``chip_ops``; the returned times are then left unfilled.
    ``totals`` False: the totals are not wanted either (a serving iteration's dense view) and
    None is returned for them; with ``times`` False too only ``chip_ops`` is filled.
    ``flops_only`` (with ``chip_ops``): slots of which only the per-chip FLOPs are wanted (the
    calibrated GEMMs derive m from them and read nothing else of theirs); their per-chip bytes
    are left unfilled (with the totals they are summed from a scratch buffer), and with neither
    times nor totals so are their other ``chip_ops`` rows and every row but the FLOPs (zero) of
    the slots no configuration has (calibrated_operator_times times them as zero).
    ``kept`` (with ``chip_ops``): the names of its cost arrays to fill (default: all); the others
    are computed block by block in scratch buffers, left unfilled (the calibrated path reads only
    the FLOPs, the summed ``bytes`` and MLA's weight bytes). ``bytes_only`` (with ``chip_ops``):
    slots whose per-chip FLOPs are not stored either (the calibrated elementwise kernels read
    their bytes alone); the per-chip bytes of slots no configuration has are left unfilled.
    ``time_out``: a ``(slots, n)`` array (or view) the times are written into and returned.

    Slot by slot, in the order of the arrays, with the same operations as per_chip_costs and
    roofline_times on whole arrays, so every number is bit for bit the same; one slot's
    temporaries are (n,) and stay in cache where whole (slots, n) arrays would not."""
    n_slots, n = ops.flops.shape
    dtype = ops.flops.dtype
    if dtype != np.float64:  # (the float32 roofline: every input in the tables' type, once)
        shares = _shares_as(shares, dtype)
        if expert_scale is not None:
            expert_scale = (expert_scale[0].astype(dtype), expert_scale[1].astype(dtype))
        if layers is not None:
            layers = layers.astype(dtype)
    kept = kept or frozenset(_COST_ARRAYS)
    # The per-chip bytes of every slot, filled with ``chip_ops`` and seeded as its cached ``bytes``
    # (the calibrated kernels read them), so they are not summed again from the (slots, n) arrays.
    chip_bytes = None if chip_ops is None else np.empty_like(ops.flops)
    peaks = (hardware.peak_table() * hardware.efficiency.compute).astype(dtype, copy=False)
    bandwidth = dtype.type(hardware.memory_bandwidth_bytes_per_s * hardware.efficiency.memory)
    expert_rows = {OP[name] for name in EXPERT_SLOTS} if expert_scale is not None else set()
    # The KV bytes each slot moves: written by the K and V projections, read by attention; the
    # other rows are zero (operators.KV_*_SLOTS), as are the weights of the weightless slots
    # (operators.WEIGHTLESS_SLOTS). 0 / ways is 0 (ways >= 1) and adding it leaves a sum as it
    # is, so those rows are left out of the arithmetic (filled with zero where ``chip_ops`` keeps them).
    kv_write_rows = {OP[name] for name in KV_WRITE_SLOTS}
    kv_read_rows = {OP[name] for name in KV_READ_SLOTS}
    weightless_rows = {OP[name] for name in WEIGHTLESS_SLOTS}
    # The slots that run in only some blocks, by group (operators.OperatorCosts.repeats).
    ffn_rows = {OP[name]: group for group in (DENSE_FFN, MOE_FFN) for name in group}
    shares_of: dict[tuple[str, ...], np.ndarray] = {}
    time_s = np.empty_like(ops.flops) if time_out is None else time_out
    # Sums from zero (0 + x is x): the same numbers as a sum over the slots' axis, which adds
    # the slots one after another in this order. (In the arithmetic's type, returned as float64.
    # Summed in float64 instead, from float64 products, they would round as the latency's sum of
    # the same times does, but those mixed-type passes cost ~13 us a slot's block against ~3.4 in
    # float32 (16,384 rows, AMD EPYC VM), ~4 ms an estimate: most of what float32 saves here.)
    compute_total, memory_total = np.zeros(n, dtype), np.zeros(n, dtype)
    # Slots share a few rows of compute formats (elementwise, weight matmuls, attention): each
    # distinct row's peaks are looked up once (comparing int8 codes is cheaper than the look-up).
    peak_rows: list[tuple[np.ndarray, np.ndarray]] = []

    def peak_of(codes: np.ndarray) -> np.ndarray:
        for seen, peak in peak_rows:
            if np.array_equal(seen, codes):
                return peak
        peak = lookup(peaks, codes)  # np.take(peaks, codes)'s numbers (filled where one code)
        peak_rows.append((codes, peak))
        return peak

    present: list[int] = []
    peak_by_slot: dict[int, np.ndarray] = {}
    for i in range(n_slots):
        if ops.present[i].any():
            present.append(i)
            if times or totals:
                peak_by_slot[i] = peak_of(ops.compute_dtype[i])
            if times and layers is not None and i in ffn_rows and ffn_rows[i] not in shares_of:
                shares_of[ffn_rows[i]] = ops.row("repeats", i) / layers
            continue
        # Absent everywhere: all zero, no time.
        time_s[i] = 0.0
        if not (times or totals) and chip_ops is not None:
            # chip_ops alone: its reader skips such a slot, but for its FLOPs (gemm_shapes_per_chip
            # reads every weight matmul's row where MLA needs whole arrays): zero, as 0 / ways.
            chip_ops.flops[i] = 0.0
            continue
        if chip_ops is not None and chip_bytes is not None:  # per chip zero too (0 / ways, ways >= 1)
            for name in kept:
                getattr(chip_ops, name)[i] = 0.0
            # (Its per-chip bytes are left unfilled: their readers skip slots no configuration has.)
    # The slots of ROOFLINE_BLOCK_ROWS configurations at a time: one slot's dozen temporaries of
    # a block stay in the core's cache where whole (n,) rows (0.8 MB each at 100,000) do not.
    # Each element's operations are the same, in the same order, whatever the blocking.
    blocks = block_slices(n, ROOFLINE_BLOCK_ROWS)
    block_rows = max(1, max((b.stop - b.start for b in blocks), default=1))
    twins = _twin_slots(
        ops, shares, set(present), peak_by_slot if times or totals else None, totals,
        (expert_rows, weightless_rows, kv_read_rows, kv_write_rows, flops_only, bytes_only), ffn_rows,
    )  # fmt: skip
    # Each twinned slot's terms of the totals in this block (copied after it is summed).
    twin_terms = (
        {j: (np.empty(block_rows, dtype), np.empty(block_rows, dtype)) for j in set(twins.values())} if totals else {}
    )
    # Each present slot's weight ways, read once (shares.weight expands a slot's row when read).
    weight_of = {i: shares.weight[i] for i in present}
    scratch_all = {name: np.empty(block_rows, dtype) for name in _COST_ARRAYS}
    compute_all, memory_all = np.empty(block_rows, dtype), np.empty(block_rows, dtype)
    # Times kept in another type than the arithmetic's (float64 ``time_out`` of the float32
    # roofline): each slot's block computed here, then cast into ``time_s`` while in cache.
    time_all = np.empty(block_rows, dtype) if time_s.dtype != dtype else None
    residual = _shared_residual_rows(ops, shares, present, twins, expert_rows, kept if chip_ops is not None else ())
    residual_all = np.empty(block_rows, dtype) if residual else None
    for b in blocks:
        width = b.stop - b.start
        # One slot's per-chip costs (or its rows of ``chip_ops``), its compute and memory time:
        # buffers reused from slot to slot.
        scratch = {name: array[:width] for name, array in scratch_all.items()}
        compute, memory = compute_all[:width], memory_all[:width]
        block_compute_total, block_memory_total = compute_total[b], memory_total[b]
        weight_scale = work_scale = None
        if expert_scale is not None:
            weight_scale, work_scale = expert_scale[0][b], expert_scale[1][b]
        kv_ways = shares.kv[b]
        residual_chip = None
        if residual_all is not None:
            # The residual stream's bytes on one chip, once for the block (every slot of
            # ``residual`` would divide the same numbers by the same work array).
            name, i = next(iter(residual))
            residual_chip = np.divide(getattr(ops, name)[i, b], shares.work[i][b], out=residual_all[:width])
        for i in present:
            j = twins.get(i)
            if j is not None:  # every input row is slot j's: so is every number, copied
                only_flops = i in flops_only and not (times or totals)
                if chip_ops is not None:
                    for name in ("flops",) if only_flops else kept:
                        if not (name == "flops" and i in bytes_only):
                            array = getattr(chip_ops, name)
                            array[i, b] = array[j, b]
                if chip_bytes is not None and i not in flops_only:
                    chip_bytes[i, b] = chip_bytes[j, b]
                if times:
                    time_s[i, b] = time_s[j, b]
                if totals:
                    block_compute_total += twin_terms[j][0][:width]
                    block_memory_total += twin_terms[j][1][:width]
                continue
            work, weight_ways = shares.work[i][b], weight_of[i]
            out = (
                scratch
                if chip_ops is None
                else {
                    name: getattr(chip_ops, name)[i, b]
                    if name in kept and not (name == "flops" and i in bytes_only)
                    else scratch[name]
                    for name in _COST_ARRAYS
                }
            )
            flops = np.divide(ops.flops[i, b], work, out=out["flops"])
            if i in flops_only and not (times or totals):
                if work_scale is not None and i in expert_rows:
                    flops *= work_scale
                continue
            weightless = i in weightless_rows
            weight = out["weight_bytes"]
            if weightless:
                if chip_ops is not None and "weight_bytes" in kept:
                    weight.fill(0.0)
            elif weight_ways is None:  # replicated: the whole weight on every chip
                np.copyto(weight, ops.weight_bytes[i, b])
            else:
                np.divide(ops.weight_bytes[i, b], weight_ways[b], out=weight)
            if residual_chip is not None and ("act_read_bytes", i) in residual:
                act_read = residual_chip
            else:
                act_read = np.divide(ops.act_read_bytes[i, b], work, out=out["act_read_bytes"])
            if residual_chip is not None and ("act_write_bytes", i) in residual:
                act_write = residual_chip
            else:
                act_write = np.divide(ops.act_write_bytes[i, b], work, out=out["act_write_bytes"])
            if weight_scale is not None and work_scale is not None and i in expert_rows:
                if not weightless:  # (zero stays zero: a finite factor)
                    weight *= weight_scale
                for array in (flops, act_read, act_write):
                    array *= work_scale
            # The slot's bytes in the order of OperatorCosts.bytes (weights, activations read and
            # written, KV read and written), kept as the per-chip ``bytes`` in the calibrated path.
            # (Not kept for the flops_only slots, which no reader of ``bytes`` asks for.)
            moved = memory if chip_bytes is None or i in flops_only else chip_bytes[i, b]
            if weightless:  # 0 + act_read is act_read
                np.add(act_read, act_write, out=moved)
            else:
                np.add(weight, act_read, out=moved)
                moved += act_write
            for name, rows in (("kv_read_bytes", kv_read_rows), ("kv_write_bytes", kv_write_rows)):
                if i in rows:  # (the row alone: operators.OperatorCosts.row)
                    moved += np.divide(ops.row(name, i)[b], kv_ways, out=out[name])
                elif chip_ops is not None and name in kept:
                    out[name].fill(0.0)
            if not (times or totals):
                continue
            np.divide(flops, peak_by_slot[i][b], out=compute)
            np.divide(moved, bandwidth, out=memory)
            if times:
                time = np.maximum(compute, memory, out=time_s[i, b] if time_all is None else time_all[:width])
                if layers is not None and i in ffn_rows:
                    # Other block slots run in every block (repeats = layers: a share of exactly 1).
                    time *= shares_of[ffn_rows[i]][b]
                if time_all is not None:
                    time_s[i, b] = time
            if not totals:
                continue
            repeats = ops.row("repeats", i)[b]
            block_compute_total += np.multiply(compute, repeats, out=compute)
            block_memory_total += np.multiply(memory, repeats, out=memory)
            if i in twin_terms:
                np.copyto(twin_terms[i][0][:width], compute)
                np.copyto(twin_terms[i][1][:width], memory)
    if chip_ops is not None:
        vars(chip_ops)["bytes"] = chip_bytes  # functools.cached_property's own slot
    if not totals:
        return time_s, None
    return time_s, RooflineTotals(
        compute_total.astype(np.float64, copy=False), memory_total.astype(np.float64, copy=False)
    )


def _shares_as(shares: ChipShares, dtype: np.dtype) -> ChipShares:
    """``shares`` with every ways array cast to ``dtype``, once per distinct array: arrays that
    were one object stay one (chip_roofline's twin slots compare them by identity). The weight
    ways are cast as they are read (partitioning.LazyWays: most are never expanded)."""
    cast: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # by id, the array kept (so is its id)

    def of(ways: np.ndarray) -> np.ndarray:
        if id(ways) not in cast:
            cast[id(ways)] = (ways, ways.astype(dtype, copy=False))
        return cast[id(ways)][1]

    def weight(i: int) -> np.ndarray | None:
        ways = shares.weight[i]
        return None if ways is None else of(ways)

    work = tuple(of(ways) for ways in shares.work)
    return ChipShares(work, LazyWays(len(shares.weight), weight), of(shares.kv))


def _shared_residual_rows(
    ops: OperatorCosts,
    shares: ChipShares,
    present: list[int],
    twins: Mapping[int, int],
    expert_rows: set[int],
    kept: Iterable[str],
) -> dict[tuple[str, int], None]:
    """:func:`chip_roofline`'s activation rows (by field and slot, in the order it reads them)
    that are the residual stream's bytes (OperatorCosts.residual_rows: copies of one array) split
    over one work array (the first such row's): their per-chip rows are all one quotient, which
    chip_roofline divides once per block and reads in place of each. Left out: twinned slots
    (copied whole), expert slots (scaled in place), fields ``chip_ops`` keeps (written per slot);
    {} where fewer than two rows would share the quotient."""
    rows: dict[tuple[str, int], None] = {}
    work = None
    for i in present:
        if i in twins or i in expert_rows:
            continue
        for name in ("act_read_bytes", "act_write_bytes"):
            if name in kept or i not in ops.residual_rows(name):
                continue
            if work is None:
                work = shares.work[i]
            if shares.work[i] is work:
                rows[(name, i)] = None
    return rows if len(rows) > 1 else {}


def _twin_slots(
    ops: OperatorCosts,
    shares: ChipShares,
    present: set[int],
    peak_by_slot: dict[int, np.ndarray] | None,
    totals: bool,
    groups: tuple[set[int] | frozenset[int], ...],
    ffn_rows: Mapping[int, tuple[str, ...]],
) -> dict[int, int]:
    """:func:`chip_roofline`'s slots whose per-chip numbers are an earlier slot's, by that slot:
    every cost row equal (OperatorCosts.same_rows: k_proj and v_proj, attn_add and mlp_add where
    built alike), split the same ways (the same work array, weight ways both replicated or equal),
    at the same peak (the same looked-up row), in the same special cases (``groups``: expert,
    weightless, KV, FFN, flops- and bytes-only slots) and, where the totals are summed, with equal
    repeats rows: the same operations on the same numbers, so the same results. In
    bench_estimate's 100,000 h100 deployments 2 of 16 present slots."""
    twins: dict[int, int] = {}
    for i, j in ops.same_rows().items():
        if not j < i or i not in present or j not in present or j in twins or shares.work[i] is not shares.work[j]:
            continue
        weight_i, weight_j = shares.weight[i], shares.weight[j]
        if weight_i is None or weight_j is None:
            if weight_i is not weight_j:
                continue
        elif weight_i is not weight_j and not np.array_equal(weight_i, weight_j):
            continue
        if peak_by_slot is not None and peak_by_slot[i] is not peak_by_slot[j]:
            continue
        if any((i in group) != (j in group) for group in groups) or ffn_rows.get(i) != ffn_rows.get(j):
            continue
        if totals:
            repeats_i, repeats_j = ops.row("repeats", i), ops.row("repeats", j)
            if repeats_i is not repeats_j and not np.array_equal(repeats_i, repeats_j):
                continue
        twins[i] = j
    return twins


class BlockedCosts:
    """The operator costs of ``configs`` (``operator_costs(configs, convention)``), left to be
    built ``COST_BLOCK_ROWS`` configurations at a time by the roofline that reads them
    (:meth:`roofline`): a block's (slots, rows) tables are read back while still in cache, where
    whole (slots, n) tables (17.6 MB each at 100,000 configurations) are written to memory and
    read back from it. Every cost is elementwise over configurations, so each one's numbers are
    those of the whole call (as estimate's chunks are). :func:`estimate` scores the roofline
    (no profile) with them; a calibrated path needs the whole :class:`OperatorCosts`. (With
    COST_BLOCK_ROWS at ESTIMATE_CHUNK_ROWS an estimate's call is one block, the whole tables:
    faster on the AMD EPYC VM, where a block's fixed calls cost more than the cache saves.)"""

    def __init__(self, configs: InferenceConfigs, convention: CountingConvention) -> None:
        self.configs, self.convention = configs, convention
        #: :func:`_live_activations` of the costs, filled by :meth:`roofline`.
        self.live_activations: np.ndarray | None = None

    def roofline(
        self,
        shares: ChipShares,
        hardware: HardwareSpec,
        expert_scale: tuple[np.ndarray, np.ndarray] | None,
        layers: np.ndarray | None,
        totals: bool,
    ) -> tuple[np.ndarray, RooflineTotals | None, frozenset[int]]:
        """:func:`chip_roofline`'s times and totals of the costs (its arguments but the costs),
        block by block, with the slots no configuration has (``OperatorTimes.zero_slots``); the
        costs' :func:`_live_activations` kept in :attr:`live_activations`."""
        c = self.configs
        n = len(c)
        blocks = block_slices(n, COST_BLOCK_ROWS)
        if len(blocks) <= 1:  # one block: the whole costs
            ops = operator_costs(c, self.convention, unread_rows=False, dtype=ROOFLINE_DTYPE)
            # (The times as float64 whatever the arithmetic's type: chip_roofline casts each
            # slot's block into them.)
            time_s, sums = chip_roofline(
                ops, shares, hardware, expert_scale, layers, totals=totals, time_out=np.empty(ops.flops.shape)
            )
            self.live_activations = _live_activations(ops).astype(np.float64, copy=False)
            zero_slots = frozenset(i for i in range(len(time_s)) if not ops.present[i].any())
            return time_s, sums, zero_slots
        time_s = np.empty((len(OPERATOR_NAMES), n))
        compute_s, memory_s, live = np.empty(n), np.empty(n), np.empty(n)
        somewhere = np.zeros(len(OPERATOR_NAMES), dtype=bool)  # slots some configuration has
        for rows in blocks:
            ops = operator_costs(c.take(rows), self.convention, unread_rows=False, dtype=ROOFLINE_DTYPE)
            # A slot absent from this block but present in another: zero costs, so (0 / ways,
            # max(0 / peak, 0 / bandwidth)) +0.0 times and +0.0 added to the totals, which is
            # what chip_roofline gives a slot absent from every configuration of its call.
            _, block_sums = chip_roofline(
                ops,
                shares_of_rows(shares, rows),
                hardware,
                None if expert_scale is None else (expert_scale[0][rows], expert_scale[1][rows]),
                None if layers is None else layers[rows],
                totals=totals,
                time_out=time_s[:, rows],
            )
            if block_sums is not None:
                compute_s[rows], memory_s[rows] = block_sums.compute_s, block_sums.memory_s
            live[rows] = _live_activations(ops)
            somewhere |= ops.present.any(axis=1)
        self.live_activations = live
        sums = RooflineTotals(compute_s, memory_s) if totals else None
        return time_s, sums, frozenset(int(i) for i in np.flatnonzero(~somewhere))


#: The float type of the pure roofline's operator tables and per-chip arithmetic (BlockedCosts:
#: ``estimate`` without a profile; the calibrated and serving paths stay float64). Its inputs
#: are cast once where they enter (operator_costs' sizes, chip_roofline's ways, peaks and
#: bandwidth), every constant inside kept in the tables' type (Python floats, not numpy float64
#: scalars, which would promote: NEP 50), and what leaves is float64: the slots' times (each
#: slot's block cast while in cache), the totals (summed in float32) and the live activations.
#: Why: the operator tables are 4 x 22 x 400 KB a phase at 100,000 configurations in float32
#: against 800 KB, and a SIMD register holds twice as many float32 lanes: bench_estimate's 100,000-row draw,
#: float64 and float32 alternated in one process (Zen 4 AMD EPYC VM, docs/benchmarks.md round 17),
#: operator_costs + chip_roofline ~44 -> ~32 ms an estimate, the estimate ~1.1x faster.
#: Precision: float32's 24-bit mantissa rounds at ~6e-8 relative, a slot's chain of ~8
#: operations and the float32 sums over slots to ~6e-7 here, against the model's 5-25% error; FLOPs
#: (up to ~1e20) and bytes are far inside its range (3.4e38) and its smallest normal (1.2e-38)
#: far under any time; the sizes it reads (widths, heads, layers, chips, and tokens a
#: configuration: up to 2^23 in bench_estimate's draw) are whole numbers exact in float32 under
#: 2^24, larger ones rounding like any product, and the stage's decisions (absent slots,
#: formats, 16-bit classes) read codes, booleans and the float64 configurations. The memory's
#: fit compares in float64, its live activations carrying the tables' rounding. Against float64
#: (bench/guard_estimate_outputs.py check --rtol 1e-5): every float within 7e-7 but
#: memory.max_context_tokens, a floor of ~1e4-1e6 tokens one token apart in ~0.05% of
#: configurations (its argument within ~1e-7 of a whole number); no boolean (fits) flipped. A
#: latency and its memory or compute term, summed apart, round apart by ~1e-7. float64 here
#: gives the float64 roofline bit for bit.
ROOFLINE_DTYPE: type[np.floating] = np.float32


#: Configurations per block of :class:`BlockedCosts` (operator_costs and chip_roofline of a
#: block, one after the other). bench_estimate's 100,000 deployments (h100-sxm, seed 0), both
#: phases' operator_costs, chip_roofline and _live_activations replayed (docs/benchmarks.md,
#: round 13, the Intel Xeon VM with 2 MiB of L2; medians of 5, 3 rounds, the other core busy):
#: whole 76-79 ms, blocks of 8,192 69-70, 12,500 68-70, 16,384 69, 20,000 70-71, 33,334 71. On
#: the AMD EPYC VM (512 KiB of L2 a core by getconf) the whole tables are faster: replayed whole
#: 73-75 ms against 82-84 at 16,384 (round 14), whole estimates 143-149 ms against 152-157
#: (round 15): a block's ~1 ms of fixed calls outweighs what its tables in cache save there. An
#: estimate's call holds at most ESTIMATE_CHUNK_ROWS rows a phase, so this is one block: the
#: whole tables, as the calibrated path builds them (docs/benchmarks.md, round 15).
COST_BLOCK_ROWS = 100_000


def block_slices(n: int, rows: int) -> list[slice]:
    """``n`` configurations in blocks of ``rows`` (at least 1), the last block taking the rest,
    and the rest of fewer than ``rows // 2`` joined to the block before it (so that block has
    up to 1.5 ``rows``): a block costs a fixed ~1.2 ms of Python and NumPy calls in
    operator_costs and chip_roofline whatever its rows (bench_estimate's blocks of 64 rows,
    AMD EPYC, docs/benchmarks.md round 14), and 100,000 configurations in blocks of 16,384 left
    a seventh block of 1,696. Every cost is elementwise over configurations, so each one's
    numbers are the same whatever the blocks."""
    rows = max(1, rows)
    count = -(-n // rows)
    if count > 1 and n - (count - 1) * rows < rows // 2:
        count -= 1
    return [slice(k * rows, n if k == count - 1 else (k + 1) * rows) for k in range(count)]


def shares_of_rows(shares: ChipShares, rows: slice) -> ChipShares:
    """``shares`` of the configurations ``rows``: each array's view of those rows, one view per
    array (slots that share an array share its view: chip_roofline compares them by identity),
    the weight ways expanded only where read (as ``shares.weight`` expands them)."""
    views: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def view(ways: np.ndarray) -> np.ndarray:
        if id(ways) not in views:  # (the whole array kept beside its view: its id stays its own)
            views[id(ways)] = (ways, ways[rows])
        return views[id(ways)][1]

    def weight_of_rows(i: int) -> np.ndarray | None:
        ways = shares.weight[i]
        return None if ways is None else view(ways)

    return ChipShares(
        tuple(view(w) for w in shares.work), LazyWays(len(shares.weight), weight_of_rows), view(shares.kv)
    )


def operator_times(
    d: Deployments,
    phase: str,
    configs: InferenceConfigs,
    ops: OperatorCosts | BlockedCosts,
    tokens_per_sequence: np.ndarray,
    network: Network,
    profile: CalibrationProfile | None,
    plan: ShardingPlan,
    kv_ways: np.ndarray,
    expert_scale: tuple[np.ndarray, np.ndarray] | None = None,
    shapes: Shapes | None = None,
    data_parallel: np.ndarray | None = None,
    expert_parallel: np.ndarray | None = None,
    cuda_graph: bool | None = None,
) -> tuple[OperatorTimes, RooflineTotals]:
    """Per-operator times of one forward pass of ``phase``'s layout (and the roofline's totals).
    Without a profile an operator's time is its roofline; with one, its calibrated kernel time
    and the engine's fixed cost per layer and per step. ``expert_scale``: (weight factor, work
    factor) of the expert slots under data and expert parallelism (:func:`expert_scale`).
    ``shapes``: ``Shapes.of(configs, tokens_per_sequence)``, when the caller has it.
    ``data_parallel``: the DP ranks sharing the MoE layers of ``d`` (one rank's view; None: 1),
    for the calibrated experts (calibrated_times._expert_gemm_times_s); ``expert_parallel``
    likewise (None: 1), whose busiest rank's experts they load. ``cuda_graph``: as
    :func:`_operator_times`."""
    times, totals = _operator_times(
        d, phase, configs, ops, tokens_per_sequence, network, profile, plan, kv_ways, expert_scale, shapes, True,
        data_parallel=data_parallel, expert_parallel=expert_parallel, cuda_graph=cuda_graph,
    )  # fmt: skip
    if totals is None:  # _operator_times sums them when asked: never
        raise RuntimeError("the roofline totals were not summed")
    return times, totals


def dense_operator_times(
    d: Deployments,
    phase: str,
    configs: InferenceConfigs,
    ops: OperatorCosts,
    tokens_per_sequence: np.ndarray,
    network: Network,
    profile: CalibrationProfile | None,
    plan: ShardingPlan,
    kv_ways: np.ndarray,
    expert_scale: tuple[np.ndarray, np.ndarray] | None = None,
    data_parallel: np.ndarray | None = None,
    expert_parallel: np.ndarray | None = None,
    cuda_graph: bool | None = None,
) -> OperatorTimes:
    """:func:`operator_times` without the roofline's totals, for a serving iteration's dense view
    (cost_models.iteration), which reads only the slots' times and the collectives. With
    ``operator_costs(..., slots="dense")`` the attention and lm_head slots are absent, so no
    kernel is timed for them (their times are zero); every other number is the same.
    ``expert_scale``, ``data_parallel``, ``expert_parallel``: as :func:`operator_times` (one DP
    rank's view of a deployment whose DP ranks share the MoE layers); ``cuda_graph``: as
    :func:`_operator_times`."""
    times, _ = _operator_times(
        d, phase, configs, ops, tokens_per_sequence, network, profile, plan, kv_ways, expert_scale, None, False,
        data_parallel=data_parallel, expert_parallel=expert_parallel, cuda_graph=cuda_graph,
    )  # fmt: skip
    return times


def attention_operator_times(
    d: Deployments,
    phase: str,
    configs: InferenceConfigs,
    ops: OperatorCosts,
    network: Network,
    profile: CalibrationProfile | None,
    plan: ShardingPlan,
    kv_ways: np.ndarray,
    cuda_graph: bool | None = None,
) -> np.ndarray:
    """The per-operator times (``(slots, n)``) of :func:`operator_times` alone, without the roofline's
    totals or the block's collectives, for a serving iteration's attention views where they are
    passes of the per-operator model (no profile, or unfused attention; cost_models.iteration),
    which read only the attention and lm_head slots: with ``operator_costs(..., slots="attention")``
    no other slot is timed; those slots' numbers are the same. ``cuda_graph``: as
    :func:`_operator_times`."""
    times, _ = _operator_times(
        d, phase, configs, ops, np.ones(len(d)), network, profile, plan, kv_ways, None, None, False, False,
        cuda_graph=cuda_graph,
    )  # fmt: skip
    return times.op_time_s


def _operator_times(
    d: Deployments,
    phase: str,
    configs: InferenceConfigs,
    ops: OperatorCosts | BlockedCosts,
    tokens_per_sequence: np.ndarray,
    network: Network,
    profile: CalibrationProfile | None,
    plan: ShardingPlan,
    kv_ways: np.ndarray,
    expert_scale: tuple[np.ndarray, np.ndarray] | None,
    shapes: Shapes | None,
    totals_wanted: bool,
    collectives_wanted: bool = True,
    data_parallel: np.ndarray | None = None,
    expert_parallel: np.ndarray | None = None,
    cuda_graph: bool | None = None,
) -> tuple[OperatorTimes, RooflineTotals | None]:
    """:func:`operator_times`; ``totals_wanted`` False: no totals (None); ``collectives_wanted``
    False: the block's collectives are not scored (zero). ``cuda_graph``: whether the pass is a
    CUDA-graph replay (its GEMMs without the per-call host floor, the engine's graph all-reduce)
    or runs eager (the profile's floors, the eager all-reduce: calibration.CudaGraphs); None:
    a decode step replays, a prefill runs eager."""
    if cuda_graph is None:
        cuda_graph = phase == "decode"
    if cuda_graph:  # a CUDA-graph replay under vLLM and SGLang: no per-call host floor
        profile = cuda_graph_replay(profile)
    else:  # vLLM's and SGLang's eager all-reduce where the profile measured it
        network = network.eager()
    layouts, batch_sharded = d.ffn_layout(phase), d.batch_sharded_attention(phase)
    # The mesh's chips: Deployments.tensor_parallel, kept by ``d`` (estimate's d.chips reads it),
    # the product of the same whole numbers as group_size's (exact), so the same numbers; for
    # float64 meshes, group_size's type (make_deployments makes them so).
    chips = d.tensor_parallel if d.mesh.dtype == np.float64 and d.mesh.ndim == 2 else None
    shares = chip_shares(configs, d.mesh, layouts, batch_sharded, plan, kv_ways, chips)
    # A pass runs ``layers`` blocks; in an MoE model a slot's time counts in the share of the
    # blocks it runs in (the dense FFN in the first dense_layers, the experts in the rest).
    moe = np.any(configs.moe_layers > 0)
    layer_overhead: np.ndarray | float
    if isinstance(ops, BlockedCosts):
        if profile is not None:  # (estimate builds them only for the roofline)
            raise TypeError("a calibrated estimate needs the whole operator costs")
        op_time, totals, zero_slots = ops.roofline(
            shares, d.hardware, expert_scale, configs.layers if moe else None, totals_wanted
        )
        layer_overhead, step_overhead = 0.0, 0.0
    elif profile is None:
        op_time, totals = chip_roofline(
            ops, shares, d.hardware, expert_scale, configs.layers if moe else None, totals=totals_wanted
        )
        layer_overhead, step_overhead = 0.0, 0.0
        zero_slots = frozenset(i for i in range(len(op_time)) if not ops.present[i].any())  # (0.0: chip_roofline)
    else:
        # calibrated_operator_times reads the per-chip FLOPs, the summed bytes (chip_roofline keeps
        # them as ``bytes``) and, for MLA's q, k and v, the weight bytes (_mla_gemm_shapes): the
        # other per-chip arrays (activations and KV read and written) are not stored, an empty
        # (0, n) array stands in for each (reading one fails loudly).
        any_mla = bool(np.any(configs.mla))
        kept = frozenset({"flops", "weight_bytes"} if any_mla else {"flops"})
        n = len(configs)
        chip_ops = ops.replaced(
            **{name: np.empty_like(ops.flops) if name in kept else np.empty((0, n)) for name in _COST_ARRAYS}
        )
        # The calibrated GEMMs read only their per-chip FLOPs (and MLA's q, k and v their weight
        # bytes: _mla_gemm_shapes): without the totals the rest of those rows is not computed,
        # with them their bytes are summed from a scratch buffer, not stored in ``bytes`` (rows
        # that only calibrated_times' elementwise and unfused attention slots read): ~8 of ~20
        # (n,) rows written per slot pass fewer.
        gemm_flops_only = _GEMM_SLOTS - (_MLA_SLOTS if any_mla else set())
        _, totals = chip_roofline(
            ops,
            shares,
            d.hardware,
            expert_scale,
            chip_ops=chip_ops,
            times=False,
            totals=totals_wanted,
            flops_only=gemm_flops_only,
            kept=kept,
            bytes_only=_ELEMENTWISE_SLOTS,
        )
        # The plan, not its (m, n, k): the calibrated GEMMs derive those block by block, in cache.
        # (data_parallel by keyword, where DP shares the experts: calibrated_times's own default.)
        by_dp = {} if data_parallel is None else {"data_parallel": data_parallel}
        if expert_parallel is not None:
            by_dp["expert_parallel"] = expert_parallel
        op_time = calibrated_operator_times(
            chip_ops, configs, plan, d.chips, batch_sharded, d.hardware, profile, **by_dp
        )
        layer_overhead, step_overhead = profile.per_layer_overhead_s, profile.per_step_overhead_s
        zero_slots = frozenset()
        apart = ops.repeats_apart() if moe else None
        if apart is not None and np.all(configs.layers > 0):
            # op_time * (repeats / layers), the lm_head's share 1, row by row in place (op_time is
            # this call's own array): a row whose repeats are layers has a share of exactly 1
            # (layers > 0), x * 1.0 is x, so only the FFN rows are multiplied.
            for i, repeats in apart.items():
                if i != LM_HEAD:
                    op_time[i] *= np.divide(repeats, configs.layers)
        elif moe:
            share = ops.repeats / configs.layers
            share[LM_HEAD] = 1.0
            op_time = op_time * share
    if not collectives_wanted:
        return OperatorTimes(op_time, np.zeros(len(d)), layer_overhead, step_overhead, zero_slots=zero_slots), totals
    shapes = shapes if shapes is not None else Shapes.of(configs, tokens_per_sequence)
    critical: np.ndarray | float = 0.0
    if network.collective_einsums:
        # A ring looped inside a matmul hides behind that matmul alone; an unfused collective
        # waits for it and the next matmul waits for the collective (partitioning.W_IN_SLOTS).
        comm = torus_layer_comm_s(network, layouts, shapes, d.mesh, configs.parallel_block, batch_sharded)
        w_in, w_out = slot_sum(op_time, W_IN_SLOTS, zero_slots), slot_sum(op_time, W_OUT_SLOTS, zero_slots)
        critical = comm["unfused"] + np.maximum(comm["w_in"] - w_in, 0.0) + np.maximum(comm["w_out"] - w_out, 0.0)
        comm_block = comm["hidden"] + comm["w_in"] + comm["w_out"] + comm["unfused"]
    else:
        comm_block = layer_comm_time_s(network, layouts, shapes, d.mesh, configs.parallel_block, batch_sharded)
        if network.engine_collectives:
            # The GPU engines' collectives are on the block's critical path: the next matmul
            # waits for the all-reduced sum (vLLM tensor_model_parallel_all_reduce, TensorRT-LLM
            # AllReduce: a decode step's collectives run between its GEMMs, none looped inside
            # one). Hidden behind the block (max of the two), TP8 Llama-3.1-8B decode at batch 8
            # charged 50 us of collectives per block and paid none of it (about 80 us of work).
            critical = comm_block
    if profile is not None and profile.collective_step_s > 0:
        # Each synchronized step of the block's collectives costs a fixed latency that the
        # block's work does not hide (a step waits for its neighbour): added to the block like
        # the engine's fixed cost per layer, and growing with the rings' lengths, so with the
        # slice (Pope et al.'s Figure 6: the decode step barely shrinks from 64 to 256 chips).
        steps = layer_collective_steps(network, layouts, shapes, d.mesh, configs.parallel_block, batch_sharded)
        layer_overhead = layer_overhead + profile.collective_step_s * steps
    return OperatorTimes(op_time, comm_block, layer_overhead, step_overhead, critical, zero_slots), totals


#: The weight matmuls' slots (the calibrated path times them as GEMMs, from their FLOPs), and
#: those of them MLA reshapes from their weight bytes too (calibrated_times._mla_gemm_shapes).
_GEMM_SLOTS = frozenset(OP[op] for op in GEMM_AXES)
_MLA_SLOTS = frozenset(OP[op] for op in ("q_proj", "k_proj", "v_proj"))
#: The slots calibrated_times times as elementwise kernels, from their bytes alone (the router
#: also reads its FLOPs, the bound its matmul's time never beats: calibrated_operator_times).
_ELEMENTWISE_SLOTS = frozenset(OP[op] for op in ELEMENTWISE_OPS if op != "router")
#: The per-chip cost arrays of an :class:`OperatorCosts` (what :func:`chip_roofline` fills).
#: Configurations per block of :func:`chip_roofline`'s slot-by-slot passes: ~15 (rows,) buffers
#: of 128 KiB stay within a 2 MiB L2. On the 2-vCPU Xeon (docs/benchmarks.md, round 5) the
#: roofline path's chip_roofline took 56 ms per 100,000 configurations unblocked, 46 at 16,384,
#: 47 at 8,192, 50 at 4,096 (median of 5); the calibrated path (which writes whole chip_ops
#: arrays) 86-90 ms either way.
ROOFLINE_BLOCK_ROWS = 16_384
_COST_ARRAYS = ("flops", "weight_bytes", "act_read_bytes", "act_write_bytes", "kv_read_bytes", "kv_write_bytes")


def forward_pass_s(
    t: OperatorTimes, layers: np.ndarray, overlap: Overlap, extra_block_s: np.ndarray | float = 0.0
) -> np.ndarray:
    """layers x (block time combined with the block's collectives) + lm_head + the step's fixed
    cost. ``extra_block_s``: more per-block work in the same pass (a mixed serving iteration's
    attention, scored at other shapes than its projections)."""
    op, zero = t.op_time_s, t.zero_slots
    before, after = slot_sum(op, range(LM_HEAD), zero), slot_sum(op, range(LM_HEAD + 1, len(op)), zero)
    block = _plus(_plus(before + after, t.layer_overhead_s), extra_block_s)
    combined = combine_block_s(block, t.comm_block_s, t.comm_critical_s, overlap)
    return _plus(layers * combined + op[LM_HEAD], t.step_overhead_s)


def combine_block_s(
    block_s: np.ndarray, comm_s: np.ndarray, critical_s: np.ndarray | float, overlap: Overlap
) -> np.ndarray:
    """A block's work combined with its collectives: ``overlapped``, the work plus the
    collectives on its critical path (``critical_s``, part of ``comm_s``), or all of the
    collectives, whichever is longer (they share the links: one cannot hide behind another);
    ``added``, the work plus every collective."""
    if overlap != "overlapped":
        return block_s + comm_s
    return np.maximum(_plus(block_s, critical_s), comm_s)


def _phase_times(
    d: Deployments,
    phase: str,
    configs: InferenceConfigs,
    ops: OperatorCosts | BlockedCosts,
    tokens_per_sequence: np.ndarray,
    network: Network,
    overlap: Overlap,
    profile: CalibrationProfile | None,
    plan: ShardingPlan,
    kv_ways: np.ndarray,
    parallel: _Parallel,
    shapes: Shapes | None = None,
    cuda_graph: bool | None = None,
) -> _PhaseTimes:
    """One step: each pipeline stage's forward pass (its layers x (block time combined with the
    block's collectives, plus the MoE dispatch) + lm_head + the engine's fixed cost per step under
    a profile) for one micro-batch of one DP rank, run through the pipeline (:func:`pipeline_s`)."""
    # (DP ranks share the MoE layers: the calibrated experts load what all their tokens wake.)
    dp = None if np.all(parallel.data_parallel == 1) else parallel.data_parallel
    ep = None if np.all(parallel.expert_parallel == 1) else parallel.expert_parallel  # (the busiest EP rank's)
    t, roofline = operator_times(
        d, phase, configs, ops, tokens_per_sequence, network, profile, plan, kv_ways, parallel.expert_scale, shapes, dp,
        expert_parallel=ep, cuda_graph=cuda_graph,
    )  # fmt: skip
    dispatch_block: np.ndarray | float = 0.0
    comm_block = t.comm_block_s
    if np.any(configs.moe_layers > 0):  # else no dispatch: zero, and adding zero changes nothing
        dispatch = moe_dispatch_s(network, parallel, configs, tokens_per_sequence)
        # The dispatch runs in the MoE blocks only: spread over the stage's blocks as their share.
        dispatch_block = dispatch * np.divide(
            configs.moe_layers, configs.layers, out=np.zeros(len(configs)), where=configs.layers > 0
        )
        comm_block = comm_block + dispatch_block
    # Dispatch before and combine after the expert GEMMs depend on them: added to the block's
    # work, never hidden behind it (two-batch overlap, which would, is not modelled).
    stage_s = forward_pass_s(t, configs.layers, overlap, dispatch_block)
    head_s = _plus(t.op_time_s[LM_HEAD], t.step_overhead_s)  # the last stage's alone
    m, pp = parallel.micro_batches, parallel.pipeline_parallel
    if np.all(pp == 1.0) and np.all(m == 1.0):
        # One stage and one micro-batch everywhere: nothing is sent (stage_send_s's zeros, whose
        # (PP - 1) x 0.0 added leaves each sum as it is), m + PP - 1 is 1.0 and 1.0 x t is t, so
        # those passes are left out (the same numbers).
        return _PhaseTimes(
            latency_s=(stage_s - head_s) + head_s,
            compute_s=roofline.compute_s,
            memory_s=roofline.memory_s,
            comm_s=configs.layers * comm_block,
        )
    send = stage_send_s(d.hardware, parallel, configs, tokens_per_sequence)
    return _PhaseTimes(
        latency_s=pipeline_s(stage_s - head_s, head_s, send, pp, m, steady=phase == "decode"),
        compute_s=m * roofline.compute_s,
        memory_s=m * roofline.memory_s,
        comm_s=m * configs.layers * comm_block + (pp - 1.0) * send,
    )


def _plus(seconds: np.ndarray, more: np.ndarray | float) -> np.ndarray:
    """``seconds + more``, or ``seconds`` itself where ``more`` is the scalar 0 (the roofline's
    fixed costs): x + 0.0 is x for the non-negative seconds here, so the pass is left out."""
    if not isinstance(more, np.ndarray) and more == 0.0:
        return seconds
    return seconds + more


def pipeline_s(
    blocks_s: np.ndarray,
    head_s: np.ndarray,
    send_s: np.ndarray,
    pipeline_parallel,
    micro_batches,
    steady: bool = False,
) -> np.ndarray:
    """One step of a pipeline of PP stages over m micro-batches. Each stage runs its blocks
    (``blocks_s`` per micro-batch); the last also the lm_head and the step's fixed cost
    (``head_s``), so it paces the pipeline.

    A prefill (``steady`` False) fills and drains it (GPipe, Huang et al. 2019; the schedule of
    Megatron-LM, Narayanan et al. 2021, section 2.2): the first micro-batch reaches the last stage
    after PP - 1 stages and PP - 1 sends, then it runs all m; with ``head_s`` 0 this is GPipe's
    (m + PP - 1) stage times, whose idle share (the bubble) is (PP - 1) / (m + PP - 1).

    A decode step (``steady``) never drains: a micro-batch's next token needs only its own last
    one, so the m micro-batches circulate through the stages, each stage taking the next one as
    soon as it is free (vLLM runs PP virtual engines, one batch each, in flight at once;
    TensorRT-LLM's executor keeps PP micro-batches in flight). In such a closed cyclic pipeline
    with fixed service times, each micro-batch advances one token per max(its round trip, m x the
    busiest stage's time): the round trip is PP x blocks + head + (PP - 1) sends (the sends take
    no stage), the busiest stage the last, blocks + head per micro-batch. At m 1 that is the
    round trip, the fill-and-drain value; beyond it, fill-and-drain charged (m + PP - 1) stage
    times where the stages are busy m of them at most (PP 2, m 2: 3 against 2, 1.5x; PP 4, m 4:
    7 against 4, 1.75x), so a study's decode fronts never held a micro-batched pipeline."""
    pp, m = pipeline_parallel, micro_batches
    if steady:
        return np.maximum(m * (blocks_s + head_s), pp * blocks_s + head_s + (pp - 1.0) * send_s)
    return (m + pp - 1.0) * blocks_s + m * head_s + (pp - 1.0) * send_s


@dataclass(frozen=True)
class _Parallel:
    """The engine degrees of n deployments, as float arrays, and what they do to the expert slots."""

    tensor_parallel: np.ndarray
    pipeline_parallel: np.ndarray
    expert_parallel: np.ndarray
    data_parallel: np.ndarray
    micro_batches: np.ndarray
    chips: np.ndarray
    expert_scale: tuple[np.ndarray, np.ndarray] | None

    @classmethod
    def of(cls, d: Deployments, stage: InferenceConfigs, tokens_per_sequence: np.ndarray) -> _Parallel:
        scale = expert_scale(stage, d.data_parallel, d.expert_parallel, tokens_per_sequence)
        return cls(
            d.tensor_parallel,
            d.pipeline_parallel,
            d.expert_parallel,
            d.data_parallel,
            d.micro_batches,
            d.chips,
            scale,
        )


def expert_scale(
    stage: InferenceConfigs, data_parallel: np.ndarray, expert_parallel: np.ndarray, tokens_per_sequence: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """(weight factor, work factor) of the expert slots of one DP rank's per-chip costs, or None
    where nothing changes (no DP, no EP).

    The stage's DP ranks share its MoE layers: whatever EP (dividing TP x DP), each chip holds
    1/(TP x DP) of the routed experts (experts / EP whole experts, each split TP x DP / EP ways)
    and multiplies 1/(TP x DP) of the stage's routed tokens. A DP rank's costs (computed at its
    own N tokens on its TP chips) already give the FLOPs; the weights loaded are those of the
    experts the whole stage's DP x N tokens wake (moe.experts_woken), split DP times further; the
    shared experts are tensor-parallel within the rank. Under EP the busiest rank sets the pace:
    its kernels' work by moe.EP_IMBALANCE, and the experts it loads are the busiest EP rank's
    woken experts (moe.busiest_rank_woken_factor: DeepSeek-V3 at EP 8 and 8 tokens in all, 1.48x
    the mean rank's), not the mean's."""
    if np.all((data_parallel == 1) & (expert_parallel == 1)):
        return None
    weight = np.ones(len(stage))
    # DP (the stage's tokens wake the experts) and EP (the busiest rank's) change the weights.
    rows = np.flatnonzero(((data_parallel > 1) | (expert_parallel > 1)) & (stage.experts > 0))
    if len(rows):
        tokens = (stage.batch * np.broadcast_to(tokens_per_sequence, weight.shape))[rows]
        e, k, routed = stage.experts[rows], stage.experts_per_token[rows], stage.expert_d_ff[rows]
        dp, shared_width = data_parallel[rows], stage.shared_d_ff[rows]
        own = experts_woken(tokens, e, k) * routed + shared_width
        busiest = busiest_rank_woken_factor(tokens * dp, e, k, expert_parallel[rows])
        shared = experts_woken(tokens * dp, e, k) * busiest * routed / dp + shared_width
        weight[rows] = np.divide(shared, own, out=np.ones_like(own), where=own > 0)
    work = np.where(expert_parallel > 1, EP_IMBALANCE, 1.0)
    return weight, work


def moe_dispatch_s(
    network: Network, parallel: _Parallel, stage: InferenceConfigs, tokens_per_sequence: np.ndarray
) -> np.ndarray:
    """Seconds per MoE block moving the routed tokens to the chips holding their experts and back.

    Placement: a stage's chips are numbered TP fastest, then DP, so an EP group is EP consecutive
    chips (inside one NVLink domain while it fits) and a DP group strides over the TP groups.
    EP = TP x DP with DP > 1: an all-to-all dispatch and an all-to-all combine over the EP group,
    each chip sending its 1/TP share of its DP rank's tokens, top-k copies of d_model activations
    each (moe.ep_dispatch_bytes_per_chip; the collective's (K-1)/K leaves out what stays local).
    EP > 1 with DP 1: nothing more than expert TP's reduction. Every chip of the one TP group
    holds all the tokens already; it runs its own experts on those routed to them and the TP
    all-reduce after the FFN (charged with the block's collectives) sums the experts' outputs:
    vLLM's dispatch/combine kernels run only where ``use_all2all_kernels``, dp_size > 1 and EP
    (vllm/model_executor/layers/fused_moe/config.py, FusedMoEParallelConfig); TensorRT-LLM and
    SGLang (without DP attention) reduce the same way. Charged two all-to-alls of each chip's 1/TP
    of the tokens, DeepSeek-V3 fp8 on 8 H200s at TP 8 EP 8 took 4.54 s to prefill 64 x 2048
    tokens against 3.94 s at EP 1 (h200-vllm). EP 1
    with DP > 1: the experts are tensor-parallel over all TP x DP chips (vLLM without
    --enable-expert-parallel), so each chip all-gathers the DP ranks' tokens before the experts
    and reduce-scatters the outputs after. 1 < EP < TP x DP with DP > 1 (SGLang's --ep-size below
    its TP x DP: each expert's inter_size split TP x DP / EP ways, those slices on chips of every
    DP rank) is the same gather and reduce-scatter: a chip's slices serve the tokens of every DP
    rank, which SGLang's DP attention gathers over the whole group (dp_gather / dp_scatter) before
    the experts, not an all-to-all within its EP group of EP chips (Qwen3-235B at TP 8, DP 8, EP 2,
    64 sequences on H200s: 4.1 us per MoE block charged where EP 1 and EP 64 cost 88 and 100 us)."""
    tp, dp, ep = parallel.tensor_parallel, parallel.data_parallel, parallel.expert_parallel
    moe = stage.moe_layers > 0
    out = np.zeros(len(stage))
    rank_tokens = stage.batch * np.broadcast_to(tokens_per_sequence, out.shape)
    # The dispatch moves the experts' inputs, in the activation format (DeepEP and vLLM's
    # all-to-all backends quantize them to fp8 before sending under fp8 activations); the combine
    # and the DP gather / reduce-scatter move 16-bit hidden states and expert outputs
    # (partitioning.collective_act_bytes). At 16-bit activations the two all-to-alls are alike.
    act_bytes = lookup(BYTES_PER_ELEMENT, stage.act_dtype)
    wide_bytes = collective_act_bytes(stage.act_dtype)
    # (EP below TP x DP with DP > 1: the DP gather below, as with EP 1.)
    gathered_by_dp = moe & (dp > 1) & (ep < tp * dp)
    # (EP with DP 1: no dispatch, the TP all-reduce sums the experts' outputs.)
    rows = np.flatnonzero(moe & (ep > 1) & (dp > 1) & ~gathered_by_dp)  # each collective only on the rows that run it
    if len(rows):
        tokens, top_k, width = rank_tokens[rows] / tp[rows], stage.experts_per_token[rows], stage.d_model[rows]
        dispatch = ep_dispatch_bytes_per_chip(tokens, top_k, width, act_bytes[rows])
        ones = np.ones(len(rows))
        ep_mesh = np.stack([ones, ones, ep[rows]], axis=1)
        dispatch_s = network.collective_time_s("all_to_all", dispatch, ep_mesh, "z")
        if np.array_equal(act_bytes[rows], wide_bytes[rows]):
            out[rows] = 2.0 * dispatch_s
        else:
            combine = ep_dispatch_bytes_per_chip(tokens, top_k, width, wide_bytes[rows])
            out[rows] = dispatch_s + network.collective_time_s("all_to_all", combine, ep_mesh, "z")
    rows = np.flatnonzero(gathered_by_dp)
    if len(rows):
        gathered = rank_tokens[rows] * dp[rows] * stage.d_model[rows] * wide_bytes[rows]
        dp_mesh = np.stack([np.ones(len(rows)), dp[rows], tp[rows]], axis=1)
        out[rows] = network.collective_time_s("all_gather", gathered, dp_mesh, "y") + network.collective_time_s(
            "reduce_scatter", gathered, dp_mesh, "y"
        )
    return out


def stage_send_s(
    hardware: HardwareSpec, parallel: _Parallel, stage: InferenceConfigs, tokens_per_sequence: np.ndarray
) -> np.ndarray:
    """Seconds to send one micro-batch's activations (tokens x d_model) from a pipeline stage to
    the next: each of a DP rank's TP chips sends a 1/TP slice (Megatron-LM's scatter/gather,
    Narayanan et al. 2021, section 4.1). Stages are placed last, across nodes: a send crosses the
    inter-domain network once the deployment spans more than one domain (the slowest boundary
    paces the pipeline)."""
    staged = parallel.pipeline_parallel > 1
    if staged.any():
        tokens = stage.batch * tokens_per_sequence
        # The residual stream crosses a stage boundary in 16 bits whatever the matmuls' inputs
        # (partitioning.collective_act_bytes).
        data = tokens * stage.d_model * collective_act_bytes(stage.act_dtype) / parallel.tensor_parallel
        data = np.where(staged, data, 0.0)
    else:  # a single stage sends nothing (np.where's zeros)
        data = np.zeros(len(stage))
    return point_to_point_time_s(hardware, data, parallel.chips > domain_size(hardware))


def sharding_plans(
    d: Deployments,
    configs: InferenceConfigs,
    phases: tuple[str, ...] = PHASE_NAMES,
    shape_classes: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, ShardingPlan]:
    """Each phase's sharding plan (of ``phases``), computed once per distinct (model, KV heads,
    mesh, layout). ``shape_classes``: :func:`plan_shape_classes` of ``d`` and ``configs``, where
    the caller has them."""
    shape = _plan_shape(d, configs)
    by_layout = _plans_by_layout(d, configs, phases, shape, shape_classes)
    if by_layout is not None:
        return by_layout
    # One sort of n keys for the phases, then each phase's distinct shapes among those few rows.
    both, inverse = distinct_rows(*shape, *(d.ffn_layout(phase) for phase in phases))
    plans = {}
    for phase in phases:
        layouts = d.ffn_layout(phase)
        if len(phases) == 1:  # the sort's rows are the phase's distinct shapes
            first, within = np.arange(len(both)), None
        else:
            first, within = distinct_rows(*(column[both] for column in (*shape, layouts)))
        rows = both[first]
        plan = sharding_plan(configs.take(rows), d.mesh[rows], layouts[rows])
        plans[phase] = plan.take(inverse if within is None else within[inverse])
    return plans


def _plan_shape(d: Deployments, configs: InferenceConfigs) -> tuple[np.ndarray, ...]:
    """The columns a sharding plan reads besides the layout (its shape)."""
    return (d.model_index, d.kv_heads, d.mesh[:, 0], d.mesh[:, 1], d.mesh[:, 2], configs.layers)


def plan_shape_classes(d: Deployments, configs: InferenceConfigs) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse) of the distinct sharding-plan shapes of ``d`` (:func:`_plan_shape`), up to
    their order (distinct_rows_any_order)."""
    return distinct_rows_any_order(*_plan_shape(d, configs))


def mesh_classes_of_shapes(
    mesh: np.ndarray, shape_classes: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray] | None:
    """topology.mesh_classes of ``mesh`` (the deployments' (n, 3) meshes) from their distinct plan
    shapes (:func:`plan_shape_classes`, of which the mesh is three columns, so rows of one shape
    have one mesh): the distinct meshes among the few shapes' (bench_estimate's draw: 155 among
    1,240 of 100,000 rows), each row's through its shape's. (first, inverse) as mesh_classes
    gives them, up to the order of the distinct meshes; None where it would give None for the
    call's size or share of distinct meshes (distinct.MIN_ROWS, DISTINCT_MESH_SHARE). About 0.3
    against its 1.6 ms on the draw's 100,000 rows (AMD EPYC VM, docs/benchmarks.md, round 16)."""
    n = mesh.shape[0]
    if n < MIN_ROWS or mesh.ndim != 2 or mesh.shape[1] != 3:
        return None
    shape_rows, shape_id = shape_classes
    meshes = mesh.take(shape_rows, axis=0)
    first, inverse = distinct_rows(meshes[:, 0], meshes[:, 1], meshes[:, 2])  # (exact: a packed key or np.unique)
    if len(first) > DISTINCT_MESH_SHARE * n:
        return None
    return shape_rows.take(first), inverse.take(shape_id)


def _plans_by_layout(
    d: Deployments,
    configs: InferenceConfigs,
    phases: tuple[str, ...],
    shape: tuple[np.ndarray, ...],
    shape_classes: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, ShardingPlan] | None:
    """:func:`sharding_plans` from one sort of the shape columns alone (no layouts): the plan of
    each distinct shape in every layout the phases use, picked by each row's layout code (as
    _common_shape_work does). A plan is elementwise over configurations and reads only these
    columns, so each row's numbers are the same. None where a layout is not a code, or where
    shapes repeat too little for the plans of every used layout to be fewer than half the rows
    (the per-(shape, layout) sort then plans fewer)."""
    n_layouts = len(FFN_LAYOUTS)
    codes = [np.asarray(d.ffn_layout(phase)) for phase in phases]
    if any(c.dtype.kind not in "iu" or len(c) == 0 or c.min() < 0 or c.max() >= n_layouts for c in codes):
        return None
    used = np.flatnonzero(np.sum([np.bincount(c, minlength=n_layouts) for c in codes], axis=0))
    # (A plan reads only these columns.)
    shape_rows, shape_id = shape_classes if shape_classes is not None else distinct_rows_any_order(*shape)
    if len(shape_rows) * len(used) > len(codes[0]) // 2:
        return None
    position = np.zeros(n_layouts, dtype=np.int64)
    position[used] = np.arange(len(used))
    # Every (shape, used layout) row, each shape's layouts consecutive (its candidates found once).
    plan = sharding_plan(
        configs.take(shape_rows),
        d.mesh.take(shape_rows, axis=0),
        np.tile(used, len(shape_rows)),
        shape_repeats=len(used),
    )
    base = shape_id * len(used)
    return {phase: plan.take(base + position.take(c)) for phase, c in zip(phases, codes, strict=True)}


#: The mantissa bits of a float64: all zero in a power of two (and in zeros and infinities).
_MANTISSA_BITS = np.uint64((1 << 52) - 1)


def _powers_of_two(x: np.ndarray) -> bool:
    """Every entry of the float64 array ``x`` a power of two from 1 to 2^62 (an int64 exactly)."""
    if x.dtype != np.float64 or x.size == 0:
        return False
    # (NaN has mantissa bits; zeros, negatives and infinities fail the bounds.)
    if np.any(x.view(np.uint64) & _MANTISSA_BITS):
        return False
    return bool(x.min() >= 1.0) and bool(x.max() <= 2.0**62)


def count_gcd(batch: np.ndarray, chips: np.ndarray) -> np.ndarray:
    """``np.gcd(batch.astype(np.int64), chips.astype(np.int64)).astype(np.float64)``, bit for
    bit. Where every batch and chip count is a power of two (bench_estimate's draw: 2^0..2^9
    sequences on 8..256 chips), gcd(2^a, 2^b) is 2^min(a, b), the smaller count: one np.minimum
    and the checks in place of two int64 casts, np.gcd's Euclid per row and the cast back (the
    draw's 100,000 rows: 0.22 against 1.31 ms; AMD EPYC VM, docs/benchmarks.md round 15)."""
    if _powers_of_two(batch) and _powers_of_two(chips):
        return np.minimum(batch, chips)
    return np.gcd(batch.astype(np.int64), chips.astype(np.int64)).astype(np.float64)


def kv_ways_by_phase(
    d: Deployments, phases: tuple[str, ...] = PHASE_NAMES, mesh_ids: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Ways each deployment's KV cache is split in each phase (of ``phases``), once per distinct
    shape. The batch matters only through which mesh-axis products divide it, all divisors of
    the chip count: its gcd with the chip count carries the same information and takes fewer
    distinct values. It splits one pipeline stage of one DP rank (:func:`rank_view`): expert and
    data parallelism are charged around that view (:func:`estimate`, and the serving iteration
    with its DP ranks' shared MoE layers); pipelines and micro-batches are refused here.

    One sort of the shape columns (no phase's sharding): each distinct shape's split is
    computed head-sharded and batch-sharded (where some row is), and each row picks by its
    phase's sharding (as _common_shape_work does). kv_cache_split is elementwise over
    configurations, and a head-sharded row reads no batch, so each row's ways are the same."""
    if not np.all(d.single_stage):
        raise InvalidInputError(
            "pipeline_parallel",
            "this model charges one pipeline stage's tensor-parallel view only (PP and micro-batches: tuner estimate)",
            "pass one DP rank's view (deployment.rank_view), or pipeline_parallel and micro_batches 1 here",
        )
    latent = np.array([m.is_mla for m in d.models])[d.model_index]  # MLA: one latent for all heads
    sharded = {phase: d.batch_sharded_attention(phase) for phase in phases}
    any_sharded = [bool(np.any(sharded[phase])) for phase in phases]
    all_sharded = [bool(np.all(sharded[phase])) for phase in phases]
    if any(any_sharded):
        divides = count_gcd(d.batch, d.chips)
    else:  # no phase reads the batch
        divides = np.zeros(len(d))
    # (kv_cache_split reads only these columns: any representative of a row does. ``mesh_ids``,
    # each row's distinct mesh (mesh_classes' inverse), keys the mesh in one column, not three.)
    mesh_columns = (d.mesh[:, 0], d.mesh[:, 1], d.mesh[:, 2]) if mesh_ids is None else (mesh_ids,)
    rows, kv_id = distinct_rows_any_order(d.kv_heads, *mesh_columns, latent, divides)
    kv_heads, kv_mesh, kv_latent = d.kv_heads.take(rows), d.mesh.take(rows, axis=0), latent.take(rows)
    # Of those, the distinct shapes without the batch (bench_estimate's draw: ~300 of ~5,600),
    # whose splits are all of kv_cache_split but the batch's terms (kv_cache_ways).
    shape_rows, shape_id = distinct_rows(kv_heads, kv_mesh[:, 0], kv_mesh[:, 1], kv_mesh[:, 2], kv_latent)
    shapes = kv_shape_splits(kv_heads.take(shape_rows), kv_mesh.take(shape_rows, axis=0), kv_latent.take(shape_rows))
    split: dict[bool, np.ndarray] = {}
    if not all(all_sharded):
        split[False] = kv_cache_ways(shapes, shape_id.take(kv_id), None)
    if any(any_sharded):
        split[True] = kv_cache_ways(shapes, shape_id, divides.take(rows)).take(kv_id)
    ways: dict[str, np.ndarray] = {}
    for phase, some, every in zip(phases, any_sharded, all_sharded, strict=True):
        if every or not some:  # one array per phase: a second phase alike gets a copy
            given = any(ways[p] is split[every] for p in ways)
            ways[phase] = split[every].copy() if given else split[every]
        else:
            # np.where(sharded, split[True], split[False])'s numbers by position (a random
            # condition: see SwitchedNetwork.collective_time_of_groups_s); split[False] is copied,
            # the other phase may read it.
            if split[True].dtype != split[False].dtype:
                ways[phase] = np.where(sharded[phase], split[True], split[False])
                continue
            rows = np.flatnonzero(sharded[phase])
            ways[phase] = split[False].copy()
            ways[phase][rows] = split[True].take(rows)
    return ways


def _phase_estimate(
    t: _PhaseTimes,
    steps: np.ndarray | float,
    tokens: np.ndarray,
    matmul_params_times_tokens: np.ndarray,
    chips: np.ndarray,
    peak: np.ndarray,
) -> PhaseEstimate:
    """A phase of ``steps`` forward passes producing ``tokens``."""

    def times(seconds: np.ndarray) -> np.ndarray:  # (x 1.0, prefill's one pass, is x: left out)
        return seconds if isinstance(steps, float) and steps == 1.0 else seconds * steps

    latency = times(t.latency_s)
    return PhaseEstimate(
        latency_s=latency,
        compute_s=times(t.compute_s),
        memory_s=times(t.memory_s),
        comm_s=times(t.comm_s),
        tokens=tokens,
        mfu=model_flops_utilization(matmul_params_times_tokens, chips, peak, latency),
        cost_chip_s_per_token=chips * latency / tokens,
    )


def estimate(
    deployments: Deployments,
    *,
    overlap: Overlap = "overlapped",
    kv_memory_fraction: float | None = None,
    convention: CountingConvention = DEFAULT,
    calibration: CalibrationProfile | None = None,
    _decode_cuda_graph: bool | None = None,
) -> DeploymentEstimate:
    """Score n deployments. ``kv_memory_fraction``: share of HBM reserved for the KV cache when
    computing the maximum context (Pope et al. Table 1 use 0.3), at most the memory the weights
    leave; None means all memory left after weights and activations. ``calibration``: the profile
    of the deployments' chip whose measured kernel and collective times replace the roofline; None
    is the pure roofline of the papers (a lower bound but for the catalog's assumed collective
    latency and fp8 weights with 16-bit activations: docs/validation.md). ``compute_s`` and
    ``memory_s`` stay the roofline's terms either way."""
    if overlap not in OVERLAPS:
        raise InvalidInputError("overlap", f"unknown value {overlap!r}", f"use {' or '.join(OVERLAPS)}")
    if kv_memory_fraction is not None:
        # From 0.01, not only above 0: 1e-300 was taken (cost_models.input_ranges says why).
        refuse_outside(
            "kv_memory_fraction", kv_memory_fraction, MEMORY_FRACTION_RANGE, "a share", "pass a fraction such as 0.3"
        )
    d = deployments
    n = len(d)
    # The columns both phases read, where they repeat (each phase then scores only its distinct
    # rows: below).
    common_rows = _common_rows(d)
    phase_rows = {phase: _phase_rows(d, phase, common_rows) for phase in PHASE_NAMES}
    scored_rows = max(n if rows is None else len(rows[0]) for rows in phase_rows.values())
    if scored_rows > ESTIMATE_CHUNK_ROWS:
        # Scored in equal chunks and joined: each row's numbers are its own (no chunk has a
        # single row, whose slot sums numpy would order differently), and a chunk's (slots, n)
        # arrays stay small enough to be reused by the allocator instead of paged in afresh.
        # (A call whose phases score at most that many distinct rows each is scored whole: its
        # (slots, n) arrays are the distinct rows', and chunks would each group their rows again.)
        bounds = np.linspace(0, n, -(-n // ESTIMATE_CHUNK_ROWS) + 1).astype(np.int64)
        chunks = [
            estimate(
                d.take(slice(start, stop)),
                overlap=overlap,
                kv_memory_fraction=kv_memory_fraction,
                convention=convention,
                calibration=calibration,
                _decode_cuda_graph=_decode_cuda_graph,
            )
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        return _joined(chunks)
    if _decode_cuda_graph is None and calibration is not None:
        replay = static_decode_replays(d, calibration.backend)
        if replay is not None and not bool(np.all(replay)):
            # The decode steps past the engine's capture size run eager: each group scored with
            # its own view (one call where every row is one kind), the rows put back in order.
            groups = [(rows, flag) for flag, rows in ((True, np.flatnonzero(replay)), (False, np.flatnonzero(~replay)))]
            scored = [
                (
                    rows,
                    estimate(
                        d if len(rows) == n else d.take(rows),
                        overlap=overlap,
                        kv_memory_fraction=kv_memory_fraction,
                        convention=convention,
                        calibration=calibration,
                        _decode_cuda_graph=flag,
                    ),
                )
                for rows, flag in groups
                if len(rows)
            ]
            if len(scored) == 1:
                return scored[0][1]
            order = np.concatenate([rows for rows, _ in scored])
            return _taken(_joined([part for _, part in scored]), np.argsort(order, kind="stable"))
    network = network_for(d.hardware)
    if calibration is not None:
        check_profile(calibration, d.hardware)
        network = calibrated_network(network, d.hardware, calibration)
    chips = d.chips
    prompt, gen = d.prompt_len, d.gen_len
    # Each chip's work is that of one DP rank's micro-batch in the busiest pipeline stage, on
    # its tensor-parallel mesh (``view``); the pipeline, the DP ranks' shared experts and the
    # MoE dispatch are charged around it (:func:`_phase_times`).
    view = rank_view(d)
    # The columns both phases read (all but their layouts and attention shardings): where they
    # repeat, what depends on them alone (configurations, shapes, active parameters, KV bytes per
    # token) is built once per distinct row (``source`` rows) and gathered; each row's numbers are
    # its own. Else the source rows are every row.
    common_configs = None if common_rows is None else _common_configs(view, prompt, common_rows[0])
    if common_rows is None or common_configs is None:
        common_rows = None
        phase_rows = {phase: None for phase in PHASE_NAMES}
        whole_configs = view.inference_configs("prefill", prompt)
    else:
        whole_configs = common_configs

    def source(values: np.ndarray) -> np.ndarray:  # every row's column at the source rows
        return values if common_rows is None else values.take(common_rows[0])

    def every(values: np.ndarray) -> np.ndarray:  # the source rows' numbers at every row
        return values if common_rows is None else values.take(common_rows[1])

    # Prefill: one pass over batch x prompt tokens.
    moe_layer_step = np.array([m.moe_layer_step for m in d.models], dtype=np.float64).take(d.model_index)
    prefill_configs = stage_configs(whole_configs, source(d.pipeline_parallel), source(moe_layer_step))
    # Decode: step t attends to prompt + t entries; scored once at the mean context, exact where
    # step time is linear in the context (within one roofline regime).
    decode_configs = prefill_configs.at_phase(DECODE, source(prompt + (gen - 1.0) / 2.0))
    prefill_shapes = Shapes.of(prefill_configs, source(prompt))
    parts = {
        phase: _PhasePart.of(d, view, configs, phase_rows[phase], common_rows)
        for phase, configs in (("prefill", prefill_configs), ("decode", decode_configs))
    }
    # Shape-only work (sharding plans, KV splits) of every row where a phase scores every row,
    # else of the phase's distinct rows (gathered to every row for _memory).
    whole_phases = tuple(phase for phase, part in parts.items() if part.rows is None)
    plans: dict[str, ShardingPlan] = {}
    kv_ways: dict[str, np.ndarray] = {}
    if whole_phases:
        # The plans' distinct shapes hold the meshes: their distinct meshes, found there, key the
        # KV splits' mesh and are the network's (Network.know_mesh_classes: the layer's
        # collectives take their mesh-only terms once per distinct mesh), not found again.
        shape_classes = plan_shape_classes(view, parts[whole_phases[0]].configs)
        plans = sharding_plans(view, parts[whole_phases[0]].configs, whole_phases, shape_classes)
        meshes = mesh_classes_of_shapes(view.mesh, shape_classes)
        kv_ways = kv_ways_by_phase(view, whole_phases, None if meshes is None else meshes[1])
        network.know_mesh_classes(view.mesh, meshes)
    part_plans, part_kv_ways = dict(plans), dict(kv_ways)
    of_common = None if common_rows is None else _common_shape_work(view, prefill_configs, common_rows, parts)
    for phase, part in parts.items():
        if part.rows is not None:
            if of_common is not None:
                part_plans[phase], part_kv_ways[phase] = of_common[phase]
            else:
                part_plans.update(sharding_plans(part.view, part.configs, (phase,)))
                part_kv_ways.update(kv_ways_by_phase(part.view, (phase,)))
            plans[phase] = part_plans[phase].take(part.rows[1])
            kv_ways[phase] = part_kv_ways[phase].take(part.rows[1])
    prefill_part, decode_part = parts["prefill"], parts["decode"]
    # The roofline reads each phase's operator costs block by block, as they are built
    # (BlockedCosts); a profile's kernels read the whole tables, at their kernels' compute peaks.
    prefill_ops: OperatorCosts | BlockedCosts
    decode_ops: OperatorCosts | BlockedCosts
    if calibration is None:
        prefill_ops = BlockedCosts(prefill_part.configs, convention)
    else:
        prefill_ops = operator_costs(prefill_part.configs, convention)
        use_kernel_compute(prefill_ops, prefill_part.configs, d.hardware, calibration)
    prefill_times = _phase_times_of_distinct(
        prefill_part, "prefill", prefill_ops, prompt, network, overlap, calibration, part_plans["prefill"],
        part_kv_ways["prefill"], prefill_part.shapes_of(prefill_shapes),
    )  # fmt: skip
    if calibration is None:
        decode_ops = BlockedCosts(decode_part.configs, convention)
    else:
        decode_ops = operator_costs(decode_part.configs, convention)
        use_kernel_compute(decode_ops, decode_part.configs, d.hardware, calibration)
    # The model's shapes are the prefill's; only the tokens of a pass differ (one per sequence).
    decode_shapes = decode_part.shapes_of(prefill_shapes)
    decode_shapes = replace(decode_shapes, tokens=decode_part.configs.batch * np.ones(len(decode_part.configs)))
    step = _phase_times_of_distinct(
        decode_part, "decode", decode_ops, np.ones(n), network, overlap, calibration, part_plans["decode"],
        part_kv_ways["decode"], decode_shapes, _decode_cuda_graph,
    )  # fmt: skip
    # The largest slot's activations read and written over both phases (for _memory): each
    # phase's of the rows it scored, then every row's.
    live_activations = np.maximum(
        prefill_part.gathered(_live_activations_of(prefill_ops)),
        decode_part.gathered(_live_activations_of(decode_ops)),
    )

    c = whole_configs  # the whole model, for MFU (the tokens below are the whole batch's)
    # MFU against the peak of the format the weight matmuls run in (Pope et al. keep them in
    # bf16, so theirs is the bf16 peak; int8 x int8 on an H100 has twice that to use); under a GPU
    # engine's profile, the peak of the kernel timing them (fp8 weights: the W8A8 fp8 GEMM).
    peak = lookup(d.hardware.peak_table(), matmul_compute_dtype(d.weight_dtype, d.act_dtype, d.hardware, calibration))
    if convention.lm_head_format == "16-bit":
        # The lm_head runs in bf16 (conventions.lm_head_format): where the blocks' kernel peak is
        # under bf16's (B300: int8 125 TFLOP/s, bf16 2,250), the pass can use that peak too.
        peak = np.maximum(peak, d.hardware.peak_table()[BF16])
    # MFU's numerator: the active block parameters (_active_block_params) and the lm_head's.
    if common_rows is None:  # c is view.inference_configs': its model columns are its models' rows
        block_params = _active_block_params_per_model(c, view.model_index, view.kv_heads)
    else:
        block_params = every(_active_block_params(c))
    head_params = every(c.vocab * c.d_model)
    prefill_head_tokens = {"all": d.batch * prompt, "none": 0.0}.get(convention.lm_head_positions, d.batch)
    decode_head_share = 0.0 if convention.lm_head_positions == "none" else 1.0
    prefill_tokens, decode_tokens = d.batch * prompt, d.batch * gen
    prefill = _phase_estimate(
        prefill_times,
        1.0,
        prefill_tokens,
        block_params * prefill_tokens + head_params * prefill_head_tokens,
        chips,
        peak,
    )
    decode = _phase_estimate(
        step, gen, decode_tokens, (block_params + decode_head_share * head_params) * decode_tokens, chips, peak
    )
    memory = _memory(
        view,
        every(prefill_configs.kv_bytes_per_token(source(prompt + gen))),
        every(prefill_configs.kv_bytes_per_token(None)),
        every(prefill_configs.layers),
        every(prefill_configs.sliding_window),
        every(prefill_configs.sliding_window_layers),
        prompt + gen,
        live_activations,
        kv_memory_fraction,
        plans,
        kv_ways["decode"],
        d,
    )
    return DeploymentEstimate(prefill, decode, step.latency_s, memory)


def _common_shape_work(
    view: Deployments,
    configs: InferenceConfigs,
    common: tuple[np.ndarray, np.ndarray],
    parts: dict[str, _PhasePart],
) -> dict[str, tuple[ShardingPlan, np.ndarray]] | None:
    """The sharding plan and KV split of each phase's scored rows (its ``parts``, distinct
    deployments), from the distinct rows of the columns both phases read (``common``;
    ``configs``: their stage configurations). A plan depends on the model's shapes, the mesh and
    the phase's layout, a KV split on the shapes, the mesh, the batch and the phase's attention
    sharding: each is computed for every layout (sharding) of the distinct common rows' few
    shapes and picked by the phase's code, so no sort of the phase's rows is needed. Each row's
    numbers are the same (both are elementwise over configurations). None where a phase's codes
    are not layout (sharding) codes."""
    first_common, inverse_common = common
    for phase, part in parts.items():
        if part.rows is None:
            continue
        layouts = view.ffn_layout(phase)
        shardings = np.asarray(getattr(view, f"{phase}_attn_sharding"))
        for codes, count in ((layouts, len(FFN_LAYOUTS)), (shardings, len(ATTENTION_SHARDINGS))):
            if codes.dtype.kind not in "iu" or codes.min() < 0 or codes.max() >= count:
                return None
    c_view = view.take(first_common)
    mesh = c_view.mesh
    # Plans: of each distinct (model, KV heads, mesh, stage layers) in every layout.
    shape_rows, shape_id = distinct_rows(
        c_view.model_index, c_view.kv_heads, mesh[:, 0], mesh[:, 1], mesh[:, 2], configs.layers
    )
    n_layouts = len(FFN_LAYOUTS)
    rows = np.repeat(shape_rows, n_layouts)
    every_layout = np.tile(np.arange(n_layouts), len(shape_rows))
    plan = sharding_plan(configs.take(rows), mesh.take(rows, axis=0), every_layout)
    # KV splits: head-sharded, and batch-sharded with the batch's gcd with the chips
    # (kv_ways_by_phase's arguments for each sharding).
    divides = count_gcd(c_view.batch, c_view.chips)
    latent = np.array([m.is_mla for m in c_view.models])[c_view.model_index]
    kv_rows, kv_id = distinct_rows(c_view.kv_heads, mesh[:, 0], mesh[:, 1], mesh[:, 2], latent, divides)
    kv_heads, kv_mesh, kv_latent, kv_divides = (
        a.take(kv_rows, axis=0) for a in (c_view.kv_heads, mesh, latent, divides)
    )
    n = len(kv_rows)
    split = {
        sharded: kv_cache_split(
            kv_heads, kv_divides if sharded else np.zeros(n), kv_mesh, np.full(n, sharded), kv_latent
        )[0].take(kv_id)
        for sharded in (False, True)
    }
    out = {}
    for phase, part in parts.items():
        if part.rows is None:
            continue
        at_common = inverse_common.take(part.rows[0])
        layout = part.view.ffn_layout(phase)
        sharded = part.view.batch_sharded_attention(phase)
        ways = np.where(sharded, split[True].take(at_common), split[False].take(at_common))
        out[phase] = (plan.take(shape_id.take(at_common) * n_layouts + layout), ways)
    return out


def _active_block_params_per_model(c: InferenceConfigs, model_index: np.ndarray, kv_heads: np.ndarray) -> np.ndarray:
    """:func:`_active_block_params` of configurations whose model columns are the rows
    ``model_index`` of a table of models (make_configs' with ``model_index``) and whose KV heads
    are ``kv_heads``: the parameters read nothing else, so where every row of a model has one
    KV-head count they are computed on one row per model and gathered (the same numbers; ~40
    passes over the rows fewer: 3.4 ms at 100,000 configurations). Else on every row."""
    index = np.asarray(model_index)
    n = len(c)
    if index.shape != (n,) or index.dtype.kind not in "iu" or n < _PER_MODEL_MIN_ROWS or index.min() < 0:
        return _active_block_params(c)
    # One row of each model (whichever the scatter keeps), and whether every row of the model
    # has that row's KV heads.
    first = np.full(int(index.max()) + 1, -1, dtype=np.int64)
    first[index] = np.arange(n)
    used = first[first >= 0]
    if not np.array_equal(kv_heads.take(first.take(index)), kv_heads):
        return _active_block_params(c)
    by_model = np.zeros(len(first))
    by_model[first >= 0] = _active_block_params(c.take(used))
    return by_model.take(index)


#: Rows from which _active_block_params_per_model looks for one row per model.
_PER_MODEL_MIN_ROWS = 64


def _active_block_params(c: InferenceConfigs) -> np.ndarray:
    """MFU's numerator (Pope et al.: 2 x parameters x tokens, attention left out) counts the
    parameters whose matmuls run: every block matrix for each token, the lm_head for the tokens
    it scores. Pope et al. count the embedding table too (0.9% of PaLM 540B); for small models
    that would credit work never done and let MFU pass 1. In an MoE block only the top-k routed
    experts (and the shared ones) run for a token: the active parameters of a block, here."""
    return active_block_params(
        c.layers,
        c.d_model,
        c.heads,
        c.kv_heads,
        c.d_head,
        c.d_ff,
        c.gated_ffn,
        c.moe_layers,
        c.experts,
        c.experts_per_token,
        c.expert_d_ff,
        c.shared_d_ff,
        **c.mla_kwargs(),
    )


def _common_configs(view: Deployments, prompt: np.ndarray, first: np.ndarray) -> InferenceConfigs | None:
    """The prefill configurations of ``view``'s rows ``first``; None where they are refused (bad
    input): the whole call is then built to raise the error every row's build raises."""
    try:
        return view.take(first).inference_configs("prefill", prompt.take(first))
    except InvalidInputError:
        return None


#: Distinct deployments (in a phase's columns) at most this share of a call for the phase to be
#: scored once per distinct one (:func:`_phase_times_of_distinct`).
DISTINCT_PHASE_SHARE = 0.5


#: The columns only one phase reads (the other phase's layout and attention sharding are all
#: :func:`_phase_rows` leaves out of a phase's key).
_PHASE_COLUMNS = {phase: (f"{phase}_ffn_layout", f"{phase}_attn_sharding") for phase in PHASE_NAMES}


def _common_rows(d: Deployments) -> tuple[np.ndarray, np.ndarray] | None:
    """(first, inverse) over the deployments distinct in the columns both phases read (all but
    the phases' layouts and attention shardings), where they repeat enough for a phase's
    (cost_models.distinct.repeated_rows, the share of :func:`_phase_rows`); None otherwise (a
    phase's rows, keyed by more columns, are then at least as many)."""
    skip = {"models", "hardware", *_PHASE_COLUMNS["prefill"], *_PHASE_COLUMNS["decode"]}
    columns: list[np.ndarray] = []
    for f in fields(d):
        if f.name not in skip:
            values = np.asarray(getattr(d, f.name))
            columns += list(values.T) if values.ndim == 2 else [values]
    return repeated_rows(columns, DISTINCT_PHASE_SHARE)


def _phase_rows(
    d: Deployments, phase: str, common: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(first, inverse) over the deployments distinct in the columns ``phase`` reads (every column
    but the other phase's layout and attention sharding), where they repeat; None to score every
    row. An exhaustive space crosses each phase's choices with the other's
    (studies/llama-2-70b-h100.yaml: 4 prefill x 2 decode layouts, 2 x 2 shardings: each decode
    row repeats 8 times, each prefill row 4). From ``common`` (:func:`_common_rows`): the phase's
    distinct rows are its distinct (common row, layout, sharding) triples, the two codes small
    whole numbers, so they are found by a table of the triples (no second sort, exact). A
    subset of one row is not taken: numpy orders a single column's slot sums differently."""
    if common is None:
        return None
    first_common, inverse_common = common
    layout, sharding = (np.asarray(getattr(d, name)) for name in _PHASE_COLUMNS[phase])
    codes_range = [(int(c.min()), int(c.max())) for c in (layout, sharding)]
    if any(c.dtype.kind not in "iu" for c in (layout, sharding)) or any(
        low < 0 or high > 255 for low, high in codes_range
    ):  # not codes (Deployments built by hand): keyed with every column instead
        skip = {"models", "hardware", *_PHASE_COLUMNS["decode" if phase == "prefill" else "prefill"]}
        columns: list[np.ndarray] = []
        for f in fields(d):
            if f.name not in skip:
                values = np.asarray(getattr(d, f.name))
                columns += list(values.T) if values.ndim == 2 else [values]
        rows = repeated_rows(columns, DISTINCT_PHASE_SHARE)
        return None if rows is None or len(rows[0]) < 2 else rows
    sharding_radix = codes_range[1][1] + 1
    radix = (codes_range[0][1] + 1) * sharding_radix
    key = inverse_common * radix
    key += layout * sharding_radix
    key += sharding
    seen = np.zeros(len(first_common) * radix, dtype=bool)
    seen[key] = True
    position = np.cumsum(seen)
    position -= 1
    inverse = position.take(key)
    count = int(position[-1]) + 1
    if count > DISTINCT_PHASE_SHARE * len(key) or count < 2:
        return None
    first = np.empty(count, dtype=np.intp)
    first[inverse] = np.arange(len(key))  # any row of a triple represents it (all its columns equal)
    return first, inverse


@dataclass(frozen=True)
class _PhasePart:
    """The deployments a phase is scored on: every row, or (given ``rows``, :func:`_phase_rows`)
    one per distinct deployment in the phase's columns, with each row's position among them."""

    whole: Deployments  # the deployments scored (rows of estimate's ``d``)
    view: Deployments  # their rank views (:func:`rank_view`)
    configs: InferenceConfigs  # their configurations in the phase
    rows: tuple[np.ndarray, np.ndarray] | None  # (first, inverse); None: every row
    #: The rows scored's positions among the source rows of ``configs`` (estimate's distinct
    #: common rows, or every row); None: they are the source rows.
    source_index: np.ndarray | None

    @classmethod
    def of(
        cls,
        d: Deployments,
        view: Deployments,
        configs: InferenceConfigs,
        rows: tuple[np.ndarray, np.ndarray] | None,
        common: tuple[np.ndarray, np.ndarray] | None,
    ) -> _PhasePart:
        """``configs``: the phase's configurations of every row, or (given ``common``,
        :func:`_common_rows`) of the distinct common rows."""
        if rows is None:
            index = None if common is None else common[1]
            return cls(d, view, configs if index is None else configs.take(index), None, index)
        first = rows[0]
        index = first if common is None else common[1].take(first)
        whole = d.take(first)
        # A single-stage batch is its own rank view (rank_view returns it): taken once.
        return cls(whole, whole if view is d else view.take(first), configs.take(index), rows, index)

    def shapes_of(self, shapes: Shapes) -> Shapes:
        """The rows scored's ``shapes``, from the source rows' (those of ``configs``' source)."""
        if self.source_index is None:
            return shapes
        index = self.source_index
        return type(shapes)(**{f.name: np.asarray(getattr(shapes, f.name)).take(index) for f in fields(shapes)})

    def gathered(self, values: np.ndarray) -> np.ndarray:
        """Every row's number, from ``values`` of the rows scored."""
        return values if self.rows is None else values.take(self.rows[1])


def _live_activations_of(ops: OperatorCosts | BlockedCosts) -> np.ndarray:
    """:func:`_live_activations` of ``ops``; of BlockedCosts, those its roofline kept."""
    if not isinstance(ops, BlockedCosts):
        return _live_activations(ops)
    if ops.live_activations is None:
        raise RuntimeError("the blocked operator costs were not scored")
    return ops.live_activations


def _live_activations(ops: OperatorCosts) -> np.ndarray:
    """The largest slot's activations read and written, of each configuration of ``ops``: slot by
    slot, so no (slots, n) temporary is made. A maximum's order does not change it, so each
    row's is the same whatever rows are evaluated beside it and whichever phase is taken first."""
    n = ops.flops.shape[1]
    live = np.zeros(n)
    row = np.empty(n)
    # A slot whose every row is an earlier slot's (OperatorCosts.same_rows: v_proj's k_proj's,
    # mlp_add's attn_add's) adds the same numbers, and a maximum taken twice with them is the
    # maximum taken once: skipped (2 of 15 present slots in bench_estimate's draw).
    twins = ops.same_rows()
    for i in range(ops.flops.shape[0]):
        # A slot no configuration has moves no activations (operator_costs zeroes it): the
        # maximum with its zero row leaves every (non-negative) entry as it is.
        if i not in twins and ops.present[i].any():
            np.maximum(live, np.add(ops.act_read_bytes[i], ops.act_write_bytes[i], out=row), out=live)
    return live


def _phase_times_of_distinct(
    part: _PhasePart,
    phase: str,
    ops: OperatorCosts | BlockedCosts,
    tokens_per_sequence: np.ndarray,
    network: Network,
    overlap: Overlap,
    profile: CalibrationProfile | None,
    plan: ShardingPlan,
    kv_ways: np.ndarray,
    shapes: Shapes,
    cuda_graph: bool | None = None,
) -> _PhaseTimes:
    """:func:`_phase_times` of ``phase`` on ``part``'s rows (``ops``, ``plan``, ``kv_ways`` and
    ``shapes`` are theirs; ``tokens_per_sequence`` every row's), for every row. Given distinct
    rows (:func:`_phase_rows`), scored once per distinct deployment and gathered: each row's
    numbers are its own (every step is elementwise over deployments),
    bench/guard_estimate_outputs.py checks it bit for bit on deployments that differ in one
    phase's columns only."""
    tokens = tokens_per_sequence if part.rows is None else tokens_per_sequence.take(part.rows[0])
    times = _phase_times(
        part.view, phase, part.configs, ops, tokens, network, overlap, profile, plan, kv_ways,
        _Parallel.of(part.whole, part.configs, tokens), shapes, cuda_graph,
    )  # fmt: skip
    if part.rows is None:
        return times
    inverse = part.rows[1]
    return _PhaseTimes(**{f.name: getattr(times, f.name).take(inverse) for f in fields(_PhaseTimes)})


def static_decode_replays(d: Deployments, backend: str) -> np.ndarray | None:
    """(n,) bool: which deployments' static decode steps (``batch`` sequences of one DP rank)
    replay a CUDA graph under ``backend`` launched with its defaults (a static estimate has no
    serving knobs: vLLM's max_num_seqs 256 and max_num_batched_tokens 8192, so up to 512
    sequences; SGLang's cuda_graph_max_bs by the GPU's memory and TP: calibration.CudaGraphs);
    None under an engine whose every step is taken as a replay (TensorRT-LLM, JAX)."""
    if backend not in CUDA_GRAPH_DECODE_BACKENDS:
        return None
    graphs = default_cuda_graphs(backend, d.hardware, d.tensor_parallel)
    # One DP rank's micro-batch in one step (rank_view's batch).
    per_rank = d.batch / (d.data_parallel * d.micro_batches)
    return graphs.replays(per_rank, np.zeros(len(d)))


def default_cuda_graphs(backend: str, hardware: HardwareSpec, tensor_parallel: np.ndarray | float) -> CudaGraphs:
    """The CUDA-graph capture of ``backend`` launched with its default knobs (serving.ENGINE_DEFAULTS:
    vLLM's max_num_seqs 256, so 512 tokens; SGLang's cuda_graph_max_bs of the GPU and TP), for
    passes scored without serving knobs (a static estimate, tuner analyze)."""
    from cost_models.serving import ENGINE_DEFAULTS  # (serving imports this module)

    knobs = ENGINE_DEFAULTS[backend]
    return CudaGraphs.of(
        backend,
        max_batch_size=float(knobs["max_batch_size"]),
        max_num_tokens=float(knobs["max_num_tokens"]),
        memory_bytes=hardware.memory_bytes,
        tensor_parallel=tensor_parallel,
    )


def _taken(estimate: DeploymentEstimate, index: np.ndarray) -> DeploymentEstimate:
    """The rows ``index`` of an estimate (every array of it, nested ones too)."""

    def take(value: object) -> object:
        if isinstance(value, np.ndarray):
            return value.take(index, axis=0) if value.ndim else value
        return type(value)(**{f.name: take(getattr(value, f.name)) for f in fields(value)})  # type: ignore[arg-type]

    taken = take(estimate)
    assert isinstance(taken, DeploymentEstimate)
    return taken


def _joined(parts: list[DeploymentEstimate]) -> DeploymentEstimate:
    """The estimates of consecutive chunks of deployments as one."""

    def join(values: list) -> object:
        first = values[0]
        if isinstance(first, np.ndarray):
            return np.concatenate(values)
        return type(first)(**{f.name: join([getattr(v, f.name) for v in values]) for f in fields(first)})

    joined = join(parts)
    assert isinstance(joined, DeploymentEstimate)
    return joined


def _memory(
    d: Deployments,
    kv_bytes_per_token: np.ndarray,
    uncapped_kv_bytes_per_token: np.ndarray,
    stage_layers: np.ndarray,
    sliding_window: np.ndarray,
    sliding_window_layers: np.ndarray,
    context: np.ndarray,
    live_activations: np.ndarray,
    kv_memory_fraction: float | None,
    plans: dict[str, ShardingPlan],
    kv_ways: np.ndarray,
    whole: Deployments,
) -> MemoryEstimate:
    """Bytes per chip of the busiest pipeline stage (``kv_bytes_per_token``: of its layers, at
    ``context``; ``uncapped_kv_bytes_per_token``, its layers and windows: the same before any
    window caps it, for the longest context that fits; ``d``: one DP rank's micro-batch on its
    tensor-parallel view of ``whole``).
    Weights as the layouts' sharding rules store them (the larger of the two phases' layouts: a
    deployment whose phases differ holds either at a time), the routed experts further split over
    the stage's DP ranks (:func:`expert_scale`); the KV cache of the rank's every micro-batch as
    decode's attention sharding splits it. Both the embedding and an untied lm_head stay charged to the stage (a
    pipeline's first stage holds only the one, its last only the other): at most one table over."""
    chips = d.chips
    dp = whole.data_parallel
    weight_bytes = lookup(BYTES_PER_ELEMENT, d.weight_dtype)
    # (Where no plan has routed experts, their term is 0 x a finite factor, +0.0 with every
    # dp >= 1, and x - 0.0 is x: left out, with its gather and three passes.)
    any_routed = any(
        plans[phase].distinct_routed_expert_elements is None or np.any(plans[phase].distinct_routed_expert_elements)
        for phase in ("prefill", "decode")
    ) or not np.all(dp >= 1.0)
    weights = np.maximum(
        *(
            # weight_bytes_per_chip of the phase's plan: its stored elements x the weights' bytes
            # (the embedding and lm_head in 16 bits), less the routed experts DP splits further;
            # plus, in a weight-gathered layout, the block shards in flight (2 per chip).
            (
                stored_weight_bytes(plans[phase], d.weight_dtype)
                - dp_shared_expert_bytes(plans[phase], weight_bytes, dp)
                if any_routed
                else stored_weight_bytes(plans[phase], d.weight_dtype)
            )
            + gathered_weight_buffer_bytes(plans[phase], d.weight_dtype, d.ffn_layout(phase), d.mesh)
            for phase in ("prefill", "decode")
        )
    )
    mxfp4 = whole.mxfp4_experts
    if mxfp4.any():  # gpt-oss's checkpoint: only the experts 4-bit (and their scales)
        weights = weights + np.maximum(
            *(mxfp4_checkpoint_extra_bytes(plans[p], d.weight_dtype, mxfp4, dp) for p in ("prefill", "decode"))
        )
    if whole.mixed_checkpoint.any():  # a checkpoint that keeps modules 16-bit or stores group scales
        weights = weights + np.maximum(*(d.mixed_checkpoint_extra_bytes(plans[p], dp) for p in ("prefill", "decode")))
    if any(m.vision_params for m in whole.models):  # a multimodal model's vision encoder, loaded beside it
        weights = weights + d.vision_bytes_per_chip
    kv_per_token = kv_bytes_per_token * d.batch * whole.micro_batches / kv_ways
    kv = kv_per_token * context
    activations = live_activations / chips
    capacity = np.full(len(d), d.hardware.memory_bytes)
    if kv_memory_fraction is None:
        budget = np.maximum(capacity - weights - activations, 0.0)
    else:
        # A reserved share holds no more than the weights leave: uncapped, 0.99 of an H100 for
        # Llama-2-70B int4 TP8 at batch 16 reserved 84.7 GB and held 258,378 tokens a sequence,
        # beyond the 81.1 GB its 4.4 GB of weights leave (tests/cost_models/test_estimate.py).
        # The activations stay outside the share, as in Pope et al.'s Table 1 (30% of HBM, the
        # weights in the rest), whose batch-512 rows the prefill's live activations would
        # otherwise cut by 18-25%.
        budget = np.minimum(capacity * kv_memory_fraction, np.maximum(capacity - weights, 0.0))
    # Encoders keep no KV cache: no context limit from it (reported as None). Windowed layers stop
    # growing at their window, so the context is solved for, not budget / bytes a token at this one.
    uncapped_per_token = uncapped_kv_bytes_per_token * d.batch * whole.micro_batches / kv_ways
    max_context = np.floor(
        context_that_fits(budget, uncapped_per_token, stage_layers, sliding_window, sliding_window_layers)
    )
    return MemoryEstimate(weights, kv, activations, capacity, max_context)


def dp_shared_expert_bytes(plan: ShardingPlan, weight_bytes: np.ndarray, data_parallel: np.ndarray) -> np.ndarray:
    """Bytes per chip of routed experts a tensor-parallel plan stores that a chip of a DP rank
    does not: the stage's DP ranks share its MoE layers, each chip holding 1/DP of what its TP
    group's plan would (:func:`expert_scale`), so (1 - 1/DP) of the plan's routed experts."""
    return plan.routed_expert_elements * (1.0 - 1.0 / data_parallel) * weight_bytes


def rank_view(d: Deployments) -> Deployments:
    """What one chip of ``d`` computes, as a single-stage deployment: one DP rank's micro-batch
    (batch / (DP x m) sequences) on the tensor-parallel mesh."""
    if np.all(d.single_stage):
        return d
    ones = np.ones(len(d))
    return replace(
        d,
        batch=d.batch / (d.data_parallel * d.micro_batches),
        pipeline_parallel=ones,
        expert_parallel=ones,
        data_parallel=ones,
        micro_batches=ones,
    )


def stage_moe_blocks(moe_layers, stage_layers, moe_layer_step):
    """MoE blocks of the busiest pipeline stage of ``stage_layers`` consecutive blocks: with the
    dense blocks first (``moe_layer_step`` 1, DeepSeek-V3's first 3, which sit in the first stage)
    every block of the last stages, so min(MoE blocks, stage blocks); with every step-th block MoE
    (Llama 4 Maverick, transformers' ``moe_layers`` = step-1, 2*step-1, ...) a run of b consecutive
    blocks holds at most ceil(b / step) of them. Arrays or ints alike."""
    return np.minimum(moe_layers, np.ceil(stage_layers / moe_layer_step))


def stage_configs(
    configs: InferenceConfigs, pipeline_parallel: np.ndarray, moe_layer_step: np.ndarray | float = 1.0
) -> InferenceConfigs:
    """The busiest of PP pipeline stages: ceil(layers / PP) blocks (an uneven split's longest
    stage paces the pipeline), with as many MoE blocks as :func:`stage_moe_blocks` places there
    (``moe_layer_step``: the models' ModelSpec field, per configuration). Of its blocks, the
    full-attention ones are its share of the model's, rounded up (the busiest stage holds the most
    full-context KV cache), the rest windowed: the rule the export writes (tuner/export.py)."""
    if np.all(pipeline_parallel == 1):
        return configs
    layers = np.ceil(configs.layers / pipeline_parallel)
    full = np.minimum(np.ceil((configs.layers - configs.sliding_window_layers) / pipeline_parallel), layers)
    return replace(
        configs,
        layers=layers,
        moe_layers=stage_moe_blocks(configs.moe_layers, layers, moe_layer_step),
        sliding_window_layers=layers - full,
    )


def _phase_report(p: PhaseEstimate, i: int) -> dict:
    return {
        "latency_s": float(p.latency_s[i]),
        "mfu": float(p.mfu[i]),
        "compute_s": float(p.compute_s[i]),
        "memory_s": float(p.memory_s[i]),
        "comm_s": float(p.comm_s[i]),
        "cost_chip_s_per_token": float(p.cost_chip_s_per_token[i]),
        "throughput_tokens_per_s": float(p.throughput_tokens_per_s[i]),
    }


def estimate_report(result: DeploymentEstimate, index: int = 0) -> dict:
    """One deployment's estimate as plain data (the ``tuner estimate --json`` sections)."""
    m, i = result.memory, index
    return {
        "prefill": _phase_report(result.prefill, i),
        "decode": {"step_latency_s": float(result.decode_step_latency_s[i]), **_phase_report(result.decode, i)},
        "memory": {
            "weights_bytes_per_chip": float(m.weights_bytes_per_chip[i]),
            "kv_cache_bytes_per_chip": float(m.kv_cache_bytes_per_chip[i]),
            "activation_bytes_per_chip": float(m.activation_bytes_per_chip[i]),
            "total_bytes_per_chip": float(m.total_bytes_per_chip[i]),
            "capacity_bytes_per_chip": float(m.capacity_bytes_per_chip[i]),
            "fits": bool(m.fits[i]),
            "max_context_tokens": (int(m.max_context_tokens[i]) if np.isfinite(m.max_context_tokens[i]) else None),
        },
    }


def estimate_one(
    model: str | ModelSpec,
    hardware: str | HardwareSpec,
    *,
    chips: int | None = None,
    batch: int,
    prompt_len: int,
    gen_len: int,
    mesh: str | tuple[int, int, int] | None = None,
    phase: Literal["prefill", "decode", "both"] = "both",
    ffn_layout: str | None = None,
    prefill_ffn_layout: str | None = None,
    decode_ffn_layout: str | None = None,
    attn_sharding: str | None = None,
    prefill_attn_sharding: str | None = None,
    decode_attn_sharding: str | None = None,
    weight_bits: str | int = 16,
    act_bits: str | int = 16,
    kv_bits: str | int = 16,
    flash_attention: bool | None = None,
    tp: int | None = None,
    pp: int | None = None,
    ep: int | None = None,
    dp: int | None = None,
    micro_batches: int | None = None,
    kv_heads: int | None = None,
    block: str | None = None,
    overlap: Overlap = "overlapped",
    kv_memory_fraction: float | None = None,
    require_fit: bool = False,
    calibration: str | CalibrationProfile | None = AUTO_CALIBRATION,
    backend: str | None = None,
) -> dict:
    """One deployment by names, validated: the ``tuner estimate --json`` object.

    Two vocabularies (:func:`engine_degrees`): on GPUs, or with any of ``tp``, ``pp``, ``ep``,
    ``dp``, ``micro_batches``, the engines' (Megatron TP over a 1 x 1 x TP mesh in the 1D
    weight-stationary layout, head-sharded fused attention; without ``tp``, TP = the chips of one
    NVLink domain and PP across domains, as vLLM, SGLang and TensorRT-LLM deploy); with ``mesh``
    or on a TPU, Pope et al.'s: without ``mesh``, every legal mesh for ``chips`` is scored in one
    call and the fastest for ``phase`` (preferring meshes that fit in memory) is chosen and
    reported (``mesh`` may still take ``pp``/``dp``/``ep``: it is then one stage's TP group). ``require_fit``
    turns a deployment that does not fit into an error instead of ``fits: false``.
    ``calibration``: ``auto`` (the chip's shipped profile under ``backend``, default the engine
    measured best), ``none`` (the papers' pure roofline), a profile name or a profile file; the
    report names it.
    """
    model_spec = get_model(model) if isinstance(model, str) else model
    chip = get_hardware(hardware) if isinstance(hardware, str) else hardware
    if phase not in ("prefill", "decode", "both"):
        raise InvalidInputError("phase", f"unknown phase {phase!r}", "use prefill, decode or both")
    degrees = {"tp": tp, "pp": pp, "ep": ep, "dp": dp, "micro_batches": micro_batches}
    for field, value in (
        ("batch", batch),
        ("prompt_len", prompt_len),
        ("gen_len", gen_len),
        *((f, v) for f, v in (("chips", chips), *degrees.items()) if v is not None),
    ):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise InvalidInputError(
                field, f"must be a positive whole number, got {value!r}", f"pass an integer >= 1 for {field}"
            )
    if kv_heads is not None and not 1 <= kv_heads <= 2**31:
        raise InvalidInputError("kv_heads", f"{kv_heads} is out of range", "pass a head count >= 1")
    if block is not None and block not in BLOCKS:
        raise InvalidInputError("block", f"unknown block {block!r}", f"use {' or '.join(BLOCKS)} (or leave it out)")
    if model_spec.kind == "encoder" and phase != "prefill":
        raise InvalidInputError(
            "phase", f"{model_spec.name} is an encoder: it has no decode phase", "use --phase prefill"
        )
    formats = chip.parse_formats(weight_bits=weight_bits, act_bits=act_bits, kv_bits=kv_bits)
    refuse_engine_kv_cache(backend, formats["kv_bits"])
    layouts = {
        "prefill_ffn_layout": prefill_ffn_layout or ffn_layout,
        "decode_ffn_layout": decode_ffn_layout or ffn_layout,
        "prefill_attn_sharding": prefill_attn_sharding or attn_sharding,
        "decode_attn_sharding": decode_attn_sharding or attn_sharding,
    }
    engine = mesh is None and (chip.kind == "gpu" or any(v is not None for v in degrees.values()))
    pipeline_default = False  # micro-batches chosen as the engines run a pipeline (below)
    if engine:
        # What the engines run: Megatron TP (ws_1d), heads split, fused attention.
        engine_choices = dict.fromkeys(("prefill_ffn_layout", "decode_ffn_layout"), "ws_1d")
        engine_choices |= dict.fromkeys(("prefill_attn_sharding", "decode_attn_sharding"), "head")
        for name, chosen in layouts.items():
            if chosen is not None and chosen != engine_choices[name]:
                raise InvalidInputError(
                    name,
                    f"{chosen} is a layout of Pope et al.'s meshes; GPU engines run Megatron TP (ws_1d, heads split)",
                    "drop it, or give --mesh XxYxZ to score Pope et al.'s layouts",
                )
        choices = engine_choices
        flash = True if flash_attention is None else flash_attention
        chips, shape, parallel = engine_degrees(
            chip, chips, tp=tp, pp=pp, ep=ep, dp=dp, micro_batches=micro_batches, experts=model_spec.experts
        )
        # A GPU engine's own (engine_micro_batches); a TPU pipeline named in these degrees keeps 1.
        pipeline_default = micro_batches is None and parallel["pp"] > 1 and chip.kind == "gpu"
        if pipeline_default:
            parallel["micro_batches"] = engine_micro_batches(batch, parallel["pp"], parallel["dp"])
        if parallel["pp"] == 1 and parallel["micro_batches"] > 1:
            # Micro-batches fill a pipeline (Narayanan et al. 2021, 2.2); on one stage they would
            # run one after another, a slower deployment no engine launches (a study leaves it
            # out: search_spaces.space._engine_problems).
            raise InvalidInputError(
                "micro_batches",
                f"{parallel['micro_batches']} micro-batches need pipeline stages (pp 1 runs the batch in one step)",
                "drop --micro-batches, or pass --pp 2 or more",
            )
        meshes = [shape]
        if chip.kind == "gpu" and engine_problem_mask(None, model_spec.heads, model_spec.experts, shape[2], 1, 1):
            whose = f"TP {shape[2]}" + (f" (one {chip.name} NVLink domain, the engine default)" if tp is None else "")
            raise heads_split_error(model_spec, shape[2], whose=whose)
        refuse_unlaunched_degrees(backend, model_spec, shape[2], parallel["ep"], parallel["dp"])
        if chip.kind != "gpu" and tp is None:
            raise InvalidInputError("tp", "missing: TPUs have no engine default", "pass --tp, or --mesh XxYxZ")
    else:
        defaults = {"prefill_ffn_layout": "ws_2d", "decode_ffn_layout": "ws_2d"}
        choices = {name: chosen or defaults.get(name, "head") for name, chosen in layouts.items()}
        flash = bool(flash_attention)
        parallel = {name: 1 if value is None else value for name, value in degrees.items() if name != "tp"}
        if tp is not None:
            raise InvalidInputError("tp", "given with --mesh (the mesh is the TP group)", "give one of them")
        stages = parallel["pp"] * parallel["dp"]
        if chips is None and mesh is not None:  # the mesh carries its chips (a study's mesh does)
            chips = int(np.prod(parse_mesh(mesh) if isinstance(mesh, str) else mesh)) * stages
        if chips is None:
            raise InvalidInputError("chips", "missing", "pass --chips N or --mesh XxYxZ")
        if chips % stages:
            raise InvalidInputError(
                "chips", f"{chips} is not a multiple of pp x dp ({stages})", "pass --chips = mesh chips x pp x dp"
            )
        meshes = candidate_meshes(chip, chips // stages, mesh)
    rows = [
        Deployment(
            model=model_spec,
            hardware=chip,
            mesh=m,
            batch=batch,
            prompt_len=prompt_len,
            gen_len=gen_len,
            **choices,
            weight_dtype=dtype_name(formats["weight_bits"]),
            act_dtype=dtype_name(formats["act_bits"]),
            kv_dtype=dtype_name(formats["kv_bits"]),
            kv_heads=kv_heads,
            block=block,
            flash_attention=flash,
            pipeline_parallel=parallel["pp"],
            expert_parallel=parallel["ep"],
            data_parallel=parallel["dp"],
            micro_batches=parallel["micro_batches"],
        )
        for m in meshes
    ]
    profile = resolve_calibration(calibration, chip, backend)
    if engine and chip.kind == "gpu":
        # The engine deployed on (--backend, else the profile's): vLLM and SGLang refuse a TP the
        # KV heads do not split over (Phi-3-medium's 10 at TP 4), which the mesh would replicate.
        served_by = serving_engine(backend, profile, chip)
        split_kv_heads = 0 if model_spec.is_mla else (kv_heads or model_spec.kv_heads)
        if engine_problem_mask(served_by, model_spec.heads, 0, shape[2], 1, 1, kv_heads=split_kv_heads):
            raise kv_heads_split_error(model_spec, split_kv_heads, shape[2], served_by)
    result = estimate(
        Deployments.from_rows(rows), overlap=overlap, kv_memory_fraction=kv_memory_fraction, calibration=profile
    )
    best = fastest_fitting(result, phase)
    report = deployment_report(rows[best], result, best)
    weight_code, act_code = parse_dtype(rows[best].weight_dtype, "weight"), parse_dtype(rows[best].act_dtype, "act")
    report["calibration"] = calibration_report(
        profile,
        backend_chosen=backend is None and calibration in (None, AUTO_CALIBRATION),
        moe_format=expert_moe_format(profile, model_spec, weight_code, act_code),
        gemm_formats=dense_gemm_formats(model_spec, weight_code, act_code),
    )
    if require_fit:
        check_fit(report)
    for other in {"prefill", "decode"} - ({"prefill", "decode"} if phase == "both" else {phase}):
        report.pop(other)
    # mesh_chosen: the fastest of several legal meshes; an engine deployment's mesh is its TP group.
    mesh_chosen = mesh is None and not engine
    notes = context_notes(model_spec, prompt_len + gen_len)
    if pipeline_default:
        notes.append(
            f"micro-batches {parallel['micro_batches']}: the engines keep up to PP micro-batches in flight, the "
            "batch split among them (vLLM's concurrent batches, SGLang's pp_max_micro_batch_size = "
            "max_running_requests / pp_size, TensorRT-LLM's executor); pass --micro-batches to score another"
        )
    notes += memory_context_notes(model_spec, report["memory"]["max_context_tokens"])
    notes += calibrated_format_notes(
        profile,
        chip,
        model_spec.experts,
        weight_code,
        act_code,
        mxfp4_experts=model_spec.mxfp4_experts,
        fp8_block_scales=model_spec.fp8_block_scales,
    )
    if mesh_chosen:
        notes += faster_mesh_notes(rows, result, best, phase)
    notes += mixed_checkpoint_notes(model_spec, weight_code)
    notes += activation_format_notes(chip, weight_code, act_code)
    notes += vision_notes(model_spec)
    if "decode" in report:
        notes += fp8_decode_notes(rows[best], float(result.decode_step_latency_s[best]), profile, overlap)
    if "prefill" in report:
        notes += fp8_prefill_notes(rows[best], float(result.prefill.latency_s[best]), profile, overlap)
    return {
        **report,
        "mesh_chosen": mesh_chosen,
        "engine_default": engine and tp is None,
        "overlap": overlap,
        "notes": notes,
    }


#: The weight shape whose GEMM :func:`fp8_decode_notes` quotes: 1024 x 1024 (2 MB in bf16), where
#: a call at decode's few rows is its fixed per-call cost, not its weight bytes.
PER_CALL_GEMM_N = PER_CALL_GEMM_K = 1024


def fp8_decode_notes(
    deployment: Deployment, decode_step_s: float, profile: CalibrationProfile | None, overlap: Overlap
) -> list[str]:
    """Why fp8 weights decode slower than bf16 ones, where they do: ``decode_step_s`` (this
    deployment's decode step with fp8 weights) against the same deployment with bf16 weights and
    activations under the same ``profile``. A decode step runs a few rows through every weight
    GEMM, and a profile's fp8 GEMM carries a per-call cost its bf16 one lacks (the activations'
    quantization, timed with the kernel in the measured rows), which at small batch can outweigh
    the halved weight bytes. Measured (data/kernels/gemm_perf.csv.gz, AIConfigurator's database;
    rows with m <= 16 and n x k <= 1024 x 1024, medians per chip): TensorRT-LLM fp8 12.4-14.3 us
    against bf16 2.2-3.3 us on h100/h200/b200/gb200/l40s; vLLM and SGLang fp8 4.7-6.0 us. The
    shipped profiles follow the small-m rows (on the database sample data/kernels was drawn from,
    its ~500 rows per group with m <= 16 that no fit saw: fp8 median log(predicted / measured)
    -0.011 to +0.035 per chip and engine, bf16 +0.008 to +0.033): the slower fp8 step is the
    measured kernels', not the fit's.
    TensorRT-LLM's rows are its dynamic per-tensor path: the collector (aiconfigurator
    collector/trtllm/collect_gemm.py) loads fp8 weights with no input_scale, so FP8QDQLinearMethod
    quantizes each call's activations with quantize_e4m3_per_tensor (a memset, an amax reduction
    kernel, the quantize kernel, then a cast of the bf16 scale) before cuBLASLt's fp8 GEMM; a
    Model Optimizer checkpoint's static input_scale runs one quantize kernel instead, which the
    database does not time. Said only under a profile, on a chip with fp8 tensor cores."""
    chip = deployment.hardware
    if (
        profile is None
        or deployment.weight_dtype != "fp8"
        or chip.kind != "gpu"
        or not chip.has_format(parse_dtype("fp8", "weight"))
    ):
        return []
    # fp8 activations only ride on fp8 weights (W8A8): the bf16 deployment has bf16 ones.
    act = "bf16" if deployment.act_dtype in ("fp8", "fp4") else deployment.act_dtype
    bf16 = replace(deployment, weight_dtype="bf16", act_dtype=act)
    bf16_step_s = float(
        estimate(Deployments.from_rows([bf16]), overlap=overlap, calibration=profile).decode_step_latency_s[0]
    )
    if decode_step_s <= bf16_step_s:
        return []
    fmt = "fp8_block" if deployment.model.fp8_block_scales else "fp8"
    note = (
        f"fp8 weights decode slower than bf16 ones here: {decode_step_s * 1e3:.3g} ms a step against "
        f"{bf16_step_s * 1e3:.3g} ms with bf16 weights (same deployment, {profile.name}). "
        + fp8_decode_cause_text(deployment, decode_step_s, bf16_step_s, profile, overlap)
    )
    if _block_scaled_alternative(profile, fmt) and "block scales runs" not in note:
        # TensorRT-LLM's block-scaled path (FP8BlockScalesLinearMethod: one 1 x 128 quantize kernel,
        # then DeepGEMM or its CUTLASS blockwise GEMM), measured in the same database.
        block_step_s = _block_scaled_decode_step_s(deployment, profile, overlap)
        note += (
            f". A checkpoint with 128 x 128 block scales runs TensorRT-LLM's block-scaled fp8 GEMM, measured too: "
            f"{block_step_s * 1e3:.3g} ms a step here"
        )
    return [note]


def _block_scaled_decode_step_s(deployment: Deployment, profile: CalibrationProfile, overlap: Overlap) -> float:
    """Decode step seconds of ``deployment`` served from a checkpoint with 128 x 128 block scales
    (the fp8 notes' alternative: the block-scaled GEMMs and fused MoE the profile measured)."""
    block = replace(deployment, model=deployment.model.model_copy(update={"fp8_block_scales": True}))
    steps = estimate(Deployments.from_rows([block]), overlap=overlap, calibration=profile).decode_step_latency_s
    return float(steps[0])


def fp8_decode_cause_text(
    deployment: Deployment, decode_step_s: float, bf16_step_s: float, profile: CalibrationProfile, overlap: Overlap
) -> str:
    """Why ``deployment``'s fp8 decode step (``decode_step_s``) is slower than its bf16 one
    (``bf16_step_s``) under ``profile``: the dense GEMMs' per-call cost (:func:`fp8_gemm_cost_text`),
    or, for an MoE model whose fp8 experts run a fused-MoE class of their own, that class where it
    makes most of the gap. The class's share is the step with the bf16 class's fitted parameters in
    its place (each class is fitted relative to its format's dense GEMM fit, so the swap keeps the
    fp8 weights' bytes and dense fit). Before 2026-12-06 the note gave the dense GEMMs' per-call cost
    alone, for MoE models too: Mixtral-8x7B at TP2 on H100s under vLLM, batch 32, decodes 46.1 ms a
    step in fp8 against 19.9 ms in bf16, and with bf16's class in the fp8 class's place the fp8 step
    is under bf16's: the whole gap is the fp8 fused-MoE class (vLLM's per-tensor FlashInfer CUTLASS
    kernel, a median 2.5x its bf16 Triton one on 8 expert slices measured in both at <= 64 tokens in
    data/kernels/moe_perf.csv.gz; 3.5x on H200s), not the 3 us a dense call the note quoted."""
    chip = deployment.hardware
    fmt = "fp8_block" if deployment.model.fp8_block_scales else "fp8"
    # Rows of one decode GEMM call: the batch over the attention DP ranks and the micro-batches.
    rows = max(1, deployment.batch // (deployment.data_parallel * deployment.micro_batches))
    gemm_text = fp8_gemm_cost_text(profile, chip, fmt, rows)
    fp8_class = moe_kernel_class(profile.moe, fmt) if deployment.model.experts else None
    bf16_class = moe_kernel_class(profile.moe, "bfloat16") if deployment.model.experts else None
    if fp8_class is None or bf16_class is None or fp8_class[0] == bf16_class[0]:
        return gemm_text
    moe = dict(profile.moe)
    moe[fp8_class[0]] = bf16_class[1]
    swapped = profile.model_copy(update={"moe": moe})
    swapped_step_s = float(
        estimate(Deployments.from_rows([deployment]), overlap=overlap, calibration=swapped).decode_step_latency_s[0]
    )
    gap_s = decode_step_s - bf16_step_s
    class_s = decode_step_s - swapped_step_s
    if class_s < 0.5 * gap_s:
        return gemm_text
    engine = ENGINE_DISPLAY_NAMES.get(profile.backend, profile.backend)
    text = (
        f"The routed experts make {'all' if swapped_step_s <= bf16_step_s else 'most'} of it: they run "
        f"{profile.name}'s {fp8_class[0]} fused-MoE class, fitted on {engine}'s measured fused-MoE kernels on "
        f"{chip.name} (data/kernels/moe_perf.csv.gz), and with its bf16 class's fitted parameters in its place "
        f"this fp8 step would take {swapped_step_s * 1e3:.3g} ms ({class_s * 1e3:.3g} ms less)"
    )
    if swapped_step_s > bf16_step_s:
        text += f"; the other {(swapped_step_s - bf16_step_s) * 1e3:.3g} ms: " + gemm_text
    block_class = moe_kernel_class(profile.moe, "fp8_block")
    if fmt == "fp8" and block_class is not None and block_class[0] == "fp8_block":
        # What to serve instead: a checkpoint with 128 x 128 block scales (Qwen3-30B-A3B-FP8 beside
        # Qwen3-30B-A3B) runs the block-scaled fused MoE, a class of its own in the profile (on H100/H200
        # vLLM the per-tensor kernel measures 1.6-5.5x the block-scaled Triton one: moe_kernel_time.MOE_FORMATS).
        block_step_s = _block_scaled_decode_step_s(deployment, profile, overlap)
        text += (
            f". A checkpoint with 128 x 128 block scales runs the fp8_block fused-MoE class, measured too: "
            f"{block_step_s * 1e3:.3g} ms a step here"
        )
    return text


def fp8_prefill_notes(
    deployment: Deployment, prefill_s: float, profile: CalibrationProfile | None, overlap: Overlap
) -> list[str]:
    """Why an MoE model's fp8 weights prefill slower than bf16 ones, where they do: ``prefill_s``
    (this deployment's prefill with fp8 weights) against the same deployment with bf16 weights and
    activations under the same ``profile``. A prefill's GEMMs are compute-bound, where fp8 doubles
    the peak, but an MoE model's routed experts run the engine's fused-MoE kernel, timed by the
    profile's class for the weights' format (moe_kernel_time), whose fitted token permutation
    (activation quantization and expansion per routed row) grows with the routed tokens as the
    GEMMs do. Measured (moe_kernel_time.MEASURED_FP8_MOE_PER_TOKEN_OVER_BF16): TensorRT-LLM's
    block-scaled fp8 fused MoE on H200 takes a median 1.29x bf16's time per token at >= 1024
    tokens (14 expert slices measured in both), vLLM's per-tensor one 2.34x; the note quotes the
    engine's measured ratio beside the class's permutation. Said only under a profile with a fused-
    MoE class for the format, on a chip with fp8 tensor cores (the decode side: fp8_decode_notes)."""
    chip = deployment.hardware
    model = deployment.model
    if (
        profile is None
        or deployment.weight_dtype != "fp8"
        or model.experts == 0
        or chip.kind != "gpu"
        or not chip.has_format(parse_dtype("fp8", "weight"))
    ):
        return []
    fmt = "fp8_block" if model.fp8_block_scales else "fp8"
    fp8_class = moe_kernel_class(profile.moe, fmt)
    bf16_class = moe_kernel_class(profile.moe, "bfloat16")
    if fp8_class is None or bf16_class is None:
        return []
    act = "bf16" if deployment.act_dtype in ("fp8", "fp4") else deployment.act_dtype
    bf16 = replace(deployment, weight_dtype="bf16", act_dtype=act)

    def prefill_of(row: Deployment, calibration: CalibrationProfile) -> float:
        scored = estimate(Deployments.from_rows([row]), overlap=overlap, calibration=calibration)
        return float(scored.prefill.latency_s[0])

    bf16_s = prefill_of(bf16, profile)
    if prefill_s <= bf16_s:
        return []

    def without_permutation(name: str) -> CalibrationProfile:
        moe = dict(profile.moe)
        moe[name] = moe[name].model_copy(update={"permute_passes": 0.0})
        return profile.model_copy(update={"moe": moe})

    # The permutation's seconds in each prefill: the same estimate with the class's passes at 0.
    fp8_permute_s = prefill_s - prefill_of(deployment, without_permutation(fp8_class[0]))
    bf16_permute_s = bf16_s - prefill_of(bf16, without_permutation(bf16_class[0]))
    engine = ENGINE_DISPLAY_NAMES.get(profile.backend, profile.backend)
    note = (
        f"fp8 weights prefill slower than bf16 ones here: {prefill_s:.3g} s against {bf16_s:.3g} s with bf16 "
        f"weights (same deployment, {profile.name}). The routed experts run {profile.name}'s {fp8_class[0]} "
        f"fused-MoE class, fitted on {engine}'s measured fused-MoE kernels on {chip.name} "
        f"(data/kernels/moe_perf.csv.gz), whose token permutation ({fp8_class[1].permute_passes:.3g} passes over "
        f"tokens x top-k x hidden a call, the activations quantized and expanded per routed row; bf16's class "
        f"{bf16_class[1].permute_passes:.3g} passes at twice the bytes) takes {fp8_permute_s:.3g} s of this prefill "
        f"against {bf16_permute_s:.3g} s in bf16"
    )
    measured = MEASURED_FP8_MOE_PER_TOKEN_OVER_BF16.get((profile.name, fp8_class[0]))
    if measured is not None:
        ratio, slices = measured
        note += (
            f". Measured, {engine}'s {fp8_class[0]} fused MoE on {chip.name} takes a median {ratio:.3g}x bf16's "
            f"time per token at >= 1024 tokens ({slices} expert slices measured in both)"
            + (
                ": the slower fp8 experts are the measured kernels', not the fit's"
                if ratio > 1
                else ": this gap is the fitted classes', not a measured one"
            )
        )
    return [note]


def _block_scaled_alternative(profile: CalibrationProfile, fmt: str) -> bool:
    """Whether a note on per-tensor fp8 under ``profile`` also quotes TensorRT-LLM's block-scaled
    fp8 kernels (measured, fitted in the profile): the per-tensor rows' cost is their dynamic
    quantization, which the block-scaled path does in one kernel."""
    return profile.backend == "trtllm" and fmt == "fp8" and "fp8_block" in profile.gemm


def fp8_gemm_cost_text(profile: CalibrationProfile, chip: HardwareSpec, fmt: str, rows: int) -> str:
    """Why a decode GEMM of ``rows`` rows costs more in ``fmt`` (fp8 or fp8_block) than in bf16
    under ``profile``: both kernels' fitted time a call at a PER_CALL_GEMM_N x PER_CALL_GEMM_K
    weight, where a call is its fixed cost, and what TensorRT-LLM's measured per-tensor rows time
    (:func:`fp8_decode_notes`)."""
    kernels = (fmt, "bfloat16", "fp8_block") if _block_scaled_alternative(profile, fmt) else (fmt, "bfloat16")
    # (a serving step's call: its weights cold, efficiency.gemm_time_s)
    seconds = {
        f: gemm_time_s(rows, PER_CALL_GEMM_N, PER_CALL_GEMM_K, f, chip, _gemm_params(profile, f)) for f in kernels
    }
    per_call_us = {f: float(s[()]) * 1e6 for f, s in seconds.items()}
    engine = ENGINE_DISPLAY_NAMES.get(profile.backend, profile.backend)
    text = (
        f"A decode GEMM of {rows} row{'s' if rows > 1 else ''} is mostly its per-call cost, and {profile.name}'s "
        f"{fmt} GEMM, fitted on {engine}'s measured GEMMs on {chip.name} (data/kernels/gemm_perf.csv.gz), costs "
        f"{per_call_us[fmt]:.3g} us a call against {per_call_us['bfloat16']:.3g} us in bf16 at a "
        f"{PER_CALL_GEMM_N} x {PER_CALL_GEMM_K} weight: more than the halved weight bytes save"
    )
    if profile.backend == "trtllm" and fmt == "fp8":
        return text + (
            ". Those TensorRT-LLM rows quantize each call's activations dynamically per tensor (the collector loads "
            "no input_scale: a memset, an amax reduction, the quantize kernel and a scale cast before cuBLASLt's fp8 "
            "GEMM); a Model Optimizer fp8 checkpoint's static input_scale runs one quantize kernel, so for it this "
            "fp8 step is an upper bound"
            + (
                f" (TensorRT-LLM's block-scaled fp8 GEMM, one quantize kernel, costs {per_call_us['fp8_block']:.3g} us "
                "a call at that weight)"
                if "fp8_block" in per_call_us
                else ""
            )
        )
    return (
        text
        + f" ({engine} quantizes the activations to fp8 in a kernel of its own before each fp8 GEMM, timed with it)"
    )


def vision_notes(model: ModelSpec) -> list[str]:
    """What an estimate says of a multimodal model's vision encoder: counted in the weight memory
    (the engines load it unless told the requests carry no images), and how to leave it out."""
    if not model.vision_params:
        return []
    return [
        f"{model.name}'s vision encoder and projector ({model.vision_params / 1e9:.2f}e9 parameters, "
        f"{model.vision_params * 2 / 1e9:.2f} GB in bf16, from vision_config) are counted in the weight memory: "
        "the engines load them with the language model unless run text-only (vLLM --language-model-only); they "
        "are not timed (text requests). To leave them out, remove vision_config from the config.json"
    ]


def activation_format_notes(chip: HardwareSpec, weight_dtype: int, act_dtype: int) -> list[str]:
    """A GPU deployment of 16-bit weights with narrower activations (``--weight-bits 16
    --act-bits fp8``): no GPU engine runs it. vLLM's and SGLang's fp8 and int8 W8A8 methods
    quantize the weights as well (``--quantization fp8``: Fp8LinearMethod; compressed-tensors
    W8A8), TensorRT-LLM's QuantAlgo has no 16-bit-weight mode with 8-bit activations (its
    narrow-activation modes are FP8, W8A8_SQ, W4A8_AWQ, NVFP4: every one narrows the weights). The
    estimate scores the what-if as asked and says so."""
    if chip.kind != "gpu" or weight_dtype != BF16 or BYTES_PER_ELEMENT[act_dtype] >= BYTES_PER_ELEMENT[BF16]:
        return []
    acts = dtype_name(act_dtype)
    return [
        f"16-bit weights with {acts} activations: no GPU engine runs this (their {acts} GEMMs take "
        f"{acts} weights too: vLLM/SGLang --quantization fp8, TensorRT-LLM FP8 are W8A8); scored as a what-if. "
        "For what they run use --weight-bits fp8 --act-bits fp8, or --act-bits 16"
    ]


def mixed_checkpoint_notes(model: ModelSpec, weight_dtype: int) -> list[str]:
    """What an estimate says of a checkpoint whose exclusion lists keep modules 16-bit (or that
    stores group scales): served in its format, which modules are charged and timed 16-bit;
    served in another, that the engine converts it (one format throughout)."""
    if not model.mixed_checkpoint:
        return []
    if weight_dtype != model.mixed_checkpoint_dtype:
        return [
            f"{model.name}'s {model.checkpoint_format} checkpoint keeps some modules 16-bit; served in "
            f"{dtype_name(weight_dtype)} every block weight is charged in it (the engine converts the checkpoint)"
        ]
    kept = [
        f"{name} in {count} of {most} blocks"
        for name, count, most in (
            ("attention", model.checkpoint_16bit_attention_layers, model.layers),
            ("the dense MLP", model.checkpoint_16bit_mlp_layers, model.layers - model.moe_layers),
            ("the shared experts", model.checkpoint_16bit_shared_expert_layers, model.moe_layers),
        )
        if count
    ]
    said = ""
    if kept:
        said = (
            f"keeps {', '.join(kept)} 16-bit (its quantization_config's exclusion list): charged at 2 bytes a"
            " weight and timed as bf16 GEMMs"
        )
    scales = model.checkpoint_scale_bytes_per_weight
    scale_text = f"its {model.checkpoint_format} weights carry {scales:.4g} B of group scales each" if scales else ""
    return [f"{model.name}'s checkpoint " + "; ".join(part for part in (said, scale_text) if part)]


def refuse_unlaunched_degrees(backend: str | None, model_spec: ModelSpec, tp: int, ep: int, dp: int) -> None:
    """A named engine is the one deployed on (as in a study): degrees it does not launch
    (:func:`cost_models.deployments.engine_problem_mask`) are no answer. One rule for tuner
    estimate and tuner simulate (which scored vLLM at TP 2 x EP 2 x DP 2 where estimate refused it)."""
    if backend is not None and engine_problem_mask(backend, model_spec.heads, model_spec.experts, tp, ep, dp):
        raise InvalidInputError(
            "backend",
            f"{backend} does not launch TP {tp} x EP {ep} x DP {dp} of {model_spec.name} (vLLM: EP 1 or "
            "TP x DP; TensorRT-LLM: MoE attention DP on TP 1)",
            "pass other degrees, or another --backend (SGLang runs any EP dividing TP x DP)",
        )


def context_notes(model: ModelSpec, context_tokens: int) -> list[str]:
    """What to tell a user whose requests pass the model's trained context (``max_context``, its
    config.json's max_position_embeddings; 0: unknown): the cost model scores any length, but
    vLLM and SGLang refuse a context limit past it without an override (vllm config/model.py
    _get_and_verify_max_len; sglang configs/model_config.py), and quality past it is not the
    model's."""
    if not model.max_context or context_tokens <= model.max_context:
        return []
    return [
        f"prompt + generated tokens ({context_tokens:,}) pass {model.name}'s trained context of "
        f"{model.max_context:,} tokens (max_position_embeddings): engines refuse that context without a "
        "RoPE-scaling or length override"
    ]


def memory_context_notes(model: ModelSpec, max_context_tokens: int | None) -> list[str]:
    """What to tell a user whose memory holds a longer context than the model was trained for
    (``max_context``; 0: unknown): ``max_context_tokens`` (None: windowed blocks stop the cache
    growing) is what the KV cache room holds, but vLLM and SGLang cap a request's context at
    max_position_embeddings without an override (vllm config/model.py _get_and_verify_max_len;
    sglang configs/model_config.py), so the number alone overstates what can be served."""
    if model.kind != "decoder" or not model.max_context:
        return []
    if max_context_tokens is not None and max_context_tokens <= model.max_context:
        return []
    held = (
        "any context (its windowed blocks stop growing)"
        if max_context_tokens is None
        else f"{max_context_tokens:,} tokens a sequence"
    )
    return [
        f"max context at this batch: the memory holds {held}, but {model.name}'s trained context "
        f"of {model.max_context:,} tokens (max_position_embeddings) is the most engines admit without a "
        "RoPE-scaling or length override"
    ]


def heads_split_error(
    model: ModelSpec, tp: int, *, field: str = "tp", whose: str | None = None, replica: str | None = None
) -> InvalidInputError:
    """The one-line error of a tensor-parallel size that does not divide the heads (vLLM, SGLang
    and TensorRT-LLM all refuse it), with the largest TP dividing both the heads and ``tp``: as
    ``--tp T --dp D`` over the same chips, or, where only tensor parallelism is charged (the
    serving model), as one replica of T chips (``replica``: the command, e.g. "simulate")."""
    problem = (
        f"{whose or f'TP {tp}'} does not divide {model.name}'s {model.heads} attention heads; no GPU engine runs it"
    )
    fitting = [t for t in range(1, tp) if model.heads % t == 0 and tp % t == 0]
    if not fitting:
        return InvalidInputError(field, problem, "use a tensor-parallel size dividing the heads")
    best = fitting[-1]
    if replica is not None:
        return InvalidInputError(field, problem, f"{replica} one replica of --chips {best}")
    return InvalidInputError(
        field, problem, f"pass --tp {best} --dp {tp // best} (for {tp} chips), or another --tp dividing {model.heads}"
    )


def kv_heads_split_error(
    model: ModelSpec, kv_heads: int, tp: int, engine: str, *, field: str = "tp", replica: str | None = None
) -> InvalidInputError:
    """The one-line error of a tensor-parallel size that neither divides the KV heads nor is a
    multiple of them, which ``engine`` (vLLM, SGLang: deployments.KV_HEAD_SPLITTING_ENGINES) refuses,
    with the TP sizes it runs (dividing the heads too, up to 64)."""
    runs = [
        t for t in range(1, 65) if model.heads % t == 0 and not kv_heads_split_problem(kv_heads, t)
    ]  # fmt: skip
    problem = (
        f"TP {tp} neither divides {model.name}'s {kv_heads} KV heads nor is a multiple of them; {engine} refuses it"
        " (QKVParallelLinear splits them evenly or replicates each)"
    )
    fitting = [t for t in runs if t < tp and tp % t == 0]
    if replica is not None and fitting:
        return InvalidInputError(field, problem, f"{replica} one replica of --chips {fitting[-1]}")
    fix = f"pass --tp {fitting[-1]} --dp {tp // fitting[-1]} (for {tp} chips), or " if fitting else "pass "
    return InvalidInputError(field, problem, fix + f"a --tp among {', '.join(map(str, runs))}")


def check_fit(report: dict) -> None:
    """``--require-fit``: an error when an estimate report's memory does not fit its chip."""
    if not report["memory"]["fits"]:
        need, have = report["memory"]["total_bytes_per_chip"], report["memory"]["capacity_bytes_per_chip"]
        raise InvalidInputError(
            "memory",
            f"needs {need / 1e9:.1f} GB per chip at batch {report['batch']}, {report['hardware']} has "
            f"{have / 1e9:.1f} GB",
            "use more chips, fewer bits, a smaller batch or context",
        )


def engine_micro_batches(batch: int, pp: int, dp: int) -> int:
    """The micro-batches a GPU engine runs a pipeline of ``pp`` stages with: up to ``pp`` in flight,
    one DP rank's ``batch / dp`` sequences split among them. vLLM (V1) schedules up to pp_size
    batches at once; SGLang caps each at pp_max_micro_batch_size, by default max_running_requests
    // pp_size (python/sglang/srt/managers/scheduler.py); TensorRT-LLM's executor keeps PP
    micro-batches in flight (pipeline_s). The most of 1..pp that split the rank's sequences
    evenly (the estimate's micro-batches are equal): batch 6 on PP 4 runs 3. Before, a pipeline
    named without --micro-batches was scored at 1, every stage idle but one: a prefill of
    llama-2-70b at batch 16 on TP 4 PP 2 took 2.04 s where the engines' 2 micro-batches take 1.51 s."""
    per_rank = max(1, batch // max(1, dp))
    return max(m for m in range(1, pp + 1) if per_rank % m == 0)


def engine_degrees(
    chip: HardwareSpec,
    chips: int | None,
    *,
    tp: int | None,
    pp: int | None,
    ep: int | None,
    dp: int | None,
    micro_batches: int | None,
    experts: int,
) -> tuple[int, tuple[int, int, int], dict[str, int]]:
    """(chips, the 1 x 1 x TP mesh, {pp, ep, dp, micro_batches}) as engines deploy ``chips``: a
    model of ``experts`` (0: dense, whose DP ranks are replicas: topology.chips_offered).

    Unnamed degrees: PP, EP, DP and micro-batches 1, except that without ``tp`` TP takes the
    chips of one NVLink domain (all of them, if fewer) and PP the domains (vLLM's and
    TensorRT-LLM's multi-node recipe: TP inside a node, PP across). ``chips`` (when given) must
    be TP x PP x DP; when not, it is that product."""
    pp_, dp_ = pp or 1, dp or 1
    if tp is None:
        if chips is None:
            raise InvalidInputError("chips", "missing", "pass --chips N or --tp N")
        if chips % (pp_ * dp_):
            raise InvalidInputError(
                "chips", f"{chips} is not a multiple of pp x dp ({pp_ * dp_})", "pass --chips = tp x pp x dp"
            )
        per_stage = chips // (pp_ * dp_)
        domain = domain_size(chip)
        tp = per_stage if pp is not None or dp is not None or per_stage <= domain else domain
        if pp is None and dp is None and per_stage > domain:
            if per_stage % domain:
                raise InvalidInputError(
                    "chips",
                    f"{chips} chips are not whole {chip.name} nodes of {domain}",
                    f"use a multiple of {domain}",
                )
            pp_ = per_stage // domain
    total = tp * pp_ * dp_
    if chips is not None and chips != total:
        # Name the degrees that would match: --chips 16 --tp 8 on H100s leaves PP and DP at 1 (a
        # named TP takes no domains as stages), so PP 2 or DP 2 is the user's to choose.
        ways = [f"--chips {total}"]
        if chips % total == 0:
            times = chips // total
            ways += [f"--dp {dp_ * times}"]
            ways += [f"--tp {tp * times}"] if tp * times <= domain_size(chip) else []
            # (Under a load the serving model runs no pipelines: tuner simulate, estimate --concurrency.)
            ways += [f"--pp {pp_ * times} (static estimates only: the serving model runs no pipelines)"]
        raise InvalidInputError(
            "chips",
            f"{chips} is not tp x pp x dp ({tp} x {pp_} x {dp_} = {total})",
            "pass " + ", or ".join(ways),
        )
    # Checked before the meshes are enumerated: enumeration grows with the chip count.
    if total > MAX_CHIPS:
        raise InvalidInputError("chips", f"{total} is more than {MAX_CHIPS} chips", "pass fewer chips")
    if not chips_offered(chip, tp, pp_, dp_, experts)[0]:
        raise InvalidInputError(
            "chips", f"{total} chips form no legal {chip.name} deployment", "use a chip count the hardware offers"
        )
    if straddling_tp_groups(chip, tp, total):
        domain = domain_size(chip)
        cut = next(g for g in range(total // tp) if (g * tp) // domain != ((g + 1) * tp - 1) // domain)
        raise InvalidInputError(
            "tp",
            f"TP {tp} on {chip.name}'s {domain}-chip NVLink domains (nodes) with {total} chips: ranks "
            f"{cut * tp}-{(cut + 1) * tp - 1} span two of them, whose all-reduces cross the network, which the "
            "TP group's own mesh does not show",
            f"use a TP dividing {domain} ({', '.join(str(d) for d in range(1, domain + 1) if domain % d == 0)}) "
            f"or over {domain}",
        )
    return total, (1, 1, tp), {"pp": pp_, "ep": ep or 1, "dp": dp_, "micro_batches": micro_batches or 1}


def candidate_meshes(
    chip: HardwareSpec, chips: int, mesh: str | tuple[int, int, int] | None
) -> list[tuple[int, int, int]]:
    """The given mesh (checked against the chip count and the hardware), or every legal one."""
    if chips > MAX_CHIPS:
        raise InvalidInputError("chips", f"{chips} is more than {MAX_CHIPS} chips", "pass a smaller chip count")
    network = network_for(chip)
    if mesh is not None:
        shape = parse_mesh(mesh) if isinstance(mesh, str) else tuple(mesh)
        if int(np.prod(shape)) != chips:
            raise InvalidInputError(
                "mesh",
                f"{'x'.join(map(str, shape))} has {int(np.prod(shape))} chips, not {chips}",
                "use a mesh whose axes multiply to --chips",
            )
        network.check_mesh(shape)  # a legal mesh has three axes
        return [(shape[0], shape[1], shape[2])]
    candidates = network.legal_meshes(chips)
    if not candidates:
        raise InvalidInputError(
            "chips",
            f"{chips} chips form no legal {chip.name} mesh",
            "use a chip count the hardware offers (tuner hardware)",
        )
    return candidates


def phase_latency_s(result: DeploymentEstimate, phase: str) -> np.ndarray:
    """What :func:`fastest_fitting` ranks deployments by: ``phase``'s latency, or both phases'."""
    return {
        "prefill": result.prefill.latency_s,
        "decode": result.decode.latency_s,
        "both": result.prefill.latency_s + result.decode.latency_s,
    }[phase]


def fastest_fitting(result: DeploymentEstimate, phase: str) -> int:
    """The index of the fastest deployment for ``phase`` among those that fit (any, if none fits)."""
    objective = phase_latency_s(result, phase)
    fits = result.memory.fits
    return int(np.argmin(np.where(fits, objective, np.inf))) if np.any(fits) else int(np.argmin(objective))


def faster_mesh_notes(rows: list[Deployment], result: DeploymentEstimate, best: int, phase: str) -> list[str]:
    """Where the mesh chosen (:func:`fastest_fitting`) is not the fastest legal one, the faster
    mesh and the memory it lacks: PaLM 540B at batch 64 on 64 TPU v4 runs on 16x2x2, 2.3x slower
    in prefill than 4x4x4, whose weights pad to 17.4 GB per chip against 17 GB and leave it
    0.2 GB short; a user reading only "best legal mesh" could not tell a little memory (a shorter
    context, a smaller batch, int8 KV) buys that."""
    objective = phase_latency_s(result, phase)
    fastest = int(np.argmin(objective))
    if fastest == best or not result.memory.fits[best]:
        return []
    what = {"prefill": "prefill", "decode": "decode", "both": "prefill + decode"}[phase]
    need = float(result.memory.total_bytes_per_chip[fastest])
    have = float(result.memory.capacity_bytes_per_chip[fastest])
    return [
        f"mesh {'x'.join(str(a) for a in rows[fastest].mesh)} would be "
        f"{float(objective[best] / objective[fastest]):.2f}x faster ({what}) but needs {need / 1e9:.1f} GB "
        f"per chip of {have / 1e9:.1f} GB"
    ]


def deployment_report(deployment: Deployment, result: DeploymentEstimate, index: int) -> dict:
    """One deployment and its estimate as plain data (the ``tuner estimate --json`` object)."""
    d = deployment
    return {
        "model": d.model.name,
        "params": {"total": d.model.params, "active_per_token": d.model.active_params},
        "hardware": d.hardware.name,
        "chips": d.chips,
        "mesh": "x".join(str(a) for a in d.mesh),
        "parallel": {
            "tp": d.tensor_parallel,
            "pp": d.pipeline_parallel,
            "ep": d.expert_parallel,
            "dp": d.data_parallel,
            "micro_batches": d.micro_batches,
        },
        "batch": d.batch,
        "prompt_len": d.prompt_len,
        "gen_len": d.gen_len,
        "ffn_layout": {"prefill": d.prefill_ffn_layout, "decode": d.decode_ffn_layout},
        "attn_sharding": {"prefill": d.prefill_attn_sharding, "decode": d.decode_attn_sharding},
        "weight_dtype": d.weight_dtype,
        "act_dtype": d.act_dtype,
        "kv_dtype": d.kv_dtype,
        "flash_attention": d.flash_attention,
        "kv_heads": d.resolved_kv_heads,
        "block": d.resolved_block,
        **estimate_report(result, index),
    }
