"""Every GEMM a deployment estimate times reads its weights cold (efficiency.gemm_time_s
``weights_in_l2`` False, the default; only the fits pass True: a serving step reads every other
layer's weights between two reads of one, while the kernel collectors the fits were made on call one
GEMM again and again with its weights in L2; docs/accuracy.md, GEMM, the twenty-second round). Each
module that times GEMMs for a deployment is watched, and dense, MoE (routed, shared and bf16 shared
experts, MXFP4 experts), static and serving estimates run through the CLI: a deployment path that
passes ``weights_in_l2=True`` fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run_cli
from cost_models import calibrated_times, deployment, efficiency, iteration, moe_kernel_time

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

WATCHED = [
    (calibrated_times, "gemm_time_s"),
    (calibrated_times, "gemm_time_with_constants_s"),
    (moe_kernel_time, "gemm_time_s"),
    (iteration, "gemm_time_s"),
    (deployment, "gemm_time_s"),
]

COMMANDS = [
    # dense, static and served (iterations: the lm_head view), the fp8 per-call note on a B200
    "--model llama-3-8b --hardware l40s --chips 4 --tp 4 --batch 8 --prompt-len 1024 --gen-len 128",
    "--model llama-3-8b --hardware l40s --chips 1 --prompt-len 1024 --gen-len 128 --concurrency 16 --backend vllm",
    "--model llama-3.1-8b --hardware b200 --chips 1 --batch 1 --prompt-len 1024 --gen-len 128 --backend trtllm "
    "--weight-bits fp8 --act-bits fp8",
    # MoE: routed and shared experts in fp8 (the fused class), int4 routed with bf16 shared experts,
    # MXFP4 experts
    "--model deepseek-v3 --hardware h200 --chips 8 --batch 8 --prompt-len 1024 --gen-len 128 --weight-bits fp8 "
    "--act-bits fp8",
    "--model {kimi_k2_thinking} --hardware h200 --chips 8 --batch 8 --prompt-len 1024 --gen-len 128",
    "--model gpt-oss-120b --hardware h100-sxm --chips 1 --batch 8 --prompt-len 1024 --gen-len 128",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_gemm_of_an_estimate_reads_its_weights_cold(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Kimi K2 Thinking: int4 routed experts beside bf16 shared ones (its HF config and quantization)
    config = json.loads((FIXTURES / "hf" / "kimi_k2.json").read_text())
    config["quantization_config"] = json.loads((FIXTURES / "hf_quantization" / "kimi_k2_thinking.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config))
    command = command.format(kimi_k2_thinking=tmp_path / "config.json")
    calls: list[tuple[str, object]] = []
    for module, name in WATCHED:
        original = getattr(efficiency, name)

        def watched(*args, _name=f"{module.__name__}.{name}", _original=original, **options):
            calls.append((_name, options.get("weights_in_l2", False)))
            return _original(*args, **options)

        monkeypatch.setattr(module, name, watched)
    code, out, err = run_cli(capsys, "estimate", *command.split(), "--json")
    assert code == 0, err
    assert json.loads(out)["calibration"]
    assert calls, "no GEMM was timed"
    warm = sorted({name for name, in_l2 in calls if in_l2 is not False})
    assert not warm, f"GEMMs timed with the collectors' warm L2 by {warm}"
