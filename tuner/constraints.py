"""A trial's constraints, read one way by every command (pareto, show, export, studies, plots).

Trials store constraints where Optuna looks for them: one trial system attribute
``constraints:<name>`` per constraint, written through Optuna's public API
(``Trial.set_constraint`` and ``optuna.trial.create_trial(constraints=...)``) and read back
through ``FrozenTrial.constraints``, which is also what ``Study.best_trials``, the samplers and
the visualizations read. So ``optuna.load_study(...).best_trials`` never holds an infeasible
trial. The names, in the spec's order, are also stored once per study (the study user attribute
``constraint_names``).

Optuna's older format, a list under the system attribute ``constraints`` (what samplers'
``constraints_func`` still writes), reads as names ``"0"``, ``"1"``, ...; given the study's
``constraint_names``, :func:`trial_constraints` maps those back to names.

The tuner writes that list too, the same values in the spec's order: optuna-dashboard (0.21)
reads only the list (its trial table, its "Infeasible" marks and the feasible-only Pareto-front
plot). ``FrozenTrial.constraints`` then holds every value twice, under its name and under its
position (``{"fits": 1.0, ..., "0": 1.0, ...}``): feasibility is the same (every value <= 0), and
:func:`trial_constraints` returns the named ones once.
"""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial

#: Study user attribute holding the constraint names, in the spec's order.
CONSTRAINT_NAMES_ATTR = "constraint_names"
#: Trial system attribute of Optuna's list format (what optuna-dashboard reads).
CONSTRAINT_LIST_ATTR = "constraints"


def trial_constraints(trial: FrozenTrial, names: Sequence[str] | None = None) -> dict[str, float]:
    """``{name: value}`` of a trial's constraints (a value <= 0 is satisfied), in the order of
    ``names`` (the study's ``constraint_names``) when given."""
    values = trial.constraints
    named = {k: v for k, v in values.items() if not k.isdigit()}
    if named and len(named) * 2 == len(values):  # both formats, as the tuner writes them
        values = named
    if names and len(values) == len(names):
        if set(values) == set(names):  # in the spec's order (the database's may differ)
            return {name: float(values[name]) for name in names}
        if list(values) == [str(i) for i in range(len(names))]:  # Optuna's older list format
            return {name: float(values[str(i)]) for i, name in enumerate(names)}
    return {name: float(value) for name, value in values.items()}


def is_feasible(trial: FrozenTrial) -> bool:
    """Every constraint satisfied (Optuna's convention: a value <= 0); True without constraints."""
    return all(value <= 0 for value in trial.constraints.values())


def study_constraint_names(user_attrs: dict) -> list[str] | None:
    """The constraint names a study stored, if any."""
    names = user_attrs.get(CONSTRAINT_NAMES_ATTR)
    return list(names) if isinstance(names, list) else None
