"""Calibration: held-out accuracy of the shipped fits, a refit spot check, and bad input.

Targets (issue 9): GEMM held-out median abs error <= 8% and p90 <= 25% per chip and format;
prefill and decode attention median <= 12%; collectives median <= 10%. Many groups miss them
(docs/accuracy.md marks each): the tests assert the targets where they are met today and the
honest worst-case bounds elsewhere, so a regression of either fails.
"""

from __future__ import annotations

import functools
import gzip
import json

import numpy as np
import pytest

from cost_models.calibration import available_profiles, load_profile
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from tuner.calibrate import ATTENTION_MAX_ROWS_PER_GROUP, fit_decode, fit_gemm, fit_profile
from tuner.cli import main
from tuner.kernel_data import REPO_KERNELS, read_kernel_table

TARGET_MEDIAN = {"gemm": 0.08, "prefill_attention": 0.12, "decode_attention": 0.12, "collectives": 0.10}
# Honest bounds measured on the shipped fits (docs/accuracy.md), rounded up: worst group median
# and worst group p90 per class, and the share of groups meeting the target median.
# Before split-K, the prefill tile cost and the protocol switch (2026-12-02) they were 0.65 / 0.36 /
# 0.30 / 0.23 and shares 0.30 / 0.30 / 0.35 / 0.80; measured then: 0.46 / 0.28 / 0.28 / 0.22 and
# 0.46 / 0.67 / 0.39 / 0.93. Prefill after the head-dim kernel speed, the window reach and the K/V
# byte weight: worst 0.28 -> 0.171, share 0.67 -> 0.84 (36 of 43 groups). Decode after the fallback
# kernel, per-KV-head, L2, window and walk terms (2026-12-02): worst 0.163 (h200 trtllm fp8), 22 of
# 33 groups meet 12% (0.667). GEMM after split_k_min_depth, quant_row_s, output_bytes and
# l2_capacity_fraction: worst median 0.175 (gb200 vLLM fp8_block), share 0.71. After the host
# floor, unaligned m and output_l2_fraction: worst median 0.111 (l40s SGLang bf16), share 0.82,
# 46 of 56 (vLLM fp8_block 15-18% -> 3-5% on h100/h200/b200/gb200). Attention after the
# kernel speed and launch floor per head dim, the MHA speed (decode) and the L2 term (prefill):
# prefill worst 0.153 (l40s sglang fp8), 42 of 43 meet 12% (0.977); decode worst 0.156 (a100
# vllm), 25 of 33 (0.758). Collectives after the mid protocol regime and the per-element
# reduction cost: worst 0.215 (l40s NCCL alltoall over 8 GPUs) -> 0.120 (h100 SGLang eager
# custom all-reduce over 8 GPUs is 0.120, a100 TRT-LLM custom over 4 GPUs 0.167), 270 -> 279 of 289 meet
# 10% (custom all-reduce groups keep two lines: tuner.calibrate.MID_ROWS_PER_PARAMETER). Decode
# after the long-cache cost of windowed rows and the MHA per-KV-head factor: worst 0.156 -> 0.148
# (a100 vllm), 25 -> 29 of 33 meet 12% (0.879). GEMM after the weight-only dequantization cost:
# 46 -> 47 of 56 meet 8% (0.839; a100 TRT-LLM int8_wo 8.2% -> 7.3%), worst unchanged (0.111).
# Decode after the speed-of-light row filter and vLLM's FA2 regrouping copy (2026-12-03): worst
# 0.148 -> 0.141 (l40s vllm bf16), 29 -> 31 of 33 meet 12% (0.939). Collectives after every
# protocol regime holds 3 training sizes and the custom all-reduce groups take the mid regime
# (2026-12-03): worst 0.167 -> 0.100 (l40s NCCL alltoall over 8 GPUs), 279 -> 286 of 289 meet 10%
# (0.990). GEMM after SmoothQuant's GEMV at m <= 4: 46 -> 47 of 56 meet 8%, worst unchanged.
# Prefill after the window reach per head dim and the skipped pairs' cost (2026-12-03): worst
# 0.153 -> 0.118 (gb200 vllm bf16/fp8-KV; l40s sglang fp8 15.3% -> 9.7%), 42 -> 43 of 43 meet
# 12%. Decode after the MHA launch floor on fp8 KV: 31 -> 32 of 33 (0.970; h100 trtllm fp8
# 12.7% -> 11.8%), worst unchanged (0.141, l40s vllm bf16). Decode after the fitted steepness of
# the L2-resident KV share (2026-12-03): worst 0.141 -> 0.127 (l40s vllm bf16), 32 of 33.
# Collectives after NCCL's small line as a soft max of floor and transfer: worst 0.100 -> 0.092,
# 286 -> 289 of 289 meet 10%. GEMM after the SM90 fp8 tile dispatch by m: 47 -> 48 of 56 (0.857).
# Decode after FlashAttention-2's windowed path (one CTA per (sequence, query head) walking its
# window: l40s vllm bf16 12.7% -> 11.1%): 33 of 33 meet 12%, worst 0.115 (h200 trtllm bf16).
# Held out on every row of a group (2026-12-07; 500 an attention group, 3,000 a GEMM group,
# where the errors were measured on the <= 300 rows the fits draw; docs/accuracy.md, the finding
# on held-out rows): decode 33 -> 31 of 33 meet 12% (0.939), worst 0.115 -> 0.123 (h200 trtllm
# fp8; bf16 12.004%); prefill 43 of 43, worst 0.114; GEMM medians 54 of 56 meet 8% (0.964),
# worst 0.088 (h200 sglang fp8_block).
HONEST_WORST_MEDIAN = {"gemm": 0.12, "prefill_attention": 0.12, "decode_attention": 0.125, "collectives": 0.10}
HONEST_SHARE_MEETING = {"gemm": 0.85, "prefill_attention": 1.0, "decode_attention": 0.93, "collectives": 1.0}


def _errors():
    rows = []
    for name in available_profiles():
        for key, error in load_profile(name).cv_error.items():
            rows.append((name, key.split("/")[0], key, error))
    return rows


def test_shipped_profiles_store_held_out_errors_within_honest_bounds():
    rows = _errors()
    assert len(rows) > 300
    for cls in TARGET_MEDIAN:
        group = [r for r in rows if r[1] == cls]
        assert group, cls
        for name, _, key, error in group:
            assert error.rows >= 10
            assert error.median <= HONEST_WORST_MEDIAN[cls], (name, key, error.median)
            assert error.median < error.roofline_median, (name, key)  # calibration helps
        share = np.mean([e.median <= TARGET_MEDIAN[cls] for *_, e in group])
        assert share >= HONEST_SHARE_MEETING[cls], (cls, share)


def test_gemm_targets_met_where_the_model_fits():
    # TRT-LLM fp8 GEMMs on Hopper and Blackwell meet both GEMM targets.
    for name in ("h100-sxm-trtllm", "h200-trtllm", "b200-trtllm", "gb200-trtllm"):
        error = load_profile(name).cv_error["gemm/fp8"]
        assert error.median <= 0.08 and error.p90 <= 0.25, (name, error)


def test_trtllm_fp8_block_gemm_targets_on_blackwell():
    for name in ("b200-trtllm", "gb200-trtllm"):
        error = load_profile(name).cv_error["gemm/fp8_block"]
        assert error.median <= 0.08 and error.p90 <= 0.25, (name, error)


def test_gemm_targets_met_by_bf16_vllm_fp8_and_nvfp4_groups_on_hbm_gpus():
    # Before split_k_min_depth, quant_row_s, output_bytes and l2_capacity_fraction (2026-12-02)
    # 14 of these 25 groups missed (e.g. h100 trtllm bf16 p90 25.6%, h200 vLLM fp8 median 13.6%),
    # and 37 of the 56 GEMM groups; then 20 of 56; after the host floor, unaligned m and
    # output_l2_fraction 12 of 56.
    groups = []
    for chip in ("a100-80gb", "h100-sxm", "h200", "b200", "gb200"):
        for backend in ("trtllm", "vllm", "sglang"):
            errors = load_profile(f"{chip}-{backend}").cv_error
            groups.append((chip, backend, "gemm/bfloat16", errors["gemm/bfloat16"]))
            if backend == "vllm" and chip != "a100-80gb":
                groups.append((chip, backend, "gemm/fp8", errors["gemm/fp8"]))
            if chip in ("b200", "gb200"):
                groups.append((chip, backend, "gemm/nvfp4", errors["gemm/nvfp4"]))
    assert len(groups) == 25
    for *where, error in groups:
        assert error.median <= 0.08 and error.p90 <= 0.25, (where, error)
    gemm = [e for name in available_profiles() for k, e in load_profile(name).cv_error.items() if k.startswith("gemm/")]
    assert len(gemm) == 56
    # 11 missing before SmoothQuant's GEMV, 10 before SGLang fp8_block's scale pass, 9 before the
    # SM90 fp8 tile dispatch by m (2026-12-03; h200 SGLang fp8 8.55/21.7% -> 7.90/18.4%), 8 before
    # the weight-only walk's resident CTAs (a100 TRT-LLM int4_wo 8.27/23.3% -> 7.49/22.3%), 7
    # before the measured shape correction (cost_models/gemm_shape.py, shipped 2026-12-06 by
    # data/kernels/add_shape_correction.py): held out, the whole pipeline per fold, 6 missing; the
    # same folds' fit alone (fit_only_*, refitted on an AMD EPYC VM: h200 SGLang fp8 8.01%, 7.90%
    # on the Xeon that fitted the profiles) 8; 6 before vLLM's SM89 fp8 dispatch (l40s vLLM fp8
    # 7.55/28.5% -> 7.54/24.9%, its fit alone 10.8/34.3% -> 10.4/27.5%: still a miss alone). 5
    # before the correction's level followed the rows' median (2026-12-07, cost_models/gemm_shape.py
    # median_level: l40s vLLM bf16 8.08/21.3% -> 7.90/21.3%; mean median 5.03% -> 4.85%).
    assert sum(e.median > 0.08 or e.p90 > 0.25 for e in gemm) <= 4
    # The fold fits alone, as this profile set's stored numbers were computed (AMD EPYC VM,
    # 2026-12-07): 7 missing (8 where the fold fits ran on 2026-12-06: the solver path's noise).
    assert sum(e.fit_only_median > 0.08 or e.fit_only_p90 > 0.25 for e in gemm) >= 7
    # Mean median 5.98% -> 4.85%, mean p90 18.4% -> 15.2%. Held out on every row of a group
    # (2026-12-07: 3,000 a group, where the 300 drawn were measured before; docs/accuracy.md, the
    # finding on held-out rows): the same 4 missing, the fit alone 8; 6.05% -> 4.93%, 19.1% -> 15.8%.
    assert all(e.held_out_rows is not None and e.held_out_rows > 8 * e.rows for e in gemm)
    assert np.mean([e.median for e in gemm]) < 0.050 < 0.059 < np.mean([e.fit_only_median for e in gemm])
    assert np.mean([e.p90 for e in gemm]) < 0.159 < 0.18 < np.mean([e.fit_only_p90 for e in gemm])


def test_gemm_targets_met_by_vllm_fp8_block_and_hopper_sglang_fp8():
    # Missed by all 7 before the per-call host floor, its step in m and the unaligned-m costs
    # (cost_models/efficiency.py GemmParams.FIT): vLLM fp8_block medians 15.2% (h100), 15.7%
    # (h200), 15.3% (b200), 17.5% (gb200), l40s p90 32.1%; h100 SGLang fp8 median 8.1%,
    # fp8_block 8.9%.
    groups = [(f"{chip}-vllm", "gemm/fp8_block") for chip in ("h100-sxm", "h200", "b200", "gb200", "l40s")]
    groups += [("h100-sxm-sglang", "gemm/fp8"), ("h100-sxm-sglang", "gemm/fp8_block")]
    for name, key in groups:
        error = load_profile(name).cv_error[key]
        assert error.median <= 0.08 and error.p90 <= 0.25, (name, key, error)


def test_prefill_attention_target_met_by_every_trtllm_group_on_hopper_and_blackwell():
    # Missed by 11 of these 12 groups before the per-query-tile cost and the key-block window.
    for name in ("h100-sxm-trtllm", "h200-trtllm", "b200-trtllm", "gb200-trtllm"):
        groups = {k: e for k, e in load_profile(name).cv_error.items() if k.startswith("prefill_attention/")}
        assert len(groups) == 3, name
        for key, error in groups.items():
            assert error.median <= 0.12, (name, key, error)


def test_prefill_attention_target_met_by_vllm_on_h100_h200_b200_and_trtllm_on_l40s():
    # Missed by 5 of these 9 groups before the head-dim kernel speed and the K/V byte weight
    # (b200 vllm bf16/fp8 19.8%, h200 15.7%, h100 12.4%; l40s trtllm 12.3% / 12.1% / 19.3%).
    names = ("h100-sxm-vllm", "h200-vllm", "b200-vllm", "l40s-trtllm")
    for name in names:
        groups = {k: e for k, e in load_profile(name).cv_error.items() if k.startswith("prefill_attention/")}
        assert len(groups) == (3 if name == "l40s-trtllm" else 2), name
        for key, error in groups.items():
            assert error.median <= 0.12, (name, key, error)


def test_attention_targets_met_by_sglang_on_b200_gb200_and_l40s_bf16():
    # Missed before the launch floor per head dim and the L2 term (prefill: b200/gb200 bf16/fp8-KV
    # 13.5% / 13.3%, l40s bf16 15.1%, bf16/fp8-KV 17.1%) and before the decode speed per head dim
    # (decode bf16: b200 15.0%, gb200 13.1%, l40s 12.7%), and l40s fp8 prefill (15.3%) before the
    # window reach per head dim and the skipped pairs' cost.
    for name in ("b200-sglang", "gb200-sglang", "l40s-sglang"):
        errors = load_profile(name).cv_error
        keys = [k for k in errors if k.startswith(("prefill_attention/", "decode_attention/"))]
        assert len(keys) >= 4, name
        for key in keys:
            assert errors[key].median <= 0.12, (name, key, errors[key])


def test_collectives_target_met_by_every_nccl_group_on_a100_h100_gb200():
    # The protocol switch (cost_models/efficiency.py CollectiveParams.switch_bytes): a100 NCCL
    # missed 5 of 12 groups before.
    for name in ("a100-80gb-trtllm", "h100-sxm-trtllm", "gb200-trtllm"):
        groups = {k: e for k, e in load_profile(name).cv_error.items() if k.startswith("collectives/nccl/")}
        assert len(groups) >= 8, name
        for key, error in groups.items():
            assert error.median <= 0.10, (name, key, error)


def test_collectives_target_met_by_every_group():
    # The mid protocol regime and the per-element reduction cost (second round, 2026-12-02): 19 of
    # the 289 collective groups (an NCCL group counts once per engine) missed 10% before, among
    # them a100 TRT-LLM custom all-reduce over 4 and 8 GPUs (16.7%, 15.6%), b200 and h200 NCCL
    # all_gather over 8 GPUs (14.0%, 10.4%) and l40s NCCL reduce_scatter over 8 GPUs (12.2%).
    # The custom all-reduce groups (23 rows) kept two lines then: a100 TRT-LLM over 4 and 8 GPUs
    # and five SGLang/vLLM eager or graph groups stayed above 10%. With the mid regime at 2 rows
    # per parameter and every regime holding 3 training sizes (tuner.calibrate._regimes_hold_sizes,
    # 2026-12-03) all 85 custom groups meet 10% held out (worst l40s SGLang eager over 4 GPUs,
    # 9.2%). l40s NCCL alltoall over 8 GPUs (10.0%, counted once per engine) met it after NCCL's
    # small line became a soft max of its floor and its transfer (CollectiveParams
    # small_overlap_power, 2026-12-03: 5.2%).
    checked = 0
    for name in available_profiles():
        for key, error in load_profile(name).cv_error.items():
            if not key.startswith("collectives/"):
                continue
            checked += 1
            assert error.median <= 0.10, (name, key, error)
    assert checked == 289


def test_collective_specs_fit_the_mid_regime_where_training_folds_keep_two_rows_per_parameter():
    from tuner.calibrate import MID_REGIME, _collective_specs

    # NCCL: 42 rows, two element sizes (half, int8): every parameter, the reduction cost and the
    # small line's overlap power too (33.6 training rows >= 2 x 10).
    specs, two_lines = _collective_specs("all_reduce", 42, 2)
    assert set(MID_REGIME) <= set(specs) and "reduce_s_per_element" in specs and len(specs) == 10
    assert "small_overlap_power" in specs and "small_overlap_power" in two_lines
    assert not set(MID_REGIME) & set(two_lines) and len(two_lines) == 7
    # all_gather adds nothing: no reduction cost (9 parameters, 33.6 >= 18: the mid regime).
    gather, _ = _collective_specs("all_gather", 42, 2)
    assert "reduce_s_per_element" not in gather and set(MID_REGIME) <= set(gather)
    # Custom all-reduce, one element size (bf16): a one-shot kernel, launch + barrier, then the
    # copy: no overlap power (the sum); 18.4 training rows >= 2 x 8: the mid regime.
    for impl in ("custom", "custom_graph", "custom_eager"):
        custom, custom_lines = _collective_specs("all_reduce", 23, 1, implementation=impl)
        assert set(MID_REGIME) <= set(custom) and len(custom) == 8
        assert "small_overlap_power" not in custom and "small_overlap_power" not in custom_lines
    # 22 rows of a reducing kind: 17.6 < 2 x 10: two lines with the reduction cost.
    few, _ = _collective_specs("reduce_scatter", 22, 2)
    assert not set(MID_REGIME) & set(few) and "reduce_s_per_element" in few
    # 23 rows over two folds: 11.5 training rows < 18: two lines; five folds: 18.4 >= 18.
    assert not set(MID_REGIME) & set(_collective_specs("all_gather", 23, 2, folds=2)[0])
    assert set(MID_REGIME) <= set(_collective_specs("all_gather", 23, 2, folds=5)[0])


def test_collective_regimes_must_each_hold_three_training_sizes():
    from tuner.calibrate import MIN_SIZES_PER_REGIME, _regimes_hold_sizes

    assert MIN_SIZES_PER_REGIME == 3
    sizes = np.array([1e3, 2e3, 4e3, 8e3, 1.6e4, 3.2e4, 6.4e4, 1.28e5, 2.56e5])
    # Two lines: 3 sizes below the switch and 6 above; 2 below is refused.
    assert _regimes_hold_sizes({"switch_bytes": 5e3}, sizes)
    assert not _regimes_hold_sizes({"switch_bytes": 3e3}, sizes)
    # The size twice (the two dtypes of an NCCL size) counts once.
    assert not _regimes_hold_sizes({"switch_bytes": 3e3}, np.concatenate([sizes, sizes[:2]]))
    # Mid regime below the switch: 3 sizes in each of the three regimes.
    assert _regimes_hold_sizes({"switch_bytes": 4e4, "mid_switch_bytes": 5e3}, sizes)
    # A mid regime in a gap between two training sizes (h100 SGLang eager over 8 GPUs: a fold
    # put a 10 ms mid line between 1 and 8 KB, no training row in it): refused.
    assert not _regimes_hold_sizes({"switch_bytes": 7.3e3, "mid_switch_bytes": 5.6e3}, sizes)
    # The mid step above the switch is hidden by the large line: two regimes are checked.
    assert _regimes_hold_sizes({"switch_bytes": 5e3, "mid_switch_bytes": 1e10}, sizes)
    # Without a switch (one line, or min() of two): nothing to check.
    assert _regimes_hold_sizes({"latency_s": 1e-5}, sizes[:1])


def test_fit_keeps_the_lowest_cost_admissible_solution_of_its_starts():
    from cost_models.efficiency import FitSpec
    from tuner.fitting import fit

    # A step at an edge between rows: the loss is flat in the edge between two rows, so each
    # start keeps its basin (edge 1.2: below the second row; 2.2: the exact step at 2.5).
    x = np.array([1.0, 2.0, 3.0, 4.0])
    measured = np.where(x < 2.5, 1.0, 3.0)
    specs = {"edge": FitSpec(1.0, 4.0, start=1.2), "high": FitSpec(0.5, 5.0, start=1.0)}

    def predict(values, idx):
        return np.where(x[idx] < values["edge"], 1.0, values["high"])

    free = fit(specs, predict, measured, starts=[{"edge": 1.2}, {"edge": 2.2}])
    assert 2.0 < free.values["edge"] <= 3.0 and free.values["high"] == pytest.approx(3.0, rel=1e-3)
    # Only solutions with the edge below 2 are admissible: the start that stays at 1.2 wins
    # though its cost is higher.
    kept = fit(
        specs,
        predict,
        measured,
        starts=[{"edge": 1.2}, {"edge": 2.2}],
        admissible=lambda values, rows: values["edge"] < 2.0,
    )
    assert kept.values["edge"] < 2.0
    # Nothing admissible: the lowest-cost solution, as without the predicate.
    none = fit(specs, predict, measured, starts=[{"edge": 1.2}, {"edge": 2.2}], admissible=lambda values, rows: False)
    assert none.values == free.values


def test_fit_puts_a_parameter_the_solver_leaves_at_a_bound_on_the_bound_exactly():
    from cost_models.efficiency import FitSpec
    from tuner.fitting import fit

    # measured = x: a power p >= 1 of x fits best at p = 1, its lower bound; measured = 2x: a
    # scale in [0.1, 1] at its upper bound 1. least_squares stops a hair inside (here 1 + 2e-5
    # and 1 - 2e-9; NCCL profiles' p 1 + 2e-16 to 1 + 6e-6); the fit returns the bounds
    # themselves (log and linear specs), so a model that skips the power at p == 1 skips it. An
    # interior optimum is left alone.
    x = np.array([2.0, 3.0, 5.0, 7.0, 11.0])
    power = {"p": FitSpec(1.0, 8.0, log=True, start=1.5)}
    assert fit(power, lambda v, idx: x[idx] ** v["p"], x).values == {"p": 1.0}
    scale = {"scale": FitSpec(0.1, 1.0, start=0.5)}
    assert fit(scale, lambda v, idx: v["scale"] * x[idx], 2.0 * x).values == {"scale": 1.0}
    specs = power | scale
    inside = fit(specs, lambda v, idx: v["scale"] * x[idx] ** v["p"], 0.5 * x**2)
    assert inside.values["p"] == pytest.approx(2.0, rel=1e-6) and 1.0 < inside.values["p"]
    assert inside.values["scale"] == pytest.approx(0.5, rel=1e-6)


def test_prefill_specs_fit_a_kernel_speed_per_head_dim_seen_in_two_shapes():
    from tuner.calibrate import prefill_specs

    #            heads, kv heads, head dim
    shapes = [(32, 8, 128), (16, 4, 128), (32, 8, 192), (64, 8, 192), (8, 1, 256), (16, 2, 64), (16, 2, 64)]
    h, hk, d = (np.array([s[i] for s in shapes], dtype=float) for i in range(3))
    isl, window = np.full(len(shapes), 4096.0), np.zeros(len(shapes))
    specs = prefill_specs(d, h, hk, isl, window)
    # 128 is the reference (compute_eff); 192 has two shapes; 256 one shape; 64 one shape twice.
    assert [k for k in specs if k.startswith("head_dim_eff_")] == ["head_dim_eff_192"]
    assert "window_extra_keys" not in specs  # no windowed rows
    assert "kv_bytes_factor" in specs  # heads / kv heads: 4, 8, 16, 8
    mha = prefill_specs(d, h, h, isl, window)  # one ratio: the K/V bytes' factor is memory_eff's
    assert "kv_bytes_factor" not in mha and "memory_eff" in mha
    # Without 128, the head dim with most rows is the reference: 64 (3 rows), not 192 (2 rows).
    keep = d != 128
    d3, h3, hk3 = (np.append(x[keep], v) for x, v in ((d, 64.0), (h, 16.0), (hk, 2.0)))
    specs = prefill_specs(d3, h3, hk3, np.full(len(d3), 4096.0), np.zeros(len(d3)))
    assert [k for k in specs if k.startswith("head_dim_eff_")] == ["head_dim_eff_192"]
    window[:3] = 1024.0
    assert "window_extra_keys" in prefill_specs(d, h, hk, isl, window)
    assert "window_extra_keys" not in prefill_specs(d, h, hk, np.full(len(shapes), 1024.0), window)
    # A reach per head dim where that head dim has its own speed and WINDOW_MIN_ROWS long
    # windowed rows, relative to other head dims' windowed rows: 192 (3 rows) next to the
    # reference 128 (3 rows) gets one; 192 alone is window_extra_keys' (one product).
    dw = np.array([128.0, 128.0, 128.0, 192.0, 192.0, 192.0, 256.0])
    hw, hkw = np.array([32.0, 16.0, 32.0, 32.0, 64.0, 32.0, 8.0]), np.array([8.0, 4.0, 8.0, 8.0, 8.0, 8.0, 1.0])
    long = prefill_specs(dw, hw, hkw, np.full(7, 4096.0), np.full(7, 1024.0))
    assert "window_skip_cost" in long and "window_extra_keys" in long
    assert [k for k in long if k.startswith("head_dim_window_")] == ["head_dim_window_192"]
    only_192 = prefill_specs(dw, hw, hkw, np.full(7, 4096.0), np.where(dw == 192, 1024.0, 0.0))
    assert "window_extra_keys" in only_192 and "head_dim_eff_192" in only_192
    assert not [k for k in only_192 if k.startswith("head_dim_window_")]
    assert "window_skip_cost" not in prefill_specs(d, h, hk, isl, np.zeros(len(shapes)))


def test_decode_specs_fit_kernel_speeds_only_where_shapes_can_be_held_out():
    from tuner.calibrate import decode_specs

    #            heads, kv heads, head dim
    shapes = [(32, 8, 128), (16, 4, 128), (32, 8, 192), (64, 8, 192), (8, 8, 128), (16, 16, 128), (8, 1, 256)]
    h, hk, d = (np.array([s[i] for s in shapes], dtype=float) for i in range(3))
    no_window = np.zeros(len(shapes))
    specs = decode_specs(d, h, hk, no_window, get_hardware("l40s"))
    # 192: two shapes, a speed and a floor; 256: one shape, neither (it could not be held out).
    assert [k for k in specs if k.startswith("head_dim_")] == ["head_dim_eff_192", "head_dim_launch_192"]
    assert "ungrouped_eff" in specs  # two MHA shapes (8/8, 16/16) and five grouped ones
    assert "l2_speedup" in specs and "window_per_head_s" not in specs and "window_long_s" not in specs
    assert "l2_steepness" in specs  # with l2_speedup: l40s has an L2 figure
    one_mha = decode_specs(d[:-2], h[:-2], hk[:-2], no_window[:-2], get_hardware("l40s"))
    assert "ungrouped_eff" not in one_mha and "ungrouped_kv_head_factor" not in one_mha  # 8/8 only
    assert "ungrouped_kv_head_factor" in specs
    # The MHA launch floor: fp8 KV only (tuner.calibrate.UNGROUPED_LAUNCH_KV), with MHA shapes.
    assert "ungrouped_launch" not in specs  # no KV format given
    assert "ungrouped_launch" not in decode_specs(d, h, hk, no_window, get_hardware("l40s"), "trtllm", "bfloat16")
    assert "ungrouped_launch" in decode_specs(d, h, hk, no_window, get_hardware("l40s"), "trtllm", "fp8")
    one_mha_fp8 = decode_specs(d[:-2], h[:-2], hk[:-2], no_window[:-2], get_hardware("l40s"), "trtllm", "fp8")
    assert "ungrouped_launch" not in one_mha_fp8
    window = np.where(d == 192, 128.0, 0.0)
    windowed = decode_specs(d, h, hk, window, get_hardware("l40s"))
    assert {"window_per_head_s", "window_long_s", "window_long_kv_len"} <= set(windowed)
    # The regrouping copy of FlashAttention-2's grouped decode: vLLM's groups only.
    assert "regroup_copy_s" not in specs
    assert "regroup_copy_s" in decode_specs(d, h, hk, no_window, get_hardware("l40s"), "vllm")
    assert "regroup_copy_s" not in decode_specs(d, h, hk, no_window, get_hardware("l40s"), "sglang")
    # FA2's ungrouped windowed path: where windowed rows were measured on FA2 (kernel_source).
    fa2_terms = {"window_walk_s_per_element", "window_walk_ctas", "window_kv_head_factor"}
    l40s, fa2 = get_hardware("l40s"), np.full(len(shapes), "vllm_flash_attn_fa2", dtype=object)
    assert fa2_terms <= set(decode_specs(d, h, hk, window, l40s, "vllm", "bfloat16", fa2))
    assert not fa2_terms & set(decode_specs(d, h, hk, no_window, l40s, "vllm", "bfloat16", fa2))
    assert not fa2_terms & set(decode_specs(d, h, hk, window, l40s, "vllm", "bfloat16"))
    fa3 = np.full(len(shapes), "vllm_flash_attn_fa3", dtype=object)
    assert not fa2_terms & set(decode_specs(d, h, hk, window, l40s, "vllm", "bfloat16", fa3))
    # Only the windowed rows' kernel counts: FA2 on the full-attention rows alone is not enough.
    fa2_unwindowed = np.where(window > 0, "vllm_triton_attn", "vllm_flash_attn_fa2").astype(object)
    assert not fa2_terms & set(decode_specs(d, h, hk, window, l40s, "vllm", "bfloat16", fa2_unwindowed))


def test_decode_rows_faster_than_the_speed_of_light_are_left_out_and_named():
    # a100 TRT-LLM bf16 rows that read their KV at 1.3-1.7x the 2.04 TB/s HBM bandwidth even with
    # the whole 40 MB L2 serving part of it (batch 32, kv_len 16383, 16 heads on 2 of dim 128:
    # 0.54 GB in 0.203 ms) cannot measure the shape their columns give: the fit leaves them out.
    table = read_kernel_table(REPO_KERNELS / "generation_attention_perf.csv.gz")
    c = table.columns
    chip = get_hardware("a100-80gb")
    here = (c["system"] == "a100_sxm") & (c["engine"] == "trtllm") & (c["kv_cache_dtype"] == "bfloat16")
    assert not np.any(c.get("window_size", np.zeros(len(table)))[here] > 0)  # no window: kv_len is step
    kv_bytes = c["batch_size"] * np.maximum(c["step"], 1) * c["num_key_value_heads"] * c["head_dim"] * 2 * 2
    bandwidth_used = (kv_bytes - chip.l2_bytes) / (c["latency"] * 1e-3)
    impossible = here & (bandwidth_used > 1.05 * chip.memory_bandwidth_bytes_per_s)
    assert impossible.sum() == 33
    (bf16,) = fit_decode(table, chip, "a100_sxm", "trtllm", 20260101, 5, 300)
    assert any(w.startswith("33 rows faster than the speed of light left out") for w in bf16.warnings)
    # Held out without them: 10.9% (12.3% with them, the group's only miss of the 12% target).
    assert bf16.cv_median <= 0.12
    # h100 SGLang bf16 keeps its fastest row (1.61 GB at 1.03x the 3.35 TB/s: inside the 5%).
    reports = fit_decode(table, get_hardware("h100-sxm"), "h100_sxm", "sglang", 20260101, 5, 300)
    assert not any("speed of light" in w for r in reports for w in r.warnings)


def test_refit_reproduces_stored_cross_validation():
    table = read_kernel_table(REPO_KERNELS / "gemm_perf.csv.gz")
    stored = load_profile("h100-sxm-trtllm").cv_error["gemm/fp8"]
    reports = fit_gemm(table, get_hardware("h100-sxm"), "h100_sxm", "trtllm", 20260101, 5, 300)
    fp8 = next(r for r in reports if r.key == "fp8")
    assert fp8.rows == stored.rows
    # The fit alone (no shape correction here): the stored fit_only_* (the shipped median and p90
    # are the fit's with its correction).
    assert fp8.cv_median == pytest.approx(stored.fit_only_median, rel=0.05, abs=0.005)
    assert fp8.cv_p90 == pytest.approx(stored.fit_only_p90, rel=0.05, abs=0.01)


@functools.cache
def _a100_trtllm_gemm_reports() -> dict:
    table = read_kernel_table(REPO_KERNELS / "gemm_perf.csv.gz")
    reports = fit_gemm(table, get_hardware("a100-80gb"), "a100_sxm", "trtllm", 20260101, 5, 300)
    return {r.key: r for r in reports}


def test_gemm_refit_finds_smoothquant_gemv_switch():
    # TRT-LLM's SmoothQuant plugin runs a CUDA-core GEMV at m <= 4 and CUTLASS tiles above; the
    # database has m=4 and m=8 rows and none between, so the fitted switch lies in (4, 8) (4.5-5.0
    # in every fold). Held out, a100 sq went 7.4/30.4% -> 7.97/20.8% with it (the median is within
    # 0.1 point of the 8% target: a change of scipy's solver path may move it across). Formats
    # without a GEMV path do not get the parameter.
    by_key = _a100_trtllm_gemm_reports()
    assert 4.0 < by_key["sq"].values["gemv_max_m"] < 8.0
    assert by_key["sq"].cv_median <= 0.08 and by_key["sq"].cv_p90 <= 0.25
    assert "gemv_max_m" not in by_key["bfloat16"].values
    assert "gemv_max_m" not in by_key["int4_wo"].values


def test_gemm_refit_runs_weight_only_rows_at_m_up_to_4_faster_than_the_tiles():
    # TRT-LLM's weight-only plugin runs its GEMV at m <= 4: a100 int4_wo rows at m = 2-4 ran
    # 0.87x the tiled model's time held out. Fitted 0.85-0.91 in every fold on int4_wo and
    # int8_wo; held out, int4_wo 8.70/24.37% -> 8.27/23.32% (still over the 8% median), int8_wo
    # 7.28/22.50% -> 7.09/21.64%. Only the weight-only formats get the parameter.
    by_key = _a100_trtllm_gemm_reports()
    for key in ("int4_wo", "int8_wo"):
        assert 0.8 < by_key[key].values["weight_only_gemv_factor"] < 0.95, key
        assert by_key[key].cv_p90 <= 0.25, key
    assert by_key["int4_wo"].cv_median < 0.087  # 8.70% before the factor
    assert by_key["int8_wo"].cv_median <= 0.08
    for key in ("bfloat16", "sq"):
        assert "weight_only_gemv_factor" not in by_key[key].values, key


def test_gemm_refit_overlaps_the_walks_of_ctas_resident_on_an_sm():
    # TRT-LLM's SM80 weight-only and SmoothQuant CUTLASS tiles run several CTAs per SM, which
    # overlap their per-CTA walks (GemmParams.FIT dequant_ctas_per_sm). Fitted at its bound (32)
    # in every fold on int4_wo and sq, 1.9-2.7 on int8_wo in 4 of 5; held out, int4_wo
    # 8.27/23.32% -> 7.49/22.30% (now within both targets), sq 7.97/20.84% -> 7.20/20.43%,
    # int8_wo 7.09/21.64% -> 6.54/22.66%. Formats without the walk do not get the parameter.
    by_key = _a100_trtllm_gemm_reports()
    assert by_key["int4_wo"].values["dequant_ctas_per_sm"] > 16.0
    assert by_key["sq"].values["dequant_ctas_per_sm"] > 16.0
    assert 1.0 < by_key["int8_wo"].values["dequant_ctas_per_sm"] < 16.0
    for key in ("int4_wo", "int8_wo", "sq"):
        assert by_key[key].cv_median <= 0.08 and by_key[key].cv_p90 <= 0.25, key
    assert "dequant_ctas_per_sm" not in by_key["bfloat16"].values


def test_gemm_sm90_fp8_tile_dispatch_by_m():
    # vLLM's and SGLang's fp8 GEMMs on SM90 run 64x64 CTA tiles at m <= 64, 64x128 to m = 128 and
    # 128x128 above (tuner/calibrate.py KERNEL_DISPATCH): set, not fitted, on those groups
    # only. Held out, h200 SGLang fp8 went 8.55/21.74% -> 7.90/18.38% with it (the median within
    # 0.1 point of the 8% target: a change of scipy's solver path may move it across, and it did:
    # the same refit gives 8.01% on an AMD EPYC VM (2026-12-05), 7.90% on the Intel Xeon that
    # fitted the shipped profile). The refit must keep the gain over the fit without the dispatch;
    # the target itself is asserted on the shipped profile's stored held-out error.
    table = read_kernel_table(REPO_KERNELS / "gemm_perf.csv.gz")
    reports = fit_gemm(table, get_hardware("h200"), "h200_sxm", "sglang", 20260101, 5, 300)
    by_key = {r.key: r for r in reports}
    assert by_key["fp8"].values["small_tile_max_m"] == 64.0
    assert by_key["fp8"].values["mid_tile_max_m"] == 128.0
    assert by_key["fp8"].cv_median < 0.0855 and by_key["fp8"].cv_p90 < 0.2174
    shipped = load_profile("h200-sglang").cv_error["gemm/fp8"]
    assert shipped.median <= 0.08 and shipped.p90 <= 0.25
    for key in ("bfloat16", "fp8_block"):
        assert "small_tile_max_m" not in by_key[key].values, key


def test_gemm_sm89_fp8_kernel_dispatch_of_vllm():
    # vLLM's CUTLASS fp8 scaled_mm on SM89 runs one configuration per (m, n) bucket
    # (cost_models/gemm_dispatch.py); each one's speed is fitted on l40s vLLM fp8 only. Its rows'
    # steps: m = 17-32 and 33-64 at n <= 8192 and m > 256 at 4096 < n <= 8192 ran slower than the
    # smooth model (the 256x128 tile's 3 stages: fitted ~1.5x the 128x128 reference), m <= 16
    # faster. The fit alone, held out: p90 34.3% without the factors, 27.5% with them on the 300
    # rows fitted; on all 700 rows of the file (every row held out, 2026-12-07) 34.9% and 31.4%.
    table = read_kernel_table(REPO_KERNELS / "gemm_perf.csv.gz")
    by_key = {r.key: r for r in fit_gemm(table, get_hardware("l40s"), "l40s", "vllm", 20260101, 5, 300)}
    fp8 = by_key["fp8"].values
    assert fp8["kernel_dispatch"] == "vllm_sm89_fp8"
    assert fp8["dispatch_factor_256x128"] > 1.2 and fp8["dispatch_factor_16x64"] < 0.85
    assert by_key["fp8"].cv_p90 < 0.33 and by_key["fp8"].held_out_rows == 700
    for key in ("bfloat16", "fp8_block"):
        assert "dispatch_factor_256x128" not in by_key[key].values, key


def test_decode_refit_finds_trtllm_fallback_kernel_switch():
    # TRT-LLM's grouped decode kernel stops at 32 query heads per KV head: rows at 48-128 run a
    # fallback at ~0.006 of the bf16 peak (cost_models/efficiency.py decode_attention_time_s).
    # The fit locates the switch from the rows alone, and the h100 bf16 group is within a point of
    # the 12% held-out target (16.5% before the fallback and per-KV-head terms, 11.6% after them;
    # 12.3% since the kernel speed and floor per head dim and the MHA speed, which took the decode
    # groups missing 12% from 11 to 8 of 33: this group's median moves about a point with the
    # terms added, 11.4-12.5% across the variants tried). 11.0% since the long-cache cost of
    # windowed rows and the MHA per-KV-head factor (decode groups missing 12%: 8 -> 4 of 33).
    table = read_kernel_table(REPO_KERNELS / "generation_attention_perf.csv.gz")
    # As shipped: fitted on every row of the group (ATTENTION_MAX_ROWS_PER_GROUP, 2026-12-07).
    reports = fit_decode(
        table, get_hardware("h100-sxm"), "h100_sxm", "trtllm", 20260101, 5, ATTENTION_MAX_ROWS_PER_GROUP
    )
    bf16 = next(r for r in reports if r.key == "bfloat16")
    assert 32 < bf16.values["fallback_group_size"] < 48
    assert 0.002 < bf16.values["fallback_compute_eff"] < 0.02
    assert bf16.cv_median <= 0.12
    stored = load_profile("h100-sxm-trtllm").cv_error["decode_attention/bfloat16"]
    assert bf16.cv_median == pytest.approx(stored.median, rel=0.05, abs=0.005)


HEADER = "# test file\n"
GEMM_COLUMNS = "system,framework,version,op_name,kernel_source,gemm_dtype,m,n,k,latency\n"


def _write(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(HEADER + body)
    return str(path)


def _gemm_rows(count, latency=lambda i: 0.01 + 0.001 * i):
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        m, n, k = (int(x) for x in rng.choice([64, 256, 1024, 4096], 3))
        out.append(f"h100_sxm,TRTLLM,1,gemm,x,bfloat16,{m},{n},{k},{latency(i) + 2 * m * n * k / 5e11}\n")
    return "".join(out)


def _cli(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "case,body,expect",
    [
        (
            "missing column",
            "system,framework,gemm_dtype,m,n,latency\nh100_sxm,TRTLLM,bfloat16,1,2,3\n",
            "missing column(s) k",
        ),
        (
            "zero latency",
            GEMM_COLUMNS + "h100_sxm,TRTLLM,1,gemm,x,bfloat16,8,8,8,0\n",
            ":3: latency=0.0 must be a positive number",
        ),
        (
            "negative latency",
            GEMM_COLUMNS + "h100_sxm,TRTLLM,1,gemm,x,bfloat16,8,8,8,-1\n",
            ":3: latency=-1.0 must be a positive number",
        ),
        (
            "speed of light",
            GEMM_COLUMNS + _gemm_rows(40) + "h100_sxm,TRTLLM,1,gemm,x,bfloat16,16384,16384,16384,0.001\n",
            "faster than h100-sxm's speed of light",
        ),
        # A fractional size was fitted as given (m=1.5 rows a kernel never ran).
        (
            "fractional m",
            GEMM_COLUMNS + _gemm_rows(40) + "h100_sxm,TRTLLM,1,gemm,x,bfloat16,1.5,4096,4096,0.01\n",
            "m=1.5 must be a whole number",
        ),
        ("too few points", GEMM_COLUMNS + _gemm_rows(6), "6 rows for 13 parameters"),
        ("another chip", GEMM_COLUMNS + _gemm_rows(40).replace("h100_sxm", "l40s"), "no rows for system h100_sxm"),
    ],
)
def test_bad_kernel_input_is_one_line(tmp_path, capsys, case, body, expect):
    path = _write(tmp_path, "k.csv", body)
    code, err = _cli(["calibrate", "--hardware", "h100-sxm", "--backend", "trtllm", "--kernels", path], capsys)
    assert code == 2, case
    assert "\n" not in err and "k.csv" in err and expect in err, err


def test_gzip_input_and_profile_output(tmp_path, capsys):
    path = tmp_path / "k.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(HEADER + GEMM_COLUMNS + _gemm_rows(60))
    out = tmp_path / "p.yaml"
    code = main(["calibrate", "--hardware", "h100-sxm", "--backend", "trtllm", "--kernels", str(path), "-o", str(out)])
    assert code == 0
    assert "gemm/bfloat16" in capsys.readouterr().out
    profile = load_profile(out, chip="h100-sxm")
    assert profile.cv_error["gemm/bfloat16"].rows == 60
    with pytest.raises(InvalidInputError, match="not l40s"):
        load_profile(out, chip="l40s")
    # Again onto the profile: refused (one line naming --force), then overwritten with --force.
    args = ["calibrate", "--hardware", "h100-sxm", "--backend", "trtllm", "--kernels", str(path), "-o", str(out)]
    out.write_text("keep me\n")
    code, err = _cli(args, capsys)
    assert code == 2 and "\n" not in err and "--force" in err and str(out) in err, err
    assert out.read_text() == "keep me\n"
    assert main([*args, "--force"]) == 0
    assert load_profile(out, chip="h100-sxm").cv_error["gemm/bfloat16"].rows == 60


@pytest.mark.parametrize(
    "args,flag",
    [
        # --all refitted and rewrote every shipped profile and docs/accuracy.md (7 minutes),
        # --hardware silently ignored.
        (["--all", "--hardware", "h100-sxm"], "--hardware"),
        (["--all", "--kernels", "k.csv"], "--kernels"),
        # --all prints no fit report: --json printed its text lines all the same.
        (["--all", "--json"], "--json"),
        # Ignored: the kernels were fitted, --report, --fit, --base and --model never looked at.
        (["--hardware", "h100-sxm", "--backend", "trtllm", "--report", "r.md"], "--report"),
        (["--hardware", "h100-sxm", "--backend", "trtllm", "--fit", "compute_eff"], "--fit"),
        (["--hardware", "h100-sxm", "--backend", "trtllm", "--base", "h100-sxm-trtllm"], "--base"),
        (["--hardware", "h100-sxm", "--backend", "trtllm", "--model", "llama-3-8b"], "--model"),
        (["--hardware", "tpu-v4", "--backend", "jax", "--points", "p.csv", "--kernels", "k.csv"], "--kernels"),
        (["--hardware", "tpu-v4", "--backend", "jax", "--points", "p.csv", "--chips", "2"], "--chips"),
    ],
)
def test_an_option_the_chosen_fit_would_ignore_is_one_line(tmp_path, capsys, monkeypatch, args, flag):
    monkeypatch.chdir(tmp_path)  # nothing the command could write lands in the repository
    code, err = _cli(["calibrate", *args], capsys)
    assert code == 2
    assert "\n" not in err and err.startswith(f"error: {flag}:"), err
    assert list(tmp_path.iterdir()) == []


def test_two_kernel_files_of_one_group_are_refused_not_last_wins(tmp_path, capsys):
    """Each file was fitted on its own and the profile kept the last file's gemm/bfloat16 fit:
    the first file's rows silently dropped (while its provenance listed it as used)."""
    first = _write(tmp_path, "a.csv", GEMM_COLUMNS + _gemm_rows(60))
    second = _write(tmp_path, "b.csv", GEMM_COLUMNS + _gemm_rows(60, latency=lambda i: 0.05))
    out = tmp_path / "p.yaml"
    args = ["calibrate", "--hardware", "h100-sxm", "--backend", "trtllm", "--kernels", first, "--kernels", second]
    code, err = _cli([*args, "-o", str(out)], capsys)
    assert code == 2
    # Found once the second file's group is fitted: the progress lines of the fits before it
    # (a.csv's group, then b.csv's), and the error in one line after them.
    *progress, line = err.split("\n")
    assert [p.split(" fitted")[0] for p in progress] == ["calibrate: gemm/bfloat16"] * 2, err
    assert "b.csv" in line and "gemm/bfloat16" in line and "a.csv" in line, err
    assert not out.exists()


def test_fit_profile_api_rejects_unknown_backend_and_chip():
    with pytest.raises(InvalidInputError, match="backend"):
        fit_profile(None, "h100-sxm", "tgi")
    with pytest.raises(InvalidInputError, match="names no system for"):
        fit_profile(None, "tpu-v4", "vllm")


def test_accuracy_doc_diagnosis_counts_match_the_shipped_profiles():
    import re
    from pathlib import Path

    from tuner.accuracy_report import MISSES_BEFORE, TARGETS

    text = (Path(__file__).resolve().parents[2] / "docs" / "accuracy.md").read_text()
    assert "## What carries the error (diagnosis)" in text
    errors = [r for r in _errors() if not r[0].startswith("tpu-")]
    for cls, (before, _) in MISSES_BEFORE.items():
        median, p90 = TARGETS[cls]
        group = [e for _, c, _, e in errors if c == cls]
        misses = sum(e.median > median or (p90 is not None and e.p90 > p90) for e in group)
        found = re.search(rf"{cls} {before} of \d+ -> (\d+) of (\d+)", text)
        assert found, cls
        assert (int(found[1]), int(found[2])) == (misses, len(group)), cls
        assert misses <= before, cls  # no class got worse


def test_all_keeps_an_existing_report_without_force(tmp_path, capsys, monkeypatch):
    """``--all --report`` overwrote an existing file without a word (every other command that
    writes a user-named file refuses without --force); refused before the fit (minutes), and
    --force with --all but no --report is refused as an option with nothing to do."""
    import tuner.accuracy_report

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit ran before the refusal")

    monkeypatch.setattr(tuner.accuracy_report, "main", no_fit)
    report = tmp_path / "accuracy.md"
    report.write_text("keep me\n")
    code, err = _cli(["calibrate", "--all", "--report", str(report)], capsys)
    assert code == 2 and "\n" not in err and err.startswith("error: --report:") and "--force" in err, err
    assert report.read_text() == "keep me\n"
    code, err = _cli(["calibrate", "--all", "--force"], capsys)
    assert code == 2 and "\n" not in err and err.startswith("error: --force:"), err


def _database_rows(name: str, system: str, framework: str) -> tuple[list[str], list[str]]:
    """The header lines and the rows of one system and framework of a data/kernels file (NVIDIA
    AIConfigurator's measurements, latency in ms)."""
    with gzip.open(REPO_KERNELS / name, "rt") as handle:
        lines = [line for line in handle.read().splitlines() if not line.startswith("#")]
    return lines[:1], [line for line in lines[1:] if line.startswith(f"{system},{framework},")]


@pytest.mark.parametrize(
    "name,framework,kind",
    [
        ("gemm_perf.csv.gz", "VLLM", "gemm bfloat16"),
        ("generation_attention_perf.csv.gz", "VLLM", "decode_attention bfloat16"),
    ],
)
def test_microseconds_in_the_millisecond_column_are_refused(tmp_path, capsys, name, framework, kind):
    """The database's h100 vLLM rows with their latency in microseconds (x 1000) were fitted: the
    GEMM class put compute_eff and memory_eff on their lower bounds (0.02), held out 32%, and the
    profile was written, exit 0. No measured kernel is 100x its roofline time on every row (the
    nearest: at most 1.64x for GEMMs, 1.59x for decode attention in data/kernels), so the file is
    refused in one line naming a row and the unit."""
    header, rows = _database_rows(name, "h100_sxm", framework)
    column = header[0].split(",").index("latency")

    def scaled(line: str) -> str:
        fields = line.split(",")
        fields[column] = repr(float(fields[column]) * 1000.0)
        return ",".join(fields)

    path = _write(tmp_path, "us.csv", "\n".join(header + [scaled(r) for r in rows]) + "\n")
    out = tmp_path / "p.yaml"
    code, err = _cli(
        ["calibrate", "--hardware", "h100-sxm", "--backend", "vllm", "--kernels", path, "-o", str(out)], capsys
    )
    assert code == 2 and "\n" not in err, err
    assert "us.csv:" in err and f"every {kind} row is over 100x its roofline time" in err, err
    assert "milliseconds (not microseconds)" in err and not out.exists()


def test_the_databases_gemm_rows_in_milliseconds_are_fitted(tmp_path, capsys):
    header, rows = _database_rows("gemm_perf.csv.gz", "h100_sxm", "VLLM")
    path = _write(tmp_path, "ms.csv", "\n".join(header + [r for r in rows if ",bfloat16," in r]) + "\n")
    code = main(["calibrate", "--hardware", "h100-sxm", "--backend", "vllm", "--kernels", path])
    assert code == 0, capsys.readouterr().err
    assert "gemm/bfloat16" in capsys.readouterr().out


def test_files_of_another_chip_or_engine_say_what_they_hold(tmp_path, capsys):
    """Rows of the h200 (h200_sxm in the database) given for --hardware h100-sxm, or vLLM's rows
    under --backend trtllm, said only 'pass measurement files of this chip and engine'."""
    header, rows = _database_rows("gemm_perf.csv.gz", "h200_sxm", "VLLM")
    path = _write(tmp_path, "k.csv", "\n".join(header + rows) + "\n")
    code, err = _cli(["calibrate", "--hardware", "h100-sxm", "--backend", "vllm", "--kernels", path], capsys)
    assert code == 2 and "\n" not in err, err
    assert "no rows for system h100_sxm (h100-sxm) under vllm; the files hold h200_sxm under vllm" in err
    assert "pass --hardware h200" in err
    code, err = _cli(["calibrate", "--hardware", "h200", "--backend", "trtllm", "--kernels", path], capsys)
    assert code == 2 and "the files hold h200_sxm under vllm; pass --backend vllm" in err, err


def test_a_file_with_every_other_latency_in_microseconds_is_refused(tmp_path, capsys):
    """The database's h100 vLLM bf16 GEMM rows with every other latency in microseconds (x1000)
    were fitted: held out 99%, p90 46,664%, the profile written, exit 0. Rows over a millisecond
    and 100x their roofline time are at most 2.3% of a group's in data/kernels; here about half."""
    header, rows = _database_rows("gemm_perf.csv.gz", "h100_sxm", "VLLM")
    column = header[0].split(",").index("latency")
    mixed = []
    for i, line in enumerate(r for r in rows if ",bfloat16," in r):
        fields = line.split(",")
        if i % 2:
            fields[column] = repr(float(fields[column]) * 1000.0)
        mixed.append(",".join(fields))
    path = _write(tmp_path, "mixed.csv", "\n".join(header + mixed) + "\n")
    out = tmp_path / "p.yaml"
    code, err = _cli(
        ["calibrate", "--hardware", "h100-sxm", "--backend", "vllm", "--kernels", path, "-o", str(out)], capsys
    )
    assert code == 2 and "\n" not in err, err
    assert "mixed.csv:" in err and "gemm bfloat16 rows took over a millisecond and over 100x" in err, err
    assert "every latency is in milliseconds" in err and not out.exists()


def _bumped_gemm_rows(tmp_path):
    """Rows of a known GEMM model on h100-sxm times a local bump in shape the model's terms cannot
    follow: +0.5 in log time (65%) at m=64, n=k=4096, a Gaussian of sigma 1.2 octaves in m and
    0.8 in n and k (a tenth of the rows over +10%). m from 4 to 1024 by octaves, n and k from
    1024 to 16384 by half octaves (as the kernel database's widths: 1536, 2560, 3072, ...)."""
    from cost_models.efficiency import GemmParams, gemm_time_s

    chip = get_hardware("h100-sxm")
    params = GemmParams(compute_eff=0.7, memory_eff=0.8, launch_s=5e-6)
    widths = np.round(2.0 ** np.arange(10, 14.01, 0.5))
    m, n, k = (a.ravel() for a in np.meshgrid(2.0 ** np.arange(2, 11), widths, widths, indexing="ij"))
    bump = 0.5 * np.exp(
        -0.5 * (((np.log2(m) - 6) / 1.2) ** 2 + ((np.log2(n) - 12) / 0.8) ** 2 + ((np.log2(k) - 12) / 0.8) ** 2)
    )
    seconds = gemm_time_s(m, n, k, "bfloat16", chip, params, weights_in_l2=True) * np.exp(bump)
    body = "".join(
        f"h100_sxm,TRTLLM,1,gemm,x,bfloat16,{int(a)},{int(b)},{int(c)},{s * 1e3}\n"
        for a, b, c, s in zip(m, n, k, seconds, strict=True)
    )
    return read_kernel_table(_write(tmp_path, "gemm_perf.csv", GEMM_COLUMNS + body)), bump


def test_gemm_shape_correction_lowers_the_held_out_error_of_a_local_bump(tmp_path, monkeypatch):
    # The whole pipeline held out (tuner/calibrate.py fit_gemm): per fold the fit, its residuals on
    # the training folds' weight shapes, their correction, then the held-out shapes.
    import tuner.calibrate as calibrate

    table, bump = _bumped_gemm_rows(tmp_path)
    errors: list[np.ndarray] = []  # every row's held-out error, as cross_validate returns them
    original = calibrate.cross_validate
    monkeypatch.setattr(calibrate, "cross_validate", lambda *a, **k: errors.append(original(*a, **k)) or errors[-1])
    chip = get_hardware("h100-sxm")
    report = fit_gemm(table, chip, "h100_sxm", "trtllm", 20260101, 5, 300, shape_correction=True)[0]
    assert report.rows == 300 and report.shape_correction.rows == len(bump) == 729
    # Measured (2026-12-05): the fit alone 1.25% / p90 7.6%, with the correction 0.52% / 3.0%;
    # made monotone in m (2026-12-06) 0.99% / 3.0%: above m = 64, where the fit is flat in m, the
    # bump's times fall as m grows, which monotone_in_m does not follow (cost_models/gemm_shape.py).
    assert report.fit_only_p90 > 0.05  # the fit alone cannot follow the bump (its rows: the top 10%)
    assert report.cv_p90 < 0.6 * report.fit_only_p90
    # On the bump's rows (over +10%: 77 of 729) the corrected held-out median is under half the fit
    # alone's (2026-12-07: 5.5% against 13.2%), and off it the correction costs at most 0.2 point
    # (0.94% against 1.11%). The median of every row, 90% of them off the bump, moves with the
    # solver's path: 0.81x the fit alone's until the fit's L2 term read the collector's working
    # set (tuner/collector_working_set.py), 0.91x after (1.09% against 1.20%), so it is not pinned.
    fit_gemm(table, chip, "h100_sxm", "trtllm", 20260101, 5, 300)
    corrected, alone = errors
    on = bump > np.log(1.1)
    assert np.median(corrected[on]) < 0.5 * np.median(alone[on])
    assert np.median(corrected[~on]) < np.median(alone[~on]) + 0.002
    # The shipped correction (all rows, the full fit) at the bump's centre: part of its 0.5 (shrunk;
    # 0.18 made monotone in m, which pools the bump's fall above m = 64 with its top).
    assert 0.1 < float(report.shape_correction.log_correction(64.0, 4096.0, 4096.0)) < 0.5


def test_gemm_shape_correction_is_refused_on_a_file_with_a_dispatch_floor(tmp_path):
    # tuner measure's rows are max(kernel, JAX's dispatch): no correction is learned from them, and
    # the flag is refused rather than silently dropped (before: the profile came without a table).
    import dataclasses

    table, _ = _bumped_gemm_rows(tmp_path)
    floored = dataclasses.replace(table, dispatch_floor_s=20e-6)
    with pytest.raises(InvalidInputError, match="--shape-correction"):
        fit_gemm(floored, get_hardware("h100-sxm"), "h100_sxm", "trtllm", 20260101, 5, 300, shape_correction=True)
    plain = fit_gemm(floored, get_hardware("h100-sxm"), "h100_sxm", "trtllm", 20260101, 5, 300)[0]
    assert plain.shape_correction is None


def test_gemm_shape_correction_is_in_the_written_profile_and_its_times(tmp_path, capsys):
    from cost_models.calibration import load_profile as load
    from cost_models.efficiency import gemm_time_s

    table, _ = _bumped_gemm_rows(tmp_path)
    # The fit's kernel file holds the first 600 of the rows (m <= 512); --shape-rows all 729 (as
    # the repo's gemm_perf.csv.gz and gemm_perf_all_rows.csv.gz): the correction learns from those.
    # (A file of every other row took the solver 4.9 s, against 1.2 s.)
    lines = open(table.path).read().splitlines(keepends=True)
    kernels = _write(tmp_path, "kernels.csv", "".join(lines[1:2] + lines[2:602]))
    out = tmp_path / "p.yaml"
    args = ["calibrate", "--hardware", "h100-sxm", "--backend", "trtllm", "--kernels", kernels]
    code, err = _cli([*args, "--output", str(out), "--shape-rows", table.path], capsys)
    assert code == 0, err
    profile = load(out)
    params = profile.gemm["bfloat16"]
    assert params.shape_correction is not None and params.shape_correction.rows == 729
    assert params.shape_correction.monotone_in_m
    assert {f.path: f.rows_used for f in profile.provenance.data_files}[table.path] == 729
    error = profile.cv_error["gemm/bfloat16"]
    assert error.fit_only_median is not None and error.median < error.fit_only_median
    chip = get_hardware("h100-sxm")
    plain = params.model_copy(update={"shape_correction": None})
    at = gemm_time_s(64.0, 4096.0, 4096.0, "bfloat16", chip, params, weights_in_l2=True)
    # exp(0.18) = 1.20 at the bump's centre, measured 1.197 (2026-12-06, monotone in m).
    assert at / gemm_time_s(64.0, 4096.0, 4096.0, "bfloat16", chip, plain, weights_in_l2=True) > 1.15


def test_without_the_flag_no_table_is_written(tmp_path, capsys):
    # A user's --kernels file without --shape-correction or --shape-rows (the default there; the
    # repo's data gets the correction by default) tuner calibrate writes what it wrote before the
    # correction existed: no table, no fit_only_* keys, no note, and the held-out error is the
    # fit's alone (the bump's rows: p90 ~7.6%, measured 2026-12-05).
    table, _ = _bumped_gemm_rows(tmp_path)
    out = tmp_path / "p.yaml"
    args = ["calibrate", "--hardware", "h100-sxm", "--backend", "trtllm", "--kernels", table.path]
    code = main([*args, "--output", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    written = out.read_text()
    assert "shape_correction" not in written and "fit_only" not in written, written
    report = json.loads(captured.out)
    assert not any("shape_correction_rows" in g or "fit_only_median" in g for g in report["groups"]), report
    assert report["groups"][0]["cv_p90"] > 0.05
    plain = fit_gemm(table, get_hardware("h100-sxm"), "h100_sxm", "trtllm", 20260101, 5, 300)[0]
    assert plain.shape_correction is None and plain.fit_only_median is None


def test_shape_correction_is_refused_where_nothing_fits_a_gemm(capsys):
    # --all rewrites the shipped profiles (which carry no table); an end-to-end fit fits no GEMM.
    for args, named in (
        (["calibrate", "--all", "--shape-correction"], "not used by --all"),
        (
            ["calibrate", "--hardware", "h100-sxm", "--backend", "vllm", "--points", "x.csv", "--shape-correction"],
            "not used by an end-to-end fit",
        ),
    ):
        code, err = _cli(args, capsys)
        assert code == 2 and "\n" not in err.strip(), err
        assert "--shape-correction" in err and named in err, err


def test_shape_correction_rows_by_default_and_by_option(tmp_path, capsys):
    # The repo's data: the correction from data/kernels/gemm_perf_all_rows.csv.gz (as the shipped
    # profiles); a user's --kernels: none unless asked (--shape-correction: from their own GEMM
    # rows; --shape-rows FILE: from FILE's).
    from pathlib import Path

    from tuner.calibrate import ALL_GEMM_ROWS, shape_correction_rows

    assert ALL_GEMM_ROWS == REPO_KERNELS / "gemm_perf_all_rows.csv.gz" and ALL_GEMM_ROWS.exists()
    assert shape_correction_rows(None, None, None) == (True, ALL_GEMM_ROWS)
    assert shape_correction_rows(None, False, None) == (False, None)
    assert shape_correction_rows(["a.csv"], None, None) == (False, None)
    assert shape_correction_rows(["a.csv"], True, None) == (True, None)
    assert shape_correction_rows(["a.csv"], None, "b.csv") == (True, Path("b.csv"))
    args = ["calibrate", "--hardware", "h100-sxm", "--backend", "trtllm"]
    code, err = _cli([*args, "--no-shape-correction", "--shape-rows", "x.csv"], capsys)
    assert code == 2 and "\n" not in err and "--shape-rows" in err and "--no-shape-correction" in err, err
    code, err = _cli(["calibrate", "--all", "--shape-rows", "x.csv"], capsys)
    assert code == 2 and "\n" not in err and "--shape-rows" in err and "not used by --all" in err, err
    attention = str(REPO_KERNELS / "generation_attention_perf.csv.gz")
    kernels = _write(tmp_path, "g.csv", GEMM_COLUMNS + _gemm_rows(40))
    code, err = _cli([*args, "--kernels", kernels, "--shape-rows", attention], capsys)
    assert code == 2 and "\n" not in err and "generation_attention_perf.csv.gz" in err and "GEMM" in err, err


def test_shipped_gemm_groups_carry_a_monotone_shape_correction():
    # data/kernels/add_shape_correction.py (2026-12-06): every GPU profile's GEMM groups, the
    # parametric values as fitted, the correction from every row of the group in
    # gemm_perf_all_rows.csv.gz, monotone in m. Before monotone_in_m the corrected time fell along
    # m by over 5% on 66% of the measured weight shapes' lines (the fit alone 29%).
    from cost_models.efficiency import gemm_time_s

    widths = np.unique(128 * np.round(2.0 ** np.arange(10, 14.01, 0.5) / 128))
    n, k = (a.ravel() for a in np.meshgrid(widths, widths, indexing="ij"))
    m = np.unique(np.concatenate([[1.0, 2.0, 3.0], 4 * np.round(2.0 ** np.arange(0, 12.01, 0.125))]))
    M, N, K = np.broadcast_arrays(m[None, :], n[:, None], k[:, None])
    checked, beyond = 0, []
    for name in available_profiles():
        profile = load_profile(name)
        if profile.chip == "tpu-v4":
            continue
        chip = get_hardware(profile.chip)
        assert any(f.path == "data/kernels/gemm_perf_all_rows.csv.gz" for f in profile.provenance.data_files), name
        for fmt, params in profile.gemm.items():
            correction = params.shape_correction
            assert correction is not None and correction.monotone_in_m and correction.rows >= 1000, (name, fmt)
            error = profile.cv_error[f"gemm/{fmt}"]
            assert error.fit_only_median is not None and error.fit_only_p90 is not None, (name, fmt)
            fitted = np.log(
                gemm_time_s(
                    M, N, K, fmt, chip, params.model_copy(update={"shape_correction": None}), weights_in_l2=True
                )
            )
            corrected = fitted + correction.log_correction(M, N, K)
            fall = (np.maximum.accumulate(corrected, axis=1) - corrected).max(axis=1)
            fit_fall = (np.maximum.accumulate(fitted, axis=1) - fitted).max(axis=1)
            beyond.append(fall - fit_fall)
            checked += 1
    assert checked == 56
    # The corrected time's largest fall along m, beyond the fit's own, on every (n, k) line:
    # within 2% on all but a few lines, within 5% on all (between nodes in n and k, two lines'
    # corrections mix under a third line's fit; and the hundredths the table is stored in).
    beyond = np.concatenate(beyond)
    assert np.mean(beyond > 0.02) < 0.005 and beyond.max() < 0.05, (np.mean(beyond > 0.02), beyond.max())
