"""Layering: the cost model is a plain numeric library; the search layer does not know the CLI.

- ``cost_models`` must not import optuna, sqlalchemy, click, tuner or search_spaces.
- ``search_spaces`` must not import tuner or click.

Checked twice: statically, by scanning the import statements (and ``importlib.import_module`` /
``__import__`` calls with a literal name) of every ``.py`` file in the package, which also sees
imports inside functions; and dynamically, by importing every module of the package in a fresh
interpreter and looking at ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

RULES = {
    "cost_models": frozenset({"optuna", "sqlalchemy", "click", "tuner", "search_spaces"}),
    "search_spaces": frozenset({"tuner", "click"}),
}


def imported_roots(source: str, filename: str = "<string>") -> set[str]:
    """Top-level package names a module's source imports, anywhere in the file."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and not first.value.startswith(".")
            ):
                roots.add(first.value.split(".")[0])
    return roots


def package_files(package: str) -> list[Path]:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no .py files under {package}/"
    return files


def test_scanner_sees_every_kind_of_import():
    source = (
        "import numpy as np\n"
        "import optuna.samplers\n"
        "from sqlalchemy import orm\n"
        "from . import sibling\n"
        "def f():\n"
        "    import click\n"
        "    from tuner.cli import main\n"
        "    importlib.import_module('search_spaces.x')\n"
        "    __import__('rich')\n"
    )
    assert imported_roots(source) == {"numpy", "optuna", "sqlalchemy", "click", "tuner", "search_spaces", "rich"}


def test_scanner_finds_real_imports_of_cost_models():
    roots = set().union(*(imported_roots(p.read_text(encoding="utf-8"), str(p)) for p in package_files("cost_models")))
    assert {"numpy", "pydantic", "yaml", "cost_models"} <= roots
    # every module of the package is scanned, the lazily imported hf_config included
    names = {p.name for p in package_files("cost_models")}
    assert {"__init__.py", "analysis.py", "operators.py", "models.py", "hf_config.py"} <= names


@pytest.mark.parametrize("package", list(RULES))
def test_source_has_no_forbidden_imports(package):
    forbidden = RULES[package]
    offenders = {}
    for path in package_files(package):
        bad = imported_roots(path.read_text(encoding="utf-8"), str(path)) & forbidden
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert not offenders, f"{package} must not import {sorted(forbidden)}: {offenders}"


_IMPORT_ALL = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.parametrize("package", list(RULES))
def test_importing_package_loads_no_forbidden_modules(package):
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, package], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert package in loaded
    bad = loaded & RULES[package]
    assert not bad, f"importing {package} (all submodules) loaded {sorted(bad)}"


def test_cost_models_import_is_numeric_only():
    """The bare ``import cost_models`` (what the README's Python API does) stays light too."""
    code = "import cost_models, json, sys; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert not loaded & (RULES["cost_models"] | {"matplotlib", "rich"})
