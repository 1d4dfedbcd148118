"""TPOT percentiles of the analytic steady state (``tpot_p90_s``, ``tpot_p99_s``) against
``tuner simulate``'s: open loops at several shares of the highest stable rate and closed loops at
8 and 32 clients, each with every output exactly ``gen_len`` (``gen_len_std`` 0) and with a wide
spread (half of ``gen_len``). The simulated percentiles are their mean over the seeds.

    PYTHONPATH=. python bench/bench_tpot_percentiles.py [--requests 4000] [--seeds 3] [--case TEXT]

Prints one row per load: analytic / simulated TPOT p50 (the analytic mean: the steady state
reports no median), p90 and p99, the simulated p99 in ms with its range over the seeds, and the
TTFT mean and p99 ratios beside them (a spread that moves the TPOT moves the batch the TTFT waits
behind too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cost_models.serving_simulation import simulate_one

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ttft_percentiles import capacity  # the highest stable rate, as the TTFT bench finds it

OPEN_SHARES = (0.35, 0.7, 0.9)
#: (label, simulate_one keywords without the load and the output spread, ("rate", shares of the
#: highest stable rate) or ("clients", counts))
CASES: tuple[tuple[str, dict, tuple], ...] = (
    (
        "llama-3-8b 1xH100 vllm 1024/128",
        {"model": "llama-3-8b", "hardware": "h100-sxm", "chips": 1, "mesh": (1, 1, 1), "backend": "vllm",
         "prompt_len": 1024, "gen_len": 128},
        ("rate", OPEN_SHARES),
    ),
    (
        "llama-3-70b bf16 2xH100 vllm 1024/256",
        {"model": "llama-3-70b", "hardware": "h100-sxm", "chips": 2, "mesh": (1, 1, 2), "backend": "vllm",
         "prompt_len": 1024, "gen_len": 256},
        ("rate", (0.5, 0.85)),
    ),
    (
        "llama-3-8b 1xH100 vllm 1024/128 closed",
        {"model": "llama-3-8b", "hardware": "h100-sxm", "chips": 1, "mesh": (1, 1, 1), "backend": "vllm",
         "prompt_len": 1024, "gen_len": 128},
        ("clients", (8, 32)),
    ),
)  # fmt: skip


def rows(requests: int, seeds: int) -> list[dict]:
    out = []
    for label, kw, (kind, loads) in CASES:
        top = capacity(kw) if kind == "rate" else None
        for load in loads:
            for spread in (0.0, 0.5):
                load_kw = {"request_rate": load * top} if kind == "rate" else {"concurrency": load}
                tpots, ttfts, analytic = [], [], None
                for seed in range(seeds):
                    r = simulate_one(requests=requests, seed=seed, gen_len_std=spread * kw["gen_len"], **load_kw, **kw)
                    tpots.append(r["simulated"]["tpot_s"])
                    ttfts.append(r["simulated"]["ttft_s"])
                    analytic = r["analytic"]
                sim = {k: float(np.mean([s[k] for s in tpots])) for k in ("mean", "p50", "p90", "p99")}
                sim_ttft = {k: float(np.mean([s[k] for s in ttfts])) for k in ("mean", "p99")}
                out.append({
                    "case": label,
                    "load": f"{load:.0%} ({load * top:.3g}/s)" if kind == "rate" else f"{load} clients",
                    "gen_std": spread * kw["gen_len"],
                    "p50": analytic["tpot_s"] / sim["p50"],
                    "p90": analytic["tpot_p90_s"] / sim["p90"],
                    "p99": analytic["tpot_p99_s"] / sim["p99"],
                    "ana_p99_ms": 1e3 * analytic["tpot_p99_s"], "sim_p99_ms": 1e3 * sim["p99"],
                    "sim_mean_ms": 1e3 * sim["mean"], "ana_mean_ms": 1e3 * analytic["tpot_s"],
                    "seed_p99_ms": (1e3 * min(s["p99"] for s in tpots), 1e3 * max(s["p99"] for s in tpots)),
                    "ttft_mean": analytic["ttft_s"] / sim_ttft["mean"],
                    "ttft_p99": analytic["ttft_p99_s"] / sim_ttft["p99"],
                })  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--case", default="", help="only the cases whose label holds this text")
    args = parser.parse_args()
    global CASES
    CASES = tuple(c for c in CASES if args.case in c[0])
    print(
        "| case | load | gen std | TPOT mean ms a / s | p50 a/s | p90 a/s | p99 a/s | p99 ms a / s (seeds) "
        "| TTFT mean a/s | TTFT p99 a/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows(args.requests, args.seeds):
        lo, hi = r["seed_p99_ms"]
        print(
            f"| {r['case']} | {r['load']} | {r['gen_std']:g} | {r['ana_mean_ms']:.2f} / {r['sim_mean_ms']:.2f} | "
            f"{r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | {r['ana_p99_ms']:.2f} / {r['sim_p99_ms']:.2f} "
            f"({lo:.2f}-{hi:.2f}) | {r['ttft_mean']:.2f} | {r['ttft_p99']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
