"""``tuner recommend --export ENGINE --out DIR``: the launch files of each mode's best plan.

The flags are written by :mod:`tuner.export`'s engine writers (what ``tuner export --format``
writes for a study's trial), from the candidate the plan was scored as
(:func:`cost_models.capacity.scored_plan`): the same deployment and engine knobs, so the flags
are the ones the predicted TTFT and TPOT were computed with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cost_models.capacity import CapacityProblem, scored_plan
from cost_models.errors import InvalidInputError
from cost_models.hardware import ENGINE_DISPLAY_NAMES
from tuner.export import plan_engine_args
from tuner.recommend_report import _formats, _layout
from tuner.tables import calibration_line

#: What an out directory is named without --out: beside the working directory.
DEFAULT_OUT = "recommend-{model}-{hardware}-{engine}"


def default_out_dir(model: str, hardware: str, engine: str) -> str:
    safe = {k: "".join(c if c.isalnum() or c in "._-" else "-" for c in v) for k, v in
            (("model", Path(model).stem), ("hardware", Path(hardware).stem), ("engine", engine))}  # fmt: skip
    return DEFAULT_OUT.format(**safe)


def refuse_out_dir(out: str, force: bool, flag: str = "--out") -> None:
    """An out directory that exists and holds files is kept unless --force (the launch files of
    another plan would mix with this one's); a path that is a file is refused even with --force.
    Checked before the plan is searched, so a refusal costs nothing."""
    path = Path(out)
    try:
        exists = path.exists()
    except OSError as error:
        raise InvalidInputError(flag, f"cannot write {out}: {error.strerror}", f"pass another {flag} DIR") from None
    if not exists:
        parent = path.parent
        if not parent.is_dir():
            raise InvalidInputError(
                flag, f"cannot write {out}: no directory {parent}", f"create it, or pass another {flag} DIR"
            )
        return
    if not path.is_dir():
        raise InvalidInputError(flag, f"{out} is a file, not a directory", f"pass another {flag} DIR")
    if any(path.iterdir()) and not force:
        raise InvalidInputError(
            flag, f"{out} exists and is not empty", f"pass --force to write into it, or another {flag} DIR"
        )


def plan_exports(p: CapacityProblem, report: dict, engine: str) -> dict[str, dict]:
    """Each planned mode's best plan as ``engine``'s launch arguments (modes with no plan left out)."""
    return {
        mode: plan_engine_args(scored_plan(p, r["best"]), engine)
        for mode, r in report["modes"].items()
        if r["best"] is not None
    }


def _script(lines: list[str], header: list[str], cd: bool = False) -> str:
    body = ["#!/bin/sh", *(f"# {h}" for h in header)]
    if cd:  # TensorRT-LLM's --extra_llm_api_options names a file beside this script
        body.append('cd "$(dirname "$0")"')
    return "\n".join([*body, *lines]) + "\n"


def _instance_files(data: dict, header: list[str]) -> dict[str, str]:
    """One instance's launch script (and TensorRT-LLM's options file). An instance over several
    nodes: each node's line, commented (each runs on its own node; the notes say how)."""
    files = {}
    trtllm = data["engine"] == "trtllm"
    if trtllm:
        files["extra_llm_api_options.yaml"] = data["extra_llm_api_options_yaml"]
    if "launch" in data:
        lines = [f"# {line}" for line in data["launch"]]
        header = [*header, f"over {data['nodes']} nodes: run each line below on its node (see engine_args.json notes)"]
        files["launch.sh"] = _script(lines, header, cd=trtllm)
    else:
        files["launch.sh"] = _script([data["cli"]], header, cd=trtllm)
    return files


def export_files(report: dict, exports: dict[str, dict]) -> dict[str, str]:
    """Relative path -> text of every file written: README.md, and per mode its engine_args.json
    (the JSON ``tuner export --format ENGINE`` prints for a trial) and launch scripts."""
    files: dict[str, str] = {}
    for mode, data in exports.items():
        files[f"{mode}/engine_args.json"] = json.dumps(data, indent=2) + "\n"
        best = report["modes"][mode]["best"]
        if mode == "aggregated":
            gpus = best["tp"] * best["dp"]
            header = [
                f"one of {best['replicas']} replicas ({gpus} GPUs each): run it on each, behind a load balancer",
            ]
            for name, text in _instance_files(data, header).items():
                files[f"{mode}/{name}"] = text
            continue
        for pool in ("prefill", "decode"):
            header = [
                f"one of {data[pool]['instances']} {pool} instances ({best[f'{pool}_tp'] * best[f'{pool}_dp']} GPUs "
                f"each): run it on each host {pool.upper()}_i the router names"
            ]
            for name, text in _instance_files(data[pool], header).items():
                files[f"{mode}/{pool}/{name}"] = text
        router = data["router"]
        if "disagg_config_yaml" in router:
            files[f"{mode}/disagg_config.yaml"] = router["disagg_config_yaml"]
        files[f"{mode}/router.sh"] = _script([router["cli"]], ["pairs the pools: start it after them"], cd=True)
    files["README.md"] = readme(report, exports)
    return files


def trial_files(data: dict) -> dict[str, str]:
    """Relative path -> text of a study trial's launch files (``tuner export --format ENGINE
    --out-dir DIR``), from ``data``, the JSON that export prints: its engine_args.json, and the
    launch script and TensorRT-LLM options file of its instance, or of each pool's instance and
    the router (disaggregated), laid out as ``recommend --export`` lays out a mode's. Before
    2026-12-06 only that JSON was written (``-o FILE``), and a TensorRT-LLM trial's launch line
    named an ``extra_llm_api_options.yaml`` no command wrote: its text was a string field of the JSON."""
    files = {"engine_args.json": json.dumps(data, indent=2) + "\n"}
    if data.get("mode") != "disaggregated":
        files |= _instance_files(data, ["the trial's deployment: one instance (engine_args.json has its notes)"])
        return files
    for pool in ("prefill", "decode"):
        header = [
            f"one of {data[pool]['instances']} {pool} instances: run it on each host {pool.upper()}_i the router names"
        ]
        files |= {f"{pool}/{name}": text for name, text in _instance_files(data[pool], header).items()}
    router = data["router"]
    if "disagg_config_yaml" in router:
        files["disagg_config.yaml"] = router["disagg_config_yaml"]
    files["router.sh"] = _script([router["cli"]], ["pairs the pools: start it after them"], cd=True)
    return files


def write_exports(out: str, files: dict[str, str], flag: str = "--out") -> list[str]:
    """Write ``files`` under ``out`` (made where missing); scripts executable. Returns the paths."""
    written = []
    for relative, text in files.items():
        path = Path(out) / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            if path.suffix == ".sh":
                os.chmod(path, 0o755)
        except OSError as error:
            # refuse_out_dir checks what it can before the search; a directory that refuses
            # entries (/proc, a read-only mount) or a full disk shows only here: --out /proc/x
            # printed FileNotFoundError's traceback after the plan was searched.
            raise InvalidInputError(
                flag, f"cannot write {path}: {error.strerror or error}", f"pass another {flag} DIR"
            ) from None
        written.append(str(path))
    return written


def _predicted(row: dict, report: dict) -> list[str]:
    output_tokens_per_s = report["request_rate"] * report["gen_len"]
    lines = [
        f"- predicted mean TTFT {row['ttft_s'] * 1e3:.0f} ms (SLA {report['max_ttft_s'] * 1e3:g} ms), "
        f"mean TPOT {row['tpot_s'] * 1e3:.1f} ms (SLA {report['max_tpot_s'] * 1e3:g} ms), "
        f"end-to-end {row['e2e_latency_s']:.2f} s a request",
        f"- throughput: {report['request_rate']:g} requests/s, {output_tokens_per_s:,.0f} output tokens/s "
        f"({row['tokens_per_s_per_chip']:,.0f} a chip)",
    ]
    if row["mode"] == "disaggregated":
        lines.append(
            f"- capacity {row['capacity_rps']:.2f} requests/s ({row['limiting_pool']} pool limits it), KV transfer "
            f"{row['kv_transfer_s'] * 1e3:.2f} ms a request"
        )
    elif row.get("near_capacity"):
        lines.append(
            "- near capacity: the running batch reaches the KV cache or slots now and then (check with tuner simulate)"
        )
    return lines


def readme(report: dict, exports: dict[str, dict]) -> str:
    name = ENGINE_DISPLAY_NAMES.get(report["backend"], report["backend"])
    lines = [
        f"# {report['model']} on {report['hardware']}: {name} launch files from tuner recommend",
        "",
        f"Load: {report['request_rate']:g} requests/s (Poisson), {report['prompt_len']}-token prompts, "
        f"{report['gen_len']}-token outputs. SLA: mean TTFT <= {report['max_ttft_s']:g} s, mean TPOT <= "
        f"{report['max_tpot_s']:g} s. KV cache {report['kv_format']}.",
        "",
        f"Predicted by the cost model under {calibration_line(report['calibration'])}. The flags are the "
        "engine knobs each plan was scored with (batch limit a rank, token budget, memory fraction, KV cache "
        "and weight formats); change one and the prediction no longer holds.",
        "",
    ]
    for mode, r in report["modes"].items():
        best = r["best"]
        lines.append(f"## {mode}")
        lines.append("")
        if best is None:
            lines += [f"No plan: {r['why_none']}", ""]
            continue
        lines.append(f"{best['chips']} GPUs: {_layout(best)}, {_formats(best)}.")
        lines.append("")
        lines += _predicted(best, report)
        lines.append("")
        data = exports[mode]
        if mode == "aggregated":
            lines.append(
                f"Files: `aggregated/launch.sh` (one replica; run {best['replicas']} behind a load balancer), "
                "`aggregated/engine_args.json` (the arguments and notes, as `tuner export --format` writes them)."
            )
            notes = data["notes"]
        else:
            lines.append(
                "Files: `disaggregated/prefill/launch.sh`, `disaggregated/decode/launch.sh` (one instance each), "
                "`disaggregated/router.sh`, `disaggregated/engine_args.json`."
            )
            notes = [*data["notes"], *data["prefill"]["notes"], *data["decode"]["notes"], *data["router"]["notes"]]
        if notes:
            lines += ["", "Notes:", *(f"- {n}" for n in dict.fromkeys(notes))]
        lines.append("")
    return "\n".join(lines)
