"""Optuna's NSGA-II, with the bookkeeping that grows with the study made incremental.

``NSGAIISampler`` finds a new trial's generation by scanning every completed trial, and its cached
parent population by scanning every trial, on each ask: O(n) per trial, O(n^2) per study, which
at tens of thousands of trials costs more than sampling itself. This subclass keeps the same
answers in memory, updating them only with the trials completed since the last ask. Samples are
identical to the parent class's for the same seed (tests/test_samplers.py).
"""

from __future__ import annotations

from optuna import Study
from optuna.samplers import NSGAIISampler
from optuna.trial import FrozenTrial, TrialState


class IncrementalNSGAIISampler(NSGAIISampler):
    """NSGA-II (Deb et al. 2002) as Optuna implements it, with O(1) amortized bookkeeping."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        # study id -> (completed trials seen, highest generation, trials in it)
        self._generations: dict[int, tuple[int, int, int]] = {}
        self._parents: dict[tuple[int, int], list[FrozenTrial]] = {}

    def get_trial_generation(self, study: Study, trial: FrozenTrial) -> int:
        key = self._get_generation_key()
        generation = trial.system_attrs.get(key, None)
        if generation is not None:
            return generation
        trials = study._get_trials(deepcopy=False, states=[TrialState.COMPLETE], use_cache=True)
        seen, highest, count = self._generations.get(study._study_id, (0, 0, 0))
        if seen > len(trials) or (seen and trials[seen - 1].number != self._last_number.get(study._study_id)):
            seen, highest, count = 0, 0, 0  # the study changed under us: count again
        for t in trials[seen:]:
            g = t.system_attrs.get(key, -1)
            if g > highest:
                highest, count = g, 1
            elif g == highest:
                count += 1
        self._generations[study._study_id] = (len(trials), highest, count)
        self._last_number[study._study_id] = trials[-1].number if trials else None
        assert self._population_size is not None
        generation = highest if count < self._population_size else highest + 1
        study._storage.set_trial_system_attr(trial._trial_id, key, generation)
        return generation

    def get_parent_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        cached = self._parents.get((study._study_id, generation))
        if cached is not None:
            return cached
        population = super().get_parent_population(study, generation)
        # Later calls of the parent class return the cached population in trial order (it
        # filters all trials by id); keep that order so samples match it exactly.
        self._parents[(study._study_id, generation)] = sorted(population, key=lambda t: t._trial_id)
        return population

    @property
    def _last_number(self) -> dict[int, int | None]:
        if not hasattr(self, "_last_numbers"):
            self._last_numbers: dict[int, int | None] = {}
        return self._last_numbers
