"""Rows of a call that repeat: evaluate elementwise work once per distinct row, then gather.

Large searches repeat most inputs of some stages: a decode step's weight matmuls and collectives
depend on the batch, the model and its layout, not on the prompt, so of bench_estimate's 100,000
h100-sxm deployments 3% of decode's dense (m, n, k, format) GEMMs are distinct (52% of
prefill's; docs/benchmarks.md, "Estimate throughput, round 6"). Elementwise numpy arithmetic
gives each element the same bits whatever else is in the array, so evaluating the distinct rows
and gathering gives every row the number it would get in the whole call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Calls smaller than this are evaluated whole: the key and its sort are not worth it there.
MIN_ROWS = 4096
#: Rows of the evenly spaced sample that decides whether the whole call is keyed (a call whose
#: sample is mostly distinct is evaluated whole, without the full sort).
SAMPLE_ROWS = 4096
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(29)


def _bits(column: np.ndarray) -> np.ndarray:
    """The column as uint64 words of its exact value (float64 bits; integers and booleans as int64)."""
    values = np.asarray(column)
    if values.dtype != np.float64:
        values = values.astype(np.float64) if values.dtype.kind == "f" else values.astype(np.int64)
    return values.view(np.uint64)


def _hash(words: Sequence[np.ndarray], rows: slice | np.ndarray = slice(None)) -> np.ndarray:
    key = np.full(len(words[0][rows]), _MULTIPLIER)
    for w in words:
        key ^= w[rows]
        key *= _MULTIPLIER  # wraps modulo 2^64
        key ^= key >> _SHIFT
    return key


def estimated_distinct(seen: int, sample: int) -> float:
    """Distinct values D of a population that an evenly spaced sample of ``sample`` rows showing
    ``seen`` distinct ones suggests, if each value had the same count: the D with
    D (1 - exp(-sample / D)) = seen (inf when every sampled row differs). A sample's own share of
    distinct rows says little: 9,240 distinct rows among 98,560 (9%) show as ~3,300 of 4,096
    (81%). Only decides whether the sort is tried; its result is checked on every row."""
    if seen >= sample:
        return float("inf")
    low, high = float(seen), 1e15
    for _ in range(100):  # bisection in log space; D (1 - exp(-s / D)) increases with D
        middle = (low * high) ** 0.5
        if middle * -np.expm1(-sample / middle) < seen:
            low = middle
        else:
            high = middle
        if high / low < 1.001:
            break
    return high


def repeated_rows(columns: Sequence[np.ndarray], max_share: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(first, inverse) over the rows of ``columns`` (equal-length 1-D arrays) when the distinct
    rows are at most ``max_share`` of them: ``first`` one row of each distinct combination,
    ``inverse`` each row's position in ``first``. None (evaluate every row) for calls under
    ``MIN_ROWS`` rows, when an evenly spaced sample of ``SAMPLE_ROWS`` suggests more than
    ``max_share`` of the rows are distinct (:func:`estimated_distinct`), or when they are.
    Rows are keyed by a 64-bit hash of their bits and every row is then compared bit for bit
    with its representative, so a hash collision (or NaN, or -0.0 against 0.0) can only cost the
    saving, never change a number."""
    n = len(columns[0])
    if n < MIN_ROWS:
        return None
    if max_share < 1.0:  # (1: every call is keyed)
        step = max(1, n // SAMPLE_ROWS)
        sample = _hash([_bits(np.asarray(c)[::step]) for c in columns])
        if estimated_distinct(len(np.unique(sample)), len(sample)) > max_share * n:
            return None
    words = [_bits(c) for c in columns]
    # A column equal in every row (a study's one model: its widths) neither keys nor needs a check.
    words = [w for w in words if not (w == w[0]).all()] or words[:1]
    key = _hash(words)
    # One quicksort; a run of equal keys is one distinct row (as partitioning.distinct_rows).
    order = np.argsort(key)
    ordered = key[order]
    starts = np.empty(n, dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    first = order[starts]
    if len(first) > max_share * n:
        return None
    # No collision: in the sorted order every row's bits equal those of the row before it,
    # unless it starts a run (so, run by run, every row's equal its representative's).
    same = np.empty(n - 1, dtype=bool)
    for w in words:
        ordered_words = w.take(order)
        np.equal(ordered_words[1:], ordered_words[:-1], out=same)
        same |= starts[1:]
        if not same.all():
            return None
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(starts) - 1
    return first, inverse


__all__ = ["MIN_ROWS", "SAMPLE_ROWS", "estimated_distinct", "repeated_rows"]
