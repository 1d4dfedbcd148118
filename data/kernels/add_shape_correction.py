"""Maintainer tool (not used at run time or in tests): add the GEMM shape correction
(cost_models/gemm_shape.py) to every shipped GPU profile without refitting its parametric GEMM
parameters.

    python data/kernels/add_shape_correction.py [PROFILE ...]   # default: every GPU profile

A refit moves the parametric parameters by the solver path's noise from one CPU to another (the
h200 SGLang fp8 median 7.90% on the Intel Xeon that fitted the shipped profiles, 8.01% on an AMD
EPYC VM: tests/tuner/test_calibrate.py), so the shipped parameters are kept as they are. Per GEMM
group (chip, engine, format):

- the correction: from the shipped parameters' log residuals on every row of the group in
  data/kernels/gemm_perf_all_rows.csv.gz (3,000 a group), made monotone in m against them;
- its held-out error, the whole pipeline as tuner calibrate measures it (fit_gemm with the
  correction): 5 folds by weight shape (n, k) over every row of the group in
  gemm_perf_all_rows.csv.gz (3,000; before 2026-12-07 the 300 rows the parametric fit reads from
  data/kernels/gemm_perf.csv.gz); per fold the parametric fit on the training folds' rows of those
  300, the correction from every row of gemm_perf_all_rows.csv.gz whose (n, k) is not a test
  fold's, every row of the test fold. ``median``/``p90`` are that; ``fit_only_median``/``fit_only_p90`` the same folds'
  fit alone (on this machine: they can differ from the shipped fit's stored numbers by the
  solver's noise).

Rewrites cost_models/calibration_profiles/<name>.yaml: the gemm entries' shape_correction, the
gemm cv_error entries, a data file and a note in the provenance; nothing else.
"""

from __future__ import annotations

import datetime
import platform
import sys
import time

from cost_models.calibration import DataFile, HeldOutError, _profile_dir, available_profiles, load_profile
from cost_models.hardware import get_hardware
from tuner.calibrate import (
    CHIP_TO_SYSTEM,
    KERNEL_DISPATCH,
    GroupReport,
    _gemm_group_rows,
    _GemmShapeRows,
    fit_gemm_as_shipped,
    write_profile,
)
from tuner.kernel_data import REPO_KERNELS, read_kernel_table, repo_relative_path

ALL_ROWS = REPO_KERNELS / "gemm_perf_all_rows.csv.gz"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def held_out_error(stored: HeldOutError, report: GroupReport, warnings: bool = False) -> HeldOutError:
    """``stored`` (a group's shipped held-out error) with ``report``'s held-out errors (a fit_gemm
    of the same rows with the shape correction): with and without the correction, and with its
    warnings where ``warnings`` (the parameters refitted: data/kernels/refit_gemm_groups.py)."""
    assert report.rows == stored.rows, (report.key, report.rows, stored.rows)
    update: dict = {
        "median": report.cv_median,
        "p90": report.cv_p90,
        "fit_only_median": report.fit_only_median,
        "fit_only_p90": report.fit_only_p90,
        "held_out_rows": report.held_out_rows,
        "roofline_median": report.roofline_median,
        "roofline_p90": report.roofline_p90,
    }
    if warnings:
        update["warnings"] = list(report.warnings)
    return stored.model_copy(update=update)


def main(names: list[str]) -> None:
    pinned = read_kernel_table(REPO_KERNELS / "gemm_perf.csv.gz")
    every = read_kernel_table(ALL_ROWS)
    today = datetime.date.today().isoformat()
    for name in names or [n for n in available_profiles() if not n.startswith("tpu")]:
        started = time.perf_counter()
        profile = load_profile(name)
        chip = get_hardware(profile.chip)
        system, backend = CHIP_TO_SYSTEM[profile.chip], profile.backend
        reports = {r.key: r for r in fit_gemm_as_shipped(profile.chip, backend, pinned, every)}
        if set(reports) != set(profile.gemm):
            raise SystemExit(f"{name}: groups {sorted(reports)} fitted, {sorted(profile.gemm)} shipped")
        gemm, cv_error, rows_used = dict(profile.gemm), dict(profile.cv_error), 0
        for fmt, params in profile.gemm.items():
            fixed = dict(KERNEL_DISPATCH.get((backend, fmt, chip.name), {}))
            shape = _GemmShapeRows(every, _gemm_group_rows(every, system, backend, fmt), fmt, chip, fixed)
            correction = shape.fit_params(params)
            gemm[fmt] = params.model_copy(update={"shape_correction": correction})
            rows_used += correction.rows
            r, stored = reports[fmt], profile.cv_error[f"gemm/{fmt}"]
            cv_error[f"gemm/{fmt}"] = held_out_error(stored, r)
            print(
                f"{name:18s} {fmt:10s} shipped {stored.median:.4f}/{stored.p90:.4f} "
                f"fit alone here {r.fit_only_median:.4f}/{r.fit_only_p90:.4f} "
                f"with the correction {r.cv_median:.4f}/{r.cv_p90:.4f} rows {correction.rows}",
                flush=True,
            )
        source = " | ".join(line.lstrip("# ").strip() for line in every.header[:2])
        provenance = profile.provenance
        assert provenance is not None
        files = [f for f in provenance.data_files if f.path != repo_relative_path(ALL_ROWS)]
        files.append(DataFile(path=repo_relative_path(ALL_ROWS), rows_used=rows_used, source=source[:300]))
        note = (
            f"GEMM shape correction (cost_models/gemm_shape.py), added {today} by "
            "data/kernels/add_shape_correction.py to the GEMM parameters fitted on "
            f"{provenance.fit_date} (not refitted): per group a grid in log2 (m, n, k) of the shrunk "
            "Gaussian-weighted mean of those parameters' log residuals over every row of the group in "
            f"{repo_relative_path(ALL_ROWS)}, monotone in m against the fit (rows and settings in each gemm "
            "entry's shape_correction). gemm cv_error: the whole pipeline held out, as tuner calibrate "
            "measures it (5 folds by weight shape over every row of the group in "
            f"{repo_relative_path(ALL_ROWS)}; per fold the parametric fit on the training folds' rows of "
            "the 300 it reads from data/kernels/gemm_perf.csv.gz, the correction from the training "
            f"folds' weight shapes' rows of {repo_relative_path(ALL_ROWS)}, every row of the test fold), computed "
            f"{today} on {cpu_name()}; fit_only_median / fit_only_p90: the same folds' fit alone"
        )
        notes = [n for n in provenance.notes if not n.startswith("GEMM shape correction")] + [note]
        updated = profile.model_copy(
            update={
                "gemm": gemm,
                "cv_error": cv_error,
                "provenance": provenance.model_copy(update={"data_files": files, "notes": notes}),
            }
        )
        write_profile(updated, _profile_dir() / f"{name}.yaml")
        print(f"{name}: written in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
