"""The measured caveat of borrowed weight-only GEMMs (calibrated_times.MEASURED_WEIGHT_ONLY_BORROW_RATIO),
recomputed from the kernel database's A100 TensorRT-LLM weight-only rows, and said by the estimate."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from cost_models.calibrated_times import MEASURED_WEIGHT_ONLY_BORROW_RATIO, _gemm_params, calibrated_format_notes
from cost_models.calibration import profile_for
from cost_models.dtypes import BF16, INT4, INT8
from cost_models.efficiency import gemm_time_s
from cost_models.hardware import get_hardware

GEMM_FILE = Path(__file__).resolve().parents[2] / "data" / "kernels" / "gemm_perf.csv.gz"


@pytest.mark.parametrize("fmt", sorted(MEASURED_WEIGHT_ONLY_BORROW_RATIO))
def test_the_quoted_ratios_are_the_measured_ones(fmt: str) -> None:
    with gzip.open(GEMM_FILE, "rt") as handle:
        rows = [
            r
            for r in csv.DictReader(line for line in handle if not line.startswith("#"))
            if (r["system"], r["framework"], r["gemm_dtype"]) == ("a100_sxm", "TRTLLM", fmt)
        ]
    m, n, k = (np.array([float(r[c]) for r in rows]) for c in ("m", "n", "k"))
    measured_s = np.array([float(r["latency"]) for r in rows]) / 1e3
    profile = profile_for("a100-80gb", "trtllm")
    a100 = get_hardware("a100-80gb")
    own = gemm_time_s(m, n, k, fmt, a100, _gemm_params(profile, fmt), weights_in_l2=True)
    borrowing = profile.model_copy(update={"gemm": {f: p for f, p in profile.gemm.items() if f != fmt}})
    borrowed = gemm_time_s(m, n, k, fmt, a100, _gemm_params(borrowing, fmt), weights_in_l2=True)
    bins = [(m >= lo) & (m < hi) for lo, hi in ((1, 16), (16, 256), (256, np.inf))]
    medians = [float(np.median(borrowed[b] / measured_s[b])) for b in bins]
    least, most, count = MEASURED_WEIGHT_ONLY_BORROW_RATIO[fmt]
    assert count == len(rows)
    assert min(medians) == pytest.approx(least, abs=0.005) and max(medians) == pytest.approx(most, abs=0.005)
    # The format's own fit follows the rows the borrowing misses.
    assert all(0.95 < np.median(own[b] / measured_s[b]) < 1.05 for b in bins)


def test_the_estimate_says_a_borrowed_weight_only_gemm_is_optimistic() -> None:
    h200 = get_hardware("h200")
    notes = calibrated_format_notes(profile_for("h200", "vllm"), h200, 0, INT8, BF16)
    assert any("int8_wo GEMM fit" in n and "1.15-1.79x slower" in n for n in notes), notes
    notes = calibrated_format_notes(profile_for("h200", "vllm"), h200, 0, INT4, BF16)
    assert any("int4_wo GEMM fit" in n and "1.20-1.82x slower" in n for n in notes), notes
    # Where the format was measured (A100 TensorRT-LLM) nothing is borrowed and nothing is said.
    notes = calibrated_format_notes(profile_for("a100-80gb", "trtllm"), get_hardware("a100-80gb"), 0, INT4, BF16)
    assert not any("weight-only GEMMs" in n for n in notes), notes
