"""Guard for speed work on ``estimate`` and ``serve``: every output must stay bit-identical.

Run on demand (not a pytest test); ``PYTHONPATH`` picks the code under test:

    PYTHONPATH=<base worktree> python bench/guard_estimate_outputs.py save BASE.npz
    PYTHONPATH=<branch>        python bench/guard_estimate_outputs.py check BASE.npz
    PYTHONPATH=<branch>        python bench/guard_estimate_outputs.py check BASE.npz --rtol 1e-5

Scores a broad draw of deployments (the dense mix of bench_estimate.py, the MoE PP/EP/DP mix of
bench_parallel.py, and all catalog models with MLA, sliding windows, every weight, activation and
KV format, mixed layouts and shardings; h100-sxm, h200, b200, a100-80gb, tpu-v4; no profile and
1-3 profiles each; ``overlap="added"``; 1-7-row calls, a 230,000-row call, a call of 2,000
deployments each repeated 10 times, and two of 2,000 repeated 8 times with one phase's layout and
attention sharding drawn per row) and ``serve``
(closed and open loop, calibrated or not), flattens every dataclass field and property to arrays,
and either saves them or compares them with ``np.array_equal`` (dtype, shape, NaN positions and
signed zeros included). ``--rtol R`` (for a change that is meant to round differently, such as
the float32 roofline, deployment.ROOFLINE_DTYPE): a float entry passes where every value is
within R of the saved one relatively (|a - b| <= R max(|a|, |b|), NaN where NaN, infinities
equal); every other entry (booleans, integers, messages) must still be equal. A float entry of
whole numbers (a floor: memory.max_context_tokens) whose values move by at most 1 passes too and
is listed apart, with how many values stepped: a floor whose argument sits within R of a whole
number steps by one. The report gives the largest relative difference seen, where, and every
boolean entry that flips and how often.
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


def relative_difference(x: np.ndarray, y: np.ndarray) -> float:
    """The largest |x - y| / max(|x|, |y|) of two float arrays of one shape (0 where both are 0
    or equal; inf where one is NaN or infinite and the other is not the same)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    equal = (x == y) | (np.isnan(x) & np.isnan(y))
    if equal.all():
        return 0.0
    x, y = x[~equal], y[~equal]
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("inf")
    return float(np.max(np.abs(x - y) / np.maximum(np.abs(x), np.abs(y))))


def within(x: np.ndarray, y: np.ndarray, rtol: float) -> tuple[bool, float]:
    """(whether ``y`` matches ``x`` to ``rtol``, the relative difference of float entries):
    floats relatively, every other kind (and dtype and shape) exactly."""
    if x.dtype != y.dtype or x.shape != y.shape:
        return False, float("inf")
    if x.dtype.kind in "fc" and x.size:
        difference = max(relative_difference(x.real, y.real), relative_difference(x.imag, y.imag))
        return difference <= rtol, difference
    return bool(np.array_equal(x, y)), 0.0


def floor_steps(x: np.ndarray, y: np.ndarray) -> int | None:
    """How many values of two float arrays of whole numbers (infinities and NaN where equal)
    differ, where each differs by exactly 1; None where they are not such arrays."""
    if x.dtype != y.dtype or x.shape != y.shape or x.dtype.kind != "f":
        return None
    finite = np.isfinite(x)
    if not np.array_equal(finite, np.isfinite(y)) or not same(x[~finite], y[~finite]):
        return None
    a, b = x[finite], y[finite]
    if not (np.array_equal(a, np.floor(a)) and np.array_equal(b, np.floor(b))):
        return None
    step = np.abs(a - b)
    return int(np.count_nonzero(step)) if bool(np.all(step <= 1.0)) else None


def main(argv: list[str], outputs=outputs) -> int:
    """``save PATH`` writes ``outputs()``; ``check PATH`` compares them with the saved ones, bit
    for bit, or with ``--rtol R`` floats to R relatively and the rest exactly
    (guard_serving_outputs.py passes its own ``outputs``)."""
    rtol = None
    if len(argv) == 4 and argv[2] == "--rtol":
        rtol = float(argv[3])
        argv = argv[:2]
    mode, path = argv
    if rtol is not None and mode != "check":
        raise SystemExit("--rtol goes with check")
    print("code:", cost_models.__file__, file=sys.stderr)
    new = outputs()
    if mode == "save":
        np.savez(path, **new)  # type: ignore[arg-type]
        print(len(new), "entries saved", file=sys.stderr)
        return 0
    with np.load(path) as saved:
        base = {key: saved[key] for key in saved.files}
    bad = sorted(set(base) ^ set(new))
    values = sum(v.size for v in base.values())
    if rtol is None:
        bad += [key for key in base if key in new and not same(base[key], new[key])]
        print(f"{len(base)} entries ({values:,} values) compared, {len(bad)} differ")
        for key in bad[:20]:
            print("DIFF", key)
        return 1 if bad else 0
    rounded, flips, steps = 0, [], []
    differences: list[tuple[float, str]] = []
    for key in base:
        if key not in new or same(base[key], new[key]):
            continue
        ok, difference = within(base[key], new[key], rtol)
        if base[key].dtype == bool and base[key].shape == new[key].shape:
            flips.append((key, int(np.count_nonzero(base[key] != new[key])), base[key].size))
        if not ok:
            stepped = floor_steps(base[key], new[key])
            if stepped is None:
                bad.append(key)
            else:
                steps.append((key, stepped, base[key].size))
            continue
        rounded += 1
        differences.append((difference, key))
    print(
        f"{len(base)} entries ({values:,} values) compared: {len(base) - rounded - len(steps) - len(bad)} bit "
        f"for bit, {rounded} within rtol {rtol:g}, {len(steps)} whole numbers stepping by one, {len(bad)} differ "
        "beyond these (or at all, for non-floats)"
    )
    differences.sort(reverse=True)
    whole = [(d, key) for d, key in differences if floor_steps(base[key], base[key]) is not None]
    other = [(d, key) for d, key in differences if floor_steps(base[key], base[key]) is None]
    for label, found in (("whole-number", whole), ("other", other)):
        print(
            f"largest relative differences within rtol, {label} entries ({len(found)}):",
            ", ".join(f"{d:.3g} ({key})" for d, key in found[:4]) or "none",
        )
    print(f"median of the entries' largest: {np.median([d for d, _ in differences]) if differences else 0:.3g}")
    for key, count, size in steps:
        print(f"STEP {key}: {count} of {size} values by one")
    print(f"boolean entries that flip: {len(flips)}")
    for key, count, size in flips[:20]:
        print(f"FLIP {key}: {count} of {size}")
    for key in bad[:20]:
        difference = within(base[key], new[key], rtol)[1] if key in base and key in new else float("nan")
        print(f"DIFF {key} (relative {difference:.3g})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
