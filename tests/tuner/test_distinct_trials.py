"""A sampled study never spends a trial on a configuration it already holds (tuner/distinct.py).

What is guaranteed: one process (``tuner search``, or one ``tuner worker``) never adds a
configuration that the study held when it started or that it added itself, while unseen ones
remain; when none remains it stops early and says so. Workers running at the same time do not see
each other's new trials, so two of them may add the same configuration (a race the budget bounds);
a worker started after another has finished does not repeat it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from cli_helpers import run_cli
from search_spaces.space import compile_study
from search_spaces.spec import parse_spec
from tuner import compact
from tuner.distinct import DistinctConfigurations
from tuner.pareto import load_study
from tuner.study import run_search, run_worker

# 1 mesh x 4 batches x 2 decode layouts x 3 weight formats x 2 KV formats = 48 configurations.
SPEC = {
    "name": "distinct",
    "model": "llama-3-8b",
    "hardware": "l4",
    "workload": {"prompt_len": 512, "gen_len": 64},
    "space": {
        "chips": [1],
        "batch": [1, 8, 32, 64],
        "weight_bits": [16, 8, 4],
        "kv_bits": [16, 8],
        "decode_ffn_layout": ["ws_1d", "ws_2d"],
    },
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "sampler": "nsga2",
    "seed": 0,
    "trials": 48,
}
SIZE = 48


def _configs(url: str) -> list[tuple]:
    study = load_study(SPEC["name"], url)
    return [tuple(sorted(t.params.items())) for t in sorted(study.trials, key=lambda t: t.number)]


def test_the_space_has_48_configurations() -> None:
    assert compile_study(parse_spec(SPEC)).space.size == SIZE


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
def test_a_budget_the_size_of_the_space_covers_it(tmp_path: Path, sampler: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_search(SPEC, url, trials=SIZE, sampler=sampler)
    configs = _configs(url)
    assert result.trials_added == len(configs) == len(set(configs)) == SIZE
    assert not result.exhausted  # the budget ran out with the space, not before


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
def test_a_larger_budget_stops_when_the_space_is_exhausted(tmp_path: Path, sampler: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_search(SPEC, url, trials=100, sampler=sampler)
    configs = _configs(url)
    assert result.exhausted and result.trials_added == len(configs) == len(set(configs)) == SIZE
    again = run_search(SPEC, url, trials=100, sampler=sampler)  # nothing left to add
    assert again.exhausted and again.trials_added == 0


def test_the_trial_told_carries_the_params_evaluated(tmp_path: Path) -> None:
    """A replaced proposal is stored with the replacement's params, estimate and deployment."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_search(SPEC, url, trials=SIZE, sampler="nsga2")
    study = load_study(SPEC["name"], url)
    for trial in study.trials:
        assert trial.user_attrs["deployment"]["batch"] == trial.params["batch"]
        assert "fixed_params" not in trial.system_attrs


@pytest.mark.parametrize("sampler", ["nsga2", "random"])
def test_a_resumed_study_does_not_repeat_its_first_run(tmp_path: Path, sampler: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_search(SPEC, url, trials=20, sampler=sampler)
    first = set(_configs(url))
    run_search(SPEC, url, trials=40, sampler=sampler)
    configs = _configs(url)
    assert len(configs) == len(set(configs)) == 40 and first <= set(configs[:20])


def test_a_worker_started_after_another_does_not_repeat_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert run_worker(SPEC, url, share=24, seed=1).trials_added == 24
    assert run_worker(SPEC, url, share=24, seed=2).trials_added == 24
    configs = _configs(url)
    assert len(configs) == len(set(configs)) == SIZE


def _flat(url: str, spec: dict) -> list[int]:
    space = compile_study(parse_spec(spec)).space
    params = [dict(c) for c in _configs(url)]
    sizes = [len(c) for c in space.dimensions.values()]
    return compact.flat_indices(space.indices_of(params), sizes).tolist()


def test_random_search_is_the_seeded_stream_of_distinct_uniform_draws(tmp_path: Path) -> None:
    """A compact study's random search draws flat configuration indices from numpy's
    ``default_rng(seed)`` in blocks of 4,096, keeping each one's first occurrence
    (tuner.samplers.DistinctFlatDraws): written out here with numpy alone."""
    spec = {**SPEC, "space": {**SPEC["space"], "batch": list(range(1, 257))}}
    size = compile_study(parse_spec(spec)).space.size
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_search(spec, url, trials=300, sampler="random", seed=7)
    block = np.random.default_rng(7).integers(0, size, size=4096, dtype=np.int64)
    expected = list(dict.fromkeys(block.tolist()))[:300]
    assert _flat(url, spec) == expected


def test_random_search_depends_on_the_seed_only(tmp_path: Path) -> None:
    """Same seed, same trials, whatever the batch size and however a run is split by resumes;
    another seed, other trials."""
    spec = {**SPEC, "space": {**SPEC["space"], "batch": list(range(1, 257))}}
    urls = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(4)]
    run_search(spec, urls[0], trials=500, sampler="random", seed=3)
    run_search(spec, urls[1], trials=500, sampler="random", seed=3, batch_size=7)
    run_search(spec, urls[2], trials=130, sampler="random", seed=3)
    run_search(spec, urls[2], trials=500, sampler="random", seed=3)
    run_search(spec, urls[3], trials=500, sampler="random", seed=4)
    first = _flat(urls[0], spec)
    assert len(set(first)) == 500
    assert _flat(urls[1], spec) == first and _flat(urls[2], spec) == first
    assert len(set(_flat(urls[3], spec)) & set(first)) < 100  # 500 of 6,144: about 41 in common by chance


def test_random_search_covers_each_dimension_uniformly(tmp_path: Path) -> None:
    """Each dimension's choices are drawn equally often (chi-squared test at 0.1 %), as Optuna's
    RandomSampler draws them, and the configurations are distinct."""
    spec = {**SPEC, "space": {**SPEC["space"], "batch": list(range(1, 257))}}
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_search(spec, url, trials=1500, sampler="random", seed=11)
    configs = [dict(c) for c in _configs(url)]
    assert len({tuple(sorted(c.items())) for c in configs}) == 1500
    for name, choices in compile_study(parse_spec(spec)).space.dimensions.items():
        if len(choices) > 1:
            counts = [sum(c[name] == choice for c in configs) for choice in choices]
            assert scipy.stats.chisquare(counts).pvalue > 1e-3, (name, counts)


def test_replacements_are_unseen_until_the_space_is_full() -> None:
    dims = {"a": (0, 1, 2), "b": ("x", "y"), "c": (True,)}
    distinct = DistinctConfigurations(dims, seed=0)
    assert distinct.size == 6 and distinct.key({"a": 2, "b": "y", "c": True}) == (2, 1, 0)
    distinct.add((0, 0, 0))
    while not distinct.exhausted:
        new = distinct.replacement((0, 0, 0))
        assert new not in distinct
        distinct.add(new)
    assert len(distinct) == 6 and distinct.redrawn == 5
    with pytest.raises(ValueError, match="every configuration"):
        distinct.replacement((0, 0, 0))


def test_the_cli_says_when_the_space_is_exhausted(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(SPEC))  # JSON is YAML
    url = f"sqlite:///{tmp_path / 'study.db'}"
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url, "--trials", "100", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["trials_added"], data["exhausted"]) == (SIZE, True)
    assert "holds every configuration of the space" in err


def test_held_configurations_and_added_keys_are_one_set() -> None:
    """add_flat keeps the held configurations as sorted flat indices, add keeps a set: together
    they answer as one set of keys (a reference set of tuples made with numpy's unravel_index)."""
    dims = {"a": tuple(range(7)), "b": ("x", "y", "z"), "c": (1, 2, 4, 8, 16)}
    distinct = DistinctConfigurations(dims, seed=3)
    rng = np.random.default_rng(5)
    early = [tuple(int(v) for v in rng.integers((7, 3, 5))) for _ in range(6)]
    for key in early:
        distinct.add(key)
    held = rng.integers(0, 105, size=60)  # repeats, and some of the keys added before
    # (1, 2, 0) is flat 25, what the out-of-range (0, 5, 0) would compute to.
    held = np.concatenate([held, [np.ravel_multi_index(early[0], (7, 3, 5)), 25]])
    distinct.add_flat(held)
    reference = set(early) | set(zip(*(c.tolist() for c in np.unravel_index(held, (7, 3, 5))), strict=True))
    later = [tuple(int(v) for v in rng.integers((7, 3, 5))) for _ in range(20)]
    for key in later:  # some already held: counted once
        distinct.add(key)
        reference.add(key)
    every = [(a, b, c) for a in range(7) for b in range(3) for c in range(5)]
    assert [key in distinct for key in every] == [key in reference for key in every]
    assert len(distinct) == len(reference) and distinct.unseen == 105 - len(reference)
    assert (9, 0, 0) not in distinct and (0, 5, 0) not in distinct and "x" not in distinct  # not keys of this space
    while not distinct.exhausted:  # replacements: unseen ones until the space is full
        new = distinct.replacement(every[0])
        assert new not in reference
        reference.add(new)
        distinct.add(new)
    assert reference == set(every)
