"""Capacity planning: the fewest chips that serve R requests/s within a TTFT and a TPOT.

Two ways to spend chips on one model, each enumerated as a struct of arrays and scored in one
vectorized call:

- **aggregated**: k data-parallel replicas of one deployment (``1x1xTP`` tensor-parallel mesh,
  FFN layout ws_1d, flash attention), each taking R/k requests/s (an even split of a Poisson
  stream is Poisson); chips = k x TP. An MoE model's instance may also run attention data
  parallelism with expert parallelism over all its chips (TP x DP, EP = TP x DP: vLLM's
  --enable-expert-parallel, SGLang's --enable-dp-attention, TensorRT-LLM's attention DP at TP 1),
  chips = k x TP x DP. Scored by :func:`cost_models.serving.serve`.
- **disaggregated**: xP prefill instances of TP_p x DP_p chips and yD decode instances of
  TP_d x DP_d chips, each pool's instance any shape the aggregated plan runs (a TP group, or an
  MoE model's attention-DP instance with EP = TP x DP under the same engine rules: SGLang's PD
  disaggregation with --enable-dp-attention); chips = xP TP_p DP_p + yD TP_d DP_d. Scored by
  :mod:`cost_models.disaggregated`: each distinct pool (TP, DP, format, instances) is evaluated
  once and the pools are paired.

Each candidate also has a weight format: 16-bit, and 8-bit where the chip supports one (fp8 W8A8
where the chip has fp8 units; else int8 weight-only, with 16-bit activations, where it has int8
units: :func:`act_code`), and the model's own quantized checkpoint format where it is neither
(gpt-oss's MXFP4: weight-only, 16-bit activations, as tuner estimate runs it by default). The KV
cache stays 16-bit.

A candidate meets the SLA when it is stable (keeps up with R, fits in memory) with mean TTFT <=
``max_ttft_s`` and mean TPOT <= ``max_tpot_s``, and where asked p90 / p99 TTFT <= ``max_ttft_p90_s``
/ ``max_ttft_p99_s`` and p99 TPOT <= ``max_tpot_p99_s`` (the steady state's percentiles). Feasible
candidates are sorted by total chips,
then by end-to-end latency: at a fixed request rate the cost (chip-seconds per token) of two
candidates with the same chips is the same, so the faster one is preferred.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from cost_models.calibration import AUTO_CALIBRATION, CalibrationProfile, resolve_calibration, serving_engine
from cost_models.deployments import (
    Deployment,
    Deployments,
    engine_problem_mask,
    refuse_engine_kv_cache,
    tensor_parallel,
)
from cost_models.disaggregated import (
    DecodePool,
    DisaggregatedEstimate,
    PrefillPool,
    combine,
    decode_pool,
    kv_link,
    prefill_pool,
)
from cost_models.dtypes import BF16, FP8, INT8, dtype_name, parse_dtype
from cost_models.errors import InvalidInputError, refuse_outside
from cost_models.hardware import HardwareSpec, SwitchedInterconnect, get_hardware
from cost_models.input_ranges import LATENCY_LIMIT_S_RANGE, REQUEST_RATE_PER_S_RANGE
from cost_models.models import ModelSpec, get_model
from cost_models.serving import (
    ENGINE_DEFAULTS,
    ServingEstimate,
    ServingWorkloads,
    make_workloads,
    near_capacity,
    resolve_overheads,
    serve,
)
from cost_models.topology import network_for, straddling_tp_groups

MODES: tuple[str, ...] = ("aggregated", "disaggregated")
#: Largest tensor-parallel degree tried (one instance); replicas and pools add chips beyond it.
MAX_TP = 64
DEFAULT_MAX_CHIPS = 64
#: Most (prefill pool, decode pool) pairs a disaggregated plan scores (about 1.8 kB each in
#: memory): a budget of about 700 chips of one kind.
MAX_DISAGGREGATED_PAIRS = 2_000_000


@dataclass(frozen=True)
class Sla:
    max_ttft_s: float
    max_tpot_s: float
    #: Percentile SLAs (None: not asked), in addition to the means: the steady state's
    #: ``ttft_p90_s``, ``ttft_p99_s`` (:mod:`cost_models.ttft_percentiles`) and ``tpot_p99_s``.
    max_ttft_p90_s: float | None = None
    max_ttft_p99_s: float | None = None
    max_tpot_p99_s: float | None = None

    def limits(self) -> list[tuple[str, str, float]]:
        """(estimate key, option, limit) of every limit asked, the means first."""
        every = (
            ("tpot_s", "--max-tpot-s", self.max_tpot_s),
            ("ttft_s", "--max-ttft-s", self.max_ttft_s),
            ("ttft_p90_s", "--max-ttft-p90-s", self.max_ttft_p90_s),
            ("ttft_p99_s", "--max-ttft-p99-s", self.max_ttft_p99_s),
            ("tpot_p99_s", "--max-tpot-p99-s", self.max_tpot_p99_s),
        )
        return [(key, option, limit) for key, option, limit in every if limit is not None]


#: What each SLA key is called in :func:`why_none`'s line.
_SLA_WORDS = {
    "tpot_s": "TPOT",
    "ttft_s": "TTFT",
    "ttft_p90_s": "p90 TTFT",
    "ttft_p99_s": "p99 TTFT",
    "tpot_p99_s": "p99 TPOT",
}


def weight_formats(chip: HardwareSpec, model: ModelSpec | None = None) -> list[tuple[str, int]]:
    """(name, dtype code) of the weight formats tried on ``chip`` (activations: :func:`act_code`),
    and ``model``'s own quantized checkpoint format where it is none of those: served as stored,
    as tuner estimate runs the model by default (:func:`cost_models.dtypes.weight_bits_default`).
    Without it the fewest chips missed the checkpoint engines serve: gpt-oss-120b is 65 GB in its
    MXFP4 checkpoint, one H100, and 117 GB in fp8, two."""
    formats = [("bf16", BF16)]
    if chip.has_format(FP8):
        formats.append(("fp8", FP8))
    elif chip.has_format(INT8):
        formats.append(("int8", INT8))
    if model is not None and model.checkpoint_format is not None:
        code = parse_dtype(model.checkpoint_format, "checkpoint_format")
        # fp8 only on a chip with fp8 units, the rule tuner estimate refuses --weight-bits by
        # (HardwareSpec.parse_formats); 4- and 8-bit integer and fp4 storage run anywhere.
        if code not in [c for _, c in formats] and (code != FP8 or chip.has_format(FP8)):
            formats.append((dtype_name(code), code))
    return formats


def act_code(weight_code: int, chip: HardwareSpec) -> int:
    """The activations of a weight format: fp8 with fp8 weights where ``chip`` has fp8 units
    (W8A8), else 16-bit: int8 and 4-bit weights run weight-only, as tuner estimate's default
    --act-bits 16 and a study's trials (search_spaces.space.engine_act_dtype) score them."""
    return weight_code if weight_code in _w8a8(chip) else BF16


def _w8a8(chip: HardwareSpec) -> tuple[int, ...]:
    # fp8 only. int8 weights are exported weight-only (tuner.export.engine_formats: a GPTQ
    # checkpoint on vLLM's and SGLang's gptq_marlin, bf16 tensor cores), so a plan scored W8A8
    # int8 (SmoothQuant's int8 x int8 GEMM at the int8 peak) launched another kernel than it was
    # scored with: recommend's int8 plan on an A100 was W8A8 while its export ran W8A16.
    return (FP8,) if chip.has_format(FP8) else ()


def tp_degrees(
    chip: HardwareSpec, max_chips: int, heads: int, kv_heads: int = 0, engine: str | None = None
) -> list[int]:
    """Powers of two up to ``max_chips`` (and MAX_TP) whose ``1x1xTP`` mesh is legal on ``chip``
    and that divide the ``heads`` (no GPU engine splits a head over ranks:
    cost_models.deployments.engine_problem_mask); under ``engine`` vLLM or SGLang, also split the
    ``kv_heads`` evenly or replicate each (0: an MLA model's latent, no such rule): Phi-3-medium's
    10 KV heads run TP 1 and 2, not 4 or 8."""
    network = network_for(chip)
    out = []
    tp = 1
    while tp <= min(max_chips, MAX_TP):
        if (1, 1, tp) in network.legal_meshes(tp) and not engine_problem_mask(engine, heads, 0, tp, 1, 1, kv_heads):
            out.append(tp)
        tp *= 2
    return out


def dp_attention_degrees(p: CapacityProblem) -> list[tuple[int, int]]:
    """(TP, DP) of an MoE model's instances with attention data parallelism and EP = TP x DP over
    all their chips (none for a dense model, whose DP ranks are the replicas already): DP a power
    of two from 2, TP among :func:`tp_degrees`, TP x DP within the budget (and MAX_TP), a legal
    chip count with no TP group cut by a node's edge, EP dividing the experts, and a combination
    the engine runs (deployments.engine_problem_mask: TensorRT-LLM's attention DP only at TP 1)."""
    model = p.model
    if model.experts == 0:
        return []
    network = network_for(p.chip)
    out = []
    for tp in tp_degrees(p.chip, p.max_chips, model.heads, p.split_kv_heads, p.backend):
        dp = 2
        while tp * dp <= min(p.max_chips, MAX_TP):
            chips = tp * dp
            runs = not engine_problem_mask(p.backend, model.heads, model.experts, tp, chips, dp, p.split_kv_heads)
            if model.experts % chips == 0 and runs and network.legal_meshes(chips):
                if not straddling_tp_groups(p.chip, tp, chips):
                    out.append((tp, dp))
            dp *= 2
    return out


def instance_degrees(p: CapacityProblem) -> list[tuple[int, int]]:
    """(TP, DP) of every instance shape planned, aggregated replicas and disaggregated pools alike:
    the tensor-parallel groups of :func:`tp_degrees` (DP 1, EP 1) first (their order breaks
    ties), then an MoE model's attention-DP instances of :func:`dp_attention_degrees` (EP = TP x
    DP), each passing the engine's launch rules there."""
    tps = tp_degrees(p.chip, p.max_chips, p.model.heads, p.split_kv_heads, p.backend)
    return [(tp, 1) for tp in tps] + dp_attention_degrees(p)


def _deployments(
    model: ModelSpec,
    chip: HardwareSpec,
    tp: np.ndarray,
    fmt: np.ndarray,
    dp: np.ndarray | None = None,
    kv: int = BF16,
) -> Deployments:
    act = np.where(np.isin(fmt, _w8a8(chip)), fmt, BF16)  # act_code, vectorized
    if dp is None or np.all(dp == 1):
        return tensor_parallel(model, chip, tp, weight_dtype=fmt, act_dtype=act, kv_dtype=kv)
    ep = np.where(dp > 1, tp * dp, 1.0)  # (EP over the instance's every chip where DP attention runs)
    return tensor_parallel(
        model, chip, tp, weight_dtype=fmt, act_dtype=act, kv_dtype=kv, data_parallel=dp, expert_parallel=ep,
        batch=dp,
    )  # fmt: skip


@dataclass(frozen=True)
class CapacityProblem:
    """What to serve, on what, within what: validated inputs of :func:`recommend`."""

    model: ModelSpec
    chip: HardwareSpec
    request_rate: float
    prompt_len: int
    gen_len: int
    sla: Sla
    max_chips: int
    backend: str
    calibration: CalibrationProfile | None
    #: The KV cache's format (a dtype code), every candidate's: bf16 unless --kv-bits says another.
    kv_code: int = BF16

    @property
    def split_kv_heads(self) -> int:
        """The KV heads tensor parallelism splits (0 for MLA: one latent, replicated)."""
        return 0 if self.model.is_mla else self.model.kv_heads

    def workloads(self, rate: np.ndarray, data_parallel: np.ndarray | None = None) -> ServingWorkloads:
        """The load at ``rate`` per instance under the engine's defaults, over ``data_parallel``
        ranks (None: one): the batch limit the engine launched with its defaults runs, as
        ``tuner estimate`` scores it (serving.default_max_batch_size)."""
        workloads = make_workloads(
            len(rate),
            backend=self.backend,
            request_rate=self.request_rate,
            prompt_len=self.prompt_len,
            gen_len=self.gen_len,
            data_parallel=1.0 if data_parallel is None else data_parallel,
        )
        # Built at the user's rate (validated: problem), then each instance's share of it, which
        # may be below the range a user's rate is held to (1e-6 req/s over 8 replicas).
        return replace(workloads, request_rate=np.asarray(rate, dtype=np.float64))


def problem(
    model: str | ModelSpec,
    hardware: str | HardwareSpec,
    *,
    request_rate: float,
    prompt_len: int,
    gen_len: int,
    max_ttft_s: float,
    max_tpot_s: float,
    max_chips: int = DEFAULT_MAX_CHIPS,
    max_ttft_p90_s: float | None = None,
    max_ttft_p99_s: float | None = None,
    max_tpot_p99_s: float | None = None,
    backend: str | None = None,
    calibration: str | CalibrationProfile | None = AUTO_CALIBRATION,
    kv_bits: str | int = 16,
) -> CapacityProblem:
    """Names and numbers to a validated :class:`CapacityProblem` (one-line errors)."""
    spec = get_model(model) if isinstance(model, str) else model
    chip = get_hardware(hardware) if isinstance(hardware, str) else hardware
    kv_code = chip.parse_formats(kv_bits=kv_bits)["kv_bits"]  # fp8 refused on a chip without it
    if spec.kind == "encoder":
        raise InvalidInputError("model", f"{spec.name} is an encoder: it generates no tokens", "use a decoder model")
    if not isinstance(chip.interconnect, SwitchedInterconnect):
        raise InvalidInputError(
            "hardware",
            f"{chip.name} is not a GPU: capacity planning enumerates GPU meshes",
            "use a GPU (tuner hardware)",
        )
    percentiles = (
        ("max_ttft_p90_s", max_ttft_p90_s),
        ("max_ttft_p99_s", max_ttft_p99_s),
        ("max_tpot_p99_s", max_tpot_p99_s),
    )
    refuse_outside(
        "request_rate", request_rate, REQUEST_RATE_PER_S_RANGE, "requests per second", "pass e.g. --request-rate 10"
    )
    for name, value in (
        ("max_ttft_s", max_ttft_s),
        ("max_tpot_s", max_tpot_s),
        *[(n, v) for n, v in percentiles if v is not None],
    ):
        # From a microsecond to a day, not only above 0: 1e-300 s was taken (input_ranges).
        flag = "--" + name.replace("_", "-")
        refuse_outside(name, value, LATENCY_LIMIT_S_RANGE, "a latency limit in seconds", f"pass e.g. {flag} 0.5")
    for name, whole in (("prompt_len", prompt_len), ("gen_len", gen_len), ("max_chips", max_chips)):
        if not isinstance(whole, (int, np.integer)) or isinstance(whole, bool) or whole < 1:
            raise InvalidInputError(name, f"must be a whole number >= 1, got {whole!r}", f"pass {name} of 1 or more")
    if max_chips > 4096:
        raise InvalidInputError("max_chips", f"{max_chips} is more than 4096", "pass a smaller chip budget")
    profile = resolve_calibration(calibration, chip, backend)
    # As tuner estimate and a study: without a profile (calibration none) the engine measured best.
    engine = serving_engine(backend, profile, chip)
    refuse_engine_kv_cache(engine, kv_code)  # as tuner estimate and simulate: no engine has an int4 cache
    defaults = ENGINE_DEFAULTS[engine]
    if not defaults["chunked_prefill"] and prompt_len > defaults["max_num_tokens"]:
        # The plan runs the engine's defaults (no --max-num-tokens here): TensorRT-LLM without
        # chunked context cannot schedule a prompt longer than max_num_tokens (the serving model
        # refuses it, naming knobs this command does not take).
        raise InvalidInputError(
            "prompt_len",
            f"{prompt_len} tokens is more than {engine}'s default max_num_tokens {defaults['max_num_tokens']}, "
            "and it does not chunk prefill by default",
            "pass --backend vllm or sglang (chunked prefill), or plan one deployment with tuner estimate "
            "--max-num-tokens or --chunked-prefill",
        )
    return CapacityProblem(
        spec,
        chip,
        float(request_rate),
        int(prompt_len),
        int(gen_len),
        Sla(float(max_ttft_s), float(max_tpot_s), *[None if v is None else float(v) for _, v in percentiles]),
        int(max_chips),
        engine,
        profile,
        kv_code,
    )


# ---------------------------------------------------------------------------------------------
# Aggregated: TP x format x replicas.


@dataclass(frozen=True)
class AggregatedCandidates:
    deployments: Deployments  # one replica
    workloads: ServingWorkloads  # at the replica's share of the rate
    replicas: np.ndarray
    tp: np.ndarray
    format_names: np.ndarray
    dp: np.ndarray | None = None  # each instance's attention DP ranks (EP = TP x DP); None: 1

    @property
    def chips(self) -> np.ndarray:
        return self.replicas * self.tp * (1.0 if self.dp is None else self.dp)


def aggregated_candidates(p: CapacityProblem) -> AggregatedCandidates:
    instances = instance_degrees(p)
    rows = [
        (tp, code, name, k, dp)
        for tp, dp in instances
        for name, code in weight_formats(p.chip, p.model)
        for k in range(1, p.max_chips // (tp * dp) + 1)
    ]
    tp = np.array([r[0] for r in rows], dtype=np.float64)
    fmt = np.array([r[1] for r in rows], dtype=np.int64)
    replicas = np.array([r[3] for r in rows], dtype=np.float64)
    dp = np.array([r[4] for r in rows], dtype=np.float64)
    with_dp = bool(np.any(dp > 1))
    return AggregatedCandidates(
        deployments=_deployments(p.model, p.chip, tp, fmt, dp if with_dp else None, p.kv_code),
        workloads=p.workloads(p.request_rate / replicas, dp if with_dp else None),
        replicas=replicas,
        tp=tp,
        format_names=np.array([r[2] for r in rows]),
        dp=dp if with_dp else None,
    )


def meets_sla(est: ServingEstimate, sla: Sla) -> np.ndarray:
    ok = est.stable.copy()
    for key, _, limit in sla.limits():
        ok &= getattr(est, key) <= limit
    return ok


def why_none(p: CapacityProblem, est: ServingEstimate) -> str:
    """Why no scored candidate meets the SLA, and what to change: none fits in memory, none keeps
    up with the rate, or the lowest TPOT / TTFT of those that keep up, against the SLA (a
    budget-bound answer and an SLA-bound one call for different changes)."""
    if not np.any(est.fits):
        return (
            f"the model and one request's KV cache fit in memory in no candidate of at most {p.max_chips} chips "
            "(raise --max-chips)"
        )
    stable = est.stable
    if not np.any(stable):
        return f"no candidate keeps up with {p.request_rate:g} requests/s (raise --max-chips or lower --request-rate)"
    short = []
    for key, option, limit in p.sla.limits():
        lowest = float(np.min(getattr(est, key)[stable]))
        if lowest > limit:
            short.append(
                f"the lowest {_SLA_WORDS[key]} of those that keep up is {lowest:.3g} s, over {option} {limit:g}"
            )
    if short:
        return (
            "; ".join(short)
            + " (relax the SLA, or raise --max-chips where the chip budget capped the tensor parallelism)"
        )
    return (
        "candidates meet "
        + " and ".join(f"{option} {limit:g}" for _, option, limit in p.sla.limits())
        + " apart, none all at once (relax one, or raise --max-chips)"
    )


def _aggregated_rows(p: CapacityProblem) -> tuple[int, list[dict[str, Any]], str | None]:
    c = aggregated_candidates(p)
    est: ServingEstimate = serve(c.deployments, c.workloads, calibration=p.calibration)
    ok = meets_sla(est, p.sla)
    chips = c.chips
    order = np.lexsort((est.e2e_latency_s, chips))
    rows = [
        {
            "mode": "aggregated",
            "chips": int(chips[i]),
            "replicas": int(c.replicas[i]),
            "tp": int(c.tp[i]),
            # An MoE instance's attention DP ranks and EP (1 and 1: one tensor-parallel group).
            "dp": 1 if c.dp is None else int(c.dp[i]),
            "ep": 1 if c.dp is None or c.dp[i] == 1 else int(c.tp[i] * c.dp[i]),
            "weight_format": str(c.format_names[i]),
            # W8A8: an 8-bit candidate's activations are 8-bit too (tuner estimate --act-bits).
            "act_format": dtype_name(act_code(int(c.deployments.weight_dtype[i]), p.chip)),
            "ttft_s": float(est.ttft_s[i]),
            "ttft_p90_s": float(est.ttft_p90_s[i]),
            "ttft_p99_s": float(est.ttft_p99_s[i]),
            "tpot_s": float(est.tpot_s[i]),
            "tpot_p99_s": float(est.tpot_p99_s[i]),
            "e2e_latency_s": float(est.e2e_latency_s[i]),
            "tokens_per_s_per_chip": float(p.request_rate * p.gen_len / chips[i]),
            "running_per_replica": float(est.running[i]),
            "max_concurrency_per_replica": int(est.max_concurrency[i]),
            # The running batch's swings reach the KV cache or the slots now and then (serving's
            # running_p999): the means above leave out the waits and preemptions that brings.
            "near_capacity": bool(near_capacity(est.running_p999[i], est.max_concurrency[i])),
        }
        for i in order
        if ok[i]
    ]
    return len(chips), rows, None if rows else why_none(p, est)


# ---------------------------------------------------------------------------------------------
# Disaggregated: prefill instance x decode instance x xP x yD, each distinct pool scored once.


def _take(pool: Any, index: np.ndarray) -> Any:
    return type(pool)(**{f.name: getattr(pool, f.name)[index] for f in fields(pool)})


@dataclass(frozen=True)
class DisaggregatedCandidates:
    prefill: Deployments  # one instance per pair
    decode: Deployments
    workloads: ServingWorkloads  # the whole rate R
    prefill_instances: np.ndarray
    decode_instances: np.ndarray
    prefill_tp: np.ndarray
    decode_tp: np.ndarray
    format_names: np.ndarray
    # Index of each pair's prefill pool and decode pool among the distinct ones.
    prefill_row: np.ndarray
    decode_row: np.ndarray
    prefill_pools: tuple[Deployments, np.ndarray]  # distinct pools: one instance, instances
    decode_pools: tuple[Deployments, np.ndarray]
    # Each instance's attention DP ranks (EP = TP x DP where above 1; 1: a TP group, EP 1).
    prefill_dp: np.ndarray | None = None
    decode_dp: np.ndarray | None = None
    pool_dp: np.ndarray | None = None  # the distinct pools' (None: every pool a TP group)

    @property
    def chips(self) -> np.ndarray:
        prefill_dp = 1.0 if self.prefill_dp is None else self.prefill_dp
        decode_dp = 1.0 if self.decode_dp is None else self.decode_dp
        prefill = self.prefill_instances * self.prefill_tp * prefill_dp
        return prefill + self.decode_instances * self.decode_tp * decode_dp


def _disaggregated_pools(p: CapacityProblem) -> list[tuple[int, int, int]]:
    """Distinct pools (TP, DP, instances), each leaving at least one chip for the other pool: an
    instance is any shape the aggregated plan runs (:func:`instance_degrees`, so an MoE model's
    pools may run attention DP with EP = TP x DP under the same engine rules)."""
    return [(tp, dp, x) for tp, dp in instance_degrees(p) for x in range(1, (p.max_chips - 1) // (tp * dp) + 1)]


@dataclass(frozen=True)
class _PoolTable:
    """The distinct pools (TP, DP, format, instances) of :func:`disaggregated_candidates`, each
    with its one instance's deployment."""

    one: Deployments
    tp: np.ndarray
    dp: np.ndarray
    fmt_index: np.ndarray
    instances: np.ndarray
    format_names: np.ndarray
    with_dp: bool


def _pool_table(p: CapacityProblem) -> _PoolTable:
    formats = weight_formats(p.chip, p.model)
    # Distinct pools: (TP, DP, format, instances).
    pools = [(tp, dp, f, x) for tp, dp, x in _disaggregated_pools(p) for f in range(len(formats))]
    tp = np.array([r[0] for r in pools], dtype=np.float64)
    dp = np.array([r[1] for r in pools], dtype=np.float64)
    fmt_index = np.array([r[2] for r in pools], dtype=np.int64)
    instances = np.array([r[3] for r in pools], dtype=np.float64)
    codes = np.array([code for _, code in formats], dtype=np.int64)
    with_dp = bool(np.any(dp > 1))
    one = _deployments(p.model, p.chip, tp, codes[fmt_index], dp if with_dp else None, kv=p.kv_code)
    names = np.array([name for name, _ in formats])
    return _PoolTable(one, tp, dp, fmt_index, instances, names, with_dp)


def disaggregated_candidates(p: CapacityProblem) -> DisaggregatedCandidates:
    t = _pool_table(p)
    one, tp, dp, fmt_index, instances, names, with_dp = (
        t.one, t.tp, t.dp, t.fmt_index, t.instances, t.format_names, t.with_dp
    )  # fmt: skip
    chips = tp * dp * instances
    # Pairs of the same format within the chip budget.
    pi, di = np.nonzero((fmt_index[:, None] == fmt_index[None, :]) & (chips[:, None] + chips[None, :] <= p.max_chips))
    return DisaggregatedCandidates(
        prefill=one.take(pi),
        decode=one.take(di),
        workloads=p.workloads(np.full(len(pi), p.request_rate)),
        prefill_instances=instances[pi],
        decode_instances=instances[di],
        prefill_tp=tp[pi],
        decode_tp=tp[di],
        format_names=names[fmt_index[pi]],
        prefill_row=pi,
        decode_row=di,
        prefill_pools=(one, instances),
        decode_pools=(one, instances),
        prefill_dp=dp[pi] if with_dp else None,
        decode_dp=dp[di] if with_dp else None,
        pool_dp=dp if with_dp else None,
    )


def score_disaggregated(p: CapacityProblem, c: DisaggregatedCandidates) -> DisaggregatedEstimate:
    """The pairs' steady state at R, each distinct pool evaluated once (what
    :func:`cost_models.disaggregated.serve_disaggregated` gives pair by pair). A DP pool's
    instance gets the engine's default batch limit a rank, as an aggregated DP instance does
    (:meth:`CapacityProblem.workloads`)."""
    one, instances = c.prefill_pools
    rate = np.full(len(one), p.request_rate)
    w_pools = p.workloads(rate, c.pool_dp)
    pre: PrefillPool = prefill_pool(one, w_pools, instances, rate, calibration=p.calibration)
    one_d, instances_d = c.decode_pools
    dec: DecodePool = decode_pool(one_d, w_pools, instances_d, rate, calibration=p.calibration)
    link = kv_link(c.prefill, c.decode, c.workloads, c.prefill_instances, c.decode_instances)
    return combine(
        _take(pre, c.prefill_row),
        _take(dec, c.decode_row),
        link,
        c.workloads,
        np.full(len(c.prefill_row), p.request_rate),
        request_overhead_s=resolve_overheads(p.calibration, None).request_overhead_s,
    )


def disaggregated_pair_count(p: CapacityProblem) -> int:
    """How many (prefill pool, decode pool) pairs :func:`disaggregated_candidates` would build,
    counted without building them (the pairs grow with the square of the chip budget)."""
    chips = np.array([tp * dp * x for tp, dp, x in _disaggregated_pools(p)])
    chips.sort()
    return int(np.searchsorted(chips, p.max_chips - chips, side="right").sum()) * len(weight_formats(p.chip, p.model))


def _disaggregated_rows(p: CapacityProblem) -> tuple[int, list[dict[str, Any]], str | None]:
    if p.max_chips < 2:  # a pool of each needs two chips at least
        return 0, [], "a prefill pool and a decode pool need 2 chips at least (raise --max-chips)"
    pairs = disaggregated_pair_count(p)
    if pairs > MAX_DISAGGREGATED_PAIRS:  # about 1.8 kB each: 4096 chips were 66M pairs, killed for memory
        raise InvalidInputError(
            "max_chips",
            f"{p.max_chips} chips give {pairs:,} disaggregated pool pairs to score, more than the "
            f"{MAX_DISAGGREGATED_PAIRS:,} that fit in a few GB of memory",
            "pass a smaller --max-chips, or --mode aggregated",
        )
    c = disaggregated_candidates(p)
    est = score_disaggregated(p, c)
    ok = meets_sla(est, p.sla)
    chips = c.chips
    order = np.lexsort((est.e2e_latency_s, chips))
    ones = np.ones(len(chips))
    prefill_dp = ones if c.prefill_dp is None else c.prefill_dp
    decode_dp = ones if c.decode_dp is None else c.decode_dp
    # EP over the instance's every chip where DP attention runs (_deployments), else 1.
    prefill_ep = np.where(prefill_dp > 1, c.prefill_tp * prefill_dp, 1.0)
    decode_ep = np.where(decode_dp > 1, c.decode_tp * decode_dp, 1.0)
    rows = [
        {
            "mode": "disaggregated",
            "chips": int(chips[i]),
            "prefill_instances": int(c.prefill_instances[i]),
            "decode_instances": int(c.decode_instances[i]),
            "prefill_tp": int(c.prefill_tp[i]),
            "decode_tp": int(c.decode_tp[i]),
            # Each pool's instance's attention DP ranks and EP (1 and 1: one tensor-parallel group).
            "prefill_dp": int(prefill_dp[i]),
            "prefill_ep": int(prefill_ep[i]),
            "decode_dp": int(decode_dp[i]),
            "decode_ep": int(decode_ep[i]),
            "weight_format": str(c.format_names[i]),
            # W8A8: an 8-bit candidate's activations are 8-bit too (tuner estimate --act-bits).
            "act_format": dtype_name(act_code(int(c.prefill.weight_dtype[i]), p.chip)),
            "ttft_s": float(est.ttft_s[i]),
            "ttft_p90_s": float(est.ttft_p90_s[i]),
            "ttft_p99_s": float(est.ttft_p99_s[i]),
            "tpot_s": float(est.tpot_s[i]),
            "tpot_p99_s": float(est.tpot_p99_s[i]),
            "e2e_latency_s": float(est.e2e_latency_s[i]),
            "tokens_per_s_per_chip": float(p.request_rate * p.gen_len / chips[i]),
            "kv_transfer_s": float(est.kv_transfer_s[i]),
            "limiting_pool": str(est.limiting_pool[i]),
            "balance": float(est.balance[i]),
            "capacity_rps": float(est.capacity_rps[i]),
            # The decode pool's running batch swings up to its slots now and then (its
            # running_p999, as an aggregated replica's): the means leave out those waits.
            "near_capacity": bool(near_capacity(est.running_p999[i], est.max_concurrency[i])),
        }
        for i in order
        if ok[i]
    ]
    return len(chips), rows, None if rows else why_none(p, est)


def recommend(p: CapacityProblem, modes: tuple[str, ...] = MODES) -> dict[str, dict[str, Any]]:
    """For each mode: how many candidates were scored and the feasible ones, fewest chips first
    (``best`` is None when nothing meets the SLA within ``max_chips``, and ``why_none`` says why
    and what to change: :func:`why_none`)."""
    for mode in modes:
        if mode not in MODES:
            raise InvalidInputError("mode", f"unknown mode {mode!r}", f"use {' or '.join(MODES)}")
    scorers = {"aggregated": _aggregated_rows, "disaggregated": _disaggregated_rows}
    out: dict[str, dict[str, Any]] = {}
    for mode in modes:
        count, rows, why = scorers[mode](p)
        out[mode] = {
            "candidates": count,
            "feasible_count": len(rows),
            "best": rows[0] if rows else None,
            "why_none": why,
            "feasible": rows,
        }
    return out


# ---------------------------------------------------------------------------------------------
# One recommended plan as it was scored (what tuner recommend --export writes the engine flags of).


@dataclass(frozen=True)
class ScoredPlan:
    """A plan row of :func:`recommend` as its candidate was scored: one instance's deployment
    and its engine workload (``ServingWorkloads.row``: the engine knobs and the instance's load).
    Aggregated: one replica, at R / replicas. Disaggregated: a decode instance and a prefill
    instance, each pool's workload at R under that pool's own attention-DP ranks (the default
    batch limit a rank: :func:`score_disaggregated`)."""

    mode: str
    deployment: Deployment
    workload: dict[str, Any]
    prefill: Deployment | None = None
    prefill_workload: dict[str, Any] | None = None
    replicas: int = 1  # aggregated: copies of ``deployment``
    prefill_instances: int = 0  # disaggregated: xP of ``prefill``, yD of ``deployment``
    decode_instances: int = 0


def scored_plan(p: CapacityProblem, row: dict[str, Any]) -> ScoredPlan:
    """The candidate behind a plan row of :func:`recommend` (its best or a runner-up), rebuilt
    by the same enumeration that scored it: the same arrays, so the same deployment and knobs,
    not a second reading of the row's numbers. Each deployment carries the workload's lengths
    (the candidates' are 1: serving reads the lengths from the workload only), as a study's
    trial stores them: an export sizes the engine's context from them."""

    def lengths(d: Deployment) -> Deployment:
        return replace(d, prompt_len=p.prompt_len, gen_len=p.gen_len)

    if row.get("mode") == "aggregated":
        c = aggregated_candidates(p)
        dp = np.ones(len(c.tp)) if c.dp is None else c.dp
        match = np.flatnonzero(
            (c.tp == row["tp"]) & (dp == row["dp"]) & (c.replicas == row["replicas"])
            & (c.format_names == row["weight_format"])
        )  # fmt: skip
        if len(match) != 1:
            raise InvalidInputError("plan", f"no aggregated candidate is {row}", "pass a row tuner recommend returned")
        i = int(match[0])
        return ScoredPlan("aggregated", lengths(c.deployments.row(i)), c.workloads.row(i), replicas=int(c.replicas[i]))
    if row.get("mode") != "disaggregated":
        raise InvalidInputError("plan", f"unknown mode {row.get('mode')!r}", f"use {' or '.join(MODES)}")
    t = _pool_table(p)
    names = t.format_names[t.fmt_index]

    def pool(role: str) -> int:
        match = np.flatnonzero(
            (t.tp == row[f"{role}_tp"]) & (t.dp == row[f"{role}_dp"]) & (t.instances == row[f"{role}_instances"])
            & (names == row["weight_format"])
        )  # fmt: skip
        if len(match) != 1:
            raise InvalidInputError("plan", f"no {role} pool is {row}", "pass a row tuner recommend returned")
        return int(match[0])

    pre, dec = pool("prefill"), pool("decode")
    # As score_disaggregated: each pool's workload at the whole rate over its own DP ranks.
    both = np.array([pre, dec])
    workloads = p.workloads(np.full(2, p.request_rate), t.dp[both] if t.with_dp else None)
    return ScoredPlan(
        "disaggregated",
        lengths(t.one.row(dec)),
        workloads.row(1),
        lengths(t.one.row(pre)),
        workloads.row(0),
        prefill_instances=int(t.instances[pre]),
        decode_instances=int(t.instances[dec]),
    )
