"""TTFT percentiles of the analytic steady state (``ttft_p90_s``, ``ttft_p99_s``) against
``tuner simulate``'s over several deployments and loads: dense and MoE, open and closed loop,
30-95% of the highest stable rate (open loop) and several client counts (closed loop), three
seeds of 8000 requests each (the simulated percentiles: their mean over the seeds).

    PYTHONPATH=. python bench/bench_ttft_percentiles.py [--requests 8000] [--seeds 3]

Prints one row per load: analytic / simulated at p90 and p99 (and the mean), and whether the
steady state flags it (``near capacity``: the running batch's 99.9th percentile reaches its cap, within
its measured error: cost_models.serving.near_capacity).
"""

from __future__ import annotations

import argparse

import numpy as np

from cost_models.serving_simulation import simulate_one

#: (label, simulate_one keywords without the load, open-loop shares of capacity or client counts)
OPEN_SHARES = (0.3, 0.5, 0.7, 0.85, 0.95)
CASES: tuple[tuple[str, dict, tuple], ...] = (
    (
        "llama-3-8b 1xH100 trtllm 1024/128",
        {"model": "llama-3-8b", "hardware": "h100-sxm", "chips": 1, "mesh": (1, 1, 1), "backend": "trtllm",
         "prompt_len": 1024, "gen_len": 128},
        ("rate", OPEN_SHARES),
    ),
    (
        "llama-3-8b 8xH100 vllm 1024+-300/128+-40",
        {"model": "llama-3-8b", "hardware": "h100-sxm", "chips": 8, "mesh": (1, 1, 8), "backend": "vllm",
         "prompt_len": 1024, "gen_len": 128, "prompt_len_std": 300.0, "gen_len_std": 40.0},
        ("rate", OPEN_SHARES),
    ),
    (
        "mixtral-8x7b fp8 2xH200 vllm 1024/256",
        {"model": "mixtral-8x7b", "hardware": "h200", "chips": 2, "mesh": (1, 1, 2), "backend": "vllm",
         "weight_bits": "fp8", "act_bits": "fp8", "prompt_len": 1024, "gen_len": 256},
        ("rate", OPEN_SHARES),
    ),
    (
        "llama-3-70b fp8 4xH100 vllm 2048/256",
        {"model": "llama-3-70b", "hardware": "h100-sxm", "chips": 4, "mesh": (1, 1, 4), "backend": "vllm",
         "weight_bits": "fp8", "act_bits": "fp8", "prompt_len": 2048, "gen_len": 256},
        ("rate", OPEN_SHARES),
    ),
    (
        "llama-3-8b 8xH100 trtllm 1024/128 closed",
        {"model": "llama-3-8b", "hardware": "h100-sxm", "chips": 8, "mesh": (1, 1, 8), "backend": "trtllm",
         "prompt_len": 1024, "gen_len": 128},
        ("clients", (16, 64, 256)),
    ),
    (
        "mixtral-8x7b fp8 2xH200 vllm 1024+-300/256 closed",
        {"model": "mixtral-8x7b", "hardware": "h200", "chips": 2, "mesh": (1, 1, 2), "backend": "vllm",
         "weight_bits": "fp8", "act_bits": "fp8", "prompt_len": 1024, "gen_len": 256, "prompt_len_std": 300.0},
        ("clients", (8, 32, 128)),
    ),
)  # fmt: skip


def capacity(kw: dict) -> float:
    out = simulate_one(request_rate=1e4, requests=50, seed=0, **kw)
    return float(out["analytic"]["max_stable_request_rate"])


def rows(requests: int, seeds: int) -> list[dict]:
    out = []
    for label, kw, (kind, loads) in CASES:
        top = capacity(kw) if kind == "rate" else None
        for load in loads:
            load_kw = {"request_rate": load * top} if kind == "rate" else {"concurrency": load}
            sims, analytic, notes = [], None, []
            for seed in range(seeds):
                r = simulate_one(requests=requests, seed=seed, **load_kw, **kw)
                sims.append(r["simulated"]["ttft_s"])
                analytic, notes = r["analytic"], r["notes"]
            sim = {k: float(np.mean([s[k] for s in sims])) for k in ("mean", "p90", "p99")}
            spread = {k: (min(s[k] for s in sims), max(s[k] for s in sims)) for k in ("p90", "p99")}
            out.append({
                "case": label,
                "load": f"{load:.0%} ({load * top:.3g}/s)" if kind == "rate" else f"{load} clients",
                "mean": analytic["ttft_s"] / sim["mean"],
                "p90": analytic["ttft_p90_s"] / sim["p90"],
                "p99": analytic["ttft_p99_s"] / sim["p99"],
                "sim_p90_ms": 1e3 * sim["p90"], "sim_p99_ms": 1e3 * sim["p99"],
                "ana_p90_ms": 1e3 * analytic["ttft_p90_s"], "ana_p99_ms": 1e3 * analytic["ttft_p99_s"],
                "seed_p99_ms": tuple(1e3 * v for v in spread["p99"]),
                "near_capacity": any(n.startswith("near capacity") for n in notes),
            })  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--case", default="", help="only the cases whose label holds this text")
    args = parser.parse_args()
    global CASES
    CASES = tuple(c for c in CASES if args.case in c[0])
    print("| case | load | mean a/s | p90 a/s | p99 a/s | p90 ms a / s | p99 ms a / s (seeds) | near capacity |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows(args.requests, args.seeds):
        lo, hi = r["seed_p99_ms"]
        print(
            f"| {r['case']} | {r['load']} | {r['mean']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | "
            f"{r['ana_p90_ms']:.1f} / {r['sim_p90_ms']:.1f} | {r['ana_p99_ms']:.1f} / {r['sim_p99_ms']:.1f} "
            f"({lo:.1f}-{hi:.1f}) | {'yes' if r['near_capacity'] else ''} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
