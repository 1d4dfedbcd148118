"""The ``tuner`` command line: catalogs, ``analyze`` (table, JSON, plot) and bad input.

Most tests call ``tuner.cli.main(argv)`` in-process and read stdout/stderr with capsys; a few run
the installed ``tuner`` console script in a subprocess to prove what a user sees: one ``error:``
line and exit code 2 for bad input, never a traceback.

Expected numbers are derived by hand from the model shapes in ``cost_models/catalog/models.yaml``
and the operator formulas (weights d_in x d_out elements, bytes per element bf16 2, int8/fp8 1,
int4 0.5), not read back from the code under test.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import assert_one_error_line, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

MODEL_NAMES = (
    "bert-base",
    "bert-large",
    "gpt2",
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3-8b",
    "llama-3-70b",
    "mistral-7b",
    "palm-8b",
    "palm-62b",
    "palm-540b",
    "mt-nlg-530b",
)
HARDWARE_NAMES = (
    "tpu-v4",
    "tpu-v5e",
    "tpu-v5p",
    "a100-40gb",
    "a100-80gb",
    "h100-sxm",
    "h200",
    "a6000",
    "l4",
    "xeon-gold-6242",
)

# Llama-2-7B shapes (HF config.json): d_model 4096, 32 heads x d_head 128, 32 layers, d_ff 11008,
# vocab 32000, untied embeddings.
D = 4096
DFF = 11008
LAYERS = 32
VOCAB = 32000
# Matrix parameters: per block 4 x 4096^2 (q, k, v, out) + 3 x 4096 x 11008 (gate, up, down);
# plus embedding and lm_head, 32000 x 4096 each.
LLAMA_2_7B_PARAMS = LAYERS * (4 * D * D + 3 * D * DFF) + 2 * VOCAB * D
assert LLAMA_2_7B_PARAMS == 6_738_149_376
# Two RMSNorm scales per block (d_model elements each), kept in the 16-bit activation format.
LLAMA_2_7B_NORM_BYTES = LAYERS * 2 * D * 2


# --- helpers -------------------------------------------------------------------------------------


def analyze_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = run_cli(capsys, "analyze", *args, "--json")
    assert code == 0, err
    assert err == ""
    return json.loads(out)


def ops_by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["name"]: op for op in report["operators"]}


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


LLAMA_LIKE_CONFIG = {
    "_name_or_path": "test-org/tiny-llama",
    "model_type": "llama",
    "hidden_size": 512,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "num_hidden_layers": 4,
    "intermediate_size": 1376,
    "vocab_size": 1000,
}

DECODE_7B = ("--model", "llama-2-7b", "--hardware", "a6000", "--phase", "decode", "--batch", "1", "--seq-len", "128")


# --- catalogs ------------------------------------------------------------------------------------


def test_models_table(capsys):
    code, out, err = run_cli(capsys, "models")
    assert code == 0 and err == ""
    assert "Models" in out
    for name in MODEL_NAMES:
        assert name in out
    for column in ("params", "attention", "kv_heads"):
        assert column in out
    assert "GQA" in out and "MQA" in out and "MHA" in out


def test_models_json(capsys):
    code, out, err = run_cli(capsys, "models", "--json")
    assert code == 0 and err == ""
    models = json.loads(out)
    assert isinstance(models, list)
    by_name = {m["name"]: m for m in models}
    for name in ("llama-2-7b", "palm-540b", "bert-base"):
        assert name in by_name
    for m in models:
        assert isinstance(m["params"], int) and m["params"] > 0
        assert m["attention_type"] in ("MHA", "MQA", "GQA", "MLA")
    assert by_name["llama-2-7b"]["params"] == LLAMA_2_7B_PARAMS
    assert by_name["llama-2-7b"]["attention_type"] == "MHA"
    assert by_name["llama-2-70b"]["attention_type"] == "GQA"  # 64 heads, 8 KV heads
    assert by_name["palm-540b"]["attention_type"] == "MQA"
    assert by_name["bert-base"]["kind"] == "encoder"


def test_hardware_table(capsys):
    code, out, err = run_cli(capsys, "hardware")
    assert code == 0 and err == ""
    for name in HARDWARE_NAMES:
        assert name in out
    assert "torus" in out and "bandwidth" in out


def test_hardware_json(capsys):
    code, out, err = run_cli(capsys, "hardware", "--json")
    assert code == 0 and err == ""
    chips = json.loads(out)
    assert isinstance(chips, list)
    by_name = {c["name"]: c for c in chips}
    for name in ("tpu-v4", "h100-sxm", "a6000", "xeon-gold-6242"):
        assert name in by_name
    for chip in chips:
        assert chip["peak_ops_per_s"]["bf16"] > 0
        assert chip["memory_bandwidth_bytes_per_s"] > 0
    assert by_name["h100-sxm"]["peak_ops_per_s"]["fp8"] is not None
    assert by_name["tpu-v4"]["peak_ops_per_s"]["fp8"] is None


# --- analyze: table ------------------------------------------------------------------------------


def test_analyze_table_decode(capsys):
    code, out, err = run_cli(
        capsys,
        "analyze",
        "--model",
        "llama-2-7b",
        "--hardware",
        "a6000",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--seq-len",
        "2048",
        "--calibration",
        "none",
    )
    assert code == 0 and err == ""
    assert "llama-2-7b on a6000: decode, batch 1, seq_len 2048" in out
    for name in (
        "attn_norm",
        "q_proj",
        "k_proj",
        "v_proj",
        "qk_matmul",
        "softmax",
        "sv_matmul",
        "out_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "lm_head",
    ):
        assert name in out
    assert "fused_attention" not in out
    assert "x32" in out and "once" in out
    assert "memory" in out  # decode at batch 1 is memory-bound
    assert "whole model:" in out and "on the roofline" in out
    assert "memory: weights" in out and "KV cache" in out


def test_analyze_table_prefill(capsys):
    code, out, err = run_cli(
        capsys,
        "analyze",
        "--model",
        "llama-2-7b",
        "--hardware",
        "h100-sxm",
        "--phase",
        "prefill",
        "--batch",
        "4",
        "--seq-len",
        "1024",
    )
    assert code == 0 and err == ""
    assert "llama-2-7b on h100-sxm: prefill, batch 4, seq_len 1024" in out
    assert "compute" in out  # big prefill projections are compute-bound
    assert "whole model:" in out


def test_analyze_table_flash_attention(capsys):
    code, out, err = run_cli(capsys, "analyze", *DECODE_7B, "--flash-attention")
    assert code == 0 and err == ""
    assert "fused_attention" in out
    for name in ("qk_matmul", "softmax", "sv_matmul"):
        assert name not in out


# --- analyze: JSON -------------------------------------------------------------------------------


def test_analyze_json_prefill(capsys):
    B, S = 2, 512
    report = analyze_json(
        capsys,
        "--model",
        "llama-2-7b",
        "--hardware",
        "a100-80gb",
        "--phase",
        "prefill",
        "--batch",
        str(B),
        "--seq-len",
        str(S),
    )
    for key in ("model", "hardware", "phase", "batch", "seq_len", "operators", "totals"):
        assert key in report
    assert (report["model"], report["hardware"], report["phase"]) == ("llama-2-7b", "a100-80gb", "prefill")
    assert (report["batch"], report["seq_len"]) == (B, S)
    assert report["weight_dtype"] == report["act_dtype"] == report["kv_dtype"] == "bf16"
    assert report["flash_attention"] is False and report["causal"] is False
    ops = ops_by_name(report)
    assert ops["lm_head"]["scope"] == "per_model" and ops["lm_head"]["count"] == 1
    for name, op in ops.items():
        if name != "lm_head":
            assert op["scope"] == "per_block" and op["count"] == LAYERS
        assert op["bound"] in ("compute", "memory")
        parts = (
            op["weight_bytes"]
            + op["act_read_bytes"]
            + op["act_write_bytes"]
            + op["kv_read_bytes"]
            + op["kv_write_bytes"]
        )
        assert op["bytes"] == pytest.approx(parts, rel=1e-12)
    tokens = B * S
    assert ops["q_proj"]["flops"] == 2 * tokens * D * D
    assert ops["q_proj"]["weight_bytes"] == D * D * 2
    assert ops["gate_proj"]["flops"] == 2 * tokens * D * DFF
    # unfused, non-causal: every sequence and head scores the whole S x S square, 2 d_head each
    assert ops["qk_matmul"]["flops"] == 2 * 128 * B * 32 * S * S
    # k_proj writes the KV cache in a decoder
    assert ops["k_proj"]["kv_write_bytes"] == tokens * D * 2
    assert ops["k_proj"]["act_write_bytes"] == 0
    totals = report["totals"]
    assert totals["flops"] == pytest.approx(sum(o["flops"] * o["count"] for o in ops.values()), rel=1e-12)
    assert totals["bytes"] == pytest.approx(sum(o["bytes"] * o["count"] for o in ops.values()), rel=1e-12)
    assert totals["time_s"] == pytest.approx(sum(o["time_s"] * o["count"] for o in ops.values()), rel=1e-12)
    memory = totals["memory_bytes"]
    # K and V, 32 layers x 4096 wide, 2 bytes, for B x S positions
    assert memory["kv_cache"] == 2 * LAYERS * D * 2 * B * S
    assert memory["weights"] == LLAMA_2_7B_PARAMS * 2 + LLAMA_2_7B_NORM_BYTES
    assert memory["total"] == pytest.approx(memory["weights"] + memory["kv_cache"] + memory["activations"])


def test_analyze_json_decode(capsys):
    B, S = 4, 2048
    report = analyze_json(
        capsys,
        "--model",
        "llama-2-7b",
        "--hardware",
        "a6000",
        "--phase",
        "decode",
        "--batch",
        str(B),
        "--seq-len",
        str(S),
    )
    assert report["phase"] == "decode" and (report["batch"], report["seq_len"]) == (B, S)
    ops = ops_by_name(report)
    assert ops["q_proj"]["flops"] == 2 * B * D * D  # one new token per sequence
    assert ops["k_proj"]["kv_write_bytes"] == B * D * 2
    assert ops["qk_matmul"]["kv_read_bytes"] == B * S * D * 2  # the whole K cache, once
    assert ops["sv_matmul"]["kv_read_bytes"] == B * S * D * 2
    for name in (
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "qk_matmul",
        "sv_matmul",
        "lm_head",
    ):
        assert ops[name]["bound"] == "memory", name
    assert report["totals"]["time_s"] > 0


def test_analyze_json_encoder_bert_base(capsys):
    B, S, d = 8, 128, 768
    report = analyze_json(
        capsys,
        "--model",
        "bert-base",
        "--hardware",
        "a100-80gb",
        "--phase",
        "prefill",
        "--batch",
        str(B),
        "--seq-len",
        str(S),
    )
    assert report["model"] == "bert-base" and report["phase"] == "prefill"
    ops = ops_by_name(report)
    assert "lm_head" not in ops  # an encoder has no lm_head pass in inference
    assert "gate_proj" not in ops  # GELU MLP
    assert "mlp_norm" in ops  # serial block
    assert all(op["count"] == 12 for op in ops.values())
    # K and V are plain activations in an encoder: no KV cache traffic or footprint
    assert all(op["kv_read_bytes"] == 0 and op["kv_write_bytes"] == 0 for op in ops.values())
    assert ops["k_proj"]["act_write_bytes"] == B * S * d * 2
    assert ops["q_proj"]["flops"] == 2 * B * S * d * d
    assert report["totals"]["memory_bytes"]["kv_cache"] == 0


def test_analyze_json_parallel_block_mqa_palm_8b(capsys):
    S = 1024
    report = analyze_json(
        capsys, "--model", "palm-8b", "--hardware", "tpu-v4", "--phase", "decode", "--batch", "1", "--seq-len", str(S)
    )
    assert report["kv_heads"] == 1
    ops = ops_by_name(report)
    assert "mlp_norm" not in ops  # parallel block: attention and FFN share one norm
    assert "attn_norm" in ops
    assert "gate_proj" in ops  # SwiGLU
    # palm-8b: d_model 4096, 16 heads x d_head 256, one KV head
    assert ops["q_proj"]["weight_bytes"] == 4096 * 16 * 256 * 2
    assert ops["k_proj"]["weight_bytes"] == 4096 * 1 * 256 * 2
    assert ops["q_proj"]["weight_bytes"] == 16 * ops["k_proj"]["weight_bytes"]
    assert ops["qk_matmul"]["kv_read_bytes"] == S * 256 * 2
    assert report["totals"]["memory_bytes"]["kv_cache"] == 2 * 32 * 256 * 2 * S


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_flash_attention_fuses_attention(capsys, phase):
    base = (
        "--model",
        "llama-2-7b",
        "--hardware",
        "h100-sxm",
        "--phase",
        phase,
        "--batch",
        "2",
        "--seq-len",
        "1024",
        # Prefill: the whole square, as unfused attention computes it (decode has no triangle).
        *(("--no-causal",) if phase == "prefill" else ()),
    )
    plain = analyze_json(capsys, *base, "--no-flash-attention")
    flash = analyze_json(capsys, *base, "--flash-attention")
    plain_ops, flash_ops = ops_by_name(plain), ops_by_name(flash)
    assert flash["flash_attention"] is True and plain["flash_attention"] is False
    assert {"qk_matmul", "softmax", "sv_matmul"} <= set(plain_ops)
    assert "fused_attention" not in plain_ops
    assert "fused_attention" in flash_ops
    assert not {"qk_matmul", "softmax", "sv_matmul"} & set(flash_ops)
    unfused = [plain_ops[n] for n in ("qk_matmul", "softmax", "sv_matmul")]
    fused = flash_ops["fused_attention"]
    # the same math ...
    assert fused["flops"] == pytest.approx(sum(o["flops"] for o in unfused), rel=1e-12)
    # ... but the score matrix never goes to memory
    assert fused["bytes"] < sum(o["bytes"] for o in unfused)
    # everything else is unchanged
    for name in ("q_proj", "k_proj", "out_proj", "down_proj", "lm_head"):
        assert flash_ops[name] == plain_ops[name]


def test_flash_attention_causal_by_default_in_prefill(capsys):
    T = 1024
    base = (
        "--model",
        "llama-2-7b",
        "--hardware",
        "h100-sxm",
        "--phase",
        "prefill",
        "--batch",
        "1",
        "--seq-len",
        str(T),
        "--flash-attention",
    )
    causal = analyze_json(capsys, *base)
    full = analyze_json(capsys, *base, "--no-causal")
    assert causal["causal"] is True and full["causal"] is False
    # the lower triangle T(T+1)/2 of the T x T square
    ratio = ops_by_name(causal)["fused_attention"]["flops"] / ops_by_name(full)["fused_attention"]["flops"]
    assert ratio == pytest.approx((T + 1) / (2 * T), rel=1e-12)


def test_kv_heads_what_if_changes_k_proj(capsys):
    default = analyze_json(capsys, *DECODE_7B)
    gqa = analyze_json(capsys, *DECODE_7B, "--kv-heads", "8")
    mqa = analyze_json(capsys, *DECODE_7B, "--kv-heads", "1")
    assert (default["kv_heads"], gqa["kv_heads"], mqa["kv_heads"]) == (32, 8, 1)
    k = {n: ops_by_name(r)["k_proj"] for n, r in (("mha", default), ("gqa", gqa), ("mqa", mqa))}
    # weight 4096 x (kv_heads x 128) x 2 bytes, input 4096 x 2 bytes, KV write kv_heads x 128 x 2
    assert k["mha"]["weight_bytes"] == D * 32 * 128 * 2 == 33_554_432
    assert k["gqa"]["weight_bytes"] == D * 8 * 128 * 2 == 8_388_608
    assert k["mqa"]["weight_bytes"] == D * 1 * 128 * 2 == 1_048_576
    assert k["gqa"]["bytes"] == 8_388_608 + D * 2 + 8 * 128 * 2
    assert k["mqa"]["bytes"] == 1_048_576 + D * 2 + 1 * 128 * 2
    # q_proj's work does not depend on kv_heads; under a GPU profile its time is its FLOPs' share of
    # the fused QKV GEMM (calibrated_times._fused_projection_times), whose width does.
    q = {n: dict(ops_by_name(r)["q_proj"]) for n, r in (("mha", default), ("gqa", gqa))}
    assert {k: v for k, v in q["gqa"].items() if k != "time_s"} == {k: v for k, v in q["mha"].items() if k != "time_s"}
    kv = [r["totals"]["memory_bytes"]["kv_cache"] for r in (default, gqa, mqa)]
    assert kv[1] == kv[0] / 4 and kv[2] == kv[0] / 32


def test_weight_bits_scale_weight_bytes(capsys):
    reports = {bits: analyze_json(capsys, *DECODE_7B, "--weight-bits", bits) for bits in ("16", "8", "4")}
    assert [reports[b]["weight_dtype"] for b in ("16", "8", "4")] == ["bf16", "int8", "int4"]
    q = {b: ops_by_name(r)["q_proj"]["weight_bytes"] for b, r in reports.items()}
    assert q["16"] == D * D * 2
    assert q["8"] == q["16"] / 2  # int8 weights are half of bf16
    assert q["4"] == q["16"] / 4  # int4 a quarter
    for b, r in reports.items():
        ops = ops_by_name(r)
        for name in ("k_proj", "v_proj", "out_proj", "gate_proj", "up_proj", "down_proj"):
            assert (
                ops[name]["weight_bytes"]
                == ops_by_name(reports["16"])[name]["weight_bytes"] * {"16": 1.0, "8": 0.5, "4": 0.25}[b]
            )
        # the lm_head stays 16-bit, as the engines keep it (conventions.lm_head_format)
        assert ops["lm_head"]["weight_bytes"] == ops_by_name(reports["16"])["lm_head"]["weight_bytes"]
        # norm scales stay in the activation format
        assert ops["attn_norm"]["weight_bytes"] == D * 2
    weights = {b: r["totals"]["memory_bytes"]["weights"] for b, r in reports.items()}
    assert weights["16"] == LLAMA_2_7B_PARAMS * 2 + LLAMA_2_7B_NORM_BYTES == 13_476_823_040
    # The embedding and lm_head stay 16-bit in memory, as engines store them (linear layers only).
    tables = 2 * VOCAB * D
    assert weights["8"] == (LLAMA_2_7B_PARAMS - tables) * 1 + tables * 2 + LLAMA_2_7B_NORM_BYTES
    assert weights["4"] == (LLAMA_2_7B_PARAMS - tables) // 2 + tables * 2 + LLAMA_2_7B_NORM_BYTES
    # memory-bound decode at batch 1: fewer weight bytes, less time
    times = [reports[b]["totals"]["time_s"] for b in ("16", "8", "4")]
    assert times[0] > times[1] > times[2]


def test_fp8_on_h100(capsys):
    base = (
        "--model",
        "llama-2-7b",
        "--hardware",
        "h100-sxm",
        "--phase",
        "prefill",
        "--batch",
        "8",
        "--seq-len",
        "2048",
        "--calibration",
        "none",
    )
    bf16 = analyze_json(capsys, *base)
    fp8 = analyze_json(capsys, *base, "--weight-bits", "fp8", "--act-bits", "fp8", "--kv-bits", "fp8")
    fp8_weights_only = analyze_json(capsys, *base, "--weight-bits", "fp8")
    assert (fp8["weight_dtype"], fp8["act_dtype"], fp8["kv_dtype"]) == ("fp8", "fp8", "fp8")
    q16, q8, q8w = (ops_by_name(r)["q_proj"] for r in (bf16, fp8, fp8_weights_only))
    assert q8["weight_bytes"] == q16["weight_bytes"] / 2 == D * D
    assert q16["bound"] == q8["bound"] == "compute"
    # compute-bound: fp8 x fp8 runs at the fp8 peak (1978.9 vs 989.4 Tops/s on h100-sxm)
    assert q8["time_s"] == pytest.approx(q16["time_s"] * 989.4 / 1978.9, rel=1e-9)
    assert q16["time_s"] == pytest.approx(2 * 8 * 2048 * D * D / 989.4e12, rel=1e-9)
    # fp8 weights with 16-bit activations still run at the bf16 peak
    assert q8w["weight_bytes"] == D * D
    assert q8w["time_s"] == pytest.approx(q16["time_s"], rel=1e-9)


def test_analyze_hf_config_json(capsys, tmp_path):
    config = write_json(tmp_path / "config.json", LLAMA_LIKE_CONFIG)
    report = analyze_json(
        capsys,
        "--model",
        str(config),
        "--hardware",
        "l4",
        "--phase",
        "decode",
        "--batch",
        "16",
        "--seq-len",
        "8192",
        "--kv-bits",
        "8",
    )
    assert report["model"] == "test-org/tiny-llama"
    assert report["kv_heads"] == 2 and report["kv_dtype"] == "int8"
    ops = ops_by_name(report)
    assert ops["k_proj"]["weight_bytes"] == 512 * 2 * 64 * 2
    assert ops["q_proj"]["count"] == 4
    # folder holding the config.json works too
    folder = analyze_json(
        capsys,
        "--model",
        str(tmp_path),
        "--hardware",
        "l4",
        "--phase",
        "decode",
        "--batch",
        "16",
        "--seq-len",
        "8192",
        "--kv-bits",
        "8",
    )
    assert folder == report


def test_convention_option(capsys):
    report = analyze_json(capsys, *DECODE_7B, "--convention", "kim2023")
    assert report["convention"] == "kim2023"
    assert "lm_head" not in ops_by_name(report)  # Kim et al. leave the lm_head out


# --- plot ----------------------------------------------------------------------------------------


def _check_png(path: Path) -> None:
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 20_000  # a real chart, not an empty canvas
    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    height, width = image.shape[:2]
    assert height >= 300 and width >= 300
    assert width > height  # landscape chart
    assert float(image[..., :3].std()) > 0.05  # not a blank image


def test_plot_writes_png(capsys, tmp_path):
    path = tmp_path / "roofline.png"
    code, out, err = run_cli(capsys, "analyze", *DECODE_7B, "--plot", str(path))
    assert code == 0 and err == ""
    assert f"roofline chart written to {path}" in out
    _check_png(path)


def test_plot_with_json_keeps_stdout_pure_json(capsys, tmp_path):
    path = tmp_path / "chart.png"
    report = analyze_json(
        capsys,
        "--model",
        "llama-2-70b",
        "--hardware",
        "h100-sxm",
        "--phase",
        "prefill",
        "--batch",
        "4",
        "--seq-len",
        "4096",
        "--weight-bits",
        "8",
        "--flash-attention",
        "--plot",
        str(path),
    )
    assert report["model"] == "llama-2-70b"
    _check_png(path)


def test_plot_for_visual_check(capsys, tmp_path):
    """A prefill roofline (mixed bounds) renders as a real PNG."""
    path = tmp_path / "roofline_check.png"
    code, _, err = run_cli(
        capsys,
        "analyze",
        "--model",
        "llama-2-7b",
        "--hardware",
        "a100-80gb",
        "--phase",
        "prefill",
        "--batch",
        "1",
        "--seq-len",
        "512",
        "--plot",
        str(path),
    )
    assert code == 0, err
    _check_png(path)


# --- bad input -----------------------------------------------------------------------------------

ANALYZE = ("analyze",)
BASE_NO_BATCH = ("--model", "llama-2-7b", "--hardware", "a6000", "--phase", "decode", "--seq-len", "128")

BAD_INPUTS = {
    "batch 0": ((*BASE_NO_BATCH, "--batch", "0"), ("batch",)),
    "batch -3": ((*BASE_NO_BATCH, "--batch", "-3"), ("batch",)),
    "batch abc": ((*BASE_NO_BATCH, "--batch", "abc"), ("batch",)),
    "batch 1.5": ((*BASE_NO_BATCH, "--batch", "1.5"), ("batch",)),
    "seq-len 0": (
        ("--model", "llama-2-7b", "--hardware", "a6000", "--phase", "decode", "--batch", "1", "--seq-len", "0"),
        ("seq_len", "seq-len"),
    ),
    "weight bits 3": ((*DECODE_7B, "--weight-bits", "3"), ("weight_bits", "weight-bits")),
    "kv bits 2": ((*DECODE_7B, "--kv-bits", "2"), ("kv_bits", "kv-bits")),
    "fp8 on tpu-v4": (
        (
            "--model",
            "llama-2-7b",
            "--hardware",
            "tpu-v4",
            "--phase",
            "decode",
            "--batch",
            "1",
            "--seq-len",
            "128",
            "--weight-bits",
            "fp8",
        ),
        ("weight_bits", "weight-bits"),
    ),
    "kv-heads 5": ((*DECODE_7B, "--kv-heads", "5"), ("kv_heads", "kv-heads")),
    "kv-heads 0": ((*DECODE_7B, "--kv-heads", "0"), ("kv_heads", "kv-heads")),
    "kv-heads 64 > heads": ((*DECODE_7B, "--kv-heads", "64"), ("kv_heads", "kv-heads")),
    "encoder decode": (
        ("--model", "bert-base", "--hardware", "a6000", "--phase", "decode", "--batch", "1", "--seq-len", "128"),
        ("phase",),
    ),
    "unknown phase": (
        ("--model", "llama-2-7b", "--hardware", "a6000", "--phase", "generate", "--batch", "1", "--seq-len", "128"),
        ("phase",),
    ),
    "unknown hardware": (
        ("--model", "llama-2-7b", "--hardware", "tpu-v9", "--phase", "decode", "--batch", "1", "--seq-len", "128"),
        ("hardware",),
    ),
    "unknown option": ((*DECODE_7B, "--bogus"), ("--bogus",)),
    "missing option": (("--model", "llama-2-7b"), ("hardware", "phase", "batch", "seq-len")),
    "unwritable plot": ((*DECODE_7B, "--plot", "/nonexistent-dir/x.png"), ("plot",)),
    "plot is a directory": ((*DECODE_7B, "--plot", "/"), ("plot",)),
    # larger than any float64: must be rejected, not crash converting to float
    "batch 1e400": ((*BASE_NO_BATCH, "--batch", "1" + "0" * 400), ("batch",)),
    "kv-heads 1e400": ((*DECODE_7B, "--kv-heads", "1" + "0" * 400), ("kv_heads", "kv-heads")),
}


@pytest.mark.parametrize("args, fields", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_one_line_exit_2(capsys, args, fields):
    code, out, err = run_cli(capsys, *ANALYZE, *args)
    assert_one_error_line(code, out, err, fields)


def test_unknown_model_lists_valid_names(capsys):
    # (a name close to a catalog one gets "did you mean": tests/tuner/test_own_hardware_cli.py)
    code, out, err = run_cli(
        capsys,
        "analyze",
        "--model",
        "zephyr-9",
        "--hardware",
        "a6000",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--seq-len",
        "128",
    )
    line = assert_one_error_line(code, out, err, ("model",))
    assert "zephyr-9" in line
    for name in MODEL_NAMES:
        assert name in line


def test_unknown_hardware_lists_valid_names(capsys):
    code, out, err = run_cli(
        capsys,
        "analyze",
        "--model",
        "llama-2-7b",
        "--hardware",
        "abacus",  # nothing close: the whole list (a close name gets "did you mean")
        "--phase",
        "decode",
        "--batch",
        "1",
        "--seq-len",
        "128",
    )
    line = assert_one_error_line(code, out, err, ("hardware",))
    for name in HARDWARE_NAMES:
        assert name in line


def test_fp8_rejected_on_chip_without_fp8_for_each_field(capsys):
    for option, field in (("--weight-bits", "weight_bits"), ("--act-bits", "act_bits"), ("--kv-bits", "kv_bits")):
        code, out, err = run_cli(
            capsys,
            "analyze",
            "--model",
            "llama-2-7b",
            "--hardware",
            "tpu-v4",
            "--phase",
            "decode",
            "--batch",
            "1",
            "--seq-len",
            "128",
            option,
            "fp8",
        )
        line = assert_one_error_line(code, out, err, (field, option))
        assert "fp8" in line and "tpu-v4" in line


def _analyze_config(capsys, path: Path | str) -> tuple[int, str, str]:
    return run_cli(
        capsys,
        "analyze",
        "--model",
        str(path),
        "--hardware",
        "a6000",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--seq-len",
        "128",
    )


def test_config_json_invalid_json(capsys, tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "llama", "hidden_size": 4096,', encoding="utf-8")
    line = assert_one_error_line(*_analyze_config(capsys, path), ("config.json",))
    assert "JSON" in line


def test_config_json_missing_keys(capsys, tmp_path):
    path = write_json(tmp_path / "config.json", {"model_type": "llama", "hidden_size": 4096})
    line = assert_one_error_line(*_analyze_config(capsys, path), ("config.json",))
    assert "missing" in line
    assert any(key in line for key in ("num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size"))


def test_config_json_missing_model_type(capsys, tmp_path):
    config = {k: v for k, v in LLAMA_LIKE_CONFIG.items() if k != "model_type"}
    path = write_json(tmp_path / "config.json", config)
    assert_one_error_line(*_analyze_config(capsys, path), ("model_type",))


def test_config_json_unknown_model_type(capsys, tmp_path):
    path = write_json(tmp_path / "config.json", {**LLAMA_LIKE_CONFIG, "model_type": "t5"})
    line = assert_one_error_line(*_analyze_config(capsys, path), ("model_type",))
    assert "t5" in line and "llama" in line  # names the bad value and the supported families


def test_config_json_not_an_object(capsys, tmp_path):
    path = write_json(tmp_path / "config.json", [1, 2, 3])
    assert_one_error_line(*_analyze_config(capsys, path), ("config.json",))


def test_config_json_bad_field_value(capsys, tmp_path):
    path = write_json(tmp_path / "config.json", {**LLAMA_LIKE_CONFIG, "num_key_value_heads": 3})
    assert_one_error_line(*_analyze_config(capsys, path), ("num_key_value_heads",))


def test_config_json_size_beyond_float64(capsys, tmp_path):
    path = write_json(tmp_path / "config.json", {**LLAMA_LIKE_CONFIG, "num_hidden_layers": 10**400})
    assert_one_error_line(*_analyze_config(capsys, path), ("config.json", "num_hidden_layers", "layers"))


def test_config_json_not_utf8(capsys, tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b"\xff\xfe\x00not json")
    assert_one_error_line(*_analyze_config(capsys, path), ("model", "config.json"))


def test_config_json_nonexistent_path(capsys, tmp_path):
    path = tmp_path / "no-such-folder" / "config.json"
    line = assert_one_error_line(*_analyze_config(capsys, path), ("model",))
    assert str(path) in line


def test_absurd_sizes_give_an_error_or_strict_json(capsys):
    """A batch of 10^300 overflows every product to inf/nan. Either reject it (exit 2, one line) or
    print valid JSON of finite numbers: ``Infinity``/``NaN`` are not JSON (RFC 8259)."""
    code, out, err = run_cli(capsys, "analyze", *BASE_NO_BATCH, "--batch", "1" + "0" * 300, "--json")
    if code == 2:
        assert_one_error_line(code, out, err, ("batch",))
        return
    assert code == 0

    def reject(constant: str) -> None:
        raise AssertionError(f"--json printed the non-JSON constant {constant}")

    report = json.loads(out, parse_constant=reject)
    assert math.isfinite(report["totals"]["time_s"])


# --- names from a config.json must not be interpreted as markup ----------------------------------


def test_table_prints_model_name_with_brackets_literally(capsys, tmp_path):
    """``_name_or_path`` is free text (often a local path); rich must not parse it as markup."""
    name = "org/[/x]-model [bold]v2"
    path = write_json(tmp_path / "config.json", {**LLAMA_LIKE_CONFIG, "_name_or_path": name})
    code, out, err = _analyze_config(capsys, path)
    assert code == 0, err
    assert name in out


def test_plot_with_dollar_signs_in_model_name(capsys, tmp_path):
    """A model name with dollar signs must not be parsed as matplotlib mathtext."""
    name = "/data/$\\frac$/model"
    config = write_json(tmp_path / "config.json", {**LLAMA_LIKE_CONFIG, "_name_or_path": name})
    png = tmp_path / "chart.png"
    code, out, err = run_cli(
        capsys,
        "analyze",
        "--model",
        str(config),
        "--hardware",
        "a6000",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--seq-len",
        "128",
        "--plot",
        str(png),
    )
    assert code == 0, err
    _check_png(png)


# --- help ----------------------------------------------------------------------------------------


def test_no_arguments_shows_help(capsys):
    code, out, err = run_cli(capsys)
    assert code == 0
    assert "Usage" in out
    for command in ("analyze", "models", "hardware"):
        assert command in out


@pytest.mark.parametrize("args", [("--help",), ("analyze", "--help"), ("models", "--help"), ("hardware", "--help")])
def test_help_exits_0(capsys, args):
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and err == ""
    assert "Usage" in out


def test_analyze_help_lists_options(capsys):
    _, out, _ = run_cli(capsys, "analyze", "--help")
    for option in (
        "--model",
        "--hardware",
        "--phase",
        "--batch",
        "--seq-len",
        "--weight-bits",
        "--act-bits",
        "--kv-bits",
        "--kv-heads",
        "--flash-attention",
        "--causal",
        "--convention",
        "--json",
        "--plot",
    ):
        assert option in out


# --- the installed console script, as a user runs it ---------------------------------------------


def _tuner_script() -> str:
    candidate = Path(sys.executable).parent / "tuner"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("tuner")
    assert found, "the `tuner` console script is not installed (pip install -e '.[test]')"
    return found


def run_script(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [_tuner_script(), *args], capture_output=True, text=True, encoding="utf-8", timeout=120, env=env, cwd=cwd
    )


def test_script_analyze_json():
    result = run_script("analyze", *DECODE_7B, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["model"] == "llama-2-7b" and report["phase"] == "decode"


def test_script_no_args_and_help():
    for args in ((), ("--help",)):
        result = run_script(*args)
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout and "Traceback" not in result.stderr


SCRIPT_BAD_INPUTS = {
    "unknown model": (
        ("--model", "llama-9", "--hardware", "a6000", "--phase", "decode", "--batch", "1", "--seq-len", "128"),
        ("model",),
    ),
    "batch 0": ((*BASE_NO_BATCH, "--batch", "0"), ("batch",)),
    "batch abc": ((*BASE_NO_BATCH, "--batch", "abc"), ("batch",)),
    "kv-heads 5": ((*DECODE_7B, "--kv-heads", "5"), ("kv_heads", "kv-heads")),
    "encoder decode": (
        ("--model", "bert-base", "--hardware", "a6000", "--phase", "decode", "--batch", "1", "--seq-len", "128"),
        ("phase",),
    ),
    "fp8 on tpu-v4": (
        (
            "--model",
            "llama-2-7b",
            "--hardware",
            "tpu-v4",
            "--phase",
            "decode",
            "--batch",
            "1",
            "--seq-len",
            "128",
            "--kv-bits",
            "fp8",
        ),
        ("kv_bits", "kv-bits"),
    ),
    "unwritable plot": ((*DECODE_7B, "--plot", "/nonexistent-dir/x.png"), ("plot",)),
    "unknown option": ((*DECODE_7B, "--bogus"), ("--bogus",)),
    "batch 1e400": ((*BASE_NO_BATCH, "--batch", "1" + "0" * 400), ("batch",)),
}


@pytest.mark.parametrize("args, fields", list(SCRIPT_BAD_INPUTS.values()), ids=list(SCRIPT_BAD_INPUTS))
def test_script_bad_input_no_traceback(args, fields):
    result = run_script("analyze", *args)
    assert_one_error_line(result.returncode, result.stdout, result.stderr, fields)


def test_script_malformed_config_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json", encoding="utf-8")
    result = run_script(
        "analyze", "--model", str(path), "--hardware", "a6000", "--phase", "decode", "--batch", "1", "--seq-len", "128"
    )
    assert_one_error_line(result.returncode, result.stdout, result.stderr, ("config.json",))


@pytest.mark.parametrize(
    "args",
    [
        # Each read as no option at all, exit 0: the chart skipped, the export printed, the spec
        # written to studies/..., (measure: the CSVs into the current directory).
        ("analyze", "--model", "gpt2", "--hardware", "h100-sxm", "--phase", "decode", "--batch", "1", "--seq-len", "8"),
        ("export", "some-study", "--trial", "0"),
        ("init", "--model", "llama-3-8b", "--hardware", "h100-sxm"),
        ("pareto", "some-study"),
        ("calibrate", "--hardware", "h100-sxm", "--backend", "trtllm"),
        ("measure",),
    ],
)
def test_an_empty_output_path_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch, args) -> None:
    monkeypatch.chdir(tmp_path)
    flag = {"analyze": "--plot", "pareto": "--plot", "measure": "--out"}.get(args[0], "-o")
    code, out, err = run_cli(capsys, *args, flag, "")
    assert_one_error_line(code, out, err, ("an empty path",))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,flag",
    [
        # Each wrote over the file without a word, where tuner init and tuner export -o refuse.
        (
            (
                "analyze",
                "--model",
                "gpt2",
                "--hardware",
                "h100-sxm",
                "--phase",
                "decode",
                "--batch",
                "1",
                "--seq-len",
                "8",
            ),
            "--plot",
        ),
        (("pareto", "some-study"), "--plot"),
        (("report", "some-study"), "-o"),
        (("calibrate", "--hardware", "h100-sxm", "--backend", "trtllm"), "-o"),
    ],
)
def test_an_existing_output_file_is_kept_without_force(
    capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch, args, flag
) -> None:
    """Refused before any work (the study need not exist), one line naming the option, the path
    and --force; the file untouched. --force with nothing to write is refused, not ignored."""
    monkeypatch.chdir(tmp_path)
    kept = tmp_path / "kept.out"
    kept.write_text("keep me\n")
    line = assert_one_error_line(*run_cli(capsys, *args, flag, str(kept)), fields=(flag,))
    assert str(kept) in line and "--force" in line
    assert kept.read_text() == "keep me\n"
    if args[0] != "report":  # report always writes (-o defaults to report.html)
        assert_one_error_line(*run_cli(capsys, *args, "--force"), fields=("--force",))
    assert list(tmp_path.iterdir()) == [kept]


@pytest.mark.parametrize(
    "args,flag",
    [
        (("report", "some-study"), "-o"),  # was found after the charts were drawn
        (("calibrate", "--hardware", "h100-sxm", "--backend", "trtllm"), "-o"),  # after the fit
        (("pareto", "some-study"), "--plot"),
    ],
)
def test_an_output_in_a_missing_directory_is_refused_before_the_work(
    capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch, args, flag
) -> None:
    """The study need not exist: the path is refused first, naming the option and the directory."""
    monkeypatch.chdir(tmp_path)
    line = assert_one_error_line(*run_cli(capsys, *args, flag, str(tmp_path / "nodir" / "x.out")), fields=(flag,))
    assert "no directory" in line and str(tmp_path / "nodir") in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["front.svg", "front.PDF", "front.jpg"])
@pytest.mark.parametrize("args", [("pareto", "some-study"), ("analyze", *DECODE_7B)], ids=["pareto", "analyze"])
def test_a_plot_named_other_than_png_is_refused_before_the_work(
    capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch, args, name
) -> None:
    """The charts are PNG whatever the name: `--plot front.svg` wrote PNG bytes into front.svg,
    exit 0 (a browser then shows a broken image). The study need not exist: refused first."""
    monkeypatch.chdir(tmp_path)
    line = assert_one_error_line(*run_cli(capsys, *args, "--plot", name), fields=("--plot",))
    assert name in line and ".png" in line
    assert list(tmp_path.iterdir()) == []


def test_plot_force_overwrites(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    path = tmp_path / "roofline.png"
    path.write_text("old")
    code, out, err = run_cli(capsys, "analyze", *DECODE_7B, "--plot", str(path), "--force")
    assert code == 0, err
    _check_png(path)


def test_commands_named_in_help_texts_exist() -> None:
    """Every ``tuner COMMAND --OPTION`` a command's or option's help names is a real command with
    that option (the --calibration help named ``tuner calibrate --list``, which does not exist)."""
    import re

    from tuner.cli import cli

    named = []
    for command in cli.commands.values():
        texts = [command.help or ""] + [getattr(param, "help", None) or "" for param in command.params]
        for text in texts:
            named += re.findall(r"tuner ([a-z]+)((?: --[a-z][a-z-]*)*)", " ".join(text.split()))
    assert ("models", " --template") in named  # the scan sees options after a command
    for name, options in named:
        assert name in cli.commands, f"help names `tuner {name}`, which is no command"
        known = {opt for param in cli.commands[name].params for opt in param.opts}
        for option in options.split():
            assert option in known, f"help names `tuner {name} {option}`, which {name} does not take"


@pytest.mark.parametrize(("prompt", "gen", "noted"), [(8192, 128, True), (3968, 128, False)])
def test_estimate_notes_a_context_past_the_models_trained_one(capsys, prompt, gen, noted):
    """Llama 2 was trained on 4,096 positions (its config.json's max_position_embeddings): 8,192 +
    128 tokens pass it, and vLLM/SGLang refuse such a context limit without an override; 3,968 +
    128 is exactly 4,096 and passes nothing."""
    args = ("estimate", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--chips", "1", "--batch", "1")
    lengths = ("--prompt-len", str(prompt), "--gen-len", str(gen))
    code, out, err = run_cli(capsys, *args, *lengths, "--json")
    assert code == 0, err
    # (Beside it, the note that the memory holds more than 4,096 tokens: test_estimate.py.)
    notes = [note for note in json.loads(out)["notes"] if note.startswith("prompt + generated")]
    assert notes == (["prompt + generated tokens (8,320) pass llama-2-7b's trained context of 4,096 tokens"
                      " (max_position_embeddings): engines refuse that context without a RoPE-scaling or length"
                      " override"] if noted else [])  # fmt: skip
    code, out, err = run_cli(capsys, *args, *lengths)
    assert code == 0 and ("tokens (8,320) pass llama-2-7b's trained context" in " ".join(out.split())) == noted


@pytest.mark.parametrize(("prompt", "noted"), [(8192, True), (2048, False)])
def test_search_notes_a_workload_past_the_models_trained_context(capsys, tmp_path, prompt, noted):
    """The study's workload, 8,192 + 128 tokens on Llama 2 (4,096 positions), passes it: the
    search says so as estimate does; 2,048 + 128 does not."""
    spec = tmp_path / "ctx.yaml"
    spec.write_text(
        "name: ctx\nmodel: llama-2-7b\nhardware: h100-sxm\n"
        f"workload: {{prompt_len: {prompt}, gen_len: 128}}\n"
        "space: {chips: [1], batch: [1, 2]}\nobjectives: [{metric: decode.step_latency_s}]\n"
    )
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", f"sqlite:///{tmp_path / 'c.db'}", "--json")
    assert code == 0, err
    notes = json.loads(out)["notes"]
    if noted:
        assert len(notes) == 1 and "(8,320) pass llama-2-7b's trained context of 4,096 tokens" in notes[0]
    else:
        assert notes == []


@pytest.mark.parametrize(("prompt", "noted"), [(8192, True), (2048, False)])
def test_worker_notes_a_workload_past_the_models_trained_context(capsys, tmp_path, prompt, noted):
    """tuner worker said nothing where tuner search notes the workload past the model's trained
    context: now the same note, once at the start (notes in --json)."""
    spec = tmp_path / "ctx.yaml"
    spec.write_text(
        "name: ctx\nmodel: llama-2-7b\nhardware: h100-sxm\n"
        f"workload: {{prompt_len: {prompt}, gen_len: 128}}\n"
        "space: {chips: [1], batch: [1, 2]}\nobjectives: [{metric: decode.step_latency_s}]\n"
    )
    args = ("worker", str(spec), "--storage", f"sqlite:///{tmp_path / 'c.db'}", "--trials", "2")
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    notes = json.loads(out)["notes"]
    assert len(notes) == noted and all("(8,320) pass llama-2-7b's trained context of 4,096 tokens" in n for n in notes)
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    lines = out.splitlines()
    assert [line for line in lines if line.startswith("note:")] == [f"note: {n}" for n in notes]
    assert not noted or lines[0].startswith("note: prompt + generated tokens (8,320)")


def test_a_missing_choice_option_lists_its_choices_on_the_error_line(capsys):
    # Click lays the choices out as ":\n\tprefill,\n\tdecode"; the control-character escaping of
    # error lines used to print that as a literal "\n\tprefill,\n\tdecode".
    code, out, err = run_cli(capsys, "analyze", "--model", "llama-3-8b", "--hardware", "h100-sxm")
    line = assert_one_error_line(code, out, err, ("--phase",))
    assert "\\n" not in line and "\\t" not in line
    assert line.endswith("Choose from: prefill, decode")


@pytest.mark.parametrize(
    "args",
    [("show", "any-study", "abc"), ("export", "any-study", "--trial", "abc"), ("show", "any-study", "1.5")],
)
def test_a_trial_that_is_not_a_number_is_called_so(capsys: pytest.CaptureFixture[str], args) -> None:
    """click names an IntRange "integer range": `tuner export s --trial abc` said "'abc' is not a
    valid integer range", though no range was asked for."""
    code, out, err = run_cli(capsys, *args)
    line = assert_one_error_line(code, out, err, ("TRIAL", "--trial"))
    assert f"{args[-1]!r} is not a valid trial number" in line and "range" not in line
