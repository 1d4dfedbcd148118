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
"""

from __future__ import annotations

import numpy as np

#: Dispatch names a GemmParams.tile_dispatch may hold.
DISPATCHES: tuple[str, ...] = ("vllm_sm89_fp8",)
#: The classes of ``vllm_sm89_fp8`` (cutlass tile M x N), in the order of VLLM_SM89_FP8_FACTORS.
VLLM_SM89_FP8_CLASSES: tuple[str, ...] = (
    "16x64",
    "16x128",
    "32x64",
    "32x128",
    "64x64",
    "64x128",
    "128x64",
    "128x128",
    "256x128",
)
#: The class whose factor is 1 (its speed is the parametric model's).
REFERENCE_CLASS = "128x128"
#: The GemmParams field of each class but the reference: its kernel-time factor.
FACTOR_FIELDS: tuple[str, ...] = tuple(
    f"dispatch_factor_{name}" for name in VLLM_SM89_FP8_CLASSES if name != REFERENCE_CLASS
)


def vllm_sm89_fp8_class(m, n) -> np.ndarray:
    """Index into VLLM_SM89_FP8_CLASSES of the configuration each (m, n) runs (arrays broadcast;
    the module docstring's table)."""
    m, n = np.asarray(m, dtype=float), np.asarray(n, dtype=float)
    c = {name: i for i, name in enumerate(VLLM_SM89_FP8_CLASSES)}
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


def dispatch_factor(dispatch: str, factors: dict[str, float], m, n) -> np.ndarray:
    """Kernel-time factor of each (m, n) under ``dispatch``: ``factors[class]`` (the reference
    class's 1)."""
    if dispatch != "vllm_sm89_fp8":
        raise ValueError(f"unknown GEMM dispatch {dispatch!r}; known: {', '.join(DISPATCHES)}")
    table = np.array([1.0 if name == REFERENCE_CLASS else factors[name] for name in VLLM_SM89_FP8_CLASSES])
    return table[vllm_sm89_fp8_class(m, n)]
