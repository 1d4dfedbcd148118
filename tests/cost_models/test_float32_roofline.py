"""The pure roofline of ``estimate`` in float32 (cost_models.deployment.ROOFLINE_DTYPE): its
operator tables and per-chip arithmetic float32, what leaves it float64, every output within
float32's rounding of the float64 roofline's, no decision changed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import cost_models.deployment as deployment
from cost_models import get_hardware, get_model
from cost_models.deployment import estimate, rank_view, stage_configs
from cost_models.deployments import make_deployments
from cost_models.dtypes import BF16, FP4, FP8, INT4, INT8
from cost_models.inference_configs import DECODE
from cost_models.models import model_catalog
from cost_models.operators import operator_costs
from cost_models.partitioning import ATTENTION_SHARDINGS, FFN_LAYOUTS
from cost_models.topology import network_for

#: What float32's 24-bit mantissa leaves after a slot's chain of ~8 operations and the sums:
#: bench/guard_estimate_outputs.py check --rtol on its broader draws: at most 6.2e-7 (a decode
#: step's memory term, summed in float32) outside memory.max_context_tokens, a floor.
RTOL = 2e-6


def _draw(chip_name: str, n: int, seed: int):
    """Every catalog model, meshes of 1-256 chips, every format the chip has, mixed layouts."""
    rng = np.random.default_rng(seed)
    chip = get_hardware(chip_name)
    network = network_for(chip)
    meshes = np.array([m for chips in (1, 2, 8, 64, 256) for m in network.legal_meshes(chips)], dtype=np.float64)
    catalog = [get_model(name) for name in model_catalog()]
    formats = [BF16, FP8, INT8, INT4] + ([FP4] if chip.has_format(FP4) else [])
    return make_deployments(
        catalog,
        chip,
        model_index=rng.integers(0, len(catalog), n),
        mesh=meshes[rng.integers(0, len(meshes), n)],
        batch=2 ** rng.integers(0, 10, n),
        prompt_len=np.rint(2.0 ** rng.uniform(0, 15, n)),
        gen_len=np.rint(2.0 ** rng.uniform(0, 11, n)),
        weight_dtype=rng.choice(formats, n),
        act_dtype=rng.choice([BF16, BF16, FP8, INT8], n),
        kv_dtype=rng.choice([BF16, FP8, INT8], n),
        prefill_ffn_layout=rng.integers(0, len(FFN_LAYOUTS), n),
        decode_ffn_layout=rng.integers(0, len(FFN_LAYOUTS), n),
        prefill_attn_sharding=rng.integers(0, len(ATTENTION_SHARDINGS), n),
        decode_attn_sharding=rng.integers(0, len(ATTENTION_SHARDINGS), n),
        flash_attention=rng.random(n) < 0.5,
    )


def _fields(obj: object, prefix: str = "") -> dict[str, np.ndarray]:
    """Every array field of an estimate's dataclasses, by dotted name."""
    out: dict[str, np.ndarray] = {}
    for field in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value):
            out.update(_fields(value, f"{prefix}{field.name}."))
        elif isinstance(value, np.ndarray):
            out[prefix + field.name] = value
    return out


def test_estimate_builds_its_roofline_tables_in_float32(monkeypatch):
    # estimate's pure roofline (BlockedCosts) asks operator_costs for float32 tables, and its
    # outputs are float64 all the same.
    seen = []
    built = deployment.operator_costs

    def recording(*args, **kwargs):
        ops = built(*args, **kwargs)
        seen.append(ops.flops.dtype)
        return ops

    monkeypatch.setattr(deployment, "operator_costs", recording)
    result = estimate(_draw("h100-sxm", 300, 1))
    assert seen and all(dtype == np.float32 for dtype in seen)
    for name, value in _fields(result).items():
        assert value.dtype != np.float32, name


@pytest.mark.parametrize("chip", ["h100-sxm", "tpu-v4", "b200"])
def test_float32_roofline_is_the_float64_one_to_float32_rounding(monkeypatch, chip):
    # Every float output within RTOL of the float64 roofline's (which ROOFLINE_DTYPE float64 gives
    # bit for bit); every boolean (fits) the same; the longest context that fits, a floor of
    # ~1e4-1e6 tokens, at most one token apart (its argument within ~1e-7 of a whole number).
    d = _draw(chip, 3000, 7)
    results = {}
    for dtype in (np.float64, np.float32):
        monkeypatch.setattr(deployment, "ROOFLINE_DTYPE", dtype)
        results[dtype] = _fields(estimate(d))
    wide, narrow = results[np.float64], results[np.float32]
    assert wide.keys() == narrow.keys()
    largest = 0.0
    for name, x in wide.items():
        y = narrow[name]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind != "f":
            np.testing.assert_array_equal(x, y, err_msg=name)
            continue
        np.testing.assert_array_equal(np.isfinite(x), np.isfinite(y), err_msg=name)
        finite = np.isfinite(x)
        if name == "memory.max_context_tokens":
            assert np.max(np.abs(x[finite] - y[finite]), initial=0.0) <= 1.0
            continue
        np.testing.assert_allclose(y[finite], x[finite], rtol=RTOL, atol=0.0, err_msg=name)
        scale = np.maximum(np.abs(x[finite]), np.abs(y[finite]))
        moved = scale > 0
        if moved.any():
            largest = max(largest, float(np.max(np.abs(x[finite] - y[finite])[moved] / scale[moved])))
    assert 0.0 < largest <= RTOL  # (rounded: the float32 path ran)


def test_float32_operator_tables_are_the_float64_ones_rounded():
    # operator_costs(dtype=np.float32): every table float32 and within a few float32 roundings of
    # the float64 one; the presence, the compute formats and the rows known equal unchanged.
    d = _draw("h200", 2000, 3)
    view = rank_view(d)
    prefill = stage_configs(view.inference_configs("prefill", d.prompt_len), d.pipeline_parallel)
    for configs in (prefill, prefill.at_phase(DECODE, d.prompt_len + d.gen_len / 2.0)):
        wide, narrow = operator_costs(configs), operator_costs(configs, dtype=np.float32)
        for name in ("flops", "weight_bytes", "act_read_bytes", "act_write_bytes", "kv_read_bytes", "kv_write_bytes"):
            x, y = getattr(wide, name), getattr(narrow, name)
            assert y.dtype == np.float32, name
            np.testing.assert_allclose(y, x, rtol=1e-6, atol=0.0, err_msg=name)
        np.testing.assert_array_equal(narrow.present, wide.present)
        np.testing.assert_array_equal(narrow.compute_dtype, wide.compute_dtype)
        np.testing.assert_array_equal(narrow.repeats, wide.repeats)
        assert narrow.same_rows() == wide.same_rows()
        for name in ("act_read_bytes", "act_write_bytes"):
            assert narrow.residual_rows(name) == wide.residual_rows(name)
