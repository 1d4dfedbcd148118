"""A study name out of its pattern or length is one line with the value given and what to write
(session 39: these printed pydantic's "String should match pattern '^[A-Za-z0-9]...'" and no fix,
where every other spec error says how to mend it)."""

from __future__ import annotations

import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli

SPEC = {
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 64, "gen_len": 8},
    "space": {"chips": [1], "batch": [1, 2]},
    "objectives": [{"metric": "decode.step_latency_s"}],
    "sampler": "exhaustive",
}


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("a/b", "use letters, digits, '.', '_' and '-', starting with a letter or digit"),
        ("ünïcødé-名前", "use letters, digits, '.', '_' and '-', starting with a letter or digit"),
        ("-rf", "starting with a letter or digit"),
        ("", "write at least 1 character"),
        ("a" * 300, "write at most 200 characters"),
    ],
)
def test_a_bad_study_name_says_what_to_write(tmp_path, capsys, name, fix) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC | {"name": name}, allow_unicode=True), encoding="utf-8")
    code, out, err = run_cli(capsys, "search", str(path), "--storage", f"sqlite:///{tmp_path}/s.db")
    line = assert_one_error_line(code, out, err, ("name",))
    assert fix in line
    assert not (tmp_path / "s.db").exists()
