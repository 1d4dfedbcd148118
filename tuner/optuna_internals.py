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
- ``NSGAIISampler._elite_population_selection_strategy`` and ``_child_generation_strategy``
  (:func:`nsga2_operators`): NSGA-II's own operators applied to a whole generation at once.
- ``optuna._hypervolume.compute_hypervolume`` (:func:`hypervolume`).
- ``optuna.storages._rdb.models`` again (:func:`complete_values`, :func:`infeasible_trial_ids`,
  :func:`trials_by_id`): read only the columns a command needs.
- ``RDBStorage._build_frozen_trial_from_trial_model`` (:func:`trials_by_id`): turn rows loaded
  together into ``FrozenTrial`` objects exactly as Optuna does.
- ``optuna.trial._frozen._get_constraints_from_system_attrs`` (:func:`infeasible_trial_ids`):
  what ``FrozenTrial.constraints`` returns, from the system attributes alone.
- ``RDBStorage._get_trials`` and ``FrozenTrial._trial_id`` (:func:`hydrating_storage`,
  :func:`trial_id`): compact trials (:mod:`tuner.compact`) made whole wherever Optuna reads them
  (``get_all_trials`` and ``_CachedStorage`` both go through ``_get_trials``).
- ``optuna.storages._rdb.models`` and ``optuna.study.study._SYSTEM_ATTR_METRIC_NAMES``
  (:func:`create_study_with_attrs`): a study created with its attributes in one transaction.
- ``RDBStorage._fill_storage_url_template``, ``RDBStorage._set_default_engine_kwargs_for_mysql``,
  ``optuna.storages._rdb.storage._VersionManager`` and the migration files under
  ``optuna/storages/_rdb/alembic/versions`` (:func:`existing_storage`): an ``RDBStorage`` over a
  database already in the current schema, built without ``create_all`` and the Alembic import.
- ``optuna_dashboard._app.get_pareto_front_trials`` (:func:`feasible_dashboard`): optuna-dashboard
  0.21 computes its best trials over every trial, constraints ignored (optuna-dashboard#772).
- The logger ``optuna.storages._rdb.storage`` (its one warning: a trial read's OperationalError,
  with the SQL) and ``optuna_dashboard._bottle_util``'s error log of a failed request
  (:func:`dashboard_database_errors_in_one_line`): a database hiccup said in tuner's one line.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import sys
from collections.abc import Iterator, Sequence
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
    from tuner.storage import hold_sqlite_write_lock

    session = storage.scoped_session()
    try:
        hold_sqlite_write_lock(session.connection())  # SQLite: before the count, as the row lock
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
                {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                for k, v in trial.system_attrs.items()
                if not k.startswith(UNSTORED_PREFIX)
            ]
        points = [
            point_row(trial_id, study_id, start + i, t.values, t.system_attrs)
            for i, (trial_id, t) in enumerate(zip(ids, trials, strict=True))
            if t.state == optuna.trial.TrialState.COMPLETE and t.values is not None
        ]
        if points:
            write_points(session.connection(), points)
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


def nsga2_operators(sampler: optuna.samplers.NSGAIISampler) -> tuple[Any, Any]:
    """``(select_elite, make_child)``: the elite-population selection (rank, then crowding
    distance) and the child generation (binary tournament, uniform crossover, mutation) of an
    ``NSGAIISampler``, as callables on plain trial lists.

    Why not the public API: the sampler applies them only inside ``Study.ask``, one trial at a
    time through the study's storage (about 3 ms a trial in a 30,000-trial study);
    :class:`tuner.samplers.GenerationalNSGAII` applies the same objects to a whole generation.
    They are the sampler's private ``_elite_population_selection_strategy(study, population)``
    and ``_child_generation_strategy(study, search_space, parents)`` (the latter draws from the
    sampler's own seeded random state); ``study`` is read for ``directions`` only, so a stand-in
    carrying the directions is passed.
    """
    return sampler._elite_population_selection_strategy, sampler._child_generation_strategy


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


# ---------------------------------------------------------------------------------------------
# Our side table: what the front needs, one row per COMPLETE trial
#
# Optuna keeps a trial's objective values one row each in ``trial_values`` and its constraints as
# JSON text in ``trial_system_attributes``: reading 200,000 trials' values and constraints costs
# 800,000+ rows parsed in Python (about 4 s at 200,000, 20 s at 1,000,000). This table holds, per
# COMPLETE trial written by this project, its number, whether it is feasible (every constraint
# <= 0, as ``FrozenTrial.constraints`` judges it) and its objective values as one float64 blob,
# indexed by study: the front's inputs in one indexed scan, about 60 bytes a trial. Optuna's own
# tables stay complete (the values are written there too); a study whose trials are not all here
# (written by an older version, or by Optuna directly) is read the slow way.

POINTS_TABLE = "tuner_trial_points"
#: System attributes under this prefix are read by :func:`insert_trials` for the points row and
#: not stored (a compact trial's constraints: recomputed on read, feasibility kept in the points).
UNSTORED_PREFIX = "tuner-unstored:"


def point_row(trial_id: int, study_id: int, number: int, values: Sequence[float], system_attrs: dict) -> tuple:
    constraints = [
        v for k, v in system_attrs.items() if k.startswith(("constraints:", UNSTORED_PREFIX + "constraints:"))
    ]
    if not constraints:
        constraints = list(system_attrs.get("constraints") or [])
    feasible = all(isinstance(v, int | float) and v <= 0 for v in constraints)  # NaN is not <= 0
    return (int(trial_id), int(study_id), int(number), int(feasible), np.asarray(values, dtype="<f8").tobytes())


def write_points(connection: Any, rows: list[tuple]) -> None:
    """Insert point rows ``(trial_id, study_id, number, feasible, objectives blob)`` through the
    driver's ``executemany``, creating the table on first use."""
    from sqlalchemy import text

    blob = "BLOB" if connection.dialect.name == "sqlite" else "BYTEA"
    connection.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {POINTS_TABLE} (trial_id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL,"
            f" number INTEGER NOT NULL, feasible INTEGER NOT NULL, objectives {blob} NOT NULL)"
        )
    )
    # The front reads a study's feasible points in trial-number order: one index range scan.
    connection.execute(
        text(f"CREATE INDEX IF NOT EXISTS ix_{POINTS_TABLE}_study ON {POINTS_TABLE} (study_id, feasible, number)")
    )
    mark = "?" if connection.dialect.name == "sqlite" else "%s"
    # A trial id can come back after its study was deleted (Optuna's delete_study leaves our
    # rows): the new trial's row replaces the stale one.
    connection.exec_driver_sql(
        f"INSERT INTO {POINTS_TABLE} VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) ON CONFLICT (trial_id) DO UPDATE"
        " SET study_id = excluded.study_id, number = excluded.number, feasible = excluded.feasible,"
        " objectives = excluded.objectives",
        rows,
    )


def study_points(storage: RDBStorage, study_id: int, n_objectives: int) -> tuple[int, np.ndarray, np.ndarray] | None:
    """``(n_complete, feasible_trial_ids, feasible_values)`` from our side table: how many COMPLETE
    trials the study has, and the ids and objective values (n, n_objectives) of its feasible ones
    in trial-number order; None when the table is missing or does not hold every COMPLETE trial
    of the study (then read Optuna's tables: :func:`complete_values`)."""
    from sqlalchemy import inspect

    with storage.engine.connect() as connection:
        if not inspect(connection).has_table(POINTS_TABLE):
            return None
        mark = _mark(connection)
        # The driver's own cursor: a SQLAlchemy result makes a Row object per row, which was
        # 0.3-0.5 s of the 0.7 s this read took at 200,000 trials (cProfile, bench/bench_reads.py).
        held, complete = _points_held(connection, mark, study_id)
        if held != complete or complete == 0:
            return None
        # The index gives the feasible rows in number order.
        rows = _driver_rows(
            connection,
            f"SELECT trial_id, objectives FROM {POINTS_TABLE} WHERE study_id = {mark} AND feasible = 1 ORDER BY number",
            (study_id,),
        )
    if not rows:
        return int(complete), np.zeros(0, dtype=np.int64), np.zeros((0, n_objectives))
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    joined = b"".join([r[1] for r in rows])
    # A blob of another length than its objectives' (bytes overwritten inside a record): the
    # values are read from Optuna's own tables instead (np.frombuffer would raise on a length
    # that is not a multiple of 8).
    if len(joined) != len(rows) * n_objectives * 8:
        return None
    values = np.frombuffer(joined, dtype="<f8")
    return int(complete), ids, values.reshape(len(rows), n_objectives)


def complete_points(storage: RDBStorage, study_id: int, n_objectives: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(trial_ids, values)`` of every COMPLETE trial of a study (feasible or not) in trial-number
    order, from our side table: what :func:`complete_values` reads from Optuna's tables, one blob
    per trial instead of a row per objective (at 100,000 trials: 2.9 of 11.9 profiled s of a TPE
    resume through SQLAlchemy rows); None when the table does not hold every COMPLETE trial of
    the study, or a blob has another length than its objectives' (:func:`complete_point_rows`
    less the numbers and feasibility)."""
    rows = complete_point_rows(storage, study_id, n_objectives)
    return None if rows is None else (rows[0], rows[3])


def complete_point_rows(
    storage: RDBStorage, study_id: int, n_objectives: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """``(trial_ids, numbers, feasible, values)`` of every COMPLETE trial of a study in
    trial-number order, from our side table: :func:`complete_points` with each trial's number and
    feasibility as scored (what ``tuner report`` needs to choose the trials it draws and to draw
    the best feasible value so far, without loading every trial: 188 of 203 s for a 111,450-trial
    study, README). None when the table does not hold every COMPLETE trial of the study, or a
    blob has another length than its objectives'."""
    from sqlalchemy import inspect

    with storage.engine.connect() as connection:
        if not inspect(connection).has_table(POINTS_TABLE):
            return None
        mark = _mark(connection)
        held, complete = _points_held(connection, mark, study_id)
        if held != complete:
            return None
        rows = _driver_rows(
            connection,
            f"SELECT trial_id, number, feasible, objectives FROM {POINTS_TABLE}"
            f" WHERE study_id = {mark} ORDER BY number",
            (study_id,),
        )
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    numbers = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    feasible = np.fromiter((r[2] == 1 for r in rows), dtype=bool, count=len(rows))
    joined = b"".join([bytes(r[3]) for r in rows])
    if len(joined) != len(rows) * n_objectives * 8:
        return None
    return ids, numbers, feasible, np.frombuffer(joined, dtype="<f8").reshape(len(rows), n_objectives)


def latest_points(
    storage: RDBStorage, study_id: int, n_objectives: int, count: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(trial_ids, values)`` of a study's latest ``count`` COMPLETE trials (fewer when it has
    fewer), in trial order, from our side table; None when one of them has no row there, or a
    blob has another length than its objectives'.

    What a resumed TPE learns from besides the front (``BatchTPESampler._tuner_history``). The
    trials are taken from the end of ``trials``' index on ``study_id`` (whose entries are ordered
    by trial id, and Optuna numbers a study's trials in the order of their ids: see
    :func:`tuner.pareto.feasible_points`), each row then found by its id: the older trials are
    never read. 14 ms for the latest 2,000 of a 200,000-trial study (``sqlite3`` shell) where
    ``ORDER BY number DESC LIMIT`` on the side table sorted all 200,000 rows (430 ms)."""
    with storage.engine.connect() as connection:
        mark = _mark(connection)
        rows = _driver_rows(
            connection,
            f"SELECT t.trial_id, p.objectives FROM {_TRIALS} t LEFT JOIN {POINTS_TABLE} p ON p.trial_id = t.trial_id"
            f" WHERE t.study_id = {mark} AND t.state = 'COMPLETE' ORDER BY t.trial_id DESC LIMIT {mark}",
            (study_id, int(count)),
        )
    rows.reverse()
    if any(r[1] is None for r in rows):
        return None
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    joined = b"".join([bytes(r[1]) for r in rows])
    if len(joined) != len(rows) * n_objectives * 8:
        return None
    return ids, np.frombuffer(joined, dtype="<f8").reshape(len(rows), n_objectives)


def configurations_by_id(storage: RDBStorage, trial_ids: Sequence[int]) -> dict[int, tuple[int, float]]:
    """``trial_id -> (number, flat configuration index as stored: a float)`` of the given compact trials (those
    without a configuration parameter left out), read by their ids (an index lookup each,
    :data:`_TRIALS`' primary key and ``trial_params``' unique (trial_id, param_name))."""
    from tuner.compact import CONFIGURATION_PARAM

    found: dict[int, tuple[int, float]] = {}
    ids = [int(t) for t in trial_ids]
    with storage.engine.connect() as connection:
        mark = _mark(connection)
        for start in range(0, len(ids), 500):  # SQLite binds at most 999 parameters
            chunk = ids[start : start + 500]
            rows = _driver_rows(
                connection,
                f"SELECT t.trial_id, t.number, p.param_value FROM {_TRIALS} t JOIN {_TRIAL_PARAMS} p"
                f" ON p.trial_id = t.trial_id AND p.param_name = {mark}"
                f" WHERE t.trial_id IN ({', '.join([mark] * len(chunk))})",
                (CONFIGURATION_PARAM, *chunk),
            )
            for trial, number, value in rows:
                if value is not None:
                    found[int(trial)] = (int(number), float(value))
    return found


#: Optuna's tables as named in ``optuna.storages._rdb.models`` (checked there by
#: tests/tuner/test_optuna_internals.py); a trial's state is stored as the enum's name.
_TRIALS, _TRIAL_PARAMS = models.TrialModel.__tablename__, models.TrialParamModel.__tablename__
_STUDY_SYSTEM_ATTRS = models.StudySystemAttributeModel.__tablename__


def write_study_system_attr(connection: Any, study_id: int, key: str, value: JSONSerializable) -> None:
    """Set a study system attribute (Optuna's row, JSON as ``RDBStorage.set_study_system_attr``
    stores it) inside the caller's transaction. Why not the public API: that one opens its own
    session, so the attribute would be committed apart from the rows it describes; here it is
    committed with them (:func:`tuner.exhaustive.write_chunk`'s ``also``). An update, then an
    insert when there was no row: the caller holds the study's write lock, so no other writer
    inserts in between (``ON CONFLICT`` would need the unique constraint's name on some
    databases)."""
    from sqlalchemy import text

    parameters = {"s": int(study_id), "k": key, "v": json.dumps(value)}
    updated = connection.execute(
        text(f"UPDATE {_STUDY_SYSTEM_ATTRS} SET value_json = :v WHERE study_id = :s AND key = :k"), parameters
    )
    if updated.rowcount == 0:
        connection.execute(
            text(f"INSERT INTO {_STUDY_SYSTEM_ATTRS} (study_id, key, value_json) VALUES (:s, :k, :v)"), parameters
        )


def study_system_attr(storage: RDBStorage, study_id: int, key: str) -> Any:
    """One study system attribute, JSON-decoded (None when absent or not JSON): one row read,
    where ``RDBStorage.get_study_system_attrs`` reads them all."""
    with storage.engine.connect() as connection:
        mark = _mark(connection)
        rows = _driver_rows(
            connection,
            f"SELECT value_json FROM {_STUDY_SYSTEM_ATTRS} WHERE study_id = {mark} AND key = {mark}",
            (int(study_id), key),
        )
    if not rows or rows[0][0] is None:
        return None
    try:
        return json.loads(rows[0][0])
    except ValueError:
        return None


def configurations_after(storage: RDBStorage, study_id: int, trial_id: int, number: int) -> np.ndarray:
    """The flat configuration indices of a compact study's COMPLETE trials after the one of id
    ``trial_id`` and number ``number``, in trial order: a range seek on the ``trials`` index on
    ``study_id`` (whose entries are ordered by trial id, see :func:`latest_points`), so its cost
    is the trials after it, not the study's. When the study holds no trial of that id and
    number (a copy of the study, ``optuna.copy_study``, gives its trials other ids and the same
    numbers), by number instead: every trial of the study is then looked at (no index on it)."""
    from tuner.compact import CONFIGURATION_PARAM

    with storage.engine.connect() as connection:
        mark = _mark(connection)
        found = _driver_rows(
            connection,
            f"SELECT number FROM {_TRIALS} WHERE trial_id = {mark} AND study_id = {mark}",
            (int(trial_id), int(study_id)),
        )
        column, bound = ("t.trial_id", trial_id) if found and found[0][0] == number else ("t.number", number)
        rows = _driver_rows(
            connection,
            f"SELECT p.param_value FROM {_TRIALS} t JOIN {_TRIAL_PARAMS} p"
            f" ON p.trial_id = t.trial_id AND p.param_name = {mark}"
            f" WHERE t.study_id = {mark} AND {column} > {mark} AND t.state = 'COMPLETE' ORDER BY {column}",
            (CONFIGURATION_PARAM, int(study_id), int(bound)),
        )
    values = [r[0] for r in rows if r[0] is not None]
    # As stored (a float), then cast: a value overwritten beyond int64 becomes one outside the
    # space (DamagedData from check_inside_space), not an OverflowError.
    return np.array(values, dtype=np.float64).astype(np.int64)


def _points_held(connection: Any, mark: str, study_id: int) -> tuple[int, int]:
    """(rows of our side table, COMPLETE trials) of a study: the table answers a read only where
    it holds every COMPLETE trial. One statement, :data:`HELD_AND_COMPLETE`."""
    held, complete = _driver_rows(connection, HELD_AND_COMPLETE.format(mark=mark), (study_id,) * 3)[0]
    return int(held), int(complete)


#: ``(held, complete)`` of :func:`_points_held` as one SQL statement (``{mark}``: the driver's
#: placeholder, the study id three times). A row is written only for a COMPLETE trial, so a study
#: with as many rows as trials has every trial COMPLETE and held: two counts of index entries
#: (13 ms each at 200,000 trials, SQLite), where counting the COMPLETE ones reads every trial's
#: state from the table (43 ms); that count only when some trial is not held (running, failed).
HELD_AND_COMPLETE = (
    "SELECT held, CASE WHEN held = total THEN held"
    f" ELSE (SELECT COUNT(*) FROM {_TRIALS} WHERE study_id = {{mark}} AND state = 'COMPLETE') END AS complete"
    f" FROM (SELECT (SELECT COUNT(*) FROM {POINTS_TABLE} WHERE study_id = {{mark}}) AS held,"
    f" (SELECT COUNT(*) FROM {_TRIALS} WHERE study_id = {{mark}}) AS total) AS counts"
)


def _mark(connection: Any) -> str:
    """The driver's placeholder: ``?`` for sqlite3, ``%s`` for psycopg2, pymysql and the others."""
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def _driver_rows(connection: Any, sql: str, parameters: tuple) -> list[tuple]:
    """Rows of ``sql`` as the driver returns them (plain tuples), through the DB-API cursor of the
    SQLAlchemy connection: no Row object per row."""
    from sqlalchemy.exc import DBAPIError

    driver_error = connection.dialect.loaded_dbapi.Error
    if not connection.in_transaction():
        # The driver opens a transaction for the read (psycopg2 sends BEGIN) that SQLAlchemy
        # would not know of: the pool's rollback on return would then meet a connection the
        # server dropped after the read, and log "Exception during reset or similar" with a
        # traceback. Begun here, as SQLAlchemy's own execute does (autobegin), the rollback at
        # close is SQLAlchemy's, which invalidates a dropped connection and raises its error.
        connection.begin()
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, parameters)
        return list(cursor.fetchall())
    except driver_error as error:  # as SQLAlchemy raises it (tuner.storage reads its type and code)
        # A dropped server connection is invalidated as SQLAlchemy's own execute does: otherwise
        # the pool's rollback on return meets the dead socket and logs its traceback on stderr
        # (seen in CI: a PostgreSQL restart under four workers).
        lost = connection.dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)
        if lost:
            connection.invalidate(error)
        raise DBAPIError.instance(
            sql, parameters, error, driver_error, dialect=connection.dialect, connection_invalidated=lost
        ) from error
    finally:
        with contextlib.suppress(driver_error):  # closing a cursor of a dropped connection
            cursor.close()


def _complete_configuration_rows(storage: RDBStorage, study_id: int, columns: str) -> list[tuple]:
    """``columns`` of ``trial_params`` (as ``p``) of a study's COMPLETE compact trials' configuration
    parameter (:mod:`tuner.compact`), read through the driver's cursor (no row objects)."""
    from tuner.compact import CONFIGURATION_PARAM

    with storage.engine.connect() as connection:
        mark = _mark(connection)
        return _driver_rows(
            connection,
            f"SELECT {columns} FROM {_TRIAL_PARAMS} p JOIN {_TRIALS} t ON t.trial_id = p.trial_id"
            f" WHERE t.study_id = {mark} AND t.state = 'COMPLETE' AND p.param_name = {mark}",
            (study_id, CONFIGURATION_PARAM),
        )


def configuration_indices(storage: RDBStorage, study_id: int) -> np.ndarray:
    """The flat configuration index (:mod:`tuner.compact`) of each COMPLETE compact trial of a
    study, in no particular order: one column of ``trial_params`` read through the driver's
    cursor (no row objects), so a resume reads 200,000 trials in a fraction of a second."""
    rows = _complete_configuration_rows(storage, study_id, "p.param_value")
    return np.fromiter((r[0] for r in rows), dtype=np.float64, count=len(rows)).astype(np.int64)


def configuration_indices_by_trial(storage: RDBStorage, study_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``(trial_ids, flat configuration indices)`` of a study's COMPLETE compact trials, as
    :func:`configuration_indices` reads them, with the trial each belongs to."""
    rows = _complete_configuration_rows(storage, study_id, "p.trial_id, p.param_value")
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows)).astype(np.int64)
    return ids, flat


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
    return (violated - old) | judged | _infeasible_points(storage, study_id)


def _infeasible_points(storage: RDBStorage, study_id: int) -> set[int]:
    """Infeasible trials as our points table records them (compact trials store no named
    constraints, only Optuna's list: :mod:`tuner.compact`)."""
    from sqlalchemy import inspect

    with storage.engine.connect() as connection:
        if not inspect(connection).has_table(POINTS_TABLE):
            return set()
        mark = "?" if connection.dialect.name == "sqlite" else "%s"
        return {
            int(trial_id)
            for (trial_id,) in connection.exec_driver_sql(
                f"SELECT trial_id FROM {POINTS_TABLE} WHERE study_id = {mark} AND feasible = 0", (study_id,)
            ).fetchall()
        }


def trials_by_id(storage: RDBStorage, trial_ids: list[int]) -> list[FrozenTrial]:
    """Whole trials (every attribute), in the order of ``trial_ids``, loaded together (a few
    queries in all, not a few per trial as ``BaseStorage.get_trial``)."""
    trial = models.TrialModel
    found: dict[int, FrozenTrial] = {}
    study_of: dict[int, int] = {}
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
                study_of[int(model.trial_id)] = int(model.study_id or 0)
    finally:
        session.close()
    trials = [found[trial_id] for trial_id in trial_ids]
    if hasattr(storage, "hydrate") and trials:  # a hydrating view: compact trials made whole
        studies = set(study_of.values())
        if len(studies) == 1:
            trials = storage.hydrate(studies.pop(), trials)
    return trials


def feasible_dashboard(storage: BaseStorage, max_trials: int | None = None) -> Any:
    """optuna-dashboard's WSGI app over ``storage`` whose best trials (the Best Trials card, the
    trial list's filter) are feasible ones only, as ``Study.best_trials`` are. optuna-dashboard
    0.21 computes them over every complete trial (optuna-dashboard#772); its module-level Pareto
    function is replaced for this process (``tuner dashboard`` serves nothing else), and a
    single-objective study's best trial is read through a storage whose ``get_best_trial`` skips
    infeasible trials. Needs ``optuna-dashboard`` (the ``dashboard`` extra).

    A database study of more than ``max_trials`` trials (None: no bound) is served as
    :class:`_BoundedTrials` reads it: a sample and the whole front, not every trial."""
    from optuna_dashboard import _app

    if not getattr(_app.get_pareto_front_trials, "feasible_only", False):
        _app.get_pareto_front_trials = _feasible_front

    base = type(storage)
    bounded = max_trials is not None and isinstance(storage, RDBStorage)

    class FeasibleBest(base):  # type: ignore[misc,valid-type]
        def get_best_trial(self, study_id: int) -> FrozenTrial:
            done = self.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            best = _feasible_front(done, self.get_study_directions(study_id))
            if not best:
                raise ValueError("no feasible trial yet")
            return best[0]  # the earliest of the best (Optuna's get_best_trial: the first found)

        def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
            if bounded:
                trials = self._tuner_bounded.trials(study_id)
                if trials is not None:
                    chosen = [t for t in trials if states is None or t.state in states]
                    return copy.deepcopy(chosen) if deepcopy else chosen
            return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)

        def _get_trials(
            self, study_id: int, states: Any, included_trial_ids: set[int], trial_id_greater_than: int
        ) -> list[FrozenTrial]:
            # What a Study over this storage reads (Optuna wraps it in a _CachedStorage, which
            # reads here): the parameter importances (PED-ANOVA calls Study.get_trials, not the
            # dashboard's cached list: 6 reads of every trial, 171 of 183 s at 30,000 trials)
            # and the plotly-python plots.
            if bounded:
                trials = self._tuner_bounded.trials(study_id)
                if trials is not None:
                    return [
                        t
                        for t in trials
                        if (states is None or t.state in states)
                        and (t._trial_id > trial_id_greater_than or t._trial_id in included_trial_ids)
                    ]
            return super()._get_trials(study_id, states, included_trial_ids, trial_id_greater_than)

    view = copy.copy(storage)  # shares the engine and caches; only the class differs
    view.__class__ = FeasibleBest
    if bounded:
        view._tuner_bounded = _BoundedTrials(view, int(max_trials or 0))  # type: ignore[attr-defined,arg-type]
    return _app.wsgi(view)


def _feasible_front(trials: Sequence[FrozenTrial], directions: Sequence[Any]) -> list[FrozenTrial]:
    """The feasible COMPLETE trials no other one dominates, by trial number, identical points all
    kept: what ``Study.best_trials`` returns. Replaces optuna-dashboard 0.21's
    ``_app.get_pareto_front_trials``, which ignores constraints (optuna-dashboard#772) and, with
    three objectives or more, compares every pair of trials in Python
    (``_pareto_front._get_pareto_front_trials_nd``): 5,000 trials of a 3-objective study took
    315 s of a 355 s page (cProfile, 2-core VM under load); 30,000 did not answer in 15 minutes.
    :func:`tuner.pareto.nondominated` is one numpy sort and sweep."""
    from tuner.constraints import is_feasible
    from tuner.pareto import minimized, nondominated

    names = ["minimize" if d == optuna.study.StudyDirection.MINIMIZE else "maximize" for d in directions]
    done = [
        t
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE
        and t.values is not None
        and len(t.values) == len(names)
        and is_feasible(t)
    ]
    if not done:
        return []
    values = np.array([t.values for t in done], dtype=np.float64)
    mask = nondominated(minimized(values, names))
    return sorted((t for t, on in zip(done, mask.tolist(), strict=True) if on), key=lambda t: t.number)


_feasible_front.feasible_only = True  # type: ignore[attr-defined]


class _BoundedTrials:
    """The trials optuna-dashboard reads of a study of more than ``max_trials`` trials: those whose
    number is a multiple of ``stride`` (``ceil(trials / max_trials)``, fixed at the first read)
    and every trial of the feasible front (:func:`tuner.pareto.nondominated_trial_ids`, read as
    ``tuner pareto`` reads it), in trial-number order. So the dashboard's front, computed over
    these, is the study's, and its scatter plots draw an even sample of the rest.

    Later reads only add: the trials written since (the same stride, and the new front's), so the
    list the page holds stays a prefix of the next (optuna-dashboard's frontend asks for the
    trials ``after`` the ones it holds). Finished trials are loaded and made whole once; only
    unfinished ones are read again."""

    def __init__(self, storage: RDBStorage, max_trials: int) -> None:
        self.storage = storage
        self.max_trials = max(int(max_trials), 1)
        self.stride: dict[int, int] = {}
        self.ids: dict[int, list[int]] = {}
        self.seen: dict[int, int] = {}  # the largest trial id read, by study
        self.whole: set[int] = set()  # studies first served whole: served whole from then on
        self.loaded: dict[int, FrozenTrial] = {}

    def trials(self, study_id: int) -> list[FrozenTrial] | None:
        """The study's served trials, or None when it holds no more than ``max_trials`` (then
        every trial, as optuna-dashboard reads them)."""
        from tuner.pareto import nondominated_trial_ids

        if study_id in self.whole:
            # A page holding every trial asks for those after them: a sample from now on would
            # not continue its list (a study searched past the bound while its page is open).
            return None
        with self.storage.engine.connect() as connection:
            mark = _mark(connection)
            ((n_trials, last_id),) = _driver_rows(
                connection, f"SELECT COUNT(*), MAX(trial_id) FROM {_TRIALS} WHERE study_id = {mark}", (study_id,)
            )
            if study_id not in self.stride:
                if n_trials <= self.max_trials:
                    self.whole.add(study_id)
                    return None
                self.stride[study_id] = -(-int(n_trials) // self.max_trials)
                self.ids[study_id] = []
            held = self.ids[study_id]
            since = self.seen.get(study_id, -1)
            if last_id is not None and last_id > since:
                # (filtered here: ``%`` is no placeholder-safe operator in every driver's SQL)
                rows = _driver_rows(
                    connection,
                    f"SELECT trial_id, number FROM {_TRIALS} WHERE study_id = {mark} AND trial_id > {mark}",
                    (study_id, since),
                )
                sampled = {int(i) for i, number in rows if number % self.stride[study_id] == 0}
        if last_id is not None and last_id > since:
            # Ids increase with the number within a study (Optuna numbers a study's trials in
            # the order of their ids; tuner's bulk writers too): the id order is the number order.
            front = [i for i in nondominated_trial_ids(self.storage, study_id) if i > since]
            held.extend(sorted(sampled | set(front)))
            self.seen[study_id] = int(last_id)
        fresh = {trial_id(t): t for t in trials_by_id(self.storage, [i for i in held if i not in self.loaded])}
        self.loaded.update({i: t for i, t in fresh.items() if t.state.is_finished()})  # unfinished: read again
        return [self.loaded[i] if i in self.loaded else fresh[i] for i in held]


# Optuna's RDB storage logs a warning of several lines (the SQL, its parameters and SQLAlchemy's
# "Background on this error" link) when a trial read fails with an OperationalError, before it
# runs a slower query in the same session (optuna/storages/_rdb/storage.py, _get_trials; meant for
# SQLite's limit on IN variables). A connection a server restart dropped fails that query too,
# and tuner.storage.with_retries says so in one line; the warning is its logger's only one (Optuna 5.1),
# and its errors still show. Why not the public API: optuna.logging sets Optuna's root logger only.
logging.getLogger("optuna.storages._rdb.storage").setLevel(logging.ERROR)


@contextlib.contextmanager
def pareto_front_warnings_silenced() -> Iterator[None]:
    """Optuna's plot_pareto_front logs "Your study does not have any completed and feasible
    trials." (a warning of its module's logger, optuna/visualization/_pareto_front.py, Optuna
    5.1) where the front is empty; tuner report says so in the chart's heading instead."""
    log = logging.getLogger("optuna.visualization._pareto_front")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class _DatabaseErrorInOneLine(logging.Filter):
    """See :func:`dashboard_database_errors_in_one_line`."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        from sqlalchemy.exc import SQLAlchemyError

        from tuner.storage import storage_error

        error = sys.exc_info()[1]  # the dashboard logs inside its ``except``: the request's error
        if isinstance(error, (SQLAlchemyError, optuna.exceptions.StorageInternalError)):
            record.msg, record.args = f"a request failed: {storage_error(error, self.url)}", ()
        return True


def dashboard_database_errors_in_one_line(url: str) -> None:
    """optuna-dashboard answers a request that raised with a 500 and logs the error with its stack
    (``optuna_dashboard._bottle_util.json_api_view``: ``logger.error(f"Exception: {e}\n{stacktrace}")``
    inside its ``except``): a database server restarting under ``tuner dashboard`` printed 20 lines
    a request, headed by Optuna's guess "invalid data in the commit". A database error is logged
    as tuner's one line (:func:`tuner.storage.storage_error`, the URL's password masked); any other
    error, a bug, keeps its stack. Why not the public API: the dashboard has no error hook."""
    dashboard_logger = logging.getLogger("optuna_dashboard._bottle_util")
    for old in [f for f in dashboard_logger.filters if isinstance(f, _DatabaseErrorInOneLine)]:
        dashboard_logger.removeFilter(old)
    dashboard_logger.addFilter(_DatabaseErrorInOneLine(url))


class DamagedData(ValueError):
    """A value read from a study's tables that its writer cannot have stored (a configuration
    index outside the space): bytes overwritten inside a record, which SQLite's page checks do
    not see. ``tuner.storage.storage_errors`` makes it the one "is damaged" line."""


def trial_id(trial: FrozenTrial) -> int:
    """A trial's database id. Why not the public API: ``FrozenTrial`` has no public accessor for
    it, and a trial rebuilt from a stored one must keep it."""
    return trial._trial_id


def hydrating_storage(storage: Any, hydrator_for: Any) -> Any:
    """A view of ``storage`` (a copy sharing its engine and caches) whose trial reads pass each
    study's trials through ``hydrator_for(study_user_attrs).hydrate`` (None: as stored).

    Why not the public API: ``optuna.load_study`` reads trials through ``RDBStorage._get_trials``
    (directly, or from ``_CachedStorage``); overriding it and ``get_trial`` is the only way for
    ``Study.get_trials``, Optuna's plots and optuna-dashboard to see the trials whole.
    """
    if not isinstance(storage, RDBStorage) or getattr(storage, "_hydrator_for", None) is not None:
        return storage

    class Hydrating(type(storage)):  # type: ignore[misc]
        _hydrators: dict[int, Any]
        _hydrator_for: Any

        def _hydrator(self, study_id: int) -> Any:
            if study_id not in self._hydrators:
                self._hydrators[study_id] = self._hydrator_for(self.get_study_user_attrs(study_id))
            return self._hydrators[study_id]

        def hydrate(self, study_id: int, trials: list[FrozenTrial]) -> list[FrozenTrial]:
            hydrator = self._hydrator(study_id)
            return hydrator.hydrate(trials) if hydrator is not None else trials

        def get_trial(self, trial_id: int) -> FrozenTrial:
            trial = super().get_trial(trial_id)
            table = models.TrialModel.__table__
            with self.engine.connect() as connection:
                study_id = connection.execute(select(table.c.study_id).where(table.c.trial_id == trial_id)).scalar_one()
            return self.hydrate(int(study_id), [trial])[0]

        def _get_trials(self, study_id, states, included_trial_ids, trial_id_greater_than):
            trials = super()._get_trials(study_id, states, included_trial_ids, trial_id_greater_than)
            return self.hydrate(study_id, trials)

    # A shallow copy of the attributes, not copy.copy: RDBStorage's __getstate__/__setstate__
    # (what copy.copy calls) build a new engine and version manager, importing Alembic.
    view: Any = Hydrating.__new__(Hydrating)
    view.__dict__.update(vars(storage))
    view._hydrators = {}
    view._hydrator_for = hydrator_for
    return view


# ---------------------------------------------------------------------------------------------
# Opening an existing database for reading
#
# Why not the public API: ``RDBStorage(url)`` runs ``create_all`` (a table reflection per
# Optuna table) and builds its ``_VersionManager``, which imports Alembic (0.2-0.3 s on a 2-core
# Xeon, cProfile of `tuner pareto`) to compare the database's schema revision with the head of
# Optuna's migrations. A read of an up-to-date database needs neither: this compares the two
# revisions with one query and Optuna's migration files read as text, and builds the storage as
# ``RDBStorage.__init__`` does without them. Anything else (another revision, no such table, a
# file that is not a database) goes through ``RDBStorage(url)`` itself, with its own checks and
# messages. tests/tuner/test_optuna_internals.py checks the attributes and the head revision
# against the installed Optuna.


def existing_storage(url: str, engine_kwargs: dict[str, Any] | None = None) -> RDBStorage:
    """An ``RDBStorage`` over a database Optuna's current schema is in, opened without
    ``create_all`` and without importing Alembic; any other database through ``RDBStorage``."""
    import sqlalchemy
    from sqlalchemy import orm

    head = _schema_head()
    storage = RDBStorage.__new__(RDBStorage)
    storage.engine_kwargs = dict(engine_kwargs or {})
    storage.url = storage._fill_storage_url_template(url)
    storage.skip_compatibility_check = False
    storage.heartbeat_interval = None
    storage.grace_period = None
    storage.heartbeat_stale_trial_callback = None
    storage.failed_trial_callback = None
    storage._set_default_engine_kwargs_for_mysql(url, storage.engine_kwargs)
    current = None
    try:
        storage.engine = sqlalchemy.engine.create_engine(storage.url, **storage.engine_kwargs)
        with storage.engine.connect() as connection:
            revisions = _driver_rows(connection, "SELECT version_num FROM alembic_version", ())
        current = revisions[0][0] if len(revisions) == 1 else None
    except Exception:  # no driver, not a database, no such table: RDBStorage says what is wrong
        pass
    if head is None or current != head:
        if hasattr(storage, "engine"):
            storage.engine.dispose()
        return RDBStorage(url, engine_kwargs=engine_kwargs)
    storage.scoped_session = orm.scoped_session(orm.sessionmaker(bind=storage.engine))
    storage._version_manager = _LazyVersionManager(storage)  # type: ignore[assignment]
    return storage


class _LazyVersionManager:
    """``RDBStorage._version_manager`` built on first use (``upgrade``, ``get_current_version``:
    never by a read)."""

    def __init__(self, storage: RDBStorage) -> None:
        self._storage = storage
        self._manager: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._manager is None:
            from optuna.storages._rdb.storage import _VersionManager

            s = self._storage
            self._manager = _VersionManager(s.url, s.engine, s.scoped_session)
        return getattr(self._manager, name)


def _schema_head() -> str | None:
    """The head revision of Optuna's migrations (what ``_VersionManager.get_head_version`` asks
    Alembic for), read from the migration files as text; None when they cannot be read so."""
    import re
    from pathlib import Path

    import optuna.storages._rdb as rdb

    revisions, parents = set(), set()
    for path in (Path(rdb.__file__).parent / "alembic" / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision = re.search(r'^revision\s*=\s*"([^"]+)"', text, re.MULTILINE)
        down = re.search(r'^down_revision\s*=\s*(?:"([^"]+)"|None)', text, re.MULTILINE)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        if down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


# ---------------------------------------------------------------------------------------------
# TPE: one fit of the Parzen estimators per batch of asks


_DONE_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def ask_categorical(study: optuna.Study, distributions: dict[str, Any]) -> optuna.Trial:
    """``study.ask(distributions)`` for categorical distributions: what ``Study.ask`` does (a new
    trial, each distribution suggested in order with ``Trial._suggest``) without passing each one
    through ``_convert_old_distribution_to_new_distribution``, which returns a categorical
    distribution itself but first compares it with itself choice by choice (``!=``, to warn about
    deprecated classes): 5.9 of 70 CPU s of a 10,000-trial TPE search (cProfile of
    bench/bench_trials_per_s.py --sampler tpe). Why not the public API: ``Trial._suggest`` is
    private."""
    from optuna.distributions import CategoricalDistribution

    if not all(type(d) is CategoricalDistribution for d in distributions.values()):
        return study.ask(distributions)
    trial = study.ask()
    for name, distribution in distributions.items():
        trial._suggest(name, distribution)
    return trial


def tell_in_place(
    study: optuna.Study,
    trial: optuna.Trial,
    values: Sequence[float] | None = None,
    state: optuna.trial.TrialState | None = None,
) -> FrozenTrial:
    """``study.tell(trial, values, state)`` returning the study's own FrozenTrial instead of a
    deep copy of it: the copy (its params, distributions and attributes, twice per trial when
    :mod:`tuner.distinct` replaces a proposal) was 49 of 486 CPU s of a 30,000-trial TPE search
    (cProfile of bench/bench_trials_per_s.py --sampler tpe, 2026-12-02). The caller must not
    modify what it gets (the sampler reads it). Why not the public API: ``Study.tell`` is
    ``_tell_with_warning`` (``optuna.study._tell``, private) followed by the deep copy."""
    from optuna.study._tell import _tell_with_warning

    _tell_with_warning(study=study, trial=trial, value_or_values=values, state=state, skip_if_finished=False)
    return study._storage.get_trial(trial._trial_id)


def add_trials_in_place(study: optuna.Study, trials: list[FrozenTrial]) -> None:
    """``study.add_trials(trials)`` into an in-memory study, the trials themselves stored instead
    of deep copies of them: the caller hands them over (each one's ``number`` and ``_trial_id``
    are set to the study's, as Optuna sets the copy's) and must not touch them after.

    Resuming a 30,000-trial TPE study spent 24.6 of 51 profiled s in ``add_trials`` deep-copying
    each trial (its params, its distributions with their choice tuples, its attributes: cProfile,
    2026-12-05), and held the copies beside the originals (395 MB peak RSS). The trials a resume
    builds (:func:`tuner.compact.Hydrator.sampler_history`) share one distributions dict, and
    nothing else holds them, so a copy buys nothing. The trials must be ones ``Study.add_trial``
    accepts (read from a study, or built from the space's own choices): its per-parameter check
    (``FrozenTrial._validate``, 1.3 of 14 profiled s at 30,000) is not repeated; the count of
    values is checked. Why not the public API:
    ``Study.add_trial`` is ``InMemoryStorage.create_new_trial(template_trial=...)``, which starts
    with ``copy.deepcopy``; this is that method without the copy, on its private fields
    (``_studies``, ``_trial_id_to_study_id_and_number``, ``_max_trial_id``, ``_update_cache``,
    optuna/storages/_in_memory.py of the pinned version; tests/tuner/test_batch_tpe.py compares
    the study with one ``add_trials`` built)."""
    storage = study._storage
    if type(storage) is not optuna.storages.InMemoryStorage:
        study.add_trials(trials)
        return
    n_objectives = len(study.directions)
    with storage._lock:
        storage._check_study_id(study._study_id)
        stored = storage._studies[study._study_id].trials
        for trial in trials:
            if trial.values is not None and len(trial.values) != n_objectives:
                raise ValueError(
                    f"trial {trial.number} has {len(trial.values)} values, the study {n_objectives} objectives"
                )
            storage._max_trial_id += 1
            trial.number = len(stored)
            trial._trial_id = storage._max_trial_id
            storage._trial_id_to_study_id_and_number[trial._trial_id] = (study._study_id, trial.number)
            stored.append(trial)
            storage._update_cache(trial._trial_id, study._study_id)


class BatchTPESampler(optuna.samplers.TPESampler):
    """Optuna's ``TPESampler`` whose Parzen estimators are fitted once per batch of asks.

    A search asks a batch of trials, scores them together, then tells them (:mod:`tuner.study`):
    between the first ask of a batch and the last, no trial completes, so the "below" and "above"
    estimators Optuna fits on every ask are fitted on the same completed trials, and only the
    running ones (the constant liar's) differ. Fitting costs O(trials) (each trial's params turned
    into the internal representation, the multi-objective split, the mixtures built): at 30,000
    trials, most of an ask. Here the estimators of the batch's first ask (when nothing runs, so
    exactly Optuna's) are kept until a trial completes, and each later ask of the batch draws its
    own candidates from them (Optuna's ``n_ei_candidates`` samples, the best by the ratio of
    likelihoods). That is exactly what ``TPESampler(constant_liar=False)`` samples (Optuna fits on
    the completed trials only then); the constant liar, which Optuna 5 turns on by default and which
    fits on the running trials too, is off, and the configurations a batch repeats are replaced as
    :mod:`tuner.distinct` replaces them.

    What else grew with the study on every ask, at 30,000 trials (cProfile of
    bench/bench_trials_per_s.py --sampler tpe), is done once per batch or once per trial here, each
    step giving Optuna's own values: the acquisition function over the candidates
    (:class:`_CategoricalAcquisition`), the list of completed trials (``_tuner_done``), the trials'
    choice indices (``_get_internal_repr``) and infeasibility scores (``_tuner_split``).

    Why not the public API: the fit and the draw are ``TPESampler._sample`` and
    ``_sample_relative`` (overridden here) and its private helpers ``_split_complete_trials``,
    ``_split_pruned_trials``, ``_get_infeasible_trial_score``, ``_get_internal_repr``,
    ``_get_params``, ``_build_parzen_estimator``, ``_compute_acquisition_func``, ``_compare``,
    ``_gamma``, ``_n_startup_trials``, ``_n_ei_candidates`` and ``_rng``, with
    ``Study._get_trials``, the estimators' ``_mixture_distribution``, ``_transform`` and
    ``_untransform``, and ``optuna.study._multi_objective._is_pareto_front`` (the split on the
    first fronts); there is no public hook between them. ``tests/tuner/test_batch_tpe.py``
    checks that it samples what Optuna's ``TPESampler(constant_liar=False)`` samples, batch after
    batch, and each step against Optuna's own function on the pinned version.
    """

    def __init__(self, *, history: int | None = None, **kwargs: Any) -> None:
        if kwargs.setdefault("constant_liar", False):
            raise ValueError("BatchTPESampler fits on completed trials only: constant_liar must be False")
        if history is not None and history < kwargs.get("n_startup_trials", 10):
            raise ValueError(f"a TPE history of {history} trials never leaves the random start")
        super().__init__(**kwargs)
        #: Fit on the feasible front plus the latest ``history`` done trials (None: on all of
        #: them, Optuna's TPE): see :meth:`_tuner_history`.
        self._tuner_history_size = history
        # (study, done trials looked at, the feasible non-dominated COMPLETE ones among them in
        # number order)
        self._tuner_front: tuple[tuple, int, list[FrozenTrial]] = ((), 0, [])
        self._tuner_fitted: tuple[tuple, Any, Any] | None = None
        self._tuner_acquisition: _CategoricalAcquisition | None = None
        self._tuner_draw: _CategoricalDraw | None = None
        self._tuner_scan: tuple[int, list[FrozenTrial], list[int]] = (0, [], [])
        # The search space; each finished trial's row in the table (-1: no row); the table of
        # choice indices (rows x dimensions, grown by doubling) and its rows in use.
        self._tuner_repr: tuple[tuple, dict[int, int], list] = ((), {}, [np.zeros((0, 0), dtype=np.int64), 0])
        self._tuner_scores: dict[int, float] = {}
        self._tuner_space: tuple[int, dict[str, Any]] | None = None
        # Done trials intersected, their distributions' intersection, the last one's distributions.
        self._tuner_intersection: tuple[int, dict[str, Any] | None, dict | None] = (0, None, None)
        self._tuner_fronts: tuple[tuple, set[int], set[int], int] | None = None

    def _tuner_done(self, study: optuna.Study) -> list[FrozenTrial]:
        """The study's COMPLETE and PRUNED trials in number order: what Optuna's
        ``study._get_trials(deepcopy=False, states=(COMPLETE, PRUNED), use_cache=True)`` returns.

        Optuna filters the whole trial list on every ask (twice: in ``_sample_relative`` and in
        ``_sample``; ``Study.ask`` drops its trial cache each time), about 3 ms per ask at 10,000
        trials (cProfile of bench/bench_trials_per_s.py --sampler tpe). A finished state is final,
        so this looks only at the trials it has not seen and at those it saw unfinished: O(batch) per
        ask, and the whole filter again only when one of those has completed (once per batch)."""
        from optuna.trial import TrialState

        trials = study._get_trials(deepcopy=False, use_cache=True)  # a list of references, no copies
        seen, done, unfinished = self._tuner_scan
        if len(trials) < seen:
            seen, done, unfinished = 0, [], []
        elif any(trials[i].state in _DONE_STATES for i in unfinished):
            finished = [i for i in unfinished if trials[i].state in _DONE_STATES]
            if done and trials[finished[0]].number < done[-1].number:
                seen, done, unfinished = 0, [], []  # one completed before a done trial: filter again, in order
            else:
                # Completed after every done trial (a batch told in order): appended in order, the
                # rest of the list as it was (the whole filter again was 14 s of 486 CPU s at
                # 30,000 trials, 60,000 trials in the in-memory study with the replaced proposals).
                done = done + [trials[i] for i in finished]
                unfinished = [i for i in unfinished if trials[i].state not in _DONE_STATES]
        for i in range(seen, len(trials)):
            state = trials[i].state
            if state in _DONE_STATES:
                done.append(trials[i])
            elif state in (TrialState.RUNNING, TrialState.WAITING):
                unfinished.append(i)
        unfinished = [i for i in unfinished if not trials[i].state.is_finished()]
        self._tuner_scan = (len(trials), done, unfinished)
        return done

    def _tuner_history(self, study: optuna.Study) -> list[FrozenTrial]:
        """The trials TPE is fitted on: every done trial while there are at most ``history`` of
        them (exactly Optuna's TPE), then the latest ``history`` done trials and, of the older
        ones, those on the feasible Pareto front of all done trials (the non-dominated COMPLETE
        trials whose constraints all hold, identical points all kept: ``tuner.pareto``'s front),
        in number order.

        Why bounded: fitting on every trial costs O(trials) per batch and a resume O(trials) to
        read (a FrozenTrial per stored trial: 17 s of CPU and 837 MB to resume a 200,000-trial
        study, docs/benchmarks.md "TPE resume (2026-12-05)"), against issue 13's 2 s and 500 MB
        whatever the study's size. The front keeps the best trials found in the "below" estimator
        however long ago they were found (they are rank 0, the first trials Optuna's split puts
        below); the latest trials are where the search is now. What it costs in search quality
        (none measured beyond noise): docs/benchmarks.md "Bounded TPE history (2026-12-05)". A
        resume reads the same trials from the database (:func:`tuner.study._compact_history`)."""
        done = self._tuner_done(study)
        size = self._tuner_history_size
        if size is None or len(done) <= size:
            return done
        front = self._tuner_front_of(study, done)
        first_latest = done[-size].number
        return [t for t in front if t.number < first_latest] + done[-size:]

    def _tuner_front_of(self, study: optuna.Study, done: list[FrozenTrial]) -> list[FrozenTrial]:
        """The feasible non-dominated COMPLETE trials of ``done`` (in number order), kept from the
        last call: only the trials done since are compared with the kept front (a trial off the
        front stays off it, a dominated one is never on it)."""
        from optuna.trial import TrialState

        from tuner.pareto import minimized, nondominated

        key = (id(study._storage), study._study_id)
        known, seen, front = self._tuner_front
        if known != key or seen > len(done):
            seen, front = 0, []  # another study: from the start
        fresh = [
            t
            for t in done[seen:]
            # Feasible as the points table judges it (every constraint <= 0, NaN is not), so that a
            # resume's front (read from that table) is this one.
            if t.state == TrialState.COMPLETE and t.values is not None and all(v <= 0 for v in t.constraints.values())
        ]
        if fresh:
            candidates = front + fresh
            directions = [
                "maximize" if d == optuna.study.StudyDirection.MAXIMIZE else "minimize" for d in study.directions
            ]
            mask = nondominated(minimized(np.array([t.values for t in candidates], dtype=np.float64), directions))
            front = [t for t, keep in zip(candidates, mask.tolist(), strict=True) if keep]
        self._tuner_front = (key, len(done), front)
        return front

    def _tuner_split(
        self, study: optuna.Study, trials: list[FrozenTrial], n_below: int
    ) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """Optuna's ``_split_trials`` (its code, in its order, calling its own splits of the
        complete and pruned trials), with each finished trial's infeasibility score (the sum of
        its positive constraints, ``_get_infeasible_trial_score``) kept: Optuna parses every
        trial's constraints from its system attributes again at every fit, most of the split's
        0.3-0.5 s at 30,000 trials (cProfile of the split alone)."""
        from optuna.samplers._tpe import sampler as tpe

        scores = self._tuner_scores

        def score(trial: FrozenTrial) -> float:
            value = scores.get(trial._trial_id)
            if value is None:
                value = tpe._get_infeasible_trial_score(trial)
                if trial.state.is_finished():
                    scores[trial._trial_id] = value
            return value

        complete, pruned, running, infeasible = [], [], [], []
        for trial in trials:
            if trial.state == optuna.trial.TrialState.RUNNING:
                running.append(trial)
            elif score(trial) > 0:
                infeasible.append(trial)
            elif trial.state == optuna.trial.TrialState.COMPLETE:
                complete.append(trial)
            elif trial.state == optuna.trial.TrialState.PRUNED:
                pruned.append(trial)
            else:
                raise AssertionError(f"trial {trial.number} is {trial.state.name}")
        below_complete, above_complete = self._tuner_split_complete(complete, study, n_below)
        n_below = max(0, n_below - len(below_complete))
        below_pruned, above_pruned = tpe._split_pruned_trials(pruned, study, n_below)
        n_below = max(0, n_below - len(below_pruned))
        n_below = min(n_below, len(infeasible))
        ranked = sorted(infeasible, key=score)  # tpe._split_infeasible_trials, with the kept scores
        below = below_complete + below_pruned + ranked[:n_below]
        above = above_complete + above_pruned + ranked[n_below:] + running
        below.sort(key=lambda trial: trial.number)
        above.sort(key=lambda trial: trial.number)
        return below, above

    def _tuner_split_complete(
        self, complete: list[FrozenTrial], study: optuna.Study, n_below: int
    ) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """Optuna's ``_split_complete_trials``, run on the trials of the first non-domination
        fronts only (their own fronts are the same; the "below" trials lie in them).

        With several objectives Optuna peels fronts off all feasible complete trials at every fit
        until 10% of them are ranked: 103 of 486 CPU s at 30,000 trials (cProfile of
        bench/bench_trials_per_s.py --sampler tpe, 0.22 s a batch). Its split depends only on
        fronts 0..T, T the first front where the count of trials ranked passes ``n_below``, and a
        trial's fronts are closed under domination (whoever dominates a trial of front k is in a
        front before k), so Optuna's split of the trials of fronts 0..T gives the same "below"
        trials (the hypervolume tie-break sees the same points of front T in the same order).
        Adding trials never lowers a trial's rank, so the trials of fronts 0..D, D kept from the
        last fit, plus the trials completed since, hold every trial of the new fronts 0..D, ranked
        as in the whole set: only they are peeled, until D falls short of T (then all again)."""
        from optuna.samplers._tpe import sampler as tpe

        n = min(n_below, len(complete))
        if len(study.directions) <= 1 or not 0 < n < len(complete):
            return tpe._split_complete_trials(complete, study, n_below)
        signs = [-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions]
        key = (id(study._storage), study._study_id, tuple(signs))
        fronts = None
        state = self._tuner_fronts
        if state is not None and state[0] == key:
            _, covered, kept, depth = state
            subset = [t for t in complete if t._trial_id in kept or t._trial_id not in covered]
            n_covered = sum(1 for t in complete if t._trial_id in covered)
            if n_covered == len(covered):  # every trial of the last fit is still there (same study)
                ranks = _front_ranks(subset, signs, max_depth=depth)
                fronts = _first_fronts(subset, ranks, n)
                if fronts is not None:
                    self._tuner_fronts = (key, {t._trial_id for t in complete}, _ids(subset, ranks >= 0), depth)
        if fronts is None:
            # Peeled beyond what this fit needs (half as many trials again), so that the next fits
            # peel only the kept fronts for a while.
            ranks = _front_ranks(complete, signs, min_count=n + n // 2 + 1)
            fronts = _first_fronts(complete, ranks, n)
            if fronts is None:  # cannot happen: more than n trials are ranked, or all of them
                raise RuntimeError(f"TPE split: fronts of {len(complete)} trials do not rank {n}")
            self._tuner_fronts = (key, {t._trial_id for t in complete}, _ids(complete, ranks >= 0), int(ranks.max()))
        below, _ = tpe._split_complete_trials(fronts, study, n)
        chosen = {t._trial_id for t in below}
        return below, [t for t in complete if t._trial_id not in chosen]

    def _get_internal_repr(
        self, trials: list[FrozenTrial], search_space: dict[str, Any], study: optuna.Study
    ) -> dict[str, np.ndarray]:
        """Optuna's ``TPESampler._get_internal_repr`` (each trial's params as choice indices, one
        array per dimension), with each finished trial's indices kept: a finished trial's params
        never change, and Optuna converts every trial's params again at every fit (two fits per
        batch, 10 x trials ``to_internal_repr`` calls each: 70 ms at 10,000 trials under cProfile).
        Categorical spaces only (their indices are ints, so the arrays are Optuna's int64 ones)."""
        from optuna.distributions import CategoricalDistribution

        if not trials or not all(isinstance(d, CategoricalDistribution) for d in search_space.values()):
            return super()._get_internal_repr(trials, search_space, study)
        space = tuple(search_space.items())
        if self._tuner_repr[0] != space:
            self._tuner_repr = (space, {}, [np.zeros((1024, len(space)), dtype=np.int64), 0])
        _, known, kept = self._tuner_repr
        positions = [known.get(trial._trial_id) for trial in trials]
        if None in positions:
            fresh = [i for i, p in enumerate(positions) if p is None]
            if not all(trials[i].state.is_finished() for i in fresh):  # rows that may change: not kept
                return self._tuner_rows(trials, space, study)
            for i in fresh:
                row = self._tuner_row(trials[i], space, study)
                if row is None:
                    positions[i] = known[trials[i]._trial_id] = -1
                    continue
                table, size = kept
                if size == len(table):
                    table = kept[0] = np.concatenate([table, np.zeros_like(table)])
                table[size] = row
                positions[i] = known[trials[i]._trial_id] = size
                kept[1] = size + 1
        at = np.array(positions, dtype=np.int64)
        at = at[at >= 0]
        if not len(at):
            return super()._get_internal_repr(trials, search_space, study)
        # One gather of the kept rows (the same int64 indices Optuna's arrays hold); a trial's
        # rows were a Python tuple per trial and np.array of them at every fit: 23 of 486 CPU s
        # at 30,000 trials (cProfile of bench/bench_trials_per_s.py --sampler tpe).
        rows = kept[0][at]
        return {name: np.ascontiguousarray(rows[:, j]) for j, (name, _) in enumerate(space)}

    def _tuner_row(self, trial: FrozenTrial, space: tuple, study: optuna.Study) -> tuple | None:
        """The trial's choice indices, in the space's order; None when it lacks a dimension."""
        params = self._get_params(trial, study)
        if not all(name in params for name, _ in space):
            return None
        return tuple(d.to_internal_repr(params[name]) for name, d in space)

    def _tuner_rows(self, trials: list[FrozenTrial], space: tuple, study: optuna.Study) -> dict[str, np.ndarray]:
        """The arrays built from every trial's params (a running trial among them)."""
        rows = [row for row in (self._tuner_row(t, space, study) for t in trials) if row is not None]
        if not rows:
            return super()._get_internal_repr(trials, dict(space), study)
        table = np.array(rows)
        return {name: np.ascontiguousarray(table[:, j]) for j, (name, _) in enumerate(space)}

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        """Optuna's (the intersection of the completed and pruned trials' distributions), computed
        again only when one of those is added: between, it cannot change. Optuna's returns a deep
        copy, and compares every new trial's distributions: 42 of 486 CPU s at 30,000 trials
        (cProfile of bench/bench_trials_per_s.py --sampler tpe). Each ask gets its own dict of the
        same distribution objects (never modified by Optuna's sampling)."""
        done = self._tuner_done(study)
        if self._tuner_space is not None and self._tuner_space[0] == len(done):
            return dict(self._tuner_space[1])
        if not self._multivariate or self._group:
            self._tuner_space = (len(done), super().infer_relative_search_space(study, trial))
            return dict(self._tuner_space[1])
        # Optuna's IntersectionSearchSpace(include_pruned=True) is the intersection of the
        # COMPLETE and PRUNED trials' distributions (the running ones only move its cache), i.e.
        # of ``done``'s. It compares each trial's distributions with ``==``, choice by choice for
        # a categorical one: 330,010 CategoricalDistribution.__eq__ calls, 7.4 of 14 profiled s
        # of a resume at 30,000 trials (each of them once per resume). Here a run of trials
        # sharing one distributions dict (a resumed study's do: tuner.compact.sampler_history)
        # is compared once, and only the trials done since the last call are looked at.
        known, intersection, last = self._tuner_intersection
        if known > len(done):
            known, intersection, last = 0, None, None
        for t in done[known:]:
            if t.distributions is last:  # the dict just intersected
                continue
            last = t.distributions
            if intersection is None:
                intersection = dict(last)
            else:
                intersection = {n: d for n, d in intersection.items() if last.get(n) == d}
        self._tuner_intersection = (len(done), intersection, last)
        # As Optuna returns it: sorted by name (optuna/search_space/intersection.py), a deep
        # copy, without single-choice distributions (TPESampler.infer_relative_search_space).
        space = copy.deepcopy(dict(sorted((intersection or {}).items())))
        self._tuner_space = (len(done), {n: d for n, d in space.items() if not d.single()})
        return dict(self._tuner_space[1])

    def _sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        # Optuna's TPESampler._sample_relative, with the completed trials counted by _tuner_done.
        if search_space == {} or len(self._tuner_history(study)) < self._n_startup_trials:
            return {}
        return self._sample(study, trial, search_space)

    def _sample(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        from optuna.samplers._tpe.sampler import default_gamma, default_gamma_multiobjective

        done = self._tuner_history(study)
        # Renewed when a trial completes (a bounded history can keep its length as it moves on).
        key = (len(self._tuner_done(study)), tuple(sorted(search_space)))
        if self._tuner_fitted is None or self._tuner_fitted[0] != key:
            if self._gamma is None:
                self._gamma = default_gamma if len(study.directions) <= 1 else default_gamma_multiobjective
            below, above = self._tuner_split(study, done, self._gamma(len(done)))
            mpe_below = self._build_parzen_estimator(study, search_space, below, handle_below=True)
            mpe_above = self._build_parzen_estimator(study, search_space, above, handle_below=False)
            self._tuner_fitted = (key, mpe_below, mpe_above)
            self._tuner_acquisition = _CategoricalAcquisition.of(mpe_below, mpe_above)
            self._tuner_draw = _CategoricalDraw.of(mpe_below)
        _, mpe_below, mpe_above = self._tuner_fitted
        if self._tuner_draw is not None:
            samples_below = mpe_below._untransform(self._tuner_draw(self._rng.rng, self._n_ei_candidates))
        else:
            samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        if self._tuner_acquisition is not None:
            values = self._tuner_acquisition(mpe_below._transform(samples_below))
        else:  # a numerical dimension: Optuna's own evaluation
            values = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        chosen = optuna.samplers.TPESampler._compare(samples_below, values)
        return {name: dist.to_external_repr(chosen[name]) for name, dist in search_space.items()}


def _ids(trials: list[FrozenTrial], mask: np.ndarray) -> set[int]:
    return {t._trial_id for t, keep in zip(trials, mask.tolist(), strict=True) if keep}


def _front_ranks(
    trials: list[FrozenTrial], signs: list[float], *, max_depth: int | None = None, min_count: int | None = None
) -> np.ndarray:
    """Each trial's non-domination rank (0 for the Pareto front), -1 where not peeled: fronts are
    peeled, with Optuna's own front test on its unique lexsorted loss values (as
    ``_calculate_nondomination_rank``), through front ``max_depth`` or until ``min_count``
    trials are ranked."""
    from optuna.study._multi_objective import _is_pareto_front

    lvals = np.array([t.values for t in trials])
    lvals *= signs  # as Optuna's _split_complete_trials_multi_objective
    unique, inverse = np.unique(lvals, return_inverse=True, axis=0)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse, minlength=len(unique))
    ranks = np.full(len(unique), -1, dtype=int)
    remaining = np.arange(len(unique))
    rank = ranked = 0
    while len(remaining) and (max_depth is None or rank <= max_depth) and (min_count is None or ranked < min_count):
        on_front = _is_pareto_front(unique, assume_unique_lexsorted=True)
        ranks[remaining[on_front]] = rank
        ranked += int(counts[remaining[on_front]].sum())
        remaining, unique = remaining[~on_front], unique[~on_front]
        rank += 1
    return ranks[inverse]


def _first_fronts(trials: list[FrozenTrial], ranks: np.ndarray, n_below: int) -> list[FrozenTrial] | None:
    """The trials of fronts 0..T (in the given order), T the first front where the trials ranked
    pass ``n_below``; None when the peeled fronts do not get there."""
    counts = np.bincount(ranks[ranks >= 0])
    past = np.nonzero(np.cumsum(counts) > n_below)[0]
    if not len(past):
        return None
    last = int(past[0])
    return [t for t, r in zip(trials, ranks.tolist(), strict=True) if 0 <= r <= last]


class _CategoricalDraw:
    """Optuna's ``_ParzenEstimator.sample`` over a categorical space, for one fit: the same random
    numbers drawn in the same order (the components with ``rng.choice`` on the mixture weights,
    then ``rng.rand`` per dimension) and the same choices (the count of a component's cumulative
    weights below the number, the last set to 1). The cumulative weights are taken once per fit
    instead of for the drawn components at every ask, with Optuna's check that they end at 1
    (``np.isclose``) on every component once (Optuna's own draw where one does not): Optuna's
    draw, ten small array operations per dimension, was 14.5 of 74 CPU s of a 10,000-trial TPE search (cProfile of
    bench/bench_trials_per_s.py --sampler tpe). A row's cumulative sum does not depend on the
    other rows taken with it, so the arrays are bit for bit Optuna's (tests/tuner/test_batch_tpe.py).
    Why not the public API: the mixture is ``_ParzenEstimator._mixture_distribution``, private."""

    def __init__(self, weights: np.ndarray, cumulative: list[np.ndarray]):
        self._weights, self._cumulative = weights, cumulative

    @classmethod
    def of(cls, mpe: Any) -> _CategoricalDraw | None:
        """None when a dimension is not categorical (Optuna's own sample then)."""
        from optuna.samplers._tpe.probability_distributions import _BatchedCategoricalDistributions

        mixture = mpe._mixture_distribution
        if not all(type(d) is _BatchedCategoricalDistributions for d in mixture.distributions):
            return None
        cumulative = []
        for d in mixture.distributions:
            cum_probs = np.cumsum(d.weights, axis=-1)
            if not np.isclose(cum_probs[:, -1], 1).all():
                return None  # Optuna's own sample (which asserts this on the components it draws)
            cum_probs[:, -1] = 1  # Avoid numerical errors (Optuna's words and step).
            cumulative.append(cum_probs)
        return cls(mixture.weights, cumulative)

    def __call__(self, rng: np.random.RandomState, batch_size: int) -> np.ndarray:
        active_indices = rng.choice(len(self._weights), p=self._weights, size=batch_size)
        ret = np.empty((batch_size, len(self._cumulative)), dtype=float)
        for i, cum_probs in enumerate(self._cumulative):
            rnd_quantile = rng.rand(batch_size)
            ret[:, i] = np.sum(cum_probs[active_indices] < rnd_quantile[:, np.newaxis], axis=-1)
        return ret


class _CategoricalAcquisition:
    """TPE's acquisition function, log l(x) - log g(x), over a categorical space, for one fit.

    Optuna's ``_MixtureOfProductDistribution.log_pdf`` evaluates, on every ask, the log-density of
    each of the ``n_ei_candidates`` candidates under every component of the "below" and "above"
    mixtures: per dimension it gathers the components' weights of the candidate's choice and takes
    their log, then adds the log mixture weights and reduces with log-sum-exp. The "above" mixture
    holds about 0.9 x trials components, so at 30,000 trials each ask costs 24 x 27,000 logs per
    dimension (cProfile of bench/bench_trials_per_s.py --sampler tpe: most of the ask). Within a
    batch the fit does not change, so here (1) the logs of the components' weight tables are taken
    once per fit (a dimension's table is components x choices), and a candidate's per-component
    terms are rows gathered from them; (2) a configuration's value is kept for the rest of the
    batch, since TPE draws its candidates around the same few good points and a batch's asks draw
    the same configurations again.

    The arithmetic is Optuna's, operation for operation and in the same order (a zero array, plus
    each dimension's log weights in the search space's order, plus the log mixture weights, then
    ``log(sum(exp(x - max))) + max`` along the components), on the candidate's own row: a row's
    result does not depend on the other rows evaluated with it, so the values, and the candidate
    chosen, are bit for bit Optuna's (tests/tuner/test_batch_tpe.py compares them).

    Why not the public API: the mixtures are ``_ParzenEstimator._mixture_distribution``
    (``weights``, and ``distributions`` of ``_BatchedCategoricalDistributions``), private.
    """

    def __init__(self, below: tuple, above: tuple):
        self._below, self._above = below, above
        self._known: dict[bytes, float] = {}

    @classmethod
    def of(cls, mpe_below: Any, mpe_above: Any) -> _CategoricalAcquisition | None:
        """None when a dimension is not categorical (Optuna's own log_pdf then)."""
        from optuna.samplers._tpe.probability_distributions import _BatchedCategoricalDistributions

        tables = []
        for mpe in (mpe_below, mpe_above):
            mixture = mpe._mixture_distribution
            if not all(isinstance(d, _BatchedCategoricalDistributions) for d in mixture.distributions):
                return None
            # Choices x components, so that a candidate's terms are one contiguous row.
            logs = [np.ascontiguousarray(np.log(d.weights).T) for d in mixture.distributions]
            log_weights = np.log(mixture.weights)
            tables.append((log_weights, logs, cls._stacked(logs, log_weights)))
        return cls(tables[0], tables[1])

    @staticmethod
    def _stacked(logs: list[np.ndarray], log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Every dimension's table stacked (all choices x components), then the log mixture
        weights as the last row (added last, as Optuna adds them), with each dimension's first
        row; None where a weight is zero (a one-hot product would give 0 x -inf = NaN)."""
        stacked = np.concatenate([*logs, log_weights[np.newaxis]])
        if not np.isfinite(stacked).all():
            return None
        return stacked, np.cumsum([0] + [len(t) for t in logs[:-1]])

    @staticmethod
    def _log_pdf(table: tuple, x: np.ndarray) -> np.ndarray:
        log_weights, logs, stacked = table
        if stacked is not None:
            # The sum of each candidate's per-dimension terms as one BLAS product: a one-hot row
            # (1.0 at the candidate's choice of each dimension) times the stacked tables. Each
            # product is exact (1.0 x term, 0.0 x term), and OpenBLAS accumulates the 50-odd rows
            # of one product in order from zero, as Optuna's loop does: test_batch_tpe.py checks the
            # values bit for bit against Optuna's on the pinned numpy.
            table_rows, first_rows = stacked
            one_hot = np.zeros((len(x), len(table_rows)), dtype=np.float64)
            one_hot[np.arange(len(x))[:, None], x + first_rows] = 1.0
            one_hot[:, -1] = 1.0  # the log mixture weights' row
            weighted_log_pdf = one_hot @ table_rows
        else:
            weighted_log_pdf = np.zeros((len(x), len(log_weights)), dtype=np.float64)
            for i, log_dim in enumerate(logs):
                weighted_log_pdf += log_dim[x[:, i]]
            weighted_log_pdf += log_weights[np.newaxis]
        max_ = weighted_log_pdf.max(axis=1)
        max_[np.isneginf(max_)] = 0  # as Optuna: no (-inf) - (-inf) where the density is zero
        # Optuna's log(sum(exp(x - max))) + max, in place (the same operations, no temporaries).
        np.subtract(weighted_log_pdf, max_[:, None], out=weighted_log_pdf)
        np.exp(weighted_log_pdf, out=weighted_log_pdf)
        with np.errstate(divide="ignore"):
            return np.log(weighted_log_pdf.sum(axis=1)) + max_

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """log l - log g at each row of ``samples`` (candidates x dimensions, internal indices)."""
        x = samples.astype(np.int64)
        keys = [row.tobytes() for row in x]
        new = {k: i for i, k in enumerate(keys) if k not in self._known}
        if new:
            rows = x[list(new.values())]
            values = self._log_pdf(self._below, rows) - self._log_pdf(self._above, rows)
            self._known.update(zip(new, values.tolist(), strict=True))
        return np.array([self._known[k] for k in keys], dtype=np.float64)
