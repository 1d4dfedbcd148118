"""One iteration of an in-flight-batching engine: decode tokens and prefill chunks in one pass.

vLLM, SGLang and TensorRT-LLM run each scheduler iteration as one forward pass over every token
scheduled in it: one new token for each sequence in decode, and a chunk of prompt tokens for the
sequences being prefilled (Yu et al., "Orca", OSDI 2022, iteration-level scheduling; Agrawal et
al., "Sarathi-Serve", OSDI 2024, chunked prefill). The projections, norms, FFN and collectives see
all those tokens as one matrix (weights read once); attention does not mix: each decode token reads
its own sequence's KV cache, each prefill chunk attends causally within its prompt. So an iteration
is scored as three views of the same deployment through the same per-operator model as static
batches (calibrated per engine when a profile is given):

- the dense part: every operator but attention at ``decode_seqs + prefill_tokens`` tokens;
- decode attention: ``decode_seqs`` sequences at ``decode_context`` keys;
- prefill attention: the scheduled prompt tokens' share of whole prompts' causal attention;

and the block's time is their sum (combined with the collectives as a static pass is). The lm_head
scores one position per decode sequence and one per prompt that the chunk completes. This is the
decomposition NVIDIA AIConfigurator uses for its "mixed step" (non-attention at the summed tokens
plus each phase's attention), written here on the vectorized cost model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cost_models.calibration import CalibrationProfile
from cost_models.conventions import DEFAULT
from cost_models.deployment import (
    OVERLAPS,
    Overlap,
    forward_pass_s,
    kv_ways_by_phase,
    operator_times,
    sharding_plans,
)
from cost_models.deployments import Deployments
from cost_models.errors import InvalidInputError
from cost_models.inference_configs import PREFILL
from cost_models.operators import LM_HEAD, OP, operator_costs
from cost_models.topology import Network

#: Operator slots whose cost depends on each sequence's own context, not on the token count.
ATTENTION_SLOTS: tuple[int, ...] = tuple(OP[name] for name in ("qk_matmul", "softmax", "sv_matmul", "fused_attention"))
_DENSE = np.ones(len(OP), dtype=bool)
_DENSE[list(ATTENTION_SLOTS)] = False
_DENSE[LM_HEAD] = False


@dataclass(frozen=True)
class IterationTimes:
    """Seconds of one engine iteration for each of n deployments, and its parts (whole pass:
    the parts are already multiplied by the layers)."""

    latency_s: np.ndarray
    dense_s: np.ndarray  # projections, norms, FFN of all scheduled tokens (layers x per block)
    decode_attention_s: np.ndarray
    prefill_attention_s: np.ndarray
    lm_head_s: np.ndarray


def _with(d: Deployments, batch: np.ndarray) -> Deployments:
    return replace(d, batch=np.asarray(batch, dtype=np.float64))


def iteration_times(
    deployments: Deployments,
    network: Network,
    *,
    decode_seqs: np.ndarray,
    decode_context: np.ndarray,
    prefill_tokens: np.ndarray,
    prefill_prompt_len: np.ndarray,
    prefill_cached_share: np.ndarray | float = 0.0,
    calibration: CalibrationProfile | None = None,
    overlap: Overlap = "overlapped",
    phase: str = "decode",
) -> IterationTimes:
    """Time of one iteration holding ``decode_seqs`` sequences in decode (mean context
    ``decode_context`` keys) and ``prefill_tokens`` prompt tokens of prompts ``prefill_prompt_len``
    long (of which ``prefill_cached_share`` came from the prefix cache and is not recomputed), for
    each deployment, under ``phase``'s layout and attention sharding. Arrays broadcast to n;
    fractional counts are fluid averages. ``network`` is the deployments' (calibrated) network."""
    if overlap not in OVERLAPS:
        raise InvalidInputError("overlap", f"unknown value {overlap!r}", f"use {' or '.join(OVERLAPS)}")
    d = deployments
    n = len(d)
    decode_seqs = np.broadcast_to(np.asarray(decode_seqs, dtype=np.float64), (n,))
    decode_context = np.maximum(np.broadcast_to(np.asarray(decode_context, dtype=np.float64), (n,)), 1.0)
    prefill_tokens = np.broadcast_to(np.asarray(prefill_tokens, dtype=np.float64), (n,))
    prompt = np.maximum(np.broadcast_to(np.asarray(prefill_prompt_len, dtype=np.float64), (n,)), 1.0)
    cached = np.broadcast_to(np.asarray(prefill_cached_share, dtype=np.float64), (n,))
    # One validated set of shapes; the views change only batch, phase and context (fractional
    # batches are the fluid averages they are, not inputs to validate).
    base = d.inference_configs("decode", np.ones(n))
    layers = base.layers

    # Dense view: all scheduled tokens as one batch of one-token sequences.
    tokens = np.maximum(decode_seqs + prefill_tokens, 1.0)
    dense_d = _with(d, tokens)
    dense_configs = replace(base, batch=tokens)
    plans = sharding_plans(dense_d, dense_configs)
    dense_ways = kv_ways_by_phase(dense_d)
    dense, _ = operator_times(
        dense_d,
        phase,
        dense_configs,
        operator_costs(dense_configs, DEFAULT),
        np.ones(n),
        network,
        calibration,
        plans[phase],
        dense_ways[phase],
    )
    dense_block = (dense.op_time_s * _DENSE[:, None]).sum(axis=0)

    # Decode view: the decode sequences' attention; the lm_head at every position scored (one
    # per decode sequence, one per prompt the iteration's chunk completes).
    uncached = np.maximum(1.0 - cached, 1e-9)
    prompts_completed = prefill_tokens / (prompt * uncached)
    scored = np.maximum(decode_seqs + prompts_completed, 1e-9)
    decode_d = _with(d, scored)
    decode_configs = replace(base, batch=scored, seq_len=decode_context)
    decode_view, _ = operator_times(
        decode_d,
        phase,
        decode_configs,
        operator_costs(decode_configs, DEFAULT),
        np.ones(n),
        network,
        calibration,
        plans[phase],
        kv_ways_by_phase(decode_d)[phase],
    )
    decode_attention = decode_view.op_time_s[list(ATTENTION_SLOTS)].sum(axis=0) * (decode_seqs / scored)

    # Prefill view: whole prompts' causal attention, scaled to the uncached tokens scheduled. A
    # prompt whose first share c is cached computes the rows after it: (1 - c^2) of the triangle.
    if np.any(prefill_tokens > 0):
        prompts_in_kernel = np.maximum(prompts_completed, 1.0)  # one varlen kernel for the chunk's prompts
        prefill_d = _with(d, prompts_in_kernel)
        prefill_configs = replace(base, batch=prompts_in_kernel).at_phase(PREFILL, prompt)
        prefill_view, _ = operator_times(
            prefill_d,
            phase,
            prefill_configs,
            operator_costs(prefill_configs, DEFAULT),
            prompt,
            network,
            calibration,
            plans[phase],
            kv_ways_by_phase(prefill_d)[phase],
        )
        whole_prompt_attention = prefill_view.op_time_s[list(ATTENTION_SLOTS)].sum(axis=0)
        prefill_attention = whole_prompt_attention * (1.0 - cached**2) * prompts_completed / prompts_in_kernel

    else:  # a decode-only iteration: no prompt to attend over
        prefill_attention = np.zeros(n)
    attention_block = decode_attention + prefill_attention
    lm_head = decode_view.op_time_s[LM_HEAD]
    # The dense view's own lm_head (at every token) is replaced by the positions really scored.
    dense_times = replace(dense, op_time_s=np.where(_DENSE[:, None], dense.op_time_s, 0.0))
    latency = forward_pass_s(dense_times, layers, overlap, attention_block) + lm_head
    return IterationTimes(
        latency_s=latency,
        dense_s=layers * dense_block,
        decode_attention_s=layers * decode_attention,
        prefill_attention_s=layers * prefill_attention,
        lm_head_s=lm_head,
    )
