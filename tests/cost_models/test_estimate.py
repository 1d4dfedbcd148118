"""``tuner estimate`` and the multi-chip deployment model (cost_models.deployment).

CLI tests call ``tuner.cli.main(argv)`` in-process (as tests/tuner/test_cli.py does). Expected numbers
are derived by hand from the model shapes in ``cost_models/catalog/models.yaml``, the chips in
``cost_models/catalog/hardware.yaml`` and Pope et al. 2022 (``/work/shared/reference/pope2022.yaml``):

PaLM 540B: 118 layers, d_model E = 18432, d_ff F = 73728, 48 heads x d_head 256, one KV head
(multiquery), SwiGLU, parallel block, vocab 256128, tied embeddings. Pope's parameter count:
E (3F + 2 H d_head + 2 d_head) per layer + V E once
= 18432 x (221184 + 24576 + 512) = 4,539,285,504 per layer; x 118 = 535,635,689,472;
+ 256128 x 18432 = 4,720,951,296 -> 540,356,640,768 (the paper's 540.36e9).
"""

from __future__ import annotations

import functools
import itertools
import json
from typing import Any

import numpy as np
import pytest

from cli_helpers import assert_one_error_line, run_cli
from cost_models.deployment import estimate, estimate_one
from cost_models.deployments import make_deployments
from cost_models.dtypes import BF16, INT8
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.models import ModelSpec, get_model
from cost_models.partitioning import ATTENTION_SHARDINGS, FFN_LAYOUTS

# The by-hand numbers below are the pure roofline's: no calibration profile.
estimate_one = functools.partial(estimate_one, calibration="none")

PALM_540B_PARAMS = 118 * 18432 * (3 * 73728 + 2 * 48 * 256 + 2 * 256) + 256128 * 18432
assert PALM_540B_PARAMS == 540_356_640_768
TPU_V4_PEAK = 275.0e12
TPU_V4_HBM = 34359738368  # 32 GiB

ACCEPTANCE = (
    "estimate",
    "--model",
    "palm-540b",
    "--hardware",
    "tpu-v4",
    "--chips",
    "64",
    "--phase",
    "decode",
    "--batch",
    "64",
    "--prompt-len",
    "2048",
    "--gen-len",
    "64",
    "--ffn-layout",
    "ws_2d",
    "--attn-sharding",
    "batch",
    "--weight-bits",
    "8",
    "--calibration",
    "none",
)

PREFILL_KEYS = {"latency_s", "mfu", "compute_s", "memory_s", "comm_s", "cost_chip_s_per_token"}
DECODE_KEYS = PREFILL_KEYS | {"step_latency_s"}
MEMORY_KEYS = {
    "weights_bytes_per_chip",
    "kv_cache_bytes_per_chip",
    "activation_bytes_per_chip",
    "total_bytes_per_chip",
    "capacity_bytes_per_chip",
    "fits",
    "max_context_tokens",
}


# --- helpers -------------------------------------------------------------------------------------


def estimate_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    assert err == ""
    return json.loads(out)


def legal_v4_shape(mesh: tuple[int, ...], chips: int) -> bool:
    """Cloud TPU v4 slice rule, written out: axes multiply to the chips, each 1, 2 or a multiple
    of 4, none longer than the pod's 16, and no flat (length-1) axis above 4 chips."""
    return (
        int(np.prod(mesh)) == chips
        and all(a in (1, 2) or a % 4 == 0 for a in mesh)
        and max(mesh) <= 16
        and (chips <= 4 or 1 not in mesh)
    )


def matmul_flops_per_token(model: str) -> float:
    """2 x the block matrices' parameters (q, k, v, out and the FFN), lm_head and attention
    scores left out: a lower bound on the FLOPs one token costs."""
    m = sweep_model(model)
    dq, dkv = m.heads * m.d_head, m.kv_heads * m.d_head
    ffn = (3 if m.ffn == "swiglu" else 2) * m.d_model * m.d_ff
    return 2.0 * m.layers * (m.d_model * (2 * dq + 2 * dkv) + ffn)


# --- the acceptance command ------------------------------------------------------------------------


def test_acceptance_command_json(capsys):
    report = estimate_json(capsys, *ACCEPTANCE)
    assert "prefill" not in report
    assert DECODE_KEYS <= set(report["decode"])
    assert MEMORY_KEYS <= set(report["memory"])
    assert "mesh" in report
    assert report["model"] == "palm-540b" and report["hardware"] == "tpu-v4" and report["chips"] == 64
    assert report["weight_dtype"] == "int8"
    for key in DECODE_KEYS:
        assert isinstance(report["decode"][key], float) and report["decode"][key] > 0, key
    assert isinstance(report["memory"]["fits"], bool)
    assert isinstance(report["memory"]["max_context_tokens"], int)


def test_acceptance_command_both_phases(capsys):
    args = [a if a != "decode" else "both" for a in ACCEPTANCE]
    report = estimate_json(capsys, *args)
    assert PREFILL_KEYS <= set(report["prefill"])
    assert DECODE_KEYS <= set(report["decode"])
    assert MEMORY_KEYS <= set(report["memory"])
    # --phase prefill: no decode section.
    args = [a if a != "decode" else "prefill" for a in ACCEPTANCE]
    report = estimate_json(capsys, *args)
    assert "decode" not in report
    assert PREFILL_KEYS <= set(report["prefill"])


def test_acceptance_command_table(capsys):
    code, out, err = run_cli(capsys, *ACCEPTANCE)
    assert code == 0, err
    assert err == ""
    assert "palm-540b" in out and "decode" in out and "4x4x4" in out
    assert "fits" in out
    code, out, err = run_cli(capsys, *[a if a != "decode" else "both" for a in ACCEPTANCE])
    assert code == 0, err
    assert "prefill" in out and "decode" in out


def test_acceptance_numbers_by_hand(capsys):
    report = estimate_json(capsys, *ACCEPTANCE, "--mesh", "4x4x4")
    memory, decode = report["memory"], report["decode"]
    assert report["mesh"] == "4x4x4" and report["mesh_chosen"] is False
    # int8 weights, 1 byte each, split over all 64 chips: 540,356,640,768 / 64 = 8,443,072,512 B,
    # except wk and wv of the single KV head [E=18432, K=1, D=256]: in 2D weight-stationary E
    # splits over x (4) and K=1 cannot split over yz (16), so they are replicated 16 times:
    # 118 layers x 2 x 18432 x 256 x (1/4 - 1/64) = 260,997,120 B more.
    # The (tied) embedding stays bf16, as the authors' code stores it (google-research
    # scaling_transformer_inference_efficiency/weights.py, QuantizedWeights: int8 layers, a
    # bfloat16 embedding): 256128 x 18432 x 1 byte more over 64 chips = 73,764,864 B.
    kv_weights_replicated = 118 * 2 * 18432 * 256 * (1 / 4 - 1 / 64)
    embedding_bf16 = 256128 * 18432 / 64
    assert memory["weights_bytes_per_chip"] == pytest.approx(
        PALM_540B_PARAMS / 64 + kv_weights_replicated + embedding_bf16, rel=1e-12
    )
    assert memory["weights_bytes_per_chip"] == pytest.approx(8_443_072_512 + 260_997_120 + 73_764_864, rel=1e-12)
    # KV cache, batch-sharded multiquery: K and V x 118 layers x 1 head x 256 x 2 bytes (bf16)
    # x batch 64 x (2048 + 64) context / 64 chips = 2 x 118 x 256 x 2 x 2112 = 255,197,184 B.
    assert memory["kv_cache_bytes_per_chip"] == pytest.approx(2 * 118 * 256 * 2 * 64 * (2048 + 64) / 64, rel=1e-12)
    assert memory["kv_cache_bytes_per_chip"] == pytest.approx(255_197_184, rel=1e-12)
    assert memory["capacity_bytes_per_chip"] == TPU_V4_HBM
    assert memory["total_bytes_per_chip"] == pytest.approx(
        memory["weights_bytes_per_chip"] + memory["kv_cache_bytes_per_chip"] + memory["activation_bytes_per_chip"],
        rel=1e-12,
    )
    assert memory["fits"] is True  # ~9 GB of 32 GiB
    # 64 steps of one token each.
    assert decode["latency_s"] == pytest.approx(decode["step_latency_s"] * 64, rel=1e-12)
    # Tokens: batch x gen = 64 x 64 = 4096. Cost = chips x latency / tokens.
    tokens = 64 * 64
    assert decode["cost_chip_s_per_token"] == pytest.approx(64 * decode["latency_s"] / tokens, rel=1e-12)
    # MFU = 2 x params x tokens / (chips x 275e12 x latency): in decode every token runs every
    # block and the (tied) lm_head, i.e. all 540.36e9 parameters.
    assert decode["mfu"] == pytest.approx(
        2 * PALM_540B_PARAMS * tokens / (64 * TPU_V4_PEAK * decode["latency_s"]), rel=1e-9
    )
    assert 0 < decode["mfu"] <= 1


@pytest.mark.parametrize("layout", ["wg_x", "wg_xy", "wg_xyz"])
def test_weight_gathered_layouts_hold_two_block_shards_in_flight(capsys, layout):
    """A weight-gathered layout moves each block's weights between chips while it runs (Pope et
    al. 3.2.3): the memory counts what is in flight, not only the shards at rest (before, every
    wg layout showed ws_2d's 8,777,834,496 B of weights). Pope et al.'s Looped CollectiveEinsum
    (3.5; the authors' collectives.matmul_collective_weights_gather_q_wi passes each chip's shard
    round the torus) holds 2 shards of a block at once: the one multiplied and the one arriving.
    One PaLM 540B block, stored as in ws_2d on 4x4x4 (E over x = 4, heads and F over yz = 16):
    wq and wo 18432 x 48 x 256 / 64 = 3,538,944 each; wk and wv 18432 x 256 / 4 (one KV head,
    not split over yz) = 1,179,648 each; w_gate, w_up, w_down 18432 x 73728 / 64 = 21,233,664
    each: 73,138,176 elements, int8 1 B, x 2 buffers = 146,276,352 B."""
    block_shard = 2 * 18432 * 48 * 256 / 64 + 2 * 18432 * 256 / 4 + 3 * 18432 * 73728 / 64
    assert block_shard == 73_138_176
    args = [a if a != "ws_2d" else layout for a in ACCEPTANCE]
    report = estimate_json(capsys, *args, "--mesh", "4x4x4")
    stationary = estimate_json(capsys, *ACCEPTANCE, "--mesh", "4x4x4")["memory"]
    memory = report["memory"]
    at_rest = 8_443_072_512 + 260_997_120 + 73_764_864  # test_acceptance_numbers_by_hand
    assert stationary["weights_bytes_per_chip"] == pytest.approx(at_rest, rel=1e-12)
    assert memory["weights_bytes_per_chip"] == pytest.approx(at_rest + 2 * block_shard * 1, rel=1e-12)
    assert memory["weights_bytes_per_chip"] - stationary["weights_bytes_per_chip"] == pytest.approx(
        146_276_352, rel=1e-12
    )
    # fits and the longest context see it: the KV budget is 146 MB smaller.
    assert memory["total_bytes_per_chip"] == pytest.approx(stationary["total_bytes_per_chip"] + 146_276_352, rel=1e-12)
    assert memory["max_context_tokens"] < stationary["max_context_tokens"]


def test_table2_weight_gathered_prefill_still_fits(capsys):
    """Pope et al. Table 2 ran PaLM 540B's high-throughput prefill in wg_xyz, bf16, batch 512 on
    64 TPU v4 (MFU 76%): it fits. Its weights at rest, 540.36e9 x 2 B / 64 plus the replicated
    KV-head projections, and 2 bf16 block shards in flight, 2 x 73,138,176 x 2 B = 292,552,704 B.
    Two whole gathered blocks instead (2 x 4.539e9 x 2 B = 18.2 GB) would not: 17.4 + 18.2 GB is
    over 32 GiB before any KV cache."""
    common = ("--model", "palm-540b", "--hardware", "tpu-v4", "--mesh", "4x4x4")
    common += ("--batch", "512", "--prompt-len", "2048", "--gen-len", "64", "--attn-sharding", "batch")
    common += ("--weight-bits", "16", "--calibration", "none", "--decode-ffn-layout", "ws_2d")
    gathered = estimate_json(capsys, "estimate", *common, "--prefill-ffn-layout", "wg_xyz")["memory"]
    stationary = estimate_json(capsys, "estimate", *common, "--prefill-ffn-layout", "ws_2d")["memory"]
    kv_weights_replicated = 118 * 2 * 18432 * 256 * (1 / 4 - 1 / 64)
    at_rest = (PALM_540B_PARAMS / 64 + kv_weights_replicated) * 2
    assert stationary["weights_bytes_per_chip"] == pytest.approx(at_rest, rel=1e-12)
    assert gathered["weights_bytes_per_chip"] == pytest.approx(at_rest + 292_552_704, rel=1e-12)
    assert gathered["fits"] is True
    one_block_gathered = 18432 * (3 * 73728 + 2 * 48 * 256 + 2 * 256) * 2
    assert at_rest + 2 * one_block_gathered > TPU_V4_HBM


def test_prefill_numbers_by_hand(capsys):
    report = estimate_json(
        capsys,
        "estimate",
        "--model",
        "palm-540b",
        "--hardware",
        "tpu-v4",
        "--chips",
        "64",
        "--mesh",
        "4x4x4",
        "--phase",
        "prefill",
        "--batch",
        "1",
        "--prompt-len",
        "2048",
        "--gen-len",
        "1",
        "--weight-bits",
        "8",
    )
    prefill = report["prefill"]
    tokens = 1 * 2048
    assert prefill["cost_chip_s_per_token"] == pytest.approx(64 * prefill["latency_s"] / tokens, rel=1e-12)
    # MFU counts the matmuls that run: the 118 blocks for every prompt token (E(3F + 2 H d_head +
    # 2 d_head) each, Pope et al.'s formula) and the lm_head (V x E) for the last position only.
    block = 118 * 18432 * (3 * 73728 + 2 * 48 * 256 + 2 * 256)
    head = 256128 * 18432
    assert block + head == PALM_540B_PARAMS  # tied embedding: the lm_head is the embedding
    assert prefill["mfu"] == pytest.approx(
        2 * (block * tokens + head * 1) / (64 * TPU_V4_PEAK * prefill["latency_s"]), rel=1e-9
    )
    # Compute floor: 2 x block params x 2048 tokens / (64 x 275e12) s.
    floor = matmul_flops_per_token("palm-540b") * tokens / (64 * TPU_V4_PEAK)
    assert prefill["latency_s"] >= floor
    assert prefill["compute_s"] >= floor


def test_head_sharded_kv_by_hand(capsys):
    # Head-sharded multiquery: the one KV head is on every chip, no split:
    # 2 x 118 x 256 x 2 bytes x batch 64 x 2112 = 16,332,619,776 B per chip.
    report = estimate_json(capsys, *[a if a != "batch" else "head" for a in ACCEPTANCE], "--mesh", "4x4x4")
    assert report["attn_sharding"]["decode"] == "head"
    assert report["memory"]["kv_cache_bytes_per_chip"] == pytest.approx(16_332_619_776, rel=1e-12)


def test_kv_memory_fraction_sets_max_context(capsys):
    # 30% of 32 GiB for the KV cache (Pope et al. Table 1), bf16 weights, batch 128, batch-sharded:
    # per token of context 2 x 118 x 256 x 2 x 128 / 64 = 241,664 B per chip;
    # 0.3 x 34,359,738,368 / 241,664 = 42,653.6 -> 42,653 tokens (the paper's "43000").
    report = estimate_json(
        capsys,
        "estimate",
        "--model",
        "palm-540b",
        "--hardware",
        "tpu-v4",
        "--chips",
        "64",
        "--mesh",
        "4x4x4",
        "--batch",
        "128",
        "--prompt-len",
        "2048",
        "--gen-len",
        "64",
        "--attn-sharding",
        "batch",
        "--kv-memory-fraction",
        "0.3",
    )
    assert report["memory"]["max_context_tokens"] == 42653


def test_kv_memory_fraction_never_holds_more_than_the_memory_the_weights_leave() -> None:
    # Llama-2-70B in int4 on 8 H100s at batch 16: 4.41 GB of weights a chip leave 81.1 GB of its
    # 85.5 GB. A share of 0.99 reserved for the KV cache (84.7 GB) held 258,378 tokens a sequence,
    # more than those 81.1 GB hold (20,480 B a token of the batch on a chip: 247,532): a context
    # the chip cannot hold, reported beside fits = True. (All memory left after the activations
    # too, the default, holds 245,894.)
    kwargs: dict[str, Any] = dict(
        mesh="1x1x8", batch=16, prompt_len=1024, gen_len=256, weight_bits="4", kv_bits="fp8", calibration="none"
    )
    memory = estimate_one("llama-2-70b", "h100-sxm", **kwargs)["memory"]
    assert memory["max_context_tokens"] == 245894
    after_weights = (memory["capacity_bytes_per_chip"] - memory["weights_bytes_per_chip"]) / (20_480 * 16)
    assert int(after_weights) == 247532
    for fraction in (0.5, 0.94, 0.99):
        held = estimate_one("llama-2-70b", "h100-sxm", kv_memory_fraction=fraction, **kwargs)["memory"]
        assert held["max_context_tokens"] <= after_weights, fraction
    full = estimate_one("llama-2-70b", "h100-sxm", kv_memory_fraction=0.99, **kwargs)["memory"]
    assert full["max_context_tokens"] == 247532
    # Below what the weights leave the share still sets the context (0.5 x 85.5 GB: 130,494).
    half = estimate_one("llama-2-70b", "h100-sxm", kv_memory_fraction=0.5, **kwargs)["memory"]
    assert half["max_context_tokens"] == 130494


# --- mesh choice -----------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["decode", "prefill", "both"])
def test_chosen_mesh_is_legal_and_no_slower_than_the_cube(capsys, phase):
    args = [a if a != "decode" else phase for a in ACCEPTANCE]
    chosen = estimate_json(capsys, *args)
    assert chosen["mesh_chosen"] is True
    mesh = tuple(int(a) for a in chosen["mesh"].split("x"))
    assert legal_v4_shape(mesh, 64), mesh
    cube = estimate_json(capsys, *args, "--mesh", "4x4x4")
    assert cube["mesh_chosen"] is False and cube["mesh"] == "4x4x4"
    assert chosen["memory"]["fits"] and cube["memory"]["fits"]

    def objective(report):
        return sum(report[p]["latency_s"] for p in ("prefill", "decode") if p in report)

    assert objective(chosen) <= objective(cube) * (1 + 1e-12)


PALM_540B_BATCH_64 = ("estimate", "--model", "palm-540b", "--hardware", "tpu-v4", "--chips", "64", "--batch", "64")
PALM_540B_BATCH_64 += ("--prompt-len", "2048", "--gen-len", "64", "--calibration", "none")


def test_a_faster_mesh_that_does_not_fit_is_named_with_the_memory_it_lacks(capsys):
    # PaLM 540B at batch 64 on 64 TPU v4: the cube's weights pad to more bytes per chip than
    # 16x2x2's and it falls short of memory; the output said "best legal mesh" and nothing of the
    # faster one (session 48).
    chosen = estimate_json(capsys, *PALM_540B_BATCH_64)
    assert chosen["mesh_chosen"] is True and chosen["memory"]["fits"]
    cube = estimate_json(capsys, *PALM_540B_BATCH_64, "--mesh", "4x4x4")
    assert not cube["memory"]["fits"]

    def both(report):
        return report["prefill"]["latency_s"] + report["decode"]["latency_s"]

    # A mesh faster than the cube would be named instead: check the cube is the fastest one.
    assert both(cube) < both(chosen)
    others = [estimate_json(capsys, *PALM_540B_BATCH_64, "--mesh", m) for m in ("8x4x2", "2x4x8", "16x2x2")]
    assert all(both(cube) <= both(o) for o in others)
    need = cube["memory"]["total_bytes_per_chip"] / 1e9
    have = cube["memory"]["capacity_bytes_per_chip"] / 1e9
    words = (
        f"mesh 4x4x4 would be {both(chosen) / both(cube):.2f}x faster (prefill + decode) but needs {need:.1f} GB "
        f"per chip of {have:.1f} GB"
    )
    assert words in chosen["notes"]


def test_no_faster_mesh_note_where_the_fastest_fits(capsys):
    args = list(PALM_540B_BATCH_64)
    args[args.index("--batch") + 1] = "1"
    chosen = estimate_json(capsys, *args)
    assert chosen["mesh_chosen"] is True and chosen["memory"]["fits"]
    assert not [n for n in chosen["notes"] if "would be" in n and "faster" in n]


def test_chosen_mesh_python_api_matches_cli(capsys):
    api = estimate_one("palm-62b", "tpu-v4", chips=32, batch=16, prompt_len=512, gen_len=16)
    cli = estimate_json(
        capsys,
        "estimate",
        "--model",
        "palm-62b",
        "--hardware",
        "tpu-v4",
        "--chips",
        "32",
        "--batch",
        "16",
        "--prompt-len",
        "512",
        "--gen-len",
        "16",
        "--calibration",
        "none",
    )
    assert api == cli
    assert legal_v4_shape(tuple(int(a) for a in api["mesh"].split("x")), 32)


# --- invariants over a sweep ---------------------------------------------------------------------------


def sweep_model(name: str) -> ModelSpec:
    """A catalog model, or PaLM 540B with its 48 heads padded to 64 as Pope et al. run it."""
    if name == "palm-540b-64-heads":
        return get_model("palm-540b").model_copy(update={"heads": 64})
    return get_model(name)


def sweep(
    model: str,
    hardware: str,
    meshes: list[tuple[int, int, int]],
    *,
    batches=(1, 16, 128),
    weight_dtypes=(BF16, INT8),
    layouts=("ws_1d", "ws_2d", "wg_x", "wg_xy", "wg_xyz"),
    shardings=("head", "batch"),
    prompt=512,
    gen=32,
    overlap="overlapped",
    kv_heads=None,
):
    """Cartesian product scored in one vectorized call; returns (columns, estimate)."""
    rows = list(itertools.product(meshes, batches, weight_dtypes, layouts, shardings))
    mesh = np.array([r[0] for r in rows], dtype=np.float64)
    batch = np.array([r[1] for r in rows], dtype=np.float64)
    wdt = np.array([r[2] for r in rows], dtype=np.int64)
    layout = np.array([r[3] for r in rows])
    sharding = np.array([r[4] for r in rows])
    layout_codes = np.array([FFN_LAYOUTS.index(v) for v in layout])
    sharding_codes = np.array([ATTENTION_SHARDINGS.index(v) for v in sharding])
    deployments = make_deployments(
        sweep_model(model),
        get_hardware(hardware),
        mesh=mesh,
        batch=batch,
        prompt_len=prompt,
        gen_len=gen,
        weight_dtype=wdt,
        kv_heads=kv_heads,
        prefill_ffn_layout=layout_codes,
        decode_ffn_layout=layout_codes,
        prefill_attn_sharding=sharding_codes,
        decode_attn_sharding=sharding_codes,
    )
    result = estimate(deployments, overlap=overlap)
    columns = {
        "mesh": mesh,
        "chips": mesh.prod(axis=1),
        "batch": batch,
        "weight_dtype": wdt,
        "layout": layout,
        "sharding": sharding,
    }
    return columns, result


def paired(columns: dict, key: str, a: object, b: object) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (i, j) of configurations equal in everything but ``key`` (a in i, b in j)."""
    others = [k for k in ("chips", "batch", "weight_dtype", "layout", "sharding") if k != key]

    def signature(row: int) -> tuple:
        return (tuple(columns["mesh"][row]), *(columns[k][row].item() for k in others))

    rows_b = {signature(r): r for r in np.flatnonzero(columns[key] == b)}
    rows_a = np.flatnonzero(columns[key] == a)
    assert len(rows_a) == len(rows_b) > 0
    return rows_a, np.array([rows_b[signature(r)] for r in rows_a])


SWEEPS = [
    ("palm-62b", "tpu-v4", [(2, 2, 2), (2, 2, 4), (2, 4, 4), (4, 4, 4), (4, 4, 8), (8, 8, 4)]),
    # PaLM 540B's 48 heads do not split evenly over 256 chips (they are replicated 8-way there
    # and so take more bytes than on 128); Pope et al. pad them to 64 (section 4), and so do we.
    ("palm-540b-64-heads", "tpu-v4", [(2, 4, 4), (4, 4, 4), (4, 4, 8), (8, 8, 4)]),
    ("llama-2-70b", "a100-80gb", [(1, 1, 1), (1, 1, 4), (1, 1, 8), (1, 2, 8), (2, 2, 8), (4, 1, 8)]),
    ("llama-2-7b", "h100-sxm", [(1, 1, 1), (1, 1, 2), (1, 2, 4), (2, 1, 8)]),
]


@pytest.mark.parametrize("model,hardware,meshes", SWEEPS)
def test_more_chips_never_more_weights_per_chip(model, hardware, meshes):
    columns, result = sweep(model, hardware, meshes)
    weights = result.memory.weights_bytes_per_chip
    for batch, wdt, layout, sharding in itertools.product(
        np.unique(columns["batch"]), (BF16, INT8), np.unique(columns["layout"]), ("head", "batch")
    ):
        rows = np.flatnonzero(
            (columns["batch"] == batch)
            & (columns["weight_dtype"] == wdt)
            & (columns["layout"] == layout)
            & (columns["sharding"] == sharding)
        )
        order = rows[np.argsort(columns["chips"][rows], kind="stable")]
        assert np.all(np.diff(weights[order]) <= 0), (layout, sharding)


def test_weights_per_chip_by_chip_count():
    # palm-540b bf16 in 2D weight-stationary: 2 bytes x 540,356,640,768 / chips, except wk and wv
    # of the one KV head [E=18432, D=256], split over x only (K=1 cannot split over yz):
    # 2 bytes x 118 layers x 2 x 18432 x 256 x (1/x - 1/chips) more.
    for chips in (8, 16, 32, 64, 128, 256):
        report = estimate_one("palm-540b", "tpu-v4", chips=chips, batch=1, prompt_len=16, gen_len=1)
        x = int(report["mesh"].split("x")[0])
        replicated = 2 * 118 * 2 * 18432 * 256 * (1 / x - 1 / chips)
        assert report["memory"]["weights_bytes_per_chip"] == pytest.approx(
            2 * PALM_540B_PARAMS / chips + replicated, rel=1e-12
        )


@pytest.mark.parametrize("model,hardware,meshes", SWEEPS)
def test_int8_weights_never_increase_decode_memory_time(model, hardware, meshes):
    columns, result = sweep(model, hardware, meshes)
    # Pairs of configurations that differ only in the weight format.
    bf16, int8 = paired(columns, "weight_dtype", BF16, INT8)
    for phase in (result.decode, result.prefill):
        assert np.all(phase.memory_s[int8] <= phase.memory_s[bf16])
    assert np.all(result.decode.memory_s[int8] < result.decode.memory_s[bf16])
    # The blocks' matrices halve; the embedding and lm_head stay 16-bit (engines quantize linear
    # layers only: test_quantized_weights_keep_the_embedding_and_lm_head_in_16_bits).
    weights = result.memory.weights_bytes_per_chip
    assert np.all((weights[int8] * 2 > weights[bf16]) & (weights[int8] < weights[bf16]))


# Llama 3.1 8B (HF meta-llama/Llama-3.1-8B config.json: 32 layers, hidden 4096, 32 heads, 8 KV
# heads of 128, intermediate 14336, vocab 128256, untied): the blocks' matrix elements and those
# of the embedding plus the lm_head.
LLAMA31_8B_BLOCKS = 32 * (4096 * 128 * (2 * 32 + 2 * 8) + 3 * 4096 * 14336)  # 6,979,321,856
LLAMA31_8B_TABLES = 2 * 128256 * 4096  # 1,050,673,152


@pytest.mark.parametrize("tp", [1, 8])
@pytest.mark.parametrize("bits,block_bytes", [("4", 0.5), ("8", 1.0), ("fp8", 1.0), ("16", 2.0)])
def test_quantized_weights_keep_the_embedding_and_lm_head_in_16_bits(tp, bits, block_bytes):
    """Engines quantize the blocks' linear layers and keep the embedding and lm_head in 16 bits
    (vLLM's AWQ/GPTQ/fp8 methods apply to LinearBase layers, its lm_head is a ParallelLMHead;
    ModelOpt's default configs disable "*lm_head*"). Llama 3.1 8B in int4 on one GPU holds
    6,979,321,856 x 0.5 + 1,050,673,152 x 2 = 5,591,007,232 B (vLLM logs about 5.4 GiB loading an
    AWQ checkpoint), not 8.03e9 x 0.5 = 4.02e9; TP splits both (vocab-parallel embedding and head)."""
    report = estimate_one(
        "llama-3.1-8b", "h100-sxm", tp=tp, batch=1, prompt_len=512, gen_len=64, weight_bits=bits, calibration="none"
    )
    expected = (LLAMA31_8B_BLOCKS * block_bytes + LLAMA31_8B_TABLES * 2) / tp
    assert report["memory"]["weights_bytes_per_chip"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("model,hardware,meshes", SWEEPS)
def test_latency_at_least_the_compute_floor(model, hardware, meshes):
    columns, result = sweep(model, hardware, meshes)
    peak = get_hardware(hardware).peak_ops_per_s.bf16  # bf16 activations: bf16 matmuls
    prompt, gen = 512, 32
    floor_prefill = matmul_flops_per_token(model) * columns["batch"] * prompt / (columns["chips"] * peak)
    assert np.all(result.prefill.latency_s >= floor_prefill * (1 - 1e-12))
    assert np.all(result.prefill.compute_s >= floor_prefill * (1 - 1e-12))
    floor_decode = matmul_flops_per_token(model) * columns["batch"] * gen / (columns["chips"] * peak)
    assert np.all(result.decode.latency_s >= floor_decode * (1 - 1e-12))
    # And the other parts: latency covers memory and compute of the same chip. (To float32's
    # rounding: estimate's roofline sums those terms in float32, deployment.ROOFLINE_DTYPE, and
    # the latency is the float64 sum of the slots' float32 times; the two round apart by ~1e-7,
    # Llama-2-70B on A100s' memory term 3e-8 over its latency. Float64 sums: 1e-12 held.)
    for phase in (result.prefill, result.decode):
        assert np.all(phase.latency_s >= phase.compute_s * (1 - 1e-6))
        assert np.all(phase.latency_s >= phase.memory_s * (1 - 1e-6))


@pytest.mark.parametrize("model,hardware,meshes", SWEEPS)
def test_mfu_at_most_one(model, hardware, meshes):
    _, result = sweep(model, hardware, meshes)
    for phase in (result.prefill, result.decode):
        assert np.all(phase.mfu > 0)
        assert np.all(phase.mfu <= 1.0)


@pytest.mark.parametrize("bits", ["8", "fp8"])
def test_mfu_at_most_one_with_low_bit_compute(bits):
    # llama-2-7b prefill on 8 x h100-sxm, batch 64 x 2048 tokens, weights and activations in 8
    # bits: the matmuls run at the 8-bit peak (1978.9e12, twice bf16's 989.4e12), so the pass can
    # take half the bf16 compute time. MFU is a fraction of the peak the chip reaches: it must
    # stay <= 1 (against bf16's peak it comes out near 1.37 here).
    report = estimate_one(
        "llama-2-7b",
        "h100-sxm",
        chips=8,
        mesh="1x1x8",
        phase="prefill",
        batch=64,
        prompt_len=2048,
        gen_len=1,
        weight_bits=bits,
        act_bits=bits,
        kv_bits=bits,
    )
    assert 0 < report["prefill"]["mfu"] <= 1.0


@pytest.mark.parametrize("model,hardware,meshes", SWEEPS)
def test_added_collectives_never_faster_than_overlapped(model, hardware, meshes):
    columns, overlapped = sweep(model, hardware, meshes, overlap="overlapped")
    _, added = sweep(model, hardware, meshes, overlap="added")
    for a, o in ((added.prefill, overlapped.prefill), (added.decode, overlapped.decode)):
        assert np.all(a.latency_s >= o.latency_s * (1 - 1e-12))
        np.testing.assert_allclose(a.comm_s, o.comm_s, rtol=1e-12)
        np.testing.assert_allclose(a.compute_s, o.compute_s, rtol=1e-12)
    multi = columns["chips"] > 1
    if hardware == "tpu-v4":
        # Somewhere communication is not free, so the two differ.
        assert np.any(added.decode.latency_s[multi] > overlapped.decode.latency_s[multi])
    else:
        # On GPUs the block's collectives are on its critical path either way, as the engines run
        # them (the next matmul waits for the all-reduced sum): the two are the same numbers.
        for a, o in ((added.prefill, overlapped.prefill), (added.decode, overlapped.decode)):
            np.testing.assert_allclose(a.latency_s, o.latency_s, rtol=1e-12)
        assert np.all(overlapped.decode.comm_s[multi] > 0)


@pytest.mark.parametrize(
    "model,hardware,meshes,kv_heads",
    [
        ("palm-62b", "tpu-v4", SWEEPS[0][2], None),  # multiquery
        ("palm-540b", "tpu-v4", SWEEPS[1][2], None),  # multiquery
        ("llama-2-70b", "a100-80gb", SWEEPS[2][2], 1),  # made multiquery with --kv-heads 1
    ],
)
def test_batch_sharding_never_more_kv_per_chip_than_head_sharding_for_mqa(model, hardware, meshes, kv_heads):
    columns, result = sweep(model, hardware, meshes, kv_heads=kv_heads)
    kv = result.memory.kv_cache_bytes_per_chip
    head, batch = paired(columns, "sharding", "head", "batch")
    assert np.all(kv[batch] <= kv[head])
    # Strictly less wherever there is more than one chip and more than one sequence.
    split = (columns["chips"][batch] > 1) & (columns["batch"][batch] > 1)
    assert np.all(kv[batch][split] < kv[head][split])
    # Head-sharded multiquery: the KV head is replicated, the same bytes on every chip count.
    m = get_model(model)
    context = 512 + 32
    expected_head = 2 * m.layers * 1 * m.d_head * 2 * columns["batch"][head] * context
    np.testing.assert_allclose(kv[head], expected_head, rtol=1e-12)


def test_decode_latency_is_steps_times_gen_len():
    report = estimate_one("llama-2-13b", "a100-80gb", chips=8, batch=4, prompt_len=300, gen_len=17)
    decode = report["decode"]
    assert decode["latency_s"] == pytest.approx(17 * decode["step_latency_s"], rel=1e-12)
    # Tokens = 4 x 17 = 68.
    assert decode["cost_chip_s_per_token"] == pytest.approx(8 * decode["latency_s"] / 68, rel=1e-12)


def test_encoder_model_prefill_estimate(capsys):
    # An encoder (BERT) has no decode phase, but its prefill (one forward pass) can be estimated;
    # the error for --phase decode itself says "use --phase prefill for encoder models".
    code, out, err = run_cli(
        capsys,
        "estimate",
        "--model",
        "bert-base",
        "--hardware",
        "tpu-v4",
        "--chips",
        "8",
        "--phase",
        "prefill",
        "--batch",
        "8",
        "--prompt-len",
        "128",
        "--gen-len",
        "1",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert "decode" not in report
    assert report["prefill"]["latency_s"] > 0


# --- memory fit --------------------------------------------------------------------------------------


def test_does_not_fit_is_reported(capsys):
    # llama-2-70b bf16 weights: ~69e9 params x 2 bytes ~ 138 GB > the 23,034 MiB nvidia-smi reports on one L4.
    report = estimate_json(
        capsys,
        "estimate",
        "--model",
        "llama-2-70b",
        "--hardware",
        "l4",
        "--chips",
        "1",
        "--batch",
        "1",
        "--prompt-len",
        "128",
        "--gen-len",
        "8",
    )
    memory = report["memory"]
    assert memory["fits"] is False
    assert memory["capacity_bytes_per_chip"] == 23034 * 2**20
    assert memory["total_bytes_per_chip"] > memory["capacity_bytes_per_chip"]
    assert memory["weights_bytes_per_chip"] > 130e9
    assert memory["max_context_tokens"] == 0
    code, out, err = run_cli(
        capsys,
        "estimate",
        "--model",
        "llama-2-70b",
        "--hardware",
        "l4",
        "--chips",
        "1",
        "--batch",
        "1",
        "--prompt-len",
        "128",
        "--gen-len",
        "8",
    )
    assert code == 0, err
    assert "DOES NOT FIT" in out


def test_require_fit_makes_it_an_error(capsys):
    code, out, err = run_cli(
        capsys,
        "estimate",
        "--model",
        "llama-2-70b",
        "--hardware",
        "l4",
        "--chips",
        "1",
        "--batch",
        "1",
        "--prompt-len",
        "128",
        "--gen-len",
        "8",
        "--require-fit",
        "--json",
    )
    line = assert_one_error_line(code, out, err, ("memory",))
    assert " GB " in line and "GiB" not in line  # GB = 1e9 bytes, as the tables print memory
    # A deployment that fits passes --require-fit.
    report = estimate_json(capsys, *ACCEPTANCE, "--require-fit")
    assert report["memory"]["fits"] is True
    with pytest.raises(InvalidInputError) as info:
        estimate_one("llama-2-70b", "l4", chips=1, batch=1, prompt_len=128, gen_len=8, require_fit=True)
    assert info.value.field == "memory"


# --- bad input ---------------------------------------------------------------------------------------


BASE = (
    "estimate",
    "--model",
    "palm-540b",
    "--hardware",
    "tpu-v4",
    "--batch",
    "64",
    "--prompt-len",
    "2048",
    "--gen-len",
    "64",
)


def replace(args: tuple[str, ...], option: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(option) + 1] = value
    return out


@pytest.mark.parametrize(
    "argv,fields",
    [
        ([*BASE, "--chips", "12"], ("chips",)),
        ([*BASE, "--chips", "64", "--mesh", "4x4x2"], ("mesh",)),
        ([*BASE, "--chips", "64", "--mesh", "1x1x64"], ("mesh",)),
        ([*BASE, "--chips", "64", "--mesh", "4by4"], ("mesh",)),
        ([*BASE, "--chips", "64", "--mesh", ""], ("mesh",)),
        ([*replace(BASE, "--batch", "0"), "--chips", "64"], ("batch",)),
        ([*replace(BASE, "--prompt-len", "-1"), "--chips", "64"], ("prompt_len", "prompt-len")),
        ([*replace(BASE, "--gen-len", "0"), "--chips", "64"], ("gen_len", "gen-len")),
        ([*BASE, "--chips", "0"], ("chips",)),
        ([*BASE, "--chips", "64", "--ffn-layout", "ws_3d"], ("ffn-layout", "ffn_layout")),
        ([*BASE, "--chips", "64", "--decode-ffn-layout", "ws_3d"], ("ffn-layout", "ffn_layout")),
        ([*BASE, "--chips", "64", "--attn-sharding", "sequence"], ("attn-sharding", "attn_sharding")),
        ([*BASE, "--chips", "64", "--kv-memory-fraction", "0"], ("kv_memory_fraction", "kv-memory-fraction")),
        ([*BASE, "--chips", "64", "--kv-memory-fraction", "1.5"], ("kv_memory_fraction", "kv-memory-fraction")),
        ([*BASE, "--chips", "64", "--kv-memory-fraction", "-0.1"], ("kv_memory_fraction", "kv-memory-fraction")),
        ([*replace(BASE, "--model", "llama-2-7b"), "--chips", "8", "--kv-heads", "5"], ("kv_heads", "kv-heads")),
        ([*BASE, "--chips", "64", "--weight-bits", "fp8"], ("weight_bits", "fp8")),
        ([*BASE, "--chips", "64", "--kv-bits", "fp8"], ("kv_bits", "fp8")),
        ([*replace(BASE, "--model", "palm-999b"), "--chips", "64"], ("model",)),
        ([*replace(BASE, "--hardware", "tpu-v9"), "--chips", "64"], ("hardware",)),
        ([*BASE, "--chips", "64", "--phase", "bogus"], ("phase",)),
        ([*BASE, "--chips", "64", "--overlap", "sometimes"], ("overlap",)),
        ([*BASE, "--chips", "64", "--batch", "lots"], ("batch",)),
    ],
)
def test_bad_input_is_one_error_line(capsys, argv, fields):
    code, out, err = run_cli(capsys, *argv, "--json")
    assert_one_error_line(code, out, err, fields)
    # The table output fails the same way.
    code, out, err = run_cli(capsys, *argv)
    assert_one_error_line(code, out, err, fields)


def test_bad_input_python_api():
    common = dict(batch=8, prompt_len=128, gen_len=8)
    bad = [
        (dict(chips=12), "chips"),
        (dict(chips=64, mesh="4x4x2"), "mesh"),
        (dict(chips=64, mesh=(1, 1, 64)), "mesh"),
        (dict(chips=64, phase="bogus"), "phase"),
        (dict(chips=64, ffn_layout="ws_3d"), "prefill_ffn_layout"),
        (dict(chips=64, attn_sharding="sequence"), "prefill_attn_sharding"),
        (dict(chips=64, overlap="sometimes"), "overlap"),
        (dict(chips=64, kv_memory_fraction=0.0), "kv_memory_fraction"),
        (dict(chips=64, weight_bits="fp8"), "weight_bits"),
        (dict(chips=64, batch=0), "batch"),
        (dict(chips=64, gen_len=0), "gen_len"),
        (dict(chips=64, prompt_len=-1), "prompt_len"),
    ]
    for kwargs, field in bad:
        with pytest.raises(InvalidInputError) as info:
            estimate_one("palm-540b", "tpu-v4", **{**common, **kwargs})
        assert info.value.field == field, kwargs


# --- GPUs: NVLink inside a node, InfiniBand between nodes ---------------------------------------------


def test_gpu_collectives_cost_more_across_nodes(capsys):
    # llama-2-70b (serial block, E = 8192, 80 layers), ws_1d, head-sharded attention, batch 8.
    # ws_1d per block: an all-gather and a reduce-scatter over all chips for the FFN and again for
    # the attention (serial block): 4 collectives of D = N E x 2 bytes, N = 8 tokens per decode
    # step -> D = 8 x 8192 x 2 = 131,072 B.
    # 8 x h100-sxm, one node (1x1x8): D (7/8) / 450e9 + 7 x 2e-6 = 2.548622e-7 + 1.4e-5 s.
    # 16 x h100-sxm, two nodes (1x1x16): + D (2-1)/16 / 50e9 = 1.6384e-7 s + 1 x 5e-6 s.
    # Decode comm = 80 layers x 4 x per-collective x 32 steps.
    common = (
        "estimate",
        "--model",
        "llama-2-70b",
        "--hardware",
        "h100-sxm",
        "--batch",
        "8",
        "--prompt-len",
        "512",
        "--gen-len",
        "32",
        "--ffn-layout",
        "ws_1d",
        "--attn-sharding",
        "head",
        "--calibration",
        "none",
    )
    one_node = estimate_json(capsys, *common, "--chips", "8", "--mesh", "1x1x8")
    two_nodes = estimate_json(capsys, *common, "--chips", "16", "--mesh", "1x1x16")
    d = 8 * 8192 * 2
    inside = d * 7 / 8 / 450e9 + 7 * 2e-6
    across = d / 16 / 50e9 + d * 7 / 8 / 450e9 + 7 * 2e-6 + 5e-6
    assert one_node["decode"]["comm_s"] == pytest.approx(80 * 4 * inside * 32, rel=1e-9)
    assert two_nodes["decode"]["comm_s"] == pytest.approx(80 * 4 * across * 32, rel=1e-9)
    tokens = 8 * 32  # the same for both
    assert two_nodes["decode"]["comm_s"] / tokens > one_node["decode"]["comm_s"] / tokens
    # Prefill too (N = 8 x 512 tokens): the network stage makes 16 chips slower to talk.
    assert two_nodes["prefill"]["comm_s"] / (8 * 512) > one_node["prefill"]["comm_s"] / (8 * 512)


def test_gpu_mesh_choice(capsys):
    for chips in (8, 16):
        report = estimate_json(
            capsys,
            "estimate",
            "--model",
            "llama-2-70b",
            "--hardware",
            "h100-sxm",
            "--chips",
            str(chips),
            "--batch",
            "8",
            "--prompt-len",
            "512",
            "--gen-len",
            "32",
            "--ffn-layout",
            "ws_1d",
        )
        # What engines run, not the best of every mesh: TP over one 8-GPU node, PP across nodes.
        assert report["chips"] == chips and report["engine_default"] is True
        assert report["mesh"] == "1x1x8" and report["parallel"]["tp"] == 8
        assert report["parallel"]["pp"] == chips // 8
    code, out, err = run_cli(
        capsys,
        "estimate",
        "--model",
        "llama-2-70b",
        "--hardware",
        "h100-sxm",
        "--chips",
        "12",
        "--batch",
        "8",
        "--prompt-len",
        "512",
        "--gen-len",
        "32",
    )
    assert_one_error_line(code, out, err, ("chips",))


def _estimate_arrays(result, prefix: str = "") -> dict[str, bytes]:
    """Every array of an estimate (nested dataclasses), as bytes."""
    import dataclasses

    out: dict[str, bytes] = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_estimate_arrays(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = np.asarray(value).tobytes()
    return out


@pytest.mark.parametrize("profile", [None, "h100-sxm-vllm"])
@pytest.mark.parametrize("varied", ["prefill", "decode"])
def test_phase_scored_once_per_distinct_deployment_gives_every_rows_numbers(monkeypatch, profile, varied) -> None:
    """Deployments that differ only in one phase's layout and attention sharding: the other
    phase is scored once per distinct deployment (deployment._phase_rows) and every output is
    that of scoring every row, bit for bit."""
    import cost_models.deployment as deployment
    import cost_models.distinct as distinct
    from cost_models.calibration import resolve_calibration

    rng = np.random.default_rng(9)
    hardware = get_hardware("h100-sxm")
    catalog = [get_model(name) for name in ("llama-3-8b", "mixtral-8x7b", "gpt2")]
    n, copies = 30, 8
    d = make_deployments(
        catalog,
        hardware,
        model_index=np.tile(rng.integers(0, len(catalog), n), copies),
        mesh=np.tile(np.array([[1.0, 2.0, 4.0], [1.0, 1.0, 8.0], [2.0, 2.0, 2.0]])[rng.integers(0, 3, n)], (copies, 1)),
        batch=np.tile(2.0 ** rng.integers(0, 6, n), copies),
        prompt_len=np.tile(np.rint(2.0 ** rng.uniform(7, 12, n)), copies),
        gen_len=np.tile(np.rint(2.0 ** rng.uniform(4, 9, n)), copies),
        weight_dtype=np.tile(rng.choice([BF16, INT8], n), copies),
        **{
            f"{phase}_{column}": rng.integers(0, len(choices), n * copies)
            if phase == varied
            else np.tile(rng.integers(0, len(choices), n), copies)
            for phase in ("prefill", "decode")
            for column, choices in (("ffn_layout", FFN_LAYOUTS), ("attn_sharding", ATTENTION_SHARDINGS))
        },
    )
    calibration = resolve_calibration(profile or "none", "h100-sxm")
    monkeypatch.setattr(distinct, "MIN_ROWS", 16)
    taken: list[bool] = []
    original = deployment._phase_rows

    def record(*args):
        rows = original(*args)
        taken.append(rows is not None)
        return rows

    monkeypatch.setattr(deployment, "_phase_rows", record)
    once = _estimate_arrays(estimate(d, calibration=calibration))
    assert taken == [varied == "decode", varied == "prefill"]  # the phase whose columns repeat
    monkeypatch.setattr(deployment, "DISTINCT_PHASE_SHARE", 0.0)  # every row scored
    every = _estimate_arrays(estimate(d, calibration=calibration))
    assert once.keys() == every.keys() and len(once) > 10
    assert [k for k in once if once[k] != every[k]] == []


@pytest.mark.parametrize("profile", [None, "h100-sxm-vllm"])
def test_large_repeating_call_is_scored_whole_with_every_rows_numbers(monkeypatch, profile) -> None:
    """A call over ESTIMATE_CHUNK_ROWS whose phases each score few distinct rows is scored in one
    piece (not chunked), and every output is that of the chunked call, bit for bit."""
    import cost_models.deployment as deployment
    import cost_models.distinct as distinct
    from cost_models.calibration import resolve_calibration

    rng = np.random.default_rng(11)
    hardware = get_hardware("h100-sxm")
    catalog = [get_model(name) for name in ("llama-3-8b", "mixtral-8x7b")]
    n, copies = 20, 12
    tiled = {
        "model_index": rng.integers(0, len(catalog), n),
        "mesh": np.array([[1.0, 2.0, 4.0], [1.0, 1.0, 8.0], [2.0, 2.0, 2.0]])[rng.integers(0, 3, n)],
        "batch": 2.0 ** rng.integers(0, 6, n),
        "prompt_len": np.rint(2.0 ** rng.uniform(7, 12, n)),
        "gen_len": np.rint(2.0 ** rng.uniform(4, 9, n)),
    }
    d = make_deployments(
        catalog,
        hardware,
        **{name: np.tile(values, (copies, 1)) if values.ndim == 2 else np.tile(values, copies)
           for name, values in tiled.items()},
        **{f"{phase}_{column}": np.tile(rng.integers(0, len(choices), n), copies)
           for phase in ("prefill", "decode")
           for column, choices in (("ffn_layout", FFN_LAYOUTS), ("attn_sharding", ATTENTION_SHARDINGS))},
    )  # fmt: skip
    calibration = resolve_calibration(profile or "none", "h100-sxm")
    monkeypatch.setattr(distinct, "MIN_ROWS", 16)
    monkeypatch.setattr(deployment, "ESTIMATE_CHUNK_ROWS", 100)  # 240 rows; each phase's distinct: <= 100
    joined: list[int] = []
    original = deployment._joined

    def record(parts):
        joined.append(len(parts))
        return original(parts)

    monkeypatch.setattr(deployment, "_joined", record)
    whole = _estimate_arrays(estimate(d, calibration=calibration))
    assert joined == []  # one piece
    monkeypatch.setattr(deployment, "DISTINCT_PHASE_SHARE", 0.0)  # every row scored: chunks
    chunked = _estimate_arrays(estimate(d, calibration=calibration))
    assert joined == [3]
    assert whole.keys() == chunked.keys() and len(whole) > 10
    assert [k for k in whole if whole[k] != chunked[k]] == []


def test_max_context_past_the_trained_context_is_said_so(capsys):
    """Llama 3.1 8B on one H100, batch 1: the memory left (85,520,809,984 B less 16.06 GB of
    weights and the activations) holds about 527,000 tokens of KV cache at 131,072 B a token
    (32 layers x 2 x 8 x 128 x 2 B), four times its trained context of 131,072 positions, which
    is all vLLM's max_model_len admits without an override (vllm config/model.py
    _get_and_verify_max_len). The number alone reads as a context the deployment can serve."""
    args = ["estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--tp", "1", "--batch", "1"]
    report = estimate_json(capsys, *args, "--prompt-len", "4096", "--gen-len", "1024")
    limit = report["memory"]["max_context_tokens"]
    free = 85_520_809_984 - report["memory"]["weights_bytes_per_chip"] - report["memory"]["activation_bytes_per_chip"]
    assert limit == int(free // (32 * 2 * 8 * 128 * 2)) > 131_072
    said = [note for note in report["notes"] if "131,072" in note and f"{limit:,}" in note]
    assert len(said) == 1, report["notes"]
    code, out, _ = run_cli(capsys, *args, "--prompt-len", "4096", "--gen-len", "1024")
    assert code == 0 and "trained context of 131,072" in " ".join(out.split())
    # Within the trained context: no such note (batch 8 leaves about 66,000 tokens a sequence).
    report = estimate_json(capsys, *args[:-1], "8", "--prompt-len", "4096", "--gen-len", "1024")
    assert report["memory"]["max_context_tokens"] < 131_072
    assert not [note for note in report["notes"] if "trained context" in note]


def test_windowed_model_without_a_context_limit_names_its_trained_context(capsys):
    """Mistral 7B v0.1 windows every block at 4,096 tokens: its cache stops growing, so memory sets
    no context limit, but the model was trained for 32,768 positions."""
    report = estimate_json(
        capsys, "estimate", "--model", "mistral-7b", "--hardware", "h100-sxm", "--tp", "1", "--batch", "1",
        "--prompt-len", "1024", "--gen-len", "128",
    )  # fmt: skip
    assert report["memory"]["max_context_tokens"] is None
    assert [note for note in report["notes"] if "32,768" in note]
