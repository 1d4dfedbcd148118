"""Exporting one trial of a stored study as a deployment spec, JAX shardings or vLLM arguments.

:func:`deployment_spec` turns a trial into the canonical, plain-data description of what was
searched: model shapes (after the attention and block what-ifs), hardware, mesh, batch, formats,
and for each phase its FFN layout, attention sharding and a per-tensor sharding table that follows
Pope et al. (2022, section 3): each tensor's dimensions and the mesh axes that split each of them.
It also carries the predicted metrics and the provenance (study, trial, spec hash, objectives).

:func:`export` renders that spec as ``json`` or ``yaml`` (the spec itself), ``jax`` (JSON: the
mesh and a ``PartitionSpec``-style entry per dimension of every tensor) or ``vllm`` (JSON: engine
arguments, the equivalent ``vllm serve`` command line, and notes on what differs from the searched
configuration). A format that cannot express the trial raises ``InvalidInputError`` on ``format``.

Sharding tables give, per dimension, the list of mesh axes that split it ([] = replicated). Of the
axes a layout names for a dimension, those used are the subset that splits it evenly into the most
shards (JAX's ``NamedSharding`` needs even shards): KV heads fewer than the chips, for one, are
replicated beyond their count. An axis left out is named in ``notes``. Devices are laid out
row-major over (x, y, z): z is the fastest axis, as in the cost model's GPU network, so on GPUs
consecutive z indices share an NVLink node.
"""

from __future__ import annotations

import json
import math
import shlex
from itertools import combinations
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from cost_models.dtypes import dtype_name, parse_dtype
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, SwitchedInterconnect, get_hardware
from cost_models.models import ModelSpec, get_model, model_catalog
from cost_models.partitioning import GATHER_AXES
from search_spaces.spec import parse_spec
from tuner.constraints import is_feasible, study_constraint_names, trial_constraints
from tuner.optuna_internals import study_storage

FORMATS: tuple[str, ...] = ("json", "yaml", "jax", "vllm")
AXES: tuple[str, ...] = ("x", "y", "z")

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
}

# Mesh axes splitting the model dimension E and the hidden dimension F (and heads, and vocab) in
# each FFN layout, as stored. Weight-gathered layouts store weights like the 2D layout (E over x,
# F over yz) and all-gather them over GATHER_AXES before use (Pope et al. 3.2.3).
_E_AXES = {"ws_1d": (), "ws_2d": ("x",), "wg_x": ("x",), "wg_xy": ("x",), "wg_xyz": ("x",)}
_F_AXES = {"ws_1d": AXES, "ws_2d": ("y", "z"), "wg_x": ("y", "z"), "wg_xy": ("y", "z"), "wg_xyz": ("y", "z")}
# Residual-stream activations [B, L, E] between blocks: batch axes and E axes per layout.
_ACT_BATCH = {"ws_1d": (), "ws_2d": (), "wg_x": ("x",), "wg_xy": ("x", "y"), "wg_xyz": AXES}
_ACT_E = {"ws_1d": AXES, "ws_2d": AXES, "wg_x": ("y", "z"), "wg_xy": ("z",), "wg_xyz": ()}


# ---------------------------------------------------------------------------------------------
# Finding and checking the trial


def _find_trial(study: optuna.Study, trial_number: int) -> FrozenTrial:
    """The trial numbered ``trial_number``, read alone (a study may hold millions)."""
    if isinstance(trial_number, bool) or not isinstance(trial_number, int):
        raise InvalidInputError("trial", f"expected a trial number, got {trial_number!r}",
                                "pass a whole number")
    storage = study_storage(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    try:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)
    except KeyError:
        count = storage.get_n_trials(study_id)
        valid = f"trials 0 to {count - 1}" if count else "no trials"
        raise InvalidInputError("trial", f"study {study.study_name!r} has no trial {trial_number}",
                                f"it has {valid}") from None
    return storage.get_trial(trial_id)


def _check_trial(trial: FrozenTrial, allow_infeasible: bool) -> None:
    """Refuse trials that are not finished, not a deployment, or (unless allowed) infeasible."""
    if trial.state != TrialState.COMPLETE:
        raise InvalidInputError("trial", f"trial {trial.number} is {trial.state.name}, not COMPLETE",
                                "export a completed trial (tuner pareto lists them)")
    estimate = trial.user_attrs.get("estimate")
    if not isinstance(estimate, dict) or "params" not in estimate:
        raise InvalidInputError("trial", f"trial {trial.number} has no stored estimate",
                                "export trials of a study made by tuner search")
    constraints = trial_constraints(trial)
    # A structurally invalid candidate (mesh not of the chip count, KV heads not dividing the
    # heads) is no deployment at all: refused even when infeasible trials are allowed.
    if constraints.get("structurally_valid", 0.0) > 0 or not estimate.get("structurally_valid", True):
        raise InvalidInputError("trial", f"trial {trial.number} is structurally invalid (its mesh "
                                "does not have its chip count, or its KV heads do not divide the heads)",
                                "pick a feasible trial (tuner pareto lists them)")
    violated = [f"{name} ({value:.3g} > 0)" for name, value in constraints.items() if value > 0]
    if violated and not allow_infeasible:
        raise InvalidInputError("trial", f"trial {trial.number} is infeasible: it violates "
                                + ", ".join(violated),
                                "pick a feasible trial, or allow infeasible trials explicitly")


# ---------------------------------------------------------------------------------------------
# Sharding tables


def _split(size: int, axes: tuple[str, ...], mesh: dict[str, int], what: str,
           notes: list[str]) -> list[str]:
    """The axes among ``axes`` that split a dimension of ``size`` evenly into the most shards
    (ties: more axes, then earlier ones); the others replicate it, and a note says so."""
    subsets = [c for k in range(len(axes), -1, -1) for c in combinations(axes, k)]
    fitting = [c for c in subsets if size % math.prod(mesh[a] for a in c) == 0]
    best = max(fitting, key=lambda c: (math.prod(mesh[a] for a in c), len(c)))
    left = [a for a in axes if a not in best and mesh[a] > 1]
    if left:
        notes.append(f"{what} ({size}) does not divide over mesh axes {''.join(axes)} "
                     f"({math.prod(mesh[a] for a in axes)} ways): replicated over {''.join(left)}")
    return list(best)


def _tensor(dims: list[str], shape: list[int], sharding: list[list[str]],
            gathered: tuple[str, ...] = ()) -> dict:
    """One tensor's table entry: sharding as stored, and in use (after the all-gather)."""
    in_use = [[a for a in axes if a not in gathered] for axes in sharding]
    return {"dims": dims, "shape": shape, "sharding": sharding,
            "gathered_over": [a for a in AXES if a in gathered and any(a in s for s in sharding)],
            "in_use": in_use}


def _weights(m: dict, layout: str, mesh: dict[str, int], notes: list[str]) -> dict[str, dict]:
    """Per-layer weights (and the embedding / lm_head) of one phase's layout."""
    e_axes, f_axes = _E_AXES[layout], _F_AXES[layout]
    gathered = tuple(GATHER_AXES.get(layout, ""))
    E, H, K, D, F, V = m["d_model"], m["heads"], m["kv_heads"], m["d_head"], m["d_ff"], m["vocab"]

    def e() -> list[str]:
        return _split(E, e_axes, mesh, "d_model E", notes)

    heads = _split(H, f_axes, mesh, "heads H", notes)
    # KV heads split over the axes up to their count, replicated beyond (Pope et al. 3.3).
    kv_heads = _split(K, f_axes, mesh, "wk/wv KV heads K", notes)
    table = {
        "wq": _tensor(["E", "H", "D"], [E, H, D], [e(), list(heads), []], gathered),
        "wk": _tensor(["E", "K", "D"], [E, K, D], [e(), list(kv_heads), []], gathered),
        "wv": _tensor(["E", "K", "D"], [E, K, D], [e(), list(kv_heads), []], gathered),
        "wo": _tensor(["H", "D", "E"], [H, D, E], [list(heads), [], e()], gathered),
    }
    hidden = ["w_gate", "w_up"] if m["ffn"] == "swiglu" else ["w_up"]
    for name in hidden:
        table[name] = _tensor(["E", "F"], [E, F], [e(), _split(F, f_axes, mesh, "d_ff F", notes)], gathered)
    table["w_down"] = _tensor(["F", "E"], [F, E], [_split(F, f_axes, mesh, "d_ff F", notes), e()], gathered)
    # The cost model splits the embedding and lm_head over all chips in every layout, never gathered.
    vocab = _split(V, f_axes, mesh, "vocab V", notes)
    table["embedding"] = _tensor(["V", "E"], [V, E], [vocab, e()])
    table["lm_head"] = _tensor(["E", "V"], [E, V], [e(), list(vocab)])
    table["lm_head"]["tied_to_embedding"] = m["tie_embeddings"]
    return table


def _kv_cache(m: dict, batch: int, context: int, attention: str, mesh: dict[str, int],
              notes: list[str]) -> dict:
    """KV cache [layers, B, S, K, D] (keys and values each): by KV heads, or by batch then heads."""
    if attention == "head":
        batch_axes: list[str] = []
        head_axes = _split(m["kv_heads"], AXES, mesh, "KV cache heads", [])
    else:
        batch_axes = _split(batch, AXES, mesh, "KV cache batch", [])
        rest = tuple(a for a in AXES if a not in batch_axes)
        head_axes = _split(m["kv_heads"], rest, mesh, "KV cache heads", [])
    used = batch_axes + head_axes
    replicated = [a for a in AXES if a not in used and mesh[a] > 1]
    if replicated:
        notes.append(f"KV cache ({attention}-sharded, {m['kv_heads']} KV heads, batch {batch}) is split "
                     f"{math.prod(mesh[a] for a in used)} ways and replicated over {''.join(replicated)}")
    return {"dims": ["layers", "B", "S", "K", "D"],
            "shape": [m["layers"], batch, context, m["kv_heads"], m["d_head"]],
            "sharding": [[], batch_axes, [], head_axes, []],
            "shards": math.prod(mesh[a] for a in used), "replicated_over": replicated,
            "tensors": "one for keys, one for values"}


def _phase(m: dict, layout: str, attention: str, batch: int, tokens: int, context: int,
           mesh: dict[str, int], notes: list[str]) -> dict:
    """One phase's layout and the sharding of every tensor in it."""
    act_batch = _split(batch, _ACT_BATCH[layout], mesh, "activation batch B", notes)
    act_e = _split(m["d_model"], _ACT_E[layout], mesh, "activation d_model E", notes)
    return {
        "ffn_layout": layout,
        "attention_sharding": attention,
        "gather_axes": list(GATHER_AXES.get(layout, "")),
        "weights": _weights(m, layout, mesh, notes),
        "kv_cache": _kv_cache(m, batch, context, attention, mesh, notes),
        "activations": {
            "dims": ["B", "L", "E"], "shape": [batch, tokens, m["d_model"]],
            "sharding": [act_batch, [], act_e], "batch_axes": act_batch,
            "attention_batch_axes": (_split(batch, AXES, mesh, "attention batch B", notes)
                                     if attention == "batch" else act_batch),
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
    return {"name": hardware.name, "kind": hardware.kind, "interconnect": net.kind,
            "chips_per_node": per_node}


def deployment_spec(study: optuna.Study, trial_number: int, *, allow_infeasible: bool = False) -> dict:
    """The canonical deployment spec of one trial (plain data: JSON and YAML safe).

    Raises ``InvalidInputError`` on ``trial`` for a missing, unfinished, structurally invalid or
    (unless ``allow_infeasible``) constraint-violating trial.
    """
    trial = _find_trial(study, trial_number)
    _check_trial(trial, allow_infeasible)
    stored = study.user_attrs.get("spec")
    if not isinstance(stored, dict):
        raise InvalidInputError("study", f"study {study.study_name!r} has no stored spec",
                                "export studies made by tuner search")
    spec = parse_spec(stored, "study spec")
    published = get_model(spec.model)
    hardware = get_hardware(spec.hardware)
    estimate = trial.user_attrs["estimate"]
    p = estimate["params"]
    x, y, z = (int(a) for a in str(p["mesh"]).split("x"))
    mesh = {"x": x, "y": y, "z": z}
    batch = int(p["batch"])
    workload = spec.workload
    model = _model_section(published, spec.model, int(p["kv_heads"]), str(p["block"]))
    notes: list[str] = []
    phases = {
        "prefill": _phase(model, p["prefill_ffn_layout"], p["prefill_attn_sharding"], batch,
                          workload.prompt_len, workload.prompt_len + workload.gen_len, mesh, notes),
        "decode": _phase(model, p["decode_ffn_layout"], p["decode_attn_sharding"], batch, 1,
                         workload.prompt_len + workload.gen_len, mesh, notes),
    }
    if phases["prefill"]["kv_cache"]["sharding"] != phases["decode"]["kv_cache"]["sharding"]:
        notes.append("the KV cache is sharded differently in prefill and decode: it is resharded "
                     "between the phases (the cost model does not count that)")
    if model["block"] == "parallel":
        notes.append("parallel block: wq/wk/wv run fused with the FFN's input matrices and wo with "
                     "w_down (one set of collectives per layer); shardings as listed")
    names = study.metric_names or [f"objective_{i}" for i in range(len(trial.values or []))]
    directions = [d.name.lower() for d in study.directions]
    return _finite({
        "model": model,
        "hardware": _hardware_section(hardware),
        "chips": int(p["chips"]),
        "mesh": mesh,
        "batch": batch,
        "workload": {"prompt_len": workload.prompt_len, "gen_len": workload.gen_len},
        "quantization": {"weights": dtype_name(parse_dtype(p["weight_bits"], "weight_bits")),
                         "kv_cache": dtype_name(parse_dtype(p["kv_bits"], "kv_bits")),
                         "activations": "bf16"},
        "flash_attention": bool(p["flash_attention"]),
        "phases": phases,
        "predicted": {k: estimate[k] for k in ("prefill", "decode", "memory") if k in estimate},
        "provenance": {
            "study": study.study_name, "trial": trial.number,
            "spec_hash": study.user_attrs.get("spec_hash"),
            "objectives": [{"name": n, "direction": d, "value": v}
                           for n, d, v in zip(names, directions, trial.values or [])],
            "constraints": trial_constraints(trial, study_constraint_names(study.user_attrs)),
            "feasible": is_feasible(trial),
        },
        "notes": list(dict.fromkeys(notes)),
    })


def _model_section(published: ModelSpec, reference: str, kv_heads: int, block: str) -> dict:
    return {
        "name": published.name,
        "hf_repo": HF_REPOS.get(published.name) if reference in model_catalog() else None,
        "layers": published.layers, "d_model": published.d_model, "heads": published.heads,
        "kv_heads": kv_heads, "d_head": published.d_head, "d_ff": published.d_ff,
        "ffn": published.ffn, "block": block, "vocab": published.vocab,
        "tie_embeddings": published.tie_embeddings,
        "published_kv_heads": published.kv_heads, "published_block": published.block,
    }


# ---------------------------------------------------------------------------------------------
# Formats


def _partition_spec(sharding: list[list[str]]) -> list[str | list[str] | None]:
    """Per dimension: None (replicated), one axis name, or a list of axis names."""
    return [None if not axes else axes[0] if len(axes) == 1 else list(axes) for axes in sharding]


def jax_sharding(spec: dict) -> dict:
    """Mesh and ``PartitionSpec``-style entries of every tensor, per phase (lists stand for tuples)."""
    phases = {}
    for name, phase in spec["phases"].items():
        phases[name] = {
            "ffn_layout": phase["ffn_layout"],
            "attention_sharding": phase["attention_sharding"],
            "gather_axes": phase["gather_axes"],
            "weights": {w: {"dims": t["dims"], "shape": t["shape"],
                            "stored": _partition_spec(t["sharding"]),
                            "in_use": _partition_spec(t["in_use"])}
                        for w, t in phase["weights"].items()},
            "kv_cache": {"dims": phase["kv_cache"]["dims"], "shape": phase["kv_cache"]["shape"],
                         "spec": _partition_spec(phase["kv_cache"]["sharding"])},
            "activations": {"dims": phase["activations"]["dims"], "shape": phase["activations"]["shape"],
                            "spec": _partition_spec(phase["activations"]["sharding"])},
        }
    mesh = spec["mesh"]
    usage = ("mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(mesh_shape), axis_names); "
             "NamedSharding(mesh, PartitionSpec(*spec)) with each list entry as a tuple")
    notes = [
        "devices row-major over (x, y, z): z fastest (on GPUs, consecutive z share an NVLink node)",
        ("weights are stored with 'stored'; in weight-gathered layouts (wg_*) they are all-gathered "
         "over gather_axes before each use, giving 'in_use'"),
        "per-layer weight shapes; the KV cache is one array for keys and one for values",
        *spec["notes"],
    ]
    return {"mesh_shape": [mesh["x"], mesh["y"], mesh["z"]], "axis_names": list(AXES),
            "usage": usage, "phases": phases, "notes": notes, "provenance": spec["provenance"]}


_VLLM_KV = {"bf16": "auto", "fp8": "fp8", "int8": "fp8"}


def vllm_args(spec: dict) -> dict:
    """vLLM engine arguments (and the ``vllm serve`` line) approximating the spec; notes say how.

    vLLM runs Megatron-style tensor parallelism (1D weight-stationary, heads split) within a node
    and pipeline parallelism across nodes: chips up to a node are all tensor parallel, beyond it
    tensor parallel over a node times chips/node pipeline stages. Other layouts, and any pipeline,
    are approximations (a note says so). Weights: 16-bit -> no quantization, fp8 -> ``fp8``
    (quantized at load), int8/int4 weight-only -> ``gptq`` (needs a pre-quantized checkpoint).
    KV cache: 16-bit -> ``auto``, fp8 -> ``fp8``, int8 -> ``fp8`` (same size). Raises
    ``InvalidInputError`` on ``format`` where vLLM cannot run the configuration at all: non-GPU
    hardware, an attention or block what-if (no such checkpoint), heads not divisible by the
    tensor-parallel size, an int4 KV cache.
    """
    model, hardware = spec["model"], spec["hardware"]
    if hardware["kind"] != "gpu":
        raise InvalidInputError("format", f"vllm export maps onto GPU tensor/pipeline parallelism; "
                                f"{hardware['name']} is a {hardware['kind'].upper()}",
                                "use --format jax (or json) for this hardware")
    if model["kv_heads"] != model["published_kv_heads"] or model["block"] != model["published_block"]:
        raise InvalidInputError("format", f"the trial changes {model['name']}'s architecture (kv_heads "
                                f"{model['published_kv_heads']} -> {model['kv_heads']}, block "
                                f"{model['published_block']} -> {model['block']}): no such checkpoint exists",
                                "export a trial with the model's own attention and block")
    chips, per_node = spec["chips"], hardware["chips_per_node"] or 1
    tp, pp = (chips, 1) if chips <= per_node else (per_node, chips // per_node)
    if model["heads"] % tp:
        raise InvalidInputError("format", f"vLLM needs the {model['heads']} attention heads divisible "
                                f"by tensor_parallel_size {tp}", "export a trial with another chip count")
    quant = spec["quantization"]
    notes: list[str] = []
    if quant["kv_cache"] not in _VLLM_KV:
        raise InvalidInputError("format", f"vLLM has no {quant['kv_cache']} KV cache",
                                "export a trial with 16-bit, fp8 or int8 KV")
    if quant["kv_cache"] == "int8":
        notes.append("vLLM has no int8 KV cache: kv_cache_dtype fp8 stands in (same bytes per element)")
    weights = quant["weights"]
    quantization = {"bf16": None, "fp8": "fp8", "int8": "gptq", "int4": "gptq"}[weights]
    if weights == "fp8":
        notes.append("quantization fp8 quantizes a 16-bit checkpoint at load; on GPUs with fp8 "
                     "tensor cores vLLM also runs activations in fp8 (the estimate kept them bf16)")
    elif quantization == "gptq":
        notes.append(f"{weights} weight-only quantization: vLLM needs a pre-quantized GPTQ "
                     f"{weights[3:]}-bit checkpoint; set model to one (the repo below is the 16-bit one)")
    layouts = {(p["ffn_layout"], p["attention_sharding"]) for p in spec["phases"].values()}
    if layouts != {("ws_1d", "head")} or pp > 1:
        searched = ", ".join(f"{n}: {p['ffn_layout']}/{p['attention_sharding']}"
                             for n, p in spec["phases"].items())
        notes.append(f"approximate: vLLM runs 1D weight-stationary tensor parallelism over {tp} GPUs"
                     + (f" and {pp} pipeline stages" if pp > 1 else "")
                     + f", not the searched layout ({searched}) on mesh "
                     f"{spec['mesh']['x']}x{spec['mesh']['y']}x{spec['mesh']['z']}; "
                     "the predicted metrics are for the searched layout")
    if not spec["flash_attention"]:
        notes.append("vLLM always runs fused (flash/paged) attention kernels; the estimate assumed "
                     "unfused attention")
    if model["hf_repo"] is None:
        notes.append(f"no known Hugging Face checkpoint for {model['name']}: set model")
    args = {
        "model": model["hf_repo"],
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "dtype": "bfloat16",
        "quantization": quantization,
        "kv_cache_dtype": _VLLM_KV[quant["kv_cache"]],
        "max_num_seqs": spec["batch"],
        "max_model_len": spec["workload"]["prompt_len"] + spec["workload"]["gen_len"],
    }
    line = ["vllm", "serve", args["model"] or "MODEL"]
    for key, value in args.items():
        if key != "model" and value is not None:
            line += [f"--{key.replace('_', '-')}", str(value)]
    return {"engine_args": args, "cli": shlex.join(line), "notes": notes,
            "provenance": spec["provenance"]}


def export(study: optuna.Study, trial_number: int, fmt: str, *, allow_infeasible: bool = False) -> str:
    """One trial rendered as ``json`` or ``yaml`` (the deployment spec), ``jax`` or ``vllm`` (JSON)."""
    if fmt not in FORMATS:
        raise InvalidInputError("format", f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    spec = deployment_spec(study, trial_number, allow_infeasible=allow_infeasible)
    if fmt == "yaml":
        return yaml.safe_dump(spec, sort_keys=False)
    data = {"json": lambda s: s, "jax": jax_sharding, "vllm": vllm_args}[fmt](spec)
    return json.dumps(data, indent=2) + "\n"
