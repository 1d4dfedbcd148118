"""Quantized checkpoints that keep some block modules 16-bit, costed as stored: the weight format
of each module class (attention projections, dense MLP, shared experts, routed experts) and the
blocks it covers come from the quantization_config's exclusion list (hf_config), and the weight
memory, the bytes a decode step streams and the GEMM kernel that times each module follow them.

Expected numbers are hand arithmetic from the config.json shapes (biases and norms left out of the
checkpoint sizes, as in every parameter count here). The quantization_config excerpts are in
tests/fixtures/hf_quantization/ (README.md says where each comes from and what is reconstructed).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from cost_models.analysis import analyze_one
from cost_models.deployment import estimate, estimate_one
from cost_models.deployments import tensor_parallel
from cost_models.dtypes import BF16, FP8, INT4
from cost_models.hardware import get_hardware
from cost_models.hf_config import model_from_hf_config
from cost_models.serving import make_workloads, serve

H200 = get_hardware("h200")
FIXTURES = Path(__file__).parent.parent / "fixtures"
SHAPES, QUANT = FIXTURES / "hf", FIXTURES / "hf_quantization"

# Llama-3.1-405B (HF meta-llama/Llama-3.1-405B-Instruct-FP8 config.json, the catalog's
# llama-3.1-405b): 126 blocks, hidden 16384, 128 heads over 8 KV heads of 128, SwiGLU 53248,
# vocab 128256, untied.
L_ATTENTION = 16384 * 16384 * 2 + 16384 * 1024 * 2  # q, o; k, v: 570,425,344 per block
L_MLP = 3 * 16384 * 53248  # gate, up, down: 2,617,245,696 per block
L_TABLE = 128256 * 16384  # the embedding, and the lm_head as many


def _read(tmp_path: Path, config: dict) -> object:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return model_from_hf_config(path)


def _llama_405b_fp8(tmp_path: Path):
    config = json.loads((SHAPES / "llama.json").read_text())  # Llama-3.1-8B's file, the 405B's shapes
    config.update(hidden_size=16384, intermediate_size=53248, num_attention_heads=128, num_hidden_layers=126)
    config["quantization_config"] = json.loads((QUANT / "llama_3_1_405b_instruct_fp8.json").read_text())
    return _read(tmp_path, config)


def _kimi_k2_thinking(tmp_path: Path):
    config = json.loads((SHAPES / "kimi_k2.json").read_text())
    config["quantization_config"] = json.loads((QUANT / "kimi_k2_thinking.json").read_text())
    return _read(tmp_path, config)


def _llama4_scout_w4a16(tmp_path: Path):
    config = json.loads((SHAPES / "llama4.json").read_text())
    config["quantization_config"] = json.loads((QUANT / "llama4_scout_w4a16.json").read_text())
    return _read(tmp_path, config)


# 405B FP8: every block's attention bf16 (126 x 570.4e6 x 2 B = 143.75 GB), the MLPs of blocks 0
# and 125 bf16 (2 x 2.617e9 x 2 B = 10.47 GB), the other 124 MLPs fp8 (324.54 GB; the fp32 row
# scales, 124 x 122,880 x 4 B = 0.06 GB, are not counted), embedding and lm_head bf16 (2 x
# 2.101e9 x 2 B = 8.41 GB): 487.16 GB. One fp8 format throughout would be 410.05 GB (126 x
# 3.188e9 x 1 B + 8.41 GB): a ~410 GB size for this checkpoint is that reading, not the list the
# Llama 3 paper's scheme gives (no fp8 in self-attention nor in the first and last blocks).
L_CHECKPOINT = 126 * L_ATTENTION * 2 + 2 * L_MLP * 2 + 124 * L_MLP * 1 + 2 * L_TABLE * 2

# Kimi K2 Thinking (the shapes of tests/fixtures/hf/kimi_k2.json): MLA attention per block 7168 x
# 1536 (q_a) + 1536 x 64 x 192 (q_b) + 7168 x 576 (kv_a) + 512 x 64 x 256 (kv_b) + 64 x 128 x
# 7168 (o); 60 MoE blocks of 384 routed experts and one shared expert of 3 x 7168 x 2048; block 0
# a dense MLP of 3 x 7168 x 18432; routers 7168 x 384; vocab 163840, untied.
K_ATTENTION = 7168 * 1536 + 1536 * 64 * 192 + 7168 * 576 + 512 * 64 * 256 + 64 * 128 * 7168
K_EXPERT = 3 * 7168 * 2048
K_DENSE = 3 * 7168 * 18432
K_ROUTER = 7168 * 384
K_TABLE = 163840 * 7168
K_INT4 = 0.5 + 2 / 32  # int4 with one bf16 scale per group of 32 weights
# Routed 60 x 384 x 44.04e6 = 1014.7e9 x 0.5625 B = 570.8 GB; attention 61 x 101.2e6 x 2 B = 12.3
# GB; shared experts 60 x 44.04e6 x 2 B = 5.3 GB; dense MLP 0.8 GB; routers (kept in the format
# here, as every checkpoint's: 0.1 GB); embedding and lm_head 4.7 GB: 593.97 GB for the published
# ~594 GB. Read as one int4 format it was 517 GB (then refused).
K_CHECKPOINT = (
    60 * 384 * K_EXPERT * K_INT4
    + 61 * K_ATTENTION * 2
    + 60 * K_EXPERT * 2
    + K_DENSE * 2
    + 60 * K_ROUTER * K_INT4
    + 2 * K_TABLE * 2
)


def test_hand_arithmetic():
    assert L_CHECKPOINT == pytest.approx(487.16e9, rel=1e-4)
    assert K_CHECKPOINT == pytest.approx(593.97e9, rel=1e-4)


def test_metas_own_release_bounds_the_405b_fp8_checkpoint_at_432_to_648_gb(tmp_path: Path):
    """Which of the two readings is Meta's checkpoint, from Meta's own files (fact-checked
    2026-12-05). meta-llama/llama-models download.sh fetches meta-llama-3.1-405b-instruct-fp8 as 8
    consolidated.NN.pth shards (PTH_FILE_COUNT=7: 00 to 07), each in PTH_FILE_CHUNK_COUNT=3 byte
    ranges of chunk_size=27000000001 (the scales are separate fp8_scales_N.pt files): each shard is
    over 2 chunks and at most 3, 54.0 to 81.0 GB, the whole 432 to 648 GB. The same script's chunk
    counts hold for the bf16 releases (MP8: 4 chunks, MP16: 2). The Llama 3 scheme's 487.16 GB
    (60.9 GB a shard) lies inside; one fp8 format throughout, 410.05 GB (51.3 GB a shard), would
    have needed 2 chunks (the ~410 GB of the all-linear fp8 repos, nvidia/ and RedHatAI/
    Llama-3.1-405B-Instruct-FP8*, is theirs). Meta's reference loader
    (llama-models models/llama3/quantization/loader.py, convert_to_fp8_quantized_model) converts
    only feed_forward w1, w3, w2, skipping layer_id 0 and n_layers - 1: the exclusion list here."""
    chunk = 27_000_000_001
    one_fp8_format = 126 * (L_ATTENTION + L_MLP) * 1 + 2 * L_TABLE * 2
    bf16 = (126 * (L_ATTENTION + L_MLP) + 2 * L_TABLE) * 2
    assert 3 * chunk < bf16 / 8 <= 4 * chunk and 1 * chunk < bf16 / 16 <= 2 * chunk  # the script's bf16 counts
    assert one_fp8_format / 8 <= 2 * chunk < L_CHECKPOINT / 8 <= 3 * chunk
    one = tensor_parallel(_llama_405b_fp8(tmp_path), H200, 1, batch=1, prompt_len=1024, gen_len=128, weight_dtype=FP8)
    weights = estimate(one, calibration=None).memory.weights_bytes_per_chip[0]
    assert 8 * 2 * chunk < weights <= 8 * 3 * chunk


def test_the_exclusion_lists_are_read_by_module_class(tmp_path: Path):
    llama = _llama_405b_fp8(tmp_path)
    assert llama.checkpoint_format == "fp8"  # quant_method fbgemm_fp8 (refused as unknown before)
    assert (llama.checkpoint_16bit_attention_layers, llama.checkpoint_16bit_mlp_layers) == (126, 2)
    kimi = _kimi_k2_thinking(tmp_path)
    assert (kimi.checkpoint_16bit_attention_layers, kimi.checkpoint_16bit_mlp_layers) == (61, 1)
    assert kimi.checkpoint_16bit_shared_expert_layers == 60 and kimi.checkpoint_scale_bytes_per_weight == 2 / 32
    scout = _llama4_scout_w4a16(tmp_path)  # re:.*self_attn and Llama4TextAttention: every block's attention
    assert scout.checkpoint_format == "int4" and scout.checkpoint_16bit_attention_layers == 48
    assert scout.checkpoint_16bit_shared_expert_layers == 0  # its shared experts are int4 (not ignored)
    assert scout.checkpoint_scale_bytes_per_weight == 2 / 128  # W4A16 group 128


@pytest.mark.parametrize(
    ("reader", "fmt", "expected"),
    [(_llama_405b_fp8, FP8, L_CHECKPOINT), (_kimi_k2_thinking, INT4, K_CHECKPOINT)],
)
def test_weight_memory_is_the_checkpoints(tmp_path: Path, reader, fmt, expected):
    model = reader(tmp_path)
    one = tensor_parallel(model, H200, 1, batch=1, prompt_len=1024, gen_len=128, weight_dtype=fmt)
    assert estimate(one, calibration=None).memory.weights_bytes_per_chip[0] == pytest.approx(expected, rel=1e-9)
    # tuner analyze's footprint (one chip) is the same checkpoint, plus the norm scales it counts.
    report = analyze_one(model, "h200", phase="decode", batch=1, seq_len=1, weight_bits="fp8" if fmt == FP8 else "4")
    norms = {FP8: 126 * 2 * 16384 * 2, INT4: 61 * 2 * 7168 * 2}[fmt]  # its attn_norm and mlp_norm rows, 16-bit
    assert report["totals"]["memory_bytes"]["weights"] == pytest.approx(expected + norms, rel=1e-9)


def test_eight_h200s_split_it_and_the_serving_memory_agrees(tmp_path: Path):
    # TP 8 splits every matrix of the 405B eight ways (8 KV heads: none replicated).
    d = tensor_parallel(_llama_405b_fp8(tmp_path), H200, 8, batch=1, prompt_len=1024, gen_len=128, weight_dtype=FP8)
    static = estimate(d, calibration=None).memory.weights_bytes_per_chip[0]
    assert static == pytest.approx(L_CHECKPOINT / 8, rel=1e-9)  # 60.9 GB, not 51.3 (all fp8)
    served = serve(d, make_workloads(backend="vllm", concurrency=8, prompt_len=1024, gen_len=128))
    assert served.weights_bytes_per_chip[0] == pytest.approx(static, rel=1e-9)


def _streamed_weight_bytes(report: dict) -> float:
    return sum(row["weight_bytes"] * row["count"] for row in report["operators"])


def test_a_decode_step_streams_the_checkpoint_as_stored(tmp_path: Path):
    """Batch 1 on an H200 reads every block weight once in its stored format and the lm_head
    (not the embedding, a lookup). 405B: 143.75 + 10.47 + 324.54 + 4.20 GB + norm scales; it
    read 405.9 GB with attention and every MLP in fp8. Kimi K2 Thinking: attention 12.3,
    shared experts 5.3, dense MLP 0.8 GB in bf16, 8 of 384 routed experts per MoE block at 4.5
    bits (60 x 8 x 44.04e6 x 0.5625 B = 11.9 GB), routers 0.09 GB, lm_head 2.35 GB: 32.7 GB, not
    the 17.6 GB one int4 format read."""
    llama = analyze_one(_llama_405b_fp8(tmp_path), "h200", phase="decode", batch=1, seq_len=1, weight_bits="fp8")
    norms = 126 * 2 * 16384 * 2
    expected = 126 * L_ATTENTION * 2 + 2 * L_MLP * 2 + 124 * L_MLP + L_TABLE * 2 + norms
    assert _streamed_weight_bytes(llama) == pytest.approx(expected, rel=1e-9)
    kimi = analyze_one(_kimi_k2_thinking(tmp_path), "h200", phase="decode", batch=1, seq_len=1, weight_bits="4")
    kimi_norms = 61 * 2 * 7168 * 2  # attn_norm and mlp_norm rows (MLA's q_a and kv_a norms are not counted)
    expected = (
        61 * K_ATTENTION * 2
        + 60 * K_EXPERT * 2
        + K_DENSE * 2
        + 60 * 8 * K_EXPERT * K_INT4
        + 60 * K_ROUTER * K_INT4
        + K_TABLE * 2
    )
    assert _streamed_weight_bytes(kimi) == pytest.approx(expected + kimi_norms, rel=1e-9)
    assert expected == pytest.approx(32.7e9, rel=2e-3)


def test_eight_h200s_stream_an_eighth_a_decode_step(tmp_path: Path):
    # The estimate's decode memory time x bandwidth: the weights above split 8 ways, plus the few
    # MB of activations and KV cache of one token (prompt 1).
    d = tensor_parallel(_llama_405b_fp8(tmp_path), H200, 8, batch=1, prompt_len=1, gen_len=1, weight_dtype=FP8)
    streamed = estimate(d, calibration=None).decode.memory_s[0] * H200.memory_bandwidth_bytes_per_s
    weights = (126 * L_ATTENTION * 2 + 2 * L_MLP * 2 + 124 * L_MLP + L_TABLE * 2) / 8
    assert streamed == pytest.approx(weights, rel=1e-3)


def test_16_bit_modules_are_timed_as_bf16_gemms_under_a_profile(tmp_path: Path):
    """Under h200-vllm, the 405B FP8 checkpoint's attention projections run bf16 GEMMs (an
    ignored layer is unquantized in vLLM), timed as the bf16 deployment's; its MLPs are 124/126
    fp8 and 2/126 bf16 kernels."""
    mixed = _llama_405b_fp8(tmp_path)
    fp8 = mixed.model_copy(update={"checkpoint_16bit_attention_layers": 0, "checkpoint_16bit_mlp_layers": 0})
    kwargs = dict(phase="decode", batch=8, seq_len=1024, calibration="h200-vllm")
    times = {
        name: {
            row["name"]: row["time_s"]
            for row in analyze_one(model, "h200", weight_bits=w, act_bits=w, **kwargs)["operators"]
        }
        for name, model, w in (("mixed", mixed, "fp8"), ("fp8", fp8, "fp8"), ("bf16", fp8, "16"))
    }
    for op in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert times["mixed"][op] == pytest.approx(times["bf16"][op], rel=1e-12)
        assert times["bf16"][op] != pytest.approx(times["fp8"][op], rel=1e-3)
    for op in ("gate_proj", "up_proj", "down_proj"):
        blend = 124 / 126 * times["fp8"][op] + 2 / 126 * times["bf16"][op]
        assert times["mixed"][op] == pytest.approx(blend, rel=1e-12)


def test_served_in_another_format_it_is_that_format_throughout(tmp_path: Path):
    # An engine that converts the checkpoint (bf16 weights) stores every block weight in it.
    model = _llama_405b_fp8(tmp_path)
    d = tensor_parallel(model, H200, 8, batch=1, prompt_len=1024, gen_len=128, weight_dtype=BF16)
    weights = estimate(d, calibration=None).memory.weights_bytes_per_chip[0]
    assert weights == pytest.approx(126 * (L_ATTENTION + L_MLP) * 2 / 8 + 2 * L_TABLE * 2 / 8, rel=1e-9)
    assert np.isfinite(weights)


def test_the_estimate_says_which_modules_it_charged_16_bit(tmp_path: Path):
    kimi = _kimi_k2_thinking(tmp_path)
    kwargs = dict(batch=8, prompt_len=1024, gen_len=128, tp=8, calibration=None)
    notes = estimate_one(kimi, "h200", weight_bits="4", **kwargs)["notes"]
    (said,) = [note for note in notes if "16-bit" in note]
    assert "attention in 61 of 61 blocks" in said and "the shared experts in 60 of 60 blocks" in said
    assert "0.0625 B of group scales" in said and "\n" not in said
    converted = estimate_one(kimi, "h200", weight_bits="16", **kwargs)["notes"]
    assert any("the engine converts the checkpoint" in note for note in converted)


def test_16_bit_attention_computes_at_the_bf16_peak_on_the_roofline(tmp_path: Path):
    """A 2048-token prefill's projections are compute-bound: the 405B FP8 checkpoint's bf16
    attention runs at the H200's bf16 peak (989.4 TFLOP/s dense, NVIDIA's datasheet), not fp8's 1978.9, so each takes
    2 x 2048 x 16384 x 16384 / 989.4e12 s (q_proj, 1.11 ms), twice the fp8 time; its MLPs, fp8 in
    124 of 126 blocks, keep the fp8 peak. Before, the prefill of 8 x 1024 tokens on 8 H200s read
    699.0 ms at the roofline, the attention at the fp8 peak; now 773.4."""
    mixed = _llama_405b_fp8(tmp_path)
    kwargs = dict(phase="prefill", batch=1, seq_len=2048, weight_bits="fp8", act_bits="fp8", calibration="none")
    rows = {row["name"]: row for row in analyze_one(mixed, "h200", **kwargs)["operators"]}
    assert rows["q_proj"]["bound"] == "compute"
    assert rows["q_proj"]["roofline_time_s"] == pytest.approx(2 * 2048 * 16384 * 16384 / 989.4e12, rel=1e-9)
    assert rows["gate_proj"]["roofline_time_s"] == pytest.approx(2 * 2048 * 16384 * 53248 / 1978.9e12, rel=1e-9)
