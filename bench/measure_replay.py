"""`tuner measure` on a real chip, set beside the kernel database and the shipped profiles.

Two steps, the first and last on any machine, the middle one on the chip:

1. ``python bench/measure_replay.py sample --system h200_sxm --out shapes/``: a seeded sample of
   the database's distinct GEMM (bf16, fp8) and full-attention bf16 shapes of one chip, from the
   repo's copy (``data/kernels/``), written as kernel CSVs (``gemm_shapes.csv``,
   ``attention_shapes.csv``).
2. ``tuner measure --shapes-from shapes.csv --out measured/ --system h200_sxm``: JAX times those
   very shapes on the chip.
3. ``python bench/measure_replay.py compare --measured measured/ --system h200_sxm --hardware h200``:
   per operator class and format, the median ratio of JAX's time to each engine's database row of
   the same shape (the same chip under cuBLAS/XLA against TensorRT-LLM, vLLM and SGLang kernels),
   and the median |error| of the shipped profiles' and the pure roofline's predictions of JAX's
   rows, which none of them was fitted on.

Results on an H200 are in docs/benchmarks.md ("tuner measure on an H200").
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cost_models.calibration import load_profile
from cost_models.efficiency import (
    DecodeAttentionParams,
    GemmParams,
    PrefillAttentionParams,
    decode_attention_time_s,
    gemm_time_s,
    prefill_attention_time_s,
)
from cost_models.hardware import get_hardware
from tuner.measure import ATTENTION_COLUMNS, FILES, GEMM_COLUMNS, read_measurements

KERNELS = REPO / "data" / "kernels"
ENGINES = ("trtllm", "vllm", "sglang")
GEMM_FORMATS = ("bfloat16", "fp8")


def _key(row: dict) -> tuple:
    if row.get("gemm_dtype") is not None:
        return ("gemm", row["gemm_dtype"], row["m"], row["n"], row["k"])
    length = row["isl"] if row["op_name"] == "context_attention" else row["step"]
    shape = (row["batch_size"], length, row["num_heads"], row["num_key_value_heads"], row["head_dim"])
    return (row["op_name"], *shape)


def _database(system: str) -> list[dict]:
    rows = []
    for name in ("gemm", "context_attention", "generation_attention"):
        for row in read_measurements(KERNELS / (FILES[name].removesuffix(".csv") + ".csv.gz")):
            if row["system"] != system:
                continue
            if name == "gemm" and row["gemm_dtype"] not in GEMM_FORMATS:
                continue
            if name != "gemm" and (
                row["window_size"] not in (0, None)
                or row["kv_cache_dtype"] != "bfloat16"
                or row["attn_dtype"] != "bfloat16"
            ):
                continue
            rows.append(row)
    return rows


def sample(args) -> None:
    rng = np.random.default_rng(args.seed)
    by_key: dict[tuple, dict] = {}
    for row in _database(args.system):
        by_key.setdefault(_key(row), row)
    quota = {
        ("gemm", "bfloat16"): args.gemm,
        ("gemm", "fp8"): args.gemm_fp8,
        ("context_attention",): args.prefill,
        ("generation_attention",): args.decode,
    }
    chosen = {"gemm": [], "attention": []}
    for what, count in quota.items():
        keys = sorted(k for k in by_key if k[: len(what)] == what)
        picked = rng.choice(len(keys), size=min(count, len(keys)), replace=False)
        chosen["gemm" if what[0] == "gemm" else "attention"] += [by_key[keys[i]] for i in sorted(picked)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, columns in (("gemm", GEMM_COLUMNS), ("attention", ATTENTION_COLUMNS)):
        with open(out / f"{name}_shapes.csv", "w", newline="", encoding="utf-8") as handle:
            handle.write(f"# shapes sampled (seed {args.seed}) from data/kernels rows of {args.system}\n")
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(chosen[name])
        print(f"{len(chosen[name])} {name} shapes -> {out / f'{name}_shapes.csv'}")


def _predict(key: tuple, chip, gemm: dict, prefill, decode) -> float:
    if key[0] == "gemm":
        _, fmt, m, n, k = key
        return float(
            gemm_time_s(np.array([m]), np.array([n]), np.array([k]), fmt, chip, gemm[fmt], weights_in_l2=True)[0]
        )
    op, b, length, h, hk, d = key
    if op == "context_attention":
        return float(prefill_attention_time_s(b, length, h, hk, d, chip, prefill, in_l2=True))
    return float(decode_attention_time_s(b, length, h, hk, d, 2.0, chip, decode, kv_in_l2=True))


def _median_text(values: list[float], percent: bool = False) -> str:
    if not values:
        return "-"
    value = statistics.median(values)
    return f"{100 * value:.1f}% ({len(values)})" if percent else f"{value:.2f} ({len(values)})"


def compare(args) -> None:
    chip = get_hardware(args.hardware)
    database: dict[tuple, dict[str, float]] = {}
    for row in _database(args.system):
        database.setdefault(_key(row), {})[row["framework"].lower()] = row["latency"]
    # name -> (GEMM params per format, prefill params, decode params); None where a profile has none
    models: dict[str, tuple] = {
        "none": ({f: GemmParams() for f in GEMM_FORMATS}, PrefillAttentionParams(), DecodeAttentionParams())
    }
    for name in [f"{args.hardware}-{e}" for e in ENGINES] + list(args.profile):
        profile = load_profile(name, chip=args.hardware)
        models[profile.name] = (
            {f: profile.gemm_params(f) for f in profile.gemm},
            profile.prefill_attention.get("bfloat16/bfloat16"),
            profile.decode_attention.get("bfloat16"),
        )
    groups: dict[tuple, list[tuple]] = {}
    root = Path(args.measured)
    for path in sorted(root.rglob("*_perf.csv")):
        for row in read_measurements(path):
            key = _key(row)
            fmt = key[1] if key[0] == "gemm" else "bfloat16"
            groups.setdefault((str(path.parent.relative_to(root)), key[0], fmt), []).append((key, row["latency"]))
    floor_ms = args.floor_us * 1e-3
    print(
        f"JAX on {args.hardware} against the database's {args.system} rows of the same shape and the models; "
        f"'long' = rows whose JAX time is at least {args.floor_us:g} us (above JAX's dispatch floor)"
    )
    header = (
        ["folder", "class", "format", "rows", "long"]
        + [f"JAX / {e} (long)" for e in ENGINES]
        + [f"{m} err (long)" for m in models]
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for (folder, op, fmt), items in sorted(groups.items()):
        long_items = [(key, ms) for key, ms in items if ms >= floor_ms]
        cells = [folder, op, fmt, str(len(items)), str(len(long_items))]
        for engine in ENGINES:
            cells.append(
                _median_text([ms / database[key][engine] for key, ms in long_items if engine in database.get(key, {})])
            )
        for model in models.values():
            fitted = fmt in model[0] if op == "gemm" else model[1 if op == "context_attention" else 2] is not None
            if not fitted:
                cells.append("-")
                continue
            errors = [abs(_predict(key, chip, *model) * 1e3 / ms - 1) for key, ms in long_items]
            cells.append(_median_text(errors, percent=True))
        print("| " + " | ".join(cells) + " |")
    if args.detail:
        for (folder, op, fmt), items in sorted(groups.items()):
            for key, ms in sorted(items, key=lambda kv: kv[1]):
                others = " ".join(f"{e}={database.get(key, {}).get(e, float('nan')):.4g}" for e in ENGINES)
                print(f"{folder} {op} {fmt} {key[2:]} jax={ms:.4g} {others}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample")
    p.add_argument("--system", default="h200_sxm")
    p.add_argument("--out", required=True, help="directory for gemm_shapes.csv and attention_shapes.csv")
    p.add_argument("--gemm", type=int, default=120)
    p.add_argument("--gemm-fp8", type=int, default=80)
    p.add_argument("--prefill", type=int, default=50)
    p.add_argument("--decode", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=sample)
    c = sub.add_parser("compare")
    c.add_argument("--measured", required=True, help="directory of tuner measure's CSV files (searched recursively)")
    c.add_argument("--system", default="h200_sxm")
    c.add_argument("--hardware", default="h200")
    c.add_argument("--profile", action="append", default=[], help="another profile (name or file) to score too")
    c.add_argument("--floor-us", type=float, default=100.0, help="rows under this JAX time are dispatch-bound")
    c.add_argument("--detail", action="store_true", help="print every row")
    c.set_defaults(run=compare)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
