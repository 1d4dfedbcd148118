"""A serving study without serving.max_batch_size scores each of a trial's DP ranks at the engine's
default (cost_models.serving.default_max_batch_size): vLLM's 256 a rank, 512 for the deployment at
DP 2, which `tuner export` writes back as --max-num-seqs 256 a rank ("512 sequences over 2 ranks").
`tuner show`, `tuner pareto` (its table, its "constant:" line and --json) show that 512, the value
`tuner estimate --dp 2 --max-batch-size` takes for the same trial.

Measured before (2026-12-05, this worktree): Mixtral-8x7B bf16 on H200s (vLLM, TP1 DP2 EP2, 10
requests/s, 2048/256 tokens) was shown max_batch_size 256 everywhere; the QA pass fed a shown 256 to
`tuner estimate --dp 2 --max-batch-size 256` and got 1470 tokens/s/chip against the trial's 1886."""

from __future__ import annotations

import json

import pytest
import yaml

from tuner.cli import main

SPEC = {
    "name": "dp-batch",
    "model": "mixtral-8x7b",
    "hardware": "h200",
    "backend": "vllm",
    "workload": {"prompt_len": 2048, "gen_len": 256},
    "space": {"tp": [1], "dp": [2], "ep": [2], "weight_bits": [16], "kv_bits": [16]},
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.tokens_per_s_per_user"}],
    "constraints": {"fits": True},
    "serving": {"request_rate": [5.0, 10.0]},
    "sampler": "exhaustive",
    "trials": 2,
}
VLLM_MAX_NUM_SEQS = 256  # vLLM's --max-num-seqs default, each DP rank's (its own engine core)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> str:
    where = tmp_path_factory.mktemp("dpbatch")
    spec = where / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    url = f"sqlite:///{where / 's.db'}"
    assert main(["search", str(spec), "--storage", url, "--json"]) == 0
    return url


def test_show_gives_the_batch_limit_the_dp_ranks_ran(study: str, capsys) -> None:
    capsys.readouterr()
    assert main(["show", SPEC["name"], "0", "--storage", study]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["params"]["max_batch_size"] == 2 * VLLM_MAX_NUM_SEQS
    assert shown["estimate"]["params"]["max_batch_size"] == 2 * VLLM_MAX_NUM_SEQS
    assert shown["estimate"]["serving"]["max_concurrency"] <= 2 * VLLM_MAX_NUM_SEQS


def test_pareto_shows_it_in_its_table_and_json(study: str, capsys) -> None:
    capsys.readouterr()
    assert main(["pareto", SPEC["name"], "--storage", study, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(row["params"]["max_batch_size"] == 2 * VLLM_MAX_NUM_SEQS for row in rows)
    assert main(["pareto", SPEC["name"], "--storage", study]) == 0
    out = capsys.readouterr().out
    # Both rates are on the front (more tokens a chip at 10/s, a user at 5/s): the batch limit is
    # in the line of what every front trial shares.
    constant = next(line for line in out.splitlines() if line.startswith("constant:"))
    assert f"max batch {2 * VLLM_MAX_NUM_SEQS}," in constant
