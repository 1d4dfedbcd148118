"""Engine arguments for TP / PP / EP / DP, checked against the engines' documented flags, and
the refusals of what an engine cannot run."""

import pytest

from cost_models.deployments import Deployment
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.models import get_model
from tuner.export import engine_args, stage_blocks

QWEN = get_model("qwen3-235b-a22b")
LLAMA = get_model("llama-2-13b")


def _row(model, tp, **degrees):
    return Deployment(
        model=model,
        hardware=get_hardware("h200"),
        mesh=(1, 1, tp),
        batch=16,
        prompt_len=1024,
        gen_len=128,
        prefill_ffn_layout="ws_1d",
        decode_ffn_layout="ws_1d",
        flash_attention=True,
        weight_dtype="fp8",
        **degrees,
    )


def test_vllm_runs_ep_as_tp_times_dp_with_pipeline():
    args = engine_args(_row(QWEN, 8, expert_parallel=8, pipeline_parallel=2), None, "vllm")
    assert "--tensor-parallel-size 8 --pipeline-parallel-size 2 --enable-expert-parallel" in args["cli"]
    assert "--data-parallel-size" not in args["cli"]
    args = engine_args(_row(QWEN, 2, expert_parallel=8, data_parallel=4), None, "vllm")
    assert (
        "--tensor-parallel-size 2 --pipeline-parallel-size 1 --data-parallel-size 4 --enable-expert-parallel"
        in (args["cli"])
    )


def test_vllm_refuses_an_expert_parallel_smaller_than_tp_times_dp():
    with pytest.raises(InvalidInputError) as error:
        engine_args(_row(QWEN, 4, expert_parallel=4, data_parallel=2), None, "vllm")
    assert "EP = TP x DP" in str(error.value) and "EP 4" in str(error.value)


def test_sglang_counts_every_gpu_of_a_dp_attention_stage():
    args = engine_args(_row(QWEN, 1, expert_parallel=8, data_parallel=8), None, "sglang")
    assert "--tp-size 8 --pp-size 1 --dp-size 8 --enable-dp-attention --ep-size 8" in args["cli"]
    dense = engine_args(_row(LLAMA, 2, data_parallel=2), None, "sglang")  # replicas
    assert "--tp-size 2 --pp-size 1 --dp-size 2 --dtype" in dense["cli"]


def test_trtllm_moe_sizes_multiply_to_tp_size():
    args = engine_args(_row(QWEN, 1, expert_parallel=4, data_parallel=8), None, "trtllm")
    extra = args["extra_llm_api_options"]
    assert args["engine_args"]["tp_size"] == 8
    assert extra["moe_expert_parallel_size"] == 4 and extra["moe_tensor_parallel_size"] == 2
    assert extra["enable_attention_dp"] is True
    with pytest.raises(InvalidInputError, match="attention data parallelism"):
        engine_args(_row(QWEN, 2, expert_parallel=4, data_parallel=2), None, "trtllm")


# (engine, model, tp, ep, dp): the engine launches it (True) or refuses it (False). Written from
# the engines' documented rules (vLLM: --enable-expert-parallel makes EP = TP x DP; TensorRT-LLM:
# enable_attention_dp runs each rank's attention on one GPU; SGLang: --ep-size divides TP x DP),
# not from the cost model; the search leaves out what a named engine refuses, the export refuses it.
LAUNCHES = [
    ("vllm", QWEN, 2, 8, 4, True),
    ("vllm", QWEN, 8, 1, 1, True),
    ("vllm", QWEN, 2, 2, 4, False),
    ("vllm", QWEN, 4, 4, 2, False),
    ("sglang", QWEN, 2, 2, 4, True),
    ("sglang", QWEN, 4, 4, 2, True),
    ("trtllm", QWEN, 1, 4, 8, True),
    ("trtllm", QWEN, 2, 4, 2, False),
    ("trtllm", LLAMA, 2, 1, 2, True),  # a dense model's DP ranks are replicas
    ("sglang", get_model("gpt2"), 8, 1, 1, False),  # 12 heads over 8 ranks
]


@pytest.mark.parametrize(("engine", "model", "tp", "ep", "dp", "launches"), LAUNCHES)
def test_the_engine_rules_the_search_and_the_export_share(engine, model, tp, ep, dp, launches) -> None:
    from cost_models.deployments import engine_problem_mask

    assert bool(engine_problem_mask(engine, model.heads, model.experts, tp, ep, dp)) is not launches
    if launches:
        engine_args(_row(model, tp, expert_parallel=ep, data_parallel=dp), None, engine)
    else:
        with pytest.raises(InvalidInputError):
            engine_args(_row(model, tp, expert_parallel=ep, data_parallel=dp), None, engine)


def test_the_batch_limit_is_counted_as_each_engine_counts_it_under_data_parallelism():
    """The trial's batch (16) is the deployment's, split evenly over its 8 DP ranks. vLLM runs each
    DP rank as its own engine core with its own scheduler (max_num_seqs per rank) and TensorRT-LLM
    sizes max_batch_size per rank under attention DP: 2 each; SGLang divides its server-wide
    --max-running-requests among its DP workers itself: 16. The global 16 per rank admitted 8x
    the sequences scored."""
    row = _row(QWEN, 1, expert_parallel=8, data_parallel=8)
    vllm = engine_args(row, None, "vllm")
    assert vllm["engine_args"]["max_num_seqs"] == 2
    assert any("per data-parallel rank" in note for note in vllm["notes"])
    assert engine_args(row, None, "trtllm")["engine_args"]["max_batch_size"] == 2
    assert engine_args(row, None, "sglang")["engine_args"]["max_running_requests"] == 16
    single = _row(QWEN, 8, expert_parallel=8)
    assert engine_args(single, None, "vllm")["engine_args"]["max_num_seqs"] == 16


def test_sglang_plain_dp_replicas_each_take_the_whole_max_running_requests():
    """SGLang divides --max-running-requests by --dp-size only with --enable-dp-attention
    (scheduler.py / model_runner.py: ``max_running_requests // (dp_size if enable_dp_attention
    else 1)``); a dense model's DP workers are plain replicas, each admitting the whole value. The
    trial's batch 16 over 2 replicas: 8 each (16 each admitted 32 sequences, twice the scored)."""
    args = engine_args(_row(LLAMA, 2, data_parallel=2), None, "sglang")
    assert "--dp-size 2" in args["cli"] and "--enable-dp-attention" not in args["cli"]
    assert args["engine_args"]["max_running_requests"] == 8
    assert any("per data-parallel rank" in note for note in args["notes"])


def test_a_pipeline_stage_exports_its_share_of_interleaved_moe_blocks():
    # Llama 4 Maverick: MoE on blocks 1, 3, ..., 47; a 24-block stage holds 12 MoE and 12 dense,
    # as the estimate charges (not 24 MoE, the dense blocks all in the first stage).
    row = _row(get_model("llama-4-maverick-17b-128e"), 8, pipeline_parallel=2)
    assert stage_blocks(row) == {"all": 24, "moe": 12, "dense_ffn": 12, "windowed": 18}
    deepseek = stage_blocks(_row(get_model("deepseek-v3"), 8, pipeline_parallel=2))
    assert (deepseek["moe"], deepseek["dense_ffn"]) == (31, 0)  # the 3 dense blocks lead


def _megatron(mesh, model="llama-3.1-70b", hardware="h100-sxm"):
    return Deployment(
        model=get_model(model),
        hardware=get_hardware(hardware),
        mesh=mesh,
        batch=32,
        prompt_len=2048,
        gen_len=256,
        prefill_ffn_layout="ws_1d",
        decode_ffn_layout="ws_1d",
        flash_attention=True,
    )


def test_megatron_tp_over_two_nodes_is_exported_as_the_tp16_it_was_scored():
    """The serving study's TP16 (mesh 16x1x1, ws_1d, heads split: Megatron TP over 16 H100s, two
    8-GPU nodes) was scored as one TP group of 16 (the cost model scores every mesh of 16 chips
    alike under ws_1d, checked below against 1x1x16); the export wrote TP 8 x PP 2, another
    deployment (its decode step 12.6 ms against the scored 9.4 ms). Each engine gets TP 16, PP 1
    and its own multi-node launch: vLLM on a Ray cluster (docs.vllm.ai, Distributed Inference
    and Serving), SGLang --nnodes / --node-rank / --dist-init-addr on each node (docs.sglang.io,
    Multi-Node Deployment), TensorRT-LLM one MPI world through trtllm-llmapi-launch (trtllm-serve
    docs, multi-node serving)."""
    from cost_models.deployment import estimate_one

    step = [
        estimate_one(
            "llama-3.1-70b", "h100-sxm", mesh=mesh, ffn_layout="ws_1d", batch=32, prompt_len=2048, gen_len=256
        )["decode"]["step_latency_s"]
        for mesh in ("16x1x1", "1x1x16")
    ]
    assert step[0] == step[1]
    scored = _megatron((16, 1, 1))
    vllm = engine_args(scored, None, "vllm")
    assert vllm["engine_args"]["tensor_parallel_size"] == 16 and vllm["engine_args"]["pipeline_parallel_size"] == 1
    assert vllm["engine_args"]["distributed_executor_backend"] == "ray" and vllm["nodes"] == 2
    assert vllm["launch"][0].startswith("ray start --head") and "ray start --address=" in vllm["launch"][1]
    assert not any(note.startswith("approximate") for note in vllm["notes"])
    sglang = engine_args(scored, None, "sglang")
    assert "--tp-size 16 --pp-size 1" in sglang["cli"]
    assert [line.split("--nnodes ")[1].split(" --dist-init-addr")[0] for line in sglang["launch"]] == [
        "2 --node-rank 0",
        "2 --node-rank 1",
    ]
    trtllm = engine_args(scored, None, "trtllm")
    assert trtllm["cli"].startswith("mpirun -n 16 -H NODE0:8,NODE1:8 trtllm-llmapi-launch trtllm-serve ")
    assert "--tp_size 16 --pp_size 1" in trtllm["cli"]


def test_a_deployment_within_a_node_has_no_multi_node_launch():
    for engine in ("vllm", "sglang", "trtllm"):
        args = engine_args(_megatron((8, 1, 1)), None, engine)
        assert "nodes" not in args and "launch" not in args
        assert "ray" not in args["cli"] and "--nnodes" not in args["cli"] and "mpirun" not in args["cli"]


def test_pipeline_stages_across_nodes_get_the_engines_multi_node_launch():
    """Qwen3-235B TP 8 x PP 2 on H200 (8 GPUs a node): 16 GPUs on two nodes; the single-node
    command started one node's 8 GPUs and failed to place the second stage."""
    row = _row(QWEN, 8, expert_parallel=8, pipeline_parallel=2)
    assert engine_args(row, None, "vllm")["nodes"] == 2
    assert "--nnodes 2 --node-rank 0" in engine_args(row, None, "sglang")["cli"]
    assert engine_args(row, None, "trtllm")["cli"].startswith("mpirun -n 16 ")
    # 8 MoE DP ranks of TP 2 (16 GPUs): vLLM launches the ranks over the nodes with Ray, 4 a node.
    dp = engine_args(_row(QWEN, 2, expert_parallel=16, data_parallel=8), None, "vllm")["engine_args"]
    assert dp["data_parallel_backend"] == "ray" and dp["data_parallel_size_local"] == 4
    # 2 DP ranks of TP 16 (32 GPUs): each rank spans two hosts, which Ray places under "span" only.
    wide = engine_args(_row(QWEN, 16, expert_parallel=32, data_parallel=2), None, "vllm")
    assert "data_parallel_size_local" not in wide["engine_args"]
    assert any("VLLM_RAY_DP_PACK_STRATEGY=span" in note for note in wide["notes"])


def test_a_node_is_a_host_not_an_nvlink_domain():
    """The catalog's chips_per_node is the NVLink domain: 1 for the L4 (PCIe only), 72 for GB200
    NVL72. An engine's multi-node launch counts hosts: 8 L4s are one server (Google Cloud
    g2-standard-96), a GB200 compute tray holds 4 GPUs (NVIDIA GB200 NVL72: 18 trays of 4), so
    TP 8 on GB200 spans 2 hosts whose all-reduces stay on NVLink."""
    l4 = engine_args(_megatron((1, 1, 8), "llama-3-8b", "l4"), None, "sglang")
    assert "nodes" not in l4 and "--nnodes" not in l4["cli"]
    gb200 = engine_args(
        Deployment(
            model=QWEN,
            hardware=get_hardware("gb200"),
            mesh=(1, 1, 8),
            batch=16,
            prompt_len=1024,
            gen_len=128,
            prefill_ffn_layout="ws_1d",
            decode_ffn_layout="ws_1d",
            flash_attention=True,
        ),
        None,
        "trtllm",
    )
    assert gb200["nodes"] == 2 and gb200["cli"].startswith("mpirun -n 8 -H NODE0:4,NODE1:4 ")
    assert any("over NVLink (one 72-GPU NVLink domain)" in note for note in gb200["notes"])


def test_sglang_dense_replicas_beyond_one_host_are_launched_apart():
    """tp 4 x dp 3 of a dense model on H200s (12 GPUs: now scored, each TP 4 replica legal) was
    written --dp-size 3 --nnodes 2: SGLang's --dp-size launches rank i from GPU i x tp on one
    host's GPUs (data_parallel_controller.launch_dp_schedulers), so the third replica has no GPUs
    8-11. One replica's line, a note to launch 3 behind a router; within a host, --dp-size stays."""
    apart = engine_args(_row(LLAMA, 4, data_parallel=3), None, "sglang")
    assert "--dp-size" not in apart["cli"] and "--nnodes" not in apart["cli"] and "nodes" not in apart
    assert any(n.startswith("dp 3 of a dense model over more than one host") for n in apart["notes"])
    together = engine_args(_row(LLAMA, 4, data_parallel=2), None, "sglang")
    assert "--dp-size 2" in together["cli"] and not any("more than one host" in n for n in together["notes"])


def test_sglang_dp_attention_gets_a_limit_its_floor_division_leaves_at_the_scored_ranks_share():
    """A serving trial's batch limit is the deployment's, each DP rank scored at ceil(limit / DP)
    (cost_models.serving.rank_workloads): 100 over 8 ranks of Qwen3-235B (TP1 DP8 EP8) is 13 a
    rank. SGLang with DP attention gives each rank ``max_running_requests // dp_size``
    (sgl-project/sglang model_runner.py), floor: 100 // 8 = 12, 96 sequences where 104 were
    scored. The export writes 104 (13 x 8) and says why; a limit DP divides stays as it is."""
    from cost_models.serving import make_workloads

    def serving(limit: int) -> dict:
        return make_workloads(
            backend="sglang", concurrency=256, prompt_len=1024, gen_len=128, max_batch_size=limit
        ).row(0)

    row = _row(QWEN, 1, expert_parallel=8, data_parallel=8)
    args = engine_args(row, serving(100), "sglang")
    assert args["engine_args"]["max_running_requests"] // 8 == -(-100 // 8)
    assert any("max_running_requests // dp_size" in note for note in args["notes"])
    even = engine_args(row, serving(64), "sglang")
    assert even["engine_args"]["max_running_requests"] == 64
    assert not any("max_running_requests // dp_size" in note for note in even["notes"])
