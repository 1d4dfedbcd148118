"""Two options that cannot both mean something are refused: one ``error:`` line naming both, exit
2, nothing printed. Before, one of them was silently dropped (``--template --json`` printed YAML,
``--schema --reference`` printed whichever came last, ``--json --csv`` printed JSON, ``--causal``
in decode was reported as in force while the decode attention ignored it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import assert_one_error_line, run_cli

ANALYZE_DECODE = ("analyze", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--phase", "decode")
ANALYZE_DECODE += ("--batch", "1", "--seq-len", "128")
ESTIMATE = ("estimate", "--model", "llama-2-7b", "--hardware", "tpu-v4", "--chips", "8", "--batch", "8")
ESTIMATE += ("--prompt-len", "128", "--gen-len", "16")


@pytest.mark.parametrize(
    ("args", "options"),
    [
        (("models", "--template", "--json"), ("--template", "--json")),
        (("models", "--json", "--template"), ("--template", "--json")),
        (("hardware", "--template", "--json"), ("--template", "--json")),
        (("spec", "--schema", "--reference"), ("--schema", "--reference")),
        (("spec", "--reference", "--schema"), ("--schema", "--reference")),
        (("spec", "--reference", "--json"), ("--json", "--reference")),
        (("pareto", "no-such-study", "--json", "--csv"), ("--json", "--csv")),
        ((*ANALYZE_DECODE, "--causal"), ("--causal", "--phase decode")),
        ((*ANALYZE_DECODE, "--no-causal", "--flash-attention"), ("--no-causal", "--phase decode")),
        # The other phase's layout changed only the echo of the options, no number.
        ((*ESTIMATE, "--phase", "prefill", "--decode-ffn-layout", "ws_1d"), ("--decode-ffn-layout", "--phase prefill")),
        ((*ESTIMATE, "--phase", "prefill", "--decode-attn-sharding", "batch"), ("--decode-attn-sharding", "prefill")),
        ((*ESTIMATE, "--phase", "decode", "--prefill-ffn-layout", "ws_1d"), ("--prefill-ffn-layout", "--phase decode")),
        ((*ESTIMATE, "--phase", "decode", "--prefill-attn-sharding", "batch"), ("--prefill-attn-sharding", "decode")),
        # analyze: --backend only picks the engine whose kernels the profile holds; the roofline has none.
        ((*ANALYZE_DECODE, "--calibration", "none", "--backend", "vllm"), ("--backend", "--calibration none")),
        # Both phases overridden: --ffn-layout / --attn-sharding set nothing.
        (
            (*ESTIMATE, "--ffn-layout", "ws_1d", "--prefill-ffn-layout", "ws_2d", "--decode-ffn-layout", "ws_2d"),
            ("--ffn-layout", "--prefill-ffn-layout"),
        ),
        (
            (*ESTIMATE, "--phase", "decode", "--attn-sharding", "batch", "--decode-attn-sharding", "head"),
            ("--attn-sharding", "--decode-attn-sharding"),
        ),
    ],
)
def test_conflicting_options_are_one_line_naming_both(
    capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch, args: tuple[str, ...], options: tuple[str, str]
) -> None:
    monkeypatch.chdir(tmp_path)  # pareto's default storage: nothing is created here
    line = assert_one_error_line(*run_cli(capsys, *args), fields=options)
    for option in options:
        assert option in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("phase", ["prefill"])
def test_causal_still_counts_in_prefill(capsys: pytest.CaptureFixture[str], phase: str) -> None:
    args = ("analyze", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--phase", phase, "--batch", "1")
    code, out, err = run_cli(capsys, *args, "--seq-len", "128", "--causal", "--json")
    assert code == 0, err
    assert '"causal": true' in out


@pytest.mark.parametrize(
    "options",
    [
        ("--phase", "prefill", "--prefill-ffn-layout", "ws_1d", "--attn-sharding", "batch"),
        ("--ffn-layout", "ws_1d", "--prefill-attn-sharding", "head", "--phase", "both"),
        ("--ffn-layout", "ws_1d", "--decode-ffn-layout", "ws_2d"),
        # estimate: --backend is the engine that must launch the deployment (and, serving, its
        # knobs and overheads), even on the pure roofline.
        ("--calibration", "none", "--backend", "jax"),
        ("--calibration", "none", "--backend", "jax", "--concurrency", "4"),
        # Serving runs both phases, whatever --phase shows of the static estimate.
        ("--phase", "prefill", "--decode-ffn-layout", "ws_1d", "--concurrency", "4"),
    ],
)
def test_layout_overrides_that_count_still_work(capsys: pytest.CaptureFixture[str], options: tuple[str, ...]) -> None:
    code, out, err = run_cli(capsys, *ESTIMATE, *options, "--json")
    assert code == 0, err


def test_one_of_each_pair_alone_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (("models", "--template"), ("models", "--json"), ("spec", "--schema"), ("spec", "--reference")):
        code, out, err = run_cli(capsys, *args)
        assert code == 0 and out and not err, (args, err)


SPEC = """\
name: seeded
model: llama-3-8b
hardware: h100-sxm
workload: {prompt_len: 128, gen_len: 16}
space: {chips: [1], batch: [1, 2]}
objectives: [{metric: decode.step_latency_s}]
sampler: SAMPLER
"""


@pytest.mark.parametrize(
    ("command", "sampler", "options", "second"),
    [
        ("search", "nsga2", ("--sampler", "exhaustive"), "--sampler exhaustive"),
        ("search", "exhaustive", (), "sampler exhaustive"),
        ("worker", "exhaustive", (), "sampler exhaustive"),
    ],
)
def test_a_seed_for_the_exhaustive_sampler_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, sampler: str, options: tuple, second: str
) -> None:
    """The exhaustive sampler draws nothing at random: --seed changed nothing."""
    spec = tmp_path / "seeded.yaml"
    spec.write_text(SPEC.replace("SAMPLER", sampler), encoding="utf-8")
    storage = f"sqlite:///{tmp_path}/seeded.db"
    args = (command, str(spec), "--storage", storage, "--seed", "7", *options)
    line = assert_one_error_line(*run_cli(capsys, *args), fields=("--seed",))
    assert second in line, line
    assert not (tmp_path / "seeded.db").exists()
    if sampler != "exhaustive":  # the spec's own sampler takes the seed
        code, _, err = run_cli(capsys, command, str(spec), "--storage", storage, "--seed", "7", "--trials", "1")
        assert code == 0, err


GPU_ESTIMATE = ("estimate", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--tp", "2", "--batch", "8")
GPU_ESTIMATE += ("--prompt-len", "128", "--gen-len", "16")


@pytest.mark.parametrize("hardware", ["h100-sxm", "xeon-gold-6242"])
@pytest.mark.parametrize("overlap", ["overlapped", "added"])
def test_overlap_on_a_switched_network_is_refused(
    capsys: pytest.CaptureFixture[str], hardware: str, overlap: str
) -> None:
    """On GPUs and CPUs every collective is on the critical path (the engines' tensor parallelism):
    --overlap added gave the numbers of overlapped, and the table said "collectives added"."""
    args = ("estimate", "--model", "llama-2-7b", "--hardware", hardware, "--chips", "2", "--batch", "8")
    line = assert_one_error_line(
        *run_cli(capsys, *args, "--prompt-len", "128", "--gen-len", "16", "--overlap", overlap), ("--overlap",)
    )
    assert "critical path" in line and "TPU torus" in line


def test_the_tables_say_where_the_collectives_are(capsys: pytest.CaptureFixture[str]) -> None:
    """A GPU's table said "collectives overlapped" of collectives charged whole; a TPU's --overlap
    still chooses, and changes the numbers."""
    code, out, err = run_cli(capsys, *GPU_ESTIMATE)
    assert code == 0, err
    assert "collectives on the critical path" in " ".join(out.split())
    steps = {}
    for overlap in ("overlapped", "added"):
        code, out, err = run_cli(capsys, *ESTIMATE, "--overlap", overlap)
        assert code == 0, err
        assert f"collectives {overlap}" in " ".join(out.split())
        code, out, err = run_cli(capsys, *ESTIMATE, "--overlap", overlap, "--json")
        steps[overlap] = json.loads(out)["decode"]["step_latency_s"]
    assert steps["added"] > steps["overlapped"]


@pytest.mark.parametrize(
    ("again", "named"),
    [
        (("--batch", "1", "--batch", "64"), "--batch"),
        (("--batch", "8", "--gen-len", "16"), "--gen-len"),  # the same value twice, still one too many
        (("--batch", "8", "--flash-attention", "--no-flash-attention"), "--flash-attention/--no-flash-attention"),
    ],
)
def test_an_option_given_twice_is_refused(
    capsys: pytest.CaptureFixture[str], again: tuple[str, ...], named: str
) -> None:
    """click kept the last of an option given twice: `--max-ttft-s 1 ... --max-ttft-s 100000`
    planned for 100,000 s, `--batch 1 --batch 64` estimated batch 64, the first value dropped."""
    args = ("estimate", "--model", "llama-2-7b", "--hardware", "tpu-v4", "--chips", "8", "--prompt-len", "128")
    line = assert_one_error_line(*run_cli(capsys, *args, "--gen-len", "16", *again), (named,))
    assert "more than once" in line


def test_a_flag_or_a_list_option_given_twice_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "models", "--json", "--json")
    assert code == 0 and json.loads(out), err
    args = ("recommend", "--model", "llama-3-8b", "--request-rate", "2", "--prompt-len", "512", "--gen-len", "64")
    args += ("--max-ttft-s", "1", "--max-tpot-s", "0.05", "--hardware", "h100-sxm", "--hardware", "h100-sxm")
    line = assert_one_error_line(*run_cli(capsys, *args), ("--hardware",))
    assert "given twice" in line and "more than once" not in line  # recommend's own check of a list option
