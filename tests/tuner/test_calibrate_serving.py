"""Accuracy of the serving model on measured TensorRT-LLM runs (data/serving/), on held-out folds.

The engine overheads are fitted leaving out every run of the predicted run's (prompt, output)
lengths; the errors below are on runs the fit never saw. Targets of the serving issue: TPOT median
<= 10% (asserted), TTFT median <= 20% (not met: about 40%, asserted at its measured level so a
regression shows, and written down in docs/accuracy.md), no concurrency band worse than 2x."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.serving import NO_OVERHEADS, engine_overheads
from tuner import calibrate_serving as cs


@pytest.fixture(scope="module")
def runs() -> cs.ServingRuns:
    return cs.read_runs()


@pytest.fixture(scope="module")
def held_out(runs: cs.ServingRuns) -> dict:
    ttft, tpot = cs.held_out_predictions(runs)
    return cs.error_summary(runs, ttft, tpot)


def test_the_runs_are_the_shipped_ones(runs: cs.ServingRuns) -> None:
    assert len(runs) == 177
    assert runs.model.layers == 32 and runs.model.kv_heads == 8  # from the file's architecture columns
    assert runs.hardware == "h100-sxm" and runs.backend == "trtllm"
    assert len(np.unique(runs.groups)) == 9


def test_held_out_tpot_meets_the_target(held_out: dict) -> None:
    assert held_out["all"]["tpot_median_error"] <= 0.10


def test_held_out_ttft_stays_at_its_measured_level(held_out: dict) -> None:
    # Target 20% is not met (docs/accuracy.md says why); 45% guards the 40% reached.
    assert held_out["all"]["ttft_median_error"] <= 0.45


def test_no_concurrency_band_is_off_by_more_than_2x(held_out: dict) -> None:
    for band, e in held_out["bands"].items():
        for key in ("ttft_median_ratio", "tpot_median_ratio"):
            assert 0.5 <= e[key] <= 2.0, (band, key, e[key])


def test_the_fit_improves_on_no_overheads(runs: cs.ServingRuns, held_out: dict) -> None:
    bare = cs.predict(runs, NO_OVERHEADS)
    before = cs.error_summary(runs, bare.ttft_s, bare.tpot_s)["all"]
    assert held_out["all"]["ttft_median_error"] < before["ttft_median_error"] - 0.2
    assert held_out["all"]["tpot_median_error"] < before["tpot_median_error"]


def test_the_shipped_overheads_are_the_fit_on_every_run(runs: cs.ServingRuns) -> None:
    shipped = engine_overheads("trtllm")
    refit = cs.fit_overheads(runs)
    for name in cs.FITTED:
        assert getattr(shipped, name) == pytest.approx(getattr(refit, name), rel=0.02), name
