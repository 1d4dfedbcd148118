"""The exhaustive sampler at scale: stream the space in chunks, keep the exact front, write in bulk.

The space is walked by *flat position* (the candidate's index in the cartesian product of the
dimensions, :mod:`tuner.compact`), in ranges claimed through a small table of ours
(:data:`CHUNKS_TABLE`, one row per range: who claimed it, when, and whether its trials are
written). Each range is

1. filtered to the structurally possible candidates not yet stored,
2. scored with one vectorized cost-model call,
3. merged into a running set of feasible non-dominated points (:func:`merge_front`: numpy, the
   front stays small, so each chunk costs O(chunk x front)),
4. written in one transaction with its range marked done (:func:`write_chunk`): rows built from
   the numpy arrays and inserted with the driver's ``executemany``, no ``FrozenTrial`` per row.

Ranges are sized by time (:data:`CHUNK_TARGET_S`), so a SIGKILL loses at most about that much
work: the range it was scoring stays claimed but not done, and is claimed again once its claimer
is gone (same host, process dead) or its claim is older than :data:`STALE_CLAIM_S`; a reclaimed
range skips the candidates already stored. Several ``tuner worker`` processes claim different
ranges, so each candidate is scored once. With ``store_all=False`` a range writes only its
candidates on the running front (every point of the final front is on the running front when its
range is scored, so the stored trials hold the exact front) and a deterministic sample (flat
positions divisible by a stride: about :data:`SAMPLE_SIZE` of the space).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
from optuna.distributions import distribution_to_json
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tuner import compact
from tuner.constraints import CONSTRAINT_LIST_ATTR
from tuner.optuna_internals import write_points

T = TypeVar("T")

#: Our table of claimed ranges (Optuna's schema is left as Optuna made it).
CHUNKS_TABLE = "tuner_exhaustive_chunks"
#: Wall time one range should take (score and write): what a SIGKILL can lose.
CHUNK_TARGET_S = 0.5
#: A claim this old with its range not done is taken over (a worker on another host died).
STALE_CLAIM_S = 120.0
#: How long a worker waits before claiming again while every range left is claimed by a live
#: worker: that worker may give its range back part-way (its --trials share reached), and the
#: candidates left in it are then this worker's to score.
CLAIM_POLL_S = 0.25
#: Candidates the --no-store-all sample keeps beside the front, over the whole space.
SAMPLE_SIZE = 1_000
_FIRST_CHUNK, _MIN_CHUNK, _MAX_CHUNK = 8_192, 1_024, 1_000_000
#: SQLite page cache of a bulk-writing connection, KiB (SQLite's default is 2,000 KiB).
_SQLITE_CACHE_KIB = 65_536


@dataclass
class Front:
    """The running feasible non-dominated set: flat positions and minimized objective values."""

    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    points: np.ndarray | None = None


def nondominated_mask(points: np.ndarray) -> np.ndarray:
    """Rows no other row dominates (all minimized); equal rows are all kept. Vectorized per front
    point: sort by the first objective, then repeatedly keep the first remaining row and drop
    what it dominates (:func:`tuner.pareto.nondominated` on raw points)."""
    from tuner.pareto import nondominated

    return nondominated(points)


def merge_front(front: Front, positions: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Merge feasible candidates into the front; returns the mask of those now on it."""
    if front.points is None:
        front.points = np.zeros((0, points.shape[1]))
    both = np.concatenate([front.points, points])
    keep = nondominated_mask(both)
    old = len(front.positions)
    front.positions = np.concatenate([front.positions, positions])[keep]
    front.points = both[keep]
    return keep[old:]


def _ensure_table(storage: RDBStorage) -> None:
    from sqlalchemy import exc as sa_exc

    from tuner.storage import is_creation_race

    try:
        with storage.engine.begin() as connection:
            connection.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {CHUNKS_TABLE} (study_id INTEGER NOT NULL, begin_pos BIGINT NOT NULL,"
                    " end_pos BIGINT NOT NULL, done INTEGER NOT NULL, host VARCHAR(255), pid INTEGER,"
                    " claimed_at FLOAT, PRIMARY KEY (study_id, begin_pos))"
                )
            )
    except sa_exc.SQLAlchemyError as error:
        # Workers starting together on a new server database: PostgreSQL's CREATE TABLE IF NOT
        # EXISTS is not atomic, and the loser of the race gets a unique violation on its catalog
        # (pg_type) once the winner commits; the table is there then.
        if not is_creation_race(error):
            raise


def _claimer_gone(host: str | None, pid: int | None, claimed_at: float | None, now: float) -> bool:
    if claimed_at is None or now - claimed_at > STALE_CLAIM_S:
        return True
    if host == socket.gethostname() and pid is not None:
        if pid == os.getpid():
            return True  # an earlier run of this process (a test calling run_search twice)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def claim(storage: RDBStorage, study_id: int, size: int, length: int) -> tuple[int, int, bool] | None:
    """Claim a range of flat positions: a stale one first, else the next new one of ``length``.
    Returns ``(begin, end, reclaimed)``, or None when every range is done or claimed by a live
    process. Serialized like trial writes (SQLite: the writer lock; servers: the study row)."""
    from tuner.storage import hold_sqlite_write_lock, sqlite_writer_lock

    now = time.time()
    with sqlite_writer_lock(storage), storage.engine.begin() as connection:
        hold_sqlite_write_lock(connection)  # two claimers never read the same free range
        if storage.engine.dialect.name != "sqlite":
            connection.execute(text("SELECT study_id FROM studies WHERE study_id = :s FOR UPDATE"), {"s": study_id})
        rows = connection.execute(
            text(
                f"SELECT begin_pos, end_pos, host, pid, claimed_at FROM {CHUNKS_TABLE} WHERE study_id = :s AND done = 0"
            ),
            {"s": study_id},
        ).all()
        mine = {"s": study_id, "h": socket.gethostname(), "p": os.getpid(), "t": now}
        for begin, end, host, pid, claimed_at in rows:
            if _claimer_gone(host, pid, claimed_at, now):
                connection.execute(
                    text(
                        f"UPDATE {CHUNKS_TABLE} SET host = :h, pid = :p, claimed_at = :t"
                        " WHERE study_id = :s AND begin_pos = :b"
                    ),
                    {**mine, "b": begin},
                )
                return int(begin), int(end), True
        top = connection.execute(
            text(f"SELECT MAX(end_pos) FROM {CHUNKS_TABLE} WHERE study_id = :s"), {"s": study_id}
        ).scalar()
        begin = int(top or 0)
        if begin >= size:
            return None
        end = min(size, begin + length)
        connection.execute(
            text(f"INSERT INTO {CHUNKS_TABLE} VALUES (:s, :b, :e, 0, :h, :p, :t)"), {**mine, "b": begin, "e": end}
        )
        return begin, end, False


def ranges_undone(storage: RDBStorage, study_id: int) -> int:
    """Claimed ranges not done yet (by live workers, where :func:`claim` found none to take)."""
    with storage.engine.connect() as connection:
        count = connection.execute(
            text(f"SELECT COUNT(*) FROM {CHUNKS_TABLE} WHERE study_id = :s AND done = 0"), {"s": study_id}
        ).scalar()
    return int(count or 0)


def release(storage: RDBStorage, study_id: int, begin: int) -> None:
    """Give a claimed range back undone (the budget or share stopped it part-way)."""
    with storage.engine.begin() as connection:
        connection.execute(
            text(f"UPDATE {CHUNKS_TABLE} SET claimed_at = NULL WHERE study_id = :s AND begin_pos = :b"),
            {"s": study_id, "b": begin},
        )


def stored_in_range(storage: RDBStorage, study_id: int, begin: int, end: int) -> np.ndarray:
    """Flat positions of the study's compact trials within [begin, end) (a reclaimed range)."""
    with storage.engine.connect() as connection:
        values = (
            connection.execute(
                text(
                    "SELECT p.param_value FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id "
                    "WHERE t.study_id = :s AND p.param_name = :n AND p.param_value >= :b AND p.param_value < :e"
                ),
                {"s": study_id, "n": compact.CONFIGURATION_PARAM, "b": float(begin), "e": float(end)},
            )
            .scalars()
            .all()
        )
    return np.asarray(values, dtype=np.float64).astype(np.int64)


def write_chunk(
    storage: RDBStorage,
    study_id: int,
    positions: np.ndarray,
    values: np.ndarray,
    constraints: dict[str, np.ndarray],
    distribution_json: str,
    budget: int | None,
    done_begin: int | None,
    retry_url: str | None = None,
    also: Callable[[Any, int, int], None] | None = None,
) -> int:
    """Insert compact COMPLETE trials (Optuna's tables, the rows ``RDBStorage`` itself writes) and
    mark range ``done_begin`` done, in one transaction; with ``budget`` only as many as keep the
    study at or under it (the range then stays undone). Returns how many were written.
    ``retry_url``: transient database errors (a server restart) run the whole transaction again
    for up to :data:`tuner.storage.RETRY_FOR_S` (:func:`tuner.storage.with_retries`), as trial
    writes of a sampled search do; others become one :class:`~tuner.storage.StorageError`.
    ``also(connection, number, trial_id)``: called in the same transaction, with the number and
    id of the last trial written, when every row was written (the NSGA-II search stores its
    parents there: ``tuner.study._BulkTrials``)."""
    from tuner.storage import storage_errors, storage_url, with_retries

    args = (storage, study_id, positions, values, constraints, distribution_json, budget, done_begin, also)
    with storage_errors(storage_url(storage)):
        if retry_url is None:
            return _write_chunk_once(*args)
        return with_retries(lambda: _write_chunk_once(*args), retry_url)


def _write_chunk_once(
    storage: RDBStorage,
    study_id: int,
    positions: np.ndarray,
    values: np.ndarray,
    constraints: dict[str, np.ndarray],
    distribution_json: str,
    budget: int | None,
    done_begin: int | None,
    also: Callable[[Any, int, int], None] | None = None,
) -> int:
    from tuner.storage import hold_sqlite_write_lock, sqlite_writer_lock

    with sqlite_writer_lock(storage), storage.engine.begin() as connection:
        hold_sqlite_write_lock(connection)  # the count below and the insert in one write transaction
        sqlite = storage.engine.dialect.name == "sqlite"
        mark = "?" if sqlite else "%s"
        if not sqlite:
            connection.execute(text("SELECT study_id FROM studies WHERE study_id = :s FOR UPDATE"), {"s": study_id})
        if (
            done_begin is not None
            and connection.execute(
                text(f"SELECT done FROM {CHUNKS_TABLE} WHERE study_id = :s AND begin_pos = :b"),
                {"s": study_id, "b": done_begin},
            ).scalar()
        ):
            # A retry after a commit whose answer was lost (the connection dropped during it): the
            # range is marked done only with every one of its rows, so they are written already.
            return len(positions)
        # The study's trial count, as the next trial's number: numbers run 0..n-1 in trial-id
        # order (Optuna numbers a trial by the trials before it, and so do this project's
        # serialized writers), so it is the newest trial's number + 1, one index seek, where
        # COUNT(*) walked the whole study index on every chunk (5 s of a 1,000,000-trial sweep).
        last = connection.execute(
            text("SELECT number FROM trials WHERE study_id = :s ORDER BY trial_id DESC LIMIT 1"), {"s": study_id}
        ).scalar()
        start = 0 if last is None else int(last) + 1
        n = len(positions)
        if budget is not None:
            n = max(0, min(n, budget - start))
        if n:
            if sqlite:
                # Index pages of a million-trial study outgrow SQLite's default 2 MB page cache; a
                # larger one (this connection only, memory, nothing on disk) keeps them in memory.
                connection.exec_driver_sql(f"PRAGMA cache_size = {-_SQLITE_CACHE_KIB}")
            now = datetime.now(UTC).replace(tzinfo=None)  # Optuna stores naive UTC
            stamp: object = str(now) if sqlite else now
            # The new trials' ids are the study's ids above the largest one before the insert (ids
            # only grow, and writers of the study are serialized): a range seek on the study index,
            # where ``number >= start`` scanned every trial of the study in each chunk.
            before = connection.execute(text("SELECT MAX(trial_id) FROM trials")).scalar() or 0
            connection.exec_driver_sql(
                "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) "
                f"VALUES ({mark}, {mark}, 'COMPLETE', {mark}, {mark})",
                [(start + i, study_id, stamp, stamp) for i in range(n)],
            )
            ids = np.asarray(
                connection.execute(
                    text("SELECT trial_id FROM trials WHERE study_id = :s AND trial_id > :b ORDER BY trial_id"),
                    {"s": study_id, "b": before},
                )
                .scalars()
                .all(),
                dtype=np.int64,
            )
            if len(ids) != n:
                raise RuntimeError(f"wrote {n} trials but found {len(ids)} new trial ids")
            id_list = ids.tolist()
            # Trial by trial (objective 0, 1, ... of one trial, then the next): the unique index
            # on (trial_id, objective) is appended to instead of filled in between.
            k = values.shape[1]
            column = np.ascontiguousarray(values[:n], dtype=np.float64).reshape(-1)
            finite = np.isfinite(column)
            kinds = np.where(finite, "FINITE", np.where(column > 0, "INF_POS", "INF_NEG")).tolist()
            stored: list[float | None] = list(column.tolist())
            for i in np.flatnonzero(~finite).tolist():
                stored[i] = None
            rows = list(zip(np.repeat(ids, k).tolist(), np.tile(np.arange(k), n).tolist(), stored, kinds, strict=True))
            connection.exec_driver_sql(
                "INSERT INTO trial_values (trial_id, objective, value, value_type)"
                f" VALUES ({mark}, {mark}, {mark}, {mark})",
                rows,
            )
            connection.exec_driver_sql(
                "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
                f"VALUES ({mark}, {mark}, {mark}, {mark})",
                [
                    (trial_id, compact.CONFIGURATION_PARAM, float(p), distribution_json)
                    for trial_id, p in zip(id_list, positions[:n].tolist(), strict=True)
                ],
            )
            feasible = np.ones(n, dtype=bool)
            for column in constraints.values():
                feasible &= column[:n] <= 0  # NaN is not <= 0
            blobs = np.ascontiguousarray(values[:n], dtype="<f8")
            write_points(
                connection,
                [
                    (t, study_id, start + i, ok, blobs[i].tobytes())
                    for i, (t, ok) in enumerate(zip(id_list, feasible.astype(int).tolist(), strict=True))
                ],
            )
            # A compact trial's feasibility is in the points table and its named constraints are
            # recomputed when it is read (tuner.compact); Optuna's list of them is one row, what
            # plain ``optuna.load_study(...).best_trials`` reads to leave infeasible trials out
            # (json.dumps of the list: its floats' JSON joined by ", ").
            texts = [_json_floats(column[:n]) for column in constraints.values()]
            connection.exec_driver_sql(
                f"INSERT INTO trial_system_attributes (trial_id, key, value_json) VALUES ({mark}, {mark}, {mark})",
                [
                    (trial_id, CONSTRAINT_LIST_ATTR, "[" + ", ".join(row) + "]")
                    for trial_id, row in zip(id_list, zip(*texts, strict=True), strict=True)
                ]
                if texts
                else [(trial_id, CONSTRAINT_LIST_ATTR, "[]") for trial_id in id_list],
            )
            if also is not None and n == len(positions):
                also(connection, start + n - 1, id_list[-1])
        if done_begin is not None and n == len(positions):
            connection.execute(
                text(f"UPDATE {CHUNKS_TABLE} SET done = 1 WHERE study_id = :s AND begin_pos = :b"),
                {"s": study_id, "b": done_begin},
            )
        return n


def _json_floats(column: np.ndarray) -> list[str]:
    """``json.dumps`` of each float (what Optuna stores), without a call per value: a finite
    float's JSON is its ``repr``; NaN and the infinities are spelled as ``json`` spells them."""
    texts = list(map(float.__repr__, column.astype(np.float64).tolist()))
    for i in np.flatnonzero(~np.isfinite(column)).tolist():
        texts[i] = json.dumps(float(column[i]))
    return texts


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    where = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[where] == values


@dataclass
class ExhaustiveResult:
    written: int = 0
    scored: int = 0
    front: Front = field(default_factory=Front)
    budget_reached: bool = False
    finished: bool = False  # every range of the space is done
    timed_out: bool = False  # stopped because ``timeout_s`` passed (tuner search --timeout)
    #: Configurations of this run's ranges that cannot exist (structurally_valid: no engine runs
    #: them, or the hardware does not offer their chips), left out unscored and unstored.
    left_out: int = 0


def run(
    compiled,
    storage: RDBStorage,
    study_id: int,
    *,
    budget: int | None,
    share: int | None,
    timeout_s: float | None,
    start: float,
    stop: Callable[[], bool],
    on_progress: Callable[[int, int], None] | None,
    store_all: bool = True,
    held: np.ndarray | None = None,
    retry_url: str | None = None,
    retry_stop: Callable[[], bool] | None = None,
) -> ExhaustiveResult:
    """Score every candidate of the space once (shared with other workers), writing compact
    trials as it goes; see the module docstring. ``retry_url``: each database call (a whole
    transaction: the range claims, releases and reads, the writes) runs again after a transient
    error for up to :data:`tuner.storage.RETRY_FOR_S`, so a server restart costs no worker. A
    claim committed without its answer reaching us leaves a range claimed by this process, which
    its next claim takes back (:func:`_claimer_gone`); a write whose commit was lost so finds its
    range done (:func:`_write_chunk_once`). ``retry_stop`` (a worker's signal): the claims and
    reads, which hold nothing to write, stop retrying once it is true, and the run ends there
    with what it wrote."""
    from tuner.storage import with_retries

    result = ExhaustiveResult()

    def transaction(action: Callable[..., T], *args: object) -> T:
        if retry_url is None:
            return action(*args)
        return with_retries(lambda: action(*args), retry_url, stop=retry_stop)

    try:
        _sweep(
            compiled, storage, study_id, transaction, result, budget=budget, share=share, timeout_s=timeout_s,
            start=start, stop=stop, on_progress=on_progress, store_all=store_all, held=held, retry_url=retry_url,
        )  # fmt: skip
    except (SQLAlchemyError, StorageInternalError):
        if retry_stop is None or not retry_stop():
            raise
    return result


def _sweep(
    compiled,
    storage: RDBStorage,
    study_id: int,
    transaction: Callable[..., Any],
    result: ExhaustiveResult,
    *,
    budget: int | None,
    share: int | None,
    timeout_s: float | None,
    start: float,
    stop: Callable[[], bool],
    on_progress: Callable[[int, int], None] | None,
    store_all: bool,
    held: np.ndarray | None,
    retry_url: str | None,
) -> None:
    """:func:`run`'s loop, each database call through ``transaction``, filling ``result``."""
    from search_spaces.space import evaluate, structurally_valid

    transaction(_ensure_table, storage)
    names = list(compiled.space.dimensions)
    sizes = [len(c) for c in compiled.space.dimensions.values()]
    size = int(np.prod(sizes, dtype=np.int64))
    distribution_json = distribution_to_json(compact.configuration_distribution(sizes))
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in compiled.directions])
    stride = max(1, size // SAMPLE_SIZE)
    length = _FIRST_CHUNK
    # Configurations stored before this run (another sampler's trials): not scored again.
    held_sorted = np.sort(np.asarray(held if held is not None else [], dtype=np.int64))
    while True:
        if stop():
            break
        if share is not None and result.written >= share:
            break  # the share done: not a timeout, however late
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            result.timed_out = True
            break
        began = time.monotonic()
        claimed = transaction(claim, storage, study_id, size, length)
        if claimed is None:
            if transaction(ranges_undone, storage, study_id):
                # Every range left is another live worker's. It may stop part-way (its share) and
                # give the range back: wait for that or for it to finish, not end here having
                # added nothing (before: two `tuner worker --trials 100` started together on a
                # 360-candidate space, the first claimed it whole and the second added 0).
                time.sleep(CLAIM_POLL_S)
                continue
            result.finished = True
            break
        begin, end, reclaimed = claimed
        positions = np.arange(begin, end, dtype=np.int64)
        indices = compact.unflatten(positions, names, sizes)
        keep = structurally_valid(compiled, indices)
        result.left_out += int(np.count_nonzero(~keep))
        if len(held_sorted):
            keep &= ~_member(positions, held_sorted)
        if reclaimed:  # part of it may be stored already (a budget or share stopped it)
            stored = transaction(stored_in_range, storage, study_id, begin, end)
            keep &= ~np.isin(positions, stored)
        positions = positions[keep]
        indices = {k: v[keep] for k, v in indices.items()}
        if len(positions):
            evaluation = evaluate(compiled, indices)
            values = evaluation.values
            feasible = evaluation.feasible
            on_front = np.zeros(len(positions), dtype=bool)
            on_front[feasible] = merge_front(result.front, positions[feasible], values[feasible] * signs)
            write = np.ones(len(positions), dtype=bool) if store_all else on_front | (positions % stride == 0)
            limit = None if share is None else share - result.written
            rows = np.flatnonzero(write)[: limit if limit is not None else None]
            truncated = len(rows) < int(write.sum())
            written = write_chunk(
                storage,
                study_id,
                positions[rows],
                values[rows],
                {k: v[rows] for k, v in evaluation.constraint_columns.items()},
                distribution_json,
                budget,
                None if truncated else begin,
                retry_url=retry_url,
            )
            result.scored += len(positions)
            result.written += written
            if written < len(rows) or truncated:
                transaction(release, storage, study_id, begin)
                result.budget_reached = written < len(rows)
                break
        else:
            write_chunk(
                storage, study_id, positions, np.zeros((0, len(signs))), {}, distribution_json, None, begin,
                retry_url=retry_url,
            )  # fmt: skip
        if on_progress:
            on_progress(end, size)
        # Size the next range so that one takes about CHUNK_TARGET_S.
        elapsed = max(time.monotonic() - began, 1e-3)
        length = int(np.clip((end - begin) * CHUNK_TARGET_S / elapsed, _MIN_CHUNK, _MAX_CHUNK))
