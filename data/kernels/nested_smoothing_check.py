"""Maintainer check (not used at run time or in tests): the GEMM shape correction's smoothing
(bandwidths and shrink, cost_models/gemm_shape.py) chosen per group by an inner cross-validation
on the training rows alone, against the shipped setting, held out as
data/kernels/shape_correction_check.py holds it out (5 outer folds by (n, k) over the parametric
fit's 300 rows; per outer fold the fit, the table rows whose (n, k) is not a test fold's, 5 inner
folds by (n, k) over them, each candidate scored by the inner held-out mean |log(measured /
corrected)| without the monotone pass, the best built as shipped and tested on the outer rows):

    python data/kernels/nested_smoothing_check.py [PROFILE:FORMAT ...]   # default: all 56 groups

Printed 2026-12-07 (AMD EPYC VM, 2 cores shared) on the four missing groups and l40s vLLM bf16
and fp8: 4 of those 6 missing either way (docs/accuracy.md, GEMM, the twenty-third look).
About 30-110 s a group.
"""

import sys
import time
from pathlib import Path

import numpy as np

from cost_models.calibration import available_profiles, load_profile
from cost_models.efficiency import GemmParams, gemm_time_s
from cost_models.gemm_shape import fit_shape_correction
from cost_models.hardware import get_hardware
from tuner.calibrate import (
    CHIP_TO_SYSTEM,
    FOLDS,
    KERNEL_DISPATCH,
    MAX_ROWS_PER_GROUP,
    SEED,
    _gemm_group_rows,
    _subsample,
    gemm_specs,
)
from tuner.fitting import fit, fold_ids
from tuner.kernel_data import read_kernel_table

HERE = Path(__file__).resolve().parent
full = read_kernel_table(str(HERE / "gemm_perf_all_rows.csv.gz"))
subset = read_kernel_table(str(HERE / "gemm_perf.csv.gz"))
BASE_BW = np.array([0.25, 0.5, 0.5])
CANDIDATES = [(s, sh) for s in (1.0, 1.41, 2.0) for sh in (0.0625, 0.125, 0.25, 0.5)]


def setting(s):
    bw = tuple(BASE_BW * s)
    step = tuple([0.5 * min(s, 1.0)] * 3)
    return bw, step


groups = []
only = sys.argv[1:]
for name in available_profiles():
    if name.startswith("tpu"):
        continue
    profile = load_profile(name)
    for fmt in profile.gemm:
        if only and f"{name}:{fmt}" not in only:
            continue
        groups.append((name, fmt))
shipped_res, nested_res, picks = [], [], []
for name, fmt in groups:
    t0 = time.time()
    profile = load_profile(name)
    chip = get_hardware(profile.chip)
    system, backend = CHIP_TO_SYSTEM[profile.chip], profile.backend
    c = subset.columns
    rows = _subsample(_gemm_group_rows(subset, system, backend, fmt), MAX_ROWS_PER_GROUP, SEED)
    specs = gemm_specs(fmt, backend, chip)
    fixed = dict(KERNEL_DISPATCH.get((backend, fmt, chip.name), {}))
    m, n, k = (c[a][rows].astype(float) for a in "mnk")
    measured = c["latency"][rows] * 1e-3

    def predict(values, idx, m=m, n=n, k=k, fixed=fixed, fmt=fmt, chip=chip):
        return gemm_time_s(m[idx], n[idx], k[idx], fmt, chip, GemmParams(**fixed, **values), weights_in_l2=True)

    folds = fold_ids(n * 1_000_003 + k, FOLDS, SEED)
    t = full.columns
    idx = _gemm_group_rows(full, system, backend, fmt)
    tm, tn, tk = (t[a][idx].astype(float) for a in "mnk")
    ts = t["latency"][idx] * 1e-3
    e_ship = np.empty(len(rows))
    e_nest = np.empty(len(rows))
    fold_picks = []
    for f in range(FOLDS):
        train = np.flatnonzero(folds != f)
        result = fit(specs, predict, measured, train, starts=[{}, {"split_k_min_depth": 256.0}], diagnose=False)
        p = GemmParams(**fixed, **result.values)
        test = folds == f
        kept = ~np.isin(tn * 1_000_003 + tk, np.unique(n[test] * 1_000_003 + k[test]))
        fitted = gemm_time_s(tm, tn, tk, fmt, chip, p, weights_in_l2=True)
        resid = np.log(ts / fitted)
        km, kn, kk, kr = tm[kept], tn[kept], tk[kept], resid[kept]
        inner = fold_ids(kn * 1_000_003 + kk, FOLDS, SEED + 1)
        scores = []
        for s, sh in CANDIDATES:
            bw, step = setting(s)
            errs = []
            for g in range(FOLDS):
                tr, te = inner != g, inner == g
                corr = fit_shape_correction(km[tr], kn[tr], kk[tr], kr[tr], bw, sh, step, median_level=True)
                errs.append(np.abs(kr[te] - corr.log_correction(km[te], kn[te], kk[te])))
            scores.append(np.mean(np.concatenate(errs)))
        best = CANDIDATES[int(np.argmin(scores))]
        fold_picks.append(best)

        def flt(a, b, cc, p=p, fmt=fmt, chip=chip):
            return np.log(gemm_time_s(a, b, cc, fmt, chip, p, weights_in_l2=True))

        base_pred = gemm_time_s(m[test], n[test], k[test], fmt, chip, p, weights_in_l2=True)
        for s_, sh_, out in ((1.0, 0.5, e_ship), (best[0], best[1], e_nest)):
            bw, step = setting(s_)
            corr = fit_shape_correction(km, kn, kk, kr, bw, sh_, step, fitted_log_time=flt, median_level=True)
            out[test] = np.abs(base_pred * corr.factor(m[test], n[test], k[test]) / measured[test] - 1)
    shipped_res.append((np.median(e_ship), np.quantile(e_ship, 0.9)))
    nested_res.append((np.median(e_nest), np.quantile(e_nest, 0.9)))
    print(
        f"{name:18s} {fmt:10s} shipped {shipped_res[-1][0]:.4f}/{shipped_res[-1][1]:.4f}"
        f" nested {nested_res[-1][0]:.4f}/{nested_res[-1][1]:.4f} picks {fold_picks} {time.time() - t0:.0f}s",
        flush=True,
    )
for label, v in (("shipped", shipped_res), ("nested", nested_res)):
    v = np.array(v)
    print(
        f"{label}: {int(((v[:, 0] > 0.08) | (v[:, 1] > 0.25)).sum())} missing,"
        f" mean median {v[:, 0].mean():.4f}, mean p90 {v[:, 1].mean():.4f}"
    )
