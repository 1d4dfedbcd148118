"""Disaggregated prefill/decode serving: a prefill pool and a decode pool joined by a KV link.

DistServe (Zhong et al., OSDI 2024), Splitwise (Patel et al., ISCA 2024) and Mooncake (Qin et
al., FAST 2025) run the two phases on separate instances: ``prefill_instances`` (xP) copies of a
prefill deployment each run prefill-only iterations of up to ``max_num_tokens`` prompt tokens;
``decode_instances`` (yD) copies of a decode deployment each run decode-only iterations of up to
``max_batch_size`` sequences, bounded by their paged KV cache. A request's KV cache moves from the
prefill instance that computed it to a decode instance. For n configurations at once (one
:class:`~cost_models.deployments.Deployments` row per pool, same length):

- **Prefill pool.** Poisson arrivals split evenly (at random) over the xP instances: each instance
  is an M/G/1 queue served at the rate of full iterations (``max_num_tokens`` prompt tokens,
  whole prompts unless chunked): a request's service is its prompt's share of a full iteration
  (deterministic at equal prompts: M/D/1; spread as the prompt's length otherwise). A request
  waits for the running iteration to end (half an iteration, when the instance is busy), then the
  M/G/1 wait, then its own prefill iterations.
- **KV transfer.** ``kv_bytes_per_token x prompt_len`` bytes (the whole prompt's cache, a cached
  prefix included: the decode instance needs all of it) times the copies a decode rank's chips
  hold (:func:`decode_rank_copies`: an MLA latent, replicated on every TP rank, moves once per
  chip), sent by every chip of the prefill instance through its own port in parallel and
  received the same way, so over ``min(prefill chips, decode chips)`` ports. Over the chips'
  network (between NVLink domains,
  ``network_bandwidth_bytes_per_s`` per chip) unless every chip of both pools fits in one domain,
  where it uses the domain fabric (``domain_bandwidth_bytes_per_s``). Not overlapped with the
  prefill compute (conservative: layer-wise streaming hides part of it in real connectors). The
  latency constant is the hardware catalog's per-message latency of that fabric
  (``network_latency_s`` / ``domain_latency_s``); pass ``link_latency_s`` for a connector's own
  handshake cost. Both ends must keep up: each prefill instance sends R / xP caches a second and
  each decode instance takes in R / yD (``kv_link_utilisation``: the busier end's share).
- **Decode pool.** Each instance runs ``b = min(R/yD (G - 1) t_dec(b), slots)`` sequences (Little's
  law, fixed point); TPOT is its decode-only iteration time: no prefill interference.
- **Attention DP and EP.** Each pool's instance is TP x DP x EP as the aggregated path scores
  it (:func:`cost_models.serving.serve`; SGLang ``--enable-dp-attention --dp-size --ep-size`` with
  ``--disaggregation-mode``): DP ranks, each its own scheduler, token budget and KV cache
  (:func:`cost_models.serving.rank_workloads`'s knobs), in lockstep through the MoE layers they
  share. A prefill instance is DP M/G/1 queues of R / (xP DP) each, a decode instance DP ranks of
  R / (yD DP) each; its running sequences and slots are DP x a rank's, TPOT a rank's step. A
  prompt's cache is one rank's, sent from the prefill rank to a decode rank over min(their TP
  chips) ports (the MLA latent once to each of the decode rank's TP chips). The ranks' imbalance
  is left out, as in the aggregated path.
- **Matching.** Each pool's capacity in requests/s; throughput is the smaller (``limiting_pool``);
  ``balance`` = prefill capacity / decode capacity (above 1: decode limits, the xPyD ratio has
  spare prefill).
- **Closed loop** (``concurrency``): the asymptotic bounds of a closed queueing network (Lazowska
  et al., "Quantitative System Performance", 1984, ch. 5): throughput ``min(C / E2E, capacity)``
  with E2E the unqueued latency at that throughput; clients beyond what the pools hold wait (added
  to TTFT). The first burst of a benchmark is not modelled here.

A configuration that cannot hold one sequence, or cannot keep up with an open-loop rate, is an
explicit infeasible result (``stable`` False, infinite latencies, zero throughput); bad input
(zero instances, mismatched pools) raises :class:`InvalidInputError`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from cost_models.calibrated_times import calibrated_network, check_profile
from cost_models.calibration import CalibrationProfile
from cost_models.deployment import OVERLAPS, Overlap, kv_ways_by_phase, rank_view
from cost_models.deployments import Deployments
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, SwitchedInterconnect
from cost_models.iteration import IterationShapes, iteration_shapes, iteration_times
from cost_models.serving import (
    _P999_Z,
    SERVING_KEYS,
    UNSTABLE_NONE_KEYS,
    EngineOverheads,
    ServingEstimate,
    ServingWorkloads,
    _load_fluctuation,
    _memory,
    chunked_prefill_s,
    limiting,
    open_loop_tpot_variance,
    prompt_chunks,
    rank_view_and_degrees,
    rank_workloads,
    resolve_overheads,
    serving_cuda_graphs,
)
from cost_models.topology import Network, network_for
from cost_models.ttft_percentiles import (
    Z_P90,
    Z_P99,
    gamma_quantile,
    lognormal_cv2,
    md1_wait_variance,
    single_percentiles,
)

_FIXED_POINT_ROUNDS = 60
POOLS: tuple[str, ...] = ("prefill", "decode")


@dataclass(frozen=True)
class DisaggregatedEstimate(ServingEstimate):
    """The aggregated keys where they apply (``running``, ``max_concurrency``, the weights and KV
    per chip: the decode pool's; ``mixed_share`` 0: no iteration mixes phases) plus the pools'."""

    prefill_instances: np.ndarray
    decode_instances: np.ndarray
    chips: np.ndarray  # all chips of both pools
    capacity_rps: np.ndarray  # requests/s the matched pools can take: the smaller pool's
    prefill_capacity_rps: np.ndarray  # requests/s the prefill pool can take
    decode_capacity_rps: np.ndarray
    limiting_pool: np.ndarray  # "prefill" or "decode"
    balance: np.ndarray  # prefill capacity / decode capacity
    prefill_iteration_s: np.ndarray  # one prefill iteration at the load
    prefill_tokens_per_iteration: np.ndarray
    prefill_queue_s: np.ndarray  # wait before a request's prefill starts
    prefill_utilisation: np.ndarray
    decode_utilisation: np.ndarray  # running sequences / slots
    kv_transfer_s: np.ndarray
    kv_transfer_bytes: np.ndarray
    kv_link_bandwidth_bytes_per_s: np.ndarray
    kv_link_utilisation: np.ndarray  # share of the link the busier end keeps busy (a prefill or decode instance)


#: The aggregated serving keys followed by the disaggregated ones (``serving`` JSON objects).
DISAGGREGATED_KEYS: tuple[str, ...] = (
    *SERVING_KEYS,
    "prefill_instances",
    "decode_instances",
    "chips",
    "capacity_rps",
    "prefill_capacity_rps",
    "decode_capacity_rps",
    "limiting_pool",
    "balance",
    "prefill_iteration_s",
    "prefill_tokens_per_iteration",
    "prefill_queue_s",
    "prefill_utilisation",
    "decode_utilisation",
    "kv_transfer_s",
    "kv_transfer_bytes",
    "kv_link_bandwidth_bytes_per_s",
)


def disaggregated_report(result: DisaggregatedEstimate, index: int = 0) -> dict[str, Any]:
    """One configuration as plain data (JSON safe: infinity and NaN become None)."""
    out: dict[str, Any] = {}
    stable = bool(result.stable[index])
    for key in DISAGGREGATED_KEYS:
        value = getattr(result, key)[index]
        if key in ("stable", "fits"):
            out[key] = bool(value)
        elif key == "limiting_pool":
            out[key] = str(value)
        elif key in ("max_concurrency", "prefill_instances", "decode_instances", "chips"):
            out[key] = int(value)
        elif key in UNSTABLE_NONE_KEYS and not stable:  # no throughput past capacity (serving_report)
            out[key] = None
        else:
            out[key] = float(value) if np.isfinite(value) else None
    return out


# ---------------------------------------------------------------------------------------------
# The pools, each on its own (capacity.py scores unique pools once and pairs them).


@dataclass(frozen=True)
class PrefillPool:
    """xP prefill instances at a total rate (per configuration)."""

    instances: np.ndarray
    chips_per_instance: np.ndarray
    ranks_per_instance: np.ndarray  # attention DP ranks of one instance, each its own scheduler (1: TP only)
    capacity_rps: np.ndarray
    iteration_s: np.ndarray  # one iteration of a rank at the load
    tokens_per_iteration: np.ndarray
    queue_s: np.ndarray
    prefill_s: np.ndarray  # the request's own prefill iterations
    utilisation: np.ndarray
    fits: np.ndarray
    busy: np.ndarray  # share of the time a rank is in an iteration at the load


@dataclass(frozen=True)
class DecodePool:
    """yD decode instances at a total rate (per configuration)."""

    instances: np.ndarray
    chips_per_instance: np.ndarray
    ranks_per_instance: np.ndarray  # attention DP ranks of one instance, each its own scheduler (1: TP only)
    capacity_rps: np.ndarray
    iteration_s: np.ndarray  # a rank's decode-only iteration at its running batch: the TPOT
    running: np.ndarray  # sequences per instance (its ranks' together)
    slots: np.ndarray  # sequences one instance can hold (paged KV, max_batch_size, max_num_tokens; its ranks')
    limited_by: np.ndarray  # str: which of those caps the slots (serving.LIMITS)
    fits: np.ndarray
    weights_bytes_per_chip: np.ndarray
    kv_bytes_per_token_per_chip: np.ndarray
    held_tokens: np.ndarray
    #: Sequences per instance at the 99.9th percentile of an open loop's swings (its ranks'
    #: together, as serving's running_p999 sums DP ranks).
    running_p999: np.ndarray
    #: Var(TPOT) over the requests of an open loop (s^2; 0 in a closed loop's rounds):
    #: :meth:`_DecodeModel.tpot_variance`.
    tpot_variance: np.ndarray


def _instances(name: str, value: np.ndarray | float, n: int) -> np.ndarray:
    values = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
    bad = ~np.isfinite(values) | (values < 1) | (values != np.floor(values))
    if np.any(bad):
        raise InvalidInputError(
            name, f"must be a whole number >= 1, got {values[int(np.argmax(bad))]:g}", f"pass {name} of 1 or more"
        )
    return np.array(values)


def _network(hardware: HardwareSpec, calibration: CalibrationProfile | None) -> Network:
    network = network_for(hardware)
    if calibration is not None:
        check_profile(calibration, hardware)
        network = calibrated_network(network, hardware, calibration)
    return network


def _uncached(w: ServingWorkloads) -> np.ndarray:
    return w.prompt_len * (1.0 - w.prefix_hit_rate)


@dataclass(frozen=True)
class _Ranks:
    """One attention-DP rank of each instance of a pool, as the aggregated path scores it
    (cost_models.serving.serve): ``d`` the rank's TP group (serving.rank_view_and_degrees), ``w``
    its engine knobs (serving.rank_workloads: ceil(max_batch_size / DP) sequences, SGLang's
    chunked budget / DP; its rates are not read: a pool splits its own rate over its ranks),
    ``shapes`` its iterations with the MoE layers the ``per_instance`` ranks share (the experts
    their summed tokens wake, the busiest EP rank's; the dispatch)."""

    d: Deployments
    w: ServingWorkloads
    per_instance: np.ndarray  # DP ranks of one instance (1 without attention DP)
    shapes: IterationShapes


def _ranks(d: Deployments, w: ServingWorkloads, calibration: CalibrationProfile | None) -> _Ranks:
    rank, dp, ep = rank_view_and_degrees(d)
    if dp is None:
        return _Ranks(d, w, np.ones(len(d)), iteration_shapes(d, calibration))
    shapes = iteration_shapes(rank, calibration, data_parallel=dp, expert_parallel=ep)
    return _Ranks(rank, rank_workloads(rank, w, dp), dp, shapes)


def _converged(new: np.ndarray, old: np.ndarray) -> bool:
    return bool(np.all(np.abs(new - old) <= 1e-6 * np.maximum(np.abs(old), 1e-3)))


class _PrefillModel:
    """One prefill instance's constants (budget, full iteration, memory), evaluated at rates.
    Under attention DP each of an instance's ranks is its own scheduler and M/G/1 queue (its own
    token budget and KV cache, SGLang's DP controller spreading the requests), taking 1 / (xP x DP)
    of the rate, its iterations those of the aggregated path's rank (shared MoE layers)."""

    def __init__(
        self, d: Deployments, w: ServingWorkloads, instances: np.ndarray, calibration, overlap, overheads
    ) -> None:
        self.chips_per_instance = d.chips.astype(np.float64)
        ranks = _ranks(d, w, calibration)
        d, w = ranks.d, ranks.w
        self.d, self.w, self.instances, self.overheads = d, w, instances, overheads
        self.ranks = ranks.per_instance
        self.calibration, self.overlap = calibration, overlap
        self.network = _network(d.hardware, calibration)
        self.shapes = ranks.shapes  # shared by every iteration of the fixed point
        self.uncached = _uncached(w)
        # Squared coefficient of variation of a prompt's length: its share of an iteration, the
        # service time of the M/G/1 wait below, spreads in proportion.
        self.cv2 = lognormal_cv2(w.prompt_len, w.prompt_len_std)
        left = w.max_num_tokens
        # At most the rank's batch limit of prompts an iteration, as in the aggregated path: the
        # engines admit a waiting request only while fewer than it run (vLLM's v1 scheduler stops
        # at max_num_running_reqs, its --max-num-seqs; SGLang's --max-running-requests;
        # TensorRT-LLM's max_batch_size counts context requests too). Without it a prefill pool
        # given --max-batch-size 4 packed 64 prompts of 128 tokens into its 8192-token iteration.
        prompts = w.max_batch_size
        self.budget = np.where(
            w.chunked_prefill,
            np.minimum(left, prompts * self.uncached),
            np.minimum(np.maximum(np.floor(left / self.uncached), 1.0), prompts) * self.uncached,
        )
        self.t_full = self.iteration(self.budget)
        self.memory = _memory(d, w, "prefill", self.shapes)

    def iteration(self, tokens: np.ndarray) -> np.ndarray:
        """The longer of the GPU's prefill pass and the engine's host work for its prompts."""
        o = self.overheads
        host = (o.host_per_sequence_s + o.host_per_new_request_s) * tokens / self.uncached
        return np.maximum(self.gpu_iteration(tokens), host)

    def gpu_iteration(self, tokens: np.ndarray) -> np.ndarray:
        w = self.w
        return iteration_times(
            self.d,
            self.network,
            decode_seqs=np.zeros(len(w)),
            decode_context=w.prompt_len,
            prefill_tokens=tokens,
            # Causal attention grows with the square of the prompt: spread prompts cost E[P^2] /
            # E[P] a token, as the aggregated path charges them (serving._Setting.attention_prompt_len).
            prefill_prompt_len=w.prompt_len + w.prompt_len_std**2 / w.prompt_len,
            prefill_cached_share=w.prefix_hit_rate,
            calibration=self.calibration,
            overlap=self.overlap,
            phase="prefill",
            shapes=self.shapes,
        ).latency_s

    def at(self, rate: np.ndarray, start: np.ndarray | None = None) -> PrefillPool:
        w, uncached, budget, t_full = self.w, self.uncached, self.budget, self.t_full
        per_rank = np.asarray(rate, dtype=np.float64) / (self.instances * self.ranks)
        # Tokens per iteration at the load: what arrived during the last one, at least one prompt
        # (or one chunk of it), at most the budget (a fixed point, monotone from below).
        least = np.minimum(uncached, budget)
        tokens = least if start is None else start
        t_iter = self.iteration(tokens)
        for _ in range(_FIXED_POINT_ROUNDS):
            new = np.clip(per_rank * uncached * t_iter, least, budget)
            done = _converged(new, tokens)
            tokens = new
            t_iter = self.iteration(tokens)
            if done:
                break
        utilisation = per_rank * uncached * t_full / budget
        rho = np.clip(utilisation, 0.0, 0.999)
        busy = np.clip(per_rank * uncached * t_iter / tokens, 0.0, 1.0)
        # M/G/1 whose server works at the full batch's rate: one request's service is its share
        # of a full iteration (t_full x prompt / budget), so Pollaczek-Khinchine's mean wait is the
        # M/D/1 one times E[S^2] / E[S]^2 = 1 + cv^2 of the prompt's length (lognormal where it
        # spreads; the aggregated path's wait for the prefill budget counts the same); plus the
        # rest of the running iteration. Before, spread prompts left the mean wait as at std 0
        # while the p99 (_ttft_tail, a lognormal service) grew with them.
        queue = busy * 0.5 * t_iter + rho / (2.0 * (1.0 - rho)) * t_full * uncached / budget * (1.0 + self.cv2)
        # Its own iterations: floor(P / budget) full of its chunks, then one holding the rest and
        # the prompts that came meanwhile (FCFS, serving.chunked_prefill_s), not ceil(P / budget) full
        # ones: Llama-3-70B fp8 on a TP4 vLLM prefill instance (8192-token budget), 0.2 req/s, read
        # TTFT 450 ms at 8192-token prompts and 845 ms at 8193 (2026-12-06).
        full, rest = prompt_chunks(uncached, budget)
        partial = (full > 0.0) & (rest > 0.0)
        if np.any(partial):
            last = self.iteration(np.minimum(rest + per_rank * uncached * full * t_iter, budget))
            own = chunked_prefill_s(full, rest, t_iter, np.where(full > 0.0, last, t_iter))
        else:
            own = np.maximum(full, 1.0) * t_iter
        memory = self.memory
        # An instance holds the cache of the prompts of one iteration until they are sent.
        fits = memory.free >= memory.kv_per_token * np.maximum(w.prompt_len, budget)
        capacity = self.instances * self.ranks * (budget / uncached) / t_full
        return PrefillPool(
            instances=self.instances,
            chips_per_instance=self.chips_per_instance,
            ranks_per_instance=self.ranks,
            capacity_rps=np.where(fits, capacity, 0.0),
            iteration_s=t_iter,
            tokens_per_iteration=tokens,
            queue_s=queue,
            prefill_s=own,
            utilisation=np.where(fits, utilisation, np.inf),
            fits=fits,
            busy=busy,
        )


class _DecodeModel:
    """One decode instance's constants (slots, full-batch iteration, memory), evaluated at rates:
    each request holds a slot for ``gen_len - 1`` iterations (the prefill instance made the first).
    Under attention DP an instance is DP ranks, each holding 1 / (yD x DP) of the running
    sequences in its own KV cache and stepping them in lockstep with the others through the shared
    MoE layers: the aggregated path's rank (its slots at ceil(max_batch_size / DP))."""

    def __init__(
        self, d: Deployments, w: ServingWorkloads, instances: np.ndarray, calibration, overlap, overheads
    ) -> None:
        self.chips_per_instance = d.chips.astype(np.float64)
        ranks = _ranks(d, w, calibration)
        d, w = ranks.d, ranks.w
        self.d, self.w, self.instances, self.overheads = d, w, instances, overheads
        self.ranks = ranks.per_instance
        self.calibration, self.overlap = calibration, overlap
        self.network = _network(d.hardware, calibration)
        self.shapes = ranks.shapes  # shared by every iteration of the fixed point
        # Which decode batches replay a CUDA graph (past the capture size they run eager):
        # SGLang's tp_size spans an instance's attention-DP ranks.
        self.cuda_graphs = serving_cuda_graphs(d, w, None if np.all(self.ranks == 1) else self.ranks)
        # A decode-only iteration holds at most max_batch_size tokens: its activations, not the
        # prefill budget's, come off the HBM (serving._memory sizes them by max_num_tokens).
        dw = replace(w, max_num_tokens=np.minimum(w.max_num_tokens, w.max_batch_size))
        self.memory = _memory(d, dw, "decode", self.shapes)
        memory = self.memory
        self.held = w.prompt_len + w.gen_len / 2.0 + w.kv_block_size / 2.0  # paged: mean blocks held
        self.fits = memory.free >= memory.kv_per_token * (w.prompt_len + w.gen_len)
        kv_limit = np.floor(np.maximum(memory.free, 0.0) / (memory.kv_per_token * self.held))
        # A decode-only iteration takes one token of the budget per sequence and holds no prompt to
        # leave room for: at most max_num_tokens sequences (the engines' schedulers stop there:
        # serving.token_limit; the export writes min(max_num_tokens, max_batch_size) as the budget).
        engine_cap = np.minimum(w.max_batch_size, w.max_num_tokens)
        self.slots = np.where(self.fits, np.maximum(np.minimum(kv_limit, engine_cap), 1.0), 0.0)
        self.limited_by = limiting(
            {"max_batch_size": w.max_batch_size, "kv_cache": kv_limit, "max_num_tokens": w.max_num_tokens}
        )
        self.steps = np.maximum(w.gen_len - 1.0, 0.0)
        t_slots = self.iteration(np.maximum(self.slots, 1.0))
        self.capacity = np.where(
            ~self.fits,
            0.0,
            np.where(
                self.steps > 0,
                instances * self.ranks * self.slots / np.maximum(self.steps * t_slots, 1e-300),
                np.inf,
            ),
        )

    def iteration(self, seqs: np.ndarray) -> np.ndarray:
        """The longer of the GPU's decode step and the engine's host work for its sequences."""
        return np.maximum(self.gpu_iteration(seqs), self.overheads.host_per_sequence_s * seqs)

    def gpu_iteration(self, seqs: np.ndarray) -> np.ndarray:
        w = self.w
        return iteration_times(
            self.d,
            self.network,
            decode_seqs=seqs,
            decode_context=w.prompt_len + (w.gen_len - 1.0) / 2.0,
            prefill_tokens=np.zeros(len(w)),
            prefill_prompt_len=w.prompt_len,
            calibration=self.calibration,
            overlap=self.overlap,
            phase="decode",
            shapes=self.shapes,
            cuda_graphs=self.cuda_graphs,
        ).latency_s

    def running_tail(self, per_rank: np.ndarray, running: np.ndarray, t_dec: np.ndarray) -> np.ndarray:
        """A rank's running batch at its 99.9th percentile under Poisson arrivals, as the
        aggregated path counts it (serving._load_fluctuation, gamma_quantile): a decode-only
        iteration holds no prompts (their gain 0), so Var(n) = E[n] / (1 - R b (G - 1)) with b the
        iteration's seconds per added sequence (here the step at n + 1 less the step at n: the GPU's
        or, past the kink, the host's). Before, the pool's running_p999 was its mean: tuner
        recommend's plans never said near capacity however close their decode pool ran to its
        slots (a 6-chip plan's decode pool at 77.6 of 113)."""
        n = np.maximum(running, 1.0)
        per_sequence = np.maximum(self.iteration(n + 1.0) - self.iteration(n), 0.0)
        var_n, _, _ = _load_fluctuation(per_rank, self.w.gen_len, t_dec, running, per_sequence, np.zeros(len(running)))
        return np.where(running > 0, gamma_quantile(running, var_n, _P999_Z), 0.0)

    def tpot_variance(self, per_rank: np.ndarray, running: np.ndarray, t_dec: np.ndarray) -> np.ndarray:
        """Var(TPOT) over an open loop's requests in a rank: the pool's iterations are all
        decode-only, alike in kind, but their batch swings with the arrivals (running_tail's
        Var(n)), and a request's TPOT is the mean of its G - 1 iterations, which average the swings
        in part: serving.open_loop_tpot_variance with no prompts in the iterations (their gain 0),
        about 2/3 b^2 Var(n) where the batch's feedback is weak (a triangular autocorrelation over
        a window as long as the residence). Before, the pool reported its mean as its p90 and p99."""
        n = np.maximum(running, 1.0)
        per_sequence = np.maximum(self.iteration(n + 1.0) - self.iteration(n), 0.0)
        w = self.w
        zeros = np.zeros(len(running))
        variance = open_loop_tpot_variance(per_rank, t_dec, per_sequence, zeros, w.gen_len, w.gen_len_std)
        return np.where(running > 0, variance, 0.0)

    def at(self, rate: np.ndarray, start: np.ndarray | None = None, tail: bool = True) -> DecodePool:
        """The pool at ``rate`` (``start``: the running batch to warm-start from; ``tail`` False:
        running_p999 left at the mean, for a closed loop's rounds, which report the mean)."""
        # ``running`` and ``slots`` below are one rank's (start: an instance's, as returned).
        per_rank = np.asarray(rate, dtype=np.float64) / (self.instances * self.ranks)
        running = np.zeros(len(self.w)) if start is None else start / self.ranks
        t_dec = self.iteration(np.maximum(running, 1.0))
        for _ in range(_FIXED_POINT_ROUNDS):  # monotone from below: the least fixed point
            new = np.minimum(per_rank * self.steps * t_dec, self.slots)
            done = _converged(new, running)
            running = new
            t_dec = self.iteration(np.maximum(running, 1.0))
            if done:
                break
        memory = self.memory
        return DecodePool(
            instances=self.instances,
            chips_per_instance=self.chips_per_instance,
            ranks_per_instance=self.ranks,
            capacity_rps=self.capacity,
            iteration_s=t_dec,
            running=self.ranks * running,
            running_p999=self.ranks * (self.running_tail(per_rank, running, t_dec) if tail else running),
            tpot_variance=self.tpot_variance(per_rank, running, t_dec) if tail else np.zeros(len(running)),
            slots=self.ranks * self.slots,
            limited_by=self.limited_by,
            fits=self.fits,
            weights_bytes_per_chip=memory.weights,
            kv_bytes_per_token_per_chip=memory.kv_per_token,
            held_tokens=self.held,
        )


def prefill_pool(
    d: Deployments,
    w: ServingWorkloads,
    instances: np.ndarray | float,
    rate: np.ndarray | float,
    *,
    calibration: CalibrationProfile | None = None,
    overlap: Overlap = "overlapped",
    overheads: EngineOverheads | None = None,
) -> PrefillPool:
    """``instances`` copies of ``d`` (prefill layout) taking Poisson ``rate`` requests/s in all."""
    model = _PrefillModel(
        d, w, _instances("prefill_instances", instances, len(d)), calibration, overlap,
        resolve_overheads(calibration, overheads),
    )  # fmt: skip
    return model.at(_rates(rate, len(d)))


def decode_pool(
    d: Deployments,
    w: ServingWorkloads,
    instances: np.ndarray | float,
    rate: np.ndarray | float,
    *,
    calibration: CalibrationProfile | None = None,
    overlap: Overlap = "overlapped",
    overheads: EngineOverheads | None = None,
) -> DecodePool:
    """``instances`` copies of ``d`` (decode layout) decoding ``rate`` requests/s in all."""
    model = _DecodeModel(
        d, w, _instances("decode_instances", instances, len(d)), calibration, overlap,
        resolve_overheads(calibration, overheads),
    )  # fmt: skip
    return model.at(_rates(rate, len(d)))


def _rates(rate: np.ndarray | float, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(rate, dtype=np.float64), (n,))


@dataclass(frozen=True)
class KvLink:
    bytes: np.ndarray
    bandwidth: np.ndarray
    latency_s: np.ndarray

    @property
    def seconds(self) -> np.ndarray:
        return self.bytes / self.bandwidth + self.latency_s


def kv_link(
    prefill: Deployments,
    decode: Deployments,
    w: ServingWorkloads,
    prefill_instances: np.ndarray,
    decode_instances: np.ndarray,
    link_latency_s: float | None = None,
) -> KvLink:
    """Bytes of one request's KV cache and the link it crosses (see the module docstring)."""
    spec = prefill.hardware.interconnect
    if not isinstance(spec, SwitchedInterconnect):
        raise InvalidInputError(
            "hardware",
            f"{prefill.hardware.name} has a torus interconnect: the KV link between pools is modelled for GPUs",
            "use a GPU (switched interconnect) for disaggregated serving",
        )
    configs = decode.inference_configs("decode", np.ones(len(decode)))
    per_token = configs.kv_bytes_per_token(w.prompt_len)  # the prompt's cache (windowed layers: its last window)
    total = prefill_instances * prefill.chips + decode_instances * decode.chips
    one_domain = total <= spec.domain_size  # every instance in one NVLink domain (one node)
    per_chip = np.where(one_domain, spec.domain_bandwidth_bytes_per_s, spec.network_bandwidth_bytes_per_s)
    ports = _link_ports(prefill, decode)
    if link_latency_s is None:
        latency = np.where(one_domain, spec.domain_latency_s, spec.network_latency_s)
    else:
        latency = np.full(len(prefill), float(link_latency_s))
    moved = per_token * w.prompt_len * decode_rank_copies(decode)
    return KvLink(bytes=moved, bandwidth=per_chip * ports, latency_s=latency)


def decode_rank_copies(decode: Deployments) -> np.ndarray:
    """Copies of one request's KV cache its decode rank's chips hold, each of which crosses the
    link: the rank's chips / the ways its cache is split. An MLA latent is not split by head (vLLM
    and SGLang keep the whole latent on every TP rank, cost_models.partitioning.kv_cache_split), so
    each of a TP8 rank's chips takes all of it: DeepSeek-V3's 144 MB cache of a 2048-token prompt
    moves 8 times, 1.15 GB over 8 ports, ~2.9 ms at 50 GB/s a port, not 0.36 ms. KV heads fewer
    than the TP chips are replicated the same way (4 KV heads at TP8: 2 copies); heads split
    evenly move once."""
    rank = rank_view(decode)
    ways = kv_ways_by_phase(rank, ("decode",))["decode"]
    return _chips_per_rank(decode) / ways


def _chips_per_rank(d: Deployments) -> np.ndarray:
    """Chips of one attention-DP rank (its TP group): all of an instance's without DP."""
    return (d.chips // d.data_parallel).astype(np.float64)


def _link_ports(prefill: Deployments, decode: Deployments) -> np.ndarray:
    """Ports one request's cache crosses: a prefill rank computed it and a decode rank takes it
    (under attention DP each rank holds its own requests' cache, SGLang's
    disaggregation/prefill.py sending per DP rank), each chip of the smaller TP group through its own
    port. Without DP a rank is the whole instance."""
    return np.minimum(_chips_per_rank(prefill), _chips_per_rank(decode))


def _check_same_load(w: ServingWorkloads, prefill_w: ServingWorkloads) -> None:
    """The prefill pool's workloads differ from the decode pool's in engine knobs only: the load
    and the lengths are the pair's."""
    for name in ("concurrency", "request_rate", "prompt_len", "gen_len", "prefix_hit_rate"):
        mine, theirs = getattr(prefill_w, name), getattr(w, name)
        if len(mine) != len(theirs) or not np.array_equal(mine, theirs, equal_nan=True):
            raise InvalidInputError(
                "prefill_workloads", f"its {name} differs from the decode pool's", "give both pools the same load"
            )


def _check_pools(prefill: Deployments, decode: Deployments, w: ServingWorkloads) -> None:
    if len(prefill) != len(decode) or len(w) != len(prefill):
        raise InvalidInputError(
            "decode",
            f"{len(prefill)} prefill deployments, {len(decode)} decode, {len(w)} workloads",
            "pass one of each per configuration",
        )
    if prefill.hardware != decode.hardware:
        raise InvalidInputError(
            "decode.hardware",
            f"{decode.hardware.name} differs from the prefill pool's {prefill.hardware.name}",
            "use the same chip for both pools",
        )
    p_models = np.array([m.name for m in prefill.models])[prefill.model_index]
    d_models = np.array([m.name for m in decode.models])[decode.model_index]
    if np.any(p_models != d_models):
        raise InvalidInputError("decode.model", "differs from the prefill pool's model", "serve one model in both")


def closed_loop_residual_s(p: PrefillPool, clients: np.ndarray) -> np.ndarray:
    """A closed loop's wait for the prefill iteration running when a request reaches its prefill
    rank: the pools' iterations keep their own time (a client's next request leaves the decode
    instance at a decode iteration's end, unrelated to the prefill rank's), so it lands in a
    running iteration with the probability the others keep the rank busy and waits half of it.
    The other C - 1 clients only (the arrival theorem of closed networks: an arriving request sees
    the system as it runs without it): one client finds its rank idle, as its own last prompt left
    it. The wait is the client's time, so it is in the cycle the throughput is found from (Little's
    law). Before it was half an iteration whenever the rank worked at all and outside the cycle:
    requests/s x engine E2E came to 1.015 of 1 client, 16.21 of 16 and 65.91 of 64 (Llama-3-70B,
    2048/256 tokens, a TP8 prefill and a TP8 decode instance of H100s under TensorRT-LLM's fit)."""
    others = np.maximum(clients - 1.0, 0.0) / np.maximum(clients, 1.0)
    return 0.5 * p.iteration_s * p.busy * others


def _ttft_tail(
    p: PrefillPool,
    w: ServingWorkloads,
    queue: np.ndarray,
    clients: np.ndarray | None,
    mean: np.ndarray,
    overhead: float,
) -> dict[str, np.ndarray]:
    """TTFT's p90 and p99 (:mod:`cost_models.ttft_percentiles`): the rest of the running prefill
    iteration (landed in with probability ``busy``, uniform over it: E[R^2] = busy t^2 / 3), the
    open loop's M/D/1 wait (its service from the steady state's mean, P-K inverted) and the prompt's
    length moving its prefill in proportion; a closed loop's wait for a client's turn a constant.
    The open loop's wait is the M/G/1 one (``_PrefillModel.at``: the M/D/1 one times 1 + cv^2), so
    the mean service is P-K inverted through that factor."""
    t_iter = p.iteration_s
    others = 1.0 if clients is None else np.maximum(clients - 1.0, 0.0) / np.maximum(clients, 1.0)
    busy = p.busy * others
    residual = 0.5 * t_iter * busy
    var = np.maximum(busy * t_iter**2 / 3.0 - residual**2, 0.0)
    cv2 = lognormal_cv2(w.prompt_len, w.prompt_len_std)
    if clients is None:
        rho = np.clip(p.utilisation, 0.0, 0.999)
        wait = np.maximum(queue - residual, 0.0)
        service = np.where(rho > 0.0, wait * 2.0 * (1.0 - rho) / (np.maximum(rho, 1e-30) * (1.0 + cv2)), 0.0)
        var = var + md1_wait_variance(wait, rho, service, cv2)
    var = var + cv2 * p.prefill_s**2
    return single_percentiles(mean, np.where(np.isfinite(mean), var, 0.0), np.full(len(mean), overhead))


def combine(
    p: PrefillPool,
    q: DecodePool,
    link: KvLink,
    w: ServingWorkloads,
    rate: np.ndarray,
    *,
    clients: np.ndarray | None = None,
    request_overhead_s: float = 0.0,
) -> DisaggregatedEstimate:
    """The matched pools at ``rate`` requests/s (``clients``: closed loop, the rate is the
    throughput found for them and their wait beyond the pools is added to TTFT).
    ``request_overhead_s``: TTFT outside the engines (HTTP, tokenization)."""
    gen = w.gen_len
    n = len(w)
    rate = np.broadcast_to(np.asarray(rate, dtype=np.float64), (n,))
    # Each prefill rank (the instance without attention DP) sends R / (xP DP) caches a second
    # through its own ports, and each decode instance takes in R / yD of them through its ports:
    # a transfer holds min(prefill, decode rank chips) ports (kv_link), so a decode instance of d
    # chips runs d / min(...) transfers at once.
    # Both ends must keep up: 10 prefill instances of one H100 and one decode instance of one,
    # across nodes (50 GB/s a chip), Qwen3-8B at 60/s with 8192-token prompts (1.2 GB of cache
    # each): every prefill port 14% busy, the decode port asked for 72 GB/s, 145%.
    ports = np.minimum(p.chips_per_instance / p.ranks_per_instance, q.chips_per_instance / q.ranks_per_instance)
    egress = rate / (p.instances * p.ranks_per_instance) * link.seconds
    ingress = rate / q.instances * link.seconds * ports / q.chips_per_instance
    link_util = np.maximum(egress, ingress)
    capacity = np.minimum(p.capacity_rps, q.capacity_rps)
    fits = p.fits & q.fits
    if clients is None:
        stable = fits & (p.utilisation < 1.0) & (rate < q.capacity_rps) & (link_util < 1.0)
        queue = p.queue_s
        queued = np.where(stable, 0.0, np.inf)
    else:
        stable = fits & (link_util < 1.0)
        residual = closed_loop_residual_s(p, clients)
        # A client's cycle holds its request overhead outside the pools (its HTTP and tokenization,
        # the answer's way back: a benchmark client sends its next request when the last answer
        # arrived), so C = X x E2E and the pools hold X x (E2E - overhead) of the clients.
        service = residual + p.prefill_s + link.seconds + (gen - 1.0) * q.iteration_s + request_overhead_s
        in_pools = rate * (service - request_overhead_s)  # Little's law
        wait = np.where(rate > 0, np.maximum(clients / np.maximum(rate, 1e-300) - service, 0.0), np.inf)
        queue = np.where(stable, residual + wait, np.inf)
        queued = np.maximum(clients - in_pools, 0.0)
    bad = ~stable
    ttft = queue + p.prefill_s + link.seconds + request_overhead_s
    ttft_tail = _ttft_tail(p, w, queue, clients, ttft - request_overhead_s, request_overhead_s)
    tpot = np.where(gen > 1.0, q.iteration_s, 0.0)
    # No mixed iterations in the decode pool, but an open loop's batch swings (DecodePool's
    # tpot_variance); a closed loop's clients keep it about constant: its mean.
    tpot_variance = np.where((gen > 1.0) & (clients is None), q.tpot_variance, 0.0)
    chips = p.instances * p.chips_per_instance + q.instances * q.chips_per_instance
    requests = np.where(bad, 0.0, rate)
    tokens = requests * gen
    running = q.instances * q.running
    inf = np.full(n, np.inf)
    return DisaggregatedEstimate(
        ttft_s=np.where(bad, inf, ttft),
        ttft_p90_s=np.where(bad, inf, ttft_tail["ttft_p90_s"]),
        ttft_p99_s=np.where(bad, inf, ttft_tail["ttft_p99_s"]),
        tpot_s=np.where(bad, inf, tpot),
        tpot_p90_s=np.where(bad, inf, gamma_quantile(tpot, tpot_variance, Z_P90)),
        tpot_p99_s=np.where(bad, inf, gamma_quantile(tpot, tpot_variance, Z_P99)),
        e2e_latency_s=np.where(bad, inf, ttft + (gen - 1.0) * tpot),
        tokens_per_s=tokens,
        tokens_per_s_per_chip=tokens / chips,
        tokens_per_s_per_user=np.where(bad | (tpot <= 0), 0.0, 1.0 / np.where(tpot > 0, tpot, 1.0)),
        requests_per_s=requests,
        max_concurrency=q.instances * q.slots,
        running=running,
        # An open loop's decode pool swings with the arrivals (DecodePool.running_p999), as an
        # aggregated replica's batch does; a closed loop's is its mean (serving's closed loop).
        running_p999=_running_p999(q, running, stable, clients),
        queued=queued,
        mixed_share=np.zeros(n),
        prefill_tokens_per_mixed_iteration=np.zeros(n),
        decode_iteration_s=q.iteration_s,
        mixed_iteration_s=np.full(n, np.nan),
        stable=stable,
        fits=fits,
        weights_bytes_per_chip=q.weights_bytes_per_chip,
        # A chip holds its rank's sequences (the instance's over its DP ranks).
        kv_cache_bytes_per_chip=q.kv_bytes_per_token_per_chip * q.held_tokens * q.running / q.ranks_per_instance,
        kv_bytes_per_token_per_chip=q.kv_bytes_per_token_per_chip,
        limited_by=q.limited_by,
        prefill_instances=p.instances,
        decode_instances=q.instances,
        chips=chips,
        capacity_rps=capacity,
        prefill_capacity_rps=p.capacity_rps,
        decode_capacity_rps=q.capacity_rps,
        limiting_pool=np.where(p.capacity_rps <= q.capacity_rps, POOLS[0], POOLS[1]),
        balance=p.capacity_rps / np.where(q.capacity_rps > 0, q.capacity_rps, np.nan),
        prefill_iteration_s=p.iteration_s,
        prefill_tokens_per_iteration=p.tokens_per_iteration,
        prefill_queue_s=np.where(bad, inf, queue),
        prefill_utilisation=p.utilisation,
        decode_utilisation=q.running / np.where(q.slots > 0, q.slots, np.nan),
        kv_transfer_s=link.seconds,
        kv_transfer_bytes=link.bytes,
        kv_link_bandwidth_bytes_per_s=link.bandwidth,
        kv_link_utilisation=link_util,
    )


def _running_p999(q: DecodePool, running: np.ndarray, stable: np.ndarray, clients: np.ndarray | None) -> np.ndarray:
    """The decode pool's running batch at its 99.9th percentile: an open loop's swings (the
    aggregated path's ``running_p999``, its slots where unstable), a closed loop's mean."""
    if clients is not None:
        return running
    return np.where(stable, q.instances * q.running_p999, q.instances * q.slots)


def serve_disaggregated(
    prefill: Deployments,
    decode: Deployments,
    workloads: ServingWorkloads,
    *,
    prefill_instances: np.ndarray | float,
    decode_instances: np.ndarray | float,
    calibration: CalibrationProfile | None = None,
    overlap: Overlap = "overlapped",
    link_latency_s: float | None = None,
    overheads: EngineOverheads | None = None,
    prefill_workloads: ServingWorkloads | None = None,
) -> DisaggregatedEstimate:
    """Steady state of n disaggregated configurations: row i pairs ``prefill_instances[i]``
    copies of ``prefill.take(i)`` with ``decode_instances[i]`` copies of ``decode.take(i)`` under
    ``workloads.take(i)`` (its ``max_num_tokens`` and ``max_batch_size`` size prefill
    iterations, its ``max_batch_size`` decode batches). Open loop (``request_rate``) or closed
    (``concurrency``). ``overheads``: each instance's engine host costs, as in
    :func:`cost_models.serving.serve` (None: the calibration's engine's fit; none without a
    calibration). ``prefill_workloads``: the prefill pool's own engine knobs (its batch limit
    apart from the decode pool's: ``tuner estimate --prefill-max-batch-size``), the load and
    lengths those of ``workloads``; None: ``workloads``."""
    if overlap not in OVERLAPS:
        raise InvalidInputError("overlap", f"unknown value {overlap!r}", f"use {' or '.join(OVERLAPS)}")
    _check_pools(prefill, decode, workloads)
    if prefill_workloads is not None:
        _check_same_load(workloads, prefill_workloads)
    n = len(workloads)
    xp = _instances("prefill_instances", prefill_instances, n)
    yd = _instances("decode_instances", decode_instances, n)
    w = workloads
    link = kv_link(prefill, decode, w, xp, yd, link_latency_s)
    closed = w.closed_loop
    rate = np.where(closed, 0.0, w.request_rate)
    overheads = resolve_overheads(calibration, overheads)
    pm = _PrefillModel(
        prefill, w if prefill_workloads is None else prefill_workloads, xp, calibration, overlap, overheads
    )
    dm = _DecodeModel(decode, w, yd, calibration, overlap, overheads)
    open_result = combine(pm.at(rate), dm.at(rate), link, w, rate, request_overhead_s=overheads.request_overhead_s)
    if not np.any(closed):
        return open_result
    # Closed loop: throughput X = min(C / E2E(X), capacity), a damped fixed point on X (the
    # pools' own fixed points warm-started from the last round).
    # Transfers a second both ends sustain (combine's egress and ingress).
    ports = _link_ports(prefill, decode)
    link_capacity = np.minimum(xp * prefill.data_parallel, yd * decode.chips / ports) / np.maximum(link.seconds, 1e-300)
    capacity = np.minimum(np.minimum(pm.at(np.zeros(n)).capacity_rps, dm.capacity), link_capacity)
    clients = np.where(closed, w.concurrency, 0.0)
    x = np.zeros(n)
    p, q = pm.at(x), dm.at(x, tail=False)
    for _ in range(_FIXED_POINT_ROUNDS):
        service = closed_loop_residual_s(p, clients) + p.prefill_s + link.seconds + (w.gen_len - 1.0) * q.iteration_s
        service = service + overheads.request_overhead_s  # in the client's cycle (combine)
        new = 0.5 * x + 0.5 * np.minimum(clients / service, capacity * 0.999)
        done = _converged(new, x)
        x = new
        p, q = pm.at(x, p.tokens_per_iteration), dm.at(x, q.running, tail=False)
        if done:
            break
    # At most what the pools at x serve (the last round moved x within the tolerance): each client
    # has one request in the pools, waiting for them or in its request overhead, so C = X x E2E
    # exactly.
    service = closed_loop_residual_s(p, clients) + p.prefill_s + link.seconds + (w.gen_len - 1.0) * q.iteration_s
    service = service + overheads.request_overhead_s
    x = np.where(clients > 0, np.minimum(x, clients / service), x)
    closed_result = combine(p, q, link, w, x, clients=clients, request_overhead_s=overheads.request_overhead_s)
    columns = {
        f.name: np.where(closed, getattr(closed_result, f.name), getattr(open_result, f.name))
        for f in fields(DisaggregatedEstimate)
    }
    return DisaggregatedEstimate(**columns)
