"""Throughput of the analytic serving model: configurations scored per second on one core.

Run on demand (not a pytest test):

    python bench/bench_serving.py [--n N] [--repeats R] [--calibration auto|none] [--clock wall|cpu]

Draws N GPU serving configurations (fixed seed): catalog decoder models, tensor-parallel H100
meshes of 1-8 GPUs, weight format, closed-loop concurrency or open-loop rate (half each), prompt
and output lengths, engine token budget and chunking, and times one vectorized
``cost_models.serving.serve`` call (paged-KV capacity, mixed and decode-only iterations, the
open loop's fixed point). Target (serving issue): >= 100,000 configurations/s per core, median.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
# This checkout's packages, not an installed copy (``python bench/bench_serving.py`` puts bench/
# first on the path, and an editable install of another checkout would win otherwise).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_cost_model import cpu_timed, rates, timed
from cost_models import get_hardware, get_model
from cost_models.calibration import resolve_calibration
from cost_models.deployments import Deployments, tensor_parallel
from cost_models.dtypes import BF16, FP8
from cost_models.serving import ServingWorkloads, make_workloads, serve
from machine import cpu_model, pin_to_one_cpu
from tuner.allocator import reuse_freed_memory

TARGET = 100_000
MODELS = ("llama-2-7b", "llama-3-8b", "mistral-7b", "llama-2-70b", "llama-3-70b")


def configurations(n: int, seed: int, closed: bool) -> tuple[Deployments, ServingWorkloads]:
    rng = np.random.default_rng(seed)
    hardware = get_hardware("h100-sxm")
    catalog = [get_model(name) for name in MODELS]
    d = tensor_parallel(
        catalog,
        hardware,
        2 ** rng.integers(0, 4, n),
        model_index=rng.integers(0, len(catalog), n),
        weight_dtype=rng.choice([BF16, FP8], n),
    )
    prompt = np.rint(2.0 ** rng.uniform(7, 13, n))
    load = {"concurrency": 2.0 ** rng.integers(0, 9, n)} if closed else {"request_rate": 2.0 ** rng.uniform(-2, 5, n)}
    w = make_workloads(
        backend="trtllm",
        prompt_len=prompt,
        gen_len=np.rint(2.0 ** rng.uniform(4, 10, n)),
        max_num_tokens=np.maximum(rng.choice([2048.0, 8192.0], n), prompt),
        **load,
    )
    return d, w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--calibration", default="auto", help="auto (h100-sxm-trtllm) or none (roofline)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier on a machine shared with other jobs)",
    )
    args = parser.parse_args(argv)
    pinned = pin_to_one_cpu(None)
    reuse_freed_memory()  # as the tuner command does (tuner/allocator.py)
    profile = resolve_calibration(args.calibration, "h100-sxm", "trtllm")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores ({pinned}); numpy {np.__version__}")
    print(
        f"calibration {profile.name if profile else 'none'}, {args.n:,} configurations, {args.repeats} repeats, "
        f"{args.clock} clock"
    )
    ok = True
    for closed in (True, False):
        d, w = configurations(args.n, args.seed, closed)
        call = lambda d=d, w=w: serve(d, w, calibration=profile).tpot_s  # noqa: E731
        best, median = rates(
            args.n, timed(call, args.repeats) if args.clock == "wall" else cpu_timed(call, args.repeats)
        )
        kind = "closed loop (concurrency)" if closed else "open loop (Poisson rate)"
        print(f"{kind}: {best:,.0f} / {median:,.0f} configurations per s (best / median)")
        ok &= median >= TARGET
    print(f"{'PASS' if ok else 'FAIL'}: target >= {TARGET:,} per s (median)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
