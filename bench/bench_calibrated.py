"""Cost of calibration: full estimates per second with and without a calibration profile.

Run on demand (not a pytest test):

    python bench/bench_calibrated.py [--n N] [--rounds R] [--hardware h100-sxm] [--calibration auto]
        [--models deepseek-v3,qwen3-235b-a22b --weight-dtypes fp8]

Draws bench_estimate's deployments (same seed) and times ``estimate`` alternately with the pure
roofline (``calibration=None``) and under the profile, R rounds, on one pinned core. Each call is
timed by the thread's CPU time (``time.thread_time``), so time the process spends waiting for a
shared core is not counted (cache contention still is); wall time is printed too. Targets (issue
9): calibrated estimates cost at most 1.3x the roofline's, and >= 300,000 calibrated estimates/s
on one core, both judged on the median.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_cost_model import MODELS
from bench_estimate import deployments
from cost_models import get_hardware
from cost_models.calibration import resolve_calibration
from cost_models.deployment import estimate
from cost_models.dtypes import parse_dtype
from cost_models.errors import InvalidInputError
from machine import cpu_model, pin_to_one_cpu
from tuner.allocator import reuse_freed_memory

TARGET_RATIO = 1.3
TARGET_PER_S = 300_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hardware", default="h100-sxm")
    parser.add_argument("--calibration", default="auto")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated catalog models to draw")
    parser.add_argument(
        "--weight-dtypes",
        default="bf16,int8,int4",
        help="comma-separated weight formats to draw (fp8 on a block-scaled checkpoint such as "
        "deepseek-v3 runs the fp8_block GEMMs)",
    )
    args = parser.parse_args(argv)
    try:
        weight_dtypes = tuple(parse_dtype(name, "--weight-dtypes") for name in args.weight_dtypes.split(","))
    except InvalidInputError as exc:
        parser.error(str(exc))
    pinned = pin_to_one_cpu(None)
    reuse_freed_memory()  # as the tuner command does (tuner/allocator.py)
    chip = get_hardware(args.hardware)
    batch = deployments(args.n, chip, args.seed, tuple(args.models.split(",")), weight_dtypes)
    profile = resolve_calibration(args.calibration, chip.name)
    if profile is None:
        parser.error("--calibration none: give a profile (auto or a name) to compare with the roofline")
    cpu: dict[str, list[float]] = {"roofline": [], "calibrated": []}
    wall: dict[str, list[float]] = {"roofline": [], "calibrated": []}
    for calibration in (None, profile):
        estimate(batch, calibration=calibration)  # warm caches (profiles, catalogs)
    for _ in range(args.rounds):
        for name, calibration in (("roofline", None), ("calibrated", profile)):
            start_cpu, start_wall = time.thread_time(), time.perf_counter()
            estimate(batch, calibration=calibration)
            cpu[name].append(time.thread_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores ({pinned}); numpy {np.__version__}")
    print(f"hardware {args.hardware}, profile {profile.name}, {args.n:,} deployments, {args.rounds} rounds")
    print(f"models {args.models}; weight formats {args.weight_dtypes}")
    for name in cpu:
        rates = args.n / np.array(cpu[name])
        wall_rates = args.n / np.array(wall[name])
        print(
            f"{name:10s} CPU time: {rates.max():,.0f} / {np.median(rates):,.0f} per s (best / median); "
            f"wall: {np.median(wall_rates):,.0f} per s median"
        )
    ratios = np.array(cpu["calibrated"]) / np.array(cpu["roofline"])
    ratio = float(np.median(ratios))
    rate = float(np.median(args.n / np.array(cpu["calibrated"])))
    print(f"calibrated / roofline CPU time per round: {', '.join(f'{r:.2f}' for r in ratios)} (median {ratio:.2f})")
    ok_ratio, ok_rate = ratio <= TARGET_RATIO, rate >= TARGET_PER_S
    print(f"{'PASS' if ok_ratio else 'FAIL'}: calibrated costs {ratio:.2f}x the roofline vs target <= {TARGET_RATIO}")
    verdict = "PASS" if ok_rate else "FAIL"
    print(f"{verdict}: median {rate:,.0f} calibrated estimates per s vs target >= {TARGET_PER_S:,}")
    return 0 if ok_ratio and ok_rate else 1


if __name__ == "__main__":
    sys.exit(main())
