"""The ``tuner`` process keeps freed heap for reuse instead of returning it to the OS each time.

A cost-model call of 100,000 configurations allocates about 490 MB of (slots, n) arrays
(tracemalloc) and frees them at the end. glibc hands that memory back to the OS after every call
(its trim threshold follows the largest block freed, about 35 MB here), so the next call
page-faults all of it in afresh: about 24,000 minor faults and 0.1-0.55 s of system time per
100,000-row calibrated estimate on the 2-CPU benchmark VM (0.66-1.1 s in all), none with the
settings below (docs/benchmarks.md, 2026-12-02 evening). The numbers computed are unchanged: only
where their memory comes from.

This is process-wide, so the pure cost model (``cost_models``) never does it: the ``tuner`` command
does (``tuner.cli.main``), and so do the benchmarks that time it. A program that imports
``cost_models`` may call :func:`reuse_freed_memory` itself.
"""

from __future__ import annotations

import ctypes
import functools
import platform

#: glibc's M_MMAP_THRESHOLD (-3): blocks up to 32 MiB (its largest allowed value; a 100,000-row
#: (slots, n) array is 17.6 MB) come from the heap instead of a fresh mmap each; M_TRIM_THRESHOLD
#: (-1): up to 1 GiB of freed heap is kept for reuse.
MALLOPT_SETTINGS = ((-3, 32 << 20), (-1, 1 << 30))


@functools.cache
def reuse_freed_memory() -> bool:
    """Apply :data:`MALLOPT_SETTINGS` once per process on glibc; elsewhere do nothing. True if set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in MALLOPT_SETTINGS)
