"""Fatal database errors through the CLI: a full disk and a file damaged in the middle are one
line naming the database and the fix, exit 1, and nothing already stored is lost."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml

from cli_helpers import run_cli

SPEC = {
    "name": "fatal",
    "model": "llama-3-8b",
    "hardware": "l4",
    "workload": {"prompt_len": 512, "gen_len": 64},
    "space": {"chips": [1, 2], "batch": list(range(1, 129)), "weight_bits": [16, 8, 4], "kv_bits": [16, 8]},
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "sampler": "random",
}


def _study(tmp_path: Path, capsys: pytest.CaptureFixture[str], trials: int) -> tuple[str, Path]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    db = tmp_path / "study.db"
    code, _, err = run_cli(capsys, "search", str(spec), "--storage", f"sqlite:///{db}", "--trials", str(trials))
    assert code == 0, err
    return str(spec), db


def _fatal_line(code: int, out: str, err: str, *words: str) -> str:
    assert "Traceback" not in out + err
    assert code == 1, (code, out, err)
    assert out == "" and err.count("\n") == 1, repr(err)
    for word in words:
        assert word in err, (word, err)
    return err


def test_a_full_disk_is_one_line_and_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite reports SQLITE_FULL once a database reaches ``max_page_count``: every connection
    the search opens is capped at the file's size now, as a disk with no space left would."""
    spec, db = _study(tmp_path, capsys, trials=50)
    with sqlite3.connect(db) as connection:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]

    def cap(dbapi_connection, _record) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", cap)
    try:
        code, out, err = run_cli(capsys, "search", spec, "--storage", f"sqlite:///{db}", "--trials", "3000", "--json")
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "connect", cap)
    _fatal_line(code, out, err, "is full", str(db), "free some space")
    trials = optuna.load_study(study_name="fatal", storage=f"sqlite:///{db}").trials
    assert len(trials) >= 50 and sorted(t.number for t in trials) == list(range(len(trials)))


@pytest.mark.parametrize("command", ["search", "pareto"])  # both read every trial
def test_garbage_in_the_middle_of_the_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    spec, db = _study(tmp_path, capsys, trials=300)
    damaged = tmp_path / "damaged.db"
    shutil.copy(db, damaged)
    data = bytearray(damaged.read_bytes())
    # The middle half of the file: every table's pages have some there, whatever the layout
    # (a few kilobytes may land in pages a command never reads).
    begin, end = len(data) // 4, 3 * len(data) // 4
    data[begin:end] = random.Random(13).randbytes(end - begin)
    damaged.write_bytes(bytes(data))
    url = f"sqlite:///{damaged}"
    args = {
        "search": ("search", spec, "--trials", "600"),
        "pareto": ("pareto", "fatal"),
    }[command]
    code, out, err = run_cli(capsys, *args, "--storage", url, "--json")
    assert "\x1b" not in err and all(c.isprintable() for c in err.rstrip("\n"))  # no raw garbage
    _fatal_line(code, out, err, str(damaged), "damaged", ".recover")


def test_a_new_study_on_a_full_disk_says_to_free_space(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk the first write of a new study is the writer's PID into ``<db>.lock``,
    which fails with ENOSPC (measured: a 600 KiB tmpfs filled with dd, then tuner search with a
    new --storage there). The line said "use a path in a writable directory", of a directory that
    was writable."""
    import contextlib
    import errno

    from tuner import storage

    @contextlib.contextmanager
    def full_disk(path, stop=None):
        raise OSError(errno.ENOSPC, "No space left on device")
        yield

    monkeypatch.setattr(storage, "_file_lock", full_disk)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    db = tmp_path / "new.db"
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", f"sqlite:///{db}")
    line = _fatal_line(code, out, err, "No space left on device", str(db), "free some space")
    assert "writable directory" not in line
