"""The open loop's analytic TTFT over a scan of request rates near the stability edge, and the
rates where it falls as the rate rises (docs/serving.md, "Where it is weak": the open loop's
fixed point).

    PYTHONPATH=<checkout> python bench/bench_open_loop_scan.py [--low 5.50] [--high 6.84] [--step 0.01]
        [--per-rate] [--reference] [--show]

(``PYTHONPATH`` picks the code scanned: ``--reference`` needs the old loop, main before
2026-12-06's converged fixed point, whose constants it sets.)

The deployment is ``tuner estimate``'s

    tuner estimate --model llama-3-70b --hardware h100-sxm --chips 4 --backend vllm \\
        --weight-bits fp8 --act-bits fp8 --prompt-len 2048 --gen-len 256 --request-rate R --json

(the ``serving`` object's ``ttft_s``), one rate at a time with ``--per-rate`` (each rate that
command, in-process: ~0.15 s a rate); by default the rates are one vectorized
:func:`cost_models.serving.serve` call on that command's deployment and workload (captured from
its first rate), which gives each row the numbers of its own call up to the last bits of a sum
(``cost_models.serving._both_iterations``). ``--reference`` runs the fixed point to convergence
by the old stopping rule's constants made tight (``_CARRIED`` 1e-7, ``_SETTLED`` 1e-8, 400
rounds): the rates where the TTFT falls then are genuine second roots, not the stopping rule.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

import numpy as np

import cost_models.serving as serving
import cost_models.serving_one as serving_one_module
from cost_models.serving_one import estimate_serving_one

MODEL, HARDWARE = "llama-3-70b", "h100-sxm"
OPTIONS: dict[str, Any] = {
    "chips": 4, "prompt_len": 2048, "gen_len": 256, "backend": "vllm", "weight_bits": "fp8", "act_bits": "fp8",
}  # fmt: skip
#: The old stopping rule's constants run to convergence (docs/serving.md).
REFERENCE = {"_CARRIED": 1e-7, "_SETTLED": 1e-8, "_OPEN_LOOP_ROUNDS": 400}


def rates_between(low: float, high: float, step: float) -> np.ndarray:
    """The scan's rates, rounded to the step's decimals (as typed on the command line)."""
    decimals = max(0, int(np.ceil(-np.log10(step) - 1e-9)))
    return np.round(np.arange(low, high + step / 2.0, step), decimals)


def ttft_per_rate(rates: np.ndarray) -> np.ndarray:
    """The ``tuner estimate`` TTFT of each rate, one call each (inf where unstable)."""
    out = []
    for rate in rates:
        s = estimate_serving_one(MODEL, HARDWARE, request_rate=float(rate), **OPTIONS)["serving"]
        out.append(s["ttft_s"] if s["stable"] else np.inf)
    return np.array(out, dtype=np.float64)


def steady_states(rates: np.ndarray) -> serving.ServingEstimate:
    """One :func:`serve` call on the command's deployment at every rate."""
    captured: dict[str, Any] = {}
    original = serving_one_module.serve

    def capture(d, w, **kwargs):
        captured.update(d=d, w=w, kwargs=kwargs)
        return original(d, w, **kwargs)

    serving_one_module.serve = capture  # type: ignore[assignment]
    try:
        estimate_serving_one(MODEL, HARDWARE, request_rate=float(rates[0]), **OPTIONS)
    finally:
        serving_one_module.serve = original
    d, w = captured["d"], captured["w"]
    index = np.zeros(len(rates), dtype=int)
    grid = replace(w.take(index), request_rate=np.asarray(rates, dtype=np.float64))
    return serving.serve(d.take(index), grid, **captured["kwargs"])


def ttft_vectorized(rates: np.ndarray) -> np.ndarray:
    """The TTFT of each rate from one vectorized call (inf where unstable)."""
    result = steady_states(rates)
    return np.where(result.stable, result.ttft_s, np.inf)


def falls(rates: np.ndarray, ttft: np.ndarray) -> list[tuple[float, float, float]]:
    """(rate, TTFT at the rate before, TTFT at this rate) where the TTFT falls, over the stable rates."""
    return [
        (float(rates[i]), float(ttft[i - 1]), float(ttft[i]))
        for i in range(1, len(rates))
        if np.isfinite(ttft[i]) and ttft[i] < ttft[i - 1]
    ]


def with_constants(constants: dict[str, Any], run, *args):
    """``run(*args)`` with cost_models.serving's module constants set to ``constants``."""
    missing = [name for name in constants if not hasattr(serving, name)]
    if missing:
        raise SystemExit(
            f"cost_models.serving has no {', '.join(missing)}: --reference runs the old loop (main before it converged)"
        )
    kept = {name: getattr(serving, name) for name in constants}
    for name, value in constants.items():
        setattr(serving, name, value)
    try:
        return run(*args)
    finally:
        for name, value in kept.items():
            setattr(serving, name, value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low", type=float, default=5.50)
    parser.add_argument("--high", type=float, default=6.84)
    parser.add_argument("--step", type=float, default=0.01)
    parser.add_argument("--per-rate", action="store_true", help="one tuner estimate call per rate")
    parser.add_argument("--reference", action="store_true", help="the old loop's constants run to convergence")
    parser.add_argument("--show", action="store_true", help="print every rate's TTFT")
    args = parser.parse_args(argv)
    rates = rates_between(args.low, args.high, args.step)
    run = ttft_per_rate if args.per_rate else ttft_vectorized
    ttft = with_constants(REFERENCE, run, rates) if args.reference else run(rates)
    if args.show:
        for rate, t in zip(rates, ttft, strict=True):
            print(f"{rate:.4f} {t:.4f}")
    found = falls(rates, ttft)
    stable = int(np.isfinite(ttft).sum())
    print(f"{len(rates)} rates {rates[0]:g}-{rates[-1]:g}/s, {stable} stable; TTFT falls at {len(found)}:")
    for rate, before, now in found:
        print(f"  {rate:g} req/s: {before:.3f} -> {now:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
