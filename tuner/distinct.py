"""Duplicate elimination: a sampled study never spends a trial on a configuration it holds.

Optuna's samplers draw from categorical distributions and do not look at what the study already
holds: NSGA-II's children often copy a parent, TPE concentrates on a few good points, and random
sampling repeats by chance (the PaLM study held about 1,400 distinct configurations among 3,000
trials, one of them evaluated 129 times). The cost model is deterministic, so a repeat adds
nothing. :class:`DistinctConfigurations` keeps the set of configurations the study holds (read
once from the stored trials' params, then updated with every trial asked) and, for a proposal
already held, finds an unseen one:

- NSGA-II and TPE: *mutate* the proposal, i.e. redraw one dimension chosen at random (another
  choice of it, uniformly), up to ``MUTATIONS`` times, each from the previous attempt; this keeps
  the replacement next to what the sampler wanted (pymoo's duplicate elimination likewise
  re-mates and re-mutates offspring). Only then a candidate drawn uniformly among the unseen ones.
- Random: a candidate drawn uniformly among the unseen ones (what the sampler would draw, given
  that it must be new).

When every configuration of the space is held, :meth:`DistinctConfigurations.exhausted` says so
and the search stops. A configuration is a tuple of choice indices, one per dimension, in the
space's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: Single-dimension redraws tried on a repeated proposal before a uniformly drawn unseen candidate.
MUTATIONS = 16
#: Uniform draws tried before the unseen candidates are listed (a space nearly exhausted).
_DRAWS = 64
#: Spaces up to this size list their unseen candidates once uniform draws keep hitting seen ones.
_LISTABLE = 20_000_000


class DistinctConfigurations:
    """The configurations a study holds, and unseen replacements for repeated proposals."""

    def __init__(self, dimensions: Mapping[str, tuple], seed: int, mutate: bool = True) -> None:
        self.names = list(dimensions)
        self.choices = [tuple(dimensions[name]) for name in self.names]
        self.sizes = np.array([len(c) for c in self.choices], dtype=np.int64)
        self.size = int(np.prod([float(n) for n in self.sizes]))
        self._lookup = [{choice: i for i, choice in enumerate(c)} for c in self.choices]
        # Flat index of a key (numpy's C order, as tuner.compact stores it): sum of key * stride.
        self._strides = [
            int(np.prod([int(n) for n in self.sizes[i + 1 :]], dtype=object)) for i in range(len(self.sizes))
        ]
        # What the study held at the start, as sorted flat indices (add_flat: one sort, where a set
        # of 200,000 tuples took 0.18-0.42 s to build), and the keys added one by one since (a
        # set; never one of the held ones, so the two counts add up).
        self._held = np.zeros(0, dtype=np.int64)
        self._size_list = [int(n) for n in self.sizes]
        self._seen: set[tuple[int, ...]] = set()
        self._redraw_rng = np.random.default_rng(seed)
        self.mutate = mutate
        self.redrawn = 0  # proposals replaced

    def __len__(self) -> int:
        return len(self._held) + len(self._seen)

    @property
    def exhausted(self) -> bool:
        return len(self) >= self.size

    @property
    def unseen(self) -> int:
        return self.size - len(self)

    def key(self, params: Mapping[str, Any]) -> tuple[int, ...] | None:
        """The configuration of a trial's params (None if they are not of this space)."""
        try:
            return tuple(lookup[params[name]] for name, lookup in zip(self.names, self._lookup, strict=True))
        except (KeyError, TypeError):
            return None

    def params(self, key: tuple[int, ...]) -> dict[str, Any]:
        return {name: choices[i] for name, choices, i in zip(self.names, self.choices, key, strict=True)}

    def add_all(self, trials_params: Iterable[Mapping[str, Any]]) -> None:
        for params in trials_params:
            key = self.key(params)
            if key is not None:
                self.add(key)

    def add_flat(self, flat: np.ndarray) -> None:
        """Add configurations given by their flat index in the product (:mod:`tuner.compact`):
        merged with the held ones by one sort (the keys added one by one join them)."""
        if len(flat):
            from tuner.compact import sorted_unique

            self._held = sorted_unique(
                np.concatenate([self._held, np.asarray(flat, dtype=np.int64), self._flat_seen()])
            )
            self._seen = set()

    def _flat(self, key: tuple[int, ...]) -> int:
        return sum(int(k) * stride for k, stride in zip(key, self._strides, strict=True))

    def _flat_seen(self) -> np.ndarray:
        return np.array([self._flat(key) for key in self._seen], dtype=np.int64)

    def _held_has(self, key: tuple[int, ...]) -> bool:
        # A choice out of range is no configuration of the space (its flat index would be another's).
        if not len(self._held) or not all(0 <= k < n for k, n in zip(key, self._size_list, strict=True)):
            return False
        flat = self._flat(key)
        where = int(np.searchsorted(self._held, flat))
        return where < len(self._held) and int(self._held[where]) == flat

    def add(self, key: tuple[int, ...]) -> None:
        key = tuple(int(k) for k in key)
        if not self._held_has(key):
            self._seen.add(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != len(self._strides):
            return False
        key = tuple(int(k) for k in key)
        return key in self._seen or self._held_has(key)

    def replacement(self, key: tuple[int, ...]) -> tuple[int, ...]:
        """An unseen configuration in place of the seen ``key`` (the space must not be exhausted)."""
        if self.exhausted:
            raise ValueError("every configuration of the space is held")
        self.redrawn += 1
        varying = np.flatnonzero(self.sizes > 1)
        if self.mutate and len(varying):
            current = list(key)
            for _ in range(MUTATIONS):
                dim = int(self._redraw_rng.choice(varying))
                other = int(self._redraw_rng.integers(self.sizes[dim] - 1))
                current[dim] = other if other < current[dim] else other + 1  # another choice, uniformly
                if tuple(current) not in self:
                    return tuple(current)
        return self._uniform_unseen()

    def _uniform_unseen(self) -> tuple[int, ...]:
        for _ in range(_DRAWS):
            candidate = tuple(int(self._redraw_rng.integers(n)) for n in self.sizes)
            if candidate not in self:
                return candidate
        if self.size > _LISTABLE:  # unreachable in practice: a space this large is never nearly full
            raise ValueError(f"no unseen configuration found in {_DRAWS} draws")
        flat = np.arange(self.size, dtype=np.int64)
        if len(self):
            flat = np.setdiff1d(flat, np.concatenate([self._held, self._flat_seen()]), assume_unique=True)
        chosen = int(flat[self._redraw_rng.integers(len(flat))])
        return tuple(int(i) for i in np.unravel_index(chosen, tuple(self.sizes)))
