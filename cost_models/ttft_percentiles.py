"""TTFT percentiles of the analytic steady state (``ttft_p90_s``, ``ttft_p99_s``).

A request's TTFT is the sum of parts the steady state already prices by their means
(:mod:`cost_models.serving`): the rest of the iteration it lands in, the wait for the prefill budget
behind the prompts ahead (an M/D/1 queue), its own prefill iterations (with the prompts that landed
with it) and the request overhead outside the engine. The percentiles take those parts' variances
and fit a gamma law to the random part (mean and variance matched; quantiles by Wilson and
Hilferty's cube-root normal approximation), the overhead a constant beside it:

* the queue's waiting time W of an M/G/1 queue: E[W] = lambda E[S^2] / (2 (1 - rho))
  (Pollaczek-Khinchine) and E[W^2] = 2 E[W]^2 + lambda E[S^3] / (3 (1 - rho)) (Takacs's recursion;
  Kleinrock, Queueing Systems vol. 1, 1975, eq. 5.113). Its squared coefficient of variation goes
  to 1 as rho -> 1: the gamma fit becomes the exponential tail of heavy traffic (Kingman 1962), and
  at light load the mass at zero (no wait) makes the fitted shape small;
* the rest of the iteration landed in: an open loop's request lands in a mixed iteration with
  probability p t_mix / t_mean (size-biased, the inspection paradox) and a decode-only one
  otherwise, uniform over it (L / 2, L^2 / 12; renewal theory's forward recurrence time): two
  gamma laws, one per kind, mixed;
* the other prompts in the request's own iteration: a Poisson count, each a prompt's time;
* the prompt's own length where lengths spread (lognormal, as ``tuner simulate`` draws them,
  :func:`cost_models.serving_simulation._lengths`): its prefill time in proportion, and the
  queue's service moments E[S^k] = S^k (1 + cv^2)^(k (k - 1) / 2) (the lognormal's).

A closed loop's first burst (every client at t = 0, ``share`` of the requests) is a second law
beside the steady one: the i-th of M groups waits i groups, uniform over 1..M. The percentile of
the mixture is found by bisection on its distribution function.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
from scipy.special import ndtr

#: Standard normal quantiles of the 90th and 99th percentiles.
Z_P90 = 1.2816
Z_P99 = 2.3263
#: The percentiles reported, with their standard normal quantiles.
TTFT_PERCENTILES: tuple[tuple[str, float, float], ...] = (("ttft_p90_s", 0.90, Z_P90), ("ttft_p99_s", 0.99, Z_P99))
#: Bisection rounds of :func:`mixture_quantile`: the bracket (the laws' own quantiles, a few tens of
#: milliseconds apart) shrinks by 2^-14 (6e-5 of it: a few microseconds; the percentiles themselves
#: are 10-30% approximations, docs/serving.md). 24 rounds cost an open loop 8% of its throughput.
_BISECTION_ROUNDS = 14


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """The standard normal law's distribution function (scipy.special.ndtr: exact, and 1.4x
    faster here than Abramowitz and Stegun 7.1.26's polynomial, which it replaced)."""
    return ndtr(x)


def gamma_quantile(mean: np.ndarray, variance: np.ndarray, z: float) -> np.ndarray:
    """The quantile at standard normal ``z`` of a gamma law of this mean and variance (Wilson and
    Hilferty 1931: (X / mean)^(1/3) is about normal with mean 1 - 1 / (9 k) and variance 1 / (9 k),
    k = mean^2 / variance the shape)."""
    shape = mean**2 / np.maximum(variance, 1e-30)
    ninth = 1.0 / (9.0 * np.maximum(shape, 1e-30))
    root = np.maximum(1.0 - ninth + z * np.sqrt(ninth), 0.0)
    return np.where(variance > 0.0, mean * root**3, mean)


class _GammaCdf:
    """``weight`` x P(X <= x) for the gamma law of :func:`gamma_quantile` (the same approximation,
    inverted: (x / mean)^(1/3) normal), at many points given by their cube roots, the law's
    constants computed once; a step at the mean where the variance is 0."""

    def __init__(self, weight: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> None:
        shape = mean**2 / np.maximum(variance, 1e-30)
        ninth = 1.0 / (9.0 * np.maximum(shape, 1e-30))
        self.weight, self.root_mean = weight, np.cbrt(mean)
        self.inverse_root_mean = 1.0 / np.cbrt(np.maximum(mean, 1e-30))
        self.centre, self.inverse_sd = 1.0 - ninth, 1.0 / np.sqrt(ninth)
        self.spreads = variance > 0.0
        self.every_spreads = bool(self.spreads.all())

    def weighted_at_root(self, root: np.ndarray) -> np.ndarray:
        """At the times ``root``^3 (``root`` >= 0)."""
        p = ndtr((root * self.inverse_root_mean - self.centre) * self.inverse_sd)
        if not self.every_spreads:
            p = np.where(self.spreads, p, (root >= self.root_mean).astype(np.float64))
        return self.weight * p


def md1_wait_variance(mean_wait: np.ndarray, rho: np.ndarray, service: np.ndarray, cv2: np.ndarray) -> np.ndarray:
    """Var(W) of an M/G/1 queue's wait from its mean (Pollaczek-Khinchine, as the steady state
    prices it) by Takacs's recursion: E[W^2] = 2 E[W]^2 + lambda E[S^3] / (3 (1 - rho)), lambda =
    rho / E[S], E[S^3] = S^3 (1 + cv^2)^3 for a lognormal service of mean S (1 for a deterministic
    one: M/D/1)."""
    third = rho * service**2 * (1.0 + cv2) ** 3 / (3.0 * np.maximum(1.0 - rho, 1e-3))
    return mean_wait**2 + third


def lognormal_cv2(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The squared coefficient of variation of a length (0 where it does not spread)."""
    return np.where(mean > 0.0, (std / np.maximum(mean, 1e-30)) ** 2, 0.0)


def single_percentiles(mean: np.ndarray, variance: np.ndarray, shift: np.ndarray) -> dict[str, np.ndarray]:
    """``shift`` plus the gamma law of the random part's mean and variance, at p90 and p99."""
    return {key: shift + gamma_quantile(mean, variance, z) for key, _, z in TTFT_PERCENTILES}


def mixture_quantile(
    q: float,
    gammas: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    burst: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The ``q`` quantile of a mixture of gamma laws (weight, mean, variance; the weights and the
    burst's summing to 1) and a closed loop's first burst (weight, low, linear, quadratic: the time
    ``low + linear u + quadratic u^2`` of the request a share u into it, u uniform on [0, 1],
    increasing), by bisection on the mixture's distribution function (monotone). The laws' own
    ``q`` quantiles bracket it (at the largest every law's distribution function is at least q,
    so the mixture's is; at the smallest each is below), and a law of weight 0 is left out."""
    z = NormalDist().inv_cdf(q)
    lo, hi = np.full(len(gammas[0][1]), np.inf), np.full(len(gammas[0][1]), -np.inf)
    for weight, mean, variance in gammas:
        own = gamma_quantile(mean, variance, z)
        lo, hi = np.where(weight > 0.0, np.minimum(lo, own), lo), np.where(weight > 0.0, np.maximum(hi, own), hi)
    if burst is not None:
        own = burst[1] + burst[2] * q + burst[3] * q * q
        lo, hi = np.where(burst[0] > 0.0, np.minimum(lo, own), lo), np.where(burst[0] > 0.0, np.maximum(hi, own), hi)
    # (Wilson-Hilferty's quantile and distribution function are each other's inverse: the bracket
    # holds exactly; a hair of slack for rounding.)
    lo, hi = lo * (1.0 - 1e-9), hi * (1.0 + 1e-9)
    rows = np.flatnonzero(hi - lo > 1e-7 * np.maximum(np.abs(hi), 1e-30))
    if len(rows) == 0:
        return hi
    out = hi
    gammas = [tuple(np.broadcast_to(a, out.shape)[rows] for a in law) for law in gammas]  # type: ignore[misc]
    if burst is not None:
        burst = tuple(np.broadcast_to(b, out.shape)[rows] for b in burst)  # type: ignore[assignment]
    # Bisection on the cube root of the time, where Wilson-Hilferty's laws are normal (no cube
    # root a round), each law's constants computed once (:class:`_GammaCdf`): the rounds were most
    # of an open loop's percentile cost (bench/bench_serving.py).
    lo, hi = np.cbrt(lo[rows]), np.cbrt(hi[rows])
    laws = [_GammaCdf(weight, mean, variance) for weight, mean, variance in gammas]
    for _ in range(_BISECTION_ROUNDS):
        mid = 0.5 * (lo + hi)
        cdf = np.zeros_like(mid)
        for law in laws:
            cdf += law.weighted_at_root(mid)
        if burst is not None:
            cdf = cdf + burst[0] * _burst_cdf(mid**3, *burst[1:])
        below = cdf < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    out = out.copy()
    out[rows] = hi**3
    return out


def _burst_cdf(x: np.ndarray, low: np.ndarray, linear: np.ndarray, quadratic: np.ndarray) -> np.ndarray:
    """The share u of the burst whose time ``low + linear u + quadratic u^2`` is at most ``x``
    (the quadratic's root in [0, 1]; a step at ``low`` where the burst takes no time)."""
    gap = x - low
    flat = np.abs(quadratic) <= 1e-12 * np.maximum(np.abs(linear), 1e-30)
    disc = np.maximum(linear**2 + 4.0 * quadratic * gap, 0.0)
    root = np.where(
        flat,
        gap / np.maximum(linear, 1e-30),
        (-linear + np.sqrt(disc)) / (2.0 * np.where(flat, 1.0, quadratic)),
    )
    u = np.where(linear + quadratic > 0.0, np.clip(root, 0.0, 1.0), 1.0)
    return np.where(gap >= 0.0, u, 0.0)
