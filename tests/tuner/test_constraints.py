"""Constraints are stored where Optuna looks for them, and read one way by every command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages import RDBStorage
from optuna.trial import TrialState, create_trial

from cli_helpers import run_cli
from search_spaces.space import compile_study
from search_spaces.spec import load_spec
from tuner.constraints import CONSTRAINT_NAMES_ATTR, is_feasible, trial_constraints
from tuner.pareto import load_study, study_front, trial_breakdown

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[str, str]:
    """A real search (``tuner search``) of a shipped study, whose SLO some trials miss."""
    tmp = tmp_path_factory.mktemp("constraints")
    spec = tmp / "llama-3-8b-l4.yaml"
    shutil.copy(REPO / "studies" / "llama-3-8b-l4.yaml", spec)
    url = f"sqlite:///{tmp / 'l4.db'}"
    from tuner.cli import main

    assert main(["search", str(spec), "--storage", url, "--trials", "150", "--json"]) == 0
    return url, str(spec)


def test_best_trials_of_a_real_search_hold_no_infeasible_trial(searched, capsys) -> None:
    capsys.readouterr()
    url, _ = searched
    study = load_study("llama-3-8b-l4", url)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    infeasible = [t for t in trials if any(v > 0 for v in t.constraints.values())]
    assert infeasible, "the search should meet trials that miss a constraint"
    best = study.best_trials
    assert best and all(all(v <= 0 for v in t.constraints.values()) for t in best)
    # Optuna's front and ours are the same set of points.
    ours = study_front(load_study("llama-3-8b-l4", url))
    assert {tuple(t.values) for t in best} == {tuple(t.values) for t in ours.trials}


def test_constraint_names_are_stored_once_and_every_trial_has_them(searched, capsys) -> None:
    capsys.readouterr()
    url, spec = searched
    names = compile_study(load_spec(spec)).constraint_names
    study = load_study("llama-3-8b-l4", url)
    assert study.user_attrs[CONSTRAINT_NAMES_ATTR] == names
    for trial in study.get_trials(deepcopy=False):
        # Named (Optuna's format) and as Optuna's list in the spec's order (what optuna-dashboard
        # reads): every value twice in FrozenTrial.constraints, once in trial_constraints.
        named = trial_constraints(trial, names)
        assert list(named) == names
        assert trial.system_attrs["constraints"] == list(named.values())
        assert trial.constraints == {**named, **{str(i): v for i, v in enumerate(named.values())}}
        assert trial_constraints(trial) == named
        assert set(trial.system_attrs) >= {f"constraints:{n}" for n in names}


def test_show_and_export_report_the_same_constraints(searched, capsys) -> None:
    url, _ = searched
    capsys.readouterr()
    study = load_study("llama-3-8b-l4", url)
    number = study_front(study).trials[0].number
    code, out, _ = run_cli(capsys, "show", "llama-3-8b-l4", str(number), "--storage", url)
    assert code == 0
    shown = json.loads(out)
    assert shown["feasible"] is True and all(v <= 0 for v in shown["constraints"].values())
    code, out, _ = run_cli(
        capsys, "export", "llama-3-8b-l4", "--trial", str(number), "--storage", url, "--format", "yaml"
    )
    assert code == 0
    provenance = yaml.safe_load(out)["provenance"]
    assert provenance["constraints"] == shown["constraints"] and provenance["feasible"] is True


def _old_study(tmp_path: Path, system_attrs: list[dict]) -> str:
    """A study as an earlier tuner (or another tool) wrote it, attribute by attribute."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    study = optuna.create_study(study_name="old", storage=RDBStorage(url), directions=["minimize", "minimize"])
    study.set_user_attr(CONSTRAINT_NAMES_ATTR, ["structurally_valid", "fits_in_memory"])
    for i, attrs in enumerate(system_attrs):
        study.add_trial(create_trial(values=[float(i), float(10 - i)], system_attrs=attrs))
    return url


def test_old_studies_with_the_constraints_prefix_read_as_before(tmp_path: Path) -> None:
    """Studies written before this change set ``constraints:<name>`` attributes by hand: the
    same keys Optuna 5 writes, so they read unchanged."""
    url = _old_study(
        tmp_path,
        [
            {"constraints:structurally_valid": 0.0, "constraints:fits_in_memory": 1.0},
            {"constraints:structurally_valid": 0.0, "constraints:fits_in_memory": -1.0},
        ],
    )
    study = load_study("old", url)
    first, second = study.trials
    assert trial_constraints(first) == {"structurally_valid": 0.0, "fits_in_memory": 1.0}
    assert not is_feasible(first) and is_feasible(second)
    assert [t.number for t in study_front(study).trials] == [1]
    assert [t.number for t in study.best_trials] == [1]
    assert trial_breakdown(study, 0)["constraints"] == {"structurally_valid": 0.0, "fits_in_memory": 1.0}


def test_optunas_older_list_format_reads_with_the_study_names(tmp_path: Path) -> None:
    url = _old_study(tmp_path, [{"constraints": [0.0, 1.0]}, {"constraints": [0.0, -1.0]}])
    study = load_study("old", url)
    assert trial_breakdown(study, 0)["constraints"] == {"structurally_valid": 0.0, "fits_in_memory": 1.0}
    assert trial_breakdown(study, 0)["feasible"] is False
    assert trial_constraints(study.trials[1]) == {"0": 0.0, "1": -1.0}  # without names: Optuna's
    assert [t.number for t in study_front(study).trials] == [1]


def test_a_trial_without_constraints_is_feasible() -> None:
    trial = create_trial(values=[1.0])
    assert trial_constraints(trial) == {} and is_feasible(trial)


@pytest.mark.parametrize("sampler", ["nsga2", "exhaustive"])
def test_plain_optunas_best_trials_hold_no_infeasible_trial(tmp_path: Path, sampler: str, capsys) -> None:
    """Issue 12 item 1 names ``optuna.load_study(...).best_trials``: compact trials (issue 13)
    stored no constraint row at all, so plain Optuna read every trial as feasible and its best
    trials held infeasible ones (the init study: 2 of 12, TTFT 34 s over its limit). Each trial
    keeps Optuna's list of its constraints (one row): plain Optuna's best trials are feasible."""
    spec = tmp_path / "llama-3-8b-l4.yaml"
    shutil.copy(REPO / "studies" / "llama-3-8b-l4.yaml", spec)
    url = f"sqlite:///{tmp_path / 'l4.db'}"
    from tuner.cli import main

    assert main(["search", str(spec), "--storage", url, "--trials", "150", "--sampler", sampler, "--json"]) == 0
    capsys.readouterr()
    ours = load_study("llama-3-8b-l4", url)  # constraints recomputed from the spec
    feasible = {t.number: is_feasible(t) for t in ours.get_trials(states=(TrialState.COMPLETE,))}
    assert not all(feasible.values()), "the search should meet trials that miss a constraint"
    plain = optuna.load_study(study_name="llama-3-8b-l4", storage=url)
    for trial in plain.get_trials(states=(TrialState.COMPLETE,)):
        assert trial.constraints, trial.number
        assert all(v <= 0 for v in trial.constraints.values()) == feasible[trial.number], trial.number
    best = plain.best_trials
    assert best and all(feasible[t.number] for t in best)
    assert {tuple(t.values) for t in best} == {tuple(t.values) for t in study_front(ours).trials}
