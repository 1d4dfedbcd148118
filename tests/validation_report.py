"""Print docs/validation.md's comparison tables: every published number next to ours, with error.

Run: python tests/validation_report.py > /tmp/tables.md (the doc's prose is written by hand).
Uses the same reference data and model calls as the validation tests.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Python puts this script's folder, tests/, first on sys.path, and tests/cost_models (the package's
# tests, no __init__.py) would then be imported as an empty namespace package `cost_models`: import
# the real package with tests/ off the path, then put tests/ back for the helper modules.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
from cost_models import analyze_one  # noqa: E402

sys.path.insert(0, str(HERE))

# The papers' numbers are reproduced by the pure roofline: no calibration profile.
analyze_one = functools.partial(analyze_one, calibration="none")
from kim2023_model import figure_totals, table3_rows  # noqa: E402
from pope2022_model import (  # noqa: E402
    figure3_volumes,
    figure6_step_ms,
    figure8_step_ms,
    table1_max_context,
    table2,
    table_d2_fastertransformer_ms,
    table_d2_palm,
)
from printed import printed_error, within_printed  # noqa: E402
from reference_data import (  # noqa: E402
    KIM2023_FIGURES,
    KIM2023_SEQ_LENS,
    KIM2023_TABLE3,
    KIM2023_TABLE3_GROUPS,
    POPE2022_FIGURE3,
    POPE2022_FIGURE6_MS,
    POPE2022_FIGURE8_MS,
    POPE2022_TABLE1,
    POPE2022_TABLE2,
    POPE2022_TABLE_D2,
    YUAN2024_TABLE1,
)


def _cell(value: float, printed: str) -> str:
    mark = "" if within_printed(value, printed) else " *"
    return f"{printed} | {value:.4g} | {printed_error(value, printed):+.2%}{mark}"


def kim_table3() -> None:
    print("| l | row | GFLOPs paper | ours | error | GB paper | ours | error | FLOP/B paper | ours | error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for seq, row, gflops, gmops, ai in KIM2023_TABLE3:
        ours = table3_rows(seq, KIM2023_TABLE3_GROUPS)[row]
        print(
            f"| {seq} | {row} | {_cell(ours['gflops'], gflops)} | {_cell(ours['gmops'], gmops)} | "
            f"{_cell(ours['ai'], ai)} |"
        )


def kim_figures() -> None:
    print("| model | quantity | " + " | ".join(f"l={n}" for n in KIM2023_SEQ_LENS) + " |")
    print("|---|---|" + "---|" * len(KIM2023_SEQ_LENS))
    for model, series in KIM2023_FIGURES.items():
        ours = figure_totals(model, KIM2023_SEQ_LENS)
        for quantity, printed_values in series.items():
            cells = [
                f"{p} / {v:.4g} ({printed_error(v, p):+.1%})"
                for v, p in zip(ours[quantity], printed_values, strict=True)
            ]
            print(f"| {model} | {quantity} | " + " | ".join(cells) + " |")


def yuan_table1() -> None:
    print(
        "| phase | op | OPs paper | ours | error | bytes paper | ours | error "
        "| FLOP/B paper | ours | error | bound paper / ours |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    reports = {
        phase: {
            op["name"]: op
            for op in analyze_one("llama-2-7b", "a6000", phase=phase, batch=1, seq_len=2048, convention="yuan2024")[
                "operators"
            ]
        }
        for phase in ("prefill", "decode")
    }
    for phase, paper_op, op, ops, bytes_, ai, bound in YUAN2024_TABLE1:
        row = reports[phase][op]
        print(
            f"| {phase} | {paper_op} | {_cell(row['flops'], ops)} | {_cell(row['bytes'], bytes_)} | "
            f"{_cell(row['arithmetic_intensity'], ai)} | {bound} / {row['bound']} |"
        )


def pope() -> None:
    print("### Figure 3: communication volume per layer (bytes per chip)\n")
    print("| layout | paper | ours | error |\n|---|---|---|---|")
    volumes = figure3_volumes()
    for layout, printed in POPE2022_FIGURE3.items():
        print(f"| {layout} | {printed} | {volumes[layout]:.4g} | {printed_error(volumes[layout], printed):+.2%} |")
    print(f"| ws_1d | (2BLE, not printed) | {volumes['ws_1d']:.4g} | |")
    print("\n### Table 1: maximum context (30% of HBM for the KV cache)\n")
    print("| attention | batch | paper | ours | error |\n|---|---|---|---|---|")
    for attention, _, batch, paper in POPE2022_TABLE1:
        ours = table1_max_context(attention, batch)
        print(f"| {attention} | {batch} | {paper} | {ours} | {(ours - paper) / paper:+.1%} |")
    print("\n### Table 2 (measured): predicted / measured\n")
    print("| phase | batch | layout | attention | weights | latency paper | ours | ratio | MFU paper | ours |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for phase, batch, layout, sharding, bits, mfu, latency in POPE2022_TABLE2:
        ours = table2(phase, batch, layout, sharding, bits)
        print(
            f"| {phase} | {batch} | {layout} | {sharding} | {'int8' if bits == '8' else 'bf16'} | {latency} s | "
            f"{ours['latency_s']:.3g} s | {ours['latency_s'] / latency:.2f} | {mfu:.2f} | {ours['mfu']:.2f} |"
        )
    print("\n### Table D.2 (measured, 20 prompt + 8 generated tokens): predicted / measured latency\n")
    print("| batch | PaLM prefill | PaLM generate | FT MT-NLG TP16 (A100) | FT MT-NLG TP32 (A100) |")
    print("|---|---|---|---|---|")
    for batch, tp16, tp32, prefill_ms, _, generate_ms, _ in POPE2022_TABLE_D2:
        palm = table_d2_palm(batch)
        print(
            f"| {batch} | {palm['prefill']['latency_s'] * 1e3 / prefill_ms:.2f} | "
            f"{palm['decode']['latency_s'] * 1e3 / generate_ms:.2f} | "
            f"{table_d2_fastertransformer_ms(batch, 16) / tp16:.2f} | "
            f"{table_d2_fastertransformer_ms(batch, 32) / tp32:.2f} |"
        )
    print("\n### Figure 6 (measured decode step, batch 512): ms predicted / measured\n")
    print("| layout | 64 chips | 128 chips | 256 chips |\n|---|---|---|---|")
    for layout, points in POPE2022_FIGURE6_MS.items():
        cells = [
            f"{figure6_step_ms(layout, n):.1f} / {ms} ({figure6_step_ms(layout, n) / ms:.2f})"
            for n, ms in points.items()
        ]
        print(f"| {layout} | " + " | ".join(cells) + " |")
    print("\n### Figure 8 (measured decode step, 8 layers, batch 256): ms predicted / measured\n")
    print("| attention | 128 | 512 | 2048 | 8192 | growth 128 -> 8192 paper / ours |\n|---|---|---|---|---|---|")
    for attention, points in POPE2022_FIGURE8_MS.items():
        ours = {c: figure8_step_ms(attention, c) for c in points}
        cells = [f"{ours[c]:.2f} / {ms} ({ours[c] / ms:.2f})" for c, ms in points.items()]
        print(
            f"| {attention} | "
            + " | ".join(cells)
            + f" | x{points[8192] / points[128]:.2f} / x{ours[8192] / ours[128]:.2f} |"
        )


if __name__ == "__main__":
    print("## Kim et al. Table 3 (BERT-Base, 8-bit, 12 layers)\n")
    kim_table3()
    print("\n## Kim et al. Figures 4-6 (paper / ours (error))\n")
    kim_figures()
    print("\n## Yuan et al. Table 1 (Llama-2-7B, A6000, seq 2048, batch 1, FP16, per layer)\n")
    yuan_table1()
    print("\n## Pope et al. (PaLM 540B on TPU v4 unless noted)\n")
    pope()
