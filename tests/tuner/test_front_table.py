"""What a person sees in ``tuner pareto``: constant dimensions in a header line, objectives in
human units (never ``e+09``), each row's room under its constraints, a table that fits 120
columns, and a single-objective study's best configurations in full."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from tuner import tables
from tuner.cli import main
from tuner.pareto import load_study, study_front

REPO = Path(__file__).resolve().parents[2]


def _search(spec: Path, url: str, trials: int) -> None:
    assert main(["search", str(spec), "--storage", url, "--trials", str(trials), "--sampler", "random", "--json"]) == 0


def _render(front, width: int = 120) -> str:
    buffer = io.StringIO()
    tables.print_front(front, Console(file=buffer, width=width, soft_wrap=False, color_system=None))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def palm(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('palm') / 'p.db'}"
    _search(REPO / "studies" / "palm-540b-tpu-v4.yaml", url, 300)
    return url


@pytest.fixture(scope="module")
def serving(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('serving') / 's.db'}"
    _search(REPO / "studies" / "llama-3.1-70b-h100-serving.yaml", url, 150)
    return url


def test_shipped_front_in_units_without_exponents(palm: str) -> None:
    text = _render(study_front(load_study("palm-540b-tpu-v4", palm)))
    assert "e+" not in text and "e-0" not in text and "Top/s" not in text
    assert "[ms]" in text and "[chip-s/token]" in text  # the step latency in ms, the cost in its unit
    # each row's share of the chip's memory (the fits constraint; not "of HBM": L4s and L40Ss have GDDR6)
    assert "memory of capacity" in text and "% " in text


def test_constant_dimensions_are_in_the_header_line(palm: str) -> None:
    front = study_front(load_study("palm-540b-tpu-v4", palm))
    text = _render(front)
    rows = [tables._choices(t) for t in front.trials]
    constant = [p for p in rows[0] if len({str(r[p]) for r in rows}) == 1]
    assert constant, "a 300-trial palm front has some dimension equal on every row"
    header = text.splitlines()[0]
    # Shared by the front's trials, not constant in the space (which varies more than the front).
    assert header.startswith("same on every front trial: ")
    for p in constant:
        assert f"{tables._label(p)} {rows[0][p]}" in header


@pytest.mark.parametrize("width", [120, 80])
def test_the_table_fits_the_console(palm: str, serving: str, width: int) -> None:
    for name, url in (("palm-540b-tpu-v4", palm), ("llama-3.1-70b-h100-serving", serving)):
        text = _render(study_front(load_study(name, url)), width)
        assert max(len(line) for line in text.splitlines()) <= width
        if width == 120:
            assert "…" not in text  # no cell cut short


def test_constraint_room_of_each_row(serving: str) -> None:
    front = study_front(load_study("llama-3.1-70b-h100-serving", serving))
    text = _render(front)
    assert "TTFT" in text and "TPOT" in text and "limit" in text  # headers (wrapped when narrow)
    ttft = [t.constraints["max_ttft_s"] + 2.0 for t in front.trials]  # the TTFT each row has
    assert all(0 < v <= 2.0 for v in ttft)
    assert all(f"{tables._plain(v)} s" in text for v in ttft)
    tpot = [(t.constraints["max_tpot_s"] + 0.1) * 1e3 for t in front.trials]  # in ms: 100 ms limit
    assert all(f"{tables._plain(v)} ms" in text for v in tpot)


def test_plain_numbers_never_use_exponents() -> None:
    for value, shown in (
        (6.005e9, "6,005,000,000"),
        (12345.6, "12,346"),
        (21.0567, "21.06"),
        (0.0104812, "0.01048"),
        (2.3456e-5, "0.00002346"),
        (-0.5, "-0.5"),
        (0.0, "0"),
    ):
        assert tables._plain(value) == shown
    assert tables._unit_of([0.021, 0.08], "s") == ("ms", 1e-3)
    assert tables._unit_of([1.5, 0.2], "s") == ("s", 1.0)
    assert tables._unit_of([6.005e9], "B") == ("GB", 1e9)


def test_single_objective_study_lists_its_best_configurations(tmp_path: Path) -> None:
    spec = yaml.safe_load((REPO / "studies" / "palm-540b-tpu-v4.yaml").read_text())
    spec["name"] = "palm-one"
    spec["objectives"] = [{"metric": "decode.cost_chip_s_per_token"}]
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{tmp_path / 'one.db'}"
    _search(path, url, 200)
    front = study_front(load_study("palm-one", url))
    assert len(front.trials) == 1 and len(front.best) == 10
    costs = [t.values[0] for t in front.best]
    assert costs == sorted(costs) and front.best[0].values == front.trials[0].values
    text = _render(front)
    assert text.splitlines()[0].lstrip().startswith("Best 10 of")
    assert "same on every front trial:" not in text  # every dimension of every configuration, in full
    for t in front.best:
        assert str(t.number) in text and t.params["mesh"] in text
    for header in ("chips", "mesh", "batch", "block"):
        assert header in text


def test_json_front_carries_the_tables_constraint_columns(serving: str, capsys) -> None:
    """The table shows each front row's TTFT and TPOT under load beside the SLO; pareto --json
    had only the objectives, so a script could not read the SLO room the table printed. Each
    row's values are those `tuner show` recomputes for the trial (its serving section)."""
    import json

    assert main(["pareto", "llama-3.1-70b-h100-serving", "--storage", serving, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows
    for row in rows[:5]:
        assert main(["show", "llama-3.1-70b-h100-serving", str(row["trial"]), "--storage", serving]) == 0
        shown = json.loads(capsys.readouterr().out)["estimate"]["serving"]
        assert row["constraints"]["max_ttft_s"] == {"value": pytest.approx(shown["ttft_s"], rel=1e-9), "limit": 2.0}
        assert row["constraints"]["max_tpot_s"] == {"value": pytest.approx(shown["tpot_s"], rel=1e-9), "limit": 0.1}


def test_the_shipped_llama_3_1_study_exports_the_llama_3_1_checkpoint(serving: str, capsys) -> None:
    """studies/llama-3.1-70b-h100-serving.yaml named the catalog's llama-3-70b, so every export
    of its front launched meta-llama/Meta-Llama-3-70B (Llama 3, 8K context), not the Llama-3.1-70B
    the study is about (Hugging Face: meta-llama/Llama-3.1-70B)."""
    import json

    front = study_front(load_study("llama-3.1-70b-h100-serving", serving))
    trial = str(front.trials[0].number)
    args = ["export", "llama-3.1-70b-h100-serving", "--trial", trial, "--storage", serving]
    assert main([*args, "--format", "trtllm"]) == 0
    assert json.loads(capsys.readouterr().out)["engine_args"]["model"] == "meta-llama/Llama-3.1-70B"
    assert main([*args, "--format", "vllm"]) == 0
    assert json.loads(capsys.readouterr().out)["cli"].startswith("vllm serve meta-llama/Llama-3.1-70B ")


def test_a_study_with_no_trial_says_so_not_relax_the_constraints(tmp_path: Path) -> None:
    # A study with no trial yet (its search stopped before its first write: a full disk, a
    # signal) used to print "no feasible trial yet: relax the constraints or widen the space".
    import sqlite3

    url = f"sqlite:///{tmp_path / 'p.db'}"
    _search(REPO / "studies" / "palm-540b-tpu-v4.yaml", url, 1)
    with sqlite3.connect(tmp_path / "p.db") as db:
        db.execute("DELETE FROM trials")
    text = _render(study_front(load_study("palm-540b-tpu-v4", url)))
    assert "relax the constraints" not in text
    assert "no trial yet" in text and "tuner search" in text


def test_a_cost_limit_is_shown_in_dollars_not_seconds(tmp_path: Path) -> None:
    """A priced study's cost objective and limit are dollars per million tokens: the header read
    ``serving cost usd per million tokens`` and a limit of $2 was drawn as ``2 s``. One H100 at
    $2.49 an hour serving 20 requests/s x 128 tokens: 2.49 / 3600 / 2560 x 1e6 = $0.2702."""
    spec = {
        "name": "priced-front",
        "model": "llama-3-8b",
        "hardware": "h100-sxm",
        "workload": {"prompt_len": 1024, "gen_len": 128},
        "space": {"tp": [1, 2]},
        "serving": {"request_rate": [20.0]},
        "objectives": [{"metric": "serving.cost_usd_per_million_tokens"}, {"metric": "serving.tpot_s"}],
        "constraints": {"max_cost_usd_per_million_tokens": 2.0},
        "price_per_chip_hour_usd": 2.49,
        "backend": "vllm",
    }
    path = tmp_path / "priced.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'priced.db'}"
    _search(path, url, 2)
    text = _render(study_front(load_study("priced-front", url)))
    assert "serving cost [USD/M tokens]" in text
    assert "cost of 2 USD/M tokens limit" in text
    one_chip = [line.split() for line in text.splitlines() if line.split()[1:3] == ["1", "1"]]  # chips 1, tp 1
    assert len(one_chip) == 1 and one_chip[0][3] == "0.2702"
