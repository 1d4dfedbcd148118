"""The MoE layer model against the measured fused-MoE kernels (data/kernels/moe_perf.csv.gz).

CALIBRATED (grouped dense GEMMs, nothing fitted on these rows) keeps its bounds of before the MoE
class; FITTED errors are held out (5 folds grouped by expert shape, refitted here), and their
bounds are a little above what was measured on 2026-12-02 (docs/accuracy.md, section MoE
layers), so a change that makes the MoE model worse fails here."""

from __future__ import annotations

import dataclasses
import gzip

import numpy as np
import pytest

import tuner.moe_kernels as moe_kernels
from cost_models.calibration import profile_for
from cost_models.moe import experts_woken
from cost_models.moe_kernel_time import moe_kernel_params
from tuner.moe_kernels import (
    BORROWED_REFIT,
    MOE_FILE,
    expert_slices,
    fit_moe,
    fitted_times_s,
    moe_data,
    moe_kernel_errors,
    moe_layer_times,
    pair_rows,
    read_moe_rows,
    with_moe,
    without_moe,
)

#: Held-out median measured per (chip, engine) with the shipped dense parameters; the tests allow
#: 1.5 points more.
MEASURED_HELD_OUT_MEDIAN = {
    ("a100-80gb", "sglang"): 0.092,
    ("a100-80gb", "trtllm"): 0.054,
    ("a100-80gb", "vllm"): 0.143,
    ("b200", "vllm"): 0.120,
    ("gb200", "sglang"): 0.168,
    ("gb200", "vllm"): 0.123,
    ("h100-sxm", "sglang"): 0.098,
    ("h100-sxm", "trtllm"): 0.081,
    ("h100-sxm", "vllm"): 0.098,
    ("h200", "sglang"): 0.118,
    ("h200", "trtllm"): 0.097,
    ("h200", "vllm"): 0.114,
    ("l40s", "sglang"): 0.171,
    ("l40s", "trtllm"): 0.055,
    ("l40s", "vllm"): 0.060,
}


@pytest.fixture(scope="module")
def errors():
    return moe_kernel_errors()


def test_the_copy_keeps_provenance_and_only_expert_tensor_parallelism() -> None:
    with gzip.open(MOE_FILE, "rt") as handle:
        header = [line for line in handle if line.startswith("#")]
    assert any("aiconfigurator" in line for line in header)
    assert any("moe_ep_size == 1" in line for line in header)
    rows = read_moe_rows()
    assert len(rows) > 10_000 and {r["moe_ep_size"] for r in rows} == {"1"}


def test_every_chip_and_engine_is_compared(errors) -> None:
    pairs = {(e.chip, e.backend) for e in errors}
    assert {"h100-sxm", "h200", "a100-80gb", "l40s", "b200", "gb200"} == {chip for chip, _ in pairs}
    assert len(pairs) >= 15
    assert all(e.rows >= 150 for e in errors)


def test_calibrated_expert_gemms_beat_the_roofline_everywhere(errors) -> None:
    for e in errors:
        assert np.median(e.calibrated_error) < np.median(e.roofline_error), (e.chip, e.backend)


def test_calibrated_moe_error_bounds(errors) -> None:
    """Grouped dense GEMMs, nothing fitted: median 19-46% per chip and engine, p90 49-102% (a100
    SGLang's int4_wo MoE rows borrow its bf16 dense fit, no int4 GEMM being measured there: 2.5-3.2x
    over, 1.02 at p90 since the GEMM refit with split_k_min_depth and quant_row_s; 0.84 before)."""
    for e in errors:
        assert np.median(e.calibrated_error) <= 0.50, (e.chip, e.backend)
        assert np.percentile(e.calibrated_error, 90) <= 1.05, (e.chip, e.backend)
        assert 0.5 <= np.median(e.calibrated_ratio) <= 1.2, (e.chip, e.backend)  # no 2x bias
    everything = np.concatenate([e.calibrated_error for e in errors])
    assert np.median(everything) <= 0.35


def test_fitted_moe_held_out_error_bounds(errors) -> None:
    """Held out by expert shape: 5.4-17.1% median per chip and engine (13 of 15 within issue 11's
    15%), p90 13-59%, 10.3% over every row (p90 43%), no bias. Before the MoE class's own combine
    power and each measured row's own routing (2026-12-06): 7.4-21.6%, 11 of 15, 13.4% (p90 45%)."""
    assert {(e.chip, e.backend) for e in errors} == set(MEASURED_HELD_OUT_MEDIAN)
    for e in errors:
        median = np.median(e.fitted_error)
        assert median <= MEASURED_HELD_OUT_MEDIAN[(e.chip, e.backend)] + 0.015, (e.chip, e.backend, median)
        # The class earns its place: at least 15% below the grouped dense GEMMs (l40s SGLang: 0.81 of
        # them since the dense GEMM refit improved those, 0.295 -> 0.281; 0.2-0.7 elsewhere).
        assert median < 0.85 * np.median(e.calibrated_error), (e.chip, e.backend)
        assert np.percentile(e.fitted_error, 90) <= 0.70, (e.chip, e.backend)
        assert 0.95 <= np.median(e.fitted_ratio) <= 1.05, (e.chip, e.backend)
    assert sum(np.median(e.fitted_error) <= 0.15 for e in errors) >= 13
    everything = np.concatenate([e.fitted_error for e in errors])
    assert np.median(everything) <= 0.115
    assert np.percentile(everything, 90) <= 0.45


def test_weight_only_formats_with_one_expert_shape_are_refitted_from_the_bf16_class(errors) -> None:
    """int4_wo on B200, GB200, H100, H200 and L40S vLLM/SGLang: one expert shape each (Kimi K2's),
    too few for a class of its own; three parameters of the pair's bfloat16 class are refitted on
    those rows (BORROWED_REFIT), held out by moe_tp slices. Until 2026-12-06 the bfloat16 class
    timed them as it was, 0.37-0.78x of the measured time on B200/GB200/H100/H200 (held-out
    medians 22-63%); the refit's held-out median over the 9 pairs is 9.8%."""
    before, after, refitted = [], [], 0
    for e in errors:
        rows = e.moe_format == "int4_wo"
        if not rows.any() or e.fit.cv_error.get("moe/int4_wo") is None:
            continue
        cv = e.fit.cv_error["moe/int4_wo"]
        if cv.expert_shapes is None:  # A100 SGLang: 10 shapes, the whole class
            assert "int4_wo" not in e.fit.replaced
            continue
        refitted += 1
        assert cv.expert_shapes == ["7168/2048/384/8"], (e.chip, e.backend)
        cls, median, _, ratio = e.fit.replaced["int4_wo"]
        bf16 = e.fit.params["bfloat16"]
        int4 = e.fit.params["int4_wo"]
        assert cls == "bfloat16" and "int4_wo" not in e.fit.skipped
        # Only the three refitted parameters move; the floor's passes and the blend are bf16's.
        for name in set(bf16.model_dump()) - set(BORROWED_REFIT):
            assert getattr(int4, name) == getattr(bf16, name), (e.chip, e.backend, name)
        # The held-out predictions of these rows are the refit's, not the borrowed class's.
        assert cv.median == pytest.approx(np.median(e.fitted_error[rows]))
        before.append(median)
        after.append(cv.median)
        if e.chip in ("b200", "gb200", "h100-sxm", "h200"):
            assert ratio < 0.8 and cv.median < 0.75 * median, (e.chip, e.backend, ratio, median, cv.median)
    assert refitted == 9
    assert np.median(after) <= 0.11 and np.median(before) >= 0.29


def _recorded_fits(monkeypatch) -> list[tuple[tuple[str, ...], np.ndarray]]:
    """(parameters fitted, rows fitted on) of every fit moe_kernels runs from here on."""
    calls: list[tuple[tuple[str, ...], np.ndarray]] = []
    real_fit = moe_kernels.fit

    def recording_fit(specs, predict, measured, rows=None, *args, **kwargs):
        calls.append((tuple(specs), np.arange(len(measured)) if rows is None else np.asarray(rows)))
        return real_fit(specs, predict, measured, rows, *args, **kwargs)

    monkeypatch.setattr(moe_kernels, "fit", recording_fit)
    return calls


def _assert_each_row_held_out_once(everything: np.ndarray, folds: list[np.ndarray], groups: np.ndarray) -> None:
    """Each fold's training rows leave out whole groups, and every row is left out by one fold."""
    assert len(everything) == len(groups)
    left_out = np.zeros(len(groups), dtype=int)
    for train in folds:
        test = np.setdiff1d(everything, train)
        assert len(test) and not set(groups[train]) & set(groups[test])
        left_out[test] += 1
    assert np.all(left_out == 1)


def test_a_refit_holds_out_whole_moe_tp_slices(monkeypatch) -> None:
    """Each fold's fit of a BORROWED_REFIT format leaves out whole moe_tp slices (all its rows are
    one expert shape), and every row is left out by exactly one fold."""
    calls = _recorded_fits(monkeypatch)
    profile = profile_for("h200", "vllm")
    data = moe_data(pair_rows("h200", "vllm"), "h200", "vllm", profile)
    result = fit_moe(data, profile)
    tp = data.moe_tp[data.moe_format == "int4_wo"]
    refits = [rows for names, rows in calls if names == BORROWED_REFIT]
    assert len(refits) == 6  # one on every row, then one per fold
    _assert_each_row_held_out_once(refits[0], refits[1:], tp)
    assert result.cv_error["moe/int4_wo"].rows == len(tp)


def test_cross_validation_never_trains_on_the_shape_it_predicts(monkeypatch) -> None:
    """Every fit on a subset of rows (a fold's training set) leaves out whole expert shapes, and
    every row is left out by exactly one of them."""
    calls = _recorded_fits(monkeypatch)
    profile = profile_for("h100-sxm", "trtllm")
    data = moe_data(pair_rows("h100-sxm", "trtllm"), "h100-sxm", "trtllm", profile)
    shapes = data.shape[data.moe_format == "bfloat16"]
    fit_moe(data, profile)
    # bfloat16 is the first format fitted: one fit on every row, then one per fold.
    _assert_each_row_held_out_once(calls[0][1], [rows for _, rows in calls[1:6]], shapes)


def test_the_cost_model_charges_what_was_fitted() -> None:
    """calibrated_operator_times under the shipped profile (the operator costs, the sharding, the
    MoE slots) gives the fit's own formula for the formats it fitted, and the bf16 class's for the
    weight-only format it did not (at int4 weight bytes)."""
    chip, backend = "h100-sxm", "vllm"
    profile = profile_for(chip, backend)
    rows = pair_rows(chip, backend)
    data = moe_data(rows, chip, backend, profile)
    _, shipped, _ = moe_layer_times(rows, chip, backend, profile)
    # Each measured fp8 format by its own class: block-scaled weights (fp8_block rows) by the
    # fp8_block class, per-tensor ones (fp8 rows) by the fp8 class (until 2026-12 every fp8 expert
    # ran fp8_block, which times the per-tensor rows at a quarter of their measured latency).
    # The fit times each measured row at the experts its own routing woke (tuner.moe_routing); the
    # cost model times a deployment at uniform routing, as moe_layer_times does: the same formula
    # at the uniformly routed experts.
    uniform = experts_woken(data.tokens, np.array([float(r["num_experts"]) for r in rows]), data.topk)
    data = dataclasses.replace(data, woken=uniform, tokens_per_expert=data.tokens * data.topk / uniform)
    for fmt in ("bfloat16", "fp8", "fp8_block"):
        index = np.flatnonzero(data.moe_format == fmt)
        # (a serving step's weights are not in L2: efficiency.gemm_time_s's default, weights_in_l2 False)
        expected = fitted_times_s(data, index, fmt, profile.moe[fmt], profile)
        np.testing.assert_allclose(shipped[index], expected, rtol=1e-9)
    assert moe_kernel_params(profile.moe, "fp8") is profile.moe["fp8"]
    assert moe_kernel_params(profile.moe, "fp8_block") is profile.moe["fp8_block"]
    # int4_wo by its class refitted from bfloat16's (BORROWED_REFIT), at int4 weight bytes.
    index = np.flatnonzero(data.moe_format == "int4_wo")
    expected = fitted_times_s(data, index, "int4_wo", profile.moe["int4_wo"], profile)
    np.testing.assert_allclose(shipped[index], expected, rtol=1e-9)
    assert np.all(shipped[index] != data.before_s[index])
    borrowed = fitted_times_s(data, index, "int4_wo", profile.moe["bfloat16"], profile)
    assert np.median(shipped[index] / borrowed) > 1.2  # 0.70x of measured before, ~1.0 now


def test_shipped_profiles_hold_the_fit_on_every_row(errors) -> None:
    """The profiles in the repo were written by this fit (python -m tuner.accuracy_report --moe-only)
    and their held-out errors are the ones recomputed here. Within 1e-4: the solver's path differs
    by machine where the loss is flat in a parameter (b200 vLLM fp8's combine_power refits 2.7e-6
    apart on two AMD EPYC VMs of 2026-12-06); a stale profile is off by far more."""
    for e in errors:
        shipped = profile_for(e.chip, e.backend)
        assert set(shipped.moe) == set(e.fit.params), (e.chip, e.backend)
        for fmt, params in e.fit.params.items():
            for name, value in params.model_dump().items():
                assert getattr(shipped.moe[fmt], name) == pytest.approx(value, rel=1e-4, abs=1e-12), (e.chip, fmt, name)
            assert shipped.moe_cv_error[f"moe/{fmt}"].median == pytest.approx(e.fit.cv_error[f"moe/{fmt}"].median)


def test_the_moe_fit_leaves_every_other_parameter_alone() -> None:
    profile = profile_for("h200", "trtllm")
    bare = without_moe(profile)
    refitted = with_moe(bare)
    assert bare.moe == {} and refitted.moe
    for name in ("gemm", "prefill_attention", "decode_attention", "elementwise", "collectives", "cv_error"):
        assert getattr(refitted, name) == getattr(profile, name), name


def test_a_full_refit_from_the_repo_kernels_includes_the_moe_class() -> None:
    """tuner calibrate / python -m tuner.accuracy_report (the 18-profile refit) fits the MoE class
    too, on top of the dense GEMMs it has just fitted (few rows per group here, to stay quick: 75,
    3 per parameter of l40s TRT-LLM's windowed fp8-KV decode group, 24 since the long-cache
    window, MHA per-KV-head and fp8-KV MHA launch terms, 25 since the L2 steepness), in 2 folds
    (what is checked is that the class is there, not its error: 59 s of CI with 5 folds, 30 s with
    2, most of it the 15 NCCL groups)."""
    from tuner.calibrate import fit_profile

    profile, _ = fit_profile(None, "l40s", "trtllm", max_rows_per_group=75, folds=2)
    assert set(profile.moe) == {"bfloat16", "fp8"} and set(profile.moe_cv_error) == {"moe/bfloat16", "moe/fp8"}
    assert profile.provenance is not None
    assert any(f.path == "data/kernels/moe_perf.csv.gz" for f in profile.provenance.data_files)
    assert not any(key.startswith("moe") for key in profile.cv_error)  # default_backend's scores stay
    # The GEMM shape correction by default, as the shipped profiles carry it: from every row of
    # the group in gemm_perf_all_rows.csv.gz (3,000), the fit from 75 of gemm_perf.csv.gz's 700.
    for fmt, params in profile.gemm.items():
        assert params.shape_correction is not None and params.shape_correction.rows == 3000, fmt
        assert params.shape_correction.monotone_in_m, fmt
        assert profile.cv_error[f"gemm/{fmt}"].rows == 75 and profile.cv_error[f"gemm/{fmt}"].fit_only_median
    used = {f.path: f.rows_used for f in profile.provenance.data_files}
    assert used["data/kernels/gemm_perf_all_rows.csv.gz"] == 3000 * len(profile.gemm)


def test_the_accuracy_doc_shows_the_shipped_moe_fit() -> None:
    """docs/accuracy.md's MoE section was regenerated with the shipped profiles: every fitted
    format's row carries the held-out median and p90 stored in its profile."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "accuracy.md").read_text()
    section = text[text.index("## MoE layers") :]
    section = section[: section.index("\n## ", 1)]
    checked = 0
    for chip, backend in MEASURED_HELD_OUT_MEDIAN:
        profile = profile_for(chip, backend)
        for fmt, error in ((k.split("/")[1], v) for k, v in profile.moe_cv_error.items()):
            row = f"| {chip} | {backend} | {fmt} | {error.rows} | "
            assert row in section, row
            line = section[section.index(row) :].split("\n")[0]
            assert f" {error.median:.1%} | {error.p90:.1%} | " in line, line
            checked += 1
    assert checked >= 30


#: Held-out error of the w4a16_mxfp4 class (gpt-oss's MXFP4 experts) per pair with a fit, measured
#: 2026-12-05 (docs/accuracy.md, MoE layers, MXFP4 table): (median over 5 folds by expert slice,
#: median left out one expert shape at a time, the bfloat16 class that timed them before). b200's
#: bfloat16-class figure is 0.457 since its HBM bandwidth went from 8.0 to 7.7 TB/s and its profiles
#: were refitted (0.455 before; cost_models/catalog/hardware.yaml, b200). Re-measured 2026-12-07
#: after the dense fits and these classes read the collectors' working sets in their L2 term
#: (tuner/collector_working_set.py), then after a class's L2 gain was scaled by its memory_scale
#: (cost_models/moe_kernel_time.py, the same day). Before that scaling: b200 vLLM (0.136, 0.113,
#: 0.472), gb200 SGLang (0.150, 0.295, 0.282), gb200 vLLM (0.079, 0.089, 0.451), h100 SGLang (0.222,
#: 0.207, 0.376), h100 vLLM (0.132, 0.181, 0.124), h200 SGLang (0.214, 0.210, 0.516), h200 vLLM
#: (0.085, 0.089, 0.115), l40s SGLang (0.321, 0.254, 0.733), l40s vLLM (0.083, 0.094, 0.138): l40s
#: SGLang's median had risen 11.7 points with the working sets (its class's memory term runs at 0.18
#: of the bandwidth, dequantization-bound, and took the whole L2 gain) and fell 16.3 with the scaling,
#: while l40s vLLM's by-shape median rose 3.5 points (0.094 -> 0.129). Before the working sets: b200
#: vLLM (0.121, 0.112, 0.461), gb200 SGLang (0.159, 0.298, 0.286), gb200 vLLM (0.068, 0.081, 0.429),
#: h100 SGLang (0.208, 0.207, 0.376), h100 vLLM (0.136, 0.188, 0.122), h200 SGLang (0.194, 0.211,
#: 0.519), h200 vLLM (0.091, 0.091, 0.116), l40s SGLang (0.204, 0.186, 0.736), l40s vLLM (0.079,
#: 0.093, 0.129) (docs/accuracy.md, MoE layers).
MXFP4_HELD_OUT = {
    ("b200", "vllm"): (0.128, 0.109, 0.471),
    ("gb200", "sglang"): (0.148, 0.293, 0.282),
    ("gb200", "vllm"): (0.071, 0.096, 0.453),
    ("h100-sxm", "sglang"): (0.199, 0.192, 0.376),
    ("h100-sxm", "vllm"): (0.132, 0.181, 0.125),
    ("h200", "sglang"): (0.191, 0.212, 0.520),
    ("h200", "vllm"): (0.088, 0.089, 0.115),
    ("l40s", "sglang"): (0.158, 0.166, 0.735),
    ("l40s", "vllm"): (0.081, 0.129, 0.134),
}
#: Pairs where the bfloat16 class at 0.5 bytes per weight times the MXFP4 rows better than their
#: own class, held out: H100 vLLM, 12.5% against 13.2% (2026-12-07, after the L2 gain's scaling;
#: 12.4% before it, 12.2% against 13.6% before the working sets), since the MoE class's own combine
#: power and each measured row's routing (2026-12-06; before, 13.9% against 13.2%).
MXFP4_BORROWED_IS_BETTER = {("h100-sxm", "vllm")}


def test_mxfp4_class_held_out_error(errors) -> None:
    """gpt-oss's MXFP4 MoE rows get a class of their own on every pair with enough rows; held out
    (rows of a slice never in the fit that predicts them) it beats the bfloat16 class at 0.5 bytes
    per weight that timed them before, on every pair but MXFP4_BORROWED_IS_BETTER (there within 2
    points); bounds 1.5 points above the measured medians.
    TRT-LLM's 2-3 rows on H100/H200 are not fitted and keep that class (the documented fallback)."""
    fitted = {(e.chip, e.backend): e for e in errors if "w4a16_mxfp4" in e.fit.params}
    assert set(fitted) == set(MXFP4_HELD_OUT)
    for pair, (median, by_shape, before) in MXFP4_HELD_OUT.items():
        fit = fitted[pair].fit
        cv = fit.cv_error["moe/w4a16_mxfp4"]
        assert cv.median <= median + 0.015, (pair, cv.median)
        assert fit.by_shape["w4a16_mxfp4"][0] <= by_shape + 0.015, (pair, fit.by_shape)
        assert fit.replaced["w4a16_mxfp4"][0] == "bfloat16"
        assert fit.replaced["w4a16_mxfp4"][1] == pytest.approx(before, abs=0.002), pair
        if pair in MXFP4_BORROWED_IS_BETTER:
            assert fit.replaced["w4a16_mxfp4"][1] < cv.median < fit.replaced["w4a16_mxfp4"][1] + 0.02, pair
        else:
            assert cv.median < fit.replaced["w4a16_mxfp4"][1], pair
        rows = fitted[pair].moe_format == "w4a16_mxfp4"
        assert np.median(fitted[pair].fitted_error[rows]) == pytest.approx(cv.median)
    everything = np.concatenate([e.fitted_error[e.moe_format == "w4a16_mxfp4"] for e in fitted.values()])
    # 12.2% over the 392 rows of the 9 pairs (12.5% before the L2 gain's scaling, 12.1% before the working
    # sets, 2026-12-07, and before 2026-12-06)
    assert np.median(everything) <= 0.135
    for e in errors:
        if "w4a16_mxfp4" in e.fit.skipped:
            assert e.backend == "trtllm" and e.fit.borrowed["w4a16_mxfp4"][0] == "bfloat16", (e.chip, e.backend)


def test_mxfp4_folds_never_train_on_the_slice_or_shape_they_predict(monkeypatch) -> None:
    """The w4a16_mxfp4 folds leave out whole expert slices (shape x moe_tp), each row exactly once,
    and the stricter pass whole expert shapes; the held-out error is above the error of the fit on
    every row (which the held-out predictions never use)."""
    calls = _recorded_fits(monkeypatch)
    profile = profile_for("h200", "vllm")
    rows = [r for r in pair_rows("h200", "vllm") if r["moe_dtype"] == "w4a16_mxfp4"]
    data = moe_data(rows, "h200", "vllm", profile)
    result = fit_moe(data, profile)
    slices = expert_slices(data, np.arange(len(rows)))
    everything, folds, by_shape = calls[0][1], [r for _, r in calls[1:6]], [r for _, r in calls[6:]]
    assert len(everything) == len(rows) == 61 and len(by_shape) == 2  # gpt-oss-120b's and -20b's shapes
    _assert_each_row_held_out_once(everything, folds, slices)
    for train in by_shape:
        test = np.setdiff1d(everything, train)
        assert len(set(data.shape[test])) == 1 and not set(data.shape[train]) & set(data.shape[test])
    index = np.arange(len(rows))
    in_sample = fitted_times_s(data, index, "w4a16_mxfp4", result.params["w4a16_mxfp4"], profile, weights_in_l2=True)
    in_sample_median = np.median(np.abs(in_sample / data.measured_s - 1))
    assert in_sample_median < result.cv_error["moe/w4a16_mxfp4"].median


def test_gpt_oss_120b_decode_on_h200_sglang_runs_the_mxfp4_class(monkeypatch) -> None:
    """A gpt-oss-120b decode step (batch 320, one H200, h200-sglang, its fp4 checkpoint) times its
    experts with the w4a16_mxfp4 class, not the bfloat16 class at 0.5 bytes per weight that ran
    them before. The measured kernel of that layer (moe_perf: h200 SGLang w4a16_mxfp4, hidden 2880,
    inter 2880, 128 experts, top-4, moe_tp 1, 320 tokens, balanced routing as the model routes)
    takes 2368.5 us. Its weights: 320 tokens wake 128 (1 - (1 - 4/128)^320) = 128.0 experts of
    3 x 2880 x 2880 weights at 0.5 bytes = 1.593 GB, 332 us at H200's 4.8 TB/s: the kernel takes
    7.1x its weights' streaming time, which the bfloat16 class followed at 0.23 of the measured
    time and the MXFP4 class at 0.89. (The 64-token row is power-law routed: fewer experts woken
    than uniform routing's 111, 1151.9 us, which the class over-predicts 1.56x, as it routes
    uniformly: docs/accuracy.md, MoE layers.)"""
    import cost_models.deployment as deployment
    from cost_models.deployment import estimate_one
    from cost_models.inference_configs import DECODE
    from cost_models.operators import OP

    with gzip.open(MOE_FILE, "rt") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    import csv

    measured = [
        float(r["latency"]) * 1e-3
        for r in csv.DictReader(lines)
        if (r["system"], r["framework"], r["moe_dtype"]) == ("h200_sxm", "SGLang", "w4a16_mxfp4")
        and (r["hidden_size"], r["inter_size"], r["num_experts"], r["topk"]) == ("2880", "2880", "128", "4")
        and (r["moe_tp_size"], r["moe_ep_size"], r["num_tokens"], r["distribution"]) == ("1", "1", "320", "balanced")
    ]
    assert measured == [pytest.approx(2368.47e-6, rel=1e-4)]
    woken = 128 * (1 - (1 - 4 / 128) ** 320)
    streaming_s = woken * 3 * 2880 * 2880 * 0.5 / 4.8e12
    assert woken == pytest.approx(128.0, abs=0.05) and streaming_s == pytest.approx(332e-6, rel=0.01)

    def expert_seconds(profile) -> float:
        """Seconds of the MoE layer's expert slots in the decode step under ``profile``."""
        recorded: list[tuple] = []
        original = deployment.calibrated_operator_times

        def record(*args):
            times = original(*args)
            recorded.append((args[1], times))
            return times

        monkeypatch.setattr(deployment, "calibrated_operator_times", record)
        estimate_one(
            model="gpt-oss-120b", hardware="h200", tp=1, batch=320, prompt_len=1024, gen_len=256,
            weight_bits="fp4", backend="sglang", phase="decode", calibration=profile,
        )  # fmt: skip
        monkeypatch.undo()
        (times,) = [t for c, t in recorded if c.phase[0] == DECODE and c.batch[0] == 320]
        slots = [OP[name] for name in ("expert_gate", "expert_up", "expert_act", "expert_down")]
        return float(times[slots].sum())

    shipped = profile_for("h200", "sglang")
    assert "w4a16_mxfp4" in shipped.moe
    after = expert_seconds(shipped)
    before = expert_seconds(
        shipped.model_copy(
            update={"moe": {k: v for k, v in shipped.moe.items() if k not in ("w4a16_mxfp4", "int4_wo")}}
        )
    )
    # Without an MXFP4 class the experts fall back to int4_wo's lookup: since 2026-12-06 the pair's
    # int4_wo class refitted on Kimi K2's expert shape (BORROWED_REFIT), still another kernel's.
    fallback = expert_seconds(
        shipped.model_copy(update={"moe": {k: v for k, v in shipped.moe.items() if k != "w4a16_mxfp4"}})
    )
    assert 0.8 < after / measured[0] < 1.2, after / measured[0]  # 0.89
    assert before / measured[0] < 0.3, before / measured[0]  # 0.23: 4.3x optimistic
    assert before < fallback < 0.5 * measured[0], fallback / measured[0]  # 0.35
    assert after > 5 * streaming_s


def _measured_rows(system: str, fmt: str, shape: tuple[int, int, int, int]) -> dict[tuple[str, str], float]:
    """Measured latency (s) of the vLLM fused-MoE rows of ``system`` in ``fmt`` with expert shape
    (hidden, inter_size, experts, top-k), by (num_tokens, moe_tp_size), read from the file itself."""
    import csv

    with gzip.open(MOE_FILE, "rt", newline="") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    out: dict[tuple[str, str], list[float]] = {}
    for r in csv.DictReader(lines):
        key = (int(r["hidden_size"]), int(r["inter_size"]), int(r["num_experts"]), int(r["topk"]))
        if (r["system"], r["framework"], r["moe_dtype"], r["moe_ep_size"]) == (
            system,
            "VLLM",
            fmt,
            "1",
        ) and key == shape:
            out.setdefault((r["num_tokens"], r["moe_tp_size"]), []).append(float(r["latency"]) / 1e3)
    return {k: float(np.median(v)) for k, v in out.items()}


@pytest.mark.parametrize("chip,system", [("h200", "h200_sxm"), ("h100-sxm", "h100_sxm")])
def test_a_model_without_a_block_scaled_checkpoint_is_charged_the_per_tensor_kernel(chip, system) -> None:
    """Mixtral-8x7B has no published block-scaled fp8 checkpoint (ModelSpec.fp8_block_scales
    false): tuner export serves its 16-bit repo with --quantization fp8, which vLLM quantizes at load
    with per-tensor scales and runs on its per-tensor fused-MoE kernel (FlashInfer CUTLASS on
    Hopper). The database measured that kernel on Mixtral's expert shape (4096/14336/8/2): the
    estimate's MoE layer must match those rows, not the block-scaled kernel's, which measures
    several times faster on the same tokens. Before, every fp8 expert took the block-scaled class:
    predicted / measured median 0.2-0.4 on these rows."""
    from cost_models.models import get_model

    mixtral = get_model("mixtral-8x7b")
    assert not mixtral.fp8_block_scales
    shape = (mixtral.d_model, mixtral.expert_d_ff, mixtral.experts, mixtral.experts_per_token)
    tensor = _measured_rows(system, "fp8", shape)
    block = _measured_rows(system, "fp8_block", shape)
    # The two kernels, measured on the same tokens and split (3-4 pairs: h200 64 tokens at moe_tp 2
    # 5.5x, 96 at 4 4.9x, 8192 at 16 1.6x; h100 2.2-2.8x): per-tensor is the slower one, the reason
    # the class matters.
    both = sorted(set(tensor) & set(block))
    assert len(both) >= 3
    assert min(tensor[k] / block[k] for k in both) > 1.5
    rows = [
        r
        for r in pair_rows(chip, "vllm")
        if r["moe_dtype"] == "fp8"
        and (int(r["hidden_size"]), int(r["inter_size"]), int(r["num_experts"]), int(r["topk"])) == shape
    ]
    assert len(rows) >= 20
    _, predicted_s, _ = moe_layer_times(rows, chip, "vllm")
    measured_s = np.array([float(r["latency"]) / 1e3 for r in rows])  # the file's latency is in ms
    ratio = predicted_s / measured_s
    assert 0.7 < np.median(ratio) < 1.4, np.median(ratio)  # before: 0.36 (h200), 0.42 (h100)
