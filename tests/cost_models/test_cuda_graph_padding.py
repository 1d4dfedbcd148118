"""vLLM and SGLang replay their decode steps from CUDA graphs captured at a list of batch sizes and
pad a batch to the next one (cost_models/cuda_graph_capture.py), so a replayed step's GEMMs run at
the padded row count; TensorRT-LLM (padding off by default) and eager iterations do not pad, and
the MoE experts keep the tokens routed to them. Expected sizes are the engines' default lists
written out by hand from their source (vllm/config/vllm.py _set_cudagraph_sizes; sglang
server_args.py _generate_cuda_graph_batch_sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models.calibrated_times import _stacked, calibrated_network
from cost_models.calibration import cuda_graph_replay, load_profile
from cost_models.cuda_graph_capture import padded_to_capture
from cost_models.deployment import estimate_one
from cost_models.efficiency import gemm_time_s
from cost_models.hardware import get_hardware
from cost_models.moe_kernel_time import routed_expert_time_s

H100 = get_hardware("h100-sxm")


@pytest.mark.parametrize(
    ("engine", "rows", "padded"),
    [
        ("vllm", [1, 2, 3, 4, 5, 8, 9, 17, 248, 249, 255, 256, 257, 272, 500, 512, 513, 4096],
         [1, 2, 4, 4, 8, 8, 16, 24, 248, 256, 256, 256, 272, 272, 512, 512, 513, 4096]),
        ("sglang", [1, 3, 5, 9, 12, 13, 17, 256, 257, 271, 273, 500, 511, 512, 513],
         [1, 4, 8, 12, 12, 16, 24, 256, 272, 272, 288, 512, 512, 512, 513]),
    ],
)  # fmt: skip
def test_rows_pad_to_the_engines_next_captured_size_and_not_past_the_largest(engine, rows, padded) -> None:
    np.testing.assert_array_equal(padded_to_capture(np.array(rows, dtype=float), engine), padded)
    assert float(padded_to_capture(8.4, engine)) == (12.0 if engine == "sglang" else 16.0)  # a fluid average


def test_a_replayed_gemm_runs_at_the_padded_rows_and_an_eager_or_trtllm_one_does_not() -> None:
    vllm, sglang = load_profile("h100-sxm-vllm"), load_profile("h100-sxm-sglang")
    for profile, engine, padded in ((vllm, "vllm", 16.0), (sglang, "sglang", 12.0)):
        replay = cuda_graph_replay(profile)
        assert replay is not None
        params = replay.gemm["fp8"]
        assert params.cuda_graph_capture == engine
        assert gemm_time_s(9.0, 6144.0, 4096.0, "fp8", H100, params) == gemm_time_s(
            padded, 6144.0, 4096.0, "fp8", H100, params
        )
        eager = profile.gemm["fp8"]  # (the profile itself: what an eager iteration is timed with)
        assert not eager.cuda_graph_capture
        assert gemm_time_s(9.0, 6144.0, 4096.0, "fp8", H100, eager) != gemm_time_s(
            padded, 6144.0, 4096.0, "fp8", H100, eager
        )
    trtllm = load_profile("h100-sxm-trtllm")
    assert all(not p.cuda_graph_capture for p in cuda_graph_replay(trtllm).gemm.values())  # type: ignore[union-attr]


def test_the_experts_keep_their_routed_rows() -> None:
    replay = cuda_graph_replay(load_profile("h100-sxm-vllm"))
    assert replay is not None
    dense = replay.gemm["bfloat16"]
    assert dense.cuda_graph_capture == "vllm" and _stacked(dense).cuda_graph_capture == ""
    plain = dense.model_copy(update={"cuda_graph_capture": ""})
    args = (np.array([9.0]), np.array([8.0]), np.array([9.0 * 8 / 8]), np.array([8.0]), np.array([768.0]))
    moe = replay.moe["bfloat16"]
    for down in (False, True):
        got = routed_expert_time_s(down, *args, np.array([2048.0]), "bfloat16", H100, dense, moe)
        want = routed_expert_time_s(down, *args, np.array([2048.0]), "bfloat16", H100, plain, moe)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", ["vllm", "sglang"])
def test_a_decode_step_does_not_fall_as_the_batch_grows_past_the_captured_pair(backend: str) -> None:
    """Llama-3.1-8B in fp8 on one H100: the fitted unaligned-m slowdown (m % 4 != 0) made an odd
    batch's step slower than the next even one's (vLLM: batch 3 5.21 ms, batch 4 5.05 ms, 8 such
    falls from batch 1 to 34). Padded, batches 3 to 64 run at captured sizes, all multiples of
    4, and the step never falls. (Batches 1 and 2 are captured as they are, and keep the fit's
    slowdown: batch 2 5.14 ms, batch 3 5.00 ms under vLLM.)"""
    steps = [
        estimate_one(
            "llama-3.1-8b", "h100-sxm", chips=1, batch=batch, prompt_len=1024, gen_len=128, backend=backend,
            weight_bits="fp8", act_bits="fp8",
        )["decode"]["step_latency_s"]
        for batch in range(3, 65)
    ]  # fmt: skip
    assert np.all(np.diff(steps) >= 0), np.flatnonzero(np.diff(steps) < 0) + 3


def test_a_profile_that_sets_the_padding_is_refused(tmp_path) -> None:
    """The padding is the replay's, set on decode steps only: in a profile file it would pad the
    eager calls (a prefill) too, so loading one says which format sets it and to remove it."""
    from cost_models.errors import InvalidInputError

    text = load_profile("h100-sxm-vllm").to_yaml()
    bad = tmp_path / "padded.yaml"
    bad.write_text(text.replace("  bfloat16:\n", "  bfloat16:\n    cuda_graph_capture: vllm\n", 1))
    with pytest.raises(
        InvalidInputError, match=r"padded\.yaml\.gemm: gemm bfloat16 sets cuda_graph_capture.*remove it"
    ):
        load_profile(bad)


def test_a_corrected_gemm_scores_the_same_beside_a_format_timed_without_the_correction() -> None:
    """A profile times int4 weight-only GEMMs with its bf16 fit less the bf16 shape correction,
    and one call times both formats together (calibrated_times._dense_gemm_times), the correction
    on the bf16 columns. It must read the m the replay pads to, as gemm_time_s does: applied after
    the call it read the unpadded m, and Llama-3-8B's bf16 decode step on a B200 under SGLang at
    34.6 sequences (padded to 40) came out 0.2% faster beside an int4 deployment than alone."""
    from cost_models.calibration import resolve_calibration
    from cost_models.deployments import tensor_parallel
    from cost_models.dtypes import BF16, INT4
    from cost_models.iteration import iteration_times
    from cost_models.models import get_model
    from cost_models.topology import network_for

    profile = resolve_calibration("auto", "b200", "sglang")
    assert profile is not None
    replay = cuda_graph_replay(profile)
    assert replay is not None and replay.gemm["bfloat16"].shape_correction is not None
    b200 = get_hardware("b200")
    both = tensor_parallel(get_model("llama-3-8b"), b200, [1, 1], weight_dtype=np.array([BF16, INT4]))

    def decode_step(d) -> np.ndarray:
        n = len(d)
        return iteration_times(
            d,
            calibrated_network(network_for(b200), b200, profile),
            decode_seqs=np.full(n, 34.62),
            decode_context=np.full(n, 1200.0),
            prefill_tokens=np.zeros(n),
            prefill_prompt_len=np.full(n, 1024.0),
            calibration=profile,
        ).latency_s

    beside = decode_step(both)
    alone = [decode_step(both.take(np.array([i])))[0] for i in range(2)]
    np.testing.assert_allclose(beside, alone, rtol=1e-12, atol=0.0)


def test_a_static_decode_step_in_bf16_scores_the_same_beside_int4_deployments() -> None:
    """The same through ``estimate``: bf16 Llama-3-8B deployments on H100s under vLLM (batch 3,
    35 and 150, replays padded to 4, 40 and 152) scored with int4 ones and alone (before, 0.1-0.5%
    apart)."""
    from cost_models.deployment import estimate
    from cost_models.deployments import tensor_parallel
    from cost_models.dtypes import BF16, INT4
    from cost_models.models import get_model

    profile = load_profile("h100-sxm-vllm")
    formats = np.array([BF16, INT4, BF16, INT4, BF16])
    d = tensor_parallel(
        get_model("llama-3-8b"),
        H100,
        [1, 1, 2, 2, 4],
        weight_dtype=formats,
        batch=np.array([3.0, 3.0, 35.0, 35.0, 150.0]),
        prompt_len=np.full(5, 1024.0),
        gen_len=np.full(5, 128.0),
    )
    bf16 = np.flatnonzero(formats == BF16)
    beside = estimate(d, calibration=profile).decode_step_latency_s[bf16]
    alone = estimate(d.take(bf16), calibration=profile).decode_step_latency_s
    np.testing.assert_allclose(beside, alone, rtol=1e-12, atol=0.0)
