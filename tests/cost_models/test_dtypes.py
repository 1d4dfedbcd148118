"""The fp4 format: its code, bytes, compute format with each partner, and the peak every chip
runs it at (a chip without fp4 units must fall back, never index out of range)."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.calibrated_times import gemm_format
from cost_models.dtypes import (
    BF16,
    BITS_CHOICES,
    BYTES_PER_ELEMENT,
    COMBINE,
    DTYPE_NAMES,
    FP4,
    FP8,
    INT4,
    INT8,
    dtype_name,
    lookup,
    parse_dtype,
)
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware, hardware_catalog


def test_fp4_code_follows_int4_and_every_table_has_a_row_for_it() -> None:
    assert (INT4, FP4) == (3, 4)
    assert DTYPE_NAMES[FP4] == "fp4" == dtype_name(FP4)
    assert len(BYTES_PER_ELEMENT) == len(DTYPE_NAMES) == COMBINE.shape[0] == COMBINE.shape[1]
    assert "fp4" in BITS_CHOICES


def test_fp4_is_half_a_byte_block_scales_not_counted() -> None:
    """Decision pinned: 4 bits per element, like int4; MXFP4's scales (8 bits per 32: +6.25%) and
    NVFP4's (8 bits per 16: +12.5%) are left out, as int4's group scales are."""
    assert BYTES_PER_ELEMENT[FP4] == 0.5
    assert BYTES_PER_ELEMENT[FP4] == BYTES_PER_ELEMENT[INT4]


@pytest.mark.parametrize(
    ("a", "b", "compute"),
    [(FP4, FP4, FP4), (FP4, FP8, FP8), (FP8, FP4, FP8), (FP4, BF16, BF16), (BF16, FP4, BF16), (FP4, INT8, BF16)],
)
def test_fp4_combine_rules(a: int, b: int, compute: int) -> None:
    assert COMBINE[a, b] == compute


def test_combine_is_symmetric() -> None:
    assert np.array_equal(COMBINE, COMBINE.T)


@pytest.mark.parametrize("alias", ["fp4", "FP4", "mxfp4", "nvfp4", " float4 "])
def test_fp4_aliases(alias: str) -> None:
    assert parse_dtype(alias, "weight_bits") == FP4


def test_four_still_means_int4() -> None:
    assert parse_dtype("4", "weight_bits") == INT4 == parse_dtype(4, "weight_bits")


def test_unknown_format_error_names_fp4() -> None:
    with pytest.raises(InvalidInputError, match="fp4") as raised:
        parse_dtype("fp6", "weight_bits")
    assert raised.value.field == "weight_bits" and "\n" not in str(raised.value)


def test_fp4_peak_on_chips_with_and_without_fp4_units() -> None:
    b200 = get_hardware("b200")
    assert b200.has_format(FP4) and b200.peak_table()[FP4] == 9.0e15  # HGX B200 datasheet, dense
    h100 = get_hardware("h100-sxm")  # no fp4 units: fp4 math runs at the fp8 peak
    assert not h100.has_format(FP4) and h100.peak_table()[FP4] == 1978.9e12
    a100 = get_hardware("a100-80gb")  # no fp8 either: the bf16 peak
    assert a100.peak_table()[FP4] == 312.0e12
    assert h100.parse_formats(weight_bits="fp4") == {"weight_bits": FP4}


def test_every_catalog_chip_has_a_finite_peak_for_every_format() -> None:
    for chip in hardware_catalog().values():
        table = chip.peak_table()
        assert table.shape == (len(DTYPE_NAMES),) and np.all(np.isfinite(table)) and np.all(table > 0), chip.name


@pytest.mark.parametrize(
    ("weight", "act", "kernel"),
    [(FP4, FP4, "nvfp4"), (FP4, FP8, "fp8"), (FP4, BF16, "int4_wo"), (FP8, BF16, "fp8"), (INT4, BF16, "int4_wo")],
)
def test_fp4_calibrated_gemm_kernels(weight: int, act: int, kernel: str) -> None:
    assert gemm_format(weight, act) == kernel


def _decode_s(hardware: str, weight: str, act: str) -> float:
    from cost_models.deployment import estimate_one

    report = estimate_one(
        "llama-3.1-8b",
        hardware,
        chips=1,
        batch=8,
        prompt_len=512,
        gen_len=64,
        phase="decode",
        weight_bits=weight,
        act_bits=act,
        kv_bits="16",
    )
    return report["decode"]["step_latency_s"]


def test_calibrated_fp4_on_a_chip_without_fp4_runs_the_fp8_gemms() -> None:
    """H100 has no fp4 tensor cores: fp4 x fp4 GEMMs are the fp8 kernels (W4A8), so the decode
    step differs from fp8's only in the elementwise operators' activation bytes (0.5 vs 1)."""
    fp4, fp8 = _decode_s("h100-sxm", "fp4", "fp4"), _decode_s("h100-sxm", "fp8", "fp8")
    assert fp4 == pytest.approx(fp8, rel=0.05) and fp4 <= fp8


def test_calibrated_fp4_on_b200_uses_its_measured_nvfp4_gemm() -> None:
    assert _decode_s("b200", "fp4", "fp4") != pytest.approx(_decode_s("b200", "fp8", "fp8"), rel=0.05)


def test_lookup_is_the_gather_bit_for_bit() -> None:
    """dtypes.lookup fills where the codes pick one number and gathers elsewhere: the gather's
    numbers, dtype and shape every time (signed zeros and NaNs by their bits), its IndexError for
    a code out of range, numpy's negative indices."""
    rng = np.random.default_rng(7)
    cases = 0
    for trial in range(3000):
        n = int(rng.integers(0, 40))
        if trial % 5 == 0:
            table = np.full((5, 5), 2, dtype=np.int64)  # one number everywhere
        elif trial % 3 == 0:
            table = rng.choice([0.0, -0.0, 1.5, np.nan], (5, 5))
        else:
            table = rng.integers(0, 3, (5, 5))
        # One or two distinct codes per array, some negative, some past the table's end.
        a, b = (rng.choice(rng.integers(-6, 7, 2), n).astype(np.int8) for _ in range(2))
        for args in ((table, a, b), (table[0], a)):
            try:
                want = args[0][tuple(args[1:])]
            except IndexError:
                with pytest.raises(IndexError):
                    lookup(*args)
                continue
            got = lookup(*args)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert got.tobytes() == want.tobytes()
            cases += 1
    assert cases > 2000
    # The fill: bench_estimate's draw (all bf16 activations, three weight formats).
    weights = np.array([BF16, INT8, INT4] * 4, dtype=np.int8)
    acts = np.full(12, BF16, dtype=np.int8)
    assert lookup(COMBINE, weights, acts).tolist() == [BF16] * 12
    # Scalar codes are indexed as given: numpy's scalar, not a 0-d array.
    assert type(lookup(BYTES_PER_ELEMENT, INT4)) is type(BYTES_PER_ELEMENT[INT4])
    assert lookup(BYTES_PER_ELEMENT, np.int8(INT8)) == BYTES_PER_ELEMENT[INT8]
    with pytest.raises(IndexError):  # float codes: numpy's error, not a fill
        lookup(BYTES_PER_ELEMENT, np.zeros(3))
