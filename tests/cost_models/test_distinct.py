"""repeated_rows: one representative per distinct row, exact (bit for bit), or None."""

from __future__ import annotations

import numpy as np

import cost_models.distinct as distinct
from cost_models.distinct import estimated_distinct, repeated_rows


def test_distinct_rows_and_inverse(monkeypatch) -> None:
    monkeypatch.setattr(distinct, "MIN_ROWS", 1)
    a = np.array([1.0, 2.0, 1.0, 2.0, 1.0, 3.0])
    b = np.array([5, 5, 5, 6, 5, 5])
    first, inverse = repeated_rows([a, b], max_share=1.0)
    # Rows 0, 2 and 4 are (1, 5); 1 is (2, 5), 3 (2, 6), 5 (3, 5): four distinct rows.
    assert len(first) == 4
    assert inverse[0] == inverse[2] == inverse[4]
    assert len({int(inverse[i]) for i in (0, 1, 3, 5)}) == 4
    for column in (a, b):
        np.testing.assert_array_equal(column[first][inverse], column)


def test_signed_zero_and_nan_stay_apart_or_exact(monkeypatch) -> None:
    monkeypatch.setattr(distinct, "MIN_ROWS", 1)
    a = np.array([0.0, -0.0, np.nan, np.nan, 0.0])
    first, inverse = repeated_rows([a], max_share=1.0)
    # 0.0 and -0.0 differ in their bits: kept apart; the two NaNs (same bits) are one row.
    assert len(first) == 3
    assert inverse[0] == inverse[4] != inverse[1]
    assert inverse[2] == inverse[3]
    assert a[first][inverse].tobytes() == a.tobytes()


def test_none_when_small_or_mostly_distinct(monkeypatch) -> None:
    many = np.arange(10_000, dtype=np.float64)
    assert repeated_rows([many[:100] % 3], max_share=0.5) is None  # under MIN_ROWS
    assert repeated_rows([many], max_share=0.5) is None  # every row distinct
    result = repeated_rows([many % 7], max_share=0.5)
    assert result is not None and len(result[0]) == 7


def test_hash_collision_falls_back(monkeypatch) -> None:
    """Every key equal (a forced collision): the bit-for-bit check refuses the grouping."""
    monkeypatch.setattr(distinct, "MIN_ROWS", 1)
    monkeypatch.setattr(distinct, "_hash", lambda words, rows=slice(None): np.zeros(len(words[0][rows]), np.uint64))
    # Fractions: not small whole numbers, so the rows are hashed (whole numbers are not:
    # test_small_whole_numbers_are_numbered_not_hashed).
    assert repeated_rows([np.array([1.5, 2.5, 3.5])], max_share=1.0) is None


def test_small_whole_numbers_are_numbered_not_hashed(monkeypatch) -> None:
    """Columns of small whole numbers (floats, integers, booleans) are grouped through tables of
    their values, exactly, without the hash; a fraction, a -0.0 or a large value sends the call
    to the hashed sort."""
    monkeypatch.setattr(distinct, "MIN_ROWS", 1)
    a = np.array([4.0, 1.0, 4.0, 1.0, 4.0, 70000.0 - 69996.0])  # the last is 4.0 too
    b = np.array([3, 3, 3, 5, 3, 3])
    c = np.array([True, False, True, False, True, True])
    hashed: list[int] = []
    original = distinct._hash

    def counting(words, rows=slice(None)):
        hashed.append(1)
        return original(words, rows)

    monkeypatch.setattr(distinct, "_hash", counting)
    first, inverse = repeated_rows([a, b, c], max_share=1.0)
    assert hashed == []
    # Rows 0, 2, 4 and 5 are (4, 3, True); 1 is (1, 3, False); 3 is (1, 5, False).
    assert len(first) == 3
    assert inverse[0] == inverse[2] == inverse[4] == inverse[5]
    assert len({int(inverse[i]) for i in (0, 1, 3)}) == 3
    for column in (a, b, c):
        assert column[first][inverse].tobytes() == column.tobytes()
    for other in (np.array([0.5, 1.0] * 3), np.array([0.0, -0.0] * 3), np.array([0.0, 2.0**20] * 3)):
        hashed.clear()
        result = repeated_rows([other, b], max_share=1.0)
        assert hashed == [1] and result is not None
        assert other[result[0]][result[1]].tobytes() == other.tobytes()


def test_estimated_distinct_from_a_sample() -> None:
    # Equal counts: D (1 - exp(-s / D)) distinct values expected in a sample of s.
    for population in (50.0, 9_240.0, 80_000.0):
        seen = population * -np.expm1(-4096 / population)
        assert abs(estimated_distinct(round(seen), 4096) / population - 1.0) < 0.01
    assert estimated_distinct(4096, 4096) == float("inf")


def test_bucket_collisions_are_placed_again_or_sorted(monkeypatch) -> None:
    """Keys that share a bucket of the table go on to the next bit window, and rows still
    unplaced after the last window go to the sort: either way one representative per distinct
    row, exact. 50 distinct fractions in 256 buckets collide (P ~ 99%); in 4 they cannot all fit."""
    monkeypatch.setattr(distinct, "MIN_ROWS", 1)
    values = np.random.default_rng(3).integers(0, 50, 5000) + 0.5
    for bits in (8, 2):
        monkeypatch.setattr(distinct, "_MAX_BUCKET_BITS", bits)
        result = repeated_rows([values], max_share=1.0)
        assert result is not None
        first, inverse = result
        assert len(first) == 50
        assert values[first][inverse].tobytes() == values.tobytes()
    placed = distinct._bucketed(distinct._hash([values.view(np.uint64)]))
    assert placed is None  # (2 bits) unplaced rows remain: the sort decided above


def test_distinct_count_is_the_number_of_distinct_keys(monkeypatch) -> None:
    """The sample's distinct keys counted by the buckets, or by the sort where they leave rows
    unplaced (2 bits), equal numpy's unique."""
    rng = np.random.default_rng(4)
    for keys in (rng.integers(0, 2**62, 4096).astype(np.uint64), rng.integers(0, 300, 4096).astype(np.uint64) << 40):
        for bits in (20, 2):
            monkeypatch.setattr(distinct, "_MAX_BUCKET_BITS", bits)
            assert distinct._distinct_count(keys) == len(np.unique(keys))


def test_word_classes_are_exact() -> None:
    """One column of words: equal words one class, unequal ones apart (-0.0 and 0.0 too)."""
    values = np.random.default_rng(5).integers(0, 40, 8000) * 0.25
    values[:3] = [0.0, -0.0, 0.0]
    result = distinct.word_classes(values.view(np.uint64))
    assert result is not None
    first, inverse = result
    assert len(first) == len(np.unique(values.view(np.uint64)))
    assert values[first][inverse].tobytes() == values.tobytes()
