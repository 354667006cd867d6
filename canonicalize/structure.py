"""Axis bookkeeping for the graph walk: transposes, reshapes, indexing, splits and joins.

Mixed into :class:`canonicalize.discover.Walk`. A unit lives wherever its channel goes: a
transpose moves the feature axis, a reshape splits it into attention heads or merges it back,
an index or a split along the features keeps some of them (and marks them, so that what a
slice kept and what it left are told apart). What cannot be followed is refused with the node
and the module that hold it.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx
from torch.fx.passes.shape_prop import TensorMetadata

from . import ops
from .errors import SymmetryError
from .nodes import describe
from .values import (
    Chan,
    Pieces,
    Value,
    featureless,
    grid,
    inert,
    lift,
    permute_axes,
    reshape_value,
)

if TYPE_CHECKING:
    from .discover import Walk

_TRANSPOSES = {torch.transpose, torch.swapaxes, torch.swapdims}
_SPLIT_FUNCTIONS = {torch.split, torch.chunk, torch.unbind, torch.tensor_split}
_SPLIT_METHODS = {"split", "chunk", "unbind", "tensor_split", "split_with_sizes"}
_CASTS = {"to", "type", "type_as", "float", "double", "half", "bfloat16"}
_ROTARY = (
    "it slices or splits the features within an attention head (rotary position embeddings do "
    "this: they rotate pairs of features of each head); canonicalize does not support "
    "operations that mix the features within a head"
)


def _arg(node: fx.Node, position: int, name: str, default=None):
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


def kept(node: fx.Node, entry: slice, size: int, out_size: int) -> list[int]:
    """The positions a slice keeps along an axis of ``size`` entries; bounds that are traced
    numbers (``x[:, : x.size(1)]``) are read off the traced output size."""
    bounds = (entry.start, entry.stop, entry.step)
    if not any(isinstance(b, fx.Node) for b in bounds):
        return list(range(size))[entry]
    if out_size == size:
        return list(range(size))
    if entry.start in (None, 0) and entry.step in (None, 1):
        return list(range(out_size))
    raise SymmetryError(
        f"{describe(node)} slices with traced bounds that canonicalize cannot follow; slice "
        "from the start (x[:, :n]) or with constant bounds"
    )


class StructureOps:
    """Transposes, general reshapes, indexing, splits, joins and casts (a Walk mixin)."""

    # --- dispatch of the sequence-model operations ----------------------------------------
    def visit_sequence_function(self: Walk, node: fx.Node, shape) -> Value | None:
        target = node.target
        if target in _TRANSPOSES:
            value = self.value(node.args[0], node)
            return self.transpose(node, value, _arg(node, 1, "dim0"), _arg(node, 2, "dim1"), shape)
        if target is torch.permute:
            value = self.value(node.args[0], node)
            return self.transposed(node, value, list(_arg(node, 1, "dims")), shape)
        if target is torch.movedim:
            return self.movedim(node, shape)
        if target is torch.t:
            value = self.value(node.args[0], node)
            return self.transpose(node, value, 0, -1, shape)
        if target is getattr and len(node.args) == 2 and node.args[1] in ("T", "mT"):
            value = self.value(node.args[0], node)
            if node.args[1] == "T":
                return self.transposed(node, value, list(range(len(value.shape)))[::-1], shape)
            return self.transpose(node, value, -2, -1, shape)
        if target in (torch.matmul, operator.matmul, torch.bmm):
            return self.matmul(node, shape)
        if target is F.scaled_dot_product_attention:
            return self.sdpa(node, shape)
        if target is F.linear:
            return self.functional_linear(node, shape)
        if target is F.embedding:
            return self.embedding_function(node, shape)
        if target is F.layer_norm:
            return self.layer_norm_function(node, shape)
        if getattr(F, "rms_norm", None) is not None and target is F.rms_norm:
            return self.rms_norm_function(node, shape)
        if target is F.normalize:
            return self.normalize(node, shape)
        if target is torch.masked_fill:
            return self.masked_fill(node, shape)
        if target is torch.where and len(node.args) + len(node.kwargs) == 3:
            return self.where_(node, shape)
        if target is torch.broadcast_to:
            return self.expand(node, self.value(node.args[0], node), shape)
        return None

    def visit_sequence_method(self: Walk, node: fx.Node, shape) -> Value | None:
        method = str(node.target)
        if method in ("transpose", "swapaxes", "swapdims"):
            value = self.value(node.args[0], node)
            return self.transpose(node, value, _arg(node, 1, "dim0"), _arg(node, 2, "dim1"), shape)
        if method == "permute":
            value = self.value(node.args[0], node)
            dims = node.args[1:] if len(node.args) > 1 else node.kwargs["dims"]
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = dims[0]
            return self.transposed(node, value, list(dims), shape)
        if method == "t":
            value = self.value(node.args[0], node)
            return self.transpose(node, value, 0, -1, shape)
        if method == "movedim":
            return self.movedim(node, shape)
        if method in ("matmul", "bmm", "__matmul__"):
            return self.matmul(node, shape)
        if method in ("masked_fill", "masked_fill_"):
            return self.masked_fill(node, shape)
        if method in ("expand", "expand_as", "broadcast_to"):
            return self.expand(node, self.value(node.args[0], node), shape)
        if method == "repeat":
            return self.repeat(node, self.value(node.args[0], node), shape)
        if method == "unflatten":
            return self.reshape(node, self.value(node.args[0], node), shape)
        if method in _CASTS:
            value = self.value(node.args[0], node)
            return value._replace(shape=tuple(shape), shift=(), param=None)
        return None

    # --- transposes ---------------------------------------------------------------------
    def transpose(self: Walk, node: fx.Node, value: Value, dim0, dim1, shape) -> Value:
        ndim = len(value.shape)
        order = list(range(ndim))
        if ndim:
            a, b = dim0 % ndim, dim1 % ndim
            order[a], order[b] = order[b], order[a]
        return self.transposed(node, value, order, shape)

    def transposed(self: Walk, node: fx.Node, value: Value, order: list[int], shape) -> Value:
        ndim = len(value.shape)
        order = [d % ndim for d in order]
        if order == list(range(ndim)):
            return value._replace(shape=tuple(shape), shift=(), param=None)
        if inert(value) and value.axes:
            return featureless(shape)
        if value.block != 1:
            raise SymmetryError(f"{describe(node)} transposes a flattened feature map")
        return permute_axes(value, order, tuple(shape))._replace(param=None)

    def movedim(self: Walk, node: fx.Node, shape) -> Value:
        value = self.value(node.args[0], node)
        ndim = len(value.shape)
        source, target = _arg(node, 1, "source"), _arg(node, 2, "destination")
        source = [source] if isinstance(source, int) else list(source)
        target = [target] if isinstance(target, int) else list(target)
        order: list[int | None] = [None] * ndim
        for s, t in zip(source, target, strict=True):
            order[t % ndim] = s % ndim
        rest = iter(d for d in range(ndim) if d not in {s % ndim for s in source})
        order = [d if d is not None else next(rest) for d in order]
        return self.transposed(node, value, order, shape)  # type: ignore[arg-type]

    # --- reshapes ------------------------------------------------------------------------
    def reshape_general(self: Walk, node: fx.Node, value: Value, shape) -> Value:
        if inert(value):
            return featureless(shape)
        moved, why = reshape_value(value, tuple(shape))
        if moved is None:
            raise SymmetryError(
                f"{describe(node)} reshapes {value.shape} to {tuple(shape)}; only reshapes that "
                "keep the channel axis (flattening to (batch, -1), squeezing trailing axes, "
                f"splitting the features into attention heads) are supported: {why}"
            )
        split = moved.split
        if len(moved.axes) > 1 and len(value.axes) <= 1:
            split = f"{describe(node)} reshapes {value.shape} to {tuple(shape)}"
        return moved._replace(split=split, shift=(), param=None)

    def expand(self: Walk, node: fx.Node, value: Value, shape) -> Value:
        lifted = lift(value, len(shape))
        # a size-1 axis among the feature axes (an unsqueeze) holds no features of its own:
        # broadcasting along it repeats whole feature vectors (a class token over a batch)
        axes = tuple(a for a in lifted.axes if not (lifted.shape[a] == 1 and shape[a] != 1))
        if not axes or any(lifted.shape[a] != shape[a] for a in axes):
            raise SymmetryError(f"{describe(node)} repeats the features; not supported")
        return lifted._replace(shape=tuple(shape), axes=axes, shift=(), param=None)

    def repeat(self: Walk, node: fx.Node, value: Value, shape) -> Value:
        return self.expand(node, value, shape)

    # --- indexing ------------------------------------------------------------------------
    def select(
        self: Walk, node: fx.Node, value: Value, axis: int, keep: list[int], drop: bool
    ) -> Value:
        """Keep the entries ``keep`` along ``axis`` (and drop the axis when ``drop``)."""
        size = value.shape[axis]
        chans = value.chans
        axes = list(value.axes)
        if axis in value.axes:
            if value.block != 1:
                raise SymmetryError(f"{describe(node)} slices a flattened feature map")
            if len(value.axes) > 1 and axis == value.axes[-1] and len(keep) < size:
                raise SymmetryError(f"{describe(node)}: {_ROTARY}")
            if len(value.axes) == 1 and drop:
                raise SymmetryError(
                    f"{describe(node)} selects single features of {value.shape}; only slices "
                    "that keep the feature axis are supported"
                )
            if keep != sorted(keep) or len(set(keep)) != len(keep):
                raise SymmetryError(f"{describe(node)} reorders channels; not supported")
            layout = np.take(grid(value), keep, axis=value.axes.index(axis))
            chans = tuple(value.chans[i] for i in layout.reshape(-1))
            if len(chans) < len(value.chans):
                chans = self.mark(chans, f"slice:{node.name}")
            if drop:
                axes.remove(axis)
        heads = value.heads
        if drop:
            axes = [a - 1 if a > axis else a for a in axes]
            if heads is not None and heads.pos is not None:
                if heads.pos == axis:
                    raise SymmetryError(
                        f"{describe(node)} selects single heads of attention scores"
                    )
                heads = heads._replace(pos=heads.pos - 1 if heads.pos > axis else heads.pos)
            shape = value.shape[:axis] + value.shape[axis + 1 :]
        else:
            if heads is not None and heads.pos == axis and len(keep) < size:
                raise SymmetryError(f"{describe(node)} selects some heads of attention scores")
            shape = value.shape[:axis] + (len(keep),) + value.shape[axis + 1 :]
        return value._replace(chans=chans, axes=tuple(axes), heads=heads, shape=shape)

    def insert_axis(self: Walk, value: Value, axis: int) -> Value:
        heads = value.heads
        if heads is not None and heads.pos is not None and heads.pos >= axis:
            heads = heads._replace(pos=heads.pos + 1)
        return value._replace(
            axes=tuple(a + 1 if a >= axis else a for a in value.axes),
            heads=heads,
            shape=value.shape[:axis] + (1,) + value.shape[axis:],
        )

    def getitem_general(self: Walk, node: fx.Node, value: Value, index: tuple, shape) -> Value:
        """Indexing a value whose features are not on axis 1 (or attention scores)."""
        if index.count(Ellipsis) > 1:
            raise SymmetryError(f"{describe(node)}: indexing with several ellipses")
        real = [i for i in index if i is not None and i is not Ellipsis]
        if Ellipsis in index:
            at = index.index(Ellipsis)
            fill = len(value.shape) - len(real)
            index = index[:at] + (slice(None),) * fill + index[at + 1 :]
        index = index + (slice(None),) * (len(value.shape) - len(real))
        tensors = [i for i in index if isinstance(i, fx.Node)]
        if tensors:
            return self.advanced_index(node, value, index, shape)
        axis = 0  # position in the current (partially indexed) value
        for entry in index:
            if entry is None:
                value = self.insert_axis(value, axis)
                axis += 1
            elif isinstance(entry, slice):
                size = value.shape[axis]
                keep = kept(node, entry, size, shape[axis])
                if len(keep) != size:
                    value = self.select(node, value, axis, keep, drop=False)
                axis += 1
            else:
                size = value.shape[axis]
                if isinstance(entry, fx.Node):
                    raise SymmetryError(f"{describe(node)} indexes with a traced number")
                value = self.select(node, value, axis, [int(entry) % size], drop=True)
        if tuple(value.shape) != tuple(shape):
            raise SymmetryError(
                f"{describe(node)}: internal: indexing gives {value.shape}, traced {tuple(shape)}"
            )
        return value._replace(shift=(), param=None)

    def advanced_index(self: Walk, node: fx.Node, value: Value, index: tuple, shape) -> Value:
        """Indexing with tensors (gathering tokens): only on axes without features, all
        adjacent, with plain slices elsewhere."""
        places = [k for k, i in enumerate(index) if isinstance(i, fx.Node)]
        simple = all(
            isinstance(i, slice) and i == slice(None)
            for k, i in enumerate(index)
            if k not in places
        )
        adjacent = places == list(range(places[0], places[-1] + 1))
        indices = [self.values.get(index[k]) for k in places]
        if (
            not simple
            or not adjacent
            or any(not isinstance(v, Value) or v.axes or v.heads for v in indices)
            or any(k in value.axes for k in places)
            or value.heads is not None
        ):
            raise SymmetryError(
                f"{describe(node)}: indexing with tensors is supported only on axes without "
                "features (gathering tokens), with plain ':' elsewhere"
            )
        broadcast = max(len(v.shape) for v in indices)  # type: ignore[union-attr]
        moved = broadcast - len(places)
        axes = tuple(a + moved if a > places[-1] else a for a in value.axes)
        return value._replace(axes=axes, shape=tuple(shape), shift=(), param=None)

    # --- splits and joins ----------------------------------------------------------------
    def splits(self: Walk, node: fx.Node) -> bool:
        if node.op == "call_function":
            return node.target in _SPLIT_FUNCTIONS
        return node.op == "call_method" and str(node.target) in _SPLIT_METHODS

    def split(self: Walk, node: fx.Node) -> Pieces:
        metas = node.meta.get("tensor_meta")
        if not isinstance(metas, (tuple, list)) or not all(
            isinstance(m, TensorMetadata) for m in metas
        ):
            raise SymmetryError(f"{describe(node)} does not return tensors")
        value = self.value(node.args[0], node)
        name = str(getattr(node.target, "__name__", node.target))
        default = 0
        dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else default)
        if name == "unbind":
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        dim = dim % len(value.shape)
        pieces = []
        start = 0
        for k, meta in enumerate(metas):
            piece_shape = tuple(meta.shape)
            if name == "unbind":
                piece = self.select(node, value, dim, [k], drop=True)
            else:
                size = piece_shape[dim]
                piece = self.select(node, value, dim, list(range(start, start + size)), drop=False)
                start += size
            if piece.axes and len(piece.chans) < len(value.chans):
                piece = piece._replace(chans=self.mark(piece.chans, f"split:{node.name}/{k}"))
            if tuple(piece.shape) != piece_shape:
                raise SymmetryError(f"{describe(node)}: internal: piece {k} has another shape")
            pieces.append(piece._replace(shift=(), param=None))
        return Pieces(pieces)

    def concatenate_general(
        self: Walk, node: fx.Node, values: list[Value], dim: int, shape
    ) -> Value:
        ndim = len(shape)
        values = [lift(v, ndim) for v in values]
        moving = [v for v in values if not inert(v)]
        axes = moving[0].axes
        if any(v.axes != axes for v in moving):
            raise SymmetryError(
                f"{describe(node)} concatenates tensors whose features lie on different axes"
            )
        if dim in axes:
            if len(axes) > 1:
                raise SymmetryError(f"{describe(node)}: {_ROTARY}")
            values = [self.on_axis(v, dim, node) for v in values]
            if len({v.block for v in values}) != 1:
                raise SymmetryError(f"{describe(node)} concatenates flattened maps of other sizes")
            chans = tuple(c for v in values for c in v.chans)
            return moving[0]._replace(chans=chans, shape=tuple(shape), shift=(), param=None)
        # along tokens (a class token before the patches): the same units at every position
        first = moving[0]
        chans = first.chans
        for other in values:
            if other is first:
                continue
            if inert(other):
                other = other._replace(chans=tuple(Chan(None, frozenset()) for _ in chans))
                self.note(node, "a fixed tensor is concatenated with the features: they are fixed")
            if len(other.chans) != len(chans):
                raise SymmetryError(f"{describe(node)} concatenates tensors of other widths")
            chans = tuple(self.merge(x, y) for x, y in zip(chans, other.chans, strict=True))
        return first._replace(chans=chans, shape=tuple(shape), shift=(), param=None)

    def stack(self: Walk, node: fx.Node, shape) -> Value:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = _arg(node, 1, "dim", 0) % len(shape)
        values = [self.insert_axis(lift(self.value(t, node), len(shape) - 1), dim) for t in tensors]
        return self.concatenate_general(node, values, dim, shape)

    def pad_general(self: Walk, node: fx.Node, value: Value, shape) -> Value:
        widths = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
        fill = _arg(node, 3, "value", None)
        ndim = len(value.shape)
        padded = {ndim - 1 - i // 2 for i, w in enumerate(widths) if w}
        if padded & set(value.axes):
            raise SymmetryError(f"{describe(node)} pads the features of {value.shape}")
        if fill not in (None, 0, 0.0):
            self.terminal(value.chans)
        return value._replace(shape=tuple(shape), shift=(), param=None)

    def reduce_general(self: Walk, node: fx.Node, value: Value, dims, kind: str, shape) -> Value:
        """A reduction of a value whose features are not on axis 1."""
        features = set(dims) & set(value.axes)
        if features:
            if features != set(value.axes):
                raise SymmetryError(
                    f"{describe(node)} sums over some of the axes that hold the features "
                    f"(attention heads?) of {value.shape}; not supported"
                )
            if kind in ops.NORM_REDUCTIONS:
                for chan in value.chans:
                    self.no_magnitude.update(a for a, k in chan.terms if k == "full")
            else:
                self.terminal(value.chans)
            return featureless(shape)
        if kind in ops.EVEN_REDUCTIONS:
            self.terminal(value.chans)
        elif kind == "amax":
            for chan in value.chans:
                self.no_sign.update(atom for atom, _ in chan.terms)
        if len(shape) == len(value.shape):
            return value._replace(shape=tuple(shape), shift=(), param=None)
        axes = tuple(a - sum(d < a for d in dims) for a in value.axes)
        return value._replace(axes=axes, shape=tuple(shape), shift=(), param=None)

    # --- masks ---------------------------------------------------------------------------
    def masked_fill(self: Walk, node: fx.Node, shape) -> Value:
        value = self.value(node.args[0], node)
        mask = self.values.get(node.args[1]) if isinstance(node.args[1], fx.Node) else None
        fill = _arg(node, 2, "value", 0)
        if isinstance(fill, fx.Node):
            raise SymmetryError(f"{describe(node)} fills with a tensor; not supported")
        return self.filled(node, value, mask, fill, shape)

    def filled(self: Walk, node: fx.Node, value: Value, mask, fill, shape) -> Value:
        """``value`` where a fixed mask is false, the constant ``fill`` elsewhere."""
        if isinstance(mask, Value) and not inert(mask):
            raise SymmetryError(f"{describe(node)} masks with a tensor computed from features")
        if fill != 0:
            self.terminal(value.chans)
        lifted = lift(value, len(shape))
        if isinstance(mask, Value):
            mask = lift(mask, len(shape))
            if any(mask.shape[a] != 1 for a in lifted.axes):
                self.pin(value.chans)
                self.note(node, "a fixed mask varies along the features: they cannot be permuted")
        return lifted._replace(shape=tuple(shape), shift=(), param=None)

    def where_(self: Walk, node: fx.Node, shape) -> Value:
        cond, a, b = (_arg(node, i, n) for i, n in enumerate(("condition", "input", "other")))
        mask = self.values.get(cond) if isinstance(cond, fx.Node) else None
        a_value = self.values.get(a) if isinstance(a, fx.Node) else None
        b_value = self.values.get(b) if isinstance(b, fx.Node) else None
        tensors = [v for v in (a_value, b_value) if isinstance(v, Value)]
        if len(tensors) == 1:
            constant = b if a_value is not None else a
            value = self.value(a if a_value is not None else b, node)
            return self.filled(node, value, mask, constant, shape)
        raise SymmetryError(
            f"{describe(node)} chooses between two tensors; only a choice between a tensor and a "
            "constant (a mask) is supported"
        )

    def normalize(self: Walk, node: fx.Node, shape) -> Value:
        """``F.normalize``: divides by a norm over an axis (signs pass a norm over features)."""
        value = self.value(node.args[0], node)
        dim = _arg(node, 2, "dim", 1) % len(value.shape)
        if dim in value.axes and len(value.axes) == 1:
            for chan in value.chans:
                self.no_magnitude.update(a for a, k in chan.terms if k == "full")
        else:
            self.terminal(value.chans)
        return value._replace(shape=tuple(shape), shift=(), param=None)
