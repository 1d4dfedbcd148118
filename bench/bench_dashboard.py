"""Wall time of ``tuner dashboard``'s API requests and the server's peak memory on large studies
(30,000, 100,000 and 200,000 trials).

Run on demand (not a pytest test), from the repository root:

    python bench/bench_dashboard.py [--sizes 30000 100000 200000] [--dir /tmp/bench_reads] [--timeout 600]
                                    [--max-trials N]

The studies are bench/bench_reads.py's (built, or reused, the same way: PaLM 540B with ``batch``
1..10, the exhaustive sampler, compact trials). For each, ``python -m tuner.cli dashboard STUDY
--port 0`` starts as its own process (what a user types) and is read over HTTP with the requests
optuna-dashboard 0.21's frontend makes for a study's page, in its order:

- ``GET /api/studies`` (the study list: every study's summary);
- ``GET /api/studies/<id>?after=0``: the page's first render (the study, its best trials and its
  trial list);
- ``GET /api/studies/<id>?after=<n>``: the poll the page repeats every 10 s (``n``: the trials
  the page already holds), after the server's 10 s trial cache has expired, so it reads again;
- ``GET /api/studies/<id>/param_importances`` (the page's importance card).

It prints each request's wall time and response size, the server's start time (to its first
line on stderr) and its peak RSS (``os.wait4`` once it is stopped), with the CPU model and load
average: on a shared machine the times move with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reads import SPEC, STUDY, _trials_in
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
#: optuna-dashboard's trial cache lives 10 s for a study of 500+ trials (optuna_dashboard/_storage.py,
#: ``get_trials``): the page's next poll after that reads the storage again.
CACHE_TTL_S = 10.0


def _get(url: str, timeout: float) -> tuple[float, int, dict]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = response.read()
    return time.perf_counter() - started, len(body), json.loads(body)


class _Rows:
    """Table rows printed as they come (a slow request's predecessors are not lost to a timeout)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def append(self, row: tuple[str, str, str]) -> None:
        print(f"| {self.size} | {row[0]} | {row[1]} | {row[2]} |", flush=True)


def _build(spec: Path, db: Path, size: int) -> None:
    if _trials_in(db) >= size:
        return
    db.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tuner.cli", "search", str(spec), "--sampler", "exhaustive", "--trials", str(size),
         "--storage", f"sqlite:///{db.resolve()}", "--json"],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    print(f"(built {size} trials in {time.perf_counter() - started:.0f} s)", flush=True)


def _measure(db: Path, size: int, timeout: float, max_trials: list[str]) -> None:
    url = f"sqlite:///{db.resolve()}"
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "dashboard", STUDY, "--storage", url, "--port", "0", *max_trials],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    rows = _Rows(size)
    try:
        ready, _, _ = select.select([server.stderr], [], [], timeout)
        line = server.stderr.readline() if ready else ""
        if " on http://127.0.0.1:" not in line:
            raise SystemExit(f"tuner dashboard did not start: {line}")
        rows.append(("server start (to listening)", f"{time.perf_counter() - started:.2f}", ""))
        base = f"http://127.0.0.1:{line.split(' on http://127.0.0.1:')[1].split('/')[0]}"
        seconds, size_b, listing = _get(f"{base}/api/studies", timeout)
        rows.append(("`GET /api/studies`", f"{seconds:.2f}", f"{size_b / 1e3:.0f} kB"))
        (study_id,) = [s["study_id"] for s in listing["study_summaries"] if s["study_name"] == STUDY]
        first_at = time.perf_counter()
        seconds, size_b, detail = _get(f"{base}/api/studies/{study_id}?after=0", timeout)
        held = len(detail["trials"])
        rows.append(
            (
                "`GET /api/studies/ID?after=0` (first render)",
                f"{seconds:.2f}",
                f"{size_b / 1e6:.1f} MB, {held} trials, {len(detail['best_trials'])} best",
            )
        )
        time.sleep(max(0.0, CACHE_TTL_S + 0.5 - (time.perf_counter() - first_at)))
        seconds, size_b, _ = _get(f"{base}/api/studies/{study_id}?after={held}", timeout)
        rows.append((f"`GET /api/studies/ID?after={held}` (poll, cache expired)", f"{seconds:.2f}", f"{size_b} B"))
        try:
            seconds, size_b, _ = _get(f"{base}/api/studies/{study_id}/param_importances", timeout)
            rows.append(("`GET /api/studies/ID/param_importances`", f"{seconds:.2f}", f"{size_b / 1e3:.1f} kB"))
        except OSError as error:
            rows.append(("`GET /api/studies/ID/param_importances`", "failed", str(error)[:60]))
    finally:
        server.send_signal(signal.SIGINT)
        _, _, usage = os.wait4(server.pid, 0)
    print(
        f"| {size} | server peak RSS | {usage.ru_maxrss / 1024:.0f} MB | CPU {usage.ru_utime + usage.ru_stime:.1f} s |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30_000, 100_000, 200_000])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench_reads"))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    parser.add_argument("--max-trials", type=int, default=None, help="tuner dashboard's --max-trials [its default]")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    data["name"] = STUDY
    data["space"]["batch"] = list(range(1, 11))
    spec = args.dir / "spec.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"tuner dashboard --max-trials {args.max_trials or '(default)'}\n")
    print("| trials | request | wall (s) | response |")
    print("|---:|---|---:|---|")
    for size in args.sizes:
        db = args.dir / f"reads_{size}.db"
        _build(spec, db, size)
        _measure(db, size, args.timeout, [] if args.max_trials is None else ["--max-trials", str(args.max_trials)])
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
