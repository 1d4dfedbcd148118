"""Under data parallelism with no batch limit given, each DP rank runs the engine's default, as
the engine launched with its defaults does: vLLM runs each DP rank as its own engine core whose
scheduler takes the one ``--max-num-seqs`` (vllm-project/vllm docs/serving/data_parallel_deployment.md),
so DP replicas of a dense model are independent replicas. Before, ``tuner estimate``/``simulate``
and a study's serving took the engine default (vLLM 256) as the whole deployment's, 32 a rank at
DP 8, while ``tuner recommend`` planned each rank at 256: Llama-3-8B TP1 DP8 under vLLM at 512
clients of 512/128 ran 20,230 tokens/s at 1.71 s TTFT (one TP1 replica at 64 clients: 3,461
tokens/s at 0.126 s, 8 x = 27,692). An explicit limit stays the deployment's (each rank
ceil(N / DP), what ``tuner export`` writes per rank)."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli
from tuner.export import export
from tuner.pareto import load_study
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

LLAMA_VLLM = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--backend", "vllm", "--prompt-len", "512")
LLAMA_VLLM += ("--gen-len", "128")
#: vLLM's --max-num-seqs default (vllm/config SchedulerConfig, online serving): 256 a scheduler.
VLLM_MAX_NUM_SEQS = 256


def _serving(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run_cli(capsys, "estimate", *LLAMA_VLLM, *args, "--json")
    assert code == 0, err
    return json.loads(out)["serving"]


def test_dp_replicas_at_the_default_are_independent_replicas(capsys) -> None:
    """First principles: 8 DP ranks of a dense model, each its own vLLM engine core with the
    default 256 sequences, serving 512 clients are 8 TP1 replicas each serving 512 / 8 = 64: the
    same latencies, 8 x the rates, 8 x 256 = 2048 slots."""
    dp8 = _serving(capsys, "--tp", "1", "--dp", "8", "--concurrency", "512")
    one = _serving(capsys, "--tp", "1", "--concurrency", "64")
    assert one["max_concurrency"] == VLLM_MAX_NUM_SEQS
    assert dp8["max_concurrency"] == 8 * VLLM_MAX_NUM_SEQS
    assert dp8["ttft_s"] == pytest.approx(one["ttft_s"], rel=1e-9)  # was 1.71 s against 0.126 s
    assert dp8["tpot_s"] == pytest.approx(one["tpot_s"], rel=1e-9)
    assert dp8["tokens_per_s"] == pytest.approx(8 * one["tokens_per_s"], rel=1e-9)  # was 20,230 against 27,692
    assert dp8["requests_per_s"] == pytest.approx(8 * one["requests_per_s"], rel=1e-9)
    # An explicit limit is the whole deployment's: 512 over 8 ranks is 64 a rank.
    given = _serving(capsys, "--tp", "1", "--dp", "8", "--concurrency", "512", "--max-batch-size", "512")
    assert (given["max_concurrency"], given["limited_by"]) == (512, "max_batch_size")


def test_simulate_runs_each_rank_at_the_default(capsys) -> None:
    """tuner simulate --dp 8 simulates one rank with its 64 clients: the same run as one replica
    at 64 clients (same requests and seed), the deployment's rates 8 x it."""
    runs = {}
    for chips, dp, clients in ((8, 8, 512), (1, 1, 64)):
        code, out, err = run_cli(
            capsys, "simulate", *LLAMA_VLLM, "--chips", str(chips), "--dp", str(dp), "--concurrency", str(clients),
            "--requests", "320", "--json",
        )  # fmt: skip
        assert code == 0, err
        runs[dp] = json.loads(out)["simulated"]
    assert runs[8]["peak_running"] == runs[1]["peak_running"] == 64  # was 32 a rank at DP 8
    assert runs[8]["tokens_per_s"] == pytest.approx(8 * runs[1]["tokens_per_s"], rel=1e-9)


MIXTRAL_VLLM = ("--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--backend", "vllm", "--prompt-len", "512")
MIXTRAL_VLLM += ("--gen-len", "128")


def test_recommends_plan_is_estimates_at_the_default(capsys) -> None:
    """Mixtral-8x7B under vLLM at 100 req/s, TTFT 1 s, TPOT 50 ms: the fewest chips are one TP1
    DP4 EP4 instance, planned at 256 sequences a rank; tuner estimate of that deployment at the
    default limit gives the plan's TTFT and TPOT (before, it ran 64 a rank and queued)."""
    sla = ("--request-rate", "100", "--max-ttft-s", "1", "--max-tpot-s", "0.05", "--mode", "aggregated")
    code, out, err = run_cli(capsys, "recommend", *MIXTRAL_VLLM, *sla, "--json")
    assert code == 0, err
    best = json.loads(out)["modes"]["aggregated"]["best"]
    assert (best["replicas"], best["tp"], best["dp"], best["ep"]) == (1, 1, 4, 4)
    degrees = ("--tp", "1", "--dp", "4", "--ep", "4", "--request-rate", "100")
    code, out, err = run_cli(capsys, "estimate", *MIXTRAL_VLLM, *degrees, "--json")
    assert code == 0, err
    serving = json.loads(out)["serving"]
    assert serving["max_concurrency"] == 4 * VLLM_MAX_NUM_SEQS
    assert serving["ttft_s"] == pytest.approx(best["ttft_s"], rel=1e-9)
    assert serving["tpot_s"] == pytest.approx(best["tpot_s"], rel=1e-9)


def test_sglang_dp_attention_divides_a_given_limit(capsys) -> None:
    """SGLang with --enable-dp-attention divides a given --max-running-requests by --dp-size
    (sgl-project/sglang model_runner.py: ``max_running_requests // dp_size``): 64 over 8 ranks
    of Mixtral-8x7B (TP1 DP8 EP8) is 8 a rank, 64 in all; the export writes the 64 for SGLang to
    divide."""
    args = ("--tp", "1", "--dp", "8", "--ep", "8", "--concurrency", "256", "--max-batch-size", "64")
    code, out, err = run_cli(
        capsys, "estimate", *MIXTRAL_VLLM[:4], "--backend", "sglang", *MIXTRAL_VLLM[6:], *args, "--json"
    )
    assert code == 0, err
    serving = json.loads(out)["serving"]
    assert (serving["max_concurrency"], serving["limited_by"]) == (64, "max_batch_size")


STUDY = {
    "name": "dp-default",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 512, "gen_len": 128},
    "space": {"tp": [1], "dp": [8]},
    "serving": {"concurrency": [512]},
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}],
    "backend": "vllm",
    "sampler": "exhaustive",
}


def test_a_study_scores_and_exports_each_rank_at_the_default(tmp_path, capsys) -> None:
    """A study with no serving.max_batch_size scores its TP1 DP8 trial as tuner estimate does
    (8 x 256 slots, 8 x a replica's tokens/s); the vLLM export of it launches
    --data-parallel-size 8 with --max-num-seqs 256, vLLM's own default a rank, which reproduces
    the scored deployment."""
    url = f"sqlite:///{tmp_path}/dp.db"
    run_search(STUDY, url)
    study = load_study("dp-default", url)
    (trial,) = [t for t in study.get_trials() if t.user_attrs.get("serving")]
    scored = trial.user_attrs["serving"]
    assert scored["max_batch_size"] == 8 * VLLM_MAX_NUM_SEQS
    estimate = _serving(capsys, "--tp", "1", "--dp", "8", "--concurrency", "512")
    exported = json.loads(export(study, trial.number, "vllm"))
    engine_args = exported["engine_args"]
    assert engine_args["data_parallel_size"] == 8
    assert engine_args["max_num_seqs"] == VLLM_MAX_NUM_SEQS
    assert trial.values[0] == pytest.approx(estimate["tokens_per_s"] / 8, rel=1e-6)
