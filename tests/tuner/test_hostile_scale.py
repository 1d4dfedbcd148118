"""Regressions for the hostile inputs of the scale issue not pinned elsewhere: a mesh of 10^21
chips, 5,000-character study names and paths, control characters in what an error line repeats."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import assert_one_error_line, run_cli

SPEC = """\
name: hostile
model: llama-3-8b
hardware: h100-sxm
workload: {prompt_len: 128, gen_len: 16}
space: {SPACE}
objectives: [{metric: decode.step_latency_s}]
"""


@pytest.mark.parametrize(
    "space",
    [
        '{chips: [1], mesh: ["999999999999999999999x1x1"], batch: [1]}',
        '{chips: [999999999999999999999], mesh: ["999999999999999999999x1x1"], batch: [1]}',
        "{chips: [999999999999999999999], batch: [1]}",
    ],
)
def test_a_mesh_of_10_to_the_21_chips_is_one_line_not_a_hang(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], space: str
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("{SPACE}", space), encoding="utf-8")
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", f"sqlite:///{tmp_path / 's.db'}")
    assert_one_error_line(code, out, err, ("mesh", "chips"))


LONG = "n" * 5_000


@pytest.mark.parametrize(
    "args",
    [
        ("pareto", LONG),
        ("show", LONG, "1"),
        ("export", LONG, "--trial", "1"),
        ("pareto", "x", "--storage", f"sqlite:////tmp/{LONG}.db"),
        ("studies", "--storage", f"sqlite:////tmp/{LONG}.db"),
    ],
)
def test_5000_character_names_and_paths_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *args)
    line = assert_one_error_line(code, out, err, ("storage", "study"))
    assert "Traceback" not in err and len(line) < 400


def test_5000_character_storage_path_for_a_search_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("{SPACE}", "{chips: [1], batch: [1, 2]}"), encoding="utf-8")
    for url in (f"sqlite:///{tmp_path}/{LONG}.db", f"sqlite:///{tmp_path}/{LONG}/s.db"):
        code, out, err = run_cli(capsys, "search", str(spec), "--storage", url)
        line = assert_one_error_line(code, out, err, ("storage",))
        assert "File name too long" in line and "shorter path" in line


def test_control_characters_in_an_error_line_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that carries terminal escape sequences is repeated in the error, made harmless."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "pareto", "\x1b[31mred\x1b]0;title\x07")  # studies/<name>.db
    line = assert_one_error_line(code, out, err, ("storage",))
    assert "\x1b" not in err and "\x07" not in err and "\\x1b[31mred" in line
    code, out, err = run_cli(capsys, "pareto", "x", "--storage", "sqlite:///\x1b[2Jwipe.db")
    line = assert_one_error_line(code, out, err, ("storage",))
    assert "\x1b" not in err and "\\x1b[2Jwipe.db" in line


@pytest.mark.parametrize(
    "args",
    [
        ("export", "hostile", "--trial", "0", "-o"),
        ("report", "hostile", "-o"),
        ("pareto", "hostile", "--plot"),
        ("init", "--model", "llama-3-8b", "--hardware", "h100-sxm", "-o"),
    ],
    ids=["export", "report", "pareto-plot", "init"],
)
@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_5000_character_output_path_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], where: str
) -> None:
    """``-o`` or ``--plot`` naming a 5,000-character file (or folder): Linux refuses a name over
    NAME_MAX = 255 bytes with ENAMETOOLONG, which ``Path.exists()`` raises instead of answering
    False; export -o and init -o printed that OSError's 30-line traceback, exit 1."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("{SPACE}", "{chips: [1], batch: [1, 2]}"), encoding="utf-8")
    assert run_cli(capsys, "search", str(spec), "--storage", url)[0] == 0
    output = tmp_path / (f"{LONG}.out" if where == "file" else f"{LONG}/x.out")
    storage = () if args[0] == "init" else ("--storage", url)
    code, out, err = run_cli(capsys, *args, str(output), *storage)
    line = assert_one_error_line(code, out, err, ("-o", "--plot", "output"))
    assert "File name too long" in line and "shorter path" in line and len(line) < 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db", "s.db.lock", "s.db.search.lock", "spec.yaml"]


def test_control_characters_in_a_studies_table_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file in studies/ named with an escape sequence (``esc\\x1b[31m.db``, not a database): the
    table's row for it repeated the name raw in its storage and error cells, and the terminal
    turned the rest of the table red. ``--json`` was already safe (json escapes it)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    spec = tmp_path / "studies" / "hostile.yaml"
    spec.write_text(SPEC.replace("{SPACE}", "{chips: [1], batch: [1, 2]}"), encoding="utf-8")
    assert run_cli(capsys, "search", str(spec))[0] == 0  # studies/hostile.db, beside the bad file
    (tmp_path / "studies" / "esc\x1b[31m.db").write_bytes(b"x\x1b]0;title\x07")
    code, out, err = run_cli(capsys, "studies")
    assert code == 0 and err == ""
    assert "\x1b" not in out and "\x07" not in out
    assert "esc\\x1b[31m.db" in out and "not a SQLite database" in out


def test_control_characters_in_a_study_name_are_escaped_in_the_front_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A study made by Optuna directly (no spec, so no name check) named with an escape
    sequence: pareto's table title repeated it raw ('Best 3 of 3 feasible trials of evil\\x1b[31mred')."""
    import optuna

    url = f"sqlite:///{tmp_path / 's.db'}"
    name = "evil\x1b[31mred"
    study = optuna.create_study(study_name=name, storage=url)
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=3)
    code, out, err = run_cli(capsys, "pareto", name, "--storage", url)
    assert code == 0, err
    assert "\x1b" not in out and "evil\\x1b[31mred" in out
