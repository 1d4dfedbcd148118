"""A measured correction of a fitted GEMM time near the shapes it was measured at.

The parametric GEMM model (cost_models/efficiency.py gemm_time_s) is the backbone; what it misses
is local in shape (docs/accuracy.md, GEMM, "An eleventh look": a smoother of its log residuals
over (m, n, k) took the GEMM groups missing issue 9's target from 8 to 4 of 56, while additive
tables by m, n and k did not help). NVIDIA AIConfigurator times GEMMs from measured tables with
interpolation; here the table corrects the fit instead of replacing it, and fades to no
correction away from measured shapes.

A :class:`GemmShapeCorrection` is a regular grid in (log2 m, log2 n, log2 k) of log-time
corrections: each node holds the shrunk Gaussian-weighted mean of the training rows' log
residuals log(measured / fitted),

    value(node) = sum_i w_i r_i / (sum_i w_i + SHRINK),
    w_i = exp(-((dlog2 m / BANDWIDTH_M)^2 + (dlog2 n / BANDWIDTH_NK)^2 + (dlog2 k / BANDWIDTH_NK)^2) / 2),

so a node far from every row (sum w << SHRINK) holds ~0. The grid spans the rows' range plus
``MARGIN_BANDWIDTHS`` bandwidths on every side, and its outermost nodes are 0. A query is
interpolated trilinearly in log2 space; a query outside the grid is clamped onto its face, where
the correction is 0: away from measured shapes the fit alone remains (no edge is extrapolated).
The time is the fit's times exp(correction).

With the fitted model's times (``fitted_log_time``, as tuner calibrate builds it), the table is
then made monotone in m: along each interior (n, k) line of nodes, from m = 1 up, the corrected
log time may fall no more than the fit's own does (a fit's measured drops stay, e.g. TRT-LLM
SmoothQuant's GEMV at m <= 4 slower than the tiles at m = 8; the correction adds none). That is
a weighted isotonic regression (scipy.optimize.isotonic_regression) of u = value + P, P the sum
of the fit's least rises in log time across each cell along the line, each node weighted by its rows' weight plus
SHRINK, the top face pinned at 0. Without it, over the shipped profiles' 24,829 (n, k) lines of
measured weight shapes (m from 1 to twice the largest measured, multiples of 4), the corrected
time fell by over 5% somewhere along m on 66% of the lines (the fit alone on 29%), by over 10% on
35%, by up to 77% (tuner calibrate's correction from the shipped fits, measured 2026-12-06):
a smoother of noisy rows at small m, where the time is flat in m, follows the noise. With it:
28.0% and 9.6%, beyond the fit's own fall by over 2% on 0.02% of the lines, by at most 3.1%.
Held out over the 56 groups it costs a little: 5 -> 6 groups missing the target, mean median
4.88% -> 5.02%, mean p90 15.1% -> 15.4% (docs/accuracy.md, GEMM, the thirteenth round).

The table's level then follows the median, not the mean (``median_level``): a group's slow tail
(rows 2x their neighbours: h200 SGLang fp8_block m=1280 n=3072 k=16384 299 us, m=1281 118 us)
pulls a shrunk mean of log residuals up, so with the table the body of the rows came out
predicted 2-3% slow (h200 SGLang fp8_block, its 769 rows of one wave of 64-row blocks: median
log(predicted / measured) +0.005 with the fit alone, +0.028 with the table), where the fit
(soft_l1) sits at ~0. So the median over the table's rows of (residual - table at the row) is
added at every node in proportion to its rows' share of the node (w / (w + SHRINK): none where
the table has no rows, which stays 0); the table's shape stays the mean's. Held out over the 56
groups (data/kernels/shape_correction_check.py, 2026-12-07): 5 -> 4 missing, mean median 5.03% ->
4.85%, mean p90 15.20% -> 15.16% (docs/accuracy.md, GEMM, the twentieth round); a local
M-estimate instead (the nineteenth look), which moves the shape to the body too, raised the p90s.

Values are stored as int16 hundredths of log time (a node within 0.5% of its time), C order (m,
n, k), zlib-compressed and base64-encoded: a profile's YAML stays small (a group's grid is ~30,000
nodes, ~17 kB) and loads fast. Pure numpy; no fit happens here except :func:`fit_shape_correction`.
"""

from __future__ import annotations

import base64
import functools
import zlib
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Kernel bandwidths in log2 m and in log2 n and log2 k, and the shrinkage (weight added to the
#: denominator). Chosen once for all groups by the held-out check of tuner/accuracy_report.py's
#: twelfth round (docs/accuracy.md, GEMM): the eleventh look's setting, (0.25, 0.5, 0.5) and 0.5.
BANDWIDTH_LOG2: tuple[float, float, float] = (0.25, 0.5, 0.5)
SHRINK = 0.5
#: Grid spacing in log2 m, n, k: two bandwidths in m, one in n and k. Held out over the 56 groups
#: (data/kernels/shape_correction_check.py), the grid at (0.5, 0.5, 0.5) is the exact smoother's
#: (5 groups missing, mean median / p90 4.88% / 15.1%, against 4.85% / 15.1%) at 17 kB a group in
#: the profile; (0.25, 0.5, 0.5) the same at 31 kB; (0.5, 1, 1) and (0.25, 1, 1) 6 missing,
#: 4.97% / 15.2% and 4.95% / 15.2%, at 6 and 11 kB.
STEP_LOG2: tuple[float, float, float] = (0.5, 0.5, 0.5)
#: The grid reaches this many bandwidths beyond the rows on every side (a row's weight there is
#: exp(-4.5) = 1.1%) before its outermost nodes, which are 0.
MARGIN_BANDWIDTHS = 3.0
#: Sub-steps of a cell along m at which monotone_in_m reads the fit (1/16 of an octave at the
#: 0.5 step).
CELL_STEPS = 8
#: Stored values are integers of this many log units (a hundredth: 1% of the time, so a node is
#: within 0.5% of its value; thousandths held out the same, at twice the size).
VALUE_UNIT = 1e-2


class GemmShapeCorrection(BaseModel):
    """Log-time corrections of one GEMM group on a regular (log2 m, log2 n, log2 k) grid."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    origin_log2: tuple[float, float, float] = Field(description="log2 (m, n, k) of node (0, 0, 0).")
    step_log2: tuple[float, float, float] = Field(description="Node spacing in log2 m, n, k.")
    nodes: tuple[int, int, int] = Field(description="Nodes along m, n, k (at least 2 each).")
    values: str = Field(
        description="base64 of zlib of int16 little-endian, C order (m, n, k): log(measured / fitted) "
        "in hundredths (VALUE_UNIT); the outermost nodes are 0."
    )
    bandwidth_log2: tuple[float, float, float] = BANDWIDTH_LOG2
    shrink: float = SHRINK
    rows: int = Field(default=0, ge=0, description="Measured rows the nodes were computed from.")
    monotone_in_m: bool = Field(
        default=False,
        description="Made monotone in m against the fit it corrects: the corrected time falls no more "
        "than the fit's own along m (module docstring).",
    )
    median_level: bool = Field(
        default=False,
        description="Its level moved to the median of the rows' residuals less the table (module "
        "docstring); False in profiles built before 2026-12-07.",
    )

    @model_validator(mode="after")
    def _check(self) -> GemmShapeCorrection:
        if min(self.nodes) < 2 or min(self.step_log2) <= 0:
            raise ValueError("a shape correction needs at least 2 nodes and a positive step along m, n and k")
        try:
            table = _decode(self.values, self.nodes)
        except (ValueError, zlib.error) as error:
            raise ValueError(f"values do not decode to {self.nodes} int16 nodes ({error})") from None
        if np.any(table[[0, -1]]) or np.any(table[:, [0, -1]]) or np.any(table[:, :, [0, -1]]):
            raise ValueError("the outermost nodes must be 0 (the correction fades out at the grid's faces)")
        return self

    def table(self) -> np.ndarray:
        """The node values, log units, shape ``nodes``."""
        return _decode(self.values, self.nodes)

    def log_correction(self, m, n, k) -> np.ndarray:
        """log(time / fitted time) at (m, n, k) (arrays broadcast): trilinear in log2 space, 0
        outside the grid (and at m, n or k <= 0)."""
        return self._interpolate(m, n, k, np.float64)

    def factor(self, m, n, k) -> np.ndarray:
        """exp(:meth:`log_correction`): what the fitted time is multiplied by (float64). Computed
        in float32 (log2, the lerps, exp): on every calibrated GEMM the float64 version cost
        ~65 ns an element, ~15% of a calibrated estimate (docs/benchmarks.md); float32 keeps the
        factor within 1e-6 of it relative, far inside the table's hundredths."""
        return np.exp(self._interpolate(m, n, k, np.float32)).astype(np.float64)

    def _interpolate(self, m, n, k, dtype) -> np.ndarray:
        table = _decode(self.values, self.nodes) if dtype is np.float64 else _decode32(self.values, self.nodes)
        flat = table.reshape(-1)
        index: np.ndarray | int = 0
        fractions = []
        with np.errstate(divide="ignore", invalid="ignore"):
            for axis, x in enumerate((m, n, k)):
                count = self.nodes[axis]
                u = np.asarray(np.log2(np.asarray(x, dtype=dtype)))  # (a scalar's: a 0-d array)
                u -= self.origin_log2[axis]
                u /= self.step_log2[axis]
                # Clamped onto the grid: its faces are 0, so beyond them there is no correction
                # (-inf, a size of 0, clamps to the lower face).
                np.clip(u, 0.0, count - 1.0, out=u)
                cell = np.minimum(np.floor(u), count - 2.0)
                u -= cell
                fractions.append(u)
                index = index * count + cell.astype(np.intp)
        fm, fn, fk = fractions
        shape = np.shape(index)
        if not shape:  # one query: as arrays of one, so that the in-place steps below apply
            index, fm, fn, fk = (np.reshape(a, 1) for a in (index, fm, fn, fk))
        stride_m = self.nodes[1] * self.nodes[2]
        stride_n = self.nodes[2]
        result: np.ndarray | None = None
        for dm, wm in ((0, 1.0 - fm), (stride_m, fm)):
            for dn, wn in ((0, 1.0 - fn), (stride_n, fn)):
                # The corners at offsets from the cell's first node: takes from views of the
                # nodes (no shifted copy of the index).
                low = flat[dm + dn :].take(index)
                edge = flat[dm + dn + 1 :].take(index)
                edge -= low
                edge *= fk
                edge += low
                edge *= np.multiply(wm, wn, out=low)
                result = edge if result is None else np.add(result, edge, out=result)
        assert result is not None
        return result.reshape(shape)


@functools.lru_cache(maxsize=512)
def _decode(values: str, nodes: tuple[int, int, int]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(values.encode("ascii"), validate=True))
    table = np.frombuffer(raw, dtype="<i2").astype(float) * VALUE_UNIT
    return table.reshape(nodes)


@functools.lru_cache(maxsize=512)
def _decode32(values: str, nodes: tuple[int, int, int]) -> np.ndarray:
    return _decode(values, nodes).astype(np.float32)


def _encode(table: np.ndarray) -> str:
    units = np.clip(np.rint(table / VALUE_UNIT), -32767, 32767).astype("<i2")
    return base64.b64encode(zlib.compress(units.tobytes(), 9)).decode("ascii")


def _axis_nodes(x: np.ndarray, bandwidth: float, step: float, margin: float) -> np.ndarray:
    low = np.floor((x.min() - margin * bandwidth) / step)
    high = np.ceil((x.max() + margin * bandwidth) / step)
    return np.arange(low, high + 1.0) * step


def shrunk_smoother(
    at_log2: tuple[np.ndarray, np.ndarray, np.ndarray],
    rows_log2: tuple[np.ndarray, np.ndarray, np.ndarray],
    log_residual: np.ndarray,
    bandwidth_log2: tuple[float, float, float] = BANDWIDTH_LOG2,
    shrink: float = SHRINK,
) -> np.ndarray:
    """The exact (gridless) node formula at the points ``at_log2``: the reference the grid's
    interpolation is checked against (tests, the held-out comparison)."""
    d2 = sum(((a[:, None] - r[None, :]) / b) ** 2 for a, r, b in zip(at_log2, rows_log2, bandwidth_log2, strict=True))
    w = np.exp(-0.5 * d2)
    return (w @ log_residual) / (w.sum(axis=1) + shrink)


def fit_shape_correction(
    m,
    n,
    k,
    log_residual,
    bandwidth_log2: tuple[float, float, float] = BANDWIDTH_LOG2,
    shrink: float = SHRINK,
    step_log2: tuple[float, float, float] = STEP_LOG2,
    margin_bandwidths: float = MARGIN_BANDWIDTHS,
    fitted_log_time: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    median_level: bool = True,
) -> GemmShapeCorrection:
    """The grid of shrunk Gaussian-weighted means of ``log_residual`` (log(measured / fitted) of
    rows at (m, n, k)): every node by the module docstring's formula, the outermost set to 0.
    ``fitted_log_time(m, n, k)``: the corrected fit's log time (arrays broadcast); given, the
    table is made monotone in m against it (:func:`monotone_in_m`); ``median_level``: its level
    moved to the rows' median first (the module docstring)."""
    xs = [np.log2(np.asarray(a, dtype=float)) for a in (m, n, k)]
    r = np.asarray(log_residual, dtype=float)
    axes = [_axis_nodes(x, b, s, margin_bandwidths) for x, b, s in zip(xs, bandwidth_log2, step_log2, strict=True)]
    # The Gaussian is separable: per axis a (rows x nodes) weight matrix; the sums over rows of
    # their products are two matrix products.
    gm, gn, gk = (
        np.exp(-0.5 * ((nodes[None, :] - x[:, None]) / b) ** 2)
        for nodes, x, b in zip(axes, xs, bandwidth_log2, strict=True)
    )
    mn = (gm[:, :, None] * gn[:, None, :]).reshape(len(r), -1)
    numerator = (mn * r[:, None]).T @ gk
    denominator = mn.T @ gk
    shape = (len(axes[0]), len(axes[1]), len(axes[2]))
    table = (numerator / (denominator + shrink)).reshape(shape)
    _zero_faces(table)
    if median_level:
        from scipy.interpolate import RegularGridInterpolator

        at_rows = RegularGridInterpolator(axes, table)(np.stack(xs, axis=1))
        share = (denominator / (denominator + shrink)).reshape(shape)
        table = _zero_faces(table + float(np.median(r - at_rows)) * share)
    if fitted_log_time is not None:
        table = monotone_in_m(table, axes, denominator.reshape(shape) + shrink, fitted_log_time)
    return GemmShapeCorrection(
        origin_log2=(float(axes[0][0]), float(axes[1][0]), float(axes[2][0])),
        step_log2=tuple(float(s) for s in step_log2),
        nodes=(len(axes[0]), len(axes[1]), len(axes[2])),
        values=_encode(table),
        bandwidth_log2=tuple(float(b) for b in bandwidth_log2),
        shrink=float(shrink),
        rows=len(r),
        monotone_in_m=fitted_log_time is not None,
        median_level=median_level,
    )


def _zero_faces(table: np.ndarray) -> np.ndarray:
    """``table`` with its outermost nodes 0 (the correction fades out at the grid's faces)."""
    table[[0, -1]] = 0.0
    table[:, [0, -1]] = 0.0
    table[:, :, [0, -1]] = 0.0
    return table


def monotone_in_m(
    table: np.ndarray,
    axes: list[np.ndarray],
    weight: np.ndarray,
    fitted_log_time: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """``table`` (log corrections at the nodes ``axes``, log2 m, n, k) adjusted so that along m,
    on every interior (n, k) line, the corrected log time falls no more than the fit's own: a
    weighted isotonic regression of u = value + P (P: the running sum of the fit's least rises in
    log time across each cell), weights ``weight`` (the rows' weight at each node plus the
    shrinkage), over the nodes at m >= 1 (no query is below), the top face pinned at 0."""
    from scipy.optimize import isotonic_regression

    log2_m, log2_n, log2_k = axes
    first = int(np.searchsorted(log2_m, 0.0))  # the first node at m >= 1
    # The correction is linear in log2 m inside a cell, so it may fall across a cell by no more
    # than the fit's least rise over any part of it: the fit's smallest rise of CELL_STEPS
    # sub-steps, times CELL_STEPS (0 where the fit falls or is flat anywhere in the cell: a tile
    # step in m, flat then up, lets none through). Checked at node resolution only, the corrected
    # time fell by up to 3% more than the fit's own inside cells (a100 SGLang bf16, 2026-12-06).
    # The fit is taken at whole m, a multiple of M_ALIGN (4) from 4 up, as calls are: m between
    # them (2^5.5 = 45.25) would take the fit's unaligned-m cost (cost_models/efficiency.py).
    sub = log2_m[first:-1, None] + (log2_m[1] - log2_m[0]) * np.arange(CELL_STEPS + 1) / CELL_STEPS
    m = np.maximum(np.rint(2.0**sub), 1.0)
    m = np.where(m > 4.0, 4.0 * np.rint(m / 4.0), m)
    n, k = 2.0 ** log2_n[1:-1], 2.0 ** log2_k[1:-1]
    fitted = fitted_log_time(m[:, :, None, None], n[None, None, :, None], k[None, None, None, :])
    fitted = np.broadcast_to(fitted, (*m.shape, len(n), len(k)))
    rises = CELL_STEPS * np.maximum(np.diff(fitted, axis=1).min(axis=1), 0.0)
    climbed = np.concatenate([np.zeros_like(rises[:1]), np.cumsum(rises, axis=0)])
    u = table[first:, 1:-1, 1:-1] + climbed
    w = weight[first:, 1:-1, 1:-1].copy()
    w[-1] = 1e9  # the top face: value 0
    if first == 0:  # (rows from m >= 2: the bottom face is at m >= 1 too)
        w[0] = 1e9
    out = table.copy()
    lines = u.reshape(len(u), -1)
    weights = w.reshape(len(w), -1)
    adjusted = np.empty_like(lines)
    for j in range(lines.shape[1]):
        adjusted[:, j] = isotonic_regression(lines[:, j], weights=weights[:, j]).x
    out[first:, 1:-1, 1:-1] = adjusted.reshape(u.shape) - climbed
    out[[0, -1]] = 0.0
    return out
