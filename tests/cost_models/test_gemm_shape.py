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
    # value is 0.3 / (1 + 0.5) (stored in hundredths: 0.20).
    grid = fit_shape_correction([16.0], [1024.0], [1024.0], [0.3])
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
    plain = gemm_time_s(m, n, k, "bfloat16", chip, params)
    grid = fit_shape_correction([16.0], [1024.0], [1024.0], [0.3])
    corrected = gemm_time_s(m, n, k, "bfloat16", chip, params.model_copy(update={"shape_correction": grid}))
    assert corrected[1] == pytest.approx(plain[1] * np.exp(0.2), rel=1e-3)
    # m=1 is 16 bandwidths away in log2 m, n=8192 6 in log2 n, the last in all three: no correction.
    assert np.array_equal(corrected[[0, 2, 3]], plain[[0, 2, 3]])
