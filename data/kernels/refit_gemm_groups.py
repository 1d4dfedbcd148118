"""Maintainer tool (not used at run time or in tests): refit named GEMM groups of the shipped
profiles, the parametric fit and its shape correction together, as tuner calibrate fits them, and
write only those groups back.

    python data/kernels/refit_gemm_groups.py [--reason TEXT] PROFILE:FORMAT [...]   # e.g. l40s-vllm:fp8

--reason names the change of the model that the provenance note gives for the refit (default: a
kernel dispatch, tuner/calibrate.py KERNEL_DISPATCH).

Use it when a change of the GEMM model concerns a few groups (a kernel dispatch of one engine on
one chip: tuner/calibrate.py KERNEL_DISPATCH): a refit of every profile would move every other
group's parameters by the solver path's noise on another CPU (data/kernels/add_shape_correction.py),
where neither their model nor their data changed. Per group, the fit of tuner calibrate (fit_gemm,
the 300 rows of data/kernels/gemm_perf.csv.gz it reads, 5 folds by weight shape, the correction
from every row of data/kernels/gemm_perf_all_rows.csv.gz, monotone in m) replaces the gemm entry
and its cv_error entry; a provenance note names the groups, the date and the CPU. Nothing else of
the profile changes.
"""

from __future__ import annotations

import datetime
import sys
import time

from add_shape_correction import ALL_ROWS, cpu_name, held_out_error

from cost_models.calibrated_times import gemm_format
from cost_models.calibration import _profile_dir, gemm_fit_format, load_profile
from cost_models.efficiency import GemmParams
from tuner.calibrate import fit_gemm_as_shipped, write_profile
from tuner.kernel_data import REPO_KERNELS, read_kernel_table
from tuner.moe_kernels import FORMATS, with_moe_fit, without_moe

DEFAULT_REASON = "tuner/calibrate.py KERNEL_DISPATCH"


def main(targets: list[str], reason: str = DEFAULT_REASON) -> None:
    if not targets or any(":" not in t for t in targets):
        raise SystemExit("usage: refit_gemm_groups.py [--reason TEXT] PROFILE:FORMAT [...]")
    pinned = read_kernel_table(REPO_KERNELS / "gemm_perf.csv.gz")
    every = read_kernel_table(ALL_ROWS)
    today = datetime.date.today().isoformat()
    by_profile: dict[str, list[str]] = {}
    for target in targets:
        name, fmt = target.split(":", 1)
        by_profile.setdefault(name, []).append(fmt)
    for name, formats in by_profile.items():
        started = time.perf_counter()
        profile = load_profile(name)
        reports = {r.key: r for r in fit_gemm_as_shipped(profile.chip, profile.backend, pinned, every)}
        gemm, cv_error = dict(profile.gemm), dict(profile.cv_error)
        for fmt in formats:
            if fmt not in profile.gemm or fmt not in reports:
                raise SystemExit(f"{name}: no shipped gemm group {fmt!r} (shipped: {', '.join(profile.gemm)})")
            r, stored = reports[fmt], profile.cv_error[f"gemm/{fmt}"]
            gemm[fmt] = GemmParams(**r.values, shape_correction=r.shape_correction)
            cv_error[f"gemm/{fmt}"] = held_out_error(stored, r, warnings=True)
            print(
                f"{name:18s} {fmt:10s} shipped {stored.median:.4f}/{stored.p90:.4f} "
                f"(fit alone {stored.fit_only_median:.4f}/{stored.fit_only_p90:.4f}) -> "
                f"{r.cv_median:.4f}/{r.cv_p90:.4f} (fit alone {r.fit_only_median:.4f}/{r.fit_only_p90:.4f})",
                flush=True,
            )
        # The fused-MoE classes stand on the dense fit of their GEMM format
        # (tuner/moe_kernels.py): those on a refitted group are refitted on it; the others would
        # move by the solver's noise alone, so they are kept.
        updated = profile.model_copy(update={"gemm": gemm, "cv_error": cv_error})
        moe, moe_cv = dict(profile.moe), dict(profile.moe_cv_error)
        refitted_moe = []
        if profile.moe:
            _, result = with_moe_fit(without_moe(updated))
            assert result is not None
            for moe_fmt, params in result.params.items():
                if gemm_fit_format(updated, gemm_format(*FORMATS[moe_fmt])) in formats and moe_fmt in moe:
                    before, after = profile.moe_cv_error[f"moe/{moe_fmt}"], result.cv_error[f"moe/{moe_fmt}"]
                    moe[moe_fmt], moe_cv[f"moe/{moe_fmt}"] = params, after
                    refitted_moe.append(moe_fmt)
                    print(
                        f"{name:18s} moe/{moe_fmt:6s} shipped {before.median:.4f}/{before.p90:.4f} -> "
                        f"{after.median:.4f}/{after.p90:.4f}",
                        flush=True,
                    )
        provenance = profile.provenance
        assert provenance is not None
        note = (
            f"GEMM groups {', '.join(formats)} refitted {today} by data/kernels/refit_gemm_groups.py on "
            f"{cpu_name()} (the parametric fit and its shape correction, as tuner calibrate fits them, "
            f"after a change of their model: {reason})"
            + (f", with the fused-MoE class of {', '.join(refitted_moe)} on them" if refitted_moe else "")
            + f"; the other groups are as fitted on {provenance.fit_date}"
        )
        notes = [n for n in provenance.notes if not n.startswith(f"GEMM groups {', '.join(formats)} refitted")]
        updated = updated.model_copy(
            update={
                "moe": moe,
                "moe_cv_error": moe_cv,
                "provenance": provenance.model_copy(update={"notes": [*notes, note]}),
            }
        )
        write_profile(updated, _profile_dir() / f"{name}.yaml")
        print(f"{name}: written in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--reason"] and len(args) > 1:
        main(args[2:], args[1])
    else:
        main(args)
