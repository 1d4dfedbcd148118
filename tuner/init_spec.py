"""``tuner init``: a commented study spec for one model on one chip, for the user to edit.

The space is sized from the numbers: for a GPU the engines' degrees (tp inside its NVLink
domain, pp stages across domains as the model's 16-bit weights need them, ep and dp for an MoE
model: :func:`engine_degrees`); for a TPU the chip counts of its slices and Pope et al.'s
layouts; the formats the chip computes natively, and the objectives, constraints and
(``--serving``) load of a typical chat service. Each field carries the comment
:mod:`tuner.spec_docs` derives from the spec's pydantic models; a field not chosen here is written
commented out at its default. The text is validated with ``parse_spec`` before it is returned.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cost_models.catalog_files import looks_like_path
from cost_models.deployments import engine_problem_mask
from cost_models.dtypes import BITS_CHOICES, BYTES_PER_ELEMENT, parse_dtype, weight_bits_default
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, SwitchedInterconnect, get_hardware
from cost_models.metrics import METRICS
from cost_models.models import ModelSpec, get_model
from cost_models.serving import ENGINE_DEFAULTS
from cost_models.topology import network_for
from search_spaces.spec import parse_spec
from tuner.spec_docs import FieldDoc, Section, sections

WIDTH = 100
#: Largest chip count init proposes (a TPU v4 pod is 4096 chips).
MAX_PROPOSED_CHIPS = 4096


def native_formats(chip: HardwareSpec) -> list[str]:
    """The weight/KV formats of ``BITS_CHOICES`` the chip has compute units for."""
    return [bits for bits in BITS_CHOICES if chip.has_format(parse_dtype(bits, "weight_bits"))]


def chip_counts(weight_bytes_16: float, weight_bytes_min: float, chip: HardwareSpec) -> list[int]:
    """Powers of two the hardware forms a mesh of, up to 8 (a GPU's NVLink domain if smaller) or as
    many as the 16-bit weights need; counts too small to hold the weights even in the narrowest
    format are left out."""
    network = network_for(chip)
    # Up to 8 chips (a GPU node's NVLink domain, or less where the domain is smaller: more nodes
    # only when the weights need them), more while the 16-bit weights need them.
    base = min(chip.interconnect.domain_size, 8) if isinstance(chip.interconnect, SwitchedInterconnect) else 8
    needed_16 = math.ceil(weight_bytes_16 / chip.memory_bytes)
    limit = min(max(base, 2 ** math.ceil(math.log2(max(needed_16, 1)))), MAX_PROPOSED_CHIPS)
    counts = [2**k for k in range(int(math.log2(limit)) + 1) if network.legal_meshes(2**k)]
    fitting = [n for n in counts if n * chip.memory_bytes >= weight_bytes_min]
    return fitting or counts[-1:]


#: Share of a GPU's memory the engines' defaults let weights and KV cache use (vLLM's
#: gpu_memory_utilization and TensorRT-LLM's free_gpu_memory_fraction 0.9, SGLang's
#: mem_fraction_static ~0.88: cost_models.serving.ENGINE_DEFAULTS): the largest of them.
ENGINE_MEMORY_SHARE = max(d["memory_fraction"] for name, d in ENGINE_DEFAULTS.items() if name != "jax")


def _serving_tp(model_spec, chip: HardwareSpec, tp: list[int], fewest: int, weight_bytes_min: float) -> list[int]:
    """TP sizes of a serving spec, the only degree the serving model charges: those of ``tp`` (in
    the NVLink domain) that hold the narrowest weights, and where none does, TP over whole
    domains (powers of two past it, dividing the heads, as the network forms) up to the first
    that does. DeepSeek-V3's 671 GB of fp8 weights need 16 H100s at the engines' 0.9 share
    (8 x 80 GiB x 0.9 = 618 GB): with tp [8] alone every trial of the written study was
    infeasible."""
    usable = chip.memory_bytes * ENGINE_MEMORY_SHARE
    holding = [t for t in tp if t >= fewest and t * usable >= weight_bytes_min]
    if holding:
        return holding
    network = network_for(chip)
    size = tp[-1]
    while size * 2 <= MAX_PROPOSED_CHIPS:
        size *= 2
        if engine_problem_mask(None, model_spec.heads, 0, [size], 1, 1)[0] or not network.legal_meshes(size):
            continue
        if size * usable >= weight_bytes_min:
            return [size]
    return tp[-1:]


def engine_degrees(
    model_spec, chip: HardwareSpec, weight_bytes_16: float, weight_bytes_min: float, serving: bool = False
) -> dict:
    """A GPU space in the engines' vocabulary (vLLM, SGLang, TensorRT-LLM): tensor parallel (tp)
    over powers of two inside the NVLink domain (up to 8, the node most engines run TP over) that
    divide the heads;
    pipeline stages (pp) across domains, as many as the 16-bit weights need over a full domain
    (at least [1, 2]); for an MoE model expert parallelism (ep: powers of two dividing the experts,
    up to tp x dp) and attention data parallelism (dp), as DeepSeek, Qwen3 MoE and gpt-oss are
    served; micro-batches where there is a pipeline. Combinations no engine runs (ep not dividing
    tp x dp, a chip count above the machine's) are infeasible trials, not errors. ``serving``: tp,
    and for an MoE model ep and dp (the serving model charges TP, EP and attention DP, not pipelines:
    docs/serving.md, "Expert and attention data parallelism")."""
    if not isinstance(chip.interconnect, SwitchedInterconnect):  # callers pass GPUs only
        raise InvalidInputError("hardware", f"{chip.name} has no NVLink-style domain", "use a GPU chip")
    domain = min(chip.interconnect.domain_size, 8)
    # Only sizes that split whole heads: no GPU engine splits a head over ranks (gpt2: 12 heads).
    powers = [2**k for k in range(int(math.log2(domain)) + 1)]
    split = engine_problem_mask(None, model_spec.heads, 0, powers, 1, 1)
    tp = [t for t, bad in zip(powers, split.tolist(), strict=True) if not bad]
    # Fewest chips that hold the weights in the narrowest format: smaller tp x pp are left out.
    fewest = math.ceil(weight_bytes_min / chip.memory_bytes)
    if serving:
        serving_tp = _serving_tp(model_spec, chip, tp, fewest, weight_bytes_min)
        if not model_spec.is_moe:
            return {"tp": serving_tp}
        # Attention DP (SGLang --enable-dp-attention, vLLM DP with expert parallelism): TP x DP chips
        # hold the weights, so a TP that alone does not may run with DP. With tp alone DeepSeek-V3
        # on 8 H200s under SGLang, 256 clients of 2048/256, was TP8 at 315 tokens/s a GPU and a
        # 101 ms TPOT; TP1 DP8 serves 467 at 67 ms.
        dp = [d for d in (1, 2, 4, 8) if d * serving_tp[-1] <= MAX_PROPOSED_CHIPS]
        serving_tp = sorted({t for t in tp if t * dp[-1] >= fewest} | set(serving_tp))
        top_ep = serving_tp[-1] * dp[-1]
        ep = [e for e in (2**k for k in range(int(math.log2(top_ep)) + 1)) if model_spec.experts % e == 0]
        return {"tp": serving_tp, "ep": ep, "dp": dp}
    stages_16 = math.ceil(weight_bytes_16 / (chip.memory_bytes * tp[-1]))
    top_pp = min(max(2, 2 ** math.ceil(math.log2(max(stages_16, 1)))), model_spec.layers, MAX_PROPOSED_CHIPS // tp[-1])
    pp = [2**k for k in range(int(math.log2(top_pp)) + 1)]
    tp = [t for t in tp if t * pp[-1] >= fewest] or tp[-1:]
    degrees: dict[str, Any] = {"tp": tp, "pp": pp}
    if model_spec.is_moe:
        dp = [d for d in (1, 2, 4, 8) if d * tp[-1] * pp[-1] <= MAX_PROPOSED_CHIPS]
        top_ep = tp[-1] * dp[-1]
        degrees["ep"] = [e for e in (2**k for k in range(int(math.log2(top_ep)) + 1)) if model_spec.experts % e == 0]
        degrees["dp"] = dp
    if len(pp) > 1:
        degrees["micro_batches"] = [1, 2, 4]
    return degrees


def _file_stem(value: str) -> str:
    """What a study is named after for a ``--model`` value: a catalog name as it is; a
    config.json after its folder (a checkpoint's), a checkpoint folder after itself, any other
    file after its stem. configs/qwen3-30b-a3b.json and configs/mixtral-8x22b.json are two
    studies, not one "configs"; files/my-model.yaml is "my-model", which was
    "files-my-model.yaml" (ops40, 2026-12-06: only .json paths lost their folder and suffix)."""
    if not looks_like_path(value):
        return value
    path = Path(value)
    if path.name == "config.json":
        return path.absolute().parent.name
    try:
        if path.is_dir():
            return path.absolute().name
    except OSError:  # a name too long to be a path (ENAMETOOLONG): no folder
        pass
    return path.stem


def _from_spec_dir(value: str, spec_dir: Path | None) -> str:
    """``value`` as the spec at ``spec_dir`` reads it: a relative path to an existing file is
    rewritten relative to the spec's directory (search_spaces.spec reads relative paths from
    there); a catalog name, an absolute path or a missing file as written. init wrote the path as
    typed, so `tuner init --model my-model.yaml -o studies/x.yaml` wrote `model: my-model.yaml`,
    which the spec found only when searched from the directory init ran in (ops40, 2026-12-06)."""
    try:
        if spec_dir is None or not looks_like_path(value) or Path(value).is_absolute() or not Path(value).exists():
            return value
    except OSError:  # a name too long to be a path: as written (reading it has failed already)
        return value
    return Path(os.path.relpath(Path(value).absolute(), spec_dir.absolute())).as_posix()


def study_name(model: str, hardware: str, serving: bool) -> tuple[str, str | None]:
    """The name ``tuner init`` gives the study (and its default file), and a note where it is not
    the model's and chip's names as written: a study name holds letters, digits, '.', '_' and '-'
    (search_spaces.spec), and a checkpoint folder 'Mödel-ß' made 'M-del---h100-sxm', silently.
    Accented letters keep their base letter (NFKD, the combining marks dropped: 'Model'), other
    characters outside the set go, runs of '-' become one."""
    stem = _file_stem(model)
    # A chip YAML file is named by its chip (its ``name:``, else the file's stem, as
    # get_hardware reads it): './my-chip.yaml' made 'llama-3-8b-.-my-chip.yaml' and a note.
    chip = get_hardware(hardware).name if looks_like_path(hardware) else hardware
    wanted = f"{stem}-{chip}" + ("-serving" if serving else "")
    plain = unicodedata.normalize("NFKD", wanted).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._-]+", "-", plain)).strip("-._") or "study"
    if name == wanted:
        return name, None
    return name, (
        f"study name {name!r} (from {stem!r} on {chip}: a study name holds letters, digits, '.', '_' and '-'); "
        "edit name: in the spec to choose another"
    )


def initial_values(model: str, hardware: str, serving: bool, spec_dir: Path | None = None) -> dict[str, Any]:
    """The field values of the spec ``tuner init`` writes (the rest keep their defaults)."""
    model_spec = get_model(model)
    if model_spec.kind == "encoder":  # the same refusal tuner search would give the written spec
        raise InvalidInputError(
            "model",
            f"{model_spec.name} is an encoder; a study searches decoder deployments (prefill and decode)",
            "use a decoder model (tuner estimate --phase prefill times an encoder)",
        )
    chip = get_hardware(hardware)
    formats = native_formats(chip)
    # A quantized checkpoint's own format (gpt-oss's MXFP4 experts, an AWQ int4 checkpoint) runs
    # on a chip without units for it too (weight-only: fp4 on an H100, as tuner estimate runs it
    # by default), and it is what the deployment serves unless the weights are converted: offered
    # beside the native ones, and counted when sizing the fewest chips (gpt-oss-120b: one H100).
    own = weight_bits_default(model_spec.checkpoint_format)
    if model_spec.checkpoint_format is not None and own not in formats:
        try:
            chip.parse_formats(weight_bits=own)  # fp8 on a chip without fp8 units stays out
        except InvalidInputError:
            pass
        else:
            formats = [b for b in BITS_CHOICES if b in formats or b == own]
    params = float(model_spec.params)
    smallest = min(float(BYTES_PER_ELEMENT[parse_dtype(b, "weight_bits")]) for b in formats)
    gpu = isinstance(chip.interconnect, SwitchedInterconnect)
    space: dict[str, Any]
    if gpu:
        # The engines' vocabulary (the layouts follow: ws_1d, heads split).
        space = engine_degrees(model_spec, chip, params * 2.0, params * smallest, serving)
    else:
        space = {
            "chips": chip_counts(params * 2.0, params * smallest, chip),
            "mesh": "auto",
            "prefill_ffn_layout": ["ws_1d", "ws_2d", "wg_xyz"],
            "decode_ffn_layout": ["ws_1d", "ws_2d"],
            "decode_attn_sharding": ["head", "batch"],
        }
    if not serving:
        space["batch"] = [1, 8, 32, 128]
    kv_formats = [b for b in formats if b in ("16", "fp8")] if "fp8" in formats else ["16", "8"]
    # YAML numbers where the format is one (16, 8, 4): the spec reads them as the strings "16", ...
    space["weight_bits"] = [int(b) if b.isdigit() else b for b in formats]
    space["kv_bits"] = [int(b) if b.isdigit() else b for b in kv_formats]
    space["flash_attention"] = [True]
    values: dict[str, Any] = {
        "name": study_name(model, hardware, serving)[0],
        "description": f"{model_spec.name} on {chip.name}"
        + (": tokens/s per chip against tokens/s per user under a chat SLA." if serving else ": latency against cost."),
        "model": _from_spec_dir(model, spec_dir),
        "hardware": _from_spec_dir(hardware, spec_dir),
        "workload": _workload(model_spec, serving),
        "space": space,
        "constraints": {"fits": True, "max_ttft_s": 2.0, "max_tpot_s": 0.1}
        if serving
        else {"fits": True, "max_ttft_s": 1.0, "max_tpot_s": 0.05},
        "calibration": "auto",
        "sampler": "nsga2",
        "seed": 0,
        "trials": 1000,
    }
    if serving:
        values["serving"] = {
            "mode": "aggregated",
            "concurrency": [1, 4, 16, 64, 256],
            "max_num_tokens": [2048, 8192],
        }
        values["objectives"] = ["serving.tokens_per_s_per_chip", "serving.tokens_per_s_per_user"]
    else:
        values["objectives"] = ["decode.step_latency_s", "decode.cost_chip_s_per_token"]
    return values


def _workload(model_spec: ModelSpec, serving: bool) -> dict[str, int]:
    """A chat-like request, inside the model's trained context (max_position_embeddings; 0:
    unknown): gpt2's 1,024 tokens got 1,024 + 256, which every command run on the written spec
    then warned that engines refuse. The output keeps its 256 tokens up to a quarter of the
    context; the prompt takes the rest."""
    prompt, gen = (2048, 256) if serving else (1024, 256)
    context = model_spec.max_context
    if context and prompt + gen > context:
        gen = max(min(gen, context // 4), 1)
        prompt = max(context - gen, 1)
    return {"prompt_len": prompt, "gen_len": gen}


def _at_least(value: float) -> float:
    """``value`` rounded up to two significant digits (a limit it meets: 0.0834 -> 0.084)."""
    step = 10.0 ** (math.floor(math.log10(value)) - 1)
    units = math.ceil(value / step)
    rounded = float(f"{units * step:.2g}")
    return rounded if rounded >= value else float(f"{(units + 1) * step:.2g}")  # float rounding below it


def feasibility_note(text: str) -> str | None:
    """None where some candidate of the written spec's space meets its constraints, else one line
    saying what would: the latency limits the closest candidate meets (the one needing the
    smallest common relaxation of them), or that none fits at all. Scoring the whole space
    costs at most 0.22 s for every catalog model on every catalog chip, with and without
    --serving (1,040 specs, 90.9 s in all, one core of a 2-core machine shared by four jobs,
    2026-12-06); 87 of them had no feasible candidate (deepseek-v3 on l4: TPOT 50 ms met by
    none), which a search of 1,000 trials found only at its end."""
    from search_spaces.space import compile_study, evaluate

    study = compile_study(parse_spec(yaml.safe_load(text), "tuner init"))
    scored = evaluate(study, study.space.all_indices())
    if scored.feasible.any():
        return None
    limits = {
        name: float(getattr(study.spec.constraints, name))
        for name in scored.constraint_columns
        if name.startswith("max_") and name.endswith("_s")
    }
    runs = np.all([v <= 0 for k, v in scored.constraint_columns.items() if k not in limits], axis=0)
    if not runs.any():
        what = "fits in memory and sustains its load" if study.spec.serving is not None else "fits in memory"
        return (
            f"no candidate of the space {what} on {study.hardware.name}, so no trial is feasible: "
            "add more chips (or fewer weight bits) to space, or use a chip with more memory"
        )
    # Each latency over its limit (1: at it). One limit raised where that is enough (the candidate
    # meeting the others that is nearest it, of the limit nearest being met), else the candidate
    # whose worst ratio is smallest, which meets every limit raised to its own latencies.
    measured = {name: scored.constraint_columns[name] + limit for name, limit in limits.items()}
    ratio = {name: measured[name] / limit for name, limit in limits.items()}
    alone = {
        name: np.where(runs & np.all([ratio[k] <= 1 for k in limits if k != name], axis=0), ratio[name], np.inf)
        for name in limits
    }
    nearest = min(limits, key=lambda name: float(alone[name].min()))
    if np.isfinite(alone[nearest].min()):
        best = int(np.argmin(alone[nearest]))
    else:
        best = int(np.argmin(np.where(runs, np.max(list(ratio.values()), axis=0), np.inf)))
    over = {name: _at_least(float(measured[name][best])) for name, limit in limits.items()}
    raised = " and ".join(f"{name}: {over[name]:g}" for name in limits if measured[name][best] > limits[name])
    params = study.space.params_of(scored.indices, best)
    shown = ", ".join(f"{k} {v}" for k, v in params.items() if len(study.space.dimensions[k]) > 1)
    return (
        f"no trial of this space meets its constraints on {study.hardware.name} "
        f"({', '.join(f'{name} {limit:g}' for name, limit in limits.items())}); {raised} would admit {shown} "
        "(or use a faster chip)"
    )


def _flow(value: Any) -> str:
    """One YAML value on one line: [1, 2, 4], auto, '16', true."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _comment(doc: FieldDoc, indent: str) -> list[str]:
    text = doc.description
    if doc.allowed:
        text += f" Allowed: {doc.allowed}."
    if doc.section is None:
        text += f" Default: {doc.default}." if doc.default != "required" else " Required."
    return textwrap.wrap(text, WIDTH, initial_indent=indent + "# ", subsequent_indent=indent + "# ")


def spec_text(model: str, hardware: str, serving: bool = False, spec_dir: Path | None = None) -> str:
    """The commented YAML of a study spec for ``model`` on ``hardware``; it parses and searches.
    With ``spec_dir`` (where the spec will be written) file paths are written relative to it."""
    values = initial_values(model, hardware, serving, spec_dir)
    by_path = {s.path: s for s in sections()}
    lines = [
        f"# Study spec: {model} on {hardware}, written by `tuner init`. Edit it, then run",
        f"#   tuner search <this file>        and        tuner pareto {values['name']}",
        "# Every field is documented in docs/spec-reference.md (tuner spec --reference); tuner metrics lists",
        "# the metrics. A field left commented out takes the default shown.",
        "",
    ]
    for doc in by_path[""].fields:
        value = values.get(doc.path)
        lines += _comment(doc, "")
        if doc.section is None:
            shown = _flow(value) if value is not None else _flow(_schema_default(doc))
            lines.append(f"{doc.path}: {shown}" if value is not None else f"# {doc.path}: {shown}")
        elif doc.path == "objectives":
            lines += _comment_section(by_path["objectives[]"], "  ")
            lines.append("objectives:")
            for metric in values["objectives"]:
                m = METRICS[metric]
                lines.append(f"  - metric: {metric}    # {m.direction} {m.unit}: {' '.join(m.description.split())}")
        elif value is None:
            lines.append(f"# {doc.path}:    (absent; tuner init --serving writes one)")
        else:
            lines.append(f"{doc.path}:")
            for sub in by_path[doc.path].fields:
                key = sub.path.rsplit(".", 1)[-1]
                lines += _comment(sub, "  ")
                if key in value:
                    lines.append(f"  {key}: {_flow(value[key])}")
                else:
                    lines.append(f"  # {key}: {_flow(_schema_default(sub))}")
        lines.append("")
    text = "\n".join(lines)
    parse_spec(yaml.safe_load(text), "tuner init")  # what is written must parse
    return text


def _comment_section(section: Section, indent: str) -> list[str]:
    """The comment of each field of a list's item mapping (objectives: metric, direction)."""
    lines = []
    for doc in section.fields:
        key = doc.path.rsplit(".", 1)[-1]
        lines += textwrap.wrap(
            f"{key}: {doc.description}" + (f" Allowed: {doc.allowed}." if doc.allowed and key != "metric" else ""),
            WIDTH,
            initial_indent=indent[:-2] + "# ",
            subsequent_indent=indent[:-2] + "#   ",
        )
    return lines


def _schema_default(doc: FieldDoc) -> Any:
    return None if doc.default.startswith(("null", "required", "(")) else yaml.safe_load(doc.default)


def write_spec(path: str | Path, text: str, force: bool) -> None:
    """Write ``text`` at ``path``, refusing to replace an existing file unless ``force``."""

    from tuner.shown_text import shown_path, unusable_path_fix

    target = Path(path)
    try:
        # Inside the try: exists() raises (not answers) for a name too long (ENAMETOOLONG).
        if target.exists() and not force:
            raise InvalidInputError("output", f"{target} exists", "pass --force to overwrite it, or another -o PATH")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InvalidInputError(
            "output",
            f"cannot write {shown_path(str(target))}: {error.strerror}",
            unusable_path_fix(error, "pass a writable path"),
        ) from None
