"""Big studies: compact trials (tuner.compact), the exhaustive sampler streaming claimed ranges
(tuner.exhaustive), workers splitting the space, --no-store-all, a SIGKILL mid-run, and studies
written in the older whole format still read by show, export, pareto and report."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_helpers import run_cli
from search_spaces.space import compile_study, evaluate, structurally_valid
from search_spaces.spec import parse_spec
from tuner import compact, exhaustive
from tuner.pareto import load_study, study_front, trial_breakdown
from tuner.study import run_search, run_worker

REPO = Path(__file__).resolve().parents[2]

SPACE: dict = {
    "name": "scale",
    "model": "palm-540b",
    "hardware": "tpu-v4",
    "workload": {"prompt_len": 128, "gen_len": 8},
    "space": {
        "chips": [64, 128],
        "batch": [1, 4, 16, 32, 64, 128],
        "decode_ffn_layout": ["ws_1d", "ws_2d"],
        "weight_bits": [16, 8],
        "kv_heads": ["model", "mha"],
    },
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "constraints": {"fits": True, "max_tpot_s": 0.5},
    "sampler": "exhaustive",
    "seed": 0,
    "trials": 100,
}


def _spec(**changes) -> dict:
    data = copy.deepcopy(SPACE)
    data.update(changes)
    return data


def _url(tmp_path: Path, name: str = "s.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def _brute_force_front(spec: dict) -> set[tuple[float, ...]]:
    """Every structurally possible candidate scored; the feasible points no other dominates,
    by pairwise comparison (no code of tuner.pareto or tuner.exhaustive)."""
    compiled = compile_study(parse_spec(spec))
    indices = compiled.space.all_indices()
    keep = structurally_valid(compiled, indices)
    evaluation = evaluate(compiled, {k: v[keep] for k, v in indices.items()})
    points = [tuple(v) for v, ok in zip(evaluation.values.tolist(), evaluation.feasible.tolist(), strict=True) if ok]

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    return {p for p in points if not any(dominates(q, p) for q in points)}


def _configurations(url: str, name: str) -> list[tuple]:
    study = load_study(name, url)
    return [tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)]


def _valid_count(spec: dict) -> int:
    compiled = compile_study(parse_spec(spec))
    return int(structurally_valid(compiled, compiled.space.all_indices()).sum())


def test_exhaustive_front_equals_brute_force(tmp_path: Path) -> None:
    url = _url(tmp_path)
    result = run_search(_spec(), url)
    assert result.trials_added == _valid_count(SPACE)
    front = study_front(load_study("scale", url))
    assert {tuple(t.values) for t in front.trials} == _brute_force_front(SPACE)
    configurations = _configurations(url, "scale")
    assert len(configurations) == len(set(configurations)) == result.trials_added


def test_no_store_all_stores_the_exact_front_and_a_sample(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(exhaustive, "SAMPLE_SIZE", 50)  # the space is small: so is the sample
    url = _url(tmp_path)
    result = run_search(_spec(), url, store_all=False)
    valid = _valid_count(SPACE)
    assert 0 < result.trials_added < valid
    front = study_front(load_study("scale", url))
    assert {tuple(t.values) for t in front.trials} == _brute_force_front(SPACE)
    # A second run finds every range done: nothing scored or added again.
    assert run_search(_spec(), url, store_all=False).trials_added == 0


def test_no_store_all_is_refused_for_a_sampled_search(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="store-all"):
        run_search(_spec(sampler="random"), _url(tmp_path), store_all=False)


def _worker(url: str, share: int | None, queue) -> None:
    queue.put(run_worker(_spec(), url, share=share).trials_added)


def test_workers_split_the_space_without_duplicates(tmp_path: Path, monkeypatch) -> None:
    url = _url(tmp_path)
    run_search(_spec(), url, trials=1)  # the study exists before the workers start
    # Spawned children get this sys.path: the repository first, so ``cost_models`` is the package
    # and not the tests' folder of that name (under an editable install whose finder comes after
    # the path entries, as in CI's clean clone, the folder won).
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_worker, args=(url, None, queue)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    added = sorted(queue.get(timeout=5) for _ in workers)
    configurations = _configurations(url, "scale")
    assert len(configurations) == len(set(configurations)) == _valid_count(SPACE)
    assert sum(added) + 1 == len(configurations)  # each worker's "added N" is what it wrote


def test_a_worker_share_is_honoured_exactly(tmp_path: Path) -> None:
    url = _url(tmp_path)
    assert run_worker(_spec(), url, share=10).trials_added == 10
    assert len(_configurations(url, "scale")) == 10
    # The next worker adds its own share of unseen candidates, then a last one the rest.
    assert run_worker(_spec(), url, share=25).trials_added == 25
    rest = run_worker(_spec(), url).trials_added
    configurations = _configurations(url, "scale")
    assert len(configurations) == len(set(configurations)) == _valid_count(SPACE) == 35 + rest


def test_exhaustive_budget_caps_the_study(tmp_path: Path) -> None:
    url = _url(tmp_path)
    assert run_search(_spec(), url, trials=40).trials_added == 40
    assert run_search(_spec(), url).trials_added == _valid_count(SPACE) - 40
    configurations = _configurations(url, "scale")
    assert len(configurations) == len(set(configurations))


def test_sigkill_mid_run_leaves_a_resumable_study(tmp_path: Path) -> None:
    """A search killed with SIGKILL while it writes resumes to exactly every candidate once."""
    # 21,120 candidates: the kill lands at the first flush (8,192 stored), well inside the space
    # (105,600 took 90 s of CI on a 2-core VM for the same check, 35,200 20 s).
    spec = _spec(space={**SPACE["space"], "batch": list(range(1, 61)), "prefill_ffn_layout": ["ws_1d", "ws_2d"]})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    url = _url(tmp_path)
    command = [sys.executable, "-m", "tuner.cli", "search", str(path), "--storage", url, "--json"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    db = tmp_path / "s.db"
    import sqlite3

    def stored() -> int:
        try:
            with sqlite3.connect(db) as connection:
                return int(connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
        except sqlite3.Error:
            return 0

    while stored() < 2_000 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = stored()
    valid = _valid_count(spec)
    assert 0 < before < valid, "the kill came too late to test a resume"
    result = run_search(parse_spec(spec), url)
    assert result.trials_before == before and before + result.trials_added == valid
    configurations = _configurations(url, "scale")
    assert len(configurations) == len(set(configurations)) == valid


# ---------------------------------------------------------------------------------------------
# Compact trials


def test_a_compact_trial_stores_one_configuration_index(tmp_path: Path) -> None:
    import optuna

    url = _url(tmp_path)
    run_search(_spec(sampler="random"), url, trials=20)
    raw = optuna.load_study(study_name="scale", storage=url)  # Optuna itself, no hydration
    assert raw.user_attrs[compact.FORMAT_ATTR] == compact.COMPACT_FORMAT
    trial = raw.trials[0]
    assert list(trial.params) == [compact.CONFIGURATION_PARAM] and trial.user_attrs == {}
    whole = load_study("scale", url).trials[0]  # read through tuner: categorical params, breakdown
    assert set(whole.params) == set(compile_study(parse_spec(SPACE)).space.dimensions)
    assert {"deployment", "estimate", compact.BREAKDOWN_ATTR} <= set(whole.user_attrs)
    assert whole.values == trial.values
    # Made whole as the older format stored it: the named constraints, and Optuna's list beside
    # them (what optuna-dashboard reads), as the model scores this configuration.
    compiled = compile_study(parse_spec(SPACE))
    indices = compiled.space.indices_of([whole.params])
    expected = {name: float(column[0]) for name, column in evaluate(compiled, indices).constraint_columns.items()}
    assert {k: whole.system_attrs[f"constraints:{k}"] for k in expected} == expected
    assert whole.system_attrs["constraints"] == list(expected.values())
    # Stored: only Optuna's list (plain Optuna's best_trials reads it); the named ones are
    # recomputed on read.
    assert trial.constraints == {str(i): v for i, v in enumerate(expected.values())}
    assert not any(k.startswith("constraints:") for k in trial.system_attrs)


def test_bytes_per_trial_stay_under_a_kilobyte(tmp_path: Path) -> None:
    spec = _spec(space={**SPACE["space"], "batch": list(range(1, 101))})
    url = _url(tmp_path)
    run_search(spec, url, trials=200, sampler="random")
    db = tmp_path / "s.db"
    before = db.stat().st_size
    result = run_search(spec, url, trials=2_200, sampler="random")
    assert result.trials_added == 2_000
    assert (db.stat().st_size - before) / 2_000 < 1_000


def test_a_huge_choice_list_is_stored_once(tmp_path: Path) -> None:
    """A batch list of 10^6 choices: the list is in the study's spec once, not in every trial."""
    spec = _spec(space={"chips": [64], "batch": list(range(1, 1_000_001))}, sampler="random")
    url = _url(tmp_path)
    run_search(spec, url, trials=5)
    listed = len(json.dumps(list(range(1, 1_000_001))))
    assert (tmp_path / "s.db").stat().st_size < 2 * listed
    assert len(_configurations(url, "scale")) == 5


def _whole_format(monkeypatch) -> None:
    """Write studies as before the compact format (per-dimension params, stored breakdowns)."""
    monkeypatch.setattr(compact, "compact_possible", lambda sizes: False)


def test_old_and_new_studies_read_the_same(tmp_path: Path, monkeypatch, capsys) -> None:
    # The exhaustive sampler walks the space in the same order in either format, so the two
    # studies hold the same trials (the sampled searches of compact studies draw differently:
    # tuner.samplers.DistinctFlatDraws, GenerationalNSGAII).
    spec = _spec(sampler="exhaustive")
    new_url = _url(tmp_path, "new.db")
    run_search(spec, new_url, trials=60)
    with monkeypatch.context() as patch:
        _whole_format(patch)
        old_url = _url(tmp_path, "old.db")
        run_search(spec, old_url, trials=60)
    old_study = load_study("scale", old_url)
    assert compact.FORMAT_ATTR not in old_study.user_attrs
    assert "estimate" in old_study.trials[0].user_attrs  # stored whole
    outputs = {}
    for name, url in (("old", old_url), ("new", new_url)):
        code, front, _ = run_cli(capsys, "pareto", "scale", "--storage", url, "--json")
        assert code == 0
        number = json.loads(front)[0]["trial"]
        code, shown, _ = run_cli(capsys, "show", "scale", str(number), "--storage", url)
        assert code == 0
        code, exported, _ = run_cli(capsys, "export", "scale", "--trial", str(number), "--storage", url)
        assert code == 0
        code, _, _ = run_cli(capsys, "report", "scale", "--storage", url, "--output", str(tmp_path / f"{name}.html"))
        assert code == 0 and (tmp_path / f"{name}.html").stat().st_size > 0
        outputs[name] = (json.loads(front), json.loads(shown), exported)
    assert outputs["old"][0] == outputs["new"][0]  # the same front, trial for trial
    old_shown, new_shown = outputs["old"][1], outputs["new"][1]
    assert new_shown.pop("breakdown")["stale"] is False and "breakdown" not in old_shown
    assert old_shown["params"] == new_shown["params"] and old_shown["objectives"] == new_shown["objectives"]
    assert json.dumps(old_shown["estimate"], sort_keys=True).count(":") == json.dumps(
        new_shown["estimate"], sort_keys=True
    ).count(":")
    # Resuming each keeps its format.
    run_search(spec, old_url, trials=80)
    assert "estimate" in load_study("scale", old_url).trials[-1].user_attrs


def test_a_breakdown_from_another_model_version_is_flagged(tmp_path: Path) -> None:
    url = _url(tmp_path)
    run_search(_spec(sampler="random"), url, trials=5)
    storage = load_study("scale", url)
    storage.set_user_attr(compact.MODEL_VERSION_ATTR, "an-older-model")
    compact._HYDRATORS.clear()
    shown = trial_breakdown(load_study("scale", url), 0)
    assert shown["breakdown"]["stale"] is True
    assert shown["breakdown"]["study_model_version"] == "an-older-model"


def test_a_front_scored_by_another_model_version_says_so(tmp_path: Path, capsys) -> None:
    """pareto shows stored objectives beside recomputed constraint columns: where another version
    scored them, the table says so in a line and the JSON names that version."""
    url = _url(tmp_path)
    run_search(_spec(sampler="random"), url, trials=20)
    code, out, err = run_cli(capsys, "pareto", "scale", "--storage", url, "--json")
    assert code == 0, err
    assert all("scored_by_model_version" not in row for row in json.loads(out))
    load_study("scale", url).set_user_attr(compact.MODEL_VERSION_ATTR, "an-older-model")
    compact._HYDRATORS.clear()
    code, out, err = run_cli(capsys, "pareto", "scale", "--storage", url, "--json")
    rows = json.loads(out)
    assert code == 0 and rows and all(row["scored_by_model_version"] == "an-older-model" for row in rows)
    code, out, err = run_cli(capsys, "pareto", "scale", "--storage", url)
    assert code == 0 and "scored by another version of the cost model (an-older-model" in " ".join(out.split())


def test_resume_of_a_compact_random_study_skips_every_stored_configuration(tmp_path: Path) -> None:
    url = _url(tmp_path)
    spec = _spec(sampler="random")
    run_search(spec, url, trials=50)
    result = run_search(spec, url, trials=_valid_count(SPACE) + 50)
    configurations = _configurations(url, "scale")
    assert result.trials_before == 50 and len(configurations) == len(set(configurations))
    assert np.all(np.isfinite([t.values for t in load_study("scale", url).trials]))


def test_every_database_call_of_the_sweep_is_retried_through_a_lost_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The range claim, the release of a range a share stopped, the read of a reclaimed range
    and the write each meet one lost connection (a server restart): each runs again, and the
    study ends with every configuration once."""
    import sqlite3

    import sqlalchemy as sa

    failed: list[str] = []

    def failing_once(name: str, real):
        def call(*args, **kwargs):
            if name not in failed:
                failed.append(name)
                lost = sqlite3.OperationalError("server closed the connection unexpectedly")
                raise sa.exc.OperationalError("SELECT 1", {}, lost, connection_invalidated=True)
            return real(*args, **kwargs)

        return call

    for name in ("claim", "release", "stored_in_range", "_write_chunk_once"):
        monkeypatch.setattr(exhaustive, name, failing_once(name, getattr(exhaustive, name)))
    url = _url(tmp_path)
    first = run_search(_spec(), url, share=40)  # stops inside its range: the range is released
    second = run_search(_spec(), url)  # takes the released range back: reads what it holds
    assert sorted(failed) == sorted(["claim", "release", "stored_in_range", "_write_chunk_once"])
    assert first.trials_added == 40
    assert first.trials_added + second.trials_added == _valid_count(SPACE)
    configurations = _configurations(url, "scale")
    assert len(configurations) == len(set(configurations)) == _valid_count(SPACE)
    assert capsys.readouterr().err.count("retrying for up to") == 4  # one line per lost connection


def test_a_write_whose_commit_answer_was_lost_is_not_written_twice(tmp_path: Path, monkeypatch) -> None:
    """The connection drops after the server committed a range's rows: the retry finds the range
    done and writes nothing again."""
    import sqlite3

    import sqlalchemy as sa

    real = exhaustive._write_chunk_once
    lost: list[int] = []

    def committed_then_lost(*args, **kwargs):
        written = real(*args, **kwargs)
        if not lost and args[7] is not None:  # a range's write (done_begin given), once
            lost.append(written)
            raise sa.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("connection lost"), True)
        return written

    monkeypatch.setattr(exhaustive, "_write_chunk_once", committed_then_lost)
    url = _url(tmp_path)
    result = run_search(_spec(), url)
    assert lost and lost[0] > 0
    assert result.trials_added == _valid_count(SPACE)
    configurations = _configurations(url, "scale")
    assert len(configurations) == len(set(configurations)) == _valid_count(SPACE)
