"""Optuna's NSGA-II, with the bookkeeping that grows with the study made incremental.

``NSGAIISampler`` finds a new trial's generation by scanning every completed trial, and its cached
parent population by scanning every trial, on each ask: O(n) per trial, O(n^2) per study, which
at tens of thousands of trials costs more than sampling itself. This subclass keeps the same
answers in memory: the generation tally is counted once, then updated as each trial completes. Samples are
identical to the parent class's for the same seed (tests/tuner/test_samplers.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna import Study
from optuna.samplers import NSGAIISampler
from optuna.trial import FrozenTrial, TrialState

from tuner.optuna_internals import ga_generation_key, set_trial_system_attr


class IncrementalNSGAIISampler(NSGAIISampler):
    """NSGA-II (Deb et al. 2002) as Optuna implements it, with O(1) amortized bookkeeping."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # study -> (highest generation among completed trials, completed trials in it)
        self._generations: dict[str, tuple[int, int]] = {}
        self._parents: dict[tuple[str, int], list[FrozenTrial]] = {}

    def get_trial_generation(self, study: Study, trial: FrozenTrial) -> int:
        key = ga_generation_key(self)
        generation = trial.system_attrs.get(key, None)
        if generation is not None:
            return generation
        # A study name is unique in its storage, and a sampler serves one study at a time.
        if study.study_name not in self._generations:  # first ask (or a resumed study): count once
            highest, count = 0, 0
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                highest, count = _tally(t.system_attrs.get(key, -1), highest, count)
            self._generations[study.study_name] = (highest, count)
        highest, count = self._generations[study.study_name]
        if self.population_size is None:
            raise ValueError("NSGA-II needs a population size")
        generation = highest if count < self.population_size else highest + 1
        set_trial_system_attr(study, trial, key, generation)
        return generation

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        super().after_trial(study, trial, state, values)
        # Keep the tally of completed trials per generation current, instead of recounting it.
        if state == TrialState.COMPLETE and study.study_name in self._generations:
            highest, count = self._generations[study.study_name]
            generation = trial.system_attrs.get(ga_generation_key(self), -1)
            self._generations[study.study_name] = _tally(generation, highest, count)

    def get_parent_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        cached = self._parents.get((study.study_name, generation))
        if cached is not None:
            return cached
        population = super().get_parent_population(study, generation)
        # Later calls of the parent class return the cached population in trial order (it
        # filters all trials, which come in number order); keep that order so samples match it.
        self._parents[(study.study_name, generation)] = sorted(population, key=lambda t: t.number)
        return population


def _tally(generation: int, highest: int, count: int) -> tuple[int, int]:
    """Highest generation among completed trials, and how many completed trials it has."""
    if generation > highest:
        return generation, 1
    if generation == highest:
        return highest, count + 1
    return highest, count
