"""cost_models.roofline by hand: time = max(FLOPs / (peak x efficiency), bytes / (bandwidth x
efficiency)) (Williams et al. 2009), the peak being that of the operator's compute format.

A made-up chip with round numbers: 100 TFLOP/s bf16, 400 TOP/s int8, 200 TFLOP/s fp8, no int4
(falls back to int8), 1 TB/s. Its ridge point is 100e12 / 1e12 = 100 FLOP per byte (bf16).
"""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.dtypes import BF16, FP8, INT4, INT8
from cost_models.hardware import HardwareSpec
from cost_models.roofline import roofline_times

TERA = 1e12


def chip(compute_eff: float = 1.0, memory_eff: float = 1.0) -> HardwareSpec:
    return HardwareSpec.model_validate(
        {
            "name": "round",
            "source": "hand-made for tests",
            "kind": "gpu",
            "peak_ops_per_s": {"bf16": 100 * TERA, "fp8": 200 * TERA, "int8": 400 * TERA},
            "memory_bytes": 16e9,
            "memory_bandwidth_bytes_per_s": 1 * TERA,
            "interconnect": {
                "kind": "switched",
                "domain_size": 1,
                "domain_bandwidth_bytes_per_s": 1e9,
                "network_bandwidth_bytes_per_s": 1e9,
                "domain_latency_s": 0.0,
                "network_latency_s": 0.0,
            },
            "efficiency": {"compute": compute_eff, "memory": memory_eff},
        }
    )


def times(flops, bytes_, dtype=BF16, hardware=None):
    flops = np.atleast_1d(np.asarray(flops, dtype=np.float64))
    bytes_ = np.atleast_1d(np.asarray(bytes_, dtype=np.float64))
    dtypes = np.broadcast_to(np.asarray(dtype, dtype=np.int64), flops.shape)
    return roofline_times(flops, bytes_, dtypes, hardware or chip())


def test_compute_and_memory_times_by_hand() -> None:
    # 2e12 FLOPs at 100e12 FLOP/s: 0.02 s; 5e9 bytes at 1e12 B/s: 0.005 s -> compute bound, 0.02 s.
    t = times(2e12, 5e9)
    assert t.compute_s.tolist() == pytest.approx([0.02])
    assert t.memory_s.tolist() == pytest.approx([0.005])
    assert t.time_s.tolist() == pytest.approx([0.02])
    assert t.compute_bound.tolist() == [True]
    # 1e9 FLOPs (10 us) and 1e9 bytes (1 ms): memory bound, 1 ms.
    t = times(1e9, 1e9)
    assert t.time_s.tolist() == pytest.approx([1e-3])
    assert t.compute_bound.tolist() == [False]


def test_the_bound_switches_at_the_ridge_point() -> None:
    # Ridge: 100 FLOP/byte. With 1e9 bytes (1 ms of memory time): 99e9 FLOPs take 0.99 ms (memory
    # bound), 100e9 take exactly 1 ms (the tie counts as compute bound), 101e9 take 1.01 ms.
    t = times([99e9, 100e9, 101e9], [1e9, 1e9, 1e9])
    assert t.compute_bound.tolist() == [False, True, True]
    assert t.time_s.tolist() == pytest.approx([1e-3, 1e-3, 1.01e-3])
    assert chip().ridge_point_ops_per_byte == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("dtype", "peak"),
    [
        (BF16, 100 * TERA),
        (FP8, 200 * TERA),
        (INT8, 400 * TERA),
        (INT4, 400 * TERA),  # no int4 units: runs at the int8 peak
    ],
)
def test_the_peak_is_that_of_the_compute_format(dtype: int, peak: float) -> None:
    t = times(4e12, 0.0, dtype)
    assert t.compute_s.tolist() == pytest.approx([4e12 / peak])


def test_mixed_formats_in_one_call() -> None:
    # Same 4e12 FLOPs, one operator per format: 40 ms, 20 ms, 10 ms.
    t = times([4e12, 4e12, 4e12], [0.0, 0.0, 0.0], [BF16, FP8, INT8])
    assert t.compute_s.tolist() == pytest.approx([0.04, 0.02, 0.01])


def test_efficiencies_scale_each_roof() -> None:
    # Compute at 50% of peak: 2e12 FLOPs take 0.04 s; memory at 80%: 8e9 bytes take 0.01 s.
    t = times(2e12, 8e9, hardware=chip(compute_eff=0.5, memory_eff=0.8))
    assert t.compute_s.tolist() == pytest.approx([0.04])
    assert t.memory_s.tolist() == pytest.approx([0.01])
    assert t.time_s.tolist() == pytest.approx([0.04])


def test_shapes_follow_the_operator_arrays() -> None:
    # (operators, configurations) in, the same shape out; zero work takes zero time.
    flops = np.array([[0.0, 1e12], [2e12, 0.0]])
    bytes_ = np.array([[0.0, 0.0], [0.0, 3e12]])
    t = roofline_times(flops, bytes_, np.zeros((2, 2), dtype=np.int64), chip())
    assert t.time_s.shape == (2, 2)
    assert np.allclose(t.time_s, [[0.0, 0.01], [0.02, 3.0]], rtol=1e-12, atol=0.0)
