"""A GPU study that names no ``backend`` keeps only configurations some GPU serving engine
launches (search_spaces.space._no_gpu_engine_launches): an unnamed backend means "any GPU
engine", so every front member exports to vLLM, SGLang or TensorRT-LLM. Before, a Llama 3.1 70B
study on H200 with an int4 KV cache among its choices put int4 on every front row (6 of 6 here;
5 of 6 in this morning's user test), which all three engines' exports refuse: no engine has an
int4 KV cache (vLLM ``--kv-cache-dtype`` auto/fp8; SGLang auto/fp8_e4m3/fp4_e2m1; TensorRT-LLM
auto/fp8/nvfp4: cost_models.deployments.ENGINE_KV_CACHE_DTYPES). Each study is searched into an
SQLite file under ``tmp_path`` and its stored trials are read back.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from cli_helpers import run_cli
from tuner.pareto import load_study, study_front
from tuner.storage import open_storage
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

ENGINES = ("vllm", "sglang", "trtllm")

L70_FORMATS: dict = {
    "name": "l70-formats",
    "model": "llama-3.1-70b",
    "hardware": "h200",
    "workload": {"prompt_len": 1024, "gen_len": 256},
    "space": {"tp": [2, 4, 8], "batch": [1, 16, 64, 128], "weight_bits": [16, "fp8", 4], "kv_bits": [16, "fp8", 4]},
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "constraints": {"fits": True},
    "sampler": "random",
    "seed": 0,
    "trials": 60,
}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/s.db"


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    constraints = [v for k, v in trial.system_attrs.items() if k.startswith("constraints:")]
    assert constraints
    return all(v <= 0 for v in constraints)


def exports(capsys, name: str, url: str, trial: int, engine: str) -> bool:
    code, _, err = run_cli(capsys, "export", name, "--storage", url, "--trial", str(trial), "--format", engine)
    assert code in (0, 2), err
    return code == 0


def test_gpu_study_without_backend_fronts_only_launchable_kv_formats(url: str, capsys) -> None:
    # TPE, which stores what cannot exist as infeasible trials: since 2026-12-06 the random
    # sampler draws none of them (tests/tuner/test_random_valid_draws.py).
    run_search(L70_FORMATS, url, sampler="tpe")
    trials = load_study("l70-formats", url).get_trials(deepcopy=False)
    int4 = [t for t in trials if t.params["kv_bits"] == "4"]
    others = [t for t in trials if t.params["kv_bits"] != "4"]
    assert int4 and others  # TPE drew both
    for trial in int4:  # no GPU engine has an int4 KV cache: stored, but never feasible
        assert trial.system_attrs["constraints:structurally_valid"] > 0
        assert not feasible(trial)
    assert all(t.system_attrs["constraints:structurally_valid"] <= 0 for t in others)
    front = study_front(load_study("l70-formats", url))
    assert front.trials
    assert {t.params["kv_bits"] for t in front.trials} <= {"16", "fp8"}
    for trial in front.trials:  # every front member exports to each engine (16-bit and fp8 caches)
        assert all(exports(capsys, "l70-formats", url, trial.number, engine) for engine in ENGINES)


def test_fp4_kv_stays_where_an_engine_runs_it(url: str, capsys) -> None:
    """fp4 KV: SGLang (fp4_e2m1) and TensorRT-LLM (nvfp4) run it, vLLM does not: feasible, and its
    front members export to an engine that has it, not to vLLM."""
    spec = {**L70_FORMATS, "name": "l70-fp4", "space": {**L70_FORMATS["space"], "kv_bits": ["fp4"]}, "trials": 12}
    run_search(spec, url)
    trials = load_study("l70-fp4", url).get_trials(deepcopy=False)
    assert all(t.system_attrs["constraints:structurally_valid"] <= 0 for t in trials)
    front = study_front(load_study("l70-fp4", url))
    assert front.trials
    trial = front.trials[0].number
    assert exports(capsys, "l70-fp4", url, trial, "trtllm")
    assert not exports(capsys, "l70-fp4", url, trial, "vllm")


def test_pope_mesh_vocabulary_on_a_gpu_refuses_int4_kv_too(url: str) -> None:
    """Pope et al.'s meshes on a GPU export to the engines as TP within a node (tuner.export):
    the same KV-cache rule."""
    spec = {
        **L70_FORMATS,
        "name": "l70-mesh",
        "space": {"chips": [8], "mesh": "auto", "batch": [16, 64], "decode_ffn_layout": ["ws_1d", "ws_2d"]}
        | {"kv_bits": [16, 4]},
        "trials": 30,
    }
    run_search(spec, url, sampler="tpe")  # TPE stores them (the random sampler draws none)
    trials = load_study("l70-mesh", url).get_trials(deepcopy=False)
    int4 = [t for t in trials if t.params["kv_bits"] == "4"]
    assert int4
    assert all(t.system_attrs["constraints:structurally_valid"] > 0 for t in int4)
    assert all(not feasible(t) for t in int4)


def test_a_tpu_study_keeps_int4_kv(tmp_path: Path) -> None:
    """On a TPU the deployment is the JAX export, which has no KV-format rule: int4 stays."""
    url = f"sqlite:///{tmp_path}/tpu.db"
    open_storage(url).engine.dispose()
    spec = {
        "name": "palm-int4-kv",
        "model": "palm-540b",
        "hardware": "tpu-v4",
        "workload": {"prompt_len": 128, "gen_len": 8},
        "space": {"chips": [64], "batch": [1, 64], "kv_bits": [16, 4]},
        "objectives": L70_FORMATS["objectives"],
        "sampler": "random",
        "seed": 0,
        "trials": 20,
    }
    run_search(spec, url)
    trials = load_study("palm-int4-kv", url).get_trials(deepcopy=False)
    assert any(t.params["kv_bits"] == "4" for t in trials)
    assert all(t.system_attrs["constraints:structurally_valid"] <= 0 for t in trials)


def test_backend_jax_on_a_gpu_keeps_int4_kv(url: str) -> None:
    """Naming backend: jax keeps the what-if (the JAX export has no KV-format rule)."""
    spec = {**L70_FORMATS, "name": "l70-jax", "backend": "jax", "trials": 30}
    run_search(spec, url)
    trials = load_study("l70-jax", url).get_trials(deepcopy=False)
    assert any(t.params["kv_bits"] == "4" for t in trials)
    assert all(t.system_attrs["constraints:structurally_valid"] <= 0 for t in trials)
