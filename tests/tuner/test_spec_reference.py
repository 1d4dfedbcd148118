"""`tuner spec --schema / --reference`: generated from the pydantic models, committed, never stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import assert_one_error_line, run_cli
from cost_models.metrics import METRICS
from search_spaces.spec import StudySpec
from tuner.spec_docs import reference_markdown, sections

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "spec-reference.md"


def test_committed_spec_reference_is_the_generated_one() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == reference_markdown(), (
        "docs/spec-reference.md is stale: run python -m tuner.cli spec --reference > docs/spec-reference.md"
    )


def test_spec_reference_command_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "spec", "--reference")
    assert code == 0, err
    assert out == reference_markdown()


def test_every_field_is_documented_with_a_description() -> None:
    documented = {f.path: f for s in sections() for f in s.fields}
    assert all(f.description for f in documented.values()), [p for p, f in documented.items() if not f.description]
    for name in StudySpec.model_fields:
        assert name in documented
    for name in ("space.chips", "space.weight_bits", "serving.concurrency", "objectives[].metric"):
        assert name in documented, name


def test_allowed_values_come_from_the_library() -> None:
    documented = {f.path: f for s in sections() for f in s.fields}
    assert all(m in documented["objectives[].metric"].allowed for m in METRICS)
    assert "fp8" in documented["space.weight_bits"].allowed
    assert "exhaustive" in documented["sampler"].allowed


def test_reference_lists_and_links_the_metrics() -> None:
    text = reference_markdown()
    assert "tuner metrics" in text and "(#metrics-tuner-metrics)" in text
    for metric in METRICS.values():
        assert f"| `{metric.name}` | {metric.unit} |" in text


def test_readme_links_the_reference() -> None:
    readme = (REFERENCE.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "docs/spec-reference.md" in readme


def test_spec_schema_is_the_models_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "spec", "--schema")
    assert code == 0, err
    schema = json.loads(out)
    assert schema == json.loads(json.dumps(StudySpec.model_json_schema()))
    assert set(schema["$defs"]["Objective"]["properties"]["metric"]["enum"]) == set(METRICS)


def test_spec_without_a_flag_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_error_line(*run_cli(capsys, "spec"), fields=("--schema",))


@pytest.mark.parametrize("name", sorted(p.name for p in (REFERENCE.parents[1] / "studies").glob("*.yaml")))
def test_every_shipped_study_is_valid_under_the_json_schema(capsys: pytest.CaptureFixture[str], name: str) -> None:
    """An editor validating with `tuner spec --schema` marked every shipped study invalid: the
    schema took weight_bits and kv_bits as strings only, which YAML's 16, 8 and 4 are not (the
    spec reads them as "16", ...; tuner init writes them so). Session 39."""
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    code, out, err = run_cli(capsys, "spec", "--schema")
    assert code == 0, err
    data = yaml.safe_load((REFERENCE.parents[1] / "studies" / name).read_text(encoding="utf-8"))
    errors = [e.message for e in jsonschema.Draft202012Validator(json.loads(out)).iter_errors(data)]
    assert errors == []


def test_the_json_schema_still_refuses_a_format_the_spec_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    code, out, _ = run_cli(capsys, "spec", "--schema")
    schema = json.loads(out)
    base = {"name": "s", "model": "llama-3-8b", "hardware": "h100-sxm", "workload": {"prompt_len": 8, "gen_len": 8}}
    base |= {"objectives": [{"metric": "decode.step_latency_s"}]}
    valid = jsonschema.Draft202012Validator(schema)
    assert valid.is_valid(base | {"space": {"chips": [1], "batch": [1], "weight_bits": [16, "fp8", 8, 4]}})
    for bad in (3, 32, "int3"):
        assert not valid.is_valid(base | {"space": {"chips": [1], "batch": [1], "weight_bits": [bad]}}), bad
