"""The serving steady state under expert and attention data parallelism (cost_models/serving.py
``serve``, cost_models/iteration.py): each DP rank runs its own scheduler, token budget and KV
cache over its share of the load; its MoE layers see every rank's tokens.

Checked against the static estimate (cost_models/deployment.py ``estimate``, which charges EP
and DP) at the same degrees and batch, and from first principles: DeepSeek-V3's MLA cache is one
576-wide latent (512 + 64 rope dims) per token per layer, 61 layers, one byte in fp8, on every
chip of a TP1 rank; H200 memory from the catalog (nvidia-smi, 150,754,820,096 B); SGLang's
mem_fraction_static 0.88 and page size 1 (ENGINE_DEFAULTS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cost_models.calibrated_times import calibrated_network
from cost_models.calibration import resolve_calibration
from cost_models.deployment import estimate, rank_view
from cost_models.deployments import make_deployments
from cost_models.dtypes import FP8
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.iteration import iteration_times
from cost_models.models import get_model
from cost_models.serving import make_workloads, serve
from cost_models.topology import network_for

H100 = get_hardware("h100-sxm")
H200 = get_hardware("h200")
DEEPSEEK_V3 = get_model("deepseek-v3")
LLAMA3_8B = get_model("llama-3-8b")
FP8_ALL = {"weight_dtype": FP8, "act_dtype": FP8, "kv_dtype": FP8}


def _deepseek(tp: int, dp: int, ep: int, batch: int = 8, n: int = 1):
    """DeepSeek-V3 fp8 on H200s, Megatron TP layouts and fused attention (the engines')."""
    return make_deployments(
        DEEPSEEK_V3, H200, mesh=np.tile([1, 1, tp], (n, 1)), batch=batch, prompt_len=2048, gen_len=256,
        prefill_ffn_layout=0, decode_ffn_layout=0, flash_attention=True, data_parallel=dp, expert_parallel=ep,
        **FP8_ALL,
    )  # fmt: skip


@pytest.mark.parametrize("degrees", [(1, 8, 8), (8, 1, 8), (2, 4, 8)])
@pytest.mark.parametrize("per_rank", [1, 4, 32])
def test_a_decode_only_iteration_at_dp_and_ep_is_the_static_decode_step(degrees, per_rank) -> None:
    """An iteration of DP x b sequences decoding (b on each rank's view) is the static estimate's
    decode step at the same degrees and batch: the same operator times, the experts the DP ranks'
    summed tokens wake (the busiest EP rank's) and the DP gather / all-to-all dispatch."""
    tp, dp, ep = degrees
    d = _deepseek(tp, dp, ep, batch=dp * per_rank)
    profile = resolve_calibration("auto", "h200", "sglang")
    static = estimate(d, calibration=profile)
    network = calibrated_network(network_for(H200), H200, profile)
    common = {"decode_context": 2048 + 255 / 2, "prefill_tokens": 0, "prefill_prompt_len": 2048}
    step = iteration_times(
        rank_view(d), network, decode_seqs=per_rank, calibration=profile, data_parallel=dp, expert_parallel=ep,
        **common,
    )  # fmt: skip
    assert step.latency_s[0] == pytest.approx(static.decode_step_latency_s[0], rel=1e-12)
    # The degrees are charged: the rank's TP group alone (before: refused) is another number.
    tp_only = iteration_times(rank_view(d), network, decode_seqs=per_rank, calibration=profile, **common)
    assert tp_only.latency_s[0] != pytest.approx(step.latency_s[0], rel=1e-3)


def test_dp_attention_holds_each_ranks_sequences_and_shares_the_experts() -> None:
    """SGLang, TP1 DP8 EP8, 2048/256 tokens, 64 clients: each rank's KV cache holds its own 8
    sequences, 35,136 B a token per chip (576 x 61 x 1 B); its budget is 0.88 x the H200's
    memory less the rank's weights (SGLang's rule), and the deployment runs DP times a rank's.
    The knobs are the deployment's, as tuner export writes them: SGLang with DP attention divides
    --max-running-requests and --chunked-prefill-size by --dp-size, so 8 x 2048 and 8 x 8192
    leave each rank 2048 slots and an 8192-token budget (the KV cache binds)."""
    d = _deepseek(1, 8, 8)
    profile = resolve_calibration("auto", "h200", "sglang")
    knobs = {"max_batch_size": 8 * 2048, "max_num_tokens": 8 * 8192}
    w = make_workloads(backend="sglang", concurrency=64, prompt_len=2048, gen_len=256, **knobs)
    e = serve(d, w, calibration=profile)
    kv_per_token = 576 * 61 * 1
    assert e.kv_bytes_per_token_per_chip[0] == kv_per_token
    # Weights per chip: the routed experts split over the 8 ranks, the rest replicated (TP1):
    # what the static estimate holds at the same degrees.
    weights = estimate(d, calibration=profile).memory.weights_bytes_per_chip[0]
    assert e.weights_bytes_per_chip[0] == weights
    assert 95e9 < weights < 105e9  # 656B routed-expert bytes / 8 + ~16B replicated + embeddings
    held = 2048 + 256 / 2 + 1 / 2  # prompt, half the output, half a one-token page
    per_rank_slots = math.floor((150_754_820_096 * 0.88 - weights) / (kv_per_token * held))
    assert e.limited_by[0] == "kv_cache"
    assert e.max_concurrency[0] == 8 * per_rank_slots
    assert e.running[0] == 64 and e.queued[0] == 0
    # Per chip: one rank's 8 sequences, not the 64.
    assert e.kv_cache_bytes_per_chip[0] == pytest.approx(8 * held * kv_per_token, rel=1e-12)


def test_sglang_dp_attention_divides_the_token_budget_over_the_ranks() -> None:
    """At SGLang's defaults (8192 tokens, 2048 requests) with DP attention over 8 ranks each rank
    prefills 1024-token chunks: B = 1024 tokens sustain B / (P + G - 1) = 1024 / 2303 requests an
    iteration, B (G - 1) / (P + G - 1) = 113.4 sequences decoding and 1024 / 2303 x ceil(2048 /
    (1024 - 113.4)) = 3 x 0.445 prompts in flight (serving.token_limit's balance): 114.7 a rank,
    8 x that in all (not 8 ranks of 8192 tokens)."""
    d = _deepseek(1, 8, 8)
    profile = resolve_calibration("auto", "h200", "sglang")
    w = make_workloads(backend="sglang", concurrency=2048, prompt_len=2048, gen_len=256)
    e = serve(d, w, calibration=profile)
    per_iteration = 1024 / (2048 + 255)
    decoding = per_iteration * 255
    in_flight = per_iteration * math.ceil(2048 / (1024 - decoding))
    assert in_flight == pytest.approx(3 * per_iteration)
    assert e.limited_by[0] == "max_num_tokens"
    assert e.max_concurrency[0] == pytest.approx(8 * (decoding + in_flight), rel=1e-12)


@pytest.mark.parametrize("requests_per_client", [0, 10])
@pytest.mark.parametrize("clients", [16, 64, 256])
def test_littles_law_holds_at_dp_attention(clients: int, requests_per_client: int) -> None:
    """Every client is in the system all the time (no think time, below the slots): C =
    requests/s x E2E, the client's cycle (its request overhead, outside the engine, included),
    exactly, in the steady state and over a benchmark of 10 requests a client (its first burst's
    wait counted in both). Before the overhead was in the cycle the law held over engine time,
    requests/s x (E2E - overhead) = C: over E2E 16.05, 64.13 and 256.32 in the steady state.
    Before that, over engine time, 16.03, 64.09 and 256.20 (the grouped TTFT, the smaller one
    where prefill-bound, waited half a decode iteration no cycle held), 16.12, 65.08 and 264.95
    over the benchmark (the throughput was the steady cycle's)."""
    d = _deepseek(1, 8, 8)
    profile = resolve_calibration("auto", "h200", "sglang")
    w = make_workloads(
        backend="sglang", concurrency=clients, prompt_len=2048, gen_len=256, requests_per_client=requests_per_client
    )
    e = serve(d, w, calibration=profile)
    assert e.running[0] == clients and e.queued[0] == 0
    assert e.requests_per_s[0] * e.e2e_latency_s[0] == pytest.approx(clients, rel=1e-12)


@pytest.mark.parametrize("load", [{"request_rate": 8.0}, {"concurrency": 64}])
def test_a_dense_model_at_dp_k_is_k_replicas_at_a_kth_of_the_load(load) -> None:
    """No shared MoE layers: DP 4 ranks of Llama-3-8B on one H100 each are 4 independent
    replicas, each at R / 4 (or C / 4 clients): the same latencies, 4x the throughput and
    slots, the same tokens/s per chip."""

    def llama(dp: int):
        return make_deployments(
            LLAMA3_8B, H100, mesh=[1, 1, 1], batch=dp, prompt_len=1024, gen_len=256, prefill_ffn_layout=0,
            decode_ffn_layout=0, flash_attention=True, data_parallel=dp,
        )  # fmt: skip

    profile = resolve_calibration("auto", "h100-sxm", "vllm")
    quarter = {k: v / 4 for k, v in load.items()}
    common = {"backend": "vllm", "prompt_len": 1024, "gen_len": 256}
    # max_batch_size is the deployment's (tuner export gives each of vLLM's DP engine cores a
    # 1/DP share); max_num_tokens each core's own.
    four = serve(llama(4), make_workloads(**common, **load, max_batch_size=4 * 256), calibration=profile)
    one = serve(llama(1), make_workloads(**common, **quarter, max_batch_size=256), calibration=profile)
    for name in ("ttft_s", "tpot_s", "e2e_latency_s", "tokens_per_s_per_chip", "kv_cache_bytes_per_chip"):
        assert getattr(four, name)[0] == getattr(one, name)[0], name
    for name in ("tokens_per_s", "requests_per_s", "max_concurrency", "running", "running_p999", "queued"):
        assert getattr(four, name)[0] == 4 * getattr(one, name)[0], name
    assert four.stable[0] and one.stable[0]


def test_rows_differing_only_in_dp_or_ep_are_scored_as_their_own() -> None:
    """One DP rank's view of TP1 DP8 EP8 and of TP1 DP8 EP1 (or TP8 and TP8 EP8) is the same TP
    group: scored together, no row may borrow another's iterations."""
    rows = [(1, 8, 8), (1, 8, 1), (8, 1, 8), (8, 1, 1)]
    profile = resolve_calibration("auto", "h200", "sglang")
    w = make_workloads(backend="sglang", concurrency=64, prompt_len=2048, gen_len=256)
    alone = [serve(_deepseek(*r), w, calibration=profile) for r in rows]
    many = 50  # enough rows that the dense views are shared between equal rows
    d = make_deployments(
        DEEPSEEK_V3, H200, mesh=np.array([[1, 1, r[0]] for r in rows] * many), batch=8, prompt_len=2048,
        gen_len=256, prefill_ffn_layout=0, decode_ffn_layout=0, flash_attention=True,
        data_parallel=np.array([r[1] for r in rows] * many), expert_parallel=np.array([r[2] for r in rows] * many),
        **FP8_ALL,
    )  # fmt: skip
    together = serve(d, make_workloads(len(d), backend="sglang", concurrency=64, prompt_len=2048, gen_len=256),
                     calibration=profile)  # fmt: skip
    for i, e in enumerate(alone):
        for j in (i, i + 4 * (many - 1)):
            assert together.tpot_s[j] == pytest.approx(e.tpot_s[0], rel=1e-12)
            assert together.ttft_s[j] == pytest.approx(e.ttft_s[0], rel=1e-12)
    assert len({round(float(e.tpot_s[0]), 9) for e in alone}) == len(rows)


def test_a_pipeline_under_load_is_refused_naming_the_field() -> None:
    d = make_deployments(LLAMA3_8B, H100, mesh=[1, 1, 1], batch=2, prompt_len=1024, gen_len=256, pipeline_parallel=2)
    with pytest.raises(InvalidInputError) as err:
        serve(d, make_workloads(backend="vllm", concurrency=4, prompt_len=1024, gen_len=256))
    assert err.value.field == "pipeline_parallel"
    assert "tensor, expert and data parallelism only" in str(err.value)
