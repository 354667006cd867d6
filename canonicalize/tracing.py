"""Trace a model to a torch-level fx graph, specializing shape-dependent Python control flow.

Two strategies, tried in order:

1. Plain symbolic tracing (``torch.fx.Tracer``, with :class:`~canonicalize.layers.Sign` kept as a
   leaf module). It covers every forward pass without Python control flow on traced values.
2. Specializing tracing, used only when the first strategy fails. The tracer computes, next to
   each node it records, the node's value on the example input (leaf modules and functions are
   run on the values of their arguments, in the order the graph is built). When the forward pass
   needs a Python value (``if``, ``assert``, ``range(x.size(1))``, ``for s in x.shape``,
   ``len(x)``, ``int(...)``), the tracer returns the real value on the example input, so shape
   checks pass and shape-dependent branches and loops are specialized to the example input's
   shapes. A value that depends on tensor *data* (``if x.sum() > 0``, ``x.max().item()``, the
   size of ``x.nonzero()``) is refused instead of being specialized silently.

Both strategies record torch-level nodes only: ``call_module`` for leaf layers (parameters stay
behind their modules, never inlined), ``call_function`` for torch and functional calls,
``call_method`` for tensor methods.

A model that is itself a leaf layer (a bare ``nn.Linear`` or ``nn.Conv2d``) is not traced at all:
torch.fx traces a root's own ``forward``, which would inline its parameters as ``get_attr``
nodes. It becomes a one-layer graph instead (input, one ``call_module`` node, output), like a
model holding that one layer. torch.fx cannot name the root module as a ``call_module`` target,
so the layer sits under :data:`ROOT_LAYER` in the graph module, whose ``state_dict`` keeps the
model's own names (``weight``, not ``root_layer.weight``); :func:`layer_path` and
:func:`state_name` give the names the model uses.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import io
import linecache
import operator
import os
import sysconfig
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.fx.proxy import Attribute, TraceError

from .errors import SymmetryError
from .layers import Sign

__all__ = ["ROOT_LAYER", "layer_path", "state_name", "trace"]

# where a model that is itself a leaf layer sits in its graph module
ROOT_LAYER = "root_layer"

# tensor methods and attributes that read metadata (shape, rank, dtype, device), never values
_SHAPE_METHODS = frozenset(
    {
        "size",
        "dim",
        "ndimension",
        "numel",
        "nelement",
        "element_size",
        "is_floating_point",
        "is_complex",
        "is_contiguous",
        "get_device",
    }
)
_SHAPE_ATTRS = frozenset(
    {
        "shape",
        "ndim",
        "dtype",
        "device",
        "is_cuda",
        "layout",
        "is_sparse",
        "is_quantized",
        "is_nested",
    }
)
# shape attributes that never change with the batch size: the specializing tracer hands out
# their values (``x.shape`` stays symbolic, its sizes specialize only where Python needs them)
_STATIC_ATTRS = _SHAPE_ATTRS - {"shape"}
_SHAPE_FUNCTIONS = frozenset({torch.numel, torch.is_floating_point, torch.is_complex, len})
# operations whose output *shape* depends on the values of their input
_DATA_SHAPED = frozenset(
    {"nonzero", "masked_select", "unique", "unique_consecutive", "argwhere", "bincount"}
)
# call_function targets without side effects, removed when their result is unused
_PURE_FUNCTIONS = frozenset(
    {
        getattr,
        len,
        operator.getitem,
        operator.add,
        operator.sub,
        operator.mul,
        operator.truediv,
        operator.floordiv,
        operator.mod,
        operator.pow,
        operator.neg,
        operator.pos,
        operator.abs,
        operator.eq,
        operator.ne,
        operator.lt,
        operator.le,
        operator.gt,
        operator.ge,
        operator.not_,
        operator.and_,
        operator.or_,
        operator.xor,
        operator.invert,
        operator.truth,
        operator.contains,
        operator.is_,
        operator.is_not,
        operator.index,
        torch.numel,
        torch.is_floating_point,
        torch.is_complex,
    }
)
_ASSERT_NAMES = frozenset({"_assert", "_assert_async", "_assert_is_none"})

_DATA_ADVICE = (
    "data-dependent control flow cannot be traced. Move this logic out of forward(), or make "
    "it depend on input shapes only (x.shape, x.size(), x.dim())"
)
_GENERIC_ADVICE = (
    "canonicalize needs a forward pass without data-dependent control flow; move such logic "
    "out of forward() or canonicalize the traceable part of the model"
)

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB_DIR = os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep


class _Missing(Exception):
    """Raised while gathering argument values when one of them has no value."""

    def __init__(self, error: BaseException | None) -> None:
        super().__init__()
        self.error = error


class _ExampleFailure(Exception):
    """A value the forward pass needs could not be computed on the example input."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error


class _DataDependent(TraceError):
    """The forward pass needs a Python value that depends on tensor values."""

    def __init__(self, action: str, origin: str) -> None:
        super().__init__(f"{action} ({origin})")
        self.action = action
        self.origin = origin


_NO_VALUE = object()


@dataclass
class _Concrete:
    """What the specializing tracer knows about one node.

    Attributes
    ----------
    value : Any
        The node's value on the example input, or ``_NO_VALUE``.
    error : BaseException or None
        Why the value could not be computed (None: it depends on an input other than the first).
    source : fx.Node or None
        The node where tensor values enter this value; None when the value depends on shapes,
        dtypes and constants only (so it may be specialized).
    shape_source : fx.Node or None
        The node from which this value's *shape* starts depending on tensor values.
    """

    value: Any
    error: BaseException | None
    source: fx.Node | None
    shape_source: fx.Node | None


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    return False


def _target_name(node: fx.Node) -> str:
    if isinstance(node.target, str):
        return node.target
    return getattr(node.target, "__name__", repr(node.target))


def _nodes_in(arg: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(arg, found.append)
    return found


# torch.nn containers that are traced through (their layers become the nodes), not kept as
# one opaque layer: a transformer layer is attention, norms and feed-forward layers
_TRACED_THROUGH = (
    nn.TransformerEncoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoderLayer,
    nn.TransformerDecoder,
    nn.Transformer,
)


class _LeafTracer(fx.Tracer):
    """The plain tracer: torch.nn layers and :class:`Sign` stay ``call_module`` nodes; the
    transformer containers of torch.nn are traced through."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _TRACED_THROUGH):
            return False
        return isinstance(m, Sign) or super().is_leaf_module(m, module_qualified_name)


@contextlib.contextmanager
def _slow_attention() -> Iterator[None]:
    """torch.nn's attention without its fused fast path: the traced graph shows the layers."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


class _ConcreteProxy(fx.Proxy):
    """A proxy that turns into its value on the example input where Python needs a number."""

    tracer: _SpecializingTracer

    def __getattr__(self, k: str) -> Any:
        attribute = _ConcreteAttribute(self, k)
        if k in _STATIC_ATTRS:  # a plain value, usable as a dict key (einops: recipes by rank)
            return self.tracer.concrete_value(attribute, f"reads .{k} of tensor values")
        return attribute

    def __len__(self) -> int:
        return self.tracer.concrete_len(self)

    def __index__(self) -> int:
        return operator.index(self.tracer.concrete_value(self, "uses tensor values as an index"))

    def __int__(self) -> int:
        return int(self.tracer.concrete_value(self, "converts tensor values to int"))

    def __float__(self) -> float:
        return float(self.tracer.concrete_value(self, "converts tensor values to float"))


class _ConcreteAttribute(_ConcreteProxy, Attribute):
    """``proxy.attr`` (``x.shape``, ``x.size``) for the specializing tracer."""


class _SpecializingTracer(_LeafTracer):
    """Record the graph and, next to each node, its value on the example input.

    Parameters
    ----------
    example_input : torch.Tensor
        The value of the first input of ``forward`` (a private copy: in-place operations of the
        forward pass change it).
    """

    def __init__(self, example_input: torch.Tensor) -> None:
        super().__init__()
        self._example = example_input
        self._records: dict[fx.Node, _Concrete] = {}
        self._evaluating = False
        self._placeholders = 0
        self._modules: dict[int, tuple[str, nn.Module]] | None = None
        self.specialized: list[str] = []
        # the user frame of the last condition taken on the example input, if it was false
        self.last_false: FrameType | None = None

    # --- graph building -------------------------------------------------------------------

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def create_node(
        self,
        kind: str,
        target: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None = None,
        type_expr: Any | None = None,
    ) -> fx.Node:
        if self._evaluating:
            raise RuntimeError(
                "canonicalize.tracing: a graph node was created while computing a value on the "
                "example input"
            )
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if kind != "output":
            self._records[node] = self._record(node)
        return node

    def call_module(
        self,
        m: nn.Module,
        forward: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if self._evaluating:  # a leaf layer running on real values calls its own children
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if self._evaluating:  # a leaf layer running on real values reads its real parameters
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    # --- values on the example input ------------------------------------------------------

    def _value_of(self, node: fx.Node) -> Any:
        record = self._records.get(node)
        if record is None or record.value is _NO_VALUE:
            raise _Missing(record.error if record is not None else None)
        return record.value

    def _evaluate(self, node: fx.Node) -> tuple[Any, BaseException | None]:
        if node.op == "placeholder":
            self._placeholders += 1
            if self._placeholders == 1:
                return self._example, None
            return (node.args[0], None) if node.args else (_NO_VALUE, None)
        try:
            args = fx.node.map_arg(node.args, self._value_of)
            kwargs = fx.node.map_arg(node.kwargs, self._value_of)
        except _Missing as missing:
            return _NO_VALUE, missing.error
        self._evaluating = True
        try:
            with torch.no_grad():
                if node.op == "get_attr":
                    value: Any = self.root
                    for atom in str(node.target).split("."):
                        value = getattr(value, atom)
                elif node.op == "call_module":
                    value = self.root.get_submodule(str(node.target))(*args, **kwargs)
                elif node.op == "call_function":
                    value = node.target(*args, **kwargs)  # type: ignore[operator]
                else:
                    value = getattr(args[0], str(node.target))(*args[1:], **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported if the value is ever needed
            return _NO_VALUE, exc
        finally:
            self._evaluating = False
        return value, None

    def _record(self, node: fx.Node) -> _Concrete:
        value, error = self._evaluate(node)
        records = [self._records.get(n) for n in node.all_input_nodes]
        inputs = [r for r in records if r is not None]
        tensorish = value is _NO_VALUE or _holds_tensor(value)
        shape_source = self._shape_source(node, inputs)
        receiver = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        received = self._records.get(receiver) if receiver is not None else None
        if node.op in ("placeholder", "get_attr"):
            source = node if tensorish else None
        elif received is not None and _holds_tensor(received.value) and _reads_shape(node):
            others = [self._records[n] for n in node.all_input_nodes if n is not receiver]
            source = received.shape_source or _first_source(others)
        elif tensorish:
            source = node
        else:
            source = _first_source(inputs)
        return _Concrete(value, error, source, shape_source)

    def _shape_source(self, node: fx.Node, inputs: list[_Concrete]) -> fx.Node | None:
        if self._shape_from_values(node):
            return node
        for record in inputs:
            if record.shape_source is not None:
                return record.shape_source
            # conservative: a Python number computed from tensor values may size the output
            if not _holds_tensor(record.value) and record.source is not None:
                return record.source
        return None

    def _shape_from_values(self, node: fx.Node) -> bool:
        if node.op not in ("call_function", "call_method"):
            return False
        name = _target_name(node)
        if name in _DATA_SHAPED:
            return True
        if name == "where" and len(node.args) == 1 and not node.kwargs:
            return True
        if name == "repeat_interleave":
            repeats = [*node.args[1:], *node.kwargs.values()] or list(node.args)
            return any(self._is_tensor_node(n) for n in _nodes_in(repeats))
        if node.target is operator.getitem and len(node.args) == 2:
            for index in _nodes_in(node.args[1]):
                record = self._records.get(index)
                value = record.value if record is not None else None
                if isinstance(value, torch.Tensor) and value.dtype == torch.bool:
                    return True
        return False

    def _is_tensor_node(self, node: fx.Node) -> bool:
        record = self._records.get(node)
        return record is not None and isinstance(record.value, torch.Tensor)

    # --- Python values the forward pass asks for ------------------------------------------

    def _known(self, proxy: fx.Proxy) -> _Concrete:
        record = self._records.get(proxy.node)
        if record is None:
            raise TraceError(f"no value on the example input is known for {proxy.node.name}")
        if record.value is _NO_VALUE:
            if record.error is not None:
                raise _ExampleFailure(record.error)
            raise TraceError("the value depends on an input other than the first one")
        return record

    def _static(self, proxy: fx.Proxy, action: str) -> Any:
        record = self._known(proxy)
        if record.source is not None:
            raise _DataDependent(action, self._origin(proxy.node))
        return record.value

    def concrete_value(self, proxy: fx.Proxy, action: str) -> Any:
        """The value of ``proxy`` on the example input, if it depends on shapes only."""
        value = self._static(proxy, action)
        self._note(value)
        return value

    def concrete_len(self, proxy: fx.Proxy) -> int:
        """``len(proxy)`` on the example input, if it depends on shapes only."""
        record = self._known(proxy)
        if _holds_tensor(record.value):
            if record.shape_source is not None:
                origin = self._origin(proxy.node)
                raise _DataDependent("takes the length of a tensor sized by tensor values", origin)
            length = len(record.value)
        else:
            length = len(self._static(proxy, "takes the length of tensor values"))
        self._note(length)
        return length

    def to_bool(self, obj: fx.Proxy) -> bool:
        result = bool(self.concrete_value(obj, "branches on tensor values"))
        frame = _first_user_frame(list(traceback.walk_stack(None)))
        self.last_false = None if result else frame
        return result

    def iter(self, obj: fx.Proxy) -> Iterator[Any]:
        record = self._known(obj)
        if isinstance(record.value, dict):
            return iter(list(self.concrete_value(obj, "iterates over tensor values")))
        if _holds_tensor(record.value):
            if record.shape_source is not None:
                origin = self._origin(obj.node)
                raise _DataDependent("iterates over a tensor sized by tensor values", origin)
            self._note(len(record.value))
            return iter([obj[i] for i in range(len(record.value))])
        return iter(list(self.concrete_value(obj, "iterates over tensor values")))

    def _origin(self, node: fx.Node) -> str:
        """The chain of operations through which tensor values reach ``node``, oldest first."""
        chain: list[str] = []
        current: fx.Node | None = node
        while current is not None and len(chain) < 6:
            chain.append(_label(current))
            current = next(
                (
                    n
                    for n in current.all_input_nodes
                    if n in self._records and self._records[n].source is not None
                ),
                None,
            )
        if current is not None:
            chain.append("...")
        return " -> ".join(reversed(chain))

    def _note(self, value: Any) -> None:
        if self._modules is None:
            self._modules = {id(m): (path, m) for path, m in self.root.named_modules()}
        location = _user_location(list(traceback.walk_stack(None)), self._modules)
        if location is not None:
            self.specialized.append(f"{location.place} `{location.source}` -> {value!r}")


def _reads_shape(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    if node.op != "call_function":
        return False
    if node.target is getattr:
        return len(node.args) >= 2 and node.args[1] in _SHAPE_ATTRS
    return node.target in _SHAPE_FUNCTIONS


def _label(node: fx.Node) -> str:
    if node.op == "placeholder":
        return f"input '{node.name}'"
    if node.op in ("get_attr", "call_module"):
        return f"'{node.target}'"
    return _target_name(node)


def _first_source(records: list[_Concrete]) -> fx.Node | None:
    return next((r.source for r in records if r.source is not None), None)


# --- where the user code stopped ----------------------------------------------------------


@dataclass
class _Location:
    place: str  # "forward of 'blk' (Block) at models/net.py:12"
    source: str  # the source line, stripped
    innermost: bool  # the frame that raised (or asked) is this user frame itself


def _is_library(filename: str) -> bool:
    path = os.path.abspath(filename)
    return (
        filename.startswith("<")
        or path.startswith(_TORCH_DIR)
        or path.startswith(_PACKAGE_DIR)
        or (
            path.startswith(_STDLIB_DIR)
            and "site-packages" not in path
            and "dist-packages" not in path
        )
    )


def _first_user_frame(frames: list[tuple[FrameType, int]]) -> FrameType | None:
    return next((f for f, _ in frames if not _is_library(f.f_code.co_filename)), None)


def _display_path(filename: str) -> str:
    relative = os.path.relpath(filename) if os.path.isabs(filename) else filename
    return filename if relative.startswith("..") else relative


def _receiver(frame: FrameType) -> Any:
    """The first argument of the function the frame runs (``self`` of a method), or None."""
    code = frame.f_code
    if code.co_argcount == 0:
        return None
    return frame.f_locals.get(code.co_varnames[0])


def _user_location(
    frames: list[tuple[FrameType, int]], modules: dict[int, tuple[str, nn.Module]]
) -> _Location | None:
    """Describe the innermost user frame of ``frames`` (innermost first).

    ``modules`` maps ``id(module)`` to ``(path, module)`` for the traced model; the module whose
    method the frame runs (its ``self``, or the nearest caller's) is named by its path.
    """
    for i, (frame, lineno) in enumerate(frames):
        filename = frame.f_code.co_filename
        if _is_library(filename):
            continue
        function = frame.f_code.co_name
        source = linecache.getline(filename, lineno).strip()
        place = f"{function}"
        for outer, _ in frames[i:]:
            if _is_library(outer.f_code.co_filename):
                continue
            owner = _receiver(outer)
            entry = modules.get(id(owner))
            if entry is None or entry[1] is not owner:
                continue
            path, module = entry
            who = f"'{path}' ({type(module).__name__})" if path else f"{type(module).__name__}"
            if outer is frame:
                place = f"{function} of {who}"
            else:
                place = f"`{function}` (called from {outer.f_code.co_name} of {who})"
            break
        place = f"{place} at {_display_path(filename)}:{lineno}"
        return _Location(place, source, innermost=i == 0)
    return None


def _tracing_error(
    name: str,
    work: nn.Module,
    example_input: torch.Tensor,
    exc: BaseException,
    last_false: FrameType | None,
) -> SymmetryError:
    """The SymmetryError for a failure of the specializing tracer.

    An ``AssertionError`` raised by the user frame right after a condition came out false on
    the example input is the model refusing that input; anything else is a tracing failure.
    """
    shape = tuple(getattr(example_input, "shape", ()))
    if isinstance(exc, _ExampleFailure):
        cause = exc.error
        return SymmetryError(
            f"{name} failed on the example input of shape {shape}: {_describe(cause)}"
        )
    frames = list(traceback.walk_tb(exc.__traceback__))[::-1]
    modules = {id(m): (path, m) for path, m in work.named_modules()}
    location = _user_location(frames, modules)
    where = f"{location.place} `{location.source}` " if location is not None else ""
    if isinstance(exc, _DataDependent):
        return SymmetryError(
            f"torch.fx could not trace {name}: {where}{exc.action} ({exc.origin}): {_DATA_ADVICE}."
        )
    failed_check = location is not None and location.innermost and frames[0][0] is last_false
    if isinstance(exc, AssertionError) and failed_check:
        return SymmetryError(
            f"{name} failed on the example input of shape {shape}: {where}raised {_describe(exc)}"
        )
    return SymmetryError(
        f"torch.fx could not trace {name}: {where}raised {_describe(exc)}. {_GENERIC_ADVICE}."
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- after tracing --------------------------------------------------------------------------


def _several_inputs(name: str, graph: fx.Graph) -> SymmetryError | None:
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) <= 1:
        return None
    return SymmetryError(
        f"{name}.forward takes several inputs ({', '.join(n.name for n in inputs)}); models with "
        "several inputs are not supported"
    )


def _is_assert(node: fx.Node) -> bool:
    return node.op == "call_function" and getattr(node.target, "__name__", "") in _ASSERT_NAMES


def _is_pure_scalar(node: fx.Node) -> bool:
    if node.users or "tensor_meta" in node.meta:
        return False
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    if node.op != "call_function":
        return False
    return node.target in _PURE_FUNCTIONS or getattr(node.target, "__module__", None) == "math"


def _drop_checks(gm: fx.GraphModule) -> None:
    """Remove assertion nodes (checked on the example input) and unused shape arithmetic."""
    changed = False
    for node in reversed(list(gm.graph.nodes)):
        if (_is_assert(node) and not node.users) or _is_pure_scalar(node):
            gm.graph.erase_node(node)
            changed = True
    if changed:
        gm.graph.lint()
        gm.recompile()


def _copy_of(example_input: Any) -> Any:
    if isinstance(example_input, torch.Tensor):
        return example_input.detach().clone()
    return example_input


def layer_path(gm: fx.GraphModule, node: fx.Node) -> str:
    """The module path, in the traced model, of the layer a ``call_module`` node calls.

    It is the node's target, except for a model that is itself a leaf layer: its path is ``""``
    (as in ``model.named_modules()``).
    """
    target = str(node.target)
    return "" if target == gm.meta.get("root_layer") else target


def state_name(path: str, attr: str) -> str:
    """The ``state_dict`` name of the tensor ``attr`` of the module at ``path``.

    Examples
    --------
    >>> state_name("features.0", "weight"), state_name("", "weight")
    ('features.0.weight', 'weight')
    """
    return f"{path}.{attr}" if path else attr


def _is_layer(model: nn.Module) -> bool:
    """Whether the tracers keep ``model`` as one ``call_module`` node (a torch.nn layer, Sign)."""
    return _LeafTracer().is_leaf_module(model, "")


def _strip_root_prefix(
    module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: dict[str, Any]
) -> None:
    """State-dict post-hook: the root layer's tensors under the model's own names."""
    inner = f"{prefix}{ROOT_LAYER}."
    for key in [k for k in state if k.startswith(inner)]:
        state[prefix + key[len(inner) :]] = state.pop(key)


def _layer_graph(layer: nn.Module) -> fx.GraphModule:
    """The one-layer graph of a model that is itself a leaf layer.

    One placeholder per parameter of ``forward`` without a default (several of them are refused
    later, as for any model), the layer called on them, its result returned.
    """
    graph = fx.Graph()
    try:
        parameters = inspect.signature(layer.forward).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume one input
        parameters = ()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in parameters if p.kind in positional and p.default is p.empty]
    inputs = [graph.placeholder(name) for name in names or ["input"]]
    graph.output(graph.call_module(ROOT_LAYER, tuple(inputs)))
    gm = fx.GraphModule({ROOT_LAYER: layer}, graph)
    gm.register_state_dict_post_hook(_strip_root_prefix)
    gm.meta["root_layer"] = ROOT_LAYER
    return gm


def _defaults(work: nn.Module) -> dict[str, Any] | None:
    """For a torch.nn transformer container traced as the model itself, its optional
    arguments (masks, flags) at their defaults: the model is called with one input."""
    if not isinstance(work, _TRACED_THROUGH):
        return None
    parameters = list(inspect.signature(work.forward).parameters.values())[1:]
    return {p.name: p.default for p in parameters if p.default is not p.empty}


def _drop_defaults(gm: fx.GraphModule) -> None:
    """Remove the checks fx adds for arguments fixed at their defaults, then the arguments."""
    for node in reversed(list(gm.graph.nodes)):
        if (_is_assert(node) and not node.users) or (
            not node.users and node.op == "call_function" and node.target in _PURE_FUNCTIONS
        ):
            gm.graph.erase_node(node)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node in placeholders[1:]:
        if not node.users:
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()


# tensor factories whose sizes may be traced values (``torch.ones(T, T)`` with ``T = x.size(1)``):
# torch's argument parser takes only real integers for sizes, so a call that receives a traced
# value is recorded as a graph node instead
_FACTORIES = ("ones", "zeros", "empty", "full", "rand", "randn", "arange", "eye", "linspace")


@contextlib.contextmanager
def _factories_take_proxies(tracer: fx.Tracer) -> Iterator[None]:
    originals = {name: getattr(torch, name) for name in _FACTORIES}

    def recording(function: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            found: list[fx.Proxy] = []
            fx.node.map_aggregate(
                (args, kwargs), lambda a: found.append(a) if isinstance(a, fx.Proxy) else None
            )
            if found:
                return tracer.create_proxy("call_function", function, args, kwargs)
            return function(*args, **kwargs)

        call.__name__ = function.__name__
        return call

    try:
        for name, function in originals.items():
            setattr(torch, name, recording(function))
        yield
    finally:
        for name, function in originals.items():
            setattr(torch, name, function)


def _specialize(
    name: str, work: nn.Module, example_input: torch.Tensor
) -> tuple[fx.Graph, list[str]]:
    """Trace ``work`` with :class:`_SpecializingTracer`: its graph and the decisions taken."""
    tracer = _SpecializingTracer(_copy_of(example_input))
    try:
        with _factories_take_proxies(tracer):
            graph = tracer.trace(work, concrete_args=_defaults(work))
    except Exception as exc:  # noqa: BLE001 - every failure is reported as a SymmetryError
        partial = getattr(tracer, "graph", None)
        several = _several_inputs(name, partial) if partial is not None else None
        error = several or _tracing_error(name, work, example_input, exc, tracer.last_false)
        raise error from exc
    return graph, tracer.specialized  # the tracer, and the values it kept, go


def trace(model: nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    """Trace a copy of ``model`` (eval mode) with torch.fx and annotate tensor shapes.

    Plain symbolic tracing is tried first. If it fails, the model is traced again while every
    recorded operation is also run on ``example_input``, so Python control flow on shapes
    (``assert x.dim() == 4``, ``if x.size(-1) > 4:``, ``for c in range(x.size(1))``) takes the
    path the example input takes; such branches and loops are specialized to the example
    input's shapes. Control flow on tensor values is refused.

    Parameters
    ----------
    model : nn.Module
        The model; it is neither modified nor run (a deep copy in eval mode is traced).
    example_input : torch.Tensor
        One batch of inputs, used to specialize shape-dependent control flow and to annotate
        every tensor node with ``node.meta["tensor_meta"]`` (``ShapeProp``).

    Returns
    -------
    fx.GraphModule
        A torch-level graph (``call_module`` nodes for torch.nn layers and ``Sign``) that computes
        what ``model`` computes on inputs shaped like ``example_input``. Assertions are checked on
        the example input and left out of the graph. ``gm.meta["tracing"]`` is ``"symbolic"`` or
        ``"specialized"``; ``gm.meta["specialized"]`` lists each Python decision taken on the
        example input (``"forward of 'blk' (Block) at net.py:12 `if x.size(-1) > 4:` -> True"``).
        A model that is itself a torch.nn layer becomes a one-layer graph
        (``gm.meta["tracing"] == "layer"``); its layer's path is ``""`` (:func:`layer_path`) and
        ``gm.state_dict()`` has the model's names.

    Raises
    ------
    SymmetryError
        If ``forward`` takes several inputs, if it branches, loops or converts to Python numbers
        on tensor values (the message names the module, file, line and source line), if
        torch.fx cannot trace it otherwise, or if the model fails on ``example_input``.
    """
    _teach_einops()
    with _slow_attention():
        return _trace(model, example_input)


@functools.cache
def _teach_einops() -> type | None:
    """Let einops's functions (``rearrange``, ``reduce``, ``repeat``, ...) run on traced values.

    einops picks a backend by the type of its argument and knows no fx proxy, so a forward pass
    calling ``einops.rearrange`` could not be traced. einops finds backends as subclasses of its
    ``AbstractBackend`` whose ``framework_name`` is an imported module; this one is torch's
    backend for proxies (its reshapes and permutations become graph nodes like the model's own).
    Done once, and only when einops is installed; the cache holds the class (einops sees
    subclasses through weak references).
    """
    try:
        from einops._backends import TorchBackend
    except ImportError:  # einops is not installed: nothing to teach
        return None

    class _ProxyBackend(TorchBackend):
        framework_name = __name__  # this module, always imported while tracing

        def is_appropriate_type(self, tensor: Any) -> bool:
            return isinstance(tensor, fx.Proxy)

    _ProxyBackend.__qualname__ = "canonicalize.tracing._ProxyBackend"
    return _ProxyBackend


def _trace(model: nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    name = type(model).__name__
    work = copy.deepcopy(model).eval()
    specialized: list[str] = []
    strategy = "symbolic"
    if _is_layer(work):
        gm = _layer_graph(work)
        strategy = "layer"
    else:
        try:
            graph = _LeafTracer().trace(work, concrete_args=_defaults(work))
        except Exception:  # noqa: BLE001 - any failure: retry with values on the example input
            work = copy.deepcopy(model).eval()  # the failed trace may have changed the copy
            graph, specialized = _specialize(name, work, example_input)
            strategy = "specialized"
        gm = fx.GraphModule(work, graph)
    if _defaults(work):
        _drop_defaults(gm)
    several = _several_inputs(name, gm.graph)
    if several is not None:
        raise several
    try:
        # ShapeProp prints a traceback of its own on failure; the error below says it all
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(_copy_of(example_input))
    except Exception as exc:  # noqa: BLE001
        cause = exc.__cause__ or exc
        raise SymmetryError(
            f"{name} failed on the example input of shape "
            f"{tuple(example_input.shape)}: {type(cause).__name__}: {cause}"
        ) from exc
    _drop_checks(gm)
    gm.meta["tracing"] = strategy
    gm.meta["specialized"] = specialized
    return gm
