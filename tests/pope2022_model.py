"""The deployments of Pope et al. (2022) as the cost model sees them; shared by the validation
tests and tests/validation_report.py."""

from __future__ import annotations

import functools

import numpy as np

from cost_models import get_model
from cost_models.deployment import estimate_one
from cost_models.partitioning import Shapes, ffn_collectives

# The papers' numbers are reproduced by the pure roofline: no calibration profile.
estimate_one = functools.partial(estimate_one, calibration="none")

PALM = get_model("palm-540b")
#: The paper pads PaLM 540B's 48 heads to 64 for every benchmark (section 4, Table D.1 note).
PALM_64_HEADS = PALM.model_copy(update={"name": "palm-540b (64 heads)", "heads": 64})
#: Table 1's and Figure 8's multihead variant: 64 heads of 128, each with its own K and V.
PALM_MULTIHEAD = PALM.model_copy(update={"name": "palm-540b (multihead)", "heads": 64, "kv_heads": 64, "d_head": 128})
ATTENTION = {  # Table 1 / Figure 8 rows -> (model, attention sharding)
    "multihead": (PALM_MULTIHEAD, "head"),
    "multiquery_head_sharded": (PALM_64_HEADS, "head"),
    "multiquery_batch_sharded": (PALM_64_HEADS, "batch"),
}


def figure3_volumes() -> dict[str, float]:
    """Bytes per chip per layer of each FFN layout at Figure 3's sizes."""
    one = lambda v: np.array([float(v)])  # noqa: E731
    E, F = 16384, 65536
    shapes = Shapes(
        tokens=one(2048),
        d_model=one(E),
        ffn_in=one(F),
        ffn_mid=one(F),
        attn_in=one(0),
        attn_mid=one(0),
        layer_weights=one(2 * E * F),
        act_bytes=one(2),
        weight_bytes=one(2),
    )
    mesh = np.array([[4.0, 4.0, 4.0]])
    return {
        layout: float(
            sum(
                c.bytes_per_chip[0]
                for c in ffn_collectives(layout, shapes, mesh, shapes.ffn_in, shapes.ffn_mid, shapes.layer_weights)
            )
        )
        for layout in ("ws_1d", "ws_2d", "wg_x", "wg_xy", "wg_xyz")
    }


def table1_max_context(attention: str, batch: int) -> int:
    model, sharding = ATTENTION[attention]
    report = estimate_one(
        model,
        "tpu-v4",
        chips=64,
        mesh="4x4x4",
        batch=batch,
        prompt_len=2048,
        gen_len=64,
        attn_sharding=sharding,
        kv_memory_fraction=0.3,
    )
    return report["memory"]["max_context_tokens"]


def table2(phase: str, batch: int, layout: str, sharding: str, weight_bits: str) -> dict:
    report = estimate_one(
        PALM_64_HEADS,
        "tpu-v4",
        chips=64,
        mesh="4x4x4",
        phase=phase,
        batch=batch,
        prompt_len=2048,
        gen_len=64,
        ffn_layout=layout,
        attn_sharding=sharding,
        weight_bits=weight_bits,
    )
    return report[phase]


def figure6_step_ms(layout: str, chips: int) -> float:
    mesh = {64: "4x4x4", 128: "4x4x8", 256: "4x8x8"}[chips]
    report = estimate_one(
        PALM_64_HEADS,
        "tpu-v4",
        chips=chips,
        mesh=mesh,
        phase="decode",
        batch=512,
        prompt_len=2048,
        gen_len=1,
        ffn_layout=layout,
        attn_sharding="batch",
    )
    return report["decode"]["step_latency_s"] * 1e3


def figure8_step_ms(attention: str, context: int) -> float:
    model, sharding = ATTENTION[attention]
    eight_layers = model.model_copy(update={"layers": 8})
    report = estimate_one(
        eight_layers,
        "tpu-v4",
        chips=64,
        mesh="4x4x4",
        phase="decode",
        batch=256,
        prompt_len=context,
        gen_len=1,
        ffn_layout="ws_2d",
        attn_sharding=sharding,
    )
    return report["decode"]["step_latency_s"] * 1e3


def table_d2_palm(batch: int) -> dict:
    """PaLM 540B, 20 prompt tokens, 8 generated, 2D weight-stationary, batch-sharded attention."""
    return estimate_one(
        PALM_64_HEADS,
        "tpu-v4",
        chips=64,
        mesh="4x4x4",
        batch=batch,
        prompt_len=20,
        gen_len=8,
        ffn_layout="ws_2d",
        attn_sharding="batch",
    )


def table_d2_fastertransformer_ms(batch: int, tensor_parallel: int) -> float:
    """MT-NLG 530B with FasterTransformer's Megatron tensor parallelism = 1D weight-stationary over
    all GPUs, attention split by heads; 2 or 4 DGX A100 nodes of 8 GPUs."""
    report = estimate_one(
        "mt-nlg-530b",
        "a100-80gb",
        chips=tensor_parallel,
        mesh=f"1x1x{tensor_parallel}",
        batch=batch,
        prompt_len=20,
        gen_len=8,
        ffn_layout="ws_1d",
        attn_sharding="head",
    )
    return (report["prefill"]["latency_s"] + report["decode"]["latency_s"]) * 1e3
