"""``tuner recommend`` with several --hardware and the user's --price per chip-hour: each chip
planned as one --hardware is (under its own shipped profile), the plans ranked by dollars per hour
and per million output tokens; one --hardware without --price prints what it printed before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import assert_one_error_line, run_cli

# The README's example (llama-3-70b, 10 requests/s of 2048 + 256 tokens, TTFT 1 s, TPOT 50 ms),
# within 12 chips to keep it quick.
REQUEST = (
    "recommend",
    "--model",
    "llama-3-70b",
    "--request-rate",
    "10",
    "--prompt-len",
    "2048",
    "--gen-len",
    "256",
    "--max-ttft-s",
    "1",
    "--max-tpot-s",
    "0.05",
    "--max-chips",
    "12",
    "--backend",
    "vllm",
)
OUTPUT_TOKENS_PER_S = 10 * 256  # a plan meeting the SLA serves the whole rate

# The keys `tuner recommend --json` printed before prices (commit 4c192fb, the same request; the
# aggregated rows' dp and ep since MoE instances are planned at TP x DP, serving-moe 4eae34d; the
# KV cache's format since --kv-bits, qa-newuser; the percentile SLAs and each row's TTFT p90 / p99
# and TPOT p99 since --max-ttft-p90-s, ttft-pct; the --kv-bits that set the cache and the other
# one to try since gaps35).
KEYS_BEFORE = [
    "model",
    "hardware",
    "request_rate",
    "prompt_len",
    "gen_len",
    "max_ttft_s",
    "max_tpot_s",
    "max_ttft_p90_s",
    "max_ttft_p99_s",
    "max_tpot_p99_s",
    "max_chips",
    "kv_format",
    "kv_bits",
    "kv_alternative",
    "backend",
    "calibration",
    "notes",
    "modes",
]
MODE_KEYS_BEFORE = ["candidates", "feasible_count", "best", "why_none", "runners_up"]
AGGREGATED_ROW_BEFORE = [
    "mode", "chips", "replicas", "tp", "dp", "ep", "weight_format", "act_format", "ttft_s",
    "ttft_p90_s", "ttft_p99_s", "tpot_s", "tpot_p99_s", "e2e_latency_s", "tokens_per_s_per_chip",
    "running_per_replica", "max_concurrency_per_replica", "near_capacity",
]  # fmt: skip
DISAGGREGATED_ROW_BEFORE = [
    "mode", "chips", "prefill_instances", "decode_instances", "prefill_tp", "decode_tp", "prefill_dp", "prefill_ep",
    "decode_dp", "decode_ep", "weight_format", "act_format", "ttft_s", "ttft_p90_s",
    "ttft_p99_s", "tpot_s", "tpot_p99_s", "e2e_latency_s", "tokens_per_s_per_chip",
    "kv_transfer_s", "limiting_pool", "balance", "capacity_rps", "near_capacity",
]  # fmt: skip
ROW_KEYS_BEFORE = {"aggregated": AGGREGATED_ROW_BEFORE, "disaggregated": DISAGGREGATED_ROW_BEFORE}


def _json(capsys, *args: str) -> dict:
    code, out, err = run_cli(capsys, *REQUEST, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_one_hardware_without_a_price_prints_the_same_keys(capsys) -> None:
    report = _json(capsys, "--hardware", "h100-sxm")
    assert list(report) == KEYS_BEFORE
    for mode, r in report["modes"].items():
        assert list(r) == MODE_KEYS_BEFORE
        for row in [r["best"], *r["runners_up"]]:
            assert list(row) == ROW_KEYS_BEFORE[mode]


def test_one_priced_hardware_adds_dollars_and_changes_nothing_else(capsys) -> None:
    plain = _json(capsys, "--hardware", "h100-sxm")
    priced = _json(capsys, "--hardware", "h100-sxm", "--price", "h100-sxm=2.49")
    assert list(priced) == [*KEYS_BEFORE, "price_per_chip_hour_usd"]
    assert priced["price_per_chip_hour_usd"] == 2.49
    assert {k: v for k, v in priced.items() if k not in ("modes", "price_per_chip_hour_usd")} == {
        k: v for k, v in plain.items() if k != "modes"
    }
    for mode, r in priced["modes"].items():
        before = plain["modes"][mode]
        assert {k: v for k, v in r.items() if k not in ("best", "runners_up")} == {
            k: v for k, v in before.items() if k not in ("best", "runners_up")
        }
        for row, row_before in zip([r["best"], *r["runners_up"]], [before["best"], *before["runners_up"]], strict=True):
            assert list(row) == [*ROW_KEYS_BEFORE[mode], "cost_usd_per_hour", "cost_usd_per_million_tokens"]
            assert {k: row[k] for k in row_before} == row_before
            # chips x $/chip-h; / 3600 s/h / (10 x 256 tokens/s) x 1e6
            assert row["cost_usd_per_hour"] == pytest.approx(row["chips"] * 2.49)
            assert row["cost_usd_per_million_tokens"] == pytest.approx(row["chips"] * 2.49 / 3600 / 2560 * 1e6)
    # The README's answer: 2 x TP4 fp8 (4 x TP2 before the fused QKV / gate_up GEMMs), 8 H100s:
    # 8 x 2.49 = $19.92 an hour, 19.92 / 3600 / 2560 x
    # 1e6 = $2.16 per million output tokens.
    best = priced["modes"]["aggregated"]["best"]
    assert (best["chips"], best["replicas"], best["tp"]) == (8, 2, 4)
    assert best["cost_usd_per_hour"] == pytest.approx(19.92)
    assert best["cost_usd_per_million_tokens"] == pytest.approx(2.161458, rel=1e-6)


def test_several_chips_are_ranked_by_dollars(capsys) -> None:
    report = _json(
        capsys, "--hardware", "h100-sxm", "--hardware", "h200", "--price", "h100-sxm=2.49", "--price", "h200=3.19"
    )
    assert report["hardware"] == ["h100-sxm", "h200"]
    plans = {p["hardware"]: p for p in report["plans"]}
    # Each chip under its own shipped profile of the engine asked for.
    assert plans["h100-sxm"]["calibration"]["profile"] == "h100-sxm-vllm"
    assert plans["h200"]["calibration"]["profile"] == "h200-vllm"
    assert plans["h200"]["price_per_chip_hour_usd"] == 3.19
    # The plan of each chip is the one --hardware alone gives.
    alone = _json(capsys, "--hardware", "h200", "--price", "h200=3.19")
    assert plans["h200"] == alone
    ranked = report["ranking"]
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4]  # 2 chips x 2 modes, each with a plan
    assert {(r["hardware"], r["mode"]) for r in ranked} == {
        (h, m) for h in ("h100-sxm", "h200") for m in ("aggregated", "disaggregated")
    }
    for r in ranked:
        price = {"h100-sxm": 2.49, "h200": 3.19}[r["hardware"]]
        assert r["price_per_chip_hour_usd"] == price
        assert r["chips"] == plans[r["hardware"]]["modes"][r["mode"]]["best"]["chips"]
        assert r["cost_usd_per_hour"] == pytest.approx(r["chips"] * price)
        assert r["cost_usd_per_million_tokens"] == pytest.approx(r["chips"] * price / 3600 / OUTPUT_TOKENS_PER_S * 1e6)
    dollars = [r["cost_usd_per_hour"] for r in ranked]
    assert dollars == sorted(dollars)


def test_several_chips_without_prices_are_planned_not_ranked(capsys) -> None:
    report = _json(capsys, "--hardware", "h100-sxm", "--hardware", "h200", "--mode", "aggregated")
    assert report["ranking"] is None
    assert [p["hardware"] for p in report["plans"]] == ["h100-sxm", "h200"]
    code, out, err = run_cli(capsys, *REQUEST, "--hardware", "h100-sxm", "--hardware", "h200", "--mode", "aggregated")
    assert code == 0, err
    assert "not ranked" in out and "--price" in out


def test_table_ranks_cheapest_first(capsys) -> None:
    code, out, err = run_cli(
        capsys, *REQUEST, "--mode", "aggregated", "--hardware", "h100-sxm", "--hardware", "h200",
        "--price", "h100-sxm=2.49", "--price", "h200=3.19",
    )  # fmt: skip
    assert code == 0, err
    assert "price: $2.49 a chip-hour (yours, --price)" in out
    assert "cheapest first at 10 requests/s (2560 tokens/s)" in out
    assert "prices are yours (--price)" in out
    ranking = out.split("cheapest first")[1]
    rows = [line for line in ranking.splitlines() if line.startswith("│ #")]
    # 6 H200s (3 x TP2) at $3.19: $19.14 an hour, under 8 H100s (4 x TP2) at $2.49: $19.92.
    assert len(rows) == 2
    assert rows[0].startswith("│ #1 │ h200 (h200-vllm)") and "19.1 " in rows[0]
    assert rows[1].startswith("│ #2 │ h100-sxm (h100-sxm-vllm)") and "19.9 " in rows[1]


@pytest.mark.parametrize(
    "args,words",
    [
        (("--hardware", "h100-sxm", "--price", "h200=3.19"), "--price: h200 is not a --hardware of this command"),
        (("--hardware", "h100-sxm", "--price", "h100-sxm=abc"), "--price: 'h100-sxm=abc': 'abc' is not a number"),
        (("--hardware", "h100-sxm", "--price", "h100-sxm=0"), "a price must be a number of dollars above 0"),
        (("--hardware", "h100-sxm", "--price", "h100-sxm=-2.49"), "a price must be a number of dollars above 0"),
        (("--hardware", "h100-sxm", "--price", "h100-sxm=inf"), "a price must be a number of dollars above 0"),
        (("--hardware", "h100-sxm", "--price", "h100-sxm=nan"), "a price must be a number of dollars above 0"),
        (("--hardware", "h100-sxm", "--price", "2.49"), "--price: '2.49' is not CHIP=USD; write --price h100-sxm=2.49"),
        (
            ("--hardware", "h100-sxm", "--hardware", "h200", "--price", "h100-sxm=2.49"),
            "--price: h200 has no price while h100-sxm has one",
        ),
        (("--hardware", "h200", "--hardware", "h200"), "--hardware: h200 is given twice; list each chip once"),
        (
            ("--hardware", "h200", "--price", "h200=3.19", "--price", "h200=3.5"),
            "--price: h200 is priced twice",
        ),
        (
            ("--hardware", "h100-sxm", "--hardware", "h200", "--calibration", "h100-sxm-vllm"),
            "--calibration: h100-sxm-vllm is one chip's profile",
        ),
    ],
    ids=[
        "chip not asked", "not a number", "zero", "negative", "infinite", "nan", "no chip", "some priced",
        "chip twice", "priced twice", "one chip's profile",
    ],
)  # fmt: skip
def test_bad_prices_are_one_line(capsys, args: tuple[str, ...], words: str) -> None:
    line = assert_one_error_line(*run_cli(capsys, *REQUEST, *args), fields=("--price", "--hardware", "--calibration"))
    assert words in line


def test_a_chip_file_is_priced_by_its_name_or_its_path(capsys, tmp_path) -> None:
    """--hardware my-h100.yaml (a chip file naming itself my-h100, as the report prints it):
    --price my-h100=2.49 was refused with "add --hardware my-h100", which names no chip (session
    39); the path as written still prices it, and both at once price it twice."""
    import yaml

    entry = yaml.safe_load((Path(__file__).resolve().parents[2] / "cost_models/catalog/hardware.yaml").read_text())
    path = tmp_path / "file-chip.yaml"
    path.write_text(yaml.safe_dump({"my-h100": entry["h100-sxm"]}))
    reports = []
    for price in ("my-h100=2.49", f"{path}=2.49"):
        code, out, err = run_cli(capsys, *REQUEST, "--hardware", str(path), "--price", price, "--json")
        assert code == 0, err
        reports.append(json.loads(out))
    assert reports[0]["price_per_chip_hour_usd"] == reports[1]["price_per_chip_hour_usd"] == 2.49
    code, out, err = run_cli(capsys, *REQUEST, "--hardware", str(path), "--price", "my-h100=2", "--price", f"{path}=3")
    assert "priced twice" in assert_one_error_line(code, out, err, ("--price",))
