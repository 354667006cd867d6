"""Embeddings, norms over features, parameters read directly, and tied weights (a Walk mixin).

- ``nn.Embedding`` (or ``F.embedding``) writes its columns into the features: each column is
  a unit, permuted (and sign-flipped where its readers allow) with every other writer of the
  stream. Its per-column scale is not divided out.
- ``nn.LayerNorm`` (or ``F.layer_norm``, or one written by hand with ``mean``/``var``): a
  permutation of the features passes, no per-feature scale or sign does (the mean and the
  variance mix the features); the affine pair ``(gain_i, bias_i)`` permutes with feature ``i``
  and shares a free scale (either sign) with the columns of the layers that read it.
- ``nn.RMSNorm`` (or ``F.rms_norm``, or ``x * rsqrt(mean(x**2) + eps) * gain``): signed
  permutations pass (the root mean square ignores signs); the gain flips with the sign of
  its feature, and has a free scale of its own toward its readers. The orthogonal maps of an
  RMSNorm stream without a gain are not divided out.
- A parameter added to the features (a learned position table, a class token) joins the
  stream: its entries along the last axis are units of the stream. A parameter multiplying
  the features one to one (a gain) absorbs the factor of what it multiplies.
- A fixed tensor (a buffer, a constant) added to the features forbids permuting them.
- A weight shared by several layers (``head.weight = embedding.weight``) gets one transform:
  the units on its axes are the same units for every layer that reads it, and its scales and
  signs are held fixed (noted).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from torch import fx, nn

from .errors import SymmetryError
from .nodes import describe, layer
from .tracing import state_name
from .values import Chan, Value, featureless, is_featureless

if TYPE_CHECKING:
    from .discover import Walk


def _arg(node: fx.Node, position: int, name: str, default=None):
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


class TokenOps:
    """Embeddings, norms, parameters and ties (a Walk mixin)."""

    # --- parameters read directly ---------------------------------------------------------
    def get_attr(self: Walk, node: fx.Node, shape) -> Value | None:
        target = str(node.target)
        obj: object = self.gm
        for atom in target.split("."):
            obj = getattr(obj, atom, None)
        if shape is None:
            return None
        if isinstance(obj, nn.Parameter) and len(shape) > 0:
            # claimed (made a site) by its first reader, which knows how it is used
            return Value((), 1, tuple(shape), axes=(), param=(self.name(target), len(shape) - 1))
        return featureless(shape)

    def claim(self: Walk, arg: fx.Node, value: Value) -> Value:
        """A parameter read directly becomes a site whose units lie along its last axis."""
        assert value.param is not None
        name, dim = value.param
        if name in self.claimed:
            claimed = self.claimed[name]
        else:
            count = value.shape[dim]
            perm, scale = self.new_units(name, count)
            if dim != 0:
                self.no_magnitude.update(scale)
                self.notes.append(f"parameter '{name}': not divided out: a scale per feature")
            self.add_layer(name, "parameter", (name,), perm, scale, None, dim=dim)
            chans = tuple(
                Chan(p, frozenset({(s, "full")})) for p, s in zip(perm, scale, strict=True)
            )
            claimed = Value(chans, 1, tuple(value.shape), axes=(dim,), param=(name, dim))
            self.claimed[name] = claimed
        self.values[arg] = claimed
        return claimed

    def gain(self: Walk, node: fx.Node, left: Value, right: Value, shape, divide: bool):
        """``x * g`` with ``g`` a parameter, one entry per feature of ``x``: ``g`` absorbs the
        factor of ``x`` (it is divided by it) and carries a factor of its own."""
        if divide:
            return None
        for g, x in ((left, right), (right, left)):
            if g.param is None or x.param is not None or len(g.axes) != 1:
                continue
            if g.axes != x.axes or len(g.chans) != len(x.chans) or x.block != 1:
                continue
            name, dim = g.param
            used = getattr(self, "_gains", set())
            if name in used:
                self.terminal(x.chans)
                self.note(node, f"the gain '{name}' multiplies several tensors: their factors stay")
            self._gains = used | {name}
            chans = []
            for pos, (cx, cg) in enumerate(zip(x.chans, g.chans, strict=True)):
                if cx.perm is None or cg.perm is None:
                    self.pin([cx, cg])
                    perm = None
                else:
                    perm = self.perms.union(cx.perm, cg.perm)
                if name not in used:
                    for atom, kind in cx.terms:
                        self.columns.append((atom, name, dim, 1, pos, None, kind))
                chans.append(Chan(perm, cg.terms, cx.zero))
            return x._replace(chans=tuple(chans), shape=tuple(shape), shift=(), param=None)
        return None

    def functional_linear(self: Walk, node: fx.Node, shape) -> Value:
        weight = _arg(node, 1, "weight")
        value = self.values.get(weight) if isinstance(weight, fx.Node) else None
        name = value.param[0] if isinstance(value, Value) and value.param else str(weight)
        raise SymmetryError(
            f"the forward pass reads the tensor '{name}' directly as the weight of "
            f"{describe(node)}; only parameters held by supported layers (nn.Linear, "
            "nn.Conv*, nn.Embedding, ...) may multiply features. To tie an output layer to an "
            "embedding, share the Parameter with an nn.Linear (head.weight = embedding.weight)"
        )

    # --- embeddings -------------------------------------------------------------------------
    def embed(self: Walk, node: fx.Node, name: str, weight: str, ids, count: int, shape) -> Value:
        ids_value = self.values.get(ids) if isinstance(ids, fx.Node) else None
        if not isinstance(ids_value, Value) or not is_featureless(ids_value):
            raise SymmetryError(
                f"{describe(node)} looks up token ids computed from features; not supported"
            )
        perm, scale = self.new_units(name, count)
        self.no_magnitude.update(scale)
        self.note(node, "not divided out: a scale per column of the embedding")
        self.add_layer(name, "embedding", (weight,), perm, scale, None, dim=1)
        chans = tuple(Chan(p, frozenset({(s, "full")})) for p, s in zip(perm, scale, strict=True))
        return Value(chans, 1, tuple(shape), axes=(len(shape) - 1,))

    def embedding_module(self: Walk, node: fx.Node, name: str, module: nn.Embedding, shape):
        self.once(name, module)
        if module.max_norm is not None:
            raise SymmetryError(
                f"{layer(name, module)}: max_norm renormalizes the embedding in the forward "
                "pass; not supported"
            )
        weight = state_name(name, "weight")
        return self.embed(node, name, weight, node.args[0], module.embedding_dim, shape)

    def embedding_function(self: Walk, node: fx.Node, shape) -> Value:
        weight = _arg(node, 1, "weight")
        value = self.values.get(weight) if isinstance(weight, fx.Node) else None
        if not isinstance(value, Value) or value.param is None or value.axes:
            raise SymmetryError(f"{describe(node)}: the embedding must be a parameter")
        if _arg(node, 3, "max_norm") is not None:
            raise SymmetryError(f"{describe(node)}: max_norm is not supported")
        name = value.param[0]
        self.claimed[name] = value
        return self.embed(node, name, name, node.args[0], value.shape[1], shape)

    # --- norms over the features ------------------------------------------------------------
    def layer_norm(self: Walk, node: fx.Node, name: str, value: Value, rows, shape) -> Value:
        value = self.on_axis(value, len(value.shape) - 1, node)
        self.terminal(value.chans)
        self.note(
            node,
            "not divided out: one global sign of the features it normalizes (every writer's "
            "rows and this gain flip together); translations of its input along the all-ones "
            "vector (a shift of every writer's bias, where LayerNorms alone read the sum); in "
            "the layers that read it, weights along the one direction its output never takes "
            "(the all-ones vector divided by the gain); rotations fixing the all-ones vector "
            "(once the gain is folded into the readers, with untied embeddings)",
        )
        if rows:
            perm, scale = self.new_units(name, len(value.chans), [c.perm for c in value.chans])
            self.add_layer(name, "layernorm", rows, perm, scale, None)
            chans = tuple(
                Chan(p, frozenset({(s, "full")})) for p, s in zip(perm, scale, strict=True)
            )
        else:
            chans = tuple(Chan(c.perm, frozenset()) for c in value.chans)
        return value._replace(chans=chans, shape=tuple(shape), shift=(), param=None, split=None)

    def rms_norm(self: Walk, node: fx.Node, name: str, value: Value, weight, shape) -> Value:
        value = self.on_axis(value, len(value.shape) - 1, node)
        for chan in value.chans:
            self.no_magnitude.update(atom for atom, kind in chan.terms if kind == "full")
        self.note(
            node,
            "not divided out: orthogonal maps of the features it normalizes beyond signed "
            "permutations (all of O(d) passes it once its gain is folded into the layers that "
            "read it, with untied embeddings)",
        )
        if weight is None:
            chans = value.chans
        else:
            perm, scale = self.new_units(name, len(value.chans), [c.perm for c in value.chans])
            for pos, chan in enumerate(value.chans):
                for atom, kind in chan.terms:
                    self.columns.append((atom, self.name(weight), 0, 1, pos, None, kind))
            self.add_layer(name, "rmsnorm", (weight,), perm, scale, None)
            chans = tuple(
                Chan(p, frozenset({(s, "full")}), c.zero)
                for p, s, c in zip(perm, scale, value.chans, strict=True)
            )
        return value._replace(chans=chans, shape=tuple(shape), shift=(), param=None, split=None)

    def _normalized(self: Walk, node: fx.Node, module_or_shape, what: str) -> None:
        shape = module_or_shape
        if isinstance(shape, int):
            shape = (shape,)
        if len(tuple(shape)) != 1:
            raise SymmetryError(
                f"{describe(node)}: {what} over the last {len(tuple(shape))} axes; only a norm "
                "over the features (the last axis) is supported"
            )

    def layer_norm_module(self: Walk, node: fx.Node, name: str, module: nn.LayerNorm, shape):
        self.once(name, module)
        self._normalized(node, module.normalized_shape, "LayerNorm")
        rows = []
        if module.weight is not None:
            rows.append(state_name(name, "weight"))
        if getattr(module, "bias", None) is not None:
            rows.append(state_name(name, "bias"))
        return self.layer_norm(node, name, self.value(node.args[0], node), rows, shape)

    def rms_norm_module(self: Walk, node: fx.Node, name: str, module: nn.Module, shape):
        self.once(name, module)
        self._normalized(node, module.normalized_shape, "RMSNorm")
        weight = state_name(name, "weight") if module.weight is not None else None
        return self.rms_norm(node, name, self.value(node.args[0], node), weight, shape)

    def _parameters(self: Walk, node: fx.Node, args: list) -> list[str]:
        names = []
        for arg in args:
            if arg is None:
                continue
            value = self.values.get(arg) if isinstance(arg, fx.Node) else None
            if not isinstance(value, Value) or value.param is None or value.axes:
                raise SymmetryError(
                    f"{describe(node)}: the affine parameters of a norm must be parameters of "
                    "the model, read directly"
                )
            names.append(value.param[0])
            self.claimed[value.param[0]] = value
        return names

    def layer_norm_function(self: Walk, node: fx.Node, shape) -> Value:
        self._normalized(node, _arg(node, 1, "normalized_shape"), "layer_norm")
        rows = self._parameters(node, [_arg(node, 2, "weight"), _arg(node, 3, "bias")])
        name = rows[0].rsplit(".", 1)[0] if rows else f"<{node.name}>"
        return self.layer_norm(node, name, self.value(node.args[0], node), rows, shape)

    def rms_norm_function(self: Walk, node: fx.Node, shape) -> Value:
        self._normalized(node, _arg(node, 1, "normalized_shape"), "rms_norm")
        rows = self._parameters(node, [_arg(node, 2, "weight")])
        name = rows[0].rsplit(".", 1)[0] if rows else f"<{node.name}>"
        weight = rows[0] if rows else None
        return self.rms_norm(node, name, self.value(node.args[0], node), weight, shape)

    # --- tied weights ---------------------------------------------------------------------
    def tie(self: Walk) -> None:
        """One transform for a tensor that several layers hold (tied weights)."""
        users: dict[str, set[str]] = defaultdict(set)
        for record in self.layers:
            for row in record["rows"]:
                users[row].add(record["name"])
        tied = {tensor for tensor, names in users.items() if len(names) > 1}
        if not tied:
            return
        entries: dict[tuple, list[int]] = defaultdict(list)
        for atom, tensor, dim, block, pos, row_slice in self.axes:
            if tensor in tied:
                entries[(tensor, dim, block, pos, row_slice)].append(atom)
        for atoms in entries.values():
            for atom in atoms[1:]:
                self.perms.union(atoms[0], atom)
        for record in self.layers:
            if tied & set(record["rows"]):
                self.no_magnitude.update(record["scale"])
                self.no_sign.update(record["scale"])
        for atom, tensor, *_ in self.columns:
            if tensor in tied:
                self.no_magnitude.add(atom)
                self.no_sign.add(atom)
        for tensor in sorted(tied):
            self.notes.append(
                f"the tensor '{tensor}' is shared by {sorted(users[tensor])} (tied weights): "
                "its units move together for every layer that reads it; their scales and "
                "signs are held fixed"
            )
