"""`tuner init`: the commented spec it writes parses, documents every field and searches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli
from cost_models.hardware import get_hardware
from cost_models.topology import network_for, parse_mesh
from search_spaces.spec import StudySpec, load_spec
from tuner.init_spec import spec_text


@pytest.mark.parametrize("serving", [False, True])
def test_init_spec_searches_into_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str], serving: bool) -> None:
    path = tmp_path / "study.yaml"
    args = ["init", "--model", "llama-2-7b", "--hardware", "h100-sxm", "-o", str(path)]
    code, out, err = run_cli(capsys, *args, *(["--serving"] if serving else []))
    assert code == 0, err
    assert str(path) in out
    spec = load_spec(path)
    assert (spec.serving is not None) == serving
    url = f"sqlite:///{tmp_path / 'study.db'}"
    code, out, err = run_cli(capsys, "search", str(path), "--storage", url, "--trials", "12", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["trials_added"] == 12
    assert result["front"], "an init spec should have a feasible front"


def test_init_serving_spec_has_serving_objectives_and_slas() -> None:
    spec = load_spec_text(spec_text("llama-3-70b", "h100-sxm", serving=True))
    assert [o.metric for o in spec.objectives] == ["serving.tokens_per_s_per_chip", "serving.tokens_per_s_per_user"]
    assert spec.constraints.max_ttft_s and spec.constraints.max_tpot_s
    assert spec.serving is not None and spec.serving.concurrency


@pytest.mark.parametrize("hardware", ["h100-sxm", "tpu-v4", "l4", "a100-40gb", "gb200"])
def test_init_space_uses_what_the_chip_allows(hardware: str) -> None:
    chip = get_hardware(hardware)
    spec = load_spec_text(spec_text("llama-2-70b", hardware))
    network = network_for(chip)
    assert all(network.legal_meshes(n) for n in spec.space.chips)
    if spec.space.mesh != "auto":
        meshes = [parse_mesh(m) for m in spec.space.mesh]
        assert all(m in network.legal_meshes(m[0] * m[1] * m[2]) for m in meshes)
    # fp8 only where the chip has fp8 units
    assert ("fp8" in spec.space.weight_bits) == (chip.peak_ops_per_s.fp8 is not None)
    # at least one chip count holds the 16-bit weights (140 GB)
    assert max(spec.space.chips) * chip.memory_bytes >= 2 * 69e9


def test_every_field_is_written_under_a_comment() -> None:
    text = spec_text("llama-2-7b", "tpu-v4", serving=True)
    lines = text.splitlines()
    for section in ("", "workload", "space", "constraints", "serving"):
        model = StudySpec if not section else StudySpec.model_fields[section].annotation
        fields = (
            getattr(model, "model_fields", None)
            or [a for a in getattr(model, "__args__", ()) if hasattr(a, "model_fields")][0].model_fields
        )
        indent = "  " if section else ""
        for name in fields:
            found = [i for i, line in enumerate(lines) if re.match(rf"^{indent}(# )?{name}:", line)]
            assert found, f"{section}.{name} is not written"
            assert lines[found[0] - 1].startswith(indent + "#"), f"{section}.{name} has no comment"
    assert "# direction:" in text and "# metric:" in text


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("keep me\n")
    args = ("init", "--model", "llama-2-7b", "--hardware", "l4", "-o", str(path))
    assert_one_error_line(*run_cli(capsys, *args), fields=("--force",))
    assert path.read_text() == "keep me\n"
    code, _, err = run_cli(capsys, *args, "--force")
    assert code == 0, err
    assert load_spec(path).hardware == "l4"


def test_init_unknown_model_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("init", "--model", "no-such-model", "--hardware", "l4", "-o", str(tmp_path / "x.yaml"))
    assert_one_error_line(*run_cli(capsys, *args), fields=("model",))
    assert not (tmp_path / "x.yaml").exists()


def load_spec_text(text: str) -> StudySpec:
    from search_spaces.spec import parse_spec

    return parse_spec(yaml.safe_load(text))
