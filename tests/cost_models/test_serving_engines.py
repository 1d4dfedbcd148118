"""Which serving engines run on a chip (``HardwareSpec.serving_engines``): TensorRT-LLM is
CUDA-only, so on an AMD GPU (ROCm) or a TPU it is neither the default engine nor accepted as
``--backend``; vLLM and SGLang run on ROCm (vLLM's and SGLang's AMD install guides), JAX and vLLM
on TPUs. Before, every chip without a shipped profile defaulted to TensorRT-LLM: ``tuner
recommend --hardware mi300x`` planned with TensorRT-LLM's knobs (no chunked prefill, batch 2048,
KV block 32) and exported TensorRT-LLM settings for a chip it cannot launch on."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cli_helpers import assert_one_error_line, run_cli
from cost_models.calibration import default_backend, resolve_calibration, serving_engine
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, get_hardware

AMD = ("mi300x", "mi325x", "mi355x")


@pytest.mark.parametrize("chip", AMD)
def test_an_amd_gpu_defaults_to_vllm_and_refuses_trtllm(chip: str) -> None:
    assert "trtllm" not in get_hardware(chip).serving_engines()
    assert default_backend(chip) == "vllm"
    profile = resolve_calibration("auto", chip)
    assert profile is not None and profile.backend == "vllm"
    assert serving_engine(None, profile, chip) == "vllm"
    with pytest.raises(InvalidInputError) as refused:
        resolve_calibration("auto", chip, "trtllm")
    assert refused.value.field == "backend" and "--backend vllm" in str(refused.value)
    with pytest.raises(InvalidInputError):  # --calibration none still names an engine
        serving_engine("trtllm", None, chip)
    for engine in ("vllm", "sglang"):
        assert serving_engine(engine, resolve_calibration("auto", chip, engine), chip) == engine


def test_a_tpu_runs_jax_or_vllm_only() -> None:
    assert default_backend("tpu-v5e") == "jax"
    for engine in ("trtllm", "sglang"):
        with pytest.raises(InvalidInputError):
            resolve_calibration("auto", "tpu-v5e", engine)
    assert serving_engine("vllm", None, "tpu-v5e") == "vllm"


@pytest.mark.parametrize("chip", ("h100-sxm", "l4", "a100-40gb"))
def test_nvidia_gpus_keep_every_engine(chip: str) -> None:
    assert get_hardware(chip).serving_engines() == ("trtllm", "vllm", "sglang", "jax")
    for engine in ("trtllm", "vllm", "sglang"):
        assert serving_engine(engine, None, chip) == engine


def test_a_chip_file_names_its_engines_and_an_unknown_one_is_refused() -> None:
    fields = get_hardware("h100-sxm").model_dump()
    own = HardwareSpec(**{**fields, "name": "my-rocm-gpu", "engines": ["sglang", "vllm"]})
    assert own.serving_engines() == ("sglang", "vllm")
    assert default_backend(own) == "sglang"  # no profile fitted on a file chip: its first engine
    with pytest.raises(ValidationError):
        HardwareSpec(**{**fields, "name": "x", "engines": ["tensorrt"]})
    with pytest.raises(ValidationError):
        HardwareSpec(**{**fields, "name": "x", "engines": []})


def test_estimate_on_mi300x_refuses_trtllm_in_one_line(capsys) -> None:
    args = ("estimate", "--model", "llama-3-8b", "--hardware", "mi300x", "--chips", "1", "--batch", "8")
    args += ("--prompt-len", "1024", "--gen-len", "128")
    code, out, err = run_cli(capsys, *args, "--backend", "trtllm")
    line = assert_one_error_line(code, out, err, ("backend",))
    assert "mi300x" in line and "--backend vllm" in line
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    assert json.loads(out)["calibration"]["backend"] == "vllm"


def test_hardware_json_lists_each_chips_engines(capsys) -> None:
    code, out, err = run_cli(capsys, "hardware", "--json")
    assert code == 0, err
    engines = {chip["name"]: chip["engines"] for chip in json.loads(out)}
    assert engines["mi300x"] == ["vllm", "sglang", "jax"]
    assert engines["h100-sxm"] == ["trtllm", "vllm", "sglang", "jax"]
    assert engines["tpu-v4"] == ["jax", "vllm"]


def test_estimate_with_a_named_engine_refuses_a_kv_cache_it_has_none_of(capsys) -> None:
    """--kv-bits 4 (int4) under --backend vllm was scored as given; no engine has an int4 KV
    cache and vLLM none in fp4 (its --kv-cache-dtype: auto, fp8), so the export refused it."""
    args = ("estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--tp", "1", "--batch", "8")
    args += ("--prompt-len", "512", "--gen-len", "64", "--backend", "vllm")
    for kv in ("4", "fp4"):
        code, out, err = run_cli(capsys, *args, "--kv-bits", kv)
        line = assert_one_error_line(code, out, err, ("kv_bits",))
        assert "vllm has no" in line and "--kv-bits 16" in line
    code, out, err = run_cli(capsys, *args, "--kv-bits", "fp8")
    assert code == 0, err
