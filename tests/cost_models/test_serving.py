"""The in-flight batching steady state (cost_models/serving.py) and its iteration (iteration.py).

By-hand values come from the model's shapes (Llama-3-8B: 32 layers, 8 KV heads of 128) and the
H100's catalog memory, written out here, not from the code under test; limits are checked against
the static-batch estimate (an independent composition of the same operator model)."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.calibrated_times import calibrated_network
from cost_models.calibration import resolve_calibration
from cost_models.deployment import estimate
from cost_models.deployments import make_deployments
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.iteration import iteration_times
from cost_models.models import get_model
from cost_models.serving import (
    DEFAULT_GEN_LEN_CV,
    NO_OVERHEADS,
    EngineOverheads,
    engine_overheads,
    make_workloads,
    serve,
    serving_report,
    token_limit,
)
from cost_models.topology import network_for

H100 = get_hardware("h100-sxm")
LLAMA3_8B = get_model("llama-3-8b")


def tp(n: int = 1, tp_degree: int = 1):
    """n copies of Llama-3-8B with tensor parallelism over tp_degree H100s (ws_1d, fused attention)."""
    return make_deployments(
        LLAMA3_8B,
        H100,
        mesh=np.tile([1, 1, tp_degree], (n, 1)),
        batch=1,
        prompt_len=1024,
        gen_len=128,
        prefill_ffn_layout=0,
        decode_ffn_layout=0,
        flash_attention=True,
    )


def test_an_iteration_of_decode_only_is_the_static_decode_step() -> None:
    d = make_deployments(
        LLAMA3_8B, H100, mesh=[1, 1, 2], batch=32, prompt_len=1024, gen_len=128, prefill_ffn_layout=0,
        decode_ffn_layout=0, flash_attention=True,
    )  # fmt: skip
    profile = resolve_calibration("auto", "h100-sxm", "trtllm")
    static = estimate(d, calibration=profile)
    network = calibrated_network(network_for(H100), H100, profile)
    step = iteration_times(
        d,
        network,
        decode_seqs=32,
        decode_context=1024 + 127 / 2,
        prefill_tokens=0,
        prefill_prompt_len=1024,
        calibration=profile,
    )
    assert step.latency_s[0] == pytest.approx(static.decode_step_latency_s[0], rel=1e-9)


def test_a_prefill_only_iteration_is_close_to_the_static_prefill() -> None:
    """Same GEMMs; attention is scored per prompt in one varlen kernel instead of one batched call."""
    d = tp()
    static = estimate(d.take(np.zeros(1, dtype=int)))
    it = iteration_times(
        d, network_for(H100), decode_seqs=0, decode_context=1, prefill_tokens=1024, prefill_prompt_len=1024
    )
    assert it.latency_s[0] == pytest.approx(static.prefill.latency_s[0], rel=0.05)
    assert it.decode_attention_s[0] == 0.0


def test_one_client_sees_the_static_decode_step_and_the_prefill_of_its_prompt(monkeypatch) -> None:
    # Two paths' formulas compared to float64 rounding: estimate's roofline in float64 (its
    # float32 default, deployment.ROOFLINE_DTYPE, is ~1e-7 from it: test_float32_roofline.py).
    monkeypatch.setattr("cost_models.deployment.ROOFLINE_DTYPE", np.float64)
    d = tp()
    static = estimate(d)
    load = {"backend": "trtllm", "concurrency": 1, "prompt_len": 1024, "gen_len": 128, "requests_per_client": 0}
    # gen_len_std=0 on purpose: the grouped (fixed-length) model's TTFT is the prefill of the
    # prompt alone: the one client sends its next request when its last one ended, at an
    # iteration's end, into an idle engine (no running iteration to wait for: it waited half a
    # decode step, 0.5 x 4.53 ms, which no cycle held and which the simulation does not see).
    e = serve(d, make_workloads(gen_len_std=0.0, **load))  # no calibration: pure roofline, no overheads
    assert e.tpot_s[0] == pytest.approx(static.decode_step_latency_s[0], rel=1e-9)
    assert e.ttft_s[0] == pytest.approx(static.prefill.latency_s[0], rel=1e-9)
    assert e.tokens_per_s_per_user[0] == pytest.approx(1.0 / e.tpot_s[0])
    # The default (outputs spread by 5%): desynchronized, the one client's request arrives at an
    # iteration's end and is prefilled alone, with no other client's prompt to wait behind.
    spread = serve(d, make_workloads(**load))
    assert spread.ttft_s[0] == pytest.approx(static.prefill.latency_s[0], rel=1e-9)
    assert spread.tpot_s[0] == e.tpot_s[0]


def test_outputs_spread_by_default_desynchronize_the_closed_loop() -> None:
    """gen_len_std None (the default) is DEFAULT_GEN_LEN_CV of gen_len; 0 keeps exactly equal outputs
    and the grouped model, whose burst groups (6.4 prompts an iteration here) give a longer TTFT than
    prompts arriving a Poisson number per iteration; the cycle (throughput) is the same, and the
    prefill work TTFT no longer carries stalls the decodes instead (TPOT by Little's law: below)."""
    load = {"backend": "trtllm", "concurrency": 64, "prompt_len": 1024, "gen_len": np.array([128.0, 512.0])}
    default = make_workloads(**load)
    np.testing.assert_array_equal(default.gen_len_std, DEFAULT_GEN_LEN_CV * load["gen_len"])
    assert DEFAULT_GEN_LEN_CV == 0.05
    profile = resolve_calibration("auto", H100.name, "trtllm")
    spread = serve(tp(2), default, calibration=profile)
    fixed = serve(tp(2), make_workloads(gen_len_std=0.0, **load), calibration=profile)
    # 64 prompts, at most 7 an iteration (8192 tokens less 64 decoding): 10 mixed iterations.
    np.testing.assert_allclose(fixed.prefill_tokens_per_mixed_iteration / 1024, 64 / 10)
    assert np.all(spread.ttft_s < fixed.ttft_s)
    assert np.all(spread.tpot_s > fixed.tpot_s)
    # The steady state's throughput is the one cycle either way (requests_per_client 0: no first
    # burst). Over the benchmark the first burst's wait is a client's time too (Little's law), and
    # the same burst lies further above the desynchronized steady TTFT: the spread's is lower.
    steady = {"requests_per_client": 0, **load}
    spread_steady = serve(tp(2), make_workloads(**steady), calibration=profile)
    fixed_steady = serve(tp(2), make_workloads(gen_len_std=0.0, **steady), calibration=profile)
    np.testing.assert_allclose(spread_steady.tokens_per_s, fixed_steady.tokens_per_s, rtol=1e-12)
    assert np.all(spread.tokens_per_s < spread_steady.tokens_per_s)


@pytest.mark.parametrize("clients", [2, 4, 8, 16, 64])
def test_littles_law_holds_in_the_desynchronized_closed_loop(clients: int) -> None:
    """C clients with no think time are all in the system all the time, so Little's law is an
    identity: C = requests/s x the time one request spends, E2E (a client's cycle: its request
    overhead outside the engine is in it). Steady state only (requests_per_client 0: no first
    burst in the TTFT). Llama-3-8B on one H100 under TensorRT-LLM's fit, 1024/128 tokens,
    outputs spread by the default 5%. Before the overhead was in the cycle, requests/s x E2E
    was 2.04 of 2 clients, 4.08 of 4, 8.15 of 8, 16.25 of 16 and 64.49 of 64 (Little's law over
    engine time). Before the TPOT of the desynchronized loop counted the stalls that the other
    clients' prompts put into a request's decode iterations, the product (over engine time) was
    1.96 of 2 clients, 3.76 of 4, 7.58 of 8, 14.97 of 16 and 61.6 of 64: TPOT 7.51 ms at 4
    clients and 9.94 at 16 where tuner simulate, running the same iterations request by request,
    measures 7.94 and 10.37 ms (2000 requests, seed 0; now 8.00 and 10.64)."""
    profile = resolve_calibration("auto", H100.name, "trtllm")
    w = make_workloads(backend="trtllm", concurrency=clients, prompt_len=1024, gen_len=128, requests_per_client=0)
    e = serve(tp(), w, calibration=profile)
    assert e.running[0] == clients and e.queued[0] == 0  # every client's iterations in the engine
    assert e.requests_per_s[0] * e.e2e_latency_s[0] == pytest.approx(clients, rel=1e-12)
    # TPOT is at least one decode step at the running batch.
    assert e.tpot_s[0] >= e.decode_iteration_s[0]


def test_paged_kv_capacity_by_hand() -> None:
    """Llama-3-8B KV: 2 (K, V) x 32 layers x 8 heads x 128 x 2 bytes = 131,072 B per token. An H100
    (81,559 MiB as nvidia-smi reports it) less bf16 weights (8.03e9 params x 2 B) and a full
    iteration's activations (2 x 8192 tokens x 2 x 14336 x 2 B), of which TensorRT-LLM's
    free_gpu_memory_fraction 0.9 goes to the cache, over the mean blocks a sequence holds
    (1024 + 128/2 + 32/2 tokens): 61.67e9 / 144.7e6 = 426.2 -> 426 sequences."""
    d = tp()
    w = make_workloads(backend="trtllm", concurrency=1, prompt_len=1024, gen_len=128)
    e = serve(d, w)
    assert e.kv_bytes_per_token_per_chip[0] == 131072
    weights = 8_030_261_248 * 2
    activations = 2 * 8192 * 2 * 14336 * 2
    free = 0.9 * (81559 * 2**20 - weights - activations)
    assert int(e.max_concurrency[0]) == int(free // (131072 * (1024 + 64 + 16))) == 426


def test_clients_beyond_the_kv_cache_queue_and_wait() -> None:
    d = tp(2)
    w = make_workloads(backend="trtllm", concurrency=np.array([400.0, 800.0]), prompt_len=1024, gen_len=128)
    e = serve(d, w)
    assert e.running[0] == 400 and e.queued[0] == 0
    assert e.running[1] == e.max_concurrency[1] and e.queued[1] == 800 - e.max_concurrency[1]
    # The same engine throughput, shared by twice the clients: they wait for a slot.
    assert e.tokens_per_s[1] == pytest.approx(e.tokens_per_s[0], rel=0.05)
    assert e.ttft_s[1] > e.ttft_s[0] + 1.0


def test_more_clients_more_throughput_slower_tokens_until_saturation() -> None:
    clients = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256], dtype=float)
    e = serve(tp(len(clients)), make_workloads(backend="vllm", concurrency=clients, prompt_len=1024, gen_len=256))
    assert np.all(np.diff(e.tokens_per_s) > 0)
    assert np.all(np.diff(e.tpot_s) >= 0)
    assert np.all(e.stable)


def test_open_loop_throughput_is_the_offered_load_until_it_saturates() -> None:
    rates = np.array([1.0, 4.0, 8.0, 1000.0])
    e = serve(tp(4), make_workloads(backend="vllm", request_rate=rates, prompt_len=1024, gen_len=128))
    assert np.allclose(e.tokens_per_s[:3], rates[:3] * 128)
    assert list(e.stable) == [True, True, True, False]
    assert np.isinf(e.ttft_s[3]) and e.tokens_per_s[3] == 0
    assert np.all(np.diff(e.tpot_s[:3]) > 0)  # more load, more sequences per iteration
    report = serving_report(e, 3)
    assert report["ttft_s"] is None and report["stable"] is False
    # The arrays keep 0 past capacity (a search maximizing tokens/s ranks it below every stable
    # candidate); the report has no throughput there (not "0 tokens/s": it runs at capacity).
    assert e.tokens_per_s_per_chip[3] == 0 and e.tokens_per_s_per_user[3] == 0
    assert report["tokens_per_s"] is None and report["tokens_per_s_per_chip"] is None
    assert serving_report(e, 2)["tokens_per_s"] == pytest.approx(8.0 * 128)


def test_closed_loop_obeys_littles_law() -> None:
    """Clients = throughput x time each spends per request (TTFT + the rest of its tokens)."""
    clients = np.array([4.0, 32.0, 128.0])
    w = make_workloads(backend="trtllm", concurrency=clients, prompt_len=2048, gen_len=256, requests_per_client=0)
    e = serve(tp(3), w)
    cycle = e.ttft_s + (256 - 1) * e.tpot_s
    np.testing.assert_allclose(e.requests_per_s * cycle, clients, rtol=1e-12)


MIXTRAL = get_model("mixtral-8x7b")


@pytest.mark.parametrize("requests_per_client", [0.0, 10.0])
@pytest.mark.parametrize("gen_len_std", [None, 0.0])
@pytest.mark.parametrize("calibrated", [False, True])
@pytest.mark.parametrize(("model", "chips", "hardware"), [("dense", 1, "h100-sxm"), ("moe", 2, "h200")])
def test_littles_law_is_exact_over_the_clients_cycle(
    requests_per_client, gen_len_std, calibrated, model, chips, hardware
):
    """A closed loop with no think time has every client's request in the system all the time, so
    clients = requests/s x E2E, exactly (Little's law is an identity here, not an approximation).
    The system is the client's cycle: a benchmark client (vllm bench serve --max-concurrency,
    genai-perf --concurrency) sends its next request when the last answer arrived, so the request
    overhead (HTTP, tokenization, the answer's way back) is in it, and the engine holds a client's
    request only E2E - overhead of each E2E. At 1 to 1024 clients, below and beyond the KV
    cache's slots, outputs exactly equal (grouped) or spread (desynchronized), the steady state
    alone (requests_per_client 0) or a benchmark of 10 requests a client, whose mean TTFT counts
    the first burst; the pure model (no overheads) and the engine's fit. Llama-3-8B on one H100
    and Mixtral-8x7B on 2 H200s (TP), TensorRT-LLM, 1024/128 tokens. Before, Little's law held
    over engine time (requests/s x (E2E - overhead) = clients), every client in the engine all
    the time: with the fit, requests/s x E2E came to 1.023 of 1 client, 16.25 of 16, 64.49 of 64
    (Llama-3-8B, steady state)."""
    clients = np.array([1.0, 4.0, 16.0, 64.0, 256.0, 512.0, 1024.0])
    spec, chip = (LLAMA3_8B, H100) if model == "dense" else (MIXTRAL, get_hardware(hardware))
    d = make_deployments(
        spec, chip, mesh=np.tile([1, 1, chips], (len(clients), 1)), batch=1, prompt_len=1024, gen_len=128,
        prefill_ffn_layout=0, decode_ffn_layout=0, flash_attention=True,
    )  # fmt: skip
    w = make_workloads(
        backend="trtllm", concurrency=clients, prompt_len=1024, gen_len=128, gen_len_std=gen_len_std,
        requests_per_client=requests_per_client,
    )  # fmt: skip
    profile = resolve_calibration("auto", chip.name, "trtllm") if calibrated else None
    e = serve(d, w, calibration=profile)
    outside = engine_overheads("trtllm").request_overhead_s if calibrated else 0.0
    assert (outside > 0.0) == calibrated
    assert np.any(e.queued > 0) and np.any(e.queued == 0)  # beyond the slots and below
    assert np.all(e.e2e_latency_s == e.ttft_s + 127 * e.tpot_s)
    np.testing.assert_allclose(e.requests_per_s * e.e2e_latency_s, clients, rtol=1e-12)
    # The engine holds a client's request E2E - overhead of each E2E (below the slots: the rest of
    # the cycle is the overhead; beyond them the wait for a slot is in the engine's queue).
    below = e.queued == 0
    in_engine = e.requests_per_s * (e.e2e_latency_s - outside)
    np.testing.assert_allclose(in_engine[below], clients[below] * (1.0 - outside / e.e2e_latency_s[below]), rtol=1e-12)


def test_one_clients_cycle_holds_its_request_overhead(monkeypatch) -> None:
    """One client of the pure model with only a request overhead of 50 ms (no host time): its
    request waits 50 ms outside the engine (its HTTP and tokenization, the answer's way back),
    then is prefilled alone and decodes 127 steps of one sequence: E2E = 0.05 + prefill + 127 x
    the decode step, and the client sends 1 / E2E requests a second. Before: 1 / (E2E - 0.05),
    the overhead outside the client's cycle (5.1% more than it can send here)."""
    # Two paths' formulas compared to float64 rounding: estimate's roofline in float64 (its
    # float32 default, deployment.ROOFLINE_DTYPE, is ~1e-7 from it: test_float32_roofline.py).
    monkeypatch.setattr("cost_models.deployment.ROOFLINE_DTYPE", np.float64)
    d = tp()
    static = estimate(d)
    outside = EngineOverheads(request_overhead_s=0.05)
    load = {"backend": "trtllm", "concurrency": 1, "prompt_len": 1024, "gen_len": 128, "requests_per_client": 0}
    e = serve(d, make_workloads(gen_len_std=0.0, **load), overheads=outside)
    e2e = 0.05 + static.prefill.latency_s[0] + 127 * static.decode_step_latency_s[0]
    assert e.e2e_latency_s[0] == pytest.approx(e2e, rel=1e-9)
    assert e.requests_per_s[0] == pytest.approx(1.0 / e2e, rel=1e-9)
    assert e.tokens_per_s[0] == pytest.approx(128.0 / e2e, rel=1e-9)
    assert e.running[0] == 1.0 and e.queued[0] == 0.0


def test_prefix_cache_hits_shorten_the_first_token() -> None:
    w = make_workloads(backend="vllm", request_rate=4.0, prompt_len=4096, gen_len=64, prefix_hit_rate=[0.0, 0.75])
    e = serve(tp(2), w)
    assert e.ttft_s[1] < 0.5 * e.ttft_s[0]


def test_chunked_prefill_admits_prompts_longer_than_the_token_budget() -> None:
    with pytest.raises(InvalidInputError, match="max_num_tokens"):
        make_workloads(backend="trtllm", concurrency=4, prompt_len=16384, gen_len=64, max_num_tokens=8192)
    w = make_workloads(
        backend="trtllm", concurrency=4, prompt_len=16384, gen_len=64, max_num_tokens=8192, chunked_prefill=True
    )
    e = serve(tp(), w)
    assert e.stable[0] and e.prefill_tokens_per_mixed_iteration[0] <= 8192


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"request_rate": 0.0}, "request_rate"),
        ({"request_rate": -1.0}, "request_rate"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"concurrency": 4, "request_rate": 1.0}, "serving"),
        ({}, "serving"),
        ({"concurrency": 4, "prefix_hit_rate": 1.0}, "prefix_hit_rate"),
        ({"concurrency": 4, "memory_fraction": 0.0}, "memory_fraction"),
        ({"concurrency": 4, "max_batch_size": 0}, "max_batch_size"),
        # Held to the range the CLI and the spec take (cost_models.input_ranges): above 0 took a
        # subnormal rate (1e-320) and 1e300, and a memory fraction of 1e-300.
        ({"request_rate": 1e-320}, "request_rate"),
        ({"request_rate": 5e-324}, "request_rate"),
        ({"request_rate": 1e-7}, "request_rate"),
        ({"request_rate": 1e300}, "request_rate"),
        ({"request_rate": np.array([5.0, 1e-320])}, "request_rate"),
        ({"concurrency": 4, "memory_fraction": 1e-300}, "memory_fraction"),
        ({"concurrency": 4, "memory_fraction": 0.005}, "memory_fraction"),
    ],
)
def test_bad_workloads_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInputError) as error:
        make_workloads(backend="vllm", prompt_len=1024, gen_len=128, **kwargs)
    assert error.value.field == field
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"request_rate": 1e-6}, {"request_rate": 1e9}, {"concurrency": 4, "memory_fraction": 0.01}],
    ids=["lowest rate", "highest rate", "lowest memory fraction"],
)
def test_workloads_at_the_range_bounds_are_taken(kwargs: dict) -> None:
    w = make_workloads(backend="vllm", prompt_len=1024, gen_len=128, **kwargs)
    for name, value in kwargs.items():
        assert float(getattr(w, name)[0]) == value


def test_a_model_that_leaves_no_room_for_one_sequence_is_infeasible_not_zero() -> None:
    d = make_deployments(get_model("llama-3-70b"), H100, mesh=[1, 1, 1], batch=1, prompt_len=1, gen_len=1)
    e = serve(d, make_workloads(backend="vllm", concurrency=8, prompt_len=1024, gen_len=128))
    assert not e.fits[0] and not e.stable[0]
    assert np.isinf(e.ttft_s[0]) and e.tokens_per_s[0] == 0


def test_host_overheads_slow_busy_iterations_only_when_they_exceed_the_gpu() -> None:
    """The host loop overlaps the GPU: an iteration takes the longer of the two."""
    d = tp(2, tp_degree=8)
    w = make_workloads(backend="trtllm", concurrency=np.array([1.0, 128.0]), prompt_len=1024, gen_len=128)
    bare = serve(d, w, overheads=NO_OVERHEADS)
    host = EngineOverheads(host_per_sequence_s=1e-4)
    loaded = serve(d, w, overheads=host)
    # One sequence: 0.1 ms of host time hides under the GPU's decode step.
    assert loaded.decode_iteration_s[0] == pytest.approx(bare.decode_iteration_s[0])
    # 128 sequences: 12.8 ms of host time exceeds the GPU step of an 8-GPU 8B model.
    assert loaded.decode_iteration_s[1] == pytest.approx(128 * 1e-4)


def test_the_calibration_brings_its_engines_fitted_overheads() -> None:
    trt = engine_overheads("trtllm")
    assert not trt.borrowed and trt.host_per_new_request_s > 0 and "177 runs" in trt.fitted_on
    vllm = engine_overheads("vllm")
    assert vllm.borrowed and vllm.host_per_new_request_s == trt.host_per_new_request_s
    profile = resolve_calibration("auto", "h100-sxm", "trtllm")
    # Outputs spread by 5% (the measured runs' model, tuner.calibrate_serving): prompts arrive one
    # at a time, and at 8 clients a prompt's host cost hides under its prefill, so the fit adds
    # about its time outside the engine. (With fixed lengths the first burst's groups of 4 prompts
    # pay 4 x 29 ms of host per mixed iteration, over the GPU's 88 ms: more than that.)
    w = make_workloads(backend="trtllm", concurrency=8, prompt_len=1024, gen_len=128, gen_len_std=6.4)
    with_fit = serve(tp(), w, calibration=profile)
    without = serve(tp(), w, calibration=profile, overheads=NO_OVERHEADS)
    assert with_fit.ttft_s[0] == pytest.approx(without.ttft_s[0] + trt.request_overhead_s, rel=0.2)


def test_spread_prompts_cost_more_attention_than_fixed_ones_of_the_same_mean() -> None:
    """Causal attention grows with the square of the prompt: E[P^2] > E[P]^2 when lengths spread."""
    w = make_workloads(backend="vllm", request_rate=2.0, prompt_len=8192, gen_len=64, prompt_len_std=[0.0, 4096.0])
    e = serve(tp(2), w)
    assert e.mixed_iteration_s[1] > e.mixed_iteration_s[0]
    # Decode steps barely move (a few more sequences decode while the longer prefills run).
    assert e.decode_iteration_s[1] == pytest.approx(e.decode_iteration_s[0], rel=0.01)


def test_the_token_budget_limits_the_running_sequences_by_hand() -> None:
    """B tokens an iteration, each decode one of them, sustain B / (P + G - 1) requests an
    iteration: B (G - 1) / (P + G - 1) decoding (Little's law in iterations) and the prompt in
    flight, which spans ceil(P / (B - decoding)) iterations chunked, one whole."""
    w = make_workloads(
        backend="vllm",
        concurrency=128,
        prompt_len=[1024, 1024, 2048],
        gen_len=256,
        max_num_tokens=[64, 8192, 4096],
        chunked_prefill=[True, True, False],
        max_batch_size=128,
    )
    per_iteration = np.array([64 / 1279, 8192 / 1279, 4096 / 2303])
    decoding = per_iteration * 255
    in_flight = per_iteration * np.array([np.ceil(1024 / (64 - decoding[0])), np.ceil(1024 / (8192 - decoding[1])), 1])
    np.testing.assert_allclose(token_limit(w), decoding + in_flight)
    assert token_limit(w)[0] == pytest.approx(13.76, abs=0.01)
    e = serve(tp(3), w)
    assert list(e.limited_by) == ["max_num_tokens", "max_batch_size", "max_batch_size"]
    assert e.max_concurrency[0] == pytest.approx(token_limit(w)[0]) and e.running[0] == e.max_concurrency[0]


def test_one_output_token_has_no_tpot_in_either_loop() -> None:
    """A request generating one token has no time per output token, (E2E - TTFT) / (G - 1) with
    G - 1 = 0 (vLLM's benchmark counts TPOT only where output_len > 1; tuner simulate gives such
    requests none). Both loops report TPOT 0 and E2E = TTFT. Before, the open loop scored its mean
    iteration as the TPOT (7.56 ms here, 6.86 ms the decode-only iteration), while the closed loop
    gave 0."""
    profile = resolve_calibration("auto", H100.name, "trtllm")
    for load in ({"request_rate": 5.0}, {"concurrency": 4}):
        e = serve(tp(), make_workloads(backend="trtllm", prompt_len=1024, gen_len=1, **load), calibration=profile)
        assert e.stable[0], load
        assert e.tpot_s[0] == 0.0 and e.tpot_p90_s[0] == 0.0 and e.tpot_p99_s[0] == 0.0, load
        assert e.e2e_latency_s[0] == e.ttft_s[0], load
        assert e.ttft_s[0] > 0.0, load
