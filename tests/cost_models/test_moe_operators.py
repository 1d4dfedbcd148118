"""MoE FFN operators: router, experts woken, FLOPs of the routed tokens, sharding, MFU.

Checks by hand on Mixtral 8x7B's shapes (HF config.json: hidden 4096, 8 experts of 14336, top-2)."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.deployment import estimate, estimate_one
from cost_models.deployments import Deployment, Deployments
from cost_models.dtypes import BF16
from cost_models.hardware import get_hardware
from cost_models.inference_configs import make_configs
from cost_models.models import ModelSpec, get_model
from cost_models.moe import experts_woken, tokens_per_expert
from cost_models.operators import OP, operator_costs
from cost_models.partitioning import per_chip_costs, sharding_plan

D, F, E, K = 4096, 14336, 8, 2
MIXTRAL = ModelSpec(
    name="mixtral-test",
    source="test",
    layers=32,
    d_model=D,
    heads=32,
    kv_heads=8,
    d_head=128,
    d_ff=F,
    ffn="swiglu",
    vocab=32000,
    experts=E,
    experts_per_token=K,
    expert_d_ff=F,
)


def _ops(model: ModelSpec, batch: int, phase: str = "decode", seq_len: int = 100):
    configs = make_configs(model, phase=phase, batch=batch, seq_len=seq_len, weight_dtype=BF16)
    return configs, operator_costs(configs)


def test_experts_woken_by_hand() -> None:
    assert experts_woken(1, 8, 2) == pytest.approx(2.0)  # one token wakes its top-k
    assert experts_woken(2, 8, 2) == pytest.approx(8 * (1 - 0.75**2))  # 3.5
    assert experts_woken(10_000, 8, 2) == pytest.approx(8.0)
    assert experts_woken(np.array([1.0, 4.0]), 0.0, 0.0).tolist() == [0.0, 0.0]  # dense
    # 1 token, top-2: both woken experts get that token; 1000 tokens: 250 each of 8.
    assert tokens_per_expert(1, 8, 2) == pytest.approx(1.0)
    assert tokens_per_expert(1000, 8, 2) == pytest.approx(250.0)


def test_one_token_loads_k_experts_and_many_tokens_load_all() -> None:
    _, one = _ops(MIXTRAL, batch=1)
    assert one.weight_bytes[OP["expert_up"], 0] == pytest.approx(D * K * F * 2)
    assert one.weight_bytes[OP["expert_down"], 0] == pytest.approx(K * F * D * 2)
    _, many = _ops(MIXTRAL, batch=1, phase="prefill", seq_len=4096)
    assert many.weight_bytes[OP["expert_gate"], 0] == pytest.approx(D * E * F * 2)


def test_expert_flops_are_the_routed_tokens_only() -> None:
    """2 x N x k x 3 matrices x d x f, whatever the experts woken; the router 2 N d E."""
    batch = 16
    _, ops = _ops(MIXTRAL, batch=batch)
    experts = sum(ops.flops[OP[name], 0] for name in ("expert_gate", "expert_up", "expert_down"))
    assert experts == 2.0 * batch * K * 3 * D * F
    assert ops.flops[OP["router"], 0] == 2.0 * batch * D * E
    # Mixtral has no dense blocks: the dense FFN's slots are absent, the MoE ones run 32 times.
    for name in ("gate_proj", "up_proj", "mlp_act", "down_proj"):
        assert not ops.present[OP[name], 0] and ops.repeats[OP[name], 0] == 0
    for name in ("router", "expert_gate", "expert_up", "expert_act", "expert_down"):
        assert ops.present[OP[name], 0] and ops.repeats[OP[name], 0] == 32


def test_dense_layers_and_shared_experts() -> None:
    """2 dense blocks of d_ff 1000 then 3 MoE blocks: 4 experts of 100, top-1, one shared of 300."""
    model = ModelSpec(
        name="toy",
        source="test",
        layers=5,
        d_model=64,
        heads=4,
        kv_heads=4,
        d_head=16,
        d_ff=1000,
        ffn="gelu",
        vocab=50,
        experts=4,
        experts_per_token=1,
        expert_d_ff=100,
        shared_experts=1,
        shared_expert_d_ff=300,
        dense_layers=2,
    )
    _, ops = _ops(model, batch=1)
    assert ops.repeats[OP["up_proj"], 0] == 2 and ops.repeats[OP["expert_up"], 0] == 3
    assert ops.flops[OP["up_proj"], 0] == 2.0 * 64 * 1000
    assert ops.flops[OP["expert_up"], 0] == 2.0 * 64 * (100 + 300)
    assert ops.weight_bytes[OP["expert_up"], 0] == pytest.approx(64 * (1 * 100 + 300) * 2)
    assert not ops.present[OP["expert_gate"], 0]  # gelu: 2 matrices


def test_expert_tensor_parallelism_splits_each_expert_like_the_dense_ffn() -> None:
    """ws_1d on 1x1x2: each expert's d_ff splits 2 ways; the stored weights halve."""
    configs, ops = _ops(MIXTRAL, batch=1)
    mesh = np.array([[1.0, 1.0, 2.0]])
    layout = np.zeros(1, dtype=np.int64)  # ws_1d
    plan = sharding_plan(configs, mesh, layout)
    chip = per_chip_costs(ops, configs, mesh, layout, np.zeros(1, dtype=bool), plan)
    assert chip.weight_bytes[OP["expert_up"], 0] == pytest.approx(ops.weight_bytes[OP["expert_up"], 0] / 2)
    assert chip.weight_bytes[OP["router"], 0] == ops.weight_bytes[OP["router"], 0]  # replicated
    # Stored: every expert of every block, split 2 ways, plus the (vocab-split) embedding and head.
    assert plan.stored_elements[0] == pytest.approx(MIXTRAL.params / 2, rel=1e-3)


def test_mfu_counts_active_params_and_memory_all_params() -> None:
    chip = get_hardware("h100-sxm")
    row = Deployment(
        model=MIXTRAL,
        hardware=chip,
        mesh=(1, 1, 2),
        batch=8,
        prompt_len=1024,
        gen_len=128,
        prefill_ffn_layout="ws_1d",
        decode_ffn_layout="ws_1d",
    )
    result = estimate(Deployments.from_rows([row]))
    tokens = 8 * 1024
    flops_by_mfu = result.prefill.mfu[0] * 2 * chip.peak_table()[BF16] * result.prefill.latency_s[0]
    head = 8 * 32000 * D  # lm_head on the last position of each sequence
    embedding = 32000 * D
    assert flops_by_mfu / 2 == pytest.approx((MIXTRAL.active_params - 2 * embedding) * tokens + head, rel=1e-9)
    assert result.memory.weights_bytes_per_chip[0] == pytest.approx(MIXTRAL.params, rel=1e-3)  # 2 bytes / 2 chips


def test_moe_decode_is_cheaper_than_a_dense_model_of_all_its_params_and_dearer_than_the_active() -> None:
    """One sequence in decode: Mixtral loads 2 of 8 experts, about a 13B dense model's bytes."""
    common = dict(chips=2, batch=1, prompt_len=512, gen_len=64, calibration="none")
    moe = estimate_one(MIXTRAL, "h100-sxm", **common)["decode"]["step_latency_s"]
    all_dense = MIXTRAL.model_copy(update=dict(experts=0, experts_per_token=0, expert_d_ff=0, d_ff=E * F))
    active_dense = MIXTRAL.model_copy(update=dict(experts=0, experts_per_token=0, expert_d_ff=0, d_ff=K * F))
    assert estimate_one(active_dense, "h100-sxm", **common)["decode"]["step_latency_s"] <= moe
    assert moe < 0.5 * estimate_one(all_dense, "h100-sxm", **common)["decode"]["step_latency_s"]


@pytest.mark.parametrize("calibration", ["none", "auto"])
def test_estimate_reports_params_and_runs_for_moe(calibration: str) -> None:
    report = estimate_one(MIXTRAL, "h100-sxm", chips=2, batch=8, prompt_len=1024, gen_len=128, calibration=calibration)
    assert report["params"] == {"total": MIXTRAL.params, "active_per_token": MIXTRAL.active_params}
    for phase in ("prefill", "decode"):
        assert 0 < report[phase]["mfu"] < 1 and np.isfinite(report[phase]["latency_s"])


def test_a_dense_model_reports_equal_params() -> None:
    model = get_model("llama-2-7b")
    report = estimate_one(model, "h100-sxm", chips=1, batch=1, prompt_len=128, gen_len=8, calibration="none")
    assert report["params"]["total"] == report["params"]["active_per_token"] == model.params
