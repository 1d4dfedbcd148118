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
from cost_models.models import ModelSpec, get_model
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
        if size == 0:  # no such elements (a model whose every block is windowed: no full-attention cache)
            continue
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
                # the embedding and lm_head stay 16-bit (2 B) in every weight format, as engines keep them
                total += elements * (row.model.layers * weight_bytes if per_layer else 2.0)
            stored.append(total + _gathered_buffer_elements(phase, row.mesh) * weight_bytes)
        assert result.memory.weights_bytes_per_chip[i] == pytest.approx(max(stored), rel=1e-12), row
        decode = phases["decode"]
        for weight, op in WEIGHT_OPERATOR.items():
            if weight not in decode["weights"]:  # a gelu FFN has no gate
                continue
            tensor = decode["weights"][weight]
            in_use = math.prod(tensor["shape"]) / implied_ways(tensor["in_use"], tensor["shape"], row.mesh)
            # the lm_head is read 16-bit too (conventions.lm_head_format), the blocks in their format
            read_bytes = 2.0 if op == "lm_head" else weight_bytes
            assert charged.weight_bytes[OP[op], i] == pytest.approx(in_use * read_bytes, rel=1e-12), (row, weight)
        kv = decode["kv_cache"]
        # The full-attention blocks' cache and the windowed blocks' (Mistral 7B: all 32 of them).
        kv_elements = sum(
            2 * math.prod(part["shape"]) / implied_ways(part["sharding"], part["shape"], row.mesh)
            for part in (kv, kv["sliding_window"])
            if part is not None
        )
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
            # fp8: 1 B an element, but the embedding and lm_head stay 16-bit (2 B), as engines keep them
            bytes_each = 2.0 if name in ("embedding", "lm_head") else 1.0
            total += math.prod(tensor["shape"]) / implied_ways_of(tensor, row.mesh) * tensor["blocks"] * bytes_each
        assert result.memory.weights_bytes_per_chip[0] == pytest.approx(total, rel=1e-12), phase
    kv = phases["decode"]["kv_cache"]
    kv_elements = 2 * math.prod(kv["shape"]) / implied_ways(kv["sharding"], kv["shape"], row.mesh)
    assert result.memory.kv_cache_bytes_per_chip[0] == pytest.approx(kv_elements * 2.0, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Multi-head latent attention and sliding windows: the exported matrices and caches are the ones
# the estimate charged.

#: A small MLA model with a full-rank query (q_lora_rank 0: the q matrix, no q_a / q_b).
TINY_MLA = ModelSpec(
    **{
        **get_model("deepseek-v3").model_dump(),
        "name": "tiny-mla",
        "source": "test model",
        "layers": 6,
        "d_model": 1024,
        "heads": 16,
        "kv_heads": 16,
        "d_head": 64,
        "d_ff": 2816,
        "kv_lora_rank": 256,
        "q_lora_rank": 0,
        "qk_rope_head_dim": 32,
        "v_head_dim": 64,
        "experts": 8,
        "experts_per_token": 2,
        "expert_d_ff": 512,
        "dense_layers": 1,
        "vocab": 32000,
    }
)


def _model(name: str) -> ModelSpec:
    return TINY_MLA if name == "tiny-mla" else get_model(name)


#: MLA's rank dimensions, split like a head count or d_model of another size (tuner.export).
_MLA_RANK_DIMS = {"Rq", "Rkv+R", "Rkv"}


def _ways(tensor: dict, mesh: tuple[int, int, int], kind: str = "stored") -> int:
    """A tensor's shards: read off its sharding (and equal to the ``ways`` the export states),
    except for MLA matrices with a rank dimension, which is split like the head count (or
    d_model) it follows: there the stated ``ways`` (e.g. kv_a's 576 columns over 128 chips,
    charged 128 ways like 128 heads, or 64 ways like Kimi K2's 64 heads)."""
    if _MLA_RANK_DIMS & set(tensor["dims"]):
        return tensor["ways"][kind]
    sharding = tensor["sharding"] if kind == "stored" else tensor["in_use"]
    implied = implied_ways_of({**tensor, "sharding": sharding}, mesh)
    if "ways" in tensor:
        assert tensor["ways"][kind] == implied, tensor
    return implied


def _gathered_buffer_elements(phase: dict, mesh: tuple[int, int, int]) -> float:
    """Elements one chip holds in flight under a weight-gathered layout (gather_axes): 2 copies of
    one block's stored shard (Pope et al. 3.5's Looped CollectiveEinsum: the shard multiplied and
    the one arriving; cost_models.partitioning.WEIGHT_GATHERED_SHARD_BUFFERS), the block being its
    attention and the larger of its dense FFN and its experts; the router (replicated) and the
    embedding and lm_head (never gathered) left out. 0 under a weight-stationary layout, and where
    the gather axes hold one chip (nothing moves)."""
    if math.prod(mesh["xyz".index(a)] for a in phase["gather_axes"]) == 1:
        return 0.0
    parts = {"attention": 0.0, "dense_ffn": 0.0, "experts": 0.0}
    for name, tensor in phase["weights"].items():
        if name in ("embedding", "lm_head", "router") or not tensor["blocks"]:
            continue
        part = "attention"
        if name in ("w_gate", "w_up", "w_down"):
            part = "dense_ffn"
        elif name.startswith(("w_expert_", "w_shared_")):
            part = "experts"
        parts[part] += math.prod(tensor["shape"]) / _ways(tensor, mesh)
    return 2 * (parts["attention"] + max(parts["dense_ffn"], parts["experts"]))


def _stored_and_kv_bytes(row: Deployment, weight_bytes: float = 1.0) -> tuple[list[float], float]:
    """Per-chip weight bytes of each phase's table (``weight_bytes`` an element, but 2 for the
    embedding and lm_head, which stay 16-bit as engines keep them) and KV-cache elements, from the
    export alone."""
    phases, _ = sharding_tables(row)
    stored = []
    for phase in phases.values():
        total = 0.0
        for name, tensor in phase["weights"].items():
            if name == "lm_head" and tensor["tied_to_embedding"]:
                continue
            bytes_each = 2.0 if name in ("embedding", "lm_head") else weight_bytes
            total += math.prod(tensor["shape"]) / _ways(tensor, row.mesh) * tensor["blocks"] * bytes_each
        stored.append(total + _gathered_buffer_elements(phase, row.mesh) * weight_bytes)
    kv = phases["decode"]["kv_cache"]
    ways = implied_ways(kv["sharding"], kv["shape"], row.mesh)
    assert kv["shards"] == ways
    kv_elements = kv["arrays"] * math.prod(kv["shape"]) / ways
    if kv["sliding_window"] is not None:
        kv_elements += kv["arrays"] * math.prod(kv["sliding_window"]["shape"]) / ways
    return stored, kv_elements


MLA_WINDOW_CASES = [
    # (model, mesh, layout, attention sharding, engine degrees, prompt tokens)
    ("deepseek-v3", (1, 1, 8), "ws_1d", "head", {}, 1024),
    ("deepseek-v3", (1, 1, 8), "ws_1d", "head", {"expert_parallel": 8}, 1024),
    ("deepseek-v3", (1, 1, 8), "ws_1d", "head", {"expert_parallel": 16, "data_parallel": 2}, 1024),
    ("deepseek-v3", (1, 1, 8), "ws_1d", "batch", {"pipeline_parallel": 2}, 1024),
    ("deepseek-v3", (1, 1, 4), "ws_1d", "head", {"pipeline_parallel": 4, "micro_batches": 2}, 512),
    ("deepseek-v3", (2, 2, 2), "ws_2d", "head", {}, 1024),
    ("deepseek-v3", (2, 2, 2), "wg_xy", "batch", {}, 1024),
    ("deepseek-v3", (4, 2, 2), "wg_x", "head", {}, 256),
    ("deepseek-v3", (2, 2, 4), "wg_xyz", "batch", {}, 256),
    ("kimi-k2", (1, 1, 8), "ws_1d", "head", {"expert_parallel": 8}, 1024),
    # 128 chips splitting heads: Kimi K2's 64 heads are shared by 2 chips each, and kv_a's 576
    # columns, charged split like the heads, do not divide evenly (the export says so).
    ("kimi-k2", (4, 4, 8), "ws_1d", "head", {}, 256),
    ("deepseek-v3", (1, 1, 128), "ws_1d", "batch", {}, 256),
    ("tiny-mla", (1, 1, 4), "ws_1d", "head", {}, 512),
    ("tiny-mla", (2, 2, 1), "ws_2d", "batch", {}, 512),
    ("tiny-mla", (1, 1, 2), "ws_1d", "head", {"expert_parallel": 4, "data_parallel": 2}, 512),
    # gpt-oss-20b: a 128-token window on half its 24 blocks; prompts past the window.
    ("gpt-oss-20b", (1, 1, 4), "ws_1d", "head", {}, 4096),
    ("gpt-oss-20b", (1, 1, 4), "ws_1d", "head", {"expert_parallel": 4}, 4096),
    ("gpt-oss-20b", (1, 1, 2), "ws_1d", "head", {"expert_parallel": 4, "data_parallel": 2}, 64),
    ("gpt-oss-20b", (2, 1, 2), "ws_2d", "batch", {}, 4096),
    ("gpt-oss-20b", (1, 1, 2), "ws_1d", "head", {"pipeline_parallel": 2}, 64),  # within the window
    # gemma-3-27b: a 1024-token window on 52 of its 62 blocks.
    ("gemma-3-27b", (1, 1, 8), "ws_1d", "head", {}, 4096),
    ("gemma-3-27b", (2, 2, 2), "wg_xyz", "batch", {}, 4096),
    ("gemma-3-27b", (2, 2, 4), "ws_2d", "head", {}, 512),
    ("gemma-3-27b", (1, 1, 4), "ws_1d", "head", {"data_parallel": 2, "pipeline_parallel": 2}, 512),
]


@pytest.mark.parametrize(("model", "mesh", "layout", "attention", "degrees", "prompt"), MLA_WINDOW_CASES)
def test_exported_mla_and_window_bytes_equal_charged_bytes(model, mesh, layout, attention, degrees, prompt):
    row = Deployment(
        model=_model(model),
        hardware=get_hardware("h200"),
        mesh=mesh,
        batch=16,
        prompt_len=prompt,
        gen_len=64,
        prefill_ffn_layout=layout,
        decode_ffn_layout=layout,
        prefill_attn_sharding=attention,
        decode_attn_sharding=attention,
        weight_dtype="fp8",
        kv_dtype="bf16",
        **degrees,
    )
    result = estimate(Deployments.from_rows([row]), calibration=None)
    stored, kv_elements = _stored_and_kv_bytes(row)
    assert result.memory.weights_bytes_per_chip[0] == pytest.approx(max(stored), rel=1e-12)  # fp8: 1 B
    assert result.memory.kv_cache_bytes_per_chip[0] == pytest.approx(kv_elements * 2.0, rel=1e-12)  # bf16


@pytest.mark.parametrize("model", ["deepseek-v3", "tiny-mla"])
@pytest.mark.parametrize(
    ("mesh", "layout"), [((1, 1, 8), "ws_1d"), ((2, 2, 2), "ws_2d"), ((2, 2, 2), "wg_xy"), ((4, 4, 8), "ws_1d")]
)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_exported_mla_weights_in_use_equal_charged(model, mesh, layout, phase):
    # The attention weights one chip reads in use. The operator slots group MLA's matrices
    # differently by phase (decode absorbs W_UK into the query and W_UV into the output,
    # cost_models.operators), so the four slots q, k, v, o are compared together.
    row = Deployment(
        model=_model(model),
        hardware=get_hardware("h200"),
        mesh=mesh,
        batch=8,
        prompt_len=256,
        gen_len=16,
        prefill_ffn_layout=layout,
        decode_ffn_layout=layout,
        weight_dtype="bf16",
    )
    d = Deployments.from_rows([row])
    configs = d.inference_configs(phase, np.array([256.0 if phase == "prefill" else 264.0]))
    charged = per_chip_costs(
        operator_costs(configs), configs, d.mesh, d.ffn_layout(phase), d.batch_sharded_attention(phase)
    )
    weights = sharding_tables(row)[0][phase]["weights"]
    exported = sum(
        math.prod(weights[n]["shape"]) / _ways(weights[n], mesh, "in_use") * 2.0
        for n in ("q_a", "q_b", "q", "kv_a", "kv_b", "o")
        if n in weights
    )
    slots = sum(charged.weight_bytes[OP[op], 0] for op in ("q_proj", "k_proj", "v_proj", "out_proj"))
    assert slots == pytest.approx(exported, rel=1e-12)


def test_deepseek_v3_exported_by_hand():
    # DeepSeek-V3 config.json: hidden 7168, 128 heads, q_lora_rank 1536, kv_lora_rank 512,
    # qk_nope_head_dim 128, qk_rope_head_dim 64, v_head_dim 128, 61 layers. TP 8 (1D): every
    # matrix splits its heads 8 ways; the latent cache is whole on every chip.
    row = Deployment(
        model=get_model("deepseek-v3"),
        hardware=get_hardware("h200"),
        mesh=(1, 1, 8),
        batch=4,
        prompt_len=1000,
        gen_len=24,
        prefill_ffn_layout="ws_1d",
        decode_ffn_layout="ws_1d",
        weight_dtype="fp8",
        kv_dtype="bf16",
    )
    phases, notes = sharding_tables(row)
    w = phases["decode"]["weights"]
    assert {n: w[n]["shape"] for n in ("q_a", "q_b", "kv_a", "kv_b", "o")} == {
        "q_a": [7168, 1536],
        "q_b": [1536, 128, 192],
        "kv_a": [7168, 576],
        "kv_b": [512, 128, 256],
        "o": [128, 128, 7168],
    }
    assert not {"wq", "wk", "wv", "wo"} & set(w)
    assert w["q_b"]["sharding"] == [[], ["x", "y", "z"], []]
    assert w["o"]["sharding"] == [["x", "y", "z"], [], []]
    assert {n: w[n]["ways"]["stored"] for n in ("q_a", "q_b", "kv_a", "kv_b", "o")} == dict.fromkeys(
        ("q_a", "q_b", "kv_a", "kv_b", "o"), 8
    )
    kv = phases["decode"]["kv_cache"]
    assert kv["dims"] == ["layers", "B", "S", "Rkv+R"]
    assert kv["shape"] == [61, 4, 1024, 576]
    assert kv["sharding"] == [[], [], [], []] and kv["arrays"] == 1 and kv["sliding_window"] is None
    assert kv["replicated_over"] == ["z"]
    charged = estimate(Deployments.from_rows([row]), calibration=None).memory.kv_cache_bytes_per_chip[0]
    assert charged == 61 * 4 * 1024 * 576 * 2  # 287,834,112 B: whole on every chip
    assert any("q_a and kv_a" in n for n in notes)


def test_gemma_3_windowed_cache_by_hand():
    # Gemma 3 27B config.json: 62 layers, sliding_window 1024 on 52 of them (5 local : 1 global),
    # 16 KV heads of 128. A 4096 + 64 token context: 10 full blocks keep 4160 tokens, 52 keep 1024.
    row = Deployment(
        model=get_model("gemma-3-27b"),
        hardware=get_hardware("h200"),
        mesh=(1, 1, 8),
        batch=2,
        prompt_len=4096,
        gen_len=64,
        prefill_ffn_layout="ws_1d",
        decode_ffn_layout="ws_1d",
        kv_dtype="bf16",
    )
    kv = sharding_tables(row)[0]["decode"]["kv_cache"]
    assert kv["shape"] == [10, 2, 4160, 16, 128]
    assert kv["sliding_window"] == {
        "window": 1024,
        "blocks": 52,
        "which": "52 of the model's 62 blocks, as its config's layer_types name them",
        "shape": [52, 2, 1024, 16, 128],
        "sharding": [[], [], [], ["x", "y", "z"], []],
    }
    charged = estimate(Deployments.from_rows([row]), calibration=None).memory.kv_cache_bytes_per_chip[0]
    assert charged == pytest.approx(2 * 2 * 16 * 128 * 2 * (10 * 4160 + 52 * 1024) / 8, rel=1e-12)


def test_windowed_cache_of_a_pipeline_stage_past_the_window():
    row = Deployment(
        model=get_model("gemma-3-27b"),
        hardware=get_hardware("h200"),
        mesh=(1, 1, 2),
        batch=4,
        prompt_len=8192,
        gen_len=64,
        pipeline_parallel=2,
        kv_dtype="bf16",
    )
    # Stage of 31 blocks: 5 full (10 x 31 / 62) and 26 windowed, 16 KV heads split 2 ways.
    expected = 2 * 4 * 16 * 128 * 2 * (5 * 8256 + 26 * 1024) / 2
    _, kv_elements = _stored_and_kv_bytes(row)
    assert kv_elements * 2.0 == pytest.approx(expected, rel=1e-12)
    charged = estimate(Deployments.from_rows([row]), calibration=None).memory.kv_cache_bytes_per_chip[0]
    assert charged == pytest.approx(expected, rel=1e-12)
