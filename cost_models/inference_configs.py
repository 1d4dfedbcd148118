"""A batch of inference configurations as a struct of arrays.

Every field is a 1-D numpy array of the same length n, one entry per configuration (one
configuration is a batch of one). The cost model's functions take an :class:`InferenceConfigs` and
return arrays of length n, so scoring a whole discrete design space is one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from cost_models.dtypes import BF16, BYTES_PER_ELEMENT, DTYPE_NAMES, lookup
from cost_models.errors import InvalidInputError
from cost_models.model_counts import kv_bytes_per_token
from cost_models.models import ModelSpec

PREFILL, DECODE = 0, 1
#: Largest accepted size of any dimension, batch or length: beyond this, products of sizes leave
#: the range where float64 counts are exact and results stop meaning anything.
MAX_SIZE = 2**31
PHASES = {"prefill": PREFILL, "decode": DECODE}


@dataclass(frozen=True)
class InferenceConfigs:
    """Struct of arrays. Sizes in elements, float64 so products of large sizes cannot overflow."""

    # model shapes
    layers: np.ndarray
    d_model: np.ndarray
    heads: np.ndarray
    kv_heads: np.ndarray
    d_head: np.ndarray
    d_ff: np.ndarray
    vocab: np.ndarray
    gated_ffn: np.ndarray  # bool: swiglu (gate, up, down) rather than gelu (up, down)
    parallel_block: np.ndarray  # bool: attention and FFN read the same normed input
    decoder: np.ndarray  # bool: decoders keep a KV cache, encoders do not
    tie_embeddings: np.ndarray  # bool
    # bool: the checkpoint holds only the routed experts in MXFP4, the rest 16-bit (gpt-oss): an
    # fp4 deployment of it reads its attention and router in bf16 (operators._mxfp4_checkpoint)
    mxfp4_experts: np.ndarray
    # bool: the model's fp8 checkpoint stores 128 x 128 block scales (ModelSpec.fp8_block_scales): its
    # fp8 experts run the block-scaled fused-MoE kernel, others the per-tensor one
    fp8_block_scales: np.ndarray
    # A checkpoint that keeps some block modules 16-bit or stores group scales (ModelSpec's
    # checkpoint_16bit_* and checkpoint_scale_bytes_per_weight), read where the weights are served
    # in its format (``checkpoint_dtype``, a dtype code; -1: a 16-bit checkpoint): the shares of
    # the attention projections, the dense FFN blocks, the shared experts and of every block
    # weight but the routed experts kept 16-bit (ModelSpec.checkpoint_16bit_shares), and the scale
    # bytes per quantized weight (operators._mixed_checkpoint, partitioning.mixed_checkpoint_extra_bytes)
    checkpoint_dtype: np.ndarray
    attention_16bit_share: np.ndarray
    dense_ffn_16bit_share: np.ndarray
    shared_expert_16bit_share: np.ndarray
    block_16bit_share: np.ndarray
    checkpoint_scale_bytes: np.ndarray
    # mixture of experts (all 0 for a dense model)
    moe_layers: np.ndarray  # blocks with routed experts (the others have the dense FFN of width d_ff)
    experts: np.ndarray  # routed experts per MoE block
    experts_per_token: np.ndarray  # top-k
    expert_d_ff: np.ndarray  # one expert's hidden width
    shared_d_ff: np.ndarray  # hidden width of all shared experts together
    # multi-head latent attention (all 0 when not MLA; d_head is then qk_nope_head_dim)
    kv_lora_rank: np.ndarray  # latent width cached per token (once for all heads)
    q_lora_rank: np.ndarray  # query compression rank (0: full-rank query)
    qk_rope_head_dim: np.ndarray  # rotary query/key width per head (its key part cached once)
    v_head_dim: np.ndarray  # value width per head (d_head when the model's field is 0)
    # sliding-window attention (0 when none)
    sliding_window: np.ndarray  # tokens a windowed block attends to
    sliding_window_layers: np.ndarray  # blocks that use the window
    # workload
    phase: np.ndarray  # int: PREFILL or DECODE
    batch: np.ndarray  # sequences processed together
    seq_len: np.ndarray  # prefill: prompt tokens; decode: KV-cache entries the new token attends to
    # numeric formats (dtype codes, cost_models.dtypes)
    weight_dtype: np.ndarray
    act_dtype: np.ndarray
    kv_dtype: np.ndarray
    # kernels
    flash_attention: np.ndarray  # bool: one fused attention operator, no score matrix in memory
    causal: np.ndarray  # bool: attention counts only the unmasked lower triangle in prefill

    def __len__(self) -> int:
        return int(self.layers.shape[0])

    @property
    def mla(self) -> np.ndarray:
        """Bool per configuration: multi-head latent attention (a latent cached, not K and V)."""
        return self.kv_lora_rank > 0

    def kv_bytes_per_token(self, context: np.ndarray | None = None) -> np.ndarray:
        """Cache bytes one token of one sequence keeps over every layer, at ``context`` tokens
        (windowed layers keep only the last window; None: uncapped), from the one formula in
        :func:`cost_models.model_counts.kv_bytes_per_token`. Not split over chips."""
        return kv_bytes_per_token(
            self.layers,
            self.kv_heads,
            self.d_head,
            lookup(BYTES_PER_ELEMENT, self.kv_dtype),
            self.decoder,
            kv_lora_rank=self.kv_lora_rank,
            qk_rope_head_dim=self.qk_rope_head_dim,
            sliding_window=self.sliding_window,
            sliding_window_layers=self.sliding_window_layers,
            context=context,
        )

    def mla_kwargs(self) -> dict[str, np.ndarray]:
        """The MLA keyword arguments of the parameter counts (cost_models.model_counts)."""
        return dict(
            kv_lora_rank=self.kv_lora_rank,
            q_lora_rank=self.q_lora_rank,
            qk_rope_head_dim=self.qk_rope_head_dim,
            v_head_dim=self.v_head_dim,
        )

    def at_phase(self, phase: int, seq_len: np.ndarray) -> InferenceConfigs:
        """The same configurations in another phase and context. ``seq_len`` may be fractional:
        a decode phase is scored once at its mean context."""
        n = len(self)
        return replace(
            self,
            phase=np.full(n, phase, dtype=np.int64),
            seq_len=np.broadcast_to(np.asarray(seq_len, dtype=np.float64), (n,)).copy(),
        )

    def take(self, index: np.ndarray | slice | int) -> InferenceConfigs:
        """A sub-batch (fancy indexing on every field)."""
        if isinstance(index, np.ndarray) and index.ndim == 1 and index.dtype.kind in "iu":
            # Rows by position: ndarray.take, the same rows ~1.5x faster than fancy indexing.
            return InferenceConfigs(**{f.name: getattr(self, f.name).take(index) for f in fields(self)})
        return InferenceConfigs(**{f.name: np.atleast_1d(getattr(self, f.name)[index]) for f in fields(self)})


#: The 16-bit shares of a mixed-format checkpoint, in ModelSpec.checkpoint_16bit_shares' order.
_SHARE_FIELDS = ("attention_16bit_share", "dense_ffn_16bit_share", "shared_expert_16bit_share", "block_16bit_share")

_MODEL_FIELDS = ("layers", "d_model", "heads", "kv_heads", "d_head", "d_ff", "vocab")
#: Model fields that are 0 in a dense model (ModelSpec attributes of the same names).
_MOE_FIELDS = ("moe_layers", "experts", "experts_per_token", "expert_d_ff", "shared_d_ff")
#: Attention fields that are 0 in a model without MLA or windows (ModelSpec attributes).
_ATTENTION_FIELDS = (
    "kv_lora_rank",
    "q_lora_rank",
    "qk_rope_head_dim",
    "sliding_window",
    "sliding_window_layers",
)


def make_configs(
    model: ModelSpec | Sequence[ModelSpec],
    *,
    phase: str | Sequence[str] | np.ndarray,
    batch: int | np.ndarray,
    seq_len: int | np.ndarray,
    weight_dtype: int | np.ndarray = BF16,
    act_dtype: int | np.ndarray = BF16,
    kv_dtype: int | np.ndarray = BF16,
    flash_attention: bool | np.ndarray = False,
    causal: bool | np.ndarray | None = None,
    kv_heads: int | np.ndarray | None = None,
    parallel_block: bool | np.ndarray | None = None,
    model_index: np.ndarray | None = None,
) -> InferenceConfigs:
    """Broadcast scalars and arrays into an :class:`InferenceConfigs`, validating every entry.

    ``model`` is one model, one per configuration, or (with ``model_index``) a table of models
    that ``model_index`` points into; ``kv_heads`` overrides the model's (an MHA/MQA/GQA what-if)
    and ``parallel_block`` its block (a serial/parallel what-if). ``causal`` defaults to
    ``flash_attention`` for decoders: fused kernels skip masked tiles, an unfused batched matmul
    computes the whole square score matrix.
    """
    models = [model] if isinstance(model, ModelSpec) else list(model)
    if model_index is not None:
        unique, index = models, np.asarray(model_index, dtype=np.int64)
    else:
        # A design space holds few distinct models: build one row per model, then index.
        distinct: dict[int, int] = {}
        rows = [distinct.setdefault(id(m), len(distinct)) for m in models]
        specs = {row: m for m, row in zip(models, rows, strict=True)}
        unique = [specs[row] for row in range(len(distinct))]
        index = np.array(rows, dtype=np.int64)
    tables = {
        name: _float_column(name, [getattr(m, name) for m in unique])
        for name in (*_MODEL_FIELDS, *_MOE_FIELDS, *_ATTENTION_FIELDS)
    }
    column = _ModelColumn(index, len(unique))
    model_columns = {name: column(table) for name, table in tables.items()}
    model_columns["v_head_dim"] = column(_float_column("v_head_dim", [m.v_head_dim or m.d_head for m in unique]))
    flags = {
        "gated_ffn": column(np.array([m.ffn == "swiglu" for m in unique])),
        "parallel_block": column(np.array([m.block == "parallel" for m in unique])),
        "decoder": column(np.array([m.kind == "decoder" for m in unique])),
        "tie_embeddings": column(np.array([m.tie_embeddings for m in unique])),
        "mxfp4_experts": column(np.array([m.mxfp4_experts for m in unique])),
        "fp8_block_scales": column(np.array([m.fp8_block_scales for m in unique])),
    }
    if kv_heads is not None:
        latent = np.array([m.is_mla for m in unique])[index]
        overridden = np.broadcast_to(_float_column("kv_heads", kv_heads), latent.shape) != model_columns["kv_heads"]
        if np.any(latent & overridden):
            raise InvalidInputError(
                "kv_heads",
                "an MLA model caches one latent for all heads: a KV-heads what-if changes nothing",
                "drop the kv_heads override for an MLA model",
            )
        model_columns["kv_heads"] = _float_column("kv_heads", kv_heads)
    if parallel_block is not None:
        flags["parallel_block"] = np.asarray(parallel_block, dtype=bool)
    phase_codes = _phase_codes(phase)
    flash = np.asarray(flash_attention, dtype=bool)
    columns = dict(
        **model_columns,
        **flags,
        phase=phase_codes,
        batch=_float_column("batch", batch),
        seq_len=_float_column("seq_len", seq_len),
        weight_dtype=np.asarray(weight_dtype, dtype=np.int64),
        act_dtype=np.asarray(act_dtype, dtype=np.int64),
        kv_dtype=np.asarray(kv_dtype, dtype=np.int64),
        flash_attention=flash,
    )
    names = list(columns)
    arrays = np.broadcast_arrays(*(np.atleast_1d(columns[n]) for n in names))
    columns = {n: np.ascontiguousarray(a) for n, a in zip(names, arrays, strict=True)}
    columns.update(_mixed_checkpoint_columns(unique, index, columns["batch"].shape))
    if causal is None:
        columns["causal"] = columns["flash_attention"] & columns["decoder"]
    else:
        columns["causal"] = np.broadcast_to(np.asarray(causal, dtype=bool), columns["batch"].shape).copy()
    configs = InferenceConfigs(**columns)
    validate_configs(configs, _valid_model_fields(tables, index, kv_heads is None))
    return configs


class _ModelColumn:
    """A model field's column, ``table[index]`` (one value per model, ``index`` the rows' models):
    a fill of the value where every model some row uses has the same one (the MoE and MLA fields
    of dense models, the decoder flag, ...: 11 of 24 columns in bench_estimate's draw), which is
    the gather's numbers without its pass over a random index (~0.15 against ~0.04 ms at 100,000
    rows); the gather otherwise, and wherever ``index`` is not a 1-D array of valid rows (its
    errors and wrap-around as before)."""

    def __init__(self, index: np.ndarray, models: int) -> None:
        self.index = index
        valid = index.ndim == 1 and len(index) > 0 and index.min() >= 0 and index.max() < models
        self.used = np.flatnonzero(np.bincount(index, minlength=models)) if valid else None

    def __call__(self, table: np.ndarray) -> np.ndarray:
        if self.used is not None:
            values = table.take(self.used)
            if (values == values[0]).all() and (values.dtype.kind != "f" or not np.isnan(values[0])):
                # (equal also in sign: -0.0 == +0.0 would not be the same bits)
                if values.dtype.kind != "f" or len(set(np.signbit(values).tolist())) == 1:
                    return np.full(len(self.index), values[0], dtype=table.dtype)
        return table[self.index]


def _mixed_checkpoint_columns(
    unique: Sequence[ModelSpec], index: np.ndarray, shape: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """InferenceConfigs' mixed-format checkpoint columns: gathered per configuration where some
    model has such a checkpoint, else a -1 format and zero shares (np.full / np.zeros: no
    gathers, ~3 ms fewer of every 100,000 configurations made)."""
    mixed = [m.mixed_checkpoint for m in unique]
    if not any(mixed):
        columns = {name: np.zeros(shape) for name in (*_SHARE_FIELDS, "checkpoint_scale_bytes")}
        columns["checkpoint_dtype"] = np.full(shape, -1, dtype=np.int64)
        return columns
    rows = np.broadcast_to(index, shape)
    shares = np.array([m.checkpoint_16bit_shares if one else (0.0,) * 4 for m, one in zip(unique, mixed, strict=True)])
    codes = [m.mixed_checkpoint_dtype for m in unique]
    columns = {name: shares[:, j][rows] for j, name in enumerate(_SHARE_FIELDS)}
    columns["checkpoint_dtype"] = np.array(codes, dtype=np.int64)[rows]
    scales = np.array([m.checkpoint_scale_bytes_per_weight for m in unique], dtype=np.float64)
    columns["checkpoint_scale_bytes"] = scales[rows]
    return columns


#: validate_configs' name for its check that kv_heads divides heads.
_HEADS_DIVIDE = "heads % kv_heads"


def _valid_model_fields(tables: dict[str, np.ndarray], index: np.ndarray, kv_from_models: bool) -> frozenset[str]:
    """The checks of :func:`validate_configs` on the model fields that the models some row uses
    (``index`` into the columns ``tables``) pass: every row's value of such a field is one of
    those models' (kv_heads and its divisibility only where no override replaced the models'),
    so its checks pass on every row and need not run over every row (~2 ms of ~2.7 at 100,000
    configurations). Where one fails, it is not returned and the rows' check names the first
    bad row, as before."""
    if index.ndim != 1 or len(index) == 0 or index.min() < 0:
        return frozenset()
    used = np.flatnonzero(np.bincount(index))
    checked = set()
    for name in _MODEL_FIELDS:
        if name == "kv_heads" and not kv_from_models:
            continue
        values = tables[name].take(used)
        if not (np.any(_not_positive_whole(values)) or np.any(values > MAX_SIZE)):
            checked.add(name)
    if {"heads", "kv_heads"} <= checked and not np.any(np.mod(tables["heads"][used], tables["kv_heads"][used]) != 0):
        checked.add(_HEADS_DIVIDE)
    return frozenset(checked)


def _not_positive_whole(values: np.ndarray) -> np.ndarray:
    return ~np.isfinite(values) | (values <= 0) | (values != np.floor(values))


def _phase_codes(phase: str | Sequence[str] | np.ndarray) -> np.ndarray:
    if isinstance(phase, np.ndarray) and phase.dtype.kind in "iu":
        codes = phase.astype(np.int64)
    else:
        names = [phase] if isinstance(phase, str) else list(phase)
        unknown = sorted({p for p in names if p not in PHASES})
        if unknown:
            raise InvalidInputError("phase", f"unknown phase {unknown[0]!r}", "use prefill or decode")
        codes = np.array([PHASES[p] for p in names], dtype=np.int64)
    if np.any((codes != PREFILL) & (codes != DECODE)):
        raise InvalidInputError("phase", "unknown phase code", "use 0 (prefill) or 1 (decode)")
    return codes


def _first_bad(mask: np.ndarray, values: np.ndarray) -> str:
    value = values[np.argmax(mask)].item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


def _float_column(name: str, value: object) -> np.ndarray:
    """A numeric column as float64; a number too large for a float is bad input, not a crash."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (OverflowError, TypeError, ValueError):
        raise InvalidInputError(
            name, f"must be a whole number between 1 and {MAX_SIZE}", f"pass a smaller integer for {name}"
        ) from None


def validate_configs(configs: InferenceConfigs, checked: frozenset[str] = frozenset()) -> None:
    """Raise :class:`InvalidInputError` naming the first bad field; check every entry at once.
    ``checked``: fields (and ``_HEADS_DIVIDE``) known to pass (:func:`_valid_model_fields`)."""
    for name in ("batch", "seq_len", *_MODEL_FIELDS):
        if name in checked:
            continue
        values = getattr(configs, name)
        bad = _not_positive_whole(values)
        if np.any(bad):
            raise InvalidInputError(
                name,
                f"must be a positive whole number, got {_first_bad(bad, values)}",
                f"pass an integer >= 1 for {name}",
            )
        bad = values > MAX_SIZE
        if np.any(bad):
            raise InvalidInputError(name, f"{_first_bad(bad, values)} is too large", f"pass at most {MAX_SIZE}")
    indivisible = None if _HEADS_DIVIDE in checked else np.mod(configs.heads, configs.kv_heads) != 0
    if indivisible is not None and np.any(indivisible):
        raise InvalidInputError(
            "kv_heads",
            f"heads ({_first_bad(indivisible, configs.heads)}) is not divisible by kv_heads "
            f"({_first_bad(indivisible, configs.kv_heads)})",
            "use a kv_heads that divides heads (1 for MQA, heads for MHA)",
        )
    for name in ("weight_dtype", "act_dtype", "kv_dtype"):
        values = getattr(configs, name)
        bad = (values < 0) | (values >= len(DTYPE_NAMES))
        if np.any(bad):
            raise InvalidInputError(
                name, f"unknown dtype code {_first_bad(bad, values)}", "use a code from cost_models.dtypes"
            )
    bad = (configs.phase == DECODE) & ~configs.decoder
    if np.any(bad):
        raise InvalidInputError(
            "phase", "an encoder has no decode phase (no KV cache)", "use --phase prefill for encoder models"
        )
