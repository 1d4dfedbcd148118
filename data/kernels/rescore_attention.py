"""Maintainer tool (not used at run time or in tests): re-measure the held-out error of every
shipped GPU profile's prefill and decode attention groups on every row of the group, without
refitting their parameters.

    python data/kernels/rescore_attention.py [PROFILE ...]   # default: every GPU profile

A refit moves the parameters by the solver path's noise from one CPU to another
(data/kernels/add_shape_correction.py), so the shipped parameters are kept. Per group (chip,
engine, attention and KV format) the held-out error as tuner calibrate now measures it
(tuner.fitting.cross_validate's fit_rows): 5 folds by attention shape (heads, KV heads, head dim)
over every row of the group in data/kernels/context_attention_perf.csv.gz or
generation_attention_perf.csv.gz (1,500 a group, where before 2026-12-07 the error was measured
on the 300 the fit draws); per fold the fit on the training folds' rows of those 300, every row of
the test fold predicted. The group's full fit is redone here only to check that it lands where the
shipped parameters are (printed: the largest relative difference of its values), not stored.

Rewrites cost_models/calibration_profiles/<name>.yaml: the prefill_attention and
decode_attention cv_error entries (median, p90, held_out_rows, roofline_median, roofline_p90) and
a note in the provenance; nothing else.
"""

from __future__ import annotations

import datetime
import sys
import time

from add_shape_correction import cpu_name  # (this folder: run as a script)

from cost_models.calibration import _profile_dir, available_profiles, load_profile
from cost_models.hardware import get_hardware
from tuner.calibrate import CHIP_TO_SYSTEM, FOLDS, MAX_ROWS_PER_GROUP, SEED, fit_decode, fit_prefill, write_profile
from tuner.kernel_data import REPO_KERNELS, read_kernel_table

NOTE = "Attention held-out errors re-measured"


def main(names: list[str]) -> None:
    prefill = read_kernel_table(REPO_KERNELS / "context_attention_perf.csv.gz")
    decode = read_kernel_table(REPO_KERNELS / "generation_attention_perf.csv.gz")
    today = datetime.date.today().isoformat()
    for name in names or [n for n in available_profiles() if not n.startswith("tpu")]:
        started = time.perf_counter()
        profile = load_profile(name)
        chip = get_hardware(profile.chip)
        system, backend = CHIP_TO_SYSTEM[profile.chip], profile.backend
        reports = fit_prefill(prefill, chip, system, backend, SEED, FOLDS, MAX_ROWS_PER_GROUP)
        reports += fit_decode(decode, chip, system, backend, SEED, FOLDS, MAX_ROWS_PER_GROUP)
        cv_error = dict(profile.cv_error)
        for r in reports:
            stored = cv_error[r.name]
            shipped = (profile.prefill_attention if r.op_class == "prefill_attention" else profile.decode_attention)[
                r.key
            ].model_dump()
            drift = max(
                (
                    abs(v / shipped[p] - 1)
                    for p, v in r.values.items()
                    if isinstance(shipped.get(p), float) and shipped[p]
                ),
                default=0.0,
            )
            assert r.rows == stored.rows, (name, r.name, r.rows, stored.rows)
            cv_error[r.name] = stored.model_copy(
                update={
                    "median": r.cv_median,
                    "p90": r.cv_p90,
                    "held_out_rows": r.held_out_rows,
                    "roofline_median": r.roofline_median,
                    "roofline_p90": r.roofline_p90,
                }
            )
            print(
                f"{name:18s} {r.name:34s} stored {stored.median:.4f}/{stored.p90:.4f} on {stored.rows} rows; "
                f"every row {r.cv_median:.4f}/{r.cv_p90:.4f} on {r.held_out_rows}; refit drift {drift:.3f}",
                flush=True,
            )
        provenance = profile.provenance
        assert provenance is not None
        note = (
            f"{NOTE} {today} by data/kernels/rescore_attention.py on {cpu_name()} (parameters not refitted): "
            "5 folds by attention shape over every row of each group in its data file, per fold the fit on "
            "the training folds' rows of the 300 it reads, every row of the test fold predicted "
            "(prefill_attention and decode_attention cv_error; held_out_rows)"
        )
        notes = [n for n in provenance.notes if not n.startswith(NOTE)] + [note]
        updated = profile.model_copy(
            update={"cv_error": cv_error, "provenance": provenance.model_copy(update={"notes": notes})}
        )
        write_profile(updated, _profile_dir() / f"{name}.yaml")
        print(f"{name}: written in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
