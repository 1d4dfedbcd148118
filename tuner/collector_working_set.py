"""The bytes a kernel collector cycles through between two calls of one GEMM row.

NVIDIA AIConfigurator's GEMM collectors (the rows of data/kernels/gemm_perf*.csv.gz) time a shape
by calling it again and again over a few copies of its operands, and report the time per call
(collector/{trtllm,vllm,sglang}/collect_gemm.py):

- TensorRT-LLM: ``copies = clip(ceil(L2 / weight bytes), 1, 5)`` Linear layers, each with its own
  weights, one activation tensor shared: a weight smaller than the L2 gets enough copies to
  span it, up to 5.
- vLLM: 6 RowParallelLinear layers, one activation tensor shared (1 layer for fp8_block and nvfp4).
- SGLang: 6 ops, each with its own bf16 activations and weights (fp8: its own quantized
  activations too; fp8_block: its own output buffer).

So whether a row's inputs are still in L2 when it is called again follows its working set, not
its own bytes: of the l40s TensorRT-LLM bf16 rows at m <= 8 with over 4 MB of weights, those whose
copies fit in the 96 MiB L2 stream at 0.8-1.7 TB/s, the others at the GDDR6 rate (docs/accuracy.md,
GEMM, the twenty-second round). The fits pass this working set to the L2 term
(cost_models.efficiency.gemm_time_s ``l2_working_set_bytes``); a deployment's GEMMs have no such
cycle and pass none.

The MoE collectors call one MoE layer again and again over one set of its weights (SGLang's
benchmark_config: the same w1 and w2 in each of its 5 calls; TensorRT-LLM's and vLLM's taken
alike): between two calls of one projection the L2 holds the woken experts' gate, up and down
weights and the tokens' activations (:func:`moe_collector_working_set_bytes`).

Left out (None: the fit's L2 term reads one call's bytes, as before): TensorRT-LLM's weight-only
and SmoothQuant rows (int8_wo, int4_wo, sq: an older collector flow whose loop is not this one) and
tuner measure's files (JAX, one operand set a shape).
"""

from __future__ import annotations

import numpy as np

#: Bytes per weight element as the TensorRT-LLM collector counts them to choose its copies
#: (collect_gemm.py ``_bytes_per_elem``).
_COLLECTOR_WEIGHT_BYTES = {"bfloat16": 2.0, "fp8": 1.0, "fp8_block": 1.0, "nvfp4": 0.5}
#: Most weight copies TensorRT-LLM's collector makes.
TRTLLM_MAX_COPIES = 5
#: Ops vLLM's and SGLang's collectors call in turn (vLLM: 1 for fp8_block and nvfp4).
LOOP_OPS = 6
#: bf16 activations, as every collector allocates them.
ACTIVATION_BYTES = 2.0


def collector_working_set_bytes(engine: str, gemm_format: str, m, n, k, l2_bytes: float | None) -> np.ndarray | None:
    """Bytes the ``engine``'s AIConfigurator collector cycles through between two calls of a
    (m, n, k) GEMM in ``gemm_format`` on a chip with ``l2_bytes`` of L2 (arrays broadcast), or None
    where that collector's loop is not known (module docstring)."""
    if gemm_format not in _COLLECTOR_WEIGHT_BYTES or l2_bytes is None:
        return None
    m, n, k = (np.asarray(x, dtype=float) for x in (m, n, k))
    weights = n * k * _COLLECTOR_WEIGHT_BYTES[gemm_format]
    activations = m * k * ACTIVATION_BYTES
    if engine == "trtllm":
        copies = np.clip(np.ceil(l2_bytes / weights), 1.0, TRTLLM_MAX_COPIES)
        return copies * weights + activations
    if engine == "vllm":
        copies = 1.0 if gemm_format in ("fp8_block", "nvfp4") else float(LOOP_OPS)
        return copies * weights + activations
    if engine == "sglang":
        own = weights + activations
        if gemm_format == "fp8":
            own = own + m * k  # its per-op fp8 copy of the activations
        elif gemm_format == "fp8_block":
            own = own + m * n * 2.0  # its per-op bf16 output
        return LOOP_OPS * own
    return None


def moe_collector_working_set_bytes(tokens, woken, expert_f, model_dim, up_projections, weight_bytes: float):
    """Bytes a MoE collector's call of one layer reads, which the L2 holds between two calls of
    one of its projections: the woken experts' ``up_projections`` (2 gated, gate and up; 1
    otherwise) of model_dim x expert_f and their down projection, at ``weight_bytes`` an element,
    and the tokens' bf16 activations (arrays broadcast)."""
    weights = (np.asarray(up_projections, dtype=float) + 1.0) * woken * expert_f * model_dim * weight_bytes
    return weights + np.asarray(tokens, dtype=float) * model_dim * ACTIVATION_BYTES
