"""Numeric formats of weights, activations and the KV cache, as small integer codes.

Codes keep the cost model vectorized: a configuration's formats are int arrays, bytes per element
and the compute format of an operator are table look-ups. The compute format of a matmul is the
wider of its two operands' formats (int8 peak only when both operands are int8, design.md
"Roofline"); weights quantized to int4 but multiplied with bf16 activations still cost bf16 FLOPs.

fp4 is a 4-bit float with per-block scales: OCP MXFP4 (one 8-bit power-of-two scale per 32
elements, gpt-oss checkpoints) and NVIDIA NVFP4 (one fp8 E4M3 scale per 16 elements plus one fp32
scale per tensor, ModelOpt checkpoints). Both share one code: they cost the same on the chips that
have 4-bit float tensor cores (Blackwell, MI355X).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from cost_models.errors import InvalidInputError

BF16, FP8, INT8, INT4, FP4 = 0, 1, 2, 3, 4
#: Canonical names, indexed by code. ``bf16`` stands for any 16-bit float (fp16 too).
DTYPE_NAMES: tuple[str, ...] = ("bf16", "fp8", "int8", "int4", "fp4")
#: Bytes per element, indexed by code. Scale factors of quantized formats are NOT counted, for
#: int4 (AWQ/GPTQ: one 16-bit scale (+ zero) per group of 128, ~3-6% more bytes) as for fp4: the
#: block scales add 8 bits per 32 elements for MXFP4 (4.25 bits: +6.25%) and 8 bits per 16 for
#: NVFP4 (4.5 bits: +12.5%), so fp4 weight traffic and memory are low by that much. One code
#: serves both fp4 flavours, so no single scale overhead would be right for both; 0.5 keeps fp4
#: and int4 comparable (tests/cost_models/test_dtypes.py pins this choice).
BYTES_PER_ELEMENT = np.array([2.0, 1.0, 1.0, 0.5, 0.5])

#: Bytes of OCP MXFP4's scales per weight: one 8-bit E8M0 scale per block of 32 E2M1 elements
#: (OCP Microscaling Formats spec v1.0; gpt-oss's checkpoint stores them as a uint8 ``*_scales``
#: tensor beside the packed ``*_blocks``), on top of the 4-bit element: 4.25 bits a weight. Counted
#: only where the flavour is known: an ``mxfp4_experts`` checkpoint's experts (ModelSpec).
MXFP4_SCALE_BYTES_PER_ELEMENT = 1.0 / 32.0

# Compute format of a product of two operands, COMBINE[a, b]. A 16-bit operand forces 16-bit
# math; int4 x int8 runs as int8; fp8 mixed with an integer format has no common low-precision
# unit and runs in bf16. fp4 x fp4 runs on fp4 tensor cores (Blackwell: NVFP4/MXFP4 MMA); fp4
# weights with fp8 activations run as fp8 (the weights are upcast, as in W4A8 MoE kernels); fp4
# with bf16 or an integer format runs in bf16.
COMBINE = np.array(
    [
        # bf16  fp8   int8  int4  fp4
        [BF16, BF16, BF16, BF16, BF16],  # bf16
        [BF16, FP8, BF16, BF16, FP8],  # fp8
        [BF16, BF16, INT8, INT8, BF16],  # int8
        [BF16, BF16, INT8, INT4, BF16],  # int4
        [BF16, FP8, BF16, BF16, FP4],  # fp4
    ],
    dtype=np.int64,
)

#: What a user writes for a stored format (bits, fp8 or fp4): CLI choices and study specs.
BitsChoice = Literal["16", "8", "4", "fp8", "fp4"]
BITS_CHOICES: tuple[str, ...] = get_args(BitsChoice)

_ALIASES = {
    "16": BF16,
    "bf16": BF16,
    "fp16": BF16,
    "bfloat16": BF16,
    "float16": BF16,
    "8": INT8,
    "int8": INT8,
    "fp8": FP8,
    "float8": FP8,
    "4": INT4,
    "int4": INT4,
    # "4" stays int4; the 4-bit float is named (its two block-scaled flavours cost the same here).
    "fp4": FP4,
    "mxfp4": FP4,
    "nvfp4": FP4,
    "float4": FP4,
}


def parse_dtype(value: str | int, field: str) -> int:
    """Turn a user's bits or format name (16, 8, 4, 'fp8', 'bf16', ...) into a dtype code."""
    key = str(value).strip().lower()
    if key not in _ALIASES:
        raise InvalidInputError(
            field, f"unsupported value {value!r}", "use 16, 8, 4, fp8 or fp4 (bits of the stored format; 4 is int4)"
        )
    return _ALIASES[key]


def dtype_name(code: int) -> str:
    """The canonical name of a dtype code."""
    return DTYPE_NAMES[int(code)]


#: How a user writes each format (a ``BitsChoice``), by code.
_CHOICE_BY_CODE = {BF16: "16", FP8: "fp8", INT8: "8", INT4: "4", FP4: "fp4"}


def weight_bits_default(checkpoint_format: str | None) -> str:
    """The weight format a deployment of a model runs when the user names none: its checkpoint's
    stored format (``ModelSpec.checkpoint_format``, from ``quantization_config``), else 16-bit."""
    if checkpoint_format is None:
        return "16"
    return _CHOICE_BY_CODE[parse_dtype(checkpoint_format, "checkpoint_format")]


def lookup(table: np.ndarray, *codes: np.ndarray) -> np.ndarray:
    """``table[codes]`` (one integer code array per axis of ``table``, all of one shape), bit for
    bit: a code array with one value everywhere indexes its axis by that value, and where the
    codes left can pick only one number (every entry of the table between their least and largest
    has the same bits) that number is filled in, not gathered; else the other axes are gathered
    by intp codes. On the benchmark's Xeon numpy's gather of 100,000 codes takes 0.28 ms by int8
    codes and 0.12-0.15 by int64 ones from a 5-entry table, 0.45-0.6 ms from a 5 x 5 one, the
    checks (a min and a max per code array) 0.01-0.08 ms: a single int64 code array is gathered
    as it is. In bench_estimate's draw the activations are all bf16, so the compute formats
    (COMBINE), their peaks and the activations' bytes are one number a row. Scalar codes are
    indexed as given."""
    arrays = [np.asarray(c) for c in codes]
    if any(a.size == 0 or a.ndim == 0 or a.dtype.kind not in "iu" for a in arrays):
        return table[tuple(codes)]
    if len(arrays) == 1 and arrays[0].dtype.itemsize == _INTP_BYTES:
        return table[arrays[0]]
    bounds = [(int(a.min()), int(a.max())) for a in arrays]
    if any(lo < 0 for lo, _ in bounds):  # (numpy's negative indices: left to the gather)
        return table[tuple(arrays)]
    if all(lo == hi for lo, hi in bounds):
        return np.full(arrays[0].shape, table[tuple(lo for lo, _ in bounds)], dtype=table.dtype)
    block = table[tuple(slice(lo, hi + 1) for lo, hi in bounds)]
    flat = np.ascontiguousarray(block).reshape(-1)
    bits = flat.view(np.dtype(f"u{flat.itemsize}")) if flat.itemsize in (1, 2, 4, 8) else None
    if bits is not None and bits.size and _codes_in_range(table, bounds) and bool(np.all(bits == bits[0])):
        return np.full(arrays[0].shape, flat[0], dtype=table.dtype)
    # The axes of one code by basic indexing (a view), the others gathered by intp codes.
    fixed = table[tuple(lo if lo == hi else slice(None) for lo, hi in bounds)]
    return fixed[tuple(a.astype(np.intp, copy=False) for a, (lo, hi) in zip(arrays, bounds, strict=True) if lo != hi)]


_INTP_BYTES = np.dtype(np.intp).itemsize


def _codes_in_range(table: np.ndarray, bounds: list[tuple[int, int]]) -> bool:
    """Every largest code indexes ``table`` (else the gather raises numpy's IndexError)."""
    return all(hi < size for (_, hi), size in zip(bounds, table.shape, strict=False))
