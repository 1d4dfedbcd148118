"""Wall time and peak memory of the commands that read a large study: ``pareto``, ``show``,
``studies``, ``export`` and a resume, on studies of 30,000, 100,000 and 200,000 trials.

Run on demand (not a pytest test), from the repository root:

    python bench/bench_reads.py [--sizes 30000 100000 200000] [--dir /tmp/bench_reads] [--repeats 3]

Each study is built (or reused, when its file already holds that many trials) from the shipped
PaLM 540B spec with ``batch`` widened to 1..10 (217,600 candidates) by the real code path,
``tuner search SPEC --sampler exhaustive --trials N --storage sqlite:///DB`` (compact trials,
about 15 s for 200,000). Each command then runs as a fresh ``python -m tuner.cli`` process
(what a user types; stdout to a file, so no progress bar), timed with its own peak RSS
(``os.wait4``), and the best and median of ``--repeats`` runs are reported next to the time of
``python -c "import tuner.cli"`` alone (interpreter start and imports, in every command).
"resume" is ``tuner search SPEC --sampler random --trials <held + 1>``: open the study, read
what it holds, add one trial, print the front; ``--resume-sampler tpe`` (repeatable) times the
same resume with TPE too, which fits its estimators on every stored trial before the first new
one (issue 13 items 1 and 5). An NSGA-II resume (``--resume-sampler nsga2``) is timed twice: once
after the study's stored parents are deleted (a study written by the exhaustive sampler, or by a
tuner before 2026-12-06: every stored configuration re-scored, a row "no parents stored"), then
``--repeats`` times from the parents the previous resume stored (about 50 configurations
re-scored, whatever the study's size). The CPU model and load average are printed with
them: on a shared machine the times move with the load. Target (issue 13): each under 2 s and
500 MB on a 200,000-trial SQLite study.

Bytecode: with ``PYTHONDONTWRITEBYTECODE`` set (this project's VMs set it) no ``.pyc`` of the
project's own modules is ever written, so every command compiles them from source (~0.1-0.2 s
of CPU of a resume here, docs/benchmarks.md "Resume: one read of the front"); an installed
package has them. ``--pycache-prefix DIR`` runs the commands with ``PYTHONPYCACHEPREFIX=DIR`` and
bytecode writing on, after one untimed run of each command fills the cache. The first line says
which.
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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "studies" / "palm-540b-tpu-v4.yaml"
STUDY = "palm-reads"


def _trials_in(db: Path) -> int:
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(db) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
    except sqlite3.Error:
        return 0


#: The children's environment (``--pycache-prefix``: bytecode cached outside the tree).
_ENV = dict(os.environ)


def _run(args: list[str]) -> tuple[float, float, str, float]:
    """Wall seconds, the child's peak RSS in MB and its CPU seconds (``os.wait4``: that process
    alone; on a loaded machine the CPU time is what an idle core would take), its stdout."""
    out_path = Path("/tmp") / f"bench_reads_{os.getpid()}.out"
    with open(out_path, "wb") as out, open(os.devnull, "wb") as devnull:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=out, stderr=devnull, env=_ENV)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
    text = out_path.read_text(encoding="utf-8")
    out_path.unlink()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed ({os.waitstatus_to_exitcode(status)})")
    return seconds, usage.ru_maxrss / 1024, text, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30_000, 100_000, 200_000])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench_reads"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--resume-sampler", action="append", choices=("random", "tpe", "nsga2"), help="resume with (default random)"
    )
    parser.add_argument(
        "--pycache-prefix", type=Path, default=None, help="cache bytecode there (PYTHONPYCACHEPREFIX), warmed first"
    )
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.pycache_prefix is not None:
        _ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        _ENV["PYTHONPYCACHEPREFIX"] = str(args.pycache_prefix.resolve())
        bytecode = f"cached in {args.pycache_prefix} (warmed by one untimed run of each command)"
    elif os.environ.get("PYTHONDONTWRITEBYTECODE"):
        bytecode = "never written (PYTHONDONTWRITEBYTECODE): the project's modules compiled by every command"
    else:
        bytecode = "cached next to the sources"
    data = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    data["name"] = STUDY
    data["space"]["batch"] = list(range(1, 11))
    spec = args.dir / "spec.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; bytecode {bytecode}")
    if args.pycache_prefix is not None:
        _run(["-c", "import tuner.cli"])
    baseline = [_run(["-c", "import tuner.cli"]) for _ in range(args.repeats)]
    print(f"`import tuner.cli` alone: wall best {min(r[0] for r in baseline):.2f} s, "
          f"CPU median {statistics.median(r[3] for r in baseline):.2f} s\n")  # fmt: skip
    print("| trials | command | wall best (s) | wall median (s) | CPU median (s) | peak RSS (MB) |")
    print("|---:|---|---:|---:|---:|---:|")
    for size in args.sizes:
        db = args.dir / f"reads_{size}.db"
        url = f"sqlite:///{db.resolve()}"
        if _trials_in(db) < size:
            db.unlink(missing_ok=True)
            built, _, _, _ = _run(["-m", "tuner.cli", "search", str(spec), "--sampler", "exhaustive", "--trials",
                                str(size), "--storage", url, "--json"])  # fmt: skip
            print(f"| {size} | (built by the exhaustive sampler in {built:.0f} s, "
                  f"{db.stat().st_size / size:.0f} bytes/trial) | | | | |", flush=True)  # fmt: skip
        front = json.loads(_run(["-m", "tuner.cli", "pareto", STUDY, "--storage", url, "--json"])[2])
        best = front[-1]["trial"]  # a feasible trial to export
        commands = {
            "pareto": ["-m", "tuner.cli", "pareto", STUDY, "--storage", url],
            "pareto --json": ["-m", "tuner.cli", "pareto", STUDY, "--storage", url, "--json"],
            f"show {size - 1}": ["-m", "tuner.cli", "show", STUDY, str(size - 1), "--storage", url],
            "studies": ["-m", "tuner.cli", "studies", "--storage", url],
            f"export --trial {best}": ["-m", "tuner.cli", "export", STUDY, "--trial", str(best), "--storage", url],
        }
        for name, command in commands.items():
            if args.pycache_prefix is not None:
                _run(command)  # fills the bytecode cache
            runs = [_run(command) for _ in range(args.repeats)]
            times = [r[0] for r in runs]
            print(f"| {size} | `{name}` | {min(times):.2f} | {statistics.median(times):.2f} | "
                  f"{statistics.median(r[3] for r in runs):.2f} | {max(r[1] for r in runs):.0f} |",
                  flush=True)  # fmt: skip
        for sampler in args.resume_sampler or ["random"]:
            if args.pycache_prefix is not None:  # fills the bytecode cache (adds a trial)
                _run(["-m", "tuner.cli", "search", str(spec), "--sampler", sampler, "--trials",
                      str(_trials_in(db) + 1), "--storage", url, "--json"])  # fmt: skip
            if sampler == "nsga2":  # once without stored parents, as a study written before them
                with sqlite3.connect(db) as connection:
                    connection.execute("DELETE FROM study_system_attributes WHERE key = 'tuner:nsga2_parents'")
                first = _run(["-m", "tuner.cli", "search", str(spec), "--sampler", sampler, "--trials",
                              str(_trials_in(db) + 1), "--storage", url, "--json"])  # fmt: skip
                print(f"| {size} | resume `--sampler nsga2`, no parents stored (+1 trial) | {first[0]:.2f} | "
                      f"{first[0]:.2f} | {first[3]:.2f} | {first[1]:.0f} |", flush=True)  # fmt: skip
            runs = []
            for _ in range(args.repeats):  # each resume adds one trial
                held = _trials_in(db)
                runs.append(_run(["-m", "tuner.cli", "search", str(spec), "--sampler", sampler, "--trials",
                                  str(held + 1), "--storage", url, "--json"]))  # fmt: skip
            times = [r[0] for r in runs]
            name = "resume" if sampler == "random" else f"resume `--sampler {sampler}`"
            cpu, rss = statistics.median(r[3] for r in runs), max(r[1] for r in runs)
            print(f"| {size} | {name} (+1 trial, front printed) | {min(times):.2f} | {statistics.median(times):.2f} | "
                  f"{cpu:.2f} | {rss:.0f} |", flush=True)  # fmt: skip
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
