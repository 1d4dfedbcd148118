"""Guard: ``serve`` scores a row the same whatever rows are scored beside it.

Run on demand (not a pytest test; tests/cost_models/test_iteration.py checks one draw):

    python bench/guard_batch_independence.py [--n N] [--calls C] [--chips h100-sxm,b200]

Per chip (default H100 and B200), engine (TensorRT-LLM, vLLM, SGLang) and loop (open, closed): N random
deployments (tests/cost_models/test_iteration.py's catalog draw: MLA, sliding windows, MoE, every
weight format, TP 1-8) under random workloads (prompts 64-8192 tokens, half chunked at a 512-8192
budget, prefix hits, spread lengths), scored in one call and in C calls over a shuffle of the rows.
Prints, per draw, the rows whose finite fields differ by more than 1e-9 (relative) and the
largest difference, by field. docs/serving.md ("Where it is weak", the open loop's fixed point)
gives the numbers of 2026-12-07.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cost_models.calibration import resolve_calibration
from cost_models.deployments import Deployments, tensor_parallel
from cost_models.dtypes import BF16, FP4, FP8, INT4, INT8
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.serving import ServingEstimate, ServingWorkloads, make_workloads, serve

MODELS = ("llama-3-8b", "llama-2-70b", "mistral-7b", "qwen3-8b", "mixtral-8x7b", "deepseek-v3", "gpt-oss-20b")
RTOL = 1e-9


def draw(chip: str, backend: str, closed: bool, n: int, seed: int) -> tuple[Deployments, ServingWorkloads]:
    rng = np.random.default_rng(seed)
    catalog = [get_model(name) for name in MODELS]
    weight = rng.choice([BF16, FP8, INT8, INT4, FP4], n)
    d = tensor_parallel(
        catalog,
        get_hardware(chip),
        2 ** rng.integers(0, 4, n),
        model_index=rng.integers(0, len(catalog), n),
        weight_dtype=weight,
        act_dtype=np.where((weight == FP4) & (rng.random(n) < 0.5), FP4, BF16),
        kv_dtype=rng.choice([BF16, FP8], n),
    )
    prompt = np.rint(2.0 ** rng.uniform(6, 13, n))
    chunked = rng.random(n) < 0.5
    load = {"concurrency": 2.0 ** rng.integers(0, 9, n)} if closed else {"request_rate": 2.0 ** rng.uniform(-2, 5, n)}
    w = make_workloads(
        backend=backend,
        prompt_len=prompt,
        gen_len=np.rint(2.0 ** rng.uniform(3, 10, n)),
        prompt_len_std=np.where(rng.random(n) < 0.33, prompt / 4.0, 0.0),
        prefix_hit_rate=np.where(rng.random(n) < 0.3, 0.5, 0.0),
        max_num_tokens=np.where(chunked, rng.choice([512.0, 2048.0, 8192.0], n), np.maximum(8192.0, prompt)),
        chunked_prefill=chunked,
        **load,
    )
    return d, w


def compare(chip: str, backend: str, closed: bool, n: int, calls: int, seed: int) -> None:
    d, w = draw(chip, backend, closed, n, seed)
    profile = resolve_calibration("auto", chip, backend)
    together = serve(d, w, calibration=profile)
    order = np.random.default_rng(0).permutation(n)
    parts = [serve(d.take(rows), w.take(rows), calibration=profile) for rows in np.array_split(order, calls)]
    back = np.argsort(order)
    apart: set[int] = set()
    worst: dict[str, float] = {}
    for f in fields(ServingEstimate):
        a = np.asarray(getattr(together, f.name))
        if a.ndim != 1 or a.shape[0] != n or a.dtype.kind != "f":
            continue
        b = np.concatenate([np.asarray(getattr(part, f.name)) for part in parts])[back]
        apart |= set(np.flatnonzero(np.isfinite(a) != np.isfinite(b)).tolist())
        both = np.isfinite(a) & np.isfinite(b)
        moved = np.where(a[both] == b[both], 0.0, np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), 1e-300))
        rows = np.flatnonzero(both)[moved > RTOL]
        apart |= set(rows.tolist())
        if len(rows):
            worst[f.name] = float(moved.max())
    loop = "closed" if closed else "open"
    fields_moved = ", ".join(f"{name} {value:.2g}" for name, value in sorted(worst.items(), key=lambda x: -x[1])[:4])
    print(f"{chip:9s} {backend:7s} {loop:6s} rows apart {len(apart):3d} of {n}  {fields_moved}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--calls", type=int, default=11)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--chips", default="h100-sxm,b200", help="comma-separated catalog chips")
    args = parser.parse_args(argv)
    for chip in args.chips.split(","):
        for backend in ("trtllm", "vllm", "sglang"):
            for closed in (False, True):
                compare(chip, backend, closed, args.n, args.calls, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
