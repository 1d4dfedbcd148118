"""Print docs/validation.md's comparison tables: every published number next to ours, with error.

Run: python tests/validation_report.py > /tmp/tables.md (the doc's prose is written by hand).
Uses the same reference data and model calls as the validation tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cost_models import analyze_one  # noqa: E402
from kim2023_model import figure_totals, table3_rows  # noqa: E402
from printed import printed_error, within_printed  # noqa: E402
from reference_data import (  # noqa: E402
    KIM2023_FIGURES, KIM2023_SEQ_LENS, KIM2023_TABLE3, KIM2023_TABLE3_GROUPS, YUAN2024_TABLE1,
)


def _cell(value: float, printed: str) -> str:
    mark = "" if within_printed(value, printed) else " *"
    return f"{printed} | {value:.4g} | {printed_error(value, printed):+.2%}{mark}"


def kim_table3() -> None:
    print("| l | row | GFLOPs paper | ours | error | GB paper | ours | error | FLOP/B paper | ours | error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for seq, row, gflops, gmops, ai in KIM2023_TABLE3:
        ours = table3_rows(seq, KIM2023_TABLE3_GROUPS)[row]
        print(f"| {seq} | {row} | {_cell(ours['gflops'], gflops)} | {_cell(ours['gmops'], gmops)} | "
              f"{_cell(ours['ai'], ai)} |")


def kim_figures() -> None:
    print("| model | quantity | " + " | ".join(f"l={l}" for l in KIM2023_SEQ_LENS) + " |")
    print("|---|---|" + "---|" * len(KIM2023_SEQ_LENS))
    for model, series in KIM2023_FIGURES.items():
        ours = figure_totals(model, KIM2023_SEQ_LENS)
        for quantity, printed_values in series.items():
            cells = [f"{p} / {v:.4g} ({printed_error(v, p):+.1%})" for v, p in zip(ours[quantity], printed_values)]
            print(f"| {model} | {quantity} | " + " | ".join(cells) + " |")


def yuan_table1() -> None:
    print("| phase | op | OPs paper | ours | error | bytes paper | ours | error | FLOP/B paper | ours | error | bound paper / ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    reports = {
        phase: {op["name"]: op for op in analyze_one("llama-2-7b", "a6000", phase=phase, batch=1,
                                                     seq_len=2048, convention="yuan2024")["operators"]}
        for phase in ("prefill", "decode")
    }
    for phase, paper_op, op, ops, bytes_, ai, bound in YUAN2024_TABLE1:
        row = reports[phase][op]
        print(f"| {phase} | {paper_op} | {_cell(row['flops'], ops)} | {_cell(row['bytes'], bytes_)} | "
              f"{_cell(row['arithmetic_intensity'], ai)} | {bound} / {row['bound']} |")


if __name__ == "__main__":
    print("## Kim et al. Table 3 (BERT-Base, 8-bit, 12 layers)\n")
    kim_table3()
    print("\n## Kim et al. Figures 4-6 (paper / ours (error))\n")
    kim_figures()
    print("\n## Yuan et al. Table 1 (Llama-2-7B, A6000, seq 2048, batch 1, FP16, per layer)\n")
    yuan_table1()
