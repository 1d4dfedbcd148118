"""``tuner export --format vllm|sglang|trtllm --out-dir DIR``: a study trial's launch files, as
``tuner recommend --export`` writes a plan's. Before, a TensorRT-LLM trial's launch line named
``--extra_llm_api_options extra_llm_api_options.yaml`` and no command wrote that file (its text was
a string field of the printed JSON): the line, run as exported, failed for a missing file."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli
from tuner.constraints import is_feasible
from tuner.pareto import load_study
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

STUDY: dict = {
    "name": "out-dir",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"tp": [1, 2]},
    "serving": {"mode": "both", "request_rate": [2.0], "prefill_chips": [1]},
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.ttft_s"}],
    "backend": "trtllm",
    "sampler": "exhaustive",
    "trials": 100,
}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[str, dict[bool, int]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('outdir')}/s.db"
    run_search(json.loads(json.dumps(STUDY)), url)
    # A feasible trial of each mode (export refuses an infeasible one).
    by_mode: dict[bool, int] = {}
    for t in load_study(STUDY["name"], url).get_trials(deepcopy=False):
        if is_feasible(t):
            by_mode.setdefault(bool(t.params["disaggregated"]), t.number)
    assert set(by_mode) == {False, True}
    return url, by_mode


def _options_file_of(launch: Path) -> Path:
    """The file a TensorRT-LLM launch script's --extra_llm_api_options names, where the script
    runs it (its own directory: the script cds there)."""
    lines = launch.read_text().splitlines()
    assert 'cd "$(dirname "$0")"' in lines
    (line,) = [x for x in lines if x.startswith("trtllm-serve")]
    words = shlex.split(line)
    return launch.parent / words[words.index("--extra_llm_api_options") + 1]


def test_a_trtllm_trials_launch_line_finds_its_options_file(capsys, study, tmp_path):
    url, by_mode = study
    out = tmp_path / "agg"
    code, stdout, err = run_cli(
        capsys, "export", STUDY["name"], "--storage", url, "--trial", str(by_mode[False]),
        "--format", "trtllm", "--out-dir", str(out),
    )  # fmt: skip
    assert code == 0, err
    options = _options_file_of(out / "launch.sh")
    assert options.is_file()
    printed = json.loads((out / "engine_args.json").read_text())
    # The options file holds the options the export computed (and the launch line is the export's).
    assert yaml.safe_load(options.read_text()) == printed["extra_llm_api_options"]
    assert printed["cli"] in (out / "launch.sh").read_text()
    assert f"wrote {out / 'launch.sh'}" in stdout


def test_a_disaggregated_trials_pools_and_router_find_their_files(capsys, study, tmp_path):
    url, by_mode = study
    out = tmp_path / "disagg"
    code, _, err = run_cli(
        capsys, "export", STUDY["name"], "--storage", url, "--trial", str(by_mode[True]),
        "--format", "trtllm", "--out-dir", str(out),
    )  # fmt: skip
    assert code == 0, err
    printed = json.loads((out / "engine_args.json").read_text())
    for pool in ("prefill", "decode"):
        options = _options_file_of(out / pool / "launch.sh")
        assert yaml.safe_load(options.read_text()) == printed[pool]["extra_llm_api_options"]
    router = (out / "router.sh").read_text()
    assert "trtllm-serve disaggregated -c disagg_config.yaml" in router
    assert yaml.safe_load((out / "disagg_config.yaml").read_text()) == printed["router"]["disagg_config"]


def test_a_vllm_trials_launch_script(capsys, study, tmp_path):
    url, by_mode = study
    out = tmp_path / "vllm"
    code, _, err = run_cli(
        capsys, "export", STUDY["name"], "--storage", url, "--trial", str(by_mode[False]),
        "--format", "vllm", "--out-dir", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["engine_args.json", "launch.sh"]
    line = [x for x in (out / "launch.sh").read_text().splitlines() if x.startswith("vllm serve")]
    assert line == [json.loads((out / "engine_args.json").read_text())["cli"]]


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (("--format", "json"), "not --format json"),  # a deployment spec has no launch files
        (("--format", "vllm", "-o", "x.json"), "given with -o"),  # one destination
    ],
)
def test_out_dir_refusals(capsys, study, tmp_path, extra, why):
    url, by_mode = study
    args = ("export", STUDY["name"], "--storage", url, "--trial", str(by_mode[False]), "--out-dir", str(tmp_path / "d"))
    line = assert_one_error_line(*run_cli(capsys, *args, *extra), ("--out-dir",))
    assert why in line
    assert not (tmp_path / "d").exists()


def test_a_non_empty_out_dir_needs_force(capsys, study, tmp_path):
    url, by_mode = study
    (tmp_path / "other.txt").write_text("a plan's file")
    args = ("export", STUDY["name"], "--storage", url, "--trial", str(by_mode[False]), "--format", "sglang")
    line = assert_one_error_line(*run_cli(capsys, *args, "--out-dir", str(tmp_path)), ("--out-dir",))
    assert "--force" in line
    code, _, err = run_cli(capsys, *args, "--out-dir", str(tmp_path), "--force")
    assert code == 0, err
    assert (tmp_path / "launch.sh").is_file() and (tmp_path / "other.txt").is_file()


def test_json_prints_the_export_or_the_files_written(capsys, study, tmp_path):
    """export had no --json (its default format is JSON): a script passing --json to every command
    got "No such option '--json'", exit 2. Printed, the export is the JSON object; written, the
    object names the files; YAML printed with --json is refused, not printed as "JSON"."""
    url, by_mode = study
    args = ("export", STUDY["name"], "--storage", url, "--trial", str(by_mode[False]), "--json")
    code, out, err = run_cli(capsys, *args, "--format", "vllm")
    assert code == 0, err
    assert json.loads(out)["engine"] == "vllm"
    code, out, err = run_cli(capsys, *args, "--format", "trtllm", "--out-dir", str(tmp_path / "d"))
    assert code == 0, err
    written = json.loads(out)["written"]
    assert sorted(Path(p).name for p in written) == ["engine_args.json", "extra_llm_api_options.yaml", "launch.sh"]
    assert all(Path(p).is_file() for p in written)
    code, out, err = run_cli(capsys, *args, "--format", "yaml", "-o", str(tmp_path / "t.yaml"))
    assert code == 0, err
    assert json.loads(out)["written"] == [str(tmp_path / "t.yaml")] and (tmp_path / "t.yaml").is_file()
    line = assert_one_error_line(*run_cli(capsys, *args, "--format", "yaml"), ("--json",))
    assert "--format yaml" in line
