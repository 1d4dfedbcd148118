"""Maintainer check (not used at run time or in tests): how far a smoother of the shipped GEMM
fits' log residuals over the kernel database's shapes would take the held-out errors
(tuner/accuracy_report.py, "An eleventh look"). Reads the full database in ../shared:

    python data/kernels/residual_smoother_check.py

Per group (chip, engine, format): 5 folds by (n, k) as tuner.fitting.cross_validate; each held-out
row gets the kernel-weighted mean of the training rows' residuals (bandwidths in log2 m, log2 n,
log2 k; shrink: weight added to the denominator). Prints median / p90 absolute error per setting.
"""

from pathlib import Path

import numpy as np

from cost_models.calibration import available_profiles, load_profile
from cost_models.efficiency import gemm_time_s
from cost_models.hardware import get_hardware
from tuner.calibrate import CHIP_TO_SYSTEM
from tuner.fitting import fold_ids
from tuner.kernel_data import read_kernel_table

t = read_kernel_table(str(Path(__file__).resolve().parents[3] / "shared/measurements/kernels/gemm_perf.csv.gz"))
c = t.columns
settings = [(0.25, 0.5, 0.5), (0.15, 0.5, 0.5), (0.25, 0.35, 0.35), (0.25, 0.5, 2.0), (0.25, 0.7, 0.7)]
allres = {s: [] for s in settings}
base_all = []
for name in available_profiles():
    if name.startswith("tpu"):
        continue
    prof = load_profile(name)
    chip = get_hardware(prof.chip)
    system = CHIP_TO_SYSTEM[prof.chip]
    for fmt, p in prof.gemm.items():
        mask = (c["system"] == system) & (c["engine"] == prof.backend) & (c["gemm_dtype"] == fmt)
        if fmt == "fp8_block":
            mask &= (c["n"] % 128 == 0) & (c["k"] % 128 == 0)
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            continue
        m, n, k = (c[a][idx].astype(float) for a in "mnk")
        meas = c["latency"][idx] * 1e-3
        pred = gemm_time_s(m, n, k, fmt, chip, p)
        r = np.log(meas / pred)
        folds = fold_ids(n * 1_000_003 + k, 5, 0)
        base = np.abs(pred / meas - 1)
        lm, ln, lk = np.log2(m), np.log2(n), np.log2(k)
        line = f"{name:18s} {fmt:10s} {len(idx):5d} base {np.median(base):.3f}/{np.percentile(base, 90):.3f}"
        base_all.append((np.median(base), np.percentile(base, 90)))
        for s in settings:
            bm, bn, lam = s
            corr = np.zeros_like(r)
            for f in range(5):
                te = np.flatnonzero(folds == f)
                tr = np.flatnonzero(folds != f)
                d2 = (
                    ((lm[te, None] - lm[None, tr]) / bm) ** 2
                    + ((ln[te, None] - ln[None, tr]) / bn) ** 2
                    + ((lk[te, None] - lk[None, tr]) / bn) ** 2
                )
                w = np.exp(-0.5 * d2)
                corr[te] = (w @ r[tr]) / (w.sum(1) + lam)
            e = np.abs(pred * np.exp(corr) / meas - 1)
            md, p9 = np.median(e), np.percentile(e, 90)
            allres[s].append((md, p9))
            line += f" | {md:.3f}/{p9:.3f}{'*' if md > 0.08 or p9 > 0.25 else ''}"
        print(line, flush=True)
b = np.array(base_all)
print("base misses", ((b[:, 0] > 0.08) | (b[:, 1] > 0.25)).sum(), len(b))
for s, v in allres.items():
    v = np.array(v)
    print(
        s,
        "misses",
        ((v[:, 0] > 0.08) | (v[:, 1] > 0.25)).sum(),
        f"mean median {v[:, 0].mean():.4f} mean p90 {v[:, 1].mean():.4f}",
    )
