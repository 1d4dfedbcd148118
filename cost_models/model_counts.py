"""Counts that follow from a model's shapes alone: parameters, KV-cache bytes per token, MFU.

Each is written once here and used by every caller (catalog tables, memory estimates, MFU,
exports). All are vectorized: arguments are numpy arrays (or scalars) broadcast together.
"""

from __future__ import annotations

import numpy as np


def params_per_layer(d_model, heads, kv_heads, d_head, d_ff, gated_ffn) -> np.ndarray:
    """Matrix parameters of one block: q, k, v, o projections and the FFN's 2 (gelu) or 3
    (swiglu) matrices. Biases and norm scales are left out, as Pope et al. (2022) do."""
    attention = d_model * d_head * (2.0 * heads + 2.0 * kv_heads)
    ffn = np.where(gated_ffn, 3.0, 2.0) * d_model * d_ff
    return attention + ffn


def embedding_params(vocab, d_model, tie_embeddings) -> np.ndarray:
    """The input embedding, plus the lm_head when it is not tied to it."""
    return vocab * d_model * np.where(tie_embeddings, 1.0, 2.0)


def moe_ffn_params(d_model, experts, expert_d_ff, shared_d_ff, gated_ffn) -> np.ndarray:
    """Matrix parameters of one MoE block's FFN: the router (d_model x experts), ``experts``
    experts of width ``expert_d_ff`` and the shared experts (``shared_d_ff`` wide together), each
    with the FFN kind's 2 or 3 matrices. Pass top-k as ``experts`` for what one token uses."""
    return d_model * experts + np.where(gated_ffn, 3.0, 2.0) * d_model * (experts * expert_d_ff + shared_d_ff)


def block_params(
    layers,
    d_model,
    heads,
    kv_heads,
    d_head,
    d_ff,
    gated_ffn,
    moe_layers=0.0,
    experts=0.0,
    expert_d_ff=0.0,
    shared_d_ff=0.0,
) -> np.ndarray:
    """Matrix parameters of every block: dense blocks as :func:`params_per_layer`; each of the
    ``moe_layers`` MoE blocks has :func:`moe_ffn_params` instead of the dense FFN. ``experts``:
    all routed experts (stored), or top-k (used by one token)."""
    dense_ffn = np.where(gated_ffn, 3.0, 2.0) * d_model * d_ff
    moe_ffn = moe_ffn_params(d_model, experts, expert_d_ff, shared_d_ff, gated_ffn)
    return layers * params_per_layer(d_model, heads, kv_heads, d_head, d_ff, gated_ffn) + moe_layers * (
        moe_ffn - dense_ffn
    )


def total_params(
    layers,
    d_model,
    heads,
    kv_heads,
    d_head,
    d_ff,
    gated_ffn,
    vocab,
    tie_embeddings,
    moe_layers=0.0,
    experts=0.0,
    experts_per_token=0.0,
    expert_d_ff=0.0,
    shared_d_ff=0.0,
) -> np.ndarray:
    """Parameters of the whole model: every block (every expert) plus the embedding (and an
    untied lm_head)."""
    blocks = block_params(
        layers, d_model, heads, kv_heads, d_head, d_ff, gated_ffn, moe_layers, experts, expert_d_ff, shared_d_ff
    )
    return blocks + embedding_params(vocab, d_model, tie_embeddings)


def active_params_per_token(
    layers,
    d_model,
    heads,
    kv_heads,
    d_head,
    d_ff,
    gated_ffn,
    vocab,
    tie_embeddings,
    moe_layers=0.0,
    experts=0.0,
    experts_per_token=0.0,
    expert_d_ff=0.0,
    shared_d_ff=0.0,
) -> np.ndarray:
    """Parameters one token uses: :func:`total_params` with only the ``experts_per_token`` routed
    experts of each MoE block (the router still scores all ``experts``). The embedding counts,
    as the Mixtral and Qwen3 model cards count it (Mixtral 8x7B: 12.9B of 46.7B)."""
    blocks = active_block_params(
        layers,
        d_model,
        heads,
        kv_heads,
        d_head,
        d_ff,
        gated_ffn,
        moe_layers,
        experts,
        experts_per_token,
        expert_d_ff,
        shared_d_ff,
    )
    return blocks + embedding_params(vocab, d_model, tie_embeddings)


def active_block_params(
    layers,
    d_model,
    heads,
    kv_heads,
    d_head,
    d_ff,
    gated_ffn,
    moe_layers=0.0,
    experts=0.0,
    experts_per_token=0.0,
    expert_d_ff=0.0,
    shared_d_ff=0.0,
) -> np.ndarray:
    """Block parameters whose matmuls run for one token (MFU's numerator): :func:`block_params`
    with the top-k routed experts, plus the router's columns of the other experts."""
    blocks = block_params(
        layers,
        d_model,
        heads,
        kv_heads,
        d_head,
        d_ff,
        gated_ffn,
        moe_layers,
        experts_per_token,
        expert_d_ff,
        shared_d_ff,
    )
    return blocks + moe_layers * d_model * (experts - experts_per_token)


def kv_bytes_per_token(layers, kv_heads, d_head, kv_bytes_per_element, decoder=True) -> np.ndarray:
    """Bytes of K and V that one token of one sequence keeps in the cache, over every layer
    (encoders keep none)."""
    return np.where(decoder, 2.0, 0.0) * layers * kv_heads * d_head * kv_bytes_per_element


def model_flops_utilization(matmul_params_times_tokens, chips, peak_ops_per_s, latency_s) -> np.ndarray:
    """MFU (Pope et al. 2022, section 4): 2 x parameters x tokens over chips x peak x time, with
    attention's own FLOPs left out. The caller says which parameters' matmuls ran for how many
    tokens (``matmul_params_times_tokens``)."""
    return 2.0 * matmul_params_times_tokens / (chips * peak_ops_per_s * latency_s)
