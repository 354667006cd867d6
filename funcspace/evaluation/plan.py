"""What tracing an architecture with ``torch.fx`` tells the engine.

A :class:`Plan` records the traced graph, whether the model is a plain chain of ops the
``"stacked"`` strategy can run (and the chain's widths), which layer the input reaches first
(for :func:`~funcspace.evaluation.evaluate_affine`'s first-layer reuse) and the BatchNorm
layers. A model whose forward cannot be traced gets a plan without a graph: the generic
runner's loop still evaluates it.

Sign activations (:class:`canonicalize.Sign` and its subclasses, such as
``binary.BinarySign``) are traced as leaf modules, whatever their forward does inside (a
straight-through autograd function, a convention at 0): an elementwise op of the chain. A
bias-free Linear that reads a sign's output (directly, or through ``Flatten``, ``Dropout`` or
``Identity``) is a ``"sign_linear"`` op: its inputs are -1, 0 or +1, so with +-1 weights its
products can run exactly in int8 (``Settings.int8``; checked again at run time).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from canonicalize import Sign

_RELU_FUNCTIONS = {torch.relu, F.relu}
_ELEMENTWISE_FUNCTIONS = {
    torch.tanh,
    torch.sigmoid,
    torch.sign,
    F.gelu,
    F.silu,
    F.elu,
    torch.nn.functional.leaky_relu,
}
_ELEMENTWISE_METHODS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "sign": torch.sign}
_ELEMENTWISE_MODULES = (
    nn.LeakyReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.ELU,
    nn.SiLU,
    nn.Softplus,
    nn.Hardtanh,
    nn.ReLU6,
)
_FIRST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

# One op of a chain: (kind, payload). kind: "linear" / "sign_linear" / "bn" (payload: module
# name; "sign_linear": a bias-free Linear whose input is a sign's output), "relu", "fn" /
# "sign" (payload: elementwise callable; "sign": a sign activation), "skip" (Dropout,
# Identity), "flatten" (Flatten of a row).
Op = tuple[str, Any]
#: Op kinds of a chain's Linear layers.
LINEAR_KINDS = ("linear", "sign_linear")
# Ops that pass their input's values on unchanged (a sign's -1/0/+1 stay -1/0/+1).
_VALUE_KEEPING = ("skip", "flatten")


@dataclass(frozen=True, eq=False)
class Plan:
    """What tracing the architecture tells the engine.

    Attributes
    ----------
    graph : torch.fx.Graph or None
        The traced forward; None when the model cannot be traced.
    chain : tuple of ops or None
        The ops of a plain chain ``x -> op -> ... -> logits``; None for any other graph.
    first_chain : int
        Index in ``chain`` of its first Linear (-1 without a chain).
    first_node, first_module : str or None
        Graph node and module name of the first parameterized layer the input reaches, when
        it is a Linear/Conv whose pre-activation is affine in its own parameters.
    bn_names : tuple of str
        BatchNorm layers that track running statistics.
    widths : tuple of int
        Input and output widths of the chain's Linears.
    """

    graph: fx.Graph | None
    chain: tuple[Op, ...] | None
    first_chain: int = -1
    first_node: str | None = None
    first_module: str | None = None
    bn_names: tuple[str, ...] = ()
    widths: tuple[int, ...] = ()


def fingerprint(template: nn.Module) -> tuple:
    """What a plan depends on: the module's type, its printed layers and its tensors' shapes."""
    tensors = itertools.chain(template.named_parameters(), template.named_buffers())
    return type(template), repr(template), tuple((n, t.shape) for n, t in tensors)


def make_plan(template: nn.Module) -> Plan:
    """Trace ``template`` (a few ms for the models in :mod:`funcspace.models`).

    Examples
    --------
    >>> from torch import nn
    >>> plan = make_plan(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
    >>> plan.chain, plan.widths
    ((('linear', '0'), ('relu', None), ('linear', '2')), (4, 8, 3))
    """
    bn_names = tuple(
        n
        for n, m in template.named_modules()
        if isinstance(m, BN_TYPES) and m.track_running_stats and m.running_mean is not None
    )
    try:
        # the graph alone: symbolic_trace would also build and compile a GraphModule
        graph = _Tracer().trace(template)
    except Exception:  # noqa: BLE001 - untraceable forward (control flow): generic path only
        return Plan(None, None, bn_names=bn_names)
    chain = _chain_of(graph, template)
    first_chain, widths = -1, ()
    if chain is not None:
        linears = [i for i, (kind, _) in enumerate(chain) if kind in LINEAR_KINDS]
        first_chain = linears[0]
        mods = [template.get_submodule(chain[i][1]) for i in linears]
        widths = (mods[0].in_features, *(m.out_features for m in mods))
    first_node, first_module = _first_layer(graph, template)
    return Plan(graph, chain, first_chain, first_node, first_module, bn_names, widths)


class _Tracer(fx.Tracer):
    """``torch.fx``'s tracer with sign activations as leaves (one op each, as in the model)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, Sign) or super().is_leaf_module(m, module_qualified_name)


def _chain_of(graph: fx.Graph, template: nn.Module) -> tuple[Op, ...] | None:
    """The ops of a plain chain ``x -> op -> op -> ... -> logits``, or None."""
    nodes = list(graph.nodes)
    if not nodes or nodes[0].op != "placeholder":
        return None
    prev, ops = nodes[0], []
    for node in nodes[1:]:
        if node.op == "output":
            if node.args[0] is not prev:
                return None
            break
        if node.all_input_nodes != [prev] or len(prev.users) != 1 or node.args[:1] != (prev,):
            return None
        op = _chain_op(node, template)
        if op is None:
            return None
        ops.append(op)
        prev = node
    kinds = [kind for kind, _ in ops]
    if "linear" not in kinds or "bn" in kinds[: kinds.index("linear")]:
        return None
    return _mark_sign_linears(ops, template)


def _mark_sign_linears(ops: list[Op], template: nn.Module) -> tuple[Op, ...]:
    """The chain with each bias-free Linear that reads a sign's output as ``"sign_linear"``."""
    marked, after_sign = [], False
    for kind, payload in ops:
        if kind == "linear" and after_sign and template.get_submodule(payload).bias is None:
            kind = "sign_linear"
        marked.append((kind, payload))
        after_sign = kind == "sign" or (after_sign and kind in _VALUE_KEEPING)
    return tuple(marked)


def _chain_op(node: fx.Node, template: nn.Module) -> Op | None:
    extra_args = node.args[1:]
    if node.op == "call_module":
        module = template.get_submodule(node.target)
        kind = type(module)
        if extra_args or node.kwargs:
            return None
        if kind is nn.Linear:
            return ("linear", node.target)
        if kind is nn.BatchNorm1d and module.track_running_stats:
            return ("bn", node.target)
        if kind is nn.ReLU:
            return ("relu", None)
        if kind in (nn.Dropout, nn.Identity):
            return ("skip", None)
        if kind is nn.Flatten and module.start_dim == 1 and module.end_dim == -1:
            return ("flatten", None)
        if kind in _ELEMENTWISE_MODULES:
            return ("fn", module)
        if isinstance(module, Sign):
            return ("sign", module)
        return None
    if node.op == "call_function":
        if node.target in _RELU_FUNCTIONS and not extra_args and set(node.kwargs) <= {"inplace"}:
            return ("relu", None)
        if node.target is torch.sign and not extra_args and not node.kwargs:
            return ("sign", torch.sign)
        if node.target in _ELEMENTWISE_FUNCTIONS and not extra_args and not node.kwargs:
            return ("fn", node.target)
        if node.target is torch.flatten and (extra_args, node.kwargs) in (
            ((1,), {}),
            ((), {"start_dim": 1}),
        ):
            return ("flatten", None)
        return None
    if node.op == "call_method":
        if node.target == "relu" and not extra_args and not node.kwargs:
            return ("relu", None)
        if node.target == "sign" and not extra_args and not node.kwargs:
            return ("sign", torch.sign)
        if node.target in _ELEMENTWISE_METHODS and not extra_args and not node.kwargs:
            return ("fn", _ELEMENTWISE_METHODS[node.target])
        if node.target == "flatten" and extra_args == (1,) and not node.kwargs:
            return ("flatten", None)
    return None


def _first_layer(graph: fx.Graph, template: nn.Module) -> tuple[str | None, str | None]:
    """The first parameterized layer the input reaches, if it is a Linear/Conv used once.

    Every node before it must be free of parameters and buffers, so its input depends on the
    data alone; its parameters must belong to it alone.
    """
    nodes = list(graph.nodes)
    if sum(n.op == "placeholder" for n in nodes) != 1:
        return None, None
    for node in nodes:
        if node.op == "get_attr":
            return None, None
        if node.op != "call_module":
            continue
        module = template.get_submodule(node.target)
        if not any(True for _ in itertools.chain(module.parameters(), module.buffers())):
            continue
        if type(module) not in _FIRST_LAYERS or len(node.args) != 1 or node.kwargs:
            return None, None
        # Later calls of the same module, or tied weights, are fine (they get each point's
        # parameters); the first call needs its parameters under its own names.
        names = {n for n, _ in template.named_parameters()}
        if any(f"{node.target}.{n}" not in names for n, _ in module.named_parameters()):
            return None, None
        return node.name, node.target
    return None, None
