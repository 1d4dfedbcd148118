"""Meshes of chips and what a collective costs on them.

A deployment runs on a logical mesh X x Y x Z of chips (Pope et al. 2022, section 3.1). A
collective over some of the mesh axes ("x", "yz", "xyz", ...) moves a per-chip amount of data D
and costs a latency term plus D / bandwidth x (K-1)/K, K being the chips in the group (Pope et al.
appendix A; an all-reduce is a reduce-scatter plus an all-gather). Two networks implement one
small interface: a torus of point-to-point links (TPU ICI) and switched domains joined by a
slower network (GPU NVLink within a node, InfiniBand between nodes).

Vectorized: meshes are (n, 3) arrays, bytes are (n,) arrays, one entry per configuration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Generic, Literal, TypeVar

import numpy as np

from cost_models.distinct import MIN_ROWS, word_classes
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, SwitchedInterconnect, TorusInterconnect

Collective = Literal["all_gather", "reduce_scatter", "all_reduce", "all_to_all"]
AXIS_INDEX = {"x": 0, "y": 1, "z": 2}


def group_size(mesh: np.ndarray, axes: str) -> np.ndarray:
    """Chips in one collective group over ``axes``: the product of those axis lengths. Over
    "xyz", every chip of the mesh: ``np.prod(mesh, axis=-1)``'s numbers (axis lengths are whole,
    so every product is exact), about 4x faster than its reduction over a length-3 axis (2.1
    against 0.5 ms at 100,000 meshes on the benchmark's Xeon)."""
    mesh = np.atleast_2d(mesh)
    if not axes:
        return np.ones(mesh.shape[0])
    # 1.0 x the first length is that length: the product starts from its copy (one pass less
    # than from ones), the other lengths multiplied in place in the same order.
    size = mesh[:, AXIS_INDEX[axes[0]]].astype(np.float64)
    for axis in axes[1:]:
        size *= mesh[:, AXIS_INDEX[axis]]
    return size


class Network(ABC):
    """How chips of one kind talk: which meshes exist and what a collective costs."""

    #: Whether a weight-stationary block runs its collectives as Pope et al.'s TPU program does
    #: (cost_models.partitioning.torus_layer_collectives: rings looped inside their matmuls, the
    #: rest on the critical path); otherwise the block's collectives hide behind its work whole.
    collective_einsums: bool = False
    #: Whether the block's collectives run as the GPU serving engines run tensor parallelism
    #: (vLLM, SGLang, TensorRT-LLM: Megatron TP): the 1D weight-stationary layout's activations
    #: all-reduced once per weight set (cost_models.partitioning.ffn_collectives), and every
    #: collective on the block's critical path (cost_models.deployment.operator_times: the next
    #: matmul waits for the sum; no engine loops a decode step's collective inside its matmuls).
    engine_collectives: bool = False

    @abstractmethod
    def legal_meshes(self, chips: int) -> list[tuple[int, int, int]]:
        """Every mesh (X, Y, Z) the hardware can form with exactly ``chips`` chips."""

    @abstractmethod
    def collective_time_s(
        self, kind: Collective, bytes_per_chip: np.ndarray, mesh: np.ndarray, axes: str
    ) -> np.ndarray:
        """Seconds for one collective over ``axes`` moving ``bytes_per_chip`` (D) per chip; a
        collective of one chip, or of no bytes (one that a configuration does not run), is free."""

    def time_key(self, kind: Collective) -> str:
        """Kinds with the same key cost the same for the same bytes, mesh and axes (callers may
        time such collectives once); by default every kind is its own."""
        return kind

    def collective_steps(self, kind: Collective, mesh: np.ndarray, axes: str) -> np.ndarray:
        """Synchronized steps one collective over ``axes`` takes, (n,): what a fixed latency per
        step (a calibration profile's ``collective_step_s``) is charged on. By default one ring
        over the whole group: K - 1 steps (an all-reduce, a reduce-scatter then an all-gather:
        twice that)."""
        steps = group_size(np.atleast_2d(mesh), axes) - 1.0
        return 2.0 * steps if kind == "all_reduce" else steps

    def meshes_of_rows(self, mesh: np.ndarray, positions: list[np.ndarray]) -> list[np.ndarray]:
        """``mesh.take(rows, axis=0)`` (the meshes of some configurations of a call: a layout's)
        for each array of positions in ``positions``. A network may remember them until
        :meth:`forget_meshes_of_rows` (the torus finds their distinct meshes from ``mesh``'s,
        once, not once per array): the caller must not change them in place."""
        return [mesh.take(rows, axis=0) for rows in positions]

    def forget_meshes_of_rows(self) -> None:
        """Drop what :meth:`meshes_of_rows` remembered (by default nothing)."""
        return None

    def eager(self) -> Network:
        """This network as a pass run eager, without a CUDA graph, times its collectives: itself
        unless the engine's collectives were measured both ways (calibrated_times.CalibratedNetwork)."""
        return self

    def know_mesh_classes(self, mesh: np.ndarray, classes: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Take ``classes`` as :func:`mesh_classes` of ``mesh`` (a caller that found them with
        other work: deployment.mesh_classes_of_shapes), for :meth:`meshes_of_rows` on an equal
        mesh; a network that does not use them ignores them (the default)."""
        return None

    def check_mesh(self, mesh: tuple[int, ...]) -> None:
        """Raise InvalidInputError unless ``mesh`` is one the hardware can form (three axes)."""
        chips = int(np.prod(mesh))
        legal = self.legal_meshes(chips)
        if tuple(mesh) not in legal:
            # No mesh at all of this many chips (80 TPU v4 chips, 12 GPUs of 8-GPU nodes): the
            # fix is another chip count, not one of an empty list of meshes.
            fix = (
                f"use one of {', '.join('x'.join(map(str, m)) for m in legal[:8])}"
                if legal
                else f"this hardware forms no mesh of {chips} chips; use a chip count it allows (tuner hardware)"
            )
            raise InvalidInputError("mesh", f"{'x'.join(map(str, mesh))} is not a legal mesh of this hardware", fix)


@cache
def _factorizations(chips: int) -> list[tuple[int, int, int]]:
    """Every (X, Y, Z) with X * Y * Z == chips, from the divisors (O(sqrt(chips)), not O(chips))."""
    small = [d for d in range(1, int(chips**0.5) + 1) if chips % d == 0]
    divisors = sorted(set(small + [chips // d for d in small]))
    return [(x, y, chips // (x * y)) for x in divisors for y in divisors if (chips // x) % y == 0]


#: Distinct meshes at most this share of a call for a network to compute its mesh-only terms
#: once per distinct mesh (bench_estimate's draw: a few dozen legal meshes in 100,000 rows).
DISTINCT_MESH_SHARE = 0.5
#: Bits of each axis length in :func:`mesh_classes`' key: three whole lengths under 2^17 packed
#: into 51 bits, exact in a float64's 53-bit significand.
_MESH_KEY_BITS = 17


_Value = TypeVar("_Value")


class LastMeshCache(Generic[_Value]):
    """Values built from one mesh array (n, 3), by key, for the last mesh seen: a layer's
    collectives share one mesh and a few axis sets, so what depends only on them is built once,
    not per collective. The mesh is compared by value and kept as a copy (a caller may change its
    array in place), and ``build`` gets that copy."""

    def __init__(self) -> None:
        self._mesh: np.ndarray | None = None
        self._built: dict[str, _Value] = {}

    def get(self, mesh: np.ndarray, key: str, build: Callable[[np.ndarray], _Value]) -> _Value:
        seen = self._mesh
        if seen is None or seen.shape != mesh.shape or not np.array_equal(seen, mesh):
            seen = self._mesh = mesh.copy()
            self._built = {}
        value = self._built.get(key)
        if value is None:
            value = self._built[key] = build(seen)
        return value


def mesh_classes(mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(first, inverse) of the distinct rows of ``mesh`` (n, 3): one row of each distinct mesh
    and each row's position among them; None (evaluate every row) for calls under
    distinct.MIN_ROWS rows, where an axis length is not a whole number in [1, 2^17), or where
    more than DISTINCT_MESH_SHARE of the rows are distinct. Each row's three lengths are packed
    into one exact key (x 2^34 + y 2^17 + z: whole numbers, so equal keys are equal rows) and
    bucketed (distinct.word_classes), without a sort."""
    n = mesh.shape[0]
    if n < MIN_ROWS or mesh.dtype != np.float64 or mesh.ndim != 2 or mesh.shape[1] != 3:
        return None
    # (NaN fails both comparisons; so does -0.0 the first.)
    if not (mesh.min() >= 1.0 and mesh.max() < 2.0**_MESH_KEY_BITS):
        return None
    if not np.array_equal(np.floor(mesh), mesh):
        return None
    key = np.multiply(mesh[:, 0], 2.0 ** (2 * _MESH_KEY_BITS))
    key += mesh[:, 1] * 2.0**_MESH_KEY_BITS
    key += mesh[:, 2]
    classes = word_classes(key.view(np.uint64))
    if classes is None or len(classes[0]) > DISTINCT_MESH_SHARE * n:
        return None
    return classes


def _torus_links(
    spec: TorusInterconnect, efficiency: float, mesh: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per axis of each mesh (n, 3): the bandwidth each chip sends at, ring steps, and the
    all-to-all hop factor."""
    full = (mesh == 1) | (np.mod(mesh, spec.wraparound_min_axis) == 0)
    wrap = np.all(full, axis=-1, keepdims=True)
    links = np.where(mesh > 1, np.where(wrap & (mesh > 2), 2.0, 1.0), 0.0)
    bandwidth = links * spec.link_bandwidth_bytes_per_s * efficiency
    # A ring step per neighbour along each axis (bidirectional rings halve the steps).
    steps = np.where(mesh > 1, np.where(wrap, mesh / 2.0, mesh - 1.0), 0.0)
    # All-to-all is bisection-limited: on a ring of K each byte travels ~K/4 hops (K/2 on a
    # line), against ~1 for an all-gather's pipelined ring.
    hops = np.maximum(np.where(wrap, mesh / 4.0, mesh / 2.0), 1.0)
    return bandwidth, steps, hops


@dataclass(frozen=True)
class _TorusAxes:
    """The terms of :meth:`TorusNetwork.collective_time_s` over some axes of n meshes that depend
    on nothing else, (n,) each."""

    bandwidth: np.ndarray  # the axes' link bandwidths, summed
    latency_s: np.ndarray  # ring steps x the hop latency
    fraction: np.ndarray  # (k - 1) / k (an all-to-all's: times the longest axis' hops)
    several: np.ndarray  # k > 1: a group of one chip is free
    every_link: bool  # bandwidth > 0 in every row
    every_several: bool  # k > 1 in every row

    def take(self, rows: np.ndarray) -> _TorusAxes:
        """The terms of the meshes ``rows`` (positions)."""
        return replace(
            self,
            bandwidth=self.bandwidth.take(rows),
            latency_s=self.latency_s.take(rows),
            fraction=self.fraction.take(rows),
            several=self.several.take(rows),
        )


def _torus_axes(
    spec: TorusInterconnect, efficiency: float, mesh: np.ndarray, axes: str, all_to_all: bool
) -> _TorusAxes:
    """:class:`_TorusAxes` of ``mesh`` over ``axes``: the expressions collective_time_s used
    inline, in the same order (the same numbers)."""
    axis_bw, axis_steps, axis_hops = _torus_links(spec, efficiency, mesh)
    columns = [AXIS_INDEX[a] for a in axes]
    # Sums from zero arrays (0 + x is x, as from the int 0 before): arrays even over no axes.
    bandwidth = sum((axis_bw[:, i] for i in columns), start=np.zeros(mesh.shape[0]))
    steps = sum((axis_steps[:, i] for i in columns), start=np.zeros(mesh.shape[0]))
    k = group_size(mesh, axes)
    fraction = (k - 1.0) / k
    if all_to_all:
        fraction = fraction * np.max(axis_hops[:, columns], axis=-1)
    several = k > 1
    return _TorusAxes(
        bandwidth=bandwidth,
        latency_s=steps * spec.hop_latency_s,
        fraction=fraction,
        several=several,
        every_link=bool(np.all(bandwidth > 0)),
        every_several=bool(np.all(several)),
    )


class _SubMeshes:
    """Meshes made by :meth:`TorusNetwork.meshes_of_rows` from one mesh of a call: its distinct
    meshes, each sub-mesh (by id, with the array itself) and the positions of its rows among
    those distinct meshes, the mesh-only terms of the distinct meshes by (axes, all-to-all), and
    those terms gathered to the rows of the last sub-mesh asked for."""

    def __init__(self, distinct: np.ndarray, rows: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
        self.distinct = distinct
        self.rows = rows
        self.distinct_terms: dict[tuple[str, bool], _TorusAxes] = {}
        self.last: np.ndarray | None = None
        self.gathered: dict[tuple[str, bool], _TorusAxes] = {}

    def terms(
        self, spec: TorusInterconnect, efficiency: float, mesh: np.ndarray, axes: str, all_to_all: bool
    ) -> _TorusAxes | None:
        """The terms of ``mesh`` over ``axes``, None where it is not one of these sub-meshes."""
        entry = self.rows.get(id(mesh))
        if entry is None or entry[0] is not mesh:
            return None
        if self.last is not mesh:
            self.last, self.gathered = mesh, {}
        key = (axes, all_to_all)
        terms = self.gathered.get(key)
        if terms is None:
            once = self.distinct_terms.get(key)
            if once is None:
                once = self.distinct_terms[key] = _torus_axes(spec, efficiency, self.distinct, axes, all_to_all)
            # (The flags every_link and every_several are the distinct meshes' of the whole
            # call: where one fails for a mesh this sub-mesh lacks, collective_time_s takes its
            # general path, whose numbers are the same.)
            terms = self.gathered[key] = once.take(entry[1])
        return terms


class TorusNetwork(Network):
    """TPU inter-chip interconnect: a 2D or 3D torus of links, the same bandwidth on each.

    An axis of length K has a ring with wraparound links when the slice is made of full blocks
    (every axis longer than 1 a multiple of ``wraparound_min_axis``: v4's 4x4x4 cubes); then each chip sends on
    two links of that axis, otherwise on one (a line's end chip has one neighbour). A collective
    over several axes uses all their links at once, so their bandwidths add.
    """

    collective_einsums = True

    def __init__(self, spec: TorusInterconnect, network_efficiency: float = 1.0) -> None:
        self.spec = spec
        self.efficiency = network_efficiency
        #: The last mesh seen by :meth:`collective_time_s` (a copy), its distinct rows (and the
        #: inverse that gathers them back, None where every row is taken), and the axes' terms
        #: (:class:`_TorusAxes`) computed so far for it, by (axes, all-to-all).
        self._axes_cache: tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[tuple[str, bool], _TorusAxes]] | None
        self._axes_cache = None
        #: The sub-meshes of the last :meth:`meshes_of_rows` call (None: none, or their mesh's
        #: distinct meshes were too many to find them there).
        self._sub_meshes: _SubMeshes | None = None
        self._mesh_classes: LastMeshCache[tuple[np.ndarray, np.ndarray] | None] = LastMeshCache()

    def legal_meshes(self, chips: int) -> list[tuple[int, int, int]]:
        return _legal_torus_meshes(chips, self.spec.dims, self.spec.max_chips)

    def meshes_of_rows(self, mesh: np.ndarray, positions: list[np.ndarray]) -> list[np.ndarray]:
        # The distinct meshes of the call's mesh, found once (mesh_classes), and each sub-mesh's
        # rows among them: _axes_terms then neither compares nor classifies each layout's
        # sub-mesh (bench_estimate's tpu-v4 draw: 5 layouts a phase). Its terms are elementwise
        # over meshes, so each row's numbers are those of its sub-mesh classified alone.
        subs = super().meshes_of_rows(mesh, positions)
        # (The classes of the last such mesh are kept: an estimate's phases share its mesh.)
        classes = self._mesh_classes.get(mesh, "classes", mesh_classes) if mesh.ndim == 2 and positions else None
        if classes is None:
            self._sub_meshes = None
            return subs
        first, inverse = classes
        self._sub_meshes = _SubMeshes(
            mesh.take(first, axis=0),
            {id(sub): (sub, inverse.take(rows)) for sub, rows in zip(subs, positions, strict=True)},
        )
        return subs

    def forget_meshes_of_rows(self) -> None:
        self._sub_meshes = None

    def know_mesh_classes(self, mesh: np.ndarray, classes: tuple[np.ndarray, np.ndarray] | None) -> None:
        self._mesh_classes.get(mesh, "classes", lambda seen: classes)

    def _axes_terms(self, mesh: np.ndarray, axes: str, all_to_all: bool) -> _TorusAxes:
        """The mesh-only terms of :meth:`collective_time_s` over ``axes`` (:class:`_TorusAxes`),
        (n,) each: computed on the mesh's distinct rows (a call's meshes are a few legal ones) and
        gathered to every row, cached per (axes, all-to-all) for the last mesh seen (compared by
        value: a layer's collectives share one mesh and a few axis sets). Every term is
        elementwise over meshes, so each row's numbers are those of the whole mesh. A sub-mesh
        of :meth:`meshes_of_rows` (the same array) takes its terms from there."""
        subs = self._sub_meshes
        if subs is not None:
            terms = subs.terms(self.spec, self.efficiency, mesh, axes, all_to_all)
            if terms is not None:
                return terms
        cached = self._axes_cache
        if cached is None or cached[0].shape != mesh.shape or not np.array_equal(cached[0], mesh):
            rows = mesh_classes(mesh)
            seen = mesh.copy()  # (the terms of axes asked later are computed from this copy)
            if rows is None:
                cached = self._axes_cache = (seen, seen, None, {})
            else:
                first, inverse = rows
                cached = self._axes_cache = (seen, seen.take(first, axis=0), inverse, {})
        terms = cached[3].get((axes, all_to_all))
        if terms is None:
            terms = _torus_axes(self.spec, self.efficiency, cached[1], axes, all_to_all)
            if cached[2] is not None:
                terms = terms.take(cached[2])
            cached[3][(axes, all_to_all)] = terms
        return terms

    def time_key(self, kind: Collective) -> str:
        # An all-gather and a reduce-scatter run the same ring steps: one formula.
        return "all_gather" if kind == "reduce_scatter" else kind

    def collective_steps(self, kind, mesh, axes):
        # One ring per axis, the axes one after another, each of K_a - 1 steps: how Pope et al.'s
        # code runs them on TPU v4 (google-research scaling_transformer_inference_efficiency,
        # layers/two_d_parallel_xmap.py: the residual is all-gathered over 'y', then over 'z';
        # each collective matmul loops over its axis). A step waits for its neighbour's data, so
        # its fixed cost is paid whatever the bytes; the bandwidth term's pipelined rings
        # (``_torus_links``) are another matter.
        mesh = np.atleast_2d(mesh)
        steps = np.zeros(mesh.shape[0])
        for axis in axes:
            steps = steps + np.maximum(mesh[:, AXIS_INDEX[axis]] - 1.0, 0.0)
        return 2.0 * steps if kind == "all_reduce" else steps

    def collective_time_s(self, kind, bytes_per_chip, mesh, axes):
        # factor x (steps x hop latency + D fraction / bandwidth (0 where no link)), where the
        # group has more than one chip and D > 0, else 0; the mesh-only terms from _axes_terms.
        g = self._axes_terms(np.atleast_2d(mesh), axes, kind == "all_to_all")
        data = np.multiply(bytes_per_chip, g.fraction)
        if g.every_link:  # np.divide's where=bandwidth > 0 true everywhere: a plain division
            data /= g.bandwidth
        else:
            data = np.divide(data, g.bandwidth, out=np.zeros_like(g.fraction), where=g.bandwidth > 0)
        time = np.add(g.latency_s, data, out=data)
        if kind == "all_reduce":  # (1.0 x t is t: the factor's pass only where it is 2)
            time *= 2.0
        moves = np.greater(bytes_per_chip, 0)
        if not g.every_several:
            moves &= g.several
        if moves.shape != time.shape:
            return np.where(moves, time, 0.0)
        # np.where(moves, time, 0.0)'s numbers in this call's own temporary: itself where every
        # row moves bytes (most calls), else zeroed by position (the all-to-alls of
        # batch-sharded attention move nothing in a random half of the rows, where np.where
        # takes ~2.5x as long: SwitchedNetwork.collective_time_of_groups_s).
        if not moves.all():
            time[np.flatnonzero(~moves)] = 0.0
        return time


@cache
def _legal_torus_meshes(chips: int, dims: int, max_chips: int) -> list[tuple[int, int, int]]:
    """Cloud TPU slice rule: each physical axis 1, 2 or a multiple of 4; a 3D chip's only flat
    slices are one chip and 2x2x1; a 2D chip's slices have one axis of length 1 (and no other
    but a single chip). Any assignment of the physical axes to the logical X, Y, Z is allowed."""
    if chips < 1 or chips > max_chips:
        return []
    # No axis longer than a full pod's side (v4: 4096 = 16^3, v5e: 256 = 16^2).
    longest = round(max_chips ** (1.0 / dims))
    legal = []
    for mesh in _factorizations(chips):
        physical = sorted(mesh)
        if physical[-1] > longest:
            continue
        if not all(a in (1, 2) or a % 4 == 0 for a in physical):
            continue
        if dims == 2 and physical[0] != 1:
            continue
        face = physical[1:] if dims == 2 else physical
        if face[0] == 1 and tuple(face) not in ((1, 1), (1, 1, 1), (1, 2, 2)):
            continue  # flat slices: one chip, or v4's smallest 2x2x1
        legal.append(mesh)
    return legal


@dataclass(frozen=True)
class SwitchedGroups:
    """A switched network's collective groups over some axes of n meshes, and the terms of
    :meth:`SwitchedNetwork.collective_time_s` that depend on nothing else, (n,) each."""

    inside: np.ndarray  # chips of one group inside a domain
    k: np.ndarray  # chips of the group
    domains_minus_one: np.ndarray  # k / inside - 1
    inside_minus_one: np.ndarray
    k_minus_inside: np.ndarray
    domain_latency_s: np.ndarray  # (inside - 1) x the domain's latency
    network_latency_s: np.ndarray  # (k / inside - 1) x the network's latency
    several: np.ndarray  # k > 1: a group of one chip is free

    def take(self, spec: SwitchedInterconnect, rows: np.ndarray) -> SwitchedGroups:
        """The groups of the meshes ``rows`` (positions) of these, on ``spec`` (theirs):
        ``inside`` and ``k`` gathered, every other term computed from them as
        :func:`switched_groups` computes it (each is elementwise over meshes: the same numbers;
        a gather of 20,000 rows costs about three of those passes: AMD EPYC VM,
        docs/benchmarks.md, round 16)."""
        return _switched_terms(spec, self.inside.take(rows), self.k.take(rows))


def _straddling(
    fits: np.ndarray, length: np.ndarray, stride: np.ndarray | float, mesh: np.ndarray, domain: float
) -> np.ndarray:
    """Chips of a group along one axis in one domain, ``fits`` = min(L, floor(domain / stride)),
    corrected where a domain's edge cuts groups: the mesh holds more than one domain, the stride
    divides the domain and the axis's span (L x stride consecutive chips) neither divides the
    domain nor is a multiple of it. Spans are the blocks [gS, (g+1)S), domains the blocks
    [jD, (j+1)D); where their edges do not line up a span is cut into pieces, the smallest
    gcd(S, D) chips, gcd(S, D) / stride of them the group's (Z 6 on 8-GPU nodes, 24 chips: ranks
    6-11 are 2 on node 0 and 4 on node 1; Z 12: ranks 0-11 are 8 + 4; mesh 2x3x4's y groups of
    stride 4: ranks 0, 4 on node 0 and 8 on node 1). That piece's chips receive the rest of the
    group's data through their own ports, D (K - p) / (K p) each, which the hierarchical formula
    gives with ``inside`` = p. min(L, D / stride) put all 6 (or 8 of 12) behind NVLink: an
    all-reduce that crosses InfiniBand was charged at NVLink's 450 GB/s (TP 12 x PP 2 of PaLM
    540B on 24 H100s: each prefill all-reduce of 1.2 GB as 0.5/12 of it over the network, not
    2/12). Where the stride does not divide the domain, floor(domain / stride) already counts
    the fewest a domain holds."""
    span = length if isinstance(stride, float) and stride == 1.0 else np.multiply(length, stride)
    longest = float(span.max())
    if not 1.0 < longest < 2.0**_MESH_KEY_BITS:
        return fits  # (every group one chip, or lengths that are no chip counts: as before)
    # gcd(S, D) where a domain's edge can cut the span, else 0 (whole chip counts: the deployments
    # are validated so; a fraction would be truncated to the count below it).
    cut = _cut_pieces(int(domain), int(longest) + 1).take(span.astype(np.int64))
    if not np.count_nonzero(cut):
        return fits
    whole = np.multiply(mesh[:, 0], mesh[:, 1])
    whole *= mesh[:, 2]
    straddles = (cut > 0) & (whole > domain) & (np.mod(domain, stride) == 0)
    if not straddles.any():
        return fits
    fits = np.array(fits, dtype=np.float64)
    cut_stride = np.broadcast_to(np.asarray(stride, dtype=np.float64), fits.shape)[straddles]
    fits[straddles] = cut[straddles] / cut_stride
    return fits


@cache
def _cut_pieces(domain: int, size: int) -> np.ndarray:
    """For every span S < ``size``: gcd(S, domain) where a domain's edge can cut a span of S
    consecutive chips (S neither divides the domain nor is a multiple of it), else 0: one
    look-up a row (np.mod and np.gcd on 100,000 rows took 4 ms an axis)."""
    spans = np.arange(size, dtype=np.int64)
    pieces = np.gcd(spans, domain).astype(np.float64)
    whole = (spans == 0) | (np.mod(domain, np.maximum(spans, 1)) == 0) | (np.mod(spans, domain) == 0)
    pieces[whole] = 0.0
    return pieces


def switched_groups(
    spec: SwitchedInterconnect, mesh: np.ndarray, axes: str, k: np.ndarray | None = None
) -> SwitchedGroups:
    """The collective groups over ``axes`` of the meshes ``mesh`` (n, 3) on a switched network
    (:class:`SwitchedGroups`, uncached: :meth:`SwitchedNetwork.groups` caches it); ``k``: their
    :func:`group_size`, where the caller has it. Elementwise over the meshes, so the groups of
    some of them are those rows of the groups of all."""
    domain = float(spec.domain_size)
    n = mesh.shape[0]
    # Chips in one domain along each axis: Z is fastest (stride 1), then Y (Z), then X (YZ):
    # min(length, max(1, floor(domain / stride))), multiplied over the axes. Each step in place
    # on the axis's own temporary, operands in the same order, and the product started from the
    # first axis's factor (1.0 x it is it): the numbers of the product from ones, ~8 of ~27
    # passes over the meshes fewer (with ``k`` given, and the latency terms from the shared
    # differences: (inside - 1) once, not twice).
    inside: np.ndarray | None = None
    for axis in axes:
        length = mesh[:, AXIS_INDEX[axis]]
        if axis == "z":  # stride 1: floor(domain) is a scalar
            fits = np.minimum(length, np.maximum(1.0, np.floor(domain)))
            fits = _straddling(fits, length, 1.0, mesh, domain)
        else:
            stride = (
                np.multiply(mesh[:, 1], mesh[:, 2], dtype=np.float64)
                if axis == "x"
                else np.array(mesh[:, 2], dtype=np.float64)
            )
            fits = np.divide(domain, stride)
            np.floor(fits, out=fits)
            np.maximum(1.0, fits, out=fits)
            np.minimum(length, fits, out=fits)
            fits = _straddling(fits, length, stride, mesh, domain)
        if inside is None:
            inside = np.asarray(fits, dtype=np.float64)
        else:
            np.multiply(inside, fits, out=inside)
    if inside is None:
        inside = np.ones(n)
    if k is None:
        k = group_size(mesh, axes)
    return _switched_terms(spec, inside, k)


def _switched_terms(spec: SwitchedInterconnect, inside: np.ndarray, k: np.ndarray) -> SwitchedGroups:
    """:class:`SwitchedGroups` of groups of ``k`` chips, ``inside`` of them in one domain."""
    domains_minus_one = np.divide(k, inside)
    domains_minus_one -= 1.0
    inside_minus_one = inside - 1.0
    return SwitchedGroups(
        inside=inside,
        k=k,
        domains_minus_one=domains_minus_one,
        inside_minus_one=inside_minus_one,
        k_minus_inside=k - inside,
        domain_latency_s=inside_minus_one * spec.domain_latency_s,
        network_latency_s=domains_minus_one * spec.network_latency_s,
        several=k > 1,
    )


class SwitchedNetwork(Network):
    """GPU interconnect: domains of ``domain_size`` chips on a switch (NVLink), joined by a network.

    Chips are numbered with Z fastest, then Y, then X, and a domain holds consecutive chips, so
    tensor-parallel groups over the inner axes stay inside a node. A collective of K chips, k of
    which share a domain, runs hierarchically (as NCCL does): D (K/k - 1)/K per chip crosses the
    network, each chip through its own port, then D (k-1)/k moves over the domain fabric; the two
    stages run one after the other.
    """

    engine_collectives = True

    def __init__(self, spec: SwitchedInterconnect, network_efficiency: float = 1.0) -> None:
        self.spec = spec
        self.efficiency = network_efficiency
        self._groups_cache: LastMeshCache[SwitchedGroups] = LastMeshCache()
        #: The sub-meshes of the last :meth:`meshes_of_rows` call by id (None: none), each with
        #: its rows' positions among the distinct meshes of their mesh (None where those were
        #: not found: mesh_classes), and the groups built so far for the last of them asked
        #: for (the array itself, by axes).
        self._sub_meshes: dict[int, tuple[np.ndarray, np.ndarray | None]] | None = None
        self._sub_groups: tuple[np.ndarray, dict[str, SwitchedGroups]] | None = None
        #: The distinct meshes of the last mesh :meth:`meshes_of_rows` classified (an estimate's
        #: phases share its mesh): their first rows (the classes' own array), the meshes, and
        #: their groups by axes.
        self._mesh_classes: LastMeshCache[tuple[np.ndarray, np.ndarray] | None] = LastMeshCache()
        self._distinct: tuple[np.ndarray, np.ndarray, dict[str, SwitchedGroups]] | None = None

    def meshes_of_rows(self, mesh: np.ndarray, positions: list[np.ndarray]) -> list[np.ndarray]:
        # Remembered by identity (the caller leaves them as they are), so groups() neither
        # compares each collective's mesh with the last one by value nor copies it. Where the
        # call's meshes are a few distinct ones (mesh_classes: bench_estimate's draw, 155 in
        # 100,000 rows), each sub-mesh's groups are those of the distinct meshes, gathered to
        # its rows (switched_groups is elementwise over meshes: the same numbers), as the torus
        # does (TorusNetwork.meshes_of_rows): ~25 passes and _straddling's per axes on each
        # layout's rows become 2 gathers and 6 passes (SwitchedGroups.take).
        subs = super().meshes_of_rows(mesh, positions)
        classes = self._mesh_classes.get(mesh, "classes", mesh_classes) if mesh.ndim == 2 and positions else None
        if classes is None:
            self._sub_meshes = {id(sub): (sub, None) for sub in subs}
        else:
            first, inverse = classes
            if self._distinct is None or self._distinct[0] is not first:
                self._distinct = (first, mesh.take(first, axis=0), {})
            self._sub_meshes = {id(sub): (sub, inverse.take(rows)) for sub, rows in zip(subs, positions, strict=True)}
        self._sub_groups = None
        return subs

    def forget_meshes_of_rows(self) -> None:
        self._sub_meshes = self._sub_groups = None

    def know_mesh_classes(self, mesh: np.ndarray, classes: tuple[np.ndarray, np.ndarray] | None) -> None:
        self._mesh_classes.get(mesh, "classes", lambda seen: classes)

    def groups(self, mesh: np.ndarray, axes: str) -> SwitchedGroups:
        """The group geometry over ``axes`` (:class:`SwitchedGroups`), (n,) arrays. Cached per axes for
        the last mesh seen (compared by value, or a sub-mesh of :meth:`meshes_of_rows` by
        identity): a layer's collectives share one mesh and a few axis sets, so the terms that
        depend only on them are computed once, not per collective."""
        subs = self._sub_meshes
        entry = None if subs is None else subs.get(id(mesh))
        if entry is not None and entry[0] is mesh:
            last = self._sub_groups
            if last is None or last[0] is not mesh:
                last = self._sub_groups = (mesh, {})
            built = last[1]
            if axes not in built:
                rows = entry[1]
                if rows is None or self._distinct is None:
                    built[axes] = switched_groups(self.spec, mesh, axes)
                else:
                    _, meshes, distinct = self._distinct
                    if axes not in distinct:
                        distinct[axes] = switched_groups(self.spec, meshes, axes)
                    built[axes] = distinct[axes].take(self.spec, rows)
            return built[axes]
        return self._groups_cache.get(mesh, axes, lambda seen: switched_groups(self.spec, seen, axes))

    def legal_meshes(self, chips: int) -> list[tuple[int, int, int]]:
        domain = self.spec.domain_size
        if chips < 1 or (chips > domain and chips % domain != 0):
            return []
        return _factorizations(chips)

    def time_key(self, kind: Collective) -> str:
        # An all-gather and a reduce-scatter have one hierarchical formula (only an all-reduce's
        # doubles and an all-to-all's differs).
        return "all_gather" if kind == "reduce_scatter" else kind

    def collective_time_s(self, kind, bytes_per_chip, mesh, axes):
        return self.collective_time_of_groups_s(kind, bytes_per_chip, self.groups(np.atleast_2d(mesh), axes))

    def collective_time_of_groups_s(
        self, kind: Collective, bytes_per_chip: np.ndarray, g: SwitchedGroups
    ) -> np.ndarray:
        """:meth:`collective_time_s` of groups already known (:meth:`groups`, or some of its rows
        by ``take``, with the bytes of those rows): elementwise, so each row's seconds
        are those of the whole call."""
        spec = self.spec
        # The expressions below, left to right, as in-place passes on one temporary (the same
        # operations in the same order: the same numbers); the mesh-only factors and latency
        # terms come from the cached group geometry.
        network_bw = spec.network_bandwidth_bytes_per_s * self.efficiency
        domain_bw = spec.domain_bandwidth_bytes_per_s * self.efficiency
        if kind == "all_to_all":
            # Every chip sends a distinct D/k to each other chip: nothing can be combined on the
            # way, so the D (k - inside)/k bound for other domains crosses the network through
            # the chip's own port and D (inside-1)/k moves over the fabric (a hierarchical
            # all-gather's D (domains-1)/k would undercount the network's share by ``inside``):
            # D (k - inside) / k / network + D (inside - 1) / k / domain + latencies.
            time = np.multiply(bytes_per_chip, g.k_minus_inside)
            time /= g.k
            time /= network_bw
            fabric = np.multiply(bytes_per_chip, g.inside_minus_one)
            fabric /= g.k
        else:
            # Hierarchical: chips of equal rank in each domain exchange across the network (each
            # receives (domains-1) pieces of D/k through its own port), then each domain runs the
            # collective over the fabric on what its chips hold (D (inside-1)/inside):
            # D (domains - 1) / k / network + D (inside - 1) / inside / domain + latencies.
            time = np.multiply(bytes_per_chip, g.domains_minus_one)
            time /= g.k
            time /= network_bw
            fabric = np.multiply(bytes_per_chip, g.inside_minus_one)
            fabric /= g.inside
        fabric /= domain_bw
        time += fabric
        time += g.domain_latency_s
        time += g.network_latency_s
        if kind == "all_reduce":
            time *= 2.0
        runs = g.several & (bytes_per_chip > 0)
        if runs.shape != time.shape:
            return np.where(runs, time, 0.0)
        # np.where(runs, time, 0.0)'s numbers, zeroed by position in this call's own temporary:
        # half the rows of a call can move nothing (the all-to-alls of batch-sharded attention),
        # and on such a random mask np.where takes ~2.5x as long (108 against ~40 us at 20,000).
        time[np.flatnonzero(~runs)] = 0.0
        return time


def point_to_point_time_s(
    hardware: HardwareSpec, bytes_per_chip: np.ndarray, across_domains: np.ndarray | bool
) -> np.ndarray:
    """Seconds for each chip to send ``bytes_per_chip`` to one peer (a pipeline stage's
    activations to the next stage): one link's latency plus the bytes at one port's bandwidth,
    the inter-domain network's where ``across_domains`` (GPUs), one torus link's otherwise."""
    spec = hardware.interconnect
    efficiency = hardware.efficiency.network
    data = np.asarray(bytes_per_chip, dtype=np.float64)
    if isinstance(spec, TorusInterconnect):
        time = spec.hop_latency_s + data / (spec.link_bandwidth_bytes_per_s * efficiency)
    else:
        across = np.asarray(across_domains, dtype=bool)
        bandwidth = np.where(across, spec.network_bandwidth_bytes_per_s, spec.domain_bandwidth_bytes_per_s)
        latency = np.where(across, spec.network_latency_s, spec.domain_latency_s)
        time = latency + data / (bandwidth * efficiency)
    return np.where(data > 0, time, 0.0)


def straddling_tp_groups(hardware: HardwareSpec, tp, chips) -> np.ndarray:
    """(n,) bool: deployments whose tensor-parallel groups are cut by an NVLink domain's edge.

    Engines number a deployment's ranks in order, TP fastest (vLLM's and TensorRT-LLM's rank
    layout: TP, then PP and DP), so where TP is smaller than the domain and does not divide it and
    the deployment holds more than one domain, some TP group spans two nodes: TP 6 x PP 4 on 8-GPU
    nodes puts ranks 6-11 on nodes 0 and 1, and their every all-reduce crosses the network. The
    engine deployment's collectives are timed on its 1 x 1 x TP mesh alone, which cannot see that
    (a lone TP 6 is one node): such a deployment is refused, not charged NVLink for InfiniBand. A
    TP larger than the domain (TP 12) is its own multi-domain mesh, charged for its smallest piece
    (switched_groups). A torus (TPU slices are whole meshes) or a domain of one chip (L4, L40S:
    every group already crosses the network) never is."""
    tp = np.asarray(tp, dtype=np.float64)
    chips = np.asarray(chips, dtype=np.float64)
    spec = hardware.interconnect
    if not isinstance(spec, SwitchedInterconnect) or spec.domain_size == 1:
        return np.zeros(np.broadcast(tp, chips).shape, dtype=bool)
    domain = float(spec.domain_size)
    return (chips > domain) & (tp < domain) & (np.mod(domain, tp) != 0)


def chips_offered(hardware: HardwareSpec, tp, pp, dp, experts: int) -> np.ndarray:
    """(n,) bool: engine deployments of TP x PP x DP chips that ``hardware`` offers. The chips of
    one engine instance whose ranks talk (an MoE model's DP ranks share its expert layers: all-to-
    all or TP MoE over TP x DP) must form a legal count (:meth:`Network.legal_meshes`: whole 8-GPU
    nodes beyond one node, a torus slice); a dense model's (``experts`` 0) DP ranks are replicas
    that exchange nothing (each its own scheduler and KV cache: cost_models.serving.serve), so
    each replica's TP x PP chips being legal is enough: 3 x TP4 on 12 H100s is one node's two
    replicas and half of another node, as ``tuner recommend`` plans 3 replicas (before, a study
    dropped tp 4 x dp 3 as "no legal chip count" and estimate refused it)."""
    tp, pp, dp = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (tp, pp, dp))
    network = network_for(hardware)
    legal: dict[int, bool] = {}

    def offered(counts: np.ndarray) -> np.ndarray:
        counts = counts.astype(np.int64)
        for c in np.unique(counts):
            if int(c) not in legal:
                legal[int(c)] = bool(network.legal_meshes(int(c)))
        return np.array([legal[int(c)] for c in counts], dtype=bool).reshape(counts.shape)

    ok = offered(np.broadcast_to(tp * pp * dp, np.broadcast(tp, pp, dp).shape))
    if experts == 0:
        ok |= offered(np.broadcast_to(tp * pp, ok.shape))
    return ok


def domain_size(hardware: HardwareSpec) -> int:
    """Chips sharing one switched domain (NVLink); a torus slice is one domain of its own."""
    spec = hardware.interconnect
    return spec.domain_size if isinstance(spec, SwitchedInterconnect) else spec.max_chips


def network_for(hardware: HardwareSpec) -> Network:
    """The network implementation of a chip's interconnect."""
    spec = hardware.interconnect
    if isinstance(spec, TorusInterconnect):
        return TorusNetwork(spec, hardware.efficiency.network)
    return SwitchedNetwork(spec, hardware.efficiency.network)


def parse_mesh(text: str) -> tuple[int, int, int]:
    """'4x4x4' -> (4, 4, 4); '8x2' -> (8, 2, 1)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if not 1 <= len(parts) <= 3 or any(p < 1 for p in parts):
        raise InvalidInputError("mesh", f"cannot read {text!r}", "write it as XxYxZ, e.g. 4x4x4")
    x, y, z = parts + [1] * (3 - len(parts))
    return (x, y, z)


#: Chip counts whose legal meshes ``tuner hardware`` lists.
EXAMPLE_CHIP_COUNTS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


def chip_offer(hardware: HardwareSpec, up_to: int = 64) -> dict:
    """Which chip counts and meshes a chip allows (what ``tuner hardware`` shows): the rule in
    words, the legal counts up to ``up_to``, the largest slice (None: no limit), and the legal
    meshes of a few counts (``EXAMPLE_CHIP_COUNTS``)."""
    spec = hardware.interconnect
    network = network_for(hardware)
    if isinstance(spec, TorusInterconnect):
        largest = round(spec.max_chips ** (1.0 / spec.dims))
        rule = (
            f"{spec.dims}D torus slices up to {spec.max_chips} chips: each axis 1, 2 or a multiple of 4, "
            f"at most {largest} long"
            + ("; one axis of length 1" if spec.dims == 2 else "; flat slices only 1 and 2x2x1")
        )
        max_chips: int | None = spec.max_chips
    else:
        domain = spec.domain_size
        rule = (
            "any count, any XxYxZ of it"
            if domain == 1
            else f"1 to {domain} (one {domain}-chip domain), then multiples of {domain}; any XxYxZ of the count"
        )
        max_chips = None
    counts = [c for c in range(1, up_to + 1) if network.legal_meshes(c)]
    meshes = {
        str(c): ["x".join(map(str, m)) for m in network.legal_meshes(c)]
        for c in EXAMPLE_CHIP_COUNTS
        if network.legal_meshes(c)
    }
    return {"rule": rule, "chip_counts": counts, "up_to": up_to, "max_chips": max_chips, "meshes": meshes}
