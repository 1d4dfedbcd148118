"""Latency limits and the engine's memory share are bounded (cost_models.input_ranges): a study's
max_ttft_s / max_tpot_s (and percentiles) and recommend's --max-*-s took any number above 0, 1e-300
s and 1e300 s alike, and a memory fraction of 1e-300 (spec, --memory-fraction,
--kv-memory-fraction) was taken and failed later as "the KV cache holds 0 tokens" without naming
the knob. Each is refused in one line naming the field and what to write, exit 2."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli, spec_with
from cost_models.errors import InvalidInputError
from search_spaces.spec import parse_spec

SPEC: dict = {
    "name": "ranges",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"tp": [1, 2]},
    "objectives": [{"metric": "serving.tokens_per_s"}],
    "serving": {"request_rate": [5.0]},
    "backend": "vllm",
    "sampler": "exhaustive",
}


SPEC_CASES = {
    "ttft limit 1e-300": (("constraints", "max_ttft_s"), 1e-300, "write at least 1e-06"),
    "ttft limit subnormal": (("constraints", "max_ttft_s"), 5e-324, "write at least 1e-06"),
    "tpot limit 1e300": (("constraints", "max_tpot_s"), 1e300, "write at most 86400"),
    "tpot limit over a day": (("constraints", "max_tpot_s"), 86401.0, "write at most 86400"),
    "tpot p99 limit 1e-7": (("constraints", "max_tpot_p99_s"), 1e-7, "write at least 1e-06"),
    "ttft p90 limit 1e-300": (("constraints", "max_ttft_p90_s"), 1e-300, "write at least 1e-06"),
    "ttft p99 limit 1e300": (("constraints", "max_ttft_p99_s"), 1e300, "write at most 86400"),
    "memory fraction 1e-300": (("serving", "memory_fraction"), 1e-300, "write at least 0.01"),
    "memory fraction half a percent": (("serving", "memory_fraction"), 0.005, "write at least 0.01"),
}


@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_spec_latency_limits_and_memory_share_out_of_range_are_one_line(case: str, tmp_path: Path, capsys) -> None:
    path, value, fix = SPEC_CASES[case]
    data = spec_with(SPEC, path, value)
    with pytest.raises(InvalidInputError) as info:
        parse_spec(copy.deepcopy(data))
    message = str(info.value)
    assert f"spec.{'.'.join(path)}:" in message and fix in message and "\n" not in message
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", f"sqlite:///{tmp_path}/x.db")
    line = assert_one_error_line(code, out, err, (".".join(path),))
    assert fix in line
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    "path,value",
    [
        (("constraints", "max_ttft_s"), 1e-6),
        (("constraints", "max_tpot_s"), 86400.0),
        (("serving", "memory_fraction"), 0.01),
        (("serving", "memory_fraction"), 1.0),
    ],
    ids=["ttft a microsecond", "tpot a day", "memory 1%", "memory all"],
)
def test_spec_limits_at_the_bounds_are_taken(path: tuple[str, ...], value: float) -> None:
    spec = parse_spec(spec_with(SPEC, path, value))
    section = getattr(spec, path[0])
    assert getattr(section, path[1]) == value


RECOMMEND = (
    "recommend", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--prompt-len", "512", "--gen-len", "64",
    "--max-chips", "2", "--mode", "aggregated", "--request-rate", "1",
)  # fmt: skip
LOAD = ("--model", "llama-3-8b", "--hardware", "l4", "--prompt-len", "512", "--gen-len", "64", "--chips", "1")


@pytest.mark.parametrize(
    "args,field,fix",
    [
        ((*RECOMMEND, "--max-ttft-s", "1e-300", "--max-tpot-s", "0.1"), "max_ttft_s", "--max-ttft-s"),
        ((*RECOMMEND, "--max-ttft-s", "1", "--max-tpot-s", "1e300"), "max_tpot_s", "--max-tpot-s"),
        ((*RECOMMEND, "--max-ttft-s", "1", "--max-tpot-s", "0.1", "--max-ttft-p99-s", "1e-7"), "max_ttft_p99_s",
         "--max-ttft-p99-s"),
        (("estimate", *LOAD, "--concurrency", "4", "--memory-fraction", "1e-300"), "memory_fraction", "0.9"),
        (("estimate", *LOAD, "--batch", "1", "--kv-memory-fraction", "1e-300"), "kv_memory_fraction", "0.3"),
        (("simulate", *LOAD, "--concurrency", "4", "--requests", "20", "--memory-fraction", "1e-300"),
         "memory_fraction", "0.9"),
    ],
    ids=["recommend ttft", "recommend tpot", "recommend ttft p99", "estimate memory", "estimate kv memory",
         "simulate memory"],
)  # fmt: skip
def test_cli_latency_limits_and_memory_share_out_of_range_are_one_line(
    capsys, args: tuple[str, ...], field: str, fix: str
) -> None:
    line = assert_one_error_line(*run_cli(capsys, *args), fields=(field,))
    assert "from 1e-06 to 86400" in line or "from 0.01 to 1" in line  # says the range
    assert fix in line
