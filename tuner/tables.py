"""Rich tables for the terminal output of catalog listings and analyses."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cost_models.hardware import HardwareSpec
from cost_models.metrics import METRICS, Metric
from cost_models.models import ModelSpec
from search_spaces.space import DIMENSIONS, SERVING_DIMENSIONS


def _console() -> Console:
    return Console(soft_wrap=False, width=200)


def _si(value: float, unit: str = "") -> str:
    """A number with an SI prefix: 1.23 G, 456 M, ..."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def _seconds(value: float) -> str:
    for factor, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if value >= factor:
            return f"{value / factor:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def print_models(specs: Iterable[ModelSpec]) -> None:
    table = Table(title="Models")
    for column in (
        "name",
        "kind",
        "params",
        "active",
        "layers",
        "d_model",
        "heads",
        "kv_heads",
        "attention",
        "d_head",
        "d_ff",
        "ffn",
        "experts",
        "block",
        "vocab",
    ):
        table.add_column(column, justify="left" if column in ("name", "kind", "ffn", "block") else "right")
    for m in specs:
        table.add_row(
            escape(m.name),
            m.kind,
            _si(m.params),
            _si(m.active_params),
            str(m.layers),
            str(m.d_model),
            str(m.heads),
            str(m.kv_heads),
            m.attention_type,
            str(m.d_head),
            str(m.d_ff),
            m.ffn,
            f"{m.experts} top-{m.experts_per_token}" if m.is_moe else "-",
            m.block,
            str(m.vocab),
        )
    _console().print(table)


def print_hardware(specs: Iterable[HardwareSpec]) -> None:
    table = Table(title="Hardware (dense peaks)")
    for column in ("name", "kind", "bf16", "fp8", "int8", "int4", "memory", "bandwidth", "interconnect"):
        table.add_column(column, justify="left" if column in ("name", "kind", "interconnect") else "right")
    for h in specs:
        p = h.peak_ops_per_s
        peaks = [_si(v, "op/s") if v else "-" for v in (p.bf16, p.fp8, p.int8, p.int4)]
        net = h.interconnect
        if net.kind == "torus":
            link = f"{net.dims}D torus, {_si(net.link_bandwidth_bytes_per_s, 'B/s')} per link"
        else:
            link = (
                f"{net.domain_size}-chip domain {_si(net.domain_bandwidth_bytes_per_s, 'B/s')}, "
                f"network {_si(net.network_bandwidth_bytes_per_s, 'B/s')}"
            )
        table.add_row(
            h.name, h.kind, *peaks, _si(h.memory_bytes, "B"), _si(h.memory_bandwidth_bytes_per_s, "B/s"), link
        )
    _console().print(table)


def print_analysis(report: dict) -> None:
    """The per-operator table of ``tuner analyze``, then whole-model totals."""
    totals = report["totals"]
    title = escape(
        f"{report['model']} on {report['hardware']}: {report['phase']}, batch {report['batch']}, "
        f"seq_len {report['seq_len']}, weights {report['weight_dtype']}, "
        f"activations {report['act_dtype']}, KV {report['kv_dtype']}"
    )
    # (escape: model names come from config.json files and may contain rich markup brackets)
    table = Table(title=title)
    for column in (
        "operator",
        "count",
        "FLOPs",
        "bytes",
        "weights",
        "act read",
        "act write",
        "KV read",
        "KV write",
        "FLOP/B",
        "bound",
        "time",
        "share",
    ):
        table.add_column(column, justify="left" if column in ("operator", "bound") else "right")
    for op in report["operators"]:
        share = op["time_s"] * op["count"] / totals["time_s"] if totals["time_s"] else 0.0
        count = f"x{op['count']}" if op["scope"] == "per_block" else "once"
        table.add_row(
            op["name"],
            count,
            _si(op["flops"]),
            _si(op["bytes"], "B"),
            _si(op["weight_bytes"], "B"),
            _si(op["act_read_bytes"], "B"),
            _si(op["act_write_bytes"], "B"),
            _si(op["kv_read_bytes"], "B"),
            _si(op["kv_write_bytes"], "B"),
            f"{op['arithmetic_intensity']:.4g}",
            op["bound"],
            _seconds(op["time_s"]),
            f"{share:.1%}",
        )
    console = _console()
    console.print(table)
    console.print(escape(calibration_line(report["calibration"])))
    memory = totals["memory_bytes"]
    console.print(
        f"whole model: {_si(totals['flops'], 'FLOP')}, {_si(totals['bytes'], 'B')} moved, "
        f"{_seconds(totals['time_s'])}"
        + (" on the roofline" if report["calibration"]["profile"] == "none" else " calibrated")
        + "\n"
        f"memory: weights {_si(memory['weights'], 'B')}, KV cache {_si(memory['kv_cache'], 'B')}, "
        f"largest live activations {_si(memory['activations'], 'B')}, total {_si(memory['total'], 'B')}"
    )


def calibration_line(calibration: dict) -> str:
    """The calibration in force, in one line."""
    note = f" ({calibration['note']})" if calibration.get("note") else ""
    return f"calibration: {calibration['profile']}{note}"


def print_estimate(report: dict) -> None:
    """The phases and memory of ``tuner estimate``."""
    console = _console()
    mesh = report["mesh"] + (" (best legal mesh)" if report["mesh_chosen"] else "")
    console.print(
        escape(
            f"{report['model']} on {report['chips']} x {report['hardware']}, mesh {mesh}; batch "
            f"{report['batch']}, prompt {report['prompt_len']}, generate {report['gen_len']}; weights "
            f"{report['weight_dtype']}, KV {report['kv_dtype']}; collectives {report['overlap']}"
        )
    )
    console.print(escape(calibration_line(report["calibration"])))
    table = Table()
    for column in (
        "phase",
        "layout",
        "attention",
        "latency",
        "per step",
        "MFU",
        "compute",
        "memory",
        "comm",
        "chip-s / token",
        "tokens/s",
    ):
        table.add_column(column, justify="left" if column in ("phase", "layout", "attention") else "right")
    for phase in ("prefill", "decode"):
        if phase not in report:
            continue
        p = report[phase]
        step = _seconds(p["step_latency_s"]) if phase == "decode" else "-"
        table.add_row(
            phase,
            report["ffn_layout"][phase],
            report["attn_sharding"][phase],
            _seconds(p["latency_s"]),
            step,
            f"{p['mfu']:.1%}",
            _seconds(p["compute_s"]),
            _seconds(p["memory_s"]),
            _seconds(p["comm_s"]),
            f"{p['cost_chip_s_per_token']:.3g}",
            f"{p['throughput_tokens_per_s']:.4g}",
        )
    console.print(table)
    m = report["memory"]
    console.print(
        f"memory per chip: weights {_si(m['weights_bytes_per_chip'], 'B')}, KV cache "
        f"{_si(m['kv_cache_bytes_per_chip'], 'B')}, activations {_si(m['activation_bytes_per_chip'], 'B')}, "
        f"total {_si(m['total_bytes_per_chip'], 'B')} of {_si(m['capacity_bytes_per_chip'], 'B')} -> "
        f"{'fits' if m['fits'] else 'DOES NOT FIT'}; max context at this batch "
        + (
            f"{m['max_context_tokens']:,} tokens"
            if m["max_context_tokens"] is not None
            else "not limited by a KV cache"
        )
    )
    if "serving" in report:
        print_serving(report["serving"], console)


def _ms(value: float | None) -> str:
    return "unbounded" if value is None else f"{value * 1e3:.4g} ms"


def print_serving(s: dict, console: Console | None = None) -> None:
    """The ``serving`` section of ``tuner estimate`` under a load: latencies in ms, throughput,
    the engine knobs in force, and a line for each note (queued clients, instability)."""
    console = console or _console()
    load = s["load"]
    how = (
        f"{load['concurrency']} concurrent clients"
        if load["concurrency"] is not None
        else f"{load['request_rate']:g} requests/s (Poisson)"
    )
    e = s["engine"]
    console.print(
        escape(
            f"serving: {how}, prompt {load['prompt_len']}, generate {load['gen_len']}; engine {e['backend']} "
            f"(max_batch_size {e['max_batch_size']}, max_num_tokens {e['max_num_tokens']}, chunked prefill "
            f"{'on' if e['chunked_prefill'] else 'off'}, KV block {e['kv_block_size']}, prefix hit rate "
            f"{e['prefix_hit_rate']:g})"
        )
    )
    table = Table()
    columns = ("TTFT", "TPOT", "TPOT p99", "E2E", "tokens/s", "per chip", "per user", "req/s", "max concurrency")
    for column in (*columns, "queued", "stable"):
        table.add_column(column, justify="right")
    queued = s["queued"]
    table.add_row(
        _ms(s["ttft_s"]),
        _ms(s["tpot_s"]),
        _ms(s["tpot_p99_s"]),
        _ms(s["e2e_latency_s"]),
        f"{s['tokens_per_s']:.4g}",
        f"{s['tokens_per_s_per_chip']:.4g}",
        f"{s['tokens_per_s_per_user']:.4g}",
        f"{s['requests_per_s']:.4g}",
        f"{s['max_concurrency']:,}",
        "unbounded" if queued is None else f"{queued:.4g}",
        "yes" if s["stable"] else "NO",
    )
    console.print(table)
    for note in s["notes"]:
        console.print(escape(note))


@contextmanager
def progress(disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    if disable or not sys.stderr.isatty():  # no bar (nor its closing newline) in pipes and logs
        yield lambda done, total: None
        return
    bar = Progress(
        TextColumn("searching"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("trials", total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


#: A trial's configuration columns: its chips, then the search dimensions in their order.
_PARAM_COLUMNS = ("chips", *DIMENSIONS, *SERVING_DIMENSIONS)


def _choices(trial) -> dict:
    """A trial's configuration: its parameters, with the chips its mesh has."""
    deployment = trial.user_attrs.get("deployment")
    chips = {"chips": int(np.prod(deployment["mesh"]))} if isinstance(deployment, dict) else {}
    return {**chips, **trial.params}


def front_rows(front) -> list[dict]:
    """The front as plain rows: trial number, configuration, objectives, and the calibration
    profile they were scored under."""
    return [
        {
            "trial": t.number,
            "params": _choices(t),
            "objectives": dict(zip(front.objective_names, t.values, strict=True)),
            "calibration": front.calibration,
        }
        for t in front.trials
    ]


def front_csv(front) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    rows = [_choices(t) for t in front.trials]
    params = [p for p in _PARAM_COLUMNS if any(p in r for r in rows)]
    writer.writerow(["trial", *params, *front.objective_names])
    for t, r in zip(front.trials, rows, strict=True):
        writer.writerow([t.number, *(r.get(p) for p in params), *t.values])
    return buffer.getvalue()


def print_front(front) -> None:
    console = _console()
    title = escape(
        f"Pareto front of {front.study_name}: {len(front.trials)} of {front.n_feasible} "
        f"feasible trials ({front.n_trials} in all); calibration {front.calibration}"
    )
    table = Table(title=title)
    table.add_column("trial", justify="right")
    rows = [_choices(t) for t in front.trials]
    varying = [p for p in _PARAM_COLUMNS if len({str(r.get(p)) for r in rows}) > 1]
    for p in varying:
        table.add_column(p)
    for name, direction in zip(front.objective_names, front.directions, strict=True):
        unit = f" [{METRICS[name].unit}]" if name in METRICS else ""
        header = f"{name}{unit} ({'min' if direction == 'minimize' else 'max'})"
        table.add_column(escape(header), justify="right")  # "[s]" is not markup
    for t, r in zip(front.trials, rows, strict=True):
        table.add_row(str(t.number), *(escape(str(r.get(p))) for p in varying), *(f"{v:.4g}" for v in t.values))
    console.print(table)
    if not front.trials:
        console.print("no feasible trial yet: relax the constraints or widen the space")


def print_studies(rows: list[dict]) -> None:
    table = Table(title="Studies")
    for column in ("study", "trials", "feasible", "front", "objectives", "storage"):
        table.add_column(column, justify="right" if column in ("trials", "feasible", "front") else "left")
    for r in rows:
        table.add_row(
            escape(r["study"]),
            str(r["trials"]),
            str(r["feasible"]),
            str(r["front_size"]),
            escape(", ".join(r["objectives"])),
            escape(r["storage"]),
        )
    _console().print(table)
    if not rows:
        _console().print("no studies found")


def print_metrics(metrics: Iterable[Metric]) -> None:
    """The metric registry: what a study may optimize."""
    table = Table(title="Metrics (objectives of a study spec)")
    for column in ("metric", "unit", "better", "meaning"):
        table.add_column(column)
    for m in metrics:
        meaning = m.description + (" (needs a serving: section)" if m.needs_serving else "")
        table.add_row(m.name, m.unit, "lower" if m.direction == "minimize" else "higher", meaning)
    _console().print(table)
