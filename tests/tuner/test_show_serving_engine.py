"""`tuner show`'s serving section names what bounds the running batch (``limited_by``) and the
engine knobs the trial was scored with (``engine``), as `tuner estimate`'s serving section does for
the same deployment. Before (2026-12-05), show had neither: a QA pass could not tell from show that
a Mixtral-8x7B TP1 DP2 EP2 trial on H200s (vLLM) ran 512 sequences bounded by max_batch_size."""

from __future__ import annotations

import json

import yaml

from tuner.cli import main

SPEC = {
    "name": "show-engine",
    "model": "mixtral-8x7b",
    "hardware": "h200",
    "backend": "vllm",
    "workload": {"prompt_len": 2048, "gen_len": 256},
    "space": {"tp": [1], "dp": [2], "ep": [2], "weight_bits": [16], "kv_bits": [16]},
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}],
    "constraints": {"fits": True},
    "serving": {"request_rate": [10.0]},
    "sampler": "exhaustive",
    "trials": 1,
}


def test_show_gives_engine_and_limited_by_as_estimate_does(tmp_path, capsys) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["search", str(spec), "--storage", url, "--json"]) == 0
    capsys.readouterr()
    assert main(["show", SPEC["name"], "0", "--storage", url]) == 0
    shown = json.loads(capsys.readouterr().out)["estimate"]["serving"]
    args = ["estimate", "--model", "mixtral-8x7b", "--hardware", "h200", "--tp", "1", "--dp", "2", "--ep", "2"]
    args += ["--backend", "vllm", "--prompt-len", "2048", "--gen-len", "256", "--request-rate", "10", "--json"]
    assert main(args) == 0
    estimated = json.loads(capsys.readouterr().out)["serving"]
    assert shown["engine"] == estimated["engine"]
    assert shown["engine"]["max_batch_size"] == 2 * 256  # vLLM's default in each DP rank
    assert shown["limited_by"] == estimated["limited_by"]
