"""Workers that survive their database: a PostgreSQL server restarted under four workers.

The server is a throwaway cluster of this test's own (``.ci/postgres.sh`` on another port), so
restarting it disturbs no other test. Outside CI the test is skipped with the reason when no
PostgreSQL binaries are installed; in CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pytest
from test_workers import ROOT, SPEC, TUNER, _check_study, _wait_for_trials, _write_spec

# TUNER_PG_RESTART_PORT moves the cluster, so that two checkouts testing on one machine at once do
# not stop each other's server (or share its data folder). Each pytest-xdist worker runs a cluster
# of its own, one port up per worker: the module's tests are dealt to several workers, and on one
# shared cluster one worker's stop (a test's restart, the module's teardown) cut another's
# connections under its own reads ("server closed the connection", seen once under load).
_XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
PORT = str(int(os.environ.get("TUNER_PG_RESTART_PORT", "55434")) + _XDIST_WORKER)
DATA = f"/tmp/tuner-pg-restart-{PORT}"


def _binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        if os.environ.get("CI"):
            pytest.fail("CI must have PostgreSQL installed (see .ci/postgres.sh)")
        pytest.skip("no PostgreSQL binaries: install postgresql to run the restart test")
    return found[-1].parent


def _start_server() -> str:
    """Start (or start again) the cluster on its port; the SQLAlchemy URL of its server."""
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "postgres.sh")],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TUNER_PG_PORT": PORT, "TUNER_PG_DATA": DATA},
    )
    if done.returncode != 0:
        message = f"could not start PostgreSQL: {done.stderr.strip().splitlines()[-1:]}"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    return done.stdout.strip()


def _pg_ctl(*args: str, check: bool = True) -> None:
    command = [str(_binaries() / "pg_ctl"), "-D", DATA, *args]
    if os.getuid() == 0:  # PostgreSQL refuses to run as root
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=check, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def restartable_url() -> str:
    pytest.importorskip("psycopg2", reason="pip install -e '.[postgres]' for the PostgreSQL driver")
    import sqlalchemy

    _binaries()
    server = _start_server()
    name = f"tuner_restart_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    yield server.rsplit("/", 1)[0] + f"/{name}"
    _pg_ctl("-m", "immediate", "stop", check=False)  # the cluster is this test's alone


@pytest.fixture(autouse=True)
def _server_up(restartable_url: str) -> None:
    """Each test starts with the server running, whatever an earlier test left (one that
    failed between stopping and starting it): .ci/postgres.sh starts it only if it is down."""
    _start_server()


def _worker(spec: Path, url: str, *args: str) -> subprocess.Popen:
    """``tuner worker SPEC --storage URL ARGS...``, its output captured as text."""
    return subprocess.Popen(
        [*TUNER, "worker", str(spec), "--storage", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_a_server_restart_costs_no_worker_and_the_budget_is_exact(tmp_path: Path, restartable_url: str) -> None:
    budget = 4_000
    spec = _write_spec(tmp_path, trials=budget)
    workers = [_worker(spec, restartable_url, "--seed", str(i)) for i in range(4)]
    try:
        before = _wait_for_trials(restartable_url, 300, timeout_s=120)
        _pg_ctl("-m", "fast", "stop")  # every connection dropped, the server gone
        time.sleep(5.0)
        _start_server()  # with the same port and options as before
        results = [(*w.communicate(timeout=300), w.returncode) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert before < budget  # the restart came while the workers were writing
    for _out, err, code in results:
        assert code == 0, err
        assert "Traceback" not in err
        _only_the_workers_own_lines(err)
    # each worker that met the restart said so once, in one line, and went on
    retried = [err for _, err, _ in results if "retrying" in err]
    assert retried, "no worker met the restart"
    assert all(err.count("retrying for up to") == 1 for err in retried)
    assert sum(int(out.split("added ")[1].split()[0]) for out, _, _ in results) == budget
    _check_study(restartable_url, budget)
    assert optuna.load_study(study_name=SPEC["name"], storage=restartable_url).user_attrs["spec_hash"]


def _only_the_workers_own_lines(err: str) -> None:
    """A worker's stderr through a restart holds its own one-line messages only (the retry line,
    the end's "stopped early"), none of a library's: a pool's logged traceback, or Optuna's
    warning of several lines with the SQL (the one-line rule, beyond "no Traceback")."""
    own = ("tuner: database ", "stopped early: ")
    assert all(line.startswith(own) for line in err.splitlines()), err


def _stderr_until(process: subprocess.Popen, marker: str, timeout_s: float) -> str:
    """What the process writes on stderr up to the first line holding ``marker`` (all of it if
    the marker does not come within the timeout or the process ends first). Read from the file
    descriptor itself, not through the text stream's buffer, so that ``communicate()`` later
    gets every byte after it."""
    assert process.stderr is not None
    descriptor, seen = process.stderr.fileno(), b""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(descriptor, selectors.EVENT_READ)
        while not (marker.encode() in seen and seen.endswith(b"\n")):  # the marker's line whole
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(timeout=left):
                break
            chunk = os.read(descriptor, 1)  # a byte at a time: nothing read past the line
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


def test_a_worker_started_while_the_server_is_down_waits_for_it(tmp_path: Path, restartable_url: str) -> None:
    """A worker started by a scheduler while its server restarts (or before it is up) waits for
    it (``tuner.storage.open_storage(wait=True)``) instead of dying at its first connection: the
    restart test above failed in 2 of 3 CI runs when one worker was still starting."""
    name = f"waiting_{uuid.uuid4().hex[:6]}"
    spec = _write_spec(tmp_path, name=name, trials=200)
    _pg_ctl("-m", "fast", "stop")
    restarted = False
    worker: subprocess.Popen | None = None
    try:
        worker = _worker(spec, restartable_url, "--seed", "7")
        first = _stderr_until(worker, "retrying for up to", timeout_s=120)
        _start_server()
        restarted = True
        out, rest = worker.communicate(timeout=180)
    finally:
        if not restarted:
            _start_server()
        if worker is not None and worker.poll() is None:
            worker.kill()
    err = first + rest
    assert "unavailable" in first and "retrying for up to" in first, err  # said at once, in one line
    assert worker.returncode == 0, err
    assert err.count("retrying for up to") == 1 and "Traceback" not in err
    assert "added 200 trials" in out
    assert len(optuna.load_study(study_name=name, storage=restartable_url).get_trials(deepcopy=False)) == 200


def test_a_worker_waiting_for_its_server_stops_on_sigterm(tmp_path: Path, restartable_url: str) -> None:
    """SIGTERM (a scheduler cancelling the job) stops a worker that waits for its server at
    once, exit 143, rather than after the 120 s of retries: it holds nothing to write."""
    spec = _write_spec(tmp_path, name=f"cancelled_{uuid.uuid4().hex[:6]}", trials=200)
    _pg_ctl("-m", "fast", "stop")
    worker: subprocess.Popen | None = None
    try:
        worker = _worker(spec, restartable_url)
        first = _stderr_until(worker, "retrying for up to", timeout_s=120)
        assert "retrying for up to" in first, first
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        out, rest = worker.communicate(timeout=60)
        waited_s = time.monotonic() - sent
    finally:
        _start_server()
        if worker is not None and worker.poll() is None:
            worker.kill()
    assert worker.returncode == 143, first + rest
    assert waited_s < 15  # one backoff step (at most 5 s), not the 120 s of patience
    assert "start the worker again" in rest and "Traceback" not in rest
    assert "added 0 trials" in out


def _count(url: str, name: str) -> int:
    """Trials of study ``name`` stored so far: one COUNT, 0 before the study or Optuna's tables
    exist (polling through optuna.load_study would itself create the tables, racing the workers)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    sqlalchemy.text(
                        "SELECT COUNT(*) FROM trials t JOIN studies s ON s.study_id = t.study_id"
                        " WHERE s.study_name = :n"
                    ),
                    {"n": name},
                ).scalar()
            )
    except sqlalchemy.exc.ProgrammingError:  # the tables are not made yet
        return 0
    finally:
        engine.dispose()


def test_exhaustive_workers_survive_a_server_restart(tmp_path: Path, restartable_url: str) -> None:
    """The exhaustive sampler's range claims, reads and writes are retried like the sampled
    searches' writes: four workers sweeping a space through a restart each exit 0, and together
    store every configuration once. The space is two first ranges (8,192 positions each), so two
    workers hold a range each and write it in one transaction, serialized by the study's row
    lock: the restart after the first commit meets the second write (or its claim) under way."""
    import sqlalchemy

    name = f"exhaustive_{uuid.uuid4().hex[:6]}"
    space = {**SPEC["space"], "batch": list(range(1, 65))}  # 15,360 configurations
    spec = _write_spec(tmp_path, name=name, sampler="exhaustive", space=space)
    workers = [_worker(spec, restartable_url) for _ in range(4)]
    try:
        deadline = time.monotonic() + 120
        while (before := _count(restartable_url, name)) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        _pg_ctl("-m", "fast", "stop")
        time.sleep(5.0)
        _start_server()
        results = [(*w.communicate(timeout=300), w.returncode) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for _out, err, code in results:
        assert code == 0, err
        assert "Traceback" not in err
        _only_the_workers_own_lines(err)
    assert any("retrying for up to" in err for _, err, _ in results), "no worker met the restart"
    added = sum(int(out.split("added ")[1].split()[0]) for out, _, _ in results)
    trials = optuna.load_study(study_name=name, storage=restartable_url).get_trials(deepcopy=False)
    assert 0 < before < len(trials) == added == 15_360  # the restart came mid-sweep; all stored
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # none duplicated, none lost
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == len(trials)  # each scored once
    engine = sqlalchemy.create_engine(restartable_url)
    with engine.connect() as connection:  # every range of the space done
        undone = connection.execute(
            sqlalchemy.text(
                "SELECT COUNT(*) FROM tuner_exhaustive_chunks c JOIN studies s ON s.study_id = c.study_id "
                "WHERE s.study_name = :n AND c.done = 0"
            ),
            {"n": name},
        ).scalar()
    engine.dispose()
    assert undone == 0


def test_a_connection_dropped_under_a_fast_read_is_invalidated_not_rolled_back(
    restartable_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The fast reads use the driver's cursor (tuner.optuna_internals._driver_rows); a server
    connection that drops under one must be invalidated as SQLAlchemy's own execute does, or the
    pool's rollback on return meets the dead socket and logs "Exception during reset or similar"
    with a traceback: what a worker printed in CI when the server restarted mid-read. The query
    here ends its own backend, so the drop comes exactly inside the read."""
    import logging

    import sqlalchemy
    from sqlalchemy.exc import DBAPIError

    from tuner.optuna_internals import _driver_rows

    engine = sqlalchemy.create_engine(restartable_url, pool_pre_ping=True)
    try:
        with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
            with pytest.raises(DBAPIError) as raised:
                with engine.connect() as connection:
                    _driver_rows(connection, "SELECT pg_terminate_backend(pg_backend_pid())", ())
            assert raised.value.connection_invalidated
            with engine.connect() as connection:  # the pool hands out a live connection after it
                assert _driver_rows(connection, "SELECT 1", ()) == [(1,)]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    finally:
        engine.dispose()


def test_a_connection_dropped_after_a_fast_read_is_invalidated_not_rolled_back(
    restartable_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The other half of the test above: the read succeeds and the server drops the connection
    before it is returned (a restart a moment after a worker's held_configurations). The driver
    opened a transaction for the read; unless SQLAlchemy knows of it, the pool's own rollback on
    return meets the dead socket and logs "Exception during reset or similar" with a traceback.
    Another connection ends this one's backend between the read and the return."""
    import logging

    import sqlalchemy
    from sqlalchemy.exc import DBAPIError

    from tuner.optuna_internals import _driver_rows

    engine = sqlalchemy.create_engine(restartable_url, pool_pre_ping=True)
    admin = sqlalchemy.create_engine(restartable_url, isolation_level="AUTOCOMMIT")
    try:
        with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
            with pytest.raises(DBAPIError) as raised:  # the rollback at the return, as SQLAlchemy raises it
                with engine.connect() as connection:
                    assert _driver_rows(connection, "SELECT 1", ()) == [(1,)]
                    pid = connection.connection.dbapi_connection.get_backend_pid()
                    with admin.connect() as other:
                        other.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                        gone = sqlalchemy.text("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = :pid")
                        deadline = time.monotonic() + 30
                        while other.execute(gone, {"pid": pid}).scalar() and time.monotonic() < deadline:
                            time.sleep(0.01)
            assert raised.value.connection_invalidated  # so tuner.storage.with_retries runs the read again
            with engine.connect() as connection:  # the pool hands out a live connection after it
                assert _driver_rows(connection, "SELECT 1", ()) == [(1,)]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    finally:
        engine.dispose()
        admin.dispose()


# A process that reads a study's trials through Optuna's storage (a worker's sampler history, a
# hydrated read) while its connection is ended under the read, as a restart does: the backend is
# ended by another connection just before the first SELECT of the trials table goes out.
_TRIAL_READ_LOST = """
import sys, optuna, sqlalchemy as sa
import tuner.study  # what a worker imports (it sets Optuna's verbosity)
from tuner.storage import open_storage, with_retries
url = sys.argv[1]
storage = open_storage(url)
optuna.create_study(storage=storage, study_name="lost_read").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
study_id = storage.get_study_id_from_name("lost_read")
killer, armed = sa.create_engine(url, isolation_level="AUTOCOMMIT"), [True]

@sa.event.listens_for(storage.engine, "before_cursor_execute")
def end_own_backend(connection, cursor, statement, parameters, context, executemany):
    if armed and statement.lstrip().startswith("SELECT") and "FROM trials" in statement:
        armed.clear()
        pid = connection.connection.dbapi_connection.get_backend_pid()
        with killer.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

trials = with_retries(lambda: storage.get_all_trials(study_id, deepcopy=False), url)
print(len(trials))
"""


def test_a_connection_lost_under_an_optuna_trial_read_is_one_line(restartable_url: str) -> None:
    """Optuna's _get_trials catches the OperationalError and logs a warning of seven lines (the
    SQL, its parameters, SQLAlchemy's link) before a fallback query that fails in the same
    session; the retry line then named that second error ("Can't reconnect until invalid
    transaction is rolled back"), not the lost connection."""
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _TRIAL_READ_LOST, restartable_url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3"]  # read again whole after the loss
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "retrying for up to" in lines[0], done.stderr
    assert "server closed the connection" in lines[0] or "terminating connection" in lines[0], lines[0]
