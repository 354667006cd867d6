"""Discover a model's symmetries from its torch.fx graph.

The graph is walked once from the input. Every channel of every tensor carries an *atom*: the
unit it holds (a union-find id, shared by every channel that must be permuted with it), the
scale atoms whose factors multiply it (all of each factor, or only its sign behind a sign
activation), and whether it is known to be zero (zero-padded channels). Channel axes are thus
sequences of segments: concatenation lays groups side by side, slicing and padding place a
group inside a wider axis. Features lie on axis 1 (feature maps, flat batches) or on the last
axis (token sequences), or, split into attention heads, on several axes (see
:mod:`canonicalize.values`). Each operation adds what it allows (see :mod:`canonicalize.ops`;
attention in :mod:`canonicalize.attention`, embeddings, norms and parameters in
:mod:`canonicalize.tokens`, axis bookkeeping in :mod:`canonicalize.structure`);
:mod:`canonicalize.resolve` turns the atoms into groups and scale classes.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata

from . import ops
from .attention import AttentionOps
from .errors import SymmetryError
from .nodes import describe, layer, where
from .ops import SUPPORTED_LAYERS
from .spec import BatchNormInfo, BiasFold, SymmetrySpec
from .structure import StructureOps, kept
from .tokens import TokenOps
from .tracing import layer_path, state_name, trace
from .validate import INTEGER_DTYPES, check_input, check_model
from .values import (
    FIXED,
    Chan,
    Pieces,
    Term,
    UnionFind,
    Value,
    featureless,
    inert,
    is_featureless,
    lift,
)
from .values import fixed as _fixed

__all__ = ["SUPPORTED_LAYERS", "symmetries", "trace"]

# re-exported for the modules that read a walk
__all__ += ["FIXED", "Chan", "Term", "UnionFind", "Value", "describe", "layer", "where"]

_POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout1d,
    nn.Dropout2d,
)


def symmetries(model: nn.Module, example_input: torch.Tensor) -> SymmetrySpec:
    """Discover the permutation, scale and sign symmetries of ``model`` from its graph.

    Parameters
    ----------
    model : nn.Module
        Any model built from the supported layers (``SUPPORTED_LAYERS``), with one tensor input
        and one tensor output, written with modules or functional calls. Only what the forward
        pass uses counts: attributes it never calls (a loss module, a spare head) are ignored.
    example_input : torch.Tensor
        A batch of inputs (batch axis first) used to trace the model and read shapes: floating
        point, or integer token ids for a model that embeds them.

    Returns
    -------
    SymmetrySpec
        Which axes share one permutation (across residual additions, through Flatten, inside
        concatenations, along a transformer's residual stream), which units carry a positive
        scale or a sign, which whole blocks permute together (attention heads, blocks of a
        grouped convolution), how consumers compensate, and which continuous parts of each
        attention head's group hold (``spec.attentions``); ``print(spec)`` describes it, and
        ``spec.notes`` say what the graph held fixed that a wider group would move and what
        is not divided out.

    Raises
    ------
    SymmetryError
        For an unsupported layer or function (the message names the module path and why), an
        untraceable model, a model with several inputs or outputs, or non-finite weights.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> spec = symmetries(net, torch.randn(5, 3))
    >>> [g.size for g in spec.groups], [(s.magnitude, s.sign) for s in spec.scales][:1]
    ([4], [(True, False)])
    """
    return discover(model, example_input)[0]


def discover(model: nn.Module, example_input: torch.Tensor) -> tuple[SymmetrySpec, fx.GraphModule]:
    """:func:`symmetries` and the traced graph it was read from."""
    from .resolve import resolve
    from .transform import aliases

    check_model(model)
    if isinstance(example_input, torch.Tensor) and example_input.dtype in INTEGER_DTYPES:
        # integer token ids are valid only for a model that takes them
        try:
            trace(model, example_input)
        except SymmetryError as exc:
            raise SymmetryError(
                f"example_input must be floating point, got {example_input.dtype} (integer "
                f"token ids only for a model that embeds them; this one fails on them: {exc})"
            ) from exc
    example_input = check_input(model, example_input)
    gm = trace(model, example_input)
    return resolve(Walk(gm, aliases(model)).run()), gm


def graph_signature(gm: fx.GraphModule) -> tuple:
    """What the symmetry group depends on: every node's operation, target and arguments, and
    the configuration of every layer called (two graphs with one signature have one group)."""
    rows = []
    for node in gm.graph.nodes:
        target = node.target
        if node.op == "call_module":
            target = repr(gm.get_submodule(str(target)))
        rows.append((node.op, str(target), str(node.args), str(node.kwargs)))
    return tuple(rows)


class Walk(StructureOps, AttentionOps, TokenOps):
    """One pass over the traced graph that records atoms and constraints.

    ``alias`` maps every state name of a tensor shared by several modules (tied weights) to
    the one name the spec uses for it (see :func:`canonicalize.transform.aliases`).
    """

    def __init__(self, gm: fx.GraphModule, alias: dict[str, str] | None = None) -> None:
        self.gm = gm
        self.alias = dict(alias or {})
        self.perms = UnionFind()
        self.scales = UnionFind()
        self.values: dict[fx.Node, Value | Pieces | None] = {}
        self.no_magnitude: set[int] = set()
        self.no_sign: set[int] = set()
        # raw records, one entry per channel: resolve turns them into groups and classes
        self.layers: list[dict] = []
        # atom, tensor, dim, block, pos, row slice (None: all rows)
        self.axes: list[tuple[int, str, int, int, int, tuple[int, int] | None]] = []
        # scale atom, tensor, dim, block, pos, row slice, kind
        self.columns: list[tuple[int, str, int, int, int, tuple[int, int] | None, str]] = []
        self.absorbs: list[tuple[int, str, int, str]] = []  # scale atom, bn, pos, kind
        self.batchnorms: dict[str, BatchNormInfo] = {}
        self.bias_folds: list[BiasFold] = []
        self.notes: list[str] = []
        self.output: Value | None = None
        self.called: set[str] = set()
        # whole blocks that permute together: blocks of grouped convolutions, attention heads;
        # per block, the perm atoms of each side (inputs/outputs, query-key/value)
        self.grouped: list[dict] = []
        # parameters read directly by the forward pass, once claimed: name -> value
        self.claimed: dict[str, Value] = {}
        # every attention, for the continuous groups of its heads (canonicalize.attention),
        # and the scores whose raw values (before a softmax over keys) reach more than it
        self.attentions: list[dict] = []
        self.spoiled: set[str] = set()

    def name(self, tensor: str) -> str:
        """The state name the spec uses for ``tensor`` (one name per tied tensor)."""
        return self.alias.get(tensor, tensor)

    # --- constraints -------------------------------------------------------------------
    def terminal(self, chans: tuple[Chan, ...] | list[Chan]) -> None:
        """The factors of these channels reach a place that allows none of them."""
        for chan in chans:
            for atom, kind in chan.terms:
                if kind == "full":
                    self.no_magnitude.add(atom)
                self.no_sign.add(atom)

    def pin(self, chans: tuple[Chan, ...] | list[Chan]) -> None:
        """These channels cannot be permuted."""
        for chan in chans:
            if chan.perm is not None:
                self.perms.union(chan.perm, FIXED)

    def mark(self, chans: tuple[Chan, ...], origin: str) -> tuple[Chan, ...]:
        """The same channels, each unit tied to a fresh atom of ``origin``: units marked by
        different places (a slice, a block of a grouped convolution) land in different groups."""
        marker = self.perms.new(len(chans), origin)
        return tuple(
            Chan(
                self.perms.union(c.perm, marker + i) if c.perm is not None else None,
                c.terms,
                c.zero,
            )
            for i, c in enumerate(chans)
        )

    def note(self, node: fx.Node, text: str) -> None:
        self.notes.append(f"{describe(node)}: {text}")

    # --- walk --------------------------------------------------------------------------
    def run(self) -> Walk:
        for order, node in enumerate(self.gm.graph.nodes):
            self.order = order
            self.values[node] = self.visit(node)
        if self.output is None:
            raise SymmetryError("the traced model has no output")
        self.tie()
        return self

    def value(self, arg: object, node: fx.Node) -> Value:
        """The value of a tensor argument (a parameter read directly is claimed here)."""
        if not isinstance(arg, fx.Node) or self.values.get(arg) is None:
            raise SymmetryError(
                f"{describe(node)} takes a non-tensor argument where a tensor was expected"
            )
        value = self.values[arg]
        if isinstance(value, Pieces):
            raise SymmetryError(
                f"{describe(node)} takes a tuple of tensors where a tensor was expected"
            )
        if value.param is not None and not value.axes:
            value = self.claim(arg, value)
        if value.heads is not None:
            raise SymmetryError(
                f"{describe(node)} uses the scores of an attention in a way canonicalize does "
                "not support (scores may be masked, scaled, soft-maxed over keys, dropped out "
                "and multiplied with values)"
            )
        return value

    def tensor_inputs(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), found.append)
        return [n for n in dict.fromkeys(found) if isinstance(self.values.get(n), (Value, Pieces))]

    def shift_of(self, arg: object) -> tuple[str, ...]:
        """The bias translation carried by ``arg``, if ``arg`` feeds nothing else."""
        if isinstance(arg, fx.Node) and len(arg.users) == 1:
            value = self.values.get(arg)
            if isinstance(value, Value):
                return value.shift
        return ()

    def on_axis(self, value: Value, dim: int, node: fx.Node) -> Value:
        """``value`` with its features on axis ``dim`` (a fixed value fits any axis)."""
        dim = dim % max(1, len(value.shape))
        if value.axes == (dim,):
            return value
        if inert(value) and len(value.shape) > dim:
            return value._replace(chans=_fixed(value.shape[dim]), axes=(dim,), block=1, shift=())
        if len(value.axes) > 1 and value.split:
            raise SymmetryError(
                f"{value.split}; only reshapes that keep the channel axis (flattening to "
                "(batch, -1), squeezing trailing axes) are supported, or splits into attention "
                f"heads that an attention reads; here {describe(node)} reads the split features"
            )
        raise SymmetryError(
            f"{describe(node)} reads axis {dim} of a tensor of shape {value.shape} whose "
            f"features lie on axis {list(value.axes)}; not supported"
        )

    def visit(self, node: fx.Node) -> Value | Pieces | None:
        meta = node.meta.get("tensor_meta")
        shape = tuple(meta.shape) if isinstance(meta, TensorMetadata) else None
        if node.op == "placeholder":
            if shape is None:
                return None
            if meta.dtype in INTEGER_DTYPES or meta.dtype == torch.bool:
                return featureless(shape)  # token ids: no units
            return Value(_fixed(shape[1] if len(shape) > 1 else 0), 1, shape)
        if node.op == "get_attr":
            return self.get_attr(node, shape)
        if node.op == "output":
            return self.visit_output(node)
        if node.op == "call_module":
            module = self.gm.get_submodule(str(node.target))
            if isinstance(module, nn.MultiheadAttention):
                return self.multihead(node, layer_path(self.gm, node), module)
            first = self.values.get(node.args[0]) if node.args else None
            if isinstance(first, Value) and first.heads is not None and shape is not None:
                return self.scores_module(node, module, shape)
            if shape is None:
                raise SymmetryError(
                    f"{layer(layer_path(self.gm, node), module)} has no supported "
                    f"symmetry (it does not return one tensor); supported layers are "
                    f"{SUPPORTED_LAYERS}"
                )
            return self.visit_module(node, shape)
        if node.op not in ("call_function", "call_method"):
            raise SymmetryError(f"unsupported graph node '{node.name}' ({node.op})")
        if self.splits(node):
            return self.split(node)
        if node.target is operator.getitem and isinstance(self.values.get(node.args[0]), Pieces):
            return self.values[node.args[0]][node.args[1]]  # type: ignore[index]
        if shape is None:
            return None  # shape arithmetic (x.size(0), x.shape[1], ...)
        inputs = self.tensor_inputs(node)
        values = [self.values[n] for n in inputs]
        if all(isinstance(v, Value) and is_featureless(v) for v in values):
            return featureless(shape)  # masks, ids, fixed tables: nothing to move
        if any(isinstance(v, Value) and v.heads is not None for v in values):
            return self.scores_op(node, shape)
        if node.op == "call_function":
            return self.visit_function(node, shape)
        return self.visit_method(node, shape)

    def visit_output(self, node: fx.Node) -> None:
        out = node.args[0]
        value = self.values.get(out) if isinstance(out, fx.Node) else None
        if not isinstance(value, Value):
            raise SymmetryError("the model must return a single tensor (not a tuple or dict)")
        if value.param is not None and not value.axes:
            value = self.claim(out, value)
        self.pin(value.chans)
        self.output = value
        return None

    # --- elementwise maps ----------------------------------------------------------------
    def elementwise(self, node: fx.Node, kind: ops.Kind, value: Value, shape, shift=()):
        """Apply an elementwise map of the given kind (see :mod:`canonicalize.ops`)."""
        chans = value.chans
        if kind == "homogeneous":
            for chan in chans:
                self.no_sign.update(atom for atom, _ in chan.terms)
        elif kind == "odd":
            for chan in chans:
                self.no_magnitude.update(atom for atom, k in chan.terms if k == "full")
        elif kind == "sign":
            chans = tuple(
                Chan(c.perm, frozenset((a, "sign") for a, _ in c.terms), c.zero) for c in chans
            )
        elif kind == "even":
            # f(-z) = f(z) (a square, an absolute value): signs vanish, magnitudes stop here
            for chan in chans:
                self.no_magnitude.update(atom for atom, k in chan.terms if k == "full")
            chans = tuple(Chan(c.perm, frozenset(), c.zero) for c in chans)
        elif kind == "pointwise":
            self.terminal(chans)
            # f(0) need not be 0: zero channels stop being known zeros
            chans = tuple(Chan(c.perm, frozenset(), False) for c in chans)
        return value._replace(chans=chans, shape=tuple(shape), shift=shift, param=None)

    def same_channels(self, value: Value, shape, shift=()) -> Value:
        return value._replace(shape=tuple(shape), shift=shift, param=None)

    # --- modules -----------------------------------------------------------------------
    def visit_module(self, node: fx.Node, shape) -> Value:
        name = layer_path(self.gm, node)
        module = self.gm.get_submodule(str(node.target))
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            return self.weight_layer(node, name, module, shape)
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self.batchnorm(node, name, module, shape)
        if isinstance(module, nn.Embedding):
            return self.embedding_module(node, name, module, shape)
        if isinstance(module, nn.LayerNorm):
            return self.layer_norm_module(node, name, module, shape)
        if getattr(nn, "RMSNorm", None) is not None and isinstance(module, nn.RMSNorm):
            return self.rms_norm_module(node, name, module, shape)
        value = self.value(node.args[0], node)
        if isinstance(module, ops.SOFTMAX_MODULES):
            return self.softmax(node, value, module.dim, shape)
        if isinstance(module, nn.Flatten):
            return self.flatten_dims(node, value, module.start_dim, module.end_dim, shape)
        if isinstance(module, nn.Unflatten):
            return self.reshape(node, value, shape)
        kind = ops.module_kind(module)

        if kind is None:
            raise SymmetryError(
                f"{layer(name, module)} has no supported symmetry; supported "
                f"layers are {SUPPORTED_LAYERS}. Replace it by a supported layer or canonicalize "
                "a model without it."
            )
        if isinstance(module, (*_POOLS, nn.PReLU)) and value.axes != (1,):
            if not inert(value):
                raise SymmetryError(
                    f"{layer(name, module)} acts along axis 1, but the features of its input "
                    f"(shape {value.shape}) lie on axis {list(value.axes)}; not supported"
                )
            value = self.on_axis(value, 1, node)
        if isinstance(module, nn.PReLU):
            self.prelu(node, name, module, value)
        shift: tuple[str, ...] = ()
        if isinstance(module, ops.SHIFT_MODULES) or (
            isinstance(module, (nn.AvgPool1d, nn.AvgPool2d))
            and (_no_padding(module.padding) or not module.count_include_pad)
        ):
            shift = self.shift_of(node.args[0])
        return self.elementwise(node, kind, value, shape, shift)

    def prelu(self, node: fx.Node, name: str, module: nn.PReLU, value: Value) -> None:
        if module.num_parameters == 1:
            return
        if module.num_parameters != len(value.chans):
            raise SymmetryError(f"{describe(node)}: PReLU has {module.num_parameters} slopes")
        for pos, chan in enumerate(value.chans):
            if chan.perm is not None:
                self.axes.append(
                    (chan.perm, self.name(state_name(name, "weight")), 0, 1, pos, None)
                )

    def once(self, name: str, module: nn.Module) -> None:
        if name in self.called:
            raise SymmetryError(
                f"{layer(name, module)} is called more than once in the "
                "forward pass; layers with shared weights are not supported"
            )
        self.called.add(name)

    def read_columns(
        self,
        chans: tuple[Chan, ...],
        tensor: str,
        dim: int = 1,
        block: int = 1,
        row_slice: tuple[int, int] | None = None,
    ) -> None:
        """Record that ``tensor``'s axis ``dim`` (in ``row_slice``) holds ``chans``."""
        tensor = self.name(tensor)
        for pos, chan in enumerate(chans):
            if chan.perm is not None:
                self.axes.append((chan.perm, tensor, dim, block, pos, row_slice))
            for atom, kind in chan.terms:
                self.columns.append((atom, tensor, dim, block, pos, row_slice, kind))

    def new_units(self, name: str, count: int, perm: list[int | None] | None = None):
        """Fresh scale atoms (and perm atoms unless given) for ``count`` rows of a layer."""
        if perm is None:
            first = self.perms.new(count, name)
            perm = [first + i for i in range(count)]
        first_scale = self.scales.new(count, name)
        return perm, [first_scale + i for i in range(count)]

    def add_layer(
        self, name, kind, rows, perm, scale, inputs, dim: int = 0, positions=None
    ) -> None:
        """Record a layer's rows: unit ``i`` (``perm[i]``, ``scale[i]``) sits at position
        ``positions[i]`` (default ``i``) along axis ``dim`` of every tensor in ``rows``;
        ``inputs`` is the value it reads (its channels, or a list of perm atoms)."""
        rows = tuple(self.name(r) for r in rows)
        positions = list(range(len(perm))) if positions is None else list(positions)
        for pos, atom in zip(positions, perm, strict=True):
            if atom is not None:
                for row in rows:
                    self.axes.append((atom, row, dim, 1, pos, None))
        if inputs is None:
            input_atoms = []
        elif isinstance(inputs, Value):
            input_atoms = [c.perm for c in inputs.chans if c.perm is not None]
        else:
            input_atoms = [a for a in inputs if a is not None]
        self.layers.append(
            dict(
                name=name,
                kind=kind,
                rows=rows,
                perm=list(perm),
                scale=list(scale),
                inputs=input_atoms,
                order=self.order,
                dim=dim,
                positions=positions,
            )
        )

    def weight_layer(self, node, name, module, shape) -> Value:
        self.once(name, module)
        value = self.value(node.args[0], node)
        if isinstance(module, nn.Linear):
            if len(value.shape) < 2:
                raise SymmetryError(
                    f"{layer(name, module)} is applied to a {len(value.shape)}-D tensor; "
                    "canonicalize supports it on (batch, ..., features) inputs"
                )
            value = self.on_axis(value, len(value.shape) - 1, node)
        else:
            expected = 3 if isinstance(module, nn.Conv1d) else 4
            if len(value.shape) != expected:
                raise SymmetryError(
                    f"{layer(name, module)} is applied to a {len(value.shape)}-D "
                    f"tensor; canonicalize supports it on {expected}-D (batch, channels, ...) "
                    "inputs"
                )
            value = self.on_axis(value, 1, node)
        weight, bias = state_name(name, "weight"), state_name(name, "bias")
        rows = [weight] + ([bias] if module.bias is not None else [])
        n_out = module.weight.shape[0]
        groups = getattr(module, "groups", 1)
        shift = (bias,) if module.bias is not None and len(node.users) == 1 else ()
        kind = "linear" if isinstance(module, nn.Linear) else "conv"
        if groups == 1:
            self.read_columns(value.chans, weight, block=value.block)
            perm, scale = self.new_units(name, n_out)
            self.add_layer(name, kind, rows, perm, scale, value)
        elif module.in_channels == groups and n_out == groups:
            # depthwise: output channel c reads input channel c only, so it is the same unit;
            # the input's factor divides the row (dim 0), the row has a factor of its own
            perm = [c.perm for c in value.chans]
            for pos, chan in enumerate(value.chans):
                for atom, k in chan.terms:
                    self.columns.append((atom, self.name(weight), 0, 1, pos, None, k))
            perm, scale = self.new_units(name, n_out, perm)
            self.add_layer(name, "depthwise", rows, perm, scale, None)
        else:
            # grouped convolution: output block g (rows g*b ... g*b+b-1) reads input block g
            # (channels g*a ... g*a+a-1) through weight[:, 0:a]. Inside a block, input channels
            # permute and scale as the columns of those rows only; each block's inputs become
            # a group of their own, each block's outputs too. Whole blocks permute together
            # (inputs and outputs jointly) when the blocks are alike: resolve checks that.
            a, b = module.in_channels // groups, n_out // groups
            perm = []
            inputs: list[list[int | None]] = []
            for g in range(groups):
                block = self.mark(value.chans[g * a : (g + 1) * a], f"{name}/in{g}")
                self.read_columns(block, weight, row_slice=(g * b, (g + 1) * b))
                inputs.append([c.perm for c in block])
                first = self.perms.new(b, f"{name}/group{g}")
                perm.extend(first + i for i in range(b))
            self.grouped.append(
                dict(
                    name=name,
                    node=node,
                    inputs=inputs,
                    outputs=[perm[g * b : (g + 1) * b] for g in range(groups)],
                    markers=(f"{name}/in", f"{name}/group"),
                    kind="convolution",
                )
            )
            perm, scale = self.new_units(name, n_out, perm)
            self.add_layer(name, kind, rows, perm, scale, value)
        chans = tuple(Chan(p, frozenset({(s, "full")})) for p, s in zip(perm, scale, strict=True))
        axes = (len(shape) - 1,) if isinstance(module, nn.Linear) else (1,)
        return Value(chans, 1, shape, shift, axes=axes)

    def batchnorm(self, node, name, module, shape) -> Value:
        self.once(name, module)
        value = self.on_axis(self.value(node.args[0], node), 1, node)
        tracked = module.track_running_stats and module.running_mean is not None
        self.batchnorms[name] = BatchNormInfo(name, float(module.eps), bool(module.affine), tracked)
        for pos, chan in enumerate(value.chans):
            for atom, kind in chan.terms:
                if kind == "full" and not tracked:
                    # batch statistics in eval mode: sqrt(c^2 var + eps) != c sqrt(var + eps)
                    self.no_magnitude.add(atom)
                if not module.affine:
                    self.no_sign.add(atom)
                self.absorbs.append((atom, name, pos, kind))
        if value.block == 1:
            for bias in self.shift_of(node.args[0]):
                self.bias_folds.append(BiasFold(bias, name))
        if tracked:
            for buffer in ("running_mean", "running_var"):
                for pos, chan in enumerate(value.chans):
                    if chan.perm is not None:
                        self.axes.append((chan.perm, state_name(name, buffer), 0, 1, pos, None))
        if not module.affine:
            chans = tuple(Chan(c.perm, frozenset()) for c in value.chans)
            return Value(chans, value.block, shape)
        perm, scale = self.new_units(name, len(value.chans), [c.perm for c in value.chans])
        rows = (state_name(name, "weight"), state_name(name, "bias"))
        self.add_layer(name, "batchnorm", rows, perm, scale, None)
        chans = tuple(Chan(p, frozenset({(s, "full")})) for p, s in zip(perm, scale, strict=True))
        return Value(chans, value.block, shape)

    # --- structure -----------------------------------------------------------------------
    def flatten_dims(self, node: fx.Node, value: Value, start: int, end: int, shape) -> Value:
        """``flatten(start, end)`` in any form: ``flatten(1)`` of a channel axis makes blocks of
        its channels; any other merge (of token or spatial axes, timm's ``flatten(2)``) is a
        reshape, supported where it keeps the feature axes whole."""
        if value.axes != (1,) and not inert(value):
            return self.reshape(node, value, shape)
        if start != 1 or end not in (-1, len(value.shape) - 1):
            return self.reshape(node, value, shape)
        return self.flatten(node, self.on_axis(value, 1, node), shape)

    def flatten(self, node: fx.Node, value: Value, shape) -> Value:
        spatial = math.prod(value.shape[2:])
        shift = self.shift_of(node.args[0]) if spatial == 1 else ()
        return Value(value.chans, value.block * spatial, shape, shift)

    def reshape(self, node: fx.Node, value: Value, shape) -> Value:
        shape = tuple(shape)
        if shape == value.shape:
            return self.same_channels(value, shape, self.shift_of(node.args[0]))
        if value.axes == (1,):
            if len(value.shape) >= 2 and shape == (value.shape[0], math.prod(value.shape[1:])):
                return self.flatten(node, value, shape)
            if (
                value.block == 1
                and len(value.shape) >= 2
                and len(shape) >= 2
                and shape[:2] == value.shape[:2]
            ):
                # the channel axis stays where it is (squeeze/unsqueeze of trailing axes)
                spatial = math.prod(value.shape[2:]) == 1 and math.prod(shape[2:]) == 1
                shift = self.shift_of(node.args[0]) if spatial else ()
                return self.same_channels(value, shape, shift)
        return self.reshape_general(node, value, shape)

    def add(self, node: fx.Node, shape, subtract: bool = False) -> Value:
        if node.kwargs.get("alpha", 1) != 1:
            raise SymmetryError(f"{describe(node)}: torch.add with alpha is not supported")
        a, b = node.args[0], node.args[1]
        if not isinstance(a, fx.Node):
            a, b = b, a
        left = self.value(a, node)
        if not isinstance(b, fx.Node):
            if b != 0:
                # a constant offset pins every factor that reaches it
                self.terminal(left.chans)
            return left._replace(shape=tuple(shape), shift=(), param=None)
        right = self.value(b, node)
        ndim = len(shape)
        lifted_left, lifted_right = lift(left, ndim), lift(right, ndim)
        if lifted_left.axes != lifted_right.axes and (inert(left) or inert(right)):
            return self.offset(node, lifted_left, lifted_right, shape)
        left, right = lifted_left, lifted_right
        if (
            len(left.chans) != len(right.chans)
            or left.block != right.block
            or left.axes != right.axes
        ):
            raise SymmetryError(
                f"{describe(node)} adds tensors of shapes {left.shape} and {right.shape}; only "
                "additions of tensors with the same channels (residual streams) are supported"
            )
        chans = tuple(self.merge(x, y) for x, y in zip(left.chans, right.chans, strict=True))
        # translations of both summands reach the sum (a bias on either side is a shift of it)
        shift = self.shift_of(node.args[0]) if subtract else self.shift_of(a) + self.shift_of(b)
        return left._replace(
            chans=chans,
            shape=tuple(shape),
            shift=shift,
            param=None,
            split=left.split or right.split,
        )

    def offset(self, node: fx.Node, left: Value, right: Value, shape) -> Value:
        """A sum of a tensor with units and a fixed one: a constant offset."""
        if inert(left) and inert(right):
            return featureless(shape)
        moving, fixed_part = (right, left) if inert(left) else (left, right)
        self.terminal(moving.chans)
        if any(fixed_part.shape[a] != 1 for a in moving.axes):
            self.pin(moving.chans)
            if not fixed_part.axes:  # not the model's input: a buffer or a constant
                self.note(
                    node,
                    "a fixed tensor (not a parameter) that varies along the features is added "
                    "to them (a fixed position table?): those units cannot be permuted",
                )
        return moving._replace(shape=tuple(shape), shift=(), param=None)

    def merge(self, x: Chan, y: Chan) -> Chan:
        """Two channels that meet in one: a sum, or positions of one concatenation along space."""
        if x.zero and y.zero:
            return x
        if y.zero:
            return Chan(x.perm, x.terms)
        if x.zero:
            return Chan(y.perm, y.terms)
        if x.perm is None or y.perm is None:
            self.pin([x, y])
            perm = None
        else:
            perm = self.perms.union(x.perm, y.perm)
        terms = x.terms | y.terms
        if not x.terms or not y.terms:
            self.terminal([x, y])
            return Chan(perm, terms)
        atoms = [atom for atom, _ in terms]
        for atom in atoms[1:]:
            self.scales.union(atoms[0], atom)
        if len({kind for _, kind in terms}) > 1:
            self.no_magnitude.add(atoms[0])
        return Chan(perm, terms)

    def product(self, node: fx.Node, shape, divide: bool = False) -> Value:
        a, b = node.args[0], node.args[1]
        if not isinstance(a, fx.Node) and not isinstance(b, fx.Node):
            raise SymmetryError(f"{describe(node)} has no tensor argument")
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
            if divide and isinstance(b, fx.Node):
                raise SymmetryError(
                    f"{describe(node)} divides a constant by a tensor; not supported"
                )
            tensor = a if isinstance(a, fx.Node) else b
            value = self.value(tensor, node)
            return value._replace(shape=tuple(shape), shift=(), param=None)
        if a is b and not divide:
            return self.elementwise(node, "even", self.value(a, node), shape)
        left, right = self.value(a, node), self.value(b, node)
        ndim = len(shape)
        lifted_left, lifted_right = lift(left, ndim), lift(right, ndim)
        if lifted_left.axes != lifted_right.axes and (inert(left) or inert(right)):
            return self.scaled(node, lifted_left, lifted_right, shape, divide)
        gain = self.gain(node, lifted_left, lifted_right, shape, divide)
        if gain is not None:
            return gain
        if len(right.chans) == 1 and len(left.chans) > 1:
            left, right = right, left
        if len(left.chans) == 1 and len(right.chans) > 1 and right.axes == (1,):
            # one value per example scales every channel: its own factor is held fixed
            self.terminal(left.chans)
            self.pin(left.chans)
            return Value(right.chans, right.block, shape)
        left, right = lift(left, ndim), lift(right, ndim)
        if len(left.chans) != len(right.chans) or left.axes != right.axes:
            raise SymmetryError(
                f"{describe(node)} multiplies tensors of shapes {left.shape} and {right.shape}; "
                "only products of tensors with the same channels (gates) are supported"
            )
        chans = []
        fixed_second = False
        for x, y in zip(left.chans, right.chans, strict=True):
            if x.zero or y.zero:
                chans.append(Chan(x.perm if x.zero else y.perm, frozenset(), True))
                continue
            if x.perm is None or y.perm is None:
                self.pin([x, y])
                perm = None
            else:
                perm = self.perms.union(x.perm, y.perm)
            if divide or (x.terms and y.terms):
                # the factor of the second operand is held fixed (x / y, or x * y with two
                # scaled operands: their factors are not separable per unit)
                fixed_second = fixed_second or bool(y.terms and x.terms)
                self.terminal([y])
                terms = x.terms
                if x.terms & y.terms:
                    self.terminal([x])
            else:
                terms = x.terms | y.terms
            chans.append(Chan(perm, terms))
        if fixed_second:
            self.note(node, "both factors of the product carry scales; the second one is fixed")
        return left._replace(
            chans=tuple(chans), shape=tuple(shape), shift=(), param=None, heads=None
        )

    def scaled(self, node: fx.Node, left: Value, right: Value, shape, divide: bool) -> Value:
        """A product of a tensor with units and a fixed one (a mask, a normalizer)."""
        if inert(left) and inert(right):
            return featureless(shape)
        if divide and inert(left):
            raise SymmetryError(
                f"{describe(node)} divides a fixed tensor by features; not supported"
            )
        moving, fixed_part = (right, left) if inert(left) else (left, right)
        if any(fixed_part.shape[a] != 1 for a in moving.axes):
            # a fixed weight per feature: scales pass, the order does not
            self.pin(moving.chans)
            self.note(
                node,
                "a fixed tensor (not a parameter) that varies along the features multiplies "
                "them: those units cannot be permuted",
            )
        return moving._replace(shape=tuple(shape), shift=(), param=None)

    def concatenate(self, node: fx.Node, shape) -> Value:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        values = [self.value(t, node) for t in tensors]  # type: ignore[union-attr]
        ndim = len(values[0].shape)
        dim = dim % ndim
        if any(v.axes != (1,) and not inert(v) for v in values):
            return self.concatenate_general(node, values, dim, shape)
        if dim == 0:
            raise SymmetryError(f"{describe(node)} concatenates along the batch axis")
        values = [self.on_axis(v, 1, node) for v in values]
        if dim == 1:
            if len({v.block for v in values}) != 1:
                raise SymmetryError(f"{describe(node)} concatenates flattened maps of other sizes")
            chans = tuple(c for v in values for c in v.chans)
            seen: dict[int, int] = {}
            for chan in chans:
                if chan.perm is not None and not chan.zero:
                    root = self.perms.find(chan.perm)
                    seen[root] = seen.get(root, 0) + 1
            repeated = [
                c for c in chans if c.perm is not None and seen.get(self.perms.find(c.perm), 0) > 1
            ]
            if repeated:
                self.pin(repeated)
                self.terminal(repeated)
                self.note(node, "a channel is concatenated with itself; its unit is fixed")
            return Value(chans, values[0].block, shape)
        first = values[0]
        for other in values[1:]:
            first = Value(
                tuple(self.merge(x, y) for x, y in zip(first.chans, other.chans, strict=True)),
                first.block,
                shape,
            )
        return Value(first.chans, first.block, shape)

    def getitem(self, node: fx.Node, shape) -> Value | None:
        value = self.value(node.args[0], node)
        index = node.args[1]
        if not isinstance(index, tuple):
            index = (index,)
        if value.axes != (1,) and not inert(value):
            return self.getitem_general(node, value, index, shape)
        if any(isinstance(i, fx.Node) for i in index) or index.count(Ellipsis) > 1:
            raise SymmetryError(f"{describe(node)}: indexing with tensors is not supported")
        if Ellipsis in index:
            at = index.index(Ellipsis)
            fill = len(value.shape) - (len(index) - 1 - index.count(None))
            index = index[:at] + (slice(None),) * fill + index[at + 1 :]
        if None in index or any(not isinstance(i, slice) for i in index[:2]):
            if inert(value):
                return featureless(shape)
            raise SymmetryError(
                f"{describe(node)} indexes {value.shape} with {index}; only slices that keep the "
                "batch and channel axes are supported"
            )
        value = self.on_axis(value, 1, node)
        full = slice(None)
        if len(index) >= 1 and index[0] != full:
            raise SymmetryError(f"{describe(node)} slices the batch axis")
        spatial_only = all(i == full for i in index[:2])
        if value.block != 1 and len(index) > 1 and index[1] != full:
            raise SymmetryError(f"{describe(node)} slices a flattened feature map")
        chans = value.chans
        if not spatial_only:
            positions = kept(node, index[1], len(chans), shape[1] // value.block)
            chans = tuple(chans[i] for i in positions)
            if len(chans) < len(value.chans):
                # the slice tells the kept channels from the others: mark them
                chans = self.mark(chans, f"slice:{node.name}")
            elif list(positions) != list(range(len(chans))):
                raise SymmetryError(f"{describe(node)} reorders channels; not supported")
        shift = self.shift_of(node.args[0]) if spatial_only else ()
        return Value(chans, value.block, shape, shift)

    def pad(self, node: fx.Node, shape) -> Value:
        value = self.value(node.args[0], node)
        if value.axes != (1,) and not inert(value):
            return self.pad_general(node, value, shape)
        value = self.on_axis(value, 1, node)
        widths = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        fill = node.args[3] if len(node.args) > 3 else node.kwargs.get("value", None)
        fill = 0.0 if fill is None else fill
        ndim = len(value.shape)
        pairs = [(widths[i], widths[i + 1]) for i in range(0, len(widths), 2)]  # last dim first
        channel = ndim - 2  # index of the channel axis in pairs
        before, after = pairs[channel] if channel < len(pairs) else (0, 0)
        spatial_padded = any(p != (0, 0) for p in pairs[:channel])
        if value.block != 1 and (before, after) != (0, 0):
            raise SymmetryError(f"{describe(node)} pads a flattened feature map")
        if mode == "constant" and fill != 0:
            self.terminal(value.chans)
        if (before, after) == (0, 0):
            shift = () if mode == "constant" and spatial_padded else self.shift_of(node.args[0])
            return Value(value.chans, value.block, shape, shift)
        if mode != "constant":
            raise SymmetryError(f"{describe(node)} pads channels in mode {mode!r}")
        zero = fill == 0
        first = self.perms.new(before + after, f"pad:{node.name}")
        new = [
            Chan(first + i, frozenset(), zero) if zero else Chan(None, frozenset())
            for i in range(before + after)
        ]
        return Value(tuple(new[:before]) + value.chans + tuple(new[before:]), 1, shape)

    def softmax(self, node: fx.Node, value: Value, dim, shape) -> Value:
        ndim = len(value.shape)
        if dim is None:
            dim = 0 if ndim in (0, 1, 3) else 1  # torch's legacy implicit choice
        self.terminal(value.chans)
        if dim % ndim in value.axes:
            # a row-wise map over the channels: each output is its own fixed unit
            self.pin(value.chans)
        chans = tuple(Chan(c.perm, frozenset()) for c in value.chans)
        return value._replace(chans=chans, shape=tuple(shape), shift=(), param=None)

    def reduce(self, node: fx.Node, value: Value, dims, kind: str, shape) -> Value:
        """A mean, sum or max over axes; the output's shape (kept or dropped axes) comes from
        ShapeProp, so ``keepdim`` needs no handling here."""
        ndim = len(value.shape)
        if dims is None:
            dims = tuple(range(ndim))
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        dims = tuple(d % ndim for d in dims)
        if value.axes != (1,) and not inert(value):
            return self.reduce_general(node, value, dims, kind, shape)
        if 0 in dims:
            raise SymmetryError(f"{describe(node)} reduces over the batch axis")
        if 1 in dims:
            # a sum over channels is invariant to their order, not to their scales
            if kind in ops.NORM_REDUCTIONS:
                for chan in value.chans:
                    self.no_magnitude.update(a for a, k in chan.terms if k == "full")
            else:
                self.terminal(value.chans)
            return Value(_fixed(shape[1] if len(shape) > 1 else 0), 1, shape)
        if value.block != 1:
            raise SymmetryError(f"{describe(node)} reduces a flattened feature map")
        shift = self.shift_of(node.args[0]) if kind in ("mean", "amax") else ()
        if kind == "amax":
            for chan in value.chans:
                self.no_sign.update(atom for atom, _ in chan.terms)
        elif kind in ops.EVEN_REDUCTIONS:
            self.terminal(value.chans)
        return Value(value.chans, 1, shape, shift)

    # --- functions and methods -----------------------------------------------------------
    def visit_function(self, node: fx.Node, shape) -> Value | None:
        target = node.target
        if target in ops.ADD_FUNCTIONS:
            return self.add(node, shape)
        if target in ops.SUB_FUNCTIONS:
            return self.add(node, shape, subtract=True)
        if target in ops.MUL_FUNCTIONS:
            return self.product(node, shape)
        if target in ops.DIV_FUNCTIONS:
            return self.product(node, shape, divide=True)
        if target is torch.cat or target is torch.concat or target is torch.concatenate:
            return self.concatenate(node, shape)
        if target is torch.stack:
            return self.stack(node, shape)
        if target is operator.getitem:
            return self.getitem(node, shape)
        if target is F.pad:
            return self.pad(node, shape)
        if target in ops.SOFTMAX_FUNCTIONS:
            value = self.value(node.args[0], node)
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            return self.softmax(node, value, dim, shape)
        if target is torch.flatten:
            value = self.value(node.args[0], node)
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self.flatten_dims(node, value, start, end, shape)
        if target in (torch.reshape, torch.squeeze, torch.unsqueeze):
            return self.reshape(node, self.value(node.args[0], node), shape)
        if target in (torch.mean, torch.sum, torch.amax, *ops.EVEN_REDUCTION_FUNCTIONS):
            value = self.value(node.args[0], node)
            name = ops.reduction_name(target)
            return self.reduce(node, value, ops.reduction_dims(node, name), name, shape)
        handled = self.visit_sequence_function(node, shape)
        if handled is not None:
            return handled
        if target is F.hardtanh:
            lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
            hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val", 1.0)
            kind: ops.Kind | None = "odd" if lo == -hi else "pointwise"
        elif target in ops.POW_FUNCTIONS:
            kind = ops.power_kind(node)
        else:
            kind = ops.function_kind(target)
        return self.apply_kind(node, kind, shape, ops.SHIFT_FUNCTIONS, target)

    def apply_kind(self, node: fx.Node, kind, shape, shifting, key) -> Value:
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        tensors += [a for a in node.kwargs.values() if isinstance(a, fx.Node)]
        tensors = [t for t in tensors if self.values.get(t) is not None]
        if kind is None or len(tensors) != 1:
            if kind == "pointwise" and len(tensors) > 1:
                # an elementwise map of several tensors (torch.maximum, ...): permutations only
                values = [self.value(t, node) for t in tensors]
                chans = values[0].chans
                for other in values[1:]:
                    if len(other.chans) != len(chans) or other.axes != values[0].axes:
                        break
                    chans = tuple(self.merge(x, y) for x, y in zip(chans, other.chans, strict=True))
                else:
                    for v in values:
                        self.terminal(v.chans)
                    chans = tuple(Chan(c.perm, frozenset()) for c in chans)
                    return values[0]._replace(chans=chans, shape=tuple(shape), shift=(), param=None)
            raise SymmetryError(
                f"{describe(node)} has no supported symmetry; supported operations are "
                f"{SUPPORTED_LAYERS}. Move it out of the model or replace it by a supported one."
            )
        value = self.value(tensors[0], node)
        if node.args and node.args[0] is not tensors[0]:
            raise SymmetryError(f"{describe(node)}: the tensor must be the first argument")
        if key in ops.AXIS_ONE_FUNCTIONS and value.axes != (1,):
            if not inert(value):
                raise SymmetryError(
                    f"{describe(node)} acts along axis 1, but the features of its input (shape "
                    f"{value.shape}) lie on axis {list(value.axes)}; not supported"
                )
            value = self.on_axis(value, 1, node)
        shift = self.shift_of(node.args[0]) if key in shifting else ()
        if key in (F.avg_pool1d, F.avg_pool2d, torch.avg_pool1d):
            padding = node.args[3] if len(node.args) > 3 else node.kwargs.get("padding", 0)
            if _no_padding(padding):
                shift = self.shift_of(node.args[0])
        return self.elementwise(node, kind, value, shape, shift)

    def visit_method(self, node: fx.Node, shape) -> Value | None:
        method = str(node.target)
        if method in ops.SHAPE_METHODS:
            return None
        if method in ("add", "add_", "__add__", "__iadd__"):
            return self.add(node, shape)
        if method in ("sub", "sub_"):
            return self.add(node, shape, subtract=True)
        if method in ("mul", "mul_"):
            return self.product(node, shape)
        if method in ("div", "div_"):
            return self.product(node, shape, divide=True)
        handled = self.visit_sequence_method(node, shape)
        if handled is not None:
            return handled
        value = self.value(node.args[0], node)
        if method == "flatten":
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self.flatten_dims(node, value, start, end, shape)
        if method in ("view", "reshape", "squeeze", "unsqueeze", "view_as", "reshape_as"):
            return self.reshape(node, value, shape)
        if method in ("softmax", "log_softmax"):
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            return self.softmax(node, value, dim, shape)
        if method in ("mean", "sum", "amax", *ops.EVEN_REDUCTION_METHODS):
            return self.reduce(node, value, ops.reduction_dims(node, method), method, shape)
        if method in ("pow", "pow_", "__pow__"):
            return self.apply_kind(node, ops.power_kind(node), shape, ops.SHIFT_METHODS, method)
        return self.apply_kind(node, ops.method_kind(method), shape, ops.SHIFT_METHODS, method)


def _no_padding(padding: object) -> bool:
    if isinstance(padding, str):
        return padding == "valid"
    if isinstance(padding, (tuple, list)):
        return all(p == 0 for p in padding)
    return padding == 0
