"""The catalogs against their primary sources (fact-checked 2026-12-05): every shipped model's
parameter count against its publisher's total, and the chip numbers that were wrong before that
check, each with the published figure and the arithmetic written here.

Parameter counts here (``ModelSpec.params``, what ``tuner models`` prints) leave out norm scales,
biases and learned positional embeddings (cost_models/catalog/models.yaml, header). Where the
publisher's figure is an exact count (a checkpoint's safetensors total), the test adds back exactly
what is left out and asks for equality; where it is a rounded figure, the tolerance is its rounding.
"""

from __future__ import annotations

import pytest

from cost_models.hardware import get_hardware
from cost_models.models import get_model, model_catalog

# Exact safetensors totals (Hugging Face's parameter count of each repo, model.safetensors.index.json
# metadata / the "Model size" it shows), every one a Llama-architecture checkpoint whose only weights
# beyond ours are the RMSNorm scales: two per block and the final one, (2 x layers + 1) x d_model.
SAFETENSORS_TOTALS = {
    "llama-2-7b": 6_738_415_616,  # meta-llama/Llama-2-7b-hf
    "llama-2-13b": 13_015_864_320,  # meta-llama/Llama-2-13b-hf
    "llama-2-70b": 68_976_648_192,  # meta-llama/Llama-2-70b-hf
    "llama-3-8b": 8_030_261_248,  # meta-llama/Meta-Llama-3-8B
    "llama-3-70b": 70_553_706_496,  # meta-llama/Meta-Llama-3-70B
    "llama-3.1-8b": 8_030_261_248,  # meta-llama/Llama-3.1-8B (the Llama 3 8B shapes)
    "llama-3.1-70b": 70_553_706_496,  # meta-llama/Llama-3.1-70B
    "llama-3.1-405b": 405_853_388_800,  # meta-llama/Llama-3.1-405B ("406B")
    "mistral-7b": 7_241_732_096,  # mistralai/Mistral-7B-v0.1
}


@pytest.mark.parametrize(("name", "published"), SAFETENSORS_TOTALS.items())
def test_llama_family_counts_are_the_checkpoints_less_their_norm_scales(name: str, published: int) -> None:
    m = get_model(name)
    norm_scales = (2 * m.layers + 1) * m.d_model  # e.g. Llama 3 8B: 65 x 4096 = 266,240
    assert m.params + norm_scales == published


def test_gpt2_is_the_checkpoints_124m_less_positions_biases_and_norms() -> None:
    """openai-community/gpt2: 124,439,808 parameters. Beyond ours: wpe 1024 x 768 = 786,432; per
    block ln_1 and ln_2 (2 x 2 x 768), the c_attn bias 2304, attention c_proj bias 768, c_fc bias
    3072, mlp c_proj bias 768 = 9,984, x 12 = 119,808; ln_f 2 x 768 = 1,536."""
    left_out = 1024 * 768 + 12 * (2 * 2 * 768 + 2304 + 768 + 3072 + 768) + 2 * 768
    assert get_model("gpt2").params + left_out == 124_439_808


# Published totals given rounded (and, for MoE models, the active count per token). rel is the
# figure's rounding, or the stated part the catalog leaves out.
ROUNDED = [
    # Devlin et al. 2019 section 3: 110M and 340M, counting positional and segment embeddings,
    # biases, LayerNorms and the pooler (about 1.6M and 2.6M more than our matrices).
    ("bert-base", 110e6, None, 0.02),
    ("bert-large", 340e6, None, 0.025),
    # Chowdhery et al. 2022 (arXiv 2204.02311) Table 1: 8.63B, 62.50B, 540.35B.
    ("palm-8b", 8.63e9, None, 0.001),
    ("palm-62b", 62.50e9, None, 0.001),
    ("palm-540b", 540.35e9, None, 0.0001),
    # Smith et al. 2022 (arXiv 2201.11990): 530B.
    ("mt-nlg-530b", 530e9, None, 0.002),
    # Qwen3 model cards (Qwen/Qwen3-8B, Qwen/Qwen3-32B): 8.2B and 32.8B.
    ("qwen3-8b", 8.2e9, None, 0.002),
    ("qwen3-32b", 32.8e9, None, 0.002),
    # Jiang et al. 2024 (arXiv 2401.04088): 46.7B total, 12.9B active; Mistral AI (Mixtral 8x22B
    # announcement): 141B, 39B active.
    ("mixtral-8x7b", 46.7e9, 12.9e9, 0.002),
    ("mixtral-8x22b", 141e9, 39e9, 0.004),
    # Qwen3-235B-A22B model card: 235B total, 22B active.
    ("qwen3-235b-a22b", 235e9, 22e9, 0.01),
    # DeepSeek-AI 2024 (arXiv 2412.19437): 671B total, 37B active (the MTP module not counted).
    ("deepseek-v3", 671e9, 37e9, 0.015),
    # Kimi K2 model card: "1T" total (1.03T by this count), 32B activated (32.9B).
    ("kimi-k2", 1.0e12, 32e9, 0.03),
    # Gemma 3 technical report (arXiv 2503.19786): 27B (the 27.4B of the repo adds the 0.4B SigLIP
    # vision encoder, which this text-only entry leaves out).
    ("gemma-3-27b", 27e9, None, 0.001),
    # Meta's Llama 4 announcement: Scout 109B total, Maverick 400B total, 17B active each; the 109B
    # counts Scout's vision encoder, which the text entry leaves out (107.8B here).
    ("llama-4-scout-17b-16e", 109e9, 17e9, 0.015),
    ("llama-4-maverick-17b-128e", 400e9, 17e9, 0.011),
]


@pytest.mark.parametrize(("name", "total", "active", "rel"), ROUNDED)
def test_published_rounded_totals(name: str, total: float, active: float | None, rel: float) -> None:
    m = get_model(name)
    assert m.params == pytest.approx(total, rel=rel)
    if active is not None:
        assert m.active_params == pytest.approx(active, rel=rel)


@pytest.mark.parametrize(
    ("name", "total", "active"), [("gpt-oss-20b", 20.91e9, 3.61e9), ("gpt-oss-120b", 116.83e9, 5.13e9)]
)
def test_gpt_oss_counts_are_the_model_cards(name: str, total: float, active: float) -> None:
    """OpenAI 2025 (arXiv 2508.10925) Table 1: 20.91B / 3.61B and 116.83B / 5.13B active. The
    card counts the unembedding but not the embedding (a lookup) as active; active_params counts
    both tables, so it is the card's figure plus one 201,088 x 2880 table (0.579B). The totals
    differ by the biases and attention sinks, left out here (under 0.05%)."""
    m = get_model(name)
    assert m.params == pytest.approx(total, rel=5e-4)
    assert m.active_params - m.vocab * m.d_model == pytest.approx(active, rel=2e-3)


def test_every_catalog_model_is_checked_here() -> None:
    checked = set(SAFETENSORS_TOTALS) | {row[0] for row in ROUNDED} | {"gpt2", "gpt-oss-20b", "gpt-oss-120b"}
    assert set(model_catalog()) == checked


def test_b200_bandwidth_is_the_hgx_b200_parts_7_7_tb_per_s() -> None:
    """HGX B200: 7.7 TB/s a GPU (NVIDIA Blackwell Architecture Technical Brief v2.1, Table 3, the
    per-GPU column). Its memory bus, as the CUDA driver reports it (pytorch/ao PR #4002): 7680 bits
    at a 3996 MHz memory clock, double data rate: 7680 / 8 x 3996e6 x 2 = 7.672e12 B/s. The catalog held
    the March 2024 announcement's 8 TB/s (the 8192-bit bus drivers reported before), 3.9% above it."""
    b200 = get_hardware("b200")
    bus_bytes_per_s = 7680 / 8 * 3996e6 * 2
    assert bus_bytes_per_s == pytest.approx(7.672e12, rel=1e-4)
    assert b200.memory_bandwidth_bytes_per_s == 7.7e12
    assert b200.memory_bandwidth_bytes_per_s == pytest.approx(bus_bytes_per_s, rel=0.004)
    # The same device query: 148 SMs, "L2 Cache Size: 126.50 MB" (MiB: its "178.35 GB" of global
    # memory is 179 GiB of nvidia-smi's 183,359 MiB less the runtime's reserve, so its units are 2^20).
    assert b200.compute_units == 148
    assert b200.l2_bytes == 126.5 * 2**20 == 132_644_864


def test_tpu_v7_memory_is_192_gib_at_7380_gbps() -> None:
    """Cloud TPU7x docs, key specifications: "HBM capacity per chip (GiB)" 192 and "HBM bandwidth
    per chip (GBps)" 7380. The entry held 192e9 B (6.9% short of 192 x 2^30) and 7.37e12 B/s."""
    v7 = get_hardware("tpu-v7")
    assert v7.memory_bytes == 192 * 2**30 == 206_158_430_208
    assert v7.memory_bandwidth_bytes_per_s == 7380e9
