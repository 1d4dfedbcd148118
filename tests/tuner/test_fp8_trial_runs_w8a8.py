"""A study's fp8 trial is scored as the engines run what `tuner export` writes for it: vLLM's and
SGLang's --quantization fp8 (Fp8LinearMethod) quantizes each Linear layer's input to fp8 at run time
on GPUs with fp8 tensor cores, W8A8, which is how `tuner recommend` scores its fp8 plans. Both paths
then give one number for one launch.

Measured before (2026-12-05, this worktree): 2P x TP2 + 1D x TP2 of Llama-3.1-70B fp8 on H100s at 10
requests/s (2048/256, vLLM) scored TTFT 546 ms as a study trial (bf16 activations) and 497 ms in
recommend (fp8 activations, whose norms and residual adds were then also charged at 1 byte); now
both 520 ms."""

from __future__ import annotations

import json

import pytest
import yaml

from tuner.cli import main

SPEC = {
    "name": "fp8-w8a8",
    "model": "llama-3.1-70b",
    "hardware": "h100-sxm",
    "backend": "vllm",
    "workload": {"prompt_len": 2048, "gen_len": 256},
    "space": {"tp": [2], "weight_bits": ["fp8", 16], "kv_bits": [16]},
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.ttft_s"}],
    "constraints": {"fits": True},
    "serving": {"mode": "disaggregated", "request_rate": [10.0], "prefill_instances": [2], "decode_instances": [1]},
    "sampler": "exhaustive",
    "trials": 2,
}
RECOMMEND = [
    "recommend", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--backend", "vllm", "--request-rate", "10",
    "--prompt-len", "2048", "--gen-len", "256", "--max-ttft-s", "2", "--max-tpot-s", "0.05", "--max-chips", "6",
    "--mode", "disaggregated", "--json",
]  # fmt: skip


@pytest.fixture(scope="module")
def trials(tmp_path_factory) -> str:
    where = tmp_path_factory.mktemp("w8a8")
    spec = where / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    url = f"sqlite:///{where / 's.db'}"
    assert main(["search", str(spec), "--storage", url, "--json"]) == 0
    return url


def _shown(url: str, number: int, capsys) -> dict:
    capsys.readouterr()
    assert main(["show", SPEC["name"], str(number), "--storage", url]) == 0
    return json.loads(capsys.readouterr().out)


def test_an_fp8_trial_runs_fp8_activations_and_a_bf16_one_bf16(trials: str, capsys) -> None:
    formats = {}
    for number in (0, 1):
        capsys.readouterr()
        assert (
            main(
                [
                    "export",
                    SPEC["name"],
                    "--trial",
                    str(number),
                    "--format",
                    "json",
                    "--storage",
                    trials,
                    "--allow-infeasible",
                ]
            )
            == 0
        )
        quantization = json.loads(capsys.readouterr().out)["quantization"]
        formats[quantization["weights"]] = quantization["activations"]
    assert formats == {"fp8": "fp8", "bf16": "bf16"}


def test_the_fp8_trial_scores_as_recommend_scores_the_same_plan(trials: str, capsys) -> None:
    fp8 = next(s for s in (_shown(trials, n, capsys) for n in (0, 1)) if s["params"]["weight_bits"] == "fp8")
    capsys.readouterr()
    assert main(RECOMMEND) == 0
    modes = json.loads(capsys.readouterr().out)["modes"]["disaggregated"]
    rows = [modes["best"], *modes["runners_up"]]
    plan = next(
        r for r in rows
        if (r["prefill_instances"], r["prefill_tp"], r["decode_instances"], r["decode_tp"]) == (2, 2, 1, 2)
        and r["weight_format"] == "fp8"
    )  # fmt: skip
    assert plan["act_format"] == "fp8"
    assert fp8["estimate"]["serving"]["ttft_s"] == pytest.approx(plan["ttft_s"], rel=1e-9)
    assert fp8["estimate"]["serving"]["tpot_s"] == pytest.approx(plan["tpot_s"], rel=1e-9)


def test_show_says_which_formats_the_trial_was_scored_with(trials: str, capsys) -> None:
    """tuner show's params carry weight_bits only, and an fp8 trial is scored W8A8 (its numbers
    are tuner estimate --weight-bits fp8 --act-bits fp8's, not --weight-bits fp8's, ~1-5% apart):
    show names every format, as export's quantization does. Before, it named none."""
    shown = {s["params"]["weight_bits"]: s["quantization"] for s in (_shown(trials, n, capsys) for n in (0, 1))}
    assert shown["fp8"] == {"weights": "fp8", "activations": "fp8", "kv_cache": "bf16"}
    assert shown["16"] == {"weights": "bf16", "activations": "bf16", "kv_cache": "bf16"}
