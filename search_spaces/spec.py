"""Study specs: what a user writes in ``studies/*.yaml``, validated by pydantic.

A spec names the model, the hardware, the workload, the design space (each dimension with its
choices), the objectives with directions, constraints (fits in memory, latency SLOs), the sampler,
seed and budget. Only safe YAML is ever loaded; every problem is an ``InvalidInputError`` naming
the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from cost_models.calibration import (
    AUTO_CALIBRATION,
    NO_CALIBRATION,
    Backend,
    CalibrationProfile,
    available_profiles,
    load_profile,
)
from cost_models.catalog_files import YAML_SUFFIXES, looks_like_path
from cost_models.deployment import MAX_CHIPS, Overlap
from cost_models.dtypes import BITS_CHOICES, BitsChoice, weight_bits_default
from cost_models.errors import InvalidInputError, from_validation_error
from cost_models.hardware import HardwareSpec, get_hardware
from cost_models.input_files import read_regular_text
from cost_models.input_ranges import (
    COST_LIMIT_USD_PER_MILLION_TOKENS_RANGE,
    LATENCY_LIMIT_S_RANGE,
    MEMORY_FRACTION_RANGE,
    PRICE_PER_CHIP_HOUR_USD_RANGE,
    REQUEST_RATE_PER_S_RANGE,
)
from cost_models.metrics import METRICS, Direction
from cost_models.models import ModelSpec, get_model
from cost_models.partitioning import AttentionSharding, FfnLayout

_STRICT = ConfigDict(frozen=True, extra="forbid")
#: How a study may be searched: Optuna's NSGA-II, TPE and random samplers, or every candidate.
Sampler = Literal["nsga2", "tpe", "random", "exhaustive"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)


class Workload(BaseModel):
    """The requests served: tokens in and out of each sequence."""

    model_config = _STRICT
    prompt_len: StrictInt = Field(gt=0, le=2**31, description="Prompt tokens per sequence.")
    gen_len: StrictInt = Field(gt=0, le=2**31, description="Generated tokens per sequence.")


def _bits_schema(schema: dict[str, Any]) -> None:
    """The JSON Schema of a list of formats takes 16, 8 and 4 as YAML numbers too, as the spec
    does (``Space._bits_as_strings``): tuner init and every shipped study write
    ``weight_bits: [16, fp8, 8, 4]``, which an editor validating with ``tuner spec --schema``
    marked invalid ("16 is not of type 'string'")."""
    numbers = [int(b) for b in BITS_CHOICES if b.isdigit()]
    schema["items"] = {"anyOf": [schema["items"], {"type": "integer", "enum": numbers}]}


class Space(BaseModel):
    """Choices per dimension; a dimension left out has the single default choice."""

    model_config = _STRICT
    chips: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Chip counts to try (a dimension), each a whole number of chips the hardware can form a "
        "mesh of; list each once. Required unless tp is given (then the chips follow: tp x pp x dp).",
    )
    mesh: Literal["auto"] | list[str] = Field(
        default="auto",
        description="'auto': every legal mesh of every chip count is a choice; "
        "or a list of meshes XxYxZ, each of one of the chip counts. The mesh carries the chips. On a GPU, "
        "a Megatron TP candidate (ws_1d, heads split) on a mesh other than 1x1xN of a listed 1x1xN is "
        "structurally invalid: the same deployment, scored alike.",
    )
    batch: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Sequences per step of the static estimate (required without a serving: section; with "
        "one it may be left out: the load is the serving section's concurrency or request rate).",
    )
    prefill_ffn_layout: list[FfnLayout] = Field(
        default=["ws_2d"],
        min_length=1,
        description="FFN partitioning of the prefill phase (Pope et al. 3.2): ws_1d is Megatron tensor "
        "parallelism, ws_2d weight-stationary over two axes, wg_* weight-gathered.",
    )
    decode_ffn_layout: list[FfnLayout] = Field(
        default=["ws_2d"], min_length=1, description="FFN partitioning of the decode phase (as prefill_ffn_layout)."
    )
    prefill_attn_sharding: list[AttentionSharding] = Field(
        default=["head"],
        min_length=1,
        description="Attention of the prefill phase split over the chips by heads or by batch (Pope et al. 3.3).",
    )
    decode_attn_sharding: list[AttentionSharding] = Field(
        default=["head"], min_length=1, description="Attention of the decode phase split by heads or by batch."
    )
    weight_bits: list[BitsChoice] = Field(
        default=["16"],
        min_length=1,
        json_schema_extra=_bits_schema,
        description="Weight format: 16 (bf16), 8 (int8), 4 (int4), fp8 (needs a chip with fp8 units) or fp4; "
        "left out: a quantized checkpoint's stored format (config.json quantization_config), else 16. Under a "
        "GPU engine fp8 runs W8A8 (fp8 activations into the GEMMs, as --quantization fp8 runs it); the others "
        "with 16-bit activations.",
    )
    kv_bits: list[BitsChoice] = Field(
        default=["16"],
        min_length=1,
        json_schema_extra=_bits_schema,
        description="KV cache format: 16 (bf16), 8 (int8), 4 (int4), fp8 or fp4.",
    )
    kv_heads: list[StrictInt | Literal["model", "mha", "mqa"]] = Field(
        default=["model"],
        min_length=1,
        description="Attention type what-if: 'model' (as published), 'mha', 'mqa', or a KV head count (GQA).",
    )
    block: list[Literal["model", "serial", "parallel"]] = Field(
        default=["model"],
        min_length=1,
        description="Transformer block what-if: 'model' (as published), 'serial' (attention then FFN) or "
        "'parallel' (attention and FFN side by side, as PaLM).",
    )
    flash_attention: list[StrictBool] = Field(
        default=[False],
        min_length=1,
        description="One fused attention operator (the score matrix never reaches memory) [true with tp].",
    )
    # GPU vocabulary: listed instead of chips and mesh (see search_spaces.space).
    tp: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="GPU parallelism as engines name it: tensor-parallel chips per stage (a dimension). "
        "Given, it replaces chips and mesh (the chips follow: tp x pp x dp; layouts are the engines' "
        "ws_1d with heads split); combinations no engine runs are infeasible trials.",
    )
    pp: list[StrictInt] | None = Field(
        default=None, min_length=1, description="Pipeline stages (with tp) [1]; at most the model's layers."
    )
    ep: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Expert-parallel ranks (with tp, MoE models) [1]; must divide the experts and tp x dp.",
    )
    dp: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Attention data-parallel ranks sharing the MoE layers (with tp; replicas for a dense "
        "model) [1]; must divide the batch.",
    )
    micro_batches: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Pipeline micro-batches (with tp) [1]; must divide batch / dp; above 1 only with a pp "
        "choice above 1. Left out with pp above 1, every pipeline is scored at 1 (search says so); the engines, "
        "and tuner estimate, run up to pp in flight.",
    )

    @model_validator(mode="after")
    def _one_vocabulary(self) -> Space:
        engine = [n for n in ("pp", "ep", "dp", "micro_batches") if getattr(self, n) is not None]
        if self.tp is None:
            if engine:
                raise ValueError(f"{engine[0]} needs tp (the engines' vocabulary); add tp: [...]")
            if self.chips is None:
                raise ValueError("chips: missing; list chip counts, or tp (with pp, ep, dp) for GPUs")
            return self
        if self.chips is not None or self.mesh != "auto":
            raise ValueError("tp replaces chips and mesh (the chips follow: tp x pp x dp); list one vocabulary")
        pope = [
            n
            for n in ("prefill_ffn_layout", "decode_ffn_layout", "prefill_attn_sharding", "decode_attn_sharding")
            if n in self.model_fields_set
        ]
        if pope:
            raise ValueError(f"{pope[0]} is Pope et al.'s vocabulary; with tp the engines run ws_1d, heads split")
        return self

    def with_model_defaults(self, model: ModelSpec) -> Space:
        """The space with the defaults that depend on the vocabulary or the model written out:
        ``flash_attention`` true with ``tp`` (the engines run fused attention), ``weight_bits`` the
        checkpoint's stored format (a quantized checkpoint runs as stored,
        cost_models.dtypes.weight_bits_default). The study stores this space
        (:meth:`StudySpec.canonical_json`), so a stored spec, where every field is written, parses
        back to the problem that was searched, and the hash tells the defaults from a choice."""
        update: dict[str, list] = {}
        if "flash_attention" not in self.model_fields_set and self.tp is not None:
            update["flash_attention"] = [True]
        if "weight_bits" not in self.model_fields_set:
            update["weight_bits"] = [weight_bits_default(model.checkpoint_format)]
        return self.model_copy(update=update) if update else self

    @field_validator("mesh", mode="before")
    @classmethod
    def _auto_or_a_list_of_meshes(cls, value: object) -> object:
        # Before the union is tried: else `mesh: 2x2x1` (one mesh, not a list) failed both members
        # and printed the first one's error, "space.mesh.literal['auto']: Input should be 'auto'",
        # as if auto were the only value.
        if isinstance(value, str) and value != "auto":
            # Shown bare only when it is plain text: a lone surrogate ("\ud800") cannot be printed.
            one = value if value.isascii() and value.isprintable() and len(value) <= 40 else "XxYxZ"
            raise ValueError(f"{value[:40]!r} is one mesh, not a list; write [{one}] (a list of meshes XxYxZ) or auto")
        if not isinstance(value, (str, list)):
            raise ValueError(f"got {value!r}; write auto or a list of meshes XxYxZ, e.g. [2x2x1]")
        bad = [mesh for mesh in value if not isinstance(mesh, str)] if isinstance(value, list) else []
        if bad:
            raise ValueError(f"got {bad[0]!r}; write each mesh as XxYxZ, e.g. [2x2x1]")
        return value

    @field_validator("mesh")
    @classmethod
    def _some_mesh(cls, value: object) -> object:
        if isinstance(value, list) and not value:
            raise ValueError("lists no mesh; write auto or at least one mesh XxYxZ")
        return value

    @field_validator("weight_bits", "kv_bits", mode="before")
    @classmethod
    def _bits_as_strings(cls, value: object) -> object:
        return [str(v) for v in value] if isinstance(value, list) else value

    @field_validator("kv_heads", mode="before")
    @classmethod
    def _named_or_counted(cls, value: object) -> object:
        # Before the union is tried: else `kv_heads: [gqa]` printed only the int member's error,
        # "kv_heads.0.int: ... write a whole number", as if model, mha and mqa were not choices.
        for choice in value if isinstance(value, list) else []:
            if isinstance(choice, bool) or not (isinstance(choice, int) or choice in ("model", "mha", "mqa")):
                raise ValueError(f"got {choice!r}; write model, mha, mqa or a KV head count (a whole number)")
        return value

    @field_validator("kv_heads")
    @classmethod
    def _head_counts(cls, value: list) -> list:
        if any(isinstance(v, int) and not 1 <= v <= 2**31 for v in value):
            raise ValueError("a KV head count must be a whole number from 1 to 2^31")
        return value

    @field_validator("chips", "batch", "tp", "pp", "ep", "dp", "micro_batches")
    @classmethod
    def _positive(cls, value: list[int] | None, info) -> list[int] | None:
        if value is None:
            return value
        top = MAX_CHIPS if info.field_name == "chips" else 2**31
        if any(v < 1 or v > top for v in value):
            raise ValueError(f"every choice must be a whole number from 1 to {top}")
        if len(set(value)) != len(value):
            raise ValueError("choices repeat; list each once")
        return value


class Objective(BaseModel):
    """A metric to optimize and which way."""

    model_config = _STRICT
    metric: str = Field(
        description="A metric name (tuner metrics lists each with its unit and meaning).",
        json_schema_extra={"enum": list(METRICS)},
    )
    direction: Literal["minimize", "maximize"] | None = Field(
        default=None, description="Which way is better [default: the metric's own direction]."
    )

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; use one of {', '.join(METRICS)}")
        return value

    @property
    def resolved_direction(self) -> Direction:
        return self.direction or METRICS[self.metric].direction


class Constraints(BaseModel):
    """Feasibility: a candidate that breaks one is infeasible, kept in the study but never on the front
    (stored with Optuna's convention: a constraint value <= 0 is feasible)."""

    model_config = _STRICT
    fits: StrictBool = Field(
        default=True,
        description="Memory per chip within capacity; with a serving: section, the engine's memory "
        "holds the weights, an iteration's activations and one whole sequence's KV cache (a deployment "
        "that does not, or cannot sustain its open-loop rate, is infeasible either way).",
    )
    # Each latency limit from a microsecond to a day, not only above 0: 1e-300 s was taken
    # (cost_models.input_ranges says why those bounds).
    max_ttft_s: StrictFloat | None = Field(
        default=None,
        ge=LATENCY_LIMIT_S_RANGE[0],
        le=LATENCY_LIMIT_S_RANGE[1],
        allow_inf_nan=False,
        description="Prefill latency SLO, seconds; with a serving: section, the TTFT under load "
        "(queueing and prefill interference included).",
    )
    max_tpot_s: StrictFloat | None = Field(
        default=None,
        ge=LATENCY_LIMIT_S_RANGE[0],
        le=LATENCY_LIMIT_S_RANGE[1],
        allow_inf_nan=False,
        description="Decode step latency SLO, seconds; with a serving: section, the mean TPOT under load.",
    )
    max_tpot_p99_s: StrictFloat | None = Field(
        default=None,
        ge=LATENCY_LIMIT_S_RANGE[0],
        le=LATENCY_LIMIT_S_RANGE[1],
        allow_inf_nan=False,
        description="99th percentile TPOT SLO under load, seconds (needs a serving: section).",
    )
    max_ttft_p90_s: StrictFloat | None = Field(
        default=None,
        ge=LATENCY_LIMIT_S_RANGE[0],
        le=LATENCY_LIMIT_S_RANGE[1],
        allow_inf_nan=False,
        description="90th percentile TTFT SLO under load, seconds (needs a serving: section): the steady "
        "state's ttft_p90_s (docs/serving.md, Percentiles: within 0.73-1.10x of tuner simulate's below capacity).",
    )
    max_ttft_p99_s: StrictFloat | None = Field(
        default=None,
        ge=LATENCY_LIMIT_S_RANGE[0],
        le=LATENCY_LIMIT_S_RANGE[1],
        allow_inf_nan=False,
        description="99th percentile TTFT SLO under load, seconds (needs a serving: section): the steady "
        "state's ttft_p99_s.",
    )
    max_cost_usd_per_million_tokens: StrictFloat | None = Field(
        default=None,
        # Bounded, not only > 0: 1e-320 (a subnormal) was taken (cost_models.metrics).
        ge=COST_LIMIT_USD_PER_MILLION_TOKENS_RANGE[0],
        le=COST_LIMIT_USD_PER_MILLION_TOKENS_RANGE[1],
        allow_inf_nan=False,
        description="Cost limit, dollars per million output tokens at price_per_chip_hour_usd (needs it): "
        "decode.cost_usd_per_million_tokens; with a serving: section, serving.cost_usd_per_million_tokens.",
    )


#: Serving modes: ``aggregated`` (prefill and decode share each engine instance), ``disaggregated``
#: (a prefill pool and a decode pool, the KV cache sent between them), ``both`` (a dimension).
ServingMode = Literal["aggregated", "disaggregated", "both"]
SERVING_MODES: tuple[str, ...] = get_args(ServingMode)


def _choices(value: list | None, what: str, low: float, high: float) -> list | None:
    if value is None:
        return value
    if any(not low <= v <= high for v in value):
        raise ValueError(f"every {what} must be from {low:g} to {high:g}")
    if len(set(value)) != len(value):
        raise ValueError("choices repeat; list each once")
    return value


class Serving(BaseModel):
    """Serving under load: each candidate is also scored by the in-flight batching steady state
    (``cost_models.serving.serve``). The load and the engine knobs listed here are dimensions of
    the search; a knob left out takes the engine's default (``ENGINE_DEFAULTS`` of the spec's
    backend). The prompt and output lengths are the workload's."""

    model_config = _STRICT
    mode: ServingMode = Field(
        default="aggregated",
        description="aggregated: prefill and decode share each engine instance (in-flight batching); "
        "disaggregated: xP prefill instances and yD decode instances (the space's mesh is a decode "
        "instance's), the KV cache sent between them; both: the mode is a dimension.",
    )
    prefill_chips: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Disaggregated: chips of one prefill instance (a dimension, every legal mesh of "
        "each count; on a GPU 1x1xN alone for ws_1d, which scores every mesh of N chips alike) "
        "[default: space.chips]; with tp, a prefill instance's TP [default: the tp choices], its DP and EP "
        "prefill_dp and prefill_ep (a decode instance takes the space's tp, dp and ep).",
    )
    prefill_instances: list[StrictInt] | None = Field(
        default=None, min_length=1, description="Disaggregated: prefill instances xP (a dimension) [default: 1]."
    )
    decode_instances: list[StrictInt] | None = Field(
        default=None, min_length=1, description="Disaggregated: decode instances yD (a dimension) [default: 1]."
    )
    prefill_dp: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Disaggregated, with tp: a prefill instance's attention data-parallel ranks (a dimension; its "
        "chips prefill TP x prefill_dp) [default: 1].",
    )
    prefill_ep: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Disaggregated, with tp: a prefill instance's expert-parallel ranks (a dimension; MoE models, "
        "dividing the experts and prefill TP x prefill_dp) [default: 1].",
    )
    concurrency: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Closed loop: clients, each sending its next request when the last one finished "
        "(a dimension). Exactly one of concurrency and request_rate.",
    )
    request_rate: list[StrictFloat] | None = Field(
        default=None,
        min_length=1,
        description="Open loop: Poisson arrivals, requests per second, each from "
        f"{REQUEST_RATE_PER_S_RANGE[0]:g} to {REQUEST_RATE_PER_S_RANGE[1]:g} (a dimension). Exactly one of "
        "concurrency and request_rate.",
    )
    prompt_len_std: StrictFloat = Field(
        default=0.0, ge=0, le=2**31, allow_inf_nan=False, description="Standard deviation of the prompt length, tokens."
    )
    gen_len_std: StrictFloat | None = Field(
        default=None,
        ge=0,
        le=2**31,
        allow_inf_nan=False,
        description="Standard deviation of the output length, tokens [default: 5% of the workload's gen_len "
        "(cost_models.serving.DEFAULT_GEN_LEN_CV), which desynchronizes a closed loop's clients; 0: every "
        "output exactly gen_len, and the first burst's groups kept].",
    )
    max_batch_size: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Most sequences running at once in the whole deployment (a dimension): under dp each rank "
        "runs ceil(this / dp), as tuner export writes it per rank [the engine's default in each dp rank, as the "
        "engine launched with its defaults runs: dp x the default]. Disaggregated: a decode instance's, and a "
        "prefill instance's unless prefill_max_batch_size is listed.",
    )
    prefill_max_batch_size: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Disaggregated: a prefill instance's batch limit, prompts at once (a dimension; each of its "
        "prefill_dp ranks ceil(this / prefill_dp)), apart from the decode instance's max_batch_size, as tuner "
        "estimate --prefill-max-batch-size [max_batch_size's choice].",
    )
    max_num_tokens: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        description="Token budget of one engine iteration, each dp rank's own (a dimension) [engine default].",
    )
    chunked_prefill: list[StrictBool] | None = Field(
        default=None,
        min_length=1,
        description="Split prompts over iterations to fit the token budget (a dimension) [engine default]. Under "
        "SGLang only true (aggregated): it mixes decodes into prefill batches only with chunked prefill "
        "(--enable-mixed-chunk), the schedule scored.",
    )
    kv_block_size: list[StrictInt] | None = Field(
        default=None, min_length=1, description="Paged KV cache block, tokens (a dimension) [engine default]."
    )
    prefix_hit_rate: StrictFloat = Field(
        default=0.0, ge=0, lt=1, allow_inf_nan=False, description="Share of each prompt found in the prefix cache."
    )
    memory_fraction: StrictFloat | None = Field(
        default=None,
        # From 0.01, not only above 0: 1e-300 was taken (cost_models.input_ranges).
        ge=MEMORY_FRACTION_RANGE[0],
        le=MEMORY_FRACTION_RANGE[1],
        allow_inf_nan=False,
        description="The engine's memory knob, read by its rule (TensorRT-LLM: of the memory weights and activations "
        "leave; vLLM: of all memory; SGLang: of all memory, for weights and KV cache) [engine default].",
    )

    @field_validator("prefill_chips", "prefill_instances", "decode_instances", "prefill_dp", "prefill_ep")
    @classmethod
    def _pools(cls, value: list[int] | None, info) -> list[int] | None:
        return _choices(value, info.field_name, 1, 2**20)

    @field_validator("concurrency")
    @classmethod
    def _clients(cls, value: list[int] | None) -> list[int] | None:
        return _choices(value, "concurrency", 1, 2**20)

    @field_validator("request_rate")
    @classmethod
    def _rates(cls, value: list[float] | None) -> list[float] | None:
        low, high = REQUEST_RATE_PER_S_RANGE
        if value is not None and any(not (low <= v <= high) for v in value):  # NaN fails too
            raise ValueError(f"every request rate must be from {low:g} to {high:g} requests per second")
        return value

    @field_validator("max_batch_size", "prefill_max_batch_size", "max_num_tokens", "kv_block_size")
    @classmethod
    def _counts(cls, value: list[int] | None, info) -> list[int] | None:
        return _choices(value, info.field_name, 1, 2**31)

    @field_validator("chunked_prefill")
    @classmethod
    def _flags(cls, value: list[bool] | None) -> list[bool] | None:
        return _choices(value, "chunked_prefill", 0, 1)

    @model_validator(mode="after")
    def _one_load(self) -> Serving:
        if (self.concurrency is None) == (self.request_rate is None):
            raise ValueError("needs exactly one of concurrency: [..] and request_rate: [..]")
        pools = [
            n
            for n in (
                "prefill_chips",
                "prefill_instances",
                "decode_instances",
                "prefill_dp",
                "prefill_ep",
                "prefill_max_batch_size",
            )
            if getattr(self, n)
        ]
        if self.mode == "aggregated" and pools:
            raise ValueError(f"{pools[0]} is for disaggregated serving; set mode: disaggregated or both")
        return self


_HOW_TO_SEARCH = {"description", "sampler", "seed", "trials"}
#: Fields added after studies were first stored: left out of the canonical JSON while unset, so a
#: spec that does not use them keeps its hash (and its stored studies stay resumable).
_OPTIONAL_SECTIONS: tuple[tuple[str, ...], ...] = (
    ("serving",),
    ("constraints", "max_tpot_p99_s"),
    # TTFT percentiles (added later): a spec without them keeps its hash.
    ("constraints", "max_ttft_p90_s"),
    ("constraints", "max_ttft_p99_s"),
    # Prices (added later): a spec without one keeps its hash.
    ("price_per_chip_hour_usd",),
    ("constraints", "max_cost_usd_per_million_tokens"),
    ("serving", "prefill_chips"),
    ("serving", "prefill_instances"),
    ("serving", "decode_instances"),
    ("serving", "prefill_dp"),
    ("serving", "prefill_ep"),
    # A prefill instance's own batch limit (added later): a spec without it keeps its hash.
    ("serving", "prefill_max_batch_size"),
    # The engines' vocabulary (added later): a space without it keeps its hash.
    *(("space", name) for name in ("tp", "pp", "ep", "dp", "micro_batches")),
)


class StudySpec(BaseModel):
    """A study: the problem (model, hardware, workload, space, objectives, constraints) and how to
    search it (sampler, seed, trials)."""

    model_config = _STRICT
    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Study name: letters, digits, '.', '_' and '-'; also the default database studies/NAME.db.",
    )
    description: str = Field(default="", description="Free text shown with the study; not part of its hash.")
    model: str = Field(
        description="Catalog name, path of a config.json, or a model YAML file (relative: to the spec's directory)."
    )
    hardware: str = Field(
        description="Catalog name or a chip YAML file (tuner hardware --template; relative: to the spec's directory)."
    )
    workload: Workload = Field(description="The requests served: prompt and generated tokens per sequence.")
    space: Space = Field(description="The design space: the choices of each dimension searched.")
    objectives: list[Objective] = Field(
        min_length=1, max_length=6, description="One to six metrics to optimize (a Pareto front when several)."
    )
    constraints: Constraints = Field(
        default=Constraints(), description="Feasibility: memory fit and latency SLOs (violations are infeasible)."
    )
    serving: Serving | None = Field(
        default=None,
        description="Serving under load (in-flight batching at a concurrency or request rate): the "
        "serving.* metrics and the SLOs under load. Absent: the static prefill/decode estimate only.",
    )
    price_per_chip_hour_usd: StrictFloat | None = Field(
        default=None,
        # Bounded, not only > 0: 1e-320 (a subnormal) was taken and priced every trial at $0.
        ge=PRICE_PER_CHIP_HOUR_USD_RANGE[0],
        le=PRICE_PER_CHIP_HOUR_USD_RANGE[1],
        allow_inf_nan=False,
        description="Your price of one chip for an hour, dollars (your provider's and contract's: the catalog "
        "has none). Enables the *.cost_usd_per_million_tokens metrics and "
        "constraints.max_cost_usd_per_million_tokens; part of the hash.",
    )
    overlap: Overlap = Field(
        default="overlapped",
        description="Collectives hidden behind compute (overlapped), or added to it. On GPUs the "
        "engines' collectives are on the critical path either way.",
    )
    calibration: str = Field(
        default="auto",
        min_length=1,
        max_length=1000,
        description=(
            "Calibration profile: auto (the chip's shipped profile), none (the pure roofline), a shipped "
            "profile name or a profile file. Part of the problem: a study scored under one profile is "
            "not resumed under another."
        ),
    )
    backend: Backend | None = Field(
        default=None,
        description="Serving engine of the profile [default: the one measured best for the chip; where none was, "
        "the first that runs on it (tuner hardware: trtllm on NVIDIA GPUs, vllm on AMD, jax on TPUs)]. Named, it "
        "must run on the chip, and it is "
        "also the engine the study deploys on: with tp, configurations it does not launch are infeasible "
        "(vLLM: ep 1 or tp x dp; TensorRT-LLM: MoE attention data parallelism on tp 1), so every front trial "
        "exports to it. Left out on a GPU, the study deploys on any GPU engine (trtllm, vllm, sglang): "
        "configurations none of them launches are infeasible (an int4 KV cache, which no engine has; with tp, "
        "degrees or a KV format each refuses), so every front trial exports to at least one; backend: jax keeps "
        "them for the JAX export.",
    )
    sampler: Sampler = Field(
        default="nsga2",
        description="How to search: Optuna's NSGA-II, TPE or random sampler, or exhaustive (every candidate). "
        "Not part of the hash.",
    )
    seed: StrictInt = Field(default=0, ge=0, le=2**32 - 1, description="Sampler seed. Not part of the hash.")
    trials: StrictInt = Field(
        default=1000,
        gt=0,
        le=10_000_000,
        description="Trials the study should hold (the budget). The exhaustive sampler's budget is the whole "
        "space, every candidate scored once (--trials N caps one run). Not part of the hash.",
    )
    #: The spec file's directory (set by :func:`load_spec`): relative model/hardware paths start there.
    _base_dir: Path | None = PrivateAttr(default=None)
    #: A model or chip a study stored by its numbers (it came from a file): used instead of a look-up
    #: (set by :func:`parse_stored_spec`).
    _stored_model: ModelSpec | None = PrivateAttr(default=None)
    _stored_hardware: HardwareSpec | None = PrivateAttr(default=None)
    #: A calibration profile a study stored by its numbers (it came from a file), as the model.
    _stored_calibration: CalibrationProfile | None = PrivateAttr(default=None)

    def resolved_model(self) -> ModelSpec:
        """The model the spec names (a stored one as stored)."""
        return self._stored_model if self._stored_model is not None else get_model(self.model_ref)

    def resolved_hardware(self) -> HardwareSpec:
        """The chip the spec names (a stored one as stored)."""
        return self._stored_hardware if self._stored_hardware is not None else get_hardware(self.hardware_ref)

    def resolved_calibration(self) -> str | CalibrationProfile:
        """What ``resolve_calibration`` reads: a profile the study stored by its numbers, else the
        spec's choice (auto, none, a shipped name, or a profile file's path, relative to the spec
        file's directory as the model's and the chip's are)."""
        if self._stored_calibration is not None:
            return self._stored_calibration
        return self._resolved(self.calibration) if _names_a_profile_file(self.calibration) else self.calibration

    def resolved_space(self) -> Space:
        """The space with its model- and vocabulary-dependent defaults written out
        (:meth:`Space.with_model_defaults`): what the study compiles and stores."""
        return self.space.with_model_defaults(self.resolved_model())

    def _resolved(self, value: str) -> str:
        """``value`` as a path from the spec file's directory when it names a file (else as
        written: a catalog name, an absolute path, or a path only the working directory holds,
        as before specs could name their files relatively)."""
        if self._base_dir is None or not looks_like_path(value) or Path(value).is_absolute():
            return value
        candidate = self._base_dir / value
        if not candidate.exists() and Path(value).exists():
            return value
        return str(candidate)

    @property
    def model_ref(self) -> str:
        """What ``get_model`` reads: a catalog name or a resolved path."""
        return self._resolved(self.model)

    @property
    def hardware_ref(self) -> str:
        """What ``get_hardware`` reads: a catalog name or a resolved path."""
        return self._resolved(self.hardware)

    @field_validator("objectives")
    @classmethod
    def _distinct(cls, value: list[Objective]) -> list[Objective]:
        names = [o.metric for o in value]
        if len(set(names)) != len(names):
            raise ValueError("an objective is listed twice")
        return value

    @model_validator(mode="after")
    def _serving_needed(self) -> StudySpec:
        if self.serving is None:
            named = [o.metric for o in self.objectives if METRICS[o.metric].needs_serving]
            if named:
                raise ValueError(f"objective {named[0]} needs a serving: section")
            for name in ("max_tpot_p99_s", "max_ttft_p90_s", "max_ttft_p99_s"):
                if getattr(self.constraints, name) is not None:
                    raise ValueError(f"constraints.{name} needs a serving: section")
            if self.space.batch is None:
                raise ValueError("space.batch is required without a serving: section")
        if self.price_per_chip_hour_usd is None:
            priced = [o.metric for o in self.objectives if METRICS[o.metric].needs_price]
            if priced:
                raise ValueError(
                    f"objective {priced[0]} needs price_per_chip_hour_usd; add price_per_chip_hour_usd: "
                    "<your dollars per chip-hour> at the top level"
                )
            if self.constraints.max_cost_usd_per_million_tokens is not None:
                raise ValueError(
                    "constraints.max_cost_usd_per_million_tokens needs price_per_chip_hour_usd; add "
                    "price_per_chip_hour_usd: <your dollars per chip-hour> at the top level"
                )
        return self

    def canonical_json(self) -> str:
        """The problem the spec defines, as sorted JSON: what the hash covers and the study stores.

        How to search it (sampler, seed, budget) and the description are left out, so a study
        can be resumed with a larger budget or another sampler."""
        data = self.model_dump(mode="json", exclude=_HOW_TO_SEARCH)
        # Defaults that depend on tp or on the model, as compiled: stored as the values they
        # stand for, so the stored spec (every field written) parses back to the same problem.
        data["space"] = self.resolved_space().model_dump(mode="json")
        # A chip or model from a YAML file is part of the problem by its numbers, not its path: a
        # study resumes wherever the files are, and not after the file changed.
        for key, ref, load in (("hardware", self.hardware_ref, get_hardware), ("model", self.model_ref, get_model)):
            stored = self._stored_hardware if key == "hardware" else self._stored_model
            if stored is not None:
                data[key] = stored.model_dump(mode="json")
            elif Path(ref).suffix.lower() in YAML_SUFFIXES:
                data[key] = load(ref).model_dump(mode="json")
        # So is a calibration profile from a file: a refit into the same file is another problem.
        calibration = self.resolved_calibration()
        if isinstance(calibration, CalibrationProfile):
            data["calibration"] = calibration.model_dump(mode="json")
        elif _names_a_profile_file(self.calibration):
            data["calibration"] = load_profile(calibration).model_dump(mode="json")
        if data["space"].get("tp") is not None:
            # The engines' vocabulary has no Pope layouts (the validator refuses them when written):
            # leave their defaults out, so the stored spec parses back.
            for name in ("prefill_ffn_layout", "decode_ffn_layout", "prefill_attn_sharding", "decode_attn_sharding"):
                data["space"].pop(name, None)
        for *parents, key in _OPTIONAL_SECTIONS:
            section = data
            for parent in parents:
                section = section.get(parent) or {}
            if section.get(key) is None:
                section.pop(key, None)
        return json.dumps(data, sort_keys=True)

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


#: Metric prefixes of the static sections, which a disaggregated candidate scores on one instance
#: (search_spaces.space._at_running_batch, _with_prefill_instances): prefill.* a prefill
#: instance's, decode.* and memory.* a decode instance's.
PER_INSTANCE_SECTIONS = ("prefill.", "decode.")


def per_instance_metric_notes(spec: StudySpec) -> list[str]:
    """What a study that may pool (serving mode disaggregated or both) should know of its
    objectives on the static sections' costs and throughputs: a disaggregated candidate scores
    them on one instance, its chips alone, where an aggregated candidate's count every chip. A
    Mixtral-8x7B mode: both study on H100s (price 2.5 $/h) put 1P x 1 + 1D x TP8 (9 chips) at a
    decode cost of $20.4 per million tokens, its 8 decode chips', against $25.6 by
    serving.cost_usd_per_million_tokens, which counts both pools: on a front beside aggregated
    candidates the prefill chips were free."""
    if spec.serving is None or spec.serving.mode == "aggregated":
        return []
    names = [o.metric for o in spec.objectives]
    pooled = [n for n in names if n.startswith(PER_INSTANCE_SECTIONS) and ("cost" in n or "throughput" in n)]
    if not pooled:
        return []
    return [
        f"objective{'s' if len(pooled) > 1 else ''} {', '.join(pooled)}: a disaggregated candidate's prefill.* "
        "section is one prefill instance's and its decode.* one decode instance's, so its costs and throughputs "
        "count that instance's chips alone, where an aggregated candidate's count every chip; "
        "serving.cost_usd_per_million_tokens and serving.tokens_per_s_per_chip count every chip of both pools"
    ]


def pipeline_notes(spec: StudySpec) -> list[str]:
    """A GPU space with pipeline stages (pp above 1) but no ``micro_batches`` scores every pipeline
    at one micro-batch, each stage idle while another runs, which is not how an engine runs one:
    vLLM, SGLang and TensorRT-LLM keep up to PP micro-batches in flight (tuner estimate's default,
    cost_models.deployment.engine_micro_batches). The spec keeps its meaning (micro_batches [1]);
    the search says so and how to search them."""
    space = spec.space
    if space.pp is None or max(space.pp) == 1 or space.micro_batches is not None:
        return []
    deepest = max(space.pp)
    choices = [m for m in (1, 2, 4, 8, 16) if m <= deepest] + ([deepest] if deepest not in (1, 2, 4, 8, 16) else [])
    return [
        f"space.pp lists {deepest} stages but micro_batches is left out (1): every pipeline is scored at one "
        "micro-batch, each stage idle while another runs, where the engines keep up to PP micro-batches in flight; "
        f"add micro_batches: {choices} to search them"
    ]


def _names_a_profile_file(calibration: str) -> bool:
    """``calibration`` names a profile file (not auto, none or a shipped profile's name)."""
    if calibration in (AUTO_CALIBRATION, NO_CALIBRATION) or calibration in available_profiles():
        return False
    return Path(calibration).suffix.lower() in YAML_SUFFIXES or looks_like_path(calibration)


def with_calibration(spec: StudySpec, calibration: str | None, backend: str | None) -> StudySpec:
    """The spec with a command line's ``--calibration``/``--backend`` in place of its own (they
    change the problem, so the study's hash)."""
    changes = {k: v for k, v in (("calibration", calibration), ("backend", backend)) if v is not None}
    return spec.model_copy(update=changes) if changes else spec


def parse_stored_spec(data: dict, base_dir: str | None = None) -> StudySpec:
    """A study's stored spec (:meth:`StudySpec.canonical_json` loaded back): a model, chip or
    calibration profile that came from a file is stored by its numbers, and is used as stored (no
    file is read). A config.json is stored by its path as the spec wrote it, which may be relative
    to the spec file's directory: ``base_dir``, that directory as the study recorded it, resolves
    it as the search did (without it, from the working directory)."""
    values = dict(data)
    profile = None
    if isinstance(values.get("calibration"), dict):
        try:
            profile = CalibrationProfile(**values["calibration"])
        except (ValidationError, TypeError):
            raise InvalidInputError(
                "stored spec: calibration", "not a calibration profile", "give the study a new name"
            ) from None
        values["calibration"] = profile.name
    stored: dict[str, ModelSpec | HardwareSpec] = {}
    for key, kind in (("model", ModelSpec), ("hardware", HardwareSpec)):
        if isinstance(values.get(key), dict):
            try:
                stored[key] = kind(**values[key])
            except ValidationError as error:
                raise from_validation_error(error, f"stored spec: {key}") from None
            values[key] = stored[key].name
    spec = parse_spec(values, "stored spec")
    model, hardware = stored.get("model"), stored.get("hardware")
    spec._stored_model = model if isinstance(model, ModelSpec) else None
    spec._stored_hardware = hardware if isinstance(hardware, HardwareSpec) else None
    spec._stored_calibration = profile
    spec._base_dir = Path(base_dir) if isinstance(base_dir, str) and base_dir else None
    return spec


def parse_spec(data: object, where: str = "spec") -> StudySpec:
    """Validate already-loaded data into a :class:`StudySpec`."""
    if not isinstance(data, dict):
        raise InvalidInputError(where, "expected a mapping at the top level", "see studies/*.yaml")
    try:
        return StudySpec(**data)
    except ValidationError as error:
        try:
            raise from_validation_error(error, where) from None
        except RecursionError:  # a value nested too deeply to describe
            raise InvalidInputError(where, "a value is nested too deeply", "see studies/*.yaml") from None
    except TypeError:  # e.g. non-string keys
        raise InvalidInputError(where, "malformed: keys must be field names", "see studies/*.yaml") from None
    except RecursionError:
        raise InvalidInputError(where, "a value is nested too deeply", "see studies/*.yaml") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping (YAML says keys are
    unique; PyYAML silently keeps the last, so a spec would be searched with a value its author
    did not mean)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise InvalidInputError(
                    "spec",
                    f"key {str(key)[:80]!r} is written twice at line {key_node.start_mark.line + 1}",
                    "keep one of them",
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Numbers in exponent notation without a dot or without an exponent sign (5e-2, 1e9, 1.0e9) are
# floats in YAML 1.2 (its core schema: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?), but
# PyYAML implements YAML 1.1, whose float needs both, and reads them as text: max_tpot_s: 5e-2
# was refused as "got '5e-2'; write a number without quotes", quotes its author never wrote.
# Only values with an exponent: plain integers keep resolving as ints.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_spec(path: str | Path) -> StudySpec:
    """Read a study spec from a YAML file with a safe loader (no object-constructing tags, no
    repeated keys)."""
    file = Path(path)
    shown = str(file) if len(str(file)) <= 200 else str(file)[:200] + "..."
    try:
        if not file.exists():
            raise InvalidInputError("spec", f"no file at {shown!r}", "pass the path of a study YAML")
        text = read_regular_text(file, "spec", "pass the path of a study YAML")  # not a FIFO or /dev/zero
    except (OSError, UnicodeDecodeError) as error:
        # The system's reason where it gives one ("File name too long", "Permission denied"),
        # not just "OSError".
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise InvalidInputError("spec", f"cannot read {shown!r}: {reason}", "check the path and the file") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no object-constructing tags
    except InvalidInputError:
        raise
    except RecursionError:
        raise InvalidInputError("spec", "YAML nested too deeply", "flatten the file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInputError(
            "spec", f"malformed YAML{where}", "fix the YAML syntax (safe YAML only, no tags)"
        ) from None
    except (ValueError, KeyError, AttributeError, TypeError, OverflowError) as error:
        # safe_load's constructors raise plain Python errors for values like '!!int abc',
        # '2001-02-30' or 5000-digit numbers.
        raise InvalidInputError(
            "spec",
            f"a YAML value cannot be read ({type(error).__name__})",
            "fix the value; plain numbers, strings and lists only",
        ) from None
    spec = parse_spec(data, file.name)
    spec._base_dir = file.resolve().parent
    return spec
