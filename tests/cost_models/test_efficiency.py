"""Properties of the kernel efficiency model and the calibration profiles (cost_models)."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.calibration import available_profiles, load_profile, profile_for
from cost_models.efficiency import (
    WEIGHT_BYTES,
    GemmParams,
    collective_time_s,
    decode_attention_time_s,
    elementwise_time_s,
    gemm_time_s,
    peak_for_format,
    prefill_attention_time_s,
)
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware

H100 = get_hardware("h100-sxm")
PROFILE = load_profile("h100-sxm-trtllm")
SIZES = np.array([1, 8, 64, 256, 1024, 4096, 16384], dtype=float)


def test_every_data_pair_has_a_profile():
    names = available_profiles()
    assert len(names) == 18 + 1  # six GPUs x three engines, and TPU v4 fitted end to end (jax)
    assert "tpu-v4-jax" in names
    for chip in ("a100-80gb", "h100-sxm", "h200", "b200", "gb200", "l40s"):
        for backend in ("trtllm", "vllm", "sglang"):
            profile = profile_for(chip, backend)
            assert not profile.fallback and profile.chip == chip and profile.backend == backend
            assert profile.provenance is not None and profile.cv_error


@pytest.mark.parametrize("fmt", ["bfloat16", "fp8", "fp8_block"])
def test_gemm_monotone_in_every_size(fmt):
    params = PROFILE.gemm_params(fmt)
    for axis in range(3):
        shape = [np.full_like(SIZES, 512.0) for _ in range(3)]
        shape[axis] = SIZES
        t = gemm_time_s(*shape, fmt, H100, params)
        assert np.all(np.diff(t) >= -1e-12 * t[:-1]), (axis, t)


@pytest.mark.parametrize("name", ["h100-sxm-trtllm", "l40s-vllm", "a100-80gb-trtllm", "b200-sglang"])
def test_gemm_never_faster_than_roofline(name):
    profile = load_profile(name)
    chip = get_hardware(profile.chip)
    m, n, k = np.meshgrid(SIZES, SIZES, SIZES, indexing="ij")
    for fmt, params in profile.gemm.items():
        t = gemm_time_s(m, n, k, fmt, chip, params)
        compute = 2 * m * n * k / peak_for_format(chip, fmt)
        memory = n * k * WEIGHT_BYTES[fmt] / chip.memory_bandwidth_bytes_per_s
        # L2 can speed up only working sets that fit in it, by at most l2_speedup.
        assert np.all(t >= compute * (1 - 1e-9))
        assert np.all(t >= memory / params.l2_speedup * (1 - 1e-9))
        assert np.all(t >= gemm_time_s(m, n, k, fmt, chip, GemmParams()) / params.l2_speedup * (1 - 1e-9))


def test_gemm_vectorized_equals_scalar():
    params = PROFILE.gemm_params("fp8")
    m, n, k = np.array([1, 33, 4096.0]), np.array([4096, 128, 12288.0]), np.array([4096, 7168, 512.0])
    vector = gemm_time_s(m, n, k, "fp8", H100, params)
    scalar = [float(gemm_time_s(a, b, c, "fp8", H100, params)) for a, b, c in zip(m, n, k, strict=True)]
    np.testing.assert_array_equal(vector, scalar)


def test_roofline_defaults_reproduce_pure_roofline():
    t = gemm_time_s(4096, 4096, 4096, "bfloat16", H100, GemmParams())
    assert t == pytest.approx(2 * 4096**3 / H100.peak_ops_per_s.bf16)


def test_attention_monotone_and_vectorized():
    prefill = PROFILE.prefill_params("bfloat16", "bfloat16")
    t = prefill_attention_time_s(1, SIZES, 32, 8, 128, H100, prefill)
    assert np.all(np.diff(t) > 0)
    assert t[-1] >= 4 * 32 * 128 * SIZES[-1] * (SIZES[-1] + 1) / 2 / H100.peak_ops_per_s.bf16
    scalar = [float(prefill_attention_time_s(1, s, 32, 8, 128, H100, prefill)) for s in SIZES]
    np.testing.assert_array_equal(t, scalar)
    decode = PROFILE.decode_params("bfloat16")
    d = decode_attention_time_s(8, SIZES, 32, 8, 128, 2.0, H100, decode)
    assert np.all(np.diff(d) >= 0)
    kv_bytes = 8 * SIZES * 8 * 128 * 2 * 2.0
    assert np.all(d >= kv_bytes / H100.memory_bandwidth_bytes_per_s)
    b = decode_attention_time_s(SIZES, 4096, 32, 8, 128, 2.0, H100, decode)
    assert np.all(np.diff(b) > 0)


def test_elementwise_and_collectives():
    e = elementwise_time_s(SIZES * 1e6, H100, PROFILE.elementwise)
    assert np.all(np.diff(e) > 0) and np.all(e >= SIZES * 1e6 / H100.memory_bandwidth_bytes_per_s)
    for kind in ("all_reduce", "all_gather", "reduce_scatter", "alltoall"):
        table = PROFILE.collective_params(kind, "nccl")
        t = collective_time_s(kind, SIZES * 1e4, 8, table)
        assert np.all(np.diff(t) >= 0) and np.all(t > 0)
    assert collective_time_s("all_reduce", 1e6, 1, PROFILE.collective_params("all_reduce")) == 0
    with pytest.raises(InvalidInputError):
        collective_time_s("broadcast", 1e6, 8, PROFILE.collective_params("all_reduce"))


def test_default_profile_for_uncalibrated_chip():
    profile = profile_for("h100-sxm", "trtllm")
    assert not profile.fallback
    default = profile_for("a100-40gb", "vllm")
    assert default.fallback and default.chip == "a100-40gb" and "median" in default.fallback_reason
    assert "bfloat16" in default.gemm and not default.cv_error
    assert default.collective_params("all_reduce", "nccl")[8].latency_s > 0


def test_profile_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="not h100-sxm"):
        load_profile("l40s-vllm", chip="h100-sxm")
    bad = tmp_path / "bad.yaml"
    text = PROFILE.to_yaml().replace("compute_eff: ", "compute_eff: -", 1)
    bad.write_text(text)
    with pytest.raises(InvalidInputError, match=r"bad\.yaml\.gemm\.bfloat16\.compute_eff"):
        load_profile(bad)
    bad.write_text(PROFILE.to_yaml() + "surprise: 1\n")
    with pytest.raises(InvalidInputError, match="surprise"):
        load_profile(bad)
    bad.write_text("chip: [")
    with pytest.raises(InvalidInputError, match="bad.yaml"):
        load_profile(bad)
    with pytest.raises(InvalidInputError, match="backend"):
        profile_for("h100-sxm", "tgi")
    with pytest.raises(InvalidInputError, match="gemm"):
        PROFILE.gemm_params("int4_wo")
