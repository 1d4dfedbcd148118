"""Formatting of ``tuner recommend``: the JSON object and the rich tables (the search itself is
:mod:`cost_models.capacity`)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from cost_models.calibration import calibration_report
from cost_models.capacity import CapacityProblem
from cost_models.deployment import context_notes
from tuner.tables import _console, _seconds, calibration_line

#: Runners-up shown (and kept in --json) after each mode's best configuration.
RUNNERS_UP = 4


def recommend_dict(p: CapacityProblem, result: dict[str, dict[str, Any]], runners_up: int = RUNNERS_UP) -> dict:
    """The ``tuner recommend --json`` object: the problem, then per mode the best configuration
    (None when nothing meets the SLA within the chip budget) and a few runners-up."""
    modes = {}
    for mode, r in result.items():
        modes[mode] = {
            "candidates": r["candidates"],
            "feasible_count": r["feasible_count"],
            "best": r["best"],
            "why_none": r["why_none"],
            "runners_up": r["feasible"][1 : 1 + runners_up],
        }
    return {
        "model": p.model.name,
        "hardware": p.chip.name,
        "request_rate": p.request_rate,
        "prompt_len": p.prompt_len,
        "gen_len": p.gen_len,
        "max_ttft_s": p.sla.max_ttft_s,
        "max_tpot_s": p.sla.max_tpot_s,
        "max_chips": p.max_chips,
        "backend": p.backend,
        "calibration": calibration_report(p.calibration),
        # As tuner estimate and simulate say it: prompt + output past the model's trained context.
        "notes": context_notes(p.model, p.prompt_len + p.gen_len),
        "modes": modes,
    }


def _layout(row: dict) -> str:
    if row["mode"] == "aggregated":
        return f"{row['replicas']} x TP{row['tp']}"
    return f"{row['prefill_instances']}P x TP{row['prefill_tp']} + {row['decode_instances']}D x TP{row['decode_tp']}"


def _formats(row: dict) -> str:
    """The weight format, and W8A8 where the activations are 8-bit too (as tuner estimate
    --weight-bits F --act-bits F scores it)."""
    weights, acts = row["weight_format"], row.get("act_format", "bf16")
    return weights if acts == "bf16" else f"{weights} W8A8" if acts == weights else f"{weights} w, {acts} act"


def print_recommend(report: dict) -> None:
    console = _console()
    console.print(
        escape(
            f"{report['model']} on {report['hardware']} ({report['backend']}): {report['request_rate']:g} requests/s, "
            f"prompt {report['prompt_len']}, generate {report['gen_len']}; SLA TTFT <= {report['max_ttft_s']:g} s, "
            f"TPOT <= {report['max_tpot_s']:g} s; at most {report['max_chips']} chips"
        )
    )
    console.print(escape(calibration_line(report["calibration"])))
    for note in report["notes"]:
        console.print(escape(note))
    for mode, r in report["modes"].items():
        best = r["best"]
        if best is None:
            console.print(
                escape(
                    f"{mode}: none - no configuration of the {r['candidates']} scored meets the SLA within "
                    f"{report['max_chips']} chips: {r['why_none']}"
                )
            )
            continue
        console.print(
            escape(
                f"{mode}: fewest chips {best['chips']} ({_layout(best)}, {_formats(best)}); "
                f"{r['feasible_count']} of {r['candidates']} candidates meet the SLA"
            )
        )
        table = Table()
        columns = ["", "chips", "layout", "weights", "TTFT", "TPOT", "tokens/s/chip"]
        if mode == "disaggregated":
            columns += ["limiting pool", "P/D balance", "KV transfer"]
        for column in columns:
            table.add_column(
                column, justify="left" if column in ("", "layout", "weights", "limiting pool") else "right"
            )
        for rank, row in enumerate([best, *r["runners_up"]]):
            cells = [
                "best" if rank == 0 else f"#{rank + 1}",
                str(row["chips"]),
                _layout(row),
                _formats(row),
                _seconds(row["ttft_s"]),
                _seconds(row["tpot_s"]),
                f"{row['tokens_per_s_per_chip']:.3g}",
            ]
            if mode == "disaggregated":
                cells += [row["limiting_pool"], f"{row['balance']:.2f}", _seconds(row["kv_transfer_s"])]
            table.add_row(*(escape(c) for c in cells))
        console.print(table)
        near = [("best" if rank == 0 else f"#{rank + 1}") for rank, row in enumerate([best, *r["runners_up"]])
                if row.get("near_capacity")]  # fmt: skip
        if near:
            console.print(
                escape(
                    f"near capacity: {', '.join(near)}: a replica's running batch swings up to its KV cache or slots "
                    "now and then (waits, preemptions): TTFT and TPOT run above these means; check with tuner simulate"
                )
            )
