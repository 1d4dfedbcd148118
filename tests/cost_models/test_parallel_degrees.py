"""Pipeline, expert and data parallelism as engines name them: the deployment's columns, the
engines' rule, and each effect on the estimate with its expected number derived here by hand."""

from dataclasses import replace

import numpy as np
import pytest

from cost_models.deployment import estimate, stage_configs
from cost_models.deployments import Deployment, Deployments, parallel_problems, tensor_parallel
from cost_models.dtypes import BF16, FP8, INT8
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.inference_configs import make_configs
from cost_models.models import get_model
from cost_models.topology import network_for

H200 = get_hardware("h200")
QWEN_MOE = get_model("qwen3-235b-a22b")
LLAMA = get_model("llama-2-7b")
MIXTRAL = get_model("mixtral-8x7b")


def _one(model, tp, **columns):
    defaults = {"batch": 8, "prompt_len": 512, "gen_len": 64, "weight_dtype": BF16}
    return tensor_parallel(model, H200, tp, **{**defaults, **columns})


def _roofline(d, **kwargs):
    return estimate(d, calibration=None, **kwargs)


def test_columns_round_trip_and_chips():
    d = _one(QWEN_MOE, 8, pipeline_parallel=2, expert_parallel=8, micro_batches=2)
    row = d.row(0)
    assert (row.tensor_parallel, row.pipeline_parallel, row.expert_parallel, row.micro_batches) == (8, 2, 8, 2)
    assert row.chips == 16 and int(d.chips[0]) == 16  # TP x PP x DP
    assert Deployment.from_dict(row.to_dict()) == row
    again = Deployments.from_rows([row, row])
    assert again.take(np.array([1])).row(0) == row
    assert _one(QWEN_MOE, 4, data_parallel=4, expert_parallel=16).row(0).chips == 16


def test_the_issues_example_is_impossible_in_every_engine():
    # EP 16 over the 8 chips of one stage (TP 8, PP 2): no engine spreads experts beyond a stage.
    with pytest.raises(InvalidInputError) as error:
        _one(QWEN_MOE, 8, expert_parallel=16, pipeline_parallel=2)
    message = str(error.value)
    assert message.startswith("expert_parallel: (16) must divide tensor_parallel x data_parallel (8)")
    assert "TP 8 EP 8 PP 2" in message and "TP 8 DP 2 EP 16" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("model", "tp", "columns", "field", "words"),
    [
        (MIXTRAL, 3, {"expert_parallel": 3}, "expert_parallel", "does not divide the 8 experts"),
        (LLAMA, 2, {"expert_parallel": 2}, "expert_parallel", "no experts"),
        (LLAMA, 1, {"pipeline_parallel": 33}, "pipeline_parallel", "33 stages for the 32 layers"),
        (LLAMA, 1, {"data_parallel": 3}, "batch", "do not split evenly"),
        (LLAMA, 1, {"micro_batches": 0}, "micro_batches", "whole number"),
    ],
)
def test_misuse_is_one_line_naming_the_field(model, tp, columns, field, words):
    with pytest.raises(InvalidInputError) as error:
        _one(model, tp, **columns)
    assert error.value.field == field
    assert words in str(error.value)


def test_parallel_problems_flags_rows_without_raising_for_a_search():
    # A search scores impossible combinations as infeasible rows: the check is a column.
    three = _one(QWEN_MOE, 8, expert_parallel=8).take(np.zeros(3, dtype=np.int64))
    rows = replace(three, expert_parallel=np.array([8.0, 16.0, 8.0]), pipeline_parallel=np.array([2.0, 2.0, 95.0]))
    assert parallel_problems(rows).tolist() == [False, True, True]


def test_pipeline_of_two_halves_block_weights_and_kv_and_adds_one_send():
    # Llama-2-7B on one chip per stage, bf16 (2 bytes): a block holds q, k, v, o (4 d^2 with
    # MHA) and gate, up, down (3 d d_ff); the embedding and the untied lm_head V d each.
    d, f, v, layers = 4096, 11008, 32000, 32
    block = 4 * d * d + 3 * d * f
    one = _roofline(_one(LLAMA, 1), overlap="added")
    two = _roofline(_one(LLAMA, 1, pipeline_parallel=2), overlap="added")
    assert one.memory.weights_bytes_per_chip[0] == pytest.approx(2 * (layers * block + 2 * v * d))
    assert two.memory.weights_bytes_per_chip[0] == pytest.approx(2 * (layers // 2 * block + 2 * v * d))
    assert two.memory.kv_cache_bytes_per_chip[0] == pytest.approx(one.memory.kv_cache_bytes_per_chip[0] / 2)
    # One micro-batch: the two stages run one after the other (no compute doubled), plus one send of
    # the prompt's activations (8 x 512 tokens x d x 2 bytes) over NVLink (2 chips: one node).
    ic = H200.interconnect
    send = ic.domain_latency_s + 8 * 512 * d * 2 / (ic.domain_bandwidth_bytes_per_s * H200.efficiency.network)
    assert two.prefill.latency_s[0] == pytest.approx(one.prefill.latency_s[0] + send, rel=1e-9)


def test_pipeline_stage_holds_its_share_of_interleaved_moe_blocks():
    # Llama 4 Maverick: MoE on every other block (1, 3, ..., 47), dense on the rest, so each of
    # two 24-block stages holds 12 of each: half of every block's weights on a chip. Only the
    # embedding and lm_head (2 V d, split over TP 8 by vocab) stay whole on the busiest stage.
    # Counting the MoE blocks as if they all sat in the last stage charged 98.3 GB a chip, not 50.4.
    maverick = get_model("llama-4-maverick-17b-128e")
    embeddings = 2 * 2 * maverick.vocab * maverick.d_model / 8
    one = _roofline(_one(maverick, 8)).memory.weights_bytes_per_chip[0]
    two = _roofline(_one(maverick, 8, pipeline_parallel=2)).memory.weights_bytes_per_chip[0]
    assert two - embeddings == pytest.approx((one - embeddings) / 2, rel=1e-9)
    # DeepSeek-V3's 3 dense blocks lead: the last of two 31-block stages is all MoE.
    deepseek = get_model("deepseek-v3")
    assert deepseek.moe_layer_step == 1
    staged = stage_configs(make_configs(deepseek, phase="prefill", batch=1, seq_len=8), np.array([2.0]))
    assert (staged.layers[0], staged.moe_layers[0]) == (31, 31)


def test_bubble_of_micro_batches():
    # PP 2, m 4: (m + PP - 1) = 5 stage times of a quarter batch, the lm_head m = 4 times (last
    # stage only), one send. A stage is half the layers: the same model with 16 layers at batch 2.
    half = LLAMA.model_copy(update={"layers": 16})
    stage = _roofline(_one(half, 2, batch=2), overlap="added")
    piped = _roofline(_one(LLAMA, 2, batch=8, pipeline_parallel=2, micro_batches=4), overlap="added")
    head_only = _roofline(_one(LLAMA.model_copy(update={"layers": 1}), 2, batch=2), overlap="added")
    one_block = _roofline(_one(half.model_copy(update={"layers": 2}), 2, batch=2), overlap="added")
    block = one_block.prefill.latency_s[0] - head_only.prefill.latency_s[0]  # one block at batch 2
    head = head_only.prefill.latency_s[0] - block
    blocks16 = stage.prefill.latency_s[0] - head
    ic = H200.interconnect
    send = ic.domain_latency_s + 2 * 512 * 4096 * 2 / 2 / ic.domain_bandwidth_bytes_per_s  # 1/TP per chip
    assert blocks16 == pytest.approx(16 * block, rel=1e-9)
    assert piped.prefill.latency_s[0] == pytest.approx(5 * blocks16 + 4 * head + send, rel=1e-9)
    # The bubble: the idle share of (m + PP - 1) stage slots is (PP - 1)/(m + PP - 1) = 1/5.
    assert 1 - 4 * blocks16 / (5 * blocks16) == pytest.approx(1 / 5)


def test_a_decode_step_keeps_the_pipeline_full():
    """A decode step is not a fill and drain: a micro-batch's next token needs only its own last
    one, so the m micro-batches circulate through the PP stages and each advances one token per
    max(m x the last stage's time, one micro-batch's round trip) (a closed cyclic pipeline of
    fixed service times: the busiest stage runs all m, or one micro-batch's trip is the longer).
    PP 2, m 2, micro-batches of 2 sequences: each stage is the 16-block half of the model (the
    last with the lm_head); the round trip is 2 stages + the lm_head + one send of 2 tokens. The
    fill-and-drain charged 3 stage times + 2 lm_heads + the send."""
    half = LLAMA.model_copy(update={"layers": 16})
    stage = _roofline(_one(half, 2, batch=2), overlap="added")
    piped = _roofline(_one(LLAMA, 2, batch=4, pipeline_parallel=2, micro_batches=2), overlap="added")
    head_only = _roofline(_one(LLAMA.model_copy(update={"layers": 1}), 2, batch=2), overlap="added")
    one_block = _roofline(_one(half.model_copy(update={"layers": 2}), 2, batch=2), overlap="added")
    block = one_block.decode_step_latency_s[0] - head_only.decode_step_latency_s[0]
    head = head_only.decode_step_latency_s[0] - block
    blocks16 = stage.decode_step_latency_s[0] - head
    ic = H200.interconnect
    send = ic.domain_latency_s + 2 * 1 * 4096 * 2 / 2 / ic.domain_bandwidth_bytes_per_s  # 2 tokens, 1/TP per chip
    assert blocks16 == pytest.approx(16 * block, rel=1e-6)
    busiest, round_trip = 2 * (blocks16 + head), 2 * blocks16 + head + send
    assert piped.decode_step_latency_s[0] == pytest.approx(max(busiest, round_trip), rel=1e-6)
    # Weight-bound decode: two micro-batches read each stage's weights twice, as one batch on
    # one stage of the whole model would: no faster than the unpipelined step, and far from
    # the fill-and-drain's 3 stage times.
    assert piped.decode_step_latency_s[0] < 0.8 * (3 * blocks16 + 2 * head + send)


def _dispatch_s(d):
    """Seconds per MoE block of the dispatch and combine of deployment ``d`` (its prefill)."""
    from cost_models.deployment import _Parallel, moe_dispatch_s, rank_view

    view = rank_view(d)
    stage = view.inference_configs("prefill", view.prompt_len)
    tokens = view.prompt_len.astype(np.float64)
    return moe_dispatch_s(network_for(H200), _Parallel.of(d, stage, tokens), stage, tokens)[0]


def test_expert_parallel_all_to_all_bytes_and_time():
    # Qwen3-235B-A22B, TP 1, DP 8, EP 8 (= TP x DP, vLLM's rule), 8 sequences of 512 prompt tokens:
    # each chip dispatches its DP rank's 512 tokens, top-8 copies of d_model 4096 in bf16, and
    # combines them back: per MoE block 2 all-to-alls of D = 512 x 8 x 4096 x 2 bytes over 8 chips
    # of one NVLink domain.
    ic = H200.interconnect
    data = 8 * 512 / 8 * 8 * 4096 * 2
    one_a2a = data * 7 / 8 / ic.domain_bandwidth_bytes_per_s + 7 * ic.domain_latency_s
    ep = _one(QWEN_MOE, 1, data_parallel=8, expert_parallel=8)
    assert _dispatch_s(ep) == pytest.approx(2 * one_a2a, rel=1e-9)
    # Each chip holds 16 of the 128 experts of each of the 94 blocks (3 x 4096 x 1536, bf16).
    routed = 94 * 128 * 3 * 4096 * 1536 * 2
    assert _roofline(ep).memory.weights_bytes_per_chip[0] >= routed / 8


def test_expert_parallel_inside_one_tp_group_moves_nothing_more():
    # TP 8, EP 8, DP 1: every chip of the one TP group holds all 8 x 512 tokens after the
    # attention's all-reduce; it runs its 16 experts on the tokens routed to them and the FFN's TP
    # all-reduce sums the experts' outputs, as with expert TP (vLLM runs its dispatch/combine
    # kernels only where dp_size > 1: FusedMoEParallelConfig.use_all2all_kernels). The block's
    # communication is expert TP 8's; it was charged two all-to-alls more (+14.9 ms a prefill).
    base = _roofline(_one(QWEN_MOE, 8), overlap="added")
    ep = _roofline(_one(QWEN_MOE, 8, expert_parallel=8), overlap="added")
    assert ep.prefill.comm_s[0] == base.prefill.comm_s[0]
    assert ep.decode.comm_s[0] == base.decode.comm_s[0]
    assert ep.memory.weights_bytes_per_chip[0] == pytest.approx(base.memory.weights_bytes_per_chip[0])


def test_fp8_activations_halve_the_dispatch_not_the_combine():
    # As above with fp8 activations: the dispatch sends the experts' inputs in fp8 (1 byte; DeepEP
    # and vLLM's all-to-all backends quantize before sending), the combine their bf16 outputs (2
    # bytes).
    fp8 = {"act_dtype": FP8, "weight_dtype": FP8}
    ic = H200.interconnect

    def one_a2a(bytes_per_element):
        data = 8 * 512 / 8 * 8 * 4096 * bytes_per_element
        return data * 7 / 8 / ic.domain_bandwidth_bytes_per_s + 7 * ic.domain_latency_s

    ep = _one(QWEN_MOE, 1, data_parallel=8, expert_parallel=8, **fp8)
    assert _dispatch_s(ep) == pytest.approx(one_a2a(1) + one_a2a(2), rel=1e-9)


@pytest.mark.parametrize("act", [FP8, INT8])
def test_tp_collectives_and_stage_sends_move_16_bit_activations(act):
    # A matmul with 8-bit activation inputs still writes 16-bit outputs, and the engines reduce
    # those (vLLM / SGLang RowParallelLinear all-reduce the bf16 output of their fp8 GEMMs;
    # TensorRT-LLM quantizes after its fused all-reduce): --act-bits fp8 halved the TP
    # communication (llama-3-70b on 8 H100s, prefill 236 -> 122 ms). Llama-2-7B, TP 2 x PP 2.
    columns = {"weight_dtype": FP8, "pipeline_parallel": 2}
    wide = _roofline(_one(LLAMA, 2, **columns), overlap="added")
    narrow = _roofline(_one(LLAMA, 2, act_dtype=act, **columns), overlap="added")
    assert narrow.prefill.comm_s[0] == wide.prefill.comm_s[0] > 0
    assert narrow.decode.comm_s[0] == wide.decode.comm_s[0] > 0
    # The stage send: 8 x 512 prompt tokens x d x 2 bytes, 1/TP per chip, over NVLink (one node).
    ic = H200.interconnect
    send = ic.domain_latency_s + 8 * 512 * 4096 * 2 / 2 / ic.domain_bandwidth_bytes_per_s
    one_stage = _roofline(_one(LLAMA, 2, act_dtype=act, weight_dtype=FP8), overlap="added")
    assert narrow.prefill.latency_s[0] - one_stage.prefill.latency_s[0] == pytest.approx(send, rel=1e-6)


def test_all_to_all_across_domains_sends_distinct_data_over_the_network():
    # 16 H200s in two NVLink domains of 8: of D per chip, 8/16 goes to the other node through the
    # chip's port, 7/16 to the node's other chips over NVLink.
    ic = H200.interconnect
    data = np.array([1e8])
    time = network_for(H200).collective_time_s("all_to_all", data, np.array([[1, 1, 16]]), "z")
    expected = (
        1e8 * 8 / 16 / ic.network_bandwidth_bytes_per_s
        + 1e8 * 7 / 16 / ic.domain_bandwidth_bytes_per_s
        + 7 * ic.domain_latency_s
        + ic.network_latency_s
    )
    assert time[0] == pytest.approx(expected, rel=1e-12)


def test_data_parallel_ranks_share_the_experts_and_split_the_kv_cache():
    # TP 8 x DP 2 = 16 chips share one stage's experts: each holds 1/16 of the routed experts
    # (94 blocks x 128 experts x 3 matrices x 4096 x 1536, bf16) instead of 1/8.
    tp8 = _roofline(_one(QWEN_MOE, 8, batch=16))
    dp2 = _roofline(_one(QWEN_MOE, 8, batch=16, data_parallel=2, expert_parallel=16))
    routed = 94 * 128 * 3 * 4096 * 1536 * 2
    saved = tp8.memory.weights_bytes_per_chip[0] - dp2.memory.weights_bytes_per_chip[0]
    assert saved == pytest.approx(routed / 8 - routed / 16, rel=1e-9)
    assert dp2.memory.kv_cache_bytes_per_chip[0] == pytest.approx(tp8.memory.kv_cache_bytes_per_chip[0] / 2)


def test_data_parallel_dense_model_is_replicas():
    # A dense model has no shared layers: DP 2 at batch 16 is two copies each at batch 8, twice
    # the chips, the same latency and the same chip-seconds per token.
    replicas = _roofline(_one(LLAMA, 2, batch=16, data_parallel=2))
    alone = _roofline(_one(LLAMA, 2, batch=8))
    assert replicas.prefill.latency_s[0] == pytest.approx(alone.prefill.latency_s[0], rel=1e-12)
    assert replicas.decode.latency_s[0] == pytest.approx(alone.decode.latency_s[0], rel=1e-12)
    assert replicas.prefill.cost_chip_s_per_token[0] == pytest.approx(alone.prefill.cost_chip_s_per_token[0])


def test_serving_models_refuse_what_they_do_not_charge():
    from cost_models.deployment import kv_ways_by_phase

    with pytest.raises(InvalidInputError, match="pipeline_parallel"):
        kv_ways_by_phase(_one(LLAMA, 1, pipeline_parallel=2))


def test_a_trial_stored_before_the_degrees_reads_back_as_one_stage():
    stored = _one(LLAMA, 2).row(0).to_dict()
    for name in ("pipeline_parallel", "expert_parallel", "data_parallel", "micro_batches"):
        del stored[name]
    row = Deployment.from_dict(stored)
    assert (row.pipeline_parallel, row.expert_parallel, row.data_parallel, row.micro_batches) == (1, 1, 1, 1)
    assert row.chips == 2


def test_calibrated_estimates_charge_the_measured_all_to_all():
    # Under the chip's profile the dispatch inside one NVLink domain takes the measured NCCL
    # all-to-all time: EP 8 over DP 8 still costs more communication than EP 8 inside TP 8 (none
    # beyond expert TP's), and the pipeline of two stages still halves the weights per chip.
    from cost_models.calibration import resolve_calibration

    profile = resolve_calibration("auto", H200)
    rows = Deployments.from_rows(
        [
            _one(QWEN_MOE, 8).row(0),
            _one(QWEN_MOE, 8, expert_parallel=8).row(0),
            _one(QWEN_MOE, 8, pipeline_parallel=2).row(0),
            _one(QWEN_MOE, 1, data_parallel=8, expert_parallel=8).row(0),
        ]
    )
    result = estimate(rows, calibration=profile)
    assert result.prefill.comm_s[1] == result.prefill.comm_s[0]
    assert result.prefill.comm_s[3] > 0
    assert np.all(np.isfinite(result.decode.latency_s))
    weights = result.memory.weights_bytes_per_chip
    assert weights[2] < 0.52 * weights[0]


def test_calibrated_experts_under_data_parallel_load_the_chips_share(monkeypatch):
    # Qwen3-235B-A22B in fp8 on 8 H200s as SGLang/vLLM serve it with attention DP: TP 1, DP 8,
    # EP 8, 256 sequences decoding (32 per DP rank). Each chip holds 128 / 8 = 16 experts per MoE
    # block; the stage's 256 tokens x top-8 = 2048 routed copies wake all but 128 (1 - 8/128)^256
    # = 8.6e-6 of the 128 experts, so each chip's grouped GEMM runs its 16 experts at 2048 / 128 =
    # 16 tokens each (1536 wide: whole experts at TP 1). Woken by its own rank's 32 tokens alone it
    # loaded 128 (1 - (1 - 8/128)^32) = 111.8 experts of 2.3 tokens each: 7x the chip's weights.
    from cost_models import calibrated_times
    from cost_models.calibration import resolve_calibration

    seen = []
    original = calibrated_times.routed_expert_time_s

    def record(down, tokens, woken, tokens_per_expert, experts_per_token, expert_f, *rest, **options):
        seconds = original(down, tokens, woken, tokens_per_expert, experts_per_token, expert_f, *rest, **options)
        seen.append(
            (
                float(np.ravel(woken)[0]),
                float(np.ravel(tokens_per_expert)[0]),
                float(np.ravel(expert_f)[0]),
                float(np.ravel(seconds)[0]),
            )
        )
        return seconds

    monkeypatch.setattr(calibrated_times, "routed_expert_time_s", record)
    profile = resolve_calibration("auto", H200)
    d = _one(QWEN_MOE, 1, batch=256, data_parallel=8, expert_parallel=8, weight_dtype=FP8, gen_len=64)
    calibrated = estimate(d, calibration=profile)
    assert seen, "the fitted fused-MoE kernel timed no expert"
    woken, per_expert, width, _ = seen[-1]  # the decode step's
    # The busiest of the 8 ranks (the step waits for it) has all its 16 experts woken unless
    # every rank misses one: each misses one with probability <= 16 x (1 - 8/128)^256 = 1.1e-6,
    # all 8 at once with (1.1e-6)^8, so its woken count is 16 within 1e-40.
    assert woken == pytest.approx(16.0, rel=1e-9)
    assert per_expert == pytest.approx(256 * 8 / (128.0 * (1.0 - (1.0 - 8.0 / 128.0) ** 256)), rel=1e-9)
    assert width == 1536.0
    # The step's experts (gate, up, down in each of 94 blocks) then take less than streaming the
    # 111.8 experts' fp8 weights (3 x 4096 x 1536 bytes each) in 94 blocks at H200's peak 4.8 TB/s
    # alone: 161.9 GB, 33.7 ms. (The whole step was bounded so until its dense GEMMs ran the
    # block-scaled fp8 kernel of Qwen3-235B-A22B-FP8, whose h200 vLLM DeepGEMM path takes 80-90 us
    # a call: calibrated_times.kernel_formats.)
    wrong_bytes = 128 * (1.0 - (1.0 - 8.0 / 128.0) ** 32) * 3 * 4096 * 1536 * 94
    decode_experts_s = 94 * sum(seconds for *_, seconds in seen[-3:])
    assert decode_experts_s < wrong_bytes / H200.memory_bandwidth_bytes_per_s
    assert calibrated.decode_step_latency_s[0] > decode_experts_s


def test_expert_slices_on_every_dp_rank_gather_every_rank_s_tokens():
    # Qwen3-235B at TP 8, DP 8, EP 2 on 64 H200s (8 NVLink domains, one DP rank each; SGLang's
    # --ep-size 2 below its 64 ranks): each expert's inter_size is split 64 / 2 = 32 ways, over
    # chips of every DP rank, so each chip's slices multiply the tokens of all 8 ranks. Decoding
    # 64 sequences (8 per rank), a chip must receive the other 7 ranks' 56 tokens x 4096 x 2 B =
    # 458,752 B through its network port before the experts, and send as much back after (the
    # reduce-scatter of their outputs): >= 2 x 458,752 B / 50 GB/s = 18.4 us a MoE block. The
    # all-to-all within an EP group of 2 chips it was charged instead took 4.1 us.
    from cost_models.deployment import _Parallel, moe_dispatch_s, rank_view

    d = _one(QWEN_MOE, 8, batch=64, data_parallel=8, expert_parallel=2, weight_dtype=FP8)
    stage = rank_view(d).inference_configs("decode", np.array([2048.0]))
    one_token = np.ones(1)
    seconds = moe_dispatch_s(network_for(H200), _Parallel.of(d, stage, one_token), stage, one_token)
    received = 7 * 8 * 4096 * 2
    assert seconds[0] >= 2 * received / H200.interconnect.network_bandwidth_bytes_per_s


def _busiest_and_mean_woken_by_simulation(tokens, experts, top_k, ranks, trials=20000, seed=0):
    """Route ``tokens`` tokens to ``top_k`` distinct experts of ``experts`` uniformly, ``trials``
    times, the experts placed on ``ranks`` ranks of experts / ranks consecutive ones: the mean over
    trials of the busiest rank's woken experts and of one rank's."""
    rng = np.random.default_rng(seed)
    choices = np.argpartition(rng.random((trials, tokens, experts)), top_k, axis=2)[:, :, :top_k]
    woken = np.zeros((trials, experts), dtype=bool)
    np.put_along_axis(woken, choices.reshape(trials, -1), True, axis=1)
    per_rank = woken.reshape(trials, ranks, experts // ranks).sum(axis=2)
    return per_rank.max(axis=1).mean(), per_rank.mean()


def test_decode_under_expert_parallelism_streams_the_busiest_rank_s_experts():
    # DeepSeek-V3 in fp8 on 8 H200s with attention DP (TP 1, DP 8), one sequence per rank: the
    # 8 tokens of a decode step go to 8 of 256 experts each. EP 1 (experts tensor-parallel over
    # the 8 GPUs): every GPU streams its 1/8 slice of every woken expert, 256 (1 - (1 - 8/256)^8)
    # / 8 = 7.11 experts' worth. EP 8 (32 whole experts a GPU): the step waits for the GPU whose
    # 32 experts the tokens woke most of, 10.5 on average over 20,000 simulated routings (1.48x).
    # Everything else a GPU streams is the same, so the roofline's decode memory time differs by
    # (busiest - mean) x 3 x 7168 x 2048 bytes (an fp8 expert) x 58 MoE blocks / 4.8 TB/s a step:
    # 3.43 x 44.0 MB x 58 = 8.75 GB, 1.82 ms. Charged at the mean rank before, the two were equal.
    busiest, mean = _busiest_and_mean_woken_by_simulation(tokens=8, experts=256, top_k=8, ranks=8)
    assert mean == pytest.approx(256 * (1 - (1 - 8 / 256) ** 8) / 8, rel=0.01)
    dsv3 = get_model("deepseek-v3")
    steps = 4
    common = {"batch": 8, "prompt_len": 128, "gen_len": steps, "weight_dtype": FP8, "data_parallel": 8}
    ep1 = _roofline(tensor_parallel(dsv3, H200, 1, expert_parallel=1, **common))
    ep8 = _roofline(tensor_parallel(dsv3, H200, 1, expert_parallel=8, **common))
    expert_bytes = 3 * 7168 * 2048 * 1
    extra_s = (busiest - mean) * expert_bytes * 58 / H200.memory_bandwidth_bytes_per_s
    measured_extra_s = (ep8.decode.memory_s[0] - ep1.decode.memory_s[0]) / steps
    assert measured_extra_s == pytest.approx(extra_s, rel=0.03)


@pytest.mark.parametrize(
    ("tokens", "experts", "top_k", "ranks"), [(1, 256, 8, 8), (8, 256, 8, 32), (32, 128, 1, 8), (4, 8, 2, 8)]
)
def test_busiest_rank_factor_matches_simulated_routing(tokens, experts, top_k, ranks):
    # DeepSeek-V3 (256, top-8) at EP 8 and 32, Llama-4 Maverick (128, top-1), Mixtral (8, top-2)
    # at one expert a rank; the simulation routes each token to distinct experts (the model
    # treats experts as woken independently).
    from cost_models.moe import busiest_rank_woken_factor

    busiest, mean = _busiest_and_mean_woken_by_simulation(tokens, experts, top_k, ranks)
    factor = busiest_rank_woken_factor(tokens, experts, top_k, ranks)
    assert float(factor) == pytest.approx(busiest / mean, rel=0.04)
    assert busiest_rank_woken_factor(tokens, experts, top_k, 1) == 1.0
