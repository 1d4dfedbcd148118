"""Reading kernel measurement files (the shared format: gzip or plain CSV, leading ``#`` lines).

A file is one table: its ``#`` provenance lines, its columns as numpy arrays, and the file line of
every row (so an error can name it). The kind of table (gemm, context attention, generation
attention, nccl, custom all-reduce, fused MoE) is told by its columns and ``op_name``.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cost_models.errors import InvalidInputError
from cost_models.input_files import read_regular_bytes

#: The repo's copies (data/kernels/subsample.py made them); tests and the CLI default read these.
REPO_KERNELS = Path(__file__).resolve().parent.parent / "data" / "kernels"


def repo_relative_path(path: str | Path) -> str:
    """A data file's path as a profile's provenance records it: relative to the repository root
    where the file is in it (so a shipped profile names ``data/...``, not the absolute path of
    the checkout that fitted it), else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO_KERNELS.parent.parent))
    except ValueError:
        return str(path)


DEFAULT_FILES = (
    "gemm_perf.csv.gz",
    "context_attention_perf.csv.gz",
    "generation_attention_perf.csv.gz",
    "nccl_perf.csv.gz",
    "custom_allreduce_perf.csv.gz",
)

#: Database system name -> hardware catalog name.
SYSTEMS = {
    "a100_sxm": "a100-80gb",
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200",
    "b200_sxm": "b200",
    "gb200": "gb200",
    "l40s": "l40s",
}
CHIP_TO_SYSTEM = {chip: system for system, chip in SYSTEMS.items()}
#: Database framework name -> backend.
FRAMEWORKS = {"trtllm": "trtllm", "vllm": "vllm", "sglang": "sglang", "jax": "jax"}

REQUIRED = {
    "gemm": ("system", "framework", "gemm_dtype", "m", "n", "k", "latency"),
    "context_attention": (
        "system",
        "framework",
        "batch_size",
        "isl",
        "num_heads",
        "num_key_value_heads",
        "head_dim",
        "attn_dtype",
        "kv_cache_dtype",
        "latency",
    ),
    "generation_attention": (
        "system",
        "framework",
        "batch_size",
        "step",
        "num_heads",
        "num_key_value_heads",
        "head_dim",
        "kv_cache_dtype",
        "latency",
    ),
    "nccl": ("system", "op_name", "nccl_dtype", "num_gpus", "message_size", "latency"),
    "custom_allreduce": ("system", "framework", "allreduce_dtype", "num_gpus", "message_size", "latency"),
    # The fused-MoE kernel (collector/*/collect_moe.py): fitted by tuner/moe_kernels.py on top of
    # the GEMM fit; kernel_source tells gated experts (SwiGLU) from non-gated ones, distribution
    # the routing the collector forced (tuner/moe_routing.py).
    "moe": (
        "system",
        "framework",
        "kernel_source",
        "moe_dtype",
        "num_tokens",
        "hidden_size",
        "inter_size",
        "topk",
        "num_experts",
        "moe_tp_size",
        "moe_ep_size",
        "distribution",
        "latency",
    ),
}
NUMERIC = {
    "m",
    "n",
    "k",
    "latency",
    "batch_size",
    "isl",
    "num_heads",
    "num_key_value_heads",
    "head_dim",
    "step",
    "num_gpus",
    "message_size",
    "window_size",
    "num_tokens",
    "hidden_size",
    "inter_size",
    "topk",
    "num_experts",
    "moe_tp_size",
    "moe_ep_size",
}


@dataclass
class KernelTable:
    path: str
    kind: str
    header: list[str]
    columns: dict[str, np.ndarray]
    lines: np.ndarray  # file line (1-based) of each row
    extra: dict = field(default_factory=dict)
    #: Seconds per call below which the file's rows cannot go: ``tuner measure`` records JAX's
    #: dispatch time in its header (``# dispatch floor: X ms``); 0 for files without one (the
    #: kernel database times kernels in CUDA graphs, with no such floor).
    dispatch_floor_s: float = 0.0

    def __len__(self) -> int:
        return len(self.lines)

    def take(self, mask_or_index) -> KernelTable:
        return KernelTable(
            self.path,
            self.kind,
            self.header,
            {c: v[mask_or_index] for c, v in self.columns.items()},
            self.lines[mask_or_index],
            dispatch_floor_s=self.dispatch_floor_s,
        )


def _kind(columns: list[str], first_op: str, path: str) -> str:
    if "gemm_dtype" in columns:
        return "gemm"
    if "nccl_dtype" in columns:
        return "nccl"
    if "allreduce_dtype" in columns:
        return "custom_allreduce"
    if "moe_dtype" in columns:
        return "moe"
    if first_op in ("context_attention", "generation_attention"):
        return first_op
    raise InvalidInputError(
        path,
        "cannot tell the kind of kernel table",
        "expected gemm_dtype, nccl_dtype, allreduce_dtype or moe_dtype columns, or op_name "
        "context_attention / generation_attention",
    )


def read_kernel_table(path: str | Path) -> KernelTable:
    """Read one measurement file, checking columns and latencies (one-line errors naming the row)."""
    path = Path(path)
    name = str(path)
    try:
        raw = read_regular_bytes(path, "kernels", "pass a kernel measurement CSV (gzip or plain)")
    except OSError as error:
        raise InvalidInputError(name, f"cannot read: {error.strerror}", "check the path") from None
    try:
        text = gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise InvalidInputError(name, f"not a (gzip) CSV file: {error}", "pass a kernel CSV") from None
    all_lines = text.splitlines()
    header = [line for line in all_lines if line.startswith("#")]
    first_data = next((i for i, line in enumerate(all_lines) if not line.startswith("#")), None)
    if first_data is None:
        raise InvalidInputError(name, "no column header line", "the first non-# line names the columns")
    reader = csv.reader(io.StringIO("\n".join(all_lines[first_data:])))
    rows = list(reader)
    columns, body = rows[0], [r for r in rows[1:] if r]
    line_numbers = [first_data + 2 + i for i, r in enumerate(rows[1:]) if r]
    if not body:
        raise InvalidInputError(name, "no data rows", "pass a file with measurements")
    op_index = columns.index("op_name") if "op_name" in columns else None
    kind = _kind(columns, body[0][op_index] if op_index is not None else "", name)
    missing = [c for c in REQUIRED[kind] if c not in columns]
    if missing:
        raise InvalidInputError(
            name,
            f"missing column(s) {', '.join(missing)} for a {kind} table",
            f"a {kind} table needs {', '.join(REQUIRED[kind])}",
        )
    data: dict[str, np.ndarray] = {}
    width = len(columns)
    for i, row in enumerate(body):
        if len(row) != width:
            raise InvalidInputError(
                f"{name}:{line_numbers[i]}", f"{len(row)} fields, header has {width}", "fix the row"
            )
    for j, column in enumerate(columns):
        values = [row[j] for row in body]
        if column in NUMERIC:
            converted = np.empty(len(values))
            for i, v in enumerate(values):
                try:
                    converted[i] = float(v) if v != "" else (0.0 if column == "window_size" else np.nan)
                except ValueError:
                    raise InvalidInputError(
                        f"{name}:{line_numbers[i]}", f"{column}={v!r} is not a number", "fix or drop the row"
                    ) from None
            data[column] = converted
        else:
            data[column] = np.array(values, dtype=object)
    lines = np.array(line_numbers)
    for column in REQUIRED[kind]:
        if column in NUMERIC:
            bad = ~np.isfinite(data[column]) | (data[column] <= 0)
            if column == "step":
                bad = ~np.isfinite(data[column]) | (data[column] < 0)
            if bad.any():
                i = int(np.argmax(bad))
                raise InvalidInputError(
                    f"{name}:{lines[i]}",
                    f"{column}={float(data[column][i])!r} must be a positive number"
                    + (" (a latency in ms)" if column == "latency" else ""),
                    "fix or drop the row",
                )
            if column != "latency":  # a size or count: a GEMM of m=1.5 was fitted as given
                bad = data[column] != np.floor(data[column])
                if bad.any():
                    i = int(np.argmax(bad))
                    raise InvalidInputError(
                        f"{name}:{lines[i]}",
                        f"{column}={float(data[column][i])!r} must be a whole number",
                        "fix or drop the row",
                    )
    if "framework" in data:
        data["engine"] = np.array(
            [FRAMEWORKS.get(str(f).lower(), str(f).lower()) for f in data["framework"]], dtype=object
        )
    return KernelTable(name, kind, header, data, lines, dispatch_floor_s=_dispatch_floor_s(header, name))


_DISPATCH_FLOOR = re.compile(r"^#\s*dispatch floor:\s*(\S+)\s*ms\b")


def _dispatch_floor_s(header: list[str], name: str) -> float:
    """The ``# dispatch floor: X ms`` line tuner measure writes, in seconds (0 without one)."""
    for line in header:
        match = _DISPATCH_FLOOR.match(line)
        if match:
            try:
                value = float(match.group(1))
            except ValueError:
                value = float("nan")
            if not (np.isfinite(value) and value > 0):
                raise InvalidInputError(
                    name, f"dispatch floor {match.group(1)!r} is not a positive number of ms", "fix or drop that # line"
                )
            return value * 1e-3
    return 0.0
