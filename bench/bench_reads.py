"""Wall time of the commands that read a large study: ``pareto``, ``show``, ``studies``, ``export``.

Run on demand (not a pytest test), from the repository root:

    python bench/bench_reads.py [--db /tmp/bench_reads_30k.db] [--trials 30000] [--repeats 3]

Builds (or reuses, when it already holds ``--trials`` trials) a study of the shipped PaLM 540B
spec with ``tuner search studies/palm-540b-tpu-v4.yaml --trials N --sampler random --storage
sqlite:///DB`` (about a minute for 30,000 trials), then runs each command as a fresh
``python -m tuner.cli`` process (what a user types; stdout to a pipe, so no progress bar) and
reports the best and the median wall time of ``--repeats`` runs, next to the time of
``python -c "import tuner.cli"`` alone (interpreter start and imports, included in every command).
The CPU model and the load average are printed with them: on a shared machine the times move with
the load. Target (from the issue): each command under 2 s on a 30,000-trial SQLite study.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "studies" / "palm-540b-tpu-v4.yaml"
STUDY = "palm-540b-tpu-v4"


def _trials_in(db: Path) -> int:
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(db) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
    except sqlite3.Error:
        return 0


def _run(args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/bench_reads_30k.db"))
    parser.add_argument("--trials", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    url = f"sqlite:///{args.db.resolve()}"
    if _trials_in(args.db) != args.trials:
        args.db.unlink(missing_ok=True)
        print(f"building {args.trials} trials in {args.db} ...", flush=True)
        built = _run(["-m", "tuner.cli", "search", str(SPEC), "--trials", str(args.trials), "--sampler", "random",
                      "--storage", url, "--json"])  # fmt: skip
        print(f"built in {built:.0f} s")
    last = args.trials - 1
    front = subprocess.run([sys.executable, "-m", "tuner.cli", "pareto", STUDY, "--storage", url, "--json"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout  # fmt: skip
    best = json.loads(front)[-1]["trial"]  # a feasible trial to export
    commands = {
        "import tuner.cli (baseline)": ["-c", "import tuner.cli"],
        "pareto": ["-m", "tuner.cli", "pareto", STUDY, "--storage", url],
        "pareto --json": ["-m", "tuner.cli", "pareto", STUDY, "--storage", url, "--json"],
        f"show {last}": ["-m", "tuner.cli", "show", STUDY, str(last), "--storage", url],
        "studies": ["-m", "tuner.cli", "studies", "--storage", url],
        f"export --trial {best}": ["-m", "tuner.cli", "export", STUDY, "--trial", str(best), "--storage", url],
    }
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"study: {_trials_in(args.db)} trials in {url}; {args.repeats} runs each\n")
    print("| command | best (s) | median (s) |")
    print("|---|---:|---:|")
    for name, command in commands.items():
        times = [_run(command) for _ in range(args.repeats)]
        print(f"| `{name}` | {min(times):.2f} | {statistics.median(times):.2f} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
