"""The K parameter points of an evaluation and their buffers, per chunk or per point.

Points come stacked (:class:`~funcspace.params.Stacked`), as a list of modules' tensors
(stacked a chunk at a time), or as an affine family ``origin + coefficients @ directions``
(materialized a block at a time). Nothing of the user's is copied per point or mutated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from funcspace.params import Params

_POINT_BLOCK_BYTES = 32 * 2**20


@dataclass(frozen=True, eq=False)
class Affine:
    """The points ``origin + sum_i coefficients[k, i] * directions[i]``, as given (validated)."""

    origin: Params
    directions: list[Params]
    coefficients: Tensor


class Points:
    """K parameter points: per chunk as stacked tensors, per point as a dict."""

    size: int

    def chunk(self, start: int, stop: int) -> Params:
        raise NotImplementedError

    def point(self, k: int) -> Params:
        raise NotImplementedError


class StackedPoints(Points):
    def __init__(self, params: Params) -> None:
        self.params = params
        self.size = next(iter(params.values())).shape[0]

    def chunk(self, start: int, stop: int) -> Params:
        return {n: p[start:stop] for n, p in self.params.items()}

    def point(self, k: int) -> Params:
        return {n: p[k] for n, p in self.params.items()}


class ModulePoints(Points):
    def __init__(self, tensors: list[Params]) -> None:
        self.tensors = tensors
        self.size = len(tensors)

    def chunk(self, start: int, stop: int) -> Params:
        part = self.tensors[start:stop]
        return {n: torch.stack([t[n] for t in part]) for n in part[0]}

    def point(self, k: int) -> Params:
        return self.tensors[k]


class AffinePoints(Points):
    """origin + coefficients @ directions, materialized per chunk from flat vectors."""

    def __init__(self, affine: Affine) -> None:
        origin, directions = affine.origin, affine.directions
        self.names = list(origin)
        self.shapes = [origin[n].shape for n in self.names]
        self.sizes = [origin[n].numel() for n in self.names]
        self.origin = torch.cat([origin[n].reshape(-1) for n in self.names])
        self.directions = torch.stack(
            [
                torch.cat(
                    [
                        d[n].reshape(-1) if n in d else origin[n].new_zeros(origin[n].numel())
                        for n in self.names
                    ]
                )
                for d in directions
            ]
        )
        self.coefficients = affine.coefficients
        self.size = affine.coefficients.shape[0]
        itemsize = self.origin.element_size()
        self.block_size = int(max(1, min(16, _POINT_BLOCK_BYTES // (len(self.origin) * itemsize))))
        self._block: tuple[int, int, Tensor | None] = (0, 0, None)

    def _unflat(self, flat: Tensor, lead: tuple[int, ...]) -> Params:
        parts = flat.split(self.sizes, dim=-1)
        return {
            n: t.reshape(*lead, *s) for n, t, s in zip(self.names, parts, self.shapes, strict=True)
        }

    def chunk(self, start: int, stop: int) -> Params:
        c = self.coefficients[start:stop]
        flat = torch.addmm(self.origin, c, self.directions)
        return self._unflat(flat, (len(c),))

    def point(self, k: int) -> Params:
        # Points are materialized a block at a time: one product reads the directions once
        # for the block instead of once per point (they leave the cache between points).
        start, stop, block = self._block
        if not start <= k < stop:
            stop = min(k + self.block_size, self.size)
            block = torch.addmm(self.origin, self.coefficients[k:stop], self.directions)
            start, self._block = k, (k, stop, block)
        return self._unflat(block[k - start], ())


@dataclass
class Buffers:
    """BatchNorm statistics (and any other buffers): shared by all points or stacked."""

    values: Params
    shared: bool

    def chunk(self, start: int, stop: int) -> Params:
        if self.shared:
            return self.values
        return {n: b[start:stop] for n, b in self.values.items()}

    def point(self, k: int) -> Params:
        return self.values if self.shared else {n: b[k] for n, b in self.values.items()}


def fresh_bn_buffers(buffers: Buffers, bn_names: Sequence[str], size: int) -> Buffers:
    """Per-point buffers with every BatchNorm statistic reset (mean 0, var 1, count 0)."""
    values = {}
    for name, b in buffers.values.items():
        stacked = b.expand(size, *b.shape) if buffers.shared else b
        values[name] = stacked.clone()
    for bn in bn_names:
        values[f"{bn}.running_mean"].zero_()
        values[f"{bn}.running_var"].fill_(1.0)
        if f"{bn}.num_batches_tracked" in values:
            values[f"{bn}.num_batches_tracked"].zero_()
    return Buffers(values, shared=False)
