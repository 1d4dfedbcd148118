"""mixture_quantile finds the bisection's answer from an estimate of the root, checked at the two
ends the bisection's rounds arrive at (cost_models/ttft_percentiles.py, _bisection_by_estimate):
its outputs must stay those of the 14-round bisection it replaced, to the bit. The reference below
is that bisection as it stood at 311eaa3 (main before this change), frozen here."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest
from scipy.special import ndtr

import cost_models.ttft_percentiles as tp


def _reference_gamma_quantile(mean: np.ndarray, variance: np.ndarray, z: float) -> np.ndarray:
    shape = mean**2 / np.maximum(variance, 1e-30)
    ninth = 1.0 / (9.0 * np.maximum(shape, 1e-30))
    root = np.maximum(1.0 - ninth + z * np.sqrt(ninth), 0.0)
    return np.where(variance > 0.0, mean * root**3, mean)


def _reference_burst_cdf(x, low, linear, quadratic):
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


def _reference_mixture_quantile(q, gammas, burst=None):
    """main's mixture_quantile at 311eaa3: 14 rounds of bisection on the cube root."""
    z = NormalDist().inv_cdf(q)
    lo, hi = np.full(len(gammas[0][1]), np.inf), np.full(len(gammas[0][1]), -np.inf)
    for weight, mean, variance in gammas:
        own = _reference_gamma_quantile(mean, variance, z)
        lo, hi = np.where(weight > 0.0, np.minimum(lo, own), lo), np.where(weight > 0.0, np.maximum(hi, own), hi)
    if burst is not None:
        own = burst[1] + burst[2] * q + burst[3] * q * q
        lo, hi = np.where(burst[0] > 0.0, np.minimum(lo, own), lo), np.where(burst[0] > 0.0, np.maximum(hi, own), hi)
    lo, hi = lo * (1.0 - 1e-9), hi * (1.0 + 1e-9)
    rows = np.flatnonzero(hi - lo > 1e-7 * np.maximum(np.abs(hi), 1e-30))
    if len(rows) == 0:
        return hi
    out = hi
    gammas = [tuple(np.broadcast_to(a, out.shape)[rows] for a in law) for law in gammas]
    if burst is not None:
        burst = tuple(np.broadcast_to(b, out.shape)[rows] for b in burst)
    lo, hi = np.cbrt(lo[rows]), np.cbrt(hi[rows])
    laws = []
    for weight, mean, variance in gammas:
        shape = mean**2 / np.maximum(variance, 1e-30)
        ninth = 1.0 / (9.0 * np.maximum(shape, 1e-30))
        laws.append(
            (
                weight,
                np.cbrt(mean),
                1.0 / np.cbrt(np.maximum(mean, 1e-30)),
                1.0 - ninth,
                1.0 / np.sqrt(ninth),
                variance > 0.0,
            )
        )
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        cdf = np.zeros_like(mid)
        for weight, root_mean, inverse_root_mean, centre, inverse_sd, spreads in laws:
            p = ndtr((mid * inverse_root_mean - centre) * inverse_sd)
            if not bool(spreads.all()):
                p = np.where(spreads, p, (mid >= root_mean).astype(np.float64))
            cdf += weight * p
        if burst is not None:
            cdf = cdf + burst[0] * _reference_burst_cdf(mid**3, *burst[1:])
        below = cdf < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    out = out.copy()
    out[rows] = hi**3
    return out


def _open_draw(n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """An open loop's two laws (mixed and decode-only iterations landed in), weights 0.5%-100%."""
    mixed = rng.uniform(0.0, 1.0, n) ** 3
    laws = []
    for weight in (mixed, 1.0 - mixed):
        mean = np.exp(rng.uniform(np.log(1e-3), np.log(30.0), n))
        laws.append((weight, mean, mean**2 * np.exp(rng.uniform(np.log(1e-3), np.log(3.0), n))))
    return laws


def _closed_draw(n: int, rng: np.random.Generator):
    """A closed loop's steady law and first burst: a share of exactly 0.1 (10 requests a client,
    every client running: the steady law's weight 0.9, p90's float artefact) in half the rows,
    steady laws of variance 0 and bursts of no spread (a step) in a third and a fifth of them."""
    share = np.where(rng.uniform(size=n) < 0.5, 0.1, rng.uniform(1e-3, 0.3, n))
    steady = np.exp(rng.uniform(np.log(1e-2), np.log(3.0), n))
    variance = np.where(rng.uniform(size=n) < 0.33, 0.0, steady**2 * np.exp(rng.uniform(np.log(1e-3), np.log(1.0), n)))
    low = steady * np.exp(rng.uniform(np.log(0.3), np.log(30.0), n))
    linear = np.where(rng.uniform(size=n) < 0.2, 0.0, low * rng.uniform(0.0, 20.0, n))
    quadratic = np.where(linear > 0.0, linear * rng.uniform(-0.3, 0.5, n) * (rng.uniform(size=n) < 0.5), 0.0)
    return [(1.0 - share, steady, variance)], (share, low, linear, quadratic)


@pytest.mark.parametrize("q", [0.9, 0.99, 0.5, 0.01])
def test_mixture_quantile_is_the_bisection_to_the_bit(q: float) -> None:
    rng = np.random.default_rng(20261205)
    laws = _open_draw(20_000, rng)
    assert np.array_equal(tp.mixture_quantile(q, laws), _reference_mixture_quantile(q, laws))
    laws, burst = _closed_draw(20_000, rng)
    assert np.array_equal(tp.mixture_quantile(q, laws, burst), _reference_mixture_quantile(q, laws, burst))


def test_mixture_quantiles_is_mixture_quantile_at_each() -> None:
    laws, burst = _closed_draw(5_000, np.random.default_rng(3))
    p90, p99 = tp.mixture_quantiles((0.9, 0.99), laws, burst)
    assert np.array_equal(p90, _reference_mixture_quantile(0.9, laws, burst))
    assert np.array_equal(p99, _reference_mixture_quantile(0.99, laws, burst))


def test_few_rows_fall_back_to_the_bisection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate settles the bisection for all but a few rows (its speed: each row that fails
    the check costs the 14 rounds again): under 10% of each draw at p90 and p99."""
    bisected = []
    bisection = tp._bisection

    def counted(q, lo, *args):
        bisected.append(len(lo))
        return bisection(q, lo, *args)

    monkeypatch.setattr(tp, "_bisection", counted)
    rng = np.random.default_rng(11)
    for q in (0.9, 0.99):
        for laws, burst in ((_open_draw(20_000, rng), None), _closed_draw(20_000, rng)):
            bisected.clear()
            tp.mixture_quantile(q, laws, burst)
            assert sum(bisected) < 2_000, (q, burst is None, sum(bisected))
