"""The MoE layer model against measured fused-MoE kernels (``data/kernels/moe_perf.csv.gz``).

Each measured row is one GPU's fused MoE kernel: ``num_tokens`` tokens of width ``hidden_size``
routed top-``topk`` over ``num_experts`` experts of ``inter_size``, split ``moe_tp_size`` ways
along inter_size (expert tensor parallelism; rows with expert parallelism are not in the copy).
The model's time for it is the cost model's own MoE FFN on one chip of a 1 x 1 x tp mesh in the
1D weight-stationary layout (each expert's d_ff split tp ways, as ``cost_models.partitioning``
does): the expert matmuls (gate, up, down) and their activation, as the pure roofline and as
the calibrated grouped GEMMs (``cost_models.calibrated_times.expert_gemm_times_s``) under the
shipped profile of that chip and engine. The router's matmul is left out: the engines' MoE
kernels are timed from router logits.

The fused MoE kernel class (``cost_models.moe_kernel_time``) is fitted here, per chip, engine and
MoE format, on top of the profile's dense GEMM parameters (which stay as they are): scipy
least_squares on log latency (tuner/fitting.py), held out by 5-fold cross-validation grouped by
expert shape (hidden, inter_size, experts, top-k), so each row is predicted by a fit that never
saw its shape. ``python -m tuner.moe_kernels`` refits it into the shipped profiles and rewrites
the MoE section of docs/accuracy.md without refitting anything else.

Formats: bfloat16; fp8 and fp8_block as fp8 weights and activations; int4_wo as int4 weights
with 16-bit activations; w4a16_mxfp4 (gpt-oss's MXFP4 experts, 16-bit activations; the rows of
the kernels the engines ran on gpt-oss, :func:`read_moe_rows`) as fp4 weights with 16-bit
activations, i.e. the int4_wo dense parameters and bytes, with a class of its own
(moe_kernel_time.MXFP4_MOE_FORMAT). The other microscaling formats (nvfp4, w4a8_mxfp4_mxfp8) are
not modelled and are skipped.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cost_models.calibrated_times import _gemm_params, calibrated_operator_times, gemm_format
from cost_models.calibration import CalibrationProfile, DataFile, HeldOutError, profile_for
from cost_models.dtypes import BF16, FP4, FP8, INT4
from cost_models.efficiency import WEIGHT_BYTES
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.inference_configs import make_configs
from cost_models.models import ModelSpec, model_catalog
from cost_models.moe_kernel_time import MXFP4_MOE_FORMAT, MoeKernelParams, borrowed_moe_class, routed_expert_time_s
from cost_models.operators import OP, operator_costs
from cost_models.partitioning import gemm_shapes_per_chip, per_chip_costs, sharding_plan
from cost_models.roofline import roofline_times
from tuner.collector_working_set import moe_collector_working_set_bytes
from tuner.fitting import abs_rel_errors, fit, fold_ids
from tuner.kernel_data import CHIP_TO_SYSTEM, NUMERIC, REPO_KERNELS, SYSTEMS, KernelTable
from tuner.moe_routing import ROUTING_NAME, measured_experts_woken

MOE_FILE = REPO_KERNELS / "moe_perf.csv.gz"
#: measured format -> (weight dtype, activation dtype)
FORMATS = {
    "bfloat16": (BF16, BF16),
    "fp8": (FP8, FP8),
    "fp8_block": (FP8, FP8),
    "int4_wo": (INT4, BF16),
    MXFP4_MOE_FORMAT: (FP4, BF16),
}
#: The slots the measured kernel runs (router excluded).
MOE_KERNEL_OPS = ("expert_gate", "expert_up", "expert_act", "expert_down")


SEED = 20260101  # tuner.calibrate.SEED: the same folds as every other class
FOLDS = 5
#: A format is fitted with at least 3 rows per parameter and one expert shape per fold (so every
#: row can be held out); with fewer it keeps the grouped-GEMM model, and the report says so.
MIN_ROWS = 3 * len(MoeKernelParams.FIT)
#: Formats whose folds group rows by the per-chip expert slice (expert shape and moe_tp: the
#: grouped GEMMs' (hidden, inter_size / tp, experts, top-k)) instead of the expert shape. The
#: database measured gpt-oss's kernels (read_moe_rows) on its 2 expert shapes (gpt-oss-120b's
#: 2880/2880/128/4, gpt-oss-20b's 2880/2880/32/4; GB200 SGLang also 3584/3072/896/16) at moe_tp
#: 1-32: 5 folds by shape cannot be dealt, so a row is predicted by a fit that never saw its slice
#: (it saw the shape at other tp). The stricter leave-one-shape-out error (one gpt-oss predicted
#: from the other) is reported beside it (MoeFit.by_shape).
SLICE_FOLDS = frozenset({MXFP4_MOE_FORMAT})
#: A weight-only format with too few expert shapes for its own class, timed by the class it
#: borrows (moe_kernel_time.MOE_BORROWED: int4_wo by bfloat16's), gets one refitted from that
#: class on its own rows: these three parameters fitted, the floor's permutation passes and blend
#: kept, held out by folds over its moe_tp slices (each row predicted by a fit that never saw its
#: slice). The kernel database measured int4_wo on one expert shape (Kimi K2's 7168/2048/384/8) on
#: every pair but A100 SGLang, and there the bf16 class ran 0.37-0.78x of the measured time on
#: B200, GB200, H100 and H200 (held-out medians 22-63%: vLLM's Marlin MoE is an SM80 kernel, far
#: below Blackwell's bf16 peak), within 2-8% on L40S. Held out by slices (2026-12-06, AMD EPYC VM),
#: the median over the 9 pairs: memory_scale alone 19.0%, with compute_scale 15.8%, with fixed_s
#: too 9.8%. On A100 SGLang, whose int4_wo rows span 10 shapes, the three fitted on Kimi K2's
#: shape alone predict the other 9 at a median 7.7% (p90 22.6%), the full class held out by shape
#: 7.6% (21.3%): one shape carries over there.
BORROWED_REFIT = ("compute_scale", "memory_scale", "fixed_s")
#: Fewest moe_tp slices (folds) and rows (3 per parameter) a refit needs.
BORROWED_REFIT_MIN_SLICES = 4
BORROWED_REFIT_MIN_ROWS = 3 * len(BORROWED_REFIT)


def mxfp4_checkpoint_shapes() -> set[str]:
    """Expert shapes ("hidden/inter/experts/topk") of the catalog's MXFP4-expert checkpoints
    (ModelSpec.mxfp4_experts: gpt-oss-20b and -120b), the only models the w4a16_mxfp4 class times."""
    return {
        f"{m.d_model}/{m.expert_d_ff}/{m.experts}/{m.experts_per_token}"
        for m in model_catalog().values()
        if m.mxfp4_experts
    }


def _shape_key(row: dict[str, str]) -> str:
    return f"{row['hidden_size']}/{row['inter_size']}/{row['num_experts']}/{row['topk']}"


def read_moe_rows(path: Path = MOE_FILE) -> list[dict[str, str]]:
    """Rows of the measurement file with expert parallelism 1 and a modelled format. Of the
    w4a16_mxfp4 rows, those of the kernels each engine ran on an MXFP4-expert checkpoint of the
    catalog (:func:`mxfp4_checkpoint_shapes`; by system, framework and kernel_source): the class
    times those checkpoints only (calibrated_times: ``mxfp4_experts`` rows), and the database's
    other MXFP4 kernels belong to other checkpoints (vLLM's compressed-tensors W4A4-MXFP4 method
    through Marlin, SGLang's Marlin MoE; the 3584/3072/896/16 shape alone) and ran the other way
    from gpt-oss's (fitted on every w4a16_mxfp4 row, H200 SGLang's Triton gpt-oss rows came out
    held out at -0.54 median log residual at 4-16 tokens per expert, its Marlin rows at +0.47;
    fitted on the gpt-oss kernels alone the pair's held-out median went 36.6% -> 18.4%)."""
    with gzip.open(path, "rt", newline="") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return modelled_rows(list(csv.DictReader(lines)), set(SYSTEMS))


def modelled_rows(rows: list[dict[str, str]], systems: set[str]) -> list[dict[str, str]]:
    """The rows of ``systems`` the class is fitted on (:func:`read_moe_rows`' rules): expert
    parallelism 1, a modelled format, and of the w4a16_mxfp4 rows the kernels the engines ran on
    a catalog checkpoint with MXFP4 experts."""
    rows = [
        row for row in rows if row["moe_ep_size"] == "1" and row["moe_dtype"] in FORMATS and row["system"] in systems
    ]
    shapes = mxfp4_checkpoint_shapes()
    mxfp4_kernels = {
        (r["system"], r["framework"], r["kernel_source"])
        for r in rows
        if r["moe_dtype"] == MXFP4_MOE_FORMAT and _shape_key(r) in shapes
    }
    return [
        r
        for r in rows
        if r["moe_dtype"] != MXFP4_MOE_FORMAT or (r["system"], r["framework"], r["kernel_source"]) in mxfp4_kernels
    ]


def moe_source(path: Path = MOE_FILE) -> str:
    """The file's provenance (its first two # lines), condensed."""
    with gzip.open(path, "rt") as handle:
        header = [line for line in (handle.readline(), handle.readline()) if line.startswith("#")]
    return " | ".join(line.lstrip("# ").strip() for line in header)[:300]


def _spec(d: int, f: int, experts: int, k: int, gated: bool, fp8_block_scales: bool = False) -> ModelSpec:
    return ModelSpec(
        name=f"moe-{d}-{f}-{experts}-{k}",
        source="data/kernels/moe_perf.csv.gz",
        layers=1,
        d_model=d,
        heads=1,
        kv_heads=1,
        d_head=8,
        d_ff=f,
        ffn="swiglu" if gated else "gelu",
        vocab=1,
        experts=experts,
        experts_per_token=k,
        expert_d_ff=f,
        # fp8_block rows: weights with 128 x 128 block scales, timed by the fp8_block class
        # (calibrated_times.kernel_formats); fp8 rows per-tensor, by the fp8 class.
        fp8_block_scales=fp8_block_scales,
    )


def moe_layer_times(
    rows: list[dict[str, str]], chip: str, backend: str, profile: CalibrationProfile | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(roofline, calibrated, activation) seconds of the MoE kernel of each row, all on ``chip``
    under ``profile`` (default: the shipped one of ``backend``); activation is the calibrated
    ``expert_act`` slot alone (an elementwise kernel, part of the calibrated total)."""
    hardware = get_hardware(chip)
    profile = profile or profile_for(chip, backend)
    specs: dict[tuple, int] = {}
    models: list[ModelSpec] = []
    index = []
    for row in rows:
        key = (
            int(row["hidden_size"]),
            int(row["inter_size"]),
            int(row["num_experts"]),
            int(row["topk"]),
            "nongated" not in row["kernel_source"],
            row["moe_dtype"] == "fp8_block",
        )
        if key not in specs:
            specs[key] = len(models)
            models.append(_spec(*key))
        index.append(specs[key])
    weight, act = (np.array([FORMATS[r["moe_dtype"]][i] for r in rows]) for i in (0, 1))
    configs = make_configs(
        models,
        phase="prefill",
        batch=np.array([float(r["num_tokens"]) for r in rows]),
        seq_len=1,
        weight_dtype=weight,
        act_dtype=act,
        kv_dtype=BF16,
        model_index=np.array(index),
    )
    n = len(rows)
    tp = np.array([float(r["moe_tp_size"]) for r in rows])
    mesh = np.stack([np.ones(n), np.ones(n), tp], axis=1)
    layouts = np.zeros(n, dtype=np.int64)  # ws_1d: each expert's d_ff over every chip
    heads_only = np.zeros(n, dtype=bool)
    plan = sharding_plan(configs, mesh, layouts)
    chip_ops = per_chip_costs(operator_costs(configs), configs, mesh, layouts, heads_only, plan, np.ones(n))
    slots = [OP[name] for name in MOE_KERNEL_OPS]
    roofline = roofline_times(chip_ops.flops, chip_ops.bytes, chip_ops.compute_dtype, hardware).time_s
    calibrated = calibrated_operator_times(
        chip_ops, configs, gemm_shapes_per_chip(chip_ops, plan), tp, heads_only, hardware, profile
    )
    return roofline[slots].sum(axis=0), calibrated[slots].sum(axis=0), calibrated[OP["expert_act"]]


def without_moe(profile: CalibrationProfile) -> CalibrationProfile:
    """The profile as it was before the MoE class: experts as grouped dense GEMMs."""
    return profile.model_copy(update={"moe": {}, "moe_cv_error": {}})


@dataclass
class MoeData:
    """The measured rows of one chip and engine, and what the fitted class needs of them: the
    tokens, experts woken, tokens per woken expert, top-k, expert slice per chip (inter_size /
    moe_tp), hidden size, and the activation kernel's calibrated time (not refitted)."""

    chip: str
    backend: str
    measured_s: np.ndarray
    moe_format: np.ndarray
    distribution: np.ndarray
    shape: np.ndarray  # "hidden/inter/experts/topk": the cross-validation groups
    moe_tp: np.ndarray  # ways each expert's inter_size is split (SLICE_FOLDS' groups)
    tokens: np.ndarray
    woken: np.ndarray
    tokens_per_expert: np.ndarray
    topk: np.ndarray
    expert_f: np.ndarray
    hidden: np.ndarray
    gated: np.ndarray
    act_s: np.ndarray
    roofline_s: np.ndarray
    before_s: np.ndarray  # grouped dense GEMMs (the profile without its MoE class)

    def __len__(self) -> int:
        return len(self.measured_s)


def moe_data(rows: list[dict[str, str]], chip: str, backend: str, profile: CalibrationProfile) -> MoeData:
    roofline, before, act = moe_layer_times(rows, chip, backend, without_moe(profile))

    def column(name: str) -> np.ndarray:
        return np.array([float(r[name]) for r in rows])

    tokens, topk = column("num_tokens"), column("topk")
    # Each row at the experts its own routing woke (tuner.moe_routing), not at uniform routing.
    woken = np.array(
        [
            measured_experts_woken(int(r["num_tokens"]), int(r["num_experts"]), int(r["topk"]), r["distribution"])
            for r in rows
        ]
    )
    return MoeData(
        chip=chip,
        backend=backend,
        measured_s=column("latency") / 1e3,
        moe_format=np.array([r["moe_dtype"] for r in rows]),
        distribution=np.array([r["distribution"] for r in rows]),
        shape=np.array([f"{r['hidden_size']}/{r['inter_size']}/{r['num_experts']}/{r['topk']}" for r in rows]),
        moe_tp=np.array([r["moe_tp_size"] for r in rows]),
        tokens=tokens,
        woken=woken,
        tokens_per_expert=tokens * topk / woken,
        topk=topk,
        expert_f=column("inter_size") / column("moe_tp_size"),
        hidden=column("hidden_size"),
        gated=np.array(["nongated" not in r["kernel_source"] for r in rows]),
        act_s=act,
        roofline_s=roofline,
        before_s=before,
    )


def fitted_times_s(
    data: MoeData,
    rows: np.ndarray,
    moe_format: str,
    params: MoeKernelParams,
    profile: CalibrationProfile,
    *,
    weights_in_l2: bool = False,
) -> np.ndarray:
    """Seconds of the MoE kernel of ``rows`` (all of ``moe_format``) under the fitted class: what
    the cost model charges (expert_gemm_times_s with ``params`` in the profile), computed from the
    precomputed shapes so a fit does not rebuild the operator costs at every step. The fit times
    the collector's calls, ``weights_in_l2`` True (one MoE layer's weights called again and again:
    their L2 share as the dense fits have it); the default, False, as a serving step times them
    (efficiency.gemm_time_s)."""
    fmt = gemm_format(*FORMATS[moe_format])  # the dense GEMM format the cost model runs
    dense = _gemm_params(profile, fmt)
    hardware = get_hardware(data.chip)
    args = (
        data.tokens[rows],
        data.woken[rows],
        data.tokens_per_expert[rows],
        data.topk[rows],
        data.expert_f[rows],
        data.hidden[rows],
        fmt,
        hardware,
        dense,
        params,
    )
    up_projections = np.where(data.gated[rows], 2.0, 1.0)  # gate and up, or up alone
    cycled = None
    if weights_in_l2:
        cycled = moe_collector_working_set_bytes(
            data.tokens[rows],
            data.woken[rows],
            data.expert_f[rows],
            data.hidden[rows],
            up_projections,
            WEIGHT_BYTES[fmt],
        )
    up = routed_expert_time_s(False, *args, weights_in_l2=weights_in_l2, l2_working_set_bytes=cycled)
    down = routed_expert_time_s(True, *args, weights_in_l2=weights_in_l2, l2_working_set_bytes=cycled)
    return data.act_s[rows] + up_projections * up + down


@dataclass
class MoeFit:
    """The fitted class of one chip and engine: parameters and held-out error per format, the
    held-out prediction of every row (the grouped-GEMM model for rows of a format not fitted),
    and why a format was not fitted."""

    params: dict[str, MoeKernelParams]
    cv_error: dict[str, HeldOutError]
    held_out_s: np.ndarray
    skipped: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    #: A format not fitted whose rows the cost model times with another format's class
    #: (moe_kernel_time.MOE_BORROWED) -> (that format, median, p90 of |error|): held out, since
    #: the class was fitted on its own format's rows only.
    borrowed: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    #: A fitted format the cost model timed with another format's class before its own fit
    #: (w4a16_mxfp4: the bfloat16 class, by int4_wo's MOE_BORROWED; a BORROWED_REFIT format: the
    #: class it was refitted from) -> (that class, median, p90 of |error|, median predicted /
    #: measured), on every row (that class never saw them).
    replaced: dict[str, tuple[str, float, float, float]] = field(default_factory=dict)
    #: A SLICE_FOLDS format -> (median, p90 of |error|) held out one expert shape at a time.
    by_shape: dict[str, tuple[float, float]] = field(default_factory=dict)


def expert_slices(data: MoeData, rows: np.ndarray) -> np.ndarray:
    """The per-chip expert slice of ``rows`` ("hidden/inter/experts/topk/tpN": the expert shape
    and its moe_tp), the folds' groups where the rows span too few expert shapes."""
    return np.char.add(np.char.add(data.shape[rows], "/tp"), data.moe_tp[rows])


def fit_moe(data: MoeData, profile: CalibrationProfile, seed: int = SEED, folds: int = FOLDS) -> MoeFit:
    """Fit :class:`MoeKernelParams` per MoE format on ``data`` (the dense GEMM parameters of
    ``profile`` fixed), and hold out each expert shape in a k-fold cross-validation."""
    specs = MoeKernelParams.FIT
    held_out = data.before_s.copy()
    params: dict[str, MoeKernelParams] = {}
    cv: dict[str, HeldOutError] = {}
    skipped: dict[str, str] = {}
    fitted_rows = 0
    by_shape: dict[str, tuple[float, float]] = {}
    for fmt in sorted(set(data.moe_format.tolist())):
        rows = np.flatnonzero(data.moe_format == fmt)
        slices = fmt in SLICE_FOLDS
        groups = expert_slices(data, rows) if slices else data.shape[rows]
        shapes = len(set(groups.tolist()))
        if len(rows) < MIN_ROWS or shapes < folds:
            unit, units = ("expert slice(s) (shape x moe_tp)", "slices") if slices else ("expert shape(s)", "shapes")
            skipped[fmt] = f"{len(rows)} rows, {shapes} {unit}; a fit needs {MIN_ROWS} rows and {folds} {units}"
            continue

        def predict(values: dict[str, float], idx: np.ndarray, rows=rows, fmt=fmt) -> np.ndarray:
            return fitted_times_s(data, rows[idx], fmt, MoeKernelParams(**values), profile, weights_in_l2=True)

        measured = data.measured_s[rows]
        result = fit(specs, predict, measured)
        # Held out (tuner.fitting.cross_validate's folds, keeping the predictions): each row is
        # predicted by the fit on the folds that never saw its expert shape.
        fold = fold_ids(groups, folds, seed)
        for f in range(folds):
            test = np.flatnonzero(fold == f)
            values = fit(specs, predict, measured, np.flatnonzero(fold != f), diagnose=False).values
            held_out[rows[test]] = predict(values, test)
        errors = abs_rel_errors(held_out[rows], measured)
        if slices and len(set(data.shape[rows].tolist())) > 1:
            # Stricter: each expert shape predicted by the fit on the others alone.
            strict = np.empty(len(rows))
            for shape in sorted(set(data.shape[rows].tolist())):
                test = np.flatnonzero(data.shape[rows] == shape)
                train = np.flatnonzero(data.shape[rows] != shape)
                strict[test] = predict(fit(specs, predict, measured, train, diagnose=False).values, test)
            strict_errors = abs_rel_errors(strict, measured)
            by_shape[fmt] = (float(np.median(strict_errors)), float(np.quantile(strict_errors, 0.9)))
        roofline = abs_rel_errors(data.roofline_s[rows], measured)
        params[fmt] = MoeKernelParams(**result.values)
        cv[f"moe/{fmt}"] = HeldOutError(
            rows=len(rows),
            median=float(np.median(errors)),
            p90=float(np.quantile(errors, 0.9)),
            roofline_median=float(np.median(roofline)),
            roofline_p90=float(np.quantile(roofline, 0.9)),
            warnings=result.warnings,
        )
        fitted_rows += len(rows)
    replaced: dict[str, tuple[str, float, float, float]] = {}
    for fmt in [f for f in params if f in SLICE_FOLDS]:
        # What the cost model charged this format before its own fit (MXFP4 experts: int4_wo's
        # lookup, the bfloat16 class), held out since that class never saw these rows.
        found = borrowed_moe_class({k: v for k, v in params.items() if k != fmt}, gemm_format(*FORMATS[fmt]))
        if found is not None:
            rows = np.flatnonzero(data.moe_format == fmt)
            predicted = fitted_times_s(data, rows, fmt, params[found], profile, weights_in_l2=True)
            errors = abs_rel_errors(predicted, data.measured_s[rows])
            ratio = float(np.median(predicted / data.measured_s[rows]))
            replaced[fmt] = (found, float(np.median(errors)), float(np.quantile(errors, 0.9)), ratio)
    # Then the weight-only formats too thin for a class of their own, from the class they borrow
    # (BORROWED_REFIT); after the MXFP4 class's BEFORE above, which stays the bfloat16 class.
    for fmt in sorted(skipped):
        refit = _refit_borrowed(data, fmt, params, profile, seed, folds)
        if refit is not None:
            params[fmt], cv[f"moe/{fmt}"], rows, held, replaced[fmt] = refit
            held_out[rows] = held
            fitted_rows += len(rows)
            del skipped[fmt]
    borrowed: dict[str, tuple[str, float, float]] = {}
    for fmt in skipped:
        # What the cost model charges these rows (calibrated_times.expert_gemm_times_s): the
        # borrowed class, fitted on every row of its own format and none of these, under the
        # collector's conditions as every FITTED row (a deployment reads the weights cold; a
        # format neither fitted nor borrowed keeps CALIBRATED, which is the deployment's).
        found = borrowed_moe_class(params, gemm_format(*FORMATS[fmt]))
        if found is not None:
            rows = np.flatnonzero(data.moe_format == fmt)
            held_out[rows] = fitted_times_s(data, rows, fmt, params[found], profile, weights_in_l2=True)
            errors = abs_rel_errors(held_out[rows], data.measured_s[rows])
            borrowed[fmt] = (found, float(np.median(errors)), float(np.quantile(errors, 0.9)))
    return MoeFit(params, cv, held_out, skipped, fitted_rows, borrowed, replaced, by_shape)


def _refit_borrowed(
    data: MoeData, fmt: str, params: dict[str, MoeKernelParams], profile: CalibrationProfile, seed: int, folds: int
) -> tuple[MoeKernelParams, HeldOutError, np.ndarray, np.ndarray, tuple[str, float, float, float]] | None:
    """A class of its own for ``fmt``, a format not fitted whose experts the cost model times with a
    borrowed class (:data:`BORROWED_REFIT`): (its parameters, its held-out error, the rows, their
    held-out seconds, what the borrowed class gave on them as :class:`MoeFit` ``replaced`` holds
    it); None where nothing is borrowed or the rows are too few."""
    found = borrowed_moe_class(params, gemm_format(*FORMATS[fmt]))
    rows = np.flatnonzero(data.moe_format == fmt)
    slices = expert_slices(data, rows)
    count = len(set(slices.tolist()))
    if found is None or len(rows) < BORROWED_REFIT_MIN_ROWS or count < BORROWED_REFIT_MIN_SLICES:
        return None
    base = params[found]
    specs = {name: MoeKernelParams.FIT[name] for name in BORROWED_REFIT}
    start = [{name: getattr(base, name) for name in BORROWED_REFIT}]

    def predict(values: dict[str, float], idx: np.ndarray) -> np.ndarray:
        return fitted_times_s(data, rows[idx], fmt, base.model_copy(update=values), profile, weights_in_l2=True)

    measured = data.measured_s[rows]
    before = fitted_times_s(data, rows, fmt, base, profile, weights_in_l2=True)
    before_errors = abs_rel_errors(before, measured)
    result = fit(specs, predict, measured, starts=start)
    fold = fold_ids(slices, min(folds, count), seed)
    held = np.empty(len(rows))
    for f in range(min(folds, count)):
        test = np.flatnonzero(fold == f)
        held[test] = predict(fit(specs, predict, measured, np.flatnonzero(fold != f), start, False).values, test)
    errors = abs_rel_errors(held, measured)
    roofline = abs_rel_errors(data.roofline_s[rows], measured)
    error = HeldOutError(
        rows=len(rows),
        median=float(np.median(errors)),
        p90=float(np.quantile(errors, 0.9)),
        roofline_median=float(np.median(roofline)),
        roofline_p90=float(np.quantile(roofline, 0.9)),
        expert_shapes=sorted(set(data.shape[rows].tolist())),
        warnings=result.warnings,
    )
    ratio = float(np.median(before / measured))
    was = (found, float(np.median(before_errors)), float(np.quantile(before_errors, 0.9)), ratio)
    return base.model_copy(update=result.values), error, rows, held, was


def pair_rows(
    chip: str, backend: str, rows: list[dict[str, str]] | None = None, system: str | None = None
) -> list[dict[str, str]]:
    """The measured rows of one chip and engine (none for a chip the kernel database lacks).
    ``system``: the rows' name for the chip (default: the kernel database's)."""
    system = system or CHIP_TO_SYSTEM.get(chip)
    return [
        r
        for r in (read_moe_rows() if rows is None else rows)
        if r["system"] == system and r["framework"].lower() == backend
    ]


def moe_rows_of_table(table: KernelTable) -> list[dict[str, str]]:
    """A fused-MoE kernel table (``tuner calibrate --kernels``) as :func:`read_moe_rows`' rows,
    whole numbers written as integers, of every system (:func:`pair_rows` picks one). A routing
    distribution other than the collector's is one line naming the row (tuner/moe_routing.py)."""
    c = table.columns
    numeric = [name for name in c if name in NUMERIC and name != "latency"]
    rows = []
    for i in range(len(table)):
        row = {name: str(values[i]) for name, values in c.items()}
        row.update({name: str(int(c[name][i])) for name in numeric if np.isfinite(c[name][i])})
        row["latency"] = repr(float(c["latency"][i]))
        name = row["distribution"]
        if not ROUTING_NAME.fullmatch(name) or (name != "balanced" and float(name.rsplit("_", 1)[1]) == 1.0):
            raise InvalidInputError(
                f"{table.path}:{table.lines[i]}",
                f"distribution={row['distribution']!r} is not a routing the collector forces",
                "balanced or power_law_<exponent other than 1> (e.g. power_law_1.2), as the kernel database names them",
            )
        rows.append(row)
    return modelled_rows(rows, {str(name) for name in c["system"]})


def with_moe(
    profile: CalibrationProfile,
    rows: list[dict[str, str]] | None = None,
    *,
    system: str | None = None,
    data_file: tuple[str, str] | None = None,
) -> CalibrationProfile:
    """``profile`` with its MoE class fitted on the measured kernels of its chip and engine (every
    other parameter as it is); unchanged where nothing of that pair was measured. ``rows``:
    measured rows (default: the repo's data/kernels/moe_perf.csv.gz), of ``system`` (default: the
    kernel database's name for the chip); ``data_file``: (path, provenance line) of the file they
    came from, for the profile's provenance (default: the repo's copy)."""
    return with_moe_fit(profile, rows, system=system, data_file=data_file)[0]


def with_moe_fit(
    profile: CalibrationProfile,
    rows: list[dict[str, str]] | None = None,
    *,
    system: str | None = None,
    data_file: tuple[str, str] | None = None,
) -> tuple[CalibrationProfile, MoeFit | None]:
    """:func:`with_moe` and the fit behind it (None where nothing of the pair was measured)."""
    members = pair_rows(profile.chip, profile.backend, rows, system)
    if not members:
        return profile, None
    result = fit_moe(moe_data(members, profile.chip, profile.backend, profile), profile)
    update: dict = {"moe": result.params, "moe_cv_error": result.cv_error}
    if profile.provenance is not None and result.params:
        path, source = data_file or ("data/kernels/moe_perf.csv.gz", moe_source())
        files = [f for f in profile.provenance.data_files if f.path != path]
        files.append(DataFile(path=path, rows_used=result.rows, source=source))
        note = (
            "moe: fused-MoE kernel per format on top of the dense GEMM parameters (tuner/moe_kernels.py); "
            f"held-out error in moe_cv_error ({FOLDS}-fold CV grouped by expert shape)"
        )
        notes = [n for n in profile.provenance.notes if not n.startswith("moe:")] + [note]
        update["provenance"] = profile.provenance.model_copy(update={"data_files": files, "notes": notes})
    return profile.model_copy(update=update), result


@dataclass(frozen=True)
class MoeErrors:
    """One (chip, engine): |predicted / measured - 1| of each model on every row. CALIBRATED is the
    grouped dense GEMMs (the profile without its MoE class); FITTED the fused-MoE class held out
    (rows of a format not fitted keep CALIBRATED)."""

    chip: str
    backend: str
    distribution: np.ndarray
    moe_format: np.ndarray
    roofline_error: np.ndarray
    calibrated_error: np.ndarray
    calibrated_ratio: np.ndarray  # predicted / measured
    fitted_error: np.ndarray
    fitted_ratio: np.ndarray
    fit: MoeFit

    @property
    def rows(self) -> int:
        return len(self.distribution)


def moe_kernel_errors(path: Path = MOE_FILE, profiles: dict[str, CalibrationProfile] | None = None) -> list[MoeErrors]:
    """Errors of the MoE layer model per (chip, engine) of the measurement file, the MoE class
    refitted (and held out) on top of each profile's dense parameters (default: the shipped ones)."""
    rows = read_moe_rows(path)
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((SYSTEMS[row["system"]], row["framework"].lower()), []).append(row)
    out = []
    for (chip, backend), members in sorted(groups.items()):
        profile = (profiles or {}).get(f"{chip}-{backend}") or profile_for(chip, backend)
        data = moe_data(members, chip, backend, profile)
        result = fit_moe(data, profile)
        out.append(
            MoeErrors(
                chip,
                backend,
                data.distribution,
                data.moe_format,
                abs_rel_errors(data.roofline_s, data.measured_s),
                abs_rel_errors(data.before_s, data.measured_s),
                data.before_s / data.measured_s,
                abs_rel_errors(result.held_out_s, data.measured_s),
                result.held_out_s / data.measured_s,
                result,
            )
        )
    return out
