"""Pareto fronts of stored studies, and the hypervolume that compares them.

The front is computed here (feasible trials only, Optuna's constraint convention: every
constraint <= 0), so it is the same for a study written by any sampler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from cost_models.errors import InvalidInputError
from tuner import compact, optuna_internals
from tuner.constraints import is_feasible, study_constraint_names, trial_constraints
from tuner.storage import NoStudies, StorageError, open_storage, sqlite_glob, storage_errors, study_names

__all__ = [
    "Front",
    "hypervolume",
    "is_feasible",
    "list_studies",
    "load_study",
    "minimized",
    "nondominated",
    "study_front",
    "trial_breakdown",
]


@dataclass(frozen=True)
class Front:
    study_name: str
    objective_names: list[str]
    directions: list[str]
    trials: list[FrozenTrial]  # on the front, sorted by the first objective
    n_trials: int
    n_feasible: int
    calibration: str = "not recorded"  # the profile the trials were scored under
    #: Single-objective studies: the best feasible trials (up to :data:`BEST_SHOWN`), best first,
    #: ties by trial number; the front is only the best of them. Empty with several objectives.
    best: list[FrozenTrial] = field(default_factory=list)
    #: The spec's constraint limits by constraint name (``max_ttft_s``: 1.0, ...), and whether
    #: the study is a serving one (its ``fits_in_memory`` is then 0 or 1, not a memory share).
    limits: dict[str, float] = field(default_factory=dict)
    serving: bool = False
    #: Trials on the front (``len(trials)``, also when they were not loaded).
    n_front: int = 0
    #: The model version the study's trials were scored by where it is not this one
    #: (:func:`tuner.compact.model_version`; None when it is, or was not recorded): the objectives
    #: and feasibility are as stored, the other columns recomputed by this version.
    stale_model_version: str | None = None
    #: The held-out error of the profile's fits of the study's kernels, as stored when the study was
    #: made (tuner.study.calibration_held_out; empty for a study made before it was stored).
    calibration_held_out: dict = field(default_factory=dict)


#: How many best configurations a single-objective study's table shows.
BEST_SHOWN = 10


def load_study(name: str, storage_url: str) -> optuna.Study:
    try:
        storage = open_storage(storage_url, create=False)
    except NoStudies:
        raise InvalidInputError("study", f"no study named {name!r} in {storage_url}", "use one of: none") from None
    with storage_errors(storage_url):
        if name not in study_names(storage):
            known = ", ".join(study_names(storage)) or "none"
            raise InvalidInputError("study", f"no study named {name!r} in {storage_url}", f"use one of: {known}")
        # Compact trials (tuner.compact) are made whole when read, by Optuna's tools too.
        return optuna.load_study(study_name=name, storage=compact.hydrating(storage))


def minimized(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Objective values turned so that smaller is better in every column."""
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return values * signs


def nondominated(points: np.ndarray) -> np.ndarray:
    """Mask of rows no other row dominates (all objectives minimized); duplicates all kept.

    Distinct points in lexicographic order: the first one left is on the front (no later point
    can dominate it), and every point it dominates leaves; repeat. Optuna's ``best_trials`` does
    the same on trials; this takes raw points (the benchmarks' fronts).
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    if points.shape[1] <= 3 and not np.isnan(points).any():
        return _sweep(points)
    if len(points) > _PREFILTER_OVER:
        # Most of a large set is dominated by one of a few strong points: drop those first
        # (sound: a dominated point is never on the front), then the exact pass on the rest.
        left = np.flatnonzero(~_dominated_by_strong(points))
        mask = np.zeros(len(points), dtype=bool)
        mask[left] = _exact(points[left])
        return mask
    return _exact(points)


def _sweep(points: np.ndarray) -> np.ndarray:
    """:func:`nondominated` for one to three objectives (no NaN): one sort and a sweep.

    In lexicographic order a point can only be dominated by points before it, so among the
    distinct points: with two objectives a point is on the front when its second objective is
    below every earlier one's (a running minimum); with three, when no earlier front point is at
    or below it in both the second and the third (:func:`_staircase`). 0.06 s for the 196,912
    feasible points of a 200,000-trial study (bench/bench_reads.py), where the prefilter and
    exact pass below took 0.33 s (most of its points are neither strong nor dominated by one).
    """
    order = np.lexsort(points.T[::-1])
    ordered = points[order]
    first = np.ones(len(points), dtype=bool)  # the first of each run of identical points
    first[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    distinct = ordered[first]
    if points.shape[1] == 1:
        on_front = np.arange(len(distinct)) == 0
    elif points.shape[1] == 2:
        on_front = np.ones(len(distinct), dtype=bool)
        on_front[1:] = distinct[1:, 1] < np.minimum.accumulate(distinct[:, 1])[:-1]
    else:
        on_front = _staircase(distinct)
    mask = np.empty(len(points), dtype=bool)
    mask[order] = on_front[np.cumsum(first) - 1]  # identical points share their verdict
    return mask


def _staircase(distinct: np.ndarray, block: int = 1024) -> np.ndarray:
    """Front mask of distinct three-objective points in lexicographic order, a block at a time:
    a point is dominated by an earlier block's point exactly when a front point found so far has
    its second objective at most the point's and, among those, the least third objective at
    most the point's (a binary search in the front sorted by the second objective, with the
    running minimum of the third); the few points left are compared within the block."""
    on_front = np.zeros(len(distinct), dtype=bool)
    second, least_third = np.empty(0), np.empty(0)
    for start in range(0, len(distinct), block):
        rows = distinct[start : start + block]
        if second.size:
            below = np.searchsorted(second, rows[:, 1], side="right") - 1
            alive = np.flatnonzero(~((below >= 0) & (least_third[np.maximum(below, 0)] <= rows[:, 2])))
        else:  # the first block: no front point yet
            alive = np.arange(len(rows))
        if alive.size == 0:
            continue
        left = rows[alive]
        earlier = np.tri(len(left), len(left), -1, dtype=bool)  # [i, j]: j comes before i
        dominated = ((left[None, :, 1] <= left[:, None, 1]) & (left[None, :, 2] <= left[:, None, 2]) & earlier).any(1)
        on_front[start + alive[~dominated]] = True
        found = distinct[: start + len(rows)][on_front[: start + len(rows)]]
        by_second = np.argsort(found[:, 1], kind="stable")
        second, least_third = found[by_second, 1], np.minimum.accumulate(found[by_second, 2])
    return on_front


#: Sets larger than this are prefiltered (:func:`_dominated_by_strong`).
_PREFILTER_OVER = 4_096


def _dominated_by_strong(points: np.ndarray) -> np.ndarray:
    """Rows strictly dominated by a front point of a small strong subset: the rows best in each
    objective and by the sum of the objectives scaled to [0, 1]."""
    low, high = points.min(axis=0), points.max(axis=0)
    with np.errstate(invalid="ignore", over="ignore"):
        score = np.nan_to_num(((points - low) / np.where(high > low, high - low, 1.0)).sum(axis=1), nan=np.inf)
    best = np.argpartition(score, 512)[:512] if len(points) > 512 else np.arange(len(points))
    strong = np.unique(np.concatenate([best, np.argmin(points, axis=0)]))
    anchors = points[strong][_exact(points[strong])]
    # The strongest anchors first; each pass looks only at the rows still standing.
    with np.errstate(invalid="ignore", over="ignore"):  # infinities: inf - inf is NaN, ranked by nan_to_num
        anchors = anchors[
            np.argsort(np.nan_to_num(((anchors - low) / np.where(high > low, high - low, 1.0)).sum(axis=1)))
        ]
    alive = np.arange(len(points))
    for anchor in anchors:
        rows = points[alive]
        alive = alive[~(np.all(anchor <= rows, axis=1) & np.any(anchor < rows, axis=1))]
    dominated = np.ones(len(points), dtype=bool)
    dominated[alive] = False
    return dominated


def _exact(points: np.ndarray) -> np.ndarray:
    unique, inverse = np.unique(points, axis=0, return_inverse=True)
    on_front = np.zeros(len(unique), dtype=bool)
    left = np.arange(len(unique))
    while left.size:
        first = left[0]
        on_front[first] = True
        # Unique points: `first` dominates exactly those no better than it in any objective.
        left = left[np.any(unique[left] < unique[first], axis=1)]
    return on_front[inverse.reshape(-1)]


def study_front(
    study: optuna.Study,
    on_progress: Callable[[int, int], None] | None = None,
    *,
    load_trials: bool = True,
    known: KnownPoints | None = None,
) -> Front:
    """The study's front. From a database, only the objective values and constraints of the
    completed trials are read, then the front's trials whole (:func:`_front_from_database`);
    any other storage loads every trial (:func:`_front_from_trials`). Both give the same front.
    ``load_trials=False`` (``tuner studies``): the counts only (``n_front``), no trial read.
    ``known``: the points an earlier read of this study kept (:func:`known_points`): only the
    rows stored since are read, and the front is the one a full read gives (where the rows since
    cannot be told apart, the study is read whole)."""
    update = on_progress or (lambda done, total: None)
    storage = optuna_internals.rdb_storage(study)
    front = (
        _front_from_database(study, storage, update, load_trials, known)
        if storage is not None
        else _front_from_trials(study)
    )
    update(_READ_STEPS, _READ_STEPS)
    return front


#: The steps of reading a front from a database: values, constraints, the front's trials.
_READ_STEPS = 3


def _directions(study: optuna.Study) -> list[str]:
    return ["minimize" if d == optuna.study.StudyDirection.MINIMIZE else "maximize" for d in study.directions]


#: Relative difference under which two front points are the same point (a table shows 4 digits;
#: the cost model's floating-point paths differ by 1e-10 and less).
_SAME_POINT_RTOL = 1e-9


def _front_indices(numbers: list[int], values: np.ndarray, directions: list[str]) -> list[int]:
    """Indices (into the feasible trials) of the front: one per point (the earliest trial of
    configurations with identical objectives: a mesh permutation, a prefill-only choice in a
    decode-only study), sorted by the first objective, then the trial number. Identical within
    a relative :data:`_SAME_POINT_RTOL`: two settings the cost model scores alike by different
    floating-point paths (a disaggregated trial at max_num_tokens 2048 and 8192: 312.98334443526437
    and 312.98334423548084 tokens/s/chip, 59.29904264318274 and 59.29904265293086 tokens/s/user)
    each beat the other in the last bits, and both stood on the front: one deployment twice."""
    if len(numbers) == 0:
        return []
    mask = nondominated(minimized(values, directions))
    front = np.flatnonzero(mask)
    order = front[np.lexsort((np.asarray(numbers)[front], values[front, 0]))]
    kept: list[int] = []
    for i in order.tolist():
        # Sorted by the first objective: the same point is among the last kept ones close in it.
        same = None
        for k in range(len(kept) - 1, -1, -1):
            j = kept[k]
            if not np.isclose(values[j, 0], values[i, 0], rtol=_SAME_POINT_RTOL, atol=0.0):
                break
            if np.allclose(values[j], values[i], rtol=_SAME_POINT_RTOL, atol=0.0):
                same = k
                break
        if same is None:
            kept.append(int(i))
        elif numbers[i] < numbers[kept[same]]:
            kept[same] = int(i)
    return sorted(kept, key=lambda i: (values[i, 0], numbers[i]))


def _best_indices(numbers: Sequence[int] | np.ndarray, values: np.ndarray, directions: list[str]) -> list[int]:
    """Indices of the best feasible trials of a single-objective study (none with several)."""
    if len(directions) != 1 or len(numbers) == 0:
        return []
    points = minimized(values, directions)[:, 0]
    order = np.lexsort((np.asarray(numbers), points))  # by value, then trial number
    return [int(i) for i in order[:BEST_SHOWN]]


def _make_front(
    study: optuna.Study,
    directions: list[str],
    trials: list[FrozenTrial],
    n_trials: int,
    n_feasible: int,
    best: list[FrozenTrial],
    n_front: int | None = None,
) -> Front:
    names = study.metric_names or [f"objective_{i}" for i in range(len(directions))]
    spec = study.user_attrs.get("spec")  # tuner.study.SPEC_ATTR: the spec the study was made from
    spec = spec if isinstance(spec, dict) else {}
    stored = spec.get("constraints")
    constraints: dict = stored if isinstance(stored, dict) else {}
    limits = {
        name: float(value)
        for name, value in constraints.items()
        if name.startswith("max_") and isinstance(value, int | float) and not isinstance(value, bool)
    }
    return Front(
        study.study_name,
        list(names),
        directions,
        trials,
        n_trials,
        n_feasible,
        str(study.user_attrs.get("calibration_profile", "not recorded")),
        best,
        limits,
        spec.get("serving") is not None,
        len(trials) if n_front is None else n_front,
        _stale_model_version(study.user_attrs),
        dict(study.user_attrs.get("calibration_held_out") or {}),
    )


def _stale_model_version(user_attrs: dict) -> str | None:
    scored_by = user_attrs.get(compact.MODEL_VERSION_ATTR)
    return str(scored_by) if scored_by is not None and scored_by != compact.model_version() else None


def _front_from_trials(study: optuna.Study) -> Front:
    """The front from every trial loaded whole (``Study.get_trials``): any storage."""
    directions = _directions(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    feasible = [t for t in complete if is_feasible(t)]
    values = np.array([t.values for t in feasible], dtype=np.float64).reshape(len(feasible), len(directions))
    numbers = [t.number for t in feasible]
    chosen = _front_indices(numbers, values, directions)
    best = [feasible[i] for i in _best_indices(numbers, values, directions)]
    return _make_front(study, directions, [feasible[i] for i in chosen], len(complete), len(feasible), best)


def _front_from_database(
    study: optuna.Study,
    storage: RDBStorage,
    update: Callable[[int, int], None],
    load_trials: bool = True,
    known: KnownPoints | None = None,
) -> Front:
    """The front from a database: objective values and constraints of the completed trials (a few
    queries on Optuna's tables), then only the front's trials loaded whole. With ``known``, the
    points it kept and those stored since (:func:`_points_since`)."""
    directions = _directions(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    since = _points_since(storage, study_id, len(directions), known) if known is not None else None
    if since is not None:
        n_complete, n_feasible, ranks, feasible_ids, feasible_values = since
        update(2, _READ_STEPS)
    else:
        n_complete, feasible_ids, feasible_values = _feasible_ids_and_values(
            storage, study_id, len(directions), study.user_attrs, update
        )
        n_feasible = len(feasible_ids)
        # The ids come in trial-number order: their ranks break ties as the numbers do.
        ranks = list(range(len(feasible_ids)))
    chosen = _front_indices(ranks, feasible_values, directions)
    best = _best_indices(ranks, feasible_values, directions)
    if not load_trials:
        return _make_front(study, directions, [], n_complete, n_feasible, [], len(chosen))
    loaded = optuna_internals.trials_by_id(storage, [feasible_ids[i] for i in chosen + best])
    hydrator = compact.hydrator_for(study.user_attrs)
    if hydrator is not None:  # a study loaded without tuner's view: compact trials made whole here
        loaded = hydrator.hydrate(loaded)
    trials, best_trials = loaded[: len(chosen)], loaded[len(chosen) :]
    return _make_front(study, directions, trials, n_complete, n_feasible, best_trials)


def _feasible_ids_and_values(
    storage: RDBStorage,
    study_id: int,
    n_objectives: int,
    user_attrs: dict,
    update: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[int, list[int], np.ndarray]:
    """``(n_complete, feasible_ids, feasible_values)`` of a study's COMPLETE trials, the feasible
    ones in trial-number order: from our side table when it holds the study, else Optuna's tables.
    No trial is loaded."""
    update(0, _READ_STEPS)
    points = feasible_points(storage, study_id, n_objectives)
    if points is not None:  # our side table: the feasible points, one index range scan
        n_complete, ids, feasible_values = points
        update(2, _READ_STEPS)
        return n_complete, ids.tolist(), feasible_values
    # trials written before it (or not by this project): Optuna's tables
    trial_ids, values = optuna_internals.complete_values(storage, study_id, n_objectives)
    update(1, _READ_STEPS)
    infeasible = optuna_internals.infeasible_trial_ids(storage, study_id)
    hydrator = compact.hydrator_for(user_attrs)
    if hydrator is not None:
        # Compact trials store no named constraints in Optuna's tables (their feasibility as
        # scored is in the side table, which optuna.copy_study does not copy; written before
        # 2026-12-06, not even Optuna's list): judged from the spec.
        compact_ids, flat = optuna_internals.configuration_indices_by_trial(storage, study_id)
        infeasible |= set(compact_ids[~hydrator.feasible(flat)].tolist())
    update(2, _READ_STEPS)
    feasible = np.array([trial_id not in infeasible for trial_id in trial_ids], dtype=bool)
    feasible_ids = [trial_id for trial_id, ok in zip(trial_ids, feasible, strict=True) if ok]
    return len(trial_ids), feasible_ids, values[feasible]


def nondominated_trial_ids(storage: RDBStorage, study_id: int) -> list[int]:
    """Ids of every feasible COMPLETE trial of a study that no other feasible one dominates, in
    trial-number order, identical points all kept (the trials of Optuna's ``best_trials``; for one
    objective, every trial at the best value). Read as ``pareto`` reads the front (the side table,
    else the objective and constraint columns): no trial loaded, whatever the study's size."""
    directions = [
        "minimize" if d == optuna.study.StudyDirection.MINIMIZE else "maximize"
        for d in storage.get_study_directions(study_id)
    ]
    _, ids, values = _feasible_ids_and_values(
        storage, study_id, len(directions), storage.get_study_user_attrs(study_id)
    )
    if not ids:
        return []
    return [ids[i] for i in np.flatnonzero(nondominated(minimized(values, directions))).tolist()]


class FeasiblePoints(NamedTuple):
    """A study's feasible points as one read of the points table saw them (:func:`feasible_snapshot`)."""

    n_complete: int  # COMPLETE trials, each with its row
    ids: np.ndarray  # the feasible ones' trial ids, in trial-number order
    values: np.ndarray  # (len(ids), n_objectives)
    #: The highest trial number of any row (feasible or not) in the same read; None where the read
    #: gave no single snapshot (not SQLite, or the rows read one by one): then no
    #: :class:`KnownPoints` can be made from it.
    last_number: int | None = None


def feasible_points(storage: RDBStorage, study_id: int, n_objectives: int) -> tuple[int, np.ndarray, np.ndarray] | None:
    """``(n_complete, feasible_trial_ids, feasible_values)`` of :func:`feasible_snapshot`."""
    points = feasible_snapshot(storage, study_id, n_objectives)
    return None if points is None else (points.n_complete, points.ids, points.values)


def feasible_snapshot(storage: RDBStorage, study_id: int, n_objectives: int) -> FeasiblePoints | None:
    """:func:`tuner.optuna_internals.study_points`: the feasible trial ids and values in
    trial-number order from our points table, or None to read Optuna's tables. SQLite: the ids,
    numbers and objective blobs of every feasible point concatenated by the database
    (``group_concat``; a blob is appended byte for byte) into three values, parsed by numpy: 0.08 s
    of CPU for 196,912 points where one row per point through the driver took 0.17-0.23 s, most of
    it making 400,000 Python objects (bench/bench_reads.py's study). The counts that say whether
    the table holds the whole study and the highest trial number (two index seeks) come from the
    same statement, so from the same snapshot as the points: what :func:`known_points` needs."""
    with storage.engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            points = optuna_internals.study_points(storage, study_id, n_objectives)
            return None if points is None else FeasiblePoints(*points)
        table = optuna_internals.POINTS_TABLE
        rows = optuna_internals._driver_rows
        if not rows(connection, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))[0][0]:
            return None
        # One statement (one read transaction): rows written by another worker between the counts
        # and the points cannot make them disagree. SQLite's two-argument MAX is NULL when either is.
        count, ids, blob, held, complete, last_number = rows(
            connection,
            "SELECT points.n, points.ids, points.blob, counts.held, counts.complete,"
            f" MAX(COALESCE((SELECT MAX(number) FROM {table} WHERE study_id = ? AND feasible = 0), -1),"
            f" COALESCE((SELECT MAX(number) FROM {table} WHERE study_id = ? AND feasible = 1), -1))"
            f" FROM ({optuna_internals.HELD_AND_COMPLETE.format(mark='?')}) AS counts,"
            " (SELECT COUNT(*) AS n, group_concat(trial_id, ',') AS ids,"
            " CAST(group_concat(objectives, '') AS BLOB) AS blob"
            f" FROM (SELECT trial_id, objectives FROM {table} WHERE study_id = ? AND feasible = 1 ORDER BY number))"
            " AS points",
            (study_id,) * 6,
        )[0]
    if held != complete or complete == 0:
        return None
    trial_ids = compact.integers(ids, count)
    # A blob of another length than its objectives' (bytes overwritten inside a record: an
    # operator's damaged file made `pareto` and `tuner studies` end in a numpy traceback):
    # Optuna's own tables hold the values too.
    if trial_ids is None or len(blob or b"") != count * n_objectives * 8:
        return None
    values = np.frombuffer(blob or b"", dtype="<f8")
    # Optuna numbers a study's trials in the order of their ids (RDBStorage counts the study's
    # trials with a smaller id), and so do tuner's bulk writers: ids that do not increase mean
    # SQLite did not aggregate the rows in the subquery's order (it always has), or a study not
    # numbered so; then the rows are read one by one, ORDER BY number.
    if count > 1 and not np.all(trial_ids[1:] > trial_ids[:-1]):
        points = optuna_internals.study_points(storage, study_id, n_objectives)
        return None if points is None else FeasiblePoints(*points)
    return FeasiblePoints(int(complete), trial_ids, values.reshape(count, n_objectives), int(last_number))


@dataclass(frozen=True)
class KnownPoints:
    """What one read of a study's feasible points leaves for its front to be computed again later
    from the rows stored since (:func:`study_front`'s ``known``): the points that can still be on
    the front or among the best (a dominated point stays dominated, and one outside the ten best
    stays outside), with their ranks among the feasible points in trial-number order (the ties'
    order), and the counts and highest trial number of that read. A TPE resume reads the front
    for its sampler's history (tuner.study._bounded_history), then printed the front of a second
    full read: 0.25 s of CPU at 200,000 trials (docs/benchmarks.md, "Resume: one read of the front")."""

    study_id: int
    n_complete: int
    n_feasible: int
    last_number: int
    ranks: np.ndarray
    ids: np.ndarray
    values: np.ndarray


def known_points(
    study_id: int, points: FeasiblePoints, on_front: np.ndarray, directions: list[str]
) -> KnownPoints | None:
    """The :class:`KnownPoints` of a read (:func:`feasible_snapshot`) whose front mask (every
    non-dominated point, as :func:`nondominated` gives it) is ``on_front``; None where the read
    was not one snapshot."""
    if points.last_number is None:
        return None
    keep = np.asarray(on_front, dtype=bool).copy()
    keep[_best_indices(np.arange(len(points.ids)), points.values, directions)] = True
    ranks = np.flatnonzero(keep)
    return KnownPoints(
        study_id, points.n_complete, len(points.ids), points.last_number, ranks, points.ids[ranks], points.values[ranks]
    )


def _points_since(
    storage: RDBStorage, study_id: int, n_objectives: int, known: KnownPoints
) -> tuple[int, int, list[int], list[int], np.ndarray] | None:
    """``(n_complete, n_feasible, ranks, feasible_ids, feasible_values)`` as
    :func:`_front_from_database` uses them: the known points and the feasible rows stored after
    the known read (a trial number above its highest: a new trial's number is above every number
    the study held), ranked after them. None, and the study is read whole, where that is not
    provably the study now: the table must hold every COMPLETE trial and exactly the known read's
    rows plus those (rows are only added, so a row that completed late with a lower number, or
    one added between the two statements here, shows in the counts)."""
    if known.study_id != study_id:
        return None
    table = optuna_internals.POINTS_TABLE
    with storage.engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            return None
        mark = optuna_internals._mark(connection)
        # feasible IN (0, 1): the (study_id, feasible, number) index finds the new rows.
        rows = optuna_internals._driver_rows(
            connection,
            f"SELECT trial_id, feasible, objectives FROM {table}"
            f" WHERE study_id = {mark} AND feasible IN (0, 1) AND number > {mark} ORDER BY number",
            (study_id, known.last_number),
        )
        held, complete = optuna_internals._points_held(connection, mark, study_id)
    if held != complete or held != known.n_complete + len(rows):
        return None
    new = [(int(r[0]), bytes(r[2])) for r in rows if r[1] == 1]
    if any(len(blob) != n_objectives * 8 for _, blob in new):
        return None
    new_values = np.frombuffer(b"".join(blob for _, blob in new), dtype="<f8").reshape(len(new), n_objectives)
    ranks = [*known.ranks.tolist(), *range(known.n_feasible, known.n_feasible + len(new))]
    ids = [*known.ids.tolist(), *(trial_id for trial_id, _ in new)]
    values = np.concatenate([known.values.reshape(-1, n_objectives), new_values])
    return held, known.n_feasible + len(new), ranks, ids, values


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume (all objectives minimized) of the points dominating ``reference``."""
    inside = points[np.all(points < reference, axis=1)]
    if len(inside) == 0:
        return 0.0
    return optuna_internals.hypervolume(inside, reference)


def _quantization(deployment: dict | None) -> dict:
    """``{"quantization": {"weights", "activations", "kv_cache"}}`` of a trial's stored deployment
    (nothing where it has none: a trial that did not complete)."""
    if not isinstance(deployment, dict) or "weight_dtype" not in deployment:
        return {}
    return {
        "quantization": {
            "weights": deployment["weight_dtype"],
            "activations": deployment["act_dtype"],
            "kv_cache": deployment["kv_dtype"],
        }
    }


def trial_breakdown(study: optuna.Study, number: int) -> dict:
    """One trial: its state, choices, objectives, constraints and full estimate. Only that trial
    is read (its id by number, then the trial: Optuna's public storage API)."""
    from search_spaces.space import scored_params

    storage = optuna_internals.study_storage(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    try:
        trial = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, number))
    except KeyError:
        count = storage.get_n_trials(study_id)
        raise InvalidInputError(
            "trial",
            f"study {study.study_name!r} has no trial {number}",
            f"use 0..{count - 1}" if count else "run tuner search first",
        ) from None
    names = study.metric_names or [f"objective_{i}" for i in range(len(trial.values or []))]
    return {
        "study": study.study_name,
        "trial": trial.number,
        "state": trial.state.name,
        # As scored (the batch limit its DP ranks ran), not the label: what export writes.
        "params": scored_params(trial.params, trial.user_attrs.get("serving")),
        # A trial that did not complete has no values: no objectives (hence not strict).
        "objectives": dict(zip(names, trial.values or [], strict=False)),
        "constraints": trial_constraints(trial, study_constraint_names(study.user_attrs)),
        "feasible": is_feasible(trial),
        # The formats scored: params name the weights only, and a GPU study's fp8 trial runs W8A8
        # (search_spaces.space.engine_act_dtype), as tuner export's quantization says.
        **_quantization(trial.user_attrs.get("deployment")),
        "estimate": trial.user_attrs.get("estimate"),
        "calibration": study.user_attrs.get("calibration_profile", "not recorded"),
        "calibration_held_out": study.user_attrs.get("calibration_held_out", {}),
        # Compact trials: the breakdown was recomputed, and under which model version.
        **(
            {"breakdown": trial.user_attrs[compact.BREAKDOWN_ATTR]}
            if compact.BREAKDOWN_ATTR in trial.user_attrs
            else {}
        ),
    }


def list_studies(storage_url: str, on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Every study of a storage (or of every SQLite file a glob URL matches), with counts."""
    import glob

    pattern = sqlite_glob(storage_url)
    if pattern is not None:
        urls = [f"sqlite:///{path}{pattern[1]}" for path in sorted(glob.glob(pattern[0]))]
    else:
        urls = [storage_url]
    rows: list[dict] = []
    update = on_progress or (lambda done, total: None)
    for i, url in enumerate(urls):
        update(i, len(urls))
        try:
            rows.extend(_studies_of(url))
        except StorageError as error:
            if len(urls) == 1:
                raise
            # One unreadable file of many: say so in its row, list the others.
            rows.append({"study": None, "storage": url, "error": str(error)})
    update(len(urls), len(urls))
    return rows


def _studies_of(url: str) -> list[dict]:
    rows: list[dict] = []
    try:
        storage = open_storage(url, create=False)
    except NoStudies:  # an empty file or another program's database: no study, left as it is
        return rows
    with storage_errors(url):
        for name in study_names(storage):
            study = optuna.load_study(study_name=name, storage=compact.hydrating(storage))
            front = study_front(study, load_trials=False)
            rows.append(
                {
                    "study": name,
                    "storage": url,
                    "trials": front.n_trials,
                    "feasible": front.n_feasible,
                    "front_size": front.n_front,
                    "objectives": front.objective_names,
                    "calibration": front.calibration,
                    "calibration_held_out": front.calibration_held_out,
                }
            )
    return rows
