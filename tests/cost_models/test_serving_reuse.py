"""The open loop's reuse of repeated iterations (cost_models/serving.py ``iteration_again``) and
the KV split computed once per set of deployments (cost_models/iteration.py
``_batch_free_kv_ways``) give the same numbers as scoring every iteration of every row with the
ways computed per view (the scheme of commit d2d92fd): compared exactly, on a few thousand random
open-loop rows (chunked and not, spread prompts, prefix hits, loads from idle to overloaded) with
head- and batch-sharded decode attention."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest

import cost_models.iteration as iteration_module
import cost_models.serving as serving_module
from cost_models.calibration import resolve_calibration
from cost_models.deployments import tensor_parallel
from cost_models.dtypes import BF16, FP8
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.partitioning import ATTENTION_SHARDINGS
from cost_models.serving import ServingEstimate, make_workloads, serve

MODELS = ("llama-3-8b", "llama-2-70b", "mistral-7b", "mixtral-8x7b", "gpt-oss-20b")


def _open_loops(rng: np.random.Generator, n: int, engine: str):
    """n open-loop workloads under ``engine``: rates 0.25-64/s, prompts 64-8192 tokens (a third
    spread), outputs 8-1024, prefix hits on 30%, half chunked at 512-8192 tokens a budget."""
    prompt = np.rint(2.0 ** rng.uniform(6, 13, n))
    chunked = rng.random(n) < 0.5
    return make_workloads(
        backend=engine,
        request_rate=2.0 ** rng.uniform(-2, 6, n),
        prompt_len=prompt,
        gen_len=np.rint(2.0 ** rng.uniform(3, 10, n)),
        prompt_len_std=np.where(rng.random(n) < 0.33, prompt / 4.0, 0.0),
        prefix_hit_rate=np.where(rng.random(n) < 0.3, 0.5, 0.0),
        max_num_tokens=np.where(chunked, rng.choice([512.0, 2048.0, 8192.0], n), np.maximum(8192.0, prompt)),
        chunked_prefill=chunked,
    )


def _h100_deployments(rng: np.random.Generator, n: int):
    """n catalog models (MODELS) on 1-8 H100s in tensor parallelism, bf16 or fp8 weights."""
    catalog = [get_model(name) for name in MODELS]
    return tensor_parallel(
        catalog,
        get_hardware("h100-sxm"),
        2 ** rng.integers(0, 4, n),
        model_index=rng.integers(0, len(catalog), n),
        weight_dtype=rng.choice([BF16, FP8], n),
    )


@pytest.mark.parametrize("batch_sharded_share", [0.0, 0.3])
def test_open_loop_reuse_equals_scoring_every_iteration(batch_sharded_share: float, monkeypatch) -> None:
    n = 3000
    rng = np.random.default_rng(11)
    d = _h100_deployments(rng, n)
    sharded = rng.random(n) < batch_sharded_share
    d = replace(d, decode_attn_sharding=np.where(sharded, ATTENTION_SHARDINGS.index("batch"), d.decode_attn_sharding))
    w = _open_loops(rng, n, "trtllm")
    profile = resolve_calibration("auto", "h100-sxm", "trtllm")

    taken: list[int] = []  # sub-batches scored by the reuse (it must have run)
    original_take = serving_module._Setting.take

    def counted_take(setting: serving_module._Setting, rows: np.ndarray) -> serving_module._Setting:
        taken.append(len(rows))
        return original_take(setting, rows)

    monkeypatch.setattr(serving_module._Setting, "take", counted_take)
    fast = serve(d, w, calibration=profile)
    assert taken and min(taken) < n

    # The reference: every iteration of every row scored, KV ways computed per view.
    monkeypatch.setattr(serving_module, "_REUSE_AT_LEAST", np.inf)
    monkeypatch.setattr(iteration_module, "_batch_free_kv_ways", lambda deployments: None)
    reference = serve(d, w, calibration=profile)
    assert 0 < np.sum(reference.stable) < n  # both stable and overloaded rows
    for f in fields(ServingEstimate):
        np.testing.assert_array_equal(getattr(fast, f.name), getattr(reference, f.name), err_msg=f.name)


def test_shapes_take_is_the_shapes_of_the_sub_batch() -> None:
    rng = np.random.default_rng(12)
    n = 200
    d = tensor_parallel([get_model("llama-3-8b")], get_hardware("h100-sxm"), 2 ** rng.integers(0, 4, n))
    profile = resolve_calibration("auto", "h100-sxm", "trtllm")
    rows = np.flatnonzero(rng.random(n) < 0.5)
    taken = iteration_module.iteration_shapes(d, profile).take(rows)
    direct = iteration_module.iteration_shapes(d.take(rows), profile)
    assert taken.kv_ways is not None and direct.kv_ways is not None
    for phase in ("prefill", "decode"):
        np.testing.assert_array_equal(taken.plans[phase].in_use_ways, direct.plans[phase].in_use_ways)
        np.testing.assert_array_equal(taken.kv_ways[phase], direct.kv_ways[phase])
    np.testing.assert_array_equal(taken.base.batch, direct.base.batch)


@pytest.mark.parametrize("engine", ["trtllm", "vllm"])
def test_rounds_scored_in_one_call_equal_two_calls(engine: str, monkeypatch) -> None:
    """The rounds that score their mixed and decode-only iterations in one call on the rows twice
    over (``_both_iterations``) give the numbers of scoring them in two calls, exactly: random
    open loops of dense and MoE models, chunked and not, spread prompts, prefix hits, whole and
    fractional token counts, and vLLM's CUDA-graph replay beside eager iterations."""
    n = 2000
    rng = np.random.default_rng(13)
    d = _h100_deployments(rng, n)
    w = _open_loops(rng, n, engine)
    profile = resolve_calibration("auto", "h100-sxm", engine)

    merged: list[int] = []  # rows of the rounds scored in one call (the path must have run)
    original = serving_module._both_iterations

    def counted(setting, decoding, *args):
        both = original(setting, decoding, *args)
        if both is not None:
            merged.append(len(decoding))
        return both

    monkeypatch.setattr(serving_module, "_both_iterations", counted)
    fast = serve(d, w, calibration=profile)
    assert len(merged) >= 3 and min(merged) < 50

    monkeypatch.setattr(serving_module, "_MERGE_AT_MOST", 0)  # every round in two calls
    reference = serve(d, w, calibration=profile)
    assert 0 < np.sum(reference.stable) < n
    for f in fields(ServingEstimate):
        np.testing.assert_array_equal(getattr(fast, f.name), getattr(reference, f.name), err_msg=f.name)
