"""What a user sees is whole and true: help summaries, memory fit in analyze, database drivers."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli
from cost_models.analysis import analyze_one
from tuner.cli import cli
from tuner.storage import storage_error


@pytest.mark.parametrize("columns", ["60", "80", "200"])
def test_no_command_summary_is_cut(capsys: pytest.CaptureFixture[str], monkeypatch, columns: str) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    code, out, err = run_cli(capsys, "--help")
    assert code == 0, err
    commands = out.split("Commands:", 1)[1]
    assert not [line for line in commands.splitlines() if line.rstrip().endswith("...")], out
    listing = "".join(commands.split())  # wrapped at spaces or after hyphens
    for name, command in cli.commands.items():
        summary = "".join((command.short_help or (command.help or "").split("\n\n")[0]).split())
        assert summary in listing, (name, summary)


def test_analyze_says_the_footprint_does_not_fit_and_what_would(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("analyze", "--model", "llama-2-70b", "--hardware", "h100-sxm", "--phase", "decode")
    code, out, err = run_cli(capsys, *args, "--batch", "8", "--seq-len", "2048", "--calibration", "none")
    assert code == 0, err
    text = " ".join(out.split())
    assert "does not fit on one h100-sxm: 143 GB > 85.5 GB" in text  # 81,559 MiB (nvidia-smi) = 85.52e9 B
    assert "needs >= 2 chips" in text and "8-bit weights (--weight-bits 8 or fp8)" in text
    assert "calibration: none" in text  # the assumption is stated


def test_analyze_fit_numbers_follow_from_the_footprint() -> None:
    report = analyze_one("llama-2-70b", "a100-40gb", phase="decode", batch=1, seq_len=2048, calibration="none")
    memory, fit = report["totals"]["memory_bytes"], report["memory_fit"]
    assert not fit["fits"] and fit["capacity_bytes"] < memory["total"]
    split, room = memory["weights"] + memory["kv_cache"], fit["capacity_bytes"] - memory["activations"]
    n = fit["chips_needed"]
    assert split / n <= room < split / (n - 1)  # the fewest chips that hold it
    assert fit["weight_bits_that_fit"] == ["4"]  # int8 (69 GB) is still too big for 40 GB; no fp8 on A100
    quarter = analyze_one(
        "llama-2-70b", "a100-40gb", phase="decode", batch=1, seq_len=2048, weight_bits=4, calibration="none"
    )
    assert quarter["memory_fit"]["fits"]


def test_analyze_fits_when_it_fits(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("analyze", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--phase", "decode", "--batch", "1")
    code, out, err = run_cli(capsys, *args, "--seq-len", "128", "--json")
    assert code == 0, err
    assert json.loads(out)["memory_fit"] == {"capacity_bytes": 81559 * 2**20, "fits": True}  # nvidia-smi's 81,559 MiB


@pytest.mark.parametrize(
    "url, module, install",
    [
        ("postgresql://u:secret@h/db", "psycopg", "postgresql+psycopg2:// and pip install psycopg2-binary"),
        ("postgresql+psycopg2://u:secret@h/db", "psycopg2", "pip install psycopg2-binary"),
        ("mysql://u:secret@h/db", "MySQLdb", "pip install mysqlclient"),
        ("mysql+pymysql://u:secret@h/db", "pymysql", "pip install pymysql"),
        ("mariadb://u:secret@h/db", "MySQLdb", "pip install mysqlclient"),
        ("mssql+pyodbc://u:secret@h/db", "pyodbc", "pip install pyodbc"),
        ("oracle+oracledb://u:secret@h/db", "oracledb", "pip install oracledb"),
        ("sqlite:///studies/x.db", "sqlite3", "built into Python"),
        ("mysql+asyncmy://u:secret@h/db", "asyncmy", "driver asyncmy for mysql"),
    ],
)
def test_each_dialect_is_told_its_own_driver(url: str, module: str, install: str) -> None:
    error = storage_error(ImportError("no module"), url)
    text = str(error)
    assert f"Python module {module} is not installed" in text and install in text, text
    assert error.exit_code == 1 and "secret" not in text
    if not url.startswith("postgresql"):
        assert "psycopg" not in text, text


def test_unknown_dialect_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "studies", "--storage", "cockroachdb://u:secret@h/db")
    assert code == 2 and out == ""
    assert "unknown database type 'cockroachdb'" in err and "secret" not in err
