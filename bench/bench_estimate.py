"""Throughput of full multi-chip estimates: deployments scored per second on one core.

Run on demand (not a pytest test):

    python bench/bench_estimate.py [--n N] [--repeats R] [--hardware tpu-v4|h100-sxm|...] [--clock wall|cpu]

Draws N deployments (fixed seed) over catalog models, legal meshes of 8..256 chips, batch,
prompt and generated lengths, weight/KV formats, FFN layout and attention sharding per phase, and
times one vectorized ``estimate`` call: prefill, decode at the first and last context, per-chip
costs, every layout's collectives, metrics and memory. Target (issue 3): >= 200,000 deployments/s
on one core, judged on the median.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_cost_model import MODELS, cpu_timed, rates, timed
from cost_models import get_hardware, get_model
from cost_models.calibration import resolve_calibration
from cost_models.deployment import estimate
from cost_models.deployments import Deployments, make_deployments
from cost_models.dtypes import BF16, INT4, INT8
from cost_models.partitioning import ATTENTION_SHARDINGS, FFN_LAYOUTS
from cost_models.topology import network_for
from machine import cpu_model, pin_to_one_cpu
from tuner.allocator import reuse_freed_memory

TARGET = 200_000


def deployments(
    n: int, hardware, seed: int, models: tuple[str, ...] = MODELS, weight_dtypes: tuple[int, ...] = (BF16, INT8, INT4)
) -> Deployments:
    """n deployments drawn with ``seed`` (the defaults: the bench's design space; bench_calibrated
    narrows models and weight formats to time one kernel family's calibrated path)."""
    rng = np.random.default_rng(seed)
    network = network_for(hardware)
    meshes = np.array([m for chips in (8, 16, 32, 64, 128, 256) for m in network.legal_meshes(chips)], dtype=np.float64)
    catalog = [get_model(name) for name in models]
    return make_deployments(
        catalog,
        hardware,
        model_index=rng.integers(0, len(catalog), n),
        mesh=meshes[rng.integers(0, len(meshes), n)],
        batch=2 ** rng.integers(0, 10, n),
        prompt_len=np.rint(2.0 ** rng.uniform(7, 14, n)),
        gen_len=np.rint(2.0 ** rng.uniform(4, 10, n)),
        weight_dtype=rng.choice(list(weight_dtypes), n),
        kv_dtype=rng.choice([BF16, INT8], n),
        prefill_ffn_layout=rng.integers(0, len(FFN_LAYOUTS), n),
        decode_ffn_layout=rng.integers(0, len(FFN_LAYOUTS), n),
        prefill_attn_sharding=rng.integers(0, len(ATTENTION_SHARDINGS), n),
        decode_attn_sharding=rng.integers(0, len(ATTENTION_SHARDINGS), n),
    )


def run_estimate_bench(
    argv: list[str] | None,
    make: Callable[[int, object, int], Deployments],
    *,
    n: int,
    hardware: str,
    seed: int,
    what: str,
) -> int:
    """Time ``estimate`` over ``make(n, chip, seed)`` deployments on one pinned core and print
    best / median rates against TARGET (also bench_parallel.py's loop)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hardware", default=hardware)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument(
        "--calibration",
        default="none",
        help="none (pure roofline), auto (the chip's shipped profile) or a profile name",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier on a machine shared with other jobs)",
    )
    args = parser.parse_args(argv)
    pinned = pin_to_one_cpu(None)
    reuse_freed_memory()  # as the tuner command does (tuner/allocator.py)
    chip = get_hardware(args.hardware)
    batch = make(args.n, chip, args.seed)
    profile = resolve_calibration(args.calibration, chip.name)

    def run():
        result = estimate(batch, calibration=profile)
        return result.prefill.latency_s, result.decode.latency_s, result.memory.fits

    best, median = rates(args.n, (timed if args.clock == "wall" else cpu_timed)(run, args.repeats))
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores ({pinned}); numpy {np.__version__}")
    print(
        f"hardware {args.hardware}, calibration {profile.name if profile else 'none'}, "
        f"{args.n:,} {what}, {args.repeats} repeats, {args.clock} clock"
    )
    print(f"full estimates (prefill + decode + memory): {best:,.0f} / {median:,.0f} per s (best / median)")
    ok = median >= TARGET
    print(f"{'PASS' if ok else 'FAIL'}: median {median:,.0f} per s vs target >= {TARGET:,}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    return run_estimate_bench(argv, deployments, n=200_000, hardware="tpu-v4", seed=20261121, what="deployments")


if __name__ == "__main__":
    sys.exit(main())
