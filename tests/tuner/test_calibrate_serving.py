"""Accuracy of the serving model on measured TensorRT-LLM runs (data/serving/), on held-out folds.

The engine overheads are fitted leaving out every run of the predicted run's (prompt, output)
lengths; the errors below are on runs the fit never saw. Targets of the serving issue: TPOT median
<= 10%, TTFT median <= 20%, no concurrency band worse than 2x (all asserted; docs/accuracy.md)."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.serving import NO_OVERHEADS, engine_overheads
from tuner import calibrate_serving as cs


@pytest.fixture(scope="module")
def runs() -> cs.ServingRuns:
    return cs.read_runs()


@pytest.fixture(scope="module")
def predicted(runs: cs.ServingRuns) -> tuple[np.ndarray, np.ndarray]:
    """Held-out TTFT and TPOT of every run."""
    return cs.held_out_predictions(runs)


@pytest.fixture(scope="module")
def held_out(runs: cs.ServingRuns, predicted: tuple[np.ndarray, np.ndarray]) -> dict:
    return cs.error_summary(runs, *predicted)


@pytest.fixture(scope="module")
def shipped_fit(runs: cs.ServingRuns) -> cs.ServingFit:
    """The overheads and the runs' batch cap fitted on every run (what the shipped file holds)."""
    return cs.fit_serving(runs)


def test_the_runs_are_the_shipped_ones(runs: cs.ServingRuns) -> None:
    assert len(runs) == 177
    assert runs.model.layers == 32 and runs.model.kv_heads == 8  # from the file's architecture columns
    assert runs.hardware == "h100-sxm" and runs.backend == "trtllm"
    assert len(np.unique(runs.groups)) == 9


def test_held_out_tpot_meets_the_target(held_out: dict) -> None:
    assert held_out["all"]["tpot_median_error"] <= 0.10


def test_held_out_tpot_meets_the_target_at_every_tp_degree(
    runs: cs.ServingRuns, predicted: tuple[np.ndarray, np.ndarray]
) -> None:
    """Each TP degree's runs (42-45 each) held out within 9% at the median (the serving issue's
    TPOT target is 10% over all runs). With Figure 3's 1D collectives (an NCCL all-gather and
    reduce-scatter per weight set) hidden behind the block's work, TP 2, 4 and 8 were 9.1%, 8.5%
    and 10.6% (median ratios 0.93, 0.97, 0.97: the collectives cost nothing); with the engines' two
    all-reduces per block on the critical path 3.0%, 3.8%, 6.4% (TP1, which has none, 2.6% ->
    2.4%). The bar was 8% until decode attention's work units were made continuous in the cached
    length (2026-12-06, cost_models/efficiency.py decode_attention_time_s: ceil(kv_len / 512) made
    the time fall as the cache grew, 77.4 -> 45.6 us from kv_len 512 to 513): TP 1, 2, 4, 8 went
    2.16%, 4.15%, 5.86%, 7.59% -> 2.48%, 4.06%, 5.83%, 8.35%. These runs' prompts are 1024, 2048
    and 4096 tokens, so their caches sat just past a 512 boundary, in the old dips; the 36 static
    runs nothing is fitted on went 11.4% -> 10.6% with it (TP8 12.0% -> 10.1%)."""
    _, tpot = predicted
    for tp in (1, 2, 4, 8):
        at = runs.tp == tp
        error = float(np.median(np.abs(tpot[at] / runs.tpot_s[at] - 1.0)))
        assert error <= 0.09, (tp, error)


def test_held_out_ttft_meets_the_target(held_out: dict) -> None:
    # 16.3% since the fit's loss is soft L1 (tuner.calibrate_serving.FIT_LOSS_SCALE; 16.4% and 16.2%
    # at half and twice its scale); 20.4% (20.35) under plain least squares, where the runs the model
    # does not represent (128 clients on 1-2 GPUs, 64-128 clients on 4-8 GPUs) pulled the shared
    # overheads by the square of their log error. The bar was 0.21 then (the target missed by 0.35
    # points); it is the target's 0.20 now that the fit meets it.
    assert held_out["all"]["ttft_median_error"] <= 0.20


def test_no_concurrency_band_is_off_by_more_than_2x(held_out: dict) -> None:
    for band, e in held_out["bands"].items():
        for key in ("ttft_median_ratio", "tpot_median_ratio"):
            assert 0.5 <= e[key] <= 2.0, (band, key, e[key])


def test_the_fit_improves_on_no_overheads(runs: cs.ServingRuns, held_out: dict) -> None:
    """Without overheads (and with the engine's default batch cap) the model misses the runs at
    65-128 clients by 5x on TTFT (measured: 0.21); the fit brings TTFT in (median 24.6% bare, 16.3%
    fitted and held out; 10.0% since the all-reduces and the desynchronized TPOT). TPOT: 4.4% bare
    and 5.1% held out since the desynchronized closed loop's TPOT counts the stalls other clients'
    prompts put into a request's decode iterations (before, 9% bare and 3.2% held out). The runs
    confirm those stalls: at fixed TP, prompt and clients the measured TPOT falls with the output
    length as stall / (G - 1), and the model's stall per cycle is now a median 1.01x the measured
    one over the 59 such groups (0.95x before, and none at all at 8 clients with 1024-token
    prompts, where the runs show 66-91 ms). What is left is the decode step itself, that fit's
    intercept, 5-20% over the runs at 8-16 clients (TP 8, 1024 tokens, 8 clients: 3.05 ms against
    2.55 ms), so host time added to decode iterations adds to an error TPOT already has: the
    overheads are fitted for TTFT, and TPOT is held to the target and to within a point of bare."""
    bare = cs.predict(runs, NO_OVERHEADS)
    before = cs.error_summary(runs, bare.ttft_s, bare.tpot_s)
    assert before["bands"]["65-128"]["ttft_median_ratio"] < 0.5
    assert 0.5 <= held_out["bands"]["65-128"]["ttft_median_ratio"] <= 2.0
    assert held_out["all"]["tpot_median_error"] <= min(0.10, before["all"]["tpot_median_error"] + 0.01)
    assert held_out["all"]["ttft_median_error"] < before["all"]["ttft_median_error"]


def test_each_run_keeps_one_client_outside_the_engine_and_the_cap_above_that() -> None:
    runs = cs.read_runs()
    caps = cs.runs_batch_cap(runs, 100.0)
    np.testing.assert_array_equal(caps, np.minimum(runs.concurrency - 1.0, 100.0))
    one = runs.take(np.flatnonzero(runs.concurrency == runs.concurrency.min())[:1])
    assert cs.runs_batch_cap(one)[0] == one.concurrency[0] - 1.0  # engine default cap: 2048


def test_the_runs_admission_is_a_named_assumption_a_user_can_replace() -> None:
    """The one client held out of the engine is an assumption about the shipped runs' benchmark
    (their headers record neither the client nor the engine's max_batch_size), not an engine rule:
    it is named, and runs from a client that admits every request (IDEAL_CLOSED_LOOP) are modelled
    with all their clients running. From first principles: 8 clients, the engine's default cap of
    2048 (TensorRT-LLM): 8 - 1 = 7 run under the shipped runs' admission, 8 under the ideal loop;
    128 clients under a cap of 100: 100 either way."""
    runs = cs.read_runs()
    at_8 = runs.take(np.flatnonzero(runs.concurrency == 8))
    assert len(at_8) > 0
    np.testing.assert_array_equal(cs.runs_batch_cap(at_8), np.full(len(at_8), 7.0))
    np.testing.assert_array_equal(cs.runs_batch_cap(at_8, admission=cs.IDEAL_CLOSED_LOOP), np.full(len(at_8), 8.0))
    at_128 = runs.take(np.flatnonzero(runs.concurrency == 128))
    for admission in (cs.AIC_SILICON_ADMISSION, cs.IDEAL_CLOSED_LOOP):
        np.testing.assert_array_equal(cs.runs_batch_cap(at_128, 100.0, admission), np.full(len(at_128), 100.0))
    assert cs.AIC_SILICON_ADMISSION.clients_held_back == 1.0 and cs.IDEAL_CLOSED_LOOP.clients_held_back == 0.0


def test_the_ideal_admission_is_what_the_serving_commands_model() -> None:
    """Under IDEAL_CLOSED_LOOP at the engine's own cap every client runs, as in `tuner estimate
    --concurrency` (predict(..., one_waiting=False)): the two must give the same TTFT and TPOT."""
    runs = cs.read_runs()
    some = runs.take(np.flatnonzero((runs.concurrency == 8) | (runs.concurrency == 128))[:12])
    overheads = engine_overheads("trtllm")
    ideal = cs.predict(some, overheads, admission=cs.IDEAL_CLOSED_LOOP)
    commands = cs.predict(some, overheads, one_waiting=False)
    np.testing.assert_allclose(ideal.ttft_s, commands.ttft_s, rtol=1e-12)
    np.testing.assert_allclose(ideal.tpot_s, commands.tpot_s, rtol=1e-12)
    shipped = cs.predict(some, overheads)
    assert np.all(shipped.ttft_s[some.concurrency == 8] > ideal.ttft_s[some.concurrency == 8])


def test_the_shipped_fit_says_which_admission_it_assumed() -> None:
    """A fit's fitted_on (the overheads file's header and body) names the admission it assumed,
    so a user refitting on runs from another benchmark client sees it is an assumption."""
    shipped = engine_overheads("trtllm")
    assert "admission assumed, not recorded in the runs: aic-silicon-one-waiting" in shipped.fitted_on
    assert "min(clients - 1, 113)" in shipped.fitted_on


def test_the_fitted_batch_cap_is_where_littles_law_puts_the_runs(
    runs: cs.ServingRuns, shipped_fit: cs.ServingFit
) -> None:
    """Little's law on the measured runs alone (running = clients x decode time / (TTFT + decode
    time)) gives 89-124 sequences in the engine at 128 clients; the fitted cap must land there,
    not at a bound of its search."""
    decode = (runs.gen_len - 1.0) * runs.tpot_s
    running = runs.concurrency * decode / (runs.ttft_s + decode)
    at_128 = running[runs.concurrency == 128]
    cap = shipped_fit.runs_max_batch_size
    assert at_128.min() <= cap <= at_128.max()


def test_the_shipped_overheads_are_the_fit_on_every_run(shipped_fit: cs.ServingFit) -> None:
    """The shipped file is the fit on the shipped kernel profiles (`python -m tuner.accuracy_report
    --serving-only` refits it when a kernel model change moves the iterations: the GEMM shape
    correction of 2026-12-06 took the fit from 70.9 us, 19.38 ms and 20.77 ms to 70.7 us, 19.42
    ms and 20.42 ms, within this 2%; refitted on every run, as the overheads fitted on the
    uncorrected GEMMs were reproduced bit for bit on the same VM with the correction taken out)."""
    shipped = engine_overheads("trtllm")
    refit = shipped_fit.overheads
    for name in cs.FITTED:
        assert getattr(shipped, name) == pytest.approx(getattr(refit, name), rel=0.02), name


def test_the_accuracy_doc_states_the_error_of_the_serving_commands(runs: cs.ServingRuns) -> None:
    """The HELD OUT columns model each run with a batch cap of min(clients - 1, N) that no user's
    engine has; tuner estimate --concurrency, simulate and recommend run the engine's own
    max_batch_size (2048 for TensorRT-LLM). On these measured runs their TTFT is a median 0.41x
    the measured (59% off; 0.26x at 1-8 clients, 0.30x at 65-128), which docs/accuracy.md and
    docs/serving.md quoted only as the held-out 10-17%. The paragraph is computed from the runs
    and the shipped fit and must be in the doc as generated."""
    from pathlib import Path

    from tuner.accuracy_report import commands_error, render_commands_error

    commands = commands_error(runs, engine_overheads("trtllm"))
    assert commands["all"]["ttft_median_ratio"] < 0.5
    assert commands["bands"]["1-8"]["ttft_median_ratio"] < 0.5
    doc = (Path(__file__).resolve().parents[2] / "docs" / "accuracy.md").read_text()
    assert render_commands_error(commands) in doc


def test_the_docs_name_the_admission_the_code_has() -> None:
    """docs/accuracy.md (generated by tuner.accuracy_report) and docs/serving.md say the cap is the
    runs' admission, named in tuner.calibrate_serving, and what was ruled out from the sources."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for doc in ("docs/accuracy.md", "docs/serving.md"):
        text = (root / doc).read_text()
        assert "AIC_SILICON_ADMISSION" in text and "IDEAL_CLOSED_LOOP" in text, doc
        assert "concurrency_worker.cc" in text and "extra_engine_args.1.0.0rc3.yaml.j2" in text, doc
    assert isinstance(cs.AIC_SILICON_ADMISSION, cs.RunsAdmission)
    assert isinstance(cs.IDEAL_CLOSED_LOOP, cs.RunsAdmission)


def _table(text: str) -> dict[str, list[float]]:
    """The serving section's held-out table (docs/accuracy.md, tuner.accuracy_report.render_serving):
    concurrency band -> its numbers (percentages in points, ratios as written)."""
    rows = {}
    section = text[text.index("### H100, TensorRT-LLM serving Llama-3.1-8B under load") :]
    for line in section.splitlines()[6:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = [float(c.rstrip("%")) for c in cells[1:]]
    return rows


def test_the_accuracy_doc_states_the_serving_errors_of_the_shipped_model(
    runs: cs.ServingRuns, held_out: dict, shipped_fit: cs.ServingFit
) -> None:
    """docs/accuracy.md's serving section is the tool's on the shipped kernel profiles and overheads.
    Its held-out table within 0.15 points (0.015 in a ratio: nine least-squares folds, rounded to
    0.1 points; a refit of every kernel profile on this VM, every parametric value moved by solver
    noise, moved these numbers by 0.1 at most) and the shipped fit's line as written. Before the
    refit after the GEMM shape correction (`--serving-only`) the section held the uncorrected
    GEMMs' numbers: TPOT BEFORE 6.2% at 33-64 clients where the tool gives 5.6%, TTFT BEFORE 17.9%
    (17.5%), outside the engine 21 ms (20.4 ms shipped)."""
    from pathlib import Path

    from tuner.accuracy_report import commands_error, render_serving

    overheads = engine_overheads("trtllm")
    bare = cs.predict(runs, NO_OVERHEADS)
    result = {
        "runs": runs,
        "bare": cs.error_summary(runs, bare.ttft_s, bare.tpot_s),
        "held_out": held_out,
        "commands": commands_error(runs, overheads),
        "overheads": overheads,
        "runs_max_batch_size": shipped_fit.runs_max_batch_size,
    }
    rendered = render_serving(result)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "accuracy.md").read_text()
    tool, written = _table(rendered), _table(doc)
    assert tool.keys() == written.keys()
    for band, numbers in tool.items():
        for column, (mine, theirs) in enumerate(zip(numbers, written[band], strict=True)):
            tolerance = 0 if column == 0 else 0.015 if column in (3, 7) else 0.15  # runs, ratios, points
            assert abs(mine - theirs) <= tolerance + 1e-9, (band, column, mine, theirs)
    shipped_line = next(line for line in rendered.splitlines() if line.startswith("Shipped fit"))
    assert shipped_line in doc


def test_the_accuracy_docs_left_ratios_are_the_held_out_ones(
    runs: cs.ServingRuns, predicted: tuple[np.ndarray, np.ndarray]
) -> None:
    """docs/accuracy.md's serving "Left:" (tuner.accuracy_report's prose; docs/serving.md quotes it):
    held-out TTFT over measured where the model is furthest off. It said 4.0x, 1.15x and 0.17-1.05x
    after the refit of 2026-12-06 gave 4.05x, 1.14x and 0.18-1.04x (no test read it)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "accuracy.md").read_text(encoding="utf-8")
    found = re.findall(
        r"Left: at 128 clients on 1-2 GPUs the model is up to (\S+)x over \(median (\S+);.*?at 8-32 clients with "
        r"1024-token prompts (\S+)x \(median\); at 64 clients on 4-8 GPUs (\S+)-(\S+)x \(median (\S+);",
        doc,
        re.S,
    )
    assert len(found) == 1
    most, most_median, short_median, low, high, low_median = found[0]
    ratio = predicted[0] / runs.ttft_s
    clients, tp = runs.concurrency, runs.tp
    crowded = ratio[(clients == 128) & (tp <= 2)]
    short = ratio[(clients >= 8) & (clients <= 32) & (runs.prompt_len == 1024)]
    wide = ratio[(clients == 64) & (tp >= 4)]
    for value, printed in (
        (crowded.max(), most), (np.median(crowded), most_median), (np.median(short), short_median),
        (wide.min(), low), (wide.max(), high), (np.median(wide), low_median),
    ):  # fmt: skip
        decimals = len(printed.split(".")[1])
        assert round(float(value), decimals) == pytest.approx(float(printed)), (printed, value)
