"""analyze and simulate say what tuner estimate says about the kernels a format runs: fp8
weights run as W8A8 fp8 GEMMs under a GPU engine's profile, and an MoE model's weight-only
experts are timed with a borrowed fused-MoE class. Both printed nothing ("notes": []) while
their times already followed those rules."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli


def _notes(capsys, *args: str) -> list[str]:
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)["notes"]


def test_analyze_notes_fp8_weights_run_w8a8(capsys) -> None:
    args = ("analyze", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--phase", "prefill", "--batch", "1")
    notes = _notes(capsys, *args, "--seq-len", "2048", "--weight-bits", "fp8", "--flash-attention")
    assert any("W8A8" in note for note in notes), notes
    bf16 = _notes(capsys, *args, "--seq-len", "2048", "--flash-attention")
    assert not any("W8A8" in note for note in bf16), bf16
    roofline = _notes(capsys, *args, "--seq-len", "2048", "--weight-bits", "fp8", "--calibration", "none")
    assert not any("W8A8" in note for note in roofline), roofline


def test_analyze_notes_borrowed_moe_class(capsys) -> None:
    """int8 weight-only experts have no class of their own: the pair's int4_wo class times them
    (MOE_BORROWED); int4 ones have that class, fitted on one expert shape: both said."""
    args = ("analyze", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--phase", "decode", "--batch", "8")
    notes = _notes(capsys, *args, "--seq-len", "2048", "--weight-bits", "8", "--flash-attention")
    assert any("int8 weight-only experts" in note and "int4_wo class" in note for note in notes), notes
    notes = _notes(capsys, *args, "--seq-len", "2048", "--weight-bits", "4", "--flash-attention")
    assert any("int4_wo fused-MoE class is fitted on the measured kernels of 1 expert shape" in n for n in notes), notes


def test_simulate_notes_fp8_weights_run_w8a8(capsys) -> None:
    args = ("simulate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1", "--concurrency", "4")
    notes = _notes(capsys, *args, "--prompt-len", "256", "--gen-len", "16", "--requests", "20", "--weight-bits", "fp8")
    assert any("W8A8" in note for note in notes), notes


@pytest.mark.parametrize(
    ("hardware", "bits", "expected"),
    [
        # Datasheets list no fp4 for H100 (fp8 1979 TFLOP/s dense the fastest) nor A100 (no fp8 either).
        ("h100-sxm", ("--weight-bits", "fp4", "--act-bits", "fp4"), "timed as fp8 GEMMs at the fp8 peak"),
        ("a100-80gb", ("--weight-bits", "fp4", "--act-bits", "fp4"), "timed as bf16 GEMMs at the bf16 peak"),
        ("h100-sxm", ("--weight-bits", "fp4"), "fp4 weights run weight-only with bf16 activations"),
        ("b200", ("--weight-bits", "fp4", "--act-bits", "fp4"), None),  # 9 PFLOP/s dense fp4 (HGX B200)
    ],
)
@pytest.mark.parametrize("calibration", ["auto", "none"])
def test_fp4_on_a_chip_without_fp4_units_says_what_it_runs_as(capsys, hardware, bits, expected, calibration):
    """W4A4 fp4 on an H100 or A100 (no fp4 tensor cores) was scored with no word that it runs as
    another format there (W4A8 fp8, or bf16), under the roofline or a profile alike."""
    code, out, err = run_cli(
        capsys, "estimate", "--model", "llama-3-8b", "--hardware", hardware, "--chips", "1", "--batch", "8",
        "--prompt-len", "1024", "--gen-len", "128", "--calibration", calibration, *bits, "--json",
    )  # fmt: skip
    assert code == 0, err
    notes = [n for n in json.loads(out)["notes"] if "no fp4 tensor cores" in n]
    if expected is None:
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith(f"{hardware} has no fp4 tensor cores") and expected in notes[0]


def test_estimate_says_no_gpu_engine_runs_bf16_weights_with_fp8_activations(capsys) -> None:
    """--weight-bits 16 --act-bits fp8 on an H100: the engines' fp8 GEMMs take fp8 weights too
    (vLLM/SGLang --quantization fp8, TensorRT-LLM FP8: W8A8), so the what-if is said to be one.
    Before, it was scored with no note. W8A8 and bf16 say nothing of it; a TPU is not an engine's."""
    args = ("estimate", "--model", "llama-3-8b", "--prompt-len", "1024", "--gen-len", "128", "--batch", "8")
    h100 = ("--hardware", "h100-sxm", "--tp", "1")
    said = "no GPU engine runs this"
    notes = _notes(capsys, *args, *h100, "--weight-bits", "16", "--act-bits", "fp8")
    assert any(said in note for note in notes), notes
    for formats in (("--weight-bits", "fp8", "--act-bits", "fp8"), ("--weight-bits", "16")):
        assert not any(said in note for note in _notes(capsys, *args, *h100, *formats))
    tpu = _notes(capsys, *args, "--hardware", "tpu-v4", "--chips", "8", "--weight-bits", "16", "--act-bits", "8")
    assert not any(said in note for note in tpu), tpu
