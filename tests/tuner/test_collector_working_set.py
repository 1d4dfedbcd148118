"""The collectors' working set (tuner/collector_working_set.py) and its use in the GEMM fit's L2
term (cost_models.efficiency.gemm_time_s ``l2_working_set_bytes``). Expected bytes by hand from
AIConfigurator's collect_gemm.py loops."""

import numpy as np
import pytest

from cost_models.efficiency import GemmParams, gemm_time_s
from cost_models.hardware import get_hardware
from tuner.collector_working_set import collector_working_set_bytes

L40S_L2 = 100_663_296.0  # 96 MiB


@pytest.mark.parametrize(
    ("engine", "fmt", "m", "n", "k", "expected"),
    [
        # 4 MiB of bf16 weights: ceil(96 / 4) = 24 copies, at most 5; one activation tensor.
        ("trtllm", "bfloat16", 8, 1024, 2048, 5 * 4_194_304 + 8 * 2048 * 2),
        # 60 MiB: ceil(96 / 60) = 2 copies.
        ("trtllm", "bfloat16", 1, 5120, 6144, 2 * 62_914_560 + 1 * 6144 * 2),
        # 128 MiB, over the L2: one copy.
        ("trtllm", "fp8", 4, 16384, 8192, 134_217_728 + 4 * 8192 * 2),
        ("vllm", "bfloat16", 16, 1024, 1024, 6 * 2_097_152 + 16 * 1024 * 2),
        ("vllm", "fp8_block", 16, 1024, 1024, 1_048_576 + 16 * 1024 * 2),
        ("sglang", "bfloat16", 16, 1024, 1024, 6 * (2_097_152 + 16 * 1024 * 2)),
        ("sglang", "fp8", 16, 1024, 1024, 6 * (1_048_576 + 16 * 1024 * 2 + 16 * 1024)),
        ("sglang", "fp8_block", 16, 1024, 1024, 6 * (1_048_576 + 16 * 1024 * 2 + 16 * 1024 * 2)),
    ],
)
def test_the_working_set_follows_each_collectors_loop(engine, fmt, m, n, k, expected):
    assert collector_working_set_bytes(engine, fmt, m, n, k, L40S_L2) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("engine", "fmt", "l2"),
    [("trtllm", "int4_wo", L40S_L2), ("trtllm", "sq", L40S_L2), ("jax", "bfloat16", L40S_L2), ("vllm", "fp8", None)],
)
def test_no_working_set_where_the_loop_is_not_known(engine, fmt, l2):
    assert collector_working_set_bytes(engine, fmt, 8, 1024, 1024, l2) is None


def test_the_fit_reads_the_l2_share_of_the_working_set_not_of_one_call():
    chip = get_hardware("l40s")
    params = GemmParams(l2_speedup=3.0, l2_capacity_fraction=0.5, output_l2_fraction=1.0)
    m, n, k = np.array([8.0, 8.0]), np.array([1024.0, 4096.0]), np.array([2048.0, 4096.0])
    one_call = n * k * 2 + m * k * 2
    alone = gemm_time_s(m, n, k, "bfloat16", chip, params, weights_in_l2=True)
    # A working set of one call's bytes is the former term, to rounding.
    same = gemm_time_s(m, n, k, "bfloat16", chip, params, weights_in_l2=True, l2_working_set_bytes=one_call)
    np.testing.assert_allclose(same, alone, rtol=1e-12)
    # Five copies of the weights leave less of them in L2: slower, not faster.
    cycled = collector_working_set_bytes("trtllm", "bfloat16", m, n, k, chip.l2_bytes)
    assert np.all(cycled > one_call)
    slower = gemm_time_s(m, n, k, "bfloat16", chip, params, weights_in_l2=True, l2_working_set_bytes=cycled)
    assert np.all(slower > alone * 1.01)
    # A deployment's GEMMs (weights_in_l2 False) have no collector loop: the argument changes nothing.
    cold = gemm_time_s(m, n, k, "bfloat16", chip, params)
    np.testing.assert_array_equal(gemm_time_s(m, n, k, "bfloat16", chip, params, l2_working_set_bytes=cycled), cold)


def test_a_moe_layer_holds_both_projections_of_its_woken_experts_and_the_activations():
    from tuner.collector_working_set import moe_collector_working_set_bytes

    # 8 woken experts of d=2048, f=768, gated (gate and up, then down), fp8 weights; 64 tokens.
    weights = 3 * 8 * 768 * 2048 * 1.0
    expected = weights + 64 * 2048 * 2
    assert moe_collector_working_set_bytes(64, 8, 768, 2048, 2.0, 1.0) == pytest.approx(expected)
    # Not gated: one up projection.
    assert moe_collector_working_set_bytes(64, 8, 768, 2048, 1.0, 1.0) == pytest.approx(
        2 * 8 * 768 * 2048 + 64 * 2048 * 2
    )
