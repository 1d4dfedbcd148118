"""A user's own chip or model in a YAML file: loaded and validated as the catalog is."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cost_models.calibration import resolve_calibration
from cost_models.catalog_files import suggestions, template_text
from cost_models.deployment import estimate_one
from cost_models.deployments import Deployment
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware, hardware_catalog
from cost_models.models import get_model, model_catalog
from cost_models.topology import chip_offer

CATALOG = Path(__file__).resolve().parents[2] / "cost_models" / "catalog"


def _entry(kind: str, name: str) -> dict:
    return yaml.safe_load((CATALOG / f"{kind}.yaml").read_text())[name]


def _write(tmp_path: Path, name: str, data: object) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def test_bare_and_named_forms_give_the_catalog_numbers(tmp_path):
    h100 = hardware_catalog()["h100-sxm"]
    bare = get_hardware(_write(tmp_path, "my-chip.yaml", _entry("hardware", "h100-sxm")))
    named = get_hardware(_write(tmp_path, "x.yaml", {"other-chip": _entry("hardware", "h100-sxm")}))
    assert bare.name == "my-chip"  # the file's stem
    assert named.name == "other-chip"  # the catalog's form: name: {entry}
    for chip in (bare, named):
        assert chip.model_dump(exclude={"name"}) == h100.model_dump(exclude={"name"})
    model = get_model(_write(tmp_path, "m.yaml", {**_entry("models", "llama-2-7b"), "name": "my-llama"}))
    assert model.name == "my-llama"
    assert model.params == model_catalog()["llama-2-7b"].params


def test_a_catalog_name_with_other_numbers_is_refused(tmp_path):
    entry = {**_entry("hardware", "h100-sxm"), "memory_bytes": 1e9}
    with pytest.raises(InvalidInputError, match="another name"):
        get_hardware(_write(tmp_path, "h.yaml", {"h100-sxm": entry}))
    # the same numbers under the catalog's name are the catalog chip
    assert (
        get_hardware(_write(tmp_path, "h2.yaml", {"h100-sxm": _entry("hardware", "h100-sxm")}))
        == (hardware_catalog()["h100-sxm"])
    )


def test_estimate_on_a_file_chip_equals_the_catalog_chip(tmp_path):
    chip = get_hardware(_write(tmp_path, "twin.yaml", _entry("hardware", "h100-sxm")))
    args = dict(chips=8, batch=16, prompt_len=1024, gen_len=128, calibration="none")
    ours, theirs = estimate_one("llama-2-13b", chip, **args), estimate_one("llama-2-13b", "h100-sxm", **args)
    assert ours.pop("hardware") == "twin" and theirs.pop("hardware") == "h100-sxm"
    assert ours == theirs


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({k: v for k, v in _entry("hardware", "h100-sxm").items() if k != "memory_bytes"}, "memory_bytes"),
        ({**_entry("hardware", "h100-sxm"), "memory_bandwidth_bytes_per_s": -1.0}, "memory_bandwidth_bytes_per_s"),
        ({**_entry("hardware", "h100-sxm"), "memory_gb": 80}, "memory_gb"),
        # Infinite values (1e400 reads as inf) were accepted: every deployment fit, --json failed.
        ({**_entry("hardware", "h100-sxm"), "memory_bytes": float("inf")}, "memory_bytes: Input should be a finite"),
        ({**_entry("hardware", "h100-sxm"), "memory_bytes": "1e400"}, "memory_bytes: Input should be a finite"),
        ("a: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "not a mapping"),
        ("", "not a mapping"),
    ],
)
def test_a_bad_chip_file_names_the_file_and_the_field(tmp_path, content, field):
    path = _write(tmp_path, "bad.yaml", content)
    with pytest.raises(InvalidInputError) as caught:
        get_hardware(path)
    message = str(caught.value)
    assert path in message and field in message and "\n" not in message


def test_a_directory_or_missing_file(tmp_path):
    with pytest.raises(InvalidInputError, match="is a directory"):
        get_hardware(str(tmp_path) + "/")
    with pytest.raises(InvalidInputError, match="no file at"):
        get_hardware(str(tmp_path / "nope.yaml"))
    with pytest.raises(InvalidInputError, match="model: .*heads"):
        get_model(_write(tmp_path, "m.yaml", {**_entry("models", "llama-2-7b"), "kv_heads": 5}))


@pytest.mark.parametrize(
    ("name", "names", "expected"),
    [
        ("h100", hardware_catalog(), ["h100-sxm"]),
        ("H100-SXM", hardware_catalog(), ["h100-sxm"]),
        ("llama-2-70", model_catalog(), ["llama-2-70b"]),
        ("lama-3-8b", model_catalog(), ["llama-3-8b"]),
        ("zzzz", hardware_catalog(), []),
    ],
)
def test_did_you_mean(name, names, expected):
    assert suggestions(name, names)[: len(expected) or None] == expected


def test_unknown_names_say_did_you_mean():
    with pytest.raises(InvalidInputError) as caught:
        get_hardware("h100")
    assert str(caught.value) == "hardware: unknown hardware 'h100'; did you mean h100-sxm? (tuner hardware lists all)"
    with pytest.raises(InvalidInputError, match="did you mean llama-2-70b"):
        get_model("llama-2-70")


def test_a_file_chip_falls_back_to_the_default_profile_and_says_why(tmp_path):
    chip = get_hardware(_write(tmp_path, "twin.yaml", _entry("hardware", "h100-sxm")))
    profile = resolve_calibration("auto", chip)
    assert profile is not None and profile.fallback and profile.chip == "twin"
    assert "a chip from a file" in profile.fallback_reason
    assert not resolve_calibration("auto", "h100-sxm").fallback  # the catalog chip keeps its profile


def test_a_stored_deployment_of_a_file_chip_round_trips(tmp_path):
    chip = get_hardware(_write(tmp_path, "twin.yaml", {**_entry("hardware", "h100-sxm"), "memory_bytes": 1e11}))
    deployment = Deployment(model=model_catalog()["llama-2-7b"], hardware=chip, mesh=(1, 1, 8), batch=4,
                            prompt_len=128, gen_len=16)  # fmt: skip
    stored = deployment.to_dict()
    assert isinstance(stored["hardware"], dict)  # the chip whole: the file may be gone
    back = Deployment.from_dict(yaml.safe_load(yaml.safe_dump(stored)))
    assert back.hardware == chip and back.to_dict() == stored
    catalog = Deployment(model=deployment.model, hardware=hardware_catalog()["h100-sxm"], mesh=(1, 1, 8), batch=4,
                         prompt_len=128, gen_len=16)  # fmt: skip
    assert catalog.to_dict()["hardware"] == "h100-sxm"


@pytest.mark.parametrize(
    ("kind", "load", "like"), [("hardware", get_hardware, "h100-sxm"), ("models", get_model, "llama-3-8b")]
)
def test_templates_parse_back_with_a_real_entrys_numbers(tmp_path, kind, load, like):
    text = template_text(kind)
    spec = load(_write(tmp_path, f"t-{kind}.yaml", text))
    catalog = hardware_catalog() if kind == "hardware" else model_catalog()
    assert spec.model_dump(exclude={"name", "source"}) == catalog[like].model_dump(exclude={"name", "source"})
    for field in type(spec).model_fields:  # every field is in the template, commented
        assert f"\n{field}:" in text or f"\n  {field}:" in text, field


def test_chip_offer_lists_counts_and_meshes():
    h100 = chip_offer(hardware_catalog()["h100-sxm"])
    assert h100["chip_counts"][:9] == [1, 2, 3, 4, 5, 6, 7, 8, 16] and 12 not in h100["chip_counts"]
    assert "2x2x2" in h100["meshes"]["8"]
    v4 = chip_offer(hardware_catalog()["tpu-v4"])
    assert v4["max_chips"] == 4096 and 2 not in v4["chip_counts"] and v4["meshes"]["8"] == ["2x2x2"]


# A number in a larger unit than the schema's (the template's H100 figures as a datasheet prints
# them): each was accepted and made every estimate on the chip nonsense (bf16 989.4 "TFLOP/s" as
# FLOP/s: a 512-token llama-3-8b prefill of 1.03e+10 s).
@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("peak_ops_per_s", "bf16"), 989.4, "peak_ops_per_s.bf16: 989.4 is under 1e+09 operations/s"),  # TFLOP/s
        (("peak_ops_per_s", "fp8"), 1978.9e3, "peak_ops_per_s.fp8: 1.9789e+06 is under"),  # GFLOP/s
        (("memory_bytes",), 80, "memory_bytes: 80 is under 1e+08 bytes"),  # GB
        (("memory_bytes",), 81559, "memory_bytes: 81559 is under"),  # nvidia-smi's MiB
        (("memory_bandwidth_bytes_per_s",), 3.35, "memory_bandwidth_bytes_per_s: 3.35 is under 1e+09"),  # TB/s
        (("interconnect", "network_bandwidth_bytes_per_s"), 400, "network_bandwidth_bytes_per_s: 400 is under"),
        (("interconnect", "domain_bandwidth_bytes_per_s"), 450, "domain_bandwidth_bytes_per_s: 450 is under"),
        (("interconnect", "network_latency_s"), 5, "network_latency_s: 5 s a step is over 0.01 s"),  # us
        (("l2_bytes",), 50, "l2_bytes: 50 is under 100000 bytes"),  # MiB
    ],
)
def test_a_number_in_a_larger_unit_is_refused_naming_the_field(tmp_path, path, value, field):
    entry = _entry("hardware", "h100-sxm")
    *parents, leaf = path
    target = entry
    for key in parents:
        target = target[key]
    target[leaf] = value
    file = _write(tmp_path, "mine.yaml", entry)
    with pytest.raises(InvalidInputError) as caught:
        get_hardware(file)
    message = str(caught.value)
    assert file in message and field in message and "\n" not in message


def test_a_torus_file_chip_in_larger_units_is_refused(tmp_path):
    entry = _entry("hardware", "tpu-v4")
    entry["interconnect"]["link_bandwidth_bytes_per_s"] = 45  # GB/s
    with pytest.raises(InvalidInputError, match="link_bandwidth_bytes_per_s: 45 is under 1e\\+08 bytes/s"):
        get_hardware(_write(tmp_path, "v4.yaml", entry))
    entry = _entry("hardware", "tpu-v4")
    entry["interconnect"]["hop_latency_s"] = 1.0  # us
    with pytest.raises(InvalidInputError, match="hop_latency_s: 1 s a step is over"):
        get_hardware(_write(tmp_path, "v4.yaml", entry))


def test_every_catalog_chip_is_inside_the_unit_bounds():
    """The bounds refuse a unit slip, never a real chip: each catalog figure clears its bound
    by at least 10x (the Xeon's 2.87e+12 FLOP/s against 1e9, the L4's 2.4e+10 B against 1e8)."""
    from cost_models.hardware import (
        MAX_LATENCY_S,
        MIN_LINK_BANDWIDTH_BYTES_PER_S,
        MIN_MEMORY_BANDWIDTH_BYTES_PER_S,
        MIN_MEMORY_BYTES,
        MIN_PEAK_OPS_PER_S,
    )

    for chip in hardware_catalog().values():
        peaks = [v for v in chip.peak_ops_per_s.model_dump().values() if v is not None]
        assert min(peaks) >= 10 * MIN_PEAK_OPS_PER_S, chip.name
        assert chip.memory_bytes >= 10 * MIN_MEMORY_BYTES, chip.name
        assert chip.memory_bandwidth_bytes_per_s >= 10 * MIN_MEMORY_BANDWIDTH_BYTES_PER_S, chip.name
        net = chip.interconnect.model_dump()
        links = [v for k, v in net.items() if k.endswith("bandwidth_bytes_per_s")]
        latencies = [v for k, v in net.items() if k.endswith("latency_s")]
        assert min(links) >= 10 * MIN_LINK_BANDWIDTH_BYTES_PER_S, chip.name
        assert max(latencies) <= MAX_LATENCY_S / 10, chip.name


@pytest.mark.parametrize(
    ("path", "typo", "meant"),
    [
        ((), "memory_bandwith_bytes_per_s", "memory_bandwidth_bytes_per_s"),
        (("interconnect",), "domain_latncy_s", "domain_latency_s"),
    ],
)
def test_a_misspelt_field_is_named_with_the_spelling_it_meant(tmp_path, path, typo, meant):
    """A misspelt required field was reported as the correct name 'missing' (pydantic lists the
    missing field before the unknown one): the line to fix was not named."""
    entry = _entry("hardware", "h100-sxm")
    target = entry
    for key in path:
        target = target[key]
    target[typo] = target.pop(meant)
    file = _write(tmp_path, "mine.yaml", entry)
    with pytest.raises(InvalidInputError) as caught:
        get_hardware(file)
    message = str(caught.value)
    assert f"{typo}: unknown field; did you mean {meant}? rename it" in message
    assert file in message and "\n" not in message
