"""End-to-end calibration: TPU v4 fitted on some of Pope et al.'s tables, checked on the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_error_line, run_cli
from cost_models.calibration import load_profile
from cost_models.deployment import estimate
from cost_models.deployments import Deployments, tensor_parallel
from cost_models.dtypes import FP8
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.serving import make_workloads, serve
from tuner import calibrate_e2e as e2e
from tuner.accuracy_report import TPU_FIT

POPE = Path(__file__).resolve().parents[2] / "data" / "e2e" / "pope2022_tpu_v4.csv"
TRAIN = ["table2", "figure8"]
HELD_OUT = ["figure6", "table_d2"]


@pytest.fixture(scope="module")
def tpu_fit() -> tuple[e2e.E2EReport, np.ndarray, np.ndarray]:
    points = e2e.read_points(POPE)
    report = e2e.fit_end_to_end(points, e2e.roofline_profile("tpu-v4", "jax"), TPU_FIT, TRAIN)
    deployments, index, kind, seconds = e2e._observations(points)
    groups = np.array([points[i].group for i in index])
    held = np.isin(groups, HELD_OUT)
    predicted = e2e.predict(report.profile, deployments, index, kind)
    return (
        report,
        np.abs(predicted[held] / seconds[held] - 1),
        np.abs(e2e.predict(None, deployments, index, kind)[held] / seconds[held] - 1),
    )


def test_tpu_v4_held_out_error(tpu_fit):
    """Fit on Table 2 and Figure 8, never shown Figure 6 or Table D.2. Measured (this commit):
    held-out median 6.6% (p90 27%) over the 20 held-out measurements (Table D.2 6.6%, Figure 6 8.2%),
    against the pure roofline's 50%. The fixed cost per layer is the latency of the layer's
    collective steps (collective_step_s, 3.8 us), so it grows with the slice's rings; with a
    constant per-layer overhead instead Figure 6 was 34% off (Table D.2 3.5%). The torus runs the
    authors' program (partitioning.torus_layer_collectives: rings looped inside their matmuls,
    the residual's collectives over the F axes and 1D's all-reduce over yz on the critical path);
    before it Figure 6 was 13.7% (1D weight-stationary on 128 and 256 chips 26% and 31% under,
    now 18% and 12%; Table D.2 6.1%)."""
    report, errors, roofline = tpu_fit
    assert len(errors) == 20
    assert np.median(errors) <= 0.10, np.median(errors)
    # The papers' pure roofline, for comparison: 59% before the torus charged the unfused
    # collectives to the block (the roofline runs the same program), 50% since; 0.4 keeps it a
    # roofline's distance from the measurements.
    assert np.median(roofline) > 0.4
    assert report.held_out["table_d2"]["median"] <= 0.10
    # Figure 6 meets the 10% target: 8.2% measured (13.7% and a 0.20 bar before the torus ran the
    # authors' program; 34% with a constant per-layer overhead and Figure 6's heads left at 64).
    assert report.held_out["figure6"]["median"] <= 0.10


def test_shipped_tpu_v4_profile_is_this_fit(tpu_fit):
    report, _, _ = tpu_fit
    shipped = load_profile("tpu-v4-jax")
    assert shipped.collective_step_s == pytest.approx(report.values["collective_step_s"], rel=1e-3)
    assert shipped.per_layer_overhead_s == 0.0  # the collective steps are the fixed cost per layer
    assert shipped.gemm["bfloat16"].compute_eff == pytest.approx(report.values["compute_eff"], rel=1e-3)
    assert shipped.cv_error["end_to_end/table_d2"].median == pytest.approx(
        report.held_out["table_d2"]["median"], rel=1e-3
    )


@pytest.mark.parametrize(
    "profile",
    sorted(p.stem for p in (Path(__file__).parents[2] / "cost_models" / "calibration_profiles").glob("*.yaml")),
)
def test_shipped_profiles_name_their_data_files_from_the_repository(profile):
    """A shipped profile's provenance names each data file as the repository holds it (data/...),
    not the absolute path of the checkout that fitted it (tpu-v4-jax named /work/main/data/e2e/...,
    a path no clean clone has)."""
    for data_file in load_profile(profile).provenance.data_files:
        assert not Path(data_file.path).is_absolute(), (profile, data_file.path)
        assert (Path(__file__).parents[2] / data_file.path).is_file(), (profile, data_file.path)


def test_collective_steps_are_charged_per_layer_and_grow_with_the_slice():
    """A profile's collective_step_s adds layers x steps x collective_step_s to a step, the steps
    counted by hand (one ring per torus axis, K_a - 1 steps each). PaLM 540B decode, 2D
    weight-stationary, batch-sharded attention (Figure 6's rows): all-gather over yz,
    reduce-scatter over x, all-gather over x, reduce-scatter over yz, two all-to-alls over xyz.
    4x4x4: 6 + 3 + 3 + 6 + 2 x 9 = 36; 4x4x8: 10 + 3 + 3 + 10 + 2 x 13 = 52;
    4x8x8: 14 + 3 + 3 + 14 + 2 x 17 = 68. Head-sharded (Figure 8) has no all-to-all: 18 on 4x4x4."""
    points = [p for p in e2e.read_points(POPE) if p.group in ("figure6", "figure8")]
    chosen = [p for p in points if p.deployment.decode_ffn_layout == "ws_2d" and p.group == "figure6"]
    chosen += [next(p for p in points if p.group == "figure8" and p.deployment.decode_attn_sharding == "head")]
    deployments = Deployments.from_rows([p.deployment for p in chosen])
    base = e2e.roofline_profile("tpu-v4", "jax")
    step_s = 1e-5
    stepped = base.model_copy(update={"collective_step_s": step_s})
    # Added (not overlapped) so that the difference is the term alone, whatever the collectives' time.
    without = estimate(deployments, overlap="added", calibration=base).decode_step_latency_s
    with_steps = estimate(deployments, overlap="added", calibration=stepped).decode_step_latency_s
    layers = np.array([118, 118, 118, 8])
    np.testing.assert_allclose(with_steps - without, layers * np.array([36, 52, 68, 18]) * step_s, rtol=1e-9)
    # The pure roofline (no profile) charges none of it.
    roofline = estimate(deployments, overlap="added").decode_step_latency_s
    assert np.all(roofline < with_steps)


def test_cli_refits_the_shipped_tpu_profile(capsys, tmp_path):
    out_file = tmp_path / "tpu.yaml"
    code, out, err = run_cli(
        capsys,
        "calibrate",
        "--hardware",
        "tpu-v4",
        "--backend",
        "jax",
        "--points",
        str(POPE),
        "--train",
        ",".join(TRAIN),
        "-o",
        str(out_file),
    )
    assert code == 0, err
    assert "table_d2" in out and "held out" in out
    assert load_profile(out_file).chip == "tpu-v4"


def _points(tmp_path, text: str) -> Path:
    path = tmp_path / "points.csv"
    path.write_text(text)
    return path


HEADER = "model,hardware,chips,batch,prompt_len,gen_len,measured_decode_step_latency_s\n"


@pytest.mark.parametrize(
    "text,field",
    [
        ("model,hardware,chips,batch,prompt_len\nllama-2-7b,h100-sxm,1,1,128\n", "points.csv"),
        (HEADER + "llama-2-7b,h100-sxm,1,1,128,8,-0.01\n", "row 1"),
        (HEADER + "llama-2-7b,h100-sxm,1,1,128,8,0\n", "row 1"),
        (HEADER + "llama-2-7b,h100-sxm,1,x,128,8,0.01\n", "row 1"),
        (HEADER + "no-such-model,h100-sxm,1,1,128,8,0.01\n", "row 1"),
    ],
)
def test_bad_points_are_one_line_errors(tmp_path, text, field):
    with pytest.raises(InvalidInputError) as info:
        e2e.read_points(_points(tmp_path, text))
    assert field in str(info.value)


def test_a_points_row_runs_what_the_chip_runs_unless_it_says_otherwise(tmp_path):
    """A GPU row without layout columns is the engines' deployment (Megatron TP, heads split, fused
    attention), as tuner estimate and a benchmark JSON's point run it: it was Pope et al.'s TPU
    defaults (ws_2d, unfused attention), so a vLLM run's TPOT was fitted to another deployment.
    A TPU row keeps those defaults; a row's own columns win, act_bits and flash_attention included."""
    text = "model,hardware,chips,batch,prompt_len,gen_len,act_bits,flash_attention,measured_decode_step_latency_s\n"
    text += "llama-2-7b,h100-sxm,2,8,128,8,,,0.01\n"
    text += "llama-2-7b,h100-sxm,2,8,128,8,fp8,false,0.01\n"
    text += "palm-540b,tpu-v4,64,8,128,8,,,0.05\n"
    gpu, gpu_said, tpu = (p.deployment for p in e2e.read_points(_points(tmp_path, text)))
    assert (gpu.prefill_ffn_layout, gpu.decode_ffn_layout, gpu.flash_attention) == ("ws_1d", "ws_1d", True)
    assert (gpu_said.act_dtype, gpu_said.flash_attention) == ("fp8", False)
    assert (tpu.decode_ffn_layout, tpu.flash_attention) == ("ws_2d", False)


def test_a_misspelt_points_column_is_refused_not_dropped(tmp_path):
    """weight_bit (for weight_bits) was ignored: the row was fitted as a 16-bit deployment."""
    text = HEADER.replace("gen_len,", "gen_len,weight_bit,") + "llama-2-7b,h100-sxm,1,1,128,8,8,0.01\n"
    with pytest.raises(InvalidInputError) as info:
        e2e.read_points(_points(tmp_path, text))
    assert "weight_bit" in str(info.value) and "did you mean weight_bits" in str(info.value)


def test_too_few_points_and_another_chip(capsys, tmp_path):
    path = _points(tmp_path, HEADER + "llama-2-7b,h100-sxm,1,1,128,8,0.01\n")
    code, out, err = run_cli(
        capsys, "calibrate", "--hardware", "h100-sxm", "--backend", "trtllm", "--points", str(path)
    )
    assert_one_error_line(code, out, err, ("points",))
    code, out, err = run_cli(
        capsys, "calibrate", "--hardware", "a100-80gb", "--backend", "trtllm", "--points", str(path)
    )
    assert_one_error_line(code, out, err, ("points",))


def test_calibrated_decode_step_matches_measured_serving_tpot():
    """Not fitted on these runs (kernel fits only; the serving fit's held-out TPOT is
    test_calibrate_serving's): TensorRT-LLM serving Llama-3.1-8B on H100 at concurrency 8 (36 runs,
    TP 1-8) against the h100-sxm-trtllm profile's decode step of a static batch of 8. A static
    batch runs no prompt, while the measured decode iterations also prefill the other clients'
    prompts (the engine's in-flight batching), so the static step sits under the measured TPOT by
    that prefill, which grows with prompt / output tokens (measured - static ~ a + b x prompt /
    output with a within 0.45 ms of 0 and b 130 / 75 / 47 / 34 ms at TP 1 / 2 / 4 / 8, a prefill's
    fall with TP; docs/accuracy.md, STATIC_HOST_NOTE). Measured 2026-12-07, after the GEMM fits read
    the collectors' working sets: median 8.6% (ratio 0.91), 2.2% (0.98) on the 12 runs of at most 4
    prompt tokens per output token, 18.5% (0.82) on the 12 of at least 16; before it 9.8% (0.90), 3.1%
    (0.97) and 19.5% (0.80); before the refits of 2026-12-06 and 2026-12-07 11.4% (0.89), 4.5% (0.96)
    and 20.8% (0.79) (before the engines' fused QKV / gate_up GEMMs: 6.4%, the separate kernels'
    extra cost standing in for the prefill). The pure roofline is 42% off (issue 9: 0.5-0.65 of
    measured)."""
    from tuner.accuracy_report import serving_tpot_check

    check = serving_tpot_check()
    profile = check["h100-sxm-trtllm"]
    assert profile["rows"] == 36
    light, heavy = check["h100-sxm-trtllm prompt/output <= 4"], check["h100-sxm-trtllm prompt/output >= 16"]
    assert light["rows"] == heavy["rows"] == 12
    assert light["median"] <= 0.10  # little prefill inside the decode: the static step is the TPOT
    assert heavy["ratio"] < light["ratio"] <= 1.05  # the prefill the static step leaves out grows
    assert 0.8 <= profile["ratio"] <= 1.0 and profile["p90"] <= 0.35
    for tp in (1, 2, 4, 8):
        assert check[f"h100-sxm-trtllm TP{tp}"]["rows"] == 9
        assert check[f"h100-sxm-trtllm TP{tp}"]["median"] <= 0.15
    assert check["none"]["median"] >= 0.35  # the lower bound it replaces


def test_serving_benchmark_json_is_read_as_a_prefill_and_a_decode_step(tmp_path):
    """The keys ``vllm bench serve --save-result`` writes (and SGLang's bench_serving alike)."""
    result = {
        "completed": 100,
        "total_input_tokens": 102400,
        "total_output_tokens": 12800,
        "max_concurrency": 16,
        "mean_ttft_ms": 85.0,
        "mean_tpot_ms": 12.5,
        "request_throughput": 3.2,
    }
    path = tmp_path / "vllm-result.json"
    path.write_text(json.dumps(result))
    ttft, tpot = e2e.read_benchmark_json(path, model="llama-3-8b", hardware="h100-sxm", chips=2)
    d = tpot.deployment
    assert (d.batch, d.prompt_len, d.gen_len, d.mesh) == (16, 1024, 128, (1, 1, 2))
    assert tpot.decode_step_latency_s == pytest.approx(0.0125) and tpot.prefill_latency_s is None
    # TTFT: the prefill of the request's own prompt, not of all 16 clients' prompts at once.
    assert ttft.deployment.batch == 1 and ttft.deployment.prompt_len == 1024
    assert ttft.prefill_latency_s == pytest.approx(0.085) and ttft.decode_step_latency_s is None
    assert ttft.group == tpot.group == "vllm-result"
    del result["mean_tpot_ms"]
    path.write_text(json.dumps(result))
    with pytest.raises(InvalidInputError, match="mean_tpot_ms"):
        e2e.read_benchmark_json(path, model="llama-3-8b", hardware="h100-sxm", chips=2)


YAML_POINT = "- {model: llama-2-7b, hardware: h100-sxm, chips: 1, batch: 1, prompt_len: 128, gen_len: 8, "
YAML_POINT += "measured_decode_step_latency_s: 0.01}\n"


@pytest.mark.parametrize(
    "name,text,field",
    [
        # Were tracebacks: a YAML syntax error, a Python tag (refused, never run), a later point
        # without a required key (KeyError: 'model'), a CSV row cut short before model (None.strip()).
        ("points.yaml", "- {model: [\n", "points.yaml: not valid YAML"),
        ("points.yaml", "- !!python/object/apply:os.system [echo hi]\n", "points.yaml: not valid YAML"),
        ("points.yaml", YAML_POINT + "- {hardware: h100-sxm}\n", "row 2: no model"),
        ("points.yaml", YAML_POINT + "- {}\n", "row 2: no model"),
        ("points.csv", "group,model,hardware,chips,batch,prompt_len,gen_len,measured_prefill_latency_s\ng1\n", "row 1"),
        # A row with more fields than the header (a shifted row) was read, its extra value dropped.
        ("points.csv", HEADER + "llama-2-7b,h100-sxm,1,1,128,8,0.01,0.02\n", "row 1: 8 fields, header has 7"),
    ],
)
def test_malformed_points_files_are_one_line(capsys, tmp_path, name, text, field):
    path = tmp_path / name
    path.write_text(text)
    code, out, err = run_cli(
        capsys, "calibrate", "--hardware", "h100-sxm", "--backend", "trtllm", "--points", str(path)
    )
    assert_one_error_line(code, out, err, (field,))


BENCH = {"completed": 100, "total_input_tokens": 102400, "total_output_tokens": 12800, "max_concurrency": 16}
BENCH |= {"mean_ttft_ms": 85.0, "mean_tpot_ms": 12.5}


def _ten_per_client(clients: int) -> dict[str, int]:
    """A run's counts at ten 1024/128-token requests per client: the serving model's default
    (cost_models.serving.DEFAULT_REQUESTS_PER_CLIENT), which make_workloads gives the runs below.
    A run's own count sets its first burst's share of the mean TTFT."""
    return {
        "max_concurrency": clients,
        "completed": 10 * clients,
        "total_input_tokens": 1024 * 10 * clients,
        "total_output_tokens": 128 * 10 * clients,
    }


@pytest.mark.parametrize(
    "change,field",
    [
        # Were tracebacks (ValueError from float()/int()):
        ({"mean_ttft_ms": "fast"}, "mean_ttft_ms"),
        ({"completed": "x"}, "completed"),
        # Were read and fitted: NaN and negative latencies, no completed request (prompt and output
        # lengths coerced to 1 token), and a fractional concurrency cut to 0 (then blamed on "batch").
        ({"mean_tpot_ms": float("nan")}, "mean_tpot_ms"),
        ({"mean_ttft_ms": -85.0}, "mean_ttft_ms"),
        ({"completed": 0, "total_input_tokens": 0, "total_output_tokens": 0}, "completed"),
        ({"max_concurrency": 0.5}, "max_concurrency"),
    ],
)
def test_bad_benchmark_json_values_are_one_line(capsys, tmp_path, change, field):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(BENCH | change))
    args = ("--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1")
    code, out, err = run_cli(capsys, "calibrate", *args, "--bench-json", str(path))
    assert_one_error_line(code, out, err, (f"result.json: {field}",))


@pytest.mark.parametrize(
    "change,field",
    [
        # No vllm bench serve / SGLang bench_serving writes these; they were read and fitted.
        ({"num_prompts": 50}, "completed"),
        ({"request_rate": -2.0}, "request_rate"),
        ({"request_rate": "-inf"}, "request_rate"),
        ({"request_rate": float("nan")}, "request_rate"),
        ({"duration": 0}, "duration"),
        ({"duration": -3.5}, "duration"),
        ({"duration": float("inf")}, "duration"),
        ({"duration": "long"}, "duration"),
    ],
)
def test_impossible_benchmark_run_fields_are_one_line(capsys, tmp_path, change, field):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(BENCH | change))
    args = ("--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1")
    code, out, err = run_cli(capsys, "calibrate", *args, "--bench-json", str(path))
    line = assert_one_error_line(code, out, err, (f"result.json: {field}",))
    assert "pass the JSON" in line


def test_a_benchmark_run_with_its_own_counts_rate_and_duration_is_read(capsys, tmp_path):
    """The checks above leave the values real runs write alone: vllm's "inf" rate, a duration,
    num_prompts equal to completed."""
    path = tmp_path / "result.json"
    path.write_text(json.dumps(BENCH | {"num_prompts": 100, "request_rate": "inf", "duration": 42.0}))
    args = ("--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1")
    code, out, err = run_cli(capsys, "calibrate", *args, "--bench-json", str(path))
    assert code == 0, err


def test_benchmark_json_as_a_list_or_with_chips_0_is_one_line(capsys, tmp_path):
    path = tmp_path / "result.json"
    path.write_text("[1, 2]")
    args = ("--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b")
    code, out, err = run_cli(capsys, "calibrate", *args, "--chips", "1", "--bench-json", str(path))
    assert_one_error_line(code, out, err, ("not a JSON object",))
    path.write_text(json.dumps(BENCH))
    code, out, err = run_cli(capsys, "calibrate", *args, "--chips", "0", "--bench-json", str(path))
    assert_one_error_line(code, out, err, ("chips",))  # was blamed on "mesh"


def _bench_runs(tmp_path, **formats):
    """Benchmark JSONs at 8 and 32 clients of llama-3-8b on one H100 (weights and KV cache in
    ``formats``) whose mean TTFT and TPOT are serve()'s under the shipped h100-sxm-vllm profile
    plus 0.5 ms per step: (that per-step overhead, serve under a profile, the runs, the paths)."""
    base = load_profile("h100-sxm-vllm")
    true_step = base.per_step_overhead_s + 5e-4
    truth = e2e.apply(base, {"per_step_overhead_s": true_step})
    deployment = tensor_parallel(get_model("llama-3-8b"), get_hardware("h100-sxm"), [1, 1], **formats)
    clients = np.array([8.0, 32.0])

    def served(profile):
        workloads = make_workloads(backend="vllm", concurrency=clients, prompt_len=1024.0, gen_len=128.0)
        return serve(deployment, workloads, calibration=profile)

    runs = served(truth)
    paths = []
    for i, c in enumerate(clients):
        run = (
            BENCH
            | _ten_per_client(int(c))
            | {
                "mean_ttft_ms": float(runs.ttft_s[i]) * 1e3,
                "mean_tpot_ms": float(runs.tpot_s[i]) * 1e3,
            }
        )
        paths.append(tmp_path / f"c{int(c)}.json")
        paths[-1].write_text(json.dumps(run))
    return true_step, served, runs, paths


def test_benchmark_runs_are_fitted_in_the_formats_they_served(capsys, tmp_path):
    """A run served with fp8 weights and KV cache was read as bf16 (--bench-json had no way to
    say otherwise): the fitted overhead took the difference. --weight-bits / --kv-bits give the
    served formats; the fit then finds the 0.5 ms per step the runs were made with."""
    true_step, _, _, paths = _bench_runs(tmp_path, weight_dtype=FP8, kv_dtype=FP8)
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1", "--json"]
    fitted = {}
    for formats in ((), ("--weight-bits", "fp8", "--kv-bits", "fp8")):
        code, out, err = run_cli(capsys, "calibrate", *args, *formats, *(f"--bench-json={p}" for p in paths))
        assert code == 0, err
        fitted[formats] = json.loads(out)["fitted"]["per_step_overhead_s"]
    assert fitted[("--weight-bits", "fp8", "--kv-bits", "fp8")] == pytest.approx(true_step, rel=0.02)
    assert abs(fitted[()] - true_step) > 0.2 * true_step  # read as bf16: off
    # Without --bench-json the formats have nothing to describe: refused, not ignored.
    code, out, err = run_cli(capsys, "calibrate", "--hardware", "h100-sxm", "--backend", "vllm", "--kv-bits", "fp8")
    assert_one_error_line(code, out, err, ("--kv-bits",))


def test_benchmark_runs_are_fitted_as_the_serving_commands_predict_them(capsys, tmp_path):
    """Runs at 8 and 32 clients whose mean TTFT and TPOT are what the serving commands predict
    (cost_models.serving.serve with the engine's shipped host overheads) under the shipped profile
    plus 0.5 ms per step: the fit finds that overhead, and serve under the written profile predicts
    the runs back. They were read as a static prefill of one prompt and a decode step of the
    clients (deployment.estimate, no host overheads): the fit put the engine's host costs into the
    profile's overheads, and the serving commands, which add them again, counted them twice
    (on these runs: per_step 4.45 ms fitted for 0.5, TPOT 12.8 / 17.5 ms predicted for runs of
    8.9 / 13.5)."""
    true_step, served, runs, paths = _bench_runs(tmp_path)
    out_path = tmp_path / "fitted.yaml"
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1"]
    args += ["-o", str(out_path), "--json"]
    code, out, err = run_cli(capsys, "calibrate", *args, *(f"--bench-json={p}" for p in paths))
    assert code == 0, err
    report = json.loads(out)
    # One model, one layer count: per_layer x 32 + per_step is one number, so per_step alone.
    assert set(report["fitted"]) == {"per_step_overhead_s"}
    # The runs are the model's own predictions, so only the optimizer's tolerance is left: 2%
    # of 0.5 ms (10 us) is under 0.2% of the runs' TPOT.
    assert report["fitted"]["per_step_overhead_s"] == pytest.approx(true_step, rel=0.02)
    assert all(group["median"] < 0.01 for group in report["held_out"].values())
    again = served(load_profile(str(out_path)))
    assert again.tpot_s == pytest.approx(runs.tpot_s, rel=0.02)
    assert again.ttft_s == pytest.approx(runs.ttft_s, rel=0.02)
    # Fitting both overheads on one layer count says they are one number.
    code, out, err = run_cli(
        capsys,
        "calibrate",
        *args[:-3],
        "--json",
        "--fit",
        "per_layer_overhead_s,per_step_overhead_s",
        *(f"--bench-json={p}" for p in paths),
    )
    assert code == 0, err
    assert any("is one number" in w for w in json.loads(out)["warnings"])


def test_base_of_another_engine_is_refused(capsys, tmp_path):
    """--backend vllm with a TensorRT-LLM --base wrote a trtllm profile (the --backend was dropped)."""
    path = tmp_path / "points.yaml"
    path.write_text(YAML_POINT * 3)
    out_path = tmp_path / "out.yaml"
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--points", str(path), "-o", str(out_path)]
    code, out, err = run_cli(capsys, "calibrate", *args, "--base", "h100-sxm-trtllm", "--fit", "per_step_overhead_s")
    line = assert_one_error_line(code, out, err, ("--base",))
    assert "pass --backend trtllm" in line and not out_path.exists()


@pytest.mark.parametrize("change", [{"max_concurrency": None}, {}])
def test_benchmark_without_max_concurrency_is_refused(capsys, tmp_path, change):
    """vllm bench serve without --max-concurrency writes null (every request sent at the rate, by
    default all at once); it was fitted as a decode step of one sequence."""
    run = {k: v for k, v in BENCH.items() if k != "max_concurrency"} | change
    path = tmp_path / "rate.json"
    path.write_text(json.dumps(run))
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1"]
    code, out, err = run_cli(capsys, "calibrate", *args, "--bench-json", str(path))
    line = assert_one_error_line(code, out, err, ("max_concurrency",))
    assert "--max-concurrency" in line


def test_one_group_says_it_has_no_held_out_error(capsys, tmp_path):
    """Leave-one-group-out has nothing to leave out of one group: the table was empty, silently."""
    path = tmp_path / "points.yaml"
    rows = [
        f"- {{model: llama-2-7b, hardware: h100-sxm, chips: 1, batch: {b}, prompt_len: 128, gen_len: 8, "
        f"measured_decode_step_latency_s: {0.008 + b * 1e-4}}}\n"
        for b in (1, 4, 16)
    ]
    path.write_text("".join(rows))
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--points", str(path), "--fit", "per_step_overhead_s"]
    code, out, err = run_cli(capsys, "calibrate", *args)
    assert code == 0, err
    assert "! no held-out error: every point is in group 'points'" in out
    code, out, err = run_cli(capsys, "calibrate", *args, "--json")
    assert json.loads(out)["held_out"] == {} and any("no held-out error" in w for w in json.loads(out)["warnings"])


def test_roofline_error_is_the_roofline_not_the_base_profile(capsys, tmp_path):
    """Over a kernel profile, the "roofline med" column and the profile's roofline_median were
    the base profile's error, not the pure roofline's."""
    for name in ("x", "y"):
        rows = [
            f"- {{model: llama-2-7b, hardware: h100-sxm, chips: 1, batch: {b}, prompt_len: 128, gen_len: 8, "
            f"measured_decode_step_latency_s: {0.009 + b * 1e-4}}}\n"
            for b in (1, 4, 16)
        ]
        (tmp_path / f"{name}.yaml").write_text("".join(rows))
    out_path = tmp_path / "fitted.yaml"
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--fit", "per_step_overhead_s", "-o", str(out_path)]
    args += ["--points", str(tmp_path / "x.yaml"), "--points", str(tmp_path / "y.yaml"), "--json"]
    code, out, err = run_cli(capsys, "calibrate", *args)
    assert code == 0, err
    group = json.loads(out)["held_out"]["x"]
    points = e2e.read_points(tmp_path / "x.yaml")
    deployments, index, kind, seconds = e2e._observations(points)
    roofline = np.median(np.abs(e2e.predict(None, deployments, index, kind) / seconds - 1))
    base = np.median(np.abs(e2e.predict(load_profile("h100-sxm-vllm"), deployments, index, kind) / seconds - 1))
    assert group["roofline_median"] == pytest.approx(roofline) and group["before_median"] == pytest.approx(base)
    assert load_profile(out_path).cv_error["end_to_end/x"].roofline_median == pytest.approx(roofline)


def test_a_json_lines_file_of_several_runs_is_read_run_by_run(capsys, tmp_path):
    """SGLang's bench_serving appends each run to its output file as one JSON line
    (``open(output_file_name, "a")``; its default name, ``sglang_MMDD_{num_prompts}_{in}_{out}.jsonl``,
    is the same for every --max-concurrency of a sweep), as vllm bench serve --append-result does:
    such a file was refused whole, 'cannot read JSON (JSONDecodeError)'. Each line is now a run,
    in its own group, fitted as the same runs in separate files are."""
    true_step, _, runs, paths = _bench_runs(tmp_path)
    sweep = tmp_path / "sglang_1204_80_1024_128.jsonl"
    sweep.write_text("".join(json.dumps(json.loads(p.read_text())) + "\n" for p in paths))
    points = e2e.read_benchmark_json(sweep, model="llama-3-8b", hardware="h100-sxm", chips=1)
    assert [p.group for p in points] == ["sglang_1204_80_1024_128:1"] * 2 + ["sglang_1204_80_1024_128:2"] * 2
    assert [p.concurrency for p in points] == [8, 8, 32, 32]
    assert points[0].prefill_latency_s == pytest.approx(float(runs.ttft_s[0]))
    assert points[3].decode_step_latency_s == pytest.approx(float(runs.tpot_s[1]))
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1", "--json"]
    code, out, err = run_cli(capsys, "calibrate", *args, "--bench-json", str(sweep))
    assert code == 0, err
    report = json.loads(out)
    assert report["fitted"]["per_step_overhead_s"] == pytest.approx(true_step, rel=0.02)
    assert set(report["held_out"]) == {"sglang_1204_80_1024_128:1", "sglang_1204_80_1024_128:2"}
    # A line that is not JSON is named by its line.
    sweep.write_text(sweep.read_text() + "{'completed': 3}\n")
    code, out, err = run_cli(capsys, "calibrate", *args, "--bench-json", str(sweep))
    assert_one_error_line(code, out, err, ("sglang_1204_80_1024_128.jsonl:3: cannot read JSON",))


def test_held_out_error_is_told_per_quantity_so_a_ttft_the_fit_cannot_follow_shows(capsys, tmp_path):
    """Each benchmark group's error was the median of its one TTFT and one TPOT: runs whose TTFT
    is half the serving model's (a vLLM whose host costs per request are below the TensorRT-LLM
    overheads it borrows) printed about 50% for every group, TPOT's 1% and TTFT's 100% mixed.
    The held-out error over every group is now told per quantity, and a far-off one is said."""
    _, _, runs, paths = _bench_runs(tmp_path)
    for path in paths:
        run = json.loads(path.read_text())
        path.write_text(json.dumps(run | {"mean_ttft_ms": run["mean_ttft_ms"] / 2}))
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1"]
    code, out, err = run_cli(capsys, "calibrate", *args, "--json", *(f"--bench-json={p}" for p in paths))
    assert code == 0, err
    report = json.loads(out)
    ttft, tpot = report["held_out_by_quantity"]["TTFT"], report["held_out_by_quantity"]["TPOT"]
    assert ttft["rows"] == tpot["rows"] == 2
    # Measured TTFT is half the model's: predicted / measured 2 (the per-step overhead it fits is
    # under 1 ms of TTFTs near 60 ms), an error near 100%; TPOT is the model's own: under 5%.
    assert ttft["median_ratio"] == pytest.approx(2.0, rel=0.1) and ttft["median"] > 0.8
    assert tpot["median"] < 0.05
    assert any(w.startswith("TTFT held out") and "host overheads" in w for w in report["warnings"])
    code, out, err = run_cli(capsys, "calibrate", *args, *(f"--bench-json={p}" for p in paths))
    assert code == 0, err
    assert "TTFT over every group (2 rows): held out median" in out and "! TTFT held out" in out


@pytest.mark.parametrize(
    "model_id",
    ["meta-llama/Llama-3.1-8B-Instruct", "/models/Meta-Llama-3.1-8B-Instruct-FP8-dynamic/"],
)
def test_runs_whose_model_id_is_another_architecture_are_refused(capsys, tmp_path, model_id):
    """vllm bench serve records the checkpoint it served (model_id). Runs of Llama-3.1-8B fitted as
    --model qwen3-32b (64 layers of width 5120 against 32 of 4096: models.yaml) gave a per-step
    overhead on its lower bound, held out 180-227%, and a profile, exit 0. A model_id naming
    another catalog architecture is refused; one of the same architecture (Llama 3 8B and 3.1 8B:
    32 layers, 4096 wide, 8 KV heads, 14336 FFN, 128256 vocab) is not."""
    path = tmp_path / "run.json"
    path.write_text(json.dumps(BENCH | {"model_id": model_id}))
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--chips", "1", "--bench-json", str(path)]
    out_path = tmp_path / "p.yaml"
    code, out, err = run_cli(capsys, "calibrate", *args, "--model", "qwen3-32b", "-o", str(out_path))
    line = assert_one_error_line(code, out, err, ("run.json: model_id",))
    assert "not --model qwen3-32b" in line and "pass --model llama-3.1-8b" in line and not out_path.exists()
    points = e2e.read_benchmark_json(path, model="llama-3-8b", hardware="h100-sxm", chips=1)
    assert points[1].deployment.model.name == "llama-3-8b"


def test_a_benchmark_files_rows_used_are_its_measured_times_not_its_lines(capsys, tmp_path):
    """A profile's provenance counted a benchmark file's lines as the rows it gave: one run saved
    with indent=2 was 'rows_used: 7' (its 8 lines less a header), a bench_serving file of two runs
    (two lines) 1. Each run gives two measured times, its mean TTFT and TPOT."""
    _, _, _, paths = _bench_runs(tmp_path)
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(json.loads(paths[0].read_text()), indent=2))
    sweep = tmp_path / "sweep.jsonl"
    sweep.write_text("".join(json.dumps(json.loads(p.read_text())) + "\n" for p in paths))
    out_path = tmp_path / "p.yaml"
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1", "-o", str(out_path)]
    code, out, err = run_cli(capsys, "calibrate", *args, "--bench-json", str(pretty), "--bench-json", str(sweep))
    assert code == 0, err
    used = {Path(f.path).name: f.rows_used for f in load_profile(out_path).provenance.data_files}
    assert used == {"pretty.json": 2, "sweep.jsonl": 4}


def test_runs_of_several_tensor_parallel_sizes_are_fitted_together(capsys, tmp_path):
    """The benchmarks record no tensor-parallel size, and --chips was one value: runs of TP 1 and
    TP 2 could not be fitted together (--chips 1 --chips 2 kept the last, every run read as TP 2,
    and the fitted per-step overhead took the difference). --chips once per --bench-json pairs
    them in order; the runs (serve() under the shipped profile plus 0.5 ms per step) give it back."""
    base = load_profile("h100-sxm-vllm")
    true_step = base.per_step_overhead_s + 5e-4
    truth = e2e.apply(base, {"per_step_overhead_s": true_step})
    paths, chips = [], []
    for tp in (1, 2):
        deployment = tensor_parallel(get_model("llama-3-8b"), get_hardware("h100-sxm"), [tp, tp])
        clients = np.array([8.0, 32.0])
        workloads = make_workloads(backend="vllm", concurrency=clients, prompt_len=1024.0, gen_len=128.0)
        runs = serve(deployment, workloads, calibration=truth)
        for i, c in enumerate(clients):
            run = (
                BENCH
                | _ten_per_client(int(c))
                | {
                    "mean_ttft_ms": float(runs.ttft_s[i]) * 1e3,
                    "mean_tpot_ms": float(runs.tpot_s[i]) * 1e3,
                }
            )
            paths.append(tmp_path / f"tp{tp}-c{int(c)}.json")
            paths[-1].write_text(json.dumps(run))
            chips.append(tp)
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--json"]
    pairs = [
        word for path, tp in zip(paths, chips, strict=True) for word in ("--bench-json", str(path), "--chips", str(tp))
    ]
    code, out, err = run_cli(capsys, "calibrate", *args, *pairs)
    assert code == 0, err
    assert json.loads(out)["fitted"]["per_step_overhead_s"] == pytest.approx(true_step, rel=0.02)
    code, out, err = run_cli(capsys, "calibrate", *args, *pairs[:-2])  # the last file without its --chips
    assert_one_error_line(code, out, err, ("--chips: given 3 times for 4 --bench-json files",))


def test_a_group_whose_refit_has_no_more_times_than_parameters_is_not_called_cross_validated(capsys, tmp_path):
    """On a chip with no kernel profile (mi300x) an end-to-end fit moves three parameters
    (compute_eff, memory_eff, per_layer_overhead_s). Two benchmark runs give four times: each
    run's 'cross-validated' error came from a refit on the other run's two times, fewer than the
    parameters, and was printed as held out (2.1% and 2.5% on a QA pass's runs)."""
    _, _, _, paths = _bench_runs(tmp_path)
    args = ["--hardware", "mi300x", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1", "--json"]
    code, out, err = run_cli(capsys, "calibrate", *args, *(f"--bench-json={p}" for p in paths))
    assert code == 0, err
    report = json.loads(out)
    assert set(report["fitted"]) == {"compute_eff", "memory_eff", "per_layer_overhead_s"}
    assert report["held_out"] == {} and report["held_out_by_quantity"] == {}
    assert any(w.startswith("no held-out error for 2 group(s)") for w in report["warnings"]), report["warnings"]


@pytest.mark.parametrize("rate,throughput", [(2.0, 1.98), ("2.0", 1.99)])
def test_a_run_paced_by_its_request_rate_is_not_fitted_as_a_closed_loop(capsys, tmp_path, rate, throughput):
    """vllm bench serve --request-rate 2 --max-concurrency 64 sends Poisson arrivals at 2 req/s, the
    cap only a cap: its throughput is the rate (1.98 of 2 req/s), and far fewer than 64 requests
    ran at once. It was fitted as 64 closed-loop clients. A run whose throughput reaches 90% of a
    finite rate is refused; 'inf' (vLLM's string) and a rate the run fell short of are read."""
    path = tmp_path / "rate.json"
    path.write_text(json.dumps(BENCH | {"request_rate": rate, "request_throughput": throughput, "max_concurrency": 64}))
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1"]
    code, out, err = run_cli(capsys, "calibrate", *args, "--bench-json", str(path))
    line = assert_one_error_line(code, out, err, ("rate.json: request_rate",))
    assert "--request-rate inf" in line
    for fine in ({"request_rate": "inf"}, {"request_rate": 10.0, "request_throughput": 3.2}):
        path.write_text(json.dumps(BENCH | {"request_throughput": 3.2} | fine))
        assert len(e2e.read_benchmark_json(path, model="llama-3-8b", hardware="h100-sxm", chips=1)) == 2


def test_a_run_without_ttft_or_tpot_says_which_benchmark_option_writes_them(capsys, tmp_path):
    """vllm bench serve writes mean_<metric>_ms only for the metrics of --percentile-metrics
    (default ttft,tpot,itl); a run with '--percentile-metrics e2el' has no mean_tpot_ms, and the
    error's fix was 'pass the JSON a serving benchmark wrote', which it is."""
    path = tmp_path / "e2el.json"
    path.write_text(json.dumps({k: v for k, v in BENCH.items() if k != "mean_tpot_ms"} | {"mean_e2el_ms": 1800.0}))
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--model", "llama-3-8b", "--chips", "1"]
    code, out, err = run_cli(capsys, "calibrate", *args, "--bench-json", str(path))
    line = assert_one_error_line(code, out, err, ("e2el.json: missing key mean_tpot_ms",))
    assert "--percentile-metrics ttft,tpot,itl" in line


def test_points_in_milliseconds_are_refused_not_fitted(capsys, tmp_path):
    """Pope et al.'s TPU v4 points (data/e2e) with their measured seconds written as milliseconds
    (x1000) were fitted: the overheads on their upper bounds, every group held out ~100% off, a
    profile written, exit 0. In seconds each group has a point within 1.24-1.83x of the pure
    roofline; in milliseconds none within 100x: refused in one line naming the group and unit."""
    lines = POPE.read_text(encoding="utf-8").splitlines()
    header_at = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    columns = lines[header_at].split(",")
    measured = [columns.index(c) for c in e2e.MEASURED]
    rows = []
    for line in lines[header_at + 1 :]:
        fields = line.split(",")
        for j in measured:
            if fields[j]:
                fields[j] = repr(float(fields[j]) * 1000.0)
        rows.append(",".join(fields))
    path = tmp_path / "pope_ms.csv"
    path.write_text("\n".join([lines[header_at], *rows]) + "\n")
    out_path = tmp_path / "p.yaml"
    args = ["--hardware", "tpu-v4", "--backend", "jax", "--points", str(path), "-o", str(out_path)]
    code, out, err = run_cli(capsys, "calibrate", *args)
    line = assert_one_error_line(code, out, err, ("points group ", "every measured time is over 100x"))
    assert "in seconds (not milliseconds)" in line and not out_path.exists()


def test_a_point_faster_than_a_tenth_of_its_roofline_is_refused(capsys, tmp_path):
    """A static decode step cannot beat the chip's speed of light (the pure roofline): Llama-2-7B
    at batch 1 reads its 13.5 GB of bf16 weights, 4.0 ms at the H100's 3.35 TB/s (models.yaml,
    hardware.yaml). A row of 8.5 us (a millisecond value divided by 1000 twice) was fitted: the
    overhead on its lower bound, a profile written, exit 0."""
    assert 6.74e9 * 2 / 3.35e12 == pytest.approx(4.02e-3, rel=0.01)
    path = tmp_path / "fast.yaml"
    rows = [
        f"- {{group: g{i % 2}, model: llama-2-7b, hardware: h100-sxm, chips: 1, batch: 1, prompt_len: 128, "
        f"gen_len: 8, measured_decode_step_latency_s: {s}}}\n"
        for i, s in enumerate((0.0085, 0.0087, 8.5e-6, 0.0086))
    ]
    path.write_text("".join(rows))
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--points", str(path), "--fit", "per_step_overhead_s"]
    code, out, err = run_cli(capsys, "calibrate", *args)
    line = assert_one_error_line(
        code, out, err, ("points group g0", "took 8.5e-06 s, under a tenth of its pure roofline")
    )
    assert "in seconds" in line


def test_a_parameter_named_twice_in_fit_is_refused(capsys, tmp_path):
    """--fit per_step_overhead_s,per_step_overhead_s was accepted: the fit took one parameter and
    the messages repeated its name."""
    path = tmp_path / "points.yaml"
    path.write_text(YAML_POINT * 3)
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--points", str(path)]
    code, out, err = run_cli(capsys, "calibrate", *args, "--fit", "per_step_overhead_s, per_step_overhead_s")
    line = assert_one_error_line(code, out, err, ("--fit",))
    assert "'per_step_overhead_s'" in line and "twice" in line


def test_base_none_fits_on_the_kernel_defaults_where_a_kernel_profile_ships(capsys, tmp_path):
    """``--base none`` was refused ('profile: unknown profile') though the help named it the
    fallback base: on h100-sxm, where a kernel profile ships, it was not reachable at all. Points
    made by the kernel formulas at their defaults (e2e.roofline_profile) with known efficiencies
    and layer overhead: the fit over ``--base none`` finds them (the default fit over that base),
    and the written profile keeps its default kernels."""
    truth = {"compute_eff": 0.6, "memory_eff": 0.8, "per_layer_overhead_s": 5e-6}
    rows = [
        f"- {{model: {model}, hardware: h100-sxm, chips: {chips}, batch: {batch}, prompt_len: {prompt}, "
        f"gen_len: 8, measured_prefill_latency_s: 1.0, measured_decode_step_latency_s: 1.0, group: g{chips}}}\n"
        for model in ("llama-2-7b", "llama-2-13b")
        for chips in (1, 2)
        for batch in (1, 8, 64)
        for prompt in (128, 2048)
    ]
    path = tmp_path / "points.yaml"
    path.write_text("".join(rows))
    points = e2e.read_points(path)
    deployments, index, kind, _ = e2e._observations(points)
    made = e2e.predict(e2e.apply(e2e.roofline_profile("h100-sxm", "vllm"), truth), deployments, index, kind)
    measured = iter(made.tolist())
    path.write_text(
        "".join(
            row.replace("prefill_latency_s: 1.0", f"prefill_latency_s: {next(measured)!r}").replace(
                "step_latency_s: 1.0", f"step_latency_s: {next(measured)!r}"
            )
            for row in rows
        )
    )
    out_path = tmp_path / "fitted.yaml"
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--points", str(path), "-o", str(out_path), "--json"]
    code, out, err = run_cli(capsys, "calibrate", *args, "--base", "none")
    assert code == 0, err
    fitted = json.loads(out)["fitted"]
    assert set(fitted) == set(truth)
    for name, value in truth.items():
        assert fitted[name] == pytest.approx(value, rel=1e-3), name
    assert not load_profile(out_path).collectives  # the roofline's, not h100-sxm-vllm's kernel fit


def test_an_unknown_base_names_what_base_takes(capsys, tmp_path):
    path = tmp_path / "points.yaml"
    path.write_text(YAML_POINT * 3)
    args = ["--hardware", "h100-sxm", "--backend", "vllm", "--points", str(path), "--base", "roofline"]
    line = assert_one_error_line(*run_cli(capsys, "calibrate", *args), ("--base",))
    assert "none (the kernel formulas at their defaults)" in line and "h100-sxm-vllm" in line
    assert "tpu-v4-jax" not in line


def test_the_report_names_its_base_column_after_the_base(capsys, tmp_path):
    """``--base none`` is the kernel formulas at their default parameters (e2e.roofline_profile),
    not the pure roofline of ``--calibration none``: on Pope et al.'s TPU v4 points the report's
    "roofline med" and "base med" columns read 57.4% and 56.4% for figure8, and the help called
    none "the pure roofline". The base column now says what the base is (the formulas' defaults,
    the --base profile named, or the shipped profile by default), and so do the help and the
    summary lines."""
    rows = [
        f"- {{model: llama-2-7b, hardware: h100-sxm, chips: 1, batch: {b}, prompt_len: 128, gen_len: 8, "
        f"measured_decode_step_latency_s: {0.009 + b * 1e-4}, group: g{b % 2}}}\n"
        for b in (1, 2, 4, 8)
    ]
    path = tmp_path / "points.yaml"
    path.write_text("".join(rows))
    args = ["calibrate", "--hardware", "h100-sxm", "--backend", "vllm", "--points", str(path)]
    args += ["--fit", "per_step_overhead_s"]
    profile_file = tmp_path / "mine.yaml"
    profile_file.write_text(load_profile("h100-sxm-vllm").to_yaml())
    for base, label in (
        ("none", "kernel defaults"),
        ("h100-sxm-vllm", "h100-sxm-vllm"),
        (str(profile_file), str(profile_file)),
        (None, "h100-sxm-vllm"),
    ):
        code, out, err = run_cli(capsys, *args, *(("--base", base) if base else ()))
        assert code == 0, err
        header = next(line for line in out.splitlines() if line.startswith("group"))
        assert f" roofline med {label} med " in " ".join(header.split()) + " ", header
        assert "base med" not in header, header
        assert f"({label} median " in out
        code, out, err = run_cli(capsys, *args, *(("--base", base) if base else ()), "--json")
        assert code == 0, err
        assert json.loads(out)["base"] == label
    code, out, _ = run_cli(capsys, "calibrate", "--help")
    assert code == 0
    help_text = " ".join(out.split())
    assert "none (the pure roofline" not in help_text
    assert "none: the kernel formulas at their default parameters" in help_text
    assert "not quite --calibration none's pure roofline" in help_text


@pytest.mark.parametrize("given", ["--points", "--bench-json"])
def test_a_fit_without_backend_names_the_input_given(capsys, tmp_path, given):
    """Without --backend, a --bench-json fit was told "--hardware and --backend are required with
    --points", a flag it never gave, beside a --points example."""
    path = tmp_path / "input.json"
    path.write_text(json.dumps(BENCH))
    code, out, err = run_cli(capsys, "calibrate", "--hardware", "h100-sxm", given, str(path))
    line = assert_one_error_line(code, out, err, ("--backend",))
    other = "--points" if given == "--bench-json" else "--bench-json"
    assert f"required with {given}" in line and other not in line
