"""tuner estimate under a load (--concurrency / --request-rate): the serving section, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import assert_one_error_line, run_cli
from cost_models.deployment import estimate_one
from cost_models.serving import make_workloads, serve
from cost_models.serving_one import estimate_serving_one

BASE = ("estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1")
LOAD = ("--prompt-len", "1024", "--gen-len", "128")


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run_cli(capsys, *BASE, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_done_when_command_prints_ttft_and_tpot(capsys):
    data = _json(capsys, "--concurrency", "64", *LOAD)
    s = data["serving"]
    assert s["ttft_s"] > 0 and s["tpot_s"] > 0 and s["stable"] and s["fits"]
    assert s["load"] == {
        "concurrency": 64,
        "request_rate": None,
        "prompt_len": 1024,
        "gen_len": 128,
        "prompt_len_std": 0.0,
        "gen_len_std": 6.4,  # the default: 5% of the output length (a desynchronized closed loop)
    }
    assert set(s["engine"]) >= {"backend", "max_batch_size", "max_num_tokens", "chunked_prefill", "kv_block_size"}
    # The static sections stay, at the serving running batch (min(concurrency, max concurrency)).
    assert data["batch"] == 64 and data["batch_source"] == "serving running batch"
    assert {"prefill", "decode", "memory", "mesh"} <= set(data)


def test_gen_len_std_zero_is_the_grouped_closed_loop(capsys):
    """The default spreads outputs by 5% of --gen-len (the desynchronized closed loop, the model the
    measured runs are fitted and held out under); --gen-len-std 0 keeps every output exactly
    --gen-len and the first burst's groups: 64 clients on one H100 prefill in groups of about 7
    whose mixed iterations each pay the host cost of 7 prompts (TTFT 235 ms, against 132 ms). The
    steady state's throughput is the same cycle either way; desynchronized, the prefill work a
    request no longer waits for in its TTFT stalls its decode iterations instead (Little's law over
    the cycle), so its TPOT is longer (20.1 ms against 19.2 ms). Over the benchmark (10 requests a
    client) the first burst's wait counts in the throughput too (Little's law: clients = requests/s
    x engine E2E), and the same burst lies further above the desynchronized steady TTFT: 3070
    against 3083 tok/s grouped (equal before, at the steady cycle's 3156)."""
    default = _json(capsys, "--concurrency", "64", *LOAD)["serving"]
    fixed = _json(capsys, "--concurrency", "64", *LOAD, "--gen-len-std", "0")["serving"]
    explicit = _json(capsys, "--concurrency", "64", *LOAD, "--gen-len-std", "6.4")["serving"]
    assert fixed["load"]["gen_len_std"] == 0.0
    assert explicit["ttft_s"] == default["ttft_s"]
    assert fixed["ttft_s"] > 1.5 * default["ttft_s"]
    assert default["tokens_per_s"] < fixed["tokens_per_s"] < 1.01 * default["tokens_per_s"]
    assert fixed["tpot_s"] < default["tpot_s"]


def test_engine_knobs_are_used_and_reported(capsys):
    s = _json(
        capsys,
        "--concurrency",
        "8",
        *LOAD,
        "--backend",
        "trtllm",
        "--max-batch-size",
        "4",
        "--max-num-tokens",
        "2048",
        "--chunked-prefill",
        "--kv-block-size",
        "64",
        "--prefix-hit-rate",
        "0.25",
    )["serving"]
    assert s["engine"] == {
        "backend": "trtllm",
        "max_batch_size": 4,
        "max_num_tokens": 2048,
        "chunked_prefill": True,
        "kv_block_size": 64,
        "memory_fraction": 0.9,
        "prefix_hit_rate": 0.25,
    }
    assert s["max_concurrency"] == 4 and s["queued"] == 4 and s["limited_by"] == "max_batch_size"


@pytest.mark.parametrize("calibration", ["none", "auto"])
def test_concurrency_one_tpot_is_the_static_decode_step_at_batch_one(calibration):
    """One client, fixed lengths: no iteration it decodes in holds another prompt, so its TPOT is
    the static decode step at batch 1 (estimate_one, an independent path) within 2%."""
    r = estimate_serving_one(
        "llama-3-8b", "h100-sxm", chips=1, prompt_len=1024, gen_len=128, concurrency=1, calibration=calibration
    )
    static = estimate_one(
        "llama-3-8b", "h100-sxm", chips=1, batch=1, prompt_len=1024, gen_len=128, calibration=calibration
    )
    assert r["serving"]["tpot_s"] == pytest.approx(static["decode"]["step_latency_s"], rel=0.02)
    # TTFT at least the prompt's own prefill iteration.
    assert r["serving"]["ttft_s"] >= 0.9 * static["prefill"]["latency_s"]


def test_table_has_the_serving_section(capsys):
    code, out, err = run_cli(capsys, *BASE, "--concurrency", "64", *LOAD)
    assert code == 0, err
    assert "serving: 64 concurrent clients" in out
    for column in ("TTFT", "TPOT", "tokens/s", "per chip", "per user", "max concurrency", "queued", "stable"):
        assert column in out
    assert " ms " in out  # TTFT/TPOT in ms


def test_kv_cache_limit_queues_clients(capsys):
    args = ("--concurrency", "500", "--prompt-len", "8192", "--gen-len", "1024", "--backend", "trtllm")
    s = _json(capsys, *args)["serving"]
    assert 1 <= s["max_concurrency"] < 500 and s["limited_by"] == "kv_cache"
    assert s["queued"] == 500 - s["max_concurrency"]
    code, out, err = run_cli(capsys, *BASE, *args)
    assert code == 0, err
    assert f"500 clients queue: the KV cache holds {s['max_concurrency']}" in out


def test_rate_beyond_capacity_is_unstable_with_the_highest_sustainable_rate(capsys):
    """Past capacity the throughputs are null (the table: "unstable"), as the latencies are: they
    were 0 tokens/s, for a deployment that serves at its capacity, not at nothing."""
    data = _json(capsys, "--request-rate", "1000", *LOAD)
    s = data["serving"]
    assert s["stable"] is False and s["ttft_s"] is None
    for key in ("tokens_per_s", "tokens_per_s_per_chip", "tokens_per_s_per_user", "requests_per_s"):
        assert s[key] is None, key
    best = s["max_stable_request_rate"]
    assert 0 < best < 1000
    # Checked against serve(): stable at the rate given, unstable a little above it.
    r = estimate_serving_one("llama-3-8b", "h100-sxm", chips=1, prompt_len=1024, gen_len=128, request_rate=best)
    assert r["serving"]["stable"]
    above = estimate_serving_one(
        "llama-3-8b", "h100-sxm", chips=1, prompt_len=1024, gen_len=128, request_rate=best * 1.1
    )
    assert not above["serving"]["stable"]
    code, out, err = run_cli(capsys, *BASE, "--request-rate", "1000", *LOAD)
    assert code == 0 and "highest sustainable rate is about" in out and "NO" in out
    row = next(line for line in out.splitlines() if line.rstrip().endswith("NO │"))
    assert row.count("unstable") == 4 and " 0 " not in row


def test_serve_grid_matches_the_bisection():
    """max_stable_rate is the edge of serve()'s stability over a grid of rates."""
    r = estimate_serving_one("llama-3-8b", "h100-sxm", chips=1, prompt_len=1024, gen_len=128, request_rate=1000)
    best = r["serving"]["max_stable_request_rate"]
    from cost_models.calibration import resolve_calibration
    from cost_models.deployments import Deployment, Deployments
    from cost_models.hardware import get_hardware
    from cost_models.models import get_model

    # As engines run a GPU (the estimate's default there): fused attention.
    row = Deployment(get_model("llama-3-8b"), get_hardware("h100-sxm"), (1, 1, 1), 1, 1024, 128, flash_attention=True)
    rates = best * np.array([0.5, 0.9, 1.0, 1.05, 2.0])
    d = Deployments.from_rows([row] * len(rates))
    w = make_workloads(backend=r["serving"]["engine"]["backend"], request_rate=rates, prompt_len=1024, gen_len=128)
    stable = serve(d, w, calibration=resolve_calibration("auto", "h100-sxm")).stable
    assert stable.tolist() == [True, True, True, False, False]


def test_a_rate_a_million_times_too_high_still_finds_the_highest_sustainable_rate(capsys):
    # The grid of rates below the asked one started at a millionth of it: at 1e9 req/s (the
    # highest a command takes) its foot, 1,000 req/s, was unstable too and the answer was 0
    # ("the highest sustainable rate is about 0 req/s"); one H100 sustains ~32/s (1024/128).
    at_1000 = estimate_serving_one("llama-3-8b", "h100-sxm", chips=1, prompt_len=1024, gen_len=128, request_rate=1000)
    at_1e9 = estimate_serving_one("llama-3-8b", "h100-sxm", chips=1, prompt_len=1024, gen_len=128, request_rate=1e9)
    best = at_1000["serving"]["max_stable_request_rate"]
    assert best > 10.0
    assert at_1e9["serving"]["max_stable_request_rate"] == pytest.approx(best, rel=0.02)
    code, out, err = run_cli(capsys, *BASE, "--request-rate", "1e9", *LOAD)
    assert code == 0 and "highest sustainable rate is about 0 " not in out
    assert "highest sustainable rate is about" in out


@pytest.mark.parametrize(
    ("args", "fields"),
    [
        (("--concurrency", "0", *LOAD), ("concurrency",)),
        (("--concurrency", "-3", *LOAD), ("concurrency",)),
        (("--request-rate", "0", *LOAD), ("request_rate",)),
        (("--request-rate", "-2.5", *LOAD), ("request_rate",)),
        (("--concurrency", "4", "--request-rate", "2", *LOAD), ("concurrency", "request_rate")),
        (("--max-batch-size", "64", "--batch", "8", *LOAD), ("--concurrency",)),
        (("--max-batch-size", "64", *LOAD), ("--concurrency",)),
        ((*LOAD,), ("--batch",)),
        (("--concurrency", "4", "--prefix-hit-rate", "1", *LOAD), ("prefix_hit_rate",)),
        (("--concurrency", "4", "--prefix-hit-rate", "-0.1", *LOAD), ("prefix_hit_rate",)),
        (("--concurrency", "4", "--max-num-tokens", "0", *LOAD), ("max_num_tokens",)),
        # A prompt the KV cache cannot hold (vLLM: chunked prefill, so the KV check speaks) ...
        (("--concurrency", "4", "--backend", "vllm", "--prompt-len", "2000000", "--gen-len", "128"), ("--prompt-len",)),
        # ... and under TensorRT-LLM (prefill not chunked) the token budget speaks first.
        (
            ("--concurrency", "4", "--backend", "trtllm", "--prompt-len", "2000000", "--gen-len", "128"),
            ("max_num_tokens",),
        ),
        (("--concurrency", "4", "--prompt-len", "0", "--gen-len", "128"), ("prompt_len",)),
        # A 1e300-token spread overflowed the analytic model (RuntimeWarnings, then a TypeError traceback).
        (("--concurrency", "4", "--prompt-len-std", "1e300", *LOAD), ("prompt_len_std",)),
    ],
)
def test_bad_serving_input_is_one_line_exit_2(capsys, args, fields):
    code, out, err = run_cli(capsys, *BASE, *args)
    assert_one_error_line(code, out, err, fields)


@pytest.mark.parametrize("flag", ["--pp", "--micro-batches"])
@pytest.mark.parametrize("load", [("--request-rate", "10"), ("--concurrency", "30")])
def test_a_parallel_degree_the_serving_model_does_not_charge_is_named_under_a_rate_too(capsys, flag, load):
    """--tp 2 --pp 3 under --request-rate: the static estimate at its first batch (1 sequence)
    spoke first with an error about a --batch never passed. Now the flag given is named either
    way (PP and micro-batches: the serving model charges TP, EP and DP only)."""
    args = ("estimate", "--model", "llama-3-70b", "--hardware", "h100-sxm", "--tp", "2", flag, "3")
    code, out, err = run_cli(capsys, *args, *load, "--prompt-len", "2048", "--gen-len", "256")
    field = flag[2:].replace("-", "_")
    line = assert_one_error_line(code, out, err, (field,))
    assert line.startswith(f"error: {field}: the serving model charges tensor, expert and data parallelism only")


@pytest.mark.parametrize("load", [("--concurrency", "64"), ("--request-rate", "4")])
def test_dp_attention_with_expert_parallelism_is_scored_under_load(capsys, load):
    """DeepSeek-V3 fp8 on 8 H200s under SGLang, TP1 DP8 EP8 (--enable-dp-attention --dp-size 8
    --ep-size 8): refused before ("the serving model charges tensor parallelism only"). Each DP
    rank's KV cache holds its own sequences: 576 x 61 x 1 B a token per chip (MLA's latent, fp8),
    and the slots are 8 x a rank's: floor((0.88 x 150,754,820,096 B - weights) / (35,136 B x
    (2048 + 128 + 0.5) tokens)) each, with knobs that leave each rank 2048 requests and 8192
    tokens (SGLang divides both by --dp-size under DP attention)."""
    args = (
        "estimate", "--model", "deepseek-v3", "--hardware", "h200", "--backend", "sglang", "--tp", "1",
        "--dp", "8", "--ep", "8", "--weight-bits", "fp8", "--act-bits", "fp8", "--kv-bits", "fp8",
        "--prompt-len", "2048", "--gen-len", "256", "--max-batch-size", "16384", "--max-num-tokens", "65536",
        *load, "--json",
    )  # fmt: skip
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    data = json.loads(out)
    assert {k: data["parallel"][k] for k in ("pp", "ep", "dp", "micro_batches")} == {
        "pp": 1, "ep": 8, "dp": 8, "micro_batches": 1,
    }  # fmt: skip
    s = data["serving"]
    weights = data["memory"]["weights_bytes_per_chip"]
    per_rank = int((0.88 * 150_754_820_096 - weights) // (576 * 61 * (2048 + 128 + 0.5)))
    assert s["max_concurrency"] == 8 * per_rank
    assert s["stable"] and s["fits"]
    assert data["batch"] % 8 == 0  # the static sections at DP x a rank's running batch


def test_static_estimate_unchanged_without_a_load(capsys):
    data = _json(capsys, "--batch", "8", *LOAD)
    assert "serving" not in data and data["batch"] == 8


@pytest.mark.parametrize("degrees", [("--chips", "2"), ("--tp", "2")])
def test_an_open_loop_static_sections_score_the_serving_deployment(capsys, degrees):
    """Under a rate the static sections are scored again at the running batch: on a GPU that is the
    deployment the serving section scored (Megatron TP, ws_1d, fused attention), the static
    estimate of it at that batch. Llama-3-70B fp8 on 2 H100s at 4 req/s ran 98 sequences: the
    decode step was scored on ws_2d without flash attention (36.3 ms, not 35.1 ms), and with --tp 2
    and no --chips the second scoring failed for want of --chips."""
    args = ("--model", "llama-3-70b", "--hardware", "h100-sxm", *degrees, "--weight-bits", "fp8")
    load = ("--request-rate", "4", "--prompt-len", "2048", "--gen-len", "256", "--json")
    code, out, err = run_cli(capsys, "estimate", *args, *load)
    assert code == 0, err
    data = json.loads(out)
    assert data["batch"] > 1 and data["batch_source"] == "serving running batch"
    assert data["ffn_layout"] == {"prefill": "ws_1d", "decode": "ws_1d"} and data["flash_attention"] is True
    assert data["chips"] == 2 and data["mesh"] == "1x1x2"
    static = ("--batch", str(data["batch"]), "--prompt-len", "2048", "--gen-len", "256", "--json")
    code, out, err = run_cli(capsys, "estimate", *args, *static)
    assert code == 0, err
    alone = json.loads(out)
    assert data["decode"] == alone["decode"] and data["prefill"] == alone["prefill"]
    assert data["memory"] == alone["memory"]


def test_a_gpu_deployment_under_load_is_named_as_the_static_estimate_names_it(capsys):
    """On GPUs without --mesh the mesh is the engines' TP group, never the fastest of several:
    under a load --chips 4 is the engine default (TP 4) as it is without one, and --chips 16 (TP
    over both nodes, where the static estimate runs TP 8 x PP 2) says so instead of calling the
    mesh the fastest for the static phases (the table said 'best legal mesh'); --tp 4 alone is no
    chosen mesh either."""
    model = ("--model", "llama-3-70b", "--hardware", "h100-sxm")
    lengths = ("--prompt-len", "2048", "--gen-len", "256", "--json")
    for chips in ("4", "16"):
        code, out, err = run_cli(capsys, "estimate", *model, "--chips", chips, "--concurrency", "8", *lengths)
        assert code == 0, err
        loaded = json.loads(out)
        code, out, err = run_cli(capsys, "estimate", *model, "--chips", chips, "--batch", "8", *lengths)
        assert code == 0, err
        static = json.loads(out)
        assert loaded["mesh_chosen"] is False and static["mesh_chosen"] is False
        notes = loaded["serving"]["notes"]
        assert not any("the fastest for the static phases" in note for note in notes)
        if chips == "4":
            assert loaded["engine_default"] is True and loaded["parallel"] == static["parallel"]
        else:
            assert loaded["engine_default"] is False and static["parallel"]["pp"] == 2
            assert any("tensor parallel over all 16 chips" in note and "TP 8 x PP 2" in note for note in notes)
    code, out, err = run_cli(capsys, "estimate", *model, "--tp", "4", "--batch", "8", *lengths)
    assert code == 0, err
    assert json.loads(out)["mesh_chosen"] is False


def test_require_fit_under_load_checks_the_batch_reported(capsys):
    """--require-fit under a load holds the static sections reported, at the running batch, to
    the chip's memory: 256 clients of Llama-3-70B fp8 on 2 H100s run 114 at once, and the error
    named 177.0 GB (the first guess, batch 256) where the report says 98.4 GB at batch 114."""
    args = ("--model", "llama-3-70b", "--hardware", "h100-sxm", "--chips", "2", "--weight-bits", "fp8")
    load = ("--concurrency", "256", "--prompt-len", "2048", "--gen-len", "256")
    code, out, err = run_cli(capsys, "estimate", *args, *load, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["memory"]["fits"] is False
    code, out, err = run_cli(capsys, "estimate", *args, *load, "--require-fit")
    line = assert_one_error_line(code, out, err, ("memory",))
    need = report["memory"]["total_bytes_per_chip"] / 1e9
    assert f"needs {need:.1f} GB per chip at batch {report['batch']}," in line


def test_sglang_activations_past_its_static_share_are_refused(capsys):
    """SGLang runs activations outside mem_fraction_static: Llama 3 8B's full iteration (2 x 8192
    tokens x 2 x 14336 x 2 B = 0.94 GB) passes the 1% an H100 keeps at 0.99 (0.86 GB) by 0.08 GB:
    the engine runs out of memory, so the estimate refuses it (a search scores it as not fitting);
    at SGLang's default 0.88 it fits. Other engines shrink the cache instead (no refusal)."""
    code, out, err = run_cli(
        capsys, *BASE, "--concurrency", "4", *LOAD, "--backend", "sglang", "--memory-fraction", "0.99"
    )
    line = assert_one_error_line(code, out, err, ("max_num_tokens",))
    assert "pass the 0.01 left by 0.08 GB (out of memory)" in line and "--max-num-tokens" in line
    for args in (("--backend", "sglang"), ("--backend", "vllm", "--memory-fraction", "0.99")):
        assert _json(capsys, "--concurrency", "4", *LOAD, *args)["serving"]["fits"] is True, args


def test_no_kv_cache_names_what_the_engine_charges(capsys):
    """0.15 of an H100 (12.8 GB) under SGLang's rule holds less than Llama 3 8B's 16.1 GB of weights;
    SGLang charges no activations to it, so a smaller token budget is not suggested."""
    tight = ("--concurrency", "4", *LOAD, "--memory-fraction", "0.15")
    code, out, err = run_cli(capsys, *BASE, *tight, "--backend", "sglang")
    assert_one_error_line(code, out, err, ("memory",))
    assert "weights leave no KV cache on h100-sxm under sglang's" in err and "--max-num-tokens" not in err
    code, out, err = run_cli(capsys, *BASE, *tight, "--backend", "vllm")
    assert "weights and activations leave no KV cache" in err and "--max-num-tokens" in err


@pytest.mark.parametrize("option,field", [("--pp", "pp"), ("--micro-batches", "micro_batches")])
def test_a_refused_degree_under_a_load_is_the_one_named(capsys, option, field):
    """The serving model charges TP, EP and DP only: the refusal names the degree the user gave
    (it named pp for --ep 2 and --dp 2 too, when those were refused)."""
    args = ("estimate", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--tp", "2", option, "2")
    code, out, err = run_cli(capsys, *args, "--prompt-len", "512", "--gen-len", "64", "--concurrency", "8")
    line = assert_one_error_line(code, out, err, (field,))
    assert line.startswith(f"error: {field}:"), line


def test_static_does_not_fit_beside_a_serving_that_runs_is_explained(capsys):
    """Llama 3 8B on one H100, 256 clients of 2048 + 256 tokens under vLLM: the engine's cache,
    0.9 x 85.5 GB less 16.1 GB of weights and the activations, holds about 209 sequences at their
    mean context; the static sections at that batch charge all 209 x 2048 prompt tokens in one
    prefill and every sequence at 2304 tokens (KV 209 x 2304 x 131,072 B = 63 GB, plus tens of
    GB of activations): DOES NOT FIT, printed above a serving section that runs the load. A note
    says why the two differ."""
    args = ("--prompt-len", "2048", "--gen-len", "256", "--concurrency", "256", "--backend", "vllm")
    data = _json(capsys, *args)
    assert data["batch_source"] == "serving running batch"
    assert data["memory"]["fits"] is False and data["serving"]["fits"] is True
    assert data["memory"]["kv_cache_bytes_per_chip"] == data["batch"] * 2304 * 32 * 2 * 8 * 128 * 2
    said = [note for note in data["serving"]["notes"] if "static" in note and "max_num_tokens" in note]
    assert len(said) == 1, data["serving"]["notes"]
    # Where the static sections fit too, no such note.
    data = _json(capsys, "--prompt-len", "512", "--gen-len", "64", "--concurrency", "4", "--backend", "vllm")
    assert data["memory"]["fits"] is True
    assert not [note for note in data["serving"]["notes"] if "static" in note and "max_num_tokens" in note]


def test_static_fit_that_no_engine_starts_is_said_so(capsys):
    """DeepSeek-V3 (fp8) on 8 H100s: 84.2 GB of weights a GPU fit in its 85.5 GB, so the static
    estimate says 'fits', but vLLM gives its KV cache 0.9 x 85.5 GB = 77.0 GB less weights and
    activations (vllm/v1/worker/gpu_worker.py, determine_available_memory): 7.4 GB short, the
    engine does not start (as the serving section says under a load). The static output says so."""
    args = ("estimate", "--model", "deepseek-v3", "--hardware", "h100-sxm", "--tp", "8", "--batch", "1")
    code, out, err = run_cli(capsys, *args, "--prompt-len", "128", "--gen-len", "16", "--backend", "vllm", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["memory"]["fits"] is True
    assert 0.9 * 85_520_809_984 < data["memory"]["weights_bytes_per_chip"] < 85_520_809_984
    said = [note for note in data["notes"] if "vllm" in note and "gpu_memory_utilization" in note]
    assert len(said) == 1, data["notes"]
    # Llama 3 8B on one H100 leaves vLLM about 60 GB of cache: no such note.
    data = _json(capsys, "--batch", "1", *LOAD, "--backend", "vllm")
    assert not [note for note in data["notes"] if "gpu_memory_utilization" in note]


@pytest.mark.parametrize("command", ["estimate", "simulate"])
def test_max_batch_size_help_says_it_is_the_deployments_under_dp(capsys, command) -> None:
    """--help said "Sequences per iteration [engine's]", which reads as an engine's per-instance
    knob; under --dp a given one is the whole deployment's, split over the ranks
    (serving.rank_workloads), and its default is the engine's in each rank, as the engine launched
    with its defaults runs (vLLM: 256 in each engine core; serving.default_max_batch_size)."""
    code, out, err = run_cli(capsys, command, "--help")
    assert code == 0, err
    help_text = " ".join(out[out.index("--max-batch-size") : out.index("--max-num-tokens")].split())
    assert "whole deployment" in help_text and "ceil(this / DP)" in help_text and "DP x the default" in help_text


def test_under_dp_the_default_batch_limit_is_each_ranks(capsys) -> None:
    """What the help says: 512 clients of Llama-3-8B on 8 H100s as DP 8 under vLLM run vLLM's
    256 in each rank, 8 x 256 = 2048, at the default (was 256 in all, 32 a rank), and 1024 (128 a
    rank) when 1024 is passed."""
    base = (
        "estimate --model llama-3-8b --hardware h100-sxm --tp 1 --dp 8 --concurrency 512 --prompt-len 512 "
        "--gen-len 128 --backend vllm --json"
    ).split()
    for extra, slots in (((), 8 * 256), (("--max-batch-size", "1024"), 1024)):
        code, out, err = run_cli(capsys, *base, *extra)
        assert code == 0, err
        serving = json.loads(out)["serving"]
        assert (serving["max_concurrency"], serving["limited_by"]) == (slots, "max_batch_size")


def test_the_title_names_8_bit_activations(capsys):
    """--weight-bits fp8 with and without --act-bits fp8 score differently (W8A8's activation
    bytes: Llama-3-8B on one H100 at 16 clients, 1024/128), so the first line says which: before,
    both read "weights fp8, KV bf16" (tuner analyze's already named the activations)."""
    titles = {}
    for act in ("16", "fp8"):
        args = ("--concurrency", "16", *LOAD, "--weight-bits", "fp8", "--act-bits", act)
        code, out, err = run_cli(capsys, *BASE, *args)
        assert code == 0, err
        titles[act] = out.splitlines()[0]
        pools = ("--tp", "1", "--prefill-tp", "1", "--prefill-instances", "1", "--decode-instances", "1")
        code, out, err = run_cli(capsys, *BASE[:-2], *args, *pools)
        assert code == 0, err
        titles[f"{act}-disaggregated"] = out.splitlines()[0]
        code, out, err = run_cli(capsys, *BASE[:-2], *args, *pools, "--json")
        assert code == 0, err
        assert json.loads(out)["act_dtype"] == ("fp8" if act == "fp8" else "bf16")  # as the aggregated JSON's
    assert "activations fp8" in titles["fp8"] and "activations fp8" in titles["fp8-disaggregated"]
    assert "activations" not in titles["16"] and "activations" not in titles["16-disaggregated"]


def test_kv_memory_fraction_under_a_load_says_the_serving_cache_is_the_memory_knobs(capsys):
    """--kv-memory-fraction reserves HBM for the static sections' max context; the serving sections
    size the KV cache by the engine's memory knob (--memory-fraction). Given with a load it left a
    KV-bound deployment's serving numbers as they were without a word (Llama-3-70B fp8 on 2 H100s
    under vLLM at 2 req/s: max concurrency 110 with and without --kv-memory-fraction 0.05), where
    the disaggregated estimate refuses it as not read. Now a note says so; --memory-fraction moves
    the cache."""
    base = (
        "estimate", "--model", "llama-3-70b", "--hardware", "h100-sxm", "--backend", "vllm", "--tp", "2",
        "--weight-bits", "fp8", "--act-bits", "fp8", "--request-rate", "2", "--prompt-len", "2048", "--gen-len",
        "256", "--json",
    )  # fmt: skip
    code, out, err = run_cli(capsys, *base)
    assert code == 0, err
    plain = json.loads(out)
    assert not any("--kv-memory-fraction" in n for n in plain["notes"])
    code, out, err = run_cli(capsys, *base, "--kv-memory-fraction", "0.05")
    assert code == 0, err
    given = json.loads(out)
    assert given["serving"]["max_concurrency"] == plain["serving"]["max_concurrency"]
    assert any("--kv-memory-fraction 0.05" in n and "--memory-fraction" in n for n in given["notes"])
