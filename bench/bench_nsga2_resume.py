"""Does a stopped and resumed NSGA-II (or TPE) search differ from one that was never stopped?

Run on demand (not a pytest test):

    python bench/bench_nsga2_resume.py [--study NAME ...] [--seeds 3] [--trials 2000] [--every 50 ...]
                                       [--sampler nsga2|tpe]

A resume (``tuner search`` run again, a worker started) builds a new ``GenerationalNSGAII`` and
``DistinctConfigurations`` (tuner/study.py ``_nsga2_compact``). For each study and seed this runs
the search through ``tuner.study.run_search`` into a fresh SQLite file, either in one run of
``--trials`` trials or stopped and resumed every ``--every`` trials (the same seed each time, as a
user re-running the command does), and reports, mean (min/max) over seeds:

- proposals that repeated a stored configuration (``DistinctConfigurations.replacement`` calls:
  each is a child NSGA-II asked for that the study already held, redrawn);
- the hypervolume ratio of the feasible front after 1%, 2% and 5% of the structurally possible
  candidates and at the end, and the trials to reach 0.99 of the exact front's hypervolume
  (bench_search_quality's normalization and exact front).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search_quality import (
    ROOT,
    compact_feasibility,
    exact_front,
    ratios,
    read_trials,
    trials_to_reach,
)
from machine import cpu_model

sys.path.insert(0, str(ROOT))
from search_spaces.spec import load_spec


def run(spec_path: Path, seed: int, trials: int, every: int | None, sampler: str = "nsga2") -> dict:
    """One search, resumed every ``every`` trials (None: one run); its trials and repeats."""
    warnings.filterwarnings("ignore")
    from tuner import distinct
    from tuner.study import run_search

    repeats = 0
    original = distinct.DistinctConfigurations.replacement

    def counted(self, key):
        nonlocal repeats
        repeats += 1
        return original(self, key)

    distinct.DistinctConfigurations.replacement = counted  # type: ignore[method-assign]
    spec = load_spec(spec_path)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_resume_") as folder:
            db = Path(folder) / "study.db"
            url = f"sqlite:///{db}"
            stops = list(range(every, trials, every)) + [trials] if every else [trials]
            start = time.perf_counter()
            for total in stops:
                run_search(spec, url, trials=total, sampler=sampler, seed=seed)
            seconds = time.perf_counter() - start
            values, feasible, valid, configs = read_trials(db)
    finally:
        distinct.DistinctConfigurations.replacement = original  # type: ignore[method-assign]
    recomputed = compact_feasibility(spec, configs)
    if recomputed is not None:
        feasible, valid = recomputed
    assert len(values) == trials, (len(values), trials)
    return dict(trials=trials, values=values, feasible=feasible, repeats=repeats, seconds=seconds)


def spread(xs: list[float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(np.mean(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", action="append", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--every", type=int, action="append", default=None)
    parser.add_argument("--sampler", choices=("nsga2", "tpe"), default="nsga2")
    args = parser.parse_args(argv)
    studies = args.study or ["llama-3-8b-l4", "llama-2-70b-h100"]
    modes: list[int | None] = [None, *(args.every or [50, 200])]
    print(
        f"# {platform.node()} {cpu_model()}, load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"sampler {args.sampler}"
    )
    for name in studies:
        path = ROOT / "studies" / f"{name}.yaml"
        exact = exact_front(path, "log")
        checkpoints = [max(1, round(f * exact.possible)) for f in (0.01, 0.02, 0.05)] + [args.trials]
        print(f"\n{name}: {exact.possible:,} possible candidates; checkpoints {checkpoints}")
        print("| run | repeats proposed | HV 1% | HV 2% | HV 5% | HV end | trials to 0.99 | s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for every in modes:
            rows = [run(path, seed, args.trials, every, args.sampler) for seed in range(args.seeds)]
            hv = np.array([[r if r is not None else np.nan for r in ratios(exact, row, checkpoints)] for row in rows])
            reach = [trials_to_reach(exact, row, 0.99) for row in rows]
            reached = [r for r in reach if r is not None]
            label = "one run" if every is None else f"resumed every {every}"
            print(
                f"| {label} | {spread([r['repeats'] for r in rows], '{:.0f}')} | "
                + " | ".join(spread(list(hv[:, j])) for j in range(hv.shape[1]))
                + f" | {spread(reached, '{:.0f}') if reached else 'never'} ({len(reached)}/{len(rows)} seeds) | "
                f"{np.mean([r['seconds'] for r in rows]):.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
