"""The user's money and load numbers are bounded: a chip price, a cost limit or a request rate of
1e-320 (a subnormal double) was accepted, priced every plan at $0 ("$/h 1e-320, $/M tokens 0" in
`tuner recommend`) and made `tuner simulate` print "simulated inf s" and NaN throughputs; a price
of 1e300 printed 60-digit dollar figures. Each is refused in one line naming the field, exit 2."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli, spec_with
from cost_models.errors import InvalidInputError
from search_spaces.spec import parse_spec

PRICED: dict = {
    "name": "ranges",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"tp": [1, 2], "batch": [1, 32]},
    "objectives": [{"metric": "decode.cost_usd_per_million_tokens"}, {"metric": "decode.cost_chip_s_per_token"}],
    "price_per_chip_hour_usd": 2.49,
    "backend": "vllm",
    "sampler": "exhaustive",
}
SERVING: dict = {**PRICED, "serving": {"request_rate": [5.0]}, "objectives": [{"metric": "serving.tokens_per_s"}]}


SPEC_CASES = {
    "price subnormal": (PRICED, ("price_per_chip_hour_usd",), 1e-320),
    "price smallest subnormal": (PRICED, ("price_per_chip_hour_usd",), 5e-324),
    "price below a micro-dollar": (PRICED, ("price_per_chip_hour_usd",), 1e-7),
    "cost limit subnormal": (PRICED, ("constraints", "max_cost_usd_per_million_tokens"), 1e-320),
    "cost limit 1e300": (PRICED, ("constraints", "max_cost_usd_per_million_tokens"), 1e300),
    "request rate subnormal": (SERVING, ("serving", "request_rate"), [5.0, 1e-320]),
    "request rate 1e-7": (SERVING, ("serving", "request_rate"), [1e-7]),
}


@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_spec_money_and_rates_out_of_range_are_one_line(case: str, tmp_path: Path, capsys) -> None:
    base, path, value = SPEC_CASES[case]
    data = spec_with(base, path, value)
    with pytest.raises(InvalidInputError) as info:
        parse_spec(copy.deepcopy(data))
    assert path[-1] in str(info.value) and "\n" not in str(info.value)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", f"sqlite:///{tmp_path}/x.db")
    assert_one_error_line(code, out, err, (path[-1],))
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("value", [1e-6, 1e6])
def test_spec_price_at_the_bounds_is_taken(value: float) -> None:
    assert parse_spec(spec_with(PRICED, ("price_per_chip_hour_usd",), value)).price_per_chip_hour_usd == value


RECOMMEND = (
    "recommend", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--prompt-len", "512", "--gen-len", "64",
    "--max-ttft-s", "1", "--max-tpot-s", "0.1", "--max-chips", "2", "--mode", "aggregated",
)  # fmt: skip
LOAD = ("--model", "llama-3-8b", "--hardware", "l4", "--prompt-len", "512", "--gen-len", "64", "--chips", "1")


@pytest.mark.parametrize(
    "args,field",
    [
        ((*RECOMMEND, "--request-rate", "1", "--price", "h100-sxm=1e-320"), "--price"),
        ((*RECOMMEND, "--request-rate", "1", "--price", "h100-sxm=4.9e-324"), "--price"),
        ((*RECOMMEND, "--request-rate", "1", "--price", "h100-sxm=1e300"), "--price"),
        ((*RECOMMEND, "--request-rate", "1e-320"), "request_rate"),
        (("estimate", *LOAD, "--request-rate", "1e-320"), "request_rate"),
        (("simulate", *LOAD, "--request-rate", "1e-320", "--requests", "50"), "request_rate"),
        (("simulate", *LOAD, "--request-rate", "1e300", "--requests", "50"), "request_rate"),
    ],
    ids=[
        "recommend price subnormal", "recommend price smallest", "recommend price 1e300", "recommend rate",
        "estimate rate", "simulate rate", "simulate rate 1e300",
    ],
)  # fmt: skip
def test_cli_money_and_rates_out_of_range_are_one_line(capsys, args: tuple[str, ...], field: str) -> None:
    line = assert_one_error_line(*run_cli(capsys, *args), fields=(field,))
    assert "from 1e-06 to" in line  # says the range


def test_recommend_at_the_lowest_rate_plans_replicas_below_it(capsys) -> None:
    """The lowest rate a user gives, 1e-6 req/s, split over 2 replicas is 5e-7 an instance, below
    the range make_workloads holds a user's rate to: recommend still plans it (its instances'
    workloads are built at the user's validated rate, then given their share)."""
    code, out, err = run_cli(capsys, *RECOMMEND, "--request-rate", "1e-6", "--json")
    assert code == 0, err
    rows = [json.loads(out)["modes"]["aggregated"]["best"], *json.loads(out)["modes"]["aggregated"]["runners_up"]]
    assert any(row["replicas"] == 2 for row in rows)
