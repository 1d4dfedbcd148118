"""analyze and simulate say what tuner estimate says about the kernels a format runs: fp8
weights run as W8A8 fp8 GEMMs under a GPU engine's profile, and an MoE model's weight-only
experts are timed with a borrowed fused-MoE class. Both printed nothing ("notes": []) while
their times already followed those rules."""

from __future__ import annotations

import json

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
    args = ("analyze", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--phase", "decode", "--batch", "8")
    notes = _notes(capsys, *args, "--seq-len", "2048", "--weight-bits", "4", "--flash-attention")
    assert any("int4 weight-only experts" in note for note in notes), notes


def test_simulate_notes_fp8_weights_run_w8a8(capsys) -> None:
    args = ("simulate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--chips", "1", "--concurrency", "4")
    notes = _notes(capsys, *args, "--prompt-len", "256", "--gen-len", "16", "--requests", "20", "--weight-bits", "fp8")
    assert any("W8A8" in note for note in notes), notes
