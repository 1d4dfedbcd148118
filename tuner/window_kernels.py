"""Sliding-window attention in the cost model against the measured attention kernels.

``data/kernels/context_attention_perf.csv.gz`` and ``generation_attention_perf.csv.gz`` have a
``window_size`` column: rows with a window (128, 1024, 8192) are kernels of sliding-window
attention. Each row becomes a one-block model with that window on its one block (heads, KV heads
and head_dim of the row) and goes through the cost model's own path: operator costs, one chip's
share (a 1 x 1 x 1 mesh) and the calibrated fused-attention time under the shipped profile of
that chip and engine (``cost_models.calibrated_times``), and the pure roofline. Full-attention
rows (window_size empty) of the same chips, engines and formats go through the same path, so the
two errors can be compared. Formats: bfloat16 attention with a bfloat16 or fp8 KV cache; with an
fp8 cache, where the engine's default prefill backend casts the query to fp8 (SGLang on
Hopper and Blackwell), the fp8 x fp8 rows, the kernel the cost model charges there.

The shipped profiles were fitted on every row of these files, windowed ones included (their
held-out errors, grouped by attention shape, are the tables above): the errors here are
in-sample for the calibrated model and show whether the window is charged as well as full
attention, not a held-out accuracy. Nothing is fitted here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cost_models.calibrated_times import FP8_QUERY_PREFILL_ENGINES, calibrated_operator_times
from cost_models.calibration import profile_for
from cost_models.dtypes import BF16, FP8
from cost_models.hardware import get_hardware
from cost_models.inference_configs import make_configs
from cost_models.models import ModelSpec
from cost_models.operators import OP, operator_costs
from cost_models.partitioning import gemm_shapes_per_chip, per_chip_costs, sharding_plan
from cost_models.roofline import roofline_times
from tuner.kernel_data import REPO_KERNELS, SYSTEMS, KernelTable, read_kernel_table

FILES = {"prefill": "context_attention_perf.csv.gz", "decode": "generation_attention_perf.csv.gz"}
KV_FORMATS = {"bfloat16": BF16, "fp8": FP8}


@dataclass(frozen=True)
class WindowErrors:
    """One (phase, chip, engine): |predicted / measured - 1| of windowed and of full-attention
    rows, pure roofline and calibrated."""

    phase: str
    chip: str
    backend: str
    windows: tuple[int, ...]
    windowed_roofline: np.ndarray
    windowed_calibrated: np.ndarray
    full_calibrated: np.ndarray
    windowed_ratio: np.ndarray  # calibrated predicted / measured


def _spec(heads: int, kv_heads: int, head_dim: int, window: int) -> ModelSpec:
    return ModelSpec(
        name=f"attention-{heads}-{kv_heads}-{head_dim}-w{window}",
        source="data/kernels attention rows",
        layers=1,
        d_model=heads * head_dim,
        heads=heads,
        kv_heads=kv_heads,
        d_head=head_dim,
        d_ff=8,
        ffn="gelu",
        vocab=1,
        sliding_window=window,
        sliding_window_layers=1 if window else 0,
    )


def attention_times(table: KernelTable, rows: np.ndarray, phase: str, chip: str, backend: str):
    """(roofline, calibrated) seconds of the fused attention of each row, through the cost model."""
    c = table.columns
    hardware = get_hardware(chip)
    profile = profile_for(chip, backend)
    keys = list(
        zip(
            c["num_heads"][rows].astype(int),
            c["num_key_value_heads"][rows].astype(int),
            c["head_dim"][rows].astype(int),
            c["window_size"][rows].astype(int),
            strict=True,
        )
    )
    distinct = sorted(set(keys))
    position = {key: i for i, key in enumerate(distinct)}
    models = [_spec(*key) for key in distinct]
    length = c["isl"][rows] if phase == "prefill" else np.maximum(c["step"][rows], 1.0)
    configs = make_configs(
        models,
        phase=phase,
        batch=c["batch_size"][rows],
        seq_len=length,
        kv_dtype=np.array([KV_FORMATS[str(k)] for k in c["kv_cache_dtype"][rows]]),
        flash_attention=True,
        model_index=np.array([position[key] for key in keys]),
    )
    n = len(rows)
    mesh = np.ones((n, 3))
    layouts = np.zeros(n, dtype=np.int64)
    heads_only = np.zeros(n, dtype=bool)
    plan = sharding_plan(configs, mesh, layouts)
    chip_ops = per_chip_costs(operator_costs(configs), configs, mesh, layouts, heads_only, plan, np.ones(n))
    i = OP["fused_attention"]
    roofline = roofline_times(chip_ops.flops, chip_ops.bytes, chip_ops.compute_dtype, hardware).time_s[i]
    calibrated = calibrated_operator_times(
        chip_ops, configs, gemm_shapes_per_chip(chip_ops, plan), np.ones(n), heads_only, hardware, profile
    )[i]
    return roofline, calibrated


def window_kernel_errors() -> list[WindowErrors]:
    """Errors per (phase, chip, engine) with windowed rows in the measurement files."""
    out = []
    for phase, name in FILES.items():
        table = read_kernel_table(REPO_KERNELS / name)
        c = table.columns
        usable = np.isin(c["kv_cache_dtype"], list(KV_FORMATS)) & np.array([s in SYSTEMS for s in c["system"]])
        # The rows of the kernel the cost model charges: bfloat16 attention, except a prefill with
        # an fp8 cache where the engine's default backend casts the query to fp8
        # (calibrated_times.FP8_QUERY_PREFILL_ENGINES: SGLang's fa3 and trtllm_mha), whose rows are
        # the fp8/fp8 ones; its bfloat16/fp8 rows are Triton's, which that engine does not run.
        fp8_query = np.array(
            [phase == "prefill" and (e, SYSTEMS.get(s)) in FP8_QUERY_PREFILL_ENGINES for s, e in
             zip(c["system"], c["engine"], strict=True)]
        ) & (c["kv_cache_dtype"] == "fp8")  # fmt: skip
        usable &= np.where(fp8_query, c["attn_dtype"] == "fp8", c["attn_dtype"] == "bfloat16")
        pairs = sorted({(s, e) for s, e, w in zip(c["system"][usable], c["engine"][usable], c["window_size"][usable],
                                                      strict=True) if w > 0})  # fmt: skip
        for system, engine in pairs:
            here = usable & (c["system"] == system) & (c["engine"] == engine)
            windowed = np.flatnonzero(here & (c["window_size"] > 0))
            full = np.flatnonzero(here & (c["window_size"] == 0))
            chip = SYSTEMS[system]
            measured_w = c["latency"][windowed] * 1e-3
            roof_w, cal_w = attention_times(table, windowed, phase, chip, engine)
            _, cal_f = attention_times(table, full, phase, chip, engine)
            out.append(
                WindowErrors(
                    phase,
                    chip,
                    engine,
                    tuple(sorted({int(w) for w in c["window_size"][windowed]})),
                    np.abs(roof_w / measured_w - 1.0),
                    np.abs(cal_w / measured_w - 1.0),
                    np.abs(cal_f / (c["latency"][full] * 1e-3) - 1.0),
                    cal_w / measured_w,
                )
            )
    return out


def render_windows(errors: list[WindowErrors]) -> str:
    """The docs/accuracy.md section."""
    lines = [
        "",
        "## Sliding-window attention (`window_size` rows of the attention kernels, not fitted here)",
        "",
        "Each measured windowed attention kernel as a one-block model with that window, through the "
        "cost model's own path (`tuner/window_kernels.py`: operator costs, one chip, the calibrated "
        "fused attention under the shipped profile, which times a windowed block with the kernel "
        "model's window term: causal band pairs in prefill, min(context, window) keys in decode). "
        "FULL is the same path on the same chip's and engine's full-attention rows. bfloat16 "
        "attention, bfloat16 or fp8 KV cache. The shipped profiles were fitted on all rows, these "
        "included, so CALIBRATED is in-sample (the held-out errors by shape are in the tables above). "
        "Errors are |predicted / measured - 1|; ratio is the median predicted / measured.",
        "",
        "| phase | chip | backend | windows | windowed rows | ROOFLINE median | CALIBRATED median "
        "| CALIBRATED p90 | ratio | FULL rows | FULL CALIBRATED median |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in errors:
        lines.append(
            f"| {e.phase} | {e.chip} | {e.backend} | {', '.join(map(str, e.windows))} | "
            f"{len(e.windowed_calibrated)} | {np.median(e.windowed_roofline):.1%} | "
            f"{np.median(e.windowed_calibrated):.1%} | {np.percentile(e.windowed_calibrated, 90):.1%} | "
            f"{np.median(e.windowed_ratio):.2f} | {len(e.full_calibrated)} | {np.median(e.full_calibrated):.1%} |"
        )
    lines += [
        "",
        "There is no multi-head latent attention (MLA) kernel in the measurements: MLA's calibrated "
        "attention maps its work onto the GQA kernel model (`cost_models/calibrated_times.py`, "
        "`_attention_kernel_shape`) and is not validated against any measurement. In prefill it reads the K and "
        "V decompressed from the latent as 16-bit activations whatever the cache holds (1 byte only where the "
        "engine casts them to fp8: `mla_prefill_attention_class`; at the cache's bytes an int8 cache ran below "
        "its own roofline under tpu-v4-jax). In decode it keeps the "
        "GQA fits' fixed costs and streaming speed but not their choice of kernel by group size or head "
        "dim (`mla_decode_params`), it streams the heads' absorbed queries and outputs with the latent "
        "cache (`mla_query_output_bytes_per_head`: without them it ran below its own roofline at short "
        "contexts), and its math runs at FlashMLA's published 580 TFLOPS on an H800 "
        "(0.59 of the bf16 peak): the GQA fallback past ~32-70 query heads per KV head (TRT-LLM's XQA "
        "limit) had charged DeepSeek-V3 at 128 heads a GPU (attention DP, TP 1) 0.1-0.7% of the peak, "
        "a decode step of 134-248 ms on B200/GB200 TRT-LLM and 479 ms on GB200 vLLM for 256 sequences "
        "on 8 GPUs where TP 8 then took 34-38 ms (2026-12-04; later changes to the decode model have "
        "moved both since).",
        "",
    ]
    return "\n".join(lines)
