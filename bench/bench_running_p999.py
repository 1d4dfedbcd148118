"""The steady state's 99.9th percentile of an open loop's running batch (``running_p999``: a gamma
law of the linearized load's mean and variance, cost_models.serving._load_fluctuation and
gamma_quantile) against ``tuner simulate``'s, over deployments at 50-98% of their highest stable
rate and several seeds.

    PYTHONPATH=. python bench/bench_running_p999.py [--requests 20000] [--seeds 3] [--first-seed 0] [--case TEXT]

The simulated percentile is over time while the load is on (``SimulationResult.running_time_s``,
``running_quantile``): by PASTA, the batch an arrival finds. One row per load: the analytic mean
and 99.9th percentile, the simulated ones (the seeds' mean, and each seed's percentile), the cap
(``max_concurrency``), simulated / analytic at the 99.9th percentile (the seeds' mean), whether the
simulation reached its cap (a preemption, or the batch at the cap, in some seed), whether the
analytic percentile itself reaches the cap (the criterion before ``serving.RUNNING_P999_MARGIN``),
whether the steady state prints the ``near capacity:`` note (``serving.near_capacity``), and the
analytic TTFT p99 over the simulated (the seeds' mean). Rows where some seed's simulated percentile
reached the cap are censored (the simulated batch cannot pass it): their ratio is a lower bound.
The summary after the table is the law's error on the uncensored rows, which
``serving.RUNNING_P999_MARGIN`` is taken from (the largest seeds'-mean ratio, less 1).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cost_models.serving_simulation as simulation
from cost_models.serving_simulation import SimulationResult, simulate_one

#: Open-loop shares of the highest stable rate.
SHARES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
#: (label, simulate_one keywords without the load): the docs' corpus (docs/serving.md, "Percentiles")
#: and two more models and engines (SGLang, a longer generation; an A100 under vLLM with spread lengths).
CASES: tuple[tuple[str, dict], ...] = (
    ("llama-3-8b 1xH100 trtllm 1024/128",
     {"model": "llama-3-8b", "hardware": "h100-sxm", "chips": 1, "mesh": (1, 1, 1), "backend": "trtllm",
      "prompt_len": 1024, "gen_len": 128}),
    ("llama-3-8b 8xH100 vllm 1024+-300/128+-40",
     {"model": "llama-3-8b", "hardware": "h100-sxm", "chips": 8, "mesh": (1, 1, 8), "backend": "vllm",
      "prompt_len": 1024, "gen_len": 128, "prompt_len_std": 300.0, "gen_len_std": 40.0}),
    ("llama-3-70b fp8 4xH100 vllm 2048/256",
     {"model": "llama-3-70b", "hardware": "h100-sxm", "chips": 4, "mesh": (1, 1, 4), "backend": "vllm",
      "weight_bits": "fp8", "act_bits": "fp8", "prompt_len": 2048, "gen_len": 256}),
    ("mixtral-8x7b fp8 2xH200 vllm 1024/256",
     {"model": "mixtral-8x7b", "hardware": "h200", "chips": 2, "mesh": (1, 1, 2), "backend": "vllm",
      "weight_bits": "fp8", "act_bits": "fp8", "prompt_len": 1024, "gen_len": 256}),
    ("qwen3-32b 2xH200 sglang 2048/512",
     {"model": "qwen3-32b", "hardware": "h200", "chips": 2, "mesh": (1, 1, 2), "backend": "sglang",
      "prompt_len": 2048, "gen_len": 512}),
    ("llama-3.1-8b 1xA100 vllm 512+-200/256+-100",
     {"model": "llama-3.1-8b", "hardware": "a100-80gb", "chips": 1, "mesh": (1, 1, 1), "backend": "vllm",
      "prompt_len": 512, "gen_len": 256, "prompt_len_std": 200.0, "gen_len_std": 100.0}),
)  # fmt: skip


def top_rate(kw: dict) -> float:
    """The steady state's highest stable request rate (tuner simulate's ``max_stable_request_rate``)."""
    out = simulate_one(request_rate=1e4, requests=50, seed=0, **kw)
    return float(out["analytic"]["max_stable_request_rate"])


def run(kw: dict, rate: float, requests: int, seed: int) -> tuple[dict, SimulationResult]:
    """simulate_one's report and the SimulationResult behind it (its running batch over time)."""
    kept: list[SimulationResult] = []
    original = simulation.simulate_serving

    def keep(*args, **kwargs) -> SimulationResult:
        kept.append(original(*args, **kwargs))
        return kept[-1]

    simulation.simulate_serving = keep
    try:
        report = simulate_one(request_rate=rate, requests=requests, seed=seed, **kw)
    finally:
        simulation.simulate_serving = original
    return report, kept[0]


def rows(cases, shares, requests: int, seeds: range):
    out = []
    for label, kw in cases:
        top = top_rate(kw)
        for share in shares:
            sims, analytic, notes = [], None, []
            for seed in seeds:
                report, result = run(kw, share * top, requests, seed)
                analytic, notes = report["analytic"]["deployment"], report["notes"]
                sims.append(
                    {
                        "p999": result.running_quantile(0.999),
                        "mean": float(np.dot(np.arange(result.running_time_s.size), result.running_time_s))
                        / float(result.running_time_s.sum()),
                        "peak": result.peak_running,
                        "preemptions": result.preemptions,
                        "ttft_p99_s": report["simulated"]["ttft_s"]["p99"],
                    }
                )
            cap = float(analytic["max_concurrency"])
            p999 = float(analytic["running_p999"])
            sim_p999 = [s["p999"] for s in sims]
            out.append(
                {
                    "case": label,
                    "share": share,
                    "rate": share * top,
                    "cap": cap,
                    "mean": float(analytic["running"]),
                    "p999": p999,
                    "sim_mean": float(np.mean([s["mean"] for s in sims])),
                    "sim_p999": float(np.mean(sim_p999)),
                    "sim_p999_seeds": sim_p999,
                    # each seed's simulated / analytic (the law's error, seed by seed)
                    "ratios": [v / p999 for v in sim_p999],
                    "reached": any(s["preemptions"] > 0 or s["peak"] >= cap for s in sims),
                    "censored": max(sim_p999) >= cap,
                    "flagged": any(n.startswith("near capacity:") for n in notes),
                    "ttft_p99_ratio": float(report["analytic"]["ttft_p99_s"])
                    / float(np.mean([s["ttft_p99_s"] for s in sims])),
                }
            )
            yield out[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--case", default="", help="only the cases whose label holds this text")
    args = parser.parse_args()
    cases = tuple(c for c in CASES if args.case in c[0])
    start = time.perf_counter()
    print(
        "| case | load | cap | mean a / s | p999 a | p999 s (seeds) | s / a | reached cap | p999 a >= cap | flagged "
        "| TTFT p99 a/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    done = []
    for r in rows(cases, SHARES, args.requests, range(args.first_seed, args.first_seed + args.seeds)):
        seeds = " / ".join(f"{v:.0f}" for v in r["sim_p999_seeds"])
        print(
            f"| {r['case']} | {r['share']:.0%} ({r['rate']:.3g}/s) | {r['cap']:.0f} | {r['mean']:.1f} / "
            f"{r['sim_mean']:.1f} | {r['p999']:.1f} | {r['sim_p999']:.1f} ({seeds}) | "
            f"{r['sim_p999'] / r['p999']:.3f}{' (censored)' if r['censored'] else ''} | "
            f"{'yes' if r['reached'] else ''} | {'yes' if r['p999'] >= r['cap'] else ''} | "
            f"{'yes' if r['flagged'] else ''} | {r['ttft_p99_ratio']:.2f} |",
            flush=True,
        )
        done.append(r)
    free = [x for r in done if not r["censored"] for x in r["ratios"]]
    if free:
        q = np.quantile(free, [0.0, 0.1, 0.5, 0.9, 1.0])
        print(
            f"\nuncensored seed-rows: {len(free)}; simulated / analytic p999: min {q[0]:.3f}, p10 {q[1]:.3f}, "
            f"median {q[2]:.3f}, p90 {q[3]:.3f}, max {q[4]:.3f}"
        )
        by_row = [r["sim_p999"] / r["p999"] for r in done if not r["censored"]]
        print(f"uncensored rows (seeds' mean): {len(by_row)}; max {max(by_row):.3f}, median {np.median(by_row):.3f}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
