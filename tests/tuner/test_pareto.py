"""tuner.pareto on hand-made points: the nondominated mask, directions, the hypervolume of a 2-D
staircase, and a stored study's front (infeasible trials left out, one trial per point)."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from tuner.pareto import hypervolume, minimized, nondominated, study_front


def test_nondominated_by_hand() -> None:
    points = np.array(
        [
            [1.0, 5.0],  # 0: best first objective: front
            [2.0, 3.0],  # 1: front
            [3.0, 4.0],  # 2: dominated by 1
            [2.0, 3.0],  # 3: duplicate of 1: kept too
            [4.0, 1.0],  # 4: best second objective: front
            [5.0, 5.0],  # 5: dominated by everything
            [1.0, 6.0],  # 6: weakly dominated by 0 (equal first, worse second)
        ]
    )
    assert nondominated(points).tolist() == [True, True, False, True, True, False, False]


def test_nondominated_edge_cases() -> None:
    assert nondominated(np.zeros((0, 2))).tolist() == []
    assert nondominated(np.array([[3.0, 3.0]])).tolist() == [True]
    assert nondominated(np.array([[1.0, 1.0], [1.0, 1.0]])).tolist() == [True, True]
    # Three objectives: (1,1,1) dominates (1,2,1); (0,5,5) and (5,0,5) trade off with it.
    points = np.array([[1.0, 2.0, 1.0], [1.0, 1.0, 1.0], [0.0, 5.0, 5.0], [5.0, 0.0, 5.0]])
    assert nondominated(points).tolist() == [False, True, True, True]
    # One objective: only the minimum (all its copies).
    assert nondominated(np.array([[3.0], [1.0], [2.0], [1.0]])).tolist() == [False, True, False, True]


def _front_by_definition(points: np.ndarray) -> list[bool]:
    """Each point against every other: on the front unless some point is <= in every objective
    and < in one (the definition, O(n^2))."""
    le = np.all(points[:, None, :] <= points[None, :, :], axis=2)  # [j, i]: j <= i everywhere
    lt = np.any(points[:, None, :] < points[None, :, :], axis=2)
    return (~np.any(le & lt, axis=0)).tolist()


@pytest.mark.parametrize("objectives", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", range(3))
def test_nondominated_matches_the_definition_on_large_sets(objectives: int, seed: int) -> None:
    # Thousands of points (several of the sweep's 1,024-point blocks; the prefilter above 4,096),
    # few distinct values per objective so ties and duplicates abound, some infinities.
    rng = np.random.default_rng(seed)
    points = rng.integers(0, [3, 12, 40][seed % 3], size=(int(rng.integers(2_000, 5_000)), objectives)).astype(float)
    points[rng.random(points.shape) < 0.01] = np.inf
    points[rng.random(points.shape) < 0.005] = -np.inf
    assert nondominated(points).tolist() == _front_by_definition(points)


def test_nondominated_with_nan_leaves_nan_rows_to_the_comparisons() -> None:
    # NaN compares false both ways: (nan, 1) is neither dominated by nor dominating (0, 2).
    points = np.array([[0.0, 2.0, 1.0], [np.nan, 1.0, 1.0], [1.0, 3.0, 2.0]])
    assert nondominated(points).tolist() == _front_by_definition(points) == [True, True, False]


def test_minimized_flips_maximized_columns() -> None:
    values = np.array([[10.0, 0.5], [20.0, -2.0]])
    assert minimized(values, ["minimize", "maximize"]).tolist() == [[10.0, -0.5], [20.0, 2.0]]
    assert minimized(values, ["maximize", "minimize"]).tolist() == [[-10.0, 0.5], [-20.0, -2.0]]


def test_front_with_a_maximized_objective() -> None:
    # (latency, throughput): minimize latency, maximize throughput.
    values = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 15.0], [2.0, 5.0]])
    mask = nondominated(minimized(values, ["minimize", "maximize"]))
    # (3, 15) is slower and serves less than (2, 20); (2, 5) loses to both (1, 10) and (2, 20).
    assert mask.tolist() == [True, True, False, False]
    # Read as both minimized, the answer differs: (2, 5) would be on the front, (2, 20) not.
    assert nondominated(values).tolist() == [True, False, False, True]


def test_hypervolume_of_a_2d_staircase() -> None:
    # Points (1,3), (2,2), (3,1) with reference (4,4): slabs x in [1,2] of height 4-3 = 1,
    # [2,3] of height 2, [3,4] of height 3: 1 + 2 + 3 = 6.
    points = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(points, np.array([4.0, 4.0])) == pytest.approx(6.0)
    # A dominated point adds nothing; points not strictly inside the reference box are ignored.
    more = np.vstack([points, [[3.0, 3.0], [5.0, 0.0], [4.0, 0.5]]])
    assert hypervolume(more, np.array([4.0, 4.0])) == pytest.approx(6.0)
    # One point: a rectangle, (3 - 1) x (2 - 1) = 2.
    assert hypervolume(np.array([[1.0, 1.0]]), np.array([3.0, 2.0])) == pytest.approx(2.0)
    # Nothing inside: 0.
    assert hypervolume(np.array([[5.0, 5.0]]), np.array([4.0, 4.0])) == 0.0


def test_hypervolume_of_a_3d_box_union() -> None:
    # (0,0,1) and (1,1,0) with reference (2,2,2): boxes 2x2x1 = 4 and 1x1x2 = 2 overlapping in
    # [1,2]x[1,2]x[1,2] = 1: 4 + 2 - 1 = 5.
    points = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert hypervolume(points, np.array([2.0, 2.0, 2.0])) == pytest.approx(5.0)


def study_with(trials: list[optuna.trial.FrozenTrial]) -> optuna.Study:
    study = optuna.create_study(study_name="hand", directions=["minimize", "maximize"])
    with warnings.catch_warnings():  # set_metric_names is "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["latency_s", "tokens_per_s"])
    for t in trials:
        study.add_trial(t)
    return study


def test_study_front_leaves_out_infeasible_and_keeps_one_trial_per_point() -> None:
    ok, over = {"memory": -1.0}, {"memory": 2.0}
    study = study_with(
        [
            create_trial(values=[2.0, 20.0], constraints=ok),  # 0: front
            create_trial(values=[0.5, 99.0], constraints=over),  # 1: would dominate all, infeasible
            create_trial(values=[1.0, 10.0], constraints=ok),  # 2: front
            create_trial(values=[3.0, 15.0], constraints=ok),  # 3: dominated by 0
            create_trial(values=[2.0, 20.0], constraints=ok),  # 4: same point as 0: trial 0 stands for it
            create_trial(values=[1.5, 12.0], constraints={"memory": 0.0}),  # 5: on the bound: feasible, front
            create_trial(state=TrialState.FAIL),  # 6: not complete
        ]
    )
    front = study_front(study)
    # Sorted by the first objective: 2 (1.0), 5 (1.5), 0 (2.0).
    assert [t.number for t in front.trials] == [2, 5, 0]
    assert front.n_trials == 6 and front.n_feasible == 5
    assert front.directions == ["minimize", "maximize"]
    assert front.objective_names == ["latency_s", "tokens_per_s"]
    assert front.study_name == "hand"


def test_study_front_without_feasible_trials_is_empty() -> None:
    study = study_with([create_trial(values=[1.0, 1.0], constraints={"memory": 1.0})])
    front = study_front(study)
    assert front.trials == [] and front.n_trials == 1 and front.n_feasible == 0


def test_study_front_without_constraints_counts_every_trial_feasible() -> None:
    study = study_with([create_trial(values=[1.0, 1.0]), create_trial(values=[2.0, 2.0])])
    front = study_front(study)
    assert [t.number for t in front.trials] == [0, 1]  # a trade-off: both on the front
    assert front.n_feasible == 2


def test_study_front_keeps_one_trial_for_points_equal_but_for_rounding() -> None:
    """Two configurations the cost model scores alike by different floating-point paths (a
    disaggregated trial's max_num_tokens 2048 and 8192: 40.299625670252695 and 40.299625670267964
    tokens/s per chip; the second objective the other way in its last bits) each beat the other
    by 1e-13 and both stood on the front: one deployment listed twice. The earliest stands."""
    ok = {"memory": -1.0}
    study = study_with(
        [
            create_trial(values=[2.0, 10.0], constraints=ok),  # 0: front
            create_trial(values=[1.0 + 3e-13, 5.0], constraints=ok),  # 1: front
            create_trial(values=[1.0, 5.0 - 3e-13], constraints=ok),  # 2: trial 1's point but for rounding
            create_trial(values=[1.0 + 1e-6, 5.5], constraints=ok),  # 3: a real trade-off: front
            # 4 and 5: one point whose second objective straddles a rounding boundary (59.2990427
            # and 59.2990426 at 9 digits), as a disaggregated study's front had it.
            create_trial(values=[5.0, 59.29904265293086], constraints=ok),
            create_trial(values=[5.0 - 1e-12, 59.29904264318274], constraints=ok),
        ]
    )
    assert [t.number for t in study_front(study).trials] == [1, 3, 0, 4]
