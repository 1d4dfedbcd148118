"""Maintainer tool (not used at run time or in tests): make the compact copies in data/kernels/.

    python data/kernels/subsample.py /path/to/shared/measurements/kernels [file ...]
    # file: an output name (gemm_perf.csv.gz, ..., gemm_perf_all_rows.csv.gz); default every one

Keeps the source files' `#` provenance lines, adds one saying what was subsampled and with which
seed, and writes gzip CSV next to this script. Rows are drawn uniformly at random per group.
"""

from __future__ import annotations

import csv
import gzip
import random
import sys
from collections import defaultdict
from pathlib import Path

SEED = 20260101
PLAN = {  # file: (group columns, rows kept per group; None keeps every row)
    "gemm_perf.csv.gz": (["system", "framework", "gemm_dtype"], 700),
    "context_attention_perf.csv.gz": (["system", "framework", "attn_dtype", "kv_cache_dtype"], 500),
    "generation_attention_perf.csv.gz": (["system", "framework", "attn_dtype", "kv_cache_dtype"], 500),
    "nccl_perf.csv.gz": (["system"], None),
    "custom_allreduce_perf.csv.gz": (["system", "framework"], None),
    "moe_perf.csv.gz": (["system", "framework"], None),
}
#: Rows kept before sampling, by file: column -> value. MoE: expert tensor parallelism only (no
#: expert parallelism, which the cost model does not describe yet).
FILTERS = {"moe_perf.csv.gz": {"moe_ep_size": "1"}}
#: Every row of a source file, with only the columns a fit reads: output name -> (source name,
#: columns kept). The GEMM shape correction (cost_models/gemm_shape.py) learns from every row of
#: a group (3,000, against the 700 of gemm_perf.csv.gz, which every parametric fit keeps reading:
#: tuner/calibrate.py); the columns dropped (op_name, kernel_source, source_path) name the
#: database's files and kernels, which no fit reads (the file: 1.31 MB against the source's 1.45 MB).
ALL_ROWS = {
    "gemm_perf_all_rows.csv.gz": (
        "gemm_perf.csv.gz",
        ["system", "framework", "version", "gemm_dtype", "m", "n", "k", "latency"],
    ),
}


def main(source: Path, names: list[str] | None = None) -> None:
    out_dir = Path(__file__).parent
    for name, (keys, per_group) in PLAN.items():
        if names and name not in names:
            continue
        with gzip.open(source / name, "rt", newline="") as handle:
            lines = handle.read().splitlines()
        header = [line for line in lines if line.startswith("#")]
        body = [line for line in lines if not line.startswith("#")]
        rows = list(csv.reader(body))
        columns, rows = rows[0], rows[1:]
        total = len(rows)
        kept_only = FILTERS.get(name, {})
        rows = [row for row in rows if all(row[columns.index(c)] == v for c, v in kept_only.items())]
        index = [columns.index(k) for k in keys]
        groups: dict[tuple, list] = defaultdict(list)
        for row in rows:
            groups[tuple(row[i] for i in index)].append(row)
        rng = random.Random(SEED)
        kept = []
        for group in sorted(groups):
            members = groups[group]
            if per_group is not None and len(members) > per_group:
                members = rng.sample(members, per_group)
            kept.extend(members)
        where = "".join(f" with {c} == {v}" for c, v in kept_only.items())
        of_total = f" (of {total})" if kept_only else ""
        note = (
            f"# data/kernels subset: at most {per_group or 'all'} rows per {keys} drawn uniformly "
            f"(random.Random({SEED}).sample, groups in sorted order) from the {len(rows)} rows{where}{of_total} "
            "above (transformer-deploy-tuner data/kernels/subsample.py)"
        )
        with gzip.open(out_dir / name, "wt", newline="") as handle:
            handle.write("\n".join(header + [note]) + "\n")
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(kept)
        print(name, len(kept))
    for name, (source_name, kept_columns) in ALL_ROWS.items():
        if names and name not in names:
            continue
        all_rows(source / source_name, out_dir / name, kept_columns)


def all_rows(source: Path, out: Path, kept_columns: list[str]) -> None:
    """Every row of ``source`` with ``kept_columns``, in the source's order, its provenance kept."""
    with gzip.open(source, "rt", newline="") as handle:
        lines = handle.read().splitlines()
    header = [line for line in lines if line.startswith("#")]
    rows = list(csv.reader(line for line in lines if not line.startswith("#")))
    columns, rows = rows[0], rows[1:]
    index = [columns.index(c) for c in kept_columns]
    dropped = [c for c in columns if c not in kept_columns]
    note = (
        f"# data/kernels all rows: every one of the {len(rows)} rows above, columns {', '.join(dropped)} "
        "dropped (transformer-deploy-tuner data/kernels/subsample.py; read by the GEMM shape "
        "correction only, tuner calibrate --shape-rows)"
    )
    with gzip.open(out, "wt", newline="") as handle:
        handle.write("\n".join(header + [note]) + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(kept_columns)
        writer.writerows([row[i] for i in index] for row in rows)
    print(out.name, len(rows))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
