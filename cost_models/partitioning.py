"""Partitioning layouts of Pope et al., "Efficiently Scaling Transformer Inference" (2022), section 3.

A layout says how each weight and activation is split over the mesh X x Y x Z of n chips, which
gives every chip its share of the FLOPs and bytes and a list of collectives per layer.

FFN layouts (section 3.2; E = d_model, F = d_ff, N = tokens in the pass = batch x tokens/sequence):
- ``ws_1d``: weights split along F over all chips; activations all-gathered before W_in and
  reduce-scattered after W_out: 2 N E per layer, whatever the chip count (eq. for T_comm, 3.2.1).
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

from dataclasses import dataclass

import numpy as np

from cost_models.dtypes import BYTES_PER_ELEMENT
from cost_models.inference_configs import InferenceConfigs
from cost_models.operators import LM_HEAD, OP, PROJECTIONS, OperatorCosts
from cost_models.topology import Network, group_size

FFN_LAYOUTS: tuple[str, ...] = ("ws_1d", "ws_2d", "wg_x", "wg_xy", "wg_xyz")
ATTENTION_SHARDINGS: tuple[str, ...] = ("head", "batch")
#: Mesh axes the weights are gathered over in each weight-gathered layout.
GATHER_AXES = {"wg_x": "x", "wg_xy": "xy", "wg_xyz": "xyz"}
_REMAINING = {"x": "yz", "xy": "z", "xyz": ""}
ATTENTION_OPS = ("qk_matmul", "softmax", "sv_matmul", "fused_attention")


@dataclass(frozen=True)
class CollectiveCall:
    """One collective of a layer: kind, mesh axes, and D, the bytes per chip (Pope et al. app. A:
    the all-gather's per-chip output, the reduce-scatter's per-chip input)."""

    kind: str
    axes: str
    bytes_per_chip: np.ndarray
    moves: str  # what it carries, for reports


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
    act_bytes: np.ndarray
    weight_bytes: np.ndarray

    @classmethod
    def of(cls, c: InferenceConfigs, tokens_per_sequence: np.ndarray) -> "Shapes":
        dq, dkv = c.heads * c.d_head, c.kv_heads * c.d_head
        gated = np.where(c.gated_ffn, 2.0, 1.0)
        return cls(
            tokens=c.batch * tokens_per_sequence, d_model=c.d_model, ffn_in=gated * c.d_ff,
            ffn_mid=c.d_ff, attn_in=dq + 2 * dkv, attn_mid=dq,
            layer_weights=c.d_model * (2 * dq + 2 * dkv) + (gated + 1.0) * c.d_model * c.d_ff,
            act_bytes=BYTES_PER_ELEMENT[c.act_dtype], weight_bytes=BYTES_PER_ELEMENT[c.weight_dtype],
        )


def ffn_collectives(layout: str, s: Shapes, mesh: np.ndarray, mid_in: np.ndarray,
                    mid_out: np.ndarray, weights: np.ndarray) -> list[CollectiveCall]:
    """Collectives of one matmul pair (W_in, W_out) in ``layout``: hidden widths ``mid_in`` (W_in's
    output) and ``mid_out`` (W_out's input), ``weights`` elements stored split over all chips."""
    n = np.prod(mesh, axis=-1)
    N, E = s.tokens, s.d_model
    ab, wb = s.act_bytes, s.weight_bytes
    if layout == "ws_1d":
        return [CollectiveCall("all_gather", "xyz", N * E * ab, "activations"),
                CollectiveCall("reduce_scatter", "xyz", N * E * ab, "activations")]
    if layout == "ws_2d":
        x, yz = mesh[:, 0], mesh[:, 1] * mesh[:, 2]
        return [CollectiveCall("all_gather", "yz", N * E / x * ab, "activations"),
                CollectiveCall("reduce_scatter", "x", N * mid_in / yz * ab, "activations"),
                CollectiveCall("all_gather", "x", N * mid_out / yz * ab, "activations"),
                CollectiveCall("reduce_scatter", "yz", N * E / x * ab, "activations")]
    gather = GATHER_AXES[layout]
    gathered = group_size(mesh, gather)
    calls = [CollectiveCall("all_gather", gather, weights * gathered / n * wb, "weights")]
    rest = _REMAINING[gather]
    if rest:
        calls += [CollectiveCall("all_gather", rest, N * E / gathered * ab, "activations"),
                  CollectiveCall("reduce_scatter", rest, N * E / gathered * ab, "activations")]
    return calls


def layer_collectives(layout: str, s: Shapes, mesh: np.ndarray, parallel_block: np.ndarray,
                      batch_sharded_attention: np.ndarray) -> list[CollectiveCall]:
    """Every collective of one transformer block. Entries a configuration does not have (the
    serial block's attention set, the batch-sharded all-to-alls) carry zero bytes for it."""
    attention_weights = s.d_model * (s.attn_in + s.attn_mid)
    # A parallel block fuses the attention projections into W_in / W_out: one set of collectives
    # with wider hidden activations. A serial block runs a second set for the attention alone.
    fused = np.where(parallel_block, 1.0, 0.0)
    calls = ffn_collectives(layout, s, mesh, s.ffn_in + fused * s.attn_in, s.ffn_mid + fused * s.attn_mid,
                            s.layer_weights - (1.0 - fused) * attention_weights)
    calls += [CollectiveCall(c.kind, c.axes, c.bytes_per_chip * (1.0 - fused), c.moves)
              for c in ffn_collectives(layout, s, mesh, s.attn_in, s.attn_mid, attention_weights)]
    n = np.prod(mesh, axis=-1)
    sharded = np.where(batch_sharded_attention, 1.0, 0.0)
    calls += [CollectiveCall("all_to_all", "xyz", sharded * s.tokens * s.attn_in / n * s.act_bytes, "qkv"),
              CollectiveCall("all_to_all", "xyz", sharded * s.tokens * s.attn_mid / n * s.act_bytes,
                             "attention output")]
    return calls


def layer_comm_time_s(network: Network, layout_codes: np.ndarray, s: Shapes, mesh: np.ndarray,
                      parallel_block: np.ndarray, batch_sharded_attention: np.ndarray) -> np.ndarray:
    """Seconds of collectives per block, each configuration with its own FFN layout."""
    total = np.zeros(len(layout_codes))
    for code, layout in enumerate(FFN_LAYOUTS):
        chosen = layout_codes == code
        if not np.any(chosen):
            continue
        everyone = bool(np.all(chosen))
        sub = s if everyone else _take_shapes(s, chosen)
        sub_mesh = mesh if everyone else mesh[chosen]
        calls = layer_collectives(layout, sub, sub_mesh, parallel_block[chosen],
                                  batch_sharded_attention[chosen])
        times = sum(network.collective_time_s(c.kind, c.bytes_per_chip, sub_mesh, c.axes) for c in calls)
        total[chosen] = times
    return total


def _take_shapes(s: Shapes, mask: np.ndarray) -> Shapes:
    return Shapes(**{name: getattr(s, name)[mask] for name in Shapes.__dataclass_fields__})


def kv_shards(c: InferenceConfigs, chips: np.ndarray, batch_sharded: np.ndarray) -> np.ndarray:
    """Ways the KV cache is split: by KV heads (replicated beyond them) or by sequences too."""
    return np.where(batch_sharded, np.minimum(chips, c.batch * c.kv_heads), np.minimum(chips, c.kv_heads))


def per_chip_costs(ops: OperatorCosts, c: InferenceConfigs, mesh: np.ndarray,
                   layout_codes: np.ndarray, batch_sharded: np.ndarray) -> OperatorCosts:
    """One chip's share of every operator: FLOPs and activations split n ways, weights split n
    ways (or gathered over N_G chips and read whole, in weight-gathered layouts), KV split by
    ``kv_shards``."""
    chips = np.prod(mesh, axis=-1)
    gathered = np.ones_like(chips)
    for code, layout in enumerate(FFN_LAYOUTS):
        if layout in GATHER_AXES:
            gathered = np.where(layout_codes == code, group_size(mesh, GATHER_AXES[layout]), gathered)
    weight_share = np.broadcast_to(1.0 / chips, ops.weight_bytes.shape).copy()
    for name in PROJECTIONS:
        weight_share[OP[name]] = gathered / chips
    # Attention work splits over heads, or over heads and sequences when sharded by batch.
    attention_ways = np.minimum(chips, np.where(batch_sharded, c.batch * c.heads, c.heads))
    flop_share = np.broadcast_to(1.0 / chips, ops.flops.shape).copy()
    act_share = flop_share.copy()
    for name in ATTENTION_OPS:
        flop_share[OP[name]] = 1.0 / attention_ways
        act_share[OP[name]] = 1.0 / attention_ways
    kv_share = 1.0 / kv_shards(c, chips, batch_sharded)
    flop_share[LM_HEAD] = 1.0 / chips
    return OperatorCosts(
        flops=ops.flops * flop_share,
        weight_bytes=ops.weight_bytes * weight_share,
        act_read_bytes=ops.act_read_bytes * act_share,
        act_write_bytes=ops.act_write_bytes * act_share,
        kv_read_bytes=ops.kv_read_bytes * kv_share,
        kv_write_bytes=ops.kv_write_bytes * kv_share,
        compute_dtype=ops.compute_dtype,
        present=ops.present,
        repeats=ops.repeats,
    )
