"""Serving under load: in-flight batching at a client concurrency or a Poisson request rate.

An engine (vLLM, SGLang, TensorRT-LLM) runs iterations (Orca's iteration-level scheduling): each
holds one token of every running sequence in decode plus prompt tokens of newly admitted requests,
up to ``max_num_tokens`` tokens and ``max_batch_size`` sequences, with the KV cache paged in blocks.
This module gives the steady state of that loop for n deployments at once, from the per-iteration
cost of :mod:`cost_models.iteration` (calibrated per engine when a profile is given):

- **Composition.** Prefill work arrives at ``rate x prompt`` uncached tokens per second. An
  iteration holding prefill ("mixed") carries up to the token budget left after the decode tokens
  (whole prompts unless prefill is chunked); the rest are decode-only. Closed-loop clients with
  fixed lengths return in the groups the first burst formed (a benchmark's steady state: every
  cycle of ``gen_len`` iterations re-prefills all running requests in ``ceil(b P / k)`` mixed
  iterations, AIConfigurator's "mix steps"); with spread lengths the groups dissolve and a
  Poisson number of prompts arrives per iteration (the requests that finished in the one before);
  open-loop Poisson arrivals mix an iteration with probability ``1 - exp(-R t)``, and at least
  as often as the prompt work needs at the budget a mixed iteration holds.
- **TPOT** is the mean iteration time a decoding request sees: mixed iterations stall it
  (prefill interference). **TTFT** is the wait for the next iteration, the queue for the prefill
  budget (M/D/1 in the open loop), the prefill iterations of the request itself, and in a
  closed-loop benchmark the first burst of every client at once, weighted by its share of the run.
- **Memory.** The KV cache is paged: a sequence holds its blocks as it grows, so the sustainable
  concurrency is the KV budget the engine sets aside (each engine's own rule for its memory
  knob, :func:`kv_budget_bytes`) over the mean blocks a running sequence holds, not over every
  sequence's full length; clients beyond it (or beyond
  ``max_batch_size``) queue, and the estimate says so (``queued``).
- **Throughput** follows from the cycle: ``b x gen_len`` output tokens per cycle of mixed and
  decode-only iterations; per user ``1 / TPOT``; Little's law ties concurrency, rate and latency.

Lengths may have a spread (standard deviation): the steady state uses the means, except for the
prefill attention, quadratic in the prompt, scored at E[P^2] / E[P]; the discrete-event simulation
(:mod:`cost_models.serving_simulation`) draws the lengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import cached_property
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np

from cost_models.calibrated_times import calibrated_network, check_profile
from cost_models.calibration import CalibrationProfile, CudaGraphs
from cost_models.deployment import OVERLAPS, Overlap, dp_shared_expert_bytes, kv_ways_by_phase, sharding_plans
from cost_models.deployments import Deployments
from cost_models.dtypes import BYTES_PER_ELEMENT
from cost_models.errors import InvalidInputError
from cost_models.inference_configs import MAX_SIZE
from cost_models.input_ranges import MEMORY_FRACTION_RANGE, REQUEST_RATE_PER_S_RANGE
from cost_models.iteration import IterationShapes, iteration_shapes, iteration_times
from cost_models.operators import gemm_output_bytes
from cost_models.partitioning import gathered_weight_buffer_bytes, mxfp4_checkpoint_extra_bytes, weight_bytes_per_chip
from cost_models.topology import Network, network_for
from cost_models.ttft_percentiles import (
    TTFT_PERCENTILES,
    Z_P90,
    Z_P99,
    closed_loop_quantiles,
    gamma_quantile,
    lognormal_cv2,
    md1_wait_variance,
    mixture_quantiles,
    normal_cdf,
)

#: Engine defaults (each engine's documented default for an online server on one node): the
#: most sequences per iteration, the token budget of an iteration, chunked prefill, KV block
#: size in tokens, the engine's memory knob (a share of what differs by engine:
#: :func:`kv_budget_bytes`). TensorRT-LLM: ``max_batch_size`` 2048, ``max_num_tokens`` 8192,
#: ``tokens_per_block`` 32, ``free_gpu_memory_fraction`` 0.9, chunked context off (LLM API
#: defaults). vLLM V1: ``max_num_seqs`` 256, ``max_num_batched_tokens`` 8192 (online serving on a
#: large GPU), chunked (the V1 scheduler honours it off too), ``block_size`` 16,
#: ``gpu_memory_utilization`` 0.9. SGLang: ``max_running_requests`` unset (bounded by memory; 2048
#: here), ``chunked_prefill_size`` 8192, page size 1, ``mem_fraction_static`` about 0.88.
ENGINE_DEFAULTS: dict[str, dict[str, Any]] = {
    "trtllm": {
        "max_batch_size": 2048,
        "max_num_tokens": 8192,
        "chunked_prefill": False,
        "kv_block_size": 32,
        "memory_fraction": 0.9,
    },
    "vllm": {
        "max_batch_size": 256,
        "max_num_tokens": 8192,
        "chunked_prefill": True,
        "kv_block_size": 16,
        "memory_fraction": 0.9,
    },
    "sglang": {
        "max_batch_size": 2048,
        "max_num_tokens": 8192,
        "chunked_prefill": True,
        "kv_block_size": 1,
        "memory_fraction": 0.88,
    },
    "jax": {
        "max_batch_size": 512,
        "max_num_tokens": 8192,
        "chunked_prefill": True,
        "kv_block_size": 16,
        "memory_fraction": 0.9,
    },
}
#: Requests each closed-loop client sends in a benchmark run (``vllm bench serve`` and genai-perf
#: are commonly run with ten times the concurrency in prompts): the first burst, every client at
#: once, is that share of the measured mean TTFT. 0 means the steady state only.
DEFAULT_REQUESTS_PER_CLIENT = 10.0
#: Output-length spread (standard deviation over the mean) when none is given. A closed loop whose
#: outputs are all exactly ``gen_len`` long keeps the first burst's groups for good: prompts
#: prefilled together finish together and return together (a convoy), each group's mixed
#: iteration paying the host cost of every prompt in it. Measured serving runs do not look like
#: that (tuner.calibrate_serving.RUNS_GEN_LEN_CV, the same 5%: the runs at 16-32 clients on 4-8
#: GPUs show about 100 ms TTFT, a prompt prefilled alone, 1.4-2x under the grouped model), and a
#: real workload's outputs differ. Any spread desynchronizes the loop; the steady state's means
#: do not depend on its size (the simulation dissolves the groups alike at 5% and 20%, only more
#: slowly at 5%). Pass ``gen_len_std=0`` for exactly equal outputs and the grouped model. The
#: open loop's steady state does not read it (the simulation draws its outputs with it).
DEFAULT_GEN_LEN_CV = 0.05
SERVING_MODES: tuple[str, ...] = ("closed", "open")
_OVERHEADS_DIR = "serving_overheads"


@dataclass(frozen=True)
class EngineOverheads:
    """Host-side costs of an engine's serving loop that no kernel shows. The engine prepares
    iteration i+1 on the CPU while the GPU runs iteration i (TensorRT-LLM's overlap scheduler,
    vLLM V1's async scheduling), so an iteration takes the longer of its GPU time and its host
    time: ``host_per_sequence_s`` for every scheduled sequence plus ``host_per_new_request_s`` for
    each prompt it starts (request set-up, sampling state, streaming). ``request_overhead_s`` is
    the part of a measured TTFT outside the engine loop (HTTP, tokenization, first response).
    Fitted on measured serving runs (``tuner.calibrate_serving``); all zero is the pure GPU model."""

    host_per_sequence_s: float = 0.0
    host_per_new_request_s: float = 0.0
    request_overhead_s: float = 0.0
    backend: str = "none"
    fitted_on: str = "nothing: the pure GPU cost model"
    borrowed: bool = False  # True: this engine was not measured; another engine's fit stands in

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


NO_OVERHEADS = EngineOverheads()


def resolve_overheads(calibration: CalibrationProfile | None, overheads: EngineOverheads | None) -> EngineOverheads:
    """The overheads given, else the calibration's engine's fit, else none (the pure model)."""
    if overheads is not None:
        return overheads
    return engine_overheads(calibration.backend) if calibration is not None else NO_OVERHEADS


def engine_overheads(backend: str) -> EngineOverheads:
    """The shipped fit for ``backend`` (``cost_models/serving_overheads/<backend>.yaml``); an
    engine with no measured serving runs borrows TensorRT-LLM's and says so (``borrowed``)."""
    from importlib import resources

    import yaml

    folder = resources.files("cost_models").joinpath(_OVERHEADS_DIR)
    for name, borrowed in ((backend, False), ("trtllm", True)):
        entry = folder.joinpath(f"{name}.yaml")
        if entry.is_file():
            data = yaml.safe_load(entry.read_text(encoding="utf-8"))
            return EngineOverheads(**{**data, "borrowed": borrowed})
    return NO_OVERHEADS


@dataclass(frozen=True)
class ServingWorkloads:
    """n serving workloads and engine settings, a struct of arrays beside :class:`Deployments`.
    ``concurrency`` is NaN where the load is an open-loop ``request_rate`` (requests/s), and the
    other way round. Lengths are means with a standard deviation (0: fixed)."""

    concurrency: np.ndarray
    request_rate: np.ndarray
    prompt_len: np.ndarray
    gen_len: np.ndarray
    prompt_len_std: np.ndarray
    gen_len_std: np.ndarray
    max_batch_size: np.ndarray
    max_num_tokens: np.ndarray
    chunked_prefill: np.ndarray  # bool
    kv_block_size: np.ndarray
    prefix_hit_rate: np.ndarray  # share of each prompt found in the prefix cache
    memory_fraction: np.ndarray  # the engine's memory knob; what it is a share of: :func:`kv_budget_bytes`
    requests_per_client: np.ndarray  # closed loop: benchmark length, for the first burst's share
    engine: np.ndarray  # str: the serving engine (a key of ENGINE_DEFAULTS), whose memory rule applies

    def __len__(self) -> int:
        return int(self.prompt_len.shape[0])

    @property
    def closed_loop(self) -> np.ndarray:
        return np.isfinite(self.concurrency)

    def take(self, index: np.ndarray | slice | int) -> ServingWorkloads:
        return ServingWorkloads(**{f.name: np.atleast_1d(getattr(self, f.name)[index]) for f in fields(self)})

    def row(self, i: int) -> dict[str, Any]:
        """Workload ``i`` as plain data (what a stored trial keeps)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)[i]
            if f.name == "chunked_prefill":
                out[f.name] = bool(value)
            elif f.name == "engine":
                out[f.name] = str(value)
            elif f.name in ("max_batch_size", "max_num_tokens", "kv_block_size"):
                out[f.name] = int(value)
            else:
                out[f.name] = None if not np.isfinite(value) else float(value)
        return out


def serving_cuda_graphs(d: Deployments, w: ServingWorkloads, data_parallel: np.ndarray | None = None) -> CudaGraphs:
    """Which iterations each deployment's engine replays from CUDA graphs, by its knobs (the
    others run eager and pay the GEMMs' per-call host floors: calibration.CudaGraphs): vLLM's
    capture size from ``max_batch_size`` (max_num_seqs) and ``max_num_tokens``
    (max_num_batched_tokens), SGLang's ``cuda_graph_max_bs`` from the GPU's memory and
    ``tp_size``, which spans its DP-attention ranks (``d`` one rank's view: its TP times
    ``data_parallel``)."""
    tp = d.tensor_parallel if data_parallel is None else d.tensor_parallel * data_parallel
    return CudaGraphs.of(
        w.engine,
        max_batch_size=w.max_batch_size,
        max_num_tokens=w.max_num_tokens,
        memory_bytes=d.hardware.memory_bytes,
        tensor_parallel=tp,
    )


def default_max_batch_size(engine: str, data_parallel: np.ndarray | float) -> np.ndarray:
    """The deployment's most sequences running at once when the user sets none: the engine's
    default (:data:`ENGINE_DEFAULTS`) in each of its ``data_parallel`` ranks, as the engine
    launched with its defaults runs them (:func:`rank_workloads` then gives each rank
    ceil(this / DP), the default itself, and ``tuner export`` writes that per rank). vLLM runs
    each DP rank as its own engine core whose scheduler takes the one ``--max-num-seqs``
    (vllm-project/vllm docs/serving/data_parallel_deployment.md: 'each DP rank is deployed as a
    separate "core engine" process'); TensorRT-LLM's ``max_batch_size`` is each attention-DP
    rank's; SGLang's plain DP replicas (a dense model) are each a whole server, and under DP
    attention SGLang divides ``--max-running-requests`` by ``--dp-size`` only when it is given:
    unset, each rank is bounded by its own memory (sgl-project/sglang
    python/sglang/srt/model_executor/model_runner.py: ``max_total_num_tokens // 2 if
    max_running_requests is None else max_running_requests // dp_size``), the 2048 here a rank;
    the export writes DP x 2048 for SGLang to divide."""
    # (A DP degree below 1 is refused where the deployment is checked, naming dp, not here.)
    dp = np.maximum(np.asarray(data_parallel, dtype=np.float64), 1.0)
    return float(ENGINE_DEFAULTS[engine]["max_batch_size"]) * dp


def lognormal_mu_sigma(mean: float, std: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with this mean and standard deviation (the lengths the
    serving model and tuner simulate draw: cost_models.serving_simulation._lengths)."""
    sigma2 = math.log1p((std / mean) ** 2)
    return math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2)


#: The share of requests whose lengths an exported engine's context limit admits
#: (:func:`length_quantile`): one request in a thousand longer than it is refused by the engine.
CONTEXT_QUANTILE = 0.999


def length_quantile(mean: float, std: float, q: float = CONTEXT_QUANTILE) -> int:
    """The whole length below which a share ``q`` of the lognormal draws fall: the mean when
    ``std`` is 0, else the lognormal's quantile (rounded up). What an engine's maximum context must
    hold for the lengths the serving model and the simulation draw, not only their mean."""
    if std <= 0.0:
        return max(round(mean), 1)
    mu, sigma = lognormal_mu_sigma(mean, std)
    return max(math.ceil(math.exp(mu + sigma * NormalDist().inv_cdf(q))), 1)


def spread_context_notes(max_context: int, model_name: str, w: ServingWorkloads, index: int = 0) -> list[str]:
    """Where the mean prompt + output fit the model's trained context (``max_context``; 0:
    unknown) but the workload's spread draws longer requests: their CONTEXT_QUANTILE lengths pass
    it, and engines refuse those requests (the export's context limit says so; tuner estimate and
    simulate scored them with no word: prompts of 4,096 +- 4,000 tokens on Llama-3-8B's 8,192, a
    99.9% length of 36,800). The mean's own note is context_notes'."""
    mean = float(w.prompt_len[index]) + float(w.gen_len[index])
    longest = length_quantile(float(w.prompt_len[index]), float(w.prompt_len_std[index])) + length_quantile(
        float(w.gen_len[index]), float(w.gen_len_std[index])
    )
    if not max_context or mean > max_context or longest <= max_context:
        return []
    return [
        f"prompt + output at their {CONTEXT_QUANTILE:.1%} lengths under the workload's spread ({longest:,} tokens) "
        f"pass {model_name}'s trained context of {max_context:,}: engines refuse the requests past it (the estimate "
        "scores them), without a RoPE-scaling or length override"
    ]


def make_workloads(
    n: int | None = None,
    *,
    backend: str = "trtllm",
    concurrency: np.ndarray | float | None = None,
    request_rate: np.ndarray | float | None = None,
    prompt_len: np.ndarray | float,
    gen_len: np.ndarray | float,
    prompt_len_std: np.ndarray | float = 0.0,
    gen_len_std: np.ndarray | float | None = None,
    max_batch_size: np.ndarray | float | None = None,
    max_num_tokens: np.ndarray | float | None = None,
    chunked_prefill: np.ndarray | bool | None = None,
    kv_block_size: np.ndarray | float | None = None,
    prefix_hit_rate: np.ndarray | float = 0.0,
    memory_fraction: np.ndarray | float | None = None,
    requests_per_client: np.ndarray | float = DEFAULT_REQUESTS_PER_CLIENT,
    data_parallel: np.ndarray | float = 1.0,
) -> ServingWorkloads:
    """Broadcast into :class:`ServingWorkloads`, engine knobs defaulting to ``backend``'s, every
    entry validated (one-line errors naming the field). ``gen_len_std`` None: outputs spread by
    :data:`DEFAULT_GEN_LEN_CV` of ``gen_len`` (a desynchronized closed loop); 0: exactly equal.
    ``max_batch_size`` is the deployment's; None: what the engine launched with its defaults runs
    over ``data_parallel`` ranks (:func:`default_max_batch_size`)."""
    if backend not in ENGINE_DEFAULTS:
        raise InvalidInputError("backend", f"unknown engine {backend!r}", f"use one of {', '.join(ENGINE_DEFAULTS)}")
    if (concurrency is None) == (request_rate is None):
        raise InvalidInputError(
            "serving", "needs exactly one of concurrency and request_rate", "pass --concurrency C or --request-rate R"
        )
    defaults = ENGINE_DEFAULTS[backend]
    columns: dict[str, Any] = {
        "concurrency": np.nan if concurrency is None else concurrency,
        "request_rate": np.nan if request_rate is None else request_rate,
        "prompt_len": prompt_len,
        "gen_len": gen_len,
        "prompt_len_std": prompt_len_std,
        "gen_len_std": 0.0 if gen_len_std is None else gen_len_std,  # None: resolved below
        "max_batch_size": (
            default_max_batch_size(backend, data_parallel) if max_batch_size is None else max_batch_size
        ),
        "max_num_tokens": defaults["max_num_tokens"] if max_num_tokens is None else max_num_tokens,
        "chunked_prefill": defaults["chunked_prefill"] if chunked_prefill is None else chunked_prefill,
        "kv_block_size": defaults["kv_block_size"] if kv_block_size is None else kv_block_size,
        "prefix_hit_rate": prefix_hit_rate,
        "memory_fraction": defaults["memory_fraction"] if memory_fraction is None else memory_fraction,
        "requests_per_client": requests_per_client,
    }
    names = list(columns)
    shapes = [np.atleast_1d(np.asarray(columns[k])) for k in names]
    if n is not None:
        shapes.append(np.zeros(n))
    arrays = np.broadcast_arrays(*shapes)
    typed = {
        k: np.ascontiguousarray(a, dtype=bool if k == "chunked_prefill" else np.float64)
        for k, a in zip(names, arrays[: len(names)], strict=True)
    }
    if gen_len_std is None:
        typed["gen_len_std"] = DEFAULT_GEN_LEN_CV * typed["gen_len"]
    typed["engine"] = np.full(len(typed["prompt_len"]), backend)
    workloads = ServingWorkloads(**typed)
    validate_workloads(workloads)
    return workloads


#: Why an aggregated SGLang deployment with chunked prefill off is not scored. Every iteration the
#: serving model charges holds one token of each decoding sequence beside the prompt tokens it
#: prefills (vLLM V1's and TensorRT-LLM's in-flight batching). SGLang mixes decodes into a
#: prefill (extend) batch only with --enable-mixed-chunk (off by default: sgl-project/sglang
#: python/sglang/srt/server_args.py, ``enable_mixed_chunk: bool = False``), and only with chunked
#: prefill on (python/sglang/srt/managers/scheduler.py, ``is_mixed_chunk = chunked_prefill_size
#: is not None and server_args.enable_mixed_chunk``; a size <= 0 is None, and
#: _get_new_batch_prefill_raw calls ``mix_with_running`` only under is_mixed_chunk). Otherwise
#: get_next_batch_to_run runs a prefill batch whenever one forms and a decode batch only when none
#: does: the decodes stall through every prefill, a schedule this model does not score (higher
#: TPOT under load, a different TTFT). A disaggregated pool mixes nothing under any engine (its
#: prefill instance runs no decodes, its decode instance no prompts), so it is not refused.
UNMIXED_SGLANG_PROBLEM = (
    "SGLang mixes decodes into prefill batches only with chunked prefill (--enable-mixed-chunk); "
    "the model scores mixed iterations"
)


def refuse_unmixed_sglang(w: ServingWorkloads, field: str, fix: str) -> None:
    """Raise :class:`InvalidInputError` naming ``field`` where a row runs SGLang with chunked
    prefill off, aggregated (:data:`UNMIXED_SGLANG_PROBLEM`). For the aggregated one-deployment
    commands (estimate, simulate); a study refuses it when compiled, the export too."""
    if np.any((w.engine == "sglang") & ~w.chunked_prefill):
        raise InvalidInputError(field, UNMIXED_SGLANG_PROBLEM, fix)


def _check(name: str, bad: np.ndarray, values: np.ndarray, must: str, fix: str) -> None:
    if np.any(bad):
        value = values[int(np.argmax(bad))]
        raise InvalidInputError(name, f"{must}, got {value:g}", fix)


def validate_workloads(w: ServingWorkloads) -> None:
    """Raise :class:`InvalidInputError` naming the first bad field."""
    unknown = ~np.isin(w.engine, list(ENGINE_DEFAULTS))
    if np.any(unknown):
        engine = str(w.engine[int(np.argmax(unknown))])
        raise InvalidInputError("backend", f"unknown engine {engine!r}", f"use one of {', '.join(ENGINE_DEFAULTS)}")
    closed = np.isfinite(w.concurrency)
    _check(
        "concurrency",
        closed & ((w.concurrency < 1) | (w.concurrency != np.floor(w.concurrency))),
        w.concurrency,
        "must be a whole number >= 1",
        "pass --concurrency 1 or more",
    )
    # Within the range the CLI and the spec take (cost_models.input_ranges), not only above 0:
    # make_workloads(request_rate=1e-320), a subnormal, was taken.
    low_rate, high_rate = REQUEST_RATE_PER_S_RANGE
    _check(
        "request_rate",
        ~closed & ~((w.request_rate >= low_rate) & (w.request_rate <= high_rate)),  # NaN fails too
        w.request_rate,
        f"must be from {low_rate:g} to {high_rate:g} requests per second",
        "pass e.g. --request-rate 10",
    )
    for name in ("prompt_len", "gen_len", "max_batch_size", "max_num_tokens", "kv_block_size"):
        values = getattr(w, name)
        _check(name, ~np.isfinite(values) | (values < 1), values, "must be 1 or more", f"pass a positive {name}")
    for name in ("prompt_len_std", "gen_len_std", "requests_per_client"):
        values = getattr(w, name)
        _check(name, ~np.isfinite(values) | (values < 0), values, "must be 0 or more", f"pass a {name} >= 0")
    for name in ("prompt_len", "gen_len", "prompt_len_std", "gen_len_std"):
        # Beyond MAX_SIZE tokens the analytic model's squares overflow and no whole length is drawn.
        values = getattr(w, name)
        _check(name, values > MAX_SIZE, values, f"must be at most {MAX_SIZE} tokens", f"pass a smaller {name}")
    _check(
        "prefix_hit_rate",
        ~((w.prefix_hit_rate >= 0) & (w.prefix_hit_rate < 1)),
        w.prefix_hit_rate,
        "must be in [0, 1)",
        "pass a share such as 0.5",
    )
    # From 0.01, not only above 0: 1e-300 was taken (cost_models.input_ranges says why).
    low_share, high_share = MEMORY_FRACTION_RANGE
    _check(
        "memory_fraction",
        ~((w.memory_fraction >= low_share) & (w.memory_fraction <= high_share)),
        w.memory_fraction,
        f"must be from {low_share:g} to {high_share:g}",
        "pass a share such as 0.9",
    )
    uncached = w.prompt_len * (1.0 - w.prefix_hit_rate)
    _check(
        "max_num_tokens",
        ~w.chunked_prefill & (uncached > w.max_num_tokens),
        w.max_num_tokens,
        "is smaller than a prompt and prefill is not chunked",
        "raise max_num_tokens to the prompt length or turn chunked prefill on",
    )


@dataclass(frozen=True)
class ServingEstimate:
    """Steady state of n deployments under their workloads. Seconds and tokens per second; a
    deployment that cannot keep up with an open-loop rate has ``stable`` False and infinite
    latencies (its queue grows without bound)."""

    ttft_s: np.ndarray
    #: TTFT's 90th and 99th percentiles over the requests (:mod:`cost_models.ttft_percentiles`: the
    #: queueing parts' variances, a gamma law fitted; a closed loop's first burst a uniform law beside).
    ttft_p90_s: np.ndarray
    ttft_p99_s: np.ndarray
    tpot_s: np.ndarray
    tpot_p90_s: np.ndarray
    tpot_p99_s: np.ndarray
    e2e_latency_s: np.ndarray
    tokens_per_s: np.ndarray  # output tokens of the deployment
    tokens_per_s_per_chip: np.ndarray
    tokens_per_s_per_user: np.ndarray
    requests_per_s: np.ndarray
    max_concurrency: np.ndarray  # sequences the paged KV cache (and max_batch_size) can run at once
    running: np.ndarray  # sequences in the running batch (mean)
    #: The running batch's 99.9th percentile (an open loop's batch swings with the arrivals:
    #: :func:`_load_fluctuation`; the closed loop's and a disaggregated pool's are ``running``). Where it
    #: reaches ``max_concurrency`` the KV cache or the slots fill now and then near this load.
    running_p999: np.ndarray
    queued: np.ndarray  # requests waiting for a slot (mean; closed loop: clients beyond max_concurrency)
    mixed_share: np.ndarray  # share of iterations that hold prefill
    prefill_tokens_per_mixed_iteration: np.ndarray
    decode_iteration_s: np.ndarray
    mixed_iteration_s: np.ndarray
    stable: np.ndarray
    fits: np.ndarray  # weights and activations leave room for at least one sequence's KV cache
    weights_bytes_per_chip: np.ndarray
    kv_cache_bytes_per_chip: np.ndarray  # at the running batch's mean occupancy
    kv_bytes_per_token_per_chip: np.ndarray
    #: str, one of :data:`LIMITS`: what caps ``max_concurrency``; for an open loop past capacity
    #: what it ran out of ("prefill": every iteration mixed and the prompts still come faster).
    limited_by: np.ndarray


#: The keys of one deployment's ``serving`` object (``tuner estimate --json``), in order.
SERVING_KEYS: tuple[str, ...] = (
    "ttft_s",
    "ttft_p90_s",
    "ttft_p99_s",
    "tpot_s",
    "tpot_p90_s",
    "tpot_p99_s",
    "e2e_latency_s",
    "tokens_per_s",
    "tokens_per_s_per_chip",
    "tokens_per_s_per_user",
    "requests_per_s",
    "max_concurrency",
    "running",
    "queued",
    "mixed_share",
    "prefill_tokens_per_mixed_iteration",
    "decode_iteration_s",
    "mixed_iteration_s",
    "stable",
    "fits",
)


#: The throughputs a steady state has only where it is stable. An unstable one (an open loop past
#: capacity: the queue grows without bound; or a deployment that does not fit) has none: its
#: arrays hold 0 there, so that a search's maximized objectives rank it below every stable
#: candidate (and it is infeasible by ``stable``), but a report of them printed "tokens/s 0" for
#: Llama-3.1-70B on 4 H100s at 60 req/s, which runs at its capacity (about 6 req/s), not at
#: nothing. Reports give None (JSON null; tables "unstable"), as they give the latencies.
UNSTABLE_NONE_KEYS: tuple[str, ...] = (
    "tokens_per_s",
    "tokens_per_s_per_chip",
    "tokens_per_s_per_user",
    "requests_per_s",
)


def serving_report(result: ServingEstimate, index: int = 0) -> dict[str, Any]:
    """One deployment's serving steady state as plain data (JSON safe: infinity becomes None; the
    throughputs of :data:`UNSTABLE_NONE_KEYS` None where it is not stable)."""
    out: dict[str, Any] = {}
    stable = bool(result.stable[index])
    for key in SERVING_KEYS:
        value = getattr(result, key)[index]
        if key in ("stable", "fits"):
            out[key] = bool(value)
        elif key == "max_concurrency":
            out[key] = int(value)
        elif key in UNSTABLE_NONE_KEYS and not stable:
            out[key] = None
        else:
            out[key] = float(value) if np.isfinite(value) else None
    return out


@dataclass(frozen=True)
class _Memory:
    weights: np.ndarray
    kv_per_token: np.ndarray
    #: The KV cache budget (kv_budget_bytes); where SGLang's activations pass its 1 - f rest, minus
    #: that shortfall: the engine runs out of memory on a full iteration, so no cache is usable.
    free: np.ndarray
    activations: np.ndarray  # of a full iteration (max_num_tokens tokens)
    #: Bytes by which SGLang's activations pass its 1 - mem_fraction_static rest (0 elsewhere).
    activation_shortfall: np.ndarray


def kv_budget_bytes(
    engine: np.ndarray,
    memory_bytes: float | np.ndarray,
    fraction: np.ndarray,
    weights: np.ndarray,
    activations: np.ndarray,
) -> np.ndarray:
    """Bytes per chip each engine gives its KV cache, by the engine's own rule for its memory
    knob ``fraction`` (``memory_bytes``: the chip's total; ``weights`` and ``activations``: the
    model's per chip, the activations of the engine's profiling forward of ``max_num_tokens``
    tokens). Negative where nothing is left. Each engine measures at start-up what it subtracts;
    the model charges what it models (weights, activations) and nothing else:

    - **TensorRT-LLM** (PyTorch backend, ``KvCacheConfig.free_gpu_memory_fraction``): the share of
      the memory still FREE after the weights loaded and a profiling forward of max_num_tokens
      ran, ``fraction x (total - peak)`` with the peak = weights + activations + memory outside
      torch (NVIDIA/TensorRT-LLM tensorrt_llm/_torch/pyexecutor/_util.py,
      KvCacheCreator.configure_kv_cache_capacity and _cal_max_memory: ``available_kv_mem =
      (total_gpu_memory - peak_memory + allocated_bytes) * fraction``; docs/source/reference/
      memory.md: "allocate 90% of the remaining free GPU memory").
    - **vLLM** V1 (``gpu_memory_utilization``): the share of the TOTAL the instance may use, less
      everything it holds but the cache: ``fraction x total - (weights + peak activations of the
      profiling run + non-torch memory the load and the run added)`` (vllm-project/vllm
      vllm/v1/worker/gpu_worker.py, Worker.determine_available_memory: ``requested_memory -
      profile_result.non_kv_cache_memory``; vllm/utils/mem_utils.py, memory_profiling). The CUDA
      context and NCCL set up before its start-up snapshot and the CUDA graphs captured after
      the cache is allocated are not subtracted (they live in the 1 - fraction rest;
      compile_or_warm_up_model only logs a suggestion that counts the graphs).
    - **SGLang** (``mem_fraction_static``): the share of the memory free before the weights load
      for the STATIC pools, weights and KV cache: ``rest_memory = available_after_weights -
      total x (1 - mem_fraction_static)``, ``total`` being the memory free after the CUDA context
      and torch.distributed came up (sgl-project/sglang python/sglang/srt/model_executor/
      model_runner_kv_cache_mixin.py, profile_max_num_token; model_runner.py ModelRunner.__init__:
      ``min_per_gpu_memory = self.init_torch_distributed()`` "Get memory before model loading"),
      so ``fraction x total - weights``. Activations and CUDA graphs are NOT subtracted: they run
      in the 1 - fraction rest (an engine whose activations pass it runs out of memory on a full
      iteration: :func:`_memory` leaves no KV room there, :func:`sglang_activation_shortfall`).
    - **jax** (no engine source read here): the vLLM rule.

    (Read at NVIDIA/TensorRT-LLM 0004396, vllm-project/vllm 35d5cda and a6d5c39 for mem_utils.py,
    sgl-project/sglang 001ccef.)

    Left out, for want of a published figure: the memory each engine finds in use before it
    measures (CUDA context, NCCL and cuBLAS workspaces; TensorRT-LLM and vLLM subtract what of it
    their profiling sees, SGLang's ``total`` starts after it) and the gap between the CUDA
    runtime's total, which all three read (torch.cuda.mem_get_info), and the catalog's
    nvidia-smi total: 491,651,072 B (~469 MiB) on the one H100 the catalog cites
    (cost_models/catalog/hardware.yaml header). Each budget here is an upper bound, by up to
    those figures (``fraction`` times them where the engine applies its fraction to them)."""
    total = np.asarray(memory_bytes, dtype=np.float64)
    vllm = total * fraction - weights - activations
    trtllm = fraction * (total - weights - activations)
    sglang = total * fraction - weights
    return np.select([engine == "trtllm", engine == "sglang"], [trtllm, sglang], default=vllm)


def sglang_activation_shortfall(
    engine: np.ndarray, memory_bytes: float | np.ndarray, fraction: np.ndarray, activations: np.ndarray
) -> np.ndarray:
    """Bytes by which a full iteration's activations pass the ``1 - mem_fraction_static`` share
    SGLang leaves outside its static pools (0 where they fit, and for every other engine): SGLang
    does not shrink the KV cache for them (:func:`kv_budget_bytes`), it runs out of memory."""
    rest = np.asarray(memory_bytes, dtype=np.float64) * (1.0 - fraction)
    return np.where(engine == "sglang", np.maximum(activations - rest, 0.0), 0.0)


def _memory(
    d: Deployments,
    w: ServingWorkloads,
    phase: str,
    shapes: IterationShapes | None = None,
    data_parallel: np.ndarray | None = None,
) -> _Memory:
    """Per chip of one DP rank (``d``: its view, :func:`rank_view_and_loads`; ``data_parallel``
    the ranks sharing its MoE layers, None: 1, or the shapes' own; a whole deployment with DP is
    taken to its rank's view here): weights as the layout stores them (the routed experts split
    over the DP ranks as the static estimate splits them), KV bytes per token per chip as the attention sharding
    splits the cache, and the HBM the engine gives the cache (:func:`kv_budget_bytes`: by each
    engine's rule, from the weights and the activations of a full iteration, ``max_num_tokens``
    tokens). ``shapes``: the deployments' iteration shapes,
    when already computed (their configurations and plans are these; the phase field of the
    configurations, the only difference, is not read here)."""
    if shapes is None and data_parallel is None and not np.all(d.single_stage):
        d, data_parallel, _ = rank_view_and_degrees(d)
    if shapes is None:
        configs = d.inference_configs(phase, np.ones(len(d)))
        plans = sharding_plans(d, configs)
    else:
        configs, plans = shapes.base, shapes.plans
    weights = weight_bytes_per_chip(configs, d.mesh, d.ffn_layout(phase), plans[phase])
    # A weight-gathered layout's block shards in flight (Pope et al. 3.2.3, 3.5), as tuner estimate.
    weights = weights + gathered_weight_buffer_bytes(plans[phase], configs.weight_dtype, d.ffn_layout(phase), d.mesh)
    dp = data_parallel if data_parallel is not None or shapes is None else shapes.data_parallel
    if dp is not None:  # the DP ranks share the MoE layers: each chip holds 1/DP of its plan's experts
        weights = weights - dp_shared_expert_bytes(plans[phase], BYTES_PER_ELEMENT[configs.weight_dtype], dp)
    mxfp4 = d.mxfp4_experts
    if mxfp4.any():  # gpt-oss's checkpoint: only the experts 4-bit (and their scales)
        weights = weights + mxfp4_checkpoint_extra_bytes(
            plans[phase], configs.weight_dtype, mxfp4, 1.0 if dp is None else dp
        )
    if d.mixed_checkpoint.any():  # a checkpoint that keeps modules 16-bit or stores group scales
        weights = weights + d.mixed_checkpoint_extra_bytes(plans[phase], 1.0 if dp is None else dp)
    if any(m.vision_params for m in d.models):  # a multimodal model's vision encoder, loaded beside it
        weights = weights + d.vision_bytes_per_chip
    # The ways at the engine's largest batch; where no row shards attention by batch they do not
    # depend on it, and the iteration shapes hold them already.
    ways = None if shapes is None or shapes.kv_ways is None else shapes.kv_ways.get(phase)
    if ways is None:
        ways = kv_ways_by_phase(replace(d, batch=np.maximum(w.max_batch_size, 1.0)))[phase]
    # Per token of a request at its longest context (windowed layers hold only their window).
    kv_per_token = configs.kv_bytes_per_token(w.prompt_len + w.gen_len) / ways
    # Live activations of one iteration: the widest intermediate (the gate and up GEMMs' output of
    # every token, or the logits) twice, split over the chips with the weights (tensor parallel
    # activations are sharded the same way). Both are GEMM outputs: 16-bit under 8- and 4-bit
    # activations, as the operator costs charge them (operators.gemm_output_bytes).
    act_bytes = gemm_output_bytes(BYTES_PER_ELEMENT[configs.act_dtype])
    # (An MoE block's per-token FFN width is that of its k routed and its shared experts.)
    ffn_width = np.maximum(configs.d_ff, configs.experts_per_token * configs.expert_d_ff + configs.shared_d_ff)
    widest = np.maximum(ffn_width * np.where(configs.gated_ffn, 2.0, 1.0), configs.vocab / 8)
    activations = 2.0 * w.max_num_tokens * widest * act_bytes / d.chips
    free = kv_budget_bytes(w.engine, d.hardware.memory_bytes, w.memory_fraction, weights, activations)
    # SGLang does not shrink its cache for activations that pass its rest: it runs out of memory,
    # so the deployment does not run at these knobs (no KV room: fits is False wherever it is read,
    # the steady state, the simulation's cache and the disaggregated decode pool alike).
    shortfall = sglang_activation_shortfall(w.engine, d.hardware.memory_bytes, w.memory_fraction, activations)
    free = np.where(shortfall > 0.0, -shortfall, free)
    return _Memory(weights, kv_per_token, free, activations, shortfall)


def engine_memory_bytes(d: Deployments, w: ServingWorkloads, phase: str = "decode") -> dict[str, np.ndarray]:
    """Per chip, what the serving model charges each row's engine: ``weights``, ``activations``
    (a full iteration's, ``max_num_tokens`` tokens) and the KV cache budget ``kv_budget`` its
    memory knob gives by the engine's rule (:func:`kv_budget_bytes`; negative where none)."""
    memory = _memory(d, w, phase)
    return {"weights": memory.weights, "activations": memory.activations, "kv_budget": memory.free}


def refuse_sglang_out_of_memory(d: Deployments, w: ServingWorkloads, phase: str = "decode") -> None:
    """Raise :class:`InvalidInputError` (naming ``max_num_tokens``) for the first row that runs
    SGLang with activations past its 1 - mem_fraction_static rest (:func:`sglang_activation_shortfall`):
    the engine runs out of memory, which "no KV cache" would not explain. For the one-deployment
    commands (estimate, simulate); a search scores such a row as not fitting."""
    memory = _memory(d, w, phase)
    short = np.flatnonzero(memory.activation_shortfall > 0)
    if short.size == 0:
        return
    i = int(short[0])
    row = w.row(i)
    gb = 1e9  # GB = 1e9 bytes, as every table prints memory
    raise InvalidInputError(
        "max_num_tokens",
        f"SGLang runs a full iteration's activations ({float(memory.activations[i]) / gb:.2f} GB per GPU at "
        f"max_num_tokens {row['max_num_tokens']}) outside mem_fraction_static {row['memory_fraction']:g}: "
        f"they pass the {1.0 - row['memory_fraction']:.2f} left by {float(memory.activation_shortfall[i]) / gb:.2f} "
        "GB (out of memory)",
        "lower --memory-fraction or --max-num-tokens",
    )


def kv_capacity_tokens(deployments: Deployments, workloads: ServingWorkloads, phase: str = "decode") -> np.ndarray:
    """Tokens of KV cache each deployment can hold (per sequence slot, summed over the running
    batch): the engine's KV budget (:func:`kv_budget_bytes`) over the KV bytes per token per
    chip, 0 where nothing is left. The memory model of :func:`serve`, for the
    discrete-event simulation's paged cache."""
    memory = _memory(deployments, workloads, phase)
    return np.floor(np.maximum(memory.free, 0.0) / memory.kv_per_token)


def rank_view_and_degrees(d: Deployments) -> tuple[Deployments, np.ndarray | None, np.ndarray | None]:
    """One DP rank's view of each deployment (its TP group: DP and EP 1), with the DP and EP
    degrees its MoE layers are shared and spread over (both None where every row has neither).
    Attention data parallelism (SGLang --enable-dp-attention --dp-size, TensorRT-LLM
    enable_attention_dp, vLLM's DP with --enable-expert-parallel) runs a scheduler per DP rank,
    each with its own requests, token budget and KV cache, and the ranks' iterations in lockstep
    through the shared MoE layers (cost_models.iteration). Pipelines and micro-batches are not
    modelled under load: refused, naming the field."""
    if np.all(d.single_stage):
        return d, None, None
    staged = np.flatnonzero((d.pipeline_parallel != 1) | (d.micro_batches != 1))
    if len(staged):
        name = "pipeline_parallel" if d.pipeline_parallel[staged[0]] != 1 else "micro_batches"
        raise InvalidInputError(
            name,
            "the serving model charges tensor, expert and data parallelism only (PP and micro-batches: tuner estimate)",
            "use pipeline_parallel and micro_batches 1 under a load (DP ranks or replicas for more chips)",
        )
    dp, ep = d.data_parallel.astype(np.float64), d.expert_parallel.astype(np.float64)
    ones = np.ones(len(d))
    return replace(d, data_parallel=ones, expert_parallel=ones), dp, ep


def rank_workloads(d: Deployments, w: ServingWorkloads, data_parallel: np.ndarray) -> ServingWorkloads:
    """One DP rank's share of each workload and its engine knobs, as ``tuner export`` launches
    them (tuner/export.py, per_rank_batch and the SGLang arguments): 1/DP of the clients or of the
    rate; ``max_batch_size`` is the deployment's, so a rank runs ceil(max_batch_size / DP)
    (vLLM's engine cores and TensorRT-LLM's attention-DP ranks are given that; SGLang with DP
    attention divides its --max-running-requests by --dp-size itself, and its plain DP replicas
    are given the share); ``max_num_tokens`` is each rank's own (vLLM's
    --max-num-batched-tokens per engine core), except that SGLang with DP attention (an MoE
    model at DP > 1) also divides a chunked --chunked-prefill-size by --dp-size
    (sgl-project/sglang python/sglang/srt/server_args.py, _handle_data_parallelism)."""
    dp = data_parallel
    moe = np.array([m.experts > 0 for m in d.models], dtype=bool)[d.model_index]
    sglang_dp_attention = (w.engine == "sglang") & moe & (dp > 1) & w.chunked_prefill
    return replace(
        w,
        concurrency=w.concurrency / dp,
        request_rate=w.request_rate / dp,
        max_batch_size=np.ceil(w.max_batch_size / dp),
        max_num_tokens=np.where(
            sglang_dp_attention, np.maximum(np.floor(w.max_num_tokens / dp), 1.0), w.max_num_tokens
        ),
    )


#: ServingEstimate fields that count the whole deployment's sequences or rates: a DP rank's
#: times its DP degree (the ranks are alike and share the load evenly). The rest are per
#: request, per chip or per iteration of one rank's scheduler (its prefill tokens, within its
#: own max_num_tokens). ``running_p999`` is DP x a rank's: each rank's batch swings on its own
#: against its own cache, so beside ``max_concurrency`` (DP x a rank's slots) it says whether a
#: rank fills, not the 99.9th percentile of the ranks' sum (smaller: their swings average out).
_SUMMED_OVER_DP_RANKS = ("tokens_per_s", "requests_per_s", "max_concurrency", "running", "running_p999", "queued")


def serve(
    deployments: Deployments,
    workloads: ServingWorkloads,
    *,
    calibration: CalibrationProfile | None = None,
    overlap: Overlap = "overlapped",
    phase: str = "decode",
    overheads: EngineOverheads | None = None,
) -> ServingEstimate:
    """The serving steady state of n deployments (their batch, prompt and gen lengths are not
    used: the workloads say how requests come). ``phase``: whose layout the engine runs.
    ``overheads``: the engine's host costs; None takes the calibration's engine's fit
    (:func:`engine_overheads`), and none at all without a calibration (the pure model)."""
    if overlap not in OVERLAPS:
        raise InvalidInputError("overlap", f"unknown value {overlap!r}", f"use {' or '.join(OVERLAPS)}")
    d, w = deployments, workloads
    if len(w) != len(d):
        raise InvalidInputError("workloads", f"{len(w)} workloads for {len(d)} deployments", "pass one per deployment")
    network = network_for(d.hardware)
    if calibration is not None:
        check_profile(calibration, d.hardware)
        network = calibrated_network(network, d.hardware, calibration)
    overheads = resolve_overheads(calibration, overheads)
    # DP: each rank serves 1/DP of the clients or of the rate with its own scheduler and cache
    # (SGLang's DP controller and vLLM's DP coordinator balance requests over the ranks), its
    # iterations sharing the MoE layers with the other ranks'; the deployment's counts are DP
    # times a rank's (_SUMMED_OVER_DP_RANKS). A dense model at DP k is k replicas at R / k.
    d, data_parallel, expert_parallel = rank_view_and_degrees(d)
    if data_parallel is not None:
        w = rank_workloads(d, w, data_parallel)
    result = _serve_ranks(d, w, network, calibration, overlap, phase, overheads, data_parallel, expert_parallel)
    if data_parallel is None or np.all(data_parallel == 1):
        return result
    return replace(result, **{name: getattr(result, name) * data_parallel for name in _SUMMED_OVER_DP_RANKS})


def _serve_ranks(
    d: Deployments,
    w: ServingWorkloads,
    network: Network,
    calibration: CalibrationProfile | None,
    overlap: Overlap,
    phase: str,
    overheads: EngineOverheads,
    data_parallel: np.ndarray | None,
    expert_parallel: np.ndarray | None,
) -> ServingEstimate:
    """:func:`serve` of one DP rank's view of each deployment under its share of the load."""
    closed = w.closed_loop
    parts = []
    for mask, steady in ((closed, _closed_loop), (~closed, _open_loop)):
        if np.any(mask):
            index = np.flatnonzero(mask)
            every = len(index) == len(d)  # one mode only: the rows as they are, not a copy
            setting = _Setting(
                d if every else d.take(index),
                w if every else w.take(index),
                network,
                calibration,
                overlap,
                phase,
                overheads,
                None if data_parallel is None else data_parallel[index],
                None if expert_parallel is None else expert_parallel[index],
            )
            parts.append((index, steady(setting)))
    if len(parts) == 1:
        return parts[0][1]
    columns = {}
    for f in fields(ServingEstimate):
        column = np.empty(len(d), dtype=getattr(parts[0][1], f.name).dtype)
        for index, part in parts:
            column[index] = getattr(part, f.name)
        columns[f.name] = column
    return ServingEstimate(**columns)


#: Reuse an open-loop round's iterations for repeated inputs when at least this share of the
#: rows repeat (below, taking the sub-batch costs about what it saves: the setting's take of a
#: row costs about 0.19 us against 0.3-0.5 us for its iteration, so reuse pays above a share of
#: about 0.3. At 0.02 the first round after the chord took 86,228 and 81,074 of bench_serving's
#: 100,000 open loops, 14% and 19% repeated, for about 16 ms each: 100k -> 104k configurations/s).
_REUSE_AT_LEAST = 0.3


@dataclass(frozen=True)
class _Setting:
    d: Deployments
    w: ServingWorkloads
    network: Network
    calibration: CalibrationProfile | None
    overlap: Overlap
    phase: str
    overheads: EngineOverheads
    # The DP ranks sharing each deployment's MoE layers and its EP degree (``d`` is one DP
    # rank's view: rank_view_and_degrees); None: 1.
    data_parallel: np.ndarray | None = None
    expert_parallel: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> _Setting:
        """The setting of the deployments and workloads ``rows``, their shapes taken from this
        one's (not computed again)."""
        sub = replace(
            self,
            d=self.d.take(rows),
            w=self.w.take(rows),
            data_parallel=None if self.data_parallel is None else self.data_parallel[rows],
            expert_parallel=None if self.expert_parallel is None else self.expert_parallel[rows],
        )
        sub.__dict__["shapes"] = self.shapes.take(rows)  # a cached_property's slot
        return sub

    def iteration_again(
        self,
        decode_seqs: np.ndarray,
        prefill_tokens: np.ndarray,
        known: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`iteration_parts`, scoring only the rows whose inputs differ from an iteration
        already scored (``known``: its decode sequences, prefill tokens, times and GPU times): a
        row's iteration depends on its own deployment, workload and inputs only, so equal inputs
        give the same seconds (the open loop's later rounds repeat many: a row pinned at its slots
        and its prefill budget, or one whose fixed point moved no input)."""
        known_seqs, known_tokens, known_s, known_gpu_s = known
        same = (decode_seqs == known_seqs) & (prefill_tokens == known_tokens)
        count = int(np.count_nonzero(same))
        if count < _REUSE_AT_LEAST * len(same):  # a few rows: the sub-batch would cost more
            return self.iteration_parts(decode_seqs, prefill_tokens)
        out, out_gpu = known_s.copy(), known_gpu_s.copy()
        rows = np.flatnonzero(~same)
        if len(rows):
            out[rows], out_gpu[rows] = self.take(rows).iteration_parts(decode_seqs[rows], prefill_tokens[rows])
        return out, out_gpu

    def iteration(self, decode_seqs: np.ndarray, prefill_tokens: np.ndarray) -> np.ndarray:
        """One iteration: the longer of its GPU time and the engine's host time for it."""
        return self.iteration_parts(decode_seqs, prefill_tokens)[0]

    def iteration_parts(self, decode_seqs: np.ndarray, prefill_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`iteration` and the GPU's time alone in it (for the open loop's kink to reuse
        where the host binds: :func:`_across_the_host_kink`)."""
        gpu_s = self.gpu_iteration(decode_seqs, prefill_tokens)
        return np.maximum(gpu_s, self.host(decode_seqs, prefill_tokens)), gpu_s

    def host(self, decode_seqs: np.ndarray, prefill_tokens: np.ndarray) -> np.ndarray:
        """The engine's host time for an iteration: per scheduled sequence and per prompt started."""
        o = self.overheads
        new_prompts = prefill_tokens / np.maximum(self.uncached, 1.0)
        return o.host_per_sequence_s * (decode_seqs + new_prompts) + o.host_per_new_request_s * new_prompts

    def mixed_iteration(self, gpu_s: np.ndarray, decode_seqs: np.ndarray, prefill_tokens: np.ndarray) -> np.ndarray:
        """The mean of mixed iterations of ``gpu_s`` GPU seconds holding these tokens, each the
        longer of its GPU and host time. Where they hold less than a prompt (chunked over several
        iterations) the host's per-request work falls in the one iteration that starts the prompt,
        not a share of it in each: a share ``prompts`` of them pays it whole (the simulation's
        engine loop and the engines' own: a request is set up once, when it is scheduled first).
        The same as :meth:`iteration` wherever the host time stays under the GPU's. (Llama-3-8B on
        one H100 under TensorRT-LLM's fit, 512 clients, 1024/256 tokens, a budget of 256: a prompt
        spans 5 iterations of about 12 ms and its 29 ms of set-up makes one of them 32 ms; a share
        in each hid it, 19% over the simulated throughput.)"""
        o = self.overheads
        prompts = prefill_tokens / np.maximum(self.uncached, 1.0)
        base = o.host_per_sequence_s * (decode_seqs + prompts)
        spread = np.maximum(gpu_s, base + o.host_per_new_request_s * prompts)
        starting = np.clip(prompts, 0.0, 1.0)
        with_set_up = np.maximum(gpu_s, base + o.host_per_new_request_s)
        whole = starting * with_set_up + (1.0 - starting) * np.maximum(gpu_s, base)
        return np.where(prompts < 1.0, whole, spread)

    def gpu_iteration(self, decode_seqs: np.ndarray, prefill_tokens: np.ndarray) -> np.ndarray:
        w = self.w
        return iteration_times(
            self.d,
            self.network,
            decode_seqs=decode_seqs,
            decode_context=self.decode_context,
            prefill_tokens=prefill_tokens,
            prefill_prompt_len=self.attention_prompt_len,
            prefill_cached_share=w.prefix_hit_rate,
            calibration=self.calibration,
            overlap=self.overlap,
            phase=self.phase,
            shapes=self.shapes,
            cuda_graphs=self.cuda_graphs,
        ).latency_s

    @cached_property
    def cuda_graphs(self) -> CudaGraphs:
        return serving_cuda_graphs(self.d, self.w, self.data_parallel)

    # Shape-only work and per-workload constants, computed once for every iteration of a loop
    # (a closed loop scores two iterations, an open loop up to seven). A frozen dataclass keeps a
    # cached_property in its instance dict.
    @cached_property
    def shapes(self) -> IterationShapes:
        return iteration_shapes(
            self.d, self.calibration, data_parallel=self.data_parallel, expert_parallel=self.expert_parallel
        )

    @cached_property
    def decode_context(self) -> np.ndarray:
        """Keys a decoding request attends over, mean over its output tokens."""
        w = self.w
        return w.prompt_len + (w.gen_len - 1.0) / 2.0

    @cached_property
    def attention_prompt_len(self) -> np.ndarray:
        """The prompt length whose causal attention, per token, is the mean over spread prompts:
        attention grows with the square of the length, so E[P^2] / E[P] = mean + std^2 / mean."""
        w = self.w
        return w.prompt_len + w.prompt_len_std**2 / w.prompt_len

    @cached_property
    def uncached(self) -> np.ndarray:
        return self.w.prompt_len * (1.0 - self.w.prefix_hit_rate)

    def prefill_budget(self, decode_seqs: np.ndarray) -> np.ndarray:
        """Tokens one mixed iteration can prefill: the budget left after the decode tokens, in
        whole prompts unless chunked (at least one: an engine admits a prompt that fits alone)."""
        w, uncached = self.w, self.uncached
        left = np.maximum(w.max_num_tokens - decode_seqs, 1.0)
        whole = np.maximum(np.floor(left / uncached), 1.0) * uncached
        return np.where(w.chunked_prefill, left, whole)


@dataclass(frozen=True)
class _Capacity:
    memory: _Memory
    held_tokens: np.ndarray
    fits: np.ndarray
    max_concurrency: np.ndarray
    limited_by: np.ndarray  # str: which of LIMITS sets max_concurrency

    @property
    def slots(self) -> np.ndarray:
        return np.maximum(self.max_concurrency, 1.0)


#: What bounds a steady state (``ServingEstimate.limited_by``): the three caps on the sequences
#: running at once (:func:`token_limit`, the paged KV cache, ``max_batch_size``), and, for an
#: open loop past capacity with slots to spare, the prefill (prompts arrive faster than the mixed
#: iterations can prefill them, every iteration mixed) or the host (:func:`host_seconds_per_request`
#: times the rate reaches 1: the engine's CPU work alone fills the time).
LIMITS: tuple[str, ...] = ("max_batch_size", "kv_cache", "max_num_tokens", "prefill", "host")
_LIMIT_DTYPE = np.dtype(f"<U{max(len(name) for name in LIMITS)}")


def limiting(caps: dict[str, np.ndarray]) -> np.ndarray:
    """Per row, the name (one of :data:`LIMITS`) of the smallest of ``caps``, the first listed
    among equals."""
    names = np.asarray(list(caps), dtype=_LIMIT_DTYPE)
    return names[np.argmin(np.stack([np.asarray(v, dtype=np.float64) for v in caps.values()]), axis=0)]


def token_limit(w: ServingWorkloads) -> np.ndarray:
    """Sequences an engine keeps running at once under a sustained load, by its token budget
    (at least 1). Each running decode sequence takes one token of an iteration's
    ``max_num_tokens``, scheduled before any prompt, and the prompts get what is left: vLLM V1
    schedules its running requests first, one token each for a decode, while ``token_budget > 0``,
    and admits waiting requests only while budget is left (vllm-project/vllm
    vllm/v1/core/sched/scheduler.py, ``Scheduler.schedule``, read at 00024d3); TensorRT-LLM's
    micro-batch scheduler takes generation requests first, one token each, and stops at
    ``maxNumTokens``, context chunks getting the rest (NVIDIA/TensorRT-LLM cpp/tensorrt_llm/
    batch_manager/microBatchScheduler.cpp, ``MicroBatchScheduler::operator()``, read at 0a949d3).
    So the decode tokens never pass the budget (vLLM refuses ``max_num_seqs`` above it), and
    what decides the running batch is the room left for prefill: a sequence decodes for G - 1
    iterations and its replacement's P uncached prompt tokens come out of the same budget B, so B
    tokens an iteration sustain B / (P + G - 1) requests an iteration and, by Little's law in
    iterations, B (G - 1) / (P + G - 1) sequences decoding, plus the prompts in flight, each
    ceil(P / (B - decoding)) iterations chunked (one whole) at B / (P + G - 1) an iteration
    (Llama-3-8B, 1024/256 tokens, B 64: 12.8 + 1.0; ``tuner simulate``, which schedules the same
    way, runs 13.7 on average and 16 at most). Not the budget itself: B sequences decoding leave
    no token for the prompts that replace them, and the steady state would prefill one token an
    iteration."""
    return _token_balance(w)[0]


def host_seconds_per_request(overheads: EngineOverheads, prefill_iterations: np.ndarray, gen: np.ndarray) -> np.ndarray:
    """The engine's host seconds one request costs over its life: its set-up once
    (``host_per_new_request_s``) and ``host_per_sequence_s`` in each iteration it is scheduled in,
    its prefill iterations and its G - 1 decode iterations. An iteration takes at least its host
    time (the longer of GPU and host, :meth:`_Setting.iteration`), so an open loop at R requests/s
    needs R x this < 1 whatever the GPU does: the host's own capacity, which an iteration scored at
    the mean batch does not see where its GPU time binds at the mean and its host time in the
    swings above it (Llama-3-8B on 8 H100s under vLLM, 1024/128 tokens, TensorRT-LLM's fit: 19.47
    ms + 128 x 70.6 us = 28.5 ms, at most 35.1 requests/s; the steady state said stable up to
    37.8/s, and tuner simulate's mean TTFT at 35.9/s ran 3.8-6.7 s over 20,000 requests)."""
    o = overheads
    return o.host_per_new_request_s + o.host_per_sequence_s * (prefill_iterations + np.maximum(gen - 1.0, 0.0))


def _token_balance(w: ServingWorkloads) -> tuple[np.ndarray, np.ndarray]:
    """:func:`token_limit` (the sequences in the engine, at least 1) and, of them, the ones
    decoding (the rest are the prompts in flight)."""
    uncached = w.prompt_len * (1.0 - w.prefix_hit_rate)
    steps = np.maximum(w.gen_len - 1.0, 0.0)
    per_iteration = w.max_num_tokens / (uncached + steps)  # requests the budget completes an iteration
    decoding = per_iteration * steps
    # Chunked, a prompt gets what the decodes leave and spans ceil(P / left) iterations in the
    # engine before it decodes; whole, one.
    left = np.maximum(w.max_num_tokens - decoding, 1.0)
    prefilling = np.where(w.chunked_prefill, np.ceil(uncached / left - 1e-9), 1.0)
    in_engine = np.minimum(decoding + per_iteration * prefilling, w.max_num_tokens)
    return np.maximum(in_engine, 1.0), decoding


def _capacity(s: _Setting) -> _Capacity:
    """Paged KV cache: a sequence holds its blocks as it grows (mean: the prompt and half the
    output, plus half a block of waste in its last one); at most ``max_batch_size`` sequences and
    what the token budget keeps decoding (:func:`token_limit`)."""
    w = s.w
    held_tokens = w.prompt_len + w.gen_len / 2.0 + w.kv_block_size / 2.0
    memory = _memory(s.d, w, s.phase, s.shapes)
    fits = memory.free >= memory.kv_per_token * (w.prompt_len + w.gen_len)
    kv_limit = np.floor(np.maximum(memory.free, 0.0) / (memory.kv_per_token * held_tokens))
    tokens = token_limit(w)
    limit = np.minimum(np.minimum(kv_limit, w.max_batch_size), tokens)
    limited_by = limiting({"max_batch_size": w.max_batch_size, "kv_cache": kv_limit, "max_num_tokens": tokens})
    return _Capacity(memory, held_tokens, fits, limit, limited_by)


#: Probabilists' Gauss-Hermite nodes and weights (weights summing to 1) over which a request's
#: output length is averaged where lengths spread (lognormal, as ``tuner simulate`` draws them):
#: five nodes put a single moment-matched gamma law's p99 within 0.6% of the mixture over 4,000
#: drawn lengths (Llama-3-8B on one H100 under vLLM, 1024/128 +- 64 tokens, 11-29 req/s).
#: (numpy.polynomial.hermite_e.hermegauss(5), written out: that module is not loaded to import
#: this one; tests/cost_models/test_tpot_percentiles.py checks them against it.)
_GEN_NODES = (-2.8569700138728056, -1.355626179974266, 0.0, 1.355626179974266, 2.8569700138728056)
_GEN_WEIGHTS = (
    0.011257411327720677,
    0.22207592200561257,
    0.5333333333333335,
    0.22207592200561257,
    0.011257411327720677,
)


def _lognormal_nodes(mean: np.ndarray, std: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """(weight, length) of :data:`_GEN_NODES` over the lognormal law of this mean and standard
    deviation (the mean itself, once, where it does not spread)."""
    sigma2 = np.log1p((std / np.maximum(mean, 1e-30)) ** 2)
    mu = np.log(np.maximum(mean, 1e-30)) - sigma2 / 2.0
    return [(float(w), np.exp(mu + np.sqrt(sigma2) * z)) for z, w in zip(_GEN_NODES, _GEN_WEIGHTS, strict=True)]


def window_tpot_variance(
    rate: np.ndarray,
    t_mean: np.ndarray,
    per_sequence: np.ndarray,
    per_prompt: np.ndarray,
    steps_mean: np.ndarray,
    steps: np.ndarray,
) -> np.ndarray:
    """Var(TPOT) of an open loop's request that decodes ``steps`` iterations (its TPOT the mean of
    those iterations' times), the others decoding ``steps_mean`` each.

    The linearized engine loop of :func:`_load_fluctuation`: t_j = a + b n_j + c K_j, K_j Poisson
    with mean R t_{j-1} (b ``per_sequence``, c ``per_prompt`` seconds), n_j the prompts of the last
    L = ``steps_mean`` iterations. An arrival lengthens the iteration that prefills it by c and the
    next L by b, and the longer iterations let more arrive: the iteration time's spectrum is
    R t |c + b L s|^2 / |1 - gamma - u s|^2 (gamma = R c, u = R b L, s the L-iteration window's
    transform), and the mean over the request's own l = r L iterations weights it by |s(r theta)|^2:

        Var(TPOT) = t / (R L) x [g^2 / r + slow(r)],   g = gamma / (1 - gamma),

    g^2 / r the bursts of prompts (at u = 0 exactly the variance of an M/D/1 busy period begun by
    l iterations' work: R c^2 t / (l (1 - gamma)^2)) and slow(r) the batch's swings, which a
    request's window averages only in part. With x = u / (1 - gamma), slow(r) is a cross term
    2 g / (1 - gamma) (e^(x r) - 1 - x r) / (x r^2) (exact for r <= 1) and the batch's own term,
    which at r = 1 is slow(1) less the cross term, slow(1) = [x / (1 - x) - 2 (1 - gamma)
    ((e^x - 1) / x - 1)] / (1 - gamma)^2 (the integrals of |s|^2 / |1 - x s|^2 and |s|^2 /
    (1 - x s) being 1 / (1 - x) and (e^x - 1) / x). Where the window is not L the batch's own term
    (r < 1), and all of slow(r) (r > 1), are taken as a triangular autocorrelation's
    (:func:`_triangular_window`) through their value at r = 1 and their spectrum at zero frequency
    over r: (x / (1 - x))^2 / (1 - gamma)^2 and ((gamma + u) / (1 - gamma - u))^2 - g^2 (exact
    for the batch alone at weak feedback). Against the discrete linear model's spectrum summed
    over frequencies, at l from L / 4 to 4 L (tests/cost_models/test_tpot_percentiles.py): within
    0.99-1.06 (1.06: 29 req/s, gamma 0.56, the continuum's z = 1). The gains are held at 0.99 as
    :func:`_load_fluctuation` holds them.

    Before, a request's TPOT varied only by a binomial count of mixed iterations among its own
    (:func:`_tpot_spread`, removed): no feedback and no batch swings, its p99 0.67-0.89x tuner
    simulate's on one H100 (Llama-3-8B under vLLM, 1024/128, 35-90% of the highest stable rate,
    equal output lengths, 3 seeds of 4000: bench/bench_tpot_percentiles.py, docs/serving.md), now
    0.92-0.96x."""
    return _mean_window_variance(rate, t_mean, per_sequence, per_prompt, steps_mean, [(1.0, steps)])


def _mean_window_variance(
    rate: np.ndarray,
    t_mean: np.ndarray,
    per_sequence: np.ndarray,
    per_prompt: np.ndarray,
    steps_mean: np.ndarray,
    windows: list[tuple[float, np.ndarray]],
) -> np.ndarray:
    """:func:`window_tpot_variance` averaged over ``windows`` (weight, steps), the constants of
    the loop (gains, the slow part at r = 1 and its triangles) computed once."""
    rate = np.asarray(rate, dtype=np.float64)
    length = np.maximum(steps_mean, 1.0)
    gamma = np.clip(rate * per_prompt, 0.0, 0.99)
    slack_prompts = 1.0 - gamma
    x = np.clip(rate * per_sequence * length / slack_prompts, 0.0, 0.99)
    u = x * slack_prompts
    g = gamma / slack_prompts
    small = x < 1e-4
    beta = np.where(small, x / 2.0 + x * x / 6.0 + x**3 / 24.0, (np.expm1(x) - x) / np.where(small, 1.0, x))
    slow_1 = np.maximum(x / (1.0 - x) - 2.0 * slack_prompts * beta, 0.0) / slack_prompts**2
    slack = slack_prompts * (1.0 - x)
    # r > 1: the whole slow part as a triangular autocorrelation meeting slow(1) and Z0 / r.
    zero_frequency = u / (slack * slack_prompts) * ((gamma + u) / slack + g)
    inverse_a = _triangle_fit(slow_1, zero_frequency)
    # r <= 1: the cross term 2 g / (1 - gamma) x (e^(x r) - 1 - x r) / (x r^2) exactly, the batch's
    # own term ((x / (1 - x))^2 / (1 - gamma)^2 at zero frequency) as a triangle.
    cross_1 = 2.0 * g * beta / slack_prompts
    batch_zero = (x / ((1.0 - x) * slack_prompts)) ** 2
    inverse_a_batch = _triangle_fit(np.maximum(slow_1 - cross_1, 0.0), batch_zero)
    per_rate = np.where(rate > 0.0, 1.0 / np.where(rate > 0.0, rate, 1.0), 0.0)
    bursts = rate * per_prompt**2 / slack_prompts**2
    total = np.zeros(np.shape(x))
    for weight, steps in windows:
        own = np.maximum(steps, 1.0)
        r = own / length
        within_r = np.minimum(r, 1.0)
        xr = x * within_r
        tiny = xr < 1e-4  # the series where x r is small
        cross_r = np.where(tiny, x / 2.0 + x * xr / 6.0, (np.expm1(xr) - xr) / np.where(tiny, 1.0, x * within_r**2))
        within = 2.0 * g * cross_r / slack_prompts + _triangular_window(batch_zero, inverse_a_batch, r)
        slow = np.where(r <= 1.0, within, _triangular_window(zero_frequency, inverse_a, r))
        total += weight * (bursts / own + slow * per_rate / length)
    return t_mean * total


def _triangle_fit(at_one: np.ndarray, zero_frequency: np.ndarray) -> np.ndarray:
    """1 / a of a triangular autocorrelation V0 (1 - |tau| / a) whose window of 1 has variance
    ``at_one`` and whose spectrum at zero frequency is ``zero_frequency`` = V0 a (the variance of a
    window of r >> a: V0 a / r): (1 / a) (1 - 1 / (3 a)) = at_one / Z0, a quadratic in 1 / a (its
    root under 3 / 2; 1 where Z0 is 0)."""
    share = np.where(zero_frequency > 0.0, at_one / np.where(zero_frequency > 0.0, zero_frequency, 1.0), 2.0 / 3.0)
    return 1.5 * (1.0 - np.sqrt(1.0 - 4.0 * np.clip(share, 0.0, 0.75) / 3.0))


def _triangular_window(zero_frequency: np.ndarray, inverse_a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The variance of the mean over a window of r of the triangular autocorrelation
    (:func:`_triangle_fit`): V0 (1 - r / (3 a)) for r <= a, V0 (a / r) (1 - a / (3 r)) beyond."""
    a = 1.0 / np.maximum(inverse_a, 1e-12)
    shape = np.where(r >= a, a / r * (1.0 - a / (3.0 * r)), 1.0 - r / (3.0 * a))
    return zero_frequency * inverse_a * shape


def open_loop_tpot_variance(
    rate: np.ndarray,
    t_mean: np.ndarray,
    per_sequence: np.ndarray,
    per_prompt: np.ndarray,
    gen: np.ndarray,
    gen_std: np.ndarray,
) -> np.ndarray:
    """Var(TPOT) over an open loop's requests: :func:`window_tpot_variance` at each request's own
    output length, averaged over the lengths' lognormal law (:data:`_GEN_NODES`; requests of one
    token have no TPOT: a length is at least two). A short request averages fewer iterations and
    its TPOT spreads more, so a wider spread of output lengths widens the TPOT's (before, the
    open loop's TPOT percentiles did not read ``gen_len_std``: Llama-3-8B on one H100 under vLLM at
    22.6 req/s, 1024/128 tokens, p99 18.4 ms at a spread of 0 and of 64, tuner simulate 23.8 and
    26.3 ms)."""
    steps_mean = np.maximum(gen - 1.0, 1.0)
    if not np.any(gen_std > 0.0):
        windows = [(1.0, steps_mean)]
    else:
        windows = [(weight, np.maximum(length - 1.0, 1.0)) for weight, length in _lognormal_nodes(gen, gen_std)]
    return _mean_window_variance(rate, t_mean, per_sequence, per_prompt, steps_mean, windows)


def _result(
    s: _Setting,
    cap: _Capacity,
    *,
    stable: np.ndarray,
    ttft: np.ndarray,
    ttft_tail: dict[str, np.ndarray],
    tpot: np.ndarray,
    requests: np.ndarray,
    running: np.ndarray,
    queued: np.ndarray,
    p_mix: np.ndarray,
    per_mixed: np.ndarray,
    t_mix: np.ndarray,
    t_dec: np.ndarray,
    tpot_variance: np.ndarray,
    limited_by: np.ndarray | None = None,
    running_p999: np.ndarray | None = None,
) -> ServingEstimate:
    gen = s.w.gen_len
    # (The open loop scores its TTFT percentiles only where this holds: change both together.)
    stable = stable & cap.fits & (cap.max_concurrency >= 1)
    bad = ~stable
    # TPOT's percentiles: a gamma law of its mean and variance (Wilson-Hilferty, as TTFT's): a
    # request's TPOT is a busy period's length over its iterations, skewed up (the normal law's
    # p99 at the same variance is 2% lower, 21.7 ms against 22.2 where tuner simulate's is 23.8:
    # Llama-3-8B on one H100 under vLLM, 1024/128 tokens, 22.6 req/s, 3 seeds of 4000).
    tpot_variance = np.where(gen > 1.0, tpot_variance, 0.0)
    tokens_per_s = requests * gen
    return ServingEstimate(
        ttft_s=np.where(bad, np.inf, ttft),
        ttft_p90_s=np.where(bad, np.inf, ttft_tail["ttft_p90_s"]),
        ttft_p99_s=np.where(bad, np.inf, ttft_tail["ttft_p99_s"]),
        tpot_s=np.where(bad, np.inf, tpot),
        tpot_p90_s=np.where(bad, np.inf, gamma_quantile(tpot, tpot_variance, Z_P90)),
        tpot_p99_s=np.where(bad, np.inf, gamma_quantile(tpot, tpot_variance, Z_P99)),
        e2e_latency_s=np.where(bad, np.inf, ttft + (gen - 1.0) * tpot),
        tokens_per_s=np.where(bad, 0.0, tokens_per_s),
        tokens_per_s_per_chip=np.where(bad, 0.0, tokens_per_s / s.d.chips),
        tokens_per_s_per_user=np.where(bad | (tpot <= 0), 0.0, 1.0 / np.where(tpot > 0, tpot, 1.0)),
        requests_per_s=np.where(bad, 0.0, requests),
        max_concurrency=np.maximum(cap.max_concurrency, 0.0),
        running=running,
        running_p999=running if running_p999 is None else running_p999,
        queued=queued,
        mixed_share=p_mix,
        prefill_tokens_per_mixed_iteration=per_mixed,
        decode_iteration_s=t_dec,
        mixed_iteration_s=t_mix,
        stable=stable,
        fits=cap.fits,
        weights_bytes_per_chip=cap.memory.weights,
        kv_cache_bytes_per_chip=cap.memory.kv_per_token * cap.held_tokens * running,
        kv_bytes_per_token_per_chip=cap.memory.kv_per_token,
        limited_by=cap.limited_by if limited_by is None else limited_by,
    )


class _ClosedCycle(NamedTuple):
    """The closed loop's engine: its iterations and a request's time in it."""

    ttft_in_engine: np.ndarray  # the benchmark's mean TTFT in the engine, the slot wait included
    ttft_tail_in_engine: dict[str, np.ndarray]  # its percentiles (TTFT_PERCENTILES' keys), the same
    tpot: np.ndarray
    running: np.ndarray
    mixed_per_cycle: np.ndarray
    cycle_iterations: np.ndarray
    per_mixed: np.ndarray
    t_mix: np.ndarray
    t_dec: np.ndarray


def _closed_loop(s: _Setting) -> ServingEstimate:
    """C clients, each sending its next request when the last one's answer arrived: a benchmark
    client (vllm bench serve --max-concurrency, genai-perf --concurrency) sends it when the
    response completes, and the engine sees it only after the server's front end has parsed and
    tokenized it. The request overhead (HTTP, tokenization, the answer's way back:
    ``request_overhead_s``) lies in each client's cycle, so clients = requests/s x E2E exactly
    (Little's law over the client's cycle, an identity of a closed loop without think time). The
    engine's iterations are scored with every client's request in it (:func:`_closed_cycle`): the
    overhead's share of the cycle (overhead / E2E, 1-2% of the clients) is not taken out of the
    batch, which the fitted overheads absorb (taking it out moved the fit's request overhead from
    21 to 84 ms and its held-out TTFT error from 10.3% to 11.5%: docs/serving.md). Before, the
    overhead was outside the cycle (Little's law over engine time) and the throughput overstated by
    overhead / E2E: 2.3% at one client, 0.8% at 64 (Llama-3-8B on one H100 under TensorRT-LLM's
    fit, 1024/128 tokens)."""
    w, cap = s.w, _capacity(s)
    clients = w.concurrency
    c = _closed_cycle(s, cap, clients)
    ttft = c.ttft_in_engine + s.overheads.request_overhead_s
    requests = clients / (ttft + (w.gen_len - 1.0) * c.tpot)
    return _result(
        s,
        cap,
        stable=np.ones(len(w), dtype=bool),
        ttft=ttft,
        ttft_tail={key: tail + s.overheads.request_overhead_s for key, tail in c.ttft_tail_in_engine.items()},
        tpot=c.tpot,
        requests=requests,
        running=c.running,
        queued=np.maximum(clients - c.running, 0.0),
        p_mix=c.mixed_per_cycle / c.cycle_iterations,
        per_mixed=c.per_mixed,
        t_mix=c.t_mix,
        t_dec=c.t_dec,
        tpot_variance=_closed_loop_tpot_variance(s, c),
    )


def _closed_loop_tpot_variance(s: _Setting, c: _ClosedCycle) -> np.ndarray:
    """Var(TPOT) over a closed loop's requests. With exactly equal lengths the steady state is
    the first burst's groups going round (:func:`_closed_cycle`): every request runs the same
    cycle and has the same TPOT (tuner simulate: p50 = p99 = 7.36 ms for Llama-3-8B on one H100
    under vLLM at 8 clients, 1024/128 tokens, every seed), so 0.

    Desynchronized (lengths spread), a request's decode iterations hold the prompts of the other
    running - 1 clients that land in them. Each client sends its prompts one cycle apart, a
    renewal process whose count over l of its cycle's C iterations has variance (l / C) cv^2
    (Cox, Renewal Theory, 1962, sec. 3.3: the count's asymptotic variance; cv the cycle's coefficient of
    variation, its output length's std over C), not the Poisson count's l / C: the clients are
    regular, each prompt about once a cycle. Each prompt lengthens its iteration by a prompt's
    time c (its length's own spread too), so Var(TPOT | l) = (running - 1) (l / C) (cv^2 +
    cv_P^2) c^2 / l^2, at most the binomial count of mixed iterations among the l, p (1 - p)
    (t_mix - t_dec)^2 / l (the former bound, all of it before: where every iteration is mixed
    at the budget the TPOT varies little either way), averaged over l's lognormal law
    (:data:`_GEN_NODES`). The binomial count alone put p99 at 1.15-1.27x tuner simulate's
    (Llama-3-8B on one H100 under vLLM, 8 and 32 clients, 1024/128 +- 64 tokens) and, at equal
    lengths, 1.35-1.36x."""
    w = s.w
    grouped = (w.prompt_len_std <= 0.0) & (w.gen_len_std <= 0.0)
    p = c.mixed_per_cycle / np.maximum(c.cycle_iterations, 1.0)
    jump = np.maximum(c.t_mix - c.t_dec, 0.0)
    per_prompt = jump * s.uncached / np.maximum(c.per_mixed, 1e-9)
    regularity = (w.gen_len_std / np.maximum(c.cycle_iterations, 1.0)) ** 2 + lognormal_cv2(
        w.prompt_len, w.prompt_len_std
    )
    others = np.maximum(c.running - 1.0, 0.0)
    # Both counts' variances are a constant over l: their mean over the lengths is E[1 / l]'s.
    renewal = others * regularity * per_prompt**2 / np.maximum(c.cycle_iterations, 1.0)
    binomial = np.maximum(p * (1.0 - p), 0.0) * jump**2
    inverse_steps = sum(
        weight / np.maximum(length - 1.0, 1.0) for weight, length in _lognormal_nodes(w.gen_len, w.gen_len_std)
    )
    return np.where(grouped, 0.0, np.minimum(renewal, binomial) * inverse_steps)


def _closed_cycle(s: _Setting, cap: _Capacity, clients: np.ndarray) -> _ClosedCycle:
    """The closed loop's engine with ``clients`` in it. b = min(clients, slots) run; the first
    burst (every client at once) is prefilled ``k`` tokens per mixed iteration and the groups it
    forms return together: per cycle of one request's life, ``ceil(b P / k)`` mixed iterations
    and the rest decode-only (AIConfigurator's mix/gen-only steps). With spread lengths the
    steady state's TTFT is the desynchronized one (:func:`_desynchronized_ttft`) and its TPOT
    what is left of the cycle (Little's law); the first burst and the cycle are the same either
    way. The running clients complete their requests at their mean time in the engine, the first
    burst's share included (``running / in_engine``: every client here has one request in it);
    the clients beyond the slots wait for one (``ttft_in_engine`` holds the wait)."""
    w = s.w
    gen, uncached = w.gen_len, s.uncached
    running = np.minimum(clients, cap.slots)
    demand = running * uncached  # prompt tokens to prefill per cycle
    # The running batch counts every sequence as decoding, the prompts in flight too: where the
    # token budget caps it (token_limit) those are a whole sequence or more of a small budget, and
    # the prompts get what the decodes alone leave (64 tokens, 1024/256: 12.8 decoding and 1.0 in
    # flight, 51 tokens left; 16 tokens, 8/64: 14.2 and 1.1, 1.8 left, where counting them left
    # the floor of 1 token). Below the cap, in the same proportion.
    in_budget, budget_decoding = _token_balance(w)
    decoding = np.where(cap.limited_by == "max_num_tokens", running * budget_decoding / in_budget, running)
    per_mixed = np.minimum(demand, s.prefill_budget(decoding))
    mixed_per_cycle = np.ceil(demand / per_mixed - 1e-9)
    per_mixed = demand / mixed_per_cycle
    own_prefill = np.ceil(uncached / np.maximum(per_mixed, 1.0) - 1e-9)  # iterations a prompt spans
    mix_decoding = np.maximum(running - per_mixed / uncached, 0.0)
    gpu_mix = s.gpu_iteration(mix_decoding, per_mixed)
    t_mix = s.mixed_iteration(gpu_mix, mix_decoding, per_mixed)
    gpu_dec = s.gpu_iteration(running, np.zeros(len(w)))
    t_dec = np.maximum(gpu_dec, s.host(running, np.zeros(len(w))))
    life = own_prefill + gen - 1.0  # iterations of one request, without waiting
    cycle_iterations = np.maximum(life, mixed_per_cycle)
    seen_mixed = np.clip(mixed_per_cycle - own_prefill, 0.0, gen - 1.0)
    tpot = np.where(
        gen > 1.0, (seen_mixed * t_mix + (gen - 1.0 - seen_mixed) * t_dec) / np.maximum(gen - 1.0, 1.0), 0.0
    )
    cycle_s = mixed_per_cycle * t_mix + (cycle_iterations - mixed_per_cycle) * t_dec
    # Steady state: the queue for the prefill budget when prefill-bound, its own prefill. No wait
    # for a running iteration: a client's next request is sent when its last one finished, at an
    # iteration's end, and joins the next iteration (the simulation's engine loop: _finished queues
    # it before the next _iteration; the request overhead, spent outside the engine, is not the
    # engine's cycle). Half a decode iteration of waiting here (the mean residual of an iteration
    # in progress, an open loop's) was in no cycle: TTFT + (G - 1) TPOT came to the cycle plus
    # t_dec / 2 and requests/s x engine E2E to more than the clients (Llama-3-8B, one H100, the
    # pure model, 1024/128 tokens, exactly equal outputs, steady state: 64.12 of 64 clients,
    # 1.004 of one, whose TTFT was a decode step over the prefill of its prompt).
    # First burst: groups prefilled one after another, the i-th of M with the i - 1 groups before
    # it decoding. Its iteration time goes from t_first (no sequence decoding yet: the host time
    # of the prompts alone; the GPU time is the prompts' in either) to t_mix about linearly in i;
    # a request of group j waits for groups 1..j, so iteration i counts M - i + 1 times over the M
    # groups: the mean wait is (M + 1) / 2 iterations at 2/3 t_first + 1/3 t_mix. (Llama-3.1-8B,
    # 256 clients on 8 H100s, TensorRT-LLM, 2048/256 tokens, host-bound: mean TTFT of the
    # burst's 256 requests 2.82 s simulated and here, with t_mix throughout 3.34 s; 2.55 / 2.54 /
    # 3.4 s before the 2026-12-05 all-reduce change.)
    t_first = np.maximum(gpu_mix, s.host(np.zeros(len(w)), per_mixed))
    steady = (cycle_iterations - life) * t_mix + own_prefill * t_mix
    burst = (mixed_per_cycle + 1.0) / 2.0 * (2.0 * t_first + t_mix) / 3.0 + (own_prefill - 1.0) * t_mix
    steady_var = np.zeros(len(w))  # the grouped steady state: every request alike
    spread = (w.prompt_len_std > 0) | (w.gen_len_std > 0)
    if np.any(spread):
        rows = np.flatnonzero(spread)
        sub = s if len(rows) == len(w) else s.take(rows)
        # Prefill-bound (every iteration mixed at the full budget) the requests queue for the budget
        # with or without groups and the desynchronized queue has no steady state (infinite): the
        # groups' model stands there, and the smaller of the two near it.
        line = (gpu_dec[rows], gpu_mix[rows], per_mixed[rows])
        desync, desync_var = _desynchronized_ttft(sub, running[rows], cycle_iterations[rows], line)
        steady_var[rows] = np.where(desync < steady[rows], desync_var, 0.0)
        steady[rows] = np.minimum(steady[rows], desync)
        # TPOT by Little's law over the same cycle. Every client is in the engine all the time
        # (``running`` of them, ``requests = running / cycle_s``), so one request's engine time
        # is the cycle: TTFT in the engine + (G - 1) TPOT = cycle_s. The grouped TPOT above lets a
        # request see none of the cycle's mixed iterations (its group's prompts are prefilled
        # with its own); desynchronized, its own prompt has an iteration of its own and the
        # other running - 1 prompts land in its decode iterations, which they stall: the cycle's
        # prefill work moves from TTFT into TPOT. Without this the means broke Little's law
        # (Llama-3-8B, one H100, TensorRT-LLM, 1024/128 tokens, steady state: requests/s x
        # engine E2E = 3.76 sequences of 4 clients, 14.97 of 16) and TPOT sat under tuner
        # simulate's, which runs the same iterations request by request (2000 requests, seed 0:
        # 7.51 ms against 7.94 at 4 clients, 9.94 against 10.37 at 16; now 8.00 and 10.64). The
        # measured runs (data/serving) show the stall: at fixed TP, prompt and clients their TPOT
        # falls with the output length as stall / (G - 1), a stall per cycle this puts at a
        # median 1.01x the measured over the 59 such groups (0.95x before, and none at 8 clients
        # with 1024-token prompts, where the runs show 66-91 ms). At least the grouped TPOT: the
        # desynchronized TTFT is at most the grouped one (the minimum above).
        little = (cycle_s[rows] - steady[rows]) / np.maximum(gen[rows] - 1.0, 1.0)
        tpot[rows] = np.where(gen[rows] > 1.0, np.maximum(tpot[rows], little), tpot[rows])
    # The first burst's share of the benchmark's requests: the first request of each running
    # client, 1 of requests_per_client each. Clients beyond the slots send theirs into a full
    # engine and wait for a slot (``waiting``), as their later requests do: of C x requests_per_client
    # requests, ``running`` are the burst's. (Every client's first request counted as a burst
    # one: 128 clients of 13.8 slots, Llama-3-8B on one H100 under vLLM, a 64-token budget,
    # 1024/256 tokens, charged the burst to 1 request in 10 instead of 1 in 93.)
    per_client = np.where(w.requests_per_client > 0, 1.0 / np.maximum(w.requests_per_client, 1.0), 0.0)
    share = per_client * running / np.maximum(clients, 1.0)
    # The benchmark's mean time of a running client's request in the engine: its TTFT in the
    # engine (the first burst's in ``share`` of them) and its decode. Steady state it is the cycle
    # (TTFT + (G - 1) TPOT = cycle_s, above); the first burst's extra wait is a client's time
    # too, each running client one request in the engine all the time, so they complete
    # ``running / in_engine`` requests a second over the benchmark (Little's law; a benchmark's
    # requests over its duration, which the first burst lengthens as much). The cycle alone put the
    # throughput of the steady state beside a TTFT that counts the burst: requests/s x engine E2E
    # came to 65.85 of 64 clients (Llama-3-8B, one H100, the pure model, 1024/128 tokens, 10
    # requests a client).
    in_engine = (1.0 - share) * steady + share * burst + (gen - 1.0) * tpot
    requests = running / in_engine
    # Clients beyond the slots wait for one: all C share the running ones' requests (Little's law).
    waiting = np.maximum(clients / requests - in_engine, 0.0)
    # Percentiles: the steady requests' law (gamma, :func:`_desynchronized_ttft`'s variance) and the
    # first burst's, whose j-th of M groups waits for groups 1..j, their iterations going from t_first
    # to t_mix: a share u into the burst waits t_first + (M - 1) (t_first u + (t_mix - t_first) u^2 / 2)
    # (the mean about ``burst``'s); the wait for a slot a constant (the overhead added by the caller).
    groups = np.maximum(mixed_per_cycle - 1.0, 0.0)
    first_burst = (share, t_first + (own_prefill - 1.0) * t_mix, groups * t_first, groups * (t_mix - t_first) / 2.0)
    # Over the run's clients x requests_per_client requests, as tuner simulate takes its percentiles
    # where the steady part and the burst meet (:func:`closed_loop_quantiles`).
    quantiles = closed_loop_quantiles(
        tuple(q for _, q, _ in TTFT_PERCENTILES),
        clients * w.requests_per_client,
        (1.0 - share, steady, steady_var),
        first_burst,
    )
    ttft_tail = {key: waiting + quantile for (key, _, _), quantile in zip(TTFT_PERCENTILES, quantiles, strict=True)}
    return _ClosedCycle(
        ttft_in_engine=(1.0 - share) * steady + share * burst + waiting,
        ttft_tail_in_engine=ttft_tail,
        tpot=tpot,
        running=running,
        mixed_per_cycle=mixed_per_cycle,
        cycle_iterations=cycle_iterations,
        per_mixed=per_mixed,
        t_mix=t_mix,
        t_dec=t_dec,
    )


def _desynchronized_ttft(
    s: _Setting,
    running: np.ndarray,
    cycle_iterations: np.ndarray,
    line: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Steady-state TTFT in the engine of a closed loop with spread lengths: requests end at
    different iterations, the first burst's groups dissolve, and the prompts arriving at an
    iteration's end are the requests that finished in it: each of the other ``running - 1``
    requests finishes in a given iteration with probability ``1 / cycle_iterations``, a count per
    iteration, not per second (a long mixed iteration finishes no more requests than a short one,
    unlike an open loop's arrivals in time), about Poisson with mean ``lam`` (the others'). A
    returning request joins the next iteration (no wait for a running one) and sees its own plus
    ``lam`` other prompts in it (at most the prefill budget), and the M/D/1 wait for the budget
    behind the others, whose server prefills ``B`` tokens an iteration (exact for one prompt an
    iteration: ``lam / (2 (1 - lam))`` iterations). One client: its prompt alone, no wait (as the
    simulation's one-client check has it). The cycle (throughput: the same prefill work per
    cycle) stays the synchronized one; the caller's TPOT is what this leaves of it. Against the
    simulation at 20% output spread, after the first cycles
    (tests/cost_models/test_serving_simulation.py): 64 clients on 8 H100s, 1024/128 tokens: 0.50
    prompts an iteration (this 0.50), 1.27 per mixed iteration (Poisson: 1.27), 1.50 in a
    request's own (1 + lam: 1.49); its TTFT in the engine is the mean length of the mixed
    iteration a request sits in, size-biased (32.5 ms both). With 5% spread the groups fade over
    the first cycles instead (simulated TTFT 1.07-1.09x this over 2000 requests at 64-256
    clients). Infinite where the prefill budget cannot keep up (``rho >= 1``). ``line``: the GPU
    seconds of the closed loop's decode-only and mixed iterations, and the mixed one's tokens.
    Returns the mean and the variance over the requests (:mod:`cost_models.ttft_percentiles`: the
    M/D/1 wait's, the Poisson count of the others' prompts in its iteration, its prompt's length)."""
    uncached = s.uncached
    lam = np.maximum(running - 1.0, 0.0) / np.maximum(cycle_iterations, 1.0)  # the others' prompts
    budget = s.prefill_budget(np.maximum(running - 1.0, 0.0))
    tokens = np.minimum(uncached * (1.0 + lam), budget)
    decoding = np.maximum(running - tokens / uncached, 0.0)
    # The request's own iteration lies on the segment the closed loop scored already, from
    # ``running`` decoding to its mixed iteration (``per_mixed`` tokens, that many prompts fewer
    # decoding). Its GPU time: the chord through the two ends where that is within 1% of the floor
    # (the decode-only end, or the mixed end's time scaled to these tokens: about what a roofline
    # along the segment cannot go under), scored afresh elsewhere (22% of the closed loops of
    # bench/bench_serving.py; against scoring every row afresh: 0.980-1.004 of its TTFT over 30,000
    # of them, calibrated or not, and the closed loop 1.4x faster).
    gpu_dec, gpu_mix, per_mixed = line
    share = np.clip(tokens / np.maximum(per_mixed, 1e-9), 0.0, 1.0)
    host = s.host(decoding, tokens)
    own = np.maximum(gpu_dec + (gpu_mix - gpu_dec) * share, host)
    floor = np.maximum(np.maximum(gpu_dec, gpu_mix * share), host)
    rows = np.flatnonzero((own > 1.01 * floor) | (tokens > per_mixed))
    if len(rows):
        own[rows] = s.take(rows).iteration(decoding[rows], tokens[rows])
    own_prefill = np.ceil(uncached / np.maximum(budget, 1.0) - 1e-9)
    # A chunked prompt's last iteration holds its rest and the others' prompts that came while it
    # prefilled (FCFS: the next in line take the budget it leaves), on the same chord: a full one
    # each before it (chunked_prefill_s).
    full, rest = prompt_chunks(uncached, budget)
    last_tokens = np.minimum(np.where(full > 0.0, rest + uncached * lam * (1.0 + full), tokens), budget)
    last_share = np.clip(last_tokens / np.maximum(per_mixed, 1e-9), 0.0, 1.0)
    last = np.where(
        full > 0.0, np.maximum(gpu_dec + (gpu_mix - gpu_dec) * last_share, s.host(decoding, last_tokens)), own
    )
    prefill_s = chunked_prefill_s(full, rest, own, last)
    rho = lam * uncached / budget
    service = uncached / budget  # iterations of the budget's server a prompt takes
    queue = np.where(rho < 1.0, rho / (2.0 * (1.0 - np.minimum(rho, 0.999))) * service, np.inf)
    cv2 = lognormal_cv2(s.w.prompt_len, s.w.prompt_len_std)
    queue_var = md1_wait_variance(queue, np.minimum(rho, 0.999), service, cv2) * own**2
    # Each other prompt in its iteration lengthens it by a prompt's share of the mixed one; its
    # own prompt's length moves its prefill in proportion (a whole iteration's worth where chunked).
    # (The host's where it binds the iteration: its time per new request, TensorRT-LLM's fit about
    # 19 ms of a 41 ms iteration for Llama-3-8B on 8 H100s at 16 clients, where the GPU's chord
    # gave 2 ms a prompt and the p90 46 ms against the simulation's 61.)
    per_prompt = np.maximum(gpu_mix - gpu_dec, 0.0) * uncached / np.maximum(per_mixed, 1e-9)
    host_per_prompt = s.host(decoding, tokens + uncached) - host
    per_prompt = np.where(
        host >= gpu_dec + (gpu_mix - gpu_dec) * share, np.maximum(per_prompt, host_per_prompt), per_prompt
    )
    others_var = (np.where(full > 0.0, np.minimum(rest, 1.0), 1.0) * per_prompt) ** 2 * lam
    prompt_var = cv2 * np.where(own_prefill > 1.0, prefill_s, per_prompt) ** 2
    return queue * own + prefill_s, queue_var + others_var + prompt_var


def prompt_chunks(uncached: np.ndarray, budget: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A prompt of ``uncached`` tokens where an iteration has room for ``budget`` of them: the
    iterations it fills (floor(P / budget), chunked) and the tokens left for its last one (the
    whole prompt where it fits one iteration: 0 filled)."""
    room = np.maximum(budget, 1.0)
    full = np.floor(uncached / room + 1e-9)
    rest = np.where(full > 0.0, np.maximum(uncached - full * room, 0.0), uncached)
    return full, rest


def chunked_prefill_s(full: np.ndarray, rest: np.ndarray, full_s: np.ndarray, last_s: np.ndarray) -> np.ndarray:
    """Seconds a prompt spends in its own prefill iterations (:func:`prompt_chunks`): ``full``
    iterations full of its chunks (``full_s`` each), then one holding the ``rest`` (``last_s``,
    scored at the rest's tokens and the others' prompts that share it), not ceil(P / budget)
    full ones. Where the rest is under a token (a prompt as long as the budget less the mean
    decode count: 0.36 sequences at a low rate) the last iteration exists only when a sequence
    decodes beside the prompt, so it counts in proportion to the rest up to one token (a Poisson
    count of mean d < 1 holds a decoding sequence with probability 1 - e^-d, about d). Counted as
    a whole full iteration, a prompt exactly a multiple of the budget (8192-token prompts at
    vLLM's default 8192-token budget: Llama-3-70B fp8 on 4 H100s, 0.1 req/s) read TTFT 860 ms
    where tuner simulate runs 430 ms, and 8000-token prompts 440 and 419 ms (2026-12-06)."""
    last = np.where(full > 0.0, np.minimum(rest, 1.0), 1.0)
    return full * full_s + last * last_s


#: Standard normal quantile of the 99.9th percentile (the running batch's, ``running_p999``).
_P999_Z = 3.0902

#: How far under ``tuner simulate``'s the running batch's 99.9th percentile (``running_p999``, the
#: gamma law of :func:`_load_fluctuation`'s mean and variance) has come out: its measured upper
#: error, which :func:`near_capacity` allows for. bench/bench_running_p999.py (2026-12-07, the
#: 2-core VM; 6 deployments: Llama-3-8B 1xH100 TensorRT-LLM 1024/128, Llama-3-8B 8xH100 vLLM
#: 1024+-300/128+-40, Llama-3-70B fp8 4xH100 vLLM 2048/256, Mixtral-8x7B fp8 2xH200 vLLM 1024/256,
#: Qwen3-32B 2xH200 SGLang 2048/512, Llama-3.1-8B 1xA100 vLLM 512+-200/256+-100; at 50/70/80/90/95/98%
#: of the highest stable rate; seeds 0-2 of 20,000 requests; the simulated percentile over time while
#: the load is on): simulated / analytic on the 23 loads whose simulated percentile stayed under the
#: cap 0.821-1.128 (the seeds' mean; median 1.01), seed by seed 0.76-1.23. The largest, 1.128
#: (Llama-3-8B on one H100 under TensorRT-LLM at 80%), is the margin (1.130 before the GEMM shape
#: correction's level followed the rows' median, 2026-12-07), since the open loop's fixed
#: point converges (2026-12-06): its rounds had stopped above the point there, on a mean batch of
#: 77.5 where it settles at 71.0 (simulated 73.6), and the law's percentile came out 162.6 against
#: 147.8 now (simulated 167.0). Before, 1.085 (Llama-3.1-8B on the A100 at 80%; 1.086 before
#: max_stable_request_rate ran to the edge, whose loads sat 0.2-0.6% lower, 1.090 before decode
#: attention's work units were made continuous in the cached length, 2026-12-06: the table re-run
#: each time, no flag changed); seeds 3-5 (held out, before those re-runs) read 0.76-1.07. Without
#: it (the percentile against the cap as it is) three loads whose simulated batch reached its cap
#: went unflagged: Llama-3-8B TensorRT-LLM at 95% (420.6 of 426; its TTFT p99 0.66-0.79x the
#: simulated), Mixtral at 80% (248.0 of 256) and Llama-3.1-8B on the A100 at 90% (221.3 of 256).
#: docs/serving.md, "The flag's margin", has the table. Re-read 2026-12-07 after the GEMM fits read
#: the collectors' working sets (the table re-run): 1.119, the same load (0.128 before).
RUNNING_P999_MARGIN = 0.119


def near_capacity(running_p999: np.ndarray | float, max_concurrency: np.ndarray | float) -> np.ndarray:
    """Whether an open loop's running batch swings up to its cap now and then (the ``near
    capacity:`` note of tuner estimate, simulate, recommend and a study's trials, and recommend's
    ``near_capacity``): its 99.9th percentile, allowing for that estimate's measured upper error
    (:data:`RUNNING_P999_MARGIN`), reaches ``max_concurrency`` (the KV cache's sequences or the
    slots). Elementwise; the one criterion every output path takes."""
    p999 = np.asarray(running_p999, dtype=np.float64)
    return p999 * (1.0 + RUNNING_P999_MARGIN) >= np.asarray(max_concurrency, dtype=np.float64)


def _load_fluctuation(
    rate: np.ndarray,
    gen: np.ndarray,
    t_mean: np.ndarray,
    decoding: np.ndarray,
    per_sequence: np.ndarray,
    per_prompt: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How an open loop's batch swings about its mean: per iteration, the variance of the decode
    count n, its covariance with the prompts K the iteration prefills, and K's variance.

    Linearized engine loop, in iterations j: K_j is Poisson with mean R t_{j-1} (the arrivals
    during the iteration before), t_j = a + b n_j + c K_j (b ``per_sequence``, c ``per_prompt``
    seconds), and n_j the prompts of the last L = G - 1 iterations (each decodes L iterations).
    A burst of arrivals lengthens the iterations (c) and grows the batch (b), which lengthens the
    next ones and lets more arrive: feedback gains gamma = R c (a prompt's share) and
    rho = R b L + gamma (the whole load on the iteration time). The stationary spectrum of n is
    R t |S|^2 / |1 - gamma z - R b z S|^2 with S the L-iteration window; for L >> 1 its integral
    is n (1 / (1 - gamma)^2) F(x) with x = R b L / (1 - gamma) and F(x) = 1 / (1 - x) (the
    integral of |s|^2 / |1 - x s|^2 over frequency, s the unit window's transform, checked by
    quadrature in tests/cost_models/test_serving_load.py), so

        Var(n) = E[n] / ((1 - gamma) (1 - rho)),

    the index of dispersion growing as 1 / (1 - rho) (M/G/1's Pollaczek-Khinchine scaling) times
    1 / (1 - gamma) for the prompts' bursts. Var(K) = R t / (1 - gamma^2) (Poisson, amplified by its
    own feedback) and Cov(n, K) = (R b Var(n) + gamma Var(K)) / (1 - gamma) (one iteration's
    recursion). Against ``tuner simulate``'s iterations (6000 requests, seed 1, 50-95% of the
    highest stable rate; Llama-3-8B on one H100 under TensorRT-LLM 1024/128, Llama-3-70B fp8 on 4
    H100s under vLLM 2048/256, Mixtral-8x7B on 2 H200s 1024/256): Var(n) / E[n] 2.5-21.5 there,
    2.4-21.9 by the exact spectrum and this. Where the linearized load passes 1 the gains are held
    at 0.99 (the swings are then large: ``running_p999`` says so)."""
    steps = np.maximum(gen - 1.0, 0.0)
    gamma = rate * per_prompt
    load = rate * per_sequence * steps + gamma
    slack_prompts = np.clip(1.0 - gamma, 0.01, 1.0)
    slack = np.clip(1.0 - load, 0.01, 1.0)
    var_n = decoding / (slack_prompts * slack)
    var_k = rate * t_mean / np.clip(1.0 - gamma**2, 0.01, 1.0)
    cov_nk = (rate * per_sequence * var_n + gamma * var_k) / slack_prompts
    return var_n, cov_nk, var_k


def _mean_excess(gap: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """E[max(0, gap + spread Z)] for a standard normal Z: how much the longer of two times exceeds
    the first, on average, where their difference is normal with mean ``gap`` and standard
    deviation ``spread``."""
    z = gap / spread
    return gap * normal_cdf(z) + spread * np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)


#: Past this many standard deviations the normal law's distribution function is 0 or 1 exactly in
#: float64 (scipy.special.ndtr(-40) == 0, ndtr(9) == 1, checked over -1e300..-40 and 9..1e300)
#: and exp(-z^2 / 2) is 0 (exp(-800) underflows: under -745.13 it is 0).
_NORMAL_EXACT_TAIL = 40.0


def _normal_cdf_and_bell(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """normal_cdf(z) and exp(-z^2 / 2), each evaluated only where |z| < 40 (or NaN), elsewhere
    the values those give exactly (0 or 1, and 0): the same bits, without the cost of ndtr and of
    exp's underflow on about half of the host kink's rounds' arguments (bench_serving's open
    loops: 23% at z <= -40; exp takes 13.5 ns an underflowing element against 0.6)."""
    cdf = (z >= _NORMAL_EXACT_TAIL).astype(np.float64)
    bell = np.zeros(z.shape)
    near = np.flatnonzero(~(np.abs(z) >= _NORMAL_EXACT_TAIL))
    z_near = z[near]
    cdf[near] = normal_cdf(z_near)
    bell[near] = np.exp(-0.5 * z_near * z_near)
    return cdf, bell


#: Rounds of :func:`_across_the_host_kink`'s fixed point, each moving halfway to its next value
#: (Llama-3-8B on 8 H100s under vLLM, 1024/128 tokens, at 90% of its highest stable rate the
#: decode count moves from 45 to 67 sequences, settled to 1e-4 in 25 rounds).
_KINK_ROUNDS = 40
#: A row has settled once a round moves its mean iteration by less than this share.
_KINK_SETTLED = 1e-5


class _AcrossTheKink(NamedTuple):
    per_sequence: np.ndarray
    decoding: np.ndarray
    t_dec: np.ndarray
    t_mix: np.ndarray
    t_mean: np.ndarray
    p_mix: np.ndarray
    #: The decode count past which the host binds a decode-only iteration with a steeper slope
    #: than the GPU's (inf where it does not, or no swing reaches it).
    kink_n: np.ndarray


def _across_the_host_kink(
    s: _Setting,
    slots: np.ndarray,
    decoding: np.ndarray,
    per_mixed: np.ndarray,
    t_dec: np.ndarray,
    t_mix: np.ndarray,
    t_mean: np.ndarray,
    p_mix: np.ndarray,
    per_sequence: np.ndarray,
    per_prompt: np.ndarray,
    full: np.ndarray,
    t_full: np.ndarray,
    gpu_dec_scored: np.ndarray,
    gpu_mix_scored: np.ndarray,
) -> _AcrossTheKink:
    """The open loop's mean iterations, decode count and slope per sequence over the running
    batch's swings, where they straddle the kink of an iteration's time, the longer of its GPU
    and host time (:meth:`_Setting.iteration`).

    Either side is linear in the decode count n (the GPU's slope g1 at the mean, the host's
    ``host_per_sequence_s`` h), and they cross at a kink. Scored at the mean batch, an iteration
    whose GPU time binds there is charged g1 for every sequence, but the swings up pass the kink
    and pay h: on Llama-3-8B on 8 H100s under vLLM (1024/128 tokens, TensorRT-LLM's fit: h 70.6
    us, g1 about 12 us; 45 sequences decode in 3.43 ms on the GPU, 3.19 ms on the host) at 34
    requests/s the simulated decode-only iterations took 3.3 ms at 20-40 sequences and 6.6 ms at
    80-120 (20,000 requests). Two things follow, with n normal about its mean (Var(n) from
    :func:`_load_fluctuation`), the host-minus-GPU gap a + (h - g1)(n - E[n]):

    - the mean iteration is E[max(GPU, host)] = GPU + E[max(0, gap)], above the longer at the
      mean (Jensen), each kind of iteration at its own gap; longer iterations let more requests
      into decode (Little: E[n] = R (G - 1) t), whose swings reach further past the kink;
    - the swings' feedback gain is the mean slope, g1 + (h - g1) P(gap > 0) (statistical
      linearization: Bussgang, 1952; for a normal n, Stein's lemma), not the GPU's alone.

    Solved together by damped rounds (:data:`_KINK_ROUNDS`): the mixed share grows with the mean
    iteration (the prompt work per mixed iteration held), the GPU times linear in n about the
    operating point. On that deployment at 85/88/90% of the highest stable rate the steady
    state's TPOT went from 0.82 / 0.66 / 0.51x tuner simulate's to 0.92 / 0.90 / 0.94x (20,000
    requests, seed 1). Rows with no overheads, or whose host time stays more than 8 standard
    deviations of the swings (at the host's gain) under the iteration's in both kinds (no swing
    reaches the kink), keep their numbers and cost nothing more. ``kink_n``: the decode count past
    which the host binds a decode-only iteration, where its slope is the steeper (the upper tail's
    dynamics: :func:`_open_loop`'s ``running_p999``)."""
    h = s.overheads.host_per_sequence_s
    n = len(decoding)
    zeros = np.zeros(n)
    unchanged = _AcrossTheKink(per_sequence, decoding, t_dec, t_mix, t_mean, p_mix, np.full(n, np.inf))
    if h <= 0.0:
        return unchanged
    host_dec, host_mix = s.host(decoding, zeros), s.host(decoding, per_mixed)
    # Only where a swing can reach the kink: the host within 8 standard deviations of the batch
    # (at the host's slope, its largest gain; the swings at the GPU's slope are the smaller) of
    # the iteration's time in either kind (Phi(-8) = 6e-16).
    var_n, _, _ = _load_fluctuation(s.w.request_rate, s.w.gen_len, t_mean, decoding, per_sequence, per_prompt)
    reach = 8.0 * h * np.sqrt(np.maximum(var_n, 0.0))
    rows = np.flatnonzero((host_dec + reach >= t_dec) | (host_mix + reach >= t_mix))
    if rows.size == 0:
        return unchanged
    mean_n, no_tokens = decoding[rows], zeros[rows]

    def from_rounds(longer: np.ndarray, host: np.ndarray, scored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The GPU's time of these iterations: the iteration's where it beat the host, else the
        GPU's seconds the open loop's rounds scored for these inputs (``scored``; the same
        seconds: a row's iteration depends on its own inputs only); and the rows left to score
        (NaN: a mixed iteration the rounds extended to the budget, not scored)."""
        out = longer.copy()
        bound = np.flatnonzero(longer <= host)
        out[bound] = scored[bound]
        return out, bound[np.isnan(scored[bound])]

    gpu_dec, dec_left = from_rounds(t_dec[rows], host_dec[rows], gpu_dec_scored[rows])
    gpu_mix, mix_left = from_rounds(t_mix[rows], host_mix[rows], gpu_mix_scored[rows])
    # The GPU's own slope at the mean: the secant to the full batch where the GPU binds at both
    # (per_sequence), else to a quarter more sequences on the GPU alone; not the secant of
    # max(GPU, host), which has the kink in it, nor the chord from one sequence (an MoE layer's
    # decode wakes more experts a sequence at a small batch: Mixtral-8x7B on 2 H200s 147 us a
    # sequence from 1 to 66, 28 us about 66).
    gpu_slope = per_sequence[rows].copy()
    other = np.flatnonzero(~((t_dec[rows] > host_dec[rows]) & (t_full[rows] > s.host(full, zeros)[rows])))
    wider = mean_n[other] + np.maximum(0.25 * mean_n[other], 4.0)
    # The iterations left and the wider ones scored in one call (each a fixed cost of ~5 ms).
    scoring = np.concatenate([dec_left, mix_left, other])
    if scoring.size:
        scored_s = s.take(rows[scoring]).gpu_iteration(
            np.concatenate([mean_n[dec_left], mean_n[mix_left], wider]),
            np.concatenate([no_tokens[dec_left], per_mixed[rows][mix_left], no_tokens[other]]),
        )
        gpu_dec[dec_left], gpu_mix[mix_left], wider_s = np.split(
            scored_s, [dec_left.size, dec_left.size + mix_left.size]
        )
        gpu_slope[other] = np.maximum(wider_s - gpu_dec[other], 0.0) / (wider - mean_n[other])
    step = h - gpu_slope
    gap_dec, gap_mix = host_dec[rows] - gpu_dec, host_mix[rows] - gpu_mix
    rate, gen, prompt_s = s.w.request_rate[rows], s.w.gen_len[rows], per_prompt[rows]
    demand, cap = rate * np.maximum(gen - 1.0, 0.0), slots[rows]
    mixed_per_s = p_mix[rows] / np.maximum(t_mean[rows], 1e-30)  # mixed share per second of mean iteration
    # The rounds run on a table compacted to the rows still moving (one take along its columns
    # when some settle, not a gather of every input by index each round), each row's outputs
    # written back by position once it settles; the arithmetic per row is the rounds' as they
    # were (_load_fluctuation's Var(n), its row constants hoisted, and _mean_excess, its z shared
    # with the host's share): the same bits (bench/guard_serving_outputs.py).
    size = rows.size
    slope_out, n_out, dec_out, mix_out, mean_out, share_out = (np.empty(size) for _ in range(6))
    steps = np.maximum(gen - 1.0, 0.0)
    gamma = rate * prompt_s
    slack_prompts = np.clip(1.0 - gamma, 0.01, 1.0)
    index = np.arange(size)
    # One 2-D array (a row each): compacting it is one take along the columns, 5x faster than a
    # compress of each array (numpy 2, 40,000 columns).
    table = np.stack(
        [
            mean_n, rate, steps, gamma, slack_prompts, step, np.abs(step), gap_dec, gap_mix, mixed_per_s,
            gpu_slope, gpu_dec, gpu_mix, demand, cap, t_mean[rows], mean_n, per_sequence[rows],
        ]
    )  # fmt: skip
    root_two_pi = np.sqrt(2.0 * np.pi)
    for _ in range(_KINK_ROUNDS):
        (
            c_mean_n, c_rate, c_steps, c_gamma, c_slack_prompts, c_step, c_abs_step, c_gap_dec, c_gap_mix,
            c_mixed_per_s, c_gpu_slope, c_gpu_dec, c_gpu_mix, c_demand, c_cap, now, n_now, slope,
        ) = table  # fmt: skip
        offset = n_now - c_mean_n
        load = c_rate * slope * c_steps + c_gamma
        var_n = n_now / (c_slack_prompts * np.clip(1.0 - load, 0.01, 1.0))
        spread = np.maximum(c_abs_step * np.sqrt(np.maximum(var_n, 0.0)), 1e-12)
        at_dec, at_mix = c_gap_dec + c_step * offset, c_gap_mix + c_step * offset
        share = np.minimum(c_mixed_per_s * now, 1.0)
        z_dec, z_mix = at_dec / spread, at_mix / spread
        cdf_dec, bell_dec = _normal_cdf_and_bell(z_dec)
        cdf_mix, bell_mix = _normal_cdf_and_bell(z_mix)
        host_share = share * cdf_mix + (1.0 - share) * cdf_dec
        slope = np.maximum(c_gpu_slope + c_step * host_share, 0.0)
        # _mean_excess(at, spread) = at Phi(z) + spread phi(z), z = at / spread.
        dec_s = c_gpu_dec + c_gpu_slope * offset + (at_dec * cdf_dec + spread * bell_dec / root_two_pi)
        mix_s = c_gpu_mix + c_gpu_slope * offset + (at_mix * cdf_mix + spread * bell_mix / root_two_pi)
        # t = p t_mix + (1 - p) t_dec with p = (p / t) t: t = t_dec / (1 - (p / t)(t_mix - t_dec)),
        # no such t where the mixed iterations' excess outgrows it (capped: the slots then bind).
        next_s = dec_s / np.maximum(1.0 - c_mixed_per_s * (mix_s - dec_s), 1e-3)
        mean_s = 0.5 * (now + next_s)
        n_next = np.minimum(c_demand * mean_s, c_cap)
        moving = np.abs(next_s - now) > _KINK_SETTLED * now
        if moving.all():
            table[15], table[16], table[17] = mean_s, n_next, slope
            continue
        leaving = np.flatnonzero(~moving)
        at = index[leaving]
        slope_out[at], n_out[at], dec_out[at] = slope[leaving], n_next[leaving], dec_s[leaving]
        mix_out[at], mean_out[at], share_out[at] = mix_s[leaving], mean_s[leaving], share[leaving]
        keep = np.flatnonzero(moving)
        if keep.size == 0:
            break
        index = index[keep]
        table[15], table[16], table[17] = mean_s, n_next, slope
        table = table.take(keep, axis=1)
    else:
        # Rounds run out: the rows still moving hold the last round's numbers.
        table_now = (table[15], table[16], table[17])
        slope_out[index], n_out[index], mean_out[index] = table_now[2], table_now[1], table_now[0]
        if index.size == dec_s.size:
            dec_out[index], mix_out[index], share_out[index] = dec_s, mix_s, share
        else:
            keep_last = np.flatnonzero(moving)
            dec_out[index], mix_out[index], share_out[index] = dec_s[keep_last], mix_s[keep_last], share[keep_last]
    slope, n_now, dec_s, mix_s, mean_s, share = slope_out, n_out, dec_out, mix_out, mean_out, share_out
    out = [np.array(a, dtype=np.float64, copy=True) for a in unchanged]
    # Where the host binds a decode-only iteration: n* = n + (GPU - host) / (h - g1), at the mean.
    at_dec = gap_dec + step * (n_now - mean_n)
    kink_n = np.where(step > 0.0, n_now - at_dec / np.where(step > 0.0, step, 1.0), np.inf)
    for column, value in zip(out, (slope, n_now, dec_s, mix_s, mean_s, share, kink_n), strict=True):
        column[rows] = value
    return _AcrossTheKink(*out)


#: Most rounds of the open loop's fixed point after its chord step (:func:`_open_loop_fixed_point`).
#: A row has settled once a round moves its mean iteration and its mixed share each by at most
#: ``_SETTLED`` of its input, or it is unstable either way. Of bench_serving's 100,000 open loops
#: 73,070 settle in the first round, 13,485 in the second, 7,710 in the third; 118 run out
#: (oscillating across a step of the iteration table, or drifting slowly to the cap); of the MoE
#: draws' 5,000 (bench/guard_serving_outputs.py) 3-56.
_OPEN_LOOP_ROUNDS = 30
#: The fixed point's tolerance, relative. Until 2026-12-06 the rounds also stopped where the mixed
#: iterations carried the prompt work within 1% (``_CARRIED``), which holds identically wherever
#: the budget binds, and at 1e-3 a round here: bench_serving's rows then stopped up to 19% from
#: the point (median 1.4e-4), and the analytic TTFT fell with the rate at 8 of 135 rates near the
#: 70B fp8 TP4's edge (bench/bench_open_loop_scan.py).
_SETTLED = 1e-4
#: Anderson's mix of the last two rounds' outputs goes at most this many times their difference
#: past the last (then held within half and twice it).
_ANDERSON_REACH = 10.0


#: Iterations already scored (decode sequences, prefill tokens, seconds, the GPU's seconds), for
#: a round to reuse.
_Known = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


#: A round scores its mixed and decode-only iterations in one call on its rows twice over when it
#: holds at most this many rows: an ``iteration_times`` call costs ~4 ms whatever its rows
#: (3,800 Python calls through the operator model) against ~1-2 us a row, and the rounds after
#: the first on bench_serving's 100,000 open loops hold 9,549, 1,612, 730, ... 11 rows, 30 rounds
#: of two calls each (~0.23 s of the ~1.3 s a serve call took on the AMD EPYC VM, 2026-12-06).
_MERGE_AT_MOST = 20_000


def _whole_tokens(decode_seqs: np.ndarray, prefill_tokens: np.ndarray) -> bool:
    """Whether every row's dense view is at a whole token count (as iteration_times sums it)."""
    tokens = np.maximum(decode_seqs + prefill_tokens, 1.0)
    return bool(np.all(tokens == np.floor(tokens)))


def _both_iterations(
    s: _Setting,
    decoding: np.ndarray,
    per_mixed: np.ndarray,
    known_mix: _Known | None,
    known_dec: _Known,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """A round's mixed and decode-only iterations (seconds and GPU seconds of each) from one
    ``iteration_parts`` call on the rows twice over, where that gives each row the numbers of the
    two calls it replaces; None: score them apart (:func:`_open_loop_round`). A row's iteration
    depends on its own deployment, workload and inputs only, with two exceptions kept out here:
    a view of one row (numpy sums its (slots, 1) times pairwise, a wider one slot after slot)
    and a view whose rows are all at whole token counts (``iteration._shared_rows`` may then
    sum the distinct rows' gathered times in Fortran order, by the share of distinct rows in
    the call). And only where neither half would reuse a known iteration
    (:meth:`_Setting.iteration_again`)."""
    m = len(decoding)
    if known_mix is None or not 2 <= m <= _MERGE_AT_MOST:
        return None
    zeros = np.zeros(m)
    for seqs, tokens, known in ((decoding, per_mixed, known_mix), (decoding, zeros, known_dec)):
        same = (seqs == known[0]) & (tokens == known[1])
        if np.count_nonzero(same) >= _REUSE_AT_LEAST * m or _whole_tokens(seqs, tokens):
            return None
    twice = s.take(np.tile(np.arange(m), 2))
    t, gpu = twice.iteration_parts(np.concatenate((decoding, decoding)), np.concatenate((per_mixed, zeros)))
    return t[:m], gpu[:m], t[m:], gpu[m:]


class _OpenLoopRound(NamedTuple):
    decoding: np.ndarray
    budget: np.ndarray
    per_mixed: np.ndarray
    t_mix: np.ndarray
    t_dec: np.ndarray
    p_mix: np.ndarray
    t_mean: np.ndarray
    known_mix: _Known
    known_dec: _Known
    #: The GPU's seconds alone of the iterations ``t_mix`` and ``t_dec`` (NaN for a mixed one
    #: extended to the budget, not scored: ``carry`` in :func:`_open_loop_round`).
    gpu_mix: np.ndarray
    gpu_dec: np.ndarray


class _MixedShare(NamedTuple):
    p_mix: np.ndarray
    t_mix: np.ndarray
    per_mixed: np.ndarray
    t_mean: np.ndarray
    #: Where the mixed iterations hold the budget to carry the prompt work (``t_mix`` extended).
    carry: np.ndarray


def _mixed_share(
    rate: np.ndarray,
    uncached: np.ndarray,
    work: np.ndarray,
    t_dec: np.ndarray,
    t_mix: np.ndarray,
    per_mixed: np.ndarray,
    budget: np.ndarray,
) -> _MixedShare:
    """:func:`_open_loop_round`'s mixed share and mean iteration from its decode-only and mixed
    iterations (``t_mix`` holding ``per_mixed`` prompt tokens, at most ``budget``)."""
    # Whether an iteration holds prefill depends on how long the one before took (arrivals
    # during it): a two-state Markov chain, mixed -> mixed with 1 - exp(-R t_mix), decode ->
    # mixed with 1 - exp(-R t_dec). Long mixed iterations beget mixed iterations.
    to_mixed = 1.0 - np.exp(-rate * t_dec)
    # A mixed iteration holds 1 + Poisson(m - 1) prompts (m its mean), each lengthening it by a
    # prompt's time c: no arrival during it has probability E[exp(-R t)], more than exp(-R E[t])
    # (Jensen): exp(-R t_mix) exp((m - 1) (exp(-R c) - 1 + R c)). (Llama-3-70B fp8 on 4 H100s,
    # vLLM, 2048/256 tokens, 9/s: mixed share 0.39 at the mean, 0.36 so, simulated 0.36.)
    others = np.maximum(per_mixed / np.maximum(uncached, 1e-9) - 1.0, 0.0)
    gain = rate * (t_mix - t_dec) / np.maximum(per_mixed, 1e-9) * uncached
    convex = others * (np.exp(-gain) - 1.0 + gain)
    p_markov = to_mixed / np.maximum(to_mixed + np.exp(np.minimum(-rate * t_mix + convex, 0.0)), 1e-300)
    # The chain lets a mixed iteration take every prompt that arrived; it holds at most the
    # budget (one whole prompt of 2048 tokens in 4096 without chunking), and what does not fit
    # waits for the next iteration, mixed too. The mixed share p must carry the prompt work,
    # p x budget = work x t_mean with t_mean = t_dec + p (t_mix' - t_dec), t_mix' a mixed
    # iteration holding the budget (linear in its tokens from this one): p = work t_dec /
    # (budget - work (t_mix' - t_dec)). No such p below 1 where work t_mix' >= budget: every
    # iteration mixed and the prompts still come faster (unstable below).
    t_full = t_dec + (t_mix - t_dec) * budget / np.maximum(per_mixed, 1e-9)
    room = budget - work * (t_full - t_dec)
    # Divided only where there is room: elsewhere work x t_dec over a 1e-300 floor overflowed
    # (a RuntimeWarning on stderr at 10^9 requests/s) for a value np.where throws away.
    p_carry = np.divide(work * t_dec, room, out=np.ones(len(room)), where=room > 0.0)
    carry = p_carry > p_markov
    t_mix = np.where(carry, t_full, t_mix)
    per_mixed = np.where(carry, budget, per_mixed)
    p_mix = np.clip(np.maximum(p_markov, p_carry), 1e-9, 1.0)
    t_mean = p_mix * t_mix + (1.0 - p_mix) * t_dec
    return _MixedShare(p_mix, t_mix, per_mixed, t_mean, carry)


def _open_loop_round(
    s: _Setting,
    demand: np.ndarray,
    work: np.ndarray,
    slots: np.ndarray,
    t_mean: np.ndarray,
    p_mix: np.ndarray,
    known_mix: _Known | None,
    known_dec: _Known,
) -> _OpenLoopRound:
    """One round of :func:`_open_loop`'s fixed point at the mean iteration ``t_mean`` and mixed
    share ``p_mix``: the decode sequences, the prefill budget, the tokens of a mixed iteration, the
    mixed and decode-only iterations, the new mixed share and mean iteration, and the iterations
    scored (for the next round to reuse)."""
    decoding = np.minimum(demand * t_mean, slots)
    budget = s.prefill_budget(decoding)
    per_mixed = np.minimum(work * t_mean / p_mix, budget)
    both = _both_iterations(s, decoding, per_mixed, known_mix, known_dec)
    if both is not None:
        t_mix, gpu_mix, t_dec, gpu_dec = both
    else:
        if known_mix is None:
            t_mix, gpu_mix = s.iteration_parts(decoding, per_mixed)
        else:
            t_mix, gpu_mix = s.iteration_again(decoding, per_mixed, known_mix)
        t_dec, gpu_dec = s.iteration_again(decoding, np.zeros(len(decoding)), known_dec)
    scored_mix = (decoding, per_mixed, t_mix, gpu_mix)
    scored_dec = (decoding, np.zeros(len(decoding)), t_dec, gpu_dec)
    share = _mixed_share(s.w.request_rate, s.uncached, work, t_dec, t_mix, per_mixed, budget)
    carry = share.carry
    return _OpenLoopRound(
        decoding,
        budget,
        share.per_mixed,
        share.t_mix,
        t_dec,
        share.p_mix,
        share.t_mean,
        scored_mix,
        scored_dec,
        np.where(carry, np.nan, gpu_mix),
        gpu_dec,
    )


#: The slot system's highest utilisation declared stable (the mean running batch over its cap:
#: past it an open loop's wait for a slot runs to many residence times; see :func:`_slot_wait`).
SLOT_UTILISATION_LIMIT = 0.98
#: Rows whose running batch sits more than this many standard deviations (Poisson's, sqrt(a))
#: under the cap wait for a slot with probability under 1e-12 (Erlang C; the normal tail at 7 is
#: 1.3e-12): their wait is 0 and they cost nothing more.
_SLOT_WAIT_REACH = 7.0
#: A slot wait under this probability leaves the TTFT percentiles' laws as they were.
_SLOT_WAIT_NEGLIGIBLE = 1e-6


class _SlotWait(NamedTuple):
    probability: np.ndarray  # P(wait > 0), Erlang C
    exponential_s: np.ndarray  # the mean of the wait's exponential tail (given a wait)
    mean_s: np.ndarray  # probability x exponential_s


def _slot_wait(
    offered: np.ndarray,
    slots: np.ndarray,
    residence_s: np.ndarray,
    gen: np.ndarray,
    gen_std: np.ndarray,
    peakedness: np.ndarray,
) -> _SlotWait:
    """The wait for a slot (a sequence of the KV cache or of ``max_batch_size``): the engine holds
    a request from admission to its last token (``residence_s``), at most c = ``slots`` at once,
    and Poisson arrivals offer a = ``offered`` = R x residence Erlangs: an M/G/c queue.

    The probability of a wait is Erlang C, C = B / (1 - rho (1 - B)), Erlang B written as the
    Poisson law's pmf(c) / cdf(c) through the regularized incomplete gamma function (a fractional
    cap allowed). The running batch swings more than a Poisson count (its variance is Z = Var(n) /
    E[n] times its mean, Z from :func:`_load_fluctuation`: the iteration time's feedback), so the
    probability is taken at Hayward's scaled system, C(c / Z, a / Z) (peaked traffic: Fredericks,
    Bell System Technical Journal 59, 1980). The wait given one is exponential (M/M/c's exactly,
    M/G/c's heavy-traffic limit) of mean residence / (c - a) x (1 + cs^2) / 2 (Allen and Cunneen;
    cs^2 the residence's squared coefficient of variation, the output length's): the slots drain at
    the unscaled system's spare rate (Hayward's scaling of that too, x Z, read Llama-3-70B fp8 TP4
    under vLLM at 98% of its highest stable rate at a 10.2 s TTFT where tuner simulate ran 0.71 s;
    this reads 0.80 s; docs/serving.md).

    Before, none was charged and an open loop was stable until the mean batch reached the cap:
    Llama-3.1-70B bf16 on 2 H100s under vLLM (2048/256 tokens, 15 sequences in its KV cache) read
    a 0.32 s TTFT at 1.2 and 1.33 req/s where tuner simulate ran 2.2 and 9.3 s."""
    n = len(offered)
    probability, exponential_s = np.zeros(n), np.zeros(n)
    spread = np.sqrt(np.maximum(offered * peakedness, 1.0))
    rows = np.flatnonzero((offered > 0.0) & (slots - offered < _SLOT_WAIT_REACH * spread))
    if rows.size:
        c_slots, z = slots[rows], peakedness[rows]
        rho = np.minimum(offered[rows] / c_slots, SLOT_UTILISATION_LIMIT)
        c, a = c_slots / z, rho * c_slots / z  # Hayward's scaled system
        from scipy.special import gammaincc, gammaln  # on first use (cost_models/ttft_percentiles.py ndtr)

        erlang_b = np.exp(c * np.log(a) - a - gammaln(c + 1.0)) / np.maximum(gammaincc(c + 1.0, a), 1e-300)
        erlang_b = np.clip(erlang_b, 0.0, 1.0)
        probability[rows] = erlang_b / (1.0 - rho * (1.0 - erlang_b))
        cs2 = lognormal_cv2(gen[rows], gen_std[rows])
        exponential_s[rows] = residence_s[rows] / (c_slots * (1.0 - rho)) * (1.0 + cs2) / 2.0
    return _SlotWait(probability, exponential_s, probability * exponential_s)


def _ttft_tail_with_slot_wait(
    n: int,
    reported: np.ndarray,
    laws: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    slot_wait: _SlotWait,
    overhead: float,
) -> dict[str, np.ndarray]:
    """The TTFT percentiles of the rows ``reported``: the mixture of ``laws`` (the iteration landed
    in, the budget's wait, the own prefill), and where a slot wait is likely (Erlang C over
    :data:`_SLOT_WAIT_NEGLIGIBLE`) each law twice: without the wait (1 - C of its weight) and with
    its exponential (C of it; mean m, variance m^2 added). Rows without keep their two laws, so
    their percentiles, and their cost, are as before."""
    full = [tuple(np.broadcast_to(a, (n,)) for a in law) for law in laws]
    waits = slot_wait.probability[reported] > _SLOT_WAIT_NEGLIGIBLE
    plain, waiting = reported[~waits], reported[waits]
    tail = {key: np.full(n, np.inf) for key, _, _ in TTFT_PERCENTILES}
    if plain.size:
        plain_laws = [tuple(a[plain] for a in law) for law in full]
        quantiles = mixture_quantiles(tuple(q for _, q, _ in TTFT_PERCENTILES), plain_laws)
        for (key, _, _), quantile in zip(TTFT_PERCENTILES, quantiles, strict=True):
            tail[key][plain] = overhead + quantile
    if waiting.size:
        c, m = slot_wait.probability[waiting], slot_wait.exponential_s[waiting]
        mixed = []
        for weight, mean, var in full:
            weight, mean, var = weight[waiting], mean[waiting], var[waiting]
            mixed.append(((1.0 - c) * weight, mean, var))
            mixed.append((c * weight, mean + m, var + m * m))
        quantiles = mixture_quantiles(tuple(q for _, q, _ in TTFT_PERCENTILES), mixed)
        for (key, _, _), quantile in zip(TTFT_PERCENTILES, quantiles, strict=True):
            tail[key][waiting] = overhead + quantile
    return tail


#: Rounds of the mixed share on :func:`_local_step`'s linear iterations (no scoring): at 3 the
#: rounds after bench_serving's chord step held 21,264 of its 100,000 open loops, 22,254 at 1,
#: 42,423 at none (the share left at the chord round's).
_LOCAL_SHARE_ROUNDS = 3


def _local_step(
    s: _Setting,
    demand: np.ndarray,
    work: np.ndarray,
    slots: np.ndarray,
    chord_mean: np.ndarray,
    chord_slope: np.ndarray,
    per_token: np.ndarray,
    full: np.ndarray,
    t_full: np.ndarray,
    decoding: np.ndarray,
    t_dec: np.ndarray,
    per_sequence: np.ndarray,
    p_mix: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_open_loop`'s first point after the chord round: the mean iteration where the
    decode-only iteration is linear through the chord round's (``decoding``, ``t_dec``) with the
    secant to the full batch scored first (the local slope: the chord from one sequence missed the
    weight-read floor's bend, and the rounds after it held 72,529 of bench_serving's 100,000 open
    loops, 42,423 so), else ``chord_mean``; and the mixed share of :func:`_mixed_share` on those
    linear iterations, :data:`_LOCAL_SHARE_ROUNDS` rounds from the chord round's (which was
    taken at the mean iteration before the step)."""
    near = np.abs(decoding - full) >= 1.0
    local = np.where(near, (t_dec - t_full) / np.where(near, decoding - full, 1.0), per_sequence)
    local = np.where(local > 0.0, local, per_sequence)
    local_slope = 1.0 - local * demand - per_token * work
    t_local = (t_dec - local * decoding) / np.maximum(local_slope, 0.02)
    t_mean = np.where((local_slope > 0.02) & (chord_slope > 0.02) & (t_local > 0.0), t_local, chord_mean)
    # The iterations at that point, linear in the decode sequences (local) and the prompt tokens
    # (per_token, the chord round's; at least 0: a negative one overflowed exp in _mixed_share).
    at = np.minimum(demand * t_mean, slots)
    linear_dec = t_dec + local * (at - decoding)
    budget = s.prefill_budget(at)
    per_token = np.maximum(per_token, 0.0)
    for _ in range(_LOCAL_SHARE_ROUNDS):
        tokens = np.minimum(work * t_mean / p_mix, budget)
        linear_mix = linear_dec + per_token * tokens
        p_mix = _mixed_share(s.w.request_rate, s.uncached, work, linear_dec, linear_mix, tokens, budget).p_mix
    return t_mean, p_mix


def _open_loop_fixed_point(
    s: _Setting,
    demand: np.ndarray,
    work: np.ndarray,
    slots: np.ndarray,
    t_mean: np.ndarray,
    p_mix: np.ndarray,
    before: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    chord: tuple[np.ndarray, np.ndarray],
    known_mix: _Known,
    known_dec: _Known,
    out: tuple[np.ndarray, ...],
) -> None:
    """The rounds of :func:`_open_loop`'s fixed point from :func:`_local_step`'s point (``t_mean``,
    ``p_mix``; ``chord``: the chord step's, where plain rounds would start), on the rows still
    moving, each round's outputs written into ``out`` (decode sequences, tokens of a mixed
    iteration, mixed and decode-only iterations, their GPU seconds, mixed share, mean iteration)
    at its rows (a row that runs out of rounds keeps its last round's).

    A row stops where a round moves neither its mean iteration nor its mixed share by more than
    :data:`_SETTLED` of its input (the point is the map's own to that tolerance), or where its
    outputs are unstable either way. Not where the mixed iterations carry the prompt work: that
    holds identically wherever the budget binds (p x budget = work x t_mean is how the carried
    share is solved), and it stopped rounds whose mean iteration was still moving by percents
    (docs/serving.md, "Where it is weak").

    The next input is Anderson's mix of depth one (Walker and Ni, SIAM J. Numer. Anal. 49, 2011):
    of the last two rounds' outputs, the one whose residuals' linear model is zero (``before``:
    the chord round's input and output, the first pair). Near the slot cap plain rounds shrink the
    step by ~0.6 a round (Llama-3-70B fp8 on 4 H100s under vLLM, 2048/256 tokens, 6.80 req/s:
    30 rounds to 1e-8); this takes 3-4. The mix is held within half and twice the output, and a
    row whose mixed point (or local step) came out unstable goes back to the plain point (the
    round before's output, or the chord step's point) and takes plain rounds from then on (an
    overshoot is no verdict: the plain rounds' is; the local step overshot Llama-3.1-8B on an A100
    under vLLM, 512/256 tokens, at 14.85 req/s into the slot cap, where the rounds from the chord
    settle at 219 of 256 sequences)."""
    decoding, per_mixed, t_mix, t_dec, gpu_mix, gpu_dec, p_out, t_out = out
    n = len(t_mean)
    active = np.arange(n)
    sub, sub_demand, sub_work, sub_slots = s, demand, work, slots
    x_mean, x_mix = t_mean.copy(), p_mix.copy()
    last_x_mean, last_x_mix, last_g_mean, last_g_mix = before
    # Where the input is not the plain point (the round before's output, first the chord step's),
    # and that point.
    back_mean, back_mix = chord
    mixed = (x_mean != back_mean) | (x_mix != back_mix)
    plain = np.zeros(n, dtype=bool)  # a mix overshot: plain rounds only
    for _ in range(_OPEN_LOOP_ROUNDS):
        round_ = _open_loop_round(sub, sub_demand, sub_work, sub_slots, x_mean, x_mix, known_mix, known_dec)
        dec_r, budget_r, per_r, t_mix_r, t_dec_r, g_mix, g_mean, known_mix, known_dec = round_[:9]
        decoding[active], per_mixed[active], t_mix[active], t_dec[active] = dec_r, per_r, t_mix_r, t_dec_r
        gpu_mix[active], gpu_dec[active] = round_.gpu_mix, round_.gpu_dec
        p_out[active], t_out[active] = g_mix, g_mean
        f_mean, f_mix = (g_mean - x_mean) / x_mean, (g_mix - x_mix) / x_mix
        converged = (np.abs(f_mean) <= _SETTLED) & (np.abs(f_mix) <= _SETTLED)
        # Unstable either way, and carrying more prompt work only lengthens the iterations: every
        # iteration mixed at the full budget, or more sequences decoding than the slots hold.
        saturated = ((g_mix >= 1.0) & (per_r >= budget_r)) | (sub_demand * g_mean >= sub_slots)
        overshot = saturated & mixed
        moving = ~(converged | (saturated & ~mixed))
        if not np.any(moving):
            break
        last_f_mean = (last_g_mean - last_x_mean) / last_x_mean
        last_f_mix = (last_g_mix - last_x_mix) / last_x_mix
        d_mean, d_mix = f_mean - last_f_mean, f_mix - last_f_mix
        norm = d_mean * d_mean + d_mix * d_mix
        gamma = np.divide(d_mean * f_mean + d_mix * f_mix, norm, out=np.zeros(len(norm)), where=norm > 0.0)
        plain = plain | overshot
        gamma = np.where(plain, 0.0, np.clip(gamma, -_ANDERSON_REACH, _ANDERSON_REACH))
        next_mean = np.clip(g_mean - gamma * (g_mean - last_g_mean), 0.5 * g_mean, 2.0 * g_mean)
        next_mix = np.clip(g_mix - gamma * (g_mix - last_g_mix), 1e-9, 1.0)
        next_mean = np.where(overshot, back_mean, next_mean)
        next_mix = np.where(overshot, back_mix, next_mix)
        keep = np.flatnonzero(moving)
        back_mean, back_mix = g_mean[keep], g_mix[keep]
        mixed = ((next_mean != g_mean) | (next_mix != g_mix))[keep] & ~overshot[keep]
        plain = plain[keep]
        active = active[keep]
        sub = s.take(active)
        sub_demand, sub_work, sub_slots = demand[active], work[active], slots[active]
        last_x_mean, last_x_mix, last_g_mean, last_g_mix = x_mean[keep], x_mix[keep], g_mean[keep], g_mix[keep]
        x_mean, x_mix = next_mean[keep], next_mix[keep]
        known_mix = (known_mix[0][keep], known_mix[1][keep], known_mix[2][keep], known_mix[3][keep])
        known_dec = (known_dec[0][keep], known_dec[1][keep], known_dec[2][keep], known_dec[3][keep])


def _open_loop(s: _Setting) -> ServingEstimate:
    """Poisson arrivals at R: fixed point of the mean iteration time t. Sequences in decode by
    Little's law, R (G - 1) t; an iteration holds prefill with probability 1 - exp(-R t), and all
    iterations together prefill R P t tokens. With the iteration linear in its decode sequences
    (slope b from one sequence's iteration a) and prefill tokens (slope c) the fixed point is
    closed-form, t = (a - b) / (1 - b R (G-1) - c R P); the slopes are taken again through that
    point on the full iteration model (a chord step, then :func:`_local_step`), and the mean
    iteration is evaluated there, round after round until it and the mixed share settle
    (:func:`_open_loop_fixed_point`, to :data:`_SETTLED`): what is not linear (the weight-read
    floor, the host time, an MoE layer's grouped GEMMs, whose time steps with the prompt tokens)
    moves the point, and one round left the mixed iterations carrying a share of the prompt work
    only (Mixtral-8x7B on 2 H200s at 20/s: 37%, TPOT 15.4 ms where the simulation runs 22.6 ms).
    Rounds whose decode sequences and prefill tokens repeat an iteration already scored (pinned
    at their slots and prefill budget) reuse its seconds. Where the round map has two fixed
    points the one found is the one the rounds reach from the local step: Qwen3-32B on 2 H200s
    under SGLang, 2048/512 tokens, at 5.48 req/s settles at 240 of 330 decoding sequences (TTFT
    0.47 s, TPOT 92 ms; tuner simulate 0.35 s and 72 ms, 4000 requests), where plain rounds from
    the chord step reach 317 (and read it unstable past 5.457 req/s, 5.4996 now).
    TTFT adds the M/D/1 wait for the prefill budget. Unstable
    (infinite queue) when prefill work exceeds the budget or decode sequences the slots."""
    w, cap = s.w, _capacity(s)
    gen, uncached, rate = w.gen_len, s.uncached, w.request_rate
    n = len(w)
    zeros, ones = np.zeros(n), np.ones(n)
    # Linear model from three iterations: one sequence, a full batch, one sequence and a prompt.
    one = s.iteration(ones, zeros)
    full = np.clip(rate * (gen - 1.0) * 2.0 * one, 2.0, np.maximum(cap.slots, 2.0))
    t_full, gpu_full = s.iteration_parts(full, zeros)
    per_sequence = (t_full - one) / np.maximum(full - 1.0, 1.0)
    per_token = (s.iteration(ones, uncached) - one) / uncached
    demand = rate * (gen - 1.0)  # decode sequences per second of iteration time
    work = rate * uncached  # prompt tokens per second of iteration time
    t_mean = (one - per_sequence) / np.maximum(1.0 - per_sequence * demand - per_token * work, 0.02)
    p_mix = np.clip(1.0 - np.exp(-rate * t_mean), 1e-9, 1.0)
    # Iterations already scored, reused where a round's inputs repeat them (the same seconds):
    # the full batch's decode-only iteration, then each round's own.
    known_dec: _Known = (full, zeros, t_full, gpu_full)
    known_mix: _Known | None = None
    slots = cap.slots
    # The chord round on every row: the slopes through the operating point, then the closed form.
    start_mean, start_mix = t_mean, p_mix
    decoding, _, per_mixed, t_mix, t_dec, p_mix, t_mean, known_mix, known_dec, gpu_mix, gpu_dec = _open_loop_round(
        s, demand, work, slots, t_mean, p_mix, known_mix, known_dec
    )
    # The chord round's input and output: the first pair of the accelerated rounds' history.
    before = (start_mean, start_mix, t_mean.copy(), p_mix.copy())
    per_sequence = np.where(decoding > 1.5, (t_dec - one) / np.maximum(decoding - 1.0, 1e-9), per_sequence)
    per_token = (t_mix - t_dec) / np.maximum(per_mixed, 1e-9)
    slope = 1.0 - per_sequence * demand - per_token * work
    chord_mean = np.where(slope > 0.02, (one - per_sequence) / np.maximum(slope, 0.02), t_mean)
    chord_mix = p_mix.copy()
    t_mean, p_mix = _local_step(
        s, demand, work, slots, chord_mean, slope, per_token, full, t_full, decoding, t_dec, per_sequence, p_mix
    )
    _open_loop_fixed_point(
        s, demand, work, slots, t_mean, p_mix, before, (chord_mean, chord_mix), known_mix, known_dec,
        (decoding, per_mixed, t_mix, t_dec, gpu_mix, gpu_dec, p_mix, t_mean),
    )  # fmt: skip
    # The iteration time's slopes at the operating point: per decoding sequence (the secant to the
    # full batch scored first, else the secant across the batch's Poisson swing above it, sqrt(n)
    # sequences) and per prompt (the mixed iteration over the decode-only one, per token, times the
    # prompt's uncached tokens). Not the chord from one sequence: an MoE's decode iteration is
    # concave in its sequences where DP x n x top-k tokens wake its experts (DeepSeek-V3 TP1 DP8
    # EP8 on H200s under SGLang, a rank's iteration: 20.7 ms at 1 sequence, 31.5 at 4.5, 36.0 at
    # 10), and the chord's 3.05 ms a sequence at 4 req/s (4.5 decoding) overstated the swings'
    # variance and their covariance with the iteration: TPOT 1.16x tuner simulate's (1.05x now).
    near = np.abs(decoding - full) >= 1.0
    swing = np.flatnonzero(~near)
    above = np.zeros(n)
    t_above = t_dec.copy()
    if len(swing):
        above[swing] = decoding[swing] + np.maximum(np.sqrt(decoding[swing]), 1.0)
        t_above[swing] = s.take(swing).iteration(above[swing], zeros[swing])
    per_sequence = np.where(
        near,
        (t_dec - t_full) / np.where(near, decoding - full, 1.0),
        (t_above - t_dec) / np.maximum(above - decoding, 1.0),
    )
    per_sequence = np.maximum(per_sequence, 0.0)
    per_prompt = np.maximum(t_mix - t_dec, 0.0) / np.maximum(per_mixed, 1e-9) * uncached
    # Where the batch's swings cross the kink of max(GPU, host) the mean iteration and its slope
    # are those over the swings, not at the mean batch (_across_the_host_kink).
    kink = _across_the_host_kink(
        s,
        slots,
        decoding,
        per_mixed,
        t_dec,
        t_mix,
        t_mean,
        p_mix,
        per_sequence,
        per_prompt,
        full,
        t_full,
        gpu_dec,
        gpu_mix,
    )
    per_sequence, decoding, t_dec, t_mix, t_mean, p_mix, kink_n = kink
    budget = s.prefill_budget(decoding)
    # The prompt tokens an iteration must prefill over what a mixed one holds: the mixed share
    # when the budget binds (p x budget = work x t_mean above), and 1 or more where every
    # iteration is mixed and the prompts still come faster (work x t_mix' >= budget).
    utilisation = rate * uncached * t_mean / budget
    own_prefill = np.ceil(uncached / np.maximum(budget, 1.0) - 1e-9)
    host_load = rate * host_seconds_per_request(s.overheads, own_prefill, gen)
    stable = (utilisation < 1.0) & (rate * (gen - 1.0) * t_mean < cap.slots) & (host_load < 1.0)
    # (The slot system's own bound, on the whole residence, is applied below with its wait.)
    # Past capacity: no slot count helps where the prefill cannot keep up (unless the token budget
    # caps the slots: the same budget runs out either way), nor where the host cannot.
    starved = ~stable & (utilisation >= 1.0) & (cap.limited_by != "max_num_tokens")
    limited_by = np.where(starved, "prefill", cap.limited_by)
    limited_by = np.where(host_load >= 1.0, "host", limited_by).astype(_LIMIT_DTYPE)
    rho = np.clip(utilisation, 0.0, 0.999)
    # A request lands in an iteration with probability in proportion to its length (the inspection
    # paradox): it waits E[t^2] / (2 E[t]) for it to end, not half the mean (vLLM at 26/s on 8 H100s,
    # 1024/128 tokens: 12% of iterations mixed at 22 ms, the rest decode-only at 3 ms: 6.3 ms, not 2.6).
    var_n, cov_nk, var_k = _load_fluctuation(rate, gen, t_mean, decoding, per_sequence, per_prompt)
    # A decoding request sees the iterations in proportion to the sequences decoding in them: its
    # mean iteration is E[n t] / E[n] = t_mean + Cov(n, t) / E[n], and a swing up in the batch
    # (more sequences, more prompts) is a run of longer iterations (Little's law in time: the
    # time-average batch is E[n] + Cov(n, t) / t_mean).
    cov_nt = per_sequence * var_n + per_prompt * cov_nk
    tpot_seen = t_mean + np.where(decoding > 0.0, cov_nt / np.maximum(decoding, 1e-9), 0.0)
    # A request lands in an iteration with probability in proportion to its length (the inspection
    # paradox): it waits E[t^2] / (2 E[t]) for it to end, not half the mean (vLLM at 26/s on 8 H100s,
    # 1024/128 tokens: 12% of iterations mixed at 22 ms, the rest decode-only at 3 ms: 6.3 ms, not 2.6).
    # E[t^2]: the two kinds of iteration, the Poisson count of prompts in a mixed one (whole prompts
    # below the budget: 1 + Poisson(m - 1) for m a mixed iteration's mean), and the batch's swings
    # (the decode count, and the prompts' count beyond Poisson).
    within_mixed = np.where(
        per_mixed < budget, p_mix * np.maximum(per_mixed / np.maximum(uncached, 1e-9) - 1.0, 0.0), 0.0
    )
    swings = per_sequence**2 * var_n + 2.0 * per_sequence * per_prompt * cov_nk
    # The prompts' count varies by as much as the two kinds of iteration and the Poisson count in a
    # mixed one say, or by Var(K) where that is more (the Markov chain's mixed runs are the same
    # feedback: counting both overshot, Llama-3-70B at 8.2/s a residual of 74 ms, simulated 60).
    prompts_mixed = per_mixed / np.maximum(uncached, 1e-9)
    var_k_kinds = p_mix * (1.0 - p_mix) * prompts_mixed**2 + within_mixed
    swings = swings + per_prompt**2 * np.maximum(var_k - var_k_kinds, 0.0)
    second_moment = p_mix * t_mix**2 + (1.0 - p_mix) * t_dec**2 + per_prompt**2 * within_mixed + swings
    residual = second_moment / (2.0 * np.maximum(t_mean, 1e-30))
    # Its own iteration holds its prompt and the others that arrived during the one it landed in,
    # Poisson with mean R E[t^2] / E[t] = 2 R residual (not a mixed iteration's mean: the ones
    # landed in are the long ones), at most the budget, and the batch's time-average decode count.
    # (Llama-3-8B on one H100, TensorRT-LLM, 1024/128 tokens, 30/s: 2.8 prompts against a mixed
    # iteration's mean 2.1, each 21 ms.)
    own_tokens = np.minimum(uncached * (1.0 + 2.0 * rate * residual), budget)
    t_own = t_dec + (t_mix - t_dec) * own_tokens / np.maximum(per_mixed, 1e-9)
    t_own = t_own + per_sequence * cov_nt / np.maximum(t_mean, 1e-30)
    # A chunked prompt's iterations: full ones, then the last holding its rest and the prompts that
    # arrived during the iteration it landed in and its full ones (FCFS: the next in line take the
    # budget it leaves; Llama-3-8B under vLLM, a 512-token budget, 2048/256 tokens, 5.8/s: without
    # them the last read a decode-sized iteration, TTFT 0.83x the simulation's, with them 0.85x as
    # with ceil(P / budget) full ones), on the same chord (chunked_prefill_s).
    full, rest = prompt_chunks(uncached, budget)

    def prefill_seconds(others_tokens: np.ndarray, full_s: np.ndarray) -> np.ndarray:
        last_tokens = np.minimum(rest + others_tokens + uncached * rate * full * full_s, budget)
        last_s = t_dec + (t_mix - t_dec) * last_tokens / np.maximum(per_mixed, 1e-9)
        last_s = last_s + per_sequence * cov_nt / np.maximum(t_mean, 1e-30)
        return chunked_prefill_s(full, rest, full_s, np.where(full > 0.0, last_s, full_s))

    prefill_s = prefill_seconds(uncached * 2.0 * rate * residual, t_own)
    # The wait for the prefill budget behind the prompts ahead: M/D/1 (Pollaczek-Khinchine with a
    # deterministic service) at the budget's utilisation, the budget's tokens served an iteration,
    # so a prompt's service is t_mix x its tokens over the budget's: a share of an iteration where
    # a budget holds several prompts (7.9 for 1024-token prompts in TensorRT-LLM's 8192, where a
    # whole iteration each overstated the wait: with the request's own iteration counting the
    # others landed with it, Llama-3-70B at 8.2/s read 1.10x the simulated TTFT), one where it
    # holds one, several where a chunked prompt spans several (Llama-3-8B under vLLM, a 512-token
    # budget, 2048/256 tokens, 5.8/s: one iteration each read 0.82x the simulated TTFT, 0.88x then,
    # 0.85x on 2026-12-06 after the refits).
    queue_s = rho / (2.0 * (1.0 - rho)) * t_mix * uncached / np.maximum(budget, 1.0)
    ttft = residual + queue_s + prefill_s + s.overheads.request_overhead_s
    # Percentiles (:mod:`cost_models.ttft_percentiles`). A request lands in a mixed iteration with
    # probability p t_mix / t_mean (size-biased) and a decode-only one otherwise: two laws, not one
    # (a few requests wait out a long prefill iteration and take the prompts that came during it
    # into their own: the heavy upper tail the simulation shows, which one gamma law of the mean's
    # variance put at 0.64-0.83x the simulated p99). In each, a gamma law of: the rest of the
    # iteration landed in (uniform over it, L / 2 and L^2 / 12), the M/G/1 wait for the budget (the
    # service lognormal where prompts spread), the others' prompts that arrived during it (Poisson,
    # R L, a prompt's time each) in its own iterations, the batch's swings (Var(n) sequences,
    # :func:`_load_fluctuation`, ``per_sequence`` each) and its own prompt's length (its prefill
    # in proportion: a whole iteration's worth per chunk where chunked).
    cv2 = lognormal_cv2(w.prompt_len, w.prompt_len_std)
    service_s = t_mix * uncached / np.maximum(budget, 1.0)
    per_own_prompt = np.maximum(t_mix - t_dec, 0.0) * uncached / np.maximum(per_mixed, 1e-9)
    common_var = (
        md1_wait_variance(queue_s, rho, service_s, cv2)
        + (own_prefill * per_sequence) ** 2 * var_n
        + cv2 * np.where(own_prefill > 1.0, prefill_s, per_own_prompt) ** 2
    )
    overhead = s.overheads.request_overhead_s
    land_mixed = np.clip(p_mix * t_mix / np.maximum(t_mean, 1e-30), 0.0, 1.0)
    laws = []
    mixed_var = per_prompt**2 * var_k
    gamma = np.clip(rate * per_prompt, 0.0, 0.99)
    prompt_wait = gamma * per_prompt / (2.0 * (1.0 - gamma))
    common_var = common_var + md1_wait_variance(prompt_wait, gamma, per_prompt, cv2)
    for weight, landed, landed_var in ((land_mixed, t_mix, mixed_var), (1.0 - land_mixed, t_dec, 0.0 * t_dec)):
        room = np.maximum(budget / np.maximum(uncached, 1e-9) - 1.0, 0.0)
        others = np.minimum(rate * landed, room)
        own_s = t_dec + (t_mix - t_dec) * np.minimum(uncached * (1.0 + others), budget) / np.maximum(per_mixed, 1e-9)
        own_s = own_s + per_sequence * cov_nt / np.maximum(t_mean, 1e-30)
        mean = landed / 2.0 + queue_s + prefill_seconds(uncached * others, own_s)
        slope = own_prefill * per_own_prompt
        var = (
            landed**2 / 12.0
            + landed_var / 3.0
            + slope**2 * (others + np.where(rate * landed < room, rate**2 * landed_var, 0.0))
            + slope * rate * landed_var
            + common_var
        )
        laws.append((weight, mean, var))
    # A request of one output token has no time per output token: its only token is the first
    # (vLLM's benchmark counts a request's TPOT only where output_len > 1, vllm/benchmarks/serve.py
    # calculate_metrics; tuner simulate leaves it out the same way). TPOT 0, as the closed loop and
    # the disaggregated pools report it: the mean iteration here was scored as a TPOT (Llama-3-70B
    # fp8 on H100s at 10/s, 2048/1 tokens: 11.3 ms and more under vLLM, 11.7 under TensorRT-LLM),
    # and tuner recommend refused every aggregated plan against a --max-tpot-s of 10 ms that no
    # token of theirs is timed by, while its disaggregated plans reported 0.
    tpot = np.where(gen > 1.0, tpot_seen, 0.0)
    # In the engine from its admission (its own prefill iterations) to its last token: not the
    # wait for the iteration it landed in, nor the time outside the engine (request_overhead_s).
    in_engine = rate * (prefill_s + (gen - 1.0) * tpot)
    peakedness = np.maximum(var_n / np.maximum(decoding, 1e-9), 1.0)
    slot_wait = _slot_wait(in_engine, cap.slots, prefill_s + (gen - 1.0) * tpot, w.gen_len, w.gen_len_std, peakedness)
    stable = stable & (in_engine < SLOT_UTILISATION_LIMIT * cap.slots)
    ttft = ttft + slot_wait.mean_s
    running = np.where(stable, np.minimum(in_engine, cap.slots), cap.slots)
    # The batch's upper tail: past the host's kink the swings' gain is the host's slope, not the
    # mean one, so where the 99.9th percentile passes the kink the tail is the host's (a swing's
    # reach is set by the dynamics where it goes). Llama-3-8B on 8 H100s under vLLM (1024/128) at
    # 33.75 req/s: the mean slope's tail read 251 of its 256 slots, unflagged, where the
    # simulation reached them in 2 of 3 seeds and its TTFT ran up to 1.23x the steady state's
    # (20,000 requests); the host's reads more, and the note says so. Where the host's slope is
    # the shallower (the GPU's steeper: kink_n infinite) nothing changes.
    # The running batch is a count whose swings are skewed up (a processor-sharing queue's number
    # in system is negative binomial, Kelly's symmetric queues; a gamma law is its continuous
    # twin): Llama-3-8B on one H100 under TensorRT-LLM at 30/s, 1024/128 tokens, a mean of 207
    # and a variance of 3,600, has a 99.9th percentile of 444 by gamma_quantile (443 by the exact
    # gamma law), where the normal law puts 393 (its KV cache holds 426 such sequences; the
    # simulation of 20,000 requests at 30.15/s filled 97.5% of its blocks).
    # The percentiles only where _result reports them (a stable steady state that fits, as it
    # tests; the slot system's bound included): elsewhere it reports infinite percentiles, and
    # the bisection's rows are independent (20% of bench_serving's open loops unstable: 0.105 ->
    # ~0.085 s a call).
    reported = np.flatnonzero(stable & cap.fits & (cap.max_concurrency >= 1))
    ttft_tail = _ttft_tail_with_slot_wait(n, reported, laws, slot_wait, overhead)
    past_kink = kink_n < gamma_quantile(decoding, var_n, _P999_Z)
    var_tail = var_n
    if np.any(past_kink):
        host_slope = np.full(len(rate), s.overheads.host_per_sequence_s)
        var_host, _, _ = _load_fluctuation(rate, gen, t_mean, decoding, host_slope, per_prompt)
        var_tail = np.where(past_kink, np.maximum(var_n, var_host), var_n)
    return _result(
        s,
        cap,
        stable=stable,
        ttft=ttft,
        ttft_tail=ttft_tail,
        tpot=tpot,
        requests=np.where(stable, rate, 0.0),
        running=running,
        running_p999=np.where(stable, gamma_quantile(running, var_tail, _P999_Z), cap.slots),
        queued=np.where(stable, 0.0, np.inf),
        p_mix=p_mix,
        per_mixed=per_mixed,
        t_mix=t_mix,
        t_dec=t_dec,
        tpot_variance=open_loop_tpot_variance(rate, t_mean, per_sequence, per_prompt, gen, w.gen_len_std),
        limited_by=limited_by,
    )
