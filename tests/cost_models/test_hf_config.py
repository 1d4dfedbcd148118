"""Hugging Face config.json -> ModelSpec: each supported family maps to the expected shapes (and
to the catalog entry where there is one), and every malformed config raises InvalidInputError
naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cost_models.errors import InvalidInputError
from cost_models.hf_config import SUPPORTED_MODEL_TYPES, model_from_hf_config
from cost_models.models import ModelSpec, get_model

# Copies of the published config.json files (Hugging Face Hub), trimmed of nothing.
LLAMA_2_7B = {  # meta-llama/Llama-2-7b-hf
    "_name_or_path": "meta-llama/Llama-2-7b-hf",
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.31.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}
MISTRAL_7B = {  # mistralai/Mistral-7B-v0.1
    "architectures": ["MistralForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}
GPT2 = {  # openai-community/gpt2 (no n_inner key: defaults to 4 * n_embd)
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "n_layer": 12,
    "n_positions": 1024,
    "resid_pdrop": 0.1,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "vocab_size": 50257,
}
BERT_BASE = {  # google-bert/bert-base-uncased
    "architectures": ["BertForMaskedLM"],
    "attention_probs_dropout_prob": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "transformers_version": "4.6.0.dev0",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}
PYTHIA_160M = {  # EleutherAI/pythia-160m
    "architectures": ["GPTNeoXForCausalLM"],
    "bos_token_id": 0,
    "eos_token_id": 0,
    "hidden_act": "gelu",
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 2048,
    "model_type": "gpt_neox",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "rotary_emb_base": 10000,
    "rotary_pct": 0.25,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.24.0",
    "use_cache": True,
    "use_parallel_residual": True,
    "vocab_size": 50304,
}
QWEN2_0_5B = {  # Qwen/Qwen2-0.5B (tied embeddings, GQA 14:2)
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 131072,
    "max_window_layers": 24,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

SHAPE_FIELDS = (
    "layers",
    "d_model",
    "heads",
    "kv_heads",
    "d_head",
    "d_ff",
    "ffn",
    "block",
    "vocab",
    "kind",
    "tie_embeddings",
    "sliding_window",
    "sliding_window_layers",
    "max_context",
)


def write_config(tmp_path: Path, config: Any, folder: str = "model") -> Path:
    """Write ``config`` as ``<tmp_path>/<folder>/config.json`` and return the file's path."""
    directory = tmp_path / folder
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return path


def shapes(spec: ModelSpec) -> dict[str, Any]:
    return {field: getattr(spec, field) for field in SHAPE_FIELDS}


@pytest.mark.parametrize(
    ("config", "catalog_name"),
    [(LLAMA_2_7B, "llama-2-7b"), (MISTRAL_7B, "mistral-7b"), (GPT2, "gpt2"), (BERT_BASE, "bert-base")],
)
def test_families_match_catalog(tmp_path: Path, config: dict[str, Any], catalog_name: str) -> None:
    spec = model_from_hf_config(write_config(tmp_path, config))
    assert shapes(spec) == shapes(get_model(catalog_name))
    assert spec.params == get_model(catalog_name).params


def test_llama_fields(tmp_path: Path) -> None:
    path = write_config(tmp_path, LLAMA_2_7B)
    spec = model_from_hf_config(path)
    assert spec.name == "meta-llama/Llama-2-7b-hf"  # from _name_or_path
    assert spec.source == f"config.json at {path}"
    assert (spec.ffn, spec.block, spec.kind, spec.attention_type) == ("swiglu", "serial", "decoder", "MHA")


def test_mistral_is_gqa_and_named_after_folder(tmp_path: Path) -> None:
    spec = model_from_hf_config(write_config(tmp_path, MISTRAL_7B, folder="Mistral-7B-v0.1"))
    assert spec.name == "Mistral-7B-v0.1"  # no _name_or_path: the folder's name
    assert (spec.kv_heads, spec.attention_type) == (8, "GQA")


def test_gpt2_defaults(tmp_path: Path) -> None:
    spec = model_from_hf_config(write_config(tmp_path, GPT2))
    assert spec.d_ff == 4 * 768  # n_inner absent -> 4 * n_embd
    assert spec.tie_embeddings and spec.kind == "decoder" and spec.ffn == "gelu"
    spec = model_from_hf_config(write_config(tmp_path, {**GPT2, "n_inner": 2048}, folder="inner"))
    assert spec.d_ff == 2048


def test_bert_is_tied_encoder(tmp_path: Path) -> None:
    spec = model_from_hf_config(write_config(tmp_path, BERT_BASE))
    assert (spec.kind, spec.ffn, spec.tie_embeddings, spec.d_head) == ("encoder", "gelu", True, 64)


def test_gpt_neox_block_kinds(tmp_path: Path) -> None:
    spec = model_from_hf_config(write_config(tmp_path, PYTHIA_160M))
    assert shapes(spec) == dict(
        layers=12,
        d_model=768,
        heads=12,
        kv_heads=12,
        d_head=64,
        d_ff=3072,
        ffn="gelu",
        block="parallel",
        vocab=50304,
        kind="decoder",
        tie_embeddings=False,
        sliding_window=0,
        sliding_window_layers=0,
        max_context=2048,
    )
    serial = {**PYTHIA_160M, "use_parallel_residual": False}
    assert model_from_hf_config(write_config(tmp_path, serial, folder="s")).block == "serial"
    default = {k: v for k, v in PYTHIA_160M.items() if k != "use_parallel_residual"}
    assert model_from_hf_config(write_config(tmp_path, default, folder="d")).block == "parallel"


def test_qwen2(tmp_path: Path) -> None:
    spec = model_from_hf_config(write_config(tmp_path, QWEN2_0_5B))
    assert (spec.layers, spec.d_model, spec.heads, spec.kv_heads, spec.d_head) == (24, 896, 14, 2, 64)
    assert spec.tie_embeddings and spec.attention_type == "GQA"
    # Qwen2-0.5B: 494e6 parameters on its model card (biases and norms are left out here).
    assert spec.params == pytest.approx(494e6, rel=0.01)


def test_llama_defaults_and_explicit_head_dim(tmp_path: Path) -> None:
    config = {k: v for k, v in LLAMA_2_7B.items() if k not in ("num_key_value_heads", "tie_word_embeddings")}
    spec = model_from_hf_config(write_config(tmp_path, config))
    assert spec.kv_heads == spec.heads == 32 and not spec.tie_embeddings
    spec = model_from_hf_config(write_config(tmp_path, {**LLAMA_2_7B, "head_dim": 96}, folder="hd"))
    assert spec.d_head == 96
    spec = model_from_hf_config(write_config(tmp_path, {**LLAMA_2_7B, "head_dim": None}, folder="hn"))
    assert spec.d_head == 128


def test_directory_path_and_get_model(tmp_path: Path) -> None:
    path = write_config(tmp_path, MISTRAL_7B, folder="mistral")
    by_dir = model_from_hf_config(path.parent)
    assert by_dir.name == "mistral" and shapes(by_dir) == shapes(get_model("mistral-7b"))
    assert shapes(get_model(str(path))) == shapes(get_model("mistral-7b"))
    assert shapes(get_model(str(path.parent))) == shapes(get_model("mistral-7b"))


def test_supported_model_types() -> None:
    assert {
        "llama",
        "llama4",
        "llama4_text",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen3",
        "qwen2_moe",
        "qwen3_moe",
        "deepseek_v2",
        "deepseek_v3",
        "kimi_k2",
        "kimi_k25",
        "glm4_moe",
        "gpt_oss",
        "gemma2",
        "gemma3",
        "gemma3_text",
        "phi3",
        "falcon",
        "gpt2",
        "bert",
        "gpt_neox",
    } == set(SUPPORTED_MODEL_TYPES)


def _without(config: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != key}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ("{not json", "config.json"),
        ("", "config.json"),
        ("[1, 2, 3]", "config.json"),
        ('"llama"', "config.json"),
        (_without(LLAMA_2_7B, "model_type"), "config.json:model_type"),
        ({**LLAMA_2_7B, "model_type": "t5"}, "config.json:model_type"),
        ({**LLAMA_2_7B, "model_type": 7}, "config.json:model_type"),
        (_without(LLAMA_2_7B, "num_hidden_layers"), "config.json:num_hidden_layers"),
        (_without(LLAMA_2_7B, "hidden_size"), "config.json:hidden_size"),
        (_without(LLAMA_2_7B, "intermediate_size"), "config.json:intermediate_size"),
        (_without(LLAMA_2_7B, "vocab_size"), "config.json:vocab_size"),
        ({**LLAMA_2_7B, "hidden_size": "4096"}, "config.json:hidden_size"),
        ({**LLAMA_2_7B, "hidden_size": 4096.5}, "config.json:hidden_size"),
        ({**LLAMA_2_7B, "num_hidden_layers": True}, "config.json:num_hidden_layers"),
        ({**LLAMA_2_7B, "num_attention_heads": 0}, "config.json:num_attention_heads"),
        ({**LLAMA_2_7B, "vocab_size": -5}, "config.json:vocab_size"),
        ({**LLAMA_2_7B, "head_dim": 0}, "config.json:head_dim"),
        ({**LLAMA_2_7B, "num_key_value_heads": 5}, "config.json:num_key_value_heads"),
        ({**LLAMA_2_7B, "num_attention_heads": 30}, "config.json:num_attention_heads"),
        ({**LLAMA_2_7B, "tie_word_embeddings": "yes"}, "config.json:tie_word_embeddings"),
        (_without(GPT2, "n_layer"), "config.json:n_layer"),
        ({**GPT2, "n_head": 10}, "config.json:n_head"),
        ({**GPT2, "n_inner": 0}, "config.json:n_inner"),
        (_without(BERT_BASE, "num_attention_heads"), "config.json:num_attention_heads"),
        (_without(PYTHIA_160M, "intermediate_size"), "config.json:intermediate_size"),
        ({**PYTHIA_160M, "use_parallel_residual": 1}, "config.json:use_parallel_residual"),
    ],
)
def test_malformed_configs_raise(tmp_path: Path, config: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        model_from_hf_config(write_config(tmp_path, config))
    error = raised.value
    assert error.field == field
    message = str(error)
    assert message.startswith(field) and "\n" not in message
    assert error.fix  # always says what to do


def test_unknown_model_type_lists_supported(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="llama.*mistral") as raised:
        model_from_hf_config(write_config(tmp_path, {**LLAMA_2_7B, "model_type": "t5"}))
    assert "'t5'" in str(raised.value)


def test_missing_file_raises(tmp_path: Path) -> None:
    for path in (tmp_path / "absent" / "config.json", tmp_path / "empty-dir", tmp_path / "absent"):
        if path.name == "empty-dir":
            path.mkdir()
        with pytest.raises(InvalidInputError, match="config.json") as raised:
            model_from_hf_config(path)
        assert "\n" not in str(raised.value)
    with pytest.raises(InvalidInputError):
        get_model(str(tmp_path / "absent" / "config.json"))


def test_unreadable_bytes_raise(tmp_path: Path) -> None:
    path = tmp_path / "bin" / "config.json"
    path.parent.mkdir()
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidInputError):
        model_from_hf_config(path)


def test_config_files_of_any_name_are_named_after_their_stem(tmp_path: Path) -> None:
    """Two configs saved side by side (configs/llama.json, configs/mistral.json: neither has
    _name_or_path) were both named "configs", the folder: every table was titled "configs on
    ..." and tuner init gave both studies one name. A config.json keeps its folder's name."""
    folder = tmp_path / "configs"
    folder.mkdir()
    config = {k: v for k, v in MISTRAL_7B.items() if k != "_name_or_path"}
    (folder / "mistral-7b.json").write_text(json.dumps(config))
    (folder / "my-mistral.json").write_text(json.dumps(config))
    assert model_from_hf_config(folder / "mistral-7b.json").name == "mistral-7b"
    assert model_from_hf_config(folder / "my-mistral.json").name == "my-mistral"
    assert model_from_hf_config(write_config(tmp_path, config, folder="Mistral-7B-v0.1")).name == "Mistral-7B-v0.1"
