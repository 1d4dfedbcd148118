"""Discrete-event simulation of one deployment serving one workload, request by request.

The steady state of :mod:`cost_models.serving` is a formula over means; this replays the engine
loop it abstracts, so its assumptions (groups returning together, M/D/1 queueing, mean KV
occupancy) can be checked and the tails (P90, P99) read off:

- **Arrivals.** Closed loop: ``C`` clients, all sending at t = 0, each sending its next request
  the moment the last one finished. Open loop: Poisson at ``R`` requests/s. Lengths are drawn
  from a lognormal with the workload's mean and standard deviation (fixed when the deviation is
  0), rounded, at least 1; a seeded :class:`numpy.random.Generator` makes a run reproducible.
- **Scheduler** (vLLM V1 / SGLang / TensorRT-LLM in-flight batching): each iteration holds one
  token of every decoding sequence, then the prompts being prefilled, oldest first, up to
  ``max_num_tokens`` tokens (chunks of a prompt when prefill is chunked, whole prompts otherwise,
  at least one prompt per iteration as the steady state assumes, while the decodes leave any of
  the budget). Waiting requests are admitted first come first served while ``max_batch_size``
  sequences, the paged KV cache and the token budget allow: the decodes never pass
  ``max_num_tokens`` (:func:`cost_models.serving.token_limit`).
- **Paged KV cache.** Blocks of ``kv_block_size`` tokens out of the capacity of the steady
  state's memory model (:func:`cost_models.serving.kv_capacity_tokens`); a sequence holds its
  prompt's blocks from admission and one more each time its context crosses a block. When a
  decode step finds no free block, the most recently admitted sequence is preempted and later
  recomputed (vLLM's default), so the blocks in use never exceed the capacity.
- **Iteration time** is :func:`cost_models.iteration.iteration_times`, the steady state's own
  per-iteration cost, tabulated once on a grid (decode sequences x prefill tokens x prompt length
  x decode context, one vectorized call) and interpolated linearly: about 1 ms a call is too slow
  for ~10^5 iterations. Runs of decode-only iterations with no event in between (no arrival
  that could be admitted, no sequence finishing, no block running out) advance in one numpy step.

Per request: arrival, first token, finish; TTFT = first - arrival, TPOT = (finish - first) /
(gen - 1), E2E = finish - arrival. Pure numpy, no CLI code.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cost_models.calibrated_times import calibrated_format_notes, calibrated_network, check_profile, dense_gemm_formats
from cost_models.calibration import (
    AUTO_CALIBRATION,
    CalibrationProfile,
    CudaGraphs,
    calibration_report,
    cuda_graph_replay,
    resolve_calibration,
    serving_engine,
)
from cost_models.deployment import (
    OVERLAPS,
    Overlap,
    candidate_meshes,
    context_notes,
    engine_degrees,
    heads_split_error,
    kv_heads_split_error,
    mixed_checkpoint_notes,
    refuse_unlaunched_degrees,
    vision_notes,
)
from cost_models.deployments import (
    Deployment,
    Deployments,
    check_engine_kv_block_size,
    engine_problem_mask,
    refuse_engine_kv_cache,
)
from cost_models.dtypes import dtype_name
from cost_models.efficiency import M_ALIGN, TILE_M, WEIGHT_ONLY_GEMV_MAX_M
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, get_hardware
from cost_models.iteration import iteration_times
from cost_models.models import ModelSpec, get_model
from cost_models.moe import tokens_per_expert
from cost_models.serving import (
    DEFAULT_REQUESTS_PER_CLIENT,
    NO_OVERHEADS,
    EngineOverheads,
    ServingWorkloads,
    kv_capacity_tokens,
    lognormal_mu_sigma,
    make_workloads,
    rank_view_and_degrees,
    rank_workloads,
    refuse_sglang_out_of_memory,
    refuse_unmixed_sglang,
    resolve_overheads,
    serve,
    serving_cuda_graphs,
    serving_report,
)
from cost_models.serving_one import UNMIXED_SGLANG_FLAG_FIX, load_notes, unserved_degree_error
from cost_models.topology import Network, network_for, parse_mesh

DEFAULT_REQUESTS = 1000
MAX_REQUESTS = 10_000_000
PERCENTILES: tuple[int, ...] = (50, 90, 99)
#: Grid points per axis of the iteration table. Integers up to ~10 are exact on the decode and
#: prefill axes (a rounded geometric grid); the linear interpolation between points errs by under
#: 2% against direct calls uncalibrated, and for decode-only iterations under a calibration whose
#: GEMMs step with the row count (its classes and steps are kept: _IterationTable, _row_steps);
#: mixed iterations of a few hundred tokens there still read up to ~5% off, about 0.2% on the mean
#: (the tiles' waves between prefill points; tests/cost_models/test_serving_simulation.py).
_DECODE_POINTS = 40
_PREFILL_POINTS = 32
_CONTEXT_POINTS = 10
_PROMPT_POINTS = 6
_CALL_CHUNK = 20_000  # grid points per iteration_times call (bounds the temporaries)
_FAST_FORWARD_MAX = 4096  # decode-only iterations advanced in one numpy step
_PROGRESS_STEPS = 200  # on_progress calls per run, at most
#: An open loop whose queue at the last arrival holds this share of the requests (and at least
#: GROWN_QUEUE_MIN of them) ran past capacity: SimulationResult.queue_grew.
GROWN_QUEUE_SHARE = 0.1
GROWN_QUEUE_MIN = 10


class _IterationTable:
    """Iteration seconds on a grid (decode sequences, prefill tokens, prompt length, decode
    context), interpolated linearly along each axis (values clamp at the grid's ends).
    ``axes[1]`` holds one prefill grid per decode point (a row each, all of one length): the
    prefill axis with both sides of every step in the row count m = decode + prefill (``steps``)
    shifted by the row's decodes (``_shifted_rows``). A mixed iteration whose corners lie across a
    step from it interpolates between its two decode rows at its own m (each row read at m less
    the row's decodes), so that no row is read across a step from the iteration (``times``).
    ``unaligned``: where the calibration charges a GEMM whose row count m (the iteration's tokens,
    decode sequences + prefill tokens) is not a multiple of ``efficiency.M_ALIGN``, the same grid
    scored as if every m were unaligned, ``values`` then as if every m were aligned: an iteration
    reads the surface of its own class. One surface over integer grid points mixes the two (the
    grid's points fall in either class), and between points a blend of an aligned and an unaligned
    time is neither: Llama-3-70B in fp8 on 2 H100s (vLLM's profile) read decode iterations of 65
    sequences 6.6% fast and of 24-52 (aligned) 5% slow."""

    def __init__(
        self,
        axes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        values: np.ndarray,
        unaligned: np.ndarray | None = None,
        steps: list[float] | None = None,
    ) -> None:
        self.axes = axes
        self.values = values
        self.unaligned = unaligned
        self._decode = axes[0].tolist()
        self._prefill = [row.tolist() for row in axes[1]]
        self._prompt = axes[2].tolist()
        # The last row count of each step's lower side (floor(t): m <= floor(t) is below it).
        self._steps = sorted({float(math.floor(t)) for t in steps or []})

    @staticmethod
    def _corners(grid: list[float], x: float) -> list[tuple[int, float]]:
        if x <= grid[0]:
            return [(0, 1.0)]
        if x >= grid[-1]:
            return [(len(grid) - 1, 1.0)]
        hi = bisect.bisect_right(grid, x)
        frac = (x - grid[hi - 1]) / (grid[hi] - grid[hi - 1])
        return [(hi - 1, 1.0 - frac), (hi, frac)] if frac > 0.0 else [(hi - 1, 1.0)]

    def times(self, decode_seqs: float, prefill_tokens: float, prompt_len: float, context: np.ndarray) -> np.ndarray:
        """Seconds of iterations holding these counts, one per entry of ``context``."""
        values = self.values
        if self.unaligned is not None and round(decode_seqs + prefill_tokens) % M_ALIGN != 0:
            values = self.unaligned
        decode_corners = self._corners(self._decode, decode_seqs)
        prefill = [prefill_tokens] * len(decode_corners)
        if prefill_tokens > 0.0 and len(decode_corners) == 2:
            # Where the corners at the iteration's own prefill tokens lie across a step in m from
            # it, each decode row is read at the iteration's m instead (its prefill tokens m less
            # the row's decodes: every row has both sides of each step there), unless the upper
            # row would then hold under one prompt token (a chunk of a few tokens between decode
            # points). Elsewhere the rows are read at the iteration's prefill tokens: a whole
            # prompt of a fixed length is a point of every row (the rows' reads along m erred by
            # up to 0.4% there: Mixtral-8x7B on 2 H200s, 1024-token prompts).
            segment = bisect.bisect_left(self._steps, decode_seqs + prefill_tokens)
            across = any(
                bisect.bisect_left(self._steps, self._decode[i] + self._prefill[i][j]) != segment
                for i, _ in decode_corners
                for j, _ in self._corners(self._prefill[i], prefill_tokens)
            )
            along_m = [prefill_tokens + decode_seqs - self._decode[i] for i, _ in decode_corners]
            if across and along_m[-1] >= 1.0:
                prefill = along_m
        line = np.zeros(values.shape[3])
        for (i, wi), p in zip(decode_corners, prefill, strict=True):
            for j, wj in self._corners(self._prefill[i], p):
                for k, wk in self._corners(self._prompt, prompt_len):
                    line += (wi * wj * wk) * values[i, j, k]
        return np.interp(context, self.axes[3], line)


def _axis(low: float, high: float, points: int, *, zero: bool = False) -> np.ndarray:
    """A rounded geometric grid from low to high (whole numbers), with 0 first if asked."""
    low, high = max(low, 1.0), max(high, low, 1.0)
    grid = np.unique(np.rint(np.geomspace(low, high, points)))
    return np.concatenate([[0.0], grid]) if zero else grid


def _iteration_table(
    d: Deployments,
    network: Network,
    *,
    max_decode: float,
    max_prefill: float,
    prompt_range: tuple[float, float],
    context_range: tuple[float, float],
    cached_share: float,
    calibration: CalibrationProfile | None,
    overlap: Overlap,
    phase: str,
    data_parallel: float | None = None,
    expert_parallel: float | None = None,
    cuda_graphs: CudaGraphs | None = None,
    budget: float | None = None,
) -> _IterationTable:
    # Both sides of each step in the iteration's time by its row count m (decode sequences + prefill
    # tokens: the calibration's GEMM tile dispatch, the fused MoE kernel's row tiles) are points of
    # the decode axis and, shifted by each decode point, of that point's prefill row, so that no
    # interval interpolates across one (decode iterations of 63-65 sequences, around vLLM fp8's
    # 64-row tile switch, read 2-3% off; DeepSeek-V3 TP1 DP8 EP8 under h200-sglang, where 8 x m x
    # top-8 / 256 tokens an expert cross 128 at m = 512 and 1024, read mixed iterations of 24-60
    # decodes up to 14.7% over the direct cost just below a step and 13.4% under just above it,
    # and those of a simulated 16 req/s 10% over on the whole: tests/cost_models/
    # test_serving_simulation.py, docs/serving.md).
    decode_axis = _axis(1.0, max_decode, _DECODE_POINTS, zero=True)
    prefill_axis = _axis(1.0, max_prefill, _PREFILL_POINTS, zero=True)
    top = float(decode_axis[-1] + prefill_axis[-1])
    # The token budget too (``budget``, max_num_tokens): a loaded run's mixed iterations fill it
    # (decodes + prefill tokens = the budget), and interpolated between the prefill axis's points
    # they read high (the iteration's time is concave there: Llama-3-8B on one H100 under vLLM, a
    # 512-token budget, 2048/256 tokens, full-budget iterations +2.0% on average, up to 5.7%,
    # against iteration_times scored directly; 0.001% with the budget a point of every row).
    steps = sorted(
        set(_row_steps(calibration))
        | set(_moe_row_steps(d, data_parallel, top))
        | set(_graph_steps(cuda_graphs, calibration, d))
        | ({float(budget)} if budget is not None else set())
    )
    decode_axis = _with_steps(decode_axis, steps)
    axes = (
        decode_axis,
        _shifted_rows(prefill_axis, decode_axis, steps),
        _axis(*prompt_range, _PROMPT_POINTS),
        _axis(*context_range, _CONTEXT_POINTS),
    )
    shape = (axes[0].size, axes[1].shape[1], axes[2].size, axes[3].size)
    grid = [
        np.broadcast_to(a, shape).ravel()
        for a in (
            axes[0][:, None, None, None],
            axes[1][:, :, None, None],
            axes[2][None, None, :, None],
            axes[3][None, None, None, :],
        )
    ]

    def surface(profile: CalibrationProfile | None, nudge: float) -> np.ndarray:
        # nudge: taken off the decode sequences, or the prefill tokens of an iteration without any
        # (both at least 1 where taken): m a hair under a whole number, never across a step.
        decode, prefill = grid[0] - nudge * (grid[0] > 0), grid[1] - nudge * ((grid[0] == 0) & (grid[1] > 0))
        values = np.empty(grid[0].size)
        for start in range(0, values.size, _CALL_CHUNK):
            part = slice(start, start + _CALL_CHUNK)
            k = grid[0][part].size
            values[part] = iteration_times(
                d.take(np.zeros(k, dtype=np.int64)),
                network,
                decode_seqs=decode[part],
                prefill_tokens=prefill[part],
                prefill_prompt_len=grid[2][part],
                decode_context=grid[3][part],
                prefill_cached_share=cached_share,
                calibration=profile,
                overlap=overlap,
                phase=phase,
                data_parallel=data_parallel,
                expert_parallel=expert_parallel,
                cuda_graphs=None if cuda_graphs is None else cuda_graphs.take(np.zeros(k, dtype=np.int64)),
            ).latency_s
        return values.reshape(shape)

    aligned = _aligned_profile(calibration)
    if aligned is None:  # no charge for an unaligned m: one surface
        return _IterationTable(axes, surface(calibration, 0.0), steps=steps)
    # Aligned: the profile without the charge. Unaligned: the profile's own at m - 1e-6 (a row count
    # that is no multiple of M_ALIGN, on the same side of every step as m; 1e-6 of a sequence or a
    # token moves nothing else measurably).
    return _IterationTable(axes, surface(aligned, 0.0), unaligned=surface(calibration, _UNALIGNED_NUDGE), steps=steps)


_UNALIGNED_NUDGE = 1e-6


def _row_steps(calibration: CalibrationProfile | None) -> list[float]:
    """Row counts m past which a GEMM's time steps (efficiency.gemm_time: ``m <= threshold``):
    the tile dispatch's small_tile_max_m and mid_tile_max_m, TRT-LLM's weight-only GEMV bound."""
    if calibration is None:
        return []
    steps: set[float] = set()
    for g in calibration.gemm.values():
        steps.update(t for t in (g.small_tile_max_m, g.mid_tile_max_m) if t > 0)
        if g.weight_only_gemv_factor != 1.0:
            steps.add(float(WEIGHT_ONLY_GEMV_MAX_M))
    return sorted(steps)


def _graph_steps(cuda_graphs: CudaGraphs | None, calibration: CalibrationProfile | None, d: Deployments) -> list[float]:
    """The row count m past which the engine stops replaying CUDA graphs (calibration.CudaGraphs:
    vLLM's capture size in scheduled tokens, SGLang's cuda_graph_max_bs decode sequences), a step
    the grid keeps as an edge as it keeps the GEMM tiles': past it every GEMM pays its per-call
    host floor (DeepSeek-V3 fp8_block on 8 H200s under vLLM: 49.3 ms at 64 decodes + 448 prompt
    tokens, 82.9 ms at 449). SGLang's other edge, prefill tokens 0 to 1 (eager with any), is
    the prefill axis's first interval already. None where the eager pass costs what the replay
    does (no GEMM fit with a host cost, and no all-reduce or no eager one measured): the grid as
    before."""
    if cuda_graphs is None or calibration is None:
        return []
    all_reduce = "custom_eager" in calibration.collectives and bool(np.any(d.tensor_parallel > 1))
    if cuda_graph_replay(calibration) is calibration and not all_reduce:
        return []
    return [float(t) for t in np.unique(cuda_graphs.max_tokens) if np.isfinite(t)]


def _with_steps(axis: np.ndarray, steps: list[float]) -> np.ndarray:
    """The axis with both sides of each step inside its range added (floor(t), floor(t) + 1)."""
    low, high = float(axis[0]), float(axis[-1])
    extra = [v for t in steps for v in (math.floor(t), math.floor(t) + 1.0) if low < v < high]
    return np.unique(np.concatenate([axis, extra])) if extra else axis


#: Fused-MoE row tiles an expert up to which _moe_row_steps lists the steps.
_MOE_TILE_STEPS = 16


def _moe_row_steps(d: Deployments, data_parallel: float | None, top: float) -> list[float]:
    """Row counts m (a rank's iteration tokens, up to ``top``) past which the fused MoE kernel's
    time steps: the tokens one woken expert multiplies (moe.tokens_per_expert of the m x DP tokens
    that share the experts, as calibrated_times._expert_gemm_times_s takes them) cross a multiple
    of efficiency.TILE_M (gemm_time_s's M tiles, ceil(tokens / TILE_M) from TILE_M tokens on).
    DeepSeek-V3 (256 experts, top-8) at DP 8: 512, 1024, ... (146.2 ms at 24 decodes + 1000
    prompt tokens, 169.6 at 1001 under h200-sglang). Up to ``_MOE_TILE_STEPS`` tiles an expert:
    each further tile adds less (Mixtral-8x7B on 2 H200s under h200-trtllm, a prefill of 512 x j
    tokens, 128 x j an expert: the step 3.6% of the iteration at j = 1, 1.2% at 8, 0.9% at 15),
    and a long unchunked prompt would add two points to every prefill row per step."""
    model = d.models[int(d.model_index[0])]
    if model.experts <= 0 or model.experts_per_token <= 0 or top < 1.0:
        return []
    dp = 1.0 if data_parallel is None else float(data_parallel)
    m = np.arange(1.0, math.floor(top) + 2.0)
    per_expert = tokens_per_expert(m * dp, model.experts, model.experts_per_token)
    tiles = np.ceil(np.maximum(per_expert, float(TILE_M)) / TILE_M)
    return m[:-1][(np.diff(tiles) > 0) & (tiles[1:] <= _MOE_TILE_STEPS)].tolist()


def _shifted_rows(prefill_axis: np.ndarray, decode_axis: np.ndarray, steps: list[float]) -> np.ndarray:
    """One prefill grid per decode point d (rows of one length): the axis with both sides of each
    step t in m shifted to the row's prefill tokens (floor(t) - d, floor(t) - d + 1), rows short of
    the longest one filled with the midpoints of their widest intervals."""
    rows = [_with_steps(prefill_axis, [t - float(n) for t in steps]).tolist() for n in decode_axis]
    width = max(len(row) for row in rows)
    for row in rows:
        while len(row) < width:  # (a row short of the longest has an interval of 2 or more)
            gap = max(range(len(row) - 1), key=lambda i: row[i + 1] - row[i])
            row.insert(gap + 1, float(math.floor((row[gap] + row[gap + 1]) / 2.0)))
    return np.array(rows)


def _aligned_profile(calibration: CalibrationProfile | None) -> CalibrationProfile | None:
    """The profile with no GEMM charged for an unaligned row count (efficiency.GemmParams
    unaligned_m_s, unaligned_m_slowdown), or None where none is (nothing to tell apart)."""
    if calibration is None:
        return None
    charged = {k for k, g in calibration.gemm.items() if g.unaligned_m_s > 0 or g.unaligned_m_slowdown > 1}
    if not charged:
        return None
    free = {"unaligned_m_s": 0.0, "unaligned_m_slowdown": 1.0}
    gemm = {k: g.model_copy(update=free) if k in charged else g for k, g in calibration.gemm.items()}
    return calibration.model_copy(update={"gemm": gemm})


def _check_run(requests: int, seed: int) -> None:
    """The run's size and seed, checked before anything is built from them."""
    if isinstance(requests, bool) or not isinstance(requests, (int, np.integer)) or not 1 <= requests <= MAX_REQUESTS:
        raise InvalidInputError(
            "requests", f"must be a whole number in 1..{MAX_REQUESTS}, got {requests!r}", "pass --requests 1000"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError("seed", f"must be a whole number >= 0, got {seed!r}", "pass --seed 0 or more")


def _check_clients(requests: int, concurrency: float) -> None:
    """A closed loop of C clients needs at least C requests: each client sends its first at t = 0,
    so with fewer only ``requests`` clients ever send, while the title, the JSON's workload and the
    analytic steady state (C sequences running) say C (8 clients, 3 requests: analytic running 8
    and 25.9 requests/s, simulated 2.9 and 14.3)."""
    if math.isfinite(concurrency) and requests < concurrency:
        raise InvalidInputError(
            "requests",
            f"{requests} is fewer than the {int(concurrency)} clients of --concurrency: "
            f"only {requests} clients would ever send",
            f"pass --requests {int(concurrency)} or more (several per client to pass the first burst)",
        )


def _lengths(rng: np.random.Generator, mean: float, std: float, n: int) -> np.ndarray:
    """Whole lengths >= 1: fixed when ``std`` is 0, else lognormal with that mean and std
    (right-skewed like real prompt and output lengths, never negative)."""
    if std <= 0.0:
        return np.full(n, max(round(mean), 1), dtype=np.int64)
    drawn = rng.lognormal(*lognormal_mu_sigma(mean, std), n)
    return np.maximum(np.rint(drawn), 1).astype(np.int64)


def _stats(values: np.ndarray) -> dict[str, float | None]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": None, **{f"p{q}": None for q in PERCENTILES}}
    out: dict[str, float | None] = {"mean": float(values.mean())}
    for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True):
        out[f"p{q}"] = float(v)
    return out


@dataclass(frozen=True)
class SimulationResult:
    """Per-request times (seconds from the start of the run) and lengths, and run totals."""

    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    prompt_len: np.ndarray
    gen_len: np.ndarray
    chips: int
    iterations: int
    mixed_iterations: int  # iterations holding prefill
    preemptions: int
    peak_running: int
    mean_running: float  # time-weighted sequences in the running batch
    peak_kv_blocks: int
    kv_capacity_blocks: int
    #: TTFT spent outside the engine loop (HTTP, tokenization): the client sees it, the engine not.
    request_overhead_s: float = 0.0
    #: Open loop: requests waiting for admission when the last one arrived (0 in a closed loop).
    queued_at_last_arrival: int = 0
    #: Drawn prompts longer than the token budget without chunked prefill, which the engine
    #: refuses: simulated cut to the budget (their prefill and KV shorter than drawn).
    prompts_clipped: int = 0
    #: DP ranks of the deployment: the run is one rank's (its requests, running batch and KV
    #: cache), the others alike in lockstep; the deployment's rates are this many times its.
    data_parallel_ranks: int = 1
    #: Seconds the running batch held each count of sequences (index: the count, prefilling ones
    #: included, idle spells at 0) while the load is on (the window of
    #: :meth:`steady_tokens_per_s`: from a tenth of the way from the first to the last arrival
    #: until the last; the whole run where they coincide): the batch's distribution over time,
    #: which the steady state's ``running`` (its mean, by Little's law) and ``running_p999`` (its
    #: 99.9th percentile) describe. (``mean_running`` is the whole run's mean, drain included.)
    running_time_s: np.ndarray | None = None

    def running_quantile(self, q: float) -> float:
        """The running batch's ``q`` quantile over time (the smallest count the batch stays at or
        under for a share ``q`` of the run): by PASTA, the count a Poisson arrival finds with
        probability ``q``. NaN without :attr:`running_time_s`."""
        if self.running_time_s is None or not self.running_time_s.sum() > 0.0:
            return math.nan
        share = np.cumsum(self.running_time_s) / self.running_time_s.sum()
        return float(np.searchsorted(share, q - 1e-12, side="left"))

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.arrival_s + self.request_overhead_s

    @property
    def tpot_s(self) -> np.ndarray:
        """NaN for requests generating one token (they have no time per output token)."""
        steps = self.gen_len - 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(steps > 0, (self.finish_s - self.first_token_s) / np.maximum(steps, 1.0), np.nan)

    @property
    def e2e_latency_s(self) -> np.ndarray:
        return self.finish_s - self.arrival_s + self.request_overhead_s

    @property
    def simulated_s(self) -> float:
        """The simulated clock at the last finish (from t = 0, before an open loop's first arrival)."""
        return float(self.finish_s.max())

    @property
    def run_s(self) -> float:
        """First arrival to last finish: a benchmark's duration, which starts with its first request.
        (An open loop's first arrival comes 1 / R after t = 0, idle time no benchmark counts: one
        request at 0.01/s read 0.0096 tokens/s over the clock, 23 over the run.)"""
        return float(self.finish_s.max() - np.nanmin(self.arrival_s))

    def steady_tokens_per_s(self) -> float:
        """Output tokens per second while the load is on: from a tenth of the way from the first to
        the last request's arrival until the last (the run's start is a burst or an empty engine,
        its end a drain with fewer and fewer requests, neither the steady state); where every
        request arrives at once (one request, or a closed loop of as many clients) there is no such
        window: the whole run's rate. A request's first token lands at its first-token time and the
        rest evenly until its finish (one per iteration)."""
        first, end = float(np.nanmin(self.arrival_s)), float(np.nanmax(self.arrival_s))
        start = first + 0.1 * (end - first)
        if end <= start:
            return float(self.gen_len.sum()) / self.run_s
        first_in = ((self.first_token_s >= start) & (self.first_token_s < end)).sum()
        span = np.maximum(self.finish_s - self.first_token_s, 1e-30)
        overlap = np.clip(np.minimum(self.finish_s, end) - np.maximum(self.first_token_s, start), 0.0, None)
        rest = np.where(self.gen_len > 1, (self.gen_len - 1) * overlap / span, 0.0).sum()
        return float(first_in + rest) / (end - start)

    def summary(self) -> dict[str, Any]:
        """Mean, P50, P90, P99 of TTFT, TPOT and E2E (seconds); output tokens per second of the
        deployment and per chip over the whole run (first arrival to last finish, as a benchmark
        reports it) and while the load is on (:meth:`steady_tokens_per_s`); run totals. JSON safe.
        Under DP the rates are the deployment's (DP x the simulated rank's), the counts the rank's."""
        ranks = self.data_parallel_ranks
        tokens_per_s = ranks * float(self.gen_len.sum()) / self.run_s
        return {
            "ttft_s": _stats(self.ttft_s),
            "tpot_s": _stats(self.tpot_s),
            "e2e_latency_s": _stats(self.e2e_latency_s),
            "tokens_per_s": tokens_per_s,
            "tokens_per_s_per_chip": tokens_per_s / self.chips,
            "steady_tokens_per_s": ranks * self.steady_tokens_per_s(),
            "requests_per_s": ranks * self.finish_s.size / self.run_s,
            "requests": int(self.finish_s.size),
            "simulated_s": self.simulated_s,
            "iterations": self.iterations,
            "mixed_iterations": self.mixed_iterations,
            "preemptions": self.preemptions,
            "peak_running": self.peak_running,
            "mean_running": self.mean_running,
            "peak_kv_blocks": self.peak_kv_blocks,
            "kv_capacity_blocks": self.kv_capacity_blocks,
            "queued_at_last_arrival": self.queued_at_last_arrival,
            "prompts_clipped": self.prompts_clipped,
            "queue_grew": self.queue_grew(),
        }

    def queue_grew(self) -> bool:
        """Whether the arrivals outpaced the engine (an open loop past capacity): at least
        :data:`GROWN_QUEUE_SHARE` of the requests (and :data:`GROWN_QUEUE_MIN`) still waited for
        admission when the last one arrived. Past capacity the queue grows as (R - mu) t, so at
        the last arrival (t = n / R) it holds n (1 - mu / R) of the n requests: the share of the
        load the engine did not serve, and the simulated latencies grow with the run's length
        (no steady state). Below capacity the queue stays near its steady size, about
        rho^2 / (2 (1 - rho)) prompts (M/D/1), whatever the run's length."""
        queued = self.queued_at_last_arrival
        return queued >= GROWN_QUEUE_MIN and queued >= GROWN_QUEUE_SHARE * self.finish_s.size


def simulate_serving(
    deployments: Deployments,
    workloads: ServingWorkloads,
    *,
    requests: int = DEFAULT_REQUESTS,
    seed: int = 0,
    calibration: CalibrationProfile | None = None,
    overlap: Overlap = "overlapped",
    phase: str = "decode",
    on_progress: Callable[[int, int], None] | None = None,
    overheads: EngineOverheads | None = None,
) -> SimulationResult:
    """Serve ``requests`` requests of the one workload on the one deployment (length-1 batches:
    a row each) and record when each arrived, got its first token and finished. ``on_progress``
    is called with (finished, requests) as the run goes (at most a few hundred times).
    ``overheads``: the engine's host costs, as in :func:`cost_models.serving.serve` (None: the
    calibration's engine's fit; none without a calibration): an iteration takes the longer of
    its GPU time and its host time. Under DP (and EP) one DP rank is simulated, at 1/DP of the
    clients or of the rate and its share of the knobs (:func:`cost_models.serving.rank_workloads`),
    its iterations charged the MoE layers of every rank at the same tokens (the steady state's
    :func:`~cost_models.iteration.iteration_times` at the degrees): ``requests`` are the rank's."""
    whole, w = deployments, workloads
    if len(whole) != 1 or len(w) != 1:
        raise InvalidInputError(
            "simulate", f"got {len(whole)} deployments and {len(w)} workloads", "pass one row of each (take(i))"
        )
    d, data_parallel, expert_parallel = rank_view_and_degrees(whole)
    ranks = 1 if data_parallel is None else int(data_parallel[0])
    if data_parallel is not None:
        clients = float(w.concurrency[0])
        if np.isfinite(clients) and clients % ranks:
            raise InvalidInputError(
                "concurrency",
                f"{clients:g} clients do not split evenly over data_parallel {ranks} (each rank simulates its share)",
                f"use a multiple of {ranks}",
            )
        w = rank_workloads(d, w, data_parallel)
    _check_run(requests, seed)
    _check_clients(int(requests), float(w.concurrency[0]))
    if overlap not in OVERLAPS:
        raise InvalidInputError("overlap", f"unknown value {overlap!r}", f"use {' or '.join(OVERLAPS)}")
    network = network_for(d.hardware)
    if calibration is not None:
        check_profile(calibration, d.hardware)
        network = calibrated_network(network, d.hardware, calibration)
    overheads = resolve_overheads(calibration, overheads)

    n = int(requests)
    block = int(w.kv_block_size[0])
    # (Of the whole deployment: the memory model takes one rank's view of it, experts split over DP.)
    refuse_sglang_out_of_memory(whole, w, phase)
    capacity_tokens = float(kv_capacity_tokens(whole, w, phase)[0])
    capacity_blocks = int(capacity_tokens // block)
    max_tokens, max_batch = int(w.max_num_tokens[0]), int(w.max_batch_size[0])
    chunked = bool(w.chunked_prefill[0])
    hit = float(w.prefix_hit_rate[0])

    rng = np.random.default_rng(seed)
    prompt = _lengths(rng, float(w.prompt_len[0]), float(w.prompt_len_std[0]), n)
    gen = _lengths(rng, float(w.gen_len[0]), float(w.gen_len_std[0]), n)
    clipped = 0
    if not chunked:  # an engine without chunked prefill rejects a prompt over its token budget
        longest = int(max_tokens / (1.0 - hit))
        clipped = int(np.count_nonzero(prompt > longest))  # said in the report: they change the tails
        prompt = np.minimum(prompt, longest)
    uncached = np.clip(np.rint(prompt * (1.0 - hit)), 1, None).astype(np.int64)
    need_blocks = -(-(prompt + gen) // block)
    if int(need_blocks.max()) > capacity_blocks:
        raise InvalidInputError(
            "memory",
            f"the KV cache holds {int(capacity_tokens)} tokens, a request needs up to {int((prompt + gen).max())}",
            "use more chips, fewer KV bits or shorter requests",
        )
    closed = bool(np.isfinite(w.concurrency[0]))
    arrival = np.full(n, np.nan)
    if closed:
        clients = min(int(w.concurrency[0]), n)
        arrival[:clients] = 0.0
    else:
        arrival[:] = np.cumsum(rng.exponential(1.0 / float(w.request_rate[0]), n))

    # Reachable ranges for the iteration table: the running batch, one iteration's prefill (whole
    # recomputed sequences after a preemption may exceed the budget when prefill is not chunked),
    # prompts, decode contexts.
    max_seq = int((prompt + gen).max())
    max_decode = min(max_batch, int(capacity_tokens // max(int(prompt.min()) + 1, 1)), n)
    if closed:
        max_decode = min(max_decode, int(w.concurrency[0]))
    table = _iteration_table(
        d,
        network,
        max_decode=max(max_decode, 1),
        max_prefill=max_tokens if chunked else max(max_tokens, max_seq),
        prompt_range=(float(prompt.min()), float(prompt.max())),  # a recompute clamps to the longest prompt
        context_range=(float(prompt.min() + 1), float(max_seq)),
        cached_share=hit,
        calibration=calibration,
        overlap=overlap,
        phase=phase,
        data_parallel=None if data_parallel is None else float(data_parallel[0]),
        expert_parallel=None if expert_parallel is None else float(expert_parallel[0]),
        cuda_graphs=serving_cuda_graphs(d, w, data_parallel),
        budget=float(max_tokens),
    )
    state = _Engine(
        table=table,
        arrival=arrival,
        prompt=prompt,
        gen=gen,
        uncached=uncached,
        block=block,
        capacity_blocks=capacity_blocks,
        max_tokens=max_tokens,
        max_batch=max_batch,
        chunked=chunked,
        closed=closed,
        on_progress=on_progress,
        overheads=overheads,
    )
    state.run()
    return SimulationResult(
        arrival_s=arrival,
        first_token_s=state.first,
        finish_s=state.finish,
        prompt_len=prompt,
        gen_len=gen,
        chips=int(whole.chips[0]),
        iterations=state.iterations,
        mixed_iterations=state.mixed_iterations,
        preemptions=state.preemptions,
        peak_running=state.peak_running,
        mean_running=state.running_seconds / max(state.now, 1e-30),
        peak_kv_blocks=state.peak_blocks,
        kv_capacity_blocks=capacity_blocks,
        request_overhead_s=overheads.request_overhead_s,
        queued_at_last_arrival=state.queued_at_last_arrival,
        prompts_clipped=clipped,
        data_parallel_ranks=ranks,
        running_time_s=state.running_time(*_load_window(arrival, float(state.now))),
    )


def _load_window(arrival: np.ndarray, last_s: float) -> tuple[float, float]:
    """While the load is on, as :meth:`SimulationResult.steady_tokens_per_s` takes it: from a
    tenth of the way from the first to the last arrival until the last; where every request
    arrives at once, the whole run (0 to ``last_s``)."""
    first, end = float(np.nanmin(arrival)), float(np.nanmax(arrival))
    start = first + 0.1 * (end - first)
    return (start, end) if end > start else (0.0, last_s)


class _Engine:
    """The engine loop's state: per-request arrays (tokens in the KV cache, prefill tokens to
    compute, tokens left to generate) and the running batch in admission order."""

    def __init__(
        self,
        *,
        table: _IterationTable,
        arrival: np.ndarray,
        prompt: np.ndarray,
        gen: np.ndarray,
        uncached: np.ndarray,
        block: int,
        capacity_blocks: int,
        max_tokens: int,
        max_batch: int,
        chunked: bool,
        closed: bool,
        on_progress: Callable[[int, int], None] | None,
        overheads: EngineOverheads = NO_OVERHEADS,
    ) -> None:
        self.table = table
        self.host_per_sequence_s = overheads.host_per_sequence_s
        self.host_per_new_request_s = overheads.host_per_new_request_s
        self.arrival, self.prompt, self.gen, self.uncached = arrival, prompt, gen, uncached
        self.block, self.capacity_blocks = block, capacity_blocks
        self.max_tokens, self.max_batch, self.chunked, self.closed = max_tokens, max_batch, chunked, closed
        self.on_progress = on_progress
        n = arrival.size
        self.n = n
        self.first = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.ctx = prompt.copy()  # tokens held in the KV cache (from admission on)
        self.todo = uncached.copy()  # prompt tokens (or a preempted sequence's) still to compute
        self.left = gen - 1  # tokens to generate after the first
        self.waiting: deque[int] = deque()
        self.running: list[int] = []
        self.run_array = np.empty(0, dtype=np.int64)
        self.issued = int(np.count_nonzero(np.isfinite(arrival))) if closed else 0  # closed: sent so far
        self.next_arrival = 0  # open loop: the next request not yet in the queue
        self.queued_at_last_arrival = 0
        self.done = 0
        self.now = 0.0
        self.iterations = self.mixed_iterations = self.preemptions = 0
        self.peak_running = self.peak_blocks = 0
        self.running_seconds = 0.0
        # (start, batch size, seconds) of each step, idle spells at 0: SimulationResult.running_time_s.
        self._batch_starts: list[float] = []
        self._batch_sizes: list[int] = []
        self._batch_seconds: list[float] = []
        self._next_report = 0
        if closed:
            self.waiting.extend(range(self.issued))

    def _blocks(self, tokens: np.ndarray) -> int:
        return int(np.sum((tokens + self.block - 1) // self.block))

    def _set_running(self, running: list[int]) -> None:
        self.running = running
        self.run_array = np.asarray(running, dtype=np.int64)

    def _preempt_last(self) -> None:
        """vLLM's recompute preemption: the newest sequence frees its blocks and goes back to the
        head of the queue; on readmission it prefills its prompt and what it generated again."""
        victim = self.running[-1]
        self._set_running(self.running[:-1])
        self.todo[victim] = self.uncached[victim] + (self.ctx[victim] - self.prompt[victim])
        self.waiting.appendleft(victim)
        self.preemptions += 1

    def _finished(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            return
        self.finish[ids] = self.now
        gone = set(ids.tolist())
        self._set_running([i for i in self.running if i not in gone])
        self.done += ids.size
        if self.closed:  # each client sends its next request now
            for _ in range(ids.size):
                if self.issued < self.n:
                    self.arrival[self.issued] = self.now
                    self.waiting.append(self.issued)
                    self.issued += 1
        if self.on_progress is not None and (self.done >= self._next_report or self.done == self.n):
            self.on_progress(self.done, self.n)
            self._next_report = self.done + max(self.n // _PROGRESS_STEPS, 1)

    def run(self) -> None:
        arrival, n = self.arrival, self.n
        while self.done < n:
            if not self.closed:
                if self.next_arrival < n:
                    while self.next_arrival < n and arrival[self.next_arrival] <= self.now:
                        self.waiting.append(self.next_arrival)
                        self.next_arrival += 1
                    if self.next_arrival == n:  # the last one is in: the queue it joined
                        self.queued_at_last_arrival = len(self.waiting)
            if not self.running and not self.waiting:  # idle until the next arrival
                self._batch_starts.append(self.now)
                self._batch_sizes.append(0)
                self._batch_seconds.append(float(arrival[self.next_arrival]) - self.now)
                self.now = float(arrival[self.next_arrival])
                continue
            self._iteration()

    def running_time(self, start: float, end: float) -> np.ndarray:
        """Seconds at each running-batch count (index: the count) between ``start`` and ``end``."""
        if not self._batch_sizes:
            return np.zeros(1)
        begins = np.asarray(self._batch_starts)
        ends = begins + np.asarray(self._batch_seconds)
        inside = np.clip(np.minimum(ends, end) - np.maximum(begins, start), 0.0, None)
        return np.bincount(np.asarray(self._batch_sizes), weights=inside)

    def _iteration(self) -> None:
        ctx, todo, block = self.ctx, self.todo, self.block
        # Every decoding sequence writes one more token this iteration; no free block: preempt.
        while True:
            ra = self.run_array
            decoding = todo[ra] == 0
            used = self._blocks(ctx[ra] + decoding)
            if used <= self.capacity_blocks or len(self.running) <= 1:
                break
            self._preempt_last()
        dec = ra[decoding]
        n_dec = int(dec.size)
        # Decodes first, one token each, prompts in what is left (vLLM V1's Scheduler.schedule and
        # TensorRT-LLM's MicroBatchScheduler: cost_models.serving.token_limit). No floor of one
        # token: a prompt gets nothing while the decodes fill the budget, so no prefill completes
        # past it and the decodes never pass max_num_tokens (each completion takes a token).
        budget = self.max_tokens - n_dec
        chunk_ids: list[int] = []
        chunk_sizes: list[int] = []
        for i in ra[~decoding].tolist():  # partial prefills first (chunked only)
            c = min(int(todo[i]), budget) if self.chunked else int(todo[i])
            if c <= 0:
                break
            chunk_ids.append(i)
            chunk_sizes.append(c)
            budget -= c
        admitted = False
        started = 0  # prompts this iteration starts (the engine's per-request host work)
        while self.waiting and len(self.running) < self.max_batch:
            i = self.waiting[0]
            need = -(-int(ctx[i]) // block)
            if used + need > self.capacity_blocks:
                break
            if budget <= 0:
                break
            if self.chunked:
                c = min(int(todo[i]), budget)
            else:
                if int(todo[i]) > budget and chunk_ids:
                    break
                c = int(todo[i])
            self.waiting.popleft()
            self.running.append(i)
            admitted = True
            started += 1
            used += need
            chunk_ids.append(i)
            chunk_sizes.append(c)
            budget -= c
        if admitted:
            self._set_running(self.running)
        self.peak_running = max(self.peak_running, len(self.running))
        self.peak_blocks = max(self.peak_blocks, used)
        if chunk_ids:
            self._mixed(dec, chunk_ids, chunk_sizes, started)
        else:
            self._decode_run(dec, used)

    def _mixed(self, dec: np.ndarray, chunk_ids: list[int], chunk_sizes: list[int], started: int) -> None:
        ctx, todo, left = self.ctx, self.todo, self.left
        ids = np.asarray(chunk_ids, dtype=np.int64)
        sizes = np.asarray(chunk_sizes, dtype=np.int64)
        tokens = int(sizes.sum())
        # Prefill attention is linear in each prompt's length per scheduled token: the token-
        # weighted mean prompt (a recomputed sequence's context) scores the chunk's prompts.
        prompt_len = float(np.dot(sizes, ctx[ids])) / tokens
        context = float(ctx[dec].mean()) + 1.0 if dec.size else float(self.table.axes[3][0])
        t = float(self.table.times(float(dec.size), float(tokens), prompt_len, np.array([context]))[0])
        host = self.host_per_sequence_s * (dec.size + len(chunk_ids)) + self.host_per_new_request_s * started
        t = max(t, host)
        self.now += t
        self.running_seconds += len(self.running) * t
        self._batch_starts.append(self.now - t)
        self._batch_sizes.append(len(self.running))
        self._batch_seconds.append(t)
        self.iterations += 1
        self.mixed_iterations += 1
        ctx[dec] += 1
        left[dec] -= 1
        todo[ids] -= sizes
        completed = ids[todo[ids] == 0]
        fresh = np.isnan(self.first[completed])
        self.first[completed[fresh]] = self.now
        left[completed[~fresh]] -= 1  # a recompute's pass yields the sequence's next token
        ended = np.concatenate([dec[left[dec] <= 0], completed[left[completed] <= 0]])
        self._finished(ended)

    def _decode_run(self, dec: np.ndarray, used: int) -> None:
        """k decode-only iterations up to the next event: a sequence finishing, the KV cache
        running out of blocks, or (nothing queued) the iteration during which a request arrives."""
        ctx, left = self.ctx, self.left
        d_ctx = ctx[dec]
        k = min(int(left[dec].min()), _FAST_FORWARD_MAX)
        if self._blocks(d_ctx + k) > self.capacity_blocks:  # largest k whose blocks fit (k = 1 does)
            lo, hi = 1, k
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._blocks(d_ctx + mid) <= self.capacity_blocks:
                    lo = mid
                else:
                    hi = mid - 1
            k = lo
        steps = np.arange(k, dtype=np.float64)
        times = self.table.times(float(dec.size), 0.0, float(self.table.axes[2][0]), float(d_ctx.mean()) + 1.0 + steps)
        times = np.maximum(times, self.host_per_sequence_s * dec.size)
        ends = self.now + np.cumsum(times)
        if not self.waiting and not self.closed and self.next_arrival < self.n:
            # The iteration in progress when the next request arrives is the last before it can join.
            k = min(k, int(np.searchsorted(ends, self.arrival[self.next_arrival], side="left")) + 1)
        self.running_seconds += len(self.running) * float(ends[k - 1] - self.now)
        self._batch_starts.append(self.now)
        self._batch_sizes.append(len(self.running))
        self._batch_seconds.append(float(ends[k - 1] - self.now))
        self.now = float(ends[k - 1])
        self.iterations += k
        ctx[dec] += k
        left[dec] -= k
        self.peak_blocks = max(self.peak_blocks, self._blocks(ctx[dec]), used)
        self._finished(dec[left[dec] <= 0])


#: Which of a simulation's summary fields are the whole deployment's (DP x the simulated rank's:
#: rates) and which the one simulated rank's (counts): under ``--dp`` the flat ``simulated``
#: object mixed them without a word (``mean_running`` a rank's beside ``analytic.running``, the
#: deployment's; DeepSeek-V3 TP1 DP8: 7 against 56). Latencies are a request's, the same in both.
SIMULATED_SCOPES: dict[str, tuple[str, ...]] = {
    "deployment": ("tokens_per_s", "steady_tokens_per_s", "requests_per_s"),
    "rank": (
        "requests",
        "iterations",
        "mixed_iterations",
        "preemptions",
        "peak_running",
        "mean_running",
        "peak_kv_blocks",
        "kv_capacity_blocks",
        "queued_at_last_arrival",
        "prompts_clipped",
    ),
}
#: The analytic steady state's (cost_models.serving: the rates and the batch DP x a rank's; the
#: iterations and their prefill tokens a rank's). ``rank`` also gets the deployment's batch over
#: DP (``running``, ``running_p999``, ``max_concurrency``, ``queued``: each rank's share, the fluid
#: model's even split), to set beside the simulated rank's.
ANALYTIC_SCOPES: dict[str, tuple[str, ...]] = {
    "deployment": ("tokens_per_s", "requests_per_s", "max_concurrency", "running", "running_p999", "queued"),
    "rank": ("prefill_tokens_per_mixed_iteration", "decode_iteration_s", "mixed_iteration_s"),
}
_SPLIT_OVER_RANKS = ("max_concurrency", "running", "running_p999", "queued")


def _scoped(report: dict[str, Any], scopes: dict[str, tuple[str, ...]], dp: int) -> dict[str, Any]:
    """``report`` (its flat fields kept, as before) with a ``deployment`` and a ``rank`` object
    holding the fields of each scope (:data:`SIMULATED_SCOPES`, :data:`ANALYTIC_SCOPES`): the same
    values at DP 1; under DP the names say which is which."""
    deployment = {k: report[k] for k in scopes["deployment"] if k in report}
    rank = {k: report[k] for k in scopes["rank"] if k in report}
    if scopes is ANALYTIC_SCOPES:
        for key in _SPLIT_OVER_RANKS:
            value = deployment.get(key)
            rank[key] = value if value is None else (value // dp if key == "max_concurrency" else value / dp)
    return {**report, "deployment": deployment, "rank": rank}


def simulate_one(
    model: str | ModelSpec,
    hardware: str | HardwareSpec,
    *,
    chips: int | None = None,
    prompt_len: float,
    gen_len: float,
    concurrency: int | None = None,
    request_rate: float | None = None,
    mesh: str | tuple[int, int, int] | None = None,
    ffn_layout: str = "ws_1d",
    attn_sharding: str = "head",
    weight_bits: str | int = 16,
    act_bits: str | int = 16,
    kv_bits: str | int = 16,
    flash_attention: bool = True,
    calibration: str | CalibrationProfile | None = AUTO_CALIBRATION,
    backend: str | None = None,
    requests: int = DEFAULT_REQUESTS,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
    dp: int = 1,
    ep: int = 1,
    tp: int | None = None,
    pp: int | None = None,
    **engine: Any,
) -> dict[str, Any]:
    """One deployment by names under one workload: the ``tuner simulate --json`` object, with
    the simulated summary next to the analytic steady state of :func:`cost_models.serving.serve`.
    ``engine``: the engine knobs of :func:`cost_models.serving.make_workloads` (prompt/gen std,
    max_batch_size, max_num_tokens, chunked_prefill, kv_block_size, prefix_hit_rate,
    memory_fraction), defaulting to the engine of the calibration profile (without one, the
    engine measured best on the chip, as ``tuner estimate`` and a study take). Without ``mesh``:
    plain tensor parallelism (1x1xN) when legal, else the legal mesh with the most analytic output
    tokens per second (ties, as every stable mesh of an open loop: the shortest mean end-to-end
    latency). ``dp``, ``ep``: attention data and expert parallelism (``chips`` is every
    DP rank's: each rank's TP group is chips / dp; one rank is simulated, :func:`simulate_serving`).
    ``tp``, ``pp``: the engines' degrees, read as ``tuner estimate`` reads them
    (:func:`cost_models.deployment.engine_degrees`): a 1 x 1 x TP mesh, ``chips`` (when given)
    TP x PP x DP, else that product; a pipeline is refused as under estimate's load (the
    serving model runs none). Without them and without ``chips``: the chips of ``mesh`` x DP."""
    model_spec = get_model(model) if isinstance(model, str) else model
    chip = get_hardware(hardware) if isinstance(hardware, str) else hardware
    if chips is not None and (isinstance(chips, bool) or not isinstance(chips, (int, np.integer)) or chips < 1):
        raise InvalidInputError("chips", f"must be a positive whole number, got {chips!r}", "pass --chips 1 or more")
    if model_spec.kind == "encoder":
        raise InvalidInputError(
            "model", f"{model_spec.name} is an encoder: it generates nothing", "use a decoder model"
        )
    _check_run(requests, seed)
    given_degrees = [(name, value) for name, value in (("tp", tp), ("pp", pp)) if value is not None]
    for name, value in (("dp", dp), ("ep", ep), *given_degrees):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidInputError(name, f"must be a positive whole number, got {value!r}", f"pass --{name} 1 or more")
    engine_vocabulary = bool(given_degrees)
    if engine_vocabulary:
        # tuner estimate's reading of the same options, not a second one: its refusals (--tp with
        # --mesh; --chips that is not TP x PP x DP) and its defaults (chips = their product).
        if pp not in (None, 1):
            raise unserved_degree_error("pp")
        if tp is not None and mesh is not None:
            raise InvalidInputError("tp", "given with --mesh (the mesh is the TP group)", "give one of them")
        if mesh is None:
            chips, _, _ = engine_degrees(
                chip, chips, tp=tp, pp=pp, ep=ep, dp=dp, micro_batches=None, experts=model_spec.experts
            )
    if chips is None and mesh is not None:  # the mesh carries its chips, as in tuner estimate
        chips = int(np.prod(parse_mesh(mesh) if isinstance(mesh, str) else mesh)) * dp
    if chips is None:
        raise InvalidInputError("chips", "missing", "pass --chips N, --tp N or --mesh XxYxZ")
    if chips % dp:
        raise InvalidInputError("chips", f"{chips} is not a multiple of dp {dp}", "pass --chips = tp x dp")
    if concurrency is not None and not isinstance(concurrency, bool) and isinstance(concurrency, (int, np.integer)):
        _check_clients(int(requests), float(concurrency) / dp)
    if mesh is None and (chip.kind == "gpu" or engine_vocabulary):
        # tuner estimate's rule (cost_models.deployment.estimate_one): without --mesh a GPU runs as
        # the engines run it, Megatron TP (ws_1d) with heads split. Before, simulate scored
        # --ffn-layout ws_2d on GPUs there, a layout no engine launches, where estimate refused it.
        for name, chosen, engines_run in (
            ("ffn_layout", ffn_layout, "ws_1d"),
            ("attn_sharding", attn_sharding, "head"),
        ):
            if chosen != engines_run:
                raise InvalidInputError(
                    name,
                    f"{chosen} is a layout of Pope et al.'s meshes; GPU engines run Megatron TP (ws_1d, heads split)",
                    "drop it, or give --mesh XxYxZ to score Pope et al.'s layouts",
                )
    chips //= dp  # the meshes below are one DP rank's TP group
    profile = resolve_calibration(calibration, chip, backend)
    # As tuner estimate and a study: without a profile (calibration none) the engine measured best.
    engine_name = serving_engine(backend, profile, chip)
    check_engine_kv_block_size(engine_name, engine.get("kv_block_size"))
    formats = chip.parse_formats(weight_bits=weight_bits, act_bits=act_bits, kv_bits=kv_bits)
    refuse_engine_kv_cache(backend, formats["kv_bits"])
    meshes = candidate_meshes(chip, chips, mesh)
    if mesh is None and (engine_vocabulary or (1, 1, chips) in meshes):
        meshes = [(1, 1, chips)]  # (estimate's engine mesh for --tp, legal or not on a TPU)
        if chip.kind == "gpu" and engine_problem_mask(None, model_spec.heads, model_spec.experts, chips, ep, dp):
            whose = f"tensor parallel over {chips} GPUs"
            raise heads_split_error(model_spec, chips, field="chips", whose=whose, replica="simulate")
        if chip.kind == "gpu":
            refuse_unlaunched_degrees(backend, model_spec, chips, ep, dp)
        split_kv_heads = 0 if model_spec.is_mla else model_spec.kv_heads
        if chip.kind == "gpu" and engine_problem_mask(engine_name, model_spec.heads, 0, chips, 1, 1, split_kv_heads):
            raise kv_heads_split_error(
                model_spec, split_kv_heads, chips, engine_name, field="chips", replica="simulate"
            )
    rows = [
        Deployment(
            model=model_spec,
            hardware=chip,
            mesh=m,
            batch=dp,  # (not read by the serving model; a static batch splits over the DP ranks)
            prompt_len=1,
            gen_len=1,
            prefill_ffn_layout=ffn_layout,
            decode_ffn_layout=ffn_layout,
            prefill_attn_sharding=attn_sharding,
            decode_attn_sharding=attn_sharding,
            weight_dtype=dtype_name(formats["weight_bits"]),
            act_dtype=dtype_name(formats["act_bits"]),
            kv_dtype=dtype_name(formats["kv_bits"]),
            flash_attention=flash_attention,
            expert_parallel=ep,
            data_parallel=dp,
        )
        for m in meshes
    ]
    deployments = Deployments.from_rows(rows)
    n = len(rows)
    closed = concurrency is not None
    workloads = make_workloads(
        n,
        backend=engine_name,
        concurrency=concurrency,
        request_rate=request_rate,
        prompt_len=prompt_len,
        gen_len=gen_len,
        # The analytic first burst's share: this run's requests per client.
        # (Under DP the run is one rank's: its requests over its share of the clients.)
        requests_per_client=requests * dp / concurrency if closed and concurrency else 0.0,
        **engine,
        data_parallel=dp,
    )
    refuse_unmixed_sglang(workloads, "chunked_prefill", UNMIXED_SGLANG_FLAG_FIX)
    analytic = serve(deployments, workloads, calibration=profile)
    # The most output tokens/s, ties to the shortest mean end-to-end latency: every stable mesh of
    # an open loop serves R x G tokens/s, where the first candidate won (Llama-3-8B on 4 TPU v4 at
    # 1 req/s: 1x2x2, E2E 0.773 s, where 2x1x2, tuner estimate's mesh, runs 0.750 s).
    best = (
        0
        if n == 1
        else int(np.lexsort((analytic.e2e_latency_s, -np.where(analytic.fits, analytic.tokens_per_s, -1.0)))[0])
    )
    result = simulate_serving(
        deployments.take(best),
        workloads.take(best),
        requests=requests,
        seed=seed,
        calibration=profile,
        on_progress=on_progress,
    )
    analytic_report = serving_report(analytic, best)
    analytic_report["limited_by"] = str(analytic.limited_by[best])
    p999 = float(analytic.running_p999[best])
    analytic_report["running_p999"] = p999 if math.isfinite(p999) else None
    analytic_report["max_stable_request_rate"] = None
    # As tuner estimate says it: a context past the model's trained one is a deployment the
    # engines refuse without an override (the mean lengths; a spread passes it more often).
    notes = context_notes(model_spec, math.ceil(prompt_len + gen_len))
    notes += calibrated_format_notes(
        profile,
        chip,
        model_spec.experts,
        formats["weight_bits"],
        formats["act_bits"],
        mxfp4_experts=model_spec.mxfp4_experts,
        fp8_block_scales=model_spec.fp8_block_scales,
    )
    notes += mixed_checkpoint_notes(model_spec, formats["weight_bits"]) + vision_notes(model_spec)
    # The lines tuner estimate prints for this load (borrowed host costs, clients queueing, an open
    # loop past capacity with the highest rate it sustains).
    rate, load = load_notes(deployments, workloads, analytic, best, calibration=profile, engine=engine_name)
    analytic_report["max_stable_request_rate"] = rate
    notes += load
    analytic_report["estimate_ttft_s"] = None
    if closed and analytic_report["ttft_s"] is not None:
        # The analytic TTFT counts the first burst (every client at t = 0) in 1 of the requests each
        # client sends in this run; tuner estimate counts it in 1 of DEFAULT_REQUESTS_PER_CLIENT (a
        # benchmark of ten times the clients in prompts). Both said, so the two commands' means
        # for one load are not read as a disagreement (DeepSeek-V3 on 8 H200s, 64 clients, 300
        # requests: 0.485 s here, 0.289 s from estimate, nothing saying why).
        one = np.array([best])
        usual = replace(workloads.take(one), requests_per_client=np.array([DEFAULT_REQUESTS_PER_CLIENT]))
        ttft = float(serve(deployments.take(one), usual, calibration=profile).ttft_s[0])
        analytic_report["estimate_ttft_s"] = ttft if math.isfinite(ttft) else None
        mine = analytic_report["ttft_s"]
        if math.isfinite(ttft) and abs(mine - ttft) > 0.01 * ttft:
            per_client = requests * dp / int(concurrency or 1)
            notes.append(
                f"analytic TTFT {mine * 1e3:.4g} ms counts the first burst (all {int(concurrency or 1)} clients at "
                f"t = 0) in 1 of the {per_client:.3g} requests each client sends in this run; tuner estimate "
                f"counts it in 1 of {DEFAULT_REQUESTS_PER_CLIENT:g} (a benchmark of ten times the clients): "
                f"{ttft * 1e3:.4g} ms"
            )
    if result.prompts_clipped:
        budget = int(workloads.max_num_tokens[best])
        notes.append(
            f"simulated: {result.prompts_clipped} of {requests} drawn prompts "
            f"({result.prompts_clipped / requests:.1%}) are longer than max_num_tokens {budget} without chunked "
            f"prefill, which the engine refuses; they ran cut to {budget} tokens (shorter prefills, a thinner "
            "TTFT tail): raise --max-num-tokens or turn --chunked-prefill on"
        )
    if result.queue_grew():
        notes.append(
            f"simulated: arrivals outpaced the engine ({result.queued_at_last_arrival} of {requests} requests still "
            "waited for admission at the last arrival): the simulated latencies grow with --requests, no steady state"
        )
    return {
        "model": model_spec.name,
        "hardware": chip.name,
        "mesh": list(rows[best].mesh),
        "mesh_chosen": mesh is None and not engine_vocabulary,
        "ep": ep,
        "dp": dp,
        "engine": engine_name,
        "weight_dtype": rows[best].weight_dtype,
        "act_dtype": rows[best].act_dtype,
        "kv_dtype": rows[best].kv_dtype,
        "ffn_layout": rows[best].prefill_ffn_layout,
        "flash_attention": rows[best].flash_attention,
        "workload": workloads.row(best),
        "seed": seed,
        "simulated": _scoped(result.summary(), SIMULATED_SCOPES, dp),
        "analytic": _scoped(analytic_report, ANALYTIC_SCOPES, dp),
        "calibration": calibration_report(
            profile,
            backend_chosen=backend is None and calibration in (None, AUTO_CALIBRATION),
            gemm_formats=dense_gemm_formats(model_spec, formats["weight_bits"], formats["act_bits"]),
        ),
        "notes": notes,
    }
