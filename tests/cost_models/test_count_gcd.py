"""cost_models.deployment.count_gcd: the batch's gcd with the chips (the KV splits' batch term),
bit for bit numpy's int64 gcd cast back, on its power-of-two shortcut and off it."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.deployment import count_gcd


def _numpy_gcd(batch: np.ndarray, chips: np.ndarray) -> np.ndarray:
    return np.gcd(batch.astype(np.int64), chips.astype(np.int64)).astype(np.float64)


@pytest.mark.parametrize(
    ("batch", "chips"),
    [
        # powers of two both (the shortcut): batch under, equal to and over the chips
        ([1.0, 2.0, 8.0, 512.0, 64.0, 2.0**40], [8.0, 8.0, 8.0, 256.0, 64.0, 2.0**20]),
        # a batch that is not a power of two (12, 46, 3), chips that are
        ([12.0, 46.0, 3.0, 16.0], [8.0, 16.0, 32.0, 16.0]),
        # chips that are not (12 GPUs, 96), batches that are
        ([4.0, 8.0, 32.0, 1.0], [12.0, 12.0, 96.0, 12.0]),
        # values the shortcut must not take: a zero batch (gcd(0, c) is c), fractions whose
        # mantissa bits are zero (0.5 truncates to 0 in the int64 cast)
        ([0.0, 4.0, 0.5, 8.0], [8.0, 8.0, 8.0, 0.25]),
    ],
)
def test_count_gcd_is_numpys_int64_gcd_bit_for_bit(batch, chips):
    b, c = np.array(batch), np.array(chips)
    got, want = count_gcd(b, c), _numpy_gcd(b, c)
    assert got.dtype == want.dtype == np.float64
    np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))


def test_count_gcd_on_random_counts():
    rng = np.random.default_rng(7)
    for batch, chips in (
        (2.0 ** rng.integers(0, 12, 5_000), 2.0 ** rng.integers(0, 10, 5_000)),  # the shortcut
        (rng.integers(1, 300, 5_000).astype(np.float64), 2.0 ** rng.integers(0, 10, 5_000)),
        (2.0 ** rng.integers(0, 12, 5_000), rng.integers(1, 300, 5_000).astype(np.float64)),
    ):
        np.testing.assert_array_equal(count_gcd(batch, chips).view(np.uint64), _numpy_gcd(batch, chips).view(np.uint64))
