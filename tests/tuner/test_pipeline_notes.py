"""A study's pipelines without micro_batches: scored at one micro-batch (the spec's meaning), and
the search says so, where tuner estimate runs a pipeline as the engines do (up to PP micro-batches
in flight: tests/tuner/test_estimate_parallel_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import run_cli

SPEC = """name: pipes
model: llama-2-70b
hardware: h100-sxm
workload: {prompt_len: 1024, gen_len: 128}
space:
  tp: [4, 8]
  pp: [1, 2]
  batch: [8, 16]
%s
objectives: [{metric: decode.step_latency_s}, {metric: decode.cost_chip_s_per_token}]
sampler: exhaustive
"""


@pytest.mark.parametrize(("micro_batches", "noted"), [("", True), ("  micro_batches: [1, 2]", False)])
def test_a_pipeline_space_without_micro_batches_is_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], micro_batches: str, noted: bool
) -> None:
    spec = tmp_path / "pipes.yaml"
    spec.write_text(SPEC % micro_batches, encoding="utf-8")
    for command in ("search", "worker"):
        code, out, err = run_cli(capsys, command, str(spec), "--storage", f"sqlite:///{tmp_path / 'p.db'}")
        assert code == 0, err
        lines = [line for line in " ".join(out.split("\n")).split("note: ") if line.startswith("space.pp lists 2")]
        assert bool(lines) == noted, out
        if noted:
            assert "add micro_batches: [1, 2] to search them" in " ".join(lines[0].split())
