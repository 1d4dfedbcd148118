"""What every benchmark reports about the machine, and pinning a benchmark to one CPU."""

from __future__ import annotations

import os
import platform
import subprocess


def pin_to_one_cpu(cpu: int | None) -> str:
    """Pin this process to one CPU (default: the lowest one it may run on). Returns a description."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (os.sched_setaffinity unavailable)"
    allowed = sorted(os.sched_getaffinity(0))
    target = allowed[0] if cpu is None else cpu
    os.sched_setaffinity(0, {target})
    return f"pinned to CPU {target} (of {len(allowed)} allowed)"


def cpu_model() -> str:
    """The CPU's model name (lscpu), or what platform knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine() or "unknown"


if __name__ == "__main__":  # `python bench/machine.py`: the line a benchmark's write-up starts with
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {os.getloadavg()}")
