"""One deployment under load, by names: the ``serving`` object of ``tuner estimate --json``.

Validates the load and the engine knobs, checks that one sequence fits at all, scores the steady
state (:func:`cost_models.serving.serve`, with the engine's overheads), and says in plain words
what bounds it: clients that queue for the KV cache or the batch, the highest open-loop rate the
deployment sustains when asked for more.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from cost_models.calibration import CalibrationProfile, serving_engine
from cost_models.deployment import Overlap
from cost_models.deployments import Deployment, Deployments, check_engine_kv_block_size, engine_problem_mask
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, get_hardware
from cost_models.input_ranges import REQUEST_RATE_PER_S_RANGE
from cost_models.models import ModelSpec, get_model
from cost_models.serving import (
    NO_OVERHEADS,
    RUNNING_P999_MARGIN,
    ServingEstimate,
    ServingWorkloads,
    _memory,
    engine_overheads,
    make_workloads,
    near_capacity,
    refuse_sglang_out_of_memory,
    refuse_unmixed_sglang,
    serve,
    serving_report,
    spread_context_notes,
)
from cost_models.topology import domain_size

#: The fix :func:`cost_models.serving.refuse_unmixed_sglang` names for the commands' flags
#: (tuner estimate and simulate; a study's spec names serving.chunked_prefill instead).
UNMIXED_SGLANG_FLAG_FIX = "drop --no-chunked-prefill, or pass --backend vllm or trtllm"

#: Engine knobs a ``serving`` report names (``serving.engine``), beside the backend.
ENGINE_KNOBS: tuple[str, ...] = ("max_batch_size", "max_num_tokens", "chunked_prefill", "kv_block_size")
#: Open-loop rates tried (as shares of the rate asked for) when looking for the highest stable one.
_RATE_GRID = 48
#: :func:`max_stable_rate`'s linear passes narrow the gap between the last stable and the first
#: unstable rate to this share of the rate (each pass 47-fold: from the geometric grid's step,
#: 0.26 x the rate, 4 passes), and run at most ``_EDGE_PASSES``. Not to the last bit: a row's
#: numbers may differ in their last bits with the rows served beside it (the merged and pairwise
#: sums of :func:`cost_models.serving._both_iterations`), so a rate within ~1e-15 of the edge
#: may read stable in one call and not in another. 1e-6, not 1e-9: 4 passes, not 6 (an unstable
#: 70B fp8 TP4 vLLM report, simulate_one with 10 requests: 0.61 s, 0.76 s at 1e-9, 0.36-0.42 s
#: with the one pass before; one core of the AMD EPYC VM at load 3.7, 2026-12-06).
_EDGE_RELATIVE = 1e-6
_EDGE_PASSES = 8


def max_stable_rate(
    deployment: Deployments,
    workloads: ServingWorkloads,
    *,
    calibration: CalibrationProfile | None = None,
    overlap: Overlap = "overlapped",
) -> float:
    """The highest open-loop request rate (requests/s) deployment 0 sustains under workload 0's
    engine and lengths, every lower rate sustained too: vectorized passes of :func:`serve` over
    a geometric grid below the workload's rate (which must be unstable), then linear grids between
    the last stable and the first unstable rate of the pass before, until the two are within
    :data:`_EDGE_RELATIVE` of each other (so a rate above the result by more than that, up to the
    next unstable island's edge, reads unstable). 0.0 where no rate is stable. (Near the host's admission
    limit the steady state's stability is not monotone in the rate: Llama-3-8B on one H100,
    1024/128 tokens, the shipped TensorRT-LLM fit: stable to 31.0/s, not at 31.1-33.0/s, stable
    again at 33.1-35.9/s; the last stable rate of the grid would be the island's edge. On
    2026-12-06 that deployment has no island over 30-37/s: its edge is 31.77/s. A rate above the
    result reads stable only on such an island.)"""
    rate = float(workloads.request_rate[0])
    d1, w1 = deployment.take(np.zeros(1, dtype=int)), workloads.take(np.zeros(1, dtype=int))

    def stable(rates: np.ndarray) -> np.ndarray:
        index = np.zeros(len(rates), dtype=int)
        grid = replace(w1.take(index), request_rate=rates, concurrency=np.full(len(rates), np.nan))
        return serve(d1.take(index), grid, calibration=calibration, overlap=overlap).stable

    coarse = rate * np.geomspace(1e-6, 1.0, _RATE_GRID)
    ok = stable(coarse)
    if not ok[0]:
        # A rate over a million times what the engine sustains (--request-rate 1e9 on one H100:
        # 1,000 req/s, the grid's foot, unstable too): search again below the foot, down to the
        # lowest rate a study or command takes; 0.0 only where none of that is stable.
        if coarse[0] <= REQUEST_RATE_PER_S_RANGE[0]:
            return 0.0
        return max_stable_rate(
            deployment, replace(w1, request_rate=coarse[:1]), calibration=calibration, overlap=overlap
        )
    last = int(np.argmin(ok)) - 1 if not np.all(ok) else _RATE_GRID - 1  # before the first unstable
    low, high = coarse[last], coarse[min(last + 1, _RATE_GRID - 1)]
    # Linear passes between the last stable rate and the first unstable one until they are within
    # _EDGE_RELATIVE of each other: the edge, whatever rate was asked for. One pass (a step of 0.5%
    # of the rate asked) read Llama-3-70B fp8 on 4 H100s under vLLM (2048/256 tokens) at 6.81-6.85/s
    # as its asked rate ran 6.85-6.95/s, where 6.84/s was reported stable (its edge: 6.845/s).
    for _ in range(_EDGE_PASSES):
        if high - low <= _EDGE_RELATIVE * high:
            break
        fine = np.linspace(low, high, _RATE_GRID)
        fine_ok = stable(fine)
        if np.all(fine_ok):  # the top of the grid is the asked rate, which is unstable
            return float(fine[-1])
        first = int(np.argmin(fine_ok))  # >= 1: low was stable in the pass before
        low, high = fine[first - 1], fine[first]
    return float(low)


def serving_one(
    deployment: Deployment,
    *,
    profile: CalibrationProfile | None,
    engine: str,
    overlap: Overlap = "overlapped",
    concurrency: int | None = None,
    request_rate: float | None = None,
    prompt_len_std: float = 0.0,
    gen_len_std: float | None = None,
    max_batch_size: int | None = None,
    max_num_tokens: int | None = None,
    chunked_prefill: bool | None = None,
    kv_block_size: int | None = None,
    prefix_hit_rate: float = 0.0,
    memory_fraction: float | None = None,
) -> dict[str, Any]:
    """One deployment under load (its prompt and gen lengths; its batch is not used): the
    ``serving`` object of ``tuner estimate --json``. The keys of :data:`SERVING_KEYS`, plus
    ``engine`` (the knobs in force), ``load``, ``limited_by`` (what bounds ``max_concurrency``, or
    what an open loop past capacity ran out of: :data:`cost_models.serving.LIMITS`),
    ``max_stable_request_rate`` (open loop past capacity, else None) and ``notes`` (one line each
    on queued clients and instability). Raises :class:`InvalidInputError` for bad knobs and for a
    sequence whose KV cache cannot fit at all (naming --prompt-len/--gen-len)."""
    check_engine_kv_block_size(engine, kv_block_size)
    workloads = make_workloads(
        backend=engine,
        concurrency=concurrency,
        request_rate=request_rate,
        prompt_len=deployment.prompt_len,
        gen_len=deployment.gen_len,
        prompt_len_std=prompt_len_std,
        gen_len_std=gen_len_std,
        max_batch_size=max_batch_size,
        max_num_tokens=max_num_tokens,
        chunked_prefill=chunked_prefill,
        kv_block_size=kv_block_size,
        prefix_hit_rate=prefix_hit_rate,
        memory_fraction=memory_fraction,
        data_parallel=deployment.data_parallel,
    )
    refuse_unmixed_sglang(workloads, "chunked_prefill", UNMIXED_SGLANG_FLAG_FIX)
    d = Deployments.from_rows([deployment])
    _check_fits(deployment, workloads, d)
    overheads = engine_overheads(profile.backend) if profile is not None else NO_OVERHEADS
    result = serve(d, workloads, calibration=profile, overlap=overlap, overheads=overheads)
    report = serving_report(result)
    row = workloads.row(0)
    limited_by = str(result.limited_by[0])
    max_rate, notes = load_notes(d, workloads, result, calibration=profile, engine=engine, overlap=overlap)
    return {
        **report,
        "limited_by": limited_by,
        "running_p999": float(result.running_p999[0]) if np.isfinite(result.running_p999[0]) else None,
        "max_stable_request_rate": max_rate,
        "engine": {"backend": engine, **{k: row[k] for k in (*ENGINE_KNOBS, "memory_fraction", "prefix_hit_rate")}},
        "overheads": overheads.to_dict(),
        "load": {
            "concurrency": concurrency,
            "request_rate": request_rate,
            "prompt_len": deployment.prompt_len,
            "gen_len": deployment.gen_len,
            "prompt_len_std": row["prompt_len_std"],
            "gen_len_std": row["gen_len_std"],
        },
        "notes": notes,
    }


def _holder(limited_by: str, row: dict[str, Any]) -> str:
    """What holds the running sequences at ``max_concurrency``, in words ('' for the prefill)."""
    return {
        "kv_cache": "the KV cache holds",
        "max_batch_size": "max_batch_size runs at most",
        # serving.token_limit: the decode tokens and the prompts that replace them share the budget
        "max_num_tokens": f"max_num_tokens {row['max_num_tokens']} keeps decoding about",
    }.get(limited_by, "")


def load_notes(
    deployments: Deployments,
    workloads: ServingWorkloads,
    result: ServingEstimate,
    index: int = 0,
    *,
    calibration: CalibrationProfile | None,
    engine: str,
    overlap: Overlap = "overlapped",
) -> tuple[float | None, list[str]]:
    """The lines ``tuner estimate`` and ``tuner simulate`` both print on a steady state (row
    ``index``, scored with the calibration's engine's host costs): host costs borrowed from another
    engine's fit, clients queueing for the running batch, an open loop past capacity (with the
    highest rate it sustains, else None)."""
    notes: list[str] = []
    overheads = engine_overheads(calibration.backend) if calibration is not None else NO_OVERHEADS
    if overheads.borrowed:
        notes.append(
            f"{calibration.backend if calibration else engine} has no measured serving runs here: its host "
            f"overheads are {overheads.backend}'s fit ({overheads.fitted_on})"
        )
    concurrency, limit = workloads.concurrency[index], int(max(result.max_concurrency[index], 0.0))
    if np.isfinite(concurrency) and int(concurrency) > limit:
        holder = _holder(str(result.limited_by[index]), workloads.row(index))
        clients = int(concurrency)
        notes.append(f"{clients} clients queue: {holder} {limit} sequences at once ({clients - limit} wait)")
    max_rate = None
    if not np.isfinite(concurrency) and not result.stable[index]:
        max_rate, note = unstable_note(deployments, workloads, result, index, calibration=calibration, overlap=overlap)
        notes.append(note)
    elif not np.isfinite(concurrency) and near_capacity(result.running_p999[index], result.max_concurrency[index]):
        notes.append(swings_note(workloads, result, index))
    model = deployments.models[int(deployments.model_index[index])]
    notes += spread_context_notes(model.max_context, model.name, workloads, index)
    return max_rate, notes


def swings_note(
    workloads: ServingWorkloads, result: ServingEstimate, index: int = 0, *, disaggregated: bool = False
) -> str:
    """An open loop whose running batch, stable on average, swings up to its cap
    (:func:`cost_models.serving.near_capacity`: ``running_p999``, within its measured error, reaches
    ``max_concurrency``): the line saying the means leave out the waits (and, where the KV cache
    is the cap, the preemptions) the swings bring. Where the percentile itself is under the cap the
    line says it is within that error. ``disaggregated``: the decode pool's batch; `tuner
    simulate` runs aggregated deployments only, so the line names what does run on disaggregated
    pools (tuner estimate with more decode instances or a lower rate, until the note goes)."""
    limited_by = str(result.limited_by[index])
    holder = _holder(limited_by, workloads.row(index))
    limit = int(max(result.max_concurrency[index], 0.0))
    preempted = ", sequences are preempted and recomputed when the KV cache fills" if limited_by == "kv_cache" else ""
    p999 = float(result.running_p999[index])
    within = (
        f", within the {RUNNING_P999_MARGIN:.1%} by which that estimate has come out under tuner simulate's"
        if p999 < float(result.max_concurrency[index])
        else ""
    )
    return (
        f"near capacity: the running batch swings with the arrivals (mean {float(result.running[index]):.0f}, "
        f"99.9th percentile about {p999:.0f} sequences{within}) up to its cap ({holder} "
        f"{limit}): now and then requests wait for a slot (its mean wait is in TTFT, an M/G/c estimate)"
        f"{preempted}, and TTFT and TPOT can run above these means"
        + (
            # No simulation of disaggregated pools exists to say by how much (docs/serving.md).
            " (tuner simulate has no disaggregated mode to say by how much: run tuner estimate again with "
            "more --decode-instances or a lower --request-rate until this note goes)"
            if disaggregated
            else " (on the flagged loads of docs/serving.md's percentile table TTFT's mean came to 0.35-1.12x "
            "tuner simulate's; tuner "
            "simulate shows by how much)"
        )
    )


def unstable_note(
    deployments: Deployments,
    workloads: ServingWorkloads,
    result: ServingEstimate,
    index: int = 0,
    *,
    calibration: CalibrationProfile | None,
    overlap: Overlap = "overlapped",
) -> tuple[float, str]:
    """An open loop past capacity (row ``index`` of ``result``, unstable): the highest rate it
    sustains (:func:`max_stable_rate`, scored with the calibration's engine's host costs, as
    ``result``) and the line saying why, as ``tuner estimate`` and ``tuner simulate`` print it."""
    one = np.array([index])
    d, w = deployments.take(one), workloads.take(one)
    limited_by = str(result.limited_by[index])
    max_rate = max_stable_rate(d, w, calibration=calibration, overlap=overlap)
    if limited_by == "prefill":
        why = "prompts arrive faster than the mixed iterations prefill them"
    elif limited_by == "host":
        why = (
            "the engine's host work, each request's set-up and its scheduling in every iteration it runs in, "
            "would take longer than the time there is"
        )
    else:
        why = f"more sequences would decode than {_holder(limited_by, w.row(0))} {int(result.max_concurrency[index])}"
    rate = float(w.request_rate[0])
    return max_rate, (
        f"unstable: {rate:g} req/s is beyond capacity ({why}; the queue grows without bound); "
        + (
            f"the highest sustainable rate is about {max_rate:.3g} req/s"
            if max_rate > 0.0
            else f"no rate down to {REQUEST_RATE_PER_S_RANGE[0]:g} req/s is sustainable"
        )
    )


def _check_fits(deployment: Deployment, workloads: ServingWorkloads, d: Deployments) -> None:
    """One sequence of the workload must fit beside the weights: else an error naming the field."""
    memory = _memory(d, workloads, "decode")
    tokens = deployment.prompt_len + deployment.gen_len
    free, per_token = float(memory.free[0]), float(memory.kv_per_token[0])
    gb = 1e9  # GB = 1e9 bytes, as every table prints memory
    refuse_sglang_out_of_memory(d, workloads)
    if free <= 0:
        engine = str(workloads.engine[0])
        # SGLang's static share holds the weights and the cache; activations run outside it.
        charged = "weights" if engine == "sglang" else "weights and activations"
        smaller = " or" if engine == "sglang" else " a smaller --max-num-tokens or"
        raise InvalidInputError(
            "memory",
            f"{charged} leave no KV cache on {deployment.hardware.name} under {engine}'s memory fraction "
            f"({float(memory.weights[0]) / gb:.1f} GB of weights per chip, {-free / gb:.1f} GB short)",
            f"use more chips, fewer weight bits,{smaller} a larger --memory-fraction",
        )
    if free < per_token * tokens:
        most = int(free // per_token)
        raise InvalidInputError(
            "prompt_len",
            f"one sequence of {deployment.prompt_len} + {deployment.gen_len} tokens needs "
            f"{per_token * tokens / gb:.2f} GB of KV cache per chip; {free / gb:.2f} GB is free "
            f"(at most {most:,} tokens)",
            "shorten --prompt-len/--gen-len, or use more chips or fewer --kv-bits",
        )


#: Each engine's name for its memory knob (cost_models.serving.kv_budget_bytes: what it is a share of).
_MEMORY_KNOB = {
    "vllm": "gpu_memory_utilization",
    "sglang": "mem_fraction_static",
    "trtllm": "free_gpu_memory_fraction",
    "jax": "memory fraction (vLLM's rule)",
}


def deployment_of_report(
    report: dict, model: ModelSpec, chip: HardwareSpec, *, batch: int, **fields: Any
) -> Deployment:
    """The one-stage deployment a ``tuner estimate`` report describes (its mesh, EP and DP,
    layouts, formats and attention), at ``batch`` and the given ``fields`` (lengths, kv_heads,
    block)."""
    mesh = tuple(int(a) for a in report["mesh"].split("x"))
    return Deployment(
        model=model,
        hardware=chip,
        mesh=(mesh[0], mesh[1], mesh[2]),
        batch=batch,
        prefill_ffn_layout=report["ffn_layout"]["prefill"],
        decode_ffn_layout=report["ffn_layout"]["decode"],
        prefill_attn_sharding=report["attn_sharding"]["prefill"],
        decode_attn_sharding=report["attn_sharding"]["decode"],
        weight_dtype=report["weight_dtype"],
        act_dtype=report["act_dtype"],
        kv_dtype=report["kv_dtype"],
        flash_attention=report["flash_attention"],
        **{"expert_parallel": report["parallel"]["ep"], "data_parallel": report["parallel"]["dp"], **fields},
    )


#: The engine degrees the serving model does not charge under a load (``tuner estimate`` charges
#: them without one): pipelines and micro-batches (cost_models.serving.rank_view_and_degrees).
UNSERVED_DEGREES: tuple[str, ...] = ("pp", "micro_batches")


def unserved_degree_error(field: str) -> InvalidInputError:
    """The refusal of a pipeline (or micro-batches) under a load, ``tuner estimate``'s and
    ``tuner simulate``'s alike."""
    return InvalidInputError(
        field,
        "the serving model charges tensor, expert and data parallelism only",
        "drop --pp/--micro-batches here (replicas: one at --request-rate R/k, or tuner recommend)",
    )


def engine_memory_notes(
    model: str | ModelSpec, hardware: str | HardwareSpec, report: dict, backend: str | None = None
) -> list[str]:
    """What to tell a user whose static estimate (``report``: :func:`estimate_one`'s) fits the
    chip's whole memory but not the engine's: the static ``fits`` counts every byte of the chip,
    while each engine gives weights, activations and KV cache only its memory knob's share
    (:func:`cost_models.serving.kv_budget_bytes`; DeepSeek-V3 in fp8 on 8 H100s, 84.2 GB of weights a
    GPU of 85.5, fits the chip and is 7.4 GB past vLLM's 0.9). One sequence of the report's prompt
    and generated tokens must fit the engine's KV cache at its default knobs, as under a load
    (:func:`_check_fits`). GPUs only, one tensor-parallel group (the serving model's)."""
    chip = hardware if isinstance(hardware, HardwareSpec) else get_hardware(hardware)
    parallel = report["parallel"]
    single = all(parallel[name] == 1 for name in ("pp", "ep", "dp", "micro_batches"))
    if chip.kind != "gpu" or not single or not report["memory"]["fits"]:
        return []
    engine = serving_engine(backend or report["calibration"].get("backend"), None, chip)
    row = deployment_of_report(
        report,
        model if isinstance(model, ModelSpec) else get_model(model),
        chip,
        batch=1,
        prompt_len=report["prompt_len"],
        gen_len=report["gen_len"],
        kv_heads=report["kv_heads"],
        block=report["block"],
    )
    workloads = make_workloads(backend=engine, concurrency=1, prompt_len=row.prompt_len, gen_len=row.gen_len)
    memory = _memory(Deployments.from_rows([row]), workloads, "decode")
    free, per_token = float(memory.free[0]), float(memory.kv_per_token[0])
    if free >= per_token * (row.prompt_len + row.gen_len):
        return []
    knob = f"{_MEMORY_KNOB.get(engine, 'memory fraction')} {float(workloads.memory_fraction[0]):g}"
    held = f"{free / 1e9:.1f} GB of KV cache, {int(free // per_token):,} tokens" if free > 0 else "no KV cache"
    return [
        f"fits the chip's {chip.memory_bytes / 1e9:.1f} GB, but {engine} at its default {knob} leaves {held} "
        f"per chip beside {float(memory.weights[0]) / 1e9:.1f} GB of weights: not one sequence of "
        f"{row.prompt_len + row.gen_len} tokens, so the engine does not serve it; add --concurrency C for its sizing"
    ]


#: The ``serve`` keywords of :func:`estimate_serving_one` (the engine knobs and the load's spread).
SERVING_OPTIONS: tuple[str, ...] = (
    "prompt_len_std",
    "gen_len_std",
    "max_batch_size",
    "max_num_tokens",
    "chunked_prefill",
    "kv_block_size",
    "prefix_hit_rate",
    "memory_fraction",
)


def estimate_serving_one(
    model: str | Any,
    hardware: str | Any,
    *,
    chips: int,
    prompt_len: int,
    gen_len: int,
    concurrency: int | None = None,
    request_rate: float | None = None,
    batch: int | None = None,
    backend: str | None = None,
    calibration: str | CalibrationProfile | None = "auto",
    overlap: Overlap = "overlapped",
    serving: dict[str, Any] | None = None,
    **static: Any,
) -> dict[str, Any]:
    """``tuner estimate`` under load: the :func:`~cost_models.deployment.estimate_one` object
    with a ``serving`` object (:func:`serving_one`). ``serving``: the engine knobs and length
    spreads (:data:`SERVING_OPTIONS`; None = the engine's defaults); ``static``: the other
    keywords of ``estimate_one`` (mesh, layouts, formats, ...).

    The static prefill/decode sections are scored at ``batch`` when given, else at the running
    batch of the serving steady state (closed loop: min(concurrency, max concurrency); open
    loop: the mean running sequences; at least 1). Without ``mesh`` the mesh is the fastest
    fitting one for the static phases at the first guess of that batch (min(concurrency,
    max_batch_size), or 1 for a rate) and is then kept; the report names it.
    """
    from cost_models.calibration import resolve_calibration
    from cost_models.deployment import check_fit, estimate_one, heads_split_error
    from cost_models.hardware import get_hardware
    from cost_models.models import get_model

    options = dict(serving or {})
    unknown = set(options) - set(SERVING_OPTIONS)
    if unknown:
        raise InvalidInputError(
            "serving", f"unknown option {sorted(unknown)[0]!r}", f"use {', '.join(SERVING_OPTIONS)}"
        )
    model_spec = get_model(model) if isinstance(model, str) else model
    chip = get_hardware(hardware) if isinstance(hardware, str) else hardware
    if model_spec.kind == "encoder":
        raise InvalidInputError(
            "serving",
            f"{model_spec.name} is an encoder: it generates no tokens to serve",
            "drop --concurrency/--request-rate",
        )
    profile = resolve_calibration(calibration, chip, backend)
    engine = serving_engine(backend, profile, chip)
    # Validate the load and knobs first: a bad --concurrency is named before any static check.
    # Under DP each rank runs its own scheduler over 1/DP of the clients (cost_models.serving.serve):
    # the first guess is DP x a rank's running batch, which splits evenly over the ranks.
    dp = int(static.get("dp") or 1)
    asked = make_workloads(
        backend=engine,
        concurrency=concurrency,
        request_rate=request_rate,
        prompt_len=prompt_len,
        gen_len=gen_len,
        **options,
        data_parallel=dp,
    )
    refuse_unmixed_sglang(asked, "chunked_prefill", UNMIXED_SGLANG_FLAG_FIX)
    knobs = asked.row(0)
    # (max_batch_size is the deployment's: serving.rank_workloads gives a rank ceil(it / DP).)
    per_rank = min(-(-int(concurrency) // dp), -(-knobs["max_batch_size"] // dp)) if concurrency else 1
    first = batch if batch is not None else dp * per_rank
    common: dict[str, Any] = {"chips": chips, "prompt_len": prompt_len, "gen_len": gen_len, "overlap": overlap}
    common |= {"calibration": calibration, "backend": backend}
    # --require-fit holds for the static sections reported (at the running batch), not for the
    # first guess the mesh is chosen at.
    require_fit = bool(static.pop("require_fit", False))
    one_group = (
        chip.kind == "gpu"
        and static.get("mesh") is None
        and static.get("tp") is None
        and static.get("dp") is None
        and chips is not None
    )
    if one_group:
        static = {**static, "tp": chips}  # no pipeline under load: one TP group over every chip
        if engine_problem_mask(None, model_spec.heads, model_spec.experts, chips, 1, 1):
            whose = f"tensor parallel over all {chips} GPUs (the serving model runs no pipeline)"
            raise heads_split_error(model_spec, chips, field="chips", whose=whose, replica="estimate")
    # Refused before the static estimate too: under a rate its first batch is 1, and the user
    # would be told to change a --batch they never passed.
    given = [name for name in UNSERVED_DEGREES if static.get(name) not in (None, 1)]
    report = None if given else estimate_one(model_spec, chip, batch=first, **common, **static)
    if report is None or any(report["parallel"][name] != 1 for name in UNSERVED_DEGREES):
        raise unserved_degree_error(given[0] if given else "pp")
    row = deployment_of_report(
        report,
        model_spec,
        chip,
        batch=first,
        prompt_len=prompt_len,
        gen_len=gen_len,
        kv_heads=static.get("kv_heads"),
        block=static.get("block"),
    )
    out = serving_one(
        row,
        profile=profile,
        engine=engine,
        overlap=overlap,
        concurrency=concurrency,
        request_rate=request_rate,
        **options,
    )
    running = dp * max(int(round(out["running"] / dp)), 1) if out["running"] is not None else first
    if batch is None and running != first:
        # The same deployment as the serving row, at the running batch: its mesh, chips, layouts
        # and fused attention as resolved above (a GPU's engine defaults included), not the
        # defaults of an estimate given a mesh (ws_2d, no flash attention).
        chosen, engine_default = report["mesh_chosen"], report["engine_default"]
        kept = {
            "mesh": report["mesh"],
            "tp": None,
            "prefill_ffn_layout": row.prefill_ffn_layout,
            "decode_ffn_layout": row.decode_ffn_layout,
            "prefill_attn_sharding": row.prefill_attn_sharding,
            "decode_attn_sharding": row.decode_attn_sharding,
            "flash_attention": row.flash_attention,
        }
        report = estimate_one(
            model_spec, chip, batch=running, **{**common, "chips": report["chips"]}, **{**static, **kept}
        )
        report["mesh_chosen"], report["engine_default"] = chosen, engine_default
    if require_fit:
        check_fit(report)
    report["batch_source"] = "--batch" if batch is not None else "serving running batch"
    memory = report["memory"]
    if batch is None and not memory["fits"] and out["fits"]:
        # The static sections prefill the whole batch in one pass and hold every sequence at its
        # full context (Pope et al.'s batch); the engine prefills at most max_num_tokens tokens an
        # iteration and holds sequences at their current lengths, which the serving model's cache
        # (cost_models.serving.kv_budget_bytes) is sized by: both verdicts stand, for two things.
        out["notes"].append(
            f"the static sections' memory ({memory['total_bytes_per_chip'] / 1e9:.1f} GB per chip: DOES NOT FIT) "
            f"charges all {report['batch']} sequences' prompts in one prefill and each at its full "
            f"{prompt_len + gen_len} tokens; the engine prefills at most max_num_tokens "
            f"({out['engine']['max_num_tokens']}) tokens an iteration and holds sequences at their current "
            "lengths: it runs this load (serving fits)"
        )
    if one_group:
        domain = domain_size(chip)
        # TP over every chip is the engines' own deployment within one NVLink domain; beyond it
        # they add pipeline stages, which the serving model does not charge.
        report["engine_default"] = report["chips"] <= domain
        if report["chips"] > domain:
            static_default = f"TP {domain} x PP {report['chips'] // domain}" if report["chips"] % domain == 0 else ""
            out["notes"].append(
                f"tensor parallel over all {report['chips']} chips, beyond one {domain}-chip domain: the serving "
                "model has no pipeline stages"
                + (f" (without a load tuner estimate runs {static_default})" if static_default else "")
            )
    elif report["mesh_chosen"] and report["chips"] > 1:
        out["notes"].append(
            f"mesh {report['mesh']}: the fastest for the static phases at batch {first}, kept for serving"
        )
    return {**report, "serving": out}
