"""Engine arguments of an export: each serving knob onto each engine's flag (vLLM, SGLang, TensorRT-LLM)."""

from __future__ import annotations

import json

import optuna
import pytest

from cost_models.deployments import Deployment
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from cost_models.serving import make_workloads
from tuner.export import engine_args, engine_knobs, export, memory_fraction

optuna.logging.set_verbosity(optuna.logging.WARNING)

DEPLOYMENT = Deployment(get_model("llama-3-8b"), get_hardware("h100-sxm"), (1, 1, 2), 32, 1024, 128)


def _serving(chunked: bool = False, prefix: float = 0.5, backend: str = "trtllm") -> dict:
    return make_workloads(
        backend=backend,
        concurrency=64,
        prompt_len=1024,
        gen_len=128,
        max_batch_size=96,
        max_num_tokens=4096,
        chunked_prefill=chunked,
        kv_block_size=64,
        prefix_hit_rate=prefix,
        memory_fraction=0.85,
    ).row(0)


def test_vllm_flags():
    cli = engine_args(DEPLOYMENT, _serving(backend="vllm"), "vllm")["cli"]
    for flag in (
        "--tensor-parallel-size 2",
        "--max-num-seqs 96",
        "--max-num-batched-tokens 4096",
        "--no-enable-chunked-prefill",
        "--block-size 64",
        "--gpu-memory-utilization 0.85",
        "--enable-prefix-caching",
    ):
        assert f" {flag}" in cli, (flag, cli)
    cli = engine_args(DEPLOYMENT, _serving(chunked=True, prefix=0.0), "vllm")["cli"]
    assert " --enable-chunked-prefill" in cli and " --no-enable-prefix-caching" in cli


def test_sglang_flags():
    data = engine_args(DEPLOYMENT, _serving(backend="sglang"), "sglang")
    cli = data["cli"]
    assert cli.startswith("python -m sglang.launch_server --model-path meta-llama/Meta-Llama-3-8B")
    for flag in (
        "--tp-size 2",
        "--max-running-requests 96",
        # Chunked prefill off scored mixed iterations, which SGLang runs only chunked
        # (--enable-mixed-chunk): the export chunks at the budget (tests/tuner/test_export_sglang_mixed_chunk.py).
        "--chunked-prefill-size 4096",
        "--max-prefill-tokens 4096",
        "--page-size 64",
        "--mem-fraction-static 0.85",
    ):
        assert f" {flag}" in cli, (flag, cli)
    assert "--disable-radix-cache" not in cli  # prefix hits: SGLang's radix cache stays on
    cli = engine_args(DEPLOYMENT, _serving(chunked=True, prefix=0.0), "sglang")["cli"]
    assert " --chunked-prefill-size 4096" in cli and " --disable-radix-cache" in cli


def test_trtllm_flags_and_llm_api_options():
    data = engine_args(DEPLOYMENT, _serving(), "trtllm")
    cli = data["cli"]
    # max_seq_len: the 1024-token prompt and the outputs' 99.9th percentile under the closed loop's
    # default 5% spread (lognormal, 128 x exp(3.09 x 0.05) = 149.2 -> 150), not the mean 1152.
    for flag in ("--tp_size 2", "--max_batch_size 96", "--max_num_tokens 4096", "--max_seq_len 1174"):
        assert f" {flag}" in cli, (flag, cli)
    assert " --extra_llm_api_options extra_llm_api_options.yaml" in cli
    assert data["extra_llm_api_options"] == {
        "enable_chunked_prefill": False,
        "kv_cache_config": {
            "tokens_per_block": 64,
            "free_gpu_memory_fraction": 0.85,
            "enable_block_reuse": True,
            "dtype": "auto",
        },
    }
    assert "tokens_per_block: 64" in data["extra_llm_api_options_yaml"]


def test_trtllm_says_the_repo_exported_is_not_in_the_trials_format():
    """TensorRT-LLM's PyTorch backend runs a checkpoint pre-quantized with Model Optimizer in its
    format and quantizes nothing at load (nvidia.github.io/TensorRT-LLM, torch/features/quantization):
    an fp8 trial exported with meta-llama's 16-bit repo runs 16-bit weights, twice the trial's. The
    note said only "serve a checkpoint quantized with TensorRT Model Optimizer", beside a model
    argument that is not one."""
    fp8 = Deployment(get_model("llama-3-8b"), get_hardware("h100-sxm"), (1, 1, 2), 32, 1024, 128, weight_dtype="fp8")
    data = engine_args(fp8, _serving(), "trtllm")
    assert data["engine_args"]["model"] == "meta-llama/Meta-Llama-3-8B"
    assert any("the repo below is the 16-bit one" in note for note in data["notes"])
    deepseek = Deployment(get_model("deepseek-v3"), get_hardware("b200"), (1, 1, 8), 32, 1024, 128, weight_dtype="fp4")
    notes = engine_args(deepseek, _serving(), "trtllm")["notes"]
    assert any("the repo below stores fp8 weights" in note for note in notes)
    # How to make the checkpoint, as TensorRT-LLM's quantization guide gives it (Model Optimizer's
    # llm_ptq example), from the repo exported: fp8 and NVFP4, the formats the guide names.
    recipe = "scripts/huggingface_example.sh --model meta-llama/Meta-Llama-3-8B --quant fp8 --export_fmt hf"
    assert sum(recipe in note for note in data["notes"]) == 1
    assert not any("huggingface_example.sh" in note for note in notes)  # its repo is fp8, not the input
    nvfp4 = Deployment(get_model("llama-3-8b"), get_hardware("b200"), (1, 1, 1), 32, 1024, 128, weight_dtype="fp4")
    assert any("--quant nvfp4 --export_fmt hf" in note for note in engine_args(nvfp4, _serving(), "trtllm")["notes"])
    int4 = Deployment(get_model("llama-3-8b"), get_hardware("h100-sxm"), (1, 1, 2), 32, 1024, 128, weight_dtype="int4")
    assert not any("huggingface_example.sh" in note for note in engine_args(int4, _serving(), "trtllm")["notes"])


def test_trtllm_reads_a_block_scaled_fp8_checkpoint_an_fp8_trial_runs_as_stored():
    """deepseek-ai/DeepSeek-V3 stores fp8 weights with 128 x 128 block scales (quant_method fp8,
    weight_block_size), which TensorRT-LLM's PyTorch backend reads itself (ModelConfig.
    load_hf_quant_config: "DeepSeek V3 FP8 ckpt" -> FP8_BLOCK_SCALES). An fp8 trial of it exported
    to TensorRT-LLM was told to serve a Model Optimizer checkpoint instead, since "the repo below
    stores fp8 weights, which TensorRT-LLM would run as stored, not as the trial": the trial's own
    format (tuner export deepseek-v3-h200-serving --trial N --format trtllm)."""
    deepseek = Deployment(get_model("deepseek-v3"), get_hardware("h200"), (1, 1, 8), 32, 1024, 128, weight_dtype="fp8")
    data = engine_args(deepseek, _serving(), "trtllm")
    assert data["engine_args"]["model"] == "deepseek-ai/DeepSeek-V3"
    assert not any("Model Optimizer" in note or "not as the trial" in note for note in data["notes"]), data["notes"]
    assert any("reads deepseek-v3's fp8 weights" in note and "block scales" in note for note in data["notes"])


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_the_int4_note_names_what_the_repo_exported_stores(engine):
    """deepseek-ai/DeepSeek-V3 stores fp8 weights (its config's quantization_config, fp8 block
    scales); an int4 trial's note said "the repo below is the 16-bit one" of it."""
    deepseek = Deployment(get_model("deepseek-v3"), get_hardware("h200"), (1, 1, 8), 32, 1024, 128, weight_dtype="int4")
    notes = engine_args(deepseek, _serving(), engine)["notes"]
    assert any("set the model to one (the repo below stores fp8 weights)" in note for note in notes)
    assert not any("16-bit one" in note for note in notes)
    llama = Deployment(get_model("llama-3-8b"), get_hardware("h100-sxm"), (1, 1, 2), 32, 1024, 128, weight_dtype="int4")
    assert any("(the repo below is the 16-bit one)" in note for note in engine_args(llama, _serving(), engine)["notes"])


def test_without_serving_the_engine_defaults_and_the_static_batch():
    assert engine_knobs(None, "vllm", 32) == {
        "max_batch_size": 32,
        "max_num_tokens": 8192,
        "chunked_prefill": True,
        "kv_block_size": 16,
        "memory_fraction": 0.9,
        "prefix_caching": False,
    }
    args = engine_args(DEPLOYMENT, None, "sglang")["engine_args"]
    assert (args["max_running_requests"], args["page_size"], args["mem_fraction_static"]) == (32, 1, 0.88)
    extra = engine_args(DEPLOYMENT, None, "trtllm")["extra_llm_api_options"]
    # TensorRT-LLM's default block (32) is left to the engine: older releases refuse the key.
    assert extra["enable_chunked_prefill"] is False and "tokens_per_block" not in extra["kv_cache_config"]


def test_sglang_writes_the_page_its_mla_backend_runs_on_sm100():
    """SGLang serves DeepSeek-V3 (DeepseekV3ForCausalLM) on SM100 with trtllm_mla, which turns a
    page other than 32 or 64 into 64 at start-up: the launch line said --page-size 1. Hopper's
    backend and a model without a latent cache keep the trial's page."""

    def page(model: str, chip: str, tp: int) -> tuple[int, list[str]]:
        d = Deployment(get_model(model), get_hardware(chip), (1, 1, tp), 32, 1024, 128)
        out = engine_args(d, None, "sglang")
        return out["engine_args"]["page_size"], [n for n in out["notes"] if "trtllm_mla" in n]

    size, notes = page("deepseek-v3", "b200", 8)
    assert size == 64 and len(notes) == 1 and "page_size 1 -> 64" in notes[0]
    assert page("deepseek-v3", "h200", 8) == (1, [])
    assert page("llama-3-8b", "b200", 1) == (1, [])


def test_unknown_engine():
    with pytest.raises(Exception, match="format"):
        engine_args(DEPLOYMENT, None, "tgi")


def _study(user_attrs: dict) -> optuna.Study:
    study = optuna.create_study(directions=["minimize"])
    attrs = {"deployment": DEPLOYMENT.to_dict(), "estimate": {"params": {}}, **user_attrs}
    study.add_trial(optuna.trial.create_trial(values=[1.0], user_attrs=attrs))
    return study


@pytest.mark.parametrize("fmt", ["vllm", "sglang", "trtllm"])
def test_export_reads_the_trials_serving_attr(fmt):
    with_serving = json.loads(export(_study({"serving": _serving()}), 0, fmt))
    assert with_serving == {**engine_args(DEPLOYMENT, _serving(), fmt), "provenance": with_serving["provenance"]}
    without = json.loads(export(_study({}), 0, fmt))
    assert without["cli"] == engine_args(DEPLOYMENT, None, fmt)["cli"]
    spec = json.loads(export(_study({"serving": _serving()}), 0, "json"))
    assert spec["serving"] == _serving()


def test_the_context_limit_admits_the_lengths_the_model_draws():
    """The engines' context limit holds 99.9% of the lengths the serving model and the simulation
    draw (cost_models.serving_simulation's lognormal lengths), not only their mean: at the mean,
    vLLM refuses every request whose prompt and output run longer (half of them)."""
    import numpy as np

    from cost_models.serving_simulation import _lengths
    from tuner.export import max_context_tokens

    rng = np.random.default_rng(0)
    workload = {"prompt_len": 1000, "gen_len": 300}
    serving = {"prompt_len_std": 400.0, "gen_len_std": 15.0}
    limit = max_context_tokens({"workload": workload, "serving": serving})
    prompts = _lengths(rng, 1000, 400.0, 400_000)
    outputs = _lengths(rng, 300, 15.0, 400_000)
    assert np.quantile(prompts, 0.999) + np.quantile(outputs, 0.999) == pytest.approx(limit, rel=0.01)
    assert np.mean(prompts + outputs <= limit) >= 0.999
    assert max_context_tokens({"workload": workload, "serving": None}) == 1300  # a static trial: the means
    for fmt, key in (("vllm", "max_model_len"), ("sglang", "context_length"), ("trtllm", "max_seq_len")):
        assert engine_args(DEPLOYMENT, _serving(), fmt)["engine_args"][key] == 1174


def _static(weights: float, kv: float, activations: float) -> dict:
    """A static trial's spec as memory_fraction reads it: per-GPU bytes on a 100-byte GPU."""
    memory = {
        "weights_bytes_per_chip": weights,
        "kv_cache_bytes_per_chip": kv,
        "activation_bytes_per_chip": activations,
        "total_bytes_per_chip": weights + kv + activations,
        "capacity_bytes_per_chip": 100.0,
    }
    return {"serving": None, "predicted": {"memory": memory}}


@pytest.mark.parametrize(
    ("engine", "weights", "kv", "activations", "expected"),
    [
        # vLLM: a share of all memory: 60 + 30 + 5 = 95% -> 0.96 (one hundredth above).
        ("vllm", 60.0, 30.0, 5.0, 0.96),
        # SGLang: weights and KV cache: 90% -> 0.91; the 5 of activations fit in the 9 left.
        ("sglang", 60.0, 30.0, 5.0, 0.91),
        # TensorRT-LLM: a share of what weights and activations leave: 30 / 35 = 86% < 0.9.
        ("trtllm", 60.0, 30.0, 5.0, 0.9),
        # ... 33 / 35 = 94.3% -> 0.96.
        ("trtllm", 60.0, 33.0, 5.0, 0.96),
    ],
)
def test_a_static_trials_fraction_by_the_engines_rule(engine, weights, kv, activations, expected):
    knobs = engine_knobs(None, engine, 8)
    notes: list[str] = []
    assert memory_fraction(_static(weights, kv, activations), knobs, engine, notes) == expected
    assert any("memory fraction raised" in n for n in notes) == (expected != knobs["memory_fraction"])


def test_sglang_activations_past_its_rest_are_noted():
    """SGLang runs activations in 1 - mem_fraction_static: 12 bytes do not fit in the 9 left at 0.91."""
    notes: list[str] = []
    assert memory_fraction(_static(60.0, 30.0, 12.0), engine_knobs(None, "sglang", 8), "sglang", notes) == 0.91
    assert any("SGLang runs activations outside mem_fraction_static" in n for n in notes)


def _scored(engine: str, fraction: float, weights: float, activations: float, kv: float) -> dict:
    """A serving trial's spec as memory_fraction reads it: scored under ``engine`` at ``fraction``,
    per-GPU bytes on a 100-byte GPU."""
    held = {
        "engine": engine,
        "capacity_bytes_per_chip": 100.0,
        "weights_bytes_per_chip": weights,
        "activations_bytes_per_chip": activations,
        "kv_budget_bytes_per_chip": kv,
    }
    return {"serving": {"engine": engine, "memory_fraction": fraction}, "scored_engine_memory": held}


@pytest.mark.parametrize(
    ("scored", "fraction", "kv", "engine", "expected"),
    [
        # TensorRT-LLM 0.85 of what 60 of weights and 5 of activations leave: 0.85 x 35 = 29.75 of KV.
        ("trtllm", 0.85, 29.75, "trtllm", 0.85),
        # vLLM: a share of all memory, weights and activations in it: 60 + 5 + 29.75 = 94.75% -> 0.95.
        ("trtllm", 0.85, 29.75, "vllm", 0.95),
        # SGLang: weights and KV cache: 60 + 29.75 = 89.75% -> 0.90.
        ("trtllm", 0.85, 29.75, "sglang", 0.9),
        # vLLM 0.9 of 100 less 65: 25 of KV; TensorRT-LLM 25 / 35 = 71.4% -> 0.72; SGLang 85% -> 0.85.
        ("vllm", 0.9, 25.0, "trtllm", 0.72),
        ("vllm", 0.9, 25.0, "sglang", 0.85),
    ],
)
def test_a_serving_trials_fraction_is_converted_to_the_engine_it_is_exported_to(scored, fraction, kv, engine, expected):
    """A serving trial's memory knob was scored by its engine's rule (cost_models.serving.
    kv_budget_bytes, each rule from the engine's source); another engine means another thing by
    the same number (TensorRT-LLM: of the memory weights and activations leave; vLLM: of all
    memory; SGLang: of all memory for weights and KV cache). The export copied the number, with a
    note: a TensorRT-LLM trial's 0.85 gave vLLM 20 of the 100 bytes for its cache, not the 29.75
    scored. Now the knob that gives the exported engine the scored cache."""
    knobs = {**engine_knobs(None, engine, 8), "memory_fraction": fraction}
    notes: list[str] = []
    assert memory_fraction(_scored(scored, fraction, 60.0, 5.0, kv), knobs, engine, notes) == expected
    assert any(f"not the trial's {fraction:g}" in n for n in notes) == (engine != scored)


def test_a_converted_fraction_equal_to_the_trials_is_not_called_another():
    """vLLM 0.9 of a 100-byte GPU less 60 of weights and 0.5 of activations: 29.5 of KV cache.
    SGLang's mem_fraction_static holds weights and KV cache: 60 + 29.5 = 89.5% -> 0.90, the trial's
    own number. The note said "memory fraction 0.9, not the trial's 0.9" (seen exporting a vLLM-
    scored Llama-3.1-70B fp8 TP4 trial on H200s to SGLang), which reads as a contradiction."""
    knobs = {**engine_knobs(None, "sglang", 8), "memory_fraction": 0.9}
    notes: list[str] = []
    assert memory_fraction(_scored("vllm", 0.9, 60.0, 0.5, 29.5), knobs, "sglang", notes) == 0.9
    (note,) = [n for n in notes if n.startswith("memory fraction")]
    assert "not the trial's" not in note
    assert note.startswith("memory fraction 0.9, as the trial's: ") and "0.9 holds that cache by it too" in note


def test_a_serving_trials_exported_fraction_holds_the_cache_it_was_scored_with():
    """End to end: the TensorRT-LLM-scored 0.85 of the workload above gives vLLM more than 0.85 of
    all memory (its weights and activations are inside vLLM's share, outside TensorRT-LLM's)."""
    for engine in ("vllm", "sglang"):
        args = engine_args(DEPLOYMENT, _serving(), engine)
        fraction = args["engine_args"]["gpu_memory_utilization" if engine == "vllm" else "mem_fraction_static"]
        assert 0.85 < fraction <= 0.98, engine
        assert any("was scored with trtllm's free_gpu_memory_fraction" in n for n in args["notes"])
    assert (
        engine_args(DEPLOYMENT, _serving(), "trtllm")["extra_llm_api_options"]["kv_cache_config"][
            "free_gpu_memory_fraction"
        ]
        == 0.85
    )
    # A workload stored before it named its engine was scored under vLLM's rule.
    legacy = {k: v for k, v in _serving().items() if k != "engine"}
    assert not any("was scored as" in n for n in engine_args(DEPLOYMENT, legacy, "vllm")["notes"])
    assert any("was scored as vllm's" in n for n in engine_args(DEPLOYMENT, legacy, "trtllm")["notes"])


def test_a_serving_export_says_the_load_its_metrics_were_predicted_at():
    """The client sets the load, not the engine's flags: the export of a trial predicted at 64
    closed-loop clients with 1024-token prompts and 128-token outputs says so (a benchmark at
    another load is no check of the prediction); a static trial has no load to say."""
    for engine in ("vllm", "sglang", "trtllm"):
        notes = engine_args(DEPLOYMENT, _serving(), engine)["notes"]
        assert any("at 64 closed-loop clients, 1024-token prompts and 128-token outputs" in n for n in notes)
        assert not any("closed-loop clients" in n for n in engine_args(DEPLOYMENT, None, engine)["notes"])


def test_an_export_to_another_engine_says_whose_predictions_it_carries():
    """A trial scored under TensorRT-LLM (its serving engine, its profile) exported to vLLM or
    SGLang carried TensorRT-LLM's predictions with no word: the export says so in its first note
    and in scored_engine; to the engine it was scored under, no such note. A static trial's engine
    is its profile's (CHIP-ENGINE); the pure roofline's none."""
    for fmt in ("vllm", "sglang", "trtllm"):
        out = json.loads(export(_study({"serving": _serving(backend="trtllm")}), 0, fmt))
        assert out["engine"] == fmt and out["scored_engine"] == "trtllm"
        other = [n for n in out["notes"] if n.startswith("the predictions are TensorRT-LLM's")]
        assert len(other) == (fmt != "trtllm")
        if other:
            display = {"vllm": "vLLM", "sglang": "SGLang"}[fmt]
            assert out["notes"][0] == other[0] and f"not {display}'s" in other[0] and f"backend: {fmt}" in other[0]
    static = _study({})
    static.set_user_attr("calibration_profile", "h100-sxm-trtllm")
    out = json.loads(export(static, 0, "vllm"))
    assert out["scored_engine"] == "trtllm"
    assert out["notes"][0].startswith("the predictions are TensorRT-LLM's, not vLLM's")
    assert "calibration h100-sxm-trtllm" in out["notes"][0]
    roofline = json.loads(export(_study({}), 0, "vllm"))
    assert roofline["scored_engine"] is None and not any("the predictions are" in n for n in roofline["notes"])


def test_exported_servers_listen_where_a_load_balancer_reaches_them():
    """tuner recommend's aggregated launch.sh runs each replica "behind a load balancer", but
    SGLang (127.0.0.1) and TensorRT-LLM (localhost) were launched on their loopback defaults, which
    no balancer on another host reaches: every interface now, as vLLM's own default (its line
    names no host). tuner export --host sets another for all three; the spec formats refuse it."""
    from cost_models.errors import InvalidInputError

    for fmt, host in (("vllm", None), ("sglang", "0.0.0.0"), ("trtllm", "0.0.0.0")):
        data = engine_args(DEPLOYMENT, _serving(), fmt)
        assert data["engine_args"]["host"] == host, fmt
        assert ("--host 0.0.0.0" in data["cli"]) == (host is not None), fmt
        local = json.loads(export(_study({"serving": _serving()}), 0, fmt, host="127.0.0.1"))
        assert local["engine_args"]["host"] == "127.0.0.1" and "--host 127.0.0.1" in local["cli"], fmt
    for fmt, host in (("json", "127.0.0.1"), ("vllm", "a b")):
        with pytest.raises(InvalidInputError) as info:
            export(_study({}), 0, fmt, host=host)
        assert info.value.field == "--host"


@pytest.mark.parametrize("host", ["999.0.0.1", "1.2.3", "256.1.1.1", "::g", "-router", "a..b", "x" * 64 + ".example"])
def test_an_address_no_server_can_listen_on_is_refused(host):
    """--host 999.0.0.1 was written into the launch lines (the pattern took any digits and dots);
    tuner dashboard refused it. Both now check with one helper (cost_models.errors.refuse_bad_host)."""
    from cost_models.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as info:
        export(_study({"serving": _serving()}), 0, "vllm", host=host)
    assert info.value.field == "--host" and repr(host) in str(info.value)


@pytest.mark.parametrize("host", ["10.0.0.7", "::1", "[::1]", "fe80::1%eth0", "prefill-0.svc.cluster.local", "node_1"])
def test_addresses_and_host_names_are_exported(host):
    data = json.loads(export(_study({"serving": _serving()}), 0, "vllm", host=host))
    assert data["engine_args"]["host"] == host


@pytest.mark.parametrize("fmt", ["vllm", "sglang", "trtllm"])
def test_a_disaggregated_router_listens_where_clients_reach_it(fmt):
    """The router is a disaggregated deployment's one front door, but vLLM's toy_proxy_server.py
    (vllm-project/vllm tests/v1/kv_connector/nixl_integration: --host default localhost) and
    sglang_router (sgl-project/sglang sgl-router py_src/sglang_router/router_args.py, RouterArgs:
    host 127.0.0.1, port 30000) were launched on their loopback defaults, which no client on
    another host reaches (TensorRT-LLM's disagg_config already said hostname 0.0.0.0): every
    interface on port 8000 now, as the pools' servers, or tuner export --host's address."""
    from tuner.export import LISTEN_HOST, _disaggregated_engine_args, _serving_spec

    serving = {
        **make_workloads(backend=fmt, concurrency=16, prompt_len=1024, gen_len=128).row(0),
        "mode": "disaggregated",
        "prefill_mesh": [1, 1, 2],
        "prefill_instances": 2,
        "decode_instances": 1,
    }
    for host in (None, "127.0.0.1"):
        spec = {**_serving_spec(DEPLOYMENT, serving), LISTEN_HOST: host}
        router = _disaggregated_engine_args(spec, serving, fmt)["router"]
        listen = host or "0.0.0.0"
        if fmt == "trtllm":
            assert router["disagg_config"]["hostname"] == listen and router["disagg_config"]["port"] == 8000
        else:
            assert f"--host {listen} --port 8000" in router["cli"], router["cli"]
