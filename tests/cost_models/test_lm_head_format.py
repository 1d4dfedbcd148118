"""The lm_head stays 16-bit under quantized weights (conventions.CountingConvention.lm_head_format):
vLLM's ParallelLMHead is unquantized under fp8, AWQ and GPTQ by default, TensorRT-LLM's ModelOpt
checkpoints exclude *lm_head*, and Pope et al.'s code keeps the (tied) embedding bf16. It was read
and timed in the blocks' format: an int4 Llama-3.1-8B decode step read 0.26 GB of lm_head where
the engines read 1.05 GB (17% of the step's bytes). LLM-Viewer quantizes every linear layer, so
its convention (yuan2024) keeps the weights' format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import run_cli
from cost_models.conventions import YUAN2024
from cost_models.deployment import estimate_one
from cost_models.dtypes import BF16, INT4, INT8
from cost_models.inference_configs import make_configs
from cost_models.models import get_model
from cost_models.operators import LM_HEAD, operator_costs

D_MODEL, VOCAB = 4096, 128256  # Llama-3.1-8B (config.json hidden_size, vocab_size)


def _lm_head(weight_dtype: int, convention=None, act_dtype: int = BF16, kv_dtype: int = BF16):
    configs = make_configs(
        get_model("llama-3.1-8b"), phase="decode", batch=1, seq_len=1024, weight_dtype=weight_dtype,
        act_dtype=act_dtype, kv_dtype=kv_dtype,
    )  # fmt: skip
    ops = operator_costs(configs) if convention is None else operator_costs(configs, convention)
    return float(ops.weight_bytes[LM_HEAD, 0]), int(ops.compute_dtype[LM_HEAD, 0])


@pytest.mark.parametrize("weight_dtype", [BF16, INT8, INT4])
def test_the_lm_head_is_read_at_two_bytes_a_weight(weight_dtype: int) -> None:
    weight_bytes, compute = _lm_head(weight_dtype)
    assert weight_bytes == D_MODEL * VOCAB * 2
    assert compute == BF16


def test_llm_viewers_convention_quantizes_the_lm_head() -> None:
    assert _lm_head(INT4, YUAN2024)[0] == D_MODEL * VOCAB * 0.5
    # LLM-Viewer's int8 peak where every operand is 8 bits, the lm_head's too.
    assert _lm_head(INT8, YUAN2024, act_dtype=INT8, kv_dtype=INT8)[1] == INT8


def test_an_int4_decode_step_reads_a_16_bit_lm_head() -> None:
    """The pure roofline of one decode step of Llama-3.1-8B in int4 on one H100 at batch 1: the
    blocks' 6.98e9 weights at half a byte and the lm_head's 0.525e9 at two, 4.54 GB at 3.35 TB/s
    (1.36 ms; 3.75 GB and 1.12 ms with an int4 lm_head), plus a few MB of KV cache."""
    blocks = 8.030e9 - 2 * D_MODEL * VOCAB  # every parameter but the embedding and the lm_head
    expected = (blocks * 0.5 + D_MODEL * VOCAB * 2) / 3.35e12
    report = estimate_one(
        "llama-3.1-8b", "h100-sxm", tp=1, batch=1, prompt_len=512, gen_len=64, weight_bits=4, calibration="none"
    )
    step_memory_s = report["decode"]["memory_s"] / 64
    assert step_memory_s == pytest.approx(expected, rel=0.03)


def test_a_calibrated_lm_head_is_the_same_bf16_gemm_in_every_weight_format(capsys) -> None:
    """Under an engine's profile the lm_head is the bf16 GEMM whatever the blocks' format."""
    seconds = []
    for bits in ("16", "8", "4", "fp8"):
        args = ("analyze", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--phase", "decode", "--batch", "1")
        args += ("--seq-len", "1024", "--weight-bits", bits, "--flash-attention", "--json")
        code, out, err = run_cli(capsys, *args)
        assert code == 0, err
        (lm,) = [row for row in json.loads(out)["operators"] if row["name"] == "lm_head"]
        seconds.append(lm["time_s"])
    assert np.all(np.array(seconds) == seconds[0]), seconds
