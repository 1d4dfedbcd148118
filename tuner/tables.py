"""Rich tables for the terminal output of catalog listings and analyses."""

from __future__ import annotations

import csv
import io
import os
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tuner.shown_text import printable

# The cost model and the search space are imported where a table needs them: `tuner studies`
# prints counts and need not load them (0.5 s of imports, python -X importtime).
if TYPE_CHECKING:
    from cost_models.hardware import HardwareSpec
    from cost_models.metrics import Metric
    from cost_models.models import ModelSpec


def _console() -> Console:
    """stdout's console: a terminal's own width (tables wrap their headers to fit); 200 columns
    when stdout is a pipe or file and COLUMNS is not set (rich would otherwise assume 80)."""
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(soft_wrap=False, width=200 if wide else None)


def _si(value: float, unit: str = "") -> str:
    """A number with an SI prefix: 1.23 G, 456 M, ..."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def _seconds(value: float) -> str:
    if value >= 1000:  # 3 significant digits would print 1234 s as "1.23e+03 s"
        return f"{value:,.0f} s"
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
    columns = ("name", "kind", "bf16", "fp8", "fp4", "int8", "int4", "memory", "bandwidth", "interconnect", "engines")
    for column in columns:
        table.add_column(column, justify="left" if column in ("name", "kind", "interconnect", "engines") else "right")
    for h in specs:
        p = h.peak_ops_per_s
        peaks = [_si(v, "op/s") if v else "-" for v in (p.bf16, p.fp8, p.fp4, p.int8, p.int4)]
        net = h.interconnect
        if net.kind == "torus":
            link = f"{net.dims}D torus, {_si(net.link_bandwidth_bytes_per_s, 'B/s')} per link"
        else:
            link = (
                f"{net.domain_size}-chip domain {_si(net.domain_bandwidth_bytes_per_s, 'B/s')}, "
                f"network {_si(net.network_bandwidth_bytes_per_s, 'B/s')}"
            )
        table.add_row(
            h.name,
            h.kind,
            *peaks,
            _si(h.memory_bytes, "B"),
            _si(h.memory_bandwidth_bytes_per_s, "B/s"),
            link,
            ", ".join(h.serving_engines()),
        )
    _console().print(table)


def _count_ranges(counts: list[int]) -> str:
    """[1, 2, 3, 4, 8, 16] -> '1-4, 8, 16'."""
    parts: list[str] = []
    start = prev = None
    for c in [*counts, None]:
        if c is not None and prev is not None and c == prev + 1:
            prev = c
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = c
    return ", ".join(parts)


def print_chip_offers(offers: dict[str, dict]) -> None:
    """Per chip: which chip counts and meshes it allows (``cost_models.topology.chip_offer``)."""
    table = Table(title="Chip counts and meshes (tuner estimate --chips N --mesh XxYxZ)")
    for column in ("name", "allowed", "counts up to 64", "meshes (examples)"):
        table.add_column(column)
    for name, offer in offers.items():
        examples = []
        shown = offer["meshes"].items() if offer["max_chips"] is not None else list(offer["meshes"].items())[3:4]
        for count, meshes in shown:  # a torus: its slice shapes; switched: one count (any XxYxZ works)
            if count == "1":
                continue
            shapes = sorted({"x".join(map(str, sorted(map(int, m.split("x")), reverse=True))) for m in meshes})
            examples.append(f"{count}: {', '.join(shapes[:3])}{', ...' if len(shapes) > 3 else ''}")
        table.add_row(
            name,
            offer["rule"],
            _count_ranges(offer["chip_counts"]) or "-",
            escape("; ".join(examples)) + " (any order of the axes)",
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
    if "memory_fit" in report:
        console.print(escape(memory_fit_line(memory["total"], report["memory_fit"], report["hardware"])))
    for note in report.get("notes", ()):
        console.print(escape(f"note: {note}"))


def memory_fit_line(total: float, fit: dict, hardware: str) -> str:
    """Whether the footprint fits on one chip, and if not what would (``analysis.memory_fit``)."""
    capacity = _si(fit["capacity_bytes"], "B")
    if fit["fits"]:
        return f"fits on one {hardware}: {_si(total, 'B')} of {capacity}"
    ways = []
    if fit.get("chips_needed"):
        ways.append(f"needs >= {fit['chips_needed']} chips (weights and KV cache split over them)")
    if fit.get("weight_bits_that_fit"):
        names = fit["weight_bits_that_fit"]
        bits = next((n for n in names if n.isdigit()), names[0])
        ways.append(f"{bits}-bit weights (--weight-bits {' or '.join(names)})")
    head = f"does not fit on one {hardware}: {_si(total, 'B')} > {capacity}"
    return head + ("; " + ", or ".join(ways) if ways else "")


def calibration_line(calibration: dict) -> str:
    """The calibration in force, in one line."""
    from cost_models.calibration import gemm_borrowed_words, held_out_words

    note = f" ({calibration['note']})" if calibration.get("note") else ""
    file = f" from {calibration['file']}" if calibration.get("file") else ""
    missing = calibration.get("roofline_for")
    unfitted = f"; not fitted, on the roofline: {', '.join(missing)}" if missing else ""
    fits = gemm_borrowed_words(calibration) + held_out_words(calibration)
    return f"calibration: {calibration['profile']}{file}{note}{unfitted}{fits}"


def formats_words(report: dict) -> str:
    """``weights fp8, activations fp8, KV bf16``: the formats a report was scored with, the
    activations named where they are not 16-bit (fp8 weights score differently as W8A8 than with
    bf16 activations: Llama-3-70B TP2 pools at 5 req/s, TTFT 520 against 546 ms)."""
    act = report.get("act_dtype")
    shown = f", activations {act}" if act is not None and act not in ("bf16", "fp16") else ""
    return f"weights {report['weight_dtype']}{shown}, KV {report['kv_dtype']}"


def print_estimate(report: dict, collectives: str) -> None:
    """The phases and memory of ``tuner estimate``."""
    console = _console()
    parallel = report.get("parallel", {})
    if report.get("engine_default") or any(parallel.get(k, 1) != 1 for k in ("pp", "ep", "dp", "micro_batches")):
        mesh = " ".join(f"{k.upper() if k != 'micro_batches' else 'micro-batches'} {v}" for k, v in parallel.items())
        mesh += " (engine default)" if report.get("engine_default") else ""
    else:
        mesh = report["mesh"] + (" (the fastest legal mesh that fits)" if report["mesh_chosen"] else "")
    console.print(
        escape(
            f"{report['model']} on {report['chips']} x {report['hardware']}, mesh {mesh}; batch "
            f"{report['batch']}, prompt {report['prompt_len']}, generate {report['gen_len']}; "
            f"{formats_words(report)}; collectives {collectives}"
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
            _plain(p["throughput_tokens_per_s"]),
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
    for note in report.get("notes", []):
        console.print(escape(note))
    if "serving" in report:
        print_serving(report["serving"], console)


def _ms(value: float | None) -> str:
    """Milliseconds in 4 significant digits, never in exponent form (a 19.85 s TTFT printed as
    "1.985e+04 ms")."""
    return "unbounded" if value is None else f"{_plain(value * 1e3)} ms"


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
    columns = (
        "TTFT",
        "TTFT p90",
        "TTFT p99",
        "TPOT",
        "TPOT p99",
        "E2E",
        "tokens/s",
        "per chip",
        "per user",
        "req/s",
        "max concurrency",
    )
    for column in (*columns, "queued", "stable"):
        table.add_column(column, justify="right")
    queued = s["queued"]

    def served(value: float | None) -> str:
        # None past capacity (serving.UNSTABLE_NONE_KEYS): not 0, which it is not serving.
        return ("unstable" if s["fits"] else "no fit") if value is None else _plain(value)

    table.add_row(
        _ms(s["ttft_s"]),
        _ms(s["ttft_p90_s"]),
        _ms(s["ttft_p99_s"]),
        _ms(s["tpot_s"]),
        _ms(s["tpot_p99_s"]),
        _ms(s["e2e_latency_s"]),
        served(s["tokens_per_s"]),
        served(s["tokens_per_s_per_chip"]),
        served(s["tokens_per_s_per_user"]),
        served(s["requests_per_s"]),
        f"{s['max_concurrency']:,}",
        "unbounded" if queued is None else _plain(queued),
        "yes" if s["stable"] else "NO",
    )
    console.print(table)
    for note in s["notes"]:
        console.print(escape(note))


def print_disaggregated_estimate(report: dict) -> None:
    """``tuner estimate --prefill-instances --decode-instances``: each pool's instances and
    degrees, the serving table, and the pools' capacities, balance and KV link."""
    console = _console()
    pools = report["pools"]

    def pool(p: dict) -> str:
        return f"{p['instances']} x TP{p['tp']} DP{p['dp']} EP{p['ep']} ({p['chips']} chips)"

    console.print(
        escape(
            f"{report['model']} on {report['hardware']}, disaggregated: prefill {pool(pools['prefill'])} + decode "
            f"{pool(pools['decode'])}; {formats_words(report)}"
        )
    )
    console.print(escape(calibration_line(report["calibration"])))
    s = report["serving"]
    print_serving(s, console)
    balance = "none" if s["balance"] is None else f"{s['balance']:.3g}"
    console.print(
        escape(
            f"pools: prefill {s['prefill_capacity_rps']:.4g} req/s, decode {s['decode_capacity_rps']:.4g} req/s "
            f"(limiting: {s['limiting_pool']}, balance {balance}); prefill queue "
            f"{_ms(s['prefill_queue_s'])}, {s['prefill_tokens_per_iteration']:.4g} tokens an iteration; KV "
            f"transfer {_si(s['kv_transfer_bytes'], 'B')} a prompt in {_ms(s['kv_transfer_s'])} "
            f"({_si(s['kv_link_bandwidth_bytes_per_s'], 'B/s')}, {s['kv_link_utilisation']:.1%} busy)"
        )
    )
    console.print(
        escape(
            f"batch limit an instance: prefill {pools['prefill']['max_batch_size']}, decode "
            f"{pools['decode']['max_batch_size']} (--prefill-max-batch-size, --decode-max-batch-size; "
            "--max-batch-size sets both)"
        )
    )


@contextmanager
def progress(disable: bool = False, what: str = "searching") -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar with the time left on stderr; yields ``update(done, total)``. When
    stderr is no terminal (a pipe, a file): a plain line at most every
    :data:`tuner.progress_lines.PLAIN_INTERVAL_S` (none for work done sooner). Nothing with
    ``disable``. stdout may be a pipe or a file either way: the bar is on stderr and transient
    (it was drawn only when both were terminals, so `tuner search spec.yaml > out.txt` ran
    silent)."""
    from tuner.progress_lines import ProgressLines

    if disable:
        yield lambda done, total: None
        return
    if not sys.stderr.isatty():
        yield ProgressLines(what).update
        return
    bar = Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(what, total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


@cache
def _param_columns() -> tuple[str, ...]:
    """A trial's configuration columns: its chips (every pool's, for disaggregated serving), then
    the search dimensions in their order (the pools' too: the prefill mesh and the instance
    counts, which with the mesh, a decode instance's, add up to the chips)."""
    from search_spaces.space import DIMENSIONS, ENGINE_DIMENSIONS, POOL_DIMENSIONS, SERVING_DIMENSIONS

    return ("chips", *DIMENSIONS[:1], *ENGINE_DIMENSIONS[:5], *DIMENSIONS[1:], *SERVING_DIMENSIONS, *POOL_DIMENSIONS)


def _choices(trial) -> dict:
    """A trial's configuration: its parameters, with the chips its deployment uses (a
    disaggregated trial's every pool: its mesh is one decode instance's)."""
    from cost_models.deployments import stored_chips
    from search_spaces.space import POOL_DIMENSIONS, scored_params

    deployment = trial.user_attrs.get("deployment")
    serving = trial.user_attrs.get("serving")
    chips = {"chips": stored_chips(deployment, serving)} if isinstance(deployment, dict) else {}
    params = scored_params(trial.params, serving)
    if params.get("disaggregated") is False:  # mode both: an aggregated trial has no pools
        for name in POOL_DIMENSIONS[1:]:
            params.pop(name, None)
    return {**chips, **params}


def _constraint_rows(trial, front) -> dict[str, dict[str, float]]:
    """The table's constraint columns of one row, in SI units: each SLO's value (the TTFT or TPOT
    under load, s) beside its limit, and a static study's memory as a share of the chip's (limit 1)."""
    rows = {}
    for name in trial.constraints:
        if _constraint_column(name, front) is not None:
            value = _constraint_value(name, trial.constraints[name], front)
            rows[name] = {"value": value, "limit": front.limits.get(name, 1.0)}
    return rows


def front_rows(front) -> list[dict]:
    """The front as plain rows: trial number, configuration, objectives, the constraint columns
    the table shows (``constraints``: value and limit), and the calibration profile they were
    scored under."""
    return [
        {
            "trial": t.number,
            "params": _choices(t),
            "objectives": dict(zip(front.objective_names, t.values, strict=True)),
            "constraints": _constraint_rows(t, front),
            "calibration": front.calibration,
            **({"scored_by_model_version": front.stale_model_version} if front.stale_model_version else {}),
            # The table's "near capacity:" line, per trial (its means leave out the slot waits).
            **({"near_capacity": True} if _near_capacity(t) else {}),
        }
        for t in front.trials
    ]


def front_csv(front) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    rows = [_choices(t) for t in front.trials]
    params = [p for p in _param_columns() if any(p in r for r in rows)]
    writer.writerow(["trial", *params, *front.objective_names])
    for t, r in zip(front.trials, rows, strict=True):
        writer.writerow([t.number, *(r.get(p) for p in params), *t.values])
    return buffer.getvalue()


#: Scales of a column of seconds: its largest value picks one unit for every row.
_TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))


def _plain(value: float) -> str:
    """A number in 4 significant digits, never in exponent form: 12,345 / 6.005 / 0.01048 /
    0.00002345 (what is under 1e-12 shows as 0)."""
    if not np.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 1e-12:
        return "0"
    decimals = min(15, 3 - int(np.floor(np.log10(abs(value)))))
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".") if decimals > 0 else f"{value:.0f}"


def _unit_of(values: list[float], unit: str) -> tuple[str, float]:
    """A metric's display unit and its factor, chosen once per column: seconds in s, ms or µs by
    the largest value; bytes in GB (1e9, as every table prints memory); a fraction in %."""
    finite = [abs(v) for v in values if np.isfinite(v) and v != 0]
    if unit == "s":
        top = max(finite, default=1.0)
        return next(((name, factor) for factor, name in _TIME_UNITS if top >= factor), ("ns", 1e-9))
    if unit == "B":
        return "GB", 1e9
    if unit == "fraction":
        return "%", 0.01
    return unit, 1.0


#: Short headers of the dimensions whose names are long (a front table has a dozen columns).
_SHORT = {
    "prefill_ffn_layout": "prefill FFN",
    "decode_ffn_layout": "decode FFN",
    "prefill_attn_sharding": "prefill attn",
    "decode_attn_sharding": "decode attn",
    "weight_bits": "weight bits",
    "kv_bits": "KV bits",
    "kv_heads": "KV heads",
    "flash_attention": "flash attn",
    "max_batch_size": "max batch",
    "max_num_tokens": "max tokens",
    "chunked_prefill": "chunked prefill",
    "kv_block_size": "KV block",
    "prefill_mesh": "prefill mesh",
    "prefill_instances": "xP",
    "decode_instances": "yD",
    "prefill_dp": "prefill DP",
    "prefill_ep": "prefill EP",
    "prefill_max_batch_size": "prefill max batch",
}


def _label(name: str) -> str:
    """A metric or dimension name a narrow table can wrap at its spaces: ``decode.step_latency_s``
    -> ``decode step latency``, ``decode.cost_chip_s_per_token`` and
    ``decode.cost_usd_per_million_tokens`` -> ``decode cost`` (the unit follows in brackets)."""
    if name in _SHORT:
        return _SHORT[name]
    for suffix in ("_chip_s_per_token", "_usd_per_million_tokens", "_tokens_per_s", "_bytes_per_chip", "_s"):
        if name.endswith(suffix) and "." in name:
            name = name.removesuffix(suffix)
            break
    return name.replace(".", " ").replace("_", " ")


#: The dollar constraint's column label (its limit and values are dollars per million tokens).
_COST_LABELS = {"max_cost_usd_per_million_tokens": "cost"}


def _constraint_column(name: str, front) -> tuple[str, float, str] | None:
    """(header, factor, unit) of the column showing a front row's room under one constraint:
    ``TTFT of 1 s limit`` in s, ``memory of capacity`` in %; None for a 0/1 constraint (every front
    row satisfies it: nothing to show)."""
    labels = {
        "max_ttft_s": "TTFT",
        "max_tpot_s": "TPOT",
        "max_tpot_p99_s": "TPOT p99",
        "max_ttft_p90_s": "TTFT p90",
        "max_ttft_p99_s": "TTFT p99",
        **_COST_LABELS,
    }
    if name in front.limits:
        limit = front.limits[name]
        from cost_models.metrics import USD_PER_MILLION_TOKENS

        # A cost limit is in dollars per million tokens (the metric's unit), not seconds.
        unit, factor = (USD_PER_MILLION_TOKENS, 1.0) if name in _COST_LABELS else _unit_of([limit], "s")
        return f"{labels.get(name, _label(name))} of {_plain(limit / factor)} {unit} limit", factor, unit
    if name == "fits_in_memory" and not front.serving:
        # The chip's memory, HBM or not (an L4's or L40S's is GDDR6: "of HBM" was wrong there).
        return "memory of capacity", 0.01, "%"
    return None


def _constraint_value(name: str, value: float, front) -> float:
    """What a constraint value measures: the latency (value + limit), or the share of memory used."""
    return value + front.limits[name] if name in front.limits else value + 1.0


def _table(
    title: str | None,
    headers: list[str],
    columns: list[list[str]],
    numeric: list[bool],
    widths: list[int] | None = None,
) -> Table:
    """``widths``: each column's width, when known (rich then measures no cell: measuring 65 rows
    of 12 columns twice was 0.3 s of `tuner pareto`, cProfile)."""
    # printable: a study name read from the database (one Optuna made, not a spec) may carry
    # control characters; the title repeats it.
    shown_title = escape(printable(title)) if title else None
    table = Table(title=shown_title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for k, (header, is_number) in enumerate(zip(headers, numeric, strict=True)):
        table.add_column(
            escape(header),  # "[ms]": no markup
            justify="right" if is_number else "left",
            overflow="fold",
            width=None if widths is None else widths[k],
        )
    for cells in zip(*columns, strict=True):
        table.add_row(*(escape(c) for c in cells))
    return table


def _fitted_table(
    console: Console,
    title: str | None,
    headers: list[str],
    columns: list[list[str]],
    numeric: list[bool],
    part: list[int],
) -> Table | None:
    """The columns ``part`` as one table no wider than the console, every cell on one line and
    the headers wrapped at their spaces, as little as fits (widest first); None if none fits."""
    wide = console.options.update(width=10_000)
    for cap in (10_000, 16, 12, 10, 8, 6):
        wrapped, widths = [], []
        for j in part:
            width = max([len(c) for c in columns[j]] + [min(len(headers[j]), cap)])
            lines = textwrap.wrap(headers[j], width=width, break_long_words=True)
            wrapped.append("\n".join(lines))
            # What rich would measure: the widest cell or header line, each on one line.
            widths.append(max(cell_len(c) for c in [*columns[j], *lines]))
        table = _table(title, wrapped, [columns[j] for j in part], [numeric[j] for j in part], widths)
        if Measurement.get(console, wide, table).maximum <= console.width:
            return table
    return None


def _near_capacity(trial) -> bool:
    """Whether a trial's recomputed serving report carries the near-capacity note
    (search_spaces.space._swings)."""
    estimate = trial.user_attrs.get("estimate")
    serving = estimate.get("serving") if isinstance(estimate, dict) else None
    notes = serving.get("notes") if isinstance(serving, dict) else None
    return isinstance(notes, list) and any(str(n).startswith("near capacity:") for n in notes)


#: The line above the front's table: the dimensions every front trial shares (the space may vary them).
FRONT_SHARED = "same on every front trial:"


def print_front(front, console: Console | None = None) -> None:
    """The front as a table a person reads: every dimension that defines a row (those equal on
    every row in one ``same on every front trial:`` line above it), objectives in one unit per column (ms, GB,
    tokens/s; never ``6.005e+09``), and each row's room under its constraints. A single-objective
    study shows its best configurations in full instead. Fits the console's width: the cells keep
    their width and the headers wrap."""
    from cost_models.calibration import held_out_words
    from cost_models.metrics import METRICS

    console = console or _console()
    single = len(front.objective_names) == 1 and bool(front.best)
    trials = front.best if single else front.trials
    if single:
        title = (
            f"Best {len(trials)} of {front.n_feasible} feasible trials of {front.study_name} "
            f"({front.n_trials} in all); calibration {front.calibration}" + held_out_words(front.calibration_held_out)
        )
    else:
        title = (
            f"Pareto front of {front.study_name}: {len(front.trials)} of {front.n_feasible} "
            f"feasible trials ({front.n_trials} in all); calibration {front.calibration}"
            + held_out_words(front.calibration_held_out)
        )
    rows = [_choices(t) for t in trials]
    present = [p for p in _param_columns() if any(p in r for r in rows)]
    constant = [] if single or len(rows) < 2 else [p for p in present if len({str(r.get(p)) for r in rows}) == 1]
    varying = [p for p in present if p not in constant]
    headers, columns = ["trial"], [[str(t.number) for t in trials]]
    headers += [_label(p) for p in varying]
    columns += [[str(r.get(p, "-")) for r in rows] for p in varying]
    for i, (name, direction) in enumerate(zip(front.objective_names, front.directions, strict=True)):
        values = [t.values[i] for t in trials]
        unit, factor = _unit_of(values, METRICS[name].unit if name in METRICS else "")
        shown = f" [{unit}]" if unit else ""
        headers.append(f"{_label(name)}{shown} ({'min' if direction == 'minimize' else 'max'})")
        columns.append([_plain(v / factor) for v in values])
    for name in dict.fromkeys(n for t in trials for n in t.constraints):
        column = _constraint_column(name, front)
        if column is not None:
            header, factor, unit = column
            cells = [_constraint_value(name, t.constraints.get(name, 0.0), front) / factor for t in trials]
            headers.append(header)
            columns.append([f"{v:.0f}%" if unit == "%" else f"{_plain(v)} {unit}" for v in cells])
    numeric = [j == 0 or j > len(varying) for j in range(len(headers))]
    parts = [list(range(len(headers)))]
    tables = [_fitted_table(console, title, headers, columns, numeric, parts[0])]
    if tables[0] is None and varying:
        # Too narrow for one table: the configurations, then what they score; both by trial.
        parts = [list(range(len(varying) + 1)), [0, *range(len(varying) + 1, len(headers))]]
        tables = [
            _fitted_table(console, title if k == 0 else None, headers, columns, numeric, p) for k, p in enumerate(parts)
        ]
    for k, part in enumerate(parts):
        if tables[k] is None:  # narrower still: rich folds the cells
            tables[k] = _table(
                title if k == 0 else None,
                [headers[j] for j in part],
                [columns[j] for j in part],
                [numeric[j] for j in part],
            )
    if constant:
        # On the front only, not in the space: "constant:" read as a dimension the study does not
        # vary (the serving study's front shared tp 4 while its space searched TP 1-16).
        console.print(escape(f"{FRONT_SHARED} " + ", ".join(f"{_label(p)} {rows[0].get(p)}" for p in constant)))
    for table in tables:
        console.print(table)
    if not front.n_trials:  # nothing stored yet (a search stopped before its first write)
        console.print("the study holds no trial yet: run tuner search (or tuner worker) on its spec")
    elif not front.trials:
        console.print("no feasible trial yet: relax the constraints or widen the space")
    near = [t.number for t in trials if _near_capacity(t)]
    if near:
        # As tuner estimate and tuner recommend say it for the same deployment (serving_one's
        # swings_note): the means shown leave out the waits the swings bring. Llama-3.1-70B bf16
        # on 2 H100s at 1.33 req/s: TTFT 0.32 s here, 16.7 s mean in tuner simulate.
        console.print(
            escape(
                f"near capacity: trial{'s' if len(near) > 1 else ''} {', '.join(map(str, near))}: the running "
                "batch swings with the arrivals up to its cap (KV cache or slots) now and then: requests wait "
                "for a slot and TTFT and TPOT run above the means shown (tuner show N: its note; tuner "
                "simulate shows by how much)"
            ),
            soft_wrap=True,
        )
    if front.stale_model_version is not None:
        from tuner.compact import model_version

        console.print(
            f"note: scored by another version of the cost model ({front.stale_model_version}; this one "
            f"{model_version()}): objectives and feasibility as stored, the other columns recomputed by this "
            "one; search again under a new study name to rescore"
        )


def print_studies(rows: list[dict], storage: str | None = None) -> None:
    if not rows:  # one line, not an empty table's frame above it
        where = f" in {printable(storage)}" if storage else ""
        _console().print(
            escape(f"no studies found{where}; tuner search SPEC creates one (its --storage says where)"),
            soft_wrap=True,
        )
        return
    table = Table(title="Studies")
    for column in ("study", "trials", "feasible", "front", "objectives", "calibration", "storage"):
        table.add_column(column, justify="right" if column in ("trials", "feasible", "front") else "left")

    # The names come from the files a glob matched and from the databases: control characters in
    # them (a file named with an escape sequence) are shown escaped, never sent to the terminal.
    def shown(text: str) -> str:
        return escape(printable(text))

    for r in rows:
        if r.get("error"):  # an unreadable database among many
            table.add_row("[red]unreadable[/red]", "", "", "", shown(r["error"]), "", shown(r["storage"]))
            continue
        table.add_row(
            shown(r["study"]),
            str(r["trials"]),
            str(r["feasible"]),
            str(r["front_size"]),
            shown(", ".join(r["objectives"])),
            shown(r["calibration"]),
            shown(r["storage"]),
        )
    _console().print(table)


def print_metrics(metrics: Iterable[Metric]) -> None:
    """The metric registry: what a study may optimize."""
    table = Table(title="Metrics (objectives of a study spec)")
    for column in ("metric", "unit", "better", "meaning"):
        table.add_column(column)
    for m in metrics:
        meaning = m.description + (" (needs a serving: section)" if m.needs_serving else "")
        meaning += " (needs price_per_chip_hour_usd)" if m.needs_price else ""
        table.add_row(m.name, m.unit, "lower" if m.direction == "minimize" else "higher", meaning)
    _console().print(table)
