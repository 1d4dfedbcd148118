"""The exhaustive sampler end to end on a space of about 1,000,000 candidates.

Run on demand (not a pytest test), from the repository root:

    python bench/bench_exhaustive.py [--batches 46] [--dir /tmp/bench_exhaustive]

The space is the shipped PaLM 540B spec (studies/palm-540b-tpu-v4.yaml) with ``batch`` widened to
1..N (46 gives 1,000,960 candidates, every one structurally possible). Each run is what a user
types, ``python -m tuner.cli search SPEC --sampler exhaustive --storage sqlite:///DB --json``, in a
fresh process on a fresh database: scoring, the exact front, writing the study and printing the
front. It is timed with the child's own peak RSS (``os.wait4``), once storing every candidate and
once with ``--no-store-all``. The CPU model and the load average are printed: on a shared machine
the times move with the load. Target (issue 13): under 60 s on one core, memory bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model, pin_to_one_cpu

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "studies" / "palm-540b-tpu-v4.yaml"


def run_measured(args: list[str]) -> tuple[float, float, str, float]:
    """Wall seconds, the child's peak RSS in MB, its stdout and its CPU seconds (``os.wait4``: that
    process alone; on a loaded machine its CPU time is what an idle core would take)."""
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_exhaustive_{os.getpid()}.out"
    with open(out_path, "wb") as out, open(os.devnull, "wb") as devnull:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=out, stderr=devnull)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
    text = out_path.read_text(encoding="utf-8")
    out_path.unlink()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed ({os.waitstatus_to_exitcode(status)})")
    return seconds, usage.ru_maxrss / 1024, text, usage.ru_utime + usage.ru_stime  # ru_maxrss is in KB on Linux


def trials_in(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=46, help="batch choices 1..N (46: 1,000,960 candidates)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench_exhaustive"))
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    data["name"] = "palm-exhaustive"
    data["space"]["batch"] = list(range(1, args.batches + 1))
    spec = args.dir / "spec.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    pinned = pin_to_one_cpu(None)  # the children inherit it: one core, as the target says
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {pinned}, load average {os.getloadavg()[0]:.1f}")
    print("| run | candidates | trials stored | front | wall (s) | search (s) | CPU (s) | peak RSS (MB) | DB (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, extra in (("store all", []), ("--no-store-all", ["--no-store-all"])):
        db = args.dir / "study.db"
        db.unlink(missing_ok=True)
        command = ["-m", "tuner.cli", "search", str(spec), "--sampler", "exhaustive", "--storage",
                   f"sqlite:///{db}", "--json", *extra]  # fmt: skip
        seconds, rss_mb, out, cpu_s = run_measured(command)
        result = json.loads(out)
        stored = trials_in(db)
        candidates = result["trials_before"] + (result["trials_added"] if not extra else 0)
        print(
            f"| {label} | {candidates if not extra else '(same)'} | {stored} | {len(result['front'])} | "
            f"{seconds:.1f} | {result['elapsed_s']:.1f} | {cpu_s:.1f} | {rss_mb:.0f} | {db.stat().st_size / 1e6:.0f} |",
            flush=True,
        )
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
