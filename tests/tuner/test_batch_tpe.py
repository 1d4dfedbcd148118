"""TPE fitted once per batch (tuner.optuna_internals.BatchTPESampler) samples exactly what
Optuna's TPESampler (no constant liar) samples: within a batch of asks no trial completes, so
Optuna fits the same estimators on every ask of it."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution

from tuner.optuna_internals import BatchTPESampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {f"p{i}": CategoricalDistribution(list(range(6))) for i in range(4)}


def _history(sampler: optuna.samplers.BaseSampler) -> list[tuple]:
    """Batches of 16 asked, then told (as tuner.study does), two objectives and a constraint."""
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for _ in range(8):
        asked = [study.ask(SPACE) for _ in range(16)]
        for trial in asked:
            p = trial.params
            trial.set_constraint("c", float(p["p3"] - 4))
            study.tell(trial, [float(p["p0"] + p["p1"]), float((p["p0"] - 3) ** 2 + p["p2"])])
    return [tuple(t.params.values()) for t in study.trials]


def test_same_samples_as_optunas_tpe() -> None:
    ours = _history(BatchTPESampler(seed=4, multivariate=True, constant_liar=False, n_startup_trials=16))
    theirs = _history(optuna.samplers.TPESampler(seed=4, multivariate=True, constant_liar=False, n_startup_trials=16))
    assert ours == theirs
    assert len(set(ours[16:])) > 10  # past the random start-up, TPE's own samples, not one repeated


def test_the_fit_is_reused_within_a_batch_and_renewed_after_it() -> None:
    sampler = BatchTPESampler(seed=0, multivariate=True, constant_liar=False, n_startup_trials=4)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for _ in range(4):
        trial = study.ask(SPACE)
        study.tell(trial, [float(trial.params["p0"]), float(trial.params["p1"])])
    study.ask(SPACE)
    first = sampler._tuner_fitted
    study.ask(SPACE)
    assert sampler._tuner_fitted is first  # the second ask of the batch: no new fit
    study.tell(study.ask(SPACE), [0.0, 0.0])
    study.ask(SPACE)
    assert sampler._tuner_fitted is not first and sampler._tuner_fitted[0][0] == 5
