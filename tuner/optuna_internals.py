"""The one module that touches Optuna's private APIs.

Everything else in ``tuner/``, ``search_spaces/`` and ``cost_models/`` uses Optuna's public API
only (``tests/tuner/test_optuna_internals.py`` scans the sources for private names). Each
function here says why the public API does not do the job; the same test file checks each one
against the installed Optuna, so an Optuna upgrade that moves or changes them fails there, not
in a user's study.

Private APIs used, and where:

- ``optuna.storages._rdb.models`` (:func:`insert_trials`): bulk inserts into Optuna's tables.
- ``Study._storage`` (:func:`study_storage`): read one trial by number without loading them all.
- ``Study._storage`` and ``_CachedStorage._backend`` (:func:`rdb_storage`): the database under a
  loaded study, for the fast reads below.
- ``Study._storage`` and ``FrozenTrial._trial_id`` (:func:`set_trial_system_attr`): a sampler's
  bookkeeping on a running trial, as Optuna's own genetic samplers record it.
- ``BaseGASampler._get_generation_key`` (:func:`ga_generation_key`): the attribute that holds a
  trial's NSGA-II generation.
- ``optuna._hypervolume.compute_hypervolume`` (:func:`hypervolume`).
- ``optuna.storages._rdb.models`` again (:func:`complete_values`, :func:`infeasible_trial_ids`,
  :func:`trials_by_id`): read only the columns a command needs.
- ``RDBStorage._build_frozen_trial_from_trial_model`` (:func:`trials_by_id`): turn rows loaded
  together into ``FrozenTrial`` objects exactly as Optuna does.
- ``optuna.trial._frozen._get_constraints_from_system_attrs`` (:func:`infeasible_trial_ids`):
  what ``FrozenTrial.constraints`` returns, from the system attributes alone.
- ``optuna.storages._rdb.models`` and ``optuna.study.study._SYSTEM_ATTR_METRIC_NAMES``
  (:func:`create_study_with_attrs`): a study created with its attributes in one transaction.
- ``optuna_dashboard._app.get_pareto_front_trials`` (:func:`feasible_dashboard`): optuna-dashboard
  0.21 computes its best trials over every trial, constraints ignored (optuna-dashboard#772).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import distribution_to_json
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial
from sqlalchemy import String, cast, func, insert, not_, or_, select
from sqlalchemy.orm import selectinload

if TYPE_CHECKING:
    from optuna._typing import JSONSerializable


def insert_trials(storage: RDBStorage, study_id: int, trials: list[FrozenTrial], budget: int | None) -> int:
    """Insert finished trials into Optuna's own tables in one transaction; returns how many.

    Why not the public API: ``Study.add_trials`` / ``BaseStorage.create_new_trial`` commit every
    trial and every attribute separately (25 to 60 trials per second into SQLite), and take no
    lock that keeps numbers unique and a budget exact across workers. This writes the rows Optuna
    itself writes (``optuna.storages._rdb.models``) with one Core ``executemany`` per table, so
    ``optuna.load_study`` reads them as usual. The caller serializes writers of a SQLite file;
    on a server database, the study's row is locked here (``SELECT ... FOR UPDATE``).
    """
    session = storage.scoped_session()
    try:
        # Lock the study row (PostgreSQL: SELECT ... FOR UPDATE) so numbers stay unique.
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        start = session.execute(
            select(func.count(models.TrialModel.trial_id)).where(models.TrialModel.study_id == study_id)
        ).scalar_one()
        if budget is not None:
            trials = trials[: max(0, budget - start)]
        if not trials:
            session.rollback()
            return 0
        now = datetime.now()
        # Optuna stores trial times as naive UTC (FrozenTrial holds naive local time).
        rows = [
            {
                "number": start + i,
                "study_id": study_id,
                "state": t.state,
                "datetime_start": _naive_utc(t.datetime_start or now),
                "datetime_complete": _naive_utc(t.datetime_complete or now),
            }
            for i, t in enumerate(trials)
        ]
        table = models.TrialModel.__table__
        ids = (
            session.execute(insert(table).returning(table.c.trial_id, sort_by_parameter_order=True), rows)
            .scalars()
            .all()
        )
        values, params, user_attrs, system_attrs = [], [], [], []
        for trial_id, trial in zip(ids, trials, strict=True):
            for objective, value in enumerate(trial.values or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                values.append({"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind})
            for name, value in trial.params.items():
                distribution = trial.distributions[name]
                params.append(
                    {
                        "trial_id": trial_id,
                        "param_name": name,
                        "param_value": distribution.to_internal_repr(value),
                        "distribution_json": distribution_to_json(distribution),
                    }
                )
            user_attrs += [
                {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in trial.user_attrs.items()
            ]
            system_attrs += [
                {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in trial.system_attrs.items()
            ]
        for model, rows in (
            (models.TrialValueModel, values),
            (models.TrialParamModel, params),
            (models.TrialUserAttributeModel, user_attrs),
            (models.TrialSystemAttributeModel, system_attrs),
        ):
            if rows:  # Core executemany on the table: no ORM unit of work per row
                session.execute(insert(model.__table__), rows)
        session.commit()
        return len(trials)
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


def create_study_with_attrs(
    storage: RDBStorage,
    name: str,
    directions: Sequence[optuna.study.StudyDirection],
    user_attrs: dict[str, Any],
    metric_names: list[str],
) -> int | None:
    """Create a study, its user attributes and its metric names in one transaction; returns its
    id, or ``None`` when a study of that name exists already.

    Why not the public API: ``optuna.create_study`` commits the study, then each
    ``set_user_attr`` and ``set_metric_names`` commits on its own, so a worker starting at the
    same moment can find the study without its spec (workers on PostgreSQL failed with "was made
    from a different spec ()" in 4 of 29 runs). These are the rows ``create_new_study``,
    ``set_study_user_attr`` and ``set_metric_names`` write.
    """
    from optuna.study.study import _SYSTEM_ATTR_METRIC_NAMES
    from sqlalchemy.exc import IntegrityError

    session = storage.scoped_session()
    try:
        study = models.StudyModel(
            study_name=name,
            directions=[models.StudyDirectionModel(objective=i, direction=d) for i, d in enumerate(directions)],
        )
        session.add(study)
        session.flush()  # assigns study_id
        session.add_all(
            models.StudyUserAttributeModel(study_id=study.study_id, key=k, value_json=json.dumps(v))
            for k, v in user_attrs.items()
        )
        session.add(
            models.StudySystemAttributeModel(
                study_id=study.study_id, key=_SYSTEM_ATTR_METRIC_NAMES, value_json=json.dumps(metric_names)
            )
        )
        study_id = study.study_id
        session.commit()
        return study_id
    except IntegrityError:  # the name is taken: another worker created it first
        session.rollback()
        return None
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study object reads from.

    Why not the public API: ``Study`` has no public accessor for its storage, and reading one
    trial by number (``BaseStorage.get_trial_id_from_study_id_trial_number``, then
    ``get_trial``; both public) is the only way not to load every trial of a study that may hold
    millions (``Study.get_trials`` loads them all).
    """
    return study._storage


def rdb_storage(study: optuna.Study) -> RDBStorage | None:
    """The database a study reads from, or None when it is not in one (in memory, a journal).

    Why not the public API: ``Study`` has no accessor for its storage, and ``optuna.load_study``
    wraps an ``RDBStorage`` in its private ``_CachedStorage`` (attribute ``_backend``); the fast
    reads below query the database's tables directly.
    """
    from optuna.storages._cached_storage import _CachedStorage

    storage = study._storage
    if isinstance(storage, _CachedStorage):
        storage = storage._backend
    return storage if isinstance(storage, RDBStorage) else None


def set_trial_system_attr(study: optuna.Study, trial: FrozenTrial, key: str, value: JSONSerializable) -> None:
    """Record a sampler's bookkeeping on a trial that is running.

    Why not the public API: ``Trial.set_system_attr`` was removed in Optuna 3, and a sampler is
    handed a ``FrozenTrial`` whose attributes do not reach the storage. Optuna's own genetic
    samplers (``BaseGASampler.get_trial_generation``) write through the study's storage exactly
    like this.
    """
    study._storage.set_trial_system_attr(trial._trial_id, key, value)


def ga_generation_key(sampler: optuna.samplers.NSGAIISampler) -> str:
    """The trial system attribute in which a genetic sampler stores a trial's generation.

    Why not the public API: the key is only exposed through this private classmethod (it is
    ``"<class name>:generation"`` today); spelling it out ourselves would silently stop matching
    what the parent class writes and reads if Optuna changed it.
    """
    return type(sampler)._get_generation_key()


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume (all objectives minimized) dominated by ``points`` and bounded by ``reference``.

    Why not the public API: Optuna 5 has no public hypervolume function (only
    ``optuna.visualization.plot_hypervolume_history``, which needs a study and draws a chart);
    its exact WFG algorithm lives in ``optuna._hypervolume``. Every point must dominate the
    reference.
    """
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(points, reference))


# ---------------------------------------------------------------------------------------------
# Reading only what a command needs
#
# Why not the public API: ``Study.get_trials`` builds every attribute of every trial (a 30,000-trial
# study is 30,000 full estimates, about 40 s on SQLite) when ``pareto``, ``studies`` and ``show``
# need the objective values and constraints of the completed trials, then a few whole trials.
# These read Optuna's own tables (``optuna.storages._rdb.models``) with one query per column set;
# tests/tuner/test_reads.py checks them against ``Study.get_trials`` on a stored study.


def complete_values(storage: RDBStorage, study_id: int, n_objectives: int) -> tuple[list[int], np.ndarray]:
    """``(trial_ids, values)`` of a study's COMPLETE trials in trial-number order: their ids and
    objective values (n, n_objectives), as ``FrozenTrial.values`` reads them (infinities kept).
    Core queries on Optuna's tables, the enum columns read as text: no ORM object per row."""
    trial = models.TrialModel.__table__
    value = models.TrialValueModel.__table__
    complete = (trial.c.study_id == study_id, trial.c.state == optuna.trial.TrialState.COMPLETE)
    with storage.engine.connect() as connection:
        rows = connection.execute(
            select(trial.c.number, value.c.trial_id, value.c.objective, value.c.value, cast(value.c.value_type, String))
            .join(trial, trial.c.trial_id == value.c.trial_id)
            .where(*complete, value.c.objective < n_objectives)
        ).all()
    if not rows:
        return [], np.zeros((0, n_objectives))
    numbers, trial_ids, objectives, stored, kinds = zip(*rows, strict=True)
    # A COMPLETE trial has all its values: its rows give its id; order the ids by trial number.
    number_of = dict(zip(trial_ids, numbers, strict=True))
    ids = sorted(number_of, key=number_of.__getitem__)
    rank = {trial_id: i for i, trial_id in enumerate(ids)}
    # Optuna's stored_repr_to_value, vectorized: FINITE keeps the value, INF_POS / INF_NEG are
    # +-inf (the stored value is then NULL).
    kind = np.asarray(kinds)
    number = np.array([np.nan if v is None else v for v in stored], dtype=np.float64)
    number = np.where(kind == "INF_POS", np.inf, np.where(kind == "INF_NEG", -np.inf, number))
    values = np.full((len(ids), n_objectives), np.nan)
    values[[rank[t] for t in trial_ids], np.asarray(objectives, dtype=np.int64)] = number
    return ids, values


def infeasible_trial_ids(storage: RDBStorage, study_id: int) -> set[int]:
    """Ids of a study's COMPLETE trials with a constraint over 0 (``FrozenTrial.constraints``: a
    value > 0, or NaN), read without loading the trials' attributes.

    Optuna stores each constraint as the JSON of a float under ``constraints:<name>``; the JSON of
    a float is <= 0 exactly when it starts with ``-`` or is ``0``/``0.0`` (NaN, ``Infinity`` and
    every positive number do not), so the database returns only the violated rows. Trials with
    only Optuna's older format (a list under ``constraints``) are read whole and judged by Optuna's
    own ``optuna.trial._frozen._get_constraints_from_system_attrs``.
    """
    from optuna.trial._frozen import _get_constraints_from_system_attrs

    trial = models.TrialModel.__table__
    attr = models.TrialSystemAttributeModel.__table__
    complete = (trial.c.study_id == study_id, trial.c.state == optuna.trial.TrialState.COMPLETE)
    joined = attr.join(trial, trial.c.trial_id == attr.c.trial_id)
    satisfied = or_(attr.c.value_json.like("-%"), attr.c.value_json.in_(["0", "0.0"]))
    with storage.engine.connect() as connection:
        violated = set(
            connection.execute(
                select(attr.c.trial_id)
                .select_from(joined)
                .where(*complete, attr.c.key.like("constraints:%"), not_(satisfied))
                .distinct()
            ).scalars()
        )
        # Only the trials with the list alone: where named constraints are stored too (as this
        # project writes them, for optuna-dashboard), the names already decide.
        named = select(attr.c.trial_id).where(attr.c.key.like("constraints:%"))
        old = set(
            connection.execute(
                select(attr.c.trial_id)
                .select_from(joined)
                .where(*complete, attr.c.key == "constraints", attr.c.trial_id.not_in(named))
            ).scalars()
        )
        rows: Sequence[Any] = []
        if old:
            rows = connection.execute(
                select(attr.c.trial_id, attr.c.key, attr.c.value_json)
                .select_from(joined)
                .where(*complete, attr.c.key.like("constraints%"), attr.c.trial_id.in_(sorted(old)))
                .order_by(attr.c.trial_system_attribute_id)
            ).all()
    system_attrs: dict[int, dict] = {}
    for trial_id, key, value_json in rows:
        system_attrs.setdefault(trial_id, {})[key] = json.loads(value_json)
    judged = {
        trial_id
        for trial_id, attrs in system_attrs.items()
        if not all(v <= 0 for v in _get_constraints_from_system_attrs(attrs).values())
    }
    return (violated - old) | judged


def trials_by_id(storage: RDBStorage, trial_ids: list[int]) -> list[FrozenTrial]:
    """Whole trials (every attribute), in the order of ``trial_ids``, loaded together (a few
    queries in all, not a few per trial as ``BaseStorage.get_trial``)."""
    trial = models.TrialModel
    found: dict[int, FrozenTrial] = {}
    session = storage.scoped_session()
    try:
        for start in range(0, len(trial_ids), 500):  # SQLite binds at most 999 parameters
            chunk = trial_ids[start : start + 500]
            query = (
                select(trial)
                .where(trial.trial_id.in_(chunk))
                .options(
                    selectinload(trial.values),
                    selectinload(trial.params),
                    selectinload(trial.user_attributes),
                    selectinload(trial.system_attributes),
                    selectinload(trial.intermediate_values),
                )
            )
            for model in session.execute(query).scalars():
                found[int(model.trial_id)] = storage._build_frozen_trial_from_trial_model(model)
    finally:
        session.close()
    return [found[trial_id] for trial_id in trial_ids]


def feasible_dashboard(storage: BaseStorage) -> Any:
    """optuna-dashboard's WSGI app over ``storage`` whose best trials (the Best Trials card, the
    trial list's filter) are feasible ones only, as ``Study.best_trials`` are. optuna-dashboard
    0.21 computes them over every complete trial (optuna-dashboard#772); its module-level Pareto
    function is replaced for this process (``tuner dashboard`` serves nothing else), and a
    single-objective study's best trial is read through a storage whose ``get_best_trial`` skips
    infeasible trials. Needs ``optuna-dashboard`` (the ``dashboard`` extra)."""
    from optuna_dashboard import _app

    from tuner.constraints import is_feasible

    original = _app.get_pareto_front_trials
    if not getattr(original, "feasible_only", False):

        def feasible_front(trials: Sequence[FrozenTrial], directions: Sequence[Any]) -> list[FrozenTrial]:
            return original([t for t in trials if is_feasible(t)], directions)

        feasible_front.feasible_only = True  # type: ignore[attr-defined]
        _app.get_pareto_front_trials = feasible_front

    class FeasibleBest(type(storage)):  # type: ignore[misc]
        def get_best_trial(self, study_id: int) -> FrozenTrial:
            done = self.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            feasible = [t for t in done if is_feasible(t)]
            if not feasible:
                raise ValueError("no feasible trial yet")
            sign = -1.0 if self.get_study_directions(study_id)[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
            return min(feasible, key=lambda t: sign * t.values[0])

    view = copy.copy(storage)  # shares the engine and caches; only the class differs
    view.__class__ = FeasibleBest
    return _app.wsgi(view)
