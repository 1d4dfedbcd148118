"""Attention-only views of an engine iteration (cost_models/iteration.py) equal the full views.

Under a calibration profile with fused attention, ``iteration_times`` scores the decode and
prefill attention views as just the attention kernel and the lm_head GEMM instead of full passes
of the per-operator model, and rows with equal deployment and tokens share one dense view. The
reference is the full-view path (``iteration_shapes(..., attention_only=False, share_rows=False)``:
every view of every row a pass of the per-operator model, attention views with only their slots
costed: tests/cost_models/test_dense_view.py shows those equal full passes), on a few
thousand random configurations and a grid with repeated rows: catalog decoders with MLA (DeepSeek-V3), sliding
windows (gpt-oss, Gemma 3), MoE, weight formats bf16/fp8/int8/int4/fp4, fp8 KV caches, TP 1-8,
on H100 (no fp4 units) and B200, ``serve`` in the closed and the open loop, chunked and not, and
disaggregated serving.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

import cost_models.disaggregated as disaggregated_module
import cost_models.iteration as iteration_module
import cost_models.serving as serving_module
from cost_models.calibrated_times import calibrated_network
from cost_models.calibration import resolve_calibration
from cost_models.deployments import Deployments, tensor_parallel
from cost_models.disaggregated import serve_disaggregated
from cost_models.dtypes import BF16, FP4, FP8, INT4, INT8
from cost_models.hardware import get_hardware
from cost_models.iteration import IterationTimes, iteration_shapes, iteration_times
from cost_models.models import get_model
from cost_models.partitioning import distinct_rows
from cost_models.serving import ServingEstimate, ServingWorkloads, make_workloads, serve
from cost_models.topology import network_for

MODELS = (
    "llama-3-8b",
    "llama-2-70b",
    "mistral-7b",
    "qwen3-8b",
    "mixtral-8x7b",
    "deepseek-v3",
    "gpt-oss-20b",
    "gemma-3-27b",
)
RTOL = 1e-9


def _deployments(chip: str, n: int, seed: int) -> Deployments:
    rng = np.random.default_rng(seed)
    hardware = get_hardware(chip)
    catalog = [get_model(name) for name in MODELS]
    weight = rng.choice([BF16, FP8, INT8, INT4, FP4], n)
    # fp4 weights with fp4 activations: the NVFP4 GEMM on B200, fp8's on H100 (no fp4 units).
    act = np.where((weight == FP4) & (rng.random(n) < 0.5), FP4, BF16)
    return tensor_parallel(
        catalog,
        hardware,
        2 ** rng.integers(0, 4, n),
        model_index=rng.integers(0, len(catalog), n),
        weight_dtype=weight,
        act_dtype=act,
        kv_dtype=rng.choice([BF16, FP8], n),
    )


def _assert_same(fast: object, reference: object, names: list[str]) -> None:
    for name in names:
        a, b = np.asarray(getattr(fast, name)), np.asarray(getattr(reference, name))
        if a.dtype == bool:
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=0.0, err_msg=name)


@pytest.mark.parametrize("chip", ["h100-sxm", "b200"])
def test_attention_only_views_equal_the_full_views(chip: str) -> None:
    n = 3000
    d = _deployments(chip, n, seed=7)
    profile = resolve_calibration("auto", chip, "trtllm")
    network = calibrated_network(network_for(d.hardware), d.hardware, profile)
    rng = np.random.default_rng(11)
    prompt = np.rint(2.0 ** rng.uniform(4, 14, n))
    kwargs = {
        "decode_seqs": np.where(rng.random(n) < 0.1, 0.0, 2.0 ** rng.uniform(-1, 9, n)),
        "decode_context": np.rint(2.0 ** rng.uniform(0, 15, n)),
        # a third decode-only, the rest a chunk from a fraction of a prompt to several prompts
        "prefill_tokens": np.where(rng.random(n) < 0.33, 0.0, prompt * 2.0 ** rng.uniform(-4, 3, n)),
        "prefill_prompt_len": prompt,
        "prefill_cached_share": np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0, 0.9, n)),
        "calibration": profile,
    }
    fast_shapes = iteration_shapes(d, profile)
    assert fast_shapes.attention_only  # fused attention under a profile: the fast path runs
    names = [f.name for f in fields(IterationTimes)]
    for phase in ("decode", "prefill"):
        for overlap in ("overlapped", "added"):
            fast = iteration_times(d, network, overlap=overlap, phase=phase, shapes=fast_shapes, **kwargs)
            full_shapes = iteration_shapes(d, profile, attention_only=False, share_rows=False)
            full = iteration_times(d, network, overlap=overlap, phase=phase, shapes=full_shapes, **kwargs)
            assert np.all(np.isfinite(full.latency_s)) and np.all(full.latency_s > 0)
            assert np.any(full.prefill_attention_s > 0) and np.any(full.prefill_attention_s == 0)
            _assert_same(fast, full, names)


def _two_models_tp1_or_tp2(models: tuple[str, str], n: int, rng: np.random.Generator, calibrated: bool):
    """n rows of two models on H100 at TP 1 or 2, bf16 or fp8 weights (8 deployment shapes), with
    the h100-sxm TRT-LLM profile and its network when ``calibrated``."""
    d = tensor_parallel(
        [get_model(name) for name in models],
        get_hardware("h100-sxm"),
        rng.choice([1, 2], n),
        model_index=rng.integers(0, 2, n),
        weight_dtype=rng.choice([BF16, FP8], n),
    )
    profile = resolve_calibration("auto", "h100-sxm", "trtllm") if calibrated else None
    network = network_for(d.hardware)
    if profile is not None:
        network = calibrated_network(network, d.hardware, profile)
    return d, profile, network


@pytest.mark.parametrize("calibrated", [True, False])
def test_rows_with_equal_deployments_and_tokens_share_one_dense_view(calibrated: bool) -> None:
    # A search's grid: few deployment shapes, whole concurrencies, a few chunk sizes. Equal rows
    # are scored once; every row must get the numbers a row-by-row pass gives it.
    n = 800
    rng = np.random.default_rng(22)
    d, profile, network = _two_models_tp1_or_tp2(("llama-3-8b", "deepseek-v3"), n, rng, calibrated)
    kwargs = {
        "decode_seqs": 2.0 ** rng.integers(0, 9, n),
        "decode_context": rng.choice([1024.0, 3000.0], n),
        "prefill_tokens": rng.choice([0.0, 0.0, 512.0, 2048.0], n),
        "prefill_prompt_len": rng.choice([1024.0, 2048.0], n),
        "calibration": profile,
    }
    shared = iteration_shapes(d, profile)
    assert shared.shape_id is not None
    tokens = kwargs["decode_seqs"] + kwargs["prefill_tokens"]
    assert len(distinct_rows(shared.shape_id, tokens)[0]) <= n // 2  # the shared path runs
    fast = iteration_times(d, network, shapes=shared, **kwargs)
    full = iteration_times(
        d, network, shapes=iteration_shapes(d, profile, attention_only=False, share_rows=False), **kwargs
    )
    _assert_same(fast, full, [f.name for f in fields(IterationTimes)])


def test_without_a_profile_or_with_unfused_attention_the_views_stay_full() -> None:
    d = _deployments("h100-sxm", 4, seed=1)
    assert not iteration_shapes(d, None).attention_only
    unfused = tensor_parallel(get_model("llama-3-8b"), get_hardware("h100-sxm"), [1, 2], flash_attention=False)
    assert not iteration_shapes(unfused, resolve_calibration("auto", "h100-sxm", "trtllm")).attention_only


def _serving_draw(closed: bool, n: int) -> tuple[Deployments, ServingWorkloads]:
    """n random deployments on H100s and TensorRT-LLM workloads, closed or open loop, chunked or
    not, with prefix hits and spread prompt lengths."""
    d = _deployments("h100-sxm", n, seed=3 if closed else 4)
    rng = np.random.default_rng(5)
    prompt = np.rint(2.0 ** rng.uniform(6, 13, n))
    chunked = rng.random(n) < 0.5
    load = {"concurrency": 2.0 ** rng.integers(0, 9, n)} if closed else {"request_rate": 2.0 ** rng.uniform(-2, 5, n)}
    w = make_workloads(
        backend="trtllm",
        prompt_len=prompt,
        gen_len=np.rint(2.0 ** rng.uniform(3, 10, n)),
        # spread lengths on a third: the closed loop's desynchronized TTFT path runs too
        prompt_len_std=np.where(rng.random(n) < 0.33, prompt / 4.0, 0.0),
        prefix_hit_rate=np.where(rng.random(n) < 0.3, 0.5, 0.0),
        max_num_tokens=np.where(chunked, rng.choice([512.0, 2048.0, 8192.0], n), np.maximum(8192.0, prompt)),
        chunked_prefill=chunked,
        **load,
    )
    return d, w


@pytest.mark.parametrize("closed", [True, False])
def test_serve_with_attention_only_views_equals_serve_with_full_views(closed: bool, monkeypatch) -> None:
    n = 2000
    d, w = _serving_draw(closed, n)
    profile = resolve_calibration("auto", "h100-sxm", "trtllm")
    fast = serve(d, w, calibration=profile)
    original = serving_module.iteration_shapes

    def full_views(deps, calibration, **kw):
        return original(deps, calibration, attention_only=False, share_rows=False, **kw)

    monkeypatch.setattr(serving_module, "iteration_shapes", full_views)
    full = serve(d, w, calibration=profile)
    assert np.sum(full.stable) > n // 4  # the comparison covers working configurations
    names = [f.name for f in fields(ServingEstimate)]
    _assert_same_estimate(fast, full, names)


@pytest.mark.parametrize("closed", [True, False])
def test_a_row_scores_the_same_whatever_rows_are_scored_beside_it(closed: bool) -> None:
    """``serve`` on the draw above in one call equals it on a shuffle of the rows in 13 calls (as
    the two views must: _assert_same_estimate). Until 2026-12-07 three rows of the open draw did
    not (row 723, 4 H100s under TensorRT-LLM at 13.3 req/s, 3016-token chunked prompts: TTFT
    0.477 s alone, 0.489 s beside row 722): a mixed iteration at its chunked budget holds
    d + (B - d) tokens, which rounded an ulp over B and started another GEMM tile in some batches
    and not in others (cost_models.iteration.whole_where_rounding)."""
    n = 2000
    d, w = _serving_draw(closed, n)
    profile = resolve_calibration("auto", "h100-sxm", "trtllm")
    together = serve(d, w, calibration=profile)
    order = np.random.default_rng(0).permutation(n)
    parts = [serve(d.take(rows), w.take(rows), calibration=profile) for rows in np.array_split(order, 13)]
    back = np.argsort(order)
    shuffled = {}
    for f in fields(ServingEstimate):
        value = getattr(together, f.name)
        if np.ndim(value) >= 1 and np.shape(value)[0] == n:
            value = np.concatenate([np.asarray(getattr(part, f.name)) for part in parts])[back]
        shuffled[f.name] = value
    # (0 rows apart in either draw today; _assert_same_estimate's allowance, a few rows at the open
    # loop's stopping threshold, is for last-bit differences of shared views, which a round sitting
    # at the threshold can turn into a stop one round apart)
    _assert_same_estimate(together, ServingEstimate(**shuffled), [f.name for f in fields(ServingEstimate)])


def _assert_same_estimate(fast: ServingEstimate, full: ServingEstimate, names: list[str]) -> None:
    """Equal to RTOL, but for a few rows an open loop's fixed point stopped a round apart: the two
    views' iteration times differ in the last bits (1e-16 relative), and a row whose round sits
    at the stopping threshold (serving._SETTLED: a round moving the mean iteration and the mixed
    share by at most 1e-4; until 2026-12-06 serving._CARRIED, the prompt work carried within 1%)
    stops one round earlier in one of them, its outputs then within that threshold. A divergence
    of the views themselves moves many rows or by more."""
    for name in names:  # infinite (unstable) in the same rows, equal elsewhere
        a, b = np.asarray(getattr(fast, name)), np.asarray(getattr(full, name))
        if a.dtype.kind not in "fi":  # flags and labels (which pool limits)
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b), err_msg=name)
            finite = np.isfinite(b)
            a, b = a[finite], b[finite]
            apart = ~np.isclose(a, b, rtol=RTOL, atol=0.0)
            assert np.count_nonzero(apart) <= len(b) // 500, (name, np.flatnonzero(apart))
            np.testing.assert_allclose(a[apart], b[apart], rtol=serving_module._SETTLED, atol=0.0, err_msg=name)


@pytest.mark.parametrize("closed", [True, False])
def test_disaggregated_serving_with_attention_only_views_equals_full_views(closed: bool, monkeypatch) -> None:
    n = 10 if closed else 60  # (the closed loop searches each row's rate: seconds per row)
    prefill, decode = _deployments("h100-sxm", n, seed=8), _deployments("h100-sxm", n, seed=8)
    rng = np.random.default_rng(9)
    prompt = np.rint(2.0 ** rng.uniform(6, 12, n))
    load = {"concurrency": 2.0 ** rng.integers(0, 8, n)} if closed else {"request_rate": 2.0 ** rng.uniform(-2, 4, n)}
    w = make_workloads(backend="vllm", prompt_len=prompt, gen_len=np.rint(2.0 ** rng.uniform(3, 10, n)), **load)
    profile = resolve_calibration("auto", "h100-sxm", "vllm")
    counts = {"prefill_instances": rng.integers(1, 4, n), "decode_instances": rng.integers(1, 4, n)}
    fast = serve_disaggregated(prefill, decode, w, calibration=profile, **counts)
    original = disaggregated_module.iteration_shapes
    monkeypatch.setattr(
        disaggregated_module,
        "iteration_shapes",
        lambda deps, calibration, **kw: original(deps, calibration, attention_only=False, share_rows=False, **kw),
    )
    full = serve_disaggregated(prefill, decode, w, calibration=profile, **counts)
    assert np.sum(np.isfinite(full.tpot_s)) >= n // 5
    _assert_same_estimate(fast, full, [f.name for f in fields(full)])


@pytest.mark.parametrize("calibrated", [True, False])
@pytest.mark.parametrize("whole_share", [0.4, 1.0])
def test_partly_whole_or_mostly_distinct_views_share_rows_bit_for_bit(
    calibrated: bool, whole_share: float, monkeypatch
) -> None:
    # The open loop's views: some rows pinned at a whole number of sequences (2, their slots)
    # beside rows at a continuous fixed point (whole_share 0.4), or whole rows mostly distinct
    # (a prompt on its deployment, 1.0). Shared rows must give exactly the numbers of scoring
    # every row (np.array_equal, not a tolerance: the serving results are compared bit for bit).
    n = 3000
    rng = np.random.default_rng(6)
    # 8 deployment shapes, MoE among them
    d, profile, network = _two_models_tp1_or_tp2(("llama-3-8b", "mixtral-8x7b"), n, rng, calibrated)
    whole = rng.random(n) < whole_share
    seqs = np.where(whole, rng.choice([1.0, 2.0, 64.0], n), rng.uniform(1.0, 300.0, n))
    if whole_share == 1.0:  # whole and mostly distinct (about 65%): 8 shapes x 400 token counts
        seqs = rng.integers(1, 401, n).astype(np.float64)
    kwargs = {
        "decode_seqs": seqs,
        "decode_context": np.rint(2.0 ** rng.uniform(5, 13, n)),
        "prefill_tokens": np.zeros(n),
        "prefill_prompt_len": np.full(n, 1024.0),
        "calibration": profile,
    }
    chosen: list[bool] = []  # the C-order gathers that ran (the sharing this test is about)
    original = iteration_module._shared_rows

    def spy(shape_id: np.ndarray, tokens: np.ndarray):  # type: ignore[no-untyped-def]
        shared = original(shape_id, tokens)
        chosen.append(shared is not None and shared[2])
        return shared

    monkeypatch.setattr(iteration_module, "_shared_rows", spy)
    fast = iteration_times(d, network, shapes=iteration_shapes(d, profile), **kwargs)
    assert chosen == [True]
    reference = iteration_times(d, network, shapes=iteration_shapes(d, profile, share_rows=False), **kwargs)
    for f in fields(IterationTimes):
        np.testing.assert_array_equal(getattr(fast, f.name), getattr(reference, f.name), err_msg=f.name)
