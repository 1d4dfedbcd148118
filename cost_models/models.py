"""Transformer model descriptions (:class:`ModelSpec`) and the shipped model catalog.

A model is what the cost model needs to count FLOPs and bytes: shapes, FFN kind, block kind and
whether it is an encoder (no KV cache) or a decoder. Attention type follows from ``kv_heads``:
multihead (MHA) when it equals ``heads``, multiquery (MQA) when 1, grouped-query (GQA) between.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cost_models.errors import InvalidInputError, from_validation_error
from cost_models.model_counts import params_per_layer, total_params


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

    @model_validator(mode="after")
    def _heads_divisible(self) -> ModelSpec:
        if self.heads % self.kv_heads != 0:
            raise ValueError(
                f"heads ({self.heads}) is not divisible by kv_heads ({self.kv_heads}); "
                "use a kv_heads that divides heads (1 for MQA, heads for MHA)"
            )
        return self

    @property
    def attention_type(self) -> str:
        """MHA, MQA or GQA, from kv_heads."""
        if self.kv_heads == self.heads:
            return "MHA"
        return "MQA" if self.kv_heads == 1 else "GQA"

    @property
    def params_per_layer(self) -> int:
        """Matrix parameters of one block (biases and norm scales left out, as Pope et al. do)."""
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
