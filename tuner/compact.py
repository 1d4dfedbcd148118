"""Compact trials: one integer per configuration, the breakdown recomputed on demand.

A trial as first stored here cost 3.6-5 KB of SQLite: eleven parameter rows, each carrying its
distribution's JSON (a ``batch`` list of 10^6 choices put a 7.9 MB copy of the list in every
row), plus the deployment and the full estimate as JSON user attributes. A *compact* trial keeps
only what reads need, in Optuna's own tables:

- one parameter, :data:`CONFIGURATION_PARAM`: the candidate's position in the cartesian product
  of the space's dimensions (``numpy.ravel_multi_index`` in the space's order), under an
  ``IntDistribution(0, size - 1)`` of a few bytes. The choice lists are stored once, in the
  study's spec attribute, and the space is recompiled from it;
- its objective values (Optuna's ``trial_values``) and its constraint values as Optuna's list
  (one ``constraints`` system attribute, so plain ``optuna.load_study(...).best_trials`` leaves
  infeasible trials out: issue 12 item 1; ~75 bytes a trial), nothing else in Optuna's tables;
  its feasibility (and its number and objectives again) is one row of our points table
  (:data:`tuner.optuna_internals.POINTS_TABLE`), what the front reads.

The full breakdown (deployment, ``tuner estimate`` sections, serving workload, named constraints) is
recomputed when
a trial is read (:func:`hydrate`): the cost model is deterministic and scores one candidate in
about 10 ms. The study records :data:`MODEL_VERSION_ATTR`, a hash of the model's source; a trial
read under another model version carries ``breakdown.stale = True`` so a recomputed breakdown that
may disagree with the stored objectives is flagged, never passed off as the one scored.

Studies written before this format (per-dimension categorical params, stored breakdowns) are read
unchanged: :func:`hydrate` only touches trials whose params are the single configuration index.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial

from cost_models.errors import InvalidInputError
from tuner.optuna_internals import DamagedData, trial_id

#: The one parameter of a compact trial: the candidate's flat index in the space's product.
CONFIGURATION_PARAM = "configuration"
#: Study attribute: the trial format ("compact-1"); absent on studies written before it.
FORMAT_ATTR, COMPACT_FORMAT = "trial_format", "compact-1"
#: Study attribute: :func:`model_version` when the study was created.
MODEL_VERSION_ATTR = "model_version"
#: Study attribute: the directory of the spec file that created the study, from which the stored
#: spec's relative paths (a config.json, stored by its path) are read back.
SPEC_DIR_ATTR = "spec_dir"
#: The user attribute a hydrated trial carries about its recomputed breakdown.
BREAKDOWN_ATTR = "breakdown"
#: The user attribute a serving trial read through the tuner carries (:func:`hydrating`: `tuner
#: dashboard`, ``tuner.pareto.load_study``), computed on read and never stored: its batch limit as
#: scored, what `show`, `pareto` and `export` give (``search_spaces.space.scored_params``). Optuna's
#: param ``max_batch_size`` is the label the sampler drew, and without serving.max_batch_size
#: listed that is one DP rank's engine default: a Mixtral-8x7B trial at DP 2 on H200s (vLLM) has
#: the param 256 and this 512.
SCORED_BATCH_ATTR = "max_batch_size_as_scored"
#: A float64 (Optuna's stored param value) holds every integer up to 2**53 exactly: larger
#: spaces keep the per-dimension format.
MAX_COMPACT_SIZE = 2**53


@functools.cache
def model_version() -> str:
    """A short hash of the source of the cost model and of the search-space compiler, and of the
    cost model's data (catalogs, shipped calibration profiles, serving overheads): what a stored
    trial's objectives are the output of. Changes with any edit to either package: a refitted
    profile changes a recomputed breakdown as much as an edited formula does."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for package in ("cost_models", "search_spaces"):
        files = [p for pattern in ("*.py", "*.yaml", "*.yml") for p in (root / package).rglob(pattern)]
        for path in sorted(files):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def compact_possible(sizes: Sequence[int]) -> bool:
    return float(np.prod([float(n) for n in sizes])) <= MAX_COMPACT_SIZE


def configuration_distribution(sizes: Sequence[int]) -> IntDistribution:
    return IntDistribution(0, max(int(np.prod([int(n) for n in sizes], dtype=object)) - 1, 0))


def flat_indices(indices: dict[str, np.ndarray], sizes: Sequence[int]) -> np.ndarray:
    """Flat positions of candidates given as one index array per dimension (space order)."""
    return np.ravel_multi_index(tuple(np.asarray(v, dtype=np.int64) for v in indices.values()), tuple(sizes))


def unflatten(flat: np.ndarray, names: Sequence[str], sizes: Sequence[int]) -> dict[str, np.ndarray]:
    return dict(zip(names, np.unravel_index(np.asarray(flat, dtype=np.int64), tuple(sizes)), strict=True))


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values of an int64 array, sorted: ``np.unique`` by a sort and a comparison of
    neighbours. numpy 2.4's ``np.unique`` hashes first (``_unique_hash``): 80 ms for the 200,000
    configuration indices of a resumed study, 190 ms when they come sorted, against 2-4 ms here
    (bench/bench_reads.py's study, Intel Xeon VM)."""
    ordered = np.sort(np.asarray(values, dtype=np.int64))
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def held_configurations(storage: Any, study_id: int) -> np.ndarray:
    """The flat configuration index of each COMPLETE compact trial of a study, in no particular
    order (what a resumed random, NSGA-II or exhaustive search skips).

    SQLite: the 200,000 indices of a large study as one string built by the database
    (``group_concat``) and parsed by numpy, 0.12-0.15 s of CPU where a row per trial through the
    driver's cursor (:func:`tuner.optuna_internals.configuration_indices`, what any other
    database reads) took 0.20 s, most of it making 200,000 Python tuples and floats; 0.08 s when
    the file holds this study alone, all of its trials COMPLETE (a study's own file, the
    default): then every configuration param is one of them, read without the join to
    ``trials`` (one index lookup per trial). The indices are integers below 2**53
    (:data:`MAX_COMPACT_SIZE`), exact as SQLite's REAL and as the INTEGER they are cast to."""
    from tuner import optuna_internals

    with storage.engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            return optuna_internals.configuration_indices(storage, study_id)
        trials, params = optuna_internals._TRIALS, optuna_internals._TRIAL_PARAMS
        # One statement, so one snapshot of the file: the check and the read agree. A param
        # without its trial (none is, Optuna deletes a study's params with it) fails the counts.
        # With no others, the file's params are one a trial: the configuration params are then
        # as many as the trials exactly when every trial has one (otherwise fewer are parsed
        # than counted, and the rows are read one by one), so the trials are counted (an index
        # count, 1 ms at 200,000) where counting the params scanned them a second time (25 ms).
        others, count, joined = optuna_internals._driver_rows(
            connection,
            f"SELECT others, CASE WHEN others = 0 THEN trials END,"
            f" CASE WHEN others = 0 THEN (SELECT group_concat(CAST(param_value AS INTEGER), ',') FROM {params}"
            " WHERE param_name = ?) END"
            f" FROM (SELECT (SELECT COUNT(*) FROM {trials} WHERE study_id != ? OR state != 'COMPLETE')"
            f" + (SELECT COUNT(*) FROM {params}) - (SELECT COUNT(*) FROM {trials}) AS others,"
            f" (SELECT COUNT(*) FROM {trials}) AS trials)",
            (CONFIGURATION_PARAM, study_id),
        )[0]
        if others != 0:  # other studies or unfinished trials in the file: this study's, joined
            count, joined = optuna_internals._driver_rows(
                connection,
                f"SELECT COUNT(*), group_concat(CAST(p.param_value AS INTEGER), ',') FROM {params} p"
                f" JOIN {trials} t ON t.trial_id = p.trial_id"
                " WHERE t.study_id = ? AND t.state = 'COMPLETE' AND p.param_name = ?",
                (study_id, CONFIGURATION_PARAM),
            )[0]
    parsed = integers(joined, count)
    # A NULL value (not written by this project) is left out of the list: read row by row.
    return parsed if parsed is not None else optuna_internals.configuration_indices(storage, study_id)


def integers(joined: str | None, count: int) -> np.ndarray | None:
    """The ``count`` integers of a comma-separated string (``group_concat``'s; None when no row),
    or None when it does not hold ``count`` of them (a NULL left out of the list, a token that is
    not an integer). ``np.fromstring`` parses 200,000 in 4 ms (``str.split`` and ``np.array``:
    33 ms)."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        parsed = np.fromstring(joined or "", dtype=np.int64, sep=",")
    except ValueError:  # numpy 2.4: a token it cannot read (older versions stop there quietly)
        return None
    return parsed if len(parsed) == count else None


def is_compact(trial: FrozenTrial) -> bool:
    return list(trial.params) == [CONFIGURATION_PARAM]


def check_inside_space(flat: np.ndarray, size: int) -> None:
    """Every held configuration index is one of the space's (0..size-1), as the tuner writes
    them; one outside was overwritten in the file (:class:`DamagedData`). A resume read 1e30
    (SQLite casts it to 2**63 - 1) and ended in numpy's "index ... is out of bounds" traceback."""
    outside = (flat < 0) | (flat >= max(size, 1))
    if outside.any():
        raise DamagedData(f"a configuration index {int(flat[outside][0])} is outside the space of {size:,}")


def stored_space_size(storage: Any, study_id: int) -> int | None:
    """How many configurations a compact study's trials index (their distribution's ``high`` +
    1, one row read), None without a compact trial."""
    from tuner import optuna_internals

    with storage.engine.connect() as connection:
        mark = optuna_internals._mark(connection)
        rows = optuna_internals._driver_rows(
            connection,
            f"SELECT p.distribution_json FROM {optuna_internals._TRIAL_PARAMS} p"
            f" JOIN {optuna_internals._TRIALS} t ON t.trial_id = p.trial_id"
            f" WHERE t.study_id = {mark} AND p.param_name = {mark} LIMIT 1",
            (study_id, CONFIGURATION_PARAM),
        )
    if not rows:
        return None
    return int(json.loads(rows[0][0])["attributes"]["high"]) + 1


def check_space_size(study_name: str, stored: int | None, sizes: Sequence[int]) -> None:
    """Refuse a compact study whose trials index a space of another size than its stored spec
    compiles to now: a compiler that changed a dimension's choices (fewer prefill meshes, say)
    would read each stored index as another configuration, without a word."""
    size = int(np.prod([int(n) for n in sizes], dtype=object))
    if stored is not None and stored != max(size, 1):
        raise InvalidInputError(
            "study",
            f"{study_name!r} holds trials of a space of {stored:,} configurations; this version compiles "
            f"its spec to {size:,} (a dimension's choices changed), so its trials cannot be read",
            "search again under a new name or another --storage",
        )


class Hydrator:
    """Turns compact trials of one study back into whole ones (categorical params, deployment,
    estimate, serving workload, Optuna's constraint list), from the study's stored spec."""

    def __init__(self, study_user_attrs: dict[str, Any]) -> None:
        from search_spaces.space import compile_study
        from search_spaces.spec import parse_stored_spec

        self.compiled = compile_study(parse_stored_spec(study_user_attrs["spec"], study_user_attrs.get(SPEC_DIR_ATTR)))
        self.names = list(self.compiled.space.dimensions)
        self.sizes = [len(c) for c in self.compiled.space.dimensions.values()]
        self.dists: dict[str, BaseDistribution] = {
            name: CategoricalDistribution(list(c)) for name, c in self.compiled.space.dimensions.items()
        }
        self.study_version = study_user_attrs.get(MODEL_VERSION_ATTR)
        self.study_name = str(study_user_attrs["spec"].get("name", "?"))

    def hydrate(self, trials: list[FrozenTrial], breakdown: bool = True) -> list[FrozenTrial]:
        """The trials with compact ones made whole (others as they are), in the same order.
        ``breakdown=False`` decodes the params only (what a sampler resuming a study needs)."""
        where = [i for i, t in enumerate(trials) if is_compact(t)]
        if not where:
            return trials
        stored = {trials[i].distributions.get(CONFIGURATION_PARAM) for i in where}
        for distribution in stored:
            if isinstance(distribution, IntDistribution):
                check_space_size(self.study_name, distribution.high + 1, self.sizes)
        positions = [int(trials[i].params[CONFIGURATION_PARAM]) for i in where]
        size = int(np.prod(self.sizes, dtype=object))
        outside = [(trials[i].number, p) for i, p in zip(where, positions, strict=True) if not 0 <= p < max(size, 1)]
        if outside:
            # Written by the tuner, an index is in the space (its IntDistribution's range): this
            # one was overwritten in the file. Decoded, it was an OverflowError traceback (1e30) or
            # another configuration's params (numpy's negative indices).
            number, position = outside[0]
            raise DamagedData(f"trial {number}'s configuration index {position} is outside the space of {size:,}")
        flat = np.array(positions, dtype=np.int64)
        indices = unflatten(flat, self.names, self.sizes)
        evaluation = None
        if breakdown:
            from search_spaces.space import evaluate

            # One vectorized call for all of them. numpy's reductions can round the last bit
            # differently with the batch a row sits in: a breakdown read with others may differ
            # from `show`'s (one trial) by about 1e-16 relative, never more.
            evaluation = evaluate(self.compiled, indices)
        out = list(trials)
        for row, i in enumerate(where):
            out[i] = self._whole(trials[i], indices, row, evaluation)
        return out

    def sampler_history(self, flat: np.ndarray, values: np.ndarray, chunk: int = 50_000) -> list[FrozenTrial]:
        """What a sampler resuming the study learns from: one COMPLETE trial per stored one
        (flat configuration indices and objective values (n, objectives), in trial order) with
        the categorical params and the constraints an uninterrupted search told it
        (``Trial.set_constraint`` of each constraint, recomputed: :mod:`tuner.compact` stores
        only Optuna's unnamed list), and nothing else (no breakdown, no dates' meaning: both set to one time).

        A resume read every trial whole (``get_all_trials``: 11.9 s at 30,000 trials) to decode
        the one param, and handed the sampler no constraints, so a resumed TPE took every
        infeasible trial for a feasible one. The trials share one distributions dict (they are
        added without copies: :func:`tuner.optuna_internals.add_trials_in_place`)."""
        from datetime import UTC, datetime

        from optuna.trial import TrialState

        from search_spaces.space import evaluate

        flat = np.asarray(flat, dtype=np.int64)
        check_inside_space(flat, int(np.prod(self.sizes, dtype=object)))
        at = datetime(1970, 1, 1, tzinfo=UTC)
        trials: list[FrozenTrial] = []
        for start in range(0, len(flat), chunk):  # bounded memory for a large study
            part = flat[start : start + chunk]
            indices = unflatten(part, self.names, self.sizes)
            evaluation = evaluate(self.compiled, indices)
            # In the order the search sets them (tuner.study._sample), so that the infeasibility
            # score (their positive sum) adds them in the same order.
            names = list(evaluation.constraint_columns)
            columns = [evaluation.constraint_columns[n].tolist() for n in names]
            rows = values[start : start + len(part)].tolist()
            # Each dimension's labels as one column (Space.params_of's, a dict per row: 1.7 of
            # 11.9 profiled s at 100,000 trials).
            labels = [
                [choices[i] for i in indices[name].tolist()] for name, choices in self.compiled.space.dimensions.items()
            ]
            for row, params in enumerate(zip(*labels, strict=True)):
                trials.append(
                    FrozenTrial(
                        number=start + row,
                        state=TrialState.COMPLETE,
                        value=None,
                        values=rows[row],
                        datetime_start=at,
                        datetime_complete=at,
                        params=dict(zip(self.names, params, strict=True)),
                        distributions=self.dists,
                        user_attrs={},
                        system_attrs={
                            f"constraints:{n}": column[row] for n, column in zip(names, columns, strict=True)
                        },
                        intermediate_values={},
                        trial_id=start + row,
                    )
                )
        return trials

    def feasible(self, flat: np.ndarray, chunk: int = 50_000) -> np.ndarray:
        """Whether each configuration (flat indices) meets the study's constraints, recomputed
        from the stored spec: for compact trials whose feasibility as scored is not in the side
        table (a study copied by ``optuna.copy_study``, which copies Optuna's tables only)."""
        from search_spaces.space import evaluate

        flat = np.asarray(flat, dtype=np.int64)
        out = np.zeros(len(flat), dtype=bool)
        for start in range(0, len(flat), chunk):  # bounded memory for a large study
            part = flat[start : start + chunk]
            out[start : start + len(part)] = evaluate(self.compiled, unflatten(part, self.names, self.sizes)).feasible
        return out

    def _whole(self, trial: FrozenTrial, indices: dict[str, np.ndarray], row: int, evaluation: Any) -> FrozenTrial:
        user_attrs = dict(trial.user_attrs)
        system_attrs = dict(trial.system_attrs)
        if evaluation is not None:
            # The constraints, recomputed (feasibility as scored is in the points table), named and
            # as Optuna's list, which optuna-dashboard reads to mark infeasible trials.
            for name, column in evaluation.constraint_columns.items():
                system_attrs.setdefault(f"constraints:{name}", float(column[row]))
            names = self.compiled.constraint_names
            system_attrs.setdefault("constraints", [system_attrs[f"constraints:{n}"] for n in names])
            from tuner.study import trial_attrs

            user_attrs.update(trial_attrs(self.compiled, evaluation, row))
            current = model_version()
            user_attrs[BREAKDOWN_ATTR] = {
                "recomputed": True,
                "model_version": current,
                "study_model_version": self.study_version,
                # Scored by another version of the model: the breakdown may not match the values.
                "stale": self.study_version != current,
            }
        whole = FrozenTrial(
            number=trial.number,
            state=trial.state,
            value=None,
            values=trial.values,
            datetime_start=trial.datetime_start,
            datetime_complete=trial.datetime_complete,
            params=self.compiled.space.params_of(indices, row),
            distributions=dict(self.dists),
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            intermediate_values=trial.intermediate_values,
            trial_id=trial_id(trial),
        )
        return whole


def hydrator_for(study_user_attrs: dict[str, Any]) -> Hydrator | None:
    """A hydrator when the study stores compact trials, else None."""
    if study_user_attrs.get(FORMAT_ATTR) != COMPACT_FORMAT or "spec" not in study_user_attrs:
        return None
    # (the spec's directory too: one relative config.json path in two directories is two models)
    key = (
        json.dumps(study_user_attrs["spec"], sort_keys=True),
        study_user_attrs.get(MODEL_VERSION_ATTR),
        study_user_attrs.get(SPEC_DIR_ATTR),
    )
    if key not in _HYDRATORS:  # compiling the spec is most of a hydrator's cost: once per process
        _HYDRATORS[key] = Hydrator(study_user_attrs)
    return _HYDRATORS[key]


_HYDRATORS: dict[tuple, Hydrator] = {}


def hydrating(storage: Any) -> Any:
    """A view of an ``RDBStorage`` (sharing its engine) whose trial reads return compact trials
    whole, so Optuna's own tools (``Study.get_trials``, plots, optuna-dashboard) and this
    project's readers (show, export, report) see the same trials whatever the format."""
    from tuner.optuna_internals import hydrating_storage

    return hydrating_storage(storage, _Reader.of)


def with_scored_batch_limit(trial: FrozenTrial) -> FrozenTrial:
    """The trial with :data:`SCORED_BATCH_ATTR` first among its user attributes (a copy), or as it
    is when it has no serving workload or batch-limit param (or has the attribute already). First:
    optuna-dashboard's trial page lists user attributes in order, above the long JSON of the
    serving workload and the estimate (shown cut at 1,024 characters)."""
    from search_spaces.space import scored_params
    from tuner.study import SERVING_ATTR

    serving = trial.user_attrs.get(SERVING_ATTR)
    if (
        SCORED_BATCH_ATTR in trial.user_attrs
        or "max_batch_size" not in trial.params
        or not isinstance(serving, dict)
        or serving.get("max_batch_size") is None
    ):
        return trial
    scored = scored_params({"max_batch_size": trial.params["max_batch_size"]}, serving)["max_batch_size"]
    shown = copy.copy(trial)  # shares the rest; the user attributes are a new dict
    shown.user_attrs = {SCORED_BATCH_ATTR: scored, **trial.user_attrs}
    return shown


class _Reader:
    """What :func:`hydrating`'s view passes a study's trials through: compact ones made whole
    (:class:`Hydrator`, when the study stores them), then every serving trial given
    :data:`SCORED_BATCH_ATTR` (a study in the whole format stores its breakdown, not that)."""

    def __init__(self, hydrator: Hydrator | None) -> None:
        self.hydrator = hydrator

    @classmethod
    def of(cls, study_user_attrs: dict[str, Any]) -> _Reader:
        return cls(hydrator_for(study_user_attrs))

    def hydrate(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        if self.hydrator is not None:
            trials = self.hydrator.hydrate(trials)
        return [with_scored_batch_limit(t) for t in trials]
