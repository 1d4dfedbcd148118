"""Every supported Hugging Face family, read from a published config.json (tests/fixtures/hf/,
sources in its README), field by field. Expected numbers are typed from the config files (and,
for defaults the files leave out, from the transformers config class named in the comment), never
computed by the importer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cost_models import get_model
from cost_models.errors import InvalidInputError
from cost_models.hf_config import model_from_hf_config

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hf"

DENSE = dict(
    experts=0,
    experts_per_token=0,
    expert_d_ff=0,
    shared_experts=0,
    shared_expert_d_ff=None,
    dense_layers=0,
    moe_layer_step=1,
    kv_lora_rank=0,
    q_lora_rank=0,
    qk_rope_head_dim=0,
    v_head_dim=0,
    sliding_window=0,
    sliding_window_layers=0,
    checkpoint_format=None,
    mxfp4_experts=False,
    fp8_block_scales=False,
    vision_params=0,
    checkpoint_16bit_attention_layers=0,
    checkpoint_16bit_mlp_layers=0,
    checkpoint_16bit_shared_expert_layers=0,
    checkpoint_scale_bytes_per_weight=0.0,
    kind="decoder",
    block="serial",
    ffn="swiglu",
)

EXPECTED: dict[str, dict[str, Any]] = {
    "llama": dict(
        DENSE,
        layers=32,
        d_model=4096,
        heads=32,
        kv_heads=8,
        d_head=128,
        d_ff=14336,
        vocab=128256,
        tie_embeddings=False,
        max_context=131072,
    ),
    # text_config; dense blocks (none here: moe_layers 0..47) would be intermediate_size_mlp wide;
    # chunked attention (8192) on the 36 RoPE blocks of no_rope_layers [1, 1, 1, 0] x 12.
    "llama4": dict(
        DENSE,
        vision_params=871_303_040,  # vision_config: test_vision_encoder_parameters_from_vision_config
        layers=48,
        d_model=5120,
        heads=40,
        kv_heads=8,
        d_head=128,
        d_ff=16384,
        vocab=202048,
        tie_embeddings=False,
        max_context=262144,
        experts=16,
        experts_per_token=1,
        expert_d_ff=8192,
        shared_experts=1,
        sliding_window=8192,
        sliding_window_layers=36,
    ),
    "mistral": dict(
        DENSE,
        layers=32,
        d_model=4096,
        heads=32,
        kv_heads=8,
        d_head=128,
        d_ff=14336,
        vocab=32000,
        tie_embeddings=False,
        max_context=32768,
        sliding_window=4096,
        sliding_window_layers=32,
    ),
    "mixtral": dict(
        DENSE,
        layers=32,
        d_model=4096,
        heads=32,
        kv_heads=8,
        d_head=128,
        d_ff=14336,
        vocab=32000,
        tie_embeddings=False,
        max_context=32768,
        experts=8,
        experts_per_token=2,
        expert_d_ff=14336,
    ),
    # sliding_window 131072 is off (use_sliding_window false).
    "qwen2": dict(
        DENSE,
        layers=24,
        d_model=896,
        heads=14,
        kv_heads=2,
        d_head=64,
        d_ff=4864,
        vocab=151936,
        tie_embeddings=True,
        max_context=131072,
    ),
    "qwen3": dict(
        DENSE,
        layers=36,
        d_model=4096,
        heads=32,
        kv_heads=8,
        d_head=128,
        d_ff=12288,
        vocab=151936,
        tie_embeddings=False,
        max_context=40960,
    ),
    # 40 heads over 10 KV heads; sliding_window 2047 < max_position_embeddings 4096 on every block.
    "phi3_medium": dict(
        DENSE,
        layers=40,
        d_model=5120,
        heads=40,
        kv_heads=10,
        d_head=128,
        d_ff=17920,
        vocab=32064,
        tie_embeddings=False,
        max_context=4096,
        sliding_window=2047,
        sliding_window_layers=40,
    ),
    "qwen3_fp8": dict(
        DENSE,
        layers=36,
        d_model=4096,
        heads=32,
        kv_heads=8,
        d_head=128,
        d_ff=12288,
        vocab=151936,
        tie_embeddings=False,
        max_context=40960,
        checkpoint_format="fp8",
        fp8_block_scales=True,  # quant_method fp8, weight_block_size [128, 128]
    ),
    "qwen2_moe": dict(
        DENSE,
        layers=24,
        d_model=2048,
        heads=16,
        kv_heads=16,
        d_head=128,
        d_ff=5632,
        vocab=151936,
        tie_embeddings=False,
        max_context=8192,
        experts=60,
        experts_per_token=4,
        expert_d_ff=1408,
        shared_experts=1,
        shared_expert_d_ff=5632,
    ),
    "qwen3_moe": dict(
        DENSE,
        layers=94,
        d_model=4096,
        heads=64,
        kv_heads=4,
        d_head=128,
        d_ff=12288,
        vocab=151936,
        tie_embeddings=False,
        max_context=40960,
        experts=128,
        experts_per_token=8,
        expert_d_ff=1536,
    ),
    # MLA: d_head = qk_nope_head_dim, kv_heads = heads.
    "deepseek_v3": dict(
        DENSE,
        layers=61,
        d_model=7168,
        heads=128,
        kv_heads=128,
        d_head=128,
        d_ff=18432,
        vocab=129280,
        tie_embeddings=False,
        max_context=163840,
        experts=256,
        experts_per_token=8,
        expert_d_ff=2048,
        shared_experts=1,
        dense_layers=3,
        kv_lora_rank=512,
        q_lora_rank=1536,
        qk_rope_head_dim=64,
        v_head_dim=128,
        checkpoint_format="fp8",
        fp8_block_scales=True,  # quant_method fp8, weight_block_size [128, 128]
    ),
    # Kimi K2 ships model_type kimi_k2 (architecture DeepseekV3ForCausalLM): DeepSeek-V3's MLA with
    # 64 heads and 384 experts, 1 dense block.
    "kimi_k2": dict(
        DENSE,
        layers=61,
        d_model=7168,
        heads=64,
        kv_heads=64,
        d_head=128,
        d_ff=18432,
        vocab=163840,
        tie_embeddings=False,
        max_context=131072,
        experts=384,
        experts_per_token=8,
        expert_d_ff=2048,
        shared_experts=1,
        dense_layers=1,
        kv_lora_rank=512,
        q_lora_rank=1536,
        qk_rope_head_dim=64,
        v_head_dim=128,
        checkpoint_format="fp8",
        fp8_block_scales=True,  # quant_method fp8, weight_block_size [128, 128]
    ),
    "deepseek_v2": dict(
        DENSE,
        layers=60,
        d_model=5120,
        heads=128,
        kv_heads=128,
        d_head=128,
        d_ff=12288,
        vocab=102400,
        tie_embeddings=False,
        max_context=163840,
        experts=160,
        experts_per_token=6,
        expert_d_ff=1536,
        shared_experts=2,
        dense_layers=1,
        kv_lora_rank=512,
        q_lora_rank=1536,
        qk_rope_head_dim=64,
        v_head_dim=128,
    ),
    "glm4_moe": dict(
        DENSE,
        layers=46,
        d_model=4096,
        heads=96,
        kv_heads=8,
        d_head=128,
        d_ff=10944,
        vocab=151552,
        tie_embeddings=False,
        max_context=131072,
        experts=128,
        experts_per_token=8,
        expert_d_ff=1408,
        shared_experts=1,
        dense_layers=1,
    ),
    "gpt_oss": dict(
        DENSE,
        layers=36,
        d_model=2880,
        heads=64,
        kv_heads=8,
        d_head=64,
        d_ff=2880,
        vocab=201088,
        tie_embeddings=False,
        max_context=131072,
        experts=128,
        experts_per_token=4,
        expert_d_ff=2880,
        sliding_window=128,
        sliding_window_layers=18,
        checkpoint_format="fp4",
        mxfp4_experts=True,  # quant_method mxfp4: only the experts (modules_to_not_convert)
    ),
    # GeGLU counts as 3 matrices ("swiglu"); every other block windowed: 21 of 42; tied (Gemma2Config default).
    "gemma2": dict(
        DENSE,
        layers=42,
        d_model=3584,
        heads=16,
        kv_heads=8,
        d_head=256,
        d_ff=14336,
        vocab=256000,
        tie_embeddings=True,
        max_context=8192,
        sliding_window=4096,
        sliding_window_layers=21,
    ),
    # vocab 262208, 131072 positions, pattern 6 are Gemma3TextConfig defaults: 62 - 62 // 6 = 52 local blocks.
    "gemma3": dict(
        DENSE,
        vision_params=422_659_584,  # vision_config: test_vision_encoder_parameters_from_vision_config
        layers=62,
        d_model=5376,
        heads=32,
        kv_heads=16,
        d_head=128,
        d_ff=21504,
        vocab=262208,
        tie_embeddings=True,
        max_context=131072,
        sliding_window=1024,
        sliding_window_layers=52,
    ),
    "phi3": dict(
        DENSE,
        layers=32,
        d_model=3072,
        heads=32,
        kv_heads=32,
        d_head=96,
        d_ff=8192,
        vocab=32064,
        tie_embeddings=False,
        max_context=4096,
        sliding_window=2047,
        sliding_window_layers=32,
    ),
    # Falcon-180B: GQA 232:8, GELU MLP of 4 x 14848 (FalconConfig default), parallel block, tied; no
    # max_position_embeddings in the file: unknown (0).
    "falcon": dict(
        DENSE,
        layers=80,
        d_model=14848,
        heads=232,
        kv_heads=8,
        d_head=64,
        d_ff=59392,
        vocab=65024,
        tie_embeddings=True,
        max_context=0,
        ffn="gelu",
        block="parallel",
    ),
    "falcon_7b": dict(
        DENSE,
        layers=32,
        d_model=4544,
        heads=71,
        kv_heads=1,
        d_head=64,
        d_ff=18176,
        vocab=65024,
        tie_embeddings=True,
        max_context=0,
        ffn="gelu",
        block="parallel",
    ),
    "gpt2": dict(
        DENSE,
        layers=12,
        d_model=768,
        heads=12,
        kv_heads=12,
        d_head=64,
        d_ff=3072,
        vocab=50257,
        tie_embeddings=True,
        max_context=1024,
        ffn="gelu",
    ),
    "bert": dict(
        DENSE,
        layers=12,
        d_model=768,
        heads=12,
        kv_heads=12,
        d_head=64,
        d_ff=3072,
        vocab=30522,
        tie_embeddings=True,
        max_context=512,
        ffn="gelu",
        kind="encoder",
    ),
    "gpt_neox": dict(
        DENSE,
        layers=12,
        d_model=768,
        heads=12,
        kv_heads=12,
        d_head=64,
        d_ff=3072,
        vocab=50304,
        tie_embeddings=False,
        max_context=2048,
        ffn="gelu",
        block="parallel",
    ),
}


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_every_fixture_is_checked_and_listed_in_the_readme() -> None:
    files = {path.stem for path in FIXTURES.glob("*.json")}
    assert files == set(EXPECTED)
    readme = (FIXTURES / "README.md").read_text()
    assert all(f"{name}.json" in readme for name in files)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_family_field_by_field(name: str) -> None:
    spec = model_from_hf_config(FIXTURES / f"{name}.json")
    got = spec.model_dump(exclude={"name", "source"})
    assert got == EXPECTED[name]


@pytest.mark.parametrize(
    ("name", "total", "active", "rel"),
    [
        ("mixtral", 46.7e9, 12.9e9, 2e-3),  # Mistral AI: 46.7B, 12.9B active
        ("qwen3_moe", 235e9, 22e9, 1.5e-2),  # model card
        # OpenAI gpt-oss model card: 116.83B total, 5.13B active without the input embedding
        # (201088 x 2880), which the active count here includes.
        ("gpt_oss", 116.83e9, 5.13e9 + 201088 * 2880, 2e-2),
        ("llama4", 109e9, 17e9, 2e-2),  # Meta: Scout 109B total, 17B active
        ("falcon", 180e9, 180e9, 2e-2),  # TII: 180B
        ("gemma3", 27e9, 27e9, 3e-2),  # Google: 27B (with the 0.4B vision tower, not counted here)
        # Z.ai: GLM-4.5-Air 106B total; its "12B active" leaves out embeddings, so only the total.
        ("glm4_moe", 106e9, None, 3e-2),
    ],
)
def test_parameters_match_the_model_cards(name: str, total: float, active: float | None, rel: float) -> None:
    """The MoE layout read (shared experts, dense blocks) lands on the published sizes."""
    spec = model_from_hf_config(FIXTURES / f"{name}.json")
    assert spec.params == pytest.approx(total, rel=rel)
    if active is not None:
        assert spec.active_params == pytest.approx(active, rel=rel)


#: Catalog models whose Hub repository a fixture was transcribed from (fixtures/hf/README.md).
CATALOG_OF_FIXTURE = {
    "llama": "llama-3.1-8b",
    "mistral": "mistral-7b",
    "mixtral": "mixtral-8x7b",
    "qwen3": "qwen3-8b",
    "qwen3_moe": "qwen3-235b-a22b",
    "deepseek_v3": "deepseek-v3",  # DeepSeek-R1's config: the same architecture
    "kimi_k2": "kimi-k2",
    "gpt_oss": "gpt-oss-120b",
    "gemma3": "gemma-3-27b",
    "llama4": "llama-4-scout-17b-16e",
    "gpt2": "gpt2",
}


@pytest.mark.parametrize("fixture", sorted(CATALOG_OF_FIXTURE))
def test_catalog_entry_is_its_published_config(fixture: str) -> None:
    """`--model NAME` and `--model path/to/its/config.json` are the same model, field by field
    (windows and trained context included: the catalog's Mistral 7B lacked v0.1's 4096-token
    window, and most entries their context). Llama 4 Scout's fixture is its first release, whose
    max_position_embeddings (262144) a later revision raised to the catalog's 10485760."""
    read_back = model_from_hf_config(FIXTURES / f"{fixture}.json").model_dump(exclude={"name", "source"})
    catalog = get_model(CATALOG_OF_FIXTURE[fixture]).model_dump(exclude={"name", "source"})
    if fixture == "llama4":
        assert (read_back.pop("max_context"), catalog.pop("max_context")) == (262144, 10485760)
    # The catalog's entries are the language models; a config.json's vision_config adds its
    # vision encoder's parameters to the memory (test_vision_encoder_parameters_from_vision_config).
    assert catalog.pop("vision_params") == 0
    assert read_back.pop("vision_params") == {"gemma3": 422_659_584, "llama4": 871_303_040}.get(fixture, 0)
    # The catalog's Qwen3-235B-A22B carries the block scales of Qwen's published -FP8 checkpoint,
    # which tuner export serves for fp8 weights ("fine-grained fp8 quantization with block size of
    # 128", its model card; the qwen3_fp8 fixture, Qwen/Qwen3-8B-FP8's config.json, reads so); its
    # 16-bit config.json has no quantization_config.
    assert catalog.pop("fp8_block_scales") == (fixture == "qwen3_moe" or read_back["fp8_block_scales"])
    read_back.pop("fp8_block_scales")
    assert read_back == catalog


def read(tmp_path: Path, config: dict[str, Any], folder: str = "m"):
    directory = tmp_path / folder
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return model_from_hf_config(directory / "config.json")


# --- quantization_config -> checkpoint_format -------------------------------------------------


@pytest.mark.parametrize(
    ("quant", "expected"),
    [
        ({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm", "zero_point": True}, "int4"),
        ({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}, "int4"),
        ({"quant_method": "gptq", "bits": 8, "group_size": 128}, "int8"),
        ({"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}, "fp8"),
        ({"quant_method": "mxfp4"}, "fp4"),
        ({"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16}, "fp4"),
        ({"quant_method": "modelopt", "quant_algo": "FP8"}, "fp8"),
    ],
)
def test_quantization_config_sets_checkpoint_format(tmp_path: Path, quant: dict, expected: str) -> None:
    assert read(tmp_path, {**load("llama"), "quantization_config": quant}).checkpoint_format == expected


def _compressed(*schemes: tuple[int, str]) -> dict:
    groups = {
        f"group_{i}": {"targets": ["Linear"], "weights": {"num_bits": bits, "type": kind, "group_size": 32}}
        for i, (bits, kind) in enumerate(schemes)
    }
    return {"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": groups}


@pytest.mark.parametrize(
    ("schemes", "expected"),
    [([(4, "int")], "int4"), ([(8, "int")], "int8"), ([(8, "float")], "fp8"), ([(4, "float"), (4, "float")], "fp4")],
)
def test_compressed_tensors_weight_schemes(tmp_path: Path, schemes: list, expected: str) -> None:
    """Kimi K2 Thinking / K2.5 ship int4 weights (num_bits 4, type int, group 32) this way."""
    config = {**load("kimi_k2"), "quantization_config": _compressed(*schemes)}
    assert read(tmp_path, config).checkpoint_format == expected


@pytest.mark.parametrize(
    "quant",
    [
        _compressed((4, "int"), (8, "float")),
        _compressed((3, "int")),
        _compressed((4, "nf")),
        {"quant_method": "compressed-tensors", "config_groups": {}},
        {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": [4], "type": "int"}}}},
        {"quant_method": "compressed-tensors", "config_groups": {"g": "int4"}},
    ],
)
def test_compressed_tensors_unreadable_schemes_are_refused(tmp_path: Path, quant: dict) -> None:
    with pytest.raises(InvalidInputError) as raised:
        read(tmp_path, {**load("llama"), "quantization_config": quant})
    assert raised.value.field == "config.json:quantization_config.config_groups" and "\n" not in str(raised.value)


QUANT_FIXTURES = FIXTURES.parent / "hf_quantization"


def test_kimi_k2_thinking_16_bit_modules_are_read_from_the_ignore_list(tmp_path: Path) -> None:
    """Kimi K2 Thinking's compressed-tensors config quantizes only the routed experts to int4
    (group 32): its ignore list keeps attention (61 blocks), the shared experts (the 60 MoE
    blocks) and the dense block's MLP (block 0) bf16, and each int4 weight carries a bf16 scale
    per 32 (2/32 B). It was refused (e3acc0e); the bytes these give are checked against the
    checkpoint's shapes in tests/cost_models/test_mixed_checkpoint.py."""
    quant = json.loads((QUANT_FIXTURES / "kimi_k2_thinking.json").read_text())
    spec = read(tmp_path, {**load("kimi_k2"), "quantization_config": quant})
    assert spec.checkpoint_format == "int4"
    assert spec.checkpoint_16bit_attention_layers == 61
    assert spec.checkpoint_16bit_mlp_layers == 1
    assert spec.checkpoint_16bit_shared_expert_layers == 60
    assert spec.checkpoint_scale_bytes_per_weight == 2 / 32


@pytest.mark.parametrize(
    ("key", "entry", "counts"),
    [
        ("ignore", "re:.*self_attn", (61, 0, 0)),  # RedHat's Llama 4 w4a16 checkpoints
        ("ignore", "Llama4TextAttention", (61, 0, 0)),  # a class name: every block's attention
        ("ignore", "re:.*shared_experts.*", (0, 0, 60)),
        ("exclude_modules", "model.layers.0.self_attn*", (1, 0, 0)),  # ModelOpt
        ("modules_to_not_convert", "model.layers.0", (1, 1, 0)),  # a whole dense block
    ],
)
def test_16_bit_modules_are_read_by_class_and_block(tmp_path: Path, key: str, entry: str, counts: tuple) -> None:
    quant = {"quant_method": "fp8", "fmt": "e4m3", key: ["lm_head", entry]}
    spec = read(tmp_path, {**load("kimi_k2"), "quantization_config": quant})
    got = (
        spec.checkpoint_16bit_attention_layers,
        spec.checkpoint_16bit_mlp_layers,
        spec.checkpoint_16bit_shared_expert_layers,
    )
    assert got == counts and spec.checkpoint_scale_bytes_per_weight == 0.0


@pytest.mark.parametrize(
    ("key", "entry", "words"),
    [
        ("ignored_layers", "re:.*kv_a_proj_with_mqa$", "only some of block 0's attention"),  # vLLM fp8
        ("modules_to_not_convert", "model.layers.5", "routed experts of block 5"),  # a whole MoE block
        ("modules_to_not_convert", "model.layers.*.mlp.experts", "routed experts"),
        ("ignore", "re:.*qkv_proj", "names no whole attention"),  # a fused projection this model lacks
    ],
)
def test_16_bit_modules_not_modelled_are_refused(tmp_path: Path, key: str, entry: str, words: str) -> None:
    quant = {"quant_method": "fp8", "fmt": "e4m3", key: ["lm_head", entry]}
    with pytest.raises(InvalidInputError) as raised:
        read(tmp_path, {**load("kimi_k2"), "quantization_config": quant})
    message = str(raised.value)
    assert raised.value.field == f"config.json:quantization_config.{key}"
    assert entry in message and words in message and "\n" not in message


@pytest.mark.parametrize(
    "entry",
    [
        "lm_head",
        "re:.*lm_head.*",
        "model.embed_tokens",
        "re:.*gate$",  # DeepSeek / Kimi routers
        "e_score_correction_bias",
        "model.layers.3.mlp.gate",
        "re:.*block_sparse_moe.gate",  # Mixtral's router
        "re:.*shared_expert_gate",  # Qwen2-MoE: one d_model vector
        "model.layers.*.mlp.router",
        "re:.*vision_tower.*",
        "re:.*mm_projector.*",
        "re:multi_modal_projector.*",
        "model.layers.61*",  # DeepSeek's MTP block, past the 61 costed (num_hidden_layers)
        "re:.*norm.*",
    ],
)
def test_exclusions_of_modules_not_costed_in_the_format_are_read(tmp_path: Path, entry: str) -> None:
    """The lm_head and embedding are 16-bit in every format here; routers, norms and vision
    modules are not charged in the weights' format: listing them changes nothing costed."""
    quant = {"quant_method": "fp8", "fmt": "e4m3", "modules_to_not_convert": [entry]}
    assert read(tmp_path, {**load("kimi_k2"), "quantization_config": quant}).checkpoint_format == "fp8"


def test_kimi_k25_nests_kimi_k2_in_text_config(tmp_path: Path) -> None:
    text = {k: v for k, v in load("kimi_k2").items() if k != "quantization_config"}
    config = {"model_type": "kimi_k25", "text_config": text, "quantization_config": _compressed((4, "int"))}
    spec = read(tmp_path, config)
    assert (spec.experts, spec.kv_lora_rank, spec.checkpoint_format) == (384, 512, "int4")


@pytest.mark.parametrize(
    ("quant", "field"),
    [
        ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "config.json:quantization_config.quant_method"),
        ({"bits": 4}, "config.json:quantization_config.quant_method"),
        ({"quant_method": "awq", "bits": 3}, "config.json:quantization_config.bits"),
        ({"quant_method": "gptq", "bits": True}, "config.json:quantization_config.bits"),
        ({"quant_method": "modelopt", "quant_algo": "W4A8_AWQ"}, "config.json:quantization_config.quant_algo"),
        ("fp8", "config.json:quantization_config"),
    ],
)
def test_unknown_quantization_is_refused_naming_the_field(tmp_path: Path, quant: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        read(tmp_path, {**load("llama"), "quantization_config": quant})
    assert raised.value.field == field and "\n" not in str(raised.value) and raised.value.fix


def test_unknown_quant_method_lists_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="fp8, awq, gptq, mxfp4, modelopt, compressed-tensors"):
        read(tmp_path, {**load("llama"), "quantization_config": {"quant_method": "hqq"}})


# --- refusals: cost-changing fields that are not modelled -------------------------------------


@pytest.mark.parametrize(
    ("family", "key", "value"),
    [
        ("llama", "num_local_experts", 8),
        ("mistral", "num_local_experts", 8),
        ("qwen3", "num_experts", 64),
        ("gemma3", "num_experts", 64),
        ("phi3", "moe_intermediate_size", 1024),
        ("falcon", "n_routed_experts", 16),
    ],
)
def test_experts_in_a_dense_family_are_refused(tmp_path: Path, family: str, key: str, value: int) -> None:
    config = load(family)
    target = config.get("text_config", config)
    target[key] = value
    with pytest.raises(InvalidInputError, match="dense family") as raised:
        read(tmp_path, config)
    assert raised.value.field == f"config.json:{key}"


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ({**load("qwen3_moe"), "model_type": "qwen3_next"}, "config.json:model_type", "linear-attention"),
        ({**load("llama"), "model_type": "nemotron_h"}, "config.json:model_type", "hybrid_override_pattern"),
        ({**load("llama"), "hybrid_override_pattern": "M-M-M*-"}, "config.json:hybrid_override_pattern", "state-space"),
        (
            {
                **load("qwen3"),
                "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"] * 9,
            },
            "config.json:layer_types",
            "linear_attention",
        ),
        ({**load("gpt_oss"), "layer_types": ["sliding_attention"] * 3}, "config.json:layer_types", "36"),
    ],
)
def test_hybrid_layers_are_refused_by_name(tmp_path: Path, config: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words) as raised:
        read(tmp_path, config)
    assert raised.value.field == field and "\n" not in str(raised.value)


def _with_layer_types(config: dict[str, Any], kinds: list[str]) -> dict[str, Any]:
    """``config`` with ``layer_types`` where its family reads its fields (a multimodal config's
    text_config)."""
    if "text_config" in config:
        return {**config, "text_config": {**config["text_config"], "layer_types": kinds}}
    return {**config, "layer_types": kinds}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_family_refuses_a_linear_attention_layer(tmp_path: Path, name: str) -> None:
    """Whether a family reads layer_types (the windowed ones) or not (llama, DeepSeek, gpt2, ...),
    a block of a kind it does not model is refused by name, never costed as softmax attention."""
    layers = int(model_from_hf_config(FIXTURES / f"{name}.json").layers)
    kinds = ["full_attention"] * (layers - 1) + ["linear_attention"]
    with pytest.raises(InvalidInputError, match="linear_attention") as raised:
        read(tmp_path, _with_layer_types(load(name), kinds))
    assert raised.value.field == "config.json:layer_types" and "\n" not in str(raised.value)


@pytest.mark.parametrize("name", ["llama", "deepseek_v3", "glm4_moe", "falcon", "gpt2", "gpt_neox"])
def test_families_without_windows_refuse_windowed_layers_and_read_full_ones(tmp_path: Path, name: str) -> None:
    """These readers take no sliding window: a sliding_attention block would be costed as full
    attention, so it is refused; a layer_types of full_attention alone is what they model."""
    spec = model_from_hf_config(FIXTURES / f"{name}.json")
    layers = int(spec.layers)
    with pytest.raises(InvalidInputError, match="sliding_attention"):
        read(tmp_path, _with_layer_types(load(name), ["sliding_attention"] * layers))
    assert read(tmp_path, _with_layer_types(load(name), ["full_attention"] * layers)) == spec.model_copy(
        update={"name": "m", "source": read(tmp_path, load(name)).source}
    )


def test_llama4_layer_types_may_name_its_chunked_blocks(tmp_path: Path) -> None:
    """Llama 4's configs mark their RoPE blocks chunked_attention (charged from no_rope_layers)."""
    spec = model_from_hf_config(FIXTURES / "llama4.json")
    kinds = ["chunked_attention", "chunked_attention", "chunked_attention", "full_attention"] * (int(spec.layers) // 4)
    got = read(tmp_path, _with_layer_types(load("llama4"), kinds))
    assert (got.sliding_window, got.sliding_window_layers) == (spec.sliding_window, spec.sliding_window_layers)


@pytest.mark.parametrize("key", ["kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim"])
def test_mla_config_missing_its_ranks(tmp_path: Path, key: str) -> None:
    config = {k: v for k, v in load("deepseek_v3").items() if k != key}
    with pytest.raises(InvalidInputError, match="MLA") as raised:
        read(tmp_path, config)
    assert raised.value.field == f"config.json:{key}"


def test_unknown_family_lists_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="deepseek_v3.*falcon.*gemma3.*gpt_oss.*llama4") as raised:
        read(tmp_path, {**load("llama"), "model_type": "t5"})
    assert raised.value.field == "config.json:model_type"


def test_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    spec = read(tmp_path, {**load("llama"), "_name_or_path": "evil\x1b[2J\x07name\nline"})
    assert spec.name == "evil?[2J?name?line"
    with pytest.raises(InvalidInputError) as raised:
        read(tmp_path, {**load("llama"), "model_type": "bad\x1b[31m"})
    assert "\x1b" not in str(raised.value)
    with pytest.raises(InvalidInputError) as raised:
        read(tmp_path, {**load("llama"), "quantization_config": {"quant_method": "q\x1b]0;x\x07"}})
    assert "\x1b" not in str(raised.value) and "\x07" not in str(raised.value)


# --- layouts the fixtures do not show -----------------------------------------------------------


def test_llama4_maverick_interleaved_moe_and_default_rope_layers(tmp_path: Path) -> None:
    """Maverick: interleave_moe_layer_step 2, 128 experts; without moe_layers/no_rope_layers the
    transformers defaults apply (MoE on blocks 1, 3, ...; RoPE on 3 of every 4)."""
    config = load("llama4")
    text = config["text_config"]
    for key in ("moe_layers", "no_rope_layers"):
        del text[key]
    text |= {"interleave_moe_layer_step": 2, "num_local_experts": 128}
    spec = read(tmp_path, config)
    assert (spec.experts, spec.dense_layers, spec.d_ff, spec.expert_d_ff) == (128, 24, 16384, 8192)
    assert spec.moe_layer_step == 2  # interleaved: a pipeline stage holds half of each kind
    assert (spec.sliding_window, spec.sliding_window_layers) == (8192, 36)
    assert spec.params == pytest.approx(400e9, rel=2e-2)  # Meta: Maverick 400B total
    assert spec.active_params == pytest.approx(17e9, rel=3e-2)  # 17B active


def test_gemma_layer_types_and_pattern(tmp_path: Path) -> None:
    config = load("gemma3")
    config["text_config"]["sliding_window_pattern"] = 2
    assert read(tmp_path, config).sliding_window_layers == 31
    config = load("gemma2")
    config["layer_types"] = ["sliding_attention"] * 40 + ["full_attention"] * 2
    assert read(tmp_path, config, "g2").sliding_window_layers == 40


def test_gemma3_text_config_fields_left_out_take_gemma3textconfig_defaults(tmp_path: Path) -> None:
    """transformers saves a nested text_config as its difference from Gemma3TextConfig's defaults
    (heads 8, KV heads 4, head_dim 256, sliding_window 4096, ...: transformers
    models/gemma3/configuration_gemma3.py), and reads an absent field as that default. google/
    gemma-3-12b-it's text_config has no head_dim: 256, not hidden 3840 / 16 heads = 240;
    gemma-3-4b-it's has no heads either: 8 heads, 4 KV heads of 256. Parameters by hand (blocks'
    matrices plus the tied embedding, 262208 x hidden), the keras-hub presets' counts
    (gemma3_12b_text 11,765,788,416, gemma3_4b_text 3,880,099,328) being these with vocab 262144
    and the norm scales."""
    config = load("gemma3")
    config["text_config"] = {
        "hidden_size": 3840,
        "intermediate_size": 15360,
        "model_type": "gemma3_text",
        "num_attention_heads": 16,
        "num_hidden_layers": 48,
        "num_key_value_heads": 8,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    }
    spec = read(tmp_path, config, "g12")
    assert (spec.heads, spec.kv_heads, spec.d_head) == (16, 8, 256)
    assert spec.params == 48 * (3840 * 256 * (2 * 16 + 2 * 8) + 3 * 3840 * 15360) + 262208 * 3840  # 11,765,268,480
    config["text_config"] = {
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "model_type": "gemma3_text",
        "num_hidden_layers": 34,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    }
    spec = read(tmp_path, config, "g4")
    assert (spec.heads, spec.kv_heads, spec.d_head) == (8, 4, 256)
    assert spec.params == 34 * (2560 * 256 * (2 * 8 + 2 * 4) + 3 * 2560 * 10240) + 262208 * 2560  # 3,879,895,040
    assert (spec.sliding_window, spec.sliding_window_layers) == (1024, 34 - 34 // 6)
    del config["text_config"]["sliding_window"]  # absent: Gemma3TextConfig's 4096
    assert read(tmp_path, config, "g4w").sliding_window == 4096


def test_window_no_shorter_than_the_context_is_no_window(tmp_path: Path) -> None:
    """Phi-3-mini-128k: sliding_window 262144 over 131072 positions caps nothing."""
    spec = read(tmp_path, {**load("phi3"), "sliding_window": 262144, "max_position_embeddings": 131072})
    assert (spec.sliding_window, spec.sliding_window_layers) == (0, 0)


def test_qwen_sliding_window_from_max_window_layers(tmp_path: Path) -> None:
    spec = read(
        tmp_path, {**load("qwen2"), "use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 20}
    )
    assert (spec.sliding_window, spec.sliding_window_layers) == (4096, 4)


def test_deepseek_v2_lite_full_rank_query_and_moe_layer_freq(tmp_path: Path) -> None:
    spec = read(tmp_path, {**load("deepseek_v2"), "q_lora_rank": None, "moe_layer_freq": 2})
    assert spec.q_lora_rank == 0
    assert spec.dense_layers == 60 - 29  # MoE where i >= 1 and i % 2 == 0: blocks 2, 4, ..., 58 (29)
    dense = read(tmp_path, {**load("deepseek_v2"), "n_routed_experts": None}, "dense")
    assert (dense.experts, dense.dense_layers, dense.kv_lora_rank) == (0, 0, 512)


def test_falcon_block_and_attention_follow_the_config(tmp_path: Path) -> None:
    spec = read(tmp_path, {**load("falcon_7b"), "multi_query": False, "parallel_attn": False})
    assert (spec.kv_heads, spec.block) == (71, "serial")
    spec = read(tmp_path, {**load("falcon_7b"), "ffn_hidden_size": 1000}, "ffn")
    assert spec.d_ff == 1000
