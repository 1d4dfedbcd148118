"""The one-row SQLite reads of a large study (``group_concat``: the database joins every value into
one string or blob, numpy parses it) give what Optuna's public API and the row-by-row readers of
tuner.optuna_internals give: the feasible points of the front (tuner.pareto.feasible_points) and
the configurations a resume skips (tuner.compact.held_configurations)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState

from tuner import compact, optuna_internals, pareto
from tuner.constraints import is_feasible
from tuner.pareto import load_study
from tuner.storage import open_storage

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "studies" / "llama-3.1-70b-h100-serving.yaml"
NAME = "llama-3.1-70b-h100-serving"


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> str:
    """The shipped serving study (TTFT and TPOT limits: some trials infeasible), 120 random
    compact trials in SQLite."""
    url = f"sqlite:///{tmp_path_factory.mktemp('agg') / 's.db'}"
    from tuner.cli import main

    assert main(["search", str(SPEC), "--storage", url, "--trials", "120", "--sampler", "random", "--json"]) == 0
    return url


def _ids(url: str) -> tuple[object, int]:
    storage = open_storage(url, create=False)
    return storage, storage.get_study_id_from_name(NAME)


def test_feasible_points_are_the_feasible_trials_in_number_order(stored: str) -> None:
    study = load_study(NAME, stored)  # Optuna's public API, every trial whole
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    feasible = [t for t in complete if is_feasible(t)]
    assert 0 < len(feasible) < len(complete) == 120
    storage, study_id = _ids(stored)
    points = pareto.feasible_points(storage, study_id, len(study.directions))
    assert points is not None
    n_complete, ids, values = points
    assert n_complete == 120
    assert ids.tolist() == [t._trial_id for t in sorted(feasible, key=lambda t: t.number)]
    np.testing.assert_array_equal(values, np.array([t.values for t in sorted(feasible, key=lambda t: t.number)]))
    # The row-by-row reader (any database) agrees.
    rows = optuna_internals.study_points(storage, study_id, len(study.directions))
    assert rows is not None and rows[0] == n_complete
    np.testing.assert_array_equal(rows[1], ids)
    np.testing.assert_array_equal(rows[2], values)


def test_feasible_points_keep_every_byte_of_the_blobs(stored: str, tmp_path: Path) -> None:
    """Objective blobs with zero bytes, signed zeros, infinities, NaN and subnormals come back
    byte for byte (``group_concat`` appends a blob as text; SQLite's text keeps NUL bytes)."""
    copy = tmp_path / "bytes.db"
    copy.write_bytes(Path(stored.removeprefix("sqlite:///")).read_bytes())
    awkward = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1.0, 2.0**-1074 * 3, -1e308, 256.0]
    with sqlite3.connect(copy) as connection:
        rows = connection.execute(
            f"SELECT trial_id FROM {optuna_internals.POINTS_TABLE} WHERE feasible = 1 ORDER BY number"
        ).fetchall()
        written = {}
        for i, (trial_id,) in enumerate(rows):
            blob = np.array([awkward[(i + k) % len(awkward)] for k in range(3)], dtype="<f8").tobytes()
            connection.execute(
                f"UPDATE {optuna_internals.POINTS_TABLE} SET objectives = ? WHERE trial_id = ?", (blob, trial_id)
            )
            written[trial_id] = blob
    storage, study_id = _ids(f"sqlite:///{copy}")
    points = pareto.feasible_points(storage, study_id, 3)
    assert points is not None
    _, ids, values = points
    assert ids.tolist() == [trial_id for (trial_id,) in rows]
    assert values.tobytes() == b"".join(written[trial_id] for (trial_id,) in rows)


def test_feasible_points_fall_back_without_a_complete_points_table(stored: str, tmp_path: Path) -> None:
    copy = tmp_path / "partial.db"
    copy.write_bytes(Path(stored.removeprefix("sqlite:///")).read_bytes())
    with sqlite3.connect(copy) as connection:
        connection.execute(
            f"DELETE FROM {optuna_internals.POINTS_TABLE} WHERE trial_id = (SELECT MAX(trial_id) FROM trials)"
        )
    storage, study_id = _ids(f"sqlite:///{copy}")
    # The study's two objectives (with 3, every blob has the wrong length: None whatever the table holds).
    assert pareto.feasible_points(storage, study_id, 2) is None  # then Optuna's tables are read


def test_unfinished_trials_do_not_hide_the_points_table(stored: str, tmp_path: Path) -> None:
    """The points table answers while a RUNNING and a FAILed trial (no row of theirs) are in the
    study, and not once a COMPLETE trial has no row: the counts' shortcut (as many rows as trials:
    every trial held) gives way to counting the COMPLETE trials (optuna_internals.HELD_AND_COMPLETE)."""
    copy = tmp_path / "unfinished.db"
    copy.write_bytes(Path(stored.removeprefix("sqlite:///")).read_bytes())
    storage, study_id = _ids(f"sqlite:///{copy}")
    storage.create_new_trial(study_id)  # RUNNING
    failed = storage.create_new_trial(study_id)
    storage.set_trial_state_values(failed, TrialState.FAIL)
    points = pareto.feasible_snapshot(storage, study_id, 2)  # the serving study's two objectives
    assert points is not None and points.n_complete == 120 and points.last_number == 119
    with storage.engine.connect() as connection:
        assert optuna_internals._points_held(connection, "?", study_id) == (120, 120)
    with sqlite3.connect(copy) as connection:
        connection.execute(
            f"DELETE FROM {optuna_internals.POINTS_TABLE} WHERE trial_id ="
            f" (SELECT MAX(trial_id) FROM {optuna_internals.POINTS_TABLE})"
        )
    assert pareto.feasible_snapshot(storage, study_id, 2) is None
    with storage.engine.connect() as connection:
        assert optuna_internals._points_held(connection, "?", study_id) == (119, 120)


def test_held_configurations_are_the_stored_configuration_params(stored: str) -> None:
    storage, study_id = _ids(stored)
    # The raw storage (not the hydrating view): compact trials with their one integer param.
    trials = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
    expected = sorted(int(t.params[compact.CONFIGURATION_PARAM]) for t in trials)
    held = compact.held_configurations(storage, study_id)
    assert held.dtype == np.int64 and sorted(held.tolist()) == expected and len(expected) == 120
    assert sorted(optuna_internals.configuration_indices(storage, study_id).tolist()) == expected
    by_trial = sorted((optuna_internals.trial_id(t), int(t.params[compact.CONFIGURATION_PARAM])) for t in trials)
    ids, flat = optuna_internals.configuration_indices_by_trial(storage, study_id)
    assert sorted(zip(ids.tolist(), flat.tolist(), strict=True)) == by_trial


@pytest.mark.parametrize("other", ["study", "running trial"])
def test_held_configurations_with_other_trials_in_the_file(stored: str, tmp_path: Path, other: str) -> None:
    """Another study's trials, or a trial of this study not COMPLETE: this study's COMPLETE
    trials only (the join), as Optuna's API lists them."""
    import optuna

    copy = tmp_path / "other.db"
    copy.write_bytes(Path(stored.removeprefix("sqlite:///")).read_bytes())
    url = f"sqlite:///{copy}"
    storage, study_id = _ids(url)
    if other == "study":
        extra = optuna.create_study(study_name="other", storage=url)
        extra.add_trial(optuna.trial.create_trial(params={compact.CONFIGURATION_PARAM: 7}, distributions={
            compact.CONFIGURATION_PARAM: optuna.distributions.IntDistribution(0, 10)}, value=1.0))  # fmt: skip
    else:
        storage.create_new_trial(study_id)  # RUNNING, no params yet
    trials = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
    expected = sorted(int(t.params[compact.CONFIGURATION_PARAM]) for t in trials)
    assert len(expected) == 120
    assert sorted(compact.held_configurations(storage, study_id).tolist()) == expected


def test_held_configurations_of_an_empty_study(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'e.db'}"
    optuna.create_study(study_name="e", storage=url)
    storage = open_storage(url, create=False)
    held = compact.held_configurations(storage, storage.get_study_id_from_name("e"))
    assert held.dtype == np.int64 and held.size == 0


def test_integers_checks_the_count() -> None:
    assert compact.integers("3,1,2", 3).tolist() == [3, 1, 2]
    assert compact.integers(None, 0).size == 0
    assert compact.integers("3,1", 3) is None  # a NULL left out of the list
    assert compact.integers("3,1,x", 3) is None  # a token numpy cannot read
    assert compact.integers("9007199254740991", 1).tolist() == [2**53 - 1]


@pytest.mark.parametrize("n", [0, 1, 2, 1000, 200_000])
def test_sorted_unique_is_numpys_unique(n: int) -> None:
    values = np.random.default_rng(n).integers(0, max(n // 3, 1), size=n)
    np.testing.assert_array_equal(compact.sorted_unique(values), np.unique(values))
    np.testing.assert_array_equal(compact.sorted_unique(np.sort(values)[::-1]), np.unique(values))
