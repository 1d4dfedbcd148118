"""A closed loop's TTFT percentile where its steady requests and its first burst meet
(:func:`cost_models.ttft_percentiles.closed_loop_quantiles`): at 10 requests a client the steady
law weighs exactly 0.9 and the p90 falls between the two parts; it follows ``tuner simulate``'s
percentile (numpy's 'linear' interpolation between order statistics), not float rounding."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models import get_hardware, get_model
from cost_models.deployments import tensor_parallel
from cost_models.dtypes import BF16
from cost_models.serving import make_workloads, serve
from cost_models.serving_simulation import simulate_one
from cost_models.ttft_percentiles import closed_loop_quantiles


def _one(x: float) -> np.ndarray:
    return np.array([x])


@pytest.mark.parametrize(
    ("linear_s", "burst_times_s"), [(0.0, [3.0] * 8), (1.0, [3.0 + (k + 0.5) / 8 for k in range(8)])]
)
def test_the_gap_is_interpolated_as_numpy_interpolates_80_requests(linear_s: float, burst_times_s: list[float]) -> None:
    """8 clients x 10 requests: 72 steady requests at 1 s (a step law), 8 in the burst at 3 s (or
    spread over 3-4 s, one at each eighth's middle: the Hazen positions the rule reads). The
    expected value is np.percentile of those 80 times, as tuner simulate takes it: 1 s + 0.1 of
    the way to the burst's first (3 s: 1.2 s; 3.0625 s: 1.20625 s)."""
    expected = float(np.percentile([1.0] * 72 + burst_times_s, 90))
    law = (_one(0.9), _one(1.0), _one(0.0))
    burst = (_one(0.1), _one(3.0), _one(linear_s), _one(0.0))
    (p90,) = closed_loop_quantiles((0.9,), _one(80.0), law, burst)
    assert float(p90[0]) == pytest.approx(expected, rel=1e-9)


def _llama_8b_p90s_s(prompt_len_std: float) -> np.ndarray:
    """Llama-3-8B on one H100 (vLLM, the roofline), 8 clients, 1024/128 tokens, at 10 requests a
    client and 1e-8 of it either way: the steady weight 0.9 - 1e-9, 0.9, 0.9 + 1e-9."""
    d = tensor_parallel(
        [get_model("llama-3-8b")],
        get_hardware("h100-sxm"),
        np.array([1, 1, 1]),
        model_index=np.zeros(3, dtype=int),
        weight_dtype=np.array([BF16] * 3),
    )
    w = make_workloads(
        backend="vllm",
        prompt_len=1024.0,
        gen_len=128.0,
        concurrency=8.0,
        prompt_len_std=prompt_len_std,
        requests_per_client=np.array([10.0 * (1.0 - 1e-8), 10.0, 10.0 * (1.0 + 1e-8)]),
    )
    return serve(d, w, calibration=None).ttft_p90_s


@pytest.mark.parametrize("prompt_len_std", [0.0, 100.0])
def test_closed_loop_p90_is_continuous_in_the_steady_weight(prompt_len_std: float) -> None:
    """Before: 66.04 / 66.04 / 48.54 ms at fixed prompts (the burst's start, then the steady
    law's tail 6 standard deviations up), 66.05 / 66.05 / 52.02 ms at prompts +-100; now 32.21
    and 33.06 ms, each three within 2e-6 of each other. (At prompts +-300 main read the burst's
    start all three: the steady tail reaches it before 1e-9 of weight matters.)"""
    p90s = _llama_8b_p90s_s(prompt_len_std)
    assert np.all(np.isfinite(p90s))
    assert float(p90s.max() / p90s.min()) - 1.0 < 1e-5


# Seeded against tuner simulate (seed 0, clients x 10 requests): the analytic p90 a / s was 1.35
# (8 clients, fixed lengths: 104.9 ms, simulated 77.7) and 1.54 (32 clients, prompts +-300, outputs
# +-40: 156.8 ms, simulated 102.0) on main; the rule puts them at 0.83 (64.4 ms) and 1.01 (103.0).
# Band 0.75-1.15: the rest is the parts' own laws (the simulation's 8-client burst gets its first
# tokens together at 187 ms, the analytic burst spreads over 106-191 ms).
@pytest.mark.parametrize(("clients", "extra"), [(8, {}), (32, {"prompt_len_std": 300.0, "gen_len_std": 40.0})])
def test_closed_loop_p90_is_near_the_simulated_at_10_requests_a_client(clients: int, extra: dict) -> None:
    out = simulate_one(
        "llama-3-8b", "h100-sxm", chips=1, mesh=(1, 1, 1), backend="vllm", prompt_len=1024, gen_len=128,
        concurrency=clients, requests=10 * clients, seed=0, **extra,
    )  # fmt: skip
    ratio = out["analytic"]["ttft_p90_s"] / out["simulated"]["ttft_s"]["p90"]
    assert 0.75 <= ratio <= 1.15
