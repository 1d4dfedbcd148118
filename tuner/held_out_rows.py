"""Every row's held-out GEMM error of the shipped fits, and issue 9's GEMM target read per chip and
format (every engine's rows of a (chip, format) pooled).

The profiles store each group's held-out median and p90 (chip, engine, format: 56 groups), which
cannot be pooled across engines. ``data/kernels/gemm_held_out_errors.npz`` keeps every row's
held-out absolute relative error of those groups, written by
``python data/kernels/per_chip_format_check.py run`` from the shipped pipeline's own measurement
(tuner.calibrate.fit_gemm with the shape correction, as data/kernels/add_shape_correction.py
measures it). Stored per group sorted and rounded to 1e-5, as the differences of consecutive values
in units of 1e-5 (uint32): 168 KB for the 165,473 rows, where float32 took 610 KB. Only the
errors are kept, not which row each is (a quantile needs no more).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuner.kernel_data import REPO_KERNELS

HELD_OUT_ERRORS_FILE = REPO_KERNELS / "gemm_held_out_errors.npz"
#: The errors' rounding (absolute): 0.001 percentage point.
ERROR_STEP = 1e-5
_PROVENANCE = "provenance"


def write_held_out_errors(errors: dict[tuple[str, str, str], np.ndarray], provenance: str, path: Path) -> None:
    """Write each group's (chip, engine, format) held-out errors (NaN: a row not held out, left out)."""
    arrays: dict[str, np.ndarray] = {_PROVENANCE: np.array(provenance)}
    for (chip, engine, fmt), e in sorted(errors.items()):
        steps = np.round(np.sort(e[np.isfinite(e)]) / ERROR_STEP).astype(np.int64)
        arrays[f"{chip}|{engine}|{fmt}"] = np.diff(steps, prepend=0).astype(np.uint32)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def read_held_out_errors(path: Path = HELD_OUT_ERRORS_FILE) -> tuple[dict[tuple[str, str, str], np.ndarray], str]:
    """Each group's held-out errors, sorted (to :data:`ERROR_STEP`), and the file's provenance."""
    groups: dict[tuple[str, str, str], np.ndarray] = {}
    with np.load(path) as f:
        provenance = str(f[_PROVENANCE])
        for name in f.files:
            if name == _PROVENANCE:
                continue
            chip, engine, fmt = name.split("|")
            groups[(chip, engine, fmt)] = np.cumsum(f[name].astype(np.int64)) * ERROR_STEP
    return groups, provenance


@dataclass(frozen=True)
class PooledCell:
    """One (chip, format): the held-out errors of every engine's rows pooled, and each engine's."""

    chip: str
    fmt: str
    rows: int
    median: float
    p90: float
    #: engine -> (median, p90) of its own rows
    engines: dict[str, tuple[float, float]]
    #: engine -> its rows
    engine_rows: dict[str, int]

    def meets(self, median_target: float, p90_target: float | None) -> bool:
        """Whether the pooled median (and the p90, where a p90 target is given) is within target."""
        return self.median <= median_target and (p90_target is None or self.p90 <= p90_target)


def pooled_by_chip_format(groups: dict[tuple[str, str, str], np.ndarray]) -> list[PooledCell]:
    """Per (chip, format), every row of every engine's group once (an engine with more rows weighs
    more: fp8_block's groups hold 2,462-3,000)."""
    cells = []
    for chip, fmt in sorted({(chip, fmt) for chip, _, fmt in groups}):
        mine = {engine: e for (c, engine, f), e in sorted(groups.items()) if (c, f) == (chip, fmt)}
        rows = np.concatenate(list(mine.values()))
        engines = {engine: (float(np.median(e)), float(np.quantile(e, 0.9))) for engine, e in mine.items()}
        counts = {engine: len(e) for engine, e in mine.items()}
        median, p90 = float(np.median(rows)), float(np.quantile(rows, 0.9))
        cells.append(PooledCell(chip, fmt, len(rows), median, p90, engines, counts))
    return cells
