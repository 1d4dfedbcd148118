"""Fit calibration profiles from kernel measurements (``tuner calibrate``).

For one chip and serving engine: read the kernel tables, fit each operator class of
cost_models/efficiency.py per group (GEMM per format, prefill attention per attention/KV format,
decode attention per KV format, collectives per implementation, kind and group size) with
scipy.optimize.least_squares on log-latency residuals (tuner/fitting.py), cross-validate each
group with k-fold CV over groups of rows, and return a :class:`CalibrationProfile` plus a report.
"""

from __future__ import annotations

import datetime as _dt
import functools
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

import numpy as np

from cost_models.calibration import (
    BACKENDS,
    CalibrationProfile,
    DataFile,
    HeldOutError,
    Provenance,
)
from cost_models.efficiency import (
    ACTIVATION_BYTES,
    GEMM_FORMATS,
    HEAD_DIMS,
    OUTPUT_BYTES,
    QUANTIZES_ACTIVATIONS,
    TILE_M,
    WEIGHT_BYTES,
    WEIGHT_ONLY,
    CollectiveParams,
    DecodeAttentionParams,
    ElementwiseParams,
    FitSpec,
    GemmParams,
    PrefillAttentionParams,
    bus_factor,
    collective_time_of_size_s,
    collective_time_s,
    decode_attention_time_s,
    gemm_time_s,
    peak_for_format,
    prefill_attention_time_s,
)
from cost_models.errors import InvalidInputError
from cost_models.gemm_dispatch import DISPATCHES, FACTOR_FIELDS
from cost_models.gemm_shape import GemmShapeCorrection, fit_shape_correction
from cost_models.hardware import HardwareSpec, SwitchedInterconnect, get_hardware
from tuner.collector_working_set import collector_working_set_bytes
from tuner.fitting import abs_rel_errors, cross_validate, fit
from tuner.kernel_data import (
    CHIP_TO_SYSTEM,
    DEFAULT_FILES,
    REPO_KERNELS,
    SYSTEMS,
    KernelTable,
    read_kernel_table,
    repo_relative_path,
)

SEED = 20260101
FOLDS = 5
MAX_ROWS_PER_GROUP = 300
#: Rows an attention fit reads a group (None: every row). A fit of 500 rows takes about a second,
#: so the draw of MAX_ROWS_PER_GROUP (a GEMM fit's speed choice) is not made: fitted on every row
#: of the group instead of 300 drawn, held out on every row (2026-12-07, the rule written before
#: the run: fewer groups missing 12%, neither class's mean median worse by over 0.1 point), decode
#: attention 2 -> 0 of 33 missing (h200 TRT-LLM bf16 12.0% -> 11.7%, fp8 12.3% -> 11.4%), mean
#: median 8.17% -> 7.87%, p90 29.6% -> 28.7%; prefill 0 of 43, 6.88% -> 6.91%, p90 24.8% -> 23.9%.
ATTENTION_MAX_ROWS_PER_GROUP: int | None = None
ELEMENT_BYTES = {
    "half": 2.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "fp16": 2.0,
    "int8": 1.0,
    "float": 4.0,
    "float32": 4.0,
    "fp8": 1.0,
}
KV_BYTES = {"bfloat16": 2.0, "float16": 2.0, "fp8": 1.0, "int8": 1.0}
#: A kernel may beat the compute peak by at most this factor (boost clocks, timer noise).
PEAK_TOLERANCE = 1.05


@dataclass
class GroupReport:
    """One fitted group: where its rows came from, the fit, and the held-out error."""

    op_class: str
    key: str
    rows: int
    values: dict[str, float]
    cv_median: float
    cv_p90: float
    roofline_median: float
    roofline_p90: float
    warnings: list[str] = field(default_factory=list)
    #: GEMM groups: the measured shape correction built on the full fit's residuals
    #: (cost_models/gemm_shape.py), and the held-out error of the parametric fit alone on the
    #: same rows and folds (cv_median / cv_p90 are the fit and the correction together).
    shape_correction: GemmShapeCorrection | None = None
    fit_only_median: float | None = None
    fit_only_p90: float | None = None
    #: The rows the held-out error is measured on (every row of the group the data holds: the
    #: fit reads at most MAX_ROWS_PER_GROUP of them; tuner.fitting.cross_validate's fit_rows);
    #: None: the ``rows`` fitted.
    held_out_rows: int | None = None

    @property
    def name(self) -> str:
        return f"{self.op_class}/{self.key}"

    def held_out_error(self) -> HeldOutError:
        """The profile's record of this group's held-out error (its cv_error entry)."""
        return HeldOutError(
            rows=self.rows,
            median=self.cv_median,
            p90=self.cv_p90,
            held_out_rows=self.held_out_rows,
            roofline_median=self.roofline_median,
            roofline_p90=self.roofline_p90,
            fit_only_median=self.fit_only_median,
            fit_only_p90=self.fit_only_p90,
            warnings=self.warnings,
        )


def _group_json(group: GroupReport) -> dict:
    """A group's report as JSON; the shape correction's keys only where one was built (tuner
    calibrate --shape-correction), so a fit without it prints what it printed before."""
    shaped = ("shape_correction", "fit_only_median", "fit_only_p90")
    values = {key: value for key, value in group.__dict__.items() if key not in shaped}
    if group.shape_correction is not None:
        values |= {
            "fit_only_median": group.fit_only_median,
            "fit_only_p90": group.fit_only_p90,
            "shape_correction_rows": group.shape_correction.rows,
        }
    return values | {"name": group.name}


@dataclass
class FitReport:
    chip: str
    backend: str
    groups: list[GroupReport]
    seconds: float = 0.0
    #: The fused-MoE class's held-out error per format (the profile's moe_cv_error), where fitted.
    moe: dict[str, HeldOutError] = field(default_factory=dict)
    #: MoE formats measured but not fitted, and why (too few rows or expert shapes).
    moe_not_fitted: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {
            "chip": self.chip,
            "backend": self.backend,
            "seconds": round(self.seconds, 2),
            "groups": [_group_json(g) for g in self.groups],
        }
        if self.moe or self.moe_not_fitted:
            out["moe"] = {name: e.model_dump() for name, e in self.moe.items()}
            out["moe_not_fitted"] = dict(self.moe_not_fitted)
        return out


def _tool_version() -> str:
    try:
        return version("transformer-deploy-tuner")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _subsample(index: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or len(index) <= limit:
        return index
    return np.sort(np.random.default_rng(seed).choice(index, size=limit, replace=False))


def _require_rows(table: KernelTable, rows: np.ndarray, n_params: int, what: str) -> None:
    if len(rows) < max(3 * n_params, 2 * FOLDS):
        raise InvalidInputError(
            table.path,
            f"{what}: {len(rows)} rows for {n_params} parameters",
            f"give at least {max(3 * n_params, 2 * FOLDS)} rows per group (3 per parameter, 2 per fold)",
        )


#: A row faster than this many dispatch floors is said to be near it (the fit's warning).
DISPATCH_NEAR = 1.5
#: A group none of whose rows comes within this factor of its roofline time (the class's model at
#: its default parameters: the chip's peaks, or JAX's dispatch floor where that is longer) is
#: refused: its latencies are not in milliseconds, or not of this chip. In the kernel database
#: (data/kernels, every shipped chip and engine) the row nearest its roofline is at most 1.64x it
#: for GEMMs (56 groups: b200 trtllm nvfp4), 1.59x for decode and 6.2x for prefill attention (33
#: and 43 groups), 15.7x for collectives (153 groups: l40s over PCIe), and at least 0.24x (L2
#: hits), so microseconds in the millisecond column put the nearest row at 238x or more; the tiny
#: sweep of tuner measure on this CPU, read as h100-sxm, at 1217x (as xeon-gold-6242: 5-10x).
#: Fitted instead, such rows put compute_eff and memory_eff on their lower bounds (0.02) and a
#: profile was written, exit 0, with a 32% held-out error (microseconds in a vLLM h100 bf16 file).
SLOWER_THAN_ANY_KERNEL = 100.0
#: Rows over SLOWER_THAN_ANY_KERNEL x their roofline time and over a millisecond (no launch cost
#: comes near) are anomalies: at most 2.3% of a group's rows in data/kernels (7 of 300, b200 SGLang
#: prefill bf16/fp8). A group with more than this share of them is refused: the database's h100
#: vLLM bf16 GEMM rows with every other latency in microseconds (52% such rows) were fitted, held
#: out 99% (p90 46,664%), the profile written, exit 0.
ANOMALOUS_SHARE = 0.10


def _refuse_slower_than_any_kernel(
    op_class: str, key: str, measured: np.ndarray, roofline: np.ndarray, floor_s: float, where: tuple[str, np.ndarray]
) -> None:
    ratio = measured / np.maximum(roofline, max(floor_s, 1e-30))
    i = int(np.argmin(ratio))
    if ratio[i] > SLOWER_THAN_ANY_KERNEL:
        path, lines = where
        raise InvalidInputError(
            f"{path}:{lines[i]}",
            f"every {op_class} {key} row is over {SLOWER_THAN_ANY_KERNEL:g}x its roofline time (the nearest, "
            f"this one, {measured[i] * 1e3:.4g} ms against {roofline[i] * 1e3:.4g} ms: {ratio[i]:.0f}x; measured "
            f"kernels come within 16x)",
            "check that latency is in milliseconds (not microseconds) and that the rows were measured on this chip",
        )
    anomalous = (ratio > SLOWER_THAN_ANY_KERNEL) & (measured > 1e-3)
    # Not for tuner measure's files (a dispatch floor in their header): they are written in ms by
    # the tool, and JAX's emulated bf16 on a CPU puts 20-23% of the tiny sweep's rows past 100x a
    # Xeon's roofline (tests/tuner/test_measure.py fits them as xeon-gold-6242, a functional check).
    if floor_s == 0.0 and anomalous.mean() > ANOMALOUS_SHARE:
        path, lines = where
        j = int(np.argmax(anomalous))
        raise InvalidInputError(
            f"{path}:{lines[j]}",
            f"{int(anomalous.sum())} of {len(measured)} {op_class} {key} rows took over a millisecond and over "
            f"{SLOWER_THAN_ANY_KERNEL:g}x their roofline time (this one {measured[j] * 1e3:.4g} ms against "
            f"{roofline[j] * 1e3:.4g} ms; measured kernels: at most 2.3% of a group's rows)",
            "check that every latency is in milliseconds (not microseconds)",
        )


#: Told each group's report as soon as it is fitted (fit_profile's ``on_group``): the progress
#: lines of `tuner calibrate`. A context variable, not a parameter of every fit_* function.
_GROUP_FITTED: ContextVar[Callable[[GroupReport], None] | None] = ContextVar("group_fitted", default=None)


def _fit_group(
    op_class: str,
    key: str,
    specs: dict,
    predict: Callable,
    measured: np.ndarray,
    cv_keys: np.ndarray,
    roofline: np.ndarray,
    seed: int,
    folds: int,
    fixed: dict | None = None,
    starts: list[dict] | None = None,
    admissible: Callable[[dict[str, float], np.ndarray], bool] | None = None,
    floor_s: float = 0.0,
    where: tuple[str, np.ndarray] | None = None,
    held_out: Callable[[dict[str, float], np.ndarray, np.ndarray], np.ndarray] | None = None,
    fit_rows: np.ndarray | None = None,
) -> GroupReport:
    """``where``: the file and the file line of each fitted row, for the refusal of rows slower
    than any kernel (:data:`SLOWER_THAN_ANY_KERNEL`); ``held_out``: tuner.fitting.cross_validate's
    (the held-out seconds where more than the fit is learned from a fold's training rows);
    ``fit_rows``: the rows the fit reads (default all; tuner.fitting.cross_validate's), the
    held-out error being measured on every row."""
    fitted = np.arange(len(measured)) if fit_rows is None else np.asarray(fit_rows)
    if where is not None:
        _refuse_slower_than_any_kernel(op_class, key, measured[fitted], roofline[fitted], floor_s, where)
    notes = []
    seen = np.ones(len(measured), dtype=bool)  # rows whose error is reported
    if floor_s > 0:
        # tuner measure queues calls back to back, so a row is max(kernel, JAX's dispatch): fitted
        # as such, the profile describes kernels. Fitted as kernels alone, the H200's rows put
        # JAX's 34-47 us dispatch into launch_s, charged to every GEMM of a deployment
        # (docs/benchmarks.md, "tuner measure on an H200"). Errors are reported on the rows whose
        # kernel is seen (a floored prediction of a floored row is right whatever the kernel).
        kernel_time = predict

        def predict(values, idx):
            return np.maximum(kernel_time(values, idx), floor_s)

        near = measured < DISPATCH_NEAR * floor_s
        if near.all():
            notes.append(
                f"every row within {DISPATCH_NEAR:g}x of the dispatch floor ({floor_s * 1e6:.3g} us): "
                "no kernel time is seen; measure larger shapes"
            )
        elif near.any():
            seen = ~near
            notes.append(
                f"{int(near.sum())} of {len(measured)} rows within {DISPATCH_NEAR:g}x of the dispatch floor "
                f"({floor_s * 1e6:.3g} us): fitted as max(kernel, floor); errors are over the other "
                f"{int(seen.sum())}"
            )
    result = fit(specs, predict, measured, fitted, starts=starts, admissible=admissible)
    errors = cross_validate(
        specs,
        predict,
        measured,
        cv_keys,
        folds,
        seed,
        starts=starts,
        admissible=admissible,
        held_out=held_out,
        fit_rows=fit_rows,
    )
    errors = errors[seen]
    roof = abs_rel_errors(roofline[seen], measured[seen])
    values = {**(fixed or {}), **result.values}
    report = GroupReport(
        op_class,
        key,
        len(fitted),
        values,
        float(np.nanmedian(errors)),
        float(np.nanquantile(errors, 0.9)),
        float(np.median(roof)),
        float(np.quantile(roof, 0.9)),
        notes + result.warnings,
        held_out_rows=None if len(fitted) == len(measured) else int(np.isfinite(errors).sum()),
    )
    told = _GROUP_FITTED.get()
    if told is not None:
        told(report)
    return report


# --- GEMM ------------------------------------------------------------------------------------


def _check_speed_of_light(table: KernelTable, rows: np.ndarray, fmt: str, chip: HardwareSpec) -> None:
    c = table.columns
    m, n, k = c["m"][rows], c["n"][rows], c["k"][rows]
    seconds = c["latency"][rows] * 1e-3
    compute = 2.0 * m * n * k / (peak_for_format(chip, fmt) * PEAK_TOLERANCE)
    traffic = n * k * WEIGHT_BYTES[fmt] + m * k * ACTIVATION_BYTES[fmt] + m * n * OUTPUT_BYTES
    # L2 can serve at most its capacity of the traffic for free; the rest comes from HBM.
    memory = np.maximum(traffic - (chip.l2_bytes or 0.0), 0.0) / chip.memory_bandwidth_bytes_per_s
    bad = seconds < np.maximum(compute, memory)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInputError(
            f"{table.path}:{table.lines[rows][i]}",
            f"{fmt} GEMM m={m[i]:g} n={n[i]:g} k={k[i]:g} took {seconds[i] * 1e3:.4g} ms, faster than "
            f"{chip.name}'s speed of light ({max(compute[i], memory[i]) * 1e3:.4g} ms, even with "
            "L2 serving its whole capacity)",
            "check the latency unit (ms) and the chip",
        )


#: GemmParams fitted only on formats whose kernels quantize activations: the quantization pass,
#: and the per-call floor and unaligned-m costs of the engines' fp8 paths (measured there only:
#: cost_models/efficiency.py GemmParams.FIT says which rows).
QUANTIZING_ONLY = (
    "act_quant_passes",
    "quant_row_s",
    "unaligned_m_s",
    "unaligned_m_slowdown",
    "host_floor_s",
    "large_m_launch_s",
    "large_m_switch",
)


#: GemmParams of the engines' GEMV path for few rows, fitted on these formats only: TRT-LLM's
#: SmoothQuant plugin switches to a CUDA-core GEMV at m <= 4 (cost_models/efficiency.py
#: GemmParams.FIT gemv_max_m). Tried on every format: see the GEMM paragraph of docs/accuracy.md.
GEMV_FORMATS = frozenset({"sq"})
GEMV_ONLY = ("gemv_max_m", "gemv_launch_s", "gemv_s_per_output")
#: GemmParams.scale_column_s is fitted on these formats under these engines only: block-scaled
#: weights whose float scales SGLang hands DeepGEMM each call, which re-lays them out on
#: Blackwell (cost_models/efficiency.py GemmParams.FIT). TRT-LLM's DeepGEMM rows show no such
#: cost (fitted at its lower bound on b200/gb200) and vLLM's run under a 170-300 us floor; fitted
#: there too, their medians moved at most 0.35 points either way and the serving check moved
#: through h100 TRT-LLM's refit (TPOT held out 6.2% -> 6.4%, TTFT 16.3% -> 16.6%).
SCALE_FORMATS = frozenset({"fp8_block"})
SCALE_ENGINES = ("sglang",)
#: GemmParams.small_tile_max_m and mid_tile_max_m per (engine, format, chip name), not fitted: where
#: the engine's fp8 GEMM switches CTA tiles by m alone. CUTLASS fp8 scaled_mm on SM90 (vLLM
#: scaled_mm_sm90_fp8_dispatch.cuh: 64x64x128 at m <= 64, 64x128x128 at 64 < m <= 128, 128x128x128
#: above; later copies also split by n; sgl-kernel's sm90_fp8_dispatch_shape is one, in the version
#: read with 64x64 tiles to m = 256). SGLang's rows follow those steps: rows with a few output tiles
#: walk k at ~0.75 ns per k at m <= 64 (h100 n <= 1024, k >= 8192: m=7 n=64 k=65536 47.3 us),
#: 1.1-1.7 ns at m = 65-112 (m=112 n=32 k=65536: 70.3 us) and 2.9-4.7 ns from m = 193 (m=225 n=256
#: k=65536: 197.8 us): one step of the tile per SM, twice the work at each switch; h200 alike (the
#: same m x n and k, m=128 n=256 k=16384: 24.4 us, m=256 n=128: 59.3 us). Held out (median/p90):
#: h200 sglang fp8 8.55/21.74% -> 7.90/18.38%, h100 7.33/22.36% -> 6.27/19.24%; 64x64 tiles to m =
#: 128 alone gave 8.40/19.06% and 6.69/21.35%, to m = 256 (the source read) 9.40/21.36% and
#: 7.29/24.33%. vLLM's own fp8 rows (CutlassFP8ScaledMMLinearKernel, that dispatch): h200 vllm fp8
#: 6.26/19.12% -> 4.71/15.45%, h100 4.85/15.16% -> 4.99/14.54%. Not applied on b200/gb200 (SM100
#: dispatch, 64x64 at m <= 64: SGLang's few-tile rows show no step in m there, and set there it gave
#: b200 sglang fp8 7.64/23.97% -> 9.09/27.57%, gb200 6.19/20.14% -> 6.90/26.32%) or l40s (SM89).
#: GemmParams.kernel_dispatch, also per (engine, format, chip name): vLLM's CUTLASS fp8 scaled_mm
#: and SGLang's sgl-kernel fp8_scaled_mm on SM89 switch configurations by m and n
#: (cost_models/gemm_dispatch.py); each one's speed, dispatch_factor_<class>, is fitted
#: (gemm_specs). Held out: docs/accuracy.md, GEMM, the sixteenth round. SGLang's fp8_block on
#: SM90 runs DeepGEMM, whose heuristic picks a layout by (m, n, k) and the SM count; one wave of
#: its largest blocks ran 2.0-2.5x the model on both h100 and h200 (the seventeenth round). vLLM's
#: fp8_block rows (its own DeepGEMM, under a per-call floor) showed no such step: not set there.
KERNEL_DISPATCH: dict[tuple[str, str, str], dict[str, float | str]] = {
    ("sglang", "fp8", "h100-sxm"): {"small_tile_max_m": 64.0, "mid_tile_max_m": 128.0},
    ("sglang", "fp8", "h200"): {"small_tile_max_m": 64.0, "mid_tile_max_m": 128.0},
    ("vllm", "fp8", "h100-sxm"): {"small_tile_max_m": 64.0, "mid_tile_max_m": 128.0},
    ("vllm", "fp8", "h200"): {"small_tile_max_m": 64.0, "mid_tile_max_m": 128.0},
    ("vllm", "fp8", "l40s"): {"kernel_dispatch": "vllm_sm89_fp8"},
    ("sglang", "fp8", "l40s"): {"kernel_dispatch": "sglang_sm89_fp8"},
    ("sglang", "fp8_block", "h100-sxm"): {"kernel_dispatch": "deepgemm_sm90_fp8_block"},
    ("sglang", "fp8_block", "h200"): {"kernel_dispatch": "deepgemm_sm90_fp8_block"},
}


#: The format names a kernel file's rows may have: the keys the cost model reads a fitted group by
#: (cost_models/calibrated_times.py: gemm_format for GEMMs; f"bfloat16/{cache}" for prefill
#: attention and cache for decode attention, cache from _CACHE_FORMAT: every 8-bit or narrower KV
#: cache is "fp8"). A row of another name ("bf16", "fp8_e4m3") was fitted into a group of that name,
#: which no estimate reads: a prefill attention fitted from "bf16" rows left every estimate on the
#: default parameters (Llama-3.1-8B, 8192-token prompt on one H100: 147 ms against the fit's 159 ms),
#: while the profile listed prefill attention as fitted.
READ_FORMATS: dict[str, tuple[str, ...]] = {
    "gemm_dtype": tuple(GEMM_FORMATS),
    "attn_dtype": ("bfloat16", "fp8"),
    "kv_cache_dtype": ("bfloat16", "fp8"),
}
#: The database's names for a format written otherwise in a user's file.
FORMAT_SPELLINGS = {
    "bf16": "bfloat16",
    "float16": "bfloat16",
    "fp16": "bfloat16",
    "half": "bfloat16",
    "int8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "float8_e4m3fn": "fp8",
}


def _refuse_formats_the_model_never_reads(table: KernelTable, system: str, backend: str) -> None:
    """One line naming the file, row, column and the names to use, for the first row of this
    system and engine whose format column (:data:`READ_FORMATS`) the cost model never reads."""
    c = table.columns
    if table.kind not in ("gemm", "context_attention", "generation_attention"):
        return
    here = (c["system"] == system) & (c["engine"] == backend)
    for column, names in READ_FORMATS.items():
        if column not in c or (column == "attn_dtype" and table.kind != "context_attention"):
            continue
        bad = np.flatnonzero(here & ~np.isin(c[column], names))
        if len(bad):
            value = str(c[column][bad[0]])
            meant = FORMAT_SPELLINGS.get(value.lower())
            hint = f"write {meant} (the kernel database's name)" if meant in names else f"use one of {', '.join(names)}"
            if column == "kv_cache_dtype" and meant == "fp8":
                hint += "; the cost model keys every 8-bit KV cache as fp8"
            raise InvalidInputError(
                f"{table.path}:{table.lines[bad[0]]}",
                f"{column}={value!r} is not a format the cost model reads ({len(bad)} such rows)",
                hint,
            )


def gemm_specs(fmt: str, backend: str, chip: HardwareSpec) -> dict[str, FitSpec]:
    """The GEMM parameters :func:`fit_gemm` fits on rows of ``fmt`` timed under ``backend`` on
    ``chip`` (3 rows per parameter are needed, :func:`_require_rows`)."""
    specs = dict(GemmParams.FIT)
    if fmt not in QUANTIZES_ACTIVATIONS:
        for name in QUANTIZING_ONLY:
            specs.pop(name)
    if fmt not in WEIGHT_ONLY | GEMV_FORMATS:
        # Weight-only kernels dequantize per CTA; SmoothQuant's CUTLASS tiles (m > 4) walk k
        # per CTA at the same kind of cost (GemmParams.FIT dequant_s_per_element).
        specs.pop("dequant_s_per_element")
        specs.pop("dequant_ctas_per_sm")
    if fmt not in GEMV_FORMATS:
        for name in GEMV_ONLY:
            specs.pop(name)
    if fmt not in WEIGHT_ONLY or backend != "trtllm":
        # TRT-LLM's weight-only GEMV at m <= 4 (GemmParams.FIT weight_only_gemv_factor): its
        # plugin's dispatch; other engines' weight-only kernels choose by their own rules.
        specs.pop("weight_only_gemv_factor")
    if fmt not in SCALE_FORMATS or backend not in SCALE_ENGINES:
        specs.pop("scale_column_s")
    dispatch = str(KERNEL_DISPATCH.get((backend, fmt, chip.name), {}).get("kernel_dispatch", ""))
    own = DISPATCHES[dispatch].factor_fields if dispatch else ()
    for name in FACTOR_FIELDS:
        if name not in own:
            specs.pop(name)
    if chip.l2_bytes is None:
        specs.pop("l2_speedup")
        specs.pop("l2_capacity_fraction")
        specs.pop("output_l2_fraction")
    if chip.compute_units is None:
        # Wave quantization, split-K and the CTA saturation count SMs: without an SM count
        # (TPUs, CPUs) they leave the time unchanged, so they are not fitted.
        for name in (
            "wave_weight",
            "split_k_max",
            "half_saturation_ctas",
            "dequant_s_per_element",
            "dequant_ctas_per_sm",
        ):
            specs.pop(name, None)
    return specs


def fit_gemm(
    table: KernelTable,
    chip: HardwareSpec,
    system: str,
    backend: str,
    seed: int,
    folds: int,
    max_rows: int | None,
    shape_correction: bool = False,
    shape_rows: KernelTable | None = None,
) -> list[GroupReport]:
    """Fit each GEMM format of (system, backend) on at most ``max_rows`` rows of ``table`` a
    group. ``shape_correction``: also build each group's measured shape correction
    (cost_models/gemm_shape.py) from every row of the group in ``shape_rows`` (default: in
    ``table``), the held-out error that of the fit and the correction together."""
    shape_table = shape_rows if shape_rows is not None else table
    if shape_correction:
        _refuse_shape_rows(shape_table)
    c = table.columns
    reports = []
    here = (c["system"] == system) & (c["engine"] == backend)
    for fmt in sorted(set(c["gemm_dtype"][here])):
        group_rows = _gemm_group_rows(table, system, backend, fmt)
        rows = _subsample(group_rows, max_rows, seed)
        specs = gemm_specs(fmt, backend, chip)
        fixed: dict[str, float | str] = dict(KERNEL_DISPATCH.get((backend, fmt, chip.name), {}))
        _require_rows(table, rows, len(specs), f"gemm {fmt} on {system}/{backend}")
        _check_speed_of_light(table, rows, fmt, chip)
        # The shape correction learns from every row of the group (not only the fit's
        # subsample; by default every row of the database's, gemm_perf_all_rows.csv.gz, while
        # the fit reads the same 300 rows of gemm_perf.csv.gz as ever): cost_models/gemm_shape.py;
        # not for tuner measure's files, whose rows are max(kernel, JAX's dispatch) (a
        # correction of floored rows would not be the kernel's). README.md, "GEMM shape correction".
        shape = None
        if shape_correction:
            shape_group = group_rows if shape_rows is None else _gemm_group_rows(shape_table, system, backend, fmt)
            if len(shape_group) < len(rows):
                # (the repo's all-rows file holds every row of gemm_perf.csv.gz: 3,000 a group)
                raise InvalidInputError(
                    shape_table.path,
                    f"{len(shape_group)} gemm {fmt} rows on {system}/{backend} for the shape correction, "
                    f"fewer than the {len(rows)} the fit reads from {table.path}",
                    "pass --shape-rows with every row of the kernel file's GEMM groups, or --no-shape-correction",
                )
            shape = _GemmShapeRows(
                shape_table, shape_group, fmt, chip, fixed, _collector_working_set(shape_table, backend, fmt, chip)
            )
        # The held-out error is measured on every row of the group (tuner.fitting.cross_validate's
        # fit_rows): the shape table's, where it holds each of the fit's rows (the repo's
        # gemm_perf_all_rows.csv.gz holds gemm_perf.csv.gz's 700 a group: 3,000 rows measured,
        # where the 300 drawn gave a p90 from 60 rows a fold), else the fit table's.
        scored_table, scored = table, group_rows
        drawn = np.searchsorted(group_rows, rows)
        if shape is not None and shape_rows is not None:
            at = _rows_of(shape_table, shape_group, table, rows)
            if at is not None:
                scored_table, scored, drawn = shape_table, shape_group, at
        t = scored_table.columns
        m, n, k = t["m"][scored], t["n"][scored], t["k"][scored]
        measured = t["latency"][scored] * 1e-3
        working_set = _collector_working_set(table, backend, fmt, chip)
        cycled = working_set(m, n, k)

        def predict(values, idx, m=m, n=n, k=k, fmt=fmt, fixed=fixed, cycled=cycled):
            return gemm_time_s(
                m[idx],
                n[idx],
                k[idx],
                fmt,
                chip,
                GemmParams(**fixed, **values),
                weights_in_l2=True,
                l2_working_set_bytes=None if cycled is None else cycled[idx],
            )

        roofline = gemm_time_s(m, n, k, fmt, chip, GemmParams(), weights_in_l2=True)
        fit_only = np.full(len(scored), np.nan)

        def held_out(
            values, train, test, predict=predict, shape=shape, m=m, n=n, k=k, keys=n * 1_000_003 + k, fit_only=fit_only
        ):
            # The whole pipeline per fold: the fit on the training rows (values), its residuals
            # on the group's rows of the training folds' weight shapes, their correction, the test rows.
            seconds = predict(values, test)
            fit_only[test] = seconds
            if shape is None:  # (held_out is passed only with a shape: below)
                raise RuntimeError("the GEMM shape correction's rows are missing")
            correction = shape.fit(values, excluded_keys=np.unique(keys[test]))
            return seconds * correction.factor(m[test], n[test], k[test])

        report = _fit_group(
            "gemm",
            fmt,
            specs,
            predict,
            measured,
            n * 1_000_003 + k,
            roofline,
            seed,
            folds,
            fixed,
            # Two starts: the split-K depth's loss has a second basin near the former 256.
            starts=[{}, {"split_k_min_depth": 256.0}],
            floor_s=table.dispatch_floor_s,
            where=(table.path, table.lines[rows]),
            # (tuner measure's floored rows: the fit alone, its floor in _fit_group's predict)
            held_out=held_out if shape is not None else None,
            fit_rows=drawn,
        )
        if shape is not None:
            fit_errors = abs_rel_errors(fit_only, measured)
            report.fit_only_median = float(np.nanmedian(fit_errors))
            report.fit_only_p90 = float(np.nanquantile(fit_errors, 0.9))
            report.shape_correction = shape.fit({name: v for name, v in report.values.items() if name not in fixed})
        reports.append(report)
    return reports


def fit_gemm_as_shipped(chip_name: str, backend: str, pinned: KernelTable, every: KernelTable) -> list[GroupReport]:
    """:func:`fit_gemm` of a shipped (chip, engine) as its profile's GEMM fits and stored held-out
    errors were made: on at most MAX_ROWS_PER_GROUP rows a group of ``pinned``
    (data/kernels/gemm_perf.csv.gz), seed SEED, FOLDS folds, with the shape correction learned from
    every row of the group in ``every`` (data/kernels/gemm_perf_all_rows.csv.gz). For the
    maintainer scripts of data/kernels/ that refit or re-measure those groups."""
    chip = get_hardware(chip_name)
    system = CHIP_TO_SYSTEM[chip_name]
    return fit_gemm(
        pinned, chip, system, backend, SEED, FOLDS, MAX_ROWS_PER_GROUP, shape_correction=True, shape_rows=every
    )


def _rows_of(table: KernelTable, index: np.ndarray, other: KernelTable, other_rows: np.ndarray) -> np.ndarray | None:
    """Positions in ``index`` (rows of ``table``) of each of ``other``'s ``other_rows``, matched by
    (m, n, k) and latency; None where one is missing (another file's rows)."""
    c, o = table.columns, other.columns
    where = {(c["m"][i], c["n"][i], c["k"][i], c["latency"][i]): p for p, i in enumerate(index)}
    found = [where.get((o["m"][i], o["n"][i], o["k"][i], o["latency"][i])) for i in other_rows]
    if any(p is None for p in found):
        return None
    return np.array(found, dtype=int)


def _collector_working_set(
    table: KernelTable, backend: str, fmt: str, chip: HardwareSpec
) -> Callable[..., np.ndarray | None]:
    """(m, n, k) -> the bytes ``table``'s collector cycles through between two calls of a row
    (tuner/collector_working_set.py), or None: for tuner measure's files (one operand set a shape)
    and the formats whose collector loop is not known."""

    def working_set(m, n, k):
        if table.dispatch_floor_s > 0.0:
            return None
        return collector_working_set_bytes(backend, fmt, m, n, k, chip.l2_bytes)

    return working_set


def _gemm_group_rows(table: KernelTable, system: str, backend: str, fmt: str) -> np.ndarray:
    """Indices of the rows of one GEMM group (chip, engine, format) of ``table``."""
    c = table.columns
    mask = (c["system"] == system) & (c["engine"] == backend) & (c["gemm_dtype"] == fmt)
    if fmt == "fp8_block":
        # 128x128 block scaling needs n, k multiples of 128; other shapes run a fallback
        # kernel (vLLM: Cutlass instead of DeepGEMM, 2x faster at those tiny shapes).
        mask &= (c["n"] % 128 == 0) & (c["k"] % 128 == 0)
    return np.flatnonzero(mask)


def _refuse_shape_rows(shape_table: KernelTable) -> None:
    if shape_table.kind != "gemm":
        raise InvalidInputError(
            shape_table.path,
            f"holds {shape_table.kind} rows; the GEMM shape correction learns from GEMM rows",
            "pass a GEMM kernel CSV (gemm_dtype, m, n, k, latency) to --shape-rows",
        )
    if shape_table.dispatch_floor_s > 0.0:
        # Its rows are max(kernel, JAX's dispatch): a correction of floored rows would not be the
        # kernel's. Refused, not skipped: a flag the fit ignored would be a silent answer.
        raise InvalidInputError(
            shape_table.path,
            "the GEMM shape correction (--shape-correction) needs kernel rows without a dispatch floor; "
            "this file is tuner measure's",
            "pass --no-shape-correction for tuner measure's files",
        )


class _GemmShapeRows:
    """Every row of one GEMM group, for its shape correction (cost_models/gemm_shape.py): the
    table of the fitted model's log residuals on them, without the rows of ``excluded_keys``
    (weight shapes n * 1_000_003 + k: a held-out fold's)."""

    def __init__(
        self,
        table: KernelTable,
        rows: np.ndarray,
        fmt: str,
        chip: HardwareSpec,
        fixed: dict,
        working_set: Callable[..., np.ndarray | None],
    ) -> None:
        c = table.columns
        self.m, self.n, self.k = (c[a][rows].astype(float) for a in "mnk")
        self.seconds = c["latency"][rows] * 1e-3
        self.keys = self.n * 1_000_003 + self.k
        self.fmt, self.chip, self.fixed = fmt, chip, fixed
        #: (m, n, k) -> the collector's working set (the fit's L2 term), or None.
        self.working_set = working_set
        #: Made monotone in m against the fit (cost_models/gemm_shape.py monotone_in_m).
        self.monotone = True

    def fit(self, values: dict[str, float], excluded_keys: np.ndarray | None = None) -> GemmShapeCorrection:
        return self.fit_params(GemmParams(**self.fixed, **values), excluded_keys)

    def fit_params(self, params: GemmParams, excluded_keys: np.ndarray | None = None) -> GemmShapeCorrection:
        """The correction of ``params`` (a fit; its own correction, if any, is not applied)."""
        params = params.model_copy(update={"shape_correction": None})
        kept = slice(None) if excluded_keys is None else ~np.isin(self.keys, excluded_keys)
        m, n, k = self.m[kept], self.n[kept], self.k[kept]
        fitted = self._seconds(m, n, k, params)

        def fitted_log_time(m, n, k, params=params):
            return np.log(self._seconds(m, n, k, params))

        return fit_shape_correction(
            m, n, k, np.log(self.seconds[kept] / fitted), fitted_log_time=fitted_log_time if self.monotone else None
        )

    def _seconds(self, m, n, k, params: GemmParams) -> np.ndarray:
        """The fit's seconds at (m, n, k) under the collector's conditions."""
        return gemm_time_s(
            m, n, k, self.fmt, self.chip, params, weights_in_l2=True, l2_working_set_bytes=self.working_set(m, n, k)
        )


# --- attention -------------------------------------------------------------------------------

#: Least distinct attention shapes (heads, kv heads) of one head dim for its own kernel speed
#: (held-out folds are grouped by shape, so a head dim with one shape could not be tested).
HEAD_DIM_MIN_SHAPES = 2
#: Least distinct heads / kv heads ratios for kv_bytes_factor to be fitted (with one ratio the K/V
#: bytes are a fixed share of the bytes and their factor is memory_eff's).
KV_RATIO_MIN = 2
#: Least windowed rows whose prompt outruns the window's reach for window_extra_keys to be fitted.
WINDOW_MIN_ROWS = 3


def prefill_specs(
    head_dim: np.ndarray, heads: np.ndarray, kv_heads: np.ndarray, isl: np.ndarray, window: np.ndarray
) -> dict:
    """The prefill parameters fitted on rows of these shapes: the class's FIT, with a kernel
    speed ``head_dim_eff_<d>`` and launch floor ``head_dim_launch_<d>`` for each head dim other
    than the reference one (128, else the one with most rows; compute_eff and launch_s carry its
    speed and floor) that at least HEAD_DIM_MIN_SHAPES attention shapes of the rows have,
    ``kv_bytes_factor`` where the rows hold KV_RATIO_MIN heads / kv heads ratios, and
    ``window_extra_keys`` and ``window_skip_cost`` where WINDOW_MIN_ROWS windowed rows have
    prompts longer than window + 128 (elsewhere they cannot change a prediction of these rows),
    with a reach ``head_dim_window_<d>`` for each head dim with its own speed where as many of
    those rows have that head dim, and other head dims have windowed rows too (else
    window_extra_keys is the reach of the head dim with most windowed rows)."""
    specs = {k: v for k, v in PrefillAttentionParams.FIT.items() if not k.startswith(("head_dim_", "window_skip"))}
    if len(np.unique(heads / kv_heads)) < KV_RATIO_MIN:
        specs.pop("kv_bytes_factor")
    long_windowed = (window > 0) & (isl > window + TILE_M)
    if np.count_nonzero(long_windowed) < WINDOW_MIN_ROWS:
        specs.pop("window_extra_keys")
    specs |= _head_dim_specs(PrefillAttentionParams.FIT, head_dim, heads, kv_heads)
    if "window_extra_keys" in specs:
        specs["window_skip_cost"] = PrefillAttentionParams.FIT["window_skip_cost"]
        rows_at = {d: np.count_nonzero(long_windowed & (head_dim == d)) for d in HEAD_DIMS}
        own = [d for d in HEAD_DIMS if f"head_dim_eff_{d}" in specs and rows_at[d] >= WINDOW_MIN_ROWS]
        if own and sum(rows_at[d] for d in HEAD_DIMS if d not in own) < WINDOW_MIN_ROWS:
            # No windowed rows of the other head dims: window_extra_keys is this head dim's reach.
            own.remove(max(own, key=lambda d: rows_at[d]))
        for d in own:
            specs[f"head_dim_window_{d}"] = PrefillAttentionParams.FIT[f"head_dim_window_{d}"]
    return specs


def _head_dim_specs(fit_specs: dict, head_dim: np.ndarray, heads: np.ndarray, kv_heads: np.ndarray) -> dict:
    """``head_dim_eff_<d>`` (and ``head_dim_launch_<d>`` where ``fit_specs`` has it) for each head
    dim other than the reference one (128, else the one with most rows) that at least
    HEAD_DIM_MIN_SHAPES attention shapes have."""
    specs = {}
    dims, counts = np.unique(head_dim, return_counts=True)
    reference = 128 if 128 in dims else int(dims[np.argmax(counts)])
    for d in HEAD_DIMS:
        shapes = {(a, b) for a, b, x in zip(heads, kv_heads, head_dim, strict=True) if x == d}
        if d != reference and len(shapes) >= HEAD_DIM_MIN_SHAPES:
            specs[f"head_dim_eff_{d}"] = fit_specs[f"head_dim_eff_{d}"]
            if f"head_dim_launch_{d}" in fit_specs:
                specs[f"head_dim_launch_{d}"] = fit_specs[f"head_dim_launch_{d}"]
    return specs


def fit_prefill(
    table: KernelTable, chip: HardwareSpec, system: str, backend: str, seed: int, folds: int, max_rows: int | None
) -> list[GroupReport]:
    c = table.columns
    here = (c["system"] == system) & (c["engine"] == backend)
    reports = []
    window_all = c.get("window_size", np.zeros(len(table)))
    for attn, kv in sorted(set(zip(c["attn_dtype"][here], c["kv_cache_dtype"][here], strict=True))):
        mask = here & (c["attn_dtype"] == attn) & (c["kv_cache_dtype"] == kv)
        group = np.flatnonzero(mask)
        rows = _subsample(group, max_rows, seed)
        drawn = np.searchsorted(group, rows)  # the fit's rows, as positions in the group
        b, s, h, hk, d = (c[x][group] for x in ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim"))
        w = window_all[group]
        specs = prefill_specs(d[drawn], h[drawn], hk[drawn], s[drawn], w[drawn])
        if chip.l2_bytes is None:
            specs.pop("l2_speedup")  # no L2 figure: the L2-resident term is always 0
        _require_rows(table, rows, len(specs), f"context attention {attn}/{kv} on {system}/{backend}")
        measured = c["latency"][group] * 1e-3
        fmt: Literal["bfloat16", "fp8"] = "fp8" if attn == "fp8" else "bfloat16"
        kvb = KV_BYTES.get(kv, 2.0)

        def predict(values, idx, b=b, s=s, h=h, hk=hk, d=d, w=w, fmt=fmt, kvb=kvb):
            return prefill_attention_time_s(
                b[idx],
                s[idx],
                h[idx],
                hk[idx],
                d[idx],
                chip,
                PrefillAttentionParams(**values),
                window=w[idx],
                compute_format=fmt,
                kv_bytes_per_element=kvb,
                in_l2=True,  # the collector runs one layer's kernel again and again on the same Q/K/V
            )

        roofline = prefill_attention_time_s(
            b, s, h, hk, d, chip, PrefillAttentionParams(), window=w, compute_format=fmt, kv_bytes_per_element=kvb
        )
        cv_keys = h * 1_000_000 + hk * 1000 + d
        reports.append(
            _fit_group(
                "prefill_attention",
                f"{attn}/{kv}",
                specs,
                predict,
                measured,
                cv_keys,
                roofline,
                seed,
                folds,
                floor_s=table.dispatch_floor_s,
                where=(table.path, table.lines[rows]),
                fit_rows=drawn,
            )
        )
    return reports


#: Engines whose decode attention regroups query heads by copy (DecodeAttentionParams.regroup_copy_s,
#: fitted on their groups only): vLLM runs FlashAttention-2 on Ampere and Ada, and the step is
#: measured there; SGLang (FlashInfer/Triton) and TRT-LLM (XQA) show none (within 0.5 us).
REGROUPING_ENGINES = ("vllm",)
#: Kernels (kernel_source) that run windowed decode rows ungrouped, a CTA per (sequence, query
#: head) with no split-KV (DecodeAttentionParams.window_walk_s_per_element, window_walk_ctas,
#: window_kv_head_factor, fitted on groups with windowed rows of these kernels only): vLLM's
#: FlashAttention-2 (l40s; a100's rows, named without the version, have no window). Fitted on
#: every vLLM group with windowed rows instead (FA3/FA4/FlashInfer/Triton kernels fit the factor
#: at 0.85-1), held out (all 33 groups) 1 -> 0 miss 12% too, mean median 8.02% -> 8.02%, but 7
#: groups worse by up to 0.47 points (h100 vllm bf16 6.6% -> 7.1%, l40s vllm fp8 8.1% -> 8.5%).
WINDOW_UNGROUPED_KERNELS = ("vllm_flash_attn_fa2", "vllm_flash_attn")
#: KV cache formats whose decode attention has a launch floor of its own for rows with one query
#: head per KV head (DecodeAttentionParams.ungrouped_launch, fitted on those groups only). Median
#: floor of MHA rows over grouped ones (kv_len <= 63, batch <= 8, data/kernels/
#: generation_attention_perf.csv.gz): fp8 KV 1.39-1.44 under TRT-LLM on h100/h200/l40s, 1.10-1.24
#: under SGLang on h100/h200, 0.98-1.04 in the other fp8 groups; bf16 KV 0.93-1.05 in every group
#: but vLLM's on a100/l40s (0.60-0.66: their grouped rows pay regroup_copy_s). Fitted on every
#: group with MHA shapes instead, held out (all 33 groups) it moved the bf16 groups by up to
#: 0.9 points either way (h100 vllm bf16 6.6% -> 7.5%, l40s sglang bf16 9.1% -> 8.0%) at
#: fitted values of 0.82-1.04.
UNGROUPED_LAUNCH_KV = ("fp8",)


def decode_specs(
    head_dim: np.ndarray,
    heads: np.ndarray,
    kv_heads: np.ndarray,
    window: np.ndarray,
    chip: HardwareSpec,
    backend: str | None = None,
    kv_cache: str | None = None,
    kernels: np.ndarray | None = None,
) -> dict:
    """The decode parameters fitted on rows of these shapes: the class's FIT, with a streaming
    speed and launch floor per head dim as prefill_specs has them, ``ungrouped_eff`` where
    HEAD_DIM_MIN_SHAPES shapes have one query head per KV head and as many have more (both kinds
    held out), with ``ungrouped_launch`` where the KV cache format (``kv_cache``) is one of
    UNGROUPED_LAUNCH_KV, ``l2_speedup`` and ``l2_steepness`` where the chip has an L2 figure,
    ``window_per_head_s``, ``window_long_s`` and ``window_long_kv_len`` where some rows have a
    sliding window, ``regroup_copy_s`` under the REGROUPING_ENGINES, and ``window_walk_s_per_element``,
    ``window_walk_ctas`` and ``window_kv_head_factor`` where some windowed rows' ``kernels`` (the
    kernel_source column) are one of WINDOW_UNGROUPED_KERNELS."""
    specs = {k: v for k, v in DecodeAttentionParams.FIT.items() if not k.startswith("head_dim_")}
    specs |= _head_dim_specs(DecodeAttentionParams.FIT, head_dim, heads, kv_heads)
    shapes = set(zip(heads, kv_heads, head_dim, strict=True))
    ungrouped = sum(q == k for q, k, _ in shapes)
    if min(ungrouped, len(shapes) - ungrouped) < HEAD_DIM_MIN_SHAPES:
        specs.pop("ungrouped_eff")
        specs.pop("ungrouped_kv_head_factor")
        specs.pop("ungrouped_launch")
    elif kv_cache not in UNGROUPED_LAUNCH_KV:
        specs.pop("ungrouped_launch")
    if chip.l2_bytes is None:
        specs.pop("l2_speedup")  # no L2 figure: the L2-resident term is always 0
        specs.pop("l2_steepness")
    if not np.any(window > 0):
        for name in ("window_per_head_s", "window_long_s", "window_long_kv_len"):
            specs.pop(name)  # no sliding-window rows to fit them on
    fa2 = np.isin(kernels, WINDOW_UNGROUPED_KERNELS) if kernels is not None else np.zeros(len(window), bool)
    if not np.any(fa2 & (window > 0)):
        # FlashAttention-2's unswapped path: groups with windowed rows measured on that kernel.
        specs.pop("window_walk_s_per_element")
        specs.pop("window_walk_ctas")
        specs.pop("window_kv_head_factor")
    if backend not in REGROUPING_ENGINES:
        specs.pop("regroup_copy_s")
    return specs


def fit_decode(
    table: KernelTable, chip: HardwareSpec, system: str, backend: str, seed: int, folds: int, max_rows: int | None
) -> list[GroupReport]:
    c = table.columns
    here = (c["system"] == system) & (c["engine"] == backend)
    reports = []
    window_all = c.get("window_size", np.zeros(len(table)))
    for kv in sorted(set(c["kv_cache_dtype"][here])):
        mask = here & (c["kv_cache_dtype"] == kv)
        kvb = KV_BYTES.get(kv, 2.0)
        too_fast = mask & _decode_faster_than_light(table, window_all, kvb, chip)
        mask &= ~too_fast
        group = np.flatnonzero(mask)
        rows = _subsample(group, max_rows, seed)
        drawn = np.searchsorted(group, rows)  # the fit's rows, as positions in the group
        b, h, hk, d = (c[x][group] for x in ("batch_size", "num_heads", "num_key_value_heads", "head_dim"))
        w = window_all[group]
        kernels = c["kernel_source"][rows] if "kernel_source" in c else None
        specs = decode_specs(d[drawn], h[drawn], hk[drawn], w[drawn], chip, backend, kv, kernels)
        _require_rows(table, rows, len(specs), f"generation attention kv {kv} on {system}/{backend}")
        kv_len = np.maximum(c["step"][group], 1.0)
        measured = c["latency"][group] * 1e-3

        def predict(values, idx, b=b, h=h, hk=hk, d=d, kv_len=kv_len, kvb=kvb, w=w):
            return decode_attention_time_s(
                b[idx],
                kv_len[idx],
                h[idx],
                hk[idx],
                d[idx],
                kvb,
                chip,
                DecodeAttentionParams(**values),
                window=w[idx],
                kv_in_l2=True,  # the collector times one layer's kernel again and again
            )

        roofline = decode_attention_time_s(b, kv_len, h, hk, d, kvb, chip, DecodeAttentionParams(), window=w)
        cv_keys = h * 1_000_000 + hk * 1000 + d
        report = _fit_group(
            "decode_attention",
            kv,
            specs,
            predict,
            measured,
            cv_keys,
            roofline,
            seed,
            folds,
            floor_s=table.dispatch_floor_s,
            where=(table.path, table.lines[rows]),
            fit_rows=drawn,
        )
        if too_fast.any():
            i = int(np.argmax(too_fast))
            report.warnings.append(
                f"{int(too_fast.sum())} rows faster than the speed of light left out (e.g. line "
                f"{table.lines[i]}: batch {c['batch_size'][i]:g}, kv_len {c['step'][i]:g}, "
                f"{c['num_key_value_heads'][i]:g} KV heads of dim {c['head_dim'][i]:g})"
            )
        reports.append(report)
    return reports


def _decode_faster_than_light(
    table: KernelTable, window: np.ndarray, kv_bytes: float, chip: HardwareSpec
) -> np.ndarray:
    """Rows of a generation-attention table that read their KV cache faster than the chip can:
    latency below (KV bytes - the whole L2) / HBM bandwidth, the bandwidth given PEAK_TOLERANCE
    (as the GEMM speed-of-light check, _check_speed_of_light, gives the compute peak). Such a row
    does not measure the shape its columns give, and the fit leaves it out (named in the group's
    warnings). The criterion is the roofline's, the same for every group, not a choice per row:
    in data/kernels it drops 33 of the 500 a100 TRT-LLM bf16 rows (batch 32, kv_len 16383, 2 KV
    heads of dim 128: 0.54 GB in 0.203 ms, 2.65 TB/s on a 2.04 TB/s chip; rows of 1-4 GB at
    1.4-1.7x) and no other row (the nearest, h100 SGLang bf16 batch 256 kv_len 8191, one KV head
    of dim 192: 1.61 GB at 1.03x the 3.35 TB/s, is within the tolerance)."""
    c = table.columns
    kv_len = np.maximum(c["step"], 1.0)
    kv_len = np.where(window > 0, np.minimum(kv_len, window), kv_len)
    kv_total = c["batch_size"] * kv_len * c["num_key_value_heads"] * c["head_dim"] * 2.0 * kv_bytes
    floor_s = np.maximum(kv_total - (chip.l2_bytes or 0.0), 0.0) / (chip.memory_bandwidth_bytes_per_s * PEAK_TOLERANCE)
    return c["latency"] * 1e-3 < floor_s


# --- collectives -----------------------------------------------------------------------------


def _implementation(row_impl: str) -> str:
    impl = str(row_impl).lower()
    if impl.endswith("graph"):
        return "custom_graph"
    if impl.endswith("eager"):
        return "custom_eager"
    return "custom"


#: The third (mid) protocol regime of CollectiveParams (fitted where _collective_specs says).
MID_REGIME = ("mid_switch_bytes", "mid_latency_s", "mid_bandwidth_bytes_per_s")
#: Collectives that add what they receive (CollectiveParams.reduce_s_per_element).
REDUCING = ("all_reduce", "reduce_scatter")


def _fit_collective_rows(
    table: KernelTable,
    rows: np.ndarray,
    kind: str,
    impl: str,
    group: int,
    bytes_all: np.ndarray,
    element_all: np.ndarray,
    seed: int,
    folds: int,
    chip: HardwareSpec,
) -> GroupReport:
    element = element_all[rows]
    specs, two_lines = _collective_specs(kind, len(rows), len(np.unique(element)), folds, impl)
    _require_rows(table, rows, len(two_lines), f"{impl} {kind} over {group} GPUs")
    message = bytes_all[rows]
    measured = table.columns["latency"][rows] * 1e-3

    def predict(values, idx, message=message, element=element):
        params = CollectiveParams(**values)
        if group <= 1:  # free (collective_time_s's rule)
            return collective_time_s(kind, message[idx], group, {group: params}, impl, element_bytes=element[idx])
        # One group size: collective_time_of_size_s, the same numbers as collective_time_s
        # without its per-call grouping by size (np.unique, broadcasts), a third of a fit's time.
        return collective_time_of_size_s(kind, message[idx], group, {group: params}, element[idx])

    net = chip.interconnect
    roof_params = CollectiveParams(
        latency_s=0.0,
        bandwidth_bytes_per_s=(
            net.domain_bandwidth_bytes_per_s
            if isinstance(net, SwitchedInterconnect)
            else net.link_bandwidth_bytes_per_s
        ),
    )
    roofline = np.maximum(collective_time_s(kind, message, group, {group: roof_params}, impl), 1e-30)
    # The switch size is searched from several starts (the loss is flat in it away from the knee).
    # Starts with the mid step at its upper bound (1e10 bus bytes, past every row: the two-line
    # model) keep its fits within reach; then the mid step below the switch at four scales.
    starts = [
        {"switch_bytes": 1e4, "mid_switch_bytes": 1e10},
        {"switch_bytes": 1e5, "mid_switch_bytes": 1e10},
        {"switch_bytes": 1e6, "mid_switch_bytes": 1e10},
        {
            "switch_bytes": 1e7,
            "latency_s": 1e-4,
            "small_latency_s": 1e-5,
            "bandwidth_bytes_per_s": 3e11,
            "small_bandwidth_bytes_per_s": 3e9,
            "mid_switch_bytes": 1e10,
        },
    ]
    if "mid_switch_bytes" in specs:
        starts += [
            {"switch_bytes": 1e5, "mid_switch_bytes": 1e4},
            {"switch_bytes": 1e6, "mid_switch_bytes": 1e4},
            {"switch_bytes": 1e7, "mid_switch_bytes": 1e6, "latency_s": 1e-4, "bandwidth_bytes_per_s": 3e11},
            {"switch_bytes": 1e8, "mid_switch_bytes": 1e7, "mid_latency_s": 1e-4, "mid_bandwidth_bytes_per_s": 1e12},
        ]
    bus = message * bus_factor(kind, group)

    def admissible(values, idx, bus=bus):
        return _regimes_hold_sizes(values, bus[idx])

    return _fit_group(
        "collectives",
        f"{impl}/{kind}/{group}",
        specs,
        predict,
        measured,
        table.columns["message_size"][rows],
        roofline,
        seed,
        folds,
        starts=starts,
        admissible=admissible,
        floor_s=table.dispatch_floor_s,
        where=(table.path, table.lines[rows]),
    )


#: Least distinct message sizes of the training rows each protocol regime of a collective fit
#: must hold (_regimes_hold_sizes): a regime's line has two parameters, and a third size checks it.
MIN_SIZES_PER_REGIME = 3


def _regimes_hold_sizes(values: dict[str, float], bus_bytes: np.ndarray) -> bool:
    """Whether every regime of a CollectiveParams solution holds MIN_SIZES_PER_REGIME distinct
    sizes (bus bytes) of the rows it was fitted on: below the switch and above it, and with the
    mid regime in the model and its step below the switch, below the mid step and between the two.

    The fit keeps the lowest-cost solution of its starts that passes (tuner.fitting.fit's
    ``admissible``), so a step is placed only where the training rows show it: without the rule a
    training fold lacking the rows around a noisy size put a regime in the gap (h100 SGLang eager
    custom all-reduce over 8 GPUs, data/kernels/custom_allreduce_perf.csv.gz: flat at 30-38 us
    to 4 MB with one 78 us row at 8 KB; a fold holding out 2 and 4 KB put a 10 ms mid line
    between 1 and 8 KB, no training row in it, and predicted 4.8 ms for the 32 us row at 4 KB)."""
    if "switch_bytes" not in values:
        return True
    sizes = np.unique(bus_bytes)
    switch = values["switch_bytes"]
    mid = values.get("mid_switch_bytes")
    edges = [mid, switch] if mid is not None and mid < switch else [switch]
    counts = np.histogram(sizes, bins=[0.0, *edges, np.inf])[0]
    return bool((counts >= MIN_SIZES_PER_REGIME).all())


#: Least training rows per parameter in every cross-validation fold for the mid regime.
MID_ROWS_PER_PARAMETER = 2


def _collective_specs(
    kind: str, rows: int, element_sizes: int, folds: int = FOLDS, implementation: str = "nccl"
) -> tuple[dict[str, FitSpec], dict[str, FitSpec]]:
    """The CollectiveParams fitted on ``rows`` rows of ``kind`` holding ``element_sizes`` element
    sizes (cross-validated in ``folds`` folds), and the two-line subset the row count is checked
    against (_require_rows: 3 rows per parameter). ``reduce_s_per_element`` only for a reducing
    kind with two element sizes (with one it is the bandwidth's share).

    The mid regime (MID_REGIME) where each training fold of the k-fold cross-validation keeps
    MID_ROWS_PER_PARAMETER rows per parameter (2), each regime holding 3 sizes of them
    (_regimes_hold_sizes): the NCCL groups (42 rows, 33-34 training rows for 8-9 parameters) and
    the custom all-reduce groups (23 rows, one per size: 18-19 training rows for 8 parameters).
    Held out, custom all-reduce groups missing 10%: 7 of 85 with two lines, 0 with the mid regime
    (a100 TRT-LLM over 4 GPUs 16.7% -> 2.6%, over 8 GPUs 15.6% -> 6.0%; h100 SGLang eager over 8
    GPUs 12.0% -> 6.0%; h200 SGLang graph over 8 GPUs 10.7% -> 2.9%; l40s vLLM eager over 2 and 4
    GPUs 12.3% -> 4.0%, 10.3% -> 1.7%; l40s SGLang eager over 4 GPUs 10.4% -> 9.2%), the worst
    median 16.7% -> 9.2%, the median of the groups' p90 19.6% -> 13.9%. Before the regime rule
    (_regimes_hold_sizes) the mid regime took them to 1 of 85 too, but a fold lacking the rows
    around a noisy size put a step in the gap (h100 SGLang eager over 8 GPUs p90 53% -> 195%),
    and the custom groups kept two lines (3 rows per parameter). Tried instead: a flat small line
    to stay at 3 rows per parameter (7 parameters): 3 of 85 missing, two of them new (l40s
    SGLang eager and TRT-LLM over 8 GPUs 6.5% -> 12.0%, 6.4% -> 12.7%); 2 sizes per regime
    instead of 3: 0 of 85 missing too, the median p90 16.0% (17 groups' p90 up by 5 points or
    more, 10 with 3 sizes).

    ``small_overlap_power`` (CollectiveParams: the small line as a soft max of its floor and its
    transfer) only for ``implementation`` "nccl": NCCL's LL/LL128 protocols pipeline each hop's
    latency with the data, while the custom all-reduces are one-shot kernels (launch and barrier,
    then the copy), whose floor adds to the transfer. Fitted on every group, the power took the
    custom groups 0 -> 2 of 85 missing (l40s SGLang eager over 4 GPUs 9.2% -> 12.0%, TRT-LLM over
    8 GPUs 6.1% -> 11.7%); on NCCL only the custom fits are unchanged (the same formula) and the
    NCCL groups missing 10% go 3 -> 0 of 204 (l40s alltoall over 8 GPUs 10.0% -> 5.2%), mean
    median 3.21% -> 3.23%, median p90 11.0% -> 10.0%; 18 of the 68 NCCL fits better, 19 worse,
    most by under a point (b200 all_gather over 4 GPUs 1.9% -> 4.4%, p90 15% -> 33%; h100
    alltoall over 4 GPUs p90 13% -> 26%; h200 all_gather over 8 GPUs 5.5% -> 7.1%)."""
    specs = dict(CollectiveParams.FIT)
    if kind not in REDUCING or element_sizes < 2:
        specs.pop("reduce_s_per_element")
    if implementation != "nccl":
        specs.pop("small_overlap_power")
    two_lines = {k: v for k, v in specs.items() if k not in MID_REGIME}
    if rows * (folds - 1) / folds >= MID_ROWS_PER_PARAMETER * len(specs):
        return specs, two_lines
    return two_lines, two_lines


def fit_nccl(table: KernelTable, chip: HardwareSpec, system: str, seed: int, folds: int) -> list[GroupReport]:
    c = table.columns
    here = c["system"] == system
    element = np.array([ELEMENT_BYTES.get(str(x).lower(), np.nan) for x in c["nccl_dtype"]])
    bad = here & ~np.isfinite(element)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInputError(
            f"{table.path}:{table.lines[i]}",
            f"unknown nccl_dtype {c['nccl_dtype'][i]!r}",
            f"use one of {', '.join(ELEMENT_BYTES)}",
        )
    message_bytes = c["message_size"] * element
    reports = []
    for kind in sorted(set(c["op_name"][here])):
        if kind not in ("all_reduce", "all_gather", "reduce_scatter", "alltoall"):
            continue
        for group in sorted(set(c["num_gpus"][here & (c["op_name"] == kind)])):
            rows = np.flatnonzero(here & (c["op_name"] == kind) & (c["num_gpus"] == group))
            reports.append(
                _fit_collective_rows(table, rows, kind, "nccl", int(group), message_bytes, element, seed, folds, chip)
            )
    return reports


def fit_custom_allreduce(
    table: KernelTable, chip: HardwareSpec, system: str, backend: str, seed: int, folds: int
) -> list[GroupReport]:
    c = table.columns
    here = (c["system"] == system) & (c["engine"] == backend)
    # kernel_source names the implementation: TRTLLM, vLLM_custom_graph, SGLang_..._eager, ...
    impl_col = c.get("kernel_source", np.array(["custom"] * len(table), dtype=object))
    impls = np.array([_implementation(x) for x in impl_col], dtype=object)
    element = np.array([ELEMENT_BYTES.get(str(x).lower(), 2.0) for x in c["allreduce_dtype"]])
    message_bytes = c["message_size"] * element
    reports = []
    for impl in sorted(set(impls[here])):
        for group in sorted(set(c["num_gpus"][here & (impls == impl)])):
            rows = np.flatnonzero(here & (impls == impl) & (c["num_gpus"] == group))
            reports.append(
                _fit_collective_rows(
                    table, rows, "all_reduce", impl, int(group), message_bytes, element, seed, folds, chip
                )
            )
    return reports


# --- the profile -----------------------------------------------------------------------------


def fit_profile(
    kernel_files: list[str | Path] | None,
    chip: str,
    backend: str,
    *,
    seed: int = SEED,
    folds: int = FOLDS,
    max_rows_per_group: int | None = MAX_ROWS_PER_GROUP,
    system: str | None = None,
    on_group: Callable[[GroupReport], None] | None = None,
    shape_correction: bool | None = None,
    shape_rows: str | Path | None = None,
    attention_max_rows_per_group: int | None = ATTENTION_MAX_ROWS_PER_GROUP,
) -> tuple[CalibrationProfile, FitReport]:
    """Fit a profile for ``chip`` (catalog name) under ``backend`` from kernel measurement files
    (default: the repo's data/kernels copies). ``system``: the files' name for the chip (their
    ``system`` column; default: the kernel database's name for a catalog chip, e.g. h100_sxm, or
    what ``tuner measure --system`` wrote). With the repo's files, the profile also gets the fused
    MoE kernel class fitted on data/kernels/moe_perf.csv.gz (``moe``). Returns the profile and
    the per-group report. ``on_group``: told each group's report as it is fitted (a group fitted
    earlier in this process from the same collectives file is not fitted again, nor told).
    ``shape_correction``: also build each GEMM group's measured shape correction
    (cost_models/gemm_shape.py) from every row of the group in ``shape_rows``, its held-out
    error that of the fit and the correction together (README.md, "GEMM shape correction").
    By default (None) it is built where rows for it are known: from the repo's
    data/kernels/gemm_perf_all_rows.csv.gz when fitting the repo's data (as the shipped
    profiles), from ``shape_rows`` when given; not from a user's kernel files alone (True:
    from their own GEMM rows). False: none. ``max_rows_per_group``: the rows a GEMM fit draws a
    group, ``attention_max_rows_per_group`` an attention fit's (default every row); each group's
    held-out error is measured on every row."""
    shape_correction, shape_file = shape_correction_rows(kernel_files, shape_correction, shape_rows)
    token = _GROUP_FITTED.set(on_group)
    try:
        return _fit_profile(
            kernel_files,
            chip,
            backend,
            seed,
            folds,
            max_rows_per_group,
            system,
            shape_correction,
            shape_file,
            attention_max_rows_per_group,
        )
    finally:
        _GROUP_FITTED.reset(token)


#: Every row of the kernel database's GEMM groups (3,000 a group; gemm_perf.csv.gz keeps 700 of
#: them, of which the parametric fit reads 300): what the shape correction learns from by default
#: (data/kernels/subsample.py).
ALL_GEMM_ROWS = REPO_KERNELS / "gemm_perf_all_rows.csv.gz"


def shape_correction_rows(
    kernel_files: list[str | Path] | None, shape_correction: bool | None, shape_rows: str | Path | None
) -> tuple[bool, Path | None]:
    """(whether to build the GEMM shape correction, the file of its rows; None: each kernel
    file's own GEMM rows), by :func:`fit_profile`'s rules."""
    if shape_correction is False:
        if shape_rows is not None:
            raise InvalidInputError(
                "--shape-rows", "given with --no-shape-correction", "drop one of --shape-rows and --no-shape-correction"
            )
        return False, None
    if shape_rows is not None:
        return True, Path(shape_rows)
    if kernel_files is None:
        return True, ALL_GEMM_ROWS
    return bool(shape_correction), None


def _fit_profile(
    kernel_files: list[str | Path] | None,
    chip: str,
    backend: str,
    seed: int,
    folds: int,
    max_rows_per_group: int | None,
    system: str | None,
    shape_correction: bool = False,
    shape_file: Path | None = None,
    attention_rows: int | None = ATTENTION_MAX_ROWS_PER_GROUP,
) -> tuple[CalibrationProfile, FitReport]:
    import time

    started = time.perf_counter()
    if backend not in BACKENDS:
        raise InvalidInputError("backend", f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    hardware = get_hardware(chip)
    if system is None and chip not in CHIP_TO_SYSTEM:
        raise InvalidInputError(
            "hardware",
            f"the kernel database names no system for {chip}",
            "pass --system, the system name your measurement files use (tuner measure --system)",
        )
    system = system or CHIP_TO_SYSTEM[chip]
    files = [Path(f) for f in (kernel_files or [REPO_KERNELS / name for name in DEFAULT_FILES])]
    tables = [_read_cached(str(f)) for f in files]
    shape_table = _read_cached(str(shape_file)) if shape_correction and shape_file is not None else None
    reports: list[GroupReport] = []
    used: list[DataFile] = []
    fitted_from: dict[str, str] = {}  # group -> the file it was fitted on
    # Fused-MoE kernels are fitted last, on top of the GEMM fit: their rows read (and refused)
    # before any fit starts.
    moe_rows = _moe_rows_to_fit([t for t in tables if t.kind == "moe"], tables, system, backend)
    for table in tables:
        if table.kind == "moe":
            continue
        c = table.columns
        before = len(reports)
        _refuse_formats_the_model_never_reads(table, system, backend)
        if table.kind == "gemm":
            reports += fit_gemm(
                table, hardware, system, backend, seed, folds, max_rows_per_group, shape_correction, shape_table
            )
        elif table.kind == "context_attention":
            reports += fit_prefill(table, hardware, system, backend, seed, folds, attention_rows)
        elif table.kind == "generation_attention":
            reports += fit_decode(table, hardware, system, backend, seed, folds, attention_rows)
        elif table.kind == "nccl":  # engine-independent: fitted once per file, chip and seed
            reports += _nccl_cached(table.path, chip, system, seed, folds)
        elif table.kind == "custom_allreduce":
            reports += fit_custom_allreduce(table, hardware, system, backend, seed, folds)
        for r in reports[before:]:
            # build_profile keeps one fit per group: a second file's would silently replace the first's.
            if r.name in fitted_from:
                raise InvalidInputError(
                    table.path,
                    f"holds {r.name} rows, as {fitted_from[r.name]} does: each group is fitted from one file",
                    "merge the rows into one file, or pass one of them",
                )
            fitted_from[r.name] = table.path
        rows = sum(r.rows for r in reports[before:])
        source = " | ".join(line.lstrip("# ").strip() for line in table.header[:2])
        used.append(DataFile(path=repo_relative_path(table.path), rows_used=rows, source=source[:300]))
        del c
    shaped = [r for r in reports if r.shape_correction is not None]
    if shape_table is not None and shaped:
        source = " | ".join(line.lstrip("# ").strip() for line in shape_table.header[:2])
        rows = sum(r.shape_correction.rows for r in shaped if r.shape_correction is not None)
        used.append(DataFile(path=repo_relative_path(shape_table.path), rows_used=rows, source=source[:300]))
    if not reports:
        # Say what the files hold: rows of another chip's name (h200_sxm for --hardware h100-sxm)
        # or engine were only 'pass measurement files of this chip and engine'.
        held = sorted(
            {
                (str(name), str(engine))
                for t in tables
                for name, engine in zip(
                    t.columns["system"], t.columns.get("engine", np.full(len(t), "any", dtype=object)), strict=True
                )
            }
        )
        found = ", ".join(f"{n} under {e}" for n, e in held[:4]) + (f", {len(held) - 4} more" if len(held) > 4 else "")
        engines_here = sorted({e for n, e in held if n == system})
        chips_held = sorted({SYSTEMS.get(n, n) for n, _ in held})
        if engines_here:
            fix = f"pass --backend {engines_here[0]}, the engine the files measured on {system}"
        elif len(chips_held) == 1 and chips_held[0] in SYSTEMS.values():
            fix = f"pass --hardware {chips_held[0]} for their rows, or files measured on {chip}"
        else:
            fix = f"pass --system NAME, the files' name for {chip}, or files measured on it"
        raise InvalidInputError(
            ", ".join(t.path for t in tables),
            f"no rows for system {system} ({chip}) under {backend}; the files hold {found}",
            fix,
        )
    profile = build_profile(hardware, backend, reports, used, seed, folds)
    moe_fit = None
    if moe_rows is not None:
        from tuner.moe_kernels import with_moe_fit

        moe_kernel_rows, data_file = moe_rows
        profile, moe_fit = with_moe_fit(profile, moe_kernel_rows, system=system, data_file=data_file)
    if kernel_files is None and system == CHIP_TO_SYSTEM.get(chip):
        # The repo's kernels: the fused-MoE class too, on top of the dense GEMM parameters just
        # fitted (tuner/moe_kernels.py; its held-out error goes to moe_cv_error and the report's
        # moe, not its groups).
        from tuner.moe_kernels import with_moe_fit

        profile, moe_fit = with_moe_fit(profile)
    report = FitReport(chip, backend, reports, time.perf_counter() - started)
    if moe_fit is not None:
        report.moe = dict(profile.moe_cv_error)
        # A format not fitted is timed by a borrowed class where one exists (moe_kernel_time.MOE_BORROWED:
        # weight-only int4/int8 by bfloat16's), its error on these rows held out: said with the reason.
        report.moe_not_fitted = {
            fmt: why
            + (
                f"; timed by the {moe_fit.borrowed[fmt][0]} class (held out on these rows: median "
                f"{moe_fit.borrowed[fmt][1]:.1%}, p90 {moe_fit.borrowed[fmt][2]:.1%})"
                if fmt in moe_fit.borrowed
                else ""
            )
            for fmt, why in moe_fit.skipped.items()
        }
    return profile, report


def _moe_rows_to_fit(
    moe_tables: list[KernelTable], tables: list[KernelTable], system: str, backend: str
) -> tuple[list[dict[str, str]], tuple[str, str]] | None:
    """The fused-MoE kernel file's rows (tuner/moe_kernels.py) and (its path, provenance line);
    None without one. One line, before any fit, for a second such file, a file with no rows of
    this chip (``system``) and engine at expert parallelism 1 in a modelled format (rows with
    expert parallelism are not used, as in the repo's copy), or no GEMM file of that chip and
    engine to fit the class on top of."""
    if not moe_tables:
        return None
    from tuner.moe_kernels import moe_rows_of_table, pair_rows

    table = moe_tables[0]
    if len(moe_tables) > 1:
        raise InvalidInputError(
            moe_tables[1].path, f"a second fused-MoE kernel file (after {table.path})", "merge the rows into one file"
        )
    if not any(
        t.kind == "gemm" and np.any((t.columns["system"] == system) & (t.columns["engine"] == backend)) for t in tables
    ):
        raise InvalidInputError(
            table.path,
            f"fused-MoE kernels are fitted on top of the chip's GEMM fit, and no GEMM rows of {system} under "
            f"{backend} were given",
            "pass a GEMM kernel file of the same chip and engine too (--kernels gemm_perf.csv)",
        )
    rows = moe_rows_of_table(table)
    if not pair_rows("", backend, rows, system):
        raise InvalidInputError(
            table.path,
            f"no fused-MoE rows of system {system} under {backend} with moe_ep_size 1 and a modelled format "
            "(bfloat16, fp8, fp8_block, int4_wo, w4a16_mxfp4)",
            "pass MoE kernels of this chip and engine measured at expert parallelism 1, or drop the file",
        )
    source = " | ".join(line.lstrip("# ").strip() for line in table.header[:2])[:300]
    return rows, (repo_relative_path(table.path), source)


@functools.lru_cache(maxsize=16)
def _read_cached(path: str) -> KernelTable:
    return read_kernel_table(path)


@functools.lru_cache(maxsize=64)
def _nccl_cached(path: str, chip: str, system: str, seed: int, folds: int) -> list[GroupReport]:
    return fit_nccl(_read_cached(path), get_hardware(chip), system, seed, folds)


def build_profile(
    chip: HardwareSpec, backend: str, reports: list[GroupReport], used: list[DataFile], seed: int, folds: int
) -> CalibrationProfile:
    gemm, prefill, decode = {}, {}, {}
    collectives: dict[str, dict[str, dict[int, CollectiveParams]]] = {}
    for r in reports:
        if r.op_class == "gemm":
            gemm[r.key] = GemmParams(**r.values, shape_correction=r.shape_correction)
        elif r.op_class == "prefill_attention":
            prefill[r.key] = PrefillAttentionParams(**r.values)
        elif r.op_class == "decode_attention":
            decode[r.key] = DecodeAttentionParams(**r.values)
        else:
            impl, kind, group = r.key.split("/")
            collectives.setdefault(impl, {}).setdefault(kind, {})[int(group)] = CollectiveParams(**r.values)
    # Elementwise prior (no elementwise kernel is measured): the decode-attention memory
    # efficiency (a pure streaming kernel on the same chip) and the median GEMM launch cost.
    stream = [p.memory_eff for p in decode.values()]
    launches = [p.launch_s for p in gemm.values()]
    elementwise = ElementwiseParams(
        memory_eff=float(np.median(stream)) if stream else 1.0, launch_s=float(np.median(launches)) if launches else 0.0
    )
    cv = {r.name: r.held_out_error() for r in reports}
    provenance = Provenance(
        data_files=used,
        fit_date=_dt.date.today().isoformat(),
        tool_version=_tool_version(),
        seed=seed,
        folds=folds,
        notes=[
            "log-latency residuals, scipy least_squares soft_l1 (f_scale 0.05), bounds per "
            "parameter (cost_models/efficiency.py FIT)",
            f"held-out error: {folds}-fold CV grouped by weight shape (GEMM), attention shape "
            "(heads, kv heads, head dim) or message size (collectives)",
            *(
                [
                    "GEMM shape correction (cost_models/gemm_shape.py; tuner calibrate's default on the repo's "
                    "data, --shape-rows, --shape-correction): per group, a grid in log2 (m, n, k) of the shrunk "
                    "Gaussian-weighted mean of the fit's log residuals over every row of the group in the shape "
                    "rows' file (data_files: gemm_perf_all_rows.csv.gz by default; else the kernel file), "
                    "monotone in m against the fit (settings and row count in each gemm entry's "
                    "shape_correction); the held-out error is of the fit and the correction together, each "
                    "fold's correction from its training folds' weight shapes (fit_only_median / "
                    "fit_only_p90: the fit alone)"
                ]
                if any(r.shape_correction is not None for r in reports)
                else []
            ),
            "elementwise is a prior: decode-attention memory_eff and median GEMM launch_s",
            "per_layer_overhead_s and per_step_overhead_s: 0, to be fitted from end-to-end runs",
        ],
    )
    return CalibrationProfile(
        chip=chip.name,
        backend=backend,
        gemm=gemm,
        prefill_attention=prefill,
        decode_attention=decode,
        elementwise=elementwise,
        collectives=collectives,
        provenance=provenance,
        cv_error=cv,
    )


def shipped_pairs(kernel_dir: Path = REPO_KERNELS) -> list[tuple[str, str]]:
    """(chip, backend) pairs present in the repo's GEMM/attention data."""
    from tuner.kernel_data import SYSTEMS

    pairs = set()
    for name in ("gemm_perf.csv.gz", "context_attention_perf.csv.gz"):
        table = read_kernel_table(kernel_dir / name)
        for system, backend in zip(table.columns["system"], table.columns["engine"], strict=True):
            if system in SYSTEMS and backend in BACKENDS:
                pairs.add((SYSTEMS[system], backend))
    return sorted(pairs)


def write_profile(profile: CalibrationProfile, path: str | Path) -> None:
    header = (
        f"# Calibration profile {profile.name}: written by `tuner calibrate` "
        "(tuner/calibrate.py); parameters are those of cost_models/efficiency.py.\n"
    )
    try:
        Path(path).write_text(header + profile.to_yaml())
    except OSError as error:
        raise InvalidInputError("output", f"cannot write {path}: {error.strerror}", "choose a writable path") from None
