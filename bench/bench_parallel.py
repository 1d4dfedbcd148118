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

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_estimate import run_estimate_bench
from cost_models import get_model
from cost_models.deployments import Deployments, make_deployments
from cost_models.dtypes import BF16, FP8
from cost_models.partitioning import FFN_LAYOUTS

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
    return run_estimate_bench(
        argv, deployments, n=100_000, hardware="h200", seed=20261202, what="MoE deployments with PP/EP/DP"
    )


if __name__ == "__main__":
    sys.exit(main())
