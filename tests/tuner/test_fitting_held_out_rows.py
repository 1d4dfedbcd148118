"""tuner.fitting.cross_validate's ``fit_rows``: the held-out error measured on every row of a
group while the fits read only the rows drawn for them (tuner calibrate's MAX_ROWS_PER_GROUP)."""

from __future__ import annotations

import numpy as np

from cost_models.efficiency import FitSpec
from tuner.fitting import cross_validate, fold_ids

SPECS = {"scale": FitSpec(0.1, 10.0, log=True, start=1.0)}


def _group(rows: int = 240, shapes: int = 40, seed: int = 3):
    """Rows of ``shapes`` shapes whose seconds are 2 x size, each shape slower or faster by its
    own factor (what a fit of one scale cannot follow: its held-out error is not 0)."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, shapes, rows)
    size = rng.uniform(1.0, 5.0, rows)
    shape_factor = np.exp(rng.normal(0.0, 0.1, shapes))
    return keys, size, 2.0 * size * shape_factor[keys]


def _recording_predict(size, seen: list[np.ndarray]):
    def predict(values, idx):
        seen.append(np.asarray(idx))
        return values["scale"] * size[idx]

    return predict


def test_every_row_is_scored_and_the_fits_read_only_the_drawn_rows():
    keys, size, measured = _group()
    drawn = np.sort(np.random.default_rng(0).choice(len(keys), 60, replace=False))
    seen: list[np.ndarray] = []
    errors = cross_validate(SPECS, _recording_predict(size, seen), measured, keys, 5, 1, fit_rows=drawn)
    assert np.isfinite(errors).all()  # every row of the group, not only the 60 drawn
    folds = fold_ids(keys, 5, 1)
    # What a fold's fit read (the solver's calls) lies in the drawn rows of the other folds; the
    # calls on a whole test fold are its predictions.
    fits = [idx for idx in seen if not any(np.array_equal(idx, np.flatnonzero(folds == f)) for f in range(5))]
    assert fits
    for idx in fits:
        assert np.isin(idx, drawn).all()
        assert len(np.unique(folds[idx])) == 4  # four training folds, the fifth held out


def test_every_row_drawn_gives_the_errors_of_fitting_them_all():
    keys, size, measured = _group()
    predict = _recording_predict(size, [])
    every = cross_validate(SPECS, predict, measured, keys, 5, 1)
    drawn = cross_validate(SPECS, predict, measured, keys, 5, 1, fit_rows=np.arange(len(keys)))
    np.testing.assert_array_equal(every, drawn)


def test_a_held_out_row_is_predicted_by_a_fit_that_never_saw_its_shape():
    # Shape 0 is 3x slower than the rest; drawn rows of it alone would pull a fit that saw them.
    keys, size, measured = _group(shapes=10)
    measured = np.where(keys == 0, 3.0 * measured, measured)
    drawn = np.arange(0, len(keys), 2)
    errors = cross_validate(SPECS, _recording_predict(size, []), measured, keys, 5, 1, fit_rows=drawn)
    # The slow shape's rows, drawn or not, are predicted about 3x too fast (|1/3 - 1| ~ 0.67).
    assert np.all(errors[keys == 0] > 0.5)
    assert np.median(errors[keys != 0]) < 0.25
