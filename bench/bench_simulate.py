"""Wall time of ``tuner simulate``'s engine: 10,000 requests on one core.

Run on demand (not a pytest test):

    python bench/bench_simulate.py [--requests N] [--repeats R]

Simulates llama-3-8b on 8 H100 (tensor parallel, the vLLM profile) under a closed loop of 64
clients and an open loop of 60 requests/s with spread lengths, N requests each (fixed seed), and
reports the median wall time of ``simulate_serving`` (table building included).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's packages
from cost_models import get_hardware, get_model
from cost_models.calibration import resolve_calibration
from cost_models.deployments import tensor_parallel
from cost_models.serving import make_workloads
from cost_models.serving_simulation import simulate_serving
from machine import cpu_model, pin_to_one_cpu

LOADS = {
    "closed, 64 clients, 1024/128": {"concurrency": 64, "prompt_len": 1024, "gen_len": 128},
    "open, 30 req/s, 1024+-300/128+-40": {
        "request_rate": 30.0,
        "prompt_len": 1024,
        "gen_len": 128,
        "prompt_len_std": 300,
        "gen_len_std": 40,
    },
    "closed, 1 client, 1024/128": {"concurrency": 1, "prompt_len": 1024, "gen_len": 128},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pinned = pin_to_one_cpu(None)
    print(f"machine: {cpu_model()}, {pinned}, python {sys.version.split()[0]}")
    hardware = get_hardware("h100-sxm")
    d = tensor_parallel(get_model("llama-3-8b"), hardware, 8)
    profile = resolve_calibration("auto", hardware.name, "vllm")
    for name, load in LOADS.items():
        w = make_workloads(backend="vllm", **load)
        walls = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = simulate_serving(d, w, requests=args.requests, calibration=profile, seed=0)
            walls.append(time.perf_counter() - start)
        s = result.summary()
        print(
            f"{name}: {args.requests} requests, {s['iterations']} iterations ({s['mixed_iterations']} mixed), "
            f"{s['simulated_s']:.1f} simulated s: median {statistics.median(walls):.2f} s wall "
            f"(min {min(walls):.2f}, max {max(walls):.2f})"
        )


if __name__ == "__main__":
    main()
