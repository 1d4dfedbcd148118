"""Exporting one trial of a stored study as a deployment spec, JAX shardings or engine arguments.

:func:`deployment_spec` turns a trial into the canonical, plain-data description of what was
searched: model shapes (after the attention and block what-ifs), hardware, mesh, batch, formats,
and for each phase its FFN layout, attention sharding and a per-tensor sharding table that follows
Pope et al. (2022, section 3): each tensor's dimensions and the mesh axes that split each of them.
It also carries the predicted metrics and the provenance (study, trial, spec hash, objectives).

:func:`export` renders that spec as ``json`` or ``yaml`` (the spec itself), ``jax`` (JSON: the
mesh and a ``PartitionSpec``-style entry per dimension of every tensor) or ``vllm`` (JSON: engine
arguments, the equivalent ``vllm serve`` command line, and notes on what differs from the searched
configuration); ``sglang`` and ``trtllm`` likewise. The engine formats carry the serving knobs the
trial was scored under (its ``serving`` user attr; the engine's defaults where it has none): see
:func:`engine_args`. A format that cannot express the trial raises ``InvalidInputError`` on ``format``.

Sharding tables give, per dimension, the list of mesh axes that split it ([] = replicated). They are
read off the one sharding table per layout in :mod:`cost_models.partitioning`, with the same even-
shard rule the cost model charged (``split_over``): of the axes a layout names for a dimension, the
subset that splits it evenly into the most shards; KV heads fewer than the chips are replicated
beyond their count. An axis left out is named in ``notes``. Devices are laid out
row-major over (x, y, z): z is the fastest axis, as in the cost model's GPU network, so on GPUs
consecutive z indices share an NVLink node.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

if TYPE_CHECKING:  # optuna is imported where a study is read, so that the CLI starts quickly
    import optuna
    from optuna.trial import FrozenTrial

from cost_models.capacity import ScoredPlan
from cost_models.deployment import stage_moe_blocks
from cost_models.deployments import (
    ENGINE_KV_CACHE_DTYPES,
    KV_HEAD_SPLITTING_ENGINES,
    VLLM_BLOCK_SIZES,
    Deployment,
    Deployments,
    engine_problem_mask,
    kv_heads_split_problem,
)
from cost_models.dtypes import dtype_name, parse_dtype
from cost_models.errors import InvalidInputError, refuse_bad_host
from cost_models.hardware import ENGINE_DISPLAY_NAMES, HardwareSpec, SwitchedInterconnect, get_hardware
from cost_models.models import model_catalog
from cost_models.partitioning import AXES, SHARDING_RULES, kv_cache_axes, split_axes
from cost_models.serving import (
    CONTEXT_QUANTILE,
    ENGINE_DEFAULTS,
    engine_memory_bytes,
    kv_budget_bytes,
    length_quantile,
    make_workloads,
)
from cost_models.serving_one import SERVING_OPTIONS
from tuner.constraints import is_feasible, study_constraint_names, trial_constraints
from tuner.optuna_internals import study_storage
from tuner.study import CALIBRATION_ATTR

FORMATS: tuple[str, ...] = ("json", "yaml", "jax", "vllm", "sglang", "trtllm")
#: The formats that are a serving engine's launch arguments.
ENGINES: tuple[str, ...] = ("vllm", "sglang", "trtllm")

#: Hugging Face repository ids of catalog models with public checkpoints (PaLM and MT-NLG have none).
HF_REPOS: dict[str, str] = {
    "bert-base": "google-bert/bert-base-uncased",
    "bert-large": "google-bert/bert-large-uncased",
    "gpt2": "openai-community/gpt2",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-2-13b": "meta-llama/Llama-2-13b-hf",
    "llama-2-70b": "meta-llama/Llama-2-70b-hf",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama-3-70b": "meta-llama/Meta-Llama-3-70B",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    # The MoE models of the catalog (the repos their sources name).
    "mixtral-8x7b": "mistralai/Mixtral-8x7B-v0.1",
    "mixtral-8x22b": "mistral-community/Mixtral-8x22B-v0.1",
    "qwen3-235b-a22b": "Qwen/Qwen3-235B-A22B",
    # The 2025 catalog entries (the repos their sources' config.json come from).
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
    "llama-3.1-70b": "meta-llama/Llama-3.1-70B",
    "llama-3.1-405b": "meta-llama/Llama-3.1-405B",
    "qwen3-8b": "Qwen/Qwen3-8B",
    "qwen3-32b": "Qwen/Qwen3-32B",
    "deepseek-v3": "deepseek-ai/DeepSeek-V3",
    "kimi-k2": "moonshotai/Kimi-K2-Instruct",
    "gpt-oss-20b": "openai/gpt-oss-20b",
    "gpt-oss-120b": "openai/gpt-oss-120b",
    "gemma-3-27b": "google/gemma-3-27b-it",
    "llama-4-scout-17b-16e": "meta-llama/Llama-4-Scout-17B-16E",
    "llama-4-maverick-17b-128e": "meta-llama/Llama-4-Maverick-17B-128E",
}

#: The publisher's fp8 checkpoint of a catalog model whose own repo (HF_REPOS) is 16-bit: what the
#: engines serve for a trial with fp8 weights, in place of --quantization fp8 on the 16-bit repo.
#: Listed only where it stores 128 x 128 block scales (ModelSpec.fp8_block_scales), the kernels the
#: estimate times it with (calibrated_times.kernel_formats): Qwen3's "-FP8" checkpoints use
#: "fine-grained fp8 quantization with block size of 128" (each model card, Note on FP8; e.g.
#: huggingface.co/Qwen/Qwen3-235B-A22B-FP8, served with "vllm serve Qwen/Qwen3-235B-A22B-FP8"
#: and "python -m sglang.launch_server --model-path Qwen/Qwen3-235B-A22B-FP8"). --quantization fp8
#: instead quantizes at load with per-tensor scales (vLLM's Fp8Config without a serialized
#: checkpoint), which runs other kernels: on H100/H200 vLLM the per-tensor fused MoE (FlashInfer
#: CUTLASS, first in vllm/model_executor/layers/fused_moe/oracle/fp8.py select_fp8_moe_backend for
#: per-tensor scales) measures 2-5x the block-scaled Triton one (data/kernels/moe_perf.csv.gz).
#: Not listed: meta-llama/Llama-3.1-405B-Instruct-FP8 (fbgemm_fp8, per-channel weight scales, and
#: an instruct model whose attention stays 16-bit, not the catalog's base llama-3.1-405b) and the
#: RedHatAI/neuralmagic "-FP8-dynamic" repos (per-channel weights, per-token activations: the
#: per-tensor class's kernels, which --quantization fp8 already runs). DeepSeek-V3 and Kimi K2 store
#: fp8 block scales in their own repo (checkpoint_format fp8).
#: Qwen/Qwen3-8B-FP8 and Qwen/Qwen3-32B-FP8 (block-scaled too) are left out: a dense model's fp8
#: GEMMs run faster per-tensor on H100/H200 vLLM (5-8 us at m=64 against 80-90 us for the
#: block-scaled DeepGEMM path, data/kernels/gemm_perf.csv.gz), so --quantization fp8 is kept there.
FP8_REPOS: dict[str, str] = {
    "qwen3-235b-a22b": "Qwen/Qwen3-235B-A22B-FP8",
}

# ---------------------------------------------------------------------------------------------
# Finding and checking the trial


def _find_trial(study: optuna.Study, trial_number: int) -> FrozenTrial:
    """The trial numbered ``trial_number``, read alone (a study may hold millions)."""
    if isinstance(trial_number, bool) or not isinstance(trial_number, int):
        raise InvalidInputError("trial", f"expected a trial number, got {trial_number!r}", "pass a whole number")
    storage = study_storage(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    try:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)
    except KeyError:
        count = storage.get_n_trials(study_id)
        valid = f"trials 0 to {count - 1}" if count else "no trials"
        raise InvalidInputError(
            "trial", f"study {study.study_name!r} has no trial {trial_number}", f"it has {valid}"
        ) from None
    return storage.get_trial(trial_id)


def _violation(name: str, value: float) -> str:
    """How far a trial is over one constraint. A max_* constraint's value is the metric minus the
    limit (search_spaces.space): shown as "0.0192 > 0", a TPOT of 19.2 ms over a 1 us limit read as
    a limit of 0."""
    if value >= 1e29:
        return "unbounded: the load is unstable"
    if name.startswith("max_"):
        unit = " s" if name.endswith("_s") else " dollars" if "_usd_" in name else ""
        return f"over the limit by {value:.3g}{unit}"
    return f"{value:.3g} > 0"


def _unused_pool_choices(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    """An aggregated trial of a ``serving.mode: both`` study: its pool dimensions (prefill mesh,
    instances, a prefill instance's degrees and batch limit) set other than their first choices,
    as ``name label``. search_spaces.space.structurally_valid keeps such a candidate only at the
    first choices (an aggregated deployment has no pools: the others are its twins), so a sampler
    that drew one stored it structurally invalid. Empty for any other trial."""
    if trial.params.get("disaggregated") is not False or "spec" not in study.user_attrs:
        return []
    from search_spaces.space import POOL_DIMENSIONS
    from tuner.compact import Hydrator

    dimensions = Hydrator(study.user_attrs).compiled.space.dimensions
    return [
        f"{name} {trial.params[name]}"
        for name in POOL_DIMENSIONS[1:]
        if name in trial.params and name in dimensions and trial.params[name] != dimensions[name][0]
    ]


def _check_trial(trial: FrozenTrial, allow_infeasible: bool, study: optuna.Study | None = None) -> None:
    """Refuse trials that are not finished, not a deployment, or (unless allowed) infeasible."""
    from optuna.trial import TrialState

    if trial.state != TrialState.COMPLETE:
        raise InvalidInputError(
            "trial",
            f"trial {trial.number} is {trial.state.name}, not COMPLETE",
            "export a completed trial (tuner pareto lists them)",
        )
    estimate = trial.user_attrs.get("estimate")
    if not isinstance(estimate, dict) or "params" not in estimate:
        raise InvalidInputError(
            "trial", f"trial {trial.number} has no stored estimate", "export trials of a study made by tuner search"
        )
    constraints = trial_constraints(trial)
    # A structurally invalid candidate (mesh not of the chip count, KV heads not dividing the
    # heads) is no deployment at all: refused even when infeasible trials are allowed.
    if constraints.get("structurally_valid", 0.0) > 0 or not estimate.get("structurally_valid", True):
        unused = [] if study is None else _unused_pool_choices(study, trial)
        if unused:
            # Before 2026-12-06 the generic reasons below were given for these too: none applied.
            raise InvalidInputError(
                "trial",
                f"trial {trial.number} is an aggregated candidate of a serving mode: both study with pool choices "
                f"it has no pools for ({', '.join(unused)}): structurally invalid, a twin of the candidate at the "
                "first pool choices, which the space keeps in its place",
                "export a feasible trial (tuner pareto lists them)",
            )
        raise InvalidInputError(
            "trial",
            f"trial {trial.number} is structurally invalid (no deployment: its KV heads or its TP do not "
            "divide the heads, its degrees split no engine runs, an unchunked prompt passes the token budget, "
            "a TP group crosses a node's edge, or its chips are not the hardware's)",
            "pick a feasible trial (tuner pareto lists them)",
        )
    # A serving trial under a load it cannot sustain has no finite TTFT or TPOT: its constraint
    # holds the search's penalty (search_spaces.space.PENALTY), shown as what it stands for.
    violated = [f"{name} ({_violation(name, value)})" for name, value in constraints.items() if value > 0]
    if violated and not allow_infeasible:
        raise InvalidInputError(
            "trial",
            f"trial {trial.number} is infeasible: it violates " + ", ".join(violated),
            "pick a feasible trial (tuner pareto lists them), or pass --allow-infeasible to export it anyway",
        )


# ---------------------------------------------------------------------------------------------
# Sharding tables: read off cost_models.partitioning's rules, the ones the cost model charged


def _split(size: int, axes: tuple[str, ...], mesh: tuple[int, int, int], what: str, notes: list[str]) -> list[str]:
    """The axes :func:`~cost_models.partitioning.split_over` splits a dimension of ``size`` over
    (the same choice the cost model made); a note names axes it replicates over, and any axes
    whose chips hold one shard between several of them."""
    chosen = split_axes(size, mesh, axes)
    sizes = dict(zip(AXES, mesh, strict=True))
    product = math.prod(sizes[a] for a in chosen)
    left = [a for a in axes if a not in chosen and sizes[a] > 1]
    if left:
        notes.append(
            f"{what} ({size}) does not divide over mesh axes {''.join(axes)} "
            f"({math.prod(sizes[a] for a in axes)} ways): replicated over {''.join(left)}"
        )
    if product > size:
        notes.append(
            f"{what} ({size}) split {size} ways over {''.join(chosen)} ({product} chips): "
            f"each shard held by {product // size} chips"
        )
        if isinstance(notes, Notes):
            notes.shared_shards.append(f"{what} ({size}) over {''.join(chosen)} ({product} chips)")
    return list(chosen)


class Notes(list):
    """Notes of an export, and the dimensions whose shards several chips of one axis share
    (a layout JAX's NamedSharding cannot write on this mesh)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared_shards: list[str] = []


def _tensor(
    dims: list[str],
    shape: list[int],
    sharding: list[list[str]],
    in_use: list[list[str]],
    gathered: tuple[str, ...] = (),
) -> dict:
    """One tensor's table entry: sharding as stored, and in use (after the all-gather)."""
    return {
        "dims": dims,
        "shape": shape,
        "sharding": sharding,
        "gathered_over": [a for a in AXES if a in gathered and any(a in s for s in sharding)],
        "in_use": in_use,
    }


#: Each weight's dimensions as exported, and the logical dimension (WEIGHT_AXES) whose split each
#: follows (None: never split; D, the head width).
_WEIGHT_DIMS: dict[str, tuple[list[str], list[str | None]]] = {
    "wq": (["E", "H", "D"], ["E", "H", None]),
    "wk": (["E", "K", "D"], ["E", "K", None]),
    "wv": (["E", "K", "D"], ["E", "K", None]),
    "wo": (["H", "D", "E"], ["H", None, "E"]),
    "w_gate": (["E", "F"], ["E", "F"]),
    "w_up": (["E", "F"], ["E", "F"]),
    "w_down": (["F", "E"], ["F", "E"]),
    "embedding": (["V", "E"], ["V", "E"]),
    "lm_head": (["E", "V"], ["E", "V"]),
}
#: Multi-head latent attention's matrices (DeepSeek-V2, arXiv 2405.04434, section 2.1; names as
#: in the DeepSeek-V3 checkpoints; cost_models.model_counts.mla_attention_weights): Rq the query
#: rank (q_lora_rank), Rkv the latent rank (kv_lora_rank), R the rotary width (qk_rope_head_dim),
#: D the non-rotary query/key width (d_head), Dv the value width. They replace wq/wk/wv/wo, split
#: as :func:`cost_models.partitioning.sharding_plan` charges their q/k/v/o slots: a matrix's input
#: dimension like E, its head (or head-serving) dimension like H (q) or K (k, v).
_MLA_DIMS: dict[str, tuple[list[str], list[str | None]]] = {
    "q_a": (["E", "Rq"], ["E", "H"]),
    "q_b": (["Rq", "H", "D+R"], ["E", "H", None]),
    "q": (["E", "H", "D+R"], ["E", "H", None]),  # a full-rank query (q_lora_rank 0)
    "kv_a": (["E", "Rkv+R"], ["E", "K"]),
    "kv_b": (["Rkv", "H", "D+Dv"], ["E", "K", None]),
    "o": (["H", "Dv", "E"], ["H", None, "E"]),
}
_LOGICAL = {"E": "embed", "H": "heads", "K": "kv_heads", "F": "mlp", "V": "vocab"}


def stage_blocks(d: Deployment) -> dict[str, int]:
    """Blocks of the busiest pipeline stage (the one the cost model charges): all of them,
    those with routed experts (cost_models.deployment.stage_moe_blocks) and the dense rest,
    and of all of them those with a sliding window (``windowed``; the rest attend to the whole
    context). A stage holds its share of the full-attention blocks, rounded up (Gemma 3's 5
    local : 1 global pattern and gpt-oss's alternation spread them evenly over the depth)."""
    m = d.model
    blocks = -(-m.layers // d.pipeline_parallel)
    moe = int(stage_moe_blocks(m.moe_layers, blocks, m.moe_layer_step))
    full = m.layers - m.sliding_window_layers if m.sliding_window else m.layers
    full_in_stage = min(blocks, -(-full * blocks // m.layers))
    return {"all": blocks, "moe": moe, "dense_ffn": blocks - moe, "windowed": blocks - full_in_stage}


def _mla_sizes(m) -> dict[str, int]:
    v_dim = m.v_head_dim or m.d_head
    return {
        "Rq": m.q_lora_rank,
        "D+R": m.d_head + m.qk_rope_head_dim,
        "Rkv+R": m.kv_lora_rank + m.qk_rope_head_dim,
        "Rkv": m.kv_lora_rank,
        "D+Dv": m.d_head + v_dim,
        "Dv": v_dim,
    }


def _weights(d: Deployment, layout: str, notes: list[str]) -> dict[str, dict]:
    """Per-layer weights (and the embedding / lm_head) of one phase's layout; ``blocks``: how
    many of the busiest pipeline stage's blocks hold each (embedding and lm_head: 1)."""
    rules = SHARDING_RULES[layout]
    m = d.model
    blocks = stage_blocks(d)
    sizes = {"E": m.d_model, "H": m.heads, "K": d.resolved_kv_heads, "D": m.d_head, "F": m.d_ff, "V": m.vocab}
    names = {"E": "d_model E", "H": "heads H", "K": "KV heads K", "F": "d_ff F", "V": "vocab V"}
    shapes = dict(_WEIGHT_DIMS)
    if m.is_mla:
        sizes.update(_mla_sizes(m))
        mla = {k: v for k, v in _MLA_DIMS.items() if k not in (("q_a", "q_b") if m.q_lora_rank == 0 else ("q",))}
        shapes = {**mla, **{k: v for k, v in shapes.items() if k not in ("wq", "wk", "wv", "wo")}}
        notes.append(
            "multi-head latent attention: q_a and kv_a are listed split like the heads they serve, as the "
            "estimate charges them; vLLM and SGLang keep them whole on every tensor-parallel rank (a few "
            "percent of a block more per chip)"
        )
    table = {}
    for weight, (dims, split_like) in shapes.items():
        if weight == "w_gate" and m.ffn != "swiglu":
            continue
        if weight in ("w_gate", "w_up", "w_down") and blocks["dense_ffn"] == 0:
            continue  # every block of the stage has experts instead
        never_gathered = weight in ("embedding", "lm_head")
        stored: list[list[str]] = []
        in_use: list[list[str]] = []
        ways = {"stored": 1, "in_use": 1}
        for dim, logical in zip(dims, split_like, strict=True):
            if logical is None:
                stored.append([])
                in_use.append([])
                continue
            # The split of the logical dimension the cost model sizes (E, H, K, F, V), applied to
            # this matrix's dimension that follows it (MLA's ranks follow E, H or K).
            axes = getattr(rules, _LOGICAL[logical])
            label = f"{weight} {names[logical]}"
            stored.append(_split(sizes[logical], axes, d.mesh, label, notes))
            in_use.append(
                stored[-1]
                if never_gathered or not rules.gather
                else _split(sizes[logical], rules.in_use(axes), d.mesh, f"{label} in use", notes)
            )
            for kind, chosen in (("stored", stored[-1]), ("in_use", in_use[-1])):
                chips = math.prod(dict(zip(AXES, d.mesh, strict=True))[a] for a in chosen)
                # As split_over charges it: the chips, or the logical size where chips share shards.
                ways[kind] *= min(chips, sizes[logical])
                # An MLA rank split like a head count the chips exceed (shards shared by several
                # chips) or that does not divide it: the sharding lists the axes, ``ways`` the split.
                if dim != logical and chips > 1 and (chips > sizes[logical] or sizes[dim] % chips):
                    notes.append(
                        f"{weight} {dim} ({sizes[dim]}) is charged split {min(chips, sizes[logical])} ways "
                        f"like {names[logical]} over {''.join(chosen)} ({chips} chips): see its ways"
                    )
                    if isinstance(notes, Notes):
                        notes.shared_shards.append(f"{weight} {dim} ({sizes[dim]}) over {''.join(chosen)}")
        table[weight] = _tensor(dims, [sizes[x] for x in dims], stored, in_use, () if never_gathered else rules.gather)
        # Shards of the whole matrix as the estimate charges them (stored, and in use).
        table[weight]["ways"] = ways
        table[weight]["blocks"] = (
            1 if never_gathered else blocks["dense_ffn"] if weight in ("w_gate", "w_up", "w_down") else blocks["all"]
        )
    table["lm_head"]["tied_to_embedding"] = m.tie_embeddings
    if m.is_moe and blocks["moe"]:
        table.update(_expert_weights(d, rules, blocks["moe"], notes))
    return table


def _expert_weights(d: Deployment, rules, moe_blocks: int, notes: list[str]) -> dict[str, dict]:
    """An MoE block's router and experts, split as the cost model charges them.

    The routed experts [X experts, E, F expert width] of one pipeline stage are spread over EP
    ranks (``ep``: X / EP whole experts each) and each expert's F over expert tensor parallelism
    (``expert_tp`` = TP x DP / EP chips), the engines' rule (vLLM: EP = TP x DP; TensorRT-LLM:
    moe_tp x moe_ep = tp); ``axis_sizes`` gives these two axes' chips. Without EP or DP, the
    experts split like the dense FFN over the layout's mesh axes (expert tensor parallelism).
    Shared experts [E, S] split like one expert's F, within the TP group. The router [E, X] is
    whole on every chip."""
    m = d.model
    gated = m.ffn == "swiglu"
    names = {"embed": "d_model E", "mlp": "expert width F"}
    engine = d.expert_parallel > 1 or d.data_parallel > 1
    if engine:
        stage_chips = d.tensor_parallel * d.data_parallel
        expert_tp = stage_chips // d.expert_parallel
        if m.expert_d_ff % expert_tp:
            notes.append(
                f"expert width F ({m.expert_d_ff}) does not divide over expert tensor parallelism ({expert_tp} chips)"
            )
        e_axes: list[str] = []
        f_axes = ["expert_tp"]
        x_axes = ["ep"]
        sizes = {"ep": d.expert_parallel, "expert_tp": expert_tp}
    else:
        e_axes = _split(m.d_model, rules.embed, d.mesh, f"w_expert {names['embed']}", notes)
        f_axes = _split(m.expert_d_ff, rules.mlp, d.mesh, f"w_expert {names['mlp']}", notes)
        x_axes, sizes = [], {}
    table: dict[str, dict] = {}
    routed = {"w_expert_up": ["X", "E", "F"], "w_expert_down": ["X", "F", "E"]}
    if gated:
        routed = {"w_expert_gate": ["X", "E", "F"], **routed}
    shape_of = {"X": m.experts, "E": m.d_model, "F": m.expert_d_ff}
    axes_of = {"X": x_axes, "E": e_axes, "F": f_axes}
    for weight, dims in routed.items():
        sharding = [list(axes_of[x]) for x in dims]
        entry = _tensor(dims, [shape_of[x] for x in dims], sharding, sharding)
        entry.update({"blocks": moe_blocks, "axis_sizes": sizes})
        table[weight] = entry
    if m.shared_d_ff:
        # Shared experts run on every token: tensor-parallel within the TP group, as the dense FFN.
        shared_axes = _split(m.expert_d_ff, rules.mlp, d.mesh, "w_shared expert width", notes)
        shared = {"w_shared_up": ["E", "S"], "w_shared_down": ["S", "E"]}
        if gated:
            shared = {"w_shared_gate": ["E", "S"], **shared}
        for weight, dims in shared.items():
            # E splits as the routed experts' does (over the layout's embed axes in 2D layouts).
            sharding = [list(e_axes) if x == "E" else list(shared_axes) for x in dims]
            shape = [m.d_model if x == "E" else m.shared_d_ff for x in dims]
            table[weight] = {**_tensor(dims, shape, sharding, sharding), "blocks": moe_blocks}
    table["router"] = {**_tensor(["E", "X"], [m.d_model, m.experts], [[], []], [[], []]), "blocks": moe_blocks}
    return table


def _kv_cache(d: Deployment, attention: str, notes: list[str]) -> dict:
    """The cache of one DP rank's sequences (all its micro-batches) in the busiest pipeline
    stage's blocks: keys and values [layers, B, S, K, D] each, by KV heads or by batch then heads
    (:func:`~cost_models.partitioning.kv_cache_split`); with multi-head latent attention one
    latent and shared rotary key per token [layers, B, S, Rkv+R], split like a single KV head:
    whole on every chip that splits heads, split only by batch (``kv_cache_split(..., latent)``).
    ``shape`` is the full-attention blocks' cache; ``sliding_window`` the windowed blocks', whose
    S is capped at the window (as :func:`cost_models.model_counts.cached_layers_per_token`
    charges it: vLLM's hybrid allocator frees what slid out, TensorRT-LLM keeps a cyclic cache)."""
    m = d.model
    latent = m.is_mla
    kv_heads = 1 if latent else d.resolved_kv_heads  # a latent is split as one KV head would be
    batch = d.batch // d.data_parallel
    batch_axes, head_axes = kv_cache_axes(kv_heads, batch // d.micro_batches, d.mesh, attention == "batch")
    sizes = dict(zip(AXES, d.mesh, strict=True))
    used = list(batch_axes) + ([] if latent else list(head_axes))
    shards = math.prod(sizes[a] for a in batch_axes) * min(kv_heads, math.prod(sizes[a] for a in head_axes))
    replicated = [a for a in AXES if a not in used and sizes[a] > 1]
    what = "latent cache" if latent else f"KV cache ({kv_heads} KV heads"
    if replicated:
        notes.append(
            f"{what}{'' if latent else ')'} ({attention}-sharded, batch {batch}) is split "
            f"{shards} ways and replicated over {''.join(replicated)}"
        )
    blocks = stage_blocks(d)
    context = d.prompt_len + d.gen_len
    if latent:
        dims = ["layers", "B", "S", "Rkv+R"]
        row = [batch, context, m.kv_lora_rank + m.qk_rope_head_dim]
        sharding: list[list[str]] = [[], list(batch_axes), [], []]
        arrays, tensors = 1, "one latent (kv_lora_rank) and shared rotary key (qk_rope_head_dim) per token"
    else:
        dims = ["layers", "B", "S", "K", "D"]
        row = [batch, context, kv_heads, m.d_head]
        sharding = [[], list(batch_axes), [], list(head_axes), []]
        arrays, tensors = 2, "one for keys, one for values"
    windowed = None
    if m.sliding_window:
        kept = min(m.sliding_window, context)
        windowed = {
            "window": m.sliding_window,
            "blocks": blocks["windowed"],
            # The model holds how many blocks are windowed, not which: its config's layer_types
            # (or sliding-window pattern) names them; a pipeline stage holds its share.
            "which": (
                f"{m.sliding_window_layers} of the model's {m.layers} blocks, as its config's layer_types name them"
            ),
            "shape": [blocks["windowed"], row[0], kept, *row[2:]],
            "sharding": sharding,
        }
    return {
        "dims": dims,
        "shape": [blocks["all"] - blocks["windowed"], *row],
        "sharding": sharding,
        "shards": shards,
        "replicated_over": replicated,
        "arrays": arrays,
        "tensors": tensors,
        "sliding_window": windowed,
    }


def sharding_tables(d: Deployment) -> tuple[dict[str, dict], Notes]:
    """Per phase, the sharding of every tensor of a deployment (one chip of the busiest pipeline
    stage, one DP rank's batch), and the notes on it."""
    notes = Notes()
    if d.pipeline_parallel > 1:
        notes.append(
            f"{d.pipeline_parallel} pipeline stages of up to {stage_blocks(d)['all']} blocks; the first holds the "
            "embedding, the last the lm_head (the tables list both, as the estimate charges them)"
        )
    return {phase: _phase(d, phase, notes) for phase in ("prefill", "decode")}, notes


def _phase(d: Deployment, phase: str, notes: list[str]) -> dict:
    """One phase's layout and the sharding of every tensor in it."""
    layout, attention = getattr(d, f"{phase}_ffn_layout"), getattr(d, f"{phase}_attn_sharding")
    rules = SHARDING_RULES[layout]
    tokens = d.prompt_len if phase == "prefill" else 1
    act_batch = _split(d.batch, rules.act_batch, d.mesh, "activation batch B", notes)
    act_e = _split(d.model.d_model, rules.act_embed, d.mesh, "activation d_model E", notes)
    return {
        "ffn_layout": layout,
        "attention_sharding": attention,
        "gather_axes": list(rules.gather),
        "weights": _weights(d, layout, notes),
        "kv_cache": _kv_cache(d, attention, notes),
        "activations": {
            "dims": ["B", "L", "E"],
            "shape": [d.batch, tokens, d.model.d_model],
            "sharding": [act_batch, [], act_e],
            "batch_axes": act_batch,
            "attention_batch_axes": (
                _split(d.batch, AXES, d.mesh, "attention batch B", notes) if attention == "batch" else act_batch
            ),
        },
    }


# ---------------------------------------------------------------------------------------------
# The canonical spec


def _finite(value: Any) -> Any:
    """JSON has no inf/nan: such floats become None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _hardware_section(hardware: HardwareSpec) -> dict:
    net = hardware.interconnect
    per_node = net.domain_size if isinstance(net, SwitchedInterconnect) else None
    return {"name": hardware.name, "kind": hardware.kind, "interconnect": net.kind, "chips_per_node": per_node}


def trial_deployment(trial: FrozenTrial) -> Deployment:
    """The deployment a trial scored, as it stored it (``Deployment.to_dict()``)."""
    stored = trial.user_attrs.get("deployment")
    if not isinstance(stored, dict):
        raise InvalidInputError(
            "trial",
            f"trial {trial.number} stores no deployment (a study made by an older tuner)",
            "run the study again with this version of tuner search",
        )
    return Deployment.from_dict(stored)


def trial_serving(trial: FrozenTrial) -> dict | None:
    """The serving workload and engine knobs a trial was scored under (``ServingWorkloads.row``),
    or None for a trial of a static study."""
    stored = trial.user_attrs.get("serving")
    return dict(stored) if isinstance(stored, dict) else None


def deployment_spec(study: optuna.Study, trial_number: int, *, allow_infeasible: bool = False) -> dict:
    """The canonical deployment spec of one trial (plain data: JSON and YAML safe).

    Raises ``InvalidInputError`` on ``trial`` for a missing, unfinished, structurally invalid or
    (unless ``allow_infeasible``) constraint-violating trial.
    """
    trial = _find_trial(study, trial_number)
    _check_trial(trial, allow_infeasible, study)
    d = trial_deployment(trial)
    estimate = trial.user_attrs["estimate"]
    phases, notes = sharding_tables(d)
    if phases["prefill"]["kv_cache"]["sharding"] != phases["decode"]["kv_cache"]["sharding"]:
        notes.append(
            "the KV cache is sharded differently in prefill and decode: it is resharded "
            "between the phases (the cost model does not count that)"
        )
    if d.resolved_block == "parallel":
        notes.append(
            "parallel block: wq/wk/wv run fused with the FFN's input matrices and wo with "
            "w_down (one set of collectives per layer); shardings as listed"
        )
    names = study.metric_names or [f"objective_{i}" for i in range(len(trial.values or []))]
    directions = [direction.name.lower() for direction in study.directions]
    return _finite(
        {
            "model": _model_section(d),
            "hardware": _hardware_section(d.hardware),
            "chips": d.chips,
            "mesh": dict(zip(AXES, d.mesh, strict=True)),
            "parallel": _parallel_section(d),
            "batch": d.batch,
            "workload": {"prompt_len": d.prompt_len, "gen_len": d.gen_len},
            "quantization": {"weights": d.weight_dtype, "kv_cache": d.kv_dtype, "activations": d.act_dtype},
            "flash_attention": d.flash_attention,
            # The engine knobs and load the trial was scored under (ServingWorkloads.row), if any.
            "serving": trial_serving(trial),
            "phases": phases,
            "predicted": {k: estimate[k] for k in ("prefill", "decode", "memory", "serving") if k in estimate},
            "scored_engine_memory": _scored_engine_memory(d, trial_serving(trial)),
            **({"serving": trial.user_attrs["serving"]} if isinstance(trial.user_attrs.get("serving"), dict) else {}),
            "provenance": {
                "study": study.study_name,
                "trial": trial.number,
                "spec_hash": study.user_attrs.get("spec_hash"),
                # The profile `predicted` was scored under (tuner.study.CALIBRATION_ATTR), as show and
                # pareto name it: the same trial under another profile predicts other numbers.
                "calibration": study.user_attrs.get(CALIBRATION_ATTR, "not recorded"),
                # A trial that did not complete has no values: no objectives (hence not strict).
                "objectives": [
                    {"name": n, "direction": direction, "value": v}
                    for n, direction, v in zip(names, directions, trial.values or [], strict=False)
                ],
                "constraints": trial_constraints(trial, study_constraint_names(study.user_attrs)),
                "feasible": is_feasible(trial),
            },
            "notes": list(dict.fromkeys(notes)),
            "shards_shared_within_an_axis": list(dict.fromkeys(notes.shared_shards)),
        }
    )


def _scored_engine_memory(d: Deployment, serving: dict | None) -> dict | None:
    """What an aggregated serving trial's engine was scored to hold per chip (weights, a full
    iteration's activations, the KV cache budget its memory knob gave by its engine's rule:
    cost_models.serving.engine_memory_bytes), so that another engine's knob can be set to give
    the same cache. Of a disaggregated trial, its decode pool's (``pool`` decode), scored with a
    decode-only iteration's activations, min(max_num_tokens, max_batch_size) tokens
    (cost_models.disaggregated._DecodeModel); its prefill pool's is not kept (a note says so).
    None for a static trial."""
    if serving is None or not serving.get("engine"):
        return None
    pool = "decode" if serving.get("mode") == "disaggregated" else None
    workload = make_workloads(
        backend=str(serving["engine"]),
        **{
            k: serving[k]
            for k in ("concurrency", "request_rate", "prompt_len", "gen_len", *SERVING_OPTIONS)
            if serving.get(k) is not None
        },
    )
    if pool:
        # As cost_models.disaggregated._DecodeModel: the budget below a prompt is no prefill
        # budget (make_workloads would refuse it as one), only the decode iteration's tokens.
        tokens = np.minimum(workload.max_num_tokens, workload.max_batch_size)
        workload = dataclasses.replace(workload, max_num_tokens=tokens)
    memory = engine_memory_bytes(Deployments.from_rows([d]), workload)
    return {
        "engine": str(serving["engine"]),
        "pool": pool,
        "capacity_bytes_per_chip": float(d.hardware.memory_bytes),
        **{f"{k}_bytes_per_chip": float(v[0]) for k, v in memory.items()},
    }


def _parallel_section(d: Deployment) -> dict:
    """The engines' degrees: TP (the mesh's chips), PP, EP, DP and the pipeline's micro-batches."""
    return {
        "tp": d.tensor_parallel,
        "pp": d.pipeline_parallel,
        "ep": d.expert_parallel,
        "dp": d.data_parallel,
        "micro_batches": d.micro_batches,
    }


def _model_section(d: Deployment) -> dict:
    m = d.model
    return {
        "experts": m.experts,
        "name": m.name,
        "hf_repo": HF_REPOS.get(m.name) if model_catalog().get(m.name) == m else None,
        # The publisher's block-scaled fp8 checkpoint, served for fp8 weights (FP8_REPOS).
        "fp8_hf_repo": FP8_REPOS.get(m.name) if model_catalog().get(m.name) == m else None,
        "fp8_block_scales": m.fp8_block_scales,
        "layers": m.layers,
        "d_model": m.d_model,
        "heads": m.heads,
        "kv_heads": d.resolved_kv_heads,
        "d_head": m.d_head,
        "d_ff": m.d_ff,
        "ffn": m.ffn,
        "block": d.resolved_block,
        "vocab": m.vocab,
        "tie_embeddings": m.tie_embeddings,
        # Multi-head latent attention (0 when none) and sliding windows (0: none).
        "kv_lora_rank": m.kv_lora_rank,
        "q_lora_rank": m.q_lora_rank,
        "qk_rope_head_dim": m.qk_rope_head_dim,
        "v_head_dim": m.v_head_dim,
        "sliding_window": m.sliding_window,
        "sliding_window_layers": m.sliding_window_layers,
        "checkpoint_format": m.checkpoint_format,
        # The longest context the model was trained for (its config's max_position_embeddings; 0: unknown).
        "max_context": m.max_context,
        "published_kv_heads": m.kv_heads,
        "published_block": m.block,
    }


# ---------------------------------------------------------------------------------------------
# Formats


def _partition_spec(sharding: list[list[str]]) -> list[str | list[str] | None]:
    """Per dimension: None (replicated), one axis name, or a list of axis names."""
    return [None if not axes else axes[0] if len(axes) == 1 else list(axes) for axes in sharding]


def jax_sharding(spec: dict) -> dict:
    """Mesh and ``PartitionSpec``-style entries of every tensor, per phase (lists stand for tuples).
    Refused where a dimension's shards are shared by several chips of one mesh axis (8 KV heads on
    an axis of 16): NamedSharding splits a dimension over whole axes only."""
    shared = spec.get("shards_shared_within_an_axis") or []
    if shared:
        raise InvalidInputError(
            "format",
            f"JAX cannot shard {shared[0]} evenly (each shard would sit on several chips of one axis)",
            "export as json, or pick a trial whose mesh axes divide the head counts",
        )
    # The mesh and partition specs are one x, y, z mesh's (Pope et al.'s layouts): pipeline stages,
    # expert and data parallelism and disaggregated pools have no axis there. Exported anyway, a
    # TP 4 x EP 16 x DP 4 trial of Qwen3-235B (16 chips) came out as a 1x1x4 mesh with its experts
    # whole on every chip and no word of the other 12 chips the metrics were scored on.
    parallel = spec.get("parallel") or {}
    beyond = [f"{k.upper()} {parallel[k]}" for k in ("pp", "ep", "dp") if int(parallel.get(k) or 1) > 1]
    if (spec.get("serving") or {}).get("mode") == "disaggregated":
        beyond.append("disaggregated prefill and decode pools")
    if beyond:
        raise InvalidInputError(
            "format",
            f"the JAX export is one x, y, z mesh's partition specs; this trial's {' and '.join(beyond)} "
            f"({spec['chips']} chips) have no axis there",
            "export with --format json (or vllm, sglang, trtllm), or pick a trial without them",
        )
    phases = {}
    for name, phase in spec["phases"].items():
        phases[name] = {
            "ffn_layout": phase["ffn_layout"],
            "attention_sharding": phase["attention_sharding"],
            "gather_axes": phase["gather_axes"],
            "weights": {
                w: {
                    "dims": t["dims"],
                    "shape": t["shape"],
                    "stored": _partition_spec(t["sharding"]),
                    "in_use": _partition_spec(t["in_use"]),
                }
                for w, t in phase["weights"].items()
            },
            "kv_cache": {
                "dims": phase["kv_cache"]["dims"],
                "shape": phase["kv_cache"]["shape"],
                "spec": _partition_spec(phase["kv_cache"]["sharding"]),
                "arrays": phase["kv_cache"]["arrays"],
                # Windowed blocks: the same spec, S capped at the window.
                "sliding_window": phase["kv_cache"]["sliding_window"],
            },
            "activations": {
                "dims": phase["activations"]["dims"],
                "shape": phase["activations"]["shape"],
                "spec": _partition_spec(phase["activations"]["sharding"]),
            },
        }
    mesh = spec["mesh"]
    usage = (
        "mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(mesh_shape), axis_names); "
        "NamedSharding(mesh, PartitionSpec(*spec)) with each list entry as a tuple"
    )
    notes = [
        "devices row-major over (x, y, z): z fastest (on GPUs, consecutive z share an NVLink node)",
        (
            "weights are stored with 'stored'; in weight-gathered layouts (wg_*) they are all-gathered "
            "over gather_axes before each use, giving 'in_use'; the memory estimate holds 2 copies of a "
            "block's stored shard in flight (Pope et al.'s looped collective matmul passes shards round "
            "the mesh), not the gathered 'in_use' block a plain all-gather would materialize"
        ),
        (
            "per-layer weight shapes; the KV cache is one array for keys and one for values (arrays 2), "
            "or with multi-head latent attention one latent array (arrays 1)"
        ),
        *spec["notes"],
    ]
    return {
        "mesh_shape": [mesh["x"], mesh["y"], mesh["z"]],
        "axis_names": list(AXES),
        "usage": usage,
        "phases": phases,
        "notes": notes,
        "provenance": spec["provenance"],
    }


def engine_knobs(serving: dict | None, engine: str, batch: int | None = None) -> dict[str, Any]:
    """The engine knobs an export sets: the trial's (``serving``, a ``ServingWorkloads.row``)
    where it has them, else ``engine``'s defaults (:data:`cost_models.serving.ENGINE_DEFAULTS`);
    without a serving workload the most sequences per iteration is the trial's static ``batch``
    (what was scored). ``prefix_caching``: on where the workload has prefix hits."""
    if engine not in ENGINE_DEFAULTS:
        raise InvalidInputError("format", f"unknown engine {engine!r}", f"use one of {', '.join(ENGINES)}")
    given = serving or {}
    knobs = dict(ENGINE_DEFAULTS[engine])
    if serving is None and batch is not None:
        knobs["max_batch_size"] = batch
    for key in knobs:
        if given.get(key) is not None:
            knobs[key] = given[key]
    knobs["max_batch_size"] = int(knobs["max_batch_size"])
    knobs["max_num_tokens"] = int(knobs["max_num_tokens"])
    knobs["kv_block_size"] = int(knobs["kv_block_size"])
    knobs["chunked_prefill"] = bool(knobs["chunked_prefill"])
    knobs["memory_fraction"] = float(knobs["memory_fraction"])
    knobs["prefix_caching"] = float(given.get("prefix_hit_rate") or 0.0) > 0
    return knobs


def _divides_budget_by_dp(engine: str, spec: dict, knobs: dict[str, Any], dp: int) -> bool:
    """Whether ``engine`` divides the token budget it is given by its DP ranks: SGLang with DP
    attention (an MoE model at DP > 1) and chunked prefill divides --chunked-prefill-size by
    --dp-size itself (sgl-project/sglang server_args.py, _handle_data_parallelism); vLLM's and
    TensorRT-LLM's max_num_tokens is each rank's."""
    return engine == "sglang" and spec["model"]["experts"] > 0 and dp > 1 and bool(knobs["chunked_prefill"])


def rank_token_budget(spec: dict, knobs: dict[str, Any], engine: str, dp: int, notes: list[str]) -> int:
    """The token-budget flag that gives each of ``engine``'s ``dp`` ranks the budget an aggregated
    serving trial was scored with. The serving model gives each DP rank the trial's
    ``max_num_tokens``, except under SGLang with DP attention (an MoE model at DP > 1, chunked
    prefill), which divides its --chunked-prefill-size by --dp-size itself
    (cost_models.serving.rank_workloads; sgl-project/sglang python/sglang/srt/server_args.py,
    _handle_data_parallelism). Exported to the other kind of engine the same number gave each rank
    DP times (or 1/DP of) the budget scored: Mixtral TP1 DP4 EP4 scored under vLLM at 2048 tokens a
    rank was launched on SGLang with chunks of 512. A disaggregated prefill pool's likewise (its
    DP ranks'); the decode pool's is set by :func:`_disaggregated_engine_args`."""
    budget = int(knobs["max_num_tokens"])
    serving = spec.get("serving")
    if serving is None or serving.get("pool") == "decode" or dp <= 1:
        return budget
    scored = str(serving.get("engine") or "vllm")
    # The trial's own chunked prefill for the rule it was scored under: sglang_args turns an
    # unchunked trial's on (SGLang mixes only chunks), and SGLang divides only a chunked budget.
    scored_knobs = {**knobs, "chunked_prefill": bool(serving.get("chunked_prefill", knobs["chunked_prefill"]))}
    scored_divides = _divides_budget_by_dp(scored, spec, scored_knobs, dp)
    engine_divides = _divides_budget_by_dp(engine, spec, knobs, dp)
    if scored_divides == engine_divides:
        return budget
    rank = budget if not scored_divides else max(budget // dp, 1)
    value = rank * dp if engine_divides else rank
    notes.append(
        f"token budget {value}, not the trial's {budget}: the trial was scored under {scored} with {rank} tokens an "
        f"iteration in each of its {dp} DP ranks; "
        + (
            "SGLang with DP attention divides --chunked-prefill-size by --dp-size"
            if engine_divides
            else f"{scored} with DP attention divides its --chunked-prefill-size by --dp-size, {engine} takes its "
            "budget per rank"
        )
    )
    return value


#: The most of a GPU's memory an exported engine is given: the rest holds the CUDA context,
#: CUDA graphs and NCCL buffers, which the estimate does not charge.
MAX_MEMORY_FRACTION = 0.98

#: What each engine's memory knob is a share of (cost_models.serving.kv_budget_bytes, where each
#: rule is cited from the engine's source), as a note says it.
MEMORY_RULES = {
    "trtllm": "free_gpu_memory_fraction, a share of the memory left after weights and activations",
    "vllm": "gpu_memory_utilization, a share of all memory (weights and activations included)",
    "sglang": "mem_fraction_static, a share of all memory for weights and KV cache (activations outside it)",
    "jax": "a share of all memory (weights and activations included)",
}


#: What the trial's share of memory is taken of, in the note that raises an engine's knob.
KNOB_SHARE_OF = {
    "trtllm": "the memory weights and activations leave",
    "sglang": "each GPU's memory for weights and KV cache",
}


def _knob_holding(engine: str, capacity: float, weights: float, kv: float, activations: float) -> float:
    """The least memory knob at which ``engine`` gives the KV cache ``kv`` bytes per chip: the
    engine's rule (cost_models.serving.kv_budget_bytes) is linear in its knob, budget(f) =
    budget(0) + f x (budget(1) - budget(0)), so the knob is (kv - budget(0)) / slope (inf where
    no knob leaves room: TensorRT-LLM with weights and activations past the memory)."""

    def budget(fraction: float) -> float:
        return float(
            kv_budget_bytes(
                np.array([engine]), capacity, np.array([fraction]), np.array([weights]), np.array([activations])
            )[0]
        )

    at_zero = budget(0.0)
    slope = budget(1.0) - at_zero
    return (kv - at_zero) / slope if slope > 0 else math.inf


def memory_fraction(spec: dict, knobs: dict[str, Any], engine: str, notes: list[str]) -> float:
    """The engine's memory knob (TensorRT-LLM ``free_gpu_memory_fraction``, vLLM
    ``gpu_memory_utilization``, SGLang ``mem_fraction_static``), each meaning what the engine means
    (:data:`MEMORY_RULES`): a serving trial's own knob, scored under its engine's rule (a note where
    the trial was scored under another engine's: the same number gives that engine another KV
    cache); for a static trial, which the estimate fits against all of HBM, the engine's default
    raised (in hundredths) to hold the trial's KV cache by the engine's rule: a trial at 91% of
    HBM would not load at vLLM's default 0.9."""
    fraction = float(knobs["memory_fraction"])
    serving = spec.get("serving")
    if serving is not None:
        # A trial scored before the workload stored its engine was scored under vLLM's rule.
        scored = str(serving.get("engine") or "vllm")
        if scored == engine:
            return fraction
        rule = MEMORY_RULES.get(scored, scored)
        held = spec.get("scored_engine_memory")
        if (
            held is None
            or held.get("engine") != scored
            or held.get("pool") != serving.get("pool")
            or held["kv_budget_bytes_per_chip"] <= 0
        ):
            notes.append(
                f"the trial's memory fraction {fraction:g} was scored as {scored}'s {rule}; {engine} reads it as "
                f"{MEMORY_RULES[engine]}: its KV cache differs from the estimate's"
            )
            return fraction
        # The same number means another cache under another engine's rule (TensorRT-LLM's 0.9 of
        # the memory weights and activations leave is more than vLLM's 0.9 of all memory less
        # them): the knob that gives this engine the cache the trial was scored with, by its rule.
        kv = held["kv_budget_bytes_per_chip"]
        share = _knob_holding(
            engine,
            held["capacity_bytes_per_chip"],
            held["weights_bytes_per_chip"],
            kv,
            held["activations_bytes_per_chip"],
        )
        # Up to the hundredth that holds it (less a rounding error's worth: 0.85 stays 0.85).
        converted = min(math.ceil(share * 100 - 1e-9) / 100, MAX_MEMORY_FRACTION)
        # Where the conversion lands on the trial's own number ("0.9, not the trial's 0.9" read as a
        # contradiction), the note says the same number holds the scored cache by this engine's rule.
        same = converted == fraction
        notes.append(
            f"memory fraction {converted:g}, "
            + ("as the trial's" if same else f"not the trial's {fraction:g}")
            + f": the trial was scored with {scored}'s {rule} ({kv / 1e9:.1f} GB of KV cache a GPU); "
            f"{engine}'s knob is {MEMORY_RULES[engine]}"
            + (
                f", and holds that cache only above {MAX_MEMORY_FRACTION} ({share:.0%}): it may not load"
                if share > MAX_MEMORY_FRACTION
                else f", and {converted:g} holds that cache by it too"
                if same
                else ""
            )
        )
        return converted
    memory = (spec.get("predicted") or {}).get("memory")
    if not memory or not memory.get("capacity_bytes_per_chip"):
        return fraction
    capacity = memory["capacity_bytes_per_chip"]
    weights = memory.get("weights_bytes_per_chip", 0.0)
    kv = memory.get("kv_cache_bytes_per_chip", 0.0)
    activations = memory.get("activation_bytes_per_chip", 0.0)
    share, of = (
        _knob_holding(engine, capacity, weights, kv, activations),
        KNOB_SHARE_OF.get(engine, "each GPU's memory"),
    )
    if share <= fraction:
        chosen = fraction
    else:
        needed = math.ceil(share * 100 + 1) / 100
        if needed > MAX_MEMORY_FRACTION:
            notes.append(
                f"the trial needs {share:.0%} of {of}; the engine keeps some for itself (CUDA graphs, "
                f"NCCL): it may not load even at {MAX_MEMORY_FRACTION}"
            )
            chosen = MAX_MEMORY_FRACTION
        else:
            notes.append(
                f"memory fraction raised from {engine}'s default {fraction} to {needed}: the trial needs "
                f"{share:.0%} of {of}"
            )
            chosen = needed
    if engine == "sglang" and activations > capacity * (1.0 - chosen):
        notes.append(
            f"SGLang runs activations outside mem_fraction_static: the trial's {activations / 1e9:.2f} GB per GPU "
            f"pass the {1.0 - chosen:.2f} left ({capacity * (1.0 - chosen) / 1e9:.2f} GB)"
        )
    return chosen


def per_rank_batch(knobs: dict[str, Any], dp: int, engine: str, notes: list[str], dp_attention: bool = False) -> int:
    """The most sequences per iteration as ``engine`` counts them under ``dp`` data-parallel ranks.
    The trial's batch is the deployment's (its DP ranks split it evenly,
    cost_models.deployments.parallel_problem_mask); vLLM runs each DP rank as its own engine core
    with its own scheduler (docs.vllm.ai, Data Parallel Deployment) and TensorRT-LLM sizes its
    batch per rank under attention DP, so both get the batch over the ranks. SGLang divides its
    ``--max-running-requests`` among its DP workers only under DP attention (``dp_attention``):
    its scheduler and ModelRunner take ``max_running_requests // (dp_size if
    enable_dp_attention else 1)`` (sgl-project/sglang python/sglang/srt/managers/scheduler.py,
    model_executor/model_runner.py); plain DP replicas (a dense model) each take the whole value,
    so they get the batch over the ranks too."""
    batch = knobs["max_batch_size"]
    if dp <= 1:
        return batch
    if engine == "sglang" and dp_attention:
        # SGLang's rank takes the floor, the serving model's the ceiling
        # (cost_models.serving.rank_workloads): a limit DP does not divide is written as the
        # multiple of DP that leaves each rank the share it was scored with.
        whole = -(-batch // dp) * dp
        if whole != batch:
            notes.append(
                f"max_running_requests {whole}, not the trial's {batch}: SGLang gives each of its {dp} DP-attention "
                f"ranks max_running_requests // dp_size ({batch // dp} of {batch}); the trial was scored with "
                f"ceil({batch} / {dp}) = {whole // dp} a rank"
            )
        return whole
    rank = -(-batch // dp)
    notes.append(f"the batch limit is per data-parallel rank for {engine}: {batch} sequences over {dp} ranks")
    return rank


def _cli(prefix: list[str], flags: list[tuple[str, Any]]) -> str:
    """A shell line: ``prefix`` then each flag with its value (True: the bare flag; None: left out)."""
    line = list(prefix)
    for flag, value in flags:
        if value is None or value is False:
            continue
        line += [flag] if value is True else [flag, str(value)]
    return shlex.join(line)


#: The placeholder an exported multi-node launch names the head node's address by.
HEAD_NODE = "HEAD_NODE_IP"


#: GPUs of one host (one OS instance, what an engine's multi-node launch counts as a node), where
#: it is not the NVLink domain the catalog's ``chips_per_node`` gives: a GB200 NVL72 compute tray
#: holds 4 Blackwell GPUs (NVIDIA GB200 NVL72 datasheet: 18 trays, 72 GPUs) inside one 72-GPU NVLink
#: domain; PCIe GPUs (L4, L40S: domain 1; RTX A6000: NVLink pairs) ship 8 to a server (e.g. Google
#: Cloud g2-standard-96: 8 L4).
GPUS_PER_HOST = {"gb200": 4, "l4": 8, "l40s": 8, "a6000": 8}


def _gpus_per_host(spec: dict) -> int:
    """GPUs of one host: :data:`GPUS_PER_HOST`, else the NVLink domain (an 8-GPU HGX/DGX board or
    an 8-OAM platform is one host), else 8."""
    hardware = spec["hardware"]
    return GPUS_PER_HOST.get(hardware["name"]) or hardware["chips_per_node"] or 8


def _nodes(spec: dict, gpus: int) -> int:
    """Hosts one engine instance of ``gpus`` GPUs spans (:func:`_gpus_per_host` at a time)."""
    return -(-gpus // _gpus_per_host(spec))


def _multi_node_note(engine: str, gpus: int, nodes: int, spec: dict, how: str, head: bool = True) -> str:
    domain = spec["hardware"]["chips_per_node"] or 1
    over = (
        "over the inter-node network, as the estimate charged them"
        if gpus > domain
        else f"over NVLink (one {domain}-GPU NVLink domain), as the estimate charged them"
    )
    return (
        f"one {engine} instance spans {nodes} nodes ({gpus} GPUs, {_gpus_per_host(spec)} a node): "
        f"{how}; its collectives between nodes run {over}"
        + (f". Replace {HEAD_NODE} with node 0's address" if head else "")
    )


def max_context_tokens(spec: dict) -> int:
    """The context an exported engine must admit per request (vLLM ``max_model_len``, SGLang
    ``context_length``, TensorRT-LLM ``max_seq_len``): prompt plus generated tokens, each at the
    serving workload's CONTEXT_QUANTILE length where lengths spread (the serving model and the
    simulation draw them lognormal, cost_models.serving_simulation.length_quantile; by default
    outputs spread by 5%), else at the mean. At the means alone the engine would refuse every
    request longer than the mean."""
    workload, serving = spec["workload"], spec.get("serving") or {}
    return sum(
        length_quantile(float(workload[name]), float(serving.get(f"{name}_std") or 0.0))
        for name in ("prompt_len", "gen_len")
    )


def _context_limit(spec: dict, notes: list[str]) -> int:
    """:func:`max_context_tokens`, with a note where the workload's spread takes it past the means."""
    tokens = max_context_tokens(spec)
    mean = spec["workload"]["prompt_len"] + spec["workload"]["gen_len"]
    if tokens != mean:
        notes.append(
            f"the context limit ({tokens} tokens) holds prompts and outputs at their {CONTEXT_QUANTILE:.1%} "
            f"lengths under the workload's spread, not only the mean {mean}"
        )
    model = spec["model"]
    if model.get("max_context") and tokens > model["max_context"]:
        # vLLM (vllm/config/model.py, _get_and_verify_max_len) and SGLang (python/sglang/srt/configs/
        # model_config.py) refuse a context limit past the model's unless an environment variable allows it.
        notes.append(
            f"the context limit ({tokens} tokens) passes {model['name']}'s {model['max_context']}-token context: "
            "vLLM refuses it without VLLM_ALLOW_LONG_MAX_MODEL_LEN=1, SGLang without "
            "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1 (and outputs past the trained context degrade)"
        )
    return tokens


def served_repo(spec: dict) -> str | None:
    """The Hugging Face repo an engine serves for the trial: the publisher's block-scaled fp8
    checkpoint (FP8_REPOS) for fp8 weights of a 16-bit model that has one, else the model's own."""
    model = spec["model"]
    if spec["quantization"]["weights"] == "fp8" and model.get("checkpoint_format") is None and model.get("fp8_hf_repo"):
        return model["fp8_hf_repo"]
    return model["hf_repo"]


#: The address an exported server listens on where the engine's own default is the loopback
#: (SGLang's 127.0.0.1, TensorRT-LLM's localhost): every interface, as vLLM's default is, so that
#: a load balancer or a disaggregated router on another host reaches it.
ANY_HOST = "0.0.0.0"
#: The key of a deployment spec's copy the engine renderers read ``tuner export --host`` from.
LISTEN_HOST = "listen_host"


#: The port each disaggregated pool's instances listen on, as the router's lines name them
#: (_disaggregated_router: vLLM's toy_proxy_server --prefiller-ports / --decoder-ports, TensorRT-LLM's
#: disagg_config urls, sglang_router's --prefill / --decode URLs). SGLang's are its PD guide's
#: (docs.sglang.io, PD Disaggregation: prefill --port 30000, decode --port 30001); before, both
#: pools kept SGLang's default 30000, so a prefill and a decode instance could not share a host.
#: Their --host 0.0.0.0 is sglang_args'.
DISAGGREGATED_PORTS: dict[str, dict[str, int]] = {
    "vllm": {"prefill": 8100, "decode": 8200},
    "trtllm": {"prefill": 8001, "decode": 8002},
    "sglang": {"prefill": 30000, "decode": 30001},
}


def vllm_args(spec: dict) -> dict:
    """vLLM engine arguments (and the ``vllm serve`` line) approximating the spec; notes say how.

    vLLM runs Megatron-style tensor parallelism (1D weight-stationary, heads split): a trial in
    that layout (or in the engines' degrees) is exported with the degrees it was scored with, across
    nodes too (a Ray cluster: ``launch``); a trial in another of Pope et al.'s layouts is
    approximated by tensor parallelism within a node and pipeline stages across nodes (a note says
    so). Weights and KV cache: :func:`engine_formats` (fp4 ->
    ``mxfp4`` for gpt-oss, ``modelopt_fp4`` otherwise). Engine knobs
    (:func:`engine_knobs`): ``max_num_seqs``, ``max_num_batched_tokens``,
    ``enable_chunked_prefill``, ``block_size``, ``gpu_memory_utilization``,
    ``enable_prefix_caching`` (vLLM engine arguments, docs.vllm.ai/en/latest/configuration/
    engine_args; booleans as ``--X`` / ``--no-X``). Raises ``InvalidInputError`` on ``format``
    where vLLM cannot run the configuration at all: non-GPU hardware, an attention or block
    what-if (no such checkpoint), heads not divisible by the tensor-parallel size, a 4-bit KV cache.
    """
    model = spec["model"]
    par = _engine_parallelism(spec, "vllm")
    tp, pp, ep, dp = par["tp"], par["pp"], par["ep"], par["dp"]
    if engine_problem_mask("vllm", model["heads"], model["experts"], tp, ep, dp):
        raise InvalidInputError(
            "format",
            f"vLLM's expert parallelism always spans all tp x dp = {tp * dp} ranks (EP = TP x DP); it cannot run "
            f"EP {ep}",
            "export this trial with --format sglang or trtllm, or choose a trial with ep = tp x dp or ep 1",
        )
    notes: list[str] = []
    quantization, kv_cache_dtype = engine_formats(spec["quantization"], model, "vllm", notes, spec["hardware"]["name"])
    load_note = online_fp8_load_note(spec, "vLLM") if quantization == "fp8" else None
    notes += [load_note] if load_note else []
    notes += _vllm_layout_notes(spec, tp, pp, "vLLM")
    notes += _micro_batch_notes(par, "vLLM")
    notes += _load_notes(spec)
    if served_repo(spec) is None:
        notes.append(f"no known Hugging Face checkpoint for {model['name']}: set model")
    knobs = engine_knobs(spec.get("serving"), "vllm", spec["batch"])
    knobs["max_num_tokens"] = rank_token_budget(spec, knobs, "vllm", dp, notes)
    max_model_len = _context_limit(spec, notes)
    budget = knobs["max_num_tokens"]
    if not knobs["chunked_prefill"] and budget < max_model_len:
        # vLLM refuses to start without chunked prefill when max_num_batched_tokens < max_model_len
        # (vllm-project/vllm vllm/config/scheduler.py, SchedulerConfig.verify_max_model_len).
        notes.append(
            f"without chunked prefill vLLM refuses max_num_batched_tokens ({budget}) below max_model_len "
            f"({max_model_len}): raised to {max_model_len} (the trial was scored with a {budget}-token budget)"
        )
        budget = max_model_len
    seqs = per_rank_batch(knobs, dp, "vllm", notes)
    if seqs > budget:
        # vLLM refuses max_num_batched_tokens < max_num_seqs (vllm/config/scheduler.py,
        # SchedulerConfig.verify_max_model_len): a step cannot run more sequences than tokens. A
        # serving trial was scored with no more running than its budget keeps decoding
        # (cost_models.serving.token_limit, under the budget): the cap changes nothing scored and
        # goes without a note. A static trial's batch was scored as it is: that one changes.
        if spec.get("serving") is None:
            notes.append(
                f"vLLM refuses max_num_seqs ({seqs}) above max_num_batched_tokens ({budget}): capped at {budget}, "
                f"the most sequences a step of that budget runs (the trial was scored at a batch of {seqs})"
            )
        seqs = budget
    block = knobs["kv_block_size"]
    if model["kv_lora_rank"] and block % 64:
        # A multi-head latent attention model runs on vLLM's MLA backends, which replace any block
        # size that is not a multiple of their page at start-up (vllm/platforms/cuda.py,
        # check_and_update_config: "Forcing kv cache block size to 64 for FlashMLA backend.", the
        # default on Hopper; 128 for CUTLASS_MLA): the block is written as vLLM will run it.
        notes.append(
            f"vLLM's FlashMLA backend forces block_size to a multiple of 64 for {model['name']}'s latent cache, not "
            f"{block}: rounded up to {block + 64 - block % 64} (the trial was scored with {block}-token blocks; "
            "the CUTLASS_MLA backend of Blackwell forces 128)"
        )
        block += 64 - block % 64
    if block not in VLLM_BLOCK_SIZES:
        # vLLM's CUDA attention backends need a block size that is a multiple of 16 (vllm/v1/attention/
        # backends/flash_attn.py: "Block size must be a multiple of 16."), and --block-size takes
        # only its choices (vllm/config/cache.py, BlockSize = Literal[1, 8, 16, 32, 64, 128, 256]):
        # a page of 48 was written --block-size 48, which `vllm serve` refuses. The least choice
        # above (an MLA model's already a multiple of 64, which any choice above keeps).
        rounded = next((b for b in VLLM_BLOCK_SIZES if b >= block), VLLM_BLOCK_SIZES[-1])
        notes.append(
            f"vLLM needs block_size a multiple of 16 among its --block-size choices "
            f"({', '.join(map(str, VLLM_BLOCK_SIZES))}), not {block}: {rounded}"
        )
        block = rounded
    args = {
        "model": served_repo(spec),
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        # DP ranks share the experts (MoE, docs.vllm.ai serving/data_parallel_deployment); of a
        # dense model they are replicas. EP: the experts over all TP x DP ranks.
        "data_parallel_size": dp if dp > 1 else None,
        "enable_expert_parallel": True if ep > 1 else None,
        "dtype": "bfloat16",
        "quantization": quantization,
        "kv_cache_dtype": kv_cache_dtype,
        "max_num_seqs": seqs,
        "max_model_len": max_model_len,
        "max_num_batched_tokens": budget,
        "enable_chunked_prefill": knobs["chunked_prefill"],
        "block_size": block,
        "gpu_memory_utilization": memory_fraction(spec, knobs, "vllm", notes),
        "enable_prefix_caching": knobs["prefix_caching"],
        # A disaggregated pool's KV transfer: without a connector each vLLM instance prefills and
        # decodes its own requests and no KV cache leaves it (docs.vllm.ai, Disaggregated
        # Prefilling; NixlConnector Usage Guide: both roles run kv_role kv_both and a proxy sends
        # each request to a prefiller, then to a decoder, which pulls the blocks over NIXL).
        "kv_transfer_config": (
            {"kv_connector": "NixlConnector", "kv_role": "kv_both"} if (spec.get("serving") or {}).get("pool") else None
        ),
        # vLLM listens on every interface unless told (vllm/entrypoints/openai/cli_args.py: host
        # None, uvicorn's all interfaces), as a replica behind a load balancer or a router's pool
        # must: written only where tuner export --host names another.
        "host": spec.get(LISTEN_HOST),
        # A disaggregated pool listens where its router sends (_disaggregated_router's ports);
        # vLLM's own default, 8000, is the router's.
        "port": DISAGGREGATED_PORTS["vllm"].get((spec.get("serving") or {}).get("pool") or ""),
    }
    gpus = tp * pp * dp
    nodes = _nodes(spec, gpus)
    launch: list[str] = []
    if nodes > 1:
        # vLLM runs one instance over several nodes on a Ray cluster, launched once on its head
        # node (docs.vllm.ai, Distributed Inference and Serving: "ray start --head" on the head,
        # "ray start --address=<ray-head-address>" on the others, then vllm serve with the total
        # GPU count; --distributed-executor-backend ray, since multiprocessing runs one node).
        # Data-parallel ranks over nodes: --data-parallel-backend=ray launches them all from one
        # command (docs.vllm.ai, Data Parallel Deployment).
        if dp > 1:
            args["data_parallel_backend"] = "ray"
            if tp * pp <= _gpus_per_host(spec):
                args["data_parallel_size_local"] = min(dp, _gpus_per_host(spec) // (tp * pp))
            else:
                # A DP rank wider than a host: Ray places it across hosts only under the "span"
                # packing strategy, which sets the local DP size itself (vllm/envs.py
                # VLLM_RAY_DP_PACK_STRATEGY: strict (default), fill, span).
                notes.append(
                    f"each data-parallel rank (TP x PP = {tp * pp} GPUs) spans hosts: launch with "
                    "VLLM_RAY_DP_PACK_STRATEGY=span (vLLM's default, strict, packs a rank into one host)"
                )
        else:
            args["distributed_executor_backend"] = "ray"
        launch = [
            "ray start --head --port=6379  # on node 0",
            f"ray start --address={HEAD_NODE}:6379  # on nodes 1..{nodes - 1}",
        ]
        notes.append(
            _multi_node_note(
                "vLLM", gpus, nodes, spec, "start a Ray cluster over them (launch, in order), then the line on node 0"
            )
        )
    flags: list[tuple[str, Any]] = []
    for key, value in args.items():
        if key == "model" or value is None:
            continue
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):  # vLLM's boolean engine args take --X / --no-X
            flags.append((flag if value else f"--no-{flag[2:]}", True))
        elif isinstance(value, dict):  # JSON engine args (--kv-transfer-config)
            flags.append((flag, json.dumps(value, separators=(",", ":"))))
        else:
            flags.append((flag, value))
    cli = _cli(["vllm", "serve", args["model"] or "MODEL"], flags)
    out = {"engine": "vllm", "engine_args": args, "cli": cli, "notes": notes, "provenance": spec.get("provenance")}
    if nodes > 1:
        out = {**out, "nodes": nodes, "launch": [*launch, cli + "  # on node 0"]}
    return _with_scored_engine(out, spec)


#: NVIDIA's SM100 chips of the catalog (compute capability 10.x: is_sm100_supported in SGLang).
SM100_CHIPS = ("b200", "gb200", "b300")


def _sglang_page_size(spec: dict, page: int, notes: list[str]) -> int:
    """``--page-size`` as SGLang will run it. On SM100 it serves DeepseekV3ForCausalLM (DeepSeek-V3,
    Kimi K2: the catalog's latent-attention models) with its trtllm_mla backend, which changes a
    page other than 32 or 64 to 64 at start-up ("TensorRT-LLM MLA only supports page_size of 32 or
    64, changing page_size from 1 to 64": sgl-project/sglang python/sglang/srt/server_args.py,
    _handle_model_specific_adjustments and the attention-backend checks). Written as it will run,
    said in a note, as vLLM's FlashMLA block (vllm_args)."""
    if not spec["model"]["kv_lora_rank"] or spec["hardware"]["name"] not in SM100_CHIPS or page in (32, 64):
        return page
    model, chip = spec["model"]["name"], spec["hardware"]["name"]
    notes.append(
        f"SGLang serves {model}'s latent cache with its trtllm_mla backend on {chip} (its default on SM100), which "
        f"runs 32- or 64-token pages only: page_size {page} -> 64 (the trial was scored with {page}-token pages)"
    )
    return 64


def sglang_args(spec: dict) -> dict:
    """SGLang server arguments (``python -m sglang.launch_server``; docs.sglang.io, Server
    Arguments): ``--tp-size``/``--pp-size`` as for vLLM; max_batch_size ->
    ``--max-running-requests``; max_num_tokens -> ``--chunked-prefill-size`` and
    ``--max-prefill-tokens`` (``--chunked-prefill-size -1`` when chunked prefill is off);
    kv_block_size -> ``--page-size``; memory_fraction -> ``--mem-fraction-static``; no prefix
    hits -> ``--disable-radix-cache`` (SGLang's radix prefix cache is on by default)."""
    model = spec["model"]
    par = _engine_parallelism(spec, "sglang")
    tp, pp, ep, dp = par["tp"], par["pp"], par["ep"], par["dp"]
    moe = spec["model"]["experts"] > 0
    notes: list[str] = []
    quantization, kv_cache_dtype = engine_formats(
        spec["quantization"], model, "sglang", notes, spec["hardware"]["name"]
    )
    load_note = online_fp8_load_note(spec, "SGLang") if quantization == "fp8" else None
    notes += [load_note] if load_note else []
    notes += _vllm_layout_notes(spec, tp, pp, "SGLang")
    notes += _micro_batch_notes(par, "SGLang")
    notes += _load_notes(spec)
    if served_repo(spec) is None:
        notes.append(f"no known Hugging Face checkpoint for {model['name']}: set model_path")
    # A dense model's DP ranks are replicas; SGLang's --dp-size launches every replica on the one
    # host's GPUs (sgl-project/sglang python/sglang/srt/managers/data_parallel_controller.py,
    # launch_dp_schedulers: rank i from GPU i x tp x pp), so replicas beyond one host (3 x TP4 on
    # 8-GPU nodes) are launched as copies of one replica's line behind a router instead.
    replicas_apart = not moe and dp > 1 and tp * pp * dp > _gpus_per_host(spec)
    if replicas_apart:
        notes.append(
            f"dp {dp} of a dense model over more than one host ({tp * pp * dp} GPUs, {_gpus_per_host(spec)} a host): "
            f"launch {dp} replicas of these arguments ({tp * pp} GPUs each) behind a router (sglang_router or a "
            "load balancer); SGLang's --dp-size places its replicas on one host's GPUs"
        )
    serving = spec.get("serving")
    knobs = engine_knobs(serving, "sglang", spec["batch"])
    # A serving trial was scored with in-flight batching: each iteration holds one token of every
    # decoding sequence beside the prompt tokens (cost_models.serving, cost_models.iteration).
    # SGLang runs that only with --enable-mixed-chunk, off by default (sgl-project/sglang
    # python/sglang/srt/server_args.py: enable_mixed_chunk False), and only with chunked prefill
    # (managers/scheduler.py: is_mixed_chunk = chunked_prefill_size is not None and
    # enable_mixed_chunk, where a size <= 0 is None; _get_new_batch_prefill_raw then calls
    # mix_with_running). Without it get_next_batch_to_run runs a prefill batch whenever one forms
    # and a decode batch otherwise, the decodes waiting out every prefill: a higher TPOT under load
    # and another TTFT than scored (cost_models.serving.UNMIXED_SGLANG_PROBLEM). Current SGLang
    # takes the flag with the overlap scheduler and with DP attention (server_args.py turns it off
    # only for speculative decoding and dual-chunk attention; _handle_data_parallelism divides the
    # chunk only; the overlap scheduler's default of 2024-11, sglang PR 2067, had left mixed chunks
    # out until supported; sglang issue 13626, 2025-11, still lists memory leaks of mixed chunks under
    # the overlap scheduler, and issue 2273 one prefill attention kernel over a mixed batch's decode
    # rows, which the model charges apart). Not with pipeline parallelism: check_server_args
    # asserts pp_size 1 with enable_mixed_chunk (a launch would fail; the serving model scores no
    # pipeline under load, cost_models.serving.rank_view_and_degrees). Not in a disaggregated pool
    # either: a prefill
    # instance (--disaggregation-mode prefill) runs no decodes and a decode instance no prompts,
    # so neither has a batch to mix, and each pool was scored so (cost_models.disaggregated).
    mixed = serving is not None and serving.get("pool") is None and pp == 1
    if mixed and not knobs["chunked_prefill"]:
        # Scored with mixed iterations of whole prompts (TensorRT-LLM's default, or a study of
        # before SGLang refused it): the closest SGLang schedule chunks at the same budget.
        knobs["chunked_prefill"] = True
        unchunked = True
    else:
        unchunked = False
    knobs["max_num_tokens"] = rank_token_budget(spec, knobs, "sglang", dp, notes)
    if mixed:
        notes.append(
            "--enable-mixed-chunk: the trial was scored with each iteration's decodes mixed into its prefill "
            "tokens (in-flight batching); SGLang's default runs prefill and decode batches apart, its decodes "
            "waiting out every prefill"
        )
    if unchunked:
        notes.append(
            f"chunked prefill on (--chunked-prefill-size {knobs['max_num_tokens']}), though the trial's is off: "
            "SGLang mixes decodes into prefill batches only with chunked prefill; a prompt longer than the "
            "budget is split over iterations rather than run whole"
        )
    context = _context_limit(spec, notes)
    args = {
        "model_path": served_repo(spec),
        # With DP attention (an MoE model's DP ranks sharing the experts) SGLang's --tp-size counts
        # every GPU of the stage (attention runs tp_size / dp_size ways); a dense model's DP ranks
        # are replicas of --tp-size GPUs each (docs.sglang.io, DP, DPA and the router).
        "tp_size": tp * dp if moe and dp > 1 else tp,
        "pp_size": pp,
        "dp_size": dp if dp > 1 and not replicas_apart else None,
        "enable_dp_attention": True if moe and dp > 1 else None,
        "ep_size": ep if ep > 1 else None,
        "dtype": "bfloat16",
        "quantization": quantization,
        "kv_cache_dtype": kv_cache_dtype,
        "context_length": context,
        "max_running_requests": per_rank_batch(knobs, dp, "sglang", notes, dp_attention=moe),
        "chunked_prefill_size": knobs["max_num_tokens"] if knobs["chunked_prefill"] else -1,
        "max_prefill_tokens": knobs["max_num_tokens"],
        "page_size": _sglang_page_size(spec, knobs["kv_block_size"], notes),
        "mem_fraction_static": memory_fraction(spec, knobs, "sglang", notes),
        "disable_radix_cache": not knobs["prefix_caching"],
        "enable_mixed_chunk": True if mixed else None,
        # A disaggregated pool's role: without --disaggregation-mode (default "null") SGLang runs an
        # ordinary server that prefills and decodes alike, and no PD router can pair the pools
        # (sgl-project/sglang python/sglang/srt/server_args.py: choices null, prefill, decode).
        "disaggregation_mode": (spec.get("serving") or {}).get("pool"),
        "port": DISAGGREGATED_PORTS["sglang"].get((spec.get("serving") or {}).get("pool") or ""),
        # A pool's router reaches it from another host at PREFILL_i:30000 / DECODE_i:30001
        # (_disaggregated_router), and a replica's load balancer likewise (tuner recommend's
        # launch.sh: "behind a load balancer"); SGLang binds 127.0.0.1 unless told (server_args.py,
        # host), which neither could reach: every interface, as vLLM's default, or --host's.
        "host": spec.get(LISTEN_HOST) or ANY_HOST,
    }
    if args["ep_size"]:
        # Recent SGLang runs expert parallelism from --ep-size alone (server_args.py: ep_size, aliases
        # --expert-parallel-size / --ep); releases with --enable-ep-moe ran tensor-parallel MoE without it.
        notes.append(
            "expert parallelism from --ep-size alone is recent SGLang's; a release that still has --enable-ep-moe "
            "needs that flag too (and then sets ep to tp)"
        )
    if args["enable_dp_attention"] and knobs["chunked_prefill"]:
        # sgl-project/sglang python/sglang/srt/server_args.py, _handle_data_parallelism.
        notes.append(
            f"with DP attention SGLang divides --chunked-prefill-size by --dp-size: each of the {dp} ranks "
            f"prefills chunks of {knobs['max_num_tokens'] // dp} tokens"
        )
    launched_replicas = 1 if args["enable_dp_attention"] else (args["dp_size"] or 1)
    gpus = args["tp_size"] * pp * launched_replicas
    nodes = _nodes(spec, gpus)
    if nodes > 1:
        # SGLang runs one server over several nodes from the same line on each, told the node
        # count, its rank and node 0's address (docs.sglang.io, Multi-Node Deployment: --tp 16
        # --nnodes 2 --node-rank 0|1 --dist-init-addr 172.16.4.52:20000 for Llama 3.1 405B).
        args = {**args, "nnodes": nodes, "node_rank": 0, "dist_init_addr": f"{HEAD_NODE}:20000"}
        notes.append(
            _multi_node_note("SGLang", gpus, nodes, spec, "run the launch line of each node rank on that node")
        )

    def line(rank_args: dict) -> str:
        flags = [(f"--{k.replace('_', '-')}", v) for k, v in rank_args.items() if k != "model_path"]
        return _cli(["python", "-m", "sglang.launch_server", "--model-path", args["model_path"] or "MODEL"], flags)

    cli = line(args)
    out = {"engine": "sglang", "engine_args": args, "cli": cli, "notes": notes, "provenance": spec.get("provenance")}
    if nodes > 1:
        out = {**out, "nodes": nodes, "launch": [line({**args, "node_rank": rank}) for rank in range(nodes)]}
    return _with_scored_engine(out, spec)


def trtllm_args(spec: dict) -> dict:
    """TensorRT-LLM ``trtllm-serve`` arguments (nvidia.github.io/TensorRT-LLM, trtllm-serve):
    ``--tp_size``/``--pp_size``, max_batch_size -> ``--max_batch_size``, max_num_tokens ->
    ``--max_num_tokens``, and the LLM API options file (``--extra_llm_api_options``, YAML):
    ``enable_chunked_prefill`` and ``kv_cache_config`` (KvCacheConfig: ``tokens_per_block`` from
    kv_block_size, ``free_gpu_memory_fraction`` from memory_fraction, ``enable_block_reuse`` on
    where the workload has prefix hits, ``dtype``)."""
    model = spec["model"]
    par = _engine_parallelism(spec, "trtllm")
    tp, pp, ep, dp = par["tp"], par["pp"], par["ep"], par["dp"]
    moe = spec["model"]["experts"] > 0
    if engine_problem_mask("trtllm", model["heads"], model["experts"], tp, ep, dp):
        raise InvalidInputError(
            "format",
            f"TensorRT-LLM's attention data parallelism runs each rank's attention on one GPU; tp {tp} x dp {dp} "
            "splits it further",
            "export with --format sglang or vllm, or choose a trial with tp 1 and dp > 1, or dp 1",
        )
    notes: list[str] = []
    notes += _micro_batch_notes(par, "TensorRT-LLM")
    notes += _load_notes(spec)
    if not moe and dp > 1:
        notes.append(f"dp {dp} of a dense model: launch {dp} replicas of these arguments behind a router")
    _, kv_cache_dtype = engine_formats(spec["quantization"], model, "trtllm", notes, spec["hardware"]["name"])
    notes += _vllm_layout_notes(spec, tp, pp, "TensorRT-LLM")
    if served_repo(spec) is None:
        notes.append(f"no known Hugging Face checkpoint for {model['name']}: set model")
    knobs = engine_knobs(spec.get("serving"), "trtllm", spec["batch"])
    knobs["max_num_tokens"] = rank_token_budget(spec, knobs, "trtllm", dp, notes)
    context = _context_limit(spec, notes)
    longest_prompt = length_quantile(
        float(spec["workload"]["prompt_len"]), float((spec.get("serving") or {}).get("prompt_len_std") or 0.0)
    )
    decode_pool = (spec.get("serving") or {}).get("pool") == "decode"
    if not knobs["chunked_prefill"] and not decode_pool and longest_prompt > knobs["max_num_tokens"]:
        # Without chunked prefill the PyTorch backend refuses a request whose prompt exceeds
        # max_num_tokens (NVIDIA/TensorRT-LLM tensorrt_llm/llmapi/llm.py, _check_arguments), but
        # not a disaggregated decode pool's generation-only requests ("Skip check for gen-only
        # requests": their prompt's KV cache arrives from the prefill pool).
        notes.append(
            f"without chunked prefill TensorRT-LLM refuses prompts over max_num_tokens ({knobs['max_num_tokens']}); "
            f"the workload's prompts reach {longest_prompt} tokens ({CONTEXT_QUANTILE:.1%}): raise max_num_tokens "
            "or enable chunked prefill"
        )
    block = knobs["kv_block_size"]
    if block < 2 or block & (block - 1):
        notes.append(f"TensorRT-LLM needs tokens_per_block a power of two above 1, not {block}")
    # TensorRT-LLM LLM API (nvidia.github.io/TensorRT-LLM, Parallelism in TensorRT LLM):
    # moe_tensor_parallel_size x moe_expert_parallel_size = tp_size; attention DP over tp_size ranks.
    world = tp * dp if moe else tp
    parallel = (
        {
            "moe_expert_parallel_size": ep,
            "moe_tensor_parallel_size": world // ep,
            "enable_attention_dp": dp > 1,
        }
        if moe
        else {}
    )
    kv_cache_config: dict[str, Any] = {
        "free_gpu_memory_fraction": memory_fraction(spec, knobs, "trtllm", notes),
        "enable_block_reuse": knobs["prefix_caching"],
        "dtype": kv_cache_dtype,
    }
    if block != TRTLLM_TOKENS_PER_BLOCK:
        # KvCacheConfig.tokens_per_block (NVIDIA/TensorRT-LLM tensorrt_llm/llmapi/llm_args.py) is a
        # recent field, and KvCacheConfig (a StrictBaseModel) refuses keys it lacks: written only
        # where the trial's block is not the default, with a note.
        kv_cache_config = {"tokens_per_block": block, **kv_cache_config}
        notes.append(
            f"kv_cache_config.tokens_per_block {block} needs a TensorRT-LLM whose KvCacheConfig has the field "
            "(recent releases); an older one refuses the key"
        )
    extra: dict[str, Any] = {
        **parallel,
        "enable_chunked_prefill": knobs["chunked_prefill"],
        "kv_cache_config": kv_cache_config,
    }
    pool = (spec.get("serving") or {}).get("pool")
    if pool:
        # A disaggregated pool's servers exchange KV caches only with a cache transceiver
        # (nvidia.github.io/TensorRT-LLM, Disaggregated Serving: cache_transceiver_config, backend
        # DEFAULT (NIXL) / UCX / MPI; without it "cache_transceiver is disabled",
        # tensorrt_llm/_torch/pyexecutor/kv_cache_transceiver.py), its buffer at least the longest
        # prompt ("max_tokens_in_buffer ... greater than or equal to the maximum ISL"). Context
        # servers run without the overlap scheduler, which disaggregated context servers lack.
        extra["cache_transceiver_config"] = {"backend": "DEFAULT", "max_tokens_in_buffer": longest_prompt}
        if pool == "prefill":
            extra["disable_overlap_scheduler"] = True
    args = {
        "model": served_repo(spec),
        "backend": "pytorch",
        "tp_size": world,
        "pp_size": pp,
        "max_batch_size": per_rank_batch(knobs, dp, "trtllm", notes),
        "max_num_tokens": knobs["max_num_tokens"],
        "max_seq_len": context,
        "extra_llm_api_options": "extra_llm_api_options.yaml",
    }
    # The router's disagg_config names each server PREFILL_i:8001 / DECODE_i:8002, other hosts
    # (_disaggregated_router), and a replica sits behind a load balancer (tuner recommend's
    # launch.sh): trtllm-serve listens on localhost:8000 by default (its --host and --port,
    # tensorrt_llm/commands/serve.py), which neither could reach: every interface, as vLLM's
    # default, or tuner export --host's.
    args = {**args, "host": spec.get(LISTEN_HOST) or ANY_HOST}
    if pool:
        args = {**args, "port": DISAGGREGATED_PORTS["trtllm"][pool]}
    flags = [(f"--{k}", v) for k, v in args.items() if k != "model"]
    gpus = world * pp
    nodes = _nodes(spec, gpus)
    prefix = ["trtllm-serve"]
    if nodes > 1:
        # TensorRT-LLM runs one instance over several nodes as one MPI world of all its ranks, each
        # started through trtllm-llmapi-launch (nvidia.github.io/TensorRT-LLM, trtllm-serve:
        # multi-node serving, `srun -N 2 --ntasks 16 --ntasks-per-node=8 --mpi=pmix ...
        # trtllm-llmapi-launch trtllm-serve ... --tp_size 16`); mpirun starts the same world.
        per_node = _gpus_per_host(spec)
        hosts = ",".join(f"NODE{i}:{per_node}" for i in range(nodes))
        prefix = ["mpirun", "-n", str(gpus), "-H", hosts, "trtllm-llmapi-launch", "trtllm-serve"]
        notes.append(
            _multi_node_note(
                "TensorRT-LLM",
                gpus,
                nodes,
                spec,
                "one MPI world of all its ranks (the line with mpirun, NODE0.. the hosts; or srun --ntasks "
                f"{gpus} --ntasks-per-node {per_node} --mpi=pmix trtllm-llmapi-launch trtllm-serve ...)",
                head=False,
            )
        )
    cli = _cli([*prefix, args["model"] or "MODEL"], flags)
    out = {
        "engine": "trtllm",
        "engine_args": args,
        "extra_llm_api_options": extra,
        "extra_llm_api_options_yaml": yaml.safe_dump(extra, sort_keys=False),
        "cli": cli,
        "notes": notes,
        "provenance": spec.get("provenance"),
    }
    return _with_scored_engine({**out, "nodes": nodes} if nodes > 1 else out, spec)


def scored_engine(spec: dict) -> str | None:
    """The engine whose predictions a deployment spec carries: a serving trial's (its workload's
    ``engine``: the spec's backend, else its calibration profile's, cost_models.calibration.
    serving_engine), else the calibration profile's (shipped profiles are named CHIP-ENGINE, and a
    user's fit carries the shipped name: tuner.study.calibration_name); None for the pure roofline
    (calibration none) or a spec with neither."""
    engine = (spec.get("serving") or {}).get("engine")
    if engine:
        return str(engine)
    calibration = str((spec.get("provenance") or {}).get("calibration") or "")
    # The name is the first word: "h100-sxm-vllm", "l4-trtllm (fallback: ...)", and since the
    # borrowed GEMM fits are named, "h100-sxm-vllm; gemm int8_wo: borrows bfloat16".
    suffix = re.split(r"[\s;]", calibration, maxsplit=1)[0].rsplit("-", 1)[-1]
    return suffix if suffix in ENGINE_DISPLAY_NAMES else None


def _with_scored_engine(out: dict, spec: dict) -> dict:
    """``out`` (an engine's launch arguments) with ``scored_engine``, the engine the trial's
    predictions are of, and, where it is not the engine exported to, a first note saying so: a
    trial scored under TensorRT-LLM's profile exported to vLLM carried TensorRT-LLM's TTFT, TPOT
    and tokens/s in its provenance and predictions with no word that vLLM's kernels, scheduler and
    host overheads were never scored (each engine has its own calibration profile:
    docs/accuracy.md). Exporting across engines stays allowed (a user may run the engine their
    cluster has); it is said, not refused."""
    scored = scored_engine(spec)
    engine = str(out["engine"])
    notes = list(out["notes"])
    if scored is not None and scored != engine:
        calibration = (spec.get("provenance") or {}).get("calibration")
        names = ENGINE_DISPLAY_NAMES
        notes.insert(
            0,
            f"the predictions are {names[scored]}'s, not {names[engine]}'s: the trial was scored under "
            f"{names[scored]}"
            + (f" (calibration {calibration})" if calibration and calibration != "not recorded" else "")
            + f"; to predict {names[engine]}, search the study again with backend: {engine}",
        )
    rest = {k: notes if k == "notes" else v for k, v in out.items() if k != "engine"}
    return {"engine": engine, "scored_engine": scored, **rest}


_RENDERERS = {"vllm": vllm_args, "sglang": sglang_args, "trtllm": trtllm_args}

#: TensorRT-LLM's KvCacheConfig.tokens_per_block default (tensorrt_llm/llmapi/llm_args.py), the
#: block of releases without the field.
TRTLLM_TOKENS_PER_BLOCK = 32


def engine_args(deployment: Deployment, serving: dict | None, backend: str) -> dict:
    """A serving engine's launch arguments for one deployment and its serving knobs (a
    ``ServingWorkloads.row``, or None for the engine's defaults), without a study: what
    ``tuner export --format vllm|sglang|trtllm`` renders."""
    if backend not in _RENDERERS:
        raise InvalidInputError("format", f"no engine arguments for {backend!r}", f"use one of {', '.join(ENGINES)}")
    return _RENDERERS[backend](_serving_spec(deployment, serving))


def _serving_spec(d: Deployment, serving: dict | None) -> dict:
    """The deployment spec :func:`deployment_spec` gives a trial, of a deployment and its
    serving knobs scored outside a study (no predictions, no provenance)."""
    phases = {
        phase: {
            "ffn_layout": getattr(d, f"{phase}_ffn_layout"),
            "attention_sharding": getattr(d, f"{phase}_attn_sharding"),
        }
        for phase in ("prefill", "decode")
    }
    return {
        "model": _model_section(d),
        "hardware": _hardware_section(d.hardware),
        "chips": d.chips,
        "mesh": dict(zip(AXES, d.mesh, strict=True)),
        "parallel": _parallel_section(d),
        "batch": d.batch,
        "workload": {"prompt_len": d.prompt_len, "gen_len": d.gen_len},
        "quantization": {"weights": d.weight_dtype, "kv_cache": d.kv_dtype, "activations": d.act_dtype},
        "flash_attention": d.flash_attention,
        "serving": serving,
        "phases": phases,
        "scored_engine_memory": _scored_engine_memory(d, serving),
        "provenance": None,
    }


def plan_engine_args(plan: ScoredPlan, fmt: str) -> dict:
    """A ``tuner recommend`` plan's launch arguments for engine ``fmt``, written by the writers
    ``tuner export --format`` runs on a study's trial: an aggregated plan's one replica (the
    replicas are copies of it behind a load balancer), a disaggregated plan's pools and router
    as :func:`_disaggregated_engine_args` writes a disaggregated trial's. The knobs are the ones
    the plan was scored with (``plan.workload``), so ``fmt`` must be the engine it was scored
    for: another engine's flags would carry knobs that engine never ran."""
    if fmt not in _RENDERERS:
        raise InvalidInputError("--export", f"no engine arguments for {fmt!r}", f"use one of {', '.join(ENGINES)}")
    scored = str(plan.workload["engine"])
    if fmt != scored:
        raise InvalidInputError(
            "--export",
            f"the plan was scored as {scored}'s (its batching, token budget and memory knobs); {fmt}'s flags would "
            "not be what was scored",
            f"pass --export {scored}, or plan with --backend {fmt}",
        )
    if plan.mode == "aggregated":
        serving = {**plan.workload, "mode": "aggregated"}
        return _RENDERERS[fmt](_serving_spec(plan.deployment, serving))
    if plan.prefill is None or plan.prefill_workload is None:
        raise ValueError(f"a {plan.mode} plan without its prefill pool")  # scored_plan sets both
    prefill, decode = plan.prefill, plan.deployment
    serving = {
        **plan.workload,
        "mode": "disaggregated",
        "prefill_mesh": list(prefill.mesh),
        "prefill_instances": plan.prefill_instances,
        "decode_instances": plan.decode_instances,
        "prefill_dp": prefill.data_parallel,
        "prefill_ep": prefill.expert_parallel,
    }
    spec = _serving_spec(decode, serving)
    # The prefill pool was scored with its own DP ranks' default batch limit (score_disaggregated).
    return _disaggregated_engine_args(spec, serving, fmt, prefill_workload=plan.prefill_workload)


def _load_notes(spec: dict) -> list[str]:
    """The load a serving trial's metrics were predicted under: the engine's flags cannot say it
    (the client sets it), so a benchmark at another load is no check of them. Of an aggregated
    trial only: a disaggregated trial's pools share one load, said once beside them."""
    serving = spec.get("serving")
    if not serving or serving.get("pool"):
        return []
    return [_load_note(serving)]


def _load_note(serving: dict) -> str:
    load = (
        f"{serving['concurrency']:g} closed-loop clients"
        if serving.get("concurrency") is not None
        else f"{serving['request_rate']:g} requests/s (open loop)"
    )
    return (
        f"the predicted TTFT/TPOT and throughput are at {load}, {serving['prompt_len']:g}-token prompts and "
        f"{serving['gen_len']:g}-token outputs: benchmark at that load to compare (the engine flags do not set it)"
    )


def _micro_batch_notes(par: dict, engine: str) -> list[str]:
    if par["micro_batches"] > 1:
        return [
            f"{engine} schedules pipeline micro-batches itself; the estimate assumed {par['micro_batches']} per step"
        ]
    return []


def _engine_parallelism(spec: dict, engine: str = "vllm") -> dict[str, int]:
    """TP, PP, EP, DP and micro-batches as the trial has them (searched in the engines'
    vocabulary), or, for a trial searched on Pope et al.'s meshes, tensor parallel within a node
    and pipeline stages across nodes; refuse what the engine cannot run."""
    par = spec.get("parallel") or {"tp": spec["chips"], "pp": 1, "ep": 1, "dp": 1, "micro_batches": 1}
    # Megatron tensor parallelism (ws_1d, heads split) in both phases is scored as one TP group of
    # all the mesh's chips whatever its shape (on a GPU every mesh of N chips scores as 1x1xN:
    # docs/serving.md, Disaggregated; `tuner estimate --mesh 16x1x1 --ffn-layout ws_1d` and
    # `--mesh 1x1x16` give the same step), across nodes too: it is exported as that TP group, not
    # re-laid out as TP over a node times pipeline stages, which is another deployment (Llama 3.1
    # 70B on 16 H100s, batch 32: TP16 decode step 9.4 ms, TP8 x PP2 12.6 ms, prefill 1.10 s / 1.56 s).
    engine_form = any(par[k] > 1 for k in ("pp", "ep", "dp", "micro_batches")) or {
        (p["ffn_layout"], p["attention_sharding"]) for p in spec["phases"].values()
    } == {("ws_1d", "head")}
    if not engine_form:
        tp, pp = _vllm_parallelism(spec, engine)
        par = {"tp": tp, "pp": pp, "ep": 1, "dp": 1, "micro_batches": 1}
    else:
        _vllm_parallelism({**spec, "chips": min(par["tp"], spec["hardware"]["chips_per_node"] or 1)}, engine)
    if engine_problem_mask(None, spec["model"]["heads"], 0, par["tp"], 1, 1):
        raise InvalidInputError(
            "format",
            f"{engine} needs the {spec['model']['heads']} attention heads divisible by the tensor-parallel size "
            f"{par['tp']}",
            "export a trial with another tp",
        )
    model = spec["model"]
    split_kv_heads = 0 if model.get("kv_lora_rank") else model["kv_heads"]  # MLA: one latent, replicated
    if engine in KV_HEAD_SPLITTING_ENGINES and kv_heads_split_problem(split_kv_heads, par["tp"]):
        raise InvalidInputError(
            "format",
            f"{engine} splits the {split_kv_heads} KV heads of {model['name']} evenly over the tensor-parallel ranks or"
            f" replicates each (QKVParallelLinear); TP {par['tp']} does neither",
            "export a trial whose tp divides the KV heads or is a multiple of them, or use --format trtllm",
        )
    return dict(par)


def _vllm_parallelism(spec: dict, engine: str = "vllm") -> tuple[int, int]:
    """Tensor parallel within a node, pipeline stages across nodes; refuse what the engine cannot run."""
    model, hardware = spec["model"], spec["hardware"]
    if hardware["kind"] != "gpu":
        raise InvalidInputError(
            "format",
            f"{engine} export maps onto GPU tensor/pipeline parallelism; "
            f"{hardware['name']} is a {hardware['kind'].upper()}",
            "use --format jax (or json) for this hardware",
        )
    if model["kv_heads"] != model["published_kv_heads"] or model["block"] != model["published_block"]:
        raise InvalidInputError(
            "format",
            f"the trial changes {model['name']}'s architecture (kv_heads "
            f"{model['published_kv_heads']} -> {model['kv_heads']}, block "
            f"{model['published_block']} -> {model['block']}): no such checkpoint exists",
            "export a trial with the model's own attention and block",
        )
    chips, per_node = spec["chips"], hardware["chips_per_node"] or 1
    tp, pp = (chips, 1) if chips <= per_node else (per_node, chips // per_node)
    if model["heads"] % tp:
        raise InvalidInputError(
            "format",
            f"{engine} needs the {model['heads']} attention heads divisible by the tensor-parallel size {tp}",
            "export a trial with another chip count",
        )
    return tp, pp


#: Catalog models whose published checkpoint stores its fp4 weights as OCP MXFP4 (gpt-oss: the
#: MoE weights in MXFP4, OpenAI 2025, arXiv 2508.10925). Any other fp4 trial is served from an
#: NVFP4 checkpoint made with NVIDIA TensorRT Model Optimizer (ModelOpt).
_MXFP4_CHECKPOINTS = ("gpt-oss-20b", "gpt-oss-120b")

#: The least compute capability of each engine's Marlin weight-only kernels (vLLM marlin_utils.py,
#: query_marlin_supported_quant_types: 7.5; SGLang's GPTQMarlinConfig.get_min_capability: 8.0).
_MARLIN_MIN_CAPABILITY = {"vllm": "7.5 (Turing)", "sglang": "8.0 (Ampere)"}


def _marlin_note(engine: str) -> str:
    return (
        f"the Marlin kernel on NVIDIA GPUs of compute capability {_MARLIN_MIN_CAPABILITY[engine]} or newer; "
        "elsewhere (older GPUs, ROCm) the slower GPTQ/AWQ kernels run, which the estimate does not assume"
    )


def fp4_flavour(model: dict) -> str:
    """``mxfp4`` for a model whose checkpoint stores MXFP4 (gpt-oss, or an imported config whose
    quantization_config says so), else ``nvfp4`` (a ModelOpt checkpoint)."""
    if model["name"] in _MXFP4_CHECKPOINTS or model.get("checkpoint_format") == "mxfp4":
        return "mxfp4"
    return "nvfp4"


#: The ModelOpt quantization formats (its llm_ptq example's --quant) of the trial's weight formats
#: that TensorRT-LLM's quantization guide names for its PyTorch backend ("supports FP8 and NVFP4").
_MODELOPT_QUANT = {"fp8": "fp8", "nvfp4": "nvfp4"}


def _modelopt_recipe(model: dict, weights: str) -> str:
    """How to make the checkpoint TensorRT-LLM's PyTorch backend runs in the trial's format, as its
    quantization guide gives it (nvidia.github.io/TensorRT-LLM, torch/features/quantization: "git
    clone https://github.com/NVIDIA/Model-Optimizer.git; cd Model-Optimizer/examples/llm_ptq;
    scripts/huggingface_example.sh --model <huggingface_model_card> --quant fp8 --export_fmt
    hf"), for a catalog model with a known 16-bit repo; empty otherwise."""
    quant = _MODELOPT_QUANT.get(weights)
    if not model.get("hf_repo") or quant is None or model.get("checkpoint_format") is not None:
        # A pre-quantized checkpoint (DeepSeek-V3's fp8) is not the example's 16-bit input.
        return ""
    return (
        f"; e.g. in NVIDIA/Model-Optimizer's examples/llm_ptq: scripts/huggingface_example.sh --model "
        f"{model['hf_repo']} --quant {quant} --export_fmt hf, then set the model to the exported folder"
    )


def _chip_has(hardware: str, fmt: str) -> bool | None:
    """Whether the named chip has tensor cores of weight format ``fmt`` (None: a chip from a file
    the export no longer reads)."""
    try:
        return get_hardware(hardware).has_format(parse_dtype(fmt, "weights"))
    except InvalidInputError:
        return None


def _fp8_activation_note(name: str, hardware: str | None, activations: str) -> str:
    """What the engine does with the activations of fp8 weights, and what the estimate assumed."""
    if activations in ("fp8", "fp4"):
        return ""
    try:
        fp8_chip = hardware is not None and get_hardware(hardware).has_format(parse_dtype("fp8", "weights"))
    except InvalidInputError:  # a chip from a file the export no longer reads: no chip named
        fp8_chip = False
    where = f"on {hardware} (fp8 tensor cores)" if fp8_chip else "on GPUs with fp8 tensor cores"
    return (
        f"; {where} {name} runs the weight matmuls as W8A8 fp8 GEMMs, quantizing the trial's {activations} "
        "activations to fp8 at run time (dynamic per-token/per-tensor scales), as the estimate under an "
        "engine's calibration profile times them and bounds them at the fp8 peak (a study scored with "
        f"calibration none kept {activations} x fp8 at the bf16 peak)"
    )


def online_fp8_load_note(spec: dict, name: str) -> str | None:
    """A note where ``--quantization fp8`` must first load more 16-bit weights than a GPU holds.

    Online fp8 quantization creates each layer's weights in the checkpoint's 16 bits and quantizes
    them only after the whole model is loaded: SGLang ("requires loading all bf16 weights into VRAM
    first", sgl-project/sglang issue 2895; both copies held, issue 8337) and vLLM before its
    streaming online quantization (docs.vllm.ai, FP8: "we load the model at original precision
    before quantizing down to 8-bits, so you need enough memory to load the whole model";
    vllm-project/vllm pull 31914, 2026). The trial's fp8 weights per GPU (``predicted.memory``)
    store the blocks' matrices in 1 byte and the embedding and lm_head in 2, so the 16-bit
    weights are at most twice them. None where that fits, or no memory was predicted."""
    memory = (spec.get("predicted") or {}).get("memory") or {}
    weights, capacity = memory.get("weights_bytes_per_chip"), memory.get("capacity_bytes_per_chip")
    if (spec.get("serving") or {}).get("pool") == "prefill" or not weights or not capacity:
        return None  # (a prefill pool runs its own TP: the trial's weights per GPU are the decode pool's)
    if 2 * weights <= capacity:
        return None
    who = (
        "vLLM releases before its streaming online quantization (2026) quantize"
        if name == "vLLM"
        else f"{name} quantizes"
    )
    return (
        f"{who} the 16-bit checkpoint only after loading it whole: up to {2 * weights / 1e9:.1f} GB "
        f"of 16-bit weights per GPU, past the GPU's "
        f"{capacity / 1e9:.1f} GB (the trial's fp8 weights are {weights / 1e9:.1f} GB): serve an fp8 checkpoint"
    )


def engine_formats(
    quant: dict, model: dict, engine: str, notes: list[str], hardware: str | None = None
) -> tuple[str | None, str]:
    """An engine's weight ``quantization`` argument (None: none; TensorRT-LLM always None, it
    reads the checkpoint's) and KV-cache dtype for the trial's formats; notes say what checkpoint
    each needs. Raises ``InvalidInputError`` on ``format`` for a KV format the engine lacks.

    Weights (vLLM and SGLang ``--quantization``, docs.vllm.ai and docs.sglang.io, Quantization):
    16-bit -> none; fp8 -> ``fp8`` (quantized at load from a 16-bit checkpoint); int8/int4
    weight-only -> ``gptq_marlin`` (a pre-quantized GPTQ checkpoint, on the Marlin kernel); fp4 ->
    ``mxfp4`` for gpt-oss's MXFP4, else ``modelopt_fp4`` (an NVFP4 checkpoint from TensorRT Model
    Optimizer). The model's own quantized checkpoint in the trial's format: none (both engines
    read the method from its quantization_config).
    TensorRT-LLM's PyTorch backend takes the format from the checkpoint's quantization config.
    ``hardware``: the chip's name (the fp8 note says what it runs there)."""
    name = ENGINE_DISPLAY_NAMES[engine]
    kv = quant["kv_cache"]
    kv_dtype = ENGINE_KV_CACHE_DTYPES[engine].get(kv)
    if kv_dtype is None:
        kinds = ", ".join(k for k, v in ENGINE_KV_CACHE_DTYPES[engine].items() if v is not None)
        raise InvalidInputError(
            "format", f"{name} has no {kv} KV cache", f"export a trial whose KV cache is one of {kinds}"
        )
    if kv == "int8":
        notes.append(f"{name} has no int8 KV cache: {kv_dtype} stands in (same bytes per element)")
    elif kv == "fp4":
        notes.append(
            f"fp4 KV cache ({kv_dtype}): "
            + (
                "experimental in SGLang, with per-16-element scales the estimate does not count"
                if engine == "sglang"
                else "needs a checkpoint quantized with TensorRT Model Optimizer (NVFP4 KV scales)"
            )
        )
    weights = quant["weights"]
    checkpoint = model.get("checkpoint_format")
    if checkpoint is not None and weights != "bf16" and weights != _format_code_name(checkpoint):
        notes.append(f"{model['name']}'s checkpoint stores {checkpoint} weights; the trial's {weights} needs another")
    if weights == "bf16":
        if checkpoint is not None:
            notes.append(f"{model['name']}'s checkpoint stores {checkpoint} weights: serve a 16-bit one for bf16")
        return None, kv_dtype
    flavour = fp4_flavour(model) if weights == "fp4" else None
    if weights == "fp8" and checkpoint is None and model.get("fp8_hf_repo"):
        # The publisher's block-scaled fp8 checkpoint (FP8_REPOS), whose method every engine reads
        # from its quantization_config (quant_method fp8, weight_block_size [128, 128]): no
        # --quantization, as for a checkpoint of the trial's format below.
        notes.append(
            f"fp8 weights: {name} serves {model['fp8_hf_repo']}, {model['name']}'s published fp8 checkpoint with "
            "128 x 128 block scales (read from its quantization_config), the block-scaled fp8 kernels the estimate "
            "timed"
        )
        return None, kv_dtype
    # What the repo exported holds (the model's own checkpoint), where the trial needs another.
    stored = f"stores {checkpoint} weights" if checkpoint is not None else "is the 16-bit one"
    if engine != "trtllm" and checkpoint is not None and weights == _format_code_name(checkpoint):
        # SGLang detects a pre-quantized checkpoint's method itself and asks for no --quantization
        # with one (docs.sglang.io, Quantization: offline quantization); so does vLLM
        # (ModelConfig._verify_quantization, vllm/config/model.py), which refuses a --quantization
        # other than the checkpoint's method ("does not match the quantization method specified in
        # the `quantization` argument"): fp8 for a ModelOpt or compressed-tensors FP8 checkpoint,
        # gptq for an AWQ one. Only the format is known here, not the method: none is named.
        notes.append(
            f"{name} reads {model['name']}'s {checkpoint} weights from its checkpoint's quantization_config"
            + (f" (no --quantization) and runs them with {_marlin_note(engine)}" if weights in ("int8", "int4") else "")
        )
        return None, kv_dtype
    if engine == "trtllm" and weights == "fp8" and checkpoint == "fp8" and model.get("fp8_block_scales"):
        # TensorRT-LLM's PyTorch backend reads a quant_method fp8 checkpoint with 128 x 128
        # weight_block_size itself (tensorrt_llm/_torch/model_config.py, load_hf_quant_config:
        # "DeepSeek V3 FP8 ckpt" -> QuantAlgo.FP8_BLOCK_SCALES): the repo runs in the trial's format.
        # fp8_block_scales is set from exactly that quantization_config (cost_models/hf_config.py).
        notes.append(
            f"{name} reads {model['name']}'s fp8 weights (128 x 128 block scales, its FP8_BLOCK_SCALES) from its "
            "checkpoint's quantization_config"
        )
        return None, kv_dtype
    if engine == "trtllm":
        if flavour == "mxfp4":
            notes.append("fp4 (MXFP4) weights: TensorRT-LLM reads them from the gpt-oss checkpoint itself")
        else:
            # The PyTorch backend quantizes nothing at load: it runs a checkpoint pre-quantized with
            # Model Optimizer in its format (nvidia.github.io/TensorRT-LLM, torch/features/
            # quantization: "You can pass quantized models ... generated by Model Optimizer"); the
            # repo exported runs in the format it stores.
            notes.append(
                f"{'NVFP4' if flavour else weights} weights: serve a checkpoint quantized with TensorRT Model "
                f"Optimizer; set the model to one (the repo below {stored}, which TensorRT-LLM would run as stored, "
                "not as the trial)" + _modelopt_recipe(model, "nvfp4" if flavour else weights)
            )
        return None, kv_dtype
    if weights == "fp8":
        if model.get("fp8_block_scales"):
            # A model file that says its fp8 checkpoint is block-scaled, with no repo known here.
            scored = (
                f": the estimate timed block-scaled fp8 kernels ({model['name']}'s fp8_block_scales), so this launches "
                "another kernel than scored; set the model to the block-scaled fp8 checkpoint"
            )
        else:
            scored = ": the per-tensor fp8 kernels, which the estimate timed"
        notes.append(
            "quantization fp8 quantizes a 16-bit checkpoint at load with per-tensor scales"
            + scored
            + _fp8_activation_note(name, hardware, quant["activations"])
        )
        return "fp8", kv_dtype
    if weights in ("int8", "int4"):
        # The estimate's weight-only GEMMs are Marlin-class kernels (dequantize in registers, bf16
        # tensor cores). vLLM upgrades a GPTQ checkpoint to gptq_marlin (an AWQ one to awq_marlin)
        # only when --quantization is absent or names the Marlin method: `--quantization gptq`
        # forces the older GPTQ (exllama) kernel ("you specified quantization=gptq explicitly, so
        # forcing gptq. Use quantization=gptq_marlin for faster inference":
        # GPTQMarlinConfig.override_quantization_method in vllm-project/vllm
        # vllm/model_executor/layers/quantization/gptq_marlin.py, applied by ModelConfig.
        # _verify_quantization in vllm/config/model.py; SGLang's python/sglang/srt/layers/
        # quantization/gptq.py has the same rule).
        notes.append(
            f"{weights} weight-only quantization: {name} needs a pre-quantized GPTQ {weights[3:]}-bit "
            f"checkpoint; set the model to one (the repo below {stored}). quantization gptq_marlin "
            f"runs it with {_marlin_note(engine)}; {name} refuses gptq_marlin for a GPTQ checkpoint Marlin cannot run "
            "(asymmetric, or a group size other than -1/32/64/128): quantization gptq runs that one with the "
            "slower GPTQ (exllama) kernel the estimate does not assume. An AWQ checkpoint: awq_marlin"
        )
        return "gptq_marlin", kv_dtype
    if flavour == "mxfp4":
        notes.append("fp4 weights as MXFP4: the gpt-oss checkpoint's own format")
        return "mxfp4", kv_dtype
    if engine == "sglang" and hardware is not None and _chip_has(hardware, "fp4") is False:
        # SGLang's ModelOptFp4Config.get_min_capability is 100 (Blackwell) and its NVFP4 linear and
        # MoE methods run only FP4 tensor-core GEMMs (sgl-project/sglang python/sglang/srt/layers/
        # quantization/modelopt_quant.py): the model loader refuses the method on an older GPU
        # ("not supported for the current GPU. Minimum capability: 100"), where vLLM runs the
        # weights weight-only on Marlin.
        raise InvalidInputError(
            "format",
            f"SGLang runs NVFP4 weights (modelopt_fp4) only on Blackwell GPUs (compute capability 10.0); it refuses "
            f"them on {hardware} at start-up",
            "export with --format vllm (NVFP4 weight-only on Marlin before Blackwell), or pick a trial with other "
            "weights or on a Blackwell GPU",
        )
    notes.append(
        f"fp4 weights as NVFP4: {name} needs a checkpoint quantized with TensorRT Model Optimizer "
        "(quantization modelopt_fp4); set the model to one. FP4 tensor-core math needs Blackwell; "
        "elsewhere the weights run weight-only"
    )
    return "modelopt_fp4", kv_dtype


def _format_code_name(fmt: str) -> str:
    """A checkpoint format's canonical dtype name (mxfp4, nvfp4 -> fp4)."""
    return dtype_name(parse_dtype(fmt, "checkpoint_format"))


def _vllm_layout_notes(spec: dict, tp: int, pp: int, engine: str = "vLLM") -> list[str]:
    """What differs between the searched layout and vLLM's Megatron tensor parallelism."""
    notes = []
    layouts = {(p["ffn_layout"], p["attention_sharding"]) for p in spec["phases"].values()}
    searched_pp = (spec.get("parallel") or {}).get("pp", 1)
    if layouts != {("ws_1d", "head")} or pp != searched_pp:
        searched = ", ".join(f"{n}: {p['ffn_layout']}/{p['attention_sharding']}" for n, p in spec["phases"].items())
        notes.append(
            f"approximate: {engine} runs 1D weight-stationary tensor parallelism over {tp} GPUs"
            + (f" and {pp} pipeline stages" if pp > 1 else "")
            + f", not the searched layout ({searched}) on mesh "
            f"{spec['mesh']['x']}x{spec['mesh']['y']}x{spec['mesh']['z']}; "
            "the predicted metrics are for the searched layout"
        )
    if not spec["flash_attention"]:
        notes.append(
            f"{engine} always runs fused (flash/paged) attention kernels; the estimate assumed unfused attention"
        )
    return notes


def export(
    study: optuna.Study, trial_number: int, fmt: str, *, allow_infeasible: bool = False, host: str | None = None
) -> str:
    """One trial rendered as ``json`` or ``yaml`` (the deployment spec), ``jax``, or an engine's
    launch arguments (``vllm``, ``sglang``, ``trtllm``; JSON) carrying the trial's serving knobs;
    ``host``: the address the engine's servers listen on (default every interface, :data:`ANY_HOST`)."""
    if fmt not in FORMATS:
        raise InvalidInputError("format", f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    if host is not None:
        if fmt not in _RENDERERS:
            raise InvalidInputError(
                "--host", f"sets an engine server's address; --format {fmt} starts no server", "drop --host"
            )
        refuse_bad_host("--host", host)
    spec = deployment_spec(study, trial_number, allow_infeasible=allow_infeasible)
    if fmt == "yaml":
        return yaml.safe_dump(spec, sort_keys=False)
    if host is not None:
        spec = {**spec, LISTEN_HOST: host}
    serving = spec.get("serving") or {}
    if fmt in _RENDERERS and serving.get("mode") == "disaggregated":
        data = _disaggregated_engine_args(spec, serving, fmt)
    else:
        data = {"json": lambda s: s, "jax": jax_sharding, **_RENDERERS}[fmt](spec)
    return json.dumps(data, indent=2) + "\n"


def _disaggregated_engine_args(spec: dict, serving: dict, fmt: str, prefill_workload: dict | None = None) -> dict:
    """A disaggregated trial: one engine's arguments per pool (the prefill instances run the
    prefill mesh, the decode instances the trial's), with the instance counts. Connecting the
    pools (the KV transfer: NIXL, Mooncake, Dynamo) is the serving stack's, not these flags'.
    ``prefill_workload``: the prefill pool's own engine knobs where they were scored apart from
    the decode pool's (a tuner recommend plan: each pool's batch limit over its own DP ranks)."""
    x, y, z = serving["prefill_mesh"]
    # A prefill instance is scored as the trial's deployment on the prefill mesh: its TP group is
    # that mesh, its pipeline the trial's, its attention DP and EP the stored prefill_dp and
    # prefill_ep (1 where the study did not search them: tensor-parallel MoE,
    # search_spaces.space._disaggregated); the decode instance is the trial's, its DP and EP
    # included (SGLang --enable-dp-attention --dp-size --ep-size, TensorRT-LLM enable_attention_dp).
    prefill_dp, prefill_ep = int(serving.get("prefill_dp", 1)), int(serving.get("prefill_ep", 1))
    if prefill_workload is None and serving.get("prefill_max_batch_size") is not None:
        # A study's trial with its own prefill batch limit (spec serving.prefill_max_batch_size),
        # scored apart from the decode instance's max_batch_size (search_spaces.space._disaggregated).
        prefill_workload = {"max_batch_size": int(serving["prefill_max_batch_size"])}
    parallel = {**spec["parallel"], "tp": x * y * z, "dp": prefill_dp, "ep": prefill_ep}
    prefill = {
        **spec,
        "chips": x * y * z * parallel["pp"] * prefill_dp,
        "mesh": dict(zip(AXES, (x, y, z), strict=True)),
        "parallel": parallel,
        "serving": {**serving, **(prefill_workload or {}), "pool": "prefill"},
    }
    # A decode instance was scored with a decode-only iteration's activations: at most
    # max_batch_size tokens (cost_models.disaggregated._DecodeModel), not the prefill budget. The
    # engines size that reserve by their token budget (vLLM's profile run and TensorRT-LLM's
    # KvCacheCreator forward max_num_tokens tokens; SGLang's chunked prefill size), so the decode
    # pool's engines get the budget that was scored: with the trial's larger one they would hold
    # less KV cache than the estimate gives them.
    knobs = engine_knobs(serving, fmt)
    # Under attention DP a decode rank was scored at its own ceil(max_batch_size / DP) sequences
    # (cost_models.serving.rank_workloads): vLLM's engine cores and TensorRT-LLM's ranks take the
    # token budget as written, so theirs is min(budget, that); SGLang with DP attention divides
    # a chunked budget by --dp-size itself (its _handle_data_parallelism), so it gets the deployment's.
    dp = int(spec["parallel"]["dp"])

    def divides(engine: str) -> bool:
        return _divides_budget_by_dp(engine, spec, knobs, dp)

    decode_tokens = min(
        knobs["max_num_tokens"], knobs["max_batch_size"] if divides(fmt) else -(-knobs["max_batch_size"] // dp)
    )
    notes: list[str] = []
    scored = str(serving.get("engine") or "vllm")
    if scored != fmt and divides(scored) != divides(fmt):
        # Scored under the other rule (rank_token_budget): the decode rank's budget as scored,
        # written as this engine reads it. An SGLang-scored TP1 DP8 EP8 decode rank ran min(8192 / 8,
        # 2048) = 1024 tokens; vLLM and TensorRT-LLM were given min(8192, 2048) = 2048 a rank.
        rank = min(
            max(knobs["max_num_tokens"] // dp, 1) if divides(scored) else knobs["max_num_tokens"],
            -(-knobs["max_batch_size"] // dp),
        )
        decode_tokens = rank * dp if divides(fmt) else rank
        notes.append(
            f"decode pool token budget {decode_tokens}: the trial was scored under {scored} with {rank} tokens an "
            f"iteration in each of its {dp} DP ranks"
            + (", and SGLang with DP attention divides --chunked-prefill-size by --dp-size" if divides(fmt) else "")
        )
    decode = {**spec, "serving": {**serving, "max_num_tokens": decode_tokens, "pool": "decode"}}
    prefills, decodes = int(serving["prefill_instances"]), int(serving["decode_instances"])
    return {
        "mode": "disaggregated",
        "prefill": {"instances": prefills, **_RENDERERS[fmt](prefill)},
        "decode": {"instances": decodes, **_RENDERERS[fmt](decode)},
        "router": _disaggregated_router(fmt, prefills, decodes, spec.get(LISTEN_HOST) or ANY_HOST),
        "notes": [
            "each pool is launched as its own engine instances with the engine's KV transfer (vLLM "
            "--kv-transfer-config NixlConnector, SGLang --disaggregation-mode, TensorRT-LLM "
            "cache_transceiver_config); the router pairs them. PREFILL_i / DECODE_i: each instance's host",
            _load_note(serving),
            *notes,
        ],
    }


#: The port a disaggregated deployment's router listens on (every engine's: its clients' one address).
ROUTER_PORT = 8000


def _disaggregated_router(fmt: str, prefills: int, decodes: int, host: str = ANY_HOST) -> dict:
    """What sends each request to a prefill instance, then its KV cache's decode instance,
    listening on ``host`` (tuner export --host, else every interface) at :data:`ROUTER_PORT`: the
    router is the deployment's front door, which clients on other hosts must reach. vLLM's
    toy_proxy_server.py binds localhost unless told (its parse_args: --host default "localhost")
    and sglang_router 127.0.0.1:30000 (sgl-project/sglang sgl-router py_src/sglang_router/
    router_args.py, RouterArgs host and port): both were launched on those loopback defaults."""
    if fmt == "trtllm":
        # nvidia.github.io/TensorRT-LLM, Disaggregated Serving: `trtllm-serve disaggregated -c
        # disagg_config.yaml` with the context and generation servers' URLs.
        config = {
            "hostname": host,
            "port": ROUTER_PORT,
            "backend": "pytorch",
            "context_servers": {
                "num_instances": prefills,
                "urls": [f"PREFILL_{i}:{DISAGGREGATED_PORTS['trtllm']['prefill']}" for i in range(prefills)],
            },
            "generation_servers": {
                "num_instances": decodes,
                "urls": [f"DECODE_{i}:{DISAGGREGATED_PORTS['trtllm']['decode']}" for i in range(decodes)],
            },
        }
        return {
            "cli": "trtllm-serve disaggregated -c disagg_config.yaml",
            "disagg_config": config,
            "disagg_config_yaml": yaml.safe_dump(config, sort_keys=False),
            "notes": [
                "the context servers listen on port 8001 and the generation servers on 8002 (their launch lines "
                "say so), on every interface (--host 0.0.0.0): the router reaches them from its host"
            ],
        }
    if fmt == "sglang":
        # docs.sglang.io, PD Disaggregation: the router pairs the pools (sglang_router).
        line = ["python", "-m", "sglang_router.launch_router", "--pd-disaggregation"]
        line += ["--host", host, "--port", str(ROUTER_PORT)]
        ports = DISAGGREGATED_PORTS["sglang"]
        for i in range(prefills):
            line += ["--prefill", f"http://PREFILL_{i}:{ports['prefill']}"]
        for i in range(decodes):
            line += ["--decode", f"http://DECODE_{i}:{ports['decode']}"]
        return {
            "cli": shlex.join(line),
            "notes": [
                "SGLang moves the KV cache with --disaggregation-transfer-backend, mooncake by default (the "
                "mooncake-transfer-engine package; nixl the other choice) over RDMA: set --disaggregation-ib-device "
                "where the hosts have several NICs"
            ],
        }
    # vLLM ships no PD router in its wheel: its NixlConnector guide runs the repository's proxy
    # (tests/v1/kv_connector/nixl_integration/toy_proxy_server.py); production stacks (Dynamo,
    # llm-d) route the same way.
    line = ["python", "toy_proxy_server.py", "--host", host, "--port", str(ROUTER_PORT)]
    line += ["--prefiller-hosts", *[f"PREFILL_{i}" for i in range(prefills)], "--prefiller-ports"]
    ports = DISAGGREGATED_PORTS["vllm"]
    line += [str(ports["prefill"])] * prefills
    line += ["--decoder-hosts", *[f"DECODE_{i}" for i in range(decodes)], "--decoder-ports"]
    line += [str(ports["decode"])] * decodes
    return {
        "cli": shlex.join(line),
        "notes": [
            "toy_proxy_server.py is vLLM's example proxy (tests/v1/kv_connector/nixl_integration in its repository), "
            "not in the wheel; Dynamo or llm-d route the same way. The prefill instances listen on port 8100 and "
            "the decode instances on 8200 (their launch lines say so), NIXL installed (pip install nixl)"
        ],
    }
