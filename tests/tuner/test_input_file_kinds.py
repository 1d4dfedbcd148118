"""Every option that names a file to read refuses what is not a regular file, before reading it:
``--calibration /dev/zero`` read forever (filling the memory) and a FIFO with no writer blocked
the open. Each is one ``error:`` line naming the path, and exit code 2.

The commands run in a child interpreter with a time limit and a cap on its memory, so that a
regression fails the test instead of hanging it (or filling the machine's memory)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POINTS = str(REPO / "data" / "e2e" / "pope2022_tpu_v4.csv")
SPEC = str(REPO / "studies" / "llama-3-8b-l4.yaml")

#: Runs ``tuner.cli.main`` on each argument list (BAD replaced by the path), one JSON line each.
DRIVER = r"""
import contextlib, io, json, sys
from tuner.cli import main
bad, cases = sys.argv[1], json.loads(sys.argv[2])
for args in cases:
    args = [bad if a == "BAD" else a for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    print(json.dumps({"args": args, "code": code, "out": out.getvalue(), "err": err.getvalue()}), flush=True)
"""


def cases(tmp: Path) -> list[list[str]]:
    storage = f"sqlite:///{tmp}/kinds.db"
    analyze = ["analyze", "--phase", "decode", "--batch", "1", "--seq-len", "128"]
    return [
        [*analyze, "--model", "llama-2-7b", "--hardware", "h100-sxm", "--calibration", "BAD"],
        [*analyze, "--model", "BAD", "--hardware", "h100-sxm"],
        [*analyze, "--model", "llama-2-7b", "--hardware", "BAD"],
        ["search", "BAD", "--storage", storage],
        ["search", SPEC, "--calibration", "BAD", "--trials", "1", "--storage", storage],
        ["calibrate", "--hardware", "tpu-v4", "--backend", "jax", "--points", "BAD"],
        ["calibrate", "--hardware", "tpu-v4", "--backend", "jax", "--points", POINTS, "--base", "BAD"],
        ["calibrate", "--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-2-7b", "--chips", "1"]
        + ["--bench-json", "BAD"],
        ["calibrate", "--hardware", "h100-sxm", "--backend", "trtllm", "--kernels", "BAD"],
        ["measure", "--out", str(tmp / "measured"), "--shapes-from", "BAD"],
    ]


def _limit_memory() -> None:
    cap = 3 * 2**30  # an unbounded read fails here with MemoryError, not the machine
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))


def run_cases(bad: str, tmp: Path) -> list[dict]:
    try:
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, bad, json.dumps(cases(tmp))],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired as error:
        finished = (error.stdout or b"").decode() if isinstance(error.stdout, bytes) else error.stdout or ""
        pytest.fail(f"hung on {bad} after these cases: {finished}")
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("kind", ["character-device", "fifo", "directory"])
def test_a_path_that_is_not_a_regular_file_is_refused_before_reading(tmp_path: Path, kind: str) -> None:
    if kind == "character-device":
        bad = "/dev/zero"
    elif kind == "fifo":
        bad = str(tmp_path / "pipe.yaml")
        os.mkfifo(bad)
    else:
        bad = str(tmp_path / "folder.yaml")
        os.mkdir(bad)
    results = run_cases(bad, tmp_path)
    assert len(results) == len(cases(tmp_path))
    for result in results:
        err = result["err"]
        assert result["code"] == 2 and result["out"] == "", result
        assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error:"), result
        assert bad in err, result
        if kind == "directory":
            assert "directory" in err, result
        else:
            assert "not a regular file" in err, result
