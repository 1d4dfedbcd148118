"""Guard for speed work on ``serve``: every field of the ServingEstimate must stay bit-identical.

Run on demand (not a pytest test); ``PYTHONPATH`` picks the code under test:

    PYTHONPATH=<base worktree> python bench/guard_serving_outputs.py save BASE.npz
    PYTHONPATH=<branch>        python bench/guard_serving_outputs.py check BASE.npz

Scores bench_serving.py's draws (100,000 closed and open loops, h100-sxm-trtllm, as timed), a
20,000-row draw of each loop with no profile and with h100-sxm-vllm (vLLM's host overheads: the
open loop's host kink), the same under backend vllm, and MoE draws (Mixtral-8x7B/8x22B,
Qwen3-235B-A22B, gpt-oss-120b on h200, tensor parallel 1-8, with and without h200-trtllm), and
compares every field and property with guard_estimate_outputs.same (np.array_equal, NaN
positions and signed zeros included).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_serving
from cost_models import get_hardware, get_model
from cost_models.calibration import resolve_calibration
from cost_models.deployments import tensor_parallel
from cost_models.dtypes import BF16, FP8
from cost_models.serving import make_workloads, serve
from guard_estimate_outputs import _flatten
from guard_estimate_outputs import main as guard_main

MOE_MODELS = ("mixtral-8x7b", "mixtral-8x22b", "qwen3-235b-a22b", "gpt-oss-120b")


def moe_draw(n: int, seed: int, closed: bool, backend: str):
    rng = np.random.default_rng(seed)
    catalog = [get_model(name) for name in MOE_MODELS]
    d = tensor_parallel(
        catalog,
        get_hardware("h200"),
        2 ** rng.integers(0, 4, n),
        model_index=rng.integers(0, len(catalog), n),
        weight_dtype=rng.choice([BF16, FP8], n),
    )
    load = {"concurrency": 2.0 ** rng.integers(0, 9, n)} if closed else {"request_rate": 2.0 ** rng.uniform(-2, 5, n)}
    prompt = np.rint(2.0 ** rng.uniform(7, 13, n))
    w = make_workloads(
        backend=backend,
        prompt_len=prompt,
        gen_len=np.rint(2.0 ** rng.uniform(4, 10, n)),
        max_num_tokens=np.maximum(rng.choice([2048.0, 8192.0], n), prompt),
        **load,
    )
    return d, w


def outputs() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    def keep(name: str, compute, *args, **kwargs) -> None:
        try:
            _flatten(out, name, compute(*args, **kwargs))
        except Exception as error:
            out[name] = np.array("EXC " + repr(error))

    trtllm = resolve_calibration("h100-sxm-trtllm", "h100-sxm")
    for closed in (True, False):
        d, w = bench_serving.configurations(100_000, 20261202, closed)
        keep(f"bench/{closed}", serve, d, w, calibration=trtllm)
        d, w = bench_serving.configurations(20_000, 5, closed)
        for profile_name in ("none", "h100-sxm-trtllm", "h100-sxm-vllm"):
            profile = resolve_calibration(profile_name, "h100-sxm")
            keep(f"small/{closed}/{profile_name}", serve, d, w, calibration=profile)
        for backend in ("vllm", "sglang"):
            d, w = bench_serving.configurations(20_000, 6, closed)
            w = make_workloads(
                backend=backend,
                prompt_len=w.prompt_len,
                gen_len=w.gen_len,
                max_num_tokens=w.max_num_tokens,
                **({"concurrency": w.concurrency} if closed else {"request_rate": w.request_rate}),  # type: ignore[arg-type]
            )
            profile = resolve_calibration(f"h100-sxm-{backend}", "h100-sxm")
            keep(f"{backend}/{closed}", serve, d, w, calibration=profile)
        for backend, profile_name in (("trtllm", "none"), ("trtllm", "h200-trtllm"), ("vllm", "h200-vllm")):
            d, w = moe_draw(5_000, 8, closed, backend)
            keep(f"moe/{closed}/{profile_name}", serve, d, w, calibration=resolve_calibration(profile_name, "h200"))
    return out


if __name__ == "__main__":
    sys.exit(guard_main(sys.argv[1:], outputs))
