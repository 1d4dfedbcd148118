"""Many workers on one study, crashes and Ctrl-C, with real processes and a real database server.

PostgreSQL: ``TUNER_TEST_POSTGRES_URL`` names a server (``.ci/run`` starts one with
``.ci/postgres.sh``); outside CI, without it, the tests try to start one from the distribution's
binaries if they are installed, and are skipped with the reason when no server can be had. In CI
they fail instead of skipping.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml

from tuner.pareto import load_study

ROOT = Path(__file__).resolve().parents[2]
TUNER = [sys.executable, "-c", "import sys; from tuner.cli import main; sys.exit(main())"]
SPEC = {
    "name": "workers",
    "model": "llama-3-8b",
    "hardware": "l4",
    "workload": {"prompt_len": 512, "gen_len": 64},
    # 30,720 configurations: searches never repeat one, so the space must outlast every budget here
    # (the searches killed or interrupted use BIG_SPACE).
    "space": {
        "chips": [1, 2, 4],
        "batch": list(range(1, 129)),
        "weight_bits": [16, 8, 4],
        "kv_bits": [16, 8],
        "prefill_attn_sharding": ["head", "batch"],
        "decode_attn_sharding": ["head", "batch"],
    },
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "sampler": "nsga2",
    "trials": 600,
}


def _write_spec(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return path


def _server_url() -> str | None:
    url = os.environ.get("TUNER_TEST_POSTGRES_URL")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail("CI must provide TUNER_TEST_POSTGRES_URL (see .ci/run)")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("no PostgreSQL server: set TUNER_TEST_POSTGRES_URL or install postgresql")
    import fcntl

    try:
        # One start at a time: every pytest-xdist worker with a server test runs the script, as
        # does any other test run on this machine, and two at once could make a fresh data
        # directory under each other's server.
        with open("/tmp/tuner-pg-55433.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = subprocess.run(
                ["bash", str(ROOT / ".ci" / "postgres.sh")],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, "TUNER_PG_PORT": "55433"},
            )
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"could not start PostgreSQL: {error}")
    if done.returncode != 0:
        pytest.skip(f"could not start PostgreSQL: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip()


def fresh_database(server: str) -> Iterator[str]:
    """A new database on ``server`` (its URL yielded), dropped afterwards; skipped where the server
    is not reachable outside CI (in CI it must be)."""
    pytest.importorskip("psycopg2", reason="pip install -e '.[postgres]' for the PostgreSQL driver")
    import sqlalchemy

    name = f"tuner_test_{uuid.uuid4().hex[:8]}"
    # pool_pre_ping: the server may be stopped and started again while the module's tests run
    # (other test runs on the machine share it: one did under a loaded run here), and the DROP
    # below then met the connection pooled before: "server closed the connection unexpectedly",
    # an error in the teardown of the module's last test.
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    except sqlalchemy.exc.OperationalError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at {server} is not reachable: {str(error).splitlines()[0]}")
    url = server.rsplit("/", 1)[0] + f"/{name}"
    yield url
    sqlalchemy.engine.create_engine(url).dispose()
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh database on the server, dropped afterwards."""
    yield from fresh_database(_server_url())


def _run_workers(spec: Path, url: str, count: int = 4) -> list[subprocess.CompletedProcess]:
    processes = [
        subprocess.Popen(
            [*TUNER, "worker", str(spec), "--storage", url, "--seed", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(count)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def _check_study(url: str, expected: int) -> None:
    study = load_study(SPEC["name"], url)  # tuner's reader: compact trials made whole
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == expected
    assert sorted(t.number for t in trials) == list(range(expected))  # none duplicated, none lost
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}  # none stuck RUNNING
    assert all("estimate" in t.user_attrs for t in trials)


def _pareto_reads(url: str) -> None:
    done = subprocess.run(
        [*TUNER, "pareto", SPEC["name"], "--storage", url, "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("[")


def test_four_workers_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    results = _run_workers(_write_spec(tmp_path), postgres_url)
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert sum(int(r.stdout.split("added ")[1].split()[0]) for r in results) == SPEC["trials"]
    _check_study(postgres_url, SPEC["trials"])
    _pareto_reads(postgres_url)


def test_four_workers_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    results = _run_workers(_write_spec(tmp_path), url)
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    _check_study(url, SPEC["trials"])
    _pareto_reads(url)


def test_worker_share_caps_what_one_worker_adds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'share.db'}"
    done = subprocess.run(
        [*TUNER, "worker", str(_write_spec(tmp_path)), "--storage", url, "--trials", "120"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    _check_study(url, 120)


def test_an_exhaustive_worker_waits_for_a_range_another_worker_gives_back(tmp_path: Path) -> None:
    """An exhaustive worker that finds every range left claimed by a live worker waits for it:
    that worker may stop at its share and give the range back. Before, it ended at once having
    added nothing (two `tuner worker --trials 100` of studies/llama-3.1-70b-h100-serving.yaml,
    360 candidates, started together on one SQLite file: 100 + 0, in 3 of 3 runs). Here the live
    claim is another host's, given back 0.5 s into the second worker's run."""
    import threading

    from tuner import exhaustive
    from tuner.study import run_worker

    spec = {**SPEC, "name": "sweep-share", "sampler": "exhaustive", "space": {**SPEC["space"], "batch": [1, 2, 4]}}
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    assert run_worker(json.loads(json.dumps(spec)), url, share=1).trials_added == 1  # creates the study
    path = url[len(SQLITE_PREFIX) :]
    with sqlite3.connect(path) as connection:  # the released range, now held by a live worker elsewhere
        connection.execute(
            f"UPDATE {exhaustive.CHUNKS_TABLE} SET host = 'elsewhere', pid = 1, claimed_at = ?", (time.time(),)
        )

    def give_back() -> None:
        time.sleep(0.5)
        with sqlite3.connect(path, timeout=30) as connection:
            connection.execute(f"UPDATE {exhaustive.CHUNKS_TABLE} SET claimed_at = NULL")

    thread = threading.Thread(target=give_back)
    thread.start()
    try:
        result = run_worker(json.loads(json.dumps(spec)), url, share=5)
    finally:
        thread.join()
    assert result.trials_added == 5
    assert len(load_study("sweep-share", url).trials) == 6


def _start_search(spec: Path, url: str, trials: int) -> subprocess.Popen:
    return subprocess.Popen(
        [*TUNER, "search", str(spec), "--storage", url, "--trials", str(trials), "--sampler", "random"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _end(process: subprocess.Popen) -> None:
    """Kill ``process`` if it still runs: a failed assertion must not leave a search of 2,000,000
    trials running behind the test."""
    if process.poll() is None:
        process.kill()
        process.communicate()


def _stored_trials(url: str) -> int:
    """Trials stored so far. On SQLite one COUNT on Optuna's trials table: loading the study
    through Optuna reads every trial, which took seconds per poll once a random search had written
    tens of thousands, so the search ran far past the count asked for before it was stopped (the
    SIGKILL test then loaded, resumed and checked that many: 171 s of the suite's 715)."""
    if url.startswith(SQLITE_PREFIX):
        try:
            with sqlite3.connect(f"file:{url[len(SQLITE_PREFIX) :]}?mode=ro", uri=True, timeout=1.0) as connection:
                return int(connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
        except sqlite3.Error:  # not created yet, or the writer holds the lock
            return 0
    try:
        return len(optuna.load_study(study_name=SPEC["name"], storage=url).get_trials(deepcopy=False))
    except (KeyError, Exception):  # not created yet
        return 0


SQLITE_PREFIX = "sqlite:///"


def _sqlite_trials(url: str) -> dict[int, tuple[str, tuple]]:
    """Trial number -> (state, the stored parameter rows), read with sqlite3 from Optuna's schema:
    optuna.load_study(...).trials took ~2.7 s on the ~3,400 trials these tests stop at."""
    with sqlite3.connect(f"file:{url[len(SQLITE_PREFIX) :]}?mode=ro", uri=True) as connection:
        params: dict[int, list] = {}
        for number, name, value in connection.execute(
            "SELECT number, param_name, param_value FROM trial_params JOIN trials USING (trial_id)"
        ):
            params.setdefault(number, []).append((name, value))
        return {
            number: (state, tuple(sorted(params.get(number, []))))
            for number, state in connection.execute("SELECT number, state FROM trials")
        }


def _wait_for_trials(url: str, at_least: int, process: subprocess.Popen | None = None, timeout_s: float = 120.0) -> int:
    """The count of stored trials once it reaches ``at_least``. ``process``, the command writing
    them: its end fails the wait at once, with its stderr. ``timeout_s`` only bounds a hang: the
    command's imports alone take 2 s here and far longer on a loaded 2-core machine."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = _stored_trials(url)
        if count >= at_least:
            return count
        if process is not None and process.poll() is not None:
            raise AssertionError(f"exit {process.returncode} with {count} trials stored: {process.communicate()[1]}")
        time.sleep(0.1)
    raise AssertionError(f"no {at_least} trials within {timeout_s} s")


#: 983,040 configurations: a random search writes several thousand trials a second, and would hold
#: all 30,720 of SPEC's before the polling below sees 500 and kills it (the resume then adds none).
BIG_SPACE = {**SPEC["space"], "batch": list(range(1, 4097))}


def test_sigkill_then_resume_keeps_flushed_trials_and_finishes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    spec = _write_spec(tmp_path, space=BIG_SPACE)
    process = _start_search(spec, url, trials=2_000_000)
    try:
        _wait_for_trials(url, 500, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=120)
    survived = _sqlite_trials(url)
    assert len(survived) >= 500
    assert sorted(survived) == list(range(len(survived)))
    assert {state for state, _ in survived.values()} == {optuna.trial.TrialState.COMPLETE.name}
    budget = len(survived) + 300
    done = subprocess.run(
        [*TUNER, "search", str(spec), "--storage", url, "--trials", str(budget), "--sampler", "random"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    _check_study(url, budget)
    after = _sqlite_trials(url)
    assert all(after[n] == stored for n, stored in survived.items())  # nothing flushed was lost


def test_sigterm_flushes_and_exits_143(tmp_path: Path) -> None:
    """What a container runtime sends: the search stops between batches, every finished trial is
    written, and the exit code is 128 + SIGTERM."""
    url = f"sqlite:///{tmp_path / 'term.db'}"
    spec = _write_spec(tmp_path, space=BIG_SPACE)
    process = _start_search(spec, url, trials=2_000_000)
    try:
        _wait_for_trials(url, 200, process)  # the search runs, its handlers in place
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)  # a bound on a hang: it stops within a batch
    finally:
        _end(process)
    assert process.returncode == 143, err
    assert "Traceback" not in err and "run the same command to resume" in err
    study = optuna.load_study(study_name=SPEC["name"], storage=url)
    assert len(study.trials) >= 200
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'interrupt.db'}"
    spec = _write_spec(tmp_path, space=BIG_SPACE)
    process = _start_search(spec, url, trials=2_000_000)
    try:
        _wait_for_trials(url, 200, process)  # the search runs, its handlers in place
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)  # a bound on a hang: it stops within a batch
    finally:
        _end(process)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "run the same command to resume" in err
    # Read strictly: _stored_trials says 0 for a database it cannot read (it is made for
    # polling), and the resume below would then fail for the wrong reason.
    saved = len(_sqlite_trials(url))
    assert saved >= 200
    done = subprocess.run(
        [*TUNER, "search", str(spec), "--storage", url, "--trials", str(saved + 100), "--sampler", "random"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    _check_study(url, saved + 100)


def test_the_readmes_bare_postgresql_url_works_with_the_installed_driver(tmp_path: Path, postgres_url: str) -> None:
    """The README writes ``postgresql://``; SQLAlchemy 2.1 reads that as psycopg (3), the
    ``[postgres]`` extra installs psycopg2: the storage names the installed driver."""
    bare = "postgresql://" + postgres_url.split("://", 1)[1]
    spec = _write_spec(tmp_path, name="bare-url")
    done = subprocess.run(
        [*TUNER, "search", str(spec), "--storage", bare, "--trials", "20", "--sampler", "random", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["trials_added"] == 20


def _search(spec: Path, url: str, trials: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TUNER, "search", str(spec), "--storage", url, "--trials", str(trials), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_a_second_search_of_a_running_study_on_postgresql_is_refused(tmp_path: Path, postgres_url: str) -> None:
    """As on SQLite (test_storage_locks.py): two `tuner search` runs of one study at once drew
    the same trials with the same seed. On PostgreSQL nothing refused the second (failed before:
    exit 0, 4 trials more). The lock is the server's, so a killed holder (SIGKILL: no cleanup of
    its own) frees it, and a worker or another study's search is not refused."""
    spec = _write_spec(tmp_path, name="search-lock")
    first = _search(spec, postgres_url, 4)
    assert first.returncode == 0, first.stderr
    code = (
        "import sys\n"
        "from tuner.storage import one_search_per_study\n"
        f"with one_search_per_study({postgres_url!r}, 'search-lock'):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = _search(spec, postgres_url, 8)
        assert refused.returncode == 1, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "another tuner search is adding to study 'search-lock'" in lines[0], lines
        assert "tuner worker" in lines[0] and "Traceback" not in refused.stderr
        assert len(load_study("search-lock", postgres_url).get_trials(deepcopy=False)) == 4
        worker = subprocess.run(
            [*TUNER, "worker", str(spec), "--storage", postgres_url, "--trials", "2", "--seed", "1"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert worker.returncode == 0, worker.stderr
        (tmp_path / "other").mkdir()
        other = _search(_write_spec(tmp_path / "other", name="search-lock-other"), postgres_url, 3)
        assert other.returncode == 0, other.stderr
    finally:
        holder.kill()
        holder.wait(timeout=60)
    deadline = time.monotonic() + 60  # the server notices the closed socket at once on loopback
    while True:
        resumed = _search(spec, postgres_url, 8)
        if resumed.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["trials_added"] == 2  # 4 + the worker's share of 2 held -> 8
    study = load_study("search-lock", postgres_url)
    assert len(study.get_trials(deepcopy=False)) == 8


def test_exhaustive_workers_starting_together_create_their_table_once(postgres_url: str) -> None:
    """Exhaustive workers starting together on a new database all create the claimed-ranges
    table (CREATE TABLE IF NOT EXISTS, not atomic on PostgreSQL: the losers got a unique
    violation on pg_type, and the worker died, in 5 of 5 rounds of 8 threads before the fix)."""
    import threading

    import sqlalchemy

    from tuner import exhaustive

    name = f"tuner_race_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engines = [sqlalchemy.create_engine(postgres_url.rsplit("/", 1)[0] + f"/{name}") for _ in range(8)]
    try:
        for engine in engines:  # connected before the race, so that they start together
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT 1"))
        barrier, errors = threading.Barrier(len(engines)), []

        def create(engine: sqlalchemy.Engine) -> None:
            barrier.wait()
            try:
                exhaustive._ensure_table(SimpleNamespace(engine=engine))
            except Exception as error:  # collected for the assertion
                errors.append(error)

        threads = [threading.Thread(target=create, args=(engine,)) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with engines[0].connect() as connection:
            columns = connection.execute(sqlalchemy.text(f"SELECT * FROM {exhaustive.CHUNKS_TABLE}")).keys()
        assert "begin_pos" in columns
    finally:
        for engine in engines:
            engine.dispose()
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_a_worker_stopped_by_the_budget_before_its_share_says_so(tmp_path: Path) -> None:
    """Three `--trials 3000` workers on a 2,000-trial study added 550, 800 and 650 and said only
    that; one more added 0 without a word (failed before: no "budget" in its output)."""
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    spec = str(_write_spec(tmp_path, trials=30))

    def worker(share: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*TUNER, "worker", spec, "--storage", url, "--trials", share],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip

    first = worker("50")
    assert first.returncode == 0, first.stderr
    assert "worker added 30 trials" in first.stdout
    assert "reached the spec's budget of 30 trials" in first.stdout
    again = worker("5")
    assert again.returncode == 0, again.stderr
    assert "worker added 0 trials" in again.stdout and "budget of 30 trials" in again.stdout
    _check_study(url, 30)
    within = subprocess.run(
        [*TUNER, "worker", str(_write_spec(tmp_path, trials=40)), "--storage", url, "--trials", "5"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert within.returncode == 0, within.stderr
    assert "worker added 5 trials" in within.stdout and "budget" not in within.stdout
