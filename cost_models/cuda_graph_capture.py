"""The batch sizes vLLM and SGLang capture CUDA graphs at, and the padding a replay runs.

A CUDA graph replays the kernels it captured with their shapes, so an engine captures its decode
(vLLM: every) iterations at a list of sizes and pads an iteration up to the next one: its dense
GEMMs then run at the padded number of rows. Beyond the largest captured size the iteration runs
eager, unpadded (which iterations replay: cost_models.calibration.CudaGraphs).

- vLLM V1 pads the scheduled tokens of an iteration to ``cudagraph_capture_sizes``, by default
  ``[1, 2, 4] + list(range(8, 256, 8)) + list(range(256, max_capture_size + 1, 16))``
  (vllm-project/vllm vllm/config/vllm.py ``_set_cudagraph_sizes``; the CUDA-graph dispatcher pads
  the batch to the next size, vllm/v1/cudagraph_dispatcher.py). The largest, at most 512 tokens,
  is calibration.VLLM_MAX_CAPTURE_TOKENS; the list below runs to 512.
- SGLang pads a decode batch to ``cuda_graph_bs``, by default (no speculative decoding, padding on)
  ``[1, 2, 4, 8, 12] + list(range(16, 257, 8)) + list(range(272, 512, 16)) +
  list(range(512, cuda_graph_max_bs + 1, 32))`` (sgl-project/sglang python/sglang/srt/
  server_args.py ``_generate_cuda_graph_batch_sizes``; model_executor/cuda_graph_runner.py pads
  ``raw_bs`` to the next captured ``bs``). ``cuda_graph_max_bs`` is at most 512 by default
  (calibration.sglang_cuda_graph_max_bs), so the list runs to 512.
- TensorRT-LLM pads only with ``cuda_graph_config.enable_padding`` (off by default): not padded.

What is padded: the GEMMs of the captured dense layers (``GemmParams.cuda_graph_capture`` set by
calibration.cuda_graph_replay), the lm_head among them (SGLang runs its logits in the graph; vLLM
computes them outside it, at the real positions: the padding overstates vLLM's lm_head by the
padded rows, a memory-bound GEMM at decode sizes). Not padded: attention (a padded slot has no
KV to read), the norms and activations (a small share of a step), the MoE experts (the padded
rows route like the others; the experts' m stays the real tokens'), the collectives' bytes.

Why it matters: without it, a decode step of an odd batch under the fitted unaligned-m slowdown
(h100-sxm-vllm fp8: m % 4 != 0 runs up to 1.07x) came out slower than the next even batch
(Llama-3.1-8B fp8 on one H100 under vLLM: batch 3 5.21 ms, batch 4 5.05 ms), where vLLM runs
batch 3 as batch 4.
"""

from __future__ import annotations

import numpy as np

#: Each engine's captured sizes (rows of the padded GEMMs), ascending (the module docstring).
CAPTURE_SIZES: dict[str, np.ndarray] = {
    "vllm": np.array([1, 2, 4, *range(8, 256, 8), *range(256, 513, 16)], dtype=np.float64),
    "sglang": np.array([1, 2, 4, 8, 12, *range(16, 257, 8), *range(272, 512, 16), 512], dtype=np.float64),
}


def padded_to_capture(m, engine: str) -> np.ndarray:
    """The rows a CUDA-graph replay of ``engine`` runs for ``m`` rows: the least captured size of
    at least ``m`` (a fractional m, a fluid average, too), ``m`` itself above the largest (an
    iteration run eager)."""
    sizes = CAPTURE_SIZES[engine]
    m = np.asarray(m, dtype=np.float64)
    at = np.searchsorted(sizes, m, side="left")
    return np.where(at < len(sizes), sizes[np.minimum(at, len(sizes) - 1)], m)
