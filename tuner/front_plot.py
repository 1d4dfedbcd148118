"""A chart of a study: every feasible trial on its first two objectives, the front marked (where
no trial is feasible yet, every scored trial faint, against the limits it misses).

A serving study (objectives ``serving.tokens_per_s_per_chip`` and ``serving.tokens_per_s_per_user``)
gets the chart serving configurations are compared on (InferenceMAX, AIConfigurator): output
tokens per second per chip against tokens per second per user, every trial drawn (infeasible and
dominated ones faint), the front's points labelled with their parallelism and load, and the TPOT
limit as the vertical line at ``1 / max_tpot_s`` tokens/s per user.
"""

from __future__ import annotations

import re
import textwrap

import matplotlib
import matplotlib.colors

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from cost_models.calibration import held_out_words
from cost_models.errors import InvalidInputError
from cost_models.metrics import METRICS
from search_spaces.space import PENALTY
from tuner.pareto import Front, is_feasible
from tuner.plot_labels import place_labels

#: The objectives that make a study's chart a serving chart: (y, x).
SERVING_AXES = ("serving.tokens_per_s_per_chip", "serving.tokens_per_s_per_user")


def write_front_plot(study: optuna.Study, front: Front, path: str) -> None:
    if len(front.objective_names) < 2:
        raise InvalidInputError("plot", "the study has one objective", "a front chart needs two or more")
    if set(SERVING_AXES) <= set(front.objective_names):
        fig = _serving_figure(study, front)
    else:
        fig = _objective_figure(study, front)
    _save(fig, path)


def _save(fig, path: str) -> None:
    try:
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        fig.savefig(path, dpi=120, format="png")
    except OSError as error:
        raise InvalidInputError("plot", f"cannot write {path}: {error.strerror}", "pass a writable path") from None
    finally:
        plt.close(fig)


#: Objectives an SLO constraint limits: the constraint's name for each.
SLO_OBJECTIVES = {
    "prefill.latency_s": "max_ttft_s",
    "serving.ttft_s": "max_ttft_s",
    "decode.step_latency_s": "max_tpot_s",
    "serving.tpot_s": "max_tpot_s",
    "serving.tpot_p99_s": "max_tpot_p99_s",
    "serving.ttft_p90_s": "max_ttft_p90_s",
    "serving.ttft_p99_s": "max_ttft_p99_s",
    "decode.cost_usd_per_million_tokens": "max_cost_usd_per_million_tokens",
    "serving.cost_usd_per_million_tokens": "max_cost_usd_per_million_tokens",
}
#: Front points labelled with their trial number at most (the rest only where labels fit).
MAX_FRONT_LABELS = 30
#: The title's line length in characters: a 10 in wide figure holds ~125 of 10-point DejaVu Sans.
TITLE_WRAP_CHARS = 115


def _axis_label(name: str, direction: str) -> str:
    unit = f" [{METRICS[name].unit}]" if name in METRICS else ""
    better = "lower" if direction == "minimize" else "higher"
    return f"{name}{unit} ({better} is better)".replace("$", r"\$")


def _limits(study: optuna.Study) -> dict:
    spec = study.user_attrs.get("spec")
    limits = spec.get("constraints", {}) if isinstance(spec, dict) else {}
    return limits if isinstance(limits, dict) else {}


def _objective_figure(study: optuna.Study, front: Front):
    """The first two objectives on log axes, every feasible trial faint and the front marked with
    trial numbers; a third objective is the points' colour (colour bar); an SLO constraint on a
    drawn objective is a dashed line with its value."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    trials = [t for t in complete if is_feasible(t)]
    names, directions = front.objective_names, front.directions
    third = len(names) >= 3
    fig, ax = plt.subplots(figsize=(10, 7), layout="constrained")
    color_range = None
    if third and trials:
        column = np.array([t.values[2] for t in trials])
        positive = column[column > 0]
        log = len(positive) == len(column) and positive.max() / positive.min() > 100
        color_range = matplotlib.colors.LogNorm() if log else matplotlib.colors.Normalize()
        color_range.autoscale(column)
    if trials:
        points = np.array([t.values[:2] for t in trials])
        if color_range is not None:
            ax.scatter(
                points[:, 0], points[:, 1], s=8, c=[t.values[2] for t in trials], cmap="viridis", norm=color_range,
                alpha=0.35, label="feasible trials",
            )  # fmt: skip
        else:
            ax.scatter(points[:, 0], points[:, 1], s=8, color="lightgray", label="feasible trials")
    if not trials:
        # No feasible trial: the completed ones drawn faint, as the serving chart draws infeasible
        # trials, so the chart shows how far they are from the limits (it was empty, and
        # matplotlib warned of a legend without artists on stderr).
        drawn = [
            t.values[:2]
            for t in complete  # (read once above)
            # (Structurally impossible candidates hold the search's penalty values: no point.)
            if t.values is not None and all(0 < abs(v) < PENALTY for v in t.values[:2])
        ]
        if drawn:
            points = np.array(drawn)
            ax.scatter(
                points[:, 0], points[:, 1], s=10, color="lightgray", alpha=0.5, marker="x",
                label="infeasible trials (none is feasible yet)",
            )  # fmt: skip
    if front.trials:
        points = np.array([t.values[:2] for t in front.trials])
        if color_range is not None:
            mappable = ax.scatter(
                points[:, 0], points[:, 1], s=40, c=[t.values[2] for t in front.trials], cmap="viridis",
                norm=color_range, edgecolors="crimson", linewidths=1.2, zorder=3, label="Pareto front (all objectives)",
            )  # fmt: skip
            fig.colorbar(mappable, ax=ax, label=_axis_label(names[2], directions[2]))
        else:
            ax.scatter(points[:, 0], points[:, 1], s=28, color="crimson", label="Pareto front", zorder=3)
    for axis, name in (("x", names[0]), ("y", names[1])):
        limit = _limits(study).get(SLO_OBJECTIVES.get(name, ""))
        if isinstance(limit, int | float) and limit > 0:
            draw = ax.axvline if axis == "x" else ax.axhline
            draw(limit, color="black", linestyle="--", linewidth=1)
            where = (limit, 1.0) if axis == "x" else (1.0, limit)
            coords = ("data", "axes fraction") if axis == "x" else ("axes fraction", "data")
            ax.annotate(
                f"{SLO_OBJECTIVES[name]} = {limit:g} {METRICS[name].unit}",
                where,
                xycoords=coords,
                textcoords="offset points",
                xytext=(-4, -12) if axis == "x" else (-4, 4),
                ha="right",
                fontsize=8,
            )
    ax.set_xlabel(_axis_label(names[0], directions[0]))
    ax.set_ylabel(_axis_label(names[1], directions[1]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    title = (
        f"{front.study_name}: {len(front.trials)} front trials of {front.n_feasible} feasible; "
        f"calibration {front.calibration}{held_out_words(front.calibration_held_out)}"
    )
    if third:
        title += f"\ncolour: {names[2]}" + (f" (+{len(names) - 3} more objectives not drawn)" if len(names) > 3 else "")
        title += "; a front point may look dominated here, it is not on the others"
    ax.set_title(_wrapped(title), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    if front.trials:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        avoid = [t.get_window_extent(renderer) for t in ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            avoid.append(legend.get_window_extent(renderer))
        labelled = front.trials[:MAX_FRONT_LABELS] if len(front.trials) > MAX_FRONT_LABELS else front.trials
        place_labels(ax, [tuple(t.values[:2]) for t in labelled], [str(t.number) for t in labelled], avoid=avoid)
    return fig


def _served_point(trial: FrozenTrial) -> tuple[float, float] | None:
    """(tokens/s/user, tokens/s/chip) of a trial's stored serving report; None where it has none
    or serves nothing (unstable, structurally impossible)."""
    estimate = trial.user_attrs.get("estimate")
    if not isinstance(estimate, dict):
        return None
    serving = estimate.get("serving")
    if not isinstance(serving, dict) or not estimate.get("structurally_valid", True):
        return None
    x, y = serving.get("tokens_per_s_per_user"), serving.get("tokens_per_s_per_chip")
    if not isinstance(x, int | float) or not isinstance(y, int | float) or not (x > 0 and y > 0):
        return None
    return float(x), float(y)


def serving_label(trial: FrozenTrial) -> str:
    """Parallelism and load of a serving trial: ``TP8 c64`` (a 1D mesh), else the mesh; the
    weight format when not 16-bit (``TP4 c128 fp8``)."""
    params = trial.params
    if "tp" in params:  # the engines' vocabulary (space.tp) has no mesh: it was drawn as "?"
        parts = [f"TP{params['tp']}"]
    else:
        mesh = str(params.get("mesh", "?"))
        match = re.fullmatch(r"(\d+)x1x1", mesh)
        parts = [f"TP{match.group(1)}" if match else mesh]
    if "concurrency" in params:
        parts.append(f"c{params['concurrency']}")
    elif "request_rate" in params:
        parts.append(f"{params['request_rate']:g} req/s")
    bits = str(params.get("weight_bits", "16"))
    if bits != "16":
        parts.append(bits if not bits.isdigit() else f"int{bits}")  # fp8 weights, int8 weights
    return " ".join(parts)


def _serving_figure(study: optuna.Study, front: Front):
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    on_front = {t.number for t in front.trials}
    groups: dict[str, list[tuple[float, float]]] = {"infeasible": [], "feasible": [], "front": []}
    labelled: list[tuple[FrozenTrial, tuple[float, float]]] = []
    for trial in complete:
        point = _served_point(trial)
        if point is None:
            continue
        if trial.number in on_front:
            groups["front"].append(point)
            labelled.append((trial, point))
        else:
            groups["feasible" if is_feasible(trial) else "infeasible"].append(point)
    fig, ax = plt.subplots(figsize=(10, 7))
    styles = {
        "infeasible": {"s": 10, "color": "lightgray", "alpha": 0.5, "marker": "x", "label": "infeasible (SLO, memory)"},
        "feasible": {"s": 14, "color": "tab:blue", "alpha": 0.3, "label": "feasible, dominated"},
        "front": {"s": 34, "color": "crimson", "zorder": 3, "label": "Pareto front"},
    }
    for name, points in groups.items():
        if points:
            xy = np.array(points)
            ax.scatter(xy[:, 0], xy[:, 1], **styles[name])  # type: ignore[arg-type]
    if labelled:
        labelled.sort(key=lambda item: item[1][0])
        xy = np.array([p for _, p in labelled])
        ax.plot(xy[:, 0], xy[:, 1], color="crimson", linewidth=1, alpha=0.6, zorder=2)
        placed: set[str] = set()
        for trial, (x, y) in labelled:
            label = serving_label(trial)
            if label in placed:  # the same configuration with another engine knob: one label
                continue
            placed.add(label)
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    spec = study.user_attrs.get("spec")
    limits = spec.get("constraints", {}) if isinstance(spec, dict) else {}
    max_tpot = limits.get("max_tpot_s") if isinstance(limits, dict) else None
    if isinstance(max_tpot, int | float) and max_tpot > 0:
        slo = 1.0 / max_tpot
        ax.axvline(slo, color="black", linestyle="--", linewidth=1)
        ax.axvspan(0, slo, color="gray", alpha=0.08)
        ax.annotate(
            f"TPOT limit {max_tpot * 1e3:g} ms\n= {slo:g} tokens/s/user",
            (slo, 1.0),
            xycoords=("data", "axes fraction"),
            textcoords="offset points",
            xytext=(4, -24),
            fontsize=8,
        )
    ax.set_xlabel("interactivity: output tokens/s per user (1 / TPOT) [tokens/s/user]")
    ax.set_ylabel("throughput: output tokens/s per chip [tokens/s/chip]")
    workload = spec.get("workload", {}) if isinstance(spec, dict) else {}
    shape = f"; ISL {workload.get('prompt_len')} / OSL {workload.get('gen_len')}" if isinstance(workload, dict) else ""
    title = f"{front.study_name}{shape}; calibration {front.calibration}"
    title += held_out_words(front.calibration_held_out)
    ax.set_title(_wrapped(title), fontsize=10)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    return fig


def _wrapped(title: str) -> str:
    """The title as matplotlib draws it: each line wrapped at :data:`TITLE_WRAP_CHARS` (the
    calibration's held-out errors, tuner.study.calibration_held_out, ran a one-line title off both
    edges of the figure) at spaces only (not inside a profile name like h100-sxm-vllm), its own line
    breaks kept, ``$`` shown as itself (not mathtext)."""
    lines = title.replace("$", r"\$").split("\n")
    wrapped = (textwrap.wrap(line, TITLE_WRAP_CHARS, break_on_hyphens=False) or [""] for line in lines)
    return "\n".join(part for parts in wrapped for part in parts)
