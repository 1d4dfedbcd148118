"""Numeric formats of weights, activations and the KV cache, as small integer codes.

Codes keep the cost model vectorized: a configuration's formats are int arrays, bytes per element
and the compute format of an operator are table look-ups. The compute format of a matmul is the
wider of its two operands' formats (int8 peak only when both operands are int8, design.md
"Roofline"); weights quantized to int4 but multiplied with bf16 activations still cost bf16 FLOPs.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from cost_models.errors import InvalidInputError

BF16, FP8, INT8, INT4 = 0, 1, 2, 3
#: Canonical names, indexed by code. ``bf16`` stands for any 16-bit float (fp16 too).
DTYPE_NAMES: tuple[str, ...] = ("bf16", "fp8", "int8", "int4")
#: Bytes per element, indexed by code (scale factors of quantized formats are not counted).
BYTES_PER_ELEMENT = np.array([2.0, 1.0, 1.0, 0.5])

# Compute format of a product of two operands, COMBINE[a, b]. A 16-bit operand forces 16-bit
# math; int4 x int8 runs as int8; fp8 mixed with an integer format has no common low-precision
# unit and runs in bf16.
COMBINE = np.array(
    [
        # bf16  fp8   int8  int4
        [BF16, BF16, BF16, BF16],  # bf16
        [BF16, FP8, BF16, BF16],  # fp8
        [BF16, BF16, INT8, INT8],  # int8
        [BF16, BF16, INT8, INT4],  # int4
    ],
    dtype=np.int64,
)

#: What a user writes for a stored format (bits, or fp8): CLI choices and study specs.
BitsChoice = Literal["16", "8", "4", "fp8"]
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
}


def parse_dtype(value: str | int, field: str) -> int:
    """Turn a user's bits or format name (16, 8, 4, 'fp8', 'bf16', ...) into a dtype code."""
    key = str(value).strip().lower()
    if key not in _ALIASES:
        raise InvalidInputError(
            field, f"unsupported value {value!r}", "use 16, 8, 4 or fp8 (bits of the stored format)"
        )
    return _ALIASES[key]


def dtype_name(code: int) -> str:
    """The canonical name of a dtype code."""
    return DTYPE_NAMES[int(code)]
