"""Generic robust fit of one efficiency-parameter class (scipy.optimize.least_squares).

Residuals are log(predicted) - log(measured) (relative errors, every size weighs the same), the
loss is soft_l1 (robust to the few outliers kernels always have), parameters move inside the
bounds declared next to the model (``FIT`` of each class in cost_models/efficiency.py), log-scaled
ones in log10 space. Cross-validation is k-fold over groups of rows (a weight shape, a model's
attention shape, a message size), so held-out rows are shapes the fit never saw.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from cost_models.efficiency import FitSpec

F_SCALE = 0.05  # soft_l1 knee: residuals beyond ~5% in log count linearly, not squared
#: Share of a parameter's span (in its fitted units, log10 where log) within which a solution is
#: taken to sit on that bound (fit: the value is set to the FitSpec bound itself): a tenth of what
#: the fit's diagnosis already calls "at its bound" (1e-3). least_squares stops 1e-16 to 1e-5 of
#: the span inside a bound it presses on (NCCL small_overlap_power 1 + 2e-16 to 1 + 6e-6); moving
#: it onto the bound changes the predictions by < 1e-4 relative.
BOUND_SNAP = 1e-4


@dataclass
class FitResult:
    values: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    rows: int = 0


def _to_x(specs: dict[str, FitSpec], start: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts: list[float] = []
    lows: list[float] = []
    highs: list[float] = []
    for name, spec in specs.items():
        value = start.get(name, spec.start if spec.start is not None else (spec.low + spec.high) / 2)
        value = min(max(value, spec.low), spec.high)
        if spec.log:
            starts.append(np.log10(value))
            lows.append(np.log10(spec.low))
            highs.append(np.log10(spec.high))
        else:
            starts.append(value)
            lows.append(spec.low)
            highs.append(spec.high)
    x0, lo, hi = np.array(starts), np.array(lows), np.array(highs)
    span = hi - lo
    x0 = np.clip(x0, lo + 1e-6 * span, hi - 1e-6 * span)
    return x0, lo, hi


def _from_x(specs: dict[str, FitSpec], x: np.ndarray) -> dict[str, float]:
    return {name: float(10**v if spec.log else v) for (name, spec), v in zip(specs.items(), x, strict=True)}


def fit(
    specs: dict[str, FitSpec],
    predict: Callable[[dict[str, float], np.ndarray], np.ndarray],
    measured_s: np.ndarray,
    rows: np.ndarray | None = None,
    starts: list[dict] | None = None,
    diagnose: bool = True,
    admissible: Callable[[dict[str, float], np.ndarray], bool] | None = None,
) -> FitResult:
    """Fit ``specs`` so that ``predict(values, rows)`` matches ``measured_s`` (seconds).

    ``admissible(values, rows)``: whether a solution may be kept given the rows it was fitted on
    (e.g. every protocol regime of a collective holds rows); the lowest-cost admissible solution
    of the starts is kept, the lowest-cost one where none is."""
    rows = np.arange(len(measured_s)) if rows is None else rows
    log_measured = np.log(measured_s[rows])

    def residuals(x: np.ndarray) -> np.ndarray:
        predicted = predict(_from_x(specs, x), rows)
        return np.log(np.maximum(predicted, 1e-30)) - log_measured

    def solve(start: dict[str, float]) -> Any:  # scipy's OptimizeResult
        x0, lo, hi = _to_x(specs, start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return least_squares(
                residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=F_SCALE, x_scale="jac", max_nfev=200
            )

    # The first of the lowest-cost solutions, one per start.
    solutions = [solve(start) for start in starts or [{}]]
    if admissible is not None:
        kept = [result for result in solutions if admissible(_from_x(specs, result.x), rows)]
        solutions = kept or solutions
    best = min(solutions, key=lambda result: result.cost)
    values = _from_x(specs, best.x)
    # A parameter the solver left at a bound (within BOUND_SNAP of its span: least_squares stops
    # a hair inside, e.g. 1 + 2e-11 for a bound of 1) is its bound exactly, as its FitSpec has it:
    # bounds like small_overlap_power's 1 (the plain sum) or l2_steepness's 4 are the model
    # without the term, which the model evaluates without the term's powers (5.3 ms of a
    # calibrated estimate went to NCCL fits at 1 + 2e-11: docs/benchmarks.md round 11).
    _, lo, hi = _to_x(specs, {})
    for (name, spec), v, low, high in zip(specs.items(), best.x, lo, hi, strict=True):
        if v - low <= BOUND_SNAP * (high - low):
            values[name] = float(spec.low)
        elif high - v <= BOUND_SNAP * (high - low):
            values[name] = float(spec.high)
    notes: list[str] = []
    if diagnose:
        _, lo, hi = _to_x(specs, {})
        span = hi - lo
        for name, v, low, high, s in zip(specs, best.x, lo, hi, span, strict=True):
            if v - low < 1e-3 * s or high - v < 1e-3 * s:
                notes.append(f"{name} at its {'lower' if v - low < 1e-3 * s else 'upper'} bound ({values[name]:.3g})")
        jac = best.jac
        if jac.size:
            sv = np.linalg.svd(jac, compute_uv=False)
            tol = sv[0] * 1e-6 if sv[0] > 0 else 0
            rank = int((sv > tol).sum())
            if rank < len(specs):
                notes.append(
                    f"Jacobian rank {rank} < {len(specs)} parameters: "
                    "some parameters are unidentifiable from these rows"
                )
            else:
                try:
                    cov = np.linalg.inv(jac.T @ jac) * max(2 * best.cost / max(len(rows) - len(specs), 1), 1e-12)
                    sd = np.sqrt(np.maximum(np.diag(cov), 0))
                    for (name, spec), v, s in zip(specs.items(), best.x, sd, strict=True):
                        if s > 1.0 * (1.0 if spec.log else max(abs(v), 1e-12)):
                            notes.append(
                                f"{name} poorly identified (std {s:.2g} in "
                                f"{'log10 units' if spec.log else 'value units'})"
                            )
                except np.linalg.LinAlgError:
                    notes.append("singular normal matrix: parameters unidentifiable")
    return FitResult(values=values, warnings=notes, rows=len(rows))


def fold_ids(group_keys: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of each row: unique group keys shuffled with ``seed``, dealt round-robin."""
    unique, inverse = np.unique(group_keys, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_group = np.empty(len(unique), dtype=int)
    fold_of_group[order] = np.arange(len(unique)) % k
    return fold_of_group[inverse]


def abs_rel_errors(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return np.abs(predicted / measured - 1.0)


def cross_validate(
    specs,
    predict,
    measured_s,
    group_keys,
    k: int = 5,
    seed: int = 0,
    starts: list[dict] | None = None,
    admissible: Callable[[dict[str, float], np.ndarray], bool] | None = None,
    held_out: Callable[[dict[str, float], np.ndarray, np.ndarray], np.ndarray] | None = None,
    fit_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Held-out absolute relative error of every row (each row predicted by the fit on the
    other k-1 folds). ``held_out(values, train, test)``: the seconds of the ``test`` rows given
    the fold's fitted ``values`` and its ``train`` rows, where more than the fit is learned from
    the training rows (the GEMM shape correction, tuner/calibrate.py fit_gemm); default
    ``predict(values, test)``.

    ``fit_rows`` (default: every row): the rows a fit reads, where the fit draws fewer rows than
    the group holds (tuner calibrate's MAX_ROWS_PER_GROUP, a speed choice). The folds are dealt
    over every row's key, each fold's fit reads its training folds' ``fit_rows``, and every row
    of the test fold is predicted, so the error is measured on all the rows the data holds, not
    only on the draw. With every row fitted the folds and errors are those of fitting them all."""
    folds = fold_ids(group_keys, k, seed)
    errors = np.full(len(measured_s), np.nan)
    all_rows = np.arange(len(measured_s))
    fitted = all_rows if fit_rows is None else np.asarray(fit_rows)
    for f in range(k):
        test = all_rows[folds == f]
        train = fitted[folds[fitted] != f]
        if len(test) == 0 or len(train) == 0:
            continue
        result = fit(specs, predict, measured_s, train, starts=starts, diagnose=False, admissible=admissible)
        predicted = predict(result.values, test) if held_out is None else held_out(result.values, train, test)
        errors[test] = abs_rel_errors(predicted, measured_s[test])
    return errors
