"""Llama-2-7B on an A6000 against LLM-Viewer's Table 1, and the paper's qualitative claims.

Source: Yuan et al., "LLM Inference Unveiled: Survey and Roofline Model Insights" (arXiv 2402.16363),
Table 1: one transformer layer, seq_len 2048, batch 1, FP16 (2 bytes). Counted under the paper's
convention (YUAN2024: a residual add loads one input, full s x s prefill scores, decode attends to
exactly seq_len cached entries). The numbers below are typed from the paper, as printed.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cost_models import analyze, analyze_one, get_hardware, get_model, make_configs
from cost_models.dtypes import INT4, INT8
from cost_models.operators import OP
from printed import printed_error, within_printed
from reference_data import YUAN2024_TABLE1
from tuner.cli import cli

# The papers' numbers are reproduced by the pure roofline: no calibration profile.
analyze_one = functools.partial(analyze_one, calibration="none")


# gate_proj prefill bytes: weights 4096*11008*2 + input 2048*4096*2 + output 2048*11008*2 =
# 152.04e6 by hand, 0.03% above the printed 151.99e6 (and AI 1214.7 vs 1215.1). We accept 0.1%.
SLACK = 1e-3


def _report(phase: str) -> dict:
    return analyze_one("llama-2-7b", "a6000", phase=phase, batch=1, seq_len=2048, convention="yuan2024")


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    return {phase: {op["name"]: op for op in _report(phase)["operators"]} for phase in ("prefill", "decode")}


@pytest.mark.parametrize(
    "phase,paper_op,op,ops,bytes_,ai,bound", YUAN2024_TABLE1, ids=[f"{r[0]}-{r[1]}" for r in YUAN2024_TABLE1]
)
def test_table1_row(reports, phase, paper_op, op, ops, bytes_, ai, bound):
    row = reports[phase][op]
    assert within_printed(row["flops"], ops, SLACK), printed_error(row["flops"], ops)
    assert within_printed(row["bytes"], bytes_, SLACK), printed_error(row["bytes"], bytes_)
    assert within_printed(row["arithmetic_intensity"], ai, SLACK), printed_error(row["arithmetic_intensity"], ai)
    assert row["bound"] == bound


def test_a6000_ridge_points_match_paper():
    a6000 = get_hardware("a6000")  # ridge points printed by the paper: fp16 201.6, int8 403.3
    assert a6000.peak_ops_per_s.bf16 / a6000.memory_bandwidth_bytes_per_s == pytest.approx(201.6, abs=0.05)
    assert a6000.peak_ops_per_s.int8 / a6000.memory_bandwidth_bytes_per_s == pytest.approx(403.3, abs=0.05)


def test_done_when_command_json_matches_table1():
    """The issue's acceptance command, through the CLI, under the default (real-kernel) convention:
    the decode rows of Table 1 do not depend on the add convention, so they match as printed."""
    result = CliRunner().invoke(
        cli,
        [
            "analyze",
            "--model",
            "llama-2-7b",
            "--hardware",
            "a6000",
            "--phase",
            "decode",
            "--batch",
            "1",
            "--seq-len",
            "2048",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {"model", "hardware", "phase", "batch", "seq_len", "operators", "totals"} <= set(report)
    ops = {op["name"]: op for op in report["operators"]}
    for phase, _, op, flops, bytes_, _ai, bound in YUAN2024_TABLE1:
        if phase != "decode":
            continue
        assert within_printed(ops[op]["flops"], flops, SLACK)
        assert within_printed(ops[op]["bytes"], bytes_, SLACK)
        assert ops[op]["bound"] == bound
    assert ops["lm_head"]["scope"] == "per_model" and ops["q_proj"]["count"] == 32


def test_prefill_mostly_compute_bound_decode_all_memory_bound():
    """Paper: 'prefill: most operations are compute bound; decode: all operations are memory bound'
    (most by share of time: the projections)."""
    prefill = _report("prefill")
    compute_time = sum(op["time_s"] * op["count"] for op in prefill["operators"] if op["bound"] == "compute")
    assert compute_time / prefill["totals"]["time_s"] > 0.5
    assert all(op["bound"] == "memory" for op in _report("decode")["operators"])


def test_weight_quantization_helps_decode_until_compute_bound():
    """Paper: low-bit weights cut decode memory traffic; at large batch the projections are
    compute bound and fewer weight bits no longer help (activations stay 16-bit, so bf16 FLOPs)."""
    model, chip = get_model("llama-2-7b"), get_hardware("a6000")
    configs = make_configs(
        model,
        phase="decode",
        batch=np.array([1, 1, 1, 512, 512]),
        seq_len=128,
        weight_dtype=np.array([0, INT8, INT4, INT8, INT4]),
    )
    result = analyze(configs, chip)
    step = result.total_time_s
    assert step[0] > step[1] > step[2]  # batch 1: bf16 > int8 > int4
    gate = result.times.time_s[OP["gate_proj"]]
    assert result.times.compute_bound[OP["gate_proj"], 3:].all()
    assert gate[3] == pytest.approx(gate[4])  # batch 512: int4 buys nothing over int8


def test_kv_cache_dominates_long_context_and_quantization_cuts_it():
    """Paper: above ~50k tokens the KV cache takes most memory; KV quantization cuts it sharply."""
    model, chip = get_model("llama-2-7b"), get_hardware("a6000")
    configs = make_configs(
        model, phase="decode", batch=1, seq_len=np.array([4096, 65536, 65536]), kv_dtype=np.array([0, 0, INT4])
    )
    result = analyze(configs, chip)
    kv, weights = result.kv_cache_footprint_bytes, result.weight_footprint_bytes
    assert kv[0] < weights[0] and kv[1] > weights[1]
    assert kv[2] == pytest.approx(kv[1] / 4)
