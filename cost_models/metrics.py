"""The metric registry: every number a deployment is judged by, written once.

Each :class:`Metric` has a name (the key of the ``tuner estimate --json`` section it lives in), a
unit, the direction that is better, a meaning, and how to compute it from an estimate. Study
specs accept exactly these names as objectives; the search stores them as columns; reports and
CLI tables label and format them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cost_models.deployment import DeploymentEstimate
from cost_models.deployments import Deployments
from cost_models.errors import InvalidInputError

if TYPE_CHECKING:  # a study without a serving: section never loads the serving model (0.05 s)
    from cost_models.serving import ServingEstimate

Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Metric:
    """One number per deployment, vectorized: ``compute(estimate, deployments) -> (n,)``; a
    ``needs_serving`` metric is computed from the :class:`ServingEstimate` of the deployments under
    their serving workloads (only a study with a ``serving:`` section has one)."""

    name: str
    unit: str  # "s", "B", "tokens/s", "tokens/s/chip", "tokens/s/user", "chip-s/token", "tokens", ...
    direction: Direction
    description: str
    compute: Callable[[Any, Deployments], np.ndarray]
    needs_serving: bool = False
    #: A dollar metric: ``compute`` gives chip-seconds per token and :func:`metric_arrays` turns
    #: them into dollars per million tokens at the user's price per chip-hour
    #: (:func:`usd_per_million_tokens`); the catalog has no prices (they differ per provider
    #: and contract), so a study names its own (``price_per_chip_hour_usd``).
    needs_price: bool = False


#: The unit of a dollar metric.
USD_PER_MILLION_TOKENS = "USD/M tokens"
SECONDS_PER_HOUR = 3600.0
TOKENS_PER_MILLION = 1e6


def usd_per_million_tokens(chip_s_per_token: Any, price_per_chip_hour_usd: float) -> Any:
    """Dollars per million tokens from chip-seconds per token at ``price_per_chip_hour_usd``:
    chip-s/token x $/chip-h / 3600 s/h x 1e6 (8 chips serving 1000 tokens/s are 0.008 chip-s a
    token; at $2.49 a chip-hour, 0.008 x 2.49 / 3600 x 1e6 = $5.533 per million tokens)."""
    return (
        np.asarray(chip_s_per_token, dtype=np.float64) * price_per_chip_hour_usd / SECONDS_PER_HOUR * TOKENS_PER_MILLION
    )


def usd_per_hour(chips: Any, price_per_chip_hour_usd: float) -> Any:
    """Dollars per hour of ``chips`` chips rented at ``price_per_chip_hour_usd`` each."""
    return np.asarray(chips, dtype=np.float64) * price_per_chip_hour_usd


def _chip_s_per_token(tokens_per_s_per_chip: np.ndarray) -> np.ndarray:
    """1 / (tokens/s/chip): a deployment that serves no tokens (unstable) costs infinitely much."""
    rate = np.asarray(tokens_per_s_per_chip, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), np.inf)


def _serving(name: str, unit: str, direction: Direction, description: str) -> Metric:
    key = name.removeprefix("serving.")
    return Metric(name, unit, direction, description, lambda s, d: getattr(s, key).astype(np.float64), True)


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
        "prefill.cost_usd_per_million_tokens",
        USD_PER_MILLION_TOKENS,
        "minimize",
        "dollars per million prompt tokens at price_per_chip_hour_usd (prefill.cost_chip_s_per_token x price / 3600 "
        "x 1e6)",
        lambda r, d: r.prefill.cost_chip_s_per_token,
        needs_price=True,
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
        "decode.cost_usd_per_million_tokens",
        USD_PER_MILLION_TOKENS,
        "minimize",
        "dollars per million output tokens at price_per_chip_hour_usd (decode.cost_chip_s_per_token x price / 3600 "
        "x 1e6)",
        lambda r, d: r.decode.cost_chip_s_per_token,
        needs_price=True,
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
    Metric(
        "chips",
        "chips",
        "minimize",
        "chips in the deployment (disaggregated: every instance of both pools)",
        lambda r, d: d.chips,
    ),
    _serving("serving.ttft_s", "s", "minimize", "time to first token under load (queueing and prefill included)"),
    _serving("serving.ttft_p90_s", "s", "minimize", "90th percentile of time to first token under load"),
    _serving("serving.ttft_p99_s", "s", "minimize", "99th percentile of time to first token under load"),
    _serving("serving.tpot_s", "s", "minimize", "mean time per output token under load (prefill interference)"),
    _serving("serving.tpot_p99_s", "s", "minimize", "99th percentile of a request's time per output token"),
    _serving("serving.e2e_latency_s", "s", "minimize", "request latency under load: TTFT plus every output token"),
    _serving("serving.tokens_per_s", "tokens/s", "maximize", "output tokens per second of the deployment under load"),
    _serving(
        "serving.tokens_per_s_per_chip", "tokens/s/chip", "maximize", "output tokens per second per chip under load"
    ),
    Metric(
        "serving.cost_usd_per_million_tokens",
        USD_PER_MILLION_TOKENS,
        "minimize",
        "dollars per million output tokens under load at price_per_chip_hour_usd (chips x price / 3600 / "
        "serving.tokens_per_s x 1e6; every chip of both pools when disaggregated)",
        # tokens_per_s_per_chip is tokens_per_s over every chip of the deployment (serving.py; a
        # disaggregated row's over both pools, disaggregated.combine), so 1 / it is chips / tokens_per_s.
        lambda s, d: _chip_s_per_token(s.tokens_per_s_per_chip),
        needs_serving=True,
        needs_price=True,
    ),
    _serving("serving.tokens_per_s_per_user", "tokens/s/user", "maximize", "output tokens per second one user sees"),
    _serving(
        "serving.max_concurrency",
        "sequences",
        "maximize",
        "sequences the paged KV cache, max_batch_size and the max_num_tokens budget let run at once",
    ),
)
METRICS: dict[str, Metric] = {m.name: m for m in _METRICS}


def metric_arrays(
    result: DeploymentEstimate,
    deployments: Deployments,
    names: list[str] | None = None,
    serving: ServingEstimate | None = None,
    chips: np.ndarray | None = None,
    price_per_chip_hour_usd: float | None = None,
) -> dict[str, np.ndarray]:
    """The named metrics of n estimates, by name: by default all, the serving ones only when
    ``serving`` (the deployments' serving steady state) is given. ``chips``: the chips each
    deployment uses in all where that is more than its own (a disaggregated row is xP prefill
    and yD decode instances, ``deployments`` holds one decode instance); the ``chips`` metric
    reads it. The static sections' chip-seconds per token stay one instance's: its chips over
    its own tokens, which more instances do not change. ``price_per_chip_hour_usd``: the user's
    price of one chip for an hour, which the dollar metrics need (by default they are left out
    without it)."""
    chosen = names or [
        m.name
        for m in METRICS.values()
        if (serving is not None or not m.needs_serving) and (price_per_chip_hour_usd is not None or not m.needs_price)
    ]
    out = {}
    for name in chosen:
        metric = METRICS[name]
        if metric.needs_serving and serving is None:
            raise InvalidInputError("metric", f"{name} needs a serving workload", "add a serving: section")
        if metric.needs_price and price_per_chip_hour_usd is None:
            raise InvalidInputError(
                "metric", f"{name} needs a price per chip-hour", "add price_per_chip_hour_usd: (dollars) to the spec"
            )
        if name == "chips" and chips is not None:
            out[name] = np.asarray(chips, dtype=np.float64)
            continue
        value = metric.compute(serving if metric.needs_serving else result, deployments)
        if metric.needs_price:
            assert price_per_chip_hour_usd is not None
            value = usd_per_million_tokens(value, price_per_chip_hour_usd)
        out[name] = value
    return out
