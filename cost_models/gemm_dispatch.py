"""An engine's GEMM kernel choice by shape: which kernel configuration a call of (m, n) runs.

A dispatch is read from the engine's source, not fitted; what each configuration costs relative
to the parametric model is (``GemmParams.dispatch_factor_<c>``, tuner calibrate). The model's
terms (wave quantization, split-K, the CTA saturation) take one tile for every m; an engine whose
dispatch switches kernels at set m and n runs steps in time the smooth terms and the measured
shape correction (cost_models/gemm_shape.py, 0.25 octave in m) blur across.

``vllm_sm89_fp8``: vLLM's CUTLASS 2.x fp8 scaled_mm on SM89 (L40S, L4, RTX 4090):
csrc/quantization/cutlass_w8a8/scaled_mm_c2x_sm89_fp8_dispatch.cuh, cutlass_gemm_sm89_fp8_dispatch.
It buckets m by its next power of two (16, 32, 64, 128, 256, above) and then n by its next power
of two; each (m, n) bucket runs one configuration (tile M x N x K, warp tile, stages, fast or
exact fp8 accumulation):

    m <= 16     n <= 8192: 16x64x128      n <= 16384: 16x128x64    above: 32x64x128
    m <= 32     n <= 8192: 32x64x128      n <= 16384: 32x128x128   above: 32x64x128
    m <= 64     n <= 8192: 64x64x128 (exact accumulation)  n <= 16384: 64x128x128  above: 64x64x128 (exact)
    m <= 128    n <= 8192: 64x128x128     n <= 16384: 128x128x64   above: 128x64x128
    m <= 256    n <= 4096: 64x128x128     above: 128x128x64
    m > 256     n <= 4096: 128x128x64     n <= 8192: 256x128x64 (3 stages)  above: 128x128x64

(``np2 <= 8196`` and ``np2 <= 24576`` in the source are n <= 8192 and n <= 16384 for a power of
two.) Later vLLM sources floor the m bucket at 32 (mp2 = max(32, next_pow_2(m))), so m <= 16
would run the m <= 32 kernels; the kernel database's vLLM 0.24 rows on an L40S step at m = 16: at
the same (n, k), n <= 8192, m = 17-32 take a median 1.48x the m <= 16 time (47 weight shapes),
m = 33-64 1.16x the m = 17-32 time (23), where SGLang's and TRT-LLM's fp8 rows on the same chip
stay within 1.02-1.04x (data/kernels/gemm_perf_all_rows.csv.gz), so the m <= 16 bucket is kept.

The classes are the configurations by where they sit in the table (two cells of one tile shape
are one class when they are one kernel: m <= 16 above 16384 and m <= 32 at n <= 8192 or above
16384 all run 32x64x128 with 16x64x64 warps and 5 stages; m <= 64 at n <= 8192 and above 16384
both run the exact-accumulation 64x64x128). ``128x128`` is the reference class (factor 1): the
parametric model's compute and memory efficiencies carry its speed.

``sglang_sm89_fp8``: SGLang's sgl-kernel fp8_scaled_mm on SM89 (sgl-kernel/csrc/gemm/fp8_gemm_kernel.cu,
sm89_fp8_dispatch_shape; kernels adapted from TensorRT-LLM's fp8_rowwise_gemm), by m and n alone:

    m = 1       n <= 8192: 16x64x128 7 stages    above: 32x64x128 5 stages
    m <= 16     n <= 8192: 16x64x128 4 stages    n <= 16384: 32x64x128 5 stages   above: 16x64x128 7 stages
    m <= 64     n <= 16384: 32x64x128 7 stages   above: 16x64x128 7 stages
    m <= 128    n <= 8192: 64x64x128 4 stages    n <= 16384: 64x64x128 5 stages   above: 32x64x128 5 stages
    m <= 256    n <= 8192: 128x64x64 5 stages    n <= 16384: 64x128x64 7 stages   above: 128x64x128 4 stages
    m <= 512    n <= 16384: 128x128x64 2 stages  above: 128x128x64 4 stages
    m > 512     n <= 8192: 128x128x64 3 stages   above: 128x128x64 2 stages

Its classes are named by tile and stages ("16x64s7"); 128x128s3, the m > 512, n <= 8192 kernel
(a third of the kernel database's rows), is the reference. Before its factors, over the l40s
SGLang fp8 group's 3,000 rows, the shipped fit's median log residual was +0.32 at m = 257-512,
n <= 8192 (a 2-stage kernel), +0.13 at m > 512, n > 16384 (2 stages), +0.08 at m = 129-256,
n > 16384, the other cells within 0.04; TRT-LLM's fp8 rows on the same chip, binned alike, within
0.10 in cells of 4-12 rows and 0.03 elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KernelDispatch:
    """One engine's choice of kernel configuration by (m, n): ``classify`` gives each call's
    index into ``classes``; the ``reference`` class runs at the parametric model's speed."""

    name: str
    classes: tuple[str, ...]
    reference: str
    classify: Callable[[np.ndarray, np.ndarray], np.ndarray]

    @property
    def factor_fields(self) -> tuple[str, ...]:
        """The GemmParams field of each class but the reference: its kernel-time factor."""
        return tuple(f"dispatch_factor_{c}" for c in self.classes if c != self.reference)


_VLLM_CLASSES = ("16x64", "16x128", "32x64", "32x128", "64x64", "64x128", "128x64", "128x128", "256x128")


def vllm_sm89_fp8_class(m, n) -> np.ndarray:
    """Index into ``VLLM_SM89_FP8.classes`` of the configuration each (m, n) runs (arrays
    broadcast; the module docstring's table)."""
    m, n = np.asarray(m, dtype=float), np.asarray(n, dtype=float)
    c = {name: i for i, name in enumerate(_VLLM_CLASSES)}
    narrow, mid = n <= 8192, n <= 16384
    by_m = [
        (m <= 16, np.where(narrow, c["16x64"], np.where(mid, c["16x128"], c["32x64"]))),
        (m <= 32, np.where(narrow, c["32x64"], np.where(mid, c["32x128"], c["32x64"]))),
        (m <= 64, np.where(mid & ~narrow, c["64x128"], c["64x64"])),
        (m <= 128, np.where(narrow, c["64x128"], np.where(mid, c["128x128"], c["128x64"]))),
        (m <= 256, np.where(n <= 4096, c["64x128"], c["128x128"])),
    ]
    large = np.where((n > 4096) & narrow, c["256x128"], c["128x128"])
    return np.select([cond for cond, _ in by_m], [value for _, value in by_m], large)


_SGLANG_CLASSES = (
    "16x64s7",
    "32x64s5",
    "16x64s4",
    "32x64s7",
    "64x64s4",
    "64x64s5",
    "128x64s5",
    "64x128s7",
    "128x64s4",
    "128x128s2",
    "128x128s4",
    "128x128s3",
)


def sglang_sm89_fp8_class(m, n) -> np.ndarray:
    """Index into ``SGLANG_SM89_FP8.classes`` of the configuration each (m, n) runs (arrays
    broadcast; the module docstring's table)."""
    m, n = np.asarray(m, dtype=float), np.asarray(n, dtype=float)
    c = {name: i for i, name in enumerate(_SGLANG_CLASSES)}
    narrow, mid = n <= 8192, n <= 16384

    def by_n(at_narrow: str, at_mid: str, above: str) -> np.ndarray:
        return np.where(narrow, c[at_narrow], np.where(mid, c[at_mid], c[above]))

    by_m = [
        (m <= 1, by_n("16x64s7", "32x64s5", "32x64s5")),
        (m <= 16, by_n("16x64s4", "32x64s5", "16x64s7")),
        (m <= 64, by_n("32x64s7", "32x64s7", "16x64s7")),
        (m <= 128, by_n("64x64s4", "64x64s5", "32x64s5")),
        (m <= 256, by_n("128x64s5", "64x128s7", "128x64s4")),
        (m <= 512, by_n("128x128s2", "128x128s2", "128x128s4")),
    ]
    large = by_n("128x128s3", "128x128s2", "128x128s2")
    return np.select([cond for cond, _ in by_m], [value for _, value in by_m], large)


VLLM_SM89_FP8 = KernelDispatch("vllm_sm89_fp8", _VLLM_CLASSES, "128x128", vllm_sm89_fp8_class)
SGLANG_SM89_FP8 = KernelDispatch("sglang_sm89_fp8", _SGLANG_CLASSES, "128x128s3", sglang_sm89_fp8_class)
#: The dispatches a GemmParams.kernel_dispatch may name.
DISPATCHES: dict[str, KernelDispatch] = {d.name: d for d in (VLLM_SM89_FP8, SGLANG_SM89_FP8)}
#: Every dispatch's factor fields (GemmParams has one float field for each).
FACTOR_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(f for d in DISPATCHES.values() for f in d.factor_fields))


def dispatch_factor(dispatch: str, factors: dict[str, float], m, n) -> np.ndarray:
    """Kernel-time factor of each (m, n) under ``dispatch``: ``factors[class]`` (the reference
    class's 1)."""
    d = DISPATCHES[dispatch]
    table = np.array([1.0 if name == d.reference else factors[name] for name in d.classes])
    return table[d.classify(m, n)]
