"""Counting conventions: the choices on which published operator counts differ.

Papers disagree on details that move FLOP and byte counts by a few percent or more: whether a
dot product of length n costs 2n or 2n-1 FLOPs, whether a residual add reads both inputs, whether
the lm_head runs on every prompt position, which compute peak applies to a mixed-precision model.
Each is an explicit field here, so every paper is reproduced by naming its convention, while
:data:`DEFAULT` is what a real inference kernel does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CountingConvention(BaseModel):
    """How operators are counted. Defaults describe a real kernel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "default"
    act_to_act_flops: Literal["2n", "2n-1"] = Field(
        default="2n",
        description="FLOPs per output of q.k and s.v of reduction length n: 2n (a MAC is 2 FLOPs) or "
        "2n-1 (n multiplies, n-1 adds; Kim et al. Table 3).",
    )
    residual_add_reads: Literal[1, 2] = Field(
        default=2, description="Inputs a residual add reads from memory (LLM-Viewer reads 1)."
    )
    lm_head_positions: Literal["last", "all", "none"] = Field(
        default="last",
        description="Prompt positions the lm_head runs on in prefill: 'last' (serving engines only "
        "need the next token's logits), 'all' (training-style), 'none' (left out). Decode always "
        "runs it on the one new token unless 'none'. Encoders have no lm_head.",
    )
    lm_head_format: Literal["16-bit", "weights"] = Field(
        default="16-bit",
        description="The lm_head's weights under quantized weights: '16-bit', as the engines keep them "
        "(vLLM's ParallelLMHead is unquantized under fp8, AWQ and GPTQ by default; ModelOpt excludes "
        "*lm_head*; Pope et al.'s code keeps the tied embedding bf16), read and computed in bf16; "
        "'weights', in the weights' format (LLM-Viewer quantizes every linear layer).",
    )
    peak_selection: Literal["per_operator", "all_operands_low_bit"] = Field(
        default="per_operator",
        description="per_operator: each matmul runs at the peak of the wider of its two operands. "
        "all_operands_low_bit (LLM-Viewer): the int8 peak applies to every operator only when "
        "weights, activations and KV cache are all 8 bits or fewer, else the 16-bit peak.",
    )
    elementwise_format: Literal["16-bit", "activations"] = Field(
        default="16-bit",
        description="Bytes of the norms and residual adds (and the norm scales) under 8- or 4-bit "
        "activations: '16-bit', as the engines run them (vLLM's --quantization fp8 quantizes a "
        "Linear layer's input to fp8 at run time, Fp8LinearMethod; RMSNorm, the residual stream and "
        "its adds stay bf16), or 'activations', in the activations' format (LLM-Viewer's a_byte for "
        "every activation).",
    )
    gemm_output_format: Literal["16-bit", "activations"] = Field(
        default="16-bit",
        description="Bytes of what the GEMMs and attention write, and of attention's query, under 8- or "
        "4-bit activations: '16-bit', as the GPU engines run them (vLLM's, SGLang's and TensorRT-LLM's "
        "fp8 GEMMs quantize only their input and write bf16 from their wider accumulators: vLLM's "
        "cutlass_scaled_mm(..., out_dtype=input.dtype); FlashAttention 3 and FlashInfer write a bf16 output; the query "
        "is quantized only for an fp8 attention over an fp8 KV cache, the attention's compute format), "
        "or 'activations', in the activations' format (LLM-Viewer's a_byte and Kim et al.'s 8-bit "
        "operands for every activation).",
    )
    softmax_flops_per_element: float = Field(default=5.0, ge=0, description="max, sub, exp, sum, div.")
    norm_flops_per_element: float = Field(default=7.0, ge=0, description="LLM-Viewer's count.")
    gelu_flops_per_element: float = Field(default=8.0, ge=0, description="tanh approximation.")
    swiglu_flops_per_element: float = Field(default=5.0, ge=0, description="silu(gate) * up.")


#: What a real kernel does.
DEFAULT = CountingConvention()

#: Kim, Hooper et al., "Full Stack Optimization of Transformer Inference" (arXiv 2302.14017), 2.2:
#: act-to-act matmuls cost m*k*(2n-1); no lm_head or embedding in the totals.
KIM2023 = CountingConvention(
    name="kim2023",
    act_to_act_flops="2n-1",
    lm_head_positions="none",
    elementwise_format="activations",
    gemm_output_format="activations",
)

#: Yuan et al., "LLM Inference Unveiled" (arXiv 2402.16363) and LLM-Viewer: a residual add loads
#: one input; the int8 peak only when every operand is 8 bits or fewer; the lm_head quantized as
#: every linear layer (LLM-Viewer's configs pass w_byte to it).
YUAN2024 = CountingConvention(
    name="yuan2024",
    residual_add_reads=1,
    peak_selection="all_operands_low_bit",
    lm_head_format="weights",
    elementwise_format="activations",
    gemm_output_format="activations",
)

CONVENTIONS: dict[str, CountingConvention] = {c.name: c for c in (DEFAULT, KIM2023, YUAN2024)}
