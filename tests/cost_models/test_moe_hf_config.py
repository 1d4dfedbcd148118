"""config.json import of the MoE and newer dense families, and the catalog entries they match.

Configs are small JSON objects written here with the published numbers of each family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cost_models.errors import InvalidInputError
from cost_models.hf_config import model_from_hf_config
from cost_models.models import get_model

MIXTRAL_8X7B = {
    "model_type": "mixtral",
    "_name_or_path": "mistralai/Mixtral-8x7B-v0.1",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "vocab_size": 32000,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "max_position_embeddings": 32768,
}
QWEN3_235B = {
    "model_type": "qwen3_moe",
    "_name_or_path": "Qwen/Qwen3-235B-A22B",
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "moe_intermediate_size": 1536,
    "num_hidden_layers": 94,
    "num_attention_heads": 64,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "vocab_size": 151936,
    "use_sliding_window": False,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "max_position_embeddings": 40960,
}
# Qwen1.5-MoE-A2.7B (HF Qwen/Qwen1.5-MoE-A2.7B config.json): 60 experts of 1408, top-4, one shared
# expert of 5632; 24 layers, hidden 2048, 16 heads, vocab 151936.
QWEN2_MOE = {
    "model_type": "qwen2_moe",
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "moe_intermediate_size": 1408,
    "shared_expert_intermediate_size": 5632,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "num_experts": 60,
    "num_experts_per_tok": 4,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "vocab_size": 151936,
    "use_sliding_window": False,
    "sliding_window": 32768,
    "tie_word_embeddings": False,
}
QWEN3_8B = {
    "model_type": "qwen3",
    "_name_or_path": "Qwen/Qwen3-8B",
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "use_sliding_window": False,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "max_position_embeddings": 40960,
}


def _load(tmp_path: Path, config: dict):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return model_from_hf_config(path)


def _shape(model) -> dict:
    # fp8_block_scales: the catalog's Qwen3 entries carry the block scales of Qwen's published -FP8
    # checkpoint (tuner export serves it for fp8 weights), which a 16-bit config.json has not
    # (test_hf_families.test_catalog_entry_is_its_published_config checks it).
    return model.model_dump(exclude={"name", "source", "fp8_block_scales"})


def test_mixtral_config_matches_the_catalog_and_the_paper(tmp_path: Path) -> None:
    model = _load(tmp_path, MIXTRAL_8X7B)
    assert (model.experts, model.experts_per_token, model.expert_d_ff) == (8, 2, 14336)
    assert _shape(model) == _shape(get_model("mixtral-8x7b"))
    assert model.params == pytest.approx(46.7e9, rel=2e-3)
    assert model.active_params == pytest.approx(12.9e9, rel=2e-3)


def test_qwen3_moe_config_matches_the_catalog_and_the_model_card(tmp_path: Path) -> None:
    model = _load(tmp_path, QWEN3_235B)
    assert (model.experts, model.experts_per_token, model.expert_d_ff, model.shared_experts) == (128, 8, 1536, 0)
    assert _shape(model) == _shape(get_model("qwen3-235b-a22b"))
    assert model.params == pytest.approx(235e9, rel=5e-3)
    assert model.active_params == pytest.approx(22e9, rel=1.5e-2)  # card: 22B (by hand 22.14B)


def test_qwen2_moe_shared_expert(tmp_path: Path) -> None:
    """Qwen1.5-MoE-A2.7B: 14.3B total, 2.7B active (model card), by hand with the shared expert."""
    model = _load(tmp_path, QWEN2_MOE)
    assert (model.shared_experts, model.shared_expert_d_ff, model.shared_d_ff) == (1, 5632, 5632)
    attention = 2048 * 128 * (2 * 16 + 2 * 16)
    routed, shared = 3 * 2048 * 1408, 3 * 2048 * 5632
    router = 2048 * 60
    embed = 2 * 151936 * 2048
    assert model.params == 24 * (attention + 60 * routed + shared + router) + embed
    assert model.active_params == 24 * (attention + 4 * routed + shared + router) + embed
    assert model.params == pytest.approx(14.3e9, rel=1e-2)
    assert model.active_params == pytest.approx(2.7e9, rel=3e-2)


def test_qwen3_dense_config_matches_the_catalog(tmp_path: Path) -> None:
    model = _load(tmp_path, QWEN3_8B)
    assert not model.is_moe and model.d_head == 128
    assert _shape(model) == _shape(get_model("qwen3-8b"))
    assert model.params == pytest.approx(8.19e9, rel=2e-3)  # card: 8.2B


@pytest.mark.parametrize(
    "config,field",
    [
        ({**QWEN3_235B, "decoder_sparse_step": 0}, "decoder_sparse_step"),
        ({**QWEN3_235B, "mlp_only_layers": ["a"]}, "mlp_only_layers"),
        ({**QWEN3_235B, "mlp_only_layers": list(range(94))}, "num_hidden_layers"),
        ({**QWEN3_8B, "num_experts": 8}, "num_experts"),
        ({k: v for k, v in MIXTRAL_8X7B.items() if k != "num_local_experts"}, "num_local_experts"),
        ({**QWEN3_235B, "num_experts_per_tok": 200}, "experts_per_token"),
        ({"model_type": "deepseek_v3", "hidden_size": 7168}, "kv_lora_rank"),
    ],
)
def test_unmodelled_or_bad_fields_are_one_line_errors_naming_them(tmp_path: Path, config: dict, field: str) -> None:
    with pytest.raises(InvalidInputError) as error:
        _load(tmp_path, config)
    message = str(error.value)
    assert field in message and "\n" not in message


def test_qwen_moe_dense_blocks_from_sparse_step_and_mlp_only_layers(tmp_path: Path) -> None:
    """transformers' Qwen3MoeDecoderLayer: MoE when i not in mlp_only_layers and (i+1) % step == 0."""
    sparse = _load(tmp_path, {**QWEN3_235B, "decoder_sparse_step": 2})
    assert (sparse.dense_layers, sparse.moe_layer_step) == (47, 2)  # interleaved, not 47 dense first
    dense_first = _load(tmp_path, {**QWEN3_235B, "mlp_only_layers": [0, 5]})
    assert (dense_first.dense_layers, dense_first.moe_layer_step) == (2, 1)


def test_mixtral_window_on_every_block(tmp_path: Path) -> None:
    model = _load(tmp_path, {**MIXTRAL_8X7B, "sliding_window": 4096, "max_position_embeddings": 32768})
    assert (model.sliding_window, model.sliding_window_layers, model.max_context) == (4096, 32, 32768)


def test_qwen_window_from_max_window_layers(tmp_path: Path) -> None:
    config = {**QWEN3_8B, "use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 28}
    config["max_position_embeddings"] = 40960
    model = _load(tmp_path, config)
    assert (model.sliding_window, model.sliding_window_layers) == (4096, 36 - 28)


def test_deepseek_v3_names_mla(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="MLA"):
        _load(tmp_path, {"model_type": "deepseek_v3"})


@pytest.mark.parametrize(
    "name,total,active",
    [
        ("mixtral-8x7b", 46.7e9, 12.9e9),
        ("mixtral-8x22b", 141e9, 39e9),  # Mistral AI: 141B, 39B active
        ("qwen3-235b-a22b", 235e9, 22e9),
        ("qwen3-32b", 32.8e9, 32.8e9),
        ("llama-3.1-8b", 8.03e9, 8.03e9),
        ("llama-3.1-70b", 70.6e9, 70.6e9),
        ("llama-3.1-405b", 405.9e9, 405.9e9),
    ],
)
def test_catalog_params_match_the_model_cards(name: str, total: float, active: float) -> None:
    model = get_model(name)
    assert model.params == pytest.approx(total, rel=1e-2)
    assert model.active_params == pytest.approx(active, rel=1.5e-2)
