"""The routing the kernel database's collector forced on each measured MoE kernel (tuner/moe_routing.py),
checked against hand-counted cases of its published rules (ai-dynamo/aiconfigurator collector/helper.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.calibration import profile_for
from cost_models.moe import experts_woken
from tuner.moe_kernels import moe_data, pair_rows
from tuner.moe_routing import (
    balanced_experts_woken,
    experts_woken_by_loads,
    measured_experts_woken,
    power_law_loads,
)


@pytest.mark.parametrize(
    ("tokens", "experts", "top_k", "woken"),
    [
        (1, 128, 8, 8),  # stride 16: experts 0, 16, ..., 112
        (4, 128, 8, 32),  # fewer tokens than the stride: 4 x 8 distinct experts
        (16, 128, 8, 128),  # tokens >= stride 16: every residue
        (1000, 8, 2, 8),
        (2, 6, 4, 6),  # stride 2, 4 x 2 = 8 > 6 slots: the last offset wraps onto the first
    ],
)
def test_balanced_routing_wakes_the_collector_s_experts(tokens, experts, top_k, woken) -> None:
    assert balanced_experts_woken(tokens, experts, top_k) == woken


def test_power_law_loads_route_every_row_and_skew() -> None:
    rng = np.random.default_rng(0)
    for tokens, experts, top_k in ((8, 128, 8), (4096, 8, 2), (3, 256, 8)):
        loads = power_law_loads(rng, tokens, experts, top_k, 1.2)
        assert loads.sum() == tokens * top_k and loads.min() >= 0 and len(loads) == experts


def test_a_token_given_an_expert_twice_takes_another() -> None:
    """One token, top-2, both rows dealt to expert 3: its logits hold one 1, so top-2 takes another
    expert (the lowest-numbered it lacks): 2 experts wake, not 1."""
    loads = np.zeros(8, dtype=np.int64)
    loads[3] = 2
    assert experts_woken_by_loads(loads, tokens=1, top_k=2) == 2
    # Rows dealt 0, 0, 0, 3: tokens 0-1 take (0, 0) and (0, 3); token 0 refills expert 1, which no
    # row was dealt to: 3 experts wake where 2 have rows.
    loads = np.array([3, 0, 0, 1])
    assert experts_woken_by_loads(loads, tokens=2, top_k=2) == 3


def test_decode_routing_differs_from_uniform_as_measured() -> None:
    """At decode sizes the collector's power law wakes fewer experts than uniform routing, and
    balanced routing more: 8 tokens top-8 over 128 experts, uniform 51.6."""
    uniform = float(experts_woken(8, 128, 8))
    assert measured_experts_woken(8, 128, 8, "balanced") == 64.0
    for law in ("power_law_1.01", "power_law_1.2"):
        assert 30.0 < measured_experts_woken(8, 128, 8, law) < uniform - 5.0
    with pytest.raises(ValueError, match="routing distribution"):
        measured_experts_woken(8, 128, 8, "zipf")


def test_the_fit_reads_each_row_s_routing() -> None:
    """moe_data times a balanced decode row at min(E, N k) experts woken, not uniform routing's."""
    rows = [
        r
        for r in pair_rows("h100-sxm", "vllm")
        if r["distribution"] == "balanced" and int(r["num_tokens"]) * int(r["topk"]) <= int(r["num_experts"])
    ][:5]
    assert rows
    data = moe_data(rows, "h100-sxm", "vllm", profile_for("h100-sxm", "vllm"))
    expected = [min(int(r["num_experts"]), int(r["num_tokens"]) * int(r["topk"])) for r in rows]
    np.testing.assert_array_equal(data.woken, expected)
    np.testing.assert_allclose(data.tokens_per_expert, data.tokens * data.topk / data.woken)
