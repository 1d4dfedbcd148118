"""`tuner init`: the commented spec it writes parses, documents every field and searches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli
from cost_models.errors import InvalidInputError
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
    # fp8 only where the chip has fp8 units
    assert ("fp8" in spec.space.weight_bits) == (chip.peak_ops_per_s.fp8 is not None)
    if chip.kind == "gpu":
        # GPUs in the engines' vocabulary: tp inside the NVLink domain (at most 8), pp across
        # domains; no chips, meshes or Pope layouts. A dense model: no ep or dp.
        domain = chip.interconnect.domain_size
        assert spec.space.chips is None and spec.space.mesh == "auto"
        assert "prefill_ffn_layout" not in spec.space.model_fields_set
        assert all(t <= min(domain, 8) and t & (t - 1) == 0 for t in spec.space.tp)
        assert spec.space.ep is None and spec.space.dp is None
        # the largest tp x pp holds the 16-bit weights (Llama 2 70B: 2 x 69e9 bytes)
        assert max(spec.space.tp) * max(spec.space.pp) * chip.memory_bytes >= 2 * 69e9
        return
    network = network_for(chip)
    assert all(network.legal_meshes(n) for n in spec.space.chips)
    if spec.space.mesh != "auto":
        meshes = [parse_mesh(m) for m in spec.space.mesh]
        assert all(m in network.legal_meshes(m[0] * m[1] * m[2]) for m in meshes)
    assert spec.space.tp is None
    # at least one chip count holds the 16-bit weights (140 GB)
    assert max(spec.space.chips) * chip.memory_bytes >= 2 * 69e9


def test_init_gpu_moe_spec_has_expert_and_data_parallel_degrees() -> None:
    # Qwen3-235B-A22B (128 experts) on H200 (8-GPU NVLink node, 143,771 MiB = 150.75 GB each): tp up
    # to 8, two pipeline stages (470 GB of 16-bit weights over 8 x 150.75 GB), ep dividing the 128 experts
    # up to tp x dp = 64, dp up to 8, micro-batches for the pipeline.
    space = load_spec_text(spec_text("qwen3-235b-a22b", "h200")).space
    assert space.tp == [1, 2, 4, 8]
    assert space.pp == [1, 2]
    assert space.ep == [1, 2, 4, 8, 16, 32, 64]
    assert space.dp == [1, 2, 4, 8]
    assert space.micro_batches == [1, 2, 4]
    # Serving: the serving model charges TP, EP and attention DP (not pipelines): tp down to 1, as
    # TP x DP chips hold the weights; it said "tensor parallelism alone" and wrote tp [2, 4, 8] only.
    serving = load_spec_text(spec_text("qwen3-235b-a22b", "h200", serving=True)).space
    assert serving.tp == [1, 2, 4, 8] and serving.pp is None and serving.micro_batches is None
    assert serving.ep == [1, 2, 4, 8, 16, 32, 64] and serving.dp == [1, 2, 4, 8]
    assert load_spec_text(spec_text("llama-3.1-70b", "h200", serving=True)).space.dp is None  # dense: replicas


def test_init_serving_moe_spec_finds_attention_data_parallelism(tmp_path: Path, capsys) -> None:
    """DeepSeek-V3 on one 8-GPU H200 node: the serving spec had tp [8] only, so its front never
    held SGLang's and vLLM's DP-attention deployments; tuner estimate of 256 clients of 2048/256
    under SGLang: TP8 315 tokens/s a GPU at a 101 ms TPOT, TP1 DP8 467 at 67 ms."""
    path = tmp_path / "ds.yaml"
    code, _, err = run_cli(capsys, "init", "--model", "deepseek-v3", "--hardware", "h200", "--serving", "-o", str(path))
    assert code == 0, err
    url = f"sqlite:///{tmp_path / 'ds.db'}"
    code, out, err = run_cli(capsys, "search", str(path), "--trials", "300", "--storage", url, "--json")
    assert code == 0, err
    front = json.loads(out)["front"]
    assert any(row["params"]["dp"] > 1 for row in front)


def test_init_gpu_dense_spec_has_no_expert_degrees() -> None:
    space = load_spec_text(spec_text("llama-3.1-8b", "h200")).space
    assert space.tp == [1, 2, 4, 8] and space.pp == [1, 2]
    assert space.ep is None and space.dp is None


@pytest.mark.parametrize("serving", [False, True])
def test_init_offers_the_checkpoints_own_format_and_the_chips_it_fits(serving: bool) -> None:
    """gpt-oss-120b ships MXFP4 experts (checkpoint_format fp4) and is served on one 80 GB H100
    (OpenAI's model card; vLLM runs the checkpoint as is on Hopper). H100 has no fp4 units, but
    the model runs fp4 weights there (weight-only), as tuner estimate does by default: the spec
    must offer fp4, and TP 1 (65.2 GB: experts at 4.25 bits, the rest 16-bit, < 85.5 GB), not only the 16/8/fp8 formats
    whose narrowest (116.8 GB in fp8) needs 2 chips."""
    space = load_spec_text(spec_text("gpt-oss-120b", "h100-sxm", serving=serving)).space
    assert "fp4" in space.weight_bits
    assert 1 in space.tp


def test_init_proposes_only_tp_sizes_that_divide_the_heads() -> None:
    """gpt2 has 12 heads: TP 8 would be a dimension of trials no GPU engine runs."""
    assert load_spec_text(spec_text("gpt2", "h100-sxm")).space.tp == [1, 2, 4]


@pytest.mark.parametrize(
    ("model", "hardware", "serving"),
    [
        ("qwen3-235b-a22b", "h200", False),
        ("qwen3-235b-a22b", "h200", True),
        ("llama-3.1-8b", "h200", False),
        ("gpt-oss-20b", "b200", False),
        # 671 GB of fp8 weights (DeepSeek-V3's 671B parameters, its checkpoint's format) do not fit
        # one 8-GPU H100 node (8 x 80 GiB x 0.9, the engines' memory share, = 618 GB): under
        # serving, TP x DP must span two nodes (pp is static-only), else no trial fits.
        ("deepseek-v3", "h100-sxm", True),
    ],
)
def test_init_gpu_spec_searches(tmp_path: Path, capsys: pytest.CaptureFixture[str], model, hardware, serving) -> None:
    path = tmp_path / "study.yaml"
    args = ["init", "--model", model, "--hardware", hardware, "-o", str(path), *(["--serving"] if serving else [])]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = run_cli(capsys, "search", str(path), "--trials", "50", "--storage", url, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["trials_added"] == 50
    assert result["front"], "an init spec should have a feasible front"


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


@pytest.mark.parametrize("serving", [False, True])
def test_init_refuses_an_encoder_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str], serving) -> None:
    """It wrote a spec for bert-base that tuner search then refused (a study searches decoders)."""
    out = tmp_path / "bert.yaml"
    args = ["init", "--model", "bert-base", "--hardware", "h100-sxm", "-o", str(out)] + (["--serving"] * serving)
    code, stdout, err = run_cli(capsys, *args)
    assert_one_error_line(code, stdout, err, ("model",))
    assert "encoder" in err
    assert not out.exists()


def test_init_names_a_study_after_the_config_file_not_its_folder(tmp_path: Path) -> None:
    """tuner init --model configs/a.json and --model configs/b.json both wrote the study
    "configs-h100-sxm" (its default file too): the second search of one storage was refused as
    "made from a different spec". Each is named after its file now; a config.json after its
    folder, as a downloaded checkpoint's."""
    folder = tmp_path / "configs"
    folder.mkdir()
    source = Path(__file__).parent.parent / "fixtures" / "hf"
    names = {}
    for stem in ("mistral", "llama"):
        (folder / f"{stem}.json").write_text((source / f"{stem}.json").read_text())
        names[stem] = yaml.safe_load(spec_text(str(folder / f"{stem}.json"), "h100-sxm"))["name"]
    assert names == {"mistral": "mistral-h100-sxm", "llama": "llama-h100-sxm"}
    (tmp_path / "Llama-3.1-8B").mkdir()
    checkpoint = tmp_path / "Llama-3.1-8B" / "config.json"
    checkpoint.write_text((source / "llama.json").read_text())
    assert yaml.safe_load(spec_text(str(checkpoint), "h100-sxm"))["name"] == "Llama-3.1-8B-h100-sxm"


@pytest.mark.parametrize(
    "folder, name",
    [("Mödel-ß", "Model-h100-sxm"), ("Llama 3.1 8B", "Llama-3.1-8B-h100-sxm"), ("模型", "h100-sxm")],
)
def test_init_says_how_it_made_a_study_name_of_a_folder_the_name_cannot_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: str, name: str
) -> None:
    """A checkpoint folder 'Mödel-ß' named its study (and default file) 'M-del---h100-sxm', silently:
    accents are dropped from their letters now, what is left outside a study name's characters
    goes, and a note says which name came of which folder."""
    (tmp_path / folder).mkdir()
    checkpoint = tmp_path / folder / "config.json"
    checkpoint.write_text((Path(__file__).parent.parent / "fixtures" / "hf" / "llama.json").read_text())
    out = tmp_path / "spec.yaml"
    code, printed, err = run_cli(capsys, "init", "--model", str(checkpoint), "--hardware", "h100-sxm", "-o", str(out))
    assert code == 0, err
    assert load_spec(out).name == name
    notes = [line for line in printed.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and f"study name {name!r}" in notes[0] and repr(folder) in notes[0], printed
    code, printed, err = run_cli(
        capsys, "init", "--model", str(checkpoint), "--hardware", "h100-sxm", "-o", str(out), "--force", "--json"
    )
    assert code == 0, err
    assert any(f"study name {name!r}" in note for note in json.loads(printed)["notes"])


def test_init_of_a_catalog_model_has_no_name_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "spec.yaml"
    code, printed, err = run_cli(capsys, "init", "--model", "llama-3-8b", "--hardware", "h100-sxm", "-o", str(out))
    assert code == 0 and "study name" not in printed and "note:" not in printed, printed


def test_init_says_when_no_candidate_of_its_space_meets_the_sla(tmp_path: Path, capsys) -> None:
    """deepseek-v3 on L4s (PCIe only) under the default TPOT of 50 ms: no candidate of the written
    space is feasible, and init said nothing; a search of 1,000 trials found none. The note names
    limits one candidate meets; the spec keeps its own SLA."""
    from search_spaces.space import compile_study, evaluate

    out = tmp_path / "spec.yaml"
    code, printed, err = run_cli(capsys, "init", "--model", "deepseek-v3", "--hardware", "l4", "-o", str(out))
    assert code == 0, err
    notes = [line for line in printed.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "no trial of this space meets its constraints on l4" in notes[0], printed
    written = load_spec(out)
    assert written.constraints.max_tpot_s == 0.05 and written.constraints.max_ttft_s == 1.0

    def feasible(spec: StudySpec) -> int:
        study = compile_study(spec)
        return int(evaluate(study, study.space.all_indices()).feasible.sum())

    assert feasible(written) == 0
    raised = dict(re.findall(r"(max_\w+_s): ([0-9.e-]+)", notes[0]))
    assert raised, notes[0]
    relaxed = written.model_copy(
        update={"constraints": written.constraints.model_copy(update={k: float(v) for k, v in raised.items()})}
    )
    assert feasible(relaxed) > 0


@pytest.mark.parametrize("serving", [False, True])
def test_init_workload_stays_inside_the_models_trained_context(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], serving: bool
) -> None:
    """gpt2 was trained on 1,024 tokens (config.json max_position_embeddings): init wrote a
    1,024-token prompt and 256 generated (2,048 + 256 with --serving), and every command run on the
    spec noted that engines refuse that context (session 39)."""
    spec = tmp_path / "gpt2.yaml"
    code, _, err = run_cli(capsys, "init", "--model", "gpt2", "--hardware", "h100-sxm", "-o", str(spec), *(
        ["--serving"] if serving else []))  # fmt: skip
    assert code == 0, err
    workload = yaml.safe_load(spec.read_text())["workload"]
    assert workload["prompt_len"] + workload["gen_len"] <= 1024 and workload["gen_len"] == 256
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", f"sqlite:///{tmp_path}/g.db", "--trials", "10")
    assert code == 0, err
    assert "trained context" not in out + err


@pytest.mark.parametrize(
    "value, limit",
    [(0.0834, 0.084), (0.15, 0.15), (0.1500001, 0.16), (0.0995, 0.1), (14.2, 15.0), (1e-5 * 3.3, 3.4e-5)],
)
def test_a_suggested_limit_is_met_by_the_latency_it_rounds(value: float, limit: float) -> None:
    """The note's limits are rounded up to two digits: one rounded down (or to a float just under
    the latency) would name a limit its candidate misses."""
    from tuner.init_spec import _at_least

    assert _at_least(value) == limit and _at_least(value) >= value


def test_a_spec_init_cannot_score_leaves_no_file(capsys, tmp_path, monkeypatch) -> None:
    """init scores the space it writes (feasibility_note); where that fails (one line, exit 2),
    no spec is left behind: it was scored after the file was written (session 39)."""
    import tuner.init_spec

    def refuse(text: str) -> None:
        raise InvalidInputError("space", "cannot be scored", "report it")

    monkeypatch.setattr(tuner.init_spec, "feasibility_note", refuse)
    out = tmp_path / "spec.yaml"
    code, printed, err = run_cli(capsys, "init", "--model", "llama-2-7b", "--hardware", "l4", "-o", str(out))
    assert_one_error_line(code, printed, err, ("space",))
    assert not out.exists()


@pytest.mark.parametrize("chip_name", [None, "lab-gpu"])
def test_init_names_a_study_after_a_chip_file_s_chip_not_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], chip_name: str | None
) -> None:
    """--hardware ./my-chip.yaml named the study 'llama-3-8b-.-my-chip.yaml' with a note that
    the name could not hold the path: a chip file's study is named after its chip, the file's
    ``name:`` or else its stem (as get_hardware names it), with no note."""
    template = run_cli(capsys, "hardware", "--template")[1]
    chip = tmp_path / "my-chip.yaml"
    text = template if chip_name is None else template.replace("name: my-chip", f"name: {chip_name}", 1)
    if chip_name is None:  # no name: the file's stem
        text = "\n".join(line for line in text.splitlines() if not line.startswith("name:"))
    chip.write_text(text)
    out = tmp_path / "spec.yaml"
    code, printed, err = run_cli(capsys, "init", "--model", "llama-3-8b", "--hardware", str(chip), "-o", str(out))
    assert code == 0, err
    assert load_spec(out).name == f"llama-3-8b-{chip_name or 'my-chip'}"
    assert "note:" not in printed, printed


def test_init_names_a_study_after_a_model_or_chip_yaml_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tuner init --model files/my-model.yaml --hardware files/my-chip.yaml` named its study
    'files-my-model.yaml-my-chip' (ops40, 2026-12-06: only a .json model path lost its folder and
    suffix). A model YAML file names it by its stem, as a .json file does (docs/models.md: "after
    the file"); a chip file by its chip (above)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "files").mkdir()
    code, template, err = run_cli(capsys, "models", "--template")
    assert code == 0, err
    (tmp_path / "files" / "my-model.yaml").write_text(template)
    code, template, err = run_cli(capsys, "hardware", "--template")
    assert code == 0, err
    (tmp_path / "files" / "my-chip.yaml").write_text(template)
    code, printed, err = run_cli(
        capsys, "init", "--model", "files/my-model.yaml", "--hardware", "files/my-chip.yaml", "--json"
    )
    assert code == 0, err
    assert json.loads(printed)["study"] == "my-model-my-chip"
    assert (tmp_path / "studies" / "my-model-my-chip.yaml").exists()


def test_the_files_init_names_resolve_from_the_specs_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spec reads a relative model or chip path from its own directory (docs/spec-reference.md).
    init wrote the path as typed, relative to where it ran (`model: my-model.yaml` into
    studies/x.yaml), so the spec found its files only when searched from that directory (ops40,
    2026-12-06: `cd / && tuner search /that/studies/x.yaml` said no file at studies/my-model.yaml).
    It writes them relative to the spec's directory now."""
    monkeypatch.chdir(tmp_path)
    code, template, err = run_cli(capsys, "models", "--template")
    assert code == 0, err
    (tmp_path / "my-model.yaml").write_text(template)
    code, template, err = run_cli(capsys, "hardware", "--template")
    assert code == 0, err
    (tmp_path / "my-chip.yaml").write_text(template)
    code, _, err = run_cli(
        capsys, "init", "--model", "my-model.yaml", "--hardware", "my-chip.yaml", "-o", "studies/x.yaml"
    )
    assert code == 0, err
    written = yaml.safe_load((tmp_path / "studies" / "x.yaml").read_text())
    assert (written["model"], written["hardware"]) == ("../my-model.yaml", "../my-chip.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, out, err = run_cli(capsys, "search", str(tmp_path / "studies" / "x.yaml"), "--storage", url, "--trials", "4")
    assert code == 0, err


@pytest.mark.parametrize("option", ["--model", "--hardware"])
def test_init_of_a_file_name_too_long_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    """Naming the study after a file's stem first (ops40) asked the file system about a 300-byte
    name before the model or chip was read: a traceback (ENAMETOOLONG). The model and chip are read
    first again: one line, exit 2."""
    values = {"--model": "llama-3-8b", "--hardware": "h100-sxm", option: "a" * 300 + ".yaml"}
    out = tmp_path / "spec.yaml"
    code, printed, err = run_cli(capsys, "init", *[x for kv in values.items() for x in kv], "-o", str(out))
    assert_one_error_line(code, printed, err, (option.removeprefix("--"),))
    assert not out.exists()
