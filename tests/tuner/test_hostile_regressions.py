"""Pinned reproductions of hostile inputs from the scale issue's list: each now gets one line and
a non-zero exit, never a silent coercion, a thrown-away study or a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import assert_one_error_line, run_cli

SPEC = """\
name: hostile
model: llama-3-8b
hardware: h100-sxm
workload: {prompt_len: 128, gen_len: 16}
space: {chips: [1], batch: [1, 2]}
objectives: [{metric: decode.step_latency_s}]
"""


def _spec(tmp_path: Path, text: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_key_written_twice_is_refused_not_last_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path, SPEC.replace("name: hostile\n", "name: hostile\nname: other\n"))
    code, out, err = run_cli(capsys, "search", spec, "--storage", f"sqlite:///{tmp_path}/s.db")
    line = assert_one_error_line(code, out, err, ("spec",))
    assert "'name' is written twice at line 2" in line
    assert not (tmp_path / "s.db").exists() or (tmp_path / "s.db").stat().st_size == 0


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (
            {"space: {chips: [1], batch: [1, 2]}": 'space: {chips: [1], batch: [1, 2], flash_attention: ["yes"]}'},
            "flash",
        ),
        ({"objectives:": 'constraints: {max_ttft_s: "1.0"}\nobjectives:'}, "max_ttft_s"),
    ],
)
def test_strings_are_not_coerced_into_numbers_or_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: dict, field: str
) -> None:
    text = SPEC
    for old, new in edit.items():
        text = text.replace(old, new)
    code, out, err = run_cli(capsys, "search", _spec(tmp_path, text), "--storage", f"sqlite:///{tmp_path}/s.db")
    line = assert_one_error_line(
        code, out, err, ("spec.yaml.space.flash_attention.0", "spec.yaml.constraints.max_ttft_s")
    )
    assert field in line


def test_a_whole_number_limit_is_still_a_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path, SPEC.replace("objectives:", "constraints: {max_ttft_s: 1}\nobjectives:"))
    code, _, err = run_cli(capsys, "search", spec, "--storage", f"sqlite:///{tmp_path}/s.db", "--json")
    assert code == 0, err


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
def test_an_in_memory_database_is_refused_before_searching(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, out, err = run_cli(capsys, "search", _spec(tmp_path, SPEC), "--storage", url)
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "in-memory database" in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("args", [("export", "hostile", "--trial"), ("show", "hostile")])
def test_a_trial_number_beyond_the_database_integers_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    code, out, err = run_cli(capsys, *args, "99999999999999999999999", "--storage", f"sqlite:///{tmp_path}/s.db")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "99999999999999999999999 is more than 9223372036854775807" in err


def test_one_corrupt_database_does_not_hide_the_other_studies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    spec = (tmp_path / "studies" / "hostile.yaml").as_posix()
    Path(spec).write_text(SPEC, encoding="utf-8")
    assert run_cli(capsys, "search", spec, "--json")[0] == 0
    (tmp_path / "studies" / "broken.db").write_text("garbage", encoding="utf-8")
    code, out, err = run_cli(capsys, "studies", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["study"] for r in rows] == [None, "hostile"]
    assert "not a SQLite database" in rows[0]["error"] and rows[1]["trials"] == 2


def test_a_studies_glob_in_a_missing_directory_is_refused_not_an_empty_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A typo in the directory matched no file and printed "no studies found", exit 0.
    missing = tmp_path / "no-such-dir"
    code, out, err = run_cli(capsys, "studies", "--storage", f"sqlite:///{missing}/*.db")
    line = assert_one_error_line(code, out, err, ("--storage",))
    assert f"no directory {missing}" in line
    # An existing directory with no study is an empty list, as is the default glob where tuner
    # runs in a directory without studies/ (nothing searched there yet).
    code, out, err = run_cli(capsys, "studies", "--storage", f"sqlite:///{tmp_path}/*.db", "--json")
    assert code == 0 and json.loads(out) == []
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "studies", "--json")
    assert code == 0 and json.loads(out) == []


def test_no_studies_is_one_line_naming_where_it_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table printed an empty frame (a title and seven column headers) and then "no studies
    found", without saying where it looked."""
    glob = f"sqlite:///{tmp_path}/*.db"
    code, out, err = run_cli(capsys, "studies", "--storage", glob)
    assert code == 0, err
    assert out == f"no studies found in {glob}; tuner search SPEC creates one (its --storage says where)\n"


@pytest.mark.parametrize("command", ["export", "report"])
def test_an_output_that_is_the_studys_own_database_is_refused_even_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """``-o`` naming the database the study is read from (a slip of tab completion) with
    ``--force`` used to overwrite it: 'wrote x.db', and the study was gone ('file is not a
    database')."""
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    code, _, err = run_cli(capsys, "search", _spec(tmp_path, SPEC), "--storage", url, "--trials", "2")
    assert code == 0, err
    before = db.read_bytes()
    args = ["export", "hostile", "--trial", "0"] if command == "export" else ["report", "hostile"]
    for output in (str(db), f"{tmp_path}/./s.db"):
        code, out, err = run_cli(capsys, *args, "--storage", url, "-o", output, "--force")
        line = assert_one_error_line(code, out, err, ("-o",))
        assert "database" in line
    assert db.read_bytes() == before


DAMAGE_SPEC = """\
name: damaged
model: llama-3-8b
hardware: h100-sxm
workload: {prompt_len: 128, gen_len: 16}
space: {chips: [1], batch: [1, 2, 4, 8, 16, 32, 64, 128]}
objectives: [{metric: decode.step_latency_s}, {metric: decode.cost_chip_s_per_token}]
sampler: exhaustive
"""


def _damaged_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str], sql: str) -> tuple[str, list]:
    """Two copies of an 8-trial study under studies/; ``sql`` (with ``{number}``, the first
    trial of the front) run on the second: bytes inside a record overwritten, which SQLite's page
    checks do not see. The damaged copy's URL and the good copy's front (``pareto --json``)."""
    import shutil
    import sqlite3

    folder = tmp_path / "studies"
    folder.mkdir()
    good, bad = folder / "a-good.db", folder / "b-damaged.db"
    assert run_cli(capsys, "search", _spec(tmp_path, DAMAGE_SPEC), "--storage", f"sqlite:///{good}", "--json")[0] == 0
    capsys.readouterr()
    code, out, err = run_cli(capsys, "pareto", "damaged", "--storage", f"sqlite:///{good}", "--json")
    assert code == 0, err
    front = json.loads(out)
    shutil.copy(good, bad)
    with sqlite3.connect(bad) as connection:
        assert connection.execute(sql.format(number=front[0]["trial"])).rowcount == 1
    connection.close()
    return f"sqlite:///{bad}", front


def test_a_points_blob_of_another_length_reads_the_values_from_optunas_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator's study whose objectives blob (16 bytes for 2 objectives) had been cut to 2
    bytes: `pareto` and `tuner studies` over the folder ended in numpy's traceback ("buffer size
    must be a multiple of element size"), and the good study beside it was not listed. Optuna's
    trial_values hold the same values: the front is read from them, the same as the good copy's."""
    bad, front = _damaged_pair(
        tmp_path, capsys, "UPDATE tuner_trial_points SET objectives = x'0001' WHERE number = {number}"
    )
    code, out, err = run_cli(capsys, "pareto", "damaged", "--storage", bad, "--json")
    assert code == 0 and json.loads(out) == front, err
    code, out, err = run_cli(capsys, "studies", "--storage", f"sqlite:///{tmp_path}/studies/*.db", "--json")
    assert code == 0, err
    assert [(row["study"], row["trials"], row["front_size"]) for row in json.loads(out)] == [
        ("damaged", 8, len(front)),
        ("damaged", 8, len(front)),
    ]


@pytest.mark.parametrize("index", ["1e30", "-3", "8"], ids=["1e30", "negative", "one-past-the-space"])
def test_a_configuration_index_outside_the_space_is_one_damaged_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], index: str
) -> None:
    """The tuner writes each trial's configuration index inside its space (8 configurations
    here: 0..7). One overwritten to 1e30 made pareto, show and export end in an OverflowError
    traceback; -3 was read by numpy as the third from the end, another configuration shown
    without a word. Now: one line naming the file as damaged, exit 1 (the environment)."""
    sql = f"UPDATE trial_params SET param_value = {index} WHERE trial_id = "
    sql += "(SELECT trial_id FROM trials WHERE number = {number})"
    bad, front = _damaged_pair(tmp_path, capsys, sql)
    number = front[0]["trial"]
    for command in (
        ("pareto", "damaged", "--json"),
        ("show", "damaged", str(number)),
        ("export", "damaged", "--trial", str(number)),
    ):
        code, out, err = run_cli(capsys, *command, "--storage", bad)
        assert code == 1 and out == "" and "Traceback" not in err and err.count("\n") == 1, (command, code, err)
        assert err.startswith(
            f"error: storage: {bad.removeprefix('sqlite:///')} is damaged (trial {number}'s configuration index"
        ), err
        assert "outside the space of 8)" in err, err
    code, out, err = run_cli(capsys, "studies", "--storage", f"sqlite:///{tmp_path}/studies/*.db", "--json")
    assert code == 0, err
    # The listing reads counts and the front's points, not the trials' configurations.
    assert [(row["study"], row["trials"]) for row in json.loads(out)] == [("damaged", 8), ("damaged", 8)]


@pytest.mark.parametrize("sampler", ["random", "nsga2", "exhaustive", "tpe"])
def test_a_resume_over_a_configuration_index_outside_the_space_is_one_damaged_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sampler: str
) -> None:
    """A resume reads the held configurations (one integer each) without decoding the trials:
    NSGA-II over an index overwritten to 1e30 (SQLite casts it to 2**63 - 1) ended in numpy's
    "index 9223372036854775807 is out of bounds for array with size ..." traceback."""
    sql = "UPDATE trial_params SET param_value = 1e30 WHERE trial_id = "
    sql += "(SELECT trial_id FROM trials WHERE number = {number})"
    bad, front = _damaged_pair(tmp_path, capsys, sql)
    spec = _spec(tmp_path, DAMAGE_SPEC.replace("sampler: exhaustive\n", ""))
    code, out, err = run_cli(capsys, "search", spec, "--sampler", sampler, "--trials", "9", "--storage", bad, "--json")
    assert code == 1 and out == "" and "Traceback" not in err and err.count("\n") == 1, (code, err)
    assert "is damaged (a configuration index 9223372036854775807 is outside the space of 8)" in err, err
