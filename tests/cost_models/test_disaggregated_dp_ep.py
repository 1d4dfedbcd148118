"""Disaggregated prefill/decode pools with attention data parallelism and expert parallelism
(cost_models/disaggregated.py): each pool's instance is TP x DP x EP, DP ranks each with its own
scheduler, token budget and KV cache over 1 / (instances x DP) of the rate, their MoE layers shared.

Expected values from outside the code under test: the static estimate's decode step at the same
degrees (cost_models/deployment.py ``estimate``, which charges EP and DP), a dense model at DP k
being k replicas, the M/D/1 formulas written out here, DeepSeek-V3's MLA cache (one 576-wide latent,
512 + 64 rope dims, per token per layer, 61 layers, one byte in fp8) and the H200's links from
hardware.yaml (8 GPUs a domain, 50 GB/s a GPU between domains, 5 us)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cost_models.calibrated_times import calibrated_network
from cost_models.calibration import resolve_calibration
from cost_models.deployment import estimate, rank_view
from cost_models.deployments import make_deployments
from cost_models.disaggregated import decode_pool, prefill_pool, serve_disaggregated
from cost_models.dtypes import FP8
from cost_models.hardware import get_hardware
from cost_models.iteration import iteration_times
from cost_models.models import get_model
from cost_models.serving import NO_OVERHEADS, make_workloads
from cost_models.topology import network_for

H100 = get_hardware("h100-sxm")
H200 = get_hardware("h200")
DEEPSEEK_V3 = get_model("deepseek-v3")
LLAMA3_8B = get_model("llama-3-8b")
FP8_ALL = {"weight_dtype": FP8, "act_dtype": FP8, "kv_dtype": FP8}
PROMPT, GEN = 2048, 256
MLA_BYTES_PER_TOKEN = 576 * 61 * 1  # the latent (512 + 64 rope) x 61 layers x 1 byte (fp8)
PROFILE = resolve_calibration("auto", "h200", "sglang")
NETWORK = calibrated_network(network_for(H200), H200, PROFILE)


def _deepseek(tp: int, dp: int, ep: int, batch: int = 8):
    """DeepSeek-V3 fp8 on H200s, Megatron TP layouts and fused attention (the engines')."""
    return make_deployments(
        DEEPSEEK_V3, H200, mesh=np.array([[1, 1, tp]]), batch=batch, prompt_len=PROMPT, gen_len=GEN,
        prefill_ffn_layout=0, decode_ffn_layout=0, flash_attention=True, data_parallel=dp, expert_parallel=ep,
        **FP8_ALL,
    )  # fmt: skip


def _llama(dp: int):
    return make_deployments(
        LLAMA3_8B, H100, mesh=np.array([[1, 1, 1]]), batch=2, prompt_len=1, gen_len=1,
        prefill_ffn_layout=0, decode_ffn_layout=0, flash_attention=True, data_parallel=dp,
    )  # fmt: skip


def test_a_saturated_dp8_decode_instance_runs_8_ranks_at_the_static_decode_step() -> None:
    """TP1 DP8 EP8 decode instances at SGLang's --max-running-requests 256 (SGLang divides it by
    --dp-size under DP attention: 32 a rank, the KV cache holds more): each instance holds 8 x 32
    sequences and steps them in the static estimate's decode step at batch 256 (the experts all
    256 tokens wake, the busiest EP rank's); each sequence holds its slot G - 1 = 255 steps, so 3
    instances take 3 x 256 / (255 x step) requests a second."""
    w = make_workloads(backend="sglang", request_rate=1.0, prompt_len=PROMPT, gen_len=GEN, max_batch_size=256)
    pool = decode_pool(_deepseek(1, 8, 8), w, 3, 1.0, calibration=PROFILE, overheads=NO_OVERHEADS)
    step = estimate(_deepseek(1, 8, 8, batch=256), calibration=PROFILE).decode_step_latency_s[0]
    assert pool.ranks_per_instance[0] == 8
    assert pool.slots[0] == 8 * 32
    assert pool.limited_by[0] == "max_batch_size"
    assert pool.capacity_rps[0] == pytest.approx(3 * 256 / (255 * step), rel=1e-9)
    # Before the pools read DP, the same instance was scored as one scheduler of 256 slots whose
    # TP1 group held 256 sequences' attention (and TP1's whole experts): another number.
    tp1 = decode_pool(_deepseek(1, 1, 1), w, 3, 1.0, calibration=PROFILE, overheads=NO_OVERHEADS)
    assert tp1.capacity_rps[0] != pytest.approx(pool.capacity_rps[0], rel=1e-2)


def test_a_dp8_decode_instance_holds_8x_a_ranks_sequences_at_that_ranks_step() -> None:
    """Little's law over the decode pool: at R requests/s each of 2 x 8 ranks holds R / 16 x (G - 1)
    x its step sequences, and its step is the aggregated path's rank iteration at those sequences
    (shared MoE layers: data_parallel 8, expert_parallel 8)."""
    rate = 30.0
    w = make_workloads(backend="sglang", request_rate=rate, prompt_len=PROMPT, gen_len=GEN)
    pool = decode_pool(_deepseek(1, 8, 8), w, 2, rate, calibration=PROFILE, overheads=NO_OVERHEADS)
    per_rank = pool.running[0] / 8
    assert per_rank == pytest.approx(rate / 16 * 255 * pool.iteration_s[0], rel=1e-5)
    rank = iteration_times(
        rank_view(_deepseek(1, 8, 8)), NETWORK, decode_seqs=per_rank, decode_context=PROMPT + 255 / 2,
        prefill_tokens=0, prefill_prompt_len=PROMPT, calibration=PROFILE, data_parallel=8, expert_parallel=8,
    ).latency_s[0]  # fmt: skip
    assert pool.iteration_s[0] == pytest.approx(rank, rel=1e-12)


def test_decode_memory_is_a_ranks() -> None:
    """A chip of a TP1 DP8 EP8 decode rank holds the whole latent of its own sequences (35,136 B
    a token) and 1/8 of the routed experts (the static estimate's weights at the same degrees)."""
    w = make_workloads(backend="sglang", request_rate=30.0, prompt_len=PROMPT, gen_len=GEN)
    d = _deepseek(1, 8, 8)
    e = serve_disaggregated(
        _deepseek(8, 1, 8), d, w, prefill_instances=2, decode_instances=1, calibration=PROFILE, overheads=NO_OVERHEADS
    )
    assert e.kv_bytes_per_token_per_chip[0] == MLA_BYTES_PER_TOKEN
    assert e.weights_bytes_per_chip[0] == estimate(d, calibration=PROFILE).memory.weights_bytes_per_chip[0]
    held = PROMPT + GEN / 2 + 1 / 2  # prompt, half the output, half a one-token page
    assert e.kv_cache_bytes_per_chip[0] == pytest.approx(e.running[0] / 8 * held * MLA_BYTES_PER_TOKEN, rel=1e-12)
    # SGLang's 2048 running requests, 256 a rank, 8 ranks.
    assert e.max_concurrency[0] == 2048


@pytest.mark.parametrize("rate", [5.0, 40.0])
def test_a_dense_model_at_dp2_is_two_instances(rate: float) -> None:
    """Llama-3-8B has no MoE layer to share: one TP1 DP2 instance of each pool is two TP1
    instances, its ranks two M/D/1 queues (prefill) and two decode schedulers."""
    w = make_workloads(backend="sglang", request_rate=rate, prompt_len=PROMPT, gen_len=GEN)
    profile = resolve_calibration("auto", "h100-sxm", "sglang")
    dp2 = serve_disaggregated(_llama(2), _llama(2), w, prefill_instances=1, decode_instances=1, calibration=profile)
    two = serve_disaggregated(_llama(1), _llama(1), w, prefill_instances=2, decode_instances=2, calibration=profile)
    for name in (
        "ttft_s", "tpot_s", "capacity_rps", "prefill_capacity_rps", "decode_capacity_rps", "running",
        "max_concurrency", "prefill_queue_s", "prefill_utilisation", "kv_transfer_s", "kv_link_utilisation",
        "kv_cache_bytes_per_chip", "chips",
    ):  # fmt: skip
        assert getattr(dp2, name)[0] == pytest.approx(getattr(two, name)[0], rel=1e-12), name


def test_a_dp8_prefill_instance_is_8_md1_queues() -> None:
    """TP1 DP8 EP8 prefill instances under SGLang: DP attention divides the 8192-token chunked
    budget by --dp-size, so each rank prefills 1024 tokens an iteration (half a 2048-token prompt),
    each rank an M/D/1 queue of R / (xP x 8) requests a second served at its full iteration's rate.
    Capacity xP x 8 x (1024 / 2048) / t_full; utilisation rho = R / (8 xP) x 2048 x t_full / 1024;
    the wait: the rest of the running iteration plus rho / (2 (1 - rho)) x a request's service."""
    rate, xp = 12.0, 2
    w = make_workloads(backend="sglang", request_rate=rate, prompt_len=PROMPT, gen_len=GEN)
    pool = prefill_pool(_deepseek(1, 8, 8), w, xp, rate, calibration=PROFILE, overheads=NO_OVERHEADS)
    budget = 8192 // 8
    t_full = iteration_times(
        rank_view(_deepseek(1, 8, 8)), NETWORK, decode_seqs=0, decode_context=PROMPT, prefill_tokens=budget,
        prefill_prompt_len=PROMPT, calibration=PROFILE, phase="prefill", data_parallel=8, expert_parallel=8,
    ).latency_s[0]  # fmt: skip
    per_rank = rate / (xp * 8)
    assert pool.ranks_per_instance[0] == 8
    assert pool.capacity_rps[0] == pytest.approx(xp * 8 * (budget / PROMPT) / t_full, rel=1e-12)
    rho = per_rank * PROMPT * t_full / budget
    assert pool.utilisation[0] == pytest.approx(rho, rel=1e-12)
    # Every iteration is a full chunk (a prompt is two of them): the running one is t_full.
    assert pool.tokens_per_iteration[0] == budget and pool.iteration_s[0] == pytest.approx(t_full, rel=1e-12)
    busy = per_rank * PROMPT * t_full / budget
    wait = busy * 0.5 * t_full + rho / (2 * (1 - rho)) * t_full * PROMPT / budget
    assert pool.queue_s[0] == pytest.approx(wait, rel=1e-12)
    assert pool.prefill_s[0] == pytest.approx(2 * t_full, rel=1e-12)


def test_the_kv_transfer_is_the_latent_per_prompt_whatever_the_pools_ranks() -> None:
    """A prompt's cache is 2048 x 35,136 B (the latent, fp8) from a TP8 or a TP1 DP8 prefill
    instance alike. 2 prefill + 1 decode instances of 8 H200s span three domains: the network, 50
    GB/s a GPU, through min(prefill rank, decode rank) = 1 port (TP1 ranks), 5 us. A TP8 prefill
    instance sends R / 2 caches a second; a DP8 one's each rank R / 16; the decode instance takes
    in R over its 8 ports, each port R / 8."""
    rate = 20.0
    w = make_workloads(backend="sglang", request_rate=rate, prompt_len=PROMPT, gen_len=GEN)
    seconds = PROMPT * MLA_BYTES_PER_TOKEN / 50e9 + 5e-6
    for prefill, egress in ((_deepseek(8, 1, 8), rate / 2 * seconds), (_deepseek(1, 8, 8), rate / 16 * seconds)):
        e = serve_disaggregated(
            prefill, _deepseek(1, 8, 8), w, prefill_instances=2, decode_instances=1, calibration=PROFILE
        )
        assert e.kv_transfer_bytes[0] == PROMPT * MLA_BYTES_PER_TOKEN
        assert e.kv_link_bandwidth_bytes_per_s[0] == 50e9
        assert e.kv_transfer_s[0] == pytest.approx(seconds, rel=1e-12)
        ingress = rate / 8 * seconds
        assert e.kv_link_utilisation[0] == pytest.approx(max(egress, ingress), rel=1e-12)


@pytest.mark.parametrize("clients", [64, 512])
def test_littles_law_holds_for_dp_pools_in_a_closed_loop(clients: int) -> None:
    """Every client is in the pools all the time (no think time, no request overhead): C =
    requests/s x E2E exactly, the wait for the running prefill iteration included (it is the
    client's time: the closed loop's cycle holds it, cost_models.disaggregated.
    closed_loop_residual_s; before, the cycle left out the half iteration TTFT added); the decode
    pool's running sequences R x (G - 1) x TPOT."""
    w = make_workloads(backend="sglang", concurrency=clients, prompt_len=PROMPT, gen_len=GEN)
    e = serve_disaggregated(
        _deepseek(1, 8, 8), _deepseek(1, 8, 8), w, prefill_instances=1, decode_instances=1, calibration=PROFILE,
        overheads=NO_OVERHEADS,
    )  # fmt: skip
    assert e.stable[0]
    x = e.requests_per_s[0]
    assert x * e.e2e_latency_s[0] == pytest.approx(clients, rel=1e-12)
    assert e.running[0] == pytest.approx(x * (GEN - 1) * e.tpot_s[0], rel=1e-5)
    assert math.isfinite(e.ttft_s[0])


def test_the_mla_latent_moves_whole_to_every_decode_tp_rank() -> None:
    """vLLM and SGLang keep DeepSeek-V3's whole latent on every TP rank (it is not split by head),
    so a TP8 decode instance's 8 chips each take all of a prompt's 2048 x 35,136 B = 72 MB (fp8):
    8 copies, 576 MB, over 8 ports of 50 GB/s (1 + 1 instances of 8 H200s span two domains), plus
    5 us: 1.44 ms, not the 0.18 ms of one copy over 8 ports."""
    w = make_workloads(backend="sglang", request_rate=1.0, prompt_len=PROMPT, gen_len=GEN)
    e = serve_disaggregated(
        _deepseek(8, 1, 1), _deepseek(8, 1, 1), w, prefill_instances=1, decode_instances=1, calibration=PROFILE
    )
    one_copy = PROMPT * MLA_BYTES_PER_TOKEN
    assert e.kv_transfer_bytes[0] == 8 * one_copy
    assert e.kv_link_bandwidth_bytes_per_s[0] == 8 * 50e9
    assert e.kv_transfer_s[0] == pytest.approx(one_copy / 50e9 + 5e-6, rel=1e-12)
    # Each decode port takes one copy a request: R x 1.44 ms busy.
    assert e.kv_link_utilisation[0] == pytest.approx(1.0 * (one_copy / 50e9 + 5e-6), rel=1e-12)
