import importlib
import os
import signal
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# tests/cost_models, tests/search_spaces and tests/tuner hold each package's tests. They have no
# __init__.py, yet Python imports a folder on sys.path as a namespace package when no regular
# package of that name is on sys.path: with the project installed editable (found by its import
# hook, not through a sys.path entry) and tests/ on sys.path, `import cost_models` would give the
# empty tests/cost_models (`from cost_models import analyze_one` fails) under plain `pytest`.
# (`python -m pytest` puts the repository itself first, which hides the problem.) So import the
# real packages first, with tests/ off sys.path; sys.modules then holds them for every test.
_saved = list(sys.path)
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != TESTS]
try:
    for _package in ("cost_models", "search_spaces", "tuner"):
        importlib.import_module(_package)
finally:
    sys.path[:] = _saved

# tests/printed.py and friends are plain helper modules next to the tests.
sys.path.insert(0, str(TESTS))

# pytest-xdist's workers run with COLUMNS=80 and LINES=24 in their environment (execnet sets
# them), which a plain `pytest` run does not: rich would then draw every table 80 columns wide
# where the CLI's pipe default is 200 (tuner.tables._console). The tests read the tool's output
# as a user's pipe gets it, so the worker's terminal size is dropped.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

# A test run started as a shell's background job (`pytest &`, `nohup ... &` in a script) begins
# with SIGINT ignored, and every `tuner` child the signal tests start inherits that; the command
# keeps an inherited SIG_IGN on purpose (tuner.signals.stop_on_signals), so those tests' Ctrl-C
# would never arrive (9 of them failed so, 2026-12-07). The tests' own process takes Python's
# default back, so their children start as a terminal's would.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
