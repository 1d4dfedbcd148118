"""The ``tuner`` process keeps freed heap for reuse (glibc mallopt); the pure cost model does not."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from tuner.allocator import reuse_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_settings_apply_on_glibc_once() -> None:
    assert reuse_freed_memory() is True
    assert reuse_freed_memory() is True  # cached: applied once per process


def test_importing_and_running_the_cost_model_leaves_the_allocator_alone() -> None:
    """Only the command sets it: a program that imports cost_models and estimates never calls it."""
    script = (
        "import sys, tuner.allocator as a, cost_models\n"
        "from cost_models.deployments import tensor_parallel\n"
        "from cost_models.deployment import estimate\n"
        "import numpy as np\n"
        "estimate(tensor_parallel(cost_models.get_model('llama-3-8b'), cost_models.get_hardware('h100-sxm'),"
        " np.array([1, 2])))\n"
        "sys.exit(a.reuse_freed_memory.cache_info().currsize)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
