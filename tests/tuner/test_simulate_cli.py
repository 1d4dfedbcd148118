"""tuner simulate: JSON keys, the analytic means beside, one-line errors."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import pytest

from cli_helpers import assert_one_error_line, run_cli

ARGS = ("simulate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "8", "--prompt-len", "512")


def test_json_has_percentiles_and_the_analytic_steady_state(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, *ARGS, "--gen-len", "64", "--concurrency", "16", "--requests", "64", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["mesh"] == [1, 1, 8]
    for key in ("ttft_s", "tpot_s", "e2e_latency_s"):
        stats = report["simulated"][key]
        assert set(stats) == {"mean", "p50", "p90", "p99"}
        assert 0 < stats["p50"] <= stats["p90"] <= stats["p99"]
        assert report["analytic"][key] > 0
    assert report["simulated"]["requests"] == 64
    assert report["workload"]["concurrency"] == 16
    assert report["workload"]["gen_len_std"] == pytest.approx(3.2)  # the default: 5% of --gen-len


def test_gen_len_std_zero_keeps_every_output_exactly_gen_len(capsys: pytest.CaptureFixture[str]) -> None:
    """--gen-len-std 0: exactly equal outputs, the first burst's groups kept (the grouped model):
    16 clients of 512-token prompts on TP8 return in groups, several prompts per mixed iteration,
    against about one when the default 5% spread desynchronizes them."""
    runs = {}
    for std in ("0", None):
        extra = ("--gen-len-std", std) if std is not None else ()
        args = ("--gen-len", "64", "--concurrency", "16", "--requests", "320", "--json", *extra)
        code, out, err = run_cli(capsys, *ARGS, *args)
        assert code == 0, err
        runs[std] = json.loads(out)
    fixed, spread = runs["0"], runs[None]
    assert fixed["workload"]["gen_len_std"] == 0.0
    per_mixed = {k: r["simulated"]["requests"] / r["simulated"]["mixed_iterations"] for k, r in runs.items()}
    assert per_mixed["0"] > 2.0 * per_mixed[None]
    assert fixed["analytic"]["ttft_s"] > spread["analytic"]["ttft_s"]


def test_table_shows_both(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, *ARGS, "--gen-len", "32", "--request-rate", "10", "--requests", "40")
    assert code == 0
    assert "TTFT" in out and "analytic mean" in out and "p99" in out


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (("--concurrency", "4", "--request-rate", "2"), "serving"),
        (("--concurrency", "4", "--requests", "0"), "requests"),
        (("--concurrency", "0"), "concurrency"),
        (("--concurrency", "4", "--mesh", "2x2x1"), "mesh"),
        # --requests -1 was blamed on "requests_per_client" (the analytic burst share it divides into).
        (("--concurrency", "4", "--requests", "-1"), "requests:"),
        # Were tracebacks: numpy refuses a negative seed; a 1e30-token mean overflows int64; a
        # 1e300 spread overflows the lognormal's sigma (and the analytic model's squares).
        (("--concurrency", "4", "--requests", "8", "--seed", "-1"), "seed"),
        (("--concurrency", "4", "--requests", "8", "--prompt-len", "1e30"), "prompt_len"),
        (("--concurrency", "4", "--requests", "8", "--prompt-len-std", "1e300"), "prompt_len_std"),
        (("--request-rate", "4", "--requests", "8", "--gen-len-std", "1e300"), "gen_len_std"),
        # SGLang's activations (0.117 GB per GPU at 8192 tokens on TP 8) past the 0.001 of an H100
        # its static share leaves: out of memory, not "the KV cache holds 0 tokens".
        (("--concurrency", "4", "--requests", "8", "--backend", "sglang", "--memory-fraction", "0.999"), "SGLang runs"),
        # Fewer requests than clients: 3 of 8 clients sent, the title, the workload and the analytic
        # steady state said 8 (analytic running 8 and 25.9 req/s, simulated 2.9 and 14.3).
        (("--concurrency", "8", "--requests", "3"), "requests: 3 is fewer than the 8 clients"),
    ],
)
def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], field: str) -> None:
    # An option of ARGS that the case gives again is dropped from ARGS: given twice it is refused
    # as such (tuner.cli_help.OnceOptionCommand), not read as the case's value.
    base = ARGS[:7] + (() if "--prompt-len" in extra else ARGS[7:])
    code, out, err = run_cli(capsys, *base, "--gen-len", "32", *extra)
    assert_one_error_line(code, out, err, (field,))


def test_without_a_profile_the_engine_is_estimates(capsys: pytest.CaptureFixture[str]) -> None:
    """--calibration none and no --backend: simulate runs the engine tuner estimate (and a study)
    runs, the one measured best on the chip, with its knobs. Llama-3-8B on one H100 at 16 clients
    ran TensorRT-LLM's knobs (at most 416 sequences, chunked prefill off) where estimate ran
    vLLM's (256, chunked), the analytic TTFT 44.6 ms against 35.2 ms."""
    load = ("--concurrency", "16", "--prompt-len", "1024", "--gen-len", "128", "--calibration", "none", "--json")
    model = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1")
    code, out, err = run_cli(capsys, "estimate", *model, *load)
    assert code == 0, err
    estimate = json.loads(out)["serving"]
    code, out, err = run_cli(capsys, "simulate", *model, *load, "--requests", "160")
    assert code == 0, err
    simulated = json.loads(out)
    assert simulated["engine"] == estimate["engine"]["backend"]
    for knob in ("max_batch_size", "max_num_tokens", "chunked_prefill", "kv_block_size", "memory_fraction"):
        assert simulated["workload"][knob] == estimate["engine"][knob], knob
    assert simulated["analytic"]["max_concurrency"] == estimate["max_concurrency"]
    assert simulated["analytic"]["tpot_s"] == pytest.approx(estimate["tpot_s"])


def test_the_attention_it_ran_is_named_and_can_be_estimates(capsys: pytest.CaptureFixture[str]) -> None:
    """simulate runs fused attention (as the engines do) where tuner estimate given --mesh does
    not: it says so (flash_attention, ffn_layout in its JSON and title), and --no-flash-attention
    (with --memory-fraction, as estimate takes it) scores what estimate does. Llama-3-8B on mesh
    1x1x2 H100s, 4096-token prompts at 16 clients: TPOT 10.9 ms simulated against 13.0 ms
    estimated, nothing saying why."""
    model = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "2", "--mesh", "1x1x2")
    load = ("--concurrency", "16", "--prompt-len", "4096", "--gen-len", "128", "--memory-fraction", "0.8")
    code, out, err = run_cli(capsys, "simulate", *model, *load, "--requests", "32", "--json")
    assert code == 0, err
    fused = json.loads(out)
    assert fused["flash_attention"] is True and fused["ffn_layout"] == "ws_1d"
    assert fused["workload"]["memory_fraction"] == 0.8
    code, out, err = run_cli(capsys, "simulate", *model, *load, "--requests", "32", "--no-flash-attention", "--json")
    assert code == 0, err
    plain = json.loads(out)
    code, out, err = run_cli(capsys, "estimate", *model, *load, "--ffn-layout", "ws_1d", "--json")
    assert code == 0, err
    estimate = json.loads(out)
    assert estimate["flash_attention"] is False and plain["flash_attention"] is False
    assert plain["analytic"]["tpot_s"] == pytest.approx(estimate["serving"]["tpot_s"])
    assert plain["analytic"]["max_concurrency"] == estimate["serving"]["max_concurrency"]
    assert fused["analytic"]["tpot_s"] < plain["analytic"]["tpot_s"]
    code, out, err = run_cli(capsys, "simulate", *model, *load, "--requests", "32")
    assert code == 0, err
    assert "flash attention on" in out


def test_tensor_parallel_that_does_not_divide_the_heads_is_one_line(capsys):
    """simulate's GPU default is TP over every chip: over 72 GB200s that splits llama-3-70b's 64
    heads, which no engine runs; refused with the replica size that divides them."""
    args = ("simulate", "--model", "llama-3-70b", "--hardware", "gb200", "--chips", "72", "--concurrency", "8")
    code, out, err = run_cli(capsys, *args, "--prompt-len", "128", "--gen-len", "16", "--requests", "20")
    line = assert_one_error_line(code, out, err, ("chips", "64 attention heads"))
    assert "--chips 8" in line


def test_a_context_past_the_models_trained_one_is_noted_as_estimate_notes_it(capsys):
    """Llama-3-8B's config.json has max_position_embeddings 8192; 20,000 + 100 tokens passes it.
    tuner estimate said so (engines refuse that context without an override); simulate and
    recommend planned it silently. Now all three say it, in the table and in --json notes."""
    load = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--request-rate", "0.1")
    load += ("--prompt-len", "20000", "--gen-len", "100")
    commands = {
        "simulate": ("simulate", *load, "--chips", "8", "--requests", "20"),
        "recommend": ("recommend", *load, "--max-ttft-s", "5", "--max-tpot-s", "0.05", "--mode", "aggregated"),
        "estimate": ("estimate", *load, "--chips", "8"),
    }
    for name, args in commands.items():
        code, out, err = run_cli(capsys, *args, "--json")
        assert code == 0, (name, err)
        notes = json.loads(out)["notes"]
        assert any("20,100" in n and "8,192" in n for n in notes), (name, notes)
        code, out, err = run_cli(capsys, *args)
        assert code == 0 and "trained context of 8,192 tokens" in out.replace("\n", " "), name
    # Within the trained context (1000 + 100 tokens): no note.
    short = [a if a != "20000" else "1000" for a in commands["recommend"]]
    code, out, err = run_cli(capsys, *short, "--json")
    assert code == 0 and json.loads(out)["notes"] == []


def test_past_capacity_says_so_as_estimate_does_and_the_simulated_queue_grew(capsys):
    """Llama-3-8B on one H100, vLLM capped at 16 sequences, 2048/256 tokens at 8 requests/s: 16
    slots over a ~2.9 s request serve about 5.5/s. tuner estimate printed TTFT "unbounded", the
    limit and "the highest sustainable rate is about 5.51 req/s"; simulate printed "-" beside a
    simulated mean TTFT of 52 s and nothing on the sustainable rate, and its JSON had neither
    limited_by nor max_stable_request_rate. Now both print the same line, simulate's analytic
    column says "unbounded", and the simulation says its own queue grew: past capacity it holds
    n (1 - mu / R) requests at the last arrival (mu the served rate), by queueing theory."""
    model = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1")
    load = ("--request-rate", "8", "--prompt-len", "2048", "--gen-len", "256", "--max-batch-size", "16")
    code, out, err = run_cli(capsys, "estimate", *model, *load, "--json")
    assert code == 0, err
    estimate = json.loads(out)["serving"]
    code, out, err = run_cli(capsys, "simulate", *model, *load, "--requests", "1000", "--json")
    assert code == 0, err
    report = json.loads(out)
    analytic, sim = report["analytic"], report["simulated"]
    assert analytic["limited_by"] == estimate["limited_by"] == "max_batch_size"
    assert analytic["max_stable_request_rate"] == pytest.approx(estimate["max_stable_request_rate"])
    unstable = [n for n in estimate["notes"] if n.startswith("unstable:")]
    assert len(unstable) == 1 and unstable[0] in report["notes"]
    served = sim["steady_tokens_per_s"] / 256  # requests/s completed while the load was on
    assert served < 0.8 * 8
    assert sim["queue_grew"] is True
    assert sim["queued_at_last_arrival"] / 1000 == pytest.approx(1.0 - served / 8.0, abs=0.05)
    assert any(n.startswith("simulated: arrivals outpaced the engine") for n in report["notes"])
    code, out, err = run_cli(capsys, "simulate", *model, *load, "--requests", "1000")
    assert code == 0, err
    ttft_row = next(line for line in out.splitlines() if "TTFT" in line)
    assert "unbounded" in ttft_row
    assert "highest sustainable rate is about" in out.replace("\n", " ")


def test_below_capacity_the_simulated_queue_did_not_grow(capsys):
    """The same deployment at 4 requests/s (under the ~5.5/s it serves): stable both ways, no note."""
    args = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1", "--request-rate", "4")
    args += ("--prompt-len", "2048", "--gen-len", "256", "--max-batch-size", "16", "--requests", "1000", "--json")
    code, out, err = run_cli(capsys, "simulate", *args)
    assert code == 0, err
    report = json.loads(out)
    assert report["analytic"]["stable"] and report["analytic"]["max_stable_request_rate"] is None
    assert report["simulated"]["queue_grew"] is False
    assert not [n for n in report["notes"] if n.startswith(("unstable", "simulated"))]


def test_prompts_past_the_budget_without_chunking_are_counted_and_said(capsys):
    """Without chunked prefill a prompt longer than max_num_tokens is refused by the engine; the
    simulation cuts such prompts to the budget, silently: TensorRT-LLM's 8192 tokens, prompts of
    6000 +- 3000 (lognormal), 18% of them cut, the simulated P99 TTFT 0.37 s against 0.61 s with
    chunking. The share cut is the lognormal's tail past 8192 (by hand: sigma^2 = ln(1 + 0.5^2),
    mu = ln 6000 - sigma^2 / 2), within three binomial deviations over 1000 draws."""
    args = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1", "--request-rate", "1")
    args += ("--prompt-len", "6000", "--prompt-len-std", "3000", "--gen-len", "32", "--requests", "1000")
    args += ("--backend", "trtllm", "--max-num-tokens", "8192")
    sigma = math.sqrt(math.log(1.0 + 0.5**2))
    tail = 1.0 - NormalDist().cdf((math.log(8192) - (math.log(6000) - sigma**2 / 2)) / sigma)
    code, out, err = run_cli(capsys, "simulate", *args, "--no-chunked-prefill", "--json")
    assert code == 0, err
    report = json.loads(out)
    clipped = report["simulated"]["prompts_clipped"]
    assert clipped / 1000 == pytest.approx(tail, abs=3 * math.sqrt(tail * (1 - tail) / 1000))
    assert any(f"{clipped} of 1000 drawn prompts" in n and "max_num_tokens 8192" in n for n in report["notes"])
    code, out, err = run_cli(capsys, "simulate", *args, "--chunked-prefill", "--json")
    assert code == 0, err
    report = json.loads(out)
    # The one note left: 18% of these prompts also pass Llama-3-8B's 8,192-token trained context
    # (said since session 39), which engines refuse whatever the budget.
    assert report["simulated"]["prompts_clipped"] == 0
    assert [n for n in report["notes"] if "99.9% lengths" not in n] == []


def test_one_request_s_throughput_does_not_depend_on_when_it_arrives(capsys):
    """One request into an idle engine is served the same whenever it comes; a benchmark's
    duration starts with its first request. The run's rate counted the idle wait before the
    Poisson first arrival (1 / R): 0.96 tokens/s at 1 req/s, 0.0096 at 0.01 req/s, for the same
    20 tokens in 0.16 s; the steady rate read 0 (its window held no token)."""
    args = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1", "--requests", "1")
    args += ("--prompt-len", "100", "--gen-len", "20", "--gen-len-std", "0", "--json")
    runs = []
    for rate in ("1", "0.01"):
        code, out, err = run_cli(capsys, "simulate", *args, "--request-rate", rate)
        assert code == 0, err
        runs.append(json.loads(out)["simulated"])
    fast, slow = runs
    assert fast["tokens_per_s"] == pytest.approx(slow["tokens_per_s"])
    # 20 tokens in at most the client's E2E (which adds the HTTP overhead the engine does not see).
    assert fast["tokens_per_s"] >= 20 / fast["e2e_latency_s"]["mean"]
    assert fast["steady_tokens_per_s"] == pytest.approx(fast["tokens_per_s"])


def test_the_load_notes_of_estimate_are_simulates(capsys):
    """256 clients of 4096 + 1024 tokens on one H100 under vLLM: the KV cache holds 99 sequences
    (28,595 blocks of 16 tokens over 4096 + 512 + 8 held on average: 99.1 by hand), so 157 clients
    wait, and vLLM's host costs are TensorRT-LLM's fit. tuner estimate said both; simulate, the
    same deployment and load, said neither."""
    load = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1", "--concurrency", "256")
    load += ("--prompt-len", "4096", "--gen-len", "1024", "--backend", "vllm", "--json")
    code, out, err = run_cli(capsys, "estimate", *load)
    assert code == 0, err
    estimate = json.loads(out)["serving"]["notes"]
    queue = [n for n in estimate if n.startswith("256 clients queue")]
    borrowed = [n for n in estimate if "has no measured serving runs here" in n]
    assert queue == ["256 clients queue: the KV cache holds 99 sequences at once (157 wait)"] and len(borrowed) == 1
    code, out, err = run_cli(capsys, "simulate", *load, "--requests", "256")
    assert code == 0, err
    notes = json.loads(out)["notes"]
    assert queue[0] in notes and borrowed[0] in notes


def test_the_analytic_ttft_says_its_first_burst_share_against_estimates(capsys):
    """A closed loop's analytic TTFT counts the first burst (every client at t = 0) in 1 of the
    requests each client sends: simulate takes its run's (--requests / --concurrency), tuner
    estimate 10. DeepSeek-V3 on 8 H200s, 64 clients, 300 requests: 0.485 s beside estimate's
    0.289 s for the same load, nothing saying why. Now simulate gives estimate's too
    (analytic.estimate_ttft_s) and a note; the mean is linear in 1 / requests per client (the
    burst's share), so 320 and 640 requests (5 and 10 per client) bracket it as 1/5 and 1/10."""
    load = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1", "--concurrency", "64")
    load += ("--prompt-len", "2048", "--gen-len", "256", "--json")
    code, out, err = run_cli(capsys, "estimate", *load)
    assert code == 0, err
    estimate = json.loads(out)["serving"]["ttft_s"]
    runs = {}
    for requests in ("320", "640", "1280"):
        code, out, err = run_cli(capsys, "simulate", *load, "--requests", requests)
        assert code == 0, err
        runs[requests] = json.loads(out)
    five, ten, twenty = (runs[k]["analytic"]["ttft_s"] for k in ("320", "640", "1280"))
    assert ten == pytest.approx(estimate)
    assert five - ten == pytest.approx(2.0 * (ten - twenty))  # shares 1/5, 1/10, 1/20: linear
    assert runs["320"]["analytic"]["estimate_ttft_s"] == pytest.approx(estimate)
    note = [n for n in runs["320"]["notes"] if n.startswith("analytic TTFT")]
    assert len(note) == 1 and "1 of the 5 requests" in note[0] and "1 of 10" in note[0]
    assert not [n for n in runs["640"]["notes"] if n.startswith("analytic TTFT")]


def test_prefix_hit_rate_help_says_a_share_of_each_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    """The simulation prefills ``prompt x (1 - hit)`` tokens of every request
    (cost_models/serving_simulation.py: ``uncached``), as the steady state and the spec's
    serving.prefix_hit_rate ("Share of each prompt found in the prefix cache") read it. simulate's
    --help said "Share of prompts cached.", the share of requests that hit, which no code reads."""
    code, out, err = run_cli(capsys, "simulate", "--help")
    assert code == 0, err
    help_text = " ".join(out[out.index("--prefix-hit-rate") :].split()[:12]).lower()
    assert "share of each prompt" in help_text, help_text


@pytest.mark.parametrize(
    "args,field",
    [
        (("--chips", "8", "--dp", "3"), "chips"),  # 8 GPUs are no whole number of 3 ranks
        (("--chips", "2", "--dp", "2", "--ep", "2"), "expert_parallel"),  # a dense model has no experts
        (("--chips", "2", "--dp", "0"), "dp"),
        (("--chips", "4", "--dp", "4", "--concurrency", "6"), "concurrency"),  # 6 clients over 4 ranks
    ],
)
def test_bad_dp_or_ep_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], args, field) -> None:
    base = ("simulate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--prompt-len", "1024", "--gen-len", "128")
    load = () if "--concurrency" in args else ("--concurrency", "8")
    code, out, err = run_cli(capsys, *base, *args, *load, "--requests", "50")
    assert_one_error_line(code, out, err, (field,))


def test_dp_ranks_simulate_one_rank_and_report_the_deployments_rates(capsys: pytest.CaptureFixture[str]) -> None:
    """Llama-3-8B on 2 H100s as DP 2 (two replicas behind one front end), 8 clients: one rank
    runs 4 clients; the report names the degrees and doubles the rank's rates."""
    args = ("simulate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "2", "--dp", "2")
    code, out, err = run_cli(capsys, *args, "--concurrency", "8", "--prompt-len", "1024", "--gen-len", "128",
                             "--requests", "80", "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["dp"] == 2 and report["mesh"] == [1, 1, 1]
    sim = report["simulated"]
    assert sim["peak_running"] == 4
    assert sim["tokens_per_s_per_chip"] == pytest.approx(sim["tokens_per_s"] / 2, rel=1e-12)
    # The JSON says which fields are the deployment's and which the simulated rank's (it mixed
    # them under flat names: mean_running a rank's beside analytic.running, the deployment's).
    assert sim["rank"]["peak_running"] == 4 and sim["rank"]["requests"] == 80
    assert sim["deployment"]["tokens_per_s"] == sim["tokens_per_s"]
    assert "tokens_per_s" not in sim["rank"] and "mean_running" not in sim["deployment"]
    analytic = report["analytic"]
    assert analytic["deployment"]["running"] == analytic["running"]
    assert analytic["rank"]["running"] == pytest.approx(analytic["running"] / 2, rel=1e-12)
    assert analytic["rank"]["max_concurrency"] * 2 == analytic["deployment"]["max_concurrency"]
    # 8 closed-loop clients, 4 a rank: each rank's mean batch below its 4 clients, as simulated.
    assert sim["rank"]["mean_running"] <= 4 and analytic["rank"]["running"] <= 4 < analytic["deployment"]["running"]


def test_the_table_shows_the_analytic_percentiles_under_the_simulated(capsys: pytest.CaptureFixture[str]) -> None:
    """The steady state's TTFT and TPOT p90 / p99 in rows of their own, under the simulated ones
    (the JSON's analytic ttft_p90_s ... tpot_p99_s, printed as the table prints times)."""
    args = ("--gen-len", "64", "--request-rate", "10", "--requests", "200", "--seed", "0")
    code, out, err = run_cli(capsys, *ARGS, *args, "--json")
    assert code == 0, err
    analytic = json.loads(out)["analytic"]
    assert analytic["ttft_s"] <= analytic["ttft_p90_s"] <= analytic["ttft_p99_s"]
    code, out, err = run_cli(capsys, *ARGS, *args)
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "TTFT analytic" in rows and "TPOT analytic" in rows
    cells = [c.strip() for c in rows["TTFT analytic"].split("│")[2:7]]
    assert cells[1] == "" and cells[4] == ""
    for cell, value in zip((cells[2], cells[3]), (analytic["ttft_p90_s"], analytic["ttft_p99_s"]), strict=True):
        number, unit = cell.split()
        assert float(number) * {"ms": 1e-3, "s": 1.0, "us": 1e-6}[unit] == pytest.approx(value, rel=0.01)


# ---- the engines' degrees, as tuner estimate reads them -------------------------------------

ENGINE_LOAD = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--prompt-len", "1024", "--gen-len", "128")


@pytest.mark.parametrize(
    ("degrees", "requests", "mesh", "dp"),
    [
        # 16 clients, 160 requests: 10 per client, estimate's first-burst share
        # (DEFAULT_REQUESTS_PER_CLIENT), so even the analytic TTFT is estimate's.
        (("--tp", "4"), "160", [1, 1, 4], 1),
        # DP 2 of TP 2 (4 GPUs): a rank runs 8 of the 16 clients, 80 requests = 10 per client.
        (("--tp", "2", "--dp", "2"), "80", [1, 1, 2], 2),
    ],
)
def test_tp_gives_estimates_analytic_section(capsys, degrees, requests, mesh, dp) -> None:
    """recommend prints "1 x TP4" and estimate takes --tp 4; simulate took only --chips and
    --mesh. Now --tp reads as estimate reads it: the deployment and the analytic steady state
    beside the simulation are estimate's serving section, key by key."""
    load = (*ENGINE_LOAD, "--concurrency", "16", *degrees, "--json")
    code, out, err = run_cli(capsys, "estimate", *load)
    assert code == 0, err
    estimate = json.loads(out)
    code, out, err = run_cli(capsys, "simulate", *load, "--requests", requests)
    assert code == 0, err
    simulated = json.loads(out)
    assert estimate["mesh"] == "x".join(map(str, mesh)) and estimate["parallel"]["dp"] == dp
    assert simulated["mesh"] == mesh and simulated["dp"] == dp and simulated["mesh_chosen"] is False
    shared = set(estimate["serving"]) & set(simulated["analytic"])
    assert {"ttft_s", "tpot_s", "tokens_per_s", "max_concurrency", "running", "limited_by"} <= shared
    for key in sorted(shared):
        assert simulated["analytic"][key] == estimate["serving"][key], key


@pytest.mark.parametrize(
    "degrees",
    [
        ("--tp", "4", "--chips", "8"),  # 8 chips are not TP 4 x DP 1: --dp 2 was meant, or --chips 4
        ("--tp", "4", "--pp", "2"),  # the serving model runs no pipeline
        ("--tp", "4", "--mesh", "1x1x4"),  # the mesh is the TP group: two answers to one question
    ],
)
def test_contradictory_degrees_are_refused_in_estimates_words(capsys, degrees) -> None:
    load = (*ENGINE_LOAD, "--concurrency", "16", *degrees)
    code, out, err = run_cli(capsys, "estimate", *load)
    refusal = assert_one_error_line(code, out, err, ("chips", "pp", "tp"))
    code, out, err = run_cli(capsys, "simulate", *load, "--requests", "32")
    assert assert_one_error_line(code, out, err, ("chips", "pp", "tp")) == refusal


def test_tp_with_the_chips_it_implies_is_the_same_deployment(capsys) -> None:
    """--tp 4 --dp 2 --chips 8 is consistent (4 x 2 = 8): simulated as --chips 8 --dp 2."""
    load = (*ENGINE_LOAD, "--concurrency", "16", "--requests", "80", "--json")
    runs = []
    for degrees in (("--tp", "4", "--dp", "2", "--chips", "8"), ("--chips", "8", "--dp", "2")):
        code, out, err = run_cli(capsys, "simulate", *load, *degrees)
        assert code == 0, err
        runs.append(json.loads(out))
    assert runs[0]["mesh"] == runs[1]["mesh"] == [1, 1, 4]
    assert runs[0]["simulated"] == runs[1]["simulated"] and runs[0]["analytic"] == runs[1]["analytic"]


def test_no_chips_no_tp_no_mesh_is_one_line(capsys) -> None:
    code, out, err = run_cli(capsys, "simulate", *ENGINE_LOAD, "--concurrency", "16")
    line = assert_one_error_line(code, out, err, ("chips",))
    assert "--tp N" in line


def test_a_pope_layout_without_a_mesh_is_refused_as_estimate_refuses_it(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --mesh a GPU runs as the engines run it (Megatron TP, ws_1d): tuner estimate refuses
    --ffn-layout ws_2d there, and so does simulate, in the same line and exit code 2. Before,
    simulate scored Llama-3-8B on 2 H100s at ws_2d. With --mesh it is Pope et al.'s layout, scored."""
    base = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--prompt-len", "1024", "--gen-len", "128")
    load = ("--request-rate", "5", "--ffn-layout", "ws_2d")
    code, _, err = run_cli(capsys, "simulate", *base, *load, "--chips", "2", "--requests", "50")
    assert code == 2 and "ffn_layout: ws_2d is a layout of Pope et al.'s meshes" in err and "Traceback" not in err
    code, _, estimate_err = run_cli(capsys, "estimate", *base, *load, "--tp", "2")
    assert code == 2 and "ws_2d is a layout of Pope et al.'s meshes" in estimate_err
    code, out, err = run_cli(capsys, "simulate", *base, *load, "--mesh", "1x1x2", "--requests", "50", "--json")
    assert code == 0, err
    assert json.loads(out)["ffn_layout"] == "ws_2d"


def test_title_names_8_bit_activations(capsys: pytest.CaptureFixture[str]) -> None:
    """fp8 weights with and without --act-bits fp8 are different runs; the title says which (before,
    both read "weights fp8, KV bf16")."""
    args = (*ARGS, "--gen-len", "64", "--concurrency", "16", "--requests", "32", "--weight-bits", "fp8")
    code, out, err = run_cli(capsys, *args, "--act-bits", "fp8")
    assert code == 0, err
    assert "activations fp8" in " ".join(out.split("┏")[0].split())  # the title, above the table
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "activations" not in out.split("┏")[0]


@pytest.mark.parametrize(("backend", "ep"), [("vllm", "2"), ("trtllm", "4")])
def test_simulate_refuses_degrees_the_named_engine_does_not_launch_as_estimate_does(capsys, backend, ep):
    """vLLM runs EP 1 or TP x DP, TensorRT-LLM an MoE's attention DP on TP 1 only: tuner estimate
    refused TP 2 x EP x DP 2 of Qwen3-235B under them, tuner simulate scored it (session 39)."""
    args = ["--model", "qwen3-235b-a22b", "--hardware", "h200", "--prompt-len", "1024", "--gen-len", "128"]
    args += ["--concurrency", "16", "--tp", "2", "--dp", "2", "--ep", ep, "--backend", backend]
    for command in ("estimate", "simulate"):
        code, out, err = run_cli(capsys, command, *args, *(["--requests", "64"] if command == "simulate" else []))
        line = assert_one_error_line(code, out, err, ("backend",))
        assert f"{backend} does not launch TP 2 x EP {ep} x DP 2" in line


def test_simulate_runs_those_degrees_under_sglang(capsys):
    args = ["--model", "qwen3-235b-a22b", "--hardware", "h200", "--prompt-len", "1024", "--gen-len", "128"]
    args += ["--concurrency", "16", "--tp", "2", "--dp", "2", "--ep", "2", "--backend", "sglang", "--requests", "64"]
    code, _, err = run_cli(capsys, "simulate", *args)
    assert code == 0, err


@pytest.mark.parametrize(("backend", "kv"), [("vllm", "4"), ("vllm", "fp4"), ("trtllm", "4")])
def test_simulate_refuses_a_kv_cache_the_named_engine_has_not_as_estimate_does(capsys, backend, kv):
    """No engine has an int4 KV cache, vLLM none in fp4: estimate refused them under a named
    backend, simulate scored them (session 39)."""
    args = ["--model", "llama-3-8b", "--hardware", "b200", "--tp", "1", "--concurrency", "4"]
    args += ["--prompt-len", "512", "--gen-len", "64", "--kv-bits", kv, "--backend", backend]
    for command in ("estimate", "simulate"):
        code, out, err = run_cli(capsys, command, *args, *(["--requests", "40"] if command == "simulate" else []))
        line = assert_one_error_line(code, out, err, ("kv_bits",))
        assert f"{backend} has no" in line


@pytest.mark.parametrize("command", ["estimate", "simulate"])
def test_a_spread_past_the_trained_context_is_said(capsys, command):
    """Prompts of 4,096 +- 4,000 tokens on Llama-3-8B (8,192 trained): the mean fits, but the
    lognormal draws prompts past it (99.9% of prompt + output within 36,823 tokens), which engines
    refuse; estimate and simulate scored them and said nothing (the export's context limit did)."""
    args = ["--model", "llama-3-8b", "--hardware", "h100-sxm", "--tp", "1", "--concurrency", "4"]
    args += ["--prompt-len", "4096", "--gen-len", "64", "--json"]
    extra = ["--requests", "50"] if command == "simulate" else []

    def said(*more: str) -> list[str]:
        code, out, err = run_cli(capsys, command, *args, *extra, *more)
        assert code == 0, err
        data = json.loads(out)
        notes = data["notes"] + (data.get("serving") or {}).get("notes", [])
        return [n for n in notes if "99.9% lengths" in n]

    lines = said("--prompt-len-std", "4000")
    assert len(lines) == 1 and "36,823 tokens" in lines[0] and "8,192" in lines[0]
    assert said("--prompt-len-std", "100") == []
