"""One iteration of an in-flight-batching engine: decode tokens and prefill chunks in one pass.

vLLM, SGLang and TensorRT-LLM run each scheduler iteration as one forward pass over every token
scheduled in it: one new token for each sequence in decode, and a chunk of prompt tokens for the
sequences being prefilled (Yu et al., "Orca", OSDI 2022, iteration-level scheduling; Agrawal et
al., "Sarathi-Serve", OSDI 2024, chunked prefill). The projections, norms, FFN and collectives see
all those tokens as one matrix (weights read once); attention does not mix: each decode token reads
its own sequence's KV cache, each prefill chunk attends causally within its prompt. So an iteration
is scored as three views of the same deployment through the same per-operator model as static
batches (calibrated per engine when a profile is given):

- the dense part: every operator but attention at ``decode_seqs + prefill_tokens`` tokens;
- decode attention: ``decode_seqs`` sequences at ``decode_context`` keys;
- prefill attention: the scheduled prompt tokens' share of whole prompts' causal attention;

and the block's time is their sum (combined with the collectives as a static pass is). The lm_head
scores one position per decode sequence and one per prompt that the chunk completes. This is the
decomposition NVIDIA AIConfigurator uses for its "mixed step" (non-attention at the summed tokens
plus each phase's attention), written here on the vectorized cost model.

Only the dense view needs the whole per-operator model (GEMMs, norms, collectives). Of the two
attention views an iteration keeps only the attention slots (and the lm_head at the positions
scored), so under a calibration profile with fused attention (what every serving engine runs)
they are scored as just those: the engine's attention kernel at the chip's sequences and heads
and one lm_head GEMM, the same functions :func:`cost_models.calibrated_times.calibrated_operator_times`
calls for those slots (results equal to the full views; tests/cost_models/test_iteration.py).
Shape-only work (validated configurations, sharding plans, the KV split where it does not depend
on the batch) is done once per set of deployments (:func:`iteration_shapes`) and shared by every
iteration scored on them, and rows with the same
deployment and the same whole number of scheduled tokens (a search's discrete concurrencies on a
few shapes) share one dense view.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from cost_models.calibrated_times import (
    _FORMAT_NAMES,
    _FORMAT_TABLE,
    _gemm_params,
    fused_attention_time_s,
)
from cost_models.calibration import CalibrationProfile, CudaGraphs, cuda_graph_replay, gemm_fit_format
from cost_models.conventions import DEFAULT
from cost_models.deployment import (
    OVERLAPS,
    OperatorTimes,
    Overlap,
    _Parallel,
    attention_operator_times,
    combine_block_s,
    dense_operator_times,
    expert_scale,
    kv_ways_by_phase,
    moe_dispatch_s,
    sharding_plans,
)
from cost_models.deployments import Deployments
from cost_models.dtypes import FP4
from cost_models.efficiency import (
    gemm_time_s,
)
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec
from cost_models.inference_configs import PREFILL, InferenceConfigs
from cost_models.operators import LM_HEAD, OP, operator_costs
from cost_models.partitioning import WEIGHT_OPS, ShardingPlan, distinct_rows
from cost_models.topology import Network

#: Operator slots whose cost depends on each sequence's own context, not on the token count.
ATTENTION_SLOTS: tuple[int, ...] = tuple(OP[name] for name in ("qk_matmul", "softmax", "sv_matmul", "fused_attention"))
_DENSE = np.ones(len(OP), dtype=bool)
_DENSE[list(ATTENTION_SLOTS)] = False
_DENSE[LM_HEAD] = False
_NOT_DENSE = ~_DENSE
_LM_HEAD_ROW = WEIGHT_OPS.index("lm_head")  # the lm_head's row of a ShardingPlan


@dataclass(frozen=True)
class IterationTimes:
    """Seconds of one engine iteration for each of n deployments, and its parts (whole pass:
    the parts are already multiplied by the layers)."""

    latency_s: np.ndarray
    dense_s: np.ndarray  # projections, norms, FFN of all scheduled tokens (layers x per block)
    decode_attention_s: np.ndarray
    prefill_attention_s: np.ndarray
    lm_head_s: np.ndarray


@dataclass(frozen=True)
class IterationShapes:
    """Shape-only work of n deployments, shared by every iteration scored on them: the validated
    single-chip configurations (batch and context are set per view), each phase's sharding plan
    (batch does not change it) and whether the attention views may be scored attention-only."""

    base: InferenceConfigs
    plans: dict[str, ShardingPlan]
    attention_only: bool
    # Each row's distinct deployment (every column but batch and lengths, which the dense view
    # replaces or does not read); None: no sharing of dense views between rows.
    shape_id: np.ndarray | None = None
    # Each phase's KV split ways where they do not depend on the batch (no row shards that phase's
    # attention by batch: kv_ways_by_phase then reads no batch), else None (computed per view).
    kv_ways: dict[str, np.ndarray | None] | None = None
    # Each phase's lm_head shapes under the hardware they were made for, filled by the first
    # iteration that needs them (shape-only: every later iteration on these shapes reuses them).
    lm_head: dict[str, tuple[HardwareSpec, _LmHeadShapes]] = field(default_factory=dict, compare=False, repr=False)
    # The DP ranks sharing each deployment's MoE layers and its EP degree, where some row has
    # either (the deployments are then one DP rank's view: tokens, attention and KV of one
    # rank; its MoE layers see every rank's tokens); None: every row 1.
    data_parallel: np.ndarray | None = None
    expert_parallel: np.ndarray | None = None

    def lm_head_shapes(self, phase: str, hardware: HardwareSpec) -> _LmHeadShapes:
        known = self.lm_head.get(phase)
        if known is not None and known[0] is hardware:
            return known[1]
        shapes = _lm_head_shapes(self.base, self.plans[phase], hardware)
        self.lm_head[phase] = (hardware, shapes)
        return shapes

    def take(self, index: np.ndarray) -> IterationShapes:
        """The shapes of the deployments ``index`` (a sub-batch, as ``Deployments.take``)."""
        return IterationShapes(
            self.base.take(index),
            {phase: plan.take(index) for phase, plan in self.plans.items()},
            self.attention_only,
            None if self.shape_id is None else self.shape_id[index],
            None
            if self.kv_ways is None
            else {phase: None if ways is None else ways[index] for phase, ways in self.kv_ways.items()},
            data_parallel=None if self.data_parallel is None else self.data_parallel[index],
            expert_parallel=None if self.expert_parallel is None else self.expert_parallel[index],
        )


#: A token count within this share of a whole number is that number (:func:`whole_where_rounding`).
_ROUNDING_SLACK = 1e-9


def whole_where_rounding(tokens: np.ndarray) -> np.ndarray:
    """``tokens`` with every count within :data:`_ROUNDING_SLACK` (relative) of a whole number set
    to it. A serving loop's mixed iteration at its chunked budget holds its decode sequences plus
    the budget left after them, ``d + (B - d)``, which rounds to B plus or minus an ulp: at
    B = 512, one ulp over started a fifth 128-row GEMM tile (and read m as unaligned), about 1%
    on that iteration, so the open loop's fixed point there was decided by the last bits of the
    rows scored beside it (4 H100s under TensorRT-LLM, 13.3 req/s, 3016-token chunked prompts:
    TTFT 0.477 s scored alone, 0.489 s beside another row; docs/serving.md). Fluid averages
    further from a whole number are kept as they are."""
    whole = np.rint(tokens)
    return np.where(np.abs(tokens - whole) <= _ROUNDING_SLACK * tokens, whole, tokens)


#: Share dense views between rows only when this share of the rows or fewer is distinct (below,
#: the gather and scatter would cost more than they save).
_SHARE_BELOW = 0.5
#: Up to this share of distinct rows a view whose rows are all whole is shared too, gathered back
#: in C order (the numbers of scoring every row): the open loop's one-sequence-and-a-prompt
#: iteration, 69% distinct rows on bench_serving's draw (prompt lengths repeat on a shape).
_SHARE_BELOW_C_ORDER = 0.8
#: Share the whole-token rows of a view that also holds fractional ones only when at least this
#: share of its rows are whole (fewer: the split and scatter cost about what they save).
_SHARE_AT_LEAST = 0.1


def _shape_id(d: Deployments, *more: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(one row of each distinct deployment, a small whole number per row: its distinct
    deployment), over every array column but batch and the lengths (columns a later version
    adds are included without a change here) and the columns ``more``."""
    columns: list[np.ndarray] = list(more)
    for f in fields(d):
        value = getattr(d, f.name)
        if f.name in ("batch", "prompt_len", "gen_len") or not isinstance(value, np.ndarray):
            continue
        columns.extend(value.reshape(len(d), -1).T)
    return distinct_rows(*columns)


def iteration_shapes(
    deployments: Deployments,
    calibration: CalibrationProfile | None,
    *,
    attention_only: bool = True,
    share_rows: bool = True,
    data_parallel: np.ndarray | None = None,
    expert_parallel: np.ndarray | None = None,
) -> IterationShapes:
    """The shapes :func:`iteration_times` needs for ``deployments``, computed once. Attention-only
    views apply under a calibration profile with fused attention in every row: there a view's
    attention slots are exactly the engine's fused kernel (the unfused slots are absent) and its
    lm_head one GEMM. Without a profile (the roofline) or with unfused attention the views are
    full passes of the per-operator model. ``share_rows``: rows whose deployment and scheduled
    tokens are equal (a search's discrete concurrencies on a few shapes) share one dense view.
    ``attention_only=False, share_rows=False`` is the previous full-view path (the reference the
    tests compare against). ``data_parallel``, ``expert_parallel``: per deployment, the DP ranks
    sharing its MoE layers and its EP degree, where ``deployments`` are one DP rank's view
    (:func:`~cost_models.deployment.rank_view`; None: 1)."""
    d = deployments
    dp, ep = _moe_degrees(len(d), data_parallel, expert_parallel)
    # One validated set of shapes; the views change only batch, phase and context (fractional
    # batches are the fluid averages they are, not inputs to validate).
    base = d.inference_configs("decode", np.ones(len(d)))
    fast = attention_only and calibration is not None and bool(np.all(base.flash_attention))
    if not share_rows:
        return IterationShapes(
            base, sharding_plans(d, base), fast, None, _batch_free_kv_ways(d), data_parallel=dp, expert_parallel=ep
        )
    # The plans and KV ways read only columns the distinct deployments cover (and the batch
    # where attention is sharded by it, where _batch_free_kv_ways leaves the ways out): computed
    # on one row of each (40 of bench_serving's 100,000) and expanded, the same numbers without
    # their own sorts of every row (26 of the 50 ms these shapes took per serve).
    first, shape_id = _shape_id(d, *(() if dp is None or ep is None else (dp, ep)))
    one = d.take(first)
    plans = {phase: plan.take(shape_id) for phase, plan in sharding_plans(one, base.take(first)).items()}
    kv_ways = _batch_free_kv_ways(one)
    if kv_ways is not None:
        kv_ways = {phase: None if ways is None else ways[shape_id] for phase, ways in kv_ways.items()}
    return IterationShapes(base, plans, fast, shape_id, kv_ways, data_parallel=dp, expert_parallel=ep)


def _moe_degrees(
    n: int, data_parallel: np.ndarray | None, expert_parallel: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The DP and EP columns an IterationShapes keeps: both None where every row has 1 of both
    (the tensor-parallel iteration, left as it was), else both as float arrays of n."""
    if data_parallel is None and expert_parallel is None:
        return None, None
    dp = np.ones(n) if data_parallel is None else np.broadcast_to(np.asarray(data_parallel, dtype=np.float64), (n,))
    ep = np.ones(n) if expert_parallel is None else np.broadcast_to(np.asarray(expert_parallel, dtype=np.float64), (n,))
    if np.all(dp == 1.0) and np.all(ep == 1.0):
        return None, None
    return np.ascontiguousarray(dp), np.ascontiguousarray(ep)


def _batch_free_kv_ways(d: Deployments) -> dict[str, np.ndarray | None] | None:
    """Each phase's KV split ways, once, for the phases whose attention no row shards by batch:
    there :func:`~cost_models.deployment.kv_ways_by_phase` reads the batch only through
    ``where(sharded, gcd(batch, chips), 0)``, all zeros, so the ways are the same at every token
    count a view scores (the same numbers as computing them per view, which sorts n keys twice).
    None where the deployments are not single-stage (kv_ways_by_phase raises its own error then,
    from the view that needs it)."""
    if not np.all(d.single_stage):
        return None
    ways = kv_ways_by_phase(d)
    return {phase: None if np.any(d.batch_sharded_attention(phase)) else ways[phase] for phase in ways}


def _kv_ways(d: Deployments, phase: str, shapes: IterationShapes) -> np.ndarray:
    """``phase``'s KV split ways of ``d`` (these shapes' deployments at some batch): the shapes'
    own where they do not depend on the batch, else computed at ``d``'s batch."""
    known = None if shapes.kv_ways is None else shapes.kv_ways.get(phase)
    return kv_ways_by_phase(d)[phase] if known is None else known


def _with(d: Deployments, batch: np.ndarray) -> Deployments:
    return replace(d, batch=np.asarray(batch, dtype=np.float64))


def _attention_view(
    view_d: Deployments,
    phase: str,
    configs: InferenceConfigs,
    network: Network,
    calibration: CalibrationProfile | None,
    plan: ShardingPlan,
    shapes: IterationShapes,
    replay: np.ndarray | None,
) -> np.ndarray:
    """A pass of the per-operator model with only the attention kernels and the lm_head timed
    (deployment.attention_operator_times) for ``view_d``'s ``configs``; where ``replay`` is
    given (the rows a CUDA graph replays, calibration.CudaGraphs), the other rows' kernels are
    timed again as an eager pass runs them (``cuda_graph=False``) and taken from that pass."""

    def view(cuda_graph: bool | None) -> np.ndarray:
        return attention_operator_times(
            view_d,
            phase,
            configs,
            operator_costs(configs, DEFAULT, slots="attention"),
            network,
            calibration,
            plan,
            _kv_ways(view_d, phase, shapes),
            cuda_graph=cuda_graph,
        )

    times = view(None)
    return times if replay is None else np.where(replay, times, view(False))


@dataclass(frozen=True)
class _LmHeadShapes:
    """The shape-only part of :func:`lm_head_s` for n configurations: the plan's per-chip k and
    n of the lm_head, 2 k n and where k n is positive, each kernel format's rows (None: every row)
    with their k and n, and where a configuration has an lm_head at all."""

    k: np.ndarray
    n: np.ndarray
    two_kn: np.ndarray
    positive: np.ndarray
    groups: list[tuple[str, np.ndarray | None, np.ndarray, np.ndarray]]
    present: np.ndarray


def _lm_head_shapes(c: InferenceConfigs, plan: ShardingPlan, hardware: HardwareSpec) -> _LmHeadShapes:
    index = plan.index
    k = plan.distinct_gemm_k[_LM_HEAD_ROW]
    n = plan.distinct_gemm_n[_LM_HEAD_ROW]
    if index is not None:
        k, n = k[index], n[index]
    formats = _FORMAT_TABLE[c.weight_dtype, c.act_dtype]
    if DEFAULT.lm_head_format == "16-bit":  # as calibrated_operator_times: a bf16 GEMM, the engines'
        formats = np.full(len(formats), _FORMAT_NAMES.index("bfloat16"))
    if not hardware.has_format(FP4):  # as calibrated_operator_times: fp4 x fp4 runs as fp8 there
        formats = np.where(formats == _FORMAT_NAMES.index("nvfp4"), _FORMAT_NAMES.index("fp8"), formats)
    groups: list[tuple[str, np.ndarray | None, np.ndarray, np.ndarray]] = []
    for code in np.unique(formats):
        rows = formats == code
        if bool(np.all(rows)):
            groups.append((_FORMAT_NAMES[int(code)], None, n, k))
        else:
            at = np.flatnonzero(rows)
            groups.append((_FORMAT_NAMES[int(code)], at, n[at], k[at]))
    present = c.decoder & (DEFAULT.lm_head_positions != "none")
    return _LmHeadShapes(k, n, 2.0 * k * n, k * n > 0, groups, present)


def lm_head_s(
    c: InferenceConfigs,
    chips: np.ndarray,
    plan: ShardingPlan,
    hardware: HardwareSpec,
    profile: CalibrationProfile,
    shapes: _LmHeadShapes | None = None,
) -> np.ndarray:
    """Seconds of the lm_head on one chip at ``c.batch`` positions (one per sequence, the default
    convention's decode), as ``calibrated_operator_times`` times it: a GEMM in the engine's format
    with m from the chip's FLOPs and the plan's per-chip k and n; 0 for an encoder. ``shapes``:
    the shape-only part for these configurations, plan and hardware, when already computed."""
    if shapes is None:
        shapes = _lm_head_shapes(c, plan, hardware)
    # The operator model's FLOPs (operators._lm_head: 2 x positions x d_model x vocab), split
    # over the chips as per_chip_costs splits a weight matmul's FLOPs, m = FLOPs / (2 k n) as
    # gemm_shapes_per_chip derives it (same operations, same order: the same floats).
    flops = 2.0 * c.batch * c.d_model * c.vocab / chips
    m = np.divide(flops, shapes.two_kn, out=np.zeros_like(shapes.k), where=shapes.positive)
    times = np.zeros(len(c))
    for fmt, at, n, k in shapes.groups:
        params = _gemm_params(profile, fmt)
        if at is None:
            times = np.asarray(gemm_time_s(m, n, k, fmt, hardware, params), dtype=np.float64)
        else:
            times[at] = gemm_time_s(m[at], n, k, fmt, hardware, params)
    return np.where(shapes.present, times, 0.0)


def _shared_rows(shape_id: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """The rows to score, for every row its scored row's place among them, and whether the
    view's times are gathered back in C order (:func:`_dense_view`); None: score every row. Rows
    at a whole number of tokens on the same deployment share one; rows at fractional token
    counts (a fluid average, all distinct) are scored each. Where only some rows are whole (the
    open loop's iterations pinned at 2 sequences or at their slots beside rows at a continuous
    fixed point: 34-42% of the rows of its full-batch and decode-only iterations on
    bench_serving's draw, which collapse to 0.4-5% of the rows) those are shared and the rest
    scored as they are."""
    whole = tokens == np.floor(tokens)
    n_whole = int(np.count_nonzero(whole))
    if n_whole == len(tokens):
        first, inverse = distinct_rows(shape_id, tokens)
        if len(first) <= _SHARE_BELOW * len(tokens):
            return first, inverse, False
        if len(first) <= _SHARE_BELOW_C_ORDER * len(tokens):
            return first, inverse, True
        return None
    if n_whole < _SHARE_AT_LEAST * len(tokens):
        return None
    at = np.flatnonzero(whole)
    first, inverse = distinct_rows(shape_id[at], tokens[at])
    if len(first) > _SHARE_BELOW * n_whole:
        return None
    fractional = np.flatnonzero(~whole)
    # Scored rows: the distinct whole rows, then the fractional ones, each at its own index.
    rows = np.concatenate((at[first], fractional))
    out = np.empty(len(tokens), dtype=np.intp)
    out[at] = inverse
    out[fractional] = np.arange(len(first), len(rows))
    return rows, out, True


@dataclass(frozen=True)
class _DenseSums:
    """What an iteration reads of its dense view: the dense slots' sum per block (``dense_s``),
    the same slots summed as :func:`~cost_models.deployment.forward_pass_s` sums a block (the
    slots before the lm_head plus those after it), the (zeroed) lm_head slot, the collectives
    and the fixed costs. The attention and lm_head slots are zero: the attention views replace
    them."""

    block_s: np.ndarray
    pass_block_s: np.ndarray
    lm_head_s: np.ndarray
    comm_block_s: np.ndarray
    layer_overhead_s: np.ndarray | float  # one per configuration under a collective_step_s
    step_overhead_s: float
    comm_critical_s: np.ndarray | float = 0.0  # OperatorTimes' (combine_block_s)
    # The MoE dispatch per block (deployment.moe_dispatch_s, spread over the MoE blocks' share),
    # part of comm_block_s too; 0.0 where no row has DP or EP.
    dispatch_block_s: np.ndarray | float = 0.0

    @classmethod
    def of(cls, times: OperatorTimes) -> _DenseSums:
        op = times.op_time_s  # this view's own: zeroed in place
        op[_NOT_DENSE] = 0.0
        # forward_pass_s's operations on the same array, in its order.
        pass_block = op[:LM_HEAD].sum(axis=0) + op[LM_HEAD + 1 :].sum(axis=0)
        return cls(
            op.sum(axis=0),
            pass_block,
            op[LM_HEAD],
            np.asarray(times.comm_block_s),
            np.asarray(times.layer_overhead_s),
            times.step_overhead_s,
            times.comm_critical_s,
        )

    def take(self, index: np.ndarray) -> _DenseSums:
        comm, overhead = self.comm_block_s, np.asarray(self.layer_overhead_s)
        return replace(
            self,
            layer_overhead_s=overhead.take(index) if overhead.ndim else overhead,
            block_s=self.block_s.take(index),
            pass_block_s=self.pass_block_s.take(index),
            lm_head_s=self.lm_head_s.take(index),
            comm_block_s=comm.take(index) if comm.ndim else comm,
            comm_critical_s=critical.take(index) if (critical := np.asarray(self.comm_critical_s)).ndim else critical,
            dispatch_block_s=dispatch.take(index) if (dispatch := np.asarray(self.dispatch_block_s)).ndim else dispatch,
        )

    def forward_pass_s(self, layers: np.ndarray, overlap: Overlap, extra_block_s: np.ndarray) -> np.ndarray:
        """:func:`~cost_models.deployment.forward_pass_s` from the sums, its operations in its order
        (the MoE dispatch, where charged, added to the block's work as the static step adds it:
        the expert GEMMs wait for it)."""
        if isinstance(self.dispatch_block_s, np.ndarray):
            extra_block_s = extra_block_s + self.dispatch_block_s
        block = self.pass_block_s + self.layer_overhead_s + extra_block_s
        combined = combine_block_s(block, self.comm_block_s, self.comm_critical_s, overlap)
        return layers * combined + self.lm_head_s + self.step_overhead_s


def _merged_times(n: int, parts: list[tuple[np.ndarray, OperatorTimes]]) -> OperatorTimes:
    """The operator times of n rows from those of disjoint groups of them (``(rows, times)``:
    the replayed and the eager rows of one dense view), each row's numbers its group's."""
    first = parts[0][1]
    op = np.empty((first.op_time_s.shape[0], n))

    def column(name: str) -> np.ndarray | float:
        values = [getattr(times, name) for _, times in parts]
        if not any(np.ndim(v) for v in values) and all(v == values[0] for v in values):
            return values[0]
        out = np.empty(n)
        for (rows, _), value in zip(parts, values, strict=True):
            out[rows] = value
        return out

    for rows, times in parts:
        op[:, rows] = times.op_time_s
    comm = column("comm_block_s")
    return OperatorTimes(
        op,
        np.broadcast_to(comm, (n,)).copy() if np.ndim(comm) == 0 else comm,  # type: ignore[arg-type]
        column("layer_overhead_s"),
        first.step_overhead_s,
        column("comm_critical_s"),
        frozenset.intersection(*(frozenset(times.zero_slots) for _, times in parts)),
    )


def _dense_view(
    d: Deployments,
    network: Network,
    tokens: np.ndarray,
    calibration: CalibrationProfile | None,
    phase: str,
    shapes: IterationShapes,
    replay: np.ndarray | None = None,
) -> _DenseSums:
    """The dense slots of one pass at ``tokens`` one-token sequences, summed as the iteration
    needs them (:class:`_DenseSums`). A row's times depend only on its own deployment and tokens,
    so where few rows are distinct (whole token counts on a few deployments) each distinct row
    is scored once and its times broadcast back: the same numbers as scoring every row.
    ``replay``: (n,) bool, the rows that are CUDA-graph replays (the others run eager:
    calibration.CudaGraphs); None: as ``phase`` has it (a decode step replays). Where both
    kinds are present (a rule of the engine's capture, not of the deployment) each group of the
    distinct rows is scored with its own profile and network view, the times put back in order."""
    n = len(d)
    shape_id = shapes.shape_id
    if replay is not None and shape_id is not None:
        shape_id = 2 * shape_id + (~replay)  # (a replayed and an eager row are never one)
    shared = _shared_rows(shape_id, tokens) if n > 1 and shape_id is not None else None
    kv_ways = None if shapes.kv_ways is None else shapes.kv_ways.get(phase)
    dp, ep = shapes.data_parallel, shapes.expert_parallel
    if shared is not None:
        rows = shared[0]
        d = d.take(rows)
        base, plan, tokens = shapes.base.take(rows), shapes.plans[phase].take(rows), tokens[rows]
        kv_ways = None if kv_ways is None else kv_ways[rows]
        if dp is not None and ep is not None:
            dp, ep = dp[rows], ep[rows]
        if replay is not None:
            replay = replay[rows]
    else:
        base, plan = shapes.base, shapes.plans[phase]
    dense_d = _with(d, tokens)
    dense_configs = replace(base, batch=tokens)
    if kv_ways is None:
        kv_ways = kv_ways_by_phase(dense_d)[phase]
    # Dense-only: no attention or lm_head slot (the attention views replace them), no roofline
    # totals (an iteration reads none); the other slots' numbers are the full pass's.
    ones = np.ones(len(d))
    # Under EP or DP, one DP rank's tokens through its TP group; its MoE layers shared with the
    # other DP ranks and spread over EP: the static decode step's charges (deployment._phase_times)
    # at this rank's tokens (one per sequence or prompt token): the experts all ranks' tokens wake,
    # the busiest EP rank's, and the dispatch / DP gather around the experts.
    scale = None if dp is None or ep is None else expert_scale(dense_configs, dp, ep, ones)

    def scored(at: np.ndarray | None, cuda_graph: bool | None) -> OperatorTimes:
        """The dense times of the rows ``at`` (None: every row), replayed or eager."""
        sub_d, sub_c, sub_plan, ways, sub_scale, sub_dp, sub_ep = dense_d, dense_configs, plan, kv_ways, scale, dp, ep
        if at is not None:
            sub_d, sub_c, sub_plan, ways = dense_d.take(at), dense_configs.take(at), plan.take(at), kv_ways[at]
            sub_scale = None if scale is None else (scale[0][at], scale[1][at])
            sub_dp, sub_ep = (None, None) if dp is None or ep is None else (dp[at], ep[at])
        return dense_operator_times(
            sub_d,
            phase,
            sub_c,
            operator_costs(sub_c, DEFAULT, slots="dense"),
            np.ones(len(sub_c)),
            network,
            calibration,
            sub_plan,
            ways,
            expert_scale=sub_scale,
            data_parallel=None if sub_dp is None or sub_ep is None or np.all(sub_dp == 1) else sub_dp,
            expert_parallel=None if sub_dp is None or sub_ep is None or np.all(sub_ep == 1) else sub_ep,
            cuda_graph=cuda_graph,
        )

    replayed = len(d) if replay is None else int(np.count_nonzero(replay))
    if replay is None:
        times = scored(None, None)
    elif replayed in (0, len(d)):
        times = scored(None, replayed == len(d))
    else:
        groups = [(np.flatnonzero(replay), True), (np.flatnonzero(~replay), False)]
        times = _merged_times(len(d), [(at, scored(at, graph)) for at, graph in groups])
    dispatch_block: np.ndarray | float = 0.0
    if dp is not None and ep is not None and np.any(dense_configs.moe_layers > 0):
        tp = d.tensor_parallel
        parallel = _Parallel(tp, ones, ep, dp, ones, tp * dp, scale)
        dispatch_block = moe_dispatch_s(network, parallel, dense_configs, ones) * np.divide(
            dense_configs.moe_layers, dense_configs.layers, out=np.zeros(len(d)), where=dense_configs.layers > 0
        )
        times = replace(times, comm_block_s=times.comm_block_s + dispatch_block)
    if shared is None:
        return replace(_DenseSums.of(times), dispatch_block_s=dispatch_block)
    _, inverse, c_order = shared
    # The layout of the (slots, n) times decides how the sums over the slots add: numpy sums a
    # C-ordered array slot after slot, column by column (as an unshared view's), and a gathered
    # ``[:, inverse]`` is Fortran-ordered, summed pairwise along each column (other roundings).
    # The sharing of all-whole views up to _SHARE_BELOW keeps the Fortran order of its previous
    # gather, the same numbers as before; the sharing added since sums the distinct rows'
    # C-ordered times (the numbers of scoring every row). Either way the distinct rows are summed
    # and the sums gathered.
    if c_order:
        return replace(_DenseSums.of(times), dispatch_block_s=dispatch_block).take(inverse)
    # The distinct rows' times in that Fortran order: each row's slots summed as in the gathered
    # array (the same column, contiguous), once per distinct row.
    sums = _DenseSums.of(replace(times, op_time_s=np.asfortranarray(times.op_time_s)))
    return replace(sums, dispatch_block_s=dispatch_block).take(inverse)


def iteration_times(
    deployments: Deployments,
    network: Network,
    *,
    decode_seqs: np.ndarray,
    decode_context: np.ndarray,
    prefill_tokens: np.ndarray,
    prefill_prompt_len: np.ndarray,
    prefill_cached_share: np.ndarray | float = 0.0,
    calibration: CalibrationProfile | None = None,
    overlap: Overlap = "overlapped",
    phase: str = "decode",
    shapes: IterationShapes | None = None,
    data_parallel: np.ndarray | float | None = None,
    expert_parallel: np.ndarray | float | None = None,
    cuda_graphs: CudaGraphs | None = None,
) -> IterationTimes:
    """Time of one iteration holding ``decode_seqs`` sequences in decode (mean context
    ``decode_context`` keys) and ``prefill_tokens`` prompt tokens of prompts ``prefill_prompt_len``
    long (of which ``prefill_cached_share`` came from the prefix cache and is not recomputed), for
    each deployment, under ``phase``'s layout and attention sharding. Arrays broadcast to n;
    fractional counts are fluid averages. ``network`` is the deployments' (calibrated) network.
    ``shapes``: :func:`iteration_shapes` of these deployments and calibration, when a caller
    scores several iterations on them (computed here otherwise, with ``data_parallel`` and
    ``expert_parallel``: see there). Under DP the deployments are one DP rank's view and every
    count here is that rank's: its sequences, tokens and attention (the ranks run in lockstep,
    their MoE layers shared). ``cuda_graphs``: which of the iterations the engine replays from
    CUDA graphs (:class:`~cost_models.calibration.CudaGraphs`, per deployment), the others run
    eager, their GEMMs timed with the profile's per-call host floors and their all-reduce with
    the eager implementation; None: every iteration under the decode layout replays (the rule
    before the engines' capture sizes were modelled)."""
    if overlap not in OVERLAPS:
        raise InvalidInputError("overlap", f"unknown value {overlap!r}", f"use {' or '.join(OVERLAPS)}")
    d = deployments
    n = len(d)
    if shapes is None:
        shapes = iteration_shapes(
            d,
            calibration,
            data_parallel=None if data_parallel is None else np.asarray(data_parallel, dtype=np.float64),
            expert_parallel=None if expert_parallel is None else np.asarray(expert_parallel, dtype=np.float64),
        )
    decode_seqs = np.broadcast_to(np.asarray(decode_seqs, dtype=np.float64), (n,))
    decode_context = np.maximum(np.broadcast_to(np.asarray(decode_context, dtype=np.float64), (n,)), 1.0)
    prefill_tokens = np.broadcast_to(np.asarray(prefill_tokens, dtype=np.float64), (n,))
    prompt = np.maximum(np.broadcast_to(np.asarray(prefill_prompt_len, dtype=np.float64), (n,)), 1.0)
    cached = np.broadcast_to(np.asarray(prefill_cached_share, dtype=np.float64), (n,))
    base = shapes.base
    layers = base.layers
    plan = shapes.plans[phase]

    # Which rows replay a CUDA graph (only under a profile does it change a number: the
    # roofline has no host floor), where the engine's capture is given; None: as the phase has it.
    replay = None
    if cuda_graphs is not None and calibration is not None and phase == "decode":
        replay = cuda_graphs.replays(decode_seqs, prefill_tokens)
        if bool(np.all(replay)):
            replay = None  # (every row replays: the phase's own rule, the same numbers)

    # Dense view: all scheduled tokens as one batch of one-token sequences.
    tokens = whole_where_rounding(np.maximum(decode_seqs + prefill_tokens, 1.0))
    dense = _dense_view(d, network, tokens, calibration, phase, shapes, replay)
    # The attention views replace the dense view's attention and lm_head slots (zeroed there).
    dense_block = dense.block_s

    # Decode view: the decode sequences' attention; the lm_head at every position scored (one
    # per decode sequence, one per prompt the iteration's chunk completes).
    uncached = np.maximum(1.0 - cached, 1e-9)
    prompts_completed = prefill_tokens / (prompt * uncached)
    scored = np.maximum(decode_seqs + prompts_completed, 1e-9)
    decode_configs = replace(base, batch=scored, seq_len=decode_context)
    chips = d.chips
    sharded = d.batch_sharded_attention(phase)
    if shapes.attention_only:
        assert calibration is not None  # iteration_shapes allows attention-only views only with one
        decode_kernel = fused_attention_time_s(decode_configs, chips, sharded, d.hardware, calibration)
        # (its GEMM as the dense view times it: without the per-call host floor in a CUDA-graph
        # replay under vLLM and SGLang, cost_models.calibration.cuda_graph_replay; with it in an
        # eager iteration)
        lm_head_profile = cuda_graph_replay(calibration) if phase == "decode" else calibration
        assert lm_head_profile is not None
        head_shapes = shapes.lm_head_shapes(phase, d.hardware)
        lm_head = lm_head_s(decode_configs, chips, plan, d.hardware, lm_head_profile, head_shapes)
        # (The eager rows' lm_head again only where the replay changed a fit it may read: the
        # 16-bit lm_head's bf16 GEMM has no host floor in any shipped profile.)
        read = {f for fmt, *_ in head_shapes.groups if (f := gemm_fit_format(calibration, fmt)) is not None}
        if replay is not None and any(lm_head_profile.gemm.get(f) is not calibration.gemm.get(f) for f in read):
            eager_head = lm_head_s(decode_configs, chips, plan, d.hardware, calibration, head_shapes)
            lm_head = np.where(replay, lm_head, eager_head)
    else:
        # Passes of the per-operator model with only the attention kernels and the lm_head (the
        # slots read here; the others' costs, the roofline totals and the collectives are not
        # computed); the KV ways shared where they do not depend on the batch.
        decode_view = _attention_view(
            _with(d, scored), phase, decode_configs, network, calibration, plan, shapes, replay
        )
        decode_kernel = decode_view[list(ATTENTION_SLOTS)].sum(axis=0)
        lm_head = decode_view[LM_HEAD]
    decode_attention = decode_kernel * (decode_seqs / scored)

    # Prefill view: whole prompts' causal attention, scaled to the uncached tokens scheduled. A
    # prompt whose first share c is cached computes the rows after it: (1 - c^2) of the triangle.
    if np.any(prefill_tokens > 0):
        prompts_in_kernel = np.maximum(prompts_completed, 1.0)  # one varlen kernel for the chunk's prompts
        prefill_configs = replace(base, batch=prompts_in_kernel).at_phase(PREFILL, prompt)
        if shapes.attention_only:
            assert calibration is not None
            whole_prompt_attention = fused_attention_time_s(prefill_configs, chips, sharded, d.hardware, calibration)
        else:
            prefill_view = _attention_view(
                _with(d, prompts_in_kernel), phase, prefill_configs, network, calibration, plan, shapes, replay
            )
            whole_prompt_attention = prefill_view[list(ATTENTION_SLOTS)].sum(axis=0)
        prefill_attention = whole_prompt_attention * (1.0 - cached**2) * prompts_completed / prompts_in_kernel

    else:  # a decode-only iteration: no prompt to attend over
        prefill_attention = np.zeros(n)
    attention_block = decode_attention + prefill_attention
    # The dense view's own lm_head (at every token) is replaced by the positions really scored
    # (its slot is zero above).
    latency = dense.forward_pass_s(layers, overlap, attention_block) + lm_head
    return IterationTimes(
        latency_s=latency,
        dense_s=layers * dense_block,
        decode_attention_s=layers * decode_attention,
        prefill_attention_s=layers * prefill_attention,
        lm_head_s=lm_head,
    )
