"""Resuming a study with a ``--backend`` or ``--calibration`` equal to what its spec's default
resolved to is the same problem and is accepted; one that scores or launches otherwise is still
refused, naming the field and the fix (session 39: ``--backend vllm`` on an H100 study whose
``backend: null`` had resolved to vLLM was refused as a changed spec)."""

from __future__ import annotations

import copy

import optuna
import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli
from cost_models.errors import InvalidInputError
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# A dense model in Pope et al.'s vocabulary on H100s: no engine's own rule touches its
# candidates, so backend left out (any GPU engine) and backend vllm leave out the same ones.
DENSE: dict = {
    "name": "dense",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 512, "gen_len": 64},
    "space": {"chips": [1, 2, 4], "batch": [1, 8, 32], "weight_bits": [16, 8]},
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "constraints": {"fits": True},
    "sampler": "random",
    "trials": 10,
}
# The engine and profile an H100 study without backend/calibration resolves to (the chip's
# best-measured engine, as `tuner search` prints it: "calibration h100-sxm-vllm").
H100_DEFAULT_ENGINE, H100_DEFAULT_PROFILE = "vllm", "h100-sxm-vllm"

# An MoE model in the engines' vocabulary: EP 2 at TP 2 x DP 2 is launched by SGLang (any EP
# dividing TP x DP) but not by vLLM (EP 1 or TP x DP), so backend vllm is another problem.
MOE: dict = {
    "name": "moe",
    "model": "qwen3-235b-a22b",
    "hardware": "h200",
    "workload": {"prompt_len": 512, "gen_len": 64},
    "space": {"tp": [2, 4], "ep": [1, 2, 4], "dp": [1, 2], "batch": [16, 64]},
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "constraints": {"fits": True},
    "sampler": "random",
    "trials": 10,
}
H200_DEFAULT_ENGINE = "vllm"


def with_(base: dict, **changes) -> dict:
    data = copy.deepcopy(base)
    data.update(changes)
    return data


def test_backend_equal_to_the_resolved_default_resumes(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    run_search(DENSE, url, trials=10)
    result = run_search(with_(DENSE, backend=H100_DEFAULT_ENGINE), url, trials=20)
    assert result.trials_added == 10
    stored = optuna.load_study(study_name="dense", storage=url).user_attrs["spec"]
    assert stored.get("backend") is None  # the study keeps its own spec


def test_calibration_named_as_the_resolved_profile_resumes_both_ways(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    run_search(DENSE, url, trials=10)
    assert run_search(with_(DENSE, calibration=H100_DEFAULT_PROFILE), url, trials=20).trials_added == 10
    other = with_(DENSE, name="dense-named", calibration=H100_DEFAULT_PROFILE)
    run_search(other, url, trials=10)
    assert run_search(with_(other, calibration="auto"), url, trials=20).trials_added == 10


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"backend": "trtllm"}, "backend"), ({"calibration": "h100-sxm-trtllm"}, "calibration")],
)
def test_an_override_that_scores_otherwise_is_refused(tmp_path, changes, field) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    run_search(DENSE, url, trials=10)
    with pytest.raises(InvalidInputError) as info:
        run_search(with_(DENSE, **changes), url, trials=20)
    message = str(info.value)
    assert f"{field}:" in message and f"drop --{field}" in message and H100_DEFAULT_PROFILE in message


def test_the_resolved_engine_named_on_an_moe_space_it_launches_less_of_is_refused(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    run_search(MOE, url, trials=10)
    with pytest.raises(InvalidInputError) as info:
        run_search(with_(MOE, backend=H200_DEFAULT_ENGINE), url, trials=20)
    assert 'backend: null -> "vllm"' in str(info.value)


def test_cli_search_resumes_with_the_resolved_backend(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    path = tmp_path / "dense.yaml"
    path.write_text(yaml.safe_dump(DENSE), encoding="utf-8")
    code, _, err = run_cli(capsys, "search", str(path), "--storage", url, "--trials", "10")
    assert code == 0, err
    code, out, err = run_cli(
        capsys, "search", str(path), "--storage", url, "--trials", "20", "--backend", H100_DEFAULT_ENGINE
    )
    assert code == 0, err
    assert "holds 20" in out + err
    code, out, err = run_cli(capsys, "search", str(path), "--storage", url, "--trials", "30", "--backend", "sglang")
    line = assert_one_error_line(code, out, err, ("spec",))
    assert 'backend: null -> "sglang"' in line and "drop --backend" in line
