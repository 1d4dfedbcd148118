"""Serving iterations scored as the engine runs them: a CUDA-graph replay or an eager forward.

vLLM V1 replays CUDA graphs for iterations of up to ``min(2 x max_num_seqs, 512,
max_num_batched_tokens)`` scheduled tokens and runs larger ones eager (vllm/config/vllm.py
``_set_cudagraph_sizes``, vllm/v1/cudagraph_dispatcher.py); SGLang replays decode-only batches of
up to ``cuda_graph_max_bs`` sequences (server_args.py) and runs any iteration with prefill tokens
eager. An eager iteration's GEMMs pay the per-call host floors the kernel database measured
(calibration.cuda_graph_replay drops them for a replay) and its all-reduce is the eager call.
TensorRT-LLM is left as fitted.
"""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.calibrated_times import calibrated_network
from cost_models.calibration import CudaGraphs, resolve_calibration, sglang_cuda_graph_max_bs
from cost_models.deployment import estimate
from cost_models.deployments import tensor_parallel
from cost_models.dtypes import FP8
from cost_models.hardware import get_hardware
from cost_models.iteration import iteration_times
from cost_models.models import get_model
from cost_models.serving_simulation import _iteration_table
from cost_models.topology import network_for

GIB = 2**30


def _setup(chip: str, model: str, backend: str, tp: int = 8):
    hardware = get_hardware(chip)
    profile = resolve_calibration("auto", hardware, backend)
    assert profile is not None
    d = tensor_parallel(get_model(model), hardware, tp, weight_dtype=FP8, act_dtype=FP8)
    return hardware, profile, d, calibrated_network(network_for(hardware), hardware, profile)


def _latency(d, network, profile, decode, prefill, graphs=None, prompt=4096.0) -> float:
    return float(
        iteration_times(
            d, network, decode_seqs=float(decode), decode_context=2000.0, prefill_tokens=float(prefill),
            prefill_prompt_len=prompt, calibration=profile, cuda_graphs=graphs,
        ).latency_s[0]
    )  # fmt: skip


def _graphs(backend: str, hardware, tp: int = 8, max_batch_size: float = 256, max_num_tokens: float = 8192):
    return CudaGraphs.of(
        backend,
        max_batch_size=max_batch_size,
        max_num_tokens=max_num_tokens,
        memory_bytes=hardware.memory_bytes,
        tensor_parallel=tp,
    )


@pytest.mark.parametrize("chip", ["h200", "b200"])
def test_a_vllm_fp8_block_prefill_iteration_costs_what_the_eager_static_prefill_costs(chip: str) -> None:
    """DeepSeek-V3 (block-scaled fp8, DeepGEMM) on 8 GPUs under vLLM: an iteration holding one
    whole 8192-token prompt is past the 512-token capture, an eager forward, as the static prefill
    of that prompt is (the two paths share no code above the kernels). Scored as a replay it read
    310 ms on H200 against the static prefill's 335 (173 against 235 ms on B200, whose fp8_block
    floor is 176 us a call)."""
    hardware, profile, d, network = _setup(chip, "deepseek-v3", "vllm")
    iteration = _latency(d, network, profile, 0, 8192, _graphs("vllm", hardware), prompt=8192.0)
    static = tensor_parallel(
        get_model("deepseek-v3"), hardware, 8, weight_dtype=FP8, act_dtype=FP8, batch=1, prompt_len=8192, gen_len=2
    )
    prefill_s = float(estimate(static, calibration=profile).prefill.latency_s[0])
    assert iteration == pytest.approx(prefill_s, rel=0.01)


def test_vllm_replays_up_to_its_capture_size_and_pays_the_floors_one_token_above() -> None:
    """DeepSeek-V3 fp8_block on 8 H200s under vLLM (max_num_seqs 256: capture 512 tokens). At 512
    scheduled tokens the iteration is the replay it was; at 513 each of the dense fp8_block GEMMs
    pays the fitted host floor (55 us a call on h200-vllm, over a kernel of ~10-20 us at m = 513 on
    a TP8 slice). A lower bound on the step, counted by hand: at least 5 block-scaled GEMM calls a
    layer (MLA's q_b, kv_b and o_proj, the shared expert's gate_up and down; the fused q_a/kv_a and
    the dense layers' FFN besides), each at least half a floor more, x 61 layers."""
    hardware, profile, d, network = _setup("h200", "deepseek-v3", "vllm")
    graphs = _graphs("vllm", hardware)
    assert float(graphs.max_tokens[()]) == 512.0
    for decode, prefill in ((512, 0), (64, 448)):
        assert _latency(d, network, profile, decode, prefill, graphs) == _latency(d, network, profile, decode, prefill)
    floor_s = profile.gemm["fp8_block"].host_floor_s
    layers = get_model("deepseek-v3").layers
    for (below, below_prefill), (above, above_prefill) in (((512, 0), (513, 0)), ((64, 448), (64, 449))):
        step = _latency(d, network, profile, above, above_prefill, graphs) - _latency(
            d, network, profile, below, below_prefill, graphs
        )
        assert step > layers * 5 * 0.5 * floor_s


def test_vllm_capture_size_follows_max_num_seqs_and_the_token_budget() -> None:
    """min(2 x max_num_seqs, 512, max_num_batched_tokens) (vllm/config/vllm.py)."""
    hardware = get_hardware("h100-sxm")
    assert float(_graphs("vllm", hardware, max_batch_size=64).max_tokens[()]) == 128.0
    assert float(_graphs("vllm", hardware, max_batch_size=1024).max_tokens[()]) == 512.0
    assert float(_graphs("vllm", hardware, max_batch_size=256, max_num_tokens=256).max_tokens[()]) == 256.0
    hardware, profile, d, network = _setup("h100-sxm", "llama-3.1-70b", "vllm")
    graphs = _graphs("vllm", hardware, max_batch_size=64)
    assert _latency(d, network, profile, 128, 0, graphs) == _latency(d, network, profile, 128, 0)
    assert _latency(d, network, profile, 129, 0, graphs) > _latency(d, network, profile, 129, 0)


def test_sglang_cuda_graph_max_bs_is_its_server_args_table() -> None:
    """sgl-project/sglang server_args.py: by GPU memory (MiB) and tp_size."""
    assert sglang_cuda_graph_max_bs(get_hardware("h100-sxm").memory_bytes, 2) == 256
    assert sglang_cuda_graph_max_bs(get_hardware("h100-sxm").memory_bytes, 8) == 512
    assert sglang_cuda_graph_max_bs(get_hardware("h200").memory_bytes, 1) == 256
    assert sglang_cuda_graph_max_bs(get_hardware("l40s").memory_bytes, 2) == 32
    assert sglang_cuda_graph_max_bs(get_hardware("l40s").memory_bytes, 4) == 160
    assert sglang_cuda_graph_max_bs(get_hardware("b200").memory_bytes, 1) == 512
    assert sglang_cuda_graph_max_bs(16 * GIB, 8) == 8
    assert sglang_cuda_graph_max_bs(24 * GIB, 2) == 24


def test_sglang_runs_prefill_and_large_decode_batches_eager() -> None:
    """Llama-3.1-70B fp8 on 8 H100s under SGLang (cuda_graph_max_bs 512 at TP8): a decode batch of
    512 replays, of 513 runs eager, and any iteration with a prompt token runs eager: each eager
    all-reduce is the measured eager call (h100-sxm-sglang custom_eager, about 4x the graph
    call's latency at a decode step's sizes), two a layer, 80 layers."""
    hardware, profile, d, network = _setup("h100-sxm", "llama-3.1-70b", "sglang")
    graphs = _graphs("sglang", hardware)
    assert _latency(d, network, profile, 512, 0, graphs) == _latency(d, network, profile, 512, 0)
    eager_cost_s = 2 * 80 * 5e-6  # at least 5 us more a call (graph ~5 us, eager ~20 us)
    assert _latency(d, network, profile, 513, 0, graphs) > _latency(d, network, profile, 513, 0) + eager_cost_s
    assert _latency(d, network, profile, 8, 1, graphs) > _latency(d, network, profile, 8, 1) + eager_cost_s
    # vLLM replays the same mixed iteration (9 tokens, under its capture size).
    v_hardware, v_profile, v_d, v_network = _setup("h100-sxm", "llama-3.1-70b", "vllm")
    v_graphs = _graphs("vllm", v_hardware)
    assert _latency(v_d, v_network, v_profile, 8, 1, v_graphs) == _latency(v_d, v_network, v_profile, 8, 1)


def test_trtllm_iterations_are_unchanged_bit_for_bit() -> None:
    hardware, profile, d, network = _setup("h100-sxm", "llama-3.1-70b", "trtllm")
    rng = np.random.default_rng(3)
    n = 300
    rows = d.take(np.zeros(n, dtype=np.int64))
    decode = rng.integers(0, 1500, n).astype(float)
    prefill = np.where(rng.random(n) < 0.4, 0.0, rng.integers(1, 8192, n)).astype(float)
    kwargs = dict(decode_seqs=decode, decode_context=2000.0, prefill_tokens=prefill, prefill_prompt_len=4096.0)
    graphs = CudaGraphs.of(
        "trtllm", max_batch_size=2048, max_num_tokens=8192, memory_bytes=hardware.memory_bytes, tensor_parallel=8
    )
    with_rule = iteration_times(rows, network, calibration=profile, cuda_graphs=graphs, **kwargs).latency_s
    without = iteration_times(rows, network, calibration=profile, **kwargs).latency_s
    np.testing.assert_array_equal(with_rule, without)


def test_rows_of_both_kinds_in_one_call_equal_each_row_alone() -> None:
    """The replayed and the eager rows of one call are scored as groups and put back in order."""
    hardware = get_hardware("h200")
    profile = resolve_calibration("auto", hardware, "vllm")
    rng = np.random.default_rng(0)
    n = 60
    models = [get_model("deepseek-v3"), get_model("llama-3.1-70b")]
    d = tensor_parallel(
        models, hardware, 2 ** rng.integers(1, 4, n), model_index=rng.integers(0, 2, n), weight_dtype=FP8, act_dtype=FP8
    )
    network = calibrated_network(network_for(hardware), hardware, profile)
    decode = rng.integers(0, 700, n).astype(float)
    prefill = np.where(rng.random(n) < 0.5, 0.0, rng.integers(1, 1000, n)).astype(float)
    graphs = _graphs("vllm", hardware, tp=d.tensor_parallel)
    assert 0 < np.count_nonzero(graphs.replays(decode, prefill)) < n
    kwargs = dict(decode_context=1500.0, prefill_prompt_len=2048.0, calibration=profile)
    together = iteration_times(d, network, decode_seqs=decode, prefill_tokens=prefill, cuda_graphs=graphs, **kwargs)
    for i in range(n):
        at = np.array([i])
        alone = iteration_times(
            d.take(at), network, decode_seqs=decode[at], prefill_tokens=prefill[at], cuda_graphs=graphs.take(at),
            **kwargs,
        )  # fmt: skip
        assert together.latency_s[i] == pytest.approx(alone.latency_s[0], rel=1e-12)


def test_the_simulation_grid_keeps_the_capture_size_as_an_edge() -> None:
    """The tabulated iterations of the simulation read the replay just under the capture size and
    the eager forward just above it (no interpolation across the switch: a 34 ms step at 512 ->
    513 tokens for DeepSeek-V3 fp8_block on 8 H200s under vLLM)."""
    hardware, profile, d, network = _setup("h200", "deepseek-v3", "vllm")
    graphs = _graphs("vllm", hardware)
    table = _iteration_table(
        d, network, max_decode=600, max_prefill=8192, prompt_range=(2048.0, 2048.0),
        context_range=(2049.0, 2400.0), cached_share=0.0, calibration=profile, overlap="overlapped",
        phase="decode", cuda_graphs=graphs,
    )  # fmt: skip
    decode = np.array([500, 511, 512, 513, 530, 64, 64, 64, 300, 300], dtype=np.float64)
    prefill = np.array([0, 0, 0, 0, 0, 447, 448, 449, 212, 213], dtype=np.float64)
    k = decode.size
    direct = iteration_times(
        d.take(np.zeros(k, dtype=np.int64)), network, decode_seqs=decode, decode_context=np.full(k, 2200.0),
        prefill_tokens=prefill, prefill_prompt_len=np.full(k, 2048.0), calibration=profile,
        cuda_graphs=graphs.take(np.zeros(k, dtype=np.int64)),
    ).latency_s  # fmt: skip
    assert direct[3] > 1.3 * direct[2]  # the premise: the step is there
    read = np.array([table.times(a, b, 2048.0, np.array([2200.0]))[0] for a, b in zip(decode, prefill, strict=True)])
    assert np.max(np.abs(read / direct - 1.0)) < 0.02


def test_a_static_vllm_decode_step_past_the_default_capture_runs_eager() -> None:
    """A static estimate has no serving knobs: vLLM's defaults (max_num_seqs 256) capture decode
    batches of up to 512 sequences. DeepSeek-V3 fp8_block on 8 H200s: batch 512 replays, 513 pays
    the floors (the same lower bound as the iteration's); under TRT-LLM no step."""
    hardware = get_hardware("h200")
    batches = np.array([512, 513])
    d = tensor_parallel(
        get_model("deepseek-v3"), hardware, np.full(2, 8), weight_dtype=FP8, act_dtype=FP8, batch=batches,
        prompt_len=1024, gen_len=256,
    )  # fmt: skip
    vllm = resolve_calibration("auto", hardware, "vllm")
    step = estimate(d, calibration=vllm).decode_step_latency_s
    floor_s = vllm.gemm["fp8_block"].host_floor_s
    assert step[1] - step[0] > get_model("deepseek-v3").layers * 5 * 0.5 * floor_s
    trtllm = estimate(d, calibration=resolve_calibration("auto", hardware, "trtllm")).decode_step_latency_s
    assert trtllm[1] - trtllm[0] < 0.02 * trtllm[0]


def test_static_rows_of_both_kinds_equal_each_row_alone() -> None:
    hardware = get_hardware("h200")
    vllm = resolve_calibration("auto", hardware, "vllm")
    batches = np.array([64, 700, 512, 513, 1024, 256])
    d = tensor_parallel(
        get_model("deepseek-v3"), hardware, np.full(batches.size, 8), weight_dtype=FP8, act_dtype=FP8,
        batch=batches, prompt_len=1024, gen_len=256,
    )  # fmt: skip
    together = estimate(d, calibration=vllm)
    for i in range(batches.size):
        alone = estimate(d.take(np.array([i])), calibration=vllm)
        assert together.decode_step_latency_s[i] == alone.decode_step_latency_s[0]
        assert together.prefill.latency_s[i] == alone.prefill.latency_s[0]
        assert together.memory.max_context_tokens[i] == alone.memory.max_context_tokens[0]
