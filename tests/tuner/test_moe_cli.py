"""The CLI on mixture-of-experts models: params in tuner models and tuner estimate --json."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli


def test_estimate_mixtral_json_reports_total_and_active_params(capsys) -> None:
    code, out, err = run_cli(
        capsys,
        "estimate",
        "--model",
        "mixtral-8x7b",
        "--hardware",
        "h100-sxm",
        "--chips",
        "2",
        "--batch",
        "8",
        "--prompt-len",
        "1024",
        "--gen-len",
        "128",
        "--json",
    )
    assert code == 0 and err == ""
    report = json.loads(out)
    # Mixtral paper (arXiv 2401.04088) / model card: 46.7B parameters, 12.9B active per token.
    assert report["params"]["total"] == pytest.approx(46.7e9, rel=2e-3)
    assert report["params"]["active_per_token"] == pytest.approx(12.9e9, rel=2e-3)
    assert report["memory"]["fits"] is True
    assert 0 < report["decode"]["mfu"] < report["prefill"]["mfu"] < 1


def test_models_show_active_params_and_experts(capsys) -> None:
    code, out, err = run_cli(capsys, "models", "--json")
    assert code == 0 and err == ""
    by_name = {m["name"]: m for m in json.loads(out)}
    qwen = by_name["qwen3-235b-a22b"]
    assert qwen["experts"] == 128 and qwen["experts_per_token"] == 8
    assert qwen["params"] == pytest.approx(235e9, rel=5e-3)
    assert qwen["active_params"] == pytest.approx(22.1e9, rel=1e-2)
    assert by_name["llama-3.1-8b"]["active_params"] == by_name["llama-3.1-8b"]["params"]
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "active" in out and "8 top-2" in out


def test_analyze_json_reports_params(capsys) -> None:
    code, out, err = run_cli(
        capsys,
        "analyze",
        "--model",
        "mixtral-8x7b",
        "--hardware",
        "h100-sxm",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--seq-len",
        "512",
        "--json",
    )
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["params"]["active_per_token"] < report["params"]["total"]
    names = {op["name"] for op in report["operators"]}
    assert {"router", "expert_up", "expert_down"} <= names and "up_proj" not in names
