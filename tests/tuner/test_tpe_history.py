"""TPE's bounded history (tuner.optuna_internals.BatchTPESampler's ``history``, tuner.study's
TPE_HISTORY): fitted on the feasible Pareto front plus the latest N done trials, exactly Optuna's
TPE while the study holds at most N, and a resume that reads only those trials from the database
(issue 13 items 1 and 5: a resume whose cost does not grow with the study)."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import optuna
import pytest
import test_batch_tpe
from optuna.trial import TrialState, create_trial

from tuner.optuna_internals import BatchTPESampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

# test_batch_tpe's wide space, objectives and batched history (64 asked, then told).
WIDE = test_batch_tpe.WIDE
_objectives = test_batch_tpe._objectives


def _front_numbers(numbers: list[int], values: list[list[float]], directions: list[str]) -> set[int]:
    """Numbers of the points no other point dominates (brute force, every objective turned to
    "smaller is better"; identical points all kept): the test's own front, not tuner.pareto's."""
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    points = [[s * v for s, v in zip(signs, row, strict=True)] for row in values]
    out = set()
    for i, p in enumerate(points):
        dominated = any(
            all(a <= b for a, b in zip(q, p, strict=True)) and any(a < b for a, b in zip(q, p, strict=True))
            for q in points
        )
        if not dominated:
            out.add(numbers[i])
    return out


def _grow(sampler: BatchTPESampler, batches: int, batch: int = 32, seed: int = 0):
    """A study grown by batches asked, then told (as tuner.study does), with a constraint that
    rejects about a third of the trials; after each batch the trials the next fit uses."""
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    fitted: list[list[int]] = []
    split = sampler._tuner_split

    def spy(study_, trials, n_below):
        fitted.append([t.number for t in trials])
        return split(study_, trials, n_below)

    sampler._tuner_split = spy  # type: ignore[method-assign]
    for _ in range(batches):
        asked = [study.ask(WIDE) for _ in range(batch)]
        for trial in asked:
            trial.set_constraint("c", float(trial.params["q4"] - 2.5))
            study.tell(trial, _objectives(trial.params))
    return study, fitted


def test_the_fit_uses_the_front_and_the_latest_trials_once_the_study_outgrows_the_history() -> None:
    """After every batch past the history's size, the trials TPE is fitted on are the latest 50
    done trials plus every feasible trial on the front of all of them (however old), no other."""
    study, fitted = _grow(BatchTPESampler(seed=5, multivariate=True, history=50, n_startup_trials=10), batches=12)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 12 * 32
    checked = 0
    for used in fitted:
        done = max(used) + 1  # the fit comes at the first ask of a batch: trials 0..done-1 are told
        known = trials[:done]
        feasible = [t for t in known if t.constraints["c"] <= 0]
        front = _front_numbers([t.number for t in feasible], [t.values for t in feasible], ["minimize"] * 2)
        latest = set(range(max(0, done - 50), done))
        assert set(used) == front | latest, done
        assert used == sorted(used)
        if done > 50 and front - latest:
            checked += 1
    assert checked >= 5  # old front trials were kept in fits past the history's size


def test_under_the_history_size_it_samples_what_optunas_tpe_samples() -> None:
    """A study that never outgrows the history: exactly Optuna's TPESampler (no constant liar),
    so tests/tuner/test_batch_tpe.py's equivalence holds for studies under the window."""

    run = test_batch_tpe._wide_history
    ours = run(BatchTPESampler(seed=11, multivariate=True, history=384, n_startup_trials=64))
    theirs = run(optuna.samplers.TPESampler(seed=11, multivariate=True, constant_liar=False, n_startup_trials=64))
    assert ours == theirs
    # With a history of 100: the same up to the fit on 128 done trials, then something else.
    bounded = run(BatchTPESampler(seed=11, multivariate=True, history=100, n_startup_trials=64))
    assert bounded[:128] == theirs[:128] and bounded[128:192] != theirs[128:192]


def test_a_bounded_search_is_deterministic_for_a_seed() -> None:
    first, _ = _grow(BatchTPESampler(seed=9, multivariate=True, history=40), batches=8)
    second, _ = _grow(BatchTPESampler(seed=9, multivariate=True, history=40), batches=8)
    assert [t.params for t in first.trials] == [t.params for t in second.trials]


def test_a_history_under_the_random_start_is_refused() -> None:
    from cost_models.errors import InvalidInputError
    from tuner.study import run_search

    with pytest.raises(ValueError, match="never leaves the random start"):
        BatchTPESampler(seed=0, history=5)
    with pytest.raises(InvalidInputError, match="tpe_history"):
        run_search(RESUMED, "sqlite:///:memory:", sampler="tpe", tpe_history=5)


# PaLM 540B on 64/128 TPU v4 chips (test_batch_tpe.py's resumed study, without its trial count): 528
# configurations, some over the TPOT limit or not fitting, so the history holds infeasible trials.
RESUMED = {key: value for key, value in test_batch_tpe.RESUMED.items() if key != "trials"}


def _resume(url: str, monkeypatch, seed: int, held: int, history: int | None):
    """A TPE resume adding one trial: the in-memory study its sampler learned from, and the
    configuration indices of the trials the resume built for it (Hydrator.sampler_history)."""
    from tuner import compact
    from tuner.study import run_search

    studies, built = [], []
    create = optuna.create_study
    monkeypatch.setattr(optuna, "create_study", lambda *a, **k: studies.append(create(*a, **k)) or studies[-1])
    history_of = compact.Hydrator.sampler_history
    monkeypatch.setattr(
        compact.Hydrator,
        "sampler_history",
        lambda self, flat, values, **k: built.append(np.array(flat)) or history_of(self, flat, values, **k),
    )
    run_search(RESUMED, url, sampler="tpe", trials=held + 1, seed=seed, tpe_history=history)
    monkeypatch.undo()
    return studies[-1], np.concatenate(built) if built else np.zeros(0, dtype=np.int64)


def _stored(db) -> tuple[list[int], list[list[float]], list[bool], list[int]]:
    """(numbers, values, feasible, configuration index) of the stored COMPLETE trials, read with
    sqlite3 (the points table: feasibility as scored; trial_params: the configuration)."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT p.number, p.objectives, p.feasible, CAST(q.param_value AS INTEGER) FROM tuner_trial_points p"
            " JOIN trial_params q ON q.trial_id = p.trial_id AND q.param_name = 'configuration' ORDER BY p.number"
        ).fetchall()
    return (
        [r[0] for r in rows],
        [np.frombuffer(r[1], dtype="<f8").tolist() for r in rows],
        [bool(r[2]) for r in rows],
        [r[3] for r in rows],
    )


@pytest.mark.parametrize("size", [150, 300])
def test_a_resume_builds_only_the_front_and_the_latest_trials(tmp_path, monkeypatch, size) -> None:
    """Whatever the study's size, the resume builds a FrozenTrial for the latest 40 trials and the
    feasible front's, no other (before: one for every stored trial, 150 and 300 here)."""
    from tuner.study import run_search

    db = tmp_path / "r.db"
    run_search(RESUMED, f"sqlite:///{db}", trials=size)  # random, compact
    numbers, values, feasible, configurations = _stored(db)
    assert len(numbers) == size and 0 < sum(feasible) < size
    memory, built = _resume(f"sqlite:///{db}", monkeypatch, seed=3, held=size, history=40)
    front = _front_numbers([n for n, f in zip(numbers, feasible, strict=True) if f],
                           [v for v, f in zip(values, feasible, strict=True) if f], ["minimize"] * 2)  # fmt: skip
    expected = sorted(front | set(numbers[-40:]))
    assert 40 < len(expected) < size  # some front trials are older than the latest 40
    assert built.tolist() == [configurations[n] for n in expected]
    history = [t for t in memory.trials if t.state == TrialState.COMPLETE][: len(expected)]
    assert [t.values for t in history] == [values[n] for n in expected]


def test_a_bounded_resume_proposes_what_optunas_tpe_proposes_on_the_front_and_latest_trials(
    tmp_path, monkeypatch
) -> None:
    """The first proposal after a resume with a history of 40 is Optuna's own TPESampler's (same
    seed, no constant liar) on a study given, through the public ``add_trials``, the stored
    trials on the feasible front and the latest 40, in trial order, with their constraints as
    the cost model scores them; and a second resume from the same file proposes the same."""
    from search_spaces.space import compile_study, evaluate
    from search_spaces.spec import parse_spec
    from tuner import compact
    from tuner.study import distributions, run_search

    db = tmp_path / "r.db"
    run_search(RESUMED, f"sqlite:///{db}", trials=250)
    numbers, values, feasible, configurations = _stored(db)
    front = _front_numbers([n for n, f in zip(numbers, feasible, strict=True) if f],
                           [v for v, f in zip(values, feasible, strict=True) if f], ["minimize"] * 2)  # fmt: skip
    kept = sorted(front | set(numbers[-40:]))
    compiled = compile_study(parse_spec(RESUMED))
    dists = distributions(compiled)
    names, sizes = list(compiled.space.dimensions), [len(c) for c in compiled.space.dimensions.values()]
    indices = compact.unflatten(np.array([configurations[n] for n in kept]), names, sizes)
    scored = evaluate(compiled, indices)
    theirs = optuna.create_study(
        directions=compiled.directions,
        sampler=optuna.samplers.TPESampler(seed=7, multivariate=True, constant_liar=False),
    )
    theirs.add_trials(
        [
            create_trial(
                params=compiled.space.params_of(indices, row),
                distributions=dists,
                values=values[n],
                system_attrs={f"constraints:{k}": float(c[row]) for k, c in scored.constraint_columns.items()},
            )
            for row, n in enumerate(kept)
        ]
    )
    proposals = []
    for copy in ("a", "b"):
        copied = tmp_path / f"{copy}.db"
        shutil.copyfile(db, copied)
        memory, _ = _resume(f"sqlite:///{copied}", monkeypatch, seed=7, held=250, history=40)
        assert len(memory.trials) > len(kept)
        proposals.append(memory.trials[len(kept)].params)
    assert proposals[0] == theirs.ask(dists).params
    assert proposals[1] == proposals[0]


def test_a_study_without_the_points_table_resumes_on_the_same_history(tmp_path, monkeypatch) -> None:
    """A copy made by ``optuna.copy_study`` (Optuna's tables only, no points table) is read whole,
    and the sampler keeps the same front and latest trials itself: the first proposal is the
    bounded read's."""
    from tuner.study import run_search

    db = tmp_path / "r.db"
    run_search(RESUMED, f"sqlite:///{db}", trials=250)
    optuna.copy_study(
        from_study_name="resumed", from_storage=f"sqlite:///{db}", to_storage=f"sqlite:///{tmp_path}/c.db"
    )
    with sqlite3.connect(tmp_path / "c.db") as con:
        assert not con.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'tuner_trial_points'").fetchone()[0]
    bounded, built_bounded = _resume(f"sqlite:///{db}", monkeypatch, seed=5, held=250, history=40)
    whole, built_whole = _resume(f"sqlite:///{tmp_path}/c.db", monkeypatch, seed=5, held=250, history=40)
    assert len(built_whole) == 250 and 40 < len(built_bounded) < 250  # read whole, then kept by the sampler
    assert whole.trials[250].params == bounded.trials[len(built_bounded)].params


def test_a_nan_constraint_keeps_a_trial_off_the_front() -> None:
    """The front the sampler keeps is the points table's (a NaN constraint is infeasible there:
    tuner.optuna_internals.point_row), so a resume reads the same front. Optuna's infeasibility
    score counts only constraints > 0, and took the NaN trial, which dominates every other, for
    the front."""
    study = optuna.create_study(directions=["minimize", "minimize"])
    rng = np.random.default_rng(1)
    for number in range(40):
        params = {k: int(rng.integers(len(d.choices))) for k, d in WIDE.items()}
        best = number == 0
        values = [-1.0, -1.0] if best else [float(rng.integers(20)), float(rng.integers(20))]
        attrs = {"constraints:c": float("nan") if best else -1.0}
        study.add_trial(create_trial(params=params, distributions=WIDE, values=values, system_attrs=attrs))
    sampler = BatchTPESampler(seed=0, history=10)
    numbers = [t.number for t in sampler._tuner_history(study)]
    trials = study.get_trials(deepcopy=False)[1:]
    front = _front_numbers([t.number for t in trials], [t.values for t in trials], ["minimize"] * 2)
    assert numbers == sorted(front | set(range(30, 40)))
    assert 0 not in numbers
