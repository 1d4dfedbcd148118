"""TPE fitted once per batch (tuner.optuna_internals.BatchTPESampler) samples exactly what
Optuna's TPESampler (no constant liar) samples: within a batch of asks no trial completes, so
Optuna fits the same estimators on every ask of it."""

from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from tuner.optuna_internals import BatchTPESampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {f"p{i}": CategoricalDistribution(list(range(6))) for i in range(4)}


def _history(sampler: optuna.samplers.BaseSampler) -> list[tuple]:
    """Batches of 16 asked, then told (as tuner.study does), two objectives and a constraint."""
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for _ in range(8):
        asked = [study.ask(SPACE) for _ in range(16)]
        for trial in asked:
            p = trial.params
            trial.set_constraint("c", float(p["p3"] - 4))
            study.tell(trial, [float(p["p0"] + p["p1"]), float((p["p0"] - 3) ** 2 + p["p2"])])
    return [tuple(t.params.values()) for t in study.trials]


def test_same_samples_as_optunas_tpe() -> None:
    ours = _history(BatchTPESampler(seed=4, multivariate=True, constant_liar=False, n_startup_trials=16))
    theirs = _history(optuna.samplers.TPESampler(seed=4, multivariate=True, constant_liar=False, n_startup_trials=16))
    assert ours == theirs
    assert len(set(ours[16:])) > 10  # past the random start-up, TPE's own samples, not one repeated


def test_the_fit_is_reused_within_a_batch_and_renewed_after_it() -> None:
    sampler = BatchTPESampler(seed=0, multivariate=True, constant_liar=False, n_startup_trials=4)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for _ in range(4):
        trial = study.ask(SPACE)
        study.tell(trial, [float(trial.params["p0"]), float(trial.params["p1"])])
    study.ask(SPACE)
    first = sampler._tuner_fitted
    study.ask(SPACE)
    assert sampler._tuner_fitted is first  # the second ask of the batch: no new fit
    study.tell(study.ask(SPACE), [0.0, 0.0])
    study.ask(SPACE)
    assert sampler._tuner_fitted is not first and sampler._tuner_fitted[0][0] == 5


# A larger space: dimensions of different sizes (the per-dimension tables differ in shape).
WIDE = {f"q{i}": CategoricalDistribution(list(range(n))) for i, n in enumerate((2, 3, 5, 8, 4, 7))}


def _objectives(p: dict) -> list[float]:
    return [float(p["q0"] * 3 + p["q3"] - p["q5"]), float((p["q2"] - 2) ** 2 + p["q1"] * p["q4"])]


def _fitted_on_random_trials(seed: int, trials: int):
    """A BatchTPESampler fitted (one ask) on ``trials`` random trials of WIDE: it and its below and
    above Parzen estimators."""
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(lambda t: _objectives({k: t.suggest_categorical(k, d.choices) for k, d in WIDE.items()}), trials)
    sampler = BatchTPESampler(seed=3, multivariate=True, constant_liar=False)
    study.sampler = sampler
    study.ask(WIDE)
    _, below, above = sampler._tuner_fitted
    return sampler, below, above


def test_acquisition_values_are_optunas_bit_for_bit_on_a_larger_study() -> None:
    """The per-fit log tables and the per-batch cache give exactly Optuna's log l(x) - log g(x)."""
    from tuner.optuna_internals import _CategoricalAcquisition

    sampler, below, above = _fitted_on_random_trials(seed=1, trials=1500)
    assert len(above._mixture_distribution.weights) > 1000  # the large mixture Optuna evaluates per ask
    acquisition = _CategoricalAcquisition.of(below, above)
    assert acquisition is not None and acquisition._above[2] is not None  # the one-hot product's path
    rng = np.random.RandomState(7)
    for size in (24, 24, 300, 5):  # later calls mix cached configurations with new ones
        samples = below.sample(rng, size)
        theirs = sampler._compute_acquisition_func(samples, below, above)
        ours = acquisition(below._transform(samples))
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
        assert len(np.unique(theirs)) > 1


def _wide_history(sampler: optuna.samplers.BaseSampler) -> list[tuple]:
    """Batches of 64 asked, then told (tuner.study's TPE batch), past a 64-trial random start."""
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for _ in range(6):
        asked = [study.ask(WIDE) for _ in range(64)]
        for trial in asked:
            study.tell(trial, _objectives(trial.params))
    return [tuple(t.params.values()) for t in study.trials]


def test_same_samples_as_optunas_tpe_on_batches_of_64() -> None:
    ours = _wide_history(BatchTPESampler(seed=11, multivariate=True, constant_liar=False, n_startup_trials=64))
    theirs = _wide_history(
        optuna.samplers.TPESampler(seed=11, multivariate=True, constant_liar=False, n_startup_trials=64)
    )
    assert ours == theirs
    assert len(set(ours[64:])) > 50


def test_a_numerical_dimension_falls_back_to_optunas_log_pdf() -> None:
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0), "c": CategoricalDistribution([0, 1, 2])}

    def history(sampler: optuna.samplers.BaseSampler) -> list[tuple]:
        study = optuna.create_study(sampler=sampler)
        for _ in range(5):
            asked = [study.ask(space) for _ in range(8)]
            for trial in asked:
                study.tell(trial, (trial.params["x"] - 0.3) ** 2 + trial.params["c"])
        return [tuple(t.params.values()) for t in study.trials]

    sampler = BatchTPESampler(seed=2, multivariate=True, constant_liar=False, n_startup_trials=8)
    assert history(sampler) == history(
        optuna.samplers.TPESampler(seed=2, multivariate=True, constant_liar=False, n_startup_trials=8)
    )
    assert sampler._tuner_acquisition is None


def test_the_completed_trials_it_tracks_are_optunas_filter() -> None:
    """BatchTPESampler._tuner_done looks only at new and unfinished trials; it must still list what
    Optuna's state filter lists, in the same order, whatever completes, fails or is pruned when."""
    from optuna.trial import TrialState

    sampler = BatchTPESampler(seed=0, multivariate=True, constant_liar=False)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    checks = 0

    def check() -> None:
        nonlocal checks
        expected = study._get_trials(deepcopy=False, states=states, use_cache=True)
        assert [(t.number, t.state) for t in sampler._tuner_done(study)] == [(t.number, t.state) for t in expected]
        checks += 1

    check()
    running = [study.ask(SPACE) for _ in range(6)]
    check()
    study.tell(running[3], 1.0)  # a later trial completes first
    check()
    study.tell(running[0], state=TrialState.FAIL)
    study.tell(running[5], state=TrialState.PRUNED)
    check()
    running += [study.ask(SPACE) for _ in range(3)]
    study.tell(running[1], 2.0)
    check()
    for trial in running[6:] + [running[2], running[4]]:
        study.tell(trial, 0.5)
        check()
    trial = optuna.trial.create_trial(params={f"p{i}": i for i in range(4)}, distributions=SPACE, value=3.0)
    study.add_trial(trial)
    study.ask(SPACE)  # Optuna's trial cache is renewed on ask
    check()
    assert len(sampler._tuner_done(study)) == 9 and checks == 11


def test_internal_representation_is_optunas() -> None:
    """The kept choice indices give Optuna's arrays (values and dtype), on first and later fits."""
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=5))
    study.optimize(lambda t: _objectives({k: t.suggest_categorical(k, d.choices) for k, d in WIDE.items()}), 300)
    sampler = BatchTPESampler(seed=0, multivariate=True, constant_liar=False)
    plain = optuna.samplers.TPESampler(seed=0, multivariate=True, constant_liar=False)
    trials = study.get_trials(deepcopy=False)
    for subset in (trials[:100], trials, trials[::3], trials[250:] + trials[:10]):
        ours = sampler._get_internal_repr(subset, WIDE, study)
        theirs = plain._get_internal_repr(subset, WIDE, study)
        assert list(ours) == list(theirs)
        for name in WIDE:
            assert ours[name].dtype == theirs[name].dtype and np.array_equal(ours[name], theirs[name])
    assert len(sampler._tuner_repr[1]) == 300
    assert (
        sampler._get_internal_repr([], WIDE, study)["q0"].dtype == plain._get_internal_repr([], WIDE, study)["q0"].dtype
    )


def test_a_zero_weight_takes_the_gathering_path() -> None:
    """A zero weight (prior_weight=0) has log -inf, and 0.0 x -inf in a one-hot product is NaN."""
    from tuner.optuna_internals import _CategoricalAcquisition

    with np.errstate(divide="ignore"):
        log_weights = np.log(np.array([[0.5, 0.5], [1.0, 0.0]]))
    assert _CategoricalAcquisition._stacked([log_weights], np.zeros(2)) is None
    finite = _CategoricalAcquisition._stacked([np.zeros((2, 3)), np.zeros((4, 3))], np.ones(3))
    assert finite is not None and finite[0].shape == (7, 3) and finite[1].tolist() == [0, 2]


def test_the_split_is_optunas() -> None:
    """_tuner_split (kept infeasibility scores) splits as Optuna's _split_trials: feasible,
    infeasible and pruned trials, one and two objectives, small and large "below" shares."""
    from optuna.samplers._tpe.sampler import _split_trials
    from optuna.trial import TrialState

    rng = np.random.default_rng(3)
    for directions in (["minimize"], ["minimize", "maximize"]):
        study = optuna.create_study(directions=directions)
        for _ in range(400):
            params = {k: int(rng.integers(len(d.choices))) for k, d in WIDE.items()}
            state = TrialState.PRUNED if rng.random() < 0.1 and len(directions) == 1 else TrialState.COMPLETE
            values = None if state == TrialState.PRUNED else [float(rng.integers(20)) for _ in directions]
            attrs = {"constraints": [float(rng.random() - 0.7), float(rng.random() - 0.9)]}
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=WIDE, values=values, state=state, system_attrs=attrs
                )
            )
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        sampler = BatchTPESampler(seed=0)
        for n_below in (0, 5, 40, 150, 399, 500, 40):  # the last repeats with the scores kept
            ours = sampler._tuner_split(study, trials, n_below)
            theirs = _split_trials(study, trials, n_below)
            assert [[t.number for t in part] for part in ours] == [[t.number for t in part] for part in theirs]
        assert 0 < sum(score > 0 for score in sampler._tuner_scores.values()) < 400  # both kinds present


def test_the_split_stays_optunas_as_the_study_grows() -> None:
    """The fronts kept from one fit to the next (_tuner_split_complete peels only them and the new
    trials): after every batch of a growing study, with three objectives, repeated loss values,
    infeasible trials and a gamma of Optuna's multi-objective default, the split is Optuna's, and
    both paths (kept fronts, everything peeled again) are taken."""
    from optuna.samplers._tpe.sampler import _split_trials, default_gamma_multiobjective
    from optuna.trial import TrialState

    rng = np.random.default_rng(8)
    study = optuna.create_study(directions=["minimize", "maximize", "minimize"])
    sampler = BatchTPESampler(seed=0)
    full_peels = kept_peels = 0
    for _ in range(40):
        for _ in range(64):
            params = {k: int(rng.integers(len(d.choices))) for k, d in WIDE.items()}
            values = [float(rng.integers(30)), float(rng.normal()), float(rng.integers(8))]
            attrs = {"constraints": [float(rng.random() - 0.8)]}
            trial = optuna.trial.create_trial(params=params, distributions=WIDE, values=values, system_attrs=attrs)
            study.add_trial(trial)
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        before = sampler._tuner_fronts
        n_below = default_gamma_multiobjective(len(trials))
        ours = sampler._tuner_split(study, trials, n_below)
        theirs = _split_trials(study, trials, n_below)
        assert [[t.number for t in part] for part in ours] == [[t.number for t in part] for part in theirs]
        assert len(ours[0]) == n_below
        after = sampler._tuner_fronts
        assert after is not None
        if before is not None and after[3] == before[3] and after[2] != before[2]:
            kept_peels += 1
        else:
            full_peels += 1
        assert len(after[2]) < len(trials)  # fewer trials kept than the study holds
    assert kept_peels > 20 and full_peels >= 2


def test_the_draw_is_optunas() -> None:
    """_CategoricalDraw (cumulative weights taken once per fit) draws Optuna's candidates from
    the same random state, and leaves the state where Optuna's draw leaves it."""
    from tuner.optuna_internals import _CategoricalDraw

    sampler, below, above = _fitted_on_random_trials(seed=2, trials=600)
    for mpe in (below, above):
        draw = _CategoricalDraw.of(mpe)
        assert draw is not None
        ours_rng, theirs_rng = np.random.RandomState(9), np.random.RandomState(9)
        for size in (24, 24, 7):
            ours = mpe._untransform(draw(ours_rng, size))
            theirs = mpe.sample(theirs_rng, size)
            assert list(ours) == list(theirs)
            for name in theirs:
                assert ours[name].dtype == theirs[name].dtype and np.array_equal(ours[name], theirs[name])
            assert len({tuple(int(ours[k][i]) for k in ours) for i in range(size)}) > 1
        assert ours_rng.rand() == theirs_rng.rand()


# ---------------------------------------------------------------------------------------------
# Resuming a compact study: the history TPE conditions on, read as columns (tuner.study._compact_history)

# PaLM 540B on 64/128 TPU v4 chips: 528 configurations, some over the 0.5 s TPOT limit or not
# fitting, so the history holds infeasible trials.
RESUMED = {
    "name": "resumed",
    "model": "palm-540b",
    "hardware": "tpu-v4",
    "workload": {"prompt_len": 128, "gen_len": 8},
    "space": {
        "chips": [64, 128],
        "batch": [1, 4, 16, 32, 64, 128],
        "decode_ffn_layout": ["ws_1d", "ws_2d"],
        "weight_bits": [16, 8],
    },
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "constraints": {"fits": True, "max_tpot_s": 0.05},
    "sampler": "random",
    "seed": 0,
    "trials": 200,
}


def _resume_tpe(url: str, monkeypatch, seed: int) -> tuple[optuna.Study, int]:
    """A TPE resume of RESUMED adding one trial: the in-memory study its sampler learned from,
    and how many trials were built whole from the database's rows on the way."""
    from optuna.storages import RDBStorage

    from tuner.study import run_search

    built = []
    whole = RDBStorage._build_frozen_trial_from_trial_model
    monkeypatch.setattr(RDBStorage, "_build_frozen_trial_from_trial_model", lambda s, m: built.append(1) or whole(s, m))
    studies = []
    create = optuna.create_study
    monkeypatch.setattr(optuna, "create_study", lambda *a, **k: studies.append(create(*a, **k)) or studies[-1])
    run_search(RESUMED, url, sampler="tpe", trials=RESUMED["trials"] + 1, seed=seed)
    monkeypatch.undo()
    return studies[-1], len(built)


def test_a_tpe_resume_reads_no_trial_whole_and_sees_the_constraints(tmp_path, monkeypatch) -> None:
    import sqlite3

    from tuner.study import run_search

    url = f"sqlite:///{tmp_path}/r.db"
    run_search(RESUMED, url)  # 200 random trials, compact
    memory, built = _resume_tpe(url, monkeypatch, seed=3)
    # Before: every stored trial was built whole (get_all_trials) and deep-copied into the sampler's
    # study (200 here, 30,005 in the operator's 30,000-trial study), and none carried a constraint.
    assert built == 0
    with sqlite3.connect(f"{tmp_path}/r.db") as db:  # feasibility as scored, written by the first run
        feasible = [
            bool(f) for (f,) in db.execute("SELECT feasible FROM tuner_trial_points WHERE number < 200 ORDER BY number")
        ]
    assert len(feasible) == 200 and 0 < sum(feasible) < 200  # both kinds in the history
    history = memory.trials[:200]
    # structurally_valid, fits_in_memory, max_tpot_s (the spec's two and the structural check)
    assert all(len(t.constraints) == 3 for t in history)
    assert [all(v <= 0 for v in t.constraints.values()) for t in history] == feasible


def test_a_tpe_resume_proposes_what_optunas_tpe_proposes_on_the_stored_trials(tmp_path, monkeypatch) -> None:
    """The first proposal after a resume is Optuna's own TPESampler's (no constant liar, same
    seed) on a study given the stored trials through the public ``add_trials``: the categorical
    params of each stored configuration, its stored values, its constraints as the cost model
    scores them (``Trial.set_constraint`` of each, as a search sets them)."""
    import shutil

    from optuna.trial import create_trial

    from search_spaces.space import compile_study, evaluate
    from search_spaces.spec import parse_spec
    from tuner import compact
    from tuner.study import distributions, run_search

    url = f"sqlite:///{tmp_path}/r.db"
    run_search(RESUMED, url)
    compiled = compile_study(parse_spec(RESUMED))
    dists = distributions(compiled)
    names, sizes = list(compiled.space.dimensions), [len(c) for c in compiled.space.dimensions.values()]
    stored = optuna.load_study(study_name="resumed", storage=url).get_trials(states=(TrialState.COMPLETE,))
    flat = np.array([int(t.params[compact.CONFIGURATION_PARAM]) for t in stored])
    indices = compact.unflatten(flat, names, sizes)
    scored = evaluate(compiled, indices)
    for seed in (3, 11):
        theirs = optuna.create_study(
            directions=compiled.directions,
            sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=False),
        )
        theirs.add_trials(
            [
                create_trial(
                    params=compiled.space.params_of(indices, row),
                    distributions=dists,
                    values=trial.values,
                    system_attrs={f"constraints:{n}": float(c[row]) for n, c in scored.constraint_columns.items()},
                )
                for row, trial in enumerate(stored)
            ]
        )
        copied = tmp_path / f"r{seed}.db"  # each resume from the 200 stored trials
        shutil.copyfile(tmp_path / "r.db", copied)
        memory, _ = _resume_tpe(f"sqlite:///{copied}", monkeypatch, seed=seed)
        assert len(memory.trials) > 200  # the first proposal is trial 200 (told FAIL if held)
        assert memory.trials[200].params == theirs.ask(dists).params
