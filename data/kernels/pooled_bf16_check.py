"""Maintainer check (not used at run time or in tests): the bf16 GEMM shape correction
(cost_models/gemm_shape.py) learned from every engine's rows of the chip instead of the group's
own (docs/accuracy.md, GEMM, the fourteenth look). In bf16 all three engines run
torch.nn.functional.linear (cuBLAS), and their same-shape rows agree to 1-5% in median
(data/kernels/same_shapes.py), so three engines' 9,000 rows might average out collector noise
that one engine's 3,000 keep. Per bf16 group, 5 folds by (n, k) as tuner calibrate draws them:
the fold's fit, its log residuals on the training shapes' rows of the own engine ("own", what
ships), of all three engines with each engine's median residual moved to the own engine's
("pooled"), or as they are ("pooled_raw"); the correction from them (monotone in m); the test rows:

    python data/kernels/pooled_bf16_check.py [ENGINES [CHIP]]

ENGINES (comma-separated, default all three) are the engines pooled; CHIP keeps that chip's groups.

Printed 2026-12-06 (AMD EPYC VM): own 3 of 18 bf16 groups missing (mean median 5.43%, p90 16.0%),
pooled 3 (5.42%, 16.4%), pooled_raw 3 (5.57%, 17.2%); l40s SGLang 8.6/28.1% -> 8.9/30.0%, vLLM
8.1/21.3% -> 8.8/24.9%, TRT-LLM 7.5/30.3% -> 6.8/30.3%. Not shipped. Printed 2026-12-07 with
`trtllm,vllm l40s` (the two engines whose l40s same-shape rows agree best, p90 19.9%): pooled
TRT-LLM 7.5/30.3% -> 7.3/28.5%, vLLM 8.1/21.3% -> 8.8/23.7%; both still missing.
The correction's level is the mean's (median_level=False), as when these were printed (the
shipped correction's is the rows' median since 2026-12-07: cost_models/gemm_shape.py).
"""

import sys
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


fmt = "bfloat16"
POOLED = tuple(sys.argv[1].split(",")) if len(sys.argv) > 1 else ("trtllm", "vllm", "sglang")
ONLY_CHIP = sys.argv[2] if len(sys.argv) > 2 else None
res = {"own": [], "pooled": [], "pooled_raw": []}
for name in available_profiles():
    if name.startswith("tpu"):
        continue
    profile = load_profile(name)
    if fmt not in profile.gemm or (ONLY_CHIP is not None and profile.chip != ONLY_CHIP):
        continue
    if profile.backend not in POOLED:
        continue
    chip = get_hardware(profile.chip)
    system, backend = CHIP_TO_SYSTEM[profile.chip], profile.backend
    c = subset.columns
    rows = _subsample(_gemm_group_rows(subset, system, backend, fmt), MAX_ROWS_PER_GROUP, SEED)
    specs = gemm_specs(fmt, backend, chip)
    fixed = dict(KERNEL_DISPATCH.get((backend, fmt, chip.name), {}))
    m, n, k = (c[a][rows].astype(float) for a in "mnk")
    measured = c["latency"][rows] * 1e-3

    def predict(values, idx, m=m, n=n, k=k, fixed=fixed, chip=chip):
        return gemm_time_s(m[idx], n[idx], k[idx], fmt, chip, GemmParams(**fixed, **values), weights_in_l2=True)

    folds = fold_ids(n * 1_000_003 + k, FOLDS, SEED)
    params = []
    for f in range(FOLDS):
        train = np.flatnonzero(folds != f)
        result = fit(specs, predict, measured, train, starts=[{}, {"split_k_min_depth": 256.0}], diagnose=False)
        params.append(GemmParams(**fixed, **result.values))
    t = full.columns
    engines = {}
    for eng in POOLED:
        idx = _gemm_group_rows(full, system, eng, fmt)
        tm, tn, tk = (t[a][idx].astype(float) for a in "mnk")
        engines[eng] = (
            tm,
            tn,
            tk,
            t["latency"][idx] * 1e-3,
            [gemm_time_s(tm, tn, tk, fmt, chip, p, weights_in_l2=True) for p in params],
        )
    line = f"{name:18s}"
    for label in res:
        errors = np.empty(len(rows))
        for f in range(FOLDS):
            test = folds == f
            test_keys = np.unique(n[test] * 1_000_003 + k[test])
            parts = []
            own_median = None
            for eng, (tm, tn, tk, sec, fitted) in engines.items():
                if label == "own" and eng != backend:
                    continue
                kept = ~np.isin(tn * 1_000_003 + tk, test_keys)
                r = np.log(sec[kept] / fitted[f][kept])
                parts.append((eng, tm[kept], tn[kept], tk[kept], r))
            if label == "pooled":  # each engine's level to the own engine's
                own_med = np.median([p[4] for p in parts if p[0] == backend][0])
                parts = [(e, a, b, cc, r - np.median(r) + own_med) for e, a, b, cc, r in parts]
            A = np.concatenate([p[1] for p in parts])
            B = np.concatenate([p[2] for p in parts])
            C = np.concatenate([p[3] for p in parts])
            R = np.concatenate([p[4] for p in parts])

            def flt(a, b, cc, p=params[f], chip=chip):
                return np.log(gemm_time_s(a, b, cc, fmt, chip, p, weights_in_l2=True))

            corr = fit_shape_correction(A, B, C, R, fitted_log_time=flt, median_level=False)
            pred = gemm_time_s(m[test], n[test], k[test], fmt, chip, params[f], weights_in_l2=True) * corr.factor(
                m[test], n[test], k[test]
            )
            errors[test] = np.abs(pred / measured[test] - 1)
        res[label].append((np.median(errors), np.quantile(errors, 0.9)))
        line += f" | {label} {res[label][-1][0]:.3f}/{res[label][-1][1]:.3f}"
    print(line, flush=True)
for label, v in res.items():
    v = np.array(v)
    print(
        label,
        "missing",
        int(((v[:, 0] > 0.08) | (v[:, 1] > 0.25)).sum()),
        f"mean med {v[:, 0].mean():.4f} p90 {v[:, 1].mean():.4f}",
    )
