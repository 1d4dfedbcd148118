"""The slot-by-slot per-chip roofline of the deployment estimate (cost_models.deployment.chip_roofline)
against the whole-array route it replaces: per_chip_costs, the expert scaling, roofline_times and
the repeat-weighted sums over the slots, bit for bit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cost_models import get_hardware, get_model
from cost_models.conventions import DEFAULT
from cost_models.deployment import (
    _COST_ARRAYS,
    EXPERT_SLOTS,
    BlockedCosts,
    _active_block_params,
    _active_block_params_per_model,
    _live_activations,
    _shared_residual_rows,
    _twin_slots,
    block_slices,
    chip_roofline,
    estimate,
    expert_scale,
    kv_ways_by_phase,
    rank_view,
    sharding_plans,
    slot_sum,
    stage_configs,
)
from cost_models.deployments import make_deployments
from cost_models.dtypes import BF16, BYTES_PER_ELEMENT, FP8, INT4, INT8, lookup
from cost_models.inference_configs import DECODE
from cost_models.operators import LM_HEAD, OP, WEIGHTLESS_SLOTS, operator_costs
from cost_models.partitioning import ATTENTION_SHARDINGS, FFN_LAYOUTS, chip_shares, per_chip_costs
from cost_models.roofline import roofline_times
from cost_models.topology import network_for

MODELS = ("llama-2-7b", "mixtral-8x7b", "deepseek-v3", "gpt-oss-20b", "bert-base", "palm-540b")


def _deployments(chip_name: str, n: int, seed: int, engine: bool):
    rng = np.random.default_rng(seed)
    chip = get_hardware(chip_name)
    catalog = [get_model(name) for name in MODELS]
    decoders = [i for i, m in enumerate(catalog) if m.kind == "decoder"]
    model_index = rng.choice(decoders, n)
    if engine:  # GPU engines: TP mesh, PP/EP/DP, ws_1d
        experts = np.array([m.experts for m in catalog], dtype=np.float64)[model_index]
        tp, dp = 2.0 ** rng.integers(0, 4, n), 2.0 ** rng.integers(0, 3, n)
        top = np.log2(np.maximum(np.minimum(tp * dp, np.where(experts > 0, experts, 1.0)), 1.0))
        ep = np.where(experts > 0, 2.0 ** np.floor(rng.uniform(0, 1, n) * (top + 1)), 1.0)
        micro = 2.0 ** rng.integers(0, 2, n)
        ones = np.ones(n)
        extra = dict(
            mesh=np.stack([ones, ones, tp], axis=1),
            batch=dp * micro * 2 ** rng.integers(0, 6, n),
            prefill_ffn_layout=FFN_LAYOUTS.index("ws_1d"),
            decode_ffn_layout=FFN_LAYOUTS.index("ws_1d"),
            pipeline_parallel=2.0 ** rng.integers(0, 2, n),
            expert_parallel=ep,
            data_parallel=dp,
            micro_batches=micro,
            flash_attention=True,
        )
    else:  # Pope et al.'s meshes, every layout and attention sharding
        network = network_for(chip)
        meshes = np.array([m for c in (8, 16, 64) for m in network.legal_meshes(c)], dtype=np.float64)
        extra = dict(
            mesh=meshes[rng.integers(0, len(meshes), n)],
            batch=2 ** rng.integers(0, 9, n),
            prefill_ffn_layout=rng.integers(0, len(FFN_LAYOUTS), n),
            decode_ffn_layout=rng.integers(0, len(FFN_LAYOUTS), n),
            prefill_attn_sharding=rng.integers(0, len(ATTENTION_SHARDINGS), n),
            decode_attn_sharding=rng.integers(0, len(ATTENTION_SHARDINGS), n),
            flash_attention=rng.integers(0, 2, n).astype(bool),
        )
    return make_deployments(
        catalog,
        chip,
        model_index=model_index,
        prompt_len=np.rint(2.0 ** rng.uniform(4, 13, n)),
        gen_len=np.rint(2.0 ** rng.uniform(2, 9, n)),
        weight_dtype=rng.choice([BF16, FP8, INT8, INT4] if chip.has_format(FP8) else [BF16, INT8, INT4], n),
        kv_dtype=rng.choice([BF16, INT8], n),
        **extra,
    )


def _phase(chip: str, seed: int, engine: bool, phase: str):
    """400 drawn deployments on ``chip`` and one phase's inputs to the per-chip roofline: the
    deployments, their rank view, the stage configurations at that phase, the sharding plans, the
    KV ways and the new tokens per sequence."""
    d = _deployments(chip, 400, seed=seed, engine=engine)
    view = rank_view(d)
    configs = stage_configs(view.inference_configs("prefill", d.prompt_len), d.pipeline_parallel)
    plans, kv_ways = sharding_plans(view, configs), kv_ways_by_phase(view)
    if phase == "decode":
        configs = configs.at_phase(DECODE, d.prompt_len + (d.gen_len - 1.0) / 2.0)
    tokens = d.prompt_len if phase == "prefill" else np.ones(len(d))
    return d, view, configs, plans, kv_ways, tokens


@pytest.mark.parametrize(("chip", "engine"), [("tpu-v4", False), ("h200", True), ("h100-sxm", False)])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_slot_by_slot_roofline_is_the_whole_array_one_bit_for_bit(chip, engine, phase):
    d, view, configs, plans, kv_ways, tokens = _phase(chip, len(chip) + (phase == "decode"), engine, phase)
    ops = operator_costs(configs)
    layouts, sharded = view.ffn_layout(phase), view.batch_sharded_attention(phase)
    scale = expert_scale(configs, d.data_parallel, d.expert_parallel, tokens)
    moe = np.any(configs.moe_layers > 0)
    assert moe and (not engine or scale is not None)  # the cases the fast path must cover

    # The whole-array route.
    chip_ops = per_chip_costs(ops, configs, view.mesh, layouts, sharded, plans[phase], kv_ways[phase])
    if scale is not None:
        rows = [OP[name] for name in EXPERT_SLOTS]
        chip_ops.weight_bytes[rows] *= scale[0]
        for array in (chip_ops.flops, chip_ops.act_read_bytes, chip_ops.act_write_bytes):
            array[rows] *= scale[1]
    roofline = roofline_times(chip_ops.flops, chip_ops.bytes, chip_ops.compute_dtype, d.hardware)
    share = ops.repeats / configs.layers
    share[LM_HEAD] = 1.0
    expected_time = roofline.time_s * share

    shares = chip_shares(configs, view.mesh, layouts, sharded, plans[phase], kv_ways[phase])
    time_s, totals = chip_roofline(ops, shares, d.hardware, scale, configs.layers)
    np.testing.assert_array_equal(time_s, expected_time)
    np.testing.assert_array_equal(totals.compute_s, (roofline.compute_s * ops.repeats).sum(axis=0))
    np.testing.assert_array_equal(totals.memory_s, (roofline.memory_s * ops.repeats).sum(axis=0))
    # The calibrated path's per-chip costs, filled on the way.
    kept = {name: np.empty_like(ops.flops) for name in _COST_ARRAYS}
    time_kept, _ = chip_roofline(ops, shares, d.hardware, scale, chip_ops=replace(ops, **kept))
    np.testing.assert_array_equal(time_kept, roofline.time_s)
    for name in _COST_ARRAYS:
        np.testing.assert_array_equal(kept[name], getattr(chip_ops, name))


def _outputs(result) -> dict[str, np.ndarray]:
    out = {"decode_step_latency_s": result.decode_step_latency_s}
    for part in ("prefill", "decode", "memory"):
        section = getattr(result, part)
        for name in section.__dataclass_fields__:
            out[f"{part}.{name}"] = getattr(section, name)
    return out


@pytest.mark.parametrize(("chip", "engine"), [("tpu-v4", False), ("h200", True), ("h100-sxm", False)])
def test_mixed_batch_equals_each_row_alone_bit_for_bit(chip, engine):
    # A mixed batch (dense, MoE, MLA and windowed models; fused and unfused attention; serial and
    # parallel blocks; head- and batch-sharded attention; every layout) takes the np.where paths
    # and shares shape-only work (sharding plans and KV splits found once for both phases); a row
    # alone takes the shortcuts of a uniform batch (operators._where, skipped slots and
    # collectives). Both must give the same numbers, bit for bit. (A row alone is taken twice: numpy
    # sums the slots of a single column pairwise, of several one after another, which may differ
    # in the last bit whatever the model does; test_invariants checks single rows to 1e-12.)
    d = _deployments(chip, 300, seed=11, engine=engine)
    together = _outputs(estimate(d))
    for i in range(0, len(d), 10):
        alone = _outputs(estimate(d.take([i, i])))
        for name, values in alone.items():
            np.testing.assert_array_equal(values, together[name][[i, i]], err_msg=f"row {i} {name}")


def test_rows_sharing_one_shape_equal_the_shape_alone():
    # 64 rows of one model, mesh and layouts (one distinct shape for the plans and the KV split),
    # differing in batch and lengths, against each alone.
    d = _deployments("tpu-v4", 64, seed=5, engine=False)
    first = d.take([0])
    same = make_deployments(
        d.models,
        d.hardware,
        model_index=int(first.model_index[0]),
        mesh=first.mesh[0],
        batch=d.batch,
        prompt_len=d.prompt_len,
        gen_len=d.gen_len,
        prefill_ffn_layout=int(first.prefill_ffn_layout[0]),
        decode_ffn_layout=int(first.decode_ffn_layout[0]),
        prefill_attn_sharding=int(first.prefill_attn_sharding[0]),
        decode_attn_sharding=int(first.decode_attn_sharding[0]),
    )
    together = _outputs(estimate(same))
    for i in range(0, len(same), 8):
        alone = _outputs(estimate(same.take([i, i])))  # twice: see the test above
        for name, values in alone.items():
            np.testing.assert_array_equal(values, together[name][[i, i]], err_msg=f"row {i} {name}")


def test_a_call_split_into_chunks_equals_one_piece(monkeypatch):
    # estimate scores more than ESTIMATE_CHUNK_ROWS rows in equal chunks and joins them.
    import cost_models.deployment as deployment

    d = _deployments("tpu-v4", 301, seed=3, engine=False)
    whole = _outputs(estimate(d))
    monkeypatch.setattr(deployment, "ESTIMATE_CHUNK_ROWS", 70)  # 5 chunks of 60-61 rows
    chunked = _outputs(estimate(d))
    for name, values in whole.items():
        assert chunked[name].shape == values.shape
        np.testing.assert_array_equal(chunked[name], values, err_msg=name)


@pytest.mark.parametrize(("chip", "engine"), [("tpu-v4", False), ("h200", True), ("h100-sxm", False)])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_twin_slots_copied_are_the_slots_computed_bit_for_bit(chip, engine, phase):
    # Slots built with another's arguments (OperatorCosts.same_rows: k_proj = v_proj, ...) have
    # their per-chip numbers copied from that slot (deployment._twin_slots); the same costs
    # without that record (OperatorCosts.replaced drops it) are computed slot by slot.
    d, view, configs, plans, kv_ways, tokens = _phase(chip, 7 + len(chip) + (phase == "decode"), engine, phase)
    ops = operator_costs(configs)
    plain = ops.replaced()
    assert ops.same_rows() and not plain.same_rows()
    layouts, sharded = view.ffn_layout(phase), view.batch_sharded_attention(phase)
    scale = expert_scale(configs, d.data_parallel, d.expert_parallel, tokens)
    shares = chip_shares(configs, view.mesh, layouts, sharded, plans[phase], kv_ways[phase])
    present = {i for i in range(len(ops.flops)) if ops.present[i].any()}
    assert _twin_slots(ops, shares, present, None, True, (), {})  # the copies are taken here
    for i, j in ops.same_rows().items():  # what the record says: every row equal
        for name in (*_COST_ARRAYS, "compute_dtype", "present", "repeats"):
            np.testing.assert_array_equal(getattr(ops, name)[i], getattr(ops, name)[j])
    time_s, totals = chip_roofline(ops, shares, d.hardware, scale, configs.layers)
    plain_time_s, plain_totals = chip_roofline(plain, shares, d.hardware, scale, configs.layers)
    np.testing.assert_array_equal(time_s, plain_time_s)
    np.testing.assert_array_equal(totals.compute_s, plain_totals.compute_s)
    np.testing.assert_array_equal(totals.memory_s, plain_totals.memory_s)
    # The calibrated path's call: per-chip FLOPs (and bytes) kept, no times.
    gemms = frozenset(OP[name] for name in ("q_proj", "k_proj", "v_proj", "out_proj", "gate_proj", "up_proj"))
    elementwise = frozenset(OP[name] for name in ("attn_norm", "attn_add", "mlp_norm", "mlp_add"))
    for totals_wanted in (True, False):
        filled = []
        for costs in (ops, plain):
            unfilled = {name: np.full_like(ops.flops, np.nan) for name in ("flops", "weight_bytes")}
            chip_ops = costs.replaced(**unfilled)
            _, sums = chip_roofline(
                costs, shares, d.hardware, scale, chip_ops=chip_ops, times=False, totals=totals_wanted,
                flops_only=gemms, kept=frozenset({"flops", "weight_bytes"}), bytes_only=elementwise,
            )  # fmt: skip
            kept_rows = sorted(present - gemms) if totals_wanted else sorted(present - gemms - elementwise)
            filled.append((chip_ops.flops, chip_ops.weight_bytes, chip_ops.bytes[kept_rows], sums))
        for mine, theirs in zip(filled[0][:3], filled[1][:3], strict=True):
            np.testing.assert_array_equal(mine, theirs)
        if totals_wanted:
            np.testing.assert_array_equal(filled[0][3].compute_s, filled[1][3].compute_s)
            np.testing.assert_array_equal(filled[0][3].memory_s, filled[1][3].memory_s)


@pytest.mark.parametrize(("chip", "engine"), [("tpu-v4", False), ("h200", True), ("h100-sxm", False)])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_residual_rows_divided_once_are_each_rows_own_bit_for_bit(chip, engine, phase):
    # Activation rows recorded as the residual stream's bytes (OperatorCosts.residual_rows) are
    # N d_model ab in every configuration; chip_roofline divides them once per block
    # (deployment._shared_residual_rows). The same costs without that record (the twins' record
    # kept) are divided row by row: the same times, totals and per-chip arrays.
    d, view, configs, plans, kv_ways, tokens = _phase(chip, 11 + len(chip) + (phase == "decode"), engine, phase)
    ops = operator_costs(configs)
    nd_ab = configs.batch * (1.0 if phase == "decode" else configs.seq_len) * configs.d_model
    nd_ab = nd_ab * lookup(BYTES_PER_ELEMENT, configs.act_dtype)
    recorded = [(name, i) for name in ("act_read_bytes", "act_write_bytes") for i in ops.residual_rows(name)]
    assert len(recorded) >= 4
    for name, i in recorded:
        np.testing.assert_array_equal(getattr(ops, name)[i], nd_ab, err_msg=f"{name} {i}")
    plain = ops.replaced()
    vars(plain)["_same_rows"] = ops.same_rows()
    assert plain.same_rows() and not plain.residual_rows("act_read_bytes")
    layouts, sharded = view.ffn_layout(phase), view.batch_sharded_attention(phase)
    scale = expert_scale(configs, d.data_parallel, d.expert_parallel, tokens)
    shares = chip_shares(configs, view.mesh, layouts, sharded, plans[phase], kv_ways[phase])
    present = [i for i in range(len(ops.flops)) if ops.present[i].any()]
    expert_rows = {OP[name] for name in EXPERT_SLOTS} if scale is not None else set()
    assert len(_shared_residual_rows(ops, shares, present, {}, expert_rows, ())) >= 3  # shared here
    time_s, totals = chip_roofline(ops, shares, d.hardware, scale, configs.layers)
    plain_time_s, plain_totals = chip_roofline(plain, shares, d.hardware, scale, configs.layers)
    np.testing.assert_array_equal(time_s, plain_time_s)
    np.testing.assert_array_equal(totals.compute_s, plain_totals.compute_s)
    np.testing.assert_array_equal(totals.memory_s, plain_totals.memory_s)
    # With chip_ops keeping every array: each slot's per-chip activations written as before.
    filled = []
    for costs in (ops, plain):
        chip_ops = costs.replaced(**{name: np.full_like(ops.flops, np.nan) for name in _COST_ARRAYS})
        chip_roofline(costs, shares, d.hardware, scale, configs.layers, chip_ops=chip_ops)
        filled.append([getattr(chip_ops, name)[present] for name in _COST_ARRAYS] + [chip_ops.bytes[present]])
    for mine, theirs in zip(*filled, strict=True):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize(("chip", "engine"), [("tpu-v4", False), ("h200", True), ("h100-sxm", False)])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("block_rows", [37, 400, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_costs_are_the_whole_tables_roofline_bit_for_bit(monkeypatch, chip, engine, phase, block_rows, dtype):
    # BlockedCosts builds operator_costs and runs chip_roofline COST_BLOCK_ROWS configurations at
    # a time (here 11 blocks of 37 and one of 30; one block; one block larger than the call):
    # the same times, totals, live activations and zero slots as the whole tables, in the
    # roofline's float type (ROOFLINE_DTYPE; its outputs float64 either way).
    import cost_models.deployment as deployment

    monkeypatch.setattr(deployment, "COST_BLOCK_ROWS", block_rows)
    monkeypatch.setattr(deployment, "ROOFLINE_DTYPE", dtype)
    d, view, configs, plans, kv_ways, tokens = _phase(chip, 13 + len(chip) + (phase == "decode"), engine, phase)
    layouts, sharded = view.ffn_layout(phase), view.batch_sharded_attention(phase)
    scale = expert_scale(configs, d.data_parallel, d.expert_parallel, tokens)
    layers = configs.layers if np.any(configs.moe_layers > 0) else None
    ops = operator_costs(configs, dtype=dtype)
    shares = chip_shares(configs, view.mesh, layouts, sharded, plans[phase], kv_ways[phase])
    time_s, totals = chip_roofline(ops, shares, d.hardware, scale, layers, time_out=np.empty(ops.flops.shape))
    zero = frozenset(i for i in range(len(time_s)) if not ops.present[i].any())
    for wanted in (True, False):
        blocked = BlockedCosts(configs, DEFAULT)
        shares = chip_shares(configs, view.mesh, layouts, sharded, plans[phase], kv_ways[phase])
        blocked_time_s, blocked_totals, blocked_zero = blocked.roofline(shares, d.hardware, scale, layers, wanted)
        assert blocked_time_s.dtype == np.float64
        np.testing.assert_array_equal(blocked_time_s, time_s)
        assert blocked_zero == zero
        assert blocked.live_activations is not None and blocked.live_activations.dtype == np.float64
        np.testing.assert_array_equal(blocked.live_activations, _live_activations(ops).astype(np.float64))
        if wanted:
            assert blocked_totals is not None and blocked_totals.compute_s.dtype == np.float64
            np.testing.assert_array_equal(blocked_totals.compute_s, totals.compute_s)
            np.testing.assert_array_equal(blocked_totals.memory_s, totals.memory_s)
        else:
            assert blocked_totals is None


def test_blocked_costs_slots_absent_from_some_blocks_are_zero_there():
    # Blocks of one model each: a slot one model lacks (MoE, windows, gates) is absent from its
    # blocks and present in others; its times there are +0.0, as the whole call's.
    import cost_models.deployment as deployment

    d, view, configs, plans, kv_ways, tokens = _phase("h100-sxm", 5, False, "decode")
    order = np.argsort(d.model_index, kind="stable")
    d, view = d.take(order), view.take(order)
    configs = configs.take(order)
    plans, kv_ways = sharding_plans(view, configs), kv_ways_by_phase(view)
    layouts, sharded = view.ffn_layout("decode"), view.batch_sharded_attention("decode")
    # (The whole tables in the blocked costs' float type, ROOFLINE_DTYPE, their times float64.)
    ops = operator_costs(configs, dtype=deployment.ROOFLINE_DTYPE)
    shares = chip_shares(configs, view.mesh, layouts, sharded, plans["decode"], kv_ways["decode"])
    time_s, totals = chip_roofline(ops, shares, d.hardware, None, configs.layers, time_out=np.empty(ops.flops.shape))
    counts = np.bincount(d.model_index)
    block = int(counts[counts > 0].min())
    starts = range(0, len(configs), block)
    present = ops.present
    assert any(present[i].any() and not present[i, s : s + block].any() for i in range(len(present)) for s in starts)
    blocked = BlockedCosts(configs, DEFAULT)
    old = deployment.COST_BLOCK_ROWS
    try:
        deployment.COST_BLOCK_ROWS = block
        shares = chip_shares(configs, view.mesh, layouts, sharded, plans["decode"], kv_ways["decode"])
        blocked_time_s, blocked_totals, _ = blocked.roofline(shares, d.hardware, None, configs.layers, True)
    finally:
        deployment.COST_BLOCK_ROWS = old
    assert time_s.tobytes() == blocked_time_s.tobytes()
    assert blocked_totals is not None
    assert totals.compute_s.tobytes() == blocked_totals.compute_s.tobytes()
    assert totals.memory_s.tobytes() == blocked_totals.memory_s.tobytes()


def test_active_block_params_per_model_are_every_rows_bit_for_bit():
    """MFU's active block parameters, computed on one row per model and gathered where every row
    of a model has one KV-head count, are those of every row; with KV heads that differ within a
    model (a what-if on some rows) every row is computed."""
    d = _deployments("h100-sxm", 500, 3, engine=True)
    configs = d.inference_configs("prefill", d.prompt_len)
    every_row = _active_block_params(configs)
    per_model = _active_block_params_per_model(configs, d.model_index, d.kv_heads)
    assert per_model.tobytes() == every_row.tobytes()
    some = d.kv_heads.copy()
    some[::7] = 1.0  # MQA on some rows (MLA models' rows keep theirs: an override is refused there)
    latent = np.array([m.is_mla for m in d.models])[d.model_index]
    some[latent] = d.kv_heads[latent]
    what_if = replace(d, kv_heads=some)
    configs = what_if.inference_configs("prefill", d.prompt_len)
    assert not np.array_equal(configs.kv_heads, d.kv_heads)
    per_model = _active_block_params_per_model(configs, what_if.model_index, what_if.kv_heads)
    assert per_model.tobytes() == _active_block_params(configs).tobytes()


def test_slot_sum_is_numpys_axis_sum_bit_for_bit():
    """slot_sum adds the rows as an axis-0 sum does (to +0.0, one after another), leaving out
    rows of +0.0 only: the same numbers, signed zeros and NaN included."""
    rng = np.random.default_rng(1)
    op_time = rng.random((22, 1000)) * np.logspace(-8, 3, 22)[:, None]
    op_time[[3, 7, 21]] = 0.0
    op_time[0, :10] = -0.0
    op_time[5, :5] = np.nan
    for rows in (range(21), range(22), [0, 1, 2, 5], [3, 7], range(21, 22), []):
        expected = op_time[list(rows)].sum(axis=0)
        assert slot_sum(op_time, rows, frozenset({3, 7, 21})).tobytes() == expected.tobytes()
        assert slot_sum(op_time, rows).tobytes() == expected.tobytes()


@pytest.mark.parametrize(("chip", "engine"), [("tpu-v4", False), ("h200", True), ("h100-sxm", False)])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("dense_only", [False, True])
def test_rows_left_unfilled_are_never_read_by_the_blocked_roofline(chip, engine, phase, dense_only):
    # operator_costs(unread_rows=False) leaves unfilled the rows of slots no configuration has
    # and the weight rows of weightless slots, which chip_roofline (without chip_ops) and
    # _live_activations skip: NaN written into exactly those rows changes no time, total or
    # live activation, and every other row is the default call's. (Of the dense models' rows
    # alone, the MoE slots are such rows.)
    d, view, configs, plans, kv_ways, tokens = _phase(chip, 29 + len(chip) + (phase == "decode"), engine, phase)
    plan, kv = plans[phase], kv_ways[phase]
    dp, ep = d.data_parallel, d.expert_parallel
    if dense_only:
        rows = np.flatnonzero(configs.moe_layers == 0)
        view, configs, plan, kv = view.take(rows), configs.take(rows), plan.take(rows), kv[rows]
        dp, ep, tokens = dp[rows], ep[rows], tokens[rows]
    layouts, sharded = view.ffn_layout(phase), view.batch_sharded_attention(phase)
    scale = expert_scale(configs, dp, ep, tokens)
    layers = configs.layers if np.any(configs.moe_layers > 0) else None
    whole = operator_costs(configs)
    left = operator_costs(configs, unread_rows=False)
    absent = [i for i in range(len(whole.present)) if not whole.present[i].any()]
    weightless = [OP[name] for name in WEIGHTLESS_SLOTS]
    assert absent or not dense_only  # (the rows this test is about exist in the draw)
    for name in ("flops", "weight_bytes", "act_read_bytes", "act_write_bytes"):
        unread = set(absent) | (set(weightless) if name == "weight_bytes" else set())
        read = [i for i in range(len(whole.present)) if i not in unread]
        np.testing.assert_array_equal(getattr(left, name)[read], getattr(whole, name)[read])
        getattr(left, name)[sorted(unread)] = np.nan
    results = []
    for ops in (whole, left):
        shares = chip_shares(configs, view.mesh, layouts, sharded, plan, kv)
        time_s, totals = chip_roofline(ops, shares, d.hardware, scale, layers)
        results.append((time_s, totals.compute_s, totals.memory_s, _live_activations(ops)))
    for mine, theirs in zip(*results, strict=True):
        assert mine.tobytes() == theirs.tobytes()


def test_block_slices_join_a_short_rest_to_the_block_before_it():
    # A rest of fewer than half a block is joined to the last full block (100,000 rows in blocks
    # of 16,384: six blocks, the last of 18,080 rows, not a seventh of 1,696); a longer rest is
    # a block of its own; every row is in exactly one block, in order.
    sizes = {
        (100_000, 16_384): [16_384] * 5 + [18_080],
        (98_304, 16_384): [16_384] * 6,
        (106_497, 16_384): [16_384] * 6 + [8_193],
        (7, 5): [5, 2],
        (6, 5): [6],
        (5, 5): [5],
        (1, 5): [1],
        (0, 5): [],
        (30, 37): [30],
    }
    for (n, rows), expected in sizes.items():
        blocks = block_slices(n, rows)
        assert [b.stop - b.start for b in blocks] == expected
        assert [b.start for b in blocks] == [sum(expected[:k]) for k in range(len(expected))]


def test_blocked_costs_with_a_joined_rest_are_the_whole_tables_bit_for_bit(monkeypatch):
    # 400 configurations in blocks of 180: two blocks (180 and 220 rows), the rest of 40 joined;
    # chip_roofline's own blocks of 150 inside them: 180 as one, 220 as one (a rest of 70 < 75
    # is joined). The same numbers as one whole call.
    import cost_models.deployment as deployment

    monkeypatch.setattr(deployment, "COST_BLOCK_ROWS", 180)
    monkeypatch.setattr(deployment, "ROOFLINE_BLOCK_ROWS", 150)
    assert [b.stop - b.start for b in block_slices(400, 180)] == [180, 220]
    d, view, configs, plans, kv_ways, tokens = _phase("h100-sxm", 41, False, "decode")
    layouts, sharded = view.ffn_layout("decode"), view.batch_sharded_attention("decode")
    # (The whole tables in the blocked costs' float type, ROOFLINE_DTYPE, their times float64.)
    ops = operator_costs(configs, dtype=deployment.ROOFLINE_DTYPE)
    shares = chip_shares(configs, view.mesh, layouts, sharded, plans["decode"], kv_ways["decode"])
    time_s, totals = chip_roofline(ops, shares, d.hardware, None, None, time_out=np.empty(ops.flops.shape))
    blocked = BlockedCosts(configs, DEFAULT)
    shares = chip_shares(configs, view.mesh, layouts, sharded, plans["decode"], kv_ways["decode"])
    blocked_time_s, blocked_totals, _ = blocked.roofline(shares, d.hardware, None, None, True)
    assert time_s.tobytes() == blocked_time_s.tobytes()
    assert blocked_totals is not None and blocked.live_activations is not None
    assert totals.compute_s.tobytes() == blocked_totals.compute_s.tobytes()
    assert totals.memory_s.tobytes() == blocked_totals.memory_s.tobytes()
    assert blocked.live_activations.tobytes() == _live_activations(ops).astype(np.float64).tobytes()


def test_chip_shares_given_the_meshes_chips_are_the_ones_it_computes():
    # _operator_times hands chip_shares the deployments' tensor_parallel (the mesh's product,
    # kept by the deployments) instead of its own group_size over "xyz": the same bits in every
    # work and weight entry, and that array itself where the chips are the divisor.
    d, view, configs, plans, kv_ways, _ = _phase("h100-sxm", 53, False, "decode")
    layouts, sharded = view.ffn_layout("decode"), view.batch_sharded_attention("decode")
    own = chip_shares(configs, view.mesh, layouts, sharded, plans["decode"], kv_ways["decode"])
    chips = view.tensor_parallel
    given = chip_shares(configs, view.mesh, layouts, sharded, plans["decode"], kv_ways["decode"], chips)
    assert any(w is chips for w in given.work)
    for mine, theirs in zip((*given.work, *given.weight), (*own.work, *own.weight), strict=True):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert mine.dtype == theirs.dtype and mine.tobytes() == theirs.tobytes()
