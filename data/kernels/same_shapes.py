"""Maintainer tool (not used at run time or in tests): make data/kernels/gemm_bf16_same_shapes.csv.gz.

    python data/kernels/same_shapes.py /path/to/shared/measurements/kernels/gemm_perf.csv.gz

Keeps the source file's `#` provenance lines and adds one saying what was selected: the bf16 GEMM
rows (gemm_dtype == bfloat16) whose (system, m, n, k) was measured by two or more engines' collectors
(framework). Every such row is kept, none is drawn at random; rows keep the source's order. Each
engine's bf16 rows run the engine's unquantized linear layer, torch.nn.functional.linear (cuBLAS /
cuBLASLt; kernel_source names it where the collector says so), so the rows of one shape are one
library's kernel timed by three collectors. The quantized formats (fp8, fp8_block, nvfp4, ...) run
a different kernel per engine and are left out. tuner/measurement_noise.py reads the result.
"""

from __future__ import annotations

import csv
import gzip
import sys
from collections import defaultdict
from pathlib import Path

NAME = "gemm_bf16_same_shapes.csv.gz"
DTYPE = "bfloat16"


def main(source: Path) -> None:
    with gzip.open(source, "rt", newline="") as handle:
        lines = handle.read().splitlines()
    header = [line for line in lines if line.startswith("#")]
    rows = list(csv.reader(line for line in lines if not line.startswith("#")))
    columns, rows = rows[0], rows[1:]
    col = {name: columns.index(name) for name in ("system", "framework", "gemm_dtype", "m", "n", "k")}
    bf16 = [row for row in rows if row[col["gemm_dtype"]] == DTYPE]
    engines: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for row in bf16:
        engines[(row[col["system"]], row[col["m"]], row[col["n"]], row[col["k"]])].add(row[col["framework"]])
    kept = [row for row in bf16 if len(engines[(row[col["system"]], row[col["m"]], row[col["n"]], row[col["k"]])]) > 1]
    shapes = sum(len(e) > 1 for e in engines.values())
    note = (
        f"# data/kernels same-shape subset: every {DTYPE} row whose (system, m, n, k) was measured by two or "
        f"more frameworks: {len(kept)} of the {len(bf16)} {DTYPE} rows ({len(rows)} rows in all) above, {shapes} "
        "(system, m, n, k) shapes; no sampling, source order (transformer-deploy-tuner data/kernels/same_shapes.py)"
    )
    with gzip.open(Path(__file__).parent / NAME, "wt", newline="") as handle:
        handle.write("\n".join([*header, note]) + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(kept)
    print(NAME, len(kept), "rows,", shapes, "shapes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
