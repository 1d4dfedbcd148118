"""Random and NSGA-II searches spend their trials on candidates that can exist.

Before 2026-12-06 the random sampler drew flat configuration indices over the whole product and
stored what cannot exist (search_spaces.space.structurally_valid) as infeasible trials: 181 of 400
trials of a Mixtral-8x7B ``serving.mode: both`` study on H100s, 154 of them aggregated twins
(pool choices other than the first); NSGA-II 89 of 400. Now the random sampler checks each drawn
block and takes only those that can exist (tuner.samplers.DistinctFlatDraws ``valid``), so
``--trials N`` stores N deployments, and NSGA-II repairs the children that cannot
(tuner.study._repair_invalid). TPE still stores them (tests/tuner/test_search.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_error_line, run_cli
from cost_models.errors import InvalidInputError
from search_spaces.space import compile_study
from search_spaces.spec import parse_spec
from tuner import compact
from tuner.pareto import load_study
from tuner.samplers import DistinctFlatDraws
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# PaLM 540B has 48 heads and one KV head ("model", stored as 1): 5 and 7 KV heads divide none of
# them, so 2 of every 3 configurations (kv_heads 5 or 7) cannot exist: 1,584 configurations, 528
# that can.
PALM: dict = {
    "name": "kv",
    "model": "palm-540b",
    "hardware": "tpu-v4",
    "workload": {"prompt_len": 128, "gen_len": 8},
    "space": {
        "chips": [64, 128],
        "batch": [1, 4, 16, 32, 64, 128],
        "decode_ffn_layout": ["ws_1d", "ws_2d"],
        "weight_bits": [16, 8],
        "kv_heads": ["model", 5, 7],
    },
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "constraints": {"fits": True, "max_tpot_s": 0.5},
    "sampler": "random",
    "seed": 0,
    "trials": 100,
}

# Mixtral-8x7B (8 experts) at TP 4 x DP 3 is a 12-GPU MoE instance, which 8-GPU H100 nodes do not
# offer: every configuration of this space cannot exist.
NONE_EXIST: dict = {
    "name": "none-exist",
    "model": "mixtral-8x7b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 512, "gen_len": 64},
    "space": {"tp": [4], "dp": [3], "batch": [8, 16]},
    "objectives": [{"metric": "decode.step_latency_s"}],
    "sampler": "random",
    "seed": 0,
    "trials": 10,
}


def _kv_heads(url: str, name: str = "kv") -> list:
    return [t.params["kv_heads"] for t in load_study(name, url).get_trials(deepcopy=False)]


def _flat(url: str, spec: dict) -> list[int]:
    space = compile_study(parse_spec(spec)).space
    params = [t.params for t in load_study(spec["name"], url).get_trials(deepcopy=False)]
    sizes = [len(c) for c in space.dimensions.values()]
    return compact.flat_indices(space.indices_of(params), sizes).tolist()


@pytest.mark.parametrize("sampler", ["random", "nsga2"])
def test_a_search_stores_the_requested_count_of_candidates_that_can_exist(tmp_path: Path, sampler: str) -> None:
    """300 trials of a space two thirds of which cannot exist: 300 stored, all with the model's
    one KV head (on main: about 200 random and 100 NSGA-II trials had 5 or 7)."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = run_search(json.loads(json.dumps(PALM)), url, trials=300, sampler=sampler)
    heads = _kv_heads(url)
    assert result.trials_added == len(heads) == 300
    assert set(heads) == {1}
    assert result.left_out > 0  # the draws (random) or children (NSGA-II) dropped, said in a note


def test_a_random_search_takes_every_candidate_that_can_exist_then_stops(tmp_path: Path) -> None:
    """A budget over the space: the 528 configurations with the model's KV heads, each once, and
    the 1,056 others left out (every configuration is either drawn or listed once)."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = run_search(json.loads(json.dumps(PALM)), url, trials=2000)
    heads = _kv_heads(url)
    assert (result.trials_added, result.exhausted, result.left_out) == (528, True, 1056)
    assert set(heads) == {1} and len(set(_flat(url, PALM))) == 528


def test_an_nsga2_search_asked_for_more_than_the_space_ends_exhausted(tmp_path: Path) -> None:
    """NSGA-II asked for more trials than the space holds: each repaired child holds its invalid
    proposal too, so the space's configurations run out before its valid ones are all stored, and
    the last children that cannot exist had nothing left to be replaced with: distinct.replacement
    raised ValueError ("every configuration of the space is held"; qwen3-235b-moe-gb200, 20,736
    configurations, 30,000 trials asked, bench/bench_trials_per_s.py). Now those are dropped and
    the search ends exhausted, every stored trial distinct."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = run_search(json.loads(json.dumps(PALM)), url, trials=2000, sampler="nsga2")
    stored = _flat(url, PALM)
    assert result.exhausted and result.trials_added == len(stored) == len(set(stored))
    assert 0 < len(stored) <= 1584


def test_worker_json_says_how_many_it_left_out(tmp_path: Path, capsys) -> None:
    """tuner worker draws as search does and says so in --json as search does (``left_out``
    was search's alone)."""
    spec = tmp_path / "kv.yaml"
    spec.write_text(json.dumps(PALM))  # JSON is YAML
    url = f"sqlite:///{tmp_path / 's.db'}"
    code, out, err = run_cli(capsys, "worker", str(spec), "--storage", url, "--trials", "100", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["trials_added"] == 100 and summary["left_out"] > 0
    assert set(_kv_heads(url)) == {1}


def test_a_resumed_random_search_continues_the_same_stream_without_repeats(tmp_path: Path) -> None:
    """Split by resumes (130, then 300, then 420) or batched by 7: the same trials as one run,
    none repeated, none that cannot exist; another seed, other trials."""
    urls = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(4)]
    run_search(json.loads(json.dumps(PALM)), urls[0], trials=420, seed=3)
    run_search(json.loads(json.dumps(PALM)), urls[1], trials=420, seed=3, batch_size=7)
    for trials in (130, 300, 420):
        run_search(json.loads(json.dumps(PALM)), urls[2], trials=trials, seed=3)
    run_search(json.loads(json.dumps(PALM)), urls[3], trials=420, seed=4)
    first = _flat(urls[0], PALM)
    assert len(set(first)) == 420 and set(_kv_heads(urls[2])) == {1}
    assert _flat(urls[1], PALM) == first and _flat(urls[2], PALM) == first
    assert _flat(urls[3], PALM) != first


def test_a_resume_of_a_study_holding_invalid_trials_stores_only_new_valid_ones(tmp_path: Path) -> None:
    """A study stored before 2026-12-06 holds trials that cannot exist: a random resume counts
    them in the budget (they are trials of the study) and adds only new ones that can."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_search(json.loads(json.dumps(PALM)), url, trials=100, sampler="tpe", seed=1)
    before = _flat(url, PALM)
    invalid_before = sum(h != 1 for h in _kv_heads(url))
    assert invalid_before > 0  # TPE stores them
    result = run_search(json.loads(json.dumps(PALM)), url, trials=400)
    after = _flat(url, PALM)
    assert result.trials_added == 300 and len(after) == len(set(after)) == 400
    assert after[:100] == before and sum(h != 1 for h in _kv_heads(url)) == invalid_before


def test_a_space_none_of_whose_candidates_can_exist_ends_with_the_left_out_note(tmp_path: Path, capsys) -> None:
    """As the exhaustive sampler ends (exit 0, nothing stored, a note that says how many were
    left out and why), where the random search stored both configurations as infeasible trials."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(NONE_EXIST))  # JSON is YAML
    url = f"sqlite:///{tmp_path / 's.db'}"
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["trials_added"], data["exhausted"], data["left_out"]) == (0, True, 2)
    assert any(note.startswith("2 of the space's 2 configurations were left out") for note in data["notes"])
    assert "every configuration of the space that can exist" in err


def test_a_space_too_large_to_list_with_none_that_can_exist_is_refused(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rejection draws would never end there: after BARREN draws in a row that cannot exist the
    search stops with one line naming the space, exit 2 (a space of 256 made unlistable here)."""
    monkeypatch.setattr(DistinctFlatDraws, "LISTABLE", 0)
    monkeypatch.setattr(DistinctFlatDraws, "BARREN", 100)
    data = json.loads(json.dumps(NONE_EXIST))
    data["space"]["batch"] = list(range(1, 257))
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(data))
    url = f"sqlite:///{tmp_path / 's.db'}"
    line = assert_one_error_line(*run_cli(capsys, "search", str(spec), "--storage", url), ("space",))
    assert "can exist" in line


def _draws(size: int, seed: int, valid) -> DistinctFlatDraws:
    return DistinctFlatDraws(size, seed, np.zeros(0, dtype=np.int64), valid)


def test_flat_draws_take_only_valid_ones_however_they_are_taken() -> None:
    """Every third index of 50,000 can exist (a rule written here, not the study's): taken one at
    a time or all at once (across the listing at 1/8 of the space), the same stream of distinct
    valid indices, each of the 16,667 once, and the 33,333 others counted as left out."""

    def valid(flat: np.ndarray) -> np.ndarray:
        return flat % 3 == 0

    size = 50_000
    whole = _draws(size, 5, valid).take(size)
    one_by_one = _draws(size, 5, valid)
    parts = [one_by_one.take(1) for _ in range(17_000)]
    uneven = _draws(size, 5, valid)
    pieces = [uneven.take(n) for n in (1, 4095, 4097, 3, 10_000, 20_000)]
    assert len(whole) == 16_667 and set(whole.tolist()) == set(range(0, size, 3))
    assert np.concatenate(parts).tolist() == whole.tolist() == np.concatenate(pieces).tolist()
    assert one_by_one.left_out == uneven.left_out == 33_333 and one_by_one.unseen == 0


def test_flat_draws_without_invalid_ones_keep_the_stream_of_no_check() -> None:
    """A space where everything can exist draws exactly what it drew without ``valid``."""
    plain = DistinctFlatDraws(30_000, 9, np.zeros(0, dtype=np.int64)).take(30_000)
    checked = _draws(30_000, 9, lambda flat: np.ones(len(flat), dtype=bool)).take(30_000)
    assert plain.tolist() == checked.tolist()


def test_flat_draws_of_an_unlistable_space_with_none_valid_raise() -> None:
    draws = DistinctFlatDraws(DistinctFlatDraws.LISTABLE + 1, 0, np.zeros(0, dtype=np.int64))
    draws._valid = lambda flat: np.zeros(len(flat), dtype=bool)
    with pytest.raises(InvalidInputError, match="can exist") as info:
        draws.take(10)
    assert info.value.field == "space"
