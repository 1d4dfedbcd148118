"""SGLang runs the schedule the serving model scores (each iteration one token of every decoding
sequence beside the prompt tokens) only with ``--enable-mixed-chunk``, off by default, and only with
chunked prefill on (sgl-project/sglang python/sglang/srt/server_args.py ``enable_mixed_chunk``;
managers/scheduler.py ``is_mixed_chunk``): the export passes the flag, and chunked prefill off under
SGLang is refused where it would be scored (tuner estimate, simulate, a study's spec)."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli
from cost_models.deployments import Deployment
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.serving import make_workloads
from search_spaces.space import compile_study, refuse_unscored_schedules
from search_spaces.spec import parse_spec
from tuner.export import _serving_spec, engine_args, sglang_args

DEPLOYMENT = Deployment(get_model("llama-3-8b"), get_hardware("h100-sxm"), (1, 1, 2), 32, 1024, 128)
# Mixtral 8x7B at TP1 DP4 EP4 on H100s: SGLang's DP attention, which divides a chunked budget by --dp-size.
MOE_DP4 = Deployment(
    get_model("mixtral-8x7b"), get_hardware("h100-sxm"), (1, 1, 1), 64, 1024, 128, data_parallel=4, expert_parallel=4
)


def _serving(backend: str, chunked: bool, max_num_tokens: int = 4096) -> dict:
    return make_workloads(
        backend=backend,
        concurrency=64,
        prompt_len=1024,
        gen_len=128,
        max_batch_size=96,
        max_num_tokens=max_num_tokens,
        chunked_prefill=chunked,
        kv_block_size=64,
        memory_fraction=0.85,
    ).row(0)


def _flags(cli: str) -> dict[str, str | bool]:
    words = shlex.split(cli)
    out: dict[str, str | bool] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else None
            out[word] = True if nxt is None or nxt.startswith("--") else nxt
    return out


def test_a_chunked_serving_trial_is_exported_with_mixed_chunks():
    """Before, the line ran SGLang's default scheduler: prefill batches and decode batches apart."""
    data = engine_args(DEPLOYMENT, _serving("sglang", chunked=True), "sglang")
    flags = _flags(data["cli"])
    assert flags["--enable-mixed-chunk"] is True and flags["--chunked-prefill-size"] == "4096"
    assert data["engine_args"]["enable_mixed_chunk"] is True
    assert any(note.startswith("--enable-mixed-chunk: the trial was scored with") for note in data["notes"])


def test_an_unchunked_trial_is_exported_chunked_at_its_budget_with_mixed_chunks():
    """TensorRT-LLM's default (chunked context off) scored whole prompts mixed with decodes; written
    as --chunked-prefill-size -1, SGLang could not mix at all (is_mixed_chunk needs a chunk size)."""
    for scored in ("trtllm", "sglang"):
        data = engine_args(DEPLOYMENT, _serving(scored, chunked=False), "sglang")
        flags = _flags(data["cli"])
        assert flags["--chunked-prefill-size"] == "4096" and flags["--enable-mixed-chunk"] is True, scored
        said = "chunked prefill on (--chunked-prefill-size 4096), though the trial's is off"
        assert any(said in note for note in data["notes"]), data["notes"]


def test_an_unchunked_sglang_trial_under_dp_attention_keeps_each_ranks_budget():
    """Scored under SGLang with chunked prefill off, each of the 4 DP ranks ran 2048 tokens
    (cost_models.serving.rank_workloads divides only a chunked budget). Chunked for the export,
    SGLang divides --chunked-prefill-size by --dp-size (server_args.py _handle_data_parallelism):
    8192 gives each rank the 2048 scored."""
    data = engine_args(MOE_DP4, _serving("sglang", chunked=False, max_num_tokens=2048), "sglang")
    flags = _flags(data["cli"])
    assert flags["--chunked-prefill-size"] == "8192" and flags["--enable-mixed-chunk"] is True
    assert flags["--enable-dp-attention"] is True and flags["--dp-size"] == "4"


def test_a_static_trial_and_disaggregated_pools_do_not_mix():
    """A static trial scored no serving schedule; a disaggregated prefill instance runs no decodes
    and a decode instance no prompts, so neither has batches to mix."""
    assert "--enable-mixed-chunk" not in engine_args(DEPLOYMENT, None, "sglang")["cli"]
    row = _serving("sglang", chunked=False)
    for pool in ("prefill", "decode"):
        data = sglang_args(_serving_spec(DEPLOYMENT, {**row, "pool": pool}))
        assert "--enable-mixed-chunk" not in data["cli"], pool
        assert f"--disaggregation-mode {pool}" in data["cli"]
    prefill = sglang_args(_serving_spec(DEPLOYMENT, {**row, "pool": "prefill"}))
    assert _flags(prefill["cli"])["--chunked-prefill-size"] == "-1"  # the pool's whole prompts, as scored


@pytest.mark.parametrize("fmt", ["vllm", "trtllm"])
def test_vllm_and_trtllm_lines_are_unchanged(fmt):
    """The lines main wrote for these trials (commit 55a1b8f), a chunked and an unchunked one."""
    expected = {
        ("vllm", True): "vllm serve meta-llama/Meta-Llama-3-8B --tensor-parallel-size 2 --pipeline-parallel-size 1 "
        "--dtype bfloat16 --kv-cache-dtype auto --max-num-seqs 96 --max-model-len 1174 --max-num-batched-tokens 4096 "
        "--enable-chunked-prefill --block-size 64 --gpu-memory-utilization 0.86 --no-enable-prefix-caching",
        ("trtllm", True): "trtllm-serve meta-llama/Meta-Llama-3-8B --backend pytorch --tp_size 2 --pp_size 1 "
        "--max_batch_size 96 --max_num_tokens 4096 --max_seq_len 1174 --extra_llm_api_options "
        "extra_llm_api_options.yaml --host 0.0.0.0",
    }
    line = engine_args(DEPLOYMENT, _serving("sglang", chunked=True), fmt)["cli"]
    assert line == expected[(fmt, True)]
    assert "mixed" not in engine_args(DEPLOYMENT, _serving(fmt, chunked=False), fmt)["cli"]


ESTIMATE = ("--model", "llama-3-8b", "--hardware", "h100-sxm", "--prompt-len", "1024", "--gen-len", "128")


@pytest.mark.parametrize("command", ["estimate", "simulate"])
def test_unchunked_sglang_under_load_is_refused_in_one_line(capsys, command):
    """Scored as mixed iterations before, which SGLang with chunked prefill off does not run."""
    args = (command, *ESTIMATE, "--chips", "1", "--concurrency", "8", "--backend", "sglang", "--no-chunked-prefill")
    if command == "simulate":
        args += ("--requests", "16")
    line = assert_one_error_line(*run_cli(capsys, *args), ("chunked_prefill",))
    assert "--enable-mixed-chunk" in line and "drop --no-chunked-prefill, or pass --backend vllm or trtllm" in line


def test_unchunked_vllm_and_a_disaggregated_sglang_pool_are_still_estimated(capsys):
    code, out, err = run_cli(
        capsys, "estimate", *ESTIMATE, "--chips", "1", "--concurrency", "8", "--backend", "vllm",
        "--no-chunked-prefill", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["serving"]["engine"]["chunked_prefill"] is False
    code, out, err = run_cli(
        capsys, "estimate", *ESTIMATE, "--tp", "1", "--concurrency", "8", "--backend", "sglang",
        "--no-chunked-prefill", "--prefill-instances", "1", "--decode-instances", "1",
    )  # fmt: skip
    assert code == 0, err


STUDY: dict = {
    "name": "sglang-mixed-chunk-test",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 1024, "gen_len": 128},
    "space": {"chips": [1], "mesh": ["1x1x1"]},
    "serving": {"concurrency": [8], "chunked_prefill": [True, False]},
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.tokens_per_s_per_user"}],
    "backend": "sglang",
    "sampler": "exhaustive",
}


def test_a_study_drawing_unchunked_sglang_is_refused_at_load(tmp_path: Path, capsys):
    """A chunked_prefill axis with false under SGLang would have scored (and stored, and exported)
    candidates SGLang runs apart; refused with the spec, before any trial."""
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY), encoding="utf-8")
    code, out, err = run_cli(capsys, "search", str(path), "--storage", f"sqlite:///{tmp_path}/s.db")
    line = assert_one_error_line(code, out, err, ("serving.chunked_prefill",))
    assert "set chunked_prefill: [true], or backend: vllm or trtllm" in line
    assert not (tmp_path / "s.db").exists()
    both = copy.deepcopy(STUDY)
    both["serving"]["mode"] = "both"
    with pytest.raises(InvalidInputError, match="or mode: disaggregated"):
        refuse_unscored_schedules(compile_study(parse_spec(both)))
    # A study stored before the rule still compiles, to be read (tuner pareto, report) and exported.
    assert compile_study(parse_spec(STUDY)).space.dimensions["chunked_prefill"] == (True, False)


def test_a_disaggregated_or_chunked_sglang_study_is_searched():
    pools = copy.deepcopy(STUDY)
    pools["serving"]["mode"] = "disaggregated"
    chunked = copy.deepcopy(STUDY)
    chunked["serving"]["chunked_prefill"] = [True]
    vllm = {**copy.deepcopy(STUDY), "backend": "vllm"}
    for data in (pools, chunked, vllm):
        refuse_unscored_schedules(compile_study(parse_spec(data)))  # does not raise


def test_recommends_sglang_launch_files_mix_the_aggregated_plan_only(capsys, tmp_path: Path):
    """tuner recommend --export sglang: the aggregated plan's launch.sh ran SGLang's default
    scheduler before; a disaggregated plan's pools have nothing to mix."""
    out = tmp_path / "plan"
    code, _, err = run_cli(
        capsys, "recommend", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--request-rate", "4",
        "--prompt-len", "2048", "--gen-len", "256", "--max-ttft-s", "1", "--max-tpot-s", "0.05", "--max-chips", "8",
        "--mode", "both", "--export", "sglang", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "--enable-mixed-chunk" in (out / "aggregated" / "launch.sh").read_text()
    for pool in ("prefill", "decode"):
        assert "--enable-mixed-chunk" not in (out / "disaggregated" / pool / "launch.sh").read_text(), pool


def test_a_searched_sglang_trial_exports_with_mixed_chunks(tmp_path: Path, capsys):
    """End to end, as a user runs it: tuner search, then tuner export --format sglang of a trial."""
    chunked = copy.deepcopy(STUDY)
    chunked["serving"]["chunked_prefill"] = [True]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(chunked), encoding="utf-8")
    url = f"sqlite:///{tmp_path}/s.db"
    code, _, err = run_cli(capsys, "search", str(path), "--storage", url)
    assert code == 0, err
    code, out, err = run_cli(capsys, "export", STUDY["name"], "--trial", "0", "--storage", url, "--format", "sglang")
    assert code == 0, err
    data = json.loads(out)
    assert data["engine_args"]["enable_mixed_chunk"] is True and "--enable-mixed-chunk" in data["cli"]


def test_a_study_stored_before_the_rule_is_read_and_its_unchunked_trial_exported_chunked(
    tmp_path: Path, capsys, monkeypatch
):
    """A study searched before the refusal (simulated: the check patched out for its search) holds
    unchunked SGLang trials: tuner pareto still reads it, and the export writes them chunked at the
    budget with --enable-mixed-chunk, the schedule they were scored with, not --chunked-prefill-size -1."""
    import tuner.study

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY), encoding="utf-8")
    url = f"sqlite:///{tmp_path}/old.db"
    with monkeypatch.context() as patch:
        patch.setattr(tuner.study, "refuse_unscored_schedules", lambda compiled: None)
        code, _, err = run_cli(capsys, "search", str(path), "--storage", url)
    assert code == 0, err
    code, _, err = run_cli(capsys, "pareto", STUDY["name"], "--storage", url)
    assert code == 0, err
    notes = []
    for trial in ("0", "1"):
        code, out, err = run_cli(
            capsys, "export", STUDY["name"], "--trial", trial, "--storage", url, "--format", "sglang"
        )
        assert code == 0, err
        data = json.loads(out)
        assert _flags(data["cli"])["--chunked-prefill-size"] == "8192" and data["engine_args"]["enable_mixed_chunk"]
        notes += data["notes"]
    assert sum("though the trial's is off" in note for note in notes) == 1
