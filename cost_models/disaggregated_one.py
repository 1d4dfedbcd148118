"""One disaggregated deployment under load, by names: ``tuner estimate --prefill-instances
--decode-instances``.

xP prefill instances and yD decode instances of one model on one chip, each pool's instance its
own TP x DP x EP (attention data parallelism with expert parallelism, as SGLang's PD
disaggregation runs DeepSeek-V3 with ``--enable-dp-attention --dp-size --ep-size``), scored by
:func:`cost_models.disaggregated.serve_disaggregated`. Each pool's deployment is resolved as
``tuner estimate`` resolves one (:func:`cost_models.deployment.estimate_one`: the engine's
layouts, the formats, a named engine's launch rules), so a degree an engine cannot launch is
refused naming the pool's flag.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cost_models.calibration import CalibrationProfile, serving_engine
from cost_models.deployment import Overlap
from cost_models.deployments import Deployment, Deployments, check_engine_kv_block_size
from cost_models.disaggregated import DisaggregatedEstimate, disaggregated_report, serve_disaggregated
from cost_models.errors import InvalidInputError
from cost_models.serving import NO_OVERHEADS, engine_overheads, make_workloads, near_capacity
from cost_models.serving_one import (
    ENGINE_KNOBS,
    SERVING_OPTIONS,
    UNSERVED_DEGREES,
    _check_fits,
    deployment_of_report,
    swings_note,
)

#: A pool's degrees and the ``tuner estimate`` flags that set them (the decode pool's are the
#: plain --tp/--dp/--ep, as an aggregated deployment's).
POOL_FLAGS: dict[str, dict[str, str]] = {
    "prefill": {"tp": "--prefill-tp", "dp": "--prefill-dp", "ep": "--prefill-ep"},
    "decode": {"tp": "--tp", "dp": "--dp", "ep": "--ep"},
}


_DEGREE_FIELDS = {"tensor_parallel": "tp", "data_parallel": "dp", "expert_parallel": "ep"}


def _pool(
    pool: str,
    degrees: dict[str, int | None],
    model: Any,
    chip: Any,
    *,
    prompt_len: int,
    gen_len: int,
    calibration: str | CalibrationProfile | None,
    backend: str | None,
    overlap: Overlap,
    static: dict[str, Any],
) -> tuple[dict[str, Any], Deployment]:
    """One instance of ``pool``: its static report (at one sequence a DP rank) and its row."""
    from cost_models.deployment import estimate_one

    dp = int(degrees.get("dp") or 1)
    given: dict[str, Any] = {name: value for name, value in degrees.items() if value is not None}
    try:
        report = estimate_one(
            model, chip, batch=dp, chips=None, prompt_len=prompt_len, gen_len=gen_len, overlap=overlap,
            calibration=calibration, backend=backend, **static, **given,
        )  # fmt: skip
    except InvalidInputError as error:
        flags = POOL_FLAGS[pool]
        if error.field == "chips":  # no TP: the chips (not read here) would have said how many
            raise InvalidInputError(
                f"{flags['tp']} ({pool} pool)",
                f"missing: a {pool} instance is {flags['tp']} x {flags['dp']} GPUs",
                f"pass {flags['tp']} N",
            ) from None
        degree = _DEGREE_FIELDS.get(error.field, error.field.removeprefix("--"))
        field = flags.get(degree, error.field)
        raise InvalidInputError(f"{field} ({pool} pool)", error.problem, error.fix) from None
    if any(report["parallel"][name] != 1 for name in UNSERVED_DEGREES):
        raise InvalidInputError(
            f"{POOL_FLAGS[pool]['tp']} ({pool} pool)",
            f"TP {report['parallel']['tp']} needs pipeline stages: the serving model charges tensor, expert and "
            "data parallelism only",
            f"pass {POOL_FLAGS[pool]['tp']} within one NVLink domain",
        )
    row = deployment_of_report(
        report, model, chip, batch=dp, prompt_len=prompt_len, gen_len=gen_len,
        kv_heads=static.get("kv_heads"), block=static.get("block"),
    )  # fmt: skip
    return report, row


def _pool_summary(report: dict[str, Any], instances: int, workloads: Any) -> dict[str, Any]:
    """A pool's instances, degrees and chips, and its batch limit an instance (the engine's
    max_batch_size over its DP ranks, each running ceil(this / DP): serving.rank_workloads)."""
    parallel = report["parallel"]
    return {
        "instances": instances,
        "tp": int(parallel["tp"]),
        "dp": int(parallel["dp"]),
        "ep": int(parallel["ep"]),
        "chips_per_instance": int(report["chips"]),
        "chips": instances * int(report["chips"]),
        "max_batch_size": int(workloads.max_batch_size[0]),
    }


def estimate_disaggregated_one(
    model: str | Any,
    hardware: str | Any,
    *,
    prefill_instances: int,
    decode_instances: int,
    prefill: dict[str, int | None],
    decode: dict[str, int | None],
    prompt_len: int,
    gen_len: int,
    concurrency: int | None = None,
    request_rate: float | None = None,
    backend: str | None = None,
    calibration: str | CalibrationProfile | None = "auto",
    overlap: Overlap = "overlapped",
    serving: dict[str, Any] | None = None,
    prefill_max_batch_size: int | None = None,
    decode_max_batch_size: int | None = None,
    **static: Any,
) -> dict[str, Any]:
    """``tuner estimate`` of xP prefill + yD decode instances under a load: ``prefill`` and
    ``decode`` each instance's ``tp``/``dp``/``ep`` (None: ``tuner estimate``'s default; the
    prefill pool's default is the decode pool's), ``serving`` the engine knobs and spreads
    (:data:`cost_models.serving_one.SERVING_OPTIONS`), ``static`` the formats (weight, act and
    KV bits, kv_heads, block). ``prefill_max_batch_size`` / ``decode_max_batch_size``: one
    pool's batch limit an instance (``serving``'s ``max_batch_size`` sets both, and is refused
    beside either; None: the engine's default in each of the pool's DP ranks). Returns ``pools``
    (each pool's degrees, chips and batch limit) and ``serving``
    (:func:`cost_models.disaggregated.disaggregated_report` plus the engine, load and notes)."""
    from cost_models.calibration import resolve_calibration
    from cost_models.hardware import get_hardware
    from cost_models.models import get_model

    options = dict(serving or {})
    unknown = set(options) - set(SERVING_OPTIONS)
    if unknown:
        raise InvalidInputError(
            "serving", f"unknown option {sorted(unknown)[0]!r}", f"use {', '.join(SERVING_OPTIONS)}"
        )
    for name, value in (("--prefill-instances", prefill_instances), ("--decode-instances", decode_instances)):
        if value < 1:
            raise InvalidInputError(name, f"must be 1 or more, got {value}", f"pass {name} 1 or more")
    pool_limits = {"prefill": prefill_max_batch_size, "decode": decode_max_batch_size}
    for pool, limit in pool_limits.items():
        flag = f"--{pool}-max-batch-size"
        if limit is None:
            continue
        if options.get("max_batch_size") is not None:
            raise InvalidInputError(
                flag,
                f"--max-batch-size sets both pools' batch limit, and {flag} the {pool} pool's",
                "pass --max-batch-size alone, or --prefill-max-batch-size and --decode-max-batch-size",
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 2**31:
            raise InvalidInputError(flag, f"must be 1 or more, got {limit}", f"pass {flag} from 1 to {2**31}")
    model_spec = get_model(model) if isinstance(model, str) else model
    chip = get_hardware(hardware) if isinstance(hardware, str) else hardware
    if model_spec.kind == "encoder":
        raise InvalidInputError(
            "serving", f"{model_spec.name} is an encoder: it generates no tokens to serve", "drop the pools"
        )
    if chip.kind != "gpu":
        raise InvalidInputError(
            "hardware",
            f"{chip.name} has a torus interconnect: the KV link between pools is modelled for GPUs",
            "use a GPU for disaggregated serving",
        )
    profile = resolve_calibration(calibration, chip, backend)
    engine = serving_engine(backend, profile, chip)
    check_engine_kv_block_size(engine, options.get("kv_block_size"))
    # The prefill instance's degrees default to the decode instance's.
    prefill_degrees = {name: decode.get(name) if prefill.get(name) is None else prefill.get(name) for name in decode}

    def pool_workloads(pool: str, degrees: dict[str, int | None]) -> Any:
        # Without a batch limit each DP rank of the pool runs the engine's default, as the engine
        # launched with its defaults does (serving.default_max_batch_size; tuner recommend scores
        # each pool over its own DP ranks alike: capacity.score_disaggregated).
        limit = pool_limits[pool]
        return make_workloads(
            backend=engine,
            concurrency=concurrency,
            request_rate=request_rate,
            prompt_len=prompt_len,
            gen_len=gen_len,
            **{**options, **({} if limit is None else {"max_batch_size": limit})},
            data_parallel=dp if isinstance(dp := degrees.get("dp"), int) else 1,
        )

    workloads = pool_workloads("decode", decode)
    prefill_workloads = pool_workloads("prefill", prefill_degrees)
    reports, rows = {}, {}
    # The decode instance first: the prefill instance takes its degrees by default, and an error
    # in them is the decode flags' (--tp/--dp/--ep).
    for pool, degrees in (("decode", decode), ("prefill", prefill_degrees)):
        reports[pool], rows[pool] = _pool(
            pool, degrees, model_spec, chip, prompt_len=prompt_len, gen_len=gen_len, calibration=calibration,
            backend=backend, overlap=overlap, static=static,
        )  # fmt: skip
    p_report, p_row, d_report, d_row = reports["prefill"], rows["prefill"], reports["decode"], rows["decode"]
    d = Deployments.from_rows([d_row])
    _check_fits(d_row, workloads, d)  # one sequence fits a decode rank beside its weights
    overheads = engine_overheads(profile.backend) if profile is not None else NO_OVERHEADS
    result: DisaggregatedEstimate = serve_disaggregated(
        Deployments.from_rows([p_row]),
        d,
        workloads,
        prefill_instances=prefill_instances,
        decode_instances=decode_instances,
        calibration=profile,
        overlap=overlap,
        overheads=overheads,
        prefill_workloads=prefill_workloads,
    )
    out = disaggregated_report(result)
    row = workloads.row(0)
    notes = []
    if not out["stable"]:
        pool = out["limiting_pool"]
        capacity = out["capacity_rps"]
        notes.append(
            f"unstable: the {pool} pool limits the matched pools to {capacity:.4g} requests/s"
            if out["fits"]
            else "does not fit: an instance cannot hold one prompt's or sequence's KV cache beside its weights"
        )
    elif concurrency is None and near_capacity(result.running_p999[0], result.max_concurrency[0]):
        # The decode pool's batch swings up to its slots now and then, as estimate says of an
        # aggregated replica (serving_one.swings_note).
        notes.append(swings_note(workloads, result, 0, disaggregated=True))
    return {
        "model": model_spec.name,
        "hardware": chip.name,
        "mode": "disaggregated",
        "prompt_len": prompt_len,
        "gen_len": gen_len,
        "weight_dtype": d_report["weight_dtype"],
        "act_dtype": d_report["act_dtype"],
        "kv_dtype": d_report["kv_dtype"],
        "calibration": d_report["calibration"],
        "pools": {
            "prefill": _pool_summary(p_report, prefill_instances, prefill_workloads),
            "decode": _pool_summary(d_report, decode_instances, workloads),
        },
        "serving": {
            "mode": "disaggregated",
            **out,
            "kv_link_utilisation": float(result.kv_link_utilisation[0]),
            # The decode pool's running batch at its 99.9th percentile (an open loop's swings).
            "running_p999": float(result.running_p999[0]) if np.isfinite(result.running_p999[0]) else None,
            "engine": {"backend": engine, **{k: row[k] for k in (*ENGINE_KNOBS, "memory_fraction", "prefix_hit_rate")}},
            "overheads": overheads.to_dict(),
            "load": {
                "concurrency": concurrency,
                "request_rate": request_rate,
                "prompt_len": prompt_len,
                "gen_len": gen_len,
                "prompt_len_std": row["prompt_len_std"],
                "gen_len_std": row["gen_len_std"],
            },
            "notes": notes,
        },
    }
