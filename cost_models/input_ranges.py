"""The bounds of the user's numbers, each refused outside in one line naming the field
(:func:`cost_models.errors.refuse_outside`, the spec's pydantic bounds, the CLI's callbacks).

Explicit bounds, not "above 0": a subnormal such as 1e-320 is above 0. A module of constants
alone, so that the serving model, the spec and the CLI's option callbacks read the same numbers
without importing each other.
"""

from __future__ import annotations

#: The user's money and load. A price, cost limit or request rate only "above 0" took 1e-320, a
#: subnormal: `tuner recommend` priced every plan at $0 a million tokens, `tuner simulate`
#: printed "simulated inf s" and NaN throughputs; a price of 1e300 printed 60-digit dollars. The
#: ranges span six orders of magnitude either side of a dollar a chip-hour (cloud GPUs rent for
#: $0.1 to $100) and of one request a second; the top request rate is the study spec's (1e9 a
#: second), the top price its 1e6.
PRICE_PER_CHIP_HOUR_USD_RANGE = (1e-6, 1e6)
COST_LIMIT_USD_PER_MILLION_TOKENS_RANGE = (1e-6, 1e6)
REQUEST_RATE_PER_S_RANGE = (1e-6, 1e9)

#: A latency limit (TTFT, TPOT, their percentiles), seconds. Only "above 0" took 1e-300 s, which
#: no deployment meets (`tuner recommend`: "none ... over --max-ttft-s 1e-300"), and 1e300 s. A
#: limit below a microsecond cannot be meant: a decode step reads the weights from HBM (a
#: 0.5 B-parameter bf16 model, 1 GB, at an H100's 3.35 TB/s: 0.3 ms), and one kernel launch alone
#: takes a few microseconds. One
#: above a day cannot be meant either: no request of an online service waits a day for a token.
LATENCY_LIMIT_S_RANGE = (1e-6, 86400.0)

#: The engine's memory knob (TensorRT-LLM free_gpu_memory_fraction, vLLM gpu_memory_utilization,
#: SGLang mem_fraction_static; ``tuner estimate --kv-memory-fraction`` alike), a share. Only
#: "in (0, 1]" took 1e-300: a KV cache of 0 bytes, refused later as "the KV cache holds 0
#: tokens", which does not name the knob. Below 1% cannot be meant: the engines' defaults are
#: 0.88-0.9 (cost_models.serving.ENGINE_DEFAULTS), and 1% of an 80 GB H100 is 0.8 GB, a twentieth
#: of Llama-3-8B's 16 GB of bf16 weights; `tuner export` rounds a converted knob up to hundredths,
#: so 0.01 is the least it writes.
MEMORY_FRACTION_RANGE = (0.01, 1.0)
