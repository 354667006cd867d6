"""What the graph walk knows about each tensor: its channels, on which axes they lie, and heads.

A tensor's *features* are the channels its units live in. They lie on one axis (axis 1 of a
convolutional map or a flat batch, the last axis of a token sequence) or, once a reshape has
split them into attention heads, on several axes; ``chans`` lists them row-major over
``axes`` (always in ascending order). A *featureless* tensor (``axes == ()``) carries no unit:
token ids, masks, fixed tables, anything computed from those alone. The scores of an
attention (``heads``) are featureless except for their head axis, whose entries belong to the
heads' query/key units.

The helpers here are pure functions over shapes and values; :mod:`canonicalize.discover`
applies them while it walks the graph.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

FIXED = 0


class UnionFind:
    """Union-find over integer atoms; atom 0 is 'fixed' and always its set's root."""

    def __init__(self) -> None:
        self.parent = [FIXED]
        self.origin = ["<fixed>"]

    def new(self, count: int, origin: str) -> int:
        """Allocate ``count`` fresh atoms created by ``origin``; returns the first."""
        first = len(self.parent)
        self.parent.extend(range(first, first + count))
        self.origin.extend([origin] * count)
        return first

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        lo, hi = min(ra, rb), max(ra, rb)
        self.parent[hi] = lo
        return lo


Term = tuple[int, str]  # (scale atom, "full" | "sign")


class Chan(NamedTuple):
    """One channel: its unit atom (``None`` for a fixed channel), its factors, whether zero."""

    perm: int | None
    terms: frozenset[Term]
    zero: bool = False


class Heads(NamedTuple):
    """The head structure of attention scores.

    ``pos`` is the head axis (``None`` for a single head); ``qk[h]`` the unit atoms of head
    ``h``'s query/key features; ``node`` the name of the node that formed the scores (it
    prefixes the origins that mark each head's units); ``fixed`` says that something (a
    per-head fixed tensor) keeps the heads in place.

    What the continuous groups of the heads need (:mod:`canonicalize.attention`): ``keys`` is
    the axis of the keys while every operation since the product kept a constant per query a
    constant per query (``None`` once one may not have); ``normalized`` says that a softmax over
    that axis has removed any such constant; ``stochastic`` that every row over the keys sums
    to one now (a softmax, then nothing but dropout); ``query[h]`` and ``key[h]`` are the scale
    atoms of head ``h``'s query and key features (``None`` for a feature that is not one row of
    one layer); ``operands`` the graph nodes of the query and the key.
    """

    pos: int | None
    qk: tuple[tuple[int | None, ...], ...]
    node: str
    fixed: bool = False
    keys: int | None = None
    normalized: bool = False
    stochastic: bool = False
    query: tuple[tuple[int | None, ...], ...] = ()
    key: tuple[tuple[int | None, ...], ...] = ()
    operands: tuple = ()


class Value(NamedTuple):
    """What the walk knows about one tensor.

    ``chans`` describes the features, row-major over ``axes``; ``block`` entries per channel
    once a ``(C, H, W)`` map is flattened (single feature axis only); ``shift`` names the biases
    whose per-channel translation reach this tensor unchanged (so a BatchNorm reading it can
    absorb the bias); ``heads`` marks attention scores; ``split`` describes the reshape that
    spread the features over several axes (for error messages); ``param`` is ``(state name,
    unit dim)`` of a parameter read directly by the forward pass, as long as nothing but views
    lie between the read and here.
    """

    chans: tuple[Chan, ...]
    block: int
    shape: tuple[int, ...]
    shift: tuple[str, ...] = ()
    axes: tuple[int, ...] = (1,)
    heads: Heads | None = None
    split: str | None = None
    param: tuple[str, int] | None = None


class Pieces(tuple):
    """The values of an operation that returns several tensors (a split, an attention's output
    and weights); ``None`` for a piece that is not a tensor."""


def fixed(count: int) -> tuple[Chan, ...]:
    return tuple(Chan(None, frozenset()) for _ in range(count))


def featureless(shape: tuple[int, ...]) -> Value:
    """A tensor without units (ids, masks, fixed tables)."""
    return Value((), 1, tuple(shape), axes=())


def is_featureless(value: Value) -> bool:
    return not value.axes and value.heads is None and value.param is None


def inert(value: Value) -> bool:
    """Whether nothing in ``value`` can move: featureless, or every channel fixed and unscaled."""
    if value.heads is not None or value.param is not None:
        return False
    if not value.axes:
        return True
    return all(c.perm is None and not c.terms and not c.zero for c in value.chans)


def grid(value: Value) -> np.ndarray:
    """Channel indices laid out over the feature axes (ascending), one array dim per axis."""
    sizes = [value.shape[a] for a in value.axes]
    return np.arange(len(value.chans)).reshape(sizes)


def lift(value: Value, ndim: int) -> Value:
    """``value`` broadcast to ``ndim`` dims (new leading axes of size 1)."""
    extra = ndim - len(value.shape)
    if extra <= 0:
        return value
    heads = value.heads
    if heads is not None and heads.pos is not None:
        heads = heads._replace(pos=heads.pos + extra)
    if heads is not None and heads.keys is not None:
        heads = heads._replace(keys=heads.keys + extra)
    return value._replace(
        shape=(1,) * extra + tuple(value.shape),
        axes=tuple(a + extra for a in value.axes),
        heads=heads,
    )


def permute_axes(value: Value, order: list[int], shape: tuple[int, ...]) -> Value:
    """The value after ``permute(order)``: new axis ``i`` is old axis ``order[i]``."""
    where = {old: new for new, old in enumerate(order)}
    heads = value.heads
    if heads is not None and heads.pos is not None:
        heads = heads._replace(pos=where[heads.pos])
    if heads is not None and heads.keys is not None:
        heads = heads._replace(keys=where[heads.keys])
    if not value.axes:
        return value._replace(shape=tuple(shape), heads=heads, shift=())
    moved = [where[a] for a in value.axes]
    chans = value.chans
    if moved != sorted(moved):
        layout = grid(value).transpose(np.argsort(moved))
        chans = tuple(value.chans[i] for i in layout.reshape(-1))
    return value._replace(
        chans=chans, shape=tuple(shape), axes=tuple(sorted(moved)), heads=heads, shift=()
    )


def reshape_groups(
    a: tuple[int, ...], b: tuple[int, ...]
) -> list[tuple[list[int], list[int]]] | None:
    """Pair the axes of shape ``a`` with those of shape ``b`` that a reshape merges or splits.

    Returns ``(in_axes, out_axes)`` groups, contiguous and in order, whose sizes multiply to the
    same number; axes of size 1 join the group on their left (the first group when none is).
    ``None`` if the sizes do not match.
    """
    big_a = [i for i, s in enumerate(a) if s != 1]
    big_b = [j for j, s in enumerate(b) if s != 1]
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(big_a) or j < len(big_b):
        if i >= len(big_a) or j >= len(big_b):
            return None
        ins, outs = [big_a[i]], [big_b[j]]
        pa, pb = a[big_a[i]], b[big_b[j]]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                if i >= len(big_a):
                    return None
                ins.append(big_a[i])
                pa *= a[big_a[i]]
                i += 1
            else:
                if j >= len(big_b):
                    return None
                outs.append(big_b[j])
                pb *= b[big_b[j]]
                j += 1
        groups.append((ins, outs))
    if not groups:
        return [(list(range(len(a))), list(range(len(b))))]
    for shape, side in ((a, 0), (b, 1)):
        for k, size in enumerate(shape):
            if size != 1:
                continue
            left = [g for g in groups if g[side] and min(g[side]) < k]
            target = max(left, key=lambda g: max(g[side])) if left else groups[0]
            target[side].append(k)
    for ins, outs in groups:
        ins.sort()
        outs.sort()
    return groups


def reshape_value(value: Value, shape: tuple[int, ...]) -> tuple[Value | None, str]:
    """The value after a reshape to ``shape``, or ``None`` and why it is not supported.

    Feature axes may merge with each other or split into several (attention heads), and keep
    their channel order (row-major); a single feature axis followed by other axes may be
    flattened into one (its channels become blocks, as in flattening a feature map). Feature
    axes may not merge with other axes of size > 1 otherwise.
    """
    groups = reshape_groups(tuple(value.shape), tuple(shape))
    if groups is None:
        return None, "the sizes do not match"
    features = set(value.axes)
    axes: list[int] = []
    block = value.block
    head_pos = None
    heads = value.heads
    for ins, outs in groups:
        if heads is not None and heads.pos in ins:
            big_in = [x for x in ins if value.shape[x] != 1]
            big_out = [y for y in outs if shape[y] != 1]
            if big_in != [heads.pos] or len(big_out) != 1:
                return None, "it merges or splits the head axis of attention scores"
            head_pos = big_out[0]
        mine = [x for x in ins if x in features]
        if not mine:
            continue
        others = [x for x in ins if x not in features and value.shape[x] != 1]
        if value.block != 1:
            big_out = [y for y in outs if shape[y] != 1]
            if others or len(big_out) != 1:
                return None, "it reshapes a flattened feature map"
            axes.append(big_out[0])
            continue
        if not others:
            axes.extend(outs)
            continue
        big_out = [y for y in outs if shape[y] != 1]
        if len(value.axes) == 1 and mine[0] < min(others) and len(big_out) == 1:
            block *= math.prod(value.shape[x] for x in others)
            axes.append(big_out[0])
            continue
        return None, "it mixes the feature axis with other axes"
    if heads is not None:
        # the key axis is not followed through a reshape: a constant per query may be lost
        heads = heads._replace(pos=head_pos, keys=None, stochastic=False)
    return (
        value._replace(shape=tuple(shape), axes=tuple(sorted(axes)), block=block, heads=heads),
        "",
    )
