"""Transformer model descriptions (:class:`ModelSpec`) and the shipped model catalog.

A model is what the cost model needs to count FLOPs and bytes: shapes, FFN kind, block kind and
whether it is an encoder (no KV cache) or a decoder. Attention type follows from ``kv_heads``:
multihead (MHA) when it equals ``heads``, multiquery (MQA) when 1, grouped-query (GQA) between.

Mixture of experts is described by independent fields, all absent (0) for a dense model:
``experts`` routed experts per MoE block of which each token uses ``experts_per_token`` (top-k),
each an FFN of the model's ``ffn`` kind and width ``expert_d_ff``; ``shared_experts`` that every
token uses (each ``shared_expert_d_ff`` wide, default ``expert_d_ff``); and ``dense_layers``, the
blocks, which keep a dense FFN of width ``d_ff`` (DeepSeek-V3's first 3; Llama 4 Maverick's
every other block: the cost model counts blocks, not where they sit).

Multi-head latent attention (MLA, DeepSeek-V2/V3, Kimi K2) is set by ``kv_lora_rank`` > 0: each
token caches one latent of ``kv_lora_rank`` elements plus ``qk_rope_head_dim`` rotary elements
shared by all heads, instead of K and V per KV head; ``d_head`` is then the per-head non-rotary
query/key width (``qk_nope_head_dim``), ``v_head_dim`` the value width and ``q_lora_rank`` the
query compression (0: a full-rank query projection). Sliding-window attention (gpt-oss, Gemma 2/3)
is ``sliding_window`` tokens on ``sliding_window_layers`` of the blocks (the others attend to the
whole context). ``checkpoint_format`` is the stored weight format of a quantized checkpoint (from
``quantization_config``): the default weight format of its deployments.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cost_models.errors import InvalidInputError, from_validation_error
from cost_models.model_counts import active_params_per_token, params_per_layer, total_params


class ModelSpec(BaseModel):
    """Shapes of a transformer; all sizes in elements."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    source: str = Field(description="Where the numbers come from (paper, model card, config.json).")
    layers: int = Field(gt=0, description="Transformer blocks.")
    d_model: int = Field(gt=0, description="Residual stream width.")
    heads: int = Field(gt=0, description="Query heads.")
    kv_heads: int = Field(gt=0, description="Key/value heads: heads (MHA), 1 (MQA), or between (GQA).")
    d_head: int = Field(gt=0, description="Width of one attention head.")
    d_ff: int = Field(gt=0, description="FFN hidden width.")
    ffn: Literal["gelu", "swiglu"] = Field(description="gelu: 2 matrices; swiglu: 3 (gate, up, down).")
    block: Literal["serial", "parallel"] = Field(
        default="serial", description="parallel: y = x + Attn(LN(x)) + MLP(LN(x)) (PaLM, GPT-NeoX)."
    )
    vocab: int = Field(gt=0)
    kind: Literal["encoder", "decoder"] = "decoder"
    tie_embeddings: bool = Field(default=False, description="Input embedding shared with lm_head.")
    experts: int = Field(default=0, ge=0, description="Routed experts per MoE block; 0: a dense model.")
    experts_per_token: int = Field(default=0, ge=0, description="Routed experts each token uses (top-k).")
    expert_d_ff: int = Field(default=0, ge=0, description="Hidden width of one expert's FFN (of kind ffn).")
    shared_experts: int = Field(default=0, ge=0, description="Experts every token uses, besides the routed ones.")
    shared_expert_d_ff: int | None = Field(
        default=None, gt=0, description="Hidden width of one shared expert; default expert_d_ff."
    )
    dense_layers: int = Field(
        default=0,
        ge=0,
        description="Blocks of an MoE model with a dense FFN of width d_ff (DeepSeek-V3's first 3).",
    )
    moe_layer_step: int = Field(
        default=1,
        ge=1,
        description=(
            "Where the MoE blocks sit: above 1, block i (from 0) has routed experts when (i + 1) % "
            "moe_layer_step == 0, interleaved with the dense ones (Llama 4 Maverick's "
            "interleave_moe_layer_step 2, Qwen MoE's decoder_sparse_step); 1: the dense_layers come "
            "first (DeepSeek-V3) and every later block is MoE. Decides a pipeline stage's MoE blocks."
        ),
    )
    kv_lora_rank: int = Field(
        default=0, ge=0, description="MLA: width of the compressed KV latent cached per token; 0: not MLA."
    )
    q_lora_rank: int = Field(default=0, ge=0, description="MLA: query compression rank; 0: full-rank query.")
    qk_rope_head_dim: int = Field(
        default=0, ge=0, description="MLA: rotary query/key width per head (its key part cached once per token)."
    )
    v_head_dim: int = Field(default=0, ge=0, description="MLA: width of one value head; 0: d_head.")
    sliding_window: int = Field(default=0, ge=0, description="Tokens a windowed block attends to; 0: no window.")
    sliding_window_layers: int = Field(
        default=0, ge=0, description="How many blocks use sliding_window (the rest attend to everything)."
    )
    max_context: int = Field(default=0, ge=0, description="Longest context the model was trained for; 0: unknown.")
    checkpoint_format: str | None = Field(
        default=None, description="Stored weight format of a quantized checkpoint (fp8, int4, ...); None: 16-bit."
    )
    mxfp4_experts: bool = Field(
        default=False,
        description=(
            "The checkpoint stores only the routed experts in MXFP4 (4-bit elements plus an 8-bit scale per 32: "
            "4.25 bits) and every other weight 16-bit (gpt-oss's quant_method mxfp4); checkpoint_format fp4."
        ),
    )
    fp8_block_scales: bool = Field(
        default=False,
        description=(
            "The model's fp8 checkpoint (its own, checkpoint_format fp8, or the publisher's -FP8 repo that "
            "tuner export serves for fp8 weights) stores 128 x 128 block scales (quantization_config "
            "weight_block_size [128, 128]: DeepSeek-V3, Kimi K2, Qwen3-*-FP8): an fp8 deployment's experts run "
            "the block-scaled fused-MoE kernel. False: fp8 weights are quantized at load (vLLM/SGLang "
            "--quantization fp8) or stored with per-tensor/per-channel scales, which run the per-tensor fp8 kernels."
        ),
    )
    vision_params: int = Field(
        default=0,
        ge=0,
        description=(
            "Parameters of a multimodal model's vision encoder and projector (config.json's vision_config), "
            "which the engines load 16-bit beside the language model: counted in weight memory only."
        ),
    )
    checkpoint_16bit_attention_layers: int = Field(
        default=0,
        ge=0,
        description=(
            "Blocks whose attention projections the quantized checkpoint keeps 16-bit (its quantization_config's "
            "ignore / modules_to_not_convert list: every block's self_attn in Llama-3.1-405B-FP8 and Kimi K2 Thinking)."
        ),
    )
    checkpoint_16bit_mlp_layers: int = Field(
        default=0,
        ge=0,
        description="Dense-FFN blocks whose MLP the checkpoint keeps 16-bit (Llama-3.1-405B-FP8: the first and last).",
    )
    checkpoint_16bit_shared_expert_layers: int = Field(
        default=0, ge=0, description="MoE blocks whose shared experts the checkpoint keeps 16-bit (Kimi K2 Thinking)."
    )
    checkpoint_scale_bytes_per_weight: float = Field(
        default=0.0,
        ge=0.0,
        description=(
            "Bytes of quantization scales stored per quantized block weight (a 16-bit scale per group of 32: "
            "2/32), where the checkpoint's quantization_config states its groups; 0: not counted."
        ),
    )

    @model_validator(mode="after")
    def _heads_divisible(self) -> ModelSpec:
        if self.heads % self.kv_heads != 0:
            raise ValueError(
                f"heads ({self.heads}) is not divisible by kv_heads ({self.kv_heads}); "
                "use a kv_heads that divides heads (1 for MQA, heads for MHA)"
            )
        return self

    @model_validator(mode="after")
    def _experts_consistent(self) -> ModelSpec:
        if self.experts == 0:
            moe_only = ("experts_per_token", "expert_d_ff", "shared_experts", "shared_expert_d_ff", "dense_layers")
            for name in moe_only:
                if getattr(self, name):
                    raise ValueError(f"{name} is set but experts is 0; set experts (routed experts) or drop {name}")
            if self.moe_layer_step != 1:
                raise ValueError("moe_layer_step is set but experts is 0; set experts (routed experts) or drop it")
            return self
        if not 1 <= self.experts_per_token <= self.experts:
            raise ValueError(
                f"experts_per_token ({self.experts_per_token}) must be between 1 and experts ({self.experts}); "
                "set experts_per_token to the router's top-k"
            )
        if self.expert_d_ff == 0:
            raise ValueError("expert_d_ff is missing for an MoE model; set expert_d_ff (one expert's hidden width)")
        if self.shared_expert_d_ff is not None and self.shared_experts == 0:
            raise ValueError("shared_expert_d_ff is set but shared_experts is 0; set shared_experts or drop it")
        if self.dense_layers >= self.layers:
            raise ValueError(
                f"dense_layers ({self.dense_layers}) must be fewer than layers ({self.layers}); "
                "use experts 0 for a dense model"
            )
        interleaved = self.layers // self.moe_layer_step
        if self.moe_layer_step > 1 and self.dense_layers != self.layers - interleaved:
            raise ValueError(
                f"moe_layer_step {self.moe_layer_step} makes {interleaved} of {self.layers} blocks MoE, but "
                f"dense_layers ({self.dense_layers}) leaves {self.layers - self.dense_layers}; set dense_layers to "
                f"{self.layers - interleaved} or moe_layer_step to 1"
            )
        return self

    @model_validator(mode="after")
    def _latent_attention_consistent(self) -> ModelSpec:
        mla_only = ("q_lora_rank", "qk_rope_head_dim", "v_head_dim")
        if self.kv_lora_rank == 0:
            for name in mla_only:
                if getattr(self, name):
                    raise ValueError(f"{name} is set but kv_lora_rank is 0; set kv_lora_rank (MLA) or drop {name}")
        elif self.qk_rope_head_dim == 0:
            raise ValueError("an MLA model (kv_lora_rank > 0) needs qk_rope_head_dim; set it (64 in DeepSeek-V3)")
        elif self.kv_heads != self.heads:
            raise ValueError(
                f"kv_heads ({self.kv_heads}) differs from heads ({self.heads}) in an MLA model (kv_lora_rank > 0); "
                "MLA decompresses K and V for every head: set kv_heads to heads"
            )
        return self

    @model_validator(mode="after")
    def _window_consistent(self) -> ModelSpec:
        if self.sliding_window == 0:
            if self.sliding_window_layers:
                raise ValueError("sliding_window_layers is set but sliding_window is 0; set the window or drop it")
            return self
        if not 1 <= self.sliding_window_layers <= self.layers:
            raise ValueError(
                f"sliding_window_layers ({self.sliding_window_layers}) must be between 1 and layers "
                f"({self.layers}); set how many blocks use the window"
            )
        if self.max_context and self.sliding_window >= self.max_context:
            raise ValueError(
                f"sliding_window ({self.sliding_window}) is not smaller than max_context ({self.max_context}); "
                "a window that covers the whole context is no window: set sliding_window 0"
            )
        return self

    @model_validator(mode="after")
    def _checkpoint_format_known(self) -> ModelSpec:
        if self.checkpoint_format is not None:
            from cost_models.dtypes import parse_dtype

            try:
                parse_dtype(self.checkpoint_format, "checkpoint_format")
            except InvalidInputError as error:
                raise ValueError(str(error)) from None
        return self

    @model_validator(mode="after")
    def _mxfp4_experts_consistent(self) -> ModelSpec:
        if self.mxfp4_experts and (self.experts == 0 or self.checkpoint_format not in ("fp4", "mxfp4")):
            raise ValueError(
                "mxfp4_experts needs routed experts (experts > 0) and checkpoint_format fp4; set both or drop it"
            )
        return self

    @model_validator(mode="after")
    def _mixed_checkpoint_consistent(self) -> ModelSpec:
        counts = {
            "checkpoint_16bit_attention_layers": self.layers,
            "checkpoint_16bit_mlp_layers": self.layers - self.moe_layers,
            "checkpoint_16bit_shared_expert_layers": self.moe_layers if self.shared_experts else 0,
        }
        for name, most in counts.items():
            if getattr(self, name) > most:
                raise ValueError(f"{name} ({getattr(self, name)}) exceeds the model's {most} such blocks; lower it")
        if self.mixed_checkpoint and self.checkpoint_format is None:
            raise ValueError(
                "checkpoint_16bit_* or checkpoint_scale_bytes_per_weight describe a quantized checkpoint; "
                "set checkpoint_format or drop them"
            )
        return self

    @property
    def mixed_checkpoint(self) -> bool:
        """Whether the checkpoint keeps some block modules 16-bit or stores group scales beside its
        quantized weights (read by the costs where a deployment serves it in checkpoint_format)."""
        return bool(
            self.checkpoint_16bit_attention_layers
            or self.checkpoint_16bit_mlp_layers
            or self.checkpoint_16bit_shared_expert_layers
            or self.checkpoint_scale_bytes_per_weight
        )

    @property
    def mixed_checkpoint_dtype(self) -> int:
        """The dtype code (cost_models.dtypes) of a mixed checkpoint's format; -1 for any other
        model (its costs are one format throughout)."""
        if not self.mixed_checkpoint or self.checkpoint_format is None:
            return -1
        from cost_models.dtypes import parse_dtype

        return parse_dtype(self.checkpoint_format, "checkpoint_format")

    def _ffn_elements(self, d_ff: int) -> int:
        return (3 if self.ffn == "swiglu" else 2) * self.d_model * d_ff

    @property
    def checkpoint_16bit_shares(self) -> tuple[float, float, float, float]:
        """Shares of the checkpoint kept 16-bit: of the attention projections, of the dense FFN
        blocks' weights, of the shared experts' weights, and of every block weight but the routed
        experts' (the last for the memory per chip, which the layouts split alike); all 0 when none."""
        attention = self.params_per_layer - self._ffn_elements(self.d_ff)
        dense_blocks = self.layers - self.moe_layers
        shared = self._ffn_elements(self.shared_d_ff)
        rest = (
            self.layers * attention
            + dense_blocks * self._ffn_elements(self.d_ff)
            + self.moe_layers * (shared + self.d_model * self.experts)
        )
        kept = (
            self.checkpoint_16bit_attention_layers * attention
            + self.checkpoint_16bit_mlp_layers * self._ffn_elements(self.d_ff)
            + self.checkpoint_16bit_shared_expert_layers * shared
        )
        return (
            self.checkpoint_16bit_attention_layers / self.layers,
            self.checkpoint_16bit_mlp_layers / dense_blocks if dense_blocks else 0.0,
            self.checkpoint_16bit_shared_expert_layers / self.moe_layers if self.moe_layers else 0.0,
            kept / rest if rest else 0.0,
        )

    @property
    def is_mla(self) -> bool:
        """Whether attention is multi-head latent attention (a compressed KV latent is cached)."""
        return self.kv_lora_rank > 0

    @property
    def attention_type(self) -> str:
        """MLA (a latent cached), else MHA, MQA or GQA from kv_heads."""
        if self.is_mla:
            return "MLA"
        if self.kv_heads == self.heads:
            return "MHA"
        return "MQA" if self.kv_heads == 1 else "GQA"

    @property
    def is_moe(self) -> bool:
        """Whether some blocks have routed experts."""
        return self.experts > 0

    @property
    def moe_layers(self) -> int:
        """Blocks with routed experts (every block after the dense ones); 0 for a dense model."""
        return self.layers - self.dense_layers if self.experts else 0

    @property
    def shared_d_ff(self) -> int:
        """Hidden width of all shared experts together (0 when there are none)."""
        return self.shared_experts * (self.shared_expert_d_ff or self.expert_d_ff)

    def _moe_args(self) -> dict[str, int]:
        return dict(
            moe_layers=self.moe_layers,
            experts=self.experts,
            experts_per_token=self.experts_per_token,
            expert_d_ff=self.expert_d_ff,
            shared_d_ff=self.shared_d_ff,
        )

    def _mla_args(self) -> dict[str, int]:
        return dict(
            kv_lora_rank=self.kv_lora_rank,
            q_lora_rank=self.q_lora_rank,
            qk_rope_head_dim=self.qk_rope_head_dim,
            v_head_dim=self.v_head_dim,
        )

    def _count_args(self) -> dict[str, object]:
        """Every shape argument of cost_models.model_counts' whole-model counts."""
        return dict(
            layers=self.layers,
            d_model=self.d_model,
            heads=self.heads,
            kv_heads=self.kv_heads,
            d_head=self.d_head,
            d_ff=self.d_ff,
            gated_ffn=self.ffn == "swiglu",
            vocab=self.vocab,
            tie_embeddings=self.tie_embeddings,
            **self._moe_args(),
            **self._mla_args(),
        )

    @property
    def params_per_layer(self) -> int:
        """Matrix parameters of one dense block (biases and norm scales left out, as Pope et al.
        do); an MoE model's blocks differ, see :attr:`params`."""
        return int(
            params_per_layer(
                self.d_model,
                self.heads,
                self.kv_heads,
                self.d_head,
                self.d_ff,
                self.ffn == "swiglu",
                **self._mla_args(),
            )
        )

    @property
    def params(self) -> int:
        """Parameters: blocks plus embedding, plus lm_head when it is not tied to the embedding."""
        return int(total_params(**self._count_args()))

    @property
    def active_params(self) -> int:
        """Parameters one token's forward pass uses: :attr:`params` with only the top-k routed
        experts of each MoE block (the embedding counted, as MoE papers do); equal to
        :attr:`params` for a dense model."""
        return int(active_params_per_token(**self._count_args()))


def _catalog_text() -> str:
    return resources.files("cost_models").joinpath("catalog/models.yaml").read_text()


@cache
def model_catalog() -> dict[str, ModelSpec]:
    """The shipped models, by name (``cost_models/catalog/models.yaml``)."""
    # libyaml's parser when PyYAML has it (its wheels do): the same values, about 10x faster than the
    # pure-Python one (0.15 s of every `tuner pareto` on a compact study went to this file).
    raw = yaml.load(_catalog_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    catalog = {}
    for name, fields in raw.items():
        try:
            catalog[name] = ModelSpec(name=name, **fields)
        except ValidationError as error:  # a broken shipped catalog is a bug, say where
            raise from_validation_error(error, f"models.yaml:{name}") from None
    return catalog


def get_model(name_or_path: str) -> ModelSpec:
    """A catalog model by name, a model YAML file in the catalog's schema (``tuner models
    --template``), or a Hugging Face ``config.json`` on disk (nothing is downloaded)."""
    from cost_models.catalog_files import YAML_SUFFIXES, load_entry, looks_like_path, unknown_name_error

    catalog = model_catalog()
    if name_or_path in catalog:
        return catalog[name_or_path]
    path = Path(name_or_path)
    if path.suffix.lower() in YAML_SUFFIXES:
        model = load_entry(path, "model", ModelSpec, "tuner models --template")
        shipped = catalog.get(model.name)
        if shipped is not None and shipped != model:
            raise InvalidInputError(
                f"model: {name_or_path}: name",
                f"{model.name!r} is a catalog model with other numbers",
                "give your model another name (name: my-model)",
            )
        return model
    if looks_like_path(name_or_path):
        from cost_models.hf_config import model_from_hf_config

        return model_from_hf_config(path)
    raise unknown_name_error(
        "model",
        "model",
        name_or_path,
        catalog,
        "tuner models",
        ", the path of a config.json, or a model YAML file (tuner models --template)",
    )
