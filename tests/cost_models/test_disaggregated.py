"""Disaggregated prefill/decode (cost_models/disaggregated.py).

Expected values come from outside the code under test: decode iterations from
``iteration_times`` called directly, KV bytes from the model's shape in models.yaml (Llama-3-70B:
80 layers, 8 KV heads of 128, bf16) and link speeds from hardware.yaml (H100 SXM: NVLink
450 GB/s, network 50 GB/s per chip, latencies 2 us / 5 us, 8 GPUs per domain).
"""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.calibrated_times import calibrated_network
from cost_models.calibration import resolve_calibration
from cost_models.deployments import make_deployments
from cost_models.disaggregated import disaggregated_report, serve_disaggregated
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.iteration import iteration_times
from cost_models.models import get_model
from cost_models.serving import make_workloads
from cost_models.topology import network_for

MODEL = get_model("llama-3-70b")
CHIP = get_hardware("h100-sxm")
PROFILE = resolve_calibration("auto", "h100-sxm", "trtllm")
PROMPT, GEN = 2048, 256
KV_BYTES_PER_TOKEN = 2 * 80 * 8 * 128 * 2  # K and V, layers, KV heads, d_head, bf16


def tp(degree, n=1):
    return make_deployments(
        MODEL,
        CHIP,
        mesh=np.tile([1, 1, degree], (n, 1)),
        batch=1,
        prompt_len=1,
        gen_len=1,
        prefill_ffn_layout=0,
        decode_ffn_layout=0,
        flash_attention=True,
    )


def rate_workloads(rate, n=1):
    return make_workloads(n, backend="trtllm", request_rate=rate, prompt_len=PROMPT, gen_len=GEN)


def test_decode_tpot_is_a_decode_only_iteration_at_the_running_batch():
    est = serve_disaggregated(
        tp(8), tp(8), rate_workloads(5.0), prefill_instances=1, decode_instances=2, calibration=PROFILE
    )
    assert est.stable[0]
    running = est.running[0] / 2  # per decode instance
    assert 1.0 < running < 100.0
    network = calibrated_network(network_for(CHIP), CHIP, PROFILE)
    by_hand = iteration_times(
        tp(8),
        network,
        decode_seqs=np.array([running]),
        decode_context=np.array([PROMPT + (GEN - 1) / 2]),
        prefill_tokens=np.array([0.0]),
        prefill_prompt_len=np.array([float(PROMPT)]),
        calibration=PROFILE,
        phase="decode",
    ).latency_s[0]
    assert est.tpot_s[0] == pytest.approx(by_hand, rel=1e-6)
    # No interference (every decode step decode-only), but the batch swings with the arrivals: the
    # percentiles above the mean (test_tpot_percentiles has the size); Little's law per instance.
    assert est.tpot_s[0] < est.tpot_p90_s[0] < est.tpot_p99_s[0] < 1.2 * est.tpot_s[0]
    assert running == pytest.approx(5.0 / 2 * (GEN - 1) * by_hand, rel=1e-4)


def test_kv_transfer_is_bytes_over_the_network_ports_between_nodes():
    est = serve_disaggregated(tp(8), tp(4), rate_workloads(2.0), prefill_instances=1, decode_instances=1)
    bytes_ = KV_BYTES_PER_TOKEN * PROMPT
    assert est.kv_transfer_bytes[0] == pytest.approx(bytes_)
    # 12 chips span two nodes: the network, 50 GB/s on each of min(8, 4) ports, plus 5 us.
    assert est.kv_transfer_s[0] == pytest.approx(bytes_ / (4 * 50e9) + 5e-6, rel=1e-9)


def test_kv_transfer_inside_one_nvlink_domain_uses_the_domain_fabric():
    est = serve_disaggregated(tp(4), tp(4), rate_workloads(1.0), prefill_instances=1, decode_instances=1)
    assert est.kv_transfer_s[0] == pytest.approx(KV_BYTES_PER_TOKEN * PROMPT / (4 * 450e9) + 2e-6, rel=1e-9)


def test_more_prefill_instances_never_lower_capacity():
    xp = np.arange(1, 7)
    est = serve_disaggregated(
        tp(8, 6), tp(8, 6), rate_workloads(2.0, 6), prefill_instances=xp, decode_instances=1, calibration=PROFILE
    )
    assert np.all(np.diff(est.prefill_capacity_rps) > 0)
    assert np.all(np.diff(est.capacity_rps) >= 0)
    assert est.prefill_capacity_rps == pytest.approx(xp * est.prefill_capacity_rps[0])
    # TTFT at a fixed rate does not rise with more prefill instances (less queueing).
    assert np.all(np.diff(est.ttft_s) <= 1e-12)


def test_limiting_pool_and_rate_beyond_capacity():
    one = serve_disaggregated(tp(8), tp(8), rate_workloads(1.0), prefill_instances=1, decode_instances=1)
    cap = one.capacity_rps[0]
    assert cap == min(one.prefill_capacity_rps[0], one.decode_capacity_rps[0])
    expected_pool = "prefill" if one.prefill_capacity_rps[0] <= one.decode_capacity_rps[0] else "decode"
    assert one.limiting_pool[0] == expected_pool
    over = serve_disaggregated(tp(8), tp(8), rate_workloads(cap * 1.2), prefill_instances=1, decode_instances=1)
    assert not over.stable[0]
    assert over.requests_per_s[0] == 0.0 and np.isinf(over.ttft_s[0])
    under = serve_disaggregated(tp(8), tp(8), rate_workloads(cap * 0.5), prefill_instances=1, decode_instances=1)
    assert under.stable[0] and under.requests_per_s[0] == pytest.approx(cap * 0.5)
    assert under.tokens_per_s_per_chip[0] == pytest.approx(cap * 0.5 * GEN / 16)


@pytest.mark.parametrize("field", ["prefill_instances", "decode_instances"])
@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_bad_instance_counts_name_the_field(field, value):
    counts = {"prefill_instances": 1, "decode_instances": 1, field: value}
    with pytest.raises(InvalidInputError) as info:
        serve_disaggregated(tp(8), tp(8), rate_workloads(1.0), **counts)
    assert field in str(info.value) and "\n" not in str(info.value)


def test_a_pool_that_cannot_hold_a_sequence_is_an_explicit_infeasible_result():
    # 70B bf16 weights (141 GB) on one 80 GiB H100: neither pool fits.
    est = serve_disaggregated(tp(1), tp(1), rate_workloads(1.0), prefill_instances=1, decode_instances=1)
    assert not est.fits[0] and not est.stable[0]
    assert np.isinf(est.ttft_s[0]) and est.tokens_per_s[0] == 0.0
    report = disaggregated_report(est)
    assert report["stable"] is False and report["ttft_s"] is None


def test_mismatched_pool_lengths_are_bad_input():
    with pytest.raises(InvalidInputError, match="decode"):
        serve_disaggregated(tp(8, 2), tp(8), rate_workloads(1.0, 2), prefill_instances=1, decode_instances=1)


def test_closed_loop_obeys_littles_law_below_capacity():
    w = make_workloads(backend="trtllm", concurrency=16, prompt_len=PROMPT, gen_len=GEN)
    est = serve_disaggregated(tp(8), tp(8), w, prefill_instances=1, decode_instances=1, calibration=PROFILE)
    assert est.stable[0]
    assert 0 < est.requests_per_s[0] <= est.capacity_rps[0]
    # Little's law over the clients' cycle: the fitted TTFT outside the engines (HTTP,
    # tokenization, the answer's way back) is a client's time, not the engines' (docs/serving.md).
    assert est.requests_per_s[0] * est.e2e_latency_s[0] == pytest.approx(16, rel=1e-12)


@pytest.mark.parametrize("model", ["dense", "moe"])
def test_closed_loop_littles_law_is_exact_at_every_load(model):
    """Every client has one request in the pools, waiting for them or in its request overhead
    outside them (no think time: a benchmark client sends its next request when the last answer
    arrived), so clients = requests/s x E2E, exactly, below the pools' capacity and beyond it (256
    and 4096 clients queue). Before the overhead was in the cycle the law held over engine time,
    requests/s x (E2E - overhead) = clients: 1.007 of 1 client, 16.10 of 16, 64.28 of 64 over E2E
    (Llama-3-70B). The wait for the prefill iteration a
    request lands in is the client's time, in the cycle the throughput is found from: it was
    outside it (Llama-3-70B: 1.015 of 1 client, 16.21 of 16, 65.91 of 64, 257.9 of 256). One
    client lands in no running iteration: its rank is idle, its own last prompt gone."""
    clients = np.array([1.0, 4.0, 16.0, 64.0, 256.0, 4096.0])
    if model == "dense":
        prefill = decode = tp(8, len(clients))
        profile = PROFILE
    else:
        prefill = decode = make_deployments(
            get_model("mixtral-8x7b"), get_hardware("h200"), mesh=np.tile([1, 1, 2], (len(clients), 1)), batch=1,
            prompt_len=1, gen_len=1, prefill_ffn_layout=0, decode_ffn_layout=0, flash_attention=True,
        )  # fmt: skip
        profile = resolve_calibration("auto", "h200", "trtllm")
    w = make_workloads(backend="trtllm", concurrency=clients, prompt_len=PROMPT, gen_len=GEN)
    est = serve_disaggregated(prefill, decode, w, prefill_instances=1, decode_instances=1, calibration=profile)
    assert np.all(est.stable)
    assert est.queued[-1] > 0  # beyond the pools' capacity
    np.testing.assert_allclose(est.requests_per_s * est.e2e_latency_s, clients, rtol=1e-12)
    # One client: no running iteration to wait for (what is left: the throughput's fixed point,
    # converged to 1e-6 of itself).
    assert est.prefill_queue_s[0] < 1e-5 * est.e2e_latency_s[0]
    assert np.all(est.prefill_queue_s[1:] > 0.0)


def test_a_decode_instance_runs_at_most_its_token_budget():
    """A decode-only iteration takes one token of max_num_tokens per sequence (serving.token_limit):
    a 32-token budget caps each decode instance at 32 sequences, whatever max_batch_size allows."""
    w = make_workloads(
        2,
        backend="trtllm",
        request_rate=5.0,
        prompt_len=PROMPT,
        gen_len=GEN,
        max_num_tokens=[32, 8192],
        chunked_prefill=True,
    )
    est = serve_disaggregated(tp(8, 2), tp(8, 2), w, prefill_instances=1, decode_instances=2, calibration=PROFILE)
    assert est.max_concurrency[0] == 2 * 32 and est.max_concurrency[1] > 2 * 32
    assert list(est.limited_by) == ["max_num_tokens", "kv_cache"]
    assert est.running[0] <= 2 * 32


def _qwen3_8b_tp1(n=1):
    return make_deployments(
        get_model("qwen3-8b"), CHIP, mesh=np.tile([1, 1, 1], (n, 1)), batch=1, prompt_len=1, gen_len=1,
        prefill_ffn_layout=0, decode_ffn_layout=0, flash_attention=True,
    )  # fmt: skip


def test_the_decode_end_of_the_kv_link_must_keep_up_too():
    """Qwen3-8B (36 layers, 8 KV heads of 128, bf16): 8192 prompt tokens are 1.208 GB of cache.
    14 prefill instances of one H100 and one decode instance of one span two nodes: each transfer
    is 1.208 GB / 50 GB/s + 5 us = 24.2 ms. At 60/s every prefill port is busy 60 / 14 x 24.2 ms
    = 10%, but the one decode chip takes in all 60 a second: 145% (72 GB/s through a 50 GB/s
    port). Only the prefill end was checked: stable, recommended (tuner recommend --model qwen3-8b
    --request-rate 60 --prompt-len 8192 --gen-len 16 answered 10P x TP1 + 1D x TP1). Two decode
    instances take 72.5% each. Closed loop: at most 1 / 24.2 ms = 41.4 transfers a second into
    the one decode chip, where the throughput was bounded by the pools alone (51.8/s)."""
    seconds = 2 * 36 * 8 * 128 * 2 * 8192 / 50e9 + 5e-6
    profile = resolve_calibration("auto", "h100-sxm", "vllm")
    w = make_workloads(2, backend="vllm", request_rate=60.0, prompt_len=8192, gen_len=16)
    est = serve_disaggregated(
        _qwen3_8b_tp1(2), _qwen3_8b_tp1(2), w, prefill_instances=14, decode_instances=np.array([1, 2]),
        calibration=profile,
    )  # fmt: skip
    assert est.kv_transfer_s == pytest.approx([seconds, seconds], rel=1e-6)
    assert est.kv_link_utilisation == pytest.approx([60 * seconds, 30 * seconds], rel=1e-6)
    assert est.prefill_utilisation[0] < 1.0 and 60.0 < est.capacity_rps[0]  # the pools keep up
    assert est.stable.tolist() == [False, True]
    closed = make_workloads(backend="vllm", concurrency=512, prompt_len=8192, gen_len=16)
    est = serve_disaggregated(
        _qwen3_8b_tp1(), _qwen3_8b_tp1(), closed, prefill_instances=14, decode_instances=1, calibration=profile
    )
    assert est.requests_per_s[0] <= 1.0 / seconds


def test_ttft_percentiles_of_the_prefill_pool():
    """At 0.2 requests/s a prefill rank is seldom busy: TTFT is the prompt's own prefill, the link
    and at most the rest of one running prefill iteration (the M/D/1 wait about 0), so p90 and
    p99 lie between the mean and the mean plus one iteration. Towards the pool's capacity the wait
    for the prefill budget dominates and its tail widens: p99 - p90 grows with the rate."""
    light = serve_disaggregated(tp(8), tp(8), rate_workloads(0.2), prefill_instances=1, decode_instances=1)
    ttft, step = light.ttft_s[0], light.prefill_iteration_s[0]
    assert ttft <= light.ttft_p90_s[0] <= light.ttft_p99_s[0] <= ttft + step
    cap = light.prefill_capacity_rps[0]
    rates = cap * np.array([0.3, 0.6, 0.9])
    loaded = serve_disaggregated(
        tp(8, 3), tp(8, 3), rate_workloads(rates, 3), prefill_instances=1, decode_instances=np.full(3, 4)
    )
    assert np.all(loaded.stable)
    assert np.all(loaded.ttft_p90_s >= loaded.ttft_s) and np.all(loaded.ttft_p99_s > loaded.ttft_p90_s)
    assert np.all(np.diff(loaded.ttft_p99_s - loaded.ttft_p90_s) > 0)


def test_spread_prompts_lengthen_the_mean_prefill_wait_and_iteration():
    """Prompts of spread length make a prefill rank's service time spread in proportion, so its
    mean wait is Pollaczek-Khinchine's M/G/1 one, (1 + cv^2) times the M/D/1 one (a lognormal
    prompt of std = mean: cv^2 = 1, twice), and their causal attention costs E[P^2] / E[P] a token,
    as the aggregated path charges both. The pool's mean TTFT ignored the spread (prefill_queue_s
    and prefill_iteration_s identical at std 0 and 2048) while its p99 counted it, 5x at std 4000:
    tuner estimate --model llama-3.1-8b --hardware h100-sxm --tp 1 --prefill-instances 1
    --decode-instances 1 --prompt-len 2048 --gen-len 256 --request-rate 12 --prompt-len-std S."""
    single = serve_disaggregated(tp(8), tp(8), rate_workloads(0.2), prefill_instances=1, decode_instances=4)
    rate = 0.7 * single.prefill_capacity_rps[0]

    def at(std):
        w = make_workloads(1, backend="trtllm", request_rate=rate, prompt_len=PROMPT, gen_len=GEN, prompt_len_std=std)
        return serve_disaggregated(tp(8), tp(8), w, prefill_instances=1, decode_instances=4)

    even, spread = at(0.0), at(float(PROMPT))
    assert even.stable[0] and spread.stable[0]
    assert spread.prefill_iteration_s[0] > even.prefill_iteration_s[0]
    # The M/D/1 part of the even pool's wait is at least its queue less half a running iteration.
    wait = even.prefill_queue_s[0] - 0.5 * even.prefill_iteration_s[0]
    assert wait > 0.0
    assert spread.prefill_queue_s[0] - even.prefill_queue_s[0] >= 0.9 * wait
    assert spread.ttft_s[0] - even.ttft_s[0] >= 0.9 * wait


def test_an_open_loop_decode_pool_swings_up_to_its_slots_as_an_aggregated_replica_does():
    """The decode pool's running batch at its 99.9th percentile: Poisson arrivals, each held G - 1
    decode-only iterations, the batch's variance E[n] / (1 - R b (G - 1)) (b: the step's seconds per
    added sequence; no prompts in a decode-only step) and a gamma law of that mean and variance
    (scipy's, not the code's). Llama-3-70B TP8 decode instances of 28 slots at 5 requests/s run
    about 15 sequences and reach their 28 now and then (p999 about 32): near capacity, which recommend's rows and
    estimate's notes say. Before, running_p999 was the mean and nothing was said."""
    from scipy.stats import gamma

    from cost_models.disaggregated_one import estimate_disaggregated_one

    rate = 5.0
    w = make_workloads(backend="trtllm", request_rate=rate, prompt_len=PROMPT, gen_len=GEN, max_batch_size=28)
    est = serve_disaggregated(tp(8), tp(8), w, prefill_instances=1, decode_instances=1, calibration=PROFILE)
    assert est.stable[0] and est.max_concurrency[0] == 28
    n = est.running[0]
    network = calibrated_network(network_for(CHIP), CHIP, PROFILE)

    def step(seqs):
        return iteration_times(
            tp(8), network, decode_seqs=np.array([seqs]), decode_context=np.array([PROMPT + (GEN - 1) / 2]),
            prefill_tokens=np.array([0.0]), prefill_prompt_len=np.array([float(PROMPT)]), calibration=PROFILE,
            phase="decode",
        ).latency_s[0]  # fmt: skip

    host = resolve_calibration("auto", "h100-sxm", "trtllm")
    from cost_models.serving import resolve_overheads

    per_seq_host = resolve_overheads(host, None).host_per_sequence_s
    b = max(step(n + 1), per_seq_host * (n + 1)) - max(step(n), per_seq_host * n)
    variance = n / (1.0 - rate * b * (GEN - 1))
    p999 = gamma.ppf(0.999, n**2 / variance, scale=variance / n)
    assert est.running_p999[0] == pytest.approx(p999, rel=2e-3)
    assert est.running_p999[0] >= 28 > n
    # At 2 requests/s (the default slots, 679): about 6 running, the tail about 16.
    calm = serve_disaggregated(
        tp(8), tp(8), rate_workloads(2.0), prefill_instances=1, decode_instances=1, calibration=PROFILE
    )
    assert calm.running[0] < calm.running_p999[0] < calm.max_concurrency[0]
    # tuner estimate of the pools says it, as of an aggregated replica.
    report = estimate_disaggregated_one(
        "llama-3-70b", "h100-sxm", prefill_instances=1, decode_instances=1, prefill={"tp": 8}, decode={"tp": 8},
        prompt_len=PROMPT, gen_len=GEN, request_rate=rate, backend="trtllm", decode_max_batch_size=28,
    )  # fmt: skip
    assert any(note.startswith("near capacity:") for note in report["serving"]["notes"])
    assert report["serving"]["running_p999"] == pytest.approx(est.running_p999[0], rel=1e-6)


def test_a_prompt_one_token_past_the_budget_adds_one_token_not_one_full_iteration():
    """A prefill instance under vLLM (chunked, an 8192-token budget), 0.05 req/s: an 8193-token
    prompt fills one iteration and leaves one token to the next, which holds little else at this
    rate. Its own prefill was ceil(8193 / 8192) = 2 full iterations: TTFT 1075 ms against the
    8192-token prompt's 555 ms (bf16 TP4, 2026-12-06; now 578 ms); one more token adds at most a few
    percent, as one token fewer than two budgets (16383) does against 16384."""

    def ttft_s(prompt: int) -> float:
        w = make_workloads(backend="vllm", request_rate=0.05, prompt_len=prompt, gen_len=GEN)
        profile = resolve_calibration("auto", "h100-sxm", "vllm")
        est = serve_disaggregated(tp(4), tp(4), w, prefill_instances=1, decode_instances=1, calibration=profile)
        return float(est.ttft_s[0])

    assert ttft_s(8193) < 1.05 * ttft_s(8192)
    assert ttft_s(16383) == pytest.approx(ttft_s(16384), rel=0.05)
