"""`tuner measure`'s two timings of one compiled call, side by side on the local device.

``time_compiled(..., pipelined=True)`` (what ``tuner measure`` writes): calls queued back to back,
one synchronization per sample, time per call. ``pipelined=False``: one call, then wait for it
(dispatch + kernel + synchronization). The gap is what a per-call round trip adds to a kernel's
time; the kernel database's collectors time kernels in a stream (CUDA graphs / events), so the
first is the one comparable with it. Run on a GPU: ``python bench/bench_measure_timing.py``.
Results are in docs/benchmarks.md ("tuner measure on an H200").

A third column tries what the queued timing cannot do, time a kernel shorter than JAX's dispatch
(40-55 us a call on the H200 VM): IN_CALL copies of the GEMM in one compiled call, each on its own
activations and the same weights (as the database's collectors run one layer's weights again and
again), timed queued and divided by IN_CALL. It is an experiment, not what `tuner measure` writes:
XLA may merge dots that share an operand into one larger GEMM (its dot merger), which would time
another kernel, so the last column counts the GEMMs left in the optimized program (IN_CALL if none
were merged). On a CPU XLA runs the independent dots on several threads at once (m=64 n=k=4096:
66 ms alone, 16 ms per GEMM sixteen in a call), so the column means nothing there. Not yet run on
a GPU, where one stream runs them in turn.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import re

import jax

from tuner.measure import _gemm_args, _gemm_fn, _random_array, time_compiled

IN_CALL = 16

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
    print(
        "| m | n | k | queued (ms) | one call, synchronized (ms) | synchronized / queued | queued TFLOP/s "
        f"| {IN_CALL} in a call, per GEMM (ms) | GEMMs in that program |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    fn = _gemm_fn("bfloat16")

    def in_call(xs, w):
        return [fn(x, w) for x in xs]

    for m, n, k in SHAPES:
        args = _gemm_args("bfloat16", m, n, k, device)
        queued = time_compiled(fn, args, repeats=10, warmup=3, pipelined=True)
        synced = time_compiled(fn, args, repeats=10, warmup=3, pipelined=False)
        tflops = 2 * m * n * k / (queued * 1e-3) / 1e12
        xs = [_random_array((m, k), "bfloat16", device, seed) for seed in range(IN_CALL)]
        per_gemm = time_compiled(in_call, (xs, args[1]), repeats=10, warmup=3) / IN_CALL
        program = jax.jit(in_call).lower(xs, args[1]).compile().as_text() or ""
        # cuBLAS calls on GPUs (custom-call targets named ...gemm...), dot instructions elsewhere
        gemms = len(re.findall(r"custom_call_target=\"[^\"]*gemm[^\"]*\"", program)) or len(
            re.findall(r"\bdot\(", program)
        )
        print(
            f"| {m} | {n} | {k} | {queued:.4f} | {synced:.4f} | {synced / queued:.2f} | {tflops:.1f} "
            f"| {per_gemm:.4f} | {gemms} |"
        )


if __name__ == "__main__":
    main()
