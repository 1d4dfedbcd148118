"""Chip descriptions (:class:`HardwareSpec`) and the shipped hardware catalog.

A chip is a roofline (peak ops/s per compute format, memory bytes and bandwidth) plus the
interconnect that the multi-chip model uses: a torus of links for TPUs, or switched domains
(NVLink within a node, a network between nodes) for GPUs. Efficiency factors default to 1.0 (a
pure roofline); calibration fits them from measurements.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from cost_models.dtypes import BF16, DTYPE_NAMES, FP4, FP8, INT4, INT8, parse_dtype
from cost_models.errors import InvalidInputError, from_validation_error

# allow_inf_nan=False: a chip YAML value of 1e400 (infinite memory, bandwidth or peak) fitted every
# deployment and made --json fail on Infinity.
_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

# The least a real chip's number can be in the schema's units (and the most, for latencies). A
# chip file's value past one was written in a larger unit: 989.4 (TFLOP/s) for 989.4e+12 FLOP/s,
# 80 (GB) or 81,559 (MiB) for bytes, 3.35 (TB/s) for bytes/s, 400 (Gb/s) for a NIC's bytes/s, 2
# (microseconds) for 2.0e-6 s. Accepted, each made the chip 1e3 to 1e12 times too slow or too
# small and every estimate on it nonsense (989.4 as bf16: a 512-token llama-3-8b prefill of
# 1.03e+10 s), without a word. The bounds are far outside every chip in the catalog: the slowest
# peak is the Xeon's 2.87e+12 FLOP/s, the least memory the L4's 2.4e+10 B, the slowest memory the
# Xeon's 1.4e+11 B/s, the slowest link 1.25e+10 B/s (100 Gb ethernet), the least L2 40 MiB, the
# longest latency 1e-5 s. They hold for a chip read from a user's file (validation context
# USER_FILE, cost_models.catalog_files.load_entry); a HardwareSpec built in code (a test's
# extreme roofline, a what-if) is not checked.
MIN_PEAK_OPS_PER_S = 1e9  # 1 GFLOP/s: a TFLOP/s figure (at most ~2e4) or GFLOP/s one (~1e7) is under it
MIN_MEMORY_BYTES = 1e8  # 100 MB: a GB (~100s) or MiB (~1e5) figure is under it
MIN_MEMORY_BANDWIDTH_BYTES_PER_S = 1e9  # 1 GB/s: a TB/s (~1-10) or GB/s (~1e3) figure is under it
MIN_LINK_BANDWIDTH_BYTES_PER_S = 1e8  # 0.8 Gb/s: a GB/s (~1e2) or Gb/s (~1e3) figure is under it
MIN_L2_BYTES = 1e5  # 100 kB: an MB or MiB figure (~10-100) is under it
MAX_LATENCY_S = 1e-2  # 10 ms a step: a microsecond figure (~1-10) is over it
#: The validation context key that marks a chip read from a user's file.
USER_FILE = "user_file"


def _from_file(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(USER_FILE))


def _at_least(value: float | None, least: float, unit: str, example: str, info: ValidationInfo) -> None:
    """Refuse ``value`` in a chip file where it is under ``least`` (a figure in a larger unit)."""
    if value is not None and value < least and _from_file(info):
        raise ValueError(f"{value:g} is under {least:g} {unit}, a figure in a larger unit? write {unit}, {example}")


def _at_most_latency(value: float, info: ValidationInfo) -> None:
    """Refuse ``value`` in a chip file where it is over MAX_LATENCY_S (a figure in microseconds)."""
    if value > MAX_LATENCY_S and _from_file(info):
        raise ValueError(
            f"{value:g} s a step is over {MAX_LATENCY_S:g} s, a figure in microseconds? write seconds, 2 us as 2.0e-6"
        )


class PeakOps(BaseModel):
    """Dense peak operations per second for each compute format the chip has (None: has none)."""

    model_config = _FROZEN

    bf16: float = Field(gt=0, description="16-bit float (bf16 or fp16) matmul peak, FLOP/s.")
    fp8: float | None = Field(default=None, gt=0)
    int8: float | None = Field(default=None, gt=0)
    int4: float | None = Field(default=None, gt=0)
    fp4: float | None = Field(default=None, gt=0, description="4-bit float (NVFP4 / MXFP4) matmul peak.")

    @field_validator("bf16", "fp8", "int8", "int4", "fp4")
    @classmethod
    def _ops_per_s(cls, value: float | None, info: ValidationInfo) -> float | None:
        _at_least(value, MIN_PEAK_OPS_PER_S, "operations/s", "989.4 TFLOP/s as 989.4e+12", info)
        return value


class TorusInterconnect(BaseModel):
    """TPU-style inter-chip links: a 2D or 3D torus, the same bandwidth on every link."""

    model_config = _FROZEN

    kind: Literal["torus"] = "torus"
    dims: Literal[2, 3]
    link_bandwidth_bytes_per_s: float = Field(gt=0, description="One link, one direction.")
    max_chips: int = Field(gt=0, description="Largest slice.")
    wraparound_min_axis: int = Field(
        default=4, gt=0, description="Axes at least this long have wraparound (torus) links."
    )
    hop_latency_s: float = Field(ge=0, description="Per-hop latency of a collective step.")

    @field_validator("link_bandwidth_bytes_per_s")
    @classmethod
    def _link_bytes_per_s(cls, value: float, info: ValidationInfo) -> float:
        _at_least(value, MIN_LINK_BANDWIDTH_BYTES_PER_S, "bytes/s", "45 GB/s as 45.0e+9", info)
        return value

    @field_validator("hop_latency_s")
    @classmethod
    def _latency(cls, value: float, info: ValidationInfo) -> float:
        _at_most_latency(value, info)
        return value


class SwitchedInterconnect(BaseModel):
    """GPU-style interconnect: all-to-all domains (NVLink) joined by a slower network."""

    model_config = _FROZEN

    kind: Literal["switched"] = "switched"
    domain_size: int = Field(gt=0, description="Chips sharing the fast fabric (NVLink); 1: none.")
    domain_bandwidth_bytes_per_s: float = Field(gt=0, description="Per chip, one direction.")
    network_bandwidth_bytes_per_s: float = Field(gt=0, description="Per chip, between domains, one direction.")
    domain_latency_s: float = Field(ge=0)
    network_latency_s: float = Field(ge=0)

    @field_validator("domain_bandwidth_bytes_per_s", "network_bandwidth_bytes_per_s")
    @classmethod
    def _link_bytes_per_s(cls, value: float, info: ValidationInfo) -> float:
        _at_least(value, MIN_LINK_BANDWIDTH_BYTES_PER_S, "bytes/s", "400 Gb/s as 50.0e+9", info)
        return value

    @field_validator("domain_latency_s", "network_latency_s")
    @classmethod
    def _latency(cls, value: float, info: ValidationInfo) -> float:
        _at_most_latency(value, info)
        return value


class Efficiency(BaseModel):
    """Fractions of peak actually reached; 1.0 is the pure roofline."""

    model_config = _FROZEN

    compute: float = Field(default=1.0, gt=0, le=1)
    memory: float = Field(default=1.0, gt=0, le=1)
    network: float = Field(default=1.0, gt=0, le=1)


#: Serving engines: the export targets, and the engines a calibration profile's kernels are of.
ServingEngine = Literal["trtllm", "vllm", "sglang", "jax"]
#: How the engines spell their own names, for text a user reads.
ENGINE_DISPLAY_NAMES: dict[str, str] = {"trtllm": "TensorRT-LLM", "vllm": "vLLM", "sglang": "SGLang", "jax": "JAX"}

#: The engines that run on a chip of each kind where its entry names none (``engines``):
#: TensorRT-LLM is CUDA-only (NVIDIA GPUs); vLLM and SGLang run on CUDA and ROCm GPUs, vLLM also
#: on TPUs (vLLM TPU) and CPUs; JAX (Pope et al.'s implementation) on TPUs, GPUs and CPUs. The
#: first is the default where no profile was fitted on the chip.
ENGINES_BY_KIND: dict[str, tuple[ServingEngine, ...]] = {
    "gpu": ("trtllm", "vllm", "sglang", "jax"),
    "tpu": ("jax", "vllm"),
    "cpu": ("vllm", "jax"),
}


class HardwareSpec(BaseModel):
    """One chip and how chips of its kind are connected."""

    model_config = _FROZEN

    name: str
    source: str
    kind: Literal["tpu", "gpu", "cpu"]
    peak_ops_per_s: PeakOps
    memory_bytes: float = Field(
        gt=0,
        description="Device memory per chip, bytes, as the runtime reports it (nvidia-smi's total, rocm-smi's VRAM "
        "total), not the datasheet figure.",
    )
    memory_bandwidth_bytes_per_s: float = Field(gt=0)
    interconnect: Annotated[TorusInterconnect | SwitchedInterconnect, Field(discriminator="kind")]
    efficiency: Efficiency = Efficiency()
    compute_units: int | None = Field(
        default=None,
        gt=0,
        description="Streaming multiprocessors (GPU) or cores: the kernel "
        "efficiency model's wave quantization (cost_models/efficiency.py). None: unknown.",
    )
    l2_bytes: float | None = Field(
        default=None, gt=0, description="Last-level on-chip cache (GPU L2) in bytes. None: unknown."
    )
    engines: tuple[ServingEngine, ...] | None = Field(
        default=None,
        min_length=1,
        description="Serving engines that run on this chip, in order of preference where none was measured on "
        "it. None: by kind (a GPU: trtllm, vllm, sglang, jax; a TPU: jax, vllm; a CPU: vllm, jax). An AMD GPU: "
        "[vllm, sglang, jax] (TensorRT-LLM is CUDA-only).",
    )

    @field_validator("memory_bytes")
    @classmethod
    def _memory_bytes(cls, value: float, info: ValidationInfo) -> float:
        _at_least(value, MIN_MEMORY_BYTES, "bytes", "81,559 MiB as 85520809984", info)
        return value

    @field_validator("memory_bandwidth_bytes_per_s")
    @classmethod
    def _memory_bytes_per_s(cls, value: float, info: ValidationInfo) -> float:
        _at_least(value, MIN_MEMORY_BANDWIDTH_BYTES_PER_S, "bytes/s", "3.35 TB/s as 3.35e+12", info)
        return value

    @field_validator("l2_bytes")
    @classmethod
    def _l2_bytes(cls, value: float | None, info: ValidationInfo) -> float | None:
        _at_least(value, MIN_L2_BYTES, "bytes", "50 MiB as 52428800", info)
        return value

    def serving_engines(self) -> tuple[ServingEngine, ...]:
        """The engines that run on this chip (``engines``, else its kind's)."""
        return self.engines or ENGINES_BY_KIND[self.kind]

    def peak_table(self) -> np.ndarray:
        """Peak ops/s indexed by dtype code, with formats the chip lacks run in the next wider one.

        int4 falls back to int8 (as on H100, which has no int4 tensor cores), int8 and fp8 to bf16.
        fp4 math on a chip without fp4 units runs at the fp8 peak (else bf16): the fp4 operands are
        upcast to fp8 in registers before the MMA, as Hopper's MXFP4 MoE kernels do; that upcast is
        not charged (it hides under the weight load in memory-bound decode).
        """
        peaks = self.peak_ops_per_s
        table = np.empty(len(DTYPE_NAMES))
        table[BF16] = peaks.bf16
        table[FP8] = peaks.fp8 or peaks.bf16
        table[INT8] = peaks.int8 or peaks.bf16
        table[INT4] = peaks.int4 or table[INT8]
        table[FP4] = peaks.fp4 or table[FP8]
        return table

    def has_format(self, code: int) -> bool:
        """Whether the chip has native compute for a dtype code (bf16 always)."""
        peaks = self.peak_ops_per_s
        return {
            BF16: True,
            FP8: peaks.fp8 is not None,
            INT8: peaks.int8 is not None,
            INT4: peaks.int4 is not None,
            FP4: peaks.fp4 is not None,
        }[code]

    def parse_formats(self, **bits: str | int) -> dict[str, int]:
        """Dtype codes of user-given formats (``weight_bits=8, kv_bits='fp8'``, ...), refusing
        fp8 on a chip without fp8 units (int8 and int4 storage works anywhere). fp4 is accepted
        everywhere: on a chip without fp4 units its math runs at the fp8 (else bf16) peak, see
        :meth:`peak_table`."""
        codes = {}
        for field, value in bits.items():
            code = parse_dtype(value, field)
            if code == FP8 and not self.has_format(FP8):
                raise InvalidInputError(field, f"{self.name} has no fp8 support", "use 16, 8 or 4")
            codes[field] = code
        return codes

    @property
    def ridge_point_ops_per_byte(self) -> float:
        """bf16 peak over memory bandwidth: the arithmetic intensity where the roofline bends."""
        return self.peak_ops_per_s.bf16 / self.memory_bandwidth_bytes_per_s


@cache
def hardware_catalog() -> dict[str, HardwareSpec]:
    """The shipped chips, by name (``cost_models/catalog/hardware.yaml``)."""
    # libyaml's parser when PyYAML has it (its wheels do): the same values, about 10x faster than the
    # pure-Python one (0.13 s of every `tuner pareto` on a compact study went to this file).
    text = resources.files("cost_models").joinpath("catalog/hardware.yaml").read_text()
    raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    catalog = {}
    for name, fields in raw.items():
        try:
            catalog[name] = HardwareSpec(name=name, **fields)
        except ValidationError as error:
            raise from_validation_error(error, f"hardware.yaml:{name}") from None
    return catalog


def is_catalog_chip(hardware: HardwareSpec) -> bool:
    """Whether ``hardware`` is a shipped chip (same name and the same numbers)."""
    return hardware_catalog().get(hardware.name) == hardware


def get_hardware(name_or_path: str) -> HardwareSpec:
    """A catalog chip by name, or a chip YAML file in the catalog's schema (``tuner hardware
    --template``). A file may not reuse a catalog chip's name for other numbers (profiles and
    stored trials know chips by name)."""
    from cost_models.catalog_files import load_entry, looks_like_path, unknown_name_error

    catalog = hardware_catalog()
    if name_or_path in catalog:
        return catalog[name_or_path]
    if looks_like_path(name_or_path):
        chip = load_entry(name_or_path, "hardware", HardwareSpec, "tuner hardware --template")
        shipped = catalog.get(chip.name)
        if shipped is not None and shipped != chip:
            raise InvalidInputError(
                f"hardware: {name_or_path}: name",
                f"{chip.name!r} is a catalog chip with other numbers",
                "give your chip another name (name: my-chip)",
            )
        return chip
    raise unknown_name_error(
        "hardware",
        "hardware",
        name_or_path,
        catalog,
        "tuner hardware",
        ", or a chip YAML file (tuner hardware --template)",
    )
