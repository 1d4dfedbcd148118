"""Study specs: the shipped ones load and compile, bad ones are refused naming the field, and the
spec hash identifies the content.

Bad specs are written to YAML files and read with ``load_spec`` (what ``tuner search`` does), then
compiled with ``compile_study`` (model, hardware and mesh checks happen there); every problem must
be an ``InvalidInputError`` whose message names the offending field.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cost_models.errors import InvalidInputError
from search_spaces.space import compile_study, evaluate
from search_spaces.spec import METRICS, StudySpec, load_spec, parse_spec, parse_stored_spec

STUDIES = Path(__file__).resolve().parents[2] / "studies"
SHIPPED = sorted(STUDIES.glob("*.yaml"))

BASE: dict = {
    "name": "spec-test",
    "model": "palm-540b",
    "hardware": "tpu-v4",
    "workload": {"prompt_len": 128, "gen_len": 8},
    "space": {"chips": [64], "batch": [1, 64], "decode_ffn_layout": ["ws_1d", "ws_2d"]},
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "sampler": "random",
    "trials": 100,
}


def write_yaml(tmp_path: Path, data: object, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def load_and_compile(path: Path):
    return compile_study(load_spec(path))


def refused(path: Path) -> str:
    """The message of the InvalidInputError that loading and compiling ``path`` raises."""
    with pytest.raises(InvalidInputError) as info:
        load_and_compile(path)
    return str(info.value)


# --- the shipped specs -------------------------------------------------------------------------


def test_the_specs_are_shipped() -> None:
    assert {p.stem for p in SHIPPED} == {
        "palm-540b-tpu-v4",
        "llama-2-70b-h100",
        "llama-3-8b-l4",
        "llama-3.1-70b-h100-serving",
        "qwen3-235b-moe-h200",
        "qwen3-235b-moe-gb200",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_spec_loads_and_compiles(path: Path) -> None:
    spec = load_spec(path)
    assert isinstance(spec, StudySpec)
    assert spec.name == path.stem  # the default storage is studies/<name>.db, next to the spec
    compiled = compile_study(spec)
    assert compiled.space.size > (300 if spec.serving is not None else 1000)
    # The size is the product of the choice counts, and every dimension has a choice.
    product = 1
    for choices in compiled.space.dimensions.values():
        assert len(choices) >= 1
        product *= len(choices)
    assert compiled.space.size == product
    assert all(o.metric in METRICS for o in spec.objectives)
    assert len(compiled.objective_names) == len(compiled.directions) == len(spec.objectives)
    assert compiled.constraint_names[0] == "structurally_valid"


# --- bad specs ---------------------------------------------------------------------------------


def test_valid_base_spec_is_accepted(tmp_path: Path) -> None:
    """The base every bad spec below departs from is itself fine."""
    compiled = load_and_compile(write_yaml(tmp_path, BASE))
    assert compiled.space.dimensions["batch"] == (1, 64)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path / "absent.yaml")
    assert message.startswith("spec")


def test_malformed_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nspace: {chips: [64, batch: [1]\n  objectives: - : -\n", encoding="utf-8")
    message = refused(path)
    assert message.startswith("spec")
    assert "YAML" in message


def test_object_constructing_tag_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.yaml"
    path.write_text(
        f'name: !!python/object/apply:os.system ["touch {marker}"]\nmodel: palm-540b\nhardware: tpu-v4\n',
        encoding="utf-8",
    )
    message = refused(path)
    assert message.startswith("spec")
    assert not marker.exists()
    # The tag alone at the top level, too.
    path.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n', encoding="utf-8")
    refused(path)
    assert not marker.exists()


def test_non_mapping_top_level_is_refused(tmp_path: Path) -> None:
    message = refused(write_yaml(tmp_path, [BASE, BASE]))
    assert "mapping" in message
    with pytest.raises(InvalidInputError, match="mapping"):
        parse_spec("just a string")
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert "mapping" in refused(empty)


def _mutated(change) -> dict:
    data = copy.deepcopy(BASE)
    change(data)
    return data


BAD_SPECS = {
    # id: (change to BASE, text the message must contain: the field)
    "unknown top-level key": (lambda d: d.update(colour="blue"), "colour"),
    "unknown key in space": (lambda d: d["space"].update(tensor_parallel=[8]), "space.tensor_parallel"),
    "empty choice list": (lambda d: d["space"].update(batch=[]), "space.batch"),
    "objective not a metric": (lambda d: d.update(objectives=[{"metric": "decode.speed"}]), "objectives"),
    "duplicate objective": (lambda d: d.update(objectives=[{"metric": "chips"}, {"metric": "chips"}]), "objectives"),
    "no objective": (lambda d: d.update(objectives=[]), "objectives"),
    "negative batch": (lambda d: d["space"].update(batch=[-1]), "space.batch"),
    "zero batch": (lambda d: d["space"].update(batch=[0]), "space.batch"),
    "zero chips": (lambda d: d["space"].update(chips=[0]), "space.chips"),
    "fractional batch": (lambda d: d["space"].update(batch=[1.5]), "space.batch"),
    "repeated batch": (lambda d: d["space"].update(batch=[8, 8]), "space.batch"),
    "huge integer batch": (lambda d: d["space"].update(batch=[10**400]), "space.batch"),
    "huge chips": (lambda d: d["space"].update(chips=[2**40]), "space.chips"),
    "chips with no legal mesh": (lambda d: d["space"].update(chips=[12]), "space.chips"),
    "fp8 weights on tpu-v4": (lambda d: d["space"].update(weight_bits=["fp8"]), "space.weight_bits"),
    "fp8 kv cache on tpu-v4": (lambda d: d["space"].update(kv_bits=["fp8"]), "space.kv_bits"),
    "unknown bits": (lambda d: d["space"].update(weight_bits=[3]), "space.weight_bits"),
    "unknown model": (lambda d: d.update(model="gpt-9"), "model"),
    "unknown hardware": (lambda d: d.update(hardware="tpu-v9"), "hardware"),
    "name with a slash": (lambda d: d.update(name="../evil/x"), "name"),
    "name with a slash only": (lambda d: d.update(name="a/b"), "name"),
    "empty name": (lambda d: d.update(name=""), "name"),
    "kv_heads bogus": (lambda d: d["space"].update(kv_heads=["bogus"]), "space.kv_heads"),
    "kv_heads zero": (lambda d: d["space"].update(kv_heads=[0]), "space.kv_heads"),
    "encoder model": (lambda d: d.update(model="bert-base"), "model"),
    "unknown layout": (lambda d: d["space"].update(decode_ffn_layout=["ws_3d"]), "space.decode_ffn_layout"),
    "illegal mesh": (lambda d: d["space"].update(mesh=["3x3x3"]), "mesh"),
    "unreadable mesh": (lambda d: d["space"].update(mesh=["four"]), "mesh"),
    "bad direction": (lambda d: d.update(objectives=[{"metric": "chips", "direction": "up"}]), "direction"),
    "unknown sampler": (lambda d: d.update(sampler="grid"), "sampler"),
    "zero trials": (lambda d: d.update(trials=0), "trials"),
    "negative slo": (lambda d: d.update(constraints={"max_tpot_s": -0.1}), "constraints.max_tpot_s"),
    "zero prompt": (lambda d: d["workload"].update(prompt_len=0), "workload.prompt_len"),
    "missing workload": (lambda d: d.pop("workload"), "workload"),
    "missing space.batch": (lambda d: d["space"].pop("batch"), "space.batch"),
}


@pytest.mark.parametrize("change,field", list(BAD_SPECS.values()), ids=list(BAD_SPECS))
def test_bad_spec_is_refused_naming_the_field(tmp_path: Path, change, field: str) -> None:
    message = refused(write_yaml(tmp_path, _mutated(change)))
    assert field in message, message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["[1e400]", "[1.0e+400]", "[.inf]", "[-.inf]", "[.nan]"])
def test_huge_or_non_finite_numbers_are_refused(tmp_path: Path, text: str) -> None:
    """YAML 1.1 reads 1e400 as a string and 1.0e+400 as inf: either way not a batch size."""
    data = yaml.safe_dump(_mutated(lambda d: d["space"].pop("batch")), sort_keys=False)
    path = tmp_path / "huge.yaml"
    path.write_text(data.replace("space:\n", f"space:\n  batch: {text}\n", 1), encoding="utf-8")
    message = refused(path)
    assert "batch" in message


@pytest.mark.parametrize("text", ["1e400", "1.0e+400", ".inf", ".nan"])
def test_non_finite_workload_is_refused(tmp_path: Path, text: str) -> None:
    data = yaml.safe_dump(_mutated(lambda d: d["workload"].pop("gen_len")), sort_keys=False)
    path = tmp_path / "huge.yaml"
    path.write_text(data.replace("workload:\n", f"workload:\n  gen_len: {text}\n", 1), encoding="utf-8")
    assert "workload.gen_len" in refused(path)


def test_every_metric_is_accepted_as_an_objective() -> None:
    """Serving metrics need a serving: section (tests/search_spaces/test_serving_spec.py refuses
    them without one)."""
    for metric, entry in METRICS.items():
        serving = {"serving": {"concurrency": [1, 8]}} if entry.needs_serving else {}
        price = {"price_per_chip_hour_usd": 3.22} if entry.needs_price else {}  # a dollar metric needs one
        spec = parse_spec({**copy.deepcopy(BASE), "objectives": [{"metric": metric}], **serving, **price})
        compiled = compile_study(spec)
        assert compiled.objective_names == [metric]
        assert compiled.directions == [entry.direction]


@pytest.mark.parametrize(
    "space,field",
    [
        ({"chips": [64], "mesh": ["4x4x8"], "batch": [1, 16]}, "mesh"),
        ({"chips": [64], "batch": [1, 16], "kv_heads": [7]}, "kv_heads"),
    ],
    ids=["mesh of another chip count", "kv heads dividing no head count"],
)
def test_space_with_no_possible_candidate_is_refused(tmp_path: Path, space: dict, field: str) -> None:
    """compile_study refuses spaces that can hold nothing (its docstring; chips with no legal mesh
    are refused). A mesh list none of whose meshes has a chip count of the space, or KV-head choices
    none of which divides PaLM 540B's 48 heads, leaves no structurally possible candidate: the
    exhaustive sampler would store no trial and every sampled trial would be infeasible."""
    message = refused(write_yaml(tmp_path, _mutated(lambda d: d.update(space=space))))
    assert field in message


# --- the spec hash -----------------------------------------------------------------------------


def test_spec_hash_is_stable_for_the_same_content(tmp_path: Path) -> None:
    first = load_spec(write_yaml(tmp_path, BASE, "a.yaml"))
    second = load_spec(write_yaml(tmp_path, BASE, "b.yaml"))
    assert first.spec_hash == second.spec_hash
    assert first.spec_hash == parse_spec(copy.deepcopy(BASE)).spec_hash
    # Key order and comments in the file do not matter.
    shuffled = dict(reversed(list(BASE.items())))
    text = "# a comment\n" + yaml.safe_dump(shuffled, sort_keys=True)
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    assert load_spec(tmp_path / "c.yaml").spec_hash == first.spec_hash
    assert len(first.spec_hash) == 16
    int(first.spec_hash, 16)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["space"].update(batch=[1, 32]),
        lambda d: d["space"].update(batch=[64, 1]),
        lambda d: d["space"].update(chips=[128]),
        lambda d: d["space"].update(decode_ffn_layout=["ws_1d"]),
        lambda d: d.update(objectives=[{"metric": "decode.step_latency_s"}]),
        lambda d: d["workload"].update(gen_len=9),
        lambda d: d.update(constraints={"max_tpot_s": 0.05}),
    ],
    ids=["batch", "batch order", "chips", "layout", "objectives", "gen_len", "constraints"],
)
def test_spec_hash_changes_with_the_content(change) -> None:
    assert parse_spec(_mutated(change)).spec_hash != parse_spec(copy.deepcopy(BASE)).spec_hash


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).parents[2].joinpath("studies").glob("*.yaml")), ids=lambda p: p.stem
)
def test_a_stored_spec_parses_back_to_the_same_problem(path: Path) -> None:
    """The study stores canonical_json and compact trials re-parse it: it must validate again (a
    tp spec once stored its Pope layout defaults, which the validator refuses beside tp)."""
    spec = load_spec(path)
    stored = json.loads(spec.canonical_json())
    again = parse_spec({**stored, "trials": spec.trials, "sampler": spec.sampler, "seed": spec.seed})
    assert again.spec_hash == spec.spec_hash
    _assert_same_problem(spec, again)


def _assert_same_problem(spec: StudySpec, again: StudySpec) -> None:
    """The same dimensions, and every number of up to 200 of its candidates (spread over the
    space) the same: nothing the compiler resolves is lost in the stored spec."""
    compiled, recompiled = compile_study(spec), compile_study(again)
    assert recompiled.space.dimensions == compiled.space.dimensions
    assert recompiled.fixed_columns == compiled.fixed_columns
    indices = compiled.space.all_indices()
    total = len(next(iter(indices.values())))
    rows = np.unique(np.linspace(0, total - 1, min(total, 200)).astype(np.int64))
    sample = {name: column[rows] for name, column in indices.items()}
    first, second = evaluate(compiled, sample), evaluate(recompiled, sample)
    np.testing.assert_array_equal(second.values, first.values)
    np.testing.assert_array_equal(second.constraints, first.constraints)


# Defaults that depend on tp or on the model (fused attention with tp; a quantized checkpoint's
# stored format). The study once stored the field's plain default (flash_attention [false],
# weight_bits ["16"]), so `show`, `pareto` and `export`, which recompile the stored spec, scored
# another problem than the search had (qwen3-235b-moe-h200: 261 of 300 trials' objectives off by
# up to 3.5%, and a front trial infeasible when read back).
_DEFAULTED = {
    "tp spec, no flash_attention": {"model": "qwen3-235b-a22b", "hardware": "h200", "space": {"tp": [4, 8]}},
    "tp spec, fp8 checkpoint": {"model": "deepseek-v3", "hardware": "h200", "space": {"tp": [8], "pp": [1, 2]}},
    "tp spec, fp4 checkpoint": {"model": "gpt-oss-120b", "hardware": "b200", "space": {"tp": [1, 2]}},
    "mesh spec, fp8 checkpoint": {"model": "deepseek-v3", "hardware": "h200", "space": {"chips": [16]}},
}


@pytest.mark.parametrize("fields", list(_DEFAULTED.values()), ids=list(_DEFAULTED))
def test_defaults_of_the_model_and_vocabulary_are_stored_as_searched(fields: dict) -> None:
    spec = parse_spec({**copy.deepcopy(BASE), **fields, "space": {**fields["space"], "batch": [8]}})
    stored = json.loads(spec.canonical_json())
    again = parse_spec(stored)
    _assert_same_problem(spec, again)
    model = spec.resolved_model()
    expected_bits = {None: "16", "fp8": "fp8", "fp4": "fp4"}[model.checkpoint_format]
    assert stored["space"]["weight_bits"] == [expected_bits]
    assert stored["space"]["flash_attention"] == ["tp" in fields["space"]]


def test_an_explicit_choice_equal_to_the_plain_default_is_another_problem() -> None:
    """flash_attention [false] written in a tp spec is not the fused default: another hash."""
    fields = _DEFAULTED["tp spec, no flash_attention"]
    fused = parse_spec({**copy.deepcopy(BASE), **fields, "space": {**fields["space"], "batch": [8]}})
    unfused = {**fields, "space": {**fields["space"], "batch": [8], "flash_attention": [False]}}
    assert parse_spec({**copy.deepcopy(BASE), **unfused}).spec_hash != fused.spec_hash


def _spec_with_profile_file(tmp_path: Path, profile_text: str) -> Path:
    (tmp_path / "profiles").mkdir(exist_ok=True)
    (tmp_path / "profiles" / "mine.yaml").write_text(profile_text)
    data = {
        **copy.deepcopy(BASE),
        "model": "llama-3-8b",
        "hardware": "h100-sxm",
        "space": {"tp": [1, 2], "batch": [1, 8]},
        "calibration": "profiles/mine.yaml",
    }
    return write_yaml(tmp_path, data)


def test_a_profile_file_is_stored_by_its_numbers(tmp_path: Path, monkeypatch) -> None:
    """As a model or chip from a file: the study resumes wherever the file is (its path is read from
    the spec file's directory), the stored spec scores the same problem without the file, and a
    refit into the same file is another problem (another hash), not a silent mix of two profiles."""
    from cost_models.calibration import load_profile

    text = load_profile("h100-sxm-vllm").to_yaml()
    path = _spec_with_profile_file(tmp_path, text)
    monkeypatch.chdir(tmp_path.parent)  # the profile's path is relative to the spec's directory
    spec = load_spec(path)
    stored, spec_hash = json.loads(spec.canonical_json()), spec.spec_hash
    assert isinstance(stored["calibration"], dict) and stored["calibration"]["chip"] == "h100-sxm"
    (tmp_path / "profiles" / "mine.yaml").unlink()  # the stored spec needs no file
    again = parse_stored_spec(stored)
    assert again.spec_hash == spec_hash
    (tmp_path / "profiles" / "mine.yaml").write_text(text)
    _assert_same_problem(spec, again)
    refit = text.replace("per_step_overhead_s: 0.0", "per_step_overhead_s: 0.001")
    assert refit != text
    assert load_spec(_spec_with_profile_file(tmp_path, refit)).spec_hash != spec_hash


def _gpu_mesh_spec(prefill: list[str], decode: list[str]) -> dict:
    return {
        "name": "gpu-meshes",
        "model": "llama-3-8b",
        "hardware": "h100-sxm",
        "workload": {"prompt_len": 1024, "gen_len": 128},
        "space": {
            "chips": [4],
            "mesh": "auto",
            "batch": [8],
            "prefill_ffn_layout": ["ws_1d"],
            "decode_ffn_layout": ["ws_1d"],
            "prefill_attn_sharding": prefill,
            "decode_attn_sharding": decode,
            "flash_attention": [True],
        },
        "objectives": [{"metric": "decode.latency_s"}],
        "sampler": "exhaustive",
    }


def test_a_gpu_megatron_tp_deployment_is_one_mesh_not_six() -> None:
    """mesh: auto on 4 H100s listed six meshes (1x1x4, 1x2x2, 1x4x1, 2x1x2, 2x2x1, 4x1x1) that
    Megatron TP (ws_1d, heads split) scores alike to the bit: a search stored six copies of one
    deployment, its front six rows of one. The other five are structurally invalid twins of
    1x1x4 (the space keeps its size: stored studies read back as before); batch-sharded
    attention, whose KV split follows the mesh's axes, keeps every mesh."""
    from search_spaces.space import structurally_valid

    compiled = compile_study(parse_spec(_gpu_mesh_spec(["head"], ["head"])))
    indices = compiled.space.all_indices()
    assert compiled.space.size == 6
    valid = structurally_valid(compiled, indices)
    meshes = np.array(compiled.space.dimensions["mesh"])[indices["mesh"]]
    assert list(meshes[valid]) == ["1x1x4"]
    evaluation = evaluate(compiled, indices)
    latency = evaluation.result.decode.latency_s
    assert np.all(latency == latency[0])  # the twins: the same numbers
    mixed = compile_study(parse_spec(_gpu_mesh_spec(["head"], ["head", "batch"])))
    valid = structurally_valid(mixed, mixed.space.all_indices())
    assert mixed.space.size == 12 and int(valid.sum()) == 1 + 6


def test_tp_groups_cut_by_a_node_edge_are_left_out_of_a_search() -> None:
    """A study of PaLM 540B (48 heads) on H100 nodes of 8 with tp [6, 8] x pp [1, 4]: TP 6 x PP 4
    (24 chips, ranks in order: 6-11 and 12-17 span two nodes) was a feasible candidate scored
    as NVLink-only TP groups. It is infeasible now; TP 6 alone (one node) and TP 8 are not."""
    from search_spaces.space import _engine_problems

    data = copy.deepcopy(BASE)
    data.update(hardware="h100-sxm", sampler="exhaustive")
    data["space"] = {"tp": [6, 8], "pp": [1, 4], "batch": [16]}
    compiled = compile_study(parse_spec(data))
    indices = compiled.space.all_indices()
    tp = compiled.space.values["tp"][indices["tp"], 2]
    pp = compiled.space.values["pp"][indices["pp"]]
    bad = _engine_problems(compiled, indices)
    assert sorted(zip(tp.tolist(), pp.tolist(), bad.tolist(), strict=True)) == [
        (6.0, 1.0, False),
        (6.0, 4.0, True),
        (8.0, 1.0, False),
        (8.0, 4.0, False),
    ]


@pytest.mark.parametrize(("model", "refused_dp"), [("llama-3.1-70b", []), ("mixtral-8x7b", [3.0, 5.0])])
def test_dense_replicas_need_a_legal_replica_not_a_legal_total(model: str, refused_dp: list) -> None:
    """tp 4 x dp 3 on H100s (12 GPUs: not whole 8-GPU nodes) was dropped from a study as no legal
    chip count, with no word, while tuner recommend planned "3 x TP4": a dense model's DP ranks
    are replicas that exchange nothing, so each TP 4 replica being legal is enough (dp 5: 20
    GPUs). An MoE model's DP ranks share its expert layers, one instance over all 12 or 20 GPUs:
    those stay refused (not whole nodes)."""
    from search_spaces.space import _engine_problems

    data = copy.deepcopy(BASE)
    data.update(model=model, hardware="h100-sxm", sampler="exhaustive")
    data["space"] = {"tp": [4], "dp": [1, 2, 3, 4, 5], "batch": [60]}
    compiled = compile_study(parse_spec(data))
    indices = compiled.space.all_indices()
    dp = compiled.space.values["dp"][indices["dp"]]
    assert sorted(dp[_engine_problems(compiled, indices)].tolist()) == refused_dp


def test_a_backend_contradicting_the_calibration_names_the_spec_fields(tmp_path: Path) -> None:
    """backend: trtllm beside calibration: h100-sxm-vllm (a profile of vLLM's kernels) was
    refused with estimate's fix, "drop --backend, pass --backend vllm ...", though the study's
    backend is a spec field the user never passed as a flag: the fix names the spec's fields."""
    data = copy.deepcopy(BASE)
    data.update(hardware="h100-sxm", model="llama-3-8b", backend="trtllm", calibration="h100-sxm-vllm")
    data["space"] = {"tp": [1], "batch": [1]}
    message = refused(write_yaml(tmp_path, data))
    assert message.startswith("backend: trtllm conflicts with calibration h100-sxm-vllm")
    assert "set backend: vllm" in message and "calibration: auto" in message
    assert "drop --backend" not in message


def test_a_tp_space_with_no_choice_dividing_the_heads_is_refused(tmp_path: Path) -> None:
    """tp: [3] for llama-3-8b (32 heads): every trial structurally invalid, the exhaustive
    search stored none and the front said "0 of 0 feasible trials (0 in all) ... relax the
    constraints or widen the space", exit 0. Refused naming space.tp and the divisors of 32; a
    list with one valid choice still compiles (its other choices are infeasible trials)."""
    data = copy.deepcopy(BASE)
    data.update(hardware="h100-sxm", model="llama-3-8b")
    data["space"] = {"tp": [3, 6], "batch": [1]}
    message = refused(write_yaml(tmp_path, data))
    assert message.startswith("space.tp: no choice divides the 32 attention heads of llama-3-8b")
    assert message.endswith("use tp among 1, 2, 4, 8, 16, 32")
    data["space"] = {"tp": [2, 3], "batch": [1]}
    assert load_and_compile(write_yaml(tmp_path, data, "mixed.yaml")).space.dimensions["tp"] == (2, 3)


def test_an_ep_space_with_no_choice_dividing_the_experts_is_refused(tmp_path: Path) -> None:
    """ep: [16] for Mixtral-8x7B (8 experts; each EP rank holds whole experts, so EP divides
    them): every candidate structurally invalid, the exhaustive search added 0 trials, exit 0,
    and said "the study holds no trial yet: run tuner search" to the user who just had.
    Refused naming space.ep and the divisors of 8; a list with one valid choice still compiles."""
    data = copy.deepcopy(BASE)
    data.update(hardware="h100-sxm", model="mixtral-8x7b")
    data["space"] = {"tp": [8], "dp": [2], "ep": [16], "batch": [16]}
    message = refused(write_yaml(tmp_path, data))
    assert message.startswith("space.ep: no choice divides the 8 experts of mixtral-8x7b")
    assert message.endswith("use ep among 1, 2, 4, 8")
    data["space"] = {"tp": [8], "dp": [2], "ep": [3], "batch": [16]}
    assert refused(write_yaml(tmp_path, data, "three.yaml")).startswith("space.ep: no choice divides")
    data["space"] = {"tp": [8], "dp": [2], "ep": [8, 16], "batch": [16]}
    assert load_and_compile(write_yaml(tmp_path, data, "mixed.yaml")).space.dimensions["ep"] == (8, 16)


@pytest.mark.parametrize(
    ("backend", "blocks", "bad"),
    [("vllm", [16, 7], "7"), ("vllm", [8], "8"), ("vllm", [32, 48], "48"), ("trtllm", [32, 24], "24")],
)
def test_a_named_backend_refuses_kv_block_sizes_it_cannot_run(
    tmp_path: Path, backend: str, blocks: list[int], bad: str
) -> None:
    """backend: vllm with serving.kv_block_size [7] was searched at 7-token blocks, then every
    front trial exported as --block-size 16 ("rounded up"), not the deployment scored. vLLM's
    attention backends need a multiple of 16 (vllm/v1/attention/backends/flash_attn.py), and
    TensorRT-LLM's tokens_per_block a power of two; SGLang's page size any (kept)."""
    data = copy.deepcopy(BASE)
    data.update(hardware="h100-sxm", model="llama-3-8b", backend=backend)
    data["space"] = {"tp": [1]}
    data["serving"] = {"concurrency": [8], "kv_block_size": blocks}
    data["objectives"] = [{"metric": "serving.tokens_per_s_per_chip"}]
    message = refused(write_yaml(tmp_path, data))
    assert message.startswith(f"serving.kv_block_size: {bad} with backend {backend}")
    data.update(backend="sglang")
    assert load_and_compile(write_yaml(tmp_path, data, "sglang.yaml")).space.dimensions["kv_block_size"] == tuple(
        blocks
    )


def test_an_unreadable_spec_path_names_the_systems_reason(tmp_path: Path) -> None:
    # A 300-character file name used to be "cannot read '...': OSError", hiding why.
    with pytest.raises(InvalidInputError) as info:
        load_spec(tmp_path / ("a" * 300 + ".yaml"))
    assert info.value.field == "spec" and "File name too long" in str(info.value)


@pytest.mark.parametrize(
    "path, value, fix",
    [
        (("constraints", "max_ttft_s"), "1.0", "got '1.0'; write a number without quotes"),
        (("space", "flash_attention"), ["yes"], "got 'yes'; write true or false without quotes"),
        (("seed",), "x", "got 'x'; write a whole number without quotes"),
        (("trials",), 1.5, "got 1.5; write a whole number without quotes"),
    ],
)
def test_a_value_of_the_wrong_type_is_shown_with_the_fix(path, value, fix) -> None:
    # Used to stop at "Input should be a valid number", naming neither what was given nor the fix.
    data = yaml.safe_load((STUDIES / "llama-2-70b-h100.yaml").read_text())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InvalidInputError) as info:
        parse_spec(data)
    assert str(info.value).endswith(fix), str(info.value)


def test_a_named_backend_that_does_not_run_on_the_chip_names_the_spec_field(tmp_path: Path) -> None:
    """backend: trtllm on an MI300X (TensorRT-LLM is CUDA-only) was refused with the commands'
    fix and a calibration clause about TensorRT-LLM's own profile, which no AMD chip has."""
    data = copy.deepcopy(BASE)
    data.update(hardware="mi300x", model="llama-3-8b", backend="trtllm")
    data["space"] = {"tp": [1], "batch": [1]}
    message = refused(write_yaml(tmp_path, data))
    assert message.startswith("backend: trtllm does not run on mi300x")
    assert "set backend: vllm in the spec" in message and "own profile" not in message


@pytest.mark.parametrize(("backend", "kv_bits", "bad"), [("vllm", [16, 4], "4"), ("vllm", ["fp4"], "fp4")])
def test_a_named_backend_refuses_kv_caches_it_has_none_of(
    tmp_path: Path, backend: str, kv_bits: list, bad: str
) -> None:
    """A KV cache the named engine has no dtype for (no engine has an int4 cache; vLLM none in
    fp4) was scored and put on the front, then refused by the export."""
    data = copy.deepcopy(BASE)
    data.update(hardware="h100-sxm", model="llama-3-8b", backend=backend)
    data["space"] = {"tp": [1], "batch": [1], "kv_bits": kv_bits}
    message = refused(write_yaml(tmp_path, data))
    assert message.startswith(f"space.kv_bits: {bad} with backend {backend}")
    data["space"]["kv_bits"] = [16, 8, "fp8"]  # 8 runs as fp8 (the same bytes)
    assert load_and_compile(write_yaml(tmp_path, data, "ok.yaml")).space.dimensions["kv_bits"] == ("16", "8", "fp8")


@pytest.mark.parametrize(("backend", "refused_tp"), [(None, [4.0, 8.0]), ("vllm", [4.0, 8.0]), ("trtllm", [])])
def test_tp_sizes_the_kv_heads_do_not_split_over_are_left_out(backend: str | None, refused_tp: list) -> None:
    """Phi-3-medium's published config (40 heads, 10 KV heads): vLLM and SGLang's
    QKVParallelLinear divides the KV heads over TP or replicates each (divide() asserts), so TP 4
    and 8 fail at load: 10 / 4, 4 / 10, 10 / 8 and 8 / 10 are not whole. A study costing vLLM
    (named, or its profile's engine: h100-sxm-vllm) searched them as feasible; TP 2 (10 / 2 = 5)
    stays."""
    from search_spaces.space import _engine_problems

    data = copy.deepcopy(BASE)
    model = Path(__file__).parent.parent / "fixtures" / "hf" / "phi3_medium.json"
    data.update(hardware="h100-sxm", model=str(model), sampler="exhaustive")
    if backend is not None:
        data.update(backend=backend, calibration="none")
    data["space"] = {"tp": [2, 4, 8], "batch": [16]}
    compiled = compile_study(parse_spec(data))
    indices = compiled.space.all_indices()
    tp = compiled.space.values["tp"][indices["tp"], 2]
    assert sorted(tp[_engine_problems(compiled, indices)].tolist()) == refused_tp


def test_a_dense_prefill_instances_replicas_need_a_legal_replica() -> None:
    """As a decode instance's: a dense model's prefill DP ranks are replicas, so prefill TP 4 x
    prefill DP 3 (12 H100s) is a candidate (each TP 4 legal), not left out as no legal count."""
    from search_spaces.space import _engine_problems

    data = copy.deepcopy(BASE)
    data.update(model="llama-3.1-70b", hardware="h100-sxm", sampler="exhaustive", backend="sglang")
    data["space"] = {"tp": [4], "weight_bits": ["fp8"]}
    data["objectives"] = [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.ttft_s"}]
    data["serving"] = {
        "mode": "disaggregated",
        "request_rate": [4.0],
        "prefill_chips": [4],
        "prefill_dp": [1, 2, 3],
        "prefill_instances": [1],
        "decode_instances": [1],
    }
    compiled = compile_study(parse_spec(data))
    indices = compiled.space.all_indices()
    dp = compiled.space.values["prefill_dp"][indices["prefill_dp"]]
    assert sorted(dp[~_engine_problems(compiled, indices)].tolist()) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "path, value, shown",
    [
        # A union field's first member spoke for it: "space.mesh.literal['auto']: Input should be
        # 'auto'" (as if auto were the only value) and "space.kv_heads.0.int: ... write a whole
        # number" (as if model, mha and mqa were not choices).
        (("space", "mesh"), "2x2x1", "space.mesh: '2x2x1' is one mesh, not a list; write [2x2x1]"),
        (("space", "mesh"), 8, "space.mesh: got 8; write auto or a list of meshes XxYxZ"),
        (("space", "mesh"), ["2x2x1", 4], "space.mesh: got 4; write each mesh as XxYxZ"),
        (("space", "kv_heads"), ["gqa"], "space.kv_heads: got 'gqa'; write model, mha, mqa or a KV head count"),
        (("space", "kv_heads"), [True], "space.kv_heads: got True; write model, mha, mqa or a KV head count"),
        # One value where a list goes named no fix ("Input should be a valid list").
        (("space", "flash_attention"), True, "space.flash_attention: Input should be a valid list; got True; "
         "write a list in brackets, e.g. [true]"),
        (("space", "batch"), 4, "space.batch: Input should be a valid list; got 4; write a list in brackets, e.g. [4]"),
    ],
)  # fmt: skip
def test_a_field_of_several_forms_names_every_form_and_the_fix(path, value, shown) -> None:
    data = yaml.safe_load((STUDIES / "llama-3-8b-l4.yaml").read_text())
    data[path[0]][path[1]] = value
    with pytest.raises(InvalidInputError) as info:
        parse_spec(data)
    assert shown in str(info.value) and "literal[" not in str(info.value) and ".int" not in str(info.value)


@pytest.mark.parametrize(
    "path, written, meant",
    [
        (("workload",), "promt_len", "prompt_len"),
        ((), "modle", "model"),
        ((), "hardwear", "hardware"),
    ],
)
def test_a_misspelt_required_field_is_named_as_written(path, written, meant) -> None:
    """A required key misspelt was reported as the right key missing ("workload.prompt_len:
    missing; add it"), not as the key the file holds."""
    data = yaml.safe_load((STUDIES / "llama-3-8b-l4.yaml").read_text())
    where = data
    for key in path:
        where = where[key]
    where[written] = where.pop(meant)
    with pytest.raises(InvalidInputError) as info:
        parse_spec(data)
    dotted = ".".join((*path, written))
    assert str(info.value).endswith(f"{dotted}: unknown field; did you mean {meant}? rename it"), str(info.value)
