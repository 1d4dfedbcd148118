"""The GEMM shape correction (cost_models/gemm_shape.py): trilinear interpolation of its grid,
its fade to no correction away from the grid, its node formula, and its place in gemm_time_s."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from cost_models.efficiency import GemmParams, gemm_time_s
from cost_models.gemm_shape import GemmShapeCorrection, _encode, fit_shape_correction
from cost_models.hardware import get_hardware


def _grid(table: np.ndarray, origin=(0.0, 5.0, 5.0), step=(0.25, 0.5, 0.5)) -> GemmShapeCorrection:
    return GemmShapeCorrection(origin_log2=origin, step_log2=step, nodes=table.shape, values=_encode(table))


def _zero_faced(shape=(5, 4, 4)) -> np.ndarray:
    """Node values of whole hundredths (stored exactly), 0 on the faces."""
    rng = np.random.default_rng(1)
    table = rng.integers(-30, 30, size=shape) / 100.0
    table[[0, -1]] = 0.0
    table[:, [0, -1]] = 0.0
    table[:, :, [0, -1]] = 0.0
    return table


def test_exact_at_the_nodes():
    table = _zero_faced()
    grid = _grid(table)
    i, j, h = np.meshgrid(*(np.arange(s) for s in table.shape), indexing="ij")
    m, n, k = 2.0 ** (0.25 * i), 2.0 ** (5.0 + 0.5 * j), 2.0 ** (5.0 + 0.5 * h)
    assert np.allclose(grid.log_correction(m, n, k), table, atol=1e-12)


def test_linear_between_nodes_along_each_axis_and_trilinear_inside_a_cell():
    table = _zero_faced()
    grid = _grid(table)
    # Halfway between nodes (1, 1, 1) and (2, 1, 1) in log2 m: their mean.
    mid_m = grid.log_correction(2.0 ** (0.25 * 1.5), 2.0**5.5, 2.0**5.5)
    assert mid_m == pytest.approx((table[1, 1, 1] + table[2, 1, 1]) / 2, abs=1e-12)
    # A quarter of the way in log2 k from (2, 2, 1) to (2, 2, 2).
    quarter_k = grid.log_correction(2.0**0.5, 2.0**6, 2.0 ** (5.0 + 0.5 * 1.25))
    assert quarter_k == pytest.approx(0.75 * table[2, 2, 1] + 0.25 * table[2, 2, 2], abs=1e-12)
    # The cell's centre: the mean of its 8 corners.
    centre = grid.log_correction(2.0 ** (0.25 * 1.5), 2.0 ** (5.0 + 0.5 * 1.5), 2.0 ** (5.0 + 0.5 * 1.5))
    assert centre == pytest.approx(table[1:3, 1:3, 1:3].mean(), abs=1e-12)


def test_no_correction_outside_the_grid_and_at_size_zero():
    grid = _grid(_zero_faced())
    far = grid.log_correction(
        np.array([1e9, 1.0, 1.0, 2.0, 0.0, 0.5]),
        np.array([64.0, 1e9, 64.0, 1.0, 64.0, 64.0]),
        np.array([64.0, 64.0, 1e9, 64.0, 64.0, 64.0]),
    )
    assert np.array_equal(far, np.zeros(6))
    # Broadcast scalars and arrays alike.
    assert grid.log_correction(1.0, 64.0, np.array([32.0, 64.0])).shape == (2,)


def test_a_grid_with_a_nonzero_face_or_a_wrong_size_is_refused():
    table = _zero_faced()
    table[0, 1, 1] = 0.1
    with pytest.raises(ValidationError, match="outermost nodes must be 0"):
        _grid(table)
    with pytest.raises(ValidationError, match="do not decode"):
        GemmShapeCorrection(origin_log2=(0, 0, 0), step_log2=(1, 1, 1), nodes=(3, 3, 3), values=_encode(np.zeros(8)))


def test_node_values_are_the_shrunk_weighted_mean_of_the_residuals():
    # One row at m=16, n=k=1024 with a log residual of 0.3: a node on it weighs it 1, so its
    # value is 0.3 / (1 + 0.5) (stored in hundredths: 0.20). The level left at the mean's.
    grid = fit_shape_correction([16.0], [1024.0], [1024.0], [0.3], median_level=False)
    assert not grid.median_level
    assert grid.step_log2 == (0.5, 0.5, 0.5) and grid.shrink == 0.5 and grid.bandwidth_log2 == (0.25, 0.5, 0.5)
    assert grid.log_correction(16.0, 1024.0, 1024.0) == pytest.approx(0.2, abs=1e-12)
    # The next node in m is 2 bandwidths (0.5 in log2 m) away: weight exp(-2), 0.3 e^-2 / (e^-2 + 0.5)
    # = 0.064, stored 0.06; halfway to it, the mean of the two nodes.
    assert grid.log_correction(16.0 * 2**0.5, 1024.0, 1024.0) == pytest.approx(0.06, abs=1e-12)
    assert grid.log_correction(16.0 * 2**0.25, 1024.0, 1024.0) == pytest.approx(0.13, abs=1e-12)
    # In n, one bandwidth (0.5) away: exp(-1/2), 0.3 e^-0.5 / (e^-0.5 + 0.5) = 0.164, stored 0.16.
    assert grid.log_correction(16.0, 1024.0 * 2**0.5, 1024.0) == pytest.approx(0.16, abs=1e-12)
    # The grid's faces are 3 bandwidths beyond the rows, out to the next node (1.0 in log2 m, 1.5
    # in log2 n), and are 0: the correction fades to them and none is applied beyond.
    assert grid.log_correction(16.0 * 2**0.75, 1024.0, 1024.0) == pytest.approx(0.03, abs=1e-12)
    assert grid.log_correction(16.0 * 2**1.0, 1024.0, 1024.0) == 0.0
    assert grid.log_correction(16.0 * 2**4, 1024.0, 1024.0) == 0.0
    assert grid.log_correction(16.0, 1024.0 * 2**1.5, 1024.0) == 0.0
    assert grid.log_correction(16.0, 1024.0, 1024.0 / 2**3) == 0.0
    assert grid.rows == 1 and grid.shrink == 0.5 and grid.bandwidth_log2 == (0.25, 0.5, 0.5)


def test_gemm_time_is_the_fit_times_the_correction_and_unchanged_without_one():
    chip = get_hardware("h100-sxm")
    params = GemmParams(compute_eff=0.7, memory_eff=0.8, launch_s=5e-6)
    m = np.array([1.0, 16.0, 16.0, 4096.0])
    n = np.array([1024.0, 1024.0, 8192.0, 4096.0])
    k = np.array([1024.0, 1024.0, 1024.0, 4096.0])
    plain = gemm_time_s(m, n, k, "bfloat16", chip, params, weights_in_l2=True)
    grid = fit_shape_correction([16.0], [1024.0], [1024.0], [0.3], median_level=False)
    corrected = gemm_time_s(
        m, n, k, "bfloat16", chip, params.model_copy(update={"shape_correction": grid}), weights_in_l2=True
    )
    assert corrected[1] == pytest.approx(plain[1] * np.exp(0.2), rel=1e-3)
    # m=1 is 16 bandwidths away in log2 m, n=8192 6 in log2 n, the last in all three: no correction.
    assert np.array_equal(corrected[[0, 2, 3]], plain[[0, 2, 3]])


def test_the_level_follows_the_rows_median_not_their_mean():
    # Ten rows of one shape, eight on the fit (log residual 0) and two 2.7x slower (1.0): the
    # shrunk mean, 2 / (10 + 0.5) = 0.19, would predict the eight 21% slow (h200 SGLang fp8_block's
    # body +0.028 with the mean's table, +0.005 with the fit alone: cost_models/gemm_shape.py).
    m, n, k = np.full(10, 64.0), np.full(10, 4096.0), np.full(10, 4096.0)
    residual = np.array([0.0] * 8 + [1.0] * 2)
    mean = fit_shape_correction(m, n, k, residual, median_level=False)
    assert mean.log_correction(64.0, 4096.0, 4096.0) == pytest.approx(0.19, abs=1e-12)
    grid = fit_shape_correction(m, n, k, residual)
    assert grid.median_level
    # The median of (residual - 0.19) is -0.19, added in the rows' share of the node, 10 / 10.5:
    # 0.19 - 0.181 = 0.0095, stored 0.01.
    assert grid.log_correction(64.0, 4096.0, 4096.0) == pytest.approx(0.01, abs=1e-12)
    # Where the rows weigh less the shift does too: a node two bandwidths off in m (0.5 in log2 m)
    # weighs them 10 e^-2 = 1.35, a share of 0.73; the mean there is 2 e^-2 / (1.35 + 0.5) = 0.146,
    # less 0.19 x 0.73: 0.007, stored 0.01 (the shift in full would leave -0.04).
    off = 64.0 * 2**0.5
    weight = 10 * np.exp(-2.0)
    expected = 2 * np.exp(-2.0) / (weight + 0.5) - (2 / 10.5) * weight / (weight + 0.5)
    assert round(2 * np.exp(-2.0) / (weight + 0.5) - 2 / 10.5, 2) == -0.04
    assert grid.log_correction(off, 4096.0, 4096.0) == pytest.approx(round(expected, 2), abs=1e-12)
    # Beyond the grid, none.
    assert grid.log_correction(64.0 * 2**4, 4096.0, 4096.0) == 0.0


def _falling_rows():
    """Rows whose log residual falls by 0.1 an octave of m from m = 1 to 64 (measured times that
    fall with m, as noisy small-m rows can), at n = k = 4096, over a fit flat in m (log time 0)."""
    m = np.repeat(2.0 ** np.arange(0, 7), 5)
    residual = -0.1 * np.log2(m)
    return m, np.full_like(m, 4096.0), np.full_like(m, 4096.0), residual


def _drop_along_m(grid: GemmShapeCorrection, fitted_log_time) -> float:
    """The largest fall of the corrected log time from any m to a larger one, m = 1, 2, 3 and
    multiples of 4 up to 512, at n = k = 4096."""
    m = np.concatenate([[1.0, 2.0, 3.0], np.arange(4.0, 513.0, 4.0)])
    total = fitted_log_time(m, 4096.0, 4096.0) + grid.log_correction(m, 4096.0, 4096.0)
    return float(np.max(np.maximum.accumulate(total) - total))


def test_made_monotone_in_m_the_corrected_time_falls_no_more_than_the_fit():
    # Over the shipped fits' measured weight shapes, the correction without it made the corrected
    # time fall along m by over 5% on 66% of (n, k) lines, the fit alone on 29% (2026-12-06,
    # cost_models/gemm_shape.py monotone_in_m).
    m, n, k, residual = _falling_rows()

    def flat(a, b, c):
        return np.zeros(np.broadcast(a, b, c).shape)

    def rising(a, b, c):  # a fit that doubles from m = 256 on
        return np.broadcast_to(np.log(1.0 + np.asarray(a) / 256.0), np.broadcast(a, b, c).shape)

    plain = fit_shape_correction(m, n, k, residual)
    assert _drop_along_m(plain, flat) > 0.3  # the rows' fall, shrunk a little
    for fit in (flat, rising):
        grid = fit_shape_correction(m, n, k, residual, fitted_log_time=fit)
        assert grid.monotone_in_m
        # Monotone at the nodes; between them, and by the stored hundredths, a fall within 2%
        # (measured: 0.0 flat, 1.2% under the rising fit).
        assert _drop_along_m(grid, fit) <= 0.02
        table = grid.table()
        assert not table[[0, -1]].any() and not table[:, [0, -1]].any() and not table[:, :, [0, -1]].any()
    # The rows' mean is kept (the regression pools, it does not raise every node to the first).
    pooled = fit_shape_correction(m, n, k, residual, fitted_log_time=flat)
    assert abs(float(np.mean(pooled.log_correction(m, n, k)) - np.mean(plain.log_correction(m, n, k)))) < 0.02


def test_made_monotone_in_m_a_drop_of_the_fit_itself_stays():
    # A fit that falls by 30% from m = 4 to m = 8 (TRT-LLM SmoothQuant's GEMV at m <= 4, slower than
    # the tiles above): the correction adds no fall, and does not undo the fit's.
    m, n, k, residual = _falling_rows()

    def gemv(a, b, c):
        return np.broadcast_to(np.where(np.asarray(a) <= 4.0, np.log(1.3), 0.0), np.broadcast(a, b, c).shape)

    grid = fit_shape_correction(m, n, k, np.zeros_like(residual), fitted_log_time=gemv)
    assert np.abs(grid.table()).max() == 0.0
    grid = fit_shape_correction(m, n, k, residual, fitted_log_time=gemv)
    assert _drop_along_m(grid, gemv) <= np.log(1.3) + 0.02
