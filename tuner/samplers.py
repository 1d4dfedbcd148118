"""Optuna's NSGA-II, with the bookkeeping that grows with the study made incremental.

``NSGAIISampler`` finds a new trial's generation by scanning every completed trial, and its cached
parent population by scanning every trial, on each ask: O(n) per trial, O(n^2) per study, which
at tens of thousands of trials costs more than sampling itself. This subclass keeps the same
answers in memory: the generation tally is counted once, then updated as each trial completes. Samples are
identical to the parent class's for the same seed (tests/tuner/test_samplers.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from optuna import Study
from optuna.samplers import NSGAIISampler
from optuna.trial import FrozenTrial, TrialState

from cost_models.errors import InvalidInputError
from tuner.compact import sorted_unique
from tuner.optuna_internals import ga_generation_key, set_trial_system_attr


class IncrementalNSGAIISampler(NSGAIISampler):
    """NSGA-II (Deb et al. 2002) as Optuna implements it, with O(1) amortized bookkeeping."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # study -> (highest generation among completed trials, completed trials in it)
        self._generations: dict[str, tuple[int, int]] = {}
        self._parents: dict[tuple[str, int], list[FrozenTrial]] = {}
        # generation -> its completed trials, while get_parent_population walks the generations
        self._walk_populations: dict[int, list[FrozenTrial]] | None = None

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
        """The parents of ``generation``, computed generation by generation from the oldest one
        not yet known.

        Optuna's ``get_parent_population`` and ``select_parent`` call each other once per
        generation down to the first cached one: resuming a study (whose in-memory copy has no
        cached parents) recursed once per generation and died with ``RecursionError`` at about
        20,000 trials. Here the generations are walked upwards in a loop, each one's population
        grouped in one pass over the completed trials, and every parent population is kept, so
        a resume costs one pass plus one elite selection per generation, and later asks nothing.
        """
        if generation <= 0:
            return []
        name = study.study_name
        cached = self._parents.get((name, generation))
        if cached is not None:
            return cached
        known = max((g for (n, g) in self._parents if n == name and g < generation), default=0)
        if generation - known > 1:  # a resume: group the populations of the generations to walk
            # (a running search asks for one new generation at a time, which Optuna's own
            # generation cache serves without the pass)
            key = ga_generation_key(self)
            self._walk_populations = {g: [] for g in range(known, generation)}
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):  # in trial order
                members = self._walk_populations.get(t.system_attrs.get(key, -1))
                if members is not None:
                    members.append(t)
        try:
            population: list[FrozenTrial] = []
            for g in range(known + 1, generation + 1):
                # select_parent(g) reads get_population(g - 1) (served from the pass above) and
                # get_parent_population(g - 1) (just cached, so no recursion).
                population = self.select_parent(study, g)
                # Later reads of a cached population come in trial order in the parent class
                # (it filters all trials, which come in number order); keep that order.
                self._parents[(name, g)] = sorted(population, key=lambda t: t.number)
        finally:
            self._walk_populations = None
        return population

    def get_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        if self._walk_populations is not None and generation in self._walk_populations:
            return self._walk_populations[generation]
        return super().get_population(study, generation)


def _tally(generation: int, highest: int, count: int) -> tuple[int, int]:
    """Highest generation among completed trials, and how many completed trials it has."""
    if generation > highest:
        return generation, 1
    if generation == highest:
        return highest, count + 1
    return highest, count


class DistinctFlatDraws:
    """Random search over a finite product space without Optuna's per-trial ask and tell: flat
    configuration indices (:mod:`tuner.compact`) drawn uniformly with a seeded numpy ``Generator``,
    skipping those the study held at the start or this search drew already.

    Optuna's ``RandomSampler`` over categorical dimensions draws each dimension independently and
    uniformly, i.e. the flat index uniformly over the product; a study never stores a repeat
    (:mod:`tuner.distinct`), so what it keeps is a uniform draw *without replacement*, which is
    what this is. Draws come from one stream (blocks of :data:`BLOCK` indices, repeats and held
    ones dropped in stream order), so the configurations depend only on the seed and on what the
    study held at the start, not on how many are taken at a time; a resume with the same seed
    skips what its first run stored and continues with the stream's next ones. Once few unseen
    configurations are left (:data:`LIST_BELOW` of the space), they are listed and taken in a
    seeded random order, instead of drawn by rejection (a nearly full space would take ever more
    draws per new one).

    ``valid`` (flat indices -> mask; the study's ``structurally_valid``) keeps what is taken to
    configurations that can exist: each block is checked once as drawn (one vectorized call per
    4,096 draws), and a drawn configuration that cannot exist is counted (:attr:`left_out`) and
    marked seen, never taken, so ``take(n)`` gives n candidates that can exist. Before, a
    Mixtral-8x7B ``mode: both`` study on H100s stored 181 such trials of 400 (aggregated
    candidates with pool choices other than the first). The listing keeps only the valid unseen
    ones too, so a space whose candidates all cannot exist runs out (``unseen`` 0, nothing taken)
    instead of drawing forever; one too large to list raises after :attr:`BARREN` draws in a row
    that cannot exist. On a space where every configuration can exist the stream is the one
    without ``valid``.
    """

    BLOCK = 4096
    LIST_BELOW = 0.125
    #: Spaces up to this size may be listed (an int64 each): never reached by larger ones in practice.
    LISTABLE = 20_000_000
    #: Distinct draws in a row that cannot exist after which a space too large to list is refused
    #: (a valid share under about 1 in a million: none found, the search would draw forever).
    BARREN = 1 << 20
    #: Configurations checked per ``valid`` call when the unseen ones are listed (bounded memory).
    CHECK_PART = 1 << 20

    def __init__(
        self, size: int, seed: int, held: np.ndarray, valid: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        self.size = int(size)
        self._draw_rng = np.random.default_rng(seed)
        self._seen = sorted_unique(held)  # np.unique hashes first: 40x slower at 200,000
        self._buffer = np.zeros(0, dtype=np.int64)  # drawn, not yet taken, in stream order
        self._listed: np.ndarray | None = None  # the unseen ones in random order, once listed
        self._list_at = int(self.LIST_BELOW * self.size) if self.size <= self.LISTABLE else -1
        self._valid = valid
        self.left_out = 0  # configurations drawn (or listed) that cannot exist, never taken
        self._barren = 0  # distinct new draws in a row that cannot exist

    @property
    def unseen(self) -> int:
        return self.size - len(self._seen)

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` distinct unseen flat indices (fewer when the space runs out)."""
        out: list[np.ndarray] = []
        wanted = min(int(count), self.unseen)
        while wanted > 0:
            if self._listed is None and self.unseen <= self._list_at:
                every = np.arange(self.size, dtype=np.int64)
                self._listed = self._draw_rng.permutation(self._keep_valid(every[~_member(every, self._seen)]))
                wanted = min(wanted, self.unseen)
                if not wanted:
                    break
            if self._listed is not None:
                part, self._listed = self._listed[:wanted], self._listed[wanted:]
            else:
                if not len(self._buffer):
                    block = self._draw_rng.integers(0, self.size, size=self.BLOCK, dtype=np.int64)
                    _, first = np.unique(block, return_index=True)  # a repeat within the block: first kept
                    self._buffer = self._keep_valid(block[np.sort(first)], drawn=True)
                    wanted = min(wanted, self.unseen)
                fresh = self._buffer[~_member(self._buffer, self._seen)]
                # Stop where the listing starts, so that it starts at the same draw however the
                # configurations are taken (a block's left-out ones may pass it at once: none taken).
                n = max(0, min(wanted, self.unseen - self._list_at)) if self._list_at >= 0 else wanted
                part, self._buffer = fresh[:n], fresh[n:]
            self._seen = sorted_unique(np.concatenate([self._seen, part]))  # np.union1d, without the hashing
            out.append(part)
            wanted -= len(part)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def _keep_valid(self, flat: np.ndarray, drawn: bool = False) -> np.ndarray:
        """``flat`` (distinct) without the configurations that cannot exist, which are marked
        seen and counted in :attr:`left_out`; ``drawn``: a block of the stream, whose run of
        draws that cannot exist is counted towards :attr:`BARREN`."""
        if self._valid is None or not len(flat):
            return flat
        keep = np.concatenate(
            [self._valid(flat[i : i + self.CHECK_PART]) for i in range(0, len(flat), self.CHECK_PART)]
        )
        dropped = flat[~keep]
        dropped = dropped[~_member(dropped, self._seen)]
        if len(dropped):
            self.left_out += len(dropped)
            self._seen = sorted_unique(np.concatenate([self._seen, dropped]))
        if drawn and self._list_at < 0:
            where = np.flatnonzero(keep)
            self._barren = len(flat) - 1 - int(where[-1]) if len(where) else self._barren + len(flat)
            if not len(where) and self._barren >= self.BARREN:
                raise InvalidInputError(
                    "space",
                    f"none of {self._barren:,} random draws in a row of its {self.size:,} configurations can exist "
                    "(search_spaces.space.structurally_valid)",
                    "widen the choices that cannot combine (tuner estimate with one draw's degrees says why)",
                )
        return flat[keep]


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in the sorted array ``sorted_set``."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    where = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[where] == values


class GenerationalNSGAII:
    """NSGA-II (Deb et al. 2002) one generation at a time, with Optuna's own operators.

    ``NSGAIISampler`` produces one child per ``Study.ask`` through the study's storage (each ask
    and tell copies trials: about 3 ms a trial in a 30,000-trial study, most of a search's time).
    Here a whole generation is produced at once: the parents of generation g are Optuna's elite
    selection (non-domination rank under its constrained domination, then crowding distance) of
    generation g - 1 and its parents, exactly as ``NSGAIISampler.select_parent`` forms them, and
    each child comes from Optuna's child generation (binary tournament, uniform crossover with
    swapping probability 0.5 at crossover probability 0.9, each dimension mutated with probability
    1 / dimensions), both taken from an ``NSGAIISampler(seed=seed)``
    (:func:`tuner.optuna_internals.nsga2_operators`). A mutated dimension, and every dimension of
    the first generation, is drawn uniformly (Optuna's ``RandomSampler``), from this class's own
    seeded numpy ``Generator``. Configurations are choice-index rows, one column per dimension in
    the space's order; dimensions with a single choice are not sampled (Optuna leaves them out of
    its relative search space too).

    A resumed search starts from the parents the interrupted run would have used next, when its
    study kept them (:meth:`elite_positions` at each write, :meth:`restore_parents` on resume:
    ``tuner.study._nsga2_compact``), told the configurations stored after them
    (:meth:`seed_parents`); otherwise from the elite of every configuration the study holds
    (:meth:`seed_parents`), which the stored trials allow (they carry no generation number) but
    which is not the population a run that was never interrupted would have.
    """

    def __init__(self, dimensions: dict[str, tuple], directions: Sequence[str], seed: int, population_size: int = 50):
        from types import SimpleNamespace

        from optuna.distributions import BaseDistribution, CategoricalDistribution
        from optuna.study import StudyDirection

        from tuner.optuna_internals import nsga2_operators

        self.names = list(dimensions)
        self.sizes = np.array([len(dimensions[n]) for n in self.names], dtype=np.int64)
        self.population_size = population_size
        operators = nsga2_operators(NSGAIISampler(seed=seed, population_size=population_size))
        self._select_elite, self._make_child = operators
        # The operators read the study's directions only.
        self._study = SimpleNamespace(directions=[StudyDirection[d.upper()] for d in directions])
        self._sampled = [j for j, n in enumerate(self.sizes) if n > 1]
        self._space: dict[str, BaseDistribution] = {
            self.names[j]: CategoricalDistribution(tuple(range(int(self.sizes[j])))) for j in self._sampled
        }
        self._draw_rng = np.random.default_rng(seed)
        self.parents: list[FrozenTrial] = []
        self._population: list[FrozenTrial] = []  # the generation told since the last ask
        self._told = 0

    def seed_parents(self, indices: np.ndarray, values: np.ndarray, constraints: np.ndarray) -> None:
        """Start from configurations a study holds (call once per part of them, in any number
        of parts): the parents become the elite of the parents so far and this part, so memory
        holds one part at a time."""
        if len(indices):
            # Only the leading fronts can be elite: Optuna's selection ranks every point it is
            # given (a resume of a 200,000-trial study ranked 483 fronts, 47 of its 53 s, on an
            # AMD EPYC core). Its elite of the leading fronts is the elite of all of them.
            keep = self._leading_fronts(values, constraints)
            self.tell(indices[keep], values[keep], constraints[keep])
            self.parents = self._select_elite(self._study, self._population + self.parents)
            self._population = []

    def restore_parents(self, indices: np.ndarray, values: np.ndarray, constraints: np.ndarray) -> None:
        """Make these configurations (choice-index rows, in the order :meth:`elite_positions`
        gave them) the parents, as they are: no selection, so a run resumed from the parents
        its interrupted run stored asks from exactly those (Optuna's tournament draws parents by
        position in the list). Configurations told after this are ranked with them."""
        self.tell(indices, values, constraints)
        self.parents, self._population = self._population, []

    def elite_positions(self) -> np.ndarray:
        """The flat configuration indices (``np.ravel_multi_index`` over the space's choice
        counts) of the parents the next :meth:`ask` uses, in their order: the elite of the
        generation told and the parents, selected now (as :meth:`ask` would: the selection is
        deterministic, so selecting earlier changes nothing) and kept for that ask."""
        if self._population:
            self.parents = self._select_elite(self._study, self._population + self.parents)
            self._population = []
        rows = np.zeros((len(self.parents), len(self.sizes)), dtype=np.int64)
        for row, trial in enumerate(self.parents):
            for j in self._sampled:
                rows[row, j] = trial.params[self.names[j]]
        return np.asarray(np.ravel_multi_index(tuple(rows.T), tuple(self.sizes)), dtype=np.int64).reshape(-1)

    def _leading_fronts(self, values: np.ndarray, constraints: np.ndarray) -> np.ndarray:
        """Mask of the rows of (``values``, ``constraints``) in the fewest leading fronts of them
        and the parents that hold :attr:`population_size` points, under Optuna's constrained
        domination (its fast non-dominated sort: the feasible rows, penalty <= 0, by
        non-domination rank, then the infeasible ones by penalty, the sum of their positive
        constraints). Optuna's elite selection fills the population front by front and cuts the
        last front it reaches by crowding distance within that front, so on these fronts whole
        (the rows in their order, the parents after them, as :meth:`ask` orders them) it selects
        what it selects on every row."""
        from tuner.pareto import minimized, nondominated

        parents = self.parents
        all_values = np.concatenate([values, np.array([t.values for t in parents]).reshape(-1, values.shape[1])])
        all_constraints = np.where(np.isnan(constraints), np.inf, constraints)
        parent_constraints = np.array([t.system_attrs["constraints"] for t in parents], dtype=np.float64)
        all_constraints = np.concatenate([all_constraints, parent_constraints.reshape(-1, constraints.shape[1])])
        penalty = np.where(all_constraints > 0, all_constraints, 0.0).sum(axis=1)
        feasible = penalty <= 0
        points = minimized(all_values, [d.name.lower() for d in self._study.directions])
        if np.isnan(points[feasible]).any():
            return np.ones(len(values), dtype=bool)  # Optuna's own ranking decides
        keep = np.zeros(len(all_values), dtype=bool)
        if np.count_nonzero(feasible) >= self.population_size:
            left = np.flatnonzero(feasible)
            while np.count_nonzero(keep) < self.population_size:
                front = nondominated(points[left])
                keep[left[front]] = True
                left = left[~front]
        else:
            keep |= feasible
            needed = self.population_size - int(np.count_nonzero(feasible))
            infeasible = np.flatnonzero(~feasible)
            if len(infeasible):
                worst_kept = np.sort(penalty[infeasible])[min(needed, len(infeasible)) - 1]
                keep[infeasible[penalty[infeasible] <= worst_kept]] = True
        return keep[: len(values)]

    def ask(self, count: int) -> np.ndarray:
        """``count`` children of the current parents (uniform draws before any are told)."""
        if self._population:
            self.parents = self._select_elite(self._study, self._population + self.parents)
            self._population = []
        children = self.uniform(count)
        if self.parents:
            for row in range(count):
                child = self._make_child(self._study, self._space, self.parents)
                for j in self._sampled:
                    choice = child.get(self.names[j])
                    if choice is not None:  # absent: mutated, i.e. the uniform draw stays
                        children[row, j] = choice
        return children

    def uniform(self, count: int) -> np.ndarray:
        """``count`` configurations drawn uniformly (the first generation's draw), from this class's
        own generator."""
        return self._draw_rng.integers(0, self.sizes, size=(count, len(self.sizes)), dtype=np.int64)

    def redraw_walk(self, rows: np.ndarray, steps: int) -> list[np.ndarray]:
        """``steps`` walks from ``rows`` (choice-index rows): at each step every row has one sampled
        dimension, chosen uniformly, set to another of its choices, uniformly (as
        :mod:`tuner.distinct` mutates a repeat), from the previous step; every step's rows, in
        order. From this class's own generator, in two draws for all the steps (a draw per step
        was 0.25 s of a 5,000-trial qwen3-235b-moe-h200 search): where a fresh child is one Optuna
        call of ~0.2 ms (:func:`tuner.study._repair_invalid`). Rows unchanged where no dimension
        has two choices."""
        if not self._sampled or not len(rows):
            return [rows.copy() for _ in range(steps)]
        sampled = np.array(self._sampled, dtype=np.int64)
        dims = sampled[self._draw_rng.integers(0, len(sampled), size=(steps, len(rows)))]
        # Another of k choices: uniform in [0, k - 1), skipping the current one.
        others = np.floor(self._draw_rng.random((steps, len(rows))) * (self.sizes[dims] - 1)).astype(np.int64)
        at = np.arange(len(rows))
        walk, current = [], rows
        for step in range(steps):
            current = current.copy()
            now = current[at, dims[step]]
            current[at, dims[step]] = np.where(others[step] < now, others[step], others[step] + 1)
            walk.append(current)
        return walk

    def tell(self, indices: np.ndarray, values: np.ndarray, constraints: np.ndarray) -> None:
        """Completed children: choice-index rows, objective values (n, objectives) and
        constraint values (n, constraints; > 0 violated). A NaN constraint counts as violated
        (+inf): Optuna's NSGA-II refuses NaN, and the project reads NaN as infeasible."""
        from optuna.trial import FrozenTrial, TrialState

        constraints = np.where(np.isnan(constraints), np.inf, constraints)
        rows = zip(indices.tolist(), values.tolist(), constraints.tolist(), strict=True)
        for row, values_row, constraints_row in rows:
            self._population.append(
                FrozenTrial(
                    number=self._told,
                    state=TrialState.COMPLETE,
                    value=None,
                    values=values_row,
                    datetime_start=None,
                    datetime_complete=None,
                    params={self.names[j]: row[j] for j in self._sampled},
                    distributions=self._space,
                    user_attrs={},
                    system_attrs={"constraints": constraints_row},
                    intermediate_values={},
                    trial_id=self._told,
                )
            )
            self._told += 1
