"""Transformer model descriptions (:class:`ModelSpec`) and the shipped model catalog.

A model is what the cost model needs to count FLOPs and bytes: shapes, FFN kind, block kind and
whether it is an encoder (no KV cache) or a decoder. Attention type follows from ``kv_heads``:
multihead (MHA) when it equals ``heads``, multiquery (MQA) when 1, grouped-query (GQA) between.

Mixture of experts is described by independent fields, all absent (0) for a dense model:
``experts`` routed experts per MoE block of which each token uses ``experts_per_token`` (top-k),
each an FFN of the model's ``ffn`` kind and width ``expert_d_ff``; ``shared_experts`` that every
token uses (each ``shared_expert_d_ff`` wide, default ``expert_d_ff``); and ``dense_layers``, the
first blocks, which keep a dense FFN of width ``d_ff`` (DeepSeek-V3's first 3).
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
        default=0, ge=0, description="The first blocks of an MoE model, with a dense FFN of width d_ff."
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
        return self

    @property
    def attention_type(self) -> str:
        """MHA, MQA or GQA, from kv_heads."""
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

    @property
    def params_per_layer(self) -> int:
        """Matrix parameters of one dense block (biases and norm scales left out, as Pope et al.
        do); an MoE model's blocks differ, see :attr:`params`."""
        return int(
            params_per_layer(self.d_model, self.heads, self.kv_heads, self.d_head, self.d_ff, self.ffn == "swiglu")
        )

    @property
    def params(self) -> int:
        """Parameters: blocks plus embedding, plus lm_head when it is not tied to the embedding."""
        return int(
            total_params(
                self.layers,
                self.d_model,
                self.heads,
                self.kv_heads,
                self.d_head,
                self.d_ff,
                self.ffn == "swiglu",
                self.vocab,
                self.tie_embeddings,
                **self._moe_args(),
            )
        )

    @property
    def active_params(self) -> int:
        """Parameters one token's forward pass uses: :attr:`params` with only the top-k routed
        experts of each MoE block (the embedding counted, as MoE papers do); equal to
        :attr:`params` for a dense model."""
        return int(
            active_params_per_token(
                self.layers,
                self.d_model,
                self.heads,
                self.kv_heads,
                self.d_head,
                self.d_ff,
                self.ffn == "swiglu",
                self.vocab,
                self.tie_embeddings,
                **self._moe_args(),
            )
        )


def _catalog_text() -> str:
    return resources.files("cost_models").joinpath("catalog/models.yaml").read_text()


@cache
def model_catalog() -> dict[str, ModelSpec]:
    """The shipped models, by name (``cost_models/catalog/models.yaml``)."""
    raw = yaml.safe_load(_catalog_text())
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
