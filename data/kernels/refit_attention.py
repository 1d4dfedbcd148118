"""Maintainer tool (not used at run time or in tests): refit every shipped GPU profile's prefill and
decode attention groups as tuner calibrate now fits them, leaving every other fit of the profile
as shipped.

    python data/kernels/refit_attention.py [PROFILE ...]   # default: every GPU profile

A full refit (python -m tuner.accuracy_report) moves every GEMM and collective fit by the solver
path's noise on another CPU (data/kernels/add_shape_correction.py), so only the attention groups
are refitted here. Per group (chip, engine, attention and KV format), from
data/kernels/context_attention_perf.csv.gz or generation_attention_perf.csv.gz: the fit on every
row of the group (tuner.calibrate.ATTENTION_MAX_ROWS_PER_GROUP; before 2026-12-07 300 drawn of its
500), its held-out error on every row (5 folds by attention shape (heads, KV heads, head dim)).

Rewrites cost_models/calibration_profiles/<name>.yaml: the prefill_attention and
decode_attention entries and their cv_error, the elementwise prior (the decode fits' median
memory_eff: tuner.calibrate.build_profile), the two attention files' rows_used and a note in the
provenance; nothing else. Printed 2026-12-07 (AMD EPYC VM): decode attention 2 -> 0 of 33 groups
missing 12% (h200 TRT-LLM bf16 12.0% -> 11.7%, fp8 12.3% -> 11.4%), prefill 0 of 43; the errors
before are those of the 300-row fits held out on every row.
"""

from __future__ import annotations

import datetime
import sys
import time

import numpy as np
from add_shape_correction import cpu_name  # (this folder: run as a script)

from cost_models.calibration import DataFile, _profile_dir, available_profiles, load_profile
from cost_models.efficiency import DecodeAttentionParams, PrefillAttentionParams
from cost_models.hardware import get_hardware
from tuner.calibrate import (
    ATTENTION_MAX_ROWS_PER_GROUP,
    CHIP_TO_SYSTEM,
    FOLDS,
    SEED,
    fit_decode,
    fit_prefill,
    write_profile,
)
from tuner.kernel_data import REPO_KERNELS, read_kernel_table, repo_relative_path

NOTE = "Attention refitted"
OLD_NOTE = "Attention held-out errors re-measured"


def main(names: list[str]) -> None:
    files = {
        "prefill_attention": read_kernel_table(REPO_KERNELS / "context_attention_perf.csv.gz"),
        "decode_attention": read_kernel_table(REPO_KERNELS / "generation_attention_perf.csv.gz"),
    }
    today = datetime.date.today().isoformat()
    for name in names or [n for n in available_profiles() if not n.startswith("tpu")]:
        started = time.perf_counter()
        profile = load_profile(name)
        chip = get_hardware(profile.chip)
        system, backend = CHIP_TO_SYSTEM[profile.chip], profile.backend
        rows = ATTENTION_MAX_ROWS_PER_GROUP
        reports = {
            "prefill_attention": fit_prefill(files["prefill_attention"], chip, system, backend, SEED, FOLDS, rows),
            "decode_attention": fit_decode(files["decode_attention"], chip, system, backend, SEED, FOLDS, rows),
        }
        prefill = {r.key: PrefillAttentionParams(**r.values) for r in reports["prefill_attention"]}
        decode = {r.key: DecodeAttentionParams(**r.values) for r in reports["decode_attention"]}
        if set(prefill) != set(profile.prefill_attention) or set(decode) != set(profile.decode_attention):
            raise SystemExit(f"{name}: attention groups fitted differ from the shipped ones")
        cv_error = dict(profile.cv_error)
        for cls_reports in reports.values():
            for r in cls_reports:
                before = cv_error[r.name]
                cv_error[r.name] = r.held_out_error()
                print(
                    f"{name:18s} {r.name:34s} {before.median:.4f}/{before.p90:.4f} on {before.rows} rows fitted -> "
                    f"{r.cv_median:.4f}/{r.cv_p90:.4f} on {r.rows}",
                    flush=True,
                )
        # build_profile's elementwise prior: the decode fits' median memory_eff.
        elementwise = profile.elementwise.model_copy(
            update={"memory_eff": float(np.median([p.memory_eff for p in decode.values()]))}
        )
        provenance = profile.provenance
        assert provenance is not None
        data_files = []
        for f in provenance.data_files:
            for cls, table in files.items():
                if f.path == repo_relative_path(table.path):
                    f = DataFile(path=f.path, rows_used=sum(r.rows for r in reports[cls]), source=f.source)
            data_files.append(f)
        note = (
            f"{NOTE} {today} by data/kernels/refit_attention.py on {cpu_name()} (the other fits not "
            "refitted): prefill_attention and decode_attention fitted on every row of each group "
            "(tuner.calibrate.ATTENTION_MAX_ROWS_PER_GROUP), held out on every row (5 folds by attention "
            "shape); elementwise memory_eff from those decode fits"
        )
        notes = [n for n in provenance.notes if not n.startswith((NOTE, OLD_NOTE))] + [note]
        updated = profile.model_copy(
            update={
                "prefill_attention": prefill,
                "decode_attention": decode,
                "cv_error": cv_error,
                "elementwise": elementwise,
                "provenance": provenance.model_copy(update={"data_files": data_files, "notes": notes}),
            }
        )
        write_profile(updated, _profile_dir() / f"{name}.yaml")
        print(f"{name}: written in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
