"""The dense-only view of a serving iteration (cost_models/iteration.py ``_dense_view``) and its
attention-only passes (no profile, or unfused attention) against the full per-operator pass they
replaced, bit for bit on every slot they keep.

``operator_costs(..., slots="dense")`` leaves out the attention and lm_head slots and
``dense_operator_times`` skips the roofline's totals, the calibrated kernels of slots no
configuration has and (calibrated) every per-chip cost of the weight matmuls but their FLOPs;
measured collectives skip the network model where every group that moves bytes is measured.
Each of these must leave the other slots', the collectives' and every row's numbers as they were.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cost_models.calibrated_times import calibrated_network
from cost_models.calibration import resolve_calibration
from cost_models.deployment import attention_operator_times, dense_operator_times, operator_times
from cost_models.deployments import Deployments, tensor_parallel
from cost_models.dtypes import BF16, FP8, INT4, INT8
from cost_models.hardware import get_hardware
from cost_models.inference_configs import PREFILL
from cost_models.iteration import iteration_shapes
from cost_models.models import get_model
from cost_models.operators import LM_HEAD, OP, operator_costs
from cost_models.topology import network_for

# MLA (deepseek-v3), sliding windows (gpt-oss, gemma-3), MoE (mixtral, gpt-oss, deepseek-v3).
MODELS = ("llama-3-8b", "llama-2-70b", "mixtral-8x7b", "deepseek-v3", "gpt-oss-20b", "gemma-3-27b", "qwen3-8b")
LEFT_OUT = [OP[name] for name in ("qk_matmul", "softmax", "sv_matmul", "fused_attention")] + [LM_HEAD]
KEPT = [i for i in range(len(OP)) if i not in LEFT_OUT]


def _deployments(n: int, seed: int, max_log2_chips: int = 4) -> Deployments:
    rng = np.random.default_rng(seed)
    catalog = [get_model(name) for name in MODELS]
    return tensor_parallel(
        catalog,
        get_hardware("h100-sxm"),
        2 ** rng.integers(0, max_log2_chips, n),
        model_index=rng.integers(0, len(catalog), n),
        weight_dtype=rng.choice([BF16, FP8, INT8, INT4], n),
        kv_dtype=rng.choice([BF16, FP8], n),
    )


def _tokens(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.5, np.floor(rng.uniform(1, 4096, n)), rng.uniform(1, 4096, n))


@pytest.mark.parametrize("flash", [True, False])
def test_dense_only_costs_equal_the_full_costs_on_the_dense_slots(flash: bool) -> None:
    n = 2000
    d = _deployments(n, seed=1)
    base = iteration_shapes(d, None).base
    configs = replace(base, batch=_tokens(n, 2), flash_attention=np.full(n, flash))
    full, dense = operator_costs(configs), operator_costs(configs, slots="dense")
    for name in ("flops", "weight_bytes", "act_read_bytes", "act_write_bytes", "kv_read_bytes", "kv_write_bytes"):
        a, b = getattr(full, name), getattr(dense, name)
        assert a[KEPT].tobytes() == b[KEPT].tobytes(), name
        assert not np.any(b[LEFT_OUT]), name  # left out: zero
    assert np.array_equal(full.present[KEPT], dense.present[KEPT])
    assert not np.any(dense.present[LEFT_OUT])
    assert full.repeats.tobytes() == dense.repeats.tobytes()
    assert np.any(full.flops[LEFT_OUT]) and np.any(full.present[LEFT_OUT])  # the full pass has them


@pytest.mark.parametrize("calibration", [None, "h100-sxm-trtllm", "h100-sxm-vllm"])
@pytest.mark.parametrize("max_log2_chips", [4, 6])  # one NVLink domain (TP 1-8); up to 32 GPUs
def test_dense_operator_times_equal_the_full_pass_on_the_dense_slots(
    calibration: str | None, max_log2_chips: int
) -> None:
    n = 3000
    d = _deployments(n, seed=3, max_log2_chips=max_log2_chips)
    profile = None if calibration is None else resolve_calibration(calibration, "h100-sxm")
    network = network_for(d.hardware)
    if profile is not None:
        network = calibrated_network(network, d.hardware, profile)
    shapes = iteration_shapes(d, profile)
    tokens = _tokens(n, 4)
    configs = replace(shapes.base, batch=tokens)
    for phase in ("prefill", "decode"):
        assert shapes.kv_ways is not None
        ways = shapes.kv_ways[phase]
        assert ways is not None
        args = (np.ones(n), network, profile, shapes.plans[phase], ways)
        full, _ = operator_times(d, phase, configs, operator_costs(configs), *args)
        dense = dense_operator_times(d, phase, configs, operator_costs(configs, slots="dense"), *args)
        assert full.op_time_s[KEPT].tobytes() == dense.op_time_s[KEPT].tobytes(), phase
        assert not np.any(dense.op_time_s[LEFT_OUT])
        assert np.asarray(full.comm_block_s).tobytes() == np.asarray(dense.comm_block_s).tobytes()
        assert (full.layer_overhead_s, full.step_overhead_s) == (dense.layer_overhead_s, dense.step_overhead_s)


def test_measured_collectives_do_not_depend_on_the_other_rows() -> None:
    """Where every group that moves bytes is measured (one NVLink domain) the network model is not
    evaluated: each row's seconds are those it gets beside rows across domains (where it is)."""
    hardware = get_hardware("h100-sxm")
    profile = resolve_calibration("h100-sxm-trtllm", "h100-sxm", "trtllm")
    assert profile is not None
    network = calibrated_network(network_for(hardware), hardware, profile)
    rng = np.random.default_rng(5)
    n = 500
    inside = np.stack([np.ones(n), np.ones(n), 2.0 ** rng.integers(0, 4, n)], axis=1)  # 1-8 GPUs
    across = np.stack([np.ones(n), 2.0 ** rng.integers(1, 3, n), np.full(n, 8.0)], axis=1)  # 16-32 GPUs
    data = 2.0 ** rng.uniform(0, 30, n)
    data[::9] = 0.0  # no bytes: 0 s
    for kind in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all"):
        for axes in ("z", "yz", "xyz"):
            alone = network.collective_time_s(kind, data, inside, axes)
            mixed = network.collective_time_s(
                kind, np.concatenate([data, data]), np.concatenate([inside, across]), axes
            )
            assert alone.tobytes() == mixed[:n].tobytes(), (kind, axes)
            assert np.all(alone[::9] == 0.0) and np.all(alone[inside[:, 2] == 1] == 0.0)


@pytest.mark.parametrize("calibration", [None, "h100-sxm-trtllm"])
@pytest.mark.parametrize("flash", [True, False])
def test_attention_operator_times_equal_the_full_pass_on_the_attention_slots(
    calibration: str | None, flash: bool
) -> None:
    """The attention views' passes (decode: sequences at their contexts; prefill: whole prompts)
    with only the attention kernels and the lm_head costed, without totals or collectives."""
    n = 2000
    d = _deployments(n, seed=6)
    profile = None if calibration is None else resolve_calibration(calibration, "h100-sxm")
    network = network_for(d.hardware)
    if profile is not None:
        network = calibrated_network(network, d.hardware, profile)
    shapes = iteration_shapes(d, profile)
    rng = np.random.default_rng(7)
    base = replace(shapes.base, flash_attention=np.full(n, flash))
    decode = replace(base, batch=rng.uniform(1, 64, n), seq_len=rng.uniform(1, 8192, n))
    prefill = replace(base, batch=np.maximum(rng.uniform(0, 3, n), 1.0)).at_phase(PREFILL, rng.uniform(1, 8192, n))
    kept = LEFT_OUT
    others = KEPT
    for configs, per_sequence in ((decode, np.ones(n)), (prefill, prefill.seq_len)):
        for phase in ("prefill", "decode"):
            assert shapes.kv_ways is not None
            ways = shapes.kv_ways[phase]
            assert ways is not None
            rest = (network, profile, shapes.plans[phase], ways)
            full, _ = operator_times(d, phase, configs, operator_costs(configs), per_sequence, *rest)
            alone = attention_operator_times(d, phase, configs, operator_costs(configs, slots="attention"), *rest)
            assert full.op_time_s[kept].tobytes() == alone[kept].tobytes(), phase
            assert not np.any(alone[others])
            assert np.any(full.op_time_s[kept])
