"""The engine exports write only flags and values the engines accept, checked against small tables
read off the engines' own sources (the newest stored copies; see each table's comment)."""

from __future__ import annotations

import shlex

import pytest

from cost_models.deployments import Deployment
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.serving import make_workloads
from tuner.export import engine_args

DEPLOYMENT = Deployment(get_model("llama-3-8b"), get_hardware("h100-sxm"), (1, 1, 2), 32, 1024, 128)

# vLLM (vllm-project/vllm): --kv-cache-dtype takes CacheDType (vllm/config/cache.py); the ones the
# export may write. --quantization takes QuantizationMethods
# (vllm/model_executor/layers/quantization/__init__.py; mxfp4 from v0.10.1).
VLLM_KV_CACHE_DTYPES = {"auto", "fp8", "fp8_e4m3", "fp8_e5m2"}
VLLM_QUANTIZATION = {"fp8", "gptq", "gptq_marlin", "modelopt_fp4", "mxfp4"}


def _flags(cli: str) -> dict[str, str | bool]:
    """A launch line's flags: ``--flag value`` or a bare ``--flag`` (True)."""
    tokens = shlex.split(cli)
    flags: dict[str, str | bool] = {}
    for i, token in enumerate(tokens):
        if token.startswith("--"):
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            flags[token] = True if following is None or following.startswith("--") else following
    return flags


def _serving(backend: str = "trtllm", **knobs) -> dict:
    settings = {
        "concurrency": 64,
        "prompt_len": 1024,
        "gen_len": 128,
        "prompt_len_std": 0.0,
        **knobs,
    }
    return make_workloads(backend=backend, **settings).row(0)


def _vllm(serving: dict | None, deployment: Deployment = DEPLOYMENT) -> dict:
    data = engine_args(deployment, serving, "vllm")
    flags = _flags(data["cli"])
    if "--kv-cache-dtype" in flags:
        assert flags["--kv-cache-dtype"] in VLLM_KV_CACHE_DTYPES
    if "--quantization" in flags:
        assert flags["--quantization"] in VLLM_QUANTIZATION
    return {"flags": flags, **data}


def test_vllm_without_chunked_prefill_gets_a_token_budget_of_the_context():
    # vllm/config/scheduler.py, SchedulerConfig.verify_max_model_len: without chunked prefill
    # max_num_batched_tokens < max_model_len is a ValueError at startup. A TensorRT-LLM trial
    # (chunked prefill off) with a 1100-token budget (at least the prompt, as the serving model
    # needs) and longer contexts: vLLM gets the context as its budget.
    data = _vllm(_serving(max_num_tokens=1100, chunked_prefill=False))
    flags = data["flags"]
    assert flags["--no-enable-chunked-prefill"] is True
    assert int(flags["--max-num-batched-tokens"]) >= int(flags["--max-model-len"])
    assert any("refuses max_num_batched_tokens (1100) below max_model_len" in n for n in data["notes"])
    # With chunked prefill on, the trial's budget stands.
    flags = _vllm(_serving(max_num_tokens=512, chunked_prefill=True))["flags"]
    assert flags["--max-num-batched-tokens"] == "512" and flags["--enable-chunked-prefill"] is True


def test_vllm_max_num_seqs_is_at_most_the_token_budget():
    # vllm/config/scheduler.py, SchedulerConfig.verify_max_model_len: max_num_batched_tokens <
    # max_num_seqs is a ValueError. TensorRT-LLM's 2048-sequence default over a 1536-token budget.
    # The serving model never ran more sequences than the budget keeps decoding
    # (cost_models.serving.token_limit), so the cap is silent: it changes nothing the trial scored.
    data = _vllm(_serving(max_num_tokens=1536, chunked_prefill=True))
    flags = data["flags"]
    assert int(flags["--max-num-seqs"]) <= int(flags["--max-num-batched-tokens"]) == 1536
    assert not any("max_num_seqs" in n for n in data["notes"])
    # A static trial was scored at its batch: capping it changes what was scored, and a note says so.
    static = _vllm(None, Deployment(get_model("llama-3-8b"), get_hardware("h100-sxm"), (1, 1, 2), 16384, 1024, 128))
    assert static["flags"]["--max-num-seqs"] == "8192"
    assert any("refuses max_num_seqs (16384)" in n for n in static["notes"])


@pytest.mark.parametrize(
    ("block", "written"), [(1, 16), (8, 16), (16, 16), (24, 32), (48, 64), (64, 64), (96, 128), (160, 256)]
)
def test_vllm_block_size_is_a_multiple_of_16(block, written):
    # vllm/v1/attention/backends/flash_attn.py: "Block size must be a multiple of 16." An SGLang
    # trial (page size 1) exported to vLLM gets 16. And one of --block-size's choices (vllm/config/
    # cache.py, BlockSize = Literal[1, 8, 16, 32, 64, 128, 256], argparse choices by
    # vllm/engine/arg_utils.py literal_to_kwargs): a page of 48 was written --block-size 48, which
    # `vllm serve` refuses ("invalid choice").
    data = _vllm(_serving(backend="sglang", kv_block_size=block))
    assert data["flags"]["--block-size"] == str(written)
    assert any("multiple of 16" in n for n in data["notes"]) == (block != written)


@pytest.mark.parametrize(
    ("block", "written"), [(1, 64), (16, 64), (32, 64), (64, 64), (96, 128), (128, 128), (192, 256)]
)
def test_vllm_block_size_of_a_latent_attention_model_is_what_flashmla_runs(block, written):
    # vllm/platforms/cuda.py, check_and_update_config: for an MLA model "Forcing kv cache block
    # size to 64 for FlashMLA backend." where the block is not a multiple of 64 (FlashMLA, the
    # default MLA backend on Hopper). DeepSeek-V3 at vLLM's default 16 was exported --block-size 16,
    # which vLLM replaced by 64 with no word in the export.
    deepseek = Deployment(get_model("deepseek-v3"), get_hardware("h200"), (1, 1, 8), 32, 1024, 128, weight_dtype="fp8")
    data = _vllm(_serving(backend="vllm", kv_block_size=block), deepseek)
    assert data["flags"]["--block-size"] == str(written)
    # 192, a multiple of 64 that is no --block-size choice: the choice above (the choices note).
    said = [n for n in data["notes"] if ("FlashMLA" in n and "multiple of 64" in n) or "--block-size choices" in n]
    assert bool(said) == (block != written)


# TensorRT-LLM (NVIDIA/TensorRT-LLM): trtllm-serve's click options (tensorrt_llm/commands/serve.py;
# --tp_size and --pp_size are aliases of --tensor_parallel_size / --pipeline_parallel_size,
# --extra_llm_api_options of --config) and the LLM API keys the options file may set
# (tensorrt_llm/llmapi/llm_args.py: BaseLlmArgs and KvCacheConfig; KvCacheConfig.dtype as the
# PyTorch backend reads it).
TRTLLM_SERVE_OPTIONS = {
    "--backend",
    "--tp_size",
    "--pp_size",
    "--max_batch_size",
    "--max_num_tokens",
    "--max_seq_len",
    "--extra_llm_api_options",
    "--host",
    "--port",
}
TRTLLM_BACKENDS = {"pytorch", "tensorrt", "_autodeploy"}
TRTLLM_LLM_ARGS = {
    "enable_chunked_prefill",
    "kv_cache_config",
    "moe_expert_parallel_size",
    "moe_tensor_parallel_size",
    "enable_attention_dp",
}
TRTLLM_KV_CACHE_CONFIG = {"tokens_per_block", "free_gpu_memory_fraction", "enable_block_reuse", "dtype"}
TRTLLM_KV_CACHE_DTYPES = {"auto", "fp8", "nvfp4"}


def _trtllm(serving: dict | None, deployment: Deployment = DEPLOYMENT) -> dict:
    data = engine_args(deployment, serving, "trtllm")
    flags = _flags(data["cli"])
    assert set(flags) <= TRTLLM_SERVE_OPTIONS and flags["--backend"] in TRTLLM_BACKENDS
    extra = data["extra_llm_api_options"]
    assert set(extra) <= TRTLLM_LLM_ARGS
    assert set(extra["kv_cache_config"]) <= TRTLLM_KV_CACHE_CONFIG
    assert extra["kv_cache_config"]["dtype"] in TRTLLM_KV_CACHE_DTYPES
    return data


def test_trtllm_writes_tokens_per_block_only_off_its_default():
    # KvCacheConfig is a StrictBaseModel: a release without tokens_per_block refuses the key, so the
    # default block (32) is left out and any other is written with a note.
    data = _trtllm(_serving(kv_block_size=32))
    assert "tokens_per_block" not in data["extra_llm_api_options"]["kv_cache_config"]
    assert not any("tokens_per_block" in n for n in data["notes"])
    data = _trtllm(_serving(kv_block_size=64))
    assert data["extra_llm_api_options"]["kv_cache_config"]["tokens_per_block"] == 64
    assert any("tokens_per_block 64 needs a TensorRT-LLM" in n for n in data["notes"])


def test_trtllm_without_chunked_prefill_notes_prompts_past_the_token_budget():
    # tensorrt_llm/llmapi/llm.py, _check_arguments: without chunked prefill a prompt longer than
    # max_num_tokens is refused. Prompts of 1024 +- 200 tokens reach past a 1100-token budget.
    spread = _serving(max_num_tokens=1100, chunked_prefill=False, prompt_len_std=200.0)
    assert any("refuses prompts over max_num_tokens (1100)" in n for n in _trtllm(spread)["notes"])
    fixed = _serving(max_num_tokens=1100, chunked_prefill=False)
    assert not any("refuses prompts" in n for n in _trtllm(fixed)["notes"])
    chunked = _serving(max_num_tokens=1100, chunked_prefill=True, prompt_len_std=200.0)
    assert not any("refuses prompts" in n for n in _trtllm(chunked)["notes"])


# SGLang (sgl-project/sglang python/sglang/srt/server_args.py): --kv-cache-dtype choices (fp4_e2m1
# in recent releases only) and QUANTIZATION_CHOICES, the ones the export may write.
SGLANG_KV_CACHE_DTYPES = {"auto", "fp8_e5m2", "fp8_e4m3", "bf16", "bfloat16", "fp4_e2m1"}
SGLANG_QUANTIZATION = {"fp8", "gptq", "gptq_marlin", "modelopt_fp4", "mxfp4"}


def test_sglang_dp_attention_notes_the_per_rank_chunk():
    # server_args.py, _handle_data_parallelism: with --enable-dp-attention, tp_size % dp_size == 0 and
    # chunked_prefill_size //= dp_size.
    moe = Deployment(get_model("qwen3-235b-a22b"), get_hardware("h200"), (1, 1, 2), 32, 1024, 128, data_parallel=4)
    data = engine_args(moe, None, "sglang")
    flags = _flags(data["cli"])
    assert flags["--enable-dp-attention"] is True and int(flags["--tp-size"]) % int(flags["--dp-size"]) == 0
    assert flags["--kv-cache-dtype"] in SGLANG_KV_CACHE_DTYPES
    assert flags.get("--quantization", "fp8") in SGLANG_QUANTIZATION
    assert any("each of the 4 ranks prefills chunks of 2048 tokens" in n for n in data["notes"])


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_a_context_past_the_models_is_noted(engine):
    # vllm/config/model.py (_get_and_verify_max_len) and sglang python/sglang/srt/configs/
    # model_config.py refuse a context limit past the model's derived one unless an environment
    # variable allows it. gpt-oss-120b: 131072 tokens.
    def notes(prompt: int) -> list[str]:
        d = Deployment(get_model("gpt-oss-120b"), get_hardware("h200"), (1, 1, 8), 1, prompt, 1024)
        return engine_args(d, None, engine)["notes"]

    assert any("passes gpt-oss-120b's 131072-token context" in n for n in notes(131072))
    assert not any("-token context:" in n for n in notes(8192))


def test_sglang_ep_size_notes_the_older_enable_ep_moe():
    # server_args.py: ep_size (--ep-size, --expert-parallel-size, --ep); older releases ran expert
    # parallelism only with --enable-ep-moe (which set ep_size to tp_size).
    moe = Deployment(get_model("qwen3-235b-a22b"), get_hardware("h200"), (1, 1, 8), 32, 1024, 128, expert_parallel=8)
    data = engine_args(moe, None, "sglang")
    assert _flags(data["cli"])["--ep-size"] == "8"
    assert any("--enable-ep-moe" in n for n in data["notes"])
    dense = engine_args(DEPLOYMENT, None, "sglang")
    assert "--ep-size" not in _flags(dense["cli"]) and not any("--enable-ep-moe" in n for n in dense["notes"])


def test_trtllm_free_gpu_memory_fraction_is_written_as_scored():
    # The serving estimate reads free_gpu_memory_fraction as TensorRT-LLM does (a share of the memory
    # the weights and the profiling forward leave; tensorrt_llm/_torch/pyexecutor/_util.py,
    # KvCacheCreator._cal_max_memory): a TensorRT-LLM trial's fraction goes out as it is, with no
    # note on its meaning.
    data = _trtllm(_serving(memory_fraction=0.8))
    assert data["extra_llm_api_options"]["kv_cache_config"]["free_gpu_memory_fraction"] == 0.8
    assert not any("free_gpu_memory_fraction" in n or "memory fraction" in n for n in data["notes"])


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize("weights", ["int4", "int8"])
def test_weight_only_trials_name_the_marlin_kernel_not_gptq(engine, weights):
    """`--quantization gptq` forces vLLM's (and SGLang's) older GPTQ kernel even where Marlin runs
    the checkpoint (gptq_marlin.py, override_quantization_method: "you specified quantization=gptq
    explicitly, so forcing gptq"); the estimate's weight-only GEMMs are Marlin-class."""
    deployment = Deployment(
        get_model("llama-3-8b"), get_hardware("h100-sxm"), (1, 1, 2), 32, 1024, 128, weight_dtype=weights
    )
    data = engine_args(deployment, None, engine)
    assert data["engine_args"]["quantization"] == "gptq_marlin"
    assert _flags(data["cli"])["--quantization"] == "gptq_marlin"
    (note,) = [n for n in data["notes"] if "weight-only" in n]
    # Each engine's own least compute capability for Marlin (vLLM's marlin_utils.py 7.5, SGLang's
    # GPTQMarlinConfig 8.0); an SGLang export does not name vLLM.
    least = {"vllm": "compute capability 7.5", "sglang": "compute capability 8.0"}[engine]
    assert "Marlin" in note and least in note and "awq_marlin" in note and "vLLM also" not in note


@pytest.mark.parametrize("weights", ["int4", "int8", "fp8"])
def test_vllm_reads_a_quantized_checkpoints_own_method(weights):
    """The model is a GPTQ, AWQ or compressed-tensors checkpoint (its config.json's
    quantization_config): no --quantization, so vLLM detects the method and upgrades it to Marlin
    itself; `gptq` was refused for an AWQ or compressed-tensors checkpoint, `fp8` for a ModelOpt or
    compressed-tensors FP8 one ("does not match the quantization method specified in the
    `quantization` argument")."""
    model = get_model("llama-3-8b").model_copy(update={"checkpoint_format": weights})
    deployment = Deployment(model, get_hardware("h100-sxm"), (1, 1, 2), 32, 1024, 128, weight_dtype=weights)
    data = engine_args(deployment, None, "vllm")
    assert data["engine_args"]["quantization"] is None and "--quantization" not in data["cli"]
    assert any("quantization_config" in n and ("Marlin" in n) == (weights != "fp8") for n in data["notes"])


def test_the_fp8_note_says_the_engine_quantizes_the_activations_as_the_estimate_assumes():
    # The note used to say the estimate "kept the trial's" 16-bit activations; under an engine's
    # profile on an fp8 GPU it times and bounds fp8 weights as W8A8 (calibrated_times.matmul_compute_dtype).
    fp8 = Deployment(get_model("llama-3-8b"), get_hardware("h100-sxm"), (1, 1, 2), 32, 1024, 128, weight_dtype="fp8")
    notes = " ".join(_vllm(_serving("vllm"), fp8)["notes"])
    assert "kept the trial's" not in notes
    assert "on h100-sxm (fp8 tensor cores) vLLM runs the weight matmuls as W8A8 fp8 GEMMs" in notes
    assert "quantizing the trial's bf16 activations to fp8" in notes


@pytest.mark.parametrize(("engine", "tp", "refused"), [("vllm", 4, True), ("sglang", 8, True), ("vllm", 2, False)])
def test_a_tp_the_kv_heads_do_not_split_over_is_not_exported_to_vllm_or_sglang(engine, tp, refused):
    """Phi-3-medium (published config: 10 KV heads, 40 heads): vLLM's and SGLang's
    QKVParallelLinear divide(10, 4) / divide(4, 10) assert at load, so TP 4 and 8 are no launch
    line; TP 2 (10 / 2 = 5 KV heads a rank) is. TensorRT-LLM's export is unchanged."""
    from pathlib import Path

    from cost_models.errors import InvalidInputError
    from cost_models.hf_config import model_from_hf_config

    phi3 = model_from_hf_config(Path(__file__).parent.parent / "fixtures" / "hf" / "phi3_medium.json")
    deployment = Deployment(phi3, get_hardware("h100-sxm"), (1, 1, tp), 8, 1024, 128)
    if not refused:
        assert "--tensor-parallel-size 2" in engine_args(deployment, None, engine)["cli"]
        return
    with pytest.raises(InvalidInputError) as raised:
        engine_args(deployment, None, engine)
    assert raised.value.field == "format" and "10 KV heads" in str(raised.value) and "\n" not in str(raised.value)
    assert engine_args(deployment, None, "trtllm")["cli"]  # TensorRT-LLM: no such rule here


def _moe_dp4() -> Deployment:
    # Mixtral 8x7B at TP1 DP4 EP4 on H100s: attention DP, each rank one GPU.
    return Deployment(
        get_model("mixtral-8x7b"), get_hardware("h100-sxm"), (1, 1, 1), 64, 1024, 128,
        data_parallel=4, expert_parallel=4,
    )  # fmt: skip


def test_a_vllm_trials_token_budget_reaches_each_sglang_dp_attention_rank():
    # A trial scored under vLLM ran 2048 tokens an iteration in each DP rank
    # (cost_models.serving.rank_workloads); SGLang with DP attention divides --chunked-prefill-size by
    # --dp-size (server_args.py, _handle_data_parallelism), so 2048 written as such gave each rank
    # 512, a quarter of the budget scored (its note said so: "chunks of 512 tokens").
    serving = _serving("vllm", max_num_tokens=2048, chunked_prefill=True)
    data = engine_args(_moe_dp4(), serving, "sglang")
    flags = _flags(data["cli"])
    assert flags["--chunked-prefill-size"] == "8192"
    assert any("each of the 4 ranks prefills chunks of 2048 tokens" in n for n in data["notes"])
    # Scored under SGLang, the flag is the trial's own (SGLang divides it as it was scored).
    own = _serving("sglang", max_num_tokens=8192, chunked_prefill=True)
    same = _flags(engine_args(_moe_dp4(), own, "sglang")["cli"])
    assert same["--chunked-prefill-size"] == "8192"


@pytest.mark.parametrize(("engine", "flag"), [("vllm", "--max-num-batched-tokens"), ("trtllm", "--max_num_tokens")])
def test_an_sglang_trials_token_budget_is_each_rank_under_another_engine(engine, flag):
    # Scored under SGLang with DP attention, --chunked-prefill-size 8192 over 4 ranks gave each rank
    # 2048 tokens an iteration; vLLM's engine cores and TensorRT-LLM's attention-DP ranks each take
    # their budget as written, so 8192 gave each rank 4x the budget scored.
    serving = _serving("sglang", max_num_tokens=8192, chunked_prefill=True)
    data = engine_args(_moe_dp4(), serving, engine)
    assert _flags(data["cli"])[flag] == "2048"
    assert any("2048 tokens an iteration in each of its 4 DP ranks" in n for n in data["notes"])
