"""Counts that follow from a model's shapes alone: parameters, KV-cache bytes per token, MFU.

Each is written once here and used by every caller (catalog tables, memory estimates, MFU,
exports). All are vectorized: arguments are numpy arrays (or scalars) broadcast together.
"""

from __future__ import annotations

import numpy as np


def mla_attention_weights(
    d_model, heads, d_head, kv_lora_rank, q_lora_rank, qk_rope_head_dim, v_head_dim
) -> dict[str, np.ndarray]:
    """Matrix parameters of multi-head latent attention (DeepSeek-V2, arXiv 2405.04434, section
    2.1; names as in the DeepSeek-V3 checkpoints), by matrix:

    - ``q_a``: d_model x q_lora_rank (query down-projection; 0 when the query is full rank),
    - ``q_b``: q_lora_rank x heads (d_head + rope) (or d_model x heads (d_head + rope) at full rank),
    - ``kv_a``: d_model x (kv_lora_rank + rope): the latent and the shared rotary key (cached),
    - ``kv_b_k``, ``kv_b_v``: kv_lora_rank x heads d_head (W_UK) and x heads v_head_dim (W_UV),
    - ``o``: heads v_head_dim x d_model.

    ``d_head`` is the per-head non-rotary query/key width (qk_nope_head_dim)."""
    q_width = heads * (d_head + qk_rope_head_dim)
    full_rank_q = np.asarray(q_lora_rank) == 0
    return {
        "q_a": d_model * q_lora_rank * 1.0,
        "q_b": np.where(full_rank_q, d_model, q_lora_rank) * q_width,
        "kv_a": d_model * (kv_lora_rank + qk_rope_head_dim) * 1.0,
        "kv_b_k": kv_lora_rank * heads * d_head * 1.0,
        "kv_b_v": kv_lora_rank * heads * v_head_dim * 1.0,
        "o": heads * v_head_dim * d_model * 1.0,
    }


def attention_params(
    d_model, heads, kv_heads, d_head, kv_lora_rank=0.0, q_lora_rank=0.0, qk_rope_head_dim=0.0, v_head_dim=0.0
) -> np.ndarray:
    """Matrix parameters of one block's attention: q, k, v, o (d_model x d_head x (2 heads + 2
    kv_heads)); with MLA (``kv_lora_rank`` > 0) the six matrices of :func:`mla_attention_weights`
    (``v_head_dim`` 0: d_head)."""
    mha = d_model * d_head * (2.0 * heads + 2.0 * kv_heads)
    v_dim = np.where(np.asarray(v_head_dim) > 0, v_head_dim, d_head)
    mla = sum(
        mla_attention_weights(d_model, heads, d_head, kv_lora_rank, q_lora_rank, qk_rope_head_dim, v_dim).values()
    )
    return np.where(np.asarray(kv_lora_rank) > 0, mla, mha)


def params_per_layer(d_model, heads, kv_heads, d_head, d_ff, gated_ffn, **mla) -> np.ndarray:
    """Matrix parameters of one block: attention (:func:`attention_params`; ``mla``: its MLA
    keyword arguments) and the FFN's 2 (gelu) or 3 (swiglu) matrices. Biases and norm scales are
    left out, as Pope et al. (2022) do."""
    attention = attention_params(d_model, heads, kv_heads, d_head, **mla)
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
    **mla,
) -> np.ndarray:
    """Matrix parameters of every block: dense blocks as :func:`params_per_layer`; each of the
    ``moe_layers`` MoE blocks has :func:`moe_ffn_params` instead of the dense FFN. ``experts``:
    all routed experts (stored), or top-k (used by one token)."""
    dense_ffn = np.where(gated_ffn, 3.0, 2.0) * d_model * d_ff
    moe_ffn = moe_ffn_params(d_model, experts, expert_d_ff, shared_d_ff, gated_ffn)
    return layers * params_per_layer(d_model, heads, kv_heads, d_head, d_ff, gated_ffn, **mla) + moe_layers * (
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
    **mla,
) -> np.ndarray:
    """Parameters of the whole model: every block (every expert) plus the embedding (and an
    untied lm_head)."""
    blocks = block_params(
        layers, d_model, heads, kv_heads, d_head, d_ff, gated_ffn, moe_layers, experts, expert_d_ff, shared_d_ff, **mla
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
    **mla,
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
        **mla,
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
    **mla,
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
        **mla,
    )
    return blocks + moe_layers * d_model * (experts - experts_per_token)


def kv_elements_per_token_per_layer(kv_heads, d_head, kv_lora_rank=0.0, qk_rope_head_dim=0.0) -> np.ndarray:
    """Elements one token keeps in one layer's cache: K and V of every KV head (2 kv_heads
    d_head), or with MLA the latent and the shared rotary key, kv_lora_rank + qk_rope_head_dim,
    once for all heads (DeepSeek-V2, arXiv 2405.04434, section 2.1.2 and Table 1)."""
    return np.where(np.asarray(kv_lora_rank) > 0, kv_lora_rank + qk_rope_head_dim, 2.0 * kv_heads * d_head)


def cached_layers_per_token(layers, sliding_window=0.0, sliding_window_layers=0.0, context=None) -> np.ndarray:
    """Layers whose cache holds one more entry for each token of a sequence of ``context``
    tokens, on average: every full-attention layer, and each sliding-window layer for at most
    ``sliding_window`` of the ``context`` tokens (engines cap a windowed layer's cache at the
    window: vLLM's hybrid KV-cache allocator frees the blocks that slid out, TensorRT-LLM keeps a
    cyclic KV cache of the window's size). ``context`` None: no cap (a token's cost before the
    window fills; the worst case)."""
    if context is None:
        return np.asarray(layers, dtype=np.float64)
    context = np.maximum(np.asarray(context, dtype=np.float64), 1.0)
    windowed = np.asarray(sliding_window) > 0
    kept = np.where(windowed, np.minimum(context, np.where(windowed, sliding_window, 1.0)) / context, 1.0)
    return layers - sliding_window_layers + sliding_window_layers * kept


def kv_bytes_per_token(
    layers,
    kv_heads,
    d_head,
    kv_bytes_per_element,
    decoder=True,
    *,
    kv_lora_rank=0.0,
    qk_rope_head_dim=0.0,
    sliding_window=0.0,
    sliding_window_layers=0.0,
    context=None,
) -> np.ndarray:
    """Bytes of the cache that one token of one sequence keeps, over every layer (encoders keep
    none): :func:`kv_elements_per_token_per_layer` x :func:`cached_layers_per_token` at
    ``context`` (averaged over the sequence's tokens: windowed layers keep only the last window).
    The one formula every caller (memory estimate, paged-KV capacity, disaggregated KV transfer,
    analysis) uses. DeepSeek-V3 at bf16: 61 x (512 + 64) x 2 = 70,272 bytes."""
    per_layer = kv_elements_per_token_per_layer(kv_heads, d_head, kv_lora_rank, qk_rope_head_dim)
    cached = cached_layers_per_token(layers, sliding_window, sliding_window_layers, context)
    return np.where(decoder, 1.0, 0.0) * cached * per_layer * kv_bytes_per_element


def context_that_fits(
    kv_budget_bytes, uncapped_kv_bytes_per_token, layers, sliding_window=0.0, sliding_window_layers=0.0
) -> np.ndarray:
    """Longest context whose cache fits ``kv_budget_bytes``, with ``uncapped_kv_bytes_per_token``
    the bytes every layer keeps per token before any window caps it (:func:`kv_bytes_per_token`
    with ``context`` None; every layer caches the same per token). Until the window fills, each
    token costs every layer's bytes; past it the windowed layers stay at ``sliding_window`` tokens
    (as :func:`cached_layers_per_token` charges them) and only the full-attention layers grow, so the
    budget left after the window is shared by those alone; with no full-attention layer, any context
    fits once the window does (inf). Zero bytes per token (an encoder): inf."""
    budget = np.asarray(kv_budget_bytes, dtype=np.float64)
    per_token = np.asarray(uncapped_kv_bytes_per_token, dtype=np.float64)
    full_per_token = per_token * (layers - sliding_window_layers) / np.maximum(layers, 1.0)
    window = np.asarray(sliding_window, dtype=np.float64) * (np.asarray(sliding_window_layers) > 0)
    filled = window * per_token  # every layer's cache when the window has just filled
    inf = np.full(np.broadcast(budget, per_token, window).shape, np.inf)
    before = np.divide(budget, per_token, out=inf.copy(), where=per_token > 0)
    past = window + np.divide(budget - filled, full_per_token, out=inf.copy(), where=full_per_token > 0)
    return np.where((window > 0) & (budget > filled), past, before)


def model_flops_utilization(matmul_params_times_tokens, chips, peak_ops_per_s, latency_s) -> np.ndarray:
    """MFU (Pope et al. 2022, section 4): 2 x parameters x tokens over chips x peak x time, with
    attention's own FLOPs left out. The caller says which parameters' matmuls ran for how many
    tokens (``matmul_params_times_tokens``)."""
    return 2.0 * matmul_params_times_tokens / (chips * peak_ops_per_s * latency_s)
