"""The MoE layer model against measured fused-MoE kernels (``data/kernels/moe_perf.csv.gz``).

Each measured row is one GPU's fused MoE kernel: ``num_tokens`` tokens of width ``hidden_size``
routed top-``topk`` over ``num_experts`` experts of ``inter_size``, split ``moe_tp_size`` ways
along inter_size (expert tensor parallelism; rows with expert parallelism are not in the copy).
The model's time for it is the cost model's own MoE FFN on one chip of a 1 x 1 x tp mesh in the
1D weight-stationary layout (each expert's d_ff split tp ways, as ``cost_models.partitioning``
does): the expert matmuls (gate, up, down) and their activation, as the pure roofline and as
the calibrated grouped GEMMs (``cost_models.calibrated_times.expert_gemm_times_s``) under the
shipped profile of that chip and engine. The router's matmul is left out: the engines' MoE
kernels are timed from router logits. Nothing is fitted on these rows.

Formats: bfloat16; fp8 and fp8_block as fp8 weights and activations; int4_wo as int4 weights
with 16-bit activations. Microscaling formats (nvfp4, mxfp4) are not modelled and are skipped.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cost_models.calibrated_times import calibrated_operator_times
from cost_models.calibration import profile_for
from cost_models.dtypes import BF16, FP8, INT4
from cost_models.hardware import get_hardware
from cost_models.inference_configs import make_configs
from cost_models.models import ModelSpec
from cost_models.operators import OP, operator_costs
from cost_models.partitioning import gemm_shapes_per_chip, per_chip_costs, sharding_plan
from cost_models.roofline import roofline_times
from tuner.kernel_data import REPO_KERNELS, SYSTEMS

MOE_FILE = REPO_KERNELS / "moe_perf.csv.gz"
#: measured format -> (weight dtype, activation dtype)
FORMATS = {"bfloat16": (BF16, BF16), "fp8": (FP8, FP8), "fp8_block": (FP8, FP8), "int4_wo": (INT4, BF16)}
#: The slots the measured kernel runs (router excluded).
MOE_KERNEL_OPS = ("expert_gate", "expert_up", "expert_act", "expert_down")


#: Folds of the held-out MoE factor (rows grouped by expert shape: hidden, inter, experts, top-k).
FOLDS = 5


@dataclass(frozen=True)
class MoeErrors:
    """One (chip, engine): rows compared and |predicted / measured - 1| of each model; the
    factored model is the calibrated one times one factor per (chip, engine), each row predicted
    by a factor fitted on the folds that never saw its expert shape."""

    chip: str
    backend: str
    distribution: np.ndarray
    roofline_error: np.ndarray
    calibrated_error: np.ndarray
    calibrated_ratio: np.ndarray  # predicted / measured
    factored_error: np.ndarray
    factor: float  # fitted on every row (what a shipped factor would be)

    @property
    def rows(self) -> int:
        return len(self.distribution)


def held_out_factor(ratio: np.ndarray, shapes: np.ndarray, folds: int = FOLDS) -> tuple[np.ndarray, float]:
    """A multiplicative factor on the calibrated time, exp(median log(measured / predicted)),
    fitted per fold on the rows of the other shapes: (held-out predicted / measured, factor on
    every row). Shapes are assigned to folds in order of first appearance, round robin."""
    log_miss = -np.log(ratio)
    _, first = np.unique(shapes, return_index=True)
    order = np.argsort(np.argsort(first))  # rank of each shape by first appearance
    _, inverse = np.unique(shapes, return_inverse=True)
    fold = order[inverse] % folds
    held_out = np.empty_like(ratio)
    for f in range(folds):
        test = fold == f
        if not np.any(test) or np.all(test):
            held_out[test] = ratio[test]
            continue
        held_out[test] = ratio[test] * np.exp(np.median(log_miss[~test]))
    return held_out, float(np.exp(np.median(log_miss)))


def read_moe_rows(path: Path = MOE_FILE) -> list[dict[str, str]]:
    """Rows of the measurement file with expert parallelism 1 and a modelled format."""
    with gzip.open(path, "rt", newline="") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return [
        row
        for row in csv.DictReader(lines)
        if row["moe_ep_size"] == "1" and row["moe_dtype"] in FORMATS and row["system"] in SYSTEMS
    ]


def _spec(d: int, f: int, experts: int, k: int, gated: bool) -> ModelSpec:
    return ModelSpec(
        name=f"moe-{d}-{f}-{experts}-{k}",
        source="data/kernels/moe_perf.csv.gz",
        layers=1,
        d_model=d,
        heads=1,
        kv_heads=1,
        d_head=8,
        d_ff=f,
        ffn="swiglu" if gated else "gelu",
        vocab=1,
        experts=experts,
        experts_per_token=k,
        expert_d_ff=f,
    )


def moe_layer_times(rows: list[dict[str, str]], chip: str, backend: str) -> tuple[np.ndarray, np.ndarray]:
    """(roofline, calibrated) seconds of the MoE kernel of each row, all on ``chip`` / ``backend``."""
    hardware = get_hardware(chip)
    profile = profile_for(chip, backend)
    specs: dict[tuple, int] = {}
    models: list[ModelSpec] = []
    index = []
    for row in rows:
        key = (
            int(row["hidden_size"]),
            int(row["inter_size"]),
            int(row["num_experts"]),
            int(row["topk"]),
            "nongated" not in row["kernel_source"],
        )
        if key not in specs:
            specs[key] = len(models)
            models.append(_spec(*key))
        index.append(specs[key])
    weight, act = (np.array([FORMATS[r["moe_dtype"]][i] for r in rows]) for i in (0, 1))
    configs = make_configs(
        models,
        phase="prefill",
        batch=np.array([float(r["num_tokens"]) for r in rows]),
        seq_len=1,
        weight_dtype=weight,
        act_dtype=act,
        kv_dtype=BF16,
        model_index=np.array(index),
    )
    n = len(rows)
    tp = np.array([float(r["moe_tp_size"]) for r in rows])
    mesh = np.stack([np.ones(n), np.ones(n), tp], axis=1)
    layouts = np.zeros(n, dtype=np.int64)  # ws_1d: each expert's d_ff over every chip
    heads_only = np.zeros(n, dtype=bool)
    plan = sharding_plan(configs, mesh, layouts)
    chip_ops = per_chip_costs(operator_costs(configs), configs, mesh, layouts, heads_only, plan, np.ones(n))
    slots = [OP[name] for name in MOE_KERNEL_OPS]
    roofline = roofline_times(chip_ops.flops, chip_ops.bytes, chip_ops.compute_dtype, hardware).time_s
    calibrated = calibrated_operator_times(
        chip_ops, configs, gemm_shapes_per_chip(chip_ops, plan), tp, heads_only, hardware, profile
    )
    return roofline[slots].sum(axis=0), calibrated[slots].sum(axis=0)


def moe_kernel_errors(path: Path = MOE_FILE) -> list[MoeErrors]:
    """Errors of the MoE layer model per (chip, engine) of the measurement file."""
    rows = read_moe_rows(path)
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((SYSTEMS[row["system"]], row["framework"].lower()), []).append(row)
    out = []
    for (chip, backend), members in sorted(groups.items()):
        roofline, calibrated = moe_layer_times(members, chip, backend)
        measured = np.array([float(r["latency"]) for r in members]) / 1e3
        shapes = np.array([f"{r['hidden_size']}/{r['inter_size']}/{r['num_experts']}/{r['topk']}" for r in members])
        held_out, factor = held_out_factor(calibrated / measured, shapes)
        out.append(
            MoeErrors(
                chip,
                backend,
                np.array([r["distribution"] for r in members]),
                np.abs(roofline / measured - 1.0),
                np.abs(calibrated / measured - 1.0),
                calibrated / measured,
                np.abs(held_out - 1.0),
                factor,
            )
        )
    return out
