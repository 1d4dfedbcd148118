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
    # An xor-shift after each column's multiply: a multiply carries a word's differences only up,
    # so without it two columns' high-bit differences (floats' exponents) cancel (a final shift
    # alone: 94,357 keys for 94,583 distinct prefill GEMM rows).
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


#: Largest value of a column keyed through a table of its values (:func:`_small_whole_rows`).
_TABLE_VALUES = 1 << 16
#: Most combinations of column values renumbered through one table (16 MB of booleans).
_TABLE_COMBINATIONS = 1 << 24


def _small_whole_rows(
    words_of: Sequence[tuple[np.ndarray, bool]], max_share: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`repeated_rows`' (first, inverse) without a sort, where every column holds whole
    numbers in [0, _TABLE_VALUES] (``words_of``: each column's bits and whether they are a
    float64's; a float column with a -0.0 is not taken, so equal numbers here are equal bits):
    each column's values numbered through a table of them, the rows' numbers combined column by
    column and renumbered through a table of the combinations seen (kept under 4 n entries). Exact
    by construction; None where a column does not qualify or the combinations outgrow the tables
    (the hashed sort then decides)."""
    n = len(words_of[0][0])
    key: np.ndarray | None = None
    count = 1
    for words, is_float in words_of:
        if is_float:
            if (words >> np.uint64(63)).any():  # negative or -0.0
                return None
            values = words.view(np.float64)
            with np.errstate(invalid="ignore"):  # NaN and inf cast to some integer: refused below
                whole = values.astype(np.int64)
            if not np.array_equal(whole, values):  # fractions, NaN, inf
                return None
        else:
            whole = words.view(np.int64)
            if whole.min() < 0:
                return None
        high = int(whole.max())
        if high > _TABLE_VALUES:
            return None
        seen = np.zeros(high + 1, dtype=bool)
        seen[whole] = True
        number = np.cumsum(seen) - 1
        codes = number.take(whole)
        values_count = int(number[-1]) + 1
        if key is None:
            key, count = codes, values_count
            continue
        key = key * values_count
        key += codes
        count *= values_count
        if count > 4 * n:  # renumber the combinations seen so far
            if count > _TABLE_COMBINATIONS:
                return None
            seen = np.zeros(count, dtype=bool)
            seen[key] = True
            number = np.cumsum(seen) - 1
            key = number.take(key)
            count = int(number[-1]) + 1
    assert key is not None
    seen = np.zeros(count, dtype=bool)
    seen[key] = True
    number = np.cumsum(seen) - 1
    inverse = number.take(key)
    distinct = int(number[-1]) + 1
    if distinct > max_share * n:
        return (np.empty(distinct, dtype=np.intp), inverse)  # refused by the caller
    first = np.empty(distinct, dtype=np.intp)
    first[inverse[::-1]] = np.arange(n - 1, -1, -1)  # a row of each (every row of it is the same)
    return first, inverse.astype(np.intp, copy=False)


#: Most bits of the hashed key that pick a row's bucket in :func:`_bucketed`'s table (8 MB of
#: indices); a call of n rows takes the bits of 4 n buckets, if fewer (its pages are first
#: touched each call: 20,000 rows in 2^17 buckets, not 2^20).
_MAX_BUCKET_BITS = 20


def _bucketed(key: np.ndarray) -> np.ndarray | None:
    """Each row's representative: a row with the same key, the same one for every row of a key,
    and its own representative (so the rows that are their own are one per distinct key). Found
    without a sort: the rows' indices scattered into a table of buckets by some of the key's bits
    (the last write wins), each row reading its bucket back; a row whose bucket another key won
    goes on to the next bit window (the top bits, then the two windows below them). None if some
    rows are still unplaced after the last window (the sort then decides). In bench_estimate's
    decode GEMMs (100,000 rows, 360 keys) this is ~0.5 ms against the sort's ~6."""
    n = len(key)
    bits = min(_MAX_BUCKET_BITS, (4 * n - 1).bit_length())
    shifts = [np.uint64(64 - bits * window) for window in (1, 2, 3)]
    table = np.empty(1 << bits, dtype=np.intp)
    mask = np.uint64((1 << bits) - 1)
    representative = np.empty(n, dtype=np.intp)
    pending: np.ndarray | None = None  # rows still unplaced (None: every row)
    for shift in shifts:
        keys = key if pending is None else key.take(pending)
        rows = np.arange(n) if pending is None else pending
        bucket = (keys >> shift).astype(np.intp) if shift == shifts[0] else ((keys >> shift) & mask).astype(np.intp)
        table[bucket] = rows  # the last write of each bucket wins
        won = table.take(bucket)
        placed = key.take(won) == keys
        if placed.all():
            if pending is None:
                return won
            representative[pending] = won
            return representative
        if pending is None:
            representative = won  # the unplaced rows are overwritten in a later window
        else:
            representative[pending] = won
        pending = rows[~placed]
    return None


def _distinct_count(key: np.ndarray) -> int:
    """``len(np.unique(key))`` by the buckets (a sample of 4,096 keys, ~4,100 distinct: ~0.03
    against the sort's ~0.41 ms; bench_estimate's calls refused by their sample, 4-5 an
    estimate, each paid it)."""
    representative = _bucketed(key)
    if representative is None:
        return len(np.unique(key))
    return len(_first_rows(representative))


def word_classes(words: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(first, inverse) of the distinct values of one column of uint64 words, as
    :func:`repeated_rows` gives them, without its sample, constant-column and small-number
    passes or its bit check: the words are mixed by a bijection (an odd multiply and an
    xor-shift, so equal keys are equal words) and bucketed. None where the buckets leave rows
    unplaced (many distinct words)."""
    key = words * _MULTIPLIER  # wraps modulo 2^64
    key ^= key >> _SHIFT
    representative = _bucketed(key)
    if representative is None:
        return None
    return _first_and_inverse(representative, _first_rows(representative))


def _first_rows(representative: np.ndarray) -> np.ndarray:
    """The rows that are their own representative (:func:`_bucketed`): one per distinct key."""
    return np.flatnonzero(representative == np.arange(len(representative)))


def _first_and_inverse(representative: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse) from :func:`_bucketed`'s representatives and their :func:`_first_rows`:
    each row's inverse is its representative's position among them."""
    position = np.empty(len(representative), dtype=np.intp)
    position[first] = np.arange(len(first))
    return first, position.take(representative)


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
        if estimated_distinct(_distinct_count(sample), len(sample)) > max_share * n:
            return None
    kinds = [np.asarray(c).dtype.kind for c in columns]
    words_of = [(_bits(c), kind == "f") for c, kind in zip(columns, kinds, strict=True)]
    # A column equal in every row (a study's one model: its widths) neither keys nor needs a check.
    words_of = [(w, f) for w, f in words_of if not (w == w[0]).all()] or words_of[:1]
    exact = _small_whole_rows(words_of, max_share)
    if exact is not None:
        return exact if len(exact[0]) <= max_share * n else None
    words = [w for w, _ in words_of]
    key = _hash(words)
    representative = _bucketed(key)
    if representative is not None:
        first = _first_rows(representative)
        if len(first) > max_share * n:
            return None
        # No collision: every row's bits equal its representative's.
        same = np.empty(n, dtype=bool)
        for w in words:
            np.equal(w.take(representative), w, out=same)
            if not same.all():
                return None
        return _first_and_inverse(representative, first)
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


__all__ = ["MIN_ROWS", "SAMPLE_ROWS", "estimated_distinct", "repeated_rows", "word_classes"]
