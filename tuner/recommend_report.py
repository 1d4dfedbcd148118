"""Formatting of ``tuner recommend``: the JSON object and the rich tables (the search itself is
:mod:`cost_models.capacity`)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from rich.markup import escape
from rich.table import Table

from cost_models.calibrated_times import dense_gemm_formats
from cost_models.calibration import CalibrationProfile, calibration_report
from cost_models.capacity import CapacityProblem, act_code, scored_plan, weight_formats
from cost_models.deployment import context_notes, estimate, fp8_decode_cause_text, fp8_gemm_cost_text
from cost_models.deployments import Deployments, engine_kv_formats
from cost_models.dtypes import BF16, FP8, dtype_name, parse_dtype
from cost_models.errors import InvalidInputError, refuse_outside
from cost_models.hardware import get_hardware
from cost_models.input_ranges import PRICE_PER_CHIP_HOUR_USD_RANGE
from cost_models.metrics import usd_per_hour, usd_per_million_tokens
from cost_models.models import model_catalog
from tuner.export import HF_REPOS
from tuner.tables import _console, _plain, _seconds, calibration_line

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
        "max_ttft_p90_s": p.sla.max_ttft_p90_s,
        "max_ttft_p99_s": p.sla.max_ttft_p99_s,
        "max_tpot_p99_s": p.sla.max_tpot_p99_s,
        "max_chips": p.max_chips,
        "kv_format": dtype_name(p.kv_code),
        # The --kv-bits value that plans this cache: the default (16) is an assumption the user
        # may not know was made (every plan's KV bytes, so its chips and dollars, rest on it).
        "kv_bits": _KV_BITS_OF.get(dtype_name(p.kv_code), dtype_name(p.kv_code)),
        "kv_alternative": _kv_alternative(p),
        "backend": p.backend,
        # The formats its plans were scored in: an int8 plan on an A100 is timed by the profile's
        # bf16 fit (no int8_wo fit), which the line names as the estimate's does.
        "calibration": calibration_report(p.calibration, gemm_formats=_plan_gemm_formats(p)),
        # As tuner estimate and simulate say it: prompt + output past the model's trained context.
        "notes": context_notes(p.model, p.prompt_len + p.gen_len)
        + fp8_slower_notes(p, result, runners_up)
        + checkpoint_notes(p, result),
        "modes": modes,
    }


def _plan_gemm_formats(p: CapacityProblem) -> tuple[str, ...]:
    """The dense GEMM kernels of the weight formats recommend tries (capacity.weight_formats, with
    capacity.act_code's activations)."""
    return tuple(
        dict.fromkeys(
            f
            for _, code in weight_formats(p.chip, p.model)
            for f in dense_gemm_formats(p.model, code, act_code(code, p.chip))
        )
    )


#: --kv-bits values of the formats that are spelled otherwise (16 for bf16: the help's spelling).
_KV_BITS_OF = {"bf16": "16", "int8": "8", "int4": "4"}


def _kv_alternative(p: CapacityProblem) -> str | None:
    """The other cache the help offers (``--kv-bits``: 16 or fp8, "half the bytes of 16-bit"),
    where the chip has fp8 and the engine runs an fp8 cache (engine_kv_formats; int8 runs as
    fp8 there): ``fp8`` from bf16, ``16`` from any other; None where there is none."""
    if p.kv_code != BF16:
        return "16"
    formats = engine_kv_formats(p.backend)
    runs_fp8 = p.chip.has_format(FP8) and (formats is None or "fp8" in formats)
    return "fp8" if runs_fp8 else None


def kv_cache_words(report: dict) -> str:
    """``KV cache bf16 (--kv-bits 16, the default; --kv-bits fp8 halves its bytes)``: the cache
    every plan assumed, the flag that set it and the other one to try."""
    bits, other = report["kv_bits"], report.get("kv_alternative")
    words = f"--kv-bits {bits}" + (", the default" if bits == "16" else "")
    if other == "fp8":
        words += "; --kv-bits fp8 halves its bytes"
    elif other == "16":
        words += "; --kv-bits 16 for bf16"
    return f"KV cache {report['kv_format']} ({words})"


#: The keys that make two aggregated rows one layout in two weight formats.
_LAYOUT_KEYS = ("chips", "replicas", "tp", "dp", "ep")


def fp8_slower_notes(p: CapacityProblem, result: dict[str, dict[str, Any]], runners_up: int = RUNNERS_UP) -> list[str]:
    """Why fp8 W8A8 plans are slower than bf16 ones where the table shows it: the first shown
    aggregated plan (the best, then the runners-up) whose layout's fp8 plan has a higher TPOT than
    its bf16 plan, with the profile's per-call GEMM costs that make it so
    (cost_models.deployment.fp8_decode_notes says what the measured kernels time). A ranking that
    puts bf16 first at the same chips is otherwise no answer to a user who expected fp8's halved
    weight bytes to win. Layouts the table does not show are not spoken of (h100 vLLM: fp8 is
    slower only at TP16, 4.79 against 4.69 ms, far down a list whose best is fp8)."""
    aggregated = result.get("aggregated")
    if p.calibration is None or aggregated is None:
        return []
    by_layout: dict[tuple, dict[str, dict]] = {}
    for row in aggregated["feasible"]:
        by_layout.setdefault(tuple(row[k] for k in _LAYOUT_KEYS), {}).setdefault(row["weight_format"], row)
    for shown in aggregated["feasible"][: 1 + runners_up]:
        formats = by_layout[tuple(shown[k] for k in _LAYOUT_KEYS)]
        fp8, bf16 = formats.get("fp8"), formats.get("bf16")
        if fp8 is None or bf16 is None or fp8["tpot_s"] <= bf16["tpot_s"]:
            continue
        rows = max(1, round(fp8["running_per_replica"] / fp8["dp"]))
        layout = f"{fp8['replicas']} x TP{fp8['tp']}" + (f" DP{fp8['dp']}" if fp8["dp"] > 1 else "")
        return [
            f"fp8 W8A8 plans decode slower than bf16 ones at the same chips ({layout}: TPOT "
            f"{fp8['tpot_s'] * 1e3:.3g} ms against {bf16['tpot_s'] * 1e3:.3g} ms). "
            + _fp8_cause_at_running_batch(p, p.calibration, fp8, bf16, rows)
        ]
    return []


def _fp8_cause_at_running_batch(
    p: CapacityProblem, profile: CalibrationProfile, fp8: dict[str, Any], bf16: dict[str, Any], rows: int
) -> str:
    """Why the fp8 plan decodes slower: the dense GEMMs' per-call cost (fp8_gemm_cost_text), or for
    an MoE model cost_models.deployment.fp8_decode_cause_text on the plan's replica, its static
    decode steps at its running batch (``rows`` a DP rank; the plan's candidates are scored at batch
    1, their load in the workload), which names the fp8 fused-MoE class where that makes the gap
    (Qwen3-30B-A3B on H100s under vLLM at 10 req/s: 1 x TP4 fp8 TPOT 30.3 ms against 11.6 ms, all
    of it the experts' class, where the note quoted the dense GEMMs' 3.2 us a call alone)."""
    fmt = "fp8_block" if p.model.fp8_block_scales else "fp8"
    gemm_text = fp8_gemm_cost_text(profile, p.chip, fmt, rows)
    if not p.model.experts:
        return gemm_text
    fp8_d, bf16_d = (replace(scored_plan(p, row).deployment, batch=rows * row["dp"]) for row in (fp8, bf16))
    fp8_s, bf16_s = (
        float(estimate(Deployments.from_rows([d]), calibration=profile).decode_step_latency_s[0])
        for d in (fp8_d, bf16_d)
    )
    if fp8_s <= bf16_s:  # (the serving TPOTs differ, the static steps not: the GEMMs' text alone)
        return gemm_text
    return (
        f"At the fp8 plan's running batch ({rows} sequences a rank) a static decode step takes "
        f"{fp8_s * 1e3:.3g} ms in fp8 against {bf16_s * 1e3:.3g} ms in bf16. "
        + fp8_decode_cause_text(fp8_d, fp8_s, bf16_s, profile, "overlapped")
    )


def checkpoint_notes(p: CapacityProblem, result: dict[str, dict[str, Any]]) -> list[str]:
    """Where the model's published checkpoint is quantized (``checkpoint_format``: gpt-oss's
    MXFP4) and a mode's best plan is in another weight format (bf16 or fp8, planned beside it:
    capacity.weight_formats), that the plan needs a checkpoint the model's repo is not, and the
    mode's fewest-chips plan in the stored format. The exported line names the model's repo with
    the plan's --quantization, which vLLM refuses for a checkpoint of another method
    (ModelConfig._verify_quantization: "does not match the quantization method specified in the
    `quantization` argument"; SGLang likewise) and TensorRT-LLM runs as stored; its notes say so,
    but the table did not: gpt-oss-120b on a B200 under vLLM at 8 req/s (3000/400 tokens) was
    planned as "1 x TP1, fp8 W8A8" with no word that openai/gpt-oss-120b holds no fp8 weights."""
    if p.model.checkpoint_format is None:
        return []
    stored = dtype_name(parse_dtype(p.model.checkpoint_format, "checkpoint_format"))
    # The repo tuner export names (a catalog model's own; another model's is the user's to set).
    repo = (HF_REPOS.get(p.model.name) if model_catalog().get(p.model.name) == p.model else None) or p.model.name
    notes = []
    for mode, r in result.items():
        best = r["best"]
        if best is None or best["weight_format"] == stored:
            continue
        own = next((row for row in r["feasible"] if row["weight_format"] == stored), None)
        alternative = (
            f"the fewest chips in {stored}: {own['chips']} ({_layout(own)}), TTFT {_seconds(own['ttft_s'])}, "
            f"TPOT {_seconds(own['tpot_s'])}"
            if own is not None
            else f"no {stored} plan meets the SLA within {p.max_chips} chips"
        )
        notes.append(
            f"{mode}: the best plan's {best['weight_format']} weights are not the {stored} that "
            f"{p.model.name}'s published checkpoint {repo} stores: it needs another checkpoint (its export names "
            f"{repo}, which the engine refuses with that --quantization or runs as stored); {alternative}"
        )
    return notes


def chip_prices(hardware: tuple[str, ...], prices: tuple[str, ...]) -> dict[str, float] | None:
    """``--price CHIP=USD`` (each chip's price for an hour, the user's: the catalog has none) by
    ``--hardware`` as written; None without any. Each problem is one line naming the flag and
    the fix: a chip given twice, a price that is not CHIP=NUMBER above 0, a price for a chip not
    asked for, a chip priced twice, and some chips priced but not others (a ranking by dollars
    needs them all)."""
    for i, chip in enumerate(hardware):
        if chip in hardware[:i]:
            raise InvalidInputError("--hardware", f"{chip} is given twice", "list each chip once")
    if not prices:
        return None
    # A chip file is priced by its path as written or by the name it gives (the one the report
    # prints): --hardware my-h100.yaml --price my-h100=2.49 was refused with "add --hardware
    # my-h100", which names no chip.
    named: dict[str, str] = {}
    for written_chip in hardware:
        try:
            named.setdefault(get_hardware(written_chip).name, written_chip)
        except InvalidInputError:  # named as --hardware's own error, later
            pass
    out: dict[str, float] = {}
    for written in prices:
        chip, equals, number = written.rpartition("=")
        chip = chip if chip in hardware else named.get(chip, chip)
        example = f"--price {chip or hardware[0]}=2.49 (your dollars per chip-hour)"
        if not equals or not chip:
            raise InvalidInputError("--price", f"{written!r} is not CHIP=USD", f"write {example}")
        try:
            usd = float(number)
        except ValueError:
            raise InvalidInputError("--price", f"{written!r}: {number!r} is not a number", f"write {example}") from None
        if not (math.isfinite(usd) and usd > 0):
            raise InvalidInputError(
                "--price", f"{written!r}: a price must be a number of dollars above 0", f"write {example}"
            )
        refuse_outside(
            "--price", usd, PRICE_PER_CHIP_HOUR_USD_RANGE, f"{chip}'s dollars per chip-hour", f"write {example}"
        )
        if chip not in hardware:
            raise InvalidInputError(
                "--price",
                f"{chip} is not a --hardware of this command ({', '.join(hardware)})",
                f"add --hardware {chip}, or drop --price {written}",
            )
        if chip in out:
            raise InvalidInputError("--price", f"{chip} is priced twice", "give each --hardware one --price")
        out[chip] = usd
    unpriced = [chip for chip in hardware if chip not in out]
    if unpriced:
        raise InvalidInputError(
            "--price",
            f"{unpriced[0]} has no price while {next(iter(out))} has one (the ranking is by dollars)",
            f"add --price {unpriced[0]}=USD (your dollars per chip-hour), or drop every --price",
        )
    return out


def _priced_row(row: dict, price_per_chip_hour_usd: float, output_tokens_per_s: float) -> dict:
    """``row`` with its dollars per hour and per million output tokens at the requested rate (a
    plan meeting the SLA keeps up with it: it serves request_rate x gen_len tokens/s)."""
    return {
        **row,
        "cost_usd_per_hour": float(usd_per_hour(row["chips"], price_per_chip_hour_usd)),
        "cost_usd_per_million_tokens": float(
            usd_per_million_tokens(row["chips"] / output_tokens_per_s, price_per_chip_hour_usd)
        ),
    }


def with_price(report: dict, price_per_chip_hour_usd: float) -> dict:
    """A :func:`recommend_dict` report with the chip's price and every plan's dollars added (no
    key of it changed)."""
    tokens_per_s = report["request_rate"] * report["gen_len"]
    modes = {}
    for mode, r in report["modes"].items():
        best = r["best"]
        modes[mode] = {
            **r,
            "best": None if best is None else _priced_row(best, price_per_chip_hour_usd, tokens_per_s),
            "runners_up": [_priced_row(row, price_per_chip_hour_usd, tokens_per_s) for row in r["runners_up"]],
        }
    return {**report, "price_per_chip_hour_usd": price_per_chip_hour_usd, "modes": modes}


def ranking(reports: list[dict]) -> list[dict]:
    """Each chip's best plan of each mode, cheapest first: dollars per hour, then dollars per
    million output tokens (at one request rate the two order alike), then the end-to-end latency.
    Each entry names its chip, backend and calibration profile (each chip is planned under its
    own)."""
    rows = [
        {
            "hardware": report["hardware"],
            "backend": report["backend"],
            "calibration_profile": report["calibration"].get("profile"),
            "price_per_chip_hour_usd": report["price_per_chip_hour_usd"],
            **r["best"],
        }
        for report in reports
        for r in report["modes"].values()
        if r["best"] is not None
    ]
    rows.sort(key=lambda row: (row["cost_usd_per_hour"], row["cost_usd_per_million_tokens"], row["e2e_latency_s"]))
    return [{"rank": i + 1, **row} for i, row in enumerate(rows)]


def comparison_dict(reports: list[dict]) -> dict:
    """The ``tuner recommend --json`` object of several --hardware: the request and SLA, each
    chip's plan (:func:`recommend_dict`, with prices where given) and, with prices, the
    ranking (:func:`ranking`); without them the plans are not ranked (chip counts of different
    chips do not compare)."""
    first = reports[0]
    priced = all("price_per_chip_hour_usd" in r for r in reports)
    return {
        **{
            k: first[k]
            for k in (
                "model",
                "request_rate",
                "prompt_len",
                "gen_len",
                "max_ttft_s",
                "max_tpot_s",
                "max_ttft_p90_s",
                "max_ttft_p99_s",
                "max_tpot_p99_s",
                "max_chips",
                "kv_format",
                "kv_bits",
                "kv_alternative",
            )  # fmt: skip
        },
        "hardware": [r["hardware"] for r in reports],
        "plans": reports,
        "ranking": ranking(reports) if priced else None,
    }


def _instance(tp: int, dp: int, ep: int) -> str:
    """One instance's degrees: ``TP8``, or ``TP1 DP8 EP8`` where it runs attention DP."""
    return f"TP{tp}" + (f" DP{dp} EP{ep}" if dp > 1 else "")


def _layout(row: dict) -> str:
    if row["mode"] == "aggregated":
        return f"{row['replicas']} x " + _instance(row["tp"], row.get("dp", 1), row.get("ep", 1))
    prefill = _instance(row["prefill_tp"], row.get("prefill_dp", 1), row.get("prefill_ep", 1))
    decode = _instance(row["decode_tp"], row.get("decode_dp", 1), row.get("decode_ep", 1))
    return f"{row['prefill_instances']}P x {prefill} + {row['decode_instances']}D x {decode}"


def _formats(row: dict) -> str:
    """The weight format, and W8A8 where the activations are 8-bit too (as tuner estimate
    --weight-bits F --act-bits F scores it)."""
    weights, acts = row["weight_format"], row.get("act_format", "bf16")
    return weights if acts == "bf16" else f"{weights} W8A8" if acts == weights else f"{weights} w, {acts} act"


def _percentile_slas(report: dict) -> str:
    """The percentile SLAs asked (``, p90 TTFT <= 1 s``), or nothing."""
    words = (("max_ttft_p90_s", "p90 TTFT"), ("max_ttft_p99_s", "p99 TTFT"), ("max_tpot_p99_s", "p99 TPOT"))
    return "".join(f", {word} <= {report[key]:g} s" for key, word in words if report.get(key) is not None)


def print_recommend(report: dict) -> None:
    console = _console()
    console.print(
        escape(
            f"{report['model']} on {report['hardware']} ({report['backend']}): {report['request_rate']:g} requests/s, "
            f"prompt {report['prompt_len']}, generate {report['gen_len']}; SLA TTFT <= {report['max_ttft_s']:g} s, "
            f"TPOT <= {report['max_tpot_s']:g} s{_percentile_slas(report)}; at most {report['max_chips']} chips; "
            f"{kv_cache_words(report)}"
        )
    )
    console.print(escape(calibration_line(report["calibration"])))
    price = report.get("price_per_chip_hour_usd")
    if price is not None:
        console.print(escape(f"price: ${price:g} a chip-hour (yours, --price)"))
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
        # The percentiles beside the means where a percentile SLA is asked (room for three more).
        tails = bool(_percentile_slas(report))
        if tails:
            columns[6:6] = ["TTFT p90", "TTFT p99", "TPOT p99"]
        if price is not None:
            columns += ["$/h", "$/M tokens"]
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
                _plain(row["tokens_per_s_per_chip"]),
            ]
            if tails:
                cells[6:6] = [_seconds(row["ttft_p90_s"]), _seconds(row["ttft_p99_s"]), _seconds(row["tpot_p99_s"])]
            if price is not None:
                cells += [_dollars(row["cost_usd_per_hour"]), _dollars(row["cost_usd_per_million_tokens"])]
            if mode == "disaggregated":
                cells += [row["limiting_pool"], f"{row['balance']:.2f}", _seconds(row["kv_transfer_s"])]
            table.add_row(*(escape(c) for c in cells))
        console.print(table)
        near = [("best" if rank == 0 else f"#{rank + 1}") for rank, row in enumerate([best, *r["runners_up"]])
                if row.get("near_capacity")]  # fmt: skip
        if near:
            console.print(
                escape(
                    f"near capacity: {', '.join(near)}: "
                    + ("a decode instance's" if mode == "disaggregated" else "a replica's")
                    + " running batch swings up to its KV cache or slots now and then (waits, preemptions): TTFT "
                    "and TPOT run above these means and percentiles"
                    + ("" if mode == "disaggregated" else "; check with tuner simulate")
                )
            )


def _dollars(usd: float) -> str:
    return f"{usd:,.2f}" if usd >= 100 else f"{usd:.3g}"


def print_comparison(comparison: dict) -> None:
    """Each chip's plan as :func:`print_recommend` prints one, then the ranking by dollars."""
    console = _console()
    for report in comparison["plans"]:
        print_recommend(report)
        console.print("")
    ranked = comparison["ranking"]
    if ranked is None:
        console.print(
            "not ranked: chip counts of different chips do not compare; pass --price CHIP=USD for each --hardware "
            "(your dollars per chip-hour) to rank the plans by dollars"
        )
        return
    tokens = comparison["request_rate"] * comparison["gen_len"]
    table = Table(title=escape(f"cheapest first at {comparison['request_rate']:g} requests/s ({tokens:g} tokens/s)"))
    columns = ["", "hardware", "mode", "chips", "layout", "weights", "$/chip-h", "$/h", "$/M tokens", "TTFT", "TPOT"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("", "hardware", "mode", "layout", "weights") else "right")
    for row in ranked:
        cells = [
            f"#{row['rank']}",
            f"{row['hardware']} ({row['calibration_profile'] or row['backend']})",
            row["mode"],
            str(row["chips"]),
            _layout(row),
            _formats(row),
            f"{row['price_per_chip_hour_usd']:g}",
            _dollars(row["cost_usd_per_hour"]),
            _dollars(row["cost_usd_per_million_tokens"]),
            _seconds(row["ttft_s"]),
            _seconds(row["tpot_s"]),
        ]
        table.add_row(*(escape(c) for c in cells))
    console.print(table)
    unplanned = [
        f"{report['hardware']} {mode}"
        for report in comparison["plans"]
        for mode, r in report["modes"].items()
        if r["best"] is None
    ]
    if unplanned:
        console.print(escape(f"no plan meets the SLA (not ranked): {', '.join(unplanned)}"))
    console.print("prices are yours (--price); the ranking moves with them")
    console.print(escape(f"every plan: {kv_cache_words(comparison)}"))
