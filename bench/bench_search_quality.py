"""Search quality: how much of the exact Pareto front's hypervolume each sampler finds, and when.

Run on demand (not a pytest test):

    python bench/bench_search_quality.py [--study NAME ...] [--seeds 3] [--jobs 2]

For every shipped study spec (``studies/*.yaml``):

1. **Exact front.** Every structurally possible candidate (``SearchSpace.all_indices()`` with the
   mesh multiplying to the chip count) is scored in memory with ``search_spaces.space.evaluate``
   in chunks of 50,000; the feasible ones (every constraint <= 0) are kept, turned to "smaller is
   better" (``tuner.pareto.minimized``) and their nondominated set is the exact front.
2. **Normalized objective space.** Objectives differ by orders of magnitude (seconds per token,
   chip-seconds per token, bytes) and, along a front, each spans one to four decades. Each
   objective whose feasible values are all positive is replaced by its log10 (every shipped
   objective is); then every objective is scaled so that the exact front's ideal point (best value
   per objective) is 0 and its nadir point (worst value per objective *on the front*) is 1. The
   hypervolume reference point is 1.1 in every objective. Dominance is unchanged by these
   per-objective monotonic maps, so the fronts are the same sets; only the weights of the
   hypervolume change (equal weight per decade, every objective of equal weight). A point worse
   than the reference in some objective adds nothing. ``--scale linear`` skips the log10.
3. **Samplers.** For NSGA-II, TPE and random, ``tuner.study.run_search`` (the product's path:
   batched asks from an in-memory Optuna study, vectorized evaluation, bulk writes to SQLite) runs
   into a fresh SQLite file in a temporary folder, up to the largest checkpoint. The trials are read
   back in trial-number order; the front of the first N trials gives the hypervolume ratio
   ``HV(sampler front after N trials) / HV(exact front)`` at N = 1%, 2%, 5%, 10% and 20% of the
   structurally possible candidates. A run's first N trials are the same as those of a run with a
   budget of N (samplers do not know the budget), so one run per seed serves every checkpoint.
   N counts trials as run (none repeats a configuration: tuner/distinct.py), including
   structurally impossible candidates the sampler proposes (KV head counts that do not divide the
   heads, where a spec lists them): the budget a user pays.

TPE (multivariate) slows down with every trial (several ms per ask after a thousand trials), so
its runs stop at ``--tpe-cap`` trials (default 3,000); checkpoints above the cap show "n/a".
TPE runs with the product's bounded history (``tuner.study.TPE_HISTORY``: the front plus the
latest 2,000 trials); ``--tpe-history N`` (repeatable; ``full`` for every trial) gives one TPE
row per history, e.g. ``--samplers tpe --tpe-cap 6000 --tpe-history full --tpe-history 2000``.

Feasibility: a compact trial (tuner/compact.py) stores no constraints, so its feasibility and
structural validity are recomputed with the cost model (deterministic: what the search scored);
until 2026-12-05 every compact trial was read as feasible here, and an infeasible trial's real
objective values could stand on a sampler's front.
Each figure is the mean (and the minimum) over ``--seeds`` seeds (0, 1, 2, ...). Two more columns:
the ratio at the end of each run (for TPE, at the cap), and the number of trials after which the
front first reaches the target ratio (checked every 64 trials): mean over seeds, then the worst
seed as a share of the structurally possible candidates and in trials ("k/3 seeds" when some
seeds never reach it within their run).

Target (from the issue): NSGA-II reaches 0.99 of the exact hypervolume having evaluated at most
10% of the space. The verdict per study uses the *mean* over seeds at the 10% checkpoint (the
minimum is printed beside it). The exit code is 0 whatever the verdicts.

Runs of different (study, sampler, seed) go to ``--jobs`` worker processes (default 2).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import platform
import sqlite3
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search_spaces.space import compile_study, evaluate
from search_spaces.spec import load_spec
from tuner.pareto import hypervolume, minimized, nondominated

STUDIES = sorted((ROOT / "studies").glob("*.yaml"))
SAMPLERS = ("nsga2", "tpe", "random")
FRACTIONS = (0.01, 0.02, 0.05, 0.10, 0.20)
TARGET_RATIO = 0.99
TARGET_FRACTION = 0.10
REFERENCE = 1.1
CHUNK = 50_000
DISTINCT_AT = 3000  # distinct configurations among a run's first trials (mean (min) over seeds)


@dataclass
class Normalizer:
    """log10 (where every feasible value is positive), then ideal -> 0 and nadir -> 1."""

    directions: list[str]
    log: np.ndarray  # bool per objective
    ideal: np.ndarray
    nadir: np.ndarray

    def transform(self, values: np.ndarray) -> np.ndarray:
        raw = np.array(values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            raw[:, self.log] = np.log10(np.abs(raw[:, self.log]))
        points = minimized(raw, self.directions)
        span = np.where(self.nadir > self.ideal, self.nadir - self.ideal, 1.0)
        return (points - self.ideal) / span


@dataclass
class Exact:
    name: str
    objective_names: list[str]
    possible: int
    feasible: int
    front_points: int  # distinct objective vectors on the front
    hv: float
    normalizer: Normalizer
    seconds: float


def exact_front(spec_path: Path, scale: str) -> Exact:
    start = time.perf_counter()
    spec = load_spec(spec_path)
    study = compile_study(spec)
    space = study.space
    indices = space.all_indices()
    # Every mesh carries its chip count; only KV head counts that do not divide the heads are impossible.
    kv_heads = np.array(space.dimensions["kv_heads"])
    keep = np.mod(study.model.heads, kv_heads[indices["kv_heads"]]) == 0
    indices = {k: v[keep] for k, v in indices.items()}
    possible = int(keep.sum())
    feasible_values = []
    for begin in range(0, possible, CHUNK):
        part = {k: v[begin : begin + CHUNK] for k, v in indices.items()}
        evaluation = evaluate(study, part)
        feasible_values.append(evaluation.values[evaluation.feasible])
    values = np.concatenate(feasible_values)
    if len(values) == 0:
        raise SystemExit(f"{spec.name}: no feasible candidate in the whole space")
    if np.any(np.abs(values) >= 1e29):
        raise SystemExit(f"{spec.name}: a feasible candidate has a penalty value")
    directions = list(study.directions)
    log = np.all(values > 0, axis=0) if scale == "log" else np.zeros(values.shape[1], dtype=bool)
    unit = Normalizer(directions, log, np.zeros(values.shape[1]), np.ones(values.shape[1]))
    points = unit.transform(values)
    front = np.unique(points[nondominated(points)], axis=0)
    normalizer = Normalizer(directions, log, front.min(axis=0), front.max(axis=0))
    normalized = normalizer.transform(values)
    front_n = np.unique(normalized[nondominated(normalized)], axis=0)
    hv = hypervolume(front_n, np.full(front_n.shape[1], REFERENCE))
    return Exact(
        spec.name,
        list(study.objective_names),
        possible,
        len(values),
        len(front_n),
        hv,
        normalizer,
        time.perf_counter() - start,
    )


def read_trials(db: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple]]:
    """(values (n, k), feasible (n,), structurally_valid (n,), params (n,)) in trial-number order,
    via SQL; a trial's params are the sorted (name, internal value) pairs: its configuration."""
    with sqlite3.connect(db) as con:
        n = con.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        k = con.execute("SELECT COUNT(DISTINCT objective) FROM trial_values").fetchone()[0]
        numbers = dict(con.execute("SELECT trial_id, number FROM trials"))
        values = np.full((n, k), np.nan)
        for trial_id, objective, value in con.execute("SELECT trial_id, objective, value FROM trial_values"):
            values[numbers[trial_id], objective] = value
        feasible = np.ones(n, dtype=bool)
        valid = np.ones(n, dtype=bool)
        for trial_id, key, value_json in con.execute(
            "SELECT trial_id, key, value_json FROM trial_system_attributes WHERE key LIKE 'constraints:%'"
        ):
            if float(value_json) > 0:
                feasible[numbers[trial_id]] = False
                if key == "constraints:structurally_valid":
                    valid[numbers[trial_id]] = False
        configs: list[list[tuple]] = [[] for _ in range(n)]
        for trial_id, name, value in con.execute("SELECT trial_id, param_name, param_value FROM trial_params"):
            configs[numbers[trial_id]].append((name, value))
    return values, feasible, valid, [tuple(sorted(c)) for c in configs]


def compact_feasibility(spec, configs: list[tuple]) -> tuple[np.ndarray, np.ndarray] | None:
    """(feasible, structurally_valid) of compact trials (one ``configuration`` param each), whose
    constraints are not stored (tuner/compact.py): recomputed with the cost model, which is
    deterministic (what the search scored). None for trials stored whole. Before this, every
    compact trial was read as feasible (no ``constraints:`` attribute to read), so infeasible
    trials could stand on a sampler's front."""
    from tuner.compact import CONFIGURATION_PARAM, unflatten

    if not configs or any(len(c) != 1 or c[0][0] != CONFIGURATION_PARAM for c in configs):
        return None
    study = compile_study(spec)
    names, sizes = list(study.space.dimensions), [len(c) for c in study.space.dimensions.values()]
    evaluation = evaluate(study, unflatten(np.array([int(c[0][1]) for c in configs]), names, sizes))
    valid = evaluation.constraint_columns["structurally_valid"] <= 0
    return np.asarray(evaluation.feasible, dtype=bool), np.asarray(valid, dtype=bool)


def tpe_label(history: int | None) -> str:
    return "tpe (full history)" if history is None else f"tpe (history {history:,})"


def run_one(spec_path: str, sampler: str, seed: int, trials: int, tpe_history: int | None = None) -> dict:
    """One sampler run through run_search into a fresh SQLite file; returns its trials. TPE runs
    with ``tpe_history`` (None: every trial) and is labelled with it."""
    warnings.filterwarnings("ignore")
    from tuner.study import run_search

    spec = load_spec(spec_path)
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as folder:
        db = Path(folder) / "study.db"
        start = time.perf_counter()
        result = run_search(spec, f"sqlite:///{db}", trials=trials, sampler=sampler, seed=seed, tpe_history=tpe_history)
        seconds = time.perf_counter() - start
        values, feasible, valid, configs = read_trials(db)
    recomputed = compact_feasibility(spec, configs)
    if recomputed is not None:
        feasible, valid = recomputed
    assert result.trials_added == trials == len(values), (result.trials_added, trials, len(values))
    return dict(
        study=spec.name,
        sampler=tpe_label(tpe_history) if sampler == "tpe" else sampler,
        seed=seed,
        trials=trials,
        seconds=seconds,
        values=values,
        feasible=feasible,
        valid=valid,
        configs=configs,
    )


def ratios(exact: Exact, run: dict, checkpoints: list[int]) -> list[float | None]:
    """HV ratio of the first N trials' front, for each checkpoint N (None past the run)."""
    out: list[float | None] = []
    reference = np.full(len(exact.objective_names), REFERENCE)
    for n in checkpoints:
        if n > run["trials"]:
            out.append(None)
            continue
        values = run["values"][:n][run["feasible"][:n]]
        if len(values) == 0:
            out.append(0.0)
            continue
        points = exact.normalizer.transform(values)
        front = np.unique(points[nondominated(points)], axis=0)
        out.append(hypervolume(front, reference) / exact.hv)
    return out


def trials_to_reach(exact: Exact, run: dict, goal: float, step: int = 64) -> int | None:
    """Fewest trials (a multiple of ``step``, run_search's batch size) whose front has HV ratio >= goal."""
    reference = np.full(len(exact.objective_names), REFERENCE)
    front = np.empty((0, len(exact.objective_names)))
    for end in range(step, run["trials"] + step, step):
        begin, end = end - step, min(end, run["trials"])
        values = run["values"][begin:end][run["feasible"][begin:end]]
        if len(values):
            points = np.concatenate([front, exact.normalizer.transform(values)])
            front = np.unique(points[nondominated(points)], axis=0)
            if hypervolume(front, reference) / exact.hv >= goal:
                return end
    return None


def fmt(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "n/a"
    return f"{np.mean(got):.3f} ({min(got):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [p.stem for p in STUDIES]
    parser.add_argument(
        "--study", action="append", choices=names, help="study to run (repeatable; default: every shipped study)"
    )
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated, of nsga2,tpe,random")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per sampler (0..seeds-1)")
    parser.add_argument("--tpe-cap", type=int, default=3000, help="most trials of a TPE run")
    parser.add_argument(
        "--tpe-history",
        action="append",
        help="TPE's history (trials besides the front; 'full': every trial); repeatable, one TPE row each "
        "(default: tuner.study.TPE_HISTORY)",
    )
    parser.add_argument(
        "--max-trials", type=int, default=None, help="cap every run (checkpoints above show n/a); for quick checks"
    )
    parser.add_argument(
        "--scale",
        choices=("log", "linear"),
        default="log",
        help="log10 positive objectives before normalizing (default) or not",
    )
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    args = parser.parse_args(argv)
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    if any(s not in SAMPLERS for s in samplers) or args.seeds < 1 or args.jobs < 1:
        parser.error("bad --samplers, --seeds or --jobs")
    paths = [p for p in STUDIES if not args.study or p.stem in args.study]
    from tuner.study import TPE_HISTORY

    histories = [None if h == "full" else int(h) for h in (args.tpe_history or [str(TPE_HISTORY)])]

    wall = time.perf_counter()
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"numpy {np.__version__}, optuna {__import__('optuna').__version__}; {args.jobs} worker processes"
    )
    exacts = {}
    for path in paths:
        e = exact_front(path, args.scale)
        exacts[e.name] = e
        print(
            f"exact front {e.name}: {e.possible:,} structurally possible candidates, "
            f"{e.feasible:,} feasible, {e.front_points} distinct front points, "
            f"normalized HV {e.hv:.4f} (ref {REFERENCE}, {args.scale} scale; {e.seconds:.1f} s)"
        )

    tasks = []
    for path in paths:
        name = load_spec(path).name
        largest = max(1, round(max(FRACTIONS) * exacts[name].possible))
        for sampler in samplers:
            budget = min(largest, args.tpe_cap) if sampler == "tpe" else largest
            if args.max_trials:
                budget = min(budget, args.max_trials)
            for seed in range(args.seeds):
                for history in histories if sampler == "tpe" else [None]:
                    tasks.append((str(path), sampler, seed, budget, history))
    # Longest first: NSGA-II on large spaces and TPE cost most per trial.
    cost = {"nsga2": 3.0, "tpe": 15.0, "random": 1.0}
    tasks.sort(key=lambda t: -cost[t[1]] * t[3])
    runs: list[dict] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, *task) for task in tasks]
        for future in as_completed(futures):
            run = future.result()
            runs.append(run)
            print(
                f"  ran {run['study']} {run['sampler']} seed {run['seed']}: {run['trials']:,} trials "
                f"in {run['seconds']:.0f} s",
                flush=True,
            )

    print()
    header = " | ".join(f"{f:.0%}" for f in FRACTIONS)
    verdicts = []
    for name, exact in exacts.items():
        checkpoints = [max(1, round(f * exact.possible)) for f in FRACTIONS]
        print(
            f"### {name}: {exact.possible:,} structurally possible candidates, "
            f"{len(exact.objective_names)} objectives ({', '.join(exact.objective_names)})"
        )
        print()
        print(
            f"HV ratio (sampler front / exact front) after N trials, mean (min) over {args.seeds} seeds; "
            f"N = {', '.join(f'{c:,}' for c in checkpoints)}"
        )
        print()
        print(
            f"| sampler | {header} | end of run | trials to reach {TARGET_RATIO} | trials run "
            f"| structurally impossible | distinct configurations in the first {DISTINCT_AT:,} trials | s per run |"
        )
        print("|---|" + "---:|" * (len(FRACTIONS) + 6))
        rows = [r for s in samplers for r in ([tpe_label(h) for h in histories] if s == "tpe" else [s])]
        for sampler in rows:
            mine = sorted((r for r in runs if r["study"] == name and r["sampler"] == sampler), key=lambda r: r["seed"])
            if not mine:
                continue
            per_seed = [ratios(exact, r, checkpoints) for r in mine]
            cells = [fmt([s[i] for s in per_seed]) for i in range(len(checkpoints))]
            cells.append(fmt([ratios(exact, r, [r["trials"]])[0] for r in mine]))
            reach = [trials_to_reach(exact, r, TARGET_RATIO) for r in mine]
            if all(n is not None for n in reach):
                cells.append(f"{np.mean(reach):,.0f} ({max(reach) / exact.possible:.1%}; max {max(reach):,})")
            else:
                got = [n for n in reach if n is not None]
                cells.append(f"{len(got)}/{len(reach)} seeds" + (f" (max {max(got):,})" if got else ""))
            impossible = np.mean([1 - r["valid"].mean() for r in mine])
            first = min(DISTINCT_AT, mine[0]["trials"])
            distinct = [len(set(r["configs"][:first])) for r in mine]
            print(
                f"| {sampler} | {' | '.join(cells)} | {mine[0]['trials']:,} | {impossible:.0%} "
                f"| {np.mean(distinct):,.0f} ({min(distinct):,}) of {first:,} "
                f"| {np.mean([r['seconds'] for r in mine]):.0f} |"
            )
            if sampler == "nsga2":
                at = FRACTIONS.index(TARGET_FRACTION)
                got = [s[at] for s in per_seed if s[at] is not None]
                if got:
                    verdicts.append((name, np.mean(got) >= TARGET_RATIO, np.mean(got), min(got), checkpoints[at]))
        print()
    for name, ok, mean, low, n in verdicts:
        print(
            f"- {'PASS' if ok else 'FAIL'} {name}: NSGA-II HV ratio {mean:.3f} (mean; min {low:.3f}) "
            f"after {n:,} trials (10% of the space) vs target >= {TARGET_RATIO}"
        )
    print(f"\ntotal wall time {time.perf_counter() - wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
