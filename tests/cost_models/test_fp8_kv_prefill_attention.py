"""The prefill-attention class a calibration profile charges an fp8 KV cache: the kernel the
engine's default attention backend runs (cost_models.calibrated_times.prefill_attention_class).

SGLang on Hopper serves with FlashAttention-3, which casts the query to the cache's fp8 before
the kernel (FlashAttentionBackend.forward_extend), so an fp8 cache runs the database's
"fp8/fp8" rows (kernel_source fa3). The profile's "bfloat16/fp8" class was fitted on the only
SGLang rows of that pair, the Triton backend's (compute_eff 0.06), and charged Llama-3.1-70B's
2048-token prefill on one H200 1281 us of attention a layer against 155 us with a bf16 cache.
The measured latencies below are NVIDIA AIConfigurator's (data/kernels/context_attention_perf.csv.gz,
h200_sxm, SGLang 0.5.14)."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from cost_models.calibrated_times import fused_attention_time_s
from cost_models.calibration import load_profile
from cost_models.dtypes import FP8
from cost_models.efficiency import prefill_attention_time_s
from cost_models.hardware import get_hardware
from cost_models.inference_configs import make_configs
from cost_models.models import get_model

CONTEXT_ATTENTION_CSV = Path(__file__).resolve().parents[2] / "data" / "kernels" / "context_attention_perf.csv.gz"


def _rows(system: str, framework: str, kernel_source: str, attn: str, kv: str) -> list[dict]:
    with gzip.open(CONTEXT_ATTENTION_CSV, "rt") as f:
        reader = csv.DictReader(line for line in f if not line.startswith("#"))
        return [
            r
            for r in reader
            if (r["system"], r["framework"], r["kernel_source"], r["attn_dtype"], r["kv_cache_dtype"])
            == (system, framework, kernel_source, attn, kv)
        ]


def test_sglang_hopper_fp8_cache_charges_the_fa3_fp8_class():
    from cost_models.calibrated_times import prefill_attention_class

    profile = load_profile("h200-sglang")
    params, compute_format = prefill_attention_class(profile, "fp8")
    assert params == profile.prefill_attention["fp8/fp8"]
    assert compute_format == "fp8"  # tuner.calibrate.fit_prefill fits fp8 rows at the fp8 peak
    # A bf16 cache keeps the bf16 class; vLLM's bfloat16/fp8 rows are its own fa3 kernel.
    assert prefill_attention_class(profile, "bfloat16") == (profile.prefill_attention["bfloat16/bfloat16"], "bfloat16")
    vllm = load_profile("h200-vllm")
    assert prefill_attention_class(vllm, "fp8") == (vllm.prefill_attention["bfloat16/fp8"], "bfloat16")
    # Blackwell's trtllm_mha casts the query too; L40S's default (flashinfer) and TensorRT-LLM's
    # measured fp8-cache rows keep a 16-bit query.
    for name, key in (("b200-sglang", "fp8/fp8"), ("gb200-sglang", "fp8/fp8"), ("h100-sxm-sglang", "fp8/fp8"),
                      ("l40s-sglang", "bfloat16/fp8"), ("h200-trtllm", "bfloat16/fp8")):  # fmt: skip
        other = load_profile(name)
        assert prefill_attention_class(other, "fp8")[0] == other.prefill_attention[key], name


@pytest.mark.parametrize(("batch", "isl", "measured_ms"), [(1, 128, 0.0129808), (8, 4096, 3.55161)])
def test_llama_70b_shape_matches_measured_fa3_fp8_rows(batch, isl, measured_ms):
    """Llama-3.1-70B on one GPU attends with 64 query heads, 8 KV heads of 128: the two measured
    SGLang fa3 fp8/fp8 rows of that shape on h200 (0.0130 ms at 1 x 128 tokens, 3.55 ms at 8 x
    4096). The model's prefill attention with an fp8 cache, as analyze and the serving model
    charge it, is within the fp8/fp8 group's held-out p90 error of each (before, charged the
    Triton-fitted bfloat16/fp8 class: 25.4 us, 1.96x, and 38.8 ms, 10.9x)."""
    measured = _rows("h200_sxm", "SGLang", "fa3", "fp8", "fp8")
    shape = [
        r
        for r in measured
        if (r["num_heads"], r["num_key_value_heads"], r["head_dim"], r["batch_size"], r["isl"])
        == ("64", "8", "128", str(batch), str(isl))
        and float(r["window_size"] or 0) == 0
    ]
    assert [float(r["latency"]) for r in shape] == [measured_ms]
    profile = load_profile("h200-sglang")
    model = get_model("llama-3.1-70b")
    assert (model.heads, model.kv_heads, model.d_head) == (64, 8, 128)
    configs = make_configs(
        model, phase="prefill", batch=batch, seq_len=isl, weight_dtype=FP8, kv_dtype=FP8, flash_attention=True
    )
    seconds = fused_attention_time_s(configs, np.array([1.0]), np.array([False]), get_hardware("h200"), profile)
    held_out_p90 = profile.cv_error["prefill_attention/fp8/fp8"].p90
    assert abs(seconds[0] / (measured_ms * 1e-3) - 1.0) <= held_out_p90, (seconds[0] * 1e3, measured_ms)


@pytest.mark.parametrize(
    ("system", "chip_name", "kernel_source", "row_count"),
    [
        ("h100_sxm", "h100-sxm", "fa3", 466),
        ("h200_sxm", "h200", "fa3", 466),
        ("b200_sxm", "b200", "trtllm_mha", 412),
        ("gb200", "gb200", "trtllm_mha", 409),
    ],
)
def test_class_fits_every_measured_default_backend_fp8_row_within_held_out_error(
    system, chip_name, kernel_source, row_count
):
    """Every measured fp8/fp8 row of SGLang's default MHA backend on the chip (fa3 on Hopper,
    trtllm_mha on Blackwell; every shape the collector ran): the class prefill_attention_class
    picks predicts them with a median and p90 relative error within the group's held-out ones
    (h200: 0.068 and 0.251 against 0.077 and 0.264). The bfloat16/fp8 class (Triton's and
    flashinfer's rows) was off by a median of 3.6-3.8 on Hopper (4.6-4.8x the measured time)
    and 0.28-0.35 on Blackwell."""
    from cost_models.calibrated_times import prefill_attention_class

    rows = _rows(system, "SGLang", kernel_source, "fp8", "fp8")
    assert len(rows) == row_count

    def col(name: str) -> np.ndarray:
        return np.array([float(r[name] or 0) for r in rows])

    measured_s = col("latency") * 1e-3
    profile = load_profile(f"{chip_name}-sglang")
    params, compute_format = prefill_attention_class(profile, "fp8")
    predicted_s = prefill_attention_time_s(
        col("batch_size"),
        col("isl"),
        col("num_heads"),
        col("num_key_value_heads"),
        col("head_dim"),
        get_hardware(chip_name),
        params,
        window=col("window_size"),
        compute_format=compute_format,
        kv_bytes_per_element=1.0,
        in_l2=True,  # the collector reruns one layer's kernel on the same Q/K/V
    )
    error = np.abs(predicted_s / measured_s - 1.0)
    held_out = profile.cv_error["prefill_attention/fp8/fp8"]
    assert np.median(error) <= held_out.median
    assert np.percentile(error, 90) <= held_out.p90
