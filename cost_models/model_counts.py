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


def total_params(layers, d_model, heads, kv_heads, d_head, d_ff, gated_ffn, vocab, tie_embeddings) -> np.ndarray:
    """Parameters of the whole model: every block plus the embedding (and an untied lm_head)."""
    return layers * params_per_layer(d_model, heads, kv_heads, d_head, d_ff, gated_ffn) + embedding_params(
        vocab, d_model, tie_embeddings
    )


def kv_bytes_per_token(layers, kv_heads, d_head, kv_bytes_per_element, decoder=True) -> np.ndarray:
    """Bytes of K and V that one token of one sequence keeps in the cache, over every layer
    (encoders keep none)."""
    return np.where(decoder, 2.0, 0.0) * layers * kv_heads * d_head * kv_bytes_per_element


def model_flops_utilization(matmul_params_times_tokens, chips, peak_ops_per_s, latency_s) -> np.ndarray:
    """MFU (Pope et al. 2022, section 4): 2 x parameters x tokens over chips x peak x time, with
    attention's own FLOPs left out. The caller says which parameters' matmuls ran for how many
    tokens (``matmul_params_times_tokens``)."""
    return 2.0 * matmul_params_times_tokens / (chips * peak_ops_per_s * latency_s)
