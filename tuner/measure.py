"""Microbenchmarks on the local accelerators, written as the measured kernel database's CSV files.

``tuner measure`` times GEMMs, prefill and decode attention and collectives with JAX on whatever
``jax.devices()`` returns (GPU, TPU or CPU) and writes one CSV per operator class in exactly the
column layout of ``/work/shared/measurements/kernels/*.csv.gz`` (AIConfigurator's database), so
the calibration fitter reads both the same way:

============================== =================================================================
file                           columns
============================== =================================================================
gemm_perf.csv                  :data:`GEMM_COLUMNS`
context_attention_perf.csv     :data:`ATTENTION_COLUMNS` (op_name ``context_attention``)
generation_attention_perf.csv  :data:`ATTENTION_COLUMNS` (op_name ``generation_attention``)
nccl_perf.csv                  :data:`NCCL_COLUMNS`
============================== =================================================================

Each file is plain CSV: ``#`` provenance lines (devices, jax/jaxlib versions, host, date, sweep,
what was and was not measured, JAX's dispatch floor), then the header row, then one row per point.
``latency`` is in milliseconds per call of the compiled (``jax.jit``) function: the median of
``repeats`` samples of calls queued back to back and ended by one ``block_until_ready``
(:func:`time_compiled`), after ``warmup`` untimed calls. Conventions follow the database's:
GEMM is ``x[m,k] @ W[k,n]``; decode attention is one query token per sequence over a KV cache of
``step`` tokens (``isl`` = 1); ``message_size`` counts elements, not bytes, with nccl-tests'
meaning of the buffer size (all_reduce: the buffer each device reduces; all_gather: the gathered
output, each device contributing ``message_size / num_gpus``; reduce_scatter: the input each device
holds, keeping ``message_size / num_gpus``; alltoall: what each device sends in all).

JAX is an optional dependency (``pip install -e '.[measure]'``); this module imports it lazily.
The library never prints: bad input raises :class:`InvalidInputError`, progress goes to a callback.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import gzip
import itertools
import math
import os
import platform
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cost_models.errors import InvalidInputError
from cost_models.input_files import open_regular_file

# Column lists of the shared database (copied from the headers of its files; do not reorder).
GEMM_COLUMNS = (
    "system",
    "framework",
    "version",
    "op_name",
    "kernel_source",
    "gemm_dtype",
    "m",
    "n",
    "k",
    "latency",
    "source_path",
)
ATTENTION_COLUMNS = (
    "system",
    "framework",
    "version",
    "op_name",
    "kernel_source",
    "batch_size",
    "isl",
    "num_heads",
    "num_key_value_heads",
    "head_dim",
    "window_size",
    "beam_width",
    "attn_dtype",
    "kv_cache_dtype",
    "step",
    "latency",
    "source_path",
)
NCCL_COLUMNS = (
    "system",
    "framework",
    "version",
    "op_name",
    "kernel_source",
    "nccl_dtype",
    "num_gpus",
    "message_size",
    "latency",
    "source_path",
)

FILES = {
    "gemm": "gemm_perf.csv",
    "context_attention": "context_attention_perf.csv",
    "generation_attention": "generation_attention_perf.csv",
    "nccl": "nccl_perf.csv",
}
COLUMNS = {
    "gemm": GEMM_COLUMNS,
    "context_attention": ATTENTION_COLUMNS,
    "generation_attention": ATTENTION_COLUMNS,
    "nccl": NCCL_COLUMNS,
}
OPS = ("gemm", "attention", "collectives")
SWEEPS = ("tiny", "small", "full")
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")
FRAMEWORK = "JAX"
KERNEL_SOURCE = "jax.jit"
INSTALL_HINT = "pip install -e '.[measure]'"

_INT_COLUMNS = frozenset(
    {
        "m",
        "n",
        "k",
        "batch_size",
        "isl",
        "num_heads",
        "num_key_value_heads",
        "head_dim",
        "window_size",
        "beam_width",
        "step",
        "num_gpus",
        "message_size",
        "topk",
        "num_tokens",
        "hidden_size",
        "inter_size",
        "num_experts",
        "moe_tp_size",
        "moe_ep_size",
    }
)
_FLOAT_COLUMNS = frozenset({"latency"})

# The database's system names for the device kinds JAX reports (first match wins).
_SYSTEM_NAMES = (
    (r"gb200", "gb200"),
    (r"b200", "b200_sxm"),
    (r"h200", "h200_sxm"),
    (r"h100.*pcie", "h100_pcie"),
    (r"h100", "h100_sxm"),
    (r"a100.*pcie", "a100_pcie"),
    (r"a100", "a100_sxm"),
    (r"l40s", "l40s"),
    (r"^tpu v5 ?lite|^tpu v5e", "tpu_v5e"),
    (r"^tpu v5p?$", "tpu_v5p"),
    (r"^tpu v4", "tpu_v4"),
    (r"^tpu v6 ?lite|^tpu v6e", "tpu_v6e"),
)


# --------------------------------------------------------------------------------------------
# Sweeps: the grids of each operator class.


@dataclass(frozen=True)
class Sweep:
    gemm_m: tuple[int, ...]
    gemm_n: tuple[int, ...]
    gemm_k: tuple[int, ...]
    # (batch_size, isl) of prefill; (batch_size, step) of decode; (num_heads, kv_heads, head_dim)
    prefill: tuple[tuple[int, int], ...]
    decode: tuple[tuple[int, int], ...]
    heads: tuple[tuple[int, int, int], ...]
    message_sizes: tuple[int, ...]  # elements
    nccl_dtypes: tuple[str, ...]
    all_device_counts: bool  # collectives on 2, 4, 8, ... devices too, not only on all of them


def _pow2(lo: int, hi: int, step: int = 1) -> tuple[int, ...]:
    return tuple(2**e for e in range(lo, hi + 1, step))


SWEEP_GRIDS: dict[str, Sweep] = {
    # A functional check that runs on a laptop CPU in seconds.
    # (Its 30 GEMM shapes per format are about the fewest tuner calibrate fits a GEMM class from:
    # 3 rows per parameter, 7 parameters on a chip without an SM count or an L2 size.)
    "tiny": Sweep(
        gemm_m=(1, 8, 32, 128, 512),
        gemm_n=(256, 512, 1024),
        gemm_k=(256, 2048),
        prefill=((1, 32), (1, 128)),
        decode=((1, 64), (8, 512)),
        heads=((8, 2, 64),),
        message_sizes=(1024, 65536),
        nccl_dtypes=("half",),
        all_device_counts=False,
    ),
    # A few minutes on one accelerator (about 3 on an H200): enough points to fit a profile, every
    # class of it (tests/tuner/test_measure.py checks the rows against tuner calibrate's needs).
    # Attention: five head layouts of head dim 128 (a held-out fold per layout; kv ratios 1-8),
    # 15 prefill and 16 decode sizes each. Two layouts with 16 rows each, as before, were too few
    # for calibrate's prefill class (9 parameters: 27 rows) on a real H200 (docs/benchmarks.md).
    "small": Sweep(
        gemm_m=(1, 8, 32, 128, 512, 2048, 8192),
        gemm_n=(1024, 4096, 16384),
        gemm_k=(1024, 4096, 16384),
        prefill=tuple((b, s) for b in (1, 2, 4, 8) for s in (128, 512, 2048, 8192) if b * s <= 32768),
        decode=tuple((b, s) for b in (1, 8, 32, 128) for s in (128, 1024, 4096, 16384)),
        heads=((32, 8, 128), (32, 32, 128), (64, 8, 128), (16, 2, 128), (40, 8, 128)),
        message_sizes=_pow2(10, 26, 2),
        nccl_dtypes=("half",),
        all_device_counts=True,
    ),
    # Close to the database's grids; an hour or more per accelerator.
    "full": Sweep(
        gemm_m=_pow2(0, 14),
        gemm_n=_pow2(7, 16),
        gemm_k=_pow2(7, 15),
        prefill=tuple((b, s) for b in (1, 2, 4, 8, 16) for s in _pow2(4, 14) if b * s <= 65536),
        decode=tuple((b, s) for b in _pow2(0, 8) for s in _pow2(4, 17) if b * s <= 2**21),
        heads=((8, 8, 128), (32, 8, 128), (32, 32, 128), (64, 8, 128), (96, 8, 128), (16, 16, 64)),
        message_sizes=_pow2(8, 28),
        nccl_dtypes=("half", "int8"),
        all_device_counts=True,
    ),
}


# --------------------------------------------------------------------------------------------
# Shapes read from a kernel file (``--shapes-from``): replay another chip's or engine's points.

_KV_FORMATS_MEASURED = ("bfloat16", "float16")  # attention is timed with bf16 q/k/v only
GemmPoint = tuple[str, int, int, int]  # (gemm_dtype, m, n, k)
AttentionPoint = tuple[int, int, int, int, int]  # (batch, isl or step, heads, kv_heads, head_dim)


@dataclass(frozen=True)
class Shapes:
    """The points of a kernel file to time instead of the sweep's grids (duplicates removed, in order).

    gemm: (gemm_dtype, m, n, k); context_attention: (batch_size, isl, heads, kv_heads, head_dim);
    generation_attention: (batch_size, step, heads, kv_heads, head_dim). ``left_out`` says which rows
    of the files cannot be replayed here and why (counted, not silently dropped).
    """

    gemm: tuple[GemmPoint, ...]
    context_attention: tuple[AttentionPoint, ...]
    generation_attention: tuple[AttentionPoint, ...]
    sources: tuple[str, ...]
    left_out: tuple[str, ...]


def read_shapes(paths: Iterable[str | os.PathLike], system: str | None = None) -> Shapes:
    """The GEMM and attention points of kernel files (this module's or the database's format).

    ``system`` keeps only rows whose ``system`` column is that name (the database holds six chips).
    Attention rows with a window, a beam or a KV cache other than bf16/fp16 are left out (counted):
    ``tuner measure`` times full bf16 attention only. A file without one usable row is an error.
    """
    gemm: dict[tuple, None] = {}
    attention: dict[str, dict[tuple, None]] = {"context_attention": {}, "generation_attention": {}}
    other_kv = windowed = 0
    sources = []
    for path in paths:
        usable = 0
        for number, row in enumerate(read_measurements(path, field="--shapes-from"), 1):
            if system is not None and row.get("system") != system:
                continue
            try:
                if row.get("gemm_dtype") is not None:
                    gemm_point = (str(row["gemm_dtype"]), int(row["m"]), int(row["n"]), int(row["k"]))
                    if min(gemm_point[1:]) < 1:
                        raise ValueError
                    gemm[gemm_point] = None
                    usable += 1
                elif row.get("op_name") in attention:
                    usable += 1
                    if row.get("window_size") not in (None, 0) or row.get("beam_width") not in (None, 1):
                        windowed += 1
                        continue
                    if row.get("kv_cache_dtype") not in _KV_FORMATS_MEASURED:
                        other_kv += 1
                        continue
                    length = row["isl"] if row["op_name"] == "context_attention" else row["step"]
                    attention_point = tuple(
                        int(v)
                        for v in (
                            row["batch_size"],
                            length,
                            row["num_heads"],
                            row["num_key_value_heads"],
                            row["head_dim"],
                        )
                    )
                    if min(attention_point) < 1 or attention_point[2] % attention_point[3]:
                        raise ValueError
                    attention[row["op_name"]][attention_point] = None
            except (KeyError, TypeError, ValueError):
                raise InvalidInputError(
                    "--shapes-from",
                    f"{path}: data row {number} is not a GEMM or attention point "
                    "(missing or non-positive m/n/k, batch_size, isl/step, heads or head_dim)",
                    "pass a gemm_perf, context_attention_perf or generation_attention_perf file",
                ) from None
        if not usable:
            where = f" of system {system}" if system is not None else ""
            raise InvalidInputError(
                "--shapes-from",
                f"{path} holds no GEMM or attention rows{where}",
                "pass a gemm_perf / *_attention_perf file (and a --shapes-system its rows name)",
            )
        sources.append(str(path))
    left_out = []
    if windowed:
        left_out.append(f"{windowed} attention rows with a window or beams (full attention only is timed)")
    if other_kv:
        left_out.append(f"{other_kv} attention rows with an fp8/int8 KV cache (bf16 only is timed)")
    return Shapes(
        gemm=tuple(gemm),
        context_attention=tuple(attention["context_attention"]),
        generation_attention=tuple(attention["generation_attention"]),
        sources=tuple(sources),
        left_out=tuple(left_out),
    )


# --------------------------------------------------------------------------------------------
# Results.


@dataclass
class OpResult:
    """One written file: how many rows, what was left out and why."""

    name: str  # key of FILES
    path: Path | None = None
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: int = 0
    first_error: str = ""
    kept: int = 0  # rows of an earlier run's file reused (--resume)
    skipped_memory: int = 0
    planned: int = 0  # points of this run
    reached: int = 0  # points gone through (measured, kept, skipped or failed)
    interrupted: bool = False  # stopped before its last point (the file holds the rows so far)


@dataclass
class MeasureResult:
    out_dir: Path
    system: str
    device_kind: str
    device_count: int
    platform: str
    jax_version: str
    elapsed_s: float
    dispatch_floor_ms: float
    results: list[OpResult]
    notes: list[str]
    not_started: tuple[str, ...] = ()  # operator classes a stop request kept from starting

    @property
    def interrupted(self) -> bool:
        """A stop request or Ctrl-C ended the run early; every file written holds its rows so far."""
        return bool(self.not_started) or any(r.interrupted for r in self.results)

    def summary(self) -> dict:
        """Plain data for ``--json`` and the table: one entry per file written."""
        return {
            "out": str(self.out_dir),
            "system": self.system,
            "device_kind": self.device_kind,
            "device_count": self.device_count,
            "platform": self.platform,
            "jax": self.jax_version,
            "elapsed_s": round(self.elapsed_s, 3),
            "dispatch_floor_ms": self.dispatch_floor_ms,
            "files": [
                {
                    "file": FILES[r.name],
                    "path": str(r.path) if r.path else None,
                    "rows": len(r.rows),
                    "kept": r.kept,
                    "planned": r.planned,
                    "interrupted": r.interrupted,
                    "failed": r.failed,
                    "notes": r.notes,
                }
                for r in self.results
            ],
            "notes": self.notes,
            "interrupted": self.interrupted,
        }


# --------------------------------------------------------------------------------------------
# Validation.


def require_jax():
    """``jax``, or :class:`InvalidInputError` saying how to install the extra."""
    try:
        import jax
        import jax.numpy
    except ImportError:
        raise InvalidInputError(
            "jax", "not installed (tuner measure runs its benchmarks with JAX)", f"install the extra: {INSTALL_HINT}"
        ) from None
    return jax


def parse_ops(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"gemm,attention"`` -> ``("gemm", "attention")``; unknown or empty names are an error."""
    names = [p.strip() for p in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise InvalidInputError("--ops", "empty", f"name one or more of {', '.join(OPS)}")
    for name in names:
        if name not in OPS:
            raise InvalidInputError("--ops", f"unknown op {name!r}", f"choose from {', '.join(OPS)}")
    return tuple(dict.fromkeys(names))


#: The files each operator class writes into --out.
OP_FILES = {
    "gemm": ("gemm",),
    "attention": ("context_attention", "generation_attention"),
    "collectives": ("nccl",),
}


def earlier_files(out: str | os.PathLike, ops: Iterable[str]) -> list[Path]:
    """The files in ``out`` that measuring ``ops`` would write over (an earlier run's)."""
    return [path for op in parse_ops(ops) for name in OP_FILES[op] if (path := Path(out) / FILES[name]).exists()]


def prepare_out_dir(out: str | os.PathLike) -> Path:
    """Create ``out`` (and parents) and check that a file can be written in it."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".tuner-measure-{os.getpid()}.tmp"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise InvalidInputError(
            "--out", f"cannot write to {out}: {error.strerror or error}", "pass a writable directory"
        ) from None
    return path


def system_name(device_kind: str) -> str:
    """The database's name for a JAX device kind (``NVIDIA H100 80GB HBM3`` -> ``h100_sxm``)."""
    kind = device_kind.strip().lower()
    if kind.startswith("nvidia "):
        kind = kind[len("nvidia ") :]
    for pattern, name in _SYSTEM_NAMES:
        if re.search(pattern, kind):
            return name
    return re.sub(r"[^a-z0-9]+", "_", kind).strip("_") or "unknown"


# --------------------------------------------------------------------------------------------
# Timing.


# A sample lasts at least this long: enough back-to-back calls that one synchronization (tens of
# microseconds on a GPU) is a small share of it, few enough that a large kernel is not run for long.
SAMPLE_TARGET_S = 1e-3
MAX_CALLS_PER_SAMPLE = 200
PROBE_CALLS = 10


def time_compiled(fn: Callable, args: tuple, repeats: int, warmup: int, *, pipelined: bool = True) -> float:
    """Milliseconds per call of ``fn(*args)`` compiled with jax.jit: the median of ``repeats`` samples.

    ``pipelined`` (the default): a sample is ``calls`` back-to-back calls dispatched without waiting,
    ended by one ``block_until_ready`` on the last result, divided by ``calls`` (chosen from a probe of
    :data:`PROBE_CALLS` queued calls after the warm-up so that a sample lasts about :data:`SAMPLE_TARGET_S`, at most
    :data:`MAX_CALLS_PER_SAMPLE`). Calls on one device run in order, so the last result ready means
    all are: this is the time per call of a kernel queued behind others, as the database's
    collectors time kernels (CUDA graphs or events around a loop), not the round trip of one call.
    Where JAX's dispatch (a few us on a CPU, 40-55 us on the lent H200's VM) is slower than the
    kernel, it is the dispatch time (:func:`dispatch_floor_ms`). ``pipelined=False``: each sample is
    one call ended by ``block_until_ready`` (dispatch, kernel and synchronization: 25-75 us more per
    call on the H200; bench/bench_measure_timing.py compares them).
    """
    import jax

    compiled = jax.jit(fn).lower(*args).compile()
    single_s = None
    for _ in range(max(warmup, 1 if pipelined else 0)):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        single_s = time.perf_counter() - start

    def sample(calls: int) -> float:
        start = time.perf_counter()
        out = None
        for _ in range(calls):
            out = compiled(*args)
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / calls

    calls = 1
    if pipelined and single_s is not None and single_s < SAMPLE_TARGET_S:
        # The synchronized call overstates a short kernel's time; size the sample from a queued probe.
        per_call_s = sample(PROBE_CALLS)
        calls = max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(SAMPLE_TARGET_S / max(per_call_s, 1e-9))))
    return statistics.median(sample(calls) for _ in range(repeats)) * 1e3


def dispatch_floor_ms(device, repeats: int, warmup: int) -> float:
    """Milliseconds per call of the least work a compiled call can do (two scalars added), timed
    as every point is: JAX's dispatch, under which no row can go. 40-55 us per call on the lent
    H200's VM (docs/benchmarks.md), a few us on a CPU."""
    import jax
    import numpy as np

    args = (jax.device_put(np.float32(1), device), jax.device_put(np.float32(2), device))
    return time_compiled(lambda x, y: x + y, args, repeats, warmup)


def _memory_limit(device) -> int | None:
    """The device's memory in bytes; on a CPU (no memory_stats) the host's physical memory, so the
    40% rule holds there too (the small sweep's largest XLA prefill holds 69 GB of scores)."""
    try:
        stats = device.memory_stats()
    except Exception:  # CPU and some backends have none
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    if getattr(device, "platform", None) == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):  # not a POSIX host
            return None
    return None


def _latency_text(ms: float) -> str:
    return f"{ms:.6g}"


# --------------------------------------------------------------------------------------------
# Operator classes.

_HOST_RANDOM_LIMIT = 1 << 24  # elements: smaller inputs come from numpy (no compilation)


def _random_array(shape: tuple[int, ...], dtype, where, seed: int, fill: float | None = None):
    """A random (or constant ``fill``) array of ``dtype`` placed on a device or sharding.

    Small arrays are drawn with numpy and copied over, so that making inputs compiles nothing;
    large ones are drawn on the device (one compilation, cheap next to the transfer it saves).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    dtype = jnp.dtype(dtype)
    size = math.prod(shape)
    integer = jnp.issubdtype(dtype, jnp.integer)
    if fill is not None:
        return jax.device_put(np.full(shape, fill, dtype), where)
    if size <= _HOST_RANDOM_LIMIT:
        rng = np.random.default_rng(seed)
        host = (
            rng.integers(-127, 128, shape, dtype=np.int8) if integer else rng.standard_normal(shape, dtype=np.float32)
        )
        return jax.device_put(host.astype(dtype), where)
    key = jax.random.key(seed)
    # bf16/f16/f32 drawn as is (no f32 temporary); fp8 through f32
    draw = dtype if dtype.itemsize >= 2 else jnp.dtype(jnp.float32)

    def make():
        if integer:
            return jax.random.randint(key, shape, -127, 128, jnp.int32).astype(dtype)
        return jax.random.normal(key, shape, draw).astype(dtype)

    sharding = where if isinstance(where, jax.sharding.Sharding) else jax.sharding.SingleDeviceSharding(where)
    return jax.jit(make, out_shardings=sharding)()


def _gemm_dtypes(device) -> tuple[list[str], list[str]]:
    """GEMM formats this backend really runs, and a note per format left out."""
    measured, skipped = ["bfloat16", "int8_wo"], []
    cc = getattr(device, "compute_capability", None)
    try:
        native_fp8 = device.platform == "gpu" and cc is not None and float(cc) >= 8.9
    except (TypeError, ValueError):  # an unexpected compute_capability string: do not guess
        native_fp8 = False
    if native_fp8:
        measured.insert(1, "fp8")
    else:
        skipped.append(f"fp8 (no native fp8 matmul on {device.device_kind}; XLA would emulate it)")
    skipped.append("fp8_block, nvfp4, int4_wo, sq (no JAX kernels for them)")
    return measured, skipped


def _gemm_fn(dtype: str):
    import jax.numpy as jnp

    if dtype == "bfloat16":
        return lambda x, w: jnp.dot(x, w, preferred_element_type=jnp.bfloat16)
    if dtype == "fp8":
        # As the database's fp8 rows: the bf16 activations are quantized (per-tensor scale) inside.
        def fp8(x, w, w_scale):
            x_scale = jnp.max(jnp.abs(x)).astype(jnp.float32) / 448.0 + 1e-12
            xq = (x.astype(jnp.float32) / x_scale).astype(jnp.float8_e4m3fn)
            out = jnp.dot(xq, w, preferred_element_type=jnp.float32)
            return (out * (x_scale * w_scale)).astype(jnp.bfloat16)

        return fp8
    if dtype == "int8_wo":
        # Weight-only int8: int8 weights in memory, dequantized (per-channel scale) in the jit.
        return lambda x, w, s: jnp.dot(x, w.astype(jnp.bfloat16) * s, preferred_element_type=jnp.bfloat16)
    raise AssertionError(dtype)


def _gemm_args(dtype: str, m: int, n: int, k: int, device):
    import jax.numpy as jnp

    seed = m * 131 + n * 7 + k
    x = _random_array((m, k), jnp.bfloat16, device, seed)
    if dtype == "bfloat16":
        return (x, _random_array((k, n), jnp.bfloat16, device, seed + 1))
    if dtype == "fp8":
        return (
            x,
            _random_array((k, n), jnp.float8_e4m3fn, device, seed + 1),
            _random_array((), jnp.float32, device, seed + 2, fill=1.0),
        )
    return (
        x,
        _random_array((k, n), jnp.int8, device, seed + 1),
        _random_array((n,), jnp.bfloat16, device, seed + 2, fill=0.01),
    )


def _gemm_points(sweep: Sweep, dtypes: list[str]):
    return [(d, m, n, k) for d in dtypes for m in sweep.gemm_m for n in sweep.gemm_n for k in sweep.gemm_k]


def attention_points(sweep: Sweep) -> tuple[list[AttentionPoint], list[AttentionPoint]]:
    """The sweep's prefill (batch, isl, heads, kv_heads, head_dim) and decode (batch, step, ...) points."""
    prefill = [(b, s, h, kvh, hd) for (b, s) in sweep.prefill for (h, kvh, hd) in sweep.heads]
    decode = [(b, s, h, kvh, hd) for (b, s) in sweep.decode for (h, kvh, hd) in sweep.heads]
    return prefill, decode


def attention_input_bytes(
    batch: int, q_len: int, kv_len: int, heads: int, kv_heads: int, head_dim: int, *, scores: bool = True
) -> int:
    """Bytes of bf16 q, k, v and the output, plus (``scores``) the f32 scores XLA's implementation
    materializes; cuDNN's fused kernel holds none (on the H200, three replayed prefill points of
    0.5-2.2 GB were skipped for 69-552 GB of scores they never needed)."""
    qkvo = 2 * batch * head_dim * (2 * q_len * heads + 2 * kv_len * kv_heads)
    return qkvo + (4 * batch * heads * q_len * kv_len if scores else 0)


def fits_in_memory(nbytes: int, limit: int | None) -> bool:
    """Whether a point's inputs are at most 40% of the device's memory (``limit`` None: unknown, yes)."""
    return limit is None or nbytes <= 0.4 * limit


def _attention_fn(impl: str, causal: bool):
    import jax

    def attend(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=impl)

    return attend


def _attention_args(batch: int, q_len: int, kv_len: int, heads: int, kv_heads: int, hd: int, device):
    import jax.numpy as jnp

    seed = batch * 7919 + q_len * 31 + kv_len
    return (
        _random_array((batch, q_len, heads, hd), jnp.bfloat16, device, seed),
        _random_array((batch, kv_len, kv_heads, hd), jnp.bfloat16, device, seed + 1),
        _random_array((batch, kv_len, kv_heads, hd), jnp.bfloat16, device, seed + 2),
    )


def _shard_map() -> Callable[..., Any]:
    """``jax.shard_map``, or ``jax.experimental.shard_map.shard_map`` before jax 0.7."""
    import jax

    if getattr(jax, "shard_map", None) is not None:
        return jax.shard_map
    from jax.experimental.shard_map import shard_map

    return shard_map


def _collective_fn(op: str, mesh):
    from jax import lax
    from jax.sharding import PartitionSpec as P

    shard_map = _shard_map()
    body = {
        "all_reduce": lambda x: lax.psum(x, "d"),
        "all_gather": lambda x: lax.all_gather(x, "d", tiled=True),
        "reduce_scatter": lambda x: lax.psum_scatter(x, "d", tiled=True),
        "alltoall": lambda x: lax.all_to_all(x, "d", 0, 0, tiled=True),
    }[op]
    kwargs = {"mesh": mesh, "in_specs": P("d"), "out_specs": P("d")}
    try:
        return shard_map(body, check_vma=False, **kwargs)
    except TypeError:  # older jax names it check_rep
        return shard_map(body, check_rep=False, **kwargs)


def _collective_input(op: str, message_size: int, count: int, dtype, mesh):
    """The global array whose per-device block is what ``op`` starts from on each device."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    per_device = message_size // count if op == "all_gather" else message_size
    return _random_array((per_device * count,), dtype, NamedSharding(mesh, P("d")), message_size + count)


_NCCL_DTYPES = {"half": "float16", "int8": "int8"}


def _device_counts(sweep: Sweep, available: int) -> list[int]:
    if not sweep.all_device_counts:
        return [available]
    counts = [c for c in (2**e for e in range(1, 12)) if c < available]
    return counts + [available]


# --------------------------------------------------------------------------------------------
# The run.

ProgressCallback = Callable[[str, int, int], None]  # (label, done, total)


def run_measurements(
    out_dir: str | os.PathLike,
    *,
    system: str | None = None,
    sweep: str = "small",
    ops: Iterable[str] = OPS,
    repeats: int = 10,
    warmup: int = 3,
    on_progress: ProgressCallback | None = None,
    shapes: Shapes | None = None,
    stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> MeasureResult:
    """Run the sweep on the local devices and write the CSV files into ``out_dir``.

    ``shapes`` (:func:`read_shapes`): time these GEMM and attention points instead of the sweep's
    grids (collectives keep the sweep's message sizes). ``stop`` (say a
    :class:`tuner.signals.StopRequest`) is asked between points: once it is true the class in hand
    writes the rows measured so far (its header says where it stopped) and no further class starts;
    Ctrl-C (``KeyboardInterrupt``) does the same and is raised again. ``resume``: a point whose row
    is in the file already in ``out_dir`` (same system, jax version and point) keeps that row
    instead of being measured again.
    """
    if sweep not in SWEEP_GRIDS:
        raise InvalidInputError("--sweep", f"unknown sweep {sweep!r}", f"choose from {', '.join(SWEEPS)}")
    ops = parse_ops(ops)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InvalidInputError("--repeats", f"must be a positive integer, not {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InvalidInputError("--warmup", f"must be a non-negative integer, not {warmup!r}")
    if system is not None and not re.fullmatch(r"[A-Za-z0-9_.+-]{1,64}", system):
        raise InvalidInputError(
            "--system", f"{system!r} is not a plain name", "use letters, digits and _ . + - (e.g. h100_sxm)"
        )
    out = prepare_out_dir(out_dir)
    jax = require_jax()
    import jaxlib

    started = time.perf_counter()
    devices = jax.devices()
    device = devices[0]
    floor_ms = dispatch_floor_ms(device, repeats, warmup)
    context = _Context(
        jax_version=jax.__version__,
        jaxlib_version=getattr(jaxlib, "__version__", "unknown"),
        device=device,
        devices=devices,
        system=system or system_name(device.device_kind),
        sweep_name=sweep,
        sweep=SWEEP_GRIDS[sweep],
        shapes=shapes,
        repeats=repeats,
        warmup=warmup,
        out=out,
        ops=ops,
        progress=on_progress or (lambda label, done, total: None),
        stop=stop or (lambda: False),
        resume=resume,
        dispatch_floor_ms=floor_ms,
    )
    results: list[OpResult] = []
    notes: list[str] = [f"shapes left out: {note}" for note in (shapes.left_out if shapes else ())]
    not_started: list[str] = []
    for op in ops:
        if context.stop():
            not_started.append(op)
            notes.append(f"{op} not started: interrupted (run the same command with --resume)")
        elif op == "gemm" and shapes is not None and not shapes.gemm:
            notes.append("gemm skipped: --shapes-from holds no GEMM rows")
        elif op == "gemm":
            results.append(_measure_gemm(context))
        elif op == "attention" and shapes is not None and not (shapes.context_attention or shapes.generation_attention):
            notes.append("attention skipped: --shapes-from holds no full-attention bf16 rows")
        elif op == "attention":
            results.extend(_measure_attention(context))
        elif len(devices) < 2:
            notes.append(
                f"collectives skipped: {len(devices)} {device.platform} device (they need "
                "2 or more; on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=4 "
                "gives 4 host devices for a functional check)"
            )
        else:
            results.append(_measure_collectives(context))
    return MeasureResult(
        out_dir=out,
        system=context.system,
        device_kind=device.device_kind,
        device_count=len(devices),
        platform=device.platform,
        jax_version=jax.__version__,
        elapsed_s=time.perf_counter() - started,
        dispatch_floor_ms=floor_ms,
        results=results,
        notes=notes,
        not_started=tuple(not_started),
    )


@dataclass
class _Context:
    jax_version: str
    jaxlib_version: str
    device: Any
    devices: list
    system: str
    sweep_name: str
    sweep: Sweep
    shapes: Shapes | None
    repeats: int
    warmup: int
    out: Path
    ops: tuple[str, ...]
    progress: ProgressCallback
    stop: Callable[[], bool]  # True once the run should end (a signal): checked between points
    dispatch_floor_ms: float  # dispatch_floor_ms(): no row can be faster
    resume: bool  # reuse the rows of the files already in ``out`` (same system, jax version, point)

    def source_path(self, name: str) -> str:
        # Like the database's <system>/<class>/<framework>/<version>/<file>.
        kind = {"gemm": "gemm", "nccl": "comm"}.get(name, "attention")
        return f"{self.system}/{kind}/jax/{self.jax_version}/{FILES[name]}"

    def base_row(self, name: str, op_name: str) -> dict:
        return {
            "system": self.system,
            "framework": FRAMEWORK,
            "version": self.jax_version,
            "op_name": op_name,
            "kernel_source": KERNEL_SOURCE,
            "source_path": self.source_path(name),
        }

    def header(self, name: str, lines: list[str]) -> list[str]:
        kinds = sorted({d.device_kind for d in self.devices})
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
        return [
            f"Measured kernel latencies from `tuner measure` (transformer-deploy-tuner) with JAX "
            f"on the local devices; file {FILES[name]}.",
            f"devices: {len(self.devices)} x {', '.join(kinds)} (platform {self.device.platform}); "
            f"measured on device 0{' and meshes of the first num_gpus devices' if name == 'nccl' else ''}; "
            f"system: {self.system}",
            f"jax {self.jax_version}, jaxlib {self.jaxlib_version}; python {platform.python_version()}; "
            f"host: {platform.node() or 'unknown'}; date: {now}",
            f"{_XLA_FLAGS_LINE}{_xla_flags()}",
            f"dispatch floor: {_latency_text(self.dispatch_floor_ms)} ms per call (a jitted add of two "
            "scalars, timed as the rows are: rows near it time JAX's dispatch, not their kernel; "
            "tuner calibrate fits such files as max(kernel, floor))",
            (
                f"sweep: {self.sweep_name}; ops: {','.join(self.ops)}"
                if self.shapes is None or name == "nccl"
                else f"shapes from: {', '.join(self.shapes.sources)} (their points, not a sweep's grid); "
                f"ops: {','.join(self.ops)}"
            ),
            f"timing: latency column in milliseconds per call = median of {self.repeats} samples of "
            f"the jax.jit-compiled function after {max(self.warmup, 1)} warm-up calls (and, for a "
            f"call under {SAMPLE_TARGET_S * 1e3:g} ms, a probe of {PROBE_CALLS} queued calls); a sample is "
            f"up to {MAX_CALLS_PER_SAMPLE} calls queued back to back (about {SAMPLE_TARGET_S * 1e3:g} ms "
            "in all) ended by one block_until_ready, divided by the calls: a kernel's time in a "
            "stream, as the database's collectors time them, or JAX's dispatch time where that is "
            "longer (compilation excluded; inputs are not rotated to defeat caches)",
            *lines,
            f"source_path: {self.source_path(name)} (this run; database layout "
            "<system>/<class>/<framework>/<version>/<file>)",
        ]

    def write(self, name: str, rows: list[dict], header_lines: list[str]) -> Path:
        """Write a class's file whole and atomically (a temporary file renamed over it)."""
        path = self.out / FILES[name]
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            for line in self.header(name, header_lines):
                handle.write(f"# {line}\n")
            writer = csv.DictWriter(handle, fieldnames=COLUMNS[name], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
        return path


def _record_failure(result: OpResult, error: Exception) -> None:
    result.failed += 1
    if not result.first_error:
        result.first_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]


def _file_notes(result: OpResult, checkpoint_at: int | None = None) -> list[str]:
    """What the file leaves out and why: the class's own notes, then the counts; at a checkpoint
    (``checkpoint_at`` points done, the run going on) a line that says so instead of "interrupted"."""
    notes = list(result.notes)
    if result.skipped_memory:
        notes.append(f"{result.skipped_memory} points skipped: inputs over 40% of device memory")
    if result.failed:
        notes.append(f"{result.failed} points failed (first: {result.first_error})")
    if checkpoint_at is not None:
        notes.append(
            f"checkpoint after {checkpoint_at} of {result.planned} points while the run went on: if it "
            "ended here (a crash, a kill), run the same command with --resume to measure the rest"
        )
    elif result.interrupted:
        notes.append(
            f"interrupted after {result.reached} of {result.planned} points: run the same command "
            "with --resume to measure the rest"
        )
    return notes


def _note_lines(notes: list[str], kept: int) -> list[str]:
    lines = [f"left out: {note}" for note in notes]
    if kept:
        lines.append(
            f"resumed: {kept} rows kept from the earlier run's file (same system, jax version, point); "
            "the lines above describe this run's"
        )
    return lines


#: Seconds between checkpoints of a class's file while it is measured: a killed run (SIGKILL, a
#: lost machine) keeps what was measured up to the last one (TUNER_MEASURE_CHECKPOINT_S sets it).
CHECKPOINT_S = 30.0


def _checkpoint_s() -> float:
    text = os.environ.get("TUNER_MEASURE_CHECKPOINT_S")
    if text is None:
        return CHECKPOINT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise InvalidInputError("TUNER_MEASURE_CHECKPOINT_S", f"{text!r} is not a positive number of seconds")
    return value


_XLA_FLAGS_LINE = "XLA_FLAGS: "  # the header line that records them (--resume compares it)


def _xla_flags() -> str:
    return os.environ.get("XLA_FLAGS") or "(unset)"


# Columns that name a measured point (with system and jax version): --resume reuses a row whose
# values of these match the point's.
_POINT_KEY_EXCLUDED = frozenset({"latency", "source_path", "framework", "kernel_source"})


def _point_key(name: str, row: dict) -> tuple[str, ...]:
    return tuple(str(row[c]) for c in COLUMNS[name] if c not in _POINT_KEY_EXCLUDED)


def _earlier_rows(ctx: _Context, name: str, planned: set[tuple[str, ...]]) -> dict[tuple[str, ...], dict]:
    """--resume: the rows of this class's file in --out (empty without --resume or a file).

    Refused (one line, exit 2) where they cannot be carried on: a file of another layout, rows this
    run does not plan (another system, jax version, sweep or shapes: rewriting the file would drop
    them), or another ``XLA_FLAGS`` (Triton against cuBLAS GEMMs changed the H200's numbers)."""
    path = ctx.out / FILES[name]
    if not ctx.resume or not path.exists():
        return {}
    rows = read_measurements(path, field="--resume")
    missing = [c for c in COLUMNS[name] if rows and c not in rows[0]]
    if missing:
        raise InvalidInputError(
            "--resume",
            f"{path} is not a {FILES[name]} of tuner measure (no {', '.join(missing)} column)",
            "move it away, or drop --resume",
        )
    flags = _xla_flags()
    earlier_flags = next(
        (line.removeprefix(_XLA_FLAGS_LINE) for line in read_header(path) if line.startswith(_XLA_FLAGS_LINE)), None
    )
    if earlier_flags is not None and earlier_flags != flags:
        raise InvalidInputError(
            "--resume",
            f"{path} was measured with XLA_FLAGS={earlier_flags}, this run has {flags}",
            "set the same XLA_FLAGS, or use another --out",
        )
    earlier = {_point_key(name, row): {c: row[c] for c in COLUMNS[name]} for row in rows}
    dropped = len(earlier.keys() - planned)
    if dropped:
        raise InvalidInputError(
            "--resume",
            f"{path} holds {dropped} rows this run does not plan (another system, jax version, sweep or "
            "shapes), which rewriting it would drop",
            "run the command that wrote it with --resume, or use another --out",
        )
    return earlier


def _time_and_write(
    ctx: _Context,
    result: OpResult,
    points: list,
    row_of: Callable[[Any], dict],
    nbytes_of: Callable[[Any], int],
    time_of: Callable[[Any], tuple[float, dict]],
    describe: Callable[[], list[str]],
) -> None:
    """Time each point into ``result.rows`` and write the class's file (``describe()``'s header
    lines, then the notes). ``row_of`` gives a point's row without the latency, ``time_of`` its
    milliseconds and any columns the timing sets (an attention row's kernel_source).
    Points over 40% of device memory are counted and skipped, a point that fails is counted, and
    an earlier run's row is reused under --resume. A stop request, Ctrl-C or any
    other exception ends the loop with the rows so far (``result.interrupted``), written before the
    exception goes on, with the earlier run's rows of the points not reached; every
    :data:`CHECKPOINT_S` the file is written as it stands, so a killed run keeps those rows too."""
    keys = [_point_key(result.name, {**row_of(p), "latency": None}) for p in points]
    earlier = _earlier_rows(ctx, result.name, set(keys))
    limit = _memory_limit(ctx.device)
    checkpoint_s = _checkpoint_s()
    result.planned = len(points)
    in_file: set[tuple[str, ...]] = set()  # keys of the points whose row result.rows holds
    processed = 0  # points gone through, in order

    def add(index: int, row: dict, kept: bool) -> None:
        result.rows.append(row)
        in_file.add(keys[index])
        result.kept += kept

    def rest(start: int) -> list[int]:
        # The points not reached whose row the earlier run measured: an interrupted or killed
        # --resume run never loses what the run before it measured.
        return [i for i in range(start, len(points)) if keys[i] in earlier and keys[i] not in in_file]

    def stop_here() -> None:
        result.interrupted = True
        result.reached = processed
        for i in rest(processed):
            add(i, earlier[keys[i]], kept=True)

    def checkpoint() -> None:
        later = [earlier[keys[i]] for i in rest(processed)]
        notes = _file_notes(result, checkpoint_at=processed)
        ctx.write(result.name, result.rows + later, describe() + _note_lines(notes, result.kept + len(later)))

    def run() -> None:
        nonlocal processed
        last_write = time.monotonic()
        ctx.progress(result.name, 0, len(points))
        for index, point in enumerate(points):
            if ctx.stop():
                stop_here()
                return
            kept = earlier.get(keys[index])
            if kept is not None:
                add(index, kept, kept=True)
            elif not fits_in_memory(nbytes_of(point), limit):
                result.skipped_memory += 1
            else:
                try:
                    ms, extra = time_of(point)
                    add(index, {**row_of(point), **extra, "latency": _latency_text(ms)}, kept=False)
                except Exception as error:  # one bad point (out of memory, unsupported) is not fatal
                    _record_failure(result, error)
            processed = index + 1
            if processed < len(points) and time.monotonic() - last_write >= checkpoint_s:
                checkpoint()
                last_write = time.monotonic()
            ctx.progress(result.name, processed, len(points))
        result.reached = len(points)

    try:
        run()
    except BaseException:  # Ctrl-C, or anything else: the rows so far and the earlier ones stay
        if not result.interrupted:
            stop_here()
        raise
    finally:
        result.notes = _file_notes(result)
        result.path = ctx.write(result.name, result.rows, describe() + _note_lines(result.notes, result.kept))


def _measure_gemm(ctx: _Context) -> OpResult:
    result = OpResult("gemm")
    dtypes, skipped = _gemm_dtypes(ctx.device)
    if ctx.shapes is None:
        points = _gemm_points(ctx.sweep, dtypes)
    else:
        points = [p for p in ctx.shapes.gemm if p[0] in dtypes]
        other = Counter(p[0] for p in ctx.shapes.gemm if p[0] not in dtypes)
        if other:
            result.notes.append(
                "shapes of formats not timed here: " + ", ".join(f"{d} x{c}" for d, c in sorted(other.items()))
            )
    width = {"bfloat16": 2, "fp8": 1, "int8_wo": 1}
    fns = {d: _gemm_fn(d) for d in dtypes}

    def row_of(point: GemmPoint) -> dict:
        dtype, m, n, k = point
        return {**ctx.base_row("gemm", "gemm"), "gemm_dtype": dtype, "m": m, "n": n, "k": k}

    def nbytes_of(point: GemmPoint) -> int:
        dtype, m, n, k = point
        return 2 * m * k + width[dtype] * k * n + 2 * m * n

    def time_of(point: GemmPoint) -> tuple[float, dict]:
        dtype, m, n, k = point
        return time_compiled(fns[dtype], _gemm_args(dtype, m, n, k, ctx.device), ctx.repeats, ctx.warmup), {}

    lines = [
        "gemm: out[m,n] = x[m,k] @ W[k,n]; x bfloat16, output bfloat16",
        f"gemm_dtype measured: {', '.join(dtypes)}"
        + (
            "; fp8 = x quantized to float8_e4m3fn (per-tensor scale) inside the call, W float8_e4m3fn, f32 accumulation"
            if "fp8" in dtypes
            else ""
        )
        + "; int8_wo = W int8 in memory, dequantized to bfloat16 (per-channel scale) inside the "
        "jitted call (XLA may or may not fuse the dequantization into the GEMM; not a dedicated "
        "weight-only kernel)",
        f"gemm_dtype not measured: {'; '.join(skipped)}",
    ]
    _time_and_write(ctx, result, points, row_of, nbytes_of, time_of, lambda: lines)
    return result


def _attention_impls(device) -> list[str]:
    return ["cudnn", "xla"] if device.platform == "gpu" else ["xla"]


def _time_attention(ctx: _Context, causal: bool, args: tuple, used: dict, scores_fit: bool) -> tuple[float, str]:
    """Milliseconds of the first implementation that runs the point (cuDNN, then XLA on GPUs), and
    its name; XLA is not tried where its scores would not fit (``scores_fit``)."""
    last_error: Exception | None = None
    for impl in _attention_impls(ctx.device):
        if impl == "xla" and not scores_fit:
            last_error = MemoryError("cuDNN did not run it, and XLA's scores would exceed 40% of device memory")
            continue
        try:
            ms = time_compiled(_attention_fn(impl, causal), args, ctx.repeats, ctx.warmup)
        except Exception as error:  # cuDNN refuses some shapes: fall back to XLA
            last_error = error
            continue
        used[impl] = used.get(impl, 0) + 1
        return ms, impl
    if last_error is None:  # unreachable: XLA's implementation is always tried
        raise RuntimeError(f"no attention implementation to time on {ctx.device}")
    raise last_error


def _measure_attention(ctx: _Context) -> list[OpResult]:
    sweep = ctx.sweep
    cudnn_first = _attention_impls(ctx.device)[0] == "cudnn"
    limit = _memory_limit(ctx.device)
    if ctx.shapes is None:
        prefill, decode = attention_points(sweep)
    else:
        prefill = list(ctx.shapes.context_attention)
        decode = list(ctx.shapes.generation_attention)
    results = []
    for name, points, causal in (("context_attention", prefill, True), ("generation_attention", decode, False)):
        result = OpResult(name)
        used: dict[str, int] = {}

        def row_of(point: AttentionPoint, name: str = name, causal: bool = causal) -> dict:
            b, s, h, kvh, hd = point
            return {
                **ctx.base_row(name, name),
                "batch_size": b,
                "isl": s if causal else 1,
                "num_heads": h,
                "num_key_value_heads": kvh,
                "head_dim": hd,
                "window_size": 0,
                "beam_width": 1,
                "attn_dtype": "bfloat16",
                "kv_cache_dtype": "bfloat16",
                "step": 0 if causal else s,
            }

        def nbytes_of(point: AttentionPoint, causal: bool = causal) -> int:
            b, s, h, kvh, hd = point
            # Where cuDNN is tried first, a point needs no scores unless it falls back to XLA.
            return attention_input_bytes(b, s if causal else 1, s, h, kvh, hd, scores=not cudnn_first)

        def time_of(point: AttentionPoint, causal: bool = causal, used: dict = used) -> tuple[float, dict]:
            b, s, h, kvh, hd = point
            args = _attention_args(b, s if causal else 1, s, h, kvh, hd, ctx.device)
            scores_fit = fits_in_memory(attention_input_bytes(b, s if causal else 1, s, h, kvh, hd), limit)
            ms, impl = _time_attention(ctx, causal, args, used, scores_fit)
            # Which implementation ran this row (the database's kernel_source names its kernel too).
            return ms, {"kernel_source": f"{KERNEL_SOURCE}/{impl}"}

        what = (
            "prefill: causal self-attention of isl tokens per sequence, q/k/v [batch, isl, heads, head_dim], step 0"
            if causal
            else "decode: one query token per sequence (isl 1) over a KV cache of step tokens, "
            "q [batch, 1, heads, head_dim], k/v [batch, step, kv_heads, head_dim], no mask"
        )

        def describe(name: str = name, what: str = what, used: dict = used) -> list[str]:
            impls = ", ".join(f"{impl} x{count}" for impl, count in sorted(used.items())) or "none"
            return [
                f"{name}: jax.nn.dot_product_attention (softmax(QK^T/sqrt(d))V, GQA when "
                f"num_key_value_heads < num_heads); {what}",
                f"implementation per row: {impls} (cudnn tried first on GPUs, else xla)",
                "attn_dtype and kv_cache_dtype bfloat16 only; window_size 0 (full attention); "
                "beam_width 1; fp8 attention and fp8 KV cache not measured",
            ]

        _time_and_write(ctx, result, points, row_of, nbytes_of, time_of, describe)
        results.append(result)
        if result.interrupted:
            break
    return results


def _measure_collectives(ctx: _Context) -> OpResult:
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh

    result = OpResult("nccl")
    available = len(ctx.devices)
    counts = _device_counts(ctx.sweep, available)
    points = [
        (op, dt, g, math.ceil(size / g) * g)  # every device holds a whole share
        for g in counts
        for dt in ctx.sweep.nccl_dtypes
        for op in COLLECTIVES
        for size in ctx.sweep.message_sizes
    ]
    meshes = {g: Mesh(np.array(ctx.devices[:g]), ("d",)) for g in counts}

    def row_of(point: tuple[str, str, int, int]) -> dict:
        op, dt, g, size = point
        return {**ctx.base_row("nccl", op), "nccl_dtype": dt, "num_gpus": g, "message_size": size}

    def nbytes_of(point: tuple[str, str, int, int]) -> int:
        op, dt, g, size = point
        return 3 * size * jnp.dtype(getattr(jnp, _NCCL_DTYPES[dt])).itemsize

    def time_of(point: tuple[str, str, int, int]) -> tuple[float, dict]:
        op, dt, g, size = point
        x = _collective_input(op, size, g, getattr(jnp, _NCCL_DTYPES[dt]), meshes[g])
        return time_compiled(_collective_fn(op, meshes[g]), (x,), ctx.repeats, ctx.warmup), {}

    lines = [
        "collectives: jax.shard_map over a 1-D mesh of the first num_gpus devices: all_reduce = "
        "lax.psum, all_gather = lax.all_gather(tiled), reduce_scatter = lax.psum_scatter(tiled), "
        "alltoall = lax.all_to_all(tiled); XLA picks the transport (NCCL on GPUs, ICI on TPUs)",
        "message_size in elements of nccl_dtype (half = float16, int8), nccl-tests' buffer size: "
        "all_reduce the buffer each device reduces; all_gather the gathered output (each device "
        "contributes message_size/num_gpus); reduce_scatter each device's input (it keeps "
        "message_size/num_gpus); alltoall what each device sends in all; rounded up to a "
        "multiple of num_gpus",
        f"num_gpus measured: {', '.join(map(str, counts))}",
    ]
    _time_and_write(ctx, result, points, row_of, nbytes_of, time_of, lambda: lines)
    return result


# --------------------------------------------------------------------------------------------
# Presentation for the CLI (rich is a dependency of the project; jax is not needed here).


@contextlib.contextmanager
def progress_bars(disable: bool = False) -> Iterator[ProgressCallback]:
    """Rich progress bars on stderr, one per file; yields the ``on_progress`` callback.

    When stderr is not a terminal (a pipe, a log): plain lines on it, one when a file's points
    are all measured and one at most every :data:`tuner.progress_lines.PLAIN_INTERVAL_S` between
    (nothing was printed: `tuner measure --sweep small > log` ran minutes in silence). Nothing
    with ``disable``.
    """
    if disable:
        yield lambda label, done, total: None
        return
    if not sys.stderr.isatty():
        from tuner.progress_lines import ProgressLines

        lines = ProgressLines("measure")

        def say(label: str, done: int, total: int) -> None:
            if done == 0:
                lines.say(f"{FILES.get(label, label)}: measuring {total:,} points")
            elif done >= total:
                lines.say(f"{FILES.get(label, label)}: all {total:,} points measured")
            elif lines.clock() - lines.last_s >= lines.interval_s:
                lines.say(f"{FILES.get(label, label)}: {done:,} of {total:,} points")

        yield say
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bars.add_task(FILES.get(label, label), total=total)
        bars.update(tasks[label], completed=done, total=total)

    with bars:
        yield update


#: The fewest rows tuner calibrate fits an operator class from: 3 per parameter
#: (tuner.calibrate._require_rows), 7 parameters at the fewest (GEMM or prefill attention on a
#: chip without an SM count or an L2 size).
CALIBRATE_MIN_ROWS = 21


def _gemm_formats_short(result: OpResult, platform: str, system: str) -> list[str]:
    """The GEMM formats of a written file with fewer rows than tuner calibrate fits their group
    from ("bfloat16 30 rows of 39"). calibrate fits each gemm_dtype apart, from 3 rows per
    parameter (tuner.calibrate.gemm_specs), and a GPU's fit has more parameters than a CPU's (wave
    quantization, split-K and the L2 terms need the SM count and L2 size every catalog GPU has):
    the tiny sweep's 30 rows a format fit on a CPU, but on an H100 need 39, and the summary printed
    a command that failed (the file's 60 rows passed CALIBRATE_MIN_ROWS)."""
    from collections import Counter

    from cost_models.hardware import get_hardware
    from tuner.calibrate import FOLDS, gemm_specs
    from tuner.kernel_data import SYSTEMS

    # The database's chip of that system name, else a catalog chip with an SM count and an L2
    # size (a GPU) or with neither (a CPU or TPU): the parameter count depends on nothing else.
    chip = get_hardware(SYSTEMS.get(system) or ("h100-sxm" if platform == "gpu" else "xeon-gold-6242"))
    counts = Counter(str(row.get("gemm_dtype", "bfloat16")) for row in result.rows)
    short = []
    for fmt, rows in sorted(counts.items()):
        need = max(3 * len(gemm_specs(fmt, "jax", chip)), 2 * FOLDS)
        if rows < need:
            short.append(f"{fmt} {rows} rows of {need}")
    return short


def print_summary(result: MeasureResult) -> None:
    """Rows per file and where they were written; what was skipped."""
    import click

    summary = result.summary()
    click.echo(
        f"measured {summary['device_count']} x {summary['device_kind']} "
        f"(system {summary['system']}, jax {summary['jax']}) in {summary['elapsed_s']:.1f} s; "
        f"dispatch floor {summary['dispatch_floor_ms'] * 1e3:.3g} us per call"
    )
    for entry in summary["files"]:
        click.echo(f"  {entry['rows']:>6} rows  {entry['path']}")
        for note in entry["notes"]:
            click.echo(f"          left out: {note}")
    for note in summary["notes"]:
        click.echo(f"  {note}")
    written = [entry for entry in summary["files"] if entry["path"]]
    # The tiny sweep's attention files (2 rows each) made the printed command fail, exit 2:
    # tuner calibrate fits no class from fewer than CALIBRATE_MIN_ROWS rows.
    short_gemm = {
        str(r.path): _gemm_formats_short(r, result.platform, result.system) for r in result.results if r.name == "gemm"
    }
    enough = [
        entry["path"] for entry in written if entry["rows"] >= CALIBRATE_MIN_ROWS and not short_gemm.get(entry["path"])
    ]
    few = [
        f"{Path(entry['path']).name} ({entry['rows']} rows)" for entry in written if entry["rows"] < CALIBRATE_MIN_ROWS
    ]
    few += [
        f"{Path(path).name} ({'; '.join(short)})"
        for path, short in short_gemm.items()
        if short and path in {entry["path"] for entry in written if entry["rows"] >= CALIBRATE_MIN_ROWS}
    ]
    if few:
        click.echo(
            f"  too few rows for tuner calibrate (it fits a class from {CALIBRATE_MIN_ROWS} or more): "
            f"{', '.join(few)}; measure them with --sweep small"
        )
    if enough:
        click.echo(f"fit a profile from them: {calibrate_command(result.system, enough)}")


def calibrate_command(system: str, paths: list[str]) -> str:
    """The ``tuner calibrate`` line that fits a profile from measured files: ``--kernels`` once per
    file (the option takes one file; a shell glob after one ``--kernels`` is refused as extra
    arguments), and ``--hardware`` and ``--backend``, which calibrate requires. The chip is the
    catalog name of a database system (h200_sxm: h200), else a placeholder to fill in."""
    import shlex

    from tuner.kernel_data import SYSTEMS

    chip = SYSTEMS.get(system)
    words = ["tuner", "calibrate", "--hardware", chip or "CHIP", "--backend", "jax", "--system", system]
    for path in paths:
        words += ["--kernels", path]
    words += ["-o", f"{chip or system}-jax.yaml"]
    line = shlex.join(words)
    return line if chip else f"{line}  (CHIP: the catalog chip, tuner hardware, or a chip YAML file)"


# --------------------------------------------------------------------------------------------
# Reading back (the same parsing the calibration fitter needs).


def _open_text(path: Path, field: str = "measurements"):
    # A regular file only: /dev/zero never ends, a FIFO without a writer blocks the open.
    with open_regular_file(path, field, "pass a kernel measurement CSV (gzip or plain)") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_header(path: str | os.PathLike) -> list[str]:
    """The leading ``#`` provenance lines of a measurements file, without the ``# ``."""
    lines = []
    with _open_text(Path(path)) as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            lines.append(line[1:].strip())
    return lines


def read_measurements(path: str | os.PathLike, field: str = "measurements") -> list[dict]:
    """Rows of a measurements CSV (plain or gzip, leading ``#`` lines skipped) as dicts.

    Count columns (m, n, k, batch_size, isl, step, num_gpus, message_size, ...) become ``int``,
    ``latency`` ``float`` (milliseconds); an empty cell becomes ``None``; the rest stay ``str``.
    Works for this module's files and for the shared database's ``*.csv.gz`` alike. Errors name
    ``field`` (the option the file came from).
    """
    path = Path(path)
    try:
        handle = _open_text(path, field)
    except OSError as error:
        raise InvalidInputError(field, f"cannot read {path}: {error.strerror or error}", "check the path") from None
    try:
        with handle:
            lines = itertools.dropwhile(lambda line: line.startswith("#"), handle)
            reader = csv.DictReader(lines)
            rows = []
            for number, raw in enumerate(reader, 1):
                row: dict[str, Any] = {}
                for key, value in raw.items():
                    if key is None or value is None:
                        raise InvalidInputError(
                            field,
                            f"{path}: row {number} has a different number of cells than the header",
                            "fix or drop the row",
                        )
                    try:
                        if value == "":
                            row[key] = None
                        elif key in _INT_COLUMNS:
                            row[key] = int(value)
                        elif key in _FLOAT_COLUMNS:
                            row[key] = float(value)
                        else:
                            row[key] = value
                    except ValueError:
                        raise InvalidInputError(
                            field, f"{path}: data row {number}: {key} {value!r} is not a number", "fix or drop the row"
                        ) from None
                rows.append(row)
    except (UnicodeDecodeError, EOFError, OSError) as error:  # binary, or a broken gzip stream
        raise InvalidInputError(
            field, f"{path}: not a (gzip) CSV file ({type(error).__name__})", "pass a kernel measurement CSV"
        ) from None
    return rows
