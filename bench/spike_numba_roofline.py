"""How much of an estimate a compiled per-slot roofline kernel would save (issue 13 item 6 asks
for 1,000,000 full estimates a second a core; docs/benchmarks.md, "A compiled roofline kernel,
measured (2026-12-06)").

Run on demand (not a pytest test; numba is not a dependency of the project):

    pip install numba && python bench/spike_numba_roofline.py [--hardware tpu-v4] [--n 100000]

Captures one phase's operator costs and chip shares from an estimate of bench_estimate's draw,
then times ``deployment.chip_roofline`` on them (numpy, as shipped) against two numba kernels of
its common arithmetic: each slot's per-chip FLOPs and bytes, max(compute, memory) and the
repeats-weighted totals (the expert, FFN-share and twin special cases are left out, so the
kernels do no more work than the real one). Row-major runs every slot of one configuration, then
the next; slot-major one slot over every configuration, then the next. A timing of the
arithmetic, not a replacement: the numbers are not checked bit for bit.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cost_models.deployment as deployment
from bench_estimate import deployments
from cost_models import get_hardware
from machine import cpu_model
from tuner.allocator import reuse_freed_memory


def _best_ms(call, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hardware", default="tpu-v4")
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("numba") is None:
        print("numba is not installed (pip install numba): nothing to time")
        return 0
    import numba

    reuse_freed_memory()
    hardware = get_hardware(args.hardware)
    d = deployments(args.n, hardware, 0)
    captured: dict = {}
    shipped = deployment.chip_roofline

    def capture(ops, shares, chip, expert_scale, layers=None, **kw):
        if not captured and kw.get("chip_ops") is None:
            captured.update(ops=ops, shares=shares, expert_scale=expert_scale, layers=layers, kw=kw)
        return shipped(ops, shares, chip, expert_scale, layers, **kw)

    deployment.chip_roofline = capture
    try:
        deployment.estimate(d)
    finally:
        deployment.chip_roofline = shipped
    ops, shares = captured["ops"], captured["shares"]
    slots, n = ops.flops.shape
    whole_ms = _best_ms(lambda: deployment.estimate(d), 3)
    numpy_ms = _best_ms(
        lambda: shipped(ops, shares, hardware, captured["expert_scale"], captured["layers"], **captured["kw"])
    )

    def rows(name: str) -> np.ndarray:
        return np.stack([np.broadcast_to(ops.row(name, i), (n,)) for i in range(slots)])

    present = np.array([i for i in range(slots) if ops.present[i].any()])
    work = np.stack([np.broadcast_to(shares.work[i], (n,)) for i in range(slots)])
    ways = np.stack(
        [np.ones(n) if shares.weight[i] is None else np.broadcast_to(shares.weight[i], (n,)) for i in range(slots)]
    )
    inputs = (
        present, ops.flops, ops.weight_bytes, ops.act_read_bytes, ops.act_write_bytes,
        rows("kv_read_bytes"), rows("kv_write_bytes"), work, ways,
        hardware.peak_table()[ops.compute_dtype.astype(np.int64)], rows("repeats"),
        np.broadcast_to(shares.kv, (n,)).copy(), float(hardware.memory_bandwidth_bytes_per_s),
    )  # fmt: skip
    out, compute_total, memory_total = np.empty((slots, n)), np.empty(n), np.empty(n)

    @numba.njit(error_model="numpy")
    def row_major(present, fl, wt, ar, aw, kvr, kvw, work, ways, peaks, rep, kv_ways, bw, out, ct, mt):
        for j in range(fl.shape[1]):
            compute_sum = 0.0
            memory_sum = 0.0
            for i in present:
                moved = wt[i, j] / ways[i, j] + ar[i, j] / work[i, j] + aw[i, j] / work[i, j]
                moved += kvr[i, j] / kv_ways[j]
                moved += kvw[i, j] / kv_ways[j]
                compute = fl[i, j] / work[i, j] / peaks[i, j]
                memory = moved / bw
                out[i, j] = compute if compute >= memory else memory
                compute_sum += compute * rep[i, j]
                memory_sum += memory * rep[i, j]
            ct[j] = compute_sum
            mt[j] = memory_sum

    @numba.njit(error_model="numpy")
    def slot_major(present, fl, wt, ar, aw, kvr, kvw, work, ways, peaks, rep, kv_ways, bw, out, ct, mt):
        ct[:] = 0.0
        mt[:] = 0.0
        for i in present:
            for j in range(fl.shape[1]):
                moved = wt[i, j] / ways[i, j] + ar[i, j] / work[i, j] + aw[i, j] / work[i, j]
                moved += kvr[i, j] / kv_ways[j]
                moved += kvw[i, j] / kv_ways[j]
                compute = fl[i, j] / work[i, j] / peaks[i, j]
                memory = moved / bw
                out[i, j] = compute if compute >= memory else memory
                ct[j] += compute * rep[i, j]
                mt[j] += memory * rep[i, j]

    results = {}
    for name, kernel in (("row-major", row_major), ("slot-major", slot_major)):
        start = time.perf_counter()
        kernel(*inputs, out, compute_total, memory_total)  # compiles
        compile_s = time.perf_counter() - start
        results[name] = (_best_ms(lambda k=kernel: k(*inputs, out, compute_total, memory_total)), compile_s)
    print(f"machine: {cpu_model()}; numpy {np.__version__}, numba {numba.__version__}")
    print(f"{args.hardware}, {n:,} deployments, one phase's {len(present)} present slots of {slots}")
    print(f"whole estimate (both phases): {whole_ms:.1f} ms")
    print(f"chip_roofline, numpy as shipped: {numpy_ms:.2f} ms")
    for name, (ms, compile_s) in results.items():
        print(f"numba {name}: {ms:.2f} ms (compiled in {compile_s:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
