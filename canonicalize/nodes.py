"""How graph nodes and layers are named in error messages and notes."""

from __future__ import annotations

from torch import fx, nn


def where(node: fx.Node) -> str:
    """The module path (and class) a node belongs to, for error messages."""
    stack = node.meta.get("nn_module_stack")
    if stack:
        path, (_, cls) = next(reversed(stack.items()))
        name = getattr(cls, "__name__", str(cls))
        return f" in '{path}' ({name})" if path else ""
    return ""


def layer(name: str, module: nn.Module) -> str:
    """A layer for error messages, by module path ("" for a model that is one layer)."""
    kind = type(module).__name__
    return f"layer '{name}' ({kind})" if name else f"the model itself ({kind})"


def describe(node: fx.Node) -> str:
    """A node for error messages: what it calls, its name, and the module it sits in."""
    target = node.target
    name = getattr(target, "__name__", str(target))
    kind = {"call_function": "function", "call_method": "method", "call_module": "layer"}
    return f"{kind.get(node.op, node.op)} '{name}' (node '{node.name}'){where(node)}"
