"""The serving tables print numbers a person reads at a glance: never in exponent form. Seen by a
new user on 2026-12-05: ``tuner recommend`` printed Mixtral's 1,280 tokens/s/chip as ``1.28e+03``
beside ``853`` and ``640``; ``tuner estimate`` a 19.85 s TTFT as ``1.985e+04 ms``; ``tuner
simulate`` 20,000 tokens/s as ``1.997e+04``."""

from __future__ import annotations

import json
import re

import pytest

from cli_helpers import run_cli


def _table_and_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, dict]:
    code, table, err = run_cli(capsys, *args)
    assert code == 0, err
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return table, json.loads(out)


def test_recommend_prints_a_thousand_tokens_per_chip_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    """10 requests/s of 256 output tokens on 2 chips: 10 x 256 / 2 = 1280 tokens/s a chip."""
    table, report = _table_and_json(
        capsys,
        *"recommend --model mixtral-8x7b --hardware h200 --backend sglang --max-chips 2 --request-rate 10 "
        "--prompt-len 2048 --gen-len 256 --max-ttft-s 1 --max-tpot-s 0.05 --mode aggregated".split(),
    )
    assert report["modes"]["aggregated"]["best"]["chips"] == 2
    assert re.search(r"│\s+1,280 │", table), table
    assert "e+" not in table


def test_estimate_prints_a_ttft_of_seconds_in_plain_milliseconds(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/serving.md's token-budget example: 128 clients behind a 64-token budget wait about 20 s
    for their first token."""
    table, report = _table_and_json(
        capsys,
        *"estimate --model llama-3-8b --hardware h100-sxm --chips 1 --concurrency 128 --prompt-len 1024 "
        "--gen-len 256 --backend vllm --max-num-tokens 64".split(),
    )
    ttft_ms = report["serving"]["ttft_s"] * 1e3
    assert ttft_ms > 10_000
    assert f"{ttft_ms:,.0f} ms" in table
    assert "e+" not in table


def test_simulate_prints_tens_of_thousands_of_tokens_per_s_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    table, report = _table_and_json(
        capsys,
        *"simulate --model llama-3-8b --hardware h100-sxm --chips 8 --dp 8 --concurrency 512 --prompt-len 512 "
        "--gen-len 128 --requests 200".split(),
    )
    tokens = report["simulated"]["tokens_per_s"]
    assert tokens > 10_000
    assert f"{tokens:,.0f}" in table
    assert "e+" not in table
