"""Estimates under a calibration profile: every command names its profile, ``none`` is the pure
roofline, a profile is never faster than the roofline it refines, and bad profiles are refused."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cli_helpers import assert_one_error_line, run_cli
from cost_models.calibration import load_profile, profile_for, resolve_calibration
from cost_models.deployment import estimate, estimate_one
from cost_models.deployments import Deployment, Deployments
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.models import get_model

DONE_WHEN = (
    "estimate",
    "--model",
    "llama-2-70b",
    "--hardware",
    "h100-sxm",
    "--chips",
    "4",
    "--batch",
    "16",
    "--prompt-len",
    "2048",
    "--gen-len",
    "128",
    "--json",
)


def cli_json(capsys, *args: str) -> dict:
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    return json.loads(out)


def test_estimate_reports_calibrated_latencies_and_names_its_profile(capsys):
    calibrated = cli_json(capsys, *DONE_WHEN)
    roofline = cli_json(capsys, *DONE_WHEN, "--calibration", "none")
    assert calibrated["calibration"]["profile"].startswith("h100-sxm-")
    assert calibrated["calibration"]["fallback"] is False
    assert roofline["calibration"]["profile"] == "none"
    # The same deployment on the same mesh: calibrated is slower than the lower bound.
    pinned = cli_json(capsys, *DONE_WHEN, "--mesh", roofline["mesh"])
    assert pinned["decode"]["step_latency_s"] > roofline["decode"]["step_latency_s"]
    assert pinned["prefill"]["latency_s"] > roofline["prefill"]["latency_s"]
    # Measured H100 serving: the roofline's decode step is 0.5-0.65 of the real one (issue 9).
    ratio = roofline["decode"]["step_latency_s"] / pinned["decode"]["step_latency_s"]
    assert 0.4 < ratio < 0.8, ratio


def test_calibration_none_is_the_pure_roofline(capsys):
    """By hand: Llama-2-7B (6,738,149,376 parameters, bf16) decoding one sequence at context 512 on
    one A100 80GB (2.039 TB/s) is weight-bound: one step reads the 13.48 GB of weights at least
    once (6.61 ms), and the KV cache (2 x 32 layers x 4096 x 2 B x ~512 = 0.27 GB) and activations
    add about 2%. Under ``none`` the step is that; under the shipped profile it is far slower."""
    weights_s = 6_738_149_376 * 2 / 2.039e12
    args = (
        "estimate",
        "--model",
        "llama-2-7b",
        "--hardware",
        "a100-80gb",
        "--chips",
        "1",
        "--batch",
        "1",
        "--prompt-len",
        "512",
        "--gen-len",
        "2",
        "--json",
    )
    roofline = cli_json(capsys, *args, "--calibration", "none")
    assert resolve_calibration("none", "a100-80gb") is None
    assert roofline["calibration"]["profile"] == "none"
    assert weights_s <= roofline["decode"]["step_latency_s"] <= 1.03 * weights_s
    calibrated = cli_json(capsys, *args)
    assert calibrated["decode"]["step_latency_s"] > 1.1 * weights_s


# Not l40s: its 96 MB L2 holds small weights, and its measured GEMMs beat the GDDR6 roofline (the
# profile's l2_speedup); a DRAM roofline is no lower bound there.
@pytest.mark.parametrize("chip", ["a100-80gb", "h100-sxm", "h200", "b200", "tpu-v4"])
def test_calibrated_never_faster_than_the_roofline(chip):
    model = get_model("llama-2-7b")
    rows = [
        Deployment(
            model=model,
            hardware=get_hardware(chip),
            mesh=(1, 1, 1),
            batch=batch,
            prompt_len=prompt,
            gen_len=16,
            weight_dtype=w,
            prefill_ffn_layout="ws_1d",
            decode_ffn_layout="ws_1d",
        )
        for batch in (1, 8, 64)
        for prompt in (128, 2048)
        for w in ("bf16", "int8", "int4")
    ]
    d = Deployments.from_rows(rows)
    profile = resolve_calibration("auto", chip)
    assert profile is not None and profile.chip == chip
    roofline, calibrated = estimate(d), estimate(d, calibration=profile)
    assert np.all(calibrated.decode_step_latency_s >= roofline.decode_step_latency_s * 0.999)
    assert np.all(calibrated.prefill.latency_s >= roofline.prefill.latency_s * 0.999)


#: Kimi-K2's router by hand: 2 x d_model (7168) x experts (384) FLOPs per token, 8 x 4096 tokens
#: of prefill on one A100 80GB at its bf16 peak (312 TFLOP/s): 0.578 ms, where its bytes (8 x 4096
#: x 7168 x 2 B = 0.47 GB read) take 0.23 ms at the full 2.039 TB/s.
ROUTER_TOKENS = 8 * 4096
ROUTER_FLOPS_S = 2 * ROUTER_TOKENS * 7168 * 384 / 312e12


def test_calibrated_router_never_beats_its_flops_in_analyze():
    """The router is a matmul timed as a bandwidth-bound kernel; with 384 experts its FLOPs bind,
    and the calibrated time (a100-80gb-trtllm: 0.30 ms from its bytes alone) was below them."""
    from cost_models.analysis import analyze
    from cost_models.inference_configs import PREFILL, make_configs
    from cost_models.operators import OP

    configs = make_configs(
        [get_model("kimi-k2")], phase=np.array([PREFILL]), batch=np.array([8]), seq_len=np.array([4096])
    )
    result = analyze(configs, get_hardware("a100-80gb"), calibration=load_profile("a100-80gb-trtllm"))
    assert result.calibrated_time_s is not None
    assert float(result.calibrated_time_s[OP["router"], 0]) >= ROUTER_FLOPS_S


def test_calibrated_router_never_beats_its_flops_in_estimate(monkeypatch):
    """The same router in tuner estimate's path, which fills only the per-chip bytes of the
    slots it times as elementwise kernels (the router's FLOPs must be filled for it)."""
    from cost_models import deployment
    from cost_models.deployments import tensor_parallel
    from cost_models.operators import OP

    d = tensor_parallel(get_model("kimi-k2"), get_hardware("a100-80gb"), 1, batch=8, prompt_len=4096, gen_len=2)
    seen: list[np.ndarray] = []
    original = deployment.calibrated_operator_times

    def record(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(deployment, "calibrated_operator_times", record)
    deployment.estimate(d, calibration=load_profile("a100-80gb-trtllm"))
    prefill_router_s = float(seen[0][OP["router"], 0])
    assert prefill_router_s >= ROUTER_FLOPS_S
    assert prefill_router_s <= ROUTER_FLOPS_S * 1.01 + 1e-4  # the FLOPs bind (plus a launch)


def test_weight_only_quantization_saves_less_than_the_roofline_says():
    """Measured Llama-2-7B decode goes 105 -> 156 -> 197 tokens/s from 16 to 8 to 4 weight bits
    (issue 9): 1.49x then 1.26x, where the roofline halves the step each time."""
    steps = {
        bits: estimate_one(
            "llama-2-7b",
            "a100-80gb",
            chips=1,
            batch=1,
            prompt_len=512,
            gen_len=64,
            phase="decode",
            weight_bits=bits,
            calibration=cal,
        )["decode"]["step_latency_s"]
        for bits in (16, 8, 4)
        for cal in ("auto",)
    }
    roof = {
        bits: estimate_one(
            "llama-2-7b",
            "a100-80gb",
            chips=1,
            batch=1,
            prompt_len=512,
            gen_len=64,
            phase="decode",
            weight_bits=bits,
            calibration="none",
        )["decode"]["step_latency_s"]
        for bits in (16, 8, 4)
    }
    assert roof[16] / roof[8] > 1.8 and roof[8] / roof[4] > 1.6
    assert 1.2 < steps[16] / steps[8] < 1.7
    assert 1.05 < steps[8] / steps[4] < 1.5


def test_fallback_profile_says_so(capsys):
    report = cli_json(
        capsys,
        "estimate",
        "--model",
        "llama-2-7b",
        "--hardware",
        "l4",
        "--chips",
        "1",
        "--batch",
        "1",
        "--prompt-len",
        "128",
        "--gen-len",
        "8",
        "--json",
    )
    assert report["calibration"]["fallback"] is True
    assert "no profile fitted on l4" in report["calibration"]["note"]


def test_a_backend_that_contradicts_the_named_profile_is_refused(capsys):
    """--calibration h100-sxm-vllm --backend trtllm ran vLLM's kernel fits under TensorRT-LLM's
    engine knobs, and said only vllm: refused in one line; the profile's own engine is accepted."""
    assert resolve_calibration("h100-sxm-vllm", "h100-sxm", "vllm").backend == "vllm"
    with pytest.raises(InvalidInputError) as info:
        resolve_calibration("h100-sxm-vllm", "h100-sxm", "trtllm")
    assert info.value.field == "backend"
    args = ("estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1", "--batch", "8")
    args += ("--prompt-len", "512", "--gen-len", "64", "--calibration", "h100-sxm-vllm", "--backend", "trtllm")
    code, out, err = run_cli(capsys, *args)
    assert_one_error_line(code, out, err, ("backend", "h100-sxm-vllm"))


def test_a_profile_of_another_chip_is_refused(capsys):
    with pytest.raises(InvalidInputError) as info:
        resolve_calibration("h100-sxm-trtllm", "a100-80gb")
    assert "h100-sxm" in str(info.value)
    code, out, err = run_cli(
        capsys,
        "estimate",
        "--model",
        "llama-2-7b",
        "--hardware",
        "a100-80gb",
        "--chips",
        "1",
        "--batch",
        "1",
        "--prompt-len",
        "128",
        "--gen-len",
        "8",
        "--calibration",
        "h100-sxm-trtllm",
    )
    assert_one_error_line(code, out, err, ("chip",))


def test_a_profile_file_is_used_and_a_broken_one_refused(capsys, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(load_profile("h100-sxm-trtllm").to_yaml())
    report = cli_json(
        capsys,
        "estimate",
        "--model",
        "llama-2-7b",
        "--hardware",
        "h100-sxm",
        "--chips",
        "1",
        "--batch",
        "1",
        "--prompt-len",
        "128",
        "--gen-len",
        "8",
        "--calibration",
        str(path),
        "--json",
    )
    assert report["calibration"]["profile"] == "h100-sxm-trtllm"
    broken = tmp_path / "broken.yaml"
    broken.write_text("chip: h100-sxm\nbackend: trtllm\ngemm: {bfloat16: {compute_eff: 7}}\n")
    code, out, err = run_cli(
        capsys,
        "estimate",
        "--model",
        "llama-2-7b",
        "--hardware",
        "h100-sxm",
        "--chips",
        "1",
        "--batch",
        "1",
        "--prompt-len",
        "128",
        "--gen-len",
        "8",
        "--calibration",
        str(broken),
    )
    assert_one_error_line(code, out, err, ("compute_eff",))


def test_analyze_names_its_profile(capsys):
    report = cli_json(
        capsys,
        "analyze",
        "--model",
        "llama-2-7b",
        "--hardware",
        "h100-sxm",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--seq-len",
        "1024",
        "--json",
    )
    assert report["calibration"]["profile"].startswith("h100-sxm-")
    for op in report["operators"]:
        assert op["time_s"] >= op["roofline_time_s"] * 0.999


def test_shipped_profiles_cover_every_measured_chip():
    for chip in ("a100-80gb", "h100-sxm", "h200", "b200", "gb200", "l40s"):
        for backend in ("trtllm", "vllm", "sglang"):
            profile = profile_for(chip, backend)
            assert not profile.fallback, (chip, backend)
            assert profile.cv_error, (chip, backend)
    tpu = profile_for("tpu-v4", "jax")
    assert not tpu.fallback and any(key.startswith("end_to_end/") for key in tpu.cv_error)


ESTIMATE_ARGS = ("estimate", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--chips", "1", "--batch", "1")


@pytest.mark.parametrize(
    "content, field",
    [
        # Bytes that are not UTF-8 (a binary file passed by mistake) were a UnicodeDecodeError traceback.
        (b"\x89PNG\r\n\x1a\n\xb2\xff\x00binary", "not a text (UTF-8) profile file"),
        # A chip the catalog lacks was blamed on --hardware ("hardware: unknown hardware"), not the file.
        (load_profile("h100-sxm-trtllm").to_yaml().replace("chip: h100-sxm", "chip: h100-sxn").encode(), ".chip:"),
        # A misspelt GEMM format was never looked up: the estimate silently ran the bf16 fit or the roofline.
        (load_profile("h100-sxm-trtllm").to_yaml().replace("\n  bfloat16:", "\n  bfloat_16:", 1).encode(), ".gemm:"),
        # .inf overheads or kernel parameters made every latency inf or NaN: --json a ValueError traceback.
        (
            re.sub(
                r"per_step_overhead_s: \S+", "per_step_overhead_s: .inf", load_profile("h100-sxm-trtllm").to_yaml()
            ).encode(),
            "per_step_overhead_s: Input should be a finite number",
        ),
        (
            re.sub(r"launch_s: \S+", "launch_s: .inf", load_profile("h100-sxm-trtllm").to_yaml(), count=1).encode(),
            "launch_s: Input should be a finite number",
        ),
    ],
)
def test_a_binary_unknown_chip_or_misspelt_format_profile_is_one_line_naming_the_file(capsys, tmp_path, content, field):
    path = tmp_path / "mine.yaml"
    path.write_bytes(content)
    code, out, err = run_cli(
        capsys, *ESTIMATE_ARGS, "--prompt-len", "128", "--gen-len", "8", "--calibration", str(path)
    )
    line = assert_one_error_line(code, out, err, (field,))
    assert str(path) in line


FP8_PREFILL = dict(model="llama-3-70b", hardware="h200", tp=1, batch=64, prompt_len=1024, gen_len=128)


def test_fp8_weights_compute_at_the_fp8_peak_under_an_engine_profile():
    # QA's repro: fp8 weights with 16-bit activations were timed as the measured W8A8 fp8 GEMM but
    # bounded by the bf16 roofline: prefill 7.48 s, compute 9.16 s (above its own latency), MFU 1.21.
    # On a GPU with fp8 tensor cores every engine runs them W8A8 (activations quantized per token):
    # the roofline bound and the MFU peak are the fp8 kernel's.
    calibrated = estimate_one(**FP8_PREFILL, weight_bits="fp8", backend="vllm")
    roofline = estimate_one(**FP8_PREFILL, weight_bits="fp8", calibration="none")
    prefill = calibrated["prefill"]
    assert prefill["mfu"] <= 1.0
    assert prefill["latency_s"] >= prefill["compute_s"]
    # The weight matmuls' compute at twice the bf16 peak (attention stays bf16): about half.
    assert 0.45 < prefill["compute_s"] / roofline["prefill"]["compute_s"] < 0.6
    assert any("W8A8" in note and "quantizing the activations to fp8" in note for note in calibrated["notes"])
    # The pure roofline keeps the papers' convention: the wider operand's peak, as for bf16 weights.
    bf16 = estimate_one(**FP8_PREFILL, calibration="none")
    assert roofline["prefill"]["compute_s"] == pytest.approx(bf16["prefill"]["compute_s"], rel=1e-12)
    assert not roofline["notes"]
    # Both operands fp8: nothing changes and nothing is said.
    both = estimate_one(**FP8_PREFILL, weight_bits="fp8", act_bits="fp8", backend="vllm")
    assert both["prefill"]["mfu"] == pytest.approx(prefill["mfu"], rel=0.05)
    assert not any("W8A8" in note for note in both["notes"])


def test_tpus_keep_the_wider_operands_peak_under_a_profile(monkeypatch):
    # A TPU's profile (here a v5p with fp8, under the documented default) times its GEMMs, but its
    # roofline terms stay the operands' (the brief: TPUs as they were). (The pure roofline in
    # float64, deployment.ROOFLINE_DTYPE, as the calibrated path computes its terms: the two
    # compared to float64 rounding; float32's is ~1e-7 from it, test_float32_roofline.py.)
    monkeypatch.setattr("cost_models.deployment.ROOFLINE_DTYPE", np.float64)
    calibrated = estimate_one(
        "llama-3-8b", "tpu-v5p", mesh="2x2x1", batch=8, prompt_len=512, gen_len=16, weight_bits="fp8"
    )
    roofline = estimate_one(
        "llama-3-8b",
        "tpu-v5p",
        mesh="2x2x1",
        batch=8,
        prompt_len=512,
        gen_len=16,
        weight_bits="fp8",
        calibration="none",
    )
    assert calibrated["prefill"]["compute_s"] == pytest.approx(roofline["prefill"]["compute_s"], rel=1e-12)
    assert not any("W8A8" in note for note in calibrated["notes"])


def test_outputs_name_the_profile_file_in_force(capsys, tmp_path):
    """A user's own fit is named as the shipped profile is (h100-sxm-vllm): the outputs said
    "calibration: h100-sxm-vllm" for both, so nothing showed which of the two was used."""
    path = tmp_path / "my-h100.yaml"
    path.write_text(load_profile("h100-sxm-vllm").model_copy(update={"per_step_overhead_s": 2e-3}).to_yaml())
    args = ["--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1", "--batch", "8"]
    args += ["--prompt-len", "1024", "--gen-len", "128"]
    mine = cli_json(capsys, "estimate", *args, "--calibration", str(path), "--json")
    shipped = cli_json(capsys, "estimate", *args, "--calibration", "h100-sxm-vllm", "--json")
    assert mine["calibration"]["file"] == str(path)
    assert "file" not in shipped["calibration"]
    code, out, err = run_cli(capsys, "estimate", *args, "--calibration", str(path))
    assert code == 0 and f"calibration: h100-sxm-vllm from {path}" in out
    args = ["--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1", "--concurrency", "4"]
    args += ["--prompt-len", "256", "--gen-len", "16", "--requests", "20", "--json"]
    simulated = cli_json(capsys, "simulate", *args, "--calibration", str(path))
    assert simulated["calibration"]["file"] == str(path)


def test_analyze_says_the_profiles_engine_overheads_are_outside_its_total(capsys, tmp_path):
    """The overheads an end-to-end fit moves were in no operator, so analyze's whole-model time
    under such a profile was the shipped profile's, silently ms under tuner estimate's step."""
    path = tmp_path / "fitted.yaml"
    fitted = load_profile("h100-sxm-vllm").model_copy(
        update={"per_layer_overhead_s": 5e-5, "per_step_overhead_s": 2e-3}
    )
    path.write_text(fitted.to_yaml())
    args = ["--model", "llama-3-8b", "--hardware", "h100-sxm", "--phase", "decode", "--batch", "8"]
    args += ["--seq-len", "1024", "--flash-attention", "--json"]
    mine = cli_json(capsys, "analyze", *args, "--calibration", str(path))
    shipped = cli_json(capsys, "analyze", *args, "--calibration", "h100-sxm-vllm")
    (note,) = [n for n in mine["notes"] if "engine overheads" in n]
    assert "3.6 ms a forward step" in note and "tuner estimate adds them" in note  # 32 x 50 us + 2 ms
    assert not any("engine overheads" in n for n in shipped["notes"])


def test_outputs_say_which_classes_a_partial_profile_leaves_on_the_roofline(capsys, tmp_path):
    """A profile fitted from GEMM files alone (tuner measure --ops gemm) timed attention and the
    collectives on the roofline while the outputs read as fully calibrated."""
    path = tmp_path / "gemm-only.yaml"
    shipped = load_profile("h100-sxm-vllm")
    path.write_text(
        shipped.model_copy(update={"prefill_attention": {}, "decode_attention": {}, "collectives": {}}).to_yaml()
    )
    args = ["--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "2", "--batch", "8"]
    args += ["--prompt-len", "1024", "--gen-len", "128"]
    partial = cli_json(capsys, "estimate", *args, "--calibration", str(path), "--json")
    assert partial["calibration"]["roofline_for"] == ["prefill attention", "decode attention", "collectives"]
    assert "roofline_for" not in cli_json(capsys, "estimate", *args, "--json")["calibration"]
    code, out, err = run_cli(capsys, "estimate", *args, "--calibration", str(path))
    assert "not fitted, on the roofline: prefill attention, decode attention, collectives" in out
    tpu = ["--model", "palm-540b", "--hardware", "tpu-v4", "--chips", "64", "--batch", "64"]
    tpu += ["--prompt-len", "128", "--gen-len", "8", "--json"]
    assert "roofline_for" not in cli_json(capsys, "estimate", *tpu)["calibration"]  # collectives: collective_step_s


@pytest.mark.parametrize("backend", ["trtllm", "vllm"])
def test_a_small_group_spanning_two_nodes_is_not_timed_as_a_measured_nvlink_collective(backend):
    """Mesh 2x1x8 on H100 nodes of 8: an x group is chips 0 and 8, one on each node. Its
    all-reduce of D = 1 MB needs each chip to send its other half (D/2) to the other node through
    its own 400 Gb/s NIC and take the reduced half back: at least 2 x (D/2) / 50e9 = 20 us. The
    profile timed it as its measured 2-GPU in-node all-reduce (6.4 us under h100-sxm-trtllm); a
    group inside one node (the same mesh's z groups, or 1x1x2) keeps the measured time."""
    from cost_models.calibrated_times import calibrated_network
    from cost_models.topology import network_for

    hardware = get_hardware("h100-sxm")
    base = network_for(hardware)
    network = calibrated_network(base, hardware, resolve_calibration("auto", "h100-sxm", backend))
    mesh = np.array([[2, 1, 8], [1, 1, 2]], dtype=np.float64)
    d = 1e6
    floor = 2 * (d / 2) / 50e9
    assert floor == pytest.approx(20e-6)
    measured_kind, implementation, table = network._table("all_reduce")

    def both_paths(axes: str) -> list[np.ndarray]:  # by rows (a search's path) and whole
        data = np.full(2, d)
        split = network.collective_time_s("all_reduce", data, mesh, axes)
        whole = network._whole_time_s("all_reduce", measured_kind, implementation, table, data, mesh, axes)
        return [split, whole]

    for across, inside in both_paths("x"):
        assert across >= floor
        assert across == pytest.approx(base.collective_time_s("all_reduce", np.array([d]), mesh[:1], "x")[0])
        assert inside == 0.0  # 1x1x2's x group is one chip
    measured = network.collective_time_s("all_reduce", np.array([d]), mesh[1:], "z")[0]
    assert measured < floor
    for times in both_paths("z"):
        assert times[1] == measured  # the same measured 2-GPU all-reduce inside one node


def test_a_tp8_decode_step_pays_the_engines_two_measured_all_reduces_per_block():
    """TensorRT-LLM TP8 on H100, Llama-3-8B, a batch of 8 decoding: each of the 32 blocks
    all-reduces the residual twice (after the attention's output projection and after the MLP's
    down projection), 8 x 4096 bf16 = 32,768 elements = 65,536 bytes each, with TensorRT-LLM's
    custom all-reduce, measured at 4.59 us over 8 H100s for 32,768 bf16 elements
    (data/kernels/custom_allreduce_perf.csv.gz, h100_sxm TRTLLM 1.3.0rc20). So the step's
    collectives take 32 x 2 x 4.59 = 294 us (the profile's fit within its 10% collectives target);
    the 4 NCCL collectives per block of Figure 3's 1D took 50 us a block, 1.6 ms a step. They are
    on the critical path: the step is the same under --overlap overlapped and added (the block's
    work and its collectives add; hidden behind the work, they cost nothing at TP8)."""
    common = dict(chips=8, batch=8, prompt_len=1024, gen_len=128, flash_attention=True, calibration="h100-sxm-trtllm")
    overlapped = estimate_one("llama-3-8b", "h100-sxm", **common)["decode"]
    added = estimate_one("llama-3-8b", "h100-sxm", overlap="added", **common)["decode"]
    comm_per_step_s = overlapped["comm_s"] / 128
    assert comm_per_step_s == pytest.approx(32 * 2 * 4.59e-6, rel=0.10)
    assert overlapped["step_latency_s"] == pytest.approx(added["step_latency_s"], rel=1e-12)
