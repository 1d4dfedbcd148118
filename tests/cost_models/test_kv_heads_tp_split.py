"""A tensor-parallel size the KV heads do not split over is no vLLM or SGLang deployment.

Both shard the KV heads with QKVParallelLinear (vllm/model_executor/layers/linear.py and
python/sglang/srt/layers/linear.py, ``__init__``): ``divide(total_num_kv_heads, tp_size)`` heads a
rank when tp < kv_heads, else ``divide(tp_size, total_num_kv_heads)`` replicas of one head, and
``divide`` asserts divisibility. Phi-3-medium (its published config.json:
tests/fixtures/hf/phi3_medium.json) has 40 heads over 10 KV heads: TP 4 divides the 40 heads, but
neither 10 / 4 nor 4 / 10 is whole, so the engine fails at load. It was estimated (the KV cache
replicated on every chip, 4x what a rank of a real deployment holds) and searched as feasible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cost_models.deployment import estimate_one
from cost_models.deployments import engine_problem_mask, kv_heads_split_problem
from cost_models.errors import InvalidInputError
from cost_models.hf_config import model_from_hf_config

PHI3_MEDIUM = Path(__file__).parent.parent / "fixtures" / "hf" / "phi3_medium.json"


def test_tp_sizes_the_10_kv_heads_split_over() -> None:
    # 10 % tp == 0 for tp 1, 2, 5, 10; tp % 10 == 0 for 10, 20, 40; 3, 4, 8, 16 neither.
    tp = np.array([1, 2, 3, 4, 5, 8, 10, 16, 20, 40])
    assert kv_heads_split_problem(10, tp).tolist() == [False, False, True, True, False, True, False, True, False, False]
    assert not kv_heads_split_problem(0, tp).any()  # MLA's one latent: replicated, no rule


@pytest.mark.parametrize(("engine", "refused"), [("vllm", True), ("sglang", True), ("trtllm", False), (None, False)])
def test_the_engine_rule_names_vllm_and_sglang(engine: str | None, refused: bool) -> None:
    assert bool(engine_problem_mask(engine, 40, 0, 4, 1, 1, kv_heads=10)) is refused


def _estimate(**kwargs):
    model = model_from_hf_config(PHI3_MEDIUM)
    return estimate_one(model, "h100-sxm", batch=8, prompt_len=2000, gen_len=200, **kwargs)


def test_phi3_medium_at_tp_4_is_refused_in_one_line_with_the_sizes_that_run() -> None:
    with pytest.raises(InvalidInputError) as raised:
        _estimate(tp=4)
    message = str(raised.value)
    assert raised.value.field == "tp" and "\n" not in message
    assert "10 KV heads" in message and "vllm" in message
    assert "--tp 2 --dp 2" in message and "1, 2, 5, 10, 20, 40" in message


def test_phi3_medium_runs_where_the_kv_heads_split() -> None:
    report = _estimate(tp=2)
    assert report["memory"]["fits"]
    # TensorRT-LLM has no such rule here: the estimate runs, as before.
    assert _estimate(tp=4, backend="trtllm", calibration="none")["memory"]["fits"]


@pytest.mark.parametrize(("backend", "tps"), [("vllm", [1.0, 2.0]), ("sglang", [1.0, 2.0]), ("trtllm", [1, 2, 4, 8])])
def test_recommend_tries_only_the_tp_sizes_the_engine_launches(backend: str, tps: list) -> None:
    """tuner recommend's pools on 8-GPU H100 nodes are TP 1, 2, 4, 8 (powers of two dividing the
    40 heads); under vLLM or SGLang the 10 KV heads leave TP 1 and 2. Before, its best
    disaggregated plan for Phi-3-medium at 40 req/s was 4P x TP1 + 1D x TP4 (8 chips): a decode
    instance vLLM cannot load."""
    from cost_models.capacity import aggregated_candidates, disaggregated_candidates, problem

    p = problem(
        model_from_hf_config(PHI3_MEDIUM),
        "h100-sxm",
        request_rate=40.0,
        prompt_len=2000,
        gen_len=300,
        max_ttft_s=1.0,
        max_tpot_s=0.012,
        max_chips=16,
        backend=backend,
        calibration="none",
    )
    assert sorted(set(aggregated_candidates(p).tp.tolist())) == [float(t) for t in tps]
    pools = disaggregated_candidates(p)
    assert set(pools.decode_tp.tolist()) | set(pools.prefill_tp.tolist()) == {float(t) for t in tps}
