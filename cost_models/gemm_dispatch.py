"""An engine's GEMM kernel choice by shape: which kernel configuration a call of (m, n, k) runs.

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

``deepgemm_sm90_fp8_block``: DeepGEMM's fp8 GEMM with 128x128 block scales on SM90 (H100, H200),
which SGLang runs for fp8_block (the kernel database's kernel_source
sglang_deepgemm_gemm_nt_f8f8bf16, SGLang 0.5.14). DeepGEMM picks its layout per call by (m, n, k)
and the SM count (csrc/jit_kernels/heuristics/sm90.hpp, the 2026 layout-candidate version:
get_layout_candidates, get_layout_info, compare): every block M of 64, 128, 256 (and 16, 32 at
m <= 16, 32), block N 16 to 192 in steps of 16 (144, 160, 192 above 128: the 1D2D kernel's
unroll rule), one at most of the two over 128, clusters 1x1, 2x1 and 1x2, at least 3 pipeline
stages in 232,448 bytes of shared memory (4 below 128x192), scored by an L1/L2 traffic model over
the wave efficiency, a cluster refused at one wave; the least score wins (the first on a tie).
:func:`deepgemm_sm90_layout` follows it. Over the kernel database's 3,000 rows each of h100 and
h200 SGLang fp8_block, binned by the layout it gives, the shipped fit's median log residual was
+0.70 (h200, 62 rows) and +0.84 (h100, 35) where one wave of 256x128 blocks runs, +0.75 (39) and
+0.91 (51) for one wave of 128x192 blocks (2.0-2.5x the model's time: m=1280 n=3072 k=16384
299 us, m=1281 118 us, which runs 2 waves of 128x128 blocks in 1x2 clusters), every other layout
of over 20 rows within 0.2 of 0 on both chips. Those are the heuristic's only one-wave picks of
blocks of 128x192 elements or more (256x96 and 256x112 at one wave ran no row). vLLM's DeepGEMM
rows on the same chips (another DeepGEMM, under a per-call floor) stay within 0.05 in both bins.
Two classes: ``large_one_wave`` (one wave of blocks of at least 128x192 elements) and ``other``
(the reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KernelDispatch:
    """One engine's choice of kernel configuration by shape: ``classify(m, n, k, sms)`` gives each
    call's index into ``classes`` (``sms``: the chip's SM count); the ``reference`` class runs at
    the parametric model's speed."""

    name: str
    classes: tuple[str, ...]
    reference: str
    classify: Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]

    @property
    def factor_fields(self) -> tuple[str, ...]:
        """The GemmParams field of each class but the reference: its kernel-time factor."""
        return tuple(f"dispatch_factor_{c}" for c in self.classes if c != self.reference)


_VLLM_CLASSES = ("16x64", "16x128", "32x64", "32x128", "64x64", "64x128", "128x64", "128x128", "256x128")


def vllm_sm89_fp8_class(m, n, k=None, sms=None) -> np.ndarray:
    """Index into ``VLLM_SM89_FP8.classes`` of the configuration each (m, n) runs (arrays
    broadcast; the module docstring's table; k and the SM count do not enter)."""
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


def sglang_sm89_fp8_class(m, n, k=None, sms=None) -> np.ndarray:
    """Index into ``SGLANG_SM89_FP8.classes`` of the configuration each (m, n) runs (arrays
    broadcast; the module docstring's table; k and the SM count do not enter)."""
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


#: DeepGEMM SM90 (sm90.hpp): shared memory per SM, the most pipeline stages, block K of fp8.
_SM90_SMEM_BYTES = 232_448
_SM90_MAX_STAGES = 16
_BLOCK_K = 128


def _deepgemm_sm90_candidates() -> list[tuple[int, int, int, int]]:
    """(cluster_m, cluster_n, block_m, block_n) in get_layout_candidates' order, before the checks
    that depend on the call (m <= 16 / 32 for block M 16 / 32, the stage count, which needs k)."""
    out = []
    for cluster_m in (1, 2):
        for cluster_n in (1, 2):
            if cluster_m * cluster_n > 2:
                continue
            for block_m in (64, 128, 16, 32, 256):
                for block_n in range(16, 193, 16):
                    # The 1D2D kernel's unroll rule: above block K, block_n % (block_n - 128) == 0
                    # or 128 % (block_n - 128) == 0 (144, 160, 192).
                    over = block_n - _BLOCK_K
                    if over > 0 and block_n % over and _BLOCK_K % over:
                        continue
                    if block_m > 128 and block_n > 128:  # registers
                        continue
                    out.append((cluster_m, cluster_n, block_m, block_n))
    return out


#: The candidates as columns (one row each), for scoring them all at once.
_DG_CLUSTER_M, _DG_CLUSTER_N, _DG_BLOCK_M, _DG_BLOCK_N = (
    np.array(column, dtype=float)[:, None] for column in zip(*_deepgemm_sm90_candidates(), strict=True)
)


def deepgemm_sm90_layout(m, n, k, sms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(block_m, block_n, waves) DeepGEMM's SM90 heuristic picks for an fp8 1D2D GEMM of each
    (m, n, k) on ``sms`` SMs (arrays broadcast; the module docstring): sm90.hpp's candidates, each
    scored by get_layout_info's cycles, the least kept (the earlier on a tie). Every candidate is
    a row of one (candidates x calls) array: a loop over them cost ~2,700 numpy calls a call."""
    calls = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (m, n, k)))
    shape = calls[0].shape
    m, n, k = (a.ravel()[None, :] for a in calls)
    bm, bn, cm, cn = _DG_BLOCK_M, _DG_BLOCK_N, _DG_CLUSTER_M, _DG_CLUSTER_N
    # Stages: what the shared memory left after the output tile (1 KB aligned), the barriers and
    # the B scales of every k block (twice unless block N divides 128) holds per stage of A, B and
    # the A scales (128-byte aligned).
    sfb = 8.0 * np.ceil(np.ceil(k / _BLOCK_K) * 4 * np.where(_BLOCK_K % bn == 0, 1, 2) / 8)
    fixed = 1024 * np.ceil(bm * bn * 2 / 1024) + _SM90_MAX_STAGES * 16 + sfb
    per_stage = bm * _BLOCK_K + bn * _BLOCK_K + 128 * np.ceil(bm * 4 / 128)
    stages = np.minimum(np.floor((_SM90_SMEM_BYTES - fixed) / per_stage), _SM90_MAX_STAGES)
    ok = (stages >= np.where(bm * bn < 128 * 192, 4, 3)) & ((bm > 32) | (m <= bm))  # 16 / 32 at m <= 16 / 32
    ok &= sms % (cm * cn) == 0
    blocks = np.ceil(m / bm) * np.ceil(n / bn)
    waves = np.ceil(blocks / sms)
    l2_bytes_per_cycle = float(int(min(64.0 * sms, 8e6 / 1.3e3)))
    l2 = np.floor((k * (bm // cn + bn // cm) + bm * bn * 2) * blocks / l2_bytes_per_cycle)
    l1 = np.floor((k * (bm + bn) + k * (np.maximum(64, bm) + bn) + 2 * bm * bn * 2) * blocks / (128.0 * sms))
    cycles = np.floor(np.maximum(l1, l2) / (blocks / (waves * sms)))
    # A cluster's sync is refused at one wave; argmin keeps the first of equal scores.
    cycles[~ok | ((cm * cn > 1) & (waves <= 1))] = np.inf
    best = np.argmin(cycles, axis=0)
    picked = (best, np.arange(best.size))
    return tuple(np.broadcast_to(a, cycles.shape)[picked].reshape(shape) for a in (bm, bn, waves))


_DEEPGEMM_CLASSES = ("large_one_wave", "other")


def deepgemm_sm90_fp8_block_class(m, n, k, sms) -> np.ndarray:
    """Index into ``DEEPGEMM_SM90_FP8_BLOCK.classes``: 0 where DeepGEMM runs one wave of blocks of
    at least 128x192 elements, 1 elsewhere."""
    m, n, k = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (m, n, k)))
    out = np.ones(m.shape, dtype=np.intp)
    # The heuristic's layout is needed only where it can be such a wave: one wave of 256x128
    # blocks (the fewest of the 256-row blocks') or of 128x192 blocks fits the SMs, while neither
    # 128x160 nor 64x192 blocks do. At one wave the score is a block's L1/L2 traffic, less for
    # those two than for any large block, and both keep their 4 stages to k = 131072.
    possible = (
        ((np.ceil(m / 256) * np.ceil(n / 128) <= sms) | (np.ceil(m / 128) * np.ceil(n / 192) <= sms))
        & (np.ceil(m / 128) * np.ceil(n / 128) > sms)
        & (((np.ceil(m / 128) * np.ceil(n / 160) > sms) & (np.ceil(m / 64) * np.ceil(n / 192) > sms)) | (k > 131072))
    )
    if possible.any():
        # Each distinct shape scored once (a search's calls repeat a model's few (n, k) at a few m).
        shapes, back = np.unique(np.stack([m[possible], n[possible], k[possible]], axis=1), axis=0, return_inverse=True)
        block_m, block_n, waves = deepgemm_sm90_layout(shapes[:, 0], shapes[:, 1], shapes[:, 2], int(sms))
        out[possible] = np.where((waves <= 1) & (block_m * block_n >= 128 * 192), 0, 1)[back.ravel()]
    return out


VLLM_SM89_FP8 = KernelDispatch("vllm_sm89_fp8", _VLLM_CLASSES, "128x128", vllm_sm89_fp8_class)
SGLANG_SM89_FP8 = KernelDispatch("sglang_sm89_fp8", _SGLANG_CLASSES, "128x128s3", sglang_sm89_fp8_class)
DEEPGEMM_SM90_FP8_BLOCK = KernelDispatch(
    "deepgemm_sm90_fp8_block", _DEEPGEMM_CLASSES, "other", deepgemm_sm90_fp8_block_class
)
#: The dispatches a GemmParams.kernel_dispatch may name.
DISPATCHES: dict[str, KernelDispatch] = {d.name: d for d in (VLLM_SM89_FP8, SGLANG_SM89_FP8, DEEPGEMM_SM90_FP8_BLOCK)}
#: Every dispatch's factor fields (GemmParams has one float field for each).
FACTOR_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(f for d in DISPATCHES.values() for f in d.factor_fields))


def dispatch_factor(dispatch: str, factors: dict[str, float], m, n, k, sms: int) -> np.ndarray:
    """Kernel-time factor of each (m, n, k) under ``dispatch`` on ``sms`` SMs: ``factors[class]``
    (the reference class's 1)."""
    d = DISPATCHES[dispatch]
    table = np.array([1.0 if name == d.reference else factors[name] for name in d.classes])
    return table[d.classify(m, n, k, sms)]
