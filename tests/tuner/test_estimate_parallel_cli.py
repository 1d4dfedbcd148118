"""tuner estimate in the engines' vocabulary: --tp --pp --ep --dp --micro-batches, the GPU default,
and the issue's impossible example as one line."""

import json

from cli_helpers import assert_one_error_line, run_cli

COMMON = ("--prompt-len", "1024", "--gen-len", "128", "--batch", "16", "--calibration", "none", "--json")


def test_tp_ep_pp_on_h200_runs_and_reports_the_degrees(capsys):
    code, out, err = run_cli(
        capsys, "estimate", "--model", "qwen3-235b-a22b", "--hardware", "h200", "--tp", "8", "--ep", "8", "--pp", "2",
        "--weight-bits", "fp8", *COMMON,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["chips"] == 16 and report["mesh"] == "1x1x8"
    # Without --micro-batches, as the engines run a pipeline: PP micro-batches in flight.
    assert report["parallel"] == {"tp": 8, "pp": 2, "ep": 8, "dp": 1, "micro_batches": 2}
    # fp8 weights of 235B parameters over 16 GPUs: about 235 GB / 16 each (the embedding and the
    # lm_head, 0.6B each, are both charged to the busiest stage).
    assert 14e9 < report["memory"]["weights_bytes_per_chip"] < 15.5e9


def _estimate(capsys, *args: str) -> dict:
    code, out, err = run_cli(capsys, "estimate", "--model", "llama-2-70b", "--hardware", "h100-sxm", *args)
    assert code == 0, err
    return json.loads(out)


def test_a_gpu_pipeline_without_micro_batches_runs_as_the_engines_do(capsys):
    """vLLM, SGLang (pp_max_micro_batch_size = max_running_requests // pp_size) and TensorRT-LLM
    keep up to PP micro-batches in flight. Scored at 1 micro-batch before, a TP 4 PP 2 prefill of
    16 prompts left one stage idle at a time: 2.04 s where 2 micro-batches take 1.51 s."""
    common = ("--tp", "4", "--pp", "2", "--prompt-len", "2048", "--gen-len", "128", "--json")
    default = _estimate(capsys, *common, "--batch", "16")
    two = _estimate(capsys, *common, "--batch", "16", "--micro-batches", "2")
    one = _estimate(capsys, *common, "--batch", "16", "--micro-batches", "1")
    assert default["parallel"]["micro_batches"] == 2 and one["parallel"]["micro_batches"] == 1  # a named 1 holds
    assert default["prefill"]["latency_s"] == two["prefill"]["latency_s"] < 0.8 * one["prefill"]["latency_s"]
    assert any(note.startswith("micro-batches 2: the engines keep up to PP micro-batches") for note in default["notes"])
    assert not any(note.startswith("micro-batches") for note in two["notes"])
    # The most of 1..PP that split a DP rank's sequences evenly: 6 on PP 4 -> 3; 2 per rank on
    # PP 4 with DP 2 -> 2 (not 4: a micro-batch of half a sequence); 1 sequence -> 1.
    deep = ("--tp", "2", "--pp", "4", "--prompt-len", "512", "--gen-len", "64", "--json")
    assert _estimate(capsys, *deep, "--batch", "6")["parallel"]["micro_batches"] == 3
    assert _estimate(capsys, *deep, "--batch", "4", "--dp", "2")["parallel"]["micro_batches"] == 2
    assert _estimate(capsys, *deep, "--batch", "1")["parallel"]["micro_batches"] == 1


def test_mixtral_with_data_parallel_attention(capsys):
    code, out, err = run_cli(
        capsys, "estimate", "--model", "mixtral-8x7b", "--hardware", "h200", "--tp", "2", "--dp", "4", "--ep", "8",
        *COMMON,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["chips"] == 8


def test_gpu_default_is_tp_within_a_node_and_pp_across(capsys):
    code, out, err = run_cli(
        capsys, "estimate", "--model", "qwen3-235b-a22b", "--hardware", "h200", "--chips", "16", *COMMON
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["parallel"]["tp"] == 8 and report["parallel"]["pp"] == 2 and report["engine_default"] is True


def test_ep_beyond_one_stage_is_one_line_with_the_fix(capsys):
    code, out, err = run_cli(
        capsys, "estimate", "--model", "qwen3-235b-a22b", "--hardware", "h200", "--tp", "8", "--ep", "16", "--pp",
        "2", "--weight-bits", "fp8", *COMMON,
    )  # fmt: skip
    line = assert_one_error_line(code, out, err, ("expert_parallel",))
    assert "TP 8 EP 8 PP 2" in line and "TP 8 DP 2 EP 16" in line


def test_pope_layout_with_engine_degrees_is_refused(capsys):
    code, out, err = run_cli(
        capsys, "estimate", "--model", "qwen3-235b-a22b", "--hardware", "h200", "--tp", "8", "--ffn-layout", "ws_2d",
        *COMMON,
    )  # fmt: skip
    assert_one_error_line(code, out, err, ("ffn_layout",))


def test_a_tp_that_does_not_divide_the_heads_is_one_line_with_the_fix(capsys):
    """On a GB200 NVL72 the engine default for 72 chips was TP 72, which no GPU engine runs for a
    64-head model (vLLM, SGLang and TensorRT-LLM split whole heads): refused, naming the TP and
    the heads, with a deployment that divides both; that deployment then runs."""
    args = ["estimate", "--model", "llama-3-70b", "--hardware", "gb200", "--batch", "72"]
    args += ["--prompt-len", "128", "--gen-len", "8"]
    code, out, err = run_cli(capsys, *args, "--chips", "72")
    line = assert_one_error_line(code, out, err, ("tp", "64 attention heads"))
    assert "--tp 8 --dp 9" in line
    code, out, err = run_cli(capsys, *args, "--tp", "8", "--dp", "9", "--json")
    assert code == 0, err
    assert json.loads(out)["parallel"] == {"tp": 8, "pp": 1, "ep": 1, "dp": 9, "micro_batches": 1}
    code, out, err = run_cli(capsys, *args, "--tp", "3")  # an explicit TP too
    assert_one_error_line(code, out, err, ("tp", "TP 3"))
    # Under a load the serving model charges TP only: one replica of a TP that divides the heads.
    loaded = [a for a in args if a not in ("--batch", "72")]
    code, out, err = run_cli(capsys, *loaded, "--chips", "72", "--concurrency", "8")
    line = assert_one_error_line(code, out, err, ("chips", "64 attention heads"))
    assert "--chips 8" in line


def test_a_named_backend_refuses_what_it_does_not_launch(capsys):
    """--backend names the engine deployed on (as a study's backend does): vLLM's expert
    parallelism spans every TP x DP rank, so EP 2 on TP 2 x DP 4 is refused under vllm in one line
    and scored under sglang, which runs it."""
    args = ["estimate", "--model", "qwen3-235b-a22b", "--hardware", "h200", "--tp", "2", "--ep", "2", "--dp", "4"]
    args += ["--batch", "64", "--prompt-len", "512", "--gen-len", "64"]
    code, out, err = run_cli(capsys, *args, "--backend", "vllm")
    assert_one_error_line(code, out, err, ("backend", "EP 2"))
    code, out, err = run_cli(capsys, *args, "--backend", "sglang", "--json")
    assert code == 0, err
    assert json.loads(out)["parallel"]["ep"] == 2


def test_micro_batches_without_pipeline_stages_are_refused(capsys):
    """--pp 1 --micro-batches 4 was scored as four micro-batches run one after another on the one
    stage, a deployment no engine launches (a study leaves it out); micro-batches fill a
    pipeline (Narayanan et al. 2021, 2.2)."""
    args = ("estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--tp", "1")
    code, out, err = run_cli(capsys, *args, "--pp", "1", "--micro-batches", "4", *COMMON)
    line = assert_one_error_line(code, out, err, ("micro_batches",))
    assert "--pp 2" in line
    code, out, err = run_cli(capsys, *args, "--pp", "2", "--micro-batches", "4", *COMMON)
    assert code == 0, err
    assert json.loads(out)["parallel"]["micro_batches"] == 4


def test_an_fp8_checkpoint_on_a_chip_without_fp8_names_the_checkpoint(capsys):
    """DeepSeek-V3's checkpoint is fp8 (its quantization_config is the default --weight-bits); on
    an A100 the refusal named --weight-bits, a flag the user never passed."""
    args = ("estimate", "--model", "deepseek-v3", "--hardware", "a100-80gb", "--tp", "8", "--pp", "2", *COMMON)
    code, out, err = run_cli(capsys, *args)
    line = assert_one_error_line(code, out, err, ("weight_bits",))
    assert "checkpoint is fp8" in line and "--weight-bits 16, 8 or 4" in line
    code, out, err = run_cli(capsys, *args, "--weight-bits", "8")
    assert code == 0, err


def test_a_tp_group_cut_by_a_node_edge_is_one_line_with_the_fix(capsys):
    """TP 6 x PP 4 of PaLM 540B (48 heads) on 24 H100s: engines place ranks in order, TP fastest,
    so ranks 6-11 are 2 GPUs of node 0 and 4 of node 1 (nodes of 8) and their all-reduces cross
    InfiniBand. It was scored on its 1 x 1 x 6 mesh as one NVLink node (every all-reduce at 450
    GB/s; a 24-chip deployment cannot hold its TP groups of 6 inside nodes of 8)."""
    args = ("estimate", "--model", "palm-540b", "--hardware", "h100-sxm", "--phase", "decode")
    code, out, err = run_cli(capsys, *args, "--tp", "6", "--pp", "4", *COMMON)
    line = assert_one_error_line(code, out, err, ("tp",))
    assert "ranks 6-11 span two" in line and "use a TP dividing 8 (1, 2, 4, 8)" in line
    # TP 6 alone is one node; TP 8 x PP 3 keeps each group in its node: both run.
    for degrees in (("--tp", "6"), ("--tp", "8", "--pp", "3")):
        code, out, err = run_cli(capsys, *args, *degrees, *COMMON)
        assert code == 0, err


def test_dense_replicas_over_part_of_a_node_run_and_moe_instances_do_not(capsys):
    """tp 4 x dp 3 of a dense model on 12 H100s (three TP 4 replicas: one node and half of
    another) was refused as "12 chips form no legal h100-sxm deployment" while tuner recommend
    planned "3 x TP4"; its DP ranks exchange nothing. An MoE model's DP ranks share the expert
    layers, one instance over 12 GPUs: still refused."""
    code, out, err = run_cli(
        capsys, "estimate", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tp", "4", "--dp", "3",
        "--batch", "12", *COMMON[:4], *COMMON[6:],
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["chips"] == 12
    code, out, err = run_cli(
        capsys, "estimate", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--tp", "4", "--dp", "3",
        "--batch", "12", *COMMON[:4], *COMMON[6:],
    )  # fmt: skip
    line = assert_one_error_line(code, out, err, ("chips",))
    assert "12 chips form no legal h100-sxm deployment" in line


def test_chips_beside_tp_that_do_not_match_name_the_degrees_that_would(capsys):
    # --chips 16 --tp 8 on H100s (8 an NVLink domain): the unnamed PP and DP are 1 once TP is named,
    # so 16 is refused; the line said "pass matching degrees" and left the user to find which.
    args = ("estimate", "--model", "llama-3-70b", "--hardware", "h100-sxm", "--chips", "16", "--tp", "8", *COMMON)
    line = assert_one_error_line(*run_cli(capsys, *args), ("chips",))
    assert "--pp 2 (static estimates only" in line and "--dp 2" in line and "--chips 8" in line
    # Chips no multiple of TP x DP: only --chips can match.
    args = ("estimate", "--model", "llama-3-70b", "--hardware", "h100-sxm", "--chips", "12", "--tp", "8", *COMMON)
    line = assert_one_error_line(*run_cli(capsys, *args), ("chips",))
    assert "--chips 8" in line and "--pp" not in line
