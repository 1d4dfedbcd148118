"""How often the signal and restart tests pass: the CI tests of SIGINT, SIGTERM and a PostgreSQL
restart run ``--rounds`` times.

Run on demand (not a pytest test):

    python bench/bench_signals.py [--rounds 20] [--suite NAME ...] [--out results.json]

Each round runs, in a fresh pytest process, ``tests/tuner/test_workers.py``'s Ctrl-C and SIGTERM
tests (a search stopped mid-run flushes, says how to resume, exits 130 / 143, and resumes to its
budget) and ``tests/tuner/test_signals_startup.py`` (both signals at five moments from inside the
imports into the search), and ``tests/tuner/test_database_restart.py``. A round passes when
pytest exits 0. Issue 13 asks for 20 of 20; the script prints the count per test file and round
times, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
SUITES = {
    "test_workers.py -k 'ctrl_c or sigterm'": [
        "tests/tuner/test_workers.py",
        "-k",
        "ctrl_c or sigterm",
    ],
    "test_signals_startup.py": ["tests/tuner/test_signals_startup.py"],
    # Workers through a PostgreSQL restart (issue 13 item 3): needs the PostgreSQL binaries
    # (.ci/postgres.sh); four workers meet a server stopped mid-run, one starts against it down.
    "test_database_restart.py": ["tests/tuner/test_database_restart.py"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--suite", action="append", choices=list(SUITES), help="Run only these [default: all].")
    args = parser.parse_args()
    suites = {name: SUITES[name] for name in (args.suite or SUITES)}
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in suites}
    for round_number in range(1, args.rounds + 1):
        for name, suite in suites.items():
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *suite],
                cwd=ROOT,
                capture_output=True,
                text=True,
                # A shell's background job (nohup ... &) starts with SIGINT ignored, and children
                # inherit that; the tests need the default, as in a terminal or CI.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
            elapsed_s = time.perf_counter() - start
            summary = (done.stdout.strip().splitlines() or [""])[-1]
            run = {"passed": done.returncode == 0, "elapsed_s": elapsed_s, "summary": summary}
            if done.returncode != 0:  # the whole report (a worker's stderr is in the assertion): --out keeps it
                run["output"] = done.stdout[-50_000:] + done.stderr[-5_000:]
            results[name].append(run)
            print(
                f"round {round_number:2d} {name}: {'pass' if done.returncode == 0 else 'FAIL'} "
                f"({summary}, {elapsed_s:.0f} s)",
                flush=True,
            )
            if done.returncode != 0:
                failures = [line for line in done.stdout.splitlines() if line.startswith(("E ", "FAILED"))]
                print("\n".join(failures[:40]), flush=True)
    print()
    for name, runs in results.items():
        print(f"{name}: {sum(r['passed'] for r in runs)}/{len(runs)} rounds passed")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
