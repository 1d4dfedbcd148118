"""A chart of a study: every feasible trial on its first two objectives, the front marked."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
from optuna.trial import TrialState

from cost_models.errors import InvalidInputError
from tuner.pareto import Front, is_feasible


def write_front_plot(study: optuna.Study, front: Front, path: str) -> None:
    if len(front.objective_names) < 2:
        raise InvalidInputError("plot", "the study has one objective", "a front chart needs two or more")
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if is_feasible(t)]
    fig, ax = plt.subplots(figsize=(8, 6))
    if trials:
        points = np.array([t.values[:2] for t in trials])
        ax.scatter(points[:, 0], points[:, 1], s=8, color="lightgray", label="feasible trials")
    if front.trials:
        points = np.array([t.values[:2] for t in front.trials])
        ax.scatter(points[:, 0], points[:, 1], s=24, color="crimson", label="Pareto front", zorder=3)
        for t, (x, y) in zip(front.trials, points, strict=True):
            ax.annotate(str(t.number), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    for axis, name in ((ax.set_xlabel, front.objective_names[0]), (ax.set_ylabel, front.objective_names[1])):
        axis(name.replace("$", r"\$"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(f"{front.study_name}".replace("$", r"\$"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=120, format="png")
    except OSError as error:
        raise InvalidInputError("plot", f"cannot write {path}: {error.strerror}", "pass a writable path") from None
    finally:
        plt.close(fig)
