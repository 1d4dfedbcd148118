"""Hostile input: whatever a user (or an attacker) feeds the tuner, it answers with a result or one
``InvalidInputError`` (in the CLI: exit 2 and one ``error:`` line), never another exception, a
traceback, non-standard JSON, executed YAML tags, a hang, or a half-created study.

Property tests (hypothesis) mutate the shipped study specs, spec YAML text, Hugging Face
``config.json`` files and CLI arguments; a few deterministic tests pin the reproductions of
problems found that way.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cost_models.errors import InvalidInputError
from cost_models.hardware import hardware_catalog
from cost_models.hf_config import model_from_hf_config
from cost_models.models import ModelSpec, model_catalog
from search_spaces.space import compile_study, evaluate
from search_spaces.spec import METRICS, StudySpec, load_spec, parse_spec
from tuner.cli import main

ROOT = Path(__file__).resolve().parents[2]
STUDY_FILES = {path.stem: path for path in sorted((ROOT / "studies").glob("*.yaml"))}
BASE_SPECS = {name: yaml.safe_load(path.read_text(encoding="utf-8")) for name, path in STUDY_FILES.items()}
FAST_STUDY = "llama-3-8b-l4"  # small space, cheap to search a couple of trials of

HOSTILE = settings(
    deadline=None,
    max_examples=120,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)
FEWER = settings(HOSTILE, max_examples=60)
# Shrinking re-runs searches many times; the pinned tests below give the minimal reproductions.
SEARCHES = settings(HOSTILE, max_examples=30, phases=[Phase.explicit, Phase.reuse, Phase.generate])


# --- adversarial values --------------------------------------------------------------------------

HUGE_INTS = [10**400, -(10**400), 2**63, 2**64, -(2**63) - 1, 2**31 + 1, 2**53 + 1, 10**30]
# Chip counts in (1e5, 2^31] make mesh enumeration on switched (GPU) hardware take minutes; they
# are covered by test_huge_chip_counts_finish_quickly, and kept out of the property tests.
SPECIAL_FLOATS = [math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1e-320, 1e308, -1e308, 0.5, 1.5]
LOOKALIKES = (
    [
        "16",
        "8",
        "4",
        "fp8",
        "fp4",
        "32",
        "int8",
        "bf16",
        "auto",
        "model",
        "mha",
        "mqa",
        "gqa",
        "serial",
        "parallel",
        "minimize",
        "maximize",
        "MINIMIZE",
        "nsga2",
        "tpe",
        "random",
        "exhaustive",
        "cmaes",
        "overlapped",
        "added",
        "head",
        "batch",
        "ws_1d",
        "ws_2d",
        "wg_x",
        "wg_xy",
        "wg_xyz",
        "4x4x4",
        "1x1x1",
        "0x4",
        "-1x-1",
        "8x",
        "x",
        "4x4x4x4",
        "1e400",
        "nan",
        "inf",
        "-0",
        "",
        " ",
        "\x00",
        "\t\n",
        "true",
        "null",
        "~",
        "../../etc/passwd",
        "/",
        ".",
        "..",
        "/dev/zero",
        "config.json",
        "/nonexistent/config.json",
        "é",
        "\u202e",
        "\ud800",
        "😀" * 3,
        "𝟒",
    ]
    + list(METRICS)
    + list(model_catalog())
    + list(hardware_catalog())
)


def long_strings() -> st.SearchStrategy[str]:
    return st.builds(
        lambda n, c: c * n,
        st.sampled_from([256, 300, 5000, 100_000]),
        st.sampled_from(["a", "é", "😀", "/", "9", "a/"]),
    )


def deep(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


scalars = st.one_of(
    st.integers(-10, 130),
    st.integers(-(10**5), 10**5),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SPECIAL_FLOATS),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.sampled_from(LOOKALIKES),
    long_strings(),
    st.binary(max_size=8),
)
adversarial = st.one_of(
    scalars,
    st.lists(scalars, max_size=5),
    st.dictionaries(
        st.one_of(st.text(max_size=8), st.sampled_from(["metric", "direction", "chips"])), scalars, max_size=3
    ),
    st.dictionaries(st.one_of(st.integers(), st.none(), st.booleans(), st.floats()), scalars, min_size=1, max_size=2),
    st.builds(deep, st.sampled_from([2, 50, 1000, 5000]), scalars, st.sampled_from(["list", "dict"])),
)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a loaded YAML value (dict keys and list indices), the root included; not
    into the deep nesting a previous edit may have put there."""
    found = [prefix]
    if len(prefix) >= 6:
        return found
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, prefix + (index,))
    return found


def get_at(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


def _short(value: Any, limit: int = 120) -> str:
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__} too deep to show>"
    return text if len(text) <= limit else f"{text[:limit]}...<{len(text)} chars>"


class Case:
    """A mutated spec; shown in failure reports as the base study and the list of edits (the data
    itself can be too deep or too long to print)."""

    def __init__(self, name: str, data: Any, edits: list[str]) -> None:
        self.name, self.data, self.edits = name, data, edits

    def __repr__(self) -> str:
        return f"Case({self.name!r}, edits={self.edits!r})"


def _where(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "<root>"


@st.composite
def mutated_specs(draw: st.DrawFn) -> Case:
    """A shipped spec with one to three hostile edits: replace, delete, add or wrap a field."""
    name = draw(st.sampled_from(sorted(BASE_SPECS)))
    data: Any = copy.deepcopy(BASE_SPECS[name])
    edits: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "wrap"]))
        all_paths = paths(data)
        if op == "replace":
            path = draw(st.sampled_from(all_paths))
            new = draw(adversarial)
            edits.append(f"{_where(path)} = {_short(new)}")
            if not path:
                data = new
            else:
                get_at(data, path[:-1])[path[-1]] = new
        elif op == "delete":
            keyed = [p for p in all_paths if p and isinstance(get_at(data, p[:-1]), (dict, list))]
            if keyed:
                path = draw(st.sampled_from(keyed))
                edits.append(f"del {_where(path)}")
                del get_at(data, path[:-1])[path[-1]]
        elif op == "add":
            holders = [p for p in all_paths if isinstance(get_at(data, p), (dict, list))]
            if holders:
                where = draw(st.sampled_from(holders))
                holder = get_at(data, where)
                new = draw(adversarial)
                if isinstance(holder, dict):
                    key = draw(
                        st.one_of(
                            st.text(max_size=12),
                            st.sampled_from(["unknown", "__class__", "model_config", "Name", "seed ", "trials"]),
                            st.integers(),
                            st.none(),
                        )
                    )
                    edits.append(f"{_where(where)}[{key!r}] = {_short(new)}")
                    holder[key] = new
                else:
                    edits.append(f"{_where(where)}.append({_short(new)})")
                    holder.append(new)
        elif len(all_paths) > 1:  # wrap
            path = draw(st.sampled_from([p for p in all_paths if p]))
            parent = get_at(data, path[:-1])
            wrapper = draw(st.sampled_from(["list", "dict", "deep"]))
            edits.append(f"wrap {_where(path)} in {wrapper}")
            inner = parent[path[-1]]
            parent[path[-1]] = (
                [inner] if wrapper == "list" else {"value": inner} if wrapper == "dict" else deep(3000, inner)
            )
    return Case(name, data, edits)


def check_spec_data(data: Any) -> StudySpec | None:
    """parse_spec + compile_study succeed (then a few candidates score to finite numbers) or raise
    InvalidInputError; any other exception fails the test."""
    try:
        spec = parse_spec(data)
        compiled = compile_study(spec)
    except InvalidInputError as error:
        assert str(error)
        return None
    assert spec.spec_hash  # what the study stores; must not fail for a spec that validated
    rng = np.random.default_rng(0)
    indices = {name: rng.integers(0, len(choices), size=6) for name, choices in compiled.space.dimensions.items()}
    evaluation = evaluate(compiled, indices)
    assert evaluation.values.shape == (6, len(spec.objectives))
    assert np.all(np.isfinite(evaluation.values)), evaluation.values
    assert np.all(np.isfinite(evaluation.constraints)), (compiled.constraint_names, evaluation.constraints)
    return spec


# --- 1. study specs as data ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BASE_SPECS))
def test_shipped_specs_are_valid(name: str) -> None:
    assert check_spec_data(copy.deepcopy(BASE_SPECS[name])) is not None


@HOSTILE
@given(mutated_specs())
def test_mutated_spec_is_valid_or_invalid_input(case: Case) -> None:
    check_spec_data(case.data)


@FEWER
@given(st.sampled_from(sorted(BASE_SPECS)), st.data())
def test_spec_without_a_required_field_names_it(name: str, data: st.DataObject) -> None:
    spec = copy.deepcopy(BASE_SPECS[name])
    required = ["name", "model", "hardware", "workload", "space", "objectives"]
    key = data.draw(st.sampled_from(required))
    del spec[key]
    with pytest.raises(InvalidInputError, match=key):
        parse_spec(spec)


@FEWER
@given(
    st.sampled_from(sorted(BASE_SPECS)),
    st.sampled_from(["", "space.", "workload.", "constraints."]),
    st.text(min_size=1, max_size=20).filter(lambda k: k not in StudySpec.model_fields),
)
def test_spec_with_an_unknown_field_is_refused(name: str, where: str, key: str) -> None:
    spec = copy.deepcopy(BASE_SPECS[name])
    spec.setdefault("constraints", {})
    holder = get_at(spec, tuple(p for p in where.split(".") if p))
    if key in holder or (
        where == "space."
        and key
        in {
            "chips",
            "mesh",
            "batch",
            "prefill_ffn_layout",
            "decode_ffn_layout",
            "prefill_attn_sharding",
            "decode_attn_sharding",
            "weight_bits",
            "kv_bits",
            "kv_heads",
            "block",
            "flash_attention",
        }
    ):
        return
    if where == "workload." and key in {"prompt_len", "gen_len"}:
        return
    if where == "constraints." and key in {"fits", "max_ttft_s", "max_tpot_s"}:
        return
    holder[key] = 1
    with pytest.raises(InvalidInputError):
        parse_spec(spec)


def _spec_with(name: str, **space_or_top: Any) -> dict:
    spec = copy.deepcopy(BASE_SPECS[name])
    for key, value in space_or_top.items():
        section, _, field = key.rpartition("__")
        (spec[section] if section else spec)[field] = value
    return spec


@pytest.mark.parametrize(
    "edit",
    [
        {"space__mesh": []},  # an empty mesh list leaves the mesh dimension empty
        {"space__weight_bits": [deep(1000)]},  # str() of a deep list in _bits_as_strings
        {"space__kv_bits": [deep(1000, "16")]},
        {"constraints__max_tpot_s": math.inf},  # an SLO of infinity: constraint values of -inf
        {"constraints__max_ttft_s": "1e400"},
        {"space__kv_heads": ["model", 10**400]},  # float(10**400) overflows in evaluate
        {"space__kv_heads": ["model", 2**64]},
    ],
    ids=[
        "empty-mesh-list",
        "deep-weight-bits",
        "deep-kv-bits",
        "inf-tpot",
        "inf-ttft-string",
        "kv-heads-10^400",
        "kv-heads-2^64",
    ],
)
def test_spec_edge_cases_are_refused_or_score_finitely(edit: dict) -> None:
    check_spec_data(_spec_with("llama-2-70b-h100", **edit))


# --- 2. spec YAML text ---------------------------------------------------------------------------


def object_tag_payloads(marker: Path) -> list[str]:
    """YAML that would run a command (creating ``marker``) under an unsafe loader."""
    cmd = f"touch {marker}"
    return [
        f'!!python/object/apply:os.system ["{cmd}"]',
        f'name: !!python/object/apply:os.system ["{cmd}"]\n',
        f'name: x\nmodel: !!python/object/apply:subprocess.check_output [["touch", "{marker}"]]\n',
        f'!!python/object/new:os.system ["{cmd}"]',
        f"name: !!python/object/apply:builtins.exec [\"open('{marker}', 'w').close()\"]\n",
        f"!!python/object/apply:builtins.eval [\"__import__('os').system('{cmd}')\"]",
        "seed: !!python/name:os.system\n",
        "seed: !!python/module:os\n",
        f'!!python/object:os.system {{cmd: "{cmd}"}}',
        f'- !!python/object/apply:os.system ["{cmd}"]\n',
        f'? !!python/object/apply:os.system ["{cmd}"]\n: 1\n',
        f'!<tag:yaml.org,2002:python/object/apply:os.system> ["{cmd}"]',
        f'%TAG !p! tag:yaml.org,2002:python/\n---\n!p!object/apply:os.system ["{cmd}"]\n',
    ]


BILLION_LAUGHS = textwrap.dedent("""\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    """)

STRUCTURAL_TEXTS = [
    "",
    "\n",
    "---",
    "--- ~",
    "...",
    "- a\n- b\n",
    "42",
    "just text",
    "{}",
    "[]",
    "~",
    "null",
    "[" * 10_000,
    "{" * 10_000,
    "[" * 10_000 + "]" * 10_000,
    "a: " * 5_000,
    "- " * 5_000 + "x",
    "{a: " * 3_000 + "1" + "}" * 3_000,
    "\ufeffname: x",
    "\x00",
    "name: \x00",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    BILLION_LAUGHS,
    BILLION_LAUGHS + "name: *i\nmodel: *i\nhardware: *i\nworkload: *i\nspace: {chips: *i, batch: *i}\nobjectives: *i\n",
    "base: &base {chips: [1], batch: [1]}\nspace:\n  <<: *base\n  <<: *base\n",
    "name: *undefined\n",
    "name: &a\n",
    "? [a, b]\n: 1\n",
    "? {a: 1}\n: 1\n",
    "name: x\nname: y\n",
    "%YAML 1.1\n---\nname: x\n",
    "%YAML 9.9\n---\nname: x\n",
    "!!binary aGVsbG8=",
    "name: !!binary aGVsbG8=\n",
    "name: !!binary '%%%'\n",
    "name: !!set {a, b}\n",
    "name: !!omap [a: 1]\n",
    "name: !custom x\n",
    "name: !!str\n",
]

# YAML scalars, some of which make PyYAML's safe constructors raise plain Python exceptions.
HOSTILE_SCALARS = [
    "2001-02-30",
    "2001-13-45",
    "!!timestamp abc",
    "!!timestamp 2001-02-30",
    "!!int abc",
    "!!int 0x",
    "!!int 0b",
    "!!float .",
    "!!float abc",
    "!!bool maybe",
    "!!null x",
    "!!binary '%'",
    "9" * 5_000,
    "-" + "9" * 5_000,
    "!!int " + "9" * 5_000,
    "1" + "0" * 400,
    "1e400",
    ".nan",
    ".inf",
    "-.inf",
    "0x7fffffffffffffffff",
    "0o777",
    "0b101",
    "1_000",
    "1:2:3:4:5:6",
    "190:20:30",
    "~",
    "null",
    "yes",
    "off",
    "[]",
    "{}",
    "[[[[[]]]]]",
    "*nope",
    "&anchor 1",
    "!!python/name:os.system",
    "'" + "x" * 100_000 + "'",
    '"\\ud800"',
    '"\\0"',
    '"\\U0010ffff"',
    "!!str 16",
    "!!float 16",
]


def spec_text_with(name: str, line_index: int, scalar: str) -> str:
    """The shipped spec's text with the value on one ``key: value`` line replaced by ``scalar``."""
    lines = STUDY_FILES[name].read_text(encoding="utf-8").splitlines()
    editable = [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith("#")]
    i = editable[line_index % len(editable)]
    key = lines[i].split(":", 1)[0]
    lines[i] = f"{key}: {scalar}"
    return "\n".join(lines) + "\n"


@st.composite
def spec_files(draw: st.DrawFn) -> tuple[bytes, Path]:
    """Bytes of a hostile spec file, and the path an executed tag would create."""
    marker = Path(tempfile.gettempdir()) / f"pwned-{uuid.uuid4().hex}"
    kind = draw(st.sampled_from(["payload", "structure", "scalar", "text", "bytes", "dumped"]))
    if kind == "payload":
        text = draw(st.sampled_from(object_tag_payloads(marker)))
        if draw(st.booleans()):  # hide it inside an otherwise valid spec
            text = spec_text_with(
                draw(st.sampled_from(sorted(STUDY_FILES))),
                draw(st.integers(0, 40)),
                text.strip().replace("\n", " ")
                if text.startswith("!")
                else f'!!python/object/apply:os.system ["touch {marker}"]',
            )
        return text.encode("utf-8"), marker
    if kind == "structure":
        return draw(st.sampled_from(STRUCTURAL_TEXTS)).encode("utf-8", "surrogatepass"), marker
    if kind == "scalar":
        text = spec_text_with(
            draw(st.sampled_from(sorted(STUDY_FILES))), draw(st.integers(0, 40)), draw(st.sampled_from(HOSTILE_SCALARS))
        )
        return text.encode("utf-8"), marker
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass"), marker
    if kind == "bytes":
        return draw(st.binary(max_size=200)), marker
    data = draw(mutated_specs()).data
    try:
        text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()))
    except (yaml.YAMLError, RecursionError):
        text = "name: [unrepresentable"
    return text.encode("utf-8", "surrogatepass"), marker


def check_load_spec(path: Path) -> StudySpec | None:
    try:
        return load_spec(path)
    except InvalidInputError as error:
        assert str(error)
        return None


@HOSTILE
@given(spec_files())
def test_spec_file_is_valid_or_invalid_input_and_never_runs_code(case: tuple[bytes, Path]) -> None:
    content, marker = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.yaml"
        path.write_bytes(content)
        spec = check_load_spec(path)
        assert not marker.exists(), "a YAML tag ran a command"
        if spec is not None:
            check_spec_data(spec.model_dump())


def test_each_hostile_yaml_scalar_in_each_field(tmp_path: Path) -> None:
    """Every hostile scalar in place of every value of every shipped spec: a spec or one
    InvalidInputError. All offenders are listed at once (PyYAML's safe constructors raise plain
    ValueError, KeyError and AttributeError for some scalars)."""
    path = tmp_path / "spec.yaml"
    offenders: dict[str, str] = {}
    for scalar in HOSTILE_SCALARS:
        for name in [FAST_STUDY]:  # every line of one spec; the scalar, not the field, is the point
            lines = STUDY_FILES[name].read_text(encoding="utf-8").splitlines()
            count = sum(1 for line in lines if ":" in line and not line.lstrip().startswith("#"))
            for index in range(count):
                text = spec_text_with(name, index, scalar)
                path.write_text(text, encoding="utf-8")
                try:
                    check_load_spec(path)
                except Exception as error:
                    line = text.splitlines()[
                        [i for i, ln in enumerate(text.splitlines()) if ":" in ln and not ln.lstrip().startswith("#")][
                            index
                        ]
                    ]
                    offenders.setdefault(
                        _short(scalar, 40), f"{_short(line, 60)} -> {type(error).__name__}: {_short(str(error), 80)}"
                    )
    assert not offenders, "load_spec raised other than InvalidInputError:\n" + "\n".join(
        f"  {scalar}: {what}" for scalar, what in offenders.items()
    )


@pytest.mark.parametrize("index", range(len(object_tag_payloads(Path("/m")))))
def test_object_constructing_tags_are_refused(index: int) -> None:
    marker = Path(tempfile.gettempdir()) / f"pwned-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.yaml"
        path.write_text(object_tag_payloads(marker)[index], encoding="utf-8")
        with pytest.raises(InvalidInputError):
            load_spec(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "where",
    ["missing.yaml", "", ".", "folder", "a" * 300 + ".yaml", "a/" * 3000 + "x.yaml", "x\x00.yaml"],
    ids=["missing", "empty", "dot", "folder", "long-name", "long-path", "nul"],
)
def test_unreadable_spec_paths_are_invalid_input(tmp_path: Path, where: str) -> None:
    (tmp_path / "folder").mkdir()
    check_load_spec(tmp_path / where if where else Path(where))


# --- 3. Hugging Face config.json -----------------------------------------------------------------

LLAMA_CONFIG = {
    "_name_or_path": "meta-llama/Meta-Llama-3-8B",
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
    "rope_theta": 500000.0,
    "torch_dtype": "bfloat16",
    "max_position_embeddings": 8192,
}
GPT2_CONFIG = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "n_inner": None, "vocab_size": 50257}
NEOX_CONFIG = {
    "model_type": "gpt_neox",
    "num_hidden_layers": 16,
    "hidden_size": 2048,
    "num_attention_heads": 8,
    "intermediate_size": 8192,
    "vocab_size": 50304,
    "use_parallel_residual": True,
}
BASE_CONFIGS = [LLAMA_CONFIG, GPT2_CONFIG, NEOX_CONFIG]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)
RAW_JSON_TOKENS = [
    "9" * 5_000,
    "-" + "9" * 5_000,
    "1" + "0" * 400,
    "1e400",
    "-1e400",
    "1e-400",
    "NaN",
    "Infinity",
    "-Infinity",
    "-0",
    "0",
    "-1",
    "1.0",
    "32.0",
    "[]",
    "{}",
    "null",
    "true",
    '"32"',
    '"llama"',
    '"\\ud800"',
    "[" * 50_000 + "]" * 50_000,
    "4096",
]
RAW = "\x00RAW\x00"


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["random", "mutated", "raw", "text"]))
    if kind == "random":
        value = draw(
            json_values | st.dictionaries(st.sampled_from(list(LLAMA_CONFIG) + ["head_dim"]), json_values, max_size=8)
        )
        return json.dumps(value)
    if kind == "text":
        return draw(st.text(max_size=100))
    config = copy.deepcopy(draw(st.sampled_from(BASE_CONFIGS)))
    keys = list(config) + [
        "head_dim",
        "num_key_value_heads",
        "tie_word_embeddings",
        "n_inner",
        "use_parallel_residual",
        "model_type",
        "_name_or_path",
    ]
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys))
        op = draw(st.sampled_from(["replace", "replace", "delete"]))
        if op == "delete":
            config.pop(key, None)
        elif kind == "raw":
            config[key] = RAW
        else:
            config[key] = draw(
                st.one_of(
                    json_values,
                    st.sampled_from(
                        [
                            0,
                            -1,
                            1,
                            3,
                            7,
                            2**31,
                            2**63,
                            10**30,
                            10**400 // 10**300,
                            True,
                            False,
                            1.0,
                            "llama",
                            "bert",
                            "gpt2",
                            "LLAMA",
                            "",
                            "a" * 300,
                            "a/" * 3000,
                            math.nan,
                            math.inf,
                        ]
                    ),
                )
            )
    text = json.dumps(config)
    if kind == "raw" and RAW in config.values():
        text = text.replace(json.dumps(RAW), draw(st.sampled_from(RAW_JSON_TOKENS)))
    return text


def check_config(text: str, folder: Path, as_folder: bool) -> ModelSpec | None:
    file = folder / "config.json"
    file.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        model = model_from_hf_config(folder if as_folder else file)
    except InvalidInputError as error:
        assert str(error)
        return None
    assert isinstance(model, ModelSpec)
    return model


@HOSTILE
@given(config_texts(), st.booleans())
def test_hf_config_is_model_or_invalid_input(text: str, as_folder: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_config(text, Path(folder), as_folder)


@FEWER
@given(config_texts())
def test_estimate_of_any_accepted_hf_config_is_clean(text: str) -> None:
    """A config that reads as a model can be estimated: result JSON or one error line."""
    with tempfile.TemporaryDirectory() as folder:
        if check_config(text, Path(folder), True) is None:
            return
        result = call_cli(
            "estimate",
            "--model",
            str(Path(folder) / "config.json"),
            "--hardware",
            "tpu-v4",
            "--chips",
            "4",
            "--batch",
            "2",
            "--prompt-len",
            "64",
            "--gen-len",
            "16",
            "--json",
        )
        check_cli(*result, as_json=True)


@pytest.mark.parametrize(
    "where",
    ["a" * 300 + ".json", "a/" * 3000 + "config.json", "missing.json", "x\x00.json", ""],
    ids=["long-name", "long-path", "missing", "nul", "folder"],
)
def test_unreadable_config_paths_are_invalid_input(tmp_path: Path, where: str) -> None:
    with pytest.raises(InvalidInputError):
        model_from_hf_config(tmp_path / where)


# --- 4. CLI arguments ----------------------------------------------------------------------------


def call_cli(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``tuner ARGS`` run in-process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # pragma: no cover - main returns codes; report if it exits
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception as error:
            # What the console script would print as a traceback: fail with it.
            raise AssertionError(
                f"tuner {[a[:80] for a in args]} raised {type(error).__name__}: {str(error)[:300]}"
            ) from error
    return code, out.getvalue(), err.getvalue()


def _no_constants(token: str) -> Any:
    raise AssertionError(f"non-standard JSON constant {token}")


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return True


def check_cli(code: int, out: str, err: str, *, as_json: bool) -> Any:
    """Exit 0 with strict JSON (when asked for), or exit 2 with one ``error:`` line."""
    assert "Traceback" not in out + err, err[-2000:]
    assert code in (0, 2), (code, out[-500:], err[-500:])
    if code == 2:
        assert out == "", out[-500:]
        assert err.endswith("\n") and err.count("\n") == 1, repr(err[-500:])
        assert err.startswith("error:"), err[:200]
        return None
    if as_json:
        data = json.loads(out, parse_constant=_no_constants)
        assert _all_finite(data), out[-1000:]
        return data
    assert out
    return None


def int_texts(valid: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(valid),
        st.sampled_from(
            [
                "nan",
                "inf",
                "-inf",
                "-0",
                "0",
                "+0",
                "-1",
                "1e400",
                "1e3",
                "1.0",
                "1.5",
                "",
                " ",
                " 8 ",
                "+8",
                "0x10",
                "0o7",
                "1_024",
                "8_",
                "٣",
                "８",
                "𝟖",
                "\x00",
                "8\x00",
                str(2**31),
                str(2**31 + 1),
                str(2**63),
                str(2**64),
                "-" + str(2**63 + 1),
                "9" * 100,
                "9" * 4_300,
                "9" * 4_301,
                "9" * 20_000,
                "true",
                "None",
                "--json",
            ]
        ),
        st.integers(-(10**30), 10**30).map(str),
        st.integers(-5, 300).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.text(max_size=12),
    )


def float_texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(
            [
                "0.3",
                "1",
                "0.5",
                "1.0",
                "0.999999",
                "1e-320",
                "5e-324",
                "nan",
                "-nan",
                "NaN",
                "inf",
                "-inf",
                "Infinity",
                "-0",
                "-0.0",
                "0",
                "1e400",
                "-1e400",
                "1.0000001",
                "2",
                "",
                " ",
                "0x1p-2",
                "1_0",
                "٠.٥",
                "1e-400",
                "9" * 400,
                "0." + "0" * 400 + "1",
            ]
        ),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.floats(0, 1).map(str),
        st.text(max_size=12),
    )


def mesh_texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(
            [
                "1x2x2",
                "2x2x1",
                "4",
                "2x2",
                "4x1x1",
                "1x1x4",
                "2x2x1x1",
                "x",
                "xx",
                "4x",
                "x4",
                "0x4",
                "-2x-2",
                "2x-2x-1",
                "4X1X1",
                " 2x2 ",
                "2 x 2",
                "２x２",
                "1e2x1",
                "nan",
                "inf",
                "",
                "\x00",
                "9" * 5_000 + "x1",
                "99999999999999999999x1",
                "4611686018427387905x4",
                "9223372036854775807x9223372036854775807x2",
                "18446744073709551616x1",
                "4x4x4",
                "64x64x1",
            ]
        ),
        st.lists(st.integers(-3, 70).map(str), min_size=0, max_size=5).map("x".join),
        st.text(alphabet="0123456789x-X ", max_size=12),
        st.text(max_size=12),
    )


DECODER_MODELS = ["llama-3-8b", "llama-2-70b", "palm-540b", "gpt2", "mistral-7b"]
ALL_MODELS = DECODER_MODELS + ["bert-base", "nonexistent-model", "", "a" * 300]
BOUNDED_HARDWARE = ["tpu-v4", "tpu-v5e", "tpu-v5p"]  # mesh enumeration bounded by max_chips


@HOSTILE
@given(st.data())
def test_cli_analyze_hostile_numbers(data: st.DataObject) -> None:
    args = [
        "analyze",
        "--model",
        data.draw(st.sampled_from(ALL_MODELS[:-1]), label="model"),
        "--hardware",
        data.draw(st.sampled_from(sorted(hardware_catalog()) + ["tpu-v9"])),
        "--phase",
        data.draw(st.sampled_from(["prefill", "decode"])),
        "--batch",
        data.draw(int_texts(["1", "8", "64", "512"]), label="batch"),
        "--seq-len",
        data.draw(int_texts(["1", "128", "2048", "32768"]), label="seq-len"),
    ]
    if data.draw(st.booleans()):
        args += ["--kv-heads", data.draw(int_texts(["1", "8", "32"]), label="kv-heads")]
    for flag in ("--weight-bits", "--kv-bits", "--act-bits"):
        if data.draw(st.booleans()):
            args += [flag, data.draw(st.sampled_from(["16", "8", "4", "fp8", "32", "", "nan"]))]
    if data.draw(st.booleans()):
        args.append(data.draw(st.sampled_from(["--flash-attention", "--no-causal", "--causal"])))
    as_json = data.draw(st.booleans(), label="json")
    check_cli(*call_cli(*args, *(["--json"] if as_json else [])), as_json=as_json)


@HOSTILE
@given(st.data())
def test_cli_estimate_hostile_numbers(data: st.DataObject) -> None:
    args = [
        "estimate",
        "--model",
        data.draw(st.sampled_from(ALL_MODELS), label="model"),
        "--hardware",
        data.draw(st.sampled_from(BOUNDED_HARDWARE), label="hardware"),
        "--chips",
        data.draw(int_texts(["1", "4", "8", "16", "64"]), label="chips"),
        "--batch",
        data.draw(int_texts(["1", "8", "64", "512"]), label="batch"),
        "--prompt-len",
        data.draw(int_texts(["1", "128", "2048"]), label="prompt-len"),
        "--gen-len",
        data.draw(int_texts(["1", "64", "512"]), label="gen-len"),
    ]
    if data.draw(st.booleans()):
        args += ["--kv-heads", data.draw(int_texts(["1", "8", "16", "48"]), label="kv-heads")]
    if data.draw(st.booleans()):
        args += ["--mesh", data.draw(mesh_texts(), label="mesh")]
    if data.draw(st.booleans()):
        args += ["--kv-memory-fraction", data.draw(float_texts(), label="kv-memory-fraction")]
    for flag, choices in (
        ("--phase", ["prefill", "decode", "both", "train"]),
        ("--weight-bits", ["16", "8", "4", "fp8"]),
        ("--ffn-layout", ["ws_1d", "ws_2d", "wg_x", "wg_xy", "wg_xyz", "bogus"]),
        ("--attn-sharding", ["head", "batch", "seq"]),
        ("--overlap", ["overlapped", "added"]),
    ):
        if data.draw(st.booleans()):
            args += [flag, data.draw(st.sampled_from(choices))]
    if data.draw(st.booleans()):
        args.append(data.draw(st.sampled_from(["--require-fit", "--flash-attention"])))
    as_json = data.draw(st.booleans(), label="json")
    check_cli(*call_cli(*args, *(["--json"] if as_json else [])), as_json=as_json)


def test_cli_hostile_text_survives_console_script(tmp_path: Path) -> None:
    """The installed entry point, not just main(): one line, exit 2, for a non-numeric batch."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tuner.cli import main; sys.exit(main())",
            "estimate",
            "--model",
            "llama-3-8b",
            "--hardware",
            "tpu-v4",
            "--chips",
            "4",
            "--batch",
            "nan",
            "--prompt-len",
            "1",
            "--gen-len",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    check_cli(proc.returncode, proc.stdout, proc.stderr, as_json=True)
    assert proc.returncode == 2


@pytest.mark.parametrize(
    "args",
    [
        [
            "estimate",
            "--model",
            "a" * 300,
            "--hardware",
            "tpu-v4",
            "--chips",
            "4",
            "--batch",
            "1",
            "--prompt-len",
            "1",
            "--gen-len",
            "1",
            "--json",
        ],
        [
            "analyze",
            "--model",
            "a" * 300,
            "--hardware",
            "tpu-v4",
            "--phase",
            "decode",
            "--batch",
            "1",
            "--seq-len",
            "1",
            "--json",
        ],
        [
            "analyze",
            "--model",
            "a/" * 3000 + "config.json",
            "--hardware",
            "tpu-v4",
            "--phase",
            "decode",
            "--batch",
            "1",
            "--seq-len",
            "1",
        ],
    ],
    ids=["estimate-long-model", "analyze-long-model", "analyze-long-config-path"],
)
def test_cli_overlong_model_name_is_one_error_line(args: list[str]) -> None:
    code, out, err = call_cli(*args)
    check_cli(code, out, err, as_json=True)
    assert code == 2


HANG_SCRIPT = textwrap.dedent("""\
    import sys
    from tuner.cli import main
    sys.exit(main(sys.argv[1:]))
    """)


@pytest.mark.parametrize("case", ["estimate-l4-2^31", "estimate-h100-10^18", "spec-h100-2^31"])
def test_huge_chip_counts_finish_quickly(tmp_path: Path, case: str) -> None:
    """A huge chip count on a GPU (switched network, no max_chips) answers in seconds: 2^31 is the
    spec's own upper bound; the CLI's --chips has none (mesh enumeration must not be O(chips))."""
    if case.startswith("estimate"):
        hardware = "l4" if "-l4-" in case else "h100-sxm"
        chips = str(2**31) if case.endswith("2^31") else str(8 * 10**18)
        argv = [
            "estimate",
            "--model",
            "llama-3-8b",
            "--hardware",
            hardware,
            "--chips",
            chips,
            "--batch",
            "1",
            "--prompt-len",
            "1",
            "--gen-len",
            "1",
            "--json",
        ]
        script = HANG_SCRIPT
    else:
        spec = copy.deepcopy(BASE_SPECS["llama-2-70b-h100"])
        spec["space"]["chips"] = [2**31]
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        argv = [str(tmp_path / "spec.json")]
        script = textwrap.dedent("""\
            import json, sys
            from cost_models.errors import InvalidInputError
            from search_spaces.spec import parse_spec
            from search_spaces.space import compile_study
            try:
                compile_study(parse_spec(json.load(open(sys.argv[1]))))
            except InvalidInputError:
                pass
            """)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=6, cwd=tmp_path, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: still running after 6 s (mesh enumeration grows with the chip count)")
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode in (0, 2), proc.stderr[-2000:]
    if case.startswith("estimate"):
        check_cli(proc.returncode, proc.stdout, proc.stderr, as_json=True)


# --- 5. tuner search -----------------------------------------------------------------------------


def study_names_in(db: Path) -> list[str]:
    if not db.exists():
        return []
    return optuna.get_all_study_names(storage=f"sqlite:///{db}")


def check_search(spec_path: Path, db: Path, *options: str) -> tuple[int, Any]:
    code, out, err = call_cli("search", str(spec_path), "--storage", f"sqlite:///{db}", *options, "--json")
    data = check_cli(code, out, err, as_json=True)
    if code == 2:
        assert study_names_in(db) == [], f"exit 2 but a study was created: {err.strip()}"
    return code, data


@settings(SEARCHES, max_examples=60)
@given(spec_files())
def test_search_with_hostile_spec_creates_nothing(case: tuple[bytes, Path]) -> None:
    content, marker = case
    with tempfile.TemporaryDirectory() as folder:
        spec_path, db = Path(folder) / "spec.yaml", Path(folder) / "out" / "study.db"
        spec_path.write_bytes(content)
        try:
            spec = load_spec(spec_path)
            compile_study(spec)
            valid = True
        except InvalidInputError:
            valid = False
        # random: the exhaustive sampler a spec may name ignores --trials (and --timeout).
        code, _ = check_search(spec_path, db, "--trials", "2", "--sampler", "random")
        assert not marker.exists()
        if not valid:
            assert code == 2
            assert not db.exists(), "a refused spec left a database file behind"
            assert not db.parent.exists(), "a refused spec left a storage folder behind"


@SEARCHES
@given(mutated_specs())
def test_search_with_mutated_spec_data(case: Case) -> None:
    """Specs that validate run (2 trials) or exit 2 without a study; e.g. a hostile seed."""
    data = case.data
    if check_spec_data(data) is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        spec_path, db = Path(folder) / "spec.yaml", Path(folder) / "study.db"
        spec_path.write_text(yaml.safe_dump(json.loads(json.dumps(parse_spec(data).model_dump(mode="json")))))
        check_search(spec_path, db, "--trials", "2", "--timeout", "20", "--sampler", "random")


def _as_number(text: str, kind: type) -> float | int | None:
    try:
        return kind(text)
    except (ValueError, OverflowError):
        return None


@SEARCHES
@given(
    int_texts(["1", "2", "5"]),
    st.one_of(st.none(), float_texts()),
    st.one_of(st.none(), int_texts(["0", "1", "42", str(2**32 - 1)])),
    st.one_of(st.none(), st.sampled_from(["nsga2", "tpe", "random", "bogus", ""])),
)
def test_search_with_hostile_options(trials: str, timeout: str | None, seed: str | None, sampler: str | None) -> None:
    trials_value = _as_number(trials.strip(), int)
    timeout_value = _as_number(timeout.strip(), float) if timeout is not None else None
    long_run = trials_value is not None and trials_value > 8
    if long_run and not (timeout_value is not None and 0 < timeout_value <= 0.2):
        timeout = "0.2"  # a valid huge budget runs until the timeout; keep it short
    options = ["--trials", trials]
    if timeout is not None:
        options += ["--timeout", timeout]
    if seed is not None:
        options += ["--seed", seed]
    if sampler is not None:
        options += ["--sampler", sampler]
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "study.db"
        code, data = check_search(STUDY_FILES[FAST_STUDY], db, *options)
        if code == 0:
            assert data["study"] == FAST_STUDY
            assert study_names_in(db) == [FAST_STUDY]


@pytest.mark.parametrize("seed", ["-1", str(2**32)], ids=["minus-one", "2^32"])
def test_search_with_out_of_range_seed(tmp_path: Path, seed: str) -> None:
    db = tmp_path / "study.db"
    code, _ = check_search(STUDY_FILES[FAST_STUDY], db, "--trials", "2", "--seed", seed)
    assert code in (0, 2)


BAD_SPEC_EDITS = {
    "yaml-bad-date": ("seed: 0", "seed: 2001-02-30"),  # PyYAML raises ValueError
    "yaml-bad-int-tag": ("seed: 0", "seed: !!int abc"),
    "yaml-bad-bool-tag": ("flash_attention: [true]", "flash_attention: [!!bool maybe]"),  # KeyError
    "yaml-5000-digits": ("seed: 0", "seed: " + "9" * 5000),
    "empty-mesh-list": ("mesh: auto", "mesh: []"),  # passes validation, crashes Optuna
    "negative-seed": ("seed: 0", "seed: -1"),  # passes validation, crashes the sampler
    "seed-2^32": ("seed: 0", f"seed: {2**32}"),
    "kv-heads-10^400": ("flash_attention: [true]", f"flash_attention: [true]\n  kv_heads: [model, {10**400}]"),
}


@pytest.mark.parametrize("edit", list(BAD_SPEC_EDITS.values()), ids=list(BAD_SPEC_EDITS))
def test_search_with_bad_spec_is_one_line_and_no_study(tmp_path: Path, edit: tuple[str, str]) -> None:
    text = STUDY_FILES[FAST_STUDY].read_text(encoding="utf-8")
    assert edit[0] in text
    spec_path, db = tmp_path / "spec.yaml", tmp_path / "study.db"
    spec_path.write_text(text.replace(edit[0], edit[1]), encoding="utf-8")
    code, _ = check_search(spec_path, db, "--trials", "2")
    assert code == 2
    assert not db.exists()


def test_study_with_infinite_slo_can_be_shown(tmp_path: Path) -> None:
    """An SLO of .inf is refused, or its study's trials print as standard JSON (no -Infinity)."""
    text = STUDY_FILES[FAST_STUDY].read_text(encoding="utf-8").replace("max_tpot_s: 0.1", "max_tpot_s: .inf")
    spec_path, db = tmp_path / "spec.yaml", tmp_path / "study.db"
    spec_path.write_text(text, encoding="utf-8")
    code, _ = check_search(spec_path, db, "--trials", "2", "--sampler", "random")
    if code == 0:
        check_cli(*call_cli("show", FAST_STUDY, "0", "--storage", f"sqlite:///{db}"), as_json=True)
