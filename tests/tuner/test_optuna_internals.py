"""The private Optuna APIs we still use, checked against the installed Optuna.

One test per private API (``tuner/optuna_internals.py`` says why each is needed): when an Optuna
upgrade moves or changes one, it fails here, not in a user's study. Then the public behaviour we
rely on instead of private APIs, and a scan that no other module touches a private Optuna name.
"""

from __future__ import annotations

import ast
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.samplers import NSGAIISampler, RandomSampler, TPESampler
from optuna.storages import InMemoryStorage, RDBStorage
from optuna.trial import TrialState, create_trial

from tuner import optuna_internals
from tuner.samplers import IncrementalNSGAIISampler

REPO = Path(__file__).resolve().parents[2]
PINNED_MAJOR = 5  # pyproject.toml: optuna>=5,<6

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_installed_optuna_is_the_pinned_major_version() -> None:
    assert int(optuna.__version__.split(".")[0]) == PINNED_MAJOR, optuna.__version__


def _two_objective_study(storage=None, name: str = "s") -> optuna.Study:
    return optuna.create_study(study_name=name, storage=storage, directions=["minimize", "maximize"])


# ---------------------------------------------------------------------------------------------
# optuna.storages._rdb.models: bulk inserts


def test_insert_trials_writes_the_rows_optuna_reads(tmp_path: Path) -> None:
    storage = RDBStorage(f"sqlite:///{tmp_path / 'x.db'}")
    study = _two_objective_study(storage)
    study_id = storage.get_study_id_from_name("s")
    dists = {"a": CategoricalDistribution([1, 2, 3]), "b": CategoricalDistribution(["x", "y"])}
    trials = [
        create_trial(
            params={"a": a, "b": b},
            distributions=dists,
            values=[a * 1.5, -float(a)],
            user_attrs={"estimate": {"a": a, "nested": [1, 2]}},
            system_attrs={"NSGAIISampler:generation": 0},
            constraints={"fits": a - 2.0, "slo": -1.0},
        )
        for a, b in [(1, "x"), (2, "y"), (3, "x")]
    ]
    trials[0].datetime_start = datetime(2024, 1, 2, 3, 4, 5)
    assert optuna_internals.insert_trials(storage, study_id, trials, budget=None) == 3
    # A budget counts what the study holds: only one more fits in 4.
    assert optuna_internals.insert_trials(storage, study_id, trials, budget=4) == 1
    assert optuna_internals.insert_trials(storage, study_id, trials, budget=4) == 0

    loaded = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'x.db'}").trials
    assert [t.number for t in loaded] == [0, 1, 2, 3]
    for written, read in zip(trials + trials[:1], loaded, strict=True):
        assert read.state == TrialState.COMPLETE
        assert read.params == written.params
        assert read.distributions == written.distributions
        assert read.values == written.values
        assert read.user_attrs == written.user_attrs
        assert read.system_attrs == written.system_attrs
        assert read.constraints == {"fits": written.constraints["fits"], "slo": -1.0}
    assert loaded[0].datetime_start == datetime(2024, 1, 2, 3, 4, 5)
    assert study.best_trials and all(t.constraints["fits"] <= 0 for t in study.best_trials)


def test_insert_trials_round_trips_infinite_values(tmp_path: Path) -> None:
    storage = RDBStorage(f"sqlite:///{tmp_path / 'x.db'}")
    _two_objective_study(storage)
    trial = create_trial(
        params={}, distributions={}, values=[float("inf"), float("-inf")], constraints={"fits": float("inf")}
    )
    optuna_internals.insert_trials(storage, storage.get_study_id_from_name("s"), [trial], None)
    read = storage.get_all_trials(storage.get_study_id_from_name("s"))[0]
    assert read.values == [float("inf"), float("-inf")]
    assert read.constraints == {"fits": float("inf")}


# ---------------------------------------------------------------------------------------------
# Study._storage


@pytest.mark.parametrize("kind", ["rdb", "memory"])
def test_study_storage_is_the_storage_the_study_uses(tmp_path: Path, kind: str) -> None:
    storage = RDBStorage(f"sqlite:///{tmp_path / 'x.db'}") if kind == "rdb" else InMemoryStorage()
    study = _two_objective_study(storage)
    found = optuna_internals.study_storage(study)
    # Optuna wraps an RDB storage in a cache; either way it reads the study's trials.
    assert found is storage if kind == "memory" else isinstance(found, optuna.storages.BaseStorage)
    storage = found
    study.add_trial(create_trial(values=[1.0, 2.0]))
    study_id = storage.get_study_id_from_name(study.study_name)  # public: the study's id
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, 0)
    assert storage.get_trial(trial_id).values == [1.0, 2.0]


# ---------------------------------------------------------------------------------------------
# Study._storage.set_trial_system_attr with FrozenTrial._trial_id


def test_set_trial_system_attr_reaches_the_stored_trial() -> None:
    study = _two_objective_study()
    trial = study.ask()
    frozen = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[0]
    optuna_internals.set_trial_system_attr(study, frozen, "k", 7)
    told = study.tell(trial, [1.0, 2.0])
    assert told.system_attrs["k"] == 7


# ---------------------------------------------------------------------------------------------
# BaseGASampler._get_generation_key


@pytest.mark.parametrize("sampler_class", [NSGAIISampler, IncrementalNSGAIISampler])
def test_ga_generation_key_is_where_nsga2_keeps_generations(sampler_class) -> None:
    sampler = sampler_class(seed=1, population_size=4)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=10)
    key = optuna_internals.ga_generation_key(sampler)
    assert key == f"{sampler_class.__name__}:generation"
    assert [t.system_attrs[key] for t in study.trials] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]


# ---------------------------------------------------------------------------------------------
# optuna._hypervolume.compute_hypervolume


def test_hypervolume_of_known_sets() -> None:
    assert optuna_internals.hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([3.0, 3.0])) == 3.0
    assert optuna_internals.hypervolume(np.array([[0.0, 0.0, 0.0]]), np.array([1.0, 2.0, 3.0])) == 6.0
    # Dominated and duplicated points add nothing.
    points = np.array([[1.0, 1.0], [2.0, 2.0], [1.0, 1.0]])
    assert optuna_internals.hypervolume(points, np.array([3.0, 3.0])) == 4.0


# ---------------------------------------------------------------------------------------------
# Public behaviour used instead of private APIs


def test_constraints_are_stored_per_name_and_read_back_by_frozen_trial() -> None:
    """``create_trial(constraints=)`` and ``Trial.set_constraint`` write ``constraints:<name>``;
    ``FrozenTrial.constraints`` reads those back by name (tuner.constraints relies on it)."""
    frozen = create_trial(values=[1.0], constraints={"fits": 0.5, "slo": -1.0})
    assert frozen.system_attrs == {"constraints:fits": 0.5, "constraints:slo": -1.0}
    assert frozen.constraints == {"fits": 0.5, "slo": -1.0}
    study = optuna.create_study()
    trial = study.ask()
    trial.set_constraint("fits", -2)
    assert study.tell(trial, 1.0).constraints == {"fits": -2.0}
    # Optuna's older list format reads as names "0", "1", ...
    old = create_trial(values=[1.0], system_attrs={"constraints": [0.5, -1.0]})
    assert old.constraints == {"0": 0.5, "1": -1.0}


def test_best_trials_leaves_out_infeasible_trials() -> None:
    study = _two_objective_study()
    study.add_trial(create_trial(values=[0.0, 10.0], constraints={"fits": 1.0}))  # best, infeasible
    study.add_trial(create_trial(values=[3.0, 1.0], constraints={"fits": 0.0}))  # dominated
    study.add_trial(create_trial(values=[2.0, 2.0], constraints={"fits": -1.0}))
    assert [t.number for t in study.best_trials] == [2]


def test_nsga2_population_size_is_public_with_default_50() -> None:
    assert NSGAIISampler().population_size == 50
    assert IncrementalNSGAIISampler(population_size=8).population_size == 8


def test_study_id_from_name_is_public(tmp_path: Path) -> None:
    storage = RDBStorage(f"sqlite:///{tmp_path / 'x.db'}")
    first, second = _two_objective_study(storage, "a"), _two_objective_study(storage, "b")
    ids = {storage.get_study_id_from_name(s.study_name) for s in (first, second)}
    assert len(ids) == 2


# ---------------------------------------------------------------------------------------------
# No other module touches Optuna's internals


# ---------------------------------------------------------------------------------------------
# RDBStorage built without its constructor (existing_storage): reads of a current database


def test_existing_storage_is_what_rdbstorage_builds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'current.db'}"
    study = _two_objective_study(url)
    study.add_trial(create_trial(values=[1.0, 2.0], params={}, distributions={}))
    made = RDBStorage(url)
    fast = optuna_internals.existing_storage(url)
    # The same attributes as Optuna's constructor sets: an Optuna that adds one fails here.
    assert set(vars(fast)) == set(vars(made))
    assert optuna_internals._schema_head() == made.get_head_version()
    # Opened without the version manager's Alembic, which comes only when asked for.
    assert type(fast._version_manager).__name__ == "_LazyVersionManager"
    assert fast.get_current_version() == made.get_current_version()
    loaded = optuna.load_study(study_name="s", storage=fast)
    assert [t.values for t in loaded.trials] == [[1.0, 2.0]]


def test_existing_storage_leaves_an_older_schema_to_optuna(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    _two_objective_study(f"sqlite:///{path}")
    with sqlite3.connect(path) as connection:  # as a database Optuna 3.0 left behind
        connection.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    with pytest.raises(RuntimeError, match="no longer compatible") as expected:
        RDBStorage(f"sqlite:///{path}")
    with pytest.raises(RuntimeError, match="no longer compatible") as got:
        optuna_internals.existing_storage(f"sqlite:///{path}")
    assert str(got.value) == str(expected.value)


def _optuna_private_names() -> set[str]:
    """Private attribute names of the Optuna objects this project handles."""
    study = optuna.create_study()
    trial = study.ask()
    frozen = study.tell(trial, 1.0)
    objects = [
        study,
        trial,
        frozen,
        NSGAIISampler(),
        TPESampler(),
        RandomSampler(),
        InMemoryStorage(),
        RDBStorage("sqlite:///:memory:"),
        CategoricalDistribution([1]),
    ]
    names = set()
    for obj in objects:
        names |= {n for n in dir(obj) if n.startswith("_") and not n.startswith("__")}
        names |= {n for n in getattr(obj, "__dict__", {}) if n.startswith("_") and not n.startswith("__")}
    return names


def private_optuna_uses(source: str, private: set[str], filename: str = "<string>") -> list[str]:
    """Where a module's source imports a private Optuna module or name, or uses the name of a
    private attribute of an Optuna object (``study._storage``, ``getattr(s, "_population_size")``)."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [
                f"{where} import {a.name}"
                for a in node.names
                if a.name.split(".")[0] == "optuna" and any(p.startswith("_") for p in a.name.split("."))
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "optuna":
            if any(p.startswith("_") for p in node.module.split(".")):
                found.append(f"{where} from {node.module}")
            found += [f"{where} from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr in private:
            found.append(f"{where} .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if (
                node.value in private
                or node.value.startswith("optuna._")
                or ("optuna." in node.value and "._" in node.value)
            ):
                found.append(f"{where} {node.value!r}")
    return found


def test_the_scan_finds_private_uses() -> None:
    private = _optuna_private_names()
    assert {"_storage", "_study_id", "_trial_id", "_population_size", "_get_trials"} <= private
    source = (
        "from optuna.storages._rdb import models\nimport optuna._hypervolume\n"
        "from optuna.study import _multi_objective\nx = study._study_id\n"
        "y = getattr(s, '_population_size')\n"
    )
    assert len(private_optuna_uses(source, private)) == 5
    assert private_optuna_uses("import optuna\nfrom optuna.trial import FrozenTrial\nx = s.study_name\n", private) == []


def test_no_module_but_optuna_internals_touches_private_optuna_names() -> None:
    private = _optuna_private_names()
    allowed = REPO / "tuner" / "optuna_internals.py"
    found = []
    for package in ("tuner", "search_spaces", "cost_models"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path != allowed:
                found += private_optuna_uses(path.read_text(encoding="utf-8"), private, str(path.relative_to(REPO)))
    assert found == []


def test_no_bare_assert_in_tuner() -> None:
    """Input checks raise explicit errors (``python -O`` drops asserts)."""
    asserts = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in sorted((REPO / "tuner").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assert)
    ]
    assert asserts == []


def test_the_dashboard_function_replaced_for_feasible_best_trials_exists() -> None:
    """``feasible_dashboard`` replaces optuna-dashboard's module-level Pareto function: it must
    still be there, take (trials, directions), and be what the study route calls."""
    dashboard_app = pytest.importorskip("optuna_dashboard._app")
    import inspect

    assert list(inspect.signature(dashboard_app.get_pareto_front_trials).parameters) == ["trials", "directions"]
    assert "get_pareto_front_trials(trials=trials" in inspect.getsource(dashboard_app)
