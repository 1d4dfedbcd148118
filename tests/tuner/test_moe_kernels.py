"""The MoE layer model against the measured fused-MoE kernels (data/kernels/moe_perf.csv.gz).

Nothing is fitted on these rows; the bounds are a little above the errors of the shipped profiles
(docs/accuracy.md, section MoE layers), so a change that makes the MoE model worse fails here."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from tuner.moe_kernels import MOE_FILE, held_out_factor, moe_kernel_errors, read_moe_rows


@pytest.fixture(scope="module")
def errors():
    return moe_kernel_errors()


def test_the_copy_keeps_provenance_and_only_expert_tensor_parallelism() -> None:
    with gzip.open(MOE_FILE, "rt") as handle:
        header = [line for line in handle if line.startswith("#")]
    assert any("aiconfigurator" in line for line in header)
    assert any("moe_ep_size == 1" in line for line in header)
    rows = read_moe_rows()
    assert len(rows) > 10_000 and {r["moe_ep_size"] for r in rows} == {"1"}


def test_every_chip_and_engine_is_compared(errors) -> None:
    pairs = {(e.chip, e.backend) for e in errors}
    assert {"h100-sxm", "h200", "a100-80gb", "l40s", "b200", "gb200"} == {chip for chip, _ in pairs}
    assert len(pairs) >= 15
    assert all(e.rows >= 150 for e in errors)


def test_calibrated_expert_gemms_beat_the_roofline_everywhere(errors) -> None:
    for e in errors:
        assert np.median(e.calibrated_error) < np.median(e.roofline_error), (e.chip, e.backend)


def test_calibrated_moe_error_bounds(errors) -> None:
    """Shipped profiles, nothing fitted: median 19-46% per chip and engine, p90 49-85%."""
    for e in errors:
        assert np.median(e.calibrated_error) <= 0.50, (e.chip, e.backend)
        assert np.percentile(e.calibrated_error, 90) <= 0.90, (e.chip, e.backend)
        assert 0.5 <= np.median(e.calibrated_ratio) <= 1.2, (e.chip, e.backend)  # no 2x bias
    everything = np.concatenate([e.calibrated_error for e in errors])
    assert np.median(everything) <= 0.35


def test_held_out_factor_never_sees_its_own_shape() -> None:
    """Two shapes, each in its own fold of 2: each is corrected by the other's miss only."""
    ratio = np.array([0.5, 0.5, 2.0, 2.0])
    shapes = np.array(["a", "a", "b", "b"])
    held_out, factor = held_out_factor(ratio, shapes, folds=2)
    assert held_out.tolist() == pytest.approx([0.25, 0.25, 4.0, 4.0])  # a x 1/2 from b, b x 2 from a
    assert factor == pytest.approx(1.0)  # median of log(2), log(2), log(1/2), log(1/2)
