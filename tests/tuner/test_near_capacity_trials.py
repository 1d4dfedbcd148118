"""A serving study's trial whose open-loop running batch swings up to its cap (running_p999 >=
max_concurrency) is said to be near capacity by `tuner show` and under `tuner pareto`'s front, as
`tuner estimate` and `tuner recommend` say it for the same deployment: its means leave out the waits
and preemptions the swings bring.

Measured before (2026-12-05, this worktree): Llama-3.1-70B bf16 on 2 H100s under vLLM at 1.3333
requests/s, 2048/256 tokens, was a feasible front trial of a study with max_ttft_s 2 (TTFT 0.32 s,
TPOT 43.2 ms) and neither command said more, while `tuner estimate` printed "near capacity: ... (the
KV cache holds 15)" and `tuner simulate` of it (3000 requests) gave a mean TTFT of 16.7 s. Since
the wait for a slot is charged (serving._slot_wait) that trial is unstable (its mean batch past
0.98 of its 15 sequences); at 1.0 requests/s (here) it reads 0.51 s, feasible, its batch still
swinging to the cap (99.9th percentile 27 of 15 sequences), and the note still says what the
means leave out (the preemptions; `tuner simulate`: 0.69 s, 6000 requests, seed 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tuner.cli import main

SPEC = {
    "name": "near-capacity",
    "model": "llama-3.1-70b",
    "hardware": "h100-sxm",
    "backend": "vllm",
    "workload": {"prompt_len": 2048, "gen_len": 256},
    "space": {"tp": [2, 4], "weight_bits": [16], "kv_bits": [16], "flash_attention": [True]},
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.tokens_per_s_per_user"}],
    "constraints": {"max_ttft_s": 2.0, "max_tpot_s": 0.1},
    "serving": {"request_rate": [1.0]},
    "sampler": "exhaustive",
    "trials": 2,
}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> str:
    where = tmp_path_factory.mktemp("near")
    spec = where / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    url = f"sqlite:///{where / 's.db'}"
    assert main(["search", str(spec), "--storage", url, "--json"]) == 0
    return url


def _trial_of_tp(url: str, tp: int, capsys) -> dict:
    for number in (0, 1):
        capsys.readouterr()
        assert main(["show", SPEC["name"], str(number), "--storage", url]) == 0
        shown = json.loads(capsys.readouterr().out)
        if shown["params"]["tp"] == tp:
            return shown
    raise AssertionError(f"no trial of tp {tp}")


def test_show_says_a_trial_near_capacity(study: str, capsys) -> None:
    near = _trial_of_tp(study, 2, capsys)
    assert near["feasible"]  # the means meet the SLA: only the note tells
    serving = near["estimate"]["serving"]
    assert serving["running_p999"] >= serving["max_concurrency"]
    assert any(note.startswith("near capacity:") for note in serving["notes"])
    far = _trial_of_tp(study, 4, capsys)["estimate"]["serving"]
    assert far["running_p999"] < far["max_concurrency"]
    assert not any(note.startswith("near capacity:") for note in far["notes"])


def test_pareto_names_the_front_trials_near_capacity(study: str, capsys) -> None:
    near = _trial_of_tp(study, 2, capsys)["trial"]
    capsys.readouterr()
    assert main(["pareto", SPEC["name"], "--storage", study]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"near capacity: trial {near}:" in out and "tuner simulate" in out


def test_the_search_front_says_it_too(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    assert main(["search", str(spec), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 0
    assert "near capacity: trial" in " ".join(capsys.readouterr().out.split())


def test_pareto_json_marks_them(study: str, capsys) -> None:
    near = _trial_of_tp(study, 2, capsys)["trial"]
    capsys.readouterr()
    assert main(["pareto", SPEC["name"], "--storage", study, "--json"]) == 0
    rows = {row["trial"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[near].get("near_capacity") is True
    assert all("near_capacity" not in row for number, row in rows.items() if number != near)
