"""Full deployment estimates per CPU second over a shipped study's whole space, in one call.

Run on demand (not a pytest test), from the repository root:

    python bench/bench_study_estimate.py llama-2-70b-h100 [--calls 5] [--batches N] [--calibration auto]

What the exhaustive sampler scores at 100,000-1,000,000 configurations per call (issue 13 item 6):
the study's spec (studies/NAME.yaml) with its calibration set to ``none`` (the roofline; ``auto``
for the shipped profile), every structurally valid candidate of its space as one deployment table
(the columns ``evaluate`` builds, without the Optuna side), then ``estimate`` on all of it:
warm-up calls, then the median of ``--calls`` calls, timed with ``time.thread_time`` (this process's
CPU: on a shared machine its CPU time is what an idle core would take). ``--batches N`` widens the
space's ``batch`` to 1..N (palm-540b-tpu-v4 with 46: 1,000,960 candidates, bench_exhaustive.py's
space). bench/bench_estimate.py times a random draw instead, where every column is drawn per row
and nothing repeats (the worst case for the shape-only work the estimate shares between rows).
Pinned to one CPU; prints the CPU model and the load average beside the rates.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost_models.deployment import estimate
from cost_models.deployments import make_deployments
from machine import cpu_model, pin_to_one_cpu
from search_spaces.space import GPU_ENGINES, compile_study, engine_act_dtype, structurally_valid
from search_spaces.spec import parse_spec
from tuner.allocator import reuse_freed_memory

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="a spec in studies/ (without .yaml)")
    parser.add_argument("--calls", type=int, default=5, help="timed calls (after the warm-up)")
    parser.add_argument("--batches", type=int, default=0, help="widen the space's batch to 1..N")
    parser.add_argument("--calibration", default="none", help="none (roofline) or auto (shipped profile)")
    args = parser.parse_args()
    pinned = pin_to_one_cpu(None)
    data = yaml.safe_load((REPO / "studies" / f"{args.study}.yaml").read_text())
    data["calibration"] = args.calibration
    if args.batches:
        data["space"]["batch"] = list(range(1, args.batches + 1))
    study = compile_study(parse_spec(data))
    reuse_freed_memory()
    indices = study.space.all_indices()
    valid = structurally_valid(study, indices)
    indices = {name: column[valid] for name, column in indices.items()}
    n = int(valid.sum())
    columns = {**{k: np.full(n, c) for k, c in study.fixed_columns.items()}, **study.space.columns_of(indices)}
    if study.engine in GPU_ENGINES and "weight_dtype" in columns:
        columns["act_dtype"] = engine_act_dtype(columns["weight_dtype"])
    workload = study.spec.workload
    deployments = make_deployments(
        study.model, study.hardware, prompt_len=workload.prompt_len, gen_len=workload.gen_len, **columns
    )

    def once() -> float:
        started = time.thread_time()
        estimate(deployments, overlap=study.spec.overlap, calibration=study.calibration)
        return time.thread_time() - started

    for _ in range(1 if n > 500_000 else 2):
        once()
    seconds = [once() for _ in range(args.calls)]
    median = statistics.median(seconds)
    print(f"{cpu_model()}, {pinned}; load average {os.getloadavg()[0]:.1f}")
    print(
        f"{args.study} (calibration {args.calibration}, batch {args.batches or 'as in the spec'}): "
        f"{n:,} candidates, {args.calls} calls, median {median * 1e3:.1f} ms -> {n / median:,.0f} per CPU second "
        f"(best {n / min(seconds):,.0f})"
    )


if __name__ == "__main__":
    main()
