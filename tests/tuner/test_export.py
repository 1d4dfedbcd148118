"""tuner.export: deployment specs of stored trials, and their json, yaml, jax and vllm renderings.

Expected values are worked out by hand from the catalog shapes (Llama 2 70B: 64 heads, 8 KV heads,
d_model 8192, d_ff 28672, vocab 32000; PaLM 540B: 48 heads, 1 KV head) and the layouts of Pope et
al. (ws_1d: F over xyz; ws_2d: E over x, F over yz; wg_xyz: stored as ws_2d, gathered over xyz).
"""

from __future__ import annotations

import json

import optuna
import pytest
import yaml

from cost_models.errors import InvalidInputError
from tuner.export import FORMATS, deployment_spec, export
from tuner.pareto import load_study, study_front
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

OBJECTIVES = [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}]
GPU_SPEC = {
    "name": "exp",
    "model": "llama-2-70b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"chips": [8, 16], "batch": [8, 64], "decode_ffn_layout": ["ws_1d", "ws_2d"], "weight_bits": ["16", "8"]},
    "objectives": OBJECTIVES,
    "sampler": "exhaustive",
}
TPU_SPEC = {
    "name": "tpu",
    "model": "palm-540b",
    "hardware": "tpu-v4",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"chips": [64], "batch": [64], "prefill_ffn_layout": ["ws_2d", "wg_xyz"]},
    "objectives": [{"metric": "prefill.latency_s"}, {"metric": "decode.step_latency_s"}],
    "sampler": "exhaustive",
}
# chips 1: Llama 2 70B's ~69e9 parameters in 16 bits (~138 GB) cannot fit one 80 GB H100.
# kv_heads mqa: a what-if attention type (1 KV head instead of 8).
SMALL_SPEC = {
    "name": "small",
    "model": "llama-2-70b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"chips": [1, 8], "mesh": ["1x1x1", "1x1x8"], "batch": [8], "kv_heads": ["model", "mqa"]},
    "objectives": OBJECTIVES,
    "sampler": "exhaustive",
}
AXES = {"x", "y", "z"}


def _study(spec: dict, directory) -> optuna.Study:
    url = f"sqlite:///{directory}/{spec['name']}.db"
    run_search(spec, url)
    return load_study(spec["name"], url)


@pytest.fixture(scope="module")
def gpu(tmp_path_factory) -> optuna.Study:
    return _study(GPU_SPEC, tmp_path_factory.mktemp("gpu"))


@pytest.fixture(scope="module")
def tpu(tmp_path_factory) -> optuna.Study:
    return _study(TPU_SPEC, tmp_path_factory.mktemp("tpu"))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> optuna.Study:
    return _study(SMALL_SPEC, tmp_path_factory.mktemp("small"))


def _chips(trial) -> int:
    """Chips of a trial: the product of its mesh's axes (the mesh carries the chip count)."""
    x, y, z = (int(a) for a in trial.params["mesh"].split("x"))
    return x * y * z


def _trial(study: optuna.Study, **params) -> int:
    """Number of the one trial with these parameters (chips: those of its mesh)."""
    found = [
        t.number
        for t in study.get_trials()
        if all(({"chips": _chips(t)} | t.params)[k] == v for k, v in params.items())
    ]
    assert len(found) == 1, (params, found)
    return found[0]


def _front_trial(study: optuna.Study) -> int:
    return study_front(study).trials[0].number


def _raises(field: str, call, *args, **kwargs) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        call(*args, **kwargs)
    assert info.value.field == field
    return info.value


# --- json and yaml: the canonical spec ------------------------------------------------------


def test_json_round_trips_with_every_section(gpu):
    number = _front_trial(gpu)
    trial = gpu.trials[number]
    data = json.loads(export(gpu, number, "json"))
    assert data == deployment_spec(gpu, number)
    assert set(data) >= {
        "model",
        "hardware",
        "chips",
        "mesh",
        "batch",
        "workload",
        "quantization",
        "phases",
        "predicted",
        "provenance",
    }
    model = data["model"]
    assert (
        model["name"],
        model["layers"],
        model["d_model"],
        model["heads"],
        model["kv_heads"],
        model["d_head"],
        model["d_ff"],
        model["ffn"],
        model["block"],
        model["vocab"],
    ) == ("llama-2-70b", 80, 8192, 64, 8, 128, 28672, "swiglu", "serial", 32000)
    assert data["hardware"]["name"] == "h100-sxm" and data["hardware"]["kind"] == "gpu"
    assert data["chips"] == _chips(trial)
    mesh = data["mesh"]
    assert f"{mesh['x']}x{mesh['y']}x{mesh['z']}" == trial.params["mesh"]
    assert mesh["x"] * mesh["y"] * mesh["z"] == data["chips"]
    assert data["batch"] == trial.params["batch"]
    assert data["workload"] == {"prompt_len": 1024, "gen_len": 128}
    assert data["quantization"] == {
        "weights": {"16": "bf16", "8": "int8"}[trial.params["weight_bits"]],
        "kv_cache": "bf16",
        "activations": "bf16",
    }
    assert set(data["phases"]) == {"prefill", "decode"}
    for phase in data["phases"].values():
        assert set(phase["weights"]) == {"wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down", "embedding", "lm_head"}
        assert phase["weights"]["wq"]["shape"] == [8192, 64, 128]
        assert phase["weights"]["wk"]["shape"] == [8192, 8, 128]
        assert phase["weights"]["w_down"]["shape"] == [28672, 8192]
        assert phase["weights"]["embedding"]["shape"] == [32000, 8192]
        assert phase["kv_cache"]["shape"] == [80, data["batch"], 1152, 8, 128]
    assert data["phases"]["decode"]["ffn_layout"] == trial.params["decode_ffn_layout"]
    assert data["predicted"]["decode"]["step_latency_s"] == trial.values[0]
    assert set(data["predicted"]) == {"prefill", "decode", "memory"}
    provenance = data["provenance"]
    assert provenance["study"] == "exp" and provenance["trial"] == number
    assert provenance["spec_hash"] == gpu.user_attrs["spec_hash"]
    assert [o["name"] for o in provenance["objectives"]] == ["decode.step_latency_s", "decode.cost_chip_s_per_token"]
    assert [o["value"] for o in provenance["objectives"]] == list(trial.values)


def test_yaml_equals_json(gpu, tpu):
    for study in (gpu, tpu):
        number = _front_trial(study)
        assert yaml.safe_load(export(study, number, "yaml")) == json.loads(export(study, number, "json"))


def test_ws_1d_and_ws_2d_shardings_by_hand(gpu):
    number = _trial(gpu, chips=8, mesh="1x1x8", batch=8, decode_ffn_layout="ws_1d", weight_bits="16")
    phases = deployment_spec(gpu, number)["phases"]
    decode, prefill = phases["decode"]["weights"], phases["prefill"]["weights"]
    # ws_1d: E replicated, F and heads over xyz (8 divides 28672, 64 and 8).
    assert decode["w_up"]["sharding"] == [[], ["x", "y", "z"]]
    assert decode["w_down"]["sharding"] == [["x", "y", "z"], []]
    assert decode["wq"]["sharding"] == [[], ["x", "y", "z"], []]
    assert decode["wk"]["sharding"] == [[], ["x", "y", "z"], []]
    # ws_2d (the default prefill layout): E over x, F over yz.
    assert prefill["w_gate"]["sharding"] == [["x"], ["y", "z"]]
    assert prefill["wo"]["sharding"] == [["y", "z"], [], ["x"]]
    # 8 KV heads on 8 chips: one each.
    kv = phases["decode"]["kv_cache"]
    assert kv["shards"] == 8 and kv["replicated_over"] == []
    assert phases["decode"]["activations"]["batch_axes"] == []


def test_kv_heads_split_up_to_their_count(gpu):
    number = _trial(gpu, chips=16, mesh="2x2x4", batch=64, decode_ffn_layout="ws_2d", weight_bits="8")
    spec = deployment_spec(gpu, number)
    decode = spec["phases"]["decode"]
    # wk's 8 KV heads over yz = 2 x 4 = 8 ways.
    assert decode["weights"]["wk"]["sharding"] == [["x"], ["y", "z"], []]
    # The cache's 8 KV heads over 16 chips: x (2) and z (4) give 8; y (2) replicates it.
    kv = decode["kv_cache"]
    assert kv["sharding"] == [[], [], [], ["x", "z"], []]
    assert kv["shards"] == 8 and kv["replicated_over"] == ["y"]
    assert spec["quantization"]["weights"] == "int8"


# --- jax ------------------------------------------------------------------------------------


def _specs(phase: dict) -> list[list]:
    specs = [w[key] for w in phase["weights"].values() for key in ("stored", "in_use")]
    return specs + [phase["kv_cache"]["spec"], phase["activations"]["spec"]]


def _axes_of(spec: list) -> list[str]:
    named = []
    for entry in spec:
        if entry is None:
            continue
        named += [entry] if isinstance(entry, str) else list(entry)
    return named


@pytest.mark.parametrize("which", ["gpu", "tpu"])
def test_jax_mesh_and_partition_specs(which, request):
    study = request.getfixturevalue(which)
    for trial in study_front(study).trials:
        data = json.loads(export(study, trial.number, "jax"))
        x, y, z = data["mesh_shape"]
        assert x * y * z == _chips(trial)
        assert data["axis_names"] == ["x", "y", "z"]
        for phase in data["phases"].values():
            for spec in _specs(phase):
                axes = _axes_of(spec)
                assert set(axes) <= AXES
                assert len(axes) == len(set(axes)), spec
        assert any("all-gather" in note for note in data["notes"])


def test_jax_ws_2d_and_weight_gathered(tpu):
    number = _trial(tpu, mesh="4x4x4", prefill_ffn_layout="wg_xyz")
    data = json.loads(export(tpu, number, "jax"))
    assert data["mesh_shape"] == [4, 4, 4]
    prefill, decode = data["phases"]["prefill"], data["phases"]["decode"]
    # wg_xyz: stored E over x, F over yz; all-gathered over xyz before use.
    assert prefill["gather_axes"] == ["x", "y", "z"]
    assert prefill["weights"]["w_up"]["stored"] == ["x", ["y", "z"]]
    assert prefill["weights"]["w_up"]["in_use"] == [None, None]
    # ... and activations split by batch (64) over xyz.
    assert prefill["activations"]["spec"] == [["x", "y", "z"], None, None]
    # ws_2d decode: in use as stored.
    assert decode["weights"]["w_up"]["stored"] == decode["weights"]["w_up"]["in_use"] == ["x", ["y", "z"]]
    # PaLM is multiquery: its one KV head is replicated on every chip.
    assert decode["weights"]["wk"]["stored"] == ["x", None, None]
    assert decode["kv_cache"]["spec"] == [None, None, None, None, None]


# --- vllm -----------------------------------------------------------------------------------


def test_vllm_within_a_node(gpu):
    number = _trial(gpu, chips=8, mesh="1x1x8", batch=64, decode_ffn_layout="ws_1d", weight_bits="16")
    data = json.loads(export(gpu, number, "vllm"))
    args = data["engine_args"]
    assert args["model"] == "meta-llama/Llama-2-70b-hf"
    assert (args["tensor_parallel_size"], args["pipeline_parallel_size"]) == (8, 1)
    assert args["max_num_seqs"] == 64 and args["max_model_len"] == 1024 + 128
    assert args["quantization"] is None and args["kv_cache_dtype"] == "auto"
    assert "--tensor-parallel-size 8" in data["cli"]


def test_vllm_across_nodes_is_approximate(gpu):
    number = _trial(gpu, chips=16, mesh="2x2x4", batch=8, decode_ffn_layout="ws_2d", weight_bits="8")
    data = json.loads(export(gpu, number, "vllm"))
    args = data["engine_args"]
    # 8 H100s per NVLink node: tensor parallel within it, two pipeline stages.
    assert (args["tensor_parallel_size"], args["pipeline_parallel_size"]) == (8, 2)
    assert args["max_num_seqs"] == 8
    assert any("approximate" in note for note in data["notes"])
    assert any("pre-quantized" in note for note in data["notes"])


def test_vllm_covers_every_front_trial(gpu):
    for trial in study_front(gpu).trials:
        args = json.loads(export(gpu, trial.number, "vllm"))["engine_args"]
        assert args["tensor_parallel_size"] * args["pipeline_parallel_size"] == _chips(trial)
        assert args["max_num_seqs"] == trial.params["batch"]


def test_vllm_refuses_tpu(tpu):
    error = _raises("format", export, tpu, _front_trial(tpu), "vllm")
    assert "tpu" in str(error).lower()


def test_vllm_refuses_an_attention_what_if(small):
    number = _trial(small, chips=8, kv_heads=1)
    assert deployment_spec(small, number)["model"]["kv_heads"] == 1
    _raises("format", export, small, number, "vllm")
    json.loads(export(small, number, "jax"))  # other formats express it


def test_unknown_format(gpu):
    _raises("format", export, gpu, _front_trial(gpu), "toml")
    assert FORMATS == ("json", "yaml", "jax", "vllm", "sglang", "trtllm")


# --- which trials -----------------------------------------------------------------------------


def test_missing_trial(gpu):
    count = len(gpu.trials)
    for number in (count, 10**6, -1):
        error = _raises("trial", deployment_spec, gpu, number)
        assert f"0 to {count - 1}" in str(error)
    _raises("trial", export, gpu, count, "json")


def test_infeasible_trial(small):
    number = _trial(small, chips=1, kv_heads=8)
    error = _raises("trial", export, small, number, "json")
    assert "fits_in_memory" in str(error)
    # The fix names the flag that allows it (it said "allow infeasible trials explicitly").
    assert "--allow-infeasible" in str(error) and "tuner pareto" in str(error)
    spec = deployment_spec(small, number, allow_infeasible=True)
    assert spec["provenance"]["feasible"] is False
    assert spec["provenance"]["constraints"]["fits_in_memory"] > 0


def test_unfinished_trial(tmp_path):
    spec = {**SMALL_SPEC, "name": "unfinished", "space": {"chips": [8], "mesh": ["1x1x8"], "batch": [8]}}
    study = _study(spec, tmp_path)
    running = study.ask()
    error = _raises("trial", deployment_spec, study, running.number)
    assert "RUNNING" in str(error)


def test_structurally_invalid_trial_is_refused_even_when_allowed(tmp_path):
    # Llama-2-70B has 64 heads: 7 KV heads cannot exist.
    spec = {
        **GPU_SPEC,
        "name": "random",
        "sampler": "tpe",  # TPE stores it as an infeasible trial (random and NSGA-II draw none since 2026-12-06)
        "trials": 50,
        "space": {**GPU_SPEC["space"], "kv_heads": ["model", 7]},
    }
    study = _study(spec, tmp_path)
    invalid = [t.number for t in study.trials if t.system_attrs["constraints:structurally_valid"] > 0]
    assert invalid  # TPE draws the impossible head count
    _raises("trial", deployment_spec, study, invalid[0], allow_infeasible=True)


def test_a_static_trial_near_full_memory_gets_the_memory_it_needs(tmp_path) -> None:
    """A static study fits a trial against all of HBM; the engines reserve less by default (vLLM
    0.9, SGLang 0.88). Llama 2 70B in 16 bits on 2 H100s at batch 32 needs ~93% of each GPU: the
    export raises vLLM's fraction to hold it (and says so); at batch 8 (~84%) it keeps the default.
    SGLang's fraction holds weights and KV cache only (~88%, activations run outside it) and
    TensorRT-LLM's is a share of what weights and activations leave (the KV cache needs ~49% of
    it): both keep their defaults."""
    spec = {
        "name": "mem",
        "model": "llama-2-70b",
        "hardware": "h100-sxm",
        "workload": {"prompt_len": 1024, "gen_len": 128},
        "space": {"chips": [2], "mesh": ["1x1x2"], "batch": [8, 32], "decode_ffn_layout": ["ws_1d"]},
        "objectives": OBJECTIVES,
        "sampler": "exhaustive",
    }
    study = _study(spec, tmp_path)
    by_batch = {t.params["batch"]: t.number for t in study.get_trials()}
    full = json.loads(export(study, by_batch[32], "vllm"))
    memory = json.loads(export(study, by_batch[32], "json"))["predicted"]["memory"]
    share = memory["total_bytes_per_chip"] / memory["capacity_bytes_per_chip"]
    assert 0.9 < share < 0.95
    assert share < full["engine_args"]["gpu_memory_utilization"] <= share + 0.02
    assert any("memory fraction raised" in note for note in full["notes"])
    static_share = (memory["weights_bytes_per_chip"] + memory["kv_cache_bytes_per_chip"]) / memory[
        "capacity_bytes_per_chip"
    ]
    assert static_share <= 0.88
    assert json.loads(export(study, by_batch[32], "sglang"))["engine_args"]["mem_fraction_static"] == 0.88
    trtllm = json.loads(export(study, by_batch[32], "trtllm"))
    assert trtllm["extra_llm_api_options"]["kv_cache_config"]["free_gpu_memory_fraction"] == 0.9
    assert json.loads(export(study, by_batch[8], "vllm"))["engine_args"]["gpu_memory_utilization"] == 0.9


def test_cli_export_refuses_an_existing_file_without_force(tmp_path, capsys):
    """As tuner init: -o onto an existing file is one line naming --force, the file untouched."""
    from cli_helpers import assert_one_error_line, run_cli

    spec = {**SMALL_SPEC, "name": "force", "space": {"chips": [8], "mesh": ["1x1x8"], "batch": [8]}}
    study = _study(spec, tmp_path)
    url, out = f"sqlite:///{tmp_path}/force.db", tmp_path / "deploy.yaml"
    args = ("export", "force", "--storage", url, "--trial", str(study.best_trials[0].number), "--format", "yaml")
    code, stdout, err = run_cli(capsys, *args, "-o", str(out))
    assert code == 0, err
    written = out.read_text()
    assert yaml.safe_load(written)["provenance"]["study"] == "force"
    out.write_text("keep me\n")
    line = assert_one_error_line(*run_cli(capsys, *args, "-o", str(out)), fields=("--force",))
    assert str(out) in line
    assert out.read_text() == "keep me\n"
    code, stdout, err = run_cli(capsys, *args, "-o", str(out), "--force")
    assert code == 0, err
    assert out.read_text() == written
    # --force without -o has nothing to overwrite: refused, not ignored.
    assert_one_error_line(*run_cli(capsys, *args, "--force"), fields=("--force",))


def test_online_fp8_that_loads_more_16_bit_weights_than_a_gpu_holds_is_said(tmp_path) -> None:
    """``--quantization fp8`` on a 16-bit checkpoint loads the whole model in 16 bits before it
    quantizes (SGLang; vLLM before its streaming online quantization: docs.vllm.ai, FP8, "you need
    enough memory to load the whole model"). Llama 3.1 70B has 70.6e9 parameters (its model card):
    ~141 GB in 16 bits on one 80 GB H100, where its fp8 trial (~71 GB) fits; on two, ~71 GB each
    loads. The export said only that fp8 quantizes at load."""
    spec = {
        "name": "fp8load",
        "model": "llama-3.1-70b",
        "hardware": "h100-sxm",
        "workload": {"prompt_len": 1024, "gen_len": 128},
        "space": {"tp": [1, 2], "batch": [1], "weight_bits": ["fp8"]},
        "objectives": OBJECTIVES,
        "sampler": "exhaustive",
    }
    study = _study(spec, tmp_path)
    by_tp = {t.params["tp"]: t.number for t in study.trials}
    for fmt in ("vllm", "sglang"):
        one = json.loads(export(study, by_tp[1], fmt))
        assert "--quantization fp8" in one["cli"]
        assert any("only after loading it whole" in note and "serve an fp8 checkpoint" in note for note in one["notes"])
        two = json.loads(export(study, by_tp[2], fmt))
        assert not any("only after loading it whole" in note for note in two["notes"])


def test_an_infeasible_trial_says_how_far_over_its_limit_it_is(tmp_path):
    """A TPOT limit of 1 us missed by 19.2 ms read "max_tpot_s (0.0192 > 0)": the constraint's
    value (the metric minus the limit) shown as if the limit were 0."""
    spec = dict(SMALL_SPEC, name="over", constraints={"max_tpot_s": 1e-6})
    spec["space"] = {"chips": [8], "mesh": ["1x1x8"], "batch": [8]}
    study = _study(spec, tmp_path)
    error = _raises("trial", export, study, 0, "json")
    over = study.trials[0].constraints["max_tpot_s"]
    assert f"max_tpot_s (over the limit by {over:.3g} s)" in str(error) and "> 0" not in str(error)
