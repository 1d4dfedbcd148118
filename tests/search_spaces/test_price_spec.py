"""A study spec's ``price_per_chip_hour_usd``: the dollar metrics as objectives and
``constraints.max_cost_usd_per_million_tokens``, part of the hash; a dollar metric or limit
without a price, and a bad price, are one-line errors naming the field."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli
from cost_models.errors import InvalidInputError
from search_spaces.space import compile_study, evaluate
from search_spaces.spec import parse_spec

PRICE = 2.49  # dollars per chip-hour: illustrative, the user's own

STATIC: dict = {
    "name": "price-static",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"tp": [1, 2], "batch": [1, 32]},
    "objectives": [{"metric": "decode.cost_usd_per_million_tokens"}, {"metric": "decode.cost_chip_s_per_token"}],
    "price_per_chip_hour_usd": PRICE,
    "backend": "vllm",
    "sampler": "exhaustive",
}

SERVING: dict = {
    **STATIC,
    "name": "price-serving",
    "space": {"tp": [1, 2]},
    "serving": {"mode": "both", "request_rate": [5.0, 40.0], "decode_instances": [1, 2]},
    "objectives": [
        {"metric": "serving.cost_usd_per_million_tokens"},
        {"metric": "serving.tokens_per_s"},
        {"metric": "chips"},
    ],
}


def _evaluate(data: dict):
    study = compile_study(parse_spec(copy.deepcopy(data)))
    return study, evaluate(study, study.space.all_indices())


def refused(data: dict) -> str:
    with pytest.raises(InvalidInputError) as info:
        compile_study(parse_spec(data))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_decode_cost_is_the_chip_seconds_at_the_price() -> None:
    _, e = _evaluate(STATIC)
    usd, chip_s = e.values[:, 0], e.values[:, 1]
    # $/M tokens = chip-s/token x $/chip-h / 3600 s/h x 1e6
    np.testing.assert_allclose(usd, chip_s * PRICE / 3600 * 1e6, rtol=1e-12)
    assert np.all(np.isfinite(usd)) and np.all(usd > 0)


def test_serving_cost_counts_every_chip_of_the_plan() -> None:
    """chips x price / 3600 / tokens_per_s x 1e6, with the chips of both pools where a candidate is
    disaggregated (the chips metric counts them)."""
    _, e = _evaluate(SERVING)
    usd, tokens_per_s, chips = e.values[:, 0], e.values[:, 1], e.values[:, 2]
    serving = tokens_per_s > 0
    assert np.any(chips[serving] >= 3)  # disaggregated rows with pools of several instances
    np.testing.assert_allclose(usd[serving], chips[serving] * PRICE / 3600 / tokens_per_s[serving] * 1e6, rtol=1e-9)


def test_cost_limit_is_a_constraint_in_dollars() -> None:
    data = {**copy.deepcopy(SERVING), "constraints": {"max_cost_usd_per_million_tokens": 1.5}}
    study, e = _evaluate(data)
    assert study.constraint_names[-1] == "max_cost_usd_per_million_tokens"
    column = e.constraint_columns["max_cost_usd_per_million_tokens"]
    finite = np.isfinite(e.values[:, 0]) & (e.values[:, 0] < 1e6)
    np.testing.assert_allclose(column[finite], e.values[finite, 0] - 1.5, rtol=1e-12)
    assert np.any(column[finite] <= 0) and np.any(column[finite] > 0)  # the limit splits the candidates
    static = {**copy.deepcopy(STATIC), "constraints": {"max_cost_usd_per_million_tokens": 10.0}}
    _, s = _evaluate(static)
    np.testing.assert_allclose(s.constraint_columns["max_cost_usd_per_million_tokens"], s.values[:, 0] - 10.0)


def test_price_is_part_of_the_hash_and_absent_leaves_it() -> None:
    priced = parse_spec(copy.deepcopy(STATIC))
    other = parse_spec({**copy.deepcopy(STATIC), "price_per_chip_hour_usd": 3.19})
    plain = {**copy.deepcopy(STATIC), "objectives": [{"metric": "decode.cost_chip_s_per_token"}]}
    without = parse_spec({k: v for k, v in plain.items() if k != "price_per_chip_hour_usd"})
    assert priced.spec_hash != other.spec_hash
    assert "price_per_chip_hour_usd" not in without.canonical_json()  # specs without one keep their hash
    assert parse_spec({**plain, "price_per_chip_hour_usd": PRICE}).spec_hash != without.spec_hash


# A price is from 1e-6 to 1e6 dollars a chip-hour (cost_models.input_ranges.PRICE_PER_CHIP_HOUR_USD_RANGE).
BELOW_THE_RANGE = "price_per_chip_hour_usd: Input should be greater than or equal to 0.000001"


@pytest.mark.parametrize(
    "change,words",
    [
        (
            {"price_per_chip_hour_usd": None},
            "objective decode.cost_usd_per_million_tokens needs price_per_chip_hour_usd; add price_per_chip_hour_usd:",
        ),
        (
            {
                "price_per_chip_hour_usd": None,
                "objectives": [{"metric": "decode.step_latency_s"}],
                "constraints": {"max_cost_usd_per_million_tokens": 5.0},
            },
            "constraints.max_cost_usd_per_million_tokens needs price_per_chip_hour_usd",
        ),
        ({"price_per_chip_hour_usd": 0.0}, BELOW_THE_RANGE),
        ({"price_per_chip_hour_usd": -2.49}, BELOW_THE_RANGE),
        ({"price_per_chip_hour_usd": "2.49"}, "price_per_chip_hour_usd: Input should be a valid number"),
        ({"price_per_chip_hour_usd": float("inf")}, "price_per_chip_hour_usd"),
    ],
    ids=["metric without price", "limit without price", "zero", "negative", "text", "infinite"],
)
def test_missing_or_bad_price_is_one_line(change: dict, words: str, tmp_path: Path, capsys) -> None:
    data = {k: v for k, v in {**copy.deepcopy(STATIC), **change}.items() if v is not None}
    assert words in refused(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out, err = run_cli(capsys, "search", str(path), "--storage", f"sqlite:///{tmp_path}/bad.db")
    assert_one_error_line(code, out, err, ("price_per_chip_hour_usd",))
    assert not (tmp_path / "bad.db").exists()
