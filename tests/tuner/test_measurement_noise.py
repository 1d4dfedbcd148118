"""The measurement noise floor (tuner/measurement_noise.py): pair agreement, triangulation, clipping,
bad input, and the shipped same-shape file. Expected values come from the construction of the data
or from plain numpy on it, never from the module under test."""

from __future__ import annotations

import csv
import gzip
import math
from collections import defaultdict

import numpy as np
import pytest

from cost_models.errors import InvalidInputError
from tuner.measurement_noise import (
    SAME_SHAPES_FILE,
    bootstrap_sigmas,
    engine_noise,
    implied_abs_error,
    implied_pooled_abs_error,
    pair_agreement,
    read_same_shapes,
    triangulate,
)


def _shapes(count: int, start: int = 1) -> list[tuple[int, int, int]]:
    return [(m, 4096, 1024) for m in range(start, start + count)]


def test_pair_agreement_on_a_hand_built_pair_uses_only_the_shared_shapes():
    """31 shared shapes, first / second = 2 x exp(x) with x = 0 (11 shapes), +0.1 and -0.1 (10
    each): the median ratio is 2, the median |log deviation| is 0.1 (the 16th of 31 sorted), and
    so is its p90. Shapes only one engine timed (absurd latencies) must not count."""
    shared = _shapes(31)
    x = [0.0] * 11 + [0.1] * 10 + [-0.1] * 10
    second = {s: 1.0 + i for i, s in enumerate(shared)}
    first = {s: 2.0 * second[s] * math.exp(xi) for s, xi in zip(shared, x, strict=True)}
    first.update({s: 1e6 for s in _shapes(50, start=1000)})
    second.update({s: 1e-6 for s in _shapes(50, start=5000)})
    got = pair_agreement(first, second, ("a", "b"))
    assert (got.first, got.second, got.shapes) == ("a", "b", 31)
    assert got.median_ratio == pytest.approx(2.0)
    assert got.sigma_mad == pytest.approx(1.4826 * 0.1)
    assert got.sigma_p90 == pytest.approx(0.1 / 1.6449)
    # |exp(x) - 1|: 11 zeros, 10 x (1 - e^-0.1), 10 x (e^0.1 - 1); numpy's p90 of 31 values is the 28th.
    assert got.median_dev == pytest.approx(1 - math.exp(-0.1))
    assert got.p90_dev == pytest.approx(math.exp(0.1) - 1)


def _synthetic(sigmas: dict[str, float], shapes: int, seed: int, offsets: dict[str, float] | None = None):
    """Every engine times the same shapes: true time x exp(offset) x exp(N(0, sigma^2)); each
    engine also times 200 shapes of its own, wildly off, which must be ignored."""
    rng = np.random.default_rng(seed)
    true = np.exp(rng.uniform(-5, 2, shapes))
    common = _shapes(shapes)
    data = {}
    for j, (engine, sigma) in enumerate(sorted(sigmas.items())):
        times = true * math.exp((offsets or {}).get(engine, 0.0)) * np.exp(rng.normal(0.0, sigma, shapes))
        rows = dict(zip(common, times.tolist(), strict=True))
        rows.update({s: 1e3 * (j + 1) for s in _shapes(200, start=10**6 * (j + 1))})
        data[engine] = rows
    return data


#: Asymptotic relative standard errors of a scale estimated from n normal values: 1.4826 x MAD,
#: sqrt(0.25 / (n (2 phi(0.6745))^2)) / 0.6745 = 1.166 / sqrt(n); p90 of |x| / 1.6449,
#: sqrt(0.09 / (n (2 phi(1.6449))^2)) / 1.6449 = 0.884 / sqrt(n) (the sample quantile's variance).
REL_SE = {"mad": 1.166, "p90": 0.884}


def _tolerance(sigmas: dict[str, float], engine: str, n: int, kind: str) -> float:
    """Four standard errors of the triangulated sigma, bounded from above: a pair variance v has a
    relative SE of 2 x the scale's; s[e] = (v[e, f] + v[e, g] - v[f, g]) / 2 has an SE of at most
    half the sum of the three (correlated or not); sigma = sqrt(s) moves by SE(s) / (2 sigma)."""
    rel = 2 * REL_SE[kind] / math.sqrt(n)
    names = sorted(sigmas)
    pair_var = [sigmas[a] ** 2 + sigmas[b] ** 2 for i, a in enumerate(names) for b in names[i + 1 :]]
    se_s = sum(rel * v for v in pair_var) / 2
    return 4 * se_s / (2 * sigmas[engine])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_triangulation_recovers_known_per_engine_noise(seed):
    sigmas = {"sglang": 0.08, "trtllm": 0.04, "vllm": 0.06}
    n = 20000
    data = _synthetic(sigmas, n, seed, offsets={"sglang": 0.05, "trtllm": 0.0, "vllm": -0.02})
    pairs, noise = engine_noise(data)
    assert [(p.first, p.second, p.shapes) for p in pairs] == [
        ("sglang", "trtllm", n),
        ("sglang", "vllm", n),
        ("trtllm", "vllm", n),
    ]
    # The constant offsets are the median ratios (within the noise of a median of n values).
    assert pairs[0].median_ratio == pytest.approx(math.exp(0.05), rel=0.01)
    assert pairs[2].median_ratio == pytest.approx(math.exp(0.02), rel=0.01)
    for engine_result in noise:
        truth = sigmas[engine_result.engine]
        for kind, got in (("mad", engine_result.sigma_mad), ("p90", engine_result.sigma_p90)):
            tol = _tolerance(sigmas, engine_result.engine, n, kind)
            assert tol < 0.25 * truth  # the test can tell 0.04 from 0.06 and 0.08
            assert got == pytest.approx(truth, abs=tol), (engine_result.engine, kind)
        assert not engine_result.clipped_mad and not engine_result.clipped_p90


def test_bootstrap_interval_covers_the_truth_and_is_seeded():
    sigmas = {"a": 0.05, "b": 0.03, "c": 0.07}
    data = _synthetic(sigmas, 3000, seed=7)
    first = bootstrap_sigmas(data, draws=60, seed=11)
    assert first == bootstrap_sigmas(data, draws=60, seed=11)
    for engine, truth in sigmas.items():
        low, high = first[engine]["mad"]
        assert low < high
        # A 90% interval of a consistent estimator; 4 standard errors around it for the sample.
        tol = _tolerance(sigmas, engine, 3000, "mad")
        assert low - tol <= truth <= high + tol


def test_anti_correlated_noise_gives_a_negative_variance_clipped_and_flagged():
    """a exact, b = T exp(+e), c = T exp(-e): var(a - b) = var(a - c) = s^2 and var(b - c) = 4 s^2,
    so s[a] = (s^2 + s^2 - 4 s^2) / 2 < 0: clipped to 0 and said; b and c get 2 s^2 each."""
    rng = np.random.default_rng(5)
    shapes = _shapes(500)
    true = np.exp(rng.uniform(-3, 1, 500))
    e = rng.normal(0.0, 0.1, 500)
    data = {
        "a": dict(zip(shapes, true.tolist(), strict=True)),
        "b": dict(zip(shapes, (true * np.exp(e)).tolist(), strict=True)),
        "c": dict(zip(shapes, (true * np.exp(-e)).tolist(), strict=True)),
    }
    _, noise = engine_noise(data)
    by = {n.engine: n for n in noise}
    assert by["a"].sigma_mad == 0.0 and by["a"].clipped_mad and by["a"].clipped_p90
    assert not by["b"].clipped_mad and not by["c"].clipped_mad
    # s[b] = (v[a, b] + v[b, c] - v[a, c]) / 2 = v[b, c] / 2: a - b and a - c have the same MAD.
    mad_bc = 1.4826 * np.median(np.abs(2 * e - np.median(2 * e)))
    expected_b = math.sqrt(mad_bc**2 / 2)
    assert by["b"].sigma_mad == pytest.approx(expected_b, rel=1e-9)


def test_triangulate_closed_form_and_clipping():
    got = triangulate({("a", "b"): 0.01, ("a", "c"): 0.01, ("b", "c"): 0.05})
    assert got["a"] == (0.0, True)
    assert got["b"][0] == pytest.approx(0.025) and got["c"][0] == pytest.approx(0.025)
    assert not got["b"][1] and not got["c"][1]
    got = triangulate({("b", "a"): 0.13, ("c", "a"): 0.10, ("b", "c"): 0.05})  # pair order free
    assert got["a"][0] == pytest.approx(0.09) and got["b"][0] == pytest.approx(0.04)
    assert got["c"][0] == pytest.approx(0.01)


def test_fewer_than_three_engines_or_shared_shapes_is_a_clear_error():
    two = _synthetic({"a": 0.05, "b": 0.05}, 200, seed=1)
    with pytest.raises(InvalidInputError, match="2 engine"):
        engine_noise(two)
    with pytest.raises(InvalidInputError, match="2 engine"):
        triangulate({("a", "b"): 0.01})
    with pytest.raises(InvalidInputError, match="pair b / c"):
        triangulate({("a", "b"): 0.01, ("a", "c"): 0.01, ("a", "d"): 0.01})
    data = _synthetic({"a": 0.05, "b": 0.05, "c": 0.05}, 200, seed=1)
    data["c"] = {s: t for i, (s, t) in enumerate(data["c"].items()) if i < 20}
    with pytest.raises(InvalidInputError, match="20 shape.*fewer than 30"):
        engine_noise(data)
    with pytest.raises(InvalidInputError, match="not a positive"):
        pair_agreement({s: 1.0 for s in _shapes(40)}, {s: 0.0 for s in _shapes(40)})


def test_implied_abs_error_matches_a_monte_carlo_draw():
    """The p90 and median of |exp(e) - 1| over 400000 normal draws (standard error of a p90 of
    n draws ~ sqrt(0.09 / n) / density: under 0.1% of the value here)."""
    rng = np.random.default_rng(3)
    for sigma in (0.01, 0.05, 0.15, 0.6):
        e = rng.normal(0.0, sigma, 400_000)
        for q in (0.5, 0.9):
            assert implied_abs_error(sigma, q) == pytest.approx(np.quantile(np.abs(np.exp(e) - 1), q), rel=0.01)
    assert implied_abs_error(0.0) == 0.0
    with pytest.raises(InvalidInputError):
        implied_abs_error(-0.1)


def test_implied_pooled_abs_error_matches_a_monte_carlo_mixture():
    """Rows pooled from engines of different noise (one exact): the p90 and median of |exp(e) - 1|
    over 600,000 draws, each engine's share of the rows its weight."""
    rng = np.random.default_rng(4)
    sigmas, weights = (0.177, 0.143, 0.0), (3000, 3000, 1500)
    e = np.concatenate([rng.normal(0.0, s, 80 * w) for s, w in zip(sigmas, weights, strict=True)])
    for q in (0.5, 0.9):
        expected = np.quantile(np.abs(np.exp(e) - 1), q)
        assert implied_pooled_abs_error(sigmas, weights, q) == pytest.approx(expected, rel=0.01)
    assert implied_pooled_abs_error((0.1,), (7.0,), 0.9) == pytest.approx(implied_abs_error(0.1, 0.9), rel=1e-9)
    assert implied_pooled_abs_error((0.0, 0.0), (1.0, 2.0)) == 0.0
    assert implied_pooled_abs_error((0.0, 0.3), (19.0, 1.0), 0.9) == 0.0  # 95% of the rows exact
    with pytest.raises(InvalidInputError, match="one weight > 0 per sigma"):
        implied_pooled_abs_error((0.1, 0.2), (1.0,))
    with pytest.raises(InvalidInputError, match="a scale is a number >= 0"):
        implied_pooled_abs_error((0.1, float("nan")), (1.0, 1.0))


def test_the_shipped_file_is_the_bf16_rows_of_shapes_two_engines_timed():
    with gzip.open(SAME_SHAPES_FILE, "rt") as handle:
        lines = handle.read().splitlines()
    header = [line for line in lines if line.startswith("#")]
    assert any("aiconfigurator" in line and "commit" in line for line in header)
    assert any("same_shapes.py" in line for line in header)
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    engines = defaultdict(set)
    for row in rows:
        assert row["gemm_dtype"] == "bfloat16"
        engines[(row["system"], row["m"], row["n"], row["k"])].add(row["framework"])
    assert all(len(e) >= 2 for e in engines.values())
    assert len(rows) == sum(len(e) for e in engines.values())  # one row per engine and shape
    data = read_same_shapes()
    assert sorted(data.latencies) == ["a100-80gb", "b200", "gb200", "h100-sxm", "h200", "l40s"]
    for chip, by_engine in data.latencies.items():
        assert sorted(by_engine) == ["sglang", "trtllm", "vllm"], chip
        assert data.kernel_sources[chip]["trtllm"] == ("torch_flow",)


def test_read_same_shapes_refuses_other_formats_and_a_shape_timed_twice(tmp_path):
    head = "system,framework,version,op_name,kernel_source,gemm_dtype,m,n,k,latency,source_path\n"
    row = "h200_sxm,VLLM,0.24.0,gemm,torch.nn.functional.linear,{dtype},8,4096,1024,0.01,x\n"
    path = tmp_path / "fp8.csv"
    path.write_text(head + row.format(dtype="fp8"))
    with pytest.raises(InvalidInputError, match="gemm_dtype fp8"):
        read_same_shapes(path)
    path.write_text(head + row.format(dtype="bfloat16") * 2)
    with pytest.raises(InvalidInputError, match="twice"):
        read_same_shapes(path)


def test_report_section_puts_each_missing_gemm_group_beside_its_floor():
    """tuner.accuracy_report's section: a missing bf16 group gets the floor of its chip and engine,
    a missing quantized group none (its engines run different kernels), a met group no row."""
    from types import SimpleNamespace

    from tuner.accuracy_report import render_noise_floor
    from tuner.calibrate import GroupReport

    def group(fmt, median, p90):
        return GroupReport("gemm", fmt, 300, {}, median, p90, 0.5, 0.9)

    results = [
        (SimpleNamespace(chip="l40s", backend="sglang"), SimpleNamespace(groups=[group("bfloat16", 0.11, 0.32)])),
        (SimpleNamespace(chip="l40s", backend="vllm"), SimpleNamespace(groups=[group("fp8", 0.11, 0.34)])),
        (SimpleNamespace(chip="h200", backend="trtllm"), SimpleNamespace(groups=[group("bfloat16", 0.05, 0.13)])),
    ]
    text = "\n".join(render_noise_floor(results))
    assert text.startswith("## Measurement noise floor")
    assert "upper bound" in text and "clipped to 0" in text and "deterministic" in text
    missing = [line for line in text.splitlines() if line.startswith(("| l40s / ", "| h200 / "))]
    assert len(missing) == 2
    assert missing[0].startswith("| l40s / sglang gemm/bfloat16 | 11.0% / 32.0% | ") and "misses 25%" in missing[0]
    assert missing[1].startswith("| l40s / vllm gemm/fp8 |") and "no same-kernel floor" in missing[1]
    assert "| h200 | trtllm | " in text and "5.0% / 13.0% |" in text  # the met group beside its floor
    assert "of the 2 GEMM groups missing a target, 1 are bf16" in text
