"""``tuner report``: one self-contained HTML page of a study, readable offline.

The page holds Optuna's own interactive charts (Plotly) — the Pareto front with infeasible trials
shown, the parallel coordinates of the choices, each objective's parameter importances and
optimization history — then the front as a table in human units (from the metric registry) and
every front point's breakdown (the stored ``estimate``) folded in ``<details>``.

plotly.js is embedded once (the first figure carries it, the others reuse it), so the page needs
no network. A large study is thinned before drawing: every front trial is kept and the others are
sampled (seeded, so the page is reproducible) down to ``max_points``; the table and the header
count every trial. Thinned reads too: from a database whose points table holds every complete
trial, only the front, each complete trial's number, feasibility and objectives (the points
table), then the drawn trials are read whole (:func:`_read_drawn`); any other study is read
whole, then thinned.

Parameter importances use Optuna's :class:`~optuna.importance.PedAnovaImportanceEvaluator`:
Optuna's default (fANOVA) and mean-decrease-impurity evaluators need scikit-learn, which this
project does not depend on.
"""

from __future__ import annotations

import copy
import html
import json
import math
import time
import warnings
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from cost_models.calibration import held_out_words
from cost_models.deployments import stored_chips
from cost_models.errors import InvalidInputError
from cost_models.metrics import METRICS
from tuner import compact, optuna_internals
from tuner.constraints import is_feasible, study_constraint_names, trial_constraints
from tuner.pareto import Front, study_front
from tuner.tables import _plain, _unit_of

#: Trials drawn in the charts at most (the front always, the rest sampled): about 0.8 kB of page
#: per point (Optuna's hover text), plus 4.8 MB of plotly.js once.
DEFAULT_MAX_POINTS = 3000
#: Trials drawn in the parallel coordinates: Optuna draws one trace per trial (0.7 kB each, and
#: slow to render by the thousand).
DEFAULT_MAX_LINES = 300

#: Sections of a trial's stored estimate shown in its breakdown, in this order.
BREAKDOWN_SECTIONS = ("prefill", "decode", "memory", "serving")


@dataclass(frozen=True)
class ReportResult:
    path: str
    bytes: int
    n_trials: int
    n_drawn: int
    n_front: int
    figures: int
    elapsed_s: float


def _require_plotly() -> None:
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise InvalidInputError(
            "report",
            "plotly is not installed",
            "pip install 'transformer-deploy-tuner[report]' (or pip install plotly)",
        ) from None


# ---------------------------------------------------------------------------------------------
# Numbers in human units


def format_value(value: Any, unit: str) -> str:
    """``value`` in ``unit`` (a :data:`cost_models.metrics.METRICS` unit) for a person: seconds as
    s/ms/µs, bytes as GiB/MiB, fractions as percent, large rates with an SI prefix."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return html.escape(str(value))
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if unit == "s":
        for factor, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if abs(v) >= factor:
                return f"{v / factor:.3g} {name}"
        return f"{v / 1e-9:.3g} ns" if v else "0 s"
    if unit == "B":
        for factor, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(v) >= factor:
                return f"{v / factor:.3g} {name}"
        return f"{v:.0f} B"
    if unit == "fraction":
        return f"{v * 100:.3g} %"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.3g} {prefix}{unit}".rstrip()
    if isinstance(value, int):
        return f"{value} {unit}".rstrip()
    return f"{v:.4g} {unit}".rstrip()


def unit_of_key(key: str) -> str:
    """The unit of an estimate field from its name (``latency_s``, ``kv_cache_bytes_per_chip``,
    ``mfu``, ``tokens_per_s_per_user``, ...)."""
    if key in METRICS:
        return METRICS[key].unit
    if "bytes" in key:
        return "B"
    if key in ("mfu",) or key.endswith(("_mfu", "_fraction", "_utilization", "_rate")):
        return "fraction"
    if "tokens_per_s_per_user" in key:
        return "tokens/s/user"
    if "tokens_per_s_per_chip" in key:
        return "tokens/s/chip"
    if "tokens_per_s" in key:
        return "tokens/s"
    if "chip_s_per_token" in key:
        return "chip-s/token"
    if key.endswith(("_s", "_s_p99", "_p99_s")):
        return "s"
    if key.endswith("_tokens"):
        return "tokens"
    return ""


def metric_label(name: str) -> str:
    """``decode.step_latency_s [s]``: an objective's name with its unit."""
    return f"{name} [{METRICS[name].unit}]" if name in METRICS else name


# ---------------------------------------------------------------------------------------------
# The trials drawn


class _DrawnStudy(optuna.Study):
    """A study seen through a subset of its trials: what Optuna's plots read (``get_trials``,
    ``trials``), everything else from the study (a ``Study`` for Optuna's ``isinstance`` checks;
    its storage, directions and names are the study's). The trials keep their numbers; their user
    attributes (the large stored estimate, which Optuna's hover text would repeat per point) are
    dropped, and of the system attributes only the constraints are kept."""

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]) -> None:  # no super(): a view
        self._study = study
        self._trials = trials

    def __getattr__(self, name: str) -> Any:  # only for what the view does not set: the study's
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return [t for t in self._trials if states is None or t.state in states]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


def _light(trial: FrozenTrial) -> FrozenTrial:
    """A copy of ``trial`` without its stored breakdown (which Optuna would repeat in each drawn
    point's hover text), keeping its constraints."""
    lean = copy.copy(trial)
    lean.user_attrs = {}
    lean.system_attrs = {k: v for k, v in trial.system_attrs.items() if k.startswith("constraints")}
    return lean


def drawn_numbers(numbers: list[int], on_front: set[int], max_points: int, seed: int = 0) -> set[int]:
    """The numbers of the trials the charts draw, of the complete trials ``numbers`` (in trial
    order): every front trial's (``on_front``), and the others sampled (seeded: the ``room``
    positions numpy's ``Generator.choice`` draws among them in trial order) so that at most
    ``max_points`` are drawn (more only when the front alone is larger). Numbers, not trials: the
    same sample whether the trials were all loaded (:func:`drawn_trials`) or only their numbers
    were read (:func:`_read_drawn`)."""
    rest = [n for n in numbers if n not in on_front]
    room = max(max_points - len(on_front), 0)
    if len(rest) > room:
        picks = np.random.default_rng(seed).choice(len(rest), size=room, replace=False)
        rest = [rest[i] for i in sorted(picks)]
    return set(rest) | on_front


def drawn_trials(complete: list[FrozenTrial], front: Front, max_points: int, seed: int = 0) -> list[FrozenTrial]:
    """The trials the charts draw, in trial order: every front trial, and the others sampled
    (seeded, :func:`drawn_numbers`) so that at most ``max_points`` are drawn (more only when the
    front alone is larger)."""
    keep = drawn_numbers([t.number for t in complete], {t.number for t in front.trials}, max_points, seed)
    return [_light(t) for t in complete if t.number in keep]


@dataclass(frozen=True)
class _Points:
    """Every complete trial with finite objectives, in trial order: numbers, feasibility and
    objective values (n, objectives). What the history charts' "best feasible so far" reads."""

    numbers: np.ndarray
    feasible: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, complete: list[FrozenTrial], n_objectives: int) -> _Points:
        ordered = sorted(complete, key=lambda t: t.number)
        return cls(
            np.array([t.number for t in ordered], dtype=np.int64),
            np.array([is_feasible(t) for t in ordered], dtype=bool),
            np.array([t.values for t in ordered], dtype=np.float64).reshape(len(ordered), n_objectives),
        )


def _read_drawn(
    study: optuna.Study, max_points: int, max_lines: int, seed: int
) -> tuple[Front, list[FrozenTrial], list[FrozenTrial], _Points] | None:
    """``(front, drawn, lines, points)`` read as the page needs them, or None where the study is
    not in a database whose points table holds every complete trial (then it is read whole).

    The front as ``tuner pareto`` reads it (:func:`tuner.pareto.study_front`: the feasible points,
    then the front's trials whole); every complete trial's id, number, feasibility (as scored) and
    objectives from the points table; then only the drawn trials that are not on the front, whole
    (made whole as the study's storage makes them: :func:`tuner.pareto.load_study`). The sample is
    :func:`drawn_numbers` over the same trials in the same order as a whole read, so the page is
    the one a whole read draws. A 111,450-trial study took 203 s, 188 of them reading and
    recomputing every trial (Optuna's ``get_trials``) before 3,000 were drawn; a 30,000-trial
    one 36.2 s, 7.4-8.4 s this way, the page byte for byte the same (README; 2-core VM, one core,
    load 4-6, 2026-12-06). What is left of those seconds (cProfile): loading and recomputing the
    3,300 drawn trials (3.2 s) and drawing (4.3 s, 1.4 of it importing optuna.visualization)."""
    storage = optuna_internals.rdb_storage(study)
    if storage is None:
        return None
    study_id = storage.get_study_id_from_name(study.study_name)
    n_objectives = len(study.directions)
    rows = optuna_internals.complete_point_rows(storage, study_id, n_objectives)
    if rows is None:
        return None
    # (A trial another worker completes between the two reads can be on the front and not among
    # the rows: it is in the front table and the breakdowns, not in the charts.)
    front = study_front(study)
    ids, numbers, feasible, values = rows
    finite = np.all(np.isfinite(values), axis=1)
    points = _Points(numbers[finite], feasible[finite], values[finite])
    order = points.numbers.tolist()
    id_of = dict(zip(order, ids[finite].tolist(), strict=True))
    on_front = {t.number: t for t in front.trials}
    keep = drawn_numbers(order, set(on_front), max_points, seed)
    keep_lines = drawn_numbers(order, set(on_front), min(max_lines, max_points), seed)
    wanted = sorted(n for n in keep | keep_lines if n in id_of and n not in on_front)
    loaded = optuna_internals.trials_by_id(storage, [id_of[n] for n in wanted])
    hydrator = compact.hydrator_for(study.user_attrs)
    if hydrator is not None:  # a study loaded without tuner's view: compact trials made whole here
        loaded = hydrator.hydrate(loaded)
    whole = {**{t.number: t for t in loaded}, **on_front}
    drawn = [_light(whole[n]) for n in order if n in keep]
    lines = [_light(whole[n]) for n in order if n in keep_lines]
    return front, drawn, lines, points


def _finite(trial: FrozenTrial) -> bool:
    return trial.values is not None and all(math.isfinite(v) for v in trial.values)


# ---------------------------------------------------------------------------------------------
# Figures


def _figures(drawn: optuna.Study, lines: optuna.Study, every: _Points, front: Front) -> list[tuple[str, str, Any]]:
    """(id, heading, plotly figure) of every chart; a chart Optuna cannot draw for this study is
    left out (its heading says why in the page)."""
    from optuna import visualization as vis
    from optuna.importance import PedAnovaImportanceEvaluator

    names = front.objective_names
    labels = [metric_label(n) for n in names]
    out: list[tuple[str, str, Any]] = []
    # With no feasible trial Optuna logs "[W ...] Your study does not have any completed and
    # feasible trials." on stderr beside the report's own line; the chart's heading says it here.
    none_feasible = "; no feasible trial yet: every point is grey" if front.n_feasible == 0 else ""
    with optuna_internals.pareto_front_warnings_silenced():
        if len(names) in (2, 3):
            fig = vis.plot_pareto_front(drawn, target_names=labels)
            heading = "Pareto front (infeasible trials grey; hover a point for its trial)"
            out.append(("pareto", heading + none_feasible, fig))
        elif len(names) > 3:
            fig = vis.plot_pareto_front(drawn, targets=lambda t: t.values[:3], target_names=labels[:3])
            out.append(("pareto", "Pareto front on the first three objectives" + none_feasible, fig))
    fig = vis.plot_parallel_coordinate(lines, target=lambda t: t.values[0], target_name=labels[0])
    n_lines = len(lines.get_trials(deepcopy=False))
    out.append(("parallel", f"Choices and {labels[0]} (parallel coordinates, {n_lines} trials)", fig))
    for i, direction in enumerate(front.directions):
        sign = 1.0 if direction == "minimize" else -1.0
        target = _objective(i, sign)
        try:
            with warnings.catch_warnings():  # "computes importances for low target values": it does
                warnings.simplefilter("ignore", UserWarning)
                fig = vis.plot_param_importances(
                    drawn, evaluator=PedAnovaImportanceEvaluator(), target=target, target_name=labels[i]
                )
        except (ValueError, RuntimeError) as error:  # too few trials, a single-valued space
            out.append((f"importance-{i}", f"Parameter importances for {labels[i]}: not computed ({error})", None))
        else:
            out.append((f"importance-{i}", f"Parameter importances for {labels[i]} (PED-ANOVA)", fig))
    for i in range(len(names)):
        out.append((f"history-{i}", f"Optimization history of {labels[i]}", _history(drawn, every, i, front)))
    return out


def _history(drawn: optuna.Study, every: _Points, i: int, front: Front) -> Any:
    """Objective ``i`` by trial number (Optuna's ``plot_optimization_history`` needs every trial
    number present, so a thinned study cannot use it): the drawn trials, feasible and not, and the
    best feasible value so far over every trial."""
    import plotly.graph_objects as go

    fig = go.Figure()
    trials = drawn.get_trials(deepcopy=False)
    for feasible, style in ((False, {"color": "#bbb", "symbol": "x"}), (True, {"color": "#1f77b4"})):
        chosen = [t for t in trials if is_feasible(t) == feasible]
        fig.add_scatter(
            x=[t.number for t in chosen],
            y=[t.values[i] for t in chosen],
            mode="markers",
            marker={"size": 4, **style},
            name="feasible" if feasible else "infeasible",
        )
    maximize = front.directions[i] == "maximize"
    values = every.values[every.feasible, i]
    if len(values):
        # A step wherever a feasible trial beats every earlier feasible one (strictly).
        lower = -values if maximize else values
        better = np.ones(len(values), dtype=bool)
        better[1:] = lower[1:] < np.minimum.accumulate(lower)[:-1]
        best_numbers = every.numbers[every.feasible][better].tolist()
        best_values = values[better].tolist()
        last = int(every.numbers.max())
        fig.add_scatter(
            x=[*best_numbers, last],
            y=[*best_values, best_values[-1]],
            mode="lines",
            line={"shape": "hv", "color": "crimson"},
            name="best feasible so far",
        )
    fig.update_layout(xaxis_title="trial", yaxis_title=metric_label(front.objective_names[i]))
    return fig


def _objective(i: int, sign: float) -> Callable[[FrozenTrial], float]:
    def target(trial: FrozenTrial) -> float:
        value = trial.values[i] if trial.values is not None else math.nan
        return sign * value

    return target


# ---------------------------------------------------------------------------------------------
# Tables


def _params(trial: FrozenTrial) -> dict:
    from search_spaces.space import scored_params

    deployment = trial.user_attrs.get("deployment")
    serving = trial.user_attrs.get("serving")  # a disaggregated trial's chips: every pool's
    chips = {"chips": stored_chips(deployment, serving)} if isinstance(deployment, dict) else {}
    return {**chips, **scored_params(trial.params, serving)}


def front_table(front: Front) -> str:
    """The front as an HTML table: trial, the choices that vary along the front, objectives in
    human units (the raw value in each cell's title)."""
    rows = [_params(t) for t in front.trials]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    varying = [k for k in keys if len({json.dumps(r.get(k), default=str) for r in rows}) > 1]
    # One unit per objective column, chosen from its values as the terminal's front table does
    # (tuner.tables._unit_of), named in the header and used by every cell: the header said the
    # registry's "[s]" over cells each in its own unit ("21.1 ms").
    units = [
        _unit_of([t.values[i] for t in front.trials], METRICS[n].unit if n in METRICS else "")
        for i, n in enumerate(front.objective_names)
    ]
    head = ["trial", *varying]
    head += [
        f"{n}{f' [{unit}]' if unit else ''} ({'min' if d == 'minimize' else 'max'})"
        for n, d, (unit, _) in zip(front.objective_names, front.directions, units, strict=True)
    ]
    lines = ['<table id="front" class="front"><thead><tr>']
    lines += [f"<th>{html.escape(h)}</th>" for h in head]
    lines.append("</tr></thead><tbody>")
    for t, r in zip(front.trials, rows, strict=True):
        cells = [f'<td><a href="#trial-{t.number}">{t.number}</a></td>']
        cells += [f"<td>{html.escape(str(r.get(k, '')))}</td>" for k in varying]
        for value, (_, factor) in zip(t.values, units, strict=True):
            cells.append(f'<td class="num" title="{value!r}">{_plain(value / factor)}</td>')
        lines.append(f'<tr data-trial="{t.number}">' + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    if not front.trials:
        lines.append("<p>No feasible trial yet: relax the constraints or widen the space.</p>")
    return "\n".join(lines)


def _section_table(section: dict) -> str:
    rows = []
    for key, value in section.items():
        if isinstance(value, dict | list):
            shown = html.escape(json.dumps(value, default=str))
        else:
            shown = format_value(value, unit_of_key(key))
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{shown}</td></tr>")
    return '<table class="kv">' + "".join(rows) + "</table>"


def breakdown(trial: FrozenTrial, constraint_names: list[str] | None) -> str:
    """One front trial's stored estimate, section by section, folded in ``<details>``."""
    estimate = trial.user_attrs.get("estimate")
    parts = [f'<details class="trial" id="trial-{trial.number}"><summary>trial {trial.number}: ']
    parts.append(html.escape(", ".join(f"{k}={v}" for k, v in _params(trial).items())) + "</summary>")
    constraints = trial_constraints(trial, constraint_names)
    if constraints:
        parts.append('<div class="sections"><div><h4>constraints (&le; 0 holds)</h4>')
        parts.append(_section_table(constraints) + "</div>")
    else:
        parts.append('<div class="sections">')
    if isinstance(estimate, dict):
        for name in BREAKDOWN_SECTIONS:
            section = estimate.get(name)
            if isinstance(section, dict):
                parts.append(f"<div><h4>{name}</h4>{_section_table(section)}</div>")
        others = {
            k: v
            for k, v in estimate.items()
            if k not in BREAKDOWN_SECTIONS and k != "params" and not isinstance(v, dict)
        }
        if others:
            parts.append(f"<div><h4>other</h4>{_section_table(others)}</div>")
    else:
        parts.append("<p>no stored estimate</p>")
    parts.append("</div></details>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# The page

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
h4 { margin: .3em 0; font-size: .9em; color: #555; }
table { border-collapse: collapse; font-size: .85em; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.front th { background: #f4f4f4; position: sticky; top: 0; }
.sections { display: flex; flex-wrap: wrap; gap: 1.5em; margin: .5em 0 1em 1em; }
details.trial summary { cursor: pointer; font-size: .9em; }
.note { color: #666; font-size: .9em; }
h3 { font-size: .95em; margin: 1.2em 0 .2em; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 0 1em; }
.grid.pareto, .grid.parallel { grid-template-columns: 1fr; }
"""


def render_report(
    study: optuna.Study, *, max_points: int = DEFAULT_MAX_POINTS, max_lines: int = DEFAULT_MAX_LINES, seed: int = 0
) -> tuple[str, dict]:
    """The page's HTML and a few counts (trials, drawn, front, figures)."""
    _require_plotly()
    read = _read_drawn(study, max_points, max_lines, seed)
    if read is not None:
        front, drawn_list, lines_list, points = read
    else:  # in memory, or trials the points table does not hold: every trial read whole
        every = study.get_trials(deepcopy=False)  # read once: a storage read is most of the time
        front = study_front(_DrawnStudy(study, every))
        complete = [t for t in every if t.state == TrialState.COMPLETE and _finite(t)]
        drawn_list = drawn_trials(complete, front, max_points, seed)
        lines_list = drawn_trials(complete, front, min(max_lines, max_points), seed)
        points = _Points.of(complete, len(front.directions))
    drawn = _DrawnStudy(study, drawn_list)
    lines = _DrawnStudy(study, lines_list)
    figures = _figures(drawn, lines, points, front) if drawn_list else []
    n_complete = len(points.numbers)

    spec = study.user_attrs.get("spec")
    title = f"Study {study.study_name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>",
        f"{front.n_trials} complete trials, {front.n_feasible} feasible, {len(front.trials)} on the Pareto front; "
        f"calibration {html.escape(front.calibration + held_out_words(front.calibration_held_out))}. ",
        "Objectives: "
        + ", ".join(
            html.escape(f"{metric_label(n)} ({'lower' if d == 'minimize' else 'higher'} is better)")
            for n, d in zip(front.objective_names, front.directions, strict=True)
        )
        + ".</p>",
    ]
    if len(drawn_list) < n_complete:
        parts.append(
            f'<p class="note">The charts draw {len(drawn_list)} of {n_complete} trials: every front trial '
            f"and a random sample of the others (seed {seed}); the parallel coordinates at most {max_lines}. "
            "The table below is the whole front.</p>"
        )
    if isinstance(spec, dict):
        shown = {k: spec[k] for k in ("model", "hardware", "workload", "constraints", "sampler") if k in spec}
        parts.append(f'<p class="note">Spec: <code>{html.escape(json.dumps(shown, default=str))}</code></p>')
    parts.append("<h2>Pareto front</h2>")
    parts.append(front_table(front))
    n_figures = 0
    plotly_included = False
    group = ""
    for fig_id, heading, fig in figures:
        kind = fig_id.split("-")[0]  # importance-0, importance-1, ...: side by side in one grid
        if kind != group:
            if group:
                parts.append("</div>")
            parts.append(f'<div class="grid {kind}">')
            group = kind
        parts.append(f'<div class="cell"><h3>{html.escape(heading)}</h3>')
        if fig is not None:
            full = kind in ("pareto", "parallel")
            fig.update_layout(height=620 if kind == "pareto" else 480 if full else 380, margin={"t": 40, "l": 40})
            if not full:
                fig.update_layout(title=None)
            parts.append(
                fig.to_html(
                    full_html=False,
                    include_plotlyjs=not plotly_included,
                    div_id=f"fig-{fig_id}",
                    config={"displaylogo": False, "responsive": True},
                )
            )
            plotly_included = True
            n_figures += 1
        parts.append("</div>")
    if group:
        parts.append("</div>")
    parts.append("<h2>Front trials: breakdowns</h2>")
    names = study_constraint_names(study.user_attrs)
    parts += [breakdown(t, names) for t in front.trials]
    parts.append(
        '<p class="note">Made by <code>tuner report</code>; the feasible set follows '
        "Optuna's constraint convention (every constraint &le; 0).</p></body></html>"
    )
    counts = {"n_trials": n_complete, "n_drawn": len(drawn_list), "n_front": len(front.trials), "figures": n_figures}
    return "\n".join(parts), counts


def write_report(
    study: optuna.Study,
    path: str,
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    max_lines: int = DEFAULT_MAX_LINES,
    seed: int = 0,
) -> ReportResult:
    start = time.perf_counter()
    for flag, value in (("max-points", max_points), ("max-lines", max_lines)):
        if value < 1:
            raise InvalidInputError(flag, f"must be at least 1, got {value}", "pass a positive number")
    page, counts = render_report(study, max_points=max_points, max_lines=max_lines, seed=seed)
    data = page.encode("utf-8")
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as error:
        raise InvalidInputError("output", f"cannot write {path}: {error.strerror}", "pass a writable path") from None
    return ReportResult(path, len(data), elapsed_s=time.perf_counter() - start, **counts)


__all__ = [
    "DEFAULT_MAX_POINTS",
    "ReportResult",
    "drawn_numbers",
    "drawn_trials",
    "format_value",
    "render_report",
    "write_report",
]
