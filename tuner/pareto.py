"""Pareto fronts of stored studies, and the hypervolume that compares them.

The front is computed here (feasible trials only, Optuna's constraint convention: every
constraint <= 0), so it is the same for a study written by any sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from cost_models.errors import InvalidInputError
from tuner import optuna_internals
from tuner.constraints import is_feasible, study_constraint_names, trial_constraints
from tuner.storage import open_storage, storage_errors, study_names

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


def load_study(name: str, storage_url: str) -> optuna.Study:
    storage = open_storage(storage_url, create=False)
    with storage_errors(storage_url):
        if name not in study_names(storage):
            known = ", ".join(study_names(storage)) or "none"
            raise InvalidInputError("study", f"no study named {name!r} in {storage_url}", f"use one of: {known}")
        return optuna.load_study(study_name=name, storage=storage)


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
    unique, inverse = np.unique(points, axis=0, return_inverse=True)
    on_front = np.zeros(len(unique), dtype=bool)
    left = np.arange(len(unique))
    while left.size:
        first = left[0]
        on_front[first] = True
        # Unique points: `first` dominates exactly those no better than it in any objective.
        left = left[np.any(unique[left] < unique[first], axis=1)]
    return on_front[inverse.reshape(-1)]


def study_front(study: optuna.Study) -> Front:
    directions = ["minimize" if d == optuna.study.StudyDirection.MINIMIZE else "maximize" for d in study.directions]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    feasible = [t for t in complete if is_feasible(t)]
    if feasible:
        points = minimized(np.array([t.values for t in feasible], dtype=np.float64), directions)
        mask = nondominated(points)
        # Configurations with identical objectives (a mesh permutation, a prefill-only choice in a
        # decode-only study) are one point of the front: keep the earliest trial of each.
        distinct: dict[tuple, FrozenTrial] = {}
        for trial, on_front in zip(feasible, mask, strict=True):
            if on_front:
                key = tuple(trial.values)
                if key not in distinct or trial.number < distinct[key].number:
                    distinct[key] = trial
        front = sorted(distinct.values(), key=lambda t: (t.values[0], t.number))
    else:
        front = []
    names = study.metric_names or [f"objective_{i}" for i in range(len(directions))]
    return Front(
        study.study_name,
        list(names),
        directions,
        front,
        len(complete),
        len(feasible),
        str(study.user_attrs.get("calibration_profile", "not recorded")),
    )


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume (all objectives minimized) of the points dominating ``reference``."""
    inside = points[np.all(points < reference, axis=1)]
    if len(inside) == 0:
        return 0.0
    return optuna_internals.hypervolume(inside, reference)


def trial_breakdown(study: optuna.Study, number: int) -> dict:
    """One trial: its state, choices, objectives, constraints and full estimate."""
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise InvalidInputError(
            "trial",
            f"study {study.study_name!r} has no trial {number}",
            f"use 0..{len(trials) - 1}" if trials else "run tuner search first",
        )
    trial = trials[number]
    names = study.metric_names or [f"objective_{i}" for i in range(len(trial.values or []))]
    return {
        "study": study.study_name,
        "trial": trial.number,
        "state": trial.state.name,
        "params": trial.params,
        # A trial that did not complete has no values: no objectives (hence not strict).
        "objectives": dict(zip(names, trial.values or [], strict=False)),
        "constraints": trial_constraints(trial, study_constraint_names(study.user_attrs)),
        "feasible": is_feasible(trial),
        "estimate": trial.user_attrs.get("estimate"),
        "calibration": study.user_attrs.get("calibration_profile", "not recorded"),
    }


def list_studies(storage_url: str) -> list[dict]:
    """Every study of a storage (or of every SQLite file a glob URL matches), with counts."""
    import glob

    if storage_url.startswith("sqlite:///") and any(ch in storage_url for ch in "*?["):
        urls = [f"sqlite:///{path}" for path in sorted(glob.glob(storage_url.removeprefix("sqlite:///")))]
    else:
        urls = [storage_url]
    rows = []
    for url in urls:
        storage = open_storage(url, create=False)
        with storage_errors(url):
            for name in study_names(storage):
                study = optuna.load_study(study_name=name, storage=storage)
                front = study_front(study)
                rows.append(
                    {
                        "study": name,
                        "storage": url,
                        "trials": front.n_trials,
                        "feasible": front.n_feasible,
                        "front_size": len(front.trials),
                        "objectives": front.objective_names,
                    }
                )
    return rows
