"""Throughput of MoE estimates under pipeline, expert and data parallelism, on one core.

Run on demand (not a pytest test):

    python bench/bench_parallel.py [--n N] [--repeats R] [--hardware h200|gb200|...] [--calibration none|auto]

Draws N deployments (fixed seed) of the catalog's MoE models (Mixtral 8x7B and 8x22B,
Qwen3-235B-A22B) in the engines' vocabulary: TP 1-8 over a 1 x 1 x TP mesh, PP 1-4 with 1-4
micro-batches, DP 1-4, EP a power of two up to min(TP x DP, experts) (so every row is one an
engine runs), batch a multiple of DP x micro-batches, prompt and generated lengths, weight and KV
formats; then times one vectorized ``estimate`` call (prefill and decode through the pipeline,
the experts split over EP and DP, the all-to-all dispatch, the stage sends, memory). Target
(issue 11): >= 200,000 deployments/s on one core, judged on the median.
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
from bench_cost_model import rates, timed
from cost_models import get_hardware, get_model
from cost_models.calibration import resolve_calibration
from cost_models.deployment import estimate
from cost_models.deployments import Deployments, make_deployments
from cost_models.dtypes import BF16, FP8
from cost_models.partitioning import FFN_LAYOUTS
from machine import cpu_model, pin_to_one_cpu

TARGET = 200_000
MOE_MODELS = ("mixtral-8x7b", "mixtral-8x22b", "qwen3-235b-a22b")


def deployments(n: int, hardware, seed: int) -> Deployments:
    rng = np.random.default_rng(seed)
    catalog = [get_model(name) for name in MOE_MODELS]
    model_index = rng.integers(0, len(catalog), n)
    experts = np.array([m.experts for m in catalog], dtype=np.float64)[model_index]
    tp = 2.0 ** rng.integers(0, 4, n)
    dp = 2.0 ** rng.integers(0, 3, n)
    pp = 2.0 ** rng.integers(0, 3, n)
    micro = 2.0 ** rng.integers(0, 3, n)
    # EP: a power of two up to min(TP x DP, experts); all are powers of two, so it divides both.
    top = np.log2(np.minimum(tp * dp, experts))
    ep = 2.0 ** np.floor(rng.uniform(0, 1, n) * (top + 1))
    ones = np.ones(n)
    return make_deployments(
        catalog,
        hardware,
        model_index=model_index,
        mesh=np.stack([ones, ones, tp], axis=1),
        batch=dp * micro * 2 ** rng.integers(0, 7, n),
        prompt_len=np.rint(2.0 ** rng.uniform(7, 13, n)),
        gen_len=np.rint(2.0 ** rng.uniform(4, 10, n)),
        weight_dtype=rng.choice([BF16, FP8], n),
        kv_dtype=rng.choice([BF16, FP8], n),
        prefill_ffn_layout=FFN_LAYOUTS.index("ws_1d"),
        decode_ffn_layout=FFN_LAYOUTS.index("ws_1d"),
        flash_attention=True,
        pipeline_parallel=pp,
        expert_parallel=ep,
        data_parallel=dp,
        micro_batches=micro,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hardware", default="h200")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--calibration", default="none", help="none (pure roofline), auto, or a profile name")
    args = parser.parse_args(argv)
    pinned = pin_to_one_cpu(None)
    hardware = get_hardware(args.hardware)
    batch = deployments(args.n, hardware, args.seed)
    profile = resolve_calibration(args.calibration, hardware.name)

    def run():
        result = estimate(batch, calibration=profile)
        return result.prefill.latency_s, result.decode.latency_s, result.memory.fits

    best, median = rates(args.n, timed(run, args.repeats))
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores ({pinned}); numpy {np.__version__}")
    print(
        f"hardware {args.hardware}, calibration {profile.name if profile else 'none'}, {args.n:,} MoE deployments "
        f"with PP/EP/DP, {args.repeats} repeats"
    )
    print(f"full estimates (prefill + decode + memory): {best:,.0f} / {median:,.0f} per s (best / median)")
    ok = median >= TARGET
    print(f"{'PASS' if ok else 'FAIL'}: median {median:,.0f} per s vs target >= {TARGET:,}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
