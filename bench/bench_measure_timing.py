"""`tuner measure`'s two timings of one compiled call, side by side on the local device.

``time_compiled(..., pipelined=True)`` (what ``tuner measure`` writes): calls queued back to back,
one synchronization per sample, time per call. ``pipelined=False``: one call, then wait for it
(dispatch + kernel + synchronization). The gap is what a per-call round trip adds to a kernel's
time; the kernel database's collectors time kernels in a stream (CUDA graphs / events), so the
first is the one comparable with it. Run on a GPU: ``python bench/bench_measure_timing.py``.
Results are in docs/benchmarks.md ("tuner measure on an H200").
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax

from tuner.measure import _gemm_args, _gemm_fn, time_compiled

SHAPES = [  # (m, n, k): a decode-sized GEMV up to a prefill-sized GEMM
    (1, 1024, 1024),
    (1, 4096, 4096),
    (8, 8192, 8192),
    (64, 4096, 4096),
    (256, 8192, 8192),
    (1024, 4096, 4096),
    (4096, 8192, 8192),
    (8192, 16384, 16384),
]


def main() -> None:
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}")
    print("| m | n | k | queued (ms) | one call, synchronized (ms) | synchronized / queued | queued TFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    fn = _gemm_fn("bfloat16")
    for m, n, k in SHAPES:
        args = _gemm_args("bfloat16", m, n, k, device)
        queued = time_compiled(fn, args, repeats=10, warmup=3, pipelined=True)
        synced = time_compiled(fn, args, repeats=10, warmup=3, pipelined=False)
        tflops = 2 * m * n * k / (queued * 1e-3) / 1e12
        print(f"| {m} | {n} | {k} | {queued:.4f} | {synced:.4f} | {synced / queued:.2f} | {tflops:.1f} |")


if __name__ == "__main__":
    main()
