"""How far apart the kernel database's collectors time the same bf16 GEMM: a noise floor for the fit.

NVIDIA AIConfigurator's database times many (m, n, k) GEMM shapes once per engine collector
(TensorRT-LLM, vLLM, SGLang) on the same chip. In bf16 all three run the engine's unquantized linear
layer, ``torch.nn.functional.linear`` (cuBLAS / cuBLASLt), so two engines' rows of one shape time
the same library's kernel; ``data/kernels/gemm_bf16_same_shapes.csv.gz`` holds those rows
(``data/kernels/same_shapes.py`` made it). What they disagree by, after each pair's median ratio
(a constant offset: clocks, timer, weight copies per call) is taken out, bounds how exactly one
engine's rows can be predicted by any deterministic function of (m, n, k).

Model of the data, on log latency: ``log t[e, s] = log T[s] + b[e] + eps[e, s]``, for engine ``e``
and shape ``s``, with ``eps[e, .]`` independent between engines, centred, of scale ``sigma[e]``.
Then for a pair the log ratio ``d = log t[a, s] - log t[b, s]`` has centre ``b[a] - b[b]`` and
variance ``sigma[a]^2 + sigma[b]^2``: three engines give three pair variances, hence the three
``sigma[e]^2`` (:func:`triangulate`). Scales are robust: ``1.4826 * MAD`` (the normal's sigma for a
normal, blind to the worst half of the rows) and ``p90(|d - centre|) / 1.6449`` (the normal's sigma
whose p90 of ``|d|`` it is: sensitive to the tail, which is what a p90 target sees).

What the numbers are and are not: they are an upper bound of one engine's irreducible noise, not a
measurement of it. A difference between engines can be deterministic (a different cuBLAS / torch
build picking a different kernel for a shape, a collector's L2 handling), which a model of that
engine alone could in principle learn; only what is truly random in each engine's rows is noise.
Negative variance estimates (sampling error, or noise that is not independent between engines)
are clipped to 0 and flagged. Each pair is estimated on the shapes that pair has in common, which
differ between pairs: the scales are assumed alike across shapes.

Pure functions over plain mappings (numpy, no pandas); :func:`read_same_shapes` reads the file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

from cost_models.errors import InvalidInputError

#: ``(m, n, k)`` of a GEMM.
Shape = tuple[int, int, int]
#: Latency (any unit, the same within a mapping) by shape.
Latencies = Mapping[Shape, float]

SAME_SHAPES_FILE = Path(__file__).resolve().parent.parent / "data" / "kernels" / "gemm_bf16_same_shapes.csv.gz"
#: Fewest shapes two engines must share for their agreement to be estimated.
MIN_SHAPES = 30
#: A normal variable's MAD times this is its standard deviation (1 / Phi^-1(0.75)).
MAD_TO_SIGMA = 1.4826
#: A normal variable's p90 of |x| is this many standard deviations (Phi^-1(0.95)).
P90_ABS_Z = 1.6449
#: The same for the median of |x| (Phi^-1(0.75)).
MEDIAN_ABS_Z = 0.6745


@dataclass(frozen=True)
class PairAgreement:
    """Two engines' timings of the shapes both measured.

    ``median_ratio``: median of ``first / second`` latency. ``median_dev`` and ``p90_dev``: median and
    p90 of ``|ratio / median_ratio - 1|``. ``sigma_mad``: ``1.4826 * median(|d - median(d)|)`` of the
    log ratio ``d``; ``sigma_p90``: ``p90(|d - median(d)|) / 1.6449``."""

    first: str
    second: str
    shapes: int
    median_ratio: float
    median_dev: float
    p90_dev: float
    sigma_mad: float
    sigma_p90: float


@dataclass(frozen=True)
class EngineNoise:
    """One engine's triangulated noise: the scale of its log latency about the true time, by both
    robust scales, whether the variance estimate was negative and clipped to 0, and the median and
    p90 of ``|predicted / measured - 1|`` a model predicting the true time exactly would get on that
    engine's rows if its noise were normal with that scale (:func:`implied_abs_error`)."""

    engine: str
    sigma_mad: float
    sigma_p90: float
    clipped_mad: bool
    clipped_p90: bool

    @property
    def implied_median_mad(self) -> float:
        return implied_abs_error(self.sigma_mad, 0.5)

    @property
    def implied_p90_mad(self) -> float:
        return implied_abs_error(self.sigma_mad, 0.9)

    @property
    def implied_median_p90(self) -> float:
        return implied_abs_error(self.sigma_p90, 0.5)

    @property
    def implied_p90_p90(self) -> float:
        return implied_abs_error(self.sigma_p90, 0.9)


def _log_ratios(first: Latencies, second: Latencies, min_shapes: int, names: tuple[str, str]) -> np.ndarray:
    common = sorted(set(first) & set(second))
    if len(common) < min_shapes:
        raise InvalidInputError(
            f"{names[0]} / {names[1]}",
            f"{len(common)} shape(s) measured by both, fewer than {min_shapes}",
            "pair engines that timed the same (m, n, k) shapes",
        )
    a = np.array([first[s] for s in common], dtype=float)
    b = np.array([second[s] for s in common], dtype=float)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(a > 0) and np.all(b > 0)):
        raise InvalidInputError(f"{names[0]} / {names[1]}", "a latency is not a positive number", "fix the rows")
    return np.log(a) - np.log(b)


def _scales(d: np.ndarray) -> tuple[float, float, float]:
    """Centre, MAD-based and p90-based sigma of log ratios ``d``."""
    centre = float(np.median(d))
    dev = np.abs(d - centre)
    return centre, MAD_TO_SIGMA * float(np.median(dev)), float(np.quantile(dev, 0.9)) / P90_ABS_Z


def pair_agreement(
    first: Latencies, second: Latencies, names: tuple[str, str] = ("first", "second"), min_shapes: int = MIN_SHAPES
) -> PairAgreement:
    """Agreement of two engines on the shapes both timed (other shapes are ignored). Raises
    :class:`InvalidInputError` with fewer than ``min_shapes`` common shapes or a latency <= 0."""
    d = _log_ratios(first, second, min_shapes, names)
    centre, sigma_mad, sigma_p90 = _scales(d)
    dev = np.abs(np.exp(d - centre) - 1.0)
    return PairAgreement(
        first=names[0],
        second=names[1],
        shapes=len(d),
        median_ratio=math.exp(centre),
        median_dev=float(np.median(dev)),
        p90_dev=float(np.quantile(dev, 0.9)),
        sigma_mad=sigma_mad,
        sigma_p90=sigma_p90,
    )


def triangulate(pair_variances: Mapping[tuple[str, str], float]) -> dict[str, tuple[float, bool]]:
    """Per-engine variances from pair variances ``v[a, b] = s[a] + s[b]`` (independent noise).

    Needs every pair of three or more engines. Three engines: the exact solution
    ``s[a] = (v[a, b] + v[a, c] - v[b, c]) / 2``; more: the least-squares one. A negative ``s`` is
    returned as 0 with ``True`` (clipped), else ``(s, False)``."""
    engines = sorted({e for pair in pair_variances for e in pair})
    if len(engines) < 3:
        raise InvalidInputError(
            "noise triangulation",
            f"{len(engines)} engine(s) ({', '.join(engines) or 'none'}); it needs three or more",
            "give the pair variances of three engines that timed the same shapes",
        )
    index = {e: i for i, e in enumerate(engines)}
    rows, values = [], []
    for a, b in combinations(engines, 2):
        value = pair_variances.get((a, b), pair_variances.get((b, a)))
        if value is None:
            raise InvalidInputError("noise triangulation", f"no variance for the pair {a} / {b}", "give every pair")
        if not (math.isfinite(value) and value >= 0):
            raise InvalidInputError("noise triangulation", f"variance {value!r} of {a} / {b}", "a variance is >= 0")
        row = np.zeros(len(engines))
        row[index[a]] = row[index[b]] = 1.0
        rows.append(row)
        values.append(value)
    solution = np.linalg.lstsq(np.array(rows), np.array(values), rcond=None)[0]
    return {e: (max(float(solution[index[e]]), 0.0), bool(solution[index[e]] < 0)) for e in engines}


def engine_noise(
    latencies: Mapping[str, Latencies], min_shapes: int = MIN_SHAPES
) -> tuple[list[PairAgreement], list[EngineNoise]]:
    """Every pair's agreement and every engine's triangulated noise, for engines (three or more)
    that timed shapes in common on one chip: ``latencies[engine][(m, n, k)]``. Each pair is
    estimated on its own common shapes (at least ``min_shapes``)."""
    engines = sorted(latencies)
    if len(engines) < 3:
        raise InvalidInputError(
            "noise triangulation",
            f"{len(engines)} engine(s) ({', '.join(engines) or 'none'}); it needs three or more",
            "give three engines' timings of the same shapes",
        )
    pairs = [pair_agreement(latencies[a], latencies[b], (a, b), min_shapes) for a, b in combinations(engines, 2)]
    mad = triangulate({(p.first, p.second): p.sigma_mad**2 for p in pairs})
    p90 = triangulate({(p.first, p.second): p.sigma_p90**2 for p in pairs})
    noise = [
        EngineNoise(
            engine=e,
            sigma_mad=math.sqrt(mad[e][0]),
            sigma_p90=math.sqrt(p90[e][0]),
            clipped_mad=mad[e][1],
            clipped_p90=p90[e][1],
        )
        for e in engines
    ]
    return pairs, noise


def bootstrap_sigmas(
    latencies: Mapping[str, Latencies],
    draws: int = 200,
    seed: int = 0,
    quantiles: Sequence[float] = (0.05, 0.95),
    min_shapes: int = MIN_SHAPES,
) -> dict[str, dict[str, tuple[float, ...]]]:
    """Spread of :func:`engine_noise`'s sigmas under resampling each pair's common shapes with
    replacement (``draws`` times, ``numpy.random.default_rng(seed)``): ``{engine: {"mad": (q...),
    "p90": (q...)}}`` at ``quantiles``. Says how well the shapes determine each sigma."""
    engines = sorted(latencies)
    ratios = {(a, b): _log_ratios(latencies[a], latencies[b], min_shapes, (a, b)) for a, b in combinations(engines, 2)}
    rng = np.random.default_rng(seed)
    samples: dict[str, dict[str, list[float]]] = {e: {"mad": [], "p90": []} for e in engines}
    for _ in range(draws):
        scales = {pair: _scales(d[rng.integers(0, len(d), len(d))]) for pair, d in ratios.items()}
        for kind, column in (("mad", 1), ("p90", 2)):
            solved = triangulate({pair: s[column] ** 2 for pair, s in scales.items()})
            for e in engines:
                samples[e][kind].append(math.sqrt(solved[e][0]))
    return {
        e: {kind: tuple(float(q) for q in np.quantile(values, list(quantiles))) for kind, values in kinds.items()}
        for e, kinds in samples.items()
    }


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def implied_abs_error(sigma: float, quantile: float = 0.9) -> float:
    """The ``quantile`` of ``|predicted / measured - 1|`` for a model that predicts the true time
    exactly, when measured = true x exp(eps), eps ~ N(0, sigma^2): the x where
    ``P(log(1 - x) <= eps <= log(1 + x)) = quantile`` (eps symmetric, so the same for
    ``|exp(-eps) - 1|``). 0 for sigma 0; about ``exp(1.6449 sigma) - 1`` at the p90."""
    return implied_pooled_abs_error([sigma], [1.0], quantile)


def implied_pooled_abs_error(sigmas: Sequence[float], weights: Sequence[float], quantile: float = 0.9) -> float:
    """:func:`implied_abs_error` over rows pooled from several engines: a share ``weights[i]`` of
    the rows with noise of scale ``sigmas[i]`` (the GEMM target read per chip and format, every
    engine's rows pooled: docs/accuracy.md). The x where the mixture's
    ``sum w_i P(log(1 - x) <= eps_i <= log(1 + x))`` is ``quantile`` (scipy.optimize.brentq)."""
    if not 0 < quantile < 1:
        raise InvalidInputError("implied error", f"quantile {quantile!r}", "a quantile is in (0, 1)")
    for sigma in sigmas:
        if not (math.isfinite(sigma) and sigma >= 0):
            raise InvalidInputError("implied error", f"sigma {sigma!r}", "a scale is a number >= 0")
    w = np.asarray(weights, dtype=float)
    if len(w) != len(sigmas) or len(w) == 0 or not np.all(np.isfinite(w) & (w > 0)):
        raise InvalidInputError("implied error", f"weights {list(weights)!r}", "one weight > 0 per sigma")
    w = w / w.sum()
    if all(sigma == 0 for sigma in sigmas):
        return 0.0

    def covered(x: float) -> float:
        total = 0.0
        for share, sigma in zip(w, sigmas, strict=True):
            if sigma == 0:
                total += share  # exact rows: within any x > 0
                continue
            low = _normal_cdf(math.log(1.0 - x) / sigma) if x < 1 else 0.0
            total += share * (_normal_cdf(math.log1p(x) / sigma) - low)
        return total

    if covered(0.0) >= quantile:  # the exact rows alone hold the quantile
        return 0.0
    hi = 1.0
    while covered(hi) < quantile:
        hi *= 2.0
    return float(brentq(lambda x: covered(x) - quantile, 0.0, hi, xtol=1e-12))


@dataclass(frozen=True)
class SameShapes:
    """The file's rows: ``latencies[chip][engine][(m, n, k)]`` (ms), the kernel_source labels of
    each chip's engine rows, and the shapes all engines of a chip timed."""

    latencies: dict[str, dict[str, dict[Shape, float]]]
    kernel_sources: dict[str, dict[str, tuple[str, ...]]]

    def shapes_in_all(self, chip: str) -> int:
        sets = [set(v) for v in self.latencies[chip].values()]
        return len(set.intersection(*sets)) if sets else 0


def read_same_shapes(path: str | Path = SAME_SHAPES_FILE) -> SameShapes:
    """Read a bf16 same-shape file (the kernel database's gemm columns). Chips are the hardware
    catalog's names (tuner.kernel_data.SYSTEMS), engines trtllm / vllm / sglang. Refuses rows of
    another format than bfloat16, an unknown system and a shape timed twice by one engine."""
    from tuner.kernel_data import SYSTEMS, read_kernel_table

    table = read_kernel_table(path)
    if table.kind != "gemm":
        raise InvalidInputError(str(path), f"a {table.kind} table", "pass the bf16 GEMM same-shape file")
    c = table.columns
    latencies: dict[str, dict[str, dict[Shape, float]]] = {}
    sources: dict[str, dict[str, set[str]]] = {}
    for i in range(len(table)):
        where = f"{path}:{table.lines[i]}"
        if c["gemm_dtype"][i] != "bfloat16":
            raise InvalidInputError(where, f"gemm_dtype {c['gemm_dtype'][i]}", "only bfloat16 rows time one library")
        system = str(c["system"][i])
        if system not in SYSTEMS:
            raise InvalidInputError(where, f"unknown system {system!r}", f"one of {', '.join(SYSTEMS)}")
        chip, engine = SYSTEMS[system], str(c["engine"][i])
        shape = (int(c["m"][i]), int(c["n"][i]), int(c["k"][i]))
        rows = latencies.setdefault(chip, {}).setdefault(engine, {})
        if shape in rows:
            raise InvalidInputError(where, f"{engine} timed m, n, k = {shape} twice", "keep one row per shape")
        rows[shape] = float(c["latency"][i])
        sources.setdefault(chip, {}).setdefault(engine, set()).add(str(c.get("kernel_source", ["?"] * len(table))[i]))
    return SameShapes(
        latencies=latencies,
        kernel_sources={ch: {e: tuple(sorted(s)) for e, s in es.items()} for ch, es in sources.items()},
    )
