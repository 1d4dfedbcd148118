"""cost_models.partitioning against hand arithmetic and Pope et al., "Efficiently Scaling
Transformer Inference" (arXiv 2211.05102), section 3.2 and Figure 3.

Every expected number below is worked out by hand in the comment next to it (never computed by
the code under test): how a dimension splits into even shards over mesh axes, how the KV cache
is split, what each FFN layout's collectives move, and what one chip stores of a tiny model.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import cost_models.partitioning as partitioning
from cost_models.dtypes import BF16, INT8
from cost_models.inference_configs import make_configs
from cost_models.models import ModelSpec
from cost_models.partitioning import (
    AXES,
    FFN_LAYOUTS,
    SHARDING_RULES,
    WEIGHT_AXES,
    WEIGHT_OPS,
    Shapes,
    distinct_rows,
    ffn_collectives,
    kv_cache_axes,
    kv_cache_split,
    sharding_plan,
    split_axes,
    split_over,
    weight_bytes_per_chip,
)


def ways(size: int, mesh: tuple[int, int, int], axes: tuple[str, ...] = AXES) -> float:
    w, _ = split_over(np.array([float(size)]), np.array([mesh], dtype=np.float64), axes)
    return float(w[0])


# --- split_over / split_axes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "mesh", "expected_ways", "expected_axes"),
    [
        # 64 over 2x2x2: 8 divides 64, every chip one eighth.
        (64, (2, 2, 2), 8, ("x", "y", "z")),
        # 32 over 4x2x1: x,y,z and x,y both give 8 ways on 8 chips (z has length 1); the tie goes to
        # more axes: x,y,z.
        (32, (4, 2, 1), 8, ("x", "y", "z")),
        # 8 KV heads over 4x4x1 (16 chips): 16 does not divide 8 but 8 divides 16, so 8 ways, each
        # head on 16 / 8 = 2 chips (how serving engines place 8 KV heads on 16 GPUs).
        (8, (4, 4, 1), 8, ("x", "y", "z")),
        # 1 KV head (multiquery): 1 way on every subset; the fewest chips win: the empty set,
        # replicated on every chip.
        (1, (2, 2, 2), 1, ()),
        # 5 over 2x2x2: no subset's chip count (1, 2, 4, 8) divides 5 or is divided by it but the
        # empty one: not split at all.
        (5, (2, 2, 2), 1, ()),
        # 6 over 2x4x3: x,y,z (24 chips, 6 | 24) gives 6 ways, x,z (6 chips) gives 6 ways too: the tie
        # goes to fewer chips, x,z (y,z = 12 chips, 6 | 12: 6 ways on 12 chips; x,y = 8: no split).
        (6, (2, 4, 3), 6, ("x", "z")),
        # 4 over 4x2x2: x,y,z / x,y / x,z give 4 ways on 16 or 8 chips; y,z and x give 4 ways on 4
        # chips; tie on chips -> more axes: y,z.
        (4, (4, 2, 2), 4, ("y", "z")),
        # 12 over 2x2x2: 8 does not divide 12 nor 12 8; any pair (4 chips) divides 12: 4 ways, x,y first.
        (12, (2, 2, 2), 4, ("x", "y")),
    ],
)
def test_split_over_by_hand(size, mesh, expected_ways, expected_axes) -> None:
    assert ways(size, mesh) == expected_ways
    assert split_axes(size, mesh, AXES) == expected_axes


def test_split_over_only_uses_the_axes_its_rule_names() -> None:
    # 8 KV heads over one axis of 16: 8 ways (each on 2 chips), over that axis.
    assert ways(8, (16, 1, 1), ("x",)) == 8
    assert split_axes(8, (16, 1, 1), ("x",)) == ("x",)
    # ... and over an axis of 4 of that rule, only 4 ways (4 divides 8).
    assert ways(8, (1, 4, 1), ("y",)) == 4
    # 16 over 2x2x2 restricted to y,z: 4 ways (not 8); restricted to nothing: 1 way.
    assert ways(16, (2, 2, 2), ("y", "z")) == 4
    assert split_axes(16, (2, 2, 2), ("y", "z")) == ("y", "z")
    assert ways(16, (2, 2, 2), ()) == 1
    assert split_axes(16, (2, 2, 2), ()) == ()
    # 8 KV heads over y,z of a 1x4x4 mesh (16 chips): 8 divides 16 -> 8 ways; y alone (4) -> 4 ways.
    assert ways(8, (1, 4, 4), ("y", "z")) == 8
    assert ways(8, (1, 4, 4), ("y",)) == 4


def test_split_over_is_vectorized_row_by_row() -> None:
    sizes = np.array([64.0, 8.0, 5.0, 6.0, 4.0])
    meshes = np.array([(2, 2, 2), (4, 4, 1), (2, 2, 2), (2, 4, 3), (4, 2, 2)], dtype=np.float64)
    w, _ = split_over(sizes, meshes, AXES)
    assert w.tolist() == [8.0, 8.0, 1.0, 6.0, 4.0]  # rows of the table above


def test_split_over_shards_are_always_even() -> None:
    """Whatever the size and mesh, a dimension splits into whole, equal shards: the ways divide
    the size, and the chips of the chosen axes are a whole number of copies of each shard."""
    for size in (1, 2, 3, 4, 6, 8, 12, 16, 40, 64, 96):
        for mesh in itertools.product((1, 2, 3, 4, 8), repeat=3):
            w = ways(size, mesh)
            assert w >= 1 and size % w == 0, (size, mesh, w)
            chips = int(np.prod([mesh["xyz".index(a)] for a in split_axes(size, mesh, AXES)]))
            assert chips % w == 0, (size, mesh, w, chips)


# --- kv_cache_split ----------------------------------------------------------------------------


def kv(kv_heads: int, batch: int, mesh: tuple[int, int, int], batch_sharded: bool) -> float:
    w, _, _ = kv_cache_split(
        np.array([float(kv_heads)]),
        np.array([float(batch)]),
        np.array([mesh], dtype=np.float64),
        np.array([batch_sharded]),
    )
    return float(w[0])


def test_kv_cache_head_sharded_by_hand() -> None:
    # 8 KV heads over 2x2x2: 8 ways over every axis; the batch dimension is not split.
    assert kv(8, 16, (2, 2, 2), False) == 8
    assert kv_cache_axes(8, 16, (2, 2, 2), False) == ((), ("x", "y", "z"))
    # Multiquery (1 KV head), head-sharded: the cache is replicated, 1 way.
    assert kv(1, 16, (2, 2, 2), False) == 1


def test_kv_cache_batch_sharded_by_hand() -> None:
    # Multiquery, batch 8 over 2x2x2 sharded by batch: 8 sequences over all 8 chips -> 8 ways
    # (Pope et al. 3.3: the multiquery cache is split by batch instead of replicated).
    assert kv(1, 8, (2, 2, 2), True) == 8
    assert kv_cache_axes(1, 8, (2, 2, 2), True) == (("x", "y", "z"), ())
    # 2 KV heads, batch 4: batch over x,y (4 ways, 4 | 4) and heads over z (2 ways) = 8 ways;
    # head sharding alone gets only 2 (2 heads, each replicated on 4 chips).
    assert kv(2, 4, (2, 2, 2), False) == 2
    assert kv(2, 4, (2, 2, 2), True) == 8
    assert kv_cache_axes(2, 4, (2, 2, 2), True) == (("x", "y"), ("z",))
    # Batch 3 over 2x2x2: no axis set of 2, 4 or 8 chips divides 3, so sequences are not split and
    # the heads keep every axis: 8 KV heads -> 8 ways, as head-sharded.
    assert kv(8, 3, (2, 2, 2), True) == 8


def test_kv_cache_batch_one_leaves_the_axes_to_heads() -> None:
    # One sequence cannot be split: batch-sharded is head-sharded.
    assert kv(8, 1, (2, 2, 2), True) == 8
    assert kv_cache_axes(8, 1, (2, 2, 2), True) == ((), ("x", "y", "z"))
    assert kv(1, 1, (2, 2, 2), True) == 1


def test_kv_cache_batch_sharded_never_holds_more_per_chip_than_head_sharded() -> None:
    cases = list(itertools.product((1, 2, 4, 8, 16), (1, 2, 3, 4, 8, 32), itertools.product((1, 2, 4), repeat=3)))
    heads = np.array([c[0] for c in cases], dtype=np.float64)
    batch = np.array([c[1] for c in cases], dtype=np.float64)
    mesh = np.array([c[2] for c in cases], dtype=np.float64)
    by_heads, _, _ = kv_cache_split(heads, batch, mesh, np.zeros(len(cases), dtype=bool))
    by_batch, _, _ = kv_cache_split(heads, batch, mesh, np.ones(len(cases), dtype=bool))
    assert np.all(by_batch >= by_heads)
    # ... and never more ways than chips, nor than sequences x KV heads.
    assert np.all(by_batch <= np.prod(mesh, axis=1))
    assert np.all(by_batch <= batch * heads)


# --- SHARDING_RULES ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", FFN_LAYOUTS)
def test_every_layout_stores_each_weight_split_over_all_three_axes(layout: str) -> None:
    """Pope et al. 3.2: in storage every weight matrix is split over all n chips (x, y and z once
    each); the weight-gathered layouts only gather before use."""
    rules = SHARDING_RULES[layout]
    for weight, (first, second) in WEIGHT_AXES.items():
        axes = getattr(rules, first) + getattr(rules, second)
        assert sorted(axes) == ["x", "y", "z"], (layout, weight, axes)


@pytest.mark.parametrize("layout", FFN_LAYOUTS)
def test_gather_axes_are_a_subset_and_the_batch_splits_over_them(layout: str) -> None:
    rules = SHARDING_RULES[layout]
    assert set(rules.gather) <= set(AXES)
    # Weight-gathered (3.2.3): the batch splits over the gathered axes, E over the rest.
    assert rules.act_batch == rules.gather
    remaining = tuple(a for a in AXES if a not in rules.gather)  # 1D weight-stationary over these
    assert rules.act_embed == remaining


def test_gather_axes_by_layout() -> None:
    gathered = {name: "".join(r.gather) for name, r in SHARDING_RULES.items() if r.gather}
    assert gathered == {"wg_x": "x", "wg_xy": "xy", "wg_xyz": "xyz"}
    assert SHARDING_RULES["ws_1d"].gather == SHARDING_RULES["ws_2d"].gather == ()
    # 1D: weights split along F over every chip, E not at all; 2D: E over x, F over y,z.
    assert SHARDING_RULES["ws_1d"].embed == () and SHARDING_RULES["ws_1d"].mlp == ("x", "y", "z")
    assert SHARDING_RULES["ws_2d"].embed == ("x",) and SHARDING_RULES["ws_2d"].mlp == ("y", "z")


# --- ffn_collectives against Pope et al. Figure 3 ----------------------------------------------

# N = 16 tokens, E = 8, F = 32, bf16 activations (2 bytes), int8 weights (1 byte), W_in and W_out
# together W = 2 E F = 512 weight elements; mesh X, Y, Z = 4, 2, 1 (n = 8). An asymmetric mesh,
# so that a formula that swaps X and YZ gets a different number.
N, E, F, AB, WB = 16.0, 8.0, 32.0, 2.0, 1.0
W = 2 * E * F
MESH = np.array([[4.0, 2.0, 1.0]])
X, YZ, CHIPS = 4.0, 2.0, 8.0


def shapes(tokens: float = N) -> Shapes:
    one = lambda v: np.array([float(v)])  # noqa: E731
    return Shapes(
        tokens=one(tokens),
        d_model=one(E),
        ffn_in=one(F),
        ffn_mid=one(F),
        attn_in=one(0),
        attn_mid=one(0),
        layer_weights=one(W),
        act_bytes=one(AB),
        weight_bytes=one(WB),
    )


def calls(layout: str, mid_in: float = F, mid_out: float = F, mesh: np.ndarray = MESH) -> list:
    result = ffn_collectives(layout, shapes(), mesh, np.array([mid_in]), np.array([mid_out]), np.array([W]))
    return [(c.kind, c.axes, float(c.bytes_per_chip[0]), c.moves) for c in result]


FIGURE_3 = {
    # 1D weight-stationary (3.2.1): all-gather the activations [B L E] over all chips, reduce-scatter
    # the partial sums: N E each, 2 N E per layer whatever the chip count.
    "ws_1d": [("all_gather", "xyz", N * E * AB, "activations"), ("reduce_scatter", "xyz", N * E * AB, "activations")],
    # 2D weight-stationary (3.2.2): all-gather over yz of N E / X, reduce-scatter over x of N F / YZ,
    # all-gather over x of N F / YZ, reduce-scatter over yz of N E / X.
    "ws_2d": [
        ("all_gather", "yz", N * E / X * AB, "activations"),
        ("reduce_scatter", "x", N * F / YZ * AB, "activations"),
        ("all_gather", "x", N * F / YZ * AB, "activations"),
        ("reduce_scatter", "yz", N * E / X * AB, "activations"),
    ],
    # X-weight-gathered (3.2.3): weights all-gathered over x (each chip ends with W X / n), then the
    # N / X tokens of each x group run 1D over y,z: all-gather and reduce-scatter of (N / X) E.
    "wg_x": [
        ("all_gather", "x", W * X / CHIPS * WB, "weights"),
        ("all_gather", "yz", N / X * E * AB, "activations"),
        ("reduce_scatter", "yz", N / X * E * AB, "activations"),
    ],
    # XY-weight-gathered: weights gathered over x,y (W X Y / n = W here, Z = 1), N / (X Y) tokens
    # run 1D over z.
    "wg_xy": [
        ("all_gather", "xy", W * X * 2.0 / CHIPS * WB, "weights"),
        ("all_gather", "z", N / (X * 2.0) * E * AB, "activations"),
        ("reduce_scatter", "z", N / (X * 2.0) * E * AB, "activations"),
    ],
    # XYZ-weight-gathered: the whole weights on every chip, no activation communication at all.
    "wg_xyz": [("all_gather", "xyz", W * WB, "weights")],
}


@pytest.mark.parametrize("layout", FFN_LAYOUTS)
def test_ffn_collectives_match_figure_3(layout: str) -> None:
    assert calls(layout) == FIGURE_3[layout]


def test_ffn_collective_numbers() -> None:
    """The same, as plain numbers (so a typo in the formulas above cannot hide a wrong model)."""
    assert [c[2] for c in calls("ws_1d")] == [256.0, 256.0]
    assert [c[2] for c in calls("ws_2d")] == [64.0, 512.0, 512.0, 64.0]
    assert [c[2] for c in calls("wg_x")] == [256.0, 64.0, 64.0]
    assert [c[2] for c in calls("wg_xy")] == [512.0, 32.0, 32.0]
    assert [c[2] for c in calls("wg_xyz")] == [512.0]


#: As the GPU engines run tensor parallelism (Megatron TP in vLLM, SGLang, TensorRT-LLM): the
#: residual [B, L, E] replicated over the group, W_in column-parallel, W_out row-parallel, its
#: partial sums all-reduced once (vLLM RowParallelLinear -> tensor_model_parallel_all_reduce). A
#: layout with no in-use embed axis all-reduces N' E where Figure 3 all-gathers and reduce-scatters
#: it; 2D keeps its own (E is split over x: there is no whole residual to all-reduce).
ENGINES = {
    # 1D: N E = 16 x 8 x 2 = 256 bytes, one all-reduce over every chip.
    "ws_1d": [("all_reduce", "xyz", N * E * AB, "activations")],
    "ws_2d": FIGURE_3["ws_2d"],
    # X-weight-gathered: the weights' all-gather, then (N / X) E = 4 x 8 x 2 = 64 bytes over y,z.
    "wg_x": [("all_gather", "x", W * X / CHIPS * WB, "weights"), ("all_reduce", "yz", N / X * E * AB, "activations")],
    # XY-weight-gathered: N / (X Y) E = 2 x 8 x 2 = 32 bytes over z.
    "wg_xy": [
        ("all_gather", "xy", W * X * 2.0 / CHIPS * WB, "weights"),
        ("all_reduce", "z", N / (X * 2.0) * E * AB, "activations"),
    ],
    "wg_xyz": FIGURE_3["wg_xyz"],
}


@pytest.mark.parametrize("layout", FFN_LAYOUTS)
def test_gpu_engines_all_reduce_the_residual_once_per_weight_set(layout: str) -> None:
    result = ffn_collectives(layout, shapes(), MESH, np.array([F]), np.array([F]), np.array([W]), all_reduce=True)
    assert [(c.kind, c.axes, float(c.bytes_per_chip[0]), c.moves) for c in result] == ENGINES[layout]


def test_a_tp8_decode_block_runs_two_all_reduces_of_the_residual() -> None:
    """Llama-3-8B (E 4096, 32 heads, 8 KV heads, F 14336), a batch of 8 decoding one token each
    over 1 x 1 x 8 GPUs in 1D: the engines' two all-reduces per block (after the attention's output
    projection and after the FFN's down projection), each of the residual [8, 1, 4096] in bf16:
    8 x 4096 x 2 = 65,536 bytes over all 8 GPUs; nothing else moves (head-sharded attention's
    all-to-alls are empty). Figure 3's program: 4 collectives of the same 65,536 bytes."""
    model = ModelSpec(
        name="llama-3-8b-shape",
        source="Meta-Llama-3-8B config.json",
        layers=32,
        d_model=4096,
        heads=32,
        kv_heads=8,
        d_head=128,
        d_ff=14336,
        ffn="swiglu",
        vocab=128256,
    )
    configs = make_configs(model, phase="decode", batch=8, seq_len=1024, flash_attention=True)
    s = Shapes.of(configs, np.array([1.0]))
    mesh = np.array([[1.0, 1.0, 8.0]])
    serial, head = np.array([False]), np.array([False])

    def moving(all_reduce: bool) -> list:
        calls = partitioning.layer_collectives("ws_1d", s, mesh, serial, head, all_reduce)
        return [(c.kind, c.axes, float(c.bytes_per_chip[0])) for c in calls if c.bytes_per_chip[0] > 0]

    assert moving(True) == [("all_reduce", "xyz", 65536.0)] * 2
    assert moving(False) == [("all_gather", "xyz", 65536.0), ("reduce_scatter", "xyz", 65536.0)] * 2


@pytest.mark.parametrize("mesh", [(1, 1, 1), (2, 1, 1), (2, 2, 2), (8, 4, 2)])
def test_ws_1d_moves_2NE_whatever_the_chip_count(mesh) -> None:
    moved = sum(c[2] for c in calls("ws_1d", mesh=np.array([mesh], dtype=np.float64)))
    assert moved == 2 * N * E * AB  # 512 bytes


def test_ws_2d_with_a_gated_ffn_widens_only_the_hidden_collectives() -> None:
    # SwiGLU: W_in writes gate and up, 2F wide; W_out reads F. Reduce-scatter over x of N 2F / YZ
    # = 16 * 64 / 2 * 2 = 1024 bytes; all-gather over x of N F / YZ = 512; the E ones unchanged.
    assert [c[2] for c in calls("ws_2d", mid_in=2 * F, mid_out=F)] == [64.0, 1024.0, 512.0, 64.0]


# --- sharding_plan: what a chip stores ---------------------------------------------------------

# E = 8, 4 query heads and 2 KV heads of D = 2 (widths 8 and 4), F = 16 (gelu: up and down only),
# V = 16, 2 layers, untied lm_head; one configuration on a 2x2x2 mesh.
TINY = ModelSpec(
    name="tiny", source="hand-made", layers=2, d_model=8, heads=4, kv_heads=2, d_head=2, d_ff=16, ffn="gelu", vocab=16
)


def plan_of(model: ModelSpec, layout: str, mesh=(2, 2, 2), weight_dtype: int = BF16):
    configs = make_configs(model, phase="decode", batch=1, seq_len=8, weight_dtype=weight_dtype)
    mesh_array = np.array([mesh], dtype=np.float64)
    codes = np.array([FFN_LAYOUTS.index(layout)])
    return configs, mesh_array, codes, sharding_plan(configs, mesh_array, codes)


def test_sharding_plan_of_repeated_shapes_is_the_plan_of_every_row() -> None:
    """sharding_plan with shape_repeats (each shape once, its layouts consecutive) gives every
    array of the plan of the repeated rows bit for bit (dense, MoE, MLA, tied, odd meshes)."""
    from cost_models.models import get_model

    models = [get_model(name) for name in ("llama-3-8b", "mixtral-8x7b", "deepseek-v3", "gpt2")] + [TINY]
    rng = np.random.default_rng(6)
    n, repeats = 40, 3
    configs = make_configs(models, model_index=rng.integers(0, len(models), n), phase="decode", batch=4, seq_len=64)
    meshes = np.array([[1, 1, 8], [2, 2, 2], [4, 4, 4], [1, 3, 5], [2, 1, 16]], dtype=np.float64)
    mesh = meshes[rng.integers(0, len(meshes), n)]
    codes = rng.integers(0, len(FFN_LAYOUTS), n * repeats)
    rows = np.repeat(np.arange(n), repeats)
    expected = sharding_plan(configs.take(rows), mesh[rows], codes)
    plan = sharding_plan(configs, mesh, codes, shape_repeats=repeats)
    for name in ("in_use_ways", "gemm_k", "gemm_n", "stored_elements", "routed_expert_elements"):
        assert getattr(plan, name).tobytes() == getattr(expected, name).tobytes(), name


def test_stored_elements_ws_1d_by_hand() -> None:
    # ws_1d: E whole (1 way); heads over x,y,z: 4 heads on 8 chips -> 4 ways; 2 KV heads -> 2 ways;
    # F = 16 over 8 -> 8 ways; V = 16 -> 8 ways. Per layer, elements per chip:
    #   wq 8*8/4 = 16, wk 8*4/2 = 16, wv 16, wo 8*8/4 = 16, w_up 8*16/8 = 16, w_down 16 -> 96.
    # 2 layers: 192; lm_head 8*16/8 = 16; embedding 16*8/8 = 16. Total 224 elements per chip
    # (vs 1152 / 8 = 144 if nothing were replicated).
    assert TINY.params == 1152
    *_, plan = plan_of(TINY, "ws_1d")
    assert plan.stored_elements.tolist() == [224.0]


@pytest.mark.parametrize("layout", ["ws_2d", "wg_x", "wg_xy", "wg_xyz"])
def test_stored_elements_2d_and_weight_gathered_by_hand(layout: str) -> None:
    # Stored as 2D: E over x (2 ways); heads over y,z (4 chips): 4 ways; KV heads 2 over y,z: 2
    # ways (on y alone, the fewer chips); F over y,z: 4 ways; V over y,z: 4 ways. Per layer:
    #   wq 8*8/(2*4) = 8, wk 8*4/(2*2) = 8, wv 8, wo 8, w_up 8*16/(2*4) = 16, w_down 16 -> 64.
    # 2 layers: 128; lm_head 8*16/(2*4) = 16; embedding 16*8/(4*2) = 16. Total 160.
    *_, plan = plan_of(TINY, layout)
    assert plan.stored_elements.tolist() == [160.0]


def test_stored_bytes_follow_the_weight_format_ties_and_gating() -> None:
    configs, mesh, codes, plan = plan_of(TINY, "ws_1d", weight_dtype=INT8)
    # int8: the blocks' 192 elements 1 byte each; the lm_head's and the embedding's 16 + 16 stay
    # bf16, as engines keep them (cost_models.partitioning.TABLE_BYTES_PER_ELEMENT): 192 + 64 = 256.
    assert weight_bytes_per_chip(configs, mesh, codes, plan).tolist() == [256.0]
    assert plan.table_elements.tolist() == [32.0]
    configs, mesh, codes, plan = plan_of(TINY, "ws_1d")
    assert weight_bytes_per_chip(configs, mesh, codes).tolist() == [448.0]  # bf16: 2 bytes each
    # Tied embeddings: no lm_head, 224 - 16 = 208.
    tied = TINY.model_copy(update={"tie_embeddings": True})
    assert plan_of(tied, "ws_1d")[3].stored_elements.tolist() == [208.0]
    # SwiGLU: a gate matrix like up, 8*16/8 = 16 per layer, 2 layers: 224 + 32 = 256.
    gated = TINY.model_copy(update={"ffn": "swiglu"})
    assert plan_of(gated, "ws_1d")[3].stored_elements.tolist() == [256.0]


def test_gemm_widths_in_use_by_hand() -> None:
    row = {op: i for i, op in enumerate(WEIGHT_OPS)}
    # ws_2d, q_proj: x[m, E / 2] @ W[E / 2, 8 / 4]: k = 4, n = 2, split 8 ways.
    *_, plan = plan_of(TINY, "ws_2d")
    assert plan.gemm_k[row["q_proj"]].tolist() == [4.0]
    assert plan.gemm_n[row["q_proj"]].tolist() == [2.0]
    assert plan.in_use_ways[row["q_proj"]].tolist() == [8.0]
    # down_proj: k = F / 4 = 4, n = E / 2 = 4.
    assert plan.gemm_k[row["down_proj"]].tolist() == [4.0]
    assert plan.gemm_n[row["down_proj"]].tolist() == [4.0]
    # wg_xyz: every block weight gathered whole before use (1 way, k = 8, n = 8); the lm_head is
    # never gathered: still split 2 x 4 = 8 ways, k = 8 / 2 = 4, n = 16 / 4 = 4.
    *_, plan = plan_of(TINY, "wg_xyz")
    assert plan.in_use_ways[row["q_proj"]].tolist() == [1.0]
    assert (plan.gemm_k[row["q_proj"]].tolist(), plan.gemm_n[row["q_proj"]].tolist()) == ([8.0], [8.0])
    assert plan.in_use_ways[row["lm_head"]].tolist() == [8.0]
    assert (plan.gemm_k[row["lm_head"]].tolist(), plan.gemm_n[row["lm_head"]].tolist()) == ([4.0], [4.0])
    # wg_x: gathered over x only: E whole in use (1 way), heads still over y,z (4 ways).
    *_, plan = plan_of(TINY, "wg_x")
    assert plan.in_use_ways[row["q_proj"]].tolist() == [4.0]
    assert (plan.gemm_k[row["q_proj"]].tolist(), plan.gemm_n[row["q_proj"]].tolist()) == ([8.0], [2.0])


def test_plan_of_many_configurations_takes_each_ones_layout() -> None:
    configs = make_configs([TINY] * 3, phase="decode", batch=1, seq_len=8)
    mesh = np.array([(2, 2, 2)] * 3, dtype=np.float64)
    codes = np.array([FFN_LAYOUTS.index(name) for name in ("ws_1d", "ws_2d", "wg_xyz")])
    plan = sharding_plan(configs, mesh, codes)
    assert plan.stored_elements.tolist() == [224.0, 160.0, 160.0]
    # take(): the plan of a subset of rows, expanded on read.
    assert plan.take(np.array([2, 0, 0])).stored_elements.tolist() == [160.0, 224.0, 224.0]


# --- distinct_rows -----------------------------------------------------------------------------


def check_distinct(columns: list[np.ndarray], groups: list[list[int]]) -> None:
    """``groups``: the row indices that are equal, written by hand."""
    first, inverse = distinct_rows(*columns)
    assert len(first) == len(groups)
    for column in columns:  # the representatives reconstruct every row
        column = np.asarray(column)
        assert np.array_equal(column[first][inverse], column)
    for group in groups:
        assert len({int(inverse[i]) for i in group}) == 1, group
    assert len({int(inverse[g[0]]) for g in groups}) == len(groups)
    assert sorted(int(i) for i in first) == sorted(g[0] for g in groups)  # first occurrences


def test_distinct_rows_small_whole_numbers() -> None:
    a = np.array([3, 1, 3, 2, 1])
    b = np.array([0.0, 5.0, 0.0, 5.0, 5.0])
    check_distinct([a, b], [[0, 2], [1, 4], [3]])


def test_distinct_rows_non_integer_column_falls_back() -> None:
    # 0.5 and 1.5 are not whole: the row-wise unique, not the packed key (which would truncate
    # 0.5 and 0.0 to the same 0 and merge rows 0 and 1).
    a = np.array([0.5, 0.0, 0.5, 1.5])
    b = np.array([1, 1, 1, 1])
    check_distinct([a, b], [[0, 2], [1], [3]])


def test_distinct_rows_negative_and_huge_values_fall_back() -> None:
    check_distinct([np.array([-1, 1, -1, 0])], [[0, 2], [1], [3]])
    huge = np.array([2**40, 0, 2**40, 1])  # two such columns overflow a packed int64 key
    check_distinct([huge, huge[::-1].copy()], [[0], [1], [2], [3]])
    check_distinct([huge, huge], [[0, 2], [1], [3]])


def test_distinct_rows_any_order_are_distinct_rows_classes() -> None:
    """distinct_rows_any_order: the classes of distinct_rows (each row's representative has its
    values; as many distinct rows), found by buckets at MIN_ROWS rows and more, by the sort below
    or where a column is not packable."""
    from cost_models.distinct import MIN_ROWS
    from cost_models.partitioning import distinct_rows_any_order

    rng = np.random.default_rng(4)
    for n in (10, MIN_ROWS, 20_000):
        columns = [rng.integers(0, 9, n), rng.choice([8.0, 16.0, 64.0], n), rng.integers(0, 2, n).astype(bool)]
        for cols in (columns, [*columns, rng.choice([0.5, 1.0], n)]):
            first, inverse = distinct_rows_any_order(*cols)
            expected_first, _ = distinct_rows(*cols)
            assert len(first) == len(expected_first)
            for column in cols:
                assert np.array_equal(column[first][inverse], column)


def test_kv_cache_ways_of_shape_splits_are_kv_cache_splits() -> None:
    """kv_cache_ways from the shape-only terms (kv_shape_splits, on distinct shapes, gathered)
    gives kv_cache_split's ways bit for bit, head- and batch-sharded, with latent rows."""
    from cost_models.partitioning import kv_cache_split, kv_cache_ways, kv_shape_splits

    rng = np.random.default_rng(5)
    n = 3_000
    meshes = np.array([[1, 1, 8], [2, 2, 4], [4, 4, 4], [1, 4, 16], [8, 4, 8], [2, 1, 1]], dtype=np.float64)
    mesh = meshes[rng.integers(0, len(meshes), n)]
    kv_heads = rng.choice([1.0, 2.0, 8.0, 32.0, 96.0], n)
    latent = rng.random(n) < 0.2
    batch = np.gcd(2 ** rng.integers(0, 10, n), np.prod(mesh, axis=1).astype(np.int64)).astype(np.float64)
    rows, shape_id = distinct_rows(kv_heads, mesh[:, 0], mesh[:, 1], mesh[:, 2], latent)
    shapes = kv_shape_splits(kv_heads[rows], mesh[rows], latent[rows])
    for sharded in (False, True):
        expected = kv_cache_split(kv_heads, batch if sharded else np.zeros(n), mesh, np.full(n, sharded), latent)[0]
        ways = kv_cache_ways(shapes, shape_id, batch if sharded else None)
        assert ways.tobytes() == expected.tobytes()


def test_distinct_rows_one_row() -> None:
    first, inverse = distinct_rows(np.array([7]), np.array([2.0]))
    assert first.tolist() == [0] and inverse.tolist() == [0]


@pytest.mark.parametrize(("chip", "profile"), [("h100-sxm", "h100-sxm-vllm"), ("h100-sxm", None), ("tpu-v4", None)])
def test_collectives_of_distinct_rows_are_every_rows(monkeypatch, chip, profile) -> None:
    """layer_comm_time_s on repeated rows times each distinct row once
    (_layer_comm_time_distinct); every row gets the seconds of the whole call, bit for bit, on a
    switched network and a calibrated one; on a torus the same of torus_layer_comm_s, role by role."""
    import cost_models.deployment as deployment
    import cost_models.distinct as distinct
    from cost_models.calibration import resolve_calibration
    from cost_models.topology import network_for

    n = 40
    d = _drawn_deployments(chip, 8, ("llama-3-8b", "gpt2", "mixtral-8x7b"), n, with_int8=True, chips=(8, 16, 32)).take(
        np.tile(np.arange(n), 25)
    )  # each of 40 deployments 25 times: 1,000 rows
    hardware = d.hardware
    calls: list[tuple] = []
    torus = network_for(hardware).collective_einsums
    name = "torus_layer_comm_s" if torus else "layer_comm_time_s"
    original = getattr(deployment, name)

    def record(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(deployment, name, record)
    deployment.estimate(d, calibration=resolve_calibration(profile or "none", chip))
    monkeypatch.undo()
    monkeypatch.setattr(distinct, "MIN_ROWS", 16)
    monkeypatch.setattr(distinct, "SAMPLE_ROWS", 64)
    assert len(calls) == 2
    for args in calls:
        if torus:
            once_roles = partitioning._torus_layer_comm_distinct(*args)
            assert once_roles is not None  # taken: 40 distinct rows of 1,000
            every_roles = partitioning._torus_layer_comm_s(*args)
            assert set(once_roles) == set(every_roles)
            assert np.any(sum(every_roles.values()) > 0)
            for role, seconds in every_roles.items():
                assert once_roles[role].tobytes() == seconds.tobytes(), role
            continue
        once = partitioning._layer_comm_time_distinct(*args)
        assert once is not None  # taken: 40 distinct rows of 1,000
        every = partitioning._layer_comm_time_s(*args)
        assert np.any(every > 0)
        assert once.tobytes() == every.tobytes()


def _calls_during_estimate(monkeypatch, name: str, d) -> list[tuple]:
    """The arguments of each call ``estimate(d)`` makes to cost_models.deployment's ``name``."""
    import cost_models.deployment as deployment

    calls: list[tuple] = []
    original = getattr(deployment, name)

    def record(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(deployment, name, record)
    deployment.estimate(d)
    monkeypatch.undo()
    return calls


def _drawn_deployments(
    hardware_name: str,
    seed: int,
    models: tuple[str, ...],
    n: int,
    with_int8: bool = False,
    chips: tuple[int, ...] = (8, 16, 64),
):
    """n deployments drawn per row as bench_estimate.py draws them (meshes of ``chips``, every
    layout and attention sharding per phase), over ``models``; bf16 weights, or bf16 and int8."""
    from cost_models import get_hardware
    from cost_models.deployments import make_deployments
    from cost_models.models import get_model
    from cost_models.partitioning import ATTENTION_SHARDINGS, FFN_LAYOUTS
    from cost_models.topology import network_for

    hardware = get_hardware(hardware_name)
    network = network_for(hardware)
    rng = np.random.default_rng(seed)
    meshes = np.array([m for c in chips for m in network.legal_meshes(c)], dtype=np.float64)
    catalog = [get_model(name) for name in models]
    return make_deployments(
        catalog,
        hardware,
        model_index=rng.integers(0, len(catalog), n),
        mesh=meshes[rng.integers(0, len(meshes), n)],
        batch=2 ** rng.integers(0, 6, n),
        prompt_len=np.rint(2.0 ** rng.uniform(7, 12, n)),
        gen_len=np.rint(2.0 ** rng.uniform(4, 9, n)),
        **({"weight_dtype": rng.choice([BF16, INT8], n)} if with_int8 else {}),
        prefill_ffn_layout=rng.integers(0, len(FFN_LAYOUTS), n),
        decode_ffn_layout=rng.integers(0, len(FFN_LAYOUTS), n),
        prefill_attn_sharding=rng.integers(0, len(ATTENTION_SHARDINGS), n),
        decode_attn_sharding=rng.integers(0, len(ATTENTION_SHARDINGS), n),
    )


def test_torus_sub_meshes_found_from_the_whole_mesh_give_every_rows_numbers(monkeypatch) -> None:
    """_torus_layer_comm_s times each layout's rows on its sub-mesh, whose mesh-only terms
    TorusNetwork.meshes_of_rows finds from the whole mesh's distinct meshes: bit for bit the
    numbers of each sub-mesh classified alone (Network.meshes_of_rows), role by role."""
    import cost_models.topology as topology

    # n over distinct.MIN_ROWS, so the whole mesh's classes are found
    d = _drawn_deployments("tpu-v4", 9, ("llama-3-8b", "gpt2", "mixtral-8x7b"), 6_000, with_int8=True)
    calls = _calls_during_estimate(monkeypatch, "torus_layer_comm_s", d)
    assert len(calls) == 2
    for args in calls:
        found = partitioning._torus_layer_comm_s(*args)
        assert args[0]._sub_meshes is None  # forgotten after the call
        with monkeypatch.context() as patch:
            patch.setattr(topology.TorusNetwork, "meshes_of_rows", topology.Network.meshes_of_rows)
            alone = partitioning._torus_layer_comm_s(*args)
        assert set(found) == set(alone)
        assert np.any(sum(alone.values()) > 0)
        for role, seconds in alone.items():
            assert found[role].tobytes() == seconds.tobytes(), role


def test_torus_layouts_sorted_once_give_each_layouts_rows_alone(monkeypatch) -> None:
    """_torus_layer_comm_s sorts the rows by layout once and times each layout's run: each row's
    seconds are those of its layout's rows timed alone (one layout, no sort), role by role, with
    the codes as int8 (the radix sort's bounds by counting) or as floats (by searchsorted)."""
    d = _drawn_deployments("tpu-v4", 15, ("llama-3-8b", "gpt2", "palm-540b"), 6_000)
    network, codes, s, mesh, parallel, sharded = _calls_during_estimate(monkeypatch, "torus_layer_comm_s", d)[0]
    for given in (codes.astype(np.int8), codes.astype(np.float64)):
        found = partitioning._torus_layer_comm_s(network, given, s, mesh, parallel, sharded)
        assert len(np.unique(codes)) > 1
        for code in np.unique(codes):
            rows = np.flatnonzero(codes == code)
            alone = partitioning._torus_layer_comm_s(
                network, codes[rows], partitioning._take(s, rows), mesh[rows], parallel[rows], sharded[rows]
            )
            for role, seconds in alone.items():
                assert found[role][rows].tobytes() == seconds.tobytes(), (code, role)


def test_switched_sub_meshes_remembered_by_identity_give_every_rows_numbers(monkeypatch) -> None:
    """_layer_comm_time_s hands each layout's meshes to SwitchedNetwork.meshes_of_rows, whose
    groups are then found by identity (not compared by value): bit for bit the numbers of the
    plain sub-meshes (Network.meshes_of_rows), and nothing is remembered after the call."""
    import cost_models.topology as topology

    d = _drawn_deployments("h100-sxm", 10, ("llama-3-8b", "gpt2", "palm-540b"), 3_000)
    calls = _calls_during_estimate(monkeypatch, "layer_comm_time_s", d)
    assert len(calls) == 2
    for args in calls:
        found = partitioning._layer_comm_time_s(*args)
        assert args[0]._sub_meshes is None and args[0]._sub_groups is None  # forgotten
        with monkeypatch.context() as patch:
            patch.setattr(topology.SwitchedNetwork, "meshes_of_rows", topology.Network.meshes_of_rows)
            plain = partitioning._layer_comm_time_s(*args)
        assert np.any(plain > 0)
        assert found.tobytes() == plain.tobytes()


def test_switched_sub_meshes_from_the_whole_meshs_distinct_meshes_give_every_rows_numbers(monkeypatch) -> None:
    """Over distinct.MIN_ROWS rows, SwitchedNetwork.meshes_of_rows finds the whole mesh's
    distinct meshes once and each layout's groups are theirs gathered (SwitchedGroups.take):
    bit for bit the groups of each plain sub-mesh (Network.meshes_of_rows), with meshes whose
    groups a node's edge cuts (24 and 48 chips on 8-GPU nodes: topology._straddling)."""
    import cost_models.topology as topology

    d = _drawn_deployments("h100-sxm", 11, ("llama-3-8b", "gpt2", "palm-540b"), 6_000, chips=(8, 16, 24, 48, 64))
    calls = _calls_during_estimate(monkeypatch, "layer_comm_time_s", d)
    assert len(calls) == 2
    for args in calls:
        found = partitioning._layer_comm_time_s(*args)
        network = args[0]
        assert network._distinct is not None and network._distinct[2]  # groups of the distinct meshes
        assert network._sub_meshes is None and network._sub_groups is None  # forgotten
        with monkeypatch.context() as patch:
            patch.setattr(topology.SwitchedNetwork, "meshes_of_rows", topology.Network.meshes_of_rows)
            plain = partitioning._layer_comm_time_s(*args)
        assert np.any(plain > 0)
        assert found.tobytes() == plain.tobytes()


def test_mesh_classes_from_the_plan_shapes_are_the_meshes_own_classes() -> None:
    """deployment.mesh_classes_of_shapes finds topology.mesh_classes' partition of the rows by
    mesh (up to the classes' order) from the plans' distinct shapes; None for a call under
    distinct.MIN_ROWS rows, as mesh_classes gives."""
    from cost_models.deployment import mesh_classes_of_shapes, plan_shape_classes
    from cost_models.topology import mesh_classes

    d = _drawn_deployments("h100-sxm", 12, ("llama-3-8b", "gpt2", "palm-540b"), 6_000, chips=(8, 16, 24, 48, 64))
    configs = d.inference_configs("prefill", d.prompt_len)
    got = mesh_classes_of_shapes(d.mesh, plan_shape_classes(d, configs))
    want = mesh_classes(d.mesh)
    assert got is not None and want is not None
    (first, inverse), (want_first, want_inverse) = got, want
    assert len(first) == len(want_first) > 1
    # Each row's class holds its own mesh, and the two partitions pair one to one.
    assert d.mesh.take(first, axis=0).take(inverse, axis=0).tobytes() == d.mesh.tobytes()
    assert len(np.unique(inverse * len(first) + want_inverse)) == len(first)
    small = d.take(np.arange(100))
    assert mesh_classes_of_shapes(small.mesh, plan_shape_classes(small, configs.take(np.arange(100)))) is None


def test_kv_ways_keyed_by_mesh_ids_are_those_keyed_by_the_mesh() -> None:
    """kv_ways_by_phase(mesh_ids=): the rows' distinct meshes as one key column give each
    phase's ways bit for bit (head- and batch-sharded attention mixed per row)."""
    from cost_models.deployment import kv_ways_by_phase
    from cost_models.topology import mesh_classes

    d = _drawn_deployments("tpu-v4", 13, ("llama-3-8b", "gpt2", "mixtral-8x7b"), 6_000, chips=(8, 16, 64, 128))
    classes = mesh_classes(d.mesh)
    assert classes is not None
    plain, keyed = kv_ways_by_phase(d), kv_ways_by_phase(d, mesh_ids=classes[1])
    assert set(plain) == set(keyed) == {"prefill", "decode"}
    for phase, ways in plain.items():
        assert np.any(ways > 1)
        assert keyed[phase].dtype == ways.dtype and keyed[phase].tobytes() == ways.tobytes(), phase


@pytest.mark.parametrize("hardware_name", ["tpu-v4", "h100-sxm"])
def test_estimate_finds_the_distinct_meshes_from_the_plan_shapes_not_again(monkeypatch, hardware_name) -> None:
    """estimate hands the network the distinct meshes found from the plans' shapes
    (Network.know_mesh_classes): topology.mesh_classes is not run over the rows again."""
    import cost_models.deployment as deployment
    import cost_models.topology as topology

    d = _drawn_deployments(hardware_name, 14, ("llama-3-8b", "gpt2"), 6_000)
    runs = []
    original = topology.mesh_classes

    def counted(mesh):
        runs.append(len(mesh))
        return original(mesh)

    monkeypatch.setattr(topology, "mesh_classes", counted)
    result = deployment.estimate(d)
    assert runs == []
    assert np.all(result.decode.latency_s > 0)


def test_torus_runs_the_authors_weight_stationary_program() -> None:
    """On a torus a weight-stationary block's activation collectives are the authors' TPU program
    (google-research scaling_transformer_inference_efficiency: one_d_parallel_xmap.py and
    benchmarks.py's 1D residual [B, L, E/X]; two_d_parallel_xmap.py), checked against the
    seconds worked by hand: v4 links 45 GB/s, two per axis on a 4x8x8 torus (90 GB/s a ring,
    180 GB/s over two axes). N = 512 tokens, E = 18432, bf16: N E = 18,874,368 bytes.
    1D: all-gather over x (4) inside W_in, reduce-scatter over x inside W_out, each
    N E x 3/4 / 90e9 = 157.3 us; the x-shard N E / 4 all-reduced over yz (64), unfused:
    2 x N E / 4 x 63/64 / 180e9 = 51.6 us. (Section 3.2.1's all-gather over all 256 chips at all
    six links would be N E x 255/256 / 270e9 = 69.6 us each.) 2D: the F-axes (yz) all-gather and
    reduce-scatter of N E / 4 unfused, each N E / 4 x 63/64 / 180e9 = 25.8 us."""
    from cost_models import get_hardware
    from cost_models.topology import network_for

    network = network_for(get_hardware("tpu-v4"))
    assert network.collective_einsums
    one = lambda v: np.array([float(v)])  # noqa: E731
    e, f = 18432, 73728
    s = Shapes(
        tokens=one(512),
        d_model=one(e),
        ffn_in=one(2 * f),
        ffn_mid=one(f),
        attn_in=one(0),
        attn_mid=one(0),
        layer_weights=one(3 * e * f),
        act_bytes=one(2),
        weight_bytes=one(2),
    )
    mesh = np.array([[4.0, 8.0, 8.0]])
    parallel, head = np.array([True]), np.array([False])
    ne = 512 * e * 2
    calls = partitioning.torus_layer_collectives("ws_1d", s, mesh, parallel, head)
    moving = [(c.kind, c.axes, c.role, float(c.bytes_per_chip[0])) for c in calls if c.bytes_per_chip[0] > 0]
    assert moving == [
        ("all_gather", "x", "w_in", ne),
        ("reduce_scatter", "x", "w_out", ne),
        ("all_reduce", "yz", "unfused", ne / 4),
    ]
    code = {name: i for i, name in enumerate(partitioning.FFN_LAYOUTS)}
    seconds = partitioning.torus_layer_comm_s(network, np.array([code["ws_1d"]]), s, mesh, parallel, head)
    ring_s, all_reduce_s = ne * 0.75 / 90e9, 2 * ne / 4 * 63 / 64 / 180e9
    # Plus the catalog's 1 us hop latency per ring step: 2 on x's bidirectional ring of 4, 4 + 4
    # over yz (twice for the all-reduce).
    assert seconds["w_in"][0] == pytest.approx(ring_s + 2e-6, rel=1e-9)
    assert seconds["w_out"][0] == pytest.approx(ring_s + 2e-6, rel=1e-9)
    assert seconds["unfused"][0] == pytest.approx(all_reduce_s + 2 * 8e-6, rel=1e-9)
    assert seconds["hidden"][0] == 0.0
    two_d = partitioning.torus_layer_comm_s(network, np.array([code["ws_2d"]]), s, mesh, parallel, head)
    f_axes_s = ne / 4 * 63 / 64 / 180e9 + 8e-6
    assert two_d["unfused"][0] == pytest.approx(2 * f_axes_s, rel=1e-9)
    assert two_d["w_in"][0] > 0 and two_d["w_out"][0] > 0  # x's rings of N F / 64
    # A switched network keeps the whole block's collectives behind its work.
    assert not network_for(get_hardware("h100-sxm")).collective_einsums
