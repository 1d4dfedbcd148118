"""Mixture-of-experts model description: validation and parameter counts (total, active).

Values by hand from the published config.json numbers; totals match the model cards."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from cost_models.model_counts import active_params_per_token, total_params
from cost_models.models import ModelSpec, get_model

# Mixtral 8x7B (HF mistralai/Mixtral-8x7B-v0.1 config.json): 32 layers, hidden 4096, 32 heads,
# 8 KV heads, head 128, 8 experts of intermediate 14336, top-2, vocab 32000, untied.
MIXTRAL = dict(
    source="test",
    layers=32,
    d_model=4096,
    heads=32,
    kv_heads=8,
    d_head=128,
    d_ff=14336,
    ffn="swiglu",
    vocab=32000,
    experts=8,
    experts_per_token=2,
    expert_d_ff=14336,
)


def _mixtral(**changes) -> ModelSpec:
    return ModelSpec(name="mixtral", **{**MIXTRAL, **changes})


def test_mixtral_total_and_active_by_hand() -> None:
    """Attention 4096 x 128 x (2 x 32 + 2 x 8) = 41.94M per layer; one expert 3 x 4096 x 14336
    = 176.16M; router 4096 x 8; embedding + lm_head 2 x 32000 x 4096 = 262.1M."""
    m = _mixtral()
    attention = 4096 * 128 * (2 * 32 + 2 * 8)
    expert = 3 * 4096 * 14336
    router = 4096 * 8
    embed = 2 * 32000 * 4096
    assert m.params == 32 * (attention + 8 * expert + router) + embed
    assert m.active_params == 32 * (attention + 2 * expert + router) + embed
    # The Mixtral paper (arXiv 2401.04088): 47B parameters, 13B active (model card: 46.7B, 12.9B).
    assert m.params == pytest.approx(46.7e9, rel=2e-3)
    assert m.active_params == pytest.approx(12.9e9, rel=2e-3)


def test_shared_experts_and_dense_layers_by_hand() -> None:
    """DeepSeek-style: the first 2 blocks dense (d_ff 1000), 2 shared experts of 300 each."""
    m = ModelSpec(
        name="toy",
        source="test",
        layers=5,
        d_model=10,
        heads=2,
        kv_heads=1,
        d_head=5,
        d_ff=1000,
        ffn="swiglu",
        vocab=7,
        experts=4,
        experts_per_token=2,
        expert_d_ff=100,
        shared_experts=2,
        shared_expert_d_ff=300,
        dense_layers=2,
    )
    attention = 10 * 5 * (2 * 2 + 2 * 1)
    dense_ffn = 3 * 10 * 1000
    moe_total = 10 * 4 + 3 * 10 * (4 * 100 + 600)
    moe_active = 10 * 4 + 3 * 10 * (2 * 100 + 600)
    embed = 2 * 7 * 10
    assert m.moe_layers == 3
    assert m.shared_d_ff == 600
    assert m.params == 5 * attention + 2 * dense_ffn + 3 * moe_total + embed
    assert m.active_params == 5 * attention + 2 * dense_ffn + 3 * moe_active + embed


def test_a_dense_model_has_as_many_active_as_total_params() -> None:
    for name in ("llama-2-7b", "palm-540b", "gpt2"):
        m = get_model(name)
        assert not m.is_moe and m.moe_layers == 0
        assert m.active_params == m.params


def test_counts_are_vectorized() -> None:
    """Two models in one call: a dense one (moe_layers 0) and Mixtral."""
    args = [np.array(v, dtype=float) for v in ([32, 32], [4096] * 2, [32] * 2, [8] * 2, [128] * 2, [14336] * 2)]
    total = total_params(
        *args,
        np.array([True, True]),
        np.array([32000.0] * 2),
        np.array([False, False]),
        moe_layers=np.array([0.0, 32.0]),
        experts=np.array([0.0, 8.0]),
        experts_per_token=np.array([0.0, 2.0]),
        expert_d_ff=np.array([0.0, 14336.0]),
        shared_d_ff=np.zeros(2),
    )
    active = active_params_per_token(
        *args,
        np.array([True, True]),
        np.array([32000.0] * 2),
        np.array([False, False]),
        moe_layers=np.array([0.0, 32.0]),
        experts=np.array([0.0, 8.0]),
        experts_per_token=np.array([0.0, 2.0]),
        expert_d_ff=np.array([0.0, 14336.0]),
        shared_d_ff=np.zeros(2),
    )
    assert total[1] == _mixtral().params and active[1] == _mixtral().active_params
    assert total[0] == active[0] == _mixtral(experts=0, experts_per_token=0, expert_d_ff=0).params


@pytest.mark.parametrize(
    "changes,field",
    [
        (dict(experts_per_token=9), "experts_per_token"),
        (dict(experts_per_token=0), "experts_per_token"),
        (dict(expert_d_ff=0), "expert_d_ff"),
        (dict(dense_layers=32), "dense_layers"),
        (dict(shared_expert_d_ff=100), "shared_expert_d_ff"),
        (dict(experts=0), "experts_per_token"),  # top-k without experts
        (dict(experts=-1), "experts"),
    ],
)
def test_inconsistent_moe_fields_are_refused_naming_the_field(changes, field) -> None:
    with pytest.raises(ValidationError) as error:
        _mixtral(**changes)
    assert field in str(error.value)
