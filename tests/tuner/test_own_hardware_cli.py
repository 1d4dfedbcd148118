"""``--hardware``/``--model`` take the user's own YAML files everywhere a name is taken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli

CATALOG = Path(__file__).resolve().parents[2] / "cost_models" / "catalog"
ESTIMATE = ("--model", "llama-2-7b", "--chips", "8", "--batch", "8", "--prompt-len", "512", "--gen-len", "64")


def _entry(kind: str, name: str) -> dict:
    return yaml.safe_load((CATALOG / f"{kind}.yaml").read_text())[name]


@pytest.fixture
def twin(tmp_path) -> str:
    """h100-sxm's numbers under another name."""
    path = tmp_path / "twin.yaml"
    path.write_text(yaml.safe_dump({"twin": _entry("hardware", "h100-sxm")}))
    return str(path)


def _estimate(capsys, hardware: str, *extra: str) -> dict:
    code, out, err = run_cli(capsys, "estimate", "--hardware", hardware, *ESTIMATE, *extra, "--json")
    assert code == 0, err
    return json.loads(out)


def test_estimate_on_a_chip_file_equals_the_catalog_chip(capsys, twin):
    ours, theirs = (
        _estimate(capsys, twin, "--calibration", "none"),
        _estimate(capsys, "h100-sxm", "--calibration", "none"),
    )
    assert (ours.pop("hardware"), theirs.pop("hardware")) == ("twin", "h100-sxm")
    assert ours == theirs
    auto = _estimate(capsys, twin)["calibration"]  # no profile fitted on it: the fallback, with the reason
    assert auto["fallback"] is True and "chip from a file" in auto["note"]


def test_analyze_simulate_recommend_take_files(capsys, twin, tmp_path):
    model = tmp_path / "mine.yaml"
    model.write_text(yaml.safe_dump({**_entry("models", "llama-2-7b"), "name": "mine"}))
    code, out, err = run_cli(capsys, "analyze", "--model", str(model), "--hardware", twin, "--phase", "decode",
                             "--batch", "4", "--seq-len", "256", "--json")  # fmt: skip
    assert code == 0, err
    assert (json.loads(out)["model"], json.loads(out)["hardware"]) == ("mine", "twin")
    code, out, err = run_cli(capsys, "simulate", "--model", str(model), "--hardware", twin, "--chips", "1",
                             "--prompt-len", "256", "--gen-len", "32", "--concurrency", "4", "--json")  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(capsys, "recommend", "--model", str(model), "--hardware", twin, "--request-rate", "1",
                             "--prompt-len", "256", "--gen-len", "32", "--max-ttft-s", "1", "--max-tpot-s", "0.1",
                             "--json")  # fmt: skip
    assert code == 0, err


def test_the_template_works_as_a_chip_file(capsys, tmp_path):
    for kind, flag in (("hardware", "--hardware"), ("models", "--model")):
        code, out, err = run_cli(capsys, kind, "--template")
        assert code == 0 and out.startswith("#"), err
        path = tmp_path / f"{kind}.yaml"
        path.write_text(out)
        args = {"--hardware": "h100-sxm", "--model": "llama-2-7b", flag: str(path)}
        code, out, err = run_cli(capsys, "estimate", "--hardware", args["--hardware"], "--model", args["--model"],
                                 *ESTIMATE[2:], "--json")  # fmt: skip
        assert code == 0, err


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({k: v for k, v in _entry("hardware", "h100-sxm").items() if k != "kind"}, "kind"),
        ({**_entry("hardware", "h100-sxm"), "memory_bandwidth_bytes_per_s": -3.0}, "memory_bandwidth_bytes_per_s"),
        # A datasheet's units (TB/s, TFLOP/s) where the schema asks bytes/s and FLOP/s: accepted,
        # they gave a 512-token llama-3-8b prefill of 1.03e+10 s.
        (
            {**_entry("hardware", "h100-sxm"), "memory_bandwidth_bytes_per_s": 3.35},
            "memory_bandwidth_bytes_per_s: 3.35 is under",
        ),
        ({**_entry("hardware", "h100-sxm"), "peak_ops_per_s": {"bf16": 989.4}}, "peak_ops_per_s.bf16: 989.4 is under"),
        ("interconnect: {kind: torus\n", "not valid YAML"),
        ("just a string\n", "not a mapping"),
        (None, "is a directory"),
    ],
)
def test_a_bad_chip_file_is_one_line(capsys, tmp_path, content, field):
    if content is None:
        path = tmp_path / "dir.yaml"
        path.mkdir()
    else:
        path = tmp_path / "bad.yaml"
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    line = assert_one_error_line(*run_cli(capsys, "estimate", "--hardware", str(path), *ESTIMATE), (field,))
    assert str(path) in line


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--hardware", "h100", "did you mean h100-sxm? (tuner hardware lists all)"),
        ("--hardware", "H100-SXM", "did you mean h100-sxm?"),
        ("--model", "llama-2-70", "did you mean llama-2-70b? (tuner models lists all)"),
    ],
)
def test_did_you_mean(capsys, flag, value, expected):
    args = {"--hardware": "h100-sxm", "--model": "llama-2-7b", flag: value}
    code, out, err = run_cli(capsys, "estimate", "--hardware", args["--hardware"], "--model", args["--model"],
                             *ESTIMATE[2:])  # fmt: skip
    line = assert_one_error_line(code, out, err, (flag.strip("-"),))
    assert expected in line


def test_hardware_lists_chip_counts_and_meshes(capsys):
    code, out, _ = run_cli(capsys, "hardware", "--json")
    chips = {c["name"]: c["chips"] for c in json.loads(out)}
    assert "2x2x2" in chips["tpu-v4"]["meshes"]["8"] and 2 not in chips["tpu-v4"]["chip_counts"]
    assert chips["h100-sxm"]["chip_counts"][:9] == [1, 2, 3, 4, 5, 6, 7, 8, 16]
    code, out, _ = run_cli(capsys, "hardware")
    assert code == 0 and "multiples of 8" in out


SPEC = """\
name: own-chip-study
model: llama-2-7b
hardware: ./my-chip.yaml
workload: {prompt_len: 512, gen_len: 64}
space:
  chips: [1, 2, 8]
  batch: [1, 8]
objectives:
  - metric: decode.step_latency_s
  - metric: decode.cost_chip_s_per_token
sampler: exhaustive
trials: 100
"""


def test_a_spec_with_a_chip_file_searches_shows_and_exports(capsys, tmp_path, monkeypatch):
    study_dir = tmp_path / "specs"
    study_dir.mkdir()
    (study_dir / "my-chip.yaml").write_text(yaml.safe_dump({"my-chip": _entry("hardware", "h100-sxm")}))
    (study_dir / "spec.yaml").write_text(SPEC)
    monkeypatch.chdir(tmp_path)  # the chip is found beside the spec, not in the working directory
    storage = f"sqlite:///{tmp_path / 'own.db'}"
    code, out, err = run_cli(capsys, "search", "specs/spec.yaml", "--storage", storage, "--json")
    assert code == 0, err
    assert json.loads(out)["trials_added"] > 0
    assert json.loads(out)["calibration"] == "my-chip-trtllm (fallback: not fitted on my-chip)"
    (study_dir / "my-chip.yaml").unlink()  # the trials keep the chip whole
    code, out, err = run_cli(capsys, "show", "own-chip-study", "0", "--storage", storage)
    assert code == 0, err
    # the fallback profile of the file chip, named as one
    assert json.loads(out)["calibration"] == "my-chip-trtllm (fallback: not fitted on my-chip)"
    code, out, err = run_cli(capsys, "pareto", "own-chip-study", "--storage", storage)
    assert code == 0, err
    assert "calibration my-chip-trtllm (fallback: not fitted on my-chip)" in " ".join(out.split())
    code, out, err = run_cli(capsys, "export", "own-chip-study", "--trial", "0", "--storage", storage,
                             "--allow-infeasible")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["hardware"]["name"] == "my-chip"
    code, out, err = run_cli(capsys, "export", "own-chip-study", "--trial", "0", "--storage", storage,
                             "--allow-infeasible", "--format", "vllm")  # fmt: skip
    assert code == 0, err


def test_a_spec_resumes_only_with_the_same_chip_numbers(capsys, tmp_path):
    (tmp_path / "my-chip.yaml").write_text(yaml.safe_dump(_entry("hardware", "h100-sxm")))
    (tmp_path / "spec.yaml").write_text(SPEC.replace("trials: 100", "trials: 2"))
    storage = f"sqlite:///{tmp_path / 'own.db'}"
    assert run_cli(capsys, "search", str(tmp_path / "spec.yaml"), "--storage", storage, "--json")[0] == 0
    (tmp_path / "my-chip.yaml").write_text(yaml.safe_dump({**_entry("hardware", "h100-sxm"), "memory_bytes": 1e11}))
    code, out, err = run_cli(capsys, "search", str(tmp_path / "spec.yaml"), "--storage", storage, "--json")
    line = assert_one_error_line(code, out, err, ("spec",))
    assert "hardware.memory_bytes" in line


def test_efficiency_factors_a_profile_does_not_apply_are_said(capsys, tmp_path):
    """A chip file's efficiency factors scale the pure roofline; a calibration profile's fitted
    kernels and collectives replace it. Under --calibration auto (a file chip's fallback profile)
    compute 0.5 and network 0.7 changed no number, and nothing said so (session 39)."""
    entry = _entry("hardware", "h100-sxm") | {"efficiency": {"compute": 0.5, "memory": 1.0, "network": 0.7}}
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump({"slow": entry}))
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"plain": _entry("hardware", "h100-sxm")}))
    slow, same = _estimate(capsys, str(path)), _estimate(capsys, str(plain))
    assert slow["decode"]["step_latency_s"] == same["decode"]["step_latency_s"]  # not applied, as said:
    said = [n for n in slow["notes"] if "efficiency factors" in n]
    assert len(said) == 1 and "compute 0.5, network 0.7" in said[0] and "--calibration none" in said[0]
    assert not any("efficiency factors" in n for n in same["notes"])
    roofline = _estimate(capsys, str(path), "--calibration", "none")
    assert not any("efficiency factors" in n for n in roofline["notes"])
    assert (
        roofline["prefill"]["latency_s"]
        > _estimate(capsys, str(plain), "--calibration", "none")["prefill"]["latency_s"]
    )
