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
the mixture is found by bisection on its distribution function (14 rounds on the cube root of
the time; their answer reproduced from an estimate of the root and checked at the two ends the
rounds arrive at, :func:`_bisection_by_estimate`). Where the steady requests and the burst meet
between the two order statistics ``tuner simulate``'s percentile interpolates (numpy's 'linear'
over the run's requests), the percentile is that interpolation of the two, each the mixture's
quantile at its plotting position (:func:`closed_loop_quantiles`): at 10 requests a client the
p90 was otherwise a float artefact of the steady weight being exactly 0.9.
"""

from __future__ import annotations

from functools import cached_property
from statistics import NormalDist

import numpy as np


# scipy.special is imported on first use, not with this module: importing it (and the numpy.f2py,
# numpy.ma and numpy.testing its array-API layer pulls in) took ~0.35 s of every tuner command,
# including the reads that never price a percentile (bench/bench_reads.py: a TPE resume of a
# 200,000-trial study spent ~1.5 s of its ~2.5 s importing). After the first call each is a
# dictionary lookup.
def ndtr(x):
    """scipy.special.ndtr, imported on first use."""
    from scipy.special import ndtr as scipy_ndtr

    return scipy_ndtr(x)


def ndtri(p):
    """scipy.special.ndtri, imported on first use."""
    from scipy.special import ndtri as scipy_ndtri

    return scipy_ndtri(p)


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


def _ninth(mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """1 / (9 k), k the gamma law's shape (:func:`gamma_quantile`'s arithmetic)."""
    shape = mean**2 / np.maximum(variance, 1e-30)
    return 1.0 / (9.0 * np.maximum(shape, 1e-30))


class _GammaCdf:
    """``weight`` x P(X <= x) for the gamma law of :func:`gamma_quantile` (the same approximation,
    inverted: (x / mean)^(1/3) normal), at many points given by their cube roots, the law's
    constants computed once; a step at the mean where the variance is 0."""

    def __init__(
        self, weight: np.ndarray, mean: np.ndarray, variance: np.ndarray, ninth: np.ndarray | None = None
    ) -> None:
        if ninth is None:
            ninth = _ninth(mean, variance)
        self.weight, self.root_mean = weight, np.cbrt(mean)
        # 1 / cbrt(max(mean, 1e-30)), the cube root taken once (the same bits, NaN included)
        self.inverse_root_mean = 1.0 / np.where(mean < 1e-30, np.cbrt(1e-30), self.root_mean)
        self.centre, self.inverse_sd = 1.0 - ninth, 1.0 / np.sqrt(ninth)
        self.spreads = variance > 0.0
        self.every_spreads = bool(self.spreads.all())

    @cached_property
    def sd(self) -> np.ndarray:
        """The normal law's standard deviation in (x / mean)^(1/3)."""
        return 1.0 / self.inverse_sd

    @cached_property
    def root_scale(self) -> np.ndarray:
        """mean^(1/3) (a floor of 1e-10 s where the mean is 0)."""
        return 1.0 / self.inverse_root_mean

    @cached_property
    def density_scale(self) -> np.ndarray:
        """weight x the normal density's constant in the cube root of the time."""
        return self.weight * self.inverse_root_mean * self.inverse_sd * _INV_SQRT_2PI

    def quantile_root(self, level: np.ndarray) -> np.ndarray:
        """The cube root of the law's quantile at ``level`` (-inf at 0, inf at 1, NaN outside)."""
        return self.root_scale * (self.centre + ndtri(level) * self.sd)

    def take(self, rows: np.ndarray) -> _GammaCdf:
        """The same laws at ``rows`` only."""
        law = object.__new__(_GammaCdf)
        for name in ("weight", "root_mean", "inverse_root_mean", "centre", "inverse_sd", "spreads"):
            setattr(law, name, getattr(self, name)[rows])
        law.every_spreads = bool(law.spreads.all())
        return law

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
    so the mixture's is; at the smallest each is below), and a law of weight 0 is left out.

    The bisection's answer is found without evaluating its rounds' distribution functions
    (:func:`_bisection_by_estimate`): the same bits, in 0.5x (closed loops) to 0.8x the time."""
    return mixture_quantiles((q,), gammas, burst)[0]


def mixture_quantiles(
    qs: tuple[float, ...],
    gammas: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    burst: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """:func:`mixture_quantile` at each of ``qs``, the laws' constants computed once (p90 and p99
    of the same laws: 7-14 ms of a 100,000-row call, bench_serving)."""
    n = len(gammas[0][1])
    gammas = [tuple(np.broadcast_to(a, (n,)) for a in law) for law in gammas]  # type: ignore[misc]
    if burst is not None:
        burst = tuple(np.broadcast_to(b, (n,)) for b in burst)  # type: ignore[assignment]
    # gamma_quantile's arithmetic, its law constants computed once for every q and _GammaCdf
    ninths = [_ninth(mean, variance) for _, mean, variance in gammas]
    root_ninths = [np.sqrt(ninth) for ninth in ninths]
    brackets = []
    for q in qs:
        z = NormalDist().inv_cdf(q)
        lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
        for (weight, mean, variance), ninth, root_ninth in zip(gammas, ninths, root_ninths, strict=True):
            root = np.maximum(1.0 - ninth + z * root_ninth, 0.0)
            own = np.where(variance > 0.0, mean * root**3, mean)
            lo, hi = np.where(weight > 0.0, np.minimum(lo, own), lo), np.where(weight > 0.0, np.maximum(hi, own), hi)
        if burst is not None:
            own = burst[1] + burst[2] * q + burst[3] * q * q
            lo = np.where(burst[0] > 0.0, np.minimum(lo, own), lo)
            hi = np.where(burst[0] > 0.0, np.maximum(hi, own), hi)
        # (Wilson-Hilferty's quantile and distribution function are each other's inverse: the
        # bracket holds exactly; a hair of slack for rounding.)
        lo, hi = lo * (1.0 - 1e-9), hi * (1.0 + 1e-9)
        brackets.append((lo, hi, hi - lo > 1e-7 * np.maximum(np.abs(hi), 1e-30)))
    wide = np.logical_or.reduce([bracket[2] for bracket in brackets])
    union = np.flatnonzero(wide)
    # Bisection on the cube root of the time, where Wilson-Hilferty's laws are normal (no cube
    # root a round), each law's constants computed once (:class:`_GammaCdf`), for every q.
    all_laws = [
        _GammaCdf(weight[union], mean[union], variance[union], ninth[union])
        for (weight, mean, variance), ninth in zip(gammas, ninths, strict=True)
    ]
    all_burst = None if burst is None else tuple(b[union] for b in burst)
    out = []
    for q, (lo, hi, wide_q) in zip(qs, brackets, strict=True):
        rows = np.flatnonzero(wide_q)
        if len(rows) == 0:
            out.append(hi)
            continue
        laws, part = all_laws, all_burst
        if len(rows) < len(union):
            at = np.flatnonzero(wide_q[union])
            laws = [law.take(at) for law in all_laws]
            part = None if all_burst is None else tuple(b[at] for b in all_burst)
        quantile = hi.copy()
        quantile[rows] = _bisection_by_estimate(q, np.cbrt(lo[rows]), np.cbrt(hi[rows]), laws, part) ** 3  # type: ignore[arg-type]
        out.append(quantile)
    return out


def closed_loop_quantiles(
    qs: tuple[float, ...],
    requests: np.ndarray,
    law: tuple[np.ndarray, np.ndarray, np.ndarray],
    burst: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> list[np.ndarray]:
    """A closed loop's percentiles of its steady law (weight w) beside its first burst (share
    s = 1 - w) over a run of ``requests`` requests, as ``tuner simulate`` takes them
    (:func:`cost_models.serving_simulation._stats`: numpy's default 'linear' percentile, at
    h = (N - 1) q between the order statistics i = floor(h) and i + 1, a share h - i of the way).

    Where the steady requests and the burst's meet between those two order statistics (a part's
    weight, w or s, between their levels) the quantile of the mixture is ill-conditioned: at 10
    requests a client w is exactly 0.9, the steady law's tail then sits under the burst with
    nothing between, and :func:`mixture_quantiles`' p90 was wherever 0.9 x ndtr rounded to 0.9
    (8 standard deviations up: 104.9 ms for Llama-3-8B on one H100 under vLLM, 8 clients, where
    the simulation reads 77.7 ms), the burst's start at w = 0.9 - 1e-9 and 6 standard deviations
    up at 0.9 + 1e-9. There the percentile is the simulation's interpolation between the two
    order statistics, each the mixture's quantile at its Hazen plotting position (i + 1/2) / N
    (the steady part's largest request and the burst's first, :func:`_quantiles_at_levels`):
    continuous in w, since the levels stay 1 / (2N) from it. Elsewhere the mixture's quantile
    (unchanged: the order statistics' interpolation differs from it by O(1/N) in level)."""
    n = len(requests)
    law = tuple(np.broadcast_to(a, (n,)) for a in law)  # type: ignore[assignment]
    burst = tuple(np.broadcast_to(b, (n,)) for b in burst)  # type: ignore[assignment]
    weight, share = law[0], burst[0]
    every = requests >= 2.0
    every &= (share > 0.0) & (weight > 0.0)
    rules, elsewhere = [], []
    for q in qs:
        h = (requests - 1.0) * q
        below = np.floor(h + 1e-9)
        low_level, high_level = (below + 0.5) / np.maximum(requests, 1.0), (below + 1.5) / np.maximum(requests, 1.0)
        meet = (low_level < weight) & (weight < high_level) | (low_level < share) & (share < high_level)
        rows = np.flatnonzero(meet & every)
        rules.append((rows, low_level, high_level, np.clip(h - below, 0.0, 1.0)))
        elsewhere.append(np.flatnonzero(~(meet & every)))
    out = []
    if all(len(rows) == n for rows in elsewhere):
        out = mixture_quantiles(qs, [law], burst)  # the laws' constants once for every q
    else:
        # Only the rows the rule leaves (most of bench_serving's closed loops take the rule at p90)
        for q, rows in zip(qs, elsewhere, strict=True):
            quantile = np.empty(n)
            if len(rows):
                sub_law = tuple(a[rows] for a in law)
                sub_burst = tuple(b[rows] for b in burst)
                quantile[rows] = mixture_quantiles((q,), [sub_law], sub_burst)[0]  # type: ignore[list-item,arg-type]
            out.append(quantile)
    for quantile, (rows, low_level, high_level, fraction) in zip(out, rules, strict=True):
        if len(rows) == 0:
            continue
        sub_law = tuple(a[rows] for a in law)
        sub_burst = tuple(b[rows] for b in burst)
        low_x = _quantiles_at_levels(low_level[rows], sub_law, sub_burst)  # type: ignore[arg-type]
        high_x = _quantiles_at_levels(high_level[rows], sub_law, sub_burst)  # type: ignore[arg-type]
        quantile[rows] = low_x + fraction[rows] * (high_x - low_x)
    return out


#: Bisection rounds of :func:`_quantiles_at_levels` where the parts overlap: the bracket in the
#: burst's share u shrinks by 2^-14 (6e-5 of it, as :data:`_BISECTION_ROUNDS`).
_LEVEL_ROUNDS = _BISECTION_ROUNDS
#: Bracketing steps of :func:`_quantiles_at_levels` before the bisection (1: 2-4% less time than
#: none on bench_serving's closed loops; 2-4 no faster, the bisection's rows alike).
_LEVEL_STEPS = 1
#: The share of the burst within which a bracket stops there.
_LEVEL_TOLERANCE = 1e-6


def _quantiles_at_levels(
    level: np.ndarray,
    law: tuple[np.ndarray, np.ndarray, np.ndarray],
    burst: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """The quantile at ``level`` (one a row) of the steady law (weight w, mean, variance;
    distribution function F_s) beside the burst (share s, low, linear, quadratic; the time
    b(u) = low + linear u + quadratic u^2 a share u into it), F = w F_s + s F_b.

    Below w: the steady law alone, its quantile x_s at level / w, where that is under the
    burst's start (F_b 0 there). From w on: the burst at u0 = (level - w) / s, where the steady
    weight w (1 - F_s) left above b(u0) is under 1e-6 of s (F there short of the level by that).
    Where the parts overlap, a share u of the burst with w F_s(b(u)) + s u = level, by bisection
    in u (F rises with u): below w between 0 and F_b(x_s), from w on between u0 and u0 + w (1 -
    F_s(b(u0))) / s (that weight added back: F at least the level); past the burst's end (F at
    its end below the level) the steady law's quantile at (level - s) / w."""
    weight, mean, variance = law
    share, low, linear, quadratic = burst
    steady = _GammaCdf(weight, mean, variance)
    n = len(level)
    low_side = level < weight
    answer, u_lo, u_hi = np.empty(n), np.zeros(n), np.zeros(n)
    solved = np.ones(n, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = np.flatnonzero(low_side)
        alone = gamma_quantile(mean[rows], variance[rows], ndtri(level[rows] / weight[rows]))
        answer[rows] = alone
        overlap = alone > low[rows]
        solved[rows] = ~overlap
        u_hi[rows] = np.where(overlap, _burst_cdf(alone, low[rows], linear[rows], quadratic[rows]), 0.0)
        rows = np.flatnonzero(~low_side)
        w, s = weight[rows], share[rows]
        u0 = np.clip((level[rows] - w) / s, 0.0, 1.0)
        answer[rows] = low[rows] + linear[rows] * u0 + quadratic[rows] * u0 * u0
        left_above = w - steady.take(rows).weighted_at_root(np.cbrt(answer[rows]))
        solved[rows] = left_above <= 1e-6 * s
        u_lo[rows], u_hi[rows] = u0, np.minimum(u0 + np.maximum(left_above, 0.0) / s, 1.0)
    rows = np.flatnonzero(~solved)
    if len(rows) == 0:
        return answer
    sub = steady.take(rows)
    w, s, start, lin, quad, at = weight[rows], share[rows], low[rows], linear[rows], quadratic[rows], level[rows]

    def share_for(u: np.ndarray) -> np.ndarray:
        """g(u) = (level - w F_s(b(u))) / s: the burst's share F = level needs beside the steady
        requests under b(u); decreasing in u, g(u*) = u* at the answer, so g of an upper bound is
        a lower bound and g of a lower one an upper one."""
        return (at - sub.weighted_at_root(np.cbrt(start + lin * u + quad * u * u))) / s

    lo, hi = u_lo[rows], u_hi[rows]
    past = share_for(np.ones(len(rows))) > 1.0  # F at the burst's end below the level
    # Each step narrows [lo, hi] by g, geometrically where the steady law's density under the burst
    # is below the burst's own (|g'| < 1: the steady tail past the burst's start, the usual case);
    # the rows still wide after it are bisected.
    for _ in range(_LEVEL_STEPS):
        # (each kept inside the bracket: a step law's F_s is 0 or 1 at b(u) rounded either side)
        lo, hi = np.maximum(lo, np.minimum(share_for(hi), hi)), np.minimum(hi, np.maximum(share_for(lo), lo))
    wide = np.flatnonzero(hi - lo > _LEVEL_TOLERANCE)
    if len(wide):
        sub, at_w, s_w = sub.take(wide), at[wide], s[wide]
        lo_w, hi_w, start_w, lin_w, quad_w = lo[wide], hi[wide], start[wide], lin[wide], quad[wide]
        for _ in range(_LEVEL_ROUNDS):
            mid = 0.5 * (lo_w + hi_w)
            below = sub.weighted_at_root(np.cbrt(start_w + lin_w * mid + quad_w * mid * mid)) + s_w * mid < at_w
            lo_w, hi_w = np.where(below, mid, lo_w), np.where(below, hi_w, mid)
        lo[wide], hi[wide] = lo_w, hi_w
    u = np.clip(0.5 * (lo + hi), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        beyond = gamma_quantile(mean[rows], variance[rows], ndtri(np.clip((at - s) / w, 0.0, 1.0)))
    answer[rows] = np.where(past, beyond, start + lin * u + quad * u * u)
    return answer


def _mixture_cdf(
    root: np.ndarray, laws: list[_GammaCdf], burst: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """The mixture's distribution function at the times ``root``^3, as the bisection evaluates it
    (the same operations in the same order: its decisions are reproduced to the bit)."""
    cdf = np.zeros_like(root)
    for law in laws:
        cdf += law.weighted_at_root(root)
    if burst is not None:
        cdf = cdf + burst[0] * _burst_cdf(root**3, *burst[1:])
    return cdf


def _bisection(
    q: float,
    lo: np.ndarray,
    hi: np.ndarray,
    laws: list[_GammaCdf],
    burst: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """:data:`_BISECTION_ROUNDS` rounds of bisection on the cube roots [``lo``, ``hi``]: the upper
    end (cubed by the caller)."""
    for _ in range(_BISECTION_ROUNDS):
        mid = 0.5 * (lo + hi)
        below = _mixture_cdf(mid, laws, burst) < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return hi


def _bisection_by_estimate(
    q: float,
    lo: np.ndarray,
    hi: np.ndarray,
    laws: list[_GammaCdf],
    burst: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """:func:`_bisection`'s answer, bit for bit, from an estimate of the root: the rounds are run
    with "mid below the estimate" for "the distribution function at mid below q" (the same mids,
    the same arithmetic), and the two ends they arrive at are checked with the bisection's own
    distribution function (:func:`_mixture_cdf`): the lower end below q, the upper at least q.
    The function is non-decreasing (each operation of it is, rounded), so every mid the rounds
    put below the lower end is below q and every one above the upper end at least q: the
    bisection would have taken the same decisions (where ndtr is monotone to the last bit: the
    guard's 10.75 M values and tests/cost_models/test_ttft_percentiles_by_estimate.py agree).
    Rows that fail the check (an estimate in another of the last round's cells) are bisected:
    of bench_serving's 100,000 rows, 4.4% / 0.02% of the closed loops at p90 / p99 and 6.5% /
    12% of the open loops. The bisection's rounds were 14 evaluations of the distribution
    function a row (ndtr, and the burst's root with a pow); the estimate (:func:`_root_estimate`),
    the simulated rounds and the check cost 0.48-0.53x that time in a closed loop, 0.75-0.79x in
    an open one (bench_serving's draws on the 2-core EPYC VM, pinned)."""
    estimate = _root_estimate(q, lo, hi, laws, burst)
    low_end, high_end = _rounds_towards(lo, hi, estimate)
    holds = (_mixture_cdf(low_end, laws, burst) < q) & (_mixture_cdf(high_end, laws, burst) >= q)
    redo = np.flatnonzero(~holds)
    if len(redo):
        high_end[redo] = _bisection(
            q,
            lo[redo],
            hi[redo],
            [law.take(redo) for law in laws],
            None if burst is None else tuple(b[redo] for b in burst),  # type: ignore[arg-type]
        )
    return high_end


def _rounds_towards(lo: np.ndarray, hi: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ends :func:`_bisection`'s rounds arrive at where "mid below ``estimate``" decides each
    (the same mids: 0.5 (lo + hi) each round). Each end takes mid or keeps its value by a blend
    with the decision as 1.0 / 0.0, exact for finite ends (x 1 and x 0 exact, + 0 exact): 2.4x
    faster than two np.where a round (6.1 against 14.9 ms for 84,000 rows, 14 rounds, the EPYC VM)."""
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        for _ in range(_BISECTION_ROUNDS):
            mid = 0.5 * (lo + hi)
            below = mid < estimate
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return lo, hi
    lo, hi = lo.copy(), hi.copy()
    mid, takes, keeps, term = np.empty(len(lo)), np.empty(len(lo)), np.empty(len(lo)), np.empty(len(lo))
    for _ in range(_BISECTION_ROUNDS):
        np.add(lo, hi, out=mid)
        mid *= 0.5
        np.less(mid, estimate, out=takes, casting="unsafe")  # 1.0 where the mid is below
        np.subtract(1.0, takes, out=keeps)
        np.multiply(lo, keeps, out=lo)  # lo = mid x below + lo x (1 - below)
        np.multiply(mid, takes, out=term)
        lo += term
        np.multiply(hi, takes, out=hi)  # hi = hi x below + mid x (1 - below)
        np.multiply(mid, keeps, out=term)
        hi += term
    return lo, hi


#: Newton steps of :func:`_newton_root` (each an ndtr and an exp a law): after 1 / 2 / 3 / 4 of
#: them 93% / 6.5% / 0% / 0% of bench_serving's open loops at p90 fail the check and are bisected,
#: 38% / 12% / 2.1% / 0.01% at p99; the open loop's percentiles take 1.1-1.5 / 0.75-0.79 /
#: 0.79-0.82 / 0.87-0.90x main's time (the EPYC VM, pinned).
_NEWTON_STEPS = 2
#: Newton steps where a closed loop's law and burst both spread (41% of bench_serving's closed
#: loops): after 3 / 4 / 5 / 6 of them 20% / 11% / 3% / 0.1% of those rows fail the check at p90
#: (near the burst's start: its mass left above, the log-tail converges linearly), 0.3% / 0.06% /
#: 0.02% / 0% at p99; the closed loop's percentiles take the same time at 3 to 5 (0.48-0.53x main's).
_BOTH_SPREAD_STEPS = 4
_INV_SQRT_2PI = 0.3989422804014327
#: ndtr(t) within this many ulps of 1 (t > 7.9): the stretch where a law's weight x ndtr rounds.
_FLAT_ULPS = 16
_Burst = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _root_estimate(q: float, lo: np.ndarray, hi: np.ndarray, laws: list[_GammaCdf], burst: _Burst | None) -> np.ndarray:
    """The cube root of the mixture's ``q`` quantile, approximately (:func:`_bisection_by_estimate`
    checks it): a closed loop's one law beside its burst in closed form where either is a step
    (:func:`_law_and_burst_root`), Newton steps elsewhere (:func:`_newton_root`)."""
    if len(laws) == 1 and burst is not None:
        return _law_and_burst_root(q, lo, hi, laws[0], burst)
    return _newton_root(q, lo, hi, laws, burst)


def _newton_root(
    q: float, lo: np.ndarray, hi: np.ndarray, laws: list[_GammaCdf], burst: _Burst | None, steps: int = _NEWTON_STEPS
) -> np.ndarray:
    """Safeguarded Newton steps on log(1 - F) - log(1 - q) (a normal law's upper tail is
    log-concave: near-linear where the quantile lies) from the largest of the parts' own lower
    bounds, each part's quantile at 1 - (1 - q) / its weight (there that part alone leaves 1 - q
    above: the mixture's F is at most q). A quantile at a step (a law of variance 0) is that bound
    itself: F there at least q, the bracket closes on it."""
    tail_q = 1.0 - q
    start = lo
    for law in laws:
        level = 1.0 - tail_q / np.maximum(law.weight, 1e-300)
        with np.errstate(invalid="ignore"):
            bound = np.where(law.spreads, law.quantile_root(level), law.root_mean)
        start = np.where(level > 0.0, np.maximum(start, bound), start)
    if burst is not None:
        share, low, linear, quadratic = burst
        level = 1.0 - tail_q / np.maximum(share, 1e-300)
        start = np.where(level > 0.0, np.maximum(start, _burst_root(burst, level)), start)
    root = np.minimum(start, hi)
    lower, upper = root, hi
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(steps):
            cdf, density = _cdf_and_density(root, laws, burst)
            below = cdf < q
            lower, upper = np.where(below, root, lower), np.where(below, upper, root)
            tail = 1.0 - cdf
            step = root + (np.log(tail) - np.log(tail_q)) * tail / density
            inside = (step >= lower) & (step <= upper)
            root = np.where(inside, step, 0.5 * (lower + upper))
    return root


def _burst_root(burst: _Burst, u: np.ndarray) -> np.ndarray:
    """The cube root of the burst's time a share ``u`` (in [0, 1]) into it."""
    _, low, linear, quadratic = burst
    return np.cbrt(low + linear * u + quadratic * u * u)


def _law_and_burst_root(q: float, lo: np.ndarray, hi: np.ndarray, law: _GammaCdf, burst: _Burst) -> np.ndarray:
    """A closed loop's steady law (weight w) beside its first burst (share s = 1 - w): where either
    is a step (a law of variance 0 at its mean m; a burst of no spread at its time j, 59% of
    bench_serving's closed loops) the quantile is the other's at the level left to it below or
    above the step, or the step itself; where both spread, Newton steps (:func:`_newton_root`,
    on those rows only). And the float artefact of :func:`_saturated_root`."""
    spreads = law.spreads
    step_burst = burst[2] + burst[3] <= 0.0
    root = np.empty(len(lo))
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = np.flatnonzero(~spreads)
        if len(rows):
            # A step law at m: the burst alone below m, or past m with w counted, or m.
            share, low, linear, quadratic = (b[rows] for b in burst)
            weight, m = law.weight[rows], law.root_mean[rows]
            sub = (share, low, linear, quadratic)
            alone = q / share
            burst_alone = _burst_root(sub, np.minimum(alone, 1.0))
            past = _burst_root(sub, np.clip((q - weight) / share, 0.0, 1.0))
            root[rows] = np.where(
                (alone <= 1.0) & (burst_alone < m), burst_alone, np.where(q - weight <= 0.0, m, np.maximum(m, past))
            )
        rows = np.flatnonzero(spreads & step_burst)
        if len(rows):
            # A burst of no spread at j: the law alone below j, or past j with s counted, or j.
            sub_law, share, weight = law.take(rows), burst[0][rows], law.weight[rows]
            jump = np.cbrt(burst[1][rows])
            law_alone = sub_law.quantile_root(q / weight)
            law_past = sub_law.quantile_root((q - share) / weight)
            root[rows] = np.where(
                (q < weight) & (law_alone < jump),
                law_alone,
                np.where(q - share <= 0.0, jump, np.maximum(jump, law_past)),
            )
    rows = np.flatnonzero(spreads & ~step_burst)
    if len(rows):
        share, low, linear, quadratic = (b[rows] for b in burst)
        root[rows] = _newton_root(
            q, lo[rows], hi[rows], [law.take(rows)], (share, low, linear, quadratic), _BOTH_SPREAD_STEPS
        )
    return _saturated_root(q, lo, hi, law, burst, root)


def _saturated_root(
    q: float, lo: np.ndarray, hi: np.ndarray, law: _GammaCdf, burst: _Burst, root: np.ndarray
) -> np.ndarray:
    """A closed loop's steady requests weigh 1 - 0.1 = 0.9 at 10 requests a client: at p90 with
    the burst above them (p99: below, its 0.1 added) the mixture's F stays under q until the
    steady law's ndtr rounds to 1 and its weight x ndtr (+ the burst's share) reaches q, 7.9-8.3
    standard deviations up: the bisection's percentile there is a float artefact (kept, bit for
    bit; mathematically it is the burst's start). ndtr(t) takes the values 1 - k 2^-53 there
    (0.09 standard deviations apart), 1 - k 2^-53 from the upper tail under (k + 1/2) 2^-53 on:
    the largest k whose weighted value still reaches q, t = -ndtri((k + 1/2) 2^-53). (Without
    this, 10-35% of bench_serving's closed loops at p90 fell back to the bisection.)"""
    ulp = 2.0**-53
    for rest_share, side in ((0.0, 1.0), (1.0, -1.0)):
        rest = rest_share * burst[0]
        # rows where w x ndtr + rest reaches q only within _FLAT_ULPS of ndtr = 1
        rows = np.flatnonzero(
            law.spreads & (law.weight + rest >= q) & ((1.0 - _FLAT_ULPS * ulp) * law.weight + rest < q)
        )
        if len(rows) == 0:
            continue
        weight, rest = law.weight[rows], rest[rows]
        share, low, linear, quadratic = (b[rows] for b in burst)
        # the largest k with (1 - k ulp) w + rest >= q, from its real-valued solution +- 2
        guess = np.floor((weight + rest - q) / (weight * ulp))
        ulps = np.zeros(len(rows))
        for offset in (-2.0, -1.0, 0.0, 1.0):
            k = np.clip(guess + offset, 0.0, _FLAT_ULPS)
            ulps = np.where((1.0 - k * ulp) * weight + rest >= q, np.maximum(ulps, k), ulps)
        edge = law.root_scale[rows] * (law.centre[rows] - ndtri((ulps + 0.5) * ulp) * law.sd[rows])
        # the burst wholly above (below) the edge: its part 0 (its share) there
        cube = edge * edge * edge
        clear = low - cube > 0.0 if side > 0 else cube - (low + linear + quadratic) > 0.0
        use = clear & (edge >= lo[rows]) & (edge <= hi[rows])
        root[rows[use]] = edge[use]
    return root


def _cdf_and_density(
    root: np.ndarray, laws: list[_GammaCdf], burst: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    """The mixture's distribution function and its derivative in the cube root, at ``root``
    (for :func:`_root_estimate`: not the bisection's arithmetic)."""
    cdf, density = np.zeros_like(root), np.zeros_like(root)
    for law in laws:
        t = (root * law.inverse_root_mean - law.centre) * law.inverse_sd
        p, bell = ndtr(t), np.exp(-0.5 * t * t) * law.density_scale
        if not law.every_spreads:
            p = np.where(law.spreads, p, (root >= law.root_mean).astype(np.float64))
            bell = np.where(law.spreads, bell, 0.0)
        cdf += p * law.weight
        density += bell
    if burst is not None:
        share, low, linear, quadratic = burst
        cube = root * root * root
        u = _burst_cdf(cube, low, linear, quadratic)
        # (from its start on: Newton's start is often the burst's time itself)
        slope = np.where((cube >= low) & (u < 1.0), 3.0 * root * root / (linear + 2.0 * quadratic * u), 0.0)
        cdf += share * u
        density += share * slope
    return cdf, density


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
