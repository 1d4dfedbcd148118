"""The front a TPE resume prints comes from the feasible points it read for the sampler's history
and the rows stored since (tuner.pareto.study_front's ``known``), not from a second read of every
feasible point (issue 13 item 1: a resume of a 200,000-trial study under 2 s; the second read
was ~0.25 s of CPU there, docs/benchmarks.md "Resume: one read of the front"). It must be the
front a full read gives, whatever another writer stored in between."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import test_batch_tpe
import yaml

from tuner import pareto

optuna.logging.set_verbosity(optuna.logging.WARNING)

# PaLM 540B on 64/128 TPU v4 chips: 528 configurations, some infeasible (test_batch_tpe.py's).
RESUMED = {key: value for key, value in test_batch_tpe.RESUMED.items() if key != "trials"}
# The same space, one objective: the front is the best point, and `best` lists the ten best.
SINGLE = {**RESUMED, "name": "single", "objectives": [{"metric": "decode.cost_chip_s_per_token"}]}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """One file (a new SQLite storage costs ~0.6 s of schema) with a compact study of 80 random
    trials of each spec, ``before.db``."""
    from tuner.study import run_search

    root = tmp_path_factory.mktemp("resume_front")
    for spec in (RESUMED, SINGLE):
        run_search(spec, f"sqlite:///{root / 'before.db'}", trials=80)
    return root


@pytest.fixture(scope="module")
def built(base) -> tuple[Path, dict[str, pareto.KnownPoints]]:
    """``before.db`` after a TPE resume of each study adding one trial (``after.db``), and the
    known points each resume read. Each test copies a file."""
    from tuner.study import run_search

    shutil.copyfile(base / "before.db", base / "after.db")
    url = f"sqlite:///{base / 'after.db'}"
    known = {
        spec["name"]: run_search(spec, url, sampler="tpe", trials=81, seed=1).known_front for spec in (RESUMED, SINGLE)
    }
    assert all(k is not None for k in known.values())
    return base, known  # type: ignore[return-value]


def _copy(built: tuple, tmp_path: Path, which: str = "after") -> str:
    shutil.copyfile(built[0] / f"{which}.db", tmp_path / "s.db")
    return f"sqlite:///{tmp_path / 's.db'}"


def _sizes_given_to_nondominated(monkeypatch) -> list[int]:
    """The number of points each call of tuner.pareto.nondominated gets from now on."""
    sizes: list[int] = []
    real = pareto.nondominated
    monkeypatch.setattr(pareto, "nondominated", lambda points: sizes.append(len(points)) or real(points))
    return sizes


def _summary(front: pareto.Front) -> tuple:
    return (
        [t.number for t in front.trials],
        [t.values for t in front.trials],
        [t.number for t in front.best],
        front.n_trials,
        front.n_feasible,
        front.n_front,
    )


def test_a_tpe_resume_reads_every_feasible_point_once(base, tmp_path, monkeypatch, capsys) -> None:
    """``tuner search --sampler tpe`` on a stored study hands every feasible point to the front's
    sweep once (for TPE's history); the printed front sweeps the known front and the new trial
    only. Before: twice, the printed front read the study again."""
    import sqlite3

    from tuner.cli import main

    shutil.copyfile(base / "before.db", tmp_path / "s.db")
    url = f"sqlite:///{tmp_path / 's.db'}"
    with sqlite3.connect(tmp_path / "s.db") as con:
        (feasible,) = con.execute(
            "SELECT COUNT(*) FROM tuner_trial_points p JOIN studies s ON s.study_id = p.study_id"
            " WHERE s.study_name = 'resumed' AND p.feasible = 1"
        ).fetchone()
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(RESUMED), encoding="utf-8")
    sizes = _sizes_given_to_nondominated(monkeypatch)
    assert main(["search", str(spec), "--sampler", "tpe", "--trials", "81", "--storage", url, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    monkeypatch.undo()
    assert printed["trials_added"] == 1 and 0 < feasible < 80
    assert [size for size in sizes if size >= feasible] == [feasible], sizes
    fresh = pareto.study_front(pareto.load_study("resumed", url))
    assert [row["trial"] for row in printed["front"]] == [t.number for t in fresh.trials]


@pytest.mark.parametrize("name", ["resumed", "single"])
def test_the_front_after_other_writers_is_a_full_reads(built, tmp_path, monkeypatch, name) -> None:
    """The known points of a TPE resume, then 120 more trials from another writer (some of them on
    the new front): the front from the known points and the rows since is a full read's, trial for
    trial (the best ten of a single-objective study too), and the full read's sweep is not run."""
    from tuner.study import run_search

    url = _copy(built, tmp_path)
    known = built[1][name]
    before = pareto.study_front(pareto.load_study(name, url))
    run_search(RESUMED if name == "resumed" else SINGLE, url, trials=201, seed=2)  # another worker
    study = pareto.load_study(name, url)
    sizes = _sizes_given_to_nondominated(monkeypatch)
    since = pareto.study_front(study, known=known)
    monkeypatch.undo()
    full = pareto.study_front(study)
    assert _summary(since) == _summary(full)
    assert since.n_trials == 201 and since.n_feasible > before.n_feasible
    changed = [t.number for t in (full.trials if name == "resumed" else full.best) if t.number > known.last_number]
    assert changed, "the other writer's trials should reach the front"
    assert max(sizes) < full.n_feasible  # only the known points and the new rows were swept


def test_rows_the_known_read_did_not_see_below_its_last_number_mean_a_full_read(built, tmp_path, monkeypatch) -> None:
    """A row with a number at or below the known read's highest (a trial that completed late) is
    not among the rows since: the counts disagree and the study is read whole."""
    url = _copy(built, tmp_path)
    known = built[1]["resumed"]
    # As if the known read had not seen one trial numbered below its highest (the count one less).
    study = pareto.load_study("resumed", url)
    sizes = _sizes_given_to_nondominated(monkeypatch)
    since = pareto.study_front(study, known=dataclasses.replace(known, n_complete=known.n_complete - 1))
    monkeypatch.undo()
    assert _summary(since) == _summary(pareto.study_front(study))
    assert max(sizes) == since.n_feasible  # read whole
    # Another study's points are never taken for this one's.
    other = dataclasses.replace(known, study_id=known.study_id + 1)
    assert _summary(pareto.study_front(study, known=other)) == _summary(pareto.study_front(study))


def test_the_known_points_are_the_front_and_the_best_of_the_read(built) -> None:
    """What a resume keeps: the non-dominated feasible points (every one, identical ones too) and,
    with one objective, the ten best, by brute force on the rows stored before it."""
    import sqlite3

    for name, spec in (("resumed", RESUMED), ("single", SINGLE)):
        known = built[1][name]
        with sqlite3.connect(built[0] / "before.db") as con:
            rows = con.execute(
                "SELECT trial_id, objectives FROM tuner_trial_points WHERE feasible = 1 AND study_id = ?"
                " ORDER BY number",
                (known.study_id,),
            ).fetchall()
        assert known.n_feasible == len(rows) and known.n_complete == 80 and known.last_number == 79
        points = [np.frombuffer(blob, dtype="<f8").tolist() for _, blob in rows]
        kept = {
            i
            for i, p in enumerate(points)
            if not any(all(a <= b for a, b in zip(q, p, strict=True)) and q != p for q in points)  # all minimized
        }
        if len(spec["objectives"]) == 1:
            kept |= set(sorted(range(len(points)), key=lambda i: (points[i][0], i))[:10])
        assert 0 < len(kept) < len(rows)
        assert known.ranks.tolist() == sorted(kept)
        assert known.ids.tolist() == [rows[i][0] for i in sorted(kept)]
        assert known.values.tolist() == [points[i] for i in sorted(kept)]
