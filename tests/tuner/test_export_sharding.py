"""The exported sharding is the one the cost model charged.

For every FFN layout, both attention shardings and many meshes (TPU tori and GPU nodes, chip
counts whose axes do and do not divide the model's dimensions), the bytes per chip implied by the
exported per-tensor sharding tables equal what the cost model charged: stored weights (memory),
weights read in use by each projection (per-chip operator costs), and the KV cache.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cost_models.deployment import estimate
from cost_models.deployments import Deployment, Deployments
from cost_models.dtypes import BYTES_PER_ELEMENT, DTYPE_NAMES
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.operators import OP, operator_costs
from cost_models.partitioning import ATTENTION_SHARDINGS, AXES, FFN_LAYOUTS, WEIGHT_OPERATOR, per_chip_costs
from tuner.export import sharding_tables

MESHES = [
    (1, 1, 1),
    (1, 1, 8),
    (2, 2, 2),
    (1, 2, 4),
    (2, 2, 4),
    (4, 4, 4),
    (1, 3, 4),
    (2, 6, 1),
    (1, 1, 16),
    (4, 2, 8),
    (3, 1, 8),
    (1, 1, 12),
    (8, 8, 4),
]
MODELS = ["llama-2-70b", "llama-2-13b", "palm-540b", "gpt2", "mistral-7b"]


def implied_ways(sharding: list[list[str]], shape: list[int], mesh: tuple[int, int, int]) -> int:
    """Shards a tensor's exported sharding makes: per dimension the chips of its axes, or the
    dimension's size where several chips of the axes share one shard."""
    sizes = dict(zip(AXES, mesh, strict=True))
    ways = 1
    for axes, size in zip(sharding, shape, strict=True):
        chips = math.prod(sizes[a] for a in axes)
        assert chips % size == 0 or size % chips == 0, (axes, size)
        ways *= min(chips, size)
    return ways


def deployments(model: str, layout: str, sharding: str) -> Deployments:
    rows = [
        Deployment(
            model=get_model(model),
            hardware=get_hardware("h100-sxm"),
            mesh=mesh,
            batch=batch,
            prompt_len=128,
            gen_len=16,
            prefill_ffn_layout=layout,
            decode_ffn_layout=layout,
            prefill_attn_sharding=sharding,
            decode_attn_sharding=sharding,
            weight_dtype=("bf16", "int8")[i % 2],
            kv_dtype="bf16",
        )
        for i, (mesh, batch) in enumerate(itertools.product(MESHES, (1, 6, 64)))
    ]
    return Deployments.from_rows(rows)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("layout", FFN_LAYOUTS)
@pytest.mark.parametrize("sharding", ATTENTION_SHARDINGS)
def test_exported_sharding_bytes_equal_charged_bytes(model, layout, sharding):
    d = deployments(model, layout, sharding)
    result = estimate(d)
    configs = d.inference_configs("decode", d.prompt_len + (d.gen_len - 1) / 2)
    charged = per_chip_costs(
        operator_costs(configs), configs, d.mesh, d.ffn_layout("decode"), d.batch_sharded_attention("decode")
    )
    for i in range(len(d)):
        row = d.row(i)
        phases, _ = sharding_tables(row)
        weight_bytes = BYTES_PER_ELEMENT[DTYPE_NAMES.index(row.weight_dtype)]
        stored = []
        for phase in phases.values():
            total = 0.0
            for name, tensor in phase["weights"].items():
                if name == "lm_head" and tensor["tied_to_embedding"]:
                    continue
                per_layer = name not in ("embedding", "lm_head")
                elements = math.prod(tensor["shape"]) / implied_ways(tensor["sharding"], tensor["shape"], row.mesh)
                total += elements * (row.model.layers if per_layer else 1)
            stored.append(total * weight_bytes)
        assert result.memory.weights_bytes_per_chip[i] == pytest.approx(max(stored), rel=1e-12), row
        decode = phases["decode"]
        for weight, op in WEIGHT_OPERATOR.items():
            if weight not in decode["weights"]:  # a gelu FFN has no gate
                continue
            tensor = decode["weights"][weight]
            in_use = math.prod(tensor["shape"]) / implied_ways(tensor["in_use"], tensor["shape"], row.mesh)
            assert charged.weight_bytes[OP[op], i] == pytest.approx(in_use * weight_bytes, rel=1e-12), (row, weight)
        kv = decode["kv_cache"]
        kv_elements = 2 * math.prod(kv["shape"]) / implied_ways(kv["sharding"], kv["shape"], row.mesh)
        assert kv["shards"] == implied_ways(kv["sharding"], kv["shape"], row.mesh)
        assert result.memory.kv_cache_bytes_per_chip[i] == pytest.approx(kv_elements * 2.0, rel=1e-12), row


def test_a_replicated_dimension_costs_more_than_a_perfect_split():
    """By hand: 8 KV heads on 12 GPUs (1x1x12) in 1D weight-stationary cannot split (8 does not
    divide 12 nor 12 8): wk and wv are whole on every chip, while 1x1x8 splits them 8 ways."""
    model = get_model("llama-2-70b")  # 8 KV heads of 128, d_model 8192, 80 layers
    rows = [
        Deployment(
            model=model,
            hardware=get_hardware("h100-sxm"),
            mesh=mesh,
            batch=1,
            prompt_len=16,
            gen_len=1,
            prefill_ffn_layout="ws_1d",
            decode_ffn_layout="ws_1d",
        )
        for mesh in ((1, 1, 8), (1, 1, 12))
    ]
    d = Deployments.from_rows(rows)
    configs = d.inference_configs("decode", np.array([16.0, 16.0]))
    charged = per_chip_costs(
        operator_costs(configs), configs, d.mesh, d.ffn_layout("decode"), d.batch_sharded_attention("decode")
    )
    wk = 8192 * 8 * 128 * 2  # bytes of the whole matrix
    assert charged.weight_bytes[OP["k_proj"]].tolist() == pytest.approx([wk / 8, wk])


def implied_ways_of(tensor: dict, mesh: tuple[int, int, int]) -> int:
    """:func:`implied_ways` with an expert table's own axes (``ep``, ``expert_tp``) besides the mesh's."""
    sizes = {**dict(zip(AXES, mesh, strict=True)), **tensor.get("axis_sizes", {})}
    ways = 1
    for axes, size in zip(tensor["sharding"], tensor["shape"], strict=True):
        chips = math.prod(sizes[a] for a in axes)
        assert chips % size == 0 or size % chips == 0, (axes, size)
        ways *= min(chips, size)
    return ways


@pytest.mark.parametrize(
    ("model", "tp", "degrees"),
    [
        ("qwen3-235b-a22b", 8, {}),
        ("qwen3-235b-a22b", 8, {"expert_parallel": 8}),
        ("qwen3-235b-a22b", 8, {"expert_parallel": 8, "pipeline_parallel": 2}),
        ("qwen3-235b-a22b", 4, {"expert_parallel": 16, "data_parallel": 4}),
        ("qwen3-235b-a22b", 4, {"data_parallel": 2, "pipeline_parallel": 3, "micro_batches": 2}),
        ("mixtral-8x7b", 2, {"expert_parallel": 2, "pipeline_parallel": 4}),
        ("mixtral-8x7b", 4, {"expert_parallel": 8, "data_parallel": 2}),
        ("llama-2-13b", 2, {"pipeline_parallel": 3, "data_parallel": 2}),
    ],
)
def test_exported_sharding_bytes_equal_charged_bytes_under_ep_pp_dp(model, tp, degrees):
    # The tables describe one chip of the busiest pipeline stage: each tensor's elements over its
    # shards, times the stage's blocks that hold it, must be the weights and KV cache the estimate
    # charged per chip (experts spread over EP ranks and expert TP = TP x DP / EP).
    row = Deployment(
        model=get_model(model),
        hardware=get_hardware("h200"),
        mesh=(1, 1, tp),
        batch=16,
        prompt_len=128,
        gen_len=16,
        prefill_ffn_layout="ws_1d",
        decode_ffn_layout="ws_1d",
        weight_dtype="fp8",
        kv_dtype="bf16",
        **degrees,
    )
    result = estimate(Deployments.from_rows([row]), calibration=None)
    phases, _ = sharding_tables(row)
    for phase in phases.values():
        total = 0.0
        for name, tensor in phase["weights"].items():
            if name == "lm_head" and tensor["tied_to_embedding"]:
                continue
            total += math.prod(tensor["shape"]) / implied_ways_of(tensor, row.mesh) * tensor["blocks"]
        assert result.memory.weights_bytes_per_chip[0] == pytest.approx(total * 1.0, rel=1e-12), phase  # fp8: 1 B
    kv = phases["decode"]["kv_cache"]
    kv_elements = 2 * math.prod(kv["shape"]) / implied_ways(kv["sharding"], kv["shape"], row.mesh)
    assert result.memory.kv_cache_bytes_per_chip[0] == pytest.approx(kv_elements * 2.0, rel=1e-12)
