"""tuner estimate --prefill-instances --decode-instances: disaggregated pools under a load, each
pool's instance its own TP x DP x EP (cost_models/disaggregated_one.py), and bad input.

Expected values from first principles: DeepSeek-V3's MLA cache (one 576-wide latent per token per
layer, 61 layers, one byte in fp8), the chips (xP x a prefill instance's + yD x a decode
instance's), a dense model at DP k being k instances, and the cost model called directly on the
deployments the engines run (Megatron TP layouts, fused attention)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import assert_one_error_line, run_cli
from cost_models.calibration import resolve_calibration
from cost_models.deployments import make_deployments
from cost_models.disaggregated import serve_disaggregated
from cost_models.dtypes import FP8
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.serving import engine_overheads, make_workloads

POOLS = ("--prefill-instances", "1", "--decode-instances", "1")
DEEPSEEK = (
    "estimate", "--model", "deepseek-v3", "--hardware", "h200", "--weight-bits", "fp8", "--act-bits", "fp8",
    "--kv-bits", "fp8", "--prompt-len", "2048", "--gen-len", "256",
)  # fmt: skip
LLAMA = ("estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--prompt-len", "1024", "--gen-len", "128")


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_dp_attention_pools_are_the_cost_models_pools(capsys) -> None:
    """2 prefill + 1 decode instances of TP1 DP8 EP8 (the prefill pool takes the decode pool's
    degrees by default): 24 H200s, a 2048 x 35,136 B latent a prompt, and every number the cost
    model gives the deployments SGLang launches."""
    data = _json(
        capsys, *DEEPSEEK, "--backend", "sglang", "--request-rate", "20", "--prefill-instances", "2",
        "--decode-instances", "1", "--tp", "1", "--dp", "8", "--ep", "8",
    )  # fmt: skip
    pools = data["pools"]
    assert pools["prefill"] == {"instances": 2, "tp": 1, "dp": 8, "ep": 8, "chips_per_instance": 8, "chips": 16}
    assert pools["decode"] == {"instances": 1, "tp": 1, "dp": 8, "ep": 8, "chips_per_instance": 8, "chips": 8}
    s = data["serving"]
    assert s["mode"] == "disaggregated" and s["chips"] == 24
    assert s["kv_transfer_bytes"] == 2048 * 576 * 61
    d = make_deployments(
        get_model("deepseek-v3"), get_hardware("h200"), mesh=np.array([[1, 1, 1]]), batch=8, prompt_len=2048,
        gen_len=256, prefill_ffn_layout=0, decode_ffn_layout=0, flash_attention=True, data_parallel=8,
        expert_parallel=8, weight_dtype=FP8, act_dtype=FP8, kv_dtype=FP8,
    )  # fmt: skip
    # Each decode rank at SGLang's default (its --max-running-requests unset: each rank's own).
    direct = serve_disaggregated(
        d, d, make_workloads(backend="sglang", request_rate=20.0, prompt_len=2048, gen_len=256, data_parallel=8),
        prefill_instances=2, decode_instances=1, calibration=resolve_calibration("auto", "h200", "sglang"),
        overheads=engine_overheads("sglang"),
    )  # fmt: skip
    for name in ("ttft_s", "tpot_s", "prefill_capacity_rps", "decode_capacity_rps", "max_concurrency"):
        assert s[name] == pytest.approx(float(getattr(direct, name)[0]), rel=1e-12), name
    assert s["stable"]


def test_a_dense_prefill_instance_at_dp2_is_two_instances(capsys) -> None:
    """Llama-3-8B has no MoE layer to share: one TP1 DP2 prefill instance is two TP1 ones."""
    common = (*LLAMA, "--backend", "sglang", "--request-rate", "10", "--decode-instances", "2", "--tp", "1")
    dp2 = _json(capsys, *common, "--prefill-instances", "1", "--prefill-dp", "2")["serving"]
    two = _json(capsys, *common, "--prefill-instances", "2")["serving"]
    for name in ("ttft_s", "tpot_s", "prefill_capacity_rps", "prefill_queue_s", "chips"):
        assert dp2[name] == pytest.approx(two[name], rel=1e-12), name


def test_the_table_names_the_pools(capsys) -> None:
    code, out, err = run_cli(
        capsys, *DEEPSEEK, "--backend", "sglang", "--request-rate", "20", "--prefill-instances", "2",
        "--decode-instances", "1", "--tp", "1", "--dp", "8", "--ep", "8", "--prefill-tp", "8", "--prefill-dp", "1",
    )  # fmt: skip
    assert code == 0, err
    assert "prefill 2 x TP8 DP1 EP8 (16 chips) + decode 1 x TP1 DP8 EP8 (8 chips)" in out
    assert "limiting:" in out and "KV transfer 72 MB a prompt" in out


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--request-rate", "20", "--prefill-instances", "2", "--tp", "1", "--dp", "8"), "--decode-instances"),
        (("--prefill-instances", "2", "--decode-instances", "1", "--batch", "8"), "--prefill-instances"),
        (("--request-rate", "20", *POOLS, "--mesh", "1x1x8"), "--mesh"),
        (("--request-rate", "20", "--prefill-instances", "0", "--decode-instances", "1"), "--prefill-instances"),
        (("--request-rate", "20", *POOLS, "--tp", "8", "--prefill-ep", "3"), "--prefill-ep"),
        (("--request-rate", "20", *POOLS, "--prefill-dp", "8"), "--tp (decode pool): missing"),
        # The prefill instance takes --ep 8, which its TP1 DP1 cannot spread.
        (("--request-rate", "20", *POOLS, "--tp", "1", "--dp", "8", "--ep", "8", "--prefill-dp", "1"), "--prefill-ep"),
        # TensorRT-LLM runs an MoE model's attention DP at TP 1 only (enable_attention_dp).
        (
            ("--backend", "trtllm", "--request-rate", "20", "--prefill-instances", "1", "--decode-instances", "1",
             "--tp", "1", "--dp", "8", "--ep", "8", "--prefill-tp", "2", "--prefill-dp", "4"),
            "trtllm does not launch TP 2 x EP 8 x DP 4",
        ),
    ],
)  # fmt: skip
def test_bad_pools_are_one_line_errors(capsys, args: tuple[str, ...], field: str) -> None:
    code, out, err = run_cli(capsys, *DEEPSEEK, *args)
    assert_one_error_line(code, out, err, (field,))
