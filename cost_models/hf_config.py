"""Build a :class:`ModelSpec` from a Hugging Face ``config.json`` on disk.

Lets users cost any model whose config they have without adding it to the catalog. Nothing is
downloaded. Only families whose shapes map cleanly onto :class:`ModelSpec` are accepted (the table
of what each maps to is docs/models.md); each reader takes attention, FFN, block and windows from
the config's own fields. ``quantization_config`` sets ``checkpoint_format``. Every problem
(missing file, bad JSON, unknown family, missing or bad field, a cost-changing field that is not
modelled: experts in a dense family, linear-attention layers, unknown quantization) raises
:class:`InvalidInputError` naming the field, so the CLI can print one line; strings from the
config are shown with control characters replaced.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cost_models.errors import InvalidInputError, from_validation_error
from cost_models.input_files import read_regular_text
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


def _count(config: dict[str, Any], key: str, default: int = 0) -> int:
    """``config[key]`` as a non-negative int; ``default`` when absent or null."""
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(_field(key), f"expected a non-negative integer, got {value!r}", "use an integer >= 0")
    return value


def _int_list(config: dict[str, Any], key: str, length: int | None = None) -> list[int] | None:
    """``config[key]`` as a list of non-negative ints (``length`` long when given); None when absent."""
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise InvalidInputError(_field(key), "expected a list of non-negative integers", f"fix {key}")
    if length is not None and len(value) != length:
        raise InvalidInputError(
            _field(key), f"has {len(value)} entries for {length} layers", "give one entry per layer (num_hidden_layers)"
        )
    return value


def _printable(text: str, limit: int = 200) -> str:
    """``text`` with control and escape characters replaced by '?', cut to ``limit`` characters:
    a config's strings (names, paths) must not reach a terminal raw."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return clean if len(clean) <= limit else clean[:limit] + "..."


# ---------------------------------------------------------------------------------------------
# Shared pieces: attention, context length, windows, experts in dense families
# ---------------------------------------------------------------------------------------------


def _attention(config: dict[str, Any], d_model: int, kv_key: str = "num_key_value_heads") -> dict[str, int]:
    """heads, kv_heads (default heads: MHA) and d_head (head_dim, else hidden_size / heads)."""
    heads = _positive_int(config, "num_attention_heads")
    d_head = (
        _positive_int(config, "head_dim")
        if config.get("head_dim") is not None
        else _head_dim("hidden_size", "num_attention_heads", d_model, heads)
    )
    kv_heads = _positive_int(config, kv_key, default=heads)
    if heads % kv_heads != 0:
        raise InvalidInputError(
            _field(kv_key),
            f"num_attention_heads ({heads}) is not divisible by {kv_key} ({kv_heads})",
            f"use a {kv_key} that divides num_attention_heads",
        )
    return dict(heads=heads, kv_heads=kv_heads, d_head=d_head)


def _decoder_base(config: dict[str, Any], *, tied: bool = False, context_key: str = "max_position_embeddings"):
    """Fields every decoder family reads the same way."""
    return dict(
        layers=_positive_int(config, "num_hidden_layers"),
        d_model=_positive_int(config, "hidden_size"),
        vocab=_positive_int(config, "vocab_size"),
        kind="decoder",
        tie_embeddings=_flag(config, "tie_word_embeddings", tied),
        max_context=_count(config, context_key),
    )


_FULL, _SLIDING = "full_attention", "sliding_attention"


def _windows(config: dict[str, Any], fields: dict[str, Any], default_sliding: int) -> dict[str, int]:
    """sliding_window and sliding_window_layers. ``layer_types`` (newer transformers write it for
    every family) says per block whether it is windowed; without it the family's rule gives
    ``default_sliding`` windowed blocks. A window no shorter than the longest context is no window
    (Phi-3-mini-128k's 262144 over 131072 positions): it caps nothing, so it is dropped."""
    layers = fields["layers"]
    sliding = default_sliding
    layer_types = config.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != layers:
            raise InvalidInputError(
                _field("layer_types"), f"expected a list of {layers} layer kinds", "give one entry per layer"
            )
        unknown = sorted({str(kind) for kind in layer_types} - {_FULL, _SLIDING})
        if unknown:
            raise InvalidInputError(
                _field("layer_types"),
                f"layer kind {_printable(unknown[0])!r} is not modelled (only {_FULL} and {_SLIDING})",
                "use a model whose blocks are all softmax attention (see docs/models.md)",
            )
        sliding = sum(kind == _SLIDING for kind in layer_types)
    window = _count(config, "sliding_window")
    context = fields["max_context"]
    if sliding == 0 or window == 0 or (context and window >= context):
        return dict(sliding_window=0, sliding_window_layers=0)
    return dict(sliding_window=window, sliding_window_layers=sliding)


#: Keys that put routed experts in a config; in a dense family's config they change the cost and
#: the family's reader would ignore them, so they are refused.
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_intermediate_size")


def _refuse_experts(config: dict[str, Any], model_type: str) -> None:
    for key in _EXPERT_KEYS:
        value = config.get(key)
        if value not in (None, 0):
            raise InvalidInputError(
                _field(key),
                f"{value!r} sets experts, but {model_type} is a dense family whose blocks have none",
                "use the family's MoE model_type (mixtral, qwen3_moe, llama4, ...) or remove it",
            )


def _gated(config: dict[str, Any], fields: dict[str, Any], d_ff_key: str = "intermediate_size") -> dict[str, Any]:
    """A gated MLP (gate, up, down: 3 matrices). ModelSpec's ``ffn`` counts matrices, so a gated
    MLP is "swiglu" whatever its activation (SiLU in Llama, tanh-GELU in Gemma: GeGLU)."""
    return dict(fields, d_ff=_positive_int(config, d_ff_key), ffn="swiglu", block="serial")


# ---------------------------------------------------------------------------------------------
# Dense families
# ---------------------------------------------------------------------------------------------


def _llama(config: dict[str, Any]) -> dict[str, Any]:
    """Llama 1-3.x: GQA (num_key_value_heads), SwiGLU, serial blocks, full attention everywhere."""
    _refuse_experts(config, "llama")
    fields = _decoder_base(config)
    fields |= _attention(config, fields["d_model"])
    return _gated(config, fields)


def _mistral_like(model_type: str):
    """Mistral and Phi-3 (its fused gate_up is still two matrices): Llama's shapes, with
    ``sliding_window`` (when set) on every block."""

    def read(config: dict[str, Any]) -> dict[str, Any]:
        _refuse_experts(config, model_type)
        fields = _decoder_base(config)
        fields |= _attention(config, fields["d_model"])
        fields = _gated(config, fields)
        return fields | _windows(config, fields, default_sliding=fields["layers"])

    return read


def _qwen_windowed_layers(config: dict[str, Any], layers: int) -> int:
    """Qwen2/Qwen3 window the blocks from ``max_window_layers`` on, and only with
    ``use_sliding_window`` true (transformers' Qwen2Attention; default 28 as in Qwen2Config)."""
    if not _flag(config, "use_sliding_window", False):
        return 0
    return max(0, layers - _count(config, "max_window_layers", default=28))


def _qwen(model_type: str):
    """Qwen2 and Qwen3 (dense): Llama's shapes (Qwen3 with an explicit head_dim; q/k norms cost
    nothing here), windows as :func:`_qwen_windowed_layers`."""

    def read(config: dict[str, Any]) -> dict[str, Any]:
        _refuse_experts(config, model_type)
        fields = _decoder_base(config)
        fields |= _attention(config, fields["d_model"])
        fields = _gated(config, fields)
        return fields | _windows(config, fields, _qwen_windowed_layers(config, fields["layers"]))

    return read


#: Gemma3TextConfig's defaults of the fields read here (transformers
#: src/transformers/models/gemma3/configuration_gemma3.py, Gemma3TextConfig.__init__).
_GEMMA3_TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 262208,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "max_position_embeddings": 131072,
    "sliding_window": 4096,
}


def _gemma(model_type: str):
    """Gemma 2 and Gemma 3 (text): GeGLU MLP (3 matrices), GQA with head_dim, tied embeddings.
    Windows: Gemma 2 windows every other block from the first (transformers' ``is_sliding = not
    layer_idx % 2``); Gemma 3 all but every ``sliding_window_pattern``-th (default 6: 5 local, 1
    global). Gemma 3's published text_config leaves out every field at its Gemma3TextConfig
    default (transformers saves a nested config as its difference from the defaults: gemma-3-27b's
    omits vocab_size and max_position_embeddings, gemma-3-12b's head_dim, gemma-3-4b's the heads
    too), and transformers reads an absent field as that default, so those defaults are used here
    (:data:`_GEMMA3_TEXT_DEFAULTS`), not hidden_size / heads for head_dim."""
    gemma3 = model_type.startswith("gemma3")

    def read(config: dict[str, Any]) -> dict[str, Any]:
        _refuse_experts(config, model_type)
        if gemma3:
            config = {**_GEMMA3_TEXT_DEFAULTS, **_present(config)}
        fields = _decoder_base(config, tied=True)
        fields |= _attention(config, fields["d_model"])
        fields = _gated(config, fields)
        layers = fields["layers"]
        if gemma3:
            pattern = _positive_int(config, "sliding_window_pattern", default=6)
            sliding = layers - layers // pattern
        else:
            sliding = (layers + 1) // 2
        return fields | _windows(config, fields, sliding)

    return read


def _present(config: dict[str, Any]) -> dict[str, Any]:
    """The config without null values (so family defaults apply to them)."""
    return {key: value for key, value in config.items() if value is not None}


def _falcon(config: dict[str, Any]) -> dict[str, Any]:
    """Falcon: a GELU MLP of ffn_hidden_size (default 4 x hidden) and tied embeddings. Attention
    and block follow the config, as in transformers' FalconAttention/FalconDecoderLayer:
    new_decoder_architecture (40B, 180B) has num_kv_heads KV heads (GQA) and a parallel block;
    otherwise multi_query means one KV head (7B) and parallel_attn a parallel block."""
    _refuse_experts(config, "falcon")
    fields = _decoder_base(config, tied=True)
    d_model = fields["d_model"]
    heads = _positive_int(config, "num_attention_heads")
    new_arch = _flag(config, "new_decoder_architecture", False)
    if new_arch:
        kv_heads = _positive_int(config, "num_kv_heads", default=heads)
    else:
        kv_heads = 1 if _flag(config, "multi_query", True) else heads
    if heads % kv_heads != 0:
        raise InvalidInputError(
            _field("num_kv_heads"),
            f"num_attention_heads ({heads}) is not divisible by num_kv_heads ({kv_heads})",
            "use a num_kv_heads that divides num_attention_heads",
        )
    parallel = new_arch or _flag(config, "parallel_attn", True)
    return dict(
        fields,
        heads=heads,
        kv_heads=kv_heads,
        d_head=_head_dim("hidden_size", "num_attention_heads", d_model, heads),
        d_ff=_positive_int(config, "ffn_hidden_size", default=4 * d_model),
        ffn="gelu",
        block="parallel" if parallel else "serial",
    )


def _gelu_mha(
    *,
    layers: str,
    hidden: str,
    heads: str,
    d_ff: str,
    kind: str,
    tied: bool,
    context: str,
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
            max_context=_count(config, context),
        )

    return read


_gpt2 = _gelu_mha(
    layers="n_layer",
    hidden="n_embd",
    heads="n_head",
    d_ff="n_inner",
    d_ff_factor=4,
    kind="decoder",
    tied=True,
    context="n_positions",
)
_bert = _gelu_mha(
    layers="num_hidden_layers",
    hidden="hidden_size",
    heads="num_attention_heads",
    d_ff="intermediate_size",
    kind="encoder",
    tied=True,
    context="max_position_embeddings",
)
_gpt_neox = _gelu_mha(
    layers="num_hidden_layers",
    hidden="hidden_size",
    heads="num_attention_heads",
    d_ff="intermediate_size",
    kind="decoder",
    tied=False,
    context="max_position_embeddings",
    parallel_key="use_parallel_residual",
)


# ---------------------------------------------------------------------------------------------
# Mixture-of-experts families
# ---------------------------------------------------------------------------------------------


def _moe(config: dict[str, Any], fields: dict[str, Any], *, experts: str, expert_d_ff: str, moe_layers: int):
    """Routed-expert fields: ``experts`` and ``expert_d_ff`` name the family's keys; blocks that
    are not among the ``moe_layers`` keep the dense FFN (d_ff)."""
    layers = fields["layers"]
    if not 1 <= moe_layers <= layers:
        raise InvalidInputError(
            _field("num_hidden_layers"),
            f"the config's MoE layout gives {moe_layers} MoE blocks of {layers}",
            "check first_k_dense_replace / the MoE layer step against num_hidden_layers",
        )
    return dict(
        fields,
        experts=_positive_int(config, experts),
        experts_per_token=_positive_int(config, "num_experts_per_tok"),
        expert_d_ff=_positive_int(config, expert_d_ff),
        dense_layers=layers - moe_layers,
    )


def _moe_step(step: int, layers: int) -> dict[str, int]:
    """``moe_layer_step`` of MoE blocks at every ``step``-th block ((i + 1) % step == 0, as
    transformers places Llama 4's and Qwen MoE's): where pipeline stages cut them, each stage holds
    its share. Other layouts (mlp_only_layers, a moe_layers list off the step) keep the default:
    the dense blocks first, the MoE ones together in the last stages (an upper bound per stage)."""
    return dict(moe_layer_step=step) if 1 < step <= layers else {}


def _mixtral(config: dict[str, Any]) -> dict[str, Any]:
    """Mixtral: Mistral attention (sliding_window on every block when set), every block's FFN
    num_local_experts SwiGLU experts of intermediate_size, num_experts_per_tok per token."""
    fields = _decoder_base(config)
    fields |= _attention(config, fields["d_model"])
    fields = _gated(config, fields)
    fields |= _windows(config, fields, default_sliding=fields["layers"])
    return _moe(
        config, fields, experts="num_local_experts", expert_d_ff="intermediate_size", moe_layers=fields["layers"]
    )


def _qwen_moe(config: dict[str, Any]) -> dict[str, Any]:
    """Qwen2-MoE and Qwen3-MoE: num_experts routed experts of moe_intermediate_size, top
    num_experts_per_tok. A block is MoE unless listed in ``mlp_only_layers`` or off the
    ``decoder_sparse_step`` (transformers: ``(i + 1) % decoder_sparse_step == 0``); the others keep a
    dense MLP of intermediate_size. Qwen2-MoE adds one shared expert of
    shared_expert_intermediate_size (its sigmoid gate, d_model x 1, is left out)."""
    fields = _decoder_base(config)
    fields |= _attention(config, fields["d_model"])
    fields = _gated(config, fields)
    layers = fields["layers"]
    fields |= _windows(config, fields, _qwen_windowed_layers(config, layers))
    step = _positive_int(config, "decoder_sparse_step", default=1)
    dense_only = set(_int_list(config, "mlp_only_layers") or [])
    moe_layers = sum(1 for i in range(layers) if i not in dense_only and (i + 1) % step == 0)
    fields = _moe(config, fields, experts="num_experts", expert_d_ff="moe_intermediate_size", moe_layers=moe_layers)
    if moe_layers == layers // step:  # no mlp_only_layers among them: every step-th block
        fields |= _moe_step(step, layers)
    if _count(config, "shared_expert_intermediate_size"):
        fields |= dict(shared_experts=1, shared_expert_d_ff=_positive_int(config, "shared_expert_intermediate_size"))
    return fields


def _llama4(config: dict[str, Any]) -> dict[str, Any]:
    """Llama 4 (Scout, Maverick; the text_config of the multimodal config). MoE blocks are every
    ``interleave_moe_layer_step``-th (transformers: ``moe_layers`` = step-1, 2*step-1, ...), each with
    num_local_experts routed experts of intermediate_size (top num_experts_per_tok) plus one
    shared expert of the same width; the other blocks have a dense MLP of intermediate_size_mlp.

    Attention: blocks with RoPE (``no_rope_layers[i]`` = 1; by default 3 of every 4,
    ``no_rope_layer_interval`` 4) use chunked attention, a token attending only within its
    ``attention_chunk_size``-token chunk; the NoPE blocks attend to everything. Chunked attention
    is charged as a sliding window of the chunk size: the same KV cache cap, and an upper bound on
    the keys read (a token sees, on average, half a chunk)."""
    fields = _decoder_base(config)
    fields |= _attention(config, fields["d_model"])
    fields = _gated(config, fields, d_ff_key="intermediate_size_mlp")
    layers = fields["layers"]
    step = _positive_int(config, "interleave_moe_layer_step", default=1)
    moe_list = _int_list(config, "moe_layers")
    every_step = set(range(step - 1, layers, step))
    moe_layers = len(set(moe_list)) if moe_list is not None else len(every_step)
    fields = _moe(config, fields, experts="num_local_experts", expert_d_ff="intermediate_size", moe_layers=moe_layers)
    fields |= dict(shared_experts=1)
    if moe_list is None or set(moe_list) == every_step:
        fields |= _moe_step(step, layers)
    rope = _int_list(config, "no_rope_layers") or None  # [] means: derive from the interval
    if rope is not None:
        rope = _int_list(config, "no_rope_layers", length=layers) or []
        chunked = sum(1 for flag in rope if flag)
    else:
        interval = _positive_int(config, "no_rope_layer_interval", default=4)
        chunked = sum(1 for i in range(layers) if (i + 1) % interval != 0)
    chunk = _count(config, "attention_chunk_size")
    context = fields["max_context"]
    if chunk and chunked and not (context and chunk >= context):
        fields |= dict(sliding_window=chunk, sliding_window_layers=chunked)
    return fields


def _gpt_oss(config: dict[str, Any]) -> dict[str, Any]:
    """gpt-oss: GQA with head_dim, num_local_experts SwiGLU experts of intermediate_size in every
    block (top num_experts_per_tok), sliding_window on the blocks ``layer_types`` marks (by
    default every other one from the first, as GptOssConfig). Attention sinks (one logit per head)
    cost nothing here."""
    fields = _decoder_base(config)
    fields |= _attention(config, fields["d_model"])
    fields = _gated(config, fields)
    fields |= _windows(config, fields, default_sliding=(fields["layers"] + 1) // 2)
    return _moe(
        config, fields, experts="num_local_experts", expert_d_ff="intermediate_size", moe_layers=fields["layers"]
    )


def _first_k_dense(config: dict[str, Any], layers: int, freq_key: str | None) -> int:
    """MoE blocks of DeepSeek-style configs: block i is MoE when i >= first_k_dense_replace and
    i % moe_layer_freq == 0 (transformers' DeepseekV2/V3 decoder layer)."""
    first = _count(config, "first_k_dense_replace")
    freq = _positive_int(config, freq_key, default=1) if freq_key else 1
    return sum(1 for i in range(layers) if i >= first and i % freq == 0)


def _deepseek(config: dict[str, Any]) -> dict[str, Any]:
    """DeepSeek-V2/V3 (and Kimi K2, which ships model_type deepseek_v3): multi-head latent
    attention (kv_lora_rank latent + qk_rope_head_dim rotary key cached per token; d_head is
    qk_nope_head_dim, v_head_dim the value width, q_lora_rank the query compression, null for
    V2-Lite's full-rank query; kv_heads = heads), n_routed_experts experts of
    moe_intermediate_size (top num_experts_per_tok) plus n_shared_experts of the same width in the
    MoE blocks, the first first_k_dense_replace blocks dense with intermediate_size. The
    multi-token-prediction module (num_nextn_predict_layers) is a speculative-decoding head, not
    part of the forward pass costed here."""
    for key in ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim"):
        if config.get(key) is None:
            raise InvalidInputError(
                _field(key),
                "missing: a DeepSeek config describes multi-head latent attention (MLA) by its ranks",
                f"add {key} (DeepSeek-V3: kv_lora_rank 512, qk_rope_head_dim 64, qk_nope_head_dim 128)",
            )
    fields = _decoder_base(config)
    heads = _positive_int(config, "num_attention_heads")
    d_head = _positive_int(config, "qk_nope_head_dim")
    fields |= dict(
        heads=heads,
        kv_heads=heads,
        d_head=d_head,
        kv_lora_rank=_positive_int(config, "kv_lora_rank"),
        q_lora_rank=_count(config, "q_lora_rank"),
        qk_rope_head_dim=_positive_int(config, "qk_rope_head_dim"),
        v_head_dim=_positive_int(config, "v_head_dim", default=d_head),
    )
    fields = _gated(config, fields)
    if config.get("n_routed_experts") is None:  # a dense DeepSeek (no routed experts)
        return fields
    moe_layers = _first_k_dense(config, fields["layers"], "moe_layer_freq")
    fields = _moe(
        config, fields, experts="n_routed_experts", expert_d_ff="moe_intermediate_size", moe_layers=moe_layers
    )
    shared = _count(config, "n_shared_experts")
    return fields | (dict(shared_experts=shared) if shared else {})


def _glm4_moe(config: dict[str, Any]) -> dict[str, Any]:
    """GLM-4.5 / 4.6 (glm4_moe): GQA with head_dim, the first first_k_dense_replace blocks dense
    (intermediate_size), the rest n_routed_experts experts of moe_intermediate_size (top
    num_experts_per_tok) plus n_shared_experts of the same width. Partial RoPE and q/k norms
    cost nothing here; the MTP module (num_nextn_predict_layers) is left out as DeepSeek's."""
    _refuse_unmodelled(config, {"use_sliding_window": lambda v: v is False})
    fields = _decoder_base(config)
    fields |= _attention(config, fields["d_model"])
    fields = _gated(config, fields)
    moe_layers = _first_k_dense(config, fields["layers"], None)
    fields = _moe(
        config, fields, experts="n_routed_experts", expert_d_ff="moe_intermediate_size", moe_layers=moe_layers
    )
    shared = _count(config, "n_shared_experts")
    return fields | (dict(shared_experts=shared) if shared else {})


def _refuse_unmodelled(config: dict[str, Any], keys: dict[str, Callable[[Any], bool]]) -> None:
    """Raise naming the first key whose value changes the cost in a way not modelled yet."""
    for key, modelled in keys.items():
        value = config.get(key)
        if value is not None and not modelled(value):
            raise InvalidInputError(
                _field(key), f"{value!r} is not modelled yet", f"remove {key} or set it to its default"
            )


_FAMILIES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "llama": _llama,
    "llama4": _llama4,
    "llama4_text": _llama4,
    "mistral": _mistral_like("mistral"),
    "phi3": _mistral_like("phi3"),
    "mixtral": _mixtral,
    "qwen2": _qwen("qwen2"),
    "qwen3": _qwen("qwen3"),
    "qwen2_moe": _qwen_moe,
    "qwen3_moe": _qwen_moe,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    # Kimi K2 (Moonshot) ships model_type kimi_k2 with DeepseekV3ForCausalLM as its architecture;
    # K2.5 and later wrap it as the text_config of a kimi_k25 multimodal config.
    "kimi_k2": _deepseek,
    "kimi_k25": _deepseek,
    "glm4_moe": _glm4_moe,
    "gpt_oss": _gpt_oss,
    "gemma2": _gemma("gemma2"),
    "gemma3": _gemma("gemma3"),
    "gemma3_text": _gemma("gemma3_text"),
    "falcon": _falcon,
    "gpt2": _gpt2,
    "bert": _bert,
    "gpt_neox": _gpt_neox,
}

#: ``model_type`` values that :func:`model_from_hf_config` understands.
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(_FAMILIES))

#: Families whose configs hold layers this cost model cannot charge (linear attention, state
#: space blocks), by model_type, with what they hold: refused by name, not read as something else.
_HYBRIDS = {
    "qwen3_next": "Gated DeltaNet linear-attention layers",
    "nemotron_h": "Mamba-2 state-space layers (hybrid_override_pattern)",
    "jamba": "Mamba state-space layers",
    "falcon_h1": "Mamba-2 state-space layers",
    "minimax": "lightning (linear) attention layers",
    "minimax_m1": "lightning (linear) attention layers",
}
#: Keys that describe such layers in any config.
_HYBRID_KEYS = ("hybrid_override_pattern", "linear_num_value_heads", "attn_type_list", "layers_block_type")


#: Families whose reader does not take ``layer_types`` (no windowed blocks of their own: the
#: ones that do pass it to :func:`_windows`), with the layer kinds their blocks are: another kind
#: in a config of theirs would be costed as those blocks, so it is refused. Llama 4 writes
#: chunked_attention for its RoPE blocks, which its reader charges from no_rope_layers.
_LAYER_KINDS_WITHOUT_WINDOWS: dict[str, frozenset[str]] = {
    model_type: frozenset({_FULL} | ({"chunked_attention"} if model_type.startswith("llama4") else set()))
    for model_type in (
        "llama", "llama4", "llama4_text", "deepseek_v2", "deepseek_v3", "kimi_k2", "kimi_k25", "glm4_moe",
        "falcon", "gpt2", "bert", "gpt_neox",
    )
}  # fmt: skip


def _refuse_unread_layer_kinds(config: dict[str, Any], model_type: str) -> None:
    kinds = _LAYER_KINDS_WITHOUT_WINDOWS.get(model_type)
    layer_types = config.get("layer_types")
    if kinds is None or layer_types is None:
        return
    if not isinstance(layer_types, list):
        raise InvalidInputError(_field("layer_types"), "expected a list of layer kinds", "give one entry per layer")
    unread = sorted({str(kind) for kind in layer_types} - kinds)
    if unread:
        raise InvalidInputError(
            _field("layer_types"),
            f"layer kind {_printable(unread[0])!r} is not modelled for {model_type}"
            f" (its blocks are {', '.join(sorted(kinds))})",
            "remove layer_types or use a model whose blocks are all of those kinds (see docs/models.md)",
        )


def _refuse_hybrids(config: dict[str, Any], model_type: str) -> None:
    if model_type in _HYBRIDS:
        raise InvalidInputError(
            _field("model_type"),
            f"{model_type} has {_HYBRIDS[model_type]}, which are not modelled",
            "cost a model whose blocks are all softmax attention (see docs/models.md for what is next)",
        )
    for key in _HYBRID_KEYS:
        if config.get(key) is not None:
            raise InvalidInputError(
                _field(key),
                "describes linear-attention or state-space layers, which are not modelled",
                "cost a model whose blocks are all softmax attention (see docs/models.md)",
            )


# ---------------------------------------------------------------------------------------------
# quantization_config -> checkpoint_format
# ---------------------------------------------------------------------------------------------

_QUANT_METHODS = ("fp8", "fbgemm_fp8", "awq", "gptq", "mxfp4", "modelopt", "compressed-tensors")


def _checkpoint_format(config: dict[str, Any]) -> str | None:
    """The stored weight format a ``quantization_config`` names (None: a 16-bit checkpoint).

    fp8 (DeepSeek-V3, Qwen3-FP8: e4m3 with 128x128 block scales) -> fp8; AWQ and GPTQ -> int4 or
    int8 by ``bits``; mxfp4 (gpt-oss: the experts in MXFP4, attention and router kept 16-bit: the
    model's ``mxfp4_experts``, which the memory estimate reads) and ModelOpt NVFP4 -> fp4, ModelOpt FP8 ->
    fp8. Anything else changes the weight bytes in a way not read, so it is refused."""
    quant = config.get("quantization_config")
    if quant is None:
        return None
    key = "quantization_config"
    if not isinstance(quant, dict):
        raise InvalidInputError(_field(key), "expected an object", "use the checkpoint's quantization_config")
    method = quant.get("quant_method")
    supported = ", ".join(_QUANT_METHODS)
    if not isinstance(method, str) or method.lower() not in _QUANT_METHODS:
        shown = _printable(method) if isinstance(method, str) else method
        raise InvalidInputError(
            _field(f"{key}.quant_method"),
            f"unsupported quantization method {shown!r}",
            f"use a checkpoint quantized with one of {supported}, or remove quantization_config",
        )
    method = method.lower()
    if method in ("awq", "gptq"):
        bits = quant.get("bits", quant.get("w_bit"))
        formats = {4: "int4", 8: "int8"}
        if isinstance(bits, bool) or bits not in formats:
            raise InvalidInputError(
                _field(f"{key}.bits"), f"{method} with {bits!r} bits is not modelled", "use 4 or 8 bits"
            )
        return formats[bits]
    if method == "compressed-tensors":
        return _compressed_tensors_format(quant)
    if method == "modelopt":
        algo = quant.get("quant_algo")
        algos = {"NVFP4": "fp4", "FP8": "fp8"}
        if not isinstance(algo, str) or algo.upper() not in algos:
            shown = _printable(algo) if isinstance(algo, str) else algo
            raise InvalidInputError(
                _field(f"{key}.quant_algo"), f"ModelOpt algorithm {shown!r} is not modelled", "use NVFP4 or FP8"
            )
        return algos[algo.upper()]
    # fbgemm_fp8 (Meta's Llama-3.1 FP8 checkpoints): fp8 e4m3 weights with one fp32 scale per
    # output row (~0.01% more bytes, not counted) and activations quantized per token at run time
    # (activation_scale_ub): the engines' W8A8 fp8 GEMM (vLLM fbgemm_fp8.py: FBGEMMFp8Config).
    return {"fp8": "fp8", "fbgemm_fp8": "fp8", "mxfp4": "fp4"}[method]


#: The keys under which the quantization methods read here list modules the checkpoint keeps in
#: 16 bits: compressed-tensors ``ignore``, ModelOpt ``exclude_modules`` (or ``ignore``), fp8 / AWQ /
#: mxfp4 ``modules_to_not_convert`` (transformers) and vLLM's fp8 ``ignored_layers``.
_UNQUANTIZED_KEYS = ("ignore", "exclude_modules", "modules_to_not_convert", "ignored_layers")

#: A listed module that holds a cost-changing share of the weights: attention, any projection (but
#: a multimodal projector, which is not costed), experts (but Qwen2-MoE's shared_expert_gate, one
#: d_model vector), an MLP (but its router: ``mlp.gate``, ``mlp.router``), fully-connected layers.
#: Kimi K2 Thinking's ignore list (``re:.*self_attn.*``, ``re:.*shared_experts.*``,
#: ``re:.*mlp\.(gate|up|gate_up|down)_proj.*``) keeps 9.2e9 of its weights bf16 beside the int4
#: experts: a 594 GB checkpoint and 33 GB read a decode step, not 517 GB and 18 GB all-int4.
_WEIGHTY_MODULE = re.compile(
    r"attn|attention|proj(?!ector)|expert(?!_gate)|mlp(?!\W*(gate|router)\b)|fc|w[123]\b|dense|query_key_value"
    r"|feed_forward|ffn",
    re.IGNORECASE,
)
#: A listed module the cost model already keeps 16-bit or does not cost: the lm_head and embedding
#: (16-bit in every format: partitioning.TABLE_BYTES_PER_ELEMENT), norms, MoE routers (DeepSeek's
#: ``gate`` and ``e_score_correction_bias``, Mixtral's ``block_sparse_moe.gate``), vision towers
#: and multimodal projectors.
_FREE_MODULE = re.compile(
    r"lm_head|embed|norm|router|gate|e_score_correction|vision|visual|mm_projector|multi_modal_projector",
    re.IGNORECASE,
)


#: Module names a block of each class holds, as the checkpoints' exclusion lists name them (HF
#: transformers' Llama / DeepSeek-V3 / Qwen-MoE / Llama 4 / Mixtral modules), by class: each
#: entry of an exclusion list is matched against every block's names (a regex ``re:`` entry as
#: compressed-tensors does, re.match; a wildcard as ModelOpt's fnmatch; else a dotted part of the
#: name, as transformers' ``key in name``).
_ATTENTION_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLA_NAMES = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
_MLA_FULL_RANK_NAMES = ("q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
_PREFIXES = ("model.layers", "language_model.model.layers", "model.language_model.layers")


def _block_modules(fields: dict[str, Any]) -> list[tuple[int, str, list[str]]]:
    """(block, class, its module names) for every block: attention, the dense MLP (dense blocks),
    the shared experts and one routed expert (MoE blocks)."""
    layers, experts = int(fields["layers"]), int(fields.get("experts") or 0)
    dense, step = int(fields.get("dense_layers") or 0), int(fields.get("moe_layer_step") or 1)
    gated = fields.get("ffn") == "swiglu"
    ffn = ("gate_proj", "up_proj", "down_proj") if gated else ("up_proj", "down_proj")
    if fields.get("kv_lora_rank"):
        attention = _MLA_NAMES if fields.get("q_lora_rank") else _MLA_FULL_RANK_NAMES
    else:
        attention = _ATTENTION_NAMES
    blocks = []
    for i in range(layers):
        moe = bool(experts) and ((i + 1) % step == 0 if step > 1 else i >= dense)
        names = [f"{p}.{i}" for p in _PREFIXES]
        blocks.append((i, "attention", [f"{n}.self_attn.{m}" for n in names for m in attention]))
        if not moe:
            blocks.append((i, "mlp", [f"{n}.{mlp}.{m}" for n in names for mlp in ("mlp", "feed_forward") for m in ffn]))
            continue
        if fields.get("shared_experts"):
            shared = ("mlp.shared_experts", "mlp.shared_expert", "feed_forward.shared_expert")
            blocks.append((i, "shared", [f"{n}.{s}.{m}" for n in names for s in shared for m in ffn]))
        routed = ("mlp.experts.0", "feed_forward.experts", "block_sparse_moe.experts.0", "mlp.experts")
        blocks.append((i, "routed", [f"{n}.{r}.{m}" for n in names for r in routed for m in (*ffn, "w1")]))
    return blocks


def _names_matched(entry: str, names: list[str]) -> list[str]:
    if re.fullmatch(r"[A-Z]\w*Attention", entry):
        # A module class name, as compressed-tensors matches it (Llama4TextAttention, Glm4MoeAttention,
        # in llm-compressor's Llama 4 recipes): every block's attention.
        return [name for name in names if ".self_attn." in name]
    if entry.startswith("re:"):
        try:
            pattern = re.compile(entry[3:])
        except re.error:
            return []
        return [name for name in names if pattern.match(name)]
    if any(ch in entry for ch in "*?["):
        return [name for name in names if fnmatch.fnmatchcase(name, entry) or fnmatch.fnmatchcase(name, entry + ".*")]
    return [name for name in names if f".{entry}." in f".{name}."]


def _checkpoint_16bit_modules(quant: dict[str, Any], fields: dict[str, Any]) -> dict[str, int]:
    """The blocks whose attention, dense MLP and shared experts the checkpoint keeps 16-bit, from
    its exclusion lists (ModelSpec.checkpoint_16bit_*): an entry matches a module class of a block
    when it names every one of that class's matrices there (``re:.*self_attn.*``: every block's
    attention; ``model.layers.0.mlp.down_proj`` with its gate and up: block 0's MLP). Refused in one
    line: an entry that keeps routed experts 16-bit, names only some matrices of a block's
    attention or MLP, or names another weight-carrying module (a fused qkv, a class name). Entries
    for the lm_head, embedding, norms, routers, vision modules, and blocks past num_hidden_layers
    (DeepSeek's MTP layer, ``model.layers.61``) change nothing costed here."""
    layers = int(fields["layers"])
    blocks = _block_modules(fields)
    by_block: dict[int, list[tuple[int, str, list[str]]]] = {}
    for module in blocks:
        by_block.setdefault(module[0], []).append(module)
    matched: dict[tuple[int, str], set[str]] = {}
    sources: dict[tuple[int, str], tuple[str, str]] = {}  # the first entry naming each
    for key in _UNQUANTIZED_KEYS:
        entries = quant.get(key)
        if entries is None:
            continue
        field = _field(f"quantization_config.{key}")
        if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
            raise InvalidInputError(
                field, "expected a list of module names", "use the checkpoint's quantization_config"
            )
        for entry in entries:
            shown = _printable(entry, 80)
            hit = False
            # A plain name of one block (405B's 900-odd model.layers.N.* entries) is matched
            # against that block's modules only.
            plain = not entry.startswith("re:") and not any(ch in entry for ch in "*?[")
            index = re.search(r"layers\.(\d+)(?:\.|$)", entry)
            candidates = by_block.get(int(index.group(1)), []) if plain and index else blocks
            for block, kind, names in candidates:
                found = _names_matched(entry, names)
                if not found:
                    continue
                hit = True
                if kind == "routed":
                    raise InvalidInputError(
                        field,
                        f"keeps {shown!r} out of the checkpoint's format (16-bit routed experts of block {block}):"
                        " not modelled, the routed experts are charged in the checkpoint's format",
                        "remove quantization_config and give --weight-bits (16 bounds the bytes from above)",
                    )
                # Names by their matrix (the last part), whatever the prefix spelling.
                matched.setdefault((block, kind), set()).update(name.rsplit(".", 1)[1] for name in found)
                sources.setdefault((block, kind), (key, entry))
            if hit:
                continue
            indices = [int(index) for index in re.findall(r"layers\.(\d+)", entry)]
            past_the_model = bool(indices) and min(indices) >= layers
            free = _WEIGHTY_MODULE.search(entry) is None and _FREE_MODULE.search(entry) is not None
            if past_the_model or free:
                continue
            raise InvalidInputError(
                field,
                f"keeps {shown!r} out of the checkpoint's format (16-bit), which names no whole attention, MLP or"
                " shared-expert module of the model's blocks: not modelled",
                "remove quantization_config and give --weight-bits (16 bounds the bytes from above, the"
                " quantized format from below)",
            )
    counts = {"attention": 0, "mlp": 0, "shared": 0}
    for (block, kind), parts in sorted(matched.items()):
        every = {name.rsplit(".", 1)[1] for b, k, names in blocks if b == block and k == kind for name in names}
        every.discard("w1")
        if not every <= parts:
            missing = ", ".join(sorted(every - parts))
            key, entry = sources[(block, kind)]
            raise InvalidInputError(
                _field(f"quantization_config.{key}"),
                f"{_printable(entry, 80)!r} keeps only some of block {block}'s {kind} matrices 16-bit ({missing}"
                " not): part of a module in another format is not modelled",
                "remove quantization_config and give --weight-bits",
            )
        counts[kind] += 1
    return counts


def _group_scale_bytes(quant: dict[str, Any]) -> float:
    """Bytes of scales per quantized weight where a compressed-tensors checkpoint stores one per
    group (strategy group, group_size g): a 16-bit scale per g weights (2/g; Kimi K2 Thinking's
    int4 group 32: 4.5 bits a weight), plus a packed zero point of num_bits per g when
    asymmetric. Other strategies (channel, tensor: one scale per row or matrix) and methods: 0."""
    if str(quant.get("quant_method", "")).lower() != "compressed-tensors":
        return 0.0
    scales = set()
    for group in (quant.get("config_groups") or {}).values():
        weights = group.get("weights") if isinstance(group, dict) else None
        if not isinstance(weights, dict) or weights.get("strategy") != "group":
            scales.add(0.0)
            continue
        size, bits = weights.get("group_size"), weights.get("num_bits")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or not isinstance(bits, int):
            raise InvalidInputError(
                _field("quantization_config.config_groups"),
                f"a group strategy with group_size {size!r}",
                "give the checkpoint's group_size (a positive integer)",
            )
        zero_point = 0.0 if weights.get("symmetric", True) else bits / 8.0
        scales.add((2.0 + zero_point) / size)
    return max(scales) if scales else 0.0


def _compressed_tensors_format(quant: dict[str, Any]) -> str:
    """compressed-tensors (llm-compressor checkpoints: Red Hat / Neural Magic; Kimi K2 Thinking's
    16-bit modules and group scales are read apart, :func:`_checkpoint_16bit_modules`, :func:`_group_scale_bytes`):
    the weight format of its ``config_groups``, which must all agree. int 4 / 8 bits -> int4 /
    int8, float 8 / 4 bits -> fp8 / fp4 (NVFP4)."""
    key = "quantization_config.config_groups"
    groups = quant.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise InvalidInputError(_field(key), "missing or empty", "use the checkpoint's quantization_config")
    formats = {(4, "int"): "int4", (8, "int"): "int8", (8, "float"): "fp8", (4, "float"): "fp4"}
    found = set()
    for group in groups.values():
        weights = group.get("weights") if isinstance(group, dict) else None
        if not isinstance(weights, dict):
            raise InvalidInputError(_field(key), "a group has no weights scheme", "use the checkpoint's config")
        bits, kind = weights.get("num_bits"), weights.get("type")
        readable = isinstance(bits, int) and not isinstance(bits, bool) and isinstance(kind, str)
        scheme = (bits, kind) if readable else None
        if scheme is None or scheme not in formats:
            shown = ", ".join(_printable(str(v), 20) for v in (bits, kind))
            raise InvalidInputError(
                _field(key), f"weights of (bits, type) ({shown}) are not modelled", "use 4 or 8 bit int or float"
            )
        found.add(formats[scheme])
    if len(found) > 1:
        raise InvalidInputError(
            _field(key), f"groups store weights in different formats ({', '.join(sorted(found))})", "not modelled"
        )
    return found.pop()


def _vision_params(config: dict[str, Any], text_hidden: int) -> int:
    """Matrix parameters of a multimodal config's vision encoder and projector (its
    ``vision_config``; biases, norms and the class token left out, as everywhere here): each of
    ``num_hidden_layers`` ViT blocks 4 h^2 (q, k, v, o) + 2 h i (fc1, fc2), the patch embedding
    channels x patch^2 x h, a position embedding per patch (one more for Llama 4's class token),
    and the projector to the language model: Gemma 3's mm_input_projection h x the text hidden
    size (SigLIP-So400m: 0.42e9 in all), Llama 4's pixel-shuffle MLP (intermediate x
    projector_input_dim + projector_input_dim x projector_output_dim) and multi_modal_projector
    (vision_output_dim x the text hidden size; 0.87e9 in all, HF modeling_llama4.py). 0 without
    a vision_config."""
    vision = config.get("vision_config")
    if vision is None:
        return 0
    key = "vision_config"
    if not isinstance(vision, dict):
        raise InvalidInputError(_field(key), "expected an object", "use the checkpoint's config.json")

    def size(name: str, default: int | None = None) -> int:
        value = vision.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidInputError(
                _field(f"{key}.{name}"),
                f"expected a positive integer, got {value!r}",
                "use the checkpoint's config.json",
            )
        return value

    hidden, inner, layers = size("hidden_size"), size("intermediate_size"), size("num_hidden_layers")
    patch, image, channels = size("patch_size"), size("image_size"), size("num_channels", 3)
    llama4 = vision.get("model_type") == "llama4_vision_model"
    patches = (image // patch) ** 2 + (1 if llama4 else 0)
    encoder = layers * (4 * hidden * hidden + 2 * hidden * inner) + channels * patch * patch * hidden + patches * hidden
    if llama4:
        projector_in, projector_out = size("projector_input_dim"), size("projector_output_dim")
        projector = inner * projector_in + projector_in * projector_out + size("vision_output_dim") * text_hidden
    else:
        projector = hidden * text_hidden
    return encoder + projector


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's fields: a multimodal config (Llama 4, Gemma 3) nests them in
    ``text_config``; the quantization_config stays at the top level."""
    text = config.get("text_config")
    if text is None:
        return config
    if not isinstance(text, dict):
        raise InvalidInputError(_field("text_config"), "expected an object", "use the checkpoint's config.json")
    merged = dict(text)
    if "quantization_config" in config:
        merged["quantization_config"] = config["quantization_config"]
    return merged


def _read(path: Path) -> tuple[Path, dict[str, Any]]:
    """The config file's path and its JSON object."""
    shown = str(path) if len(str(path)) <= 200 else str(path)[:200] + "..."
    try:
        file = path / _FILE if path.is_dir() else path
        found = file.exists()
    except OSError:  # e.g. a path too long for the file system
        found = False
    if not found:
        raise InvalidInputError(
            "model",
            f"no config.json at {shown!r}",
            "give a catalog model name, or the path of a config.json or of its folder",
        )
    try:  # a regular file: a FIFO or a device (/dev/zero) is refused before it is read
        text = read_regular_text(file, "model", "give the path of a config.json or of its folder")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(
            "model", f"cannot read {shown!r} ({type(error).__name__})", "check the file's permissions and encoding"
        ) from None
    try:
        config = json.loads(text)
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

    The name is ``_name_or_path`` when the config has one, else the file's stem (a
    ``configs/qwen3-30b-a3b.json`` beside ``configs/mixtral-8x22b.json`` is ``qwen3-30b-a3b``), or,
    for a file named config.json, the folder it sits in (a downloaded checkpoint's).
    """
    file, config = _read(Path(path))
    model_type = config.get("model_type")
    supported = ", ".join(SUPPORTED_MODEL_TYPES)
    if model_type is None:
        raise InvalidInputError(_field("model_type"), "missing", f"add model_type, one of {supported}")
    if isinstance(model_type, str):
        _refuse_hybrids(config, model_type)
    if not isinstance(model_type, str) or model_type not in _FAMILIES:
        shown = _printable(model_type) if isinstance(model_type, str) else model_type
        raise InvalidInputError(
            _field("model_type"), f"unsupported model_type {shown!r}", f"use one of {supported} (docs/models.md)"
        )
    text = _text_config(config)
    _refuse_hybrids(text, model_type)
    _refuse_unread_layer_kinds(text, model_type)
    fields = _FAMILIES[model_type](text)
    fields["checkpoint_format"] = _checkpoint_format(text)
    fields["vision_params"] = _vision_params(config, int(fields["d_model"]))
    # gpt-oss's mxfp4 checkpoint quantizes only the experts (modules_to_not_convert: self_attn,
    # router, embed_tokens, lm_head stay 16-bit): partitioning.mxfp4_checkpoint_extra_bytes.
    quant = text.get("quantization_config")
    # (A dense model's mxfp4 checkpoint has no experts to single out: all of it in fp4, as before.)
    mxfp4 = isinstance(quant, dict) and str(quant.get("quant_method", "")).lower() == "mxfp4"
    fields["mxfp4_experts"] = mxfp4 and bool(fields.get("experts"))
    # An fp8 checkpoint with block scales (quant_method fp8 and weight_block_size [128, 128]:
    # DeepSeek-V3, Kimi K2, Qwen3-*-FP8) runs the engines' block-scaled fp8 kernels
    # (ModelSpec.fp8_block_scales); per-tensor/per-channel fp8 (fbgemm_fp8, ModelOpt,
    # compressed-tensors) the per-tensor ones.
    fields["fp8_block_scales"] = (
        fields["checkpoint_format"] == "fp8"
        and isinstance(quant, dict)
        and str(quant.get("quant_method", "")).lower() == "fp8"
        and bool(quant.get("weight_block_size"))
    )
    if fields["checkpoint_format"] is not None and isinstance(quant, dict):
        counts = _checkpoint_16bit_modules(quant, fields)
        if not fields["mxfp4_experts"]:  # (gpt-oss's 16-bit attention: mxfp4_experts charges it)
            fields["checkpoint_16bit_attention_layers"] = counts["attention"]
            fields["checkpoint_16bit_mlp_layers"] = counts["mlp"]
            fields["checkpoint_16bit_shared_expert_layers"] = counts["shared"]
            fields["checkpoint_scale_bytes_per_weight"] = _group_scale_bytes(quant)
    name_or_path = config.get("_name_or_path")
    unnamed = file.absolute().parent.name if file.name == _FILE else file.stem
    name = name_or_path if isinstance(name_or_path, str) and name_or_path else unnamed
    try:
        return ModelSpec(name=_printable(name), source=f"config.json at {_printable(str(file), 400)}", **fields)
    except ValidationError as error:
        raise from_validation_error(error, _FILE) from None
