"""The incremental NSGA-II must sample exactly what Optuna's NSGA-II samples."""

from __future__ import annotations

import optuna
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
