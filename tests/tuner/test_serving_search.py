"""Serving studies end to end: a small study searched into SQLite, its front re-scored by calling
``serve()`` directly on each trial's stored deployment and workload, the serving metrics in
``tuner metrics --json``, ``tuner show``/``export`` reading the serving report, and the
tokens/s/chip against tokens/s/user chart."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from cli_helpers import run_cli
from cost_models.calibration import resolve_calibration
from cost_models.deployments import Deployment, Deployments
from cost_models.errors import InvalidInputError
from cost_models.serving import make_workloads, serve
from tuner.constraints import is_feasible
from tuner.pareto import load_study, study_front
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LIMITS = {"max_ttft_s": 0.5, "max_tpot_s": 0.02, "max_tpot_p99_s": 0.025}
STUDY: dict = {
    "name": "serving-e2e",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"chips": [1, 2], "mesh": ["1x1x1", "2x1x1"], "weight_bits": [16, "fp8"]},
    "serving": {"concurrency": [1, 8, 64, 512], "max_num_tokens": [2048, 8192], "chunked_prefill": [True, False]},
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.tokens_per_s_per_user"}],
    "constraints": {"fits": True, **LIMITS},
    "backend": "trtllm",
    "sampler": "exhaustive",
}


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path_factory.mktemp('serving')}/serving.db"
    result = run_search(copy.deepcopy(STUDY), url)
    assert result.trials_added == 2 * 2 * 4 * 2 * 2
    return url, load_study(STUDY["name"], url)


def rescored(study: optuna.Study, trial: optuna.trial.FrozenTrial):
    """``serve()`` called directly on what the trial stored (its deployment and workload row)."""
    deployment = Deployment.from_dict(trial.user_attrs["deployment"])
    row = trial.user_attrs["serving"]
    load = (
        {"concurrency": row["concurrency"]} if row["concurrency"] is not None else {"request_rate": row["request_rate"]}
    )
    knobs = {k: v for k, v in row.items() if k not in ("concurrency", "request_rate", "mode", "engine")}
    workloads = make_workloads(backend=row["engine"], **load, **knobs)
    profile = resolve_calibration(study.user_attrs["calibration_profile"], deployment.hardware.name)
    return serve(Deployments.from_rows([deployment]), workloads, calibration=profile)


def test_every_front_trial_meets_the_slas_when_rescored(searched) -> None:
    _, study = searched
    front = study_front(study)
    assert len(front.trials) >= 2
    for trial in front.trials:
        result = rescored(study, trial)
        assert bool(result.stable[0]) and bool(result.fits[0])
        assert result.ttft_s[0] <= LIMITS["max_ttft_s"]
        assert result.tpot_s[0] <= LIMITS["max_tpot_s"]
        assert result.tpot_p99_s[0] <= LIMITS["max_tpot_p99_s"]
        assert trial.values == pytest.approx([result.tokens_per_s_per_chip[0], result.tokens_per_s_per_user[0]])


def test_the_slas_decide_feasibility(searched) -> None:
    """Re-scored, a trial is feasible exactly when it is stable, fits and meets every limit."""
    _, study = searched
    trials = study.get_trials(deepcopy=False)
    verdicts = set()
    for trial in trials:
        result = rescored(study, trial)
        meets = (
            bool(result.stable[0])
            and bool(result.fits[0])
            and result.ttft_s[0] <= LIMITS["max_ttft_s"]
            and result.tpot_s[0] <= LIMITS["max_tpot_s"]
            and result.tpot_p99_s[0] <= LIMITS["max_tpot_p99_s"]
        )
        valid = trial.user_attrs["estimate"]["structurally_valid"]
        assert is_feasible(trial) == (meets and valid), trial.number
        verdicts.add(is_feasible(trial))
    assert verdicts == {True, False}  # the limits bite: the study has both


def test_trials_store_the_workload_and_the_serving_report(searched) -> None:
    _, study = searched
    trial = study_front(study).trials[0]
    row = trial.user_attrs["serving"]
    assert row["concurrency"] == trial.params["concurrency"]
    assert row["max_num_tokens"] == trial.params["max_num_tokens"]
    assert row["chunked_prefill"] is trial.params["chunked_prefill"]
    assert row["request_rate"] is None and row["prompt_len"] == 1024.0
    report = trial.user_attrs["estimate"]["serving"]
    assert report["tokens_per_s_per_chip"] == pytest.approx(trial.values[0])
    assert report["stable"] is True


def test_unsustainable_open_loop_rates_are_infeasible(tmp_path: Path) -> None:
    spec = copy.deepcopy(STUDY)
    spec["name"] = "serving-open"
    spec["serving"] = {"request_rate": [1.0, 1e5]}
    spec["constraints"] = {"fits": True}
    url = f"sqlite:///{tmp_path}/open.db"
    run_search(spec, url)
    study = load_study("serving-open", url)
    for trial in study.get_trials(deepcopy=False):
        stable = trial.user_attrs["estimate"]["serving"]["stable"]
        assert (trial.constraints["stable"] <= 0) == stable
        assert stable == (trial.params["request_rate"] == 1.0)
        assert is_feasible(trial) == stable
    assert {t.params["request_rate"] for t in study_front(study).trials} == {1.0}


def test_a_search_scores_a_token_budget_below_the_batch_as_simulated(tmp_path: Path) -> None:
    """A study scores each trial through serve(): a vLLM trial whose 64-token budget cannot decode
    its 128 sequences at once (serving.token_limit) gets the throughput the simulation measures
    (1416 against 1422 tok/s; it was scored 17.5 tok/s, running all 128 with one prefill token an
    iteration), and the 8192-token one keeps all 128 running."""
    from cost_models.serving_simulation import simulate_one

    spec = copy.deepcopy(STUDY)
    spec |= {"name": "serving-budget", "backend": "vllm", "workload": {"prompt_len": 1024, "gen_len": 256}}
    spec["space"] = {"chips": [1], "mesh": ["1x1x1"], "weight_bits": [16]}
    spec["serving"] = {"concurrency": [128], "max_num_tokens": [64, 8192], "max_batch_size": [128]}
    spec["constraints"] = {"fits": True}
    url = f"sqlite:///{tmp_path}/budget.db"
    run_search(spec, url)
    trials = {t.params["max_num_tokens"]: t for t in load_study("serving-budget", url).get_trials(deepcopy=False)}
    small, large = (trials[k].user_attrs["estimate"]["serving"] for k in (64, 8192))
    assert small["running"] < 16 and large["running"] == 128
    sim = simulate_one(
        "llama-3-8b",
        "h100-sxm",
        chips=1,
        concurrency=128,
        prompt_len=1024,
        gen_len=256,
        backend="vllm",
        max_num_tokens=64,
        max_batch_size=128,
    )["simulated"]
    assert small["tokens_per_s_per_chip"] == pytest.approx(sim["steady_tokens_per_s"], rel=0.05)


def test_an_unstable_trials_export_names_its_unbounded_slas(tmp_path: Path) -> None:
    """The SLA constraints of a load the deployment cannot sustain hold the search's penalty: the
    refusal said max_ttft_s (1e+30 > 0); it says what that stands for."""
    from tuner.export import export

    spec = copy.deepcopy(STUDY)
    spec["name"] = "serving-unstable"
    spec["serving"] = {"request_rate": [1e5]}
    spec["constraints"] = {"fits": True, "max_ttft_s": 2.0}
    url = f"sqlite:///{tmp_path}/unstable.db"
    run_search(spec, url)
    study = load_study("serving-unstable", url)
    with pytest.raises(InvalidInputError) as info:
        export(study, 0, "json")
    assert "max_ttft_s (unbounded: the load is unstable)" in str(info.value) and "1e+30" not in str(info.value)


def test_metrics_json_lists_the_serving_metrics(capsys) -> None:
    code, out, _ = run_cli(capsys, "metrics", "--json")
    assert code == 0
    by_name = {m["name"]: m for m in json.loads(out)}
    expected = {
        "serving.ttft_s": ("s", "minimize"),
        "serving.tpot_s": ("s", "minimize"),
        "serving.tpot_p99_s": ("s", "minimize"),
        "serving.e2e_latency_s": ("s", "minimize"),
        "serving.tokens_per_s": ("tokens/s", "maximize"),
        "serving.tokens_per_s_per_chip": ("tokens/s/chip", "maximize"),
        "serving.tokens_per_s_per_user": ("tokens/s/user", "maximize"),
        "serving.max_concurrency": ("sequences", "maximize"),
    }
    for name, (unit, direction) in expected.items():
        assert (by_name[name]["unit"], by_name[name]["direction"], by_name[name]["needs_serving"]) == (
            unit,
            direction,
            True,
        )
    assert by_name["decode.step_latency_s"]["needs_serving"] is False


def test_show_and_export_read_the_serving_report(searched, capsys) -> None:
    url, study = searched
    number = study_front(study).trials[0].number
    code, out, _ = run_cli(capsys, "show", STUDY["name"], str(number), "--storage", url)
    assert code == 0
    shown = json.loads(out)
    assert shown["estimate"]["serving"]["tpot_s"] <= LIMITS["max_tpot_s"]
    code, out, _ = run_cli(
        capsys, "export", STUDY["name"], "--trial", str(number), "--storage", url, "--format", "yaml"
    )
    assert code == 0
    exported = yaml.safe_load(out)
    assert exported["predicted"]["serving"]["stable"] is True
    assert exported["serving"]["concurrency"] == study.trials[number].params["concurrency"]


def test_cli_search_prints_the_front_and_pareto_draws_the_serving_chart(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "serving.yaml"
    spec.write_text(yaml.safe_dump(copy.deepcopy(STUDY)), encoding="utf-8")
    url = f"sqlite:///{tmp_path}/cli.db"
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url)
    assert code == 0, err
    assert "Pareto front of serving-e2e" in out and "concurrency" in out and "[tokens/s/chip]" in out
    plot = tmp_path / "front.png"
    code, out, err = run_cli(capsys, "pareto", STUDY["name"], "--storage", url, "--plot", str(plot))
    assert code == 0, err
    assert plot.read_bytes()[:8] == PNG_SIGNATURE and plot.stat().st_size > 10_000


def test_the_serving_chart_axes_and_slo_line(searched, tmp_path: Path, monkeypatch) -> None:
    """The chart puts tokens/s/user on x and tokens/s/chip on y, the TPOT limit at 1/max_tpot_s,
    and labels front points with their parallelism and load."""
    import matplotlib.figure

    from tuner import front_plot

    _, study = searched
    front = study_front(study)
    saved = {}
    monkeypatch.setattr(front_plot, "_save", lambda fig, path: saved.update(fig=fig, path=path))
    front_plot.write_front_plot(study, front, str(tmp_path / "x.png"))
    fig = saved["fig"]
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert "tokens/s/user" in ax.get_xlabel() and "tokens/s/chip" in ax.get_ylabel()
    vertical = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert vertical == pytest.approx([1 / LIMITS["max_tpot_s"]])
    labels = {t.get_text() for t in ax.texts}
    first = front.trials[0]
    assert f"c{first.params['concurrency']}" in " ".join(labels)
    assert any(text.startswith("TP") for text in labels)
    front_x = np.array([t.values[1] for t in front.trials])
    assert np.all(front_x >= 1 / LIMITS["max_tpot_s"] - 1e-9)  # nothing on the front breaks the TPOT limit
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.mark.parametrize("load", [{"request_rate": [5.0, 20.0]}, {"concurrency": [1024]}])
def test_a_trials_static_sections_are_tuner_estimates_under_its_load(tmp_path: Path, capsys, load) -> None:
    """A serving study without a batch scores its static sections (prefill, decode, memory) at
    the steady state's running batch, as tuner estimate under the same load does: show and the
    export read the same numbers as estimate. An open-loop trial's were at one sequence (20 req/s
    on one H100 runs about 39: prefill 12.9 ms in the study, 801 ms in estimate), and clients
    beyond max_concurrency were all counted in the batch."""
    spec = copy.deepcopy(STUDY)
    spec["name"] = "serving-static"
    spec["space"] = {
        "chips": [1, 2],
        "mesh": ["1x1x1", "1x1x2"],
        "prefill_ffn_layout": ["ws_1d"],
        "decode_ffn_layout": ["ws_1d"],
        "flash_attention": [True],
    }
    spec["serving"] = load
    spec["constraints"] = {"fits": True}
    spec["backend"] = "vllm"
    url = f"sqlite:///{tmp_path}/static.db"
    run_search(spec, url)
    study = load_study("serving-static", url)
    for trial in study.get_trials(deepcopy=False):
        code, out, err = run_cli(capsys, "show", "serving-static", str(trial.number), "--storage", url)
        assert code == 0, err
        shown = json.loads(out)["estimate"]
        params = trial.params
        rate = ("--request-rate", str(params["request_rate"])) if "request_rate" in params else ()
        clients = ("--concurrency", str(params["concurrency"])) if "concurrency" in params else ()
        code, out, err = run_cli(
            capsys,
            "estimate",
            *("--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", str(shown["params"]["chips"])),
            *("--mesh", params["mesh"], "--ffn-layout", "ws_1d", "--flash-attention", "--backend", "vllm"),
            *("--prompt-len", "1024", "--gen-len", "128", *rate, *clients, "--json"),
        )
        assert code == 0, err
        alone = json.loads(out)
        assert alone["batch"] > 1
        for section in ("prefill", "decode", "memory"):
            assert shown[section] == pytest.approx(alone[section]), section
        code, out, err = run_cli(capsys, "export", "serving-static", "--trial", str(trial.number), "--storage", url)
        assert code == 0, err
        assert json.loads(out)["batch"] == alone["batch"]


def test_the_serving_chart_labels_a_tp_study_with_its_tp(tmp_path: Path, monkeypatch) -> None:
    """A serving study in the engines' vocabulary (space.tp, no mesh) had every front point
    labelled "? c16 int4": the label read the mesh alone. Its trials carry tp."""
    from tuner import front_plot

    data = copy.deepcopy(STUDY)
    data["name"] = "serving-tp"
    data["space"] = {"tp": [1, 2], "weight_bits": [16, "fp8"]}
    url = f"sqlite:///{tmp_path}/tp.db"
    run_search(data, url)
    study = load_study(data["name"], url)
    front = study_front(study)
    saved = {}
    monkeypatch.setattr(front_plot, "_save", lambda fig, path: saved.update(fig=fig))
    front_plot.write_front_plot(study, front, str(tmp_path / "x.png"))
    labels = [t.get_text() for t in saved["fig"].axes[0].texts if not t.get_text().startswith("TPOT limit")]
    assert labels and not any("?" in text for text in labels), labels
    assert {text.split()[0] for text in labels} <= {"TP1", "TP2"}
    import matplotlib.pyplot as plt

    plt.close(saved["fig"])
