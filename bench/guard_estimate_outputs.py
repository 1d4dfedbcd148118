"""Guard for speed work on ``estimate`` and ``serve``: every output must stay bit-identical.

Run on demand (not a pytest test); ``PYTHONPATH`` picks the code under test:

    PYTHONPATH=<base worktree> python bench/guard_estimate_outputs.py save BASE.npz
    PYTHONPATH=<branch>        python bench/guard_estimate_outputs.py check BASE.npz

Scores a broad draw of deployments (the dense mix of bench_estimate.py, the MoE PP/EP/DP mix of
bench_parallel.py, and all catalog models with MLA, sliding windows, every weight, activation and
KV format, mixed layouts and shardings; h100-sxm, h200, b200, a100-80gb, tpu-v4; no profile and
1-3 profiles each; ``overlap="added"``; 1-7-row calls, a 230,000-row call, a call of 2,000
deployments each repeated 10 times, and two of 2,000 repeated 8 times with one phase's layout and
attention sharding drawn per row) and ``serve``
(closed and open loop, calibrated or not), flattens every dataclass field and property to arrays,
and either saves them or compares them with ``np.array_equal`` (dtype, shape, NaN positions and
signed zeros included).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_estimate
import bench_parallel
import bench_serving
import cost_models
from cost_models import get_hardware, get_model
from cost_models.calibration import resolve_calibration
from cost_models.deployment import estimate
from cost_models.deployments import Deployments, make_deployments
from cost_models.dtypes import BF16, FP4, FP8, INT4, INT8
from cost_models.models import model_catalog
from cost_models.partitioning import ATTENTION_SHARDINGS, FFN_LAYOUTS
from cost_models.serving import serve
from cost_models.topology import network_for


def _flatten(out: dict[str, np.ndarray], prefix: str, obj: object) -> None:
    if isinstance(obj, np.ndarray) or np.isscalar(obj):
        out[prefix] = np.array(obj, copy=True)
        return
    if dataclasses.is_dataclass(obj):
        for field in dataclasses.fields(obj):
            _flatten(out, f"{prefix}.{field.name}", getattr(obj, field.name))
        for name in dir(type(obj)):
            if isinstance(getattr(type(obj), name, None), property):
                try:
                    value = getattr(obj, name)
                except Exception as error:  # a property that raises must keep raising the same
                    out[f"{prefix}.{name}"] = np.array("EXC " + repr(error))
                else:
                    _flatten(out, f"{prefix}.{name}", value)
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(out, f"{prefix}[{key}]", value)
        return
    if isinstance(obj, (tuple, list)):
        for i, value in enumerate(obj):
            _flatten(out, f"{prefix}[{i}]", value)
        return
    out[prefix] = np.array(repr(obj))


def broad(n: int, hardware, seed: int) -> Deployments:
    """All catalog models, meshes of 1-256 chips, every format the chip has, mixed layouts."""
    rng = np.random.default_rng(seed)
    network = network_for(hardware)
    meshes = np.array([m for chips in (1, 2, 4, 8, 16, 64, 256) for m in network.legal_meshes(chips)], dtype=np.float64)
    catalog = [get_model(name) for name in model_catalog()]
    formats = [BF16, FP8, INT8, INT4] + ([FP4] if hardware.has_format(FP4) else [])
    return make_deployments(
        catalog,
        hardware,
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


def other_phase_drawn(d: Deployments, phase: str, seed: int, copies: int = 8) -> Deployments:
    """``copies`` copies of ``d`` in which ``phase``'s FFN layout and attention sharding are drawn
    afresh per row: every other column repeats ``copies`` times."""
    rng = np.random.default_rng(seed)
    tiled = d.take(np.tile(np.arange(len(d)), copies))
    n = len(tiled)
    return dataclasses.replace(
        tiled,
        **{
            f"{phase}_ffn_layout": rng.integers(0, len(FFN_LAYOUTS), n),
            f"{phase}_attn_sharding": rng.integers(0, len(ATTENTION_SHARDINGS), n),
        },
    )


CASES = (
    ("h100-sxm", ("none", "h100-sxm-vllm", "h100-sxm-sglang", "h100-sxm-trtllm")),
    ("h200", ("none", "h200-vllm", "h200-trtllm")),
    ("tpu-v4", ("none", "tpu-v4-jax")),
    ("b200", ("none", "b200-vllm")),
    ("a100-80gb", ("a100-80gb-sglang",)),
)


def outputs() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    def keep(name: str, compute, *args, **kwargs) -> None:
        try:
            _flatten(out, name, compute(*args, **kwargs))
        except Exception as error:
            out[name] = np.array("EXC " + repr(error))

    for hardware_name, profiles in CASES:
        hardware = get_hardware(hardware_name)
        sets = {
            "bench": bench_estimate.deployments(30_000, hardware, 20261121),
            "broad": broad(20_000, hardware, 7),
            # 2,000 deployments 10 times each: calls whose rows repeat, which the distinct-row
            # paths (cost_models/distinct.py: the dense GEMMs, the layer collectives) take.
            "repeated": broad(2_000, hardware, 11).take(np.tile(np.arange(2_000), 10)),
            # The same, but each copy with its own draw of one phase's layout and attention
            # sharding: the other phase's rows repeat (deployment._phase_times_of_distinct).
            "prefill-repeats": other_phase_drawn(broad(2_000, hardware, 12), "decode", 13),
            "decode-repeats": other_phase_drawn(broad(2_000, hardware, 14), "prefill", 15),
        }
        if hardware_name != "tpu-v4":
            sets["parallel"] = bench_parallel.deployments(20_000, hardware, 20261202)
        for set_name, d in sets.items():
            for profile_name in profiles:
                profile = resolve_calibration(profile_name, hardware.name)
                key = f"{hardware_name}/{set_name}/{profile_name}"
                keep(key, estimate, d, calibration=profile)
                if set_name == "broad":
                    keep(key + "/added", estimate, d, calibration=profile, overlap="added", kv_memory_fraction=0.3)
                    for rows in (1, 2, 3, 7):
                        keep(f"{key}/small{rows}", estimate, d.take(slice(0, rows)), calibration=profile)
        if hardware_name == "h200":
            big = bench_estimate.deployments(230_000, hardware, 3)
            keep("h200/big/none", estimate, big)
            keep("h200/big/vllm", estimate, big, calibration=resolve_calibration("h200-vllm", "h200"))
    for closed in (True, False):
        d, workload = bench_serving.configurations(20_000, 5, closed)
        for profile_name in ("none", "h100-sxm-trtllm", "h100-sxm-vllm"):
            profile = resolve_calibration(profile_name, "h100-sxm")
            keep(f"serve/{closed}/{profile_name}", serve, d, workload, calibration=profile)
            keep(f"serve/{closed}/{profile_name}/prefill", serve, d, workload, calibration=profile, phase="prefill")
    return out


def same(x: np.ndarray, y: np.ndarray) -> bool:
    if x.dtype != y.dtype or x.shape != y.shape:
        return False
    if x.dtype.kind in "fc":
        return bool(
            np.array_equal(x, y, equal_nan=True)
            and np.array_equal(np.isnan(x), np.isnan(y))
            and np.array_equal(np.signbit(x.real), np.signbit(y.real))
        )
    return bool(np.array_equal(x, y))


def main(argv: list[str], outputs=outputs) -> int:
    """``save PATH`` writes ``outputs()``; ``check PATH`` compares them with the saved ones, bit
    for bit (guard_serving_outputs.py passes its own ``outputs``)."""
    mode, path = argv
    print("code:", cost_models.__file__, file=sys.stderr)
    new = outputs()
    if mode == "save":
        np.savez(path, **new)  # type: ignore[arg-type]
        print(len(new), "entries saved", file=sys.stderr)
        return 0
    with np.load(path) as saved:
        base = {key: saved[key] for key in saved.files}
    bad = sorted(set(base) ^ set(new))
    bad += [key for key in base if key in new and not same(base[key], new[key])]
    values = sum(v.size for v in base.values())
    print(f"{len(base)} entries ({values:,} values) compared, {len(bad)} differ")
    for key in bad[:20]:
        print("DIFF", key)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
