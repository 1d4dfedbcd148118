"""The incremental NSGA-II must sample exactly what Optuna's NSGA-II samples."""

from __future__ import annotations

import inspect
import sys

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.samplers import NSGAIISampler

from tuner.samplers import IncrementalNSGAIISampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _history(sampler: optuna.samplers.BaseSampler, trials: int = 600) -> list[tuple]:
    """Ask in batches of 50 then tell them, as tuner.study does, with one constraint."""
    space = {f"p{i}": CategoricalDistribution(list(range(7))) for i in range(6)}
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for _ in range(trials // 50):
        asked = [study.ask(space) for _ in range(50)]
        for trial in asked:
            trial.set_constraint("c", float(trial.params["p1"] - 3))
            study.tell(trial, [sum(trial.params.values()), -trial.params["p0"] * trial.params["p2"]])
    key = sampler._get_generation_key()
    return [(t.number, t.system_attrs.get(key), tuple(t.params.values())) for t in study.trials]


def test_same_samples_and_generations_as_optuna():
    assert _history(IncrementalNSGAIISampler(seed=3)) == _history(NSGAIISampler(seed=3))


def test_several_generations_were_exercised():
    history = _history(IncrementalNSGAIISampler(seed=3))
    assert max(generation for _, generation, _ in history) >= 10


def _resumed_study(sampler: optuna.samplers.BaseSampler, generations: int, population: int) -> optuna.Study:
    """A study as a resume builds it (``tuner.study``: stored trials added to a fresh in-memory
    study, no cached parents), ``generations`` generations of ``population`` trials each."""
    rng = np.random.default_rng(0)
    space = {f"p{i}": CategoricalDistribution(list(range(7))) for i in range(3)}
    key = sampler._get_generation_key()  # "<class name>:generation": each class its own
    trials = []
    for generation in range(generations):
        for _ in range(population):
            params = {name: int(rng.integers(7)) for name in space}
            trials.append(
                optuna.trial.create_trial(
                    params=params,
                    distributions=space,
                    values=[float(sum(params.values())), float(-params["p0"] * params["p2"])],
                    system_attrs={key: generation},
                )
            )
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.add_trials(trials)
    return study


def _next_params(sampler: optuna.samplers.BaseSampler, generations: int, population: int) -> dict:
    study = _resumed_study(sampler, generations, population)
    space = {f"p{i}": CategoricalDistribution(list(range(7))) for i in range(3)}
    return study.ask(space).params


def test_resuming_many_generations_needs_no_recursion():
    """Optuna's NSGA-II recursed once per generation on resume (RecursionError near 20,000
    trials); 2,000 generations of 4 resume here under a recursion limit of 150 frames above the
    test's own. Optuna's sampler fails the same check, so the check is a real one."""
    depth = len(inspect.stack())
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 150)
    try:
        with pytest.raises(RecursionError):
            _next_params(NSGAIISampler(seed=1, population_size=4), 2_000, 4)
        params = _next_params(IncrementalNSGAIISampler(seed=1, population_size=4), 2_000, 4)
    finally:
        sys.setrecursionlimit(previous)
    assert set(params) == {"p0", "p1", "p2"}


def test_resumed_samples_match_optunas_where_its_recursion_fits():
    for generations in (1, 2, 30):
        ours = _next_params(IncrementalNSGAIISampler(seed=5, population_size=6), generations, 6)
        assert ours == _next_params(NSGAIISampler(seed=5, population_size=6), generations, 6)
