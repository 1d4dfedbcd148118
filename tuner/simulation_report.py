"""Terminal output of ``tuner simulate``: a progress bar with ETA, and the simulated latency
distribution next to the analytic steady state."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tuner.tables import _console, _plain, _seconds, calibration_line, formats_words


@contextmanager
def simulation_progress(disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A progress bar with the time remaining on stderr; yields ``update(done, total)``. None in
    pipes and logs (no bar, nor its closing newline) or when ``disable``."""
    if disable or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    bar = Progress(
        TextColumn("simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("requests", total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _time(value: float | None) -> str:
    return "-" if value is None else _seconds(value)


def print_simulation(report: dict[str, Any]) -> None:
    """The ``tuner simulate`` table: mean, P50, P90, P99 simulated; the analytic mean beside."""
    sim, analytic, w = report["simulated"], report["analytic"], report["workload"]
    load = f"{w['concurrency']:g} clients" if w["concurrency"] is not None else f"{w['request_rate']:g} req/s"
    dp, ep = report.get("dp", 1), report.get("ep", 1)
    # Under DP the mesh is one rank's TP group; the run is one rank's requests (its share of the load).
    degrees = (f" x DP {dp}" if dp > 1 else "") + (f" EP {ep}" if ep > 1 else "")
    per_rank = " a rank" if dp > 1 else ""
    table = Table(
        title=f"{report['model']} on {'x'.join(map(str, report['mesh']))}{degrees} {report['hardware']} "
        f"({report['engine']}), "
        f"{load}, prompt {w['prompt_len']:g}, gen {w['gen_len']:g}, {sim['requests']} requests{per_rank}; "
        f"{formats_words(report)}, {report['ffn_layout']}, flash attention "
        f"{'on' if report['flash_attention'] else 'off'}"
    )
    for column in ("metric", "mean", "p50", "p90", "p99", "analytic mean"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    # Past capacity the analytic means are infinite (None in JSON): "unbounded", as tuner estimate
    # prints them, not "-" (which reads as "not computed").
    unbounded = not analytic["stable"]
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_latency_s", "E2E latency")):
        stats = sim[key]
        mean = "unbounded" if unbounded and analytic[key] is None else _time(analytic[key])
        table.add_row(label, *(_time(stats[q]) for q in ("mean", "p50", "p90", "p99")), mean)
        if key in ("ttft_s", "tpot_s") and f"{key[:4]}_p90_s" in analytic:
            # The steady state's own percentiles under the simulated ones (docs/serving.md,
            # "Percentiles": TTFT's within 0.73-1.10x at p90, 0.71-1.22x at p99 below capacity).
            stem = key[:4]
            tails = (analytic[f"{stem}_p90_s"], analytic[f"{stem}_p99_s"])
            cells = ["unbounded" if unbounded and v is None else _time(v) for v in tails]
            table.add_row(f"{label} analytic", mean, "", *cells, "")
    tokens = analytic["tokens_per_s"]
    table.add_row("output tokens/s (run)", _plain(sim["tokens_per_s"]), "", "", "", "")
    table.add_row(
        "output tokens/s (steady)",
        _plain(sim["steady_tokens_per_s"]),
        "",
        "",
        "",
        ("unstable" if unbounded else "-") if tokens is None else _plain(tokens),
    )
    table.add_row("per chip (run)", _plain(sim["tokens_per_s_per_chip"]), "", "", "", "")
    console = _console()
    console.print(table)
    console.print(
        f"simulated {_plain(sim['simulated_s'])} s: {sim['iterations']} iterations ({sim['mixed_iterations']} with "
        f"prefill), mean running {sim['mean_running']:.1f}{per_rank} (peak {sim['peak_running']}, analytic "
        f"{analytic['running'] / dp:.1f}), KV blocks peak {sim['peak_kv_blocks']} of {sim['kv_capacity_blocks']}, "
        f"{sim['preemptions']} preemptions"
    )
    if not analytic["stable"] and analytic.get("max_stable_request_rate") is None:  # else a note says it
        console.print("analytic steady state: unstable (the queue grows without bound at this rate)")
    console.print(escape(calibration_line(report["calibration"])))
    for note in report.get("notes", []):
        console.print(escape(note))
