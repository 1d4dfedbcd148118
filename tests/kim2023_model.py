"""Kim et al.'s workload analysis recomputed by the cost model, under the paper's convention.

Encoders (BERT) are one prefill pass over l tokens; GPT-2 generates l tokens one at a time with a
KV cache and no prompt (weights re-read every step). 8-bit operands throughout. The chip does not
matter for FLOPs and bytes; the A100 is just a place to run the roofline.
"""

from __future__ import annotations

import numpy as np

from cost_models import KIM2023, analyze, generation_totals, get_hardware, get_model, make_configs
from cost_models.dtypes import INT8
from cost_models.operators import OP

EIGHT_BIT = {"weight_dtype": INT8, "act_dtype": INT8, "kv_dtype": INT8}


def encoder_analysis(model: str, seq_lens: list[int]):
    configs = make_configs(get_model(model), phase="prefill", batch=1, seq_len=np.array(seq_lens), **EIGHT_BIT)
    return analyze(configs, get_hardware("a100-80gb"), KIM2023)


def figure_totals(model: str, seq_lens: list[int]) -> dict[str, np.ndarray]:
    """GFLOPs, GB and FLOPs/byte per sequence length, as in Figures 4-6."""
    if get_model(model).kind == "encoder":
        result = encoder_analysis(model, seq_lens)
        flops, bytes_ = result.total_flops, result.total_bytes
    else:
        totals = [
            generation_totals(get_model(model), get_hardware("a100-80gb"), seq_len, convention=KIM2023, **EIGHT_BIT)
            for seq_len in seq_lens
        ]
        flops = np.array([t["flops"] for t in totals])
        bytes_ = np.array([t["bytes"] for t in totals])
    return {"gflops": flops / 1e9, "gmops": bytes_ / 1e9, "ai": flops / bytes_}


def table3_rows(seq_len: int, groups: dict[str, tuple[str, ...]]) -> dict[str, dict[str, float]]:
    """Table 3's rows (GFLOPs, GB, FLOPs/byte over all 12 layers) for BERT-Base."""
    result = encoder_analysis("bert-base", [seq_len])
    ops = result.operators
    rows = {}
    for row, names in groups.items():
        index = [OP[n] for n in names]
        flops = float(np.sum(ops.flops[index, 0] * ops.repeats[index, 0]))
        bytes_ = float(np.sum(ops.bytes[index, 0] * ops.repeats[index, 0]))
        rows[row] = {"gflops": flops / 1e9, "gmops": bytes_ / 1e9, "ai": flops / bytes_}
    flops, bytes_ = float(result.total_flops[0]), float(result.total_bytes[0])
    rows["total"] = {"gflops": flops / 1e9, "gmops": bytes_ / 1e9, "ai": flops / bytes_}
    return rows
