"""Properties of the per-operator model that hold for every configuration, checked by hand counts
and over random configurations (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cost_models import analyze, get_hardware, get_model, make_configs, model_catalog
from cost_models.dtypes import BF16, FP8, INT4, INT8
from cost_models.errors import InvalidInputError
from cost_models.operators import OP, OPERATOR_NAMES

MODELS = sorted(model_catalog())
DECODERS = [name for name in MODELS if model_catalog()[name].kind == "decoder"]


@st.composite
def config_columns(draw, size=st.integers(1, 40)):
    n = draw(size)
    names = draw(st.lists(st.sampled_from(DECODERS), min_size=n, max_size=n))
    ints = lambda lo, hi: np.array(draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)))  # noqa: E731
    bools = lambda: np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))  # noqa: E731
    dtype = lambda: np.array(draw(st.lists(st.sampled_from([BF16, FP8, INT8, INT4]), min_size=n, max_size=n)))  # noqa: E731
    return dict(
        model=[get_model(m) for m in names],
        phase=np.array(draw(st.lists(st.sampled_from(["prefill", "decode"]), min_size=n, max_size=n))),
        batch=ints(1, 1024),
        seq_len=ints(1, 65536),
        weight_dtype=dtype(),
        act_dtype=dtype(),
        kv_dtype=dtype(),
        flash_attention=bools(),
        causal=bools(),
    )


@settings(max_examples=40, deadline=None)
@given(config_columns())
def test_vectorized_equals_one_at_a_time(columns):
    configs = make_configs(**columns)
    chip = get_hardware("h100-sxm")
    together = analyze(configs, chip)
    for i in range(len(configs)):
        alone = analyze(configs.take(i), chip)
        np.testing.assert_allclose(alone.total_time_s, together.total_time_s[i : i + 1], rtol=1e-12)
        np.testing.assert_allclose(alone.operators.bytes[:, 0], together.operators.bytes[:, i], rtol=1e-12)
        np.testing.assert_allclose(alone.operators.flops[:, 0], together.operators.flops[:, i], rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(config_columns())
def test_roofline_invariants(columns):
    configs = make_configs(**columns)
    chip = get_hardware("a100-80gb")
    result = analyze(configs, chip)
    ops, times = result.operators, result.times
    assert np.all(ops.flops >= 0) and np.all(ops.bytes >= 0)
    assert np.all(ops.flops[~ops.present] == 0) and np.all(ops.bytes[~ops.present] == 0)
    # Each operator takes at least its compute time and its memory time, at most the larger one.
    assert np.all(times.time_s >= times.compute_s) and np.all(times.time_s >= times.memory_s)
    # No operator beats the chip's fastest peak or its memory bandwidth.
    total_compute_floor = result.total_flops / chip.peak_table().max()
    total_memory_floor = result.total_bytes / chip.memory_bandwidth_bytes_per_s
    assert np.all(result.total_time_s >= total_compute_floor * (1 - 1e-12))
    assert np.all(result.total_time_s >= total_memory_floor * (1 - 1e-12))


def _one(model="llama-2-7b", chip="a100-80gb", **kwargs):
    kwargs.setdefault("phase", "decode")
    kwargs.setdefault("batch", 1)
    kwargs.setdefault("seq_len", 1024)
    return analyze(make_configs(get_model(model), **kwargs), get_hardware(chip))


def test_projection_counts_by_hand():
    """Llama-2-7B prefill, batch 2, 100 tokens, bf16: q_proj = 2 * 200 * 4096 * 4096 FLOPs; bytes =
    weights 4096*4096*2 + input 200*4096*2 + output 200*4096*2."""
    ops = _one(phase="prefill", batch=2, seq_len=100).operators
    assert ops.flops[OP["q_proj"], 0] == 2 * 200 * 4096 * 4096
    assert ops.bytes[OP["q_proj"], 0] == 4096 * 4096 * 2 + 2 * 200 * 4096 * 2
    assert ops.kv_write_bytes[OP["k_proj"], 0] == 200 * 4096 * 2  # decoder: K goes to the cache
    assert ops.act_write_bytes[OP["k_proj"], 0] == 0


def test_gqa_shrinks_kv_projections_and_cache_reads():
    """Llama-2-70B has 8 KV heads of 64: k_proj is 8x smaller than q_proj, and a decode step reads
    8x less KV cache than the same model as MHA (kv_heads=64)."""
    gqa = _one("llama-2-70b").operators
    mha = analyze(
        make_configs(get_model("llama-2-70b"), phase="decode", batch=1, seq_len=1024, kv_heads=64),
        get_hardware("a100-80gb"),
    ).operators
    assert gqa.weight_bytes[OP["q_proj"], 0] == 8 * gqa.weight_bytes[OP["k_proj"], 0]
    assert mha.kv_read_bytes[OP["qk_matmul"], 0] == 8 * gqa.kv_read_bytes[OP["qk_matmul"], 0]
    assert mha.flops[OP["qk_matmul"], 0] == gqa.flops[OP["qk_matmul"], 0]  # same math per query head


def test_quantized_bytes_by_format():
    """int8 weights are half of bf16, int4 a quarter; KV bits scale only the KV traffic."""
    base = _one().operators
    w8 = _one(weight_dtype=INT8).operators
    w4 = _one(weight_dtype=INT4).operators
    kv8 = _one(kv_dtype=INT8).operators
    i = OP["down_proj"]
    assert w8.weight_bytes[i, 0] * 2 == base.weight_bytes[i, 0] == w4.weight_bytes[i, 0] * 4
    assert kv8.kv_read_bytes[OP["qk_matmul"], 0] * 2 == base.kv_read_bytes[OP["qk_matmul"], 0]
    assert kv8.weight_bytes[i, 0] == base.weight_bytes[i, 0]


def test_compute_peak_follows_the_wider_operand():
    """w8a16 still costs bf16 FLOPs; w8a8 runs at the int8 peak; int4 on H100 (no int4 units)
    runs at the int8 peak."""
    h100 = get_hardware("h100-sxm")
    peaks = h100.peak_table()
    w8a16 = _one(chip="h100-sxm", phase="prefill", seq_len=4096, weight_dtype=INT8)
    w8a8 = _one(chip="h100-sxm", phase="prefill", seq_len=4096, weight_dtype=INT8, act_dtype=INT8)
    w4a4 = _one(chip="h100-sxm", phase="prefill", seq_len=4096, weight_dtype=INT4, act_dtype=INT4)
    i = OP["up_proj"]
    assert w8a16.times.compute_s[i, 0] == w8a16.operators.flops[i, 0] / peaks[BF16]
    assert w8a8.times.compute_s[i, 0] == w8a8.operators.flops[i, 0] / h100.peak_ops_per_s.int8
    assert w4a4.times.compute_s[i, 0] == w4a4.operators.flops[i, 0] / h100.peak_ops_per_s.int8


def test_flash_attention_keeps_flops_and_drops_score_traffic():
    unfused = _one(phase="prefill", seq_len=4096, flash_attention=False, causal=False).operators
    fused = _one(phase="prefill", seq_len=4096, flash_attention=True, causal=False).operators
    unfused_flops = sum(unfused.flops[OP[n], 0] for n in ("qk_matmul", "softmax", "sv_matmul"))
    assert fused.flops[OP["fused_attention"], 0] == pytest.approx(unfused_flops)
    # Fused reads Q, K, V and writes O: 4 tensors of 4096 x 4096 bf16 (MHA).
    assert fused.bytes[OP["fused_attention"], 0] == 4 * 4096 * 4096 * 2
    assert not fused.present[OP["qk_matmul"], 0] and not unfused.present[OP["fused_attention"], 0]


def test_causal_counts_the_lower_triangle():
    full = _one(phase="prefill", seq_len=1000, causal=False).operators
    causal = _one(phase="prefill", seq_len=1000, causal=True).operators
    i = OP["qk_matmul"]
    assert causal.flops[i, 0] / full.flops[i, 0] == pytest.approx(1000 * 1001 / 2 / 1000**2)


def test_parallel_block_and_gelu_and_encoder_slots():
    palm = _one("palm-8b").operators  # parallel block, swiglu
    gpt2 = _one("gpt2").operators  # serial, gelu
    bert = _one("bert-base", phase="prefill").operators  # encoder
    assert not palm.present[OP["mlp_norm"], 0] and palm.present[OP["gate_proj"], 0]
    assert gpt2.present[OP["mlp_norm"], 0] and not gpt2.present[OP["gate_proj"], 0]
    assert bert.kv_write_bytes[:, 0].sum() == 0 and bert.kv_read_bytes[:, 0].sum() == 0
    assert not bert.present[OP["lm_head"], 0]


def test_memory_footprint_llama2_7b():
    """Weights: 6.74e9 parameters x 2 bytes (plus norm scales); KV cache: 2 x 32 layers x 4096 x
    2 bytes = 0.5 MiB per token."""
    result = _one(batch=4, seq_len=4096)
    assert result.weight_footprint_bytes[0] == pytest.approx(2 * get_model("llama-2-7b").params, rel=1e-3)
    assert result.kv_cache_footprint_bytes[0] == 4 * 4096 * 2 * 32 * 4096 * 2


def test_operator_names_match_issue():
    assert set(OPERATOR_NAMES) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "qk_matmul",
        "softmax",
        "sv_matmul",
        "fused_attention",
        "attn_norm",
        "mlp_norm",
        "attn_add",
        "mlp_add",
        "gate_proj",
        "up_proj",
        "down_proj",
        "mlp_act",
        "router",
        "expert_gate",
        "expert_up",
        "expert_act",
        "expert_down",
        "lm_head",
    }


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(batch=0), "batch"),
        (dict(seq_len=-5), "seq_len"),
        (dict(batch=1.5), "batch"),
        (dict(batch=np.nan), "batch"),
        (dict(kv_heads=5), "kv_heads"),
        (dict(phase="train"), "phase"),
        (dict(weight_dtype=9), "weight_dtype"),
    ],
)
def test_bad_configs_name_their_field(kwargs, field):
    args = dict(phase="decode", batch=1, seq_len=16) | kwargs
    with pytest.raises(InvalidInputError) as error:
        make_configs(get_model("llama-2-7b"), **args)
    assert error.value.field == field


def test_encoder_has_no_decode():
    with pytest.raises(InvalidInputError, match="encoder"):
        make_configs(get_model("bert-base"), phase="decode", batch=1, seq_len=16)


@settings(max_examples=30, deadline=None)
@given(config_columns())
def test_kv_traffic_only_in_the_kv_slots(columns):
    # The per-chip roofline skips the KV bytes of every other slot (cost_models.deployment.chip_roofline).
    from cost_models.operators import KV_READ_SLOTS, KV_WRITE_SLOTS, operator_costs

    ops = operator_costs(make_configs(**columns))
    others = [i for name, i in OP.items() if name not in (*KV_READ_SLOTS, *KV_WRITE_SLOTS)]
    assert not np.any(ops.kv_read_bytes[others]) and not np.any(ops.kv_write_bytes[others])
    assert not np.any(ops.kv_read_bytes[[OP[name] for name in KV_WRITE_SLOTS]])
    assert not np.any(ops.kv_write_bytes[[OP[name] for name in KV_READ_SLOTS]])


@settings(max_examples=30, deadline=None)
@given(config_columns())
def test_weightless_slots_have_no_weight_bytes(columns):
    # The per-chip roofline skips their weights (cost_models.deployment.chip_roofline); the
    # other weight slots of a decoder do have some (the check can fail).
    from cost_models.operators import WEIGHTLESS_SLOTS, operator_costs

    ops = operator_costs(make_configs(**columns))
    assert not np.any(ops.weight_bytes[[OP[name] for name in WEIGHTLESS_SLOTS]])
    assert np.all(ops.weight_bytes[OP["q_proj"]] > 0)


@settings(max_examples=30, deadline=None)
@given(config_columns())
def test_rows_read_alone_match_the_whole_tables(columns):
    # operator_costs hands the KV tables and repeats over as rows (operators._KvRows,
    # _RepeatRows); OperatorCosts builds the whole (slots, n) arrays only when read; the per-chip
    # roofline reads the rows alone (OperatorCosts.row).
    # Rows are read first (before the whole arrays exist), then compared with the whole ones.
    from cost_models.inference_configs import DECODE
    from cost_models.operators import operator_costs

    configs = make_configs(**columns)
    ops = operator_costs(configs)
    names = ("kv_read_bytes", "kv_write_bytes", "repeats")
    alone = {name: [ops.row(name, i).copy() for i in range(len(OPERATOR_NAMES))] for name in names}
    whole = {name: getattr(ops, name) for name in names}
    assert all(array.shape == (len(OPERATOR_NAMES), len(configs)) for array in whole.values())
    for name, rows in alone.items():
        np.testing.assert_array_equal(np.array(rows), whole[name])
        for i in range(len(OPERATOR_NAMES)):  # once built, row reads the whole array's rows
            assert ops.row(name, i).base is whole[name]
    # A decoding decoder writes its cache and reads it (the rows are not all zero).
    decode = configs.phase == DECODE
    for name in names[:2]:
        assert np.all(whole[name][:, decode].sum(axis=0) > 0)


def test_make_configs_checks_the_models_rows_use_as_it_checks_every_row() -> None:
    """make_configs checks the model fields on the models some row uses (the rows' values are
    theirs): a bad model no row uses passes, as every row's check passed it; a bad model in use
    fails with the message the rows' check gives (the first bad row's value); so does a kv_heads
    override that does not divide heads."""
    import cost_models.inference_configs as inference_configs

    good = get_model("llama-3-8b")
    bad = good.model_copy(update={"d_model": 0, "name": "bad"})
    odd = good.model_copy(update={"kv_heads": 5, "name": "odd"})
    kwargs = dict(phase="prefill", batch=np.array([1.0, 2.0, 4.0]), seq_len=128)
    configs = make_configs([good, bad], model_index=np.array([0, 0, 0]), **kwargs)
    assert configs.d_model.tolist() == [4096.0] * 3
    for models, message in (([good, bad], "got 0"), ([good, odd], r"heads \(32\) is not divisible by kv_heads \(5\)")):
        with pytest.raises(InvalidInputError, match=message):
            make_configs(models, model_index=np.array([0, 1, 0]), **kwargs)
    with pytest.raises(InvalidInputError, match=r"heads \(32\) is not divisible by kv_heads \(5\)"):
        make_configs([good], model_index=np.array([0, 0, 0]), kv_heads=np.array([8.0, 5.0, 8.0]), **kwargs)
    assert inference_configs._valid_model_fields(
        {name: np.array([1.0, 0.0]) for name in inference_configs._MODEL_FIELDS}, np.array([0, 0]), True
    ) == frozenset({*inference_configs._MODEL_FIELDS, inference_configs._HEADS_DIVIDE})


def test_model_columns_shared_by_every_used_model_are_filled_as_the_gather_gives() -> None:
    """make_configs fills a model field's column where every model some row uses has the same
    value (inference_configs._ModelColumn) instead of gathering it: the gather's bits (dtype,
    value, the sign of a zero), a gather where used models differ (here by a model no row uses
    being different: it is left out of the comparison), and the gather's wrap-around and
    errors where the index is not a 1-D array of valid rows."""
    from cost_models.inference_configs import _ModelColumn

    index = np.array([2, 0, 2, 2, 0])
    tables = {
        "equal in use": np.array([7.0, -1.0, 7.0]),  # model 1 unused: filled with 7.0
        "different": np.array([7.0, 7.0, 8.0]),
        "zeros of both signs": np.array([0.0, 5.0, -0.0]),
        "negative zero": np.array([-0.0, 5.0, -0.0]),
        "nan": np.array([np.nan, 1.0, np.nan]),
        "flags": np.array([True, False, True]),
        "int": np.array([3, 4, 3], dtype=np.int64),
    }
    column = _ModelColumn(index, 3)
    filled = {name: column(table) for name, table in tables.items()}
    for name, table in tables.items():
        expected = table[index]
        assert filled[name].dtype == expected.dtype and filled[name].tobytes() == expected.tobytes(), name
    assert filled["equal in use"].tolist() == [7.0] * 5
    assert np.signbit(filled["negative zero"]).all()
    # Not a 1-D array of valid rows: the gather itself (its wrap-around, its error).
    assert _ModelColumn(np.array([-1, 0]), 3)(tables["different"]).tolist() == [8.0, 7.0]
    assert _ModelColumn(np.array(2), 3)(tables["different"]).tolist() == 8.0
    with pytest.raises(IndexError):
        _ModelColumn(np.array([0, 3]), 3)(tables["different"])
    # In make_configs: dense models' MoE and MLA fields, and the decoder flag, are such fills.
    models = [get_model(name) for name in ("llama-3-8b", "gpt2", "mistral-7b")]
    configs = make_configs(models, model_index=index, phase="prefill", batch=1, seq_len=128)
    assert configs.experts.tolist() == [0.0] * 5 and configs.decoder.all()
    assert configs.d_model.tolist() == [m.d_model for m in (models[i] for i in index)]


def test_norms_and_residual_adds_stay_bf16_under_fp8_activations():
    """vLLM's --quantization fp8 quantizes each Linear layer's input to fp8 at run time
    (Fp8LinearMethod, dynamic scales); RMSNorm, the residual stream and its adds stay bf16. Llama-3-8B
    (d_model 4096) decoding one sequence: a norm reads and writes 4096 x 2 bytes and its scale 4096 x
    2; a residual add reads two inputs of 4096 x 2 and writes 4096 x 2, at fp8 activations as at bf16
    (before: 4096, 4096, 4096 and 8192 bytes). The GEMMs' inputs do shrink (q_proj reads 4096 x 1).
    LLM-Viewer's convention (yuan2024) keeps its a_byte for every activation."""
    from cost_models.conventions import YUAN2024
    from cost_models.operators import operator_costs

    configs = make_configs(get_model("llama-3-8b"), phase="decode", batch=1, seq_len=1024, act_dtype=FP8)
    ops = operator_costs(configs)
    d = 4096
    for norm in ("attn_norm", "mlp_norm"):
        assert ops.act_read_bytes[OP[norm], 0] == d * 2
        assert ops.act_write_bytes[OP[norm], 0] == d * 2
        assert ops.weight_bytes[OP[norm], 0] == d * 2
    for add in ("attn_add", "mlp_add"):
        assert ops.act_read_bytes[OP[add], 0] == 2 * d * 2
        assert ops.act_write_bytes[OP[add], 0] == d * 2
    assert ops.act_read_bytes[OP["q_proj"], 0] == d * 1
    viewer = operator_costs(configs, YUAN2024)
    assert viewer.act_read_bytes[OP["attn_norm"], 0] == d * 1
    assert viewer.act_read_bytes[OP["attn_add"], 0] == d * 1  # one input read (residual_add_reads 1)


def test_gemm_outputs_and_attention_output_stay_bf16_under_fp8_activations():
    """vLLM's, SGLang's and TensorRT-LLM's fp8 GEMMs quantize only their input and write bf16
    (vLLM: cutlass_scaled_mm(..., out_dtype=input.dtype)); FlashAttention 3 and FlashInfer write a
    bf16 output. Llama-3-8B (d_model 4096, 32 heads x 128, 8 KV heads, d_ff 14336) decoding one
    sequence at fp8 activations: q_proj reads 4096 x 1 bytes and writes 4096 x 2; out_proj and
    down_proj write 4096 x 2; gate and up write 14336 x 2, which the activation reads (2 x 14336
    x 2) before writing 14336 x 2; attention reads its query at 4096 x 2 over a bf16 cache and
    writes 4096 x 2 (before: every one of these at 1 byte an element). Over an fp8 cache the
    attention runs fp8 (its compute format) and reads an fp8 query, 4096 x 1, still writing bf16.
    LLM-Viewer's (yuan2024) and Kim et al.'s (kim2023) conventions keep 1 byte for all of them."""
    from cost_models.conventions import KIM2023, YUAN2024
    from cost_models.operators import operator_costs

    model = get_model("llama-3-8b")
    d, dq, dff = 4096, 4096, 14336
    kv = np.array([BF16, FP8])
    configs = make_configs(
        model, phase="decode", batch=1, seq_len=1024, act_dtype=FP8, kv_dtype=kv, flash_attention=True
    )
    ops = operator_costs(configs)
    for col in (0, 1):  # bf16 cache, fp8 cache
        assert ops.act_read_bytes[OP["q_proj"], col] == d * 1  # the GEMM's input: fp8
        assert ops.act_write_bytes[OP["q_proj"], col] == dq * 2
        assert ops.act_write_bytes[OP["out_proj"], col] == d * 2
        assert ops.act_write_bytes[OP["down_proj"], col] == d * 2
        assert ops.act_read_bytes[OP["down_proj"], col] == dff * 1
        for gemm in ("gate_proj", "up_proj"):
            assert ops.act_write_bytes[OP[gemm], col] == dff * 2
        assert ops.act_read_bytes[OP["mlp_act"], col] == 2 * dff * 2
        assert ops.act_write_bytes[OP["mlp_act"], col] == dff * 2
        assert ops.act_write_bytes[OP["fused_attention"], col] == dq * 2
    assert ops.act_read_bytes[OP["fused_attention"], 0] == dq * 2  # bf16 query over a bf16 cache
    assert ops.act_read_bytes[OP["fused_attention"], 1] == dq * 1  # fp8 query, fp8 attention
    # The cache itself: 1024 cached keys and values of 8 x 128, in its format.
    assert ops.kv_read_bytes[OP["fused_attention"], 0] == 2 * 1024 * 1024 * 2
    assert ops.kv_read_bytes[OP["fused_attention"], 1] == 2 * 1024 * 1024 * 1
    for paper in (YUAN2024, KIM2023):
        counted = operator_costs(configs, paper)
        assert counted.act_write_bytes[OP["q_proj"], 0] == dq * 1
        assert counted.act_write_bytes[OP["up_proj"], 0] == dff * 1
        assert counted.act_read_bytes[OP["mlp_act"], 0] == 2 * dff * 1
        assert counted.act_read_bytes[OP["fused_attention"], 0] == dq * 1
        assert counted.act_write_bytes[OP["fused_attention"], 0] == dq * 1


def test_expert_outputs_stay_bf16_under_fp8_activations():
    """An MoE block's expert GEMMs write bf16 under fp8 activations too (vLLM's fused_moe writes
    the w13 output in the input's dtype; silu_and_mul runs on it). Mixtral-8x7B (d_model 4096,
    expert d_ff 14336, top 2) prefilling 128 tokens: the gate and up experts write 128 x 2 x
    14336 x 2 bytes each, down writes 128 x 4096 x 2, the activation reads 2 x 128 x 2 x 14336
    x 2 (before: at 1 byte an element)."""
    from cost_models.operators import operator_costs

    configs = make_configs(get_model("mixtral-8x7b"), phase="prefill", batch=1, seq_len=128, act_dtype=FP8)
    ops = operator_costs(configs)
    tokens, d, routed = 128, 4096, 2 * 14336
    assert ops.act_read_bytes[OP["expert_gate"], 0] == tokens * d * 1
    assert ops.act_write_bytes[OP["expert_gate"], 0] == tokens * routed * 2
    assert ops.act_write_bytes[OP["expert_up"], 0] == tokens * routed * 2
    assert ops.act_write_bytes[OP["expert_down"], 0] == tokens * d * 2
    assert ops.act_read_bytes[OP["expert_act"], 0] == 2 * tokens * routed * 2
    assert ops.act_write_bytes[OP["expert_act"], 0] == tokens * routed * 2
