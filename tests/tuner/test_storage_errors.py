"""A database that cannot be used is one stderr line naming its URL (password masked) and the fix:
exit 2 for bad input, 1 for the environment; never a traceback. Retries match types, are bounded."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
import yaml

from cli_helpers import run_cli
from tuner import storage as storage_module
from tuner import study as study_module
from tuner.storage import StorageError, mask_password, open_storage

SPEC = {
    "name": "small",
    "model": "llama-3-8b",
    "hardware": "l4",
    "workload": {"prompt_len": 512, "gen_len": 64},
    # More configurations than any budget here: a search never repeats one, and stops when none is left.
    "space": {"chips": [1, 2], "batch": [1, 8, 16, 32, 64, 128], "weight_bits": [16, 8, 4], "kv_bits": [16, 8]},
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "sampler": "random",
    "trials": 20,
}


def _spec(tmp_path: Path) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    return str(path)


def _one_line(code: int, out: str, err: str, expected_code: int, *words: str) -> str:
    assert "Traceback" not in out + err
    assert code == expected_code, (code, out, err)
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    line = err.rstrip("\n")
    assert line.startswith("error: storage:"), line
    assert "secret" not in line, line  # passwords never shown
    for word in words:
        assert word in line, (word, line)
    return line


def _search(capsys, tmp_path: Path, url: str, *more: str) -> tuple[int, str, str]:
    return run_cli(capsys, "search", _spec(tmp_path), "--storage", url, "--trials", "20", "--json", *more)


@pytest.mark.parametrize("timeout", ["abc", "-1", "nan", ""])
def test_a_sqlite_timeout_that_is_not_seconds_is_bad_input(tmp_path: Path, capsys, timeout: str) -> None:
    # ?timeout=abc used to reach the driver: "database error ... ValueError: could not convert
    # string to float: 'abc'; check the database and the server", exit 1.
    url = f"sqlite:///{tmp_path / 't.db'}?timeout={timeout}"
    code, out, err = _search(capsys, tmp_path, url)
    _one_line(code, out, err, 2, f"timeout={timeout}", "?timeout=60")
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize("url", ["foo://u:secret@host/db", "http://u:secret@host/db", "notaurl"])
def test_wrong_scheme_is_bad_input(tmp_path: Path, capsys, url: str) -> None:
    for command in (["pareto", "small"], ["studies"]):
        code, out, err = run_cli(capsys, *command, "--storage", url)
        _one_line(code, out, err, 2, "sqlite:///")
    code, out, err = _search(capsys, tmp_path, url)
    _one_line(code, out, err, 2)


def test_not_a_database_file_is_bad_input(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.db").write_text("these are notes, not a database\n" * 10, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'notes.db'}"
    _one_line(*_search(capsys, tmp_path, url), 2, "not a SQLite database", url)
    _one_line(*run_cli(capsys, "pareto", "small", "--storage", url), 2, "not a SQLite database")
    assert (tmp_path / "notes.db").read_text(encoding="utf-8").startswith("these are notes")


def test_a_directory_is_bad_input(tmp_path: Path, capsys) -> None:
    (tmp_path / "dir.db").mkdir()
    url = f"sqlite:///{tmp_path / 'dir.db'}"
    _one_line(*_search(capsys, tmp_path, url), 2, "is a directory")
    _one_line(*run_cli(capsys, "show", "small", "0", "--storage", url), 2, "is a directory")


def test_unreachable_server_is_the_environment(tmp_path: Path, capsys) -> None:
    pytest.importorskip("psycopg2")
    url = "postgresql+psycopg2://tuner:secret@127.0.0.1:1/tuner"  # nothing listens on port 1
    line = _one_line(
        *_search(capsys, tmp_path, url), 1, "postgresql+psycopg2://tuner:***@127.0.0.1:1/tuner", "server is running"
    )
    assert "connect" in line
    _one_line(*run_cli(capsys, "pareto", "small", "--storage", url), 1, "tuner:***@")


@pytest.mark.parametrize(
    "url, module, install",
    [
        ("mysql://u:secret@localhost/db", "MySQLdb", "mysqlclient"),
        ("mysql+pymysql://u:secret@localhost/db", "pymysql", "pip install pymysql"),
        ("postgresql+pg8000://u:secret@localhost/db", "pg8000", "pip install pg8000"),
    ],
)
def test_missing_driver_is_the_environment_and_names_the_package(tmp_path: Path, capsys, url, module, install) -> None:
    if importlib.util.find_spec(module.split(".")[0]) is not None:
        pytest.skip(f"{module} is installed here")
    _one_line(*_search(capsys, tmp_path, url), 1, "no database driver", module, install, "u:***@localhost")


def _read_only_file(path: Path):
    """Make ``path`` (a file or a directory) unwritable even for root (``chattr +i``), or by its
    mode when not root; returns the undo, or skips when neither is possible here."""
    if os.getuid() != 0:
        writable = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        return lambda: path.chmod(writable)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i here: a file cannot be made read-only for root")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_database_is_the_environment(tmp_path: Path, capsys) -> None:
    path = tmp_path / "ro.db"
    assert _search(capsys, tmp_path, f"sqlite:///{path}")[0] == 0
    capsys.readouterr()
    undo = _read_only_file(path)
    try:
        code, out, err = run_cli(
            capsys, "search", _spec(tmp_path), "--storage", f"sqlite:///{path}", "--trials", "40", "--json"
        )
        _one_line(code, out, err, 1, "read-only", str(path))
        # and reading it still works
        code, out, err = run_cli(capsys, "pareto", "small", "--storage", f"sqlite:///{path}", "--json")
        assert code == 0, err
    finally:
        undo()
    assert optuna.load_study(study_name="small", storage=f"sqlite:///{path}").trials[-1].number == 19


def test_a_database_in_a_read_only_directory_is_the_environment(tmp_path: Path, capsys) -> None:
    """The file is writable but its directory is not, so SQLite cannot create its journal beside
    it (SQLITE_CANTOPEN): that used to be "cannot open or create a database file ... pass a file
    path in a writable directory", exit 2 (bad input), for a file that opened and read fine."""
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "ro.db"
    assert _search(capsys, tmp_path, f"sqlite:///{path}")[0] == 0
    capsys.readouterr()
    undo = _read_only_file(folder)
    try:
        code, out, err = run_cli(
            capsys, "search", _spec(tmp_path), "--storage", f"sqlite:///{path}", "--trials", "40", "--json"
        )
        _one_line(code, out, err, 1, "read-only", str(folder))
        code, out, err = run_cli(capsys, "pareto", "small", "--storage", f"sqlite:///{path}", "--json")
        assert code == 0, err
    finally:
        undo()
    assert optuna.load_study(study_name="small", storage=f"sqlite:///{path}").trials[-1].number == 19


def test_a_copied_database_in_a_read_only_directory_is_read_only_too(tmp_path: Path, capsys) -> None:
    """A study copied (or restored) into a read-only directory has no ``<db>.lock`` beside it, and
    a write's first step, creating that lock file, failed: "cannot use PATH: Operation not
    permitted (...); use a path in a writable directory" (ops40, 2026-12-06), where
    docs/operations.md promises "PATH is read-only", as the same directory with the lock file
    already there gives."""
    made = tmp_path / "made.db"
    assert _search(capsys, tmp_path, f"sqlite:///{made}")[0] == 0
    capsys.readouterr()
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "copy.db"
    shutil.copy(made, path)
    undo = _read_only_file(folder)
    try:
        code, out, err = run_cli(
            capsys, "search", _spec(tmp_path), "--storage", f"sqlite:///{path}", "--trials", "40", "--json"
        )
        _one_line(code, out, err, 1, "read-only", str(folder))
        code, out, err = run_cli(capsys, "pareto", "small", "--storage", f"sqlite:///{path}", "--json")
        assert code == 0, err
    finally:
        undo()


def test_locked_database_is_the_environment(tmp_path: Path, capsys) -> None:
    path = tmp_path / "locked.db"
    assert _search(capsys, tmp_path, f"sqlite:///{path}")[0] == 0
    capsys.readouterr()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, out, err = run_cli(
            capsys, "search", _spec(tmp_path), "--storage", f"sqlite:///{path}?timeout=0.2", "--trials", "40", "--json"
        )
        _one_line(code, out, err, 1, "locked by another process", str(path))
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_passwords_are_masked_even_in_urls_sqlalchemy_cannot_parse() -> None:
    assert mask_password("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert "secret" not in mask_password("bad url://u:secret@h/db")
    assert mask_password("sqlite:///studies/x.db") == "sqlite:///studies/x.db"


def test_open_storage_retries_creation_races_a_bounded_number_of_times(monkeypatch, tmp_path: Path) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(storage_module.time, "sleep", sleeps.append)
    calls = []

    def racing(url, engine_kwargs=None):
        calls.append(url)
        raise sqlalchemy.exc.IntegrityError("INSERT INTO version_info", {}, Exception("duplicate"))

    monkeypatch.setattr(storage_module, "existing_storage", racing)  # what open_storage builds with
    with pytest.raises(StorageError) as info:
        open_storage("postgresql+psycopg2://u:secret@h/db")
    assert len(calls) == storage_module._OPEN_ATTEMPTS and len(sleeps) == storage_module._OPEN_ATTEMPTS - 1
    assert sleeps == sorted(sleeps) and sleeps[0] < sleeps[-1]  # backing off
    assert info.value.exit_code == 1 and "secret" not in str(info.value)

    # An error that is not a race is not retried.
    calls.clear()

    def refused(url, engine_kwargs=None):
        calls.append(url)
        raise sqlalchemy.exc.OperationalError("connect", {}, Exception("connection refused"))

    monkeypatch.setattr(storage_module, "existing_storage", refused)
    with pytest.raises(StorageError):
        open_storage("postgresql+psycopg2://u:secret@h/db")
    assert len(calls) == 1


def test_joining_a_study_another_worker_creates_is_bounded(monkeypatch, tmp_path: Path) -> None:
    """create_study keeps saying the study exists, yet it never shows up: give up, one line."""
    monkeypatch.setattr(study_module.time, "sleep", lambda s: None)
    attempts = []

    def duplicated(*args):
        attempts.append(args)
        return None  # the name is taken (IntegrityError inside)

    monkeypatch.setattr(study_module, "create_study_with_attrs", duplicated)
    with pytest.raises(StorageError) as info:
        study_module.run_search(SPEC, f"sqlite:///{tmp_path / 'x.db'}", trials=5)
    assert len(attempts) == study_module._CREATE_ATTEMPTS
    assert info.value.exit_code == 1


def test_a_bare_postgresql_url_names_psycopg2_when_only_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from tuner.storage import with_installed_driver

    installed = {"psycopg2"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in installed else None)
    assert with_installed_driver("postgresql://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"
    assert with_installed_driver("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert with_installed_driver("sqlite:///x.db") == "sqlite:///x.db"
    installed.add("psycopg")  # psycopg 3 present: SQLAlchemy's default works as written
    assert with_installed_driver("postgresql://u:p@h/db") == "postgresql://u:p@h/db"


def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return sorted(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


def test_reading_a_file_that_holds_no_study_writes_nothing_into_it(tmp_path: Path, capsys) -> None:
    """An operator's `tuner studies` over studies/*.db, or a mistyped --storage, met an empty file
    (`touch`) or another program's SQLite database: every read command opened it through
    RDBStorage, whose create_all and version stamping wrote Optuna's 12 tables into it (the
    empty file grew from 0 to 114,688 bytes; a database of one table `x` got 12 more). A read
    writes nothing: the file stays byte for byte as it was, and the answer is as before."""
    other, empty = tmp_path / "other.db", tmp_path / "empty.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE x (a)")
        connection.execute("INSERT INTO x VALUES (1)")
    connection.close()
    empty.write_bytes(b"")
    before = {path: path.read_bytes() for path in (other, empty)}
    for path in (other, empty):
        url = f"sqlite:///{path}"
        for command in (("pareto", "x"), ("show", "x", "1"), ("export", "x", "--trial", "1")):
            code, out, err = run_cli(capsys, *command, "--storage", url)
            assert code == 2 and err == f"error: study: no study named 'x' in {url}; use one of: none\n", (command, err)
        code, out, err = run_cli(capsys, "studies", "--storage", url, "--json")
        assert code == 0 and json.loads(out) == [], err
    # A glob over a folder of them beside a real study lists the study alone.
    assert _search(capsys, tmp_path, f"sqlite:///{tmp_path / 'real.db'}")[0] == 0
    capsys.readouterr()
    code, out, err = run_cli(capsys, "studies", "--storage", f"sqlite:///{tmp_path}/*.db", "--json")
    assert code == 0 and [row["study"] for row in json.loads(out)] == ["small"], err
    assert {path: path.read_bytes() for path in (other, empty)} == before
    assert _tables(other) == ["x"]


def test_studies_reads_a_read_only_url_and_keeps_it_for_each_file_a_glob_matches(tmp_path: Path, capsys) -> None:
    """docs/operations.md: `studies` runs on a database opened read-only,
    `--storage 'sqlite:///studies/x.db?mode=ro'`. The `?` of the URL's query was taken for a glob
    wildcard: the pattern `x.db?mode=ro` matched no file and `studies` listed nothing, exit 0."""
    path = tmp_path / "real.db"
    assert _search(capsys, tmp_path, f"sqlite:///{path}")[0] == 0
    capsys.readouterr()
    for url, listed in (
        (f"sqlite:///{path}?mode=ro", f"sqlite:///{path}?mode=ro"),
        (f"sqlite:///{tmp_path}/*.db?mode=ro", f"sqlite:///{path}?mode=ro"),
        (f"sqlite:///{tmp_path}/*.db", f"sqlite:///{path}"),
    ):
        code, out, err = run_cli(capsys, "studies", "--storage", url, "--json")
        assert code == 0, err
        assert [(row["study"], row["storage"], row["trials"]) for row in json.loads(out)] == [("small", listed, 20)]


def test_a_database_deleted_during_a_search_is_said_so(tmp_path: Path, capsys, monkeypatch) -> None:
    """`rm studies/x.db` while a search ran: SQLite refuses the next write with
    SQLITE_READONLY_DBMOVED, and the line said "x.db is read-only ...; make the file and its
    directory writable" (failed before: no "deleted or moved" in it)."""
    path = tmp_path / "gone.db"
    real = study_module._open_and_read

    def opened_then_deleted(*args, **kwargs):
        opened = real(*args, **kwargs)
        path.unlink()
        return opened

    monkeypatch.setattr(study_module, "_open_and_read", opened_then_deleted)
    code, out, err = _search(capsys, tmp_path, f"sqlite:///{path}")
    line = _one_line(code, out, err, 1, str(path), "deleted or moved", "run again")
    assert "read-only" not in line
