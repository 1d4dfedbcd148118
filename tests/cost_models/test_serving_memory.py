"""Each serving engine's KV-cache budget as the engine itself sizes it (cost_models/serving.py,
kv_budget_bytes): TensorRT-LLM takes its fraction of the memory free after weights and the
profiling forward, vLLM its fraction of the total less everything else it holds, SGLang its
fraction of the total for weights and cache together (activations live outside it).

The case: Llama 3 70B in 16 bits, tensor parallel over 2 H200s. Every figure is written out from
the catalog (cost_models/catalog/models.yaml, llama-3-70b: 80 layers, d_model 8192, 64 heads, 8 KV
heads of 128, SwiGLU d_ff 28672, vocab 128256, untied embeddings; hardware.yaml, h200: 143,771 MiB
= 150,754,820,096 B as nvidia-smi reports it), not from the code under test."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cost_models.deployments import make_deployments
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.serving import (
    engine_memory_bytes,
    kv_capacity_tokens,
    make_workloads,
    serve,
    sglang_activation_shortfall,
    validate_workloads,
)
from cost_models.serving_simulation import simulate_serving

H200_BYTES = 143_771 * 2**20  # 150,754,820,096
CHIPS = 2
# Weights per chip, 2 bytes each, split over the 2 chips: per layer Q and O (8192 x 8192 each),
# K and V (8192 x 8 x 128 each) and the three SwiGLU matrices (8192 x 28672 each); the embedding
# and the untied lm_head (128256 x 8192 each). (The model charges no norm weights.)
LAYER = 8192 * (2 * 8192 + 2 * 8 * 128) + 3 * 8192 * 28672
WEIGHTS = (80 * LAYER + 2 * 128256 * 8192) * 2 / CHIPS  # 70,552,387,584 B
# Activations of one full iteration of max_num_tokens 8192 tokens (every engine's default): the
# widest intermediate (the gated FFN input, 2 x 28672, wider than vocab / 8), twice, in 2 bytes,
# split over the chips.
ACTIVATIONS = 2 * 8192 * (2 * 28672) * 2 / CHIPS  # 939,524,096 B
# KV bytes per token per chip: K and V of 80 layers x 8 KV heads x 128, 2 bytes, heads split in 2.
KV_PER_TOKEN = 2 * 80 * 8 * 128 * 2 / CHIPS  # 163,840 B

EXPECTED_BUDGET = {
    # TensorRT-LLM: free_gpu_memory_fraction 0.9 of what the weights and the profiling forward
    # left free (tensorrt_llm/_torch/pyexecutor/_util.py, KvCacheCreator._cal_max_memory).
    "trtllm": 0.9 * (H200_BYTES - WEIGHTS - ACTIVATIONS),  # 71.34 GB
    # vLLM: gpu_memory_utilization 0.9 of the total less weights and peak activations
    # (vllm/v1/worker/gpu_worker.py, Worker.determine_available_memory).
    "vllm": 0.9 * H200_BYTES - WEIGHTS - ACTIVATIONS,  # 64.19 GB
    # SGLang: mem_fraction_static 0.88 of the total for weights and KV pool
    # (model_runner_kv_cache_mixin.py, profile_max_num_token).
    "sglang": 0.88 * H200_BYTES - WEIGHTS,  # 62.11 GB
}


def _llama3_70b_on_two_h200s():
    return make_deployments(
        get_model("llama-3-70b"),
        get_hardware("h200"),
        mesh=[1, 1, CHIPS],
        batch=1,
        prompt_len=1024,
        gen_len=256,
        prefill_ffn_layout=0,
        decode_ffn_layout=0,
        flash_attention=True,
    )


def _workload(engine: str, **knobs):
    return make_workloads(backend=engine, concurrency=64, prompt_len=1024, gen_len=256, **knobs)


@pytest.mark.parametrize("engine", sorted(EXPECTED_BUDGET))
def test_each_engine_sizes_the_kv_cache_by_its_own_rule(engine: str) -> None:
    d = _llama3_70b_on_two_h200s()
    tokens = kv_capacity_tokens(d, _workload(engine))[0]
    assert tokens == math.floor(EXPECTED_BUDGET[engine] / KV_PER_TOKEN)


def test_the_engines_differ_as_their_rules_say() -> None:
    """At 0.9 TensorRT-LLM keeps 10% of the free memory back, vLLM 10% of the total: TensorRT-LLM's
    cache is larger by 0.1 x (weights + activations); SGLang charges no activations to its 0.88."""
    d = _llama3_70b_on_two_h200s()
    tokens = {engine: kv_capacity_tokens(d, _workload(engine))[0] for engine in EXPECTED_BUDGET}
    assert tokens["trtllm"] > tokens["vllm"] > tokens["sglang"]
    gap = (tokens["trtllm"] - tokens["vllm"]) * KV_PER_TOKEN
    assert gap == pytest.approx(0.1 * (WEIGHTS + ACTIVATIONS), abs=KV_PER_TOKEN)


def _hand_budget(engine: str, fraction: float, weights: float, activations: float) -> float:
    """Each engine's KV budget on one H200 by its rule, as its source states it (TensorRT-LLM: a
    share of what weights and activations leave; vLLM: a share of all memory, less both; SGLang:
    a share of all memory for weights and KV cache, activations outside it)."""
    return {
        "trtllm": fraction * (H200_BYTES - weights - activations),
        "vllm": fraction * H200_BYTES - weights - activations,
        "sglang": fraction * H200_BYTES - weights,
    }[engine]


@pytest.mark.parametrize("engine", sorted(EXPECTED_BUDGET))
def test_the_fraction_means_the_engines_knob(engine: str) -> None:
    """The same 0.8 given to each engine: each budget follows its own rule at 0.8."""
    d = _llama3_70b_on_two_h200s()
    f = 0.8
    expected = _hand_budget(engine, f, WEIGHTS, ACTIVATIONS)
    tokens = kv_capacity_tokens(d, _workload(engine, memory_fraction=f))[0]
    assert tokens == math.floor(expected / KV_PER_TOKEN)


def test_jax_keeps_vllms_rule() -> None:
    """No JAX engine's source was read: its budget is vLLM's rule (0.9 of the total less weights and
    activations), as every engine's was before."""
    d = _llama3_70b_on_two_h200s()
    assert kv_capacity_tokens(d, _workload("jax"))[0] == math.floor(EXPECTED_BUDGET["vllm"] / KV_PER_TOKEN)


def test_sglang_charges_no_activations_to_its_static_share() -> None:
    """A larger token budget costs vLLM and TensorRT-LLM KV cache (their profiling forward runs it);
    SGLang's static share holds weights and cache only."""
    d = _llama3_70b_on_two_h200s()
    for engine, changes in (("trtllm", True), ("vllm", True), ("sglang", False)):
        small = kv_capacity_tokens(d, _workload(engine, max_num_tokens=2048))[0]
        large = kv_capacity_tokens(d, _workload(engine, max_num_tokens=16384))[0]
        assert (small > large) == changes, engine


def test_serving_and_the_simulation_use_the_engines_budget() -> None:
    """serve's slots and the discrete-event simulation's paged cache read the same budget."""
    d = _llama3_70b_on_two_h200s()
    w = make_workloads(backend="trtllm", concurrency=4, prompt_len=1024, gen_len=64, gen_len_std=0)
    result = serve(d, w)
    held = 1024 + 64 / 2 + 32 / 2  # the mean tokens a running sequence holds, paged in 32-token blocks
    expected_slots = min(math.floor(EXPECTED_BUDGET["trtllm"] / (KV_PER_TOKEN * held)), 2048)
    assert result.max_concurrency[0] == expected_slots
    simulated = simulate_serving(d, w, requests=8, seed=0)
    assert simulated.kv_capacity_blocks == math.floor(EXPECTED_BUDGET["trtllm"] / KV_PER_TOKEN) // 32


def test_a_workload_carries_its_engine() -> None:
    w = make_workloads(2, backend="sglang", concurrency=4, prompt_len=128, gen_len=16)
    assert list(w.engine) == ["sglang", "sglang"]
    assert w.row(1)["engine"] == "sglang"
    assert list(w.take(np.array([0])).engine) == ["sglang"]
    with pytest.raises(InvalidInputError, match="unknown engine 'tgi'"):
        validate_workloads(replace(w, engine=np.array(["sglang", "tgi"])))


def test_sglang_activations_must_fit_outside_its_static_share() -> None:
    """SGLang runs activations in the 1 - mem_fraction_static rest: 8 bytes of activations on a
    100-byte chip at 0.95 pass the 5-byte rest by 3; at 0.9 they fit; other engines shrink the cache
    instead (no shortfall)."""
    engines = np.array(["sglang", "sglang", "vllm", "trtllm"])
    fractions = np.array([0.95, 0.9, 0.95, 0.95])
    shortfall = sglang_activation_shortfall(engines, 100.0, fractions, np.full(4, 8.0))
    np.testing.assert_allclose(shortfall, [3.0, 0.0, 0.0, 0.0])


def test_sglang_out_of_memory_on_activations_does_not_fit_anywhere() -> None:
    """At mem_fraction_static 0.995 SGLang leaves 0.005 x 150.75 GB = 0.754 GB outside its static
    pools, less than the 0.94 GB of a full iteration's activations: it runs out of memory, so the
    deployment does not fit (no KV room for serve, the simulation's cache or kv_capacity_tokens),
    where its static budget alone would be 0.995 x M - W = 79.4 GB. vLLM at 0.995 shrinks its
    cache by the activations instead and fits."""
    assert 0.005 * H200_BYTES < ACTIVATIONS < 0.12 * H200_BYTES
    d = _llama3_70b_on_two_h200s()
    sglang = _workload("sglang", memory_fraction=0.995)
    assert kv_capacity_tokens(d, sglang)[0] == 0
    result = serve(d, sglang)
    assert not result.fits[0] and not result.stable[0] and result.tokens_per_s[0] == 0.0
    vllm = _workload("vllm", memory_fraction=0.995)
    budget = 0.995 * H200_BYTES - WEIGHTS - ACTIVATIONS
    assert kv_capacity_tokens(d, vllm)[0] == math.floor(budget / KV_PER_TOKEN)
    assert serve(d, vllm).fits[0]
    # At SGLang's default 0.88 the 18.1 GB rest holds them: its budget as its rule gives.
    assert kv_capacity_tokens(d, _workload("sglang"))[0] == math.floor(EXPECTED_BUDGET["sglang"] / KV_PER_TOKEN)


# Quantized weights: the engines quantize the blocks' linear layers and keep the embedding table
# and the lm_head in 16 bits (vLLM's AWQ/GPTQ/fp8 methods apply to LinearBase layers only, its
# ParallelLMHead is an embedding; ModelOpt's default configs disable "*lm_head*"; gpt-oss's
# mxfp4 config lists embed_tokens and lm_head in modules_to_not_convert).
EMBEDDING_AND_LM_HEAD = 2 * 128256 * 8192  # elements, untied
BLOCKS = 80 * LAYER  # elements


@pytest.mark.parametrize("engine", sorted(EXPECTED_BUDGET))
def test_fp8_weights_keep_the_embedding_and_lm_head_in_16_bits(engine: str) -> None:
    """Llama 3 70B in fp8 on 2 H200s: 1 byte per block weight, 2 per embedding and lm_head
    element, split over the 2 chips (68,451,041,280 + 2 x 2,101,346,304 B over 2 = 36,326,866,944
    B per chip, not the 35,276,193,792 of every weight in fp8)."""
    d = replace(_llama3_70b_on_two_h200s(), weight_dtype=np.array([1]))  # FP8
    weights = (BLOCKS * 1 + EMBEDDING_AND_LM_HEAD * 2) / CHIPS
    assert weights == 36_326_866_944
    f = 0.9 if engine != "sglang" else 0.88
    budget = _hand_budget(engine, f, weights, ACTIVATIONS)
    assert kv_capacity_tokens(d, _workload(engine))[0] == math.floor(budget / KV_PER_TOKEN)


@pytest.mark.parametrize("engine", sorted(EXPECTED_BUDGET))
def test_fp8_activations_keep_the_gemm_outputs_in_16_bits(engine: str) -> None:
    """Llama 3 70B W8A8 (fp8 weights and activations) on 2 H200s: the widest intermediate of a
    full iteration is still the gate and up GEMMs' output, 2 x 28672 wide, and the engines' fp8
    GEMMs write it in bf16 (they quantize only their input: CountingConvention.gemm_output_format,
    as the operator costs charge it), so the activations are 2 x 8192 tokens x 57344 x 2 bytes
    / 2 chips = 939,524,096 B per chip, as in 16 bits, not the 469,762,048 of 1 byte an element."""
    d = replace(_llama3_70b_on_two_h200s(), weight_dtype=np.array([1]), act_dtype=np.array([1]))  # FP8
    activations = 2 * 8192 * (2 * 28672) * 2 / CHIPS
    assert activations == ACTIVATIONS == 939_524_096
    w = _workload(engine)
    assert engine_memory_bytes(d, w)["activations"][0] == activations
    weights = (BLOCKS * 1 + EMBEDDING_AND_LM_HEAD * 2) / CHIPS
    f = 0.9 if engine != "sglang" else 0.88
    budget = _hand_budget(engine, f, weights, activations)
    assert kv_capacity_tokens(d, w)[0] == math.floor(budget / KV_PER_TOKEN)
