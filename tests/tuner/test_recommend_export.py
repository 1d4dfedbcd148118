"""``tuner recommend --export ENGINE --out DIR``: the best plans' launch files carry the knobs the
plan was scored with. Checked the way a user would: the written flags are parsed back and scored
again with ``tuner estimate``, which must give the plan's TTFT and TPOT."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from cli_helpers import assert_one_error_line, run_cli
from cost_models.capacity import problem, recommend, scored_plan
from tuner.export import plan_engine_args

LLAMA = (
    "recommend",
    "--model", "llama-3.1-70b",
    "--hardware", "h100-sxm",
    "--request-rate", "4",
    "--prompt-len", "2048",
    "--gen-len", "256",
    "--max-ttft-s", "1",
    "--max-tpot-s", "0.05",
    "--max-chips", "8",
)  # fmt: skip


def _flags(line: str) -> dict[str, str | bool]:
    """``--flag value`` / bare ``--flag`` pairs of a launch line."""
    words = shlex.split(line)
    out: dict[str, str | bool] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else None
            out[word[2:]] = True if nxt is None or nxt.startswith("--") else nxt
    return out


def _launch_line(path: Path) -> str:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith(("#", "cd "))]
    assert len(lines) == 1, lines
    return lines[0]


def test_vllm_export_of_the_aggregated_plan_scores_back_to_its_ttft_and_tpot(capsys, tmp_path):
    out = tmp_path / "plan"
    code, stdout, err = run_cli(capsys, *LLAMA, "--mode", "aggregated", "--export", "vllm", "--out", str(out), "--json")
    assert code == 0, err
    report = json.loads(stdout)
    best = report["modes"]["aggregated"]["best"]
    assert report["backend"] == "vllm"  # --export vllm without --backend: planned for vLLM
    flags = _flags(_launch_line(out / "aggregated" / "launch.sh"))
    args = json.loads((out / "aggregated" / "engine_args.json").read_text())["engine_args"]
    # vLLM's own defaults (docs.vllm.ai engine args: max_num_seqs 256, gpu_memory_utilization 0.9,
    # block_size 16; max_num_batched_tokens 8192 for the OpenAI server on a datacenter GPU): the plan
    # runs the engine as launched with its defaults, and the flags must say so.
    assert flags["max-num-seqs"] == "256" and args["max_num_seqs"] == 256
    assert flags["gpu-memory-utilization"] == "0.9"
    assert flags["block-size"] == "16"
    assert flags["max-num-batched-tokens"] == "8192"
    assert flags["enable-chunked-prefill"] is True
    assert flags["tensor-parallel-size"] == str(best["tp"])
    # fp8 W8A8 plan: vLLM's fp8 quantization; bf16 KV cache ("auto": the model's dtype).
    assert best["weight_format"] == "fp8" and flags["quantization"] == "fp8"
    assert flags["kv-cache-dtype"] == "auto"
    # The context holds the 2048-token prompt and the 256-token output (2304) and their spread.
    assert int(flags["max-model-len"]) >= 2048 + 256
    # Score the written flags again: one replica at its share of the rate.
    code, stdout, err = run_cli(
        capsys,
        "estimate", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--backend", "vllm",
        "--tp", flags["tensor-parallel-size"], "--prompt-len", "2048", "--gen-len", "256",
        "--request-rate", str(4 / best["replicas"]),
        "--weight-bits", "fp8", "--act-bits", best["act_format"].replace("bf16", "16"), "--kv-bits", "16",
        "--max-batch-size", flags["max-num-seqs"], "--max-num-tokens", flags["max-num-batched-tokens"],
        "--memory-fraction", flags["gpu-memory-utilization"], "--kv-block-size", flags["block-size"],
        "--chunked-prefill", "--json",
    )  # fmt: skip
    assert code == 0, err
    serving = json.loads(stdout)["serving"]
    assert serving["ttft_s"] == pytest.approx(best["ttft_s"], rel=1e-9)
    assert serving["tpot_s"] == pytest.approx(best["tpot_s"], rel=1e-9)
    assert serving["engine"]["max_batch_size"] == int(flags["max-num-seqs"])
    readme = (out / "README.md").read_text()
    assert f"TTFT {best['ttft_s'] * 1e3:.0f} ms" in readme and f"TPOT {best['tpot_s'] * 1e3:.1f} ms" in readme
    assert "h100-sxm-vllm" in readme  # the calibration profile the predictions were made under


def test_sglang_export_of_deepseek_v3_disaggregated_scores_back(capsys, tmp_path):
    out = tmp_path / "dsv3"
    code, stdout, err = run_cli(
        capsys,
        "recommend", "--model", "deepseek-v3", "--hardware", "h200", "--request-rate", "4", "--prompt-len", "2048",
        "--gen-len", "256", "--max-ttft-s", "1", "--max-tpot-s", "0.05", "--max-chips", "16",
        "--mode", "disaggregated", "--export", "sglang", "--out", str(out), "--json",
    )  # fmt: skip
    assert code == 0, err
    best = json.loads(stdout)["modes"]["disaggregated"]["best"]
    prefill = _flags(_launch_line(out / "disaggregated" / "prefill" / "launch.sh"))
    decode = _flags(_launch_line(out / "disaggregated" / "decode" / "launch.sh"))
    router = _launch_line(out / "disaggregated" / "router.sh")
    assert prefill["disaggregation-mode"] == "prefill" and decode["disaggregation-mode"] == "decode"
    assert router.count("--prefill http://") == best["prefill_instances"]
    assert router.count("--decode http://") == best["decode_instances"]
    assert prefill["tp-size"] == str(best["prefill_tp"]) and decode["tp-size"] == str(best["decode_tp"])
    # DeepSeek-V3 ships fp8 weights: SGLang reads them from the checkpoint, no --quantization.
    assert best["weight_format"] == "fp8" and "quantization" not in prefill
    assert prefill["model-path"] == "deepseek-ai/DeepSeek-V3"
    # A decode instance's budget is a decode iteration's tokens: at most its batch limit.
    assert int(decode["chunked-prefill-size"]) == min(
        int(prefill["chunked-prefill-size"]), int(decode["max-running-requests"])
    )
    assert best["prefill_dp"] == best["decode_dp"] == 1  # one set of knobs for tuner estimate's two pools
    code, stdout, err = run_cli(
        capsys,
        "estimate", "--model", "deepseek-v3", "--hardware", "h200", "--backend", "sglang",
        "--prompt-len", "2048", "--gen-len", "256", "--request-rate", "4",
        "--prefill-instances", str(best["prefill_instances"]), "--decode-instances", str(best["decode_instances"]),
        "--prefill-tp", prefill["tp-size"], "--tp", decode["tp-size"],
        "--weight-bits", "fp8", "--act-bits", "fp8", "--kv-bits", "16",
        "--max-batch-size", prefill["max-running-requests"], "--max-num-tokens", prefill["chunked-prefill-size"],
        "--memory-fraction", prefill["mem-fraction-static"], "--kv-block-size", prefill["page-size"],
        "--chunked-prefill", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert decode["mem-fraction-static"] == prefill["mem-fraction-static"]
    serving = json.loads(stdout)["serving"]
    assert serving["ttft_s"] == pytest.approx(best["ttft_s"], rel=1e-9)
    assert serving["tpot_s"] == pytest.approx(best["tpot_s"], rel=1e-9)
    assert "h200-sglang" in (out / "README.md").read_text()


def test_a_dp_prefill_pool_gets_its_own_ranks_batch_limit():
    """A plan whose prefill instance runs attention DP 2 and decode instance TP 8: each pool was
    scored with the engine's default batch limit in each of its own DP ranks (SGLang's 2048 a
    rank here, capacity.score_disaggregated). SGLang under DP attention divides
    --max-running-requests by --dp-size (server_args/model_runner: max_running_requests //
    dp_size), so the prefill pool's flag is 2 x 2048 = 4096 and the decode pool's 2048; with the
    decode pool's knobs the prefill ranks would run 2048 / 2 = 1024 each."""
    p = problem(
        "deepseek-v3", "h200", request_rate=4, prompt_len=2048, gen_len=256, max_ttft_s=1, max_tpot_s=0.05,
        max_chips=16, backend="sglang",
    )  # fmt: skip
    rows = recommend(p, ("disaggregated",))["disaggregated"]["feasible"]
    row = next(r for r in rows if r["prefill_dp"] == 2 and r["decode_dp"] == 1)
    data = plan_engine_args(scored_plan(p, row), "sglang")
    assert data["prefill"]["engine_args"]["dp_size"] == 2
    assert data["prefill"]["engine_args"]["enable_dp_attention"] is True
    assert data["prefill"]["engine_args"]["max_running_requests"] == 2 * 2048
    assert data["decode"]["engine_args"]["max_running_requests"] == 2048


def test_scored_plan_is_the_candidate_recommend_scored():
    """The rebuilt candidate, scored alone, gives the row's TTFT and TPOT."""
    import numpy as np

    from cost_models.deployments import Deployments
    from cost_models.serving import make_workloads, serve

    p = problem(
        "llama-3.1-70b", "h100-sxm", request_rate=4, prompt_len=2048, gen_len=256, max_ttft_s=1, max_tpot_s=0.05,
        max_chips=8, backend="vllm",
    )  # fmt: skip
    for row in recommend(p, ("aggregated",))["aggregated"]["feasible"][:6]:
        plan = scored_plan(p, row)
        w = plan.workload
        workload = make_workloads(
            backend="vllm",
            **{k: np.array([w[k]]) for k in ("request_rate", "max_batch_size", "max_num_tokens", "kv_block_size")},
            prompt_len=w["prompt_len"], gen_len=w["gen_len"], memory_fraction=w["memory_fraction"],
            chunked_prefill=w["chunked_prefill"],
        )  # fmt: skip
        est = serve(Deployments.from_rows([plan.deployment]), workload, calibration=p.calibration)
        assert float(est.ttft_s[0]) == pytest.approx(row["ttft_s"], rel=1e-9)
        assert float(est.tpot_s[0]) == pytest.approx(row["tpot_s"], rel=1e-9)
        assert plan.replicas == row["replicas"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (("--export", "vllm", "--backend", "sglang"), "--export"),
        (("--out", "somewhere"), "--out"),
        (("--force",), "--force"),
        (("--export", "vllm", "--hardware", "h200"), "--export"),
    ],
)
def test_bad_export_input_is_one_line(capsys, tmp_path, extra, field):
    code, out, err = run_cli(capsys, *LLAMA, *extra)
    assert_one_error_line(code, out, err, (field,))


def test_an_out_dir_that_cannot_be_made_is_one_line(capsys):
    """procfs refuses new entries (root too): mkdir raised FileNotFoundError, a traceback after
    the plan was searched."""
    code, out, err = run_cli(capsys, *LLAMA, "--mode", "aggregated", "--export", "vllm", "--out", "/proc/tuner-out")
    assert code == 2 and "Traceback" not in out + err
    assert err.count("\n") == 1 and err.startswith("error: --out: cannot write /proc/tuner-out"), err


def test_a_non_empty_out_dir_is_kept_without_force(capsys, tmp_path):
    (tmp_path / "kept.txt").write_text("mine")
    code, out, err = run_cli(capsys, *LLAMA, "--mode", "aggregated", "--export", "vllm", "--out", str(tmp_path))
    assert_one_error_line(code, out, err, ("--out",))
    assert [f.name for f in tmp_path.iterdir()] == ["kept.txt"]
    code, out, err = run_cli(
        capsys, *LLAMA, "--mode", "aggregated", "--export", "vllm", "--out", str(tmp_path), "--force"
    )
    assert code == 0, err
    assert (tmp_path / "aggregated" / "launch.sh").exists() and (tmp_path / "kept.txt").read_text() == "mine"


def test_an_fp8_plan_of_a_model_with_an_fp8_checkpoint_serves_that_checkpoint():
    """Qwen3-235B-A22B's publisher ships block-scaled fp8 weights (Qwen/Qwen3-235B-A22B-FP8 on
    Hugging Face): an fp8 plan is launched on them, a bf16 plan on the 16-bit repo, as tuner
    export picks for a trial (tuner.export.served_repo)."""
    p = problem(
        "qwen3-235b-a22b", "h200", request_rate=2, prompt_len=2048, gen_len=256, max_ttft_s=2, max_tpot_s=0.1,
        max_chips=8, backend="vllm",
    )  # fmt: skip
    rows = recommend(p, ("aggregated",))["aggregated"]["feasible"]
    fp8 = next(r for r in rows if r["weight_format"] == "fp8")
    bf16 = next(r for r in rows if r["weight_format"] == "bf16")
    assert plan_engine_args(scored_plan(p, fp8), "vllm")["engine_args"]["model"] == "Qwen/Qwen3-235B-A22B-FP8"
    assert plan_engine_args(scored_plan(p, bf16), "vllm")["engine_args"]["model"] == "Qwen/Qwen3-235B-A22B"


def test_no_plan_writes_nothing_and_says_so(capsys, tmp_path):
    """One H100 (80 GB): Llama-3.1-70B's bf16 weights (70.6e9 parameters, 141 GB) do not fit, its
    fp8 ones (70.6 GB) nearly fill vLLM's 0.9 x 80 = 72 GB, and a prefill and a decode pool need
    two chips: no plan meets 4 requests/s, so nothing is written and the user is told (exit 2)."""
    out = tmp_path / "none"
    code, stdout, err = run_cli(capsys, *LLAMA[:-1], "1", "--export", "vllm", "--out", str(out))
    assert code == 2 and "none -" in stdout
    assert err.count("\n") == 1 and err.startswith("error: --export: no plan meets the SLA")
    assert not out.exists()


def test_an_int8_plan_is_scored_as_its_export_runs_it():
    """On an A100 (int8 tensor cores, no fp8) recommend's 8-bit candidate is int8. Its export
    launches int8 weight-only (vLLM's gptq_marlin: a GPTQ checkpoint on Marlin, bf16 tensor
    cores), so the plan must be scored weight-only, with 16-bit activations, as tuner estimate
    --weight-bits 8 --act-bits 16 scores it. It was scored W8A8 (int8 x int8 at the int8 peak):
    Llama-3-8B on one A100 under vLLM at 1 request/s, TTFT 63 ms and TPOT 8.2 ms, where the
    weight-only kernel the export launches gives 94 and 10.9."""
    p = problem(
        "llama-3-8b", "a100-80gb", request_rate=1.0, prompt_len=1024, gen_len=256, max_ttft_s=1, max_tpot_s=0.1,
        backend="vllm", max_chips=2,
    )  # fmt: skip
    rows = recommend(p, ("aggregated",))["aggregated"]["feasible"]
    row = next(r for r in rows if r["weight_format"] == "int8")
    plan = scored_plan(p, row)
    exported = plan_engine_args(plan, "vllm")
    assert exported["engine_args"]["quantization"] == "gptq_marlin"  # weight-only
    assert row["act_format"] == "bf16"
    assert (plan.deployment.weight_dtype, plan.deployment.act_dtype) == ("int8", "bf16")
