"""Discover a model's symmetries from its torch.fx graph.

The graph is walked once from the input. Every tensor carries its channel axis (a union-find
id shared by every tensor whose channels must be permuted together) and the scale classes
whose factors it carries (with the part of the factor that reaches it: all of it, or only its
sign behind a sign activation). Each layer kind adds what it allows; see CANONICALIZE.md.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from .errors import SymmetryError
from .layers import Sign
from .spec import (
    Absorb,
    AxisRef,
    BatchNormInfo,
    BiasFold,
    Column,
    PermGroup,
    ScaleClass,
    Site,
    SymmetrySpec,
)
from .validate import check_input, check_model

_FIXED = 0

SUPPORTED_LAYERS = (
    "Linear, Conv1d, Conv2d, BatchNorm1d, BatchNorm2d, ReLU, LeakyReLU, Tanh, Sign, Identity, "
    "Dropout, MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d, AdaptiveMaxPool1d/2d, Flatten, "
    "residual additions, multiplication by a constant"
)

_HOMOGENEOUS_MODULES = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
_LINEAR_MODULES = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)
_HOMOGENEOUS_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.leaky_relu,
    F.max_pool1d,
    F.max_pool2d,
    torch.max_pool1d,
    torch.max_pool2d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
}
_ODD_FUNCTIONS = {torch.tanh, F.tanh}
_SIGN_FUNCTIONS = {torch.sign}
_LINEAR_FUNCTIONS = {
    F.dropout,
    F.avg_pool1d,
    F.avg_pool2d,
    torch.avg_pool1d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
}
_ADD_FUNCTIONS = {operator.add, torch.add}
_SCALAR_FUNCTIONS = {operator.mul, operator.truediv, torch.mul}
_HOMOGENEOUS_METHODS = {"relu"}
_ODD_METHODS = {"tanh"}
_SIGN_METHODS = {"sign"}
_LINEAR_METHODS = {"contiguous"}
_SHAPE_METHODS = {"size", "dim"}


class _UnionFind:
    """Union-find over integer ids; id 0 is 'fixed' and always its set's root."""

    def __init__(self) -> None:
        self.parent = [_FIXED]

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

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


@dataclass(frozen=True)
class _Value:
    """What the walk knows about one tensor: its channel axis and the factors it carries."""

    perm: int
    terms: frozenset[tuple[int, str]]
    block: int
    shape: tuple[int, ...]


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, Sign) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    """Trace a copy of ``model`` (eval mode) with torch.fx and annotate tensor shapes.

    Raises
    ------
    SymmetryError
        If torch.fx cannot trace the model, or the model fails on ``example_input``.
    """
    work = copy.deepcopy(model).eval()
    try:
        graph = _Tracer().trace(work)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is reported the same way
        raise SymmetryError(
            f"torch.fx could not trace {type(model).__name__}: {exc}. canonicalize needs a "
            "forward pass without data-dependent control flow; move such logic out of "
            "forward() or canonicalize the traceable part of the model."
        ) from exc
    gm = fx.GraphModule(work, graph)
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) > 1:
        raise SymmetryError(
            f"{type(model).__name__}.forward takes several inputs "
            f"({', '.join(n.name for n in inputs)}); models with several inputs are not supported"
        )
    try:
        # ShapeProp prints a traceback of its own on failure; the error below says it all
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(example_input)
    except Exception as exc:  # noqa: BLE001
        cause = exc.__cause__ or exc
        raise SymmetryError(
            f"{type(model).__name__} failed on the example input of shape "
            f"{tuple(example_input.shape)}: {type(cause).__name__}: {cause}"
        ) from exc
    return gm


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def check_layers(model: nn.Module) -> None:
    """Refuse torch.nn layers without a supported symmetry before anything runs."""
    supported = (
        nn.Linear,
        nn.Conv1d,
        nn.Conv2d,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.Tanh,
        nn.Flatten,
        Sign,
        *_HOMOGENEOUS_MODULES,
        *_LINEAR_MODULES,
        *_CONTAINERS,
    )
    for name, module in model.named_modules():
        if type(module).__module__.startswith("torch.nn") and not isinstance(module, supported):
            raise SymmetryError(
                f"layer '{name}' ({type(module).__name__}) has no supported symmetry; "
                f"supported layers are {SUPPORTED_LAYERS}. Replace it by a supported layer or "
                "canonicalize a model without it."
            )


def symmetries(model: nn.Module, example_input: torch.Tensor) -> SymmetrySpec:
    """Discover the permutation, scale and sign symmetries of ``model`` from its graph.

    Parameters
    ----------
    model : nn.Module
        Any model built from the supported layers (``SUPPORTED_LAYERS``), with one tensor input
        and one tensor output; nn.Sequential and custom modules with residual additions work.
    example_input : torch.Tensor
        A batch of inputs (batch axis first) used to trace the model and read shapes.

    Returns
    -------
    SymmetrySpec
        Which axes share one permutation (across residual additions and through Flatten),
        which units carry a positive scale or a sign, and how consumers compensate.

    Raises
    ------
    SymmetryError
        For an unsupported layer or function (named in the message), an untraceable model, a
        model with several inputs or outputs, or non-finite weights.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> spec = symmetries(net, torch.randn(5, 3))
    >>> [g.size for g in spec.groups], [(s.magnitude, s.sign) for s in spec.scales][:1]
    ([4], [(True, False)])
    """
    check_model(model)
    check_layers(model)
    example_input = check_input(model, example_input)
    gm = trace(model, example_input)
    return _Walk(gm).run()


class _Walk:
    """One pass over the traced graph that collects the symmetry group."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.perms = _UnionFind()
        self.scales = _UnionFind()
        self.values: dict[fx.Node, _Value | None] = {}
        self.sites: list[dict] = []
        self.axes: list[tuple[int, AxisRef]] = []
        self.columns: list[tuple[int, Column]] = []
        self.absorbs: list[tuple[int, Absorb]] = []
        self.no_magnitude: set[int] = set()
        self.no_sign: set[int] = set()
        self.batchnorms: dict[str, BatchNormInfo] = {}
        self.bias_folds: list[BiasFold] = []
        self.output: _Value | None = None
        self.inputs = 0
        self.called: set[str] = set()

    # --- constraints -------------------------------------------------------------------
    def _terminal(self, terms: frozenset[tuple[int, str]]) -> None:
        """The factors in ``terms`` reach a place that allows none of them."""
        for cls, kind in terms:
            if kind == "full":
                self.no_magnitude.add(cls)
            self.no_sign.add(cls)

    # --- walk --------------------------------------------------------------------------
    def run(self) -> SymmetrySpec:
        for order, node in enumerate(self.gm.graph.nodes):
            self.values[node] = self._visit(node, order)
        return self._resolve()

    def _value(self, arg: object, node: fx.Node) -> _Value:
        if not isinstance(arg, fx.Node) or self.values.get(arg) is None:
            raise SymmetryError(
                f"node '{node.name}' ({node.op} {_target_name(node)}) takes a non-tensor "
                "argument where a tensor was expected"
            )
        return self.values[arg]  # type: ignore[return-value]

    def _visit(self, node: fx.Node, order: int) -> _Value | None:
        meta = node.meta.get("tensor_meta")
        shape = tuple(meta.shape) if isinstance(meta, TensorMetadata) else None
        if node.op == "placeholder":
            self.inputs += 1
            if self.inputs > 1:
                raise SymmetryError("models with several inputs are not supported")
            return _Value(_FIXED, frozenset(), 1, shape or ())
        if node.op == "get_attr":
            raise SymmetryError(
                f"the forward pass reads the tensor '{node.target}' directly; only parameters "
                "held by supported layers (nn.Linear, nn.Conv*, nn.BatchNorm*) are supported"
            )
        if node.op == "output":
            return self._output(node)
        if node.op == "call_module":
            return self._module(node, order, shape)
        if node.op == "call_function":
            return self._function(node, shape)
        if node.op == "call_method":
            return self._method(node, shape)
        raise SymmetryError(f"unsupported graph node '{node.name}' ({node.op})")

    def _output(self, node: fx.Node) -> None:
        out = node.args[0]
        if not isinstance(out, fx.Node) or self.values.get(out) is None:
            raise SymmetryError("the model must return a single tensor (not a tuple or dict)")
        value = self.values[out]
        self.perms.union(value.perm, _FIXED)
        self.output = value
        return None

    def _module(self, node: fx.Node, order: int, shape) -> _Value:
        name = str(node.target)
        module = self.gm.get_submodule(name)
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            return self._weight_layer(node, name, module, order, shape)
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self._batchnorm(node, name, module, order, shape)
        value = self._value(node.args[0], node)
        if isinstance(module, _HOMOGENEOUS_MODULES):
            return self._homogeneous(value, shape)
        if isinstance(module, nn.Tanh):
            return self._odd(value, shape)
        if isinstance(module, Sign):
            return self._sign(value, shape)
        if isinstance(module, _LINEAR_MODULES):
            return _Value(value.perm, value.terms, value.block, shape)
        if isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim not in (-1, len(value.shape) - 1):
                raise SymmetryError(
                    f"layer '{name}' (Flatten) flattens dims {module.start_dim}..{module.end_dim}; "
                    "only Flatten(start_dim=1, end_dim=-1) is supported"
                )
            return self._flatten(value, shape)
        raise SymmetryError(
            f"layer '{name}' ({type(module).__name__}) has no supported symmetry; supported "
            f"layers are {SUPPORTED_LAYERS}. Replace it by a supported layer or canonicalize "
            "a model without it."
        )

    def _once(self, name: str, module: nn.Module) -> None:
        if name in self.called:
            raise SymmetryError(
                f"layer '{name}' ({type(module).__name__}) is called more than once in the "
                "forward pass; layers with shared weights are not supported"
            )
        self.called.add(name)

    def _weight_layer(self, node, name, module, order, shape) -> _Value:
        self._once(name, module)
        value = self._value(node.args[0], node)
        expected = (
            2 if isinstance(module, nn.Linear) else (3 if isinstance(module, nn.Conv1d) else 4)
        )
        if len(value.shape) != expected:
            raise SymmetryError(
                f"layer '{name}' ({type(module).__name__}) is applied to a {len(value.shape)}-D "
                f"tensor; canonicalize supports it on {expected}-D (batch, channels, ...) inputs"
            )
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups != 1:
            raise SymmetryError(
                f"layer '{name}' ({type(module).__name__}) has groups={module.groups}; grouped "
                "and depthwise convolutions are not supported"
            )
        weight = f"{name}.weight"
        if value.perm != _FIXED or self.perms.find(value.perm) != _FIXED:
            self.axes.append((value.perm, AxisRef(weight, 1, value.block)))
        for cls, kind in value.terms:
            self.columns.append((cls, Column(weight, value.block, kind)))
        perm, scale = self.perms.new(), self.scales.new()
        rows = [weight] + ([f"{name}.bias"] if module.bias is not None else [])
        for row in rows:
            self.axes.append((perm, AxisRef(row, 0)))
        kind = "linear" if isinstance(module, nn.Linear) else "conv"
        self.sites.append(
            dict(
                name=name,
                kind=kind,
                rows=tuple(rows),
                perm=perm,
                scale=scale,
                input_perm=value.perm,
                order=order,
            )
        )
        return _Value(perm, frozenset({(scale, "full")}), 1, shape)

    def _batchnorm(self, node, name, module, order, shape) -> _Value:
        self._once(name, module)
        value = self._value(node.args[0], node)
        tracked = module.track_running_stats and module.running_mean is not None
        self.batchnorms[name] = BatchNormInfo(name, float(module.eps), bool(module.affine), tracked)
        for cls, kind in value.terms:
            if kind == "full" and not tracked:
                # batch statistics in eval mode: sqrt(c^2 var + eps) != c sqrt(var + eps)
                self.no_magnitude.add(cls)
            if not module.affine:
                self.no_sign.add(cls)
            self.absorbs.append((cls, Absorb(name, kind)))
        source = node.args[0]
        if (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and len(source.users) == 1
            and isinstance(
                self.gm.get_submodule(str(source.target)), (nn.Linear, nn.Conv1d, nn.Conv2d)
            )
            and self.gm.get_submodule(str(source.target)).bias is not None
        ):
            self.bias_folds.append(BiasFold(f"{source.target}.bias", name))
        if tracked:
            for buffer in ("running_mean", "running_var"):
                self.axes.append((value.perm, AxisRef(f"{name}.{buffer}", 0)))
        if not module.affine:
            return _Value(value.perm, frozenset(), value.block, shape)
        scale = self.scales.new()
        rows = (f"{name}.weight", f"{name}.bias")
        for row in rows:
            self.axes.append((value.perm, AxisRef(row, 0)))
        self.sites.append(
            dict(
                name=name,
                kind="batchnorm",
                rows=rows,
                perm=value.perm,
                scale=scale,
                input_perm=None,
                order=order,
            )
        )
        return _Value(value.perm, frozenset({(scale, "full")}), value.block, shape)

    def _homogeneous(self, value: _Value, shape) -> _Value:
        for cls, _ in value.terms:
            self.no_sign.add(cls)
        return _Value(value.perm, value.terms, value.block, shape)

    def _odd(self, value: _Value, shape) -> _Value:
        for cls, kind in value.terms:
            if kind == "full":
                self.no_magnitude.add(cls)
        return _Value(value.perm, value.terms, value.block, shape)

    def _sign(self, value: _Value, shape) -> _Value:
        terms = frozenset((cls, "sign") for cls, _ in value.terms)
        return _Value(value.perm, terms, value.block, shape)

    def _flatten(self, value: _Value, shape) -> _Value:
        block = value.block * math.prod(value.shape[2:])
        return _Value(value.perm, value.terms, block, shape)

    def _add(self, node: fx.Node, shape) -> _Value:
        if node.kwargs.get("alpha", 1) != 1:
            raise SymmetryError(f"node '{node.name}': torch.add with alpha is not supported")
        a, b = node.args[0], node.args[1]
        if not isinstance(a, fx.Node):
            a, b = b, a
        left = self._value(a, node)
        if not isinstance(b, fx.Node):
            if b != 0:
                # a constant offset pins every factor that reaches it
                self._terminal(left.terms)
            return _Value(left.perm, left.terms, left.block, shape)
        right = self._value(b, node)
        if left.shape != right.shape or left.block != right.block:
            raise SymmetryError(
                f"node '{node.name}' adds tensors of shapes {left.shape} and {right.shape}; "
                "only additions of equally shaped tensors (residual streams) are supported"
            )
        perm = self.perms.union(left.perm, right.perm)
        terms = left.terms | right.terms
        if not left.terms or not right.terms:
            self._terminal(terms)
            return _Value(perm, terms, left.block, shape)
        classes = [cls for cls, _ in terms]
        root = classes[0]
        for cls in classes[1:]:
            root = self.scales.union(root, cls)
        if len({kind for _, kind in terms}) > 1:
            self.no_magnitude.add(root)
        return _Value(perm, terms, left.block, shape)

    def _scalar_product(self, node: fx.Node, shape) -> _Value:
        a, b = node.args[0], node.args[1]
        if node.target is operator.truediv and isinstance(b, fx.Node):
            raise SymmetryError(f"node '{node.name}': division by a tensor is not supported")
        if isinstance(a, fx.Node) and isinstance(b, fx.Node):
            raise SymmetryError(
                f"node '{node.name}' multiplies two tensors; only products with a constant are "
                "supported (gating and attention have no supported symmetry)"
            )
        tensor = a if isinstance(a, fx.Node) else b
        value = self._value(tensor, node)
        return _Value(value.perm, value.terms, value.block, shape)

    def _function(self, node: fx.Node, shape) -> _Value | None:
        target = node.target
        if shape is None:
            return None  # shape arithmetic (x.size(0), x.shape[1], ...)
        if target in _ADD_FUNCTIONS:
            return self._add(node, shape)
        if target in _SCALAR_FUNCTIONS:
            return self._scalar_product(node, shape)
        if target is torch.flatten:
            value = self._value(node.args[0], node)
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            if start != 1 or end not in (-1, len(value.shape) - 1):
                raise SymmetryError(
                    f"node '{node.name}': only torch.flatten(x, 1) is supported, got {start}..{end}"
                )
            return self._flatten(value, shape)
        if target is torch.reshape:
            return self._reshape(node, self._value(node.args[0], node), shape)
        handlers = (
            (_HOMOGENEOUS_FUNCTIONS, self._homogeneous),
            (_ODD_FUNCTIONS, self._odd),
            (_SIGN_FUNCTIONS, self._sign),
            (_LINEAR_FUNCTIONS, lambda v, s: _Value(v.perm, v.terms, v.block, s)),
        )
        for targets, handler in handlers:
            if target in targets:
                return handler(self._value(node.args[0], node), shape)
        raise SymmetryError(
            f"function '{_target_name(node)}' (node '{node.name}') has no supported symmetry; "
            f"supported operations are {SUPPORTED_LAYERS}"
        )

    def _reshape(self, node: fx.Node, value: _Value, shape) -> _Value:
        if tuple(shape) == value.shape:
            return _Value(value.perm, value.terms, value.block, shape)
        if tuple(shape) != (value.shape[0], math.prod(value.shape[1:])):
            raise SymmetryError(
                f"node '{node.name}' reshapes {value.shape} to {tuple(shape)}; only "
                "flattening to (batch, -1) is supported"
            )
        return self._flatten(value, shape)

    def _method(self, node: fx.Node, shape) -> _Value | None:
        method = str(node.target)
        if shape is None or method in _SHAPE_METHODS:
            return None
        if method == "add":
            return self._add(node, shape)
        if method in ("mul", "div"):
            return self._scalar_product(node, shape)
        value = self._value(node.args[0], node)
        if method in _HOMOGENEOUS_METHODS:
            return self._homogeneous(value, shape)
        if method in _ODD_METHODS:
            return self._odd(value, shape)
        if method in _SIGN_METHODS:
            return self._sign(value, shape)
        if method in _LINEAR_METHODS:
            return _Value(value.perm, value.terms, value.block, shape)
        if method == "flatten":
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            if start != 1 or end not in (-1, len(value.shape) - 1):
                raise SymmetryError(f"node '{node.name}': only x.flatten(1) is supported")
            return self._flatten(value, shape)
        if method in ("view", "reshape"):
            return self._reshape(node, value, shape)
        raise SymmetryError(
            f"method '.{method}()' (node '{node.name}') has no supported symmetry; supported "
            f"operations are {SUPPORTED_LAYERS}"
        )

    # --- resolution --------------------------------------------------------------------
    def _resolve(self) -> SymmetrySpec:
        if self.output is None:
            raise SymmetryError("the traced model has no output")
        state = self.gm.state_dict()
        find_p, find_s = self.perms.find, self.scales.find

        # the output: no per-unit factor, perhaps one global positive factor
        output_terms = self.output.terms
        output_roots = {find_s(cls) for cls, _ in output_terms}
        output_full = {find_s(cls) for cls, kind in output_terms if kind == "full"}
        no_magnitude = {find_s(c) for c in self.no_magnitude}
        no_sign = {find_s(c) for c in self.no_sign}
        global_root = None
        if (
            len(output_roots) == 1
            and output_full == output_roots
            and _FIXED not in output_roots
            and not (output_roots & no_magnitude)
        ):
            global_root = next(iter(output_roots))

        sites = sorted(self.sites, key=lambda s: s["order"])
        group_roots: list[int] = []
        for site in sites:
            root = find_p(site["perm"])
            if root != _FIXED and root not in group_roots:
                group_roots.append(root)
        group_index = {root: i for i, root in enumerate(group_roots)}
        scale_roots: list[int] = []
        for site in sites:
            root = find_s(site["scale"])
            if root != _FIXED and root not in scale_roots:
                scale_roots.append(root)
        scale_index = {root: i for i, root in enumerate(scale_roots)}

        resolved_sites = []
        for i, site in enumerate(sites):
            input_root = None if site["input_perm"] is None else find_p(site["input_perm"])
            resolved_sites.append(
                Site(
                    name=site["name"],
                    kind=site["kind"],
                    rows=site["rows"],
                    group=group_index.get(find_p(site["perm"])),
                    scale=scale_index.get(find_s(site["scale"])),
                    input_group=group_index.get(input_root) if input_root is not None else None,
                    order=site["order"],
                )
            )
            del i

        groups = []
        node_names: dict[int, list[tuple[str, int | None]]] = {root: [] for root in group_roots}
        for node, value in self.values.items():
            if value is not None and value.block == 1 and len(value.shape) >= 2:
                root = find_p(value.perm)
                if root in node_names and node.op != "placeholder":
                    carried = {scale_index.get(find_s(cls)) for cls, _ in value.terms} - {None}
                    node_names[root].append((node.name, next(iter(carried), None)))
        for root in group_roots:
            members = tuple(i for i, s in enumerate(resolved_sites) if s.group == group_index[root])
            size = state[resolved_sites[members[0]].rows[0]].shape[0]
            axes = tuple(dict.fromkeys(ax for p, ax in self.axes if find_p(p) == root))
            for ax in axes:
                if state[ax.tensor].shape[ax.dim] != size * ax.block:
                    raise SymmetryError(
                        f"internal: axis {ax} has length {state[ax.tensor].shape[ax.dim]}, "
                        f"expected {size} units x {ax.block}"
                    )
            groups.append(
                PermGroup(group_index[root], size, axes, members, tuple(node_names[root]))
            )

        scales = []
        for root in scale_roots:
            index = scale_index[root]
            members = tuple(i for i, s in enumerate(resolved_sites) if s.scale == index)
            site_groups = {resolved_sites[i].group for i in members}
            if len(site_groups) != 1:
                raise SymmetryError(f"internal: scale class spans groups {site_groups}")
            size = state[resolved_sites[members[0]].rows[0]].shape[0]
            scales.append(
                ScaleClass(
                    index=index,
                    size=size,
                    group=next(iter(site_groups)),
                    magnitude=root not in no_magnitude and root not in output_full,
                    sign=root not in no_sign and root not in output_roots,
                    sites=members,
                    columns=tuple(dict.fromkeys(c for k, c in self.columns if find_s(k) == root)),
                    absorbs=tuple(dict.fromkeys(a for k, a in self.absorbs if find_s(k) == root)),
                )
            )

        shape = self.output.shape
        return SymmetrySpec(
            groups=tuple(groups),
            scales=tuple(scales),
            sites=tuple(resolved_sites),
            batchnorms=dict(self.batchnorms),
            bias_folds=tuple(self.bias_folds),
            output_scale=scale_index.get(global_root) if global_root is not None else None,
            output_units=int(math.prod(shape[1:])) if len(shape) > 1 else 1,
            state_shapes=tuple((k, tuple(v.shape)) for k, v in state.items()),
        )


def _target_name(node: fx.Node) -> str:
    target = node.target
    return getattr(target, "__name__", str(target))
