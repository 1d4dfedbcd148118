"""Partitioning layouts of Pope et al., "Efficiently Scaling Transformer Inference" (2022), section 3.

A layout says how each weight and activation is split over the mesh X x Y x Z of n chips, which
gives every chip its share of the FLOPs and bytes and a list of collectives per layer.

FFN layouts (section 3.2; E = d_model, F = d_ff, N = tokens in the pass = batch x tokens/sequence):
- ``ws_1d``: weights split along F over all chips; activations all-gathered before W_in and
  reduce-scattered after W_out: 2 N E per layer, whatever the chip count (eq. for T_comm, 3.2.1).
  On a TPU torus the authors' code runs it over x, plus an all-reduce of N E / X over yz
  (:func:`torus_layer_collectives`).
- ``ws_2d``: weights split E over X and F over YZ; all-gather over YZ of N E/X, reduce-scatter
  over X of N F/YZ, all-gather over X of N F/YZ, reduce-scatter over YZ of N E/X (3.2.2).
- ``wg_x``, ``wg_xy``, ``wg_xyz``: weights stored split over all chips and all-gathered over the
  named axes before use (E F N_G / n per chip and matrix), activations split by batch over those
  axes and 1D weight-stationary over the remaining ones (3.2.3).

Attention (section 3.3): ``head`` splits heads over chips, a KV head shared by a query group is
replicated on chips beyond the KV heads (multiquery: on every chip); ``batch`` splits sequences
(and the KV cache) over chips at the price of all-to-alls of Q/K/V before and of the output after.

A parallel block (section 3.4) fuses the attention projections into W_in and W_out: one set of
collectives per layer. A serial block adds the attention's own set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from itertools import combinations
from typing import Literal, TypeVar, get_args, overload

import numpy as np

from cost_models.distinct import MIN_ROWS, repeated_rows, word_classes
from cost_models.dtypes import BF16, BYTES_PER_ELEMENT, FP4, MXFP4_SCALE_BYTES_PER_ELEMENT, lookup
from cost_models.inference_configs import InferenceConfigs
from cost_models.model_counts import mla_attention_weights
from cost_models.operators import OP, OPERATOR_NAMES, OperatorCosts
from cost_models.topology import Collective, Network, group_size

FfnLayout = Literal["ws_1d", "ws_2d", "wg_x", "wg_xy", "wg_xyz"]
AttentionSharding = Literal["head", "batch"]
FFN_LAYOUTS: tuple[str, ...] = get_args(FfnLayout)
ATTENTION_SHARDINGS: tuple[str, ...] = get_args(AttentionSharding)
AXES: tuple[str, ...] = ("x", "y", "z")
ATTENTION_OPS = ("qk_matmul", "softmax", "sv_matmul", "fused_attention")


@dataclass(frozen=True)
class ShardingRules:
    """One FFN layout's partitioning rules: logical tensor axis -> the mesh axes that split it,
    as Pope et al.'s own code writes them. Weights are *stored* split by these rules and, in the
    weight-gathered layouts, all-gathered over ``gather`` before use (so *in use* they are split
    over the rules' axes minus ``gather``).

    Logical axes: ``embed`` (E, d_model of the weights), ``mlp`` (F, d_ff), ``heads`` (H, query
    heads), ``kv_heads`` (K), ``vocab`` (V); residual-stream activations [B, L, E] are split by
    batch over ``act_batch`` and by E over ``act_embed``.
    """

    embed: tuple[str, ...]
    mlp: tuple[str, ...]
    heads: tuple[str, ...]
    kv_heads: tuple[str, ...]
    vocab: tuple[str, ...]
    act_batch: tuple[str, ...]
    act_embed: tuple[str, ...]
    gather: tuple[str, ...] = ()

    def in_use(self, axes: tuple[str, ...]) -> tuple[str, ...]:
        """The axes still splitting a weight dimension after the all-gather over ``gather``."""
        return tuple(a for a in axes if a not in self.gather)


_XYZ, _YZ = AXES, ("y", "z")
#: The one sharding table per layout (Pope et al. 2022, section 3.2 and Figure 2). Used by the
#: per-chip costs, the collectives and every export format.
SHARDING_RULES: dict[str, ShardingRules] = {
    # 1D weight-stationary: weights split along F (and heads, vocab) over every chip.
    "ws_1d": ShardingRules(embed=(), mlp=_XYZ, heads=_XYZ, kv_heads=_XYZ, vocab=_XYZ, act_batch=(), act_embed=_XYZ),
    # 2D weight-stationary: E over x, F over yz.
    "ws_2d": ShardingRules(embed=("x",), mlp=_YZ, heads=_YZ, kv_heads=_YZ, vocab=_YZ, act_batch=(), act_embed=_XYZ),
    # Weight-gathered: stored as in 2D, gathered over x, xy or xyz before use; the batch is split
    # over the gathered axes and the rest is 1D weight-stationary.
    "wg_x": ShardingRules(
        embed=("x",), mlp=_YZ, heads=_YZ, kv_heads=_YZ, vocab=_YZ, act_batch=("x",), act_embed=_YZ, gather=("x",)
    ),
    "wg_xy": ShardingRules(
        embed=("x",),
        mlp=_YZ,
        heads=_YZ,
        kv_heads=_YZ,
        vocab=_YZ,
        act_batch=("x", "y"),
        act_embed=("z",),
        gather=("x", "y"),
    ),
    "wg_xyz": ShardingRules(
        embed=("x",), mlp=_YZ, heads=_YZ, kv_heads=_YZ, vocab=_YZ, act_batch=_XYZ, act_embed=(), gather=_XYZ
    ),
}


def _subsets(axes: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Subsets of ``axes``, more axes first, then in the order given (the tie-break of
    :func:`split_over`)."""
    return [c for k in range(len(axes), -1, -1) for c in combinations(axes, k)]


def subset_products(mesh: np.ndarray) -> dict[frozenset[str], np.ndarray]:
    """Chips of every subset of the mesh axes, (n,) each: computed once per mesh array and shared
    by every :func:`split_over` on it."""
    mesh = np.atleast_2d(mesh)
    x, y, z = mesh[:, 0], mesh[:, 1], mesh[:, 2]
    xy, yz = x * y, y * z
    return {
        frozenset(): np.ones(mesh.shape[0]),
        frozenset("x"): x,
        frozenset("y"): y,
        frozenset("z"): z,
        frozenset("xy"): xy,
        frozenset("yz"): yz,
        frozenset("xz"): x * z,
        frozenset("xyz"): xy * z,
    }


def split_over(
    size: np.ndarray,
    mesh: np.ndarray,
    axes: tuple[str, ...],
    products: dict[frozenset[str], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """How a dimension of ``size`` splits over the mesh axes its rule names, into even shards.

    Over a subset of ``axes`` with P chips in all, a dimension splits P ways when P divides it,
    or ``size`` ways when ``size`` divides P (each shard then held by P / size chips: how serving
    engines place 8 KV heads on 16 tensor-parallel GPUs); otherwise not at all over that subset.
    The subset giving the most shards wins (ties: the fewest chips, so the least replication and
    the most axes left for other dimensions; then more axes, then earlier ones); the other axes
    replicate the dimension. Uneven shards are never assumed: no runtime lays them out (JAX's
    NamedSharding needs even shards), so cost and export agree on what a chip holds.

    Vectorized: ``size`` (n,), ``mesh`` (n, 3). Returns the ways (n,) and the index of the chosen
    subset in ``_subsets(axes)`` (n,), so that exports name the axes the costs used. ``products``:
    :func:`subset_products` of ``mesh``, when the caller has them."""
    mesh = np.atleast_2d(mesh)
    size = np.broadcast_to(np.asarray(size, dtype=np.float64), (mesh.shape[0],))
    ways = np.zeros(mesh.shape[0])
    chips = np.full(mesh.shape[0], np.inf)
    chosen = np.zeros(mesh.shape[0], dtype=np.int64)
    products = products if products is not None else subset_products(mesh)
    whole = size.astype(np.int64)  # integer remainders: several times faster than float np.mod
    for index, subset in enumerate(_subsets(axes)):
        product = products[frozenset(subset)]
        whole_product = product.astype(np.int64)
        candidate = np.where(whole % whole_product == 0, product, np.where(whole_product % whole == 0, size, 0.0))
        better = (candidate > ways) | ((candidate == ways) & (product < chips))
        ways = np.where(better, candidate, ways)
        chips = np.where(better, product, chips)
        chosen = np.where(better, index, chosen)
    return ways, chosen


def split_axes(size: int, mesh: tuple[int, int, int], axes: tuple[str, ...]) -> tuple[str, ...]:
    """The axes :func:`split_over` splits one dimension over, for one deployment (exports)."""
    _, chosen = split_over(np.array([float(size)]), np.array([mesh], dtype=np.float64), axes)
    return _subsets(axes)[int(chosen[0])]


def kv_cache_split(
    kv_heads: np.ndarray,
    batch: np.ndarray,
    mesh: np.ndarray,
    batch_sharded: np.ndarray,
    latent: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How the KV cache [layers, B, S, K, D] is split (Pope et al. 3.3): by KV heads over every
    axis (replicated beyond their count), or, sharded by batch, sequences over some axes and KV
    heads over the axes left, choosing the pair of axis sets that gives the most shards (the
    empty batch set is one choice, so batch sharding never holds more per chip than head
    sharding). Returns (ways, batch subset index, head subset index), indexing
    ``_subsets(AXES)`` and ``_subsets(axes left)``.

    ``latent`` (bool per configuration): multi-head latent attention, whose cache is one latent
    per token shared by every head, split like a single KV head: whole on every chip that splits
    heads (vLLM and SGLang replicate it on each tensor-parallel rank; that is why DeepSeek is
    served with attention data parallelism), split only by sequences."""
    mesh = np.atleast_2d(mesh)
    n = mesh.shape[0]
    kv_heads = np.broadcast_to(np.asarray(kv_heads, dtype=np.float64), (n,))
    if latent is not None:
        kv_heads = np.where(latent, 1.0, kv_heads)
    batch = np.broadcast_to(np.asarray(batch, dtype=np.float64), (n,))
    subsets = _subsets(AXES)
    none = len(subsets) - 1  # the empty set: heads only
    products = subset_products(mesh)
    ways, batch_choice = split_over(kv_heads, mesh, AXES, products)
    head_choice = batch_choice.copy()
    batch_choice = np.full(n, none, dtype=np.int64)
    if not np.any(batch_sharded):
        return ways, batch_choice, head_choice
    for index, batch_axes in enumerate(subsets[:-1]):
        product = products[frozenset(batch_axes)]
        batch_ways = np.where(np.mod(batch, product) == 0, product, 0.0)  # sequences are not replicated
        left = tuple(a for a in AXES if a not in batch_axes)
        head_ways, heads_over = split_over(kv_heads, mesh, left, products)
        better = batch_sharded & (batch_ways * head_ways > ways)
        ways = np.where(better, batch_ways * head_ways, ways)
        batch_choice = np.where(better, index, batch_choice)
        head_choice = np.where(better, heads_over, head_choice)
    return ways, batch_choice, head_choice


@dataclass(frozen=True)
class KvShapeSplits:
    """The terms of :func:`kv_cache_split`'s ways that read the KV heads, the mesh and the
    latent flag alone (not the batch), of some distinct such shapes: the head-sharded ways, and
    for each batch subset (``_subsets(AXES)[:-1]``) its chips and the KV heads' ways over the
    axes it leaves. :func:`kv_cache_ways` finishes the ways of configurations from them."""

    ways: np.ndarray
    products: tuple[np.ndarray, ...]
    head_ways: tuple[np.ndarray, ...]


def kv_shape_splits(kv_heads: np.ndarray, mesh: np.ndarray, latent: np.ndarray) -> KvShapeSplits:
    """:class:`KvShapeSplits` of each row: kv_cache_split's expressions, in its order."""
    mesh = np.atleast_2d(mesh)
    kv_heads = np.where(latent, 1.0, np.broadcast_to(np.asarray(kv_heads, dtype=np.float64), (mesh.shape[0],)))
    products = subset_products(mesh)
    ways, _ = split_over(kv_heads, mesh, AXES, products)
    batch_subsets = _subsets(AXES)[:-1]
    return KvShapeSplits(
        ways,
        tuple(products[frozenset(batch_axes)] for batch_axes in batch_subsets),
        tuple(
            split_over(kv_heads, mesh, tuple(a for a in AXES if a not in batch_axes), products)[0]
            for batch_axes in batch_subsets
        ),
    )


def kv_cache_ways(shapes: KvShapeSplits, index: np.ndarray, batch: np.ndarray | None) -> np.ndarray:
    """``kv_cache_split(...)[0]`` of configurations whose shape is row ``index`` of ``shapes``:
    head-sharded where ``batch`` is None, else every configuration batch-sharded with that
    batch (the same operations on the same numbers: kv_cache_split is elementwise, and its terms
    but the batch's are the shape's)."""
    ways = shapes.ways.take(index)
    if batch is None:
        return ways
    for chips, heads in zip(shapes.products, shapes.head_ways, strict=True):
        product, head_ways = chips.take(index), heads.take(index)
        batch_ways = np.where(np.mod(batch, product) == 0, product, 0.0)  # sequences are not replicated
        better = batch_ways * head_ways > ways  # (batch_sharded True & x is x)
        ways = np.where(better, batch_ways * head_ways, ways)
    return ways


def kv_cache_axes(
    kv_heads: int, batch: int, mesh: tuple[int, int, int], batch_sharded: bool
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The mesh axes splitting the KV cache's batch and KV-head dimensions, for one deployment."""
    _, b, h = kv_cache_split(
        np.array([float(kv_heads)]),
        np.array([float(batch)]),
        np.array([mesh], dtype=np.float64),
        np.array([batch_sharded]),
    )
    batch_axes = _subsets(AXES)[int(b[0])]
    left = tuple(a for a in AXES if a not in batch_axes)
    return batch_axes, _subsets(left)[int(h[0])]


@dataclass(frozen=True)
class WeightShapes:
    """Per-configuration dimension sizes of the weights, in elements."""

    d_model: np.ndarray  # E
    heads: np.ndarray  # H
    kv_heads: np.ndarray  # K
    d_head: np.ndarray  # D
    d_ff: np.ndarray  # F
    vocab: np.ndarray  # V

    @classmethod
    def of(cls, c: InferenceConfigs) -> WeightShapes:
        return cls(c.d_model, c.heads, c.kv_heads, c.d_head, c.d_ff, c.vocab)


#: Each weight matrix's logical axes (its other dimension, D, is never split). The FFN's gate
#: matrix (swiglu only) is laid out like up.
WEIGHT_AXES: dict[str, tuple[str, ...]] = {
    "wq": ("embed", "heads"),
    "wk": ("embed", "kv_heads"),
    "wv": ("embed", "kv_heads"),
    "wo": ("heads", "embed"),
    "w_gate": ("embed", "mlp"),
    "w_up": ("embed", "mlp"),
    "w_down": ("mlp", "embed"),
    # An MoE block's experts (routed and shared, as one grouped matrix each), split like the dense
    # FFN: each expert's d_ff over the rules' mlp axes (expert tensor parallelism).
    "w_expert_gate": ("embed", "mlp"),
    "w_expert_up": ("embed", "mlp"),
    "w_expert_down": ("mlp", "embed"),
    "embedding": ("vocab", "embed"),
    "lm_head": ("embed", "vocab"),
}
#: The operator slot each weight matrix feeds (cost_models.operators).
WEIGHT_OPERATOR = {
    "wq": "q_proj",
    "wk": "k_proj",
    "wv": "v_proj",
    "wo": "out_proj",
    "w_gate": "gate_proj",
    "w_up": "up_proj",
    "w_down": "down_proj",
    "w_expert_gate": "expert_gate",
    "w_expert_up": "expert_up",
    "w_expert_down": "expert_down",
    "lm_head": "lm_head",
}
_DENSE_FFN_WEIGHTS = ("w_gate", "w_up", "w_down")
_EXPERT_WEIGHTS = ("w_expert_gate", "w_expert_up", "w_expert_down")
#: The embedding and the lm_head are split like the rest but never gathered (looked up, or used
#: once per step on few tokens).
_NEVER_GATHERED = ("embedding", "lm_head")


def _dimension_size(s: WeightShapes, logical: str) -> np.ndarray:
    return {"embed": s.d_model, "heads": s.heads, "kv_heads": s.kv_heads, "mlp": s.d_ff, "vocab": s.vocab}[logical]


@dataclass(frozen=True)
class CollectiveCall:
    """One collective of a layer: kind, mesh axes, and D, the bytes per chip (Pope et al. app. A:
    the all-gather's per-chip output, the reduce-scatter's per-chip input)."""

    kind: Collective
    axes: str
    bytes_per_chip: np.ndarray
    moves: str  # what it carries, for reports
    #: how a program that runs collective einsums hides it (:func:`torus_layer_collectives`):
    #: "hidden" (behind the block's work), "w_in" / "w_out" (a ring looped inside that matmul,
    #: hidden behind it alone), "unfused" (on the block's critical path)
    role: str = "hidden"


@dataclass(frozen=True)
class Shapes:
    """Per-configuration sizes in elements that the collectives need."""

    tokens: np.ndarray  # N
    d_model: np.ndarray  # E
    ffn_in: np.ndarray  # width of W_in's output (2F for gated FFNs: gate and up)
    ffn_mid: np.ndarray  # F
    attn_in: np.ndarray  # q, k, v widths
    attn_mid: np.ndarray  # attention output width
    layer_weights: np.ndarray  # weight elements of one block
    #: bytes per activation element a collective moves: the wider of the activation format and
    #: 16 bits (:func:`collective_act_bytes`)
    act_bytes: np.ndarray
    weight_bytes: np.ndarray

    @classmethod
    def of(cls, c: InferenceConfigs, tokens_per_sequence: np.ndarray) -> Shapes:
        dq, dkv = c.heads * c.d_head, c.kv_heads * c.d_head
        gated = np.where(c.gated_ffn, 2.0, 1.0)
        # An MoE model's blocks differ: the FFN's hidden width (per token: k experts and the
        # shared ones) and its weights (every expert) are averaged over the blocks, as the
        # collectives of a layer are scored once and repeated ``layers`` times.
        moe = c.moe_layers > 0
        if moe.any():
            moe_share = c.moe_layers / c.layers
            mid = np.where(
                moe, c.d_ff + moe_share * (c.experts_per_token * c.expert_d_ff + c.shared_d_ff - c.d_ff), c.d_ff
            )
            stored_mid = np.where(
                moe, c.d_ff + moe_share * (c.experts * c.expert_d_ff + c.shared_d_ff - c.d_ff), c.d_ff
            )
        else:  # every model dense: np.where's numbers are d_ff's (a copy, as np.where makes)
            mid = c.d_ff.copy()
            stored_mid = mid
        return cls(
            tokens=c.batch * tokens_per_sequence,
            d_model=c.d_model,
            ffn_in=gated * mid,
            ffn_mid=mid,
            attn_in=dq + 2 * dkv,
            attn_mid=dq,
            layer_weights=c.d_model * (2 * dq + 2 * dkv) + (gated + 1.0) * c.d_model * stored_mid,
            act_bytes=collective_act_bytes(c.act_dtype),
            weight_bytes=lookup(BYTES_PER_ELEMENT, c.weight_dtype),
        )


def collective_act_bytes(act_dtype: np.ndarray) -> np.ndarray:
    """Bytes per element of the activations a block's collectives move: at least 16 bits. What
    they move is a matmul's output (partial sums reduced, outputs gathered) or the block's bf16
    input, and a matmul with 8- or 4-bit activation inputs still writes 16-bit outputs from its
    wider accumulators: vLLM's and SGLang's RowParallelLinear all-reduce the bf16 output of their
    fp8 W8A8 GEMMs, and TensorRT-LLM's fused all-reduce quantizes to fp8 after the reduction. So
    --act-bits fp8 does not halve the tensor-parallel communication (it did: llama-3-70b on 8
    H100s, prefill comm 236 -> 122 ms). 32-bit activations move 4 bytes."""
    return np.maximum(lookup(BYTES_PER_ELEMENT, act_dtype), 2.0)


def ffn_collectives(
    layout: str,
    s: Shapes,
    mesh: np.ndarray,
    mid_in: np.ndarray,
    mid_out: np.ndarray,
    weights: np.ndarray,
    memo: dict[str, np.ndarray] | None = None,
    all_reduce: bool = False,
) -> list[CollectiveCall]:
    """Collectives of one matmul pair (W_in, W_out) in ``layout``: hidden widths ``mid_in`` (W_in's
    output) and ``mid_out`` (W_out's input), ``weights`` elements stored split over all chips.

    From the layout's rules (Pope et al. 3.2): weights gathered over ``gather`` (D = their
    per-chip share after the gather); then, for the N' = N / |act_batch| tokens each chip group
    holds, with E split over the in-use embed axes (e) and F over the in-use mlp axes (f):
    all-gather over f of N' E/e [B, L, E_e] -> W_in -> reduce-scatter over e of N' mid_in/f ->
    all-gather over e of N' mid_out/f -> W_out -> reduce-scatter over f of N' E/e. Collectives over
    no axis (ws_1d has no e) are left out. Sharding notation at each step is Pope et al.'s.

    ``memo``: arrays that depend only on ``layout``, ``s`` and ``mesh`` (group sizes, the tokens
    per chip group, the N' E/e bytes of the first and last step), shared by the calls of one
    layer (:func:`layer_collectives`): computed once, and the same array object wherever the
    same bytes move, which lets :func:`layer_comm_time_s` time such a collective once.

    ``all_reduce``: as the GPU engines run it (Megatron TP in vLLM, SGLang, TensorRT-LLM: the
    residual [B, L, E] replicated over the group, W_in column-parallel, W_out row-parallel), a
    layout with no in-use embed axis (1D, and the weight-gathered layouts' groups over their other
    axes) all-reduces W_out's partial sums over f once, N' E bytes (vLLM RowParallelLinear,
    TensorRT-LLM's AllReduce after the attention output and MLP down projections), in place of
    the all-gather before W_in and the reduce-scatter after W_out (the same bytes over the same
    links, but one collective, timed as the engine's all-reduce: its custom one-shot kernel for
    small messages where the profile measured one, not two NCCL calls)."""
    memo = {} if memo is None else memo

    def size(axes: str) -> np.ndarray:
        key = "size:" + axes
        if key not in memo:
            memo[key] = group_size(mesh, axes)
        return memo[key]

    rules = SHARDING_RULES[layout]
    n = size("xyz")  # np.prod(mesh, axis=-1) (whole numbers: exact), 4x faster
    ab, wb = s.act_bytes, s.weight_bytes
    calls = []
    gather = "".join(rules.gather)
    if gather:
        # W[E_x, F_yz] -> all-gather over the gathered axes -> W[E, F_rest]
        calls.append(CollectiveCall("all_gather", gather, weights * size(gather) / n * wb, "weights"))
    e = "".join(rules.in_use(rules.embed))
    f = "".join(rules.in_use(rules.mlp))
    if "tokens" not in memo:
        memo["tokens"] = s.tokens / size("".join(rules.act_batch))
    tokens = memo["tokens"]
    e_ways, f_ways = size(e), size(f)
    if f and "edge_bytes" not in memo:  # x[B, L, E_e] in and out: N' E/e elements, bytes
        memo["edge_bytes"] = tokens * s.d_model / e_ways * ab
    steps: list[tuple[Collective, str, np.ndarray | None]] = [
        ("all_gather", f, None),  # x[B, L, E_e] over f -> W_in
        ("reduce_scatter", e, tokens * mid_in / f_ways),  # partial sums over E_e
        ("all_gather", e, tokens * mid_out / f_ways),  # -> W_out
        ("reduce_scatter", f, None),  # partial sums over F_f
    ]
    if all_reduce and not e:
        steps = [("all_reduce", f, None)]  # x[B, L, E] replicated -> W_in -> W_out -> sum over F_f
    calls += [
        CollectiveCall(kind, axes, memo["edge_bytes"] if elements is None else elements * ab, "activations")
        for kind, axes, elements in steps
        if axes
    ]
    return calls


def layer_collectives(
    layout: str,
    s: Shapes,
    mesh: np.ndarray,
    parallel_block: np.ndarray,
    batch_sharded_attention: np.ndarray,
    all_reduce: bool = False,
) -> list[CollectiveCall]:
    """Every collective of one transformer block. Entries a configuration does not have (the
    serial block's attention set, the batch-sharded all-to-alls) carry zero bytes for it.
    ``all_reduce``: the GPU engines' all-reduce per weight set (:func:`ffn_collectives`)."""
    attention_weights = s.d_model * (s.attn_in + s.attn_mid)
    # A parallel block fuses the attention projections into W_in / W_out: one set of collectives
    # with wider hidden activations. A serial block runs a second set for the attention alone.
    # (Where every configuration's block is serial, the fused terms are x + 0 y and x * 1: left
    # out, the same numbers.)
    any_parallel = bool(np.any(parallel_block))
    memo: dict[str, np.ndarray] = {}  # shared by the FFN's and the attention's sets (ffn_collectives)
    if any_parallel:
        fused = _ones_where(parallel_block)
        calls = ffn_collectives(
            layout,
            s,
            mesh,
            s.ffn_in + fused * s.attn_in,
            s.ffn_mid + fused * s.attn_mid,
            s.layer_weights - (1.0 - fused) * attention_weights,
            memo,
            all_reduce,
        )
    else:
        calls = ffn_collectives(
            layout, s, mesh, s.ffn_in, s.ffn_mid, s.layer_weights - attention_weights, memo, all_reduce
        )
    attention_calls = ffn_collectives(layout, s, mesh, s.attn_in, s.attn_mid, attention_weights, memo, all_reduce)
    if any_parallel:
        serial = 1.0 - fused
        scaled: dict[int, np.ndarray] = {}  # one product per bytes array (the same array stays shared)
        for c in attention_calls:
            if id(c.bytes_per_chip) not in scaled:
                scaled[id(c.bytes_per_chip)] = c.bytes_per_chip * serial
        attention_calls = [
            CollectiveCall(c.kind, c.axes, scaled[id(c.bytes_per_chip)], c.moves) for c in attention_calls
        ]
    calls += attention_calls
    n = memo["size:xyz"]
    if not np.any(batch_sharded_attention):  # head-sharded attention: the all-to-alls move nothing
        nothing = np.zeros(len(n))
        return calls + [
            CollectiveCall("all_to_all", "xyz", nothing, "qkv"),
            CollectiveCall("all_to_all", "xyz", nothing, "attention output"),
        ]
    sharded = _ones_where(batch_sharded_attention)
    calls += [
        CollectiveCall("all_to_all", "xyz", sharded * s.tokens * s.attn_in / n * s.act_bytes, "qkv"),
        CollectiveCall("all_to_all", "xyz", sharded * s.tokens * s.attn_mid / n * s.act_bytes, "attention output"),
    ]
    return calls


#: How Pope et al.'s TPU program runs each collective of a weight-stationary block (the authors'
#: code, google-research scaling_transformer_inference_efficiency; section 3.5: "looped
#: CollectiveEinsum"). A collective over the E axes is a ring looped inside its matmul (a
#: collective einsum), hidden behind that matmul alone: 2D's reduce-scatter over x with W_in
#: (q_wi, ``matmul_reducescatter``) and all-gather over x with W_out (o_wo,
#: ``matmul_allgather``); layers_parallel.py / two_d_parallel_xmap.py. The residual's all-gather
#: over the F axes before W_in (``allgather_layernorm``: ``lax.all_gather`` over y, then z) and
#: its reduce-scatter after W_out (``lax.psum_scatter`` over y, then z) are plain collectives
#: that the next matmul waits for: on the critical path. 1D (one_d_parallel_xmap.py, and
#: usage/benchmarks.py run_weight_stationary_layer: the residual [B, L, E/X]) all-gathers the
#: residual over x inside W_in and reduce-scatters over x inside W_out (collective einsums),
#: then all-reduces the x-shard over y and z (``lax.psum``, unfused): not Section 3.2.1's
#: all-gather and reduce-scatter over all n chips at every link's bandwidth.
W_IN_SLOTS = [OP[name] for name in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "expert_gate", "expert_up")]
W_OUT_SLOTS = [OP[name] for name in ("out_proj", "down_proj", "expert_down")]
_COLLECTIVE_ROLES = ("hidden", "w_in", "w_out", "unfused")


def torus_layer_collectives(
    layout: str, s: Shapes, mesh: np.ndarray, parallel_block: np.ndarray, batch_sharded_attention: np.ndarray
) -> list[CollectiveCall]:
    """:func:`layer_collectives` as Pope et al.'s TPU program runs them, each with its role
    (see ``W_IN_SLOTS``): weight-stationary layouts' activation collectives as the authors' code
    issues them; the weight-gathered layouts' and the attention's all-to-alls hidden behind the
    block as before (no measurement separates them: Table 2's one weight-gathered prefill)."""
    calls = layer_collectives(layout, s, mesh, parallel_block, batch_sharded_attention)
    if layout not in ("ws_1d", "ws_2d"):
        return calls
    rules = SHARDING_RULES[layout]
    f, e = "".join(rules.in_use(rules.mlp)), "".join(rules.in_use(rules.embed))
    out = []
    x_ways: np.ndarray | None = None
    x_shards: dict[int, np.ndarray] = {}
    for c in calls:
        if c.moves != "activations":
            out.append(c)
        elif layout == "ws_1d":
            # N E per chip gathered (and N E reduced) over x's ring; the x-shard, N E / X, all-reduced over yz.
            if c.kind == "all_gather":
                out.append(replace(c, axes="x", role="w_in"))
            else:
                out.append(replace(c, axes="x", role="w_out"))
                # One x-shard array per bytes array (the same array object for the same bytes,
                # which lets _torus_layer_comm_s time its all-reduce once).
                if id(c.bytes_per_chip) not in x_shards:
                    if x_ways is None:
                        x_ways = group_size(mesh, "x")
                    x_shards[id(c.bytes_per_chip)] = c.bytes_per_chip / x_ways
                out.append(CollectiveCall("all_reduce", "yz", x_shards[id(c.bytes_per_chip)], c.moves, "unfused"))
        elif c.axes == f:
            out.append(replace(c, role="unfused"))
        elif c.axes == e:
            out.append(replace(c, role="w_in" if c.kind == "reduce_scatter" else "w_out"))
        else:
            out.append(c)
    return out


def torus_layer_comm_s(
    network: Network,
    layout_codes: np.ndarray,
    s: Shapes,
    mesh: np.ndarray,
    parallel_block: np.ndarray,
    batch_sharded_attention: np.ndarray,
) -> dict[str, np.ndarray]:
    """Seconds of one block's collectives per role of :func:`torus_layer_collectives`, (n,) each;
    where whole rows repeat, each distinct row timed once (as :func:`layer_comm_time_s`)."""
    once = _torus_layer_comm_distinct(network, layout_codes, s, mesh, parallel_block, batch_sharded_attention)
    if once is not None:
        return once
    return _torus_layer_comm_s(network, layout_codes, s, mesh, parallel_block, batch_sharded_attention)


def _torus_layer_comm_distinct(
    network: Network,
    layout_codes: np.ndarray,
    s: Shapes,
    mesh: np.ndarray,
    parallel_block: np.ndarray,
    batch_sharded_attention: np.ndarray,
) -> dict[str, np.ndarray] | None:
    """:func:`torus_layer_comm_s` of the distinct rows, gathered; None where rows do not repeat enough."""
    once = _on_distinct_rows(
        _torus_layer_comm_s, network, layout_codes, s, mesh, parallel_block, batch_sharded_attention
    )
    if once is None:
        return None
    seconds, inverse = once
    return {role: t.take(inverse) for role, t in seconds.items()}


def _torus_layer_comm_s(
    network: Network,
    layout_codes: np.ndarray,
    s: Shapes,
    mesh: np.ndarray,
    parallel_block: np.ndarray,
    batch_sharded_attention: np.ndarray,
) -> dict[str, np.ndarray]:
    """:func:`torus_layer_comm_s` over every row."""
    codes = np.asarray(layout_codes)
    mesh = np.atleast_2d(mesh)
    parallel, sharded = np.asarray(parallel_block), np.asarray(batch_sharded_attention)
    seconds = {role: np.zeros(len(codes)) for role in _COLLECTIVE_ROLES}
    used = _used_codes(codes)
    positions: list[np.ndarray] = []
    by_layout: list[tuple[Shapes, np.ndarray, np.ndarray]] = []
    if len(used) > 1:
        # Each layout's rows: one stable sort by layout (of int8 codes a radix sort), whose runs
        # are each layout's positions in order (np.flatnonzero(codes == code)'s), and the shapes
        # and flags gathered once by it, each layout's then a view of its run. Gathered layout
        # by layout, each field's array was read five times over (a layout's rows are spread
        # over it) and left the cache between layouts: the torus draw's Shapes gathers 6.4 ms
        # an estimate in place, against 3.1 ms by one sort on the switched path (AMD EPYC VM,
        # docs/benchmarks.md, round 16).
        small = codes.dtype.kind in "iu" and 0 <= codes.min() and codes.max() <= np.iinfo(np.int8).max
        order = np.argsort(codes.astype(np.int8) if small else codes, kind="stable")
        if small:
            edges = np.concatenate(([0], np.cumsum(np.bincount(codes.ravel()).take(used))))
        else:
            edges = np.append(np.searchsorted(codes.take(order), used), len(codes))
        sorted_s = _take(s, order)
        sorted_parallel, sorted_sharded = parallel.take(order), sharded.take(order)
        for k in range(len(used)):
            run = slice(int(edges[k]), int(edges[k + 1]))
            positions.append(order[run])
            by_layout.append((_take(sorted_s, run), sorted_parallel[run], sorted_sharded[run]))
    # Each layout's meshes (the network may find the sub-meshes' distinct meshes once, from the
    # whole mesh's: TorusNetwork.meshes_of_rows).
    sub_meshes = network.meshes_of_rows(mesh, positions)
    try:
        for k, code in enumerate(used):
            if positions:
                shapes, block, attention = by_layout[k]
                rows = (positions[k], sub_meshes[k], shapes, block, attention)
            else:
                rows = None
            _torus_layout_comm_s(network, int(code), s, mesh, parallel, sharded, seconds, rows)
    finally:
        network.forget_meshes_of_rows()
    return seconds


def _used_codes(codes: np.ndarray) -> np.ndarray:
    """np.unique(codes) for layout codes (small whole numbers) by counting them (np.unique
    hashes every row: ~1.3 ms against ~0.1 at 100,000 configurations)."""
    if codes.dtype.kind in "iu" and codes.size and codes.min() >= 0 and codes.max() < len(FFN_LAYOUTS):
        return np.flatnonzero(np.bincount(codes.ravel(), minlength=len(FFN_LAYOUTS))).astype(codes.dtype)
    return np.unique(codes)


def _torus_layout_comm_s(
    network: Network,
    code: int,
    s: Shapes,
    mesh: np.ndarray,
    parallel: np.ndarray,
    sharded: np.ndarray,
    seconds: dict[str, np.ndarray],
    layout_rows: tuple[np.ndarray, np.ndarray, Shapes, np.ndarray, np.ndarray] | None,
) -> None:
    """:func:`_torus_layer_comm_s` of the rows of one layout, written into ``seconds``:
    ``layout_rows`` (their positions, their meshes, shapes, parallel-block and batch-sharded
    flags), None where every row has it."""
    rows: slice | np.ndarray
    if layout_rows is None:
        rows, shapes, sub_mesh = slice(None), s, mesh
        block, attention = parallel, sharded
    else:
        rows, sub_mesh, shapes, block, attention = layout_rows
    # As in _layer_comm_time_s: calls moving the same bytes array over the same axes with the
    # same formula (Network.time_key: ws_2d's all-gather and reduce-scatter of the residual
    # over f, in the FFN's and the attention's sets) are timed once, and a call that moves
    # nothing anywhere is free. Each role's seconds add its calls in order, from zero (0 + t
    # is t), into the role's rows once.
    timed: dict[tuple[str, int, str], np.ndarray | None] = {}
    role_s: dict[str, np.ndarray] = {}
    for c in torus_layer_collectives(FFN_LAYOUTS[code], shapes, sub_mesh, block, attention):
        key = (network.time_key(c.kind), id(c.bytes_per_chip), c.axes)
        if key not in timed:
            moves = np.any(c.bytes_per_chip)
            timed[key] = network.collective_time_s(c.kind, c.bytes_per_chip, sub_mesh, c.axes) if moves else None
        if (time := timed[key]) is not None:
            role_s[c.role] = time if c.role not in role_s else role_s[c.role] + time
    for role, total in role_s.items():
        seconds[role][rows] = total


def layer_comm_time_s(
    network: Network,
    layout_codes: np.ndarray,
    s: Shapes,
    mesh: np.ndarray,
    parallel_block: np.ndarray,
    batch_sharded_attention: np.ndarray,
) -> np.ndarray:
    """Seconds of collectives per block, each configuration with its own FFN layout. Rows are
    grouped by layout with one stable sort, so each layout's collectives run on contiguous views
    (no per-layout copy of every shape array). Where whole rows repeat (a study's space: one
    model and workload), each distinct row is timed once (:func:`_layer_comm_time_distinct`)."""
    once = _layer_comm_time_distinct(network, layout_codes, s, mesh, parallel_block, batch_sharded_attention)
    if once is not None:
        return once
    return _layer_comm_time_s(network, layout_codes, s, mesh, parallel_block, batch_sharded_attention)


#: Distinct rows at most this share of a call for layer_comm_time_s to time each once.
DISTINCT_COMM_SHARE = 0.25


def _layer_comm_time_distinct(
    network: Network,
    layout_codes: np.ndarray,
    s: Shapes,
    mesh: np.ndarray,
    parallel_block: np.ndarray,
    batch_sharded_attention: np.ndarray,
) -> np.ndarray | None:
    """:func:`layer_comm_time_s` of the distinct rows of its inputs, gathered; None where they
    do not repeat enough (:func:`cost_models.distinct.repeated_rows`: an evenly spaced sample
    decides, ~1 ms for 100,000 rows). Every collective formula is elementwise over rows (a
    network's group geometry, the measured collective of each group size, the layout's shapes),
    so each row gets the seconds the whole call gives it (bench/guard_estimate_outputs.py,
    tests/cost_models/test_partitioning.py). Of bench_estimate's decode rows 82% are distinct
    (not taken); of studies/llama-2-70b-h100.yaml's exhaustive space 9% (prefill) and 5%
    (decode) (docs/benchmarks.md, "Estimate throughput, round 6")."""
    once = _on_distinct_rows(
        _layer_comm_time_s, network, layout_codes, s, mesh, parallel_block, batch_sharded_attention
    )
    if once is None:
        return None
    seconds, inverse = once
    return seconds.take(inverse)


_Timed = TypeVar("_Timed")


def _on_distinct_rows(
    timer: Callable[[Network, np.ndarray, Shapes, np.ndarray, np.ndarray, np.ndarray], _Timed],
    network: Network,
    layout_codes: np.ndarray,
    s: Shapes,
    mesh: np.ndarray,
    parallel_block: np.ndarray,
    batch_sharded_attention: np.ndarray,
) -> tuple[_Timed, np.ndarray] | None:
    """``timer`` of the distinct rows of a block's collective inputs and the inverse that gathers
    its rows back to every row; None where they do not repeat enough (:func:`_repeated_comm_rows`)."""
    rows = _repeated_comm_rows(layout_codes, s, mesh, parallel_block, batch_sharded_attention)
    if rows is None:
        return None
    first, inverse = rows
    once = timer(
        network,
        np.asarray(layout_codes).take(first),
        _take(s, first),
        np.asarray(mesh).take(first, axis=0),
        np.asarray(parallel_block).take(first),
        np.asarray(batch_sharded_attention).take(first),
    )
    return once, inverse


def _repeated_comm_rows(
    layout_codes: np.ndarray,
    s: Shapes,
    mesh: np.ndarray,
    parallel_block: np.ndarray,
    batch_sharded_attention: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(first, inverse) of the distinct rows of a block's collective inputs, or None where they
    do not repeat enough (:func:`cost_models.distinct.repeated_rows`)."""
    codes = np.asarray(layout_codes)
    fields = [np.asarray(getattr(s, name)) for name in type(s).__dataclass_fields__]
    if any(f.shape != codes.shape for f in fields):
        return None
    columns = [codes, *fields, *np.asarray(mesh).T, np.asarray(parallel_block), np.asarray(batch_sharded_attention)]
    return repeated_rows(columns, DISTINCT_COMM_SHARE)


def _layer_comm_time_s(
    network: Network,
    layout_codes: np.ndarray,
    s: Shapes,
    mesh: np.ndarray,
    parallel_block: np.ndarray,
    batch_sharded_attention: np.ndarray,
) -> np.ndarray:
    """:func:`layer_comm_time_s` over every row."""
    codes = np.asarray(layout_codes)
    if np.all(codes == codes[0]):
        order = None
        bounds = {int(codes[0]): slice(None)}
    else:
        # A stable sort's order is unique: of int8 codes numpy finds it by radix sort (0.7 against
        # 4.0 ms for 100,000 int64 codes on the benchmark's Xeon).
        small = codes.dtype.kind in "iu" and 0 <= codes.min() and codes.max() <= np.iinfo(np.int8).max
        order = np.argsort(codes.astype(np.int8) if small else codes, kind="stable")
        sorted_codes = codes[order]
        edges = np.searchsorted(sorted_codes, np.arange(len(FFN_LAYOUTS) + 1))
        bounds = {
            code: slice(edges[code], edges[code + 1])
            for code in range(len(FFN_LAYOUTS))
            if edges[code + 1] > edges[code]
        }
        s = _take(s, order)
        parallel_block, batch_sharded_attention = (
            np.asarray(parallel_block).take(order),
            np.asarray(batch_sharded_attention).take(order),
        )
    # Each layout's meshes (the network may remember them: Network.meshes_of_rows).
    mesh = np.atleast_2d(mesh)
    meshes = network.meshes_of_rows(mesh, [order[rows] for rows in bounds.values()]) if order is not None else [mesh]
    try:
        total = _layer_comm_by_layout(network, s, parallel_block, batch_sharded_attention, bounds, meshes, len(codes))
    finally:
        network.forget_meshes_of_rows()
    if order is None:
        return total
    unsorted = np.empty_like(total)
    unsorted[order] = total
    return unsorted


def _layer_comm_by_layout(
    network: Network,
    s: Shapes,
    parallel_block: np.ndarray,
    batch_sharded_attention: np.ndarray,
    bounds: dict[int, slice],
    meshes: list[np.ndarray],
    n: int,
) -> np.ndarray:
    """:func:`_layer_comm_time_s` of rows sorted by layout: each layout's ``bounds`` in them
    and its meshes (``meshes``, in the order of ``bounds``)."""
    total = np.zeros(n)
    for (code, rows), sub_mesh in zip(bounds.items(), meshes, strict=True):
        shapes = s if rows == slice(None) else _take(s, rows)
        calls = layer_collectives(
            FFN_LAYOUTS[code],
            shapes,
            sub_mesh,
            parallel_block[rows],
            batch_sharded_attention[rows],
            network.engine_collectives,
        )
        # A collective that moves no bytes in any configuration (a serial block's fused set, the
        # all-to-alls of head-sharded attention) is free (Network.collective_time_s): skipped.
        # Calls moving the same bytes array over the same axes with the same formula
        # (Network.time_key: the first and last step of the FFN's and the attention's sets) are
        # timed once; the sum still adds every call in order.
        timed: dict[tuple[str, int, str], np.ndarray | None] = {}
        terms = []
        for c in calls:
            key = (network.time_key(c.kind), id(c.bytes_per_chip), c.axes)
            if key not in timed:
                moves = np.any(c.bytes_per_chip)
                timed[key] = network.collective_time_s(c.kind, c.bytes_per_chip, sub_mesh, c.axes) if moves else None
            if (time := timed[key]) is not None:
                terms.append(time)
        total[rows] = sum(terms, start=0.0)
    return total


def layer_collective_steps(
    network: Network,
    layout_codes: np.ndarray,
    s: Shapes,
    mesh: np.ndarray,
    parallel_block: np.ndarray,
    batch_sharded_attention: np.ndarray,
) -> np.ndarray:
    """Synchronized steps of one block's collectives (:meth:`Network.collective_steps` summed
    over the calls of :func:`layer_collectives` that move bytes in a group of more than one
    chip), (n,): what a profile's ``collective_step_s`` charges per block. Only the calls a
    configuration runs count: a parallel block's empty attention set and head-sharded
    attention's all-to-alls take no step.

    Which calls run depends on the layout, the mesh, the block and the attention sharding only
    (every size in :class:`Shapes` is positive), so the steps are counted once per distinct
    combination of those and spread to every configuration that has it."""
    codes = np.asarray(layout_codes)
    mesh = np.atleast_2d(mesh)
    parallel = np.asarray(parallel_block, dtype=bool)
    sharded = np.asarray(batch_sharded_attention, dtype=bool)
    first, inverse = distinct_rows(codes, mesh[:, 0], mesh[:, 1], mesh[:, 2], parallel, sharded)
    shapes, sub_mesh = _take(s, first), mesh[first]
    steps = np.zeros(len(first))
    for code in np.unique(codes[first]):
        rows = np.flatnonzero(codes[first] == code)
        group_mesh = sub_mesh[rows]
        layout, block_shapes = FFN_LAYOUTS[int(code)], _take(shapes, rows)
        block, attention = parallel[first][rows], sharded[first][rows]
        if network.collective_einsums:
            calls = torus_layer_collectives(layout, block_shapes, group_mesh, block, attention)
        else:
            calls = layer_collectives(layout, block_shapes, group_mesh, block, attention, network.engine_collectives)
        total = np.zeros(len(rows))
        for c in calls:
            runs = (c.bytes_per_chip > 0) & (group_size(group_mesh, c.axes) > 1)
            if np.any(runs):
                total = total + np.where(runs, network.collective_steps(c.kind, group_mesh, c.axes), 0.0)
        steps[rows] = total
    return steps[inverse]


def _by_layout(layout_codes: np.ndarray, s, mesh: np.ndarray):
    """For each layout some configuration uses: (code, name, its rows, (s, mesh) of those rows)."""
    for code, layout in enumerate(FFN_LAYOUTS):
        chosen = layout_codes == code
        if not np.any(chosen):
            continue
        if np.all(chosen):
            yield code, layout, chosen, (s, mesh)
        else:
            yield code, layout, chosen, (_take(s, chosen), mesh[chosen])


def _where(condition: np.ndarray, x, y: np.ndarray) -> np.ndarray:
    """np.where(condition, x(), y)'s numbers, without computing ``x`` (a callable) or the
    pass where ``condition`` is the same for every configuration."""
    if not condition.any():
        return y
    chosen = x()
    if (
        isinstance(chosen, np.ndarray)
        and isinstance(y, np.ndarray)
        and chosen.dtype == y.dtype
        and chosen.shape == y.shape == np.shape(condition)
    ):
        # By position: a copy of y, x's numbers written where the condition holds (on a random
        # condition, half the configurations' batch-sharded attention, np.where takes ~2.5x as
        # long: see SwitchedNetwork.collective_time_of_groups_s).
        out = y.copy()
        rows = np.flatnonzero(condition)
        out[rows] = chosen.take(rows)
        return out
    return np.where(condition, chosen, y)


def _ones_where(condition: np.ndarray) -> np.ndarray:
    """np.where(condition, 1.0, 0.0): a bool condition's own conversion to float (True is 1.0,
    False 0.0: the same numbers, one pass without np.where's branches on a random condition)."""
    condition = np.asarray(condition)
    if condition.dtype == bool:
        return condition.astype(np.float64)
    return np.where(condition, 1.0, 0.0)


def _take(s, mask: np.ndarray | slice):
    if isinstance(mask, np.ndarray) and mask.dtype.kind in "iu":
        # Rows by position: ndarray.take along the first axis, the rows fancy indexing gives,
        # without its index iterator (about 1.5x faster).
        return type(s)(
            **{name: np.asarray(getattr(s, name)).take(mask, axis=0) for name in type(s).__dataclass_fields__}
        )
    return type(s)(**{name: getattr(s, name)[mask] for name in type(s).__dataclass_fields__})


@dataclass(frozen=True)
class ShardingPlan:
    """What a layout's rules make of n configurations' weight shapes on their meshes: shape-only
    work, computed once per distinct (model, KV heads, mesh, layout) and shared by every
    configuration that has it (batch, lengths and formats do not change it).

    Rows of ``in_use_ways``, ``gemm_k`` and ``gemm_n`` are the weight operators, in the order of
    ``WEIGHT_OPS``: shards of each one's matrix in use, and the per-chip widths of its matmul
    x[m, k] @ W[k, n]; ``stored_elements`` (n,): weight elements one chip stores, all layers, the
    embedding and an untied lm_head (``table_elements``: theirs, which stay 16-bit in a quantized
    deployment: :func:`stored_weight_bytes`). Held per distinct shape (``distinct_*``) and
    expanded to every configuration (``index``) only when read."""

    distinct_in_use_ways: np.ndarray
    distinct_gemm_k: np.ndarray
    distinct_gemm_n: np.ndarray
    distinct_stored_elements: np.ndarray
    index: np.ndarray | None = None  # None: one configuration per distinct shape
    #: Of ``stored_elements``, the routed experts' (what expert and data parallelism split further).
    distinct_routed_expert_elements: np.ndarray | None = None
    #: Of ``stored_elements``, the embedding's and the untied lm_head's (None: none counted apart).
    distinct_table_elements: np.ndarray | None = None
    #: Of ``stored_elements``, one block's (the larger of a dense and an MoE block, routers left
    #: out: replicated, never moved): the shard a weight-gathered layout circulates per block
    #: (:func:`gathered_weight_buffer_bytes`). None: not counted (read as 0).
    distinct_block_elements: np.ndarray | None = None

    def take(self, index: np.ndarray) -> ShardingPlan:
        """The plan of configurations whose shapes are ``index`` into this one's (positions, or
        a mask: kept as positions, which ``_expand`` takes)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return replace(self, index=index if self.index is None else self.index[index])

    def _expand(self, distinct: np.ndarray) -> np.ndarray:
        # take along the last axis: distinct[..., index]'s numbers, 1.5x faster (1.2 against
        # 1.8 ms for (11, 300) distinct shapes at 100,000 configurations).
        return distinct if self.index is None else distinct.take(self.index, axis=-1)

    @cached_property
    def in_use_ways(self) -> np.ndarray:
        return self._expand(self.distinct_in_use_ways)

    def in_use_row(self, row: int) -> np.ndarray:
        """Row ``row`` of ``in_use_ways`` (its numbers, bit for bit), expanded alone where the
        whole array was not, and the same array object for rows of the same bits: chip_shares
        reads the rows of the weight slots some configuration has, and of bench_estimate's 11
        rows 8 are present and 4 distinct (q and out, k and v, gate, up and down: products of
        the same two ways, in either order, which is exact), so 4 of 11 are gathered."""
        if "in_use_ways" in self.__dict__ or self.index is None:
            return self.in_use_ways[row]
        same = self._in_use_same_row[row]
        rows = self._in_use_rows
        if same not in rows:
            rows[same] = self.distinct_in_use_ways[same].take(self.index)
        return rows[same]

    @cached_property
    def _in_use_same_row(self) -> tuple[int, ...]:
        """For each row of ``distinct_in_use_ways``, the first row of the same bits (itself if none)."""
        first: dict[bytes, int] = {}
        return tuple(first.setdefault(row.tobytes(), i) for i, row in enumerate(self.distinct_in_use_ways))

    @cached_property
    def _in_use_rows(self) -> dict[int, np.ndarray]:
        """The rows :meth:`in_use_row` expanded so far, by their first row of the same bits."""
        return {}

    @cached_property
    def gemm_k(self) -> np.ndarray:
        return self._expand(self.distinct_gemm_k)

    @cached_property
    def gemm_n(self) -> np.ndarray:
        return self._expand(self.distinct_gemm_n)

    @cached_property
    def stored_elements(self) -> np.ndarray:
        return self._expand(self.distinct_stored_elements)

    @cached_property
    def routed_expert_elements(self) -> np.ndarray:
        routed = self.distinct_routed_expert_elements
        return self._expand(routed) if routed is not None else np.zeros_like(self.stored_elements)

    @cached_property
    def table_elements(self) -> np.ndarray:
        table = self.distinct_table_elements
        return self._expand(table) if table is not None else np.zeros_like(self.stored_elements)

    @cached_property
    def block_elements(self) -> np.ndarray:
        block = self.distinct_block_elements
        return self._expand(block) if block is not None else np.zeros_like(self.stored_elements)


#: Each matmul's input (k) and output (n) logical axes, by operator slot.
GEMM_AXES: dict[str, tuple[str, str]] = {
    "q_proj": ("embed", "heads"),
    "k_proj": ("embed", "kv_heads"),
    "v_proj": ("embed", "kv_heads"),
    "out_proj": ("heads", "embed"),
    "gate_proj": ("embed", "mlp"),
    "up_proj": ("embed", "mlp"),
    "down_proj": ("mlp", "embed"),
    "expert_gate": ("embed", "mlp"),
    "expert_up": ("embed", "mlp"),
    "expert_down": ("mlp", "embed"),
    "lm_head": ("embed", "vocab"),
}
_LOGICAL_AXES = ("embed", "heads", "kv_heads", "mlp", "vocab")


#: The operator slots of the weight matrices, in a :class:`ShardingPlan`'s row order.
WEIGHT_OPS: tuple[str, ...] = tuple(WEIGHT_OPERATOR.values())
_WEIGHT_ROW = {op: i for i, op in enumerate(WEIGHT_OPS)}


def _allowed_table(logical: str, in_use: bool) -> np.ndarray:
    """(layouts, 3) bool: the mesh axes each layout lets a logical axis split over."""
    return np.array(
        [
            [a in (rules.in_use(getattr(rules, logical)) if in_use else getattr(rules, logical)) for a in AXES]
            for rules in (SHARDING_RULES[name] for name in FFN_LAYOUTS)
        ]
    )


def _allowed_axes(layout_codes: np.ndarray, logical: str, in_use: bool) -> np.ndarray:
    """(n, 3) bool: the mesh axes each configuration's layout lets a logical axis split over."""
    return _allowed_table(logical, in_use)[layout_codes]


def _split_candidates(size: np.ndarray, products: dict[frozenset[str], np.ndarray]) -> list[np.ndarray]:
    """For each subset of the mesh axes (in :func:`_subsets`' order), the ways ``size`` splits over
    it when allowed: its chips P where P divides the size, the size where it divides P, else 0.
    Independent of the layout, so :func:`sharding_plan` computes them once per dimension for
    both the stored and the in-use ways (the integer remainders are most of their cost)."""
    whole = size.astype(np.int64)  # integer remainders: several times faster than float np.mod
    candidates = []
    for subset in _subsets(AXES):
        product = products[frozenset(subset)].astype(np.int64)
        candidates.append(np.where(whole % product == 0, product, np.where(product % whole == 0, whole, 0)))
    return candidates


def _split_ways(candidates: list[np.ndarray], allowed: np.ndarray) -> np.ndarray:
    """:func:`split_over`'s ways when each configuration has its own allowed axes (``allowed``,
    (n, 3) bool): the same rule, evaluated for every layout at once, from the dimension's
    :func:`_split_candidates`. Only the ways: which of two subsets of as many shards wins does
    not change what a chip holds."""
    ways = np.zeros(len(allowed), dtype=np.int64)
    for subset, candidate in zip(_subsets(AXES), candidates, strict=True):
        ok = np.ones(len(allowed), dtype=bool)
        for axis in subset:
            ok &= allowed[:, AXES.index(axis)]
        ways = np.maximum(ways, np.where(ok, candidate, 0))
    return ways.astype(np.float64)


def _stored_and_use_ways(
    size: np.ndarray,
    products: dict[frozenset[str], np.ndarray],
    layout_codes: np.ndarray,
    logical: str,
    candidates: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(stored ways, in-use ways) of a dimension split as ``logical``: one set of candidates for
    both (``candidates``, where the caller has them), and one evaluation where no layout's in-use
    axes differ from its stored ones."""
    candidates = candidates if candidates is not None else _split_candidates(size, products)
    stored = _split_ways(candidates, _allowed_axes(layout_codes, logical, False))
    if np.array_equal(_allowed_table(logical, False), _allowed_table(logical, True)):
        return stored, stored
    return stored, _split_ways(candidates, _allowed_axes(layout_codes, logical, True))


_MLA_ELEMENTS = ("wq", "wk", "wv", "wo")


def _mla_weight_elements(c: InferenceConfigs) -> dict[str, np.ndarray]:
    """MLA's matrices (cost_models.model_counts.mla_attention_weights) under the q/k/v/o slots
    (cost_models.operators: q = q_a + q_b, k = kv_a + W_UK, v = W_UV, o), stored split like the
    heads they serve (q_a and kv_a are replicated by engines: a few percent of a block)."""
    w = mla_attention_weights(
        c.d_model, c.heads, c.d_head, c.kv_lora_rank, c.q_lora_rank, c.qk_rope_head_dim, c.v_head_dim
    )
    return {"wq": w["q_a"] + w["q_b"], "wk": w["kv_a"] + w["kv_b_k"], "wv": w["kv_b_v"], "wo": w["o"]}


def sharding_plan(
    c: InferenceConfigs, mesh: np.ndarray, layout_codes: np.ndarray, shape_repeats: int = 1
) -> ShardingPlan:
    """The :class:`ShardingPlan` of every configuration, from its layout's rules (every layout
    evaluated at once: each configuration's rules are a mask of allowed axes). ``shape_repeats``:
    ``c`` and ``mesh`` hold each shape once, ``layout_codes`` that many layouts for each
    (consecutive), the plan being of every (shape, layout) row: the split candidates, which read
    no layout, are then found once per shape and repeated (the same numbers)."""
    candidates_of: dict[str, list[np.ndarray]] | None = None
    if shape_repeats > 1:
        shape_products = subset_products(mesh)

        def repeated(size: np.ndarray) -> list[np.ndarray]:
            return [np.repeat(x, shape_repeats) for x in _split_candidates(size, shape_products)]

        candidates_of = {lg: repeated(_dimension_size(WeightShapes.of(c), lg)) for lg in _LOGICAL_AXES}
        candidates_of["expert"] = repeated(np.maximum(c.expert_d_ff, 1.0))
        index = np.repeat(np.arange(len(c)), shape_repeats)
        c, mesh = c.take(index), np.atleast_2d(mesh).take(index, axis=0)
    n_ops, n = len(WEIGHT_OPS), len(c)
    in_use_ways, gemm_k, gemm_n = np.ones((n_ops, n)), np.zeros((n_ops, n)), np.zeros((n_ops, n))
    shapes = WeightShapes.of(c)
    products = subset_products(mesh)
    size = {logical: _dimension_size(shapes, logical) for logical in _LOGICAL_AXES}
    # Ways each logical axis splits, stored and in use (once per axis, not per matrix).
    ways_of = {
        lg: _stored_and_use_ways(
            size[lg], products, layout_codes, lg, None if candidates_of is None else candidates_of[lg]
        )
        for lg in _LOGICAL_AXES
    }
    stored_ways = {lg: ways[0] for lg, ways in ways_of.items()}
    use_ways = {lg: ways[1] for lg, ways in ways_of.items()}
    width = {lg: size[lg] * (shapes.d_head if lg in ("heads", "kv_heads") else 1.0) for lg in _LOGICAL_AXES}
    # Experts: each expert's d_ff splits over the mlp axes as the dense d_ff would (the shared
    # experts' width is assumed to split as many ways). The matmuls' hidden width is what one
    # token uses (k routed experts and the shared ones); storage holds every expert.
    expert_d_ff = np.maximum(c.expert_d_ff, 1.0)  # a dense model's 0: any ways, no elements
    expert_stored_ways, expert_use_ways = _stored_and_use_ways(
        expert_d_ff, products, layout_codes, "mlp", None if candidates_of is None else candidates_of["expert"]
    )
    expert = {
        "stored_ways": expert_stored_ways,
        "use_ways": expert_use_ways,
        "width": c.experts_per_token * c.expert_d_ff + c.shared_d_ff,
        "stored_width": c.experts * c.expert_d_ff + c.shared_d_ff,
    }
    stored = np.zeros(n)
    table = np.zeros(n)
    # One block's stored shard per chip: its attention, and its dense FFN or its experts.
    block_part = {"attention": np.zeros(n), "dense_ffn": np.zeros(n), "experts": np.zeros(n)}
    mla_elements = _mla_weight_elements(c)
    routed_experts = np.zeros(n)
    routed_share = np.divide(
        c.experts * c.expert_d_ff, expert["stored_width"], out=np.zeros(n), where=expert["stored_width"] > 0
    )
    for weight, op in (*WEIGHT_OPERATOR.items(), ("embedding", None)):
        never_gathered = weight in _NEVER_GATHERED
        axes = WEIGHT_AXES[weight]
        stored_by, use_by, width_of = stored_ways, use_ways, width
        if weight in _EXPERT_WEIGHTS:
            stored_by = {**stored_ways, "mlp": expert["stored_ways"]}
            use_by = {**use_ways, "mlp": expert["use_ways"]}
            width_of = {**width, "mlp": expert["width"]}
            elements = width["embed"] * expert["stored_width"]
        else:
            elements = width[axes[0]] * width[axes[1]]
        if weight in _MLA_ELEMENTS:  # MLA's matrices are not heads x d_head wide: count them
            elements = np.where(c.mla, mla_elements[weight], elements)
        if weight in ("w_gate", "w_expert_gate"):
            elements = elements * c.gated_ffn
        if weight == "lm_head":
            elements = elements * ~c.tie_embeddings
        repeats = 1.0 if never_gathered else c.layers
        if weight in _DENSE_FFN_WEIGHTS:
            repeats = c.layers - c.moe_layers
        elif weight in _EXPERT_WEIGHTS:
            repeats = c.moe_layers
        stored = stored + repeats * elements / (stored_by[axes[0]] * stored_by[axes[1]])
        if never_gathered:
            table = table + elements / (stored_by[axes[0]] * stored_by[axes[1]])
        else:
            part = "attention"
            if weight in _DENSE_FFN_WEIGHTS:
                part = "dense_ffn"
            elif weight in _EXPERT_WEIGHTS:
                part = "experts"
            block_part[part] = block_part[part] + elements / (stored_by[axes[0]] * stored_by[axes[1]])
        if weight in _EXPERT_WEIGHTS:
            routed_experts = routed_experts + routed_share * repeats * elements / (
                stored_by[axes[0]] * stored_by[axes[1]]
            )
        if op is None:
            continue
        ways = stored_by if never_gathered else use_by
        row = _WEIGHT_ROW[op]
        in_use_ways[row] = ways[axes[0]] * ways[axes[1]]
        k_axis, n_axis = GEMM_AXES[op]
        gemm_k[row] = width_of[k_axis] / ways[k_axis]
        gemm_n[row] = width_of[n_axis] / ways[n_axis]
    stored = stored + c.moe_layers * c.d_model * c.experts  # the routers, whole on every chip
    return ShardingPlan(
        in_use_ways,
        gemm_k,
        gemm_n,
        stored,
        distinct_routed_expert_elements=routed_experts,
        distinct_table_elements=table,
        distinct_block_elements=block_part["attention"]
        + np.maximum(
            np.where(c.layers > c.moe_layers, block_part["dense_ffn"], 0.0),
            np.where(c.moe_layers > 0, block_part["experts"], 0.0),
        ),
    )


def distinct_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse): one representative row of each distinct combination of the columns, and
    each row's representative, so shape-only work runs once per distinct shape. Columns of small
    non-negative whole numbers are packed into one int64 key (a fast 1-D unique); others fall
    back to a row-wise unique."""
    n = len(columns[0])
    key = _packed_key(columns)
    if key is None:
        stacked = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
        _, first, inverse = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
        return first, inverse.ravel()
    # One quicksort of the packed keys; a run of equal keys is one distinct row (cheaper than
    # np.unique's stable sort for return_index).
    order = np.argsort(key)
    ordered = key[order]
    starts = np.empty(n, dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return order[starts], inverse


def _packed_key(columns: tuple[np.ndarray, ...]) -> np.ndarray | None:
    """:func:`distinct_rows`' key: columns of small non-negative whole numbers packed into one
    int64 (mixed radix, each column's largest + 1); None where they are not such numbers."""
    key: np.ndarray | None = None
    capacity = 1
    for column in columns:
        values = np.asarray(column)
        if values.dtype.kind == "f" and not np.all(values == np.floor(values)):
            return None
        v = values.astype(np.int64)
        radix = int(v.max(initial=0)) + 1
        if v.min(initial=0) < 0 or capacity * radix >= 2**62:
            return None
        if key is None:  # (0 x radix + v is v)
            key = v
        else:  # in place: the numbers of key * radix + v
            key *= radix
            key += v
        capacity *= radix
    return np.zeros(len(columns[0]), dtype=np.int64) if key is None else key


def distinct_rows_any_order(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`distinct_rows`' (first, inverse) up to the order of the distinct rows and the
    choice of each one's representative (for callers whose work on the distinct rows reads only
    these columns): the packed key bucketed (distinct.word_classes, ~0.5 ms at 100,000 rows)
    instead of sorted (~1.5); the sort where the buckets leave rows unplaced."""
    key = _packed_key(columns) if len(columns[0]) >= MIN_ROWS else None
    classes = None if key is None else word_classes(key.view(np.uint64))
    return distinct_rows(*columns) if classes is None else classes


def weight_bytes_per_chip(
    c: InferenceConfigs, mesh: np.ndarray, layout_codes: np.ndarray, plan: ShardingPlan | None = None
) -> np.ndarray:
    """Weight bytes one chip stores in each configuration's layout: every matrix of every block,
    the embedding and (untied) the lm_head, each split as the layout's rules say (norm scales and
    biases are left out, as in the parameter count)."""
    plan = plan if plan is not None else sharding_plan(c, mesh, layout_codes)
    return stored_weight_bytes(plan, c.weight_dtype)


#: Bytes per element of the embedding table and the lm_head in every weight format: a quantized
#: deployment stores only the blocks' linear layers in its format. vLLM's AWQ, GPTQ and fp8
#: methods quantize LinearBase layers (vllm/model_executor/layers/quantization/awq.py, fp8.py:
#: get_quant_method), and its lm_head is a ParallelLMHead, an embedding; NVIDIA ModelOpt's
#: default FP8/INT4-AWQ/NVFP4 configs disable "*lm_head*" (modelopt/torch/quantization/config.py)
#: and quantize no nn.Embedding, which TensorRT-LLM's checkpoints follow; gpt-oss's mxfp4
#: quantization_config lists embed_tokens and lm_head in modules_to_not_convert.
TABLE_BYTES_PER_ELEMENT = float(BYTES_PER_ELEMENT[BF16])


def stored_weight_bytes(plan: ShardingPlan, weight_dtype: np.ndarray) -> np.ndarray:
    """Weight bytes one chip stores under ``plan``: its elements in the weight format, but the
    embedding and lm_head (``plan.table_elements``) in 16 bits (:data:`TABLE_BYTES_PER_ELEMENT`)."""
    weight_bytes = lookup(BYTES_PER_ELEMENT, weight_dtype)
    # (16-bit weights add table x 0.0: the same bits as stored x 2.)
    return plan.stored_elements * weight_bytes + plan.table_elements * (TABLE_BYTES_PER_ELEMENT - weight_bytes)


def mxfp4_checkpoint_extra_bytes(
    plan: ShardingPlan, weight_dtype: np.ndarray, mxfp4_experts: np.ndarray, data_parallel: np.ndarray | float = 1.0
) -> np.ndarray:
    """Bytes one chip stores beyond :func:`stored_weight_bytes` (and the DP split of the routed
    experts) where a deployment serves an ``mxfp4_experts`` checkpoint (gpt-oss) in it (fp4):
    its quantization_config converts only the routed experts, so every other block weight
    (attention, routers; ``modules_to_not_convert``: self_attn, router, embed_tokens, lm_head) is
    16-bit, not 0.5 B, and each expert weight carries its MXFP4 scale
    (:data:`MXFP4_SCALE_BYTES_PER_ELEMENT`). gpt-oss-120b on one chip: 0.968e9 attention and
    router weights x 1.5 B + 114.67e9 expert weights / 32 B = 5.04 GB more, 65.17 GB for its
    ~65 GB checkpoint, not 60.13 GB. 0 on the other rows."""
    rows = np.asarray(mxfp4_experts, dtype=bool) & (np.asarray(weight_dtype) == FP4)
    if not rows.any():
        return np.zeros(len(rows))
    routed = plan.routed_expert_elements
    rest = plan.stored_elements - routed - plan.table_elements
    extra = rest * (TABLE_BYTES_PER_ELEMENT - BYTES_PER_ELEMENT[FP4]) + (
        routed / data_parallel * MXFP4_SCALE_BYTES_PER_ELEMENT
    )
    return np.where(rows, extra, 0.0)


#: Copies of one block's stored shard a weight-gathered layout holds per chip beyond the shard at
#: rest, while the block runs. Pope et al. (2022) hide the weight all-gather of the wg layouts
#: (section 3.2.3) with the Looped CollectiveEinsum of section 3.5: the authors' code
#: (google-research scaling_transformer_inference_efficiency/collectives.py,
#: matmul_collective_weights_gather_q_wi and _o_wo, called by transformer_layer_weight_gathered in
#: layers/two_d_parallel_xmap.py) never builds the gathered matrix; each chip's shard travels the
#: torus by ppermute in a fori_loop and each chip multiplies its activations by the shard that
#: has just arrived. Live at once: the shard being multiplied (the loop carry ``rhs``, first the
#: block's slice of the stacked weights) and the one arriving (``next_rhs``): 2. Charging the
#: gathered weights instead contradicts the paper's own Table 2: PaLM 540B's high-throughput
#: prefill (wg_xyz, bf16, batch 512, 64 TPU v4, MFU 76%) stores 540e9 x 2 B / 64 = 16.9 GB of
#: weights at rest, and one gathered bf16 block is 18432 x (3 x 73728 + 2 x 48 x 256 + 2 x 256)
#: x 2 B = 9.08 GB: two (the next block prefetched) make 35.0 GB, over the chip's 34.4 GB
#: (32 GiB) before any KV cache or activation.
WEIGHT_GATHERED_SHARD_BUFFERS = 2


def gathered_weight_buffer_bytes(
    plan: ShardingPlan, weight_dtype: np.ndarray, layout_codes: np.ndarray, mesh: np.ndarray
) -> np.ndarray:
    """Bytes one chip holds beyond its stored weights while a weight-gathered layout
    (``wg_x``, ``wg_xy``, ``wg_xyz``: rules with a ``gather``) runs a block:
    :data:`WEIGHT_GATHERED_SHARD_BUFFERS` copies of the block's stored shard
    (``plan.block_elements``), moved in the weight format (int8 weights halve the gathered
    traffic, Pope et al. 3.6, and so the buffers); 0 under the weight-stationary layouts, and
    where the gather axes hold one chip (nothing moves: wg_x on a 1xYxZ mesh)."""
    layout_codes = np.asarray(layout_codes)
    gathered = np.zeros(len(layout_codes), dtype=bool)
    for code, name in enumerate(FFN_LAYOUTS):
        axes = "".join(SHARDING_RULES[name].gather)
        rows = layout_codes == code
        if axes and rows.any():
            gathered |= rows & (group_size(mesh, axes) > 1)
    if not gathered.any():
        return np.zeros(len(gathered))
    buffers = WEIGHT_GATHERED_SHARD_BUFFERS * plan.block_elements * lookup(BYTES_PER_ELEMENT, weight_dtype)
    return np.where(gathered, buffers, 0.0)


def mixed_checkpoint_extra_bytes(
    plan: ShardingPlan,
    weight_dtype: np.ndarray,
    checkpoint_dtype: np.ndarray,
    block_16bit_share: np.ndarray,
    scale_bytes: np.ndarray,
    data_parallel: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Bytes one chip stores beyond :func:`stored_weight_bytes` (and the DP split of the routed
    experts) where a deployment serves a mixed-format checkpoint in its format
    (ModelSpec.mixed_checkpoint): the share of its block weights but the routed experts that the
    ignore list keeps 16-bit (``block_16bit_share``, of the whole model's: the layouts split
    attention and FFN alike, up to the K/V heads a wide TP group replicates) at 2 bytes, not the
    format's, and ``scale_bytes`` more per weight left in the format (group scales). Kimi K2
    Thinking on one chip: 9.2e9 bf16 weights x 1.5 B and 1014.7e9 int4 expert weights x 2/32 B
    more, 594 GB for the published ~594 GB checkpoint, not 517. 0 on the other rows."""
    rows = np.asarray(weight_dtype) == np.asarray(checkpoint_dtype)
    if not rows.any():
        return np.zeros(len(rows))
    weight_bytes = lookup(BYTES_PER_ELEMENT, weight_dtype)
    routed = plan.routed_expert_elements
    rest = plan.stored_elements - routed - plan.table_elements
    sixteen = rest * block_16bit_share
    extra = sixteen * (TABLE_BYTES_PER_ELEMENT - weight_bytes) + (rest - sixteen + routed / data_parallel) * scale_bytes
    return np.where(rows, extra, 0.0)


@dataclass(frozen=True)
class ChipShares:
    """The ways each operator slot is split over a chip's mesh, one entry per slot in the order of
    ``OPERATOR_NAMES``, each (n,) (entries share arrays): its FLOPs and activations (``work``), its
    weights (``weight``; None: replicated, whole on every chip) and its KV cache (``kv``, one
    split for every slot). One chip's share of a slot is the slot's costs divided by these."""

    work: tuple[np.ndarray, ...]
    weight: Sequence[np.ndarray | None]
    kv: np.ndarray


def chip_shares(
    c: InferenceConfigs,
    mesh: np.ndarray,
    layout_codes: np.ndarray,
    batch_sharded: np.ndarray,
    plan: ShardingPlan | None = None,
    kv_ways: np.ndarray | None = None,
    chips: np.ndarray | None = None,
) -> ChipShares:
    """How :func:`per_chip_costs` splits every slot: FLOPs and activations over all chips,
    attention over heads (and sequences when sharded by batch); each weight matrix by its in-use
    shards (whole over the gathered axes in weight-gathered layouts), the router replicated
    (d_model x experts is small), other weights (norm scales) over all chips; the KV cache as
    :func:`kv_cache_split` says. ``plan`` and ``kv_ways``, when given, are those of these
    configurations (computed once for many); so is ``chips``, the mesh's chips
    (``group_size(mesh, "xyz")``'s numbers: Deployments.tensor_parallel, which the caller has),
    read and never written."""
    chips = group_size(mesh, "xyz") if chips is None else chips
    plan = plan if plan is not None else sharding_plan(c, mesh, layout_codes)
    if kv_ways is None:
        kv_ways = kv_cache_split(c.kv_heads, c.batch, mesh, batch_sharded, c.mla)[0]
    attention_ways = np.minimum(chips, _where(batch_sharded, lambda: c.batch * c.heads, c.heads))
    work = tuple(attention_ways if name in ATTENTION_OPS else chips for name in OPERATOR_NAMES)
    weight: list[np.ndarray | None] = [chips] * len(OPERATOR_NAMES)
    weight[OP["router"]] = None
    return ChipShares(work, _weight_ways(weight, plan), kv_ways)


class LazyWays(Sequence[np.ndarray | None]):
    """A sequence of per-slot ways (None: replicated) whose entries are made when first read,
    ``entry(i)``, and kept: chip_roofline reads only the slots some configuration has, so the
    others are never expanded (:attr:`ChipShares.weight`)."""

    def __init__(self, length: int, entry: Callable[[int], np.ndarray | None]) -> None:
        self._entry = entry
        self._made: list[np.ndarray | None] = [None] * length
        self._unread = set(range(length))

    def __len__(self) -> int:
        return len(self._made)

    @overload
    def __getitem__(self, i: int) -> np.ndarray | None: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[np.ndarray | None]: ...
    def __getitem__(self, i: int | slice) -> np.ndarray | None | Sequence[np.ndarray | None]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        if i < 0:
            i += len(self._made)
        if i in self._unread:
            self._unread.discard(i)
            self._made[i] = self._entry(i)
        return self._made[i]


def _weight_ways(others: list[np.ndarray | None], plan: ShardingPlan) -> LazyWays:
    """:attr:`ChipShares.weight`: each weight slot's in-use ways (ShardingPlan.in_use_row),
    expanded to every configuration when first read, the other slots' entries as given."""

    def entry(i: int) -> np.ndarray | None:
        row = _SLOT_WEIGHT_ROW.get(i)
        return others[i] if row is None else plan.in_use_row(row)

    return LazyWays(len(others), entry)


#: Each weight slot's row of a ShardingPlan's in-use ways.
_SLOT_WEIGHT_ROW = {OP[op]: row for op, row in _WEIGHT_ROW.items()}


def _split_rows(array: np.ndarray, ways: Sequence[np.ndarray | None]) -> np.ndarray:
    """Each slot's row of ``array`` divided by its ways (copied where None), one row at a time:
    no temporary of every slot and configuration, no fancy-index copy."""
    out = np.empty_like(array)
    for i, w in enumerate(ways):
        if w is None:
            out[i] = array[i]
        else:
            np.divide(array[i], w, out=out[i])
    return out


def per_chip_costs(
    ops: OperatorCosts,
    c: InferenceConfigs,
    mesh: np.ndarray,
    layout_codes: np.ndarray,
    batch_sharded: np.ndarray,
    plan: ShardingPlan | None = None,
    kv_ways: np.ndarray | None = None,
) -> OperatorCosts:
    """One chip's share of every operator, split as :func:`chip_shares` says. ``plan`` and
    ``kv_ways``, when given, are those of these configurations (computed once for many)."""
    shares = chip_shares(c, mesh, layout_codes, batch_sharded, plan, kv_ways)
    return OperatorCosts(
        flops=_split_rows(ops.flops, shares.work),
        weight_bytes=_split_rows(ops.weight_bytes, shares.weight),
        act_read_bytes=_split_rows(ops.act_read_bytes, shares.work),
        act_write_bytes=_split_rows(ops.act_write_bytes, shares.work),
        kv_read_bytes=ops.kv_read_bytes / shares.kv,
        kv_write_bytes=ops.kv_write_bytes / shares.kv,
        compute_dtype=ops.compute_dtype,
        present=ops.present,
        repeats=ops.repeats,
    )


def gemm_shapes_per_chip(chip_ops: OperatorCosts, plan: ShardingPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(m, n, k) of the matmul x[m, k] @ W[k, n] each chip runs for every weight operator, rows
    in the order of ``WEIGHT_OPS`` (= ``GEMM_AXES``): k and n as the plan splits the weight in
    use; m follows from the chip's FLOPs (2 m n k), so it counts the tokens the chip multiplies,
    whatever the layout."""
    k, n = plan.gemm_k, plan.gemm_n
    flops = chip_ops.flops[[OP[op] for op in WEIGHT_OPS]]
    m = np.divide(flops, 2.0 * k * n, out=np.zeros_like(k), where=k * n > 0)
    return m, n, k


def attention_split(
    c: InferenceConfigs, chips: np.ndarray, batch_sharded: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sequences, query heads and KV heads of the attention one chip computes: heads split over
    the chips (a KV head shared by its query group), and sequences too when sharded by batch."""
    ways = np.minimum(chips, np.where(batch_sharded, c.batch * c.heads, c.heads))
    batch_ways = np.where(batch_sharded, np.minimum(c.batch, ways), 1.0)
    head_ways = np.maximum(ways / batch_ways, 1.0)
    heads = np.maximum(c.heads / head_ways, 1.0)
    return c.batch / batch_ways, heads, np.maximum(c.kv_heads / head_ways, 1.0)
