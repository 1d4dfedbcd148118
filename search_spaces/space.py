"""A design space as a value object, compiled from a study spec, and its vectorized evaluation.

:class:`SearchSpace` holds the dimensions and their static choice lists (Optuna rejects choice lists
that change between trials). :func:`evaluate` scores any number of candidates, given as one index
per dimension, in one call of the cost model.

The chip count is not a dimension of its own: the ``mesh`` dimension lists every legal mesh of
every chip count the spec allows, and a mesh's chips are the product of its axes. Sampled
independently, chips and mesh would mostly pair a mesh with a chip count it does not have (two
thirds of random proposals, a quarter of NSGA-II's, on the shipped studies). What can still be
impossible (KV heads that do not divide the heads) is structurally infeasible: a positive first
constraint, not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from cost_models.calibration import CalibrationProfile, check_engine_runs, resolve_calibration, serving_engine
from cost_models.deployment import DeploymentEstimate, estimate, estimate_report
from cost_models.deployments import (
    BLOCKS,
    GPU_ENGINES,
    KV_HEAD_SPLITTING_ENGINES,
    Deployment,
    Deployments,
    check_engine_kv_block_size,
    engine_kv_formats,
    engine_problem_mask,
    kv_heads_split_problem,
    make_deployments,
    parallel_problem_mask,
)
from cost_models.dtypes import BF16, FP8, dtype_name, parse_dtype
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec
from cost_models.metrics import Direction, metric_arrays
from cost_models.models import ModelSpec
from cost_models.partitioning import ATTENTION_SHARDINGS, FFN_LAYOUTS
from cost_models.topology import chips_offered, network_for, parse_mesh, straddling_tp_groups
from search_spaces.spec import StudySpec

# The serving model (cost_models.serving, .disaggregated and what they import: ~0.05 s of every
# command's imports here, bench/bench_reads.py) is loaded where a serving study first needs it:
# a study without a serving: section (a PaLM TPU study's resume, pareto, show) never calls it.
if TYPE_CHECKING:
    from cost_models.disaggregated import DisaggregatedEstimate
    from cost_models.serving import ServingEstimate, ServingWorkloads

#: Order of the dimensions in every space (and of Optuna's parameters). A GPU space (``tp``
#: listed) has ``ENGINE_DIMENSIONS`` instead: ``tp``, ``pp``, ``ep``, ``dp`` and ``micro_batches``
#: in place of ``mesh`` and the layouts: the engines' vocabulary, whose chips follow (TP x PP x DP)
#: and whose layouts are the engines' (ws_1d, heads split); the two never mix in one space.
DIMENSIONS = (
    "mesh",
    "batch",
    "prefill_ffn_layout",
    "decode_ffn_layout",
    "prefill_attn_sharding",
    "decode_attn_sharding",
    "weight_bits",
    "kv_bits",
    "kv_heads",
    "block",
    "flash_attention",
)
ENGINE_DIMENSIONS = (
    "tp",
    "pp",
    "ep",
    "dp",
    "micro_batches",
    *(name for name in DIMENSIONS if name != "mesh" and not name.endswith(("_layout", "_sharding"))),
)
#: Dimensions of a study with a ``serving:`` section, after the deployment's: the load (one of
#: concurrency and request_rate) and the engine knobs (the engine's default where not listed).
SERVING_DIMENSIONS = (
    "concurrency",
    "request_rate",
    "max_batch_size",
    "max_num_tokens",
    "chunked_prefill",
    "kv_block_size",
)
#: Dimensions of disaggregated serving (``mode: disaggregated`` or ``both``): whether a candidate
#: is disaggregated (``both`` only), a prefill instance's mesh, and the instances of each pool.
POOL_DIMENSIONS = (
    "disaggregated",
    "prefill_mesh",
    "prefill_instances",
    "decode_instances",
    "prefill_dp",
    "prefill_ep",
    "prefill_max_batch_size",
)
#: A prefill instance's attention DP and EP (engine vocabulary; dimensions only where the spec lists them).
PREFILL_DEGREES = ("prefill_dp", "prefill_ep")
#: The :class:`Deployments` column each dimension sets.
DEPLOYMENT_COLUMN = {
    "mesh": "mesh",
    "tp": "mesh",  # a 1 x 1 x TP mesh
    "pp": "pipeline_parallel",
    "ep": "expert_parallel",
    "dp": "data_parallel",
    "micro_batches": "micro_batches",
    "batch": "batch",
    "prefill_ffn_layout": "prefill_ffn_layout",
    "decode_ffn_layout": "decode_ffn_layout",
    "prefill_attn_sharding": "prefill_attn_sharding",
    "decode_attn_sharding": "decode_attn_sharding",
    "weight_bits": "weight_dtype",
    "kv_bits": "kv_dtype",
    "kv_heads": "kv_heads",
    "block": "parallel_block",
    "flash_attention": "flash_attention",
}


@dataclass(frozen=True)
class SearchSpace:
    """Dimensions in a fixed order. Each has its choices twice: ``dimensions`` holds the labels
    Optuna stores (str, int or bool: "4x4x4", "ws_2d", "8"), ``values`` the same choices as the
    deployment's typed column (a (k, 3) mesh array, layout and dtype codes, counts, flags), so a
    candidate becomes a :class:`Deployments` row by indexing, never by parsing a label."""

    dimensions: dict[str, tuple]
    values: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Candidates in the full cartesian product (structurally infeasible ones included)."""
        return int(np.prod([len(c) for c in self.dimensions.values()], dtype=np.float64))

    def all_indices(self) -> dict[str, np.ndarray]:
        """Every combination, as one index array per dimension (the exhaustive enumeration)."""
        grids = np.meshgrid(*[np.arange(len(c)) for c in self.dimensions.values()], indexing="ij")
        return {name: grid.ravel() for name, grid in zip(self.dimensions, grids, strict=True)}

    def indices_of(self, params: list[dict]) -> dict[str, np.ndarray]:
        """Index arrays for candidates given as {dimension: label} dicts (Optuna's params)."""
        lookup = {name: {choice: i for i, choice in enumerate(choices)} for name, choices in self.dimensions.items()}
        return {name: np.array([lookup[name][p[name]] for p in params], dtype=np.int64) for name in self.dimensions}

    def params_of(self, indices: dict[str, np.ndarray], row: int) -> dict:
        """The labels of candidate ``row`` (what Optuna stores as its params)."""
        return {name: self.dimensions[name][int(indices[name][row])] for name in self.dimensions}

    def columns_of(self, indices: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The :class:`Deployments` columns of candidates given by index."""
        return {
            DEPLOYMENT_COLUMN[name]: self.values[name][indices[name]]
            for name in self.dimensions
            if name in DEPLOYMENT_COLUMN
        }

    def serving_columns_of(self, indices: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The :class:`ServingWorkloads` columns the serving dimensions set, by index."""
        return {name: self.values[name][indices[name]] for name in self.dimensions if name in SERVING_DIMENSIONS}

    def pool_columns_of(self, indices: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Disaggregated serving's columns (empty without it), by index."""
        return {name: self.values[name][indices[name]] for name in self.dimensions if name in POOL_DIMENSIONS}


@dataclass(frozen=True)
class ConstraintColumn:
    """One constraint of a study (Optuna's convention: a value <= 0 is feasible)."""

    name: str
    description: str
    compute: Callable[[Evaluation], np.ndarray]


@dataclass(frozen=True)
class CompiledStudy:
    """A spec with its model, hardware and space resolved: everything evaluation needs."""

    spec: StudySpec
    model: ModelSpec
    hardware: HardwareSpec
    space: SearchSpace
    calibration: CalibrationProfile | None = None
    engine: str = "trtllm"  # whose defaults the serving knobs left out take
    #: Deployment columns every candidate shares (an engine space's layouts), by column name.
    fixed_columns: dict[str, int] = field(default_factory=dict)

    @cached_property
    def objective_names(self) -> list[str]:
        return [o.metric for o in self.spec.objectives]

    @cached_property
    def directions(self) -> list[Direction]:
        return [o.resolved_direction for o in self.spec.objectives]

    @cached_property
    def constraints(self) -> tuple[ConstraintColumn, ...]:
        """The study's constraints, by name; the first says whether a candidate can exist at all."""
        c = self.spec.constraints
        if self.spec.serving is not None:
            return self._serving_constraints()
        columns = [
            ConstraintColumn(
                "structurally_valid",
                "KV heads divide the heads; an engine can run the tp, pp, ep, dp (on a GPU with no backend "
                "named, some GPU engine launches the candidate, its KV format too); a GPU Megatron TP "
                "deployment (ws_1d, heads split) is on 1x1xN (its other meshes are the same deployment)",
                lambda e: np.where(e.valid, 0.0, 1.0),
            )
        ]
        if c.fits:
            columns.append(
                ConstraintColumn(
                    "fits_in_memory",
                    "memory per chip over capacity, minus 1",
                    lambda e: e.result.memory.total_bytes_per_chip / e.result.memory.capacity_bytes_per_chip - 1.0,
                )
            )
        if c.max_ttft_s is not None:
            limit_ttft = c.max_ttft_s
            columns.append(
                ConstraintColumn(
                    "max_ttft_s",
                    "prefill latency minus the TTFT limit, s",
                    lambda e: e.result.prefill.latency_s - limit_ttft,
                )
            )
        if c.max_tpot_s is not None:
            limit_tpot = c.max_tpot_s
            columns.append(
                ConstraintColumn(
                    "max_tpot_s",
                    "decode step latency minus the TPOT limit, s",
                    lambda e: e.result.decode_step_latency_s - limit_tpot,
                )
            )
        if c.max_cost_usd_per_million_tokens is not None:
            columns.append(
                ConstraintColumn(
                    "max_cost_usd_per_million_tokens",
                    "dollars per million output tokens of the decode minus the limit",
                    _over_cost(
                        "decode.cost_usd_per_million_tokens",
                        c.max_cost_usd_per_million_tokens,
                        self.spec.price_per_chip_hour_usd,
                    ),
                )
            )
        return tuple(columns)

    def _serving_constraints(self) -> tuple[ConstraintColumn, ...]:
        """Under load: the SLOs apply to the serving TTFT and TPOT; a deployment that does not
        fit its engine's memory or cannot sustain its load is infeasible."""
        c = self.spec.constraints
        columns = [
            ConstraintColumn(
                "structurally_valid",
                "KV heads divide the heads; an engine can run the tp (a prefill pool's too; on a GPU with no "
                "backend named, some GPU engine launches the candidate, its KV format too); an unchunked "
                "prompt fits the token budget; a GPU Megatron TP deployment or prefill instance (ws_1d, heads "
                "split) is on 1x1xN (its other meshes are the same deployment)",
                lambda e: np.where(e.valid, 0.0, 1.0),
            )
        ]
        if c.fits:
            columns.append(
                ConstraintColumn(
                    "fits_in_memory",
                    "1 where the engine's memory cannot hold weights, activations and one sequence's KV cache",
                    lambda e: np.where(_served(e).fits, 0.0, 1.0),
                )
            )
        columns.append(
            ConstraintColumn(
                "stable",
                "1 where the deployment cannot sustain its load",
                lambda e: np.where(_served(e).stable, 0.0, 1.0),
            )
        )
        for name, key, limit in (
            ("max_ttft_s", "ttft_s", c.max_ttft_s),
            ("max_tpot_s", "tpot_s", c.max_tpot_s),
            ("max_tpot_p99_s", "tpot_p99_s", c.max_tpot_p99_s),
            ("max_ttft_p90_s", "ttft_p90_s", c.max_ttft_p90_s),
            ("max_ttft_p99_s", "ttft_p99_s", c.max_ttft_p99_s),
        ):
            if limit is not None:
                columns.append(ConstraintColumn(name, f"serving {key} minus the limit, s", _over(key, limit)))
        if c.max_cost_usd_per_million_tokens is not None:
            columns.append(
                ConstraintColumn(
                    "max_cost_usd_per_million_tokens",
                    "serving dollars per million output tokens minus the limit",
                    _over_cost(
                        "serving.cost_usd_per_million_tokens",
                        c.max_cost_usd_per_million_tokens,
                        self.spec.price_per_chip_hour_usd,
                    ),
                )
            )
        return tuple(columns)

    @cached_property
    def constraint_names(self) -> list[str]:
        return [c.name for c in self.constraints]


def _served(e: Evaluation) -> ServingEstimate:
    assert e.serving is not None, "a serving constraint of a study without serving"
    return e.serving


def _over(key: str, limit: float) -> Callable[[Evaluation], np.ndarray]:
    def compute(e: Evaluation) -> np.ndarray:
        value = getattr(_served(e), key) - limit
        return np.where(np.isfinite(value), value, PENALTY)  # unstable: infinite latency

    return compute


def _over_cost(metric: str, limit: float, price_per_chip_hour_usd: float | None) -> Callable[[Evaluation], np.ndarray]:
    """A dollar metric at the spec's price minus its limit (the metric registry's arithmetic,
    cost_models.metrics.usd_per_million_tokens); a deployment serving no tokens: the penalty."""

    def compute(e: Evaluation) -> np.ndarray:
        value = metric_arrays(
            e.result, e.deployments, [metric], e.serving, price_per_chip_hour_usd=price_per_chip_hour_usd
        )
        over = value[metric] - limit
        return np.where(np.isfinite(over), over, PENALTY)

    return compute


def _mesh_choices(
    spec: StudySpec, hardware: HardwareSpec, chip_counts: list[int] | None = None, field: str = "space.chips"
) -> list[tuple[int, int, int]]:
    network = network_for(hardware)
    space = spec.space
    counts = (space.chips or []) if chip_counts is None else chip_counts
    for chips in counts:
        if not network.legal_meshes(chips):
            raise InvalidInputError(
                field,
                f"{chips} chips form no legal {hardware.name} mesh",
                "use chip counts the hardware offers",
            )
    if chip_counts is not None or space.mesh == "auto":
        return sorted({m for chips in counts for m in network.legal_meshes(chips)})
    meshes = []
    for text in space.mesh:
        mesh = parse_mesh(text)  # the spec is the one place a mesh is written as text
        network.check_mesh(mesh)
        if int(np.prod(mesh)) not in counts:
            raise InvalidInputError(
                "space.mesh",
                f"{text} has {int(np.prod(mesh))} chips, not one of space.chips {space.chips}",
                "list meshes of the listed chip counts",
            )
        meshes.append(mesh)
    return meshes


def _kv_head_choices(spec: StudySpec, model: ModelSpec) -> list[int]:
    kv_heads: list[int] = []
    for choice in spec.space.kv_heads:
        named = {"model": model.kv_heads, "mha": model.heads, "mqa": 1}
        value = named.get(choice, choice) if isinstance(choice, str) else choice
        if not isinstance(value, int) or value < 1:
            raise InvalidInputError(
                "space.kv_heads", f"bad choice {choice!r}", "use model, mha, mqa or a positive head count"
            )
        if value not in kv_heads:
            kv_heads.append(value)
    if not any(model.heads % k == 0 for k in kv_heads):
        raise InvalidInputError(
            "space.kv_heads",
            f"no choice divides {model.name}'s {model.heads} heads",
            "use model, mha, mqa or a divisor of the head count",
        )
    return kv_heads


def compile_study(spec: StudySpec) -> CompiledStudy:
    """Resolve names and 'auto'/'model' choices; refuse spaces that can hold nothing."""
    model = spec.resolved_model()
    if model.kind == "encoder":
        raise InvalidInputError(
            "model",
            f"{model.name} is an encoder; a study searches decoder deployments (prefill and decode)",
            "use a decoder model",
        )
    hardware = spec.resolved_hardware()
    space = spec.resolved_space()  # defaults of the model and vocabulary written out
    if space.tp is not None:
        return _compile_engine_space(spec, model, hardware)
    meshes = _mesh_choices(spec, hardware)
    kv_heads = _kv_head_choices(spec, model)
    blocks = list(dict.fromkeys(model.block if b == "model" else b for b in space.block))
    for name in ("weight_bits", "kv_bits"):
        for bits in getattr(space, name):
            hardware.parse_formats(**{f"space.{name}": bits})  # fp8 only where the chip has it
    labels: dict[str, tuple] = {
        "mesh": tuple("x".join(map(str, m)) for m in meshes),
        "batch": tuple(space.batch or ()),
        "prefill_ffn_layout": tuple(dict.fromkeys(space.prefill_ffn_layout)),
        "decode_ffn_layout": tuple(dict.fromkeys(space.decode_ffn_layout)),
        "prefill_attn_sharding": tuple(dict.fromkeys(space.prefill_attn_sharding)),
        "decode_attn_sharding": tuple(dict.fromkeys(space.decode_attn_sharding)),
        "weight_bits": tuple(dict.fromkeys(space.weight_bits)),
        "kv_bits": tuple(dict.fromkeys(space.kv_bits)),
        "kv_heads": tuple(kv_heads),
        "block": tuple(blocks),
        "flash_attention": tuple(dict.fromkeys(space.flash_attention)),
    }
    values = {
        "mesh": np.array(meshes, dtype=np.float64).reshape(-1, 3),
        "batch": np.array(labels["batch"], dtype=np.float64),
        **{
            name: np.array([FFN_LAYOUTS.index(v) for v in labels[name]], dtype=np.int64)
            for name in ("prefill_ffn_layout", "decode_ffn_layout")
        },
        **{
            name: np.array([ATTENTION_SHARDINGS.index(v) for v in labels[name]], dtype=np.int64)
            for name in ("prefill_attn_sharding", "decode_attn_sharding")
        },
        **{
            name: np.array([parse_dtype(v, name) for v in labels[name]], dtype=np.int64)
            for name in ("weight_bits", "kv_bits")
        },
        "kv_heads": np.array(labels["kv_heads"], dtype=np.float64),
        "block": np.array([BLOCKS.index(b) == 1 for b in labels["block"]]),
        "flash_attention": np.array(labels["flash_attention"], dtype=bool),
    }
    return _finish_compile(spec, model, hardware, labels, values)


def _compile_engine_space(spec: StudySpec, model: ModelSpec, hardware: HardwareSpec) -> CompiledStudy:
    """A GPU space in the engines' vocabulary: tp, pp, ep, dp, micro_batches (and the rest of the
    space) as dimensions; the layouts are Megatron TP's (ws_1d, heads split) and attention is fused
    unless the space says otherwise. A combination no engine runs, or a chip count the hardware
    does not offer, is an infeasible trial (:func:`structurally_valid`), not an error."""
    space = spec.resolved_space()
    assert space.tp is not None
    degrees = {name: tuple(getattr(space, name) or (1,)) for name in ("tp", "pp", "ep", "dp", "micro_batches")}
    if spec.serving is not None:
        # The serving model charges TP, EP and attention DP (cost_models.serving.serve: each DP
        # rank's own scheduler and KV cache, the MoE layers shared), an aggregated instance's or
        # a disaggregated decode instance's alike (cost_models.disaggregated: the pools' ranks);
        # a study's prefill instance is a TP group (prefill_chips wide, DP and EP 1: tuner
        # estimate --prefill-dp/--prefill-ep score others), and no mode runs a pipeline.
        beyond = [n for n in ("pp", "micro_batches") if degrees[n] != (1,)]
        if beyond:
            raise InvalidInputError(
                f"space.{beyond[0]}",
                "the serving model charges tensor, expert and data parallelism only",
                "search pp/micro_batches without a serving: section, or list only 1",
            )
    if model.experts == 0 and degrees["ep"] != (1,):
        raise InvalidInputError("space.ep", f"{model.name} has no experts", "leave ep out for a dense model")
    if model.experts > 0 and all(model.experts % e for e in degrees["ep"]):
        # Each EP rank holds whole experts (cost_models.deployments.engine_problem_mask, as
        # tuner estimate --ep refuses): ep: [16] for Mixtral's 8 experts left every candidate
        # out, added 0 trials, exited 0 and said "run tuner search" to the user who just had.
        divisors = [k for k in range(1, model.experts + 1) if model.experts % k == 0]
        raise InvalidInputError(
            "space.ep",
            f"no choice divides the {model.experts} experts of {model.name} (each EP rank holds whole experts)",
            f"use ep among {', '.join(map(str, divisors))}",
        )
    if max(degrees["pp"]) == 1 and max(degrees["micro_batches"]) > 1:
        # Micro-batches fill a pipeline (Narayanan et al. 2021, 2.2); without stages every such
        # candidate is left out (structurally_valid, as tuner estimate refuses --pp 1
        # --micro-batches 4): micro_batches: [2] with pp left out stored no trial under the
        # exhaustive sampler and exited 0 saying "run tuner search", and made every NSGA-II
        # trial infeasible ("relax the constraints").
        raise InvalidInputError(
            "space.micro_batches",
            f"{max(degrees['micro_batches'])} micro-batches need pipeline stages and pp lists only 1",
            "add pp choices above 1 (e.g. pp: [1, 2]), or leave micro_batches out",
        )
    if (spec.backend is None or spec.backend in GPU_ENGINES) and all(model.heads % t for t in degrees["tp"]):
        # Every GPU engine splits the attention heads evenly over the TP ranks
        # (cost_models.deployments.engine_problem_mask): with no tp choice dividing them every
        # trial is infeasible (the exhaustive sampler stored none), and the front's advice,
        # "relax the constraints", pointed away from the cause.
        divisors = [k for k in range(1, model.heads + 1) if model.heads % k == 0]
        raise InvalidInputError(
            "space.tp",
            f"no choice divides the {model.heads} attention heads of {model.name} (engines split them evenly)",
            f"use tp among {', '.join(map(str, divisors))}",
        )
    for name in ("weight_bits", "kv_bits"):
        for bits in getattr(space, name):
            hardware.parse_formats(**{f"space.{name}": bits})
    blocks = list(dict.fromkeys(model.block if b == "model" else b for b in space.block))
    labels: dict[str, tuple] = {
        **degrees,
        "batch": tuple(space.batch or ()),
        "weight_bits": tuple(dict.fromkeys(space.weight_bits)),
        "kv_bits": tuple(dict.fromkeys(space.kv_bits)),
        "kv_heads": tuple(_kv_head_choices(spec, model)),
        "block": tuple(blocks),
        "flash_attention": tuple(dict.fromkeys(space.flash_attention)),
    }
    values = {
        "tp": np.array([(1, 1, t) for t in degrees["tp"]], dtype=np.float64).reshape(-1, 3),
        **{name: np.array(degrees[name], dtype=np.float64) for name in ("pp", "ep", "dp", "micro_batches")},
        "batch": np.array(labels["batch"], dtype=np.float64),
        **{
            name: np.array([parse_dtype(v, name) for v in labels[name]], dtype=np.int64)
            for name in ("weight_bits", "kv_bits")
        },
        "kv_heads": np.array(labels["kv_heads"], dtype=np.float64),
        "block": np.array([BLOCKS.index(b) == 1 for b in labels["block"]]),
        "flash_attention": np.array(labels["flash_attention"], dtype=bool),
    }
    ws_1d = FFN_LAYOUTS.index("ws_1d")
    return _finish_compile(
        spec, model, hardware, labels, values, fixed={"prefill_ffn_layout": ws_1d, "decode_ffn_layout": ws_1d}
    )


def _finish_compile(
    spec: StudySpec,
    model: ModelSpec,
    hardware: HardwareSpec,
    labels: dict[str, tuple],
    values: dict[str, np.ndarray],
    fixed: dict[str, int] | None = None,
) -> CompiledStudy:
    """The serving dimensions, the calibration and the engine: what both vocabularies share."""
    space = spec.space
    if space.batch is None:  # a serving study: the load is its concurrency or request rate
        del labels["batch"], values["batch"]
    if spec.backend is not None:
        check_engine_runs(
            spec.backend,
            hardware,
            fix=lambda runs: f"set backend: {runs[0]} in the spec (or another of {', '.join(runs)}), or leave it out",
        )
    kv_formats = engine_kv_formats(spec.backend)
    if kv_formats is not None:
        # A KV cache the named engine has no dtype for would be scored, then refused by the
        # export (tuner.export: no engine has an int4 cache; vLLM none in fp4).
        bad = [str(b) for b in labels["kv_bits"] if dtype_name(parse_dtype(b, "space.kv_bits")) not in kv_formats]
        if bad:
            runs = [b for b in ("16", "8", "fp8", "fp4") if dtype_name(parse_dtype(b, "space.kv_bits")) in kv_formats]
            raise InvalidInputError(
                "space.kv_bits",
                f"{', '.join(bad)} with backend {spec.backend}: it has no such KV cache",
                f"use {', '.join(runs)} (8 runs as fp8, the same bytes)",
            )
    try:
        profile = resolve_calibration(spec.resolved_calibration(), hardware, spec.backend)
    except InvalidInputError as error:
        if error.field != "backend" or spec.backend is None:
            raise
        # resolve_calibration words its fix for estimate's flags ("drop --backend"); a study's
        # backend and calibration are spec fields, which search's flags override.
        theirs = resolve_calibration(spec.resolved_calibration(), hardware).backend  # type: ignore[union-attr]
        raise InvalidInputError(
            "backend",
            error.problem,
            f"set backend: {theirs} in the spec (or --backend {theirs}), or calibration: auto "
            f"(--calibration auto) for {spec.backend}'s own profile",
        ) from None
    engine = serving_engine(spec.backend, profile, hardware)
    if spec.serving is not None:
        serving_labels = _serving_choices(spec, engine)
        labels.update(serving_labels)
        values.update(
            {
                name: np.array(choices, dtype=bool if name == "chunked_prefill" else np.float64)
                for name, choices in serving_labels.items()
            }
        )
        if spec.serving.mode != "aggregated":
            _add_pool_dimensions(spec, model, hardware, labels, values)
    return CompiledStudy(spec, model, hardware, SearchSpace(labels, values), profile, engine, fixed or {})


def _add_pool_dimensions(
    spec: StudySpec,
    model: ModelSpec,
    hardware: HardwareSpec,
    labels: dict[str, tuple],
    values: dict[str, np.ndarray],
) -> None:
    """Disaggregated serving's dimensions: the mode (``both`` only), a prefill instance's mesh
    and the instances of each pool. In the engines' vocabulary (``tp``) a prefill instance is a
    TP group of ``prefill_chips`` (default: the tp choices), the mesh 1 x 1 x TP a decode
    instance's tp is; otherwise every legal mesh of ``prefill_chips`` (default: space.chips)."""
    serving = spec.serving
    assert serving is not None
    if serving.mode == "both":
        labels["disaggregated"] = (False, True)
        values["disaggregated"] = np.array([False, True])
    if "tp" in labels:
        # Listed counts the hardware cannot form are refused, as in a mesh space; a tp choice it
        # does not offer (the default) makes infeasible trials, as that tp does (_engine_problems).
        for chips in serving.prefill_chips or ():
            if not network_for(hardware).legal_meshes(chips):
                raise InvalidInputError(
                    "serving.prefill_chips",
                    f"{chips} chips form no legal {hardware.name} mesh",
                    "use chip counts the hardware offers",
                )
        listed = serving.prefill_chips or ()
        if listed and (spec.backend is None or spec.backend in GPU_ENGINES) and all(model.heads % c for c in listed):
            # A prefill instance is a TP group whose ranks split the heads evenly, as space.tp's
            # (above, _compile_engine_space): with no choice dividing them every disaggregated
            # candidate is structurally invalid, and the exhaustive search stored none (prefill
            # TP 3 for llama-3-8b's 32 heads: 0 trials added, exit 0, and the study report said
            # "the study holds no trial yet: run tuner search", the command just run).
            divisors = [k for k in range(1, model.heads + 1) if model.heads % k == 0]
            raise InvalidInputError(
                "serving.prefill_chips",
                f"no choice divides the {model.heads} attention heads of {model.name} (a prefill instance "
                "is a TP group; engines split the heads evenly)",
                f"use prefill_chips among {', '.join(map(str, divisors))}",
            )
        prefill_meshes = [(1, 1, chips) for chips in listed or labels["tp"]]
    else:
        counts = serving.prefill_chips or spec.space.chips
        prefill_meshes = _mesh_choices(spec, hardware, counts, "serving.prefill_chips")
        if (
            hardware.kind == "gpu"
            and set(labels["prefill_ffn_layout"]) == {"ws_1d"}
            and set(labels["prefill_attn_sharding"]) == {"head"}
        ):
            # Megatron TP on a switched network: every mesh of N chips scores as 1x1xN (the
            # axes split nothing differently) and exports as TP N: one deployment, kept once.
            # (Batch-sharded attention splits the KV cache by the mesh's axes: llama-3-70b's
            # batch 16 on 32 H100s holds 1.4 GB of KV per chip on 1x1x32, 0.36 GB on 1x2x16.)
            twins = _tp_mesh_twins(np.array(prefill_meshes), prefill_meshes)
            prefill_meshes = [m for m, twin in zip(prefill_meshes, twins, strict=True) if not twin]
    listed_degrees = [name for name in PREFILL_DEGREES if getattr(serving, name)]
    if listed_degrees and "tp" not in labels:
        raise InvalidInputError(
            f"serving.{listed_degrees[0]}",
            "a prefill instance's DP and EP are the engines' vocabulary",
            "search the space's tp (with its dp and ep), or drop it",
        )
    for name in listed_degrees:
        labels[name] = tuple(getattr(serving, name))
        values[name] = np.array(labels[name], dtype=np.float64)
    if serving.prefill_ep and model.experts == 0 and serving.prefill_ep != [1]:
        raise InvalidInputError("serving.prefill_ep", f"{model.name} has no experts", "leave prefill_ep out")
    if serving.prefill_ep and model.experts and all(model.experts % e for e in serving.prefill_ep):
        raise InvalidInputError(
            "serving.prefill_ep",
            f"no choice divides the {model.experts} experts of {model.name} (each EP rank holds whole experts)",
            f"use prefill_ep among {', '.join(str(k) for k in range(1, model.experts + 1) if model.experts % k == 0)}",
        )
    labels["prefill_mesh"] = tuple("x".join(map(str, m)) for m in prefill_meshes)
    values["prefill_mesh"] = np.array(prefill_meshes, dtype=np.float64).reshape(-1, 3)
    for name in ("prefill_instances", "decode_instances"):
        labels[name] = tuple(getattr(serving, name) or (1,))
        values[name] = np.array(labels[name], dtype=np.float64)
    if serving.prefill_max_batch_size:  # a dimension only where listed (else max_batch_size's)
        labels["prefill_max_batch_size"] = tuple(serving.prefill_max_batch_size)
        values["prefill_max_batch_size"] = np.array(labels["prefill_max_batch_size"], dtype=np.float64)


def _tp_mesh_twins(meshes: np.ndarray, choices) -> np.ndarray:
    """(n,) bool: meshes (rows of ``meshes``) that a 1x1xN mesh of as many chips among
    ``choices`` stands for on a GPU under ws_1d with head-sharded attention (scored alike to the
    bit, exported as one TP N group: checked over llama-3-8b/70b, Mixtral and DeepSeek-V3 on
    h100-sxm, a100-80gb, b200, gb200, l40s and mi300x at 2-32 chips, calibrated or not)."""
    meshes = np.asarray(meshes, dtype=np.float64).reshape(-1, 3)
    tp_groups = {int(np.prod(m)) for m in choices if m[0] == 1 and m[1] == 1}
    chips = np.prod(meshes, axis=1).astype(np.int64)
    return (meshes[:, 0] * meshes[:, 1] > 1) & np.isin(chips, list(tp_groups))


def _serving_choices(spec: StudySpec, engine: str) -> dict[str, tuple]:
    """The serving dimensions: the load, and each engine knob (its default when not listed)."""
    from cost_models.serving import ENGINE_DEFAULTS

    serving = spec.serving
    assert serving is not None
    defaults = ENGINE_DEFAULTS[engine]
    labels: dict[str, tuple] = {}
    if serving.concurrency is not None:
        labels["concurrency"] = tuple(serving.concurrency)
    if serving.request_rate is not None:
        labels["request_rate"] = tuple(serving.request_rate)
    for name in ("max_batch_size", "max_num_tokens", "chunked_prefill", "kv_block_size"):
        chosen = getattr(serving, name)
        labels[name] = tuple(chosen) if chosen is not None else (defaults[name],)
    _refuse_engine_block_sizes(spec.backend, labels["kv_block_size"])
    uncached = spec.workload.prompt_len * (1.0 - serving.prefix_hit_rate)
    if not any(labels["chunked_prefill"]) and max(labels["max_num_tokens"]) < uncached:
        raise InvalidInputError(
            "serving.max_num_tokens",
            f"every token budget is below the {uncached:g} uncached prompt tokens and prefill is not chunked",
            "raise max_num_tokens to the prompt length or add chunked_prefill: [true]",
        )
    return labels


def refuse_unscored_schedules(study: CompiledStudy) -> None:
    """Refuse a study to search whose candidates would be scored as a schedule their engine does
    not run: aggregated SGLang with chunked prefill off runs prefill and decode batches apart, not
    the mixed iterations the serving model scores (cost_models.serving.UNMIXED_SGLANG_PROBLEM), as
    tuner estimate and simulate refuse --no-chunked-prefill. Refused with the spec, before any
    trial, rather than per candidate (a chunked_prefill axis under SGLang would otherwise store
    them, and main's front of such a study held one). Not in :func:`compile_study`: a study stored
    before this rule still compiles, to be read and exported (the export chunks such a trial)."""
    from cost_models.serving import UNMIXED_SGLANG_PROBLEM

    serving = study.spec.serving
    if serving is None or study.engine != "sglang" or serving.mode == "disaggregated":
        return  # a disaggregated pool mixes nothing under any engine
    if not all(study.space.dimensions["chunked_prefill"]):
        raise InvalidInputError(
            "serving.chunked_prefill",
            UNMIXED_SGLANG_PROBLEM,
            "set chunked_prefill: [true], or backend: vllm or trtllm"
            + (", or mode: disaggregated" if serving.mode == "both" else ""),
        )


def _refuse_engine_block_sizes(backend: str | None, blocks: tuple) -> None:
    """A named backend is the engine the study deploys on: a KV block size it cannot run would
    be scored as is and exported as another (tuner.export rounds it, with a note): the rule
    tuner estimate and simulate apply (cost_models.deployments.check_engine_kv_block_size)."""
    check_engine_kv_block_size(backend, blocks, field="serving.kv_block_size", named="backend")


def structurally_valid(study: CompiledStudy, indices: dict[str, np.ndarray]) -> np.ndarray:
    """Candidates that can exist: KV heads divide the heads, an engine runs the degrees (tp), and
    (serving) an unchunked prompt fits the iteration's token budget; a GPU deployment (or a
    disaggregated prefill instance) running Megatron TP (ws_1d, head-sharded attention) on a mesh
    other than 1x1xN is left to its 1x1xN twin."""
    space = study.space
    valid = np.mod(study.model.heads, space.values["kv_heads"][indices["kv_heads"]]) == 0
    if "tp" in indices:
        valid &= ~_engine_problems(study, indices)
    valid &= ~_no_gpu_engine_launches(study, indices)
    serving = study.spec.serving
    if serving is not None:
        chunked = space.values["chunked_prefill"][indices["chunked_prefill"]]
        budget = space.values["max_num_tokens"][indices["max_num_tokens"]]
        valid &= chunked | (study.spec.workload.prompt_len * (1.0 - serving.prefix_hit_rate) <= budget)
        if "disaggregated" in indices:  # mode both: an aggregated candidate has no pools to vary
            names = POOL_DIMENSIONS[1:]
            pools = [indices[name] for name in names if name in indices]
            valid &= (indices["disaggregated"] == 1) | np.all([p == 0 for p in pools], axis=0)
        if "prefill_mesh" in indices and "prefill_ffn_layout" in indices and study.hardware.kind == "gpu":
            # A ws_1d prefill instance on another mesh of N chips is its 1x1xN twin (a space
            # whose Pope layouts keep the mesh choice); an aggregated candidate has no pool.
            choices = space.values["prefill_mesh"]
            twin = _tp_mesh_twins(choices, choices)[indices["prefill_mesh"]]
            pooled = indices["disaggregated"] == 1 if "disaggregated" in indices else True
            valid &= ~(twin & _megatron_tp(space, indices, ("prefill",)) & pooled)
    if "mesh" in indices and study.hardware.kind == "gpu":
        # The same for the deployment's own mesh (mesh: auto on a GPU listed every mesh of N
        # chips: six identical trials of llama-3-8b on 4 H100s, the front six rows of one).
        choices = space.values["mesh"]
        twin = _tp_mesh_twins(choices, choices)[indices["mesh"]]
        valid &= ~(twin & _megatron_tp(space, indices, ("prefill", "decode")))
    return valid


#: The dimensions the backend-dependent rules read (:func:`_engine_problems`,
#: :func:`_no_gpu_engine_launches`): the grid :func:`same_engine_rules` compares them on.
_ENGINE_RULE_DIMENSIONS = (
    "tp", "pp", "ep", "dp", "micro_batches", "batch", "kv_heads", "kv_bits", "prefill_mesh", *PREFILL_DEGREES,
    "disaggregated",
)  # fmt: skip
#: Beyond this many grid points :func:`same_engine_rules` answers False (refuse, do not compare).
_ENGINE_RULE_GRID_LIMIT = 2_000_000


def same_engine_rules(a: CompiledStudy, b: CompiledStudy) -> bool:
    """Whether two compilations of one space score the same problem though their specs differ in
    ``backend`` or ``calibration``: the same profile, the same engine, the same dimensions, and
    the same candidates left out as no engine launching them. ``backend`` left out on a GPU means
    "any GPU engine launches it" (:func:`_no_gpu_engine_launches`), named it means "this engine
    does" (:func:`_engine_problems`): equal on a space whose degrees none of the engine's own
    rules touch (a Pope-vocabulary space, a dense model without EP), not in general (vLLM's EP
    rule on an MoE). Compared on the grid of the dimensions those rules read, the others at their
    first choice (they are read by neither rule); a grid over the limit answers False."""
    if a.calibration != b.calibration or a.engine != b.engine or a.space.dimensions != b.space.dimensions:
        return False
    names = [n for n in _ENGINE_RULE_DIMENSIONS if n in a.space.dimensions]
    sizes = [len(a.space.dimensions[n]) for n in names]
    if np.prod(sizes, dtype=np.float64) > _ENGINE_RULE_GRID_LIMIT:
        return False
    grids = np.meshgrid(*[np.arange(k) for k in sizes], indexing="ij")
    n = grids[0].size if grids else 1
    indices = {name: np.zeros(n, dtype=np.int64) for name in a.space.dimensions}
    indices.update({name: grid.ravel() for name, grid in zip(names, grids, strict=True)})

    def left_out(study: CompiledStudy) -> np.ndarray:
        bad = _no_gpu_engine_launches(study, indices)
        return bad | _engine_problems(study, indices) if "tp" in indices else bad

    return bool(np.array_equal(left_out(a), left_out(b)))


def unnamed_backend_engines(study: CompiledStudy) -> tuple[str, ...]:
    """The GPU serving engines a study without a ``backend`` may deploy on: those of
    :data:`GPU_ENGINES` that run on its GPU. None with a backend named (``backend: jax`` on a GPU
    keeps Pope et al.'s what-ifs, int4 KV among them, for the JAX export), or on a TPU or a CPU,
    whose unnamed backend is JAX (cost_models.calibration.serving_engine: "jax on TPUs")."""
    if study.spec.backend is not None or study.hardware.kind != "gpu":
        return ()
    return tuple(e for e in study.hardware.serving_engines() if e in GPU_ENGINES)


def _no_gpu_engine_launches(study: CompiledStudy, indices: dict[str, np.ndarray]) -> np.ndarray:
    """Candidates of a GPU study without a ``backend`` that no GPU serving engine on the chip
    launches: every one of them refuses the KV-cache format (no engine has an int4 cache, vLLM
    none in fp4: cost_models.deployments.ENGINE_KV_CACHE_DTYPES, which tuner export refuses by)
    or, in the engines' vocabulary (tp), the degrees (:func:`engine_problem_mask`, and vLLM's and
    SGLang's KV-head split). An unnamed backend means "any GPU engine", not "no engine": a front
    member must export to at least one (before, l70-formats on an H200 put int4 KV caches on 5
    of its 6 front rows, which vllm, sglang and trtllm exports all refused). One engine must
    launch the whole candidate: fp4 KV (not vLLM) with an MoE's attention DP at tp > 1 (not
    TensorRT-LLM) needs SGLang's rules. All False with a backend named (its own rules apply:
    :func:`_finish_compile`, :func:`_engine_problems`) or where no GPU engine runs."""
    n = len(next(iter(indices.values())))
    engines = unnamed_backend_engines(study)
    if not engines:
        return np.zeros(n, dtype=bool)
    kv_codes = study.space.values["kv_bits"][indices["kv_bits"]]
    kv_names = np.array([dtype_name(int(c)) for c in kv_codes])
    parallel = None
    if "tp" in indices:
        model = study.model
        tp = study.space.values["tp"][indices["tp"], 2]
        ep, dp = (study.space.values[k][indices[k]] for k in ("ep", "dp"))
        kv_heads = (
            study.space.values["kv_heads"][indices["kv_heads"]] if "kv_heads" in indices else np.full(n, model.kv_heads)
        )
        kv_heads = np.where(model.is_mla, 0, kv_heads)
        parallel = (model, tp, ep, dp, kv_heads)
    refused_by_all = np.ones(n, dtype=bool)
    for engine in engines:
        refused = ~np.isin(kv_names, engine_kv_formats(engine) or ())
        if parallel is not None:
            model, tp, ep, dp, kv_heads = parallel
            refused |= engine_problem_mask(engine, model.heads, model.experts, tp, ep, dp)
            if engine in KV_HEAD_SPLITTING_ENGINES:
                refused |= kv_heads_split_problem(kv_heads, tp)
        refused_by_all &= refused
    return refused_by_all


def _megatron_tp(space: SearchSpace, indices: dict[str, np.ndarray], phases: tuple[str, ...]) -> np.ndarray:
    """Candidates whose ``phases`` all run ws_1d with head-sharded attention (Megatron TP)."""
    ws_1d, head = FFN_LAYOUTS.index("ws_1d"), ATTENTION_SHARDINGS.index("head")
    megatron = np.ones(len(next(iter(indices.values()))), dtype=bool)
    for phase in phases:
        megatron &= space.values[f"{phase}_ffn_layout"][indices[f"{phase}_ffn_layout"]] == ws_1d
        megatron &= space.values[f"{phase}_attn_sharding"][indices[f"{phase}_attn_sharding"]] == head
    return megatron


@dataclass(frozen=True)
class Evaluation:
    """Scores of n candidates: their deployments, objective values (n, k) and named constraint
    columns (<= 0 feasible)."""

    indices: dict[str, np.ndarray]
    deployments: Deployments
    values: np.ndarray
    constraint_columns: dict[str, np.ndarray]
    valid: np.ndarray
    result: DeploymentEstimate
    serving: ServingEstimate | None = None  # with a serving: section, the steady state under load
    workloads: ServingWorkloads | None = None
    pools: Pools | None = None  # disaggregated serving's rows and pools

    @property
    def constraints(self) -> np.ndarray:
        """(n, m) in the study's constraint order."""
        return np.stack(list(self.constraint_columns.values()), axis=1)

    @property
    def feasible(self) -> np.ndarray:
        return np.all(self.constraints <= 0, axis=1)

    def __len__(self) -> int:
        return len(self.valid)


# Penalty objective values of structurally impossible candidates: finite so that every sampler's
# arithmetic stays finite; such trials are infeasible anyway (first constraint > 0).
PENALTY = 1e30


def _engine_problems(study: CompiledStudy, indices: dict[str, np.ndarray]) -> np.ndarray:
    """Engine-vocabulary candidates no engine runs, or whose chips (TP x PP x DP) the hardware
    does not offer, or whose heads do not divide over TP (no GPU engine launches them); with a
    ``backend`` named in the spec, also those that engine does not launch
    (:func:`cost_models.deployments.engine_problem_mask`: vLLM's EP is 1 or TP x DP, ...), so the
    front holds only deployments it can export."""
    values = {name: study.space.values[name][indices[name]] for name in ("pp", "ep", "dp", "micro_batches")}
    tp = study.space.values["tp"][indices["tp"], 2]
    if "batch" in indices:
        batch = study.space.values["batch"][indices["batch"]]
    elif study.spec.serving is not None:
        # The load sets the static batch, DP x a rank's (evaluate, _at_running_batch): it splits.
        batch = values["dp"] * values["micro_batches"]
    else:
        batch = np.ones(len(tp))
    model = study.model
    # The candidate's KV heads (the model's, or a kv_heads what-if; none for MLA's one latent): the
    # engine the study costs (its backend, else its profile's), if vLLM or SGLang, refuses a TP
    # they do not split over (deployments.kv_heads_split_problem: Phi-4's 10 at TP 4 or 8).
    kv_heads = (
        study.space.values["kv_heads"][indices["kv_heads"]]
        if "kv_heads" in indices
        else np.full(len(tp), model.kv_heads)
    )
    kv_heads = np.where(model.is_mla, 0, kv_heads)
    splits_kv = study.engine in KV_HEAD_SPLITTING_ENGINES
    bad = parallel_problem_mask(
        model.experts, model.layers, tp, values["pp"], values["ep"], values["dp"], values["micro_batches"], batch
    )
    bad |= engine_problem_mask(study.spec.backend, model.heads, model.experts, tp, values["ep"], values["dp"])
    if splits_kv:
        bad |= kv_heads_split_problem(kv_heads, tp)
    # Micro-batches without pipeline stages: the estimate runs the m micro-batches one after
    # another on the one stage (a decode step of qwen3-235b-a22b, TP 8 EP 8, batch 64 on GB200s:
    # 20.7 ms at m 1, 66.7 ms at m 4), which no engine does: they run the batch in one step (the
    # export drops m, the twin at m 1). Micro-batches exist to fill a pipeline (Narayanan et al.
    # 2021, section 2.2).
    bad |= (values["pp"] == 1) & (values["micro_batches"] > 1)
    chips = (tp * values["pp"] * values["dp"]).astype(np.int64)
    bad |= ~chips_offered(study.hardware, tp, values["pp"], values["dp"], model.experts)
    # TP groups cut by a node's edge (TP 6 x PP 4 on 8-GPU nodes): their all-reduces cross the
    # network, which the TP mesh alone does not show (cost_models.topology.straddling_tp_groups).
    bad |= straddling_tp_groups(study.hardware, tp, chips)
    if "prefill_mesh" in indices:  # a prefill instance: TP x prefill_dp x prefill_ep (_disaggregated)
        prefill_tp = study.space.values["prefill_mesh"][indices["prefill_mesh"], 2]
        prefill_dp, prefill_ep = _prefill_degrees(study, indices, len(tp))
        pooled = indices["disaggregated"] == 1 if "disaggregated" in indices else np.ones(len(tp), dtype=bool)
        prefill_offered = chips_offered(study.hardware, prefill_tp, values["pp"], prefill_dp, model.experts)
        bad |= pooled & (
            _prefill_parallel_problems(study, prefill_tp, values["pp"], prefill_dp, prefill_ep)
            | engine_problem_mask(study.spec.backend, model.heads, model.experts, prefill_tp, prefill_ep, prefill_dp)
            | (splits_kv & kv_heads_split_problem(kv_heads, prefill_tp))
            | ~prefill_offered
        )
    return bad


def _prefill_degrees(study: CompiledStudy, indices: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """A prefill instance's attention DP and EP degrees by candidate (1 where not searched)."""
    dp, ep = (study.space.values[name][indices[name]] if name in indices else np.ones(n) for name in PREFILL_DEGREES)
    return dp, ep


def _prefill_parallel_problems(
    study: CompiledStudy, tp: np.ndarray, pp: np.ndarray, dp: np.ndarray, ep: np.ndarray
) -> np.ndarray:
    """Prefill degrees no deployment has (EP not dividing the experts or TP x DP): the rules
    of :func:`cost_models.deployments.parallel_problem_mask`, the batch DP x one a rank."""
    ones = np.ones(len(tp))
    return parallel_problem_mask(study.model.experts, study.model.layers, tp, pp, ep, dp, ones, dp)


def engine_act_dtype(weight_dtype: np.ndarray) -> np.ndarray:
    """The activations a GPU engine runs with each weight format, as ``tuner export`` launches it:
    fp8 weights as W8A8 (vLLM's and SGLang's ``--quantization fp8``, Fp8LinearMethod, quantizes each
    Linear layer's input to fp8 at run time on GPUs with fp8 tensor cores; TensorRT-LLM's fp8
    checkpoints likewise), as ``tuner recommend`` scores them (cost_models.capacity.act_code); the
    others 16-bit (int8/int4 are exported weight-only, gptq_marlin). Before, a study's fp8 trial
    kept bf16 activations: 2P x TP2 + 1D x TP2 of Llama-3.1-70B fp8 on H100s at 10 req/s (vLLM)
    scored TTFT 546 ms where recommend gave the same launch flags 520 ms."""
    weight_dtype = np.asarray(weight_dtype)
    return np.where(weight_dtype == FP8, FP8, BF16).astype(weight_dtype.dtype)


def evaluate(study: CompiledStudy, indices: dict[str, np.ndarray]) -> Evaluation:
    """Score candidates (one index array per dimension) with one vectorized estimate."""
    columns: dict[str, np.ndarray] = {
        **{name: np.full(len(next(iter(indices.values()))), code) for name, code in study.fixed_columns.items()},
        **study.space.columns_of(indices),
    }
    if study.engine in GPU_ENGINES and "weight_dtype" in columns:
        columns["act_dtype"] = engine_act_dtype(columns["weight_dtype"])
    valid = structurally_valid(study, indices)
    if "tp" in indices:  # scored as one chip group without the impossible degrees, then refused
        impossible = _engine_problems(study, indices)
        for name in ("pipeline_parallel", "expert_parallel", "data_parallel", "micro_batches"):
            columns[name] = np.where(impossible, 1.0, columns[name])
    heads_divide = np.mod(study.model.heads, columns["kv_heads"]) == 0
    columns["kv_heads"] = np.where(
        heads_divide, columns["kv_heads"], study.model.kv_heads
    )  # scored as published, then refused
    serving_columns = study.space.serving_columns_of(indices)
    load_batch = "batch" not in columns
    if load_batch:  # the static estimate's first batch: the clients (open loop: one sequence a rank)
        # (Under DP: DP x a rank's share of the clients, which splits evenly over the ranks.)
        dp = columns.get("data_parallel", 1.0)
        columns["batch"] = dp * np.ceil(serving_columns.get("concurrency", np.ones(len(valid))) / dp)
    workload = study.spec.workload
    deployments = make_deployments(
        study.model, study.hardware, prompt_len=workload.prompt_len, gen_len=workload.gen_len, **columns
    )
    served, workloads, pools = None, None, None
    if study.spec.serving is not None:
        from cost_models.serving import serve

        workloads = _workloads(study, serving_columns, valid, columns.get("data_parallel", 1.0))
        served = serve(deployments, workloads, calibration=study.calibration, overlap=study.spec.overlap)
        pool_columns = study.space.pool_columns_of(indices)
        if pool_columns:
            served, pools = _disaggregated(study, deployments, columns, workloads, served, pool_columns)
        if load_batch:
            deployments = _at_running_batch(deployments, served, pools)
    result = estimate(deployments, overlap=study.spec.overlap, calibration=study.calibration)
    if pools is not None and pools.prefill is not None:
        result = _with_prefill_instances(study, result, pools, load_batch)
    metrics = metric_arrays(
        result,
        deployments,
        study.objective_names,
        served,
        chips=_chips(deployments, pools),
        price_per_chip_hour_usd=study.spec.price_per_chip_hour_usd,
    )
    values = np.stack([metrics[name] for name in study.objective_names], axis=1)
    penalty = np.array([PENALTY if d == "minimize" else -PENALTY for d in study.directions])
    values = np.where(valid[:, None] & np.isfinite(values), values, penalty)
    evaluation = Evaluation(indices, deployments, values, {}, valid, result, served, workloads, pools)
    evaluation.constraint_columns.update({c.name: c.compute(evaluation) for c in study.constraints})
    return evaluation


def _at_running_batch(deployments: Deployments, served: ServingEstimate, pools: Pools | None) -> Deployments:
    """A serving study's deployments with the static sections' batch at the steady state's
    running batch (at least 1; its first guess where that is not finite), as ``tuner estimate``
    under the same load scores them: one chip group, aggregated serving, and a disaggregated
    candidate's decode instance (its mesh is one decode instance's: the pool's running sequences
    over its instances). The static sections of a pipelined candidate stay at the load's first
    guess. Under DP the batch is DP x a rank's running batch (the static estimate splits it over
    the ranks)."""
    running = np.asarray(served.running, dtype=np.float64)
    if pools is not None:
        running = np.where(pools.disaggregated, running / pools.decode_instances, running)
    dp = deployments.data_parallel
    batch = np.where(np.isfinite(running), dp * np.maximum(np.round(running / dp), 1.0), deployments.batch)
    keep = (deployments.pipeline_parallel != 1) | (deployments.micro_batches != 1)
    return replace(deployments, batch=np.where(keep, deployments.batch, batch))


def _with_prefill_instances(
    study: CompiledStudy, result: DeploymentEstimate, pools: Pools, load_batch: bool
) -> DeploymentEstimate:
    """``result`` with a disaggregated candidate's static prefill section of its prefill instance
    (the prefill mesh, where its prompts run), not of the decode instance its deployment
    describes: under a load, at the prompts one prefill iteration takes in the steady state (at
    least 1; the load's first guess where that is not finite), else at the space's batch."""
    assert pools.prefill is not None and pools.estimate is not None
    rows = np.flatnonzero(pools.disaggregated)
    prefill = pools.prefill
    if load_batch:
        # One rank's prompts an iteration: under attention DP the instance's are DP x that.
        prompts = pools.estimate.prefill_tokens_per_iteration / prefill.prompt_len
        dp = prefill.data_parallel
        batch = np.where(np.isfinite(prompts), dp * np.maximum(np.round(prompts), 1.0), prefill.batch)
        prefill = replace(prefill, batch=batch)
    section = estimate(prefill, overlap=study.spec.overlap, calibration=study.calibration).prefill
    merged = {}
    for f in fields(section):
        column = np.array(getattr(result.prefill, f.name), copy=True)
        column[rows] = getattr(section, f.name)
        merged[f.name] = column
    return replace(result, prefill=type(section)(**merged))


def _chips(deployments: Deployments, pools: Pools | None) -> np.ndarray:
    """The chips each candidate's deployment uses: its own, or (disaggregated) every instance of
    both pools, which the serving estimate counts (``DisaggregatedEstimate.chips``)."""
    chips = deployments.chips.astype(np.float64)
    if pools is None or pools.estimate is None:
        return chips
    chips[np.flatnonzero(pools.disaggregated)] = pools.estimate.chips
    return chips


@dataclass(frozen=True)
class Pools:
    """Disaggregated candidates of an evaluation: which rows, their pools and steady state."""

    disaggregated: np.ndarray  # bool per candidate
    prefill_mesh: np.ndarray  # (n, 3)
    prefill_instances: np.ndarray
    decode_instances: np.ndarray
    estimate: DisaggregatedEstimate | None  # the disaggregated rows', in row order
    prefill: Deployments | None = None  # the disaggregated rows' prefill instances, in row order
    # A prefill instance's attention DP and EP by candidate, where the spec searches them (None: 1).
    prefill_dp: np.ndarray | None = None
    prefill_ep: np.ndarray | None = None
    # A prefill instance's batch limit by candidate, where listed (None: the max_batch_size's).
    prefill_max_batch_size: np.ndarray | None = None


def _disaggregated(
    study: CompiledStudy,
    deployments: Deployments,
    columns: dict[str, np.ndarray],
    workloads: ServingWorkloads,
    aggregated: ServingEstimate,
    pool_columns: dict[str, np.ndarray],
) -> tuple[ServingEstimate, Pools]:
    """Score the disaggregated candidates (xP prefill instances of the prefill mesh, yD decode
    instances of the candidate's mesh, same formats) and put their steady state in place of the
    aggregated one: every serving metric and SLO reads one :class:`ServingEstimate`."""
    from cost_models.disaggregated import serve_disaggregated
    from cost_models.serving import ServingEstimate

    n = len(deployments)
    chosen = pool_columns.get("disaggregated", np.ones(n, dtype=bool)).astype(bool)
    pools = Pools(
        chosen,
        pool_columns["prefill_mesh"],
        pool_columns["prefill_instances"],
        pool_columns["decode_instances"],
        None,
        prefill_dp=pool_columns.get("prefill_dp"),
        prefill_ep=pool_columns.get("prefill_ep"),
        prefill_max_batch_size=pool_columns.get("prefill_max_batch_size"),
    )
    rows = np.flatnonzero(chosen)
    if rows.size == 0:
        return aggregated, pools
    workload = study.spec.workload
    # The decode instance is the candidate's deployment, its attention DP and EP included; a
    # prefill instance is a TP group of the prefill mesh with the prefill_dp and prefill_ep
    # searched (1 where not: tensor-parallel MoE). Degrees no deployment has are scored at 1 and
    # refused (structurally_valid); the static batch splits over the prefill ranks.
    prefill_columns: dict[str, np.ndarray] = {k: v[rows] for k, v in columns.items()}
    prefill_columns["mesh"] = pools.prefill_mesh[rows]
    ones = np.ones(len(rows))
    dp = ones if pools.prefill_dp is None else pools.prefill_dp[rows]
    ep = ones if pools.prefill_ep is None else pools.prefill_ep[rows]
    pp = prefill_columns.get("pipeline_parallel", ones)
    impossible = _prefill_parallel_problems(study, pools.prefill_mesh[rows, 2], pp, dp, ep)
    prefill_columns["data_parallel"] = np.where(impossible, 1.0, dp)
    prefill_columns["expert_parallel"] = np.where(impossible, 1.0, ep)
    batch = prefill_columns["batch"]
    prefill_columns["batch"] = prefill_columns["data_parallel"] * np.ceil(batch / prefill_columns["data_parallel"])
    prefill = make_deployments(
        study.model, study.hardware, prompt_len=workload.prompt_len, gen_len=workload.gen_len, **prefill_columns
    )
    decode_workloads = workloads.take(rows)
    # A listed prefill_max_batch_size is the prefill instance's own limit, as tuner estimate
    # --prefill-max-batch-size scores it (serve_disaggregated's prefill_workloads); else the
    # decode instance's max_batch_size bounds both pools, as before it could be listed.
    prefill_workloads = (
        None
        if pools.prefill_max_batch_size is None
        else replace(decode_workloads, max_batch_size=pools.prefill_max_batch_size[rows])
    )
    estimate_rows = serve_disaggregated(
        prefill,
        deployments.take(rows),
        decode_workloads,
        prefill_instances=pools.prefill_instances[rows],
        decode_instances=pools.decode_instances[rows],
        calibration=study.calibration,
        overlap=study.spec.overlap,
        prefill_workloads=prefill_workloads,
    )
    merged = {}
    for f in fields(ServingEstimate):
        column = np.array(getattr(aggregated, f.name), copy=True)
        column[rows] = getattr(estimate_rows, f.name)
        merged[f.name] = column
    return ServingEstimate(**merged), replace(pools, estimate=estimate_rows, prefill=prefill)


def _workloads(
    study: CompiledStudy, columns: dict[str, np.ndarray], valid: np.ndarray, data_parallel: np.ndarray | float
) -> ServingWorkloads:
    """The candidates' serving workloads over their ``data_parallel`` ranks; an unchunked prompt
    over the token budget (refused as structurally invalid) is scored chunked. Without
    serving.max_batch_size each rank runs the engine's default (serving.default_max_batch_size),
    as the engine launched with its defaults does; a listed one is the deployment's."""
    from cost_models.serving import make_workloads

    serving, workload = study.spec.serving, study.spec.workload
    assert serving is not None
    return make_workloads(
        len(valid),
        backend=study.engine,
        concurrency=columns.get("concurrency"),
        request_rate=columns.get("request_rate"),
        prompt_len=workload.prompt_len,
        gen_len=workload.gen_len,
        prompt_len_std=serving.prompt_len_std,
        gen_len_std=serving.gen_len_std,
        max_batch_size=None if serving.max_batch_size is None else columns["max_batch_size"],
        max_num_tokens=columns["max_num_tokens"],
        chunked_prefill=columns["chunked_prefill"] | ~valid,
        kv_block_size=columns["kv_block_size"],
        prefix_hit_rate=serving.prefix_hit_rate,
        memory_fraction=serving.memory_fraction,
        data_parallel=data_parallel,
    )


def scored_params(params: dict, serving: dict | None) -> dict:
    """A trial's parameters as they were scored: its labels (Optuna's params), with the batch
    limit its serving workload ran (``serving``, a stored ``ServingWorkloads.row``: what ``tuner
    export`` reads). Without serving.max_batch_size listed the label is the engine's default of one
    rank, while each of DP ranks runs it (serving.default_max_batch_size): a Mixtral trial at DP 2
    on H200s (vLLM) was shown max_batch_size 256 and scored at 512, and ``tuner estimate --dp 2
    --max-batch-size 256`` gave 1470 tokens/s/chip against its 1886."""
    shown = dict(params)
    if isinstance(serving, dict) and "max_batch_size" in shown and serving.get("max_batch_size") is not None:
        shown["max_batch_size"] = int(serving["max_batch_size"])
    return shown


def candidate_report(study: CompiledStudy, evaluation: Evaluation, row: int) -> dict:
    """One candidate's full breakdown: its choices, the ``tuner estimate`` sections and (with a
    serving: section) its steady state under load."""
    pools, pool_rows, where = evaluation.pools, None, 0
    if pools is not None and pools.disaggregated[row] and pools.estimate is not None:
        pool_rows, where = pools.estimate, int(np.searchsorted(np.flatnonzero(pools.disaggregated), row))
    report = {
        "params": {
            # The deployment's chips, as the chips metric counts them: a disaggregated row's pools.
            "chips": int(pool_rows.chips[where]) if pool_rows is not None else evaluation.deployments.row(row).chips,
            **scored_params(study.space.params_of(evaluation.indices, row), candidate_workload(evaluation, row)),
        },
        "structurally_valid": bool(evaluation.valid[row]),
        **estimate_report(evaluation.result, row),
    }
    if evaluation.serving is not None:
        from cost_models.disaggregated import disaggregated_report
        from cost_models.serving import serving_report

        if pool_rows is not None:
            report["serving"] = {"mode": "disaggregated", **disaggregated_report(pool_rows, where)}
        else:
            report["serving"] = {"mode": "aggregated", **serving_report(evaluation.serving, row)}
            report["serving"].update(_swings(evaluation, row))
        report["serving"].update(_engine_in_force(evaluation, row, pool_rows, where))
    return report


def _engine_in_force(evaluation: Evaluation, row: int, pool_rows: DisaggregatedEstimate | None, where: int) -> dict:
    """What bounds the running batch (``limited_by``: serving.LIMITS; a disaggregated row's decode
    pool's) and the engine knobs it was scored with (``engine``), as ``tuner estimate``'s serving
    section has them (cost_models.serving_one); `tuner show` lacked both."""
    from cost_models.serving_one import ENGINE_KNOBS

    workloads = evaluation.workloads
    assert workloads is not None and evaluation.serving is not None
    limits = pool_rows.limited_by[where] if pool_rows is not None else evaluation.serving.limited_by[row]
    knobs = workloads.row(row)
    engine = {"backend": knobs["engine"]}
    engine.update({k: knobs[k] for k in (*ENGINE_KNOBS, "memory_fraction", "prefix_hit_rate")})
    pools = evaluation.pools
    if pool_rows is not None and pools is not None and pools.prefill_max_batch_size is not None:
        # max_batch_size above is the decode instance's; the prefill instance's was its own.
        engine["prefill_max_batch_size"] = int(pools.prefill_max_batch_size[row])
    return {"limited_by": str(limits), "engine": engine}


def _swings(evaluation: Evaluation, row: int) -> dict:
    """An aggregated row's running batch at its 99.9th percentile and, where an open loop's swings
    reach the cap, the note `tuner estimate` and `tuner recommend` print for the same deployment
    (cost_models.serving_one.swings_note): its means leave out the waits and preemptions. A trial
    of Llama-3.1-70B bf16 on 2 H100s at 1.33 req/s (2048/256, vLLM: TTFT 0.32 s) was a feasible
    front trial without it; tuner simulate of it gave a mean TTFT of 16.7 s."""
    from cost_models.serving import near_capacity
    from cost_models.serving_one import swings_note

    result, workloads = evaluation.serving, evaluation.workloads
    assert result is not None and workloads is not None
    p999 = float(result.running_p999[row])
    near = (
        not np.isfinite(workloads.concurrency[row])
        and bool(result.stable[row])
        and bool(near_capacity(p999, result.max_concurrency[row]))
    )
    return {
        "running_p999": p999 if np.isfinite(p999) else None,
        "notes": [swings_note(workloads, result, row)] if near else [],
    }


def candidate_workload(evaluation: Evaluation, row: int) -> dict | None:
    """Candidate ``row``'s serving workload as plain data (``ServingWorkloads.row``), if any,
    with its mode and (disaggregated) its pools."""
    if evaluation.workloads is None:
        return None
    data = evaluation.workloads.row(row)
    pools = evaluation.pools
    if pools is not None and pools.disaggregated[row]:
        data["mode"] = "disaggregated"
        data["prefill_mesh"] = [int(a) for a in pools.prefill_mesh[row]]
        data["prefill_instances"] = int(pools.prefill_instances[row])
        data["decode_instances"] = int(pools.decode_instances[row])
        for name in (*PREFILL_DEGREES, "prefill_max_batch_size"):  # stored where searched (trials keep their keys)
            degrees = getattr(pools, name)
            if degrees is not None:
                data[name] = int(degrees[row])
    else:
        data["mode"] = "aggregated"
    return data


def candidate_deployment(evaluation: Evaluation, row: int) -> Deployment:
    """Candidate ``row`` as one :class:`Deployment` value (what a trial stores)."""
    return evaluation.deployments.row(row)
