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
    # Each pool's batch limit an instance: SGLang's 2048 in each of its 8 DP ranks.
    limit = 2048 * 8
    assert pools["prefill"] == {
        "instances": 2, "tp": 1, "dp": 8, "ep": 8, "chips_per_instance": 8, "chips": 16, "max_batch_size": limit,
    }  # fmt: skip
    assert pools["decode"] == {
        "instances": 1, "tp": 1, "dp": 8, "ep": 8, "chips_per_instance": 8, "chips": 8, "max_batch_size": limit,
    }  # fmt: skip
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


SHORT = (*LLAMA[:-4], "--prompt-len", "128", "--gen-len", "256", "--backend", "vllm", "--tp", "1")


def test_a_prefill_iteration_holds_at_most_the_batch_limit_of_prompts() -> None:
    """A prefill engine admits no more requests than its batch limit (vLLM --max-num-seqs): at 4,
    an overloaded prefill instance of 128-token prompts runs 4 x 128 = 512 tokens an iteration,
    not its 8192-token budget (64 prompts), as the pool was scored before."""
    d = make_deployments(
        get_model("llama-3-8b"), get_hardware("h100-sxm"), mesh=np.array([[1, 1, 1]]), batch=1, prompt_len=128,
        gen_len=256, prefill_ffn_layout=0, decode_ffn_layout=0, flash_attention=True,
    )  # fmt: skip
    for limit, tokens in ((4, 4 * 128), (256, 8192)):
        w = make_workloads(backend="vllm", request_rate=1000.0, prompt_len=128, gen_len=256, max_batch_size=limit)
        est = serve_disaggregated(d, d, w, prefill_instances=1, decode_instances=1)
        assert float(est.prefill_tokens_per_iteration[0]) == tokens


def test_each_pool_takes_its_own_batch_limit(capsys) -> None:
    """--prefill-max-batch-size and --decode-max-batch-size: each pool scored as --max-batch-size
    (which still sets both) scores it, and each named in the JSON and the table."""
    load = (*SHORT, "--request-rate", "30", *POOLS)
    both = {n: _json(capsys, *load, "--max-batch-size", str(n)) for n in (4, 64)}
    apart = _json(capsys, *load, "--prefill-max-batch-size", "4", "--decode-max-batch-size", "64")
    assert apart["pools"]["prefill"]["max_batch_size"] == 4
    assert apart["pools"]["decode"]["max_batch_size"] == 64
    assert both[4]["pools"]["prefill"]["max_batch_size"] == both[4]["pools"]["decode"]["max_batch_size"] == 4
    s = apart["serving"]
    assert s["prefill_tokens_per_iteration"] <= 4 * 128
    for name in ("prefill_capacity_rps", "prefill_tokens_per_iteration", "prefill_iteration_s"):
        assert s[name] == pytest.approx(both[4]["serving"][name], rel=1e-12), name
    for name in ("decode_capacity_rps", "decode_iteration_s", "max_concurrency"):
        assert s[name] == pytest.approx(both[64]["serving"][name], rel=1e-12), name
    # One pool's alone: the other pool at the engine's default, as without either.
    plain = _json(capsys, *load)
    alone = _json(capsys, *load, "--prefill-max-batch-size", "4")
    assert alone["pools"]["decode"]["max_batch_size"] == plain["pools"]["decode"]["max_batch_size"] == 256
    assert alone["serving"]["decode_capacity_rps"] == pytest.approx(plain["serving"]["decode_capacity_rps"], rel=1e-12)
    code, out, err = run_cli(capsys, *load, "--prefill-max-batch-size", "4", "--decode-max-batch-size", "64")
    assert code == 0, err
    assert "batch limit an instance: prefill 4, decode 64" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--request-rate", "30", *POOLS, "--max-batch-size", "8", "--prefill-max-batch-size", "4"),
         "--prefill-max-batch-size: --max-batch-size sets both pools' batch limit"),
        (("--request-rate", "30", *POOLS, "--max-batch-size", "8", "--decode-max-batch-size", "4"),
         "--decode-max-batch-size: --max-batch-size sets both pools' batch limit"),
        (("--request-rate", "30", "--prefill-max-batch-size", "4"),
         "--prefill-instances: missing: --prefill-max-batch-size asks for disaggregated pools"),
        (("--request-rate", "30", "--decode-max-batch-size", "4"),
         "--prefill-instances: missing: --decode-max-batch-size asks for disaggregated pools"),
        (("--request-rate", "30", *POOLS, "--prefill-max-batch-size", "0"),
         "--prefill-max-batch-size: must be 1 or more, got 0"),
        (("--request-rate", "30", *POOLS, "--decode-max-batch-size", "-1"),
         "--decode-max-batch-size: must be 1 or more, got -1"),
    ],
    ids=["with max-batch-size (prefill)", "with max-batch-size (decode)", "prefill without pools",
         "decode without pools", "zero", "negative"],
)  # fmt: skip
def test_conflicting_or_bad_pool_batch_limits_are_one_line(capsys, args: tuple[str, ...], words: str) -> None:
    line = assert_one_error_line(*run_cli(capsys, *SHORT, *args), fields=(words.partition(":")[0],))
    assert line.startswith(f"error: {words}"), line


def test_the_near_capacity_note_of_pools_names_what_runs(capsys) -> None:
    """Llama-3-70B TP8 pools, decode slots 28, at 5 requests/s (test_disaggregated: a decode
    batch of about 15 whose 99.9th percentile, about 32, reaches the 28): the near-capacity note.
    It said "tuner simulate shows by how much", and simulate has no disaggregated mode (no
    --prefill-instances); it names what does run, and doing it (2 decode instances) clears it."""
    args = (
        "estimate", "--model", "llama-3-70b", "--hardware", "h100-sxm", "--tp", "8", "--backend", "trtllm",
        "--prompt-len", "2048", "--gen-len", "256", "--request-rate", "5", "--decode-max-batch-size", "28",
        "--prefill-instances", "1",
    )  # fmt: skip
    code, out, err = run_cli(capsys, "simulate", "--help")
    assert code == 0 and "--prefill-instances" not in out and "--decode-instances" not in out
    notes = _json(capsys, *args, "--decode-instances", "1")["serving"]["notes"]
    near = [note for note in notes if note.startswith("near capacity:")]
    assert len(near) == 1
    assert "simulate shows" not in near[0]
    assert "tuner estimate" in near[0] and "--decode-instances" in near[0] and "--request-rate" in near[0]
    more = _json(capsys, *args, "--decode-instances", "2")["serving"]["notes"]
    assert not any(note.startswith("near capacity:") for note in more)
