"""The chips added for current deployments (B300, H20, MI300X/MI325X/MI355X, TPU v6e and v7):
datasheet numbers as typed in hardware.yaml's comments, their interconnect, and fp4 peaks where
the chip has fp4 units. Memory is the total the runtime reports (nvidia-smi MiB x 2^20, rocm-smi
bytes), as the comments quote it; MI325X keeps the datasheet figure (no runtime total found),
TPU v7 the 192 GiB its Cloud TPU docs table gives."""

from __future__ import annotations

import pytest

from cost_models.dtypes import BF16, FP4, FP8
from cost_models.hardware import SwitchedInterconnect, TorusInterconnect, get_hardware, hardware_catalog

NEW_CHIPS = ("b300", "h20", "mi300x", "mi325x", "mi355x", "tpu-v6e", "tpu-v7")


@pytest.mark.parametrize(
    ("name", "bf16", "fp8", "fp4", "memory_bytes", "bandwidth"),
    [
        ("b300", 2.25e15, 4.5e15, 13.5e15, 275040 * 2**20, 8.0e12),  # nvidia-smi 275,040 MiB
        ("h20", 148e12, 296e12, None, 97871 * 2**20, 4.0e12),  # nvidia-smi 97,871 MiB
        ("mi300x", 1307.4e12, 2614.9e12, None, 192 * 2**30 - 16 * 2**20, 5.3e12),  # rocm-smi
        ("mi325x", 1307.4e12, 2614.9e12, None, 256e9, 6.0e12),
        ("mi355x", 2.5e15, 5.0e15, 10.05e15, 288 * 2**30 - 16 * 2**20, 8.0e12),  # rocm-smi
        ("tpu-v6e", 918e12, None, None, 32 * 2**30, 1638e9),
        ("tpu-v7", 2307e12, 4614e12, None, 192 * 2**30, 7380e9),  # Cloud TPU7x docs: 192 GiB, 7380 GBps
        (
            "b200",
            2.25e15,
            4.5e15,
            9.0e15,
            183359 * 2**20,
            7.7e12,
        ),  # nvidia-smi 183,359 MiB; 7.7 TB/s (HGX B200, per GPU)
        ("gb200", 2.5e15, 5.0e15, 10.0e15, 189471 * 2**20, 8.0e12),  # nvidia-smi 189,471 MiB
    ],
)
def test_datasheet_numbers(
    name: str, bf16: float, fp8: float | None, fp4: float | None, memory_bytes: float, bandwidth: float
) -> None:
    chip = get_hardware(name)
    peaks = chip.peak_ops_per_s
    assert (peaks.bf16, peaks.fp8, peaks.fp4) == (bf16, fp8, fp4)
    assert (chip.memory_bytes, chip.memory_bandwidth_bytes_per_s) == (memory_bytes, bandwidth)
    assert chip.source


@pytest.mark.parametrize(
    ("name", "domain", "domain_bandwidth"),
    [("b300", 8, 900e9), ("h20", 8, 450e9), ("mi300x", 8, 448e9), ("mi325x", 8, 448e9), ("mi355x", 8, 537.6e9)],
)
def test_gpu_nodes_are_switched_domains_of_eight(name: str, domain: int, domain_bandwidth: float) -> None:
    net = get_hardware(name).interconnect
    assert isinstance(net, SwitchedInterconnect)
    assert (net.domain_size, net.domain_bandwidth_bytes_per_s) == (domain, domain_bandwidth)


def test_tpus_are_tori() -> None:
    v6e, v7 = get_hardware("tpu-v6e").interconnect, get_hardware("tpu-v7").interconnect
    assert isinstance(v6e, TorusInterconnect) and isinstance(v7, TorusInterconnect)
    assert (v6e.dims, v6e.max_chips, v6e.link_bandwidth_bytes_per_s) == (2, 256, 100e9)
    assert (v7.dims, v7.max_chips, v7.link_bandwidth_bytes_per_s) == (3, 9216, 100e9)


def test_fp4_runs_at_the_fp4_peak_only_where_the_chip_has_one() -> None:
    for chip in hardware_catalog().values():
        table = chip.peak_table()
        if chip.peak_ops_per_s.fp4 is not None:
            assert table[FP4] == chip.peak_ops_per_s.fp4 > table[FP8], chip.name
        else:
            assert table[FP4] == table[FP8] >= table[BF16], chip.name


def test_new_chips_are_in_the_catalog() -> None:
    assert set(NEW_CHIPS) <= set(hardware_catalog())


def test_b300_int8_runs_at_its_own_cut_peak_not_bf16s() -> None:
    """Blackwell Ultra cut INT8: the HGX B300 board datasheet prints 2 POPS sparse (B200's: 72),
    125 TOP/s dense per GPU. Without the entry int8 math ran at the bf16 peak, 18x too fast."""
    from cost_models.dtypes import BF16, INT8

    table = get_hardware("b300").peak_table()
    assert table[INT8] == 2e15 / 2 / 8
    assert table[BF16] / table[INT8] == 18.0
