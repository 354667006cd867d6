"""Linear reshuffles between an attention and its projections, read off the traced graph.

The continuous groups of a head (:mod:`canonicalize.heads`) act on whole rows and columns of
the projections: ``W_Q -> A W_Q`` passes to the scores only if nothing but a linear map that
leaves each feature a feature (a view, a transpose, a split into heads, a cast, dropout, a
product with a number) lies between the query projection and the scores. A permutation or a
scale per feature passes many more operations (any elementwise map), so the walk's atoms
cannot tell; these checks read the graph itself. Every node on such a path must feed nothing
else (besides reading its shape), or the map would reach that other use too.
"""

from __future__ import annotations

import operator
from numbers import Number

import torch
import torch.nn.functional as F
from torch import fx, nn

_METHODS = frozenset(
    {
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "transpose",
        "swapaxes",
        "swapdims",
        "permute",
        "movedim",
        "contiguous",
        "flatten",
        "unflatten",
        "squeeze",
        "unsqueeze",
        "to",
        "float",
        "double",
        "half",
        "bfloat16",
        "type",
        "type_as",
        "clone",
    }
)
_FUNCTIONS = frozenset(
    {
        torch.transpose,
        torch.swapaxes,
        torch.swapdims,
        torch.permute,
        torch.movedim,
        torch.reshape,
        torch.flatten,
        torch.squeeze,
        torch.unsqueeze,
        F.dropout,
    }
)
_SPLITS = frozenset({torch.split, torch.chunk, torch.unbind, torch.tensor_split})
_SPLIT_METHODS = frozenset({"split", "chunk", "unbind", "tensor_split", "split_with_sizes"})
_SCALINGS = frozenset({operator.mul, operator.truediv, torch.mul, torch.div})
_SCALING_METHODS = frozenset({"mul", "div", "__mul__", "__truediv__", "mul_", "div_"})
_SHAPE_READS = frozenset({"size", "dim", "numel", "ndimension", "nelement"})
_SHAPE_ATTRS = frozenset({"shape", "ndim", "dtype", "device"})


def _reads_shape(node: fx.Node) -> bool:
    """Whether ``node`` reads only the metadata of its input (its shape, rank, dtype)."""
    if node.op == "call_method":
        return str(node.target) in _SHAPE_READS
    return node.op == "call_function" and node.target is getattr and node.args[1] in _SHAPE_ATTRS


def users(node: fx.Node) -> list[fx.Node]:
    """The nodes that use ``node``'s values (not only its shape)."""
    return [u for u in node.users if not _reads_shape(u)]


def _is_split(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _SPLITS
    return node.op == "call_method" and str(node.target) in _SPLIT_METHODS


def _tensor_argument(node: fx.Node) -> fx.Node | None:
    """The one tensor a linear reshuffle acts on, or ``None`` when ``node`` is not one."""
    if node.op == "call_module":
        return None
    first = node.args[0] if node.args else None
    if not isinstance(first, fx.Node):
        return None
    if node.op == "call_method":
        name = str(node.target)
        if name in _METHODS or name in _SPLIT_METHODS:
            return first
        if name in _SCALING_METHODS and all(isinstance(a, Number) for a in node.args[1:]):
            return first
        return None
    if node.op != "call_function":
        return None
    if node.target in _FUNCTIONS or node.target in _SPLITS:
        return first
    if node.target is getattr and node.args[1] in ("T", "mT"):
        return first
    if node.target is operator.getitem and _is_split(first):
        return first
    if node.target in _SCALINGS and len(node.args) == 2:
        other = node.args[1]
        if isinstance(other, Number):
            return first
    return None


def _passes(gm: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    """What ``node`` passes on unchanged but for a linear reshuffle (or ``None``)."""
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if isinstance(module, (nn.Dropout, nn.Identity)) and isinstance(node.args[0], fx.Node):
            return node.args[0]
        return None
    return _tensor_argument(node)


def from_linear(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether ``node`` is the output of an ``nn.Linear`` after linear reshuffles only, every
    node on the way (``node`` itself included) feeding nothing but the next one (the pieces of
    a split feed one getitem each)."""
    current = node
    if len(users(current)) != 1:
        return False
    while True:
        if current.op == "call_module" and isinstance(
            gm.get_submodule(str(current.target)), nn.Linear
        ):
            return True
        parent = _passes(gm, current)
        if parent is None:
            return False
        if _is_split(parent):
            if len({u.args[1] for u in users(parent)}) != len(users(parent)):
                return False
        elif len(users(parent)) != 1:
            return False
        current = parent


def to_linears(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether everything that reads ``node`` reaches ``nn.Linear`` layers (as their input)
    through linear reshuffles only."""
    frontier = [node]
    while frontier:
        current = frontier.pop()
        readers = users(current)
        if not readers:
            return False  # it reaches the output (or nothing) without a projection
        for user in readers:
            if user.op == "call_module":
                module = gm.get_submodule(str(user.target))
                if isinstance(module, nn.Linear) and user.args[0] is current:
                    continue
            if _passes(gm, user) is not current:
                return False
            frontier.append(user)
    return True
