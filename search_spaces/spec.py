"""Study specs: what a user writes in ``studies/*.yaml``, validated by pydantic.

A spec names the model, the hardware, the workload, the design space (each dimension with its
choices), the objectives with directions, constraints (fits in memory, latency SLOs), the sampler,
seed and budget. Only safe YAML is ever loaded; every problem is an ``InvalidInputError`` naming
the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from cost_models.calibration import Backend
from cost_models.deployment import MAX_CHIPS, Overlap
from cost_models.dtypes import BitsChoice
from cost_models.errors import InvalidInputError, from_validation_error
from cost_models.metrics import METRICS, Direction
from cost_models.partitioning import AttentionSharding, FfnLayout

_STRICT = ConfigDict(frozen=True, extra="forbid")
#: How a study may be searched: Optuna's NSGA-II, TPE and random samplers, or every candidate.
Sampler = Literal["nsga2", "tpe", "random", "exhaustive"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)


class Workload(BaseModel):
    model_config = _STRICT
    prompt_len: StrictInt = Field(gt=0, le=2**31, description="Prompt tokens per sequence.")
    gen_len: StrictInt = Field(gt=0, le=2**31, description="Generated tokens per sequence.")


class Space(BaseModel):
    """Choices per dimension; a dimension left out has the single default choice."""

    model_config = _STRICT
    chips: list[StrictInt] = Field(min_length=1)
    mesh: Literal["auto"] | list[str] = Field(
        default="auto",
        description="'auto': every legal mesh of every chip count is a choice; "
        "or a list of meshes XxYxZ, each of one of the chip counts. The mesh carries the chips.",
    )
    batch: list[StrictInt] = Field(min_length=1)
    prefill_ffn_layout: list[FfnLayout] = Field(default=["ws_2d"], min_length=1)
    decode_ffn_layout: list[FfnLayout] = Field(default=["ws_2d"], min_length=1)
    prefill_attn_sharding: list[AttentionSharding] = Field(default=["head"], min_length=1)
    decode_attn_sharding: list[AttentionSharding] = Field(default=["head"], min_length=1)
    weight_bits: list[BitsChoice] = Field(default=["16"], min_length=1)
    kv_bits: list[BitsChoice] = Field(default=["16"], min_length=1)
    kv_heads: list[StrictInt | Literal["model", "mha", "mqa"]] = Field(
        default=["model"],
        min_length=1,
        description="Attention type what-if: 'model' (as published), 'mha', 'mqa', or a KV head count (GQA).",
    )
    block: list[Literal["model", "serial", "parallel"]] = Field(default=["model"], min_length=1)
    flash_attention: list[bool] = Field(default=[False], min_length=1)

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

    @field_validator("kv_heads")
    @classmethod
    def _head_counts(cls, value: list) -> list:
        if any(isinstance(v, int) and not 1 <= v <= 2**31 for v in value):
            raise ValueError("a KV head count must be a whole number from 1 to 2^31")
        return value

    @field_validator("chips", "batch")
    @classmethod
    def _positive(cls, value: list[int], info) -> list[int]:
        top = MAX_CHIPS if info.field_name == "chips" else 2**31
        if any(v < 1 or v > top for v in value):
            raise ValueError(f"every choice must be a whole number from 1 to {top}")
        if len(set(value)) != len(value):
            raise ValueError("choices repeat; list each once")
        return value


class Objective(BaseModel):
    model_config = _STRICT
    metric: str
    direction: Literal["minimize", "maximize"] | None = None

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
    """Optuna's convention: a constraint value <= 0 is feasible."""

    model_config = _STRICT
    fits: bool = Field(default=True, description="Memory per chip within capacity.")
    max_ttft_s: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="Prefill latency SLO, seconds."
    )
    max_tpot_s: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="Decode step latency SLO, seconds."
    )


_HOW_TO_SEARCH = {"description", "sampler", "seed", "trials"}


class StudySpec(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    model: str = Field(description="Catalog name or path of a config.json.")
    hardware: str
    workload: Workload
    space: Space
    objectives: list[Objective] = Field(min_length=1, max_length=6)
    constraints: Constraints = Constraints()
    overlap: Overlap = "overlapped"
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
        default=None, description="Serving engine of the profile [default: the one measured best for the chip]."
    )
    sampler: Sampler = "nsga2"
    seed: StrictInt = Field(default=0, ge=0, le=2**32 - 1)
    trials: StrictInt = Field(default=1000, gt=0, le=10_000_000)

    @field_validator("objectives")
    @classmethod
    def _distinct(cls, value: list[Objective]) -> list[Objective]:
        names = [o.metric for o in value]
        if len(set(names)) != len(names):
            raise ValueError("an objective is listed twice")
        return value

    def canonical_json(self) -> str:
        """The problem the spec defines, as sorted JSON: what the hash covers and the study stores.

        How to search it (sampler, seed, budget) and the description are left out, so a study
        can be resumed with a larger budget or another sampler."""
        return json.dumps(self.model_dump(mode="json", exclude=_HOW_TO_SEARCH), sort_keys=True)

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


def with_calibration(spec: StudySpec, calibration: str | None, backend: str | None) -> StudySpec:
    """The spec with a command line's ``--calibration``/``--backend`` in place of its own (they
    change the problem, so the study's hash)."""
    changes = {k: v for k, v in (("calibration", calibration), ("backend", backend)) if v is not None}
    return spec.model_copy(update=changes) if changes else spec


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


def load_spec(path: str | Path) -> StudySpec:
    """Read a study spec from a YAML file with ``yaml.safe_load`` (no object-constructing tags)."""
    file = Path(path)
    shown = str(file) if len(str(file)) <= 200 else str(file)[:200] + "..."
    try:
        if not file.is_file():
            raise InvalidInputError("spec", f"no file at {shown!r}", "pass the path of a study YAML")
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(
            "spec", f"cannot read {shown!r}: {type(error).__name__}", "check the path and the file"
        ) from None
    try:
        data = yaml.safe_load(text)
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
    return parse_spec(data, file.name)
