"""tuner estimate and simulate refuse a KV block size the engine they score cannot run, as a
study with that backend does (search_spaces.space._refuse_engine_block_sizes): vLLM needs a
multiple of 16, TensorRT-LLM a power of two above 1. Before, --kv-block-size 7 under vLLM was
scored as given (its paging, its KV memory) and the export launched another size (session 39)."""

from __future__ import annotations

import pytest

from cli_helpers import assert_one_error_line, run_cli

H100 = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--tp", "1", "--prompt-len", "512", "--gen-len", "64")


@pytest.mark.parametrize(
    ("extra", "block"),
    [
        ((), "7"),  # the H100's default engine, vLLM (the engine measured best on it)
        (("--backend", "vllm"), "24"),
        # A multiple of 16 that is not one of vLLM's --block-size choices (vllm/config/cache.py,
        # BlockSize: 1, 8, 16, 32, 64, 128, 256): scored, then launched as another or refused.
        (("--backend", "vllm"), "48"),
        (("--backend", "vllm"), "512"),
        (("--backend", "trtllm"), "24"),
        (("--backend", "trtllm"), "1"),
    ],
)
@pytest.mark.parametrize("command", ["estimate", "simulate"])
def test_a_block_the_engine_cannot_run_is_one_line(capsys, command, extra, block) -> None:
    load = ("--concurrency", "4") + (("--requests", "40") if command == "simulate" else ())
    code, out, err = run_cli(capsys, command, *H100, *load, *extra, "--kv-block-size", block)
    line = assert_one_error_line(code, out, err, ("--kv-block-size",))
    assert f"{block} with engine" in line


def test_disaggregated_estimate_refuses_it_too(capsys) -> None:
    code, out, err = run_cli(
        capsys, "estimate", *H100, "--concurrency", "4", "--prefill-instances", "1", "--decode-instances", "1",
        "--backend", "vllm", "--kv-block-size", "8",
    )  # fmt: skip
    assert_one_error_line(code, out, err, ("--kv-block-size",))


@pytest.mark.parametrize(("backend", "block"), [("vllm", "32"), ("trtllm", "64"), ("sglang", "7")])
def test_blocks_the_engine_runs_are_scored(capsys, backend, block) -> None:
    code, out, err = run_cli(
        capsys, "estimate", *H100, "--concurrency", "4", "--backend", backend, "--kv-block-size", block
    )
    assert code == 0, err
    assert f"KV block {block}" in out
