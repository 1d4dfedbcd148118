"""The matplotlib charts: front charts of 2- and 3-objective studies and the roofline write PNGs,
with units and SLO lines, and none of their text labels collide."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cost_models.analysis import analyze_one
from search_spaces.spec import load_spec
from tuner import front_plot
from tuner.pareto import load_study, study_front
from tuner.plot_labels import overlapping_texts
from tuner.roofline_plot import roofline_figure, write_roofline_plot
from tuner.study import run_search

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", params=["llama-2-70b-h100", "palm-540b-tpu-v4"])
def study(request, tmp_path_factory: pytest.TempPathFactory):
    """A 2-objective study with TTFT/TPOT limits, and the 3-objective PaLM study."""
    url = f"sqlite:///{tmp_path_factory.mktemp('charts') / 'c.db'}"
    run_search(load_spec(str(REPO / "studies" / f"{request.param}.yaml")), url, trials=150)
    return load_study(request.param, url)


def test_front_chart_png_units_slo_and_labels_that_do_not_collide(study, tmp_path: Path, monkeypatch) -> None:
    front = study_front(study)
    path = tmp_path / "front.png"
    front_plot.write_front_plot(study, front, str(path))
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 20_000

    saved = {}
    monkeypatch.setattr(front_plot, "_save", lambda fig, p: saved.update(fig=fig))
    front_plot.write_front_plot(study, front, str(path))
    fig = saved["fig"]
    ax = fig.axes[0]
    assert "[s]" in ax.get_xlabel() and "[chip-s/token]" in ax.get_ylabel()
    labels = {t.get_text() for t in ax.texts}
    assert any(text.isdigit() for text in labels)  # trial numbers on front points
    if len(front.objective_names) == 2:  # decode.step_latency_s is limited by max_tpot_s: 0.05
        assert [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"] == [0.05]
        assert "max_tpot_s = 0.05 s" in labels
    else:  # the third objective is the colour, with a colour bar
        assert len(fig.axes) == 2 and "prefill.latency_s" in fig.axes[1].get_ylabel()
        assert "colour: prefill.latency_s" in ax.get_title()
    # The profile and its held-out error, wrapped inside the figure (one line ran off both edges).
    title = ax.get_title()
    assert f"calibration {front.calibration}" in " ".join(title.split()) and "held-out error" in title
    assert all(len(line) <= front_plot.TITLE_WRAP_CHARS for line in title.splitlines())
    assert overlapping_texts(ax) == []
    plt.close(fig)


@pytest.mark.parametrize(
    ("hardware", "phase", "batch"), [("h100-sxm", "decode", 8), ("a100-80gb", "prefill", 1), ("tpu-v4", "decode", 64)]
)
def test_roofline_png_every_roof_labelled_and_no_collisions(hardware: str, phase: str, batch: int, tmp_path) -> None:
    report = analyze_one("llama-2-7b", hardware, phase=phase, batch=batch, seq_len=1024)
    path = tmp_path / "roofline.png"
    write_roofline_plot(report, str(path))
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 20_000
    fig = roofline_figure(report)
    ax = fig.axes[0]
    assert "[ops/byte]" in ax.get_xlabel() and "[ops/s]" in ax.get_ylabel()
    texts = " ".join(t.get_text() for t in ax.texts)
    from cost_models.hardware import get_hardware

    for name, peak in get_hardware(hardware).peak_ops_per_s.model_dump().items():
        if peak:
            assert name in texts  # every roof named, those sharing a peak in one label
    assert overlapping_texts(ax) == []
    assert 1 <= sum(1 for t in ax.texts if "%" in t.get_text()) <= 6  # a few operators labelled
    plt.close(fig)


def test_a_front_chart_of_no_feasible_trial_draws_the_infeasible_ones(tmp_path: Path, monkeypatch) -> None:
    # A TPOT limit no deployment meets (0.1 ms): `tuner pareto --plot` wrote an empty chart and
    # matplotlib's "No artists with labels found to put in legend" warning on stderr; the serving
    # chart already draws infeasible trials faint, so this one does too when none is feasible.
    spec = load_spec(str(REPO / "studies" / "llama-2-70b-h100.yaml"))
    spec = spec.model_copy(update={"constraints": spec.constraints.model_copy(update={"max_tpot_s": 1e-4})})
    url = f"sqlite:///{tmp_path / 'n.db'}"
    # TPE: it still stores candidates that cannot exist (random and NSGA-II draw none since
    # 2026-12-06, tests/tuner/test_random_valid_draws.py), whose penalty values must not be drawn.
    run_search(spec, url, trials=200, sampler="tpe")
    study = load_study(spec.name, url)
    front = study_front(study)
    assert front.n_feasible == 0
    saved = {}
    monkeypatch.setattr(front_plot, "_save", lambda fig, p: saved.update(fig=fig))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        front_plot.write_front_plot(study, front, str(tmp_path / "front.png"))
    ax = saved["fig"].axes[0]
    drawn = np.concatenate([c.get_offsets() for c in ax.collections])
    # Every trial but the structurally impossible ones (their penalty values, 1e30, are no point).
    scored = [t for t in study.trials if max(t.values) < 1e29]
    assert 0 < len(scored) < 200 and len(drawn) == len(scored) and drawn.max() < 1e3
    assert "infeasible" in ax.get_legend().get_texts()[0].get_text()
    plt.close(saved["fig"])
