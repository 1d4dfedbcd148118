"""The shipped model and hardware catalogs: they load, hold the published numbers, and derive
parameter counts, attention types and peak-table fallbacks as the papers and datasheets say."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.dtypes import BF16, FP8, INT4, INT8
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, SwitchedInterconnect, TorusInterconnect, get_hardware, hardware_catalog
from cost_models.models import ModelSpec, get_model, model_catalog

MODEL_NAMES = [
    "bert-base",
    "bert-large",
    "gpt2",
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3-8b",
    "llama-3-70b",
    "mistral-7b",
    "palm-8b",
    "palm-62b",
    "palm-540b",
    "mt-nlg-530b",
]
HARDWARE_NAMES = [
    "tpu-v4",
    "tpu-v5e",
    "tpu-v5p",
    "a100-40gb",
    "a100-80gb",
    "h100-sxm",
    "h200",
    "a6000",
    "l4",
    "xeon-gold-6242",
]


def test_required_models_present_and_load() -> None:
    catalog = model_catalog()
    assert set(MODEL_NAMES) <= set(catalog)
    for name, spec in catalog.items():
        assert isinstance(spec, ModelSpec)
        assert spec.name == name
        assert spec.source
        assert spec is get_model(name)


def test_required_hardware_present_and_load() -> None:
    catalog = hardware_catalog()
    assert set(HARDWARE_NAMES) <= set(catalog)
    for name, spec in catalog.items():
        assert isinstance(spec, HardwareSpec)
        assert spec.name == name
        assert spec.source
        assert spec is get_hardware(name)
        assert spec.efficiency.compute == spec.efficiency.memory == spec.efficiency.network == 1.0


def test_unknown_names_raise_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="model"):
        get_model("no-such-model")
    with pytest.raises(InvalidInputError, match="hardware"):
        get_hardware("no-such-chip")


# Pope et al. 2022 (arXiv 2211.05102), Table D.1 and the authors' HParams; parameters per layer
# E*(3F + 2*H*d_head + 2*d_head) for SwiGLU multiquery, embedding V*E counted once -> 540.36e9.
PALM_540B = dict(
    layers=118,
    d_model=18432,
    d_ff=73728,
    heads=48,
    kv_heads=1,
    d_head=256,
    vocab=256128,
    ffn="swiglu",
    block="parallel",
)


def test_palm_540b_matches_pope_et_al() -> None:
    palm = get_model("palm-540b")
    for field, value in PALM_540B.items():
        assert getattr(palm, field) == value, field
    e, f, h, d, v = 18432, 73728, 48, 256, 256128
    assert palm.params_per_layer == e * (3 * f + 2 * h * d + 2 * d)
    assert palm.params == 118 * e * (3 * f + 2 * h * d + 2 * d) + v * e
    assert palm.params == pytest.approx(540.36e9, rel=1e-4)


@pytest.mark.parametrize(
    ("name", "published", "rel"),
    [
        # Touvron et al. 2023 (arXiv 2307.09288) / HF model card: 6,738,415,616 parameters; only
        # the RMSNorm scales (266k) are left out here.
        ("llama-2-7b", 6.74e9, 0.01),
        # HF Llama-2-70b-hf: 68.98e9 counting every matrix (norm scales left out here).
        ("llama-2-70b", 68.98e9, 0.001),
        # GPT-2 small: 124,439,808 parameters in the HF checkpoint; biases, LayerNorm and the
        # 1024 x 768 learned positional embedding are left out here (about 0.7% fewer).
        ("gpt2", 124.44e6, 0.03),
        # Meta Llama 3 model card: 8.03e9; Mistral 7B: 7.24e9.
        ("llama-3-8b", 8.03e9, 0.01),
        ("mistral-7b", 7.24e9, 0.01),
        # BERT: Devlin et al. 2019 quote 110M and 340M (including position/type embeddings,
        # biases and the pooler, left out here).
        ("bert-base", 110e6, 0.03),
        ("bert-large", 340e6, 0.03),
    ],
)
def test_parameter_counts_match_published(name: str, published: float, rel: float) -> None:
    assert get_model(name).params == pytest.approx(published, rel=rel)


def test_mt_nlg_matches_pope_et_al() -> None:
    # Pope et al. Table D.1: 105 layers, d_model 20480, d_ff 81920, 128 heads of 160, vocab 51200.
    mt = get_model("mt-nlg-530b")
    assert (mt.layers, mt.d_model, mt.d_ff, mt.heads, mt.kv_heads, mt.d_head, mt.vocab) == (
        105,
        20480,
        81920,
        128,
        128,
        160,
        51200,
    )
    assert (mt.ffn, mt.block) == ("gelu", "serial")
    assert mt.params == pytest.approx(530e9, rel=0.01)


@pytest.mark.parametrize(
    ("name", "attention"),
    [
        ("llama-2-70b", "GQA"),
        ("llama-3-8b", "GQA"),
        ("mistral-7b", "GQA"),
        ("palm-8b", "MQA"),
        ("palm-62b", "MQA"),
        ("palm-540b", "MQA"),
        ("bert-base", "MHA"),
        ("gpt2", "MHA"),
        ("llama-2-7b", "MHA"),
        ("mt-nlg-530b", "MHA"),
        ("deepseek-v3", "MLA"),
        ("kimi-k2", "MLA"),
        ("gpt-oss-120b", "GQA"),
    ],
)
def test_attention_types(name: str, attention: str) -> None:
    assert get_model(name).attention_type == attention


def test_encoders_and_decoders() -> None:
    for name, spec in model_catalog().items():
        assert spec.kind == ("encoder" if name.startswith("bert") else "decoder"), name
        assert spec.block == ("parallel" if name.startswith("palm") else "serial"), name


def test_d_head_times_heads_is_d_model_for_catalog() -> None:
    # True of every shipped model but PaLM 540B (48 x 256 = 12288 != 18432) and the Qwen3 models
    # whose config.json sets head_dim 128 wider than hidden / heads (32B: 64 x 128 = 8192 != 5120;
    # 235B-A22B: 64 x 128 = 8192 != 4096), gpt-oss (64 x 64 = 4096 != 2880), Gemma 3 27B
    # (32 x 128 = 4096 != 5376) and the MLA models, whose d_head is the non-rotary query/key width.
    exceptions = ("palm-540b", "qwen3-32b", "qwen3-235b-a22b", "gpt-oss-20b", "gpt-oss-120b", "gemma-3-27b")
    for name, spec in model_catalog().items():
        if name not in exceptions and not spec.is_mla:
            assert spec.heads * spec.d_head == spec.d_model, name


# Reference hardware numbers used verbatim: Pope et al. 2022 (TPU v4, A100 80GB) and
# Yuan et al. 2024 (arXiv 2402.16363, A6000).
def test_tpu_v4_matches_pope_et_al() -> None:
    tpu = get_hardware("tpu-v4")
    assert tpu.kind == "tpu"
    assert tpu.peak_ops_per_s.bf16 == 275.0e12
    assert tpu.peak_ops_per_s.int8 == 275.0e12
    assert tpu.memory_bytes == 34359738368
    assert tpu.memory_bandwidth_bytes_per_s == 1.2e12
    ici = tpu.interconnect
    assert isinstance(ici, TorusInterconnect)
    assert ici.dims == 3
    assert ici.link_bandwidth_bytes_per_s == 45.0e9
    assert 2 * ici.dims * ici.link_bandwidth_bytes_per_s == 270.0e9  # "270 GB/s interconnect"
    assert ici.max_chips == 4096
    assert ici.wraparound_min_axis == 4


def test_a100_80gb_matches_pope_et_al() -> None:
    gpu = get_hardware("a100-80gb")
    assert gpu.peak_ops_per_s.bf16 == 312.0e12
    assert gpu.memory_bandwidth_bytes_per_s == 2.039e12
    assert gpu.memory_bytes == 85899345920
    net = gpu.interconnect
    assert isinstance(net, SwitchedInterconnect)
    assert net.domain_size == 8
    assert 2 * net.domain_bandwidth_bytes_per_s == 600.0e9  # NVLink, bidirectional total


def test_a6000_matches_yuan_et_al() -> None:
    gpu = get_hardware("a6000")
    assert gpu.memory_bandwidth_bytes_per_s == 768.0e9
    assert gpu.peak_ops_per_s.bf16 == 154.84e12
    assert gpu.peak_ops_per_s.int8 == 309.7e12
    # Yuan et al.: ridge points 201.6 (fp16) and 403.3 (int8) ops/byte.
    assert gpu.ridge_point_ops_per_byte == pytest.approx(201.6, abs=0.05)
    assert gpu.peak_table()[INT8] / gpu.memory_bandwidth_bytes_per_s == pytest.approx(403.3, abs=0.05)


def test_peak_table_fallbacks() -> None:
    h100 = get_hardware("h100-sxm").peak_table()
    assert h100[INT4] == h100[INT8] == 1978.9e12  # Hopper has no int4 tensor cores
    assert h100[FP8] == 1978.9e12 and h100[BF16] == 989.4e12
    assert not get_hardware("h100-sxm").has_format(INT4)
    tpu = get_hardware("tpu-v4").peak_table()
    assert tpu[FP8] == tpu[BF16] == 275.0e12  # no fp8 on TPU v4: runs in bf16
    assert not get_hardware("tpu-v4").has_format(FP8)
    a100 = get_hardware("a100-80gb").peak_table()
    assert a100[FP8] == a100[BF16] and a100[INT4] == 1248.0e12


def test_hardware_sanity() -> None:
    for name, hw in hardware_catalog().items():
        table = hw.peak_table()
        # Narrower formats are never slower than bf16 (dense peaks, no sparsity doubling), but for
        # Blackwell Ultra's int8, which NVIDIA cut to 125 TOP/s per GPU (test_hardware_chips).
        narrower = table if name != "b300" else np.delete(table, [INT8, INT4])
        assert narrower.min() == table[BF16], name
        assert table[INT4] >= table[INT8], name
        net = hw.interconnect
        if hw.kind == "tpu":
            assert isinstance(net, TorusInterconnect), name
        else:
            assert isinstance(net, SwitchedInterconnect), name
            assert net.network_bandwidth_bytes_per_s <= net.domain_bandwidth_bytes_per_s, name
    assert get_hardware("l4").interconnect.domain_size == 1
    assert get_hardware("xeon-gold-6242").interconnect.domain_size == 1
    assert get_hardware("h200").peak_ops_per_s == get_hardware("h100-sxm").peak_ops_per_s
