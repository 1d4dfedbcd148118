"""Opening study storages, and writing many finished trials in one transaction.

Optuna's RDB storage commits every trial (and every attribute) separately: about 25 to 60 trials
per second into SQLite on a 2-core machine. A search here samples in memory and hands finished
trials to :class:`TrialWriter`, which inserts them into Optuna's own tables in one transaction per
flush (every half second by default: a flush is due 0.5 s after the previous one began, checked
after each batch). A crash loses at most the trials since the last flush, under a second; a
transaction is all or nothing, so the database is never left half-written, and the rows are the
ones Optuna itself writes, so ``optuna.load_study`` and optuna-dashboard read them as usual.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from optuna.distributions import distribution_to_json
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial
from sqlalchemy import func, insert, select

from cost_models.errors import InvalidInputError


def default_storage_url(study_name: str) -> str:
    """``sqlite:///studies/<name>.db``, relative to the working directory."""
    return f"sqlite:///studies/{study_name}.db"


def open_storage(url: str, *, create: bool = True) -> RDBStorage:
    """An Optuna RDB storage for any SQLAlchemy URL; bad URLs become one-line errors.

    ``create=False`` (for commands that only read) refuses a SQLite file that does not exist
    instead of creating an empty database.
    """
    if not isinstance(url, str) or "://" not in url:
        raise InvalidInputError("storage", f"not a database URL: {url!r}",
                                "use e.g. sqlite:///studies/name.db or postgresql://user@host/db")
    if url.startswith("sqlite:///") and not create:
        path = url.removeprefix("sqlite:///")
        if path not in ("", ":memory:") and not Path(path).is_file():
            raise InvalidInputError("storage", f"no database at {path}",
                                    "run tuner search first, or pass the --storage the study was saved in")
    if url.startswith("sqlite:///") and create:
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) not in ("", ":memory:"):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InvalidInputError("storage", f"cannot create {path.parent}: {error.strerror}",
                                        "use a writable path") from None
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            # Several workers may open a new SQLite file at once: one creates the schema at a time.
            with _file_lock(_sqlite_path(url)):
                return RDBStorage(url, engine_kwargs=_engine_kwargs(url))
        except ImportError as error:
            raise InvalidInputError("storage", f"no database driver for {url.split(':', 1)[0]} ({error.name})",
                                    "install it, e.g. pip install psycopg2-binary") from None
        except Exception as error:  # SQLAlchemy/Optuna raise many types for unusable URLs
            # Workers starting together on a new server database race to create Optuna's
            # tables; the losers find them made a moment later.
            racing = "already exists" in str(error) or "duplicate key" in str(error)
            if racing and attempt + 1 < _OPEN_ATTEMPTS:
                time.sleep(0.2 * (attempt + 1))
                continue
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            raise InvalidInputError("storage", f"cannot open {url}: {reason}",
                                    "check the URL, the path and the server") from None
    raise AssertionError("unreachable")


_OPEN_ATTEMPTS = 8


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        # Wait for a busy database instead of failing at once.
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


class TrialWriter:
    """Buffers finished trials and writes each buffer to one study in a single transaction."""

    def __init__(self, storage: RDBStorage, study_id: int, flush_interval_s: float = 0.5,
                 budget: int | None = None) -> None:
        self.storage = storage
        self.study_id = study_id
        self.flush_interval_s = flush_interval_s
        self.budget = budget  # the most trials the study may hold (several workers share it)
        self.pending: list[FrozenTrial] = []
        self.written = 0
        self.budget_reached = False
        self._last_flush = time.monotonic()

    def add(self, trials: list[FrozenTrial]) -> None:
        """Queue trials; flush when the interval has passed."""
        self.pending.extend(trials)
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> int:
        """Write every queued trial now; returns how many were written."""
        # The interval counts from the start of a flush, so a write's own time is inside it.
        self._last_flush = time.monotonic()
        if not self.pending:
            return 0
        batch, self.pending = self.pending, []
        written = write_trials(self.storage, self.study_id, batch, self.budget)
        self.written += written
        if written < len(batch):
            self.budget_reached = True
        return written


def write_trials(storage: RDBStorage, study_id: int, trials: list[FrozenTrial],
                 budget: int | None = None) -> int:
    """Insert finished trials (values, params, user and system attributes) in one transaction;
    returns how many were written.

    Trial numbers continue from the study's current count, in the order given. With a
    ``budget``, only as many as keep the study at or under it are written. Writers of one study
    are serialized (PostgreSQL: a row lock on the study; SQLite: a lock file beside the
    database), so numbers are unique and the budget holds with any number of workers.
    """
    with _sqlite_writer_lock(storage):
        return _write_trials_locked(storage, study_id, trials, budget)


@contextmanager
def _sqlite_writer_lock(storage: RDBStorage) -> Iterator[None]:
    """Serialize writers of a SQLite database (processes on one machine); server databases lock
    the study row in the transaction instead."""
    with _file_lock(_sqlite_path(storage.engine.url.render_as_string(hide_password=False))):
        yield


def _sqlite_path(url: str) -> str | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return path if path and path != ":memory:" else None


@contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    """An exclusive lock on ``<database>.lock``; nothing when there is no database file."""
    if not database:
        yield
        return
    with open(f"{database}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_trials_locked(storage: RDBStorage, study_id: int, trials: list[FrozenTrial],
                         budget: int | None) -> int:
    session = storage.scoped_session()
    try:
        # Lock the study row (PostgreSQL: SELECT ... FOR UPDATE) so numbers stay unique.
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        start = session.execute(
            select(func.count(models.TrialModel.trial_id)).where(models.TrialModel.study_id == study_id)
        ).scalar_one()
        if budget is not None:
            trials = trials[:max(0, budget - start)]
        if not trials:
            session.rollback()
            return 0
        now = datetime.now()
        # Optuna stores trial times as naive UTC (FrozenTrial holds naive local time).
        rows = [{"number": start + i, "study_id": study_id, "state": t.state,
                 "datetime_start": _naive_utc(t.datetime_start or now),
                 "datetime_complete": _naive_utc(t.datetime_complete or now)}
                for i, t in enumerate(trials)]
        table = models.TrialModel.__table__
        ids = session.execute(
            insert(table).returning(table.c.trial_id, sort_by_parameter_order=True), rows
        ).scalars().all()
        values, params, user_attrs, system_attrs = [], [], [], []
        for trial_id, trial in zip(ids, trials):
            for objective, value in enumerate(trial.values or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                values.append({"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind})
            for name, value in trial.params.items():
                distribution = trial.distributions[name]
                params.append({"trial_id": trial_id, "param_name": name,
                               "param_value": distribution.to_internal_repr(value),
                               "distribution_json": distribution_to_json(distribution)})
            user_attrs += [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                           for k, v in trial.user_attrs.items()]
            system_attrs += [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                             for k, v in trial.system_attrs.items()]
        for model, rows in ((models.TrialValueModel, values), (models.TrialParamModel, params),
                            (models.TrialUserAttributeModel, user_attrs),
                            (models.TrialSystemAttributeModel, system_attrs)):
            if rows:  # Core executemany on the table: no ORM unit of work per row
                session.execute(insert(model.__table__), rows)
        session.commit()
        return len(trials)
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def find_study_id(storage: RDBStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def study_names(storage: RDBStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]

