"""Multi-head latent attention (MLA) and sliding-window attention in the cost model.

Expected values are worked out by hand from the shapes (DeepSeek-V3: HF deepseek-ai/DeepSeek-V3
config.json; DeepSeek-V2 paper arXiv 2405.04434 section 2.1 for the MLA matrices):

DeepSeek-V3: 61 layers, d_model 7168, 128 heads, qk_nope 128 (d_head), qk_rope 64, v_head_dim 128,
q_lora_rank 1536, kv_lora_rank 512; per block the MLA matrices are
  q_a 7168 x 1536           =  11,010,048
  q_b 1536 x 128 x 192      =  37,748,736
  kv_a 7168 x (512 + 64)    =   4,128,768
  kv_b 512 x 128 x (128+128) =  16,777,216
  o 128 x 128 x 7168        = 117,440,512
  total                     = 187,105,280
KV cache per token: 61 layers x (512 + 64) elements x 2 bytes (bf16) = 70,272 bytes.
"""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.deployment import estimate
from cost_models.deployments import make_deployments, tensor_parallel
from cost_models.dtypes import BF16, FP8
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.inference_configs import make_configs
from cost_models.model_counts import attention_params
from cost_models.models import ModelSpec, get_model
from cost_models.operators import OP, banded_causal_pairs, operator_costs
from cost_models.partitioning import kv_cache_split
from cost_models.serving import make_workloads, serve

DSV3 = get_model("deepseek-v3")
H200 = get_hardware("h200")
MLA_ATTENTION_PER_BLOCK = 11_010_048 + 37_748_736 + 4_128_768 + 16_777_216 + 117_440_512
assert MLA_ATTENTION_PER_BLOCK == 187_105_280
DSV3_KV_BYTES_PER_TOKEN = 61 * (512 + 64) * 2
assert DSV3_KV_BYTES_PER_TOKEN == 70_272

# A GQA model with a window of 128 on half its 32 blocks (gpt-oss's pattern at Llama-3-8B's size):
# K and V per token and layer = 2 x 8 heads x 128 x 2 bytes = 4096 bytes.
WINDOWED = ModelSpec(
    name="windowed-test",
    source="test",
    layers=32,
    d_model=4096,
    heads=32,
    kv_heads=8,
    d_head=128,
    d_ff=14336,
    ffn="swiglu",
    vocab=128256,
    sliding_window=128,
    sliding_window_layers=16,
)
KV_PER_TOKEN_LAYER = 2 * 8 * 128 * 2


def _total(ops, field: str, name: str) -> float:
    i = OP[name]
    return float((getattr(ops, field)[i] * ops.repeats[i])[0])


# --- counts -------------------------------------------------------------------------------------


def test_mla_attention_parameters_by_hand() -> None:
    per_block = attention_params(7168, 128, 128, 128, kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64,
                                 v_head_dim=128)  # fmt: skip
    assert float(per_block) == MLA_ATTENTION_PER_BLOCK


def test_deepseek_v3_total_and_active_parameters_by_hand() -> None:
    dense_ffn = 3 * 7168 * 18432  # the first 3 blocks
    router = 7168 * 256
    expert = 3 * 7168 * 2048  # one swiglu expert (the shared one is as wide)
    embeddings = 2 * 129280 * 7168  # untied
    total = 61 * MLA_ATTENTION_PER_BLOCK + 3 * dense_ffn + 58 * (router + 257 * expert) + embeddings
    active = 61 * MLA_ATTENTION_PER_BLOCK + 3 * dense_ffn + 58 * (router + 9 * expert) + embeddings
    assert DSV3.params == total
    assert DSV3.active_params == active
    assert DSV3.params == pytest.approx(671e9, rel=0.001)  # the paper's 671B
    assert DSV3.active_params == pytest.approx(37e9, rel=0.02)  # the paper's 37B


def test_deepseek_v3_kv_bytes_per_token_is_the_latent_not_per_head() -> None:
    c = make_configs(DSV3, phase="decode", batch=1, seq_len=4096)
    assert c.kv_bytes_per_token()[0] == DSV3_KV_BYTES_PER_TOKEN
    fp8 = make_configs(DSV3, phase="decode", batch=1, seq_len=4096, kv_dtype=FP8)
    assert fp8.kv_bytes_per_token()[0] == DSV3_KV_BYTES_PER_TOKEN / 2


def test_windowed_layers_cache_at_most_the_window() -> None:
    c = make_configs(WINDOWED, phase="decode", batch=1, seq_len=8192)
    # A sequence of 8192 tokens: 16 full layers x 8192 + 16 windowed layers x 128 entries.
    footprint = c.kv_bytes_per_token(8192.0)[0] * 8192
    assert footprint == (16 * 8192 + 16 * 128) * KV_PER_TOKEN_LAYER
    # Below the window nothing is capped; uncapped (None) is every layer.
    assert c.kv_bytes_per_token(100.0)[0] == 32 * KV_PER_TOKEN_LAYER
    assert c.kv_bytes_per_token()[0] == 32 * KV_PER_TOKEN_LAYER


# --- operators ----------------------------------------------------------------------------------


def test_windowed_decode_reads_the_window_on_windowed_layers() -> None:
    """At 8k context, a decode step reads (16 x 8192 + 16 x 128) tokens' K and V per sequence."""
    c = make_configs(WINDOWED, phase="decode", batch=1, seq_len=8192, flash_attention=True)
    ops = operator_costs(c)
    assert _total(ops, "kv_read_bytes", "fused_attention") == (16 * 8192 + 16 * 128) * KV_PER_TOKEN_LAYER
    # FLOPs: 4 x d_head per score (QK^T and PV) x 32 heads x the same keys, plus the softmax.
    scores = 32 * (16 * 8192 + 16 * 128)
    assert _total(ops, "flops", "fused_attention") == pytest.approx(
        4 * 128 * scores + 5 * scores, rel=0.05
    )  # softmax FLOPs per score are a convention (a few): the matmuls dominate


def test_windowed_prefill_counts_the_causal_band() -> None:
    # sum over i = 1..10 of min(i, 4) = 1 + 2 + 3 + 4 x 7 = 34
    assert float(banded_causal_pairs(np.array(10.0), np.array(4.0))) == 34.0
    assert float(banded_causal_pairs(np.array(3.0), np.array(4.0))) == 6.0  # under the window: T(T+1)/2
    c = make_configs(WINDOWED, phase="prefill", batch=1, seq_len=1024, flash_attention=True)
    unwindowed = make_configs(
        WINDOWED.model_copy(update={"sliding_window": 0, "sliding_window_layers": 0}),
        phase="prefill",
        batch=1,
        seq_len=1024,
        flash_attention=True,
    )
    band = 128 * 129 / 2 + (1024 - 128) * 128  # 122,944 pairs per head in a windowed block
    full = 1024 * 1025 / 2  # 524,800
    ratio = _total(operator_costs(c), "flops", "fused_attention") / _total(
        operator_costs(unwindowed), "flops", "fused_attention"
    )
    assert ratio == pytest.approx((16 * band + 16 * full) / (32 * full))


def test_mla_decode_attends_over_the_latent_read_once() -> None:
    """Absorbed decode (DeepSeek-V2 appendix C, FlashMLA): per layer and token at 4096 keys,
    QK^T over 512 + 64 wide keys and PV over the 512-wide latent, for each of 128 heads; the
    latent (576 elements, bf16) is read once for all heads."""
    c = make_configs(DSV3, phase="decode", batch=1, seq_len=4096, flash_attention=False)
    ops = operator_costs(c)
    assert ops.flops[OP["qk_matmul"]][0] == 2 * 128 * 4096 * 576  # 603,979,776
    assert ops.flops[OP["sv_matmul"]][0] == 2 * 128 * 4096 * 512  # 536,870,912
    assert ops.kv_read_bytes[OP["qk_matmul"]][0] == 4096 * 576 * 2
    fused = operator_costs(make_configs(DSV3, phase="decode", batch=1, seq_len=4096, flash_attention=True))
    assert fused.kv_read_bytes[OP["fused_attention"]][0] == 4096 * 576 * 2  # once, not K and V apart
    # KV written per token and layer: the latent and the rotary key.
    assert fused.kv_write_bytes[OP["k_proj"]][0] == 576 * 2


def test_mla_prefill_decompresses_heads() -> None:
    """Prefill attention of 1024 tokens, causal: per head 1024 x 1025 / 2 scores over q/k width
    128 + 64 and v width 128."""
    c = make_configs(DSV3, phase="prefill", batch=1, seq_len=1024, flash_attention=False, causal=True)
    ops = operator_costs(c)
    pairs = 128 * 1024 * 1025 / 2
    assert ops.flops[OP["qk_matmul"]][0] == 2 * 192 * pairs
    assert ops.flops[OP["sv_matmul"]][0] == 2 * 128 * pairs
    # The cache is written once per token (the latent), K and V per head are activations.
    assert ops.kv_write_bytes[OP["k_proj"]][0] == 1024 * 576 * 2
    assert ops.kv_read_bytes[OP["qk_matmul"]][0] == 0.0


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_mla_projections_read_every_attention_weight_once(phase: str) -> None:
    c = make_configs(DSV3, phase=phase, batch=1, seq_len=128, weight_dtype=BF16)
    ops = operator_costs(c)
    slots = [OP[name] for name in ("q_proj", "k_proj", "v_proj", "out_proj")]
    assert ops.weight_bytes[slots, 0].sum() == MLA_ATTENTION_PER_BLOCK * 2
    # Each is a per-token matmul: 2 FLOPs per weight element per token.
    tokens = 128 if phase == "prefill" else 1
    assert ops.flops[slots, 0].sum() == 2 * tokens * MLA_ATTENTION_PER_BLOCK


# --- partitioning, memory, serving ---------------------------------------------------------------


def test_latent_cache_is_replicated_over_tensor_parallel_ranks() -> None:
    mesh = np.array([[1.0, 1.0, 8.0], [1.0, 1.0, 8.0], [1.0, 1.0, 8.0]])
    heads = np.array([128.0, 128.0, 8.0])
    latent = np.array([True, True, False])
    sharded = np.array([False, True, False])
    ways, _, _ = kv_cache_split(heads, np.array([8.0, 8.0, 8.0]), mesh, sharded, latent)
    # MLA by heads: whole on every rank; MLA by batch: 8 sequences over 8 chips; GQA 8 heads: 8.
    assert list(ways) == [1.0, 8.0, 8.0]


def test_deepseek_v3_memory_per_chip_on_8_h200() -> None:
    d = make_deployments(
        DSV3,
        H200,
        mesh=np.array([[1, 1, 8]]),
        batch=64,
        prompt_len=2048,
        gen_len=512,
        weight_dtype=FP8,
        flash_attention=True,
    )
    e = estimate(d)  # pure roofline
    # The latent is replicated on each of the 8 ranks: 70,272 B x 64 sequences x 2560 tokens.
    assert e.memory.kv_cache_bytes_per_chip[0] == DSV3_KV_BYTES_PER_TOKEN * 64 * 2560
    # fp8 weights (1 byte) over 8 chips, MLA's matrices counted as they are (not heads x d_head),
    # except the 58 routers (7168 x 256 each), whole on every chip; the embedding and lm_head
    # (129280 x 7168 each) are bf16 in the checkpoint and stay so (1 byte more each element).
    routers = 58 * 7168 * 256
    tables = 2 * 129280 * 7168
    assert e.memory.weights_bytes_per_chip[0] == pytest.approx(
        (DSV3.params - routers + tables) / 8 + routers, rel=1e-12
    )


@pytest.mark.parametrize("prompt_len", [512, 32768])
def test_longest_context_that_fits_lets_the_windowed_layers_stop_at_the_window(prompt_len) -> None:
    # Gemma 3 27B on one H200, fp8 weights, one sequence: 10 full-attention layers grow with every
    # token, the 52 windowed ones stop at 1024 (16 KV heads x 128 x 2 x 2 bytes a layer a token).
    # The budget left after weights and activations holds C tokens where
    #   10 x C x per_layer + 52 x 1024 x per_layer = budget,
    # whatever the prompt: dividing by the bytes a token costs at the prompt's own length (52
    # windowed layers nearly in full at 512 tokens) said 243,512 tokens at a 512-token prompt, not 1,504,450.
    gemma = get_model("gemma-3-27b")
    d = tensor_parallel(gemma, H200, 1, batch=1, prompt_len=prompt_len, gen_len=128, weight_dtype=FP8)
    m = estimate(d).memory
    per_layer = 16 * 128 * 2 * 2
    budget = m.capacity_bytes_per_chip[0] - m.weights_bytes_per_chip[0] - m.activation_bytes_per_chip[0]
    assert m.max_context_tokens[0] == np.floor(1024 + (budget - 62 * 1024 * per_layer) / (10 * per_layer))
    # The KV cache at that context fills the budget: the windowed layers' cap, the full ones' growth.
    filled = (10 * m.max_context_tokens[0] + 52 * 1024) * per_layer
    assert budget - 10 * per_layer < filled <= budget


def test_serving_paged_kv_uses_the_latent_and_the_window() -> None:
    d = tensor_parallel(DSV3, H200, 8, weight_dtype=FP8)
    w = make_workloads(backend="sglang", concurrency=1, prompt_len=1024, gen_len=128)
    e = serve(d, w)
    assert e.kv_bytes_per_token_per_chip[0] == DSV3_KV_BYTES_PER_TOKEN  # not split over TP
    d = tensor_parallel(WINDOWED, H200, 1)
    w = make_workloads(backend="sglang", concurrency=1, prompt_len=8000, gen_len=192)
    e = serve(d, w)
    # Per token of a request at 8192 tokens: (16 x 8192 + 16 x 128) / 8192 layers' entries.
    assert e.kv_bytes_per_token_per_chip[0] == pytest.approx((16 * 8192 + 16 * 128) / 8192 * KV_PER_TOKEN_LAYER)


# --- bad input ----------------------------------------------------------------------------------


def _model_yaml(tmp_path, **fields) -> str:
    import yaml

    base = WINDOWED.model_dump(exclude={"name"})
    base.update(fields)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "bad-test", **base}))
    return str(path)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"sliding_window": 8192, "max_context": 8192}, "sliding_window"),
        ({"sliding_window": 0}, "sliding_window_layers"),
        ({"kv_lora_rank": 512, "kv_heads": 32}, "qk_rope_head_dim"),
        ({"kv_lora_rank": 512, "qk_rope_head_dim": 64}, "kv_heads"),
        ({"q_lora_rank": 1536}, "q_lora_rank"),
    ],
)
def test_bad_mla_and_window_fields_are_one_line_errors(tmp_path, fields, named) -> None:
    with pytest.raises(InvalidInputError) as error:
        get_model(_model_yaml(tmp_path, **fields))
    message = str(error.value)
    assert named in message and "\n" not in message


def test_kv_heads_what_if_on_an_mla_model_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="kv_heads"):
        make_deployments(DSV3, H200, mesh=np.array([[1, 1, 8]]), batch=1, prompt_len=16, gen_len=4, kv_heads=8)


def test_calibrated_gemm_shapes_of_mla_projections() -> None:
    """Decode, one sequence, one chip: kv_a is a 7168 x 576 GEMM, W_UV 512 x (128 x 128), and the
    query chain (q_a, q_b, W_UK) one GEMM of k = 7168 with its own weight elements
    (11,010,048 + 37,748,736 + 8,388,608) / 7168 wide."""
    from cost_models.calibrated_times import _mla_gemm_shapes
    from cost_models.partitioning import GEMM_AXES, gemm_shapes_per_chip, per_chip_costs, sharding_plan

    c = make_configs(DSV3, phase="decode", batch=1, seq_len=4096, flash_attention=True)
    mesh, layouts, heads = np.ones((1, 3)), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=bool)
    plan = sharding_plan(c, mesh, layouts)
    chip_ops = per_chip_costs(operator_costs(c), c, mesh, layouts, heads, plan, np.ones(1))
    m, n, k = _mla_gemm_shapes(chip_ops, c, gemm_shapes_per_chip(chip_ops, plan))
    row = {op: i for i, op in enumerate(GEMM_AXES)}
    assert (m[row["k_proj"], 0], n[row["k_proj"], 0], k[row["k_proj"], 0]) == (1.0, 576.0, 7168.0)
    assert (m[row["v_proj"], 0], n[row["v_proj"], 0], k[row["v_proj"], 0]) == (1.0, 16384.0, 512.0)
    assert n[row["q_proj"], 0] == pytest.approx((11_010_048 + 37_748_736 + 8_388_608) / 7168)
    assert (m[row["q_proj"], 0], k[row["q_proj"], 0]) == (1.0, 7168.0)


def test_kv_heads_what_if_on_an_mla_model_is_refused_in_analysis_configs() -> None:
    with pytest.raises(InvalidInputError, match="kv_heads"):
        make_configs(DSV3, phase="decode", batch=1, seq_len=16, kv_heads=8)
    # The model's own value is no what-if.
    assert make_configs(DSV3, phase="decode", batch=1, seq_len=16, kv_heads=128).kv_heads[0] == 128


@pytest.mark.parametrize(("model", "tp_degree"), [(DSV3, 8), (WINDOWED, 1)])
def test_serving_iterations_charge_the_same_attention_as_the_static_decode_step(monkeypatch, model, tp_degree) -> None:
    """One client: every iteration is one decode step of one sequence, so the serving TPOT is the
    static decode step at the same mean context (MLA's latent read on every rank; the windowed
    blocks' capped reads), both from the operator costs."""
    # Two paths' formulas compared to float64 rounding: estimate's roofline in float64 (its
    # float32 default, deployment.ROOFLINE_DTYPE, is ~1e-7 from it: test_float32_roofline.py).
    monkeypatch.setattr("cost_models.deployment.ROOFLINE_DTYPE", np.float64)
    d = make_deployments(
        model,
        H200,
        mesh=np.array([[1, 1, tp_degree]]),
        batch=1,
        prompt_len=8000,
        gen_len=192,
        prefill_ffn_layout=0,
        decode_ffn_layout=0,
        weight_dtype=FP8,
        flash_attention=True,
    )
    w = make_workloads(backend="trtllm", concurrency=1, prompt_len=8000, gen_len=192, requests_per_client=0)
    assert serve(d, w).tpot_s[0] == pytest.approx(estimate(d).decode_step_latency_s[0], rel=1e-9)


SHIPPED_GPU_PROFILES = [
    f"{chip}-{engine}" for chip in ("h100-sxm", "h200", "b200", "gb200") for engine in ("vllm", "sglang", "trtllm")
]


@pytest.mark.parametrize("profile_name", SHIPPED_GPU_PROFILES)
def test_mla_decode_attention_under_attention_dp_is_no_slower_than_under_tp(profile_name) -> None:
    """DeepSeek-V3's decode attention over a 2304-token latent cache, 256 sequences on 8 GPUs,
    as engines serve it. TP 8 (heads split): each GPU runs 256 sequences x 16 heads and reads
    all 256 sequences' latents. Attention DP 8 (TP 1, SGLang --enable-dp-attention, TRT-LLM
    enable_attention_dp): each GPU runs its own 32 sequences x 128 heads and reads only their
    latents. Per GPU the math is the same, 4 x 256 x 16 x 2304 x 544 = 4 x 32 x 128 x 2304 x 544
    FLOPs (QK^T over 576 values, PV over 512: 2 x (576 + 512) = 4 x 544 per head and key), and
    the bytes are 1/8 (32 x 2304 x 576 x 2 = 84.9 MB against 679 MB), so the attention-DP kernel
    cannot be slower. The GQA kernel fits' fallback past ~32-70 query heads per KV head
    (TRT-LLM's XQA limit) charged the 128-head MLA rows 0.1-0.7% of the bf16 peak: gb200-trtllm
    1.72 ms against 27 us at 16 heads."""
    from cost_models.calibrated_times import fused_attention_time_s
    from cost_models.calibration import load_profile

    chip_name = profile_name.rsplit("-", 1)[0]
    chip = get_hardware(chip_name)
    profile = load_profile(profile_name)
    configs = make_configs(
        DSV3, phase="decode", batch=np.array([32, 256]), seq_len=2304, weight_dtype=FP8, flash_attention=True
    )
    chips = np.array([1.0, 8.0])  # attention DP: one GPU's own sequences; TP 8: heads over 8
    seconds = fused_attention_time_s(configs, chips, np.array([False, False]), chip, profile)
    attention_dp_s, tensor_parallel_s = seconds
    assert attention_dp_s <= tensor_parallel_s, (attention_dp_s, tensor_parallel_s)
