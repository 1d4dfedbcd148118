"""The calibrated path's shortcuts change no number: GEMMs timed in blocks of configurations and
in groups of formats that share fitted parameters, shapes read block by block from the sharding
plan, attention and measured collectives on index subsets. Each is checked bit for bit against
the plain computation: every configuration alone, the whole-array shapes of
partitioning.gemm_shapes_per_chip, and each GEMM format or collective group size on its own."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import cost_models.calibrated_times as calibrated_times
import cost_models.deployment as deployment
from cost_models.calibration import load_profile
from cost_models.deployments import make_deployments
from cost_models.dtypes import BF16, FP4, FP8, INT4, INT8
from cost_models.efficiency import (
    ACTIVATION_BYTES,
    GEMM_FORMATS,
    QUANTIZES_ACTIVATIONS,
    WEIGHT_BYTES,
    CollectiveParams,
    GemmParams,
    collective_time_s,
    gemm_time_s,
    gemm_time_with_constants_s,
    peak_for_format,
)
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.operators import OPERATOR_NAMES
from cost_models.partitioning import ATTENTION_SHARDINGS, FFN_LAYOUTS, gemm_shapes_per_chip
from cost_models.topology import network_for

# Dense GQA and MHA, gated and not, MoE, MLA (DeepSeek-V3) and sliding windows (gpt-oss).
MODELS = ("llama-3-8b", "gpt2", "llama-2-7b", "mixtral-8x7b", "deepseek-v3", "gpt-oss-20b", "qwen3-8b")


def _deployments(chip: str, n: int, seed: int):
    """n deployments over MODELS with every weight/activation/KV format and both phases' layouts."""
    rng = np.random.default_rng(seed)
    hardware = get_hardware(chip)
    network = network_for(hardware)
    meshes = np.array([m for chips in (1, 2, 8, 16) for m in network.legal_meshes(chips)], dtype=np.float64)
    catalog = [get_model(name) for name in MODELS]
    return make_deployments(
        catalog,
        hardware,
        model_index=rng.integers(0, len(catalog), n),
        mesh=meshes[rng.integers(0, len(meshes), n)],
        batch=2 ** rng.integers(0, 8, n),
        prompt_len=np.rint(2.0 ** rng.uniform(0, 13, n)),
        gen_len=np.rint(2.0 ** rng.uniform(0, 9, n)),
        weight_dtype=rng.choice([BF16, FP8, INT8, INT4, FP4], n),
        act_dtype=rng.choice([BF16, FP8, INT8, FP4], n),
        kv_dtype=rng.choice([BF16, FP8, INT8, INT4, FP4], n),
        prefill_ffn_layout=rng.integers(0, len(FFN_LAYOUTS), n),
        decode_ffn_layout=rng.integers(0, len(FFN_LAYOUTS), n),
        prefill_attn_sharding=rng.integers(0, len(ATTENTION_SHARDINGS), n),
        decode_attn_sharding=rng.integers(0, len(ATTENTION_SHARDINGS), n),
        flash_attention=rng.random(n) < 0.5,
    )


def _calibrated_calls(monkeypatch, chip: str, profile_name: str, n: int, seed: int) -> list[tuple]:
    """The arguments ``estimate`` gives calibrated_operator_times (one call per phase)."""
    calls: list[tuple] = []
    original = deployment.calibrated_operator_times

    def record(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(deployment, "calibrated_operator_times", record)
    deployment.estimate(_deployments(chip, n, seed), calibration=load_profile(profile_name))
    monkeypatch.undo()
    assert len(calls) == 2
    return calls


def _take(args: tuple, columns: np.ndarray) -> tuple:
    """calibrated_operator_times's arguments for the configurations ``columns``."""
    chip_ops, configs, plan, chips, batch_sharded, hardware, profile = args
    ops = replace(chip_ops, **{f: getattr(chip_ops, f)[:, columns] for f in chip_ops.__dataclass_fields__})
    # The per-chip bytes: chip_roofline keeps their sums as the cached ``bytes`` and stores no
    # per-chip activation or KV arrays in the calibrated path (deployment._operator_times).
    vars(ops)["bytes"] = chip_ops.bytes[:, columns]
    return ops, configs.take(columns), plan.take(columns), chips[columns], batch_sharded[columns], hardware, profile


def _alone(args: tuple, i: int) -> np.ndarray:
    """Configuration ``i`` timed by itself, from the whole-array (m, n, k) of gemm_shapes_per_chip."""
    ops, configs, plan, *rest = _take(args, np.array([i]))
    shapes = gemm_shapes_per_chip(ops, plan)
    return calibrated_times.calibrated_operator_times(ops, configs, shapes, *rest)[:, 0]


# h100 trtllm times int8/int4 weight-only GEMMs with its bf16 fit (one group of formats with
# per-configuration constants); a100 trtllm measured them (separate groups, index subsets).
@pytest.mark.parametrize(("chip", "profile"), [("h100-sxm", "h100-sxm-trtllm"), ("a100-80gb", "a100-80gb-trtllm")])
def test_blocks_and_format_groups_match_each_configuration_alone(monkeypatch, chip, profile) -> None:
    monkeypatch.setattr(calibrated_times, "_BLOCK_CONFIGS", 5)  # several blocks, a partial last one
    calls = _calibrated_calls(monkeypatch, chip, profile, 60, seed=3)
    for args in calls:
        assert np.any(args[1].mla) and np.any(args[1].moe_layers > 0)  # every path is taken
        # All configurations (MLA among them: whole-array shapes), then those without MLA (the
        # plan read block by block; the MoE configurations' expert shapes by index).
        for columns in (np.arange(args[1].mla.size), np.flatnonzero(~args[1].mla)):
            subset = _take(args, columns)
            assert np.any(subset[1].moe_layers > 0)
            monkeypatch.setattr(calibrated_times, "_BLOCK_CONFIGS", 5)  # several blocks, a partial last one
            together = calibrated_times.calibrated_operator_times(*subset)
            monkeypatch.undo()
            alone = np.stack([_alone(subset, i) for i in range(len(columns))], axis=1)
            np.testing.assert_array_equal(together, alone)
            assert together.tobytes() == alone.tobytes()  # bit for bit (signed zeros too)


def test_default_blocks_match_whole_array_shapes(monkeypatch) -> None:
    """The plan read block by block (default block size, dense configurations: no whole-array
    fallback) gives the times of partitioning.gemm_shapes_per_chip's whole arrays."""
    calls = _calibrated_calls(monkeypatch, "h100-sxm", "h100-sxm-trtllm", 5000, seed=4)
    for args in calls:
        configs = args[1]
        ops, dense_configs, plan, *rest = _take(args, np.flatnonzero(~configs.mla & (configs.moe_layers == 0)))
        from_plan = calibrated_times.calibrated_operator_times(ops, dense_configs, plan, *rest)
        shapes = gemm_shapes_per_chip(ops, plan)
        assert (
            from_plan.tobytes()
            == calibrated_times.calibrated_operator_times(ops, dense_configs, shapes, *rest).tobytes()
        )


@pytest.mark.parametrize(("chip", "profile"), [("h100-sxm", "h100-sxm-vllm"), ("a100-80gb", "a100-80gb-trtllm")])
def test_partial_slots_match_whole_array_shapes(monkeypatch, chip, profile) -> None:
    """Slots timed in part (the configurations where an earlier slot has the same GEMM copy its
    seconds, those without the slot are zeroed, the rest are timed: _PartialSlot) give the times
    of partitioning.gemm_shapes_per_chip's whole arrays, every slot timed on every configuration."""
    calls = _calibrated_calls(monkeypatch, chip, profile, 3000, seed=7)
    monkeypatch.setattr(calibrated_times, "_dense_gemm_times_distinct", lambda *args: False)  # the block path
    monkeypatch.setattr(calibrated_times, "_PARTIAL_MIN_CONFIGS", 16)  # (3,000 configurations)
    for args in calls:
        configs = args[1]
        ops, dense_configs, plan, *rest = _take(args, np.flatnonzero(~configs.mla & (configs.moe_layers == 0)))
        rows = calibrated_times._DenseRows.of(np.asarray(ops.present.any(axis=1)))
        _, partial = calibrated_times._partial_twin_rows(ops, plan, calibrated_times._twin_rows(ops, plan, rows)[0])
        # Copies from an earlier slot (the up projection from the gate, k from q in MHA models)
        # and absent configurations (no gate in gelu FFNs) are both exercised.
        assert any(slot.original is not None and np.any(slot.same) for slot in partial)
        assert any(not np.all(ops.present[slot.op]) for slot in partial)
        from_plan = calibrated_times.calibrated_operator_times(ops, dense_configs, plan, *rest)
        shapes = gemm_shapes_per_chip(ops, plan)
        whole = calibrated_times.calibrated_operator_times(ops, dense_configs, shapes, *rest)
        assert from_plan.tobytes() == whole.tobytes()


def test_plan_block_shapes_are_gemm_shapes_per_chip(monkeypatch) -> None:
    calls = _calibrated_calls(monkeypatch, "b200", "b200-trtllm", 300, seed=5)
    for chip_ops, _, plan, *_ in calls:
        # Some widths zeroed: m is 0 there, as gemm_shapes_per_chip's masked divide leaves it.
        widths = plan.distinct_gemm_k.copy()
        widths[:, ::7] = 0.0
        for p in (plan, replace(plan, distinct_gemm_k=widths)):
            m, n, k = (a[calibrated_times._DENSE_SHAPE_ROWS] for a in gemm_shapes_per_chip(chip_ops, p))
            assert np.any(m == 0)  # rows without a matmul (no gate in gelu FFNs) are covered
            source = calibrated_times._PlanGemmShapes(chip_ops, p)
            for chosen in (slice(0, 300), slice(17, 41), np.array([3, 250, 4, 4, 299])):
                got = source.block(chosen)
                for mine, whole in zip(got, (m, n, k), strict=True):
                    assert mine.tobytes() == np.ascontiguousarray(whole[:, chosen]).tobytes()


def test_gemm_constants_per_element_equal_each_format_alone() -> None:
    """One pass over a mix of formats (each element its format's peak and bytes) gives each
    element the seconds gemm_time_s gives it in its own format; every term of the model is on."""
    rng = np.random.default_rng(0)
    chip = get_hardware("h100-sxm")
    size = 4000
    m, n, k = (np.rint(2.0 ** rng.uniform(0, 14, size)) for _ in range(3))
    m[:50] = 0.0  # no tokens
    for passes in (0.0, 1.5):
        params = GemmParams(
            compute_eff=0.7,
            memory_eff=0.8,
            min_tile_m=64.0,
            wave_weight=0.3,
            launch_s=3e-6,
            act_quant_passes=passes,
            l2_speedup=1.5,
            combine_power=3.3,
            split_k_max=4.0,
            half_saturation_ctas=2.0,
        )
        formats = np.array(GEMM_FORMATS)[rng.integers(0, len(GEMM_FORMATS), size)]
        for quantizes in (False, True):
            chosen = np.array([(f in QUANTIZES_ACTIVATIONS) == quantizes for f in formats])
            constants = (
                np.array([peak_for_format(chip, f) for f in formats[chosen]]),
                np.array([WEIGHT_BYTES[f] for f in formats[chosen]]),
                np.array([ACTIVATION_BYTES[f] for f in formats[chosen]]),
            )
            together = gemm_time_with_constants_s(
                m[chosen], n[chosen], k[chosen], *constants, quantizes, chip, params, weights_in_l2=True
            )
            # Each format on its own, as arrays (as the per-format loop this replaces ran it).
            alone = np.empty(int(chosen.sum()))
            for fmt in set(formats[chosen]):
                mine = formats[chosen] == fmt
                alone[mine] = gemm_time_s(
                    m[chosen][mine], n[chosen][mine], k[chosen][mine], fmt, chip, params, weights_in_l2=True
                )
            assert together.tobytes() == alone.tobytes()


def test_collectives_by_group_size_equal_each_alone() -> None:
    rng = np.random.default_rng(1)
    line = {"latency_s": 2e-5, "bandwidth_bytes_per_s": 3e11}
    params = {
        2: CollectiveParams(**line, small_latency_s=5e-6, small_bandwidth_bytes_per_s=2e10, switch_bytes=1e5),
        8: CollectiveParams(**line, small_latency_s=8e-6, small_bandwidth_bytes_per_s=4e10),
    }
    message = np.rint(2.0 ** rng.uniform(0, 30, 500))
    group = rng.choice([1.0, 2.0, 4.0, 8.0, 16.0], 500)
    together = collective_time_s("all_gather", message, group, params)
    alone = np.concatenate(
        [collective_time_s("all_gather", message[i : i + 1], group[i : i + 1], params) for i in range(500)]
    )
    assert together.tobytes() == alone.tobytes()
    assert np.all(together[group == 1.0] == 0.0)  # a group of one is free


def test_measured_network_rows_equal_each_alone() -> None:
    """Inside one NVLink domain the measured curve, across domains the network model: the rows by
    index give every row what it gets alone."""
    hardware = get_hardware("h100-sxm")
    network = calibrated_times.calibrated_network(network_for(hardware), hardware, load_profile("h100-sxm-trtllm"))
    rng = np.random.default_rng(2)
    meshes = np.array([[1, 1, 1], [1, 1, 8], [1, 2, 4], [2, 1, 8], [4, 2, 8], [1, 4, 16]], dtype=np.float64)
    mesh = meshes[rng.integers(0, len(meshes), 400)]
    data = np.rint(2.0 ** rng.uniform(0, 28, 400))
    data[:20] = 0.0
    for kind in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all"):
        for axes in ("z", "yz", "xyz"):
            together = network.collective_time_s(kind, data, mesh, axes)
            alone = [network.collective_time_s(kind, data[i : i + 1], mesh[i : i + 1], axes)[0] for i in range(400)]
            assert together.tobytes() == np.array(alone).tobytes()


@pytest.mark.parametrize(("chip", "profile"), [("h100-sxm", "h100-sxm-vllm"), ("b200", "b200-trtllm")])
# "across": most rows' groups cross domains (over xyz), so the network model times every row.
@pytest.mark.parametrize(("rows", "pool"), [(600, "all"), (600, "across")])
# The rows of negative bytes give NaN in the NCCL lines' soft max (a negative base to a fractional
# power) on both paths alike: numpy's warning for them is expected here.
@pytest.mark.filterwarnings("ignore:invalid value encountered in power:RuntimeWarning")
def test_measured_network_split_rows_equal_whole_call(chip, profile, rows, pool) -> None:
    """The rows split by formula (network model across domains on those meshes' own group terms,
    the measured curve per group size, 0 for a group of one) give every row the bits of the
    whole-array computation (the network model on every row, then the measured rows overwritten),
    including rows that move no, negative or NaN bytes, and the custom all-reduce."""
    hardware = get_hardware(chip)
    network = calibrated_times.calibrated_network(network_for(hardware), hardware, load_profile(profile))
    assert isinstance(network, calibrated_times.CalibratedNetwork)
    rng = np.random.default_rng(3)
    domain = hardware.interconnect.domain_size
    meshes = np.array(
        [[1, 1, 1], [1, 1, 2], [1, 2, 4], [1, 1, domain], [2, 1, domain], [4, 2, domain], [1, 4, 16], [3, 1, 1]],
        dtype=np.float64,
    )
    weights = np.full(len(meshes), 1.0 / len(meshes)) if pool == "all" else [0.1, 0, 0, 0, 0.3, 0.3, 0.3, 0]
    mesh = meshes[rng.choice(len(meshes), rows, p=weights)]
    data = np.rint(2.0 ** rng.uniform(0, 30, rows))
    data[:30] = 0.0
    data[30:35] = -1.0
    data[35:40] = np.nan
    for kind in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all"):
        measured_kind, implementation, table = network._table(kind)
        assert table, f"{profile} measures {measured_kind}"
        for axes in ("z", "yz", "x", "xyz"):
            split = network.collective_time_s(kind, data, mesh, axes)
            whole = network._whole_time_s(kind, measured_kind, implementation, table, data, mesh, axes)
            assert split.tobytes() == whole.tobytes(), (kind, axes)
            assert np.any(split[(mesh[:, 2] > 1) & (data > 0)] > 0)  # some rows take time
    # The split the calls above used (cached for this mesh and axes).
    assert (network._split(mesh, "xyz").every_groups is not None) == (pool == "across")


@pytest.mark.parametrize(("chip", "profile"), [("h100-sxm", "h100-sxm-vllm"), ("a100-80gb", "a100-80gb-trtllm")])
def test_distinct_gemms_match_every_gemm_timed(monkeypatch, chip, profile) -> None:
    """Each distinct dense GEMM timed once and gathered (_dense_gemm_times_distinct) gives every
    configuration the seconds of the whole call's blocks (_dense_gemm_times), bit for bit, in
    decode and prefill."""
    import cost_models.distinct as distinct

    calls = _calibrated_calls(monkeypatch, chip, profile, 3000, seed=6)
    monkeypatch.setattr(distinct, "MIN_ROWS", 16)
    monkeypatch.setattr(distinct, "SAMPLE_ROWS", 64)
    monkeypatch.setattr(calibrated_times, "_ID_TABLE_PER_CONFIG", 10_000)  # any id table size
    taken = 0
    for args in calls:
        chip_ops, configs, plan, _, _, hardware, prof = args
        dense = np.flatnonzero(~configs.mla)
        ops, dense_configs, dense_plan, *_ = _take(args, dense)
        formats = calibrated_times._FORMAT_TABLE[dense_configs.weight_dtype, dense_configs.act_dtype]
        if not hardware.has_format(FP4):
            names = calibrated_times._FORMAT_NAMES
            formats = np.where(formats == names.index("nvfp4"), names.index("fp8"), formats)
        source = calibrated_times._PlanGemmShapes(ops, dense_plan)
        whole = np.full(ops.flops.shape, np.nan)
        calibrated_times._dense_gemm_times(whole, source, formats, hardware, prof)
        for share in (1.0, calibrated_times.DISTINCT_GEMM_SHARE):
            monkeypatch.setattr(calibrated_times, "DISTINCT_GEMM_SHARE", share)
            once = np.full(ops.flops.shape, np.nan)
            all_rows = calibrated_times._ALL_DENSE_ROWS
            if calibrated_times._dense_gemm_times_distinct(once, source, formats, hardware, prof, all_rows):
                taken += 1
                rows = calibrated_times._DENSE_OP_ROWS
                assert once[rows].tobytes() == whole[rows].tobytes()
            else:
                assert np.all(np.isnan(once))  # not taken: nothing written
    # Share 1 takes the path in both phases (this draw's 20 format pairs make over a quarter of
    # its 3,000 decode classes distinct, so the default share falls back here; bench_estimate's
    # decode takes it: bench/guard_estimate_outputs.py).
    assert taken >= 2


def test_twin_slots_are_copied_with_the_times_they_would_get(monkeypatch) -> None:
    """k_proj and v_proj (and a gated FFN's gate and up) have the same GEMM in every configuration
    of a dense draw: timed once (_twin_rows) and copied, the times are those of the whole-array
    shapes, where every slot is timed."""
    calls = _calibrated_calls(monkeypatch, "h100-sxm", "h100-sxm-trtllm", 400, seed=7)
    for args in calls:
        configs = args[1]
        ops, dense_configs, plan, *rest = _take(args, np.flatnonzero(~configs.mla & (configs.moe_layers == 0)))
        rows, twins = calibrated_times._twin_rows(ops, plan, calibrated_times._ALL_DENSE_ROWS)
        names = {(OPERATOR_NAMES[a], OPERATOR_NAMES[b]) for a, b in twins}
        assert ("v_proj", "k_proj") in names
        assert len(rows.op) + len(twins) == len(calibrated_times._DENSE_OP_ROWS)
        from_plan = calibrated_times.calibrated_operator_times(ops, dense_configs, plan, *rest)
        shapes = gemm_shapes_per_chip(ops, plan)
        every = calibrated_times.calibrated_operator_times(ops, dense_configs, shapes, *rest)
        assert from_plan.tobytes() == every.tobytes()


def test_the_stacked_experts_take_none_of_the_dense_calls_own_terms() -> None:
    """The woken experts stacked along n run the MoE kernel's grouped GEMM: not the dense call's
    scale pass per column, its fp8 tile dispatch by m, or TRT-LLM's weight-only GEMV at m <= 4."""
    dense = GemmParams(scale_column_s=1e-9, small_tile_max_m=64.0, mid_tile_max_m=128.0, weight_only_gemv_factor=0.85)
    stacked = calibrated_times._stacked(dense)
    assert stacked.scale_column_s == 0.0 and stacked.small_tile_max_m == stacked.mid_tile_max_m == 0.0
    assert stacked.weight_only_gemv_factor == 1.0
    assert stacked.launch_s == dense.launch_s  # the rest is the dense call's
    assert calibrated_times._stacked(GemmParams()) == GemmParams()


def test_formats_differing_only_in_shape_correction_are_one_pass(monkeypatch) -> None:
    """bf16 with its measured shape correction and int8_wo / int4_wo on the bf16 fit without it
    (h100-sxm-vllm) are timed in one pass of the kernel model, the correction then applied to the
    bf16 GEMMs alone: each GEMM gets gemm_time_s's seconds in its own format and parameters."""
    profile = load_profile("h100-sxm-vllm")
    hardware = get_hardware("h100-sxm")
    assert profile.gemm["bfloat16"].shape_correction is not None
    assert "int8_wo" not in profile.gemm and "int4_wo" not in profile.gemm  # borrowed fits
    rng = np.random.default_rng(8)
    size = 3000
    m, n, k = (np.rint(2.0 ** rng.uniform(low, 15, size)) for low in (0, 8, 8))
    names = calibrated_times._FORMAT_NAMES
    formats = rng.choice([names.index(f) for f in ("bfloat16", "int8_wo", "int4_wo")], size)
    passes = []
    original = calibrated_times.gemm_time_with_constants_s

    def counted(*args, **options):
        passes.append(np.size(args[0]))
        return original(*args, **options)

    monkeypatch.setattr(calibrated_times, "gemm_time_with_constants_s", counted)
    one = calibrated_times._DenseRows(np.zeros(1, dtype=np.intp), np.zeros(1, dtype=np.intp))
    seconds = np.full((1, size), np.nan)
    calibrated_times._dense_gemm_times(seconds, (m[None], n[None], k[None]), formats, hardware, profile, one)
    assert passes == [size]  # one group (two before: bf16 apart from the weight-only formats)
    alone = np.empty(size)
    for code in np.unique(formats):
        fmt = names[code]
        mine = formats == code
        params = calibrated_times._gemm_params(profile, fmt)
        alone[mine] = gemm_time_s(m[mine], n[mine], k[mine], fmt, hardware, params)
    assert seconds[0].tobytes() == alone.tobytes()


def test_repeated_fused_gemms_are_timed_once(monkeypatch) -> None:
    """A fused projection's GEMMs that repeat (a decode step's: batch, model and layout) are
    timed once per distinct (m, n, k, format) and gathered, with the seconds of every GEMM timed."""
    profile = load_profile("h100-sxm-vllm")
    hardware = get_hardware("h100-sxm")
    rng = np.random.default_rng(9)
    size = 6000
    m = 2.0 ** rng.integers(0, 10, size)
    n = rng.choice([6144.0, 3072.0, 28672.0], size)
    k = rng.choice([4096.0, 8192.0], size)
    names = calibrated_times._FORMAT_NAMES
    formats = rng.choice([names.index(f) for f in ("bfloat16", "int8_wo", "fp8")], size)
    timed = []
    original = calibrated_times._dense_gemm_times

    def counted(times, source, *args):
        timed.append(np.size(source[0]))
        return original(times, source, *args)

    monkeypatch.setattr(calibrated_times, "_dense_gemm_times", counted)
    once = calibrated_times._one_row_gemm_times(m, n, k, formats, hardware, profile)
    distinct = len({row for row in zip(m, n, k, formats, strict=True)})
    assert timed == [distinct]  # (size before: every GEMM timed)
    monkeypatch.setattr(calibrated_times, "repeated_rows", lambda *args: None)
    assert once.tobytes() == calibrated_times._one_row_gemm_times(m, n, k, formats, hardware, profile).tobytes()
    assert timed[-1] == size


def test_repeated_lm_head_gemms_are_timed_once(monkeypatch) -> None:
    """A quantized draw's lm_head (a bf16 GEMM apart from the blocks' format) is timed once per
    distinct GEMM where they repeat, with the seconds of every configuration's timed."""
    import cost_models.distinct as distinct

    calls = _calibrated_calls(monkeypatch, "h100-sxm", "h100-sxm-vllm", 2000, seed=10)
    monkeypatch.setattr(distinct, "MIN_ROWS", 16)
    monkeypatch.setattr(distinct, "SAMPLE_ROWS", 64)
    monkeypatch.setattr(calibrated_times, "DISTINCT_GEMM_SHARE", 1.0)
    original = calibrated_times._dense_gemm_times_distinct
    lm_head = []

    def spied(times, source, formats, hardware, profile, dense_rows):
        taken = original(times, source, formats, hardware, profile, dense_rows)
        if dense_rows is calibrated_times._LM_HEAD_ROWS:
            lm_head.append(taken)
        return taken

    for args in calls:
        ops, configs, plan, *rest = _take(args, np.flatnonzero(~args[1].mla & (args[1].moe_layers == 0)))
        monkeypatch.setattr(calibrated_times, "_dense_gemm_times_distinct", spied)
        once = calibrated_times.calibrated_operator_times(ops, configs, plan, *rest)
        monkeypatch.setattr(calibrated_times, "_dense_gemm_times_distinct", lambda *args: False)
        every = calibrated_times.calibrated_operator_times(ops, configs, plan, *rest)
        assert once.tobytes() == every.tobytes()
    assert lm_head == [True, True]  # both phases (never tried before)
