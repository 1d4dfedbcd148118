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

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cost_models.deployment import DeploymentEstimate, estimate, estimate_report
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, get_hardware
from cost_models.inference_configs import make_configs
from cost_models.models import ModelSpec, get_model
from cost_models.topology import network_for, parse_mesh
from search_spaces.spec import METRICS, StudySpec

#: Order of the dimensions in every space (and of Optuna's parameters).
DIMENSIONS = ("mesh", "batch", "prefill_ffn_layout", "decode_ffn_layout",
              "prefill_attn_sharding", "decode_attn_sharding", "weight_bits", "kv_bits",
              "kv_heads", "block", "flash_attention")


@dataclass(frozen=True)
class SearchSpace:
    """Dimensions in a fixed order, each with its tuple of choices."""

    dimensions: dict[str, tuple]

    @property
    def size(self) -> int:
        """Candidates in the full cartesian product (structurally infeasible ones included)."""
        return int(np.prod([len(c) for c in self.dimensions.values()], dtype=np.float64))

    def all_indices(self) -> dict[str, np.ndarray]:
        """Every combination, as one index array per dimension (the exhaustive enumeration)."""
        grids = np.meshgrid(*[np.arange(len(c)) for c in self.dimensions.values()], indexing="ij")
        return {name: grid.ravel() for name, grid in zip(self.dimensions, grids)}

    def indices_of(self, params: list[dict]) -> dict[str, np.ndarray]:
        """Index arrays for candidates given as {dimension: choice} dicts."""
        lookup = {name: {choice: i for i, choice in enumerate(choices)}
                  for name, choices in self.dimensions.items()}
        return {name: np.array([lookup[name][p[name]] for p in params], dtype=np.int64)
                for name in self.dimensions}

    def params_of(self, indices: dict[str, np.ndarray], row: int) -> dict:
        """The choices of candidate ``row``."""
        return {name: self.dimensions[name][int(indices[name][row])] for name in self.dimensions}


@dataclass(frozen=True)
class CompiledStudy:
    """A spec with its model, hardware and space resolved: everything evaluation needs."""

    spec: StudySpec
    model: ModelSpec
    hardware: HardwareSpec
    space: SearchSpace

    @cached_property
    def objective_names(self) -> list[str]:
        return [o.metric for o in self.spec.objectives]

    @cached_property
    def directions(self) -> list[str]:
        return [o.resolved_direction for o in self.spec.objectives]

    @cached_property
    def constraint_names(self) -> list[str]:
        names = ["structurally_valid"]
        c = self.spec.constraints
        if c.fits:
            names.append("fits_in_memory")
        if c.max_ttft_s is not None:
            names.append("max_ttft_s")
        if c.max_tpot_s is not None:
            names.append("max_tpot_s")
        return names


def compile_study(spec: StudySpec) -> CompiledStudy:
    """Resolve names and 'auto'/'model' choices; refuse spaces that can hold nothing."""
    model = get_model(spec.model)
    if model.kind == "encoder":
        raise InvalidInputError("model", f"{model.name} is an encoder; a study searches decoder "
                                "deployments (prefill and decode)", "use a decoder model")
    hardware = get_hardware(spec.hardware)
    network = network_for(hardware)
    space = spec.space
    for chips in space.chips:
        if not network.legal_meshes(chips):
            raise InvalidInputError("space.chips", f"{chips} chips form no legal {hardware.name} mesh",
                                    "use chip counts the hardware offers")
    if space.mesh == "auto":
        meshes = sorted({m for chips in space.chips for m in network.legal_meshes(chips)})
    else:
        meshes = []
        for text in space.mesh:
            mesh = parse_mesh(text)
            network.check_mesh(mesh)
            if int(np.prod(mesh)) not in space.chips:
                raise InvalidInputError("space.mesh", f"{text} has {int(np.prod(mesh))} chips, not one of "
                                        f"space.chips {space.chips}", "list meshes of the listed chip counts")
            meshes.append(mesh)
    kv_heads = []
    for choice in space.kv_heads:
        value = {"model": model.kv_heads, "mha": model.heads, "mqa": 1}.get(choice, choice)
        if not isinstance(value, int) or value < 1:
            raise InvalidInputError("space.kv_heads", f"bad choice {choice!r}",
                                    "use model, mha, mqa or a positive head count")
        if value not in kv_heads:
            kv_heads.append(value)
    blocks = []
    for choice in space.block:
        value = model.block if choice == "model" else choice
        if value not in blocks:
            blocks.append(value)
    for field in ("weight_bits", "kv_bits"):
        for bits in getattr(space, field):
            hardware.parse_formats(**{f"space.{field}": bits})  # fp8 only where the chip has it
    if not any(model.heads % k == 0 for k in kv_heads):
        raise InvalidInputError("space.kv_heads", f"no choice divides {model.name}'s {model.heads} heads",
                                "use model, mha, mqa or a divisor of the head count")
    dimensions = {
        "mesh": tuple("x".join(map(str, m)) for m in meshes),
        "batch": tuple(space.batch),
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
    return CompiledStudy(spec, model, hardware, SearchSpace(dimensions))


@dataclass(frozen=True)
class Evaluation:
    """Scores of n candidates: objective values (n, k), constraint values (n, m; <= 0 feasible)."""

    indices: dict[str, np.ndarray]
    values: np.ndarray
    constraints: np.ndarray
    valid: np.ndarray
    result: DeploymentEstimate
    meshes: np.ndarray

    @property
    def feasible(self) -> np.ndarray:
        return np.all(self.constraints <= 0, axis=1)

    def __len__(self) -> int:
        return len(self.valid)


# Penalty objective values of structurally impossible candidates: finite so that every sampler's
# arithmetic stays finite; such trials are infeasible anyway (first constraint > 0).
_PENALTY = 1e30


def evaluate(study: CompiledStudy, indices: dict[str, np.ndarray]) -> Evaluation:
    """Score candidates (one index array per dimension) with one vectorized estimate."""
    dims = study.space.dimensions
    pick = {name: np.asarray(dims[name], dtype=object)[indices[name]] for name in dims}
    mesh_table = np.array([parse_mesh(m) for m in dims["mesh"]], dtype=np.float64)
    meshes = mesh_table[indices["mesh"]]
    chips = np.prod(meshes, axis=1)
    kv_heads = np.array(dims["kv_heads"], dtype=np.float64)[indices["kv_heads"]]
    valid = np.mod(study.model.heads, kv_heads) == 0
    kv_heads = np.where(valid, kv_heads, study.model.kv_heads)  # scored as published, then refused
    variants = {block: study.model.model_copy(update={"block": block}) for block in dims["block"]}
    models = [variants[b] for b in pick["block"]]
    formats = {field: np.array([study.hardware.parse_formats(**{field: b})[field] for b in dims[field]])
               for field in ("weight_bits", "kv_bits")}
    base = make_configs(
        models, phase="prefill", batch=np.array(dims["batch"], dtype=np.float64)[indices["batch"]],
        seq_len=study.spec.workload.prompt_len,
        weight_dtype=formats["weight_bits"][indices["weight_bits"]],
        kv_dtype=formats["kv_bits"][indices["kv_bits"]],
        flash_attention=np.array(dims["flash_attention"], dtype=bool)[indices["flash_attention"]],
        kv_heads=kv_heads,
    )
    result = estimate(
        base, study.hardware, mesh=meshes, prompt_len=study.spec.workload.prompt_len,
        gen_len=study.spec.workload.gen_len,
        prefill_ffn_layout=list(pick["prefill_ffn_layout"]), decode_ffn_layout=list(pick["decode_ffn_layout"]),
        prefill_attention=list(pick["prefill_attn_sharding"]),
        decode_attention=list(pick["decode_attn_sharding"]), overlap=study.spec.overlap,
    )
    metrics = metric_arrays(result, chips)
    values = np.stack([metrics[name] for name in study.objective_names], axis=1)
    penalty = np.array([_PENALTY if d == "minimize" else -_PENALTY for d in study.directions])
    values = np.where(valid[:, None] & np.isfinite(values), values, penalty)
    columns = [np.where(valid, 0.0, 1.0)]
    c = study.spec.constraints
    memory = result.memory
    if c.fits:
        columns.append(memory.total_bytes_per_chip / memory.capacity_bytes_per_chip - 1.0)
    if c.max_ttft_s is not None:
        columns.append(result.prefill.latency_s - c.max_ttft_s)
    if c.max_tpot_s is not None:
        columns.append(result.decode_step_latency_s - c.max_tpot_s)
    return Evaluation(indices, values, np.stack(columns, axis=1), valid, result, meshes)


def mesh_chips(mesh: str) -> int:
    """Chips of a mesh written XxYxZ."""
    return int(np.prod(parse_mesh(mesh)))


def metric_arrays(result: DeploymentEstimate, chips: np.ndarray) -> dict[str, np.ndarray]:
    """Every searchable metric of n estimates, by name (search_spaces.spec.METRICS)."""
    p, d, m = result.prefill, result.decode, result.memory
    arrays = {
        "prefill.latency_s": p.latency_s, "prefill.mfu": p.mfu,
        "prefill.cost_chip_s_per_token": p.cost_chip_s_per_token,
        "prefill.throughput_tokens_per_s": p.throughput_tokens_per_s,
        "decode.step_latency_s": result.decode_step_latency_s, "decode.latency_s": d.latency_s,
        "decode.mfu": d.mfu, "decode.cost_chip_s_per_token": d.cost_chip_s_per_token,
        "decode.throughput_tokens_per_s": d.throughput_tokens_per_s,
        "memory.total_bytes_per_chip": m.total_bytes_per_chip,
        "memory.max_context_tokens": m.max_context_tokens, "chips": chips,
    }
    assert set(arrays) == set(METRICS)
    return arrays


def candidate_report(study: CompiledStudy, evaluation: Evaluation, row: int) -> dict:
    """One candidate's full breakdown: its choices and the ``tuner estimate`` sections."""
    params = study.space.params_of(evaluation.indices, row)
    report = estimate_report(evaluation.result, row)
    return {
        "params": {"chips": mesh_chips(params["mesh"]), **params},
        "structurally_valid": bool(evaluation.valid[row]),
        "mesh_evaluated": "x".join(str(int(a)) for a in evaluation.meshes[row]),
        **report,
    }
