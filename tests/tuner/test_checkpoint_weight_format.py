"""A quantized checkpoint (config.json quantization_config) runs in its stored weight format when
the user names none: `tuner estimate`, `analyze` and `simulate` without --weight-bits, a study spec
without weight_bits (in the mesh vocabulary and in the engines')."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cli_helpers import run_cli
from search_spaces.space import compile_study
from search_spaces.spec import load_spec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hf"


def _estimate(capsys: pytest.CaptureFixture[str], config: Path, *extra: str) -> dict:
    args = ["estimate", "--model", str(config), "--hardware", "h200", "--chips", "1", "--batch", "8"]
    code, out, err = run_cli(capsys, *args, "--prompt-len", "512", "--gen-len", "64", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_estimate_defaults_to_the_checkpoint_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert _estimate(capsys, FIXTURES / "qwen3_fp8.json")["weight_dtype"] == "fp8"
    assert _estimate(capsys, FIXTURES / "qwen3.json")["weight_dtype"] == "bf16"
    assert _estimate(capsys, FIXTURES / "qwen3_fp8.json", "--weight-bits", "16")["weight_dtype"] == "bf16"


# (command, its arguments): each reports the weight format it ran in its JSON's weight_dtype.
COMMANDS = {
    "analyze": ["analyze", "--hardware", "h200", "--phase", "decode", "--batch", "8", "--seq-len", "512"],
    "simulate": [
        "simulate", "--hardware", "h200", "--chips", "1", "--concurrency", "2", "--prompt-len", "128",
        "--gen-len", "16", "--requests", "8",
    ],
}  # fmt: skip


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_defaults_to_the_checkpoint_format(capsys: pytest.CaptureFixture[str], command: str) -> None:
    """Once only `estimate` did: `simulate` of deepseek-v3 on 8 H200s ran bf16 weights, found no room
    for a KV cache, and refused the deployment `estimate` had just said fits."""
    for config, extra, expected in (
        ("qwen3_fp8.json", [], "fp8"),
        ("qwen3.json", [], "bf16"),
        ("qwen3_fp8.json", ["--weight-bits", "16"], "bf16"),
    ):
        code, out, err = run_cli(capsys, *COMMANDS[command], "--model", str(FIXTURES / config), "--json", *extra)
        assert code == 0, err
        assert json.loads(out)["weight_dtype"] == expected, (config, extra)


def _spec(tmp_path: Path, space_extra: dict) -> Path:
    shutil.copy(FIXTURES / "qwen3_fp8.json", tmp_path / "config.json")
    spec = {
        "name": "fp8-checkpoint",
        "model": "config.json",
        "hardware": "h200",
        "workload": {"prompt_len": 512, "gen_len": 64},
        "space": {"chips": [1], "mesh": "auto", "batch": [8], **space_extra},
        "objectives": [{"metric": "decode.step_latency_s"}],
        "trials": 10,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_study_without_weight_bits_uses_the_checkpoint_format(tmp_path: Path) -> None:
    compiled = compile_study(load_spec(_spec(tmp_path, {})))
    assert compiled.space.dimensions["weight_bits"] == ("fp8",)


def test_engine_vocabulary_study_without_weight_bits_uses_the_checkpoint_format(tmp_path: Path) -> None:
    spec = _spec(tmp_path, {})
    data = yaml.safe_load(spec.read_text())
    data["space"] = {"tp": [1], "batch": [8]}
    spec.write_text(yaml.safe_dump(data))
    assert compile_study(load_spec(spec)).space.dimensions["weight_bits"] == ("fp8",)


def test_study_weight_bits_given_are_kept(tmp_path: Path) -> None:
    compiled = compile_study(load_spec(_spec(tmp_path, {"weight_bits": [16, 4]})))
    assert compiled.space.dimensions["weight_bits"] == ("16", "4")


def test_hardware_listing_shows_the_new_chips_and_fp4(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "hardware")
    assert code == 0
    for name in ("b300", "h20", "mi300x", "mi325x", "mi355x", "tpu-v6e", "tpu-v7"):
        assert name in out
    assert "fp4" in out and "13.5 Pop/s" in out  # b300's fp4 peak
