"""The calibration line and JSON name the GEMM formats a deployment runs that its profile has no
fit for, with the fit that times them: a profile without an int8_wo fit times int8 weight-only
GEMMs with its bf16 fit (calibrated_times._gemm_params), which the line did not say (session 39).
Only where the deployment runs that format: a bf16 estimate says nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cli_helpers import run_cli
from cost_models.calibration import calibration_report, load_profile

REPO = Path(__file__).resolve().parents[2]
ESTIMATE = ("estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1", "--batch", "8")
ESTIMATE += ("--prompt-len", "512", "--gen-len", "64")


def _profile_gemm_formats(name: str) -> set[str]:
    """The GEMM formats a shipped profile's file fitted, read from the file itself."""
    data = yaml.safe_load((REPO / "cost_models" / "calibration_profiles" / f"{name}.yaml").read_text())
    return set(data["gemm"])


def test_the_profiles_relied_on_lack_the_formats_said_to_be_borrowed() -> None:
    assert {"int8_wo", "int4_wo"}.isdisjoint(_profile_gemm_formats("h100-sxm-vllm"))
    assert "bfloat16" in _profile_gemm_formats("h100-sxm-vllm")
    assert "fp8_block" not in _profile_gemm_formats("l40s-sglang")
    assert "fp8" in _profile_gemm_formats("l40s-sglang")


@pytest.mark.parametrize(("bits", "fmt"), [("8", "int8_wo"), ("4", "int4_wo")])
def test_estimate_names_a_borrowed_weight_only_fit(capsys, bits: str, fmt: str) -> None:
    code, out, err = run_cli(capsys, *ESTIMATE, "--weight-bits", bits)
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("calibration:"))
    assert f"gemm {fmt}: borrows bfloat16" in line
    code, out, err = run_cli(capsys, *ESTIMATE, "--weight-bits", bits, "--json")
    assert code == 0, err
    assert json.loads(out)["calibration"]["gemm_borrowed"] == {fmt: "bfloat16"}


@pytest.mark.parametrize("bits", ["16", "fp8"])
def test_estimate_in_a_fitted_format_names_no_borrowing(capsys, bits: str) -> None:
    code, out, err = run_cli(capsys, *ESTIMATE, "--weight-bits", bits, "--json")
    assert code == 0, err
    assert "gemm_borrowed" not in json.loads(out)["calibration"]
    code, out, err = run_cli(capsys, *ESTIMATE, "--weight-bits", bits)
    assert "borrows" not in next(x for x in out.splitlines() if x.startswith("calibration:"))


def test_block_scaled_fp8_on_a_profile_without_that_fit_borrows_the_per_tensor_one(capsys) -> None:
    # Qwen3-235B-A22B's fp8 checkpoint stores 128 x 128 block scales (catalog fp8_block_scales).
    code, out, err = run_cli(
        capsys, "estimate", "--model", "qwen3-235b-a22b", "--hardware", "l40s", "--backend", "sglang",
        "--tp", "8", "--batch", "8", "--prompt-len", "512", "--gen-len", "64", "--weight-bits", "fp8",
    )  # fmt: skip
    assert code == 0, err
    assert "gemm fp8_block: borrows fp8" in next(x for x in out.splitlines() if x.startswith("calibration:"))


def test_analyze_names_a_borrowed_fit(capsys) -> None:
    code, out, err = run_cli(
        capsys, "analyze", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--phase", "decode",
        "--batch", "8", "--seq-len", "512", "--weight-bits", "4",
    )  # fmt: skip
    assert code == 0, err
    assert "gemm int4_wo: borrows bfloat16" in out


def test_a_profile_without_a_bf16_fit_says_the_roofline_times_bf16() -> None:
    fp8_only = load_profile("h100-sxm-vllm")
    fp8_only = fp8_only.model_copy(update={"gemm": {"fp8": fp8_only.gemm["fp8"]}})
    report = calibration_report(fp8_only, gemm_formats=("bfloat16", "fp8"))
    assert report["gemm_borrowed"] == {"bfloat16": "roofline"}


@pytest.mark.parametrize(("weight_bits", "said"), [([16, "fp8"], ""), ([16, 8], "; gemm int8_wo: borrows bfloat16")])
def test_search_names_the_borrowed_fits_of_the_spaces_formats(tmp_path, capsys, weight_bits, said) -> None:
    spec = {
        "name": "borrow",
        "model": "llama-3-8b",
        "hardware": "h100-sxm",
        "workload": {"prompt_len": 512, "gen_len": 64},
        "space": {"chips": [1], "batch": [1, 8], "weight_bits": weight_bits},
        "objectives": [{"metric": "decode.step_latency_s"}],
        "sampler": "exhaustive",
    }
    path = tmp_path / "borrow.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    code, out, err = run_cli(capsys, "search", str(path), "--storage", f"sqlite:///{tmp_path}/b.db", "--json")
    assert code == 0, err
    # The H100's auto profile is vLLM's (the engine measured best on it).
    assert json.loads(out)["calibration"] == "h100-sxm-vllm" + said


def test_simulate_names_a_borrowed_fit(capsys) -> None:
    code, out, err = run_cli(
        capsys, "simulate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--tp", "1", "--concurrency", "4",
        "--prompt-len", "256", "--gen-len", "32", "--weight-bits", "8", "--requests", "50", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["calibration"]["gemm_borrowed"] == {"int8_wo": "bfloat16"}


def test_recommend_names_the_fit_its_int8_plans_borrow(capsys) -> None:
    """An A100 has no fp8 units: recommend tries int8 weight-only plans, which a100-80gb-sglang
    (no int8_wo fit) times with its bf16 fit."""
    assert "int8_wo" not in _profile_gemm_formats("a100-80gb-sglang")
    args = ("recommend", "--model", "llama-3.1-70b", "--request-rate", "2", "--prompt-len", "1024")
    args += ("--gen-len", "128", "--max-ttft-s", "2", "--max-tpot-s", "0.1", "--max-chips", "8", "--json")
    code, out, err = run_cli(capsys, *args, "--hardware", "a100-80gb", "--backend", "sglang")
    assert code == 0, err
    assert json.loads(out)["calibration"]["gemm_borrowed"] == {"int8_wo": "bfloat16"}
    code, out, err = run_cli(capsys, *args, "--hardware", "h100-sxm", "--backend", "vllm")
    assert code == 0, err
    assert "gemm_borrowed" not in json.loads(out)["calibration"]  # bf16 and fp8 plans: both fitted


def test_an_export_still_reads_the_scored_engine_from_a_name_with_borrowed_fits(tmp_path, capsys) -> None:
    """tuner.export.scored_engine reads the engine off the study's calibration name: with the
    borrowed fits after it ("h100-sxm-vllm; gemm int8_wo: ...") it read "vllm;" and lost the
    note that a TensorRT-LLM export carries vLLM's predictions."""
    spec = {
        "name": "int8",
        "model": "llama-3-8b",
        "hardware": "h100-sxm",
        "workload": {"prompt_len": 512, "gen_len": 64},
        "space": {"chips": [1], "batch": [1, 8], "weight_bits": [8]},
        "objectives": [{"metric": "decode.step_latency_s"}],
        "sampler": "exhaustive",
    }
    path = tmp_path / "int8.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    url = f"sqlite:///{tmp_path}/i.db"
    code, out, err = run_cli(capsys, "search", str(path), "--storage", url, "--json")
    assert code == 0, err
    assert json.loads(out)["calibration"] == "h100-sxm-vllm; gemm int8_wo: borrows bfloat16"
    code, out, err = run_cli(capsys, "export", "int8", "--trial", "0", "--storage", url, "--format", "trtllm")
    assert code == 0, err
    data = json.loads(out)
    assert data["scored_engine"] == "vllm"
    assert any("the predictions are vLLM's" in n for n in data["notes"])
