"""The roofline: an operator takes as long as the slower of its compute and its memory traffic.

time(op) = max(FLOPs / (peak x efficiency), bytes / (bandwidth x efficiency)) (Williams et al.
2009; design.md "Roofline"). The peak is the one of the operator's compute format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cost_models.hardware import HardwareSpec


@dataclass(frozen=True)
class RooflineTimes:
    """Seconds per execution of each operator; arrays shaped like the operator cost arrays."""

    compute_s: np.ndarray
    memory_s: np.ndarray

    @property
    def time_s(self) -> np.ndarray:
        return np.maximum(self.compute_s, self.memory_s)

    @property
    def compute_bound(self) -> np.ndarray:
        """True where compute, not memory, sets the time."""
        return self.compute_s >= self.memory_s


def roofline_times(
    flops: np.ndarray, bytes_: np.ndarray, compute_dtype: np.ndarray, hardware: HardwareSpec
) -> RooflineTimes:
    """Compute and memory time of operators on one chip."""
    peaks = hardware.peak_table()[compute_dtype] * hardware.efficiency.compute
    bandwidth = hardware.memory_bandwidth_bytes_per_s * hardware.efficiency.memory
    return RooflineTimes(compute_s=flops / peaks, memory_s=bytes_ / bandwidth)
