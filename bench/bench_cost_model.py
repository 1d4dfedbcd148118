"""Throughput of the vectorized cost model: whole-model configurations scored per second, one core.

Run on demand (not a pytest test):

    python bench/bench_cost_model.py [--n N] [--repeats R] [--markdown]

For prefill and for decode separately, it draws N configurations from a realistic design space
(catalog models, batch, seq_len, weight/activation/KV formats, flash attention; fixed seed) and
times ``analyze(...)`` plus every whole-model total (time, FLOPs, bytes, weight / KV-cache /
activation footprints), which forces every operator's costs and roofline times to be computed.

Figures, each the best and the median of ``--repeats`` runs (time.perf_counter):

* vectorized: one ``analyze`` call on all N configurations, construction excluded;
* vectorized incl. construction: ``make_configs`` (from a list of ModelSpec and arrays) + the above;
* Python loop (baseline): ``analyze`` called once per configuration on the first ``--loop-n``
  configurations, each a batch of one built with ``configs.take(i)`` outside the timed region.

The speedup is vectorized / loop, both measured in the same run. Targets (from the issue):
>= 200,000 configurations/s on one core and >= 50x the Python loop; both are judged on the
median, the more conservative of the two figures on a noisy machine.
"""

from __future__ import annotations

import os

# One core: keep BLAS/OpenMP pools at one thread. Must happen before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from cost_models import analyze, get_hardware, get_model, make_configs
from cost_models.dtypes import BF16, FP8, INT4, INT8
from machine import cpu_model, pin_to_one_cpu

MODELS = ("gpt2", "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "mistral-7b", "palm-540b")
DTYPES = np.array([BF16, FP8, INT8, INT4])
TARGET_CONFIGS_PER_S = 200_000
TARGET_SPEEDUP = 50.0


def design_space(n: int, seed: int) -> dict:
    """Inputs of make_configs for n random configurations (one ModelSpec per configuration)."""
    rng = np.random.default_rng(seed)
    catalog = [get_model(name) for name in MODELS]
    model_index = rng.integers(0, len(catalog), n)
    return dict(
        model=[catalog[i] for i in model_index],
        batch=2 ** rng.integers(0, 10, n),  # 1 .. 512
        # log-uniform whole numbers in 128 .. 32768
        seq_len=np.rint(2.0 ** rng.uniform(7.0, 15.0, n)).astype(np.int64),
        weight_dtype=rng.choice(DTYPES, n),
        act_dtype=rng.choice(DTYPES, n),
        kv_dtype=rng.choice(DTYPES, n),
        flash_attention=rng.random(n) < 0.5,
    )


def score(configs, hardware) -> tuple:
    """analyze plus every whole-model total, so everything is actually computed."""
    result = analyze(configs, hardware)
    return (
        result.total_time_s,
        result.total_flops,
        result.total_bytes,
        result.weight_footprint_bytes,
        result.kv_cache_footprint_bytes,
        result.activation_footprint_bytes,
    )


def timed(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of each of ``repeats`` calls (one untimed warm-up call first), by ``clock``."""
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return times


def cpu_timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """CPU seconds of this process for each of ``repeats`` calls: steadier than the wall clock on a
    machine shared with other jobs (the rate of the code, not of the share of a core it got)."""
    return timed(fn, repeats, time.process_time)


def rates(count: int, seconds: list[float]) -> tuple[float, float]:
    """(best, median) configurations per second."""
    return count / min(seconds), count / statistics.median(seconds)


def bench_phase(phase: str, n: int, loop_n: int, repeats: int, hardware, seed: int) -> dict:
    space = design_space(n, seed)
    configs = make_configs(phase=phase, **space)

    vector = rates(n, timed(lambda: score(configs, hardware), repeats))
    with_construction = rates(n, timed(lambda: score(make_configs(phase=phase, **space), hardware), repeats))

    loop_n = min(loop_n, n)
    singles = [configs.take(i) for i in range(loop_n)]

    def loop() -> list:
        return [score(single, hardware) for single in singles]

    loop_rates = rates(loop_n, timed(loop, repeats))

    # Sanity check (untimed): the loop and the vectorized call agree.
    whole = score(configs.take(slice(0, loop_n)), hardware)
    one_by_one = loop()
    for k, column in enumerate(whole):
        np.testing.assert_allclose(column, [r[k][0] for r in one_by_one], rtol=1e-12)

    return dict(
        phase=phase,
        n=n,
        loop_n=loop_n,
        vector=vector,
        with_construction=with_construction,
        loop=loop_rates,
        speedup=(vector[0] / loop_rates[0], vector[1] / loop_rates[1]),
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="configurations per phase")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure")
    parser.add_argument(
        "--loop-n", type=int, default=2_000, help="configurations scored one at a time for the loop baseline"
    )
    parser.add_argument("--hardware", default="h100-sxm", help="catalog chip to score on")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: lowest allowed)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1 or args.loop_n < 1:
        parser.error("--n, --repeats and --loop-n must be >= 1")

    pinning = pin_to_one_cpu(args.cpu)
    hardware = get_hardware(args.hardware)
    results = [
        bench_phase(phase, args.n, args.loop_n, args.repeats, hardware, args.seed + i)
        for i, phase in enumerate(("prefill", "decode"))
    ]

    machine = (
        f"{cpu_model()}, {os.cpu_count()} cores ({pinning}); "
        f"Python {platform.python_version()}, numpy {np.__version__}, {platform.system()}"
    )
    print(f"machine: {machine}")
    print(
        f"design space: {', '.join(MODELS)}; batch 1..512 (powers of 2), seq_len 128..32768 "
        f"(log-uniform), weight/act/kv dtype in bf16/fp8/int8/int4, flash attention on/off; "
        f"hardware {hardware.name}; seed {args.seed}; {args.repeats} repeats; "
        f"rates in configurations/s as best / median"
    )

    if args.markdown:
        print()
        print(
            "| phase | configs | vectorized | vectorized incl. make_configs | Python loop "
            "| speedup (vectorized / loop) |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for r in results:
            print(
                f"| {r['phase']} | {r['n']:,} | {r['vector'][0]:,.0f} / {r['vector'][1]:,.0f} "
                f"| {r['with_construction'][0]:,.0f} / {r['with_construction'][1]:,.0f} "
                f"| {r['loop'][0]:,.0f} / {r['loop'][1]:,.0f} ({r['loop_n']:,} configs) "
                f"| {r['speedup'][0]:.0f}x / {r['speedup'][1]:.0f}x |"
            )
        print()
    else:
        for r in results:
            print(f"\n{r['phase']} ({r['n']:,} configurations)")
            print(
                f"  vectorized (analyze + totals)      best {r['vector'][0]:>12,.0f}/s   "
                f"median {r['vector'][1]:>12,.0f}/s"
            )
            print(
                f"  vectorized incl. make_configs      best {r['with_construction'][0]:>12,.0f}/s   "
                f"median {r['with_construction'][1]:>12,.0f}/s"
            )
            label = f"Python loop ({r['loop_n']:,} configs)"
            print(f"  {label:<35}best {r['loop'][0]:>12,.0f}/s   median {r['loop'][1]:>12,.0f}/s")
            print(
                f"  speedup vectorized / loop          best {r['speedup'][0]:>11,.0f}x    "
                f"median {r['speedup'][1]:>11,.0f}x"
            )
        print()

    all_ok = True
    for r in results:
        rate_ok = r["vector"][1] >= TARGET_CONFIGS_PER_S
        speed_ok = r["speedup"][1] >= TARGET_SPEEDUP
        all_ok &= rate_ok and speed_ok
        prefix = "- " if args.markdown else ""
        print(
            f"{prefix}{verdict(rate_ok)} {r['phase']}: {r['vector'][1]:,.0f} configurations/s "
            f"(median) vs target >= {TARGET_CONFIGS_PER_S:,}"
        )
        print(
            f"{prefix}{verdict(speed_ok)} {r['phase']}: {r['speedup'][1]:.0f}x the Python loop "
            f"(median) vs target >= {TARGET_SPEEDUP:.0f}x"
        )
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
