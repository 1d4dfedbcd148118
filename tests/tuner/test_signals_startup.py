"""SIGINT and SIGTERM at any moment from start-up to the search: one line, exit 130 / 143, never
a traceback, and whatever the database holds is whole (finished trials only, numbered 0..n-1)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from test_workers import BIG_SPACE, ROOT, SPEC, _wait_for_trials, _write_spec

# The search runs on BIG_SPACE: random search fills SPEC's 30,720 configurations in about 3 s
# now, before the last moment below. From inside the imports (the command needs about 2 s to load on
# a 2-core machine) to the search.
MOMENTS_S = (0.3, 0.7, 1.2, 2.0, 3.5)
# What the installed console script ``tuner`` runs (its argv[0] is the script's path, ending in
# "tuner"); the package's own .pyc files load, as they do for a user. (``python -m tuner.cli``
# compiles cli.py from source first, before any of it can run.)
COMMAND = [sys.executable, "-c", "import sys; sys.argv[0] = 'tuner'; from tuner.cli import main; sys.exit(main())"]


def _before_the_package_ran(returncode: int, signum: int, err: str) -> bool:
    """The signal came while Python itself was starting (``site`` and its .pth files take 0.3 s
    and more on a loaded machine), before the package's first line ran: the default action
    ended it silently, or Python's own SIGINT handler raised where no frame is the package's.
    Nothing can be open then. Only the package's own code is held to the one-line rule."""
    package_frames = any(f"/{package}/" in err for package in ("tuner", "cost_models", "search_spaces"))
    if package_frames:
        return False
    if returncode == -signum and err == "":  # the default action, before Python's own handler
        return True
    # Python's own SIGINT handler (KeyboardInterrupt, or "Fatal Python error" inside site);
    # Python ends an uncaught KeyboardInterrupt by SIGINT itself.
    return signum == signal.SIGINT and returncode in (-signum, 1) and "KeyboardInterrupt" in err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment_s", MOMENTS_S)
def test_a_signal_at_any_moment_is_one_line_and_the_right_exit_code(
    tmp_path: Path, moment_s: float, signum: int
) -> None:
    db = tmp_path / "early.db"
    process = subprocess.Popen(
        [*COMMAND, "search", str(_write_spec(tmp_path, space=BIG_SPACE)), "--storage", f"sqlite:///{db}"]
        + ["--trials", "2000000", "--sampler", "random"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    time.sleep(moment_s)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    if _before_the_package_ran(process.returncode, signum, err):
        assert not db.exists()
        return
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert err.strip().splitlines()[-1].startswith(("interrupted: every finished trial is saved", "interrupted before"))
    if db.exists():
        # Read with sqlite3 from Optuna's schema: optuna.load_study(...).trials took ~6 s of each
        # late moment's ~10 s on 20,000 trials.
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            query = "SELECT number, state FROM trials JOIN studies USING (study_id) WHERE study_name = ?"
            trials = connection.execute(query, (SPEC["name"],)).fetchall() if "trials" in tables else []
        assert sorted(number for number, _ in trials) == list(range(len(trials)))
        assert all(state == optuna.trial.TrialState.COMPLETE.name for _, state in trials)


def _as_the_command(script: str) -> subprocess.CompletedProcess[str]:
    """Runs ``script`` in a fresh Python that is the ``tuner`` command (argv[0] "tuner", so the
    command's start-up signal handling is installed when it imports ``tuner.cli``)."""
    prefix = "import sys; sys.argv[0] = 'tuner'\n"
    return subprocess.run([sys.executable, "-c", prefix + script], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_sigterm_after_the_imports_and_outside_a_search_is_one_line_and_143() -> None:
    """The window between ``main()`` starting and a search taking the signals over (a CI run sent
    SIGTERM there at 1.2 s: exit 143 with an empty stderr). The command sends itself SIGTERM from
    inside a command, deterministically."""
    script = (
        "import os, signal, time; import tuner.cli as c\n"
        "def hang(*a, **k):\n    os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)\n"
        "c.cli.commands['hardware'].callback = hang\n"
        "sys.exit(c.main(['hardware']))\n"
    )
    done = _as_the_command(script)
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines() == ["interrupted before the command finished; run the same command again"]


def test_a_ctrl_c_python_could_not_raise_still_stops_the_search() -> None:
    """A full CI run once saw Ctrl-C at 0.3 s swallowed (the KeyboardInterrupt landed in a
    destructor, where Python prints "Exception ignored" and runs on) and the search ran past 60 s.
    The command records such an interrupt as a stop request: the next search stops at once, and
    nothing is printed for it."""
    script = (
        "import tuner.cli\n"
        "from tuner.signals import commands_started, stop_on_signals\n"
        "commands_started()\n"
        "class Swallowed:\n    def __del__(self):\n        raise KeyboardInterrupt\n"
        "Swallowed()\n"
        "with stop_on_signals() as stop:\n    print(stop(), stop.exit_code)\n"
    )
    done = _as_the_command(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "130"]
    assert "Exception ignored" not in done.stderr


def test_sigint_a_parent_ignores_stays_ignored_once_the_search_runs(tmp_path: Path) -> None:
    """A shell's background job (`tuner search ... &` in a script, or a scheduler's) starts with
    SIGINT ignored, so that a Ctrl-C meant for the script spares it; Python and the command's
    start-up handler leave that alone. The search's own handler did not: the same `kill -INT`
    was ignored in the first ~2 s (an operator's run of 100,000 trials, SIGINT at 0.05-1.5 s: exit
    0, the whole budget) and stopped it later (at 3 and 5 s: exit 130). Now it is ignored from
    start to end, and SIGTERM still stops it (exit 143, one line)."""
    db = tmp_path / "ignored.db"
    url = f"sqlite:///{db}"
    # The shell ignores SIGINT and execs the command, which inherits the ignored disposition (as a
    # script's background job does). Not preexec_fn: it runs Python's at-fork hooks in this
    # process, where JAX (loaded by tests/tuner/test_measure.py) warns that a fork may deadlock.
    search = [*COMMAND, "search", str(_write_spec(tmp_path, space=BIG_SPACE)), "--storage", url]
    process = subprocess.Popen(
        ["sh", "-c", "trap '' INT; exec \"$@\"", "sh", *search, "--trials", "2000000", "--sampler", "random"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        held = _wait_for_trials(url, 200)  # the search runs (its handlers are in place)
        process.send_signal(signal.SIGINT)
        # A stop request ends a search within one batch (0.5 s of scoring and writing); ignored, it
        # writes on past what it held then.
        _wait_for_trials(url, held + 2000)
        assert process.poll() is None, process.communicate()[1]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "interrupted: every finished trial is saved; run the same command to resume"
