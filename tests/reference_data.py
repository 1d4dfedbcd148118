"""Published numbers the cost model is checked against, typed from the papers as printed.

Strings keep the printed precision (see printed.py). Nothing here is computed by this project.
"""

from __future__ import annotations

# Kim, Hooper et al., "Full Stack Optimization of Transformer Inference: a Survey"
# (arXiv 2302.14017), section 2.2. 8-bit operands (1 byte each), a MAC is 2 FLOPs.
KIM2023_SEQ_LENS = [128, 256, 512, 1024, 2048, 4096]

# Figures 4-6: end-to-end totals vs sequence length: GFLOPs, GB of memory operations, FLOPs/byte.
KIM2023_FIGURES = {
    "bert-base": {
        "gflops": ["22", "46", "97", "214", "505", "1324"],
        "gmops": ["0.1", "0.2", "0.4", "1.1", "3.2", "11.2"],
        "ai": ["160", "215", "231", "202", "156", "117"],
    },
    "bert-large": {
        "gflops": ["73", "149", "310", "673", "1554", "3942"],
        "gmops": ["0.4", "0.6", "1.2", "2.9", "8.7", "29.9"],
        "ai": ["171", "239", "266", "235", "179", "131"],
    },
    "gpt2": {
        "gflops": ["22", "45", "92", "194", "428", "1012"],
        "gmops": ["11.1", "22.5", "46.2", "97.3", "214.3", "507.8"],
        "ai": ["2", "2", "2", "2", "2", "2"],
    },
}

# Table 3: BERT-Base, all 12 layers: (seq, row, GFLOPs, GB, FLOPs/byte). The printed 0.006 GB for
# act-to-act at 128 is a typo: 0.0094 matches the printed intensity and share.
KIM2023_TABLE3 = [
    (128, "mha_projections", "7.25", "0.04", "192.00"),
    (128, "mha_act_to_act", "0.60", "0.0094", "63.62"),
    (128, "ffn_projections", "14.50", "0.07", "211.86"),
    (128, "other", "0.08", "0.02", "3.14"),
    (128, "total", "22.42", "0.14", "159.68"),
    (512, "mha_projections", "28.99", "0.07", "438.86"),
    (512, "mha_act_to_act", "9.62", "0.09", "101.95"),
    (512, "ffn_projections", "57.98", "0.10", "558.54"),
    (512, "other", "0.42", "0.16", "2.73"),
    (512, "total", "97.02", "0.42", "231.0"),
    (4096, "mha_projections", "231.93", "0.33", "702.17"),
    (4096, "mha_act_to_act", "616.02", "4.98", "123.63"),
    (4096, "ffn_projections", "463.86", "0.43", "1068.52"),
    (4096, "other", "11.85", "5.47", "2.16"),
    (4096, "total", "1323.66", "11.22", "117.96"),
]

# Which of our operators make up each of Table 3's rows.
KIM2023_TABLE3_GROUPS = {
    "mha_projections": ("q_proj", "k_proj", "v_proj", "out_proj"),
    "mha_act_to_act": ("qk_matmul", "sv_matmul"),
    "ffn_projections": ("up_proj", "down_proj"),
    "other": ("attn_norm", "softmax", "attn_add", "mlp_norm", "mlp_act", "mlp_add"),
}

# Yuan et al., "LLM Inference Unveiled" (arXiv 2402.16363), Table 1: Llama-2-7B on an A6000,
# seq_len 2048, batch 1, FP16, one layer.
# (phase, operator in the paper, our operator, OPs, bytes, arithmetic intensity, bound)
YUAN2024_TABLE1 = [
    ("prefill", "q_proj", "q_proj", "68.72e9", "67.11e6", "1024", "compute"),
    ("prefill", "gate_proj", "gate_proj", "184.68e9", "151.99e6", "1215.1", "compute"),
    ("prefill", "qk_matmul", "qk_matmul", "34.36e9", "301.99e6", "113.78", "memory"),
    ("prefill", "softmax", "softmax", "671e6", "537e6", "1.25", "memory"),
    ("prefill", "norm", "attn_norm", "59e6", "34e6", "1.75", "memory"),
    ("prefill", "add", "attn_add", "8e6", "34e6", "0.25", "memory"),
    ("decode", "q_proj", "q_proj", "34e6", "34e6", "0.9995", "memory"),
    ("decode", "gate_proj", "gate_proj", "90e6", "90e6", "1", "memory"),
    ("decode", "qk_matmul", "qk_matmul", "16.78e6", "16.92e6", "0.9918", "memory"),
    ("decode", "softmax", "softmax", "328e3", "262e3", "1.25", "memory"),
]

# Pope et al., "Efficiently Scaling Transformer Inference" (arXiv 2211.05102), measured on TPU v4
# unless noted. Times in seconds unless a name says ms.
# Figure 3: communication volume per layer, bytes per chip, X=Y=Z=4, E=16384, F=65536, 2 bytes,
# batch x tokens = 2048.
POPE2022_FIGURE3 = {"ws_2d": "0.0671e9", "wg_x": "0.302e9", "wg_xy": "1.082e9", "wg_xyz": "4.29e9"}

# Table 1: maximum context, PaLM 540B on 64 chips, 30% of HBM reserved for the KV cache, bf16.
# (attention, d_head, batch, max context)
POPE2022_TABLE1 = [
    ("multihead", 128, 128, 1320),
    ("multihead", 128, 512, 330),
    ("multiquery_head_sharded", 256, 128, 660),
    ("multiquery_head_sharded", 256, 512, 165),
    ("multiquery_batch_sharded", 256, 128, 43000),
    ("multiquery_batch_sharded", 256, 512, 10700),
]

# Table 2: PaLM 540B, 64 chips; prefill = one pass over batch x 2048 tokens, decode = 64 tokens at
# context 2048. (phase, batch, FFN layout, attention sharding, weight bits, MFU, latency s)
POPE2022_TABLE2 = [
    ("prefill", 1, "ws_2d", "head", "8", 0.43, 0.29),
    ("decode", 64, "ws_2d", "batch", "8", 0.14, 1.82),
    ("prefill", 512, "wg_xyz", "batch", "16", 0.76, 85.2),
    ("decode", 512, "ws_2d", "batch", "16", 0.33, 6.0),
]

# Figure 6: decode step ms, PaLM 540B, batch 512, by chips.
POPE2022_FIGURE6_MS = {"ws_2d": {64: 92.0, 128: 73.0, 256: 67.4}, "ws_1d": {64: 96.0, 128: 93.9, 256: 88.9}}

# Figure 8: decode step ms of an 8-layer PaLM 540B, 64 chips, batch 256, by context length.
POPE2022_FIGURE8_MS = {
    "multiquery_batch_sharded": {128: 3.85, 512: 3.86, 2048: 3.86, 8192: 4.14},
    "multiquery_head_sharded": {128: 3.55, 512: 4.39, 2048: 7.72, 8192: 20.4},
    "multihead": {128: 3.77, 512: 5.84, 2048: 16.3, 8192: 55.1},
}

# Table D.2: 20 input tokens, 8 output tokens, times in ms. PaLM 540B (heads padded to 64) on 64
# TPU v4 with 2D weight-stationary layout; FasterTransformer MT-NLG 530B on A100 80GB, TP16 / TP32.
# (batch, ft_tp16_ms, ft_tp32_ms, palm_prefill_ms, palm_prefill_mfu, palm_generate_ms, palm_generate_mfu)
POPE2022_TABLE_D2 = [
    (4, 616, 493, 34, 0.14, 255, 0.01),
    (8, 660, 523, 40, 0.25, 226, 0.02),
    (16, 730, 575, 58, 0.34, 234, 0.03),
    (32, 865, 672, 99, 0.40, 235, 0.07),
    (64, 1191, 942, 186, 0.42, 265, 0.12),
    (128, 1862, 1431, 356, 0.44, 312, 0.20),
    (256, 3341, 2483, 668, 0.47, 415, 0.30),
]
