"""Optuna's NSGA-II, with the bookkeeping that grows with the study made incremental.

``NSGAIISampler`` finds a new trial's generation by scanning every completed trial, and its cached
parent population by scanning every trial, on each ask: O(n) per trial, O(n^2) per study, which
at tens of thousands of trials costs more than sampling itself. This subclass keeps the same
answers in memory: the generation tally is counted once, then updated as each trial completes. Samples are
identical to the parent class's for the same seed (tests/test_samplers.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from optuna import Study
from optuna.samplers import NSGAIISampler
from optuna.trial import FrozenTrial, TrialState


class IncrementalNSGAIISampler(NSGAIISampler):
    """NSGA-II (Deb et al. 2002) as Optuna implements it, with O(1) amortized bookkeeping."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        # study id -> (highest generation among completed trials, completed trials in it)
        self._generations: dict[int, tuple[int, int]] = {}
        self._parents: dict[tuple[int, int], list[FrozenTrial]] = {}

    def get_trial_generation(self, study: Study, trial: FrozenTrial) -> int:
        key = self._get_generation_key()
        generation = trial.system_attrs.get(key, None)
        if generation is not None:
            return generation
        if study._study_id not in self._generations:  # first ask (or a resumed study): count once
            highest, count = 0, 0
            for t in study._get_trials(deepcopy=False, states=[TrialState.COMPLETE], use_cache=True):
                highest, count = _tally(t.system_attrs.get(key, -1), highest, count)
            self._generations[study._study_id] = (highest, count)
        highest, count = self._generations[study._study_id]
        assert self._population_size is not None
        generation = highest if count < self._population_size else highest + 1
        study._storage.set_trial_system_attr(trial._trial_id, key, generation)
        return generation

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        super().after_trial(study, trial, state, values)
        # Keep the tally of completed trials per generation current, instead of recounting it.
        if state == TrialState.COMPLETE and study._study_id in self._generations:
            highest, count = self._generations[study._study_id]
            generation = trial.system_attrs.get(self._get_generation_key(), -1)
            self._generations[study._study_id] = _tally(generation, highest, count)

    def get_parent_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        cached = self._parents.get((study._study_id, generation))
        if cached is not None:
            return cached
        population = super().get_parent_population(study, generation)
        # Later calls of the parent class return the cached population in trial order (it
        # filters all trials by id); keep that order so samples match it exactly.
        self._parents[(study._study_id, generation)] = sorted(population, key=lambda t: t._trial_id)
        return population


def _tally(generation: int, highest: int, count: int) -> tuple[int, int]:
    """Highest generation among completed trials, and how many completed trials it has."""
    if generation > highest:
        return generation, 1
    if generation == highest:
        return highest, count + 1
    return highest, count
