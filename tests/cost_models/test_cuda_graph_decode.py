"""vLLM and SGLang replay CUDA graphs for their decode steps, so the per-call host floor their
kernel microbenchmarks measure one eager call at a time (GemmParams.host_floor_s and
large_m_launch_s: vLLM's DeepGEMM fp8_block path on H200 takes 80-95 us a call whatever the
shape, the kernel a few us at decode's m) is not charged in a decode step; prefill keeps it, and
TensorRT-LLM's fitted floors stay where its serving runs were fitted with them
(cost_models.calibration.cuda_graph_replay). Expected seconds are the fitted GEMM model
(efficiency.gemm_time_s) at shapes worked by hand from Qwen3-235B-A22B's config.json."""

from __future__ import annotations

import pytest

from cost_models.analysis import analyze_one
from cost_models.calibration import cuda_graph_replay, load_profile
from cost_models.efficiency import gemm_time_s
from cost_models.hardware import get_hardware

H200 = get_hardware("h200")
# Qwen3-235B-A22B (HF Qwen/Qwen3-235B-A22B config.json): hidden 4096, 64 query heads and 4 KV heads
# of head_dim 128: vLLM's fused qkv_proj is 64 x 128 + 2 x 4 x 128 = 9216 wide at TP 1.
D, QKV_N = 4096, 64 * 128 + 2 * 4 * 128


def _qkv_s(phase: str, batch: int, seq_len: int, profile) -> float:
    report = analyze_one(
        "qwen3-235b-a22b", "h200", phase=phase, batch=batch, seq_len=seq_len, weight_bits="fp8", act_bits="fp8",
        flash_attention=True, calibration=profile,
    )  # fmt: skip
    slots = {row["name"]: row["time_s"] for row in report["operators"]}
    return slots["q_proj"] + slots["k_proj"] + slots["v_proj"]


def test_the_replay_drops_only_the_host_floor_and_only_under_vllm_and_sglang() -> None:
    vllm = load_profile("h200-vllm")
    replay = cuda_graph_replay(vllm)
    assert replay is not None
    assert vllm.gemm["fp8_block"].host_floor_s > 50e-6  # the shipped fit: ~55 us a call
    assert replay.gemm["fp8_block"].host_floor_s == 0.0 and replay.gemm["fp8_block"].large_m_launch_s == 0.0
    host = {"host_floor_s", "large_m_launch_s", "launch_s", "unaligned_m_s", "cuda_graph_capture"}
    # (and m padded to vLLM's captured sizes: tests/cost_models/test_cuda_graph_padding.py)
    assert {p.cuda_graph_capture for p in replay.gemm.values()} == {"vllm"}
    assert replay.gemm["fp8_block"].model_dump(exclude=host) == vllm.gemm["fp8_block"].model_dump(exclude=host)
    assert replay.gemm["fp8"].model_dump(exclude=host) == vllm.gemm["fp8"].model_dump(exclude=host)
    assert cuda_graph_replay(vllm) is replay  # one view per profile
    trtllm = load_profile("h200-trtllm")
    assert cuda_graph_replay(trtllm) is trtllm
    assert cuda_graph_replay(None) is None


def test_a_vllm_decode_step_pays_no_host_floor_and_its_prefill_does() -> None:
    vllm = load_profile("h200-vllm")
    params = vllm.gemm["fp8_block"]
    # Replayed: no floor, the per-tensor fp8 call's launch (4.7 us, not the fit's 22), no m cost.
    floorless = params.model_copy(
        update={
            "host_floor_s": 0.0,
            "large_m_launch_s": 0.0,
            "launch_s": vllm.gemm["fp8"].launch_s,
            "unaligned_m_s": 0.0,
            "cuda_graph_capture": "vllm",
        }
    )
    # Decode, 8 sequences: one fused QKV GEMM of m = 8 (Qwen3-235B-FP8 is block-scaled: fp8_block).
    decode = _qkv_s("decode", 8, 1024, vllm)
    assert decode == pytest.approx(float(gemm_time_s(8, QKV_N, D, "fp8_block", H200, floorless)), rel=1e-12)
    assert decode < params.host_floor_s  # the eager call's floor would be most of the step's GEMM
    # Prefill of one 8-token prompt: the same m, run eagerly, pays the floor.
    prefill = _qkv_s("prefill", 1, 8, vllm)
    assert prefill == pytest.approx(float(gemm_time_s(8, QKV_N, D, "fp8_block", H200, params)), rel=1e-12)
    assert prefill >= params.host_floor_s


def test_an_estimates_decode_step_is_the_same_with_or_without_the_floors_and_its_prefill_is_not() -> None:
    """tuner estimate's decode step under h200-vllm does not depend on the fitted host floors;
    its prefill does (a short prompt, whose GEMMs run under the floor)."""
    from cost_models.deployment import estimate_one

    vllm = load_profile("h200-vllm")
    no_floor = vllm.model_copy(
        update={
            "gemm": {
                fmt: p.model_copy(update={"host_floor_s": 0.0, "large_m_launch_s": 0.0}) for fmt, p in vllm.gemm.items()
            }
        }
    )
    runs = [
        estimate_one(
            "qwen3-235b-a22b",
            "h200",
            chips=8,
            batch=8,
            prompt_len=64,
            gen_len=64,
            weight_bits="fp8",
            act_bits="fp8",
            calibration=profile,
        )  # fmt: skip
        for profile in (vllm, no_floor)
    ]
    assert runs[0]["decode"]["step_latency_s"] == runs[1]["decode"]["step_latency_s"]
    assert runs[0]["prefill"]["latency_s"] > runs[1]["prefill"]["latency_s"]


def test_the_replay_charges_the_block_scaled_path_its_kernels_launch_only() -> None:
    """vLLM's fp8_block fit on GB200 holds 103 us of launch and 134 us for an unaligned m a call
    (host work of its DeepGEMM wrapper, as the floor is), where the same profile's per-tensor fp8
    GEMM (a CUTLASS kernel and its activation quantization) has a 5.4 us launch and no m cost:
    replayed, the block-scaled call costs at most that launch and nothing for m's alignment."""
    vllm = load_profile("gb200-vllm")
    assert vllm.gemm["fp8_block"].launch_s > 100e-6 and vllm.gemm["fp8_block"].unaligned_m_s > 100e-6
    replay = cuda_graph_replay(vllm)
    assert replay is not None
    assert replay.gemm["fp8_block"].launch_s == vllm.gemm["fp8"].launch_s < 6e-6
    assert replay.gemm["fp8_block"].unaligned_m_s == 0.0
    # no floor: only the padding to the captured sizes changes
    assert replay.gemm["bfloat16"] == vllm.gemm["bfloat16"].model_copy(update={"cuda_graph_capture": "vllm"})


def test_a_decode_batch_past_the_engines_default_capture_runs_eager() -> None:
    """vLLM's default capture (max_num_seqs 256: 512 sequences) and SGLang's cuda_graph_max_bs on
    one H200 (256 at TP 1, server_args.py): a decode step of more sequences runs eager and pays the
    floor (tuner analyze, as tuner estimate's static decode step)."""
    vllm = load_profile("h200-vllm")
    params = vllm.gemm["fp8_block"]
    assert _qkv_s("decode", 513, 1024, vllm) == pytest.approx(
        float(gemm_time_s(513, QKV_N, D, "fp8_block", H200, params)), rel=1e-12
    )
    assert _qkv_s("decode", 512, 1024, vllm) < _qkv_s("prefill", 1, 512, vllm)
    sglang = load_profile("h200-sglang")
    for batch, profile in ((256, cuda_graph_replay(sglang)), (257, sglang)):
        assert _qkv_s("decode", batch, 1024, sglang) == pytest.approx(
            float(gemm_time_s(batch, QKV_N, D, "fp8_block", H200, profile.gemm["fp8_block"])),
            rel=1e-12,
        )
