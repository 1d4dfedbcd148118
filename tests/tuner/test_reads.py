"""The fast reads of pareto, show and studies (a few column queries on Optuna's tables, then only
the trials shown) give exactly what the slow path (``Study.get_trials``, every trial whole) gives,
on a shipped study's search; and the private-model readers of tuner.optuna_internals agree with
Optuna's public API (one test each)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from cli_helpers import run_cli
from tuner import compact, optuna_internals, pareto
from tuner.constraints import is_feasible
from tuner.pareto import load_study, study_front, trial_breakdown

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "studies" / "llama-3.1-70b-h100-serving.yaml"
NAME = "llama-3.1-70b-h100-serving"


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> str:
    """The shipped serving study (constraints on TTFT and TPOT), 150 random trials in SQLite."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reads') / 's.db'}"
    from tuner.cli import main

    assert main(["search", str(SPEC), "--storage", url, "--trials", "150", "--sampler", "random", "--json"]) == 0
    return url


def _slow_front(study: optuna.Study) -> pareto.Front:
    return pareto._front_from_trials(study)


def test_fast_front_equals_the_slow_front(stored: str) -> None:
    study = load_study(NAME, stored)
    assert optuna_internals.rdb_storage(study) is not None  # the database path is the one taken
    fast, slow = study_front(study), _slow_front(study)
    assert [t.number for t in fast.trials] == [t.number for t in slow.trials]
    assert [t.params for t in fast.trials] == [t.params for t in slow.trials]
    assert [t.user_attrs for t in fast.trials] == [t.user_attrs for t in slow.trials]
    assert (fast.n_trials, fast.n_feasible, fast.limits) == (slow.n_trials, slow.n_feasible, slow.limits)
    assert fast.limits == {"max_ttft_s": 2.0, "max_tpot_s": 0.1} and fast.serving


def test_pareto_json_equals_the_slow_path(stored: str, capsys, monkeypatch) -> None:
    code, fast, _ = run_cli(capsys, "pareto", NAME, "--storage", stored, "--json")
    assert code == 0
    monkeypatch.setattr(optuna_internals, "rdb_storage", lambda study: None)  # force the slow path
    code, slow, _ = run_cli(capsys, "pareto", NAME, "--storage", stored, "--json")
    assert code == 0 and json.loads(fast) == json.loads(slow) and json.loads(fast)


def test_studies_json_equals_the_slow_path(stored: str, capsys, monkeypatch) -> None:
    code, fast, _ = run_cli(capsys, "studies", "--storage", stored, "--json")
    assert code == 0
    monkeypatch.setattr(optuna_internals, "rdb_storage", lambda study: None)
    code, slow, _ = run_cli(capsys, "studies", "--storage", stored, "--json")
    assert code == 0 and json.loads(fast) == json.loads(slow)
    assert json.loads(fast)[0]["trials"] == 150


@pytest.mark.parametrize("number", [0, 77, 149])
def test_show_equals_the_trial_read_whole(stored: str, capsys, number: int) -> None:
    study = load_study(NAME, stored)
    trial = study.get_trials(deepcopy=False)[number]  # the slow path: every trial loaded
    code, out, _ = run_cli(capsys, "show", NAME, str(number), "--storage", stored)
    assert code == 0
    shown = json.loads(out)
    assert _close(shown, json.loads(json.dumps(trial_breakdown(study, number))))
    assert shown["trial"] == number and shown["params"] == trial.params
    assert shown["objectives"] == dict(zip(study.metric_names, trial.values, strict=True))
    # A compact study recomputes the breakdown when read: one trial alone (show) or with others
    # (get_trials) can round the last bit differently (numpy's reductions), nothing more.
    assert _close(shown["estimate"], trial.user_attrs["estimate"])
    assert shown["breakdown"] == {
        "recomputed": True,
        "model_version": compact.model_version(),
        "study_model_version": compact.model_version(),
        "stale": False,
    }


def _close(a: object, b: object) -> bool:
    """Equal, floats to 1e-12 relative (the same model on the same inputs)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=0.0, nan_ok=True)
    return a == b


def test_show_of_a_missing_trial_names_the_range(stored: str, capsys) -> None:
    code, out, err = run_cli(capsys, "show", NAME, "150", "--storage", stored)
    assert code == 2 and out == "" and "0..149" in err


# ---------------------------------------------------------------------------------------------
# tuner.optuna_internals' readers against Optuna's public API (one per private API used)


def test_complete_values_and_infeasible_ids_match_frozen_trials(stored: str) -> None:
    study = load_study(NAME, stored)
    storage = optuna_internals.rdb_storage(study)
    assert storage is not None
    study_id = storage.get_study_id_from_name(NAME)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ids, values = optuna_internals.complete_values(storage, study_id, len(study.directions))
    assert ids == [t._trial_id for t in complete]
    np.testing.assert_array_equal(values, np.array([t.values for t in complete]))
    infeasible = optuna_internals.infeasible_trial_ids(storage, study_id)
    assert infeasible == {t._trial_id for t in complete if not is_feasible(t)}
    assert 0 < len(infeasible) < len(complete)


def test_complete_point_rows_match_frozen_trials(stored: str) -> None:
    """What ``tuner report`` reads instead of every trial: each COMPLETE trial's id, number,
    feasibility and objectives, in trial order, as the trials read whole have them."""
    study = load_study(NAME, stored)
    storage = optuna_internals.rdb_storage(study)
    assert storage is not None
    rows = optuna_internals.complete_point_rows(storage, storage.get_study_id_from_name(NAME), len(study.directions))
    assert rows is not None
    ids, numbers, feasible, values = rows
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert ids.tolist() == [t._trial_id for t in complete]
    assert numbers.tolist() == [t.number for t in complete]
    assert feasible.tolist() == [is_feasible(t) for t in complete]
    assert 0 < feasible.sum() < len(complete)
    np.testing.assert_array_equal(values, np.array([t.values for t in complete]))


@pytest.mark.filterwarnings("ignore:Overwrite an old format constraint")
def test_infeasible_trial_ids_on_every_kind_of_constraint_value(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = optuna.create_study(study_name="c", storage=url, directions=["minimize", "maximize"])
    dist = {"a": CategoricalDistribution([0, 1])}
    cases = [
        {"constraints": {"x": 0.0, "y": -0.0}},
        {"constraints": {"x": -1e300, "y": 0}},
        {"constraints": {"x": 1e-300}},
        {"system_attrs": {"constraints": [float("nan")]}},  # NaN: only the list format takes it
        {"constraints": {"x": float("inf")}},
        {"constraints": {"x": float("-inf"), "y": 2.5e16}},
        {"constraints": {}},
        {"system_attrs": {"constraints": [-1.0, 0.0]}},  # Optuna's older list format
        {"system_attrs": {"constraints": [-1.0, 3.0]}},
        {"system_attrs": {"constraints": [5.0], "constraints:0": -1.0}},  # the new format overrides
    ]
    for case in cases:
        study.add_trial(create_trial(params={"a": 0}, distributions=dist, values=[1.0, float("inf")], **case))
    study.add_trial(create_trial(params={"a": 1}, distributions=dist, values=[-float("inf"), 2.0]))
    storage = optuna_internals.rdb_storage(optuna.load_study(study_name="c", storage=url))
    assert storage is not None
    study_id = storage.get_study_id_from_name("c")
    trials = study.get_trials(deepcopy=False)
    expected = {t._trial_id for t in trials if not is_feasible(t)}
    assert {trials[i]._trial_id for i in (2, 3, 4, 5, 8)} == expected
    assert optuna_internals.infeasible_trial_ids(storage, study_id) == expected
    ids, values = optuna_internals.complete_values(storage, study_id, 2)
    assert ids == [t._trial_id for t in trials]
    np.testing.assert_array_equal(values, np.array([t.values for t in trials]))


def test_trials_by_id_match_get_trial(stored: str) -> None:
    study = load_study(NAME, stored)
    storage = optuna_internals.rdb_storage(study)
    assert storage is not None
    wanted = [t._trial_id for t in study.get_trials(deepcopy=False)[::-7]]
    together = optuna_internals.trials_by_id(storage, wanted)
    alone = [storage.get_trial(i) for i in wanted]
    assert [(t.number, t.params, t.values, t.distributions) for t in together] == [
        (t.number, t.params, t.values, t.distributions) for t in alone
    ]
    # Breakdowns and constraints are recomputed (compact trials): equal to the last bits.
    assert all(_close(a.user_attrs, b.user_attrs) for a, b in zip(together, alone, strict=True))
    assert all(_close(a.system_attrs, b.system_attrs) for a, b in zip(together, alone, strict=True))


def test_rdb_storage_is_none_in_memory() -> None:
    assert optuna_internals.rdb_storage(optuna.create_study()) is None


def test_a_study_copied_by_optuna_copy_study_reads_the_same(stored: str, tmp_path: Path, capsys) -> None:
    """docs/operations.md moves a study between backends with ``optuna.copy_study``, which copies
    Optuna's tables and not the side table where a compact trial's feasibility as scored is
    kept; the copy was read from Optuna's tables, where compact trials store no constraints, so
    every trial counted as feasible (qa-ops: palm-540b-tpu-v4, 3,000 trials, 2,665 feasible as
    scored: the copy said 3,000) and infeasible trials entered the front's computation."""
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    optuna.copy_study(from_study_name=NAME, from_storage=stored, to_storage=copy)
    rows = {}
    for url in (stored, copy):
        code, out, err = run_cli(capsys, "studies", "--storage", url, "--json")
        assert code == 0, err
        (rows[url],) = json.loads(out)
    assert rows[stored]["feasible"] < rows[stored]["trials"]  # the study has infeasible trials to tell
    assert (rows[copy]["trials"], rows[copy]["feasible"]) == (rows[stored]["trials"], rows[stored]["feasible"])
    fronts = []
    for url in (stored, copy):
        code, out, err = run_cli(capsys, "pareto", NAME, "--storage", url, "--json")
        assert code == 0, err
        fronts.append([(t["trial"], t["objectives"]) for t in json.loads(out)])
    assert fronts[0] == fronts[1] and fronts[0]
