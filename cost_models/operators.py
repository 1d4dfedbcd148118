"""Per-operator FLOPs and bytes of one transformer block and of the lm_head, vectorized.

Follows the workload analysis of Kim et al. ("Full Stack Optimization of Transformer Inference",
arXiv 2302.14017, section 2.2) and LLM-Viewer (Yuan et al., arXiv 2402.16363, section 3): each
operator reads its inputs once and writes its outputs once (ideal on-chip reuse), weights are
loaded once per forward pass. Bytes are split by what they are: weights, activations read and
written, KV cache read and written. In a decoder K and V are the KV cache: k_proj/v_proj write it,
attention reads it; in an encoder they are plain activations.

Shapes per configuration: B sequences; T new tokens per sequence (the prompt in prefill, 1 in
decode); L keys each new token attends to (the prompt in prefill, ``seq_len`` in decode);
N = B*T tokens through the projections.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Literal, cast

import numpy as np

from cost_models.conventions import DEFAULT, CountingConvention
from cost_models.dtypes import BF16, BYTES_PER_ELEMENT, COMBINE, FP4, INT8, MXFP4_SCALE_BYTES_PER_ELEMENT, lookup
from cost_models.inference_configs import DECODE, InferenceConfigs
from cost_models.model_counts import mla_attention_weights
from cost_models.moe import experts_woken

#: Operator slots, in execution order. Slots that do not apply to a configuration (gate_proj for a
#: gelu FFN, qk_matmul when attention is fused, mlp_norm in a parallel block, ...) are all zero and
#: marked absent, which keeps every array the same shape.
OPERATOR_NAMES: tuple[str, ...] = (
    "attn_norm",
    "q_proj",
    "k_proj",
    "v_proj",
    "qk_matmul",
    "softmax",
    "sv_matmul",
    "fused_attention",
    "out_proj",
    "attn_add",
    "mlp_norm",
    "gate_proj",
    "up_proj",
    "mlp_act",
    "down_proj",
    "router",
    "expert_gate",
    "expert_up",
    "expert_act",
    "expert_down",
    "mlp_add",
    "lm_head",
)
OP = {name: i for i, name in enumerate(OPERATOR_NAMES)}
LM_HEAD = OP["lm_head"]
#: Bytes per weight of a 16-bit lm_head (conventions.CountingConvention.lm_head_format).
LM_HEAD_BYTES_PER_ELEMENT = 2.0
#: The attention kernels' slots: unfused scores, softmax and values, or the fused operator.
ATTENTION_KERNEL_SLOTS: frozenset[int] = frozenset(
    OP[name] for name in ("qk_matmul", "softmax", "sv_matmul", "fused_attention")
)
#: Which slots :func:`operator_costs` fills: every one, all but the attention kernels and the
#: lm_head (a serving iteration's dense view), or only those (its attention views).
CostSlots = Literal["all", "dense", "attention"]
#: Operators whose FLOPs are matmuls against weights ("projections" in Kim et al.'s tables).
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj", "gate_proj", "up_proj", "down_proj")
#: The dense FFN's slots: in an MoE model they run only in the first ``dense_layers`` blocks.
DENSE_FFN = ("gate_proj", "up_proj", "mlp_act", "down_proj")
#: An MoE block's FFN slots (absent in a dense model): the router and the experts' matmuls, routed
#: and shared experts together (one grouped kernel), and their activation.
MOE_FFN = ("router", "expert_gate", "expert_up", "expert_act", "expert_down")
#: Matmuls against expert weights.
EXPERT_PROJECTIONS = ("expert_gate", "expert_up", "expert_down")
#: Matmuls between two activations (Kim et al.'s "act-to-act").
ACT_TO_ACT = ("qk_matmul", "sv_matmul")
#: The only slots with KV-cache traffic: the K and V projections write the cache, attention reads
#: it (every other slot's ``kv_read_bytes`` and ``kv_write_bytes`` are zero; the per-chip roofline
#: skips them, and tests/cost_models/test_operators.py checks they are zero).
KV_WRITE_SLOTS = ("k_proj", "v_proj")
KV_READ_SLOTS = ("qk_matmul", "sv_matmul", "fused_attention")
#: Slots without weights (attention kernels, activations, residual adds): their ``weight_bytes``
#: are zero in every configuration (the per-chip roofline skips them; tests/cost_models/
#: test_operators.py checks they are zero).
WEIGHTLESS_SLOTS = (
    "qk_matmul",
    "softmax",
    "sv_matmul",
    "fused_attention",
    "mlp_act",
    "expert_act",
    "attn_add",
    "mlp_add",
)
_WEIGHTLESS_ROWS = frozenset(OP[name] for name in WEIGHTLESS_SLOTS)


@dataclass(frozen=True)
class OperatorCosts:
    """Arrays of shape (len(OPERATOR_NAMES), n): one row per operator slot, one column per config.

    Block operators are per block and repeat ``layers`` times; lm_head runs once per model
    (``repeats`` says which). In an MoE model the dense FFN's slots repeat ``layers -
    moe_layers`` times and the MoE slots ``moe_layers`` times. Bytes are per execution of the
    operator.
    """

    flops: np.ndarray
    weight_bytes: np.ndarray
    act_read_bytes: np.ndarray
    act_write_bytes: np.ndarray
    kv_read_bytes: np.ndarray
    kv_write_bytes: np.ndarray
    compute_dtype: np.ndarray  # int dtype code whose peak applies
    present: np.ndarray  # bool
    repeats: np.ndarray  # executions per forward pass: layers for block operators, 1 for lm_head

    def __post_init__(self) -> None:
        # The KV fields and ``repeats`` may come as rows (_KvRows, _RepeatRows, from
        # operator_costs): the whole (slots, n) array is built the first time the field is read
        # (__getattr__). Zeroing two (slots, n) KV arrays that are zero outside five rows was a
        # 2 x 17.6 MB memset per 100,000 configurations, and filling ``repeats`` (layers in most
        # rows) a 17.6 MB copy; the per-chip roofline reads only some rows (``row``).
        for name in _ROW_FIELDS:
            value = self.__dict__[name]
            if isinstance(value, (_KvRows, _RepeatRows)):
                del self.__dict__[name]
                self.__dict__["_rows_" + name] = value

    if not TYPE_CHECKING:  # (hidden from mypy, which would otherwise accept any attribute)

        def __getattr__(self, name: str) -> np.ndarray:
            # Only called when normal look-up fails: a field kept as rows, built whole once.
            rows = self.__dict__.get("_rows_" + name)
            if rows is None:
                raise AttributeError(name)
            whole = rows.whole()
            self.__dict__[name] = whole
            return whole

    def same_rows(self) -> dict[int, int]:
        """Slots whose every row (costs, KV bytes, compute format, presence) is an earlier slot's,
        by that slot (k_proj -> v_proj built with the same arguments, ...), as
        :func:`operator_costs` made them; {} for costs made or changed otherwise."""
        return self.__dict__.get("_same_rows", {})

    def residual_rows(self, name: str) -> frozenset[int]:
        """Slots whose row of ``name`` ("act_read_bytes", "act_write_bytes") is the residual
        stream's bytes (N d_model ab), one array's copy, every row equal to every other's, as
        :func:`operator_costs` made them; empty for costs made or changed otherwise."""
        return self.__dict__.get("_residual_rows", {}).get(name, frozenset())

    def row(self, name: str, i: int) -> np.ndarray:
        """Row ``i`` of the field ``name`` (read only), without building the whole array where
        the field is kept as rows (the same numbers as the whole array's row i)."""
        whole = self.__dict__.get(name)
        if whole is not None:
            return whole[i]
        return self.__dict__["_rows_" + name].row(i)

    def replaced(self, **changes: np.ndarray) -> OperatorCosts:
        """dataclasses.replace, the fields kept as rows (and not in ``changes``) passed on as
        rows (not built whole to be copied over)."""
        for name in _ROW_FIELDS:
            if name not in changes and name not in self.__dict__:
                changes[name] = self.__dict__["_rows_" + name]
        return replace(self, **changes)

    def repeats_apart(self) -> dict[int, np.ndarray | float] | None:
        """The rows of ``repeats`` that are not the configurations' ``layers`` (the FFN slots'
        and the lm_head's), by slot, where ``repeats`` is kept as rows; else None."""
        rows = self.__dict__.get("_rows_repeats")
        return None if rows is None or "repeats" in self.__dict__ else dict(rows.rows)

    @cached_property
    def bytes(self) -> np.ndarray:
        """All memory traffic of an operator."""
        return self.weight_bytes + self.act_read_bytes + self.act_write_bytes + self.kv_read_bytes + self.kv_write_bytes

    @property
    def arithmetic_intensity(self) -> np.ndarray:
        """FLOPs per byte of memory traffic (0 for absent operators)."""
        total = self.bytes
        return np.divide(self.flops, total, out=np.zeros_like(total), where=total > 0)


#: OperatorCosts fields that operator_costs hands over as rows, built whole when read.
_ROW_FIELDS = ("kv_read_bytes", "kv_write_bytes", "repeats")


class _KvRows:
    """A (slots, n) array that is zero outside a few rows, kept as those rows: ``table[i]``
    is row i (a zero row made on first use, written in place like a row of the whole array);
    ``table[i] = value`` sets it."""

    def __init__(self, shape: tuple[int, int], dtype: np.dtype | type[np.floating] = np.float64) -> None:
        self.shape, self.dtype = shape, dtype
        self.rows: dict[int, np.ndarray] = {}

    def __getitem__(self, i: int) -> np.ndarray:
        row = self.rows.get(i)
        if row is None:
            row = self.rows[i] = np.zeros(self.shape[1], self.dtype)
        return row

    def __setitem__(self, i: int, value) -> None:
        row = self.rows.get(i)
        if row is None:
            row = self.rows[i] = np.empty(self.shape[1], self.dtype)
        if value is not row:  # (``table[i] *= x`` sets the row it changed in place)
            row[...] = value

    def row_to_write(self, i: int) -> np.ndarray:
        """Row i, to be written whole (uninitialized where it was not kept)."""
        row = self.rows.get(i)
        if row is None:
            row = self.rows[i] = np.empty(self.shape[1], self.dtype)
        return row

    def copy_row(self, i: int, source: int) -> None:
        """Row i = row ``source`` (zero, not kept, where that is zero)."""
        if source in self.rows:
            self[i] = self.rows[source]
        else:
            self.rows.pop(i, None)

    def row(self, i: int) -> np.ndarray:
        """Row i, read only: a zero row where none was written."""
        row = self.rows.get(i)
        if row is None:
            row = np.zeros(self.shape[1], self.dtype)
        return row

    def whole(self) -> np.ndarray:
        whole = np.zeros(self.shape, self.dtype)
        for i, row in self.rows.items():
            whole[i] = row
        return whole


class _RepeatRows:
    """OperatorCosts.repeats kept as rows: ``layers`` in every row but those in ``rows`` (an
    (n,) array or a number each)."""

    def __init__(self, shape: tuple[int, int], layers: np.ndarray, rows: dict[int, np.ndarray | float]) -> None:
        self.shape, self.layers, self.rows = shape, layers, rows

    def row(self, i: int) -> np.ndarray:
        """Row i, read only (``layers`` itself where the row is layers)."""
        value = self.rows.get(i)
        if value is None:
            return self.layers
        if isinstance(value, np.ndarray):
            return value
        return np.full(self.shape[1], value, self.layers.dtype)

    def whole(self) -> np.ndarray:
        whole = np.empty(self.shape, self.layers.dtype)
        whole[:] = self.layers
        for i, value in self.rows.items():
            whole[i] = value
        return whole


class _CastConfigs:
    """An InferenceConfigs' fields with its float64 arrays cast to ``dtype`` when first read (and
    kept): operator_costs reads 13 of its 25 float64 fields in bench_estimate's draw, and a cast
    of 100,000 values costs ~36 us (AMD EPYC VM), ~0.9 ms a phase for all 25. Properties and
    methods are the configurations' own (on the float64 arrays)."""

    def __init__(self, configs: InferenceConfigs, dtype: type[np.floating]) -> None:
        self._configs, self._dtype = configs, dtype

    def __len__(self) -> int:
        return len(self._configs)

    def __getattr__(self, name: str):
        value = getattr(self._configs, name)
        if isinstance(value, np.ndarray) and value.dtype == np.float64:
            value = value.astype(self._dtype)
        setattr(self, name, value)
        return value


class _CostTable:
    """The arrays :func:`operator_costs` fills, one row per operator slot, and the shapes of one
    batch of configurations (B sequences, T new tokens each, L keys, N = B T tokens)."""

    def __init__(self, c: InferenceConfigs) -> None:
        shape = (len(OPERATOR_NAMES), len(c))
        #: The tables' float type: the configurations' sizes' (operator_costs' ``dtype``).
        self.dtype = dtype = c.d_model.dtype
        #: BYTES_PER_ELEMENT in that type (a float64 table would promote every product).
        self.bytes_per_element = bytes_per_element = BYTES_PER_ELEMENT.astype(dtype, copy=False)
        # FLOPs and activations: every slot's row is written whole by the builders below (those
        # in ``unwritten`` are zeroed by :func:`operator_costs`), so they start uninitialized; so
        # do the weights, of which the slots without any (attention kernels, activations) and
        # those never built are zeroed at the end (``weight_rows`` says which were written). The
        # KV rows are written for a few slots only: kept as those rows (_KvRows), the others
        # zero. (Zeroing a (slots, n) array is a 17.6 MB memset at 100,000 configurations.)
        self.flops, self.act_r, self.act_w, self.weight = (np.empty(shape, dtype) for _ in range(4))
        self.kv_r, self.kv_w = _KvRows(shape, dtype), _KvRows(shape, dtype)
        #: Slots whose ``weight`` row has been written (the others are zeroed at the end).
        self.weight_rows: set[int] = set()
        self.present = np.ones(shape, dtype=bool)
        #: Slots left unwritten (still zero) because no configuration has them.
        self.unwritten: set[int] = set()
        self.decode = c.phase == DECODE
        self.wb = lookup(bytes_per_element, c.weight_dtype)
        self.ab = lookup(bytes_per_element, c.act_dtype)
        #: Bytes of an element of the norms and residual adds (:func:`operator_costs` sets 16 bits
        #: where the activations are narrower); the same array as ``ab`` otherwise.
        self.eb = self.ab
        #: Bytes of an element the GEMMs and attention write (and the FFN activation reads), and
        #: of attention's query, scores and activation K/V (:func:`operator_costs` sets 16 bits and
        #: the attention's compute format where the activations are narrower:
        #: CountingConvention.gemm_output_format); the same array as ``ab`` otherwise.
        self.ob = self.ab
        self.qb = self.ab
        # K and V are cache entries in a decoder, plain activations in an encoder.
        self.kvb = _where(c.decoder, lookup(bytes_per_element, c.kv_dtype), self.ab)
        self.B = c.batch
        # New tokens per sequence (np.where's numbers, without its pass where every
        # configuration is in one phase).
        if self.decode.all():
            self.T = np.ones(len(c), dtype)
        elif not self.decode.any():
            self.T = c.seq_len.astype(dtype)
        else:
            self.T = np.where(self.decode, 1.0, c.seq_len)
        self.L = c.seq_len  # keys each new token attends to (at most)
        self.N = self.B * self.T
        self.dq = c.heads * c.d_head
        self.dkv = c.kv_heads * c.d_head
        # The residual stream's N d elements and their bytes (N d) ab: the activations read or
        # written by the norms, the residual adds and every projection from or to d_model (the
        # same products of the same arrays, so the same numbers), computed once and copied.
        self.d = c.d_model
        self.Nd = self.N * self.d
        self._nd_ab: np.ndarray | None = None
        #: elementwise slots built so far, by their arguments: a slot built with the same ones
        #: (the FFN's norm and add after the attention's) copies their rows. Keyed by the
        #: arguments' ids, each entry holding the arguments (so no id is reused while it lives).
        self._elementwise_rows: dict[tuple, tuple[int, tuple]] = {}
        #: projections built so far, by their arguments (k and v, gate and up, ...), the same way.
        self._projection_rows: dict[tuple, tuple[int, tuple]] = {}
        #: Slots whose rows were copied from a slot built with the same arguments, by that slot
        #: (dropped where a later write may change either: :meth:`written`).
        self.same_rows: dict[int, int] = {}
        #: 2 tokens d_in of the projections built so far, by the ids of (tokens, d_in).
        self._two_tokens_d_in: dict[tuple[int, int], tuple[np.ndarray, tuple]] = {}
        #: Slots whose activation row read (``act_r``) or written (``act_w``) is a copy of
        #: :meth:`nd_ab` not changed since (dropped where a later write may change it:
        #: :meth:`written`, operator_costs' absent slots); chip_roofline splits those rows once.
        self.residual_rows: dict[str, set[int]] = {"act_r": set(), "act_w": set()}

    def written(self, i: int) -> None:
        """Slot i's rows are written again: it is no longer known to equal another slot's, nor
        its activation rows the residual stream's."""
        self.same_rows = {k: v for k, v in self.same_rows.items() if i not in (k, v)}
        for rows in self.residual_rows.values():
            rows.discard(i)

    def _residual(self, name: str, i: int, residual: bool) -> None:
        """Record whether slot i's activation row ``name`` ("act_r", "act_w") was just written
        as a copy of :meth:`nd_ab`."""
        if residual:
            self.residual_rows[name].add(i)
        else:
            self.residual_rows[name].discard(i)

    def nd_ab(self) -> np.ndarray:
        """(N d) ab, the bytes of the residual stream's N d elements (computed once)."""
        if self._nd_ab is None:
            self._nd_ab = np.multiply(self.N, self.d)
            self._nd_ab *= self.ab
        return self._nd_ab

    def projection(
        self, name: str, d_in: np.ndarray, d_out: np.ndarray, tokens: np.ndarray, out_to_kv: np.ndarray | bool = False
    ) -> None:
        """x[tokens, d_in] @ W[d_in, d_out]: weights read once, output to activations or KV cache."""
        i = OP[name]
        arguments = (d_in, d_out, tokens, out_to_kv)
        key = tuple(id(a) if isinstance(a, np.ndarray) else a for a in arguments)
        if key in self._projection_rows:  # built before with the same arguments: its rows
            built = self._projection_rows[key][0]
            for array in (self.flops, self.weight, self.act_r, self.act_w):
                np.copyto(array[i], array[built])
            self.kv_w.copy_row(i, built)
            self.weight_rows.add(i)
            self.same_rows[i] = built
            for name, rows in self.residual_rows.items():
                self._residual(name, i, built in rows)
            return
        self._projection_rows[key] = (i, arguments)
        # Written in place into the slot's rows, in the order of the expressions they stand for
        # (2 tokens d_in d_out; d_in d_out wb; tokens d_in ab): the same numbers, no temporaries.
        # 2 tokens d_in is shared by the projections of the same input (q, k, gate, ...).
        prefix_key = (id(tokens), id(d_in))
        if prefix_key not in self._two_tokens_d_in:
            prefix = np.multiply(2.0, tokens)
            prefix *= d_in
            self._two_tokens_d_in[prefix_key] = (prefix, (tokens, d_in))
        np.multiply(self._two_tokens_d_in[prefix_key][0], d_out, out=self.flops[i])
        np.multiply(np.multiply(d_in, d_out, out=self.weight[i]), self.wb, out=self.weight[i])
        self.weight_rows.add(i)
        residual = tokens is self.N  # (N d) ab where d_in or d_out is d_model: copied (nd_ab)
        if residual and d_in is self.d:
            np.copyto(self.act_r[i], self.nd_ab())
        else:
            np.multiply(np.multiply(tokens, d_in, out=self.act_r[i]), self.ab, out=self.act_r[i])
        self._residual("act_r", i, residual and d_in is self.d)
        # (The output is (N d) ab, a copy of nd_ab, only where the GEMMs write the activations'
        # format: ob is ab.)
        residual_out = out_to_kv is False and residual and d_out is self.d and self.ob is self.ab
        self._residual("act_w", i, residual_out)
        if out_to_kv is False:  # the common case: no per-row choice (the KV row stays zero)
            if residual_out:
                np.copyto(self.act_w[i], self.nd_ab())
            else:
                np.multiply(np.multiply(tokens, d_out, out=self.act_w[i]), self.ob, out=self.act_w[i])
            return
        out = tokens * d_out
        if np.all(out_to_kv):  # every configuration a decoder: all to the cache, no activations
            np.multiply(out, self.kvb, out=self.kv_w.row_to_write(i))
            self.act_w[i] = 0.0
            return
        self.act_w[i] = np.where(out_to_kv, 0.0, out * self.ob)
        self.kv_w[i] = np.where(out_to_kv, out * self.kvb, 0.0)

    def elementwise(
        self,
        name: str,
        elements: np.ndarray,
        ops_per_element: float,
        reads: float,
        weight_elements: np.ndarray | float = 0.0,
    ) -> None:
        i = OP[name]
        self.weight_rows.add(i)
        arrays = (self.flops, self.act_r, self.act_w, self.weight)
        arguments = (elements, ops_per_element, reads, weight_elements)
        key = tuple(id(a) if isinstance(a, np.ndarray) else a for a in arguments)
        if key in self._elementwise_rows:  # built before with the same arguments: its rows
            built = self._elementwise_rows[key][0]
            for array in arrays:
                np.copyto(array[i], array[built])
            self.same_rows[i] = built
            for name, rows in self.residual_rows.items():
                self._residual(name, i, built in rows)
            return
        self._elementwise_rows[key] = (i, arguments)
        # (reads N d) eb with reads 1 (1 x is x), N d eb: nd_ab where eb is ab (16-bit activations)
        residual = elements is self.Nd and self.eb is self.ab
        self._residual("act_r", i, residual and reads == 1.0)
        self._residual("act_w", i, residual)
        np.multiply(ops_per_element, elements, out=self.flops[i])
        if residual and reads == 1.0:
            np.copyto(self.act_r[i], self.nd_ab())
        else:
            np.multiply(np.multiply(reads, elements, out=self.act_r[i]), self.eb, out=self.act_r[i])
        if residual:
            np.copyto(self.act_w[i], self.nd_ab())
        else:
            np.multiply(elements, self.eb, out=self.act_w[i])
        np.multiply(weight_elements, self.eb, out=self.weight[i])  # norm scales in the norm's format


def _choose(t: _CostTable, condition: np.ndarray, x: float, y: float) -> np.ndarray:
    """np.where(condition, x, y) of two numbers, in the tables' type (np.where of two Python
    floats is float64, which would promote every product it enters)."""
    return np.where(condition, t.dtype.type(x), t.dtype.type(y))


def _where(condition: np.ndarray, x, y):
    """np.where(condition, x, y), up to broadcasting: x or y itself where ``condition`` is the
    same for every configuration (a batch of one phase, of models without MLA), which saves a
    pass over the arrays and gives the same numbers."""
    if condition.all():
        return x
    if not condition.any():
        return y
    return np.where(condition, x, y)


def window_share(c: InferenceConfigs) -> np.ndarray:
    """Share of the blocks with a sliding window (0 without one)."""
    return np.where(c.sliding_window > 0, c.sliding_window_layers / c.layers, 0.0)


def banded_causal_pairs(tokens: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Query-key pairs of causal attention over ``tokens`` tokens where each query sees at most
    the last ``window`` keys (itself included, as the HF masks of gpt-oss and Gemma do):
    sum over i = 1..T of min(i, W) = T(T+1)/2 when T <= W, else W(W+1)/2 + (T - W) W."""
    w = np.minimum(window, tokens)
    return w * (w + 1.0) / 2.0 + (tokens - w) * w


def attention_keys(t: _CostTable, c: InferenceConfigs) -> tuple[np.ndarray, np.ndarray]:
    """(pairs per sequence and query head, keys read per sequence), averaged over the blocks.

    Full-attention blocks score the whole T x L square, or with causal skipping only the lower
    triangle T(T+1)/2 (prefill; a decode token sees all L keys). Sliding-window blocks (a share
    ``window_share`` of them) score only the band: causal prefill sum min(i, W); decode min(L, W)
    keys; unfused prefill (no causal skipping) still computes the whole square and masks it. A
    decode token reads min(L, W) cached keys of a windowed block; prefill reads each key once."""
    T, L, W = t.T, t.L, c.sliding_window
    share = window_share(c)
    causal = c.causal & ~t.decode
    if causal.all():  # _where's shortcuts, each side computed only where it is taken
        full_pairs = T * (T + 1.0) / 2.0
    elif not causal.any():
        full_pairs = T * L
    else:
        full_pairs = np.where(causal, T * (T + 1.0) / 2.0, T * L)
    if not np.any(share):  # no windowed blocks: (1 - 0) full + 0 band is the full count
        return full_pairs, L
    rows = np.flatnonzero(share)
    if 2 * len(rows) <= len(share):
        # Few configurations have windowed blocks (bench_estimate's draw: one model in eight):
        # the others' counts are the full ones ((1 - 0) x + 0 band is x, the band being finite),
        # so the expressions below run on the windowed rows alone, written over the full counts
        # (this function's own array) and over a copy of L (the configurations' own).
        at = [np.asarray(values).take(rows) for values in (T, L, W, share, causal, t.decode, full_pairs)]
        pairs, keys = _windowed_pairs_and_keys(*at)
        full_pairs[rows] = pairs
        all_keys = L.copy()
        all_keys[rows] = keys
        return full_pairs, all_keys
    return _windowed_pairs_and_keys(T, L, W, share, causal, t.decode, full_pairs)


def _windowed_pairs_and_keys(T, L, W, share, causal, decode, full_pairs) -> tuple[np.ndarray, np.ndarray]:
    """attention_keys' counts where some blocks are windowed (share > 0)."""
    windowed = np.minimum(L, np.where(W > 0, W, L))
    band_pairs = np.where(causal, banded_causal_pairs(T, windowed), np.where(decode, windowed, T * L))
    pairs = (1.0 - share) * full_pairs + share * band_pairs
    keys = np.where(decode, (1.0 - share) * L + share * windowed, L)
    return pairs, keys


def _mla_projections(t: _CostTable, c: InferenceConfigs) -> None:
    """Multi-head latent attention's matrices (DeepSeek-V2, arXiv 2405.04434, section 2.1 and
    appendix C; cost_models.model_counts.mla_attention_weights) in the q/k/v/out slots, where
    ``c.mla``; FLOPs 2 x tokens x weight elements, as every one is a per-token matmul:

    - prefill (K and V decompressed per head, as FlashMLA's and vLLM's prefill path does):
      q_proj = q_a, q_b; k_proj = kv_a (writes the latent and rotary key to the cache) and W_UK
      (the K of every head); v_proj = W_UV (the V of every head); out_proj = o;
    - decode (absorbed: W_UK folded into the query, W_UV applied after attention, so attention
      runs over the latent, appendix C / FlashMLA): q_proj = q_a, q_b, W_UK (query in latent
      space, heads x (kv_lora_rank + rope) wide); k_proj = kv_a; v_proj = W_UV on the attention
      output; out_proj = o.

    Activations: each slot's input and final output (the q_lora_rank-wide intermediate of the
    chained q matmuls is left out: under 2% of a DeepSeek-V3 decode block's bytes)."""
    mla, decode, N, d, H, ab, ob, wb = c.mla, t.decode, t.N, c.d_model, c.heads, t.ab, t.ob, t.wb
    if not np.any(mla):
        return
    w = mla_attention_weights(d, H, c.d_head, c.kv_lora_rank, c.q_lora_rank, c.qk_rope_head_dim, c.v_head_dim)
    latent = c.kv_lora_rank + c.qk_rope_head_dim
    q_weights = w["q_a"] + w["q_b"] + np.where(decode, w["kv_b_k"], 0.0)
    k_weights = w["kv_a"] + np.where(decode, 0.0, w["kv_b_k"])
    slots = {
        # name: (weight elements, input elements per token, output elements per token to
        # activations, to the cache)
        "q_proj": (q_weights, d, H * np.where(decode, latent, c.d_head + c.qk_rope_head_dim), 0.0),
        "k_proj": (k_weights, d, np.where(decode, 0.0, H * c.d_head), latent),
        "v_proj": (w["kv_b_v"], np.where(decode, H * c.kv_lora_rank, c.kv_lora_rank), H * c.v_head_dim, 0.0),
    }
    for name, (weights, d_in, out_act, out_kv) in slots.items():
        i = OP[name]
        t.written(i)
        t.flops[i] = np.where(mla, 2.0 * N * weights, t.flops[i])
        t.weight[i] = np.where(mla, weights * wb, t.weight[i])
        t.act_r[i] = np.where(mla, N * d_in * ab, t.act_r[i])
        t.act_w[i] = np.where(mla, N * out_act * ob, t.act_w[i])
        t.kv_w[i] = np.where(mla, N * out_kv * t.kvb, t.kv_w[i])


def _attention(t: _CostTable, c: InferenceConfigs, convention: CountingConvention, kernels: bool = True) -> None:
    """Norm, q/k/v projections, attention (unfused qk/softmax/sv or one fused operator), out
    projection and residual add. MLA (:func:`_mla_projections`) and sliding windows
    (:func:`attention_keys`) where the model has them. ``kernels`` False: the attention slots
    (qk, softmax, sv, fused) are left out, absent and zero (:func:`operator_costs`' "dense")."""
    d, N = c.d_model, t.N
    t.elementwise("attn_norm", t.Nd, convention.norm_flops_per_element, 1.0, d)
    t.projection("q_proj", d, t.dq, N)
    t.projection("k_proj", d, t.dkv, N, out_to_kv=c.decoder)
    t.projection("v_proj", d, t.dkv, N, out_to_kv=c.decoder)
    _mla_projections(t, c)
    if kernels:
        _attention_kernels(t, c, convention)
    else:
        t.unwritten.update(ATTENTION_KERNEL_SLOTS)
        t.present[list(ATTENTION_KERNEL_SLOTS)] = False
    t.projection("out_proj", c.heads * c.v_head_dim, d, N)
    t.elementwise("attn_add", t.Nd, 1.0, float(convention.residual_add_reads))


def _attention_kernels(t: _CostTable, c: InferenceConfigs, convention: CountingConvention) -> None:
    """The attention slots of :func:`_attention`: unfused qk, softmax and sv, or one fused operator."""
    # Q, the scores and activation K/V in the attention's operand format (qb), its output in
    # what it writes (ob): ab both, but under 8- and 4-bit activations on the engines
    # (CountingConvention.gemm_output_format, operator_costs).
    N, B, qb, ob = t.N, t.B, t.qb, t.ob

    # Widths per head of the scores' dot products and of the values. MLA: prefill attends with
    # decompressed heads (q/k d_head + rope, v v_head_dim); absorbed decode attends over the
    # latent (q/k kv_lora_rank + rope, v kv_lora_rank: the latent is the value, W_UV comes after).
    mla, decode = c.mla, t.decode
    any_mla = bool(np.any(mla))
    if any_mla:  # (the latent width is read only where some configuration has MLA)
        latent = c.kv_lora_rank + c.qk_rope_head_dim
        qk_dim = np.where(mla, np.where(decode, latent, c.d_head + c.qk_rope_head_dim), c.d_head)
        v_dim = np.where(mla, np.where(decode, c.kv_lora_rank, c.v_head_dim), c.d_head)
    else:
        qk_dim = v_dim = c.d_head
    per_head_pairs, keys = attention_keys(t, c)
    pairs = B * c.heads * per_head_pairs
    minus_one = convention.act_to_act_flops == "2n-1"
    # Without MLA the scores and the values are d_head wide (qk_dim is v_dim): the products of
    # the same arrays are computed once (2 qk_dim pairs, N heads qk_dim and its bytes).
    same_dims = qk_dim is v_dim
    qk_flops = 2.0 * qk_dim * pairs
    sv_outputs = N * c.heads * v_dim
    sv_flops = qk_flops if same_dims else 2.0 * v_dim * pairs
    if minus_one:  # n - 1 additions per dot product of n terms
        qk_flops = qk_flops - pairs
        sv_flops = sv_flops - sv_outputs
    softmax_flops = convention.softmax_flops_per_element * pairs
    out_bytes = sv_outputs * ob
    if same_dims:
        q_bytes = out_bytes if qb is ob else sv_outputs * qb
    else:
        q_bytes = N * c.heads * qk_dim * qb
    # Keys and values read, each entry once, shared by its query group: K and V of every KV head
    # (from the cache in a decoder); MLA prefill: the decompressed per-head K and V (activations);
    # MLA decode: the cached latent, once for all heads, like MQA with a kv_lora_rank + rope wide
    # head (FlashMLA), the value being its first kv_lora_rank elements.
    if any_mla:
        k_bytes = np.where(
            mla,
            np.where(decode, B * keys * latent * t.kvb, B * keys * c.heads * (c.d_head + c.qk_rope_head_dim) * qb),
            B * keys * t.dkv * t.kvb,
        )
        v_bytes = np.where(
            mla, np.where(decode, B * keys * c.kv_lora_rank * t.kvb, B * keys * c.heads * c.v_head_dim * qb), k_bytes
        )
    else:
        k_bytes = v_bytes = B * keys * t.dkv * t.kvb
    kv_is_cache = c.decoder & ~(mla & ~decode)  # MLA prefill decompresses K and V: activations

    fused = c.flash_attention
    if fused.all():  # the unfused slots are absent (zero) where every configuration fuses
        t.unwritten.update(OP[name] for name in ("qk_matmul", "softmax", "sv_matmul"))
    else:
        scores_bytes = pairs * qb  # the score matrix, written by qk, read and written by softmax, read by sv
        i = OP["qk_matmul"]
        t.flops[i] = qk_flops
        t.act_r[i] = q_bytes + _where(kv_is_cache, 0.0, k_bytes)
        t.kv_r[i] = _where(kv_is_cache, k_bytes, 0.0)
        t.act_w[i] = scores_bytes
        i = OP["softmax"]
        t.flops[i] = softmax_flops
        t.act_r[i] = scores_bytes
        t.act_w[i] = scores_bytes
        i = OP["sv_matmul"]
        t.flops[i] = sv_flops
        t.act_r[i] = scores_bytes + _where(kv_is_cache, 0.0, v_bytes)
        t.kv_r[i] = _where(kv_is_cache, v_bytes, 0.0)
        t.act_w[i] = out_bytes
    # FlashAttention: the same math, but scores never leave the chip (Dao et al. 2022). Where no
    # configuration fuses, the slot is absent (zero) everywhere, as the unfused slots are above
    # where every one does: left unwritten, not computed and then multiplied by zero.
    i = OP["fused_attention"]
    if not fused.any():
        t.unwritten.add(i)
    else:
        if any_mla:
            fused_kv_bytes = k_bytes + np.where(mla & decode, 0.0, v_bytes)  # the latent is read once
        else:
            fused_kv_bytes = k_bytes + v_bytes
        np.add(np.add(qk_flops, softmax_flops, out=t.flops[i]), sv_flops, out=t.flops[i])
        t.act_r[i] = q_bytes + _where(kv_is_cache, 0.0, fused_kv_bytes)
        t.kv_r[i] = _where(kv_is_cache, fused_kv_bytes, 0.0)
        t.act_w[i] = out_bytes
    for name in ("qk_matmul", "softmax", "sv_matmul"):
        t.present[OP[name]] = ~fused
    t.present[OP["fused_attention"]] = fused


def _ffn(t: _CostTable, c: InferenceConfigs, convention: CountingConvention) -> None:
    """Norm (absent in a parallel block), gate (swiglu only), up, activation, down, residual add."""
    d, dff, N = c.d_model, c.d_ff, t.N
    # A parallel block (PaLM) feeds attention and FFN from one norm: no mlp_norm.
    t.elementwise("mlp_norm", t.Nd, convention.norm_flops_per_element, 1.0, d)
    t.present[OP["mlp_norm"]] = ~c.parallel_block
    t.elementwise("mlp_add", t.Nd, 1.0, float(convention.residual_add_reads))
    dense = c.layers > c.moe_layers  # an MoE model's first dense_layers blocks (every block of a dense one)
    if not np.any(dense):  # every block is an MoE block: the dense FFN's slots stay zero
        t.present[[OP[name] for name in DENSE_FFN]] = False
        t.unwritten.update(OP[name] for name in DENSE_FFN)
        return
    gated = c.gated_ffn
    t.projection("gate_proj", d, dff, N)
    t.present[OP["gate_proj"]] = gated
    t.projection("up_proj", d, dff, N)
    act_flops = _choose(t, gated, convention.swiglu_flops_per_element, convention.gelu_flops_per_element)
    i = OP["mlp_act"]
    # Written in place into the rows, left to right as the products read (the same numbers,
    # without a temporary copied in).
    np.multiply(np.multiply(act_flops, N, out=t.flops[i]), dff, out=t.flops[i])
    act_r = np.multiply(_choose(t, gated, 2.0, 1.0), N, out=t.act_r[i])
    # It reads the gate and up GEMMs' outputs (ob) and, elementwise, writes the down GEMM's
    # input before its quantization (eb): 16-bit both under 8- and 4-bit activations on the
    # engines (vLLM's silu_and_mul runs on the bf16 GEMM outputs), as the norms.
    np.multiply(np.multiply(act_r, dff, out=act_r), t.ob, out=act_r)
    np.multiply(np.multiply(N, dff, out=t.act_w[i]), t.eb, out=t.act_w[i])
    t.projection("down_proj", dff, d, N)
    for name in DENSE_FFN:
        t.present[OP[name]] &= dense


def _moe_ffn(t: _CostTable, c: InferenceConfigs, convention: CountingConvention) -> None:
    """An MoE block's FFN (cost_models.moe): the router's logits x[N, d] @ W[d, E]; then each
    token through its k routed experts and the shared ones, hidden width k expert_d_ff +
    shared_d_ff per token (FLOPs as a dense FFN of that width); weights loaded once per pass for
    each expert woken (expected E (1 - (1 - k/E)^N)) and for the shared experts."""
    moe = c.moe_layers > 0
    if not np.any(moe):  # a dense model: its MoE slots stay zero
        t.present[[OP[name] for name in MOE_FFN]] = False
        t.unwritten.update(OP[name] for name in MOE_FFN)
        return
    d, N, E, k = c.d_model, t.N, c.experts, c.experts_per_token
    routed = k * c.expert_d_ff + c.shared_d_ff  # hidden elements per token
    # (experts_woken's power is taken in float64 and its result cast to the tables' type.)
    woken = experts_woken(N, E, k).astype(t.dtype, copy=False)
    loaded = woken * c.expert_d_ff + c.shared_d_ff  # hidden width whose weights load
    t.projection("router", d, E, N)
    gated = c.gated_ffn
    for name in ("expert_gate", "expert_up"):
        t.projection(name, d, routed, N)
        t.weight[OP[name]] = d * loaded * t.wb
        t.written(OP[name])
    t.present[OP["expert_gate"]] = gated
    act_flops = _choose(t, gated, convention.swiglu_flops_per_element, convention.gelu_flops_per_element)
    i = OP["expert_act"]
    t.flops[i] = act_flops * N * routed
    t.act_r[i] = _choose(t, gated, 2.0, 1.0) * N * routed * t.ob  # GEMM outputs, as the dense mlp_act's
    t.act_w[i] = N * routed * t.eb
    t.projection("expert_down", routed, d, N)
    t.weight[OP["expert_down"]] = loaded * d * t.wb
    t.written(OP["expert_down"])
    for name in MOE_FFN:
        t.present[OP[name]] &= moe


#: Slots an MXFP4-experts checkpoint (gpt-oss) keeps in 16 bits: its quantization_config's
#: modules_to_not_convert are model.layers.*.self_attn and model.layers.*.mlp.router (and the
#: embedding and lm_head, 16-bit in every format here).
MXFP4_UNCONVERTED = ("q_proj", "k_proj", "v_proj", "out_proj", "router")


def _scale_weights(t: _CostTable, names: tuple[str, ...], rows: np.ndarray, factor) -> None:
    """The weight bytes of the slots ``names`` (those the table wrote and that carry weights)
    times ``factor`` on ``rows``: a checkpoint that stores those modules in another format than
    the deployment's weight format (:func:`_mxfp4_checkpoint`, :func:`_mixed_checkpoint`)."""
    for name in names:
        i = OP[name]
        if i in t.unwritten or i not in t.weight_rows:
            continue
        t.weight[i] = np.where(rows, t.weight[i] * factor, t.weight[i])
        t.written(i)


def mxfp4_checkpoint_rows(c: InferenceConfigs) -> np.ndarray:
    """Bool per configuration: an ``mxfp4_experts`` checkpoint (gpt-oss) served in it (fp4
    weights), whose attention and router are bf16 and whose experts carry MXFP4 scales."""
    return c.mxfp4_experts & (c.weight_dtype == FP4)


def _mxfp4_checkpoint(t: _CostTable, c: InferenceConfigs) -> None:
    """gpt-oss served in its MXFP4 checkpoint reads the attention projections and the router at
    2 bytes a weight (not fp4's 0.5) and the experts at 4.25 bits (0.5 B + one 8-bit scale per
    32: dtypes.MXFP4_SCALE_BYTES_PER_ELEMENT). gpt-oss-120b's decode step at batch 1 reads 1.91 GB
    of attention, not 0.48, and 1.90 GB of its 4 experts x 36 blocks, not 1.79."""
    rows = mxfp4_checkpoint_rows(c)
    if not rows.any():
        return
    # (Python floats: they take the tables' type, where numpy's float64 scalars would promote.)
    to_16_bit = float(BYTES_PER_ELEMENT[BF16] / BYTES_PER_ELEMENT[FP4])
    with_scales = float((BYTES_PER_ELEMENT[FP4] + MXFP4_SCALE_BYTES_PER_ELEMENT) / BYTES_PER_ELEMENT[FP4])
    for names, factor in ((MXFP4_UNCONVERTED, to_16_bit), (EXPERT_PROJECTIONS, with_scales)):
        _scale_weights(t, names, rows, factor)


#: The attention projections and the dense FFN's matmuls, whose 16-bit share a mixed-format
#: checkpoint sets (InferenceConfigs.attention_16bit_share, dense_ffn_16bit_share).
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
DENSE_FFN_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def mixed_checkpoint_rows(c: InferenceConfigs) -> np.ndarray:
    """Bool per configuration: a mixed-format checkpoint (ModelSpec.mixed_checkpoint: some block
    modules 16-bit, or group scales stored) served in its own format."""
    return c.weight_dtype == c.checkpoint_dtype


def _mixed_checkpoint(t: _CostTable, c: InferenceConfigs) -> None:
    """A checkpoint served as stored reads each module class in its own format: the share of the
    blocks whose attention projections (dense FFN, shared experts) its ignore list keeps 16-bit
    at 2 bytes a weight, the rest in the weights' format plus its group scales. Llama-3.1-405B-FP8
    at batch 1: 126 x 570.4e6 attention weights x 2 B = 143.7 GB and 2 of 126 MLPs 16-bit, not
    one fp8 byte each. The blocks' repeats apply the shares (a share of 2/126 of the dense
    FFN reads those two blocks' bytes)."""
    rows = mixed_checkpoint_rows(c)
    if not rows.any():
        return
    wb = t.wb
    quantized = wb + c.checkpoint_scale_bytes  # bytes of a weight kept in the format, scales included
    sixteen = float(BYTES_PER_ELEMENT[BF16])  # (a Python float: the tables' type)
    for names, share in (
        (ATTENTION_PROJECTIONS, c.attention_16bit_share),
        (DENSE_FFN_PROJECTIONS, c.dense_ffn_16bit_share),
        (("router",), 0.0),
    ):
        _scale_weights(t, names, rows, ((1.0 - share) * quantized + share * sixteen) / wb)
    shared = c.shared_expert_16bit_share
    for name in EXPERT_PROJECTIONS:
        i = OP[name]
        if i in t.unwritten or i not in t.weight_rows:
            continue
        elements = t.weight[i] / wb
        shared_elements = c.d_model * c.shared_d_ff
        routed_elements = elements - shared_elements
        stored = routed_elements * quantized + shared_elements * ((1.0 - shared) * quantized + shared * sixteen)
        t.weight[i] = np.where(rows, stored, t.weight[i])
        t.written(i)


def _lm_head(t: _CostTable, c: InferenceConfigs, convention: CountingConvention) -> None:
    """The lm_head, once per model: on every position, the last one, or none (a convention)."""
    head_tokens = t.N if convention.lm_head_positions == "all" else t.B.copy()
    t.projection("lm_head", c.d_model, c.vocab, head_tokens)
    if convention.lm_head_format == "16-bit" and np.any(t.wb != LM_HEAD_BYTES_PER_ELEMENT):
        # The engines keep the lm_head 16-bit under quantized weights (conventions.lm_head_format):
        # its weights are read at 2 bytes, whatever the blocks' format (int4 Llama-3.1-8B: 1.05 GB
        # a decode step, not 0.26).
        np.multiply(np.multiply(c.d_model, c.vocab), LM_HEAD_BYTES_PER_ELEMENT, out=t.weight[LM_HEAD])
    t.present[LM_HEAD] = c.decoder & (convention.lm_head_positions != "none")


def gemm_output_bytes(act_bytes: np.ndarray, convention: CountingConvention = DEFAULT) -> np.ndarray:
    """Bytes of an element the GEMMs and attention write, under activations of ``act_bytes`` bytes
    an element (BYTES_PER_ELEMENT of their format, per configuration) and ``convention``'s
    ``gemm_output_format``: 16 bits where the activations are narrower and the format is '16-bit'
    (the engines' fp8 GEMMs quantize their input only and write bf16 from their accumulators,
    vLLM's cutlass_scaled_mm(..., out_dtype=input.dtype); FlashAttention 3 and FlashInfer write
    bf16: Llama-3-70B at fp8 wrote its 28672-wide gate and up outputs at 1 byte an element, half
    of what they move), ``act_bytes`` itself (the same array) otherwise. The one rule for
    :func:`operator_costs` and for what holds them in memory (cost_models.serving's activations
    of a full iteration)."""
    if convention.gemm_output_format == "16-bit" and np.any(act_bytes < BYTES_PER_ELEMENT[BF16]):
        return np.maximum(act_bytes, float(BYTES_PER_ELEMENT[BF16]))  # (act_bytes' type)
    return act_bytes


def operator_costs(
    configs: InferenceConfigs,
    convention: CountingConvention = DEFAULT,
    *,
    slots: CostSlots = "all",
    unread_rows: bool = True,
    dtype: type[np.floating] = np.float64,
) -> OperatorCosts:
    """FLOPs and bytes of every operator of every configuration. ``slots``: "all"; "dense": the
    attention kernels and the lm_head left out (absent, zero), for a serving iteration's dense
    view, whose attention views replace them; "attention": only those (every other slot absent,
    zero), for its attention views (cost_models.iteration). A slot's numbers are the same in
    each (no slot reads another's). ``unread_rows`` False: the rows no per-chip roofline reads
    are left unfilled instead of zeroed: every row of a slot no configuration has, and the
    weight row of a weightless slot (``WEIGHTLESS_SLOTS``), for a caller whose only readers are
    :func:`cost_models.deployment.chip_roofline` without ``chip_ops`` and
    ``deployment._live_activations``, which skip both (deployment.BlockedCosts). ``dtype``: the
    tables' float type; float32 casts the configurations' sizes once here and computes every
    cost in float32 (deployment.ROOFLINE_DTYPE, the pure roofline of an estimate)."""
    c = configs if np.dtype(dtype) == np.float64 else cast(InferenceConfigs, _CastConfigs(configs, dtype))
    t = _CostTable(c)
    narrow = np.any(t.ab < BYTES_PER_ELEMENT[BF16])
    if convention.elementwise_format == "16-bit" and narrow:
        # Norms and residual adds stay bf16 under 8- and 4-bit activations (CountingConvention.
        # elementwise_format): the engines quantize a GEMM's input, not the residual stream.
        t.eb = np.maximum(t.ab, float(BYTES_PER_ELEMENT[BF16]))  # (a Python float: the tables' type)
    qb, ob = attention_operand_bytes(c, t.ab, convention)
    if ob is not t.ab:  # 16-bit GEMM outputs under 8- and 4-bit activations
        t.ob = ob
        t.qb = qb
    if slots == "attention":
        _attention_kernels(t, c, convention)
        _lm_head(t, c, convention)
        others = [i for i in range(len(OPERATOR_NAMES)) if i not in ATTENTION_KERNEL_SLOTS and i != LM_HEAD]
        t.unwritten.update(others)
        t.present[others] = False
    else:
        _attention(t, c, convention, kernels=slots == "all")
        _ffn(t, c, convention)
        _moe_ffn(t, c, convention)
        _mxfp4_checkpoint(t, c)
        _mixed_checkpoint(t, c)
        if slots == "all":
            _lm_head(t, c, convention)
        else:
            t.unwritten.add(LM_HEAD)
            t.present[LM_HEAD] = False
    # (Unless ``unread_rows`` is False: 5 of 22 slots unwritten and 5 more weightless in
    # bench_estimate's draw, 3 and 10 rows a block that the blocked roofline never reads.)
    for i in t.unwritten if unread_rows else ():  # rows that start uninitialized (_CostTable), where no slot wrote
        for array in (t.flops, t.act_r, t.act_w):
            array[i] = 0.0
    for i in range(len(OPERATOR_NAMES)):  # weightless or unbuilt slots: no weight bytes
        if i not in t.weight_rows and (unread_rows or not (i in t.unwritten or i in _WEIGHTLESS_ROWS)):
            t.weight[i] = 0.0
    # Zero the absent slots. Left alone: a slot present in every configuration (x * 1 == x), one
    # never written (already zero), the KV rows of slots without KV traffic (always zero).
    absent = [i for i in range(len(OPERATOR_NAMES)) if i not in t.unwritten and not t.present[i].all()]
    kv_slots = {OP[name] for name in (*KV_READ_SLOTS, *KV_WRITE_SLOTS)}
    # (By the row as 0.0 and 1.0: x * 0.0 and x * 1.0, as x * False and x * True are, without
    # casting the booleans for each array.)
    for i in absent:
        for residual in t.residual_rows.values():  # (its rows change below)
            residual.discard(i)
        present = t.present[i].astype(t.dtype)
        for array in (t.flops, t.weight, t.act_r, t.act_w):
            if array is t.weight and i not in t.weight_rows and not unread_rows:
                continue  # (unfilled: left so)
            array[i] *= present
        for kv in (t.kv_r, t.kv_w) if i in kv_slots else ():
            if i in kv.rows:  # (a row not kept is zero: 0 * 0.0 and 0 * 1.0 are 0)
                kv[i] *= present
    kv_dtype = _where(c.decoder, c.kv_dtype, c.act_dtype)
    # (From the configurations as given: a mixed checkpoint's whole 16-bit classes are decided
    # on their float64 shares, as every other path decides them.)
    compute_dtype = _compute_dtypes(configs, kv_dtype, convention)
    # repeats: layers in every row but these (kept as rows, _RepeatRows, built whole when read).
    rows: dict[int, np.ndarray | float] = {}
    if np.any(c.moe_layers):
        dense_layers = c.layers - c.moe_layers
        rows.update({OP[name]: dense_layers for name in DENSE_FFN})
        rows.update({OP[name]: c.moe_layers for name in MOE_FFN})
    else:  # a dense model's MoE slots are absent: no executions
        rows.update({OP[name]: 0.0 for name in MOE_FFN})
    rows[LM_HEAD] = 1.0
    repeats = cast(np.ndarray, _RepeatRows(t.flops.shape, c.layers, rows))
    # (The KV tables and repeats go in as rows: OperatorCosts builds the whole arrays when read.)
    kv_r, kv_w = cast(np.ndarray, t.kv_r), cast(np.ndarray, t.kv_w)
    ops = OperatorCosts(t.flops, t.weight, t.act_r, t.act_w, kv_r, kv_w, compute_dtype, t.present, repeats)
    # Slots copied from another and not written since (their cost and KV rows equal that slot's,
    # KV rows kept alike: _KvRows.copy_row), left as they are or zeroed alike above (the same
    # presence: both absent-multiplied by the same row), of the same compute format: every row
    # equal (OperatorCosts.same_rows; chip_roofline copies such a slot's per-chip rows).
    ops.__dict__["_same_rows"] = {
        i: j
        for i, j in t.same_rows.items()
        if i not in t.unwritten
        and j not in t.unwritten
        and np.array_equal(t.present[i], t.present[j])
        and np.array_equal(compute_dtype[i], compute_dtype[j])
    }
    # Activation rows still copies of the residual stream's bytes (x * 1.0 in a slot present
    # everywhere, which is left alone above, would leave them so; an absent slot's are dropped).
    ops.__dict__["_residual_rows"] = {
        name: frozenset(rows - t.unwritten)
        for name, rows in (("act_read_bytes", t.residual_rows["act_r"]), ("act_write_bytes", t.residual_rows["act_w"]))
    }
    return ops


def attention_operand_bytes(
    c: InferenceConfigs, act_bytes: np.ndarray, convention: CountingConvention = DEFAULT
) -> tuple[np.ndarray, np.ndarray]:
    """Bytes of an element of attention's query (and scores, activation K/V) and of its output,
    under activations of ``act_bytes`` bytes an element: both ``act_bytes`` itself (the same
    array) unless :func:`gemm_output_bytes` widens the outputs to 16 bits; then the output is
    16-bit and the query is read in the attention's compute format, the wider of the
    activations' and the KV cache's (_compute_dtypes' act_x_kv): bf16 over a bf16 cache; fp8
    only over an fp8 cache, where vLLM's FlashAttention 3 path and SGLang quantize the query for
    an fp8 kernel (calibrated_times.FP8_QUERY_PREFILL_ENGINES). Encoders: the activations'
    format, their K and V being activations. What :func:`operator_costs` counts, and the
    calibrated MLA decode kernel streams (calibrated_times.fused_attention_time_s)."""
    ob = gemm_output_bytes(act_bytes, convention)
    if ob is act_bytes:
        return act_bytes, act_bytes
    attention_dtype = lookup(COMBINE, c.act_dtype, _where(c.decoder, c.kv_dtype, c.act_dtype))
    bytes_per_element = BYTES_PER_ELEMENT.astype(act_bytes.dtype, copy=False)  # (act_bytes' type)
    qb = np.where(act_bytes < BYTES_PER_ELEMENT[BF16], lookup(bytes_per_element, attention_dtype), act_bytes)
    return qb, ob


def _compute_dtypes(c: InferenceConfigs, kv_dtype: np.ndarray, convention: CountingConvention) -> np.ndarray:
    """Dtype code whose peak each operator runs at."""
    # Codes are 0..4: int8 holds them in an eighth of int64's memory (one array per slot and
    # configuration, of the estimate's largest).
    dtypes = np.empty((len(OPERATOR_NAMES), len(c)), dtype=np.int8)
    if convention.peak_selection == "all_operands_low_bit":
        # LLM-Viewer: int8 peak for everything only when no operand is wider than 8 bits.
        low = (
            (lookup(BYTES_PER_ELEMENT, c.weight_dtype) <= 1)
            & (lookup(BYTES_PER_ELEMENT, c.act_dtype) <= 1)
            & (BYTES_PER_ELEMENT[kv_dtype] <= 1)
        )
        dtypes[:] = np.where(low, INT8, 0)
        return dtypes
    # COMBINE[a, b]'s codes (dtypes.lookup: filled where the rows hold one code, not gathered),
    # cast to int8 once, the rows' own type, so each row below is a copy, not a cast (codes 0-4).
    weight_x_act = lookup(COMBINE, c.weight_dtype, c.act_dtype).astype(np.int8)
    act_x_kv = lookup(COMBINE, c.act_dtype, kv_dtype).astype(np.int8)
    dtypes[:] = c.act_dtype  # elementwise operators
    for name in (*PROJECTIONS, "router", *EXPERT_PROJECTIONS, "lm_head"):
        dtypes[OP[name]] = weight_x_act
    if convention.lm_head_format == "16-bit":  # bf16 weights: the bf16 peak, whatever the activations
        dtypes[LM_HEAD] = BF16
    mxfp4 = mxfp4_checkpoint_rows(c)
    if mxfp4.any():  # gpt-oss's bf16 attention and router (_mxfp4_checkpoint): the bf16 peak
        for name in MXFP4_UNCONVERTED:
            dtypes[OP[name]] = np.where(mxfp4, BF16, dtypes[OP[name]])
    for name, rows in sixteen_bit_gemm_rows(c).items():  # a mixed checkpoint's whole 16-bit classes
        dtypes[OP[name]] = np.where(rows, BF16, dtypes[OP[name]])
    for name in ("qk_matmul", "sv_matmul", "fused_attention"):
        dtypes[OP[name]] = act_x_kv
    return dtypes


def sixteen_bit_gemm_rows(c: InferenceConfigs) -> dict[str, np.ndarray]:
    """Per weight-matmul slot, the configurations whose every block runs it as a bf16 GEMM (its
    compute at the bf16 peak): a mixed-format checkpoint served as stored whose exclusion list
    keeps that module class 16-bit in all blocks (the 405B FP8's and Kimi K2 Thinking's attention).
    A class 16-bit in part of the blocks (the 405B's 2 of 126 MLPs) keeps the format's peak, its
    bytes and calibrated time blended (_mixed_checkpoint, calibrated_times._time_16bit_shares)."""
    mixed = mixed_checkpoint_rows(c)
    if not mixed.any():
        return {}
    rows = {}
    for names, share in (
        (ATTENTION_PROJECTIONS, c.attention_16bit_share),
        (DENSE_FFN_PROJECTIONS, c.dense_ffn_16bit_share),
    ):
        whole = mixed & (share == 1.0)
        if whole.any():
            rows.update(dict.fromkeys(names, whole))
    return rows
