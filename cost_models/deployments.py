"""The deployment type: everything that defines how a model is served, from the spec to the export.

:class:`Deployments` holds n deployments of one model on one kind of chip as a struct of arrays
(integers and codes, never strings): the search space compiles to it, :func:`estimate` scores it,
and ``.row(i)`` gives one :class:`Deployment` value whose ``to_dict``/``from_dict`` pair is what a
stored trial keeps and what every export reads back. The model is the published one; the attention
(``kv_heads``) and block what-ifs are fields of the deployment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import numpy as np

from cost_models.dtypes import BF16, DTYPE_NAMES, dtype_name
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, get_hardware, is_catalog_chip
from cost_models.inference_configs import MAX_SIZE, InferenceConfigs, make_configs
from cost_models.models import ModelSpec
from cost_models.partitioning import ATTENTION_SHARDINGS, FFN_LAYOUTS, ShardingPlan, mixed_checkpoint_extra_bytes

PHASE_NAMES: tuple[str, ...] = ("prefill", "decode")
BLOCKS: tuple[str, ...] = ("serial", "parallel")
#: Per-phase choices: each is a ``<phase>_<name>`` column, coded into its table of names.
PHASE_CHOICES: dict[str, tuple[str, ...]] = {"ffn_layout": FFN_LAYOUTS, "attn_sharding": ATTENTION_SHARDINGS}
_FORMATS = ("weight_dtype", "act_dtype", "kv_dtype")
#: The engines' parallel degrees besides tensor parallelism (the mesh), as vLLM, SGLang and
#: TensorRT-LLM name them: PP (pipeline stages, each ``layers / PP`` blocks), EP (ranks the
#: routed experts are spread over), DP (attention-data-parallel ranks: each runs attention and the
#: dense layers on its own sequences and shares the MoE layers of its pipeline stage; for a dense
#: model, replicas) and the micro-batches a pipeline splits a batch into.
PARALLEL_FIELDS: tuple[str, ...] = ("pipeline_parallel", "expert_parallel", "data_parallel", "micro_batches")


@dataclass(frozen=True)
class Deployment:
    """One deployment, as plain values (names where a name is the domain's word)."""

    model: ModelSpec
    hardware: HardwareSpec
    mesh: tuple[int, int, int]
    batch: int
    prompt_len: int
    gen_len: int
    prefill_ffn_layout: str = "ws_2d"
    decode_ffn_layout: str = "ws_2d"
    prefill_attn_sharding: str = "head"
    decode_attn_sharding: str = "head"
    weight_dtype: str = "bf16"
    act_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    kv_heads: int | None = None  # None: the model's own
    block: str | None = None  # None: the model's own
    flash_attention: bool = False
    # GPU parallelism as serving engines name it (see :data:`PARALLEL_FIELDS`): the mesh is one
    # tensor-parallel group; these multiply it.
    pipeline_parallel: int = 1
    expert_parallel: int = 1
    data_parallel: int = 1
    micro_batches: int = 1

    @property
    def tensor_parallel(self) -> int:
        """Chips of one tensor-parallel group (the mesh)."""
        return int(np.prod(self.mesh))

    @property
    def chips(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel * self.data_parallel

    @property
    def resolved_kv_heads(self) -> int:
        return self.model.kv_heads if self.kv_heads is None else self.kv_heads

    @property
    def resolved_block(self) -> str:
        return self.model.block if self.block is None else self.block

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON safe): the model's full description, the hardware by catalog name (a
        chip from a file: its full description, so the trial reads back without the file)."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["model"] = self.model.model_dump()
        data["hardware"] = self.hardware.name if is_catalog_chip(self.hardware) else self.hardware.model_dump()
        data["mesh"] = list(self.mesh)
        data["kv_heads"] = self.resolved_kv_heads
        data["block"] = self.resolved_block
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], hardware: HardwareSpec | None = None) -> Deployment:
        """Inverse of :meth:`to_dict`. ``hardware`` stands in for the catalog look-up (a chip the
        user described in a file)."""
        try:
            values = dict(data)
            values["model"] = ModelSpec(**values["model"])
            stored = values["hardware"]
            if hardware is not None:
                values["hardware"] = hardware
            elif isinstance(stored, dict):  # a chip from a file, stored whole
                values["hardware"] = HardwareSpec(**stored)
            else:
                values["hardware"] = get_hardware(stored)
            values["mesh"] = tuple(int(a) for a in values["mesh"])
            deployment = cls(**values)
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidInputError(
                "deployment",
                f"not a stored deployment ({type(error).__name__}: {error})",
                "use a trial written by this version of tuner",
            ) from None
        Deployments.from_rows([deployment])  # validates every field
        return deployment


def stored_chips(data: dict[str, Any], serving: dict[str, Any] | None = None) -> int:
    """The chips of a stored deployment (:meth:`Deployment.to_dict`, before or after the engine
    degrees existed): the mesh's product x pipeline stages x DP ranks. With the serving workload
    a disaggregated trial stores (``mode``, ``prefill_mesh``, the instance counts), every pool's:
    prefill instances x their chips + decode instances x the deployment's (a prefill instance is
    the deployment on the prefill mesh, its DP ranks the stored ``prefill_dp`` (1 where absent:
    search_spaces.space._disaggregated)."""
    stages = int(data.get("pipeline_parallel", 1)) * int(data.get("data_parallel", 1))
    chips = int(np.prod(data["mesh"])) * stages
    if not isinstance(serving, dict) or serving.get("mode") != "disaggregated":
        return chips
    prefill_stages = int(data.get("pipeline_parallel", 1)) * int(serving.get("prefill_dp", 1))
    prefill = int(np.prod(serving["prefill_mesh"])) * prefill_stages
    return int(serving["prefill_instances"]) * prefill + int(serving["decode_instances"]) * chips


@dataclass(frozen=True)
class Deployments:
    """n deployments on one kind of chip: a struct of arrays, one entry per deployment. The
    models are a short table indexed by ``model_index``; layouts, shardings and formats are codes
    into ``FFN_LAYOUTS``, ``ATTENTION_SHARDINGS`` and ``cost_models.dtypes``; ``mesh`` is (n, 3)
    chips per axis."""

    models: tuple[ModelSpec, ...]
    hardware: HardwareSpec
    model_index: np.ndarray
    mesh: np.ndarray
    batch: np.ndarray
    prompt_len: np.ndarray
    gen_len: np.ndarray
    prefill_ffn_layout: np.ndarray
    decode_ffn_layout: np.ndarray
    prefill_attn_sharding: np.ndarray
    decode_attn_sharding: np.ndarray
    weight_dtype: np.ndarray
    act_dtype: np.ndarray
    kv_dtype: np.ndarray
    kv_heads: np.ndarray
    parallel_block: np.ndarray
    flash_attention: np.ndarray
    pipeline_parallel: np.ndarray
    expert_parallel: np.ndarray
    data_parallel: np.ndarray
    micro_batches: np.ndarray

    def __len__(self) -> int:
        return int(self.batch.shape[0])

    @property
    def mxfp4_experts(self) -> np.ndarray:
        """Bool per deployment: its model's checkpoint stores only the routed experts in MXFP4
        (``ModelSpec.mxfp4_experts``: gpt-oss)."""
        return np.array([m.mxfp4_experts for m in self.models], dtype=bool)[self.model_index]

    @property
    def vision_bytes_per_chip(self) -> np.ndarray:
        """Bytes of each deployment's vision encoder and projector (ModelSpec.vision_params, 16-bit
        in every weight format: the quantized checkpoints' ignore lists keep vision modules out)
        on one chip of its tensor-parallel group, which shards it as the language model's blocks
        (vLLM's SigLIP and Llama 4 vision encoders are Column/RowParallelLinear layers); charged
        to the busiest pipeline stage, as the embedding is."""
        vision = np.array([m.vision_params for m in self.models], dtype=np.float64)[self.model_index]
        return vision * 2.0 / self.tensor_parallel

    @property
    def mixed_checkpoint(self) -> np.ndarray:
        """Bool per deployment: its model's checkpoint keeps some block modules 16-bit or stores
        group scales (ModelSpec.mixed_checkpoint)."""
        return np.array([m.mixed_checkpoint for m in self.models], dtype=bool)[self.model_index]

    def mixed_checkpoint_extra_bytes(self, plan: ShardingPlan, data_parallel: np.ndarray | float = 1.0) -> np.ndarray:
        """partitioning.mixed_checkpoint_extra_bytes of each deployment's model under ``plan``."""
        checkpoint = np.array([m.mixed_checkpoint_dtype for m in self.models])[self.model_index]
        share = np.array([m.checkpoint_16bit_shares[3] if m.mixed_checkpoint else 0.0 for m in self.models])
        scale = np.array([m.checkpoint_scale_bytes_per_weight for m in self.models])
        return mixed_checkpoint_extra_bytes(
            plan, self.weight_dtype, checkpoint, share[self.model_index], scale[self.model_index], data_parallel
        )

    @cached_property
    def tensor_parallel(self) -> np.ndarray:
        """Chips of one tensor-parallel group (the mesh's product; axis lengths are whole, so
        multiplying the three columns gives np.prod's numbers, without its slow length-3 reduction)."""
        mesh = self.mesh
        return mesh[..., 0] * mesh[..., 1] * mesh[..., 2]

    @cached_property
    def chips(self) -> np.ndarray:
        """Every chip of the deployment: the tensor-parallel mesh x pipeline stages x DP ranks."""
        return self.tensor_parallel * self.pipeline_parallel * self.data_parallel

    @property
    def single_stage(self) -> np.ndarray:
        """(n,) bool: no pipeline, expert or data parallelism (what Pope et al.'s model covers)."""
        return (
            (self.pipeline_parallel == 1)
            & (self.expert_parallel == 1)
            & (self.data_parallel == 1)
            & (self.micro_batches == 1)
        )

    def ffn_layout(self, phase: str) -> np.ndarray:
        return getattr(self, f"{phase}_ffn_layout")

    def batch_sharded_attention(self, phase: str) -> np.ndarray:
        return getattr(self, f"{phase}_attn_sharding") == ATTENTION_SHARDINGS.index("batch")

    def take(self, index: np.ndarray | slice | int) -> Deployments:
        """A sub-batch (fancy indexing on every array)."""
        columns = {f.name: getattr(self, f.name) for f in fields(self)}
        # Rows by a whole-number index: the (n, 3) mesh through take, the same rows 4x faster than
        # fancy indexing a 2-D array (0.6 against 2.4 ms for 60,000 of 100,000 rows).
        positions = index if isinstance(index, np.ndarray) and index.ndim == 1 and index.dtype.kind in "iu" else None
        for name, value in columns.items():
            if isinstance(value, np.ndarray):
                if name != "mesh":
                    columns[name] = value.take(positions) if positions is not None else np.atleast_1d(value[index])
                elif positions is not None:
                    columns[name] = value.take(positions, axis=0)
                else:
                    columns[name] = np.atleast_2d(value[index])
        return Deployments(**columns)

    def row(self, i: int) -> Deployment:
        """Deployment ``i`` as one value."""
        x, y, z = (int(a) for a in self.mesh[i])
        return Deployment(
            model=self.models[int(self.model_index[i])],
            hardware=self.hardware,
            mesh=(x, y, z),
            batch=int(self.batch[i]),
            prompt_len=int(self.prompt_len[i]),
            gen_len=int(self.gen_len[i]),
            **{
                f"{phase}_{name}": table[int(getattr(self, f"{phase}_{name}")[i])]
                for phase in PHASE_NAMES
                for name, table in PHASE_CHOICES.items()
            },
            **{name: DTYPE_NAMES[int(getattr(self, name)[i])] for name in _FORMATS},
            kv_heads=int(self.kv_heads[i]),
            block=BLOCKS[int(self.parallel_block[i])],
            flash_attention=bool(self.flash_attention[i]),
            pipeline_parallel=int(self.pipeline_parallel[i]),
            expert_parallel=int(self.expert_parallel[i]),
            data_parallel=int(self.data_parallel[i]),
            micro_batches=int(self.micro_batches[i]),
        )

    @classmethod
    def from_rows(cls, rows: Sequence[Deployment]) -> Deployments:
        """Many :class:`Deployment` values (on one kind of chip) as arrays, validated."""
        if not rows:
            raise InvalidInputError("deployments", "none given", "pass at least one deployment")
        first = rows[0]
        if any(r.hardware != first.hardware for r in rows):
            raise InvalidInputError("deployments", "mix chips", "group deployments by chip")
        models: dict[ModelSpec, int] = {}
        model_index = np.array([models.setdefault(r.model, len(models)) for r in rows], dtype=np.int64)

        def codes(name: str, table: tuple[str, ...]) -> np.ndarray:
            values = [getattr(r, name) for r in rows]
            bad = [v for v in values if v not in table]
            if bad:
                raise InvalidInputError(name, f"unknown value {bad[0]!r}", f"use one of {', '.join(table)}")
            return np.array([table.index(v) for v in values], dtype=np.int64)

        return make_deployments(
            tuple(models),
            first.hardware,
            model_index=model_index,
            mesh=np.array([r.mesh for r in rows], dtype=np.float64),
            batch=np.array([r.batch for r in rows], dtype=np.float64),
            prompt_len=np.array([r.prompt_len for r in rows], dtype=np.float64),
            gen_len=np.array([r.gen_len for r in rows], dtype=np.float64),
            **{
                f"{phase}_{name}": codes(f"{phase}_{name}", table)
                for phase in PHASE_NAMES
                for name, table in PHASE_CHOICES.items()
            },
            **{name: codes(name, DTYPE_NAMES) for name in _FORMATS},
            kv_heads=np.array([r.resolved_kv_heads for r in rows], dtype=np.float64),
            parallel_block=codes("resolved_block", BLOCKS) == 1,
            flash_attention=np.array([bool(r.flash_attention) for r in rows]),
            **{name: np.array([getattr(r, name) for r in rows], dtype=np.float64) for name in PARALLEL_FIELDS},
        )

    def inference_configs(self, phase: str, seq_len: np.ndarray) -> InferenceConfigs:
        """The single-chip view of one phase: model shapes with the what-ifs, batch, formats.
        ``seq_len`` may be fractional (a decode phase scored at its mean context)."""
        base = make_configs(
            list(self.models),
            model_index=self.model_index,
            phase="prefill",
            batch=self.batch,
            seq_len=1,
            weight_dtype=self.weight_dtype,
            act_dtype=self.act_dtype,
            kv_dtype=self.kv_dtype,
            flash_attention=self.flash_attention,
            kv_heads=self.kv_heads,
            parallel_block=self.parallel_block,
        )
        return base.at_phase(PHASE_NAMES.index(phase), seq_len)


def make_deployments(
    model: ModelSpec | Sequence[ModelSpec],
    hardware: HardwareSpec,
    *,
    model_index: np.ndarray | int = 0,
    mesh: np.ndarray | Sequence[int],
    batch: np.ndarray | int,
    prompt_len: np.ndarray | int,
    gen_len: np.ndarray | int,
    prefill_ffn_layout: np.ndarray | int = 1,
    decode_ffn_layout: np.ndarray | int = 1,
    prefill_attn_sharding: np.ndarray | int = 0,
    decode_attn_sharding: np.ndarray | int = 0,
    weight_dtype: np.ndarray | int = BF16,
    act_dtype: np.ndarray | int = BF16,
    kv_dtype: np.ndarray | int = BF16,
    kv_heads: np.ndarray | int | None = None,
    parallel_block: np.ndarray | bool | None = None,
    flash_attention: np.ndarray | bool = False,
    pipeline_parallel: np.ndarray | int = 1,
    expert_parallel: np.ndarray | int = 1,
    data_parallel: np.ndarray | int = 1,
    micro_batches: np.ndarray | int = 1,
) -> Deployments:
    """Broadcast scalars and arrays (codes, not names) into :class:`Deployments`, validated.
    ``model`` is one model or a table of them that ``model_index`` points into; ``kv_heads`` and
    ``parallel_block`` default to each model's own."""
    models = (model,) if isinstance(model, ModelSpec) else tuple(model)
    index = np.atleast_1d(np.asarray(model_index, dtype=np.int64))
    if np.any((index < 0) | (index >= len(models))):
        raise InvalidInputError("model_index", "points outside the model table", f"use 0..{len(models) - 1}")
    own_kv_heads = np.array([m.kv_heads for m in models], dtype=np.float64)[index]
    own_parallel = np.array([m.block == "parallel" for m in models])[index]
    mesh_array = np.atleast_2d(np.asarray(mesh, dtype=np.float64))
    if mesh_array.shape[-1] != 3:
        raise InvalidInputError("mesh", f"has {mesh_array.shape[-1]} axes", "give X, Y and Z chips")
    columns: dict[str, Any] = {
        "batch": batch,
        "prompt_len": prompt_len,
        "gen_len": gen_len,
        "prefill_ffn_layout": prefill_ffn_layout,
        "decode_ffn_layout": decode_ffn_layout,
        "prefill_attn_sharding": prefill_attn_sharding,
        "decode_attn_sharding": decode_attn_sharding,
        "weight_dtype": weight_dtype,
        "act_dtype": act_dtype,
        "kv_dtype": kv_dtype,
        "kv_heads": own_kv_heads if kv_heads is None else kv_heads,
        "parallel_block": own_parallel if parallel_block is None else parallel_block,
        "flash_attention": flash_attention,
        "model_index": index,
        "pipeline_parallel": pipeline_parallel,
        "expert_parallel": expert_parallel,
        "data_parallel": data_parallel,
        "micro_batches": micro_batches,
    }
    names = list(columns)
    arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(columns[n])) for n in names), mesh_array[:, 0])
    n = arrays[-1].shape[0]
    kinds = {
        "parallel_block": bool,
        "flash_attention": bool,
        "batch": np.float64,
        "prompt_len": np.float64,
        "gen_len": np.float64,
        "kv_heads": np.float64,
        **dict.fromkeys(PARALLEL_FIELDS, np.float64),
    }
    # arrays[-1] is the mesh's first axis, broadcast only to size the columns.
    typed = {
        name: np.ascontiguousarray(a, dtype=kinds.get(name, np.int64))
        for name, a in zip(names, arrays[:-1], strict=True)
    }
    deployments = Deployments(
        models=models, hardware=hardware, mesh=np.ascontiguousarray(np.broadcast_to(mesh_array, (n, 3))), **typed
    )
    validate_deployments(deployments)
    return deployments


def _whole(name: str, values: np.ndarray, low: float = 1, high: float = MAX_SIZE) -> None:
    bad = ~np.isfinite(values) | (values < low) | (values > high) | (values != np.floor(values))
    if np.any(bad):
        value = values[np.argmax(bad)]
        shown = int(value) if np.isfinite(value) and value == np.floor(value) else value
        raise InvalidInputError(
            name,
            f"must be a whole number from {low:g} to {high:g}, got {shown!r}",
            f"pass an integer >= {low:g} for {name}",
        )


def validate_deployments(d: Deployments) -> None:
    """Raise :class:`InvalidInputError` naming the first bad field; every entry checked at once."""
    for name in ("batch", "prompt_len", "gen_len", "kv_heads"):
        _whole(name, getattr(d, name))
    _whole("mesh", d.mesh.ravel())
    for phase in PHASE_NAMES:
        for name, table in PHASE_CHOICES.items():
            values = getattr(d, f"{phase}_{name}")
            if np.any((values < 0) | (values >= len(table))):
                raise InvalidInputError(f"{phase}_{name}", "unknown code", f"use 0..{len(table) - 1}")
    for name in _FORMATS:
        values = getattr(d, name)
        if np.any((values < 0) | (values >= len(DTYPE_NAMES))):
            raise InvalidInputError(name, "unknown dtype code", "use a code from cost_models.dtypes")
    for name in PARALLEL_FIELDS:
        _whole(name, getattr(d, name))
    problems = parallel_problems(d)
    if np.any(problems):
        raise parallel_error(d, int(np.argmax(problems)))
    heads = np.array([m.heads for m in d.models], dtype=np.float64)[d.model_index]
    # An MLA model caches one latent for all heads: a KV-heads what-if would change nothing the
    # cost model charges, so it is refused rather than silently ignored.
    latent = np.array([m.is_mla for m in d.models])[d.model_index]
    bad = latent & (d.kv_heads != heads)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise InvalidInputError(
            "kv_heads",
            f"{d.models[int(d.model_index[i])].name} uses multi-head latent attention (one cached latent, no KV heads)",
            "drop the kv_heads override for an MLA model",
        )
    bad = np.mod(heads, d.kv_heads) != 0
    if np.any(bad):
        i = int(np.argmax(bad))
        raise InvalidInputError(
            "kv_heads",
            f"heads ({int(heads[i])}) is not divisible by kv_heads ({int(d.kv_heads[i])})",
            "use a kv_heads that divides heads (1 for MQA, heads for MHA)",
        )


def _model_column(d: Deployments, name: str) -> np.ndarray:
    return np.array([getattr(m, name) for m in d.models], dtype=np.float64)[d.model_index]


def parallel_problems(d: Deployments) -> np.ndarray:
    """(n,) bool: deployments no engine can run, by the rule vLLM, SGLang and TensorRT-LLM share.

    The routed experts of one pipeline stage are spread over EP ranks, each holding experts / EP
    whole experts, themselves split by expert tensor parallelism over the rest of the stage's
    TP x DP chips: EP must divide the experts and TP x DP (vLLM: EP = TP x DP when expert
    parallelism is on; TensorRT-LLM: moe_tp_size x moe_ep_size = tp_size; expert TP = TP x DP /
    EP). A dense model has no experts to spread (EP 1). A pipeline has at most one stage per
    layer, and a batch splits evenly over the DP ranks and the micro-batches (no engine pads a
    rank's batch; an uneven split is a different deployment)."""
    return parallel_problem_mask(
        _model_column(d, "experts"),
        _model_column(d, "layers"),
        d.tensor_parallel,
        d.pipeline_parallel,
        d.expert_parallel,
        d.data_parallel,
        d.micro_batches,
        d.batch,
    )


def parallel_problem_mask(experts, layers, tp, pp, ep, dp, micro_batches, batch) -> np.ndarray:
    """:func:`parallel_problems` on plain columns (a search checks its candidates before it
    builds their deployments)."""
    ep = np.asarray(ep, dtype=np.float64)
    bad_ep = np.where(np.asarray(experts) > 0, np.mod(experts, ep) != 0, ep != 1) | (np.mod(tp * dp, ep) != 0)
    bad_pp = np.asarray(pp) > layers
    bad_batch = np.mod(batch, np.asarray(dp) * micro_batches) != 0
    return bad_ep | bad_pp | bad_batch


#: Each GPU engine's KV-cache dtype for a KV format (None: the engine has none of that size;
#: tuner.export writes these names, a study with a named backend and estimate --backend refuse
#: the others). vLLM: ``--kv-cache-dtype`` auto/fp8 (docs.vllm.ai, engine args); SGLang: auto,
#: fp8_e4m3 and the experimental fp4_e2m1 (docs.sglang.io, Quantized KV Cache); TensorRT-LLM:
#: KvCacheConfig.dtype auto/fp8/nvfp4, nvfp4 from a ModelOpt checkpoint (nvidia.github.io/
#: TensorRT-LLM, Quantization). int8 runs as fp8 (the same bytes); no engine has an int4 cache.
ENGINE_KV_CACHE_DTYPES: dict[str, dict[str, str | None]] = {
    "vllm": {"bf16": "auto", "fp8": "fp8", "int8": "fp8", "int4": None, "fp4": None},
    "sglang": {"bf16": "auto", "fp8": "fp8_e4m3", "int8": "fp8_e4m3", "int4": None, "fp4": "fp4_e2m1"},
    "trtllm": {"bf16": "auto", "fp8": "fp8", "int8": "fp8", "int4": None, "fp4": "nvfp4"},
}


def engine_kv_formats(engine: str | None) -> tuple[str, ...] | None:
    """The KV-cache formats (dtype names) a GPU serving ``engine`` runs; None for another or none
    named (no rule: JAX, an unnamed backend)."""
    table = ENGINE_KV_CACHE_DTYPES.get(engine or "")
    return None if table is None else tuple(name for name, dtype in table.items() if dtype is not None)


def refuse_engine_kv_cache(backend: str | None, kv_code: int) -> None:
    """A named engine is the one deployed on: a KV cache it has no dtype for is no answer
    (tuner.export refuses it: no engine has an int4 cache, vLLM none in fp4). One rule for tuner
    estimate and tuner simulate (which scored an int4 cache under --backend vllm)."""
    kv_formats = engine_kv_formats(backend)
    if kv_formats is not None and dtype_name(kv_code) not in kv_formats:
        raise InvalidInputError(
            "kv_bits",
            f"{backend} has no {dtype_name(kv_code)} KV cache",
            f"use --kv-bits {', '.join({'bf16': '16', 'int8': '8'}.get(f, f) for f in kv_formats)} (8 runs as fp8, "
            "the same bytes), or another --backend",
        )


#: The block sizes vLLM's ``--block-size`` takes: its choices (vllm/config/cache.py, ``BlockSize =
#: Literal[1, 8, 16, 32, 64, 128, 256]``, turned into argparse ``choices`` by vllm/engine/
#: arg_utils.py, literal_to_kwargs) that its CUDA attention backends also run (a multiple of 16,
#: vllm/v1/attention/backends/flash_attn.py: "Block size must be a multiple of 16."). A multiple
#: of 16 outside them (48, 96, 512) was scored, then written --block-size 48, which `vllm serve`
#: refuses as an invalid choice.
VLLM_BLOCK_SIZES = (16, 32, 64, 128, 256)

#: What each engine's KV-cache block (page) size must be, as (rule, what it needs, examples):
#: vLLM's, one of :data:`VLLM_BLOCK_SIZES`; TensorRT-LLM's tokens_per_block is a power of two
#: above 1. SGLang pages any size; JAX has no engine rule here.
ENGINE_KV_BLOCK_RULES = {
    "vllm": (
        lambda b: b in VLLM_BLOCK_SIZES,
        "vLLM needs a multiple of 16 among its --block-size choices",
        "16, 32, 64, 128 or 256",
    ),
    "trtllm": (lambda b: b >= 2 and not b & (b - 1), "TensorRT-LLM needs a power of two above 1", "16, 32 or 64"),
}


def check_engine_kv_block_size(
    engine: str | None, kv_block_size: int | Iterable[int] | None, field: str = "--kv-block-size", named: str = "engine"
) -> None:
    """Refuse KV block sizes ``engine`` cannot run (:data:`ENGINE_KV_BLOCK_RULES`), every one of
    them in one line naming ``field`` (a study's ``serving.kv_block_size`` lists several; ``named``:
    what the line calls the engine there, its backend): they would be scored as given and launched
    as another (tuner export rounds them)."""
    rule = ENGINE_KV_BLOCK_RULES.get(engine or "")
    if rule is None or kv_block_size is None:
        return
    runs, needs, examples = rule
    sizes = [int(kv_block_size)] if isinstance(kv_block_size, int | float) else [int(b) for b in kv_block_size]
    bad = [b for b in sizes if not runs(b)]
    if bad:
        raise InvalidInputError(
            field,
            f"{', '.join(map(str, bad))} with {named} {engine}: {needs}",
            f"use e.g. {examples}, or leave {field} out for the engine's default",
        )


#: The GPU serving engines whose own launch rules :func:`engine_problem_mask` knows.
GPU_ENGINES = ("vllm", "sglang", "trtllm")


#: Engines whose tensor parallelism shards the KV heads with QKVParallelLinear: kv_heads / tp
#: heads a rank when tp < kv_heads, else one head replicated tp / kv_heads times, both through
#: ``divide``, which asserts divisibility (vllm/model_executor/layers/linear.py and
#: python/sglang/srt/layers/linear.py, QKVParallelLinear.__init__). Phi-3-medium and Phi-4 (40
#: heads, 10 KV heads) launch at TP 1, 2 or 10, not at TP 4 or 8.
KV_HEAD_SPLITTING_ENGINES = ("vllm", "sglang")


def kv_heads_split_problem(kv_heads, tp) -> np.ndarray:
    """(n,) bool: TP sizes that neither divide the KV heads nor are a multiple of them (so the
    engines of :data:`KV_HEAD_SPLITTING_ENGINES` refuse them); ``kv_heads`` 0: no such rule (a
    multi-head latent attention model's one latent, replicated on every rank)."""
    kv = np.asarray(kv_heads, dtype=np.int64)
    tp = np.asarray(tp, dtype=np.int64)
    return (kv > 0) & (np.mod(kv, tp) != 0) & (np.mod(tp, np.maximum(kv, 1)) != 0)


def engine_problem_mask(engine: str | None, heads, experts, tp, ep, dp, kv_heads=0) -> np.ndarray:
    """(n,) bool: configurations the GPU serving ``engine`` refuses to launch, by its own rules
    beyond the one every engine shares (:func:`parallel_problem_mask`); ``engine`` None: the rules
    every GPU engine has (the heads). One table for the search (a study leaves them out: all GPU
    engines' rules, and its named engine's), ``tuner estimate`` and the export (which refuse them
    in a line):

    - every GPU engine: the attention heads divide over the tensor-parallel ranks;
    - vLLM: expert parallelism, when on, spans every TP x DP rank (``--enable-expert-parallel``
      makes EP = TP x DP; docs.vllm.ai, Expert Parallel Deployment): EP is 1 or TP x DP;
    - TensorRT-LLM: attention data parallelism (``enable_attention_dp``) runs each rank's
      attention on one GPU: an MoE model with DP > 1 has TP 1;
    - vLLM and SGLang: TP divides the ``kv_heads`` or is a multiple of them
      (:func:`kv_heads_split_problem`; 0, the default, for an MLA model or where not checked).

    SGLang runs any EP dividing TP x DP (``--ep-size``, ``--enable-dp-attention``). Other engines
    (JAX) have no rule here."""
    tp, ep, dp = (np.asarray(x, dtype=np.float64) for x in (tp, ep, dp))
    bad = np.zeros(np.broadcast(tp, ep, dp).shape, dtype=bool)
    if engine is not None and engine not in GPU_ENGINES:
        return bad
    bad |= np.mod(heads, tp) != 0
    if engine == "vllm":
        bad |= (ep > 1) & (ep != tp * dp)
    if engine == "trtllm":
        bad |= (np.asarray(experts) > 0) & (dp > 1) & (tp > 1)
    if engine in KV_HEAD_SPLITTING_ENGINES:
        bad |= kv_heads_split_problem(kv_heads, tp)
    return bad


def parallel_error(d: Deployments, i: int) -> InvalidInputError:
    """The one-line error of deployment ``i``, which :func:`parallel_problems` flags."""
    model = d.models[int(d.model_index[i])]
    tp, pp, ep, dp, m = (
        int(d.tensor_parallel[i]),
        int(d.pipeline_parallel[i]),
        int(d.expert_parallel[i]),
        int(d.data_parallel[i]),
        int(d.micro_batches[i]),
    )
    if model.experts == 0 and ep != 1:
        return InvalidInputError(
            "expert_parallel", f"{model.name} has no experts to spread over {ep} ranks", "use expert_parallel 1"
        )
    if model.experts and model.experts % ep:
        divisors = [k for k in range(1, model.experts + 1) if model.experts % k == 0 and (tp * dp) % k == 0]
        return InvalidInputError(
            "expert_parallel",
            f"{ep} does not divide the {model.experts} experts of {model.name}",
            f"use one of {', '.join(map(str, divisors))}",
        )
    if (tp * dp) % ep:
        wider_dp = ep // int(np.gcd(ep, tp))
        return InvalidInputError(
            "expert_parallel",
            f"({ep}) must divide tensor_parallel x data_parallel ({tp * dp}) of one pipeline stage; experts are "
            "spread over the chips of one stage (vLLM: EP = TP x DP; TensorRT-LLM: moe_tp x moe_ep = tp)",
            f"use TP {tp} EP {int(np.gcd(ep, tp * dp))} PP {pp} DP {dp}, "
            f"or TP {tp} DP {wider_dp} EP {ep} (PP {max(pp * dp // wider_dp, 1)})",
        )
    if pp > model.layers:
        return InvalidInputError(
            "pipeline_parallel",
            f"{pp} stages for the {model.layers} layers of {model.name}",
            f"use pipeline_parallel <= {model.layers}",
        )
    return InvalidInputError(
        "batch",
        f"{int(d.batch[i])} sequences do not split evenly over data_parallel {dp} x micro_batches {m}",
        f"use a batch that is a multiple of {dp * m}",
    )


def tensor_parallel(
    model: ModelSpec | Sequence[ModelSpec],
    hardware: HardwareSpec,
    tp: np.ndarray | Sequence[int] | int,
    **columns: Any,
) -> Deployments:
    """Deployments as GPU serving engines run them (Megatron tensor parallelism): a ``1x1xTP`` mesh
    per entry, the 1D weight-stationary layout in both phases (weights split along F over every
    chip, one all-reduce per block), fused attention. ``columns`` set or override any other
    :func:`make_deployments` column (formats, batch, lengths); batch and lengths default to 1 (a
    serving workload, not the deployment, says how requests come)."""
    degrees = np.atleast_1d(np.asarray(tp, dtype=np.float64))
    ones = np.ones_like(degrees)
    ws_1d = FFN_LAYOUTS.index("ws_1d")
    defaults: dict[str, Any] = {
        "batch": 1,
        "prompt_len": 1,
        "gen_len": 1,
        "prefill_ffn_layout": ws_1d,
        "decode_ffn_layout": ws_1d,
        "flash_attention": True,
    }
    return make_deployments(model, hardware, mesh=np.stack([ones, ones, degrees], axis=1), **{**defaults, **columns})
