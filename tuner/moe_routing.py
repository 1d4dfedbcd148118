"""The routing under which the kernel database measured each fused-MoE kernel.

AIConfigurator's collector does not route its tokens with a trained router: it builds router
logits that force one of three token distributions, recorded per row in the ``distribution``
column of ``data/kernels/moe_perf.csv.gz`` (ai-dynamo/aiconfigurator, collector/helper.py
``balanced_logits``, ``sample_power_law`` and ``_generate_power_law_distribution``, used by
collector/{sglang,vllm,trtllm}/collect_moe.py; earlier copies of the same functions sat in each
collect_moe.py):

- ``balanced``: token t takes experts (t + i s) mod E for i < k, s = ceil(E / k) (with fewer tokens
  than s, (t s / N + i s) mod E, truncated): min(E, N k) distinct experts at most, evenly loaded.
- ``power_law_<alpha>``: each expert's load drawn from a power law of exponent alpha on
  [1, 0.8 N] (on [0.01, 2] where N k <= E), scaled to N k routed rows and rounded (the rounding's
  remainder added to the largest loads, or taken from the smallest), then the rows dealt out
  expert by expert. Where N k <= E many loads round to 0: fewer experts wake than uniform routing
  would wake.

The cost model routes a deployment's tokens uniformly (cost_models.moe.experts_woken: E (1 -
(1 - k/E)^N) experts woken), which is what it must assume of a model it has not seen run. The
kernels were not measured that way, and fitting the fused-MoE class on uniform routing charged
its parameters with the difference: held out on GB200 vLLM, at decode sizes (under 2 tokens per
woken expert) the balanced rows ran 9% slower than predicted and the power-law ones 12-15% faster
(median log ratios of predicted over measured -0.09, +0.13 and +0.16): uniform routing wakes more
experts than the power laws and fewer than balanced routing. The fit
(tuner.moe_kernels) therefore times each measured row at the experts its own routing wakes; a
deployment is still timed at uniform routing.
"""

from __future__ import annotations

import functools
import re

import numpy as np

#: The routing distributions the collector names (the database's ``distribution`` column).
ROUTING_NAME = re.compile(r"balanced|power_law_\d+(\.\d+)?")

#: Draws of the collector's random power-law loads averaged per (tokens, experts, top-k, alpha):
#: the database holds one draw per row with the collector's unrecorded seed, so the fit takes the
#: expected number of experts woken. The count's spread over draws (400 draws) is 19-24% of its
#: mean at 2-4 tokens over 8 experts top-2, 13-16% at 2 tokens over 128 top-8 and 6-11% at 4-16
#: tokens over 128-256 top-8, so 64 draws put the expectation's standard error within 3% of it.
POWER_LAW_DRAWS = 64
#: Seed of those draws (fixed: the fit is deterministic).
POWER_LAW_SEED = 20261206


def balanced_experts_woken(tokens: int, experts: int, top_k: int) -> int:
    """Distinct experts the collector's ``balanced_logits`` routes ``tokens`` tokens to."""
    stride = -(-experts // top_k)
    t = np.arange(tokens, dtype=np.float64)[:, None]
    offsets = np.arange(top_k, dtype=np.float64)[None, :] * stride
    if tokens >= stride:
        ids = (t + offsets) % experts
    else:  # torch's float expression, then .long(): truncated toward zero (all values >= 0)
        ids = np.trunc((t * stride / tokens + offsets) % experts)
    return int(np.unique(ids.astype(np.int64)).size)


def power_law_loads(rng: np.random.Generator, tokens: int, experts: int, top_k: int, alpha: float) -> np.ndarray:
    """One draw of the collector's power-law loads: routed rows per expert, summing to N k."""
    low, high = (1.0, tokens * 0.8) if tokens * top_k > experts else (0.01, 2.0)
    u = rng.random(experts)
    power = 1.0 - alpha
    drawn = ((high**power - low**power) * u + low**power) ** (1.0 / power)  # inverse CDF
    target = tokens * top_k
    loads = np.rint(drawn / drawn.sum() * target).astype(np.int64)
    delta = int(target - loads.sum())
    by_load = np.argsort(-loads, kind="stable")
    for i in range(abs(delta)):
        if delta > 0:  # the remainder to the largest loads, one each in turn
            loads[by_load[i % experts]] += 1
        else:  # taken from the smallest, or from the largest where that one is empty
            j = by_load[-(i % experts) - 1]
            loads[j if loads[j] > 0 else int(np.argmax(loads))] -= 1
    return loads


def experts_woken_by_loads(loads: np.ndarray, tokens: int, top_k: int) -> int:
    """Distinct experts woken when the collector deals ``loads`` out: the rows sorted by expert,
    largest load first, token t taking rows t, N + t, ..., (k - 1) N + t. An expert with more
    than N rows gives some token it twice; that token's router logits then hold fewer than k
    ones, and its top-k takes the rest among equal zeros, counted here as the lowest-numbered
    experts it does not have (the tie order of the engines' top-k kernels is not specified)."""
    loaded = int(np.count_nonzero(loads))
    if loads.max(initial=0) <= tokens or loaded == len(loads):  # no token's top-k refilled, or none to wake
        return loaded
    order = np.argsort(-loads, kind="stable")
    chosen = np.repeat(order, loads[order]).reshape(top_k, tokens).T
    woken = set(np.flatnonzero(loads).tolist())
    for row in np.unique(np.sort(chosen, axis=1), axis=0):
        mine = set(row.tolist())
        spare = (e for e in range(len(loads)) if e not in mine)
        woken.update(next(spare) for _ in range(top_k - len(mine)))
    return len(woken)


@functools.cache
def measured_experts_woken(tokens: int, experts: int, top_k: int, distribution: str) -> float:
    """Experts the collector's ``distribution`` wakes for ``tokens`` tokens routed top-``top_k``
    over ``experts`` (the expectation over its random draws for a power law)."""
    if distribution == "balanced":
        return float(balanced_experts_woken(tokens, experts, top_k))
    if not ROUTING_NAME.fullmatch(distribution):
        raise ValueError(f"unknown routing distribution {distribution!r} (balanced or power_law_<alpha>)")
    alpha = float(distribution.rsplit("_", 1)[1])
    rng = np.random.default_rng(POWER_LAW_SEED)
    woken = [
        experts_woken_by_loads(power_law_loads(rng, tokens, experts, top_k, alpha), tokens, top_k)
        for _ in range(POWER_LAW_DRAWS)
    ]
    return float(np.mean(woken))
