"""``tuner recommend``: JSON with both modes, an explicit none, one-line errors."""

from __future__ import annotations

import json
import re

import pytest

from cli_helpers import assert_one_error_line, run_cli

BASE = (
    "recommend",
    "--model",
    "llama-3-70b",
    "--hardware",
    "h100-sxm",
    "--request-rate",
    "10",
    "--prompt-len",
    "2048",
    "--gen-len",
    "256",
    "--max-tpot-s",
    "0.05",
    "--backend",
    "trtllm",
)


def test_json_has_both_modes_meeting_the_sla(capsys):
    code, out, err = run_cli(capsys, *BASE, "--max-ttft-s", "1", "--max-chips", "12", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report["modes"]) == {"aggregated", "disaggregated"}
    agg, dis = report["modes"]["aggregated"]["best"], report["modes"]["disaggregated"]["best"]
    assert agg["chips"] == agg["replicas"] * agg["tp"] <= 12
    assert dis["chips"] == dis["prefill_instances"] * dis["prefill_tp"] + dis["decode_instances"] * dis["decode_tp"]
    for best in (agg, dis):
        assert best["ttft_s"] <= 1.0 and best["tpot_s"] <= 0.05
    for row in report["modes"]["disaggregated"]["runners_up"]:
        assert row["chips"] >= dis["chips"]
    assert dis["limiting_pool"] in ("prefill", "decode")


def test_table_says_none_when_nothing_meets_the_sla(capsys):
    code, out, err = run_cli(capsys, *BASE, "--max-ttft-s", "0.001", "--max-chips", "8", "--mode", "aggregated")
    assert code == 0, err
    assert "aggregated: none" in out
    assert "disaggregated" not in out


def test_json_none_is_null(capsys):
    code, out, _ = run_cli(capsys, *BASE, "--max-ttft-s", "0.001", "--max-chips", "4", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["modes"]["aggregated"]["best"] is None
    assert report["modes"]["disaggregated"]["best"] is None


def _none_lines(out: str) -> dict[str, str]:
    return {line.split(":")[0]: line for line in out.splitlines() if ": none - " in line}


def test_none_says_which_constraint_binds_and_what_to_change(capsys):
    """Every none read "(raise --max-chips or relax the SLA)", whatever held it back: a TPOT of 1 ns
    (no chip count helps), a rate no budget keeps up with, a model no budget holds. Now the line
    names the binding one, checked here against arithmetic independent of the planner."""
    llama8 = ("recommend", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--prompt-len", "1024")
    llama8 += ("--gen-len", "256", "--max-ttft-s", "1", "--backend", "vllm", "--max-chips", "8")
    # A decode step reads the weights at least once: 8.03 GB in fp8 over 8 x 3.35 TB/s is 0.3 ms,
    # so no candidate reaches a TPOT of 0.1 ms, whatever the budget. (1 ns before latency limits
    # were held to a microsecond or more: cost_models.input_ranges.)
    code, out, err = run_cli(capsys, *llama8, "--request-rate", "10", "--max-tpot-s", "1e-4")
    assert code == 0, err
    lines = _none_lines(out)
    assert set(lines) == {"aggregated", "disaggregated"}
    for line in lines.values():
        assert "lowest TPOT" in line and "--max-tpot-s 0.0001" in line and "TTFT" not in line
    # 10^9 requests/s of 1024-token prompts is 1.6e22 FLOP/s of prefill (2 x 8.03e9 x 1024 each),
    # past 8 chips of 1.98e15 FLOP/s.
    code, out, err = run_cli(capsys, *llama8, "--request-rate", "1e9", "--max-tpot-s", "0.05")
    assert code == 0, err
    for line in _none_lines(out).values():
        assert "keeps up with 1e+09 requests/s" in line and "relax the SLA" not in line
    # DeepSeek-V3 is 671 GB of weights in fp8; 8 L40S hold 8 x 48.3 = 386 GB.
    code, out, err = run_cli(
        capsys, "recommend", "--model", "deepseek-v3", "--hardware", "l40s", "--request-rate", "1", "--prompt-len",
        "1024", "--gen-len", "256", "--max-ttft-s", "1", "--max-tpot-s", "0.05", "--max-chips", "8", "--json",
    )  # fmt: skip
    assert code == 0, err
    for mode in json.loads(out)["modes"].values():
        assert mode["best"] is None and "fit in memory" in mode["why_none"] and "--max-chips" in mode["why_none"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (("--max-ttft-s", "0"), "max_ttft_s"),
        (("--max-ttft-s", "1", "--max-chips", "0"), "max_chips"),
        (("--max-ttft-s", "1", "--mode", "sideways"), "--mode"),
        (("--max-ttft-s", "1", "--hardware", "tpu-v5e"), "hardware"),
    ],
)
def test_bad_flags_exit_2_with_one_line(capsys, extra, field):
    code, out, err = run_cli(capsys, *BASE, *extra)
    assert_one_error_line(code, out, err, (field,))


def test_a_budget_too_large_to_pair_is_one_line_and_aggregated_still_plans_it(capsys):
    """--max-chips 4096 (accepted) built 66M disaggregated pool pairs: killed for memory (24 GB,
    exit 137) with no message. Now refused by the pair count, before any pair is built; the
    aggregated plan, linear in the budget, still runs at that size."""
    code, out, err = run_cli(capsys, *BASE, "--max-ttft-s", "1", "--max-chips", "4096")
    line = assert_one_error_line(code, out, err, ("max_chips",))
    assert "--mode aggregated" in line
    code, out, err = run_cli(capsys, *BASE, "--max-ttft-s", "1", "--max-chips", "4096", "--mode", "aggregated")
    assert code == 0, err


def test_a_prompt_beyond_trtllms_unchunked_budget_names_a_fix_recommend_takes(capsys):
    """TensorRT-LLM (the default engine of l40s, a100-40gb, h20...) does not chunk prefill by
    default and its max_num_tokens is 8192: a 16384-token prompt was refused with "raise
    max_num_tokens to the prompt length or turn chunked prefill on", knobs recommend has no flag
    for. Now the line names the prompt and a backend that chunks, and that backend plans it."""
    long_prompt = [a if a != "2048" else "16384" for a in BASE]
    code, out, err = run_cli(capsys, *long_prompt, "--max-ttft-s", "5", "--max-chips", "8")
    line = assert_one_error_line(code, out, err, ("prompt_len",))
    assert "--backend vllm" in line and "8192" in line
    chunked = [a if a != "trtllm" else "vllm" for a in long_prompt]
    code, out, err = run_cli(capsys, *chunked, "--max-ttft-s", "5", "--max-chips", "8", "--mode", "aggregated")
    assert code == 0, err


def test_the_pair_count_is_the_number_of_pairs_built():
    from cost_models.capacity import disaggregated_candidates, disaggregated_pair_count, problem

    p = problem("llama-3-8b", "h100-sxm", request_rate=10, prompt_len=512, gen_len=128, max_ttft_s=1, max_tpot_s=0.05)
    assert disaggregated_pair_count(p) == len(disaggregated_candidates(p).prefill_row) == 14718


def test_without_a_profile_the_engine_is_estimates(capsys):
    """--calibration none and no --backend: recommend plans on the engine tuner estimate runs (the
    one measured best on the chip), and its best replica is what estimate says of it under its
    share of the rate, at the formats it names. Llama-3-70B on H100s at 4 req/s: recommend
    planned on TensorRT-LLM's knobs (115 sequences, TTFT 105.8 ms) where estimate ran vLLM's
    (116, 105.6 ms)."""
    args = ("--model", "llama-3-70b", "--hardware", "h100-sxm", "--request-rate", "4", "--prompt-len", "2048")
    args += ("--gen-len", "256", "--calibration", "none")
    sla = ("--max-ttft-s", "2", "--max-tpot-s", "0.1", "--mode", "aggregated", "--json")
    code, out, err = run_cli(capsys, "recommend", *args, *sla)
    assert code == 0, err
    report = json.loads(out)
    best = report["modes"]["aggregated"]["best"]
    bits = {"bf16": "16", "fp8": "fp8", "int8": "8"}
    rate = str(4 / best["replicas"])
    formats = ("--weight-bits", bits[best["weight_format"]], "--act-bits", bits[best["act_format"]])
    one = ("--tp", str(best["tp"]), *formats, "--json")
    code, out, err = run_cli(capsys, "estimate", *args[:4], "--request-rate", rate, *args[6:], *one)
    assert code == 0, err
    serving = json.loads(out)["serving"]
    assert report["backend"] == serving["engine"]["backend"]
    assert best["max_concurrency_per_replica"] == serving["max_concurrency"]
    assert best["ttft_s"] == pytest.approx(serving["ttft_s"]) and best["tpot_s"] == pytest.approx(serving["tpot_s"])


def test_an_8_bit_candidate_names_its_8_bit_activations(capsys):
    """recommend scores an 8-bit candidate W8A8: its JSON says so (act_format) and its table
    (``fp8 W8A8``), so that tuner estimate --weight-bits fp8 (16-bit activations by default) is
    not taken for the same deployment: on TP2 H100s at 4 req/s its TPOT is 94.6 ms, W8A8's
    89.1 ms."""
    args = ("--request-rate", "4", "--max-ttft-s", "2", "--max-tpot-s", "0.1", "--mode", "aggregated")
    base = ("recommend", "--model", "llama-3-70b", "--hardware", "h100-sxm", "--prompt-len", "2048")
    code, out, err = run_cli(capsys, *base, "--gen-len", "256", *args, "--json")
    assert code == 0, err
    best = json.loads(out)["modes"]["aggregated"]["best"]
    assert best["weight_format"] == "fp8" and best["act_format"] == "fp8"
    code, out, err = run_cli(capsys, *base, "--gen-len", "256", *args)
    assert code == 0, err
    assert "fp8 W8A8" in out


def test_one_output_token_meets_any_tpot_limit_in_both_modes(capsys):
    """--gen-len 1: no request has a second token, so a TPOT limit constrains nothing. Both modes
    plan the load (TTFT alone decides); before, every aggregated candidate was refused against a
    10 ms TPOT limit ("the lowest TPOT of those that keep up is 0.0117 s", the open loop's mean
    iteration) while the disaggregated plans reported a TPOT of 0."""
    args = list(BASE)
    args[args.index("--gen-len") + 1] = "1"
    args[args.index("--max-tpot-s") + 1] = "0.01"
    code, out, err = run_cli(capsys, *args, "--max-ttft-s", "1", "--json")
    assert code == 0, err
    modes = json.loads(out)["modes"]
    for mode in ("aggregated", "disaggregated"):
        best = modes[mode]["best"]
        assert best is not None, (mode, modes[mode]["why_none"])
        assert best["tpot_s"] == 0.0
        assert best["e2e_latency_s"] == best["ttft_s"]


def test_a_plan_whose_batch_swings_to_its_kv_cache_is_marked_near_capacity(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's recommend example with a looser TPOT (80 ms): the fewest chips are 3 x TP2 fp8,
    3.33 req/s a replica, whose running batch swings up to the KV cache's 110 sequences: tuner
    simulate of one replica fills its 15,145 blocks and preempts (10,000 requests, seed 0: 15,142
    blocks at the peak, a mean of 51 running, 2 preemptions; 112 sequences and 15,324 blocks, 3
    preemptions, before its gate/up outputs were held at 2 bytes under fp8 activations, 2026-12-06;
    before the fused QKV / gate_up GEMMs 3000 requests reached 15,323 blocks with 3). The row says
    ``near_capacity`` and the table a line; 2 x TP4 at 5 req/s (the 50 ms answer; 4 x TP2 before the
    fused QKV / gate_up GEMMs) does not."""
    args = ("recommend", "--model", "llama-3-70b", "--hardware", "h100-sxm", "--request-rate", "10")
    args += ("--prompt-len", "2048", "--gen-len", "256", "--max-ttft-s", "1", "--mode", "aggregated")
    code, out, _ = run_cli(capsys, *args, "--max-tpot-s", "0.08", "--json")
    assert code == 0
    best = json.loads(out)["modes"]["aggregated"]["best"]
    assert (best["replicas"], best["tp"], best["weight_format"]) == (3, 2, "fp8")
    assert best["near_capacity"] and best["max_concurrency_per_replica"] == 110
    code, out, _ = run_cli(capsys, *args, "--max-tpot-s", "0.08")
    assert code == 0 and re.search(r"near capacity: best[,:]", " ".join(out.split()))
    code, out, _ = run_cli(capsys, *args, "--max-tpot-s", "0.05", "--json")
    best = json.loads(out)["modes"]["aggregated"]["best"]
    assert (best["replicas"], best["tp"]) == (2, 4) and not best["near_capacity"]
    from cost_models.serving_simulation import simulate_one

    one = simulate_one(
        "llama-3-70b", "h100-sxm", chips=2, prompt_len=2048, gen_len=256, weight_bits="fp8", act_bits="fp8",
        request_rate=10 / 3, requests=10000, seed=0,
    )  # fmt: skip
    assert one["simulated"]["peak_kv_blocks"] >= 0.99 * one["simulated"]["kv_capacity_blocks"]
    assert one["simulated"]["preemptions"] > 0


DEEPSEEK_SGLANG = (
    "--model", "deepseek-v3", "--hardware", "h200", "--backend", "sglang", "--prompt-len", "2048", "--gen-len", "256",
)  # fmt: skip


def test_disaggregated_pools_of_an_moe_model_run_attention_dp_as_estimate_scores_them(capsys) -> None:
    """DeepSeek-V3 on H200s under SGLang at 20 req/s, 2048/256, TTFT 2 s, TPOT 50 ms: the pools'
    instances may be TP x DP with EP = TP x DP (SGLang PD disaggregation with
    --enable-dp-attention). Before, the pools were TP groups only and the fewest chips were 24
    (2P x TP8 + 1D x TP8); now 16, as the aggregated plan's. Each plan listed is tuner estimate's
    of that deployment (--prefill-instances/--decode-instances, each pool's degrees, the plan's
    W8A8 formats and 16-bit KV cache, SGLang's 2048 slots a DP rank: --max-batch-size 2048 x the
    decode DP); chips are xP x TP x DP + yD x TP x DP."""
    sla = ("--request-rate", "20", "--max-ttft-s", "2", "--max-tpot-s", "0.05", "--mode", "disaggregated")
    code, out, err = run_cli(capsys, "recommend", *DEEPSEEK_SGLANG, *sla, "--json")
    assert code == 0, err
    mode = json.loads(out)["modes"]["disaggregated"]
    best = mode["best"]
    assert best["chips"] == 16 and best["prefill_dp"] > 1 and best["decode_dp"] > 1
    rows = [best, *mode["runners_up"]]
    # The best, and a runner-up whose pools differ (the prefill instance's degrees its own).
    differing = next(r for r in rows if (r["prefill_tp"], r["prefill_dp"]) != (r["decode_tp"], r["decode_dp"]))
    for row in (best, differing):
        for pool in ("prefill", "decode"):
            tp, dp, ep = row[f"{pool}_tp"], row[f"{pool}_dp"], row[f"{pool}_ep"]
            assert ep == tp * dp  # EP over the instance's every chip
        chips = sum(row[f"{pool}_instances"] * row[f"{pool}_tp"] * row[f"{pool}_dp"] for pool in ("prefill", "decode"))
        assert row["chips"] == chips
        assert (row["weight_format"], row["act_format"]) == ("fp8", "fp8")
        degrees = ("--tp", str(row["decode_tp"]), "--dp", str(row["decode_dp"]), "--ep", str(row["decode_ep"]))
        degrees += ("--prefill-tp", str(row["prefill_tp"]), "--prefill-dp", str(row["prefill_dp"]))
        degrees += ("--prefill-ep", str(row["prefill_ep"]))
        pools = ("--prefill-instances", str(row["prefill_instances"]))
        pools += ("--decode-instances", str(row["decode_instances"]))
        formats = ("--weight-bits", "fp8", "--act-bits", "fp8", "--kv-bits", "16")
        slots = ("--max-batch-size", str(2048 * row["decode_dp"]))
        code, out, err = run_cli(
            capsys, "estimate", *DEEPSEEK_SGLANG, "--request-rate", "20", *pools, *degrees, *formats, *slots, "--json"
        )
        assert code == 0, err
        estimate = json.loads(out)
        serving = estimate["serving"]
        assert serving["chips"] == row["chips"]
        assert estimate["pools"]["prefill"]["ep"] == row["prefill_ep"]
        assert serving["ttft_s"] == pytest.approx(row["ttft_s"], rel=1e-6)
        assert serving["tpot_s"] == pytest.approx(row["tpot_s"], rel=1e-6)
        assert serving["capacity_rps"] == pytest.approx(row["capacity_rps"], rel=1e-6)
        assert serving["kv_transfer_s"] == pytest.approx(row["kv_transfer_s"], rel=1e-9)
        assert serving["limiting_pool"] == row["limiting_pool"]
    code, out, err = run_cli(capsys, "recommend", *DEEPSEEK_SGLANG, *sla)
    assert code == 0, err
    layout = (
        f"{best['prefill_instances']}P x TP{best['prefill_tp']} DP{best['prefill_dp']} EP{best['prefill_ep']} + "
        f"{best['decode_instances']}D x TP{best['decode_tp']} DP{best['decode_dp']} EP{best['decode_ep']}"
    )
    assert f"disaggregated: fewest chips 16 ({layout}, fp8 W8A8)" in out


def test_a_dense_models_disaggregated_pools_stay_tensor_parallel(capsys) -> None:
    """Llama-3-70B has no experts: its pools are TP groups (DP 1, EP 1) and its layout column
    reads as before (``2P x TP2 + 1D x TP2``, README's example at 12 chips)."""
    plan = (*BASE, "--max-ttft-s", "1", "--max-chips", "12", "--mode", "disaggregated")
    code, out, err = run_cli(capsys, *plan, "--json")
    assert code == 0, err
    mode = json.loads(out)["modes"]["disaggregated"]
    for row in [mode["best"], *mode["runners_up"]]:
        assert (row["prefill_dp"], row["prefill_ep"], row["decode_dp"], row["decode_ep"]) == (1, 1, 1, 1)
    code, out, err = run_cli(capsys, *plan)
    assert code == 0, err
    assert re.search(r"\dP x TP\d+ \+ \dD x TP\d+ ", out) and " DP" not in out


def _plan(capsys, *extra: str) -> dict:
    code, out, err = run_cli(capsys, *BASE[:-2], "--backend", "vllm", "--max-ttft-s", "1", *extra, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("kv_bits", ["16", "fp8"])
def test_kv_bits_plans_every_candidate_with_that_cache_as_estimate_scores_it(capsys, kv_bits):
    """ "What if I use an fp8 KV cache" had no answer here (no such option: every candidate was
    planned with a bf16 cache, and nothing said so). Each plan's replica is tuner estimate's
    deployment at its share of the rate, with the same --kv-bits."""
    report = _plan(capsys, "--mode", "aggregated", "--kv-bits", kv_bits)
    assert report["kv_format"] == {"16": "bf16", "fp8": "fp8"}[kv_bits]
    best = report["modes"]["aggregated"]["best"]
    w = best["weight_format"]
    act = best["act_format"]
    code, out, err = run_cli(
        capsys,
        *"estimate --model llama-3-70b --hardware h100-sxm --prompt-len 2048 --gen-len 256 --backend vllm".split(),
        *("--tp", str(best["tp"]), "--request-rate", str(10 / best["replicas"])),
        *("--weight-bits", {"bf16": "16"}.get(w, w), "--act-bits", {"bf16": "16"}.get(act, act)),
        *("--kv-bits", kv_bits, "--json"),
    )
    assert code == 0, err
    serving = json.loads(out)["serving"]
    assert best["ttft_s"] == pytest.approx(serving["ttft_s"], rel=1e-9)
    assert best["tpot_s"] == pytest.approx(serving["tpot_s"], rel=1e-9)


def test_an_fp8_cache_halves_the_kv_sent_between_the_pools(capsys):
    """A 2048-token prompt of Llama-3-70B: 80 layers x 8 KV heads x 128 x 2 (K and V) x 2048 =
    335.5 M values, 671 MB in bf16 and 335.5 MB in fp8; split over the prefill's TP 2 ranks at
    NVLink's 450 GB/s, 0.746 ms and 0.373 ms (plus a link latency, the same in both)."""
    plans = {
        kv: _plan(capsys, "--mode", "disaggregated", "--kv-bits", kv)["modes"]["disaggregated"]["best"]
        for kv in ("16", "fp8")
    }
    assert plans["16"]["prefill_tp"] == plans["fp8"]["prefill_tp"] == 2
    values = 80 * 8 * 128 * 2 * 2048
    for kv, bytes_per_value in (("16", 2), ("fp8", 1)):
        assert plans[kv]["kv_transfer_s"] == pytest.approx(values * bytes_per_value / 2 / 450e9, rel=0.01)


def test_the_table_says_the_kv_cache_it_planned(capsys):
    code, out, err = run_cli(capsys, *BASE, "--max-ttft-s", "1", "--mode", "aggregated")
    assert code == 0, err
    assert out.splitlines()[0].endswith(
        "at most 64 chips; KV cache bf16 (--kv-bits 16, the default; --kv-bits fp8 halves its bytes)"
    )
    code, out, err = run_cli(capsys, *BASE, "--max-ttft-s", "1", "--mode", "aggregated", "--kv-bits", "fp8")
    assert code == 0, err
    assert out.splitlines()[0].endswith("; KV cache fp8 (--kv-bits fp8; --kv-bits 16 for bf16)")


@pytest.mark.parametrize(
    ("hardware", "kv_bits", "message"),
    [("a100-80gb", "fp8", "kv_bits: a100-80gb has no fp8 support"), ("h100-sxm", "4", "vllm has no int4 KV cache")],
)
def test_a_kv_cache_the_chip_or_engine_lacks_is_one_line(capsys, hardware, kv_bits, message):
    args = list(BASE[:-2])
    args[args.index("--hardware") + 1] = hardware
    code, out, err = run_cli(capsys, *args, "--backend", "vllm", "--max-ttft-s", "1", "--kv-bits", kv_bits)
    assert message in assert_one_error_line(code, out, err, ("kv_bits",))


def test_percentile_slas_are_in_the_json_the_header_and_the_table(capsys):
    """--max-ttft-p90-s, --max-ttft-p99-s, --max-tpot-p99-s: each plan's percentiles meet them, the
    header says them and the table shows the percentiles beside the means."""
    args = ("--max-ttft-s", "1", "--max-chips", "8", "--mode", "aggregated", "--max-ttft-p90-s", "0.9")
    more = ("--max-ttft-p99-s", "0.95", "--max-tpot-p99-s", "0.06")
    code, out, err = run_cli(capsys, *BASE, *args, *more, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["max_ttft_p90_s"], report["max_ttft_p99_s"], report["max_tpot_p99_s"]) == (0.9, 0.95, 0.06)
    best = report["modes"]["aggregated"]["best"]
    assert best["ttft_p90_s"] <= 0.9 and best["ttft_p99_s"] <= 0.95 and best["tpot_p99_s"] <= 0.06
    assert best["ttft_s"] <= best["ttft_p90_s"] <= best["ttft_p99_s"]
    code, out, err = run_cli(capsys, *BASE, *args, *more)
    assert code == 0, err
    assert "p90 TTFT <= 0.9 s, p99 TTFT <= 0.95 s, p99 TPOT <= 0.06 s" in out
    assert "TTFT p90" in out and "TTFT p99" in out and "TPOT p99" in out


def test_a_bad_percentile_sla_is_one_line(capsys):
    code, out, err = run_cli(capsys, *BASE, "--max-ttft-s", "1", "--max-ttft-p99-s", "0")
    assert_one_error_line(code, out, err, ("max_ttft_p99_s",))


def test_none_names_the_percentile_that_binds(capsys):
    code, out, err = run_cli(capsys, *BASE, "--max-ttft-s", "1", "--max-chips", "8", "--mode", "aggregated",
                             "--max-ttft-p99-s", "0.001")  # fmt: skip
    assert code == 0, err
    assert "p99 TTFT of those that keep up is" in out and "--max-ttft-p99-s 0.001" in out


SMALL = (
    "recommend", "--model", "llama-3-8b", "--request-rate", "1", "--prompt-len", "512", "--gen-len", "64",
    "--max-ttft-s", "1", "--max-tpot-s", "0.1", "--max-chips", "2", "--backend", "vllm",
)  # fmt: skip


@pytest.mark.parametrize(
    ("kv_bits", "said"),
    [
        (None, "KV cache bf16 (--kv-bits 16, the default; --kv-bits fp8 halves its bytes)"),
        ("fp8", "KV cache fp8 (--kv-bits fp8; --kv-bits 16 for bf16)"),
    ],
    ids=["default", "fp8"],
)
def test_every_recommend_output_says_the_kv_cache_and_the_flag_that_sets_it(capsys, kv_bits, said):
    """The header named the KV-cache format (bf16 unless --kv-bits), but not that it was an
    assumption nor how to change it, and the ranking of several chips and its JSON said neither:
    a user comparing plans could not tell they were all planned with a 16-bit cache."""
    kv = () if kv_bits is None else ("--kv-bits", kv_bits)
    code, out, err = run_cli(capsys, *SMALL, "--hardware", "h100-sxm", *kv)
    assert code == 0, err
    assert out.splitlines()[0].endswith(f"; {said}")
    code, out, err = run_cli(capsys, *SMALL, "--hardware", "h100-sxm", *kv, "--json")
    assert code == 0, err
    assert json.loads(out)["kv_bits"] == (kv_bits or "16")
    two = ("--hardware", "h100-sxm", "--hardware", "h200", "--price", "h100-sxm=2.49", "--price", "h200=3.19")
    code, out, err = run_cli(capsys, *SMALL, *two, *kv)
    assert code == 0, err
    ranking = out.split("cheapest first")[1]
    assert f"every plan: {said}" in ranking
    code, out, err = run_cli(capsys, *SMALL, *two, *kv, "--json")
    assert code == 0, err
    assert json.loads(out)["kv_bits"] == (kv_bits or "16")


GPT_OSS_B200 = (
    "recommend", "--model", "gpt-oss-120b", "--request-rate", "8", "--prompt-len", "3000", "--gen-len", "400",
    "--max-ttft-s", "3", "--max-tpot-s", "0.06", "--backend", "vllm", "--json",
)  # fmt: skip


def test_a_plan_in_another_format_than_the_published_checkpoint_says_so_and_names_the_stored_formats_plan(capsys):
    """gpt-oss-120b's only published checkpoint stores MXFP4 (fp4) experts. On a B200 under vLLM
    recommend's best plans are fp8 W8A8 (1 x TP1 and 1P x TP1 + 1D x TP1), whose launch line names
    openai/gpt-oss-120b with --quantization fp8, which vLLM refuses for an mxfp4 checkpoint; the
    export's notes said it needs another checkpoint, the recommendation did not. Now a note per mode
    says so and names the fewest-chips plan in the stored format (a row of the same feasible list).
    On an H100 the best is the fp4 checkpoint itself: no note; a 16-bit model: none."""
    code, out, err = run_cli(capsys, *GPT_OSS_B200, "--hardware", "b200")
    assert code == 0, err
    report = json.loads(out)
    for mode in ("aggregated", "disaggregated"):
        best = report["modes"][mode]["best"]
        assert best["weight_format"] == "fp8"
        (note,) = [n for n in report["notes"] if n.startswith(f"{mode}: the best plan's fp8 weights")]
        assert "openai/gpt-oss-120b" in note and "another checkpoint" in note
        assert "the fewest chips in fp4: " in note
    code, out, err = run_cli(capsys, *GPT_OSS_B200, "--hardware", "h100-sxm")
    report = json.loads(out)
    assert report["modes"]["aggregated"]["best"]["weight_format"] == "fp4"
    assert not any("published checkpoint" in n for n in report["notes"])
    code, out, err = run_cli(capsys, *BASE, "--max-ttft-s", "1", "--max-chips", "12", "--json")
    assert not any("published checkpoint" in n for n in json.loads(out)["notes"])
