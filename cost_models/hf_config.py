"""Build a :class:`ModelSpec` from a Hugging Face ``config.json`` on disk.

Lets users cost any model whose config they have without adding it to the catalog. Nothing is
downloaded. Only families whose shapes map cleanly onto :class:`ModelSpec` are accepted; every
problem (missing file, bad JSON, unknown family, missing or bad field) raises
:class:`InvalidInputError` naming the field, so the CLI can print one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cost_models.errors import InvalidInputError, from_validation_error
from cost_models.models import ModelSpec

_FILE = "config.json"


def _field(key: str) -> str:
    return f"{_FILE}:{key}"


def _positive_int(config: dict[str, Any], key: str, default: Any = None) -> int:
    """``config[key]`` as a positive int; ``default`` when absent or null (None: required)."""
    value = config.get(key)
    if value is None:
        if default is None:
            raise InvalidInputError(_field(key), "missing", f"add {key} (a positive integer)")
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(_field(key), f"expected an integer, got {value!r}", "use a positive integer")
    if value <= 0:
        raise InvalidInputError(_field(key), f"must be positive, got {value}", "use a positive integer")
    return value


def _flag(config: dict[str, Any], key: str, default: bool) -> bool:
    """``config[key]`` as a bool, ``default`` when absent or null."""
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInputError(_field(key), f"expected true or false, got {value!r}", "use true or false")
    return value


def _head_dim(hidden_key: str, heads_key: str, d_model: int, heads: int) -> int:
    """Width of one head: d_model / heads, which must divide evenly."""
    if d_model % heads != 0:
        raise InvalidInputError(
            _field(heads_key),
            f"{hidden_key} ({d_model}) is not divisible by {heads_key} ({heads})",
            "use a head count that divides the hidden size, or set head_dim",
        )
    return d_model // heads


def _llama(config: dict[str, Any]) -> dict[str, Any]:
    """Llama, Mistral and Qwen2: GQA, SwiGLU, serial blocks, untied unless the config says so."""
    d_model = _positive_int(config, "hidden_size")
    heads = _positive_int(config, "num_attention_heads")
    head_dim = config.get("head_dim")
    d_head = (
        _positive_int(config, "head_dim")
        if head_dim is not None
        else _head_dim("hidden_size", "num_attention_heads", d_model, heads)
    )
    kv_heads = _positive_int(config, "num_key_value_heads", default=heads)
    if heads % kv_heads != 0:
        raise InvalidInputError(
            _field("num_key_value_heads"),
            f"num_attention_heads ({heads}) is not divisible by num_key_value_heads ({kv_heads})",
            "use a num_key_value_heads that divides num_attention_heads",
        )
    return dict(
        layers=_positive_int(config, "num_hidden_layers"),
        d_model=d_model,
        heads=heads,
        kv_heads=kv_heads,
        d_head=d_head,
        d_ff=_positive_int(config, "intermediate_size"),
        ffn="swiglu",
        block="serial",
        vocab=_positive_int(config, "vocab_size"),
        kind="decoder",
        tie_embeddings=_flag(config, "tie_word_embeddings", False),
    )


def _gelu_mha(
    *,
    layers: str,
    hidden: str,
    heads: str,
    d_ff: str,
    kind: str,
    tied: bool,
    d_ff_factor: int | None = None,
    parallel_key: str | None = None,
):
    """A reader for a multihead, GELU-MLP family, given its config keys: GPT-2 (d_ff defaults to
    d_ff_factor x hidden, tied lm_head), BERT (encoder, tied MLM decoder), GPT-NeoX / Pythia
    (parallel residual unless ``parallel_key`` is false, untied)."""

    def read(config: dict[str, Any]) -> dict[str, Any]:
        d_model = _positive_int(config, hidden)
        n_heads = _positive_int(config, heads)
        default_ff = d_ff_factor * d_model if d_ff_factor else None
        parallel = parallel_key is not None and _flag(config, parallel_key, True)
        return dict(
            layers=_positive_int(config, layers),
            d_model=d_model,
            heads=n_heads,
            kv_heads=n_heads,
            d_head=_head_dim(hidden, heads, d_model, n_heads),
            d_ff=_positive_int(config, d_ff, default=default_ff),
            ffn="gelu",
            block="parallel" if parallel else "serial",
            vocab=_positive_int(config, "vocab_size"),
            kind=kind,
            tie_embeddings=_flag(config, "tie_word_embeddings", tied),
        )

    return read


_gpt2 = _gelu_mha(
    layers="n_layer", hidden="n_embd", heads="n_head", d_ff="n_inner", d_ff_factor=4, kind="decoder", tied=True
)
_bert = _gelu_mha(
    layers="num_hidden_layers",
    hidden="hidden_size",
    heads="num_attention_heads",
    d_ff="intermediate_size",
    kind="encoder",
    tied=True,
)
_gpt_neox = _gelu_mha(
    layers="num_hidden_layers",
    hidden="hidden_size",
    heads="num_attention_heads",
    d_ff="intermediate_size",
    kind="decoder",
    tied=False,
    parallel_key="use_parallel_residual",
)


def _refuse_unmodelled(config: dict[str, Any], keys: dict[str, Callable[[Any], bool]]) -> None:
    """Raise naming the first key whose value changes the cost in a way not modelled yet."""
    for key, modelled in keys.items():
        value = config.get(key)
        if value is not None and not modelled(value):
            raise InvalidInputError(
                _field(key), f"{value!r} is not modelled yet", f"remove {key} or set it to its default"
            )


def _qwen3(config: dict[str, Any]) -> dict[str, Any]:
    """Qwen3 (dense): Llama's shapes with an explicit head_dim (q/k norms cost nothing here)."""
    _refuse_unmodelled(config, {"use_sliding_window": lambda v: v is False})
    return _llama(config)


def _moe_every_layer(config: dict[str, Any]) -> None:
    """Qwen MoE configs can make some blocks dense (``decoder_sparse_step``, ``mlp_only_layers``);
    only MoE in every block is read (dense *first* blocks are DeepSeek's first_k_dense_replace)."""
    _refuse_unmodelled(config, {"decoder_sparse_step": lambda v: v == 1, "mlp_only_layers": lambda v: v == []})


def _mixtral(config: dict[str, Any]) -> dict[str, Any]:
    """Mixtral: Mistral attention, every block's FFN num_local_experts SwiGLU experts of
    intermediate_size, num_experts_per_tok of them per token."""
    _refuse_unmodelled(config, {"sliding_window": lambda v: False})
    fields = _llama(config)
    experts = _positive_int(config, "num_local_experts")
    return dict(
        fields,
        experts=experts,
        experts_per_token=_positive_int(config, "num_experts_per_tok"),
        expert_d_ff=fields["d_ff"],
    )


def _qwen_moe(config: dict[str, Any]) -> dict[str, Any]:
    """Qwen2-MoE and Qwen3-MoE: num_experts routed experts of moe_intermediate_size in every
    block, top num_experts_per_tok; Qwen2-MoE adds one shared expert of
    shared_expert_intermediate_size (its sigmoid gate, d_model x 1, is left out)."""
    _refuse_unmodelled(config, {"use_sliding_window": lambda v: v is False})
    _moe_every_layer(config)
    fields = _llama(config)
    shared = config.get("shared_expert_intermediate_size")
    moe = dict(
        experts=_positive_int(config, "num_experts"),
        experts_per_token=_positive_int(config, "num_experts_per_tok"),
        expert_d_ff=_positive_int(config, "moe_intermediate_size"),
    )
    if shared is not None and shared != 0:
        moe |= dict(shared_experts=1, shared_expert_d_ff=_positive_int(config, "shared_expert_intermediate_size"))
    return dict(fields, **moe)


def _deepseek_v3(config: dict[str, Any]) -> dict[str, Any]:
    raise InvalidInputError(
        _field("model_type"),
        "deepseek_v3 uses multi-head latent attention (MLA), which is not modelled yet",
        "use a GQA model (mixtral, qwen3_moe, qwen2_moe) until MLA lands",
    )


_FAMILIES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "llama": _llama,
    "mistral": _llama,
    "qwen2": _llama,
    "qwen3": _qwen3,
    "mixtral": _mixtral,
    "qwen2_moe": _qwen_moe,
    "qwen3_moe": _qwen_moe,
    "deepseek_v3": _deepseek_v3,
    "gpt2": _gpt2,
    "bert": _bert,
    "gpt_neox": _gpt_neox,
}

#: ``model_type`` values that :func:`model_from_hf_config` understands.
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(set(_FAMILIES) - {"deepseek_v3"}))


def _read(path: Path) -> tuple[Path, dict[str, Any]]:
    """The config file's path and its JSON object."""
    shown = str(path) if len(str(path)) <= 200 else str(path)[:200] + "..."
    try:
        file = path / _FILE if path.is_dir() else path
        found = file.is_file()
    except OSError:  # e.g. a path too long for the file system
        found = False
    if not found:
        raise InvalidInputError(
            "model",
            f"no config.json at {shown!r}",
            "give a catalog model name, or the path of a config.json or of its folder",
        )
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(
            "model", f"cannot read {shown!r} ({type(error).__name__})", "check the file's permissions and encoding"
        ) from None
    except RecursionError:
        raise InvalidInputError(_FILE, "nested too deeply to parse", "use a Hugging Face config.json") from None
    except json.JSONDecodeError as error:
        raise InvalidInputError(
            _FILE,
            f"not valid JSON at line {error.lineno} column {error.colno} ({error.msg})",
            "fix the JSON syntax",
        ) from None
    except ValueError:  # e.g. an integer of thousands of digits
        raise InvalidInputError(
            _FILE, "holds a value JSON can be parsed into but not read", "use a Hugging Face config.json"
        ) from None
    if not isinstance(config, dict):
        raise InvalidInputError(
            _FILE, f"expected a JSON object, got {type(config).__name__}", "use a Hugging Face config.json"
        )
    return file, config


def model_from_hf_config(path: Path) -> ModelSpec:
    """Read a Hugging Face ``config.json`` (the file, or a folder holding it) into a :class:`ModelSpec`.

    The name is ``_name_or_path`` when the config has one, else the folder the file sits in.
    """
    file, config = _read(Path(path))
    model_type = config.get("model_type")
    supported = ", ".join(SUPPORTED_MODEL_TYPES)
    if model_type is None:
        raise InvalidInputError(_field("model_type"), "missing", f"add model_type, one of {supported}")
    if not isinstance(model_type, str) or model_type not in _FAMILIES:
        raise InvalidInputError(
            _field("model_type"), f"unsupported model_type {model_type!r}", f"use one of {supported}"
        )
    fields = _FAMILIES[model_type](config)
    name_or_path = config.get("_name_or_path")
    name = name_or_path if isinstance(name_or_path, str) and name_or_path else file.absolute().parent.name
    try:
        return ModelSpec(name=name, source=f"config.json at {file}", **fields)
    except ValidationError as error:
        raise from_validation_error(error, _FILE) from None
