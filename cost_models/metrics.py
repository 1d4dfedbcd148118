"""The metric registry: every number a deployment is judged by, written once.

Each :class:`Metric` has a name (the key of the ``tuner estimate --json`` section it lives in), a
unit, the direction that is better, a meaning, and how to compute it from an estimate. Study
specs accept exactly these names as objectives; the search stores them as columns; reports and
CLI tables label and format them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cost_models.deployment import DeploymentEstimate
from cost_models.deployments import Deployments

Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Metric:
    """One number per deployment, vectorized: ``compute(estimate, deployments) -> (n,)``."""

    name: str
    unit: str  # "s", "B", "tokens/s", "chip-s/token", "tokens", "chips", "fraction"
    direction: Direction
    description: str
    compute: Callable[[DeploymentEstimate, Deployments], np.ndarray]


_METRICS: tuple[Metric, ...] = (
    Metric(
        "prefill.latency_s",
        "s",
        "minimize",
        "time to process the prompts (time to first token)",
        lambda r, d: r.prefill.latency_s,
    ),
    Metric("prefill.mfu", "fraction", "maximize", "model FLOPs utilization of the prefill", lambda r, d: r.prefill.mfu),
    Metric(
        "prefill.cost_chip_s_per_token",
        "chip-s/token",
        "minimize",
        "chip-seconds per prompt token",
        lambda r, d: r.prefill.cost_chip_s_per_token,
    ),
    Metric(
        "prefill.throughput_tokens_per_s",
        "tokens/s",
        "maximize",
        "prompt tokens processed per second",
        lambda r, d: r.prefill.throughput_tokens_per_s,
    ),
    Metric(
        "decode.step_latency_s",
        "s",
        "minimize",
        "time per output token (one decode step, mean)",
        lambda r, d: r.decode_step_latency_s,
    ),
    Metric("decode.latency_s", "s", "minimize", "time to generate every output token", lambda r, d: r.decode.latency_s),
    Metric("decode.mfu", "fraction", "maximize", "model FLOPs utilization of the decode", lambda r, d: r.decode.mfu),
    Metric(
        "decode.cost_chip_s_per_token",
        "chip-s/token",
        "minimize",
        "chip-seconds per output token",
        lambda r, d: r.decode.cost_chip_s_per_token,
    ),
    Metric(
        "decode.throughput_tokens_per_s",
        "tokens/s",
        "maximize",
        "output tokens generated per second",
        lambda r, d: r.decode.throughput_tokens_per_s,
    ),
    Metric(
        "memory.total_bytes_per_chip",
        "B",
        "minimize",
        "weights + KV cache + activations on one chip",
        lambda r, d: r.memory.total_bytes_per_chip,
    ),
    Metric(
        "memory.max_context_tokens",
        "tokens",
        "maximize",
        "longest context the batch's KV cache can hold in the memory left",
        lambda r, d: r.memory.max_context_tokens,
    ),
    Metric("chips", "chips", "minimize", "chips in the deployment", lambda r, d: d.chips),
)
METRICS: dict[str, Metric] = {m.name: m for m in _METRICS}


def metric_arrays(
    result: DeploymentEstimate, deployments: Deployments, names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """The named metrics (all by default) of n estimates, by name."""
    return {name: METRICS[name].compute(result, deployments) for name in (names or list(METRICS))}
