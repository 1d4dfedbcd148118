"""The tests mirror the packages: tests/cost_models, tests/search_spaces and tests/tuner hold the
tests of each; only cross-cutting tests (the layering between packages, this file) stay at the top
with the shared helper modules.

The test folders have no __init__.py (a package ``tuner`` under tests/ would shadow the real one),
so pytest imports test modules by their file name alone: names must be unique across folders.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PACKAGES = ("cost_models", "search_spaces", "tuner")
TOP_LEVEL_TESTS = {"test_layering.py", "test_tests_layout.py"}
#: Data the tests read (published config.json files, ...), no test modules.
DATA_FOLDERS = {"fixtures"}


def test_each_test_folder_is_named_after_a_package() -> None:
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and p.name != "__pycache__" and not p.name.startswith(".")}
    assert folders == set(PACKAGES) | DATA_FOLDERS
    for data in DATA_FOLDERS:
        assert not list((TESTS / data).rglob("*.py")), f"tests/{data} holds data, not code"
    for package in PACKAGES:
        assert (REPO / package / "__init__.py").is_file()
        assert list((TESTS / package).glob("test_*.py")), f"no tests in tests/{package}"


def test_no_init_files_and_unique_test_module_names() -> None:
    assert not list(TESTS.rglob("__init__.py"))
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []


def test_only_cross_cutting_tests_at_the_top() -> None:
    assert {p.name for p in TESTS.glob("test_*.py")} == TOP_LEVEL_TESTS


def test_the_real_packages_are_imported_not_the_test_folders() -> None:
    """tests/ is on sys.path (conftest.py): without care, ``import tuner`` under plain ``pytest``
    gives the namespace package tests/tuner."""
    for package in PACKAGES:
        module = sys.modules.get(package) or __import__(package)
        assert module.__file__ is not None, f"{package} is the namespace package {list(module.__path__)}"
        assert Path(module.__file__).resolve() == REPO / package / "__init__.py"


def test_validation_report_script_runs() -> None:
    """``python tests/validation_report.py`` (docs/validation.md) puts tests/ first on sys.path."""
    done = subprocess.run(
        [sys.executable, str(TESTS / "validation_report.py")], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "|" in done.stdout  # markdown tables
