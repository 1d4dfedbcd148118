"""Fitting a profile's end-to-end terms from measured deployments (``tuner calibrate --points``).

Kernel measurements fit each operator class (tuner/calibrate.py); what only a whole forward step
shows (the engine's fixed cost per layer and per step, and on chips with no kernel measurements
the achieved fractions of peak and of bandwidth) is fitted here from deployments with a measured
prefill latency and/or decode step time: a CSV or YAML of points (columns below), or the result
JSON files ``vllm bench serve`` and SGLang's ``bench_serving`` write (their mean TTFT and TPOT at
``max_concurrency`` clients, predicted as the serving commands predict them: the serving model's
closed-loop steady state, ``cost_models.serving.serve``, with the engine's shipped host overheads on
top of the profile being fitted; see :func:`served_predictions`).

The fit is ``scipy.optimize.least_squares`` on log residuals with a soft_l1 loss (tuner/fitting.py),
cross-validated by leaving whole groups out (a table of a paper, a benchmark file), so the error
reported is on deployments the fit never saw.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import yaml

from cost_models.calibration import CalibrationProfile, DataFile, HeldOutError, Provenance
from cost_models.deployment import estimate
from cost_models.deployments import Deployment, Deployments
from cost_models.dtypes import dtype_name, parse_dtype
from cost_models.efficiency import (
    GEMM_FORMATS,
    DecodeAttentionParams,
    ElementwiseParams,
    FitSpec,
    GemmParams,
    PrefillAttentionParams,
)
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.input_files import read_regular_text
from cost_models.models import get_model
from cost_models.serving import EngineOverheads, engine_overheads
from cost_models.topology import parse_mesh
from tuner.calibrate_serving import ServingRuns
from tuner.calibrate_serving import predict as serving_predict
from tuner.fitting import abs_rel_errors, fit
from tuner.kernel_data import repo_relative_path

REQUIRED = ("model", "hardware", "chips", "batch", "prompt_len", "gen_len")
MEASURED = ("measured_prefill_latency_s", "measured_decode_step_latency_s")
MODEL_OVERRIDES = ("heads", "kv_heads", "d_head", "layers")
CHOICES = ("prefill_ffn_layout", "decode_ffn_layout", "prefill_attn_sharding", "decode_attn_sharding")
#: Every column a points file may have: a misspelt one (``weight_bit``) would silently take its
#: default and fit the profile to another deployment than the one measured.
COLUMNS = (
    "group",
    *REQUIRED,
    "mesh",
    *MODEL_OVERRIDES,
    *CHOICES,
    "weight_bits",
    "act_bits",
    "kv_bits",
    "flash_attention",
    *MEASURED,
)
#: What a GPU row runs where it does not say (as tuner estimate and a benchmark JSON's point: the
#: engines' Megatron TP, heads split, fused attention); a TPU row takes Pope et al.'s defaults.
GPU_DEFAULTS = {
    "prefill_ffn_layout": "ws_1d",
    "decode_ffn_layout": "ws_1d",
    "prefill_attn_sharding": "head",
    "decode_attn_sharding": "head",
}
REPO_POINTS = Path(__file__).resolve().parent.parent / "data" / "e2e"


@dataclass(frozen=True)
class Point:
    """One measured deployment: what was run, and its measured times (None: not measured)."""

    deployment: Deployment
    prefill_latency_s: float | None
    decode_step_latency_s: float | None
    group: str
    #: A serving benchmark's run at this many clients (closed loop): its prefill latency is the run's
    #: mean TTFT and its decode step its mean TPOT, predicted by the serving model's steady state
    #: (:func:`served_predictions`) at the deployment's prompt and output lengths. None: a static
    #: prefill / decode step of the deployment's batch, predicted by ``estimate``.
    concurrency: int | None = None
    #: A serving run's requests per client (its requests over its clients): the first burst, every
    #: client's first request at t = 0, is that share of its mean TTFT. None: a static point.
    requests_per_client: float | None = None


def _read_rows(path: Path) -> list[dict[str, str]]:
    try:
        text = read_regular_text(path, "points", "pass a CSV or YAML file of measured points")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(str(path), f"cannot read ({type(error).__name__})", "check the path") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise InvalidInputError(
                str(path), f"not valid YAML ({str(error).splitlines()[0]})", "fix the YAML syntax"
            ) from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InvalidInputError(str(path), "not a list of points", "write one mapping per measured deployment")
        return [{str(k): "" if v is None else str(v) for k, v in r.items()} for r in data]
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    for number, row in enumerate(rows, start=1):
        if None in row:  # DictReader files the values beyond the header under the key None
            width = len(row) - 1
            raise InvalidInputError(
                f"{path.name} row {number}", f"{width + len(row[None])} fields, header has {width}", "fix the row"
            )
    return rows


def _flag(row: dict[str, str], column: str, where: str, *, default: bool) -> bool:
    text = (row.get(column) or "").strip().lower()
    if not text:
        return default
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise InvalidInputError(where, f"{column} {text!r} is not true or false", f"write true or false in {column}")


def _number(row: dict[str, str], column: str, where: str, *, integer: bool = True) -> float | None:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(where, f"{column} {text!r} is not a number", f"write a number in {column}") from None
    if not math.isfinite(value) or value <= 0 or (integer and value != int(value)):
        raise InvalidInputError(
            where, f"{column} {text!r} must be a positive {'whole ' if integer else ''}number", f"fix {column}"
        )
    return value


def read_points(path: str | Path, group: str | None = None) -> list[Point]:
    """Measured deployments of a points file (CSV with ``#`` header lines, or YAML), or of a
    serving benchmark's result JSON. Every bad row is a one-line error naming file, row and fix."""
    path = Path(path)
    if path.suffix == ".json":
        raise InvalidInputError(
            str(path),
            "a serving benchmark result needs its deployment",
            "use read_benchmark_json (tuner calibrate --bench-json with --model ...)",
        )
    rows = _read_rows(path)
    if not rows:
        raise InvalidInputError(str(path), "holds no points", "add one row per measured deployment")
    unknown = sorted({c for row in rows for c in row if c not in COLUMNS})
    if unknown:
        close = difflib.get_close_matches(unknown[0], COLUMNS, n=1)
        raise InvalidInputError(
            str(path),
            f"unknown column {unknown[0]!r}" + (f" (did you mean {close[0]}?)" if close else ""),
            f"use only the columns {', '.join(COLUMNS)}; notes go in '#' lines (CSV)",
        )
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing or not any(c in rows[0] for c in MEASURED):
        need = missing or [" or ".join(MEASURED)]
        raise InvalidInputError(
            str(path),
            f"missing column {need[0]}",
            f"add the columns {', '.join(REQUIRED)} and at least one of {', '.join(MEASURED)}",
        )
    points = []
    for number, row in enumerate(rows, start=1):
        where = f"{path.name} row {number}"
        empty = [c for c in REQUIRED if not (row.get(c) or "").strip()]
        if empty:  # a YAML point without the key, or a CSV row cut short
            raise InvalidInputError(where, f"no {empty[0]}", f"fill {', '.join(empty)}")
        try:
            model = get_model(row["model"].strip())
            overrides = {c: int(v) for c in MODEL_OVERRIDES if (v := _number(row, c, where)) is not None}
            if overrides:
                model = model.model_copy(
                    update={
                        "name": f"{model.name} ({', '.join(f'{k}={v}' for k, v in overrides.items())})",
                        **overrides,
                    }
                )
            hardware = get_hardware(row["hardware"].strip())
            chips = int(_number(row, "chips", where) or 0)
            mesh = parse_mesh(row["mesh"]) if (row.get("mesh") or "").strip() else (1, 1, chips)
            if math.prod(mesh) != chips:
                raise InvalidInputError(where, f"mesh {row['mesh']} does not have {chips} chips", "fix mesh or chips")
            # Layout and sharding names the row gives (the Deployment checks them); the defaults otherwise.
            gpu = hardware.kind == "gpu"
            choices: dict[str, Any] = {
                **(GPU_DEFAULTS if gpu else {}),
                **{c: row[c].strip() for c in CHOICES if (row.get(c) or "").strip()},
            }
            bits = (row.get("weight_bits") or "16").strip()
            act_bits = (row.get("act_bits") or "16").strip()
            kv_bits = (row.get("kv_bits") or "16").strip()
            flash = _flag(row, "flash_attention", where, default=gpu)
            deployment = Deployment(
                model=model,
                hardware=hardware,
                mesh=mesh,
                batch=int(_number(row, "batch", where) or 0),
                prompt_len=int(_number(row, "prompt_len", where) or 0),
                gen_len=int(_number(row, "gen_len", where) or 0),
                **choices,
                weight_dtype=dtype_name(parse_dtype(bits, "weight_bits")),
                act_dtype=dtype_name(parse_dtype(act_bits, "act_bits")),
                kv_dtype=dtype_name(parse_dtype(kv_bits, "kv_bits")),
                kv_heads=int(_number(row, "kv_heads", where) or 0) if (row.get("kv_heads") or "").strip() else None,
                flash_attention=flash,
            )
        except InvalidInputError as error:
            if error.field == where:  # _number's own error names the row already
                raise
            raise InvalidInputError(where, str(error), "fix the row") from None
        prefill = _number(row, "measured_prefill_latency_s", where, integer=False)
        step = _number(row, "measured_decode_step_latency_s", where, integer=False)
        if prefill is None and step is None:
            raise InvalidInputError(where, "measures nothing", f"fill one of {', '.join(MEASURED)}")
        points.append(Point(deployment, prefill, step, group or (row.get("group") or path.stem).strip()))
    return points


def _benchmark_records(path: Path) -> list[tuple[str, Any]]:
    """The runs of a benchmark result file, each with where it is: one JSON object (``vllm bench
    serve --save-result``), or one object per line, as SGLang's ``bench_serving`` always writes
    (its ``--output-file`` is opened for appending, ``open(output_file_name, "a")``, and its
    default name, ``sglang_MMDD_{num_prompts}_{in}_{out}.jsonl``, is the same for every
    ``--max-concurrency`` of a sweep) and ``vllm bench serve --append-result`` too (a newline
    between ``json.dump``s). Such a file was refused whole: "cannot read JSON (JSONDecodeError)"."""
    text = read_regular_text(path, "bench-json", "pass the result JSON of a serving benchmark")
    try:
        return [(str(path), json.loads(text))]
    except ValueError as whole_error:
        lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
        if len(lines) < 2:
            raise InvalidInputError(
                str(path), f"cannot read JSON ({whole_error})", "pass the result file a serving benchmark wrote"
            ) from None
        records = []
        for number, line in lines:
            try:
                records.append((f"{path}:{number}", json.loads(line)))
            except ValueError as error:
                raise InvalidInputError(
                    f"{path}:{number}",
                    f"cannot read JSON ({error})",
                    "one result per line (JSON lines, as bench_serving appends them), or one JSON object",
                ) from None
        return records


def read_benchmark_json(
    path: str | Path,
    *,
    model: str,
    hardware: str,
    chips: int,
    weight_dtype: str = "bf16",
    kv_dtype: str = "bf16",
    engine: str | None = None,
) -> list[Point]:
    """Each run of a ``vllm bench serve`` / SGLang ``bench_serving`` result file (one JSON
    object, or one per line: :func:`_benchmark_records`) as two points (tensor parallel over
    ``chips``, weights and KV cache in the served formats) of a serving run at ``max_concurrency``
    clients: its mean TTFT and its mean TPOT, each predicted by the serving model's steady state
    (:func:`served_predictions`). A file of one run is one group (its name); a file of several
    runs gives each its own group (``name:line``), so leave-one-group-out holds out one run."""
    path = Path(path)
    if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1:
        raise InvalidInputError("chips", f"must be a whole number >= 1, got {chips!r}", "pass --chips 1 or more")
    try:
        records = _benchmark_records(path)
    except InvalidInputError:
        raise
    except OSError as error:
        raise InvalidInputError(str(path), f"cannot read ({error.strerror})", "pass a result file") from None
    points: list[Point] = []
    for where, data in records:
        group = path.stem if len(records) == 1 else f"{path.stem}:{where.rsplit(':', 1)[1]}"
        if engine is not None and isinstance(data, dict):
            _check_engine(where, data, engine)
        points += _benchmark_run(where, data, group, model, hardware, chips, weight_dtype, kv_dtype)
    return points


#: The serving engine a benchmark's ``backend`` field names by name (the server it was pointed at):
#: SGLang's bench_serving and vllm bench serve both have sglang / sglang-oai / sglang-oai-chat
#: (SGLang's server), trt / tensorrt-llm (TensorRT-LLM's), lmdeploy, tgi. "vllm", "openai" and
#: "openai-chat" are OpenAI-compatible endpoints any engine serves (vllm bench serve's default
#: "openai", its former default "vllm"), so they name none.
BENCHMARK_ENGINES = {
    "sglang": "sglang",
    "sglang-native": "sglang",
    "sglang-oai": "sglang",
    "sglang-oai-chat": "sglang",
    "trt": "trtllm",
    "tensorrt-llm": "trtllm",
    "lmdeploy": "lmdeploy",
    "lmdeploy-chat": "lmdeploy",
    "tgi": "tgi",
}


def _check_engine(where: str, data: dict, engine: str) -> None:
    """Runs against another engine's server were fitted as --backend's: SGLang runs under
    --backend vllm took vLLM's shipped host overheads (cost_models/serving_overheads) and wrote a
    vLLM profile, exit 0."""
    named = BENCHMARK_ENGINES.get(str(data.get("backend", "")).lower())
    if named is not None and named != engine:
        fix = (
            f"pass --backend {named}"
            if named in ("trtllm", "vllm", "sglang")
            else "calibrate runs of trtllm, vllm or sglang"
        )
        raise InvalidInputError(
            f"{where}: backend",
            f"{data['backend']!r} is a run against {named}'s server, not --backend {engine}",
            f"{fix}, or the runs of {engine}",
        )


#: Suffixes of a checkpoint's repository name that leave its architecture as it is (instruction
#: tunes, quantized uploads): ``meta-llama/Llama-3.1-8B-Instruct`` is the catalog's llama-3.1-8b.
CHECKPOINT_SUFFIXES = (
    "-instruct",
    "-chat",
    "-it",
    "-hf",
    "-base",
    "-fp8",
    "-dynamic",
    "-awq",
    "-gptq",
    "-int4",
    "-int8",
)
#: The architecture fields two models must share for runs of one to describe the other.
ARCHITECTURE = ("layers", "d_model", "heads", "kv_heads", "d_head", "d_ff", "vocab", "experts", "experts_per_token")


def _checkpoint_stem(name: str) -> str:
    stem = name.rstrip("/").rsplit("/", 1)[-1].lower()
    # Meta's repos were Meta-Llama-3-8B, Meta-Llama-3.1-8B-Instruct (renamed Llama-3.1-8B-Instruct).
    stem = stem.removeprefix("meta-")
    while True:
        for suffix in CHECKPOINT_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        else:
            return stem


def _catalog_model_of(model_id: str) -> str | None:
    """The catalog model whose name or Hugging Face repository (tuner.export.HF_REPOS) names the
    checkpoint ``model_id`` (a repo id or a local path ending in the repo's name), None if none."""
    from tuner.export import HF_REPOS

    stem = _checkpoint_stem(model_id)
    for name, repo in HF_REPOS.items():
        if stem in (name, _checkpoint_stem(repo)):
            return name
    return None


def _check_model_id(where: str, data: dict, model: str) -> None:
    """vllm bench serve records the served checkpoint (``model_id``): runs of a model other than
    --model's were fitted as --model's (Llama-3.1-8B runs read as qwen3-32b: the per-step overhead
    pressed on its lower bound, held out 180-227%, a profile written, exit 0)."""
    model_id = data.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        return
    named = _catalog_model_of(model_id)
    if named is None:
        return
    served, given = get_model(named), get_model(model)
    if any(getattr(served, f) != getattr(given, f) for f in ARCHITECTURE):
        raise InvalidInputError(
            f"{where}: model_id",
            f"{model_id!r} is the catalog's {named}, not --model {model} (another architecture)",
            f"pass --model {named}, or the runs of {model}",
        )


#: A run sent at a finite request rate whose measured request throughput reaches this share of
#: the rate was paced by the rate, not by its clients.
PACED_SHARE = 0.9


def _check_run_fields(where: str, data: dict) -> None:
    """Values of the optional fields no benchmark writes, which were read past and the run fitted:
    vllm bench serve and SGLang's bench_serving send num_prompts requests (completed + failed of
    them), time the run from the first send (duration > 0 seconds), and send at a positive
    --request-rate or inf (vllm writes "inf", SGLang Infinity)."""
    fix = "pass the JSON a serving benchmark wrote"
    prompts = data.get("num_prompts")
    if isinstance(prompts, (int, float)) and not isinstance(prompts, bool) and data["completed"] > prompts:
        raise InvalidInputError(
            f"{where}: completed", f"{data['completed']!r} requests completed of num_prompts {prompts!r} sent", fix
        )
    if data.get("request_rate") is not None:
        rate = data["request_rate"]
        try:
            number = float(rate) if isinstance(rate, (int, float, str)) and not isinstance(rate, bool) else math.nan
        except ValueError:
            number = math.nan
        if not number > 0:  # NaN, 0 and negative rates (inf is a closed loop's)
            raise InvalidInputError(
                f"{where}: request_rate", f"{rate!r} is not a positive number of requests a second or inf", fix
            )
    if data.get("duration") is not None:
        duration_s = data["duration"]
        if (
            isinstance(duration_s, bool)
            or not isinstance(duration_s, (int, float))
            or not math.isfinite(duration_s)
            or duration_s <= 0
        ):
            raise InvalidInputError(f"{where}: duration", f"{duration_s!r} is not a positive number of seconds", fix)


def _check_closed_loop(where: str, data: dict) -> None:
    """A run is fitted as a closed loop of max_concurrency clients. vllm bench serve and SGLang's
    bench_serving also send at --request-rate (Poisson) with --max-concurrency as a cap only; where
    the rate, not the cap, set the load (its throughput reaches the rate), far fewer requests ran
    at once: 2 req/s with a cap of 64 on one H100 keeps about 4 of Llama-3.1-8B's 1024/256-token
    requests in flight (tuner estimate --request-rate 2: 4.1 running, TPOT 7.9 ms), whose TPOT was
    fitted as 64 clients' (15.4 ms predicted at --concurrency 64)."""
    rate = data.get("request_rate")
    if isinstance(rate, str):
        try:
            rate = float(rate)  # vllm writes "inf"
        except ValueError:
            return
    throughput = data.get("request_throughput")
    if (
        isinstance(rate, (int, float))
        and not isinstance(rate, bool)
        and math.isfinite(rate)
        and rate > 0
        and isinstance(throughput, (int, float))
        and throughput >= PACED_SHARE * rate
    ):
        raise InvalidInputError(
            f"{where}: request_rate",
            f"{rate:g} req/s set the load (request_throughput {throughput:.3g} req/s), not "
            f"{data.get('max_concurrency')} clients: the fit reads closed-loop runs",
            "rerun with --request-rate inf (the default) and --max-concurrency N",
        )
    if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate) and rate > 0):
        return
    # The throughput test misses a short run: its last requests' latency lengthens the run past
    # num_prompts / rate, so 20 prompts at 2 req/s (4 of 64 clients' worth in flight) came to
    # 1.66 req/s, 83% of the rate, and were fitted as 64 clients. Little's law on the offered
    # stream does not depend on the run's length: requests arrive at the rate and each is served
    # in the run's mean end-to-end latency (the clients' semaphore wait is not in it: vllm and
    # SGLang start a request's clock inside the semaphore), so rate x latency requests were in
    # flight where that is under the clients; at or above them, the semaphore held the rest back.
    clients = min(int(data["max_concurrency"]), int(data["completed"]))
    e2e_ms = data.get("mean_e2el_ms", data.get("mean_e2e_latency_ms"))  # vLLM's (with e2el metrics), SGLang's
    if isinstance(e2e_ms, bool) or not isinstance(e2e_ms, (int, float)) or not math.isfinite(e2e_ms) or e2e_ms <= 0:
        output_tokens = int(data["total_output_tokens"]) / int(data["completed"])
        e2e_ms = float(data["mean_ttft_ms"]) + max(output_tokens - 1.0, 0.0) * float(data["mean_tpot_ms"])
    in_flight = rate * e2e_ms / 1e3
    if in_flight < PACED_SHARE * clients:
        raise InvalidInputError(
            f"{where}: request_rate",
            f"{rate:g} req/s x {e2e_ms / 1e3:.3g} s a request keeps {in_flight:.3g} requests in flight, not "
            f"{clients} clients: the rate set the load, and the fit reads closed-loop runs",
            "rerun with --request-rate inf (the default) and --max-concurrency N",
        )


def _check_clean_run(where: str, data: dict) -> None:
    """Fields of a run that change what its means are, which were read past and the run fitted as
    a clean closed loop of max_concurrency clients:

    - ``failed`` (vllm bench serve): its means are over the completed requests only
      (vllm/benchmarks/serve.py calculate_metrics), while the failed ones held clients' slots for
      an unknown time (a timeout, an engine error mid-stream) or none (a refused prompt): the load
      the completed requests saw is not the one the run names.
    - ``ramp_up_strategy`` (vllm bench serve --ramp-up-strategy): the requests are sent at a rate
      rising from ``ramp_up_start_rps`` to ``ramp_up_end_rps`` while ``request_rate`` says "inf"
      (vllm refuses a --request-rate beside a ramp-up): a paced run, which the rate check let by.
    - ``accept_length`` (SGLang bench_serving, the server's avg_spec_accept_length; None without
      speculative decoding): each engine step emitted that many tokens a sequence, so TPOT is a
      step over accept_length, and a fit of the per-step overhead read it as a whole step.
    """
    failed = data.get("failed")
    if isinstance(failed, (int, float)) and not isinstance(failed, bool) and failed > 0:
        raise InvalidInputError(
            f"{where}: failed",
            f"{failed:g} of {failed + data['completed']:g} requests failed; the means are the completed ones' "
            "at a load the failed ones changed",
            "fix what failed (the run's errors, --save-detailed) and rerun, or leave this run out",
        )
    strategy = data.get("ramp_up_strategy")
    if strategy is not None:
        raise InvalidInputError(
            f"{where}: ramp_up_strategy",
            f"{strategy!r} ({data.get('ramp_up_start_rps')} to {data.get('ramp_up_end_rps')} req/s): a run paced by a "
            "rising rate, not a closed loop of max_concurrency clients",
            "rerun without --ramp-up-strategy, with --max-concurrency N",
        )
    if data.get("dataset_name") == "generated-shared-prefix":
        # SGLang's bench_serving --dataset-name generated-shared-prefix: groups of prompts share a
        # system prompt (--gsp-system-prompt-len, 2048 tokens by default, before a 128-token
        # question), which the engine's prefix cache prefills once a group; the run's TTFT was fitted
        # as a prefill of every prompt whole, and the result records neither length.
        raise InvalidInputError(
            f"{where}: dataset_name",
            "'generated-shared-prefix': its prompts share system prompts the prefix cache prefills once, "
            "and the run does not record how long they are",
            "rerun with --dataset-name random (or sharegpt)",
        )
    accept = data.get("accept_length")
    if accept is not None:
        raise InvalidInputError(
            f"{where}: accept_length",
            f"{accept!r}: the server ran speculative decoding (tokens per step), which the cost model does not time",
            "rerun the server without speculative decoding, or leave this run out",
        )


def _benchmark_run(
    where: str, data: Any, group: str, model: str, hardware: str, chips: int, weight_dtype: str, kv_dtype: str
) -> list[Point]:
    """One run of a benchmark result (``where``: its file, and line where the file holds several)."""
    if not isinstance(data, dict):
        raise InvalidInputError(where, "not a JSON object", "pass the JSON a serving benchmark wrote")
    need = ("mean_ttft_ms", "mean_tpot_ms", "completed", "total_input_tokens", "total_output_tokens")
    missing = [k for k in need if k not in data]
    if missing:
        # vllm bench serve writes mean_<metric>_ms only for its --percentile-metrics (default
        # ttft,tpot,itl; vllm/benchmarks/serve.py process_one_metric): '--percentile-metrics e2el'
        # leaves them out, and the fix 'pass the JSON a serving benchmark wrote' did not say so.
        fix = (
            "rerun vllm bench serve with --percentile-metrics ttft,tpot,itl (its default)"
            if missing[0] in ("mean_ttft_ms", "mean_tpot_ms")
            else "pass the JSON a serving benchmark wrote"
        )
        raise InvalidInputError(where, f"missing key {missing[0]}", fix)
    if data.get("max_concurrency") is None:
        # vllm bench serve without --max-concurrency sends every request at --request-rate (by
        # default all at once): its TPOT is a step of up to the engine's batch cap, which was read
        # as a step of one sequence, and the fitted overheads took the difference.
        raise InvalidInputError(
            f"{where}: max_concurrency",
            f"{data.get('max_concurrency')!r}: the run's batch is unknown (requests sent at a rate)",
            "rerun the benchmark with --max-concurrency N (closed loop), or set max_concurrency to its clients",
        )
    for key in (*need, "max_concurrency"):
        value = data.get(key)
        whole = key not in ("mean_ttft_ms", "mean_tpot_ms")
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
            or (whole and value != int(value))
        ):
            kind = "whole number" if whole else "number"
            fix = "pass the JSON a serving benchmark wrote"
            if not whole and value == 0:
                # Both benchmarks write 0 where no request streamed its tokens: vllm's mean over no
                # TTFT (np.mean(ttfts or 0)), SGLang's --disable-stream a TTFT of the whole request
                # and so a TPOT of 0 (bench_serving.py); "pass the JSON a benchmark wrote" was no fix.
                fix = (
                    "rerun the benchmark with streaming (SGLang: without --disable-stream), which times the first token"
                )
            raise InvalidInputError(f"{where}: {key}", f"{value!r} is not a positive {kind}", fix)
    _check_run_fields(where, data)
    _check_model_id(where, data, model)
    _check_closed_loop(where, data)
    _check_clean_run(where, data)
    completed = int(data["completed"])
    # Every client's first request leaves at t = 0 (vllm/benchmarks/serve.py and SGLang's
    # bench_serving.py create every request's task at once under an asyncio.Semaphore of
    # max_concurrency): that burst is 1 / (requests per client) of the run's mean TTFT, which the
    # serving model counts (ServingWorkloads.requests_per_client). It was left at the model's
    # default of 10: vllm bench serve's default --num-prompts 1000 at 8-64 clients is 16-125
    # requests per client, whose mean TTFT was predicted 1.30x (runs of Llama-3.1-8B on one H100
    # made by the serving model at 1000 prompts with 0.5 ms per step: fitted 0.42 ms, held-out TTFT
    # 29.6%; at their own count 0.50 ms and 0%; tests/tuner/test_calibrate_user_bench.py). Fewer
    # requests than max_concurrency never fill the cap: they all run at once, one each.
    concurrency = min(int(data["max_concurrency"]), completed)
    requests_per_client = completed / concurrency
    deployment = Deployment(
        model=get_model(model),
        hardware=get_hardware(hardware),
        mesh=(1, 1, chips),
        batch=concurrency,
        prompt_len=max(int(data["total_input_tokens"]) // completed, 1),
        gen_len=max(int(data["total_output_tokens"]) // completed, 1),
        prefill_ffn_layout="ws_1d",
        decode_ffn_layout="ws_1d",
        flash_attention=True,
        weight_dtype=weight_dtype,
        kv_dtype=kv_dtype,
    )
    # Clients of a closed loop send their requests apart, so a request's first token waits on its
    # own prompt's prefill, not on one of all max_concurrency prompts together (which made the
    # TTFT of a run at concurrency 32 the prefill of 32 prompts, 5x what it measured, and pulled
    # the fitted overheads with it): TTFT is the prefill of a batch of one.
    # Both are then predicted as the serving commands predict them (served_predictions): read as
    # a static prefill of one prompt and a decode step of max_concurrency sequences, the fit put the
    # engine's host overheads into the profile's per-step and per-layer terms, and the serving
    # commands, which add those overheads again, counted them twice (fitted on the serving model's
    # own TPOT of 8.7 and 13.1 ms at 8 and 32 clients, they predicted 12.7 and 17.2 ms).
    one_request = replace(deployment, batch=1)
    return [
        Point(one_request, float(data["mean_ttft_ms"]) / 1e3, None, group, concurrency, requests_per_client),
        Point(deployment, None, float(data["mean_tpot_ms"]) / 1e3, group, concurrency, requests_per_client),
    ]


# --- the parameters an end-to-end fit may move --------------------------------------------------


def _set_gemm(profile: CalibrationProfile, **changes: float) -> dict:
    return {"gemm": {fmt: p.model_copy(update=changes) for fmt, p in profile.gemm.items()}}


def _set_memory(profile: CalibrationProfile, value: float) -> dict:
    return {
        **_set_gemm(profile, memory_eff=value),
        "decode_attention": {
            k: p.model_copy(update={"memory_eff": value}) for k, p in profile.decode_attention.items()
        },
        "prefill_attention": {
            k: p.model_copy(update={"memory_eff": value}) for k, p in profile.prefill_attention.items()
        },
        "elementwise": profile.elementwise.model_copy(update={"memory_eff": value}),
    }


def _set_compute(profile: CalibrationProfile, value: float) -> dict:
    return {
        **_set_gemm(profile, compute_eff=value),
        "prefill_attention": {
            k: p.model_copy(update={"compute_eff": value}) for k, p in profile.prefill_attention.items()
        },
    }


#: name -> (bounds, how it changes a profile). Overheads are per layer and per forward step.
E2E_PARAMETERS: dict[str, tuple[FitSpec, Callable[[CalibrationProfile, float], dict]]] = {
    "per_layer_overhead_s": (FitSpec(1e-7, 1e-2, log=True, start=2e-5), lambda p, v: {"per_layer_overhead_s": v}),
    "per_step_overhead_s": (FitSpec(1e-6, 1e-1, log=True, start=1e-3), lambda p, v: {"per_step_overhead_s": v}),
    # Fixed latency per collective step (a ring step along one torus axis), exposed per block:
    # on TPUs the per-layer fixed cost, scaling with the slice's ring lengths (cost_models/deployment.py).
    "collective_step_s": (FitSpec(1e-8, 1e-3, log=True, start=2e-6), lambda p, v: {"collective_step_s": v}),
    "compute_eff": (FitSpec(0.05, 1.0, start=0.6), _set_compute),
    "memory_eff": (FitSpec(0.05, 1.0, start=0.7), _set_memory),
    "network_eff": (FitSpec(0.05, 1.0, start=0.7), lambda p, v: {"network_eff": v}),
}
#: Fitted where kernel measurements already fix each operator class: what only a step shows.
OVERHEADS = ("per_layer_overhead_s", "per_step_overhead_s")


def layer_counts(points: list[Point]) -> set[int]:
    return {int(p.deployment.model.layers) for p in points}


def default_overheads(points: list[Point]) -> tuple[str, ...]:
    """The overheads a fit over a kernel profile moves by default: both, or the per-step one alone
    where every point has one layer count (a step's fixed cost is then per_layer x layers +
    per_step, one number: two serving runs of one model fitted 62.7 us and 2.03 ms along it)."""
    return OVERHEADS if len(layer_counts(points)) > 1 else ("per_step_overhead_s",)


#: Fitted on a chip without kernel measurements (its base profile is roofline_profile's).
EVERYTHING = tuple(E2E_PARAMETERS)
#: The default fit on such a chip: achieved fractions of peak and bandwidth, and the fixed cost of
#: a layer, which on a torus (TPU: no kernel launches, one compiled program per step) is the
#: latency of the layer's collective steps and grows with the slice, elsewhere a constant.
ROOFLINE_CHIP_FIT = ("compute_eff", "memory_eff", "per_layer_overhead_s")
TORUS_CHIP_FIT = ("compute_eff", "memory_eff", "collective_step_s")


#: The report's name for roofline_profile's base (``tuner calibrate --points``'s column).
DEFAULTS_LABEL = "kernel defaults"


def roofline_profile(chip: str, backend: str) -> CalibrationProfile:
    """The kernel formulas at their default parameters (every efficiency 1, no fixed cost): the
    base of an end-to-end fit on a chip without kernel measurements (``--base none``), whose
    compute_eff, memory_eff and fixed costs the fit sets. Not the pure roofline (``predict(None)``,
    ``--calibration none``). On Pope et al.'s TPU v4 points only the weight matmuls differ (their
    other slots time the same to 1e-9): each chip's matmul is one GEMM (efficiency.gemm_time_s)
    of the plan's per-chip (m, n, k) moving its whole m x k input, k x n weights and m x n output
    (2 bytes an element: OUTPUT_BYTES), where the roofline (deployment.chip_roofline) charges the
    chip its share of the operator's bytes: under Pope et al.'s 2D weight-stationary layout on a
    4x4x4 mesh its shard of the activations, a 16th of one of input and output and a 4th of the
    other, and on K and V the cache writes of every token whose K and V the chip keeps
    (multi-query PaLM at batch 1: all of them). Measured on those points
    (data/e2e/pope2022_tpu_v4.csv, 2-core VM, 2026-12-06): each predicted time under this base is
    0.999-1.058x the pure roofline's (figure8's decode steps 1.001-1.034x, most from the q and
    out projections' whole inputs and outputs; a table2 prefill 0.999x where the roofline's K/V cache
    writes outweigh them), so the report's base median is not the roofline median (figure8 56.4%
    against 57.4%). Elsewhere the formulas' own default terms differ too (not measured here): a
    GPU engine's fused QKV and gate-up GEMMs, a sliding window read at key-block granularity
    (window_extra_keys 128), MLA decode's math at FlashMLA's share of the peak
    (MLA_DECODE_COMPUTE_EFF)."""
    return CalibrationProfile(
        chip=chip,
        backend=backend,
        gemm={fmt: GemmParams() for fmt in GEMM_FORMATS},
        prefill_attention={"bfloat16/bfloat16": PrefillAttentionParams(), "bfloat16/fp8": PrefillAttentionParams()},
        decode_attention={"bfloat16": DecodeAttentionParams(), "fp8": DecodeAttentionParams()},
        elementwise=ElementwiseParams(),
    )


def apply(base: CalibrationProfile, values: dict[str, float]) -> CalibrationProfile:
    """``base`` with the end-to-end parameters set to ``values``."""
    profile = base
    for name, value in values.items():
        profile = profile.model_copy(update=E2E_PARAMETERS[name][1](profile, value))
    return profile


class GroupError(TypedDict):
    """One group's error: rows, median and p90 abs relative error before (the base profile), after
    and on the pure roofline (the base only where no kernel profile was fitted)."""

    rows: int
    median: float
    p90: float
    before_median: float
    before_p90: float
    roofline_median: float
    roofline_p90: float
    how: str  # held out, or cross-validated (fit without this group)


@dataclass
class E2EReport:
    profile: CalibrationProfile
    values: dict[str, float]
    warnings: list[str]
    train_groups: list[str]
    #: per group held out: rows, median and p90 abs relative error before (base) and after
    held_out: dict[str, GroupError] = field(default_factory=dict)
    #: the same held-out predictions over every group, per measured quantity (TTFT / prefill,
    #: TPOT / decode step): a group's median of its one TTFT and one TPOT hid which was off.
    by_quantity: dict[str, QuantityError] = field(default_factory=dict)


class QuantityError(TypedDict):
    """Held-out abs relative error of one measured quantity over every group, and the median
    ratio predicted / measured (the direction), after the fit and before (the base profile)."""

    rows: int
    median: float
    p90: float
    median_ratio: float
    before_median: float


#: A quantity whose held-out median error exceeds this is said to be one the fitted parameters
#: cannot follow (the shipped H100 TensorRT-LLM serving fit holds out TTFT 16.8%, TPOT 6.6%).
FAR_OFF = 0.25


def _quantity_name(kind: int, served: np.ndarray) -> str:
    """TTFT / TPOT where every row of the kind is a serving run, prefill / decode step where none
    is, both names where the points mix them."""
    served_name, static_name = ("TTFT", "prefill") if kind == 0 else ("TPOT", "decode step")
    return served_name if served.all() else static_name if not served.any() else f"{static_name} / {served_name}"


def _observations(points: list[Point]) -> tuple[Deployments, np.ndarray, np.ndarray, np.ndarray]:
    """The deployments, and per measured quantity: (point index, 0 prefill / 1 decode step, seconds)."""
    index, kind, seconds = [], [], []
    for i, p in enumerate(points):
        for k, value in enumerate((p.prefill_latency_s, p.decode_step_latency_s)):
            if value is not None:
                index.append(i)
                kind.append(k)
                seconds.append(value)
    by_chip = {p.deployment.hardware.name for p in points}
    if len(by_chip) > 1:
        raise InvalidInputError("points", f"mix chips ({', '.join(sorted(by_chip))})", "fit one chip at a time")
    return (
        Deployments.from_rows([p.deployment for p in points]),
        np.array(index),
        np.array(kind),
        np.array(seconds, dtype=np.float64),
    )


@dataclass(frozen=True)
class ServedRuns:
    """The points of ``points`` that are serving runs (:attr:`Point.concurrency`), as the runs
    :func:`tuner.calibrate_serving.predict` scores, with their deployments and engine overheads."""

    rows: np.ndarray  # their indices among the points
    runs: ServingRuns
    deployments: Deployments
    overheads: EngineOverheads


def served_runs(points: list[Point], backend: str) -> ServedRuns | None:
    """The serving runs among ``points`` (None: none), run by ``backend`` with its shipped host
    overheads (``cost_models/serving_overheads``; the ones the serving commands add)."""
    rows = [i for i, p in enumerate(points) if p.concurrency is not None]
    if not rows:
        return None
    served = [points[i] for i in rows]
    runs = ServingRuns(
        model=served[0].deployment.model,  # only names the runs: their deployments are given
        hardware=served[0].deployment.hardware.name,
        backend=backend,
        tp=np.array([p.deployment.mesh[0] * p.deployment.mesh[1] * p.deployment.mesh[2] for p in served], float),
        concurrency=np.array([p.concurrency for p in served], dtype=np.float64),
        prompt_len=np.array([p.deployment.prompt_len for p in served], dtype=np.float64),
        gen_len=np.array([p.deployment.gen_len for p in served], dtype=np.float64),
        ttft_s=np.array([np.nan if p.prefill_latency_s is None else p.prefill_latency_s for p in served]),
        tpot_s=np.array([np.nan if p.decode_step_latency_s is None else p.decode_step_latency_s for p in served]),
        source="bench-json",
        requests_per_client=np.array([p.requests_per_client or 0.0 for p in served], dtype=np.float64),
    )
    return ServedRuns(
        np.array(rows), runs, Deployments.from_rows([p.deployment for p in served]), engine_overheads(backend)
    )


def served_predictions(profile: CalibrationProfile | None, served: ServedRuns) -> tuple[np.ndarray, np.ndarray]:
    """Mean TTFT and TPOT of each serving run under ``profile`` (None: the pure roofline): the
    serving model's closed-loop steady state at the run's clients, prompt and output lengths, with
    the engine's shipped host overheads and the batch cap measured runs are scored with
    (:func:`tuner.calibrate_serving.predict`, :func:`tuner.calibrate_serving.runs_batch_cap`), as
    ``tuner simulate`` / ``estimate --concurrency`` / ``recommend`` add them on top of the profile."""
    result = serving_predict(
        served.runs, served.overheads, calibration=profile, deployments=served.deployments, one_waiting=False
    )
    return result.ttft_s, result.tpot_s


def predict(
    profile: CalibrationProfile | None,
    deployments: Deployments,
    index: np.ndarray,
    kind: np.ndarray,
    served: ServedRuns | None = None,
) -> np.ndarray:
    """Predicted seconds of each observation under ``profile`` (None: the pure roofline): a static
    prefill / decode step by ``estimate``, a serving run's (``served``) TTFT / TPOT by
    :func:`served_predictions`."""
    result = estimate(deployments, calibration=profile)
    both = np.stack([result.prefill.latency_s, result.decode_step_latency_s])
    if served is not None:
        ttft, tpot = served_predictions(profile, served)
        both[0, served.rows] = ttft
        both[1, served.rows] = tpot
    return both[kind, index]


#: A group none of whose measured times comes within this factor of the pure roofline's
#: prediction is refused: its times are not in seconds, or not of the deployments it describes.
#: Pope et al.'s TPU v4 points (data/e2e) come within 1.24-1.83x per group, serving runs of vLLM
#: on H100 within 0.5-0.63x (TTFT and TPOT with the engine's host overheads); the same points
#: with milliseconds in the seconds columns at 1086x and more. Fitted, those put
#: per_step_overhead_s on its upper bound (0.1 s), held out 98-100%, and wrote the profile, exit 0.
SLOWER_THAN_ANY_DEPLOYMENT = 100.0
#: A measured time under this share of its pure roofline is refused: the roofline of a static step
#: is the chip's speed of light, and a serving run's adds the engine's host overheads, which a
#: faster engine may halve (vLLM runs at 0.5x, TTFT), not cut tenfold. The 16 H100 points divided
#: by 1000 were fitted at 0.001x: per_step_overhead_s on its lower bound, profile written, exit 0.
FASTER_THAN_ANY_DEPLOYMENT = 0.1


def _refuse_slower_than_any_deployment(
    points: list[Point],
    index: np.ndarray,
    kind: np.ndarray,
    seconds: np.ndarray,
    roofline: np.ndarray,
    groups: np.ndarray,
) -> None:
    ratio = seconds / np.maximum(roofline, 1e-30)
    fast = int(np.argmin(ratio))
    if ratio[fast] < FASTER_THAN_ANY_DEPLOYMENT:
        d = points[index[fast]].deployment
        raise InvalidInputError(
            f"points group {groups[fast]}",
            f"the {'prefill' if kind[fast] == 0 else 'decode step'} of batch {d.batch}, {d.prompt_len}-token prompts "
            f"on {d.chips} chip(s) took {seconds[fast]:.4g} s, under a tenth of its pure roofline "
            f"({roofline[fast]:.4g} s)",
            "check that the measured columns are in seconds and the row's deployment",
        )
    for group in sorted(set(groups)):
        rows = np.flatnonzero(groups == group)
        i = rows[int(np.argmin(ratio[rows]))]
        if ratio[i] > SLOWER_THAN_ANY_DEPLOYMENT:
            d = points[index[i]].deployment
            what = "prefill" if kind[i] == 0 else "decode step"
            raise InvalidInputError(
                f"points group {group}",
                f"every measured time is over {SLOWER_THAN_ANY_DEPLOYMENT:g}x the pure roofline's (the nearest, the "
                f"{what} of batch {d.batch}, {d.prompt_len}-token prompts on {d.chips} chip(s): {seconds[i]:.4g} s "
                f"against {roofline[i]:.4g} s, {ratio[i]:.0f}x; measured deployments come within 2x)",
                "check that the measured columns are in seconds (not milliseconds) and the rows' deployments",
            )


def fit_end_to_end(
    points: list[Point], base: CalibrationProfile, parameters: tuple[str, ...], train_groups: list[str] | None = None
) -> E2EReport:
    """Fit ``parameters`` of ``base`` on the points of ``train_groups`` (default: all), and report
    the error on every group left out; with no group left out, leave-one-group-out
    cross-validation gives the held-out error."""
    deployments, index, kind, seconds = _observations(points)
    served = served_runs(points, base.backend)
    groups = np.array([points[i].group for i in index])
    unknown = [p for p in parameters if p not in E2E_PARAMETERS]
    if unknown:
        raise InvalidInputError("fit", f"unknown parameter {unknown[0]!r}", f"use {', '.join(E2E_PARAMETERS)}")
    twice = [p for i, p in enumerate(parameters) if p in parameters[:i]]
    if twice:
        # A name given twice was fitted once, and the messages counted and named it twice.
        raise InvalidInputError("--fit", f"{twice[0]!r} is named twice", "name each parameter once")
    if len(seconds) < len(parameters) + 1:
        raise InvalidInputError(
            "points",
            f"{len(seconds)} measurements cannot fit {len(parameters)} parameters",
            "measure more deployments, or fit fewer parameters (--fit)",
        )
    specs = {name: E2E_PARAMETERS[name][0] for name in parameters}
    one_number = set(OVERHEADS) <= set(parameters) and len(layer_counts(points)) == 1

    def model(values: dict[str, float], rows: np.ndarray) -> np.ndarray:
        return predict(apply(base, values), deployments, index, kind, served)[rows]

    train = sorted(set(groups)) if train_groups is None else list(train_groups)
    missing = [g for g in train if g not in set(groups)]
    if missing:
        raise InvalidInputError(
            "train", f"no points in group {missing[0]!r}", f"use groups of {', '.join(sorted(set(groups)))}"
        )
    roofline = predict(None, deployments, index, kind, served)
    _refuse_slower_than_any_deployment(points, index, kind, seconds, roofline, groups)
    train_rows = np.flatnonzero(np.isin(groups, train))
    result = fit(specs, model, seconds, train_rows)
    profile = apply(base, result.values)
    before = predict(base, deployments, index, kind, served)
    after = predict(profile, deployments, index, kind, served)
    held_out: dict[str, GroupError] = {}
    held_predicted = np.full(len(seconds), np.nan)
    unrefitted: list[str] = []  # groups without which too few measurements are left to refit
    for group in sorted(set(groups)):
        rows = np.flatnonzero(groups == group)
        if group in train:
            if len(train) < 2:
                continue  # nothing left to refit without it
            others = np.flatnonzero(np.isin(groups, train) & (groups != group))
            if len(others) < len(parameters) + 1:
                # As few measurements as parameters fit them exactly, or leave them free: two
                # benchmark runs (4 times) for compute_eff, memory_eff and per_layer_overhead_s
                # printed each run 'cross-validated' at 2.1-2.5% from fits on 2 times.
                unrefitted.append(group)
                continue
            refit = fit(specs, model, seconds, others, diagnose=False)
            predicted = model(refit.values, rows)
            how = "cross-validated (fit without this group)"
        else:
            predicted = after[rows]
            how = "held out"
        held_predicted[rows] = predicted
        errors = abs_rel_errors(predicted, seconds[rows])
        base_errors = abs_rel_errors(before[rows], seconds[rows])
        roofline_errors = abs_rel_errors(roofline[rows], seconds[rows])
        held_out[group] = {
            "rows": int(len(rows)),
            "median": float(np.median(errors)),
            "p90": float(np.percentile(errors, 90)),
            "before_median": float(np.median(base_errors)),
            "before_p90": float(np.percentile(base_errors, 90)),
            "roofline_median": float(np.median(roofline_errors)),
            "roofline_p90": float(np.percentile(roofline_errors, 90)),
            "how": how,
        }
    by_quantity: dict[str, QuantityError] = {}
    is_served = np.array([points[i].concurrency is not None for i in index], dtype=bool)
    for k in (0, 1):
        rows = np.flatnonzero((kind == k) & np.isfinite(held_predicted))
        if len(rows):
            errors = abs_rel_errors(held_predicted[rows], seconds[rows])
            by_quantity[_quantity_name(k, is_served[kind == k])] = {
                "rows": int(len(rows)),
                "median": float(np.median(errors)),
                "p90": float(np.percentile(errors, 90)),
                "median_ratio": float(np.median(held_predicted[rows] / seconds[rows])),
                "before_median": float(np.median(abs_rel_errors(before[rows], seconds[rows]))),
            }
    warnings = list(result.warnings)
    for name, e in by_quantity.items():
        if e["median"] > FAR_OFF:
            warnings.append(
                f"{name} held out {e['median']:.0%} off (predicted / measured {e['median_ratio']:.2f}x): "
                f"{', '.join(parameters)} cannot follow it"
                + (
                    f"; the serving model's TTFT also counts {base.backend}'s host overheads "
                    "(cost_models/serving_overheads/), which this fit does not move"
                    if name == "TTFT"
                    else ""
                )
            )
    if unrefitted:
        warnings.append(
            f"no held-out error for {len(unrefitted)} group(s) ({', '.join(unrefitted[:3])}"
            f"{', ...' if len(unrefitted) > 3 else ''}): without one, fewer than {len(parameters) + 1} measurements "
            f"are left to refit {len(parameters)} parameters (measure more deployments, or fit fewer: --fit)"
        )
    if one_number:
        warnings.append(
            f"every point has {layer_counts(points).pop()} layers: per_layer_overhead_s x layers + "
            "per_step_overhead_s is one number, split between the two arbitrarily (fit per_step_overhead_s "
            "alone, or add points of a model with another layer count)"
        )
    if not held_out and not unrefitted:
        # Leave-one-group-out needs two groups: one file without a group column is one group, and
        # its fit printed an empty error table and wrote a profile without an end-to-end error.
        warnings.append(
            f"no held-out error: every point is in group {str(train[0])!r} (add a group column, or pass "
            "the points in several files: each file is a group)"
        )
    return E2EReport(profile, result.values, warnings, train, held_out, by_quantity)


def stamp(
    report: E2EReport, files: list[Path], tool_version: str, measurements: dict[Path, int] | None = None
) -> CalibrationProfile:
    """The fitted profile with where it came from and its held-out error per group.
    ``measurements``: the measured times each file gave (default: its data lines, a points CSV's
    rows; a benchmark JSON's lines are not its runs: one run pretty-printed was 39 rows used)."""
    errors = dict(report.profile.cv_error)
    for group, e in report.held_out.items():
        errors[f"end_to_end/{group}"] = HeldOutError(
            rows=int(e["rows"]),
            median=e["median"],
            p90=e["p90"],
            # The roofline's, as every kernel group's: over a kernel profile "before" is that profile.
            roofline_median=e["roofline_median"],
            roofline_p90=e["roofline_p90"],
            warnings=[str(e["how"])],
        )
    used = []
    for f in files:
        lines = f.read_text(encoding="utf-8").splitlines()
        header = " ".join(line.lstrip("# ").strip() for line in lines if line.startswith("#"))[:300]
        used.append(
            DataFile(
                path=repo_relative_path(f),
                rows_used=(
                    measurements[f]
                    if measurements is not None and f in measurements
                    else sum(1 for line in lines if line and not line.startswith("#")) - 1
                ),
                source=header,
            )
        )
    provenance = Provenance(
        data_files=used,
        fit_date=str(date.today()),
        tool_version=tool_version,
        seed=0,
        folds=len(report.held_out),
        notes=[
            f"end-to-end fit of {', '.join(report.values)} on groups "
            f"{', '.join(report.train_groups)}; other groups held out",
            *report.warnings,
        ],
    )
    return report.profile.model_copy(update={"cv_error": errors, "provenance": provenance})


def report_dict(report: E2EReport, base: str) -> dict[str, Any]:
    """The fit as JSON; ``base``: what ``before_median`` is the error of (the text report's base
    column: the --base profile, the shipped one, or DEFAULTS_LABEL for the kernel formulas at their
    defaults), beside ``roofline_median``, --calibration none's pure roofline."""
    return {
        "profile": report.profile.name,
        "base": base,
        "fitted": report.values,
        "train_groups": report.train_groups,
        "held_out": report.held_out,
        "held_out_by_quantity": report.by_quantity,
        "warnings": report.warnings,
    }
