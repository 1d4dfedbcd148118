"""`import tuner.cli` loads no heavy module: each command imports what it needs when it runs.

Every command (``tuner studies`` reading one row included) paid for importing the cost model,
Optuna's ORM models, SQLAlchemy, pydantic, rich and the exporters before it started: 1.2 s on a
2-core Xeon (``python -X importtime``). These are behaviour tests (which modules a fresh
interpreter holds), not timings; bench/bench_reads.py measures the time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tuner.cli import AUTO_CALIBRATION, DEFAULT_MAX_CHIPS, cli
from tuner.cli_help import LazyChoice

ROOT = Path(__file__).resolve().parents[2]

#: Modules a command loads only when it needs them (a prefix matches its submodules too).
HEAVY = (
    "numpy",
    "scipy",
    "matplotlib",
    "optuna",
    "optuna.storages._rdb.models",
    "sqlalchemy",
    "alembic",
    "pydantic",
    "yaml",
    "rich",
    "cost_models.analysis",
    "cost_models.calibration",
    "cost_models.deployment",
    "search_spaces",
    "tuner.export",
    "tuner.tables",
    "tuner.pareto",
    "tuner.storage",
)


def _modules_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running ``code`` (from the repository root)."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _heavy_in(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_importing_the_cli_loads_no_heavy_module() -> None:
    modules = _modules_after("import tuner.cli")
    assert "tuner.cli" in modules
    assert _heavy_in(modules) == []


def test_help_lists_every_command_without_loading_them() -> None:
    code = (
        "import contextlib, io\n"
        "from tuner.cli import main\n"
        "buffer = io.StringIO()\n"
        "with contextlib.redirect_stdout(buffer):\n"
        "    assert main(['--help']) == 0\n"
        "text = buffer.getvalue()\n"
        f"assert all(name in text for name in {sorted(cli.commands)!r}), text\n"
    )
    assert _heavy_in(_modules_after(code)) == []


def test_the_reads_and_the_cost_model_load_no_scipy_and_no_serving_model_unless_serving() -> None:
    """scipy.special (with the numpy.f2py, numpy.ma and numpy.testing its array-API layer loads)
    took ~0.35 s of every read (pareto, show, export, a resume); the percentiles and the slot
    wait import it when they first run, the fits (tuner calibrate) with scipy.optimize.

    cost_models.serving and .disaggregated (with .iteration and .ttft_percentiles: ~0.05 s of
    imports, bench/bench_reads.py) load where a serving study first needs them: the reads and a
    resume of a study without a ``serving:`` section (PaLM on TPU v4: scored and a candidate's
    breakdown made, as pareto, show and the resume do) never load them. One interpreter for both
    (each costs ~1 s of the CI's time)."""
    serving_model = ("cost_models.serving", "cost_models.disaggregated", "cost_models.iteration",
                     "cost_models.ttft_percentiles")  # fmt: skip
    modules = _modules_after(
        "import sys\n"
        "import tuner.cli, search_spaces.spec, tuner.study, tuner.pareto, tuner.tables, cost_models.metrics\n"
        "from search_spaces.spec import load_spec\n"
        "from search_spaces.space import candidate_report, compile_study, evaluate\n"
        "study = compile_study(load_spec('studies/palm-540b-tpu-v4.yaml'))\n"
        "indices = {name: v[:3] for name, v in study.space.all_indices().items()}\n"
        "assert candidate_report(study, evaluate(study, indices), 0)['params']\n"
        f"loaded = [m for m in {serving_model!r} if m in sys.modules]\n"
        "assert not loaded, f'a study without serving loaded {loaded}'\n"
        "import tuner.export\n"
        "import cost_models.serving, cost_models.disaggregated, cost_models.ttft_percentiles"
    )
    assert "cost_models.serving" in modules and "tuner.study" in modules and "search_spaces.space" in modules
    assert [m for m in modules if m == "scipy" or m.startswith("scipy.")] == []


def test_the_spelled_out_defaults_are_the_cost_models() -> None:
    from cost_models.calibration import AUTO_CALIBRATION as calibration_auto
    from cost_models.capacity import DEFAULT_MAX_CHIPS as capacity_max_chips

    assert AUTO_CALIBRATION == calibration_auto
    assert DEFAULT_MAX_CHIPS == capacity_max_chips


def _lazy_choices() -> list[tuple[str, str, LazyChoice]]:
    return [
        (name, param.name or "", param.type)
        for name, command in cli.commands.items()
        for param in command.params
        if isinstance(param.type, LazyChoice)
    ]


def test_every_lazy_choice_names_a_real_constant() -> None:
    found = _lazy_choices()
    assert {name for name, _, _ in found} >= {"analyze", "estimate", "search", "export", "recommend", "calibrate"}
    for command, param, choice in found:
        loaded = choice.choices
        assert loaded and all(isinstance(c, str) for c in loaded), (command, param, loaded)


@pytest.mark.parametrize(
    ("source", "extra", "expected"),
    [
        ("cost_models.deployments:PHASE_NAMES", ("both",), ("prefill", "decode", "both")),
        ("search_spaces.spec:SAMPLERS", (), None),
    ],
)
def test_lazy_choice_reads_its_constant_then_the_extras(source: str, extra: tuple, expected: tuple | None) -> None:
    choice = LazyChoice(source, *extra)
    if expected is None:  # the samplers: the spec's own Literal, whatever it holds
        from search_spaces.spec import SAMPLERS

        expected = (*SAMPLERS, *extra)
    assert choice.choices == expected
    assert choice.convert(expected[-1], None, None) == expected[-1]
    with pytest.raises(click.BadParameter, match="not one of"):
        choice.convert("no-such-choice", None, None)


def test_a_bad_lazy_choice_is_one_line_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    from tuner.cli import main

    code = main(["estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--phase", "middle"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "'middle' is not one of 'prefill', 'decode', 'both'" in err


def test_a_signal_recorded_while_imports_load_ends_the_command_after_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    from tuner import signals
    from tuner.cli_help import imports_loading

    monkeypatch.setattr(signals, "_started", True)  # main() has begun
    monkeypatch.setattr(signals, "EARLY", signals.StopRequest())
    with pytest.raises(SystemExit) as stopped:
        with imports_loading():
            assert signals._started is False  # the start-up handler only records now
            signals.EARLY.signum = signal.SIGTERM  # what it does when SIGTERM comes
    assert stopped.value.code == 128 + signal.SIGTERM
    assert signals._started is True
    assert (
        capsys.readouterr().err.strip()
        == "interrupted before the command started: nothing was written; run the same command again"
    )
    # No signal: nothing happens.
    monkeypatch.setattr(signals, "EARLY", signals.StopRequest())
    with imports_loading():
        pass
    assert signals._started is True
